/* The on-disk journal of unacknowledged QoS 1 messages: real files in a
 * temporary directory, real fork + SIGKILL. */
#include "client/journal.h"
#include "core/crc32c.h"
#include "internal.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double test_scale(void)
{
    const char *s = getenv("CIOT_TEST_SCALE");
    double v = s ? atof(s) : 1.0;
    return v > 0 ? v : 1.0;
}

/* ---- temp directory ---- */

static char tmpdir[64];
static char jpath[128];

static void make_dir(void)
{
    strcpy(tmpdir, "/tmp/ciot-journal-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    snprintf(jpath, sizeof jpath, "%s/%s", tmpdir, CIOT__JOURNAL_FILE_NAME);
}

static void remove_dir(void)
{
    static const char *names[] = {CIOT__JOURNAL_FILE_NAME, CIOT__JOURNAL_FILE_NAME ".lock",
                                  CIOT__JOURNAL_FILE_NAME ".tmp", "copy"};
    char p[160];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", tmpdir, names[i]);
        unlink(p);
    }
    rmdir(tmpdir);
}

TestSuite(journal, .init = make_dir, .fini = remove_dir);

/* ---- replay collector ---- */

#define MAXR 4096
typedef struct got {
    size_t n;
    uint64_t id[MAXR];
    char text[MAXR][48]; /* "topic|payload" */
    int qos[MAXR];
    bool retain[MAXR];
} got;

static int collect(uint64_t id, const char *topic, size_t tlen, const void *payload, size_t plen,
                   int qos, bool retain, void *ud)
{
    got *g = ud;
    cr_assert_lt(g->n, MAXR);
    g->id[g->n] = id;
    snprintf(g->text[g->n], sizeof g->text[0], "%.*s|%.*s", (int)tlen, topic, (int)plen,
             (const char *)payload);
    g->qos[g->n] = qos;
    g->retain[g->n] = retain;
    g->n++;
    return 0;
}

static ciot__journal_opts opts_of(uint64_t max, ciot__journal_sync sync)
{
    ciot__journal_opts o = {0};
    o.max_bytes = max;
    o.sync = sync;
    o.sync_interval_ms = 50;
    return o;
}

static ciot__journal *jopen(const ciot__journal_opts *o, got *g, ciot__journal_report *rep)
{
    ciot__journal *j;
    cr_assert_eq(ciot__journal_new(&j, o), 0);
    if (g)
        memset(g, 0, sizeof *g);
    int rc = ciot__journal_open(j, tmpdir, collect, g ? g : &(got){0}, rep);
    cr_assert_eq(rc, 0, "open: %d %s", rc, ciot__journal_errmsg(j));
    return j;
}

static void add_s(ciot__journal *j, uint64_t id, const char *topic, const char *payload)
{
    int rc = ciot__journal_add(j, id, topic, strlen(topic), payload, strlen(payload), 1, false);
    cr_assert_eq(rc, 0, "add %llu: %d %s", (unsigned long long)id, rc, ciot__journal_errmsg(j));
}

static off_t file_size(void)
{
    struct stat st;
    cr_assert_eq(stat(jpath, &st), 0);
    return st.st_size;
}

