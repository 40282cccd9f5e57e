/* The AWS IoT policy engine (lib/core/aws_policy.h): a typical device
 * policy (allowed and refused requests), policy variables and their literal
 * substitution, IAM escapes, Version 2008-10-17, Deny over Allow, action and
 * resource case rules, wildcards (against an independent reference matcher
 * on random inputs, and on inputs that make naive backtracking explode),
 * every parse error with its message, size limits, and no allocation on
 * evaluation. */
#include "core/aws_policy.h"
#include "internal.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ARN "arn:aws:iot:us-east-1:123456789012:"
#define THING "${iot:Connection.Thing.ThingName}"

static double test_scale(void)
{
    const char *s = getenv("CIOT_TEST_SCALE");
    double f = s ? atof(s) : 1.0;
    return f > 0 ? f : 1.0;
}

static long scaled(long n)
{
    long m = (long)((double)n * test_scale());
    return m < 1 ? 1 : m;
}

/* ---- helpers -------------------------------------------------------------- */

static ciot__aws_policy *parse_ok(const char *doc)
{
    ciot__aws_policy *p = NULL;
    char err[256];
    int rc = ciot__aws_policy_parse(&p, doc, strlen(doc), err, sizeof err);
    cr_assert_eq(rc, 0, "parse failed (%d): %s\n%s", rc, err, doc);
    cr_assert_not_null(p);
    return p;
}

/* Parses a document that must fail with @p rc and a message containing @p msg. */
static void parse_fails(const char *doc, int rc, const char *msg)
{
    ciot__aws_policy *p = (ciot__aws_policy *)(uintptr_t)1;
    char err[512];
    memset(err, 'x', sizeof err);
    int got = ciot__aws_policy_parse(&p, doc, strlen(doc), err, sizeof err);
    cr_assert_eq(got, rc, "rc %d, wanted %d (%s) for %s", got, rc, err, doc);
    cr_assert_null(p, "*out must be NULL on failure");
    cr_assert(memchr(err, '\0', sizeof err) != NULL, "message must be NUL-terminated");
    cr_assert(strstr(err, msg) != NULL, "message \"%s\" does not contain \"%s\"", err, msg);
}

static int eval1(const ciot__aws_policy *p, const char *action, const char *res,
                 const ciot__aws_policy_ctx *ctx)
{
    const ciot__aws_policy *ps[1] = {p};
    return ciot__aws_policy_eval(ps, 1, action, res, ctx);
}

#define ALLOW CIOT__POLICY_ALLOW
#define IDENY CIOT__POLICY_IMPLICIT_DENY
#define XDENY CIOT__POLICY_EXPLICIT_DENY

/* The developer guide's kind of device policy. */
static const char sensor_policy[] =
    "{\n"
    "  \"Version\": \"2012-10-17\",\n"
    "  \"Statement\": [\n"
    "    {\"Effect\": \"Allow\", \"Action\": \"iot:Connect\",\n"
    "     \"Resource\": \"" ARN "client/" THING "\"},\n"
    "    {\"Effect\": \"Allow\", \"Action\": \"iot:Publish\",\n"
    "     \"Resource\": [\"" ARN "topic/sensors/" THING "/*\",\n"
    "                  \"" ARN "topic/$aws/things/" THING "/shadow/*\"]},\n"
    "    {\"Effect\": \"Allow\", \"Action\": \"iot:Subscribe\",\n"
    "     \"Resource\": [\"" ARN "topicfilter/commands/" THING "/*\",\n"
    "                  \"" ARN "topicfilter/$aws/things/" THING "/shadow/*\"]},\n"
    "    {\"Effect\": \"Allow\", \"Action\": \"iot:Receive\",\n"
    "     \"Resource\": [\"" ARN "topic/commands/" THING "/*\",\n"
    "                  \"" ARN "topic/$aws/things/" THING "/shadow/*\"]}\n"
    "  ]\n"
    "}\n";

static const ciot__aws_policy_ctx dev1 = {"dev1", "dev1", true};

/* ---- the device policy ---------------------------------------------------- */

Test(aws_policy, device_policy_allows_its_own_resources)
{
    ciot__aws_policy *p = parse_ok(sensor_policy);
    cr_assert_eq(eval1(p, "iot:Connect", ARN "client/dev1", &dev1), ALLOW);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/sensors/dev1/temp", &dev1), ALLOW);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/sensors/dev1/a/b/c", &dev1), ALLOW,
                 "* spans '/'");
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/sensors/dev1/", &dev1), ALLOW,
                 "* matches the empty run");
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/$aws/things/dev1/shadow/update", &dev1),
                 ALLOW);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/$aws/things/dev1/shadow/name/x/update", &dev1),
                 ALLOW);
    cr_assert_eq(eval1(p, "iot:Subscribe", ARN "topicfilter/commands/dev1/+", &dev1), ALLOW);
    cr_assert_eq(eval1(p, "iot:Subscribe", ARN "topicfilter/commands/dev1/#", &dev1), ALLOW);
    cr_assert_eq(
        eval1(p, "iot:Subscribe", ARN "topicfilter/$aws/things/dev1/shadow/update/delta", &dev1),
        ALLOW);
    cr_assert_eq(eval1(p, "iot:Receive", ARN "topic/commands/dev1/reboot", &dev1), ALLOW);
    cr_assert_eq(eval1(p, "iot:Receive", ARN "topic/$aws/things/dev1/shadow/get/accepted", &dev1),
                 ALLOW);
    ciot__aws_policy_free(p);
}

