/*
 * MQTT topic names and filters: validation and matching (protocols.md §6).
 *
 * Each string is validated in one pass: 16 bytes at a time (SSE2, or two
 * 64-bit words elsewhere) a block yields a bit mask of the bytes that need a
 * look (non-ASCII, NUL or controls, `+`, `#`), and only those are visited.
 * Plain ASCII, the bulk of real topics, costs well under one instruction per
 * byte. The matcher then runs on valid input only: it finds the first
 * difference eight bytes at a time and handles wildcards there. Both strings
 * are always validated in full, so an invalid argument is an error even
 * where the match would fail early. No allocation, no NUL needed.
 */
#include "core/topic_internal.h"
#include "internal.h"

#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

typedef unsigned char uchar;

#define ONES 0x0101010101010101ull
#define HIGH 0x8080808080808080ull
#define REP(c) ((uint64_t)(c) * ONES)

static inline uint64_t load64(const uchar *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/*
 * Length of the well-formed UTF-8 sequence starting at p (p[0] >= 0x80), or 0
 * if it is ill-formed or truncated. Strict mode also refuses U+0080–U+009F and
 * the non-characters.
 */
static size_t utf8_seq(const uchar *p, size_t rem, bool strict)
{
    unsigned c = p[0];
    if (c < 0xC2)
        return 0; /* continuation byte or overlong lead */
    if (c < 0xE0) {
        if (rem < 2 || (p[1] & 0xC0) != 0x80)
            return 0;
        if (strict && c == 0xC2 && p[1] < 0xA0)
            return 0; /* C1 controls */
        return 2;
    }
    if (c < 0xF0) {
        unsigned lo = c == 0xE0 ? 0xA0 : 0x80; /* overlong */
        unsigned hi = c == 0xED ? 0x9F : 0xBF; /* surrogates */
        if (rem < 3 || p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80)
            return 0;
        if (strict) {
            unsigned cp = ((c & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
            if ((cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE)
                return 0;
        }
        return 3;
    }
    if (c < 0xF5) {
        unsigned lo = c == 0xF0 ? 0x90 : 0x80; /* overlong */
        unsigned hi = c == 0xF4 ? 0x8F : 0xBF; /* above U+10FFFF */
        if (rem < 4 || p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80 ||
            (p[3] & 0xC0) != 0x80)
            return 0;
        if (strict && (p[2] & 0x3F) == 0x3F && (p[3] & 0x3E) == 0x3E && (p[1] & 0x0F) == 0x0F)
            return 0; /* U+nFFFE, U+nFFFF */
        return 4;
    }
    return 0;
}


#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && \
    (defined(__GNUC__) || defined(__clang__))
#define CIOT__LE_CTZ 1
#else
#define CIOT__LE_CTZ 0
#endif

static inline unsigned ctz64(uint64_t m)
{
#if defined(__GNUC__) || defined(__clang__)
    return (unsigned)__builtin_ctzll(m);
#else
    unsigned n = 0;
    while (!(m & 1u)) {
        m >>= 1;
        n++;
    }
    return n;
#endif
}

static inline unsigned ctz32(unsigned m)
{
#if defined(__GNUC__) || defined(__clang__)
    return (unsigned)__builtin_ctz(m);
#else
    unsigned n = 0;
    while (!(m & 1u)) {
        m >>= 1;
        n++;
    }
    return n;
#endif
}

typedef struct scan_k {
    bool strict;
    unsigned lo_byte; /* bytes below are refused: 0x01 (NUL), strict 0x20 (C0 controls) */
} scan_k;

static inline scan_k scan_consts(unsigned flags)
{
    scan_k k;
    k.strict = (flags & CIOT_TOPIC_STRICT) != 0;
    k.lo_byte = k.strict ? 0x20u : 0x01u;
    return k;
}

/* The 16-byte block holding p[0..n) (n < 16) followed by harmless bytes. */
static inline void small_block(uchar blk[16], const uchar *p, size_t n)
{
    memset(blk, 'a', 16);
    if (n >= 8) {
        memcpy(blk, p, 8);
        memcpy(blk + n - 8, p + n - 8, 8);
    } else if (n >= 4) {
        memcpy(blk, p, 4);
        memcpy(blk + n - 4, p + n - 4, 4);
    } else {
        blk[0] = p[0];
        blk[n / 2] = p[n / 2];
        blk[n - 1] = p[n - 1];
    }
}

/* A wildcard at p[i] of a filter proper p[0..n): whole level, '#' last. */
static inline bool wildcard_ok(const uchar *p, size_t i, size_t n)
{
    if (i > 0 && p[i - 1] != '/')
        return false;
    return p[i] == '#' ? i + 1 == n : (i + 1 == n || p[i + 1] == '/');
}

/*
 * The byte-by-byte validator: the reference for what valid means, used for
 * any string that holds a byte other than plain printable ASCII.
 */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline, cold))
#endif
static bool valid_slow(const uchar *p, size_t n, const scan_k *k, bool is_filter)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c >= 0x80) {
            size_t len = utf8_seq(p + i, n - i, k->strict);
            if (!len)
                return false;
            i += len;
            continue;
        }
        if (c == '+' || c == '#') {
            if (!is_filter || !wildcard_ok(p, i, n))
                return false;
        } else if (c < k->lo_byte || (k->strict && c == 0x7F)) {
            return false;
        }
        i++;
    }
    return true;
}

