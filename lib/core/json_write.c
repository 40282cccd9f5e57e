/*
 * The JSON writer: compact JSON into caller memory, no allocation.
 *
 * The state lives in the caller's ciot_json_writer (reserved storage); a
 * bit per open container says object or array, one byte says what may come
 * next. When the buffer runs out the writer keeps checking and counting, so
 * finish can say how much room the whole document needs.
 */
#include "core/json_write.h"

#include <cloudiot/json.h>
#include <cloudiot/timestamp.h>

#include "core/json_check.h"
#include "internal.h"

#include <float.h>
#include <math.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the writer accepts next. */
enum {
    ST_TOP = 1,    /* the top-level value */
    ST_DONE,       /* nothing but finish: the top-level value is complete */
    ST_OBJ_FIRST,  /* just after '{': a key or '}' */
    ST_OBJ_NEXT,   /* after a member: a key (with ',') or '}' */
    ST_OBJ_VALUE,  /* after a key: its value */
    ST_ARR_FIRST,  /* just after '[': a value or ']' */
    ST_ARR_NEXT,   /* after an element: a value (with ',') or ']' */
    ST_FINISHED    /* finish has been called */
};

/* Set by init, to catch uninitialised writers; the first error switches it
 * to JW_FAILED, so the hot path checks one word. */
#define JW_MAGIC 0x4A535752u  /* "JSWR" */
#define JW_FAILED 0x4A534552u /* "JSER": err holds the sticky error */

typedef struct jw {
    char *buf;
    size_t cap;
    size_t len;      /* bytes of output so far, including what did not fit */
    uint64_t objects; /* bit d: the container at depth d+1 is an object */
    uint32_t magic;
    int32_t err;     /* first error, sticky; 0 if none */
    uint8_t state;
    uint8_t depth;   /* open containers, 0..CIOT_JSON_WRITER_MAX_DEPTH */
} jw;

CIOT__STATIC_ASSERT(sizeof(jw) <= sizeof(ciot_json_writer),
                    "writer state must fit the public ciot_json_writer");
CIOT__STATIC_ASSERT(alignof(jw) <= alignof(ciot_json_writer),
                    "writer state must not need more alignment than ciot_json_writer");
CIOT__STATIC_ASSERT(CIOT_JSON_WRITER_MAX_DEPTH <= 64, "one bit per open container in a uint64_t");
CIOT__STATIC_ASSERT(CIOT_JSON_WRITER_MAX_DEPTH <= UINT8_MAX, "depth is a uint8_t");

/* The public struct is reserved storage for this state; the library is
 * built with -fno-strict-aliasing, and the storage is only ever used as jw. */
static inline jw *state_of(ciot_json_writer *w)
{
    return (jw *)(void *)w;
}

static inline int fail(jw *s, int err)
{
    s->err = err;
    s->magic = JW_FAILED;
    return err;
}

/* Checks the writer and returns 0, or the error to return. */
static inline int check(ciot_json_writer *w)
{
    if (CIOT__UNLIKELY(!w))
        return CIOT_EINVAL;
    jw *s = state_of(w);
    if (CIOT__LIKELY(s->magic == JW_MAGIC))
        return 0;
    return s->magic == JW_FAILED ? s->err : CIOT_EINVAL;
}

/*
 * Counts n more bytes of output; returns where to write them, or NULL when
 * they do not fit (the count still grows, so no later write fits either and
 * finish reports the full size). On size_t overflow sets *rc to the error.
 */
static inline char *reserve(jw *s, size_t n, int *rc)
{
    size_t at = s->len;
    if (CIOT__UNLIKELY(n > SIZE_MAX - at)) {
        *rc = fail(s, CIOT_ERANGE);
        return NULL;
    }
    s->len = at + n;
    if (CIOT__LIKELY(s->len <= s->cap))
        return s->buf + at;
    return NULL;
}

/*
 * Before a value: 0 if allowed here, with *sep the separator to write first
 * (',' or 0); otherwise the (sticky) error.
 */
