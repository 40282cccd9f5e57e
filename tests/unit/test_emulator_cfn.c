/* The emulator's CloudFormation loader (emulator/cfn.h): the guide's
 * template as written, intrinsic functions in both forms, parameters, the
 * explicit property mapping per action kind, resources that are not
 * emulated, and malformed templates rejected with their line:column. */
#include "cfn.h"

#include <cloudiot/error.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char err[512];

static int load(ciot__cfn_result *r, const char *text, const ciot__cfn_options *o)
{
    static const ciot__cfn_options none = {0};
    return ciot__cfn_load(r, text, strlen(text), o ? o : &none, err, sizeof err);
}

static char *slurp(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", CIOT_EXAMPLES_DIR, name);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* The payload of the first rule. */
static json_t *payload0(const ciot__cfn_result *r)
{
    return json_object_get(json_array_get(r->rules, 0), "topicRulePayload");
}

static void assert_error(const char *text, int want_rc, const char *pos, const char *sub)
{
    ciot__cfn_result r = {0};
    int rc = load(&r, text, NULL);
    cr_assert_eq(rc, want_rc, "rc %d, want %d (%s) for:\n%s", rc, want_rc, err, text);
    cr_assert_null(r.rules);
    if (pos)
        cr_assert(strncmp(err, pos, strlen(pos)) == 0, "error '%s' should start with '%s'", err,
                  pos);
    cr_assert_not_null(strstr(err, sub), "error '%s' should contain '%s'", err, sub);
}

Test(emulator_cfn, guide_template_loads_as_written)
{
    char *yaml = slurp("rules/TemperatureAlertRule.yaml");
    char *js = slurp("rules/TemperatureAlertRule.json");
    ciot__cfn_result r = {0};
    cr_assert_eq(load(&r, yaml, NULL), 0, "%s", err);
    cr_assert_eq(json_array_size(r.rules), 1);
    cr_assert_eq(json_array_size(r.notes), 0);
    json_t *rule = json_array_get(r.rules, 0);
    cr_assert_str_eq(json_string_value(json_object_get(rule, "ruleName")),
                     "TemperatureAlertRule");

    /* The same as the guide's CreateTopicRule payload (us-east-1, 123456789012),
     * except the template's own Description. */
    json_error_t je;
    json_t *want = json_loads(js, 0, &je);
    cr_assert_not_null(want);
    json_object_set_new(want, "description",
                        json_string("Temperature readings above the threshold raise a "
                                    "HIGH_TEMPERATURE alert"));
    char *got_s = json_dumps(payload0(&r), JSON_SORT_KEYS);
    char *want_s = json_dumps(want, JSON_SORT_KEYS);
    cr_assert(json_equal(payload0(&r), want), "got  %s\nwant %s", got_s, want_s);
    free(got_s);
    free(want_s);
    json_decref(want);
    ciot__cfn_result_free(&r);
    free(yaml);
    free(js);
}

Test(emulator_cfn, region_account_and_parameter_overrides)
{
    char *yaml = slurp("rules/TemperatureAlertRule.yaml");
    const char *ov[] = {"AlertThreshold=40"};
    ciot__cfn_options o = {.region = "eu-west-1", .account = "210987654321", .overrides = ov,
                           .noverrides = 1};
    ciot__cfn_result r = {0};
    cr_assert_eq(load(&r, yaml, &o), 0, "%s", err);
    json_t *p = payload0(&r);
    const char *sql = json_string_value(json_object_get(p, "sql"));
    cr_assert(strstr(sql, "WHERE value > 40") != NULL, "%s", sql);
    json_t *acts = json_object_get(p, "actions");
    cr_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_array_get(acts, 0), "lambda"), "functionArn")),
                     "arn:aws:lambda:eu-west-1:210987654321:function:ProcessTemperatureAlert");
    cr_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_array_get(acts, 1), "sns"), "roleArn")),
                     "arn:aws:iam::210987654321:role/IoTRulesRole");
    ciot__cfn_result_free(&r);

    const char *bad[] = {"Nope=1"};
    o.overrides = bad;
    cr_assert_eq(load(&r, yaml, &o), CIOT_EINVAL);
    cr_assert_str_eq(err, "Parameters: [Nope] do not exist in the template");
    const char *nan[] = {"AlertThreshold=hot"};
    o.overrides = nan;
    cr_assert_eq(load(&r, yaml, &o), CIOT_EINVAL);
    cr_assert(strstr(err, "must be a number") != NULL, "%s", err);
    const char *noeq[] = {"AlertThreshold"};
    o.overrides = noeq;
    cr_assert_eq(load(&r, yaml, &o), CIOT_EINVAL);
    cr_assert(strstr(err, "is not Key=Value") != NULL, "%s", err);
    free(yaml);
}

