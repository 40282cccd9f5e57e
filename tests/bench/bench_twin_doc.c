/*
 * The Azure twin engine on a typical twin (12 leaves in desired and in
 * reported, two levels deep, ~200 bytes per section):
 *   twin_patch_reported  one reported patch that changes one leaf: parse,
 *                        rule checks, merge on a copy, size, commit
 *   twin_patch_desired   the same on desired, plus the notification body
 *   twin_get             the GET document
 *   jansson_floor        jansson alone: parse the same patch and dump the
 *                        GET document tree once; a floor for any DOM-based
 *                        engine
 * Every operation's output is checked before timing.
 *
 * Run: BENCH_SCALE=1 python3 tests/bench/callgrind.py build/tests/bench/bench_twin_doc
 */
#include "bench.h"

#include "core/twin_doc.h"
#include "internal.h"

#include <jansson.h>

#define STATE                                                                                      \
    "{\"lights\":{\"color\":{\"r\":255,\"g\":0,\"b\":255},\"on\":true,\"level\":0.75},"            \
    "\"fan\":{\"speed\":\"low\",\"auto\":false},\"interval\":60,\"mode\":\"eco\",\"name\":"        \
    "\"kitchen "                                                                                   \
    "sensor\",\"tags\":[\"a\",\"b\"],\"target\":21.5}"

static const char *patches[2] = {
    "{\"lights\":{\"level\":0.5}}",
    "{\"lights\":{\"level\":0.75}}",
};

struct ctx {
    ciot__twin *t;
    json_t *get_doc;
    int section;
};

static void patch_case(void *p, long iters)
{
    struct ctx *c = p;
    for (long i = 0; i < iters; i++) {
        ciot__twin_result r;
        const char *q = patches[i & 1];
        BENCH_CLOBBER();
        if (ciot__twin_patch(&r, c->t, c->section, q, strlen(q)) != 0 || r.version == 0)
            abort();
        BENCH_KEEP(r.notification);
        ciot__twin_result_free(&r);
    }
}

static void get_case(void *p, long iters)
{
    struct ctx *c = p;
    for (long i = 0; i < iters; i++) {
        char *doc = NULL;
        size_t len;
        BENCH_CLOBBER();
        if (ciot__twin_get(&doc, &len, c->t) != 0)
            abort();
        BENCH_KEEP(doc);
        ciot__free(doc);
    }
}

static void floor_case(void *p, long iters)
{
    struct ctx *c = p;
    for (long i = 0; i < iters; i++) {
        const char *q = patches[i & 1];
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
    struct ctx c = {0};
    if (ciot__twin_new(&c.t) != 0)
        abort();
    ciot__twin_result r;
    for (int s = 0; s < 2; s++) {
        if (ciot__twin_patch(&r, c.t, s, STATE, strlen(STATE)) != 0 || r.version != 2)
            abort();
        ciot__twin_result_free(&r);
    }
    /* Check the outputs once. */
    if (ciot__twin_patch(&r, c.t, CIOT__TWIN_DESIRED, patches[0], strlen(patches[0])) != 0 ||
        r.status != 200 ||
        strcmp(r.notification, "{\"lights\":{\"level\":0.5},\"$version\":3}") != 0)
        abort();
    ciot__twin_result_free(&r);
    char *doc = NULL;
    size_t len = 0;
    if (ciot__twin_get(&doc, &len, c.t) != 0)
        abort();
    c.get_doc = json_loadb(doc, len, 0, NULL);
    json_t *lvl =
        json_object_get(json_object_get(json_object_get(c.get_doc, "desired"), "lights"), "level");
    if (!c.get_doc || json_real_value(lvl) != 0.5)
        abort();
    printf("get document: %zu bytes\n", len);
    ciot__free(doc);

    long n = bench_iters(20000);
    c.section = CIOT__TWIN_REPORTED;
    bench_run("twin_patch_reported", patch_case, &c, n, 9);
    c.section = CIOT__TWIN_DESIRED;
    bench_run("twin_patch_desired", patch_case, &c, n, 9);
    bench_run("twin_get", get_case, &c, n, 9);
    bench_run("jansson_floor", floor_case, &c, n, 9);
    printf("ratio patch_vs_jansson_floor twin_patch_reported jansson_floor\n");
    printf("ratio get_vs_jansson_floor twin_get jansson_floor\n");
    json_decref(c.get_doc);
    ciot__twin_free(c.t);
    return 0;
}
