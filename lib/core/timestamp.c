/*
 * ISO-8601 UTC timestamps, `YYYY-MM-DDThh:mm:ss.mmmZ`, by arithmetic only.
 *
 * Days to a civil date uses the era-based algorithm published by Howard
 * Hinnant ("chrono-Compatible Low-Level Date Algorithms"): count days from
 * 0000-03-01 so that the leap day ends each year, split into 400-year eras
 * of 146097 days, then year of era, day of year, month from (5 * doy + 2) /
 * 153. Shifting the origin back one era keeps every quantity unsigned for
 * the supported range (years 0000..9999).
 */
#include <cloudiot/timestamp.h>

#include "core/json_write.h"
#include "internal.h"

#include <string.h>

static const char pairs[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

static inline void put2(char *o, unsigned v)
{
    memcpy(o, pairs + 2 * v, 2);
}

void ciot__timestamp_put(char *out, int64_t unix_ms)
{
    /* milliseconds since 0000-01-01T00:00:00Z: 0 .. 315569519999999 */
    uint64_t t = (uint64_t)(unix_ms - CIOT_TIMESTAMP_MIN_MS);
    uint64_t secs = t / 1000;
    unsigned ms = (unsigned)(t - secs * 1000);
    uint32_t days = (uint32_t)(secs / 86400); /* since 0000-01-01 */
    uint32_t sod = (uint32_t)(secs - (uint64_t)days * 86400);

    /* Days since -0400-03-01: 0000-01-01 is 60 days after 0000-03-01
     * (year 0 is a leap year) minus one era of 146097 days. */
    uint32_t z = days + 146097 - 60;
    uint32_t era = z / 146097;
    uint32_t doe = z - era * 146097;                                    /* 0..146096 */
    uint32_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* 0..399 */
    uint32_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);             /* 0..365 */
    uint32_t mp = (5 * doy + 2) / 153;                                  /* 0..11, March = 0 */
    uint32_t day = doy - (153 * mp + 2) / 5 + 1;
    uint32_t month = mp < 10 ? mp + 3 : mp - 9;
    uint32_t year = yoe + era * 400 - 400 + (month <= 2);

    unsigned hh = sod / 3600;
    unsigned mm = (sod / 60) % 60;
    unsigned ss = sod % 60;

    put2(out, year / 100);
    put2(out + 2, year % 100);
    out[4] = '-';
    put2(out + 5, month);
    out[7] = '-';
    put2(out + 8, day);
    out[10] = 'T';
    put2(out + 11, hh);
    out[13] = ':';
    put2(out + 14, mm);
    out[16] = ':';
    put2(out + 17, ss);
    out[19] = '.';
    out[20] = (char)('0' + ms / 100);
    put2(out + 21, ms % 100);
    out[23] = 'Z';
}

int ciot_timestamp_format(char *out, size_t cap, int64_t unix_ms, size_t *out_len)
{
    if (!out && cap)
        return CIOT_EINVAL;
    if (unix_ms < CIOT_TIMESTAMP_MIN_MS || unix_ms > CIOT_TIMESTAMP_MAX_MS)
        return CIOT_ERANGE;
    if (out_len)
        *out_len = CIOT_TIMESTAMP_LEN;
    if (cap < CIOT_TIMESTAMP_LEN)
        return CIOT_ENOSPC;
    ciot__timestamp_put(out, unix_ms);
    if (cap > CIOT_TIMESTAMP_LEN)
        out[CIOT_TIMESTAMP_LEN] = '\0';
    return 0;
}
