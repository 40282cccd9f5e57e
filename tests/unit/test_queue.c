/* The client's offline / in-flight message queue. */
#include "client/queue.h"
#include "core/backoff.h"
#include "internal.h"

#include <criterion/criterion.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double test_scale(void)
{
    const char *s = getenv("CIOT_TEST_SCALE");
    double v = s ? atof(s) : 1.0;
    return v > 0 ? v : 1.0;
}

typedef struct drops {
    size_t n;
    uint64_t id[64];
    ciot__drop_reason why[64];
} drops;

static void on_drop(uint64_t id, ciot__drop_reason reason, void *ud)
{
    drops *d = ud;
    if (d->n < 64) {
        d->id[d->n] = id;
        d->why[d->n] = reason;
    }
    d->n++;
}

static uint64_t push_s(ciot__queue *q, const char *topic, const char *payload)
{
    uint64_t id = 0;
    int rc = ciot__queue_push(q, &id, topic, strlen(topic), payload, strlen(payload), 1, false);
    cr_assert_eq(rc, 0, "push %s: %d", payload, rc);
    return id;
}

static void assert_msg(const ciot__qmsg *m, uint64_t id, const char *topic, const char *payload)
{
    cr_assert_not_null(m);
    cr_assert_eq(m->id, id, "id %llu, want %llu", (unsigned long long)m->id, (unsigned long long)id);
    cr_assert_eq(ciot__qmsg_topic_len(m), strlen(topic));
    cr_assert_eq(memcmp(ciot__qmsg_topic(m), topic, strlen(topic)), 0);
    cr_assert_eq(ciot__qmsg_payload_len(m), strlen(payload));
    cr_assert_eq(memcmp(ciot__qmsg_payload(m), payload, strlen(payload)), 0);
}

Test(queue, new_validates)
{
    ciot__queue *q = (ciot__queue *)1;
    drops d = {0};
    cr_assert_eq(ciot__queue_new(&q, 0, 100, CIOT__DROP_OLDEST, on_drop, &d), CIOT_EINVAL);
    cr_assert_null(q);
    cr_assert_eq(ciot__queue_new(&q, 10, 0, CIOT__DROP_OLDEST, on_drop, &d), CIOT_EINVAL);
    cr_assert_eq(ciot__queue_new(&q, 10, 100, (ciot__drop_policy)7, on_drop, &d), CIOT_EINVAL);
    cr_assert_eq(ciot__queue_new(&q, 10, 100, CIOT__REFUSE, NULL, NULL), CIOT_EINVAL);
    cr_assert_eq(ciot__queue_new(NULL, 10, 100, CIOT__REFUSE, on_drop, &d), CIOT_EINVAL);
    cr_assert_eq(ciot__queue_new(&q, 10, SIZE_MAX, CIOT__REFUSE, on_drop, &d), 0);
    ciot__queue_free(q);
    ciot__queue_free(NULL);
}

Test(queue, push_validates_and_never_half_queues)
{
    ciot__queue *q;
    drops d = {0};
    cr_assert_eq(ciot__queue_new(&q, 10, SIZE_MAX, CIOT__DROP_OLDEST, on_drop, &d), 0);
    uint64_t id = 99;
    cr_assert_eq(ciot__queue_push(q, &id, NULL, 3, "x", 1, 1, false), CIOT_EINVAL);
    cr_assert_eq(ciot__queue_push(q, &id, "t", 0, "x", 1, 1, false), CIOT_EINVAL);
    cr_assert_eq(ciot__queue_push(q, &id, "t", 65536, "x", 1, 1, false), CIOT_EINVAL);
    cr_assert_eq(ciot__queue_push(q, &id, "t", 1, NULL, 1, 1, false), CIOT_EINVAL);
    cr_assert_eq(ciot__queue_push(q, &id, "t", 1, "x", 268435456u, 1, false), CIOT_EINVAL);
    cr_assert_eq(ciot__queue_push(q, &id, "t", 1, "x", 1, 3, false), CIOT_EINVAL);
    cr_assert_eq(ciot__queue_push(q, &id, "t", 1, "x", 1, -1, false), CIOT_EINVAL);
    cr_assert_eq(ciot__queue_push(q, NULL, "t", 1, "x", 1, 1, false), CIOT_EINVAL);
    cr_assert_eq(ciot__queue_push(NULL, &id, "t", 1, "x", 1, 1, false), CIOT_EINVAL);
    cr_assert_eq(id, 99);
    cr_assert_eq(ciot__queue_count(q), 0);
    cr_assert_eq(ciot__queue_next_id(q), 1); /* refused pushes use no id */
    /* An empty payload with a NULL pointer is fine. */
    cr_assert_eq(ciot__queue_push(q, &id, "t", 1, NULL, 0, 2, true), 0);
    const ciot__qmsg *m = ciot__queue_peek(q);
    cr_assert_eq(ciot__qmsg_payload_len(m), 0);
    cr_assert_eq(ciot__qmsg_qos(m), 2);
    cr_assert(ciot__qmsg_retain(m));
    cr_assert_not(ciot__qmsg_in_flight(m));
    cr_assert_eq(d.n, 0);
    ciot__queue_free(q);
}

