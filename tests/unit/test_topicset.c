#include <cloudiot/cloudiot.h>

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topic_gen.h"

#define S(lit) (lit), (sizeof(lit) - 1)
#define P(i) ((void *)(uintptr_t)(i))

typedef struct hits {
    uintptr_t *v; /* NULL: only count */
    size_t cap;
    size_t n;
    size_t stop_after; /* 0 = never */
} hits;

static int collect(void *value, void *ud)
{
    hits *h = ud;
    if (h->n < h->cap)
        h->v[h->n] = (uintptr_t)value;
    h->n++;
    if (h->stop_after && h->n == h->stop_after)
        return 42;
    return 0;
}

static int cmp_uptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return (x > y) - (x < y);
}

static hits *lookup(const ciot_topicset *s, const char *t, size_t n)
{
    static uintptr_t store[1 << 18];
    static hits h;
    memset(&h, 0, sizeof h);
    h.v = store;
    h.cap = sizeof store / sizeof store[0];
    cr_assert_eq(ciot_topicset_match(s, t, n, collect, &h), 0, "lookup '%.*s'", (int)n, t);
    cr_assert_leq(h.n, h.cap, "more hits than the test can hold");
    qsort(h.v, h.n, sizeof h.v[0], cmp_uptr);
    return &h;
}

Test(topicset, basic_add_match_remove)
{
    ciot_topicset *s;
    cr_assert_eq(ciot_topicset_new(&s), 0);
    cr_assert_eq(ciot_topicset_count(s), 0);
    cr_assert_eq(ciot_topicset_add(s, S("sport/tennis/+"), P(1)), 0);
    cr_assert_eq(ciot_topicset_add(s, S("sport/#"), P(2)), 0);
    cr_assert_eq(ciot_topicset_add(s, S("#"), P(3)), 0);
    cr_assert_eq(ciot_topicset_add(s, S("sport/tennis/player1"), P(4)), 0);
    cr_assert_eq(ciot_topicset_add(s, S("+/+/+"), P(5)), 0);
    cr_assert_eq(ciot_topicset_add(s, S("sport/tennis/player1"), P(6)), 0, "second value");
    cr_assert_eq(ciot_topicset_add(s, S("sport/tennis/player1"), P(4)), CIOT_EEXIST);
    cr_assert_eq(ciot_topicset_count(s), 6);

    hits *h = lookup(s, S("sport/tennis/player1"));
    cr_assert_eq(h->n, 6);
    uintptr_t want[] = {1, 2, 3, 4, 5, 6};
    cr_assert_arr_eq(h->v, want, sizeof want);

    h = lookup(s, S("sport"));
    cr_assert_eq(h->n, 2); /* sport/# (parent) and # */
    h = lookup(s, S("$SYS/tennis/x"));
    cr_assert_eq(h->n, 0, "leading wildcards do not match $ names");

    cr_assert_eq(ciot_topicset_remove(s, S("sport/tennis/player1"), P(4)), 0);
    cr_assert_eq(ciot_topicset_remove(s, S("sport/tennis/player1"), P(4)), CIOT_ENOTFOUND);
    cr_assert_eq(ciot_topicset_remove(s, S("nope/x"), P(4)), CIOT_ENOTFOUND);
    cr_assert_eq(ciot_topicset_remove(s, S("sport/+"), P(4)), CIOT_ENOTFOUND);
    cr_assert_eq(ciot_topicset_remove(s, S("a/#/b"), P(4)), CIOT_EINVAL);
    h = lookup(s, S("sport/tennis/player1"));
    cr_assert_eq(h->n, 5);
    cr_assert_eq(ciot_topicset_count(s), 5);
    ciot_topicset_free(s);
    ciot_topicset_free(NULL);
}

Test(topicset, callback_stop_value_is_returned)
{
    ciot_topicset *s;
    cr_assert_eq(ciot_topicset_new(&s), 0);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(ciot_topicset_add(s, S("a/+"), P(i)), 0);
    hits h = {.stop_after = 2};
    cr_assert_eq(ciot_topicset_match(s, S("a/b"), collect, &h), 42);
    cr_assert_eq(h.n, 2);
    ciot_topicset_free(s);
}

