/*
 * MQTT topic names and filters: validation and matching (protocols.md §6).
 *
 * Validation (the *_check functions, and the sets): 16 bytes at a time
 * (SSE2, or two 64-bit words elsewhere) a block yields a bit mask of the
 * bytes that need a look (non-ASCII, NUL or controls, `+`, `#`), and only
 * those are visited.
 *
 * Matching validates as it compares (see "matching" below): the name once,
 * the filter only where it differs from the name. Both strings are always
 * validated in full, so an invalid argument is an error even where the
 * match would fail early. No allocation, no NUL needed.
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

/* ------------------------------------------------------------- matching */

/*
 * ciot_topic_match. Hot path (SSE2, filter <= SHORT_MAX and name <= SHORT_TMAX
 * bytes, see match_short): both strings are copied into stack buffers with
 * sentinels and padding after them, the name's blocks checked on the way (a
 * name with any non-ASCII byte takes the general path). Then the filter is
 * compared with the name 16 bytes at a time: while they are equal the
 * filter's bytes need no check of their own (they equal a valid name's,
 * which holds no wildcard or NUL); at a difference the filter's wildcard is
 * checked and applied (`+` takes one name level, `#` ends the match); once
 * the answer is known, the rest of the filter is still validated to its
 * end, so an invalid argument is an error wherever the match is decided.
 *
 * General path (fused_match): the same walk on the strings in place, with
 * explicit bounds, the name validated first (UTF-8 included).
 *
 * Both apply the default validity rules; under CIOT_TOPIC_STRICT or
 * CIOT_TOPIC_AWS_LIMITS both strings are validated under those first.
 */

enum { SCAN_NAME, SCAN_FILTER, SCAN_SLASH };

#if CIOT__LE_CTZ
#define FIRST_BYTE(x) ((size_t)__builtin_ctzll(x) >> 3)
#endif

#if defined(__SSE2__)

static inline __m128i load16(const uchar *p)
{
    return _mm_loadu_si128((const __m128i *)(const void *)p);
}

/* p[0..n) (1 <= n <= 15) in lanes 0..n-1, zero above; reads only p[0..n). */
static inline __m128i load_small(const uchar *p, size_t n)
{
    uint64_t lo, hi = 0;
    if (n >= 8) {
        lo = load64(p);
        if (n > 8)
            hi = load64(p + n - 8) >> (8 * (16 - n));
    } else if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + n - 4, 4);
        lo = (uint64_t)a | (uint64_t)b << (8 * (n - 4));
    } else {
        lo = (uint64_t)p[0] | (uint64_t)p[n / 2] << (8 * (n / 2)) |
             (uint64_t)p[n - 1] << (8 * (n - 1));
    }
    return _mm_set_epi64x((long long)hi, (long long)lo);
}

/* Lanes holding a byte a name may not hold as is: NUL, >= 0x80, `+`, `#`. */
static inline __m128i name_special(__m128i x)
{
    /* signed: 0x80..0xFF are negative; '#' | 8 == '+' | 8 == '+' */
    return _mm_or_si128(_mm_cmplt_epi8(x, _mm_set1_epi8(1)),
                        _mm_cmpeq_epi8(_mm_or_si128(x, _mm_set1_epi8(8)), _mm_set1_epi8('+')));
}

static ALWAYS_INLINE unsigned scan_mask(__m128i x, int mode)
{
    if (mode == SCAN_SLASH)
        return (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_set1_epi8('/')));
    return (unsigned)_mm_movemask_epi8(name_special(x));
}

/* First byte of p[i..n) the scan must look at (n if none). */
static ALWAYS_INLINE size_t scan_next(const uchar *p, size_t i, size_t n, int mode)
{
    for (; n - i >= 16; i += 16) {
        unsigned m = scan_mask(load16(p + i), mode);
        if (m)
            return i + ctz32(m);
    }
    size_t rem = n - i;
    if (!rem)
        return n;
    unsigned m;
    if (n >= 16)
        m = scan_mask(load16(p + n - 16), mode) >> (16 - rem);
    else
        m = scan_mask(load_small(p + i, rem), mode) & ((1u << rem) - 1);
    return m ? i + ctz32(m) : n;
}

