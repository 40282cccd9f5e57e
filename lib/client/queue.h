/*
 * The client's message queue: messages waiting to be sent (offline or not yet
 * picked) and messages in flight (sent, waiting for their PUBACK), in one FIFO.
 *
 * - Each message gets a 64-bit id from the queue, increasing, never reused
 *   (separate from MQTT packet ids, which wrap at 65,535).
 * - One allocation per message holds the header, the topic and the payload.
 * - Bounded by a number of messages and a number of bytes (topic + payload);
 *   when full the drop policy decides, and every message dropped is reported
 *   to the drop callback with its id and reason. Nothing is dropped silently.
 * - The list is always in id order. In-flight messages are a prefix of it:
 *   peek() gives the oldest message not yet sent, mark_sent() moves the
 *   boundary, requeue() moves it back to the front (after a disconnect the
 *   in-flight messages go out again first, in their original order).
 *
 * Not thread-safe: the queue has no lock of its own; the client holds its
 * mutex around every call. The drop callback runs inside push(); it must not
 * call back into the same queue.
 */
#ifndef CIOT_CLIENT_QUEUE_H
#define CIOT_CLIENT_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What to do with a message that does not fit. */
typedef enum ciot__drop_policy {
    CIOT__DROP_OLDEST = 0, /* evict the oldest unsent messages until the new one fits (the
                              new one is dropped when even that cannot make room) */
    CIOT__DROP_NEWEST = 1, /* drop the new message (push succeeds and reports it) */
    CIOT__REFUSE = 2,      /* push fails with CIOT_EQUEUE_FULL, nothing is dropped */
} ciot__drop_policy;

/* Why a message left the queue without its acknowledgement. */
typedef enum ciot__drop_reason {
    CIOT__DROPPED_OLDEST = 1,  /* evicted to make room (CIOT__DROP_OLDEST) */
    CIOT__DROPPED_NEWEST = 2,  /* the new message did not fit (CIOT__DROP_NEWEST) */
    CIOT__DROPPED_CLEARED = 3, /* ciot__queue_clear() */
} ciot__drop_reason;

typedef void (*ciot__queue_drop_cb)(uint64_t id, ciot__drop_reason reason, void *user_data);

/* Largest topic and payload MQTT can carry. */
#define CIOT__QUEUE_MAX_TOPIC 65535u
#define CIOT__QUEUE_MAX_PAYLOAD 268435455u

/* One message. Header (24 bytes), then the topic bytes, then the payload. */
typedef struct ciot__qmsg {
    struct ciot__qmsg *next;
    uint64_t id;
    uint32_t plen_flags; /* payload length (28 bits) | qos << 28 | retain << 30 | sent << 31 */
    uint16_t topic_len;
    uint16_t packet_id;  /* the MQTT packet id while in flight; free for the client */
} ciot__qmsg;

static inline size_t ciot__qmsg_topic_len(const ciot__qmsg *m) { return m->topic_len; }
static inline const char *ciot__qmsg_topic(const ciot__qmsg *m) { return (const char *)(m + 1); }
static inline size_t ciot__qmsg_payload_len(const ciot__qmsg *m) { return m->plen_flags & 0x0fffffffu; }
static inline const void *ciot__qmsg_payload(const ciot__qmsg *m)
{
    return (const char *)(m + 1) + m->topic_len;
}
static inline int ciot__qmsg_qos(const ciot__qmsg *m) { return (int)((m->plen_flags >> 28) & 3u); }
static inline bool ciot__qmsg_retain(const ciot__qmsg *m) { return (m->plen_flags >> 30) & 1u; }
static inline bool ciot__qmsg_in_flight(const ciot__qmsg *m) { return (m->plen_flags >> 31) & 1u; }

typedef struct ciot__queue ciot__queue;

/* max_messages >= 1 and max_bytes >= 1 (SIZE_MAX = no bound on bytes), a known
 * policy and a drop_cb (even CIOT__REFUSE drops in ciot__queue_clear).
 * @retval 0, CIOT_EINVAL, CIOT_ENOMEM */
int ciot__queue_new(ciot__queue **out, size_t max_messages, size_t max_bytes,
                    ciot__drop_policy policy, ciot__queue_drop_cb drop_cb, void *user_data);

