/* The rules engine core (protocols.md §3): the worked examples of §3.5 byte
 * for byte, the semantics of §3.2 (Undefined, comparisons, AND/OR/NOT,
 * arithmetic, concatenation), the functions of §3.3, the guide's rule on the
 * 169-byte telemetry message, and a corpus of malformed SQL rejected with a
 * position. */
#include "core/rules_sql.h"
#include "internal.h"

#include <cloudiot/error.h>
#include <cloudiot/topic.h>

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define V "2016-03-23"
#define R1                                                                                         \
    "SELECT deviceId, sensorType, value as temperature, timestamp, 'HIGH_TEMPERATURE' as "         \
    "alertType FROM 'sensors/+/temperature' WHERE value > 35"

static ciot__rule *compile(const char *sql)
{
    ciot__rule *r = NULL;
    ciot__rules_error err;
    int rc = ciot__rules_compile(&r, &err, sql, strlen(sql), V, strlen(V));
    cr_assert_eq(rc, 0, "compile failed (%d): %s\n  %s", rc, err.msg, sql);
    cr_assert_not_null(r);
    return r;
}

/* Runs sql on one message; returns the output (static buffer) or NULL if
 * the rule did not fire. */
static const char *run_full(const char *sql, const char *topic, const char *payload,
                            const char *cid, int64_t ts)
{
    static char out[4096];
    ciot__rule *r = compile(sql);
    ciot__rules_msg m = {topic, strlen(topic), payload, strlen(payload), cid,
                         cid ? strlen(cid) : 0, ts, NULL, NULL};
    bool fired = true;
    size_t len = 99;
    int rc = ciot__rules_eval(&fired, &len, out, sizeof out, r, &m);
    cr_assert_eq(rc, 0, "eval failed (%d): %s", rc, sql);
    /* measuring with no buffer gives the same answer and the exact size */
    bool fired2 = false;
    size_t need = 0;
    int rc2 = ciot__rules_eval(&fired2, &need, NULL, 0, r, &m);
    cr_assert_eq(fired2, fired);
    if (fired) {
        cr_assert_eq(rc2, CIOT_ENOSPC);
        cr_assert_eq(need, len);
        cr_assert_eq(strlen(out), len);
    } else {
        cr_assert_eq(rc2, 0);
        cr_assert_eq(len, 0);
    }
    ciot__rules_free(r);
    return fired ? out : NULL;
}

static const char *run(const char *sql, const char *topic, const char *payload)
{
    return run_full(sql, topic, payload, "dev-1", 1700000000123);
}

#define EXPECT(sql, topic, payload, want)                                                          \
    do {                                                                                           \
        const char *got_ = run(sql, topic, payload);                                               \
        cr_assert_not_null(got_, "no output for %s on %s", sql, payload);                          \
        cr_assert_str_eq(got_, want, "%s on %s", sql, payload);                                    \
    } while (0)

#define NOFIRE(sql, topic, payload)                                                                \
    do {                                                                                           \
        const char *got_ = run(sql, topic, payload);                                               \
        cr_assert_null(got_, "%s on %s fired: %s", sql, payload, got_);                            \
    } while (0)

/* A scalar expression's output: SELECT VALUE expr. NULL when Undefined. */
static const char *value_of(const char *expr, const char *payload)
{
    static char sql[512];
    snprintf(sql, sizeof sql, "SELECT VALUE %s FROM 't'", expr);
    return run(sql, "t", payload);
}

#define VAL(expr, payload, want)                                                                   \
    do {                                                                                           \
        const char *got_ = value_of(expr, payload);                                                \
        cr_assert_not_null(got_, "%s is Undefined", expr);                                         \
        cr_assert_str_eq(got_, want, "%s", expr);                                                  \
    } while (0)
#define UNDEF(expr, payload) cr_assert_null(value_of(expr, payload), "%s is defined", expr)

/* ---- §3.5 worked examples ---- */

Test(rules, example1_r1_match)
{
    EXPECT(R1, "sensors/dev42/temperature",
           "{\"deviceId\":\"dev42\",\"sensorType\":\"DHT22\",\"value\":37.5,\"timestamp\":1700000000000}",
           "{\"deviceId\":\"dev42\",\"sensorType\":\"DHT22\",\"temperature\":37.5,"
           "\"timestamp\":1700000000000,\"alertType\":\"HIGH_TEMPERATURE\"}");
}

Test(rules, example2_r1_equal_threshold_no_match)
{
    NOFIRE(R1, "sensors/dev42/temperature",
           "{\"deviceId\":\"dev42\",\"sensorType\":\"DHT22\",\"value\":35,\"timestamp\":1700000000000}");
}

Test(rules, example3_numeric_string)
{
    EXPECT(R1, "sensors/dev42/temperature", "{\"deviceId\":\"dev42\",\"value\":\"36.5\"}",
           "{\"deviceId\":\"dev42\",\"temperature\":\"36.5\",\"alertType\":\"HIGH_TEMPERATURE\"}");
}

Test(rules, example4_whole_decimal_is_int)
{
    EXPECT(R1, "sensors/dev42/temperature",
           "{\"deviceId\":\"dev42\",\"sensorType\":\"PT100\",\"value\":40.0,\"timestamp\":5}",
           "{\"deviceId\":\"dev42\",\"sensorType\":\"PT100\",\"temperature\":40,\"timestamp\":5,"
           "\"alertType\":\"HIGH_TEMPERATURE\"}");
}

Test(rules, example5_where_undefined)
{
    NOFIRE(R1, "sensors/dev42/temperature", "{\"deviceId\":\"dev42\",\"temp\":50}");
    NOFIRE(R1, "sensors/dev42/temperature", "{\"value\":\"hot\"}");
    NOFIRE(R1, "sensors/dev42/temperature", "{\"value\":true}");
}

Test(rules, example6_from_filter)
{
    NOFIRE(R1, "sensors/dev42/humidity", "{\"value\":99}");
    NOFIRE(R1, "sensors/site1/dev42/temperature", "{\"value\":99}");
    NOFIRE(R1, "sensors/dev42/temperature/x", "{\"value\":99}");
}

Test(rules, example7_functions)
{
    const char *sql = "SELECT upper(status) AS status, topic(2) AS deviceId, concat(site, '-', zone) "
                      "AS loc FROM 'plant/+/status' WHERE NOT isUndefined(status)";
    EXPECT(sql, "plant/pump-3/status", "{\"status\":\"ok\",\"site\":\"s1\",\"zone\":7}",
           "{\"status\":\"OK\",\"deviceId\":\"pump-3\",\"loc\":\"s1-7\"}");
    NOFIRE(sql, "plant/pump-3/status", "{\"site\":\"s1\"}");
}

Test(rules, example8_int_arithmetic)
{
    EXPECT("SELECT (reading.f - 32) * 5 / 9 AS c, abs(delta) AS mag FROM 'wx/#' WHERE reading.f >= "
           "212 OR delta < -10",
           "wx/station/9", "{\"reading\":{\"f\":212},\"delta\":-3}", "{\"c\":100,\"mag\":3}");
}

Test(rules, example9_star_and_overwrite)
{
    const char *got = run_full("SELECT *, clientid() AS cid, timestamp() AS ts FROM 'a/b'", "a/b",
                               "{\"x\":1,\"cid\":\"old\"}", "dev-1", 1700000000123);
    cr_assert_not_null(got);
    cr_assert_str_eq(got, "{\"x\":1,\"cid\":\"dev-1\",\"ts\":1700000000123}");
    got = run_full("SELECT clientid() AS cid FROM 'a/b'", "a/b", "{}", NULL, 0);
    cr_assert_str_eq(got, "{\"cid\":\"n/a\"}");
}

