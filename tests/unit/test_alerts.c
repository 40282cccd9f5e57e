/*
 * ciot_alerts: threshold alerts (edge and repeat modes, hysteresis,
 * per-device thresholds), telemetry messages, silence detection, bounds,
 * callbacks, allocation failures and the alert document.
 */
#include <cloudiot/cloudiot.h>

#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#define S(x) x, strlen(x)

/* ---- collecting alerts ---- */

struct rec {
    int kind;
    char device[160], metric[80], type[90], sev[40];
    double value, threshold;
    int64_t ts, last_seen, silent;
    char json[512];
};

struct log {
    struct rec r[64];
    int n;
    int stop_at; /* return non-zero on this alert (1-based); 0: never */
    int reenter; /* try calls on the set from inside the callback */
    int reenter_rc[8];
};

static int collect(ciot_alerts *a, const ciot_alert *al, void *ud)
{
    struct log *l = ud;
    struct rec *r = &l->r[l->n < 64 ? l->n : 63]; /* beyond 64: counted, the last one kept */
    l->n++;
    size_t len;
    r->kind = ciot_alert_kind(al);
    const char *s = ciot_alert_device(al, &len);
    cr_assert_eq(strlen(s), len);
    snprintf(r->device, sizeof r->device, "%s", s);
    snprintf(r->metric, sizeof r->metric, "%s", ciot_alert_metric(al, NULL));
    s = ciot_alert_type(al, &len);
    cr_assert_eq(strlen(s), len);
    snprintf(r->type, sizeof r->type, "%s", s);
    snprintf(r->sev, sizeof r->sev, "%s", ciot_alert_severity(al, NULL));
    r->value = ciot_alert_value(al);
    r->threshold = ciot_alert_threshold(al);
    r->ts = ciot_alert_timestamp(al);
    r->last_seen = ciot_alert_last_seen(al);
    r->silent = ciot_alert_silent_ms(al);
    size_t jl = 0;
    int rc = ciot_alert_to_json(r->json, sizeof r->json, &jl, al);
    if (rc != 0)
        snprintf(r->json, sizeof r->json, "<%s>", ciot_err_name(rc));
    if (l->reenter) {
        l->reenter_rc[0] = ciot_alerts_feed(a, S("d1"), S("temperature"), 1, 0);
        l->reenter_rc[1] = ciot_alerts_tick(a, 0);
        l->reenter_rc[2] = ciot_alerts_free(a);
        l->reenter_rc[3] = ciot_alerts_set_threshold(a, NULL, 0, S("x"), NAN, 1, NULL, 0, 0);
        l->reenter_rc[4] = ciot_alerts_forget(a, S("d1"));
        l->reenter_rc[5] = ciot_alerts_seen(a, S("d1"), 0);
        l->reenter_rc[6] = ciot_alerts_feed_json(a, S("d1"), S("{}"), 0);
        l->reenter_rc[7] = ciot_alerts_set_silence(a, 5);
    }
    return l->stop_at != 0 && l->n == l->stop_at;
}

static ciot_alerts *mk(struct log *l)
{
    memset(l, 0, sizeof *l);
    ciot_alerts *a = NULL;
    cr_assert_eq(ciot_alerts_new(&a, collect, l), 0);
    cr_assert_not_null(a);
    return a;
}

static void expect(const struct log *l, int i, int kind, const char *dev, const char *type,
                   double value, double threshold)
{
    cr_assert_lt(i, l->n, "alert %d missing (only %d)", i, l->n);
    const struct rec *r = &l->r[i];
    cr_expect_eq(r->kind, kind, "alert %d kind %d", i, r->kind);
    cr_expect_str_eq(r->device, dev);
    cr_expect_str_eq(r->type, type);
    if (isnan(value))
        cr_expect(isnan(r->value));
    else
        cr_expect_eq(r->value, value, "alert %d value %g", i, r->value);
    if (isnan(threshold))
        cr_expect(isnan(r->threshold));
    else
        cr_expect_eq(r->threshold, threshold, "alert %d threshold %g", i, r->threshold);
}

/* The guide's thresholds: temperature above 35, humidity above 80, pressure out of 950..1050. */
static void guide(ciot_alerts *a, double hyst)
{
    cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, S("temperature"), NAN, 35, S("WARNING"), hyst), 0);
    cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, S("humidity"), NAN, 80, S("WARNING"), hyst), 0);
    cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, S("pressure"), 950, 1050, S("CRITICAL"), hyst), 0);
}

/* ---- thresholds ---- */

Test(alerts, edge_mode_raises_once_and_clears)
{
    struct log l;
    ciot_alerts *a = mk(&l);
    guide(a, 0);
    cr_assert_eq(ciot_alerts_feed(a, S("d1"), S("temperature"), 30, 1), 0);
    cr_assert_eq(ciot_alerts_feed(a, S("d1"), S("temperature"), 35, 2), 0); /* not above */
    cr_assert_eq(l.n, 0);
    cr_assert_eq(ciot_alerts_feed(a, S("d1"), S("temperature"), 37.5, 3), 0);
    cr_assert_eq(ciot_alerts_feed(a, S("d1"), S("temperature"), 40, 4), 0);
    cr_assert_eq(ciot_alerts_feed(a, S("d1"), S("temperature"), 35.5, 5), 0);
    cr_assert_eq(l.n, 1);
    expect(&l, 0, CIOT_ALERT_RAISED, "d1", "HIGH_TEMPERATURE", 37.5, 35);
    cr_expect_str_eq(l.r[0].metric, "temperature");
    cr_expect_str_eq(l.r[0].sev, "WARNING");
    cr_expect_eq(l.r[0].ts, 3);
    cr_assert_eq(ciot_alerts_feed(a, S("d1"), S("temperature"), 35, 6), 0); /* <= max: cleared */
    cr_assert_eq(l.n, 2);
    expect(&l, 1, CIOT_ALERT_CLEARED, "d1", "HIGH_TEMPERATURE", 35, 35);
    cr_assert_eq(ciot_alerts_feed(a, S("d1"), S("humidity"), 81, 7), 0);
    cr_assert_eq(ciot_alerts_feed(a, S("d1"), S("pressure"), 900, 8), 0);
    cr_assert_eq(ciot_alerts_feed(a, S("d1"), S("pressure"), 1100, 9), 0);
    cr_assert_eq(l.n, 6);
    expect(&l, 2, CIOT_ALERT_RAISED, "d1", "HIGH_HUMIDITY", 81, 80);
    expect(&l, 3, CIOT_ALERT_RAISED, "d1", "LOW_PRESSURE", 900, 950);
    cr_expect_str_eq(l.r[3].sev, "CRITICAL");
    /* from below min to above max: LOW cleared, then HIGH raised */
    expect(&l, 4, CIOT_ALERT_CLEARED, "d1", "LOW_PRESSURE", 1100, 950);
    expect(&l, 5, CIOT_ALERT_RAISED, "d1", "HIGH_PRESSURE", 1100, 1050);
    /* each device has its own state */
    cr_assert_eq(ciot_alerts_feed(a, S("d2"), S("temperature"), 36, 10), 0);
    cr_assert_eq(l.n, 7);
    expect(&l, 6, CIOT_ALERT_RAISED, "d2", "HIGH_TEMPERATURE", 36, 35);
    cr_assert_eq(ciot_alerts_free(a), 0);
}

