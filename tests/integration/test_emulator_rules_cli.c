/*
 * cloudiot-emulator's topic-rule sub-commands (`aws iot create-topic-rule`
 * ...) and `deploy` (`aws cloudformation deploy`): the rule files they write,
 * their output, and their errors and exit codes as the AWS CLI's. The
 * launcher runs as a program; every wait is bounded.
 */
#define _XOPEN_SOURCE 700 /* nftw */

#include "emu_fixture.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CIOT_TEST_LAUNCHER
#error "CIOT_TEST_LAUNCHER must name the built cloudiot-emulator"
#endif
#ifndef CIOT_EXAMPLES_DIR
#error "CIOT_EXAMPLES_DIR must name examples/"
#endif

#define SEED_JSON CIOT_EXAMPLES_DIR "/rules/TemperatureAlertRule.json"
#define SEED_YAML CIOT_EXAMPLES_DIR "/rules/TemperatureAlertRule.yaml"

static char tmp[256];

static void make_tmp(void)
{
    emu_tmp_make(tmp, sizeof tmp, "/tmp/ciot-emurules.XXXXXX");
}

static void remove_tmp(void)
{
    emu_tmp_remove(tmp);
}

static const char *in_tmp(const char *name)
{
    return emu_tmp_path(tmp, name);
}

typedef emu_cli_result result;
#define CLI EMU_CLI

static json_t *out_json(const result *r)
{
    json_error_t je;
    json_t *j = json_loads(r->out, 0, &je);
    cr_assert_not_null(j, "stdout is not JSON (%s): %s\nstderr: %s", je.text, r->out, r->err);
    return j;
}

static void assert_ok(const result *r)
{
    cr_assert_eq(r->status, 0, "exit %d\nstdout: %s\nstderr: %s", r->status, r->out, r->err);
}

static void assert_exception(const result *r, const char *code, const char *op, const char *msg)
{
    cr_assert_eq(r->status, 254, "exit %d, stderr: %s", r->status, r->err);
    char want[256];
    snprintf(want, sizeof want, "An error occurred (%s) when calling the %s operation: ", code, op);
    cr_assert(strstr(r->err, want) != NULL, "stderr: %s", r->err);
    if (msg)
        cr_assert(strstr(r->err, msg) != NULL, "stderr should contain '%s': %s", msg, r->err);
    cr_assert_eq(r->out_len, 0, "nothing on stdout on error: %s", r->out);
}

static json_t *read_json(const char *path)
{
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    cr_assert_not_null(j, "%s: %s", path, je.text);
    return j;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    cr_assert_eq(fputs(text, f) >= 0, true);
    cr_assert_eq(fclose(f), 0);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int nfiles;
static int count_files(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)path;
    (void)st;
    (void)ftw;
    if (flag == FTW_F)
        nfiles++;
    return 0;
}

static int files_in(const char *dir)
{
    nfiles = 0;
    nftw(dir, count_files, 8, FTW_PHYS);
    return nfiles;
}

static const char *data(void)
{
    return in_tmp("emu");
}

#define RULE_FILE(name) in_tmp("emu/registry/rules/" name ".json")

TestSuite(emulator_rules_cli, .init = make_tmp, .fini = remove_tmp, .timeout = 120);

