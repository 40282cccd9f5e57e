/*
 * ciot_shadow on a CIOT_BACKEND_AZURE client: the IoT Hub device twin.
 * Suite azure_twin runs against the emulator plugin (emulator/twin_service.c,
 * plugin_opt_policies off, plain listener); suite azure_twin_fake against a
 * plain mosquitto where a libmosquitto client plays the hub, to send what
 * the emulator never does (stale and duplicate patches, rejections,
 * silence).
 */
#include "harness.h"
#include "emu_fixture.h"
#include "tclient.h"

#include <cloudiot/azure.h>
#include <cloudiot/shadow.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define ADMIN_PW "s3cret-admin"
#define WAIT_MS 5000
#define CTL_HUB "$CONTROL/cloudiot/v1/iothub"
#define HUB "emulator-hub.azure-devices.net" /* the plugin's default */
#define KEY "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

static emu_fixture emu;

/* ------------------------------------------------------------ fixture */

/* Registers a SAS device with KEY (the registry file the launcher writes). */
static void register_device(const char *id)
{
    char path[512];
    snprintf(path, sizeof path, "%s/registry", emu.data_dir);
    (void)mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/registry/azure-devices", emu.data_dir);
    (void)mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/registry/azure-devices/%s.json", emu.data_dir, id);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "{\"deviceId\":\"%s\",\"primaryKey\":\"" KEY "\",\"secondaryKey\":\"" KEY
               "\",\"status\":\"enabled\",\"authentication\":\"sas\"}\n",
            id);
    cr_assert_eq(fclose(f), 0);
}

static void setup_emu(void)
{
    emu_data_dir_make(&emu, "/tmp/ciot-twin-XXXXXX");
    register_device("td1");
    register_device("td2");
    register_device("td3");
    emu_start(&emu, false, "plugin_opt_admin_password " ADMIN_PW "\nplugin_opt_policies off\n");
}

static void teardown_emu(void) { emu_teardown(&emu); }
/* Stops the broker and fails on any sanitizer report about the plugin. */
static void finish_emu(void) { emu_finish(&emu); }

static void setup_plain(void)
{
    test_broker_opts o = {.max_queued = 0};
    cr_assert_eq(test_broker_start(&emu.broker, &o), 0, "the broker fixture did not start");
    emu.broker_up = true;
}

static void teardown_plain(void) { emu_stop(&emu); }

TestSuite(azure_twin, .init = setup_emu, .fini = teardown_emu, .timeout = 120);
TestSuite(azure_twin_fake, .init = setup_plain, .fini = teardown_plain, .timeout = 120);

/* ------------------------------------------------------------ helpers */

typedef struct res {
    int n;
    int request, outcome, error, code;
    uint64_t id, version;
    char doc[2048];
    char msg[200];
} res;

static int on_result(ciot_shadow *s, const ciot_shadow_result *r, void *ud)
{
    (void)s;
    res *x = ud;
    x->n++;
    x->request = ciot_shadow_result_request(r);
    x->outcome = ciot_shadow_result_outcome(r);
    x->error = ciot_shadow_result_error(r);
    x->code = ciot_shadow_result_code(r);
    x->id = ciot_shadow_result_id(r);
    x->version = ciot_shadow_result_version(r);
    size_t len = 0;
    const char *d = ciot_shadow_result_document(r, &len);
    snprintf(x->doc, sizeof x->doc, "%.*s", (int)len, d ? d : "");
    snprintf(x->msg, sizeof x->msg, "%s", ciot_shadow_result_message(r));
    return 0;
}

/* Deltas, kept in order. */
typedef struct deltas {
    int n;
    uint64_t version[16];
    char doc[16][512];
} deltas;

