/*
 * libFuzzer target: Azure connection strings, C2D topics and property bags.
 *
 * Byte 0 picks the mode (low 2 bits); the rest is copied without a
 * terminator, so that any overread is caught by ASan.
 *  0: connection-string parser. Only documented codes; a message on every
 *     failure, never holding the SharedAccessKey value; on success every
 *     field is well-formed and the key (if any) signs a token.
 *  1: C2D topic split + bag decoding. The size reported by a measuring call
 *     is exact; decoded properties re-encoded as a telemetry bag decode to
 *     the same properties.
 *  2: base64 and percent-decoding: whatever decodes re-encodes to input that
 *     decodes the same (base64: to the very same text).
 */
#include "backend/azure_conn.h"
#include "core/azure.h"
#include "internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_conn(const char *s, size_t len)
{
    ciot__azure_conn *c = NULL;
    char msg[CIOT__AZURE_ERRMSG_MAX];
    int rc = ciot__azure_conn_parse(&c, s, len, msg, sizeof msg);
    if (rc != 0) {
        if (c || !msg[0])
            abort();
        switch (rc) {
        case CIOT_EUNKNOWN_OPTION:
        case CIOT_EEXIST:
        case CIOT_ENOTFOUND:
        case CIOT_EINVAL:
        case CIOT_ETYPE:
        case CIOT_ECORRUPT:
        case CIOT_ERANGE:
        case CIOT_ENOTBUILT:
            break;
        default:
            abort();
        }
        /* the key's value never appears in a message (an unknown field
         * name is echoed, so that case is left out) */
        static const char tag[] = "SharedAccessKey=";
        for (size_t i = 0; rc != CIOT_EUNKNOWN_OPTION && i + sizeof tag - 1 <= len; i++) {
            if (memcmp(s + i, tag, sizeof tag - 1) != 0 || (i && s[i - 1] != ';'))
                continue;
            const char *v = s + i + sizeof tag - 1;
            size_t vl = 0;
            while (v + vl < s + len && v[vl] != ';')
                vl++;
            /* A key that is also a word of the parser's messages ("HostName")
             * would match by chance: only keys with a character no message
             * word has ('+', '/', '=' or a digit) are looked for. */
            bool distinctive = false;
            for (size_t k = 0; k < vl; k++)
                if (v[k] == '+' || v[k] == '/' || v[k] == '=' || (v[k] >= '0' && v[k] <= '9'))
                    distinctive = true;
            if (distinctive && vl >= 6 && vl < 64 && !memchr(v, '\0', vl)) {
                char needle[64];
                memcpy(needle, v, vl);
                needle[vl] = '\0';
                if (strstr(msg, needle))
                    abort();
            }
        }
        return;
    }
    if (!c || !c->host || !c->device_id ||
        !ciot__azure_host_valid(c->host, strlen(c->host)) ||
        !ciot__azure_id_valid(c->device_id, strlen(c->device_id)) ||
        (c->module_id && !ciot__azure_id_valid(c->module_id, strlen(c->module_id))) ||
        (c->gateway_host && !ciot__azure_host_valid(c->gateway_host, strlen(c->gateway_host))))
        abort();
    int creds = (c->key != NULL) + (c->sas != NULL) + (c->x509 ? 1 : 0);
    if (creds != 1 || (c->key != NULL) != (c->key_len > 0))
        abort();
    if (c->key) {
        char tok[1536];
        size_t tl = 0;
        int r = ciot__azure_sas_sign(tok, sizeof tok, &tl, c->host, strlen(c->host), c->device_id,
                                     strlen(c->device_id), c->module_id,
                                     c->module_id ? strlen(c->module_id) : 0, c->key_name,
                                     c->key_name ? strlen(c->key_name) : 0, c->key, c->key_len, 1);
        if (r != 0 || tl >= sizeof tok || strlen(tok) != tl)
            abort();
    }
    ciot__azure_conn_free(c);
}

static bool same_props(const ciot__azure_prop *a, const ciot__azure_prop *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (a[i].has_value != b[i].has_value || a[i].name.len != b[i].name.len ||
            a[i].value.len != b[i].value.len || memcmp(a[i].name.ptr, b[i].name.ptr, a[i].name.len) != 0 ||
            (a[i].value.len && memcmp(a[i].value.ptr, b[i].value.ptr, a[i].value.len) != 0))
            return false;
    }
    return true;
}