Test(alerts, hysteresis_band_stops_flapping)
{
    struct log l;
    ciot_alerts *a = mk(&l);
    cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, S("temperature"), 10, 35, NULL, 0, 2), 0);
    const double seq[] = {36, 34, 36, 33.5, 36, 33, 34, 36, 9, 11, 9.5, 12, 11};
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++)
        cr_assert_eq(ciot_alerts_feed(a, S("d"), S("temperature"), seq[i], (int64_t)i), 0);
    cr_assert_eq(l.n, 6);
    expect(&l, 0, CIOT_ALERT_RAISED, "d", "HIGH_TEMPERATURE", 36, 35);
    expect(&l, 1, CIOT_ALERT_CLEARED, "d", "HIGH_TEMPERATURE", 33, 35); /* <= 35 - 2 */
    expect(&l, 2, CIOT_ALERT_RAISED, "d", "HIGH_TEMPERATURE", 36, 35);
    expect(&l, 3, CIOT_ALERT_CLEARED, "d", "HIGH_TEMPERATURE", 9, 35);
    expect(&l, 4, CIOT_ALERT_RAISED, "d", "LOW_TEMPERATURE", 9, 10);
    expect(&l, 5, CIOT_ALERT_CLEARED, "d", "LOW_TEMPERATURE", 12, 10); /* >= 10 + 2 */
    cr_expect_str_eq(l.r[0].sev, "WARNING"); /* NULL, 0 */
    cr_assert_eq(ciot_alerts_free(a), 0);
}

Test(alerts, repeat_mode_alerts_every_reading)
{
    struct log l;
    ciot_alerts *a = mk(&l);
    cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, S("temperature"), 0, 35, S("HIGH"),
                                           CIOT_ALERTS_REPEAT), 0);
    const double seq[] = {36, 37, 30, 36, -1, -2};
    for (size_t i = 0; i < 6; i++)
        cr_assert_eq(ciot_alerts_feed(a, S("d"), S("temperature"), seq[i], 100 + (int64_t)i), 0);
    cr_assert_eq(l.n, 5);
    expect(&l, 0, CIOT_ALERT_RAISED, "d", "HIGH_TEMPERATURE", 36, 35);
    expect(&l, 1, CIOT_ALERT_RAISED, "d", "HIGH_TEMPERATURE", 37, 35);
    expect(&l, 2, CIOT_ALERT_RAISED, "d", "HIGH_TEMPERATURE", 36, 35);
    expect(&l, 3, CIOT_ALERT_RAISED, "d", "LOW_TEMPERATURE", -1, 0);
    expect(&l, 4, CIOT_ALERT_RAISED, "d", "LOW_TEMPERATURE", -2, 0);
    cr_expect_eq(l.r[4].ts, 105);
    /* any negative hysteresis is repeat mode */
    cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, S("temperature"), NAN, 35, NULL, 0, -0.5), 0);
    cr_assert_eq(ciot_alerts_feed(a, S("d"), S("temperature"), 40, 1), 0);
    cr_assert_eq(ciot_alerts_feed(a, S("d"), S("temperature"), 40, 2), 0);
    cr_assert_eq(l.n, 7);
    cr_assert_eq(ciot_alerts_free(a), 0);
}

Test(alerts, device_threshold_overrides_default)
{
    struct log l;
    ciot_alerts *a = mk(&l);
    guide(a, 0);
    cr_assert_eq(ciot_alerts_set_threshold(a, S("oven"), S("temperature"), NAN, 250, S("INFO"), 0), 0);
    cr_assert_eq(ciot_alerts_set_threshold(a, S("quiet"), S("temperature"), NAN, NAN, NULL, 0, 0), 0);
    /* a threshold only for one device, for a metric without a default */
    cr_assert_eq(ciot_alerts_set_threshold(a, S("lab"), S("co2-level"), NAN, 1000, NULL, 0, 0), 0);
    cr_assert_eq(ciot_alerts_device_count(a), 3);
    cr_assert_eq(ciot_alerts_feed(a, S("oven"), S("temperature"), 200, 1), 0);
    cr_assert_eq(ciot_alerts_feed(a, S("quiet"), S("temperature"), 200, 1), 0);
    cr_assert_eq(ciot_alerts_feed(a, S("other"), S("co2-level"), 5000, 1), 0);
    cr_assert_eq(l.n, 0);
    cr_assert_eq(ciot_alerts_feed(a, S("oven"), S("temperature"), 260, 2), 0);
    cr_assert_eq(ciot_alerts_feed(a, S("other"), S("temperature"), 36, 2), 0);
    cr_assert_eq(ciot_alerts_feed(a, S("lab"), S("co2-level"), 1200, 2), 0);
    cr_assert_eq(l.n, 3);
    expect(&l, 0, CIOT_ALERT_RAISED, "oven", "HIGH_TEMPERATURE", 260, 250);
    cr_expect_str_eq(l.r[0].sev, "INFO");
    expect(&l, 1, CIOT_ALERT_RAISED, "other", "HIGH_TEMPERATURE", 36, 35);
    expect(&l, 2, CIOT_ALERT_RAISED, "lab", "HIGH_CO2-LEVEL", 1200, 1000);
    /* removing the device's own: the default applies again, from a fresh state */
    cr_assert_eq(ciot_alerts_clear_threshold(a, S("oven"), S("temperature")), 0);
    cr_assert_eq(ciot_alerts_clear_threshold(a, S("oven"), S("temperature")), CIOT_ENOTFOUND);
    cr_assert_eq(ciot_alerts_feed(a, S("oven"), S("temperature"), 200, 3), 0);
    cr_assert_eq(l.n, 4);
    expect(&l, 3, CIOT_ALERT_RAISED, "oven", "HIGH_TEMPERATURE", 200, 35);
    /* removing the default: nobody without their own threshold is judged */
    cr_assert_eq(ciot_alerts_clear_threshold(a, NULL, 0, S("temperature")), 0);
    cr_assert_eq(ciot_alerts_clear_threshold(a, NULL, 0, S("temperature")), CIOT_ENOTFOUND);
    cr_assert_eq(ciot_alerts_clear_threshold(a, NULL, 0, S("unknown")), CIOT_ENOTFOUND);
    cr_assert_eq(ciot_alerts_clear_threshold(a, S("nobody"), S("humidity")), CIOT_ENOTFOUND);
    cr_assert_eq(ciot_alerts_feed(a, S("oven"), S("temperature"), 100, 4), 0);
    cr_assert_eq(ciot_alerts_feed(a, S("other"), S("temperature"), 10, 4), 0);
    cr_assert_eq(l.n, 4);
    cr_assert_eq(ciot_alerts_free(a), 0);
}