Test(emulator_rules_cli, create_get_list_disable_enable_delete)
{
    result *r = CLI("create-topic-rule", "--data", data(), "--rule-name", "TemperatureAlertRule",
                    "--topic-rule-payload", "file://" SEED_JSON);
    assert_ok(r);
    cr_assert_eq(r->out_len, 0, "create-topic-rule prints nothing, as the AWS CLI");
    free(r);
    /* the file: the payload as given, with name, ARN and creation time */
    json_t *f = read_json(RULE_FILE("TemperatureAlertRule"));
    json_t *seed = read_json(SEED_JSON);
    cr_assert(json_equal(json_object_get(f, "topicRulePayload"), seed));
    cr_assert_str_eq(json_string_value(json_object_get(f, "ruleName")), "TemperatureAlertRule");
    cr_assert_str_eq(json_string_value(json_object_get(f, "ruleArn")),
                     "arn:aws:iot:us-east-1:123456789012:rule/TemperatureAlertRule");
    cr_assert(json_integer_value(json_object_get(f, "createdAt")) > 1700000000);
    json_decref(f);
    cr_assert_eq(files_in(in_tmp("emu/registry/rules")), 1, "no temporary file left");

    r = CLI("get-topic-rule", "--data", data(), "--rule-name", "TemperatureAlertRule");
    assert_ok(r);
    json_t *g = out_json(r);
    free(r);
    cr_assert_str_eq(json_string_value(json_object_get(g, "ruleArn")),
                     "arn:aws:iot:us-east-1:123456789012:rule/TemperatureAlertRule");
    json_t *rule = json_object_get(g, "rule");
    cr_assert_str_eq(json_string_value(json_object_get(rule, "ruleName")),
                     "TemperatureAlertRule");
    cr_assert(json_equal(json_object_get(rule, "sql"), json_object_get(seed, "sql")));
    cr_assert(json_equal(json_object_get(rule, "actions"), json_object_get(seed, "actions")));
    cr_assert(json_is_false(json_object_get(rule, "ruleDisabled")));
    cr_assert_str_eq(json_string_value(json_object_get(rule, "awsIotSqlVersion")), "2016-03-23");
    cr_assert_eq(strlen(json_string_value(json_object_get(rule, "createdAt"))), 25,
                 "ISO 8601 with +00:00");
    json_decref(g);

    /* a second rule, then list (sorted; topicPattern = the FROM filter) */
    r = CLI("create-topic-rule", "--data", data(), "--rule-name", "Another_1",
            "--topic-rule-payload",
            "{\"sql\":\"SELECT * FROM 'a/#'\",\"awsIotSqlVersion\":\"2016-03-23\","
            "\"actions\":[{\"republish\":{\"topic\":\"b/${topic(2)}\",\"roleArn\":\"r\"}}]}");
    assert_ok(r);
    free(r);
    r = CLI("disable-topic-rule", "--data", data(), "--rule-name", "TemperatureAlertRule");
    assert_ok(r);
    free(r);
    r = CLI("list-topic-rules", "--data", data());
    assert_ok(r);
    json_t *l = out_json(r);
    free(r);
    json_t *rules = json_object_get(l, "rules");
    cr_assert_eq(json_array_size(rules), 2);
    json_t *a = json_array_get(rules, 0), *t = json_array_get(rules, 1);
    cr_assert_str_eq(json_string_value(json_object_get(a, "ruleName")), "Another_1");
    cr_assert_str_eq(json_string_value(json_object_get(a, "topicPattern")), "a/#");
    cr_assert(json_is_false(json_object_get(a, "ruleDisabled")));
    cr_assert_str_eq(json_string_value(json_object_get(t, "topicPattern")),
                     "sensors/+/temperature");
    cr_assert(json_is_true(json_object_get(t, "ruleDisabled")));
    json_decref(l);
    r = CLI("list-topic-rules", "--data", data(), "--rule-disabled");
    assert_ok(r);
    l = out_json(r);
    free(r);
    cr_assert_eq(json_array_size(json_object_get(l, "rules")), 1);
    json_decref(l);
    r = CLI("list-topic-rules", "--data", data(), "--topic", "a/#");
    assert_ok(r);
    l = out_json(r);
    free(r);
    cr_assert_str_eq(json_string_value(json_object_get(
                         json_array_get(json_object_get(l, "rules"), 0), "ruleName")),
                     "Another_1");
    cr_assert_eq(json_array_size(json_object_get(l, "rules")), 1);
    json_decref(l);

    r = CLI("enable-topic-rule", "--data", data(), "--rule-name", "TemperatureAlertRule");
    assert_ok(r);
    free(r);
    f = read_json(RULE_FILE("TemperatureAlertRule"));
    cr_assert(json_is_false(json_object_get(json_object_get(f, "topicRulePayload"),
                                            "ruleDisabled")));
    json_decref(f);

    /* replace keeps the creation time and takes the new payload */
    r = CLI("replace-topic-rule", "--data", data(), "--rule-name", "Another_1",
            "--topic-rule-payload",
            "{\"sql\":\"SELECT * FROM 'c/d'\",\"awsIotSqlVersion\":\"2016-03-23\","
            "\"actions\":[]}");
    assert_ok(r);
    free(r);
    f = read_json(RULE_FILE("Another_1"));
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(f, "topicRulePayload"),
                                                       "sql")),
                     "SELECT * FROM 'c/d'");
    json_decref(f);

    r = CLI("delete-topic-rule", "--data", data(), "--rule-name", "Another_1");
    assert_ok(r);
    cr_assert_eq(r->out_len, 0);
    free(r);
    cr_assert_not(exists(RULE_FILE("Another_1")));
    r = CLI("delete-topic-rule", "--data", data(), "--rule-name", "Another_1");
    assert_exception(r, "UnauthorizedException", "DeleteTopicRule", "Rule Another_1 does not exist");
    free(r);
    json_decref(seed);
}

