/* A rule set attached to a client (ciot_rules_attach(), lib/services/rules_client.c)
 * against a real mosquitto: the guide's temperature rule on a gateway, rules
 * added and removed while attached, overlapping filters, a broker restart,
 * detaching and freeing in both orders, callback errors. */
#include "client/service.h"
#include "harness.h"
#include "tclient.h"

#include <cloudiot/rules.h>

#define S(lit) (lit), (sizeof(lit) - 1)

static test_broker broker;

static void start_plain(void)
{
    test_broker_opts o = {.max_queued = -1};
    cr_assert_eq(test_broker_start(&broker, &o), 0, "the broker fixture did not start");
}

static void stop_broker(void)
{
    test_broker_stop(&broker);
}

TestSuite(rules_client, .init = start_plain, .fini = stop_broker, .timeout = 120);

#define SEED_SQL                                                                                   \
    "SELECT deviceId, sensorType, value as temperature, timestamp, 'HIGH_TEMPERATURE' as "        \
    "alertType FROM 'sensors/+/temperature' WHERE value > 35"

/* What a function action saw (the set's callbacks run on the test thread,
 * which drives the client). */
typedef struct rec {
    int calls;
    int ret; /* returned by the function */
    char doc[512];
    char topic[128];
    char fn[64];
    ciot_rules *detach_me; /* detached from inside the callback */
    int detach_rc;
    int free_rc;
} rec;

static int on_fn(ciot_rules *r, const ciot_rules_output *o, void *ud)
{
    rec *x = ud;
    size_t n;
    const char *d = ciot_rules_output_document(o, &n);
    snprintf(x->doc, sizeof x->doc, "%.*s", (int)n, d);
    d = ciot_rules_output_topic(o, &n);
    snprintf(x->topic, sizeof x->topic, "%.*s", (int)n, d);
    d = ciot_rules_output_function(o, &n);
    snprintf(x->fn, sizeof x->fn, "%.*s", (int)n, d);
    x->calls++;
    if (x->detach_me) {
        x->free_rc = ciot_rules_free(r);
        x->detach_rc = ciot_rules_detach(x->detach_me);
        x->detach_me = NULL;
    }
    return x->ret;
}

typedef struct errs {
    int n;
    int last;
    char msg[256];
} errs;

static void on_err(ciot_rules *r, const char *rule, size_t rule_len, int action, int error,
                   const char *msg, void *ud)
{
    (void)r;
    (void)rule;
    (void)rule_len;
    (void)action;
    errs *e = ud;
    e->n++;
    e->last = error;
    snprintf(e->msg, sizeof e->msg, "%s", msg);
}

static ciot_client *gateway(const char *id, h_events *ev, int protocol)
{
    ciot_config *cfg = h_config(&broker, id);
    if (protocol == 5)
        cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PROTOCOL, 5), 0);
    ciot_client *c = h_client(cfg, ev);
    ciot_config_free(cfg);
    cr_assert_eq(ciot_client_connect(c), 0);
    cr_assert(h_run_until(c, h_is_connected, c, 5000), "no CONNACK: %s", ciot_client_errmsg(c));
    return c;
}

static tclient *device(const char *id, int version)
{
    tclient *t = tc_new_v(version, id, NULL, NULL, NULL, NULL, NULL);
    cr_assert_not_null(t);
    cr_assert_eq(tc_connect(t, broker.port), 0, "%s did not connect", id);
    return t;
}

/* ---- predicates for h_run_until ---- */

struct fstate {
    ciot_client *c;
    const char *filter;
    int want;
};

static bool filter_state_is(void *arg)
{
    struct fstate *f = arg;
    return ciot__client_filter_state(f->c, f->filter, strlen(f->filter)) == f->want;
}

static void wait_filter(ciot_client *c, const char *filter, int want)
{
    struct fstate f = {c, filter, want};
    cr_assert(h_run_until(c, filter_state_is, &f, 5000), "filter %s: state %d, wanted %d", filter,
              ciot__client_filter_state(c, filter, strlen(filter)), want);
}

struct calls_at_least {
    rec *r;
    int n;
};

static bool calls_reached(void *arg)
{
    struct calls_at_least *a = arg;
    return a->r->calls >= a->n;
}

static void run_until_calls(ciot_client *c, rec *r, int n)
{
    struct calls_at_least a = {r, n};
    cr_assert(h_run_until(c, calls_reached, &a, 5000), "%d calls, wanted %d", r->calls, n);
}

struct tc_at_least {
    tclient *t;
    const char *prefix;
    int n;
};

static bool tc_reached(void *arg)
{
    struct tc_at_least *a = arg;
    return tc_count(a->t, a->prefix) >= a->n;
}

/* Drives @p c for @p ms (messages still on their way arrive). */
static void settle(ciot_client *c, int ms)
{
    uint64_t end = h_now_ms() + (uint64_t)ms;
    while (h_now_ms() < end) {
        int rc = ciot_client_run(c, 10);
        cr_assert(rc == 0 || rc == CIOT_EUSER, "%s", ciot_err_name(rc));
    }
}

