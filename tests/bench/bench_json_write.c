/*
 * The telemetry message of anchors/performance.md section 3, written whole
 * per call (set up, every key and value, finish) by:
 *   json_ciot              libcloudiot's writer into a caller buffer
 *   json_ciot_ts           the same, the timestamp formatted from unix ms
 *   json_jansson           jansson json_pack + json_dumpb + json_decref
 *   json_jansson_prec15    the same with JSON_REAL_PRECISION(15)
 *   json_cjson             cJSON build + cJSON_PrintPreallocated + cJSON_Delete
 *   json_memcpy_floor      memcpy of the final bytes (not a writer)
 * one double per call (double_ciot_sensor, double_ciot_random, and
 * snprintf "%.17g" for scale), and the ISO-8601 timestamp alone:
 *   ts_ciot                ciot_timestamp_format
 *   ts_libc                gmtime_r + strftime + milliseconds
 * Inputs are read through volatile so nothing is constant-folded; every
 * output is compared with the expected bytes before and after the timing.
 * Allocations per message are counted by wrapping malloc and friends.
 *
 * Run: BENCH_SCALE=1 python3 tests/bench/callgrind.py build/tests/bench/bench_json_write
 */
#include "bench.h"

#include <cloudiot/cloudiot.h>

#include <jansson.h>
#include <time.h>

#if HAVE_CJSON
#include <cjson/cJSON.h>
#endif

/* ---- allocation counter ---------------------------------------------------- */

#if defined(__SANITIZE_ADDRESS__)
#define COUNT_ALLOCS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COUNT_ALLOCS 0
#endif
#endif
#ifndef COUNT_ALLOCS
#define COUNT_ALLOCS 1
#endif

#if COUNT_ALLOCS
static long n_allocs;

/* glibc's own entry points, so the wrappers below can forward to them. */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

void *malloc(size_t n)
{
    n_allocs++;
    return __libc_malloc(n);
}

void *calloc(size_t a, size_t b)
{
    n_allocs++;
    return __libc_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
    n_allocs++;
    return __libc_realloc(p, n);
}

void free(void *p)
{
    __libc_free(p);
}
#endif

/* ---- inputs -------------------------------------------------------------- */

static const char expected[] =
    "{\"deviceId\":\"temperature-sensor-001\",\"sensorType\":\"temperature\",\"value\":27.31,"
    "\"timestamp\":\"2026-11-26T04:56:27.123Z\",\"metadata\":{\"unit\":\"celsius\","
    "\"accuracy\":\"\xC2\xB1"
    "0.5\xC2\xB0"
    "C\"}}";

static const char *volatile in_device = "temperature-sensor-001";
static const char *volatile in_type = "temperature";
static volatile double in_value = 27.31;
static const char *volatile in_ts = "2026-11-26T04:56:27.123Z";
static volatile int64_t in_ms = 1795668987123LL;
static const char *volatile in_unit = "celsius";
static const char *volatile in_accuracy = "\xC2\xB1"
                                          "0.5\xC2\xB0"
                                          "C";
static volatile size_t in_device_len = 22, in_type_len = 11, in_ts_len = 24, in_unit_len = 7,
                       in_accuracy_len = 8;

static char out[1024];

/* ---- the variants: each returns the length written ------------------------ */

