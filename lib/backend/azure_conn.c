/*
 * Azure IoT Hub device connection strings (protocols.md §4.3).
 *
 * Unlike azure-iot-sdk-c, which logs and ignores unknown names, every
 * problem is an error here: a misspelt "SharedAccesKey" would otherwise
 * turn into "no credential" far from its cause.
 */
#include "backend/azure_conn.h"

#include "core/azure.h"
#include "core/utf8.h"
#include "internal.h"

#include <stdio.h>
#include <string.h>

enum field {
    F_HOST,
    F_DEVICE,
    F_KEY,
    F_KEY_NAME,
    F_SAS,
    F_MODULE,
    F_GATEWAY,
    F_X509,
    F_PROVISIONING,
    F_COUNT
};

static const char *const field_names[F_COUNT] = {
    "HostName", "DeviceId",        "SharedAccessKey", "SharedAccessKeyName", "SharedAccessSignature",
    "ModuleId", "GatewayHostName", "x509",            "UseProvisioning",
};

static int fail(char *errmsg, size_t errcap, int rc, const char *fmt, ...) CIOT__PRINTF(4, 5);

static int fail(char *errmsg, size_t errcap, int rc, const char *fmt, ...)
{
    if (errmsg && errcap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errmsg, errcap, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* A field name for a message: printable ASCII only, at most 40 bytes. */
static void safe_name(char *dst, const char *s, size_t len)
{
    size_t n = len < 40 ? len : 40;
    for (size_t i = 0; i < n; i++)
        dst[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    dst[n] = '\0';
    if (len > n)
        memcpy(dst + n, "...", 4);
}

static bool printable_utf8(const char *s, size_t len)
{
    if (!ciot__utf8_valid(s, len, false))
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

void ciot__azure_conn_free(ciot__azure_conn *c)
{
    if (!c)
        return;
    size_t n = c->block_size_;
    ciot__wipe(c, n);
    ciot__free(c);
}

int ciot__azure_conn_parse(ciot__azure_conn **out, const char *s, size_t len, char *errmsg,
                           size_t errcap)
{
    if (errmsg && errcap)
        errmsg[0] = '\0';
    if (!out || (!s && len))
        return fail(errmsg, errcap, CIOT_EINVAL, "NULL argument");
    *out = NULL;
    if (len > CIOT__AZURE_CONN_MAX)
        return fail(errmsg, errcap, CIOT_ERANGE, "connection string longer than %d bytes",
                    CIOT__AZURE_CONN_MAX);
    if (!ciot__utf8_valid(s, len, false))
        return fail(errmsg, errcap, CIOT_EINVAL, "connection string is not UTF-8 or holds a NUL byte");

    /* Pass 1: split and check; remember each value's place. */
    ciot_view val[F_COUNT] = {{0}};
    bool seen[F_COUNT] = {false};
    size_t pos = 0;
    while (pos < len) {
        const char *seg = s + pos;
        const char *semi = memchr(seg, ';', len - pos);
        size_t slen = semi ? (size_t)(semi - seg) : len - pos;
        size_t at = pos;
        pos += slen + (semi ? 1 : 0);
        if (slen == 0) /* a single trailing ';' never gets here */
            return fail(errmsg, errcap, CIOT_EINVAL, "empty field at offset %zu", at);
        const char *eq = memchr(seg, '=', slen);
        if (!eq)
            return fail(errmsg, errcap, CIOT_EINVAL, "field without '=' at offset %zu", at);
        size_t nlen = (size_t)(eq - seg);
        if (nlen == 0)
            return fail(errmsg, errcap, CIOT_EINVAL, "field without a name at offset %zu", at);
        int f = -1;
        for (int i = 0; i < F_COUNT; i++)
            if (strlen(field_names[i]) == nlen && memcmp(field_names[i], seg, nlen) == 0)
                f = i;
        if (f < 0) {
            char nm[48];
            safe_name(nm, seg, nlen);
            return fail(errmsg, errcap, CIOT_EUNKNOWN_OPTION,
                        "unknown field '%s' at offset %zu (names are case-sensitive)", nm, at);
        }
        if (seen[f])
            return fail(errmsg, errcap, CIOT_EEXIST, "field %s given twice", field_names[f]);
        seen[f] = true;
        val[f].ptr = eq + 1;
        val[f].len = slen - nlen - 1;
        if (val[f].len == 0)
            return fail(errmsg, errcap, CIOT_EINVAL, "field %s has an empty value", field_names[f]);
    }

    /* Values of the wrong form. */
    if (seen[F_HOST] && !ciot__azure_host_valid(val[F_HOST].ptr, val[F_HOST].len))
        return fail(errmsg, errcap, CIOT_EINVAL,
                    "HostName is not a host name (A-Z a-z 0-9 - . _, at most 255 bytes)");
    if (seen[F_GATEWAY] && !ciot__azure_host_valid(val[F_GATEWAY].ptr, val[F_GATEWAY].len))
        return fail(errmsg, errcap, CIOT_EINVAL,
                    "GatewayHostName is not a host name (A-Z a-z 0-9 - . _, at most 255 bytes)");
    if (seen[F_DEVICE] && !ciot__azure_id_valid(val[F_DEVICE].ptr, val[F_DEVICE].len))
        return fail(errmsg, errcap, CIOT_EINVAL,
                    "DeviceId has a character outside A-Z a-z 0-9 - . %% _ * ? ! ( ) , : = @ $ ' "
                    "or is longer than 128 bytes");
    if (seen[F_MODULE] && !ciot__azure_id_valid(val[F_MODULE].ptr, val[F_MODULE].len))
        return fail(errmsg, errcap, CIOT_EINVAL,
                    "ModuleId has a character outside A-Z a-z 0-9 - . %% _ * ? ! ( ) , : = @ $ ' "
                    "or is longer than 128 bytes");
    if (seen[F_KEY_NAME] && (val[F_KEY_NAME].len > CIOT__AZURE_POLICY_MAX ||
                             !printable_utf8(val[F_KEY_NAME].ptr, val[F_KEY_NAME].len)))
        return fail(errmsg, errcap, CIOT_EINVAL,
                    "SharedAccessKeyName has control characters or is longer than %d bytes",
                    CIOT__AZURE_POLICY_MAX);
    if (seen[F_SAS]) {
        static const char pre[] = "SharedAccessSignature ";
        if (val[F_SAS].len <= sizeof pre - 1 || memcmp(val[F_SAS].ptr, pre, sizeof pre - 1) != 0 ||
            !printable_utf8(val[F_SAS].ptr, val[F_SAS].len))
            return fail(errmsg, errcap, CIOT_EINVAL,
                        "SharedAccessSignature does not start with 'SharedAccessSignature ' or has "
                        "control characters");
    }
    if (seen[F_X509] && !(val[F_X509].len == 4 && memcmp(val[F_X509].ptr, "true", 4) == 0))
        return fail(errmsg, errcap, CIOT_ERANGE, "x509 accepts only the value 'true'");
    if (seen[F_PROVISIONING]) {
        if (!(val[F_PROVISIONING].len == 4 && memcmp(val[F_PROVISIONING].ptr, "true", 4) == 0))
            return fail(errmsg, errcap, CIOT_ERANGE, "UseProvisioning accepts only the value 'true'");
        return fail(errmsg, errcap, CIOT_ENOTBUILT,
                    "UseProvisioning=true needs the Device Provisioning Service, which this "
                    "library does not implement");
    }
    size_t key_max = 0;
    if (seen[F_KEY]) {
        if (val[F_KEY].len > CIOT__AZURE_KEY_B64_MAX)
            return fail(errmsg, errcap, CIOT_ERANGE, "SharedAccessKey longer than %d characters",
                        CIOT__AZURE_KEY_B64_MAX);
        int rc = ciot__b64_decode(NULL, 0, &key_max, val[F_KEY].ptr, val[F_KEY].len);
        if (rc == CIOT_ECORRUPT)
            return fail(errmsg, errcap, CIOT_ECORRUPT,
                        "SharedAccessKey is not base64 (standard alphabet, padded with '=', "
                        "no whitespace)");
        if (rc != 0 && rc != CIOT_ENOSPC)
            return fail(errmsg, errcap, rc, "SharedAccessKey could not be decoded");
    }

    /* Whole-string rules. */
    if (!seen[F_HOST])
        return fail(errmsg, errcap, CIOT_ENOTFOUND, "HostName is missing");
    if (!seen[F_DEVICE])
        return fail(errmsg, errcap, CIOT_ENOTFOUND, "DeviceId is missing");
    if (seen[F_X509] && (seen[F_KEY] || seen[F_SAS] || seen[F_KEY_NAME]))
        return fail(errmsg, errcap, CIOT_ETYPE,
                    "x509=true cannot go with SharedAccessKey, SharedAccessKeyName or "
                    "SharedAccessSignature");
    if (seen[F_KEY] && seen[F_SAS])
        return fail(errmsg, errcap, CIOT_ETYPE,
                    "give SharedAccessKey or SharedAccessSignature, not both");
    if (seen[F_KEY_NAME] && seen[F_SAS])
        return fail(errmsg, errcap, CIOT_ETYPE,
                    "SharedAccessKeyName goes with SharedAccessKey, not with SharedAccessSignature");
    if (seen[F_KEY_NAME] && !seen[F_KEY])
        return fail(errmsg, errcap, CIOT_ENOTFOUND, "SharedAccessKeyName given without SharedAccessKey");
    if (!seen[F_X509] && !seen[F_KEY] && !seen[F_SAS])
        return fail(errmsg, errcap, CIOT_ENOTFOUND,
                    "no credential: give SharedAccessKey, SharedAccessSignature or x509=true");

    /* Pass 2: one block holds the struct, every string and the key. */
    size_t size = sizeof(ciot__azure_conn);
    for (int f = 0; f < F_COUNT; f++)
        if (seen[f] && f != F_KEY && f != F_X509)
            size += val[f].len + 1;
    size += key_max;
    unsigned char *block = ciot__malloc(size);
    if (!block)
        return fail(errmsg, errcap, CIOT_ENOMEM, "out of memory");
    memset(block, 0, sizeof(ciot__azure_conn));
    ciot__azure_conn *c = (ciot__azure_conn *)block;
    c->block_size_ = size;
    unsigned char *p = block + sizeof(ciot__azure_conn);
    const char **dst[F_COUNT] = {&c->host,     &c->device_id, NULL,           &c->key_name, &c->sas,
                                 &c->module_id, &c->gateway_host, NULL, NULL};
    for (int f = 0; f < F_COUNT; f++) {
        if (!seen[f] || !dst[f])
            continue;
        memcpy(p, val[f].ptr, val[f].len);
        p[val[f].len] = '\0';
        *dst[f] = (const char *)p;
        p += val[f].len + 1;
    }
    if (seen[F_KEY]) {
        size_t kl = 0;
        if (ciot__b64_decode(p, key_max, &kl, val[F_KEY].ptr, val[F_KEY].len) != 0 || kl != key_max) {
            ciot__azure_conn_free(c);
            return fail(errmsg, errcap, CIOT_ERROR, "SharedAccessKey could not be decoded");
        }
        c->key = p;
        c->key_len = kl;
    }
    c->x509 = seen[F_X509];
    *out = c;
    return 0;
}