static void reading(tclient *dev, const char *id, const char *sensor, const char *value)
{
    char topic[128], payload[256];
    snprintf(topic, sizeof topic, "sensors/%s/%s", id, sensor);
    snprintf(payload, sizeof payload,
             "{\"deviceId\":\"%s\",\"sensorType\":\"%s\",\"value\":%s,\"timestamp\":1700000000}", id,
             sensor, value);
    cr_assert_eq(tc_pub(dev, topic, payload, 1), 0);
}

/* The seed rule with a republish to alerts/${topic(2)} and the function
 * ProcessTemperatureAlert. */
static ciot_rules *seed_rules(rec *fn, errs *e)
{
    ciot_rules *r;
    cr_assert_eq(ciot_rules_new(&r), 0);
    int rc = ciot_rules_add_sql(r, S("TemperatureAlertRule"), S(SEED_SQL));
    cr_assert_eq(rc, 0, "%s: %s", ciot_err_name(rc), ciot_rules_errmsg(r));
    cr_assert_eq(ciot_rules_add_republish_action(r, S("TemperatureAlertRule"), S("alerts/${topic(2)}"), 1),
                 0, "%s", ciot_rules_errmsg(r));
    cr_assert_eq(ciot_rules_set_function(r, S("ProcessTemperatureAlert"), on_fn, fn), 0);
    cr_assert_eq(ciot_rules_add_function_action(r, S("TemperatureAlertRule"), S("ProcessTemperatureAlert")),
                 0);
    ciot_rules_set_error_callback(r, on_err, e);
    return r;
}

/* ---- the guide's rule on a gateway ---- */

Test(rules_client, seed_rule_on_a_gateway_republishes_alerts_only_above_35)
{
    h_events ev;
    h_events_init(&ev);
    rec fn = {0};
    errs e = {0};
    ciot_rules *r = seed_rules(&fn, &e);
    ciot_client *gw = gateway("rc-gw-seed", &ev, 4);
    cr_assert_eq(ciot_rules_attach(r, gw, 1), 0);
    wait_filter(gw, "sensors/+/temperature", 1);

    tclient *sub = device("rc-sub-seed", 4);
    cr_assert_eq(tc_sub(sub, "alerts/#", 1), 1);
    tclient *dev = device("rc-dev-seed", 4);
    const char *values[][2] = {{"d1", "30"}, {"d2", "36"}, {"d3", "35"},
                               {"d4", "35.5"}, {"d5", "-40"}, {"d6", "100"}};
    for (size_t i = 0; i < 6; i++)
        reading(dev, values[i][0], "temperature", values[i][1]);
    reading(dev, "d7", "humidity", "99"); /* another sensor: not this rule's */
    struct tc_at_least want = {sub, "alerts/", 3};
    cr_assert(h_run_until(gw, tc_reached, &want, 5000), "alerts seen: %d", tc_count(sub, "alerts/"));
    settle(gw, 300);
    cr_assert_eq(tc_count(sub, "alerts/"), 3, "alerts for values > 35 only");
    cr_assert_eq(fn.calls, 3);
    cr_assert_str_eq(fn.fn, "ProcessTemperatureAlert");
    cr_assert_str_eq(fn.topic, "sensors/d6/temperature");

    tc_msg *m = tc_wait(sub, "alerts/d2", 100);
    cr_assert_not_null(m, "no alert for d2");
    cr_assert(strstr(m->payload, "\"deviceId\":\"d2\"") && strstr(m->payload, "\"temperature\":36") &&
                  strstr(m->payload, "\"alertType\":\"HIGH_TEMPERATURE\"") &&
                  strstr(m->payload, "\"sensorType\":\"temperature\"") &&
                  strstr(m->payload, "\"timestamp\":1700000000"),
              "%s", m->payload);
    cr_assert_eq(m->qos, 1);
    tc_msg_free(m);
    m = tc_wait(sub, "alerts/d4", 100);
    cr_assert_not_null(m, "no alert for d4 (35.5)");
    tc_msg_free(m);
    m = tc_wait(sub, "alerts/d6", 100);
    cr_assert_not_null(m, "no alert for d6");
    cr_assert_str_eq(m->payload, fn.doc, "the function sees the document that was republished");
    tc_msg_free(m);
    cr_assert_eq(e.n, 0, "action errors: %s", e.msg);
    cr_assert_eq(ev.messages, 0, "every message was handled by the rule set");

    cr_assert_eq(ciot_rules_detach(r), 0);
    tc_free(dev);
    tc_free(sub);
    cr_assert_eq(ciot_client_free(gw), 0);
    cr_assert_eq(ciot_rules_free(r), 0);
}

/* ---- following the set ---- */

