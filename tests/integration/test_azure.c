/*
 * The Azure IoT Hub backend against a real mosquitto (the fixture's plain
 * listener, loopback, so TLS may be off). The hub's side is played by a
 * libmosquitto test client: it reads telemetry topics byte for byte,
 * publishes cloud-to-device messages and method requests and reads the
 * answers. The broker cannot check SAS tokens; the tests check what the
 * client sends instead (user name in the broker's log, the token's expiry
 * through the backend's state, recomputed with the public signer).
 */
#include "harness.h"
#include "tclient.h"

#include "backend/azure_backend.h"
#include "client/service.h"

#include <cloudiot/azure.h>

#include <time.h>

static test_broker broker;

#define HUB "myhub.azure-devices.net"
#define KEY "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define CS_DEVICE "HostName=" HUB ";DeviceId=device1;SharedAccessKey=" KEY
#define CS_MODULE "HostName=" HUB ";DeviceId=device1;ModuleId=mod-a;SharedAccessKey=" KEY
#define USERNAME HUB "/device1/?api-version=2021-04-12"

static void start_plain(void)
{
    test_broker_opts o = {.max_queued = 0};
    cr_assert_eq(test_broker_start(&broker, &o), 0, "the broker fixture did not start");
}

static void stop_broker(void)
{
    test_broker_stop(&broker);
}

TestSuite(azure, .init = start_plain, .fini = stop_broker, .timeout = 120);

static ciot_config *azure_config(const char *cs)
{
    ciot_config *cfg;
    cr_assert_eq(ciot_config_new(&cfg), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_BACKEND, CIOT_BACKEND_AZURE), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_AZURE_CONNECTION_STRING, cs), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_HOST, "127.0.0.1"), 0); /* the emulator */
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PORT, broker.port), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_TLS, 0), 0);             /* loopback only */
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_RECONNECT_BASE_MS, 20), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_RECONNECT_MAX_MS, 200), 0);
    return cfg;
}

static ciot_client *azure_device(const char *cs, h_events *ev)
{
    ciot_config *cfg = azure_config(cs);
    ciot_client *c = h_client(cfg, ev);
    ciot_config_free(cfg);
    return c;
}

static tclient *service(const char *filter)
{
    tclient *s = tc_new("hub-service", NULL, NULL, NULL, NULL, NULL);
    cr_assert_not_null(s);
    cr_assert_eq(tc_connect(s, broker.port), 0);
    if (filter)
        cr_assert_eq(tc_sub(s, filter, 1), 1);
    return s;
}

/* ---- connection ---- */

Test(azure, connects_with_the_hubs_client_id_and_user_name_and_a_fresh_sas_token)
{
    h_events ev;
    h_events_init(&ev);
    ciot_client *c = azure_device(CS_DEVICE, &ev);
    cr_assert_eq(ciot__client_port(c), broker.port);
    cr_assert_eq(ciot__client_keepalive(c), 60);
    uint64_t before = (uint64_t)time(NULL);
    cr_assert_eq(ciot_client_connect(c), 0);
    cr_assert(h_run_until(c, h_is_connected, c, 5000), "not connected: %s", ciot_client_errmsg(c));
    uint64_t se = ciot__azure_token_expiry(ciot__client_backend_state(c));
    cr_assert(se >= before + 3600 && se <= (uint64_t)time(NULL) + 3600, "expiry %llu",
              (unsigned long long)se);
    /* renewed at 80 % of the hour by default */
    uint64_t renew = ciot__client_renew_at(c), now = ciot__now_ms();
    cr_assert(renew > now + 2870000 && renew <= now + 2880000, "renewal in %lld ms",
              (long long)(renew - now));
    cr_assert_geq(test_broker_log_count(&broker, "as device1 "), 1);
    cr_assert_geq(test_broker_log_count(&broker, "u'" USERNAME "'"), 1);
    cr_assert_eq(ciot_client_disconnect(c), 0);
    cr_assert_eq(ciot_client_free(c), 0);
}

