/*
 * End to end: the library (ciot_client with CIOT_BACKEND_AWS over mutual
 * TLS, telemetry, commands, ciot_shadow) against the emulator plugin in a
 * real mosquitto, with the developer guide's SensorDevicePolicy
 * (examples/policies/SensorDevicePolicy.json) attached to the test PKI's
 * device1 and device2 certificates. The service side (the fleet operator:
 * commands, desired state over $CONTROL, reading the telemetry) is a plain
 * libmosquitto client with the admin password on the plain listener.
 */
#include "harness.h"
#include "shadow_rec.h"
#include "emu_fixture.h"
#include "tclient.h"

#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef CIOT_TEST_SENSOR_POLICY
#error "CIOT_TEST_SENSOR_POLICY must name examples/policies/SensorDevicePolicy.json"
#endif

#define ADMIN_PW "e2e-admin-pw"
#define CTL_DATA "$CONTROL/cloudiot/v1/iot-data"
#define ARN "arn:aws:iot:us-east-1:123456789012:"

static emu_fixture emu;

/* Waits are multiplied under valgrind (CIOT_TEST_SCALE < 1), at most 5x. */
static int W(int ms)
{
    double s = h_scale();
    double f = s < 1.0 ? 1.0 / s : 1.0;
    if (f > 5.0)
        f = 5.0;
    return (int)(ms * f);
}

/* ------------------------------------------------------------ fixture */

static void setup(void)
{
    emu_data_dir_make(&emu, "/tmp/ciot-e2e-XXXXXX");
    /* The guide's policy, as written in examples/. */
    emu_register_policy(&emu, "SensorDevicePolicy", emu_slurp(CIOT_TEST_SENSOR_POLICY));
    emu_register_cert(&emu, "device1", "ACTIVE", "SensorDevicePolicy", "device1");
    emu_register_cert(&emu, "device2", "ACTIVE", "SensorDevicePolicy", "device2");
    emu_write_thing(&emu, "device1");
    emu_write_thing(&emu, "device2");
    emu_start(&emu, true, "plugin_opt_admin_password " ADMIN_PW "\nplugin_opt_policies enforce\n");
}

static void teardown(void) { emu_teardown(&emu); }
static void finish(void) { emu_finish(&emu); }
static int restart_broker(void) { return emu_restart(&emu); }

/* ------------------------------------------------------------ the service side */

static tclient *admin_client(const char *id)
{
    tclient *c = tc_new(id, "cloudiot-admin", ADMIN_PW, NULL, NULL, NULL);
    cr_assert_not_null(c);
    cr_assert_eq(tc_connect(c, emu.broker.port), 0, "the admin %s could not connect", id);
    cr_assert_eq(tc_sub(c, CTL_DATA "/response", 1), 1);
    return c;
}

/* An iot-data request over the control topic; the parsed response. */
static json_t *control(tclient *admin, const char *req)
{
    cr_assert_eq(tc_pub(admin, CTL_DATA, req, 1), 0);
    tc_msg *m = tc_wait(admin, CTL_DATA "/response", W(5000));
    cr_assert_not_null(m, "no control response to %s", req);
    json_error_t err;
    json_t *j = json_loads(m->payload, 0, &err);
    cr_assert_not_null(j, "response is not JSON: %s", m->payload);
    tc_msg_free(m);
    return j;
}

static int status_of(json_t *resp)
{
    return (int)json_integer_value(json_object_get(resp, "status"));
}

/* get-thing-shadow: the result document (status 200 asserted). */
static json_t *service_get(tclient *admin, const char *thing, const char *shadow)
{
    char req[300];
    if (shadow)
        snprintf(req, sizeof req,
                 "{\"op\":\"get-thing-shadow\",\"thingName\":\"%s\",\"shadowName\":\"%s\"}", thing,
                 shadow);
    else
        snprintf(req, sizeof req, "{\"op\":\"get-thing-shadow\",\"thingName\":\"%s\"}", thing);
    json_t *r = control(admin, req);
    cr_assert_eq(status_of(r), 200, "get-thing-shadow %s: %s", thing,
                 json_string_value(json_object_get(r, "error")));
    json_t *res = json_incref(json_object_get(r, "result"));
    json_decref(r);
    return res;
}

/* update-thing-shadow with a desired state; the new version. */
static long long service_desire(tclient *admin, const char *thing, const char *shadow,
                                const char *desired, const char *token)
{
    char req[1024], name[128] = "";
    if (shadow)
        snprintf(name, sizeof name, ",\"shadowName\":\"%s\"", shadow);
    snprintf(req, sizeof req,
             "{\"op\":\"update-thing-shadow\",\"thingName\":\"%s\"%s,\"payload\":{\"state\":{"
             "\"desired\":%s},\"clientToken\":\"%s\"}}",
             thing, name, desired, token);
    json_t *r = control(admin, req);
    cr_assert_eq(status_of(r), 200, "update-thing-shadow: %s",
                 json_string_value(json_object_get(r, "error")));
    long long v = json_integer_value(json_object_get(json_object_get(r, "result"), "version"));
    json_decref(r);
    return v;
}

static void assert_json_eq(json_t *got, const char *want)
{
    json_error_t err;
    json_t *w = json_loads(want, JSON_DECODE_ANY, &err);
    cr_assert_not_null(w, "bad test JSON %s", want);
    char *g = got ? json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    cr_assert(json_equal(got, w), "got %s, want %s", g ? g : "(none)", want);
    free(g);
    json_decref(w);
}

/* ------------------------------------------------------------ the device side */

/* Every event of a client, in order. */
#define REC_MAX 64
typedef struct rec_ev {
    int type, error;
    uint64_t id;
    char text[200];
    char topic[160];
} rec_ev;

typedef struct rec {
    pthread_mutex_t lock;
    rec_ev ev[REC_MAX];
    int n;
    int connected, disconnected, errors, acked;
    ciot_message_fn unsub_handler; /* at the unsub_at'th refused subscription: unsubscribe it */
    void *unsub_ud;
    int unsub_at;
} rec;

static void rec_init(rec *r)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->lock, NULL);
}

static int on_rec(ciot_client *c, const ciot_event *ev, void *ud)
{
    rec *r = ud;
    int type = ciot_event_type_of(ev);
    size_t tl = 0;
    const char *t = ciot_event_topic(ev, &tl);
    pthread_mutex_lock(&r->lock);
    if (r->n < REC_MAX) {
        rec_ev *e = &r->ev[r->n++];
        e->type = type;
        e->error = ciot_event_error(ev);
        e->id = ciot_event_msg_id(ev);
        snprintf(e->text, sizeof e->text, "%s", ciot_event_text(ev));
        snprintf(e->topic, sizeof e->topic, "%.*s", t ? (int)tl : 0, t ? t : "");
    }
    r->connected += type == CIOT_EVENT_CONNECTED;
    r->disconnected += type == CIOT_EVENT_DISCONNECTED;
    r->errors += type == CIOT_EVENT_ERROR;
    r->acked += type == CIOT_EVENT_PUBLISH_ACKED;
    bool unsub = type == CIOT_EVENT_ERROR && r->unsub_handler && t && r->errors == r->unsub_at;
    pthread_mutex_unlock(&r->lock);
    if (unsub)
        cr_assert_eq(ciot_client_unsubscribe(c, t, tl, r->unsub_handler, r->unsub_ud), 0);
    return 0;
}