Test(aws_policy, device_policy_refuses_everything_else)
{
    ciot__aws_policy *p = parse_ok(sensor_policy);
    /* another thing's resources */
    cr_assert_eq(eval1(p, "iot:Connect", ARN "client/dev2", &dev1), IDENY);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/sensors/dev2/temp", &dev1), IDENY);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/sensors/dev10/temp", &dev1), IDENY);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/sensors/dev/temp", &dev1), IDENY);
    cr_assert_eq(eval1(p, "iot:Receive", ARN "topic/commands/dev2/reboot", &dev1), IDENY);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/$aws/things/dev2/shadow/update", &dev1), IDENY);
    /* the prefix without its '/' */
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/sensors/dev1", &dev1), IDENY);
    /* broader filters: + and # are literal characters in a policy */
    cr_assert_eq(eval1(p, "iot:Subscribe", ARN "topicfilter/commands/#", &dev1), IDENY);
    cr_assert_eq(eval1(p, "iot:Subscribe", ARN "topicfilter/commands/+/x", &dev1), IDENY);
    cr_assert_eq(eval1(p, "iot:Subscribe", ARN "topicfilter/#", &dev1), IDENY);
    /* the right resource for another action */
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/commands/dev1/reboot", &dev1), IDENY);
    cr_assert_eq(eval1(p, "iot:Receive", ARN "topic/sensors/dev1/temp", &dev1), IDENY);
    cr_assert_eq(eval1(p, "iot:Subscribe", ARN "topic/commands/dev1/x", &dev1), IDENY);
    cr_assert_eq(eval1(p, "iot:RetainPublish", ARN "topic/sensors/dev1/temp", &dev1), IDENY);
    cr_assert_eq(eval1(p, "iot:UpdateThingShadow", ARN "thing/dev1", &dev1), IDENY);
    /* another account or region */
    cr_assert_eq(eval1(p, "iot:Publish", "arn:aws:iot:us-east-1:999999999999:topic/sensors/dev1/t",
                       &dev1),
                 IDENY);
    cr_assert_eq(eval1(p, "iot:Publish", "arn:aws:iot:eu-west-1:123456789012:topic/sensors/dev1/t",
                       &dev1),
                 IDENY);
    /* resources compare with case */
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/Sensors/dev1/temp", &dev1), IDENY);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/sensors/DEV1/temp", &dev1), IDENY);
    cr_assert_eq(eval1(p, "iot:Publish", "ARN:aws:iot:us-east-1:123456789012:topic/sensors/dev1/t",
                       &dev1),
                 IDENY);
    /* empty and odd requests */
    cr_assert_eq(eval1(p, "iot:Publish", "", &dev1), IDENY);
    cr_assert_eq(eval1(p, "", ARN "topic/sensors/dev1/temp", &dev1), IDENY);
    ciot__aws_policy_free(p);
}

Test(aws_policy, actions_compare_without_case)
{
    ciot__aws_policy *p = parse_ok(sensor_policy);
    cr_assert_eq(eval1(p, "IOT:PUBLISH", ARN "topic/sensors/dev1/temp", &dev1), ALLOW);
    cr_assert_eq(eval1(p, "iot:publish", ARN "topic/sensors/dev1/temp", &dev1), ALLOW);
    cr_assert_eq(eval1(p, "iot:Publish ", ARN "topic/sensors/dev1/temp", &dev1), IDENY);
    cr_assert_eq(eval1(p, "iot:Publis", ARN "topic/sensors/dev1/temp", &dev1), IDENY);
    ciot__aws_policy_free(p);

    p = parse_ok("{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\","
                 "\"Action\":\"IoT:PUBLISH\",\"Resource\":\"*\"}}");
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/x", &dev1), ALLOW);
    cr_assert_eq(eval1(p, "iot:Receive", ARN "topic/x", &dev1), IDENY);
    ciot__aws_policy_free(p);
}

