/*
 * Topic matching benchmarks (issue 3, anchors performance.md §1 and §2).
 *
 * (a) one name against one filter: a 32-pair mix (18 matching) for
 *     ciot_topic_match and libmosquitto's mosquitto_topic_matches_sub;
 * (b) one name against a set of N fleet-like filters (N = 10, 1,000,
 *     100,000): ciot_topicset_match against a loop over
 *     mosquitto_topic_matches_sub; memory per filter printed.
 *
 * Every answer is checked against the expected one before anything is
 * measured. Run: BENCH_SCALE=1 python3 tests/bench/callgrind.py build/tests/bench/bench_topic
 */
#define _DEFAULT_SOURCE /* mallinfo2 */
#include <cloudiot/cloudiot.h>

#include <malloc.h>
#include <mosquitto.h>

#include "bench.h"

/* ------------------------------------------------------ (a) single match */

#define C2D_TOPIC                                                                          \
    "devices/temperature-sensor-001/messages/devicebound/"                                  \
    "%24.mid=6f1c2b3a-9d7e-4c1b-8a2f-0e5d4c3b2a19&%24.to=%2Fdevices%2Ftemperature-sensor-001" \
    "%2Fmessages%2Fdevicebound&%24.ct=application%2Fjson&%24.ce=utf-8&priority=high"        \
    "&region=eu-west-1"
#define FACTORY_TOPIC "factory/plant1/line3/cell7/robot12/axis4/sensor/torque"
#define SENSOR_TOPIC "sensors/temperature-sensor-001/temperature"
#define SHADOW_TOPIC "$aws/things/dev1/shadow/update/delta"

typedef struct mpair {
    const char *filter, *topic;
    bool expect;
    size_t flen, tlen;
} mpair;

static mpair pairs[] = {
    /* exact, early and late mismatches */
    {SENSOR_TOPIC, SENSOR_TOPIC, true, 0, 0},
    {"sensors/temperature-sensor-001/humidity", SENSOR_TOPIC, false, 0, 0},
    {"devices/d1/messages/events", SENSOR_TOPIC, false, 0, 0},
    {"sensors/temperature-sensor-002/temperature", SENSOR_TOPIC, false, 0, 0},
    /* + and # */
    {"sensors/+/temperature", SENSOR_TOPIC, true, 0, 0},
    {"sensors/+/humidity", SENSOR_TOPIC, false, 0, 0},
    {"sensors/#", SENSOR_TOPIC, true, 0, 0},
    {"#", "sport/tennis/player1", true, 0, 0},
    {"+/+", "sport/tennis", true, 0, 0},
    {"sport/tennis/+", "sport/tennis/player1/ranking", false, 0, 0},
    {"a/b/c/+", "a/b/c/e", true, 0, 0},
    {"home/+/livingroom/temperature", "home/floor1/livingroom/temperature", true, 0, 0},
    {"home/floor1/kitchen/#", "home/floor1/livingroom/temperature", false, 0, 0},
    /* parent level */
    {"a/b/#", "a/b", true, 0, 0},
    {"sport/#", "sport", true, 0, 0},
    /* $-names against leading wildcards */
    {"$aws/things/+/shadow/update/delta", SHADOW_TOPIC, true, 0, 0},
    {"#", SHADOW_TOPIC, false, 0, 0},
    {"+/things/+/shadow/update/delta", SHADOW_TOPIC, false, 0, 0},
    {"$aws/things/+/shadow/update/#", SHADOW_TOPIC, true, 0, 0},
    {"$aws/things/+/shadow/get/accepted", SHADOW_TOPIC, false, 0, 0},
    {"$SYS/broker/clients/connected", "$SYS/broker/clients/connected", true, 0, 0},
    /* Azure C2D with a long property bag */
    {"devices/temperature-sensor-001/messages/devicebound/#", C2D_TOPIC, true, 0, 0},
    {"devices/other-device/messages/devicebound/#", C2D_TOPIC, false, 0, 0},
    {"$iothub/twin/res/#", "$iothub/twin/res/200/?$rid=1", true, 0, 0},
    {"$iothub/methods/POST/#", "$iothub/twin/res/200/?$rid=1", false, 0, 0},
    /* 8-level factory topics */
    {FACTORY_TOPIC, FACTORY_TOPIC, true, 0, 0},
    {"factory/+/line3/+/robot12/+/sensor/torque", FACTORY_TOPIC, true, 0, 0},
    {"factory/plant1/+/+/+/+/sensor/#", FACTORY_TOPIC, true, 0, 0},
    {"factory/plant1/line3/cell7/robot12/axis4/sensor/speed", FACTORY_TOPIC, false, 0, 0},
    {"factory/plant2/#", FACTORY_TOPIC, false, 0, 0},
    {"factory/+/+/+/+/+/+/+", FACTORY_TOPIC, true, 0, 0},
    {"factory/+/+/+/+/+/+", FACTORY_TOPIC, false, 0, 0},
};
#define NPAIRS (sizeof pairs / sizeof pairs[0])