Test(emulator_cfn, json_template_with_long_form_functions)
{
    const char *t =
        "{\"AWSTemplateFormatVersion\":\"2010-09-09\",\n"
        " \"Parameters\":{\"Limit\":{\"Type\":\"Number\",\"Default\":\"35\"}},\n"
        " \"Resources\":{\"R\":{\"Type\":\"AWS::IoT::TopicRule\",\"Properties\":{\n"
        "  \"RuleName\":{\"Fn::Join\":[\"_\",[\"Alert\",{\"Ref\":\"Limit\"}]]},\n"
        "  \"TopicRulePayload\":{\"Sql\":{\"Fn::Sub\":\"SELECT * FROM 'a/+' WHERE v > "
        "${Limit}\"},\n"
        "   \"AwsIotSqlVersion\":\"2016-03-23\",\"RuleDisabled\":true,\n"
        "   \"Actions\":[{\"Lambda\":{\"FunctionArn\":{\"Fn::Sub\":"
        "\"arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:F\"}}}]}}}}}";
    ciot__cfn_result r = {0};
    cr_assert_eq(load(&r, t, NULL), 0, "%s", err);
    json_t *rule = json_array_get(r.rules, 0);
    cr_assert_str_eq(json_string_value(json_object_get(rule, "ruleName")), "Alert_35");
    json_t *p = payload0(&r);
    cr_assert_str_eq(json_string_value(json_object_get(p, "sql")),
                     "SELECT * FROM 'a/+' WHERE v > 35");
    cr_assert(json_is_true(json_object_get(p, "ruleDisabled")));
    cr_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_array_get(json_object_get(p, "actions"), 0),
                                         "lambda"),
                         "functionArn")),
                     "arn:aws:lambda:us-east-1:123456789012:function:F");
    ciot__cfn_result_free(&r);
}