Test(azure, a_module_identity_connects_as_device_slash_module)
{
    ciot_client *c = azure_device(CS_MODULE, NULL);
    cr_assert_eq(ciot_client_connect(c), 0);
    cr_assert(h_run_until(c, h_is_connected, c, 5000), "not connected: %s", ciot_client_errmsg(c));
    cr_assert_geq(test_broker_log_count(&broker, "as device1/mod-a "), 1);
    cr_assert_geq(test_broker_log_count(&broker, "u'" HUB "/device1/mod-a/?api-version=2021-04-12'"),
                  1);
    cr_assert_eq(ciot_client_free(c), 0);
}

/* The receiving side of the QoS 1 stream. */
typedef struct stream {
    tclient *s;
    int want;
} stream;

static bool stream_done(void *arg)
{
    stream *st = arg;
    return tc_get(st->s, &st->s->nmsgs) >= st->want;
}

Test(azure, the_token_is_renewed_by_reconnecting_without_losing_or_reordering_a_qos1_stream)
{
    tclient *s = service("devices/device1/messages/events/#");
    h_events ev;
    h_events_init(&ev);
    ciot_config *cfg = azure_config(CS_DEVICE);
    /* a 2 s token renewed at 50 %: a reconnect every second */
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_SAS_TOKEN_LIFETIME_S, 2), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_SAS_RENEW_PERCENT, 50), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_MAX_INFLIGHT, 20), 0);
    ciot_client *c = h_client(cfg, &ev);
    ciot_config_free(cfg);
    cr_assert_eq(ciot_client_connect(c), 0);
    cr_assert_eq(ciot_client_start(c), 0);
    cr_assert(h_wait_until(h_is_connected, c, 5000));
    uint64_t first_se = ciot__azure_token_expiry(ciot__client_backend_state(c));

    /* ~4.5 s of messages, published from this thread while the client's
     * thread renews the token under them */
    int n = (int)h_scaled(900, 200);
    uint64_t t0 = h_now_ms();
    for (int i = 0; i < n; i++) {
        char body[32];
        int len = snprintf(body, sizeof body, "{\"seq\":%d}", i);
        uint64_t id;
        cr_assert_eq(ciot_client_publish(&id, c, "devices/device1/messages/events/", 32, body,
                                         (size_t)len, 1, false),
                     0);
        uint64_t due = t0 + (uint64_t)(i + 1) * 4500u / (uint64_t)n;
        while (h_now_ms() < due)
            tc_sleep_ms(1);
    }
    stream st = {s, n};
    cr_assert(h_wait_until(stream_done, &st, 20000), "received %d of %d",
              tc_get(s, &s->nmsgs), n);
    /* every message once, in order */
    for (int i = 0; i < n; i++) {
        tc_msg *m = tc_wait(s, "devices/device1/messages/events/", 100);
        cr_assert_not_null(m, "message %d missing", i);
        char want[32];
        snprintf(want, sizeof want, "{\"seq\":%d}", i);
        cr_assert_str_eq(m->payload, want, "message %d out of order", i);
        cr_assert_eq(m->qos, 1);
        tc_msg_free(m);
    }
    cr_assert_eq(tc_get(s, &s->nmsgs), 0, "duplicates arrived");

    /* reconnected at least 3 times, each time with a newer token */
    pthread_mutex_lock(&ev.lock);
    int connects = ev.connected, errors = ev.errors;
    pthread_mutex_unlock(&ev.lock);
    cr_assert_geq(connects, 4, "%d connections", connects);
    cr_assert_eq(errors, 0, "%s", ev.error_text);
    uint64_t last_se = ciot__azure_token_expiry(ciot__client_backend_state(c));
    cr_assert_geq(last_se, first_se + 3, "expiry %llu then %llu", (unsigned long long)first_se,
                  (unsigned long long)last_se);
    cr_assert_geq(test_broker_log_count(&broker, "u'" USERNAME "'"), 4);
    /* the password of a renewal is the token for that expiry */
    char tok[512];
    size_t tl;
    cr_assert_eq(ciot_azure_sas_token(tok, sizeof tok, &tl, HUB, "device1", NULL, NULL, KEY,
                                      last_se),
                 0);
    char pw[512];
    uint64_t se2 = 0;
    cr_assert_eq(ciot__azure_sign_now(ciot__client_backend_state(c), pw, sizeof pw, last_se - 2,
                                      &se2),
                 0);
    cr_assert_eq(se2, last_se);
    cr_assert_str_eq(pw, tok);
    cr_assert_eq(ciot_client_stop(c), 0);
    cr_assert_eq(ciot_client_free(c), 0);
    tc_free(s);
}