Test(aws_policy, action_wildcards)
{
    static const struct {
        const char *pattern, *action;
        int want;
    } cases[] = {
        {"*", "iot:Publish", ALLOW},
        {"*", "s3:GetObject", ALLOW},
        {"iot:*", "iot:Publish", ALLOW},
        {"iot:*", "iot:ListNamedShadowsForThing", ALLOW},
        {"iot:*", "iot:SomeFutureAction", ALLOW},
        {"iot:*", "iotx:Publish", IDENY},
        {"iot:Pub*", "iot:Publish", ALLOW},
        {"iot:Pub*", "iot:Subscribe", IDENY},
        {"IOT:PUB*", "iot:publish", ALLOW},
        {"iot:?ublish", "iot:Publish", ALLOW},
        {"iot:?ublish", "iot:ublish", IDENY},
        {"iot:*Shadow", "iot:GetThingShadow", ALLOW},
        {"iot:*Shadow", "iot:UpdateThingShadow", ALLOW},
        {"iot:*Shadow", "iot:Publish", IDENY},
        {"iot:*Retain*", "iot:RetainPublish", ALLOW},
        {"iot:*Retain*", "iot:GetRetainedMessage", ALLOW},
        {"iot:*Retain*", "iot:Receive", IDENY},
        {"iot:SomeFutureAction", "IOT:SOMEFUTUREACTION", ALLOW},
        {"iot:SomeFutureAction", "iot:SomeFutureActio", IDENY},
        {"iot:Some*Action", "iot:SomeOtherAction", ALLOW},
        {"iot:Publish", "iot:SomeFutureAction", IDENY},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char doc[256];
        snprintf(doc, sizeof doc,
                 "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\","
                 "\"Action\":[\"%s\"],\"Resource\":[\"*\"]}]}",
                 cases[i].pattern);
        ciot__aws_policy *p = parse_ok(doc);
        cr_assert_eq(eval1(p, cases[i].action, ARN "topic/a", &dev1), cases[i].want,
                     "action pattern %s vs %s", cases[i].pattern, cases[i].action);
        ciot__aws_policy_free(p);
    }
}

/* ---- variables ------------------------------------------------------------ */

Test(aws_policy, missing_thing_name_matches_nothing)
{
    ciot__aws_policy *p = parse_ok(sensor_policy);
    ciot__aws_policy_ctx none = {"dev1", NULL, false};
    cr_assert_eq(eval1(p, "iot:Connect", ARN "client/dev1", &none), IDENY);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/sensors/dev1/temp", &none), IDENY);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/sensors//temp", &none), IDENY,
                 "no value is not the empty string");
    ciot__aws_policy_free(p);

    /* Only the resources using the variable stop matching. */
    p = parse_ok("{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\","
                 "\"Action\":\"iot:Publish\",\"Resource\":[\"" ARN "topic/t/" THING "\","
                 "\"" ARN "topic/c/${iot:ClientId}\"]}}");
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/c/dev1", &none), ALLOW);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/t/dev1", &none), IDENY);
    ciot__aws_policy_ctx no_client = {NULL, "dev1", true};
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/t/dev1", &no_client), ALLOW);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/c/dev1", &no_client), IDENY);
    ciot__aws_policy_free(p);
}

Test(aws_policy, variable_values_match_literally)
{
    ciot__aws_policy *p =
        parse_ok("{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\","
                 "\"Action\":\"iot:Publish\",\"Resource\":[\"" ARN "topic/c/${iot:ClientId}/x\","
                 "\"" ARN "topic/t/" THING "\"]}}");
    ciot__aws_policy_ctx star = {"*", "*", true};
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/c/*/x", &star), ALLOW);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/c/anything/x", &star), IDENY,
                 "a '*' in a client id is not a wildcard");
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/c//x", &star), IDENY);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/t/*", &star), ALLOW);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/t/dev1", &star), IDENY);
    ciot__aws_policy_ctx q = {"a?c", "a?c", true};
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/c/a?c/x", &q), ALLOW);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/c/abc/x", &q), IDENY,
                 "a '?' in a client id is not a wildcard");
    ciot__aws_policy_ctx dollar = {"${iot:ClientId}", "t", true};
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/c/${iot:ClientId}/x", &dollar), ALLOW,
                 "values are not substituted again");
    ciot__aws_policy_ctx empty = {"", "", false};
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/c//x", &empty), ALLOW,
                 "an empty value is a value");
    ciot__aws_policy_free(p);
}

Test(aws_policy, client_id_plus_opens_a_filter_as_aws_warns)
{
    /* The developer guide's warning: a client connecting with "+" as its
     * client id may subscribe to my/+/topic under this statement. */
    ciot__aws_policy *p =
        parse_ok("{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\","
                 "\"Action\":[\"iot:Subscribe\"],\"Resource\":[\"" ARN
                 "topicfilter/my/${iot:ClientId}/topic\"]}}");
    ciot__aws_policy_ctx plus = {"+", NULL, false};
    cr_assert_eq(eval1(p, "iot:Subscribe", ARN "topicfilter/my/+/topic", &plus), ALLOW);
    cr_assert_eq(eval1(p, "iot:Subscribe", ARN "topicfilter/my/a/topic", &plus), IDENY);
    ciot__aws_policy_free(p);
}

Test(aws_policy, is_attached_variable)
{
    ciot__aws_policy *p = parse_ok(
        "{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"iot:Publish\","
        "\"Resource\":\"" ARN "topic/attached/${iot:Connection.Thing.IsAttached}\"}}");
    ciot__aws_policy_ctx yes = {"c", "t", true}, no = {"c", NULL, false};
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/attached/true", &yes), ALLOW);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/attached/false", &yes), IDENY);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/attached/false", &no), ALLOW);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/attached/true", &no), IDENY);
    ciot__aws_policy_free(p);
}

