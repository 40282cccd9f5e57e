/* Backends: the options that choose and shape them, AWS's defaults, clamps
 * and limits, telemetry topics, and what a shadow or a command refuses
 * before anything is sent. No broker: clients are made but not connected
 * (the broker side is in tests/integration/test_aws.c). */
#include "backend/backend.h"
#include "client/service.h"

#include <cloudiot/cloudiot.h>

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static ciot_config *cfg;

static void make(void)
{
    cr_assert_eq(ciot_config_new(&cfg), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_HOST, "127.0.0.1"), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_CLIENT_ID, "dev1"), 0);
}

static void drop(void)
{
    ciot_config_free(cfg);
}

TestSuite(backend, .init = make, .fini = drop, .timeout = 60);

static int64_t get(int opt)
{
    int64_t v = -1;
    cr_assert_eq(ciot_config_get_int(cfg, opt, &v), 0);
    return v;
}

static ciot_client *aws_client(void)
{
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_BACKEND, CIOT_BACKEND_AWS), 0);
    ciot_client *c = NULL;
    int rc = ciot_client_new(&c, cfg);
    cr_assert_eq(rc, 0, "%s: %s", ciot_err_name(rc), ciot_config_errmsg(cfg));
    return c;
}

/* ---- options ---- */

Test(backend, new_options_have_documented_defaults_names_and_ranges)
{
    cr_assert_eq(get(CIOT_OPT_BACKEND), CIOT_BACKEND_MQTT);
    cr_assert_eq(get(CIOT_OPT_REQUEST_TIMEOUT_MS), 10000);
    const char *s = "x";
    cr_assert_eq(ciot_config_get_str(cfg, CIOT_OPT_THING_NAME, &s), 0);
    cr_assert_null(s);
    cr_assert_eq(ciot_config_get_str(cfg, CIOT_OPT_TELEMETRY_TOPIC, &s), 0);
    cr_assert_null(s);
    int opt = 0, type = 0;
    cr_assert_eq(ciot_config_option_by_name("backend", &opt, &type), 0);
    cr_assert_eq(opt, CIOT_OPT_BACKEND);
    cr_assert_eq(type, CIOT_OPT_TYPE_INT);
    cr_assert_eq(ciot_config_option_by_name("CIOT_OPT_THING_NAME", &opt, &type), 0);
    cr_assert_eq(opt, CIOT_OPT_THING_NAME);
    cr_assert_eq(type, CIOT_OPT_TYPE_STRING);
    cr_assert_str_eq(ciot_config_option_name(CIOT_OPT_TELEMETRY_TOPIC), "TELEMETRY_TOPIC");
    cr_assert_str_eq(ciot_config_option_name(CIOT_OPT_REQUEST_TIMEOUT_MS), "REQUEST_TIMEOUT_MS");
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_BACKEND, 0), CIOT_ERANGE);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_BACKEND, 4), CIOT_ERANGE);
    cr_assert(strstr(ciot_config_errmsg(cfg), "BACKEND") != NULL);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_REQUEST_TIMEOUT_MS, 0), CIOT_ERANGE);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_REQUEST_TIMEOUT_MS, 250), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_BACKEND, "aws"), CIOT_ETYPE);
}

Test(backend, thing_names_follow_aws_rules)
{
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_THING_NAME, "pump-7:a_b"), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_THING_NAME, "a/b"), CIOT_EINVAL);
    cr_assert(strstr(ciot_config_errmsg(cfg), "thing name") != NULL, "%s", ciot_config_errmsg(cfg));
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_THING_NAME, "a b"), CIOT_EINVAL);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_THING_NAME, "$t"), CIOT_EINVAL);
    char n[130];
    memset(n, 'x', sizeof n);
    n[128] = '\0';
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_THING_NAME, n), 0);
    n[128] = 'x';
    n[129] = '\0';
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_THING_NAME, n), CIOT_ERANGE);
    const char *s;
    cr_assert_eq(ciot_config_get_str(cfg, CIOT_OPT_THING_NAME, &s), 0);
    cr_assert_eq(strlen(s), 128, "the refused value left the old one");
}

