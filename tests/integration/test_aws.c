/*
 * The AWS backend, telemetry, commands and ciot_shadow against a real
 * mosquitto (the fixture's plain listener, and its mutual-TLS listener for
 * TLS). The cloud side is played by the test: a libmosquitto client on its
 * own thread answers shadow requests with the library's document engine
 * (core/shadow_doc.h, the AWS payloads byte for byte) and publishes
 * commands and deltas. The emulator plugin's end-to-end tests are separate.
 */
#include "harness.h"
#include "shadow_rec.h"

#include "client/service.h"
#include "core/shadow_doc.h"

#include <jansson.h>
#include <mosquitto.h>
#include <time.h>
#include <unistd.h>

static test_broker broker;

/* ---- the service side ---- */

typedef struct svc {
    struct mosquitto *m;
    pthread_mutex_t lock;
    struct {
        char prefix[200];
        ciot__shadow *sh;
    } shadows[8];
    int nshadows;
    bool mute;       /* count requests, answer none */
    int requests;    /* shadow requests received */
    int subacks;     /* SUBACKs on the current connection */
    int connects;
    int msgs;        /* other messages (telemetry) */
    char last_topic[256];
    char last_payload[2048];
    int last_qos;
} svc;

static const char *const svc_filters[] = {
    "$aws/things/+/shadow/get",        "$aws/things/+/shadow/update",
    "$aws/things/+/shadow/delete",     "$aws/things/+/shadow/name/+/get",
    "$aws/things/+/shadow/name/+/update", "$aws/things/+/shadow/name/+/delete",
    "sensors/#",
};
#define SVC_NFILTERS 7

/* The shadow of a topic prefix; lock held. */
static ciot__shadow *svc_shadow(svc *v, const char *prefix)
{
    for (int i = 0; i < v->nshadows; i++)
        if (strcmp(v->shadows[i].prefix, prefix) == 0)
            return v->shadows[i].sh;
    cr_assert_lt(v->nshadows, 8);
    /* the name quoted in 404 messages: the shadow's name, or the thing's */
    const char *name = strstr(prefix, "/name/");
    if (name)
        name += 6;
    else {
        name = prefix + strlen("$aws/things/");
    }
    size_t nl = strcspn(name, "/");
    int i = v->nshadows++;
    snprintf(v->shadows[i].prefix, sizeof v->shadows[i].prefix, "%s", prefix);
    cr_assert_eq(ciot__shadow_new(&v->shadows[i].sh, name, nl), 0);
    return v->shadows[i].sh;
}

static void svc_pub(svc *v, const char *topic, const char *payload, size_t len)
{
    int rc = mosquitto_publish(v->m, NULL, topic, (int)len, payload, 1, false);
    if (rc != MOSQ_ERR_SUCCESS)
        fprintf(stderr, "service: publish to %s: %s\n", topic, mosquitto_strerror(rc));
}

/* Publishes what a request produced; lock held. */
static void svc_answer(svc *v, const char *prefix, const char *op, ciot__shadow_result *r)
{
    char t[300];
    if (r->status == 200) {
        snprintf(t, sizeof t, "%s/%s/accepted", prefix, op);
        svc_pub(v, t, r->accepted, r->accepted_len);
        if (r->delta) {
            snprintf(t, sizeof t, "%s/update/delta", prefix);
            svc_pub(v, t, r->delta, r->delta_len);
        }
        if (r->documents) {
            snprintf(t, sizeof t, "%s/update/documents", prefix);
            svc_pub(v, t, r->documents, r->documents_len);
        }
    } else {
        snprintf(t, sizeof t, "%s/%s/rejected", prefix, op);
        svc_pub(v, t, r->rejected, r->rejected_len);
    }
}

static void svc_on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg)
{
    (void)m;
    svc *v = ud;
    pthread_mutex_lock(&v->lock);
    if (strncmp(msg->topic, "sensors/", 8) == 0) {
        v->msgs++;
        snprintf(v->last_topic, sizeof v->last_topic, "%s", msg->topic);
        snprintf(v->last_payload, sizeof v->last_payload, "%.*s", msg->payloadlen,
                 (const char *)msg->payload);
        v->last_qos = msg->qos;
        pthread_mutex_unlock(&v->lock);
        return;
    }
    v->requests++;
    if (v->mute) {
        pthread_mutex_unlock(&v->lock);
        return;
    }
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s", msg->topic);
    char *slash = strrchr(prefix, '/');
    const char *op = slash + 1;
    *slash = '\0';
    char opbuf[16];
    snprintf(opbuf, sizeof opbuf, "%s", op);
    ciot__shadow *sh = svc_shadow(v, prefix);
    ciot__shadow_result r;
    int64_t now = (int64_t)time(NULL);
    const char *p = msg->payload;
    size_t len = (size_t)msg->payloadlen;
    int rc = strcmp(opbuf, "get") == 0      ? ciot__shadow_get(&r, sh, p, len, now)
             : strcmp(opbuf, "update") == 0 ? ciot__shadow_update(&r, sh, p, len, now)
                                            : ciot__shadow_delete(&r, sh, p, len, now);
    if (rc == 0) {
        svc_answer(v, prefix, opbuf, &r);
        ciot__shadow_result_free(&r);
    }
    pthread_mutex_unlock(&v->lock);
}

static void svc_on_connect(struct mosquitto *m, void *ud, int rc)
{
    svc *v = ud;
    if (rc != 0)
        return;
    pthread_mutex_lock(&v->lock);
    v->subacks = 0;
    v->connects++;
    pthread_mutex_unlock(&v->lock);
    for (int i = 0; i < SVC_NFILTERS; i++)
        mosquitto_subscribe(m, NULL, svc_filters[i], 1);
}

static void svc_on_subscribe(struct mosquitto *m, void *ud, int mid, int n, const int *g)
{
    (void)m;
    (void)mid;
    (void)n;
    (void)g;
    svc *v = ud;
    pthread_mutex_lock(&v->lock);
    v->subacks++;
    pthread_mutex_unlock(&v->lock);
}

static bool svc_ready(void *arg)
{
    svc *v = arg;
    pthread_mutex_lock(&v->lock);
    bool ok = v->subacks >= SVC_NFILTERS;
    pthread_mutex_unlock(&v->lock);
    return ok;
}

static void svc_start(svc *v)
{
    memset(v, 0, sizeof *v);
    pthread_mutex_init(&v->lock, NULL);
    char id[64];
    snprintf(id, sizeof id, "service-%d", (int)getpid());
    v->m = mosquitto_new(id, true, v);
    cr_assert_not_null(v->m);
    mosquitto_connect_callback_set(v->m, svc_on_connect);
    mosquitto_message_callback_set(v->m, svc_on_message);
    mosquitto_subscribe_callback_set(v->m, svc_on_subscribe);
    mosquitto_reconnect_delay_set(v->m, 1, 1, false);
    cr_assert_eq(mosquitto_connect(v->m, "127.0.0.1", broker.port, 30), MOSQ_ERR_SUCCESS);
    cr_assert_eq(mosquitto_loop_start(v->m), MOSQ_ERR_SUCCESS);
    cr_assert(h_wait_until(svc_ready, v, 5000), "the service did not subscribe");
}

