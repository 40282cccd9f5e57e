/* lib/core/filter_cover.c: covers / overlaps / join / cover, checked against
 * ciot_topic_match_ex() on every topic of a small universe. */
#include "core/filter_cover.h"

#include <cloudiot/cloudiot.h>

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* an input filter (the struct holds a char *) */
#define F(lit) {(char[]){lit}, sizeof(lit) - 1}

static bool covers(const char *g, const char *f, bool aws)
{
    return ciot__filter_covers(g, strlen(g), f, strlen(f), aws);
}

static bool overlaps(const char *a, const char *b, bool aws)
{
    return ciot__filter_overlaps(a, strlen(a), b, strlen(b), aws);
}

static const char *join(const char *a, const char *b, bool aws)
{
    static char buf[256];
    size_t n = ciot__filter_join(buf, a, strlen(a), b, strlen(b), aws);
    cr_assert_eq(n, strlen(buf));
    return buf;
}

Test(filter_cover, covers_examples)
{
    cr_assert(covers("sensors/#", "sensors/+/temperature", false));
    cr_assert(covers("sensors/#", "sensors/+/temperature", true));
    cr_assert_not(covers("sensors/+/temperature", "sensors/#", false));
    cr_assert(covers("sensors/+/temperature", "sensors/d1/temperature", false));
    cr_assert_not(covers("sensors/d1/temperature", "sensors/+/temperature", false));
    cr_assert(covers("a/#", "a", false), "MQTT: '#' matches the parent level");
    cr_assert_not(covers("a/#", "a", true), "AWS: it does not");
    cr_assert(covers("#", "a/b", false));
    cr_assert_not(covers("#", "$aws/things/x", false), "no leading wildcard matches '$'");
    cr_assert_not(covers("+/things/x", "$aws/things/x", false));
    cr_assert(covers("$aws/#", "$aws/things/+/shadow/#", false));
    cr_assert(covers("a/+", "a/+", false));
    cr_assert(covers("a/b", "a/b", false));
    cr_assert_not(covers("a/b", "a/b/c", false));
    cr_assert_not(covers("a/+", "a/#", false));
    cr_assert(covers("a/#", "a/#", true));
    cr_assert(covers("a//c", "a//c", false));
    cr_assert_not(covers("a/+/c", "a/c", false));
}

Test(filter_cover, overlaps_examples)
{
    cr_assert(overlaps("sensors/+/temperature", "sensors/#", false));
    cr_assert(overlaps("sensors/+/temperature", "sensors/a/#", false));
    cr_assert(overlaps("sensors/+/temperature", "sensors/a/#", true));
    cr_assert_not(overlaps("sensors/+/temperature", "sensors/+/humidity", false));
    cr_assert(overlaps("a", "a/#", false));
    cr_assert_not(overlaps("a", "a/#", true));
    cr_assert_not(overlaps("#", "$SYS/x", false));
    cr_assert_not(overlaps("+/x", "$SYS/x", false));
    cr_assert(overlaps("+/x", "$SYS/+", false) == false);
    cr_assert(overlaps("$SYS/#", "$SYS/+", false));
    cr_assert(overlaps("#", "+", true));
    cr_assert_not(overlaps("a/b", "a/b/c", false));
    cr_assert(overlaps("a/+/c", "+/b/+", false));
}

Test(filter_cover, join_examples)
{
    cr_assert_str_eq(join("sensors/+/temperature", "sensors/a/#", false), "sensors/+/#");
    cr_assert_str_eq(join("a/b/c", "a/x/c", false), "a/+/c");
    cr_assert_str_eq(join("a", "a/#", false), "a/#");
    cr_assert_str_eq(join("a/b", "a/b/#", true), "a/#");
    cr_assert_str_eq(join("$aws/a/#", "$aws/+/b", false), "$aws/+/#");
    cr_assert_str_eq(join("x", "#", false), "#");
    cr_assert_str_eq(join("a//c", "a//#", false), "a//#");
}

