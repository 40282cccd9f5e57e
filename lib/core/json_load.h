/*
 * jansson's json_loadb() with an honest error: jansson reports most of its
 * allocation failures as syntax errors (and leaves the error unset when its
 * first allocation fails), which would turn an out-of-memory condition into
 * "invalid JSON" for the sender. Internal; used by the document engines.
 */
#ifndef CIOT_CORE_JSON_LOAD_H
#define CIOT_CORE_JSON_LOAD_H

#include <jansson.h>
#include <stddef.h>

/*
 * Parses @p len bytes at @p p with jansson's @p flags.
 * @retval 0            *out set
 * @retval CIOT_ENOMEM  allocation failed
 * @retval CIOT_EINVAL  not JSON, or JSON that jansson refuses; *out_code (may be NULL)
 *                      says why (json_error_invalid_utf8, json_error_duplicate_key,
 *                      ..., json_error_invalid_syntax)
 * Content errors with a code of their own are taken as such; any other
 * failure on text that the library's own validator accepts as JSON is an
 * allocation failure.
 */
int ciot__json_load(json_t **out, enum json_error_code *out_code, const char *p, size_t len,
                    size_t flags);

#endif