Test(topicset, bad_arguments)
{
    ciot_topicset *s;
    cr_assert_eq(ciot_topicset_new(NULL), CIOT_EINVAL);
    cr_assert_eq(ciot_topicset_new_ex(&s, 0x1000), CIOT_EINVAL);
    cr_assert_eq(ciot_topicset_new(&s), 0);
    cr_assert_eq(ciot_topicset_add(NULL, S("a"), NULL), CIOT_EINVAL);
    cr_assert_eq(ciot_topicset_add(s, "", 0, NULL), CIOT_EINVAL);
    cr_assert_eq(ciot_topicset_add(s, S("a+"), NULL), CIOT_EINVAL);
    cr_assert_eq(ciot_topicset_add(s, S("a\0b"), NULL), CIOT_EINVAL);
    cr_assert_eq(ciot_topicset_add(s, S("a"), NULL), 0, "NULL is a value like any other");
    hits h = {0};
    cr_assert_eq(ciot_topicset_match(s, S("a/+"), collect, &h), CIOT_EINVAL);
    cr_assert_eq(ciot_topicset_match(s, "", 0, collect, &h), CIOT_EINVAL);
    cr_assert_eq(ciot_topicset_match(s, S("a\xc0\xaf"), collect, &h), CIOT_EINVAL);
    cr_assert_eq(ciot_topicset_match(s, S("a"), NULL, &h), CIOT_EINVAL);
    cr_assert_eq(ciot_topicset_match(NULL, S("a"), collect, &h), CIOT_EINVAL);
    cr_assert_eq(h.n, 0);
    cr_assert_eq(ciot_topicset_match(s, S("a"), collect, &h), 0);
    cr_assert_eq(h.n, 1);
    ciot_topicset_free(s);
}

Test(topicset, shared_subscriptions_are_distinct_filters)
{
    ciot_topicset *s;
    cr_assert_eq(ciot_topicset_new(&s), 0);
    cr_assert_eq(ciot_topicset_add(s, S("$share/g1/a/+"), P(1)), 0);
    cr_assert_eq(ciot_topicset_add(s, S("$share/g2/a/+"), P(1)), 0);
    cr_assert_eq(ciot_topicset_add(s, S("a/+"), P(1)), 0);
    cr_assert_eq(ciot_topicset_add(s, S("$share/g1/a/+"), P(1)), CIOT_EEXIST);
    cr_assert_eq(ciot_topicset_add(s, S("$share/g1/#"), P(2)), 0);
    cr_assert_eq(ciot_topicset_add(s, S("$share/g/a"), P(3)), 0);
    cr_assert_eq(ciot_topicset_add(s, S("$share//a"), P(3)), CIOT_EINVAL);
    hits *h = lookup(s, S("a/b"));
    cr_assert_eq(h->n, 4);
    h = lookup(s, S("$SYS/b"));
    cr_assert_eq(h->n, 0);
    h = lookup(s, S("a"));
    cr_assert_eq(h->n, 2); /* $share/g1/# (parent) and $share/g/a */
    cr_assert_eq(ciot_topicset_remove(s, S("$share/g2/a/+"), P(1)), 0);
    h = lookup(s, S("a/b"));
    cr_assert_eq(h->n, 3);
    cr_assert_eq(ciot_topicset_remove(s, S("$share/g2/a/+"), P(1)), CIOT_ENOTFOUND);
    ciot_topicset_free(s);
}

Test(topicset, aws_and_strict_flags)
{
    ciot_topicset *s;
    cr_assert_eq(ciot_topicset_new_ex(&s, CIOT_TOPIC_AWS | CIOT_TOPIC_STRICT), 0);
    cr_assert_eq(ciot_topicset_add(s, S("sport/#"), P(1)), 0);
    cr_assert_eq(ciot_topicset_add(s, S("a/b/c/d/e/f/g/h/#"), P(1)), CIOT_EINVAL);
    cr_assert_eq(ciot_topicset_add(s, S("a\x01"), P(1)), CIOT_EINVAL);
    hits *h = lookup(s, S("sport"));
    cr_assert_eq(h->n, 0, "AWS: # does not match the parent level");
    h = lookup(s, S("sport/x"));
    cr_assert_eq(h->n, 1);
    hits hh = {0};
    cr_assert_eq(ciot_topicset_match(s, S("sport/\x7f"), collect, &hh), CIOT_EINVAL);
    cr_assert_eq(ciot_topicset_match(s, S("sport/1/2/3/4/5/6/7/8"), collect, &hh), CIOT_EINVAL);
    ciot_topicset_free(s);
}