Test(backend, telemetry_templates_know_two_placeholders_and_must_make_topics)
{
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TELEMETRY_TOPIC, "dt/{thing}/{sensorType}/v1"), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TELEMETRY_TOPIC, "fixed/topic"), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TELEMETRY_TOPIC, "x/{device}"), CIOT_EINVAL);
    cr_assert(strstr(ciot_config_errmsg(cfg), "{thing} and {sensorType}") != NULL);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TELEMETRY_TOPIC, "x/{thing"), CIOT_EINVAL);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TELEMETRY_TOPIC, "x/}"), CIOT_EINVAL);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TELEMETRY_TOPIC, "x/+/{thing}"), CIOT_EINVAL);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TELEMETRY_TOPIC, "x/#"), CIOT_EINVAL);
    cr_assert(strstr(ciot_config_errmsg(cfg), "not a valid topic") != NULL);
    const char *s;
    cr_assert_eq(ciot_config_get_str(cfg, CIOT_OPT_TELEMETRY_TOPIC, &s), 0);
    cr_assert_str_eq(s, "fixed/topic");
}

/* ---- the table ---- */

Test(backend, the_table_has_the_generic_and_the_aws_rows)
{
    const ciot__backend *m = ciot__backend_get(CIOT_BACKEND_MQTT);
    const ciot__backend *a = ciot__backend_get(CIOT_BACKEND_AWS);
    cr_assert_not_null(m);
    cr_assert_not_null(a);
    cr_assert_str_eq(m->name, "mqtt");
    cr_assert_str_eq(a->name, "aws");
    cr_assert_str_eq(a->telemetry_topic, "sensors/{thing}/{sensorType}");
    cr_assert_str_eq(a->command_filter, "commands/{thing}/+");
    cr_assert_str_eq(a->shadow_prefix, "$aws/things/{thing}/shadow");
    cr_assert_null(m->shadow_prefix);
    cr_assert_null(ciot__backend_get(0));
    const ciot__backend *z = ciot__backend_get(CIOT_BACKEND_AZURE); /* NULL with -Dazure=disabled */
    if (z) {
        cr_assert_str_eq(z->name, "azure");
        cr_assert_str_eq(z->telemetry_topic, "devices/{thing}/messages/events/");
    }
    cr_assert_null(ciot__backend_get(4));
    cr_assert_null(ciot__backend_get(-1));
}

static int check(const char *topic, size_t len, size_t payload, bool filter)
{
    char why[200] = "";
    int rc = ciot__backend_get(CIOT_BACKEND_AWS)->check(topic, len, payload, filter, why, sizeof why);
    if (rc)
        cr_assert(strstr(why, "AWS IoT Core") != NULL, "%s", why);
    return rc;
}

Test(backend, aws_limits_topic_bytes_levels_and_payload)
{
    char t[300];
    memset(t, 'a', sizeof t);
    cr_assert_eq(check(t, 256, 0, false), 0);
    cr_assert_eq(check(t, 257, 0, false), CIOT_EINVAL);
    cr_assert_eq(check(t, 257, 0, true), CIOT_EINVAL);
    const char *eight = "a/b/c/d/e/f/g/h"; /* 7 slashes */
    cr_assert_eq(check(eight, strlen(eight), 0, false), 0);
    const char *nine = "a/b/c/d/e/f/g/h/i";
    cr_assert_eq(check(nine, strlen(nine), 0, false), CIOT_EINVAL);
    cr_assert_eq(check("a/b/c/d/e/f/g/+/#", 17, 0, true), CIOT_EINVAL);
    /* the Basic Ingest prefix does not count */
    const char *ingest = "$aws/rules/myRule/a/b/c/d/e/f/g/h";
    cr_assert_eq(check(ingest, strlen(ingest), 0, false), 0);
    const char *ingest9 = "$aws/rules/myRule/a/b/c/d/e/f/g/h/i";
    cr_assert_eq(check(ingest9, strlen(ingest9), 0, false), CIOT_EINVAL);
    /* but it counts when it is not that prefix */
    const char *other = "$aws/rulesX/r/a/b/c/d/e/f";
    cr_assert_eq(check(other, strlen(other), 0, false), CIOT_EINVAL);
    /* the longest shadow topic fits */
    const char *sh = "$aws/things/t/shadow/name/n/update/accepted";
    cr_assert_eq(check(sh, strlen(sh), 0, false), 0);
    cr_assert_eq(check("t", 1, 131072, false), 0);
    cr_assert_eq(check("t", 1, 131073, false), CIOT_EINVAL);
    cr_assert_eq(check("t", 1, 131073, true), 0, "filters have no payload");
}