/*
 * Validates name t[0..n), 1 <= n <= 64, for the plain-ASCII case: false if a
 * byte needs a closer look. *slash gets bit i for each t[i] == '/'.
 */
static ALWAYS_INLINE bool name_map(const uchar *t, size_t n, uint64_t *slash)
{
    const __m128i sl = _mm_set1_epi8('/');
    uint64_t map = 0;
    unsigned bad = 0;
    size_t i = 0;
    for (; n - i >= 16; i += 16) {
        __m128i x = load16(t + i);
        bad |= (unsigned)_mm_movemask_epi8(name_special(x));
        map |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, sl)) << i;
    }
    if (i < n) {
        if (n >= 16) {
            /* the last 16 bytes: the ones seen before are valid, and their
             * '/' are in the map already */
            __m128i x = load16(t + n - 16);
            bad |= (unsigned)_mm_movemask_epi8(name_special(x));
            map |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, sl)) << (n - 16);
        } else {
            __m128i x = load_small(t, n); /* zero lanes above n count as NUL */
            bad = (unsigned)_mm_movemask_epi8(name_special(x)) << (32 - n);
            map = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, sl));
        }
    }
    *slash = map;
    return bad == 0;
}

#else /* portable byte loops */

static inline bool name_special_byte(unsigned c)
{
    return c == 0 || c >= 0x80 || c == '+' || c == '#';
}

static inline size_t scan_next(const uchar *p, size_t i, size_t n, int mode)
{
    if (mode == SCAN_SLASH) {
        while (i < n && p[i] != '/')
            i++;
    } else {
        while (i < n && !name_special_byte(p[i]))
            i++;
    }
    return i;
}

static inline bool name_map(const uchar *t, size_t n, uint64_t *slash)
{
    uint64_t map = 0;
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        ok &= !name_special_byte(t[i]);
        map |= (uint64_t)(t[i] == '/') << i;
    }
    *slash = map;
    return ok;
}

#endif

/*
 * Validates p[i..n) (p[0..i) valid, i at a character boundary) under the
 * default rules as a name (SCAN_NAME) or a filter proper (SCAN_FILTER).
 */
static ALWAYS_INLINE bool scan_valid(const uchar *p, size_t i, size_t n, int mode)
{
    for (;;) {
        size_t j = scan_next(p, i, n, mode);
        if (j == n)
            return true;
        unsigned c = p[j];
        if (c < 0x80) {
            /* NUL, or a wildcard: only a filter may hold one, as a whole level */
            if (mode != SCAN_FILTER || c == 0 || !wildcard_ok(p, j, n))
                return false;
            i = j + 1;
            continue;
        }
        size_t len = utf8_seq(p + j, n - j, false);
        if (!len)
            return false;
        i = j + len;
    }
}

/*
 * Number of equal leading bytes of f[0..r) and t[0..r); fb and tb are the
 * bytes readable before f and t.
 */
static ALWAYS_INLINE size_t same_len(const uchar *f, size_t fb, const uchar *t, size_t tb, size_t r)
{
    size_t k = 0;
#if defined(__SSE2__)
    for (; r - k >= 16; k += 16) {
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(load16(f + k), load16(t + k))) ^
                     0xFFFFu;
        if (m)
            return k + ctz32(m);
    }
#endif
#if CIOT__LE_CTZ
    size_t rem = r - k;
    while (rem >= 8) {
        uint64_t x = load64(f + k) ^ load64(t + k);
        if (x)
            return k + FIRST_BYTE(x);
        k += 8;
        rem -= 8;
    }
    if (!rem)
        return r;
    if (fb + r >= 8 && tb + r >= 8) { /* the last 8 bytes of both, overlapping */
        uint64_t x = (load64(f + r - 8) ^ load64(t + r - 8)) >> (8 * (8 - rem));
        return x ? k + FIRST_BYTE(x) : r;
    }
