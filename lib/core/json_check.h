/*
 * The JSON validator shared inside the library (never exported): the
 * reader's scanner (lib/core/json_read.c), also used by the writer for
 * ciot_json_raw(). UTF-8 sequences are checked by lib/core/utf8.h.
 */
#ifndef CIOT_CORE_JSON_CHECK_H
#define CIOT_CORE_JSON_CHECK_H

#include <stdbool.h>
#include <stddef.h>

#include <cloudiot/json.h>

#include "core/utf8.h"

/*
 * Checks that [p, p + len) is exactly one JSON value (RFC 8259) with
 * optional white space around it: the reader's grammar (UTF-8 strings, no
 * lone surrogates in \u escapes, no leading zeros, nothing after the value).
 * On success stores in *out_depth (may be NULL) the deepest nesting of
 * arrays/objects in it (0 for a scalar) and returns 0. Returns CIOT_EINVAL
 * if malformed and CIOT_EDEPTH if it nests more than max_depth deep
 * (max_depth is capped at CIOT_JSON_READER_MAX_DEPTH).
 */
int ciot__json_check(const char *p, size_t len, unsigned max_depth, unsigned *out_depth);


/* One member of an object: the key as a CIOT_JSON_STRING view (quotes
 * included), whether it has escapes, and the value. */
typedef struct ciot__json_member {
    ciot_json_value key;
    ciot_json_value val;
    bool key_esc;
} ciot__json_member;

/*
 * One validating scan of the document [json, json + len) (what
 * ciot_json_find() with an empty path checks) that also records the
 * members of a root object: the first @p cap of them go to @p mem, in
 * order, and *out_count is their total number (may exceed cap; 0 when the
 * root is not an object). *out_root is the root value.
 * Returns 0, CIOT_EINVAL (malformed or empty) or CIOT_EDEPTH.
 */
int ciot__json_scan_root(const char *json, size_t len, ciot_json_value *out_root,
                         ciot__json_member *mem, size_t cap, size_t *out_count);

#endif /* CIOT_CORE_JSON_CHECK_H */
