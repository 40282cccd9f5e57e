/*
 * On-demand JSON reader: validating scans over the caller's bytes, no tree,
 * no allocation, no recursion (nesting is tracked in a bit stack, one bit
 * per level: object or array).
 *
 * Every loop checks its position against the end before reading, so no
 * function reads outside the bytes it was given, whatever they contain.
 */
#include "core/json_check.h"
#include "internal.h"

#include <cloudiot/json.h>

#include <errno.h>
#include <float.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned char uc;

#if defined(__GNUC__) || defined(__clang__)
#define CIOT__ALWAYS_INLINE __attribute__((always_inline))
#else
#define CIOT__ALWAYS_INLINE
#endif

/* Bytes that stand for themselves inside a string with no further check:
 * printable ASCII other than '"' and '\\'. Control characters, quote,
 * backslash and every byte >= 0x80 take the slow path. */
#define R0_ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
#define R1_ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
static const uc str_plain[256] = {
    R0_, R0_,                                        /* 0x00..0x1f control characters */
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x20..0x2f, '"' = 0x22 */
    R1_, R1_,                                        /* 0x30..0x4f */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, /* 0x50..0x5f, '\\' = 0x5c */
    R1_, R1_,                                        /* 0x60..0x7f */
    R0_, R0_, R0_, R0_, R0_, R0_, R0_, R0_,          /* 0x80..0xff */
};
#undef R0_
#undef R1_

CIOT__STATIC_ASSERT(CIOT_JSON_READER_MAX_DEPTH % 64 == 0, "the nesting bit stack holds whole words");
CIOT__STATIC_ASSERT(sizeof(ciot_json_iter) >= 4 * sizeof(void *), "iterator storage");

enum { STEP_END = 0, STEP_KEY = 1, STEP_INDEX = 2 };

/* One step of a path: a member name (possibly with path escapes) or an index. */
struct step {
    int kind;
    const uc *key;
    size_t key_len;
    bool key_esc; /* key contains path escapes ('\' + one of . [ ] \) */
    size_t index;
};

static inline bool is_digit(uc c)
{
    return (unsigned)(c - '0') < 10u;
}

static inline const uc *skip_ws(const uc *p, const uc *end)
{
    /* one comparison for the usual case, a byte above ' ' */
    while (p < end && *p <= ' ' && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define CIOT__SWAR 1
/* Word-at-a-time string scan: the 8 bytes at p, with the high bit of each
 * byte that is not plain (below 0x20, '"', '\\', or >= 0x80) set in the
 * result. Uses the "has zero byte" test (v - 0x01..) & ~v & 0x80..: it
 * never misses a zero byte, and a false hit only appears above a true one,
 * so the lowest set bit always marks the first byte that is not plain. */
static inline uint64_t nonplain8(const uc *p)
{
    const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
    uint64_t x, q, b;
    memcpy(&x, p, 8);
    q = x ^ (ones * '"');
    b = x ^ (ones * '\\');
    return (((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b) | x) & high;
}
#endif

static int hex4(const uc *p, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], d;
        if (c - '0' < 10u) {
            d = c - '0';
        } else {
            c |= 0x20u;
            if (c - 'a' < 6u)
                d = c - 'a' + 10;
            else
                return -1;
        }
        v = (v << 4) | d;
    }
    *out = v;
    return 0;
}

/* p points at a backslash. Decodes one escape (a surrogate pair counts as
 * one) into *cp; returns the position after it, or NULL if it is invalid. */
static const uc *decode_escape(const uc *p, const uc *end, uint32_t *cp)
{
    if (end - p < 2)
        return NULL;
    switch (p[1]) {
    case '"': *cp = '"'; return p + 2;
    case '\\': *cp = '\\'; return p + 2;
    case '/': *cp = '/'; return p + 2;
    case 'b': *cp = '\b'; return p + 2;
    case 'f': *cp = '\f'; return p + 2;
    case 'n': *cp = '\n'; return p + 2;
    case 'r': *cp = '\r'; return p + 2;
    case 't': *cp = '\t'; return p + 2;
    case 'u': {
        uint32_t u, lo;
        if (end - p < 6 || hex4(p + 2, &u) != 0)
            return NULL;
        if (u >= 0xD800 && u <= 0xDBFF) {
            if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || hex4(p + 8, &lo) != 0 ||
                lo < 0xDC00 || lo > 0xDFFF)
                return NULL;
            *cp = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            return p + 12;
        }
        if (u >= 0xDC00 && u <= 0xDFFF)
            return NULL;
        *cp = u;
        return p + 6;
    }
    default:
        return NULL;
    }
}

/* Length of the valid multi-byte UTF-8 sequence at p (p < end, *p >= 0x80),
 * or 0 if it is not one (Unicode table 3-7: no overlongs, no surrogates,
 * nothing above U+10FFFF). */