#else
    (void)fb;
    (void)tb;
#endif
    while (k < r && f[k] == t[k])
        k++;
    return k;
}

/* Position of the '/' ending the name level that starts at t[i] (n if none). */
static ALWAYS_INLINE size_t level_end_t(const uchar *t, size_t i, size_t n, uint64_t slash)
{
    if (n <= 64) {
        uint64_t m = i < 64 ? slash >> i : 0;
        return m ? i + ctz64(m) : n;
    }
    return scan_next(t, i, n, SCAN_SLASH);
}

/* A '+' or '#' at f[i] of filter proper f[0..n) stands alone in its level. */
static inline bool wild_alone(const uchar *f, size_t i, size_t n)
{
    return (i == 0 || f[i - 1] == '/') && (i + 1 == n || (f[i] == '+' && f[i + 1] == '/'));
}

#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
static bool name_valid_general(const uchar *t, size_t n)
{
    return scan_valid(t, 0, n, SCAN_NAME);
}

#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
static bool filter_rest_valid(const uchar *f, size_t i, size_t n)
{
    return scan_valid(f, i, n, SCAN_FILTER);
}

/*
 * Matches filter proper f[0..fn) against name t[0..tn) (both 1..65535 bytes)
 * under the default validity rules, validating both completely.
 */
static ALWAYS_INLINE int fused_match(const uchar *f, size_t fn, const uchar *t, size_t tn,
                                     bool aws, bool *out_match)
{
    uint64_t slash = 0;
    if (tn <= 64) {
        if (CIOT__UNLIKELY(!name_map(t, tn, &slash)) && !name_valid_general(t, tn))
            return CIOT_EINVAL;
    } else if (!name_valid_general(t, tn)) {
        return CIOT_EINVAL;
    }
    /* t is valid: each filter byte found equal to a name byte is valid too */
    size_t fi = 0, ti = 0;
    bool res;
    for (;;) {
        size_t r = fn - fi < tn - ti ? fn - fi : tn - ti;
        size_t k = same_len(f + fi, fi, t + ti, ti, r);
        fi += k;
        ti += k;
        if (fi == fn) {
            /* the filter may not end inside a character the name goes on with */
            if (ti < tn && (t[ti] & 0xC0) == 0x80)
                return CIOT_EINVAL;
            res = ti == tn;
            goto done;
        }
        if (f[fi] == '+') {
            do {
                if (!wild_alone(f, fi, fn))
                    return CIOT_EINVAL;
                if (fi == 0 && t[0] == '$') { /* no leading wildcard matches a $-name */
                    res = false;
                    goto rest;
                }
                ti = level_end_t(t, ti, tn, slash);
                if (++fi == fn) {
                    res = ti == tn;
                    goto done;
                }
                if (ti == tn) /* f[fi] == '/' */
                    goto used_up;
                fi++; /* both at '/' */
                ti++;
            } while (fi < fn && f[fi] == '+');
            continue;
        }
        if (f[fi] == '#') {
            if (!wild_alone(f, fi, fn))
                return CIOT_EINVAL;
            res = !(fi == 0 && t[0] == '$');
            goto done;
        }
        break;
    }
used_up:
    /* a difference, or the name is used up: only "/#" (the parent level) can match */
    if (ti == tn && fn - fi == 2 && f[fi] == '/' && f[fi + 1] == '#') {
        res = !aws;
        goto done;
    }
    res = false;
    /* back to the start of a UTF-8 sequence the difference cut into */
    while (ti < tn && (t[ti] & 0xC0) == 0x80) {
        fi--;
        ti--;
    }
rest:
    if (!filter_rest_valid(f, fi, fn))
        return CIOT_EINVAL;
done:
    *out_match = res;
    return 0;
}

