/* ciot_rules (lib/services/rules.c): the rule set, CreateTopicRule payloads,
 * templates, actions and their errors, the order of outputs and actions,
 * re-entrancy, 1,000 rules, out of memory. */
#include "services/rules_internal.h"

#include <cloudiot/alloc.h>
#include <cloudiot/error.h>
#include <cloudiot/json.h>
#include <cloudiot/rules.h>

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef CIOT_TEST_HAVE_SQLITE
#include <sqlite3.h>
#endif

#define R1                                                                                         \
    "SELECT deviceId, sensorType, value as temperature, timestamp, 'HIGH_TEMPERATURE' as "         \
    "alertType FROM 'sensors/+/temperature' WHERE value > 35"
#define S(x) x, strlen(x)

/* ---- an event log the callbacks write to ------------------------------------ */

static char events[65536];
static size_t n_events;
static int fn_result, pub_result;

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t used = strlen(events);
    vsnprintf(events + used, sizeof events - used, fmt, ap);
    va_end(ap);
    n_events++;
}

static void clear_events(void)
{
    events[0] = '\0';
    n_events = 0;
}

static int on_output(ciot_rules *r, const ciot_rules_output *o, void *ud)
{
    (void)r;
    size_t rl, dl, tl, fl;
    const char *rule = ciot_rules_output_rule(o, &rl);
    const char *doc = ciot_rules_output_document(o, &dl);
    const char *topic = ciot_rules_output_topic(o, &tl);
    const char *fn = ciot_rules_output_function(o, &fl);
    cr_assert_eq(fl, 0);
    cr_assert_str_eq(fn, "");
    cr_assert_eq(strlen(doc), dl, "the document is NUL-terminated");
    logf_("out %.*s %.*s %.*s|", (int)rl, rule, (int)tl, topic, (int)dl, doc);
    return ud ? *(int *)ud : 0;
}

static int on_fn(ciot_rules *r, const ciot_rules_output *o, void *ud)
{
    (void)r;
    size_t rl, dl, fl;
    const char *rule = ciot_rules_output_rule(o, &rl);
    const char *doc = ciot_rules_output_document(o, &dl);
    const char *fn = ciot_rules_output_function(o, &fl);
    logf_("fn %.*s %.*s %s %.*s|", (int)fl, fn, (int)rl, rule, (const char *)ud, (int)dl, doc);
    return fn_result;
}

static int on_pub(void *ud, const char *topic, size_t tl, const void *payload, size_t pl, int qos)
{
    cr_assert_eq(ud, (void *)events);
    cr_assert_eq(ciot_json_validate(payload, pl), 0);
    logf_("pub %.*s q%d %.*s|", (int)tl, topic, qos, (int)pl, (const char *)payload);
    return pub_result;
}

static void on_err(ciot_rules *r, const char *rule, size_t rl, int action, int error,
                   const char *msg, void *ud)
{
    (void)r;
    (void)ud;
    logf_("err %.*s %d %s %s|", (int)rl, rule, action, ciot_strerror(error), msg);
}

/* A string literal as user data (no cast-qual warning). */
static void *tag(const char *s)
{
    union {
        const char *c;
        void *v;
    } u = {s};
    return u.v;
}

static int64_t fixed_clock(void *ud)
{
    return *(int64_t *)ud;
}

static int64_t clock_ms = 1700000000123;

static ciot_rules *mkset(void)
{
    ciot_rules *r = NULL;
    cr_assert_eq(ciot_rules_new(&r), 0);
    cr_assert_not_null(r);
    ciot_rules_set_output_callback(r, on_output, NULL);
    ciot_rules_set_error_callback(r, on_err, NULL);
    ciot_rules_set_publisher(r, on_pub, events);
    ciot_rules_set_clock(r, fixed_clock, &clock_ms);
    clear_events();
    fn_result = 0;
    pub_result = 0;
    return r;
}

static size_t process(ciot_rules *r, const char *topic, const char *payload, const char *cid)
{
    size_t fired = 99;
    int rc = ciot_rules_process(&fired, r, topic, strlen(topic), payload, strlen(payload), cid,
                                cid ? strlen(cid) : 0);
    cr_assert_eq(rc, 0, "process: %d %s", rc, ciot_rules_errmsg(r));
    return fired;
}

static void add_sql(ciot_rules *r, const char *name, const char *sql)
{
    int rc = ciot_rules_add_sql(r, S(name), S(sql));
    cr_assert_eq(rc, 0, "add %s: %d %s", name, rc, ciot_rules_errmsg(r));
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    static char data[65536];
    *len = fread(data, 1, sizeof data, f);
    fclose(f);
    return data;
}

/* ---- the set ---------------------------------------------------------------- */