static size_t utf8_seq(const uc *p, const uc *end)
{
    uc c = p[0];
    size_t avail = (size_t)(end - p);
    if (c < 0xC2)
        return 0;
    if (c < 0xE0)
        return (avail >= 2 && (p[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c < 0xF0) {
        uc lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        if (avail < 3 || p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80)
            return 0;
        return 3;
    }
    if (c < 0xF5) {
        uc lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        if (avail < 4 || p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80 ||
            (p[3] & 0xC0) != 0x80)
            return 0;
        return 4;
    }
    return 0;
}

/* p points at the opening quote. Returns the position after the closing
 * quote, or NULL if the string is malformed; sets *esc if it has escapes. */
static inline CIOT__ALWAYS_INLINE const uc *scan_string(const uc *p, const uc *end, bool *esc)
{
    p++;
    for (;;) {
#ifdef CIOT__SWAR
        while (end - p >= 8) {
            uint64_t t = nonplain8(p);
            if (t != 0) {
                p += __builtin_ctzll(t) >> 3;
                goto special;
            }
            p += 8;
        }
#endif
        while (p < end && str_plain[*p])
            p++;
        if (p >= end)
            return NULL;
#ifdef CIOT__SWAR
    special:;
#endif
        uc c = *p;
        if (c == '"')
            return p + 1;
        if (c == '\\') {
            uint32_t cp;
            p = decode_escape(p, end, &cp);
            if (p == NULL)
                return NULL;
            *esc = true;
        } else if (c < 0x20) {
            return NULL;
        } else {
            size_t n = utf8_seq(p, end);
            if (n == 0)
                return NULL;
            p += n;
        }
    }
}

/* p points at '-' or a digit. Returns the position after the number, or
 * NULL if it does not follow the RFC 8259 grammar. */
static const uc *scan_number(const uc *p, const uc *end)
{
    if (*p == '-') {
        p++;
        if (p >= end)
            return NULL;
    }
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        p++;
        while (p < end && is_digit(*p))
            p++;
    } else {
        return NULL;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !is_digit(*p))
            return NULL;
        while (p < end && is_digit(*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || !is_digit(*p))
            return NULL;
        while (p < end && is_digit(*p))
            p++;
    }
    return p;
}

/*
 * Scans and validates one value starting at *pp (no leading whitespace).
 * Containers may open at most maxdepth levels (maxdepth <= MAX_DEPTH).
 * On success *pp is just past the value and *out_type is its type.
 */
static int skip_value(const uc **pp, const uc *end, unsigned maxdepth, int *out_type,
                      unsigned *out_deepest)
{
    uint64_t stack[CIOT_JSON_READER_MAX_DEPTH / 64] = {0}; /* bit set: object */
    unsigned depth = 0, deepest = 0;
    const uc *p = *pp;
    bool esc;
    int type;

value:
    if (p >= end)
        return CIOT_EINVAL;
    switch (*p) {
    case '"':
        p = scan_string(p, end, &esc);
        if (p == NULL)
            return CIOT_EINVAL;
        type = CIOT_JSON_STRING;
        break;
    case '{':
        if (depth >= maxdepth)
            return CIOT_EDEPTH;
        stack[depth >> 6] |= (uint64_t)1 << (depth & 63);
        depth++;
        deepest = depth > deepest ? depth : deepest;
        p = skip_ws(p + 1, end);
        if (p < end && *p == '}') {
            p++;
            depth--;
            type = CIOT_JSON_OBJECT;
            break;
        }
        goto key;
    case '[':
        if (depth >= maxdepth)
            return CIOT_EDEPTH;
        stack[depth >> 6] &= ~((uint64_t)1 << (depth & 63));
        depth++;
        deepest = depth > deepest ? depth : deepest;
        p = skip_ws(p + 1, end);
        if (p < end && *p == ']') {
            p++;
            depth--;
            type = CIOT_JSON_ARRAY;
            break;
        }
        goto value;
    case 't':
        if (end - p < 4 || memcmp(p, "true", 4) != 0)
            return CIOT_EINVAL;
        p += 4;
        type = CIOT_JSON_TRUE;
        break;
    case 'f':
        if (end - p < 5 || memcmp(p, "false", 5) != 0)
            return CIOT_EINVAL;
        p += 5;
        type = CIOT_JSON_FALSE;
        break;
    case 'n':
        if (end - p < 4 || memcmp(p, "null", 4) != 0)
            return CIOT_EINVAL;
        p += 4;
        type = CIOT_JSON_NULL;
        break;
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        p = scan_number(p, end);
        if (p == NULL)
            return CIOT_EINVAL;
        type = CIOT_JSON_NUMBER;
        break;
    default:
        return CIOT_EINVAL;
    }
    /* After a value: close containers or go on to the next item. */
    for (;;) {
        if (depth == 0) {
            *pp = p;
            *out_type = type;
            if (out_deepest)
                *out_deepest = deepest;
            return 0;
        }
        p = skip_ws(p, end);
        if (p >= end)
            return CIOT_EINVAL;
        unsigned d = depth - 1;
        bool obj = (stack[d >> 6] >> (d & 63)) & 1;
        if (*p == ',') {
            p = skip_ws(p + 1, end);
            if (obj)
                goto key;
            goto value;
        }
        if (*p != (obj ? '}' : ']'))
            return CIOT_EINVAL;
        p++;
        depth--;
        type = obj ? CIOT_JSON_OBJECT : CIOT_JSON_ARRAY;
    }
key:
    if (p >= end || *p != '"')
        return CIOT_EINVAL;
    p = scan_string(p, end, &esc);
    if (p == NULL)
        return CIOT_EINVAL;
    p = skip_ws(p, end);
    if (p >= end || *p != ':')
        return CIOT_EINVAL;
    p = skip_ws(p + 1, end);
    goto value;
}

/* skip_value with the two commonest members, strings and numbers, inline. */
static inline int skip_scalar_or_value(const uc **pp, const uc *end, unsigned maxdepth,
                                       int *out_type)
{
    const uc *p = *pp;
    if (p < end) {
        bool esc;
        if (*p == '"') {
            p = scan_string(p, end, &esc);
            if (p == NULL)
                return CIOT_EINVAL;
            *pp = p;
            *out_type = CIOT_JSON_STRING;
            return 0;
        }
        if (is_digit(*p) || *p == '-') {
            p = scan_number(p, end);
            if (p == NULL)
                return CIOT_EINVAL;
            *pp = p;
            *out_type = CIOT_JSON_NUMBER;
            return 0;
        }
    }
    return skip_value(pp, end, maxdepth, out_type, NULL);
}

/* Where decoded string bytes go: into a buffer, or compared with bytes. */
struct sink {
    char *buf;
    size_t cap;
    size_t n; /* bytes produced so far */
    const uc *cmp, *cmp_end;
    bool cmp_esc; /* the bytes compared with carry path escapes */
    bool neq;
};

static void sink_put(struct sink *s, const uc *src, size_t k)
{
    if (s->cmp != NULL) {
        if (s->neq)
            return;
        if (!s->cmp_esc) {
            if ((size_t)(s->cmp_end - s->cmp) < k || memcmp(s->cmp, src, k) != 0)
                s->neq = true;
            else
                s->cmp += k;
            return;
        }
        for (size_t i = 0; i < k; i++) {
            if (s->cmp == s->cmp_end) {
                s->neq = true;
                return;
            }
            if (*s->cmp == '\\') /* validated: always followed by one byte */
                s->cmp++;
            if (*s->cmp != src[i]) {
                s->neq = true;
                return;
            }
            s->cmp++;
        }
        return;
    }
    if (s->n <= s->cap && k <= s->cap - s->n)
        memcpy(s->buf + s->n, src, k);
    s->n += k;
}

static size_t utf8_encode(uint32_t cp, uc out[4])
{
    if (cp < 0x80) {
        out[0] = (uc)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uc)(0xC0 | (cp >> 6));
        out[1] = (uc)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uc)(0xE0 | (cp >> 12));
        out[1] = (uc)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uc)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uc)(0xF0 | (cp >> 18));
    out[1] = (uc)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uc)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uc)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decodes the string contents [p, end) (between the quotes) into s,
 * validating them: no unescaped quote, no control character, valid
 * escapes and UTF-8. */