static inline int value_pre(jw *s, char *sep)
{
    switch (s->state) {
    case ST_TOP:
    case ST_OBJ_VALUE:
    case ST_ARR_FIRST:
        *sep = 0;
        return 0;
    case ST_ARR_NEXT:
        *sep = ',';
        return 0;
    default:
        return fail(s, CIOT_ESTATE);
    }
}

/* After a complete value (scalar or closed container). */
static inline void value_post(jw *s)
{
    if (s->depth == 0)
        s->state = ST_DONE;
    else
        s->state = (s->objects >> (s->depth - 1) & 1) ? ST_OBJ_NEXT : ST_ARR_NEXT;
}

/* Writes an optional separator and n bytes of literal text as one value. */
static int put_scalar(ciot_json_writer *w, const char *text, size_t n)
{
    int rc = check(w);
    if (CIOT__UNLIKELY(rc))
        return rc;
    jw *s = state_of(w);
    char sep;
    rc = value_pre(s, &sep);
    if (CIOT__UNLIKELY(rc))
        return rc;
    char *o = reserve(s, n + (sep != 0), &rc);
    if (CIOT__UNLIKELY(rc))
        return rc;
    if (o) {
        if (sep)
            *o++ = sep;
        memcpy(o, text, n);
    }
    value_post(s);
    return 0;
}

int ciot__json_put_trusted(ciot_json_writer *w, const char *text, size_t n)
{
    return put_scalar(w, text, n);
}

int ciot__json_key_plain(ciot_json_writer *w, const char *key, size_t len)
{
    int rc = check(w);
    if (CIOT__UNLIKELY(rc))
        return rc;
    jw *s = state_of(w);
    char sep;
    if (s->state == ST_OBJ_NEXT)
        sep = ',';
    else if (s->state == ST_OBJ_FIRST)
        sep = 0;
    else
        return fail(s, CIOT_ESTATE);
    if (CIOT__UNLIKELY(!key && len))
        return fail(s, CIOT_EINVAL);
    char *o = reserve(s, len + 3 + (sep != 0), &rc);
    if (CIOT__UNLIKELY(rc))
        return rc;
    if (o) {
        if (sep)
            *o++ = sep;
        *o++ = '"';
        if (len)
            memcpy(o, key, len);
        o[len] = '"';
        o[len + 1] = ':';
    }
    s->state = ST_OBJ_VALUE;
    return 0;
}

int ciot_json_writer_init(ciot_json_writer *w, char *buf, size_t cap)
{
    if (!w)
        return CIOT_EINVAL;
    jw *s = state_of(w);
    memset(w, 0, sizeof *w);
    s->magic = JW_MAGIC;
    s->state = ST_TOP;
    if (!buf && cap)
        return fail(s, CIOT_EINVAL);
    s->buf = buf;
    s->cap = cap;
    return 0;
}

static int begin(ciot_json_writer *w, char open, bool object)
{
    int rc = check(w);
    if (CIOT__UNLIKELY(rc))
        return rc;
    jw *s = state_of(w);
    char sep;
    rc = value_pre(s, &sep);
    if (CIOT__UNLIKELY(rc))
        return rc;
    if (CIOT__UNLIKELY(s->depth >= CIOT_JSON_WRITER_MAX_DEPTH))
        return fail(s, CIOT_EDEPTH);
    char *o = reserve(s, 1 + (sep != 0), &rc);
    if (CIOT__UNLIKELY(rc))
        return rc;
    if (o) {
        if (sep)
            *o++ = sep;
        *o = open;
    }
    uint64_t bit = (uint64_t)1 << s->depth;
    s->objects = object ? (s->objects | bit) : (s->objects & ~bit);
    s->depth++;
    s->state = object ? ST_OBJ_FIRST : ST_ARR_FIRST;
    return 0;
}

static int end(ciot_json_writer *w, char close, bool object)
{
    int rc = check(w);
    if (CIOT__UNLIKELY(rc))
        return rc;
    jw *s = state_of(w);
    uint8_t st = s->state;
    bool ok = object ? (st == ST_OBJ_FIRST || st == ST_OBJ_NEXT)
                     : (st == ST_ARR_FIRST || st == ST_ARR_NEXT);
    if (CIOT__UNLIKELY(!ok))
        return fail(s, CIOT_ESTATE);
    char *o = reserve(s, 1, &rc);
    if (CIOT__UNLIKELY(rc))
        return rc;
    if (o)
        *o = close;
    s->depth--;
    value_post(s);
    return 0;
}