static int on_delta(ciot_shadow *s, const ciot_shadow_result *r, void *ud)
{
    (void)s;
    deltas *d = ud;
    cr_assert_eq(ciot_shadow_result_request(r), CIOT_SHADOW_DELTA);
    if (d->n < 16) {
        size_t len = 0;
        const char *doc = ciot_shadow_result_document(r, &len);
        d->version[d->n] = ciot_shadow_result_version(r);
        snprintf(d->doc[d->n], sizeof d->doc[0], "%.*s", (int)len, doc ? doc : "");
    }
    d->n++;
    return 0;
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

static bool res_done(void *arg)
{
    return ((res *)arg)->n > 0;
}

typedef struct dwait {
    deltas *d;
    int want;
} dwait;

static bool deltas_at_least(void *arg)
{
    dwait *w = arg;
    return w->d->n >= w->want;
}

static ciot_client *device(const char *id, int timeout_ms)
{
    char cs[300];
    snprintf(cs, sizeof cs, "HostName=" HUB ";DeviceId=%s;SharedAccessKey=" KEY, id);
    ciot_config *cfg;
    cr_assert_eq(ciot_config_new(&cfg), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_BACKEND, CIOT_BACKEND_AZURE), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_AZURE_CONNECTION_STRING, cs), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_HOST, "127.0.0.1"), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PORT, emu.broker.port), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_TLS, 0), 0); /* loopback only */
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_RECONNECT_BASE_MS, 20), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_RECONNECT_MAX_MS, 200), 0);
    if (timeout_ms)
        cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_REQUEST_TIMEOUT_MS, timeout_ms), 0);
    ciot_client *c = h_client(cfg, NULL);
    ciot_config_free(cfg);
    return c;
}

static ciot_shadow *twin_of(ciot_client *c)
{
    ciot_shadow *s = NULL;
    int rc = ciot_shadow_new(&s, c, NULL, 0);
    cr_assert_eq(rc, 0, "ciot_shadow_new: %s: %s", ciot_err_name(rc), ciot_client_errmsg(c));
    return s;
}

static void connect_dev(ciot_client *c)
{
    cr_assert_eq(ciot_client_connect(c), 0);
    cr_assert(h_run_until(c, h_is_connected, c, WAIT_MS), "not connected: %s", ciot_client_errmsg(c));
}

/* Runs a request to its end. */
static void wait_res(ciot_client *c, res *r)
{
    cr_assert(h_run_until(c, res_done, r, WAIT_MS), "no result");
    cr_assert_eq(r->n, 1);
}

static void get_ok(ciot_client *c, ciot_shadow *s)
{
    res r = {0};
    cr_assert_eq(ciot_shadow_get(NULL, s, on_result, &r), 0);
    wait_res(c, &r);
    cr_assert_eq(r.outcome, CIOT_SHADOW_ACCEPTED, "get: %d %s", r.code, r.msg);
}

static void read_eq(ciot_shadow *s, int section, const char *want)
{
    char buf[1024];
    size_t len = 0;
    int rc = ciot_shadow_read(buf, sizeof buf, &len, s, section);
    cr_assert_eq(rc, 0, "read %d: %s", section, ciot_err_name(rc));
    cr_assert_str_eq(buf, want);
}

static tclient *admin(void)
{
    tclient *c = tc_new("operator", "cloudiot-admin", ADMIN_PW, NULL, NULL, NULL);
    cr_assert_not_null(c);
    cr_assert_eq(tc_connect(c, emu.broker.port), 0);
    cr_assert_eq(tc_sub(c, CTL_HUB "/response", 1), 1);
    return c;
}

/* update-twin through the control topic; returns the desired $version. */
static long update_desired(tclient *a, const char *id, const char *patch)
{
    char req[600];
    snprintf(req, sizeof req,
             "{\"op\":\"update-twin\",\"deviceId\":\"%s\",\"patch\":%s,\"requestId\":\"u\"}", id,
             patch);
    cr_assert_eq(tc_pub(a, CTL_HUB, req, 1), 0);
    tc_msg *m = tc_wait(a, CTL_HUB "/response", WAIT_MS);
    cr_assert_not_null(m, "no control response");
    json_error_t err;
    json_t *j = json_loads(m->payload, 0, &err);
    cr_assert_not_null(j);
    cr_assert_eq(json_integer_value(json_object_get(j, "status")), 200, "%s", m->payload);
    long v = (long)json_integer_value(
        json_object_get(json_object_get(json_object_get(j, "result"), "desired"), "$version"));
    json_decref(j);
    tc_msg_free(m);
    return v;
}