static int rec_get(rec *r, int *field)
{
    pthread_mutex_lock(&r->lock);
    int v = *field;
    pthread_mutex_unlock(&r->lock);
    return v;
}

/* device<N>'s client: AWS backend, mutual TLS with its certificate, client
 * id = the thing attached to the certificate. */
static ciot_client *device_v(const char *name, int request_timeout_ms, rec *r, int protocol)
{
    ciot_config *cfg;
    cr_assert_eq(ciot_config_new(&cfg), 0);
    char ca[300], crt[300], key[300];
    snprintf(ca, sizeof ca, "%s", test_broker_pki(&emu.broker, "ca.crt"));
    snprintf(crt, sizeof crt, "%s/%s.crt", emu.broker.pki, name);
    snprintf(key, sizeof key, "%s/%s.key", emu.broker.pki, name);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_BACKEND, CIOT_BACKEND_AWS), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_HOST, "localhost"), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PORT, emu.broker.tls_port), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_CLIENT_ID, name), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TLS_CA_FILE, ca), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TLS_CERT_FILE, crt), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TLS_KEY_FILE, key), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_RECONNECT_BASE_MS, 20), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_RECONNECT_MAX_MS, 200), 0);
    if (request_timeout_ms)
        cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_REQUEST_TIMEOUT_MS, request_timeout_ms), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PROTOCOL, protocol), 0);
    ciot_client *c = NULL;
    if (getenv("CIOT_TEST_LOG"))
        cr_assert_eq(ciot_set_log_callback(h_log, CIOT_LOG_DEBUG, NULL), 0);
    int rc = ciot_client_new(&c, cfg);
    cr_assert_eq(rc, 0, "ciot_client_new: %s: %s", ciot_err_name(rc), ciot_config_errmsg(cfg));
    ciot_config_free(cfg);
    if (r)
        ciot_client_set_event_callback(c, on_rec, r);
    return c;
}

static ciot_client *device(const char *name, int request_timeout_ms, rec *r)
{
    return device_v(name, request_timeout_ms, r, 4);
}

static void connect_device(ciot_client *c)
{
    cr_assert_eq(ciot_client_connect(c), 0);
    cr_assert(h_run_until(c, h_is_connected, c, W(10000)), "no CONNACK: %s", ciot_client_errmsg(c));
}

/* Drives @p c for @p ms. */
static void run_for(ciot_client *c, int ms)
{
    uint64_t end = h_now_ms() + (uint64_t)ms;
    while (h_now_ms() < end)
        cr_assert_eq(ciot_client_run(c, 10), 0);
}

/* Drives two clients in turn until pred or ms. */
static bool run2_until(ciot_client *a, ciot_client *b, h_pred pred, void *arg, int ms)
{
    uint64_t end = h_now_ms() + (uint64_t)ms;
    while (!pred(arg)) {
        if (h_now_ms() >= end)
            return false;
        cr_assert_eq(ciot_client_run(a, 5), 0);
        cr_assert_eq(ciot_client_run(b, 5), 0);
    }
    return true;
}

/* A message on an exact topic reached a tclient (driving the device meanwhile). */
struct tc_want {
    tclient *t;
    const char *topic;
    int n;
};

static bool tc_has(void *arg)
{
    struct tc_want *w = arg;
    return tc_count_exact(w->t, w->topic) >= w->n;
}

static tc_msg *wait_msg(ciot_client *c, tclient *t, const char *topic)
{
    struct tc_want w = {t, topic, 1};
    cr_assert(h_run_until(c, tc_has, &w, W(5000)), "nothing on %s", topic);
    return tc_wait(t, topic, 0);
}

/* Shadow results (requests and deltas): support/shadow_rec.h. */

static void read_section(ciot_shadow *s, int section, char *buf, size_t cap)
{
    size_t n = 0;
    int rc = ciot_shadow_read(buf, cap, &n, s, section);
    cr_assert_eq(rc, 0, "ciot_shadow_read: %s", ciot_err_name(rc));
}

/* Commands of the guide. */
typedef struct cmds {
    pthread_mutex_t lock;
    int calibrate, set_interval, errors;
    double offset;
    int64_t seconds;
} cmds;

static int on_calibrate(ciot_client *c, const ciot_command *cmd, void *ud)
{
    (void)c;
    cmds *k = ud;
    ciot_json_value args, v;
    double off = 0;
    cr_assert_eq(ciot_command_args(cmd, &args), 0);
    cr_assert_eq(ciot_json_get_member(&args, "offset", 6, &v), 0);
    cr_assert_eq(ciot_json_get_double(&v, &off), 0);
    pthread_mutex_lock(&k->lock);
    k->calibrate++;
    k->offset = off;
    pthread_mutex_unlock(&k->lock);
    return 0;
}

static int on_set_interval(ciot_client *c, const ciot_command *cmd, void *ud)
{
    (void)c;
    cmds *k = ud;
    ciot_json_value args, v;
    int64_t s = 0;
    cr_assert_eq(ciot_command_args(cmd, &args), 0);
    cr_assert_eq(ciot_json_get_member(&args, "seconds", 7, &v), 0);
    cr_assert_eq(ciot_json_get_int64(&v, &s), 0);
    pthread_mutex_lock(&k->lock);
    k->set_interval++;
    k->seconds = s;
    pthread_mutex_unlock(&k->lock);
    return 0;
}

static int on_cmd_error(ciot_client *c, const ciot_command *cmd, void *ud)
{
    (void)c;
    (void)cmd;
    cmds *k = ud;
    pthread_mutex_lock(&k->lock);
    k->errors++;
    pthread_mutex_unlock(&k->lock);
    return 0;
}

static void cmds_init(cmds *k)
{
    memset(k, 0, sizeof *k);
    pthread_mutex_init(&k->lock, NULL);
}

static void register_cmds(ciot_client *c, cmds *k)
{
    cr_assert_eq(ciot_command_register(c, "calibrate", 9, on_calibrate, k), 0);
    cr_assert_eq(ciot_command_register(c, "set_interval", 12, on_set_interval, k), 0);
    ciot_command_set_error_callback(c, on_cmd_error, k);
}

struct cmd_want {
    cmds *k;
    int n;
};