Test(topicset, memory_returns_to_baseline_after_removing_everything)
{
    ciot_topicset *s;
    cr_assert_eq(ciot_topicset_new(&s), 0);
    size_t base = ciot_topicset_memory(s);
    cr_assert_gt(base, 0);
    char buf[64];
    for (int i = 0; i < 2000; i++) {
        int n = snprintf(buf, sizeof buf, "devices/dev%05d/%s", i / 4,
                         (const char *[]){"telemetry", "+", "#", "cmd/+"}[i % 4]);
        cr_assert_eq(ciot_topicset_add(s, buf, (size_t)n, P(i)), 0);
        cr_assert_eq(ciot_topicset_add(s, buf, (size_t)n, P(i + 100000)), 0);
        cr_assert_eq(ciot_topicset_add(s, buf, (size_t)n, P(i + 200000)), 0);
    }
    cr_assert_gt(ciot_topicset_memory(s), base);
    cr_assert_eq(ciot_topicset_count(s), 6000);
    for (int i = 0; i < 2000; i++) {
        int n = snprintf(buf, sizeof buf, "devices/dev%05d/%s", i / 4,
                         (const char *[]){"telemetry", "+", "#", "cmd/+"}[i % 4]);
        cr_assert_eq(ciot_topicset_remove(s, buf, (size_t)n, P(i + 100000)), 0);
        cr_assert_eq(ciot_topicset_remove(s, buf, (size_t)n, P(i)), 0);
        cr_assert_eq(ciot_topicset_remove(s, buf, (size_t)n, P(i + 200000)), 0);
    }
    cr_assert_eq(ciot_topicset_count(s), 0);
    cr_assert_eq(ciot_topicset_memory(s), base);
    ciot_topicset_free(s);
}

Test(topicset, deep_filters_need_no_recursion)
{
    static char f[65535];
    for (size_t i = 0; i < sizeof f; i++)
        f[i] = i % 2 ? '/' : '+';
    ciot_topicset *s;
    cr_assert_eq(ciot_topicset_new(&s), 0);
    cr_assert_eq(ciot_topicset_add(s, f, sizeof f, P(1)), 0);
    cr_assert_eq(ciot_topicset_add(s, f, sizeof f - 2, P(2)), 0);
    static char t[65535];
    for (size_t i = 0; i < sizeof t; i++)
        t[i] = i % 2 ? '/' : 'x';
    hits *h = lookup(s, t, sizeof t);
    cr_assert_eq(h->n, 1);
    cr_assert_eq(h->v[0], 1);
    ciot_topicset_free(s);
}

/* ---------------------------------------------------- differential test */

typedef struct pair {
    char f[128];
    size_t len;
    uintptr_t v;
} pair;

/* Fleet-like and random valid filters. */
static void gen_filter(tg_rng *r, pair *p, long ndev)
{
    uint32_t dev = tg_below(r, (uint32_t)ndev);
    int n;
    switch (tg_below(r, 10)) {
    case 0:
        n = snprintf(p->f, sizeof p->f, "devices/dev%u/telemetry", dev);
        break;
    case 1:
        n = snprintf(p->f, sizeof p->f, "devices/dev%u/+", dev);
        break;
    case 2:
        n = snprintf(p->f, sizeof p->f, "devices/dev%u/#", dev);
        break;
    case 3:
        n = snprintf(p->f, sizeof p->f, "$aws/things/dev%u/shadow/update/%s", dev,
                     tg_below(r, 2) ? "delta" : "+");
        break;
    case 4:
        n = snprintf(p->f, sizeof p->f, "factory/site%u/line%u/+/cell%u/+/machine/%s",
                     dev % 7, dev % 13, dev % 31, tg_below(r, 2) ? "status" : "#");
        break;
    default: {
        tg_str t, f;
        do {
            tg_name(r, &t, 0);
            tg_filter_from(r, &f, &t, 0);
        } while (f.len >= sizeof p->f || ciot_topic_filter_check(f.buf, f.len) != 0);
        memcpy(p->f, f.buf, f.len);
        n = (int)f.len;
        break;
    }
    }
    p->len = (size_t)n;
}

/* A name likely to hit the set: a filter with its wildcards filled in. */
static void gen_probe(tg_rng *r, const pair *from, long ndev, tg_str *t)
{
    t->len = 0;
    if (!from || tg_below(r, 4) == 0) {
        tg_name(r, t, 0);
        if (t->len == 0)
            tg_append(t, "a", 1);
        return;
    }
    for (size_t i = 0; i < from->len; i++) {
        char c = from->f[i];
        if (c == '+') {
            char lv[32];
            int n = tg_below(r, 3) ? snprintf(lv, sizeof lv, "dev%u", tg_below(r, (uint32_t)ndev))
                                   : snprintf(lv, sizeof lv, "%s", tg_below(r, 2) ? "a" : "");
            tg_append(t, lv, (size_t)n);
        } else if (c == '#') {
            if (t->len && tg_below(r, 3) == 0)
                t->len--; /* parent level */
            else if (tg_below(r, 2))
                tg_append(t, "x/y", 3);
            else
                tg_append(t, "status", 6);
        } else {
            tg_append(t, &c, 1);
        }
    }
    if (t->len == 0)
        tg_append(t, "a", 1);
}