static int decode_string(const uc *p, const uc *end, struct sink *s)
{
    while (p < end) {
        const uc *run = p;
        while (p < end && str_plain[*p])
            p++;
        if (p > run)
            sink_put(s, run, (size_t)(p - run));
        if (p == end)
            break;
        uc c = *p;
        if (c == '\\') {
            uint32_t cp;
            uc tmp[4];
            p = decode_escape(p, end, &cp);
            if (p == NULL)
                return CIOT_EINVAL;
            sink_put(s, tmp, utf8_encode(cp, tmp));
        } else if (c == '"' || c < 0x20) {
            return CIOT_EINVAL;
        } else {
            size_t n = utf8_seq(p, end);
            if (n == 0)
                return CIOT_EINVAL;
            sink_put(s, p, n);
            p += n;
        }
    }
    return 0;
}

/* Does the member name [k, k + klen) (raw, between the quotes, already
 * validated; esc if it has escapes) equal the key of step st? */
static bool key_equals(const uc *k, size_t klen, bool esc, const struct step *st)
{
    if (!esc && !st->key_esc)
        return klen == st->key_len && (klen == 0 || memcmp(k, st->key, klen) == 0);
    const uc *c = st->key_len ? st->key : (const uc *)""; /* non-NULL: compare mode */
    struct sink s = {NULL, 0, 0, c, c + st->key_len, st->key_esc, false};
    if (decode_string(k, k + klen, &s) != 0)
        return false;
    return !s.neq && s.cmp == s.cmp_end;
}

/*
 * p points at '{' or '['; the container is at nesting level depth (1 for
 * the outermost). Scans and validates it to its end, setting *pp past it,
 * and records in *hit the member matching st (the last one for objects).
 * With stop_early, returns as soon as the array element is found (for
 * text already validated); *pp is then not set.
 */