static size_t read_file(unsigned char *buf, size_t cap)
{
    FILE *f = fopen(jpath, "rb");
    cr_assert_not_null(f);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

static void write_file(const unsigned char *buf, size_t n)
{
    FILE *f = fopen(jpath, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(buf, 1, n, f), n);
    fclose(f);
}

/* ---- tests ---- */

Test(journal, options_and_state_are_validated)
{
    ciot__journal *j = (ciot__journal *)1;
    ciot__journal_opts o = opts_of(1 << 20, CIOT__JOURNAL_SYNC_NONE);
    cr_assert_eq(ciot__journal_new(&j, NULL), CIOT_EINVAL);
    cr_assert_null(j);
    o.max_bytes = 100;
    cr_assert_eq(ciot__journal_new(&j, &o), CIOT_EINVAL);
    o = opts_of(1 << 20, (ciot__journal_sync)9);
    cr_assert_eq(ciot__journal_new(&j, &o), CIOT_EINVAL);
    o = opts_of(1 << 20, CIOT__JOURNAL_SYNC_INTERVAL);
    o.sync_interval_ms = 0;
    cr_assert_eq(ciot__journal_new(&j, &o), CIOT_EINVAL);
    o = opts_of(1 << 20, CIOT__JOURNAL_SYNC_NONE);
    cr_assert_eq(ciot__journal_new(&j, &o), 0);
    cr_assert_eq(ciot__journal_add(j, 1, "t", 1, "p", 1, 1, false), CIOT_ESTATE);
    cr_assert_eq(ciot__journal_ack(j, 1), CIOT_ESTATE);
    cr_assert_eq(ciot__journal_flush(j), CIOT_ESTATE);
    cr_assert_eq(ciot__journal_compact(j), CIOT_ESTATE);
    cr_assert_eq(ciot__journal_open(j, "", NULL, NULL, NULL), CIOT_EINVAL);
    cr_assert_eq(ciot__journal_open(j, tmpdir, NULL, NULL, NULL), 0);
    cr_assert_eq(ciot__journal_open(j, tmpdir, NULL, NULL, NULL), CIOT_ESTATE);
    cr_assert_eq(ciot__journal_add(j, 0, "t", 1, "p", 1, 1, false), CIOT_EINVAL);
    cr_assert_eq(ciot__journal_add(j, 1, NULL, 1, "p", 1, 1, false), CIOT_EINVAL);
    cr_assert_eq(ciot__journal_add(j, 1, "t", 0, "p", 1, 1, false), CIOT_EINVAL);
    cr_assert_eq(ciot__journal_add(j, 1, "t", 1, NULL, 1, 1, false), CIOT_EINVAL);
    cr_assert_eq(ciot__journal_add(j, 1, "t", 1, "p", 1, 3, false), CIOT_EINVAL);
    cr_assert_eq(ciot__journal_add(j, 5, "t", 1, "p", 1, 1, false), 0);
    cr_assert_eq(ciot__journal_add(j, 5, "t", 1, "p", 1, 1, false), CIOT_EINVAL); /* ids grow */
    cr_assert_eq(ciot__journal_add(j, 4, "t", 1, "p", 1, 1, false), CIOT_EINVAL);
    cr_assert_eq(ciot__journal_ack(j, 4), CIOT_ENOTFOUND);
    cr_assert_eq(ciot__journal_flush(j), 0);
    ciot__journal_free(j);
    ciot__journal_free(NULL);
}

Test(journal, round_trip_and_replay_after_reopen)
{
    ciot__journal_opts o = opts_of(1 << 20, CIOT__JOURNAL_SYNC_EVERY);
    got g;
    ciot__journal_report rep;
    ciot__journal *j = jopen(&o, &g, &rep);
    cr_assert_eq(g.n, 0);
    cr_assert_eq(rep.next_id, 1);
    cr_assert_eq(rep.bytes_cut, 0);
    cr_assert_eq(ciot__journal_file_size(j), CIOT__JOURNAL_HEADER_SIZE);
    add_s(j, 1, "a/b", "first");
    cr_assert_eq(ciot__journal_add(j, 2, "a/c", 3, NULL, 0, 0, true), 0);
    add_s(j, 10, "x", "{\"v\":27.31}");
    cr_assert_eq(ciot__journal_live_count(j), 3);
    uint64_t want_size = CIOT__JOURNAL_HEADER_SIZE + ciot__journal_add_record_size(3, 5) +
                         ciot__journal_add_record_size(3, 0) + ciot__journal_add_record_size(1, 11);
    cr_assert_eq(ciot__journal_file_size(j), want_size);
    ciot__journal_free(j);
    cr_assert_eq((uint64_t)file_size(), want_size);

    j = jopen(&o, &g, &rep);
    cr_assert_eq(g.n, 3);
    cr_assert_eq(rep.live, 3);
    cr_assert_eq(rep.records, 3);
    cr_assert_eq(rep.next_id, 11);
    cr_assert_eq(g.id[0], 1);
    cr_assert_str_eq(g.text[0], "a/b|first");
    cr_assert_eq(g.qos[0], 1);
    cr_assert_not(g.retain[0]);
    cr_assert_eq(g.id[1], 2);
    cr_assert_str_eq(g.text[1], "a/c|");
    cr_assert_eq(g.qos[1], 0);
    cr_assert(g.retain[1]);
    cr_assert_eq(g.id[2], 10);
    cr_assert_str_eq(g.text[2], "x|{\"v\":27.31}");
    /* Continues after reopen; old ids stay refused. */
    cr_assert_eq(ciot__journal_add(j, 10, "t", 1, "p", 1, 1, false), CIOT_EINVAL);
    add_s(j, 11, "t", "p");
    ciot__journal_free(j);
}

Test(journal, every_sync_policy_round_trips)
{
    const ciot__journal_sync pol[] = {CIOT__JOURNAL_SYNC_NONE, CIOT__JOURNAL_SYNC_INTERVAL,
                                      CIOT__JOURNAL_SYNC_EVERY};
    for (int k = 0; k < 3; k++) {
        ciot__journal_opts o = opts_of(1 << 20, pol[k]);
        got g;
        ciot__journal *j = jopen(&o, &g, NULL);
        for (uint64_t id = 1; id <= 20; id++)
            add_s(j, (uint64_t)k * 100 + id, "t", "payload");
        for (uint64_t id = 1; id <= 20; id += 2)
            cr_assert_eq(ciot__journal_ack(j, (uint64_t)k * 100 + id), 0);
        cr_assert_eq(ciot__journal_flush(j), 0);
        ciot__journal_free(j);
        j = jopen(&o, &g, NULL);
        cr_assert_eq(g.n, 10); /* earlier rounds acked all of theirs */
        for (size_t i = 0; i < 10; i++)
            cr_assert_eq(g.id[i], (uint64_t)k * 100 + 2 + 2 * i);
        for (size_t i = 0; i < 10; i++)
            cr_assert_eq(ciot__journal_ack(j, g.id[i]), 0);
        cr_assert_eq(ciot__journal_live_count(j), 0);
        ciot__journal_free(j);
    }
}

Test(journal, acks_are_honoured_in_any_order)
{
    ciot__journal_opts o = opts_of(1 << 20, CIOT__JOURNAL_SYNC_NONE);
    got g;
    ciot__journal *j = jopen(&o, &g, NULL);
    for (uint64_t id = 1; id <= 8; id++)
        add_s(j, id, "t", "m");
    cr_assert_eq(ciot__journal_ack(j, 5), 0);
    cr_assert_eq(ciot__journal_ack(j, 2), 0);
    cr_assert_eq(ciot__journal_ack(j, 1), 0);
    cr_assert_eq(ciot__journal_ack(j, 8), 0);
    cr_assert_eq(ciot__journal_ack(j, 5), CIOT_ENOTFOUND);
    cr_assert_eq(ciot__journal_live_count(j), 4);
    ciot__journal_free(j);
    ciot__journal_report rep;
    o.compact_min_bytes = 1; /* from here on every size counts as big */
    j = jopen(&o, &g, &rep);
    const uint64_t want[] = {3, 4, 6, 7};
    cr_assert_eq(g.n, 4);
    for (size_t i = 0; i < 4; i++)
        cr_assert_eq(g.id[i], want[i]);
    cr_assert_eq(rep.records, 12);
    cr_assert_eq(rep.next_id, 9);
    /* Acking the rest shortens the (big enough) file to its header. */
    for (size_t i = 0; i < 4; i++)
        cr_assert_eq(ciot__journal_ack(j, want[i]), 0);
    cr_assert_eq(ciot__journal_file_size(j), CIOT__JOURNAL_HEADER_SIZE);
    ciot__journal_free(j);
    cr_assert_eq(file_size(), CIOT__JOURNAL_HEADER_SIZE);
    j = jopen(&o, &g, &rep);
    cr_assert_eq(g.n, 0);
    cr_assert_eq(rep.next_id, 1); /* the client keeps ids growing through its queue */
    ciot__journal_free(j);
}

/* Builds header + add 1 + add 2 + add 3 and returns the file bytes. */
static size_t three_records(unsigned char *buf, size_t cap, uint64_t *start2, uint64_t *start3)
{
    ciot__journal_opts o = opts_of(1 << 20, CIOT__JOURNAL_SYNC_NONE);
    ciot__journal *j = jopen(&o, NULL, NULL);
    add_s(j, 1, "sensors/1", "alpha");
    *start2 = ciot__journal_file_size(j);
    add_s(j, 2, "sensors/2", "bravo-bravo");
    *start3 = ciot__journal_file_size(j);
    add_s(j, 3, "sensors/3", "charlie-charlie-charlie");
    ciot__journal_free(j);
    return read_file(buf, cap);
}

Test(journal, torn_tail_at_every_offset_is_cut)
{
    unsigned char full[512];
    uint64_t s2, s3;
    size_t n = three_records(full, sizeof full, &s2, &s3);
    cr_assert_eq(n, s3 + ciot__journal_add_record_size(9, 23));
    ciot__journal_opts o = opts_of(1 << 20, CIOT__JOURNAL_SYNC_EVERY);
    for (size_t len = s3; len < n; len++) {
        write_file(full, len);
        got g;
        ciot__journal_report rep;
        ciot__journal *j = jopen(&o, &g, &rep);
        cr_assert_eq(g.n, 2, "cut at %zu", len);
        cr_assert_str_eq(g.text[0], "sensors/1|alpha");
        cr_assert_str_eq(g.text[1], "sensors/2|bravo-bravo");
        cr_assert_eq(rep.bytes_cut, len - s3, "cut at %zu: reported %llu", len,
                     (unsigned long long)rep.bytes_cut);
        cr_assert_eq((uint64_t)file_size(), s3);
        /* And the journal goes on from there. */
        add_s(j, 3, "sensors/3", "again");
        ciot__journal_free(j);
        j = jopen(&o, &g, &rep);
        cr_assert_eq(g.n, 3);
        cr_assert_str_eq(g.text[2], "sensors/3|again");
        cr_assert_eq(rep.bytes_cut, 0);
        ciot__journal_free(j);
    }
    /* A file torn inside its own header is started afresh. */
    for (size_t len = 1; len < CIOT__JOURNAL_HEADER_SIZE; len++) {
        write_file(full, len);
        got g;
        ciot__journal_report rep;
        ciot__journal *j = jopen(&o, &g, &rep);
        cr_assert_eq(g.n, 0);
        cr_assert_eq(rep.bytes_cut, len);
        ciot__journal_free(j);
        cr_assert_eq(file_size(), CIOT__JOURNAL_HEADER_SIZE);
    }
}

Test(journal, torn_ack_record_is_cut)
{
    ciot__journal_opts o = opts_of(1 << 20, CIOT__JOURNAL_SYNC_NONE);
    ciot__journal *j = jopen(&o, NULL, NULL);
    add_s(j, 1, "t", "a");
    add_s(j, 2, "t", "b");
    uint64_t before = ciot__journal_file_size(j);
    cr_assert_eq(ciot__journal_ack(j, 1), 0);
    ciot__journal_free(j);
    unsigned char full[256];
    size_t n = read_file(full, sizeof full);
    cr_assert_eq(n, before + CIOT__JOURNAL_ACK_RECORD_SIZE);
    for (size_t len = before + 1; len < n; len++) {
        write_file(full, len);
        got g;
        ciot__journal_report rep;
        j = jopen(&o, &g, &rep);
        cr_assert_eq(g.n, 2); /* the ack did not make it: 1 is still live */
        cr_assert_eq(rep.bytes_cut, len - before);
        ciot__journal_free(j);
    }
}

Test(journal, flipped_bit_in_middle_record_stops_replay_there)
{
    unsigned char full[512], bad[512];
    uint64_t s2, s3;
    size_t n = three_records(full, sizeof full, &s2, &s3);
    ciot__journal_opts o = opts_of(1 << 20, CIOT__JOURNAL_SYNC_NONE);
    /* Every bit of the middle record, one at a time. */
    for (uint64_t pos = s2; pos < s3; pos++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(bad, full, n);
            bad[pos] ^= (unsigned char)(1u << bit);
            write_file(bad, n);
            got g;
            ciot__journal_report rep;
            ciot__journal *j = jopen(&o, &g, &rep);
            cr_assert_eq(g.n, 1, "byte %llu bit %d: %zu replayed", (unsigned long long)pos, bit,
                         g.n);
            cr_assert_eq(g.id[0], 1);
            cr_assert_eq(rep.bytes_cut, n - s2);
            cr_assert_eq((uint64_t)file_size(), s2);
            ciot__journal_free(j);
        }
    }
}