Test(rules_set, new_free_and_null_arguments)
{
    cr_assert_eq(ciot_rules_new(NULL), CIOT_EINVAL);
    cr_assert_eq(ciot_rules_free(NULL), 0);
    cr_assert_str_eq(ciot_rules_errmsg(NULL), "");
    cr_assert_eq(ciot_rules_count(NULL), 0);
    ciot_rules *r = mkset();
    cr_assert_str_eq(ciot_rules_errmsg(r), "");
    cr_assert_eq(ciot_rules_count(r), 0);
    cr_assert_eq(ciot_rules_add_sql(NULL, S("a"), S(R1)), CIOT_EINVAL);
    cr_assert_eq(ciot_rules_add_sql(r, S("a"), NULL, 5), CIOT_EINVAL);
    cr_assert_eq(ciot_rules_process(NULL, NULL, S("a"), NULL, 0, NULL, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_rules_process(NULL, r, NULL, 1, NULL, 0, NULL, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_rules_process(NULL, r, S("a"), NULL, 3, NULL, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_rules_process(NULL, r, S("a"), NULL, 0, NULL, 3), CIOT_EINVAL);
    /* a filter is not a topic name */
    cr_assert_eq(ciot_rules_process(NULL, r, S("a/+"), NULL, 0, NULL, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_rules_process(NULL, r, S(""), NULL, 0, NULL, 0), CIOT_EINVAL);
    size_t n = 7;
    cr_assert_eq(ciot_rules_process(&n, r, S("a/b"), NULL, 0, NULL, 0), 0);
    cr_assert_eq(n, 0);
    size_t l = 5;
    cr_assert_str_eq(ciot_rules_output_rule(NULL, &l), "");
    cr_assert_eq(l, 0);
    cr_assert_eq(ciot_rules_output_timestamp(NULL), 0);
    cr_assert_eq(ciot_rules_free(r), 0);
}

Test(rules_set, add_remove_enable_count)
{
    ciot_rules *r = mkset();
    add_sql(r, "R1", R1);
    add_sql(r, "other_Rule_9", "SELECT * FROM 'a/#'");
    cr_assert_eq(ciot_rules_count(r), 2);
    cr_assert_eq(ciot_rules_add_sql(r, S("R1"), S("SELECT 1 AS x FROM 'b'")), CIOT_EEXIST);
    cr_assert_str_eq(ciot_rules_errmsg(r), "rule R1: a rule of that name exists");
    cr_assert_eq(ciot_rules_count(r), 2);

    const char *msg = "{\"deviceId\":\"dev42\",\"value\":40}";
    cr_assert_eq(process(r, "sensors/dev42/temperature", msg, NULL), 1);
    cr_assert_eq(ciot_rules_enable(r, S("R1"), false), 0);
    cr_assert_eq(process(r, "sensors/dev42/temperature", msg, NULL), 0);
    cr_assert_eq(ciot_rules_enable(r, S("R1"), true), 0);
    cr_assert_eq(process(r, "sensors/dev42/temperature", msg, NULL), 1);
    cr_assert_eq(ciot_rules_enable(r, S("nope"), true), CIOT_ENOTFOUND);
    cr_assert_str_eq(ciot_rules_errmsg(r), "rule nope: no such rule");
    cr_assert_eq(ciot_rules_remove(r, S("R1")), 0);
    cr_assert_eq(ciot_rules_remove(r, S("R1")), CIOT_ENOTFOUND);
    cr_assert_eq(ciot_rules_remove(r, NULL, 0), CIOT_ENOTFOUND);
    cr_assert_eq(ciot_rules_count(r), 1);
    cr_assert_eq(process(r, "sensors/dev42/temperature", msg, NULL), 0);
    /* the name is free again */
    add_sql(r, "R1", R1);
    cr_assert_eq(process(r, "sensors/dev42/temperature", msg, NULL), 1);
    cr_assert_eq(process(r, "a/b", msg, NULL), 1);
    cr_assert_eq(process(r, "a", msg, NULL), 0, "AWS: # does not match its parent level");
    cr_assert_eq(ciot_rules_free(r), 0);
}

Test(rules_set, rule_names)
{
    ciot_rules *r = mkset();
    char longname[130];
    memset(longname, 'a', sizeof longname);
    cr_assert_eq(ciot_rules_add_sql(r, longname, 128, S(R1)), 0);
    cr_assert_eq(ciot_rules_add_sql(r, longname + 1, 129, S(R1)), CIOT_EINVAL);
    const char *bad[] = {"", "a-b", "a b", "a.b", "r\xc3\xa9gle", "a/b", "$aws"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(ciot_rules_add_sql(r, S(bad[i]), S(R1)), CIOT_EINVAL, "%s", bad[i]);
        cr_assert(strstr(ciot_rules_errmsg(r), "a rule name is 1..128 of A-Z a-z 0-9 _"));
    }
    cr_assert_eq(ciot_rules_add_sql(r, NULL, 0, S(R1)), CIOT_EINVAL);
    cr_assert_eq(ciot_rules_add_sql(r, "ab\0c", 4, S(R1)), CIOT_EINVAL);
    /* no NUL needed after the name; names are case-sensitive */
    cr_assert_eq(ciot_rules_add_sql(r, "Rule1xyz", 5, S(R1)), 0);
    cr_assert_eq(ciot_rules_add_sql(r, S("rule1"), S(R1)), 0);
    cr_assert_eq(ciot_rules_count(r), 3);
    cr_assert_eq(ciot_rules_remove(r, S("Rule1")), 0);
    cr_assert_eq(ciot_rules_free(r), 0);
}

Test(rules_set, sql_errors_name_the_rule_and_position)
{
    ciot_rules *r = mkset();
    cr_assert_eq(ciot_rules_add_sql(r, S("bad"), S("SELECT a WHERE b")), CIOT_EINVAL);
    cr_assert_str_eq(ciot_rules_errmsg(r), "rule bad: 1:10: expected FROM, found a name");
    cr_assert_eq(ciot_rules_add_sql(r, S("bad"), S("SELECT nosuch(a) AS b FROM 'x'")),
                 CIOT_EINVAL);
    cr_assert(strstr(ciot_rules_errmsg(r), "rule bad: 1:8: "), "%s", ciot_rules_errmsg(r));
    cr_assert(strstr(ciot_rules_errmsg(r), "nosuch"));
    cr_assert_eq(ciot_rules_add_sql(r, S("bad"), S("SELECT a FROM 'x/#/y'")), CIOT_EINVAL);
    cr_assert_eq(ciot_rules_count(r), 0);
    /* a success clears the message */
    add_sql(r, "good", "SELECT a FROM 'x'");
    cr_assert_str_eq(ciot_rules_errmsg(r), "");
    cr_assert_eq(ciot_rules_free(r), 0);
}

/* ---- §3.5 through the set ---------------------------------------------------- */

static const char *one_output(ciot_rules *r, const char *topic, const char *payload,
                              const char *cid)
{
    static char out[4096];
    clear_events();
    size_t n = process(r, topic, payload, cid);
    if (n == 0) {
        cr_assert_str_eq(events, "");
        return NULL;
    }
    cr_assert_eq(n, 1);
    /* "out NAME TOPIC DOC|" */
    const char *p = strchr(events, ' ');
    p = strchr(p + 1, ' ');
    p = strchr(p + 1, ' ') + 1;
    snprintf(out, sizeof out, "%s", p);
    out[strlen(out) - 1] = '\0';
    return out;
}

Test(rules_set, worked_examples_1_to_4_and_6)
{
    ciot_rules *r = mkset();
    add_sql(r, "R1", R1);
    const char *t = "sensors/dev42/temperature";
    cr_assert_str_eq(one_output(r, t,
                                "{\"deviceId\":\"dev42\",\"sensorType\":\"DHT22\",\"value\":37.5,"
                                "\"timestamp\":1700000000000}",
                                NULL),
                     "{\"deviceId\":\"dev42\",\"sensorType\":\"DHT22\",\"temperature\":37.5,"
                     "\"timestamp\":1700000000000,\"alertType\":\"HIGH_TEMPERATURE\"}");
    cr_assert_null(one_output(r, t,
                              "{\"deviceId\":\"dev42\",\"sensorType\":\"DHT22\",\"value\":35,"
                              "\"timestamp\":1700000000000}",
                              NULL));
    cr_assert_str_eq(one_output(r, t, "{\"deviceId\":\"dev42\",\"value\":\"36.5\"}", NULL),
                     "{\"deviceId\":\"dev42\",\"temperature\":\"36.5\",\"alertType\":\"HIGH_"
                     "TEMPERATURE\"}");
    cr_assert_str_eq(one_output(r, t,
                                "{\"deviceId\":\"dev42\",\"sensorType\":\"PT100\",\"value\":40.0,"
                                "\"timestamp\":5}",
                                NULL),
                     "{\"deviceId\":\"dev42\",\"sensorType\":\"PT100\",\"temperature\":40,"
                     "\"timestamp\":5,\"alertType\":\"HIGH_TEMPERATURE\"}");
    /* 5 */
    cr_assert_null(one_output(r, t, "{\"deviceId\":\"dev42\",\"temp\":50}", NULL));
    cr_assert_null(one_output(r, t, "{\"value\":\"hot\"}", NULL));
    cr_assert_null(one_output(r, t, "{\"value\":true}", NULL));
    /* 6 */
    cr_assert_null(one_output(r, "sensors/dev42/humidity", "{\"value\":99}", NULL));
    cr_assert_null(one_output(r, "sensors/site1/dev42/temperature", "{\"value\":99}", NULL));
    cr_assert_null(one_output(r, "sensors/dev42/temperature/x", "{\"value\":99}", NULL));
    cr_assert_eq(ciot_rules_free(r), 0);
}

Test(rules_set, worked_examples_9_and_10_with_clock_and_client_id)
{
    ciot_rules *r = mkset();
    add_sql(r, "ex9", "SELECT *, clientid() AS cid, timestamp() AS ts FROM 'a/b'");
    add_sql(r, "ex10",
            "SELECT VALUE CASE level WHEN 1 THEN 'low' WHEN 2 THEN 'high' ELSE 'unknown' END "
            "FROM 'alarms/+'");
    cr_assert_str_eq(one_output(r, "a/b", "{\"x\":1,\"cid\":\"old\"}", "dev-1"),
                     "{\"x\":1,\"cid\":\"dev-1\",\"ts\":1700000000123}");
    /* no client id: "n/a" */
    cr_assert_str_eq(one_output(r, "a/b", "{\"x\":1}", NULL),
                     "{\"x\":1,\"cid\":\"n/a\",\"ts\":1700000000123}");
    cr_assert_str_eq(one_output(r, "alarms/a7", "{\"level\":2}", NULL), "\"high\"");
    cr_assert_str_eq(one_output(r, "alarms/a7", "{\"level\":9}", NULL), "\"unknown\"");
    cr_assert_null(one_output(r, "alarms/a7", "{}", NULL));
    cr_assert_eq(ciot_rules_free(r), 0);
}

static int capture_ts(ciot_rules *r, const ciot_rules_output *o, void *ud)
{
    (void)r;
    *(int64_t *)ud = ciot_rules_output_timestamp(o);
    return 0;
}

Test(rules_set, default_clock_is_real_time_ms)
{
    ciot_rules *r = NULL;
    cr_assert_eq(ciot_rules_new(&r), 0);
    int64_t ts = 0;
    ciot_rules_set_output_callback(r, capture_ts, &ts);
    add_sql(r, "t", "SELECT timestamp() AS ts FROM 'a'");
    /* the clock the set documents (CLOCK_REALTIME), not time(): glibc's
     * time() reads the coarse clock, which this suite once saw a second
     * ahead of CLOCK_REALTIME (ts < before * 1000) */
    struct timespec b, a;
    cr_assert_eq(clock_gettime(CLOCK_REALTIME, &b), 0);
    cr_assert_eq(process(r, "a", "{}", NULL), 1);
    cr_assert_eq(clock_gettime(CLOCK_REALTIME, &a), 0);
    cr_assert_geq(ts, (int64_t)b.tv_sec * 1000 + b.tv_nsec / 1000000);
    cr_assert_leq(ts, (int64_t)a.tv_sec * 1000 + a.tv_nsec / 1000000);
    cr_assert_eq(ciot_rules_free(r), 0);
}

static int fixed_random(void *ud, uint8_t *buf, size_t n)
{
    (void)ud;
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)i;
    return 0;
}

Test(rules_set, newuuid_from_the_random_source)
{
    ciot_rules *r = mkset();
    add_sql(r, "u", "SELECT VALUE newuuid() FROM 'a'");
    const char *out = one_output(r, "a", "", NULL);
    cr_assert_not_null(out);
    cr_assert_eq(strlen(out), 38, "%s", out); /* a quoted UUID from OpenSSL */
    char first[64];
    snprintf(first, sizeof first, "%s", out);
    cr_assert_str_neq(one_output(r, "a", "", NULL), first);
    ciot_rules_set_random(r, fixed_random, NULL);
    cr_assert_str_eq(one_output(r, "a", "", NULL), "\"00010203-0405-4607-8809-0a0b0c0d0e0f\"");
    cr_assert_eq(ciot_rules_free(r), 0);
}

/* ---- order, functions, republish ---------------------------------------------- */

Test(rules_set, rules_fire_in_order_and_actions_in_order)
{
    ciot_rules *r = mkset();
    add_sql(r, "z_first", "SELECT VALUE 1 FROM 'a/+'");
    add_sql(r, "a_second", "SELECT VALUE 2 FROM 'a/b'");
    add_sql(r, "m_third", "SELECT VALUE 3 FROM '#'");
    add_sql(r, "nope", "SELECT VALUE 4 FROM 'b/#'");
    cr_assert_eq(ciot_rules_add_function_action(r, S("z_first"), S("f1")), 0);
    cr_assert_eq(ciot_rules_add_republish_action(r, S("z_first"), S("out/${topic(2)}"), 1), 0);
    cr_assert_eq(ciot_rules_add_function_action(r, S("z_first"), S("f2")), 0);
    cr_assert_eq(ciot_rules_add_function_action(r, S("m_third"), S("f1")), 0);
    cr_assert_eq(ciot_rules_set_function(r, S("f1"), on_fn, tag("U1")), 0);
    cr_assert_eq(ciot_rules_set_function(r, S("f2"), on_fn, tag("U2")), 0);
    cr_assert_eq(process(r, "a/b", "{}", NULL), 3);
    cr_assert_str_eq(events, "out z_first a/b 1|fn f1 z_first U1 1|pub out/b q1 1|fn f2 z_first U2 1|"
                             "out a_second a/b 2|"
                             "out m_third a/b 3|fn f1 m_third U1 3|");
    /* re-registering replaces; removing makes the action fail */
    cr_assert_eq(ciot_rules_set_function(r, S("f1"), on_fn, tag("V1")), 0);
    cr_assert_eq(ciot_rules_set_function(r, S("f2"), NULL, NULL), 0);
    cr_assert_eq(ciot_rules_set_function(r, S("f2"), NULL, NULL), CIOT_ENOTFOUND);
    clear_events();
    cr_assert_eq(process(r, "a/c", "{}", NULL), 2);
    cr_assert_str_eq(events, "out z_first a/c 1|fn f1 z_first V1 1|pub out/c q1 1|"
                             "err z_first 2 not found no function 'f2' registered|"
                             "out m_third a/c 3|fn f1 m_third V1 3|");
    cr_assert_eq(ciot_rules_set_function(r, S(""), on_fn, NULL), CIOT_EINVAL);
    cr_assert_eq(ciot_rules_add_function_action(r, S("zz"), S("f1")), CIOT_ENOTFOUND);
    cr_assert_eq(ciot_rules_add_function_action(r, S("z_first"), NULL, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_rules_free(r), 0);
}

Test(rules_set, republish_templates)
{
    ciot_rules *r = mkset();
    add_sql(r, "t", "SELECT deviceId, value FROM 'sensors/+/temperature'");
    cr_assert_eq(ciot_rules_add_republish_action(
                     r, S("t"), S("alerts/${topic(2)}/${upper(deviceId)}/${value * 2}/${clientid()}"), 0),
                 0);
    cr_assert_eq(process(r, "sensors/d1/temperature", "{\"deviceId\":\"ab\",\"value\":21}", "c-9"), 1);
    cr_assert_str_eq(events, "out t sensors/d1/temperature {\"deviceId\":\"ab\",\"value\":21}|"
                             "pub alerts/d1/AB/42/c-9 q0 {\"deviceId\":\"ab\",\"value\":21}|");
    /* strings raw (escapes undone), decimals as written, booleans */
    clear_events();
    cr_assert_eq(process(r, "sensors/d1/temperature", "{\"deviceId\":\"a\\u0062\\\"c\",\"value\":1.25}", NULL), 1);
    cr_assert(strstr(events, "pub alerts/d1/AB\"C/2.5/n/a q0 "), "%s", events);
    /* Undefined: the action fails, nothing is published */
    clear_events();
    cr_assert_eq(process(r, "sensors/d1/temperature", "{\"value\":1}", NULL), 1);
    cr_assert_str_eq(events, "out t sensors/d1/temperature {\"value\":1}|"
                             "err t 0 not found template expression at byte 19 is Undefined|");
    /* a value that would make a wildcard or an empty... topic name */
    clear_events();
    cr_assert_eq(process(r, "sensors/d1/temperature", "{\"deviceId\":\"#\",\"value\":1}", NULL), 1);
    cr_assert(strstr(events, "err t 0 invalid argument republish topic 'alerts/d1/#/2/n/a' is not a "
                             "valid topic name|"),
              "%s", events);
    cr_assert_null(strstr(events, "pub "));
    /* null is not substituted */
    add_sql(r, "n", "SELECT VALUE 1 FROM 'n'");
    cr_assert_eq(ciot_rules_add_republish_action(r, S("n"), S("n/${x}"), 0), 0);
    clear_events();
    cr_assert_eq(process(r, "n", "{\"x\":null}", NULL), 1);
    cr_assert_str_eq(events, "out n n 1|err n 0 not found template expression at byte 2 is null|");
    clear_events();
    cr_assert_eq(process(r, "n", "{\"x\":[1,{\"a\":true}]}", NULL), 1);
    cr_assert_str_eq(events, "out n n 1|pub n/[1,{\"a\":true}] q0 1|");
    cr_assert_eq(ciot_rules_free(r), 0);
}

/* AWS writes a republish to a reserved topic with "$$": "$$aws/..." is
 * published on "$aws/...", and only the first "$" is dropped. */
Test(rules_set, republish_to_a_reserved_topic_is_written_with_two_dollars)
{
    ciot_rules *r = mkset();
    add_sql(r, "t", "SELECT state FROM 'cmd/+'");
    cr_assert_eq(ciot_rules_add_republish_action(
                     r, S("t"), S("$$aws/things/${topic(2)}/shadow/update"), 1),
                 0);
    add_sql(r, "u", "SELECT VALUE 1 FROM 'x'");
    cr_assert_eq(ciot_rules_add_republish_action(r, S("u"), S("$$$x"), 0), 0);
    cr_assert_eq(process(r, "cmd/t1", "{\"state\":{\"desired\":{\"on\":true}}}", NULL), 1);
    cr_assert(strstr(events, "pub $aws/things/t1/shadow/update q1 {\"state\":"), "%s", events);
    clear_events();
    cr_assert_eq(process(r, "x", "{}", NULL), 1);
    cr_assert(strstr(events, "pub $$x q0 1|"), "%s", events);
    cr_assert_eq(ciot_rules_free(r), 0);
}

Test(rules_set, template_errors_at_add_time)
{
    ciot_rules *r = mkset();
    add_sql(r, "t", "SELECT * FROM 'a/#'");
    struct {
        const char *tpl;
        int rc;
        const char *msg;
    } cases[] = {
        {"out/${topic(2)", CIOT_EINVAL, "rule t: template: unbalanced '${' at byte 4"},
        {"out/${a}/${", CIOT_EINVAL, "rule t: template: unbalanced '${' at byte 9"},
        {"x${'}'", CIOT_EINVAL, "rule t: template: unbalanced '${' at byte 1"},
        {"out/${}", CIOT_EINVAL, "rule t: template: empty '${}' at byte 4"},
        {"out/${ a + }", CIOT_EINVAL, "rule t: template at byte 11: expected an expression, found '}'"},
        {"out/${nosuch(1)}", CIOT_EINVAL, "rule t: template at byte 6: unsupported function 'nosuch'"},
        {"out/${a FROM 'x'}", CIOT_EINVAL,
         "rule t: template at byte 16: expected WHERE or end of input, found '}'"},
        {"out/${a, b}", CIOT_EINVAL,
         "rule t: template at byte 7: SELECT VALUE takes exactly one expression"},
        {"o/${*}", CIOT_EINVAL, "rule t: template at byte 4: SELECT VALUE needs an expression, not '*'"},
        {"out/+/${a}", CIOT_EINVAL, "rule t: republish topic template: a wildcard at byte 4"},
        {"out/#", CIOT_EINVAL, "rule t: republish topic 'out/#' is not a valid topic name"},
        {"", CIOT_EINVAL, "rule t: empty template"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = ciot_rules_add_republish_action(r, S("t"), S(cases[i].tpl), 0);
        cr_assert_eq(rc, cases[i].rc, "%s: %d", cases[i].tpl, rc);
        if (cases[i].msg)
            cr_assert_str_eq(ciot_rules_errmsg(r), cases[i].msg, "%s: %s", cases[i].tpl, ciot_rules_errmsg(r));
        else
            cr_assert_neq(ciot_rules_errmsg(r)[0], '\0');
    }
    cr_assert_eq(ciot_rules_add_republish_action(r, S("t"), S("a/b"), 2), CIOT_EINVAL);
    cr_assert_str_eq(ciot_rules_errmsg(r), "rule t: republish QoS 2 (0 or 1)");
    /* quotes and braces inside an expression */
    cr_assert_eq(ciot_rules_add_republish_action(r, S("t"), S("o/${concat('}', \"{\")}/${get({'k': 'v'}, 'k')}"), 0), 0);
    clear_events();
    cr_assert_eq(process(r, "a/b", "{}", NULL), 1);
    cr_assert(strstr(events, "pub o/}{/v q0 {}|"), "%s", events);
    cr_assert_eq(ciot_rules_free(r), 0);
}

Test(rules_set, publisher_failures)
{
    ciot_rules *r = mkset();
    add_sql(r, "t", "SELECT VALUE {'a': 1} FROM 'x'");
    cr_assert_eq(ciot_rules_add_republish_action(r, S("t"), S("y"), 1), 0);
    pub_result = CIOT_EIO;
    cr_assert_eq(process(r, "x", "", NULL), 1);
    cr_assert_str_eq(events, "out t x {\"a\":1}|pub y q1 {\"a\":1}|"
                             "err t 0 input/output error republish to 'y' failed: input/output error|");
    cr_assert_str_eq(ciot_rules_errmsg(r),
                     "rule t: action 0: republish to 'y' failed: input/output error");
    pub_result = 3;
    clear_events();
    cr_assert_eq(ciot_rules_process(NULL, r, S("x"), NULL, 0, NULL, 0), CIOT_EUSER);
    cr_assert(strstr(events, "err t 0 aborted by a callback republish to 'y' failed: publisher "
                             "returned a positive value|"), "%s", events);
    pub_result = 0;
    ciot_rules_set_publisher(r, NULL, NULL);
    clear_events();
    cr_assert_eq(process(r, "x", "", NULL), 1);
    cr_assert(strstr(events, "err t 0 ") && strstr(events, "no publisher for republish to 'y'|"),
              "%s", events);
    cr_assert_eq(ciot_rules_free(r), 0);
}

Test(rules_set, user_callbacks_returning_non_zero)
{
    ciot_rules *r = mkset();
    add_sql(r, "a", "SELECT VALUE 1 FROM 'x'");
    add_sql(r, "b", "SELECT VALUE 2 FROM 'x'");
    cr_assert_eq(ciot_rules_add_function_action(r, S("a"), S("f")), 0);
    cr_assert_eq(ciot_rules_set_function(r, S("f"), on_fn, tag("u")), 0);
    fn_result = 7;
    size_t n = 0;
    cr_assert_eq(ciot_rules_process(&n, r, S("x"), NULL, 0, NULL, 0), CIOT_EUSER);
    cr_assert_eq(n, 2, "the other rules still ran");
    cr_assert_str_eq(events, "out a x 1|fn f a u 1|err a 0 aborted by a callback function 'f' "
                             "returned 7|out b x 2|");
    fn_result = 0;
    int stop = 1;
    ciot_rules_set_output_callback(r, on_output, &stop);
    clear_events();
    cr_assert_eq(ciot_rules_process(&n, r, S("x"), NULL, 0, NULL, 0), CIOT_EUSER);
    cr_assert_str_eq(events, "out a x 1|err a -1 aborted by a callback the output callback returned 1|"
                             "fn f a u 1|out b x 2|err b -1 aborted by a callback the output "
                             "callback returned 1|");
    cr_assert_eq(ciot_rules_free(r), 0);
}

/* ---- re-entrancy --------------------------------------------------------------- */

static int reenter(ciot_rules *r, const ciot_rules_output *o, void *ud)
{
    (void)o;
    (void)ud;
    cr_assert(ciot__rules_in_callback(r));
    cr_assert_eq(ciot_rules_process(NULL, r, S("x"), NULL, 0, NULL, 0), CIOT_ERECURSIVE);
    cr_assert_eq(ciot_rules_free(r), CIOT_ERECURSIVE);
    cr_assert_eq(ciot_rules_add_sql(r, S("n"), S("SELECT a FROM 'x'")), CIOT_ERECURSIVE);
    cr_assert_eq(ciot_rules_add_payload(r, S("n"), S("{}")), CIOT_ERECURSIVE);
    cr_assert_eq(ciot_rules_remove(r, S("a")), CIOT_ERECURSIVE);
    cr_assert_eq(ciot_rules_enable(r, S("a"), false), CIOT_ERECURSIVE);
    cr_assert_eq(ciot_rules_add_function_action(r, S("a"), S("g")), CIOT_ERECURSIVE);
    cr_assert_eq(ciot_rules_set_function(r, S("g"), reenter, NULL), CIOT_ERECURSIVE);
    cr_assert_eq(ciot_rules_open_sqlite(r, ":memory:"), CIOT_ERECURSIVE);
    /* reading is allowed, and so are the plain setters */
    cr_assert_eq(ciot_rules_count(r), 1);
    ciot_rules_set_clock(r, fixed_clock, &clock_ms);
    logf_("reenter|");
    return 0;
}

Test(rules_set, calls_from_inside_callbacks)
{
    ciot_rules *r = mkset();
    add_sql(r, "a", "SELECT VALUE 1 FROM 'x'");
    cr_assert_eq(ciot_rules_add_function_action(r, S("a"), S("f")), 0);
    cr_assert_eq(ciot_rules_set_function(r, S("f"), reenter, NULL), 0);
    ciot_rules_set_output_callback(r, reenter, NULL);
    cr_assert(!ciot__rules_in_callback(r));
    cr_assert_eq(process(r, "x", "", NULL), 1);
    cr_assert_str_eq(events, "reenter|reenter|");
    cr_assert(!ciot__rules_in_callback(r));
    cr_assert_eq(ciot_rules_count(r), 1);
    cr_assert_eq(ciot_rules_free(r), 0);
}

/* ---- CreateTopicRule payloads --------------------------------------------------- */

Test(rules_set, seed_payload_loads_as_written)
{
    size_t len = 0;
    const char *json = read_file(CIOT_TEST_RULE_JSON, &len);
    ciot_rules *r = mkset();
    int rc = ciot_rules_add_payload(r, S("TemperatureAlertRule"), json, len);
    cr_assert_eq(rc, 0, "%d %s", rc, ciot_rules_errmsg(r));
    cr_assert_eq(ciot_rules_count(r), 1);
    cr_assert_eq(ciot_rules_set_function(r, S("ProcessTemperatureAlert"), on_fn, tag("lambda")), 0);
    cr_assert_eq(ciot_rules_set_function(r, S("TemperatureAlerts"), on_fn, tag("sns")), 0);
    const char *msg = "{\"deviceId\":\"dev42\",\"sensorType\":\"DHT22\",\"value\":37.5,"
                      "\"timestamp\":1700000000000}";
    cr_assert_eq(process(r, "sensors/dev42/temperature", msg, "dev42"), 1);
    const char *doc = "{\"deviceId\":\"dev42\",\"sensorType\":\"DHT22\",\"temperature\":37.5,"
                      "\"timestamp\":1700000000000,\"alertType\":\"HIGH_TEMPERATURE\"}";
    char want[2048];
    snprintf(want, sizeof want,
             "out TemperatureAlertRule sensors/dev42/temperature %s|"
             "fn ProcessTemperatureAlert TemperatureAlertRule lambda %s|"
             "fn TemperatureAlerts TemperatureAlertRule sns %s|"
             "err TemperatureAlertRule 2 %s no SQLite database open for table "
             "'TemperatureAlerts'|",
             doc, doc, doc, ciot_strerror(CIOT_ESTATE));
    cr_assert_str_eq(events, want);
    /* below the threshold: nothing */
    clear_events();
    cr_assert_eq(process(r, "sensors/dev42/temperature", "{\"value\":20}", NULL), 0);
    cr_assert_str_eq(events, "");
    cr_assert_eq(ciot_rules_free(r), 0);
}

Test(rules_set, payload_shapes)
{
    ciot_rules *r = mkset();
    /* the CLI's input shape: the name comes from the payload */
    const char *cli = "{\"ruleName\":\"fromCli\",\"topicRulePayload\":{\"sql\":\"SELECT VALUE 1 "
                      "FROM 'x'\",\"awsIotSqlVersion\":\"2016-03-23\",\"actions\":[]}}";
    cr_assert_eq(ciot_rules_add_payload(r, NULL, 0, S(cli)), 0, "%s", ciot_rules_errmsg(r));
    cr_assert_eq(ciot_rules_remove(r, S("fromCli")), 0);
    /* the same name given: fine; another one: refused */
    cr_assert_eq(ciot_rules_add_payload(r, S("fromCli"), S(cli)), 0);
    cr_assert_eq(ciot_rules_add_payload(r, S("other"), S(cli)), CIOT_EINVAL);
    cr_assert_str_eq(ciot_rules_errmsg(r), "rule other: the payload's ruleName is 'fromCli'");
    /* the outer shape without ruleName takes the given name */
    cr_assert_eq(ciot_rules_add_payload(r, S("outer"),
                                        S("{\"topicRulePayload\":{\"sql\":\"SELECT VALUE 1 FROM "
                                          "'x'\",\"awsIotSqlVersion\":\"2016-03-23\"}}")),
                 0);
    /* ruleDisabled */
    cr_assert_eq(ciot_rules_add_payload(r, S("off"),
                                        S("{\"sql\":\"SELECT VALUE 2 FROM 'x'\",\"ruleDisabled\":"
                                          "true,\"awsIotSqlVersion\":\"2016-03-23\","
                                          "\"description\":\"d\"}")),
                 0);
    cr_assert_eq(ciot_rules_count(r), 3);
    cr_assert_eq(process(r, "x", "", NULL), 2);
    cr_assert_eq(ciot_rules_enable(r, S("off"), true), 0);
    cr_assert_eq(process(r, "x", "", NULL), 3);
    cr_assert_eq(ciot_rules_free(r), 0);
}

Test(rules_set, payload_refusals)
{
    ciot_rules *r = mkset();
#define P(body) "{\"sql\":\"SELECT a FROM 'x'\",\"awsIotSqlVersion\":\"2016-03-23\"" body "}"
    struct {
        const char *name;
        const char *json;
        int rc;
        const char *msg;
    } cases[] = {
        {"a", "", CIOT_EINVAL, NULL},
        {"a", "[1]", CIOT_EINVAL, "rule payload: a JSON object expected"},
        {"a", "{\"sql\":1", CIOT_EINVAL, NULL},
        {NULL, P(""), CIOT_EINVAL,
         "rule payload: no rule name (pass one, or use {\"ruleName\":..., \"topicRulePayload\":...})"},
        {"a", "{\"sql\":\"SELECT a FROM 'x'\"}", CIOT_EVERSION,
         "rule a: no awsIotSqlVersion: AWS then uses 2015-10-08, which this library does not "
         "implement; set \"awsIotSqlVersion\": \"2016-03-23\""},
        {"a", "{\"sql\":\"SELECT a FROM 'x'\",\"awsIotSqlVersion\":\"2015-10-08\"}", CIOT_EVERSION,
         "rule a: awsIotSqlVersion '2015-10-08' is not supported (only 2016-03-23)"},
        {"a", "{\"sql\":\"SELECT a FROM 'x'\",\"awsIotSqlVersion\":\"beta\"}", CIOT_EVERSION, NULL},
        {"a", "{\"awsIotSqlVersion\":\"2016-03-23\"}", CIOT_EINVAL, "rule a: 'sql' must be a string"},
        {"a", P(",\"ruleDisabled\":\"no\""), CIOT_EINVAL,
         "rule a: 'ruleDisabled' must be true or false"},
        {"a", P(",\"actions\":{}"), CIOT_EINVAL, "rule a: 'actions' must be an array"},
        {"a", P(",\"description\":5"), CIOT_EINVAL, "rule a: 'description' must be a string"},
        {"a", P(",\"sqlx\":5"), CIOT_EINVAL, "rule a: unknown member 'sqlx'"},
        {"a", P(",\"sql\":\"x\""), CIOT_EINVAL, NULL}, /* duplicate member */
        {"a", "{\"sql\":\"SELECT a FRM 'x'\",\"awsIotSqlVersion\":\"2016-03-23\"}", CIOT_EINVAL,
         "rule a: 1:10: expected FROM, found a name"},
        {"a", P(",\"actions\":[{\"s3\":{\"bucketName\":\"b\",\"key\":\"k\"}}]"), CIOT_EINVAL,
         "rule a: action 0: unsupported action 's3' (supported: lambda, sns, republish, dynamoDBv2)"},
        {"a", P(",\"actions\":[{\"lambda\":{\"functionArn\":\"arn:x:f\"}},{\"kinesis\":{}}]"),
         CIOT_EINVAL, "rule a: action 0: lambda functionArn 'arn:x:f' has no ':function:<name>'"},
        {"a", P(",\"actions\":[{\"kinesis\":{}}]"), CIOT_EINVAL,
         "rule a: action 0: unsupported action 'kinesis' (supported: lambda, sns, republish, "
         "dynamoDBv2)"},
        {"a", P(",\"actions\":[{}]"), CIOT_EINVAL,
         "rule a: action 0: an object with exactly one action kind expected"},
        {"a", P(",\"actions\":[{\"lambda\":{\"functionArn\":\"arn:aws:lambda:r:1:function:f\"},"
                "\"sns\":{}}]"),
         CIOT_EINVAL, "rule a: action 0: an object with exactly one action kind expected"},
        {"a", P(",\"actions\":[{\"lambda\":5}]"), CIOT_EINVAL,
         "rule a: action 0: 'lambda' must be an object"},
        {"a", P(",\"actions\":[{\"lambda\":{\"functionARN\":\"x\"}}]"), CIOT_EINVAL,
         "rule a: action 0: lambda: unknown member 'functionARN'"},
        {"a", P(",\"actions\":[{\"lambda\":{}}]"), CIOT_EINVAL,
         "rule a: action 0: lambda needs a string functionArn"},
        {"a", P(",\"actions\":[{\"sns\":{\"targetArn\":\"arn:aws:sns:r:1:t\",\"messageFormat\":\"XML\"}}]"),
         CIOT_EINVAL, "rule a: action 0: sns messageFormat 'XML' (RAW or JSON)"},
        {"a", P(",\"actions\":[{\"sns\":{\"targetArn\":\"arn:aws:sns:r:1:\"}}]"), CIOT_EINVAL,
         "rule a: action 0: sns targetArn 'arn:aws:sns:r:1:': no topic name after ':'"},
        {"a", P(",\"actions\":[{\"republish\":{\"topic\":\"t\",\"qos\":2}}]"), CIOT_EINVAL,
         "rule a: action 0: republish qos must be 0 or 1"},
        {"a", P(",\"actions\":[{\"republish\":{\"qos\":1}}]"), CIOT_EINVAL,
         "rule a: action 0: republish needs a string topic (and string roleArn)"},
        {"a", P(",\"actions\":[{\"republish\":{\"topic\":\"t/${x\"}}]"), CIOT_EINVAL,
         "rule a: action 0: template: unbalanced '${' at byte 2"},
        {"a", P(",\"actions\":[{\"dynamoDBv2\":{\"putItem\":{}}}]"), CIOT_EINVAL,
         "rule a: action 0: dynamoDBv2 putItem needs a string tableName"},
        {"a", P(",\"actions\":[{\"dynamoDBv2\":{\"roleArn\":\"r\"}}]"), CIOT_EINVAL,
         "rule a: action 0: dynamoDBv2 needs a putItem object (and string roleArn)"},
        {"a", P(",\"errorAction\":{\"s3\":{}}"), CIOT_EINVAL,
         "rule a: errorAction: unsupported action 's3' (supported: lambda, sns, republish, "
         "dynamoDBv2)"},
        {"a", "{\"ruleName\":5,\"topicRulePayload\":{}}", CIOT_EINVAL,
         "rule payload: ruleName must be a string"},
        {"a", "{\"ruleName\":\"a\",\"topicRulePayload\":[]}", CIOT_EINVAL,
         "rule payload: topicRulePayload must be an object"},
        {NULL, "{\"ruleName\":\"a-b\",\"topicRulePayload\":" P("") "}", CIOT_EINVAL,
         "rule 'a-b': a rule name is 1..128 of A-Z a-z 0-9 _"},
        {"a-b", P(""), CIOT_EINVAL, "rule 'a-b': a rule name is 1..128 of A-Z a-z 0-9 _"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *n = cases[i].name;
        int rc = ciot_rules_add_payload(r, n, n ? strlen(n) : 0, S(cases[i].json));
        cr_assert_eq(rc, cases[i].rc, "case %zu: %d %s", i, rc, ciot_rules_errmsg(r));
        if (cases[i].msg)
            cr_assert_str_eq(ciot_rules_errmsg(r), cases[i].msg, "case %zu", i);
        else
            cr_assert_neq(ciot_rules_errmsg(r)[0], '\0', "case %zu", i);
        cr_assert_eq(ciot_rules_count(r), 0, "case %zu added a rule", i);
    }
    /* a duplicate name through a payload */
    cr_assert_eq(ciot_rules_add_payload(r, S("a"), S(P(""))), 0);
    cr_assert_eq(ciot_rules_add_payload(r, S("a"), S(P(""))), CIOT_EEXIST);
    cr_assert_eq(ciot_rules_add_payload(r, S("b"), NULL, 3), CIOT_EINVAL);
#undef P
    cr_assert_eq(ciot_rules_free(r), 0);
}

Test(rules_set, payload_actions_map_to_the_library)
{
    ciot_rules *r = mkset();
    const char *json =
        "{\"sql\":\"SELECT VALUE {'v': value} FROM 'm/+'\",\"awsIotSqlVersion\":\"2016-03-23\","
        "\"actions\":["
        "{\"lambda\":{\"functionArn\":\"arn:aws:lambda:eu-west-1:1:function:fnA:prod\"}},"
        "{\"republish\":{\"topic\":\"r/${topic(2)}\",\"qos\":1,\"roleArn\":\"arn:r\"}},"
        "{\"sns\":{\"targetArn\":\"arn:aws:sns:eu-west-1:1:topicB\",\"messageFormat\":\"RAW\"}},"
        "{\"republish\":{\"topic\":\"plain\"}}"
        "]}";
    cr_assert_eq(ciot_rules_add_payload(r, S("map"), S(json)), 0, "%s", ciot_rules_errmsg(r));
    cr_assert_eq(ciot_rules_set_function(r, S("fnA"), on_fn, tag("L")), 0);
    cr_assert_eq(ciot_rules_set_function(r, S("topicB"), on_fn, tag("N")), 0);
    cr_assert_eq(process(r, "m/7", "{\"value\":3}", NULL), 1);
    cr_assert_str_eq(events, "out map m/7 {\"v\":3}|fn fnA map L {\"v\":3}|pub r/7 q1 {\"v\":3}|"
                             "fn topicB map N {\"v\":3}|pub plain q0 {\"v\":3}|");
    cr_assert_eq(ciot_rules_free(r), 0);
}

Test(rules_set, error_action_runs_when_an_action_fails)
{
    ciot_rules *r = mkset();
    const char *json =
        "{\"sql\":\"SELECT VALUE 1 FROM 'e/#'\",\"awsIotSqlVersion\":\"2016-03-23\","
        "\"actions\":[{\"lambda\":{\"functionArn\":\"arn:aws:lambda:r:1:function:missing\"}},"
        "{\"republish\":{\"topic\":\"ok/${topic(2)}\"}}],"
        "\"errorAction\":{\"republish\":{\"topic\":\"errors/${topic(2)}\",\"qos\":1}}}";
    cr_assert_eq(ciot_rules_add_payload(r, S("withErr"), S(json)), 0, "%s", ciot_rules_errmsg(r));
    cr_assert_eq(process(r, "e/x", "hi", "cl"), 1);
    cr_assert_str_eq(
        events,
        "out withErr e/x 1|"
        "err withErr 0 not found no function 'missing' registered|"
        "pub errors/x q1 {\"ruleName\":\"withErr\",\"topic\":\"e/x\",\"clientId\":\"cl\","
        "\"base64OriginalPayload\":\"aGk=\",\"failures\":[{\"failedAction\":\"LambdaAction\","
        "\"failedResource\":\"missing\",\"errorMessage\":\"no function 'missing' registered\"}]}|"
        "pub ok/x q0 1|");
    cr_assert_eq(ciot_rules_free(r), 0);
}

Test(rules_set, error_action_failure_is_reported_too)
{
    ciot_rules *r = mkset();
    const char *json =
        "{\"sql\":\"SELECT VALUE 1 FROM 'e'\",\"awsIotSqlVersion\":\"2016-03-23\","
        "\"actions\":[{\"republish\":{\"topic\":\"a\"}}],"
        "\"errorAction\":{\"lambda\":{\"functionArn\":\"arn:aws:lambda:r:1:function:nofn\"}}}";
    cr_assert_eq(ciot_rules_add_payload(r, S("ee"), S(json)), 0, "%s", ciot_rules_errmsg(r));
    pub_result = CIOT_EIO;
    cr_assert_eq(process(r, "e", "{}", NULL), 1);
    cr_assert_str_eq(events, "out ee e 1|pub a q0 1|"
                             "err ee 0 input/output error republish to 'a' failed: input/output error|"
                             "err ee 1 not found errorAction: no function 'nofn' registered|");
    cr_assert_eq(ciot_rules_free(r), 0);
}

/* rules.h: CIOT_EUSER when "a callback returned non-zero": the errorAction's
 * function is a callback too */
Test(rules_set, error_action_function_returning_non_zero_is_euser)
{
    ciot_rules *r = mkset();
    const char *json =
        "{\"sql\":\"SELECT VALUE 1 FROM 'e'\",\"awsIotSqlVersion\":\"2016-03-23\","
        "\"actions\":[{\"republish\":{\"topic\":\"a\"}}],"
        "\"errorAction\":{\"lambda\":{\"functionArn\":\"arn:aws:lambda:r:1:function:ef\"}}}";
    cr_assert_eq(ciot_rules_add_payload(r, S("eu"), S(json)), 0, "%s", ciot_rules_errmsg(r));
    cr_assert_eq(ciot_rules_set_function(r, S("ef"), on_fn, tag("u")), 0);
    pub_result = CIOT_EIO;
    fn_result = 3;
    size_t n = 0;
    cr_assert_eq(ciot_rules_process(&n, r, S("e"), S("{}"), NULL, 0), CIOT_EUSER, "%s", events);
    cr_assert_eq(n, 1);
    cr_assert(strstr(events, "err eu 1 aborted by a callback errorAction: function 'ef' "
                             "returned 3|"),
              "%s", events);
    /* the publisher of an errorAction returning a positive value: CIOT_EUSER as well */
    const char *json2 =
        "{\"sql\":\"SELECT VALUE 1 FROM 'f'\",\"awsIotSqlVersion\":\"2016-03-23\","
        "\"actions\":[{\"lambda\":{\"functionArn\":\"arn:aws:lambda:r:1:function:none\"}}],"
        "\"errorAction\":{\"republish\":{\"topic\":\"errs\"}}}";
    cr_assert_eq(ciot_rules_add_payload(r, S("ep"), S(json2)), 0, "%s", ciot_rules_errmsg(r));
    pub_result = 1;
    clear_events();
    cr_assert_eq(ciot_rules_process(&n, r, S("f"), S("{}"), NULL, 0), CIOT_EUSER, "%s", events);
    /* an errorAction that fails otherwise is not a callback's doing: 0 */
    pub_result = CIOT_EIO;
    clear_events();
    cr_assert_eq(ciot_rules_process(&n, r, S("f"), S("{}"), NULL, 0), 0, "%s", events);
    cr_assert_eq(ciot_rules_free(r), 0);
}

Test(rules_set, basic_ingest_goes_to_the_named_rule_only)
{
    ciot_rules *r = mkset();
    add_sql(r, "R1", R1);
    add_sql(r, "any", "SELECT VALUE topic() FROM '#'");
    add_sql(r, "byname", "SELECT VALUE topic(1) FROM 'sensors/#'");
    const char *msg = "{\"deviceId\":\"d\",\"value\":50}";
    cr_assert_eq(process(r, "$aws/rules/R1/sensors/d/temperature", msg, NULL), 1);
    cr_assert_str_eq(events, "out R1 $aws/rules/R1/sensors/d/temperature "
                             "{\"deviceId\":\"d\",\"temperature\":50,\"alertType\":\"HIGH_"
                             "TEMPERATURE\"}|");
    clear_events();
    cr_assert_eq(process(r, "$aws/rules/byname/sensors/d/temperature", msg, NULL), 1);
    cr_assert_str_eq(events, "out byname $aws/rules/byname/sensors/d/temperature \"sensors\"|");
    /* the rule's FROM still applies to the rest of the topic */
    clear_events();
    cr_assert_eq(process(r, "$aws/rules/R1/other/d/temperature", msg, NULL), 0);
    cr_assert_eq(process(r, "$aws/rules/nosuch/sensors/d/temperature", msg, NULL), 0);
    cr_assert_eq(ciot_rules_enable(r, S("R1"), false), 0);
    cr_assert_eq(process(r, "$aws/rules/R1/sensors/d/temperature", msg, NULL), 0);
    /* not an ingest topic: '#' does not match names starting with '$' */
    cr_assert_eq(process(r, "$aws/things/x", msg, NULL), 0);
    cr_assert_eq(ciot_rules_free(r), 0);
}

/* ---- the client attachment's internal interface ----------------------------------- */

static int count_filter(void *ud, const char *f, size_t len)
{
    logf_("%.*s|", (int)len, f);
    return *(int *)ud;
}

static int n_changed, n_freeing;
static void on_changed(ciot_rules *r, void *ud)
{
    (void)r;
    cr_assert_eq(ud, &n_changed);
    n_changed++;
}
static void on_freeing(ciot_rules *r, void *ud)
{
    (void)r;
    (void)ud;
    n_freeing++;
}

Test(rules_set, hooks_and_filters)
{
    ciot_rules *r = mkset();
    ciot__rules_hooks h = {on_changed, on_freeing, &n_changed};
    cr_assert_null(ciot__rules_hooks_ud(r));
    ciot__rules_set_hooks(r, &h);
    cr_assert_eq(ciot__rules_hooks_ud(r), &n_changed);
    add_sql(r, "a", "SELECT * FROM 'x/+'");
    add_sql(r, "b", "SELECT * FROM 'y'");
    add_sql(r, "c", "SELECT * FROM 'x/+'");
    cr_assert_eq(n_changed, 3);
    int zero = 0, stop = 5;
    cr_assert_eq(ciot__rules_each_filter(r, count_filter, &zero), 0);
    cr_assert_str_eq(events, "x/+|y|");
    clear_events();
    cr_assert_eq(ciot__rules_each_filter(r, count_filter, &stop), 5);
    cr_assert_str_eq(events, "x/+|");
    cr_assert_eq(ciot_rules_enable(r, S("a"), false), 0);
    cr_assert_eq(ciot_rules_enable(r, S("a"), false), 0); /* no change, no call */
    cr_assert_eq(n_changed, 4);
    cr_assert_eq(ciot_rules_enable(r, S("b"), false), 0);
    clear_events();
    cr_assert_eq(ciot__rules_each_filter(r, count_filter, &zero), 0);
    cr_assert_str_eq(events, "x/+|");
    cr_assert_eq(ciot_rules_remove(r, S("c")), 0);
    cr_assert_eq(n_changed, 6);
    clear_events();
    cr_assert_eq(ciot__rules_each_filter(r, count_filter, &zero), 0);
    cr_assert_str_eq(events, "");
    cr_assert_eq(ciot__rules_each_filter(NULL, count_filter, &zero), CIOT_EINVAL);
    cr_assert_eq(ciot_rules_free(r), 0);
    cr_assert_eq(n_freeing, 1);
}

/* ---- 1,000 rules ----------------------------------------------------------------- */

Test(rules_set, a_thousand_rules_three_match)
{
    ciot_rules *r = mkset();
    char name[32], sql[128];
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof name, "rule_%d", i);
        snprintf(sql, sizeof sql, "SELECT VALUE %d FROM 'site/%d/+/temperature' WHERE value > 35",
                 i, i);
        add_sql(r, name, sql);
    }
    add_sql(r, "wild", "SELECT VALUE 'w' FROM 'site/+/dev/temperature'");
    add_sql(r, "deep", "SELECT VALUE 'd' FROM 'site/#'");
    cr_assert_eq(ciot_rules_count(r), 1002);
    cr_assert_eq(process(r, "site/517/dev/temperature", "{\"value\":40}", NULL), 3);
    cr_assert_str_eq(events, "out rule_517 site/517/dev/temperature 517|"
                             "out wild site/517/dev/temperature \"w\"|"
                             "out deep site/517/dev/temperature \"d\"|");
    clear_events();
    cr_assert_eq(process(r, "site/517/dev/humidity", "{\"value\":40}", NULL), 1);
    cr_assert_eq(process(r, "other/517/dev/temperature", "{\"value\":40}", NULL), 0);
    for (int i = 0; i < 1000; i += 2) {
        snprintf(name, sizeof name, "rule_%d", i);
        cr_assert_eq(ciot_rules_remove(r, S(name)), 0);
    }
    cr_assert_eq(ciot_rules_count(r), 502);
    clear_events();
    cr_assert_eq(process(r, "site/516/dev/temperature", "{\"value\":40}", NULL), 2);
    cr_assert_eq(process(r, "site/515/dev/temperature", "{\"value\":40}", NULL), 3);
    cr_assert_eq(ciot_rules_free(r), 0);
}

/* The candidate rules of one message share its prepared payload: the
 * outputs (documents and republished templates) of a set with many rules
 * equal those of each rule alone in a set of its own. */
Test(rules_set, shared_message_outputs_equal_each_rule_alone)
{
    static const char *const sqls[] = {
        R1,
        "SELECT * FROM '#'",
        "SELECT *, value AS deviceId FROM 'sensors/#'",
        "SELECT value, value AS value, n AS value FROM '#'",
        "SELECT VALUE value FROM '#'",
        "SELECT VALUE metadata.unit FROM 'sensors/+/+'",
        "SELECT concat(deviceId, '-', value) AS id, value * 2 AS dbl FROM '#' WHERE value >= 0",
        "SELECT topic(2) AS dev, clientid() AS c, timestamp() AS ts, n FROM 'sensors/+/+'",
        "SELECT kA, esc, upper(esc) AS u, n FROM '#'",
        "SELECT deviceId AS d, n, n AS m FROM 'sensors/+/temperature' WHERE value > 35",
    };
    static const char *const payloads[] = {
        ("{\"deviceId\":\"temperature-sensor-001\",\"sensorType\":\"temperature\",\"value\":37.31,"
         "\"timestamp\":\"2026-11-26T04:56:27.123Z\",\"metadata\":{\"unit\":\"celsius\"},\"n\":1.50}"),
        "{\"value\":40,\"value\":36.0,\"n\":1e2,\"deviceId\":\"a\\\"b\"}",
        "{\"k\\u0041\":\"x\",\"esc\":\"q\\\"\\u00e9\",\"value\":\"37\",\"n\":-0}",
        "[1,2]",
        "not json",
    };
    static const char *const topics[] = {"sensors/dev-1/temperature", "sensors/dev-2/humidity",
                                         "$aws/rules/r3/sensors/x/temperature"};
    const size_t nr = sizeof sqls / sizeof sqls[0];
    ciot_rules *all = mkset();
    ciot_rules *one[sizeof sqls / sizeof sqls[0]];
    char name[16];
    for (size_t i = 0; i < nr; i++) {
        snprintf(name, sizeof name, "r%zu", i);
        add_sql(all, name, sqls[i]);
        one[i] = mkset();
        add_sql(one[i], name, sqls[i]);
        if (i % 3 == 0) {
            static const char tpl[] = "out/${topic(2)}/${n}/${deviceId}";
            cr_assert_eq(ciot_rules_add_republish_action(all, S(name), S(tpl), 0), 0);
            cr_assert_eq(ciot_rules_add_republish_action(one[i], S(name), S(tpl), 0), 0);
        }
    }
    static char want[65536];
    size_t total = 0, pubs = 0;
    for (size_t t = 0; t < sizeof topics / sizeof topics[0]; t++) {
        for (size_t p = 0; p < sizeof payloads / sizeof payloads[0]; p++) {
            size_t fired_alone = 0;
            want[0] = '\0';
            for (size_t i = 0; i < nr; i++) {
                clear_events();
                fired_alone += process(one[i], topics[t], payloads[p], "c1");
                strcat(want, events);
            }
            clear_events();
            size_t fired = process(all, topics[t], payloads[p], "c1");
            cr_assert_eq(fired, fired_alone, "%s %s", topics[t], payloads[p]);
            cr_assert_str_eq(events, want, "%s %s", topics[t], payloads[p]);
            total += fired;
            for (const char *e = events; (e = strstr(e, "pub out/")) != NULL; e++)
                pubs++;
        }
    }
    cr_assert_gt(total, 40, "fired %zu", total);
    cr_assert_gt(pubs, 5, "republished %zu", pubs);
    for (size_t i = 0; i < nr; i++)
        cr_assert_eq(ciot_rules_free(one[i]), 0);
    cr_assert_eq(ciot_rules_free(all), 0);
}

/* ---- output buffer and allocation ---------------------------------------------- */

static int n_allocs, fail_after = -1;
static long live;

static void *t_malloc(size_t n, void *ctx)
{
    (void)ctx;
    if (fail_after >= 0 && n_allocs >= fail_after)
        return NULL;
    n_allocs++;
    live++;
    return malloc(n);
}

static void *t_realloc(void *p, size_t n, void *ctx)
{
    (void)ctx;
    if (fail_after >= 0 && n_allocs >= fail_after)
        return NULL;
    n_allocs++;
    if (!p)
        live++;
    return realloc(p, n);
}

static void t_free(void *p, void *ctx)
{
    (void)ctx;
    if (p)
        live--;
    free(p);
}

static int count_out(ciot_rules *r, const ciot_rules_output *o, void *ud)
{
    (void)r;
    size_t dl;
    const char *d = ciot_rules_output_document(o, &dl);
    cr_assert_eq(ciot_json_validate(d, dl), 0);
    (*(size_t *)ud) += dl;
    return 0;
}

Test(rules_set, large_outputs_and_no_allocation_in_steady_state)
{
    ciot_allocator a = {t_malloc, t_realloc, t_free, NULL};
    cr_assert_eq(ciot_set_allocator(&a), 0);
    ciot_rules *r = NULL;
    cr_assert_eq(ciot_rules_new(&r), 0);
    size_t total = 0;
    ciot_rules_set_output_callback(r, count_out, &total);
    ciot_rules_set_publisher(r, on_pub, events);
    ciot_rules_set_clock(r, fixed_clock, &clock_ms);
    add_sql(r, "big", "SELECT *, topic(2) AS t FROM 'big/+'");
    cr_assert_eq(ciot_rules_add_republish_action(r, S("big"), S("copy/${t2}/${topic(2)}"), 0), 0);
    static char payload[20000];
    size_t k = (size_t)snprintf(payload, sizeof payload, "{\"t2\":\"x\",\"data\":\"");
    memset(payload + k, 'a', 15000);
    k += 15000;
    memcpy(payload + k, "\"}", 3);
    clear_events();
    cr_assert_eq(process(r, "big/1", payload, NULL), 1);
    cr_assert_gt(total, 15000);
    int before = n_allocs;
    for (int i = 0; i < 50; i++) {
        clear_events();
        cr_assert_eq(process(r, "big/1", payload, NULL), 1);
        cr_assert_eq(process(r, "big/2", "{\"t2\":\"y\"}", NULL), 1);
        cr_assert(strstr(events, "pub copy/y/2 q0 {\"t2\":\"y\",\"t\":\"2\"}|"), "%s", events);
    }
    cr_assert_eq(n_allocs, before, "no allocation per message in steady state");
    cr_assert_eq(ciot_rules_free(r), 0);
    cr_assert_eq(live, 0, "everything freed");
}

/* One complete use of the set; returns the first error (an ENOMEM somewhere). */
static int scenario(void)
{
    ciot_rules *r = NULL;
    int rc = ciot_rules_new(&r);
    if (rc)
        return rc;
    size_t len = 0;
    const char *seed = read_file(CIOT_TEST_RULE_JSON, &len);
    rc = ciot_rules_add_payload(r, S("seed"), seed, len);
    if (rc == 0)
        rc = ciot_rules_add_sql(r, S("two"), S("SELECT *, upper(deviceId) AS u FROM 'sensors/#'"));
    if (rc == 0)
        rc = ciot_rules_add_republish_action(r, S("two"), S("x/${topic(2)}/${u}"), 1);
    if (rc == 0)
        rc = ciot_rules_add_function_action(r, S("two"), S("fx"));
    if (rc == 0)
        rc = ciot_rules_enable(r, S("two"), false);
    if (rc == 0)
        rc = ciot_rules_enable(r, S("two"), true); /* its filter is listed again */
    if (rc == 0)
        rc = ciot_rules_set_function(r, S("ProcessTemperatureAlert"), on_fn, tag("s"));
    if (rc == 0)
        rc = ciot_rules_set_function(r, S("fx"), on_fn, tag("s"));
    if (rc == 0)
        rc = ciot_rules_add_payload(
            r, NULL, 0,
            S("{\"ruleName\":\"three\",\"topicRulePayload\":{\"sql\":\"SELECT VALUE 1 FROM "
              "'e'\",\"awsIotSqlVersion\":\"2016-03-23\",\"actions\":[{\"lambda\":{\"functionArn\":"
              "\"arn:aws:lambda:r:1:function:none\"}}],\"errorAction\":{\"republish\":{\"topic\":"
              "\"err/${topic()}\"}}}}"));
    ciot_rules_set_publisher(r, on_pub, events);
    ciot_rules_set_error_callback(r, on_err, NULL);
    if (rc == 0) {
        clear_events();
        size_t n = 0;
        const char *msg = "{\"deviceId\":\"dev42\",\"value\":40}";
        int prc = ciot_rules_process(&n, r, S("sensors/dev42/temperature"), S(msg), NULL, 0);
        cr_assert_eq(prc, 0);
        bool full = n == 2;
        prc = ciot_rules_process(&n, r, S("e"), S(msg), NULL, 0);
        cr_assert_eq(prc, 0);
        if (!strstr(events, "out of memory")) {
            cr_assert(full, "%s", events);
            cr_assert(strstr(events, "pub err/e q0 "), "%s", events);
        } else {
            rc = CIOT_ENOMEM; /* a failure inside process, reported */
        }
    }
    cr_assert_eq(ciot_rules_free(r), 0);
    return rc;
}

Test(rules_set, out_of_memory_on_every_allocation)
{
    ciot_allocator a = {t_malloc, t_realloc, t_free, NULL};
    cr_assert_eq(ciot_set_allocator(&a), 0);
    int i;
    for (i = 0; i < 10000; i++) {
        n_allocs = 0;
        fail_after = i;
        int rc = scenario();
        cr_assert_eq(live, 0, "leak after failing allocation %d", i);
        if (rc == 0)
            break;
        cr_assert_eq(rc, CIOT_ENOMEM, "allocation %d: %d", i, rc);
    }
    cr_assert_gt(i, 10, "the scenario allocates");
    cr_assert_lt(i, 10000);
    fail_after = -1;
}

/* ---- SQLite without a database ---------------------------------------------------- */

Test(rules_set, sqlite_action_without_database)
{
    ciot_rules *r = mkset();
    add_sql(r, "t", "SELECT VALUE {'a': 1} FROM 'x/+'");
    cr_assert_eq(ciot_rules_add_sqlite_action(r, S("t"), S("tbl_${topic(2)}")), 0);
    cr_assert_eq(ciot_rules_add_sqlite_action(r, S("t"), S("tbl_${topic(2)")), CIOT_EINVAL);
    cr_assert_str_eq(ciot_rules_errmsg(r), "rule t: template: unbalanced '${' at byte 4");
    cr_assert_eq(ciot_rules_add_sqlite_action(r, S("nope"), S("x")), CIOT_ENOTFOUND);
    cr_assert_eq(process(r, "x/q", "", NULL), 1);
    cr_assert(strstr(events, "no SQLite database open for table 'tbl_q'|"), "%s", events);
    cr_assert_eq(ciot_rules_open_sqlite(r, NULL), CIOT_EINVAL);
    cr_assert_eq(ciot_rules_free(r), 0);
}

#ifdef CIOT_TEST_HAVE_SQLITE
/* A database file in a fresh temporary directory (removed by the caller). */
static void temp_db(char *dir, size_t dcap, char *path, size_t pcap)
{
    snprintf(dir, dcap, "/tmp/ciot-rules-set-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, pcap, "%s/alerts.db", dir);
}

static void remove_db(const char *dir, const char *path)
{
    unlink(path);
    rmdir(dir);
}

Test(rules_set, seed_rule_writes_temperature_alerts_rows)
{
    char dir[64], path[128];
    temp_db(dir, sizeof dir, path, sizeof path);
    size_t len = 0;
    const char *json = read_file(CIOT_TEST_RULE_JSON, &len);
    ciot_rules *r = mkset();
    cr_assert_eq(ciot_rules_add_payload(r, S("TemperatureAlertRule"), json, len), 0);
    cr_assert_eq(ciot_rules_set_function(r, S("ProcessTemperatureAlert"), on_fn, tag("l")), 0);
    cr_assert_eq(ciot_rules_set_function(r, S("TemperatureAlerts"), on_fn, tag("s")), 0);
    cr_assert_eq(ciot_rules_open_sqlite(r, path), 0, "%s", ciot_rules_errmsg(r));
    cr_assert_eq(process(r, "sensors/dev42/temperature",
                         "{\"deviceId\":\"dev42\",\"sensorType\":\"DHT22\",\"value\":37.5,"
                         "\"timestamp\":1700000000000}",
                         NULL),
                 1);
    cr_assert_eq(process(r, "sensors/dev7/temperature", "{\"deviceId\":\"dev7\",\"value\":\"36.5\"}",
                         NULL),
                 1);
    cr_assert_eq(process(r, "sensors/dev8/temperature", "{\"deviceId\":\"dev8\",\"value\":20}", NULL),
                 0);
    cr_assert_null(strstr(events, "err "), "%s", events);
    cr_assert_eq(ciot_rules_free(r), 0); /* closes the database */

    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    const char *q = "SELECT deviceId, sensorType, temperature, typeof(temperature), timestamp, "
                    "alertType FROM TemperatureAlerts ORDER BY rowid";
    cr_assert_eq(sqlite3_prepare_v2(db, q, -1, &st, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), "dev42");
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 1), "DHT22");
    cr_assert_float_eq(sqlite3_column_double(st, 2), 37.5, 1e-9);
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 3), "real");
    cr_assert_eq(sqlite3_column_int64(st, 4), 1700000000000);
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 5), "HIGH_TEMPERATURE");
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), "dev7");
    cr_assert_eq(sqlite3_column_type(st, 1), SQLITE_NULL, "sensorType was Undefined");
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 3), "text", "a string stays a string");
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 2), "36.5");
    cr_assert_eq(sqlite3_step(st), SQLITE_DONE, "the message below 35 wrote nothing");
    sqlite3_finalize(st);
    sqlite3_close(db);
    remove_db(dir, path);
}

