/*
 * Azure IoT Hub building blocks; rules and their sources in core/azure.h
 * and doc/azure.md.
 */
#include "core/azure.h"

#include "core/utf8.h"
#include "internal.h"

#include <string.h>

/* ---- base64 ---- */

static const char b64_alphabet[64] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t ciot__b64_encoded_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

void ciot__b64_encode(char *out, const unsigned char *in, size_t n)
{
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *out++ = b64_alphabet[v >> 18];
        *out++ = b64_alphabet[(v >> 12) & 63];
        *out++ = b64_alphabet[(v >> 6) & 63];
        *out++ = b64_alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *out++ = b64_alphabet[v >> 18];
        *out++ = b64_alphabet[(v >> 12) & 63];
        *out++ = '=';
        *out++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *out++ = b64_alphabet[v >> 18];
        *out++ = b64_alphabet[(v >> 12) & 63];
        *out++ = b64_alphabet[(v >> 6) & 63];
        *out++ = '=';
    }
}

/* 0..63 for an alphabet character, -1 otherwise (no table: no globals
 * beyond constants, and the branch form is as fast for 44-byte keys). */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int ciot__b64_decode(unsigned char *out, size_t cap, size_t *out_len, const char *in, size_t len)
{
    if (!out_len || (!in && len) || (!out && cap))
        return CIOT_EINVAL;
    if (len % 4)
        return CIOT_ECORRUPT;
    const unsigned char *s = (const unsigned char *)in;
    size_t pad = 0;
    if (len && s[len - 1] == '=')
        pad = (len >= 2 && s[len - 2] == '=') ? 2 : 1;
    size_t need = len / 4 * 3 - pad;
    /* Validate everything before writing, so that the error is the same
     * whatever cap is. */
    for (size_t i = 0; i < len - pad; i++)
        if (b64_value(s[i]) < 0)
            return CIOT_ECORRUPT;
    if (pad) {
        /* the bits that the padding leaves unused must be zero */
        int last = b64_value(s[len - pad - 1]);
        if ((pad == 2 && (last & 15)) || (pad == 1 && (last & 3)))
            return CIOT_ECORRUPT;
    }
    *out_len = need;
    if (cap < need)
        return CIOT_ENOSPC;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        uint32_t v = 0;
        size_t k = 0;
        for (; k < 4 && i + k < len - pad; k++)
            v = v << 6 | (uint32_t)b64_value(s[i + k]);
        v <<= 6 * (4 - k);
        if (k >= 2)
            out[o++] = (unsigned char)(v >> 16);
        if (k >= 3)
            out[o++] = (unsigned char)(v >> 8);
        if (k == 4)
            out[o++] = (unsigned char)v;
    }
    return 0;
}

/* ---- percent-encoding ---- */

/* Bitmap of the unreserved bytes: - . 0-9 in 0x00..0x3f; A-Z _ a-z ~ in
 * 0x40..0x7f (checked byte by byte against the plain rule in the tests). */
static const uint64_t unreserved_bits[4] = {UINT64_C(0x03FF600000000000),
                                            UINT64_C(0x47FFFFFE87FFFFFE), 0, 0};

bool ciot__azure_url_unreserved(unsigned char c)
{
    return (unreserved_bits[c >> 6] >> (c & 63)) & 1;
}

size_t ciot__azure_url_encoded_len(const char *s, size_t len)
{
    size_t n = len;
    for (size_t i = 0; i < len; i++)
        if (!ciot__azure_url_unreserved((unsigned char)s[i]))
            n += 2;
    return n;
}

size_t ciot__azure_url_encode(char *out, const char *s, size_t len)
{
    static const char hex[16] = "0123456789ABCDEF";
    char *o = out;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (ciot__azure_url_unreserved(c)) {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    return (size_t)(o - out);
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decoded length of s, or SIZE_MAX for a malformed escape. */
static size_t url_decoded_len(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; n++) {
        if (s[i] == '%') {
            if (len - i < 3 || hexval((unsigned char)s[i + 1]) < 0 ||
                hexval((unsigned char)s[i + 2]) < 0)
                return SIZE_MAX;
            i += 3;
        } else {
            i++;
        }
    }
    return n;
}

/* Decodes a well-formed (checked) escape sequence; returns bytes written. */
static size_t url_decode_unchecked(char *out, const char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        if (s[i] == '%') {
            out[o++] = (char)(hexval((unsigned char)s[i + 1]) << 4 | hexval((unsigned char)s[i + 2]));
            i += 3;
        } else {
            out[o++] = s[i++];
        }
    }
    return o;
}