/* ------------------------------------------------------------ emulator */

Test(azure_twin, get_then_reported_patches_with_null_removal_and_the_hubs_version)
{
    ciot_client *c = device("td1", 0);
    ciot_shadow *s = twin_of(c);
    connect_dev(c);
    res g = {0};
    uint64_t gid = 0;
    cr_assert_eq(ciot_shadow_get(&gid, s, on_result, &g), 0);
    wait_res(c, &g);
    cr_assert_eq(g.outcome, CIOT_SHADOW_ACCEPTED);
    cr_assert_eq(g.request, CIOT_SHADOW_GET);
    cr_assert_eq(g.code, 200);
    cr_assert_eq(g.id, gid);
    cr_assert_str_eq(g.doc, "{\"desired\":{\"$version\":1},\"reported\":{\"$version\":1}}");
    read_eq(s, CIOT_SHADOW_REPORTED, "{}");
    cr_assert_eq(ciot_shadow_version(s), 1);

    const char *p1 = "{\"fw\":\"1.0\",\"temp\":{\"unit\":\"C\",\"max\":80}}";
    res u = {0};
    cr_assert_eq(ciot_shadow_update_reported(NULL, s, p1, strlen(p1), on_result, &u), 0);
    wait_res(c, &u);
    cr_assert_eq(u.outcome, CIOT_SHADOW_ACCEPTED, "%d %s", u.code, u.msg);
    cr_assert_eq(u.request, CIOT_SHADOW_UPDATE);
    cr_assert_eq(u.code, 204);
    cr_assert_eq(u.version, 2);
    const char *p2 = "{\"fw\":null,\"temp\":{\"max\":null}}";
    res u2 = {0};
    cr_assert_eq(ciot_shadow_update_reported(NULL, s, p2, strlen(p2), on_result, &u2), 0);
    wait_res(c, &u2);
    cr_assert_eq(u2.outcome, CIOT_SHADOW_ACCEPTED);
    cr_assert_eq(u2.version, 3);
    read_eq(s, CIOT_SHADOW_REPORTED, "{\"temp\":{\"unit\":\"C\"}}");
    /* the hub's document agrees */
    res g2 = {0};
    cr_assert_eq(ciot_shadow_get(NULL, s, on_result, &g2), 0);
    wait_res(c, &g2);
    cr_assert_str_eq(g2.doc, "{\"desired\":{\"$version\":1},"
                             "\"reported\":{\"temp\":{\"unit\":\"C\"},\"$version\":3}}");
    /* a patch the hub refuses: 400 with its message */
    const char *bad = "{\"a.b\":1}";
    res r = {0};
    cr_assert_eq(ciot_shadow_update_reported(NULL, s, bad, strlen(bad), on_result, &r), 0);
    wait_res(c, &r);
    cr_assert_eq(r.outcome, CIOT_SHADOW_REJECTED);
    cr_assert_eq(r.code, 400);
    cr_assert_neq(r.msg[0], '\0');
    cr_assert_null(strstr(r.msg, "no message"), "message: %s", r.msg);
    cr_assert_eq(ciot_shadow_pending(s), 0);
    cr_assert_eq(ciot_shadow_free(s), 0);
    cr_assert_eq(ciot_client_free(c), 0);
    finish_emu();
}