Test(backend, an_aws_client_refuses_what_aws_would_refuse_when_publishing)
{
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_TLS, 0), 0);
    ciot_client *c = aws_client();
    char t[300];
    memset(t, 'a', sizeof t);
    cr_assert_eq(ciot_client_publish(NULL, c, t, 257, "x", 1, 1, 0), CIOT_EINVAL);
    cr_assert(strstr(ciot_client_errmsg(c), "257 bytes") != NULL, "%s", ciot_client_errmsg(c));
    cr_assert_eq(ciot_client_publish(NULL, c, "a/b/c/d/e/f/g/h/i", 17, "x", 1, 1, 0), CIOT_EINVAL);
    cr_assert(strstr(ciot_client_errmsg(c), "9 levels") != NULL, "%s", ciot_client_errmsg(c));
    static char big[131073];
    cr_assert_eq(ciot_client_publish(NULL, c, "t", 1, big, sizeof big, 1, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_client_publish(NULL, c, "t", 1, big, sizeof big - 1, 1, 0), 0);
    cr_assert_eq(ciot_client_publish(NULL, c, "t", 1, "x", 1, 2, 0), CIOT_EINVAL, "QoS 2");
    cr_assert_eq(ciot_client_subscribe(c, "a/b/c/d/e/f/g/h/#", 17, 1, NULL, NULL), CIOT_EINVAL);
    cr_assert_eq(ciot_client_queued(c), 1);
    cr_assert_eq(ciot_client_free(c), 0);
}

Test(backend, the_generic_backend_keeps_mqtt_limits_only)
{
    ciot_client *c = NULL;
    cr_assert_eq(ciot_client_new(&c, cfg), 0);
    char t[300];
    memset(t, 'a', sizeof t);
    cr_assert_eq(ciot_client_publish(NULL, c, t, 300, "x", 1, 1, 0), 0);
    cr_assert_eq(ciot_client_publish(NULL, c, "a/b/c/d/e/f/g/h/i/j", 19, "x", 1, 1, 0), 0);
    cr_assert_eq(ciot__client_port(c), 1883);
    cr_assert_eq(ciot__client_keepalive(c), 60);
    cr_assert_str_eq(ciot__client_alpn(c), "");
    cr_assert_eq(ciot_client_free(c), 0);
}

Test(backend, aws_client_ids_are_1_to_128_bytes_and_not_dollar)
{
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_BACKEND, CIOT_BACKEND_AWS), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_TLS, 0), 0);
    char id[130];
    memset(id, 'i', sizeof id);
    id[129] = '\0';
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_CLIENT_ID, id), 0, "MQTT allows it");
    ciot_client *c = NULL;
    cr_assert_eq(ciot_client_new(&c, cfg), CIOT_EINVAL);
    cr_assert_null(c);
    cr_assert(strstr(ciot_config_errmsg(cfg), "1..128") != NULL, "%s", ciot_config_errmsg(cfg));
    id[128] = '\0';
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_CLIENT_ID, id), 0);
    cr_assert_eq(ciot_client_new(&c, cfg), 0, "%s", ciot_config_errmsg(cfg));
    cr_assert_eq(ciot_client_free(c), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_CLIENT_ID, "$dev"), 0);
    cr_assert_eq(ciot_client_new(&c, cfg), CIOT_EINVAL);
    cr_assert(strstr(ciot_config_errmsg(cfg), "'$'") != NULL, "%s", ciot_config_errmsg(cfg));
}

