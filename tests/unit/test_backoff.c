/* Reconnect backoff (full jitter), its PRNG, the drain-rate token bucket and
 * CRC-32C. All pure: time is injected, nothing sleeps. */
#include "core/backoff.h"
#include "core/crc32c.h"
#include "internal.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static double test_scale(void)
{
    const char *s = getenv("CIOT_TEST_SCALE");
    double v = s ? atof(s) : 1.0;
    return v > 0 ? v : 1.0;
}

Test(backoff, init_validates_parameters)
{
    ciot__backoff b;
    cr_assert_eq(ciot__backoff_init(&b, 0, 1000, 0, 1), CIOT_EINVAL);
    cr_assert_eq(ciot__backoff_init(&b, 2000, 1000, 0, 1), CIOT_EINVAL);
    cr_assert_eq(ciot__backoff_init(NULL, 1000, 1000, 0, 1), CIOT_EINVAL);
    cr_assert_eq(ciot__backoff_init(&b, 1000, 1000, 0, 1), 0);
    cr_assert_eq(ciot__backoff_init(&b, CIOT__BACKOFF_DEFAULT_BASE_MS, CIOT__BACKOFF_DEFAULT_MAX_MS,
                                    CIOT__BACKOFF_DEFAULT_STABLE_MS, 1),
                 0);
    cr_assert_eq(b.base_ms, 1000);
    cr_assert_eq(b.max_ms, 32000);
    cr_assert_eq(b.stable_ms, 20000);
}

Test(backoff, cap_grows_exponentially_then_saturates)
{
    ciot__backoff b;
    cr_assert_eq(ciot__backoff_init(&b, 1000, 32000, 20000, 7), 0);
    const uint64_t want[] = {1000, 2000, 4000, 8000, 16000, 32000, 32000, 32000};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        cr_assert_eq(ciot__backoff_cap(&b), want[i], "attempt %zu: cap %llu", i,
                     (unsigned long long)ciot__backoff_cap(&b));
        uint64_t d = ciot__backoff_next_delay(&b);
        cr_assert_leq(d, want[i]);
    }
}

Test(backoff, delays_stay_within_policy_bounds)
{
    ciot__backoff b;
    cr_assert_eq(ciot__backoff_init(&b, 100, 5000, 1000, 42), 0);
    for (int i = 0; i < 10000; i++) {
        uint64_t cap = ciot__backoff_cap(&b);
        cr_assert_leq(cap, 5000);
        uint64_t d = ciot__backoff_next_delay(&b);
        cr_assert_leq(d, cap);
    }
}

Test(backoff, huge_attempt_counts_do_not_overflow)
{
    ciot__backoff b;
    cr_assert_eq(ciot__backoff_init(&b, 3, UINT64_MAX, 0, 1), 0);
    const uint32_t attempts[] = {0, 1, 62, 63, 64, 65, 1000, UINT32_MAX - 1, UINT32_MAX};
    for (size_t i = 0; i < sizeof attempts / sizeof attempts[0]; i++) {
        uint32_t a = attempts[i];
        b.attempt = a;
        uint64_t cap = ciot__backoff_cap(&b);
        if (a == 0)
            cr_assert_eq(cap, 3);
        else if (a == 1)
            cr_assert_eq(cap, 6);
        else if (a == 62)
            cr_assert_eq(cap, (uint64_t)3 << 62);
        else
            cr_assert_eq(cap, UINT64_MAX, "attempt %u", a);
        (void)ciot__backoff_next_delay(&b);
        cr_assert_geq(b.attempt, a); /* saturates, never wraps to 0 */
    }
    cr_assert_eq(b.attempt, UINT32_MAX);
    /* max == base: the cap never moves. */
    cr_assert_eq(ciot__backoff_init(&b, UINT64_MAX, UINT64_MAX, 0, 1), 0);
    for (int i = 0; i < 100; i++)
        (void)ciot__backoff_next_delay(&b);
    cr_assert_eq(ciot__backoff_cap(&b), UINT64_MAX);
}