/* Checks the wildcards flagged in w for the block at p[base..base+16). */
static inline bool wildcards_ok(const uchar *p, size_t n, size_t base, unsigned w)
{
    do {
        if (!wildcard_ok(p, base + ctz32(w), n))
            return false;
        w &= w - 1;
    } while (w);
    return true;
}

/* Bit i of the result: p[i] == c, for i < min(n, 64). */
static uint64_t byte_bitmap(const uchar *p, size_t n, unsigned c)
{
    uint64_t m = 0;
    for (size_t i = 0; i < n && i < 64; i++)
        m |= (uint64_t)(p[i] == c) << i;
    return m;
}

#if defined(__GNUC__) || defined(__clang__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE inline
#endif

/* The slow path of valid_bytes(): any byte other than printable ASCII. */
static bool valid_slow_map(const uchar *p, size_t n, const scan_k *k, bool is_filter,
                           uint64_t *bits)
{
    if (!valid_slow(p, n, k, is_filter))
        return false;
    *bits = is_filter ? byte_bitmap(p, n, '+') | byte_bitmap(p, n, '#') : byte_bitmap(p, n, '/');
    return true;
}

#if defined(__SSE2__)
/*
 * One block x at p[base..base+16) (only the bits in valid count): false if
 * it needs the slow path or is invalid (*slow tells which); otherwise adds
 * its '/' (name) or wildcard (filter) bits to *map when base < 64.
 */
static ALWAYS_INLINE bool block_sse(__m128i x, const uchar *p, size_t n, size_t base,
                                    unsigned valid, const scan_k *k, bool is_filter,
                                    uint64_t *map, bool *slow)
{
    /* signed compare: 0x80..0xFF are negative, so "< lo" takes non-ASCII too */
    __m128i other = k->strict ? _mm_or_si128(_mm_cmplt_epi8(x, _mm_set1_epi8(0x20)),
                                             _mm_cmpeq_epi8(x, _mm_set1_epi8(0x7F)))
                              : _mm_cmplt_epi8(x, _mm_set1_epi8(0x01));
    __m128i wild = _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('+')),
                                _mm_cmpeq_epi8(x, _mm_set1_epi8('#')));
    if (!is_filter) {
        unsigned bad = (unsigned)_mm_movemask_epi8(_mm_or_si128(other, wild)) & valid;
        if (CIOT__UNLIKELY(bad)) {
            *slow = true;
            return false;
        }
        if (base < 64) {
            unsigned sl = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_set1_epi8('/')));
            *map |= (uint64_t)(sl & valid) << base;
        }
        return true;
    }
    if (CIOT__UNLIKELY((unsigned)_mm_movemask_epi8(other) & valid)) {
        *slow = true;
        return false;
    }
    unsigned w = (unsigned)_mm_movemask_epi8(wild) & valid;
    if (w) {
        if (!wildcards_ok(p, n, base, w))
            return false;
        if (base < 64)
            *map |= (uint64_t)w << base;
    }
    return true;
}
#endif

