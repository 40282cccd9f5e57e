/* Cost of ciot_telemetry_send() per reading on an AWS client that is not
 * connected (each message is built and queued: the work every send does),
 * against the floor of publishing the same bytes prebuilt
 * (ciot_client_publish), and against building them with jansson first.
 * A fresh client per run keeps the queue from growing across runs.
 * Run: BENCH_SCALE=1 python3 tests/bench/callgrind.py build/tests/bench/bench_telemetry */
#include "bench.h"

#include <cloudiot/cloudiot.h>

#include <jansson.h>

static const char topic[] = "sensors/temperature-sensor-001/temperature";
static const char meta[] = "{\"unit\":\"celsius\",\"accuracy\":\"\xc2\xb1"
                           "0.5\xc2\xb0"
                           "C\"}";
static char prebuilt[512];
static size_t prebuilt_len;
#define TS 1795669017123LL /* 2026-11-26T04:56:57.123Z */

static ciot_client *make(void)
{
    ciot_config *cfg;
    ciot_client *c;
    if (ciot_config_new(&cfg) != 0 || ciot_config_set_int(cfg, CIOT_OPT_BACKEND, CIOT_BACKEND_AWS) != 0 ||
        ciot_config_set_str(cfg, CIOT_OPT_HOST, "127.0.0.1") != 0 ||
        ciot_config_set_int(cfg, CIOT_OPT_TLS, 0) != 0 ||
        ciot_config_set_str(cfg, CIOT_OPT_CLIENT_ID, "temperature-sensor-001") != 0 ||
        ciot_config_set_int(cfg, CIOT_OPT_QUEUE_MAX_MESSAGES, 10000000) != 0 ||
        ciot_config_set_int(cfg, CIOT_OPT_QUEUE_MAX_BYTES, INT64_C(1) << 34) != 0 ||
        ciot_client_new(&c, cfg) != 0)
        abort();
    ciot_config_free(cfg);
    return c;
}

static void run_telemetry(void *ctx, long iters)
{
    (void)ctx;
    ciot_client *c = make();
    ciot_telemetry_opts o = CIOT_TELEMETRY_OPTS_INIT;
    o.metadata = meta;
    o.metadata_len = sizeof meta - 1;
    o.timestamp_ms = TS;
    for (long i = 0; i < iters; i++) {
        BENCH_CLOBBER();
        if (ciot_telemetry_send(NULL, c, "temperature", 11, 27.31, &o) != 0)
            abort();
    }
    (void)ciot_client_free(c);
}

static void run_prebuilt(void *ctx, long iters)
{
    (void)ctx;
    ciot_client *c = make();
    for (long i = 0; i < iters; i++) {
        BENCH_CLOBBER();
        if (ciot_client_publish(NULL, c, topic, sizeof topic - 1, prebuilt, prebuilt_len, 1, 0) != 0)
            abort();
    }
    (void)ciot_client_free(c);
}

static void run_jansson(void *ctx, long iters)
{
    (void)ctx;
    ciot_client *c = make();
    char ts[32];
    size_t tl;
    if (ciot_timestamp_format(ts, sizeof ts, TS, &tl) != 0)
        abort();
    for (long i = 0; i < iters; i++) {
        BENCH_CLOBBER();
        json_t *m = json_loadb(meta, sizeof meta - 1, 0, NULL);
        json_t *j = json_pack("{s:s,s:s,s:f,s:s,s:o}", "deviceId", "temperature-sensor-001",
                              "sensorType", "temperature", "value", 27.31, "timestamp", ts,
                              "metadata", m);
        char buf[512];
        size_t n = json_dumpb(j, buf, sizeof buf, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(j);
        char t[64];
        int k = snprintf(t, sizeof t, "sensors/%s/%s", "temperature-sensor-001", "temperature");
        if (ciot_client_publish(NULL, c, t, (size_t)k, buf, n, 1, 0) != 0)
            abort();
    }
    (void)ciot_client_free(c);
}

int main(void)
{
    /* the bytes ciot_telemetry_send() writes, built once */
    ciot_json_writer w;
    if (ciot_json_writer_init(&w, prebuilt, sizeof prebuilt) != 0)
        abort();
    (void)!ciot_json_begin_object(&w);
    (void)!ciot_json_key(&w, "deviceId", 8);
    (void)!ciot_json_string(&w, "temperature-sensor-001", 22);
    (void)!ciot_json_key(&w, "sensorType", 10);
    (void)!ciot_json_string(&w, "temperature", 11);
    (void)!ciot_json_key(&w, "value", 5);
    (void)!ciot_json_double(&w, 27.31);
    (void)!ciot_json_key(&w, "timestamp", 9);
    (void)!ciot_json_timestamp(&w, TS);
    (void)!ciot_json_key(&w, "metadata", 8);
    (void)!ciot_json_raw(&w, meta, sizeof meta - 1);
    (void)!ciot_json_end_object(&w);
    if (ciot_json_writer_finish(&w, &prebuilt_len) != 0)
        abort();
    printf("message: %zu bytes to %s\n", prebuilt_len, topic);
    long n = bench_iters(20000);
    double a = bench_run("telemetry_send", run_telemetry, NULL, n, 7);
    double b = bench_run("publish_prebuilt", run_prebuilt, NULL, n, 7);
    double j = bench_run("jansson_then_publish", run_jansson, NULL, n, 7);
    if (b > 0)
        printf("ratio telemetry_send/publish_prebuilt %.2f jansson_then_publish/telemetry_send %.2f\n",
               a / b, j / a);
    return 0;
}
