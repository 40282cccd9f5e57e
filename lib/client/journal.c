#include "client/journal.h"

#include "client/queue.h"
#include "core/crc32c.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/*
 * File:   header "CIOTJRNL" u32le version u32le crc32c(first 12 bytes)
 * Record: u8 'C' u8 'J' u8 type u8 flags | u32le len | u64le id | body | u32le crc32c
 *   add  (type 'A'): body = u16le topic_len, u16le 0, topic, payload;
 *                    flags = qos | retain << 2; len = 24 + topic_len + payload_len
 *   ack  (type 'K'): no body, flags 0, len = 20
 * len counts the whole record; the CRC covers its first len - 4 bytes.
 */
#define HDR_SIZE CIOT__JOURNAL_HEADER_SIZE
#define REC_HEAD 16u
#define ADD_FIXED 24u /* record head + topic_len/reserved + crc */
#define ACK_SIZE CIOT__JOURNAL_ACK_RECORD_SIZE
#define MAX_ADD (ADD_FIXED + CIOT__QUEUE_MAX_TOPIC + (uint64_t)CIOT__QUEUE_MAX_PAYLOAD)
#define VERSION 1u
#define TYPE_ADD 'A'
#define TYPE_ACK 'K'
#define TMP_NAME CIOT__JOURNAL_FILE_NAME ".tmp"
#define LOCK_NAME CIOT__JOURNAL_FILE_NAME ".lock"
#define DEFAULT_COMPACT_MIN (1024u * 1024u)

static const char file_magic[8] = {'C', 'I', 'O', 'T', 'J', 'R', 'N', 'L'};

typedef struct entry {
    uint64_t id;
    uint64_t off;
    uint32_t len; /* 0 once acknowledged */
} entry;

struct ciot__journal {
    ciot__journal_opts opts;
    int dirfd, fd, lockfd;
    bool open, broken, dirty;
    bool at_end; /* the fd's offset is known to be `size`: no lseek before writing */
    uint64_t size;       /* end of the last good record */
    uint64_t live_bytes; /* sum of the lengths of live add records */
    uint64_t live_count;
    uint64_t last_id;
    uint64_t last_sync_ms;
    uint64_t compactions;
    entry *ent;          /* add records in file order; [head, n) may be live */
    size_t head, n, cap;
    unsigned char *buf;  /* scratch for one record */
    size_t buf_cap;
    char errmsg[192];
};

static void put16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static uint16_t get16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const unsigned char *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }

static int fail(ciot__journal *j, int rc, const char *fmt, ...) CIOT__PRINTF(3, 4);
static int fail(ciot__journal *j, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(j->errmsg, sizeof j->errmsg, fmt, ap);
    va_end(ap);
    (void)n;
    ciot__log(rc == CIOT_EUSER ? CIOT_LOG_WARN : CIOT_LOG_ERROR, "%s", j->errmsg);
    return rc;
}