static bool cmds_at(void *arg)
{
    struct cmd_want *w = arg;
    pthread_mutex_lock(&w->k->lock);
    bool ok = w->k->calibrate + w->k->set_interval + w->k->errors >= w->n;
    pthread_mutex_unlock(&w->k->lock);
    return ok;
}

/* Unix time of a UTC calendar date (timegm is not POSIX). */
static long long utc_seconds(int y, int mon, int day, int h, int min, int sec)
{
    y -= mon <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (mon + (mon > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    long long days = era * 146097 + doe - 719468;
    return days * 86400 + h * 3600 + min * 60 + sec;
}

/* A telemetry message as the guide writes it. */
static void check_reading(const char *payload, const char *thing, const char *type, double value,
                          const char *metadata)
{
    json_error_t je;
    json_t *j = json_loads(payload, 0, &je);
    cr_assert_not_null(j, "not JSON: %s", payload);
    cr_assert_eq(json_object_size(j), 5, "%s", payload);
    cr_assert_str_eq(json_string_value(json_object_get(j, "deviceId")), thing);
    cr_assert_str_eq(json_string_value(json_object_get(j, "sensorType")), type);
    cr_assert_float_eq(json_number_value(json_object_get(j, "value")), value, 1e-9);
    const char *ts = json_string_value(json_object_get(j, "timestamp"));
    cr_assert_not_null(ts);
    /* ISO-8601 UTC with milliseconds, within a minute of now */
    cr_assert_eq(strlen(ts), 24, "%s", ts);
    int y, mo, dd, hh, mi, ss, ms;
    cr_assert_eq(sscanf(ts, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &y, &mo, &dd, &hh, &mi, &ss, &ms), 7,
                 "%s", ts);
    long long diff = utc_seconds(y, mo, dd, hh, mi, ss) - (long long)time(NULL);
    cr_assert(diff > -60 && diff < 60, "timestamp %s is not now", ts);
    assert_json_eq(json_object_get(j, "metadata"), metadata);
    json_decref(j);
}

/* Counters (written on the driving thread, which is this one) reached their targets. */
struct at_least {
    int *p[6];
    int want[6];
};

static bool all_at_least(void *arg)
{
    struct at_least *a = arg;
    for (int i = 0; i < 6 && a->p[i]; i++)
        if (*a->p[i] < a->want[i])
            return false;
    return true;
}

TestSuite(aws_emulator, .init = setup, .fini = teardown, .timeout = 120);

/* ------------------------------------------------------------ 1. the seed scenario */

Test(aws_emulator, the_guides_scenario_end_to_end)
{
    tclient *admin = admin_client("operator");
    cr_assert_eq(tc_sub(admin, "sensors/#", 1), 1);
    rec ev;
    rec_init(&ev);
    ciot_client *c = device("device1", 0, &ev);
    cmds k;
    cmds_init(&k);
    register_cmds(c, &k);
    ciot_shadow *s = NULL;
    cr_assert_eq(ciot_shadow_new(&s, c, NULL, 0), 0);
    sres d, r;
    sres_init(&d);
    sres_init(&r);
    ciot_shadow_set_delta_callback(s, on_sres, &d);
    connect_device(c);

    /* The shadow does not exist yet: the service's 404, through the policy. */
    uint64_t id = 0;
    cr_assert_eq(ciot_shadow_get(&id, s, on_sres, &r), 0);
    wait_result(c, &r, 1, W(5000));
    cr_assert_eq(r.outcome, CIOT_SHADOW_REJECTED);
    cr_assert_eq(r.code, 404);
    cr_assert_str_eq(r.msg, "No shadow exists with name: device1");
    cr_assert_eq(r.id, id);

    /* Telemetry: the guide's JSON on sensors/device1/<type>, at QoS 1. */
    ciot_telemetry_opts o = CIOT_TELEMETRY_OPTS_INIT;
    const char *meta = "{\"unit\":\"celsius\",\"location\":\"greenhouse-1\"}";
    o.metadata = meta;
    o.metadata_len = strlen(meta);
    cr_assert_eq(ciot_telemetry_send(NULL, c, "temperature", 11, 22.5, &o), 0);
    const char *hmeta = "{\"unit\":\"percent\"}";
    o.metadata = hmeta;
    o.metadata_len = strlen(hmeta);
    cr_assert_eq(ciot_telemetry_send(NULL, c, "humidity", 8, 45.25, &o), 0);
    tc_msg *m = wait_msg(c, admin, "sensors/device1/temperature");
    cr_assert_eq(m->qos, 1);
    check_reading(m->payload, "device1", "temperature", 22.5, meta);
    tc_msg_free(m);
    m = wait_msg(c, admin, "sensors/device1/humidity");
    check_reading(m->payload, "device1", "humidity", 45.25, hmeta);
    tc_msg_free(m);
    struct at_least acked = {{&ev.acked}, {2}};
    cr_assert(h_run_until(c, all_at_least, &acked, W(5000)), "both readings acknowledged");

    /* Commands from the operator, dispatched by name. */
    cr_assert_eq(tc_pub(admin, "commands/device1/calibrate", "{\"offset\":-0.5}", 1), 0);
    cr_assert_eq(tc_pub(admin, "commands/device1/set_interval", "{\"seconds\":30}", 1), 0);
    struct cmd_want cw = {&k, 2};
    cr_assert(h_run_until(c, cmds_at, &cw, W(5000)), "the commands did not arrive");
    cr_assert_eq(k.calibrate, 1);
    cr_assert_float_eq(k.offset, -0.5, 1e-12);
    cr_assert_eq(k.set_interval, 1);
    cr_assert_eq(k.seconds, 30);
    cr_assert_eq(k.errors, 0);

    /* A desired-state change through the service side reaches the delta callback. */
    long long v = service_desire(admin, "device1", NULL, "{\"interval\":30,\"led\":\"green\"}",
                                 "operator-1");
    cr_assert_eq(v, 1);
    wait_result(c, &d, 1, W(5000));
    cr_assert_eq(d.request, CIOT_SHADOW_DELTA);
    cr_assert_eq(d.version, 1);
    cr_assert_str_eq(d.token, "operator-1");
    json_error_t je;
    json_t *delta = json_loads(d.doc, 0, &je);
    assert_json_eq(delta, "{\"interval\":30,\"led\":\"green\"}");
    json_decref(delta);
    char buf[512];
    read_section(s, CIOT_SHADOW_DIFF, buf, sizeof buf);
    json_t *diff = json_loads(buf, 0, &je);
    assert_json_eq(diff, "{\"interval\":30,\"led\":\"green\"}");
    json_decref(diff);

    /* The device applies it and reports it back. */
    cr_assert_eq(ciot_shadow_update_reported(&id, s, d.doc, strlen(d.doc), on_sres, &r), 0);
    wait_result(c, &r, 2, W(5000));
    cr_assert_eq(r.outcome, CIOT_SHADOW_ACCEPTED, "%d %s", r.code, r.msg);
    cr_assert_eq(r.version, 2);
    size_t n = 0;
    cr_assert_eq(ciot_shadow_read(buf, sizeof buf, &n, s, CIOT_SHADOW_DIFF), CIOT_ENOTFOUND,
                 "converged locally");

    /* The service side sees reported == desired and no delta. */
    json_t *doc = service_get(admin, "device1", NULL);
    json_t *st = json_object_get(doc, "state");
    assert_json_eq(json_object_get(st, "desired"), "{\"interval\":30,\"led\":\"green\"}");
    assert_json_eq(json_object_get(st, "reported"), "{\"interval\":30,\"led\":\"green\"}");
    cr_assert_null(json_object_get(st, "delta"), "no delta once converged");
    cr_assert_eq(json_integer_value(json_object_get(doc, "version")), 2);
    json_decref(doc);

    run_for(c, 200);
    cr_assert_eq(d.n, 1, "one delta only");
    cr_assert_eq(rec_get(&ev, &ev.disconnected), 0, "nothing in the scenario breaks the policy");
    cr_assert_eq(rec_get(&ev, &ev.errors), 0);
    cr_assert_eq(test_broker_log_count(&emu.broker, "not allowed"), 0);
    cr_assert_geq(test_broker_log_count(&emu.broker, "device1 connected as thing device1 (attached)"), 1);
    cr_assert_eq(ciot_shadow_free(s), 0);
    cr_assert_eq(ciot_client_disconnect(c), 0);
    cr_assert_eq(ciot_client_free(c), 0);
    tc_free(admin);
    finish();
}

/* ------------------------------------------------------------ 2. outside the policy */

/* The index of the first event of @p type (and id, when not 0) at or after @p from; -1. */
static int find_ev(rec *r, int from, int type, uint64_t id)
{
    for (int i = from; i < r->n; i++)
        if (r->ev[i].type == type && (!id || r->ev[i].id == id))
            return i;
    return -1;
}

struct rec_want {
    rec *r;
    int connected, disconnected, errors;
};

static bool rec_at(void *arg)
{
    struct rec_want *w = arg;
    pthread_mutex_lock(&w->r->lock);
    bool ok = w->r->connected >= w->connected && w->r->disconnected >= w->disconnected &&
              w->r->errors >= w->errors;
    pthread_mutex_unlock(&w->r->lock);
    return ok;
}

Test(aws_emulator, a_publish_outside_the_policy_is_acked_dropped_and_the_client_disconnected)
{
    tclient *admin = admin_client("operator");
    cr_assert_eq(tc_sub(admin, "sensors/#", 1), 1);
    rec ev;
    rec_init(&ev);
    ciot_client *c = device("device1", 0, &ev);
    connect_device(c);
    const char *payload = "{\"value\":1}";
    uint64_t bad = 0;
    cr_assert_eq(ciot_client_publish(&bad, c, "sensors/device2/temperature", 27, payload,
                                     strlen(payload), 1, 0),
                 0, "the library cannot know the policy: the publish is queued");
    /* Disconnected by the emulator, then reconnected by the client. */
    struct rec_want w = {&ev, 2, 1, 0};
    cr_assert(h_run_until(c, rec_at, &w, W(10000)), "connected %d, disconnected %d", ev.connected,
              ev.disconnected);
    /* What the user sees, in this order: the message acknowledged (mosquitto
     * answers the denied QoS 1 PUBLISH with a PUBACK; MQTT 3.1.1 has no
     * reason code), then the connection closed by the emulator (AWS closes
     * it too: AUTH_ERROR), then the client's own reconnect. */
    int ia = find_ev(&ev, 0, CIOT_EVENT_PUBLISH_ACKED, bad);
    int id = find_ev(&ev, 0, CIOT_EVENT_DISCONNECTED, 0);
    int ic = find_ev(&ev, 1, CIOT_EVENT_CONNECTED, 0);
    cr_assert_geq(ia, 0, "the forbidden message was acknowledged");
    cr_assert_gt(id, ia, "the PUBACK comes before the disconnect");
    cr_assert_gt(ic, id);
    cr_assert_eq(ev.ev[id].error, CIOT_ECONNLOST, "DISCONNECTED with %s (%s)",
                 ciot_err_name(ev.ev[id].error), ev.ev[id].text);
    cr_assert_eq(find_ev(&ev, 0, CIOT_EVENT_MESSAGE_DROPPED, 0), -1, "not reported as dropped");
    cr_assert_eq(ev.errors, 0);
    cr_assert_eq(ciot_client_queued(c), 0, "acknowledged, so nothing is left to resend");

    /* The message's fate: mosquitto acknowledged it (PUBACK) and dropped it,
     * so it reached nobody and is NOT sent again after the reconnect. The
     * application learns of the refusal only through the disconnect (and the
     * broker's log); PUBLISH_ACKED does not mean "delivered". (AWS closes
     * the connection as well; whether it sends a PUBACK first is not
     * documented: without one, a client that keeps unacknowledged QoS 1
     * messages would send it again after the reconnect and be closed again.) */
    uint64_t ok = 0;
    cr_assert_eq(ciot_client_publish(&ok, c, "sensors/device1/temperature", 27, payload,
                                     strlen(payload), 1, 0),
                 0);
    tc_msg *m = wait_msg(c, admin, "sensors/device1/temperature");
    cr_assert_str_eq(m->payload, payload);
    tc_msg_free(m);
    run_for(c, 300);
    cr_assert_eq(tc_count(admin, "sensors/device2/"), 0, "the refused message was delivered");
    cr_assert_eq(test_broker_log_count(&emu.broker, "iot:Publish on sensors/device2/temperature not allowed"),
                 1, "refused once: never sent again");
    cr_assert_eq(rec_get(&ev, &ev.disconnected), 1, "the allowed publish keeps the connection");
    cr_assert(ciot_client_is_connected(c));
    cr_assert_eq(ciot_client_disconnect(c), 0);
    cr_assert_eq(ciot_client_free(c), 0);
    tc_free(admin);
    finish();
}

static int count_msg(ciot_client *c, const ciot_event *msg, void *ud)
{
    (void)c;
    (void)msg;
    ++*(int *)ud;
    return 0;
}

Test(aws_emulator, a_subscription_outside_the_policy_is_an_error_event_naming_the_filter)
{
    rec ev;
    rec_init(&ev);
    ciot_client *c = device("device1", 0, &ev);
    int got = 0;
    connect_device(c);
    cr_assert_eq(ciot_client_subscribe(c, "commands/#", 10, 1, count_msg, &got), 0);
    /* SUBACK 0x80 -> CIOT_EVENT_ERROR (CIOT_EAUTH, the filter as its
     * topic); then the emulator closes the connection; the client reconnects. */
    struct rec_want w = {&ev, 2, 1, 1};
    cr_assert(h_run_until(c, rec_at, &w, W(10000)), "connected %d, disconnected %d, errors %d",
              ev.connected, ev.disconnected, ev.errors);
    int ie = find_ev(&ev, 0, CIOT_EVENT_ERROR, 0);
    int id = find_ev(&ev, 0, CIOT_EVENT_DISCONNECTED, 0);
    cr_assert_geq(ie, 0);
    cr_assert_eq(ev.ev[ie].error, CIOT_EAUTH, "%s", ciot_err_name(ev.ev[ie].error));
    cr_assert_str_eq(ev.ev[ie].topic, "commands/#");
    cr_assert_str_eq(ev.ev[ie].text, "the broker refused the subscription to \"commands/#\" (code 128)");
    cr_assert_gt(id, ie, "the error comes before the disconnect");
    cr_assert_eq(ev.ev[id].error, CIOT_ECONNLOST, "%s (%s)", ciot_err_name(ev.ev[id].error),
                 ev.ev[id].text);

    /* A refused filter is not restored on reconnect (that would be refused
     * and disconnected again, forever): the connection stays up. */
    cr_assert(h_run_until(c, h_is_connected, c, W(5000)));
    run_for(c, W(500));
    cr_assert_eq(rec_get(&ev, &ev.errors), 1, "the refused filter was sent again");
    cr_assert_eq(rec_get(&ev, &ev.disconnected), 1);
    cr_assert(ciot_client_is_connected(c));
    cr_assert_eq(test_broker_log_count(&emu.broker, "iot:Subscribe on commands/# not allowed"), 1);

    /* Subscribing it again (after removing it) is the application's retry:
     * refused again, once. */
    cr_assert_eq(ciot_client_unsubscribe(c, "commands/#", 10, count_msg, &got), 0);
    cr_assert_eq(ciot_client_subscribe(c, "commands/#", 10, 1, count_msg, &got), 0);
    w = (struct rec_want){&ev, 3, 2, 2};
    cr_assert(h_run_until(c, rec_at, &w, W(10000)), "the retry was not sent");
    int ie2 = find_ev(&ev, ie + 1, CIOT_EVENT_ERROR, 0);
    cr_assert_geq(ie2, 0);
    cr_assert_str_eq(ev.ev[ie2].topic, "commands/#");
    cr_assert(h_run_until(c, h_is_connected, c, W(5000)));
    run_for(c, W(500));
    cr_assert_eq(rec_get(&ev, &ev.errors), 2);
    cr_assert_eq(rec_get(&ev, &ev.disconnected), 2);
    cr_assert(ciot_client_is_connected(c));
    cr_assert_eq(got, 0);
    cr_assert_eq(test_broker_log_count(&emu.broker, "iot:Subscribe on commands/# not allowed"), 2);
    cr_assert_eq(ciot_client_disconnect(c), 0);
    cr_assert_eq(ciot_client_free(c), 0);
    finish();
}

/* The same violations over MQTT 5 (CIOT_OPT_PROTOCOL 5): mosquitto's PUBACK
 * carries reason 0x87 and the emulator's DISCONNECT reason 0x98. */
Test(aws_emulator, mqtt5_policy_violations_disconnect_and_deliver_nothing)
{
    tclient *admin = admin_client("operator");
    cr_assert_eq(tc_sub(admin, "sensors/#", 1), 1);
    rec ev;
    rec_init(&ev);
    ciot_client *c = device_v("device1", 0, &ev, 5);
    connect_device(c);
    uint64_t bad = 0;
    cr_assert_eq(ciot_client_publish(&bad, c, "sensors/device2/temperature", 27, "1", 1, 1, 0), 0);
    struct rec_want w = {&ev, 2, 1, 0};
    cr_assert(h_run_until(c, rec_at, &w, W(10000)));
    int id = find_ev(&ev, 0, CIOT_EVENT_DISCONNECTED, 0);
    cr_assert_eq(ev.ev[id].error, CIOT_ECONNLOST);
    /* The PUBACK (reason 0x87) ended the message: not queued, not resent.
     * (How it is reported is a known problem: see the skipped test below.) */
    cr_assert_eq(ciot_client_queued(c), 0);
    cr_assert_eq(ciot_client_subscribe(c, "commands/#", 10, 1, NULL, NULL), 0);
    w = (struct rec_want){&ev, 3, 2, 1};
    cr_assert(h_run_until(c, rec_at, &w, W(10000)));
    int ie = find_ev(&ev, 0, CIOT_EVENT_ERROR, 0);
    cr_assert_eq(ev.ev[ie].error, CIOT_EAUTH);
    cr_assert_str_eq(ev.ev[ie].topic, "commands/#");
    cr_assert_str_eq(ev.ev[ie].text, "the broker refused the subscription to \"commands/#\" (code 135)");
    cr_assert_eq(ciot_client_unsubscribe(c, "commands/#", 10, NULL, NULL), 0);
    cr_assert(h_run_until(c, h_is_connected, c, W(5000)));
    cr_assert_eq(tc_pub(admin, "sensors/probe", "x", 1), 0);
    tc_msg_free(tc_wait(admin, "sensors/probe", W(5000)));
    cr_assert_eq(tc_count(admin, "sensors/device2/"), 0, "the refused message was delivered");
    cr_assert_eq(test_broker_log_count(&emu.broker, "iot:Publish on sensors/device2/temperature not allowed"), 1);
    (void)!ciot_client_disconnect(c);
    cr_assert_eq(ciot_client_free(c), 0);
    tc_free(admin);
    finish();
}

/* MQTT 5: a PUBACK with a failure reason (0x87 not authorized) means the
 * broker refused the message: reported as MESSAGE_DROPPED with CIOT_EAUTH,
 * never as acknowledged; the broker's DISCONNECT reason (0x98) is named in
 * the DISCONNECTED text. (A suite of its own, with the broker started in
 * the test.) */
TestSuite(aws_emulator_mqtt5, .fini = teardown, .timeout = 120);

Test(aws_emulator_mqtt5, a_refused_puback_is_reported_as_dropped_with_the_reason)
{
    setup();
    rec ev;
    rec_init(&ev);
    ciot_client *c = device_v("device1", 0, &ev, 5);
    connect_device(c);
    uint64_t bad = 0;
    cr_assert_eq(ciot_client_publish(&bad, c, "sensors/device2/temperature", 27, "1", 1, 1, 0), 0);
    struct rec_want w = {&ev, 2, 1, 0};
    cr_assert(h_run_until(c, rec_at, &w, W(10000)));
    cr_assert_eq(find_ev(&ev, 0, CIOT_EVENT_PUBLISH_ACKED, bad), -1, "refused, not acknowledged");
    int idr = find_ev(&ev, 0, CIOT_EVENT_MESSAGE_DROPPED, bad);
    cr_assert_geq(idr, 0, "the refusal is reported");
    cr_assert_eq(ev.ev[idr].error, CIOT_EAUTH);
    int id = find_ev(&ev, 0, CIOT_EVENT_DISCONNECTED, 0);
    cr_assert_str_neq(ev.ev[id].text, "Unknown error.");
    cr_assert(strstr(ev.ev[id].text, "reason 0x98"), "%s", ev.ev[id].text);
    cr_assert(strstr(ev.ev[idr].text, "0x87"), "%s", ev.ev[idr].text);
    cr_assert_eq(ciot_client_free(c), 0);
    finish();
}

/* ------------------------------------------------------------ 3. broker restart */

Test(aws_emulator, shadow_requests_across_a_broker_restart)
{
    rec ev;
    rec_init(&ev);
    ciot_client *c = device("device1", W(3000), &ev);
    ciot_shadow *s = NULL;
    cr_assert_eq(ciot_shadow_new(&s, c, NULL, 0), 0);
    sres d, r;
    sres_init(&d);
    sres_init(&r);
    ciot_shadow_set_delta_callback(s, on_sres, &d);
    connect_device(c);
    cr_assert_eq(ciot_shadow_update_reported(NULL, s, "{\"led\":\"off\",\"interval\":10}", 27,
                                             on_sres, &r),
                 0);
    wait_result(c, &r, 1, W(5000));
    cr_assert_eq(r.outcome, CIOT_SHADOW_ACCEPTED);
    cr_assert_eq(r.version, 1);

    /* Requests in flight when the broker dies, and more made while it is
     * down (below). Each ends exactly once: accepted, or CIOT_ETIMEDOUT when
     * its answer died with the broker or came after its timeout (which runs
     * from the call); the /get after the reconnect brings the copy up to date. */
    ends e = {0};
    uint64_t ids[8];
    for (int i = 0; i < 5; i++) {
        char rep[32];
        int n = snprintf(rep, sizeof rep, "{\"n\":%d}", i);
        cr_assert_eq(ciot_shadow_update_reported(&ids[i], s, rep, (size_t)n, on_end, &e), 0);
    }
    run_for(c, 15);
    int answered_before = e.accepted;
    cr_assert_eq(test_broker_kill9(&emu.broker), 0);
    /* The gets below are made while the client knows it is offline (the
     * shadow holds them until it has subscribed again). Made before it has
     * seen the loss, they would be in flight on the dead connection, and
     * libmosquitto sends those again right after the next CONNACK, ahead of
     * the SUBSCRIBEs of a new session: their answers would be lost and they
     * would time out (an open client issue: see CHANGELOG). */
    cr_assert(h_run_until(c, h_is_disconnected, c, W(5000)));
    cr_assert_eq(restart_broker(), 0);

    /* The document survived (the plugin's data directory); the operator
     * changes desired while the device is still offline (not driven). */
    tclient *admin = admin_client("operator");
    json_t *doc = service_get(admin, "device1", NULL);
    long long v = json_integer_value(json_object_get(doc, "version"));
    cr_assert_geq(v, 1 + answered_before, "persisted version %lld", v);
    json_t *rep = json_object_get(json_object_get(doc, "state"), "reported");
    cr_assert_str_eq(json_string_value(json_object_get(rep, "led")), "off");
    cr_assert_eq(json_integer_value(json_object_get(rep, "interval")), 10);
    json_decref(doc);
    long long v2 = service_desire(admin, "device1", NULL, "{\"led\":\"on\"}", "while-offline");
    cr_assert_eq(v2, v + 1);
    /* Requests made while offline wait in the shadow (their timeout runs
     * from now: the reconnect must come within it). */
    for (int i = 5; i < 8; i++)
        cr_assert_eq(ciot_shadow_get(&ids[i], s, on_end, &e), 0);

    /* The device comes back: every request ends exactly once, and the
     * /get after the reconnect shows the offline change as a delta. */
    cr_assert(h_run_until(c, h_is_connected, c, W(10000)), "the device did not reconnect");
    struct ends_want ew = {&e, 8};
    cr_assert(h_run_until(c, ends_at, &ew, W(15000)), "%d accepted, %d timed out, %d other",
              e.accepted, e.timed_out, e.other);
    wait_result(c, &d, 1, W(5000));
    run_for(c, 500);
    for (int i = 0; i < 8; i++)
        cr_assert_eq(e.count[ids[i]], 1, "request %llu ended %d times", (unsigned long long)ids[i],
                     e.count[ids[i]]);
    cr_assert_eq(e.other, 0);
    cr_assert_geq(e.accepted, 3, "the gets made while offline are answered after the reconnect");
    cr_assert_eq(ciot_shadow_pending(s), 0);
    cr_assert_geq(d.version, (uint64_t)v2);
    json_error_t je;
    json_t *delta = json_loads(d.doc, 0, &je);
    assert_json_eq(delta, "{\"led\":\"on\"}");
    json_decref(delta);
    char buf[256];
    read_section(s, CIOT_SHADOW_DESIRED, buf, sizeof buf);
    cr_assert_str_eq(buf, "{\"led\":\"on\"}");
    cr_assert_eq(rec_get(&ev, &ev.connected), 2);

    /* Applied and reported back: converged on the service side. */
    cr_assert_eq(ciot_shadow_update_reported(NULL, s, "{\"led\":\"on\"}", 12, on_sres, &r), 0);
    wait_result(c, &r, 2, W(5000));
    cr_assert_eq(r.outcome, CIOT_SHADOW_ACCEPTED);
    doc = service_get(admin, "device1", NULL);
    json_t *st = json_object_get(doc, "state");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(st, "reported"), "led")), "on");
    cr_assert_null(json_object_get(st, "delta"));
    cr_assert_eq((uint64_t)json_integer_value(json_object_get(doc, "version")), ciot_shadow_version(s));
    json_decref(doc);
    cr_assert_eq(ciot_shadow_free(s), 0);
    cr_assert_eq(ciot_client_disconnect(c), 0);
    cr_assert_eq(ciot_client_free(c), 0);
    tc_free(admin);
    finish();
}