Test(azure_twin, a_desired_change_reaches_the_delta_callback_with_its_version)
{
    ciot_client *c = device("td1", 0);
    ciot_shadow *s = twin_of(c);
    deltas d = {0};
    ciot_shadow_set_delta_callback(s, on_delta, &d);
    connect_dev(c);
    get_ok(c, s);
    cr_assert_eq(d.n, 0, "an untouched twin is no change");
    tclient *a = admin();
    long v = update_desired(a, "td1", "{\"interval\":60,\"mode\":\"eco\"}");
    cr_assert_eq(v, 2);
    dwait w = {&d, 1};
    cr_assert(h_run_until(c, deltas_at_least, &w, WAIT_MS), "no delta");
    cr_assert_eq(d.version[0], 2);
    cr_assert_str_eq(d.doc[0], "{\"interval\":60,\"mode\":\"eco\",\"$version\":2}");
    read_eq(s, CIOT_SHADOW_DESIRED, "{\"interval\":60,\"mode\":\"eco\"}");
    cr_assert_eq(ciot_shadow_version(s), 2);
    /* DIFF: desired against reported */
    const char *rep = "{\"interval\":60}";
    res u = {0};
    cr_assert_eq(ciot_shadow_update_reported(NULL, s, rep, strlen(rep), on_result, &u), 0);
    wait_res(c, &u);
    read_eq(s, CIOT_SHADOW_DIFF, "{\"mode\":\"eco\"}");
    /* a removal travels as null */
    cr_assert_eq(update_desired(a, "td1", "{\"mode\":null}"), 3);
    w.want = 2;
    cr_assert(h_run_until(c, deltas_at_least, &w, WAIT_MS), "no second delta");
    cr_assert_eq(d.version[1], 3);
    cr_assert_str_eq(d.doc[1], "{\"mode\":null,\"$version\":3}");
    read_eq(s, CIOT_SHADOW_DESIRED, "{\"interval\":60}");
    char buf[8];
    cr_assert_eq(ciot_shadow_read(buf, sizeof buf, NULL, s, CIOT_SHADOW_DIFF), CIOT_ENOTFOUND);
    tc_free(a);
    cr_assert_eq(ciot_shadow_free(s), 0);
    cr_assert_eq(ciot_client_free(c), 0);
    finish_emu();
}

Test(azure_twin, after_a_broker_restart_the_twin_is_fetched_again_and_an_offline_change_is_seen)
{
    ciot_client *c = device("td1", 0);
    ciot_shadow *s = twin_of(c);
    deltas d = {0};
    ciot_shadow_set_delta_callback(s, on_delta, &d);
    connect_dev(c);
    tclient *a = admin();
    cr_assert_eq(update_desired(a, "td1", "{\"interval\":10}"), 2);
    dwait w = {&d, 1};
    cr_assert(h_run_until(c, deltas_at_least, &w, WAIT_MS), "no delta");
    tc_free(a);
    /* the broker dies; the device is not driven, so it stays away until
     * the change below is made */
    cr_assert_eq(test_broker_kill9(&emu.broker), 0);
    cr_assert(h_run_until(c, h_is_disconnected, c, WAIT_MS));
    int rc = emu_restart(&emu); /* with the sanitizer runtimes again */
    cr_assert_eq(rc, 0, "the broker did not restart");
    a = admin();
    cr_assert_eq(update_desired(a, "td1", "{\"interval\":30,\"led\":true}"), 3);
    /* reconnect, full GET, the whole desired section as a delta */
    w.want = 2;
    cr_assert(h_run_until(c, deltas_at_least, &w, 3 * WAIT_MS), "the offline change was not seen");
    cr_assert_eq(d.n, 2);
    cr_assert_eq(d.version[1], 3);
    cr_assert_str_eq(d.doc[1], "{\"interval\":30,\"led\":true}");
    read_eq(s, CIOT_SHADOW_DESIRED, "{\"interval\":30,\"led\":true}");
    cr_assert_eq(ciot_shadow_version(s), 3);
    /* a later patch goes on from there */
    cr_assert_eq(update_desired(a, "td1", "{\"led\":false}"), 4);
    w.want = 3;
    cr_assert(h_run_until(c, deltas_at_least, &w, WAIT_MS), "no delta after the reconnect");
    cr_assert_eq(d.version[2], 4);
    tc_free(a);
    cr_assert_eq(ciot_shadow_free(s), 0);
    cr_assert_eq(ciot_client_free(c), 0);
    finish_emu();
}