Test(rules_client, rules_added_removed_enabled_and_disabled_while_attached)
{
    h_events ev;
    h_events_init(&ev);
    rec fn = {0}, hum = {0};
    errs e = {0};
    ciot_rules *r = seed_rules(&fn, &e);
    /* added before attaching, disabled: not subscribed */
    cr_assert_eq(ciot_rules_add_sql(r, S("Pressure"), S("SELECT * FROM 'sensors/+/pressure'")), 0);
    cr_assert_eq(ciot_rules_enable(r, S("Pressure"), false), 0);
    ciot_client *gw = gateway("rc-gw-follow", &ev, 4);
    cr_assert_eq(ciot_rules_attach(r, gw, 1), 0);
    wait_filter(gw, "sensors/+/temperature", 1);
    cr_assert_eq(ciot__client_filter_state(gw, S("sensors/+/pressure")), -2);

    /* a rule added after attaching starts receiving */
    cr_assert_eq(ciot_rules_add_sql(r, S("Humidity"), S("SELECT VALUE value FROM 'sensors/+/humidity'")), 0);
    cr_assert_eq(ciot_rules_set_function(r, S("hum"), on_fn, &hum), 0);
    cr_assert_eq(ciot_rules_add_function_action(r, S("Humidity"), S("hum")), 0);
    wait_filter(gw, "sensors/+/humidity", 1);
    tclient *dev = device("rc-dev-follow", 4);
    reading(dev, "d1", "humidity", "55");
    run_until_calls(gw, &hum, 1);
    cr_assert_str_eq(hum.doc, "55");

    /* removed: unsubscribed, so its messages no longer even reach the gateway */
    cr_assert_eq(ciot_rules_remove(r, S("Humidity")), 0);
    wait_filter(gw, "sensors/+/humidity", -2);
    settle(gw, 100); /* the UNSUBACK */
    reading(dev, "d1", "humidity", "56");
    reading(dev, "d1", "temperature", "40"); /* after it, from the same publisher */
    run_until_calls(gw, &fn, 1);
    settle(gw, 200);
    cr_assert_eq(hum.calls, 1);
    cr_assert_eq(ev.messages, 0, "the broker still sent the removed rule's topic");

    /* disabled: unsubscribed; enabled again: subscribed */
    cr_assert_eq(ciot_rules_enable(r, S("TemperatureAlertRule"), false), 0);
    wait_filter(gw, "sensors/+/temperature", -2);
    cr_assert_eq(ciot_rules_enable(r, S("Pressure"), true), 0);
    wait_filter(gw, "sensors/+/pressure", 1);
    cr_assert_eq(ciot_rules_enable(r, S("TemperatureAlertRule"), true), 0);
    wait_filter(gw, "sensors/+/temperature", 1);
    reading(dev, "d2", "temperature", "41");
    run_until_calls(gw, &fn, 2);
    cr_assert_str_eq(fn.topic, "sensors/d2/temperature");

    /* a filter shared by two rules stays while one of them uses it */
    cr_assert_eq(ciot_rules_add_sql(r, S("Also"), S("SELECT * FROM 'sensors/+/temperature' WHERE value > 1000")), 0);
    cr_assert_eq(ciot_rules_remove(r, S("TemperatureAlertRule")), 0);
    settle(gw, 100);
    cr_assert_eq(ciot__client_filter_state(gw, S("sensors/+/temperature")), 1);
    cr_assert_eq(ciot_rules_remove(r, S("Also")), 0);
    wait_filter(gw, "sensors/+/temperature", -2);
    cr_assert_eq(e.n, 0, "%s", e.msg);

    tc_free(dev);
    cr_assert_eq(ciot_rules_free(r), 0, "freed while attached");
    cr_assert_eq(ciot__client_filter_state(gw, S("sensors/+/pressure")), -2, "freeing unsubscribes");
    cr_assert_eq(ciot_client_free(gw), 0);
}

/* ---- overlapping filters: each message processed once ---- */