Test(journal, impossible_lengths_and_foreign_files)
{
    unsigned char full[512], bad[512];
    uint64_t s2, s3;
    size_t n = three_records(full, sizeof full, &s2, &s3);
    ciot__journal_opts o = opts_of(1 << 20, CIOT__JOURNAL_SYNC_NONE);
    /* A length field of 4 GB, 0, and one past the end: cut before reading anything. */
    const uint32_t lens[] = {0xffffffffu, 0, 19, (uint32_t)(n - s2 + 1)};
    for (size_t k = 0; k < 4; k++) {
        memcpy(bad, full, n);
        for (int i = 0; i < 4; i++)
            bad[s2 + 4 + (uint64_t)i] = (unsigned char)(lens[k] >> (8 * i));
        write_file(bad, n);
        got g;
        ciot__journal_report rep;
        ciot__journal *j = jopen(&o, &g, &rep);
        cr_assert_eq(g.n, 1);
        cr_assert_eq(rep.bytes_cut, n - s2);
        ciot__journal_free(j);
    }
    /* Not a journal at all: refused, file untouched. */
    memcpy(bad, full, n);
    memcpy(bad, "NOTAJRNL", 8);
    write_file(bad, n);
    ciot__journal *j;
    cr_assert_eq(ciot__journal_new(&j, &o), 0);
    cr_assert_eq(ciot__journal_open(j, tmpdir, collect, &(got){0}, NULL), CIOT_ECORRUPT);
    cr_assert(strstr(ciot__journal_errmsg(j), "not a libcloudiot journal"), "%s",
              ciot__journal_errmsg(j));
    cr_assert_eq((size_t)file_size(), n);
    /* Another format version: refused, untouched. */
    memcpy(bad, full, n);
    bad[8] = 2;
    uint32_t c = ciot__crc32c(0, bad, 12); /* header CRC again: only the version differs */
    for (int i = 0; i < 4; i++)
        bad[12 + i] = (unsigned char)(c >> (8 * i));
    write_file(bad, n);
    cr_assert_eq(ciot__journal_open(j, tmpdir, collect, &(got){0}, NULL), CIOT_EVERSION);
    cr_assert_eq((size_t)file_size(), n);
    ciot__journal_free(j);
}