/* fused_match() out of line: the hot path below makes only tail calls. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
static int match_long(const uchar *f, size_t fn, const uchar *t, size_t tn, bool aws,
                      bool *out_match)
{
    return fused_match(f, fn, t, tn, aws, out_match);
}

#if defined(__SSE2__)
/* The end of a match whose filter rest f[j..n) holds non-ASCII from j on. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
static int finish_utf8(const uchar *f, size_t j, size_t n, bool res, bool *out_match)
{
    if (!filter_rest_valid(f, j, n))
        return CIOT_EINVAL;
    *out_match = res;
    return 0;
}

#define SHORT_MAX 64u   /* filters up to this long take the padded path... */
#define SHORT_TMAX 256u /* ...with names up to this long */

static inline void store16(uchar *b, __m128i x)
{
    _mm_storeu_si128((__m128i *)(void *)b, x);
}

/*
 * What follows a copy in its buffer: one sentinel byte (first), then 'a'
 * (neither special nor '/').
 */
static inline __m128i pad_block(char first)
{
    return _mm_setr_epi8(first, 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a',
                         'a', 'a');
}

/*
 * name_special() over many blocks, a little cheaper: the OR of the blocks
 * (bit 7: non-ASCII), their minimum (0: a NUL) and the OR of their wildcard
 * lanes, combined once at the end.
 */
typedef struct spec_acc {
    __m128i hi, min, wild;
} spec_acc;

static ALWAYS_INLINE void acc_init(spec_acc *a, __m128i x)
{
    a->hi = x;
    a->min = x;
    a->wild = _mm_cmpeq_epi8(_mm_or_si128(x, _mm_set1_epi8(8)), _mm_set1_epi8('+'));
}

static ALWAYS_INLINE void acc_add(spec_acc *a, __m128i x)
{
    a->hi = _mm_or_si128(a->hi, x);
    a->min = _mm_min_epu8(a->min, x);
    a->wild = _mm_or_si128(
        a->wild, _mm_cmpeq_epi8(_mm_or_si128(x, _mm_set1_epi8(8)), _mm_set1_epi8('+')));
}

/* Non-zero if a byte added was special. */
static ALWAYS_INLINE unsigned acc_mask(const spec_acc *a)
{
    __m128i nul = _mm_cmpeq_epi8(a->min, _mm_setzero_si128());
    return (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(a->hi, a->wild), nul));
}

/*
 * Copies p[0..n) (1 <= n <= SHORT_MAX) to b[0..n) followed by pad_block(first),
 * so that 16 bytes may be read at any b + i, i <= n. Returns non-zero if a
 * block holding only bytes of p or of the padding holds a special byte (see
 * name_special).
 */
static ALWAYS_INLINE unsigned copy_pad(uchar *b, const uchar *p, size_t n, char first)
{
    store16(b + n, pad_block(first));
    spec_acc a;
    if (n >= 16) {
        /* blocks at 0, 16, 32 as far as they fit, then the last 16 bytes */
        __m128i x = load16(p);
        store16(b, x);
        acc_init(&a, x);
        if (n > 32) {
            x = load16(p + 16);
            store16(b + 16, x);
            acc_add(&a, x);
            if (n > 48) {
                x = load16(p + 32);
                store16(b + 32, x);
                acc_add(&a, x);
            }
        }
        x = load16(p + n - 16);
        store16(b + n - 16, x);
        acc_add(&a, x);
        return acc_mask(&a);
    }
    if (n >= 8) {
        uint64_t lo = load64(p), hi = load64(p + n - 8);
        memcpy(b, &lo, 8);
        memcpy(b + n - 8, &hi, 8);
    } else if (n >= 4) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + n - 4, 4);
        memcpy(b, &lo, 4);
        memcpy(b + n - 4, &hi, 4);
    } else {
        b[0] = p[0];
        b[n / 2] = p[n / 2];
        b[n - 1] = p[n - 1];
    }
    return (unsigned)_mm_movemask_epi8(name_special(load16(b)));
}

