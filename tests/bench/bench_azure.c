/*
 * Azure building blocks: cost per operation of the per-message work and of
 * a SAS token.
 *
 * - telemetry topic with the seed's properties (ct, ce, temperatureAlert,
 *   deviceType, timestamp), encoded by ciot__azure_telemetry_topic, against
 *   snprintf of the same topic from strings the caller has already
 *   encoded (what azure-sdk-for-c users do); the ratio is the price of
 *   encoding inside the library;
 * - C2D bag decoding of a hub-like bag (5 properties);
 * - SAS token, against HMAC() alone on the same string to sign (the ratio
 *   is everything but the HMAC).
 *
 * Every output is checked before anything is measured.
 * Run: BENCH_SCALE=1 python3 tests/bench/callgrind.py build/tests/bench/bench_azure
 */
#include <cloudiot/cloudiot.h>

#include "core/azure.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "bench.h"

#define TOPIC_WANT                                                                                   \
    "devices/temperature-sensor-001/messages/events/$.ct=application%2Fjson&$.ce=utf-8"              \
    "&temperatureAlert=true&deviceType=temperature-sensor&timestamp=2026-11-26T04%3A56%3A27.123Z"

static ciot__azure_sysprops sys;
static ciot__azure_prop props[3];
static char out[512];

static void run_topic_ciot(void *ctx, long iters)
{
    (void)ctx;
    for (long i = 0; i < iters; i++) {
        size_t n;
        BENCH_CLOBBER();
        int rc = ciot__azure_telemetry_topic(out, sizeof out, &n, "temperature-sensor-001", 22, NULL, 0, &sys,
                                             props, 3);
        BENCH_KEEP(rc);
        BENCH_KEEP(n);
    }
}

static void run_topic_snprintf(void *ctx, long iters)
{
    (void)ctx;
    for (long i = 0; i < iters; i++) {
        BENCH_CLOBBER();
        int n = snprintf(out, sizeof out,
                         "devices/%s/messages/events/$.ct=%s&$.ce=%s&temperatureAlert=%s&deviceType=%s&timestamp=%s",
                         "temperature-sensor-001", "application%2Fjson", "utf-8", "true", "temperature-sensor",
                         "2026-11-26T04%3A56%3A27.123Z");
        BENCH_KEEP(n);
    }
}

#define BAG                                                                                                    \
    "%24.mid=6f1c2b3a-9d7e-4c1b-8a2f-0e5d4c3b2a19&%24.to=%2Fdevices%2Ftemperature-sensor-001%2Fmessages%2F" \
    "devicebound&%24.ct=application%2Fjson&%24.ce=utf-8&priority=high"

static void run_bag_decode(void *ctx, long iters)
{
    (void)ctx;
    char buf[sizeof BAG];
    ciot__azure_prop p[8];
    for (long i = 0; i < iters; i++) {
        size_t used, n;
        BENCH_CLOBBER();
        int rc = ciot__azure_bag_decode(buf, sizeof buf, &used, p, 8, &n, BAG, sizeof BAG - 1);
        BENCH_KEEP(rc);
        BENCH_KEEP(n);
    }
}

#define K1 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

static void run_sas(void *ctx, long iters)
{
    (void)ctx;
    for (long i = 0; i < iters; i++) {
        size_t n;
        BENCH_CLOBBER();
        int rc = ciot_azure_sas_token(out, sizeof out, &n, "myhub.azure-devices.net", "device1", NULL, NULL, K1,
                                      1700000000);
        BENCH_KEEP(rc);
    }
}

static void run_hmac(void *ctx, long iters)
{
    (void)ctx;
    static const char sts[] = "myhub.azure-devices.net%2Fdevices%2Fdevice1\n1700000000";
    unsigned char key[32];
    for (int i = 0; i < 32; i++)
        key[i] = (unsigned char)i;
    for (long i = 0; i < iters; i++) {
        unsigned char mac[32];
        unsigned int ml;
        BENCH_CLOBBER();
        BENCH_KEEP(HMAC(EVP_sha256(), key, 32, (const unsigned char *)sts, sizeof sts - 1, mac, &ml));
        BENCH_KEEP(mac[0]);
    }
}

int main(void)
{
    sys.content_type = (ciot_view){"application/json", 16};
    sys.content_encoding = (ciot_view){"utf-8", 5};
    props[0] = (ciot__azure_prop){{"temperatureAlert", 16}, {"true", 4}, true};
    props[1] = (ciot__azure_prop){{"deviceType", 10}, {"temperature-sensor", 18}, true};
    props[2] = (ciot__azure_prop){{"timestamp", 9}, {"2026-11-26T04:56:27.123Z", 24}, true};

    size_t n;
    if (ciot__azure_telemetry_topic(out, sizeof out, &n, "temperature-sensor-001", 22, NULL, 0, &sys, props, 3) !=
            0 ||
        strcmp(out, TOPIC_WANT) != 0) {
        fprintf(stderr, "telemetry topic wrong: %s\n", out);
        return 1;
    }
    run_topic_snprintf(NULL, 1);
    if (strcmp(out, TOPIC_WANT) != 0) {
        fprintf(stderr, "snprintf topic wrong: %s\n", out);
        return 1;
    }
    {
        char buf[sizeof BAG];
        ciot__azure_prop p[8];
        size_t used, np;
        if (ciot__azure_bag_decode(buf, sizeof buf, &used, p, 8, &np, BAG, sizeof BAG - 1) != 0 || np != 5 ||
            p[1].value.len != strlen("/devices/temperature-sensor-001/messages/devicebound")) {
            fprintf(stderr, "bag decode wrong\n");
            return 1;
        }
    }
    if (ciot_azure_sas_token(out, sizeof out, &n, "myhub.azure-devices.net", "device1", NULL, NULL, K1,
                             1700000000) != 0 ||
        strcmp(out, "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice1"
                    "&sig=gFSfLGMXDOvf906%2FiaX3KwzLLNFHgaFZyCbsGjxtd1Y%3D&se=1700000000") != 0) {
        fprintf(stderr, "sas wrong: %s\n", out);
        return 1;
    }

    bench_run("topic_ciot", run_topic_ciot, NULL, bench_iters(200000), 7);
    bench_run("topic_snprintf_preencoded", run_topic_snprintf, NULL, bench_iters(200000), 7);
    bench_run("bag_decode", run_bag_decode, NULL, bench_iters(200000), 7);
    bench_run("sas_token", run_sas, NULL, bench_iters(20000), 7);
    bench_run("hmac_only", run_hmac, NULL, bench_iters(20000), 7);
    printf("ratio topic_ciot_vs_snprintf topic_ciot topic_snprintf_preencoded\n");
    printf("ratio sas_vs_hmac sas_token hmac_only\n");
    return 0;
}
