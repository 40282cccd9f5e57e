/*
 * Deterministic generators of topic names and filters for the topic tests.
 * Header-only (static functions) so each test program has its own copy.
 */
#ifndef CIOT_TEST_TOPIC_GEN_H
#define CIOT_TEST_TOPIC_GEN_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* CIOT_TEST_SCALE (float, default 1.0) multiplies the iteration counts. */
static inline long tg_scaled(long n)
{
    const char *s = getenv("CIOT_TEST_SCALE");
    double f = s ? atof(s) : 1.0;
    if (!(f > 0))
        f = 1.0;
    long r = (long)((double)n * f);
    return r < 1 ? 1 : r;
}

/* xorshift64*: small, fast, deterministic */
typedef struct tg_rng {
    uint64_t s;
} tg_rng;

static inline uint64_t tg_next(tg_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1Dull;
}

static inline uint32_t tg_below(tg_rng *r, uint32_t n)
{
    return (uint32_t)((tg_next(r) >> 32) % n);
}

/* Kinds of level text, so a test knows what went into a string. */
enum {
    TG_PLAIN = 0,
    TG_CTRL = 1,     /* U+0001..U+001F, U+007F..U+009F (valid; refused in strict mode) */
    TG_NONCHAR = 2,  /* Unicode non-character (valid; refused in strict mode) */
    TG_BADUTF8 = 4,  /* ill-formed UTF-8 */
};

typedef struct tg_level {
    const char *s;
    int kind;
} tg_level;

/* Ordinary level texts (valid in names and filters). */
static const tg_level tg_plain_levels[] = {
    {"a", 0}, {"b", 0}, {"c", 0}, {"sport", 0}, {"tennis", 0}, {"player1", 0},
    {"", 0}, {"", 0}, {"$SYS", 0}, {"$aws", 0}, {"$", 0}, {"a$", 0},
    {"temperature", 0}, {"devicebound", 0}, {"factory-line-0001", 0},
    {"sensors", 0}, {"things", 0}, {"shadow", 0}, {"update", 0}, {"delta", 0},
    {"%24.mid=1&k=v&$.ct=application%2Fjson", 0}, {"A", 0}, {" ", 0},
    {"\xc3\xa9", 0},                 /* é */
    {"\xe6\x97\xa5\xe6\x9c\xac", 0}, /* 日本 */
    {"\xf0\x9f\x98\x80", 0},         /* 😀 */
    {"caf\xc3\xa9-12345678", 0},
    {"\xef\xbb\xbf" "bom", 0},       /* leading U+FEFF is an ordinary char */
    {"x\x01y", TG_CTRL}, {"\x7f", TG_CTRL}, {"\x1f" "abcdefgh", TG_CTRL},
    {"\xc2\x85", TG_CTRL},           /* U+0085 */
    {"\xef\xbf\xbe", TG_NONCHAR},    /* U+FFFE */
    {"\xef\xb7\x90", TG_NONCHAR},    /* U+FDD0 */
    {"\xf4\x8f\xbf\xbf", TG_NONCHAR},/* U+10FFFF */
    {"\xf0\x9f\xbf\xbe", TG_NONCHAR},/* U+1FFFE */
    {"\xc0\xaf", TG_BADUTF8},        /* overlong '/' */
    {"\xed\xa0\x80", TG_BADUTF8},    /* surrogate */
    {"\xf4\x90\x80\x80", TG_BADUTF8},/* > U+10FFFF */
    {"ab\xe2\x82", TG_BADUTF8},      /* truncated */
    {"\x80", TG_BADUTF8},            /* stray continuation */
    {"\xf8\x88\x80\x80\x80", TG_BADUTF8},
    {"\xe0\x80\xaf", TG_BADUTF8},    /* overlong 3-byte */
};

/* Level texts that are wildcards or misuse them. */
static const char *const tg_wild_levels[] = {"+", "+", "#", "#", "a+", "+a", "#a", "a#", "++", "x+y"};

#define TG_NELEM(a) (sizeof(a) / sizeof((a)[0]))

typedef struct tg_str {
    char buf[512];
    size_t len;
    int kinds;
} tg_str;

static inline void tg_append(tg_str *s, const char *p, size_t n)
{
    if (s->len + n <= sizeof s->buf) {
        memcpy(s->buf + s->len, p, n);
        s->len += n;
    }
}

/* A random name: 1..9 levels of the pools above, mostly plain. */
static inline void tg_name(tg_rng *r, tg_str *s, int allow_kinds)
{
    s->len = 0;
    s->kinds = 0;
    uint32_t levels = 1 + tg_below(r, 9);
    for (uint32_t i = 0; i < levels; i++) {
        if (i)
            tg_append(s, "/", 1);
        const tg_level *l;
        do {
            l = &tg_plain_levels[tg_below(r, (uint32_t)TG_NELEM(tg_plain_levels))];
        } while ((l->kind & ~allow_kinds) || (i > 0 && l->s[0] == '$' && tg_below(r, 2)));
        if (l->kind && tg_below(r, 4))
            l = &tg_plain_levels[0];
        s->kinds |= l->kind;
        tg_append(s, l->s, strlen(l->s));
    }
}

/*
 * A filter derived from name t (so that about half the pairs match): levels
 * kept, replaced by '+', cut and ended by '#', mutated, or with wildcard
 * misuse mixed in.
 */
static inline void tg_filter_from(tg_rng *r, tg_str *f, const tg_str *t, int allow_kinds)
{
    f->len = 0;
    f->kinds = 0;
    size_t i = 0, level = 0;
    uint32_t mode_wild = tg_below(r, 8) == 0; /* sometimes sprinkle misuse */
    for (;;) {
        size_t e = i;
        while (e < t->len && t->buf[e] != '/')
            e++;
        if (level)
            tg_append(f, "/", 1);
        uint32_t c = tg_below(r, 16);
        if (c < 3) {
            tg_append(f, "+", 1);
        } else if (c == 3) {
            tg_append(f, "#", 1);
            if (tg_below(r, 4)) /* mostly valid: '#' ends the filter */
                return;
        } else if (c == 4) {
            const tg_level *l = &tg_plain_levels[tg_below(r, (uint32_t)TG_NELEM(tg_plain_levels))];
            if (l->kind & ~allow_kinds)
                l = &tg_plain_levels[1];
            f->kinds |= l->kind;
            tg_append(f, l->s, strlen(l->s));
        } else if (c == 5 && mode_wild) {
            const char *w = tg_wild_levels[tg_below(r, (uint32_t)TG_NELEM(tg_wild_levels))];
            tg_append(f, w, strlen(w));
        } else {
            tg_append(f, t->buf + i, e - i);
        }
        level++;
        if (e >= t->len)
            break;
        i = e + 1;
    }
    f->kinds |= t->kinds;
    uint32_t tail = tg_below(r, 8);
    if (tail == 0)
        tg_append(f, "/#", 2);
    else if (tail == 1)
        tg_append(f, "/+", 2);
    else if (tail == 2)
        tg_append(f, "/x", 2);
}

#endif /* CIOT_TEST_TOPIC_GEN_H */