Test(backend, aws_needs_tls_except_on_loopback_when_asked_by_name)
{
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_BACKEND, CIOT_BACKEND_AWS), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_HOST, "abc-ats.iot.us-east-1.amazonaws.com"), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_TLS, 0), 0);
    ciot_client *c = NULL;
    cr_assert_eq(ciot_client_new(&c, cfg), CIOT_EINVAL);
    cr_assert(strstr(ciot_config_errmsg(cfg), "requires TLS") != NULL, "%s", ciot_config_errmsg(cfg));
    const char *loop[] = {"127.0.0.1", "127.9.8.7", "::1", "localhost"};
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_HOST, loop[i]), 0);
        cr_assert_eq(ciot_client_new(&c, cfg), 0, "%s: %s", loop[i], ciot_config_errmsg(cfg));
        cr_assert_str_eq(ciot__client_sni(c), "", "no TLS, no SNI");
        cr_assert_eq(ciot_client_free(c), 0);
    }
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_HOST, "128.0.0.1"), 0);
    cr_assert_eq(ciot_client_new(&c, cfg), CIOT_EINVAL);
}

Test(backend, aws_turns_tls_on_with_port_8883_and_sni_by_default)
{
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_HOST, "localhost"), 0);
    ciot_client *c = aws_client();
    cr_assert_eq(ciot__client_port(c), 8883);
    cr_assert_str_eq(ciot__client_sni(c), "localhost");
    cr_assert_str_eq(ciot__client_alpn(c), "", "no ALPN on 8883");
    cr_assert_eq(ciot_client_free(c), 0);
    int64_t v;
    cr_assert_eq(ciot_config_get_int(cfg, CIOT_OPT_TLS, &v), 0);
    cr_assert_eq(v, 0, "the user's config is not changed");
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TLS_SNI, "other.example"), 0);
    c = aws_client();
    cr_assert_str_eq(ciot__client_sni(c), "other.example", "a set SNI is kept");
    cr_assert_eq(ciot_client_free(c), 0);
}

Test(backend, aws_on_443_offers_alpn_unless_the_user_chose_one)
{
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_HOST, "localhost"), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PORT, 443), 0);
    ciot_client *c = aws_client();
    cr_assert_str_eq(ciot__client_alpn(c), "mqtt", "without a certificate: custom authentication");
    cr_assert_eq(ciot_client_free(c), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TLS_ALPN, "my-proto"), 0);
    c = aws_client();
    cr_assert_str_eq(ciot__client_alpn(c), "my-proto");
    cr_assert_eq(ciot_client_free(c), 0);
    /* X.509 on 443 (x-amzn-mqtt-ca) needs certificate files: tests/integration/test_aws.c */
}

static char logged[1024];
static void grab(int level, const char *msg, void *ud)
{
    (void)level;
    (void)ud;
    if (strstr(msg, "keep-alive"))
        snprintf(logged, sizeof logged, "%s", msg);
}

Test(backend, aws_clamps_keepalive_to_30_1200_and_says_so)
{
    cr_assert_eq(ciot_set_log_callback(grab, CIOT_LOG_INFO, NULL), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_TLS, 0), 0);
    static const int64_t in[] = {5, 29, 0, 2000, 65535, 30, 60, 1200};
    static const int out[] = {30, 30, 1200, 1200, 1200, 30, 60, 1200};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        logged[0] = '\0';
        cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_KEEPALIVE_S, in[i]), 0);
        ciot_client *c = aws_client();
        cr_assert_eq(ciot__client_keepalive(c), out[i], "%lld", (long long)in[i]);
        if (in[i] != out[i])
            cr_assert(strstr(logged, "30..1200") != NULL, "no log line for %lld", (long long)in[i]);
        else
            cr_assert_str_eq(logged, "", "a value within the range is not logged");
        cr_assert_eq(ciot_client_free(c), 0);
    }
    cr_assert_eq(ciot_set_log_callback(NULL, CIOT_LOG_NONE, NULL), 0);
}

Test(backend, aws_checks_the_will_topic)
{
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_TLS, 0), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_WILL_TOPIC, "a/b/c/d/e/f/g/h/i"), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_BACKEND, CIOT_BACKEND_AWS), 0);
    ciot_client *c = NULL;
    cr_assert_eq(ciot_client_new(&c, cfg), CIOT_EINVAL);
    cr_assert(strstr(ciot_config_errmsg(cfg), "will") != NULL, "%s", ciot_config_errmsg(cfg));
}