/*
 * Validates a name (is_filter false) or a filter proper p[0..n),
 * 1 <= n <= 65535. When n <= 64, *bits gets a bit for each '/' of a name, or
 * for each wildcard of a filter (the matcher's map of the string).
 */
static ALWAYS_INLINE bool valid_bytes(const uchar *p, size_t n, const scan_k *k, bool is_filter,
                                      uint64_t *bits)
{
#if defined(__SSE2__)
    uint64_t map = 0;
    bool slow = false;
    if (n >= 16) {
        size_t i = 0;
        for (; i + 16 <= n; i += 16) {
            __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
            if (!block_sse(x, p, n, i, 0xFFFFu, k, is_filter, &map, &slow))
                goto out;
        }
        if (i < n) { /* the last block overlaps the one before */
            __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(p + n - 16));
            /* only the bytes not seen yet */
            if (!block_sse(x, p, n, n - 16, 0xFFFFu << (i - (n - 16)), k, is_filter, &map, &slow))
                goto out;
        }
    } else {
        uchar blk[16];
        small_block(blk, p, n);
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)blk);
        if (!block_sse(x, p, n, 0, (1u << n) - 1, k, is_filter, &map, &slow))
            goto out;
    }
    *bits = n <= 64 ? map : 0;
    return true;
out:
    return slow && valid_slow_map(p, n, k, is_filter, bits);
#else
    return valid_slow_map(p, n, k, is_filter, bits);
#endif
}

/* Number of '/' in p[0..n), n <= 256 (only used under the AWS limits). */
static unsigned count_slashes(const uchar *p, size_t n)
{
    unsigned s = 0;
    for (size_t i = 0; i < n; i++)
        s += p[i] == '/';
    return s;
}

/* AWS: <= 256 bytes, <= 7 slashes not counting a Basic Ingest prefix. */
static int aws_limits(size_t whole_len, const uchar *p, size_t n)
{
    static const char ingest[] = "$aws/rules/";
    const size_t il = sizeof ingest - 1;
    if (whole_len > 256)
        return CIOT_EINVAL;
    unsigned s = count_slashes(p, n);
    if (n > il && memcmp(p, ingest, il) == 0) {
        const uchar *slash = memchr(p + il, '/', n - il);
        if (slash && slash > p + il)
            s -= 3;
    }
    return s > 7 ? CIOT_EINVAL : 0;
}

/*
 * Length of the `$share/{name}/` prefix of filter f (0 if f is not a shared
 * subscription filter), or SIZE_MAX if the prefix is malformed.
 */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
static size_t share_prefix(const uchar *f, size_t n, bool strict)
{
    static const char pfx[] = "$share/";
    const size_t pl = sizeof pfx - 1;
    if (n < pl || memcmp(f, pfx, pl) != 0)
        return 0;
    const uchar *slash = memchr(f + pl, '/', n - pl);
    if (!slash)
        return SIZE_MAX; /* "$share/g": no filter */
    size_t name_end = (size_t)(slash - f);
    if (name_end == pl || name_end + 1 == n)
        return SIZE_MAX; /* empty share name or empty filter */
    /* the name is like a name level: no + #, valid UTF-8 */
    scan_k k = scan_consts(strict ? CIOT_TOPIC_STRICT : 0);
    uint64_t bits;
    if (!valid_bytes(f + pl, name_end - pl, &k, false, &bits))
        return SIZE_MAX;
    return name_end + 1;
}

int ciot__topic_name_validate(const uchar *t, size_t n, unsigned flags)
{
    if (!t || n == 0 || n > CIOT__TOPIC_MAX || (flags & ~CIOT__TOPIC_FLAGS_ALL))
        return CIOT_EINVAL;
    scan_k k = scan_consts(flags);
    uint64_t bits;
    if (!valid_bytes(t, n, &k, false, &bits))
        return CIOT_EINVAL;
    if ((flags & CIOT_TOPIC_AWS_LIMITS) && aws_limits(n, t, n))
        return CIOT_EINVAL;
    return 0;
}

