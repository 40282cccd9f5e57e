/*
 * The emulator's rules engine (emulator/rules_service.c) in a real mosquitto
 * with policies enforced: the guide's temperature-alert rule with a republish
 * action observed by a subscriber (exactly the alerts, with the right JSON),
 * its lambda and sns actions on the admin's control topics, its dynamoDBv2
 * rows in <data>/rules.sqlite3, the CloudFormation template deployed with the
 * launcher while the broker runs, clientid(), a publish refused by policy
 * firing nothing, a bad rule file reported without stopping the others,
 * reloads, and the republish loop guard.
 */
#include "emu_fixture.h"
#include "tclient.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef CIOT_EXAMPLES_DIR
#error "CIOT_EXAMPLES_DIR must name examples/"
#endif

#define ADMIN_PW "s3cret-admin"
#define WAIT_MS 5000
#define ARN "arn:aws:iot:us-east-1:123456789012:"
#define THING "${iot:Connection.Thing.ThingName}"

static emu_fixture fx;
#define broker (fx.broker)
#define data_dir (fx.data_dir)

/* Written whole then renamed in, as the launcher writes: the running plugin
 * never reads half a rule. */
static void write_text(const char *path, const char *text)
{
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    emu_write_text(tmp, text);
    cr_assert_eq(rename(tmp, path), 0);
}

/* A device may connect as its thing and publish on sensors/<thing>/... only. */
static const char sensor_policy[] =
    "{\"Version\":\"2012-10-17\",\"Statement\":["
    "{\"Effect\":\"Allow\",\"Action\":\"iot:Connect\",\"Resource\":\"" ARN "client/" THING "\"},"
    "{\"Effect\":\"Allow\",\"Action\":\"iot:Publish\",\"Resource\":\"" ARN "topic/sensors/" THING
    "/*\"}]}";

/* <data>/registry/rules/<name>.json as the launcher writes it. */
static void write_rule(const char *name, json_t *payload)
{
    char dir[400], path[600];
    snprintf(dir, sizeof dir, "%s/registry/rules", data_dir);
    emu_mkdir_p(dir);
    snprintf(path, sizeof path, "%s/%s.json", dir, name);
    json_t *doc = json_pack("{s:s,s:O}", "ruleName", name, "topicRulePayload", payload);
    char *text = json_dumps(doc, JSON_INDENT(2));
    write_text(path, text);
    free(text);
    json_decref(doc);
}

static void write_rule_text(const char *file, const char *text)
{
    char dir[400], path[600];
    snprintf(dir, sizeof dir, "%s/registry/rules", data_dir);
    emu_mkdir_p(dir);
    snprintf(path, sizeof path, "%s/%s", dir, file);
    write_text(path, text);
}

/* The guide's rule (examples/rules/TemperatureAlertRule.json) plus a
 * republish action to alerts/${topic(2)}. */
static json_t *seed_rule(void)
{
    json_error_t je;
    json_t *p = json_load_file(CIOT_EXAMPLES_DIR "/rules/TemperatureAlertRule.json", 0, &je);
    cr_assert_not_null(p, "%s", je.text);
    json_array_append_new(json_object_get(p, "actions"),
                          json_pack("{s:{s:s,s:i,s:s}}", "republish", "topic",
                                    "alerts/${topic(2)}", "qos", 1, "roleArn",
                                    "arn:aws:iam::123456789012:role/IoTRulesRole"));
    return p;
}

static void start(void)
{
    emu_start(&fx, true,
              "plugin_opt_admin_password " ADMIN_PW "\nplugin_opt_policies enforce\n");
}

static void setup(void)
{
    emu_data_dir_make(&fx, "/tmp/ciot-emurules-XXXXXX");
    emu_register_policy(&fx, "SensorDevicePolicy", sensor_policy);
    emu_register_cert(&fx, "device1", "ACTIVE", "SensorDevicePolicy", "dev42");
    emu_write_thing(&fx, "dev42");
}

static void teardown(void)
{
    emu_teardown(&fx);
}