static void overlapping(int protocol)
{
    h_events ev;
    h_events_init(&ev);
    errs e = {0};
    rec a = {0}, b = {0}, c = {0}, d = {0}, x = {0};
    ciot_rules *r;
    cr_assert_eq(ciot_rules_new(&r), 0);
    ciot_rules_set_error_callback(r, on_err, &e);
    struct {
        const char *name, *sql;
        rec *fn;
    } rules[] = {
        {"A", "SELECT VALUE value FROM 'sensors/+/temperature'", &a},
        {"B", "SELECT VALUE value FROM 'sensors/#'", &b},
        /* these two overlap without one covering the other */
        {"C", "SELECT VALUE value FROM 'rooms/+/temperature'", &c},
        {"D", "SELECT VALUE value FROM 'rooms/kitchen/#'", &d},
        {"X", "SELECT VALUE value FROM 'rooms/kitchen/temperature'", &x},
    };
    for (size_t i = 0; i < 5; i++) {
        int rc = ciot_rules_add_sql(r, rules[i].name, strlen(rules[i].name), rules[i].sql,
                                    strlen(rules[i].sql));
        cr_assert_eq(rc, 0, "%s", ciot_rules_errmsg(r));
        cr_assert_eq(ciot_rules_set_function(r, rules[i].name, 1, on_fn, rules[i].fn), 0);
        cr_assert_eq(ciot_rules_add_function_action(r, rules[i].name, 1, rules[i].name, 1), 0);
    }
    char id[32];
    snprintf(id, sizeof id, "rc-gw-overlap%d", protocol);
    ciot_client *gw = gateway(id, &ev, protocol);
    cr_assert_eq(ciot_rules_attach(r, gw, 1), 0);
    wait_filter(gw, "sensors/#", 1);
    wait_filter(gw, "rooms/+/#", 1);
    cr_assert_eq(ciot__client_filter_state(gw, S("sensors/+/temperature")), -2, "covered by sensors/#");
    cr_assert_eq(ciot__client_filter_state(gw, S("rooms/kitchen/#")), -2);

    snprintf(id, sizeof id, "rc-dev-overlap%d", protocol);
    tclient *dev = device(id, protocol == 5 ? 5 : 4);
    /* The broker does send a copy per subscription with this protocol, or not. */
    snprintf(id, sizeof id, "rc-raw-overlap%d", protocol);
    tclient *raw = device(id, protocol == 5 ? 5 : 4);
    cr_assert_eq(tc_sub(raw, "sensors/#", 1), 1);
    cr_assert_eq(tc_sub(raw, "sensors/+/temperature", 1), 1);

    for (int i = 0; i < 5; i++) {
        char dn[8];
        snprintf(dn, sizeof dn, "d%d", i);
        reading(dev, dn, "temperature", "20");
    }
    reading(dev, "d9", "humidity", "20"); /* B only */
    cr_assert_eq(tc_pub(dev, "rooms/kitchen/temperature", "{\"value\":1}", 1), 0); /* C, D, X */
    cr_assert_eq(tc_pub(dev, "rooms/hall/temperature", "{\"value\":2}", 1), 0);    /* C */
    cr_assert_eq(tc_pub(dev, "rooms/kitchen/humidity", "{\"value\":3}", 1), 0);    /* D */
    cr_assert_eq(tc_pub(dev, "rooms/hall/humidity", "{\"value\":4}", 1), 0); /* none: only the cover */
    run_until_calls(gw, &b, 6);
    run_until_calls(gw, &d, 2);
    settle(gw, 300);
    cr_assert_eq(a.calls, 5, "protocol %d: A fired %d times", protocol, a.calls);
    cr_assert_eq(b.calls, 6, "protocol %d: B fired %d times", protocol, b.calls);
    cr_assert_eq(c.calls, 2, "protocol %d: C fired %d times", protocol, c.calls);
    cr_assert_eq(d.calls, 2, "protocol %d: D fired %d times", protocol, d.calls);
    cr_assert_eq(x.calls, 1, "protocol %d: X fired %d times", protocol, x.calls);
    cr_assert_eq(e.n, 0, "%s", e.msg);
    cr_assert_eq(ev.messages, 0);
    int copies = tc_count(raw, "sensors/d0/temperature");
    cr_assert_eq(copies, protocol == 5 ? 2 : 1,
                 "mosquitto 2.0 sends %d copies to a plain client with protocol %d", copies, protocol);

    tc_free(raw);
    tc_free(dev);
    cr_assert_eq(ciot_client_free(gw), 0, "freed while attached");
    cr_assert_eq(ciot_rules_detach(r), CIOT_ESTATE, "the client's end detached the set");
    cr_assert_eq(ciot_rules_free(r), 0);
}

Test(rules_client, overlapping_filters_process_each_message_once_mqtt311)
{
    overlapping(4);
}

Test(rules_client, overlapping_filters_process_each_message_once_mqtt5)
{
    overlapping(5);
}

/* ---- a broker restart ---- */

static bool connected_twice_and_subscribed(void *arg)
{
    h_events *ev = arg;
    pthread_mutex_lock(&ev->lock);
    bool ok = ev->connected >= 2 && ev->subscribed >= 2;
    pthread_mutex_unlock(&ev->lock);
    return ok;
}

Test(rules_client, subscriptions_come_back_after_a_broker_restart)
{
    h_events ev;
    h_events_init(&ev);
    rec fn = {0};
    errs e = {0};
    ciot_rules *r = seed_rules(&fn, &e);
    ciot_client *gw = gateway("rc-gw-restart", &ev, 4);
    cr_assert_eq(ciot_rules_attach(r, gw, 1), 0);
    wait_filter(gw, "sensors/+/temperature", 1);
    tclient *dev = device("rc-dev-restart1", 4);
    reading(dev, "d1", "temperature", "50");
    run_until_calls(gw, &fn, 1);
    tc_free(dev);

    cr_assert_eq(test_broker_kill9(&broker), 0);
    cr_assert_eq(test_broker_restart(&broker), 0);
    cr_assert(h_run_until(gw, connected_twice_and_subscribed, &ev, 10000),
              "connected %d, subscribed %d: %s", ev.connected, ev.subscribed, ev.error_text);
    wait_filter(gw, "sensors/+/temperature", 1);

    tclient *sub = device("rc-sub-restart", 4);
    cr_assert_eq(tc_sub(sub, "alerts/#", 1), 1);
    dev = device("rc-dev-restart2", 4);
    reading(dev, "d2", "temperature", "51");
    struct tc_at_least want = {sub, "alerts/d2", 1};
    cr_assert(h_run_until(gw, tc_reached, &want, 5000), "no alert after the restart");
    cr_assert_eq(fn.calls, 2);
    cr_assert_eq(e.n, 0, "%s", e.msg);
    tc_free(dev);
    tc_free(sub);
    cr_assert_eq(ciot_rules_free(r), 0);
    cr_assert_eq(ciot_client_free(gw), 0);
}