Test(aws_policy, variables_next_to_wildcards)
{
    ciot__aws_policy *p =
        parse_ok("{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\","
                 "\"Action\":\"iot:Publish\",\"Resource\":\"" ARN
                 "topic/*/" THING "/?/${iot:ClientId}*\"}}");
    ciot__aws_policy_ctx c = {"cid", "th", true};
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/a/b/th/x/cid", &c), ALLOW);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/a/th/x/cidtail", &c), ALLOW);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/a/th/xy/cid", &c), IDENY);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/a/th/x/ci", &c), IDENY);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/th/x/cid", &c), IDENY);
    ciot__aws_policy_free(p);
}

Test(aws_policy, iam_escapes)
{
    ciot__aws_policy *p = parse_ok(
        "{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"iot:Publish\","
        "\"Resource\":[\"" ARN "topic/star/a${*}b\",\"" ARN "topic/q/a${?}b\",\"" ARN
        "topic/${$}aws/x\",\"" ARN "topic/mix/${*}*${?}\"]}}");
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/star/a*b", &dev1), ALLOW);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/star/axb", &dev1), IDENY);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/star/ab", &dev1), IDENY);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/q/a?b", &dev1), ALLOW);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/q/axb", &dev1), IDENY);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/$aws/x", &dev1), ALLOW);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/${$}aws/x", &dev1), IDENY);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/mix/*anything?", &dev1), ALLOW);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/mix/*?", &dev1), ALLOW);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/mix/x?", &dev1), IDENY);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/mix/*x", &dev1), IDENY);
    ciot__aws_policy_free(p);
    /* A lone '$' and "{" without "$" are plain characters. */
    p = parse_ok("{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\","
                 "\"Action\":\"iot:Publish\",\"Resource\":\"" ARN "topic/$a{b}$\"}}");
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/$a{b}$", &dev1), ALLOW);
    ciot__aws_policy_free(p);
}

Test(aws_policy, version_2008_and_missing_version_keep_variables_as_text)
{
    static const char *const heads[] = {"{\"Version\":\"2008-10-17\",", "{"};
    for (int i = 0; i < 2; i++) {
        char doc[512];
        snprintf(doc, sizeof doc,
                 "%s\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"iot:Publish\","
                 "\"Resource\":[\"" ARN "topic/t/" THING "\",\"" ARN "topic/e/${*}\"]}}",
                 heads[i]);
        ciot__aws_policy *p = parse_ok(doc);
        cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/t/dev1", &dev1), IDENY);
        cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/t/" THING, &dev1), ALLOW,
                     "the variable is literal text in 2008-10-17");
        /* "${*}": '$', '{', a wildcard, '}' */
        cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/e/${anything}", &dev1), ALLOW);
        cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/e/*", &dev1), IDENY);
        ciot__aws_policy_free(p);
    }
    /* Unknown variables are plain text there too, so they parse. */
    ciot__aws_policy *p = parse_ok("{\"Version\":\"2008-10-17\",\"Statement\":{\"Effect\":\"Allow\","
                                   "\"Action\":\"iot:Publish\",\"Resource\":\"${aws:SourceIp}\"}}");
    cr_assert_eq(eval1(p, "iot:Publish", "${aws:SourceIp}", &dev1), ALLOW);
    ciot__aws_policy_free(p);
}

/* ---- effects -------------------------------------------------------------- */

Test(aws_policy, deny_wins_over_allow)
{
    ciot__aws_policy *p = parse_ok(
        "{\"Version\":\"2012-10-17\",\"Statement\":["
        "{\"Effect\":\"Allow\",\"Action\":\"iot:*\",\"Resource\":\"*\"},"
        "{\"Sid\":\"NoSecrets\",\"Effect\":\"Deny\",\"Action\":[\"iot:Publish\",\"iot:Receive\"],"
        "\"Resource\":\"" ARN "topic/secret/*\"}]}");
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/open/x", &dev1), ALLOW);
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/secret/x", &dev1), XDENY);
    cr_assert_eq(eval1(p, "iot:Receive", ARN "topic/secret/x", &dev1), XDENY);
    cr_assert_eq(eval1(p, "iot:Subscribe", ARN "topic/secret/x", &dev1), ALLOW,
                 "the Deny names other actions");
    cr_assert_eq(eval1(p, "iot:Publish", ARN "topicfilter/secret/x", &dev1), ALLOW);

    /* Across policies, in either order. */
    ciot__aws_policy *allow = parse_ok(sensor_policy);
    ciot__aws_policy *deny = parse_ok(
        "{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Deny\",\"Action\":\"iot:Publish\","
        "\"Resource\":\"" ARN "topic/sensors/" THING "/private\"}}");
    const ciot__aws_policy *ab[2] = {allow, deny}, *ba[2] = {deny, allow};
    const char *priv = ARN "topic/sensors/dev1/private", *pub = ARN "topic/sensors/dev1/temp";
    cr_assert_eq(ciot__aws_policy_eval(ab, 2, "iot:Publish", priv, &dev1), XDENY);
    cr_assert_eq(ciot__aws_policy_eval(ba, 2, "iot:Publish", priv, &dev1), XDENY);
    cr_assert_eq(ciot__aws_policy_eval(ab, 2, "iot:Publish", pub, &dev1), ALLOW);
    cr_assert_eq(ciot__aws_policy_eval(ba, 2, "iot:Publish", pub, &dev1), ALLOW);
    cr_assert_eq(eval1(deny, "iot:Publish", pub, &dev1), IDENY, "a Deny alone allows nothing");
    ciot__aws_policy_free(p);
    ciot__aws_policy_free(allow);
    ciot__aws_policy_free(deny);
}

