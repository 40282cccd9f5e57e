#include "core/json_load.h"

#include <cloudiot/error.h>
#include <cloudiot/json.h>

#include "core/json_check.h"

#include <stdbool.h>
#include <string.h>

/* Without JSON_DECODE_ANY jansson refuses a valid scalar text. */
static bool top_is_container(const char *p, size_t len)
{
    size_t i = 0;
    while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
        i++;
    return i < len && (p[i] == '{' || p[i] == '[');
}

int ciot__json_load(json_t **out, enum json_error_code *out_code, const char *p, size_t len,
                    size_t flags)
{
    json_error_t je;
    memset(&je, 0, sizeof je); /* unset by jansson when its first allocation fails */
    *out = json_loadb(p, len, flags, &je);
    if (*out)
        return 0;
    enum json_error_code code = json_error_code(&je);
    switch (code) {
    case json_error_out_of_memory:
        return CIOT_ENOMEM;
    case json_error_invalid_utf8:
    case json_error_null_character:
    case json_error_null_byte_in_key:
    case json_error_duplicate_key:
    case json_error_numeric_overflow:
    case json_error_stack_overflow:
        break;
    default:
        if (ciot__json_check(p, len, CIOT_JSON_READER_MAX_DEPTH, NULL) == 0 &&
            ((flags & JSON_DECODE_ANY) || top_is_container(p, len)))
            return CIOT_ENOMEM;
        code = json_error_invalid_syntax;
        break;
    }
    if (out_code)
        *out_code = code;
    return CIOT_EINVAL;
}
