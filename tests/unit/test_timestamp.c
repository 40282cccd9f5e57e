/* ciot_timestamp_format(): known dates, bounds, buffer sizes, and a
 * differential test against gmtime_r + strftime over the whole range. */
#include <cloudiot/cloudiot.h>

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double test_scale(void)
{
    const char *s = getenv("CIOT_TEST_SCALE");
    double f = s ? atof(s) : 1.0;
    return f > 0 ? f : 1.0;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    /* splitmix64: deterministic, so failures reproduce */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void expect(int64_t ms, const char *text)
{
    char out[32];
    size_t n = 0;
    memset(out, 'x', sizeof out);
    cr_assert_eq(ciot_timestamp_format(out, sizeof out, ms, &n), 0, "ms %lld", (long long)ms);
    cr_assert_eq(n, 24);
    cr_assert_eq(out[24], '\0');
    cr_assert_str_eq(out, text, "ms %lld", (long long)ms);
}

Test(timestamp, known_dates)
{
    expect(0, "1970-01-01T00:00:00.000Z");
    expect(1795668987123LL, "2026-11-26T04:56:27.123Z");
    expect(-1, "1969-12-31T23:59:59.999Z");
    expect(-1000, "1969-12-31T23:59:59.000Z");
    expect(-1001, "1969-12-31T23:59:58.999Z");
    expect(-86400000LL, "1969-12-31T00:00:00.000Z");
    expect(951825600000LL, "2000-02-29T12:00:00.000Z");
    expect(4107542399999LL, "2100-02-28T23:59:59.999Z");
    expect(4107542400000LL, "2100-03-01T00:00:00.000Z");
    expect(-2203891200000LL, "1900-03-01T00:00:00.000Z");
    expect(-62135596800000LL, "0001-01-01T00:00:00.000Z");
    expect(-62135596800001LL, "0000-12-31T23:59:59.999Z");
    expect(-62162121600000LL, "0000-02-29T00:00:00.000Z");
    expect(-62162035200000LL, "0000-03-01T00:00:00.000Z"); /* year 0 is a leap year */
    expect(CIOT_TIMESTAMP_MIN_MS, "0000-01-01T00:00:00.000Z");
    expect(CIOT_TIMESTAMP_MAX_MS, "9999-12-31T23:59:59.999Z");
}

Test(timestamp, out_of_range_years_are_refused)
{
    char out[32] = "untouched";
    size_t n = 7;
    const int64_t bad[] = {CIOT_TIMESTAMP_MIN_MS - 1, CIOT_TIMESTAMP_MAX_MS + 1, INT64_MIN,
                           INT64_MAX, -100000000000000LL, 300000000000000LL};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(ciot_timestamp_format(out, sizeof out, bad[i], &n), CIOT_ERANGE);
        cr_assert_str_eq(out, "untouched");
        cr_assert_eq(n, 7);
    }
}

Test(timestamp, small_buffers_get_enospc_with_the_size)
{
    for (size_t cap = 0; cap < 24; cap++) {
        char out[32];
        memset(out, 'x', sizeof out);
        size_t n = 0;
        cr_assert_eq(ciot_timestamp_format(out, cap, 0, &n), CIOT_ENOSPC, "cap %zu", cap);
        cr_assert_eq(n, 24);
        for (size_t i = 0; i < sizeof out; i++)
            cr_assert_eq(out[i], 'x', "cap %zu wrote byte %zu", cap, i);
    }
    size_t n = 0;
    cr_assert_eq(ciot_timestamp_format(NULL, 0, 0, &n), CIOT_ENOSPC);
    cr_assert_eq(n, 24);
    cr_assert_eq(ciot_timestamp_format(NULL, 30, 0, &n), CIOT_EINVAL);

    /* exactly 24: no NUL, nothing beyond */
    char out[32];
    memset(out, 'x', sizeof out);
    cr_assert_eq(ciot_timestamp_format(out, 24, 0, NULL), 0);
    cr_assert(memcmp(out, "1970-01-01T00:00:00.000Zx", 25) == 0);
    memset(out, 'x', sizeof out);
    cr_assert_eq(ciot_timestamp_format(out, 25, 0, NULL), 0);
    cr_assert(memcmp(out, "1970-01-01T00:00:00.000Z\0x", 26) == 0);
}

/* The reference: gmtime_r + strftime (year printed apart, since %Y does not
 * pad years below 1000), milliseconds by floor division. */
static void reference(int64_t ms, char *out, size_t cap)
{
    int64_t secs = ms / 1000, rem = ms % 1000;
    if (rem < 0) {
        rem += 1000;
        secs -= 1;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    cr_assert_not_null(gmtime_r(&t, &tm));
    char mid[64];
    cr_assert_gt(strftime(mid, sizeof mid, "%m-%dT%H:%M:%S", &tm), 0);
    snprintf(out, cap, "%04d-%s.%03dZ", tm.tm_year + 1900, mid, (int)rem);
}

static void check_against_libc(int64_t ms)
{
    char want[128], got[32];
    reference(ms, want, sizeof want);
    size_t n = 0;
    cr_assert_eq(ciot_timestamp_format(got, sizeof got, ms, &n), 0, "ms %lld", (long long)ms);
    cr_assert_eq(n, 24);
    cr_assert_str_eq(got, want, "ms %lld", (long long)ms);
}

Test(timestamp, agrees_with_gmtime_and_strftime_on_random_times)
{
    long n = (long)(1000000 * test_scale());
    const uint64_t span = (uint64_t)(CIOT_TIMESTAMP_MAX_MS - CIOT_TIMESTAMP_MIN_MS) + 1;
    for (long i = 0; i < n; i++) {
        int64_t ms;
        switch (i % 4) {
        case 0: /* anywhere in 0000..9999 */
            ms = CIOT_TIMESTAMP_MIN_MS + (int64_t)(rnd() % span);
            break;
        case 1: /* around now, 1900..2100 */
            ms = -2208988800000LL + (int64_t)(rnd() % 6311433600000ull);
            break;
        case 2: /* before 1970 */
            ms = -(int64_t)(rnd() % 62167219200001ull);
            break;
        default: /* a millisecond next to a day boundary */
            ms = (CIOT_TIMESTAMP_MIN_MS / 86400000 + (int64_t)(rnd() % (span / 86400000))) *
                     86400000 + (int64_t)(rnd() % 3) - 1;
            if (ms < CIOT_TIMESTAMP_MIN_MS)
                ms = CIOT_TIMESTAMP_MIN_MS;
            break;
        }
        check_against_libc(ms);
    }
}

Test(timestamp, agrees_with_gmtime_on_every_day_of_every_year)
{
    /* every day from 0000-01-01 to 9999-12-31 (leap days, century years,
     * 1970, 2000, 2100 among them), at its first and last millisecond */
    double f = test_scale();
    int64_t step = f >= 1 ? 1 : (int64_t)(1 / f);
    const int64_t day = 86400000;
    for (int64_t d = CIOT_TIMESTAMP_MIN_MS / day; d * day <= CIOT_TIMESTAMP_MAX_MS; d += step) {
        check_against_libc(d * day);
        check_against_libc(d * day + day - 1);
    }
    check_against_libc(CIOT_TIMESTAMP_MAX_MS);
}