static size_t ciot_message(char *buf, size_t cap, bool ts_from_ms)
{
    ciot_json_writer w;
    size_t len = 0;
    int rc = ciot_json_writer_init(&w, buf, cap);
    rc |= ciot_json_begin_object(&w);
    rc |= ciot_json_key(&w, "deviceId", 8);
    rc |= ciot_json_string(&w, in_device, in_device_len);
    rc |= ciot_json_key(&w, "sensorType", 10);
    rc |= ciot_json_string(&w, in_type, in_type_len);
    rc |= ciot_json_key(&w, "value", 5);
    rc |= ciot_json_double(&w, in_value);
    rc |= ciot_json_key(&w, "timestamp", 9);
    if (ts_from_ms)
        rc |= ciot_json_timestamp(&w, in_ms);
    else
        rc |= ciot_json_string(&w, in_ts, in_ts_len);
    rc |= ciot_json_key(&w, "metadata", 8);
    rc |= ciot_json_begin_object(&w);
    rc |= ciot_json_key(&w, "unit", 4);
    rc |= ciot_json_string(&w, in_unit, in_unit_len);
    rc |= ciot_json_key(&w, "accuracy", 8);
    rc |= ciot_json_string(&w, in_accuracy, in_accuracy_len);
    rc |= ciot_json_end_object(&w);
    rc |= ciot_json_end_object(&w);
    rc |= ciot_json_writer_finish(&w, &len);
    if (rc) {
        fprintf(stderr, "ciot writer failed\n");
        exit(1);
    }
    return len;
}

static size_t jansson_message(char *buf, size_t cap, size_t flags)
{
    json_t *root = json_pack("{s:s, s:s, s:f, s:s, s:{s:s, s:s}}", "deviceId", in_device,
                             "sensorType", in_type, "value", in_value, "timestamp", in_ts,
                             "metadata", "unit", in_unit, "accuracy", in_accuracy);
    if (!root) {
        fprintf(stderr, "json_pack failed\n");
        exit(1);
    }
    size_t n = json_dumpb(root, buf, cap, JSON_COMPACT | flags);
    json_decref(root);
    return n;
}

#if HAVE_CJSON
static size_t cjson_message(char *buf, size_t cap)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "deviceId", in_device);
    cJSON_AddStringToObject(root, "sensorType", in_type);
    cJSON_AddNumberToObject(root, "value", in_value);
    cJSON_AddStringToObject(root, "timestamp", in_ts);
    cJSON *meta = cJSON_AddObjectToObject(root, "metadata");
    cJSON_AddStringToObject(meta, "unit", in_unit);
    cJSON_AddStringToObject(meta, "accuracy", in_accuracy);
    if (!cJSON_PrintPreallocated(root, buf, (int)cap, 0)) {
        fprintf(stderr, "cJSON_PrintPreallocated failed\n");
        exit(1);
    }
    cJSON_Delete(root);
    return strlen(buf);
}
#endif

static size_t ts_ciot(char *buf, size_t cap)
{
    size_t len = 0;
    if (ciot_timestamp_format(buf, cap, in_ms, &len) != 0)
        exit(1);
    return len;
}

