/* The library's Azure IoT Hub backend (CIOT_BACKEND_AZURE) end to end
 * against the emulator plugin in a real mosquitto, devices provisioned with
 * the launcher: telemetry with application properties seen by the service
 * side byte for byte, direct methods through invoke-device-method (the
 * seed's reboot/getStatus, unknown -> 404), cloud-to-device messages with
 * properties, SAS tokens renewed during a QoS 1 stream before the emulator
 * kicks them, expired and forged tokens refused, and method calls that never
 * reach another device. */
#include "emu_fixture.h"
#include "tclient.h"

#include <cloudiot/cloudiot.h>

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ADMIN_PW "s3cret-admin"
#define HUB "test-hub.azure-devices.net"
#define CTL "$CONTROL/cloudiot/v1/iothub"
#define WAIT_MS 8000

static emu_fixture emu;

/* ------------------------------------------------------------ fixture */

/* The connection string of a device, from the launcher. */
static void connection_string(const char *id, char cs[512])
{
    char out[2048];
    cr_assert_eq(emu_launcher(&emu, out, sizeof out, "device-connection-string --device-id %s", id), 0);
    json_error_t err;
    json_t *j = json_loads(out, 0, &err);
    cr_assert_not_null(j, "not JSON: %s", out);
    const char *s = json_string_value(json_object_get(j, "connectionString"));
    cr_assert_not_null(s);
    snprintf(cs, 512, "%s", s);
    json_decref(j);
}

static void setup(void)
{
    emu_data_dir_make(&emu, "/tmp/ciot-azlib-XXXXXX");
    cr_assert_eq(emu_launcher(&emu, NULL, 0, "create-device --device-id d1 --hub-name test-hub"), 0);
    cr_assert_eq(emu_launcher(&emu, NULL, 0, "create-device --device-id d2"), 0);
    emu_start(&emu, false, "plugin_opt_admin_password " ADMIN_PW "\n");
}

static void teardown(void) { emu_teardown(&emu); }
/* Stops the broker and fails on any sanitizer report about the plugin. */
static void finish(void) { emu_finish(&emu); }

TestSuite(azure_emulator, .init = setup, .fini = teardown, .timeout = 120);

/* ------------------------------------------------------------ the device side */

typedef struct dev {
    ciot_client *c;
    char name[16];
    int connects, subscribed, errors, last_error, acked;
    char error_text[256];
    int reboots, statuses, pings, c2d;
    char c2d_payload[256];
    char c2d_props[512];
} dev;

static int on_event(ciot_client *c, const ciot_event *ev, void *ud)
{
    (void)c;
    dev *d = ud;
    switch (ciot_event_type_of(ev)) {
    case CIOT_EVENT_CONNECTED: d->connects++; break;
    case CIOT_EVENT_SUBSCRIBED: d->subscribed++; break;
    case CIOT_EVENT_PUBLISH_ACKED: d->acked++; break;
    case CIOT_EVENT_ERROR:
        d->errors++;
        d->last_error = ciot_event_error(ev);
        snprintf(d->error_text, sizeof d->error_text, "%s", ciot_event_text(ev));
        break;
    default: break;
    }
    return 0;
}

static int answer(ciot_client *c, const ciot_method_request *req, int status, const char *json)
{
    size_t rl;
    const char *rid = ciot_method_request_id(req, &rl);
    cr_assert_eq(ciot_method_respond(c, rid, rl, status, json, strlen(json)), 0);
    return 0;
}

static int on_reboot(ciot_client *c, const ciot_method_request *req, void *ud)
{
    ((dev *)ud)->reboots++;
    return answer(c, req, 200, "{\"result\":\"rebooting\"}");
}

static int on_get_status(ciot_client *c, const ciot_method_request *req, void *ud)
{
    ((dev *)ud)->statuses++;
    size_t pl;
    const char *p = ciot_method_request_payload(req, &pl);
    cr_assert_eq(pl, 13);
    cr_assert_eq(memcmp(p, "{\"verbose\":1}", 13), 0, "%.*s", (int)pl, p);
    return answer(c, req, 200, "{\"uptimeSeconds\":12,\"memory\":{\"totalKb\":1024}}");
}

static int on_ping(ciot_client *c, const ciot_method_request *req, void *ud)
{
    dev *d = ud;
    d->pings++;
    char buf[64];
    snprintf(buf, sizeof buf, "{\"device\":\"%s\"}", d->name);
    return answer(c, req, 200, buf);
}