/* ------------------------------------------------------------ 4. two devices */

Test(aws_emulator, two_devices_never_see_each_others_replies_deltas_or_commands)
{
    tclient *admin = admin_client("operator");
    rec e1, e2;
    rec_init(&e1);
    rec_init(&e2);
    ciot_client *c1 = device("device1", 0, &e1), *c2 = device("device2", 0, &e2);
    cmds k1, k2;
    cmds_init(&k1);
    cmds_init(&k2);
    register_cmds(c1, &k1);
    register_cmds(c2, &k2);
    ciot_shadow *s1 = NULL, *n1 = NULL, *s2 = NULL, *n2 = NULL;
    cr_assert_eq(ciot_shadow_new(&s1, c1, NULL, 0), 0);
    cr_assert_eq(ciot_shadow_new(&n1, c1, "config", 6), 0);
    cr_assert_eq(ciot_shadow_new(&s2, c2, NULL, 0), 0);
    cr_assert_eq(ciot_shadow_new(&n2, c2, "config", 6), 0);
    sres d1, dn1, d2, dn2, r1, rn1, r2, rn2;
    sres *all[] = {&d1, &dn1, &d2, &dn2, &r1, &rn1, &r2, &rn2};
    for (int i = 0; i < 8; i++)
        sres_init(all[i]);
    ciot_shadow_set_delta_callback(s1, on_sres, &d1);
    ciot_shadow_set_delta_callback(n1, on_sres, &dn1);
    ciot_shadow_set_delta_callback(s2, on_sres, &d2);
    ciot_shadow_set_delta_callback(n2, on_sres, &dn2);
    connect_device(c1);
    connect_device(c2);

    /* Requests of both, interleaved, on both shadows of each. */
    for (int i = 0; i < 5; i++) {
        char rep[64];
        int n = snprintf(rep, sizeof rep, "{\"who\":\"device1\",\"i\":%d}", i);
        cr_assert_eq(ciot_shadow_update_reported(NULL, s1, rep, (size_t)n, on_sres, &r1), 0);
        n = snprintf(rep, sizeof rep, "{\"who\":\"device2\",\"i\":%d}", i);
        cr_assert_eq(ciot_shadow_update_reported(NULL, s2, rep, (size_t)n, on_sres, &r2), 0);
    }
    cr_assert_eq(ciot_shadow_update_reported(NULL, n1, "{\"mode\":\"eco\"}", 14, on_sres, &rn1), 0);
    cr_assert_eq(ciot_shadow_update_reported(NULL, n2, "{\"mode\":\"boost\"}", 16, on_sres, &rn2), 0);
    struct at_least w = {{&r1.n, &r2.n, &rn1.n, &rn2.n}, {5, 5, 1, 1}};
    cr_assert(run2_until(c1, c2, all_at_least, &w, W(10000)), "%d %d %d %d", r1.n, r2.n, rn1.n,
              rn2.n);
    cr_assert_eq(r1.outcome, CIOT_SHADOW_ACCEPTED);
    cr_assert_eq(r2.outcome, CIOT_SHADOW_ACCEPTED);
    cr_assert_eq(r1.shadow, s1);
    cr_assert_eq(r2.shadow, s2);
    cr_assert_eq(ciot_shadow_version(s1), 5);
    cr_assert_eq(ciot_shadow_version(s2), 5);
    cr_assert_eq(rn1.shadow, n1);
    cr_assert_eq(rn2.shadow, n2);
    cr_assert_eq(rn1.version, 1, "a named shadow has its own versions");
    cr_assert_eq(rn2.version, 1);
    char buf[256];
    read_section(s1, CIOT_SHADOW_REPORTED, buf, sizeof buf);
    cr_assert_str_eq(buf, "{\"who\":\"device1\",\"i\":4}");
    read_section(s2, CIOT_SHADOW_REPORTED, buf, sizeof buf);
    cr_assert_str_eq(buf, "{\"who\":\"device2\",\"i\":4}");
    read_section(n1, CIOT_SHADOW_REPORTED, buf, sizeof buf);
    cr_assert_str_eq(buf, "{\"mode\":\"eco\"}");
    read_section(n2, CIOT_SHADOW_REPORTED, buf, sizeof buf);
    cr_assert_str_eq(buf, "{\"mode\":\"boost\"}");
    cr_assert_eq(ciot_shadow_get(NULL, n1, on_sres, &rn1), 0);
    struct at_least wg = {{&rn1.n}, {2}};
    cr_assert(run2_until(c1, c2, all_at_least, &wg, W(5000)));
    cr_assert_eq(rn1.request, CIOT_SHADOW_GET);
    cr_assert(strstr(rn1.doc, "\"reported\":{\"mode\":\"eco\"}") != NULL, "%s", rn1.doc);

    /* Deltas: device1's classic shadow and device2's named one. */
    service_desire(admin, "device1", NULL, "{\"fan\":\"high\"}", "op-a");
    service_desire(admin, "device2", "config", "{\"mode\":\"sleep\"}", "op-b");
    struct at_least wd = {{&d1.n, &dn2.n}, {1, 1}};
    cr_assert(run2_until(c1, c2, all_at_least, &wd, W(5000)), "d1 %d dn2 %d", d1.n, dn2.n);
    cr_assert_str_eq(d1.doc, "{\"fan\":\"high\"}");
    cr_assert_str_eq(d1.token, "op-a");
    cr_assert_eq(d1.version, 6);
    cr_assert_str_eq(dn2.doc, "{\"mode\":\"sleep\"}");
    cr_assert_str_eq(dn2.token, "op-b");
    cr_assert_eq(dn2.version, 2);

    /* Commands: each to its own device. */
    cr_assert_eq(tc_pub(admin, "commands/device1/calibrate", "{\"offset\":1.5}", 1), 0);
    cr_assert_eq(tc_pub(admin, "commands/device2/set_interval", "{\"seconds\":7}", 1), 0);
    struct at_least wc = {{&k1.calibrate, &k2.set_interval}, {1, 1}};
    cr_assert(run2_until(c1, c2, all_at_least, &wc, W(5000)));
    cr_assert_float_eq(k1.offset, 1.5, 1e-12);
    cr_assert_eq(k2.seconds, 7);

    /* Let anything misdirected arrive, then nothing crossed over. */
    struct at_least never = {{&d2.n}, {1}};
    run2_until(c1, c2, all_at_least, &never, W(400));
    cr_assert_eq(d2.n, 0, "device2's classic shadow saw a delta");
    cr_assert_eq(dn1.n, 0, "device1's named shadow saw a delta");
    cr_assert_eq(d1.n, 1);
    cr_assert_eq(dn2.n, 1);
    cr_assert_eq(r1.n, 5);
    cr_assert_eq(r2.n, 5);
    cr_assert_eq(rn1.n, 2);
    cr_assert_eq(rn2.n, 1);
    cr_assert_eq(k1.set_interval + k1.errors, 0);
    cr_assert_eq(k2.calibrate + k2.errors, 0);
    cr_assert_eq(e1.disconnected + e2.disconnected + e1.errors + e2.errors, 0);
    cr_assert_eq(test_broker_log_count(&emu.broker, "not allowed"), 0);

    /* The service side agrees. */
    json_t *doc = service_get(admin, "device1", "config");
    assert_json_eq(json_object_get(json_object_get(doc, "state"), "reported"), "{\"mode\":\"eco\"}");
    json_decref(doc);
    doc = service_get(admin, "device2", NULL);
    assert_json_eq(json_object_get(json_object_get(doc, "state"), "reported"),
                   "{\"who\":\"device2\",\"i\":4}");
    json_decref(doc);

    cr_assert_eq(ciot_shadow_free(n1), 0);
    cr_assert_eq(ciot_shadow_free(s1), 0);
    cr_assert_eq(ciot_shadow_free(n2), 0);
    cr_assert_eq(ciot_shadow_free(s2), 0);
    cr_assert_eq(ciot_client_disconnect(c1), 0);
    cr_assert_eq(ciot_client_disconnect(c2), 0);
    cr_assert_eq(ciot_client_free(c1), 0);
    cr_assert_eq(ciot_client_free(c2), 0);
    tc_free(admin);
    finish();
}