Test(backoff, reset_after_stable_connection)
{
    ciot__backoff b;
    cr_assert_eq(ciot__backoff_init(&b, 1000, 32000, 20000, 9), 0);
    uint64_t now = 5000000;
    for (int i = 0; i < 4; i++)
        (void)ciot__backoff_next_delay(&b);
    cr_assert_eq(ciot__backoff_cap(&b), 16000);
    ciot__backoff_connected(&b, now);
    ciot__backoff_disconnected(&b, now + 20000); /* exactly the stable time */
    cr_assert_eq(b.attempt, 0);
    cr_assert_eq(ciot__backoff_cap(&b), 1000);
}

Test(backoff, no_reset_after_short_connection)
{
    ciot__backoff b;
    cr_assert_eq(ciot__backoff_init(&b, 1000, 32000, 20000, 9), 0);
    uint64_t now = 1000;
    for (int i = 0; i < 3; i++)
        (void)ciot__backoff_next_delay(&b);
    ciot__backoff_connected(&b, now);
    ciot__backoff_disconnected(&b, now + 19999);
    cr_assert_eq(b.attempt, 3);
    cr_assert_eq(ciot__backoff_cap(&b), 8000);
    /* Flapping keeps growing the cap. */
    (void)ciot__backoff_next_delay(&b);
    ciot__backoff_connected(&b, now + 30000);
    ciot__backoff_disconnected(&b, now + 30001);
    cr_assert_eq(ciot__backoff_cap(&b), 16000);
    /* A clock that went backwards is not a stable connection. */
    ciot__backoff_connected(&b, 100000);
    ciot__backoff_disconnected(&b, 50);
    cr_assert_eq(ciot__backoff_cap(&b), 16000);
    /* disconnected() without connected() changes nothing. */
    ciot__backoff_disconnected(&b, 10000000);
    cr_assert_eq(ciot__backoff_cap(&b), 16000);
    ciot__backoff_reset(&b);
    cr_assert_eq(ciot__backoff_cap(&b), 1000);
}

Test(backoff, stable_zero_resets_on_any_connection)
{
    ciot__backoff b;
    cr_assert_eq(ciot__backoff_init(&b, 10, 1000, 0, 9), 0);
    (void)ciot__backoff_next_delay(&b);
    (void)ciot__backoff_next_delay(&b);
    ciot__backoff_connected(&b, 77);
    ciot__backoff_disconnected(&b, 77);
    cr_assert_eq(b.attempt, 0);
}

/* Full jitter: uniform on [0, cap], so the mean is cap / 2 and both halves are hit. */
Test(backoff, jitter_distribution_is_uniform_over_the_cap)
{
    ciot__backoff b;
    cr_assert_eq(ciot__backoff_init(&b, 1000, 32000, 20000, 12345), 0);
    int n = (int)(200000 * test_scale());
    if (n < 20000)
        n = 20000;
    double sum = 0;
    int low = 0, buckets[8] = {0};
    uint64_t mn = UINT64_MAX, mx = 0;
    for (int i = 0; i < n; i++) {
        b.attempt = 10; /* well past the cap */
        uint64_t d = ciot__backoff_next_delay(&b);
        cr_assert_leq(d, 32000);
        sum += (double)d;
        low += d < 16000;
        buckets[d * 8 / 32001]++;
        mn = d < mn ? d : mn;
        mx = d > mx ? d : mx;
    }
    double mean = sum / n;
    /* sd of U[0,32000] is 9238; the mean of n draws is within 4 sd / sqrt(n). */
    cr_assert_lt(mean > 16000 ? mean - 16000 : 16000 - mean, 4 * 9238 / __builtin_sqrt(n),
                 "mean %f", mean);
    cr_assert_lt(mn, 200);
    cr_assert_gt(mx, 31800);
    for (int k = 0; k < 8; k++)
        cr_assert(buckets[k] > n / 8 * 0.9 && buckets[k] < n / 8 * 1.1, "bucket %d: %d", k,
                  buckets[k]);
    (void)low;
}