Test(filter_cover, cover_examples)
{
    ciot__filter in[] = {F("sensors/+/temperature"), F("sensors/#"), F("alerts/+"), F("sensors/#")};
    ciot__filter *out;
    size_t n;
    cr_assert_eq(ciot__filter_cover(&out, &n, in, 4, false), 0);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(out[0].s, "alerts/+");
    cr_assert_str_eq(out[1].s, "sensors/#");
    cr_assert_eq(out[1].len, 9);
    ciot__filters_free(out, n);

    ciot__filter in2[] = {F("sensors/+/temperature"), F("sensors/a/#"), F("b")};
    cr_assert_eq(ciot__filter_cover(&out, &n, in2, 3, false), 0);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(out[0].s, "b");
    cr_assert_str_eq(out[1].s, "sensors/+/#");
    ciot__filters_free(out, n);

    ciot__filter in3[] = {F("a"), F("a/#")};
    cr_assert_eq(ciot__filter_cover(&out, &n, in3, 2, false), 0);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(out[0].s, "a/#");
    ciot__filters_free(out, n);
    cr_assert_eq(ciot__filter_cover(&out, &n, in3, 2, true), 0);
    cr_assert_eq(n, 2, "on AWS 'a' and 'a/#' do not overlap");
    ciot__filters_free(out, n);

    cr_assert_eq(ciot__filter_cover(&out, &n, NULL, 0, false), 0);
    cr_assert_eq(n, 0);
    cr_assert_null(out);
}

/* ---- exhaustive checks on a small universe ---- */

static const char *const flevels[] = {"a", "b", "$a", "", "+", "#"};
static const char *const tlevels[] = {"a", "b", "$a", "", "z"};

/* Every filter of 1..3 levels from flevels ('#' last only). */
static size_t all_filters(char (*out)[32], size_t cap)
{
    size_t n = 0;
    for (int len = 1; len <= 3; len++) {
        int idx[3] = {0, 0, 0};
        for (;;) {
            char buf[32] = "";
            bool ok = true;
            for (int i = 0; i < len; i++) {
                if (strcmp(flevels[idx[i]], "#") == 0 && i != len - 1)
                    ok = false;
                if (i)
                    strcat(buf, "/");
                strcat(buf, flevels[idx[i]]);
            }
            if (ok && buf[0] && n < cap)
                snprintf(out[n++], 32, "%s", buf);
            int k = len - 1;
            while (k >= 0 && ++idx[k] == 6)
                idx[k--] = 0;
            if (k < 0)
                break;
        }
    }
    return n;
}

/* Every topic of 1..4 levels from tlevels. */
static size_t all_topics(char (*out)[40], size_t cap)
{
    size_t n = 0;
    for (int len = 1; len <= 4; len++) {
        int idx[4] = {0, 0, 0, 0};
        for (;;) {
            char buf[40] = "";
            for (int i = 0; i < len; i++) {
                if (i)
                    strcat(buf, "/");
                strcat(buf, tlevels[idx[i]]);
            }
            if (buf[0] && n < cap) /* "" is no topic name */
                snprintf(out[n++], 40, "%s", buf);
            int k = len - 1;
            while (k >= 0 && ++idx[k] == 5)
                idx[k--] = 0;
            if (k < 0)
                break;
        }
    }
    return n;
}

static bool matches(const char *f, const char *t, bool aws)
{
    bool m = false;
    cr_assert_eq(ciot_topic_match_ex(f, strlen(f), t, strlen(t), aws ? CIOT_MATCH_AWS : 0, &m), 0,
                 "%s %s", f, t);
    return m;
}

static char filters[400][32];
static char topics[1000][40];
static unsigned char mt[400][1000]; /* mt[f][t]: filter f matches topic t */

static void fill(size_t nf, size_t nt, bool aws)
{
    for (size_t i = 0; i < nf; i++)
        for (size_t j = 0; j < nt; j++)
            mt[i][j] = matches(filters[i], topics[j], aws);
}

