/* Topic filters against each other (see filter_cover.h). */
#include "core/filter_cover.h"

#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* One level at a time. */
typedef struct lv_iter {
    const char *s;
    size_t len, pos;
    bool done;
} lv_iter;

typedef struct lv {
    const char *p;
    size_t n;
} lv;

static bool next_level(lv_iter *it, lv *out)
{
    if (it->done)
        return false;
    size_t start = it->pos;
    const char *slash = it->pos < it->len ? memchr(it->s + it->pos, '/', it->len - it->pos) : NULL;
    size_t end = slash ? (size_t)(slash - it->s) : it->len;
    out->p = it->s + start;
    out->n = end - start;
    if (slash)
        it->pos = end + 1;
    else
        it->done = true;
    return true;
}

static bool is_hash(lv l)
{
    return l.n == 1 && l.p[0] == '#';
}

static bool is_plus(lv l)
{
    return l.n == 1 && l.p[0] == '+';
}

static bool is_dollar(lv l)
{
    return l.n > 0 && l.p[0] == '$';
}

static bool same(lv a, lv b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

bool ciot__filter_covers(const char *g, size_t gl, const char *f, size_t fl, bool aws)
{
    lv_iter gi = {g, gl, 0, false}, fi = {f, fl, 0, false};
    for (int i = 0;; i++) {
        lv a, b;
        bool has_g = next_level(&gi, &a);
        bool has_f = next_level(&fi, &b);
        if (has_g && is_hash(a)) {
            /* the rest of f; its parent level (f ended) only with MQTT's rule;
             * never a '$' topic from level 0 */
            if (!has_f)
                return !aws;
            return !(i == 0 && is_dollar(b));
        }
        if (!has_g && !has_f)
            return true;
        if (!has_g || !has_f)
            return false;
        if (is_hash(b))
            return false;
        if (is_plus(b)) {
            if (!is_plus(a))
                return false;
        } else if (is_plus(a)) {
            if (i == 0 && is_dollar(b))
                return false;
        } else if (!same(a, b)) {
            return false;
        }
    }
}

bool ciot__filter_overlaps(const char *a, size_t al, const char *b, size_t bl, bool aws)
{
    lv_iter ai = {a, al, 0, false}, bi = {b, bl, 0, false};
    for (int i = 0;; i++) {
        lv x, y;
        bool has_a = next_level(&ai, &x);
        bool has_b = next_level(&bi, &y);
        bool ha = has_a && is_hash(x), hb = has_b && is_hash(y);
        if (ha || hb) {
            if (ha && hb)
                return true;
            /* '#' takes whatever the other has from here; nothing (the
             * other ended) only with MQTT's rule */
            if (ha ? !has_b : !has_a)
                return !aws;
            return !(i == 0 && is_dollar(ha ? y : x));
        }
        if (!has_a && !has_b)
            return true;
        if (!has_a || !has_b)
            return false;
        bool pa = is_plus(x), pb = is_plus(y);
        if (pa && pb)
            continue;
        if (pa || pb) {
            if (i == 0 && is_dollar(pa ? y : x))
                return false;
            continue;
        }
        if (!same(x, y))
            return false;
    }
}

size_t ciot__filter_join(char *out, const char *a, size_t al, const char *b, size_t bl, bool aws)
{
    lv_iter ai = {a, al, 0, false}, bi = {b, bl, 0, false};
    size_t n = 0, last = 0; /* last: where the last level written starts */
    for (int i = 0;; i++) {
        lv x, y;
        bool has_a = next_level(&ai, &x);
        bool has_b = next_level(&bi, &y);
        if (!has_a && !has_b)
            break;
        /* One ended: AWS's '#' needs a level, so it replaces the last shared
         * one (but not a '$' level 0, which '#' would not match) */
        if (has_a != has_b && aws && i > 0 && !(i == 1 && n > 0 && out[0] == '$')) {
            n = last;
            out[n++] = '#';
            break;
        }
        if (i > 0)
            out[n++] = '/';
        last = n;
        if (!has_a || !has_b || is_hash(x) || is_hash(y)) {
            out[n++] = '#';
            break;
        }
        if (same(x, y)) {
            memcpy(out + n, x.p, x.n);
            n += x.n;
        } else {
            out[n++] = '+';
        }
    }
    out[n] = '\0';
    return n;
}

int ciot__filter_cmp(const ciot__filter *a, const ciot__filter *b)
{
    size_t m = a->len < b->len ? a->len : b->len;
    int c = m ? memcmp(a->s, b->s, m) : 0;
    if (c)
        return c;
    return a->len < b->len ? -1 : a->len > b->len ? 1 : 0;
}

static int cmp_filters(const void *x, const void *y)
{
    return ciot__filter_cmp((const ciot__filter *)x, (const ciot__filter *)y);
}

void ciot__filters_free(ciot__filter *v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        ciot__free(v[i].s);
    ciot__free(v);
}

static char *dup_filter(const char *s, size_t n)
{
    char *p = ciot__malloc(n + 1);
    if (p) {
        if (n)
            memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

int ciot__filter_cover(ciot__filter **out, size_t *out_n, const ciot__filter *v, size_t n,
                       bool aws)
{
    *out = NULL;
    *out_n = 0;
    if (n == 0)
        return 0;
    /* The inputs in order, so that the result does not depend on theirs. */
    ciot__filter *in = ciot__malloc(n * sizeof *in);
    ciot__filter *set = ciot__calloc(n, sizeof *set);
    if (!in || !set) {
        ciot__free(in);
        ciot__free(set);
        return CIOT_ENOMEM;
    }
    memcpy(in, v, n * sizeof *in);
    qsort(in, n, sizeof *in, cmp_filters);
    size_t m = 0; /* set[0..m): no two overlap; at most one per input */
    for (size_t k = 0; k < n; k++) {
        if (k > 0 && ciot__filter_cmp(&in[k], &in[k - 1]) == 0)
            continue;
        ciot__filter cur = {dup_filter(in[k].s, in[k].len), in[k].len};
        if (!cur.s)
            goto nomem;
    again:
        for (size_t j = 0; j < m; j++) {
            if (ciot__filter_covers(set[j].s, set[j].len, cur.s, cur.len, aws)) {
                ciot__free(cur.s);
                cur.s = NULL;
                break;
            }
        }
        if (!cur.s)
            continue;
        for (size_t j = 0; j < m;) {
            if (ciot__filter_covers(cur.s, cur.len, set[j].s, set[j].len, aws)) {
                ciot__free(set[j].s);
                set[j] = set[--m];
            } else {
                j++;
            }
        }
        for (size_t j = 0; j < m; j++) {
            if (ciot__filter_overlaps(cur.s, cur.len, set[j].s, set[j].len, aws)) {
                char *joined = ciot__malloc(cur.len + set[j].len + 2);
                if (!joined) {
                    ciot__free(cur.s);
                    goto nomem;
                }
                size_t jl = ciot__filter_join(joined, cur.s, cur.len, set[j].s, set[j].len, aws);
                ciot__free(cur.s);
                ciot__free(set[j].s);
                set[j] = set[--m];
                cur.s = joined;
                cur.len = jl;
                goto again;
            }
        }
        set[m++] = cur;
    }
    ciot__free(in);
    qsort(set, m, sizeof *set, cmp_filters);
    *out = set;
    *out_n = m;
    return 0;
nomem:
    ciot__free(in);
    ciot__filters_free(set, m);
    return CIOT_ENOMEM;
}
