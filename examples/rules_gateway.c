/*
 * rules-gateway: the guide's temperature-alert rule and cloud function, run
 * on a gateway instead of in the cloud (so alerts go on while the cloud is
 * unreachable).
 *
 *   rules-gateway [--rule FILE] [--host H --port P] [--silence-ms MS]
 *
 * - A gateway client (generic MQTT backend) subscribes to `sensors/+/+` on
 *   a local broker: the one given with --host/--port, or, without them, a
 *   private mosquitto started on a free loopback port.
 * - Every message goes through a ciot_rules set loaded from the rule payload
 *   FILE (default examples/rules/TemperatureAlertRule.json: `SELECT …
 *   'HIGH_TEMPERATURE' as alertType FROM 'sensors/+/temperature' WHERE
 *   value > 35` with lambda, sns and dynamoDBv2 actions). Its lambda,
 *   "ProcessTemperatureAlert", is a function here that feeds the rule's
 *   output to a ciot_alerts in repeat mode: an alert for every reading above
 *   35, as the guide's function does. The sns action ("TemperatureAlerts")
 *   prints the notification; dynamoDBv2 writes rows into an in-memory SQLite.
 * - Every message's "value" also feeds a second ciot_alerts, as the metric
 *   named by the topic's last level, in edge mode (temperature max 35,
 *   hysteresis 1), that watches silence (--silence-ms; the guide uses 10
 *   minutes, the demo 1.5 s): HIGH/CLEARED once per crossing, OFFLINE once
 *   per silent device, ONLINE when it is back. The loop sleeps until the
 *   client or ciot_alerts_next_deadline() needs it: no polling.
 * - Three simulated sensors publish through their own client: sensor-001
 *   ramps 30 -> 40 -> 30 degrees, sensor-002 flaps around 35, sensor-003
 *   goes silent for a while and comes back.
 *
 * At the end one summary line counts the alerts, and the program checks the
 * counts it can predict (exit status 1 when they are off).
 */
#include "broker.h"

#include <cloudiot/cloudiot.h>
#include <cloudiot/rules.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct gateway {
    ciot_rules *rules;
    ciot_alerts *guide; /* repeat mode, fed by ProcessTemperatureAlert */
    ciot_alerts *edge;  /* edge mode + silence, fed by every message */
    long messages, fired, function_calls, sns, action_errors;
    long guide_alerts, raised, cleared, offline, online;
    int failed;
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- alerts ---- */

static int print_alert(const char *who, const ciot_alert *al)
{
    char doc[512];
    size_t len = 0;
    if (ciot_alert_to_json(doc, sizeof doc, &len, al) != 0)
        return 1;
    printf("  %s alert: %.*s\n", who, (int)len, doc);
    return 0;
}

static int on_guide_alert(ciot_alerts *a, const ciot_alert *al, void *ud)
{
    (void)a;
    struct gateway *g = ud;
    g->guide_alerts++;
    return print_alert("function", al);
}

static int on_edge_alert(ciot_alerts *a, const ciot_alert *al, void *ud)
{
    (void)a;
    struct gateway *g = ud;
    switch (ciot_alert_kind(al)) {
    case CIOT_ALERT_RAISED: g->raised++; break;
    case CIOT_ALERT_CLEARED: g->cleared++; break;
    case CIOT_ALERT_OFFLINE: g->offline++; break;
    case CIOT_ALERT_ONLINE: g->online++; break;
    default: break;
    }
    return print_alert("gateway", al);
}

/* ---- the rule's actions ---- */

/* The guide's Lambda: judges the rule's output (`temperature` is the reading). */
static int process_temperature_alert(ciot_rules *r, const ciot_rules_output *out, void *ud)
{
    (void)r;
    struct gateway *g = ud;
    g->function_calls++;
    size_t len = 0;
    const char *doc = ciot_rules_output_document(out, &len);
    ciot_json_value v;
    char dev[129];
    size_t dlen = 0;
    if (ciot_json_find(doc, len, "deviceId", 8, &v) != 0 ||
        ciot_json_get_string(&v, dev, sizeof dev, &dlen) != 0 || dlen == 0)
        return 0; /* no device id: nothing to judge */
    int rc = ciot_alerts_feed_json(g->guide, dev, dlen, doc, len, ciot_rules_output_timestamp(out));
    if (rc != 0)
        fprintf(stderr, "rules-gateway: %s: %s\n", ciot_err_name(rc), ciot_alerts_errmsg(g->guide));
    return 0;
}