static int on_c2d(ciot_client *c, const ciot_azure_c2d *msg, void *ud)
{
    (void)c;
    dev *d = ud;
    size_t len;
    const char *p = ciot_azure_c2d_payload(msg, &len);
    snprintf(d->c2d_payload, sizeof d->c2d_payload, "%.*s", (int)len, p);
    d->c2d_props[0] = '\0';
    for (size_t i = 0; i < ciot_azure_c2d_property_count(msg); i++) {
        ciot_view n, v;
        bool hv;
        cr_assert_eq(ciot_azure_c2d_property(&n, &v, &hv, msg, i), 0);
        size_t used = strlen(d->c2d_props);
        snprintf(d->c2d_props + used, sizeof d->c2d_props - used, "%s%.*s=%.*s", i ? "|" : "",
                 (int)n.len, n.ptr, (int)v.len, v.ptr);
    }
    d->c2d++;
    return 0;
}

/* A client of the Azure backend for cs, on the broker's plain loopback listener. */
static void dev_new(dev *d, const char *name, const char *cs, int lifetime_s, int renew_pct)
{
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    ciot_config *cfg;
    cr_assert_eq(ciot_config_new(&cfg), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_BACKEND, CIOT_BACKEND_AZURE), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_AZURE_CONNECTION_STRING, cs), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_HOST, "127.0.0.1"), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PORT, emu.broker.port), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_TLS, 0), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_RECONNECT_BASE_MS, 100), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_RECONNECT_MAX_MS, 500), 0);
    if (lifetime_s)
        cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_SAS_TOKEN_LIFETIME_S, lifetime_s), 0);
    if (renew_pct)
        cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_SAS_RENEW_PERCENT, renew_pct), 0);
    int rc = ciot_client_new(&d->c, cfg);
    cr_assert_eq(rc, 0, "%s: %s", ciot_err_name(rc), ciot_config_errmsg(cfg));
    ciot_config_free(cfg);
    ciot_client_set_event_callback(d->c, on_event, d);
}

static void dev_free(dev *d)
{
    if (d->c) {
        (void)!ciot_client_disconnect(d->c);
        (void)!ciot_client_free(d->c);
    }
    d->c = NULL;
}

/* Drives the devices' clients until pred holds or ms pass. */
static bool pump(dev **ds, int n, bool (*pred)(void *), void *arg, int ms)
{
    uint64_t end = tc_now_ms() + (uint64_t)ms;
    while (!pred(arg)) {
        if (tc_now_ms() >= end)
            return false;
        for (int i = 0; i < n; i++)
            cr_assert_eq(ciot_client_run(ds[i]->c, 5), 0, "%s", ciot_client_errmsg(ds[i]->c));
    }
    return true;
}

static bool subscribed_twice(void *a) { return ((dev *)a)->subscribed >= 2; }
static bool has_error(void *a) { return ((dev *)a)->errors >= 1; }

/* ------------------------------------------------------------ the service side */

static tclient *admin(void)
{
    tclient *c = tc_new("operator", "cloudiot-admin", ADMIN_PW, NULL, NULL, NULL);
    cr_assert_not_null(c);
    cr_assert_eq(tc_connect(c, emu.broker.port), 0);
    cr_assert_eq(tc_sub(c, CTL "/response", 1), 1);
    return c;
}

struct ctl_wait {
    tclient *a;
    tc_msg *m;
};

static bool got_response(void *arg)
{
    struct ctl_wait *w = arg;
    if (!w->m)
        w->m = tc_wait(w->a, CTL "/response", 0);
    return w->m != NULL;
}

/* Sends a control request and drives the devices until its answer arrives. */
static json_t *ctl(tclient *a, dev **ds, int n, const char *req)
{
    cr_assert_eq(tc_pub(a, CTL, req, 1), 0);
    struct ctl_wait w = {a, NULL};
    cr_assert(pump(ds, n, got_response, &w, WAIT_MS), "no control response to %s", req);
    json_error_t err;
    json_t *j = json_loads(w.m->payload, 0, &err);
    cr_assert_not_null(j, "not JSON: %s", w.m->payload);
    tc_msg_free(w.m);
    return j;
}

static char *dump(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    cr_assert_not_null(s);
    return s;
}

/* ------------------------------------------------------------ tests */

struct acked_arg {
    dev *d;
    int n;
};
static bool acked_n(void *a)
{
    struct acked_arg *x = a;
    return x->d->acked >= x->n;
}