Test(backoff, same_seed_same_delays)
{
    ciot__backoff a, b, c;
    cr_assert_eq(ciot__backoff_init(&a, 1000, 32000, 20000, 2026), 0);
    cr_assert_eq(ciot__backoff_init(&b, 1000, 32000, 20000, 2026), 0);
    cr_assert_eq(ciot__backoff_init(&c, 1000, 32000, 20000, 2027), 0);
    int differ = 0;
    for (int i = 0; i < 50; i++) {
        uint64_t x = ciot__backoff_next_delay(&a), y = ciot__backoff_next_delay(&b);
        cr_assert_eq(x, y);
        differ += x != ciot__backoff_next_delay(&c);
    }
    cr_assert_gt(differ, 40);
}

Test(rng, splitmix64_reference_values)
{
    /* splitmix64 seeded with 0: first outputs of the reference algorithm. */
    ciot__rng r;
    ciot__rng_seed(&r, 0);
    cr_assert_eq(ciot__rng_next(&r), 0xe220a8397b1dcdafu);
    cr_assert_eq(ciot__rng_next(&r), 0x6e789e6aa1b965f4u);
    cr_assert_eq(ciot__rng_next(&r), 0x06c45d188009454fu);
}

Test(rng, upto_stays_in_range)
{
    ciot__rng r;
    ciot__rng_seed(&r, 5);
    for (int i = 0; i < 10000; i++) {
        cr_assert_eq(ciot__rng_upto(&r, 0), 0);
        cr_assert_leq(ciot__rng_upto(&r, 1), 1);
        cr_assert_leq(ciot__rng_upto(&r, 6), 6);
        cr_assert_leq(ciot__rng_upto(&r, (UINT64_MAX / 3) * 2), (UINT64_MAX / 3) * 2);
    }
    int seen[7] = {0};
    for (int i = 0; i < 7000; i++)
        seen[ciot__rng_upto(&r, 6)]++;
    for (int k = 0; k < 7; k++)
        cr_assert_gt(seen[k], 800);
}

Test(ratelimit, init_validates)
{
    ciot__ratelimit r;
    cr_assert_eq(ciot__ratelimit_init(&r, 10, 0, 0), CIOT_EINVAL);
    cr_assert_eq(ciot__ratelimit_init(&r, 2000000000u, 1, 0), CIOT_EINVAL);
    cr_assert_eq(ciot__ratelimit_init(NULL, 10, 1, 0), CIOT_EINVAL);
    cr_assert_eq(ciot__ratelimit_init(&r, 0, 0, 0), 0); /* unlimited */
    for (int i = 0; i < 1000; i++)
        cr_assert(ciot__ratelimit_take(&r, 0));
    cr_assert_eq(ciot__ratelimit_wait_ms(&r, 0), 0);
}

Test(ratelimit, burst_then_steady_rate)
{
    ciot__ratelimit r;
    uint64_t t = 1000000;
    cr_assert_eq(ciot__ratelimit_init(&r, 100, 10, t), 0);
    for (int i = 0; i < 10; i++)
        cr_assert(ciot__ratelimit_take(&r, t), "burst %d", i);
    cr_assert_not(ciot__ratelimit_take(&r, t));
    cr_assert_eq(ciot__ratelimit_wait_ms(&r, t), 10); /* 100/s: one per 10 ms */
    cr_assert_not(ciot__ratelimit_take(&r, t + 9));
    cr_assert_eq(ciot__ratelimit_wait_ms(&r, t + 9), 1);
    cr_assert(ciot__ratelimit_take(&r, t + 10));
    cr_assert_not(ciot__ratelimit_take(&r, t + 10));
}