static void run_ciot_single(void *ctx, long iters)
{
    (void)ctx;
    long rounds = iters / (long)NPAIRS;
    unsigned hits = 0;
    for (long r = 0; r < rounds; r++) {
        BENCH_CLOBBER();
        for (size_t i = 0; i < NPAIRS; i++) {
            bool m;
            if (ciot_topic_match(pairs[i].filter, pairs[i].flen, pairs[i].topic, pairs[i].tlen,
                                 &m) == 0)
                hits += m;
        }
    }
    BENCH_KEEP(hits);
}

static void run_mosq_single(void *ctx, long iters)
{
    (void)ctx;
    long rounds = iters / (long)NPAIRS;
    unsigned hits = 0;
    for (long r = 0; r < rounds; r++) {
        BENCH_CLOBBER();
        for (size_t i = 0; i < NPAIRS; i++) {
            bool m;
            if (mosquitto_topic_matches_sub(pairs[i].filter, pairs[i].topic, &m) == 0)
                hits += m;
        }
    }
    BENCH_KEEP(hits);
}

/* ----------------------------------------------------------- (b) sets */

typedef struct fleet {
    long n;
    char (*f)[96];
    size_t *len;
    ciot_topicset *set;
    size_t heap_bytes; /* mallinfo2 difference while building the set */
} fleet;

static const char *const probes[4] = {
    "devices/dev000000/telemetry",
    "$aws/things/dev000000/shadow/update/delta",
    "factory/plant0/line0/cell0/robot000000/axis1/sensor/torque",
    "unknown/topic/with/levels",
};
static size_t probe_len[4];

/* Fleet-like filter i of a set of n (the last three are the broad rules). */
static size_t fleet_filter(char *out, size_t cap, long i, long n)
{
    static const char *const broad[3] = {"sensors/+/temperature", "$aws/things/+/shadow/update/delta",
                                         "factory/#"};
    if (i >= n - 3)
        return (size_t)snprintf(out, cap, "%s", broad[i - (n - 3)]);
    long d = i / 10;
    int p = (int)(d % 4), l = (int)(d % 16), c = (int)(d % 64);
    switch (i % 10) {
    case 0: return (size_t)snprintf(out, cap, "devices/dev%06ld/telemetry", d);
    case 1: return (size_t)snprintf(out, cap, "devices/dev%06ld/commands/+", d);
    case 2: return (size_t)snprintf(out, cap, "devices/dev%06ld/config/#", d);
    case 3: return (size_t)snprintf(out, cap, "$aws/things/dev%06ld/shadow/update/delta", d);
    case 4: return (size_t)snprintf(out, cap, "$aws/things/dev%06ld/shadow/get/accepted", d);
    case 5:
        return (size_t)snprintf(out, cap, "factory/plant%d/line%d/cell%d/robot%06ld/+/sensor/torque",
                                p, l, c, d);
    case 6:
        return (size_t)snprintf(out, cap, "factory/plant%d/+/cell%d/robot%06ld/axis%d/sensor/+", p,
                                c, d, (int)(d % 6));
    case 7: return (size_t)snprintf(out, cap, "devices/dev%06ld/messages/devicebound/#", d);
    case 8: return (size_t)snprintf(out, cap, "sensors/dev%06ld/temperature", d);
    default: return (size_t)snprintf(out, cap, "sensors/dev%06ld/+", d);
    }
}

static int count_cb(void *value, void *ud)
{
    (void)value;
    ++*(long *)ud;
    return 0;
}

static void fleet_build(fleet *fl, long n)
{
    fl->n = n;
    fl->f = malloc((size_t)n * sizeof *fl->f);
    fl->len = malloc((size_t)n * sizeof *fl->len);
    if (!fl->f || !fl->len)
        abort();
    for (long i = 0; i < n; i++)
        fl->len[i] = fleet_filter(fl->f[i], sizeof fl->f[i], i, n);
    struct mallinfo2 before = mallinfo2();
    if (ciot_topicset_new(&fl->set))
        abort();
    for (long i = 0; i < n; i++)
        if (ciot_topicset_add(fl->set, fl->f[i], fl->len[i], (void *)(uintptr_t)(i + 1)))
            abort();
    struct mallinfo2 after = mallinfo2();
    fl->heap_bytes = after.uordblks + after.hblkhd - before.uordblks - before.hblkhd;
    /* check: the set, ciot_topic_match and libmosquitto agree on every probe */
    for (int q = 0; q < 4; q++) {
        long a = 0, b = 0, c = 0;
        if (ciot_topicset_match(fl->set, probes[q], probe_len[q], count_cb, &a))
            abort();
        for (long i = 0; i < n; i++) {
            bool m1, m2;
            if (ciot_topic_match(fl->f[i], fl->len[i], probes[q], probe_len[q], &m1) ||
                mosquitto_topic_matches_sub(fl->f[i], probes[q], &m2))
                abort();
            b += m1;
            c += m2;
        }
        if (a != b || b != c) {
            fprintf(stderr, "N=%ld probe %d: set %ld, single %ld, mosquitto %ld\n", n, q, a, b, c);
            exit(1);
        }
    }
}

