/*
 * The Azure IoT Hub backend (protocols.md §4.1-4.3): the identity comes
 * from CIOT_OPT_AZURE_CONNECTION_STRING; client id `{device}` or
 * `{device}/{module}`; user name `{host}/{device}[/{module}]/?api-version=...`;
 * password a SAS token signed with the SharedAccessKey for every connection
 * attempt (expiry now + CIOT_OPT_SAS_TOKEN_LIFETIME_S, renewed by a clean
 * reconnect at CIOT_OPT_SAS_RENEW_PERCENT of it), or the ready-made
 * SharedAccessSignature, or none with x509=true (then a client certificate
 * is required). MQTT 3.1.1, TLS on 8883; the TCP/TLS target is
 * GatewayHostName when set, else HostName (CIOT_OPT_HOST overrides both,
 * for a local emulator). TLS is required except, as for AWS, with
 * CIOT_OPT_TLS 0 set explicitly towards a loopback address.
 */
#include "backend/azure_backend.h"
#include "backend/azure_conn.h"
#include "backend/backend.h"
#include "core/azure.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct ciot__azure_state {
    ciot__azure_conn *conn;
    int64_t lifetime_s;
    int64_t renew_percent;
    uint64_t expiry; /* of the last token signed (Unix s), 0 before */
    struct ciot__azure_device *device;
};

static bool loopback(const char *host)
{
    unsigned char a[16];
    if (strcasecmp(host, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, host, a) == 1)
        return a[0] == 127;
    if (inet_pton(AF_INET6, host, a) == 1) {
        static const unsigned char one[16] = {[15] = 1};
        return memcmp(a, one, 16) == 0;
    }
    return false;
}

static int azure_check(const char *topic, size_t len, size_t payload_len, bool is_filter,
                       char *why, size_t cap)
{
    (void)topic;
    (void)len;
    if (!is_filter && payload_len > CIOT__AZURE_MAX_PAYLOAD) {
        snprintf(why, cap, "Azure IoT Hub: message of %zu bytes, at most %d allowed", payload_len,
                 CIOT__AZURE_MAX_PAYLOAD);
        return CIOT_EINVAL;
    }
    return 0;
}

/* Sets a string the backend computed; a different one the user set is refused. */
static int set_or_match(ciot_config *eff, const ciot_config *user, int opt, const char *name,
                        const char *v, size_t n)
{
    if (user->strs[opt] && (user->lens[opt] != n || memcmp(user->strs[opt], v, n) != 0))
        return ciot__config_fail(user, CIOT_EINVAL,
                                 "Azure IoT Hub: CIOT_OPT_%s is set by the connection string; "
                                 "leave it unset (it would be \"%.*s\")",
                                 name, (int)(n > 128 ? 128 : n), v);
    if (ciot__config_set_internal(eff, opt, v, n) != 0)
        return ciot__config_fail(user, CIOT_ENOMEM, "out of memory");
    return 0;
}