/* ---- detaching ---- */

Test(rules_client, detach_unsubscribes_and_takes_the_publisher_away)
{
    h_events ev;
    h_events_init(&ev);
    rec fn = {0};
    errs e = {0};
    ciot_rules *r = seed_rules(&fn, &e);
    ciot_client *gw = gateway("rc-gw-detach", &ev, 4);
    cr_assert_eq(ciot_rules_attach(r, gw, 0), 0, "QoS 0");
    wait_filter(gw, "sensors/+/temperature", 1);
    cr_assert_eq(ciot_rules_detach(r), 0);
    cr_assert_eq(ciot__client_filter_state(gw, S("sensors/+/temperature")), -2);
    cr_assert_eq(ciot_rules_detach(r), CIOT_ESTATE);
    settle(gw, 100);

    tclient *dev = device("rc-dev-detach", 4);
    reading(dev, "d1", "temperature", "60");
    settle(gw, 300);
    cr_assert_eq(fn.calls, 0, "detached: nothing processed");
    cr_assert_eq(ev.messages, 0, "detached: nothing delivered");

    /* the set still works on its own, without a publisher for republish */
    size_t fired = 0;
    const char *p = "{\"value\":70}";
    cr_assert_eq(ciot_rules_process(&fired, r, S("sensors/d1/temperature"), p, strlen(p), NULL, 0), 0);
    cr_assert_eq(fired, 1);
    cr_assert_eq(fn.calls, 1);
    cr_assert_eq(e.n, 1, "the republish action had no publisher");

    /* and attaches again */
    cr_assert_eq(ciot_rules_attach(r, gw, 1), 0);
    wait_filter(gw, "sensors/+/temperature", 1);
    reading(dev, "d1", "temperature", "61");
    run_until_calls(gw, &fn, 2);
    cr_assert_eq(e.n, 1, "%s", e.msg);
    tc_free(dev);
    cr_assert_eq(ciot_client_free(gw), 0);
    cr_assert_eq(ciot_rules_free(r), 0);
}

Test(rules_client, detach_from_inside_a_rule_callback)
{
    h_events ev;
    h_events_init(&ev);
    rec fn = {0};
    errs e = {0};
    ciot_rules *r = seed_rules(&fn, &e);
    ciot_client *gw = gateway("rc-gw-detach-cb", &ev, 4);
    cr_assert_eq(ciot_rules_attach(r, gw, 1), 0);
    wait_filter(gw, "sensors/+/temperature", 1);
    fn.detach_me = r;
    tclient *dev = device("rc-dev-detach-cb", 4);
    reading(dev, "d1", "temperature", "60");
    run_until_calls(gw, &fn, 1);
    cr_assert_eq(fn.free_rc, CIOT_ERECURSIVE, "freeing the set from its own callback is refused");
    cr_assert_eq(fn.detach_rc, 0);
    cr_assert_eq(ciot__client_filter_state(gw, S("sensors/+/temperature")), -2);
    settle(gw, 100);
    reading(dev, "d1", "temperature", "61");
    settle(gw, 300);
    cr_assert_eq(fn.calls, 1);
    cr_assert_eq(ciot_rules_attach(r, gw, 1), 0, "attaches again");
    tc_free(dev);
    cr_assert_eq(ciot_rules_free(r), 0);
    cr_assert_eq(ciot_client_free(gw), 0);
}

/* The event callback frees the set on the first PUBLISH_ACKED, i.e. from
 * inside one of the client's callbacks. */
struct free_in_event {
    h_events ev;
    ciot_rules *r;
    int rc;
};

static int free_on_ack(ciot_client *c, const ciot_event *e, void *ud)
{
    struct free_in_event *f = ud;
    if (f->r && ciot_event_type_of(e) == CIOT_EVENT_PUBLISH_ACKED) {
        f->rc = ciot_rules_free(f->r);
        f->r = NULL;
    }
    return h_on_event(c, e, &f->ev);
}

static bool set_freed(void *arg)
{
    return ((struct free_in_event *)arg)->r == NULL;
}

Test(rules_client, set_freed_from_a_client_callback)
{
    struct free_in_event f = {.rc = -1};
    h_events_init(&f.ev);
    rec fn = {0};
    errs e = {0};
    f.r = seed_rules(&fn, &e);
    ciot_client *gw = gateway("rc-gw-free-cb", NULL, 4);
    ciot_client_set_event_callback(gw, free_on_ack, &f);
    cr_assert_eq(ciot_rules_attach(f.r, gw, 1), 0);
    wait_filter(gw, "sensors/+/temperature", 1);
    cr_assert_eq(ciot_client_publish(NULL, gw, S("other"), "x", 1, 1, 0), 0);
    cr_assert(h_run_until(gw, set_freed, &f, 5000));
    cr_assert_eq(f.rc, 0);
    cr_assert_eq(ciot__client_filter_state(gw, S("sensors/+/temperature")), -2);
    settle(gw, 100); /* the attachment's leftovers are freed by the client's loop */
    cr_assert_eq(ciot_client_free(gw), 0);
}