Test(rules, example10_select_value_case)
{
    const char *sql = "SELECT VALUE CASE level WHEN 1 THEN 'low' WHEN 2 THEN 'high' ELSE 'unknown' "
                      "END FROM 'alarms/+'";
    EXPECT(sql, "alarms/a7", "{\"level\":2}", "\"high\"");
    EXPECT(sql, "alarms/a7", "{\"level\":9}", "\"unknown\"");
    NOFIRE(sql, "alarms/a7", "{}");
}

Test(rules, example11_mismatched_types)
{
    NOFIRE("SELECT mode FROM 'm/#' WHERE mode = 'AUTO'", "m/1", "{\"mode\":1}");
    EXPECT("SELECT mode FROM 'm/#' WHERE mode <> 'AUTO'", "m/1", "{\"mode\":1}", "{\"mode\":1}");
}

Test(rules, example12_or_with_undefined)
{
    NOFIRE("SELECT temp FROM 't/+' WHERE temp > 30 OR humidity > 80", "t/1", "{\"temp\":35}");
    NOFIRE("SELECT temp FROM 't/+' WHERE temp > 30 OR (NOT isUndefined(humidity) AND humidity > 80)",
           "t/1", "{\"temp\":35}");
    EXPECT("SELECT temp FROM 't/+' WHERE temp > 30 OR CASE isUndefined(humidity) WHEN true THEN "
           "false ELSE humidity > 80 END",
           "t/1", "{\"temp\":35}", "{\"temp\":35}");
}

Test(rules, example13_constructors)
{
    EXPECT("SELECT {'lat': get(pos, 0), 'lon': get(pos, 1)} AS loc, [a, b] AS ab FROM 'g/+'", "g/x",
           "{\"pos\":[47.6,-122.3],\"a\":1,\"b\":\"z\"}",
           "{\"loc\":{\"lat\":47.6,\"lon\":-122.3},\"ab\":[1,\"z\"]}");
}

/* ---- the guide's rule on the 169-byte telemetry message (performance.md §3) ---- */

#define TELEMETRY(v)                                                                               \
    "{\"deviceId\":\"temperature-sensor-001\",\"sensorType\":\"temperature\",\"value\":" v         \
    ",\"timestamp\":\"2026-11-26T04:56:27.123Z\",\"metadata\":{\"unit\":\"celsius\","              \
    "\"accuracy\":\"\xc2\xb1"                                                                      \
    "0.5\xc2\xb0"                                                                                  \
    "C\"}}"

Test(rules, guide_rule_on_telemetry)
{
    cr_assert_eq(strlen(TELEMETRY("27.31")), 169);
    NOFIRE(R1, "sensors/temperature-sensor-001/temperature", TELEMETRY("27.31"));
    EXPECT(R1, "sensors/temperature-sensor-001/temperature", TELEMETRY("37.31"),
           "{\"deviceId\":\"temperature-sensor-001\",\"sensorType\":\"temperature\","
           "\"temperature\":37.31,\"timestamp\":\"2026-11-26T04:56:27.123Z\","
           "\"alertType\":\"HIGH_TEMPERATURE\"}");
    NOFIRE(R1, "devices/temperature-sensor-001/temperature", TELEMETRY("37.31"));
    NOFIRE(R1, "sensors/temperature", TELEMETRY("37.31"));
    /* the whole message under SELECT * keeps everything (nested object verbatim) */
    EXPECT("SELECT * FROM 'sensors/#' WHERE value > 35", "sensors/a/temperature",
           TELEMETRY("37.31"), TELEMETRY("37.31"));
    EXPECT("SELECT metadata.unit, metadata.accuracy AS acc FROM 'sensors/#'", "sensors/a",
           TELEMETRY("1"), "{\"unit\":\"celsius\",\"acc\":\"\xc2\xb1" "0.5\xc2\xb0" "C\"}");
}

Test(rules, small_buffer_reports_size)
{
    ciot__rule *r = compile(R1);
    const char *pl = TELEMETRY("37.31");
    ciot__rules_msg m = {"sensors/x/temperature", 21, pl, strlen(pl), "c", 1, 0};
    char buf[16];
    bool fired = false;
    size_t len = 0;
    cr_assert_eq(ciot__rules_eval(&fired, &len, buf, sizeof buf, r, &m), CIOT_ENOSPC);
    cr_assert(fired);
    cr_assert_eq(len, 154);
    char big[154];
    cr_assert_eq(ciot__rules_eval(&fired, &len, big, sizeof big, r, &m), 0);
    cr_assert_eq(len, 154);
    ciot__rules_free(r);
}

/* ---- §3.2 semantics ---- */

Test(rules, undefined_and_null)
{
    EXPECT("SELECT a, b, c.d AS cd FROM 't'", "t", "{\"a\":null,\"c\":5}", "{\"a\":null}");
    VAL("isNull(a)", "{\"a\":null}", "true");
    VAL("isNull(b)", "{\"a\":null}", "false");
    VAL("isUndefined(b)", "{\"a\":null}", "true");
    VAL("isUndefined(a)", "{\"a\":null}", "false");
    /* a payload that is not JSON: every field Undefined, the rule still fires */
    EXPECT("SELECT a FROM 't'", "t", "not json", "{}");
    EXPECT("SELECT * FROM 't'", "t", "[1,2]", "{}");
    UNDEF("a + 1", "{\"a\":null}");
    UNDEF("x", "{\"x\":1e400}");
}

Test(rules, paths)
{
    VAL("a.b[1].c", "{\"a\":{\"b\":[0,{\"c\":\"deep\"}]}}", "\"deep\"");
    UNDEF("a.b[2]", "{\"a\":{\"b\":[0,1]}}");
    UNDEF("a.b", "{\"a\":[1]}");
    UNDEF("a[0]", "{\"a\":{\"0\":1}}");
    VAL("a", "{\"a\":1,\"a\":2}", "2"); /* last duplicate wins */
    VAL("a", "{\"\\u0061\":\"x\\ny\"}", "\"x\\ny\"");
    EXPECT("SELECT a.b.c FROM 't'", "t", "{\"a\":{\"b\":{\"c\":[1, 2]}}}", "{\"c\":[1, 2]}");
}

Test(rules, and_or_not)
{
    VAL("true AND true", "{}", "true");
    VAL("true AND false", "{}", "false");
    VAL("false OR true", "{}", "true");
    VAL("'TRUE' AND 'false'", "{}", "false");
    VAL("'True' OR false", "{}", "true");
    UNDEF("true OR x", "{}");
    UNDEF("false AND x", "{}");
    UNDEF("true AND 1", "{}");
    UNDEF("true AND null", "{}");
    VAL("NOT false", "{}", "true");
    VAL("NOT 'false'", "{}", "true");
    UNDEF("NOT 1", "{}");
    UNDEF("NOT x", "{}");
    VAL("NOT NOT true", "{}", "true");
    /* precedence: NOT > AND > OR, comparison tighter than AND */
    VAL("true OR true AND false", "{}", "true");
    VAL("NOT true AND false", "{}", "false");
    VAL("1 < 2 AND 3 > 2", "{}", "true");
}