static int sns_notify(ciot_rules *r, const ciot_rules_output *out, void *ud)
{
    (void)r;
    struct gateway *g = ud;
    g->sns++;
    size_t len = 0;
    const char *doc = ciot_rules_output_document(out, &len);
    printf("  sns TemperatureAlerts: %.*s\n", (int)len, doc);
    return 0;
}

static void on_action_error(ciot_rules *r, const char *rule, size_t rule_len, int action, int error,
                            const char *msg, void *ud)
{
    (void)r;
    struct gateway *g = ud;
    g->action_errors++;
    fprintf(stderr, "  rule %.*s action %d: %s: %s\n", (int)rule_len, rule, action,
            ciot_err_name(error), msg);
}

/* ---- the gateway's client ---- */

static int on_message(ciot_client *c, const ciot_event *ev, void *ud)
{
    (void)c;
    struct gateway *g = ud;
    size_t tl = 0, pl = 0;
    const char *topic = ciot_event_topic(ev, &tl);
    const char *payload = ciot_event_payload(ev, &pl);
    g->messages++;
    size_t fired = 0;
    int rc = ciot_rules_process(&fired, g->rules, topic, tl, payload, pl, NULL, 0);
    if (rc != 0)
        fprintf(stderr, "rules-gateway: rules: %s: %s\n", ciot_err_name(rc),
                ciot_rules_errmsg(g->rules));
    g->fired += (long)fired;
    /* sensors/<device>/<metric>: the reading is "value", judged as that metric
     * (HIGH_TEMPERATURE for sensors/x/temperature) */
    const char *d = memchr(topic, '/', tl);
    if (d == NULL)
        return 0;
    d++;
    const char *e = memchr(d, '/', tl - (size_t)(d - topic));
    if (e == NULL)
        return 0;
    size_t dlen = (size_t)(e - d);
    const char *metric = e + 1;
    size_t mlen = tl - (size_t)(metric - topic);
    ciot_json_value v;
    double value;
    if (ciot_json_find(payload, pl, "value", 5, &v) == 0 && ciot_json_get_double(&v, &value) == 0)
        rc = ciot_alerts_feed(g->edge, d, dlen, metric, mlen, value, wall_ms());
    else
        rc = ciot_alerts_seen(g->edge, d, dlen, wall_ms()); /* still alive */
    if (rc != 0)
        fprintf(stderr, "rules-gateway: %.*s: %s: %s\n", (int)dlen, d, ciot_err_name(rc),
                ciot_alerts_errmsg(g->edge));
    return 0;
}

static ciot_client *make_client(const char *host, int port, const char *id)
{
    ciot_config *cfg = NULL;
    ciot_client *c = NULL;
    if (ciot_config_new(&cfg) != 0)
        return NULL;
    int rc = ciot_config_set_str(cfg, CIOT_OPT_HOST, host);
    rc = rc ? rc : ciot_config_set_int(cfg, CIOT_OPT_PORT, port);
    rc = rc ? rc : ciot_config_set_str(cfg, CIOT_OPT_CLIENT_ID, id);
    rc = rc ? rc : ciot_client_new(&c, cfg);
    if (rc != 0)
        fprintf(stderr, "rules-gateway: %s: %s\n", ciot_err_name(rc), ciot_config_errmsg(cfg));
    ciot_config_free(cfg);
    return c;
}

/* ---- the simulated sensors ---- */

static int publish(ciot_client *s, const char *dev, double value, int64_t ts)
{
    char topic[96], msg[256];
    int tl = snprintf(topic, sizeof topic, "sensors/%s/temperature", dev);
    ciot_json_writer w;
    size_t len = 0;
    int rc = ciot_json_writer_init(&w, msg, sizeof msg);
    rc = rc ? rc : ciot_json_begin_object(&w);
    rc = rc ? rc : ciot_json_key(&w, "deviceId", 8);
    rc = rc ? rc : ciot_json_string(&w, dev, strlen(dev));
    rc = rc ? rc : ciot_json_key(&w, "sensorType", 10);
    rc = rc ? rc : ciot_json_string(&w, "DHT22", 5);
    rc = rc ? rc : ciot_json_key(&w, "value", 5);
    rc = rc ? rc : ciot_json_double(&w, value);
    rc = rc ? rc : ciot_json_key(&w, "timestamp", 9);
    rc = rc ? rc : ciot_json_timestamp(&w, ts);
    rc = rc ? rc : ciot_json_end_object(&w);
    rc = rc ? rc : ciot_json_writer_finish(&w, &len);
    return rc ? rc : ciot_client_publish(NULL, s, topic, (size_t)tl, msg, len, 1, 0);
}