Test(aws_policy, union_of_policies_and_null_arguments)
{
    ciot__aws_policy *a = parse_ok("{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":"
                                   "\"Allow\",\"Action\":\"iot:Connect\",\"Resource\":\"*\"}}");
    ciot__aws_policy *b = parse_ok("{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":"
                                   "\"Allow\",\"Action\":\"iot:Publish\",\"Resource\":\"*\"}}");
    const ciot__aws_policy *both[3] = {a, NULL, b};
    cr_assert_eq(ciot__aws_policy_eval(both, 3, "iot:Connect", ARN "client/x", &dev1), ALLOW);
    cr_assert_eq(ciot__aws_policy_eval(both, 3, "iot:Publish", ARN "topic/x", &dev1), ALLOW);
    cr_assert_eq(ciot__aws_policy_eval(both, 3, "iot:Receive", ARN "topic/x", &dev1), IDENY);
    cr_assert_eq(ciot__aws_policy_eval(both, 0, "iot:Connect", ARN "client/x", &dev1), IDENY);
    cr_assert_eq(ciot__aws_policy_eval(NULL, 3, "iot:Connect", ARN "client/x", &dev1), IDENY);
    cr_assert_eq(ciot__aws_policy_eval(both, 3, NULL, ARN "client/x", &dev1), IDENY);
    cr_assert_eq(ciot__aws_policy_eval(both, 3, "iot:Connect", NULL, &dev1), IDENY);
    cr_assert_eq(ciot__aws_policy_eval(both, 3, "iot:Connect", ARN "client/x", NULL), IDENY);
    ciot__aws_policy_free(a);
    ciot__aws_policy_free(b);
    ciot__aws_policy_free(NULL);
}

/* ---- resource wildcards --------------------------------------------------- */

static int res_eval(const char *pattern, const char *resource)
{
    char doc[1024];
    snprintf(doc, sizeof doc,
             "{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\","
             "\"Action\":\"*\",\"Resource\":\"%s\"}}",
             pattern);
    ciot__aws_policy *p = parse_ok(doc);
    int r = eval1(p, "iot:Publish", resource, &dev1);
    ciot__aws_policy_free(p);
    return r;
}