int ciot__azure_url_decode(char *out, size_t cap, size_t *out_len, const char *s, size_t len)
{
    if (!out_len || (!s && len) || (!out && cap))
        return CIOT_EINVAL;
    size_t need = url_decoded_len(s, len);
    if (need == SIZE_MAX)
        return CIOT_EPROTOCOL;
    *out_len = need;
    if (cap < need)
        return CIOT_ENOSPC;
    url_decode_unchecked(out, s, len);
    if (cap > need)
        out[need] = '\0';
    return 0;
}

/* ---- identities ---- */

bool ciot__azure_id_valid(const char *s, size_t len)
{
    if (!s || len == 0 || len > CIOT__AZURE_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
            continue;
        if (!memchr("-.%_*?!(),:=@$'", c, 15) || c == '\0')
            return false;
    }
    return true;
}

bool ciot__azure_host_valid(const char *s, size_t len)
{
    if (!s || len == 0 || len > CIOT__AZURE_HOST_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '.' || c == '_'))
            return false;
    }
    return s[0] != '.' && s[0] != '-' && s[len - 1] != '.' && s[len - 1] != '-';
}

/* Appends bytes to the output while counting what is needed. */
typedef struct sink {
    char *out;
    size_t cap, len;
} sink;

static void put(sink *k, const char *s, size_t n)
{
    if (k->len < k->cap && n)
        memcpy(k->out + k->len, s, n <= k->cap - k->len ? n : k->cap - k->len);
    k->len += n;
}

static void put_str(sink *k, const char *s)
{
    put(k, s, strlen(s));
}

static void put_encoded(sink *k, const char *s, size_t n)
{
    /* One pass when even all-escaped output fits; else measure first. */
    if (k->len <= k->cap && n <= (k->cap - k->len) / 3) {
        k->len += ciot__azure_url_encode(k->out + k->len, s, n);
        return;
    }
    size_t need = ciot__azure_url_encoded_len(s, n);
    if (k->len <= k->cap && need <= k->cap - k->len)
        ciot__azure_url_encode(k->out + k->len, s, n);
    k->len += need;
}

static int finish(sink *k, size_t *out_len)
{
    if (out_len)
        *out_len = k->len;
    if (k->len > k->cap)
        return CIOT_ENOSPC;
    if (k->cap > k->len)
        k->out[k->len] = '\0';
    return 0;
}

int ciot__azure_username(char *out, size_t cap, size_t *out_len, const char *host, size_t hlen,
                         const char *device, size_t dlen, const char *module, size_t mlen)
{
    if ((!out && cap) || !ciot__azure_host_valid(host, hlen) || !ciot__azure_id_valid(device, dlen) ||
        (module && !ciot__azure_id_valid(module, mlen)))
        return CIOT_EINVAL;
    sink k = {out, cap, 0};
    put(&k, host, hlen);
    put(&k, "/", 1);
    put(&k, device, dlen);
    put(&k, "/", 1);
    if (module) {
        put(&k, module, mlen);
        put(&k, "/", 1);
    }
    put_str(&k, "?api-version=" CIOT__AZURE_API_VERSION);
    return finish(&k, out_len);
}

int ciot__azure_client_id(char *out, size_t cap, size_t *out_len, const char *device, size_t dlen,
                          const char *module, size_t mlen)
{
    if ((!out && cap) || !ciot__azure_id_valid(device, dlen) ||
        (module && !ciot__azure_id_valid(module, mlen)))
        return CIOT_EINVAL;
    sink k = {out, cap, 0};
    put(&k, device, dlen);
    if (module) {
        put(&k, "/", 1);
        put(&k, module, mlen);
    }
    return finish(&k, out_len);
}

/* ---- property bags ---- */

static bool view_ok(const ciot_view *v)
{
    return (v->ptr || !v->len) && ciot__utf8_valid(v->ptr, v->len, false);
}