static int scan_container(const uc **pp, const uc *end, unsigned depth, const struct step *st,
                          bool stop_early, ciot_json_value *hit, bool *found)
{
    const uc *p = *pp;
    unsigned inner = CIOT_JSON_READER_MAX_DEPTH - depth;
    int rc, t;
    if (*p == '{') {
        p = skip_ws(p + 1, end);
        if (p < end && *p == '}') {
            *pp = p + 1;
            return 0;
        }
        for (;;) {
            if (p >= end || *p != '"')
                return CIOT_EINVAL;
            const uc *ks = p + 1;
            bool esc = false;
            p = scan_string(p, end, &esc);
            if (p == NULL)
                return CIOT_EINVAL;
            size_t klen = (size_t)(p - 1 - ks);
            p = skip_ws(p, end);
            if (p >= end || *p != ':')
                return CIOT_EINVAL;
            p = skip_ws(p + 1, end);
            const uc *vs = p;
            rc = skip_scalar_or_value(&p, end, inner, &t);
            if (rc != 0)
                return rc;
            if (st->kind == STEP_KEY && key_equals(ks, klen, esc, st)) {
                hit->type = t;
                hit->ptr = (const char *)vs;
                hit->len = (size_t)(p - vs);
                *found = true;
            }
            p = skip_ws(p, end);
            if (p >= end)
                return CIOT_EINVAL;
            if (*p == '}') {
                *pp = p + 1;
                return 0;
            }
            if (*p != ',')
                return CIOT_EINVAL;
            p = skip_ws(p + 1, end);
        }
    }
    /* '[' */
    p = skip_ws(p + 1, end);
    if (p < end && *p == ']') {
        *pp = p + 1;
        return 0;
    }
    for (size_t i = 0;; i++) {
        const uc *vs = p;
        rc = skip_scalar_or_value(&p, end, inner, &t);
        if (rc != 0)
            return rc;
        if (st->kind == STEP_INDEX && i == st->index) {
            hit->type = t;
            hit->ptr = (const char *)vs;
            hit->len = (size_t)(p - vs);
            *found = true;
            if (stop_early)
                return 0;
        }
        p = skip_ws(p, end);
        if (p >= end)
            return CIOT_EINVAL;
        if (*p == ']') {
            *pp = p + 1;
            return 0;
        }
        if (*p != ',')
            return CIOT_EINVAL;
        p = skip_ws(p + 1, end);
    }
}

/* Parses the path step at path[*pos] (first: the path's first step, which
 * has no leading dot). Sets st->kind to STEP_END at the end of the path. */
static int next_step(const uc *path, size_t len, size_t *pos, bool first, struct step *st)
{
    size_t i = *pos;
    if (i == len) {
        st->kind = STEP_END;
        return 0;
    }
    if (path[i] == '[') {
        i++;
        if (i >= len || !is_digit(path[i]))
            return CIOT_EINVAL;
        if (path[i] == '0' && i + 1 < len && is_digit(path[i + 1]))
            return CIOT_EINVAL; /* leading zero */
        size_t v = 0;
        for (; i < len && is_digit(path[i]); i++) {
            size_t d = (size_t)(path[i] - '0');
            /* An index beyond SIZE_MAX cannot exist: saturate, never matches. */
            v = v > (SIZE_MAX - d) / 10 ? SIZE_MAX : v * 10 + d;
        }
        if (i >= len || path[i] != ']')
            return CIOT_EINVAL;
        i++;
        if (i < len && path[i] != '.' && path[i] != '[')
            return CIOT_EINVAL;
        st->kind = STEP_INDEX;
        st->index = v;
    } else {
        if (!first) {
            if (path[i] != '.')
                return CIOT_EINVAL;
            i++;
        }
        size_t start = i;
        bool esc = false;
        while (i < len && path[i] != '.' && path[i] != '[') {
            if (path[i] == '\\') {
                if (i + 1 >= len ||
                    (path[i + 1] != '.' && path[i + 1] != '[' && path[i + 1] != ']' &&
                     path[i + 1] != '\\'))
                    return CIOT_EINVAL;
                esc = true;
                i += 2;
            } else {
                i++;
            }
        }
        if (i == start)
            return CIOT_EINVAL; /* empty key */
        st->kind = STEP_KEY;
        st->key = path + start;
        st->key_len = i - start;
        st->key_esc = esc;
    }
    *pos = i;
    return 0;
}

static bool step_fits(const struct step *st, int type)
{
    return (st->kind == STEP_KEY && type == CIOT_JSON_OBJECT) ||
           (st->kind == STEP_INDEX && type == CIOT_JSON_ARRAY);
}

CIOT_API int ciot_json_validate(const char *json, size_t len)
{
    if (json == NULL || len == 0)
        return CIOT_EINVAL;
    const uc *p = (const uc *)json, *end = p + len;
    int t;
    p = skip_ws(p, end);
    int rc = skip_value(&p, end, CIOT_JSON_READER_MAX_DEPTH, &t, NULL);
    if (rc != 0)
        return rc;
    return skip_ws(p, end) == end ? 0 : CIOT_EINVAL;
}

int ciot__json_check(const char *json, size_t len, unsigned max_depth, unsigned *out_depth)
{
    if (json == NULL && len != 0)
        return CIOT_EINVAL;
    if (max_depth > CIOT_JSON_READER_MAX_DEPTH)
        max_depth = CIOT_JSON_READER_MAX_DEPTH;
    const uc *p = (const uc *)json, *end = p + len;
    int t;
    unsigned deepest = 0;
    p = skip_ws(p, end);
    int rc = skip_value(&p, end, max_depth, &t, &deepest);
    if (rc != 0)
        return rc;
    if (skip_ws(p, end) != end)
        return CIOT_EINVAL;
    if (out_depth)
        *out_depth = deepest;
    return 0;
}

