/*
 * CloudFormation templates for the emulator's rules engine: reads a template
 * (YAML through libyaml, or JSON, which YAML 1.2 contains) and turns its
 * AWS::IoT::TopicRule resources into CreateTopicRule requests, the JSON the
 * emulator keeps in <data>/registry/rules/<ruleName>.json:
 *
 *   {"ruleName":"R","topicRulePayload":{"sql":..,"description":..,"ruleDisabled":..,
 *    "awsIotSqlVersion":..,"actions":[..],"errorAction":{..}}}
 *
 * What is evaluated (doc/emulator-launcher.md, "Rules"):
 * - Parameters (Type, Default, AllowedValues), overridden by "Key=Value"
 *   strings (aws cloudformation deploy --parameter-overrides);
 * - Ref (parameters, pseudo parameters AWS::Region, AWS::AccountId,
 *   AWS::Partition, AWS::StackName, AWS::URLSuffix, and resources),
 *   Fn::Sub (string and [string, {vars}] forms, ${!Literal} escapes),
 *   Fn::Join and Fn::GetAtt, in the long form ({"Fn::Sub": ...}) and the
 *   YAML tag form (!Sub ...);
 * - TopicRulePayload properties mapped explicitly per action kind (Lambda,
 *   Sns, Republish, DynamoDBv2); any other property or action is an error.
 * Resources the emulator does not run (AWS::Lambda::Function,
 * AWS::Lambda::Permission, AWS::SNS::Topic, AWS::DynamoDB::Table,
 * AWS::IAM::Role, AWS::IAM::Policy) are listed in the result's notes; any
 * other type is an error unless skip_unsupported is set (then it is noted).
 *
 * Errors are one line: "LINE:COL: Resource NAME: what" (1-based, the YAML
 * position of the offending node). No mosquitto dependency: jansson and
 * libyaml only; used by the launcher and the unit tests.
 */
#ifndef CIOT_EMULATOR_CFN_H
#define CIOT_EMULATOR_CFN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct ciot__cfn_options {
    const char *region;     /* NULL: us-east-1 */
    const char *account;    /* NULL: 123456789012 */
    const char *stack_name; /* NULL: "cloudiot-emulator" */
    const char *const *overrides; /* "Key=Value" strings */
    size_t noverrides;
    bool skip_unsupported; /* unsupported resource types are noted, not errors */
} ciot__cfn_options;

typedef struct ciot__cfn_result {
    json_t *rules; /* array of {"ruleName","topicRulePayload"}, in template order */
    json_t *notes; /* array of {"logicalId","type","reason"}: resources not emulated */
} ciot__cfn_result;

/*
 * Loads a template of @p len bytes.
 * @retval 0            *out filled (free with ciot__cfn_result_free)
 * @retval CIOT_EINVAL  the template is malformed or uses what is not supported;
 *                      @p err holds the reason with its line:column
 * @retval CIOT_EDEPTH  nesting or references too deep (@p err set)
 * @retval CIOT_ENOMEM  out of memory
 */
int ciot__cfn_load(ciot__cfn_result *out, const char *text, size_t len,
                   const ciot__cfn_options *opts, char *err, size_t errlen);
void ciot__cfn_result_free(ciot__cfn_result *r);

/* Whether @p name is a valid AWS IoT rule name: [a-zA-Z0-9_]{1,128}. */
bool ciot__cfn_rule_name_valid(const char *name, size_t len);

#endif /* CIOT_EMULATOR_CFN_H */