static int prepare_with(ciot_config *eff, const ciot_config *user, const ciot__azure_conn *cs)
{
    size_t hl = strlen(cs->host), dl = strlen(cs->device_id);
    size_t ml = cs->module_id ? strlen(cs->module_id) : 0;
    char buf[600];
    size_t n = 0;
    int rc;

    /* client id, user name, thing (the device id in topics) */
    if (ciot__azure_client_id(buf, sizeof buf, &n, cs->device_id, dl, cs->module_id, ml) != 0)
        return ciot__config_fail(user, CIOT_EINVAL, "Azure IoT Hub: bad device or module id");
    if ((rc = set_or_match(eff, user, CIOT_OPT_CLIENT_ID, "CLIENT_ID", buf, n)) != 0)
        return rc;
    if (ciot__azure_username(buf, sizeof buf, &n, cs->host, hl, cs->device_id, dl, cs->module_id,
                             ml) != 0)
        return ciot__config_fail(user, CIOT_EINVAL, "Azure IoT Hub: bad host or id");
    if ((rc = set_or_match(eff, user, CIOT_OPT_USERNAME, "USERNAME", buf, n)) != 0)
        return rc;
    if (ciot__config_set_internal(eff, CIOT_OPT_THING_NAME, cs->device_id, dl) != 0)
        return ciot__config_fail(user, CIOT_ENOMEM, "out of memory");
    if (user->strs[CIOT_OPT_TELEMETRY_TOPIC])
        return ciot__config_fail(user, CIOT_EINVAL,
                                 "Azure IoT Hub: CIOT_OPT_TELEMETRY_TOPIC cannot be chosen: the hub "
                                 "takes telemetry on devices/{device}/messages/events/ only");
    {
        /* the module form is spelt out: the template only knows {thing} */
        if (cs->module_id)
            n = (size_t)snprintf(buf, sizeof buf, "devices/%s/modules/%s/messages/events/",
                                 cs->device_id, cs->module_id);
        else
            n = (size_t)snprintf(buf, sizeof buf, "devices/{thing}/messages/events/");
        if (ciot__config_set_internal(eff, CIOT_OPT_TELEMETRY_TOPIC, buf, n) != 0)
            return ciot__config_fail(user, CIOT_ENOMEM, "out of memory");
    }

    /* credentials */
    if (user->strs[CIOT_OPT_PASSWORD])
        return ciot__config_fail(user, CIOT_EINVAL,
                                 "Azure IoT Hub: CIOT_OPT_PASSWORD is not used: the SAS token comes "
                                 "from the connection string");
    if (cs->sas) {
        if (ciot__config_set_internal(eff, CIOT_OPT_PASSWORD, cs->sas, strlen(cs->sas)) != 0)
            return ciot__config_fail(user, CIOT_ENOMEM, "out of memory");
        ciot__log(CIOT_LOG_INFO, "azure: a ready-made SharedAccessSignature: it cannot be renewed");
    }
    if (cs->x509 && (!eff->strs[CIOT_OPT_TLS_CERT_FILE] || !eff->strs[CIOT_OPT_TLS_KEY_FILE]))
        return ciot__config_fail(user, CIOT_EINVAL,
                                 "Azure IoT Hub: x509=true needs CIOT_OPT_TLS_CERT_FILE and "
                                 "CIOT_OPT_TLS_KEY_FILE");

    /* endpoint */
    if (eff->ints[CIOT_OPT_PROTOCOL] != 4)
        return ciot__config_fail(user, CIOT_EINVAL,
                                 "Azure IoT Hub speaks MQTT 3.1.1: CIOT_OPT_PROTOCOL must be 4");
    if (!user->strs[CIOT_OPT_HOST]) {
        const char *target = cs->gateway_host ? cs->gateway_host : cs->host;
        if (ciot__config_set_internal(eff, CIOT_OPT_HOST, target, strlen(target)) != 0)
            return ciot__config_fail(user, CIOT_ENOMEM, "out of memory");
    }
    const char *host = eff->strs[CIOT_OPT_HOST];
    bool local = loopback(host);
    if (!user->set[CIOT_OPT_TLS])
        eff->ints[CIOT_OPT_TLS] = 1;
    if (!eff->ints[CIOT_OPT_TLS] && !local)
        return ciot__config_fail(user, CIOT_EINVAL,
                                 "Azure IoT Hub requires TLS: CIOT_OPT_TLS 0 is only accepted for a "
                                 "loopback host (a local emulator), not \"%s\"", host);
    if (user->set[CIOT_OPT_PORT] && eff->ints[CIOT_OPT_PORT] != 8883 && !local)
        return ciot__config_fail(user, CIOT_EINVAL,
                                 "Azure IoT Hub: MQTT is on port 8883 only (not %lld)",
                                 (long long)eff->ints[CIOT_OPT_PORT]);
    int64_t ka = eff->ints[CIOT_OPT_KEEPALIVE_S];
    if (ka == 0 || ka > CIOT__AZURE_KEEPALIVE_MAX) {
        ciot__log(CIOT_LOG_INFO, "azure: keep-alive %lld s: using %d s (the hub's useful maximum)",
                  (long long)ka, CIOT__AZURE_KEEPALIVE_MAX);
        eff->ints[CIOT_OPT_KEEPALIVE_S] = CIOT__AZURE_KEEPALIVE_MAX;
    }
    if (eff->ints[CIOT_OPT_TLS] && !eff->strs[CIOT_OPT_TLS_SNI] &&
        ciot__config_set_internal(eff, CIOT_OPT_TLS_SNI, host, strlen(host)) != 0)
        return ciot__config_fail(user, CIOT_ENOMEM, "out of memory");
    if (eff->strs[CIOT_OPT_WILL_TOPIC]) {
        /* The hub takes a will only as telemetry of this identity. */
        size_t pl = 0;
        (void)!ciot__azure_telemetry_topic(buf, sizeof buf, &pl, cs->device_id, dl, cs->module_id,
                                           ml, NULL, NULL, 0);
        if (eff->lens[CIOT_OPT_WILL_TOPIC] < pl || memcmp(eff->strs[CIOT_OPT_WILL_TOPIC], buf, pl))
            return ciot__config_fail(user, CIOT_EINVAL,
                                     "Azure IoT Hub: the will topic must be the telemetry topic "
                                     "%.*s[{properties}]", (int)pl, buf);
    }
    return 0;
}