/* Drive the bucket with a 1 ms injected clock for 60 s: exactly rate * 60 + burst sent. */
Test(ratelimit, rate_over_injected_clock_is_exact)
{
    const uint64_t rates[] = {1, 3, 7, 100, 333, 1000, 2500};
    for (size_t k = 0; k < sizeof rates / sizeof rates[0]; k++) {
        ciot__ratelimit r;
        uint64_t t0 = 42;
        cr_assert_eq(ciot__ratelimit_init(&r, rates[k], 5, t0), 0);
        uint64_t sent = 0;
        for (uint64_t t = t0; t <= t0 + 60000; t++)
            while (ciot__ratelimit_take(&r, t))
                sent++;
        cr_assert_eq(sent, rates[k] * 60 + 5, "rate %llu: sent %llu", (unsigned long long)rates[k],
                     (unsigned long long)sent);
    }
}

Test(ratelimit, long_idle_refills_only_to_burst_and_clock_backwards_adds_nothing)
{
    ciot__ratelimit r;
    cr_assert_eq(ciot__ratelimit_init(&r, 1000000000u, 1000, 0), 0);
    uint64_t n = 0;
    while (n < 5000 && ciot__ratelimit_take(&r, 0))
        n++;
    cr_assert_eq(n, 1000);
    /* An enormous gap: no overflow, exactly the burst. */
    cr_assert(ciot__ratelimit_take(&r, UINT64_MAX));
    cr_assert_eq(r.tokens_mt, r.burst_mt - 1000);
    ciot__ratelimit s;
    cr_assert_eq(ciot__ratelimit_init(&s, 10, 1, 5000), 0);
    cr_assert(ciot__ratelimit_take(&s, 5000));
    cr_assert_not(ciot__ratelimit_take(&s, 10)); /* backwards */
    cr_assert(ciot__ratelimit_take(&s, 5100));
}

Test(crc32c, known_vectors)
{
    cr_assert_eq(ciot__crc32c(0, "123456789", 9), 0xe3069283u);
    cr_assert_eq(ciot__crc32c(0, "", 0), 0);
    unsigned char zeros[32] = {0}, ones[32];
    memset(ones, 0xff, sizeof ones);
    /* RFC 3720 (iSCSI) B.4 vectors. */
    cr_assert_eq(ciot__crc32c(0, zeros, 32), 0x8a9136aau);
    cr_assert_eq(ciot__crc32c(0, ones, 32), 0x62a8ab43u);
    unsigned char inc[32];
    for (int i = 0; i < 32; i++)
        inc[i] = (unsigned char)i;
    cr_assert_eq(ciot__crc32c(0, inc, 32), 0x46dd794eu);
    /* Incremental == one shot. */
    uint32_t c = ciot__crc32c(0, "1234", 4);
    cr_assert_eq(ciot__crc32c(c, "56789", 5), 0xe3069283u);
}

/* The table-driven code against the bit-by-bit definition, every length 0..300
 * and every start offset 0..7 (the 8-byte steps must not care about alignment). */
static uint32_t crc32c_bitwise(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    while (n--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1u)));
    }
    return ~c;
}

Test(crc32c, matches_bitwise_definition_at_any_length_and_alignment)
{
    unsigned char buf[320];
    ciot__rng r;
    ciot__rng_seed(&r, 77);
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)ciot__rng_next(&r);
    for (size_t off = 0; off < 8; off++)
        for (size_t n = 0; n <= 300; n++) {
            cr_assert_eq(ciot__crc32c(0, buf + off, n), crc32c_bitwise(buf + off, n),
                         "off %zu len %zu", off, n);
            size_t cut = n / 3;
            cr_assert_eq(ciot__crc32c(ciot__crc32c(0, buf + off, cut), buf + off + cut, n - cut),
                         crc32c_bitwise(buf + off, n));
        }
}
