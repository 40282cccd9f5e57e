#include "client/config_internal.h"

#include "core/utf8.h"

#include <cloudiot/topic.h>

#include <stdio.h>
#include <string.h>
#include <strings.h>

enum check { CK_NONE, CK_BOOL, CK_UTF8, CK_NONUL, CK_HOST, CK_TOPIC, CK_ENUM, CK_TEMPLATE, CK_THING };

struct opt_info {
    const char *name;
    int type;
    int64_t min, max, dflt; /* ints: range and default; strings: min/max length */
    enum check check;
    int64_t alt; /* CK_ENUM for ints: a second allowed value below min (e.g. keepalive 0) */
};

#define I(name, min, max, dflt) {#name, CIOT_OPT_TYPE_INT, min, max, dflt, CK_NONE, -1}
#define B(name, dflt) {#name, CIOT_OPT_TYPE_INT, 0, 1, dflt, CK_BOOL, -1}
#define S(name, min, max, check) {#name, CIOT_OPT_TYPE_STRING, min, max, 0, check, -1}

static const struct opt_info opts[CIOT_OPT_MAX_] = {
    [CIOT_OPT_HOST] = S(HOST, 1, 253, CK_HOST),
    [CIOT_OPT_PORT] = I(PORT, 1, 65535, 1883),
    [CIOT_OPT_CLIENT_ID] = S(CLIENT_ID, 1, 65535, CK_UTF8),
    [CIOT_OPT_KEEPALIVE_S] = {"KEEPALIVE_S", CIOT_OPT_TYPE_INT, 5, 65535, 60, CK_ENUM, 0},
    [CIOT_OPT_CLEAN_SESSION] = B(CLEAN_SESSION, 1),
    [CIOT_OPT_PROTOCOL] = I(PROTOCOL, 4, 5, 4),
    [CIOT_OPT_USERNAME] = S(USERNAME, 0, 65535, CK_UTF8),
    [CIOT_OPT_PASSWORD] = S(PASSWORD, 0, 65535, CK_NONUL),
    [CIOT_OPT_TLS] = B(TLS, 0),
    [CIOT_OPT_TLS_CA_FILE] = S(TLS_CA_FILE, 1, 4095, CK_NONUL),
    [CIOT_OPT_TLS_CA_DIR] = S(TLS_CA_DIR, 1, 4095, CK_NONUL),
    [CIOT_OPT_TLS_CERT_FILE] = S(TLS_CERT_FILE, 1, 4095, CK_NONUL),
    [CIOT_OPT_TLS_KEY_FILE] = S(TLS_KEY_FILE, 1, 4095, CK_NONUL),
    [CIOT_OPT_TLS_ALPN] = S(TLS_ALPN, 1, 255, CK_UTF8),
    [CIOT_OPT_TLS_SNI] = S(TLS_SNI, 1, 253, CK_HOST),
    [CIOT_OPT_TLS_MIN_VERSION] = I(TLS_MIN_VERSION, 12, 13, 12),
    [CIOT_OPT_TLS_INSECURE_SKIP_VERIFY] = B(TLS_INSECURE_SKIP_VERIFY, 0),
    [CIOT_OPT_WILL_TOPIC] = S(WILL_TOPIC, 1, 65535, CK_TOPIC),
    [CIOT_OPT_WILL_PAYLOAD] = {"WILL_PAYLOAD", CIOT_OPT_TYPE_BYTES, 0, 65535, 0, CK_NONE, -1},
    [CIOT_OPT_WILL_QOS] = I(WILL_QOS, 0, 1, 0),
    [CIOT_OPT_WILL_RETAIN] = B(WILL_RETAIN, 0),
    [CIOT_OPT_RECONNECT] = B(RECONNECT, 1),
    [CIOT_OPT_RECONNECT_BASE_MS] = I(RECONNECT_BASE_MS, 1, 3600000, 1000),
    [CIOT_OPT_RECONNECT_MAX_MS] = I(RECONNECT_MAX_MS, 1, 86400000, 32000),
    [CIOT_OPT_RECONNECT_STABLE_MS] = I(RECONNECT_STABLE_MS, 0, 86400000, 20000),
    [CIOT_OPT_QUEUE_MAX_MESSAGES] = I(QUEUE_MAX_MESSAGES, 1, 10000000, 10000),
    [CIOT_OPT_QUEUE_MAX_BYTES] = I(QUEUE_MAX_BYTES, 1, INT64_C(1) << 40, 16 * 1024 * 1024),
    [CIOT_OPT_QUEUE_DROP_POLICY] = I(QUEUE_DROP_POLICY, CIOT_DROP_OLDEST, CIOT_DROP_REFUSE, CIOT_DROP_OLDEST),
    [CIOT_OPT_QUEUE_DRAIN_RATE] = I(QUEUE_DRAIN_RATE, 0, 1000000, 0),
    [CIOT_OPT_PERSIST_DIR] = S(PERSIST_DIR, 1, 4095, CK_NONUL),
    [CIOT_OPT_PERSIST_SYNC] = I(PERSIST_SYNC, CIOT_SYNC_NONE, CIOT_SYNC_ALWAYS, CIOT_SYNC_INTERVAL),
    [CIOT_OPT_PERSIST_SYNC_MS] = I(PERSIST_SYNC_MS, 1, 60000, 200),
    [CIOT_OPT_CONNECT_TIMEOUT_MS] = I(CONNECT_TIMEOUT_MS, 1, 600000, 10000),
    [CIOT_OPT_OPERATION_TIMEOUT_MS] = I(OPERATION_TIMEOUT_MS, 1, 3600000, 10000),
    [CIOT_OPT_DISCONNECT_TIMEOUT_MS] = I(DISCONNECT_TIMEOUT_MS, 0, 600000, 2000),
    [CIOT_OPT_MAX_INFLIGHT] = I(MAX_INFLIGHT, 1, 65535, 100),
    [CIOT_OPT_TCP_NODELAY] = B(TCP_NODELAY, 1),
    [CIOT_OPT_BACKEND] = I(BACKEND, CIOT_BACKEND_MQTT, CIOT_BACKEND_AZURE, CIOT_BACKEND_MQTT),
    [CIOT_OPT_TELEMETRY_TOPIC] = S(TELEMETRY_TOPIC, 1, 1024, CK_TEMPLATE),
    [CIOT_OPT_THING_NAME] = S(THING_NAME, 1, 128, CK_THING),
    [CIOT_OPT_REQUEST_TIMEOUT_MS] = I(REQUEST_TIMEOUT_MS, 1, 3600000, 10000),
    [CIOT_OPT_AZURE_CONNECTION_STRING] = S(AZURE_CONNECTION_STRING, 1, 4096, CK_NONUL),
    [CIOT_OPT_SAS_TOKEN_LIFETIME_S] = I(SAS_TOKEN_LIFETIME_S, 1, 31536000, 3600),
    [CIOT_OPT_SAS_RENEW_PERCENT] = I(SAS_RENEW_PERCENT, 1, 99, 80),
};