/* ---- telemetry and commands, before any broker ---- */

Test(backend, telemetry_topics_come_from_the_backend_or_the_option)
{
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_TLS, 0), 0);
    ciot_client *c = aws_client();
    char buf[128];
    size_t n = 0;
    cr_assert_eq(ciot_telemetry_topic(buf, sizeof buf, &n, c, "temperature", 11), 0);
    cr_assert_str_eq(buf, "sensors/dev1/temperature");
    cr_assert_eq(n, 24);
    cr_assert_eq(ciot_telemetry_topic(buf, 10, &n, c, "temperature", 11), CIOT_ENOSPC);
    cr_assert_eq(n, 24);
    cr_assert_eq(ciot_telemetry_topic(NULL, 0, &n, c, "temperature", 11), CIOT_ENOSPC);
    cr_assert_eq(ciot_telemetry_topic(buf, sizeof buf, &n, c, "a/b", 3), CIOT_EINVAL);
    cr_assert_eq(ciot_telemetry_topic(buf, sizeof buf, &n, c, "+", 1), CIOT_EINVAL);
    cr_assert_eq(ciot_telemetry_topic(buf, sizeof buf, &n, c, "", 0), CIOT_EINVAL);
    cr_assert_eq(ciot_client_free(c), 0);

    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_THING_NAME, "pump-7"), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TELEMETRY_TOPIC, "dt/{sensorType}/{thing}"), 0);
    c = aws_client();
    cr_assert_eq(ciot_telemetry_topic(buf, sizeof buf, &n, c, "hum", 3), 0);
    cr_assert_str_eq(buf, "dt/hum/pump-7");
    cr_assert_eq(ciot_client_free(c), 0);

    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TELEMETRY_TOPIC, NULL), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_BACKEND, CIOT_BACKEND_MQTT), 0);
    cr_assert_eq(ciot_client_new(&c, cfg), 0);
    cr_assert_eq(ciot_telemetry_topic(buf, sizeof buf, &n, c, "hum", 3), 0);
    cr_assert_str_eq(buf, "devices/pump-7/telemetry/hum");
    cr_assert_eq(ciot_client_free(c), 0);
}

Test(backend, telemetry_refuses_bad_readings_with_a_reason)
{
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_TLS, 0), 0);
    ciot_client *c = aws_client();
    cr_assert_eq(ciot_telemetry_send(NULL, c, "t", 1, 0.0 / 0.0, NULL), CIOT_EINVAL);
    cr_assert(strstr(ciot_client_errmsg(c), "finite") != NULL);
    cr_assert_eq(ciot_telemetry_send(NULL, c, "a/b", 3, 1.0, NULL), CIOT_EINVAL);
    ciot_telemetry_opts o;
    ciot_telemetry_opts_init(&o);
    cr_assert_eq(o.qos, 1);
    cr_assert_eq(o.timestamp_ms, CIOT_TELEMETRY_NOW);
    o.metadata = "[1]";
    o.metadata_len = 3;
    cr_assert_eq(ciot_telemetry_send(NULL, c, "t", 1, 1.0, &o), CIOT_EINVAL);
    cr_assert(strstr(ciot_client_errmsg(c), "metadata") != NULL);
    o.metadata = "{\"a\":";
    o.metadata_len = 5;
    cr_assert_eq(ciot_telemetry_send(NULL, c, "t", 1, 1.0, &o), CIOT_EINVAL);
    o.metadata = NULL;
    o.metadata_len = 0;
    o.qos = 2;
    cr_assert_eq(ciot_telemetry_send(NULL, c, "t", 1, 1.0, &o), CIOT_EINVAL);
    o.qos = 1;
    o.version = 99;
    cr_assert_eq(ciot_telemetry_send(NULL, c, "t", 1, 1.0, &o), CIOT_EINVAL);
    o.version = CIOT_TELEMETRY_OPTS_VERSION;
    o.timestamp_ms = CIOT_TIMESTAMP_MAX_MS + 1;
    cr_assert_eq(ciot_telemetry_send(NULL, c, "t", 1, 1.0, &o), CIOT_EINVAL);
    cr_assert(strstr(ciot_client_errmsg(c), "timestamp") != NULL, "%s", ciot_client_errmsg(c));
    cr_assert_eq(ciot_telemetry_send_json(NULL, c, "t", 1, "{\"a\":1", 6, NULL), CIOT_EINVAL);
    cr_assert_eq(ciot_client_queued(c), 0, "nothing refused was queued");
    uint64_t id = 0;
    cr_assert_eq(ciot_telemetry_send(&id, c, "t", 1, 1.5, NULL), 0);
    cr_assert_gt(id, 0);
    cr_assert_eq(ciot_telemetry_send_json(&id, c, "t", 1, "{\"a\":1}", 7, NULL), 0);
    cr_assert_eq(ciot_client_queued(c), 2);
    cr_assert_eq(ciot_client_free(c), 0);
}