/* The whole file (NULL when it cannot be read, or is over 1 MiB: never a
 * silently cut rule). */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap + 1);
    if (buf != NULL)
        n = fread(buf, 1, cap + 1, f);
    int bad = buf == NULL || ferror(f) || n > cap;
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* Drives the gateway's client and ticks the alerts until @p until_ms (wall clock). */
static int drive(ciot_client *gw, struct gateway *g, int64_t until_ms)
{
    for (;;) {
        int64_t now = wall_ms();
        if (ciot_alerts_tick(g->edge, now) != 0)
            return -1;
        if (now >= until_ms)
            return 0;
        int64_t wait = until_ms - now;
        int64_t dl = ciot_alerts_next_deadline(g->edge);
        if (dl != INT64_MAX && dl - now < wait)
            wait = dl > now ? dl - now : 0;
        int rc = ciot_client_run(gw, (int)(wait < 1 ? 1 : wait));
        if (rc != 0) {
            fprintf(stderr, "rules-gateway: %s: %s\n", ciot_err_name(rc), ciot_client_errmsg(gw));
            return -1;
        }
    }
}

int main(int argc, char **argv)
{
    const char *rule_file = "examples/rules/TemperatureAlertRule.json";
    const char *host = NULL;
    int port = 0;
    int64_t silence_ms = 1500;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--rule") == 0 && i + 1 < argc)
            rule_file = argv[++i];
        else if (strcmp(argv[i], "--host") == 0 && i + 1 < argc)
            host = argv[++i];
        else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--silence-ms") == 0 && i + 1 < argc)
            silence_ms = atoll(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--rule FILE] [--host H --port P] [--silence-ms MS]\n",
                    argv[0]);
            return 2;
        }
    }
    printf("libcloudiot %s rules gateway\n", ciot_version_string());

    struct gateway g;
    memset(&g, 0, sizeof g);
    size_t rule_len = 0;
    char *rule = read_file(rule_file, &rule_len);
    if (rule == NULL) {
        fprintf(stderr, "rules-gateway: cannot read %s (or it is over 1 MiB)\n", rule_file);
        return 1;
    }
    int rc = ciot_rules_new(&g.rules);
    rc = rc ? rc : ciot_rules_add_payload(g.rules, "TemperatureAlertRule", 20, rule, rule_len);
    free(rule);
    rc = rc ? rc : ciot_rules_set_function(g.rules, "ProcessTemperatureAlert", 23,
                                           process_temperature_alert, &g);
    rc = rc ? rc : ciot_rules_set_function(g.rules, "TemperatureAlerts", 17, sns_notify, &g);
    if (rc != 0) {
        fprintf(stderr, "rules-gateway: %s: %s\n", ciot_err_name(rc), ciot_rules_errmsg(g.rules));
        return 1;
    }
    ciot_rules_set_error_callback(g.rules, on_action_error, &g);
    rc = ciot_rules_open_sqlite(g.rules, ":memory:");
    if (rc != 0)
        printf("  (no SQLite: %s; the dynamoDBv2 action will report errors)\n", ciot_err_name(rc));
    printf("rule TemperatureAlertRule loaded from %s\n", rule_file);

    rc = ciot_alerts_new(&g.guide, on_guide_alert, &g);
    rc = rc ? rc : ciot_alerts_set_threshold(g.guide, NULL, 0, "temperature", 11, NAN, 35,
                                             "WARNING", 7, CIOT_ALERTS_REPEAT);
    rc = rc ? rc : ciot_alerts_new(&g.edge, on_edge_alert, &g);
    rc = rc ? rc : ciot_alerts_set_threshold(g.edge, NULL, 0, "temperature", 11, NAN, 35,
                                             "WARNING", 7, 1);
    rc = rc ? rc : ciot_alerts_set_silence(g.edge, silence_ms);
    if (rc != 0) {
        fprintf(stderr, "rules-gateway: alerts: %s\n", ciot_err_name(rc));
        return 1;
    }

    test_broker broker;
    memset(&broker, 0, sizeof broker);
    if (host == NULL) {
        test_broker_opts o = {0};
        o.max_queued = -1;
        if (test_broker_start(&broker, &o) != 0)
            return 1;
        host = "127.0.0.1";
        port = broker.port;
        printf("private broker on 127.0.0.1:%d\n", port);
    }
    ciot_client *gw = make_client(host, port, "rules-gateway");
    ciot_client *sensors = make_client(host, port, "simulated-sensors");
    if (gw == NULL || sensors == NULL ||
        ciot_client_subscribe(gw, "sensors/+/+", 11, 1, on_message, &g) != 0 ||
        ciot_client_connect(gw) != 0 || ciot_client_connect(sensors) != 0 ||
        ciot_client_start(sensors) != 0) {
        fprintf(stderr, "rules-gateway: cannot set up the clients\n");
        test_broker_stop(&broker);
        return 1;
    }
    /* connected and subscribed before the sensors speak */
    int64_t t_end = wall_ms() + 10000;
    while (!(ciot_client_is_connected(gw) && ciot_client_is_connected(sensors)) &&
           wall_ms() < t_end)
        (void)drive(gw, &g, wall_ms() + 50);
    (void)drive(gw, &g, wall_ms() + 300);

    /* 20 steps of 100 ms: sensor-001 ramps, sensor-002 flaps, sensor-003 then falls silent */
    const double ramp[20] = {30, 32, 34, 36, 38, 40, 40, 38, 36, 35.5,
                             34.5, 33, 31, 30, 30, 36, 37, 33.5, 33, 30};
    long above = 0;
    for (int i = 0; i < 20; i++) {
        int64_t now = wall_ms();
        double flap = i % 2 ? 35.2 : 34.8;
        rc = publish(sensors, "sensor-001", ramp[i], now);
        rc = rc ? rc : publish(sensors, "sensor-002", flap, now);
        if (i < 3)
            rc = rc ? rc : publish(sensors, "sensor-003", 25, now);
        if (rc != 0)
            break;
        above += (ramp[i] > 35) + (flap > 35);
        (void)drive(gw, &g, now + 100);
    }
    /* everybody silent long enough, then sensor-003 back */
    (void)drive(gw, &g, wall_ms() + silence_ms + 300);
    rc = rc ? rc : publish(sensors, "sensor-003", 26, wall_ms());
    (void)drive(gw, &g, wall_ms() + 500);

    printf("summary: messages %ld, rule fired %ld (ProcessTemperatureAlert %ld, sns %ld, "
           "action errors %ld); function alerts %ld; gateway alerts: HIGH %ld, CLEARED %ld, "
           "OFFLINE %ld, ONLINE %ld\n",
           g.messages, g.fired, g.function_calls, g.sns, g.action_errors, g.guide_alerts, g.raised,
           g.cleared, g.offline, g.online);

    /* what the scenario must give */
    long expect_msgs = 20 * 2 + 3 + 1;
    int ok = rc == 0 && g.messages == expect_msgs && g.fired == above &&
             g.function_calls == above && g.guide_alerts == above && g.sns == above &&
             g.offline == 3 && g.online == 1 &&
             g.raised == 2 + 1 /* sensor-001 twice, sensor-002 once (hysteresis) */ &&
             g.cleared == 2;
    if (!ok)
        fprintf(stderr, "rules-gateway: unexpected counts (rc %d, expected %ld messages, %ld "
                        "readings above 35)\n", rc, expect_msgs, above);

    if (ciot_client_stop(sensors) != 0 || ciot_client_disconnect(gw) != 0)
        fprintf(stderr, "rules-gateway: stopping the clients failed\n");
    (void)ciot_client_free(sensors);
    (void)ciot_client_free(gw);
    (void)ciot_rules_free(g.rules);
    (void)ciot_alerts_free(g.guide);
    (void)ciot_alerts_free(g.edge);
    test_broker_stop(&broker);
    return ok ? 0 : 1;
}