Test(alerts, changing_a_threshold_resets_the_raised_state)
{
    struct log l;
    ciot_alerts *a = mk(&l);
    cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, S("t"), NAN, 35, NULL, 0, 0), 0);
    cr_assert_eq(ciot_alerts_feed(a, S("d"), S("t"), 40, 1), 0);
    cr_assert_eq(l.n, 1);
    cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, S("t"), NAN, 38, NULL, 0, 0), 0);
    cr_assert_eq(ciot_alerts_feed(a, S("d"), S("t"), 40, 2), 0); /* judged afresh */
    cr_assert_eq(l.n, 2);
    expect(&l, 1, CIOT_ALERT_RAISED, "d", "HIGH_T", 40, 38);
    /* a device's own threshold resets only that device */
    cr_assert_eq(ciot_alerts_feed(a, S("e"), S("t"), 40, 3), 0);
    cr_assert_eq(ciot_alerts_set_threshold(a, S("d"), S("t"), NAN, 39, NULL, 0, 0), 0);
    cr_assert_eq(ciot_alerts_feed(a, S("d"), S("t"), 40, 4), 0);
    cr_assert_eq(ciot_alerts_feed(a, S("e"), S("t"), 40, 4), 0);
    cr_assert_eq(l.n, 4);
    expect(&l, 3, CIOT_ALERT_RAISED, "d", "HIGH_T", 40, 39);
    cr_assert_eq(ciot_alerts_free(a), 0);
}