static int noop_cmd(ciot_client *c, const ciot_command *cmd, void *ud)
{
    (void)c;
    (void)cmd;
    (void)ud;
    return 0;
}

Test(backend, command_registration_checks_names_and_duplicates)
{
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_TLS, 0), 0);
    ciot_client *c = aws_client();
    cr_assert_eq(ciot_command_register(c, "calibrate", 9, noop_cmd, NULL), 0);
    cr_assert_eq(ciot_command_register(c, "calibrate", 9, noop_cmd, NULL), CIOT_EEXIST);
    cr_assert_eq(ciot_command_register(c, "a/b", 3, noop_cmd, NULL), CIOT_EINVAL);
    cr_assert_eq(ciot_command_register(c, "#", 1, noop_cmd, NULL), CIOT_EINVAL);
    cr_assert_eq(ciot_command_register(c, "x", 1, NULL, NULL), CIOT_EINVAL);
    cr_assert_eq(ciot_command_register(c, NULL, 0, noop_cmd, NULL), 0, "the default handler");
    cr_assert_eq(ciot_command_register(c, NULL, 0, noop_cmd, NULL), CIOT_EEXIST);
    cr_assert_eq(ciot_command_unregister(c, "calibrate", 9), 0);
    cr_assert_eq(ciot_command_unregister(c, "calibrate", 9), CIOT_ENOTFOUND);
    cr_assert_eq(ciot_command_unregister(c, NULL, 0), 0);
    cr_assert_eq(ciot_command_register(c, "calibrate", 9, noop_cmd, NULL), 0);
    cr_assert_eq(ciot_client_free(c), 0);
}

/* ---- shadow, before any broker ---- */

Test(backend, a_shadow_needs_a_backend_with_shadows_and_valid_names)
{
    ciot_client *c = NULL;
    ciot_shadow *s = NULL;
    cr_assert_eq(ciot_client_new(&c, cfg), 0);
    cr_assert_eq(ciot_shadow_new(&s, c, NULL, 0), CIOT_EINVAL, "the mqtt backend has none");
    cr_assert(strstr(ciot_client_errmsg(c), "no shadow") != NULL, "%s", ciot_client_errmsg(c));
    cr_assert_eq(ciot_client_free(c), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_TLS, 0), 0);
    c = aws_client();
    cr_assert_eq(ciot_shadow_new(&s, c, "bad/name", 8), CIOT_EINVAL);
    cr_assert_eq(ciot_shadow_new(&s, c, "", 0), CIOT_EINVAL, "an empty name is not the classic shadow");
    char n[66];
    memset(n, 'n', sizeof n);
    cr_assert_eq(ciot_shadow_new(&s, c, n, 65), CIOT_EINVAL);
    cr_assert_eq(ciot_shadow_new(&s, c, n, 64), 0);
    cr_assert_eq(ciot_shadow_free(s), 0);
    cr_assert_eq(ciot_client_free(c), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_CLIENT_ID, "dev 1"), 0);
    c = aws_client();
    cr_assert_eq(ciot_shadow_new(&s, c, NULL, 0), CIOT_EINVAL, "a client id that is no thing name");
    cr_assert(strstr(ciot_client_errmsg(c), "CIOT_OPT_THING_NAME") != NULL);
    cr_assert_eq(ciot_client_free(c), 0);
}