Test(aws_policy, resource_wildcards)
{
    static const struct {
        const char *pattern, *text;
        bool match;
    } cases[] = {
        {"*", "", true},
        {"*", "anything:at/all", true},
        {"a*", "a", true},
        {"*a", "a", true},
        {"a*b", "ab", true},
        {"a*b", "a", false},
        {"a*b", "ba", false},
        {"ab*ba", "aba", false},
        {"ab*ba", "abba", true},
        {"a*b*c", "abc", true},
        {"a*b*c", "axxbyyc", true},
        {"a*b*c", "acb", false},
        {"a*b*c", "abcbc", true},
        {"*b*b*", "bb", true},
        {"*b*b*", "b", false},
        {"a?c", "abc", true},
        {"a?c", "ac", false},
        {"a?c", "abbc", false},
        {"a?c", "a\xc3\xa9" "c", true}, /* one two-byte character */
        {"a??c", "a\xc3\xa9" "c", false},
        {"a?c", "a\xe2\x82\xac" "c", true},
        {"a?c", "a\xf0\x9f\x98\x80" "c", true},
        {"*?", "\xc3\xa9", true},
        {"?*?", "\xc3\xa9", false},
        {"*\xc3\xa9*", "x\xc3\xa9y", true},
        {"a*?*c", "ac", false},
        {"a*?*c", "a\xc3\xa9" "c", true},
        {"?", "", false},
        {"??", "ab", true},
        {"x*?y?*z", "x12y3z", true},
        {"x*?y?*z", "xy3z", false},
        {"+/#", "+/#", true},
        {"+/#", "a/b", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_assert_eq(res_eval(cases[i].pattern, cases[i].text), cases[i].match ? ALLOW : IDENY,
                     "pattern \"%s\" vs \"%s\"", cases[i].pattern, cases[i].text);
}

/* Reference: classic dynamic programming over bytes (ASCII inputs only). */
static bool ref_match(const char *p, const char *t)
{
    size_t pn = strlen(p), tn = strlen(t);
    bool row[64], prev[64];
    cr_assert(tn < 64);
    prev[0] = true;
    for (size_t j = 1; j <= tn; j++)
        prev[j] = false;
    for (size_t i = 1; i <= pn; i++) {
        row[0] = prev[0] && p[i - 1] == '*';
        for (size_t j = 1; j <= tn; j++) {
            if (p[i - 1] == '*')
                row[j] = prev[j] || row[j - 1];
            else
                row[j] = prev[j - 1] && (p[i - 1] == '?' || p[i - 1] == t[j - 1]);
        }
        memcpy(prev, row, sizeof row);
    }
    return prev[tn];
}

Test(aws_policy, random_resource_patterns_agree_with_reference)
{
    unsigned seed = 12345;
    long n = scaled(20000);
    for (long k = 0; k < n; k++) {
        char pat[16], txt[24];
        seed = seed * 1103515245u + 12345u;
        int pl = (int)(seed >> 16) % 12, tl = (int)((seed >> 8) % 20);
        for (int i = 0; i < pl; i++) {
            seed = seed * 1103515245u + 12345u;
            pat[i] = "ab*?"[(seed >> 16) % 4];
        }
        pat[pl] = '\0';
        for (int i = 0; i < tl; i++) {
            seed = seed * 1103515245u + 12345u;
            txt[i] = "abc"[(seed >> 16) % 3];
        }
        txt[tl] = '\0';
        if (pl == 0)
            continue; /* an empty Resource is refused */
        int want = ref_match(pat, txt) ? ALLOW : IDENY;
        cr_assert_eq(res_eval(pat, txt), want, "pattern \"%s\" vs \"%s\"", pat, txt);
    }
}

Test(aws_policy, pathological_patterns_stay_fast)
{
    /* "*a*a*...*a*b" against "aaaa...a": exponential for naive recursion. */
    char pat[1600], txt[8192];
    size_t pl = 0;
    for (int i = 0; i < 700; i++) {
        pat[pl++] = '*';
        pat[pl++] = 'a';
    }
    pat[pl++] = '*';
    pat[pl++] = 'b';
    pat[pl] = '\0';
    memset(txt, 'a', sizeof txt - 1);
    txt[sizeof txt - 1] = '\0';
    char doc[2048];
    snprintf(doc, sizeof doc,
             "{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"%s\"}}", pat);
    ciot__aws_policy *p = parse_ok(doc);
    clock_t t0 = clock();
    long reps = scaled(20);
    for (long r = 0; r < reps; r++)
        cr_assert_eq(eval1(p, "iot:Publish", txt, &dev1), IDENY);
    txt[sizeof txt - 2] = 'b';
    cr_assert_eq(eval1(p, "iot:Publish", txt, &dev1), ALLOW);
    double s = (double)(clock() - t0) / CLOCKS_PER_SEC;
    cr_assert(s < 5.0, "took %.2f s", s);
    ciot__aws_policy_free(p);
}

/* ---- parse errors ----------------------------------------------------------- */

#define V "\"Version\":\"2012-10-17\","
#define OKST "{\"Effect\":\"Allow\",\"Action\":\"iot:Publish\",\"Resource\":\"*\"}"

Test(aws_policy, document_errors)
{
    parse_fails("", CIOT_EINVAL, "empty document");
    parse_fails("   \n\t ", CIOT_EINVAL, "empty document");
    parse_fails("{", CIOT_EINVAL, "not valid JSON");
    parse_fails("{\"Statement\":" OKST "} x", CIOT_EINVAL, "not valid JSON");
    parse_fails("[" OKST "]", CIOT_EINVAL, "must be a JSON object");
    parse_fails("\"x\"", CIOT_EINVAL, "not valid JSON"); /* jansson wants an array or object */
    parse_fails("{" V "\"Statement\":" OKST ",\"Foo\":1}", CIOT_EINVAL, "unknown key \"Foo\"");
    parse_fails("{" V "\"Id\":3,\"Statement\":" OKST "}", CIOT_EINVAL, "Id: must be a string");
    parse_fails("{\"Version\":\"2012-10-18\",\"Statement\":" OKST "}", CIOT_EINVAL,
                "Version: must be \"2012-10-17\" or \"2008-10-17\"");
    parse_fails("{\"Version\":20121017,\"Statement\":" OKST "}", CIOT_EINVAL, "Version: must be");
    parse_fails("{" V "\"Version\":\"2012-10-17\",\"Statement\":" OKST "}", CIOT_EINVAL,
                "duplicate");
    parse_fails("{\"Version\":\"2012-10-17\"}", CIOT_EINVAL, "Statement: missing");
    parse_fails("{" V "\"Statement\":\"x\"}", CIOT_EINVAL,
                "Statement: must be an object or an array of objects");
    parse_fails("{" V "\"Statement\":[]}", CIOT_EINVAL, "Statement: must not be an empty array");
    parse_fails("{" V "\"Statement\":[" OKST ",7]}", CIOT_EINVAL, "Statement[1]: must be an object");
    parse_fails("{" V "\"Statement\":\"\\u0000\"}", CIOT_EINVAL, "not valid JSON");
    ciot__aws_policy *p = parse_ok("{" V "\"Id\":\"doc\",\"Statement\":[" OKST "]}");
    ciot__aws_policy_free(p);
}

Test(aws_policy, statement_errors)
{
    parse_fails("{" V "\"Statement\":[" OKST ",{\"Effect\":\"Allow\",\"Action\":\"*\","
                "\"Resource\":\"*\",\"Colour\":1}]}",
                CIOT_EINVAL, "Statement[1]: unknown key \"Colour\"");
    parse_fails("{" V "\"Statement\":{\"Sid\":1,\"Effect\":\"Allow\",\"Action\":\"*\","
                "\"Resource\":\"*\"}}",
                CIOT_EINVAL, "Statement.Sid: must be a string");
    parse_fails("{" V "\"Statement\":{\"Action\":\"*\",\"Resource\":\"*\"}}", CIOT_EINVAL,
                "Statement.Effect: missing");
    parse_fails("{" V "\"Statement\":{\"Effect\":\"allow\",\"Action\":\"*\",\"Resource\":\"*\"}}",
                CIOT_EINVAL, "Statement.Effect: must be \"Allow\" or \"Deny\"");
    parse_fails("{" V "\"Statement\":{\"Effect\":true,\"Action\":\"*\",\"Resource\":\"*\"}}",
                CIOT_EINVAL, "Statement.Effect: must be");
    parse_fails("{" V "\"Statement\":{\"Effect\":\"Allow\",\"Resource\":\"*\"}}", CIOT_EINVAL,
                "Statement.Action: missing");
    parse_fails("{" V "\"Statement\":{\"Effect\":\"Allow\",\"Action\":1,\"Resource\":\"*\"}}",
                CIOT_EINVAL, "Statement.Action: must be a string or an array of strings");
    parse_fails("{" V "\"Statement\":{\"Effect\":\"Allow\",\"Action\":[],\"Resource\":\"*\"}}",
                CIOT_EINVAL, "Statement.Action: must not be an empty array");
    parse_fails("{" V "\"Statement\":{\"Effect\":\"Allow\",\"Action\":[\"*\",{}],"
                "\"Resource\":\"*\"}}",
                CIOT_EINVAL, "Statement.Action[1]: must be a string");
    parse_fails("{" V "\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"\",\"Resource\":\"*\"}}",
                CIOT_EINVAL, "Statement.Action: must not be empty");
    parse_fails("{" V "\"Statement\":[" OKST ",{\"Effect\":\"Allow\",\"Action\":\"*\"}]}",
                CIOT_EINVAL, "Statement[1].Resource: missing");
    parse_fails("{" V "\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":null}}",
                CIOT_EINVAL, "Statement.Resource: must be a string or an array of strings");
    parse_fails("{" V "\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":[]}}",
                CIOT_EINVAL, "Statement.Resource: must not be an empty array");
    parse_fails("{" V "\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\","
                "\"Resource\":[\"*\",\"\"]}}",
                CIOT_EINVAL, "Statement.Resource[1]: must not be empty");
    parse_fails("{" V "\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\","
                "\"Resource\":[\"*\",[\"x\"]]}}",
                CIOT_EINVAL, "Statement.Resource[1]: must be a string");
}

