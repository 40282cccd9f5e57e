/**
 * @file timestamp.h
 * @brief ISO-8601 UTC timestamps with milliseconds, without the C library's
 * time functions (no strftime, no gmtime, no locale, no time zone files).
 */
#ifndef CLOUDIOT_TIMESTAMP_H
#define CLOUDIOT_TIMESTAMP_H

#include <cloudiot/common.h>

CIOT_BEGIN_DECLS

/** Length of the text of ciot_timestamp_format(), without a NUL. */
#define CIOT_TIMESTAMP_LEN 24

/** The earliest time ciot_timestamp_format() accepts: 0000-01-01T00:00:00.000Z. */
#define CIOT_TIMESTAMP_MIN_MS (-62167219200000LL)
/** The latest time ciot_timestamp_format() accepts: 9999-12-31T23:59:59.999Z. */
#define CIOT_TIMESTAMP_MAX_MS 253402300799999LL

/**
 * Formats a time as `YYYY-MM-DDThh:mm:ss.mmmZ` in UTC, e.g.
 * `2026-11-26T04:56:27.123Z`: always CIOT_TIMESTAMP_LEN (24) bytes.
 *
 * The proleptic Gregorian calendar is used for every year; there are no leap
 * seconds (POSIX time). Times before 1970 are negative and are rounded down
 * (-1 is 1969-12-31T23:59:59.999Z).
 *
 * @param out     where the text goes; a NUL is added after it when
 *                @p cap > 24 (it is never required). May be NULL when
 *                @p cap is 0.
 * @param cap     size of @p out in bytes
 * @param unix_ms milliseconds since 1970-01-01T00:00:00.000Z, from
 *                CIOT_TIMESTAMP_MIN_MS to CIOT_TIMESTAMP_MAX_MS (years
 *                0000 to 9999)
 * @param out_len set to 24 on success and on CIOT_ENOSPC; may be NULL
 *
 * @retval 0            written
 * @retval CIOT_ENOSPC  @p cap < 24; nothing written
 * @retval CIOT_ERANGE  @p unix_ms is outside the years 0000..9999; nothing written
 * @retval CIOT_EINVAL  @p out is NULL while @p cap is not 0
 *
 * Thread-safe; allocates nothing.
 */
CIOT_API CIOT_NODISCARD int ciot_timestamp_format(char *out, size_t cap, int64_t unix_ms,
                                                  size_t *out_len);

CIOT_END_DECLS

#endif /* CLOUDIOT_TIMESTAMP_H */