typedef struct rec {
    int n, outcome, error, request;
    uint64_t id;
} rec;

static int on_result(ciot_shadow *s, const ciot_shadow_result *r, void *ud)
{
    (void)s;
    rec *x = ud;
    x->n++;
    x->outcome = ciot_shadow_result_outcome(r);
    x->error = ciot_shadow_result_error(r);
    x->request = ciot_shadow_result_request(r);
    x->id = ciot_shadow_result_id(r);
    return 0;
}

Test(backend, a_fresh_shadow_has_an_empty_copy)
{
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_TLS, 0), 0);
    ciot_client *c = aws_client();
    ciot_shadow *s = NULL;
    cr_assert_eq(ciot_shadow_new(&s, c, NULL, 0), 0);
    char buf[16];
    size_t n;
    cr_assert_eq(ciot_shadow_read(buf, sizeof buf, &n, s, CIOT_SHADOW_DESIRED), CIOT_ENOTFOUND);
    cr_assert_eq(ciot_shadow_read(buf, sizeof buf, &n, s, CIOT_SHADOW_REPORTED), CIOT_ENOTFOUND);
    cr_assert_eq(ciot_shadow_read(buf, sizeof buf, &n, s, CIOT_SHADOW_DIFF), CIOT_ENOTFOUND);
    cr_assert_eq(ciot_shadow_read(buf, sizeof buf, &n, s, 9), CIOT_EINVAL);
    cr_assert_eq(ciot_shadow_version(s), 0);
    cr_assert_eq(ciot_shadow_pending(s), 0);
    cr_assert_eq(ciot_shadow_update_reported(NULL, s, "[1]", 3, NULL, NULL), CIOT_EINVAL);
    cr_assert_eq(ciot_shadow_update_reported(NULL, s, "{", 1, NULL, NULL), CIOT_EINVAL);
    cr_assert_eq(ciot_shadow_pending(s), 0);
    cr_assert_eq(ciot_shadow_free(s), 0);
    cr_assert_eq(ciot_client_free(c), 0);
}

Test(backend, requests_end_once_with_cancelled_when_the_shadow_or_client_goes)
{
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_TLS, 0), 0);
    ciot_client *c = aws_client();
    ciot_shadow *s = NULL, *s2 = NULL;
    cr_assert_eq(ciot_shadow_new(&s, c, NULL, 0), 0);
    cr_assert_eq(ciot_shadow_new(&s2, c, "cfg", 3), 0);
    rec a = {0}, b = {0}, d = {0};
    uint64_t id = 0;
    cr_assert_eq(ciot_shadow_get(&id, s, on_result, &a), 0);
    cr_assert_eq(id, 1);
    cr_assert_eq(ciot_shadow_update_reported(&id, s, "{\"x\":1}", 7, on_result, &b), 0);
    cr_assert_eq(id, 2);
    cr_assert_eq(ciot_shadow_delete(NULL, s2, on_result, &d), 0);
    cr_assert_eq(ciot_shadow_pending(s), 2, "offline: waiting");
    cr_assert_eq(ciot_shadow_free(s), 0);
    cr_assert_eq(a.n, 1);
    cr_assert_eq(a.outcome, CIOT_SHADOW_FAILED);
    cr_assert_eq(a.error, CIOT_ESTATE);
    cr_assert_eq(a.request, CIOT_SHADOW_GET);
    cr_assert_eq(b.n, 1);
    cr_assert_eq(b.request, CIOT_SHADOW_UPDATE);
    cr_assert_eq(b.id, 2);
    cr_assert_eq(d.n, 0);
    cr_assert_eq(ciot_client_free(c), 0);
    cr_assert_eq(d.n, 1, "the client's end cancels its shadows' requests");
    cr_assert_eq(d.error, CIOT_ESTATE);
    cr_assert_eq(d.request, CIOT_SHADOW_DELETE);
    cr_assert_eq(ciot_shadow_get(NULL, s2, on_result, &d), CIOT_ESTATE);
    cr_assert_eq(ciot_shadow_free(s2), 0);
    cr_assert_eq(d.n, 1);
}