Test(aws_policy, unsupported_elements_are_refused_by_name)
{
    static const char *const keys[] = {"Condition", "NotAction", "NotResource", "Principal",
                                       "NotPrincipal"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char doc[256], msg[64];
        snprintf(doc, sizeof doc,
                 "{" V "\"Statement\":[" OKST ",{\"Effect\":\"Allow\",\"Action\":\"*\","
                 "\"Resource\":\"*\",\"%s\":{}}]}",
                 keys[i]);
        snprintf(msg, sizeof msg, "Statement[1].%s: not evaluated here", keys[i]);
        parse_fails(doc, CIOT_ENOTBUILT, msg);
    }
}

Test(aws_policy, variable_errors)
{
#define RES(r) "{" V "\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":[\"*\"," r "]}}"
    parse_fails(RES("\"" ARN "topic/${iot:ClientId\""), CIOT_EINVAL,
                "Statement.Resource[1]: unterminated policy variable");
    parse_fails(RES("\"" ARN "topic/${\""), CIOT_EINVAL, "unterminated policy variable");
    parse_fails(RES("\"" ARN "topic/${}\""), CIOT_EINVAL,
                "Statement.Resource[1]: empty policy variable");
    parse_fails(RES("\"" ARN "topic/${iot:DomainName}\""), CIOT_ENOTBUILT,
                "Statement.Resource[1]: policy variable \"${iot:DomainName}\" is not evaluated");
    parse_fails(RES("\"" ARN "topic/${iot:Connection.Thing.Attributes[x]}\""), CIOT_ENOTBUILT,
                "\"${iot:Connection.Thing.Attributes[x]}\" is not evaluated");
    parse_fails(RES("\"" ARN "topic/${iot:clientid}\""), CIOT_ENOTBUILT,
                "\"${iot:clientid}\" is not evaluated");
    parse_fails(RES("\"" ARN "topic/${**}\""), CIOT_ENOTBUILT, "\"${**}\" is not evaluated");
    parse_fails(RES("\"" ARN "topic/${iot:ClientId, 'none'}\""), CIOT_ENOTBUILT,
                "default values");
    /* A single Resource string names no index. */
    parse_fails("{" V "\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\","
                "\"Resource\":\"${aws:SourceIp}\"}}",
                CIOT_ENOTBUILT, "Statement.Resource: policy variable \"${aws:SourceIp}\"");
#undef RES
}