static void svc_stop(svc *v)
{
    mosquitto_disconnect(v->m);
    mosquitto_loop_stop(v->m, true);
    mosquitto_destroy(v->m);
    for (int i = 0; i < v->nshadows; i++)
        ciot__shadow_free(v->shadows[i].sh);
}

/* The service changes desired (as the fleet operator would); published when
 * @p publish (otherwise the device is offline and learns it by /get). */
static void svc_update_desired_at(svc *v, const char *prefix, const char *desired, bool publish,
                                  int64_t now)
{
    char req[1024];
    snprintf(req, sizeof req, "{\"state\":{\"desired\":%s},\"clientToken\":\"operator-1\"}", desired);
    pthread_mutex_lock(&v->lock);
    ciot__shadow_result r;
    cr_assert_eq(ciot__shadow_update(&r, svc_shadow(v, prefix), req, strlen(req), now), 0);
    cr_assert_eq(r.status, 200, "%s", r.rejected);
    if (publish)
        svc_answer(v, prefix, "update", &r);
    ciot__shadow_result_free(&r);
    pthread_mutex_unlock(&v->lock);
}

/* The service deletes a shadow (the operator's delete-thing-shadow), publishing /delete/accepted. */
static void svc_delete(svc *v, const char *prefix)
{
    pthread_mutex_lock(&v->lock);
    ciot__shadow_result r;
    cr_assert_eq(ciot__shadow_delete(&r, svc_shadow(v, prefix), "", 0, (int64_t)time(NULL)), 0);
    cr_assert_eq(r.status, 200, "%s", r.rejected);
    svc_answer(v, prefix, "delete", &r);
    ciot__shadow_result_free(&r);
    pthread_mutex_unlock(&v->lock);
}

static void svc_update_desired(svc *v, const char *prefix, const char *desired, bool publish)
{
    svc_update_desired_at(v, prefix, desired, publish, (int64_t)time(NULL));
}

static void svc_mute(svc *v, bool mute)
{
    pthread_mutex_lock(&v->lock);
    v->mute = mute;
    pthread_mutex_unlock(&v->lock);
}

static int svc_requests(svc *v)
{
    pthread_mutex_lock(&v->lock);
    int n = v->requests;
    pthread_mutex_unlock(&v->lock);
    return n;
}

/* ---- the device side ---- */

static void start_plain(void)
{
    test_broker_opts o = {.max_queued = 0};
    cr_assert_eq(test_broker_start(&broker, &o), 0, "the broker fixture did not start");
}

static void stop_broker(void)
{
    test_broker_stop(&broker);
}

TestSuite(aws, .init = start_plain, .fini = stop_broker, .timeout = 120);

static ciot_client *device(const char *client_id, const char *thing, int timeout_ms, h_events *ev)
{
    ciot_config *cfg = h_config(&broker, client_id);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_BACKEND, CIOT_BACKEND_AWS), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_TLS, 0), 0); /* loopback only */
    if (thing)
        cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_THING_NAME, thing), 0);
    if (timeout_ms)
        cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_REQUEST_TIMEOUT_MS, timeout_ms), 0);
    ciot_client *c = h_client(cfg, ev);
    ciot_config_free(cfg);
    return c;
}

static void connect_device(ciot_client *c)
{
    cr_assert_eq(ciot_client_connect(c), 0);
    cr_assert(h_run_until(c, h_is_connected, c, 5000), "no CONNACK: %s", ciot_client_errmsg(c));
}

/* Results of shadow requests and deltas: support/shadow_rec.h. */

static void read_section(ciot_shadow *s, int section, char *buf, size_t cap)
{
    size_t n = 0;
    int rc = ciot_shadow_read(buf, cap, &n, s, section);
    cr_assert_eq(rc, 0, "ciot_shadow_read: %s", ciot_err_name(rc));
    cr_assert_eq(strlen(buf), n);
}

/* Drives @p c for @p ms (to let messages that must be ignored arrive). */
static void run_for(ciot_client *c, int ms)
{
    uint64_t end = h_now_ms() + (uint64_t)ms;
    while (h_now_ms() < end)
        cr_assert_eq(ciot_client_run(c, 10), 0);
}

/* ---- telemetry ---- */

Test(aws, telemetry_is_the_guides_json_on_the_sensor_topic_at_qos_1)
{
    svc v;
    svc_start(&v);
    h_events ev;
    h_events_init(&ev);
    ciot_client *c = device("dev-tel", NULL, 0, &ev);
    connect_device(c);
    ciot_telemetry_opts o = CIOT_TELEMETRY_OPTS_INIT;
    o.metadata = "{\"unit\":\"celsius\",\"location\":\"room-1\"}";
    o.metadata_len = strlen(o.metadata);
    o.timestamp_ms = 1764132987123LL; /* 2025-11-26T04:56:27.123Z */
    uint64_t id = 0;
    cr_assert_eq(ciot_telemetry_send(&id, c, "temperature", 11, 23.5, &o), 0);
    struct h_count_arg acked = {&ev, 1};
    cr_assert(h_run_until(c, h_acked_at_least, &acked, 5000), "no PUBACK");
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&v.lock);
        int n = v.msgs;
        pthread_mutex_unlock(&v.lock);
        if (n)
            break;
        run_for(c, 10);
    }
    pthread_mutex_lock(&v.lock);
    cr_assert_eq(v.msgs, 1);
    cr_assert_str_eq(v.last_topic, "sensors/dev-tel/temperature");
    cr_assert_eq(v.last_qos, 1, "telemetry goes at QoS 1");
    cr_assert_str_eq(v.last_payload,
                     "{\"deviceId\":\"dev-tel\",\"sensorType\":\"temperature\",\"value\":23.5,"
                     "\"timestamp\":\"2025-11-26T04:56:27.123Z\","
                     "\"metadata\":{\"unit\":\"celsius\",\"location\":\"room-1\"}}");
    pthread_mutex_unlock(&v.lock);

    /* the current time, and no metadata: an empty object */
    cr_assert_eq(ciot_telemetry_send(NULL, c, "humidity", 8, 41.0, NULL), 0);
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&v.lock);
        int n = v.msgs;
        pthread_mutex_unlock(&v.lock);
        if (n >= 2)
            break;
        run_for(c, 10);
    }
    pthread_mutex_lock(&v.lock);
    cr_assert_str_eq(v.last_topic, "sensors/dev-tel/humidity");
    json_error_t je;
    json_t *j = json_loads(v.last_payload, 0, &je);
    pthread_mutex_unlock(&v.lock);
    cr_assert_not_null(j, "%s", je.text);
    cr_assert_str_eq(json_string_value(json_object_get(j, "deviceId")), "dev-tel");
    cr_assert_str_eq(json_string_value(json_object_get(j, "sensorType")), "humidity");
    cr_assert_float_eq(json_real_value(json_object_get(j, "value")), 41.0, 1e-12);
    const char *ts = json_string_value(json_object_get(j, "timestamp"));
    cr_assert_not_null(ts);
    cr_assert_eq(strlen(ts), 24);
    cr_assert_eq(ts[10], 'T');
    cr_assert_eq(ts[19], '.');
    cr_assert_eq(ts[23], 'Z');
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char year[16];
    snprintf(year, sizeof year, "%04d-", tm.tm_year + 1900);
    cr_assert(strncmp(ts, year, 5) == 0, "%s is not now", ts);
    cr_assert(json_is_object(json_object_get(j, "metadata")));
    cr_assert_eq(json_object_size(json_object_get(j, "metadata")), 0);
    json_decref(j);

    /* a payload of the caller's, unchanged, at QoS 0 */
    o = (ciot_telemetry_opts)CIOT_TELEMETRY_OPTS_INIT;
    o.qos = 0;
    cr_assert_eq(ciot_telemetry_send_json(NULL, c, "raw", 3, "[1, 2]", 6, &o), 0);
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&v.lock);
        int n = v.msgs;
        pthread_mutex_unlock(&v.lock);
        if (n >= 3)
            break;
        run_for(c, 10);
    }
    pthread_mutex_lock(&v.lock);
    cr_assert_str_eq(v.last_topic, "sensors/dev-tel/raw");
    cr_assert_str_eq(v.last_payload, "[1, 2]");
    cr_assert_eq(v.last_qos, 0);
    pthread_mutex_unlock(&v.lock);
    cr_assert_eq(ciot_client_disconnect(c), 0);
    cr_assert_eq(ciot_client_free(c), 0);
    svc_stop(&v);
}