Test(azure_emulator, telemetry_properties_reach_the_service_byte_for_byte)
{
    tclient *a = admin();
    cr_assert_eq(tc_sub(a, "devices/+/messages/events/#", 1), 1);
    char cs[512];
    connection_string("d1", cs);
    dev d;
    dev_new(&d, "d1", cs, 0, 0);
    cr_assert_eq(ciot_client_connect(d.c), 0);
    static const ciot_property props[3] = {
        {"temperatureAlert", 16, "true", 4},
        {"deviceType", 10, "temperature sensor/v2", 21},
        {"timestamp", 9, "2026-11-26T10:00:00Z", 20},
    };
    ciot_telemetry_opts o = CIOT_TELEMETRY_OPTS_INIT;
    o.properties = props;
    o.property_count = 3;
    o.message_id = "m-1";
    o.message_id_len = 3;
    static const char body[] = "{\"deviceId\":\"d1\",\"value\":36.5}";
    cr_assert_eq(ciot_telemetry_send_json(NULL, d.c, "temperature", 11, body, sizeof body - 1, &o),
                 0, "%s", ciot_client_errmsg(d.c));
    dev *ds[1] = {&d};
    struct acked_arg x = {&d, 1};
    cr_assert(pump(ds, 1, acked_n, &x, WAIT_MS), "not acknowledged: %s", ciot_client_errmsg(d.c));
    const char *topic = "devices/d1/messages/events/$.ct=application%2Fjson&$.ce=utf-8&$.mid=m-1"
                        "&temperatureAlert=true&deviceType=temperature%20sensor%2Fv2"
                        "&timestamp=2026-11-26T10%3A00%3A00Z";
    tc_msg *m = tc_wait(a, topic, WAIT_MS);
    cr_assert_not_null(m, "the service side did not get the message on %s (got %d other)", topic,
                       tc_count(a, "devices/"));
    cr_assert_eq(m->len, (int)sizeof body - 1);
    cr_assert_eq(memcmp(m->payload, body, sizeof body - 1), 0);
    tc_msg_free(m);
    dev_free(&d);
    tc_free(a);
    finish();
}

Test(azure_emulator, reboot_and_get_status_round_trip_and_an_unknown_method_gets_404)
{
    tclient *a = admin();
    char cs[512];
    connection_string("d1", cs);
    dev d;
    dev_new(&d, "d1", cs, 0, 0);
    cr_assert_eq(ciot_method_register(d.c, "reboot", 6, on_reboot, &d), 0);
    cr_assert_eq(ciot_method_register(d.c, "getStatus", 9, on_get_status, &d), 0);
    cr_assert_eq(ciot_azure_c2d_set_callback(d.c, on_c2d, &d), 0);
    cr_assert_eq(ciot_client_connect(d.c), 0);
    dev *ds[1] = {&d};
    cr_assert(pump(ds, 1, subscribed_twice, &d, WAIT_MS), "no subscriptions: %s",
              ciot_client_errmsg(d.c));

    json_t *r = ctl(a, ds, 1,
                    "{\"op\":\"invoke-device-method\",\"requestId\":\"r1\",\"deviceId\":\"d1\","
                    "\"methodName\":\"reboot\",\"payload\":{}}");
    char *s = dump(json_object_get(r, "result"));
    cr_assert_str_eq(s, "{\"status\":200,\"payload\":{\"result\":\"rebooting\"}}");
    free(s);
    json_decref(r);
    r = ctl(a, ds, 1,
            "{\"op\":\"invoke-device-method\",\"requestId\":\"r2\",\"deviceId\":\"d1\","
            "\"methodName\":\"getStatus\",\"payload\":{\"verbose\":1}}");
    s = dump(json_object_get(r, "result"));
    cr_assert_str_eq(s, "{\"status\":200,\"payload\":{\"uptimeSeconds\":12,\"memory\":{\"totalKb\":"
                        "1024}}}");
    free(s);
    json_decref(r);
    r = ctl(a, ds, 1,
            "{\"op\":\"invoke-device-method\",\"requestId\":\"r3\",\"deviceId\":\"d1\","
            "\"methodName\":\"selfDestruct\",\"payload\":null}");
    cr_assert_eq(json_integer_value(json_object_get(r, "status")), 200);
    s = dump(json_object_get(r, "result"));
    cr_assert_str_eq(s, "{\"status\":404,\"payload\":{\"message\":\"method \\\"selfDestruct\\\" is "
                        "not registered on this device\"}}");
    free(s);
    json_decref(r);
    cr_assert_eq(d.reboots, 1);
    cr_assert_eq(d.statuses, 1);
    dev_free(&d);
    tc_free(a);
    finish();
}

static bool got_c2d(void *a) { return ((dev *)a)->c2d >= 1; }