static int io_fail(ciot__journal *j, const char *what)
{
    return fail(j, CIOT_EIO, "journal: %s failed: %s", what, strerror(errno));
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t ciot__journal_add_record_size(size_t topic_len, size_t payload_len)
{
    return ADD_FIXED + (uint64_t)topic_len + payload_len;
}

int ciot__journal_new(ciot__journal **out, const ciot__journal_opts *opts)
{
    if (!out)
        return CIOT_EINVAL;
    *out = NULL;
    if (!opts || opts->max_bytes < 4096)
        return CIOT_EINVAL;
    if (opts->sync != CIOT__JOURNAL_SYNC_NONE && opts->sync != CIOT__JOURNAL_SYNC_INTERVAL &&
        opts->sync != CIOT__JOURNAL_SYNC_EVERY)
        return CIOT_EINVAL;
    if (opts->sync == CIOT__JOURNAL_SYNC_INTERVAL && opts->sync_interval_ms == 0)
        return CIOT_EINVAL;
    ciot__journal *j = ciot__calloc(1, sizeof *j);
    if (!j)
        return CIOT_ENOMEM;
    j->opts = *opts;
    /* A compaction costs two fsyncs whatever the size: let enough dead bytes
     * pile up to amortise them, but not so many that the bound is reached
     * first and compaction only ever happens inside add(). */
    if (j->opts.compact_min_bytes == 0)
        j->opts.compact_min_bytes =
            opts->max_bytes / 2 < DEFAULT_COMPACT_MIN ? opts->max_bytes / 2 : DEFAULT_COMPACT_MIN;
    j->dirfd = j->fd = j->lockfd = -1;
    *out = j;
    return 0;
}

static void close_fds(ciot__journal *j)
{
    if (j->fd >= 0)
        close(j->fd);
    if (j->lockfd >= 0)
        close(j->lockfd); /* releases the lock */
    if (j->dirfd >= 0)
        close(j->dirfd);
    j->fd = j->lockfd = j->dirfd = -1;
    j->open = false;
}

static int do_sync(ciot__journal *j)
{
    if (fdatasync(j->fd) != 0) {
        /* After a failed sync the kernel may have dropped the dirty pages and
         * a retry could wrongly succeed: stop trusting this file. */
        j->broken = true;
        return io_fail(j, "fdatasync");
    }
    j->dirty = false;
    j->last_sync_ms = now_ms();
    return 0;
}

/* After a record was written (or the file shortened): sync as the policy says. */
static int after_write(ciot__journal *j)
{
    j->dirty = true;
    switch (j->opts.sync) {
    case CIOT__JOURNAL_SYNC_EVERY:
        return do_sync(j);
    case CIOT__JOURNAL_SYNC_INTERVAL:
        if (now_ms() - j->last_sync_ms >= j->opts.sync_interval_ms)
            return do_sync(j);
        return 0;
    default:
        return 0;
    }
}

void ciot__journal_free(ciot__journal *j)
{
    if (!j)
        return;
    if (j->open && j->dirty && !j->broken && j->opts.sync != CIOT__JOURNAL_SYNC_NONE)
        (void)do_sync(j);
    close_fds(j);
    ciot__free(j->ent);
    ciot__free(j->buf);
    ciot__free(j);
}

static int reserve_buf(ciot__journal *j, size_t need)
{
    if (need <= j->buf_cap)
        return 0;
    size_t cap = j->buf_cap ? j->buf_cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    unsigned char *b = ciot__realloc(j->buf, cap);
    if (!b)
        return CIOT_ENOMEM;
    j->buf = b;
    j->buf_cap = cap;
    return 0;
}

static int push_entry(ciot__journal *j, uint64_t id, uint64_t off, uint32_t len)
{
    if (j->head > 0 && j->head >= j->n / 2) { /* slide the acked prefix out */
        memmove(j->ent, j->ent + j->head, (j->n - j->head) * sizeof *j->ent);
        j->n -= j->head;
        j->head = 0;
    }
    if (j->n == j->cap) {
        size_t cap = j->cap ? j->cap * 2 : 64;
        if (cap > SIZE_MAX / sizeof *j->ent)
            return CIOT_ENOMEM;
        entry *e = ciot__realloc(j->ent, cap * sizeof *j->ent);
        if (!e)
            return CIOT_ENOMEM;
        j->ent = e;
        j->cap = cap;
    }
    j->ent[j->n++] = (entry){id, off, len};
    return 0;
}

/* Index of the live entry with this id, or SIZE_MAX. Ids increase along the array. */
static size_t find_entry(const ciot__journal *j, uint64_t id)
{
    size_t lo = j->head, hi = j->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (j->ent[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < j->n && j->ent[lo].id == id && j->ent[lo].len)
        return lo;
    return SIZE_MAX;
}

static void kill_entry(ciot__journal *j, size_t i)
{
    j->live_bytes -= j->ent[i].len;
    j->live_count--;
    j->ent[i].len = 0;
    while (j->head < j->n && j->ent[j->head].len == 0)
        j->head++;
    if (j->head == j->n)
        j->head = j->n = 0;
}

static int write_all(ciot__journal *j, int fd, struct iovec *iov, int iovcnt)
{
    while (iovcnt > 0) {
        ssize_t w = writev(fd, iov, iovcnt);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return io_fail(j, "write");
        }
        if (w == 0) {
            errno = EIO;
            return io_fail(j, "write");
        }
        size_t done = (size_t)w;
        while (iovcnt > 0 && done >= iov->iov_len) {
            done -= iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (char *)iov->iov_base + done;
            iov->iov_len -= done;
        }
    }
    return 0;
}

static void make_file_header(unsigned char h[HDR_SIZE])
{
    memcpy(h, file_magic, 8);
    put32(h + 8, VERSION);
    put32(h + 12, ciot__crc32c(0, h, 12));
}

/* Appends one record (given as pieces, CRC added here) at the end of the file.
 * On failure the file is cut back so that no partial record stays behind. */
static int append(ciot__journal *j, const unsigned char *head, size_t head_len, const void *payload,
                  size_t payload_len)
{
    unsigned char crc[4];
    uint32_t c = ciot__crc32c(0, head, head_len);
    c = ciot__crc32c(c, payload, payload_len);
    put32(crc, c);
    struct iovec iov[3] = {
        {(void *)(uintptr_t)head, head_len},
        {(void *)(uintptr_t)payload, payload_len},
        {crc, 4},
    };
    if (!j->at_end && lseek(j->fd, (off_t)j->size, SEEK_SET) < 0)
        return io_fail(j, "seek");
    j->at_end = false;
    int rc = write_all(j, j->fd, iov, 3);
    if (rc) {
        int saved = errno;
        if (ftruncate(j->fd, (off_t)j->size) != 0)
            j->broken = true; /* a partial record may remain: refuse further writes */
        errno = saved;
        return rc;
    }
    j->size += head_len + payload_len + 4;
    j->at_end = true;
    return 0;
}

static int compact(ciot__journal *j);

static bool should_compact(const ciot__journal *j)
{
    uint64_t dead = j->size - HDR_SIZE - j->live_bytes;
    return j->size >= j->opts.compact_min_bytes && dead > j->live_bytes;
}

int ciot__journal_add(ciot__journal *j, uint64_t id, const char *topic, size_t topic_len,
                      const void *payload, size_t payload_len, int qos, bool retain)
{
    if (!j)
        return CIOT_EINVAL;
    if (!j->open)
        return CIOT_ESTATE;
    if (!topic || topic_len == 0 || topic_len > CIOT__QUEUE_MAX_TOPIC ||
        (!payload && payload_len) || payload_len > CIOT__QUEUE_MAX_PAYLOAD || qos < 0 ||
        qos > 2 || id <= j->last_id || id == UINT64_MAX)
        return CIOT_EINVAL;
    if (j->broken)
        return fail(j, CIOT_EIO, "journal: unusable after a failed write could not be undone");
    uint64_t len = ciot__journal_add_record_size(topic_len, payload_len);
    if (j->size + len > j->opts.max_bytes) {
        if (HDR_SIZE + j->live_bytes + len > j->opts.max_bytes)
            return CIOT_EQUEUE_FULL;
        int rc = compact(j);
        if (rc)
            return rc;
    }
    size_t head_len = 20 + topic_len;
    if (reserve_buf(j, head_len))
        return CIOT_ENOMEM;
    /* Make room in the index first: after the write nothing may fail. */
    if (j->n == j->cap || (j->head > 0 && j->head >= j->n / 2)) {
        if (push_entry(j, 0, 0, 1) != 0)
            return CIOT_ENOMEM;
        j->n--;
    }
    unsigned char *h = j->buf;
    h[0] = 'C';
    h[1] = 'J';
    h[2] = TYPE_ADD;
    h[3] = (unsigned char)(qos | (retain ? 4 : 0));
    put32(h + 4, (uint32_t)len);
    put64(h + 8, id);
    put16(h + 16, (uint16_t)topic_len);
    put16(h + 18, 0);
    memcpy(h + 20, topic, topic_len);
    uint64_t off = j->size;
    int rc = append(j, h, head_len, payload, payload_len);
    if (rc)
        return rc;
    (void)push_entry(j, id, off, (uint32_t)len); /* cannot fail: room reserved above */
    j->live_bytes += len;
    j->live_count++;
    j->last_id = id;
    return after_write(j);
}

int ciot__journal_ack(ciot__journal *j, uint64_t id)
{
    if (!j)
        return CIOT_EINVAL;
    if (!j->open)
        return CIOT_ESTATE;
    size_t i = find_entry(j, id);
    if (i == SIZE_MAX)
        return CIOT_ENOTFOUND;
    if (j->broken)
        return fail(j, CIOT_EIO, "journal: unusable after a failed write could not be undone");
    if (j->live_count == 1 &&
        (j->size >= j->opts.compact_min_bytes || j->size + ACK_SIZE > j->opts.max_bytes)) {
        /* The last live message of a big file: shorten it to the header
         * instead of writing an ack. (Small files take the ack record: one
         * ftruncate per message would cost more than the append.) */
        if (ftruncate(j->fd, HDR_SIZE) != 0)
            return io_fail(j, "ftruncate");
        kill_entry(j, i);
        j->size = HDR_SIZE;
        j->at_end = false; /* the offset is still past the old end */
        return after_write(j);
    }
    if (j->size + ACK_SIZE > j->opts.max_bytes) {
        /* No room for the ack record: rewrite without the acked message. Should
         * that fail, the old file still holds it, which costs at worst a
         * duplicate after a restart. */
        kill_entry(j, i);
        return compact(j);
    }
    unsigned char h[REC_HEAD];
    h[0] = 'C';
    h[1] = 'J';
    h[2] = TYPE_ACK;
    h[3] = 0;
    put32(h + 4, ACK_SIZE);
    put64(h + 8, id);
    int rc = append(j, h, REC_HEAD, NULL, 0);
    if (rc)
        return rc; /* not recorded: the message stays live */
    kill_entry(j, i);
    rc = after_write(j);
    if (rc)
        return rc;
    if (should_compact(j))
        return compact(j);
    return 0;
}

int ciot__journal_flush(ciot__journal *j)
{
    if (!j)
        return CIOT_EINVAL;
    if (!j->open)
        return CIOT_ESTATE;
    return j->dirty ? do_sync(j) : 0;
}

static int read_all_at(ciot__journal *j, void *dst, size_t len, uint64_t off)
{
    unsigned char *p = dst;
    while (len) {
        ssize_t r = pread(j->fd, p, len, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return io_fail(j, "read");
        }
        if (r == 0)
            return fail(j, CIOT_EIO, "journal: read failed: file shorter than expected");
        p += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static int compact(ciot__journal *j)
{
    int rc = 0;
    int tfd = openat(j->dirfd, TMP_NAME, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (tfd < 0)
        return io_fail(j, "open of temporary file");
    unsigned char fh[HDR_SIZE];
    make_file_header(fh);
    struct iovec iov = {fh, HDR_SIZE};
    rc = write_all(j, tfd, &iov, 1);
    /* New offsets go to a fresh index, swapped in only on success. */
    size_t cap = j->live_count ? (size_t)j->live_count : 1;
    entry *ne = ciot__malloc(cap * sizeof *ne);
    size_t nn = 0;
    uint64_t off = HDR_SIZE;
    if (!ne && !rc)
        rc = CIOT_ENOMEM;
    for (size_t i = j->head; !rc && i < j->n; i++) {
        entry e = j->ent[i];
        if (!e.len)
            continue;
        if ((rc = reserve_buf(j, e.len)) != 0)
            break;
        if ((rc = read_all_at(j, j->buf, e.len, e.off)) != 0)
            break;
        if (ciot__crc32c(0, j->buf, e.len - 4) != get32(j->buf + e.len - 4)) {
            rc = fail(j, CIOT_EIO, "journal: record of message %llu changed on disk",
                      (unsigned long long)e.id);
            break;
        }
        if (nn == cap) { /* never, while live_count is right: checked, not assumed */
            rc = fail(j, CIOT_ECORRUPT, "journal: more live records than counted");
            break;
        }
        iov = (struct iovec){j->buf, e.len};
        if ((rc = write_all(j, tfd, &iov, 1)) != 0)
            break;
        ne[nn++] = (entry){e.id, off, e.len};
        off += e.len;
    }
    if (!rc && fsync(tfd) != 0)
        rc = io_fail(j, "fsync of temporary file");
    if (!rc && renameat(j->dirfd, TMP_NAME, j->dirfd, CIOT__JOURNAL_FILE_NAME) != 0)
        rc = io_fail(j, "rename");
    if (rc) {
        close(tfd);
        (void)unlinkat(j->dirfd, TMP_NAME, 0);
        ciot__free(ne);
        return rc;
    }
    close(j->fd);
    j->fd = tfd;
    ciot__free(j->ent);
    j->ent = ne;
    j->cap = cap;
    j->n = nn;
    j->head = 0;
    j->size = off;
    j->at_end = true; /* tfd was written sequentially */
    j->compactions++;
    j->dirty = false;
    /* The rename is durable once the directory is. */
    if (fsync(j->dirfd) != 0)
        return io_fail(j, "fsync of directory");
    return 0;
}

int ciot__journal_compact(ciot__journal *j)
{
    if (!j)
        return CIOT_EINVAL;
    if (!j->open)
        return CIOT_ESTATE;
    if (j->broken)
        return fail(j, CIOT_EIO, "journal: unusable after a failed write could not be undone");
    return compact(j);
}

/* Writes a fresh header over an empty or torn-at-birth file. */
static int init_file(ciot__journal *j)
{
    unsigned char fh[HDR_SIZE];
    make_file_header(fh);
    if (ftruncate(j->fd, 0) != 0)
        return io_fail(j, "ftruncate");
    if (lseek(j->fd, 0, SEEK_SET) < 0)
        return io_fail(j, "seek");
    struct iovec iov = {fh, HDR_SIZE};
    int rc = write_all(j, j->fd, &iov, 1);
    if (rc)
        return rc;
    if (fsync(j->fd) != 0)
        return io_fail(j, "fsync");
    if (fsync(j->dirfd) != 0)
        return io_fail(j, "fsync of directory");
    j->size = HDR_SIZE;
    return 0;
}

/* Walks the records of the mapped file; stops at the first one that is not
 * whole and valid. Returns the offset where good data ends. */
static int scan(ciot__journal *j, const unsigned char *map, uint64_t fsize, uint64_t *good_end,
                ciot__journal_report *rep)
{
    uint64_t off = HDR_SIZE;
    while (off < fsize) {
        uint64_t left = fsize - off;
        const unsigned char *p = map + off;
        if (left < REC_HEAD)
            break; /* torn head */
        if (p[0] != 'C' || p[1] != 'J')
            break;
        uint32_t len = get32(p + 4);
        uint64_t id = get64(p + 8);
        if (p[2] == TYPE_ADD) {
            if (len < ADD_FIXED + 1 || len > MAX_ADD || len > left || (p[3] & ~7u) || (p[3] & 3u) == 3)
                break;
            uint16_t tlen = get16(p + 16);
            if (tlen == 0 || get16(p + 18) != 0 || (uint64_t)ADD_FIXED + tlen > len ||
                len - ADD_FIXED - tlen > CIOT__QUEUE_MAX_PAYLOAD)
                break;
            if (ciot__crc32c(0, p, len - 4) != get32(p + len - 4))
                break;
            if (id <= j->last_id || id == UINT64_MAX)
                break; /* ids only grow: this record cannot be ours */
            int rc = push_entry(j, id, off, len);
            if (rc)
                return rc;
            j->live_bytes += len;
            j->live_count++;
            j->last_id = id;
        } else if (p[2] == TYPE_ACK) {
            if (len != ACK_SIZE || len > left || p[3] != 0)
                break;
            if (ciot__crc32c(0, p, len - 4) != get32(p + len - 4))
                break;
            size_t i = find_entry(j, id);
            if (i != SIZE_MAX)
                kill_entry(j, i);
            /* an ack for an id already gone is harmless: a duplicate */
        } else {
            break;
        }
        rep->records++;
        off += len;
    }
    *good_end = off;
    return 0;
}

static int replay(ciot__journal *j, const unsigned char *map, ciot__journal_replay_cb cb, void *ud)
{
    for (size_t i = j->head; cb && i < j->n; i++) {
        const entry *e = &j->ent[i];
        if (!e->len)
            continue;
        const unsigned char *p = map + e->off;
        size_t tlen = get16(p + 16);
        size_t plen = e->len - ADD_FIXED - tlen;
        if (cb(e->id, (const char *)p + 20, tlen, p + 20 + tlen, plen, p[3] & 3, (p[3] & 4) != 0,
               ud) != 0)
            return fail(j, CIOT_EUSER, "journal: replay stopped by the callback");
    }
    return 0;
}

static int open_locked(ciot__journal *j, const char *dir, ciot__journal_replay_cb cb, void *ud,
                       ciot__journal_report *rep)
{
    if (mkdir(dir, 0700) == 0) {
        /* A new directory survives a power cut only once its parent is synced. */
        char parent[4096];
        size_t n = strlen(dir);
        while (n > 1 && dir[n - 1] == '/')
            n--;
        while (n > 0 && dir[n - 1] != '/')
            n--;
        if (n >= sizeof parent)
            return fail(j, CIOT_EIO, "journal: directory name too long: %s", dir);
        if (n == 0)
            memcpy(parent, ".", 2);
        else {
            memcpy(parent, dir, n);
            parent[n] = '\0';
        }
        int pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (pfd < 0 || fsync(pfd) != 0) {
            int e = errno;
            if (pfd >= 0)
                close(pfd);
            return fail(j, CIOT_EIO, "journal: cannot sync the parent of %s: %s", dir, strerror(e));
        }
        close(pfd);
    } else if (errno != EEXIST) {
        return fail(j, CIOT_EIO, "journal: cannot create directory %s: %s", dir, strerror(errno));
    }
    j->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (j->dirfd < 0)
        return fail(j, CIOT_EIO, "journal: cannot open directory %s: %s", dir, strerror(errno));
    j->lockfd = openat(j->dirfd, LOCK_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (j->lockfd < 0)
        return io_fail(j, "open of lock file");
    struct flock fl = {0};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (fcntl(j->lockfd, F_SETLK, &fl) != 0) {
        if (errno == EACCES || errno == EAGAIN)
            return fail(j, CIOT_EBUSY, "journal: %s is in use by another process", dir);
        return io_fail(j, "lock");
    }
    if (unlinkat(j->dirfd, TMP_NAME, 0) != 0 && errno != ENOENT)
        return io_fail(j, "removal of a stale temporary file");
    j->fd = openat(j->dirfd, CIOT__JOURNAL_FILE_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (j->fd < 0)
        return io_fail(j, "open");
    struct stat st;
    if (fstat(j->fd, &st) != 0)
        return io_fail(j, "stat");
    uint64_t fsize = (uint64_t)st.st_size;
    if (fsize < HDR_SIZE) {
        /* New, or torn before its header was whole: nothing to lose. */
        rep->bytes_cut = fsize;
        return init_file(j);
    }
    if ((uint64_t)(size_t)fsize != fsize)
        return fail(j, CIOT_EIO, "journal: file too large to map");
    unsigned char *map = mmap(NULL, (size_t)fsize, PROT_READ, MAP_SHARED, j->fd, 0);
    if (map == MAP_FAILED)
        return io_fail(j, "mmap");
    int rc = 0;
    if (memcmp(map, file_magic, 8) != 0 || ciot__crc32c(0, map, 12) != get32(map + 12))
        rc = fail(j, CIOT_ECORRUPT, "journal: %s/%s is not a libcloudiot journal", dir,
                  CIOT__JOURNAL_FILE_NAME);
    else if (get32(map + 8) != VERSION)
        rc = fail(j, CIOT_EVERSION, "journal: format version %u is not supported",
                  (unsigned)get32(map + 8));
    uint64_t good = HDR_SIZE;
    if (!rc)
        rc = scan(j, map, fsize, &good, rep);
    if (!rc)
        rc = replay(j, map, cb, ud);
    munmap(map, (size_t)fsize);
    if (rc)
        return rc;
    j->size = good;
    if (good < fsize) {
        rep->bytes_cut = fsize - good;
        ciot__log(CIOT_LOG_WARN, "journal: cut %llu bytes of torn or corrupt tail",
                  (unsigned long long)(fsize - good));
        if (ftruncate(j->fd, (off_t)good) != 0)
            return io_fail(j, "ftruncate");
        if (fsync(j->fd) != 0)
            return io_fail(j, "fsync");
    }
    return 0;
}

int ciot__journal_open(ciot__journal *j, const char *dir, ciot__journal_replay_cb cb,
                       void *user_data, ciot__journal_report *report)
{
    if (!j || !dir || !*dir)
        return CIOT_EINVAL;
    if (j->open)
        return CIOT_ESTATE;
    ciot__journal_report rep = {0};
    j->errmsg[0] = '\0';
    j->broken = j->dirty = j->at_end = false;
    j->size = 0;
    j->live_bytes = j->live_count = j->last_id = 0;
    j->head = j->n = 0;
    int rc = open_locked(j, dir, cb, user_data, &rep);
    if (rc) {
        close_fds(j);
        j->head = j->n = 0;
        j->live_bytes = j->live_count = 0;
        return rc;
    }
    j->open = true;
    j->last_sync_ms = now_ms();
    rep.live = j->live_count;
    rep.next_id = j->last_id + 1;
    if (report)
        *report = rep;
    if (should_compact(j))
        return compact(j); /* the journal is open and valid even if this fails */
    return 0;
}

const char *ciot__journal_errmsg(const ciot__journal *j) { return j ? j->errmsg : ""; }
uint64_t ciot__journal_file_size(const ciot__journal *j) { return j ? j->size : 0; }
uint64_t ciot__journal_live_count(const ciot__journal *j) { return j ? j->live_count : 0; }
uint64_t ciot__journal_live_bytes(const ciot__journal *j) { return j ? j->live_bytes : 0; }
uint64_t ciot__journal_compactions(const ciot__journal *j) { return j ? j->compactions : 0; }
