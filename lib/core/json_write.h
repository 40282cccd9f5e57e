/*
 * Internals of the JSON writer and the timestamp formatter that the unit
 * tests (and later other core modules) reach directly. Never exported.
 */
#ifndef CIOT_CORE_JSON_WRITE_H
#define CIOT_CORE_JSON_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include <cloudiot/json.h>

/* Room ciot__json_fmt_double() needs: the text is at most 25 bytes, but it
 * writes with fixed-size copies that may overshoot (scratch). */
#define CIOT__DOUBLE_BUF 48

/*
 * Writes the shortest text that strtod reads back as exactly v (finite v
 * only), in the writer's style (`27.31`, `27.0`, `-0.0`, `1e300`); returns
 * its length. No NUL.
 */
size_t ciot__json_fmt_double(char *out, double v); /* out: CIOT__DOUBLE_BUF bytes */

/* Writes the decimal digits of v (at most 20) and returns how many. No NUL. */
size_t ciot__fmt_u64(char *out, uint64_t v);

/*
 * Writes the 24 bytes of `YYYY-MM-DDThh:mm:ss.mmmZ` for unix_ms, which the
 * caller has checked to lie in [CIOT_TIMESTAMP_MIN_MS, CIOT_TIMESTAMP_MAX_MS].
 */
void ciot__timestamp_put(char *out, int64_t unix_ms);

/*
 * Writes n bytes of text as one scalar value, without checking it: the
 * caller guarantees it is exactly what ciot_json_string() (or the number
 * writers) would have written for that value, e.g. a string read from
 * validated JSON that has no backslash (the writer escapes only '"', '\\'
 * and control bytes, which such a string cannot contain). Errors as
 * ciot_json_string() (state, size).
 */
int ciot__json_put_trusted(ciot_json_writer *w, const char *text, size_t n);

/* ciot_json_key() for a key the caller has checked needs no escaping:
 * valid UTF-8 with no '"', '\\' or byte below 0x20. */
int ciot__json_key_plain(ciot_json_writer *w, const char *key, size_t len);

#endif /* CIOT_CORE_JSON_WRITE_H */