/* ---- commands ---- */

typedef struct cmds {
    int calibrate, interval, dflt, errors;
    double offset;
    int64_t seconds;
    int last_error;
    char error_text[200];
    char last_name[64];
} cmds;

static int on_calibrate(ciot_client *c, const ciot_command *cmd, void *ud)
{
    (void)c;
    cmds *k = ud;
    k->calibrate++;
    ciot_json_value root, off;
    cr_assert_eq(ciot_command_args(cmd, &root), 0);
    cr_assert_eq(ciot_json_get_member(&root, "offset", 6, &off), 0);
    cr_assert_eq(ciot_json_get_double(&off, &k->offset), 0);
    size_t n;
    const char *name = ciot_command_name(cmd, &n);
    cr_assert_eq(n, 9);
    cr_assert(memcmp(name, "calibrate", 9) == 0);
    cr_assert_eq(ciot_command_error(cmd), 0);
    return 0;
}

static int on_interval(ciot_client *c, const ciot_command *cmd, void *ud)
{
    (void)c;
    cmds *k = ud;
    k->interval++;
    size_t pl;
    const char *p = ciot_command_payload(cmd, &pl);
    ciot_json_value v;
    cr_assert_eq(ciot_json_find(p, pl, "seconds", 7, &v), 0);
    cr_assert_eq(ciot_json_get_int64(&v, &k->seconds), 0);
    return 0;
}

static int on_default(ciot_client *c, const ciot_command *cmd, void *ud)
{
    (void)c;
    cmds *k = ud;
    k->dflt++;
    size_t n;
    const char *name = ciot_command_name(cmd, &n);
    snprintf(k->last_name, sizeof k->last_name, "%.*s", (int)n, name);
    return 0;
}

static int on_cmd_error(ciot_client *c, const ciot_command *cmd, void *ud)
{
    (void)c;
    cmds *k = ud;
    k->errors++;
    k->last_error = ciot_command_error(cmd);
    snprintf(k->error_text, sizeof k->error_text, "%s", ciot_command_error_text(cmd));
    ciot_json_value root;
    if (k->last_error == CIOT_EPROTOCOL)
        cr_assert_neq(ciot_command_args(cmd, &root), 0, "no reader view of a bad payload");
    return 0;
}

struct cmd_want {
    cmds *k;
    int total;
};

static bool cmds_total(void *arg)
{
    struct cmd_want *w = arg;
    return w->k->calibrate + w->k->interval + w->k->dflt + w->k->errors >= w->total;
}

Test(aws, commands_are_dispatched_by_name_and_bad_payloads_reach_the_error_callback)
{
    svc v;
    svc_start(&v);
    h_events ev;
    h_events_init(&ev);
    ciot_client *c = device("dev-cmd", NULL, 0, &ev);
    cmds k = {0};
    cr_assert_eq(ciot_command_register(c, "calibrate", 9, on_calibrate, &k), 0);
    cr_assert_eq(ciot_command_register(c, "set_interval", 12, on_interval, &k), 0);
    ciot_command_set_error_callback(c, on_cmd_error, &k);
    connect_device(c);
    struct h_count_arg sub = {&ev, 1};
    cr_assert(h_run_until(c, h_subscribed_at_least, &sub, 5000), "no SUBACK for commands/dev-cmd/+");

    svc_pub(&v, "commands/dev-cmd/calibrate", "{\"offset\":0.5}", 14);
    struct cmd_want w = {&k, 1};
    cr_assert(h_run_until(c, cmds_total, &w, 5000));
    cr_assert_eq(k.calibrate, 1);
    cr_assert_float_eq(k.offset, 0.5, 1e-12);

    svc_pub(&v, "commands/dev-cmd/set_interval", "{\"seconds\":30}", 14);
    w.total = 2;
    cr_assert(h_run_until(c, cmds_total, &w, 5000));
    cr_assert_eq(k.interval, 1);
    cr_assert_eq(k.seconds, 30);

    /* not JSON, not an object, not UTF-8, empty: the error callback, never a handler */
    const char *bad[] = {"not json", "[1,2]", "\xff\xfe{}", ""};
    for (int i = 0; i < 4; i++) {
        svc_pub(&v, "commands/dev-cmd/set_interval", bad[i], strlen(bad[i]));
        w.total = 3 + i;
        cr_assert(h_run_until(c, cmds_total, &w, 5000), "payload %d", i);
        cr_assert_eq(k.last_error, CIOT_EPROTOCOL);
        cr_assert(strstr(k.error_text, "set_interval") != NULL, "%s", k.error_text);
    }
    cr_assert(strstr(k.error_text, "not a JSON object") != NULL, "%s", k.error_text);
    cr_assert_eq(k.errors, 4);
    cr_assert_eq(k.interval, 1, "no bad payload reached the handler");

    /* unknown: the error callback, then the default handler once there is one */
    svc_pub(&v, "commands/dev-cmd/reboot", "{}", 2);
    w.total = 7;
    cr_assert(h_run_until(c, cmds_total, &w, 5000));
    cr_assert_eq(k.errors, 5);
    cr_assert_eq(k.last_error, CIOT_ENOTFOUND);
    cr_assert(strstr(k.error_text, "reboot") != NULL);
    cr_assert_eq(ciot_command_register(c, NULL, 0, on_default, &k), 0);
    svc_pub(&v, "commands/dev-cmd/reboot", "{}", 2);
    w.total = 8;
    cr_assert(h_run_until(c, cmds_total, &w, 5000));
    cr_assert_eq(k.dflt, 1);
    cr_assert_str_eq(k.last_name, "reboot");
    /* other things' commands never arrive */
    svc_pub(&v, "commands/other/calibrate", "{\"offset\":1}", 12);
    run_for(c, 200);
    cr_assert_eq(k.calibrate, 1);
    cr_assert_eq(ev.messages, 0, "every command was handled by the dispatcher");
    cr_assert_eq(ciot_client_disconnect(c), 0);
    cr_assert_eq(ciot_client_free(c), 0);
    svc_stop(&v);
}