Test(queue, fifo_order_and_increasing_ids)
{
    ciot__queue *q;
    drops d = {0};
    cr_assert_eq(ciot__queue_new(&q, 100, SIZE_MAX, CIOT__REFUSE, on_drop, &d), 0);
    char payload[16];
    uint64_t prev = 0;
    for (int i = 0; i < 50; i++) {
        snprintf(payload, sizeof payload, "m%d", i);
        uint64_t id = 0;
        cr_assert_eq(ciot__queue_push(q, &id, "a/b", 3, payload, strlen(payload), i % 3, i & 1), 0);
        cr_assert_gt(id, prev);
        prev = id;
    }
    cr_assert_eq(ciot__queue_count(q), 50);
    for (int i = 0; i < 50; i++) {
        const ciot__qmsg *m = ciot__queue_peek(q);
        snprintf(payload, sizeof payload, "m%d", i);
        assert_msg(m, (uint64_t)i + 1, "a/b", payload);
        cr_assert_eq(ciot__qmsg_qos(m), i % 3);
        cr_assert_eq(ciot__qmsg_retain(m), (bool)(i & 1));
        cr_assert_eq(ciot__queue_ack(q, m->id), 0);
    }
    cr_assert_null(ciot__queue_peek(q));
    cr_assert_eq(ciot__queue_count(q), 0);
    cr_assert_eq(ciot__queue_bytes(q), 0);
    /* Ids are never reused, even after the queue emptied. */
    cr_assert_eq(push_s(q, "x", "y"), 51);
    ciot__queue_free(q);
}

Test(queue, drop_oldest_reports_exact_ids)
{
    ciot__queue *q;
    drops d = {0};
    cr_assert_eq(ciot__queue_new(&q, 3, SIZE_MAX, CIOT__DROP_OLDEST, on_drop, &d), 0);
    for (int i = 0; i < 5; i++)
        push_s(q, "t", "p");
    cr_assert_eq(d.n, 2);
    cr_assert_eq(d.id[0], 1);
    cr_assert_eq(d.why[0], CIOT__DROPPED_OLDEST);
    cr_assert_eq(d.id[1], 2);
    cr_assert_eq(d.why[1], CIOT__DROPPED_OLDEST);
    cr_assert_eq(ciot__queue_count(q), 3);
    cr_assert_eq(ciot__queue_peek(q)->id, 3);
    ciot__queue_free(q);
}

Test(queue, drop_newest_reports_the_new_message)
{
    ciot__queue *q;
    drops d = {0};
    cr_assert_eq(ciot__queue_new(&q, 3, SIZE_MAX, CIOT__DROP_NEWEST, on_drop, &d), 0);
    for (int i = 0; i < 5; i++)
        push_s(q, "t", "p"); /* the 4th and 5th succeed but are dropped at once */
    cr_assert_eq(d.n, 2);
    cr_assert_eq(d.id[0], 4);
    cr_assert_eq(d.why[0], CIOT__DROPPED_NEWEST);
    cr_assert_eq(d.id[1], 5);
    cr_assert_eq(d.why[1], CIOT__DROPPED_NEWEST);
    cr_assert_eq(ciot__queue_count(q), 3);
    const ciot__qmsg *m = ciot__queue_first(q);
    for (uint64_t id = 1; id <= 3; id++, m = ciot__queue_next(m))
        cr_assert_eq(m->id, id);
    cr_assert_null(m);
    cr_assert_eq(ciot__queue_next_id(q), 6);
    ciot__queue_free(q);
}

