/*
 * MQTT topic names and filters: validation and matching (protocols.md §6).
 *
 * One pass over both strings: the matcher walks filter and name together and
 * validates every byte it consumes; once the answer is known it still
 * validates what is left of both strings, because an invalid argument is an
 * error even where the match fails early. Runs of equal, plain ASCII bytes
 * are compared and checked eight at a time (SWAR); everything else goes
 * through a byte/character path. No allocation, no NUL needed.
 */
#include "core/topic_internal.h"
#include "internal.h"

#include <string.h>

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
 * Per-call constants for the SWAR tests. For a word x of eight bytes,
 *   (x | (x - lo) | ((x ^ a) - ONES) | ...) & HIGH
 * is non-zero iff some byte is >= 0x80, below lo's byte, or equal to one of
 * the listed bytes (for ASCII bytes a subtraction only borrows out of a byte
 * that is itself flagged, so there are no false alarms before the first real
 * one; on little-endian machines the lowest flagged byte is exact).
 * lo is 0x01 (reject NUL) or, in strict mode, 0x20 (reject C0 controls too);
 * del is 0x7F in strict mode, else a repeat of '+'.
 */
typedef struct scan_k {
    uint64_t lo, del;
    unsigned lo_byte;
    bool strict;
} scan_k;

static inline scan_k scan_consts(unsigned flags)
{
    scan_k k;
    k.strict = (flags & CIOT_TOPIC_STRICT) != 0;
    k.lo_byte = k.strict ? 0x20u : 0x01u;
    k.lo = REP(k.lo_byte);
    k.del = k.strict ? REP(0x7F) : REP('+');
    return k;
}

/* Bytes that need a closer look in a name: non-ASCII, NUL/controls, + # (DEL). */
static inline uint64_t special_name(uint64_t x, const scan_k *k)
{
    return (x | (x - k->lo) | ((x ^ REP('+')) - ONES) | ((x ^ REP('#')) - ONES) |
            ((x ^ k->del) - ONES)) &
           HIGH;
}