int ciot_json_begin_object(ciot_json_writer *w)
{
    return begin(w, '{', true);
}

int ciot_json_end_object(ciot_json_writer *w)
{
    return end(w, '}', true);
}

int ciot_json_begin_array(ciot_json_writer *w)
{
    return begin(w, '[', false);
}

int ciot_json_end_array(ciot_json_writer *w)
{
    return end(w, ']', false);
}

/* ---- strings ------------------------------------------------------------ */

/* Extra bytes the escape of an ASCII byte takes: 0 plain, 1 for \" \\ \b \f
 * \n \r \t, 5 for \u00XX. Bytes >= 0x80 are handled apart. */
static const uint8_t esc_extra[128] = {
    5, 5, 5, 5, 5, 5, 5, 5, 1, 1, 1, 5, 1, 1, 5, 5, /* 00..0F: \b \t \n \f \r */
    5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, /* 10..1F */
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 20..2F: '"' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* 50..5F: '\\' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/*
 * Non-zero if any of the 8 bytes in x needs a look: < 0x20, '"', '\\' or
 * >= 0x80. When no byte has its high bit set, "byte - c" borrows out of a
 * byte only if that byte is below c, so each subtraction sets a high bit
 * exactly when some byte is below 0x20 / equal to '"' / equal to '\\'.
 */
static inline uint64_t needs_look(uint64_t x)
{
    uint64_t q = x ^ (ONES * '"');
    uint64_t b = x ^ (ONES * '\\');
    return ((x - ONES * 0x20) | (q - ONES) | (b - ONES) | x) & HIGHS;
}

/* Length of the escaped form of s (quotes not included), or SIZE_MAX if s
 * is not valid UTF-8. n must be below SIZE_MAX / 8. */
static size_t escaped_len(const unsigned char *s, size_t n)
{
    size_t i = 0, extra = 0;
    for (;;) {
        while (i + 8 <= n) {
            uint64_t x;
            memcpy(&x, s + i, 8);
            if (needs_look(x))
                break;
            i += 8;
        }
        if (i >= n)
            break;
        unsigned c = s[i];
        if (c < 0x80) {
            extra += esc_extra[c];
            i++;
        } else {
            size_t l = ciot__utf8_seq_len(s + i, n - i);
            if (CIOT__UNLIKELY(!l))
                return SIZE_MAX;
            i += l;
        }
    }
    return n + extra;
}

static const char hexdig[] = "0123456789abcdef";

/* Writes the escaped form of s (already validated) and returns the end. */
static char *escape(char *o, const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned c = s[i];
        if (c >= 0x80 || !esc_extra[c]) {
            *o++ = (char)c;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        default:
            memcpy(o, "u00", 3);
            o[3] = hexdig[c >> 4];
            o[4] = hexdig[c & 15];
            o += 5;
            break;
        }
    }
    return o;
}