Test(journal, compaction_keeps_exactly_the_live_records_in_order)
{
    ciot__journal_opts o = opts_of(1 << 20, CIOT__JOURNAL_SYNC_EVERY);
    o.compact_min_bytes = 1 << 30; /* only explicit compaction here */
    got g;
    ciot__journal *j = jopen(&o, &g, NULL);
    char p[32];
    for (uint64_t id = 1; id <= 300; id++) {
        snprintf(p, sizeof p, "msg-%llu", (unsigned long long)id);
        add_s(j, id, "c/t", p);
    }
    for (uint64_t id = 1; id <= 300; id++)
        if (id % 3 != 0)
            cr_assert_eq(ciot__journal_ack(j, id), 0);
    uint64_t live_bytes = ciot__journal_live_bytes(j);
    cr_assert_gt(ciot__journal_file_size(j), CIOT__JOURNAL_HEADER_SIZE + live_bytes);
    cr_assert_eq(ciot__journal_compact(j), 0);
    cr_assert_eq(ciot__journal_compactions(j), 1);
    cr_assert_eq(ciot__journal_file_size(j), CIOT__JOURNAL_HEADER_SIZE + live_bytes);
    cr_assert_eq((uint64_t)file_size(), CIOT__JOURNAL_HEADER_SIZE + live_bytes);
    /* The index still works after the rewrite: ack and add. */
    cr_assert_eq(ciot__journal_ack(j, 150), 0);
    add_s(j, 301, "c/t", "msg-301");
    ciot__journal_free(j);
    ciot__journal_report rep;
    j = jopen(&o, &g, &rep);
    cr_assert_eq(rep.bytes_cut, 0);
    cr_assert_eq(g.n, 100);
    size_t i = 0;
    for (uint64_t id = 3; id <= 300; id += 3) {
        if (id == 150)
            continue;
        snprintf(p, sizeof p, "c/t|msg-%llu", (unsigned long long)id);
        cr_assert_eq(g.id[i], id);
        cr_assert_str_eq(g.text[i], p);
        i++;
    }
    cr_assert_eq(g.id[i], 301);
    ciot__journal_free(j);
    struct stat st;
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", tmpdir, CIOT__JOURNAL_FILE_NAME);
    cr_assert_neq(stat(tmp, &st), 0); /* no temporary file left behind */
}