int ciot__json_scan_root(const char *json, size_t len, ciot_json_value *out_root,
                         ciot__json_member *mem, size_t cap, size_t *out_count)
{
    if (out_root == NULL || out_count == NULL || json == NULL || len == 0 || (mem == NULL && cap))
        return CIOT_EINVAL;
    *out_count = 0;
    const uc *p = (const uc *)json, *end = p + len;
    p = skip_ws(p, end);
    const uc *root = p;
    int rc, t;
    size_t count = 0;
    if (p < end && *p == '{') {
        /* scan_container's object loop, recording the members */
        unsigned inner = CIOT_JSON_READER_MAX_DEPTH - 1;
        p = skip_ws(p + 1, end);
        if (p < end && *p == '}') {
            p++;
        } else {
            for (;;) {
                if (p >= end || *p != '"')
                    return CIOT_EINVAL;
                const uc *ks = p;
                bool esc = false;
                p = scan_string(p, end, &esc);
                if (p == NULL)
                    return CIOT_EINVAL;
                const uc *ke = p;
                p = skip_ws(p, end);
                if (p >= end || *p != ':')
                    return CIOT_EINVAL;
                p = skip_ws(p + 1, end);
                const uc *vs = p;
                rc = skip_scalar_or_value(&p, end, inner, &t);
                if (rc != 0)
                    return rc;
                if (count < cap) {
                    ciot__json_member *m = &mem[count];
                    m->key.type = CIOT_JSON_STRING;
                    m->key.ptr = (const char *)ks;
                    m->key.len = (size_t)(ke - ks);
                    m->key_esc = esc;
                    m->val.type = t;
                    m->val.ptr = (const char *)vs;
                    m->val.len = (size_t)(p - vs);
                }
                count++;
                p = skip_ws(p, end);
                if (p >= end)
                    return CIOT_EINVAL;
                if (*p == '}') {
                    p++;
                    break;
                }
                if (*p != ',')
                    return CIOT_EINVAL;
                p = skip_ws(p + 1, end);
            }
        }
        t = CIOT_JSON_OBJECT;
    } else {
        rc = skip_value(&p, end, CIOT_JSON_READER_MAX_DEPTH, &t, NULL);
        if (rc != 0)
            return rc;
    }
    if (skip_ws(p, end) != end)
        return CIOT_EINVAL;
    out_root->type = t;
    out_root->ptr = (const char *)root;
    out_root->len = (size_t)(p - root);
    *out_count = count;
    return 0;
}

CIOT_API int ciot_json_find(const char *json, size_t json_len, const char *path, size_t path_len,
                            ciot_json_value *out)
{
    if (out == NULL || json == NULL || json_len == 0 || (path == NULL && path_len != 0))
        return CIOT_EINVAL;
    const uc *pa = (const uc *)path;
    struct step st, later;
    size_t pos = 0, after_first;
    int rc;
    /* The path is checked whole first: a bad path is an error whatever the document. */
    rc = next_step(pa, path_len, &pos, true, &st);
    if (rc != 0)
        return rc;
    after_first = pos;
    for (later = st; later.kind != STEP_END;) {
        rc = next_step(pa, path_len, &pos, false, &later);
        if (rc != 0)
            return rc;
    }
    pos = after_first;

    const uc *p = (const uc *)json, *end = p + json_len;
    p = skip_ws(p, end);
    const uc *root = p;
    ciot_json_value hit = {0, NULL, 0};
    bool found = false;
    /* One scan of the root validates the whole document; when the first
     * step applies, the same scan finds the first step's value. */
    if (st.kind != STEP_END && p < end &&
        ((st.kind == STEP_KEY && *p == '{') || (st.kind == STEP_INDEX && *p == '['))) {
        rc = scan_container(&p, end, 1, &st, false, &hit, &found);
    } else {
        int t;
        rc = skip_value(&p, end, CIOT_JSON_READER_MAX_DEPTH, &t, NULL);
        if (rc == 0 && st.kind == STEP_END) {
            hit.type = t;
            hit.ptr = (const char *)root;
            hit.len = (size_t)(p - root);
            found = true;
        }
    }
    if (rc != 0)
        return rc;
    if (skip_ws(p, end) != end)
        return CIOT_EINVAL;
    /* The rest of the path descends through text already validated. */
    for (unsigned depth = 1; found; depth++) {
        if (st.kind != STEP_END)
            (void)next_step(pa, path_len, &pos, false, &st);
        if (st.kind == STEP_END) {
            *out = hit;
            return 0;
        }
        if (!step_fits(&st, hit.type))
            return CIOT_ENOTFOUND;
        const uc *q = (const uc *)hit.ptr;
        found = false;
        rc = scan_container(&q, q + hit.len, depth + 1, &st, true, &hit, &found);
        if (rc != 0)
            return rc;
    }
    return CIOT_ENOTFOUND;
}

/* Checks that a view has the given type and a text that at least starts
 * and ends like it (for containers). */
static int check_view(const ciot_json_value *v, int type)
{
    if (v == NULL || v->ptr == NULL || v->len == 0)
        return CIOT_EINVAL;
    if (v->type != type)
        return CIOT_ETYPE;
    return 0;
}

