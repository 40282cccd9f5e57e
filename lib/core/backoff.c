#include "core/backoff.h"

#include "internal.h"

void ciot__rng_seed(ciot__rng *r, uint64_t seed)
{
    r->state = seed;
}

uint64_t ciot__rng_next(ciot__rng *r)
{
    /* splitmix64 (Steele, Lea, Flood 2014). */
    uint64_t z = (r->state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

uint64_t ciot__rng_upto(ciot__rng *r, uint64_t bound)
{
    if (bound == UINT64_MAX)
        return ciot__rng_next(r);
    uint64_t n = bound + 1;
    /* Reject the lowest (2^64 mod n) values so every residue is equally likely. */
    uint64_t threshold = (0 - n) % n;
    for (;;) {
        uint64_t x = ciot__rng_next(r);
        if (x >= threshold)
            return x % n;
    }
}

int ciot__backoff_init(ciot__backoff *b, uint64_t base_ms, uint64_t max_ms,
                       uint64_t stable_ms, uint64_t seed)
{
    if (!b || base_ms == 0 || max_ms < base_ms)
        return CIOT_EINVAL;
    b->base_ms = base_ms;
    b->max_ms = max_ms;
    b->stable_ms = stable_ms;
    b->connected_at_ms = 0;
    b->attempt = 0;
    b->connected = false;
    ciot__rng_seed(&b->rng, seed);
    return 0;
}

uint64_t ciot__backoff_cap(const ciot__backoff *b)
{
    /* base << attempt overflows or passes max as soon as base > max >> attempt. */
    if (b->attempt >= 64 || b->base_ms > (b->max_ms >> b->attempt))
        return b->max_ms;
    return b->base_ms << b->attempt;
}

uint64_t ciot__backoff_next_delay(ciot__backoff *b)
{
    uint64_t cap = ciot__backoff_cap(b);
    if (b->attempt < UINT32_MAX)
        b->attempt++;
    return ciot__rng_upto(&b->rng, cap);
}

void ciot__backoff_connected(ciot__backoff *b, uint64_t now_ms)
{
    b->connected = true;
    b->connected_at_ms = now_ms;
}

void ciot__backoff_disconnected(ciot__backoff *b, uint64_t now_ms)
{
    if (!b->connected)
        return;
    b->connected = false;
    /* A clock that went backwards proves nothing about stability. */
    if (now_ms >= b->connected_at_ms && now_ms - b->connected_at_ms >= b->stable_ms)
        b->attempt = 0;
}

void ciot__backoff_reset(ciot__backoff *b)
{
    b->attempt = 0;
}

#define RL_LIMIT 1000000000u

int ciot__ratelimit_init(ciot__ratelimit *r, uint64_t rate_per_s, uint64_t burst,
                         uint64_t now_ms)
{
    if (!r || rate_per_s > RL_LIMIT || burst > RL_LIMIT || (rate_per_s && burst == 0))
        return CIOT_EINVAL;
    r->rate_per_s = rate_per_s;
    r->burst_mt = burst * 1000u;
    r->tokens_mt = r->burst_mt;
    r->last_ms = now_ms;
    return 0;
}

static void refill(ciot__ratelimit *r, uint64_t now_ms)
{
    if (now_ms <= r->last_ms)
        return;
    uint64_t elapsed = now_ms - r->last_ms;
    r->last_ms = now_ms;
    /* One millisecond adds rate_per_s millitokens. Bound elapsed first so
     * elapsed * rate cannot overflow: a full bucket needs at most burst_mt. */
    uint64_t room = r->burst_mt - r->tokens_mt;
    if (elapsed >= room / r->rate_per_s + 1) {
        r->tokens_mt = r->burst_mt;
        return;
    }
    uint64_t add = elapsed * r->rate_per_s;
    r->tokens_mt = add >= room ? r->burst_mt : r->tokens_mt + add;
}

bool ciot__ratelimit_take(ciot__ratelimit *r, uint64_t now_ms)
{
    if (r->rate_per_s == 0)
        return true;
    refill(r, now_ms);
    if (r->tokens_mt < 1000u)
        return false;
    r->tokens_mt -= 1000u;
    return true;
}

uint64_t ciot__ratelimit_wait_ms(ciot__ratelimit *r, uint64_t now_ms)
{
    if (r->rate_per_s == 0)
        return 0;
    refill(r, now_ms);
    if (r->tokens_mt >= 1000u)
        return 0;
    uint64_t missing = 1000u - r->tokens_mt;
    return (missing + r->rate_per_s - 1) / r->rate_per_s;
}