Test(alerts, bad_arguments_are_refused)
{
    struct log l;
    ciot_alerts *a = mk(&l);
    ciot_alerts *n = (ciot_alerts *)1;
    cr_assert_eq(ciot_alerts_new(&n, NULL, NULL), CIOT_EINVAL);
    cr_assert_null(n);
    cr_assert_eq(ciot_alerts_new(NULL, collect, NULL), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_free(NULL), 0);
    cr_assert_str_eq(ciot_alerts_errmsg(a), "");
    cr_assert_gt(strlen(ciot_alerts_errmsg(NULL)), 0);
    /* set_threshold */
    cr_assert_eq(ciot_alerts_set_threshold(NULL, NULL, 0, S("t"), 1, 2, NULL, 0, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 3, S("t"), 1, 2, NULL, 0, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_set_threshold(a, "", 0, S("t"), 1, 2, NULL, 0, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_set_threshold(a, "\xff", 1, S("t"), 1, 2, NULL, 0, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_set_threshold(a, "a\0b", 3, S("t"), 1, 2, NULL, 0, 0), CIOT_EINVAL);
    char big[200];
    memset(big, 'x', sizeof big);
    cr_assert_eq(ciot_alerts_set_threshold(a, big, 129, S("t"), 1, 2, NULL, 0, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_set_threshold(a, big, 128, S("t"), 1, 2, NULL, 0, 0), 0);
    cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, "", 0, 1, 2, NULL, 0, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, S("a.b"), 1, 2, NULL, 0, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, big, 65, 1, 2, NULL, 0, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, big, 64, 1, 2, NULL, 0, 0), 0);
    cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, S("t"), 3, 2, NULL, 0, 0), CIOT_EINVAL);
    cr_assert(strstr(ciot_alerts_errmsg(a), "min > max") != NULL);
    cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, S("t"), -INFINITY, 2, NULL, 0, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, S("t"), 1, INFINITY, NULL, 0, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, S("t"), 1, 2, NULL, 0, NAN), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, S("t"), 1, 2, NULL, 0, INFINITY), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, S("t"), 1, 2, NULL, 4, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, S("t"), 1, 2, "", 0, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, S("t"), 1, 2, big, 33, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, S("t"), 1, 2, "\xc0\x80", 2, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, S("t"), 2, 2, big, 32, 0), 0); /* min == max */
    /* feed */
    cr_assert_eq(ciot_alerts_feed(NULL, S("d"), S("t"), 1, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_feed(a, S("d"), S("t"), NAN, 0), CIOT_EINVAL);
    cr_assert(strstr(ciot_alerts_errmsg(a), "NaN") != NULL);
    cr_assert_eq(ciot_alerts_feed(a, S("d"), S("t"), INFINITY, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_feed(a, S("d"), S("t"), -INFINITY, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_feed(a, S("d"), S("t/x"), 1, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_feed(a, NULL, 0, S("t"), 1, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_feed(a, "\xed\xa0\x80", 3, S("t"), 1, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_feed(a, big, 129, S("t"), 1, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_device_count(a), 1); /* only big[0..128) */
    cr_assert_eq(l.n, 0);
    /* the rest */
    cr_assert_eq(ciot_alerts_set_silence(a, -1), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_set_silence(NULL, 1), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_set_max_devices(a, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_set_max_devices(NULL, 1), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_seen(a, NULL, 0, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_seen(NULL, S("d"), 0), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_tick(NULL, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_forget(a, NULL, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_forget(NULL, S("d")), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_clear_threshold(NULL, NULL, 0, S("t")), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_clear_threshold(a, NULL, 0, S("t.x")), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_next_deadline(NULL), INT64_MAX);
    cr_assert_eq(ciot_alerts_device_count(NULL), 0);
    cr_assert_eq(ciot_alerts_skipped(NULL), 0);
    cr_assert_eq(ciot_alert_kind(NULL), 0);
    cr_assert(isnan(ciot_alert_value(NULL)));
    cr_assert_str_eq(ciot_alert_type(NULL, NULL), "");
    size_t len = 9;
    cr_assert_eq(ciot_alert_to_json(NULL, 0, &len, NULL), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_free(a), 0);
}

Test(alerts, sixty_four_metric_names_at_most)
{
    struct log l;
    ciot_alerts *a = mk(&l);
    char name[16];
    for (int i = 0; i < CIOT_ALERTS_MAX_METRICS; i++) {
        int n = snprintf(name, sizeof name, "m%d", i);
        cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, name, (size_t)n, NAN, (double)i, NULL, 0, 0), 0);
    }
    cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, S("m64"), NAN, 1, NULL, 0, 0), CIOT_EQUEUE_FULL);
    cr_assert_eq(ciot_alerts_set_threshold(a, S("dev"), S("m64"), NAN, 1, NULL, 0, 0), CIOT_EQUEUE_FULL);
    cr_assert_eq(ciot_alerts_device_count(a), 0);
    /* all 64 work, the last bit included */
    cr_assert_eq(ciot_alerts_feed(a, S("d"), S("m63"), 100, 0), 0);
    cr_assert_eq(ciot_alerts_feed(a, S("d"), S("m0"), 100, 0), 0);
    cr_assert_eq(l.n, 2);
    expect(&l, 0, CIOT_ALERT_RAISED, "d", "HIGH_M63", 100, 63);
    cr_assert_eq(ciot_alerts_feed_json(a, S("d"), S("{\"m63\":1,\"m62\":100}"), 1), 0);
    cr_assert_eq(l.n, 4);
    expect(&l, 2, CIOT_ALERT_RAISED, "d", "HIGH_M62", 100, 62); /* order of configuration */
    expect(&l, 3, CIOT_ALERT_CLEARED, "d", "HIGH_M63", 1, 63);
    cr_assert_eq(ciot_alerts_free(a), 0);
}

/* ---- telemetry messages ---- */

Test(alerts, feed_json_reads_the_thresholded_members)
{
    struct log l;
    ciot_alerts *a = mk(&l);
    guide(a, 0);
    const char *m1 = "{\"deviceId\":\"sensor-1\",\"temperature\":37.5,\"humidity\":\"85.5\","
                     "\"pressure\":1000,\"timestamp\":\"2026-11-26T04:56:27.123Z\"}";
    cr_assert_eq(ciot_alerts_feed_json(a, S("sensor-1"), S(m1), 10), 0);
    cr_assert_eq(l.n, 2);
    expect(&l, 0, CIOT_ALERT_RAISED, "sensor-1", "HIGH_TEMPERATURE", 37.5, 35);
    expect(&l, 1, CIOT_ALERT_RAISED, "sensor-1", "HIGH_HUMIDITY", 85.5, 80);
    cr_assert_eq(ciot_alerts_skipped(a), 0);
    /* numeric strings the AWS way: leading zeros, exponents; escapes decoded */
    cr_assert_eq(ciot_alerts_feed_json(a, S("s2"), S("{\"pressure\":\"0901\"}"), 11), 0);
    cr_assert_eq(ciot_alerts_feed_json(a, S("s3"), S("{\"pressure\":\"1.1e3\"}"), 11), 0);
    cr_assert_eq(ciot_alerts_feed_json(a, S("s4"), S("{\"pressure\":\"-\\u0031\"}"), 11), 0);
    cr_assert_eq(ciot_alerts_feed_json(a, S("s5"), S("{\"pressure\":\"9E-1\"}"), 11), 0);
    cr_assert_eq(l.n, 6);
    expect(&l, 2, CIOT_ALERT_RAISED, "s2", "LOW_PRESSURE", 901, 950);
    expect(&l, 3, CIOT_ALERT_RAISED, "s3", "HIGH_PRESSURE", 1100, 1050);
    expect(&l, 4, CIOT_ALERT_RAISED, "s4", "LOW_PRESSURE", -1, 950);
    expect(&l, 5, CIOT_ALERT_RAISED, "s5", "LOW_PRESSURE", 0.9, 950);
    /* not numbers: skipped and counted; other metrics still judged */
    const char *bad[] = {"\" 36\"", "\"36 \"", "\"+36\"", "\"36.\"", "\".5\"", "\"1e\"", "\"0x10\"",
                         "\"\"", "\"abc\"", "true", "null", "[40]", "{\"v\":40}", "1e400",
                         "\"1e400\"", "\"NaN\"", "\"Infinity\"", "\"1E+5\""};
    size_t nbad = sizeof bad / sizeof bad[0];
    for (size_t i = 0; i < nbad; i++) {
        char msg[128];
        int n = snprintf(msg, sizeof msg, "{\"temperature\":%s,\"humidity\":90}", bad[i]);
        cr_assert_eq(ciot_alerts_feed_json(a, S("s6"), msg, (size_t)n, 12), 0, "%s", msg);
    }
    cr_assert_eq(ciot_alerts_skipped(a), nbad);
    cr_assert_eq(l.n, 7);
    expect(&l, 6, CIOT_ALERT_RAISED, "s6", "HIGH_HUMIDITY", 90, 80);
    /* missing metrics are not judged: the raised state stays */
    cr_assert_eq(ciot_alerts_feed_json(a, S("sensor-1"), S("{\"deviceId\":\"sensor-1\"}"), 13), 0);
    cr_assert_eq(ciot_alerts_feed_json(a, S("sensor-1"), S(" {} "), 13), 0);
    cr_assert_eq(l.n, 7);
    /* the last of duplicate members wins; an escaped key is still the metric */
    cr_assert_eq(ciot_alerts_feed_json(a, S("sensor-1"),
                                       S("{\"temperature\":20,\"temperature\":40,\"humidity\":50}"), 14), 0);
    cr_assert_eq(l.n, 8);
    expect(&l, 7, CIOT_ALERT_CLEARED, "sensor-1", "HIGH_HUMIDITY", 50, 80);
    cr_assert_eq(ciot_alerts_feed_json(a, S("sensor-1"), S("{\"temp\\u0065rature\":30}"), 15), 0);
    cr_assert_eq(l.n, 9);
    expect(&l, 8, CIOT_ALERT_CLEARED, "sensor-1", "HIGH_TEMPERATURE", 30, 35);
    /* nested members with a metric's name are not the metric */
    cr_assert_eq(ciot_alerts_feed_json(a, S("sensor-1"), S("{\"data\":{\"temperature\":99}}"), 16), 0);
    cr_assert_eq(l.n, 9);
    cr_assert_eq(ciot_alerts_free(a), 0);
}

Test(alerts, feed_json_refuses_what_is_not_one_object)
{
    struct log l;
    ciot_alerts *a = mk(&l);
    guide(a, 0);
    const char *bad[] = {"", "   ", "[1,2]", "\"x\"", "42", "null", "{", "}", "{\"temperature\":40",
                         "{\"temperature\":40,}", "{\"temperature\":40} {}", "{\"temperature\":40}}",
                         "{\"temperature\" 40}", "{temperature:40}", "{\"temperature\":040}",
                         "{\"temperature\":40}x", "{\"a\":\"\xff\"}", "{'a':1}", "{\"a\":1 \"b\":2}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(ciot_alerts_feed_json(a, S("d"), S(bad[i]), 1), CIOT_EINVAL, "[%s]", bad[i]);
        cr_assert_gt(strlen(ciot_alerts_errmsg(a)), 0);
    }
    cr_assert_eq(ciot_alerts_feed_json(a, S("d"), S("[1]"), 1), CIOT_EINVAL);
    cr_assert_str_eq(ciot_alerts_errmsg(a), "payload: not a JSON object");
    cr_assert_eq(ciot_alerts_feed_json(a, S("d"), NULL, 0, 1), CIOT_EINVAL);
    cr_assert_eq(ciot_alerts_feed_json(a, NULL, 0, S("{}"), 1), CIOT_EINVAL);
    /* too deep */
    static char deep[700];
    size_t n = 0;
    deep[n++] = '{';
    memcpy(deep + n, "\"a\":", 4);
    n += 4;
    for (int i = 0; i < 300; i++)
        deep[n++] = '[';
    for (int i = 0; i < 300; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    cr_assert_eq(ciot_alerts_feed_json(a, S("d"), deep, n, 1), CIOT_EDEPTH);
    /* nothing changed: no device, no alert */
    cr_assert_eq(ciot_alerts_device_count(a), 0);
    cr_assert_eq(l.n, 0);
    /* a message is not NUL-terminated: only len bytes count */
    cr_assert_eq(ciot_alerts_feed_json(a, S("d"), "{\"temperature\":40}garbage", 18, 1), 0);
    cr_assert_eq(l.n, 1);
    cr_assert_eq(ciot_alerts_free(a), 0);
}

/* ---- silence ---- */

Test(alerts, silent_devices_go_offline_once_and_come_back_online)
{
    struct log l;
    ciot_alerts *a = mk(&l);
    const int64_t min10 = 10 * 60 * 1000;
    cr_assert_eq(ciot_alerts_next_deadline(a), INT64_MAX);
    cr_assert_eq(ciot_alerts_set_silence(a, min10), 0);
    cr_assert_eq(ciot_alerts_next_deadline(a), INT64_MAX); /* nobody seen */
    cr_assert_eq(ciot_alerts_feed_json(a, S("a"), S("{}"), 1000), 0);
    cr_assert_eq(ciot_alerts_seen(a, S("b"), 2000), 0);
    cr_assert_eq(ciot_alerts_feed(a, S("c"), S("temperature"), 20, 3000), 0);
    cr_assert_eq(ciot_alerts_next_deadline(a), 1000 + min10);
    cr_assert_eq(ciot_alerts_seen(a, S("a"), 4000), 0); /* a moves to the back */
    cr_assert_eq(ciot_alerts_next_deadline(a), 2000 + min10);
    cr_assert_eq(ciot_alerts_tick(a, 2000 + min10 - 1), 0);
    cr_assert_eq(l.n, 0);
    cr_assert_eq(ciot_alerts_tick(a, 2000 + min10), 0); /* not seen for exactly the timeout */
    cr_assert_eq(l.n, 1);
    expect(&l, 0, CIOT_ALERT_OFFLINE, "b", "DEVICE_OFFLINE", NAN, NAN);
    cr_expect_eq(l.r[0].last_seen, 2000);
    cr_expect_eq(l.r[0].silent, min10);
    cr_expect_eq(l.r[0].ts, 2000 + min10);
    cr_expect_str_eq(l.r[0].metric, "");
    cr_expect_str_eq(l.r[0].sev, "");
    cr_assert_eq(ciot_alerts_next_deadline(a), 3000 + min10);
    /* much later: c then a, oldest first; b not again */
    cr_assert_eq(ciot_alerts_tick(a, 10 * min10), 0);
    cr_assert_eq(l.n, 3);
    expect(&l, 1, CIOT_ALERT_OFFLINE, "c", "DEVICE_OFFLINE", NAN, NAN);
    expect(&l, 2, CIOT_ALERT_OFFLINE, "a", "DEVICE_OFFLINE", NAN, NAN);
    cr_expect_eq(l.r[2].silent, 10 * min10 - 4000);
    cr_assert_eq(ciot_alerts_next_deadline(a), INT64_MAX);
    cr_assert_eq(ciot_alerts_tick(a, 20 * min10), 0);
    cr_assert_eq(l.n, 3);
    /* b comes back: ONLINE before its reading is judged */
    cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, S("temperature"), NAN, 35, NULL, 0, 0), 0);
    cr_assert_eq(ciot_alerts_feed(a, S("b"), S("temperature"), 50, 20 * min10 + 5), 0);
    cr_assert_eq(l.n, 5);
    expect(&l, 3, CIOT_ALERT_ONLINE, "b", "DEVICE_ONLINE", NAN, NAN);
    cr_expect_eq(l.r[3].last_seen, 2000);
    cr_expect_eq(l.r[3].silent, 20 * min10 + 5 - 2000);
    cr_expect_eq(l.r[3].ts, 20 * min10 + 5);
    expect(&l, 4, CIOT_ALERT_RAISED, "b", "HIGH_TEMPERATURE", 50, 35);
    cr_assert_eq(ciot_alerts_feed(a, S("b"), S("temperature"), 50, 20 * min10 + 6), 0);
    cr_assert_eq(l.n, 5); /* online once */
    cr_assert_eq(ciot_alerts_next_deadline(a), 20 * min10 + 6 + min10);
    /* time going back counts as the latest time for silence */
    cr_assert_eq(ciot_alerts_seen(a, S("c"), 0), 0);
    cr_assert_eq(l.n, 6);
    expect(&l, 5, CIOT_ALERT_ONLINE, "c", "DEVICE_ONLINE", NAN, NAN);
    cr_expect_eq(l.r[5].ts, 20 * min10 + 6);
    cr_assert_eq(ciot_alerts_next_deadline(a), 20 * min10 + 6 + min10);
    /* silence off: no deadline, no report */
    cr_assert_eq(ciot_alerts_set_silence(a, 0), 0);
    cr_assert_eq(ciot_alerts_next_deadline(a), INT64_MAX);
    cr_assert_eq(ciot_alerts_tick(a, INT64_MAX), 0);
    cr_assert_eq(l.n, 6);
    /* on again: the deadlines come back, saturating at INT64_MAX */
    cr_assert_eq(ciot_alerts_set_silence(a, INT64_MAX), 0);
    cr_assert_eq(ciot_alerts_next_deadline(a), INT64_MAX);
    cr_assert_eq(ciot_alerts_set_silence(a, min10), 0);
    cr_assert_eq(ciot_alerts_tick(a, 22 * min10 + 6), 0);
    cr_assert_eq(l.n, 8);
    cr_assert_eq(ciot_alerts_free(a), 0);
}

Test(alerts, extreme_times_do_not_overflow)
{
    struct log l;
    ciot_alerts *a = mk(&l);
    cr_assert_eq(ciot_alerts_set_silence(a, 1000), 0);
    cr_assert_eq(ciot_alerts_seen(a, S("d"), INT64_MIN), 0);
    cr_assert_eq(ciot_alerts_next_deadline(a), INT64_MIN + 1000);
    cr_assert_eq(ciot_alerts_tick(a, INT64_MAX), 0);
    cr_assert_eq(l.n, 1);
    cr_expect_eq(l.r[0].silent, INT64_MAX);
    cr_expect_str_eq(l.r[0].json, "<CIOT_ERANGE>");
    cr_assert_eq(ciot_alerts_seen(a, S("d"), INT64_MAX), 0);
    cr_assert_eq(ciot_alerts_next_deadline(a), INT64_MAX);
    cr_assert_eq(ciot_alerts_free(a), 0);
}

/* ---- bounds ---- */

Test(alerts, device_limit_and_forget)
{
    struct log l;
    ciot_alerts *a = mk(&l);
    cr_assert_eq(ciot_alerts_set_max_devices(a, 3), 0);
    cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, S("t"), NAN, 10, NULL, 0, 0), 0);
    cr_assert_eq(ciot_alerts_set_silence(a, 100), 0);
    cr_assert_eq(ciot_alerts_feed(a, S("a"), S("t"), 20, 0), 0);
    cr_assert_eq(ciot_alerts_seen(a, S("b"), 0), 0);
    cr_assert_eq(ciot_alerts_set_threshold(a, S("c"), S("t"), NAN, 5, NULL, 0, 0), 0);
    cr_assert_eq(ciot_alerts_device_count(a), 3);
    cr_assert_eq(ciot_alerts_feed(a, S("d"), S("t"), 20, 1), CIOT_EQUEUE_FULL);
    cr_assert(strstr(ciot_alerts_errmsg(a), "limit") != NULL);
    cr_assert_eq(ciot_alerts_seen(a, S("d"), 1), CIOT_EQUEUE_FULL);
    cr_assert_eq(ciot_alerts_feed_json(a, S("d"), S("{}"), 1), CIOT_EQUEUE_FULL);
    cr_assert_eq(ciot_alerts_set_threshold(a, S("d"), S("t"), NAN, 5, NULL, 0, 0), CIOT_EQUEUE_FULL);
    cr_assert_eq(ciot_alerts_feed(a, S("a"), S("t"), 20, 1), 0); /* known devices still fine */
    cr_assert_eq(l.n, 1);
    /* forget: the state, the own thresholds and the silence tracking go */
    cr_assert_eq(ciot_alerts_forget(a, S("a")), 0);
    cr_assert_eq(ciot_alerts_forget(a, S("a")), CIOT_ENOTFOUND);
    cr_assert_eq(ciot_alerts_forget(a, S("zz")), CIOT_ENOTFOUND);
    cr_assert_eq(ciot_alerts_device_count(a), 2);
    cr_assert_eq(ciot_alerts_next_deadline(a), 100); /* b, seen at 0 */
    cr_assert_eq(ciot_alerts_feed(a, S("d"), S("t"), 20, 2), 0);
    cr_assert_eq(l.n, 2);
    cr_assert_eq(ciot_alerts_forget(a, S("c")), 0);
    cr_assert_eq(ciot_alerts_feed(a, S("a"), S("t"), 20, 3), 0); /* afresh: raised again */
    cr_assert_eq(l.n, 3);
    expect(&l, 2, CIOT_ALERT_RAISED, "a", "HIGH_T", 20, 10);
    cr_assert_eq(ciot_alerts_forget(a, S("b")), 0);
    cr_assert_eq(ciot_alerts_tick(a, 1000), 0); /* b is not reported */
    cr_assert_eq(l.n, 5);
    expect(&l, 3, CIOT_ALERT_OFFLINE, "d", "DEVICE_OFFLINE", NAN, NAN);
    expect(&l, 4, CIOT_ALERT_OFFLINE, "a", "DEVICE_OFFLINE", NAN, NAN);
    /* forgetting an offline device, and lowering the limit under the count */
    cr_assert_eq(ciot_alerts_forget(a, S("d")), 0);
    cr_assert_eq(ciot_alerts_set_max_devices(a, 1), 0);
    cr_assert_eq(ciot_alerts_device_count(a), 1);
    cr_assert_eq(ciot_alerts_seen(a, S("x"), 2000), CIOT_EQUEUE_FULL);
    cr_assert_eq(ciot_alerts_free(a), 0);
}

Test(alerts, many_devices_in_the_table)
{
    struct log l;
    ciot_alerts *a = mk(&l);
    cr_assert_eq(ciot_alerts_set_max_devices(a, 5000), 0);
    cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, S("v"), NAN, 0, NULL, 0, 0), 0);
    char id[32];
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(id, sizeof id, "dev-%d", i);
        cr_assert_eq(ciot_alerts_feed(a, id, (size_t)n, S("v"), i % 2 ? 1 : -1, i), 0);
    }
    cr_assert_eq(ciot_alerts_device_count(a), 5000);
    cr_assert_eq(ciot_alerts_seen(a, S("one-more"), 0), CIOT_EQUEUE_FULL);
    for (int i = 0; i < 5000; i += 2) {
        int n = snprintf(id, sizeof id, "dev-%d", i);
        cr_assert_eq(ciot_alerts_forget(a, id, (size_t)n), 0);
    }
    cr_assert_eq(ciot_alerts_device_count(a), 2500);
    l.n = 0;
    /* every odd device still has its raised state: none raises again */
    for (int i = 1; i < 5000; i += 2) {
        int n = snprintf(id, sizeof id, "dev-%d", i);
        cr_assert_eq(ciot_alerts_feed(a, id, (size_t)n, S("v"), 2, 6000), 0);
    }
    cr_assert_eq(l.n, 0);
    cr_assert_eq(ciot_alerts_free(a), 0);
}