/* ---- telemetry ---- */

static ciot_client *connected_device(const char *cs, h_events *ev)
{
    ciot_client *c = azure_device(cs, ev);
    cr_assert_eq(ciot_client_connect(c), 0);
    cr_assert(h_run_until(c, h_is_connected, c, 5000), "not connected: %s", ciot_client_errmsg(c));
    return c;
}

static tc_msg *drive_and_wait(ciot_client *c, tclient *s, const char *topic)
{
    uint64_t end = h_now_ms() + 5000;
    while (h_now_ms() < end) {
        cr_assert_eq(ciot_client_run(c, 5), 0);
        tc_msg *m = tc_wait(s, topic, 1);
        if (m)
            return m;
    }
    return NULL;
}

Test(azure, telemetry_topic_and_bag_are_the_hubs_byte_for_byte)
{
    tclient *s = service("devices/#");
    ciot_client *c = connected_device(CS_DEVICE, NULL);
    /* protocols.md §4.5 */
    ciot_property alert = {"alert", 5, "high temp", 9};
    ciot_telemetry_opts o = CIOT_TELEMETRY_OPTS_INIT;
    o.properties = &alert;
    o.property_count = 1;
    const char *body = "{\"temperature\":37.5}";
    cr_assert_eq(ciot_telemetry_send_json(NULL, c, "temperature", 11, body, strlen(body), &o), 0);
    tc_msg *m = drive_and_wait(
        c, s, "devices/device1/messages/events/$.ct=application%2Fjson&$.ce=utf-8&alert=high%20temp");
    cr_assert_not_null(m, "no message on the §4.5 topic");
    cr_assert_str_eq(m->payload, body);
    cr_assert_eq(m->qos, 1);
    tc_msg_free(m);

    /* the seed's properties with ids, and the guide's JSON body */
    ciot_property seed[3] = {{"temperatureAlert", 16, "true", 4},
                             {"deviceType", 10, "sensor/v2 (lab)", 15},
                             {"timestamp", 9, "2026-11-26T04:56:27Z", 20}};
    ciot_telemetry_opts o2 = CIOT_TELEMETRY_OPTS_INIT;
    o2.properties = seed;
    o2.property_count = 3;
    o2.message_id = "msg-1";
    o2.message_id_len = 5;
    o2.correlation_id = "corr 7";
    o2.correlation_id_len = 6;
    o2.timestamp_ms = 1795669587123; /* 2026-11-26T05:06:27.123Z */
    o2.qos = 0;
    cr_assert_eq(ciot_telemetry_send(NULL, c, "temperature", 11, 21.5, &o2), 0);
    m = drive_and_wait(c, s,
                       "devices/device1/messages/events/$.ct=application%2Fjson&$.ce=utf-8"
                       "&$.mid=msg-1&$.cid=corr%207&temperatureAlert=true"
                       "&deviceType=sensor%2Fv2%20%28lab%29&timestamp=2026-11-26T04%3A56%3A27Z");
    cr_assert_not_null(m, "no message on the seed's topic");
    cr_assert_str_eq(m->payload, "{\"deviceId\":\"device1\",\"sensorType\":\"temperature\","
                                 "\"value\":21.5,\"timestamp\":\"2026-11-26T05:06:27.123Z\","
                                 "\"metadata\":{}}");
    cr_assert_eq(m->qos, 0);
    tc_msg_free(m);

    /* version 1 options (no properties) still work: only the system properties */
    ciot_telemetry_opts v1 = {1, 1, CIOT_TELEMETRY_NOW, NULL, 0, (const ciot_property *)1, 99,
                              NULL, 0, NULL, 0}; /* fields past v1 are never read */
    cr_assert_eq(ciot_telemetry_send_json(NULL, c, "t", 1, "1", 1, &v1), 0);
    m = drive_and_wait(c, s, "devices/device1/messages/events/$.ct=application%2Fjson&$.ce=utf-8");
    cr_assert_not_null(m);
    cr_assert_str_eq(m->payload, "1");
    tc_msg_free(m);

    /* refusals: reserved or empty names, bad ids, NULL arrays */
    ciot_property bad[] = {{"$.ct", 4, "x", 1}, {"", 0, "x", 1}, {"n", 1, "a\0b", 3}};
    for (size_t i = 0; i < 3; i++) {
        o.properties = &bad[i];
        cr_assert_eq(ciot_telemetry_send_json(NULL, c, "t", 1, "1", 1, &o), CIOT_EINVAL, "%zu", i);
        cr_assert(strstr(ciot_client_errmsg(c), "property") != NULL, "%s", ciot_client_errmsg(c));
    }
    o.properties = NULL;
    cr_assert_eq(ciot_telemetry_send_json(NULL, c, "t", 1, "1", 1, &o), CIOT_EINVAL);
    o.property_count = 0;
    o.message_id = "caf\xc3\xa9";
    o.message_id_len = 5;
    cr_assert_eq(ciot_telemetry_send_json(NULL, c, "t", 1, "1", 1, &o), CIOT_EINVAL);
    ciot_telemetry_opts v3 = CIOT_TELEMETRY_OPTS_INIT;
    v3.version = 3;
    cr_assert_eq(ciot_telemetry_send_json(NULL, c, "t", 1, "1", 1, &v3), CIOT_EINVAL);
    cr_assert_eq(tc_count(s, "devices/"), 0);
    cr_assert_eq(ciot_client_free(c), 0);
    tc_free(s);
}

