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