CIOT_API int ciot_json_get_member(const ciot_json_value *obj, const char *key, size_t key_len,
                                  ciot_json_value *out)
{
    if (out == NULL || (key == NULL && key_len != 0))
        return CIOT_EINVAL;
    int rc = check_view(obj, CIOT_JSON_OBJECT);
    if (rc != 0)
        return rc;
    const uc *p = (const uc *)obj->ptr, *end = p + obj->len;
    if (*p != '{')
        return CIOT_EINVAL;
    struct step st = {STEP_KEY, (const uc *)key, key_len, false, 0};
    ciot_json_value hit;
    bool found = false;
    rc = scan_container(&p, end, 1, &st, false, &hit, &found);
    if (rc != 0)
        return rc;
    if (p != end)
        return CIOT_EINVAL;
    if (!found)
        return CIOT_ENOTFOUND;
    *out = hit;
    return 0;
}

CIOT_API int ciot_json_get_index(const ciot_json_value *arr, size_t index, ciot_json_value *out)
{
    if (out == NULL)
        return CIOT_EINVAL;
    int rc = check_view(arr, CIOT_JSON_ARRAY);
    if (rc != 0)
        return rc;
    const uc *p = (const uc *)arr->ptr, *end = p + arr->len;
    if (*p != '[')
        return CIOT_EINVAL;
    struct step st = {STEP_INDEX, NULL, 0, false, index};
    ciot_json_value hit;
    bool found = false;
    rc = scan_container(&p, end, 1, &st, true, &hit, &found);
    if (rc != 0)
        return rc;
    if (found) {
        *out = hit;
        return 0;
    }
    return p == end ? CIOT_ENOTFOUND : CIOT_EINVAL;
}

/* ---- numbers ---- */

/* A validated number: sign, integer digits, fraction digits, exponent. */
struct num {
    bool neg;
    const uc *is, *fs; /* integer and fraction digits */
    size_t il, fl;     /* their counts (fl may be 0) */
    int64_t e;         /* exponent, saturated to +-1e15 */
};

static int parse_number(const ciot_json_value *v, struct num *n)
{
    int rc = check_view(v, CIOT_JSON_NUMBER);
    if (rc != 0)
        return rc;
    const uc *p = (const uc *)v->ptr, *end = p + v->len;
    if (scan_number(p, end) != end)
        return CIOT_EINVAL;
    n->neg = *p == '-';
    p += n->neg;
    n->is = p;
    while (p < end && is_digit(*p))
        p++;
    n->il = (size_t)(p - n->is);
    n->fs = p;
    n->fl = 0;
    n->e = 0;
    if (p < end && *p == '.') {
        n->fs = ++p;
        while (p < end && is_digit(*p))
            p++;
        n->fl = (size_t)(p - n->fs);
    }
    if (p < end) { /* 'e' or 'E' */
        p++;
        bool eneg = *p == '-';
        if (*p == '+' || *p == '-')
            p++;
        int64_t e = 0;
        for (; p < end; p++)
            if (e < 1000000000000000)
                e = e * 10 + (*p - '0');
        n->e = eneg ? -e : e;
    }
    return 0;
}

static inline uc num_digit(const struct num *n, size_t k)
{
    return k < n->il ? n->is[k] : n->fs[k - n->il];
}

/* The significant digits: [*lead, *lead + *count) of the digit sequence
 * (integer then fraction digits) without leading and trailing zeros, and
 * the power of ten they are scaled by. *count is 0 for a zero. */
static void num_normalize(const struct num *n, size_t *lead, size_t *count, int64_t *exp10)
{
    size_t total = n->il + n->fl, a = 0, b = total;
    while (a < total && num_digit(n, a) == '0')
        a++;
    while (b > a && num_digit(n, b - 1) == '0')
        b--;
    *lead = a;
    *count = b - a;
    /* value = digits[a,b) * 10^(e - fl + (total - b)) */
    *exp10 = n->e - (int64_t)n->fl + (int64_t)(total - b);
}

/* Correct rounding for any input: the significant digits go to strtod in
 * the form DIGITSe<exp>, which has no radix character and so reads the same
 * in every locale. Beyond 780 significant digits only a sticky digit is
 * needed (a halfway point between doubles has at most 767). */
static int num_to_double_slow(const struct num *n, size_t lead, size_t count, int64_t x,
                              double *out)
{
    char buf[800];
    size_t k = 0;
    if (count > 780) {
        for (size_t i = 0; i < 780; i++)
            buf[k++] = (char)num_digit(n, lead + i);
        buf[k++] = '1'; /* the dropped digits end in a non-zero one */
        x += (int64_t)(count - 781);
    } else {
        for (size_t i = 0; i < count; i++)
            buf[k++] = (char)num_digit(n, lead + i);
    }
    /* Exponents this large give infinity or zero either way. */
    if (x > 100000)
        x = 100000;
    if (x < -100000)
        x = -100000;
    buf[k++] = 'e';
    if (x < 0) {
        buf[k++] = '-';
        x = -x;
    }
    char dig[8];
    int nd = 0;
    do {
        dig[nd++] = (char)('0' + x % 10);
        x /= 10;
    } while (x > 0);
    while (nd > 0)
        buf[k++] = dig[--nd];
    buf[k] = '\0';
    int saved = errno;
    char *endp;
    double d = strtod(buf, &endp);
    errno = saved;
    if (endp != buf + k)
        return CIOT_EINVAL; /* cannot happen: the text is digits and an exponent */
    if (d > DBL_MAX)
        return CIOT_ERANGE;
    *out = n->neg ? -d : d;
    return 0;
}

