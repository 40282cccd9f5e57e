/*
 * Threshold alerts vs jansson: ciot_alerts_feed_json() of a 169-byte
 * telemetry message carrying two thresholded metrics (temperature, max 35;
 * humidity, max 80), for one of 10,000 devices (a different one each time,
 * in a scattered order), silence detection on.
 *
 * Per operation, ours does the whole job: validate the message, find the
 * two metrics, look the device up, mark it seen (silence list) and judge
 * both values. Cases:
 * - alerts_feed_json: edge mode in its steady state (temperature raised
 *   long ago, humidity normal): no alert;
 * - alerts_feed_json_alert: repeat mode (the guide's behaviour), so every
 *   message raises HIGH_TEMPERATURE and the callback writes the alert
 *   document (ciot_alert_to_json) into a buffer;
 * - jansson_loadb: jansson only parses the message into a tree and frees it
 *   (json_loadb + json_decref): no lookup, no judgement, no output.
 *
 *   BENCH_SCALE=1 python3 tests/bench/callgrind.py build/tests/bench/bench_alerts
 */
#include <cloudiot/cloudiot.h>

#include "bench.h"

#include <jansson.h>
#include <math.h>

#define NDEV 10000

static const char msg_text[] =
    "{\"deviceId\":\"temperature-sensor-001\",\"sensorType\":\"DHT22\",\"temperature\":37.31,"
    "\"humidity\":55.2,\"timestamp\":\"2026-11-26T04:56:27.123Z\",\"metadata\":{\"unit\":"
    "\"celsius\",\"v\":2}}";

static char msg[sizeof msg_text];
static size_t msg_len;
static char ids[NDEV][24];
static size_t id_len[NDEV];
static int64_t now_ms = 1795668987123;
static long next_dev;

struct counts {
    long alerts;
    size_t json_len;
};

static void fail(const char *what)
{
    fprintf(stderr, "bench_alerts: wrong result: %s\n", what);
    exit(1);
}

static int on_alert(ciot_alerts *a, const ciot_alert *al, void *ud)
{
    (void)a;
    (void)al;
    struct counts *c = ud;
    c->alerts++;
    return 0;
}

static int on_alert_json(ciot_alerts *a, const ciot_alert *al, void *ud)
{
    (void)a;
    struct counts *c = ud;
    char buf[256];
    if (ciot_alert_to_json(buf, sizeof buf, &c->json_len, al) != 0)
        fail("alert json");
    BENCH_KEEP(buf[0]);
    c->alerts++;
    return 0;
}

static void feed_once(ciot_alerts *a)
{
    long k = next_dev;
    next_dev = (next_dev + 7919) % NDEV; /* every device, scattered */
    if (ciot_alerts_feed_json(a, ids[k], id_len[k], msg, msg_len, now_ms++) != 0)
        fail("feed");
}

static void case_feed(void *ctx, long iters)
{
    ciot_alerts *a = ctx;
    for (long i = 0; i < iters; i++) {
        BENCH_CLOBBER();
        feed_once(a);
    }
}

static ciot_alerts *make(ciot_alerts_fn fn, struct counts *c, double hyst)
{
    ciot_alerts *a = NULL;
    if (ciot_alerts_new(&a, fn, c) != 0 ||
        ciot_alerts_set_threshold(a, NULL, 0, "temperature", 11, NAN, 35, "WARNING", 7, hyst) != 0 ||
        ciot_alerts_set_threshold(a, NULL, 0, "humidity", 8, NAN, 80, "WARNING", 7, hyst) != 0 ||
        ciot_alerts_set_silence(a, 600000) != 0)
        fail("setup");
    for (long i = 0; i < NDEV; i++) /* every device known before measuring */
        feed_once(a);
    if (ciot_alerts_device_count(a) != NDEV)
        fail("device count");
    return a;
}

int main(void)
{
    memcpy(msg, msg_text, sizeof msg_text);
    msg_len = sizeof msg_text - 1;
    if (msg_len != 169)
        fail("message length");
    for (int i = 0; i < NDEV; i++)
        id_len[i] = (size_t)snprintf(ids[i], sizeof ids[i], "sensor-%05d", i);

    struct counts edge = {0, 0}, rep = {0, 0};
    ciot_alerts *a = make(on_alert, &edge, 0);
    if (edge.alerts != NDEV) /* one HIGH_TEMPERATURE per device, then quiet */
        fail("edge alerts");
    ciot_alerts *r = make(on_alert_json, &rep, CIOT_ALERTS_REPEAT);
    if (rep.alerts != NDEV || rep.json_len == 0)
        fail("repeat alerts");
    if (bench_jansson_once(msg, msg_len) != 6)
        fail("jansson size");

    long n = bench_iters(200000);
    bench_run("alerts_feed_json", case_feed, a, n, 15);
    if (edge.alerts != NDEV)
        fail("edge mode raised again");
    bench_run("alerts_feed_json_alert", case_feed, r, n, 15);
    bench_run("jansson_loadb", bench_case_jansson_loadb, &(bench_text){msg, msg_len}, n / 5,
              15);
    printf("ratio feed_json_vs_jansson_loadb alerts_feed_json jansson_loadb <=1.0\n");
    printf("ratio feed_json_alert_vs_jansson_loadb alerts_feed_json_alert jansson_loadb <=1.5\n");
    printf("info message %zu bytes, %d devices, alert document %zu bytes; jansson only parses "
           "and frees\n",
           msg_len, NDEV, rep.json_len);
    if (ciot_alerts_free(a) != 0 || ciot_alerts_free(r) != 0)
        fail("free");
    return 0;
}