Test(azure, module_telemetry_goes_to_the_module_topic)
{
    tclient *s = service("devices/#");
    ciot_client *c = connected_device(CS_MODULE, NULL);
    char t[128];
    size_t tl = 0;
    cr_assert_eq(ciot_telemetry_topic(t, sizeof t, &tl, c, "x", 1), 0);
    cr_assert_str_eq(t, "devices/device1/modules/mod-a/messages/events/");
    cr_assert_eq(ciot_telemetry_send_json(NULL, c, "x", 1, "{}", 2, NULL), 0);
    tc_msg *m = drive_and_wait(
        c, s, "devices/device1/modules/mod-a/messages/events/$.ct=application%2Fjson&$.ce=utf-8");
    cr_assert_not_null(m);
    tc_msg_free(m);
    cr_assert_eq(ciot_client_free(c), 0);
    tc_free(s);
}

Test(azure, properties_are_refused_on_other_backends)
{
    ciot_config *cfg = h_config(&broker, "plain-1");
    ciot_client *c = h_client(cfg, NULL);
    ciot_config_free(cfg);
    ciot_property p = {"a", 1, "b", 1};
    ciot_telemetry_opts o = CIOT_TELEMETRY_OPTS_INIT;
    o.properties = &p;
    o.property_count = 1;
    cr_assert_eq(ciot_telemetry_send_json(NULL, c, "t", 1, "1", 1, &o), CIOT_EINVAL);
    cr_assert(strstr(ciot_client_errmsg(c), "Azure") != NULL, "%s", ciot_client_errmsg(c));
    cr_assert_eq(ciot_client_free(c), 0);
}

/* ---- direct methods ---- */

typedef struct mcall {
    pthread_mutex_t lock;
    int calls;
    char name[64], rid[160], payload[256];
    bool answer_now;
    int errors;
    int last_err;
    char err_text[400];
} mcall;

