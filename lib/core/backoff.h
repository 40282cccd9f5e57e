/*
 * Reconnect policy (exponential backoff with full jitter) and the drain-rate
 * limiter (token bucket). Pure: the caller passes the time (milliseconds of
 * a monotonic clock) and owns the random state; no I/O, no globals, no
 * allocation. Not locked: the owner serialises calls (the client holds its
 * mutex).
 */
#ifndef CIOT_CORE_BACKOFF_H
#define CIOT_CORE_BACKOFF_H

#include <stdbool.h>
#include <stdint.h>

/* Defaults of the AWS IoT SDKs: 1 s base, 32 s cap, reset after 20 s up. */
#define CIOT__BACKOFF_DEFAULT_BASE_MS 1000u
#define CIOT__BACKOFF_DEFAULT_MAX_MS 32000u
#define CIOT__BACKOFF_DEFAULT_STABLE_MS 20000u

/* splitmix64: a small seeded generator, enough for jitter (not for keys). */
typedef struct ciot__rng {
    uint64_t state;
} ciot__rng;

void ciot__rng_seed(ciot__rng *r, uint64_t seed);
uint64_t ciot__rng_next(ciot__rng *r);
/* Uniform in [0, bound] (inclusive, no modulo bias); any bound. */
uint64_t ciot__rng_upto(ciot__rng *r, uint64_t bound);

typedef struct ciot__backoff {
    uint64_t base_ms, max_ms, stable_ms;
    uint64_t connected_at_ms;
    uint32_t attempt; /* failed attempts since the last reset (saturates) */
    bool connected;
    ciot__rng rng;
} ciot__backoff;

/* base_ms > 0 and max_ms >= base_ms, else CIOT_EINVAL (b is left untouched).
 * stable_ms may be 0: every connection then counts as stable. */
int ciot__backoff_init(ciot__backoff *b, uint64_t base_ms, uint64_t max_ms,
                       uint64_t stable_ms, uint64_t seed);

/* The upper bound of the next delay: min(max, base * 2^attempt), never
 * overflowing whatever the attempt count. */
uint64_t ciot__backoff_cap(const ciot__backoff *b);

/* Delay before the next connection attempt, uniform in [0, cap] ("full
 * jitter"); counts one more attempt. */
uint64_t ciot__backoff_next_delay(ciot__backoff *b);

/* A connection came up at now_ms. */
void ciot__backoff_connected(ciot__backoff *b, uint64_t now_ms);

/* The connection went down at now_ms. The attempt count goes back to zero only
 * if the connection had been up for at least stable_ms; a flapping link keeps
 * backing off. Without a preceding connected() this changes nothing. */
void ciot__backoff_disconnected(ciot__backoff *b, uint64_t now_ms);

/* Forgets the attempt count (e.g. the user asked for an immediate connect). */
void ciot__backoff_reset(ciot__backoff *b);

/*
 * Token bucket: at most rate_per_s messages per second on average, bursts of
 * at most `burst` messages. Tokens are kept in millitokens so that rates that
 * do not divide 1000 ms stay exact. rate_per_s == 0 means unlimited.
 */
typedef struct ciot__ratelimit {
    uint64_t rate_per_s;
    uint64_t burst_mt;  /* capacity, millitokens */
    uint64_t tokens_mt; /* current, millitokens */
    uint64_t last_ms;
} ciot__ratelimit;

/* burst >= 1 unless rate_per_s is 0; rate_per_s and burst at most 10^9
 * (CIOT_EINVAL otherwise). The bucket starts full at now_ms. */
int ciot__ratelimit_init(ciot__ratelimit *r, uint64_t rate_per_s, uint64_t burst,
                         uint64_t now_ms);

/* Takes one token if there is one at now_ms: true = may send now. A clock that
 * goes backwards adds no tokens. */
bool ciot__ratelimit_take(ciot__ratelimit *r, uint64_t now_ms);

/* Milliseconds from now_ms until a token is available (0 if one is now). */
uint64_t ciot__ratelimit_wait_ms(ciot__ratelimit *r, uint64_t now_ms);

#endif /* CIOT_CORE_BACKOFF_H */
