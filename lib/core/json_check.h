/*
 * Small JSON helpers shared inside the library (never exported):
 * a UTF-8 sequence checker and a validating scanner for one JSON value.
 * The JSON writer uses them for strings and for ciot_json_raw(); the JSON
 * reader may later share them.
 */
#ifndef CIOT_CORE_JSON_CHECK_H
#define CIOT_CORE_JSON_CHECK_H

#include <stddef.h>
#include <stdint.h>

/*
 * Length (2, 3 or 4) of the well-formed UTF-8 sequence of a non-ASCII code
 * point that starts at p (p[0] >= 0x80), reading at most avail bytes; 0 if
 * the bytes there are not one (stray continuation byte, overlong form,
 * encoded surrogate, above U+10FFFF, truncated). Unicode 15, table 3-7.
 */
size_t ciot__utf8_seq_len(const unsigned char *p, size_t avail);

/*
 * Checks that [p, p + len) is exactly one JSON value (RFC 8259) with
 * optional white space around it: UTF-8 strings, no lone surrogates in
 * \u escapes, no leading zeros, nothing after the value.
 * On success stores in *out_depth the deepest nesting of arrays/objects in
 * it (0 for a scalar) and returns 0. Returns CIOT_EINVAL if malformed and
 * CIOT_EDEPTH if it nests more than max_depth (at most 64) deep.
 */
int ciot__json_check(const char *p, size_t len, unsigned max_depth, unsigned *out_depth);

#endif /* CIOT_CORE_JSON_CHECK_H */