/* ---- shadow ---- */

Test(aws, shadow_requests_are_accepted_or_rejected_with_the_services_answer)
{
    svc v;
    svc_start(&v);
    ciot_client *c = device("dev-sh", NULL, 0, NULL);
    ciot_shadow *s = NULL;
    cr_assert_eq(ciot_shadow_new(&s, c, NULL, 0), 0);
    connect_device(c);
    sres r;
    sres_init(&r);

    /* the shadow does not exist yet */
    uint64_t id = 0;
    cr_assert_eq(ciot_shadow_get(&id, s, on_sres, &r), 0);
    wait_result(c, &r, 1, 5000);
    cr_assert_eq(r.outcome, CIOT_SHADOW_REJECTED);
    cr_assert_eq(r.request, CIOT_SHADOW_GET);
    cr_assert_eq(r.code, 404);
    cr_assert_str_eq(r.msg, "No shadow exists with name: dev-sh");
    cr_assert_eq(r.id, id);
    cr_assert_leq(strlen(r.token), 64);
    cr_assert(strstr(r.doc, r.token) != NULL, "the rejected document echoes the token");

    cr_assert_eq(ciot_shadow_update_reported(&id, s, "{\"temp\":21,\"fw\":\"1.0\"}", 22, on_sres, &r), 0);
    wait_result(c, &r, 2, 5000);
    cr_assert_eq(r.outcome, CIOT_SHADOW_ACCEPTED, "%d %s", r.code, r.msg);
    cr_assert_eq(r.request, CIOT_SHADOW_UPDATE);
    cr_assert_eq(r.version, 1);
    cr_assert_eq(r.error, 0);
    cr_assert_str_eq(r.msg, "");
    cr_assert(strstr(r.doc, "\"reported\":{\"temp\":21,\"fw\":\"1.0\"}") != NULL, "%s", r.doc);
    char buf[512];
    read_section(s, CIOT_SHADOW_REPORTED, buf, sizeof buf);
    cr_assert_str_eq(buf, "{\"temp\":21,\"fw\":\"1.0\"}");
    cr_assert_eq(ciot_shadow_version(s), 1);

    cr_assert_eq(ciot_shadow_update_desired(NULL, s, "{\"temp\":19}", 11, on_sres, &r), 0);
    wait_result(c, &r, 3, 5000);
    cr_assert_eq(r.outcome, CIOT_SHADOW_ACCEPTED);
    cr_assert_eq(r.version, 2);
    read_section(s, CIOT_SHADOW_DESIRED, buf, sizeof buf);
    cr_assert_str_eq(buf, "{\"temp\":19}");
    read_section(s, CIOT_SHADOW_DIFF, buf, sizeof buf);
    cr_assert_str_eq(buf, "{\"temp\":19}");

    /* a key set to null goes */
    cr_assert_eq(ciot_shadow_update_reported(NULL, s, "{\"fw\":null}", 11, on_sres, &r), 0);
    wait_result(c, &r, 4, 5000);
    cr_assert_eq(r.version, 3);
    read_section(s, CIOT_SHADOW_REPORTED, buf, sizeof buf);
    cr_assert_str_eq(buf, "{\"temp\":21}");

    cr_assert_eq(ciot_shadow_get(NULL, s, on_sres, &r), 0);
    wait_result(c, &r, 5, 5000);
    cr_assert_eq(r.outcome, CIOT_SHADOW_ACCEPTED);
    cr_assert_eq(r.request, CIOT_SHADOW_GET);
    cr_assert_eq(r.version, 3);
    cr_assert(strstr(r.doc, "\"delta\":{\"temp\":19}") != NULL, "%s", r.doc);

    /* rejected by the service: too large (413), too deep (400) */
    static char big[9100];
    int n = snprintf(big, sizeof big, "{\"blob\":\"");
    memset(big + n, 'x', 9000);
    n += 9000;
    n += snprintf(big + n, sizeof big - (size_t)n, "\"}");
    cr_assert_eq(ciot_shadow_update_reported(NULL, s, big, (size_t)n, on_sres, &r), 0);
    wait_result(c, &r, 6, 5000);
    cr_assert_eq(r.outcome, CIOT_SHADOW_REJECTED);
    cr_assert_eq(r.code, 413);
    cr_assert_str_eq(r.msg, "The payload exceeds the maximum size allowed");
    const char *deep = "{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{\"g\":1}}}}}}}";
    cr_assert_eq(ciot_shadow_update_reported(NULL, s, deep, strlen(deep), on_sres, &r), 0);
    wait_result(c, &r, 7, 5000);
    cr_assert_eq(r.code, 400);
    cr_assert_str_eq(r.msg, "JSON contains too many levels of nesting; maximum is 6");
    cr_assert_eq(ciot_shadow_version(s), 3, "a rejected update leaves the copy alone");

    cr_assert_eq(ciot_shadow_delete(NULL, s, on_sres, &r), 0);
    wait_result(c, &r, 8, 5000);
    cr_assert_eq(r.outcome, CIOT_SHADOW_ACCEPTED);
    cr_assert_eq(r.request, CIOT_SHADOW_DELETE);
    cr_assert_eq(r.version, 3);
    cr_assert_eq(ciot_shadow_version(s), 0);
    size_t len;
    cr_assert_eq(ciot_shadow_read(buf, sizeof buf, &len, s, CIOT_SHADOW_REPORTED), CIOT_ENOTFOUND);
    cr_assert_eq(ciot_shadow_delete(NULL, s, on_sres, &r), 0);
    wait_result(c, &r, 9, 5000);
    cr_assert_eq(r.code, 404);

    /* a named shadow lives on its own topics */
    ciot_shadow *named = NULL;
    cr_assert_eq(ciot_shadow_new(&named, c, "config", 6), 0);
    cr_assert_eq(ciot_shadow_update_reported(NULL, named, "{\"mode\":\"eco\"}", 14, on_sres, &r), 0);
    wait_result(c, &r, 10, 5000);
    cr_assert_eq(r.outcome, CIOT_SHADOW_ACCEPTED);
    cr_assert_eq(r.shadow, named);
    cr_assert_eq(r.version, 1);
    pthread_mutex_lock(&v.lock);
    bool found = false;
    for (int i = 0; i < v.nshadows; i++)
        found |= strcmp(v.shadows[i].prefix, "$aws/things/dev-sh/shadow/name/config") == 0;
    pthread_mutex_unlock(&v.lock);
    cr_assert(found);
    cr_assert_eq(ciot_shadow_pending(s), 0);
    cr_assert_eq(ciot_shadow_free(named), 0);
    cr_assert_eq(ciot_shadow_free(s), 0);
    cr_assert_eq(r.n, 10, "no extra callbacks");
    cr_assert_eq(ciot_client_disconnect(c), 0);
    cr_assert_eq(ciot_client_free(c), 0);
    svc_stop(&v);
}