/* Same, plus '/'. */
static inline uint64_t special_level(uint64_t x, const scan_k *k)
{
    return special_name(x, k) | (((x ^ REP('/')) - ONES) & HIGH);
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && \
    (defined(__GNUC__) || defined(__clang__))
#define FIRST_FLAGGED(bad) ((size_t)__builtin_ctzll(bad) >> 3)
#else
#define FIRST_FLAGGED(bad) ((size_t)0 * (bad))
#endif

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

/* One plain ASCII byte of a name: not NUL (or a control when strict), not + #. */
static inline bool ascii_ok(unsigned c, const scan_k *k)
{
    return c >= k->lo_byte && c != '+' && c != '#' && !(k->strict && c == 0x7F);
}

/*
 * Validates name bytes t[i..n) and returns the position of the first '/' at
 * or after i (or n) when stop_at_slash, else n; returns SIZE_MAX if invalid.
 */
static size_t scan_name(const uchar *t, size_t i, size_t n, const scan_k *k, bool stop_at_slash)
{
    for (;;) {
        while (n - i >= 8) {
            uint64_t x = load64(t + i);
            uint64_t bad = stop_at_slash ? special_level(x, k) : special_name(x, k);
            if (bad) {
                i += FIRST_FLAGGED(bad);
                break;
            }
            i += 8;
        }
        /* at most 8 bytes one at a time, then back to words */
        size_t stop = n - i > 8 ? i + 8 : n;
        while (i < stop) {
            unsigned c = t[i];
            if (c < 0x80) {
                if (c == '/' && stop_at_slash)
                    return i;
                if (!ascii_ok(c, k))
                    return SIZE_MAX;
                i++;
            } else {
                size_t len = utf8_seq(t + i, n - i, k->strict);
                if (!len)
                    return SIZE_MAX;
                i += len;
            }
        }
        if (i >= n)
            return n;
    }
}

/*
 * Validates filter bytes f[i..n) where f[0] is the first byte of the filter
 * proper (after any $share prefix). Returns 0 or CIOT_EINVAL.
 */
static int scan_filter(const uchar *f, size_t i, size_t n, const scan_k *k)
{
    for (;;) {
        while (n - i >= 8) {
            uint64_t bad = special_name(load64(f + i), k);
            if (bad) {
                i += FIRST_FLAGGED(bad);
                break;
            }
            i += 8;
        }
        size_t stop = n - i > 8 ? i + 8 : n;
        while (i < stop) {
            unsigned c = f[i];
            if (c == '+' || c == '#') {
                if (i > 0 && f[i - 1] != '/')
                    return CIOT_EINVAL;
                if (c == '#' ? i + 1 != n : (i + 1 < n && f[i + 1] != '/'))
                    return CIOT_EINVAL;
                i++;
            } else if (c < 0x80) {
                if (!ascii_ok(c, k))
                    return CIOT_EINVAL;
                i++;
            } else {
                size_t len = utf8_seq(f + i, n - i, k->strict);
                if (!len)
                    return CIOT_EINVAL;
                i += len;
            }
        }
        if (i >= n)
            return 0;
    }
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

/* Splits `$share/{name}/`; *off = 0 if f is not a shared-subscription filter. */
static int share_prefix(const uchar *f, size_t n, const scan_k *k, size_t *off)
{
    static const char pfx[] = "$share/";
    const size_t pl = sizeof pfx - 1;
    *off = 0;
    if (n < pl || memcmp(f, pfx, pl) != 0)
        return 0;
    const uchar *slash = memchr(f + pl, '/', n - pl);
    if (!slash)
        return CIOT_EINVAL; /* "$share/g": no filter */
    size_t name_end = (size_t)(slash - f);
    if (name_end == pl || name_end + 1 == n)
        return CIOT_EINVAL; /* empty share name or empty filter */
    /* the name is like a name level: no + #, valid UTF-8 */
    if (scan_name(f, pl, name_end, k, false) == SIZE_MAX)
        return CIOT_EINVAL;
    *off = name_end + 1;
    return 0;
}

int ciot__topic_name_validate(const uchar *t, size_t n, unsigned flags)
{
    if (!t || n == 0 || n > CIOT__TOPIC_MAX || (flags & ~CIOT__TOPIC_FLAGS_ALL))
        return CIOT_EINVAL;
    scan_k k = scan_consts(flags);
    if (scan_name(t, 0, n, &k, false) == SIZE_MAX)
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
    size_t off;
    if (share_prefix(f, n, &k, &off))
        return CIOT_EINVAL;
    if (scan_filter(f + off, 0, n - off, &k))
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

/* The answer is known (no match); the rest of both strings must still be valid. */
static int finish_false(const uchar *f, size_t fi, size_t fn, const uchar *t, size_t ti,
                        size_t tn, const scan_k *k, bool *out)
{
    if (scan_filter(f, fi, fn, k) || scan_name(t, ti, tn, k, false) == SIZE_MAX)
        return CIOT_EINVAL;
    *out = false;
    return 0;
}

/*
 * Matches filter proper f[0..fn) (no $share prefix) against name t[0..tn),
 * both non-empty. Invariant: every '/' is consumed by both strings together,
 * so fi is at a level start exactly when ti is.
 */
static int match_core(const uchar *f, size_t fn, const uchar *t, size_t tn, unsigned flags,
                      bool *out)
{
    scan_k k = scan_consts(flags);
    size_t fi = 0, ti = 0;

    for (;;) {
        /* equal runs of plain ASCII (levels and '/' alike), 8 bytes at a time */
        while (fn - fi >= 8 && tn - ti >= 8) {
            uint64_t x = load64(t + ti);
            if (x != load64(f + fi) || special_name(x, &k))
                break;
            fi += 8;
            ti += 8;
        }
        if (fi == fn) {
            if (ti == tn) {
                *out = true;
                return 0;
            }
            return finish_false(f, fi, fn, t, ti, tn, &k, out);
        }
        bool level_start = fi == 0 || f[fi - 1] == '/';
        unsigned fc = f[fi];
        unsigned tc;
        if (ti < tn) {
            tc = t[ti];
        } else if (level_start && fc != '/') {
            tc = 0x100; /* the name ends with '/': an empty last level is pending */
        } else {
            /* the name is used up (an empty filter level took its empty last
             * level if level_start); only "/#" (parent level) can still match */
            if (fn - fi == 2 && fc == '/' && f[fi + 1] == '#') {
                *out = !(flags & CIOT_MATCH_AWS);
                return 0;
            }
            return finish_false(f, fi, fn, t, ti, tn, &k, out);
        }

        if (fc == tc) {
            if (tc < 0x80) {
                if (!ascii_ok(tc, &k))
                    return CIOT_EINVAL;
                fi++;
                ti++;
                continue;
            }
            size_t len = utf8_seq(t + ti, tn - ti, k.strict);
            if (!len)
                return CIOT_EINVAL;
            if (fn - fi < len || memcmp(f + fi, t + ti, len) != 0)
                return finish_false(f, fi, fn, t, ti, tn, &k, out);
            fi += len;
            ti += len;
            continue;
        }
        if (level_start && fc == '+') {
            if (fi + 1 < fn && f[fi + 1] != '/')
                return CIOT_EINVAL;
            fi++;
            if (fi == 1 && t[0] == '$')
                return finish_false(f, fi, fn, t, ti, tn, &k, out);
            ti = scan_name(t, ti, tn, &k, true);
            if (ti == SIZE_MAX)
                return CIOT_EINVAL;
            continue;
        }
        if (level_start && fc == '#') {
            if (fi + 1 != fn)
                return CIOT_EINVAL;
            if (scan_name(t, ti, tn, &k, false) == SIZE_MAX)
                return CIOT_EINVAL;
            *out = !(fi == 0 && t[0] == '$');
            return 0;
        }
        return finish_false(f, fi, fn, t, ti, tn, &k, out);
    }
}

int ciot_topic_match_ex(const char *filter, size_t filter_len, const char *topic,
                        size_t topic_len, unsigned flags, bool *out_match)
{
    const uchar *f = (const uchar *)filter, *t = (const uchar *)topic;
    if (CIOT__UNLIKELY(!f || !t || !out_match || filter_len - 1 >= CIOT__TOPIC_MAX ||
                       topic_len - 1 >= CIOT__TOPIC_MAX || (flags & ~CIOT__TOPIC_FLAGS_ALL)))
        return CIOT_EINVAL;
    size_t off = 0;
    if (CIOT__UNLIKELY(f[0] == '$' && filter_len >= 7)) {
        scan_k k = scan_consts(flags);
        if (share_prefix(f, filter_len, &k, &off))
            return CIOT_EINVAL;
    }
    if (CIOT__UNLIKELY(flags & CIOT_TOPIC_AWS_LIMITS)) {
        if (aws_limits(filter_len, f + off, filter_len - off) ||
            aws_limits(topic_len, t, topic_len))
            return CIOT_EINVAL;
    }
    bool m;
    int rc = match_core(f + off, filter_len - off, t, topic_len, flags, &m);
    if (rc == 0)
        *out_match = m;
    return rc;
}

int ciot_topic_match(const char *filter, size_t filter_len, const char *topic, size_t topic_len,
                     bool *out_match)
{
    return ciot_topic_match_ex(filter, filter_len, topic, topic_len, 0, out_match);
}