Test(emulator_cfn, sub_forms_escapes_getatt_and_all_actions)
{
    const char *t =
        "Resources:\n"
        "  Fn:\n"
        "    Type: AWS::Lambda::Function\n"
        "    Properties: {FunctionName: !Sub '${AWS::StackName}-fn'}\n"
        "  Alerts:\n"
        "    Type: AWS::SNS::Topic\n"
        "    Properties: {TopicName: AlertTopic}\n"
        "  Table:\n"
        "    Type: AWS::DynamoDB::Table\n"
        "    Properties: {TableName: Readings}\n"
        "  Role:\n"
        "    Type: AWS::IAM::Role\n"
        "    Properties: {RoleName: IoTRole}\n"
        "  Rule:\n"
        "    Type: AWS::IoT::TopicRule\n"
        "    Properties:\n"
        "      TopicRulePayload:\n"
        "        Sql: SELECT * FROM 'sensors/+/temperature'\n"
        "        AwsIotSqlVersion: '2016-03-23'\n"
        "        Actions:\n"
        "          - Lambda: {FunctionArn: !GetAtt Fn.Arn}\n"
        "          - Sns: {TargetArn: !Ref Alerts, RoleArn: !GetAtt [Role, Arn], "
        "MessageFormat: RAW}\n"
        "          - Republish:\n"
        "              Topic: !Sub ['${prefix}/${!topic(2)}/${AWS::URLSuffix}', {prefix: "
        "!Ref Table}]\n"
        "              Qos: 1\n"
        "              RoleArn: !GetAtt Role.Arn\n"
        "          - DynamoDBv2:\n"
        "              RoleArn: !GetAtt Role.Arn\n"
        "              PutItem: {TableName: !Ref Table}\n"
        "        ErrorAction:\n"
        "          Republish: {Topic: errors, RoleArn: x}\n";
    ciot__cfn_options o = {.stack_name = "demo"};
    ciot__cfn_result r = {0};
    cr_assert_eq(load(&r, t, &o), 0, "%s", err);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(r.rules, 0), "ruleName")),
                     "Rule", "no RuleName: the logical id");
    const char *want =
        "{\"actions\": [{\"lambda\": {\"functionArn\": "
        "\"arn:aws:lambda:us-east-1:123456789012:function:demo-fn\"}}, "
        "{\"sns\": {\"messageFormat\": \"RAW\", \"roleArn\": "
        "\"arn:aws:iam::123456789012:role/IoTRole\", \"targetArn\": "
        "\"arn:aws:sns:us-east-1:123456789012:AlertTopic\"}}, "
        "{\"republish\": {\"qos\": 1, \"roleArn\": \"arn:aws:iam::123456789012:role/IoTRole\", "
        "\"topic\": \"Readings/${topic(2)}/amazonaws.com\"}}, "
        "{\"dynamoDBv2\": {\"putItem\": {\"tableName\": \"Readings\"}, \"roleArn\": "
        "\"arn:aws:iam::123456789012:role/IoTRole\"}}], "
        "\"awsIotSqlVersion\": \"2016-03-23\", "
        "\"errorAction\": {\"republish\": {\"roleArn\": \"x\", \"topic\": \"errors\"}}, "
        "\"sql\": \"SELECT * FROM 'sensors/+/temperature'\"}";
    char *got = json_dumps(payload0(&r), JSON_SORT_KEYS);
    cr_assert_str_eq(got, want);
    free(got);
    /* the four other resources, one note each, in template order */
    cr_assert_eq(json_array_size(r.notes), 4);
    const char *ids[] = {"Fn", "Alerts", "Table", "Role"};
    for (size_t i = 0; i < 4; i++) {
        json_t *n = json_array_get(r.notes, i);
        cr_assert_str_eq(json_string_value(json_object_get(n, "logicalId")), ids[i]);
        cr_assert(strncmp(json_string_value(json_object_get(n, "reason")), "not emulated", 12) ==
                  0);
    }
    ciot__cfn_result_free(&r);
}

Test(emulator_cfn, iot_substitution_template_inside_sub_needs_the_escape)
{
    const char *t = "Resources:\n"
                    "  R:\n"
                    "    Type: AWS::IoT::TopicRule\n"
                    "    Properties:\n"
                    "      TopicRulePayload:\n"
                    "        Sql: SELECT * FROM 'a/b'\n"
                    "        Actions:\n"
                    "          - Republish:\n"
                    "              Topic: !Sub 'alerts/${topic(2)}'\n"
                    "              RoleArn: r\n";
    assert_error(t, CIOT_EINVAL, "9:22: Resource R: ", "${!topic(2)}");
    /* without !Sub the template is a plain string and passes through */
    const char *plain = "Resources:\n"
                        "  R:\n"
                        "    Type: AWS::IoT::TopicRule\n"
                        "    Properties:\n"
                        "      TopicRulePayload:\n"
                        "        Sql: SELECT * FROM 'a/b'\n"
                        "        Actions: [{Republish: {Topic: 'alerts/${topic(2)}', RoleArn: "
                        "r}}]\n";
    ciot__cfn_result r = {0};
    cr_assert_eq(load(&r, plain, NULL), 0, "%s", err);
    cr_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_array_get(json_object_get(payload0(&r), "actions"),
                                                        0),
                                         "republish"),
                         "topic")),
                     "alerts/${topic(2)}");
    ciot__cfn_result_free(&r);
}

Test(emulator_cfn, unsupported_resource_types)
{
    const char *t = "Resources:\n"
                    "  Bucket:\n"
                    "    Type: AWS::S3::Bucket\n"
                    "  Perm:\n"
                    "    Type: AWS::Lambda::Permission\n"
                    "    Properties: {Action: lambda:InvokeFunction}\n"
                    "  Pol:\n"
                    "    Type: AWS::IAM::Policy\n";
    assert_error(t, CIOT_EINVAL, "3:11: Resource Bucket: ", "AWS::S3::Bucket is not supported");
    ciot__cfn_options o = {.skip_unsupported = true};
    ciot__cfn_result r = {0};
    cr_assert_eq(load(&r, t, &o), 0, "%s", err);
    cr_assert_eq(json_array_size(r.rules), 0);
    cr_assert_eq(json_array_size(r.notes), 3);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(r.notes, 0), "type")),
                     "AWS::S3::Bucket");
    cr_assert(strstr(json_string_value(json_object_get(json_array_get(r.notes, 0), "reason")),
                     "skipped") != NULL);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(r.notes, 1), "type")),
                     "AWS::Lambda::Permission");
    ciot__cfn_result_free(&r);
}