Test(emulator_rules_cli, create_errors_are_the_services_and_write_nothing)
{
    const char *ok_tail = ",\"awsIotSqlVersion\":\"2016-03-23\",\"actions\":[]}";
    char p[512];
    /* bad SQL: SqlParseException with the position */
    snprintf(p, sizeof p, "{\"sql\":\"SELECT * FRM 'a/b'\"%s", ok_tail);
    result *r = CLI("create-topic-rule", "--data", data(), "--rule-name", "R", "--topic-rule-payload", p);
    assert_exception(r, "SqlParseException", "CreateTopicRule", "1:10: expected FROM");
    free(r);
    snprintf(p, sizeof p, "{\"sql\":\"SELECT nosuch(x) FROM 'a/b'\"%s", ok_tail);
    r = CLI("create-topic-rule", "--data", data(), "--rule-name", "R", "--topic-rule-payload", p);
    assert_exception(r, "SqlParseException", "CreateTopicRule", "1:");
    free(r);
    snprintf(p, sizeof p, "{\"sql\":\"SELECT * FROM 'a/#/b'\"%s", ok_tail);
    r = CLI("create-topic-rule", "--data", data(), "--rule-name", "R", "--topic-rule-payload", p);
    assert_exception(r, "SqlParseException", "CreateTopicRule", NULL);
    free(r);
    /* the SQL version */
    r = CLI("create-topic-rule", "--data", data(), "--rule-name", "R", "--topic-rule-payload",
            "{\"sql\":\"SELECT * FROM 'a'\",\"actions\":[]}");
    assert_exception(r, "InvalidRequestException", "CreateTopicRule", "2015-10-08");
    free(r);
    r = CLI("create-topic-rule", "--data", data(), "--rule-name", "R", "--topic-rule-payload",
            "{\"sql\":\"SELECT * FROM 'a'\",\"awsIotSqlVersion\":\"2015-10-08\",\"actions\":[]}");
    assert_exception(r, "InvalidRequestException", "CreateTopicRule", "not supported");
    free(r);
    /* actions */
    snprintf(p, sizeof p, "{\"sql\":\"SELECT * FROM 'a'\",\"awsIotSqlVersion\":\"2016-03-23\","
                          "\"actions\":[{\"s3\":{\"bucketName\":\"b\"}}]}");
    r = CLI("create-topic-rule", "--data", data(), "--rule-name", "R", "--topic-rule-payload", p);
    assert_exception(r, "InvalidRequestException", "CreateTopicRule",
                     "the action s3 is not supported by the emulator");
    free(r);
    snprintf(p, sizeof p, "{\"sql\":\"SELECT * FROM 'a'\",\"awsIotSqlVersion\":\"2016-03-23\","
                          "\"actions\":[{\"republish\":{\"topic\":\"x\",\"roleArn\":\"r\","
                          "\"qos\":2}}]}");
    r = CLI("create-topic-rule", "--data", data(), "--rule-name", "R", "--topic-rule-payload", p);
    assert_exception(r, "InvalidRequestException", "CreateTopicRule", "qos must be 0 or 1");
    free(r);
    snprintf(p, sizeof p, "{\"sql\":\"SELECT * FROM 'a'\",\"awsIotSqlVersion\":\"2016-03-23\","
                          "\"actions\":[{\"republish\":{\"topic\":\"x/${topic(2)\","
                          "\"roleArn\":\"r\"}}]}");
    r = CLI("create-topic-rule", "--data", data(), "--rule-name", "R", "--topic-rule-payload", p);
    assert_exception(r, "InvalidRequestException", "CreateTopicRule", "topic template");
    free(r);
    /* what only the rule set checks: the expressions of a template */
    snprintf(p, sizeof p, "{\"sql\":\"SELECT * FROM 'a'\",\"awsIotSqlVersion\":\"2016-03-23\","
                          "\"actions\":[{\"republish\":{\"topic\":\"x/${nosuch(1)}\","
                          "\"roleArn\":\"r\"}}]}");
    r = CLI("create-topic-rule", "--data", data(), "--rule-name", "R", "--topic-rule-payload", p);
    assert_exception(r, "InvalidRequestException", "CreateTopicRule", "nosuch");
    free(r);
    /* names */
    r = CLI("create-topic-rule", "--data", data(), "--rule-name", "bad-name",
            "--topic-rule-payload", "file://" SEED_JSON);
    assert_exception(r, "InvalidRequestException", "CreateTopicRule", "Invalid rule name");
    free(r);
    r = CLI("create-topic-rule", "--data", data(), "--rule-name", "../x", "--topic-rule-payload",
            "file://" SEED_JSON);
    assert_exception(r, "InvalidRequestException", "CreateTopicRule", "Invalid rule name");
    free(r);
    /* client-side validation (the AWS CLI's): exit 252 */
    const char *bad[][2] = {
        {"{\"sql\":\"SELECT * FROM 'a'\",\"awsIotSqlVersion\":\"2016-03-23\",\"actions\":[],"
         "\"colour\":1}",
         "Unknown parameter in topicRulePayload: \"colour\""},
        {"{\"awsIotSqlVersion\":\"2016-03-23\",\"actions\":[]}",
         "Missing required parameter in topicRulePayload: \"sql\""},
        {"{\"sql\":1,\"actions\":[]}", "Invalid type for parameter topicRulePayload.sql"},
        {"{\"sql\":\"SELECT * FROM 'a'\",\"awsIotSqlVersion\":\"2016-03-23\",\"actions\":"
         "[{\"lambda\":{}}]}",
         "Missing required parameter in topicRulePayload.actions[0].lambda: \"functionArn\""},
        {"{\"sql\":\"SELECT * FROM 'a'\",\"awsIotSqlVersion\":\"2016-03-23\",\"actions\":"
         "[{\"teleport\":{}}]}",
         "Unknown parameter in topicRulePayload.actions[0]: \"teleport\""},
        {"[1,2]", "valid types: dict"},
        {"{not json", "Invalid JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = CLI("create-topic-rule", "--data", data(), "--rule-name", "R",
                "--topic-rule-payload", bad[i][0]);
        cr_assert_eq(r->status, 252, "%s: exit %d %s", bad[i][0], r->status, r->err);
        cr_assert(strstr(r->err, bad[i][1]) != NULL, "%s: stderr %s", bad[i][0], r->err);
        free(r);
    }
    r = CLI("create-topic-rule", "--data", data(), "--rule-name", "R", "--topic-rule-payload",
            "file:///nonexistent/x.json");
    cr_assert_eq(r->status, 252);
    cr_assert(strstr(r->err, "Unable to load paramfile") != NULL, "%s", r->err);
    free(r);
    r = CLI("create-topic-rule", "--data", data(), "--rule-name", "R");
    cr_assert_eq(r->status, 252);
    free(r);
    cr_assert_eq(files_in(in_tmp("emu/registry/rules")), 0, "nothing written");
    /* existing */
    r = CLI("create-topic-rule", "--data", data(), "--rule-name", "R", "--topic-rule-payload",
            "file://" SEED_JSON);
    assert_ok(r);
    free(r);
    r = CLI("create-topic-rule", "--data", data(), "--rule-name", "R", "--topic-rule-payload",
            "file://" SEED_JSON);
    assert_exception(r, "ResourceAlreadyExistsException", "CreateTopicRule", "R already exists");
    free(r);
    /* unknown rules */
    const char *cmds[][2] = {{"get-topic-rule", "GetTopicRule"},
                             {"enable-topic-rule", "EnableTopicRule"},
                             {"disable-topic-rule", "DisableTopicRule"},
                             {"delete-topic-rule", "DeleteTopicRule"}};
    for (size_t i = 0; i < 4; i++) {
        r = CLI(cmds[i][0], "--data", data(), "--rule-name", "Nope");
        assert_exception(r, "UnauthorizedException", cmds[i][1], "Rule Nope does not exist");
        free(r);
    }
    r = CLI("replace-topic-rule", "--data", data(), "--rule-name", "Nope",
            "--topic-rule-payload", "file://" SEED_JSON);
    assert_exception(r, "UnauthorizedException", "ReplaceTopicRule", NULL);
    free(r);
}

