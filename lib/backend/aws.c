/*
 * The AWS IoT Core backend (protocols.md §1): mutual TLS on 8883, or 443
 * with ALPN "x-amzn-mqtt-ca"; SNI always; keep-alive within 30..1200 s;
 * client ids of 1..128 bytes not starting with '$'; topics of at most 256
 * bytes and 7 slashes (the Basic Ingest prefix $aws/rules/<rule>/ not
 * counted); payloads of at most 128 KiB; QoS 0 and 1 (the client refuses 2).
 *
 * TLS is required. The one exception, for the local emulator and tests:
 * CIOT_OPT_TLS set to 0 explicitly while the host is a loopback address
 * (127.0.0.0/8, ::1, "localhost"): traffic that never leaves the machine.
 */
#include "backend/backend.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

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

static int aws_check(const char *topic, size_t len, size_t payload_len, bool is_filter, char *why,
                     size_t cap)
{
    const char *what = is_filter ? "topic filter" : "topic";
    if (len > CIOT__AWS_MAX_TOPIC) {
        snprintf(why, cap, "AWS IoT Core: %s of %zu bytes, at most %d allowed", what, len,
                 CIOT__AWS_MAX_TOPIC);
        return CIOT_EINVAL;
    }
    size_t start = 0;
    /* $aws/rules/<rule>/...: the Basic Ingest prefix does not count. */
    if (len > 11 && memcmp(topic, "$aws/rules/", 11) == 0) {
        const char *end = memchr(topic + 11, '/', len - 11);
        start = end ? (size_t)(end - topic) + 1 : len;
    }
    size_t slashes = 0;
    for (size_t i = start; i < len; i++)
        slashes += topic[i] == '/';
    if (slashes > CIOT__AWS_MAX_SLASHES) {
        snprintf(why, cap, "AWS IoT Core: %s with %zu levels, at most %d allowed", what,
                 slashes + 1, CIOT__AWS_MAX_SLASHES + 1);
        return CIOT_EINVAL;
    }
    if (!is_filter && payload_len > CIOT__AWS_MAX_PAYLOAD) {
        snprintf(why, cap, "AWS IoT Core: payload of %zu bytes, at most %d allowed", payload_len,
                 CIOT__AWS_MAX_PAYLOAD);
        return CIOT_EINVAL;
    }
    return 0;
}

static int aws_prepare(ciot_config *eff, const ciot_config *user)
{
    const char *id = eff->strs[CIOT_OPT_CLIENT_ID];
    size_t idlen = eff->lens[CIOT_OPT_CLIENT_ID];
    if (id && (idlen > CIOT__AWS_MAX_CLIENT_ID || id[0] == '$'))
        return ciot__config_fail(user, CIOT_EINVAL,
                                 "AWS IoT Core: the client id must be 1..%d bytes and not start "
                                 "with '$' (%zu bytes%s)", CIOT__AWS_MAX_CLIENT_ID, idlen,
                                 id[0] == '$' ? ", starts with '$'" : "");
    const char *host = eff->strs[CIOT_OPT_HOST];
    if (!user->set[CIOT_OPT_TLS])
        eff->ints[CIOT_OPT_TLS] = 1;
    if (!eff->ints[CIOT_OPT_TLS] && !(host && loopback(host)))
        return ciot__config_fail(user, CIOT_EINVAL,
                                 "AWS IoT Core requires TLS: CIOT_OPT_TLS 0 is only accepted for a "
                                 "loopback host (a local emulator), not \"%s\"", host ? host : "");
    int64_t ka = eff->ints[CIOT_OPT_KEEPALIVE_S];
    int64_t clamped = ka == 0 ? CIOT__AWS_KEEPALIVE_MAX
                      : ka < CIOT__AWS_KEEPALIVE_MIN ? CIOT__AWS_KEEPALIVE_MIN
                      : ka > CIOT__AWS_KEEPALIVE_MAX ? CIOT__AWS_KEEPALIVE_MAX
                                                     : ka;
    if (clamped != ka) {
        ciot__log(CIOT_LOG_INFO, "aws: keep-alive %lld s is outside AWS's 30..1200 s: using %lld s",
                  (long long)ka, (long long)clamped);
        eff->ints[CIOT_OPT_KEEPALIVE_S] = clamped;
    }
    if (eff->strs[CIOT_OPT_WILL_TOPIC]) {
        char why[160];
        if (aws_check(eff->strs[CIOT_OPT_WILL_TOPIC], eff->lens[CIOT_OPT_WILL_TOPIC],
                      eff->lens[CIOT_OPT_WILL_PAYLOAD], false, why, sizeof why) != 0)
            return ciot__config_fail(user, CIOT_EINVAL, "will: %s", why);
    }
    if (!eff->ints[CIOT_OPT_TLS])
        return 0;
    int port = ciot__config_port(eff);
    if (!eff->strs[CIOT_OPT_TLS_SNI] && host) {
        /* AWS refuses connections without SNI; the host is the endpoint. */
        int rc = ciot__config_set_internal(eff, CIOT_OPT_TLS_SNI, host, strlen(host));
        if (rc != 0)
            return ciot__config_fail(user, rc, "out of memory");
    }
    if (port == 443 && !user->strs[CIOT_OPT_TLS_ALPN]) {
        /* X.509 on 443 needs this ALPN name; a custom authorizer uses "mqtt". */
        const char *alpn = eff->strs[CIOT_OPT_TLS_CERT_FILE] ? "x-amzn-mqtt-ca" : "mqtt";
        int rc = ciot__config_set_internal(eff, CIOT_OPT_TLS_ALPN, alpn, strlen(alpn));
        if (rc != 0)
            return ciot__config_fail(user, rc, "out of memory");
        ciot__log(CIOT_LOG_INFO, "aws: port 443: TLS ALPN \"%s\"", alpn);
    }
    return 0;
}

const ciot__backend ciot__backend_aws = {
    .id = CIOT_BACKEND_AWS,
    .name = "aws",
    .telemetry_topic = "sensors/{thing}/{sensorType}",
    .command_filter = "commands/{thing}/+",
    .shadow_prefix = "$aws/things/{thing}/shadow",
    .prepare = aws_prepare,
    .check = aws_check,
};