Test(rules_client, set_freed_from_a_client_callback_then_client_freed_at_once)
{
    struct free_in_event f = {.rc = -1};
    h_events_init(&f.ev);
    rec fn = {0};
    errs e = {0};
    f.r = seed_rules(&fn, &e);
    ciot_client *gw = gateway("rc-gw-free-cb2", NULL, 4);
    ciot_client_set_event_callback(gw, free_on_ack, &f);
    cr_assert_eq(ciot_rules_attach(f.r, gw, 1), 0);
    cr_assert_eq(ciot_client_publish(NULL, gw, S("other"), "x", 1, 1, 0), 0);
    cr_assert(h_run_until(gw, set_freed, &f, 5000));
    cr_assert_eq(ciot_client_free(gw), 0, "frees what the set left behind");
}

/* ---- freeing the client first ---- */

Test(rules_client, client_freed_first_leaves_the_set_usable)
{
    h_events ev;
    h_events_init(&ev);
    rec fn = {0};
    errs e = {0};
    ciot_rules *r = seed_rules(&fn, &e);
    ciot_client *gw = gateway("rc-gw-cfree", &ev, 4);
    cr_assert_eq(ciot_rules_attach(r, gw, 1), 0);
    wait_filter(gw, "sensors/+/temperature", 1);
    cr_assert_eq(ciot_client_free(gw), 0);
    cr_assert_eq(ciot_rules_detach(r), CIOT_ESTATE, "detached by the client's end");
    /* rules can still change (no hook into the freed client) */
    cr_assert_eq(ciot_rules_add_sql(r, S("More"), S("SELECT * FROM 'more/#'")), 0);
    size_t fired = 0;
    cr_assert_eq(ciot_rules_process(&fired, r, S("sensors/d1/temperature"), S("{\"value\":99}"), NULL, 0), 0);
    cr_assert_eq(fired, 1);
    cr_assert_eq(e.n, 1, "no publisher any more");

    /* onto another client */
    h_events ev2;
    h_events_init(&ev2);
    ciot_client *gw2 = gateway("rc-gw-cfree2", &ev2, 4);
    cr_assert_eq(ciot_rules_attach(r, gw2, 1), 0);
    wait_filter(gw2, "sensors/+/temperature", 1);
    wait_filter(gw2, "more/#", 1);
    tclient *sub = device("rc-sub-cfree", 4);
    cr_assert_eq(tc_sub(sub, "alerts/#", 1), 1);
    tclient *dev = device("rc-dev-cfree", 4);
    reading(dev, "d3", "temperature", "45");
    struct tc_at_least want = {sub, "alerts/d3", 1};
    cr_assert(h_run_until(gw2, tc_reached, &want, 5000), "no alert through the second client");
    tc_free(dev);
    tc_free(sub);
    cr_assert_eq(ciot_rules_free(r), 0);
    cr_assert_eq(ciot_client_free(gw2), 0);
}

/* ---- callback errors ---- */

Test(rules_client, a_function_returning_non_zero_makes_process_report_euser)
{
    h_events ev;
    h_events_init(&ev);
    rec fn = {.ret = 7};
    errs e = {0};
    ciot_rules *r = seed_rules(&fn, &e);
    ciot_client *gw = gateway("rc-gw-euser", &ev, 4);
    cr_assert_eq(ciot_rules_attach(r, gw, 1), 0);
    wait_filter(gw, "sensors/+/temperature", 1);
    tclient *dev = device("rc-dev-euser", 4);
    reading(dev, "d1", "temperature", "20"); /* does not fire */
    reading(dev, "d1", "temperature", "80");
    int rc = 0;
    for (uint64_t end = h_now_ms() + 5000; h_now_ms() < end && rc == 0;)
        rc = ciot_client_run(gw, 10);
    cr_assert_eq(rc, CIOT_EUSER, "%s", ciot_err_name(rc));
    cr_assert_eq(fn.calls, 1);
    /* the next call starts clean */
    fn.ret = 0;
    reading(dev, "d2", "temperature", "81");
    for (uint64_t end = h_now_ms() + 5000; h_now_ms() < end && fn.calls < 2;)
        cr_assert_eq(ciot_client_run(gw, 10), 0);
    cr_assert_eq(fn.calls, 2);
    tc_free(dev);
    cr_assert_eq(ciot_rules_free(r), 0);
    cr_assert_eq(ciot_client_free(gw), 0);
}

/* ---- bad calls (no connection needed) ---- */