/* ---- callbacks ---- */

Test(alerts, a_callback_that_returns_non_zero_stops_the_call)
{
    struct log l;
    ciot_alerts *a = mk(&l);
    guide(a, 0);
    l.stop_at = 1;
    cr_assert_eq(ciot_alerts_feed_json(a, S("d"), S("{\"temperature\":40,\"humidity\":90}"), 1),
                 CIOT_EUSER);
    cr_assert_eq(l.n, 1); /* humidity not judged */
    cr_assert(strstr(ciot_alerts_errmsg(a), "callback") != NULL);
    l.stop_at = 0;
    cr_assert_eq(ciot_alerts_feed_json(a, S("d"), S("{\"temperature\":40,\"humidity\":90}"), 2), 0);
    cr_assert_eq(l.n, 2); /* the temperature alert counted as delivered */
    expect(&l, 1, CIOT_ALERT_RAISED, "d", "HIGH_HUMIDITY", 90, 80);
    /* tick: the devices not yet reported are reported by the next tick */
    cr_assert_eq(ciot_alerts_set_silence(a, 10), 0);
    cr_assert_eq(ciot_alerts_seen(a, S("e"), 3), 0);
    l.stop_at = 3;
    cr_assert_eq(ciot_alerts_tick(a, 100), CIOT_EUSER);
    cr_assert_eq(l.n, 3);
    cr_assert_eq(ciot_alerts_next_deadline(a), 13);
    l.stop_at = 0;
    cr_assert_eq(ciot_alerts_tick(a, 100), 0);
    cr_assert_eq(l.n, 4);
    expect(&l, 3, CIOT_ALERT_OFFLINE, "e", "DEVICE_OFFLINE", NAN, NAN);
    /* ONLINE stops a feed before its reading is judged */
    l.stop_at = 5;
    cr_assert_eq(ciot_alerts_feed(a, S("e"), S("temperature"), 99, 200), CIOT_EUSER);
    cr_assert_eq(l.n, 5);
    cr_assert_eq(ciot_alerts_free(a), 0);
}