/* ------------------------------------------------------------ 5. timeout */

/* May connect, publish shadow requests and subscribe to the replies, but not
 * receive them. */
static const char no_reply_policy[] =
    "{\"Version\":\"2012-10-17\",\"Statement\":["
    "{\"Effect\":\"Allow\",\"Action\":\"iot:Connect\",\"Resource\":\"" ARN
    "client/${iot:Connection.Thing.ThingName}\"},"
    "{\"Effect\":\"Allow\",\"Action\":[\"iot:Publish\",\"iot:Subscribe\"],\"Resource\":["
    "\"" ARN "topic/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*\","
    "\"" ARN "topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*\"]}"
    "]}";

Test(aws_emulator, a_request_whose_answer_the_policy_withholds_times_out_once)
{
    emu_register_policy(&emu, "NoShadowReplies", no_reply_policy);
    emu_register_cert(&emu, "device2", "ACTIVE", "NoShadowReplies", "device2"); /* applies at the next CONNECT */
    rec ev;
    rec_init(&ev);
    int timeout = W(400);
    ciot_client *c = device("device2", timeout, &ev);
    ciot_shadow *s = NULL;
    cr_assert_eq(ciot_shadow_new(&s, c, NULL, 0), 0);
    connect_device(c);
    sres r;
    sres_init(&r);
    uint64_t id = 0;
    uint64_t t0 = h_now_ms();
    cr_assert_eq(ciot_shadow_update_reported(&id, s, "{\"x\":1}", 7, on_sres, &r), 0);
    wait_result(c, &r, 1, W(5000));
    uint64_t took = h_now_ms() - t0;
    cr_assert_eq(r.outcome, CIOT_SHADOW_FAILED);
    cr_assert_eq(r.error, CIOT_ETIMEDOUT, "%s", ciot_err_name(r.error));
    cr_assert_eq(r.id, id);
    cr_assert_geq(took, (uint64_t)timeout - 10, "ended after %llu ms", (unsigned long long)took);
    cr_assert_lt(took, (uint64_t)timeout + (uint64_t)W(3000));
    run_for(c, timeout + 200);
    cr_assert_eq(r.n, 1, "one callback");
    cr_assert_eq(r.per_id[id], 1);
    cr_assert_eq(ciot_shadow_pending(s), 0);
    /* A denied delivery is silent: the connection stays and no error shows. */
    cr_assert_eq(rec_get(&ev, &ev.disconnected), 0);
    cr_assert_eq(rec_get(&ev, &ev.errors), 0);
    cr_assert(ciot_client_is_connected(c));
    /* The service did apply the update: only its answer never arrived. */
    tclient *admin = admin_client("operator");
    json_t *doc = service_get(admin, "device2", NULL);
    assert_json_eq(json_object_get(json_object_get(doc, "state"), "reported"), "{\"x\":1}");
    cr_assert_eq(json_integer_value(json_object_get(doc, "version")), 1);
    json_decref(doc);
    cr_assert_eq(ciot_shadow_free(s), 0);
    cr_assert_eq(ciot_client_disconnect(c), 0);
    cr_assert_eq(ciot_client_free(c), 0);
    tc_free(admin);
    finish();
}