static void finish(void)
{
    emu_finish(&fx);
}

TestSuite(emulator_rules, .init = setup, .fini = teardown, .timeout = 90);

/* ------------------------------------------------------------ helpers */

static tclient *admin_client(const char *id)
{
    tclient *c = tc_new(id, "cloudiot-admin", ADMIN_PW, NULL, NULL, NULL);
    cr_assert_not_null(c);
    cr_assert_eq(tc_connect(c, broker.port), 0, "admin %s could not connect", id);
    return c;
}

static tclient *device(const char *id)
{
    char cert[300], key[300], ca[300];
    snprintf(ca, sizeof ca, "%s", test_broker_pki(&broker, "ca.crt"));
    snprintf(cert, sizeof cert, "%s/device1.crt", broker.pki);
    snprintf(key, sizeof key, "%s/device1.key", broker.pki);
    tclient *c = tc_new(id, NULL, NULL, ca, cert, key);
    cr_assert_not_null(c);
    cr_assert_eq(tc_connect(c, broker.tls_port), 0, "%s was refused", id);
    return c;
}

static void reading(tclient *dev, const char *thing, const char *value)
{
    char topic[200], body[300];
    snprintf(topic, sizeof topic, "sensors/%s/temperature", thing);
    snprintf(body, sizeof body,
             "{\"deviceId\":\"%s\",\"sensorType\":\"temperature\",\"value\":%s,"
             "\"timestamp\":1700000000}",
             thing, value);
    cr_assert_eq(tc_pub(dev, topic, body, 1), 0, "publish %s", body);
}

static void assert_json_eq(const char *got, const char *want)
{
    json_error_t e1, e2;
    json_t *g = json_loads(got, JSON_DECODE_ANY, &e1), *w = json_loads(want, 0, &e2);
    cr_assert_not_null(g, "not JSON: %s", got);
    cr_assert_not_null(w, "bad test JSON %s", want);
    cr_assert(json_equal(g, w), "got %s, want %s", got, want);
    json_decref(g);
    json_decref(w);
}

static void expect_alert(tclient *c, const char *topic, const char *value)
{
    tc_msg *m = tc_wait(c, topic, WAIT_MS);
    cr_assert_not_null(m, "no message on %s (value %s)", topic, value);
    char want[300];
    snprintf(want, sizeof want,
             "{\"deviceId\":\"dev42\",\"sensorType\":\"temperature\",\"temperature\":%s,"
             "\"timestamp\":1700000000,\"alertType\":\"HIGH_TEMPERATURE\"}",
             value);
    assert_json_eq(m->payload, want);
    tc_msg_free(m);
}

/* Waits until the broker log has a line with needle (the plugin logs its loads). */
static bool wait_log(const char *needle, int min_count)
{
    for (uint64_t end = tc_now_ms() + WAIT_MS; tc_now_ms() < end; tc_sleep_ms(20))
        if (test_broker_log_count(&broker, needle) >= min_count)
            return true;
    return false;
}

/* ------------------------------------------------------------ tests */