/* Writes the escape of ASCII byte c (one that needs one) and returns the end. */
static inline char *escape_one(char *o, unsigned c)
{
    o[0] = '\\';
    switch (c) {
    case '"': o[1] = '"'; return o + 2;
    case '\\': o[1] = '\\'; return o + 2;
    case '\b': o[1] = 'b'; return o + 2;
    case '\f': o[1] = 'f'; return o + 2;
    case '\n': o[1] = 'n'; return o + 2;
    case '\r': o[1] = 'r'; return o + 2;
    case '\t': o[1] = 't'; return o + 2;
    default:
        memcpy(o + 1, "u00", 3);
        o[4] = hexdig[c >> 4];
        o[5] = hexdig[c & 15];
        return o + 6;
    }
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && \
    (defined(__GNUC__) || defined(__clang__))
#define JW_FAST_STRINGS 1
/* Worst case of the fast path: 6 bytes per input byte, plus the 8-byte
 * stores that may run up to 7 bytes past the string (filled with spaces,
 * overwritten by what follows or left after the document). */
#define JW_FAST_SLACK 16

/* The r < 8 bytes at s, padded with spaces (which need no look) to 8,
 * without reading past s + r. */
static inline uint64_t load_tail(const unsigned char *s, size_t r)
{
    uint64_t x = ONES * ' ';
    unsigned off = 0;
    if (r & 4) {
        uint32_t v;
        memcpy(&v, s, 4);
        x = (x & ~(uint64_t)0xFFFFFFFFu) | v;
        off = 4;
    }
    if (r & 2) {
        uint16_t v;
        memcpy(&v, s + off, 2);
        x = (x & ~((uint64_t)0xFFFF << (8 * off))) | ((uint64_t)v << (8 * off));
        off += 2;
    }
    if (r & 1)
        x = (x & ~((uint64_t)0xFF << (8 * off))) | ((uint64_t)s[off] << (8 * off));
    return x;
}

/*
 * One pass: copies 8 bytes at a time, stopping at the first byte that needs
 * a look (the lowest flagged byte is always a true one: a borrow only
 * carries upwards). Returns the end of the output, or NULL on invalid UTF-8.
 * The caller guarantees 6 * n + JW_FAST_SLACK bytes of room at o.
 */
static char *copy_fast(char *o, const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t r = n - i;
        uint64_t x;
        if (r >= 8) {
            memcpy(&x, s + i, 8);
            r = 8;
        } else if (n >= 8) {
            /* the last 8 bytes of s, shifted so the r new ones come first,
             * spaces above them */
            uint64_t y;
            memcpy(&y, s + n - 8, 8);
            unsigned sh = 8 * (unsigned)(8 - r); /* 8..56 */
            x = (y >> sh) | ((ONES * ' ') << (64 - sh));
        } else {
            x = load_tail(s + i, r);
        }
        memcpy(o, &x, 8);
        uint64_t m = needs_look(x);
        if (CIOT__LIKELY(!m)) {
            i += r;
            o += r;
            continue;
        }
        size_t k = (size_t)__builtin_ctzll(m) >> 3;
        i += k;
        o += k;
        unsigned c = s[i];
        if (c < 0x80) {
            o = escape_one(o, c);
            i++;
        } else {
            size_t l = ciot__utf8_seq_len(s + i, n - i);
            if (CIOT__UNLIKELY(!l))
                return NULL;
            for (size_t j = 0; j < l; j++)
                o[j] = (char)s[i + j];
            i += l;
            o += l;
        }
    }
    return o;
}
#else
#define JW_FAST_STRINGS 0
#endif

/* Writes [sep] "s" [:] ; the caller has checked the state. */
static inline int put_string(jw *s, char sep, const char *str, size_t n, bool key)
{
    if (CIOT__UNLIKELY(!str && n))
        return fail(s, CIOT_EINVAL);
    if (CIOT__UNLIKELY(n >= SIZE_MAX / 8))
        return fail(s, CIOT_ERANGE);
#if JW_FAST_STRINGS
    if (CIOT__LIKELY(s->len <= s->cap && s->cap - s->len >= 6 * n + JW_FAST_SLACK)) {
        char *o = s->buf + s->len;
        *o = sep;
        o += sep != 0;
        *o++ = '"';
        o = copy_fast(o, (const unsigned char *)str, n);
        if (CIOT__UNLIKELY(!o))
            return fail(s, CIOT_EINVAL);
        o[0] = '"';
        o[1] = ':';
        s->len = (size_t)(o + 1 + key - s->buf);
        return 0;
    }
#endif
    /* Near the end of the buffer: measure first, then write if it fits. */
    size_t elen = escaped_len((const unsigned char *)str, n);
    if (CIOT__UNLIKELY(elen == SIZE_MAX))
        return fail(s, CIOT_EINVAL);
    int rc = 0;
    char *o = reserve(s, elen + 2 + (sep != 0) + key, &rc);
    if (CIOT__UNLIKELY(rc))
        return rc;
    if (o) {
        if (sep)
            *o++ = sep;
        *o++ = '"';
        if (elen == n) {
            if (n) /* str may be NULL when n is 0 */
                memcpy(o, str, n);
            o += n;
        } else {
            o = escape(o, (const unsigned char *)str, n);
        }
        *o++ = '"';
        if (key)
            *o = ':';
    }
    return 0;
}

