/*
 * The rule set (ciot_rules_process) on the guide's rule and the 169-byte
 * telemetry message of doc/anchors (value 37.31: it matches), with the
 * output document written and handed to an output callback that reads it:
 *
 *   set_seed      one rule in the set (the seed rule)
 *   jansson_loadb json_loadb + json_decref of the message alone (goal: set_seed <= 1.5x)
 *   set_1000_3    1,000 rules, 3 of them match the message (the seed rule
 *                 three times under different names), 997 do not (filters
 *                 sharing levels with the topic, wildcards included)
 *   set_3         only those 3 rules (what the 997 others cost: ~1x)
 *
 * The issue asks for set_1000_3 within 2x of one rule (set_seed); three
 * rules that fire each evaluate their SELECT, so the ratio is bounded below
 * by the evaluation of 3 rules; set_1000_3 / set_3 shows what the topic
 * set saves.
 *
 *   BENCH_SCALE=1 python3 tests/bench/callgrind.py build/tests/bench/bench_rules_set
 */
#include <cloudiot/cloudiot.h>

#include "bench.h"

#include <jansson.h>

static const char msg_text[] =
    "{\"deviceId\":\"temperature-sensor-001\",\"sensorType\":\"temperature\",\"value\":37.31,"
    "\"timestamp\":\"2026-11-26T04:56:27.123Z\",\"metadata\":{\"unit\":\"celsius\","
    "\"accuracy\":\"\xc2\xb1" "0.5\xc2\xb0" "C\"}}";

static const char expected[] =
    "{\"deviceId\":\"temperature-sensor-001\",\"sensorType\":\"temperature\","
    "\"temperature\":37.31,\"timestamp\":\"2026-11-26T04:56:27.123Z\","
    "\"alertType\":\"HIGH_TEMPERATURE\"}";

static const char sql[] =
    "SELECT deviceId, sensorType, value as temperature, timestamp, 'HIGH_TEMPERATURE' as "
    "alertType FROM 'sensors/+/temperature' WHERE value > 35";

static char msg[sizeof msg_text];
static size_t msg_len;
static const char topic[] = "sensors/temperature-sensor-001/temperature";
static size_t seen;

static void fail(const char *what)
{
    fprintf(stderr, "bench_rules_set: wrong result: %s\n", what);
    exit(1);
}

/* Reads the output: its length and last byte. */
static int on_output(ciot_rules *r, const ciot_rules_output *o, void *ud)
{
    (void)r;
    (void)ud;
    size_t len;
    const char *d = ciot_rules_output_document(o, &len);
    seen += len + (unsigned char)d[len - 1];
    return 0;
}

static int check_output(ciot_rules *r, const ciot_rules_output *o, void *ud)
{
    (void)r;
    (void)ud;
    size_t len;
    const char *d = ciot_rules_output_document(o, &len);
    if (len != sizeof expected - 1 || memcmp(d, expected, len) != 0)
        fail("output");
    return 0;
}

static int64_t fixed_clock(void *ud)
{
    (void)ud;
    return 1700000000000;
}

static size_t process_once(ciot_rules *r)
{
    size_t fired = 0;
    if (ciot_rules_process(&fired, r, topic, sizeof topic - 1, msg, msg_len, "dev", 3) != 0)
        fail("process");
    return fired;
}

static void case_set(void *ctx, long iters)
{
    ciot_rules *r = ctx;
    for (long i = 0; i < iters; i++) {
        BENCH_CLOBBER();
        BENCH_KEEP(process_once(r));
    }
}

static ciot_rules *make_set(int others, int matching, size_t want_fired)
{
    ciot_rules *r = NULL;
    if (ciot_rules_new(&r) != 0)
        fail("new");
    ciot_rules_set_clock(r, fixed_clock, NULL);
    char name[64], text[256];
    for (int i = 0; i < others; i++) {
        /* the same first level with other sensor types, other sites, and
         * wildcards at levels the topic has but values it has not */
        snprintf(name, sizeof name, "other_%d", i);
        switch (i % 3) {
        case 0:
            snprintf(text, sizeof text, "SELECT * FROM 'sensors/+/kind%d'", i);
            break;
        case 1:
            snprintf(text, sizeof text, "SELECT * FROM 'sensors/dev-%d/temperature'", i);
            break;
        default:
            snprintf(text, sizeof text, "SELECT * FROM 'site%d/#'", i);
            break;
        }
        if (ciot_rules_add_sql(r, name, strlen(name), text, strlen(text)) != 0)
            fail("add other");
    }
    for (int i = 0; i < matching; i++) {
        snprintf(name, sizeof name, "seed_%d", i);
        if (ciot_rules_add_sql(r, name, strlen(name), sql, sizeof sql - 1) != 0)
            fail("add seed");
    }
    ciot_rules_set_output_callback(r, check_output, NULL);
    if (process_once(r) != want_fired)
        fail("fired");
    ciot_rules_set_output_callback(r, on_output, NULL);
    return r;
}

int main(void)
{
    memcpy(msg, msg_text, sizeof msg_text);
    msg_len = sizeof msg_text - 1;
    if (msg_len != 169)
        fail("message length");
    if (bench_jansson_once(msg, msg_len) != 5)
        fail("jansson size");
    ciot_rules *one = make_set(0, 1, 1);
    ciot_rules *three = make_set(0, 3, 3);
    ciot_rules *many = make_set(997, 3, 3);
    if (ciot_rules_count(many) != 1000)
        fail("count");

    long n = bench_iters(100000);
    bench_run("set_seed", case_set, one, n, 15);
    bench_run("jansson_loadb", bench_case_jansson_loadb, &(bench_text){msg, msg_len}, n / 5,
              15);
    bench_run("set_3", case_set, three, n / 3, 15);
    bench_run("set_1000_3", case_set, many, n / 3, 15);
    printf("ratio set_seed_vs_jansson_loadb set_seed jansson_loadb <=1.5\n");
    printf("ratio 1000_rules_3_match_vs_one_rule set_1000_3 set_seed <=2\n");
    printf("ratio 1000_rules_3_match_vs_3_rules set_1000_3 set_3 <=1.2\n");
    printf("info message %zu bytes, output %zu bytes (read by the output callback)\n", msg_len,
           sizeof expected - 1);
    BENCH_KEEP(seen);
    if (ciot_rules_free(one) || ciot_rules_free(three) || ciot_rules_free(many))
        fail("free");
    return 0;
}