Test(rules, comparisons)
{
    VAL("1 < 2", "{}", "true");
    VAL("2.5 >= 2", "{}", "true");
    VAL("'10' > 9", "{}", "true");
    VAL("'1e1' = 10", "{}", "false"); /* = does not convert strings */
    VAL("'1E1' >= 10", "{}", "true");
    VAL("'-007.50' < -7", "{}", "true");
    UNDEF("'1.' > 0", "{}");
    UNDEF("'+1' > 0", "{}");
    UNDEF("'abc' > 0", "{}");
    UNDEF("true > false", "{}");
    UNDEF("null < 1", "{}");
    VAL("10 = 10.0", "{}", "true");
    VAL("1 = 1.5", "{}", "false");
    VAL("'a' = 'a'", "{}", "true");
    VAL("'a' = 'A'", "{}", "false");
    VAL("null = null", "{}", "true");
    VAL("null <> null", "{}", "false");
    VAL("1 <> 'a'", "{}", "true");
    VAL("true = 'true'", "{}", "false");
    UNDEF("x = 1", "{}");
    UNDEF("x <> 1", "{}");
    VAL("a = b", "{\"a\":[1,\"x\",[2]],\"b\":[1.0,\"x\",[2]]}", "true");
    VAL("a = b", "{\"a\":[1,2],\"b\":[2,1]}", "false");
    VAL("a = b", "{\"a\":[1,2],\"b\":[1,2,3]}", "false");
    VAL("a = b", "{\"a\":{\"p\":1,\"q\":[true]},\"b\":{\"q\":[true],\"p\":1}}", "true");
    VAL("a = b", "{\"a\":{\"p\":1},\"b\":{\"p\":1,\"q\":2}}", "false");
    VAL("a = b", "{\"a\":{\"p\":1},\"b\":{\"p\":2}}", "false");
    VAL("a <> b", "{\"a\":{\"p\":1},\"b\":{\"p\":2}}", "true");
    VAL("a = b", "{\"a\":{\"p\":1,\"p\":2},\"b\":{\"p\":2}}", "true");
    VAL("9007199254740993 > 9007199254740992", "{}", "true"); /* Ints compared exactly */
}

Test(rules, arithmetic)
{
    VAL("1 + 2", "{}", "3");
    VAL("1 + 2.5", "{}", "3.5");
    VAL("0.5 + 0.5", "{}", "1");
    VAL("7 / 2", "{}", "3");
    VAL("-7 / 2", "{}", "-3");
    VAL("7.0 / 2", "{}", "3"); /* 7.0 is Int 7 */
    VAL("7.5 / 2", "{}", "3.75");
    VAL("7 % 3", "{}", "1");
    VAL("-7 % 3", "{}", "-1");
    VAL("2 * 3 + 4", "{}", "10");
    VAL("2 * (3 + 4)", "{}", "14");
    VAL("10 - 2 - 3", "{}", "5");
    VAL("'5' - 2", "{}", "3");
    VAL("'5' * '2'", "{}", "10");
    VAL("-a", "{\"a\":4}", "-4");
    VAL("- -a", "{\"a\":4}", "4");
    UNDEF("1 / 0", "{}");
    UNDEF("1 % 0", "{}");
    UNDEF("1.5 / 0", "{}");
    UNDEF("true + 1", "{}");
    UNDEF("null * 2", "{}");
    UNDEF("'x' - 1", "{}");
    UNDEF("-'x'", "{}");
    VAL("9223372036854775807 + 1", "{}", "9.223372036854776e18"); /* overflow goes Decimal */
    UNDEF("1e308 * 10", "{}");
}

Test(rules, string_concatenation)
{
    VAL("'a' + 'b'", "{}", "\"ab\"");
    VAL("'n=' + 1", "{}", "\"n=1\"");
    VAL("1.5 + 'x'", "{}", "\"1.5x\"");
    VAL("'x' + true", "{}", "\"xtrue\"");
    VAL("'x' + a", "{\"a\":[1,{\"b\":2}]}", "\"x[1,{\\\"b\\\":2}]\"");
    UNDEF("'x' + null", "{}");
    UNDEF("'x' + y", "{}");
    VAL("a + '!'", "{\"a\":\"\\u00e9\\\"\"}", "\"\xc3\xa9\\\"!\"");
}

Test(rules, case_expression)
{
    VAL("CASE 'b' WHEN 'a' THEN 1 WHEN 'b' THEN 2 END", "{}", "2");
    UNDEF("CASE 'c' WHEN 'a' THEN 1 END", "{}");
    VAL("case 1 when 1.0 then 'one' else 'other' end", "{}", "\"one\"");
    VAL("CASE x WHEN 1 THEN 'a' ELSE 'b' END", "{\"x\":null}", "\"b\"");
}

/* ---- §3.3 functions ---- */

Test(rules, topic_function)
{
    const char *sql = "SELECT topic() AS t, topic(1) AS a, topic(3) AS c, topic(4) AS d, topic(0) AS "
                      "z FROM 'foo/#'";
    EXPECT(sql, "foo/bar/baz", "{}", "{\"t\":\"foo/bar/baz\",\"a\":\"foo\",\"c\":\"baz\"}");
    /* Basic Ingest: the prefix is stripped for FROM and topic() */
    EXPECT(sql, "$aws/rules/myrule/foo/bar", "{}", "{\"t\":\"foo/bar\",\"a\":\"foo\"}");
    EXPECT("SELECT topic(2) AS b FROM 'a/+/c'", "a//c", "{}", "{\"b\":\"\"}");
}

Test(rules, string_functions)
{
    VAL("upper('hello')", "{}", "\"HELLO\"");
    VAL("lower('HeLLo')", "{}", "\"hello\"");
    VAL("upper(a)", "{\"a\":[\"hello\"]}", "\"[\\\"HELLO\\\"]\"");
    VAL("upper(12)", "{}", "\"12\"");
    UNDEF("upper(null)", "{}");
    UNDEF("upper()", "{}");
    VAL("trim('  a b \t')", "{}", "\"a b\"");
    UNDEF("trim(x)", "{}");
    VAL("length('abc')", "{}", "3");
    VAL("length(false)", "{}", "5");
    VAL("length('\xc3\xa9t\xc3\xa9')", "{}", "3");
    VAL("substring('123456', 2)", "{}", "\"3456\"");
    VAL("substring('123456', 0, 2)", "{}", "\"12\"");
    VAL("substring('123456', 4, 2)", "{}", "\"\"");
    VAL("substring('123456', -5, 100)", "{}", "\"123456\"");
    VAL("substring('123456', 1.9, 3.2)", "{}", "\"23\"");
    VAL("substring('\xc3\xa9t\xc3\xa9', 1)", "{}", "\"t\xc3\xa9\"");
    VAL("startswith('cat', 'ca')", "{}", "true");
    VAL("endswith('cat', 'ca')", "{}", "false");
    VAL("indexof('abcd', 'cd')", "{}", "2");
    VAL("indexof('abcd', 'x')", "{}", "-1");
    UNDEF("startswith(null, 'a')", "{}");
    UNDEF("indexof('a', x)", "{}");
}

Test(rules, concat_function)
{
    UNDEF("concat()", "{}");
    VAL("concat(5)", "{}", "5");
    VAL("concat(1, 'hello')", "{}", "\"1hello\"");
    VAL("concat('a', 2.5, true)", "{}", "\"a2.5true\"");
    VAL("concat(a, 3, [4, 'x'])", "{\"a\":[1,2]}", "[1,2,3,4,\"x\"]");
    UNDEF("concat('a', x)", "{}");
}

Test(rules, get_function)
{
    VAL("get(a, 1)", "{\"a\":[10,20]}", "20");
    UNDEF("get(a, 2)", "{\"a\":[10,20]}");
    UNDEF("get(a, -1)", "{\"a\":[10,20]}");
    VAL("get(a, 'my-key')", "{\"a\":{\"my-key\":true}}", "true");
    VAL("get(a, \"1\")", "{\"a\":{\"1\":\"one\"}}", "\"one\"");
    VAL("get('abc', 1)", "{}", "\"b\"");
    UNDEF("get('abc', 3)", "{}");
    UNDEF("get(a, 'x')", "{\"a\":[1]}");
}