Test(aws, an_unanswered_request_times_out_once)
{
    svc v;
    svc_start(&v);
    svc_mute(&v, true);
    ciot_client *c = device("dev-to", NULL, 300, NULL);
    ciot_shadow *s = NULL;
    cr_assert_eq(ciot_shadow_new(&s, c, NULL, 0), 0);
    connect_device(c);
    sres r;
    sres_init(&r);
    uint64_t t0 = h_now_ms();
    cr_assert_eq(ciot_shadow_update_reported(NULL, s, "{\"a\":1}", 7, on_sres, &r), 0);
    wait_result(c, &r, 1, 5000);
    uint64_t took = h_now_ms() - t0;
    cr_assert_eq(r.outcome, CIOT_SHADOW_FAILED);
    cr_assert_eq(r.error, CIOT_ETIMEDOUT);
    cr_assert(took >= 290 && took < 3000, "timed out after %llu ms", (unsigned long long)took);
    cr_assert(strstr(r.msg, "300 ms") != NULL, "%s", r.msg);
    cr_assert_geq(svc_requests(&v), 2, "the request was sent (after the connect's /get)");
    /* the answer comes late: it ends nothing */
    svc_mute(&v, false);
    cr_assert_eq(ciot_shadow_get(NULL, s, on_sres, &r), 0);
    wait_result(c, &r, 2, 5000);
    cr_assert_eq(r.request, CIOT_SHADOW_GET);
    run_for(c, 300);
    cr_assert_eq(r.n, 2);
    cr_assert_eq(ciot_shadow_free(s), 0);
    cr_assert_eq(ciot_client_disconnect(c), 0);
    cr_assert_eq(ciot_client_free(c), 0);
    svc_stop(&v);
}

static bool requests_at_least_10(void *arg)
{
    return svc_requests(arg) >= 10;
}

Test(aws, no_more_than_10_requests_are_in_flight)
{
    svc v;
    svc_start(&v);
    svc_mute(&v, true);
    ciot_client *c = device("dev-lim", NULL, 1500, NULL);
    ciot_shadow *s = NULL;
    cr_assert_eq(ciot_shadow_new(&s, c, NULL, 0), 0);
    sres r;
    sres_init(&r);
    for (int i = 0; i < 12; i++)
        cr_assert_eq(ciot_shadow_get(NULL, s, on_sres, &r), 0);
    connect_device(c);
    cr_assert(h_run_until(c, requests_at_least_10, &v, 5000));
    run_for(c, 300);
    /* the connect's own /get and 9 of ours: 10 */
    cr_assert_eq(svc_requests(&v), 10);
    cr_assert_eq(ciot_shadow_pending(s), 12);
    wait_result(c, &r, 12, 8000);
    cr_assert_eq(r.n, 12);
    cr_assert_eq(r.error, CIOT_ETIMEDOUT);
    run_for(c, 200);
    cr_assert_eq(r.n, 12, "one callback each");
    cr_assert_eq(ciot_shadow_free(s), 0);
    cr_assert_eq(ciot_client_disconnect(c), 0);
    cr_assert_eq(ciot_client_free(c), 0);
    svc_stop(&v);
}

Test(aws, deltas_fire_once_per_newer_version_and_stale_ones_are_ignored)
{
    svc v;
    svc_start(&v);
    ciot_client *c = device("dev-delta", NULL, 0, NULL);
    ciot_shadow *s = NULL;
    cr_assert_eq(ciot_shadow_new(&s, c, NULL, 0), 0);
    sres d;
    sres_init(&d);
    ciot_shadow_set_delta_callback(s, on_sres, &d);
    connect_device(c);
    run_for(c, 200); /* the connect's /get: 404, nothing to tell */
    cr_assert_eq(d.n, 0);

    const char *prefix = "$aws/things/dev-delta/shadow";
    svc_update_desired(&v, prefix, "{\"fan\":\"high\",\"interval\":10}", true);
    wait_result(c, &d, 1, 5000);
    cr_assert_eq(d.request, CIOT_SHADOW_DELTA);
    cr_assert_eq(d.outcome, CIOT_SHADOW_ACCEPTED);
    cr_assert_eq(d.version, 1);
    cr_assert_str_eq(d.doc, "{\"fan\":\"high\",\"interval\":10}");
    cr_assert_str_eq(d.token, "operator-1");
    svc_update_desired(&v, prefix, "{\"fan\":\"low\"}", true);
    wait_result(c, &d, 2, 5000);
    cr_assert_eq(d.version, 2);
    cr_assert_str_eq(d.doc, "{\"fan\":\"low\",\"interval\":10}", "the whole delta");
    char buf[256];
    read_section(s, CIOT_SHADOW_DESIRED, buf, sizeof buf);
    cr_assert_str_eq(buf, "{\"fan\":\"low\",\"interval\":10}");

    /* an old delta arriving late, and the same one twice: ignored */
    const char *stale = "{\"state\":{\"fan\":\"old\"},\"metadata\":{\"fan\":{\"timestamp\":1700000000}},"
                        "\"version\":1,\"timestamp\":1700000000}";
    svc_pub(&v, "$aws/things/dev-delta/shadow/update/delta", stale, strlen(stale));
    const char *again = "{\"state\":{\"fan\":\"low\"},\"metadata\":{\"fan\":{\"timestamp\":1700000000}},"
                        "\"version\":2,\"timestamp\":1700000000}";
    svc_pub(&v, "$aws/things/dev-delta/shadow/update/delta", again, strlen(again));
    run_for(c, 300);
    cr_assert_eq(d.n, 2);
    read_section(s, CIOT_SHADOW_DESIRED, buf, sizeof buf);
    cr_assert_str_eq(buf, "{\"fan\":\"low\",\"interval\":10}", "the stale delta changed nothing");
    cr_assert_eq(ciot_shadow_version(s), 2);

    /* the device applies it and reports back: converged, no delta */
    sres r;
    sres_init(&r);
    const char *rep = "{\"fan\":\"low\",\"interval\":10}";
    cr_assert_eq(ciot_shadow_update_reported(NULL, s, rep, strlen(rep), on_sres, &r), 0);
    wait_result(c, &r, 1, 5000);
    cr_assert_eq(r.version, 3);
    size_t n;
    cr_assert_eq(ciot_shadow_read(buf, sizeof buf, &n, s, CIOT_SHADOW_DIFF), CIOT_ENOTFOUND);
    run_for(c, 200);
    cr_assert_eq(d.n, 2);

    /* a delta that skips versions: the shadow fetches the document */
    int before = svc_requests(&v);
    const char *skip = "{\"state\":{\"fan\":\"max\"},\"metadata\":{\"fan\":{\"timestamp\":1700000000}},"
                       "\"version\":9,\"timestamp\":1700000000}";
    svc_pub(&v, "$aws/things/dev-delta/shadow/update/delta", skip, strlen(skip));
    wait_result(c, &d, 3, 5000);
    cr_assert_eq(d.version, 9);
    run_for(c, 300);
    cr_assert_eq(svc_requests(&v), before + 1, "one /get after the gap");
    cr_assert_eq(ciot_shadow_version(s), 9, "a fetched document older than the copy is not applied");
    cr_assert_eq(ciot_shadow_free(s), 0);
    cr_assert_eq(ciot_client_disconnect(c), 0);
    cr_assert_eq(ciot_client_free(c), 0);
    svc_stop(&v);
}

