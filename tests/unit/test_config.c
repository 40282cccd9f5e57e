/* ciot_config: typed setters, validation with messages that say what is
 * wrong, defaults, lookup by name. */
#include <cloudiot/cloudiot.h>

#include <criterion/criterion.h>
#include <string.h>

static ciot_config *cfg;

static void make(void)
{
    cr_assert_eq(ciot_config_new(&cfg), 0);
}

static void drop(void)
{
    ciot_config_free(cfg);
}

TestSuite(config, .init = make, .fini = drop);

static int64_t get(int opt)
{
    int64_t v = -12345;
    cr_assert_eq(ciot_config_get_int(cfg, opt, &v), 0);
    return v;
}

Test(config, defaults_follow_the_documentation)
{
    cr_assert_eq(get(CIOT_OPT_PORT), 1883);
    cr_assert_eq(get(CIOT_OPT_KEEPALIVE_S), 60);
    cr_assert_eq(get(CIOT_OPT_CLEAN_SESSION), 1);
    cr_assert_eq(get(CIOT_OPT_RECONNECT_BASE_MS), 1000);
    cr_assert_eq(get(CIOT_OPT_RECONNECT_MAX_MS), 32000);
    cr_assert_eq(get(CIOT_OPT_RECONNECT_STABLE_MS), 20000);
    cr_assert_eq(get(CIOT_OPT_QUEUE_DROP_POLICY), CIOT_DROP_OLDEST);
    cr_assert_eq(get(CIOT_OPT_TLS), 0);
    cr_assert_eq(get(CIOT_OPT_TLS_INSECURE_SKIP_VERIFY), 0, "verification is on by default");
    cr_assert_eq(get(CIOT_OPT_TLS_MIN_VERSION), 12);
    const char *s = "x";
    cr_assert_eq(ciot_config_get_str(cfg, CIOT_OPT_HOST, &s), 0);
    cr_assert_null(s);
}

Test(config, tls_changes_the_default_port_but_not_a_set_one)
{
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TLS_CA_FILE, "ca.pem"), 0);
    cr_assert_eq(get(CIOT_OPT_TLS), 1);
    cr_assert_eq(get(CIOT_OPT_PORT), 8883);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PORT, 443), 0);
    cr_assert_eq(get(CIOT_OPT_PORT), 443);
}

Test(config, out_of_range_values_are_refused_and_named)
{
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PORT, 70000), CIOT_ERANGE);
    cr_assert_str_eq(ciot_config_errmsg(cfg), "CIOT_OPT_PORT: 70000 is outside 1..65535");
    cr_assert_eq(get(CIOT_OPT_PORT), 1883, "the old value stays");
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PORT, 0), CIOT_ERANGE);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_KEEPALIVE_S, 3), CIOT_ERANGE);
    cr_assert(strstr(ciot_config_errmsg(cfg), "KEEPALIVE_S") != NULL);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_KEEPALIVE_S, 0), 0, "0 turns it off");
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_QUEUE_DROP_POLICY, 3), CIOT_ERANGE);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_WILL_QOS, 2), CIOT_ERANGE);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_CLEAN_SESSION, 2), CIOT_ERANGE);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PROTOCOL, 3), CIOT_ERANGE);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_MAX_INFLIGHT, 65536), CIOT_ERANGE);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PORT, 8883), 0);
    cr_assert_str_eq(ciot_config_errmsg(cfg), "", "success clears the message");
}

Test(config, backoff_base_and_maximum_stay_ordered)
{
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_RECONNECT_MAX_MS, 500), CIOT_ERANGE);
    cr_assert(strstr(ciot_config_errmsg(cfg), "below the base") != NULL, "%s", ciot_config_errmsg(cfg));
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_RECONNECT_BASE_MS, 40000), CIOT_ERANGE);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_RECONNECT_BASE_MS, 100), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_RECONNECT_MAX_MS, 500), 0);
}

