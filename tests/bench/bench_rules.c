/*
 * Rules engine core vs jansson: the guide's rule
 *   SELECT deviceId, sensorType, value as temperature, timestamp,
 *          'HIGH_TEMPERATURE' as alertType
 *   FROM 'sensors/+/temperature' WHERE value > 35
 * on the 169-byte telemetry message of doc/anchors (with value 37.31, so
 * that it matches), compiled once.
 *
 * Per operation, ours does the whole job: match the topic against FROM,
 * validate the payload, find the fields, decide WHERE and write the output
 * document (154 bytes) into a caller buffer. jansson only parses the
 * message into a tree and frees it (json_loadb + json_decref): no lookup,
 * no output. Goal: ours <= 1.5x that.
 *
 *   BENCH_SCALE=1 python3 tests/bench/callgrind.py build/tests/bench/bench_rules
 */
#include <cloudiot/cloudiot.h>

#include "core/rules_sql.h"

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
static char topic[] = "sensors/temperature-sensor-001/temperature";

static void fail(const char *what)
{
    fprintf(stderr, "bench_rules: wrong result: %s\n", what);
    exit(1);
}

static size_t rule_once(const ciot__rule *r, char *out, size_t cap)
{
    ciot__rules_msg m = {topic, sizeof topic - 1, msg, msg_len, "dev", 3, 1700000000000};
    bool fired = false;
    size_t len = 0;
    if (ciot__rules_eval(&fired, &len, out, cap, r, &m) != 0 || !fired)
        fail("rule");
    return len;
}

static void case_rule(void *ctx, long iters)
{
    const ciot__rule *r = ctx;
    char out[256];
    for (long i = 0; i < iters; i++) {
        BENCH_CLOBBER();
        BENCH_KEEP(rule_once(r, out, sizeof out));
    }
}

int main(void)
{
    memcpy(msg, msg_text, sizeof msg_text);
    msg_len = sizeof msg_text - 1;
    if (msg_len != 169)
        fail("message length");
    ciot__rule *r = NULL;
    if (ciot__rules_compile(&r, NULL, sql, sizeof sql - 1, CIOT__RULES_SQL_VERSION,
                            sizeof CIOT__RULES_SQL_VERSION - 1) != 0)
        fail("compile");
    char out[256];
    size_t len = rule_once(r, out, sizeof out);
    if (len != sizeof expected - 1 || memcmp(out, expected, len) != 0)
        fail("output");
    if (bench_jansson_once(msg, msg_len) != 5)
        fail("jansson size");

    long n = bench_iters(200000);
    bench_run("ciot_rule_eval", case_rule, r, n, 15);
    bench_run("jansson_loadb", bench_case_jansson_loadb, &(bench_text){msg, msg_len}, n / 5,
              15);
    printf("ratio rule_vs_jansson_loadb ciot_rule_eval jansson_loadb <=1.5\n");
    printf("info message %zu bytes, output %zu bytes; jansson only parses and frees\n", msg_len,
           len);
    ciot__rules_free(r);
    return 0;
}