Test(queue, refuse_returns_queue_full_and_drops_nothing)
{
    ciot__queue *q;
    drops d = {0};
    cr_assert_eq(ciot__queue_new(&q, 2, SIZE_MAX, CIOT__REFUSE, on_drop, &d), 0);
    push_s(q, "t", "a");
    push_s(q, "t", "b");
    uint64_t id = 0;
    cr_assert_eq(ciot__queue_push(q, &id, "t", 1, "c", 1, 1, false), CIOT_EQUEUE_FULL);
    cr_assert_eq(id, 0);
    cr_assert_eq(d.n, 0);
    cr_assert_eq(ciot__queue_ack(q, 1), 0);
    cr_assert_eq(push_s(q, "t", "c"), 3);
    ciot__queue_free(q);
}

Test(queue, byte_bound_counts_topic_and_payload)
{
    ciot__queue *q;
    drops d = {0};
    /* 20 bytes: each "tt"+"12345678" message is 10 bytes. */
    cr_assert_eq(ciot__queue_new(&q, 100, 20, CIOT__DROP_OLDEST, on_drop, &d), 0);
    push_s(q, "tt", "12345678");
    push_s(q, "tt", "12345678");
    cr_assert_eq(ciot__queue_bytes(q), 20);
    cr_assert_eq(d.n, 0);
    /* 15 bytes: both older ones must go (10 + 15 > 20). */
    push_s(q, "ttttt", "1234567890");
    cr_assert_eq(d.n, 2);
    cr_assert_eq(d.id[0], 1);
    cr_assert_eq(d.id[1], 2);
    cr_assert_eq(ciot__queue_bytes(q), 15);
    /* 5 bytes fit exactly beside it. */
    push_s(q, "t", "1234");
    cr_assert_eq(d.n, 2);
    cr_assert_eq(ciot__queue_bytes(q), 20);
    cr_assert_eq(ciot__queue_count(q), 2);
    ciot__queue_free(q);

    /* The same with refuse: the byte bound alone refuses. */
    drops e = {0};
    cr_assert_eq(ciot__queue_new(&q, 100, 20, CIOT__REFUSE, on_drop, &e), 0);
    push_s(q, "tt", "12345678");
    push_s(q, "tt", "12345678");
    uint64_t id;
    cr_assert_eq(ciot__queue_push(q, &id, "t", 1, NULL, 0, 0, false), CIOT_EQUEUE_FULL);
    cr_assert_eq(e.n, 0);
    ciot__queue_free(q);
}

Test(queue, oversize_message_is_refused_under_every_policy)
{
    const ciot__drop_policy pol[] = {CIOT__DROP_OLDEST, CIOT__DROP_NEWEST, CIOT__REFUSE};
    for (int k = 0; k < 3; k++) {
        ciot__queue *q;
        drops d = {0};
        cr_assert_eq(ciot__queue_new(&q, 10, 16, pol[k], on_drop, &d), 0);
        push_s(q, "t", "abc");
        uint64_t id = 0;
        cr_assert_eq(ciot__queue_push(q, &id, "topic", 5, "0123456789ab", 12, 1, false),
                     CIOT_EQUEUE_FULL);
        cr_assert_eq(d.n, 0, "policy %d dropped something", k);
        cr_assert_eq(ciot__queue_count(q), 1);
        cr_assert_eq(ciot__queue_next_id(q), 2);
        /* Exactly max_bytes is allowed (and evicts under drop-oldest). */
        int rc = ciot__queue_push(q, &id, "topic", 5, "0123456789a", 11, 1, false);
        cr_assert_eq(rc, k == 2 ? CIOT_EQUEUE_FULL : 0);
        ciot__queue_free(q);
    }
}