Test(rules_set, sqlite_table_templates_and_failures)
{
    char dir[64], path[128];
    temp_db(dir, sizeof dir, path, sizeof path);
    ciot_rules *r = mkset();
    /* an in-memory database first, then the file one replaces it */
    cr_assert_eq(ciot_rules_open_sqlite(r, ":memory:"), 0);
    add_sql(r, "t", "SELECT topic(2) AS dev, v FROM 'm/+'");
    cr_assert_eq(ciot_rules_add_sqlite_action(r, S("t"), S("readings_${topic(2)}")), 0);
    add_sql(r, "bare", "SELECT VALUE v FROM 'm/+'");
    cr_assert_eq(ciot_rules_add_sqlite_action(r, S("bare"), S("x")), 0);
    cr_assert_eq(process(r, "m/a", "{\"v\":1}", NULL), 2);
    cr_assert_str_eq(events, "out t m/a {\"dev\":\"a\",\"v\":1}|out bare m/a 1|"
                             "err bare 0 invalid argument SQLite table 'x': the document is not a "
                             "JSON object|");
    cr_assert_eq(ciot_rules_open_sqlite(r, path), 0);
    clear_events();
    cr_assert_eq(process(r, "m/a", "{\"v\":2}", NULL), 2);
    cr_assert_eq(process(r, "m/b", "{\"v\":3}", NULL), 2);
    cr_assert_eq(process(r, "m/b", "{\"w\":3}", NULL), 1); /* SELECT VALUE v: Undefined */
    /* an unopenable path: CIOT_EIO, the open database stays */
    char bad[160];
    snprintf(bad, sizeof bad, "%s/no/such/dir/x.db", dir);
    cr_assert_eq(ciot_rules_open_sqlite(r, bad), CIOT_EIO);
    cr_assert(strstr(ciot_rules_errmsg(r), "SQLite database '"), "%s", ciot_rules_errmsg(r));
    cr_assert_eq(process(r, "m/b", "{\"v\":4}", NULL), 2);
    cr_assert_eq(ciot_rules_free(r), 0);

    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT count(*), sum(v) FROM readings_b", -1, &st, NULL),
                 SQLITE_OK, "%s", sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_eq(sqlite3_column_int(st, 0), 3);
    cr_assert_eq(sqlite3_column_int(st, 1), 7);
    sqlite3_finalize(st);
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT dev, v FROM readings_a", -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), "a");
    cr_assert_eq(sqlite3_column_int(st, 1), 2, "the :memory: row is not in the file");
    cr_assert_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
    remove_db(dir, path);
}
#else
Test(rules_set, sqlite_not_built)
{
    ciot_rules *r = mkset();
    cr_assert_eq(ciot_rules_open_sqlite(r, ":memory:"), CIOT_ENOTBUILT);
    cr_assert_str_eq(ciot_rules_errmsg(r), "this library was built without SQLite");
    cr_assert_eq(ciot_rules_free(r), 0);
}
#endif
