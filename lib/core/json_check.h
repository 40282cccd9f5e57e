/*
 * The JSON validator shared inside the library (never exported): the
 * reader's scanner (lib/core/json_read.c), also used by the writer for
 * ciot_json_raw(). UTF-8 sequences are checked by lib/core/utf8.h.
 */
#ifndef CIOT_CORE_JSON_CHECK_H
#define CIOT_CORE_JSON_CHECK_H

#include <stddef.h>

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

#endif /* CIOT_CORE_JSON_CHECK_H */