Test(queue, acks_out_of_order)
{
    ciot__queue *q;
    drops d = {0};
    cr_assert_eq(ciot__queue_new(&q, 100, SIZE_MAX, CIOT__REFUSE, on_drop, &d), 0);
    for (int i = 0; i < 6; i++)
        push_s(q, "t", "x");
    for (uint64_t id = 1; id <= 4; id++) {
        const ciot__qmsg *m = ciot__queue_peek(q);
        cr_assert_eq(m->id, id);
        cr_assert_eq(ciot__queue_mark_sent(q, id, (uint16_t)(100 + id)), 0);
    }
    cr_assert_eq(ciot__queue_in_flight(q), 4);
    cr_assert_eq(ciot__queue_mark_sent(q, 6, 1), CIOT_ESTATE); /* 5 is next */
    cr_assert_eq(ciot__queue_find_in_flight(q, 103)->id, 3);
    cr_assert_null(ciot__queue_find_in_flight(q, 105));
    cr_assert_eq(ciot__queue_ack(q, 3), 0);
    cr_assert_eq(ciot__queue_ack(q, 3), CIOT_ENOTFOUND);
    cr_assert_eq(ciot__queue_ack(q, 1), 0);
    cr_assert_eq(ciot__queue_ack(q, 6), 0); /* not even sent: removed too */
    cr_assert_eq(ciot__queue_ack(q, 77), CIOT_ENOTFOUND);
    cr_assert_eq(ciot__queue_in_flight(q), 2);
    cr_assert_eq(ciot__queue_count(q), 3);
    cr_assert_eq(ciot__queue_peek(q)->id, 5);
    const ciot__qmsg *m = ciot__queue_first(q);
    cr_assert_eq(m->id, 2);
    cr_assert(ciot__qmsg_in_flight(m));
    m = ciot__queue_next(m);
    cr_assert_eq(m->id, 4);
    m = ciot__queue_next(m);
    cr_assert_eq(m->id, 5);
    cr_assert_not(ciot__qmsg_in_flight(m));
    cr_assert_null(ciot__queue_next(m));
    /* The tail was removed: pushing again links correctly. */
    cr_assert_eq(push_s(q, "t", "y"), 7);
    cr_assert_eq(ciot__queue_ack(q, 5), 0);
    cr_assert_eq(ciot__queue_peek(q)->id, 7);
    cr_assert_eq(d.n, 0);
    ciot__queue_free(q);
}

Test(queue, requeue_puts_in_flight_first_in_original_order)
{
    ciot__queue *q;
    drops d = {0};
    cr_assert_eq(ciot__queue_new(&q, 100, SIZE_MAX, CIOT__REFUSE, on_drop, &d), 0);
    char p[8];
    for (int i = 1; i <= 8; i++) {
        snprintf(p, sizeof p, "%d", i);
        push_s(q, "t", p);
    }
    for (uint64_t id = 1; id <= 5; id++)
        cr_assert_eq(ciot__queue_mark_sent(q, id, (uint16_t)id), 0);
    cr_assert_eq(ciot__queue_ack(q, 2), 0);
    cr_assert_eq(ciot__queue_ack(q, 4), 0);
    push_s(q, "t", "9"); /* queued while "disconnected" */
    cr_assert_eq(ciot__queue_requeue(q), 3);
    cr_assert_eq(ciot__queue_in_flight(q), 0);
    cr_assert_null(ciot__queue_find_in_flight(q, 1));
    const uint64_t want[] = {1, 3, 5, 6, 7, 8, 9};
    for (size_t i = 0; i < 7; i++) {
        const ciot__qmsg *m = ciot__queue_peek(q);
        snprintf(p, sizeof p, "%llu", (unsigned long long)want[i]);
        assert_msg(m, want[i], "t", p);
        cr_assert_not(ciot__qmsg_in_flight(m));
        cr_assert_eq(ciot__queue_mark_sent(q, m->id, (uint16_t)(i + 1)), 0);
    }
    cr_assert_null(ciot__queue_peek(q));
    cr_assert_eq(ciot__queue_requeue(q), 7);
    cr_assert_eq(ciot__queue_peek(q)->id, 1);
    cr_assert_eq(ciot__queue_requeue(q), 0);
    ciot__queue_free(q);
}

