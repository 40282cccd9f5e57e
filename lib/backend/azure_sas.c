/*
 * Azure IoT Hub SAS tokens (protocols.md §4.2; rules in doc/azure.md).
 */
#include <cloudiot/azure.h>

#include "backend/azure_conn.h"
#include "core/azure.h"
#include "core/utf8.h"
#include "internal.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <string.h>

/* sr: host (unreserved only) + the two separators + two ids, all encoded. */
#define SR_MAX (CIOT__AZURE_HOST_MAX + 2 * 13 + 2 * 3 * CIOT__AZURE_ID_MAX)
#define U64_DIGITS 20

static size_t u64_to_dec(char *out, uint64_t v)
{
    char tmp[U64_DIGITS];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

static bool policy_valid(const char *s, size_t len)
{
    if (!s || len == 0 || len > CIOT__AZURE_POLICY_MAX || !ciot__utf8_valid(s, len, false))
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

int ciot__azure_sas_sign(char *out, size_t cap, size_t *out_len, const char *host, size_t hlen,
                         const char *device, size_t dlen, const char *module, size_t mlen,
                         const char *policy, size_t plen, const unsigned char *key, size_t klen,
                         uint64_t expiry)
{
    if ((!out && cap) || !ciot__azure_host_valid(host, hlen) || !ciot__azure_id_valid(device, dlen) ||
        (module && !ciot__azure_id_valid(module, mlen)) || (policy && !policy_valid(policy, plen)) ||
        !key || klen == 0 || klen > INT32_MAX)
        return CIOT_EINVAL;
    if (expiry == 0)
        return CIOT_ERANGE;

    /* string to sign: sr "\n" se */
    char sts[SR_MAX + 1 + U64_DIGITS];
    size_t n = ciot__azure_url_encode(sts, host, hlen);
    memcpy(sts + n, "%2Fdevices%2F", 13);
    n += 13;
    n += ciot__azure_url_encode(sts + n, device, dlen);
    if (module) {
        memcpy(sts + n, "%2Fmodules%2F", 13);
        n += 13;
        n += ciot__azure_url_encode(sts + n, module, mlen);
    }
    size_t sr_len = n;
    sts[n++] = '\n';
    size_t se_len = u64_to_dec(sts + n, expiry);
    n += se_len;

    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (!HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)sts, n, mac, &mac_len) ||
        mac_len != 32)
        return CIOT_ERROR;
    char sig[44];
    ciot__b64_encode(sig, mac, 32);
    ciot__wipe(mac, sizeof mac);

    static const char head[] = "SharedAccessSignature sr=";
    size_t sig_enc = ciot__azure_url_encoded_len(sig, sizeof sig);
    size_t need = (sizeof head - 1) + sr_len + 5 /* &sig= */ + sig_enc + 4 /* &se= */ + se_len;
    if (policy)
        need += 5 /* &skn= */ + ciot__azure_url_encoded_len(policy, plen);
    if (out_len)
        *out_len = need;
    if (cap < need)
        return CIOT_ENOSPC;

    char *o = out;
    memcpy(o, head, sizeof head - 1);
    o += sizeof head - 1;
    memcpy(o, sts, sr_len);
    o += sr_len;
    memcpy(o, "&sig=", 5);
    o += 5;
    o += ciot__azure_url_encode(o, sig, sizeof sig);
    memcpy(o, "&se=", 4);
    o += 4;
    memcpy(o, sts + sr_len + 1, se_len);
    o += se_len;
    if (policy) {
        memcpy(o, "&skn=", 5);
        o += 5;
        o += ciot__azure_url_encode(o, policy, plen);
    }
    if (cap > need)
        *o = '\0';
    return 0;
}

int ciot_azure_sas_token(char *out, size_t cap, size_t *out_len, const char *host,
                         const char *device_id, const char *module_id, const char *policy_name,
                         const char *key_base64, uint64_t expiry_unix)
{
    if ((!out && cap) || !host || !device_id || !key_base64)
        return CIOT_EINVAL;
    /* Bounded scans: nothing valid is longer than these limits. */
    size_t hlen = strnlen(host, CIOT__AZURE_HOST_MAX + 1);
    size_t dlen = strnlen(device_id, CIOT__AZURE_ID_MAX + 1);
    size_t mlen = module_id ? strnlen(module_id, CIOT__AZURE_ID_MAX + 1) : 0;
    size_t plen = policy_name ? strnlen(policy_name, CIOT__AZURE_POLICY_MAX + 1) : 0;
    size_t klen = strnlen(key_base64, CIOT__AZURE_KEY_B64_MAX + 1);
    if (!ciot__azure_host_valid(host, hlen) || !ciot__azure_id_valid(device_id, dlen) ||
        (module_id && !ciot__azure_id_valid(module_id, mlen)) || klen == 0)
        return CIOT_EINVAL;
    if (policy_name && plen > CIOT__AZURE_POLICY_MAX)
        return CIOT_ERANGE;
    if (policy_name && !policy_valid(policy_name, plen))
        return CIOT_EINVAL;
    if (klen > CIOT__AZURE_KEY_B64_MAX)
        return CIOT_ERANGE;
    if (expiry_unix == 0)
        return CIOT_ERANGE;

    unsigned char key[CIOT__AZURE_KEY_B64_MAX / 4 * 3];
    size_t key_len = 0;
    int rc = ciot__b64_decode(key, sizeof key, &key_len, key_base64, klen);
    if (rc == 0 && key_len == 0)
        rc = CIOT_EINVAL;
    if (rc == 0)
        rc = ciot__azure_sas_sign(out, cap, out_len, host, hlen, device_id, dlen, module_id, mlen,
                                  policy_name, plen, key, key_len, expiry_unix);
    ciot__wipe(key, sizeof key);
    return rc;
}