/* copy_pad() for SHORT_MAX < n <= SHORT_TMAX. */
static ALWAYS_INLINE unsigned copy_pad_long(uchar *b, const uchar *p, size_t n, char first)
{
    store16(b + n, pad_block(first));
    spec_acc a;
    __m128i x = load16(p);
    store16(b, x);
    acc_init(&a, x);
    size_t i = 16;
    for (; n - i > 32; i += 32) {
        __m128i y = load16(p + i + 16);
        x = load16(p + i);
        store16(b + i, x);
        store16(b + i + 16, y);
        acc_add(&a, x);
        acc_add(&a, y);
    }
    if (n - i > 16) {
        x = load16(p + i);
        store16(b + i, x);
        acc_add(&a, x);
    }
    x = load16(p + n - 16);
    store16(b + n - 16, x);
    acc_add(&a, x);
    return acc_mask(&a);
}

/*
 * fused_match() for a filter proper of at most SHORT_MAX bytes and a name of
 * at most SHORT_TMAX: both are copied to padded buffers first, so that every
 * step reads 16 bytes without looking at where the strings end (all reads
 * stay within the copies and the 16 bytes after them).
 */
static ALWAYS_INLINE int match_short(const uchar *f, size_t fn, const uchar *t, size_t tn,
                                     bool aws, bool *out_match)
{
    /*
     * Sentinels: F[-1] == '/' (a wildcard's left neighbour at the start);
     * F[fn] == 0, which no name byte equals, so a comparison stops at the
     * filter's end; T[tn] == '/', where the scan for a level's end stops.
     */
    uchar Fb[1 + SHORT_MAX + 16], T[SHORT_TMAX + 16];
    uchar *const F = Fb + 1;
    /* the filter first: its stores get older before the loads that read them */
    Fb[0] = '/';
    (void)copy_pad(F, f, fn, 0);
    unsigned tsp;
    if (CIOT__LIKELY(tn <= SHORT_MAX))
        tsp = copy_pad(T, t, tn, '/');
    else if (tn <= SHORT_TMAX)
        tsp = copy_pad_long(T, t, tn, '/');
    else
        tsp = 1; /* a long name: the general path */
    if (CIOT__UNLIKELY(tsp)) /* non-ASCII (or invalid): the general path */
        return match_long(f, fn, t, tn, aws, out_match);
    /* from here on the name is valid plain ASCII: every position is a
     * character boundary of both strings while they are equal */
    /* t is valid: each filter byte found equal to a name byte is valid too */
    const __m128i slash = _mm_set1_epi8('/');
    size_t fi = 0, ti = 0;
    bool res;
    for (;;) {
        /* the first difference; it comes at fn at the latest */
        size_t k = 0;
        unsigned m;
        for (;;) {
            m = (unsigned)_mm_movemask_epi8(
                    _mm_cmpeq_epi8(load16(F + fi + k), load16(T + ti + k))) ^
                0xFFFFu;
            if (m)
                break;
            k += 16;
            if (ti + k > tn)
                break;
        }
        k += m ? ctz32(m) : 0;
        if (ti + k > tn) {
            /* past the name's end: its sentinel '/' met a '/' of the filter */
            fi += tn - ti;
            ti = tn;
            goto used_up;
        }
        fi += k;
        ti += k;
        if (fi == fn) {
            res = ti == tn;
            goto done;
        }
        if (F[fi] == '+') {
            if (fi == 0 && T[0] == '$') { /* no leading wildcard matches a $-name */
                res = false;
                goto rest;
            }
            do {
                if (F[fi - 1] != '/' || (F[fi + 1] != '/' && fi + 1 != fn))
                    return CIOT_EINVAL;
                for (;;) { /* '+' takes one name level; T[tn] == '/' */
                    m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(load16(T + ti), slash));
                    if (m) {
                        ti += ctz32(m);
                        break;
                    }
                    ti += 16;
                }
                if (++fi == fn) {
                    res = ti == tn;
                    goto done;
                }
                if (ti == tn) /* F[fi] == '/' */
                    goto used_up;
                fi++; /* both at '/' */
                ti++;
            } while (F[fi] == '+'); /* F[fn] == 0 */
            continue;
        }
        if (F[fi] == '#') {
            if (F[fi - 1] != '/' || fi + 1 != fn)
                return CIOT_EINVAL;
            res = !(fi == 0 && T[0] == '$');
            goto done;
        }
        break;
    }