Test(queue, drop_oldest_never_evicts_in_flight)
{
    ciot__queue *q;
    drops d = {0};
    cr_assert_eq(ciot__queue_new(&q, 3, SIZE_MAX, CIOT__DROP_OLDEST, on_drop, &d), 0);
    for (int i = 0; i < 3; i++)
        push_s(q, "t", "x");
    cr_assert_eq(ciot__queue_mark_sent(q, 1, 11), 0);
    cr_assert_eq(ciot__queue_mark_sent(q, 2, 12), 0);
    push_s(q, "t", "x"); /* evicts 3, the oldest unsent; 1 and 2 are in flight */
    cr_assert_eq(d.n, 1);
    cr_assert_eq(d.id[0], 3);
    cr_assert_eq(d.why[0], CIOT__DROPPED_OLDEST);
    cr_assert_eq(ciot__queue_in_flight(q), 2);
    cr_assert_eq(ciot__queue_peek(q)->id, 4);
    cr_assert_eq(ciot__queue_mark_sent(q, 4, 13), 0);
    push_s(q, "t", "x"); /* everything in flight: the new message (5) is dropped */
    cr_assert_eq(d.n, 2);
    cr_assert_eq(d.id[1], 5);
    cr_assert_eq(d.why[1], CIOT__DROPPED_NEWEST);
    cr_assert_eq(ciot__queue_count(q), 3);
    cr_assert_eq(ciot__queue_ack(q, 1), 0); /* their PUBACKs still find them */
    cr_assert_eq(ciot__queue_ack(q, 2), 0);
    cr_assert_eq(ciot__queue_in_flight(q), 1);
    ciot__queue_free(q);
}

Test(queue, unmark_and_packet_ids)
{
    ciot__queue *q;
    drops d = {0};
    cr_assert_eq(ciot__queue_new(&q, 10, SIZE_MAX, CIOT__REFUSE, on_drop, &d), 0);
    for (int i = 0; i < 3; i++)
        push_s(q, "t", "x");
    cr_assert_eq(ciot__queue_mark_sent(q, 1, 0), 0);
    cr_assert_eq(ciot__queue_mark_sent(q, 2, 0), 0);
    cr_assert_eq(ciot__queue_unmark(q, 1), CIOT_ESTATE, "only the last one sent can be unmarked");
    cr_assert_eq(ciot__queue_unmark(q, 2), 0);
    cr_assert_eq(ciot__queue_peek(q)->id, 2);
    cr_assert_eq(ciot__queue_in_flight(q), 1);
    cr_assert_eq(ciot__queue_set_packet_id(q, 1, 77), 0);
    cr_assert_eq(ciot__queue_set_packet_id(q, 2, 78), CIOT_ENOTFOUND, "not in flight");
    cr_assert_eq(ciot__queue_find_in_flight(q, 77)->id, 1);
    cr_assert_eq(ciot__queue_mark_sent(q, 2, 0), 0);
    cr_assert_eq(ciot__queue_set_packet_id(q, 2, 78), 0, "2 is now the newest in flight");
    cr_assert_eq(ciot__queue_find_in_flight(q, 78)->id, 2);
    cr_assert_eq(ciot__queue_ack(q, 2), 0);
    cr_assert_eq(ciot__queue_set_packet_id(q, 2, 79), CIOT_ENOTFOUND, "acked: gone");
    ciot__queue_free(q);
}

Test(queue, clear_reports_everything)
{
    ciot__queue *q;
    drops d = {0};
    cr_assert_eq(ciot__queue_new(&q, 10, SIZE_MAX, CIOT__REFUSE, on_drop, &d), 0);
    for (int i = 0; i < 4; i++)
        push_s(q, "t", "x");
    cr_assert_eq(ciot__queue_mark_sent(q, 1, 1), 0);
    ciot__queue_clear(q);
    cr_assert_eq(d.n, 4);
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(d.id[i], i + 1);
        cr_assert_eq(d.why[i], CIOT__DROPPED_CLEARED);
    }
    cr_assert_eq(ciot__queue_count(q), 0);
    cr_assert_eq(ciot__queue_in_flight(q), 0);
    cr_assert_null(ciot__queue_peek(q));
    cr_assert_eq(push_s(q, "t", "x"), 5);
    ciot__queue_free(q);
}

Test(queue, restore_keeps_journal_ids)
{
    ciot__queue *q;
    drops d = {0};
    cr_assert_eq(ciot__queue_new(&q, 10, SIZE_MAX, CIOT__REFUSE, on_drop, &d), 0);
    cr_assert_eq(ciot__queue_restore(q, 40, "t", 1, "a", 1, 1, false), 0);
    cr_assert_eq(ciot__queue_restore(q, 41, "t", 1, "b", 1, 1, false), 0);
    cr_assert_eq(ciot__queue_restore(q, 41, "t", 1, "c", 1, 1, false), CIOT_ERANGE);
    cr_assert_eq(ciot__queue_restore(q, UINT64_MAX, "t", 1, "c", 1, 1, false), CIOT_ERANGE);
    cr_assert_eq(push_s(q, "t", "c"), 42);
    assert_msg(ciot__queue_peek(q), 40, "t", "a");
    ciot__queue_free(q);
}