Test(rules_client, bad_calls_get_clear_errors)
{
    ciot_rules *r, *r2;
    cr_assert_eq(ciot_rules_new(&r), 0);
    cr_assert_eq(ciot_rules_new(&r2), 0);
    ciot_config *cfg = h_config(&broker, "rc-args");
    ciot_client *c = h_client(cfg, NULL), *c2 = h_client(cfg, NULL);
    ciot_config_free(cfg);
    cr_assert_eq(ciot_rules_attach(NULL, c, 1), CIOT_EINVAL);
    cr_assert_eq(ciot_rules_attach(r, NULL, 1), CIOT_EINVAL);
    cr_assert_eq(ciot_rules_attach(r, c, 2), CIOT_EINVAL, "QoS 2");
    cr_assert_eq(ciot_rules_attach(r, c, -1), CIOT_EINVAL);
    cr_assert_eq(ciot_rules_detach(NULL), CIOT_EINVAL);
    cr_assert_eq(ciot_rules_detach(r), CIOT_ESTATE, "not attached");
    cr_assert_eq(ciot_rules_attach(r, c, 1), 0, "an empty set attaches (nothing to subscribe)");
    cr_assert_eq(ciot_rules_attach(r, c, 1), CIOT_EBUSY);
    cr_assert_eq(ciot_rules_attach(r, c2, 1), CIOT_EBUSY, "attached to another client");
    cr_assert_eq(ciot_rules_attach(r2, c, 0), 0, "two sets on one client");
    cr_assert_eq(ciot_rules_add_sql(r, S("T"), S("SELECT * FROM 't/#'")), 0);
    cr_assert_eq(ciot_rules_add_sql(r2, S("T"), S("SELECT * FROM 't/#'")), 0);
    /* not connected: the subscriptions wait (0) */
    settle(c, 20);
    cr_assert_eq(ciot__client_filter_state(c, S("t/#")), 0);
    cr_assert_eq(ciot_rules_detach(r), 0);
    cr_assert_eq(ciot__client_filter_state(c, S("t/#")), 0, "the other set still uses it");
    cr_assert_eq(ciot_rules_detach(r2), 0);
    cr_assert_eq(ciot__client_filter_state(c, S("t/#")), -2);
    cr_assert_eq(ciot_rules_attach(r, c2, 1), 0);
    cr_assert_eq(ciot_rules_free(r), 0);
    cr_assert_eq(ciot_rules_free(r2), 0);
    cr_assert_eq(ciot_client_free(c), 0);
    cr_assert_eq(ciot_client_free(c2), 0);
}

/* ---- many rules ---- */

Test(rules_client, a_thousand_rules_added_while_attached_make_one_subscription_each_way)
{
    h_events ev;
    h_events_init(&ev);
    rec fn = {0};
    errs e = {0};
    ciot_rules *r;
    cr_assert_eq(ciot_rules_new(&r), 0);
    ciot_rules_set_error_callback(r, on_err, &e);
    cr_assert_eq(ciot_rules_set_function(r, S("f"), on_fn, &fn), 0);
    ciot_client *gw = gateway("rc-gw-many", &ev, 4);
    cr_assert_eq(ciot_rules_attach(r, gw, 1), 0);
    long n = h_scaled(1000, 50);
    for (long i = 0; i < n; i++) {
        char name[32], sql[128];
        int nl = snprintf(name, sizeof name, "r%ld", i);
        int sl = snprintf(sql, sizeof sql, "SELECT VALUE value FROM 'fleet/%ld/temperature'", i);
        cr_assert_eq(ciot_rules_add_sql(r, name, (size_t)nl, sql, (size_t)sl), 0, "%s", ciot_rules_errmsg(r));
        cr_assert_eq(ciot_rules_add_function_action(r, name, (size_t)nl, S("f")), 0);
    }
    /* one filter per rule, applied in one go on the next loop turn */
    wait_filter(gw, "fleet/7/temperature", 1);
    char last[64];
    snprintf(last, sizeof last, "fleet/%ld/temperature", n - 1);
    wait_filter(gw, last, 1);
    /* two rules on a filter that covers them all: one subscription is left */
    cr_assert_eq(ciot_rules_add_sql(r, S("all1"), S("SELECT VALUE value FROM 'fleet/+/temperature'")), 0);
    cr_assert_eq(ciot_rules_add_function_action(r, S("all1"), S("f")), 0);
    cr_assert_eq(ciot_rules_add_sql(r, S("all2"), S("SELECT VALUE value FROM 'fleet/+/temperature'")), 0);
    cr_assert_eq(ciot_rules_add_function_action(r, S("all2"), S("f")), 0);
    wait_filter(gw, "fleet/+/temperature", 1);
    cr_assert_eq(ciot__client_filter_state(gw, S("fleet/7/temperature")), -2);
    cr_assert_eq(ciot__client_filter_state(gw, last, strlen(last)), -2);
    settle(gw, 100);
    tclient *dev = device("rc-dev-many", 4);
    cr_assert_eq(tc_pub(dev, "fleet/7/temperature", "{\"value\":7}", 1), 0);
    run_until_calls(gw, &fn, 3);
    settle(gw, 200);
    cr_assert_eq(fn.calls, 3, "the rule of fleet/7 and the two of fleet/+");
    cr_assert_eq(e.n, 0, "%s", e.msg);
    /* the covering rules go: the thousand filters come back */
    cr_assert_eq(ciot_rules_remove(r, S("all1")), 0);
    cr_assert_eq(ciot_rules_remove(r, S("all2")), 0);
    wait_filter(gw, "fleet/+/temperature", -2);
    cr_assert_eq(ciot__client_filter_state(gw, S("fleet/7/temperature")), 0, "subscribing again");
    wait_filter(gw, "fleet/7/temperature", 1);
    tc_free(dev);
    cr_assert_eq(ciot_rules_free(r), 0);
    cr_assert_eq(ciot_client_free(gw), 0);
}

