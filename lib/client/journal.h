/*
 * Optional disk persistence of unacknowledged QoS 1 messages: an append-only
 * journal file in a directory (format in doc/internals-queue.md).
 *
 * - add() appends a record holding the whole message, ack() a small record;
 *   each record carries its length and a CRC-32C.
 * - open() replays the file and hands back, in order, the messages not yet
 *   acknowledged. A torn or corrupt tail (partial record, bad CRC, impossible
 *   length or id) ends the replay there; the file is cut back to the last
 *   good record and the number of bytes cut is reported.
 * - Sync policy: none (the OS decides), every N ms (checked on each record and
 *   on flush()), or every record (fdatasync before add()/ack() return, so a
 *   record whose add() returned 0 survives kill -9 and a power cut alike).
 * - The file never grows beyond max_bytes: an add() that would pass it returns
 *   CIOT_EQUEUE_FULL (after compacting if that makes room); acks always work.
 * - Compaction rewrites the live records to a temporary file, syncs it, renames
 *   it over the journal and syncs the directory: a crash at any point leaves
 *   either the old or the new file, both complete.
 * - One process per directory (a lock file; a second open gets CIOT_EBUSY).
 *
 * Every I/O failure returns CIOT_EIO and leaves a message in
 * ciot__journal_errmsg(), e.g. "journal: write failed: No space left on device".
 * A failed write is undone (the file is cut back to the last whole record);
 * if that is impossible, or a sync fails, the journal refuses further writes
 * (CIOT_EIO) until it is reopened, which replays what really is on disk.
 * Not thread-safe: the client serialises calls.
 */
#ifndef CIOT_CLIENT_JOURNAL_H
#define CIOT_CLIENT_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum ciot__journal_sync {
    CIOT__JOURNAL_SYNC_NONE = 0,
    CIOT__JOURNAL_SYNC_INTERVAL = 1, /* at most every interval_ms */
    CIOT__JOURNAL_SYNC_EVERY = 2,    /* every record */
} ciot__journal_sync;

typedef struct ciot__journal_opts {
    uint64_t max_bytes;         /* bound on the file size; >= 4096 */
    ciot__journal_sync sync;
    uint64_t sync_interval_ms;  /* for CIOT__JOURNAL_SYNC_INTERVAL, >= 1 */
    uint64_t compact_min_bytes; /* compact only files at least this big
                                   (0: 1 MiB or max_bytes / 2 if smaller) */
} ciot__journal_opts;

/* What open() found. */
typedef struct ciot__journal_report {
    uint64_t records;     /* good records read (add and ack) */
    uint64_t live;        /* messages handed back */
    uint64_t bytes_cut;   /* bytes of torn or corrupt tail removed */
    uint64_t next_id;     /* 1 + the highest message id ever recorded (1 if none) */
} ciot__journal_report;

typedef struct ciot__journal ciot__journal;

/* One replayed message; the pointers are valid during the call only.
 * A non-zero return stops open() with CIOT_EUSER. */
typedef int (*ciot__journal_replay_cb)(uint64_t id, const char *topic, size_t topic_len,
                                       const void *payload, size_t payload_len, int qos,
                                       bool retain, void *user_data);

/* Validates the options; no I/O yet. @retval 0, CIOT_EINVAL, CIOT_ENOMEM */
int ciot__journal_new(ciot__journal **out, const ciot__journal_opts *opts);

/* Opens (creating dir and file if needed) and replays the journal in dir
 * (a NUL-terminated path). cb may be NULL. report may be NULL.
 * @retval 0
 * @retval CIOT_EIO     see ciot__journal_errmsg()
 * @retval CIOT_EBUSY   another process has the directory open
 * @retval CIOT_ECORRUPT the file is not a journal (its header is wrong); left untouched
 * @retval CIOT_EVERSION a journal of another format version; left untouched
 * @retval CIOT_EUSER   cb stopped the replay
 * @retval CIOT_ESTATE  already open; CIOT_EINVAL, CIOT_ENOMEM */
int ciot__journal_open(ciot__journal *j, const char *dir, ciot__journal_replay_cb cb,
                       void *user_data, ciot__journal_report *report);

/* Closes (after a final sync unless the policy is none) and frees. NULL is fine. */
void ciot__journal_free(ciot__journal *j);

/* Appends a message. id must be greater than every id recorded before.
 * @retval 0, CIOT_EQUEUE_FULL (max_bytes), CIOT_EIO, CIOT_EINVAL, CIOT_ENOMEM,
 * CIOT_ESTATE (not open) */
int ciot__journal_add(ciot__journal *j, uint64_t id, const char *topic, size_t topic_len,
                      const void *payload, size_t payload_len, int qos, bool retain);

/* Records that message id was acknowledged. May compact.
 * @retval 0, CIOT_ENOTFOUND (no live message with that id), CIOT_EIO (if the
 * failure was in the compaction that followed, the ack itself is recorded),
 * CIOT_ENOMEM, CIOT_ESTATE */
int ciot__journal_ack(ciot__journal *j, uint64_t id);

/* Syncs what was written since the last sync (any policy).
 * @retval 0, CIOT_EIO, CIOT_ESTATE */
int ciot__journal_flush(ciot__journal *j);

/* Rewrites the file with only the live records.
 * @retval 0, CIOT_EIO, CIOT_ENOMEM, CIOT_ESTATE */
int ciot__journal_compact(ciot__journal *j);

const char *ciot__journal_errmsg(const ciot__journal *j); /* "" if none */
uint64_t ciot__journal_file_size(const ciot__journal *j);
uint64_t ciot__journal_live_count(const ciot__journal *j);
uint64_t ciot__journal_live_bytes(const ciot__journal *j);  /* bytes of live add records */
uint64_t ciot__journal_compactions(const ciot__journal *j);

/* Size on disk of one add record and of one ack record, and of the file header. */
uint64_t ciot__journal_add_record_size(size_t topic_len, size_t payload_len);
#define CIOT__JOURNAL_ACK_RECORD_SIZE 20u
#define CIOT__JOURNAL_HEADER_SIZE 16u
#define CIOT__JOURNAL_FILE_NAME "ciot.journal"

#endif /* CIOT_CLIENT_JOURNAL_H */