struct counting {
    size_t mallocs, frees, live_bytes, peak;
};

static struct counting cnt;

static void *c_malloc(size_t n, void *ctx)
{
    (void)ctx;
    void *p = malloc(n);
    if (p) {
        cnt.mallocs++;
        cnt.live_bytes += malloc_usable_size(p);
    }
    return p;
}

static void *c_realloc(void *p, size_t n, void *ctx)
{
    (void)ctx;
    size_t old = p ? malloc_usable_size(p) : 0;
    void *r = realloc(p, n);
    if (r) {
        cnt.live_bytes += malloc_usable_size(r) - old;
        if (!p)
            cnt.mallocs++;
    }
    return r;
}

static void c_free(void *p, void *ctx)
{
    (void)ctx;
    if (p) {
        cnt.frees++;
        cnt.live_bytes -= malloc_usable_size(p);
    }
    free(p);
}

static void use_counting_allocator(void)
{
    ciot_allocator a = {c_malloc, c_realloc, c_free, NULL};
    cr_assert_eq(ciot_set_allocator(&a), 0);
}

Test(queue, million_push_ack_cycles_do_not_leak)
{
    use_counting_allocator();
    ciot__queue *q;
    drops d = {0};
    cr_assert_eq(ciot__queue_new(&q, 64, 1 << 20, CIOT__DROP_OLDEST, on_drop, &d), 0);
    size_t base = cnt.live_bytes;
    long n = (long)(1000000 * test_scale());
    static const char payload[169] = "{\"deviceId\":\"temperature-sensor-001\"}";
    uint64_t next_ack = 1;
    for (long i = 0; i < n; i++) {
        uint64_t id;
        cr_assert_eq(ciot__queue_push(q, &id, "devices/temperature-sensor-001/telemetry", 40,
                                      payload, sizeof payload, 1, false),
                     0);
        const ciot__qmsg *m = ciot__queue_peek(q);
        cr_assert_eq(ciot__queue_mark_sent(q, m->id, (uint16_t)(id & 0xffff)), 0);
        /* Keep up to 8 in flight, acking every other one out of order. */
        if (ciot__queue_in_flight(q) == 8) {
            cr_assert_eq(ciot__queue_ack(q, next_ack + 1), 0);
            cr_assert_eq(ciot__queue_ack(q, next_ack), 0);
            next_ack += 2;
        }
    }
    cr_assert_eq(d.n, 0);
    cr_assert_leq(ciot__queue_count(q), 8);
    ciot__queue_free(q);
    cr_assert_eq(cnt.mallocs, cnt.frees, "%zu mallocs, %zu frees", cnt.mallocs, cnt.frees);
    cr_assert_eq(cnt.live_bytes, 0);
    (void)base;
}

/* The goal is <= 64 bytes per queued message beyond topic and payload,
 * malloc's own overhead included (libmosquitto: ~141). glibc gives each block
 * usable_size + 8 bytes of heap (the size word), rounded to 16. */