static size_t ts_libc(char *buf, size_t cap)
{
    int64_t ms = in_ms;
    int64_t secs = ms / 1000, rem = ms % 1000;
    if (rem < 0) {
        rem += 1000;
        secs--;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    if (!gmtime_r(&t, &tm))
        exit(1);
    size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    if (n != 19)
        exit(1);
    buf[19] = '.';
    buf[20] = (char)('0' + rem / 100);
    buf[21] = (char)('0' + rem / 10 % 10);
    buf[22] = (char)('0' + rem % 10);
    buf[23] = 'Z';
    buf[24] = 0;
    return 24;
}

/* ---- cases ----------------------------------------------------------------- */

enum which {
    W_CIOT,
    W_CIOT_TS,
    W_JANSSON,
    W_JANSSON_P15,
    W_CJSON,
    W_MEMCPY,
    W_TS_CIOT,
    W_TS_LIBC
};

static size_t produce(enum which k)
{
    switch (k) {
    case W_CIOT: return ciot_message(out, sizeof out, false);
    case W_CIOT_TS: return ciot_message(out, sizeof out, true);
    case W_JANSSON: return jansson_message(out, sizeof out, 0);
    case W_JANSSON_P15: return jansson_message(out, sizeof out, JSON_REAL_PRECISION(15));
#if HAVE_CJSON
    case W_CJSON: return cjson_message(out, sizeof out);
#else
    case W_CJSON: return 0;
#endif
    case W_MEMCPY: {
        const char *volatile src = expected;
        memcpy(out, src, sizeof expected - 1);
        return sizeof expected - 1;
    }
    case W_TS_CIOT: return ts_ciot(out, sizeof out);
    default: return ts_libc(out, sizeof out);
    }
}

#define CASE_FN(name, k)                                                                      \
    static void name(void *ctx, long iters)                                                   \
    {                                                                                         \
        (void)ctx;                                                                            \
        for (long i = 0; i < iters; i++) {                                                    \
            size_t n = produce(k);                                                            \
            BENCH_KEEP(n);                                                                    \
            BENCH_CLOBBER();                                                                  \
        }                                                                                     \
    }

CASE_FN(run_ciot, W_CIOT)
CASE_FN(run_ciot_ts, W_CIOT_TS)
CASE_FN(run_jansson, W_JANSSON)
CASE_FN(run_jansson_p15, W_JANSSON_P15)
CASE_FN(run_cjson, W_CJSON)
CASE_FN(run_memcpy, W_MEMCPY)
CASE_FN(run_ts_ciot, W_TS_CIOT)
CASE_FN(run_ts_libc, W_TS_LIBC)

/* One double per operation into a reused writer: sensor-like readings
 * (few decimals: the exact path) and random bit patterns (mostly 16-17
 * digits: the snprintf/strtod fallback), against snprintf("%.17g"). */
#define NDBL 1024
static double dbl_sensor[NDBL], dbl_random[NDBL];

static void fill_doubles(void)
{
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < NDBL; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        dbl_sensor[i] = (double)((int64_t)(x % 200001) - 100000) / 100.0;
        double d;
        uint64_t b = x;
        do {
            memcpy(&d, &b, sizeof d);
            b = b * 6364136223846793005ull + 1442695040888963407ull;
        } while (d != d || d - d != 0);
        dbl_random[i] = d;
    }
}

static void run_doubles(const double *v, long iters)
{
    char buf[64];
    for (long i = 0; i < iters; i++) {
        ciot_json_writer w;
        size_t len = 0;
        int rc = ciot_json_writer_init(&w, buf, sizeof buf);
        rc |= ciot_json_double(&w, v[i & (NDBL - 1)]);
        rc |= ciot_json_writer_finish(&w, &len);
        if (rc)
            exit(1);
        BENCH_KEEP(len);
        BENCH_CLOBBER();
    }
}

static void run_dbl_sensor(void *ctx, long iters)
{
    (void)ctx;
    run_doubles(dbl_sensor, iters);
}

static void run_dbl_random(void *ctx, long iters)
{
    (void)ctx;
    run_doubles(dbl_random, iters);
}

static void run_dbl_printf17(void *ctx, long iters)
{
    (void)ctx;
    char buf[64];
    for (long i = 0; i < iters; i++) {
        int n = snprintf(buf, sizeof buf, "%.17g", dbl_random[i & (NDBL - 1)]);
        BENCH_KEEP(n);
        BENCH_CLOBBER();
    }
}

/* Checks the output of one variant; `must_match` variants must be byte for
 * byte the expected text, the others are reported. */
static void check_output(const char *name, enum which k, const char *want, bool must_match)
{
    size_t n = produce(k);
    bool same = n == strlen(want) && memcmp(out, want, n) == 0;
    printf("info output %-22s %zu bytes %s\n", name, n, same ? "identical" : "DIFFERS");
    if (!same) {
        printf("info   got: %.*s\n", (int)n, out);
        if (must_match) {
            fprintf(stderr, "%s: output differs from the expected bytes\n", name);
            exit(1);
        }
    }
}