int ciot__config_fail(const ciot_config *cfg, int rc, const char *fmt, ...)
{
    if (cfg) {
        va_list ap;
        va_start(ap, fmt);
        /* errmsg is diagnostic scratch space, not part of the settings */
        vsnprintf(((ciot_config *)(uintptr_t)cfg)->errmsg, sizeof cfg->errmsg, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static void ok(ciot_config *cfg)
{
    cfg->errmsg[0] = '\0';
}

int ciot_config_new(ciot_config **out)
{
    if (!out)
        return CIOT_EINVAL;
    *out = NULL;
    ciot_config *cfg = ciot__calloc(1, sizeof *cfg);
    if (!cfg)
        return CIOT_ENOMEM;
    for (int i = 1; i < CIOT_OPT_MAX_; i++)
        if (opts[i].type == CIOT_OPT_TYPE_INT)
            cfg->ints[i] = opts[i].dflt;
    *out = cfg;
    return 0;
}

static void clear_str(ciot_config *cfg, int opt)
{
    if (cfg->strs[opt]) {
        ciot__wipe(cfg->strs[opt], cfg->lens[opt]);
        ciot__free(cfg->strs[opt]);
    }
    cfg->strs[opt] = NULL;
    cfg->lens[opt] = 0;
    cfg->set[opt] = false;
}

void ciot_config_free(ciot_config *cfg)
{
    if (!cfg)
        return;
    for (int i = 1; i < CIOT_OPT_MAX_; i++)
        clear_str(cfg, i);
    ciot__wipe(cfg, sizeof *cfg);
    ciot__free(cfg);
}

static const struct opt_info *lookup(const ciot_config *cfg, int opt, int type, int *rc)
{
    if (!cfg) {
        *rc = CIOT_EINVAL;
        return NULL;
    }
    if (opt <= 0 || opt >= CIOT_OPT_MAX_ || !opts[opt].name) {
        *rc = ciot__config_fail(cfg, CIOT_EUNKNOWN_OPTION, "option %d is not a ciot_opt", opt);
        return NULL;
    }
    const struct opt_info *o = &opts[opt];
    /* bytes options also take strings (the text without its NUL) */
    if (o->type != type && !(o->type == CIOT_OPT_TYPE_BYTES && type == CIOT_OPT_TYPE_STRING)) {
        static const char *const names[] = {"", "an integer", "a string", "bytes"};
        *rc = ciot__config_fail(cfg, CIOT_ETYPE, "CIOT_OPT_%s takes %s, not %s", o->name,
                                names[o->type], names[type]);
        return NULL;
    }
    return o;
}

int ciot_config_set_int(ciot_config *cfg, int opt, int64_t value)
{
    int rc;
    const struct opt_info *o = lookup(cfg, opt, CIOT_OPT_TYPE_INT, &rc);
    if (!o)
        return rc;
    bool in = value >= o->min && value <= o->max;
    if (!in && o->check == CK_ENUM && value == o->alt)
        in = true;
    if (!in) {
        if (o->check == CK_ENUM)
            return ciot__config_fail(cfg, CIOT_ERANGE,
                                     "CIOT_OPT_%s: %lld is neither %lld nor within %lld..%lld",
                                     o->name, (long long)value, (long long)o->alt,
                                     (long long)o->min, (long long)o->max);
        return ciot__config_fail(cfg, CIOT_ERANGE, "CIOT_OPT_%s: %lld is outside %lld..%lld",
                                 o->name, (long long)value, (long long)o->min, (long long)o->max);
    }
    if (opt == CIOT_OPT_RECONNECT_MAX_MS && value < cfg->ints[CIOT_OPT_RECONNECT_BASE_MS])
        return ciot__config_fail(cfg, CIOT_ERANGE,
                                 "CIOT_OPT_RECONNECT_MAX_MS: %lld is below the base delay %lld",
                                 (long long)value, (long long)cfg->ints[CIOT_OPT_RECONNECT_BASE_MS]);
    if (opt == CIOT_OPT_RECONNECT_BASE_MS && value > cfg->ints[CIOT_OPT_RECONNECT_MAX_MS])
        return ciot__config_fail(cfg, CIOT_ERANGE,
                                 "CIOT_OPT_RECONNECT_BASE_MS: %lld is above the maximum delay %lld "
                                 "(raise CIOT_OPT_RECONNECT_MAX_MS first)",
                                 (long long)value, (long long)cfg->ints[CIOT_OPT_RECONNECT_MAX_MS]);
#ifndef CIOT_HAVE_AWS
    if (opt == CIOT_OPT_BACKEND && value == CIOT_BACKEND_AWS)
        return ciot__config_fail(cfg, CIOT_ENOTBUILT,
                                 "CIOT_OPT_BACKEND: the AWS backend is not built into this library");
#endif
#ifndef CIOT_HAVE_AZURE
    if (opt == CIOT_OPT_BACKEND && value == CIOT_BACKEND_AZURE)
        return ciot__config_fail(cfg, CIOT_ENOTBUILT,
                                 "CIOT_OPT_BACKEND: the Azure backend is not built into this library");
#endif
    cfg->ints[opt] = value;
    cfg->set[opt] = true;
    ok(cfg);
    return 0;
}

/* isalnum() follows the locale: in some, bytes of UTF-8 sequences pass. */
static bool ascii_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

static bool host_ok(const char *s, size_t len)
{
    /* A DNS name, an IPv4 address or an IPv6 address (without brackets). */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(ascii_alnum(c) || c == '-' || c == '.' || c == ':' || c == '_'))
            return false;
    }
    return true;
}

bool ciot__thing_name_ok(const char *s, size_t len)
{
    if (len < 1 || len > 128)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(ascii_alnum(c) || c == ':' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* A topic template: placeholders {thing} and {sensorType} only, and a valid
 * topic name once they are filled. Returns NULL or what is wrong. */
static const char *template_problem(const char *s, size_t len)
{
    char buf[1100];
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        if (s[i] == '{') {
            if (len - i >= 7 && memcmp(s + i, "{thing}", 7) == 0)
                i += 7;
            else if (len - i >= 12 && memcmp(s + i, "{sensorType}", 12) == 0)
                i += 12;
            else
                return "only the placeholders {thing} and {sensorType} are known";
            buf[n++] = 'x';
            continue;
        }
        if (s[i] == '}')
            return "a '}' outside a placeholder";
        buf[n++] = s[i++];
    }
    if (ciot_topic_name_check(buf, n) != 0)
        return "not a valid topic name once filled in (wildcards, empty, U+0000 or invalid UTF-8)";
    return NULL;
}

static int set_text(ciot_config *cfg, int opt, const char *value, size_t len, int type)
{
    int rc;
    const struct opt_info *o = lookup(cfg, opt, type, &rc);
    if (!o)
        return rc;
    if (!value && len == 0) {
        clear_str(cfg, opt);
        ok(cfg);
        return 0;
    }
    if (!value)
        return ciot__config_fail(cfg, CIOT_EINVAL, "CIOT_OPT_%s: NULL data with length %zu",
                                 o->name, len);
    if ((int64_t)len < o->min)
        return ciot__config_fail(cfg, CIOT_EINVAL, "CIOT_OPT_%s: must not be empty", o->name);
    if ((uint64_t)len > (uint64_t)o->max)
        return ciot__config_fail(cfg, CIOT_ERANGE, "CIOT_OPT_%s: %zu bytes, at most %lld allowed",
                                 o->name, len, (long long)o->max);
    switch (o->check) {
    case CK_UTF8:
        if (!ciot__utf8_valid(value, len, false))
            return ciot__config_fail(cfg, CIOT_EINVAL,
                                     "CIOT_OPT_%s: not valid UTF-8 (or contains U+0000)", o->name);
        break;
    case CK_NONUL:
        if (memchr(value, '\0', len))
            return ciot__config_fail(cfg, CIOT_EINVAL, "CIOT_OPT_%s: contains a NUL byte", o->name);
        break;
    case CK_HOST:
        if (!host_ok(value, len))
            return ciot__config_fail(cfg, CIOT_EINVAL,
                                     "CIOT_OPT_%s: \"%.*s\" is not a host name or address", o->name,
                                     (int)(len > 64 ? 64 : len), value);
        break;
    case CK_TEMPLATE: {
        const char *why = template_problem(value, len);
        if (why)
            return ciot__config_fail(cfg, CIOT_EINVAL, "CIOT_OPT_%s: %s", o->name, why);
        break;
    }
    case CK_THING:
        if (!ciot__thing_name_ok(value, len))
            return ciot__config_fail(cfg, CIOT_EINVAL,
                                     "CIOT_OPT_%s: \"%.*s\" is not a thing name (1..128 of "
                                     "a-z A-Z 0-9 : _ -)", o->name, (int)(len > 64 ? 64 : len), value);
        break;
    case CK_TOPIC:
        if (ciot_topic_name_check(value, len) != 0)
            return ciot__config_fail(cfg, CIOT_EINVAL,
                                     "CIOT_OPT_%s: not a valid topic name (wildcards, empty, "
                                     "U+0000 or invalid UTF-8)", o->name);
        break;
    default:
        break;
    }
    char *copy = ciot__strndup(value, len);
    if (!copy)
        return ciot__config_fail(cfg, CIOT_ENOMEM, "out of memory");
    clear_str(cfg, opt);
    cfg->strs[opt] = copy;
    cfg->lens[opt] = len;
    cfg->set[opt] = true;
    /* Naming a TLS file turns TLS on; it is never turned off implicitly. */
    if (opt >= CIOT_OPT_TLS_CA_FILE && opt <= CIOT_OPT_TLS_SNI) {
        cfg->ints[CIOT_OPT_TLS] = 1;
        cfg->set[CIOT_OPT_TLS] = true;
    }
    ok(cfg);
    return 0;
}

int ciot_config_set_str(ciot_config *cfg, int opt, const char *value)
{
    return set_text(cfg, opt, value, value ? strlen(value) : 0, CIOT_OPT_TYPE_STRING);
}

int ciot_config_set_bytes(ciot_config *cfg, int opt, const void *data, size_t len)
{
    return set_text(cfg, opt, data, len, CIOT_OPT_TYPE_BYTES);
}

int ciot_config_get_int(const ciot_config *cfg, int opt, int64_t *out)
{
    int rc;
    if (!out)
        return CIOT_EINVAL;
    const struct opt_info *o = lookup(cfg, opt, CIOT_OPT_TYPE_INT, &rc);
    if (!o)
        return rc;
    *out = opt == CIOT_OPT_PORT ? ciot__config_port(cfg) : cfg->ints[opt];
    return 0;
}

int ciot_config_get_str(const ciot_config *cfg, int opt, const char **out)
{
    int rc;
    if (!out)
        return CIOT_EINVAL;
    const struct opt_info *o = lookup(cfg, opt, CIOT_OPT_TYPE_STRING, &rc);
    if (!o)
        return rc;
    if (opt == CIOT_OPT_PASSWORD || opt == CIOT_OPT_AZURE_CONNECTION_STRING)
        return ciot__config_fail(cfg, CIOT_EINVAL, "CIOT_OPT_%s is a secret: it cannot be read back",
                                 o->name);
    *out = cfg->strs[opt];
    return 0;
}

const char *ciot_config_errmsg(const ciot_config *cfg)
{
    return cfg ? cfg->errmsg : "no config";
}

int ciot_config_option_by_name(const char *name, int *out_opt, int *out_type)
{
    if (!name || !out_opt)
        return CIOT_EINVAL;
    if (strncasecmp(name, "CIOT_OPT_", 9) == 0)
        name += 9;
    for (int i = 1; i < CIOT_OPT_MAX_; i++) {
        if (opts[i].name && strcasecmp(opts[i].name, name) == 0) {
            *out_opt = i;
            if (out_type)
                *out_type = opts[i].type;
            return 0;
        }
    }
    return CIOT_EUNKNOWN_OPTION;
}

const char *ciot_config_option_name(int opt)
{
    if (opt <= 0 || opt >= CIOT_OPT_MAX_)
        return NULL;
    return opts[opt].name;
}

int ciot__config_clone(ciot_config **out, const ciot_config *src)
{
    ciot_config *cfg = ciot__calloc(1, sizeof *cfg);
    if (!cfg)
        return CIOT_ENOMEM;
    memcpy(cfg->ints, src->ints, sizeof cfg->ints);
    memcpy(cfg->set, src->set, sizeof cfg->set);
    for (int i = 1; i < CIOT_OPT_MAX_; i++) {
        if (!src->strs[i])
            continue;
        if (!(cfg->strs[i] = ciot__strndup(src->strs[i], src->lens[i]))) {
            ciot_config_free(cfg);
            return CIOT_ENOMEM;
        }
        cfg->lens[i] = src->lens[i];
    }
    *out = cfg;
    return 0;
}

int ciot__config_set_internal(ciot_config *cfg, int opt, const char *value, size_t len)
{
    char *copy = ciot__strndup(value, len);
    if (!copy)
        return CIOT_ENOMEM;
    clear_str(cfg, opt);
    cfg->strs[opt] = copy;
    cfg->lens[opt] = len;
    cfg->set[opt] = true;
    return 0;
}

int ciot__config_port(const ciot_config *cfg)
{
    if (cfg->set[CIOT_OPT_PORT])
        return (int)cfg->ints[CIOT_OPT_PORT];
    return cfg->ints[CIOT_OPT_TLS] ? 8883 : 1883;
}