Test(alerts, calls_from_inside_the_callback_are_refused)
{
    struct log l;
    ciot_alerts *a = mk(&l);
    guide(a, 0);
    l.reenter = 1;
    cr_assert_eq(ciot_alerts_feed(a, S("d1"), S("temperature"), 40, 1), 0);
    cr_assert_eq(l.n, 1);
    for (int i = 0; i < 8; i++)
        cr_expect_eq(l.reenter_rc[i], CIOT_ERECURSIVE, "call %d gave %d", i, l.reenter_rc[i]);
    /* the set is intact */
    l.reenter = 0;
    cr_assert_eq(ciot_alerts_device_count(a), 1);
    cr_assert_eq(ciot_alerts_feed(a, S("d1"), S("temperature"), 30, 2), 0);
    cr_assert_eq(l.n, 2);
    cr_assert_eq(ciot_alerts_free(a), 0);
}

/* ---- the alert document ---- */

Test(alerts, alert_json_byte_for_byte)
{
    struct log l;
    ciot_alerts *a = mk(&l);
    cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, S("temperature"), -10.25, 35, S("WARNING"), 0.5), 0);
    cr_assert_eq(ciot_alerts_set_silence(a, 600000), 0);
    const int64_t t0 = 1795668987123; /* 2026-11-26T04:56:27.123Z */
    cr_assert_eq(ciot_alerts_feed(a, S("temperature-sensor-001"), S("temperature"), 37.5, t0), 0);
    cr_assert_eq(ciot_alerts_feed(a, S("temperature-sensor-001"), S("temperature"), 34, t0 + 1000), 0);
    cr_assert_eq(ciot_alerts_feed(a, S("d\"\xc3\xa9"), S("temperature"), -20, t0 + 1000), 0);
    cr_assert_eq(ciot_alerts_tick(a, t0 + 1000 + 600000), 0);
    cr_assert_eq(ciot_alerts_seen(a, S("temperature-sensor-001"), t0 + 3600000), 0);
    cr_assert_eq(l.n, 6);
    cr_expect_str_eq(l.r[0].json,
                     "{\"deviceId\":\"temperature-sensor-001\",\"alertType\":\"HIGH_TEMPERATURE\","
                     "\"metric\":\"temperature\",\"value\":37.5,\"threshold\":35,"
                     "\"severity\":\"WARNING\",\"timestamp\":\"2026-11-26T04:56:27.123Z\"}");
    cr_expect_str_eq(l.r[1].json,
                     "{\"deviceId\":\"temperature-sensor-001\",\"alertType\":\"HIGH_TEMPERATURE\","
                     "\"metric\":\"temperature\",\"value\":34,\"threshold\":35,"
                     "\"severity\":\"WARNING\",\"timestamp\":\"2026-11-26T04:56:28.123Z\","
                     "\"cleared\":true}");
    cr_expect_str_eq(l.r[2].json,
                     "{\"deviceId\":\"d\\\"\xc3\xa9\",\"alertType\":\"LOW_TEMPERATURE\","
                     "\"metric\":\"temperature\",\"value\":-20,\"threshold\":-10.25,"
                     "\"severity\":\"WARNING\",\"timestamp\":\"2026-11-26T04:56:28.123Z\"}");
    cr_expect_str_eq(l.r[3].json,
                     "{\"deviceId\":\"temperature-sensor-001\",\"alertType\":\"DEVICE_OFFLINE\","
                     "\"timestamp\":\"2026-11-26T05:06:28.123Z\","
                     "\"lastSeen\":\"2026-11-26T04:56:28.123Z\",\"silentMs\":600000}");
    cr_expect_str_eq(l.r[4].json,
                     "{\"deviceId\":\"d\\\"\xc3\xa9\",\"alertType\":\"DEVICE_OFFLINE\","
                     "\"timestamp\":\"2026-11-26T05:06:28.123Z\","
                     "\"lastSeen\":\"2026-11-26T04:56:28.123Z\",\"silentMs\":600000}");
    cr_expect_str_eq(l.r[5].json,
                     "{\"deviceId\":\"temperature-sensor-001\",\"alertType\":\"DEVICE_ONLINE\","
                     "\"timestamp\":\"2026-11-26T05:56:27.123Z\","
                     "\"lastSeen\":\"2026-11-26T04:56:28.123Z\",\"silentMs\":3599000}");
    cr_assert_eq(ciot_alerts_free(a), 0);
}