Test(backend, no_more_than_64_requests_wait)
{
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_TLS, 0), 0);
    ciot_client *c = aws_client();
    ciot_shadow *s = NULL;
    cr_assert_eq(ciot_shadow_new(&s, c, NULL, 0), 0);
    for (int i = 0; i < 64; i++)
        cr_assert_eq(ciot_shadow_get(NULL, s, NULL, NULL), 0);
    cr_assert_eq(ciot_shadow_get(NULL, s, NULL, NULL), CIOT_EQUEUE_FULL);
    cr_assert(strstr(ciot_client_errmsg(c), "64") != NULL);
    cr_assert_eq(ciot_shadow_pending(s), 64);
    cr_assert_eq(ciot_shadow_free(s), 0);
    cr_assert_eq(ciot_client_free(c), 0);
}

static int free_in_cb(ciot_shadow *s, const ciot_shadow_result *r, void *ud)
{
    rec *x = ud;
    on_result(s, r, ud);
    x->error = ciot_shadow_free(s) == CIOT_ERECURSIVE ? 1 : 0;
    return 0;
}

static bool rec_done(rec *x, ciot_client *c, int ms)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (x->n)
            return true;
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 > ms)
            return false;
        if (c)
            cr_assert_eq(ciot_client_run(c, 10), 0);
        else {
            struct timespec z = {0, 2000000};
            nanosleep(&z, NULL);
        }
    }
}

Test(backend, a_request_times_out_in_the_callers_loop)
{
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_TLS, 0), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_REQUEST_TIMEOUT_MS, 60), 0);
    ciot_client *c = aws_client();
    ciot_shadow *s = NULL;
    cr_assert_eq(ciot_shadow_new(&s, c, NULL, 0), 0);
    rec a = {0};
    cr_assert_eq(ciot_shadow_get(NULL, s, free_in_cb, &a), 0);
    /* the loop's timeout says when: poll() wakes for it */
    int t = ciot_client_timeout_ms(c);
    cr_assert(t <= 60, "timeout %d", t);
    cr_assert(rec_done(&a, c, 3000), "no timeout");
    cr_assert_eq(a.n, 1);
    cr_assert_eq(a.outcome, CIOT_SHADOW_FAILED);
    cr_assert_eq(a.error, 1, "free from the callback is refused");
    cr_assert_eq(ciot_client_run(c, 100), 0);
    cr_assert_eq(a.n, 1, "exactly one callback");
    cr_assert_eq(ciot_shadow_pending(s), 0);
    cr_assert_eq(ciot_shadow_free(s), 0);
    cr_assert_eq(ciot_client_free(c), 0);
}

static int timed_out(ciot_shadow *s, const ciot_shadow_result *r, void *ud)
{
    (void)s;
    rec *x = ud;
    x->error = ciot_shadow_result_error(r);
    x->outcome = ciot_shadow_result_outcome(r);
    __atomic_store_n(&x->n, x->n + 1, __ATOMIC_SEQ_CST);
    return 0;
}

Test(backend, a_request_times_out_on_the_clients_thread)
{
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_TLS, 0), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_REQUEST_TIMEOUT_MS, 50), 0);
    ciot_client *c = aws_client();
    ciot_shadow *s = NULL;
    cr_assert_eq(ciot_shadow_new(&s, c, NULL, 0), 0);
    cr_assert_eq(ciot_client_start(c), 0);
    rec a = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_eq(ciot_shadow_get(NULL, s, timed_out, &a), 0);
    cr_assert(rec_done(&a, NULL, 3000), "no timeout");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    cr_assert(ms >= 45, "ended after %ld ms", ms);
    cr_assert_eq(a.error, CIOT_ETIMEDOUT);
    cr_assert_eq(ciot_client_stop(c), 0);
    cr_assert_eq(ciot_shadow_free(s), 0);
    cr_assert_eq(ciot_client_free(c), 0);
    cr_assert_eq(a.n, 1);
}