Test(azure_emulator, a_c2d_message_reaches_the_callback_with_its_properties)
{
    tclient *a = admin();
    char cs[512];
    connection_string("d1", cs);
    dev d;
    dev_new(&d, "d1", cs, 0, 0);
    cr_assert_eq(ciot_azure_c2d_set_callback(d.c, on_c2d, &d), 0);
    cr_assert_eq(ciot_method_register(d.c, "reboot", 6, on_reboot, &d), 0);
    cr_assert_eq(ciot_client_connect(d.c), 0);
    dev *ds[1] = {&d};
    cr_assert(pump(ds, 1, subscribed_twice, &d, WAIT_MS), "no subscriptions");
    json_t *r = ctl(a, ds, 1,
                    "{\"op\":\"send-c2d-message\",\"requestId\":\"c1\",\"deviceId\":\"d1\","
                    "\"payload\":\"blink 3 times\",\"messageId\":\"msg-7\","
                    "\"properties\":{\"priority\":\"high\",\"note\":\"a b&c=d\"}}");
    cr_assert_eq(json_integer_value(json_object_get(r, "status")), 200);
    json_decref(r);
    cr_assert(pump(ds, 1, got_c2d, &d, WAIT_MS), "no C2D message");
    cr_assert_str_eq(d.c2d_payload, "blink 3 times");
    cr_assert(strstr(d.c2d_props, "$.mid=msg-7") != NULL, "%s", d.c2d_props);
    cr_assert(strstr(d.c2d_props, "priority=high|note=a b&c=d") != NULL, "%s", d.c2d_props);
    dev_free(&d);
    tc_free(a);
    finish();
}

/* CIOT_TEST_SCALE below 1 (valgrind) stretches the token's lifetime (and the
 * stream with it) so that a slowed-down reconnect still fits in it. */
static int token_lifetime_s(void)
{
    const char *e = getenv("CIOT_TEST_SCALE");
    double scale = e && *e ? strtod(e, NULL) : 1.0;
    if (!(scale > 0) || scale >= 1)
        return 3;
    double l = 3.0 / scale;
    return l > 20 ? 20 : (int)l;
}

/* A 3 s token renewed at 50 %: the client reconnects with a fresh one every
 * 1.5 s, before the emulator would close the connection at expiry; a 120
 * message QoS 1 stream over two lifetimes (~6 s) arrives complete and in
 * order. */
Test(azure_emulator, a_short_token_is_renewed_during_a_qos1_stream_without_loss_or_kick)
{
    tclient *a = admin();
    cr_assert_eq(tc_sub(a, "devices/d1/messages/events/#", 1), 1);
    char cs[512];
    connection_string("d1", cs);
    dev d;
    int lifetime = token_lifetime_s();
    dev_new(&d, "d1", cs, lifetime, 50);
    cr_assert_eq(ciot_client_connect(d.c), 0);
    dev *ds[1] = {&d};
    enum { N = 120 };
    uint64_t next = tc_now_ms();
    for (int i = 0; i < N; i++) {
        char body[32];
        int n = snprintf(body, sizeof body, "{\"seq\":%d}", i);
        cr_assert_eq(ciot_telemetry_send_json(NULL, d.c, "seq", 3, body, (size_t)n, NULL), 0,
                     "%s", ciot_client_errmsg(d.c));
        next += (uint64_t)(50 * lifetime / 3);
        while (tc_now_ms() < next)
            cr_assert_eq(ciot_client_run(d.c, 5), 0);
    }
    struct acked_arg x = {&d, N};
    cr_assert(pump(ds, 1, acked_n, &x, 3 * WAIT_MS), "only %d of %d acknowledged", d.acked, N);
    for (int i = 0; i < N; i++) {
        tc_msg *m = NULL;
        for (uint64_t end = tc_now_ms() + WAIT_MS; !m && tc_now_ms() < end;) {
            pthread_mutex_lock(&a->lock);
            m = a->head;
            if (m) {
                a->head = m->next;
                if (!a->head)
                    a->tail = NULL;
                a->nmsgs--;
                m->next = NULL;
            }
            pthread_mutex_unlock(&a->lock);
            if (!m)
                tc_sleep_ms(2);
        }
        cr_assert_not_null(m, "message %d never arrived", i);
        char want[32];
        snprintf(want, sizeof want, "{\"seq\":%d}", i);
        cr_assert_str_eq(m->payload, want, "out of order or lost at %d", i);
        tc_msg_free(m);
    }
    cr_assert_geq(d.connects, 3, "the token was not renewed (%d connections)", d.connects);
    cr_assert_eq(test_broker_log_count(&emu.broker, "Azure SAS token expired"), 0,
                 "the emulator had to close an expired connection");
    dev_free(&d);
    tc_free(a);
    finish();
}