/* A document of exactly @p chars non-whitespace characters. */
static char *sized_doc(size_t chars, size_t spaces)
{
    static const char head[] = "{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"";
    static const char tail[] = "\"}}";
    size_t fixed = sizeof head - 1 + sizeof tail - 1;
    cr_assert(chars > fixed);
    char *d = malloc(chars + spaces + 1);
    cr_assert_not_null(d);
    memset(d, ' ', spaces);
    memcpy(d + spaces, head, sizeof head - 1);
    memset(d + spaces + sizeof head - 1, 'r', chars - fixed);
    memcpy(d + spaces + chars - sizeof tail + 1, tail, sizeof tail);
    return d;
}

Test(aws_policy, size_limit_is_2048_characters_without_whitespace)
{
    char *d = sized_doc(2048, 0);
    ciot__aws_policy *p = parse_ok(d);
    ciot__aws_policy_free(p);
    free(d);
    d = sized_doc(2049, 0);
    parse_fails(d, CIOT_EINVAL, "document has 2049 characters excluding whitespace; AWS IoT "
                                "allows at most 2048");
    free(d);
    /* whitespace does not count */
    d = sized_doc(2048, 10000);
    p = parse_ok(d);
    ciot__aws_policy_free(p);
    free(d);
    /* characters, not bytes: 1000 two-byte characters are 1000 */
    char doc[4096];
    int n = snprintf(doc, sizeof doc,
                     "{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"");
    for (int i = 0; i < 1000; i++)
        n += snprintf(doc + n, sizeof doc - (size_t)n, "\xc3\xa9");
    snprintf(doc + n, sizeof doc - (size_t)n, "\"}}");
    p = parse_ok(doc);
    ciot__aws_policy_free(p);
    /* the raw bound */
    d = sized_doc(100, 40000);
    parse_fails(d, CIOT_EINVAL, "at most 32768 are read");
    free(d);
}

Test(aws_policy, arguments_and_message_buffer)
{
    ciot__aws_policy *p = NULL;
    const char *doc = "{\"Statement\":" OKST "}";
    cr_assert_eq(ciot__aws_policy_parse(NULL, doc, strlen(doc), NULL, 0), CIOT_EINVAL);
    cr_assert_eq(ciot__aws_policy_parse(&p, NULL, 5, NULL, 0), CIOT_EINVAL);
    cr_assert_null(p);
    /* no message buffer */
    cr_assert_eq(ciot__aws_policy_parse(&p, "{}", 2, NULL, 0), CIOT_EINVAL);
    /* a small one: truncated, NUL-terminated */
    char small[8];
    memset(small, 'x', sizeof small);
    cr_assert_eq(ciot__aws_policy_parse(&p, "{}", 2, small, sizeof small), CIOT_EINVAL);
    cr_assert_eq(strlen(small), 7);
    cr_assert_eq(strncmp(small, "Stateme", 7), 0);
    /* no NUL needed after the document */
    char buf[128];
    memcpy(buf, doc, strlen(doc));
    memset(buf + strlen(doc), '}', sizeof buf - strlen(doc));
    cr_assert_eq(ciot__aws_policy_parse(&p, buf, strlen(doc), NULL, 0), 0);
    cr_assert_eq(eval1(p, "iot:Publish", "x", &dev1), ALLOW);
    ciot__aws_policy_free(p);
}

/* ---- allocation ------------------------------------------------------------- */

static int n_allocs, fail_after = -1;

static void *t_malloc(size_t n, void *ctx)
{
    (void)ctx;
    if (fail_after >= 0 && n_allocs >= fail_after)
        return NULL;
    n_allocs++;
    return malloc(n);
}

static void *t_realloc(void *p, size_t n, void *ctx)
{
    (void)ctx;
    n_allocs++;
    return realloc(p, n);
}

static void t_free(void *p, void *ctx)
{
    (void)ctx;
    free(p);
}

Test(aws_policy, evaluation_does_not_allocate)
{
    ciot_allocator a = {t_malloc, t_realloc, t_free, NULL};
    cr_assert_eq(ciot_set_allocator(&a), 0);
    ciot__aws_policy *p = parse_ok(sensor_policy);
    cr_assert_eq(n_allocs, 1, "the compiled policy is one block");
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(eval1(p, "iot:Publish", ARN "topic/sensors/dev1/temp", &dev1), ALLOW);
        cr_assert_eq(eval1(p, "iot:SomeAction", ARN "topic/sensors/dev1/temp", &dev1), IDENY);
    }
    cr_assert_eq(n_allocs, 1);
    ciot__aws_policy_free(p);
}

Test(aws_policy, out_of_memory)
{
    ciot_allocator a = {t_malloc, t_realloc, t_free, NULL};
    cr_assert_eq(ciot_set_allocator(&a), 0);
    fail_after = 0;
    ciot__aws_policy *p = NULL;
    char err[64];
    cr_assert_eq(ciot__aws_policy_parse(&p, sensor_policy, strlen(sensor_policy), err, sizeof err),
                 CIOT_ENOMEM);
    cr_assert_null(p);
    cr_assert_str_eq(err, "out of memory");
}
