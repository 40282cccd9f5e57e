/* Direct-method request topics (see azure_method.h). */
#include "core/azure_method.h"

#include "core/azure.h"
#include "core/utf8.h"

#include <cloudiot/error.h>

#include <string.h>

static bool name_ok(const char *s, size_t len)
{
    if (len == 0 || len > CIOT__AZURE_METHOD_NAME_MAX || !ciot__utf8_valid(s, len, false))
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] == '/' || s[i] == '+' || s[i] == '#' || s[i] == '?')
            return false;
    return true;
}

int ciot__azure_method_parse(ciot__azure_method_req *out, const char **why, char *buf, size_t cap,
                             const char *topic, size_t len)
{
    if (!out || !why || (!buf && cap) || (!topic && len))
        return CIOT_EINVAL;
    static const ciot_view none = {NULL, 0};
    out->name = out->rid = none;
    *why = "";
    const size_t pl = sizeof CIOT__AZURE_METHOD_PREFIX - 1;
    if (len < pl || memcmp(topic, CIOT__AZURE_METHOD_PREFIX, pl) != 0)
        return CIOT_ENOTFOUND;
    if (len > CIOT__AZURE_METHOD_TOPIC_MAX) {
        *why = "topic longer than 1024 bytes";
        return CIOT_EPROTOCOL;
    }
    const char *name = topic + pl;
    const char *slash = memchr(name, '/', len - pl);
    if (!slash) {
        *why = "no request id";
        return CIOT_EPROTOCOL;
    }
    out->name = (ciot_view){name, (size_t)(slash - name)};
    ciot__azure_prop props[8];
    size_t used = 0, n = 0;
    const char *q = slash + 1;
    int rc = ciot__azure_bag_decode(buf, cap, &used, props, 8, &n, q, len - (size_t)(q - topic));
    if (rc == CIOT_ENOSPC) {
        *why = used > cap ? "no room to decode the query" : "more than 8 query fields";
        return CIOT_EPROTOCOL;
    }
    if (rc != 0) {
        *why = "malformed query (bad escape, empty field name, or not UTF-8 once decoded)";
        return CIOT_EPROTOCOL;
    }
    const ciot__azure_prop *rid = NULL;
    for (size_t i = 0; i < n && !rid; i++)
        if (props[i].name.len == 4 && memcmp(props[i].name.ptr, "$rid", 4) == 0)
            rid = &props[i];
    if (!rid || rid->value.len == 0) {
        *why = "no request id";
        return CIOT_EPROTOCOL;
    }
    if (rid->value.len > CIOT__AZURE_RID_MAX) {
        *why = "request id longer than 128 bytes";
        return CIOT_EPROTOCOL;
    }
    out->rid = rid->value;
    if (!name_ok(out->name.ptr, out->name.len)) {
        *why = "the method name is not 1..128 bytes of UTF-8 without / + # ?";
        return CIOT_EPROTOCOL;
    }
    return 0;
}
