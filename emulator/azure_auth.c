/*
 * Azure IoT Hub devices in the emulator (doc/emulator.md, "Azure IoT Hub"):
 * authentication at CONNECT, the per-connection topic rules, and the
 * disconnection of a connection whose SAS token expires.
 *
 * A CONNECT whose user name has the hub's form
 * `{host}/{deviceId}/?api-version=...` (protocols.md §4.1) is an Azure
 * device. It is accepted when: host is the emulator's hub host name
 * (plugin_opt_hub_name or "hubHostName" in <data>/emulator.json); the
 * client id equals the device id; the device is registered in
 * <data>/registry/azure-devices/<deviceId>.json (written by
 * `cloudiot-emulator create-device`) and "enabled"; and either
 *  - "authentication":"sas": the password is a SAS token (§4.2) whose sr
 *    is {host}/devices/{deviceId} (percent-encoded with either hex case),
 *    whose se is in the future, and whose sig is the HMAC-SHA256 of
 *    `sr-as-sent \n se-as-sent` with the primary or secondary key; or
 *  - "authentication":"x509": a verified client certificate whose SHA-1 or
 *    SHA-256 fingerprint is one of the registered thumbprints, or, when no
 *    thumbprint is registered (az's x509_ca), whose CN is the device id.
 * Anything else is refused (CONNACK "not authorized") with a log line
 * giving the reason. Modules and shared-access-policy tokens (skn) are not
 * emulated and are refused as such.
 */
#include "emu.h"

#include "core/azure.h"
#include "internal.h"

#include <jansson.h>
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/x509.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SAS_PREFIX "SharedAccessSignature "
#define SAS_MAX 2048

bool emu_azure_username(const char *username)
{
    return username && strstr(username, "/?api-version=") != NULL;
}

/* registry/azure-devices/<id>.json (id already validated), or NULL. */
static json_t *load_device(const emu *e, const char *id)
{
    if (!e->data_dir)
        return NULL;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/registry/azure-devices/%s.json", e->data_dir, id) >=
        (int)sizeof path)
        return NULL;
    char *text;
    size_t len;
    if (emu_read_file(&text, &len, path, 64 * 1024) != 0) {
        if (errno != ENOENT)
            emu_log(MOSQ_LOG_WARNING, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    json_error_t err;
    json_t *doc = json_loadb(text, len, 0, &err);
    ciot__free(text);
    if (!json_is_object(doc)) {
        emu_log(MOSQ_LOG_WARNING, "%s: not a JSON object", path);
        json_decref(doc);
        return NULL;
    }
    return doc;
}

/* One field of the token: its raw (still encoded) value. */
typedef struct sas_field {
    const char *v;
    size_t len;
} sas_field;

/* Splits `SharedAccessSignature k=v&k=v...` into sr, sig, se and skn.
 * NULL, or why the token is malformed. */
static const char *sas_split(const char *pw, sas_field *sr, sas_field *sig, sas_field *se,
                             sas_field *skn)
{
    size_t plen = strlen(SAS_PREFIX);
    if (strncmp(pw, SAS_PREFIX, plen) != 0)
        return "the password is not a SAS token (SharedAccessSignature ...)";
    const char *p = pw + plen;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t n = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        if (!eq)
            return "a SAS token field without '='";
        size_t klen = (size_t)(eq - p);
        sas_field *f = NULL;
        if (klen == 2 && strncmp(p, "sr", 2) == 0)
            f = sr;
        else if (klen == 3 && strncmp(p, "sig", 3) == 0)
            f = sig;
        else if (klen == 2 && strncmp(p, "se", 2) == 0)
            f = se;
        else if (klen == 3 && strncmp(p, "skn", 3) == 0)
            f = skn;
        else
            return "an unknown SAS token field";
        if (f->v)
            return "a SAS token field given twice";
        f->v = eq + 1;
        f->len = n - klen - 1;
        p += n;
        if (*p == '&')
            p++;
    }
    if (!sr->v || !sig->v || !se->v)
        return "the SAS token lacks sr, sig or se";
    return NULL;
}