Test(queue, memory_per_message_within_64_bytes)
{
    use_counting_allocator();
    ciot__queue *q;
    drops d = {0};
    cr_assert_eq(ciot__queue_new(&q, 200000, SIZE_MAX, CIOT__REFUSE, on_drop, &d), 0);
    const char *topic = "devices/temperature-sensor-001/telemetry/x"; /* 42 bytes */
    char payload[169];
    memset(payload, 'p', sizeof payload);
    const size_t n = 100000;
    size_t before = cnt.live_bytes, allocs_before = cnt.mallocs;
    struct mallinfo2 mi0 = mallinfo2();
    for (size_t i = 0; i < n; i++) {
        uint64_t id;
        cr_assert_eq(ciot__queue_push(q, &id, topic, 42, payload, 169, 1, false), 0);
    }
    struct mallinfo2 mi1 = mallinfo2();
    size_t allocs = cnt.mallocs - allocs_before;
    cr_assert_eq(allocs, n, "one allocation per message");
    double usable = (double)(cnt.live_bytes - before) / n;
    double heap = (double)(mi1.uordblks - mi0.uordblks) / n;
    double over_usable = usable + 8 - 211, over_heap = heap - 211;
    fprintf(stderr,
            "queue memory, 42 B topic + 169 B payload, %zu messages: %.1f B heap each "
            "(mallinfo2), %.1f B usable + 8 B header => overhead %.1f B (mallinfo2 %.1f B) "
            "beyond topic+payload; header %zu B\n",
            n, heap, usable, over_usable, over_heap, sizeof(ciot__qmsg));
    cr_assert_leq(over_usable, 64.0);
    /* Under ASan/valgrind mallinfo2 describes another heap; only check it when it moved. */
    if (mi1.uordblks > mi0.uordblks)
        cr_assert_leq(over_heap, 64.0);

    /* Every size of topic (1..128) and payload (0..300): the worst case too. */
    size_t worst = 0;
    for (size_t t = 1; t <= 128; t++)
        for (size_t p = 0; p <= 300; p++) {
            void *blk = malloc(ciot__queue_msg_alloc_size(t, p));
            size_t cost = malloc_usable_size(blk) + 8;
            free(blk);
            size_t over = cost - t - p;
            worst = over > worst ? over : worst;
        }
    fprintf(stderr, "queue memory, worst overhead over topic 1..128 x payload 0..300: %zu B\n",
            worst);
    cr_assert_leq(worst, 64);
    ciot__queue_free(q);
}

/* Random operations against a plain array model: same messages, same order,
 * same in-flight set, same drops with the same reasons, for every policy. */
typedef struct model_msg {
    uint64_t id;
    size_t bytes;
    bool sent;
} model_msg;

typedef struct model_drops {
    size_t n;
    uint64_t id[4096];
    ciot__drop_reason why[4096];
} model_drops;

static void on_drop_big(uint64_t id, ciot__drop_reason reason, void *ud)
{
    model_drops *d = ud;
    cr_assert_lt(d->n, 4096);
    d->id[d->n] = id;
    d->why[d->n] = reason;
    d->n++;
}