int ciot_json_key(ciot_json_writer *w, const char *key, size_t len)
{
    int rc = check(w);
    if (CIOT__UNLIKELY(rc))
        return rc;
    jw *s = state_of(w);
    char sep;
    if (s->state == ST_OBJ_NEXT)
        sep = ',';
    else if (s->state == ST_OBJ_FIRST)
        sep = 0;
    else
        return fail(s, CIOT_ESTATE);
    rc = put_string(s, sep, key, len, true);
    if (CIOT__UNLIKELY(rc))
        return rc;
    s->state = ST_OBJ_VALUE;
    return 0;
}

int ciot_json_string(ciot_json_writer *w, const char *str, size_t len)
{
    int rc = check(w);
    if (CIOT__UNLIKELY(rc))
        return rc;
    jw *s = state_of(w);
    char sep;
    rc = value_pre(s, &sep);
    if (CIOT__UNLIKELY(rc))
        return rc;
    rc = put_string(s, sep, str, len, false);
    if (CIOT__UNLIKELY(rc))
        return rc;
    value_post(s);
    return 0;
}

/* ---- numbers ------------------------------------------------------------- */

static const char digit_pairs[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

static const uint64_t pow10_u64[20] = {
    1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull,
    100000000ull, 1000000000ull, 10000000000ull, 100000000000ull, 1000000000000ull,
    10000000000000ull, 100000000000000ull, 1000000000000000ull, 10000000000000000ull,
    100000000000000000ull, 1000000000000000000ull, 10000000000000000000ull,
};

static inline unsigned count_digits(uint64_t v)
{
    unsigned n = 1;
    while (n < 20 && v >= pow10_u64[n])
        n++;
    return n;
}

/* Writes exactly n digits of v (v < 10^n) ending at out + n. */
static inline void put_digits(char *out, uint64_t v, unsigned n)
{
    char *o = out + n;
    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        o -= 2;
        memcpy(o, digit_pairs + 2 * r, 2);
    }
    if (v >= 10) {
        o -= 2;
        memcpy(o, digit_pairs + 2 * v, 2);
    } else {
        *--o = (char)('0' + v);
    }
    /* digits above v's own (leading zeros) */
    while (o > out)
        *--o = '0';
}

size_t ciot__fmt_u64(char *out, uint64_t v)
{
    unsigned n = count_digits(v);
    put_digits(out, v, n);
    return n;
}

int ciot_json_int(ciot_json_writer *w, int64_t v)
{
    char t[24];
    size_t n = 0;
    uint64_t u = (uint64_t)v;
    if (v < 0) {
        t[n++] = '-';
        u = 0 - u; /* well defined for INT64_MIN too */
    }
    n += ciot__fmt_u64(t + n, u);
    return put_scalar(w, t, n);
}

int ciot_json_bool(ciot_json_writer *w, bool v)
{
    return v ? put_scalar(w, "true", 4) : put_scalar(w, "false", 5);
}

int ciot_json_null(ciot_json_writer *w)
{
    return put_scalar(w, "null", 4);
}

/* Exactly representable powers of ten (10^22 < 2^53 * 2^22 ... 5^22 < 2^53). */
static const double pow10_dbl[23] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

#define TWO53 9007199254740992.0

/* Does digits * 10^exp10 read back (strtod, correctly rounded) as a? The
 * text has no decimal point, so the locale does not matter. */