static int on_method(ciot_client *c, const ciot_method_request *req, void *ud)
{
    mcall *m = ud;
    size_t nl, rl, pl;
    const char *n = ciot_method_request_name(req, &nl);
    const char *r = ciot_method_request_id(req, &rl);
    const char *p = ciot_method_request_payload(req, &pl);
    pthread_mutex_lock(&m->lock);
    m->calls++;
    snprintf(m->name, sizeof m->name, "%.*s", (int)nl, n);
    snprintf(m->rid, sizeof m->rid, "%.*s", (int)rl, r);
    snprintf(m->payload, sizeof m->payload, "%.*s", (int)pl, p);
    bool now = m->answer_now;
    pthread_mutex_unlock(&m->lock);
    if (now) {
        const char *body = "{\"result\":\"scheduled\"}";
        cr_assert_eq(ciot_method_respond(c, r, rl, 200, body, strlen(body)), 0);
    }
    return 0;
}

static void on_method_error(ciot_client *c, int err, const char *text, void *ud)
{
    (void)c;
    mcall *m = ud;
    pthread_mutex_lock(&m->lock);
    m->errors++;
    m->last_err = err;
    snprintf(m->err_text, sizeof m->err_text, "%s", text);
    pthread_mutex_unlock(&m->lock);
}

static void wait_subscribed(ciot_client *c, h_events *ev, int n)
{
    struct h_count_arg a = {ev, (uint64_t)n};
    cr_assert(h_run_until(c, h_subscribed_at_least, &a, 5000), "no SUBACK");
}

static int mcalls(mcall *m)
{
    pthread_mutex_lock(&m->lock);
    int n = m->calls;
    pthread_mutex_unlock(&m->lock);
    return n;
}

static int merrors(mcall *m)
{
    pthread_mutex_lock(&m->lock);
    int n = m->errors;
    pthread_mutex_unlock(&m->lock);
    return n;
}

static void run_until_calls(ciot_client *c, mcall *m, int calls, int errors)
{
    uint64_t end = h_now_ms() + 5000;
    while ((mcalls(m) < calls || merrors(m) < errors) && h_now_ms() < end)
        cr_assert_eq(ciot_client_run(c, 5), 0);
    cr_assert_geq(mcalls(m), calls);
    cr_assert_geq(merrors(m), errors);
}

