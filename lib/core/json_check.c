/*
 * A small validating scanner for one JSON value (RFC 8259) and a UTF-8
 * sequence checker. No allocation, no recursion: the open containers are
 * one bit each in a 64-bit word, which is also why the depth limit is 64.
 */
#include "core/json_check.h"

#include "internal.h"

#include <string.h>

size_t ciot__utf8_seq_len(const unsigned char *p, size_t avail)
{
    unsigned c = p[0];
    if (c < 0xC2) /* ASCII is not ours; 80..BF stray continuation; C0/C1 overlong */
        return 0;
    if (c < 0xE0) {
        if (avail < 2 || (p[1] & 0xC0) != 0x80)
            return 0;
        return 2;
    }
    if (c < 0xF0) {
        unsigned lo = c == 0xE0 ? 0xA0 : 0x80; /* E0 80..9F would be overlong */
        unsigned hi = c == 0xED ? 0x9F : 0xBF; /* ED A0..BF would be a surrogate */
        if (avail < 3 || p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80)
            return 0;
        return 3;
    }
    if (c > 0xF4) /* above U+10FFFF */
        return 0;
    {
        unsigned lo = c == 0xF0 ? 0x90 : 0x80; /* F0 80..8F would be overlong */
        unsigned hi = c == 0xF4 ? 0x8F : 0xBF; /* F4 90.. would be above U+10FFFF */
        if (avail < 4 || p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80 ||
            (p[3] & 0xC0) != 0x80)
            return 0;
        return 4;
    }
}

static const unsigned char *skip_ws(const unsigned char *p, const unsigned char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static int hexval(unsigned c)
{
    if (c >= '0' && c <= '9')
        return (int)(c - '0');
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return (int)(c - 'a' + 10);
    return -1;
}

/* Four hex digits at p (p + 4 <= end checked by the caller); -1 if not. */
static long hex4(const unsigned char *p)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* p points just after the opening quote; returns the byte after the closing
 * quote, or NULL if the string is malformed or unterminated. */
static const unsigned char *scan_string(const unsigned char *p, const unsigned char *end)
{
    while (p < end) {
        unsigned c = *p;
        if (c == '"')
            return p + 1;
        if (c < 0x20)
            return NULL;
        if (c < 0x80) {
            if (c != '\\') {
                p++;
                continue;
            }
            if (end - p < 2)
                return NULL;
            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                p += 2;
                continue;
            case 'u':
                break;
            default:
                return NULL;
            }
            if (end - p < 6)
                return NULL;
            long u = hex4(p + 2);
            if (u < 0 || (u >= 0xDC00 && u <= 0xDFFF)) /* lone low surrogate */
                return NULL;
            p += 6;
            if (u >= 0xD800 && u <= 0xDBFF) { /* a low surrogate must follow */
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u')
                    return NULL;
                long lo = hex4(p + 2);
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return NULL;
                p += 6;
            }
            continue;
        }
        size_t n = ciot__utf8_seq_len(p, (size_t)(end - p));
        if (!n)
            return NULL;
        p += n;
    }
    return NULL;
}

static const unsigned char *scan_digits(const unsigned char *p, const unsigned char *end)
{
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    return p;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? ; NULL if malformed. */
static const unsigned char *scan_number(const unsigned char *p, const unsigned char *end)
{
    if (*p == '-')
        p++;
    if (p == end)
        return NULL;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        p = scan_digits(p + 1, end);
    else
        return NULL;
    if (p < end && *p == '.') {
        const unsigned char *q = scan_digits(p + 1, end);
        if (q == p + 1)
            return NULL;
        p = q;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        const unsigned char *q = scan_digits(p, end);
        if (q == p)
            return NULL;
        p = q;
    }
    /* A digit right after the number (e.g. "01") is caught by the caller,
     * which only accepts white space or a delimiter next. */
    return p;
}

static const unsigned char *scan_word(const unsigned char *p, const unsigned char *end,
                                      const char *word, size_t n)
{
    if ((size_t)(end - p) < n || memcmp(p, word, n) != 0)
        return NULL;
    return p + n;
}

int ciot__json_check(const char *s, size_t len, unsigned max_depth, unsigned *out_depth)
{
    const unsigned char *p = (const unsigned char *)s;
    const unsigned char *end = p + len;
    uint64_t objects = 0; /* bit d: the container at depth d+1 is an object */
    unsigned depth = 0, deepest = 0;

    if (!s && len)
        return CIOT_EINVAL;
    if (max_depth > 64)
        max_depth = 64;

value:
    p = skip_ws(p, end);
    if (p == end)
        return CIOT_EINVAL;
    switch (*p) {
    case '{':
    case '[':
        if (depth >= max_depth)
            return CIOT_EDEPTH;
        if (*p == '{')
            objects |= (uint64_t)1 << depth;
        else
            objects &= ~((uint64_t)1 << depth);
        depth++;
        if (depth > deepest)
            deepest = depth;
        p = skip_ws(p + 1, end);
        if (p < end && *p == (objects >> (depth - 1) & 1 ? '}' : ']')) {
            p++;
            depth--;
            goto after_value;
        }
        if (objects >> (depth - 1) & 1)
            goto key;
        goto value;
    case '"':
        p = scan_string(p + 1, end);
        break;
    case 't':
        p = scan_word(p, end, "true", 4);
        break;
    case 'f':
        p = scan_word(p, end, "false", 5);
        break;
    case 'n':
        p = scan_word(p, end, "null", 4);
        break;
    default:
        if (*p == '-' || (*p >= '0' && *p <= '9'))
            p = scan_number(p, end);
        else
            p = NULL;
        break;
    }
    if (!p)
        return CIOT_EINVAL;

after_value:
    p = skip_ws(p, end);
    if (depth == 0) {
        if (p != end)
            return CIOT_EINVAL;
        if (out_depth)
            *out_depth = deepest;
        return 0;
    }
    if (p == end)
        return CIOT_EINVAL;
    if (objects >> (depth - 1) & 1) {
        if (*p == '}') {
            p++;
            depth--;
            goto after_value;
        }
        if (*p != ',')
            return CIOT_EINVAL;
        p = skip_ws(p + 1, end);
        goto key;
    }
    if (*p == ']') {
        p++;
        depth--;
        goto after_value;
    }
    if (*p != ',')
        return CIOT_EINVAL;
    p++;
    goto value;

key: /* p is at a non-space byte (or end) where a member's key must start */
    if (p == end || *p != '"')
        return CIOT_EINVAL;
    p = scan_string(p + 1, end);
    if (!p)
        return CIOT_EINVAL;
    p = skip_ws(p, end);
    if (p == end || *p != ':')
        return CIOT_EINVAL;
    p++;
    goto value;
}