Test(config, unknown_options_and_wrong_types)
{
    cr_assert_eq(ciot_config_set_int(cfg, 0, 1), CIOT_EUNKNOWN_OPTION);
    cr_assert_eq(ciot_config_set_int(cfg, 9999, 1), CIOT_EUNKNOWN_OPTION);
    cr_assert_eq(ciot_config_set_int(cfg, -3, 1), CIOT_EUNKNOWN_OPTION);
    cr_assert(strstr(ciot_config_errmsg(cfg), "-3") != NULL);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_PORT, "8883"), CIOT_ETYPE);
    cr_assert_str_eq(ciot_config_errmsg(cfg), "CIOT_OPT_PORT takes an integer, not a string");
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_HOST, 1), CIOT_ETYPE);
    cr_assert_eq(ciot_config_set_bytes(cfg, CIOT_OPT_PORT, "x", 1), CIOT_ETYPE);
    cr_assert_eq(ciot_config_set_int(NULL, CIOT_OPT_PORT, 1), CIOT_EINVAL);
    int64_t v;
    cr_assert_eq(ciot_config_get_int(cfg, CIOT_OPT_HOST, &v), CIOT_ETYPE);
    cr_assert_eq(ciot_config_get_int(cfg, CIOT_OPT_PORT, NULL), CIOT_EINVAL);
}

Test(config, strings_are_checked)
{
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_HOST, ""), CIOT_EINVAL);
    cr_assert(strstr(ciot_config_errmsg(cfg), "empty") != NULL);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_HOST, "bad host"), CIOT_EINVAL);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_HOST, "a1b2c3-ats.iot.eu-west-1.amazonaws.com"), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_HOST, "::1"), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_CLIENT_ID, "a\xc0\xaf"), CIOT_EINVAL);
    cr_assert(strstr(ciot_config_errmsg(cfg), "UTF-8") != NULL);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_CLIENT_ID, "temperature-sensor-001"), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_WILL_TOPIC, "a/+/b"), CIOT_EINVAL);
    cr_assert(strstr(ciot_config_errmsg(cfg), "topic") != NULL);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_WILL_TOPIC, "devices/d1/status"), 0);
    cr_assert_eq(ciot_config_set_bytes(cfg, CIOT_OPT_WILL_PAYLOAD, "off\0line", 8), 0, "bytes may hold NUL");
    cr_assert_eq(ciot_config_set_bytes(cfg, CIOT_OPT_WILL_PAYLOAD, NULL, 3), CIOT_EINVAL);
    char big[300];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TLS_ALPN, big), CIOT_ERANGE);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TLS_ALPN, "x-amzn-mqtt-ca"), 0);
    const char *s;
    cr_assert_eq(ciot_config_get_str(cfg, CIOT_OPT_TLS_ALPN, &s), 0);
    cr_assert_str_eq(s, "x-amzn-mqtt-ca");
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TLS_ALPN, NULL), 0, "NULL clears");
    cr_assert_eq(ciot_config_get_str(cfg, CIOT_OPT_TLS_ALPN, &s), 0);
    cr_assert_null(s);
}

Test(config, the_password_is_never_read_back_or_shown)
{
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_PASSWORD, "s3cret"), 0);
    const char *s = NULL;
    cr_assert_eq(ciot_config_get_str(cfg, CIOT_OPT_PASSWORD, &s), CIOT_EINVAL);
    cr_assert_null(s);
    cr_assert(strstr(ciot_config_errmsg(cfg), "s3cret") == NULL);
}

Test(config, options_by_name)
{
    int opt, type;
    cr_assert_eq(ciot_config_option_by_name("keepalive_s", &opt, &type), 0);
    cr_assert_eq(opt, CIOT_OPT_KEEPALIVE_S);
    cr_assert_eq(type, CIOT_OPT_TYPE_INT);
    cr_assert_eq(ciot_config_option_by_name("CIOT_OPT_HOST", &opt, NULL), 0);
    cr_assert_eq(opt, CIOT_OPT_HOST);
    cr_assert_eq(ciot_config_option_by_name("will_payload", &opt, &type), 0);
    cr_assert_eq(type, CIOT_OPT_TYPE_BYTES);
    cr_assert_eq(ciot_config_option_by_name("nope", &opt, NULL), CIOT_EUNKNOWN_OPTION);
    cr_assert_eq(ciot_config_option_by_name(NULL, &opt, NULL), CIOT_EINVAL);
    for (int o = 1; o < CIOT_OPT_MAX_; o++) {
        const char *name = ciot_config_option_name(o);
        cr_assert_not_null(name, "option %d has no name", o);
        int back;
        cr_assert_eq(ciot_config_option_by_name(name, &back, NULL), 0);
        cr_assert_eq(back, o);
    }
    cr_assert_null(ciot_config_option_name(0));
    cr_assert_null(ciot_config_option_name(CIOT_OPT_MAX_));
}

Test(config, free_null_is_fine)
{
    ciot_config_free(NULL);
    cr_assert_eq(ciot_config_new(NULL), CIOT_EINVAL);
}