Test(journal, automatic_compaction_when_mostly_dead)
{
    ciot__journal_opts o = opts_of(1 << 20, CIOT__JOURNAL_SYNC_NONE);
    o.compact_min_bytes = 4096;
    got g;
    ciot__journal *j = jopen(&o, &g, NULL);
    char payload[100];
    memset(payload, 'z', sizeof payload);
    uint64_t id = 0, oldest = 1;
    /* A steady stream with 5 in flight: the file stays small. */
    for (int i = 0; i < 5000; i++) {
        cr_assert_eq(ciot__journal_add(j, ++id, "auto/t", 6, payload, sizeof payload, 1, false), 0);
        if (id - oldest >= 5)
            cr_assert_eq(ciot__journal_ack(j, oldest++), 0);
        cr_assert_lt(ciot__journal_file_size(j), 3 * 4096);
    }
    cr_assert_gt(ciot__journal_compactions(j), 10);
    cr_assert_eq(ciot__journal_live_count(j), 5);
    ciot__journal_free(j);
    j = jopen(&o, &g, NULL);
    cr_assert_eq(g.n, 5);
    for (size_t k = 0; k < 5; k++)
        cr_assert_eq(g.id[k], oldest + k);
    ciot__journal_free(j);
}

Test(journal, size_on_disk_is_bounded)
{
    ciot__journal_opts o = opts_of(4096, CIOT__JOURNAL_SYNC_NONE);
    o.compact_min_bytes = 1 << 30;
    got g;
    ciot__journal *j = jopen(&o, &g, NULL);
    char payload[200];
    memset(payload, 'b', sizeof payload);
    uint64_t id = 0;
    int rc;
    while ((rc = ciot__journal_add(j, id + 1, "bound", 5, payload, sizeof payload, 1, false)) == 0)
        id++;
    cr_assert_eq(rc, CIOT_EQUEUE_FULL);
    uint64_t rec = ciot__journal_add_record_size(5, 200);
    cr_assert_eq(id, (4096 - CIOT__JOURNAL_HEADER_SIZE) / rec);
    cr_assert_leq((uint64_t)file_size(), 4096);
    /* A record larger than the bound on its own never fits. */
    static char big[5000];
    cr_assert_eq(ciot__journal_add(j, id + 1, "t", 1, big, sizeof big, 1, false), CIOT_EQUEUE_FULL);
    /* Acks always work, even at the bound (by compacting when no ack fits). */
    for (uint64_t k = 1; k <= 5; k++) {
        cr_assert_eq(ciot__journal_ack(j, k), 0, "%s", ciot__journal_errmsg(j));
        cr_assert_leq(ciot__journal_file_size(j), 4096);
        cr_assert_leq((uint64_t)file_size(), 4096);
    }
    /* Room again (an add compacts when dead records are in the way). */
    cr_assert_eq(ciot__journal_add(j, id + 1, "bound", 5, payload, sizeof payload, 1, false), 0);
    cr_assert_leq((uint64_t)file_size(), 4096);
    ciot__journal_free(j);
    j = jopen(&o, &g, NULL);
    cr_assert_eq(g.n, id - 5 + 1);
    cr_assert_eq(g.id[0], 6);
    cr_assert_eq(g.id[g.n - 1], id + 1);
    ciot__journal_free(j);
}

static int stop_at_two(uint64_t id, const char *t, size_t tl, const void *p, size_t pl, int q,
                       bool r, void *ud)
{
    (void)t, (void)tl, (void)p, (void)pl, (void)q, (void)r;
    (*(int *)ud)++;
    return id == 2;
}

Test(journal, replay_callback_can_stop_open)
{
    ciot__journal_opts o = opts_of(1 << 20, CIOT__JOURNAL_SYNC_NONE);
    ciot__journal *j = jopen(&o, NULL, NULL);
    for (uint64_t id = 1; id <= 4; id++)
        add_s(j, id, "t", "x");
    ciot__journal_free(j);
    cr_assert_eq(ciot__journal_new(&j, &o), 0);
    int calls = 0;
    cr_assert_eq(ciot__journal_open(j, tmpdir, stop_at_two, &calls, NULL), CIOT_EUSER);
    cr_assert_eq(calls, 2);
    cr_assert_eq(ciot__journal_add(j, 9, "t", 1, "x", 1, 1, false), CIOT_ESTATE);
    /* Retrying works and nothing was lost. */
    got g = {0};
    cr_assert_eq(ciot__journal_open(j, tmpdir, collect, &g, NULL), 0);
    cr_assert_eq(g.n, 4);
    ciot__journal_free(j);
}