Test(rules, numeric_functions)
{
    VAL("abs(-3)", "{}", "3");
    VAL("abs(-2.5)", "{}", "2.5");
    VAL("abs('-4')", "{}", "4");
    UNDEF("abs('x')", "{}");
    UNDEF("abs(true)", "{}");
    VAL("round(1.5)", "{}", "2");
    VAL("round(-1.5)", "{}", "-2");
    VAL("round(2.4)", "{}", "2");
    VAL("floor(-1.5)", "{}", "-2");
    VAL("ceil(1.2)", "{}", "2");
    VAL("ceil(7)", "{}", "7");
    VAL("trunc(2.3456, 2)", "{}", "2.34");
    VAL("trunc(-2.3456, 1)", "{}", "-2.3");
    VAL("mod(7, 3)", "{}", "1");
    UNDEF("mod(7, 0)", "{}");
    VAL("power(2, 10)", "{}", "1024");
    VAL("sqrt(2.25)", "{}", "1.5");
    UNDEF("sqrt(-1)", "{}");
    VAL("sign(-4.5)", "{}", "-1");
    VAL("sign(0)", "{}", "0");
    VAL("sign(9)", "{}", "1");
}

Test(rules, cast_function)
{
    VAL("cast(true AS Int)", "{}", "1");
    VAL("cast('12.7' AS Int)", "{}", "12");
    VAL("cast(3 AS Decimal)", "{}", "3");
    VAL("cast(3.25 AS Double)", "{}", "3.25");
    VAL("cast(3.25 AS String)", "{}", "\"3.25\"");
    VAL("cast(0 AS Boolean)", "{}", "false");
    VAL("cast('TRUE' AS Bool)", "{}", "true");
    UNDEF("cast('x' AS Int)", "{}");
    UNDEF("cast(null AS String)", "{}");
}

Test(rules, output_shape)
{
    /* later items with the same key win; Undefined ones do not */
    EXPECT("SELECT a, 2 AS a FROM 't'", "t", "{\"a\":1}", "{\"a\":2}");
    EXPECT("SELECT a, x AS a FROM 't'", "t", "{\"a\":1}", "{\"a\":1}");
    EXPECT("SELECT 9 AS x, * FROM 't'", "t", "{\"x\":1,\"y\":2}", "{\"x\":1,\"y\":2}");
    EXPECT("SELECT 9 AS z, * FROM 't'", "t", "{\"x\":1,\"y\":2}", "{\"z\":9,\"x\":1,\"y\":2}");
    EXPECT("SELECT * FROM 't'", "t", "{\"x\":1,\"y\":2,\"x\":3}", "{\"x\":1,\"y\":2,\"x\":3}");
    EXPECT("SELECT *, 5 AS x FROM 't'", "t", "{\"x\":1,\"y\":2,\"x\":3}", "{\"y\":2,\"x\":5}");
    EXPECT("SELECT * FROM 't'", "t", "{\"a\\u0062\":2.0}", "{\"ab\":2}");
    EXPECT("SELECT x FROM 't'", "t", "{}", "{}");
    EXPECT("SELECT [1, x, 'a'] AS l, {} AS e, [] AS f FROM 't'", "t", "{}",
           "{\"l\":[1,\"a\"],\"e\":{},\"f\":[]}");
    EXPECT("SELECT {'a': {'b': [x, 1.25]}} AS n FROM 't'", "t", "{\"x\":null}",
           "{\"n\":{\"a\":{\"b\":[null,1.25]}}}");
    VAL("value", "{\"value\":1}", "1");
    EXPECT("SELECT value FROM 't'", "t", "{\"value\":1}", "{\"value\":1}");
    EXPECT("SELECT value AS v, timestamp FROM 't'", "t", "{\"value\":1,\"timestamp\":2}",
           "{\"v\":1,\"timestamp\":2}");
    EXPECT("select value x from 't'", "t", "{\"x\":5}", "5"); /* keywords in any case */
    EXPECT("SELECT 'it''s' AS q, \"a\"\"b\" AS r FROM 'x/+' where true", "x/y", "{}",
           "{\"q\":\"it's\",\"r\":\"a\\\"b\"}");
    VAL("null", "{}", "null");
    VAL("'\xe2\x82\xac'", "{}", "\"\xe2\x82\xac\"");
}

Test(rules, where_needs_boolean_true)
{
    NOFIRE("SELECT 1 AS a FROM 't' WHERE 1", "t", "{}");
    NOFIRE("SELECT 1 AS a FROM 't' WHERE 'true'", "t", "{}");
    NOFIRE("SELECT 1 AS a FROM 't' WHERE null", "t", "{}");
    EXPECT("SELECT 1 AS a FROM 't' WHERE 'true' = 'true'", "t", "{}", "{\"a\":1}");
}

Test(rules, from_matching_aws_mode)
{
    /* in AWS mode `#` does not match its parent level */
    NOFIRE("SELECT 1 AS a FROM 'a/#'", "a", "{}");
    EXPECT("SELECT 1 AS a FROM 'a/#'", "a/b", "{}", "{\"a\":1}");
    NOFIRE("SELECT 1 AS a FROM '#'", "$aws/things/x", "{}");
    ciot__rule *r = compile("SELECT 1 AS a FROM '#'");
    ciot__rules_msg m = {"a/+", 3, "{}", 2, NULL, 0, 0};
    bool fired;
    size_t len;
    char buf[32];
    cr_assert_eq(ciot__rules_eval(&fired, &len, buf, sizeof buf, r, &m), CIOT_EINVAL);
    cr_assert_eq(ciot__rules_eval(NULL, &len, buf, sizeof buf, r, &m), CIOT_EINVAL);
    cr_assert_eq(ciot__rules_eval(&fired, &len, NULL, 5, r, &m), CIOT_EINVAL);
    size_t fl = 0;
    cr_assert_eq(memcmp(ciot__rules_from(r, &fl), "#", 1), 0);
    cr_assert_eq(fl, 1);
    ciot__rules_free(r);
}

Test(rules, scratch_exhaustion_is_an_error)
{
    /* concat doubling a string past the scratch area: an error, not a truncation */
    char pl[3000];
    memset(pl, 'x', sizeof pl);
    memcpy(pl, "{\"s\":\"", 6);
    memcpy(pl + sizeof pl - 3, "\"}", 3);
    ciot__rule *r = compile("SELECT concat(s, s, s, s) AS a FROM 't'");
    ciot__rules_msg m = {"t", 1, pl, strlen(pl), NULL, 0, 0};
    bool fired;
    size_t len;
    cr_assert_eq(ciot__rules_eval(&fired, &len, NULL, 0, r, &m), CIOT_ERANGE);
    cr_assert_not(fired);
    ciot__rules_free(r);
}

/* ---- compile errors ---- */

typedef struct bad {
    const char *sql;
    int rc;
    size_t offset;
    const char *msg; /* substring of the message */
} bad;