Test(azure_twin, a_request_without_an_answer_times_out_once)
{
    ciot_client *c = device("td1", 300);
    ciot_shadow *s = twin_of(c);
    connect_dev(c);
    get_ok(c, s);
    cr_assert_eq(test_broker_kill9(&emu.broker), 0);
    emu.broker_up = false;
    res r = {0};
    uint64_t t0 = h_now_ms();
    const char *p = "{\"x\":1}";
    cr_assert_eq(ciot_shadow_update_reported(NULL, s, p, strlen(p), on_result, &r), 0);
    wait_res(c, &r);
    uint64_t took = h_now_ms() - t0;
    cr_assert_eq(r.outcome, CIOT_SHADOW_FAILED);
    cr_assert_eq(r.error, CIOT_ETIMEDOUT);
    cr_assert(took >= 250 && took < 3000, "timed out after %llu ms", (unsigned long long)took);
    /* exactly one callback */
    h_run_until(c, never, NULL, 300);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(ciot_shadow_pending(s), 0);
    cr_assert_eq(ciot_shadow_free(s), 0);
    cr_assert_eq(ciot_client_free(c), 0);
}

Test(azure_twin, two_devices_never_see_each_others_replies)
{
    ciot_client *c1 = device("td1", 0), *c2 = device("td2", 0);
    ciot_shadow *s1 = twin_of(c1), *s2 = twin_of(c2);
    connect_dev(c1);
    connect_dev(c2);
    /* a raw device listening on every reply topic sees nothing of theirs */
    char tok[512];
    size_t tl = 0;
    cr_assert_eq(ciot_azure_sas_token(tok, sizeof tok, &tl, HUB, "td3", NULL, NULL, KEY,
                                      (uint64_t)time(NULL) + 3600),
                 0);
    tclient *spy = tc_new("td3", HUB "/td3/?api-version=2021-04-12", tok, NULL, NULL, NULL);
    cr_assert_not_null(spy);
    cr_assert_eq(tc_connect(spy, emu.broker.port), 0);
    cr_assert_eq(tc_sub(spy, "$iothub/twin/res/#", 1), 1);
    for (int i = 0; i < 5; i++) {
        char p1[64], p2[64];
        snprintf(p1, sizeof p1, "{\"who\":\"td1\",\"i\":%d}", i);
        snprintf(p2, sizeof p2, "{\"who\":\"td2\",\"i\":%d}", i);
        res r1 = {0}, r2 = {0};
        cr_assert_eq(ciot_shadow_update_reported(NULL, s1, p1, strlen(p1), on_result, &r1), 0);
        cr_assert_eq(ciot_shadow_update_reported(NULL, s2, p2, strlen(p2), on_result, &r2), 0);
        wait_res(c1, &r1);
        wait_res(c2, &r2);
        cr_assert_eq(r1.outcome, CIOT_SHADOW_ACCEPTED);
        cr_assert_eq(r2.outcome, CIOT_SHADOW_ACCEPTED);
        cr_assert_eq(r1.version, (uint64_t)i + 2);
        cr_assert_eq(r2.version, (uint64_t)i + 2);
    }
    res g1 = {0}, g2 = {0};
    cr_assert_eq(ciot_shadow_get(NULL, s1, on_result, &g1), 0);
    cr_assert_eq(ciot_shadow_get(NULL, s2, on_result, &g2), 0);
    wait_res(c1, &g1);
    wait_res(c2, &g2);
    cr_assert_not_null(strstr(g1.doc, "\"who\":\"td1\""), "%s", g1.doc);
    cr_assert_null(strstr(g1.doc, "td2"));
    cr_assert_not_null(strstr(g2.doc, "\"who\":\"td2\""), "%s", g2.doc);
    cr_assert_null(strstr(g2.doc, "td1"));
    read_eq(s1, CIOT_SHADOW_REPORTED, "{\"who\":\"td1\",\"i\":4}");
    read_eq(s2, CIOT_SHADOW_REPORTED, "{\"who\":\"td2\",\"i\":4}");
    tc_sleep_ms(100);
    cr_assert_eq(tc_get(spy, &spy->nmsgs), 0, "a reply leaked to another device");
    tc_free(spy);
    cr_assert_eq(ciot_shadow_free(s1), 0);
    cr_assert_eq(ciot_shadow_free(s2), 0);
    cr_assert_eq(ciot_client_free(c1), 0);
    cr_assert_eq(ciot_client_free(c2), 0);
    finish_emu();
}