Test(emulator_rules_cli, deploy_the_guides_template_as_written)
{
    result *r = CLI("deploy", "--data", data(), "--template-file", SEED_YAML, "--stack-name",
                    "alerts");
    assert_ok(r);
    cr_assert(strstr(r->out, "Successfully created/updated stack - alerts\n") != NULL, "%s",
              r->out);
    cr_assert(strstr(r->out, "Rule TemperatureAlertRule: ") != NULL, "%s", r->out);
    free(r);
    json_t *f = read_json(RULE_FILE("TemperatureAlertRule"));
    json_t *want = read_json(SEED_JSON);
    json_object_set_new(want, "description",
                        json_string("Temperature readings above the threshold raise a "
                                    "HIGH_TEMPERATURE alert"));
    cr_assert(json_equal(json_object_get(f, "topicRulePayload"), want),
              "the template gives the guide's payload");
    cr_assert_str_eq(json_string_value(json_object_get(f, "stackName")), "alerts");
    json_decref(f);
    json_decref(want);

    /* overrides; redeploying the same stack updates its rule */
    r = CLI("deploy", "--data", data(), "--template-file", SEED_YAML, "--stack-name", "alerts",
            "--parameter-overrides", "AlertThreshold=40");
    assert_ok(r);
    free(r);
    f = read_json(RULE_FILE("TemperatureAlertRule"));
    cr_assert(strstr(json_string_value(json_object_get(json_object_get(f, "topicRulePayload"),
                                                       "sql")),
                     "WHERE value > 40") != NULL);
    json_decref(f);
    r = CLI("deploy", "--data", data(), "--template-file", SEED_YAML, "--stack-name", "alerts",
            "--parameter-overrides", "Nope=1");
    assert_exception(r, "ValidationError", "CreateChangeSet", "Parameters: [Nope] do not exist");
    free(r);

    /* another stack cannot take the rule; nor can deploy take a create-topic-rule rule */
    r = CLI("deploy", "--data", data(), "--template-file", SEED_YAML, "--stack-name", "other");
    cr_assert_eq(r->status, 255, "%s", r->err);
    cr_assert(strstr(r->err, "TemperatureAlertRule already exists (alerts)") != NULL, "%s",
              r->err);
    free(r);

    /* a new version of the template without the rule: the stack's rule is deleted */
    char tpl[1024];
    snprintf(tpl, sizeof tpl, "%s", in_tmp("other.yaml"));
    write_file(tpl, "Resources:\n"
                    "  Fn:\n"
                    "    Type: AWS::Lambda::Function\n"
                    "    Properties: {FunctionName: ProcessTemperatureAlert}\n"
                    "  Echo:\n"
                    "    Type: AWS::IoT::TopicRule\n"
                    "    Properties:\n"
                    "      RuleName: Echo\n"
                    "      TopicRulePayload:\n"
                    "        Sql: SELECT * FROM 'sensors/+/temperature'\n"
                    "        AwsIotSqlVersion: '2016-03-23'\n"
                    "        Actions:\n"
                    "          - Republish: {Topic: 'echo/${topic(2)}', RoleArn: !Sub "
                    "'arn:aws:iam::${AWS::AccountId}:role/r'}\n");
    r = CLI("deploy", "--data", data(), "--template-file", tpl, "--stack-name", "alerts");
    assert_ok(r);
    cr_assert(strstr(r->out, "Not emulated: Fn (AWS::Lambda::Function): not emulated") != NULL,
              "%s", r->out);
    cr_assert(strstr(r->out, "Rule TemperatureAlertRule: deleted") != NULL, "%s", r->out);
    free(r);
    cr_assert_not(exists(RULE_FILE("TemperatureAlertRule")));
    f = read_json(RULE_FILE("Echo"));
    json_t *rp = json_object_get(json_array_get(json_object_get(json_object_get(f,
                                                                                "topicRulePayload"),
                                                                "actions"),
                                                0),
                                 "republish");
    cr_assert_str_eq(json_string_value(json_object_get(rp, "topic")), "echo/${topic(2)}");
    cr_assert_str_eq(json_string_value(json_object_get(rp, "roleArn")),
                     "arn:aws:iam::123456789012:role/r");
    json_decref(f);
}