static const bad bad_sql[] = {
    {"", CIOT_EINVAL, 0, "1:1: expected SELECT"},
    {"SELECT a", CIOT_EINVAL, 8, "1:9: expected FROM"},
    {"SELECT deviceId, value as temperature 'x' FROM 'a'", CIOT_EINVAL, 38, "1:39: expected FROM"},
    {"SELECT a FROM", CIOT_EINVAL, 13, "quoted topic filter"},
    {"SELECT a FROM a/b", CIOT_EINVAL, 14, "quoted topic filter"},
    {"SELECT a FROM 'a/#/b'", CIOT_EINVAL, 14, "not a valid topic filter"},
    {"SELECT a FROM 'a+/b'", CIOT_EINVAL, 14, "not a valid topic filter"},
    {"SELECT a FROM ''", CIOT_EINVAL, 14, "not a valid topic filter"},
    {"SELECT a FROM 'a' WHERE (a > 1", CIOT_EINVAL, 30, "expected ')'"},
    {"SELECT a FROM 'a' WHERE a > 1)", CIOT_EINVAL, 29, "expected end of input"},
    {"SELECT (a FROM 't'", CIOT_EINVAL, 10, "expected ')'"},
    {"SELECT [1, 2 AS x FROM 't'", CIOT_EINVAL, 13, "expected ']'"},
    {"SELECT {'a' 1} AS x FROM 't'", CIOT_EINVAL, 12, "expected ':'"},
    {"SELECT {a: 1} AS x FROM 't'", CIOT_EINVAL, 8, "expected a string key"},
    {"SELECT foo(a) AS x FROM 't'", CIOT_EINVAL, 7, "unsupported function 'foo'"},
    {"SELECT uuid() AS x FROM 't'", CIOT_EINVAL, 7, "unsupported function 'uuid'"},
    {"SELECT 1.x AS x FROM 't'", CIOT_EINVAL, 7, "bad number literal"},
    {"SELECT 1. AS x FROM 't'", CIOT_EINVAL, 7, "bad number literal"},
    {"SELECT 1e AS x FROM 't'", CIOT_EINVAL, 7, "bad number literal"},
    {"SELECT 12abc AS x FROM 't'", CIOT_EINVAL, 7, "bad number literal"},
    {"SELECT 007 AS x FROM 't'", CIOT_EINVAL, 7, "leading zero"},
    {"SELECT 99999999999999999999 AS x FROM 't'", CIOT_EINVAL, 7, "out of range"},
    {"SELECT 1e999 AS x FROM 't'", CIOT_EINVAL, 7, "out of range"},
    {"SELECT a FROM 't", CIOT_EINVAL, 14, "unterminated string"},
    {"SELECT 'abc AS x FROM 't'", CIOT_EINVAL, 24, "unterminated string"},
    {"SELECT a FROM 't' WHERE a != 1", CIOT_EINVAL, 26, "use <>"},
    {"SELECT a FROM 't' WHERE a == 1", CIOT_EINVAL, 27, "expected an expression"},
    {"SELECT a; FROM 't'", CIOT_EINVAL, 8, "unexpected character ';'"},
    {"SELECT a -- c\nFROM 't'", CIOT_EINVAL, 14, "2:1: expected AS"},
    {"SELECT a +\n  FROM 't'", CIOT_EINVAL, 13, "2:3: expected an expression"},
    {"SELECT 1 FROM 't'", CIOT_EINVAL, 9, "expected AS"},
    {"SELECT a AS FROM 't'", CIOT_EINVAL, 12, "alias"},
    {"SELECT a AS b c FROM 't'", CIOT_EINVAL, 14, "expected FROM"},
    {"SELECT a. FROM 't'", CIOT_EINVAL, 10, "field name"},
    {"SELECT a[x] FROM 't'", CIOT_EINVAL, 9, "array index"},
    {"SELECT a[1.5] FROM 't'", CIOT_EINVAL, 9, "array index"},
    {"SELECT a FROM 't' WHERE", CIOT_EINVAL, 23, "expected an expression"},
    {"SELECT a FROM 't' WHERE a >", CIOT_EINVAL, 27, "expected an expression"},
    {"SELECT a FROM 't' WHERE a > 1 < 2", CIOT_EINVAL, 30, "expected end of input"},
    {"SELECT a FROM 't' ORDER BY a", CIOT_EINVAL, 18, "expected WHERE or end of input"},
    {"SELECT VALUE a, b FROM 't'", CIOT_EINVAL, 14, "exactly one"},
    {"SELECT VALUE * FROM 't'", CIOT_EINVAL, 13, "not '*'"},
    {"SELECT CASE a THEN 1 END AS x FROM 't'", CIOT_EINVAL, 14, "expected WHEN"},
    {"SELECT CASE a WHEN 1 THEN 2 AS x FROM 't'", CIOT_EINVAL, 28, "expected END"},
    {"SELECT (SELECT a FROM 'b') AS x FROM 't'", CIOT_EINVAL, 8, "nested SELECT"},
    {"SELECT cast(a AS Blob) AS x FROM 't'", CIOT_EINVAL, 17, "a type"},
    {"SELECT select FROM 't'", CIOT_EINVAL, 7, "expected an expression"},
    {"SELECT a FROM 't' WHERE from", CIOT_EINVAL, 24, "expected an expression"},
    {"SELECT a FROM 't' WHERE a > 1 AND", CIOT_EINVAL, 33, "expected an expression"},
    {"SELECT upper(a AS x FROM 't'", CIOT_EINVAL, 15, "expected ')'"},
    {"SELECT \x01 FROM 't'", CIOT_EINVAL, 7, "unexpected byte"},
    {"SELECT a FROM 't' WHERE a = '\xff'", CIOT_EINVAL, 29, "not valid UTF-8"},
};

Test(rules, malformed_sql_rejected_with_position)
{
    for (size_t i = 0; i < sizeof bad_sql / sizeof bad_sql[0]; i++) {
        const bad *b = &bad_sql[i];
        ciot__rule *r = (ciot__rule *)0x1;
        ciot__rules_error err;
        int rc = ciot__rules_compile(&r, &err, b->sql, strlen(b->sql), V, strlen(V));
        cr_assert_eq(rc, b->rc, "[%zu] %s: rc %d, %s", i, b->sql, rc, err.msg);
        cr_assert_null(r, "[%zu]", i);
        cr_assert_eq(err.offset, b->offset, "[%zu] %s: offset %zu, %s", i, b->sql, err.offset,
                     err.msg);
        cr_assert(strstr(err.msg, b->msg), "[%zu] %s: message '%s' lacks '%s'", i, b->sql,
                  err.msg, b->msg);
    }
}

Test(rules, deep_nesting_is_an_error)
{
    static char sql[200000];
    const size_t depths[] = {100, 1000, 50000};
    for (size_t d = 0; d < 3; d++) {
        size_t k = 0;
        k += (size_t)sprintf(sql + k, "SELECT VALUE ");
        for (size_t i = 0; i < depths[d] && k < sizeof sql - 100; i++)
            sql[k++] = '(';
        sql[k++] = '1';
        for (size_t i = 0; i < depths[d] && k < sizeof sql - 100; i++)
            sql[k++] = ')';
        k += (size_t)sprintf(sql + k, " FROM 't'");
        ciot__rule *r = NULL;
        ciot__rules_error err;
        int rc = ciot__rules_compile(&r, &err, sql, k, V, strlen(V));
        cr_assert(rc == CIOT_EDEPTH || rc == CIOT_ERANGE, "depth %zu: %d %s", depths[d], rc, err.msg);
        cr_assert(strstr(err.msg, rc == CIOT_EDEPTH ? "too deeply" : "too long"), "%s", err.msg);
        cr_assert_null(r);
    }
    /* prefix operators and long left-associative chains are bounded too */
    const char *chains[] = {"NOT ", "- ", "1 + ", "upper("};
    for (size_t c = 0; c < 4; c++) {
        size_t k = (size_t)sprintf(sql, "SELECT VALUE ");
        for (int i = 0; i < 300; i++)
            k += (size_t)sprintf(sql + k, "%s", chains[c]);
        sql[k++] = '1';
        for (int i = 0; c == 3 && i < 300; i++)
            sql[k++] = ')';
        k += (size_t)sprintf(sql + k, " FROM 't'");
        ciot__rule *r = NULL;
        ciot__rules_error err;
        int rc = ciot__rules_compile(&r, &err, sql, k, V, strlen(V));
        cr_assert_eq(rc, CIOT_EDEPTH, "chain %zu: %d %s", c, rc, err.msg);
    }
    /* just inside the limit works */
    size_t k = (size_t)sprintf(sql, "SELECT VALUE ");
    for (int i = 0; i < 40; i++)
        sql[k++] = '(';
    sql[k++] = '7';
    for (int i = 0; i < 40; i++)
        sql[k++] = ')';
    sql[k] = 0;
    strcat(sql, " FROM 't'");
    VAL("((((((((((1))))))))))", "{}", "1");
    ciot__rule *r = compile(sql);
    ciot__rules_free(r);
}

