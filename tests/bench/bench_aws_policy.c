/*
 * AWS IoT policy evaluation (lib/core/aws_policy.h): the cost of the one
 * authorization check the emulator makes per PUBLISH (iot:Publish) and per
 * delivery (iot:Receive), against what a plain mosquitto ACL costs for the
 * same decision: mosquitto_topic_matches_sub() of the equivalent filter.
 *
 * The policy is the developer guide's kind of device policy (4 statements,
 * 7 resources using ${iot:Connection.Thing.ThingName}); the resource ARN is
 * built once, outside the measured loop (the emulator builds it in a stack
 * buffer, one memcpy). Cases:
 *   publish_allow    iot:Publish on topic/sensors/dev1/temp        -> Allow
 *   publish_refused  iot:Publish on topic/sensors/dev2/temp        -> implicit deny
 *                    (every statement's action bit is tested, the Publish
 *                    statement's two resources are matched and fail)
 *   receive_allow    iot:Receive on topic/commands/dev1/reboot    -> Allow
 *   shadow_allow     iot:Publish on topic/$aws/things/dev1/shadow/update
 *                    (second resource of its statement)
 *   with_deny        publish_allow with a second policy holding a Deny
 *                    on another topic (the Deny is checked first)
 *   unknown_action   iot:SomeFutureAction (the text-matching path) -> deny
 *   mosq_allow       mosquitto_topic_matches_sub("sensors/dev1/#", "sensors/dev1/temp")
 *   mosq_refused     mosquitto_topic_matches_sub("sensors/dev1/#", "sensors/dev2/temp")
 *
 * Every answer is checked before anything is measured.
 * Run: BENCH_SCALE=1 python3 tests/bench/callgrind.py build/tests/bench/bench_aws_policy
 */
#include "core/aws_policy.h"

#include <mosquitto.h>

#include "bench.h"

#define ARN "arn:aws:iot:us-east-1:123456789012:"
#define THING "${iot:Connection.Thing.ThingName}"

static const char sensor_policy[] =
    "{\"Version\":\"2012-10-17\",\"Statement\":["
    "{\"Effect\":\"Allow\",\"Action\":\"iot:Connect\",\"Resource\":\"" ARN "client/" THING "\"},"
    "{\"Effect\":\"Allow\",\"Action\":\"iot:Publish\",\"Resource\":["
    "\"" ARN "topic/sensors/" THING "/*\",\"" ARN "topic/$aws/things/" THING "/shadow/*\"]},"
    "{\"Effect\":\"Allow\",\"Action\":\"iot:Subscribe\",\"Resource\":["
    "\"" ARN "topicfilter/commands/" THING "/*\","
    "\"" ARN "topicfilter/$aws/things/" THING "/shadow/*\"]},"
    "{\"Effect\":\"Allow\",\"Action\":\"iot:Receive\",\"Resource\":["
    "\"" ARN "topic/commands/" THING "/*\",\"" ARN "topic/$aws/things/" THING "/shadow/*\"]}]}";

static const char deny_policy[] =
    "{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Deny\",\"Action\":\"iot:Publish\","
    "\"Resource\":\"" ARN "topic/sensors/" THING "/private\"}}";

typedef struct req {
    const ciot__aws_policy *const *pols;
    size_t n;
    const char *action, *resource;
    int expect;
} req;

static const ciot__aws_policy_ctx ctx = {"dev1", "dev1", true};

static void fail(const char *what)
{
    fprintf(stderr, "bench_aws_policy: %s\n", what);
    exit(1);
}

static void run_eval(void *arg, long iters)
{
    const req *r = arg;
    unsigned acc = 0;
    for (long i = 0; i < iters; i++) {
        BENCH_CLOBBER();
        acc += (unsigned)ciot__aws_policy_eval(r->pols, r->n, r->action, r->resource, &ctx);
    }
    BENCH_KEEP(acc);
}

typedef struct mreq {
    const char *filter, *topic;
    bool expect;
} mreq;