static bool hmac_matches(const char *key_b64, const char *sts, size_t sts_len,
                         const unsigned char *sig, size_t sig_len)
{
    unsigned char key[256];
    size_t klen = 0;
    if (!key_b64 || ciot__b64_decode(key, sizeof key, &klen, key_b64, strlen(key_b64)) != 0 ||
        klen == 0)
        return false;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mlen = 0;
    bool ok = HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)sts, sts_len, mac,
                   &mlen) != NULL &&
              mlen == sig_len && CRYPTO_memcmp(mac, sig, sig_len) == 0;
    ciot__wipe(key, sizeof key);
    return ok;
}

/* NULL when the token authenticates device id on host, else the reason. */
static const char *check_sas(const emu *e, json_t *dev, const char *id, const char *password,
                             int64_t *expiry)
{
    if (!password || !*password)
        return "no SAS token (empty password)";
    if (strlen(password) > SAS_MAX)
        return "SAS token too long";
    sas_field sr = {0}, sig = {0}, se = {0}, skn = {0};
    const char *why = sas_split(password, &sr, &sig, &se, &skn);
    if (why)
        return why;
    if (skn.v)
        return "shared access policy tokens (skn) are not emulated; sign with the device key";
    /* resource: {host}/devices/{id}, compared after percent-decoding */
    char res[SAS_MAX], want[SAS_MAX];
    size_t rlen = 0;
    if (ciot__azure_url_decode(res, sizeof res, &rlen, sr.v, sr.len) != 0)
        return "wrong resource (sr is not percent-encoded text)";
    int wn = snprintf(want, sizeof want, "%s/devices/%s", e->hub_host, id);
    if (wn < 0 || (size_t)wn != rlen || memcmp(res, want, rlen) != 0)
        return "wrong resource (sr is not <hub host>/devices/<deviceId>)";
    /* expiry */
    if (se.len == 0 || se.len > 19)
        return "se is not a number of seconds";
    int64_t exp = 0;
    for (size_t i = 0; i < se.len; i++) {
        if (se.v[i] < '0' || se.v[i] > '9')
            return "se is not a number of seconds";
        exp = exp * 10 + (se.v[i] - '0');
    }
    if (exp <= (int64_t)time(NULL))
        return "token expired";
    /* signature over sr as sent, LF, se as sent (§4.2 step 4) */
    char sigtxt[256];
    size_t slen = 0;
    unsigned char sigbin[64];
    size_t blen = 0;
    if (ciot__azure_url_decode(sigtxt, sizeof sigtxt, &slen, sig.v, sig.len) != 0 ||
        ciot__b64_decode(sigbin, sizeof sigbin, &blen, sigtxt, slen) != 0 || blen != 32)
        return "bad signature (sig is not a base64 HMAC-SHA256)";
    char sts[SAS_MAX + 32];
    if (sr.len + 1 + se.len > sizeof sts)
        return "SAS token too long";
    memcpy(sts, sr.v, sr.len);
    sts[sr.len] = '\n';
    memcpy(sts + sr.len + 1, se.v, se.len);
    size_t sts_len = sr.len + 1 + se.len;
    const char *k1 = json_string_value(json_object_get(dev, "primaryKey"));
    const char *k2 = json_string_value(json_object_get(dev, "secondaryKey"));
    if (!hmac_matches(k1, sts, sts_len, sigbin, blen) &&
        !hmac_matches(k2, sts, sts_len, sigbin, blen))
        return "bad signature (not signed with the device's primary or secondary key)";
    *expiry = exp;
    return NULL;
}

static void fingerprint(X509 *cert, const EVP_MD *md, char *hex, size_t cap)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    hex[0] = '\0';
    if (!X509_digest(cert, md, d, &n) || 2 * (size_t)n + 1 > cap)
        return;
    for (unsigned i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02X", d[i]);
}

static bool thumb_eq(json_t *v, const char *a, const char *b)
{
    const char *t = json_string_value(v);
    return t && *t && (strcasecmp(t, a) == 0 || strcasecmp(t, b) == 0);
}