Test(rules, version_and_arguments)
{
    ciot__rule *r = NULL;
    ciot__rules_error err;
    const char *sql = "SELECT a FROM 't'";
    cr_assert_eq(ciot__rules_compile(&r, &err, sql, strlen(sql), "2015-10-08", 10), CIOT_EVERSION);
    cr_assert(strstr(err.msg, "version"));
    cr_assert_eq(ciot__rules_compile(&r, &err, sql, strlen(sql), "beta", 4), CIOT_EVERSION);
    cr_assert_eq(ciot__rules_compile(&r, NULL, sql, strlen(sql), NULL, 0), CIOT_EVERSION);
    cr_assert_eq(ciot__rules_compile(NULL, &err, sql, strlen(sql), V, 10), CIOT_EINVAL);
    cr_assert_eq(ciot__rules_compile(&r, &err, NULL, 3, V, 10), CIOT_EINVAL);
    cr_assert_null(r);
    /* no NUL needed: the text is a pointer and a length */
    cr_assert_eq(ciot__rules_compile(&r, NULL, "SELECT a FROM 't'XYZ", 17, V, 10), 0);
    /* the rule owns a copy of its text */
    char buf[64];
    strcpy(buf, "SELECT abc AS k FROM 'q/+'");
    ciot__rule *r2 = NULL;
    cr_assert_eq(ciot__rules_compile(&r2, NULL, buf, strlen(buf), V, 10), 0);
    memset(buf, 'z', sizeof buf);
    ciot__rules_msg m = {"q/1", 3, "{\"abc\":4}", 9, NULL, 0, 0};
    bool fired;
    size_t len;
    char out[32];
    cr_assert_eq(ciot__rules_eval(&fired, &len, out, sizeof out, r2, &m), 0);
    cr_assert_str_eq(out, "{\"k\":4}");
    ciot__rules_free(r);
    ciot__rules_free(r2);
    ciot__rules_free(NULL);
}

/* ---- allocation: one block at compile time, nothing while evaluating ---- */

struct counter {
    int mallocs, reallocs, frees;
    bool fail;
};

static void *count_malloc(size_t n, void *ctx)
{
    struct counter *c = ctx;
    c->mallocs++;
    return c->fail ? NULL : malloc(n);
}

static void *count_realloc(void *p, size_t n, void *ctx)
{
    ((struct counter *)ctx)->reallocs++;
    return realloc(p, n);
}

static void count_free(void *p, void *ctx)
{
    if (p)
        ((struct counter *)ctx)->frees++;
    free(p);
}

Test(rules, one_allocation_at_compile_none_at_eval)
{
    struct counter c = {0, 0, 0, false};
    ciot_allocator a = {count_malloc, count_realloc, count_free, &c};
    cr_assert_eq(ciot_set_allocator(&a), 0);
    ciot__rule *r = NULL;
    cr_assert_eq(ciot__rules_compile(&r, NULL, R1, strlen(R1), V, strlen(V)), 0);
    cr_assert_eq(c.mallocs, 1);
    const char *pl = TELEMETRY("37.31");
    ciot__rules_msg m = {"sensors/x/temperature", 21, pl, strlen(pl), "c", 1, 0};
    char out[256];
    for (int i = 0; i < 1000; i++) {
        bool fired = false;
        size_t len = 0;
        cr_assert_eq(ciot__rules_eval(&fired, &len, out, sizeof out, r, &m), 0);
        cr_assert(fired);
    }
    cr_assert_eq(c.mallocs, 1);
    cr_assert_eq(c.reallocs, 0);
    ciot__rules_free(r);
    cr_assert_eq(c.frees, 1);
    /* out of memory is reported, nothing leaks */
    c.fail = true;
    r = (ciot__rule *)0x1;
    cr_assert_eq(ciot__rules_compile(&r, NULL, R1, strlen(R1), V, strlen(V)), CIOT_ENOMEM);
    cr_assert_null(r);
    /* a compile error after the allocation frees it */
    c.fail = false;
    cr_assert_eq(ciot__rules_compile(&r, NULL, "SELECT a FROM 't' WHERE (", 25, V, strlen(V)),
                 CIOT_EINVAL);
    cr_assert_eq(c.mallocs, c.frees + 1); /* the failed malloc was never freed, nothing else */
}

/* ---- randomized: arithmetic and comparisons against C ---- */

static double test_scale(void)
{
    const char *s = getenv("CIOT_TEST_SCALE");
    double f = s ? atof(s) : 1.0;
    return f > 0 ? f : 1.0;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15u;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

Test(rules, randomized_arithmetic_matches_c)
{
    static const char *ops[] = {"+", "-", "*", "/", "%", "<", "<=", ">", ">=", "=", "<>"};
    ciot__rule *rules[11];
    for (int o = 0; o < 11; o++) {
        char sql[64];
        snprintf(sql, sizeof sql, "SELECT VALUE a %s b FROM 't'", ops[o]);
        rules[o] = compile(sql);
    }
    long iters = (long)(20000 * test_scale());
    if (iters < 200)
        iters = 200;
    char payload[128], out[128];
    for (long it = 0; it < iters; it++) {
        int o = (int)(rnd() % 11);
        bool dec = rnd() % 2;
        int64_t x = (int64_t)(rnd() % 2000001) - 1000000, y = (int64_t)(rnd() % 2001) - 1000;
        double dx = (double)x / 7.0 + 0.25, dy = (double)y / 3.0 + 0.125; /* never whole */
        if (dec)
            snprintf(payload, sizeof payload, "{\"a\":%.17g,\"b\":%.17g}", dx, dy);
        else
            snprintf(payload, sizeof payload, "{\"a\":%lld,\"b\":%lld}", (long long)x, (long long)y);
        ciot__rules_msg m = {"t", 1, payload, strlen(payload), NULL, 0, 0};
        bool fired = false;
        size_t len = 0;
        cr_assert_eq(ciot__rules_eval(&fired, &len, out, sizeof out, rules[o], &m), 0);
        if (o >= 5) {
            bool want;
            double a = dec ? dx : (double)x, b = dec ? dy : (double)y;
            switch (o) {
            case 5: want = a < b; break;
            case 6: want = a <= b; break;
            case 7: want = a > b; break;
            case 8: want = a >= b; break;
            case 9: want = a == b; break;
            default: want = a != b; break;
            }
            cr_assert(fired);
            cr_assert_str_eq(out, want ? "true" : "false", "%s %s", payload, ops[o]);
            continue;
        }
        if ((o == 3 || o == 4) && (dec ? dy == 0 : y == 0)) {
            cr_assert_not(fired, "%s %s by zero", payload, ops[o]);
            continue;
        }
        cr_assert(fired, "%s %s", payload, ops[o]);
        if (!dec) {
            int64_t want = o == 0 ? x + y : o == 1 ? x - y : o == 2 ? x * y : o == 3 ? x / y : x % y;
            char w[32];
            snprintf(w, sizeof w, "%lld", (long long)want);
            cr_assert_str_eq(out, w, "%s %s", payload, ops[o]);
        } else {
            double want = o == 0 ? dx + dy : o == 1 ? dx - dy : o == 2 ? dx * dy : o == 3 ? dx / dy : fmod(dx, dy);
            char *end;
            double got = strtod(out, &end);
            cr_assert_eq(*end, 0, "%s", out);
            cr_assert(got == want, "%s %s: %s vs %.17g", payload, ops[o], out, want);
        }
    }
    for (int o = 0; o < 11; o++)
        ciot__rules_free(rules[o]);
}

static int counting_random(void *ctx, uint8_t *buf, size_t n)
{
    unsigned *calls = ctx;
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)(0xF0 + i + *calls);
    ++*calls;
    return 0;
}