#define RULE_HEAD                                                                          \
    "Resources:\n"                                                                         \
    "  R:\n"                                                                               \
    "    Type: AWS::IoT::TopicRule\n"                                                      \
    "    Properties:\n"                                                                    \
    "      TopicRulePayload:\n"

Test(emulator_cfn, malformed_templates_name_the_position)
{
    /* YAML syntax */
    assert_error("Resources:\n  R: [1, 2\n", CIOT_EINVAL, "3:1: YAML: ", "");
    assert_error("Resources: {a: 1\n", CIOT_EINVAL, NULL, "YAML");
    assert_error("", CIOT_EINVAL, NULL, "empty");
    assert_error("- a\n- b\n", CIOT_EINVAL, "1:1: ", "must be a mapping");
    assert_error("Resources: {}\n", CIOT_EINVAL, "1:12: ", "must not be empty");
    assert_error("Description: x\n", CIOT_EINVAL, "1:1: ", "no Resources");
    assert_error("Resources: {R: {Type: AWS::IoT::TopicRule}}\nFoo: 1\n", CIOT_EINVAL, "2:1: ",
                 "unknown property Foo");
    assert_error("Resources: {R: {Type: AWS::IoT::TopicRule}}\n---\nResources: {}\n",
                 CIOT_EINVAL, NULL, "Properties are missing");
    assert_error("AWSTemplateFormatVersion: '2010-09-10'\nResources: {}\n", CIOT_EINVAL,
                 "1:27: ", "2010-09-09");
    assert_error("Conditions: {}\nResources: {}\n", CIOT_EINVAL, "1:1: ", "not supported");
    assert_error("Transform: AWS::Serverless-2016-10-31\nResources: {}\n", CIOT_EINVAL, "1:1: ",
                 "Transform is not supported");
    /* resources */
    assert_error("Resources:\n  my-rule: {Type: AWS::IoT::TopicRule}\n", CIOT_EINVAL, "2:3: ",
                 "not alphanumeric");
    assert_error("Resources:\n  R: {Properties: {}}\n", CIOT_EINVAL, "2:6: Resource R: ",
                 "Type is missing");
    assert_error("Resources:\n  R: {Type: AWS::IoT::TopicRule, Condition: C}\n", CIOT_EINVAL,
                 "2:45: Resource R: ", "conditions are not supported");
    assert_error("Resources:\n  R: {Type: AWS::IoT::TopicRule, Foo: 1}\n", CIOT_EINVAL,
                 "2:34: Resource R: ", "unknown property Foo");
    /* the payload */
    assert_error(RULE_HEAD "        Actions: []\n", CIOT_EINVAL, "6:9: Resource R: ",
                 "required property Sql is missing");
    assert_error(RULE_HEAD "        Sql: x\n", CIOT_EINVAL, "6:9: Resource R: ",
                 "required property Actions is missing");
    assert_error(RULE_HEAD "        Sql: x\n        sql: y\n        Actions: []\n", CIOT_EINVAL,
                 "7:9: Resource R: ", "unknown property sql");
    assert_error(RULE_HEAD "        Sql: x\n        Sql: y\n        Actions: []\n", CIOT_EINVAL,
                 "7:9: Resource R: ", "duplicate key Sql");
    assert_error(RULE_HEAD "        Sql: x\n        RuleDisabled: maybe\n        Actions: []\n",
                 CIOT_EINVAL, "7:23: Resource R: ", "must be true or false");
    assert_error(RULE_HEAD "        Sql: [a]\n        Actions: []\n", CIOT_EINVAL,
                 "6:14: Resource R: ", "expected a string");
    assert_error(RULE_HEAD "        Sql: x\n        Actions: {}\n", CIOT_EINVAL,
                 "7:18: Resource R: ", "must be a list of actions");
    assert_error(RULE_HEAD "        Sql: x\n        Actions: [{S3: {BucketName: b}}]\n",
                 CIOT_EINVAL, "7:20: Resource R: ", "action S3 is not emulated");
    assert_error(RULE_HEAD "        Sql: x\n        Actions: [{Teleport: {}}]\n", CIOT_EINVAL,
                 "7:20: Resource R: ", "unknown action kind Teleport");
    assert_error(RULE_HEAD "        Sql: x\n        Actions: [{Lambda: {FunctionArn: f}, Sns: "
                           "{}}]\n",
                 CIOT_EINVAL, "7:19: Resource R: ", "exactly one kind");
    assert_error(RULE_HEAD "        Sql: x\n        Actions: [{Lambda: {FunctionArn: f, "
                           "functionArn: g}}]\n",
                 CIOT_EINVAL, "7:45: Resource R: ", "Lambda: unknown property functionArn");
    assert_error(RULE_HEAD "        Sql: x\n        Actions: [{Republish: {Topic: t, RoleArn: "
                           "r, Qos: 2}}]\n",
                 CIOT_EINVAL, "7:59: Resource R: ", "Qos must be 0 or 1");
    assert_error(RULE_HEAD "        Sql: x\n        Actions: [{Republish: {Topic: t, RoleArn: "
                           "r, Headers: {}}}]\n",
                 CIOT_EINVAL, "7:54: Resource R: ", "unknown property Headers");
    assert_error(RULE_HEAD "        Sql: x\n        Actions: [{Sns: {TargetArn: t, RoleArn: r, "
                           "MessageFormat: XML}}]\n",
                 CIOT_EINVAL, "7:67: Resource R: ", "RAW or JSON");
    assert_error(RULE_HEAD "        Sql: x\n        Actions: [{DynamoDBv2: {RoleArn: r}}]\n",
                 CIOT_EINVAL, "7:32: Resource R: ", "required property PutItem is missing");
    assert_error(RULE_HEAD "        Sql: x\n        Actions: [{DynamoDBv2: {RoleArn: r, "
                           "PutItem: {}}}]\n",
                 CIOT_EINVAL, "7:54: Resource R: ", "required property TableName is missing");
    assert_error("Resources:\n  R:\n    Type: AWS::IoT::TopicRule\n    Properties:\n"
                 "      RuleName: bad-name\n      TopicRulePayload: {Sql: x, Actions: []}\n",
                 CIOT_EINVAL, "5:17: Resource R: ", "RuleName 'bad-name'");
}

