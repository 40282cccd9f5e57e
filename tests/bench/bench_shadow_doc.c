/*
 * The shadow document engine on a typical device shadow (12 leaves in
 * desired and reported, two levels deep, ~400 bytes of state):
 *   shadow_update_reported  one /update that changes one reported leaf:
 *                           validation, merge on copies, metadata, the
 *                           accepted, delta and documents strings, commit
 *   shadow_get              the full /get/accepted document
 *   jansson_floor           jansson alone: parse the same request and dump
 *                           the /get document tree once (no merge, no
 *                           metadata, one output instead of three); a floor
 *                           for what any DOM-based engine must do
 * Every operation's output is checked before timing.
 *
 * Run: BENCH_SCALE=1 python3 tests/bench/callgrind.py build/tests/bench/bench_shadow_doc
 */
#include "bench.h"

#include "core/shadow_doc.h"
#include "internal.h"

#include <jansson.h>

#define STATE                                                                                   \
    "{\"lights\":{\"color\":{\"r\":255,\"g\":0,\"b\":255},\"on\":true,\"level\":0.75},"           \
    "\"fan\":{\"speed\":\"low\",\"auto\":false},\"interval\":60,\"mode\":\"eco\",\"name\":\"kitchen "\
    "sensor\",\"tags\":[\"a\",\"b\"],\"target\":21.5}"

static const char *reqs[2] = {
    "{\"state\":{\"reported\":{\"lights\":{\"level\":0.5}}},\"clientToken\":\"bench-1\"}",
    "{\"state\":{\"reported\":{\"lights\":{\"level\":0.75}}},\"clientToken\":\"bench-2\"}",
};

struct ctx {
    ciot__shadow *s;
    json_t *get_doc;
};

static void update_case(void *p, long iters)
{
    struct ctx *c = p;
    for (long i = 0; i < iters; i++) {
        ciot__shadow_result r;
        const char *q = reqs[i & 1];
        BENCH_CLOBBER();
        if (ciot__shadow_update(&r, c->s, q, strlen(q), 1700000000) != 0 || r.status != 200)
            abort();
        BENCH_KEEP(r.accepted);
        ciot__shadow_result_free(&r);
    }
}

static void get_case(void *p, long iters)
{
    struct ctx *c = p;
    for (long i = 0; i < iters; i++) {
        ciot__shadow_result r;
        BENCH_CLOBBER();
        if (ciot__shadow_get(&r, c->s, NULL, 0, 1700000000) != 0 || r.status != 200)
            abort();
        BENCH_KEEP(r.accepted);
        ciot__shadow_result_free(&r);
    }
}

static void floor_case(void *p, long iters)
{
    struct ctx *c = p;
    for (long i = 0; i < iters; i++) {
        const char *q = reqs[i & 1];
        BENCH_CLOBBER();
        json_t *j = json_loadb(q, strlen(q), 0, NULL);
        char *out = json_dumps(c->get_doc, JSON_COMPACT);
        if (!j || !out)
            abort();
        BENCH_KEEP(out);
        free(out);
        json_decref(j);
    }
}

int main(void)
{
    struct ctx c;
    if (ciot__shadow_new(&c.s, "bench", 5) != 0)
        abort();
    const char *init = "{\"state\":{\"desired\":" STATE ",\"reported\":" STATE "}}";
    ciot__shadow_result r;
    if (ciot__shadow_update(&r, c.s, init, strlen(init), 1700000000) != 0 || r.status != 200)
        abort();
    ciot__shadow_result_free(&r);
    /* Check the outputs once: the first request makes a one-leaf delta. */
    if (ciot__shadow_update(&r, c.s, reqs[0], strlen(reqs[0]), 1700000000) != 0 || !r.delta ||
        strcmp(r.delta, "{\"state\":{\"lights\":{\"level\":0.75}},\"metadata\":{\"lights\":{\"level\":"
                        "{\"timestamp\":1700000000}}},\"version\":2,\"timestamp\":1700000000,"
                        "\"clientToken\":\"bench-1\"}") != 0)
        abort();
    ciot__shadow_result_free(&r);
    if (ciot__shadow_update(&r, c.s, reqs[1], strlen(reqs[1]), 1700000000) != 0 || r.delta)
        abort();
    ciot__shadow_result_free(&r);
    if (ciot__shadow_get(&r, c.s, NULL, 0, 1700000000) != 0 || r.status != 200)
        abort();
    c.get_doc = json_loads(r.accepted, 0, NULL);
    if (!c.get_doc)
        abort();
    printf("get document: %zu bytes\n", r.accepted_len);
    ciot__shadow_result_free(&r);

    long n = bench_iters(20000);
    bench_run("shadow_update_reported", update_case, &c, n, 9);
    bench_run("shadow_get", get_case, &c, n, 9);
    bench_run("jansson_floor", floor_case, &c, n, 9);
    printf("ratio update_vs_jansson_floor shadow_update_reported jansson_floor\n");
    printf("ratio get_vs_jansson_floor shadow_get jansson_floor\n");
    json_decref(c.get_doc);
    ciot__shadow_free(c.s);
    return 0;
}