static bool reads_back(uint64_t digits, int exp10, double a)
{
    /* Clinger's fast path: both operands exact, one correctly rounded
     * operation, so this is what strtod returns */
    if (digits <= (1ull << 53) && exp10 >= -22 && exp10 <= 22)
        return (exp10 >= 0 ? (double)digits * pow10_dbl[exp10]
                           : (double)digits / pow10_dbl[-exp10]) == a;
    char t[48];
    size_t n = ciot__fmt_u64(t, digits);
    t[n++] = 'e';
    if (exp10 < 0) {
        t[n++] = '-';
        exp10 = -exp10;
    }
    n += ciot__fmt_u64(t + n, (uint64_t)exp10);
    t[n] = '\0';
    return strtod(t, NULL) == a;
}

/*
 * The correctly rounded prec-digit decimal of a (> 0): *digits has exactly
 * prec digits and a ~ *digits * 10^(*exp10 - prec + 1).
 */
static void nearest_decimal(double a, int prec, uint64_t *digits, int *exp10)
{
    char t[48];
    snprintf(t, sizeof t, "%.*e", prec - 1, a);
    uint64_t d = 0;
    const char *p = t;
    /* digits, then the locale's decimal point (any non-digit bytes), then
     * more digits, up to the 'e' */
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9')
            d = d * 10 + (uint64_t)(*p - '0');
    *digits = d;
    *exp10 = *p == 'e' ? atoi(p + 1) : 0;
}

/* Tries c * 10^x: if it reads back as a, stores it (digits, count, exponent
 * of the first digit) and returns true. */
static bool try_candidate(double a, uint64_t c, int x, uint64_t *digits, unsigned *n, int *e10)
{
    if (!reads_back(c, x, a))
        return false;
    unsigned k = count_digits(c);
    *digits = c;
    *n = k;
    *e10 = x + (int)k - 1;
    return true;
}

/*
 * The shortest decimal that reads back as a (> 0, finite, not handled by the
 * exact path): *digits, *n of them (trailing zeros are stripped by the
 * caller), a ~ d.ddd * 10^*e10.
 *
 * One snprintf gives D, the correctly rounded 17-digit decimal of a, which
 * always reads back: the spacing of 17-digit decimals is at most 1e-16 * a,
 * so D is within 5e-17 * a, inside even the narrow side of a's rounding
 * interval (2^-54 * a ~ 5.55e-17 * a, at a power of two). Then, for normal
 * numbers:
 * - 15 digits: every decimal of at most 15 significant digits survives
 *   decimal -> double -> decimal at 15 digits (DBL_DIG = 15). So if some
 *   decimal x of <= 15 digits reads back as a, the correctly rounded
 *   15-digit decimal of a IS x (padded with zeros): one candidate to try,
 *   and if it fails, nothing of <= 15 digits works. That candidate is D
 *   rounded to 15 digits, except when D's two dropped digits are exactly
 *   50 (double rounding may then go the wrong way): try both neighbours.
 * - 16 digits: a's rounding interval is symmetric unless a's significand
 *   is a power of two (the gap below is then half the gap above). If it is
 *   symmetric and some 16-digit decimal reads back, the nearest one does:
 *   D rounded to 16 digits (both neighbours if the dropped digit is 5).
 *   At a power of two, try the 16-digit decimals just below and above a.
 * - otherwise D itself.
 * Subnormals have fewer than 53 bits, so the DBL_DIG argument does not hold;
 * their spacing is uniform, so the first precision whose nearest decimal
 * reads back is the shortest (one snprintf per precision; they are rare).
 */