/* AWS: a shadow re-created more than 48 h after its deletion starts again at
 * version 1 (protocols.md §2.2). The versions seen before the delete must
 * not make the new shadow's deltas look stale. */
Test(aws, deltas_of_a_shadow_recreated_after_48_hours_are_not_taken_for_stale)
{
    svc v;
    svc_start(&v);
    ciot_client *c = device("dev-recreate", NULL, 0, NULL);
    ciot_shadow *s = NULL;
    cr_assert_eq(ciot_shadow_new(&s, c, NULL, 0), 0);
    sres d;
    sres_init(&d);
    ciot_shadow_set_delta_callback(s, on_sres, &d);
    connect_device(c);
    run_for(c, 200);
    const char *prefix = "$aws/things/dev-recreate/shadow";
    svc_update_desired(&v, prefix, "{\"fan\":\"high\"}", true);
    svc_update_desired(&v, prefix, "{\"fan\":\"low\"}", true);
    svc_update_desired(&v, prefix, "{\"fan\":\"off\"}", true);
    wait_result(c, &d, 3, 5000);
    cr_assert_eq(d.version, 3);

    sres r;
    sres_init(&r);
    cr_assert_eq(ciot_shadow_delete(NULL, s, on_sres, &r), 0);
    wait_result(c, &r, 1, 5000);
    cr_assert_eq(r.outcome, CIOT_SHADOW_ACCEPTED);
    cr_assert_eq(ciot_shadow_version(s), 0, "deleted: nothing known");

    /* 49 hours later the operator creates it again: version 1. */
    svc_update_desired_at(&v, prefix, "{\"fan\":\"eco\"}", true, (int64_t)time(NULL) + 49 * 3600);
    wait_result(c, &d, 4, 5000);
    cr_assert_eq(d.version, 1);
    cr_assert_str_eq(d.doc, "{\"fan\":\"eco\"}");
    char buf[256];
    read_section(s, CIOT_SHADOW_DESIRED, buf, sizeof buf);
    cr_assert_str_eq(buf, "{\"fan\":\"eco\"}");
    cr_assert_eq(ciot_shadow_version(s), 1);

    /* The same when the operator deletes it (the device sees /delete/accepted)
     * and re-creates it later still. */
    svc_update_desired_at(&v, prefix, "{\"fan\":\"turbo\"}", true, (int64_t)time(NULL) + 49 * 3600);
    wait_result(c, &d, 5, 5000);
    cr_assert_eq(d.version, 2);
    svc_delete(&v, prefix);
    run_for(c, 300);
    cr_assert_eq(ciot_shadow_version(s), 0, "the operator's delete was seen");
    cr_assert_eq(ciot_shadow_read(buf, sizeof buf, NULL, s, CIOT_SHADOW_DESIRED), CIOT_ENOTFOUND);
    svc_update_desired_at(&v, prefix, "{\"fan\":\"quiet\"}", true,
                          (int64_t)time(NULL) + 49 * 3600);
    wait_result(c, &d, 6, 5000);
    cr_assert_eq(d.version, 1);
    cr_assert_str_eq(d.doc, "{\"fan\":\"quiet\"}");
    cr_assert_eq(ciot_shadow_free(s), 0);
    cr_assert_eq(ciot_client_disconnect(c), 0);
    cr_assert_eq(ciot_client_free(c), 0);
    svc_stop(&v);
}

static bool svc_connected_twice(void *arg)
{
    svc *v = arg;
    pthread_mutex_lock(&v->lock);
    bool ok = v->connects >= 2 && v->subacks >= SVC_NFILTERS;
    pthread_mutex_unlock(&v->lock);
    return ok;
}