Test(azure, methods_are_dispatched_answered_now_or_later_and_unknown_ones_get_404)
{
    tclient *s = service("$iothub/methods/res/#");
    h_events ev;
    h_events_init(&ev);
    ciot_client *c = connected_device(CS_DEVICE, &ev);
    mcall m = {.answer_now = true};
    pthread_mutex_init(&m.lock, NULL);
    cr_assert_eq(ciot_method_register(c, "reboot", 6, on_method, &m), 0);
    cr_assert_eq(ciot_method_register(c, "getStatus", 9, on_method, &m), 0);
    cr_assert_eq(ciot_method_register(c, "reboot", 6, on_method, &m), CIOT_EEXIST);
    cr_assert_eq(ciot_method_register(c, "a/b", 3, on_method, &m), CIOT_EINVAL);
    cr_assert_eq(ciot_method_register(c, "", 0, on_method, &m), CIOT_EINVAL);
    wait_subscribed(c, &ev, 1);

    /* protocols.md §4.5: answered at once */
    cr_assert_eq(tc_pub(s, "$iothub/methods/POST/reboot/?$rid=1", "{\"delay\":5}", 1), 0);
    run_until_calls(c, &m, 1, 0);
    cr_assert_str_eq(m.name, "reboot");
    cr_assert_str_eq(m.rid, "1");
    cr_assert_str_eq(m.payload, "{\"delay\":5}");
    tc_msg *r = drive_and_wait(c, s, "$iothub/methods/res/200/?$rid=1");
    cr_assert_not_null(r);
    cr_assert_str_eq(r->payload, "{\"result\":\"scheduled\"}");
    tc_msg_free(r);
    /* answered once only */
    cr_assert_eq(ciot_method_respond(c, "1", 1, 200, NULL, 0), CIOT_ENOTFOUND);

    /* answered later, from another thread's point of view: after the handler returned */
    pthread_mutex_lock(&m.lock);
    m.answer_now = false;
    pthread_mutex_unlock(&m.lock);
    cr_assert_eq(tc_pub(s, "$iothub/methods/POST/getStatus/?$rid=a%20b&x=1", "{}", 1), 0);
    run_until_calls(c, &m, 2, 0);
    cr_assert_str_eq(m.rid, "a b"); /* decoded */
    cr_assert_eq(ciot_method_respond(c, "a b", 3, 200, "{\"uptime\":", 10), CIOT_EINVAL);
    cr_assert_eq(ciot_method_respond(c, "a b", 3, 42, "{}", 2), CIOT_EINVAL);
    cr_assert_eq(ciot_method_respond(c, "a b", 3, 200, "{\"uptime\":12}", 13), 0);
    r = drive_and_wait(c, s, "$iothub/methods/res/200/?$rid=a%20b");
    cr_assert_not_null(r);
    cr_assert_str_eq(r->payload, "{\"uptime\":12}");
    tc_msg_free(r);

    /* unknown method: 404 with a message, no handler runs */
    cr_assert_eq(tc_pub(s, "$iothub/methods/POST/selfDestruct/?$rid=9", "{}", 1), 0);
    r = drive_and_wait(c, s, "$iothub/methods/res/404/?$rid=9");
    cr_assert_not_null(r);
    cr_assert_str_eq(r->payload,
                     "{\"message\":\"method \\\"selfDestruct\\\" is not registered on this device\"}");
    tc_msg_free(r);
    cr_assert_eq(mcalls(&m), 2);

    /* unregistered: 404 too */
    cr_assert_eq(ciot_method_unregister(c, "reboot", 6), 0);
    cr_assert_eq(ciot_method_unregister(c, "reboot", 6), CIOT_ENOTFOUND);
    cr_assert_eq(tc_pub(s, "$iothub/methods/POST/reboot/?$rid=10", "{}", 1), 0);
    r = drive_and_wait(c, s, "$iothub/methods/res/404/?$rid=10");
    cr_assert_not_null(r);
    tc_msg_free(r);
    cr_assert_eq(ciot_client_free(c), 0);
    tc_free(s);
}

Test(azure, malformed_method_requests_reach_the_error_callback_and_never_a_handler)
{
    tclient *s = service("$iothub/methods/res/#");
    h_events ev;
    h_events_init(&ev);
    ciot_client *c = connected_device(CS_DEVICE, &ev);
    mcall m = {.answer_now = true};
    pthread_mutex_init(&m.lock, NULL);
    ciot_method_set_error_callback(c, on_method_error, &m);
    cr_assert_eq(ciot_method_register(c, "reboot", 6, on_method, &m), 0);
    wait_subscribed(c, &ev, 1);

    static const char *const bad[] = {
        "$iothub/methods/POST/reboot",               /* no query */
        "$iothub/methods/POST/reboot/?x=1",          /* no $rid */
        "$iothub/methods/POST/reboot/?$rid=",        /* empty $rid */
        "$iothub/methods/POST/reboot/?$rid=%zz",     /* bad escape */
        "$iothub/methods/POST/reboot/?$rid=%ff%fe",  /* not UTF-8 once decoded */
    };
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(tc_pub(s, bad[i], "{}", 1), 0);
        run_until_calls(c, &m, 0, i + 1);
        cr_assert_eq(m.last_err, CIOT_EPROTOCOL);
    }
    /* a long $rid and a huge topic */
    char big[1500];
    memset(big, 'r', sizeof big);
    memcpy(big, "$iothub/methods/POST/reboot/?$rid=", 34);
    big[34 + 200] = '\0';
    cr_assert_eq(tc_pub(s, big, "{}", 1), 0);
    run_until_calls(c, &m, 0, 6);
    cr_assert(strstr(m.err_text, "longer than 128") != NULL, "%s", m.err_text);
    big[34 + 200] = 'r';
    big[sizeof big - 1] = '\0';
    cr_assert_eq(tc_pub(s, big, "{}", 1), 0);
    run_until_calls(c, &m, 0, 7);
    cr_assert(strstr(m.err_text, "longer than 1024 bytes") != NULL, "%s", m.err_text);
    /* a method name of 129 bytes, with a usable $rid: answered 400 (a name
     * that is not UTF-8 cannot arrive: MQTT topics are UTF-8, the broker
     * and libmosquitto refuse others) */
    char longname[200];
    snprintf(longname, sizeof longname, "$iothub/methods/POST/%0129d/?$rid=5", 0);
    cr_assert_eq(tc_pub(s, longname, "{}", 1), 0);
    run_until_calls(c, &m, 0, 8);
    tc_msg *r = drive_and_wait(c, s, "$iothub/methods/res/400/?$rid=5");
    cr_assert_not_null(r);
    tc_msg_free(r);
    cr_assert_eq(mcalls(&m), 0);
    cr_assert(ciot_client_is_connected(c));
    cr_assert_eq(ciot_client_free(c), 0);
    tc_free(s);
}