/* ------------------------------------------------------------ a hub played by a test client */

/* The oldest message the hub holds, or NULL. */
static tc_msg *pop_any(tclient *c)
{
    pthread_mutex_lock(&c->lock);
    tc_msg *m = c->head;
    if (m) {
        c->head = m->next;
        if (c->tail == m)
            c->tail = NULL;
        c->nmsgs--;
        m->next = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    return m;
}

/* The next twin request of the device (already received); rid copied out. */
static tc_msg *next_request(tclient *hub, char *rid, size_t cap)
{
    tc_msg *m = pop_any(hub);
    cr_assert_not_null(m, "no request");
    const char *p = strstr(m->topic, "$rid=");
    cr_assert_not_null(p, "%s", m->topic);
    snprintf(rid, cap, "%s", p + 5);
    return m;
}

static bool hub_has_msg(void *arg)
{
    tclient *t = arg;
    return tc_get(t, &t->nmsgs) > 0;
}

Test(azure_twin_fake, stale_and_duplicate_desired_patches_are_ignored_and_rejections_carry_the_status)
{
    tclient *hub = tc_new("hub", NULL, NULL, NULL, NULL, NULL);
    cr_assert_not_null(hub);
    cr_assert_eq(tc_connect(hub, emu.broker.port), 0);
    cr_assert_eq(tc_sub(hub, "$iothub/twin/GET/#", 1), 1);
    cr_assert_eq(tc_sub(hub, "$iothub/twin/PATCH/properties/reported/#", 1), 1);
    ciot_client *c = device("fd1", 0);
    ciot_shadow *s = twin_of(c);
    deltas d = {0};
    ciot_shadow_set_delta_callback(s, on_delta, &d);
    connect_dev(c);
    /* the GET of the connect */
    cr_assert(h_run_until(c, hub_has_msg, hub, WAIT_MS), "no GET");
    char rid[64], topic[200];
    tc_msg *m = next_request(hub, rid, sizeof rid);
    cr_assert(strncmp(m->topic, "$iothub/twin/GET/?$rid=", 23) == 0, "%s", m->topic);
    tc_msg_free(m);
    snprintf(topic, sizeof topic, "$iothub/twin/res/200/?$rid=%s", rid);
    cr_assert_eq(tc_pub(hub, topic, "{\"desired\":{\"a\":1,\"$version\":5},"
                                    "\"reported\":{\"$version\":2}}", 1), 0);
    dwait w = {&d, 1};
    cr_assert(h_run_until(c, deltas_at_least, &w, WAIT_MS), "no delta from the GET");
    cr_assert_eq(d.version[0], 5);
    cr_assert_str_eq(d.doc[0], "{\"a\":1}");
    /* stale (version 4, 5) and duplicate (6 twice) patches */
    const char *pd = "$iothub/twin/PATCH/properties/desired/?$version=";
    char t[120];
    snprintf(t, sizeof t, "%s4", pd);
    cr_assert_eq(tc_pub(hub, t, "{\"a\":4,\"$version\":4}", 1), 0);
    snprintf(t, sizeof t, "%s5", pd);
    cr_assert_eq(tc_pub(hub, t, "{\"a\":5,\"$version\":5}", 1), 0);
    snprintf(t, sizeof t, "%s6", pd);
    cr_assert_eq(tc_pub(hub, t, "{\"a\":6,\"$version\":6}", 1), 0);
    cr_assert_eq(tc_pub(hub, t, "{\"a\":6,\"$version\":6}", 1), 0);
    w.want = 2;
    cr_assert(h_run_until(c, deltas_at_least, &w, WAIT_MS), "no delta for version 6");
    h_run_until(c, never, NULL, 300);
    cr_assert_eq(d.n, 2, "stale or duplicate patches were delivered");
    cr_assert_eq(d.version[1], 6);
    read_eq(s, CIOT_SHADOW_DESIRED, "{\"a\":6}");
    /* a gap (8 after 6): delivered, and the twin is fetched again */
    snprintf(t, sizeof t, "%s8", pd);
    cr_assert_eq(tc_pub(hub, t, "{\"b\":8,\"$version\":8}", 1), 0);
    cr_assert(h_run_until(c, hub_has_msg, hub, WAIT_MS), "no GET after a gap");
    m = next_request(hub, rid, sizeof rid);
    cr_assert(strncmp(m->topic, "$iothub/twin/GET/", 17) == 0, "%s", m->topic);
    tc_msg_free(m);
    cr_assert_eq(d.n, 3);
    /* a rejection: status and the body's message */
    const char *p = "{\"x\":1}";
    res r = {0};
    cr_assert_eq(ciot_shadow_update_reported(NULL, s, p, strlen(p), on_result, &r), 0);
    cr_assert(h_run_until(c, hub_has_msg, hub, WAIT_MS), "no PATCH");
    m = next_request(hub, rid, sizeof rid);
    cr_assert(strncmp(m->topic, "$iothub/twin/PATCH/properties/reported/?$rid=", 45) == 0, "%s",
              m->topic);
    cr_assert_str_eq(m->payload, p);
    tc_msg_free(m);
    /* an answer to someone else's rid ends nothing */
    cr_assert_eq(tc_pub(hub, "$iothub/twin/res/204/?$rid=zz-1&$version=9", "", 1), 0);
    snprintf(topic, sizeof topic, "$iothub/twin/res/429/?$rid=%s", rid);
    cr_assert_eq(tc_pub(hub, topic, "{\"message\":\"throttled\"}", 1), 0);
    wait_res(c, &r);
    cr_assert_eq(r.outcome, CIOT_SHADOW_REJECTED);
    cr_assert_eq(r.code, 429);
    cr_assert_str_eq(r.msg, "throttled");
    /* a late duplicate of the same answer is ignored */
    cr_assert_eq(tc_pub(hub, topic, "{\"message\":\"throttled\"}", 1), 0);
    h_run_until(c, never, NULL, 200);
    cr_assert_eq(r.n, 1);
    tc_free(hub);
    cr_assert_eq(ciot_shadow_free(s), 0);
    cr_assert_eq(ciot_client_free(c), 0);
}

Test(azure_twin_fake, what_a_device_cannot_do_on_iothub_gives_the_documented_errors)
{
    ciot_client *c = device("fd1", 0);
    ciot_shadow *s = NULL;
    cr_assert_eq(ciot_shadow_new(&s, c, "named", 5), CIOT_EINVAL);
    cr_assert_null(s);
    cr_assert_not_null(strstr(ciot_client_errmsg(c), "one twin per device"), "%s",
                       ciot_client_errmsg(c));
    s = twin_of(c);
    const char *p = "{\"a\":1}";
    cr_assert_eq(ciot_shadow_update_desired(NULL, s, p, strlen(p), NULL, NULL), CIOT_EINVAL);
    cr_assert_not_null(strstr(ciot_client_errmsg(c), "cannot change desired"), "%s",
                       ciot_client_errmsg(c));
    cr_assert_eq(ciot_shadow_delete(NULL, s, NULL, NULL), CIOT_EINVAL);
    cr_assert_not_null(strstr(ciot_client_errmsg(c), "cannot delete"), "%s",
                       ciot_client_errmsg(c));
    /* a reported patch is an object: null (AWS: remove the section) is refused */
    cr_assert_eq(ciot_shadow_update_reported(NULL, s, "null", 4, NULL, NULL), CIOT_EINVAL);
    cr_assert_eq(ciot_shadow_update_reported(NULL, s, "[1]", 3, NULL, NULL), CIOT_EINVAL);
    /* nothing fetched yet */
    char buf[16];
    cr_assert_eq(ciot_shadow_read(buf, sizeof buf, NULL, s, CIOT_SHADOW_DESIRED), CIOT_ENOTFOUND);
    cr_assert_eq(ciot_shadow_version(s), 0);
    cr_assert_eq(ciot_shadow_pending(s), 0);
    cr_assert_eq(ciot_shadow_free(s), 0);
    cr_assert_eq(ciot_client_free(c), 0);
}