static void run_set_ciot(void *ctx, long iters)
{
    fleet *fl = ctx;
    long hits = 0;
    for (long r = 0; r < iters; r++) {
        int q = (int)(r & 3);
        BENCH_CLOBBER();
        if (ciot_topicset_match(fl->set, probes[q], probe_len[q], count_cb, &hits))
            abort();
    }
    BENCH_KEEP(hits);
}

static void run_set_mosq(void *ctx, long iters)
{
    fleet *fl = ctx;
    long hits = 0;
    for (long r = 0; r < iters; r++) {
        int q = (int)(r & 3);
        BENCH_CLOBBER();
        for (long i = 0; i < fl->n; i++) {
            bool m;
            if (mosquitto_topic_matches_sub(fl->f[i], probes[q], &m) == 0)
                hits += m;
        }
    }
    BENCH_KEEP(hits);
}

int main(void)
{
    for (size_t i = 0; i < NPAIRS; i++) {
        pairs[i].flen = strlen(pairs[i].filter);
        pairs[i].tlen = strlen(pairs[i].topic);
        bool m1 = !pairs[i].expect, m2 = !pairs[i].expect;
        if (ciot_topic_match(pairs[i].filter, pairs[i].flen, pairs[i].topic, pairs[i].tlen, &m1) ||
            mosquitto_topic_matches_sub(pairs[i].filter, pairs[i].topic, &m2) ||
            m1 != pairs[i].expect || m2 != pairs[i].expect) {
            fprintf(stderr, "pair %zu (%s vs %s): ciot %d mosquitto %d expected %d\n", i,
                    pairs[i].filter, pairs[i].topic, m1, m2, pairs[i].expect);
            return 1;
        }
    }
    unsigned nmatch = 0;
    for (size_t i = 0; i < NPAIRS; i++)
        nmatch += pairs[i].expect;
    printf("info single-match mix: %zu pairs, %u matching\n", NPAIRS, nmatch);

    long single_iters = bench_iters(200000) / (long)NPAIRS * (long)NPAIRS;
    if (single_iters < (long)NPAIRS)
        single_iters = (long)NPAIRS;
    bench_run("match_ciot", run_ciot_single, NULL, single_iters, 9);
    bench_run("match_mosquitto", run_mosq_single, NULL, single_iters, 9);
    printf("ratio single_ciot_vs_mosquitto match_ciot match_mosquitto <=0.35\n");

    for (int q = 0; q < 4; q++)
        probe_len[q] = strlen(probes[q]);
    static const long sizes[3] = {10, 1000, 100000};
    for (int k = 0; k < 3; k++) {
        fleet fl;
        fleet_build(&fl, sizes[k]);
        char name[64];
        snprintf(name, sizeof name, "set_ciot_%ld", sizes[k]);
        bench_run(name, run_set_ciot, &fl, bench_iters(100000) / 4 * 4 + 4, 9);
        snprintf(name, sizeof name, "set_mosquitto_%ld", sizes[k]);
        long mi = bench_iters(2000000) / sizes[k];
        mi = mi < 4 ? 4 : mi / 4 * 4;
        bench_run(name, run_set_mosq, &fl, mi, sizes[k] >= 100000 ? 3 : 7);
        printf("info N=%ld memory: %.1f B/filter requested (ciot_topicset_memory), %.1f B/filter "
               "heap incl. malloc overhead (mallinfo2)\n",
               sizes[k], (double)ciot_topicset_memory(fl.set) / (double)sizes[k],
               (double)fl.heap_bytes / (double)sizes[k]);
        ciot_topicset_free(fl.set);
        free(fl.f);
        free(fl.len);
    }
    printf("ratio set_mosquitto_loop_vs_ciot_N100000 set_mosquitto_100000 set_ciot_100000 >=1000\n");
    printf("ratio set_mosquitto_loop_vs_ciot_N1000 set_mosquitto_1000 set_ciot_1000\n");
    printf("ratio set_mosquitto_loop_vs_ciot_N10 set_mosquitto_10 set_ciot_10\n");
    printf("ratio set_ciot_N100000_vs_N10 set_ciot_100000 set_ciot_10 <=3\n");
    return 0;
}