int ciot__topic_filter_validate(const uchar *f, size_t n, unsigned flags, size_t *share_len)
{
    if (!f || n == 0 || n > CIOT__TOPIC_MAX || (flags & ~CIOT__TOPIC_FLAGS_ALL))
        return CIOT_EINVAL;
    scan_k k = scan_consts(flags);
    size_t off = share_prefix(f, n, k.strict);
    if (off == SIZE_MAX)
        return CIOT_EINVAL;
    uint64_t bits;
    if (!valid_bytes(f + off, n - off, &k, true, &bits))
        return CIOT_EINVAL;
    if ((flags & CIOT_TOPIC_AWS_LIMITS) && aws_limits(n, f + off, n - off))
        return CIOT_EINVAL;
    if (share_len)
        *share_len = off;
    return 0;
}

int ciot_topic_filter_check(const char *filter, size_t len)
{
    return ciot__topic_filter_validate((const uchar *)filter, len, 0, NULL);
}

int ciot_topic_filter_check_ex(const char *filter, size_t len, unsigned flags)
{
    return ciot__topic_filter_validate((const uchar *)filter, len, flags, NULL);
}

int ciot_topic_name_check(const char *topic, size_t len)
{
    return ciot__topic_name_validate((const uchar *)topic, len, 0);
}

int ciot_topic_name_check_ex(const char *topic, size_t len, unsigned flags)
{
    return ciot__topic_name_validate((const uchar *)topic, len, flags);
}

/* Number of equal leading bytes of a[0..n) and b[0..n). */
static inline size_t common_prefix(const uchar *a, const uchar *b, size_t n)
{
#if CIOT__LE_CTZ
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x = load64(a + i) ^ load64(b + i);
        if (x)
            return i + ((size_t)__builtin_ctzll(x) >> 3);
    }
    if (i == n)
        return n;
    if (n >= 8) {
        uint64_t x = (load64(a + n - 8) ^ load64(b + n - 8)) >> (8 * (i - (n - 8)));
        return x ? i + ((size_t)__builtin_ctzll(x) >> 3) : n;
    }
    while (i < n && a[i] == b[i])
        i++;
    return i;
#else
    size_t i = 0;
    while (i < n && a[i] == b[i])
        i++;
    return i;
#endif
}

/* Position of the first '/' in t[i..n), or n. */
static inline size_t next_slash(const uchar *t, size_t i, size_t n)
{
#if CIOT__LE_CTZ
    for (; i + 8 <= n; i += 8) {
        uint64_t x = load64(t + i) ^ REP('/');
        uint64_t z = (x - ONES) & ~x & HIGH; /* lowest flag is exact */
        if (z)
            return i + ((size_t)__builtin_ctzll(z) >> 3);
    }
#endif
    while (i < n && t[i] != '/')
        i++;
    return i;
}

/*
 * Matches valid filter proper f[0..fn) against valid name t[0..tn). Every
 * '/' is consumed by both strings together, so fi is at a level start
 * exactly when ti is.
 */
static inline bool match_valid(const uchar *f, size_t fn, const uchar *t, size_t tn, unsigned flags)
{
    size_t fi = 0, ti = 0;
    for (;;) {
        size_t room = fn - fi < tn - ti ? fn - fi : tn - ti;
        size_t same = common_prefix(f + fi, t + ti, room);
        fi += same;
        ti += same;
        if (fi == fn)
            return ti == tn;
        bool level_start = fi == 0 || f[fi - 1] == '/';
        unsigned fc = f[fi];
        if (ti == tn && !(level_start && fc != '/')) {
            /* the name is used up (an empty filter level took its empty last
             * level if level_start): only "/#", the parent level, can match */
            return fn - fi == 2 && fc == '/' && f[fi + 1] == '#' && !(flags & CIOT_MATCH_AWS);
        }
        /* here ti < tn, or the name ends with '/' and its empty last level is pending */
        if (!level_start)
            return false;
        if (fc == '+') {
            if (fi == 0 && t[0] == '$')
                return false;
            fi++;
            ti = next_slash(t, ti, tn);
            continue;
        }
        if (fc == '#')
            return !(fi == 0 && t[0] == '$');
        return false;
    }
}