static void fuzz_bag(const char *s, size_t len)
{
    bool matched = false;
    ciot_view dev, mod, bag = {s, len};
    if (ciot__azure_c2d_split(&matched, &dev, &mod, &bag, s, len) != 0)
        abort();
    if (!matched) {
        bag.ptr = s; /* decode the whole input as a bag */
        bag.len = len;
    } else if (bag.ptr < s || bag.ptr + bag.len != s + len || !dev.len || memchr(dev.ptr, '/', dev.len)) {
        abort();
    }
    size_t need = 0, n = 0;
    int rc = ciot__azure_bag_decode(NULL, 0, &need, NULL, 0, &n, bag.ptr, bag.len);
    if (rc == CIOT_EPROTOCOL)
        return;
    if ((rc != 0 && rc != CIOT_ENOSPC) || need > bag.len || n > bag.len)
        abort();
    char *buf = malloc(need ? need : 1);
    ciot__azure_prop *props = malloc((n ? n : 1) * sizeof *props);
    if (!buf || !props)
        abort();
    size_t used = 0, got = 0;
    rc = ciot__azure_bag_decode(buf, need, &used, props, n, &got, bag.ptr, bag.len);
    if (rc == 0) {
        if (used != need || got != n)
            abort();
        for (size_t i = 0; i < got; i++)
            if (!props[i].name.len || (props[i].value.ptr < buf && props[i].value.len))
                abort();
        /* re-encode (when the encoder accepts these names) and decode again */
        size_t tl = 0;
        int er = ciot__azure_telemetry_topic(NULL, 0, &tl, "d", 1, NULL, 0, NULL, props, got);
        if (er == CIOT_ENOSPC) {
            char *topic = malloc(tl);
            if (!topic || ciot__azure_telemetry_topic(topic, tl, &tl, "d", 1, NULL, 0, NULL, props, got) != 0)
                abort();
            const size_t pre = sizeof "devices/d/messages/events/" - 1;
            char *buf2 = malloc(need ? need : 1);
            ciot__azure_prop *props2 = malloc((n ? n : 1) * sizeof *props2);
            size_t used2 = 0, got2 = 0;
            if (!buf2 || !props2 ||
                ciot__azure_bag_decode(buf2, need, &used2, props2, n, &got2, topic + pre, tl - pre) != 0 ||
                used2 != used || got2 != got || !same_props(props, props2, got))
                abort();
            free(buf2);
            free(props2);
            free(topic);
        } else if (er != CIOT_EINVAL && er != CIOT_ERANGE && !(er == 0 && tl == 0)) {
            abort();
        }
    } else if (rc != CIOT_EPROTOCOL) {
        /* a UTF-8 error only shows up while decoding */
        abort();
    }
    free(buf);
    free(props);
}

static void fuzz_codecs(const char *s, size_t len)
{
    unsigned char *bin = malloc(len ? len : 1);
    size_t bl = 0;
    if (!bin)
        abort();
    int rc = ciot__b64_decode(bin, len, &bl, s, len);
    if (rc == 0) {
        char *back = malloc(len ? len : 1);
        if (!back || ciot__b64_encoded_len(bl) != len)
            abort();
        ciot__b64_encode(back, bin, bl);
        if (len && memcmp(back, s, len) != 0)
            abort();
        free(back);
    } else if (rc != CIOT_ECORRUPT) {
        abort();
    }
    size_t dl = 0;
    rc = ciot__azure_url_decode((char *)bin, len, &dl, s, len);
    if (rc == 0) {
        if (dl > len)
            abort();
        size_t el = ciot__azure_url_encoded_len((char *)bin, dl);
        char *enc = malloc(el ? el : 1);
        char *dec = malloc(dl ? dl : 1);
        size_t dl2 = 0;
        if (!enc || !dec || ciot__azure_url_encode(enc, (char *)bin, dl) != el ||
            ciot__azure_url_decode(dec, dl, &dl2, enc, el) != 0 || dl2 != dl ||
            (dl && memcmp(dec, bin, dl) != 0))
            abort();
        free(enc);
        free(dec);
    } else if (rc != CIOT_EPROTOCOL) {
        abort();
    }
    free(bin);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0] & 3u;
    size_t len = size - 1;
    char *s = malloc(len ? len : 1);
    if (!s)
        abort();
    memcpy(s, data + 1, len);
    if (mode == 0)
        fuzz_conn(s, len);
    else if (mode == 1)
        fuzz_bag(s, len);
    else
        fuzz_codecs(s, len);
    free(s);
    return 0;
}