static bool disconnected_then_connected(void *arg)
{
    h_events *e = arg;
    pthread_mutex_lock(&e->lock);
    bool ok = e->disconnected >= 1 && e->connected >= 2;
    pthread_mutex_unlock(&e->lock);
    return ok;
}

Test(azure, an_answer_after_the_connection_was_lost_is_reported_not_sent)
{
    tclient *s = service("$iothub/methods/res/#");
    h_events ev;
    h_events_init(&ev);
    ciot_client *c = connected_device(CS_DEVICE, &ev);
    mcall m = {.answer_now = false};
    pthread_mutex_init(&m.lock, NULL);
    cr_assert_eq(ciot_method_register(c, "slow", 4, on_method, &m), 0);
    wait_subscribed(c, &ev, 1);
    cr_assert_eq(tc_pub(s, "$iothub/methods/POST/slow/?$rid=77", "{}", 1), 0);
    run_until_calls(c, &m, 1, 0);
    /* the hub drops the device (another connection with its id takes over) */
    tclient *thief = tc_new("device1", NULL, NULL, NULL, NULL, NULL);
    cr_assert_eq(tc_connect(thief, broker.port), 0);
    cr_assert(h_run_until(c, disconnected_then_connected, &ev, 5000));
    tc_free(thief);
    cr_assert_eq(ciot_method_respond(c, "77", 2, 200, "{}", 2), CIOT_ECONNLOST);
    cr_assert(strstr(ciot_client_errmsg(c), "forgotten") != NULL, "%s", ciot_client_errmsg(c));
    cr_assert_eq(ciot_method_respond(c, "77", 2, 200, "{}", 2), CIOT_ENOTFOUND);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(ciot_client_run(c, 5), 0);
    cr_assert_eq(tc_count(s, "$iothub/methods/res/"), 0);
    cr_assert_eq(ciot_client_free(c), 0);
    tc_free(s);
}