static int failing_random(void *ctx, uint8_t *buf, size_t n)
{
    (void)ctx;
    (void)buf;
    (void)n;
    return -1;
}

Test(rules, newuuid_uses_the_injected_source)
{
    ciot__rule *r = compile("SELECT newuuid() AS a, newUUID() AS b, newuuid(1) AS c FROM 't'");
    unsigned calls = 0;
    ciot__rules_msg m = {"t", 1, "{}", 2, NULL, 0, 0, counting_random, &calls};
    char out[128];
    bool fired;
    size_t len;
    cr_assert_eq(ciot__rules_eval(&fired, &len, out, sizeof out, r, &m), 0);
    cr_assert_str_eq(out, "{\"a\":\"f0f1f2f3-f4f5-46f7-b8f9-fafbfcfdfeff\","
                          "\"b\":\"f1f2f3f4-f5f6-47f8-b9fa-fbfcfdfeff00\"}");
    cr_assert_eq(calls, 2);
    m.random = failing_random;
    cr_assert_eq(ciot__rules_eval(&fired, &len, out, sizeof out, r, &m), 0);
    cr_assert_str_eq(out, "{}");
    m.random = NULL;
    cr_assert_eq(ciot__rules_eval(&fired, &len, out, sizeof out, r, &m), 0);
    cr_assert_str_eq(out, "{}");
    ciot__rules_free(r);
}

/* ---- several rules on one prepared message (ciot__rules_doc) ---- */

/* Rules over the usual fields, *, duplicates, nesting, functions. */
static const char *const shared_rules[] = {
    R1,
    "SELECT * FROM '#'",
    "SELECT *, value AS deviceId FROM 'sensors/#'",
    "SELECT deviceId, *, 'x' AS value FROM 'sensors/+/temperature'",
    "SELECT value, value AS value, n1 AS value FROM '#'",
    "SELECT VALUE value FROM '#'",
    "SELECT VALUE metadata.unit FROM '#'",
    "SELECT VALUE n1 FROM '#' WHERE n1 <> 0",
    "SELECT a.b[1] AS x, get(arr, 0) AS y, upper(deviceId) AS u, arr[2] AS z FROM '#'",
    ("SELECT concat(deviceId, '-', value) AS id, value * 2 AS dbl, value + 1 AS inc FROM '#' "
     "WHERE value >= 0"),
    ("SELECT CASE sensorType WHEN 'temperature' THEN 't' ELSE 'o' END AS k, "
     "isUndefined(missing) AS m, isNull(nul) AS nn FROM '#'"),
    "SELECT topic(2) AS dev, topic() AS t, clientid() AS c, timestamp() AS ts FROM 'sensors/+/+'",
    "SELECT n1, n2, n3, n4, big, neg, z, huge, tiny, value FROM '#'",
    "SELECT * FROM '#' WHERE n1 > 0",
    "SELECT m0, m31, m32, m39, value FROM '#'",
    "SELECT {'a': value, 'b': deviceId, 'c': n2} AS o, [value, 1, 'x', n3] AS arr FROM '#'",
    "SELECT kA, esc, lower(esc) AS l, length(esc) AS n, value FROM '#'",
    ("SELECT abs(neg) AS a, round(n2) AS r, cast(n1 AS String) AS s, cast(value AS Int) AS i "
     "FROM '#'"),
    "SELECT * FROM 'other/topic'",
    "SELECT value FROM 'sensors/#' WHERE deviceId = 'temperature-sensor-001' AND NOT (value < 0)",
    "SELECT deviceId AS d, deviceId AS e, timestamp FROM 'sensors/+/temperature' WHERE value > 35",
    "SELECT metadata, metadata.accuracy AS acc, n4 FROM '#'",
    "SELECT VALUE {'v': value, 'w': n1 + n2} FROM '#'",
    "SELECT esc AS value, * FROM '#'",
};

static const char *const shared_topics[] = {
    "sensors/temperature-sensor-001/temperature",
    "sensors/x/humidity",
    "other/topic",
    "$aws/rules/r1/sensors/a/temperature",
    "t",
};

/* Fills buf with payload number k of the corpus (some generated). */
static void shared_payload(int k, char *buf, size_t cap)
{
    static const char *const fixed[] = {
        ("{\"deviceId\":\"temperature-sensor-001\",\"sensorType\":\"temperature\",\"value\":37.31,"
         "\"timestamp\":\"2026-11-26T04:56:27.123Z\",\"metadata\":{\"unit\":\"celsius\","
         "\"accuracy\":\"\xc2\xb1" "0.5\xc2\xb0" "C\"}}"),
        "{\"deviceId\":\"d\",\"value\":36}",
        "{\"value\":1,\"value\":40.5,\"deviceId\":\"a\",\"deviceId\":\"b\"}",
        ("{\"n1\":1.0,\"n2\":1e2,\"n3\":-0,\"n4\":37.310,\"big\":12345678901234567890,"
         "\"neg\":-7,\"z\":-0.0,\"huge\":1E400,\"tiny\":1e-7,\"value\":0.1}"),
        "{\"k\\u0041\":\"esc key\",\"esc\":\"a\\\"b\\n\\u00e9\",\"value\":\"37\"}",
        "{\"a\":{\"b\":[10,{\"c\":true},\"s\"]},\"arr\":[\"x\",2,null],\"nul\":null,\"value\":false}",
        "{\"sensorType\":\"humidity\",\"value\":-3,\"metadata\":[1,2],\"n1\":\"12\",\"n2\":\"2.5\"}",
        "[1,2,3]",
        "\"just a string\"",
        "42",
        "",
        "{\"value\":1,",
        "not json",
        "{}",
        " { \"value\" : 50 , \"deviceId\" : \"sp aces\" } ",
        "{\"\\u0076alue\":99,\"value\":98,\"esc\":\"\\/\"}",
    };
    const int nfixed = (int)(sizeof fixed / sizeof fixed[0]);
    if (k < nfixed) {
        snprintf(buf, cap, "%s", fixed[k]);
        return;
    }
    /* many members: beyond what the doc indexes, with the fields at the end */
    int members = k == nfixed ? 31 : k == nfixed + 1 ? 32 : k == nfixed + 2 ? 33 : 40;
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, "{");
    for (int i = 0; i < members; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s\"m%d\":%d", i ? "," : "", i, i * 3);
    snprintf(buf + n, cap - n, ",\"value\":%d.5,\"m0\":\"again\",\"deviceId\":\"many\"}", members);
}
#define SHARED_PAYLOADS 20