/* a[0..n) == b[0..n) */
static inline bool eq_bytes(const uchar *a, const uchar *b, size_t n)
{
    if (n >= 8) {
        for (size_t i = 0; i + 8 <= n; i += 8)
            if (load64(a + i) != load64(b + i))
                return false;
        return load64(a + n - 8) == load64(b + n - 8);
    }
    if (n >= 4) {
        uint32_t x, y, u, v;
        memcpy(&x, a, 4);
        memcpy(&y, b, 4);
        memcpy(&u, a + n - 4, 4);
        memcpy(&v, b + n - 4, 4);
        return x == y && u == v;
    }
    if (n == 0)
        return true;
    return a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1];
}

/*
 * Matches valid filter proper f[0..fn) against valid name t[0..tn) using the
 * filter's wildcard map wild (fn <= 64): the literal runs between wildcards
 * must equal the name's bytes exactly, and each '+' skips one name level.
 * tslash is the name's '/' map when tn <= 64.
 */
static ALWAYS_INLINE bool match_mapped(const uchar *f, size_t fn, uint64_t wild, const uchar *t,
                                size_t tn, uint64_t tslash, unsigned flags)
{
    size_t fi = 0, ti = 0;
    for (;;) {
        if (!wild)
            return tn - ti == fn - fi && eq_bytes(f + fi, t + ti, fn - fi);
        size_t w = ctz64(wild);
        wild &= wild - 1;
        size_t seg = w - fi; /* literal bytes before the wildcard, '/' included */
        if (tn - ti < seg) {
            /* name too short; "x/#" still matches "x" (the parent level) */
            return f[w] == '#' && tn - ti == seg - 1 && !(flags & CIOT_MATCH_AWS) &&
                   eq_bytes(f + fi, t + ti, seg - 1);
        }
        if (!eq_bytes(f + fi, t + ti, seg))
            return false;
        ti += seg;
        if (f[w] == '#')
            return !(w == 0 && t[0] == '$');
        if (w == 0 && t[0] == '$')
            return false;
        /* '+': skip one name level */
        if (tn <= 64) {
            uint64_t rest = ti < 64 ? tslash >> ti : 0;
            ti = rest ? ti + ctz64(rest) : tn;
        } else {
            ti = next_slash(t, ti, tn);
        }
        fi = w + 1;
        if (fi == fn)
            return ti == tn;
        if (ti == tn) /* name used up: only "/#", the parent level, can match */
            return fn - fi == 2 && f[fi + 1] == '#' && !(flags & CIOT_MATCH_AWS);
    }
}

static ALWAYS_INLINE int match_impl(const char *filter, size_t filter_len, const char *topic,
                             size_t topic_len, unsigned flags, bool *out_match)
{
    const uchar *f = (const uchar *)filter, *t = (const uchar *)topic;
    if (CIOT__UNLIKELY(!f || !t || !out_match || filter_len - 1 >= CIOT__TOPIC_MAX ||
                       topic_len - 1 >= CIOT__TOPIC_MAX || (flags & ~CIOT__TOPIC_FLAGS_ALL)))
        return CIOT_EINVAL;
    scan_k k = scan_consts(flags);
    size_t off = 0;
    if (CIOT__UNLIKELY(f[0] == '$')) {
        off = share_prefix(f, filter_len, k.strict);
        if (off == SIZE_MAX)
            return CIOT_EINVAL;
    }
    uint64_t tslash, wild;
    if (!valid_bytes(t, topic_len, &k, false, &tslash) ||
        !valid_bytes(f + off, filter_len - off, &k, true, &wild))
        return CIOT_EINVAL;
    if (CIOT__UNLIKELY(flags & CIOT_TOPIC_AWS_LIMITS) &&
        (aws_limits(filter_len, f + off, filter_len - off) || aws_limits(topic_len, t, topic_len)))
        return CIOT_EINVAL;
    if (filter_len - off <= 64)
        *out_match = match_mapped(f + off, filter_len - off, wild, t, topic_len, tslash, flags);
    else
        *out_match = match_valid(f + off, filter_len - off, t, topic_len, flags);
    return 0;
}

int ciot_topic_match_ex(const char *filter, size_t filter_len, const char *topic,
                        size_t topic_len, unsigned flags, bool *out_match)
{
    return match_impl(filter, filter_len, topic, topic_len, flags, out_match);
}

int ciot_topic_match(const char *filter, size_t filter_len, const char *topic, size_t topic_len,
                     bool *out_match)
{
    return match_impl(filter, filter_len, topic, topic_len, 0, out_match);
}