#if FLT_EVAL_METHOD == 0
static const double p10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                               1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                               1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* The common case in one pass: -?(0|[1-9][0-9]*)(.[0-9]+)? with at most 15
 * digits and no exponent, which is exact as m / 10^f (Clinger's fast path:
 * m < 2^53 and 10^f are exact doubles, so one IEEE division rounds
 * correctly). Returns false for anything else, valid or not. */
static bool fast_double(const uc *p, const uc *end, double *out)
{
    bool neg = *p == '-';
    uint64_t m = 0;
    int nd = 0, fd = 0;
    p += neg;
    if (p >= end)
        return false;
    if (*p == '0') {
        p++;
    } else {
        for (; p < end && is_digit(*p) && nd < 16; p++, nd++)
            m = m * 10 + (uint64_t)(*p - '0');
        if (nd == 0)
            return false;
    }
    if (p < end && *p == '.') {
        p++;
        for (; p < end && is_digit(*p) && nd < 16; p++, nd++, fd++)
            m = m * 10 + (uint64_t)(*p - '0');
        if (fd == 0)
            return false;
    }
    if (p != end || nd > 15)
        return false;
    double d = (double)m / p10[fd];
    *out = neg ? -d : d;
    return true;
}
#endif

CIOT_API int ciot_json_get_double(const ciot_json_value *v, double *out)
{
    struct num n;
    if (out == NULL)
        return CIOT_EINVAL;
#if FLT_EVAL_METHOD == 0
    if (v != NULL && v->type == CIOT_JSON_NUMBER && v->ptr != NULL && v->len > 0 &&
        fast_double((const uc *)v->ptr, (const uc *)v->ptr + v->len, out))
        return 0;
#endif
    int rc = parse_number(v, &n);
    if (rc != 0)
        return rc;
    size_t lead, count;
    int64_t x;
    num_normalize(&n, &lead, &count, &x);
    if (count == 0) {
        *out = n.neg ? -0.0 : 0.0;
        return 0;
    }
#if FLT_EVAL_METHOD == 0
    /* Clinger's fast path: a mantissa below 2^53 and a power of ten that a
     * double holds exactly give the correctly rounded result in one IEEE
     * operation. */
    if (count <= 15 && x >= -22 && x <= 22) {
        uint64_t m = 0;
        for (size_t i = 0; i < count; i++)
            m = m * 10 + (uint64_t)(num_digit(&n, lead + i) - '0');
        double d = (double)m;
        d = x < 0 ? d / p10[-x] : d * p10[x];
        *out = n.neg ? -d : d;
        return 0;
    }
#endif
    return num_to_double_slow(&n, lead, count, x, out);
}

CIOT_API int ciot_json_get_int64(const ciot_json_value *v, int64_t *out)
{
    struct num n;
    if (out == NULL)
        return CIOT_EINVAL;
    int rc = parse_number(v, &n);
    if (rc != 0)
        return rc;
    size_t lead, count;
    int64_t x;
    num_normalize(&n, &lead, &count, &x);
    if (count == 0) {
        *out = 0;
        return 0;
    }
    if (x < 0)
        return CIOT_ERANGE; /* a fraction remains */
    if (x > 19 || (int64_t)count + x > 19)
        return CIOT_ERANGE; /* at least 10^19 */
    uint64_t m = 0;
    for (size_t i = 0; i < count; i++)
        m = m * 10 + (uint64_t)(num_digit(&n, lead + i) - '0');
    for (int64_t i = 0; i < x; i++) {
        if (m > UINT64_MAX / 10)
            return CIOT_ERANGE;
        m *= 10;
    }
    if (n.neg) {
        if (m > (uint64_t)INT64_MAX + 1)
            return CIOT_ERANGE;
        *out = m == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)m;
    } else {
        if (m > (uint64_t)INT64_MAX)
            return CIOT_ERANGE;
        *out = (int64_t)m;
    }
    return 0;
}

CIOT_API int ciot_json_get_bool(const ciot_json_value *v, bool *out)
{
    if (out == NULL || v == NULL || v->ptr == NULL)
        return CIOT_EINVAL;
    if (v->type == CIOT_JSON_TRUE) {
        if (v->len != 4 || memcmp(v->ptr, "true", 4) != 0)
            return CIOT_EINVAL;
        *out = true;
        return 0;
    }
    if (v->type == CIOT_JSON_FALSE) {
        if (v->len != 5 || memcmp(v->ptr, "false", 5) != 0)
            return CIOT_EINVAL;
        *out = false;
        return 0;
    }
    return CIOT_ETYPE;
}

/* ---- strings ---- */