Test(queue, random_operations_match_a_reference_model)
{
    static model_msg m[64];
    static model_drops got, want;
    static char buf[200];
    memset(buf, 'r', sizeof buf);
    ciot__rng r;
    ciot__rng_seed(&r, 2026);
    long steps = (long)(200000 * test_scale());
    for (int pol = 0; pol < 3; pol++) {
        const size_t max_n = 16, max_b = 1000;
        ciot__queue *q;
        cr_assert_eq(ciot__queue_new(&q, max_n, max_b, (ciot__drop_policy)pol, on_drop_big, &got), 0);
        size_t n = 0, bytes = 0, total_drops = 0, max_in_flight = 0;
        uint64_t next = 1;
        for (long s = 0; s < steps; s++) {
            got.n = want.n = 0;
            unsigned op = (unsigned)ciot__rng_upto(&r, 99);
            if (op < 45) { /* push */
                size_t tl = 1 + (size_t)ciot__rng_upto(&r, 20), pl = (size_t)ciot__rng_upto(&r, 150);
                if (ciot__rng_upto(&r, 200) == 0)
                    pl = 1000; /* oversize */
                uint64_t id = 0;
                int rc = ciot__queue_push(q, &id, buf, tl, buf, pl, 1, false);
                size_t need = tl + pl;
                if (need > max_b) {
                    cr_assert_eq(rc, CIOT_EQUEUE_FULL);
                } else if (n < max_n && need <= max_b - bytes) {
                    cr_assert_eq(rc, 0);
                    cr_assert_eq(id, next);
                    m[n++] = (model_msg){next++, need, false};
                    bytes += need;
                } else if (pol == CIOT__REFUSE) {
                    cr_assert_eq(rc, CIOT_EQUEUE_FULL);
                } else if (pol == CIOT__DROP_NEWEST) {
                    cr_assert_eq(rc, 0);
                    want.id[want.n] = next++;
                    want.why[want.n++] = CIOT__DROPPED_NEWEST;
                } else {
                    /* Only unsent messages are evicted; when that cannot make room
                     * the new one is dropped. */
                    cr_assert_eq(rc, 0);
                    size_t flight = 0, flight_bytes = 0;
                    for (size_t i = 0; i < n; i++)
                        if (m[i].sent) {
                            flight++;
                            flight_bytes += m[i].bytes;
                        }
                    if (flight >= max_n || need > max_b - flight_bytes) {
                        want.id[want.n] = next++;
                        want.why[want.n++] = CIOT__DROPPED_NEWEST;
                    } else {
                        while (n >= max_n || need > max_b - bytes) {
                            size_t k = 0;
                            while (m[k].sent)
                                k++;
                            want.id[want.n] = m[k].id;
                            want.why[want.n++] = CIOT__DROPPED_OLDEST;
                            bytes -= m[k].bytes;
                            memmove(m + k, m + k + 1, (--n - k) * sizeof m[0]);
                        }
                        m[n++] = (model_msg){next++, need, false};
                        bytes += need;
                    }
                }
            } else if (op < 70) { /* send the next one */
                const ciot__qmsg *p = ciot__queue_peek(q);
                size_t i = 0;
                while (i < n && m[i].sent)
                    i++;
                if (i == n) {
                    cr_assert_null(p);
                } else {
                    cr_assert_not_null(p);
                    cr_assert_eq(p->id, m[i].id);
                    cr_assert_eq(ciot__queue_mark_sent(q, p->id, (uint16_t)p->id), 0);
                    m[i].sent = true;
                }
            } else if (op < 95) { /* ack: mostly an existing id, sometimes a stale one */
                uint64_t id = n && ciot__rng_upto(&r, 9) ? m[ciot__rng_upto(&r, n - 1)].id
                                                         : ciot__rng_upto(&r, next);
                size_t i = 0;
                while (i < n && m[i].id != id)
                    i++;
                int rc = ciot__queue_ack(q, id);
                if (i == n) {
                    cr_assert_eq(rc, CIOT_ENOTFOUND);
                } else {
                    cr_assert_eq(rc, 0);
                    bytes -= m[i].bytes;
                    memmove(m + i, m + i + 1, (--n - i) * sizeof m[0]);
                }
            } else if (op < 99) { /* disconnect */
                size_t sent = 0;
                for (size_t i = 0; i < n; i++) {
                    sent += m[i].sent;
                    m[i].sent = false;
                }
                cr_assert_eq(ciot__queue_requeue(q), sent);
            } else if (ciot__rng_upto(&r, 9) == 0) {
                for (size_t i = 0; i < n; i++) {
                    want.id[want.n] = m[i].id;
                    want.why[want.n++] = CIOT__DROPPED_CLEARED;
                }
                n = bytes = 0;
                ciot__queue_clear(q);
            }
            cr_assert_eq(got.n, want.n, "step %ld", s);
            for (size_t i = 0; i < want.n; i++) {
                cr_assert_eq(got.id[i], want.id[i]);
                cr_assert_eq(got.why[i], want.why[i]);
            }
            cr_assert_eq(ciot__queue_count(q), n);
            cr_assert_eq(ciot__queue_bytes(q), bytes);
            size_t in_flight = 0;
            for (size_t i = 0; i < n; i++)
                in_flight += m[i].sent;
            cr_assert_eq(ciot__queue_in_flight(q), in_flight);
            total_drops += want.n;
            max_in_flight = in_flight > max_in_flight ? in_flight : max_in_flight;
            if (s % 64 == 0) {
                const ciot__qmsg *p = ciot__queue_first(q);
                for (size_t i = 0; i < n; i++, p = ciot__queue_next(p)) {
                    cr_assert_not_null(p);
                    cr_assert_eq(p->id, m[i].id);
                    cr_assert_eq(ciot__qmsg_in_flight(p), m[i].sent);
                    cr_assert_eq(ciot__qmsg_topic_len(p) + ciot__qmsg_payload_len(p), m[i].bytes);
                }
                cr_assert_null(p);
            }
        }
        /* The walk really went through full queues, drops and windows. */
        cr_assert_gt(next, (uint64_t)steps / 20);
        cr_assert_gt(total_drops, pol == CIOT__REFUSE ? 0u : (size_t)steps / 100,
                     "policy %d: %zu drops", pol, total_drops);
        cr_assert_geq(max_in_flight, 8);
        fprintf(stderr, "model, policy %d: %ld steps, %llu ids, %zu drops reported\n", pol, steps,
                (unsigned long long)next - 1, total_drops);
        ciot__queue_free(q);
    }
}