/* NULL when the connection's certificate authenticates device id. */
static const char *check_x509(const emu_client *c, json_t *dev, const char *id)
{
    X509 *cert = mosquitto_client_certificate(c->client);
    if (!cert)
        return "an X.509 device connected without a client certificate";
    char sha1[2 * 20 + 1], sha256[2 * 32 + 1];
    fingerprint(cert, EVP_sha1(), sha1, sizeof sha1);
    fingerprint(cert, EVP_sha256(), sha256, sizeof sha256);
    char cn[256];
    int cnrc = emu_cert_cn(cert, cn);
    X509_free(cert);
    json_t *tp = json_object_get(dev, "x509Thumbprint");
    json_t *p = json_object_get(tp, "primaryThumbprint");
    json_t *s = json_object_get(tp, "secondaryThumbprint");
    if (json_string_length(p) || json_string_length(s)) {
        if (thumb_eq(p, sha1, sha256) || thumb_eq(s, sha1, sha256))
            return NULL;
        return "the client certificate's thumbprint is not registered";
    }
    if (cnrc != 0 || strcmp(cn, id) != 0)
        return "the client certificate's CN is not the device id";
    return NULL;
}

int emu_azure_auth(emu *e, emu_client *c, const char *username, const char *password)
{
    const char *id = c->client_id;
    /* {host}/{deviceId}/?api-version=... ; a module has one more segment */
    const char *slash = strchr(username, '/');
    const char *q = strstr(username, "/?api-version=");
    const char *why = NULL;
    char dev_id[CIOT__AZURE_ID_MAX + 1];
    size_t hlen = slash ? (size_t)(slash - username) : 0;
    size_t dlen = slash && q > slash ? (size_t)(q - slash - 1) : 0;
    if (hlen != strlen(e->hub_host) || strncmp(username, e->hub_host, hlen) != 0) {
        why = "the user name's host is not this hub's host name";
    } else if (dlen == 0 || memchr(slash + 1, '/', dlen) != NULL) {
        why = dlen ? "modules are not emulated (user name {host}/{device}/{module}/...)"
                   : "no device id in the user name";
    } else if (dlen > CIOT__AZURE_ID_MAX || !ciot__azure_id_valid(slash + 1, dlen)) {
        why = "the device id in the user name is not a valid Azure device id";
    } else if (strlen(id) != dlen || strncmp(id, slash + 1, dlen) != 0) {
        why = "the client id is not the device id of the user name";
    }
    if (why) {
        emu_log(MOSQ_LOG_NOTICE, "refusing Azure device %s: %s", id, why);
        return MOSQ_ERR_AUTH;
    }
    memcpy(dev_id, slash + 1, dlen);
    dev_id[dlen] = '\0';
    json_t *dev = load_device(e, dev_id);
    const char *status = json_string_value(json_object_get(dev, "status"));
    const char *auth = json_string_value(json_object_get(dev, "authentication"));
    int64_t expiry = 0;
    if (!dev)
        why = e->data_dir ? "unknown device (not in registry/azure-devices)"
                          : "unknown device (no registry: plugin_opt_data_dir not set)";
    else if (!status || strcmp(status, "enabled") != 0)
        why = "device disabled";
    else if (auth && strcmp(auth, "x509") == 0)
        why = check_x509(c, dev, dev_id);
    else if (!auth || strcmp(auth, "sas") == 0)
        why = check_sas(e, dev, dev_id, password, &expiry);
    else
        why = "unknown authentication in the registry entry";
    json_decref(dev);
    if (why) {
        emu_log(MOSQ_LOG_NOTICE, "refusing Azure device %s: %s", dev_id, why);
        return MOSQ_ERR_AUTH;
    }
    c->azure_device = ciot__strndup(dev_id, dlen);
    c->thing = ciot__strndup(dev_id, dlen);
    if (!c->azure_device || !c->thing)
        return MOSQ_ERR_NOMEM;
    c->azure_expiry = expiry;
    if (expiry)
        emu_log(MOSQ_LOG_INFO, "Azure device %s authenticated (SAS token, se %lld)", dev_id,
                (long long)expiry);
    else
        emu_log(MOSQ_LOG_INFO, "Azure device %s authenticated (X.509)", dev_id);
    return MOSQ_ERR_SUCCESS;
}