Test(aws, after_a_reconnect_the_shadow_is_fetched_and_an_offline_change_is_seen)
{
    svc v;
    svc_start(&v);
    h_events ev;
    h_events_init(&ev);
    ciot_client *c = device("dev-rc", NULL, 0, &ev);
    ciot_shadow *s = NULL;
    cr_assert_eq(ciot_shadow_new(&s, c, NULL, 0), 0);
    sres d, r;
    sres_init(&d);
    sres_init(&r);
    ciot_shadow_set_delta_callback(s, on_sres, &d);
    connect_device(c);
    cr_assert_eq(ciot_shadow_update_reported(NULL, s, "{\"led\":\"off\"}", 13, on_sres, &r), 0);
    wait_result(c, &r, 1, 5000);
    cr_assert_eq(r.version, 1);
    int before = svc_requests(&v);

    /* the broker goes away; while the device is offline the operator changes desired */
    cr_assert_eq(test_broker_kill9(&broker), 0);
    cr_assert(h_run_until(c, h_is_disconnected, c, 5000));
    svc_update_desired(&v, "$aws/things/dev-rc/shadow", "{\"led\":\"on\"}", false);
    cr_assert_eq(test_broker_restart(&broker), 0);
    cr_assert(h_wait_until(svc_connected_twice, &v, 10000), "the service did not come back");

    cr_assert(h_run_until(c, h_is_connected, c, 10000), "the device did not reconnect");
    wait_result(c, &d, 1, 5000);
    cr_assert_eq(d.version, 2);
    cr_assert_str_eq(d.doc, "{\"led\":\"on\"}");
    cr_assert_eq(svc_requests(&v), before + 1, "one /get after the reconnect: %d, %d", svc_requests(&v), before);
    char buf[128];
    read_section(s, CIOT_SHADOW_DESIRED, buf, sizeof buf);
    cr_assert_str_eq(buf, "{\"led\":\"on\"}");
    cr_assert_eq(ciot_shadow_version(s), 2);
    cr_assert_eq(ev.connected, 2);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(ciot_shadow_free(s), 0);
    cr_assert_eq(ciot_client_disconnect(c), 0);
    cr_assert_eq(ciot_client_free(c), 0);
    svc_stop(&v);
}

typedef struct tokens {
    pthread_mutex_t lock;
    int n;
    char prefix[32];
    int foreign;
    int failed;
} tokens;

static int on_token(ciot_shadow *s, const ciot_shadow_result *res, void *ud)
{
    (void)s;
    tokens *t = ud;
    size_t tl;
    const char *tok = ciot_shadow_result_token(res, &tl);
    pthread_mutex_lock(&t->lock);
    t->n++;
    if (ciot_shadow_result_outcome(res) != CIOT_SHADOW_ACCEPTED)
        t->failed++;
    if (!t->prefix[0]) {
        const char *dash = memchr(tok, '-', tl);
        snprintf(t->prefix, sizeof t->prefix, "%.*s", dash ? (int)(dash - tok) : (int)tl, tok);
    } else if (tl < strlen(t->prefix) || memcmp(tok, t->prefix, strlen(t->prefix)) != 0) {
        t->foreign++;
    }
    pthread_mutex_unlock(&t->lock);
    return 0;
}

static bool tokens_at(void *arg)
{
    tokens **t = arg;
    pthread_mutex_lock(&t[0]->lock);
    pthread_mutex_lock(&t[1]->lock);
    bool ok = t[0]->n >= 20 && t[1]->n >= 20;
    pthread_mutex_unlock(&t[1]->lock);
    pthread_mutex_unlock(&t[0]->lock);
    return ok;
}

Test(aws, two_devices_of_one_thing_never_end_each_others_requests)
{
    svc v;
    svc_start(&v);
    ciot_client *a = device("dev-a", "shared", 0, NULL);
    ciot_client *b = device("dev-b", "shared", 0, NULL);
    ciot_shadow *sa = NULL, *sb = NULL;
    cr_assert_eq(ciot_shadow_new(&sa, a, NULL, 0), 0);
    cr_assert_eq(ciot_shadow_new(&sb, b, NULL, 0), 0);
    connect_device(a);
    /* b runs on its own thread, a in this one */
    cr_assert_eq(ciot_client_connect(b), 0);
    cr_assert_eq(ciot_client_start(b), 0);
    cr_assert(h_wait_until(h_is_connected, b, 5000));
    tokens ta = {.lock = PTHREAD_MUTEX_INITIALIZER}, tb = {.lock = PTHREAD_MUTEX_INITIALIZER};
    for (int i = 0; i < 20; i++) {
        char rep[32];
        int n = snprintf(rep, sizeof rep, "{\"a\":%d}", i);
        cr_assert_eq(ciot_shadow_update_reported(NULL, sa, rep, (size_t)n, on_token, &ta), 0);
        if (i % 2)
            cr_assert_eq(ciot_shadow_get(NULL, sb, on_token, &tb), 0);
        else
            cr_assert_eq(ciot_shadow_update_desired(NULL, sb, "{\"b\":1}", 7, on_token, &tb), 0);
    }
    tokens *both[2] = {&ta, &tb};
    cr_assert(h_run_until(a, tokens_at, both, 10000), "a: %d, b: %d", ta.n, tb.n);
    run_for(a, 300);
    cr_assert_eq(ta.n, 20, "each request of a ended once");
    pthread_mutex_lock(&tb.lock);
    cr_assert_eq(tb.n, 20, "each request of b ended once");
    cr_assert_eq(tb.foreign, 0);
    cr_assert_eq(tb.failed, 0);
    cr_assert_str_neq(ta.prefix, tb.prefix, "the token prefixes differ");
    pthread_mutex_unlock(&tb.lock);
    cr_assert_eq(ta.foreign, 0);
    cr_assert_eq(ta.failed, 0);
    cr_assert_eq(ciot_client_stop(b), 0);
    cr_assert_eq(ciot_shadow_free(sb), 0);
    cr_assert_eq(ciot_shadow_free(sa), 0);
    cr_assert_eq(ciot_client_disconnect(a), 0);
    cr_assert_eq(ciot_client_disconnect(b), 0);
    cr_assert_eq(ciot_client_free(a), 0);
    cr_assert_eq(ciot_client_free(b), 0);
    svc_stop(&v);
}

/* ---- TLS ---- */

static test_broker tls_broker;

static void start_tls(void)
{
    test_broker_opts o = {.tls = true, .max_queued = 0};
    cr_assert_eq(test_broker_start(&tls_broker, &o), 0, "the TLS broker fixture did not start");
}

static void stop_tls(void)
{
    test_broker_stop(&tls_broker);
}

static ciot_config *tls_config(int port)
{
    ciot_config *cfg;
    cr_assert_eq(ciot_config_new(&cfg), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_BACKEND, CIOT_BACKEND_AWS), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_HOST, "localhost"), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PORT, port), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_CLIENT_ID, "device1"), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TLS_CA_FILE, test_broker_pki(&tls_broker, "ca.crt")), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TLS_CERT_FILE, test_broker_pki(&tls_broker, "device1.crt")), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TLS_KEY_FILE, test_broker_pki(&tls_broker, "device1.key")), 0);
    return cfg;
}