Test(emulator_rules, the_seed_rule_republishes_exactly_the_alerts)
{
    json_t *p = seed_rule();
    write_rule("TemperatureAlertRule", p);
    json_decref(p);
    start();
    cr_assert(wait_log("rules: 1 rule(s) loaded", 1));
    tclient *sub = admin_client("ops");
    cr_assert_eq(tc_sub(sub, "alerts/#", 1), 1);
    cr_assert_eq(tc_sub(sub, "$CONTROL/cloudiot/v1/lambda/#", 1), 1);
    cr_assert_eq(tc_sub(sub, "$CONTROL/cloudiot/v1/sns/#", 1), 1);
    tclient *dev = device("dev42");
    const char *values[] = {"20", "36", "35", "41", "35.5", "-50", "\"hot\""};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        reading(dev, "dev42", values[i]);
    cr_assert_eq(tc_pub(dev, "sensors/dev42/temperature", "not json", 1), 0);
    cr_assert_eq(tc_pub(dev, "sensors/dev42/humidity",
                        "{\"deviceId\":\"dev42\",\"value\":99}", 1),
                 0);
    /* exactly the readings above 35, in order */
    expect_alert(sub, "alerts/dev42", "36");
    expect_alert(sub, "alerts/dev42", "41");
    expect_alert(sub, "alerts/dev42", "35.5");
    cr_assert_null(tc_wait(sub, "alerts/dev42", 300), "no other alert");
    cr_assert_eq(tc_count(sub, "alerts/"), 0);
    /* the lambda and sns actions: one message each per alert */
    for (int i = 0; i < 3; i++) {
        tc_msg *m = tc_wait(sub, "$CONTROL/cloudiot/v1/lambda/ProcessTemperatureAlert", WAIT_MS);
        cr_assert_not_null(m, "lambda message %d", i);
        json_error_t je;
        json_t *j = json_loads(m->payload, 0, &je);
        cr_assert_str_eq(json_string_value(json_object_get(j, "alertType")), "HIGH_TEMPERATURE");
        json_decref(j);
        tc_msg_free(m);
        m = tc_wait(sub, "$CONTROL/cloudiot/v1/sns/TemperatureAlerts", WAIT_MS);
        cr_assert_not_null(m, "sns message %d", i);
        tc_msg_free(m);
    }
    cr_assert_eq(tc_count(sub, "$CONTROL/"), 0);

    /* the dynamoDBv2 rows */
    char db[400];
    snprintf(db, sizeof db, "%s/rules.sqlite3", data_dir);
    sqlite3 *h = NULL;
    cr_assert_eq(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK, "%s", db);
    sqlite3_busy_timeout(h, 2000);
    sqlite3_stmt *st = NULL;
    cr_assert_eq(sqlite3_prepare_v2(h,
                                    "SELECT deviceId, sensorType, temperature, timestamp, "
                                    "alertType FROM TemperatureAlerts ORDER BY rowid",
                                    -1, &st, NULL),
                 SQLITE_OK, "%s", sqlite3_errmsg(h));
    const double want[] = {36, 41, 35.5};
    int rows = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        cr_assert_lt(rows, 3);
        cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), "dev42");
        cr_assert_str_eq((const char *)sqlite3_column_text(st, 1), "temperature");
        cr_assert_float_eq(sqlite3_column_double(st, 2), want[rows], 1e-9);
        cr_assert_eq(sqlite3_column_int64(st, 3), 1700000000);
        cr_assert_str_eq((const char *)sqlite3_column_text(st, 4), "HIGH_TEMPERATURE");
        rows++;
    }
    cr_assert_eq(rows, 3);
    sqlite3_finalize(st);
    sqlite3_close(h);
    tc_free(dev);
    tc_free(sub);
    finish();
}

Test(emulator_rules, a_publish_refused_by_policy_fires_nothing)
{
    json_t *p = seed_rule();
    write_rule("TemperatureAlertRule", p);
    json_decref(p);
    start();
    cr_assert(wait_log("rules: 1 rule(s) loaded", 1));
    tclient *sub = admin_client("ops");
    cr_assert_eq(tc_sub(sub, "alerts/#", 1), 1);
    cr_assert_eq(tc_sub(sub, "$CONTROL/cloudiot/v1/#", 1), 1);
    /* dev42 may not publish for dev99: denied (then disconnected) */
    tclient *dev = device("dev42");
    reading(dev, "dev99", "50");
    cr_assert(tc_wait_disconnected(dev, WAIT_MS), "the refused publish closes the connection");
    tc_free(dev);
    /* a permitted one proves the rule runs; only its alert arrives */
    dev = device("dev42");
    reading(dev, "dev42", "50");
    expect_alert(sub, "alerts/dev42", "50");
    cr_assert_null(tc_wait(sub, "alerts/dev99", 300));
    tc_msg *m = tc_wait(sub, "$CONTROL/cloudiot/v1/lambda/ProcessTemperatureAlert", WAIT_MS);
    cr_assert_not_null(m);
    tc_msg_free(m);
    m = tc_wait(sub, "$CONTROL/cloudiot/v1/sns/TemperatureAlerts", WAIT_MS);
    cr_assert_not_null(m);
    tc_msg_free(m);
    cr_assert_eq(tc_count(sub, ""), 0, "nothing from the refused publish");
    tc_free(dev);
    tc_free(sub);
    finish();
}

