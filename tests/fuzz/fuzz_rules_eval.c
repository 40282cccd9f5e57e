/*
 * libFuzzer target: the rule set (ciot_rules_process) with a fixed set of
 * rules loaded once: the seed's CreateTopicRule payload (lambda, sns,
 * dynamoDBv2 actions), and rules using templates, functions, CASE,
 * constructors, SELECT * and an errorAction.
 *
 * Input: a topic, a 0x00 byte, then a payload (no 0x00: the whole input is
 * the topic). Checks:
 *  - ciot_rules_process returns 0, or CIOT_EINVAL for a topic that is not
 *    a valid topic name;
 *  - every output document, every function's document, every republished
 *    payload (including errorAction documents) is one valid JSON text
 *    (ciot_json_validate), and every republish topic is a valid topic name
 *    without wildcards.
 */
#include <cloudiot/cloudiot.h>

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char seed_rule[] =
    "{\"sql\":\"SELECT deviceId, sensorType, value as temperature, timestamp, "
    "'HIGH_TEMPERATURE' as alertType FROM 'sensors/+/temperature' WHERE value > 35\","
    "\"description\":\"d\",\"ruleDisabled\":false,\"awsIotSqlVersion\":\"2016-03-23\","
    "\"actions\":[{\"lambda\":{\"functionArn\":"
    "\"arn:aws:lambda:us-east-1:123456789012:function:ProcessTemperatureAlert\"}},"
    "{\"sns\":{\"targetArn\":\"arn:aws:sns:us-east-1:123456789012:TemperatureAlerts\","
    "\"roleArn\":\"arn:aws:iam::123456789012:role/IoTRulesRole\",\"messageFormat\":\"JSON\"}},"
    "{\"dynamoDBv2\":{\"roleArn\":\"arn:aws:iam::123456789012:role/IoTRulesRole\","
    "\"putItem\":{\"tableName\":\"TemperatureAlerts\"}}}]}";

static const char *const sql_rules[][2] = {
    {"star", "SELECT *, topic(2) AS t2, clientid() AS c, timestamp() AS ts FROM '#'"},
    {"cases", "SELECT VALUE CASE level WHEN 1 THEN 'low' WHEN 'x' THEN {'k': [level]} ELSE "
              "upper(level) END FROM '+/+'"},
    {"ctor", "SELECT {'a': a, 'b': [b, c.d, get(e, 0)]} AS o, concat(x, y) AS xy, "
             "substring(s, 1, 3) AS sub, a * 2 + 1 AS n FROM '#' WHERE NOT isUndefined(a) OR "
             "x <> 'z'"},
    {"value", "SELECT VALUE a FROM 'v/#'"},
};

static ciot_rules *set;

static void *tag(const char *s)
{
    union {
        const char *c;
        void *v;
    } u = {s};
    return u.v;
}

static void check_doc(const ciot_rules_output *o)
{
    size_t len;
    const char *d = ciot_rules_output_document(o, &len);
    if (ciot_json_validate(d, len) != 0)
        abort();
}

static int on_fn(ciot_rules *r, const ciot_rules_output *o, void *ud)
{
    (void)r;
    (void)ud;
    check_doc(o);
    return 0;
}

static int on_pub(void *ud, const char *topic, size_t tl, const void *payload, size_t pl, int qos)
{
    (void)ud;
    if (ciot_topic_name_check(topic, tl) != 0 || (qos != 0 && qos != 1) ||
        ciot_json_validate(payload, pl) != 0)
        abort();
    return 0;
}

static int64_t fixed_clock(void *ud)
{
    (void)ud;
    return 1700000000000;
}

static int fixed_random(void *ud, uint8_t *buf, size_t n)
{
    (void)ud;
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)(i * 37u + 11u);
    return 0;
}

static void must(int rc)
{
    if (rc != 0)
        abort();
}

static void setup(void)
{
    must(ciot_rules_new(&set));
    must(ciot_rules_add_payload(set, "seed", 4, seed_rule, sizeof seed_rule - 1));
    for (size_t i = 0; i < sizeof sql_rules / sizeof sql_rules[0]; i++)
        must(ciot_rules_add_sql(set, sql_rules[i][0], strlen(sql_rules[i][0]), sql_rules[i][1],
                                strlen(sql_rules[i][1])));
    static const char *const tpl = "out/${topic(1)}/${t2}/${c}";
    must(ciot_rules_add_republish_action(set, "star", 4, tpl, strlen(tpl), 1));
    must(ciot_rules_add_function_action(set, "cases", 5, "f", 1));
    must(ciot_rules_add_republish_action(set, "cases", 5, "c/${level}", 10, 0));
    static const char *const t2 = "r/${get(o, 'a')}/${xy}${n}";
    must(ciot_rules_add_republish_action(set, "ctor", 4, t2, strlen(t2), 0));
    must(ciot_rules_add_payload(
        set, "errs", 4,
        "{\"sql\":\"SELECT VALUE a FROM 'e/+'\",\"awsIotSqlVersion\":\"2016-03-23\","
        "\"actions\":[{\"lambda\":{\"functionArn\":\"arn:aws:lambda:r:1:function:missing\"}},"
        "{\"republish\":{\"topic\":\"e2/${a}\"}}],"
        "\"errorAction\":{\"republish\":{\"topic\":\"errors/${topic(2)}\",\"qos\":1}}}",
        strlen("{\"sql\":\"SELECT VALUE a FROM 'e/+'\",\"awsIotSqlVersion\":\"2016-03-23\","
               "\"actions\":[{\"lambda\":{\"functionArn\":\"arn:aws:lambda:r:1:function:missing\"}},"
               "{\"republish\":{\"topic\":\"e2/${a}\"}}],"
               "\"errorAction\":{\"republish\":{\"topic\":\"errors/${topic(2)}\",\"qos\":1}}}")));
    must(ciot_rules_set_function(set, "ProcessTemperatureAlert", 23, on_fn, tag("lambda")));
    must(ciot_rules_set_function(set, "TemperatureAlerts", 17, on_fn, tag("sns")));
    must(ciot_rules_set_function(set, "f", 1, on_fn, NULL));
    ciot_rules_set_output_callback(set, on_fn, NULL);
    ciot_rules_set_publisher(set, on_pub, NULL);
    ciot_rules_set_clock(set, fixed_clock, NULL);
    ciot_rules_set_random(set, fixed_random, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!set)
        setup();
    const char *in = (const char *)data;
    const char *nul = memchr(in, 0, size);
    size_t tl = nul ? (size_t)(nul - in) : size;
    const char *payload = nul ? nul + 1 : NULL;
    size_t pl = nul ? size - tl - 1 : 0;
    size_t fired = 0;
    int rc = ciot_rules_process(&fired, set, size ? in : "", tl, payload, pl, "fuzz-client", 11);
    if (rc != 0 && rc != CIOT_EINVAL)
        abort();
    if (rc == CIOT_EINVAL && ciot_topic_name_check(in, tl) == 0)
        abort();
    return 0;
}