static int string_body(const ciot_json_value *v, const uc **b, const uc **e)
{
    int rc = check_view(v, CIOT_JSON_STRING);
    if (rc != 0)
        return rc;
    const uc *p = (const uc *)v->ptr;
    if (v->len < 2 || p[0] != '"' || p[v->len - 1] != '"')
        return CIOT_EINVAL;
    *b = p + 1;
    *e = p + v->len - 1;
    return 0;
}

CIOT_API int ciot_json_get_string(const ciot_json_value *v, char *buf, size_t cap,
                                  size_t *out_len)
{
    const uc *b, *e;
    if (out_len == NULL || (buf == NULL && cap != 0))
        return CIOT_EINVAL;
    int rc = string_body(v, &b, &e);
    if (rc != 0)
        return rc;
    struct sink s = {buf, cap, 0, NULL, NULL, false, false};
    rc = decode_string(b, e, &s);
    if (rc != 0)
        return rc;
    *out_len = s.n;
    if (s.n >= cap) {
        if (cap > 0)
            buf[0] = '\0';
        return CIOT_ENOSPC;
    }
    buf[s.n] = '\0';
    return 0;
}

CIOT_API int ciot_json_string_equal(const ciot_json_value *v, const char *str, size_t len,
                                    bool *out_equal)
{
    const uc *b, *e;
    if (out_equal == NULL || (str == NULL && len != 0))
        return CIOT_EINVAL;
    int rc = string_body(v, &b, &e);
    if (rc != 0)
        return rc;
    const uc *c = len ? (const uc *)str : (const uc *)"";
    struct sink s = {NULL, 0, 0, c, c + len, false, false};
    rc = decode_string(b, e, &s);
    if (rc != 0)
        return rc;
    *out_equal = !s.neq && s.cmp == s.cmp_end;
    return 0;
}

/* ---- iteration ---- */

enum {
    IT_OBJECT = 1u,
    IT_STARTED = 2u,
    IT_DONE = 4u,
    IT_EINVAL = 8u,
    IT_EDEPTH = 16u,
};

CIOT_API int ciot_json_iter_init(ciot_json_iter *it, const ciot_json_value *container)
{
    if (it == NULL || container == NULL || container->ptr == NULL)
        return CIOT_EINVAL;
    const char *p = container->ptr;
    size_t n = container->len;
    unsigned flags;
    if (container->type == CIOT_JSON_OBJECT)
        flags = IT_OBJECT;
    else if (container->type == CIOT_JSON_ARRAY)
        flags = 0;
    else
        return CIOT_ETYPE;
    char open = flags ? '{' : '[', close = flags ? '}' : ']';
    if (n < 2 || p[0] != open || p[n - 1] != close)
        return CIOT_EINVAL;
    memset(it, 0, sizeof *it);
    it->cur_ = p + 1;
    it->end_ = p + n - 1; /* the closing bracket: items are scanned up to it */
    it->flags_ = flags;
    return 0;
}

CIOT_API int ciot_json_iter_next(ciot_json_iter *it, ciot_json_value *out_key,
                                 ciot_json_value *out_value)
{
    if (it == NULL || it->cur_ == NULL)
        return CIOT_EINVAL;
    if (it->flags_ & IT_EINVAL)
        return CIOT_EINVAL;
    if (it->flags_ & IT_EDEPTH)
        return CIOT_EDEPTH;
    if (it->flags_ & IT_DONE)
        return CIOT_ENOTFOUND;
    const uc *p = (const uc *)it->cur_, *end = (const uc *)it->end_;
    ciot_json_value key = {0, NULL, 0}, val;
    int rc = CIOT_EINVAL;
    p = skip_ws(p, end);
    if (p == end) {
        it->flags_ |= IT_DONE;
        return CIOT_ENOTFOUND;
    }
    if (it->flags_ & IT_STARTED) {
        if (*p != ',')
            goto fail;
        p = skip_ws(p + 1, end);
    }
    if (it->flags_ & IT_OBJECT) {
        bool esc = false;
        if (p >= end || *p != '"')
            goto fail;
        const uc *ks = p;
        p = scan_string(p, end, &esc);
        if (p == NULL)
            goto fail;
        key.type = CIOT_JSON_STRING;
        key.ptr = (const char *)ks;
        key.len = (size_t)(p - ks);
        p = skip_ws(p, end);
        if (p >= end || *p != ':')
            goto fail;
        p = skip_ws(p + 1, end);
    }
    val.ptr = (const char *)p;
    rc = skip_value(&p, end, CIOT_JSON_READER_MAX_DEPTH - 1, &val.type, NULL);
    if (rc != 0)
        goto fail;
    val.len = (size_t)(p - (const uc *)val.ptr);
    it->cur_ = (const char *)p;
    it->flags_ |= IT_STARTED;
    if (it->count_ + 1u != 0)
        it->count_++; /* saturating */
    if (out_key != NULL)
        *out_key = key;
    if (out_value != NULL)
        *out_value = val;
    return 0;
fail:
    it->flags_ |= rc == CIOT_EDEPTH ? IT_EDEPTH : IT_EINVAL;
    return rc == CIOT_EDEPTH ? CIOT_EDEPTH : CIOT_EINVAL;
}