Test(emulator_rules, clientid_and_a_bad_rule_file_that_stops_nothing)
{
    write_rule_text("Broken.json", "{\"ruleName\":\"Broken\",\"topicRulePayload\":{\"sql\":"
                                   "\"SELECT * FRM 'a'\",\"awsIotSqlVersion\":\"2016-03-23\","
                                   "\"actions\":[]}}");
    write_rule_text("Garbage.json", "{not json");
    write_rule_text("Renamed.json", "{\"ruleName\":\"Other\",\"topicRulePayload\":{\"sql\":"
                                    "\"SELECT * FROM 'a'\",\"awsIotSqlVersion\":\"2016-03-23\","
                                    "\"actions\":[]}}");
    json_t *p = json_pack("{s:s,s:s,s:[{s:{s:s,s:s}}]}", "sql",
                          "SELECT clientid() AS client, topic(2) AS thing, value FROM "
                          "'sensors/+/humidity'",
                          "awsIotSqlVersion", "2016-03-23", "actions", "republish", "topic",
                          "echo/${clientid()}", "roleArn", "r");
    write_rule("Echo", p);
    json_decref(p);
    start();
    cr_assert(wait_log("rules: 1 rule(s) loaded", 1), "one loads, three are skipped");
    cr_assert(wait_log("(3 skipped)", 1));
    cr_assert_eq(test_broker_log_count(&broker, "rules: skipping"), 3);
    cr_assert_eq(test_broker_log_count(&broker, "Broken.json: rule Broken: 1:"), 1,
                 "the SQL error with its position");
    cr_assert_eq(test_broker_log_count(&broker, "Garbage.json: not JSON"), 1);
    cr_assert_eq(test_broker_log_count(&broker, "Renamed.json: its ruleName"), 1);
    tclient *sub = admin_client("ops");
    cr_assert_eq(tc_sub(sub, "echo/#", 1), 1);
    tclient *dev = device("dev42");
    cr_assert_eq(tc_pub(dev, "sensors/dev42/humidity", "{\"value\":61}", 1), 0);
    tc_msg *m = tc_wait(sub, "echo/dev42", WAIT_MS);
    cr_assert_not_null(m);
    assert_json_eq(m->payload, "{\"client\":\"dev42\",\"thing\":\"dev42\",\"value\":61}");
    tc_msg_free(m);
    tc_free(dev);
    tc_free(sub);
    finish();
}