used_up:
    /* a difference, or the name is used up: only "/#" (the parent level) can match */
    if (ti == tn && fn - fi == 2 && F[fi] == '/' && F[fi + 1] == '#') {
        res = !aws;
        goto done;
    }
    res = false;
rest:
    /* validates F[fi..fn) (F[0..fi) equals plain ASCII; F[fn] == 0 ends it) */
    for (; fi < fn; fi += 16) {
        for (unsigned m = (unsigned)_mm_movemask_epi8(name_special(load16(F + fi))); m;
             m &= m - 1) {
            size_t j = fi + ctz32(m);
            if (j >= fn)
                goto done;
            unsigned c = F[j];
            if (c >= 0x80)
                return finish_utf8(F, j, fn, res, out_match); /* F: same bytes as f */
            if (c == 0 || !wildcard_ok(F, j, fn))
                return CIOT_EINVAL;
        }
    }
done:
    *out_match = res;
    return 0;
}
#endif

/* The rare cases: $share filters, CIOT_TOPIC_STRICT, CIOT_TOPIC_AWS_LIMITS. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
static int match_general(const uchar *f, size_t fn, const uchar *t, size_t tn, unsigned flags,
                         bool *out_match)
{
    size_t off = 0;
    if (flags & (CIOT_TOPIC_STRICT | CIOT_TOPIC_AWS_LIMITS)) {
        if (ciot__topic_filter_validate(f, fn, flags, &off) ||
            ciot__topic_name_validate(t, tn, flags))
            return CIOT_EINVAL;
    } else {
        off = share_prefix(f, fn, false);
        if (off == SIZE_MAX)
            return CIOT_EINVAL;
    }
    return fused_match(f + off, fn - off, t, tn, (flags & CIOT_MATCH_AWS) != 0, out_match);
}

/* The error return of the checks below, out of line so each check stays one branch. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline, cold))
#endif
static int einval(void)
{
    return CIOT_EINVAL;
}

static ALWAYS_INLINE int match_impl(const char *filter, size_t filter_len, const char *topic,
                                    size_t topic_len, unsigned flags, bool *out_match)
{
    const uchar *f = (const uchar *)filter, *t = (const uchar *)topic;
    if (CIOT__UNLIKELY(filter_len - 1 >= CIOT__TOPIC_MAX))
        return einval();
    if (CIOT__UNLIKELY(topic_len - 1 >= CIOT__TOPIC_MAX))
        return einval();
    if (CIOT__UNLIKELY(!f))
        return einval();
    if (CIOT__UNLIKELY(!t))
        return einval();
    if (CIOT__UNLIKELY(!out_match))
        return einval();
    if (CIOT__UNLIKELY(flags & ~CIOT__TOPIC_FLAGS_ALL))
        return einval();
    /* "$share/..." needs its prefix taken off; other '$' filters do not */
    if (CIOT__UNLIKELY(flags & ~CIOT_MATCH_AWS))
        return match_general(f, filter_len, t, topic_len, flags, out_match);
    if (CIOT__UNLIKELY(f[0] == '$') && filter_len >= 7 && f[1] == 's')
        return match_general(f, filter_len, t, topic_len, flags, out_match);
#if defined(__SSE2__)
    if (CIOT__LIKELY(filter_len <= SHORT_MAX)) /* names too long go on from there */
        return match_short(f, filter_len, t, topic_len, (flags & CIOT_MATCH_AWS) != 0, out_match);
#endif
    return match_long(f, filter_len, t, topic_len, (flags & CIOT_MATCH_AWS) != 0, out_match);
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