static void shortest_fallback(double a, uint64_t *digits, unsigned *n, int *e10)
{
    uint64_t d = 0;
    int e = 0;
    if (a < DBL_MIN) {
        for (int prec = 1; prec < 17; prec++) {
            nearest_decimal(a, prec, &d, &e);
            if (try_candidate(a, d, e - (prec - 1), digits, n, e10))
                return;
        }
    } else {
        nearest_decimal(a, 17, &d, &e); /* a ~ d * 10^(e - 16), 17 digits */
        uint64_t q = d / 100, rem = d % 100;
        if (rem != 50) {
            if (try_candidate(a, q + (rem > 50), e - 14, digits, n, e10))
                return;
        } else if (try_candidate(a, q, e - 14, digits, n, e10) ||
                   try_candidate(a, q + 1, e - 14, digits, n, e10)) {
            return;
        }
        q = d / 10;
        rem = d % 10;
        uint64_t bits;
        memcpy(&bits, &a, sizeof bits);
        if ((bits & 0xFFFFFFFFFFFFFull) == 0) { /* lopsided interval */
            if (try_candidate(a, q, e - 15, digits, n, e10) ||
                try_candidate(a, q + 1, e - 15, digits, n, e10) ||
                try_candidate(a, q - 1, e - 15, digits, n, e10))
                return;
        } else if (rem != 5) {
            if (try_candidate(a, q + (rem > 5), e - 15, digits, n, e10))
                return;
        } else if (try_candidate(a, q, e - 15, digits, n, e10) ||
                   try_candidate(a, q + 1, e - 15, digits, n, e10)) {
            return;
        }
    }
    /* 17 digits, which always read back */
    if (a < DBL_MIN)
        nearest_decimal(a, 17, &d, &e);
    *digits = d;
    *n = 17;
    *e10 = e;
}

size_t ciot__json_fmt_double(char *out, double v)
{
    char *o = out;
    if (signbit(v))
        *o++ = '-';
    double a = fabs(v);
    if (a == 0) {
        memcpy(o, "0.0", 3);
        return (size_t)(o + 3 - out);
    }

    uint64_t d;
    unsigned n;
    int e10;
    /*
     * Exact path (Clinger): for the smallest k such that some integer d
     * gives d / 10^k == a, with d < 2^53 and 10^k exact, IEEE division is
     * correctly rounded, so strtod reads "d e-k" back as a, and no shorter
     * decimal exists (it would need fewer fractional digits, i.e. a smaller
     * k). Such a d lies within 1.5 of fl(a * 10^k): a's rounding interval
     * is < 1 wide once scaled, and the product is off by <= 0.5 below 2^53;
     * so r - 1, r, r + 1 (r = nearest integer to the product) cover it.
     * Tighter, that distance is at most 10^k * ulp(a) / 2 + ulp(p) / 2 <=
     * p * 2^-52 (< 0.25 below p = 2^50, where r - 1 and r + 1 are >= 0.5
     * away): there only r itself can qualify, and only if p is that close
     * to it, which one subtraction tells (p - r is exact). The test below
     * uses twice that bound, for margin.
     */
    if (a < TWO53 && a > 5e-23) {
        for (unsigned k = 0; k <= 22; k++) {
            double p = a * pow10_dbl[k];
            if (p >= TWO53)
                break;
            uint64_t r = (uint64_t)p;
            if (p - (double)r >= 0.5)
                r++;
            if (p < 0x1p50 && fabs(p - (double)r) > p * 0x1p-51)
                continue;
            double pk = pow10_dbl[k];
            if (r && (double)r / pk == a)
                d = r;
            else if (r > 1 && (double)(r - 1) / pk == a)
                d = r - 1;
            else if ((double)(r + 1) / pk == a)
                d = r + 1;
            else
                continue;
            n = count_digits(d);
            e10 = (int)n - 1 - (int)k;
            while (d % 10 == 0) { /* only for k == 0 (integers) */
                d /= 10;
                n--;
            }
            goto format;
        }
    }
    shortest_fallback(a, &d, &n, &e10);
    while (d % 10 == 0) { /* the candidates may end in zeros */
        d /= 10;
        n--;
    }

format:;
    /* Fixed-size copies (no calls): out has CIOT__DOUBLE_BUF bytes of room,
     * which covers the longest text plus the overshoot. */
    char dig[32] = {0};
    put_digits(dig, d, n);
    if (e10 >= -5 && e10 < 16) {
        if (e10 >= 0) {
            unsigned ip = (unsigned)e10 + 1; /* digits before the point, <= 16 */
            if (n <= ip) {                   /* integral: digits, zeros, ".0" */
                memcpy(o, dig, 20);
                memset(o + n, '0', 16);
                o += ip;
                o[0] = '.';
                o[1] = '0';
                o += 2;
            } else {
                memcpy(o, dig, 16);
                o += ip;
                *o++ = '.';
                memcpy(o, dig + ip, 16); /* n - ip <= 16 */
                o += n - ip;
            }
        } else {
            unsigned z = (unsigned)(-e10 - 1); /* 0..4 zeros after the point */
            memcpy(o, "0.000000", 8);
            o += 2 + z;
            memcpy(o, dig, 20);
            o += n;
        }
    } else {
        o[0] = dig[0];
        o[1] = '.';
        memcpy(o + 2, dig + 1, 16);
        o += n > 1 ? n + 1 : 1;
        *o++ = 'e';
        unsigned ue = (unsigned)e10;
        if (e10 < 0) {
            *o++ = '-';
            ue = (unsigned)-e10;
        }
        o += ciot__fmt_u64(o, ue);
    }
    return (size_t)(o - out);
}