Test(emulator_rules, the_cloudformation_template_deployed_while_the_broker_runs)
{
    start();
    cr_assert(wait_log("rules: 0 rule(s) loaded", 1));
    tclient *sub = admin_client("ops");
    cr_assert_eq(tc_sub(sub, "$CONTROL/cloudiot/v1/lambda/#", 1), 1);
    tclient *dev = device("dev42");
    reading(dev, "dev42", "33");
    cr_assert_null(tc_wait(sub, "$CONTROL/cloudiot/v1/lambda/ProcessTemperatureAlert", 300),
                   "no rule yet");
    /* the guide's template as written, threshold overridden to 30 */
    cr_assert_eq(emu_launcher(&fx, NULL, 0,
                              "deploy --template-file %s --stack-name alerts "
                              "--parameter-overrides AlertThreshold=30",
                              CIOT_EXAMPLES_DIR "/rules/TemperatureAlertRule.yaml"),
                 0);
    cr_assert(wait_log("rules: 1 rule(s) loaded", 1), "reloaded within the wait");
    reading(dev, "dev42", "29");
    reading(dev, "dev42", "33");
    tc_msg *m = tc_wait(sub, "$CONTROL/cloudiot/v1/lambda/ProcessTemperatureAlert", WAIT_MS);
    cr_assert_not_null(m, "the deployed rule fires");
    assert_json_eq(m->payload, "{\"deviceId\":\"dev42\",\"sensorType\":\"temperature\","
                               "\"temperature\":33,\"timestamp\":1700000000,"
                               "\"alertType\":\"HIGH_TEMPERATURE\"}");
    tc_msg_free(m);
    cr_assert_null(tc_wait(sub, "$CONTROL/cloudiot/v1/lambda/ProcessTemperatureAlert", 300),
                   "29 is below the threshold");
    /* disabled, then deleted: nothing fires */
    cr_assert_eq(emu_launcher(&fx, NULL, 0, "disable-topic-rule --rule-name TemperatureAlertRule"), 0);
    cr_assert(wait_log("rules: 1 rule(s) loaded", 2));
    reading(dev, "dev42", "45");
    cr_assert_null(tc_wait(sub, "$CONTROL/cloudiot/v1/lambda/ProcessTemperatureAlert", 500));
    cr_assert_eq(emu_launcher(&fx, NULL, 0, "enable-topic-rule --rule-name TemperatureAlertRule"), 0);
    cr_assert(wait_log("rules: 1 rule(s) loaded", 3));
    reading(dev, "dev42", "46");
    m = tc_wait(sub, "$CONTROL/cloudiot/v1/lambda/ProcessTemperatureAlert", WAIT_MS);
    cr_assert_not_null(m, "enabled again");
    tc_msg_free(m);
    cr_assert_eq(emu_launcher(&fx, NULL, 0, "delete-topic-rule --rule-name TemperatureAlertRule"), 0);
    cr_assert(wait_log("rules: 0 rule(s) loaded", 2));
    reading(dev, "dev42", "47");
    cr_assert_null(tc_wait(sub, "$CONTROL/cloudiot/v1/lambda/ProcessTemperatureAlert", 500));
    tc_free(dev);
    tc_free(sub);
    finish();
}

Test(emulator_rules, republish_loops_are_cut_and_shadow_requests_reach_the_shadow)
{
    json_t *loop = json_pack("{s:s,s:s,s:[{s:{s:s,s:s}}]}", "sql", "SELECT * FROM 'loop/#'",
                             "awsIotSqlVersion", "2016-03-23", "actions", "republish", "topic",
                             "loop/again", "roleArn", "r");
    write_rule("Loop", loop);
    json_decref(loop);
    json_t *sh = json_pack("{s:s,s:s,s:[{s:{s:s,s:s}}]}", "sql",
                           "SELECT VALUE {'state':{'reported':{'temperature':value}}} FROM "
                           "'sensors/+/temperature'",
                           "awsIotSqlVersion", "2016-03-23", "actions", "republish", "topic",
                           "$$aws/things/${topic(2)}/shadow/update", "roleArn", "r");
    write_rule("ToShadow", sh);
    json_decref(sh);
    /* a rule on the shadow service's own reply */
    json_t *seen = json_pack("{s:s,s:s,s:[{s:{s:s,s:s}}]}", "sql",
                             "SELECT state.reported.temperature AS t, clientid() AS c FROM "
                             "'$aws/things/+/shadow/update/accepted'",
                             "awsIotSqlVersion", "2016-03-23", "actions", "republish", "topic",
                             "seen/${topic(3)}", "roleArn", "r");
    write_rule("Seen", seen);
    json_decref(seen);
    start();
    cr_assert(wait_log("rules: 3 rule(s) loaded", 1));
    tclient *sub = admin_client("ops");
    cr_assert_eq(tc_sub(sub, "seen/#", 1), 1);
    cr_assert_eq(tc_sub(sub, "loop/#", 0), 0);
    cr_assert_eq(tc_sub(sub, "$aws/things/dev42/shadow/update/accepted", 1), 1);
    cr_assert_eq(tc_pub(sub, "loop/start", "{\"n\":1}", 1), 0);
    /* 8 republishes run again, the 9th is published and stops */
    for (uint64_t end = tc_now_ms() + WAIT_MS;
         tc_now_ms() < end && tc_count_exact(sub, "loop/again") < 9; tc_sleep_ms(10))
        ;
    tc_sleep_ms(300);
    cr_assert_eq(tc_count_exact(sub, "loop/again"), 9);
    cr_assert_eq(test_broker_log_count(&broker, "a republish loop, 8 hops"), 1);

    tclient *dev = device("dev42");
    reading(dev, "dev42", "21");
    tc_msg *m = tc_wait(sub, "$aws/things/dev42/shadow/update/accepted", WAIT_MS);
    cr_assert_not_null(m, "the republished shadow update reached the shadow service");
    json_error_t je;
    json_t *j = json_loads(m->payload, 0, &je);
    cr_assert_eq(json_integer_value(json_object_get(
                     json_object_get(json_object_get(j, "state"), "reported"), "temperature")),
                 21);
    json_decref(j);
    tc_msg_free(m);
    m = tc_wait(sub, "seen/dev42", WAIT_MS);
    cr_assert_not_null(m, "rules see the shadow service's replies");
    assert_json_eq(m->payload, "{\"t\":21,\"c\":\"n/a\"}");
    tc_msg_free(m);
    /* and an update published by a client directly */
    cr_assert_eq(tc_pub(sub, "$aws/things/dev42/shadow/update",
                        "{\"state\":{\"reported\":{\"temperature\":22}}}", 1),
                 0);
    m = tc_wait(sub, "seen/dev42", WAIT_MS);
    cr_assert_not_null(m);
    assert_json_eq(m->payload, "{\"t\":22,\"c\":\"n/a\"}");
    tc_msg_free(m);
    tc_free(dev);
    tc_free(sub);
    finish();
}

