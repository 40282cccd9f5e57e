/* Cost of the client's internal building blocks per message: the queue
 * (push, peek, mark sent, ack of the 169-byte telemetry message), CRC-32C of
 * a journal record, the journal append + ack (no sync) and one backoff draw.
 * The floor for the queue is what any copying queue must do: one malloc, one
 * copy of topic + payload, one free. */
#include "bench.h"
#include "client/journal.h"
#include "client/queue.h"
#include "core/backoff.h"
#include "core/crc32c.h"

#include <stdlib.h>
#include <unistd.h>

static const char topic[] = "devices/temperature-sensor-001/telemetry"; /* 40 B */
static const char payload[] =
    "{\"deviceId\":\"temperature-sensor-001\",\"sensorType\":\"temperature\",\"value\":27.31,"
    "\"timestamp\":\"2026-11-26T04:56:27.123Z\",\"metadata\":{\"unit\":\"celsius\",\"accuracy\":"
    "\"\xc2\xb1"
    "0.5\xc2\xb0"
    "C\"}}";
#define PLEN (sizeof payload - 1)
#define TLEN (sizeof topic - 1)

static void drop(uint64_t id, ciot__drop_reason r, void *ud)
{
    (void)id, (void)r, (void)ud;
    abort(); /* never drops here */
}

/* Lengths read at run time, as the queue gets them: no constant-folded copy. */
static volatile size_t vtlen = TLEN, vplen = PLEN;

static void floor_case(void *ctx, long iters)
{
    (void)ctx;
    for (long i = 0; i < iters; i++) {
        BENCH_CLOBBER();
        size_t tl = vtlen, pl = vplen;
        char *p = malloc(24 + tl + pl);
        memcpy(p + 24, topic, tl);
        memcpy(p + 24 + tl, payload, pl);
        BENCH_KEEP(p);
        free(p);
    }
}

static void queue_case(void *ctx, long iters)
{
    ciot__queue *q = ctx;
    for (long i = 0; i < iters; i++) {
        BENCH_CLOBBER();
        uint64_t id;
        if (ciot__queue_push(q, &id, topic, TLEN, payload, PLEN, 1, false))
            abort();
        const ciot__qmsg *m = ciot__queue_peek(q);
        if (ciot__queue_mark_sent(q, m->id, (uint16_t)id))
            abort();
        if (ciot__queue_ack(q, id))
            abort();
    }
}

/* 32 messages in flight, acked in order: the steady state of a fast link. */
static void queue_window_case(void *ctx, long iters)
{
    ciot__queue *q = ctx;
    for (long i = 0; i < iters; i++) {
        BENCH_CLOBBER();
        uint64_t id;
        if (ciot__queue_push(q, &id, topic, TLEN, payload, PLEN, 1, false))
            abort();
        const ciot__qmsg *m = ciot__queue_peek(q);
        if (ciot__queue_mark_sent(q, m->id, (uint16_t)id))
            abort();
        if (ciot__queue_ack(q, ciot__queue_first(q)->id))
            abort();
    }
}

static void crc_case(void *ctx, long iters)
{
    (void)ctx;
    uint32_t c = 0;
    for (long i = 0; i < iters; i++) {
        BENCH_CLOBBER();
        c = ciot__crc32c(c, payload, PLEN);
    }
    BENCH_KEEP(c);
}

static void backoff_case(void *ctx, long iters)
{
    ciot__backoff *b = ctx;
    uint64_t s = 0;
    for (long i = 0; i < iters; i++) {
        BENCH_CLOBBER();
        b->attempt = 7;
        s += ciot__backoff_next_delay(b);
    }
    BENCH_KEEP(s);
}

struct jctx {
    ciot__journal *j;
    uint64_t id;
    uint64_t window; /* messages left unacked behind the newest */
};

static void journal_case(void *ctx, long iters)
{
    struct jctx *c = ctx;
    for (long i = 0; i < iters; i++) {
        uint64_t id = ++c->id;
        if (ciot__journal_add(c->j, id, topic, TLEN, payload, PLEN, 1, false))
            abort();
        if (id > c->window && ciot__journal_ack(c->j, id - c->window))
            abort();
    }
}

int main(void)
{
    long n = bench_iters(1000000);
    ciot__queue *q;
    if (ciot__queue_new(&q, 1000, 1 << 20, CIOT__REFUSE, drop, NULL))
        return 1;
    bench_run("floor_malloc_copy_free", floor_case, NULL, n, 15);
    bench_run("queue_push_peek_sent_ack", queue_case, q, n, 15);
    for (int i = 0; i < 32; i++) { /* fill the window */
        uint64_t id;
        if (ciot__queue_push(q, &id, topic, TLEN, payload, PLEN, 1, false) ||
            ciot__queue_mark_sent(q, id, 0))
            return 1;
    }
    bench_run("queue_window32", queue_window_case, q, n, 15);
    ciot__queue_free(q);
    bench_run("crc32c_169B", crc_case, NULL, n, 15);
    ciot__backoff b;
    if (ciot__backoff_init(&b, 1000, 32000, 20000, 1))
        return 1;
    bench_run("backoff_next_delay", backoff_case, &b, n, 15);

    /* window 0: every ack empties the file (ftruncate); window 32: add and
     * ack records appended, compaction now and then; sync every record: the
     * fdatasync latency of this disk. */
    static const struct {
        const char *name;
        ciot__journal_sync sync;
        uint64_t window;
        long iters;
    } jcases[] = {
        {"journal_add_ack_nosync_empty", CIOT__JOURNAL_SYNC_NONE, 0, 100000},
        {"journal_add_ack_nosync_window32", CIOT__JOURNAL_SYNC_NONE, 32, 100000},
        {"journal_add_ack_sync_every_window32", CIOT__JOURNAL_SYNC_EVERY, 32, 500},
    };
    for (size_t k = 0; k < sizeof jcases / sizeof jcases[0]; k++) {
        char dir[] = "/tmp/ciot-bench-journal-XXXXXX";
        if (!mkdtemp(dir))
            return 1;
        ciot__journal_opts o = {.max_bytes = 64u << 20, .sync = jcases[k].sync};
        struct jctx jc = {.window = jcases[k].window};
        if (ciot__journal_new(&jc.j, &o) || ciot__journal_open(jc.j, dir, NULL, NULL, NULL))
            return 1;
        bench_run(jcases[k].name, journal_case, &jc, bench_iters(jcases[k].iters), 5);
        ciot__journal_free(jc.j);
        char p[128];
        snprintf(p, sizeof p, "%s/%s", dir, CIOT__JOURNAL_FILE_NAME);
        unlink(p);
        snprintf(p, sizeof p, "%s/%s.lock", dir, CIOT__JOURNAL_FILE_NAME);
        unlink(p);
        rmdir(dir);
    }
    printf("ratio queue_vs_floor queue_push_peek_sent_ack floor_malloc_copy_free <=2.5\n");
    printf("ratio window32_vs_floor queue_window32 floor_malloc_copy_free <=2.5\n");
    return 0;
}