/* Frees every message without reporting them (see ciot__queue_clear). NULL is fine. */
void ciot__queue_free(ciot__queue *q);

/* Copies topic and payload into one new message at the tail; *out_id gets its id.
 * qos 0..2; topic_len 1..65535; payload_len <= 268,435,455; NULL pointers only
 * with length 0 (payload). A message larger than max_bytes on its own is
 * refused whatever the policy.
 * @retval 0 queued, or (CIOT__DROP_NEWEST) dropped and reported: *out_id valid
 * @retval CIOT_EQUEUE_FULL full and CIOT__REFUSE, or the message alone exceeds max_bytes
 * @retval CIOT_EINVAL, CIOT_ENOMEM (nothing queued or dropped) */
int ciot__queue_push(ciot__queue *q, uint64_t *out_id, const char *topic, size_t topic_len,
                     const void *payload, size_t payload_len, int qos, bool retain);

/* Like push with a given id (a message replayed from the journal). The id must
 * be at least ciot__queue_next_id(); the next id assigned is then id + 1.
 * @retval as push; CIOT_ERANGE for an id that would go backwards */
int ciot__queue_restore(ciot__queue *q, uint64_t id, const char *topic, size_t topic_len,
                        const void *payload, size_t payload_len, int qos, bool retain);

/* Makes the next id at least next_id (ids then continue after those a
 * journal held). Never moves backwards. */
void ciot__queue_set_next_id(ciot__queue *q, uint64_t next_id);

/* The newest message, or NULL. */
const ciot__qmsg *ciot__queue_last(const ciot__queue *q);

/* Takes the next id for a message that bypasses the queue (0 when exhausted);
 * restore() can still queue it under that id. */
uint64_t ciot__queue_take_id(ciot__queue *q);

/* The oldest message not yet sent, or NULL. Borrowed: valid until it is acked,
 * dropped, cleared or the queue is freed. */
const ciot__qmsg *ciot__queue_peek(const ciot__queue *q);

/* Marks the message returned by peek() as in flight, recording packet_id.
 * @retval 0, CIOT_ESTATE (id is not the peeked message) */
int ciot__queue_mark_sent(ciot__queue *q, uint64_t id, uint16_t packet_id);

/* Removes the message with this id, in flight or not (PUBACKs may come out of
 * order). Cost: the number of messages older than it.
 * @retval 0, CIOT_ENOTFOUND (no such message: already acked or dropped) */
int ciot__queue_ack(ciot__queue *q, uint64_t id);

/* Records the MQTT packet id of the message most recently marked sent (known
 * only once the connection took it), in O(1). @retval 0, CIOT_ENOTFOUND (id is
 * not that message) */
int ciot__queue_set_packet_id(ciot__queue *q, uint64_t id, uint16_t packet_id);

/* Undoes mark_sent() for the most recently sent message (the send failed):
 * it becomes the next to send again. @retval 0, CIOT_ESTATE (not that message) */
int ciot__queue_unmark(ciot__queue *q, uint64_t id);

/* Finds the in-flight message carrying this MQTT packet id (oldest first), or NULL. */
const ciot__qmsg *ciot__queue_find_in_flight(const ciot__queue *q, uint16_t packet_id);

/* Every in-flight message becomes not-sent again, at the front, in order.
 * Returns how many there were. */
size_t ciot__queue_requeue(ciot__queue *q);

/* Drops every message, reporting each with CIOT__DROPPED_CLEARED. */
void ciot__queue_clear(ciot__queue *q);

size_t ciot__queue_count(const ciot__queue *q);       /* messages, in flight included */
size_t ciot__queue_bytes(const ciot__queue *q);       /* topic + payload bytes */
size_t ciot__queue_in_flight(const ciot__queue *q);   /* messages sent, not acked */
uint64_t ciot__queue_next_id(const ciot__queue *q);   /* id the next push gets */

/* Iteration in id order (for persistence): first, then next until NULL.
 * The queue must not change during the walk. */
const ciot__qmsg *ciot__queue_first(const ciot__queue *q);
static inline const ciot__qmsg *ciot__queue_next(const ciot__qmsg *m) { return m->next; }

/* Bytes one message allocates: header + topic + payload (without malloc's own). */
size_t ciot__queue_msg_alloc_size(size_t topic_len, size_t payload_len);

#endif /* CIOT_CLIENT_QUEUE_H */