/* AWS keeps a persistent session (cleanSession=0) of a device that went
 * offline and delivers the QoS 1 messages that arrived meanwhile on the
 * next connect, as the device's policy allows (iot:Receive is checked at
 * delivery). The emulator must not refuse them for lack of a connection. */
Test(aws_emulator, a_command_sent_while_the_device_is_offline_arrives_on_reconnect)
{
    cmds k;
    cmds_init(&k);
    ciot_config *cfg;
    ciot_client *c = NULL;
    { /* device1 as device() makes it, with a persistent session */
        char ca[300], crt[300], key[300];
        snprintf(ca, sizeof ca, "%s", test_broker_pki(&emu.broker, "ca.crt"));
        snprintf(crt, sizeof crt, "%s/device1.crt", emu.broker.pki);
        snprintf(key, sizeof key, "%s/device1.key", emu.broker.pki);
        cr_assert_eq(ciot_config_new(&cfg), 0);
        cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_BACKEND, CIOT_BACKEND_AWS), 0);
        cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_HOST, "localhost"), 0);
        cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PORT, emu.broker.tls_port), 0);
        cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_CLIENT_ID, "device1"), 0);
        cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TLS_CA_FILE, ca), 0);
        cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TLS_CERT_FILE, crt), 0);
        cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TLS_KEY_FILE, key), 0);
        cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_CLEAN_SESSION, 0), 0);
        cr_assert_eq(ciot_client_new(&c, cfg), 0, "%s", ciot_config_errmsg(cfg));
        ciot_config_free(cfg);
    }
    register_cmds(c, &k);
    connect_device(c);
    run_for(c, W(300)); /* SUBACK of commands/device1/+ */
    cr_assert_eq(ciot_client_disconnect(c), 0);
    cr_assert_not(ciot_client_is_connected(c));

    tclient *admin = admin_client("operator-offline");
    cr_assert_eq(tc_pub(admin, "commands/device1/calibrate", "{\"offset\":-0.25}", 1), 0);
    struct timespec pause = {0, 300 * 1000000L};
    nanosleep(&pause, NULL);

    connect_device(c);
    struct cmd_want w = {&k, 1};
    cr_assert(h_run_until(c, cmds_at, &w, W(5000)),
              "the command queued for the offline session never arrived");
    pthread_mutex_lock(&k.lock);
    cr_assert_eq(k.calibrate, 1);
    cr_assert_eq(k.errors, 0);
    pthread_mutex_unlock(&k.lock);
    cr_assert_eq(test_broker_log_count(&emu.broker, "not authenticated at CONNECT"), 0);
    tc_free(admin);
    (void)!ciot_client_disconnect(c);
    ciot_client_free(c);
    finish();
}
