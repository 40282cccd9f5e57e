/*
 * Internals of the JSON writer and the timestamp formatter that the unit
 * tests (and later other core modules) reach directly. Never exported.
 */
#ifndef CIOT_CORE_JSON_WRITE_H
#define CIOT_CORE_JSON_WRITE_H

#include <stddef.h>
#include <stdint.h>

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

#endif /* CIOT_CORE_JSON_WRITE_H */