Test(aws_tls, mutual_tls_with_sni_and_alpn_only_on_443, .init = start_tls, .fini = stop_tls, .timeout = 60)
{
    ciot_config *cfg = tls_config(tls_broker.tls_port);
    h_events ev;
    h_events_init(&ev);
    ciot_client *c = h_client(cfg, &ev);
    cr_assert_str_eq(ciot__client_sni(c), "localhost", "SNI is the endpoint");
    cr_assert_str_eq(ciot__client_alpn(c), "", "no ALPN off 443");
    cr_assert_eq(ciot__client_keepalive(c), 60);
    connect_device(c);
    uint64_t id = 0;
    cr_assert_eq(ciot_telemetry_send(&id, c, "temperature", 11, 20.25, NULL), 0);
    struct h_count_arg acked = {&ev, 1};
    cr_assert(h_run_until(c, h_acked_at_least, &acked, 5000), "no PUBACK over TLS");
    cr_assert_eq(ciot_client_disconnect(c), 0);
    cr_assert_eq(ciot_client_free(c), 0);

    /* X.509 on 443: ALPN x-amzn-mqtt-ca (no listener on 443 here: the setting is checked) */
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PORT, 443), 0);
    c = h_client(cfg, NULL);
    cr_assert_str_eq(ciot__client_alpn(c), "x-amzn-mqtt-ca");
    cr_assert_str_eq(ciot__client_sni(c), "localhost");
    cr_assert_eq(ciot__client_port(c), 443);
    cr_assert_eq(ciot_client_free(c), 0);
    ciot_config_free(cfg);
}

/* ---- requests across a broker restart ---- */

Test(aws, requests_across_a_broker_restart_end_exactly_once)
{
    svc v;
    svc_start(&v);
    /* The timeout runs from the call, and the offline requests wait for the
     * broker's restart and the service's reconnect: long enough for a slow
     * (valgrind, loaded) machine, where 2 s failed. Lost requests still end. */
    ciot_client *c = device("dev-restart", NULL, 10000, NULL);
    ciot_shadow *s = NULL;
    cr_assert_eq(ciot_shadow_new(&s, c, NULL, 0), 0);
    connect_device(c);
    ends e = {0};
    uint64_t ids[40];
    for (int i = 0; i < 20; i++) {
        char rep[32];
        int n = snprintf(rep, sizeof rep, "{\"n\":%d}", i);
        cr_assert_eq(ciot_shadow_update_reported(&ids[i], s, rep, (size_t)n, on_end, &e), 0);
    }
    run_for(c, 30); /* some go out, some are answered */
    cr_assert_eq(test_broker_kill9(&broker), 0);
    cr_assert(h_run_until(c, h_is_disconnected, c, 5000));
    for (int i = 20; i < 30; i++)
        cr_assert_eq(ciot_shadow_get(&ids[i], s, on_end, &e), 0);
    cr_assert_eq(test_broker_restart(&broker), 0);
    cr_assert(h_wait_until(svc_connected_twice, &v, 10000), "the service did not come back");
    cr_assert(h_run_until(c, h_is_connected, c, 10000));
    struct ends_want w = {&e, 30};
    cr_assert(h_run_until(c, ends_at, &w, 30000), "%d accepted, %d timed out, %d other", e.accepted,
              e.timed_out, e.other);
    run_for(c, 500);
    for (int i = 0; i < 30; i++)
        cr_assert_eq(e.count[ids[i]], 1, "request %llu ended %d times", (unsigned long long)ids[i],
                     e.count[ids[i]]);
    cr_assert_eq(e.other, 0);
    cr_assert_geq(e.accepted, 10,
                  "the requests made while offline are answered after the reconnect: %d accepted, "
                  "%d timed out, %d other",
                  e.accepted, e.timed_out, e.other);
    cr_assert_eq(ciot_shadow_pending(s), 0);
    cr_assert_eq(ciot_shadow_free(s), 0);
    cr_assert_eq(ciot_client_disconnect(c), 0);
    cr_assert_eq(ciot_client_free(c), 0);
    svc_stop(&v);
}

/* ---- out of memory inside a callback ---- */

static long oom_count, oom_at = -1;

static void *oom_malloc(size_t n, void *ctx)
{
    (void)ctx;
    if (oom_at >= 0 && oom_count++ == oom_at)
        return NULL;
    return malloc(n);
}

static void *oom_realloc(void *p, size_t n, void *ctx)
{
    (void)ctx;
    if (oom_at >= 0 && oom_count++ == oom_at)
        return NULL;
    return realloc(p, n);
}

static void oom_free(void *p, void *ctx)
{
    (void)ctx;
    free(p);
}

struct oom_sweep {
    int failures, done, nmade;
    ciot_shadow *made[400];
};

/* In a handler, ciot_shadow_new() with each of its allocations failing in
 * turn: each failure is CIOT_ENOMEM and leaves nothing behind (ASan and
 * valgrind runs check the leaks): it used to leak, because undoing a
 * half-made shadow went through ciot_shadow_free(), refused in callbacks. */
static int oom_handler(ciot_client *c, const ciot_event *msg, void *ud)
{
    (void)msg;
    struct oom_sweep *w = ud;
    if (w->done)
        return 0;
    for (long k = 0; k < 400; k++) {
        ciot_shadow *s = NULL;
        oom_count = 0;
        oom_at = k;
        int rc = ciot_shadow_new(&s, c, "oom", 3);
        oom_at = -1;
        if (rc == 0) /* made (maybe past a failure it recovered from): freed later */
            w->made[w->nmade++] = s;
        if (oom_count <= k) { /* nothing failed */
            cr_assert_eq(rc, 0, "%s", ciot_err_name(rc));
            break;
        }
        if (rc == 0)
            continue;
        cr_assert_eq(rc, CIOT_ENOMEM, "allocation %ld: %s", k, ciot_err_name(rc));
        cr_assert_null(s);
        w->failures++;
    }
    w->done = 1;
    return 0;
}

static bool oom_subscribed(void *arg)
{
    h_events *e = arg;
    pthread_mutex_lock(&e->lock);
    bool ok = e->subscribed > 0;
    pthread_mutex_unlock(&e->lock);
    return ok;
}

static bool oom_swept(void *arg)
{
    return ((struct oom_sweep *)arg)->done != 0;
}

Test(aws, a_shadow_that_cannot_be_made_inside_a_callback_leaves_nothing_behind)
{
    ciot_allocator a = {oom_malloc, oom_realloc, oom_free, NULL};
    cr_assert_eq(ciot_set_allocator(&a), 0);
    h_events ev;
    h_events_init(&ev);
    ciot_client *c = device("oomdev", "oomThing", 0, &ev);
    connect_device(c);
    struct oom_sweep w = {0};
    cr_assert_eq(ciot_client_subscribe(c, "oom/go", 6, 1, oom_handler, &w), 0);
    cr_assert(h_run_until(c, oom_subscribed, &ev, 5000));
    cr_assert_eq(ciot_client_publish(NULL, c, "oom/go", 6, "x", 1, 1, 0), 0);
    cr_assert(h_run_until(c, oom_swept, &w, 5000));
    cr_assert_gt(w.failures, 3);
    cr_assert_gt(w.nmade, 0);
    for (int i = 0; i < w.nmade; i++)
        cr_assert_eq(ciot_shadow_free(w.made[i]), 0);
    ciot_client_free(c);
}