Test(filter_cover, covers_overlaps_and_join_agree_with_matching_on_every_topic)
{
    size_t nf = all_filters(filters, 400), nt = all_topics(topics, 1000);
    cr_assert_lt(nf, 400);
    cr_assert_lt(nt, 1000);
    for (int aws = 0; aws <= 1; aws++) {
        fill(nf, nt, aws);
        size_t covered = 0, overlapping = 0, missed_covers = 0, extra_overlaps = 0;
        for (size_t g = 0; g < nf; g++) {
            for (size_t f = 0; f < nf; f++) {
                bool sub = true, inter = false;
                for (size_t t = 0; t < nt; t++) {
                    if (mt[f][t] && !mt[g][t])
                        sub = false;
                    if (mt[f][t] && mt[g][t])
                        inter = true;
                }
                bool c = covers(filters[g], filters[f], aws);
                /* never claims wrongly; and finds every cover the universe shows */
                cr_assert(!c || sub, "%s covers %s? (aws %d)", filters[g], filters[f], aws);
                covered += c;
                missed_covers += !c && sub;
                /* never misses an overlap; may see one only through the empty
                 * topic name, which no message has ("+" and "/#") */
                bool o = overlaps(filters[g], filters[f], aws);
                cr_assert(o || !inter, "%s and %s overlap (aws %d)", filters[g], filters[f], aws);
                overlapping += o;
                extra_overlaps += o && !inter;
                if (o) {
                    const char *j = join(filters[g], filters[f], aws);
                    cr_assert_eq(ciot_topic_filter_check(j, strlen(j)), 0, "join %s", j);
                    for (size_t t = 0; t < nt; t++) {
                        if (mt[g][t] || mt[f][t])
                            cr_assert(matches(j, topics[t], aws), "join(%s, %s) = %s misses %s",
                                      filters[g], filters[f], j, topics[t]);
                    }
                }
            }
        }
        cr_assert_gt(covered, nf);
        cr_assert_gt(overlapping, covered);
        /* the conservative answers are rare */
        cr_assert_lt(missed_covers * 50, covered, "%zu covers missed of %zu", missed_covers, covered);
        cr_assert_lt(extra_overlaps * 50, overlapping, "%zu extra overlaps of %zu", extra_overlaps,
                     overlapping);
    }
}

static uint32_t next_rand(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

Test(filter_cover, a_cover_matches_every_topic_its_inputs_match_exactly_once)
{
    size_t nf = all_filters(filters, 400), nt = all_topics(topics, 1000);
    uint32_t seed = 12345;
    for (int round = 0; round < 400; round++) {
        bool aws = round & 1;
        ciot__filter in[8];
        size_t n = 1 + (size_t)(next_rand(&seed) % 8);
        for (size_t i = 0; i < n; i++) {
            size_t k = (size_t)next_rand(&seed) % nf;
            in[i] = (ciot__filter){filters[k], strlen(filters[k])};
        }
        ciot__filter *out;
        size_t m;
        cr_assert_eq(ciot__filter_cover(&out, &m, in, n, aws), 0);
        cr_assert_geq(m, 1);
        cr_assert_leq(m, n);
        for (size_t i = 1; i < m; i++)
            cr_assert_lt(ciot__filter_cmp(&out[i - 1], &out[i]), 0, "sorted, distinct");
        for (size_t t = 0; t < nt; t++) {
            bool wanted = false;
            for (size_t i = 0; i < n; i++)
                wanted |= matches(in[i].s, topics[t], aws);
            int hits = 0;
            for (size_t i = 0; i < m; i++)
                hits += matches(out[i].s, topics[t], aws);
            cr_assert(hits <= 1, "round %d: %s matched %d subscriptions", round, topics[t], hits);
            cr_assert(!wanted || hits == 1, "round %d: %s lost", round, topics[t]);
        }
        /* the same set in another order gives the same cover */
        ciot__filter rev[8];
        for (size_t i = 0; i < n; i++)
            rev[i] = in[n - 1 - i];
        ciot__filter *out2;
        size_t m2;
        cr_assert_eq(ciot__filter_cover(&out2, &m2, rev, n, aws), 0);
        cr_assert_eq(m2, m);
        for (size_t i = 0; i < m; i++)
            cr_assert_str_eq(out2[i].s, out[i].s);
        ciot__filters_free(out, m);
        ciot__filters_free(out2, m2);
    }
}