Test(emulator_rules_cli, deploy_errors)
{
    char tpl[1024];
    snprintf(tpl, sizeof tpl, "%s", in_tmp("bad.yaml"));
    write_file(tpl, "Resources:\n"
                    "  Bucket:\n"
                    "    Type: AWS::S3::Bucket\n");
    result *r = CLI("deploy", "--data", data(), "--template-file", tpl);
    assert_exception(r, "ValidationError", "CreateChangeSet",
                     "bad.yaml:3:11: Resource Bucket: resource type AWS::S3::Bucket is not "
                     "supported");
    free(r);
    r = CLI("deploy", "--data", data(), "--template-file", tpl, "--skip-unsupported");
    assert_ok(r);
    cr_assert(strstr(r->out, "Not emulated: Bucket (AWS::S3::Bucket): not supported") != NULL,
              "%s", r->out);
    free(r);

    write_file(tpl, "Resources:\n"
                    "  R:\n"
                    "    Type: AWS::IoT::TopicRule\n"
                    "    Properties:\n"
                    "      TopicRulePayload:\n"
                    "        Sql: SELECT * FROM 'a'\n"
                    "        AwsIotSqlVersion: '2016-03-23'\n"
                    "        Actions: [{Republish: {Topic: !Sub 'x/${topic(2)}', RoleArn: r}}]\n");
    r = CLI("deploy", "--data", data(), "--template-file", tpl);
    assert_exception(r, "ValidationError", "CreateChangeSet", "bad.yaml:8:39: Resource R: ");
    cr_assert(strstr(r->err, "${!topic(2)}") != NULL, "%s", r->err);
    free(r);

    /* a rule whose SQL does not compile: the stack fails, nothing written */
    write_file(tpl, "Resources:\n"
                    "  R:\n"
                    "    Type: AWS::IoT::TopicRule\n"
                    "    Properties:\n"
                    "      TopicRulePayload: {Sql: SELECT FROM, AwsIotSqlVersion: '2016-03-23', "
                    "Actions: []}\n");
    r = CLI("deploy", "--data", data(), "--template-file", tpl);
    cr_assert_eq(r->status, 255, "%s", r->err);
    cr_assert(strstr(r->err, "SqlParseException") != NULL, "%s", r->err);
    cr_assert(strstr(r->err, "Failed to create/update the stack") != NULL, "%s", r->err);
    free(r);
    cr_assert_eq(files_in(in_tmp("emu/registry/rules")), 0);

    r = CLI("deploy", "--data", data(), "--template-file", in_tmp("missing.yaml"));
    cr_assert_eq(r->status, 252);
    free(r);
    r = CLI("deploy", "--data", data());
    cr_assert_eq(r->status, 252);
    free(r);
    r = CLI("deploy", "--data", data(), "--template-file", tpl, "--stack-name", "-x");
    cr_assert_eq(r->status, 252);
    free(r);
    r = CLI("deploy", "--data", data(), "--template-file", tpl, "--parameter-overrides");
    cr_assert_eq(r->status, 252);
    free(r);
}
