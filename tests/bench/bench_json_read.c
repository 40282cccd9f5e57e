/*
 * On-demand reader vs jansson (and cJSON when built with it): look up a
 * field of the 169-byte telemetry message of doc/anchors and read it.
 *
 * Every case does the whole job per operation: ours validates the whole
 * message and finds the field (ciot_json_find), then converts it; jansson
 * parses the message into a tree (json_loadb), gets the member, reads the
 * value and frees the tree; cJSON likewise. Results are checked once
 * before measuring.
 *
 *   BENCH_SCALE=1 python3 tests/bench/callgrind.py build/tests/bench/bench_json_read
 */
#include <cloudiot/cloudiot.h>

#include "bench.h"

#include <jansson.h>
#if HAVE_CJSON
#include <cjson/cJSON.h>
#endif

static const char msg_text[] =
    "{\"deviceId\":\"temperature-sensor-001\",\"sensorType\":\"temperature\",\"value\":27.31,"
    "\"timestamp\":\"2026-11-26T04:56:27.123Z\",\"metadata\":{\"unit\":\"celsius\","
    "\"accuracy\":\"\xc2\xb1" "0.5\xc2\xb0" "C\"}}";

/* The message as the program sees it: a buffer the compiler cannot treat
 * as constant (BENCH_CLOBBER before every operation). */
static char msg[sizeof msg_text];
static size_t msg_len;

static void fail(const char *what)
{
    fprintf(stderr, "bench_json_read: wrong result: %s\n", what);
    exit(1);
}

static double ciot_value_once(void)
{
    ciot_json_value v;
    double d = 0;
    if (ciot_json_find(msg, msg_len, "value", 5, &v) != 0 || ciot_json_get_double(&v, &d) != 0)
        fail("ciot value");
    return d;
}

static void case_ciot_value(void *ctx, long iters)
{
    (void)ctx;
    for (long i = 0; i < iters; i++) {
        BENCH_CLOBBER();
        BENCH_KEEP(ciot_value_once());
    }
}

static size_t ciot_unit_once(char *buf, size_t cap)
{
    ciot_json_value v;
    size_t len = 0;
    if (ciot_json_find(msg, msg_len, "metadata.unit", 13, &v) != 0 ||
        ciot_json_get_string(&v, buf, cap, &len) != 0)
        fail("ciot unit");
    return len;
}

static void case_ciot_unit(void *ctx, long iters)
{
    (void)ctx;
    char buf[32];
    for (long i = 0; i < iters; i++) {
        BENCH_CLOBBER();
        BENCH_KEEP(ciot_unit_once(buf, sizeof buf));
    }
}

static void case_ciot_validate(void *ctx, long iters)
{
    (void)ctx;
    for (long i = 0; i < iters; i++) {
        BENCH_CLOBBER();
        if (ciot_json_validate(msg, msg_len) != 0)
            fail("validate");
    }
}

static double jansson_value_once(void)
{
    json_t *root = json_loadb(msg, msg_len, 0, NULL);
    json_t *v = json_object_get(root, "value");
    if (!json_is_real(v))
        fail("jansson value");
    double d = json_real_value(v);
    json_decref(root);
    return d;
}

static void case_jansson_value(void *ctx, long iters)
{
    (void)ctx;
    for (long i = 0; i < iters; i++) {
        BENCH_CLOBBER();
        BENCH_KEEP(jansson_value_once());
    }
}

static size_t jansson_unit_once(char *buf, size_t cap)
{
    json_t *root = json_loadb(msg, msg_len, 0, NULL);
    json_t *v = json_object_get(json_object_get(root, "metadata"), "unit");
    if (!json_is_string(v) || json_string_length(v) >= cap)
        fail("jansson unit");
    size_t len = json_string_length(v);
    memcpy(buf, json_string_value(v), len + 1);
    json_decref(root);
    return len;
}

static void case_jansson_unit(void *ctx, long iters)
{
    (void)ctx;
    char buf[32];
    for (long i = 0; i < iters; i++) {
        BENCH_CLOBBER();
        BENCH_KEEP(jansson_unit_once(buf, sizeof buf));
    }
}

#if HAVE_CJSON
static double cjson_value_once(void)
{
    cJSON *root = cJSON_ParseWithLength(msg, msg_len);
    cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "value");
    if (!cJSON_IsNumber(v))
        fail("cJSON value");
    double d = v->valuedouble;
    cJSON_Delete(root);
    return d;
}

static void case_cjson_value(void *ctx, long iters)
{
    (void)ctx;
    for (long i = 0; i < iters; i++) {
        BENCH_CLOBBER();
        BENCH_KEEP(cjson_value_once());
    }
}

static size_t cjson_unit_once(char *buf, size_t cap)
{
    cJSON *root = cJSON_ParseWithLength(msg, msg_len);
    cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "metadata"),
                                                "unit");
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap)
        fail("cJSON unit");
    size_t len = strlen(v->valuestring);
    memcpy(buf, v->valuestring, len + 1);
    cJSON_Delete(root);
    return len;
}

static void case_cjson_unit(void *ctx, long iters)
{
    (void)ctx;
    char buf[32];
    for (long i = 0; i < iters; i++) {
        BENCH_CLOBBER();
        BENCH_KEEP(cjson_unit_once(buf, sizeof buf));
    }
}
#endif

int main(void)
{
    memcpy(msg, msg_text, sizeof msg_text);
    msg_len = sizeof msg_text - 1;
    if (msg_len != 169)
        fail("message length");

    /* The same answers from every library before anything is measured. */
    char a[32], b[32];
    if (ciot_value_once() != 27.31 || jansson_value_once() != 27.31)
        fail("value 27.31");
    if (ciot_unit_once(a, sizeof a) != 7 || jansson_unit_once(b, sizeof b) != 7 || strcmp(a, b) != 0 ||
        strcmp(a, "celsius") != 0)
        fail("unit celsius");
#if HAVE_CJSON
    if (cjson_value_once() != 27.31 || cjson_unit_once(b, sizeof b) != 7 || strcmp(a, b) != 0)
        fail("cJSON");
#endif

    long n = bench_iters(200000);
    bench_run("ciot_find_value", case_ciot_value, NULL, n, 15);
    bench_run("jansson_value", case_jansson_value, NULL, n / 10, 15);
    bench_run("ciot_find_unit", case_ciot_unit, NULL, n, 15);
    bench_run("jansson_unit", case_jansson_unit, NULL, n / 10, 15);
    bench_run("ciot_validate", case_ciot_validate, NULL, n, 15);
#if HAVE_CJSON
    bench_run("cjson_value", case_cjson_value, NULL, n / 10, 15);
    bench_run("cjson_unit", case_cjson_unit, NULL, n / 10, 15);
#endif
    printf("ratio value_vs_jansson ciot_find_value jansson_value <=0.5\n");
    printf("ratio unit_vs_jansson ciot_find_unit jansson_unit <=0.5\n");
#if HAVE_CJSON
    printf("ratio value_vs_cjson ciot_find_value cjson_value\n");
    printf("ratio unit_vs_cjson ciot_find_unit cjson_unit\n");
#endif
    printf("info message %zu bytes; find validates the whole message on every call\n", msg_len);
    return 0;
}