Test(emulator_rules, a_failing_action_is_logged_and_runs_the_error_action)
{
    /* SELECT VALUE gives a number: the dynamoDBv2 row cannot be written */
    json_t *p = json_pack("{s:s,s:s,s:[{s:{s:s,s:{s:s}}}],s:{s:{s:s,s:s}}}", "sql",
                          "SELECT VALUE value FROM 'sensors/+/pressure'", "awsIotSqlVersion",
                          "2016-03-23", "actions", "dynamoDBv2", "roleArn", "r", "putItem",
                          "tableName", "Pressure", "errorAction", "republish", "topic",
                          "errors/${topic(2)}", "roleArn", "r");
    write_rule("ErrDemo", p);
    json_decref(p);
    start();
    cr_assert(wait_log("rules: 1 rule(s) loaded", 1));
    tclient *sub = admin_client("ops");
    cr_assert_eq(tc_sub(sub, "errors/#", 1), 1);
    tclient *dev = device("dev42");
    cr_assert_eq(tc_pub(dev, "sensors/dev42/pressure", "{\"value\":7}", 1), 0);
    tc_msg *m = tc_wait(sub, "errors/dev42", WAIT_MS);
    cr_assert_not_null(m, "the errorAction republished the failure");
    json_error_t je;
    json_t *j = json_loads(m->payload, 0, &je);
    cr_assert_not_null(j, "%s", m->payload);
    cr_assert_str_eq(json_string_value(json_object_get(j, "ruleName")), "ErrDemo");
    cr_assert_str_eq(json_string_value(json_object_get(j, "topic")), "sensors/dev42/pressure");
    cr_assert_str_eq(json_string_value(json_object_get(j, "clientId")), "dev42");
    cr_assert_str_eq(json_string_value(json_object_get(j, "base64OriginalPayload")),
                     "eyJ2YWx1ZSI6N30=");
    cr_assert_eq(json_array_size(json_object_get(j, "failures")), 1);
    json_decref(j);
    tc_msg_free(m);
    cr_assert(wait_log("rules: rule ErrDemo, action 0 (dynamoDBv2) failed", 1), "logged");
    tc_free(dev);
    tc_free(sub);
    finish();
}