Test(emulator_cfn, bad_intrinsics_and_parameters)
{
    assert_error(RULE_HEAD "        Sql: !Ref Nowhere\n        Actions: []\n", CIOT_EINVAL,
                 "6:14: Resource R: ", "Unresolved reference Nowhere");
    assert_error(RULE_HEAD "        Sql: !Ref AWS::NotificationARNs\n        Actions: []\n",
                 CIOT_EINVAL, "6:14: Resource R: ", "not supported");
    assert_error(RULE_HEAD "        Sql: !Select [0, [a]]\n        Actions: []\n", CIOT_EINVAL,
                 "6:14: Resource R: ", "Fn::Select is not supported");
    assert_error(RULE_HEAD "        Sql: {'Fn::If': [c, a, b]}\n        Actions: []\n",
                 CIOT_EINVAL, "6:14: Resource R: ", "Fn::If is not supported");
    assert_error(RULE_HEAD "        Sql: !Sub 'a ${unterminated'\n        Actions: []\n",
                 CIOT_EINVAL, "6:14: Resource R: ", "unterminated");
    assert_error(RULE_HEAD "        Sql: !Sub 'a ${}'\n        Actions: []\n", CIOT_EINVAL,
                 "6:14: Resource R: ", "bad variable");
    assert_error(RULE_HEAD "        Sql: !Sub [a, b, c]\n        Actions: []\n", CIOT_EINVAL,
                 "6:14: Resource R: ", "Fn::Sub takes");
    assert_error(RULE_HEAD "        Sql: !Join [',', x]\n        Actions: []\n", CIOT_EINVAL,
                 "6:26: Resource R: ", "expected a list");
    assert_error(RULE_HEAD "        Sql: !GetAtt R.Arn.X\n        Actions: []\n", CIOT_EINVAL,
                 "6:14: Resource R: ", "attribute Arn.X");
    assert_error(RULE_HEAD "        Sql: !GetAtt NoDot\n        Actions: []\n", CIOT_EINVAL,
                 "6:14: Resource R: ", "Resource.Attribute");
    /* a rule whose name refers to itself */
    assert_error("Resources:\n  R:\n    Type: AWS::IoT::TopicRule\n    Properties:\n"
                 "      RuleName: !Ref R\n      TopicRulePayload: {Sql: x, Actions: []}\n",
                 CIOT_EDEPTH, NULL, "circular");
    /* parameters */
    assert_error("Parameters: {P: {Type: String}}\n" RULE_HEAD "        Sql: !Ref P\n"
                 "        Actions: []\n",
                 CIOT_EINVAL, "1:14: ", "Parameters: [P] must have values");
    assert_error("Parameters: {P: {Type: List<String>, Default: a}}\nResources: {}\n",
                 CIOT_EINVAL, "1:24: ", "not supported");
    assert_error("Parameters: {P: {Type: Number, Default: x}}\nResources: {}\n", CIOT_EINVAL,
                 "1:14: ", "must be a number");
    assert_error("Parameters: {P: {Type: String, Default: c, AllowedValues: [a, b]}}\n"
                 "Resources: {}\n",
                 CIOT_EINVAL, "1:14: ", "AllowedValues");
    assert_error("Parameters: {P: {Type: String, Default: a, Colour: red}}\nResources: {}\n",
                 CIOT_EINVAL, "1:44: ", "unknown property Colour");
    assert_error("Parameters: {P-1: {Type: String}}\nResources: {}\n", CIOT_EINVAL, "1:14: ",
                 "not alphanumeric");
}