static void differential(long nfilters, long probes, uint64_t seed)
{
    tg_rng r = {seed};
    long ndev = nfilters / 4 + 1;
    long cap = nfilters + nfilters / 2 + 16;
    pair *live = calloc((size_t)cap, sizeof *live);
    cr_assert_not_null(live);
    long nlive = 0;
    uintptr_t next_value = 1;
    ciot_topicset *s;
    cr_assert_eq(ciot_topicset_new(&s), 0);

    /* grow to nfilters with adds and removes interleaved (3:1) */
    while (nlive < nfilters) {
        if (nlive > 0 && tg_below(&r, 4) == 0) {
            long k = tg_below(&r, (uint32_t)nlive);
            cr_assert_eq(ciot_topicset_remove(s, live[k].f, live[k].len, P(live[k].v)), 0);
            cr_assert_eq(ciot_topicset_remove(s, live[k].f, live[k].len, P(live[k].v)),
                         CIOT_ENOTFOUND);
            live[k] = live[--nlive];
            continue;
        }
        pair *p = &live[nlive];
        gen_filter(&r, p, ndev);
        /* sometimes a second value on an existing filter */
        if (nlive > 0 && tg_below(&r, 8) == 0) {
            *p = live[tg_below(&r, (uint32_t)nlive)];
            cr_assert_eq(ciot_topicset_add(s, p->f, p->len, P(p->v)), CIOT_EEXIST);
        }
        p->v = next_value++;
        cr_assert_eq(ciot_topicset_add(s, p->f, p->len, P(p->v)), 0, "add '%.*s'", (int)p->len,
                     p->f);
        nlive++;
    }
    cr_assert_eq(ciot_topicset_count(s), (size_t)nlive);

    uintptr_t *want = malloc((size_t)nlive * sizeof *want);
    cr_assert_not_null(want);
    long total_hits = 0;
    for (long q = 0; q < probes; q++) {
        tg_str t;
        gen_probe(&r, &live[tg_below(&r, (uint32_t)nlive)], ndev, &t);
        size_t nw = 0;
        for (long i = 0; i < nlive; i++) {
            bool m = false;
            cr_assert_eq(ciot_topic_match(live[i].f, live[i].len, t.buf, t.len, &m), 0,
                         "filter '%.*s' name '%.*s'", (int)live[i].len, live[i].f,
                         (int)t.len, t.buf);
            if (m)
                want[nw++] = live[i].v;
        }
        qsort(want, nw, sizeof *want, cmp_uptr);
        hits *h = lookup(s, t.buf, t.len);
        if (h->n != nw && getenv("TS_DEBUG")) {
            size_t shown = 0;
            for (size_t a = 0; a < h->n && shown < 5; a++) {
                if (!bsearch(&h->v[a], want, nw, sizeof *want, cmp_uptr)) {
                    for (long i = 0; i < nlive; i++)
                        if (live[i].v == h->v[a])
                            fprintf(stderr, "extra value %lu filter '%.*s'\n",
                                    (unsigned long)h->v[a], (int)live[i].len, live[i].f);
                    shown++;
                }
            }
        }
        cr_assert_eq(h->n, nw, "probe '%.*s': set %zu, single matches %zu", (int)t.len, t.buf,
                     h->n, nw);
        cr_assert_arr_eq(h->v, want, nw * sizeof *want, "probe '%.*s'", (int)t.len, t.buf);
        total_hits += (long)nw;
    }
    cr_log_info("N=%ld probes=%ld hits=%ld memory=%zu B (%.1f B/filter)", nfilters, probes,
                total_hits, ciot_topicset_memory(s),
                (double)ciot_topicset_memory(s) / (double)nlive);
    cr_assert_gt(total_hits, probes / 2, "probes must hit the set");

    /* remove everything: the set must end empty */
    while (nlive > 0) {
        long k = tg_below(&r, (uint32_t)nlive);
        cr_assert_eq(ciot_topicset_remove(s, live[k].f, live[k].len, P(live[k].v)), 0);
        live[k] = live[--nlive];
    }
    cr_assert_eq(ciot_topicset_count(s), 0);
    hits *h = lookup(s, S("devices/dev1/telemetry"));
    cr_assert_eq(h->n, 0);
    ciot_topicset_free(s);
    free(want);
    free(live);
}

Test(topicset, same_answers_as_single_match_10_filters)
{
    differential(10, tg_scaled(20000), 11);
}

Test(topicset, same_answers_as_single_match_1000_filters)
{
    differential(1000, tg_scaled(3000), 12);
}

Test(topicset, same_answers_as_single_match_10000_filters, .timeout = 300)
{
    differential(10000, tg_scaled(300), 13);
}

Test(topicset, same_answers_as_single_match_100000_filters, .timeout = 300)
{
    differential(100000, tg_scaled(40), 14);
}