static void run_mosq(void *arg, long iters)
{
    const mreq *m = arg;
    unsigned acc = 0;
    for (long i = 0; i < iters; i++) {
        BENCH_CLOBBER();
        bool res = false;
        if (mosquitto_topic_matches_sub(m->filter, m->topic, &res) == 0)
            acc += res;
    }
    BENCH_KEEP(acc);
}

int main(void)
{
    ciot__aws_policy *p = NULL, *d = NULL;
    char err[200];
    if (ciot__aws_policy_parse(&p, sensor_policy, sizeof sensor_policy - 1, err, sizeof err) != 0)
        fail(err);
    if (ciot__aws_policy_parse(&d, deny_policy, sizeof deny_policy - 1, err, sizeof err) != 0)
        fail(err);
    const ciot__aws_policy *one[1] = {p}, *two[2] = {p, d};

    static const struct {
        const char *name;
        req r;
    } cases[] = {
        {"publish_allow",
         {NULL, 1, "iot:Publish", ARN "topic/sensors/dev1/temp", CIOT__POLICY_ALLOW}},
        {"publish_refused",
         {NULL, 1, "iot:Publish", ARN "topic/sensors/dev2/temp", CIOT__POLICY_IMPLICIT_DENY}},
        {"receive_allow",
         {NULL, 1, "iot:Receive", ARN "topic/commands/dev1/reboot", CIOT__POLICY_ALLOW}},
        {"shadow_allow",
         {NULL, 1, "iot:Publish", ARN "topic/$aws/things/dev1/shadow/update",
          CIOT__POLICY_ALLOW}},
        {"with_deny", {NULL, 2, "iot:Publish", ARN "topic/sensors/dev1/temp", CIOT__POLICY_ALLOW}},
        {"unknown_action",
         {NULL, 1, "iot:SomeFutureAction", ARN "topic/sensors/dev1/temp",
          CIOT__POLICY_IMPLICIT_DENY}},
    };
    static struct {
        const char *name;
        mreq m;
    } mcases[] = {
        {"mosq_allow", {"sensors/dev1/#", "sensors/dev1/temp", true}},
        {"mosq_refused", {"sensors/dev1/#", "sensors/dev2/temp", false}},
    };
    enum { NC = sizeof cases / sizeof cases[0], NM = sizeof mcases / sizeof mcases[0] };
    req rs[NC];
    for (size_t i = 0; i < NC; i++) {
        rs[i] = cases[i].r;
        rs[i].pols = rs[i].n == 2 ? two : one;
        if (ciot__aws_policy_eval(rs[i].pols, rs[i].n, rs[i].action, rs[i].resource, &ctx) !=
            rs[i].expect)
            fail(cases[i].name);
    }
    if (ciot__aws_policy_eval(two, 2, "iot:Publish", ARN "topic/sensors/dev1/private", &ctx) !=
        CIOT__POLICY_EXPLICIT_DENY)
        fail("deny");
    for (size_t i = 0; i < NM; i++) {
        bool res = !mcases[i].m.expect;
        if (mosquitto_topic_matches_sub(mcases[i].m.filter, mcases[i].m.topic, &res) != 0 ||
            res != mcases[i].m.expect)
            fail(mcases[i].name);
    }

    long n = bench_iters(1000000);
    for (size_t i = 0; i < NC; i++)
        bench_run(cases[i].name, run_eval, &rs[i], n, 15);
    for (size_t i = 0; i < NM; i++)
        bench_run(mcases[i].name, run_mosq, &mcases[i].m, n, 15);
    printf("ratio publish_allow_vs_mosq publish_allow mosq_allow <=2\n");
    printf("ratio publish_refused_vs_mosq publish_refused mosq_refused <=2\n");
    printf("ratio receive_allow_vs_mosq receive_allow mosq_allow <=2\n");
    printf("info resource ARN %zu bytes; policy %zu bytes, 4 statements, 7 resources\n",
           strlen(rs[0].resource), sizeof sensor_policy - 1);
    ciot__aws_policy_free(p);
    ciot__aws_policy_free(d);
    return 0;
}