static void count_allocs(const char *name, enum which k)
{
#if COUNT_ALLOCS
    const long n = 1000;
    long before = n_allocs;
    for (long i = 0; i < n; i++)
        produce(k);
    double per = (double)(n_allocs - before) / (double)n;
    printf("info allocs/msg %-22s %.1f\n", name, per);
    if ((k == W_CIOT || k == W_CIOT_TS || k == W_TS_CIOT) && per != 0) {
        fprintf(stderr, "%s allocates\n", name);
        exit(1);
    }
#else
    printf("info allocs/msg %-22s n/a (sanitizer build)\n", name);
    (void)k;
#endif
}

struct bcase {
    const char *name;
    enum which k;
    bench_fn fn;
    long iters;
    const char *want;
    bool must_match;
};

int main(void)
{
    char ts_want[32];
    snprintf(ts_want, sizeof ts_want, "%s", "2026-11-26T04:56:27.123Z");
    const struct bcase cases[] = {
        {"json_ciot", W_CIOT, run_ciot, 200000, expected, true},
        {"json_ciot_ts", W_CIOT_TS, run_ciot_ts, 200000, expected, true},
        {"json_jansson", W_JANSSON, run_jansson, 20000, expected, false},
        {"json_jansson_prec15", W_JANSSON_P15, run_jansson_p15, 20000, expected, true},
#if HAVE_CJSON
        {"json_cjson", W_CJSON, run_cjson, 20000, expected, true},
#endif
        {"json_memcpy_floor", W_MEMCPY, run_memcpy, 1000000, expected, true},
        {"ts_ciot", W_TS_CIOT, run_ts_ciot, 1000000, ts_want, true},
        {"ts_libc", W_TS_LIBC, run_ts_libc, 200000, ts_want, true},
    };
    const size_t n = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < n; i++) {
        check_output(cases[i].name, cases[i].k, cases[i].want, cases[i].must_match);
        count_allocs(cases[i].name, cases[i].k);
    }
    for (size_t i = 0; i < n; i++)
        bench_run(cases[i].name, cases[i].fn, NULL, bench_iters(cases[i].iters), 7);
    fill_doubles();
#if COUNT_ALLOCS
    {
        /* the fallback uses snprintf and strtod: do they allocate? */
        static double sub[NDBL];
        for (int i = 0; i < NDBL; i++)
            sub[i] = dbl_random[i] * 0x1p-1074 * 0x1p-60; /* mostly subnormal or 0 */
        long before = n_allocs;
        run_doubles(dbl_sensor, NDBL);
        run_doubles(dbl_random, NDBL);
        run_doubles(sub, NDBL);
        printf("info allocs/double ciot_json_double (sensor, random, subnormal) %.3f\n",
               (double)(n_allocs - before) / (3.0 * NDBL));
    }
#endif
    bench_run("double_ciot_sensor", run_dbl_sensor, NULL, bench_iters(200000), 7);
    bench_run("double_ciot_random", run_dbl_random, NULL, bench_iters(50000), 7);
    bench_run("double_printf17_random", run_dbl_printf17, NULL, bench_iters(50000), 7);
    /* the outputs are still right after the timed runs */
    for (size_t i = 0; i < n; i++)
        check_output(cases[i].name, cases[i].k, cases[i].want, cases[i].must_match);

    printf("ratio json_ciot_vs_jansson json_ciot json_jansson <=0.125\n");
    printf("ratio json_ciot_vs_jansson_prec15 json_ciot json_jansson_prec15 <=0.125\n");
#if HAVE_CJSON
    /* no goal in issue 3; the anchors document suggests <= 0.1 */
    printf("ratio json_ciot_vs_cjson json_ciot json_cjson\n");
#endif
    printf("ratio json_ciot_ts_vs_jansson json_ciot_ts json_jansson <=0.125\n");
    printf("ratio ts_ciot_vs_libc ts_ciot ts_libc <=0.25\n");
    printf("info goal json_ciot <= 3500 Ir/msg (absolute; see the Ir/op table)\n");
    return 0;
}