/* ---- the client's own thread ---- */

Test(rules_client, works_when_the_client_drives_itself)
{
    rec fn = {0};
    errs e = {0};
    ciot_rules *r = seed_rules(&fn, &e);
    ciot_config *cfg = h_config(&broker, "rc-gw-thread");
    ciot_client *gw = h_client(cfg, NULL);
    ciot_config_free(cfg);
    cr_assert_eq(ciot_rules_attach(r, gw, 1), 0, "attached before the client runs");
    cr_assert_eq(ciot_client_connect(gw), 0);
    cr_assert_eq(ciot_client_start(gw), 0);
    tclient *sub = device("rc-sub-thread", 4);
    cr_assert_eq(tc_sub(sub, "alerts/#", 1), 1);
    tclient *dev = device("rc-dev-thread", 4);
    struct fstate f = {gw, "sensors/+/temperature", 1};
    cr_assert(h_wait_until(filter_state_is, &f, 5000), "not subscribed");
    reading(dev, "d1", "temperature", "90");
    struct tc_at_least want = {sub, "alerts/d1", 1};
    bool got = h_wait_until(tc_reached, &want, 5000);
    cr_assert(got, "no alert from the client's thread");
    cr_assert_eq(ciot_client_stop(gw), 0);
    cr_assert_gt(fn.calls, 0);
    cr_assert_eq(e.n, 0, "%s", e.msg);
    cr_assert_eq(ciot_rules_detach(r), 0, "detached while nothing drives the client");
    tc_free(dev);
    tc_free(sub);
    cr_assert_eq(ciot_client_free(gw), 0);
    cr_assert_eq(ciot_rules_free(r), 0);
}

/* ---- an AWS client: AWS's wildcard rule ---- */

Test(rules_client, aws_client_keeps_a_and_a_hash_apart_and_processes_once)
{
    h_events ev;
    h_events_init(&ev);
    errs e = {0};
    rec a = {0}, b = {0};
    ciot_rules *r;
    cr_assert_eq(ciot_rules_new(&r), 0);
    ciot_rules_set_error_callback(r, on_err, &e);
    cr_assert_eq(ciot_rules_add_sql(r, S("A"), S("SELECT VALUE value FROM 'sensors'")), 0);
    cr_assert_eq(ciot_rules_add_sql(r, S("B"), S("SELECT VALUE value FROM 'sensors/#'")), 0);
    cr_assert_eq(ciot_rules_set_function(r, S("A"), on_fn, &a), 0);
    cr_assert_eq(ciot_rules_set_function(r, S("B"), on_fn, &b), 0);
    cr_assert_eq(ciot_rules_add_function_action(r, S("A"), S("A")), 0);
    cr_assert_eq(ciot_rules_add_function_action(r, S("B"), S("B")), 0);

    ciot_config *cfg = h_config(&broker, "rc-gw-aws");
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_BACKEND, CIOT_BACKEND_AWS), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_TLS, 0), 0); /* loopback only */
    ciot_client *gw = h_client(cfg, &ev);
    ciot_config_free(cfg);
    cr_assert_eq(ciot_client_connect(gw), 0);
    cr_assert(h_run_until(gw, h_is_connected, gw, 5000), "no CONNACK: %s", ciot_client_errmsg(gw));
    cr_assert_eq(ciot_rules_attach(r, gw, 1), 0);
    /* on AWS 'sensors/#' does not match 'sensors': both are needed */
    wait_filter(gw, "sensors", 1);
    wait_filter(gw, "sensors/#", 1);

    tclient *dev = device("rc-dev-aws", 4);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(tc_pub(dev, "sensors", "{\"value\":1}", 1), 0);
    cr_assert_eq(tc_pub(dev, "sensors/x", "{\"value\":2}", 1), 0);
    cr_assert_eq(tc_pub(dev, "sensors", "{\"value\":3}", 1), 0);
    run_until_calls(gw, &a, 4);
    run_until_calls(gw, &b, 1);
    settle(gw, 300);
    /* the client hands a message on 'sensors' to both subscriptions' handler
     * (MQTT's rule): still processed once */
    cr_assert_eq(a.calls, 4, "A fired %d times", a.calls);
    cr_assert_eq(b.calls, 1, "B fired %d times", b.calls);
    cr_assert_str_eq(a.doc, "3");
    cr_assert_eq(e.n, 0, "%s", e.msg);
    tc_free(dev);
    cr_assert_eq(ciot_rules_free(r), 0);
    cr_assert_eq(ciot_client_free(gw), 0);
}