static void put_prop(sink *k, bool *first, const char *name, size_t nlen, bool literal_name,
                     const ciot_view *value, bool has_value)
{
    if (!*first)
        put(k, "&", 1);
    *first = false;
    if (literal_name)
        put(k, name, nlen);
    else
        put_encoded(k, name, nlen);
    if (has_value) {
        put(k, "=", 1);
        put_encoded(k, value->ptr, value->len);
    }
}

int ciot__azure_telemetry_topic(char *out, size_t cap, size_t *out_len, const char *device,
                                size_t dlen, const char *module, size_t mlen,
                                const ciot__azure_sysprops *sys, const ciot__azure_prop *props,
                                size_t n)
{
    if ((!out && cap) || (!props && n) || !ciot__azure_id_valid(device, dlen) ||
        (module && !ciot__azure_id_valid(module, mlen)))
        return CIOT_EINVAL;
    struct {
        const char *name;
        const ciot_view *v;
    } sysv[7];
    size_t nsys = 0;
    if (sys) {
        const ciot_view *vs[7] = {&sys->content_type,   &sys->content_encoding, &sys->message_id,
                                  &sys->correlation_id, &sys->user_id,          &sys->creation_time,
                                  &sys->component};
        static const char *const names[7] = {"$.ct", "$.ce", "$.mid", "$.cid", "$.uid", "$.ctime", "$.sub"};
        for (size_t i = 0; i < 7; i++) {
            if (!vs[i]->len)
                continue;
            if (!view_ok(vs[i]))
                return CIOT_EINVAL;
            sysv[nsys].name = names[i];
            sysv[nsys].v = vs[i];
            nsys++;
        }
        if (sys->message_id.len) {
            if (sys->message_id.len > CIOT__AZURE_MID_MAX)
                return CIOT_EINVAL;
            for (size_t i = 0; i < sys->message_id.len; i++) {
                unsigned char c = (unsigned char)sys->message_id.ptr[i];
                if (c < 0x21 || c > 0x7e)
                    return CIOT_EINVAL;
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        const ciot__azure_prop *p = &props[i];
        if (!p->name.len || !view_ok(&p->name) || (p->has_value && !view_ok(&p->value)))
            return CIOT_EINVAL;
        if (p->name.len >= 2 && p->name.ptr[0] == '$' && p->name.ptr[1] == '.')
            return CIOT_EINVAL;
    }

    sink k = {out, cap, 0};
    put_str(&k, "devices/");
    put(&k, device, dlen);
    if (module) {
        put_str(&k, "/modules/");
        put(&k, module, mlen);
    }
    put_str(&k, "/messages/events/");
    bool first = true;
    for (size_t i = 0; i < nsys; i++)
        put_prop(&k, &first, sysv[i].name, strlen(sysv[i].name), true, sysv[i].v, true);
    for (size_t i = 0; i < n; i++)
        put_prop(&k, &first, props[i].name.ptr, props[i].name.len, false, &props[i].value,
                 props[i].has_value);
    if (k.len > CIOT__AZURE_TOPIC_MAX)
        return CIOT_ERANGE;
    return finish(&k, out_len);
}

/* Decodes and checks in one scan (out has room for len bytes); returns the
 * decoded length or SIZE_MAX for a malformed escape. */
static size_t url_decode_checked(char *out, const char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        if (s[i] != '%') {
            out[o++] = s[i++];
            continue;
        }
        int hi = len - i >= 3 ? hexval((unsigned char)s[i + 1]) : -1;
        int lo = hi >= 0 ? hexval((unsigned char)s[i + 2]) : -1;
        if (lo < 0)
            return SIZE_MAX;
        out[o++] = (char)(hi << 4 | lo);
        i += 3;
    }
    return o;
}

int ciot__azure_bag_decode(char *buf, size_t cap, size_t *buf_len, ciot__azure_prop *props,
                           size_t max, size_t *n, const char *bag, size_t len)
{
    if (!buf_len || !n || (!buf && cap) || (!props && max) || (!bag && len))
        return CIOT_EINVAL;
    size_t p = (len && bag[0] == '?') ? 1 : 0;
    size_t need = 0, count = 0;
    while (p < len) {
        const char *seg = bag + p;
        const char *amp = memchr(seg, '&', len - p);
        size_t slen = amp ? (size_t)(amp - seg) : len - p;
        p += slen + (amp ? 1 : 0);
        if (!slen)
            continue;
        const char *eq = memchr(seg, '=', slen);
        size_t nlen = eq ? (size_t)(eq - seg) : slen;
        const char *val = eq ? eq + 1 : seg + slen;
        size_t vlen = eq ? slen - nlen - 1 : 0;
        if (nlen == 0)
            return CIOT_EPROTOCOL;
        size_t dn, dv;
        /* Decoding never lengthens: with room for the encoded bytes, decode
         * straight away; otherwise only measure (and check) from here on. */
        if (need <= cap && nlen + vlen <= cap - need && count < max) {
            char *dname = buf + need;
            dn = url_decode_checked(dname, seg, nlen);
            if (dn == SIZE_MAX)
                return CIOT_EPROTOCOL;
            char *dval = dname + dn;
            dv = url_decode_checked(dval, val, vlen);
            if (dv == SIZE_MAX || !ciot__utf8_valid(dname, dn, true) || !ciot__utf8_valid(dval, dv, true))
                return CIOT_EPROTOCOL;
            props[count].name.ptr = dname;
            props[count].name.len = dn;
            props[count].value.ptr = dval;
            props[count].value.len = dv;
            props[count].has_value = eq != NULL;
        } else {
            dn = url_decoded_len(seg, nlen);
            dv = url_decoded_len(val, vlen);
            if (dn == SIZE_MAX || dv == SIZE_MAX)
                return CIOT_EPROTOCOL;
            /* a property that fits decoded, though not encoded */
            if (need <= cap && dn + dv <= cap - need && count < max) {
                char *dname = buf + need;
                url_decode_unchecked(dname, seg, nlen);
                url_decode_unchecked(dname + dn, val, vlen);
                if (!ciot__utf8_valid(dname, dn, true) || !ciot__utf8_valid(dname + dn, dv, true))
                    return CIOT_EPROTOCOL;
                props[count].name.ptr = dname;
                props[count].name.len = dn;
                props[count].value.ptr = dname + dn;
                props[count].value.len = dv;
                props[count].has_value = eq != NULL;
            }
        }
        need += dn + dv;
        count++;
    }
    *buf_len = need;
    *n = count;
    return (need > cap || count > max) ? CIOT_ENOSPC : 0;
}

static bool seg_ok(const char *s, size_t len)
{
    return len > 0 && !memchr(s, '/', len);
}

int ciot__azure_c2d_split(bool *matched, ciot_view *device, ciot_view *module, ciot_view *bag,
                          const char *topic, size_t len)
{
    static const char pre[] = "devices/";
    static const char mid[] = "/messages/devicebound/";
    static const char mod[] = "/modules/";
    if (!matched || !device || !module || !bag || (!topic && len))
        return CIOT_EINVAL;
    *matched = false;
    size_t pl = sizeof pre - 1, ml = sizeof mid - 1, dl = sizeof mod - 1;
    if (len < pl || memcmp(topic, pre, pl) != 0)
        return 0;
    const char *p = topic + pl, *end = topic + len;
    const char *slash = memchr(p, '/', (size_t)(end - p));
    if (!slash || !seg_ok(p, (size_t)(slash - p)))
        return 0;
    ciot_view d = {p, (size_t)(slash - p)}, m = {NULL, 0};
    p = slash;
    if ((size_t)(end - p) >= dl && memcmp(p, mod, dl) == 0) {
        const char *q = p + dl;
        const char *s2 = memchr(q, '/', (size_t)(end - q));
        if (!s2 || !seg_ok(q, (size_t)(s2 - q)))
            return 0;
        m.ptr = q;
        m.len = (size_t)(s2 - q);
        p = s2;
    }
    if ((size_t)(end - p) < ml || memcmp(p, mid, ml) != 0)
        return 0;
    p += ml;
    *device = d;
    *module = m;
    bag->ptr = p;
    bag->len = (size_t)(end - p);
    *matched = true;
    return 0;
}