/* ------------------------------------------------------------ topics */

static bool starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* topic = devices/{id}/<rest>: rest, else NULL. */
static const char *own_rest(const char *topic, const char *id)
{
    size_t n = strlen(id);
    if (!starts(topic, "devices/") || strncmp(topic + 8, id, n) != 0 || topic[8 + n] != '/')
        return NULL;
    return topic + 9 + n;
}

int emu_azure_acl(emu *e, emu_client *c, const char *topic, int access, int qos)
{
    const char *rest = own_rest(topic, c->azure_device);
    bool ok = false;
    switch (access) {
    case MOSQ_ACL_UNSUBSCRIBE:
        if (strcmp(topic, "$iothub/methods/POST/#") == 0)
            c->azure_methods = false;
        return MOSQ_ERR_SUCCESS;
    case MOSQ_ACL_SUBSCRIBE:
        if (strcmp(topic, "$iothub/methods/POST/#") == 0)
            c->azure_methods = true;
        ok = (rest && strcmp(rest, "messages/devicebound/#") == 0) ||
             strcmp(topic, "$iothub/methods/POST/#") == 0 ||
             strcmp(topic, "$iothub/twin/res/#") == 0 ||
             strcmp(topic, "$iothub/twin/PATCH/properties/desired/#") == 0;
        break;
    case MOSQ_ACL_WRITE:
        if (qos > 1) { /* the hub closes the connection (protocols.md §4.1) */
            if (!c->kick_pending) {
                c->kick_pending = true;
                emu_schedule_kick(e, c->client_id, "Azure device published with QoS 2");
            }
            return MOSQ_ERR_ACL_DENIED;
        }
        ok = (rest && starts(rest, "messages/events/")) ||
             starts(topic, "$iothub/methods/res/") || starts(topic, "$iothub/twin/GET/") ||
             starts(topic, "$iothub/twin/PATCH/properties/reported/");
        break;
    case MOSQ_ACL_READ:
        /* Routed deliveries: its own C2D only. The plugin's replies on
         * $iothub/... are published to the one connection by client id. */
        ok = rest && starts(rest, "messages/devicebound/");
        break;
    default:
        break;
    }
    if (ok)
        return MOSQ_ERR_SUCCESS;
    if (access != MOSQ_ACL_READ) {
        char why[EMU_MAX_TOPIC + 64];
        snprintf(why, sizeof why, "Azure device may not %s %.256s",
                 access == MOSQ_ACL_WRITE ? "publish to" : "subscribe to", topic);
        if (!c->kick_pending) {
            c->kick_pending = true;
            emu_schedule_kick(e, c->client_id, why);
        }
    }
    return MOSQ_ERR_ACL_DENIED;
}

int emu_azure_acl_offline(const char *client_id, const char *topic)
{
    const char *rest = client_id ? own_rest(topic, client_id) : NULL;
    return rest && starts(rest, "messages/devicebound/") ? MOSQ_ERR_SUCCESS
                                                          : MOSQ_ERR_ACL_DENIED;
}

void emu_azure_tick(emu *e)
{
    int64_t now = (int64_t)time(NULL);
    for (size_t b = 0; b < EMU_CLIENT_BUCKETS; b++)
        for (emu_client *c = e->clients[b]; c; c = c->next)
            if (c->azure_device && c->azure_expiry && now >= c->azure_expiry &&
                !c->kick_pending) {
                c->kick_pending = true;
                emu_schedule_kick(e, c->client_id, "Azure SAS token expired");
            }
    emu_azure_calls_tick(e);
}

emu_client *emu_azure_find_device(emu *e, const char *device_id)
{
    for (size_t b = 0; b < EMU_CLIENT_BUCKETS; b++)
        for (emu_client *c = e->clients[b]; c; c = c->next)
            if (c->azure_device && !c->kick_pending && strcmp(c->azure_device, device_id) == 0)
                return c;
    return NULL;
}