Test(azure, methods_and_c2d_need_the_azure_backend)
{
    ciot_config *cfg = h_config(&broker, "plain-2");
    ciot_client *c = h_client(cfg, NULL);
    ciot_config_free(cfg);
    mcall m = {0};
    cr_assert_eq(ciot_method_register(c, "x", 1, on_method, &m), CIOT_EINVAL);
    cr_assert_eq(ciot_azure_c2d_set_callback(c, NULL, NULL), CIOT_EINVAL);
    cr_assert_eq(ciot_method_respond(c, "1", 1, 200, NULL, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_client_free(c), 0);
}

/* ---- cloud-to-device ---- */

typedef struct c2d_seen {
    int n;
    int error;
    char payload[128];
    char props[512]; /* name=value|name|... decoded */
} c2d_seen;

static int on_c2d_msg(ciot_client *c, const ciot_azure_c2d *msg, void *ud)
{
    (void)c;
    c2d_seen *s = ud;
    s->n++;
    s->error = ciot_azure_c2d_error(msg);
    size_t pl;
    const void *p = ciot_azure_c2d_payload(msg, &pl);
    snprintf(s->payload, sizeof s->payload, "%.*s", (int)pl, (const char *)p);
    s->props[0] = '\0';
    size_t n = ciot_azure_c2d_property_count(msg);
    for (size_t i = 0; i < n; i++) {
        ciot_view k, v;
        bool has;
        cr_assert_eq(ciot_azure_c2d_property(&k, &v, &has, msg, i), 0);
        size_t at = strlen(s->props);
        snprintf(s->props + at, sizeof s->props - at, "%.*s%s%.*s|", (int)k.len, k.ptr,
                 has ? "=" : "", (int)v.len, v.ptr);
    }
    ciot_view k, v;
    cr_assert_eq(ciot_azure_c2d_property(&k, &v, NULL, msg, n), CIOT_ERANGE);
    return 0;
}

static bool c2d_at_least(void *arg)
{
    c2d_seen *s = arg;
    return s->n >= 1;
}

Test(azure, c2d_messages_arrive_with_their_decoded_properties)
{
    tclient *s = service(NULL);
    h_events ev;
    h_events_init(&ev);
    ciot_client *c = connected_device(CS_DEVICE, &ev);
    c2d_seen seen = {0};
    cr_assert_eq(ciot_azure_c2d_set_callback(c, on_c2d_msg, &seen), 0);
    wait_subscribed(c, &ev, 1);
    /* protocols.md §4.5 */
    cr_assert_eq(tc_pub(s,
                        "devices/device1/messages/devicebound/"
                        "%24.to=%2Fdevices%2Fdevice1%2Fmessages%2FdeviceBound&color=red",
                        "{\"led\":\"on\"}", 1),
                 0);
    cr_assert(h_run_until(c, c2d_at_least, &seen, 5000));
    cr_assert_eq(seen.error, 0);
    cr_assert_str_eq(seen.payload, "{\"led\":\"on\"}");
    cr_assert_str_eq(seen.props, "$.to=/devices/device1/messages/deviceBound|color=red|");

    /* null and empty values, a leading '?', the lookup */
    seen.n = 0;
    cr_assert_eq(tc_pub(s, "devices/device1/messages/devicebound/?prop1&prop2=&prop3=a%20string",
                        "x", 1),
                 0);
    cr_assert(h_run_until(c, c2d_at_least, &seen, 5000));
    cr_assert_str_eq(seen.props, "prop1|prop2=|prop3=a string|");

    /* a malformed bag still delivers the payload, with the error */
    seen.n = 0;
    cr_assert_eq(tc_pub(s, "devices/device1/messages/devicebound/a=%zz", "y", 1), 0);
    cr_assert(h_run_until(c, c2d_at_least, &seen, 5000));
    cr_assert_eq(seen.error, CIOT_EPROTOCOL);
    cr_assert_str_eq(seen.props, "");
    cr_assert_str_eq(seen.payload, "y");

    /* another device's messages never arrive */
    seen.n = 0;
    cr_assert_eq(tc_pub(s, "devices/device2/messages/devicebound/a=1", "z", 1), 0);
    for (int i = 0; i < 40; i++)
        cr_assert_eq(ciot_client_run(c, 5), 0);
    cr_assert_eq(seen.n, 0);
    cr_assert_eq(ciot_client_free(c), 0);
    tc_free(s);
}

Test(azure, a_modules_c2d_topic_is_split_too)
{
    tclient *s = service(NULL);
    h_events ev;
    h_events_init(&ev);
    ciot_client *c = connected_device(CS_MODULE, &ev);
    c2d_seen seen = {0};
    cr_assert_eq(ciot_azure_c2d_set_callback(c, on_c2d_msg, &seen), 0);
    wait_subscribed(c, &ev, 1);
    cr_assert_eq(tc_pub(s, "devices/device1/modules/mod-a/messages/devicebound/k=v%26w", "m", 1),
                 0);
    cr_assert(h_run_until(c, c2d_at_least, &seen, 5000));
    cr_assert_str_eq(seen.props, "k=v&w|");
    cr_assert_eq(ciot_client_free(c), 0);
    tc_free(s);
}