Test(azure_emulator, expired_and_forged_tokens_are_refused_with_ciot_eauth)
{
    /* a ready-made token that expired a minute ago */
    char key[128];
    char cs[512];
    connection_string("d1", cs);
    const char *k = strstr(cs, "SharedAccessKey=");
    cr_assert_not_null(k);
    snprintf(key, sizeof key, "%s", k + 16);
    char tok[1024], cs_exp[1400];
    size_t tl = 0;
    cr_assert_eq(ciot_azure_sas_token(tok, sizeof tok, &tl, HUB, "d1", NULL, NULL, key,
                                      (uint64_t)time(NULL) - 60),
                 0);
    snprintf(cs_exp, sizeof cs_exp, "HostName=" HUB ";DeviceId=d1;SharedAccessSignature=%s", tok);
    dev d;
    dev_new(&d, "d1", cs_exp, 0, 0);
    cr_assert_eq(ciot_client_connect(d.c), 0);
    dev *ds[1] = {&d};
    cr_assert(pump(ds, 1, has_error, &d, WAIT_MS), "no error for an expired token");
    cr_assert_eq(d.last_error, CIOT_EAUTH, "got %s: %s", ciot_err_name(d.last_error),
                 d.error_text);
    cr_assert(strstr(d.error_text, "not authorized") != NULL, "%s", d.error_text);
    cr_assert_eq(d.connects, 0);
    dev_free(&d);
    cr_assert_geq(test_broker_log_count(&emu.broker, "token expired"), 1);

    /* a token signed with a key that is not the device's */
    dev_new(&d, "d1",
            "HostName=" HUB ";DeviceId=d1;SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            0, 0);
    cr_assert_eq(ciot_client_connect(d.c), 0);
    cr_assert(pump(ds, 1, has_error, &d, WAIT_MS), "no error for a forged token");
    cr_assert_eq(d.last_error, CIOT_EAUTH, "got %s: %s", ciot_err_name(d.last_error),
                 d.error_text);
    cr_assert_eq(d.connects, 0);
    cr_assert(strstr(d.error_text, "AAECAwQF") == NULL, "the key must never appear");
    dev_free(&d);
    cr_assert_geq(test_broker_log_count(&emu.broker, "bad signature"), 1);
    finish();
}

struct two {
    dev *a, *b;
};
static bool both_subscribed(void *arg)
{
    struct two *t = arg;
    return t->a->subscribed >= 1 && t->b->subscribed >= 1;
}

Test(azure_emulator, two_devices_never_receive_each_others_method_calls)
{
    tclient *a = admin();
    char cs1[512], cs2[512];
    connection_string("d1", cs1);
    connection_string("d2", cs2);
    dev d1, d2;
    dev_new(&d1, "d1", cs1, 0, 0);
    dev_new(&d2, "d2", cs2, 0, 0);
    cr_assert_eq(ciot_method_register(d1.c, "ping", 4, on_ping, &d1), 0);
    cr_assert_eq(ciot_method_register(d2.c, "ping", 4, on_ping, &d2), 0);
    cr_assert_eq(ciot_client_connect(d1.c), 0);
    cr_assert_eq(ciot_client_connect(d2.c), 0);
    dev *ds[2] = {&d1, &d2};
    struct two t = {&d1, &d2};
    cr_assert(pump(ds, 2, both_subscribed, &t, WAIT_MS), "no subscriptions");
    const char *targets[3] = {"d1", "d1", "d2"};
    for (int i = 0; i < 3; i++) {
        char req[256];
        snprintf(req, sizeof req,
                 "{\"op\":\"invoke-device-method\",\"requestId\":\"p%d\",\"deviceId\":\"%s\","
                 "\"methodName\":\"ping\",\"payload\":{}}",
                 i, targets[i]);
        json_t *r = ctl(a, ds, 2, req);
        char *s = dump(json_object_get(r, "result"));
        char want[128];
        snprintf(want, sizeof want, "{\"status\":200,\"payload\":{\"device\":\"%s\"}}",
                 targets[i]);
        cr_assert_str_eq(s, want);
        free(s);
        json_decref(r);
    }
    /* give a leaked call time to show up */
    uint64_t end = tc_now_ms() + 300;
    while (tc_now_ms() < end)
        for (int i = 0; i < 2; i++)
            cr_assert_eq(ciot_client_run(ds[i]->c, 5), 0);
    cr_assert_eq(d1.pings, 2);
    cr_assert_eq(d2.pings, 1);
    dev_free(&d1);
    dev_free(&d2);
    tc_free(a);
    finish();
}