int ciot_json_double(ciot_json_writer *w, double v)
{
    int rc = check(w);
    if (CIOT__UNLIKELY(rc))
        return rc;
    jw *s = state_of(w);
    if (CIOT__UNLIKELY(!isfinite(v)))
        return fail(s, CIOT_EINVAL);
    char sep;
    rc = value_pre(s, &sep);
    if (CIOT__UNLIKELY(rc))
        return rc;
    if (CIOT__LIKELY(s->len <= s->cap && s->cap - s->len > CIOT__DOUBLE_BUF)) {
        /* room for any double: format in place */
        char *o = s->buf + s->len;
        *o = sep;
        o += sep != 0;
        s->len = (size_t)(o - s->buf) + ciot__json_fmt_double(o, v);
        value_post(s);
        return 0;
    }
    char t[CIOT__DOUBLE_BUF];
    size_t n = ciot__json_fmt_double(t, v);
    char *o = reserve(s, n + (sep != 0), &rc);
    if (CIOT__UNLIKELY(rc))
        return rc;
    if (o) {
        if (sep)
            *o++ = sep;
        memcpy(o, t, n);
    }
    value_post(s);
    return 0;
}

/* ---- raw JSON, timestamps, finish ---------------------------------------- */

int ciot_json_raw(ciot_json_writer *w, const char *json, size_t len)
{
    int rc = check(w);
    if (CIOT__UNLIKELY(rc))
        return rc;
    jw *s = state_of(w);
    char sep;
    rc = value_pre(s, &sep);
    if (CIOT__UNLIKELY(rc))
        return rc;
    if (!json && len)
        return fail(s, CIOT_EINVAL);
    unsigned deepest;
    rc = ciot__json_check(json, len, CIOT_JSON_WRITER_MAX_DEPTH - s->depth, &deepest);
    if (rc)
        return fail(s, rc);
    char *o = reserve(s, len + (sep != 0), &rc);
    if (CIOT__UNLIKELY(rc))
        return rc;
    if (o) {
        if (sep)
            *o++ = sep;
        memcpy(o, json, len);
    }
    value_post(s);
    return 0;
}

int ciot_json_timestamp(ciot_json_writer *w, int64_t unix_ms)
{
    int rc = check(w);
    if (CIOT__UNLIKELY(rc))
        return rc;
    if (unix_ms < CIOT_TIMESTAMP_MIN_MS || unix_ms > CIOT_TIMESTAMP_MAX_MS)
        return fail(state_of(w), CIOT_ERANGE);
    char t[CIOT_TIMESTAMP_LEN + 2];
    t[0] = '"';
    ciot__timestamp_put(t + 1, unix_ms);
    t[CIOT_TIMESTAMP_LEN + 1] = '"';
    return put_scalar(w, t, sizeof t);
}

int ciot_json_writer_finish(ciot_json_writer *w, size_t *out_len)
{
    int rc = check(w);
    if (CIOT__UNLIKELY(rc))
        return rc;
    jw *s = state_of(w);
    if (s->state != ST_DONE && s->state != ST_FINISHED)
        return fail(s, CIOT_ESTATE);
    s->state = ST_FINISHED;
    if (out_len)
        *out_len = s->len;
    if (s->len > s->cap)
        return CIOT_ENOSPC;
    if (s->len < s->cap)
        s->buf[s->len] = '\0';
    return 0;
}