Test(emulator_cfn, hostile_inputs_are_bounded)
{
    /* an alias bomb under Metadata: 9 levels of Fn::Join over 10 references
     * each (10^9 strings if expanded), used as the rule's Sql */
    char bomb[4096];
    size_t off = (size_t)snprintf(bomb, sizeof bomb,
                                  "Metadata:\n  a0: &a0 !Join ['', [x,x,x,x,x,x,x,x,x,x]]\n");
    for (int i = 1; i < 9; i++)
        off += (size_t)snprintf(bomb + off, sizeof bomb - off,
                                "  a%d: &a%d !Join ['', [*a%d,*a%d,*a%d,*a%d,*a%d,*a%d,*a%d,*a%d,"
                                "*a%d,*a%d]]\n",
                                i, i, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1,
                                i - 1, i - 1);
    snprintf(bomb + off, sizeof bomb - off, RULE_HEAD "        Sql: *a8\n        Actions: []\n");
    ciot__cfn_result r = {0};
    int rc = load(&r, bomb, NULL);
    cr_assert_eq(rc, CIOT_EINVAL, "rc %d: %s", rc, err);
    cr_assert(strstr(err, "too much work") != NULL, "%s", err);
    /* a NUL byte */
    const char nul[] = "Resources: {}\n\0x";
    cr_assert_eq(ciot__cfn_load(&r, nul, sizeof nul - 1, &(ciot__cfn_options){0}, err,
                                sizeof err),
                 CIOT_EINVAL);
    cr_assert(strstr(err, "NUL") != NULL);
    /* NULL arguments */
    cr_assert_eq(ciot__cfn_load(&r, NULL, 3, &(ciot__cfn_options){0}, err, sizeof err),
                 CIOT_EINVAL);
    cr_assert_eq(ciot__cfn_load(NULL, "a", 1, &(ciot__cfn_options){0}, NULL, 0), CIOT_EINVAL);
}

Test(emulator_cfn, rule_names)
{
    cr_assert(ciot__cfn_rule_name_valid("TemperatureAlertRule", 20));
    cr_assert(ciot__cfn_rule_name_valid("a_1", 3));
    cr_assert_not(ciot__cfn_rule_name_valid("a-1", 3));
    cr_assert_not(ciot__cfn_rule_name_valid("", 0));
    cr_assert_not(ciot__cfn_rule_name_valid("a/b", 3));
    char n[130];
    memset(n, 'x', sizeof n);
    cr_assert(ciot__cfn_rule_name_valid(n, 128));
    cr_assert_not(ciot__cfn_rule_name_valid(n, 129));
}