static int sizes_cb(ciot_alerts *a, const ciot_alert *al, void *ud)
{
    (void)a;
    int *checked = ud;
    char full[512];
    size_t need = 0;
    cr_assert_eq(ciot_alert_to_json(NULL, 0, &need, al), CIOT_ENOSPC);
    size_t len = 0;
    cr_assert_eq(ciot_alert_to_json(full, need, &len, al), 0); /* exactly: no room for a NUL */
    cr_assert_eq(len, need);
    cr_assert_eq(ciot_alert_to_json(full, sizeof full, &len, al), 0);
    cr_assert_eq(len, need);
    cr_assert_eq(strlen(full), need);
    for (size_t cap = 1; cap < need; cap++) {
        char buf[512];
        size_t got = 0;
        cr_assert_eq(ciot_alert_to_json(buf, cap, &got, al), CIOT_ENOSPC, "cap %zu", cap);
        cr_assert_eq(got, need);
    }
    cr_assert_eq(ciot_alert_to_json(NULL, 5, &len, al), CIOT_EINVAL);
    cr_assert_eq(ciot_alert_to_json(full, sizeof full, NULL, al), 0);
    (*checked)++;
    return 0;
}

Test(alerts, alert_json_enospc_gives_the_size_needed)
{
    int checked = 0;
    ciot_alerts *a = NULL;
    cr_assert_eq(ciot_alerts_new(&a, sizes_cb, &checked), 0);
    cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, S("temperature"), NAN, 35, NULL, 0, 0), 0);
    cr_assert_eq(ciot_alerts_set_silence(a, 10), 0);
    cr_assert_eq(ciot_alerts_feed(a, S("sensor"), S("temperature"), 0.1 + 35, 0), 0);
    cr_assert_eq(ciot_alerts_feed(a, S("sensor"), S("temperature"), 1, 5), 0);
    cr_assert_eq(ciot_alerts_tick(a, 50), 0);
    cr_assert_eq(ciot_alerts_seen(a, S("sensor"), 70), 0);
    cr_assert_eq(checked, 4);
    cr_assert_eq(ciot_alerts_free(a), 0);
}