Test(journal, io_errors_are_reported_with_a_message)
{
    ciot__journal_opts o = opts_of(1 << 20, CIOT__JOURNAL_SYNC_NONE);
    ciot__journal *j;
    cr_assert_eq(ciot__journal_new(&j, &o), 0);
    char path[160];
    snprintf(path, sizeof path, "%s/no/such/dir", tmpdir);
    cr_assert_eq(ciot__journal_open(j, path, NULL, NULL, NULL), CIOT_EIO);
    cr_assert(strstr(ciot__journal_errmsg(j), "journal: cannot create directory"), "%s",
              ciot__journal_errmsg(j));
    cr_assert(strstr(ciot__journal_errmsg(j), "No such file or directory"), "%s",
              ciot__journal_errmsg(j));
    /* A regular file where the directory should be. */
    snprintf(path, sizeof path, "%s/copy", tmpdir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fclose(f);
    cr_assert_eq(ciot__journal_open(j, path, NULL, NULL, NULL), CIOT_EIO);
    cr_assert(strstr(ciot__journal_errmsg(j), "Not a directory"), "%s", ciot__journal_errmsg(j));
    ciot__journal_free(j);
}

/* A write that fails half-way (file size limit): EIO with the reason, the
 * partial record is removed, earlier records survive. */
Test(journal, failed_write_leaves_no_partial_record)
{
    ciot__journal_opts o = opts_of(1 << 20, CIOT__JOURNAL_SYNC_NONE);
    got g;
    ciot__journal *j = jopen(&o, &g, NULL);
    add_s(j, 1, "t", "before");
    uint64_t good = ciot__journal_file_size(j);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {(rlim_t)(good + 100), (rlim_t)(good + 100)};
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    static char payload[300];
    memset(payload, 'q', sizeof payload);
    int rc = ciot__journal_add(j, 2, "t", 1, payload, sizeof payload, 1, false);
    cr_assert_eq(rc, CIOT_EIO);
    cr_assert(strstr(ciot__journal_errmsg(j), "journal: write failed: File too large"), "%s",
              ciot__journal_errmsg(j));
    cr_assert_eq((uint64_t)file_size(), good);
    cr_assert_eq(ciot__journal_live_count(j), 1);
    /* A small one still fits under the limit. */
    add_s(j, 3, "t", "small");
    ciot__journal_free(j);
    j = jopen(&o, &g, NULL);
    cr_assert_eq(g.n, 2);
    cr_assert_eq(g.id[0], 1);
    cr_assert_eq(g.id[1], 3);
    ciot__journal_free(j);
}

/* The child holds the journal and is then killed (SIGKILL: no exit path that
 * could leak in the copy of the test process it is). */
Test(journal, second_process_is_refused)
{
    ciot__journal_opts o = opts_of(1 << 20, CIOT__JOURNAL_SYNC_NONE);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        ciot__journal *k;
        char ok = 'n';
        if (ciot__journal_new(&k, &o) == 0 && ciot__journal_open(k, tmpdir, NULL, NULL, NULL) == 0)
            ok = 'y';
        if (write(fds[1], &ok, 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    char ok = 0;
    cr_assert_eq(read(fds[0], &ok, 1), 1);
    cr_assert_eq(ok, 'y');
    ciot__journal *j;
    cr_assert_eq(ciot__journal_new(&j, &o), 0);
    cr_assert_eq(ciot__journal_open(j, tmpdir, NULL, NULL, NULL), CIOT_EBUSY);
    cr_assert(strstr(ciot__journal_errmsg(j), "in use by another process"), "%s",
              ciot__journal_errmsg(j));
    kill(pid, SIGKILL);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    /* The lock died with its holder. */
    cr_assert_eq(ciot__journal_open(j, tmpdir, NULL, NULL, NULL), 0);
    ciot__journal_free(j);
    close(fds[0]);
    close(fds[1]);
}

/* ---- kill -9 ---- */

/* Child: appends (sync every record) and acks, telling the parent each id
 * once the call has returned: 'A' id after add, 'K' id after ack ('k' id just
 * before the ack, whose outcome a kill leaves open). */
static void killed_child(int wfd, uint64_t start_id)
{
    ciot__journal_opts o = opts_of(1 << 20, CIOT__JOURNAL_SYNC_EVERY);
    o.compact_min_bytes = 8192; /* compactions happen under the kill too */
    ciot__journal *j;
    if (ciot__journal_new(&j, &o) || ciot__journal_open(j, tmpdir, NULL, NULL, NULL))
        _exit(2);
    char payload[64];
    memset(payload, 'k', sizeof payload);
    bool told_compaction = false;
    unsigned char ready[9] = {'R'};
    if (write(wfd, ready, 9) != 9) /* the kill comes only after this */
        _exit(4);
    for (uint64_t id = start_id;; id++) {
        if (ciot__journal_add(j, id, "kill/t", 6, payload, sizeof payload, 1, false))
            _exit(3);
        unsigned char rec[9] = {'A'};
        memcpy(rec + 1, &id, 8);
        if (write(wfd, rec, 9) != 9)
            _exit(4);
        /* Ack two of every three: the dead fraction passes one half, so the
         * child also compacts while it may be killed. */
        for (uint64_t a = id - 2; id % 3 == 0 && a < id && a >= start_id; a++) {
            rec[0] = 'k'; /* about to ack: after a kill it may be either way */
            memcpy(rec + 1, &a, 8);
            if (write(wfd, rec, 9) != 9)
                _exit(4);
            if (ciot__journal_ack(j, a))
                _exit(5);
            rec[0] = 'K';
            if (write(wfd, rec, 9) != 9)
                _exit(4);
        }
        if (ciot__journal_compactions(j) > 0 && !told_compaction) {
            told_compaction = true;
            rec[0] = 'C';
            if (write(wfd, rec, 9) != 9)
                _exit(4);
        }
    }
}

Test(journal, kill_minus_9_loses_no_acknowledged_append, .timeout = 120)
{
    int rounds = (int)(20 * test_scale());
    if (rounds < 3)
        rounds = 3;
    srand((unsigned)time(NULL));
    uint64_t next_id = 1;
    static unsigned char state[1 << 20]; /* per id: 0 unknown, 1 added, 2 acked, 3 being acked */
    uint64_t total_reported = 0;
    int compacting_rounds = 0;
    for (int r = 0; r < rounds; r++) {
        int fds[2];
        uint64_t round_start = next_id;
        cr_assert_eq(pipe(fds), 0);
        pid_t pid = fork();
        cr_assert_neq(pid, -1);
        if (pid == 0) {
            close(fds[0]);
            killed_child(fds[1], next_id);
        }
        close(fds[1]);
        unsigned char rec[9];
        cr_assert_eq(read(fds[0], rec, 9), 9); /* journal open in the child */
        cr_assert_eq(rec[0], 'R');
        struct timespec ts = {0, (long)(5 + rand() % 60) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int st;
        cr_assert_eq(waitpid(pid, &st, 0), pid);
        cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "child ended by itself: %d", st);
        ssize_t got_n;
        while ((got_n = read(fds[0], rec, 9)) == 9) {
            uint64_t id;
            if (rec[0] == 'C') {
                compacting_rounds++;
                continue;
            }
            memcpy(&id, rec + 1, 8);
            cr_assert_lt(id, sizeof state);
            state[id] = rec[0] == 'A' ? 1 : rec[0] == 'k' ? 3 : 2;
            total_reported++;
        }
        cr_assert_eq(got_n, 0); /* each record is written whole (9 < PIPE_BUF) */
        close(fds[0]);

        got *g = calloc(1, sizeof *g);
        ciot__journal_opts o = opts_of(1 << 20, CIOT__JOURNAL_SYNC_EVERY);
        ciot__journal *j;
        cr_assert_eq(ciot__journal_new(&j, &o), 0);
        /* collect() stops at MAXR; the child acks 1 of 3, so stay below it. */
        int rc = ciot__journal_open(j, tmpdir, collect, g, NULL);
        cr_assert_eq(rc, 0, "%s", ciot__journal_errmsg(j));
        /* Every id reported added and not acked must be there, in order; no
         * id reported acked may come back. */
        size_t k = 0;
        uint64_t max_seen = 0;
        for (size_t i = 0; i < g->n; i++) {
            cr_assert_neq(state[g->id[i]], 2, "id %llu was acked but replayed",
                          (unsigned long long)g->id[i]);
            cr_assert_gt(g->id[i], max_seen);
            max_seen = g->id[i];
        }
        for (uint64_t id = 1; id < sizeof state; id++) {
            if (state[id] != 1)
                continue;
            while (k < g->n && g->id[k] < id)
                k++;
            cr_assert(k < g->n && g->id[k] == id,
                      "round %d: id %llu missing (replayed %zu, first %llu, last %llu, start %llu)",
                      r, (unsigned long long)id, g->n, (unsigned long long)(g->n ? g->id[0] : 0),
                      (unsigned long long)(g->n ? g->id[g->n - 1] : 0),
                      (unsigned long long)round_start);
        }
        /* Clean up for the next round: ack everything live. */
        for (size_t i = 0; i < g->n; i++) {
            cr_assert_eq(ciot__journal_ack(j, g->id[i]), 0);
            state[g->id[i]] = 2;
            if (g->id[i] >= next_id)
                next_id = g->id[i] + 1;
        }
        for (uint64_t id = next_id; id < sizeof state && state[id]; id++)
            next_id = id + 1;
        next_id += 1;
        ciot__journal_free(j);
        free(g);
        cr_assert_lt(next_id, sizeof state - 100000);
    }
    fprintf(stderr,
            "kill -9: %d rounds (%d with compactions), %llu appends/acks confirmed by the "
            "child, all found\n",
            rounds, compacting_rounds, (unsigned long long)total_reported);
    cr_assert_gt(total_reported, 0);
}

/* A journal exactly at its bound: no ack record fits, so acks compact. */
Test(journal, ack_at_the_exact_bound_compacts_instead)
{
    ciot__journal_opts o = opts_of(4096, CIOT__JOURNAL_SYNC_EVERY);
    o.compact_min_bytes = 1 << 30;
    got g;
    ciot__journal *j = jopen(&o, &g, NULL);
    static char payload[230]; /* record 255 B: 16 + 16 * 255 = 4096 */
    memset(payload, 'e', sizeof payload);
    for (uint64_t id = 1; id <= 16; id++)
        cr_assert_eq(ciot__journal_add(j, id, "e", 1, payload, sizeof payload, 1, false), 0);
    cr_assert_eq(ciot__journal_file_size(j), 4096);
    cr_assert_eq(ciot__journal_add(j, 17, "e", 1, "x", 1, 1, false), CIOT_EQUEUE_FULL);
    cr_assert_eq(ciot__journal_ack(j, 7), 0);
    cr_assert_eq(ciot__journal_compactions(j), 1);
    cr_assert_eq(ciot__journal_file_size(j), 4096 - 255);
    cr_assert_eq((uint64_t)file_size(), 4096 - 255);
    ciot__journal_free(j);
    j = jopen(&o, &g, NULL);
    cr_assert_eq(g.n, 15);
    for (size_t i = 0; i < 15; i++)
        cr_assert_eq(g.id[i], i + 1 + (i >= 6));
    ciot__journal_free(j);
}

/* A compaction that cannot write its temporary file leaves the journal as it was. */
Test(journal, failed_compaction_keeps_the_old_file)
{
    ciot__journal_opts o = opts_of(1 << 20, CIOT__JOURNAL_SYNC_NONE);
    o.compact_min_bytes = 1 << 30;
    got g;
    ciot__journal *j = jopen(&o, &g, NULL);
    static char payload[500];
    memset(payload, 'c', sizeof payload);
    for (uint64_t id = 1; id <= 40; id++)
        cr_assert_eq(ciot__journal_add(j, id, "c", 1, payload, sizeof payload, 1, false), 0);
    for (uint64_t id = 1; id <= 40; id += 2)
        cr_assert_eq(ciot__journal_ack(j, id), 0);
    uint64_t size = ciot__journal_file_size(j);
    uint64_t live = ciot__journal_live_bytes(j);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {(rlim_t)(live / 2), (rlim_t)(live / 2)};
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    cr_assert_eq(ciot__journal_compact(j), CIOT_EIO);
    cr_assert(strstr(ciot__journal_errmsg(j), "journal: write failed"), "%s",
              ciot__journal_errmsg(j));
    cr_assert_eq(ciot__journal_compactions(j), 0);
    cr_assert_eq((uint64_t)file_size(), size);
    char tmp[160];
    struct stat st;
    snprintf(tmp, sizeof tmp, "%s.tmp", jpath);
    cr_assert_neq(stat(tmp, &st), 0);
    /* The file is already past the limit, so an ack record cannot be written
     * either: EIO, and message 2 stays live (it comes back below). */
    cr_assert_eq(ciot__journal_ack(j, 2), CIOT_EIO);
    ciot__journal_free(j);
    rl.rlim_cur = rl.rlim_max = RLIM_INFINITY;
    setrlimit(RLIMIT_FSIZE, &rl); /* may fail unprivileged; the reopen only reads */
    j = jopen(&o, &g, NULL);
    cr_assert_eq(g.n, 20);
    for (size_t i = 0; i < 20; i++)
        cr_assert_eq(g.id[i], 2 + 2 * i);
    ciot__journal_free(j);
}

/* Emptying the journal shortens it to its header; writing then continues
 * right after the header (not at the old end, which would leave a hole). */
Test(journal, writes_after_emptying_land_after_the_header)
{
    ciot__journal_opts o = opts_of(1 << 20, CIOT__JOURNAL_SYNC_NONE);
    o.compact_min_bytes = 1; /* emptying always shortens the file */
    got g;
    ciot__journal *j = jopen(&o, &g, NULL);
    for (uint64_t round = 0; round < 5; round++) {
        add_s(j, round * 10 + 1, "t", "one");
        add_s(j, round * 10 + 2, "t", "two");
        cr_assert_eq(ciot__journal_ack(j, round * 10 + 1), 0);
        cr_assert_eq(ciot__journal_ack(j, round * 10 + 2), 0);
        cr_assert_eq(ciot__journal_file_size(j), CIOT__JOURNAL_HEADER_SIZE);
        cr_assert_eq(file_size(), CIOT__JOURNAL_HEADER_SIZE);
    }
    add_s(j, 100, "t", "kept");
    uint64_t want = CIOT__JOURNAL_HEADER_SIZE + ciot__journal_add_record_size(1, 4);
    cr_assert_eq(ciot__journal_file_size(j), want);
    ciot__journal_free(j);
    cr_assert_eq((uint64_t)file_size(), want);
    ciot__journal_report rep;
    j = jopen(&o, &g, &rep);
    cr_assert_eq(rep.bytes_cut, 0);
    cr_assert_eq(g.n, 1);
    cr_assert_str_eq(g.text[0], "t|kept");
    ciot__journal_free(j);
}

/* Below compact_min_bytes, emptying appends an ack record (cheaper than an
 * ftruncate per message); the replay is the same. */
Test(journal, emptying_a_small_file_appends_an_ack)
{
    ciot__journal_opts o = opts_of(1 << 20, CIOT__JOURNAL_SYNC_NONE);
    got g;
    ciot__journal *j = jopen(&o, &g, NULL);
    add_s(j, 1, "t", "x");
    cr_assert_eq(ciot__journal_ack(j, 1), 0);
    uint64_t want = CIOT__JOURNAL_HEADER_SIZE + ciot__journal_add_record_size(1, 1) +
                    CIOT__JOURNAL_ACK_RECORD_SIZE;
    cr_assert_eq(ciot__journal_file_size(j), want);
    add_s(j, 2, "t", "y");
    ciot__journal_free(j);
    ciot__journal_report rep;
    j = jopen(&o, &g, &rep);
    cr_assert_eq(g.n, 1);
    cr_assert_eq(g.id[0], 2);
    cr_assert_eq(rep.records, 3);
    cr_assert_eq(rep.bytes_cut, 0);
    ciot__journal_free(j);
}