Test(rules, shared_doc_equals_rules_alone)
{
    const int nrules = (int)(sizeof shared_rules / sizeof shared_rules[0]);
    ciot__rule *rules[sizeof shared_rules / sizeof shared_rules[0]];
    for (int i = 0; i < nrules; i++)
        rules[i] = compile(shared_rules[i]);
    long iters = (long)(3000 * test_scale());
    if (iters < 100)
        iters = 100;
    static char payload[2048], alone[4096], shared[4096];
    long fired_total = 0, compared = 0;
    for (long it = 0; it < iters; it++) {
        const char *topic = shared_topics[rnd() % (sizeof shared_topics / sizeof shared_topics[0])];
        shared_payload((int)(rnd() % SHARED_PAYLOADS), payload, sizeof payload);
        ciot__rules_msg m = {topic, strlen(topic), payload, strlen(payload), "dev-1", 5,
                             1700000000123, NULL, NULL};
        ciot__rules_doc doc;
        ciot__rules_doc_init(&doc, &m);
        int k = 1 + (int)(rnd() % 8);
        for (int j = 0; j < k; j++) {
            const ciot__rule *r = rules[rnd() % (uint64_t)nrules];
            size_t fl;
            const char *f = ciot__rules_from(r, &fl);
            /* what the rule set does: rules found through the topic set of
             * their filters skip the FROM check */
            bool match = false;
            size_t skip = strncmp(topic, "$aws/rules/", 11) == 0 ? strlen("$aws/rules/r1/") : 0;
            cr_assert_eq(ciot_topic_match_ex(f, fl, topic + skip, strlen(topic) - skip,
                                             CIOT_MATCH_AWS, &match), 0);
            bool from_matched = match && rnd() % 2;
            size_t cap = rnd() % 4 == 0 ? (size_t)(rnd() % 64) : sizeof shared;
            bool fa = false, fs = false;
            size_t la = 0, ls = 0;
            memset(alone, 0x55, sizeof alone);
            memset(shared, 0x55, sizeof shared);
            int ra = ciot__rules_eval(&fa, &la, alone, cap, r, &m);
            int rs = ciot__rules_eval_doc(&fs, &ls, shared, cap, r, &doc, from_matched);
            cr_assert_eq(rs, ra, "rc %d vs %d: %s on %s", rs, ra, shared_rules[0], payload);
            cr_assert_eq(fs, fa, "fired: rule %p on '%s' %s", (const void *)r, topic, payload);
            cr_assert_eq(ls, la, "length: on '%s' %s", topic, payload);
            if (ra == 0 && fa)
                cr_assert(memcmp(alone, shared, la + 1) == 0, "output %.*s vs %.*s on %s", (int)la,
                          alone, (int)ls, shared, payload);
            fired_total += fa;
            compared++;
        }
    }
    cr_assert_gt(fired_total, compared / 5, "the corpus should fire often (%ld of %ld)", fired_total,
                 compared);
    for (int i = 0; i < nrules; i++)
        ciot__rules_free(rules[i]);
}

/* The shared doc against known outputs: the same rule three times, then
 * rules reading the same numbers in other forms. */
Test(rules, shared_doc_known_outputs)
{
    ciot__rule *a = compile(R1), *b = compile("SELECT value, n FROM '#'"),
               *c = compile("SELECT VALUE value * 1 FROM '#'");
    const char *p = "{\"deviceId\":\"d\",\"sensorType\":\"t\",\"value\":37.310,\"timestamp\":1,\"n\":1e2}";
    const char *t = "sensors/d/temperature";
    ciot__rules_msg m = {t, strlen(t), p, strlen(p), NULL, 0, 0, NULL, NULL};
    ciot__rules_doc doc;
    ciot__rules_doc_init(&doc, &m);
    char out[256];
    bool fired;
    size_t len;
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(ciot__rules_eval_doc(&fired, &len, out, sizeof out, a, &doc, i == 1), 0);
        cr_assert(fired);
        cr_assert_str_eq(out, "{\"deviceId\":\"d\",\"sensorType\":\"t\",\"temperature\":37.31,"
                              "\"timestamp\":1,\"alertType\":\"HIGH_TEMPERATURE\"}");
    }
    cr_assert_eq(ciot__rules_eval_doc(&fired, &len, out, sizeof out, b, &doc, false), 0);
    cr_assert_str_eq(out, "{\"value\":37.31,\"n\":100}");
    cr_assert_eq(ciot__rules_eval_doc(&fired, &len, out, sizeof out, c, &doc, false), 0);
    cr_assert_str_eq(out, "37.31");
    /* a topic that does not match FROM: nothing, unless the caller vouches */
    const char *t2 = "other";
    ciot__rules_msg m2 = {t2, strlen(t2), p, strlen(p), NULL, 0, 0, NULL, NULL};
    ciot__rules_doc_init(&doc, &m2);
    cr_assert_eq(ciot__rules_eval_doc(&fired, &len, out, sizeof out, a, &doc, false), 0);
    cr_assert_not(fired);
    cr_assert_eq(ciot__rules_eval_doc(&fired, &len, out, sizeof out, NULL, &doc, false), CIOT_EINVAL);
    cr_assert_eq(ciot__rules_eval_doc(&fired, &len, out, sizeof out, a, NULL, false), CIOT_EINVAL);
    ciot__rules_free(a);
    ciot__rules_free(b);
    ciot__rules_free(c);
}

/* The numeric-string conversion shared by the rules engine and the threshold
 * alerts (lib/core/rules_num.c): the pattern, leading zeros, limits. */
Test(rules, numeric_string_edge_cases)
{
    static const struct {
        const char *s;
        double want;
    } numeric[] = {{"0", 0},        {"-0", 0},     {"7", 7},         {"007", 7},
              {"-007.5", -7.5}, {"00", 0},     {"0.25", 0.25},   {"1e3", 1000},
              {"1E-2", 0.01},  {"01e2", 100}, {"-1.5e1", -15},  {"000.5", 0.5}};
    for (size_t i = 0; i < sizeof numeric / sizeof *numeric; i++) {
        double d = -1;
        cr_assert(ciot__rules_numeric_string(numeric[i].s, strlen(numeric[i].s), &d), "%s", numeric[i].s);
        cr_assert_float_eq(d, numeric[i].want, 1e-12, "%s -> %g", numeric[i].s, d);
    }
    static const char *const not_numeric[] = {"",   "-",   "+1",  ".5",  "1.",   "1.e2", "1e",
                                      "1e+2", "1e-", " 1",  "1 ",  "0x10", "1,5",  "--1",
                                      "1e400", "NaN", "inf", "1.5.2"};
    for (size_t i = 0; i < sizeof not_numeric / sizeof *not_numeric; i++) {
        double d = 0;
        cr_assert_not(ciot__rules_numeric_string(not_numeric[i], strlen(not_numeric[i]), &d), "'%s'", not_numeric[i]);
    }
    /* not NUL-terminated: only n bytes are read */
    double d = 0;
    cr_assert(ciot__rules_numeric_string("12x", 2, &d));
    cr_assert_float_eq(d, 12, 0);
    /* the length limit: CIOT__RULES_MAX_NUMSTR digits convert, one more does not */
    char big[CIOT__RULES_MAX_NUMSTR + 2];
    memset(big, '0', sizeof big);
    big[CIOT__RULES_MAX_NUMSTR - 1] = '9';
    cr_assert(ciot__rules_numeric_string(big, CIOT__RULES_MAX_NUMSTR, &d));
    cr_assert_float_eq(d, 9, 0);
    big[CIOT__RULES_MAX_NUMSTR] = '9';
    cr_assert_not(ciot__rules_numeric_string(big, CIOT__RULES_MAX_NUMSTR + 1, &d));
}