/* ---- memory ---- */

struct counter {
    long mallocs, frees, live;
    long fail_at; /* fail the n-th allocation (1-based); 0: never */
    long n;
};

static void *c_malloc(size_t size, void *ctx)
{
    struct counter *c = ctx;
    if (c->fail_at != 0 && ++c->n == c->fail_at)
        return NULL;
    void *p = malloc(size);
    if (p) {
        c->mallocs++;
        c->live++;
    }
    return p;
}

static void *c_realloc(void *ptr, size_t size, void *ctx)
{
    struct counter *c = ctx;
    if (c->fail_at != 0 && ++c->n == c->fail_at)
        return NULL;
    void *p = realloc(ptr, size);
    if (p && ptr == NULL) {
        c->mallocs++;
        c->live++;
    }
    else if (p)
        c->mallocs++; /* counted as an allocation too */
    return p;
}

static void c_free(void *ptr, void *ctx)
{
    struct counter *c = ctx;
    if (ptr) {
        c->frees++;
        c->live--;
    }
    free(ptr);
}

/* A scenario that allocates the handle, metrics, buckets, devices and overrides; returns the
 * first error or 0. The set is freed in all cases. */
static int scenario(struct log *l)
{
    memset(l, 0, sizeof *l);
    ciot_alerts *a = NULL;
    int rc = ciot_alerts_new(&a, collect, l);
    if (rc != 0) {
        cr_assert_null(a);
        return rc;
    }
    char id[16];
    rc = ciot_alerts_set_threshold(a, NULL, 0, S("temperature"), NAN, 35, NULL, 0, 0);
    for (int i = 0; rc == 0 && i < 3; i++) {
        int n = snprintf(id, sizeof id, "own-%d", i);
        rc = ciot_alerts_set_threshold(a, id, (size_t)n, S("humidity"), NAN, 80, NULL, 0, 0);
        if (rc == 0)
            rc = ciot_alerts_set_threshold(a, id, (size_t)n, S("pressure"), 950, NAN, NULL, 0, 0);
        if (rc == 0)
            rc = ciot_alerts_set_threshold(a, id, (size_t)n, S("co2"), NAN, 1, NULL, 0, 0);
    }
    for (int i = 0; rc == 0 && i < 40; i++) {
        int n = snprintf(id, sizeof id, "dev-%d", i);
        size_t before = ciot_alerts_device_count(a);
        rc = ciot_alerts_feed_json(a, id, (size_t)n, S("{\"temperature\":40}"), i);
        if (rc != 0)
            cr_assert_eq(ciot_alerts_device_count(a), before); /* nothing changed */
    }
    if (rc == 0) {
        cr_assert_eq(l->n, 40);
        cr_assert_eq(ciot_alerts_device_count(a), 43);
    }
    cr_assert_eq(ciot_alerts_free(a), 0);
    return rc;
}

Test(alerts, out_of_memory_on_every_allocation)
{
    struct counter c = {0, 0, 0, 0, 0};
    ciot_allocator al = {c_malloc, c_realloc, c_free, &c};
    cr_assert_eq(ciot_set_allocator(&al), 0);
    struct log l;
    cr_assert_eq(scenario(&l), 0);
    long total = c.mallocs;
    cr_assert_eq(c.live, 0);
    cr_assert_gt(total, 40);
    for (long k = 1; k <= total; k++) {
        c = (struct counter){0, 0, 0, k, 0};
        int rc = scenario(&l);
        cr_assert_eq(rc, CIOT_ENOMEM, "allocation %ld: %d", k, rc);
        cr_assert_eq(c.live, 0, "allocation %ld leaks %ld", k, c.live);
    }
    c = (struct counter){0, 0, 0, total + 1, 0};
    cr_assert_eq(scenario(&l), 0);
}

Test(alerts, allocates_only_for_new_devices_and_metrics)
{
    struct counter c = {0, 0, 0, 0, 0};
    ciot_allocator al = {c_malloc, c_realloc, c_free, &c};
    cr_assert_eq(ciot_set_allocator(&al), 0);
    struct log l;
    ciot_alerts *a = mk(&l);
    guide(a, 0);
    cr_assert_eq(ciot_alerts_set_silence(a, 1000), 0);
    cr_assert_eq(ciot_alerts_feed_json(a, S("d"), S("{\"temperature\":40}"), 0), 0);
    long before = c.mallocs;
    for (int i = 0; i < 1000; i++) {
        char msg[64];
        int n = snprintf(msg, sizeof msg, "{\"temperature\":%d,\"humidity\":\"%d\"}", 30 + i % 10,
                         75 + i % 10);
        cr_assert_eq(ciot_alerts_feed_json(a, S("d"), msg, (size_t)n, i * 2000), 0);
        cr_assert_eq(ciot_alerts_tick(a, i * 2000 + 1500), 0);
    }
    cr_assert_eq(c.mallocs, before);
    cr_assert_gt(l.n, 1000);
    cr_assert_eq(ciot_alerts_free(a), 0);
    cr_assert_eq(c.live, 0);
}

/* The table of doc/alerts.md: max 35, the same readings in the three modes. */
Test(alerts, the_three_modes_on_the_same_readings)
{
    const double seq[] = {36, 34, 36, 33.5, 36, 33};
    const double hyst[] = {2, 0, CIOT_ALERTS_REPEAT};
    const char *want[] = {"R....C", "RCRCRC", "R.R.R."};
    for (int m = 0; m < 3; m++) {
        struct log l;
        ciot_alerts *a = mk(&l);
        cr_assert_eq(ciot_alerts_set_threshold(a, NULL, 0, S("temperature"), NAN, 35, NULL, 0, hyst[m]), 0);
        char got[8] = {0};
        for (int i = 0; i < 6; i++) {
            int before = l.n;
            cr_assert_eq(ciot_alerts_feed(a, S("d"), S("temperature"), seq[i], i), 0);
            cr_assert_leq(l.n - before, 1);
            got[i] = l.n == before ? '.' : l.r[before].kind == CIOT_ALERT_RAISED ? 'R' : 'C';
        }
        cr_expect_str_eq(got, want[m], "mode %d", m);
        cr_assert_eq(ciot_alerts_free(a), 0);
    }
}