static int azure_prepare(ciot_config *eff, const ciot_config *user)
{
    const char *s = eff->strs[CIOT_OPT_AZURE_CONNECTION_STRING];
    if (!s)
        return ciot__config_fail(user, CIOT_EINVAL,
                                 "Azure IoT Hub: CIOT_OPT_AZURE_CONNECTION_STRING is required");
    ciot__azure_conn *cs = NULL;
    char why[CIOT__AZURE_ERRMSG_MAX];
    int rc = ciot__azure_conn_parse(&cs, s, eff->lens[CIOT_OPT_AZURE_CONNECTION_STRING], why,
                                    sizeof why);
    if (rc != 0)
        return ciot__config_fail(user, rc, "CIOT_OPT_AZURE_CONNECTION_STRING: %s", why);
    rc = prepare_with(eff, user, cs);
    ciot__azure_conn_free(cs);
    return rc;
}

static int azure_open(void **out, const ciot_config *eff)
{
    struct ciot__azure_state *st = ciot__calloc(1, sizeof *st);
    if (!st)
        return CIOT_ENOMEM;
    int rc = ciot__azure_conn_parse(&st->conn, eff->strs[CIOT_OPT_AZURE_CONNECTION_STRING],
                                    eff->lens[CIOT_OPT_AZURE_CONNECTION_STRING], NULL, 0);
    if (rc != 0) {
        ciot__free(st);
        return rc;
    }
    if ((rc = ciot__azure_device_new(&st->device)) != 0) {
        ciot__azure_conn_free(st->conn);
        ciot__free(st);
        return rc;
    }
    st->lifetime_s = eff->ints[CIOT_OPT_SAS_TOKEN_LIFETIME_S];
    st->renew_percent = eff->ints[CIOT_OPT_SAS_RENEW_PERCENT];
    *out = st;
    return 0;
}

static void azure_close(void *state)
{
    struct ciot__azure_state *st = state;
    ciot__azure_conn_free(st->conn);
    ciot__azure_device_free(st->device);
    ciot__wipe(st, sizeof *st);
    ciot__free(st);
}

int ciot__azure_sign_now(struct ciot__azure_state *st, char *pw, size_t cap, uint64_t unix_now,
                         uint64_t *expiry)
{
    const ciot__azure_conn *cs = st->conn;
    uint64_t se = unix_now + (uint64_t)st->lifetime_s;
    size_t n = 0;
    int rc = ciot__azure_sas_sign(pw, cap, &n, cs->host, strlen(cs->host), cs->device_id,
                                  strlen(cs->device_id), cs->module_id,
                                  cs->module_id ? strlen(cs->module_id) : 0, cs->key_name,
                                  cs->key_name ? strlen(cs->key_name) : 0, cs->key, cs->key_len,
                                  se);
    if (rc == 0 && n >= cap)
        rc = CIOT_ENOSPC;
    if (rc == 0)
        *expiry = se;
    return rc;
}

static int azure_credentials(void *state, char *pw, size_t cap, uint64_t now_ms,
                             uint64_t *renew_at, char *why, size_t why_cap)
{
    struct ciot__azure_state *st = state;
    *renew_at = UINT64_MAX;
    if (!st->conn->key)
        return 1; /* a ready-made token (already the password) or X.509 */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t expiry = 0;
    int rc = ciot__azure_sign_now(st, pw, cap, (uint64_t)ts.tv_sec, &expiry);
    if (rc != 0) {
        snprintf(why, why_cap, "cannot sign a SAS token: %s", ciot_strerror(rc));
        return rc;
    }
    st->expiry = expiry;
    *renew_at = now_ms + (uint64_t)st->lifetime_s * 10u * (uint64_t)st->renew_percent;
    ciot__log(CIOT_LOG_DEBUG, "azure: SAS token signed, expires at %llu (renewal in %llu ms)",
              (unsigned long long)expiry, (unsigned long long)(*renew_at - now_ms));
    return 0;
}

struct ciot__azure_device *ciot__azure_device_of(const struct ciot__azure_state *st)
{
    return st ? st->device : NULL;
}

uint64_t ciot__azure_token_expiry(const struct ciot__azure_state *st)
{
    return st ? st->expiry : 0;
}

void ciot__azure_identity(const struct ciot__azure_state *st, ciot_view *device, ciot_view *module)
{
    device->ptr = st->conn->device_id;
    device->len = strlen(st->conn->device_id);
    module->ptr = st->conn->module_id;
    module->len = st->conn->module_id ? strlen(st->conn->module_id) : 0;
}

const ciot__backend ciot__backend_azure = {
    .id = CIOT_BACKEND_AZURE,
    .name = "azure",
    .telemetry_topic = "devices/{thing}/messages/events/",
    /* commands are direct methods here (<cloudiot/method.h>); this filter
     * keeps ciot_command_register() usable against a local broker */
    .command_filter = "devices/{thing}/commands/+",
    .shadow_prefix = NULL,
    .prepare = azure_prepare,
    .check = azure_check,
    .open = azure_open,
    .close = azure_close,
    .credentials = azure_credentials,
    .iothub_twin = true,
};
