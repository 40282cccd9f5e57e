#include "client/queue.h"

#include "internal.h"

#include <string.h>

CIOT__STATIC_ASSERT(sizeof(ciot__qmsg) <= 24, "queue message header fits in 24 bytes");

#define F_QOS_SHIFT 28
#define F_RETAIN (1u << 30)
#define F_SENT (1u << 31)
#define PLEN_MASK 0x0fffffffu

struct ciot__queue {
    ciot__qmsg *head, *tail;
    ciot__qmsg *unsent; /* first message not yet sent; everything before it is in flight */
    ciot__qmsg *last_sent; /* the newest in-flight message, NULL if none or unknown */
    size_t count, bytes, in_flight;
    size_t max_messages, max_bytes;
    uint64_t next_id;
    ciot__drop_policy policy;
    ciot__queue_drop_cb drop_cb;
    void *user_data;
};

int ciot__queue_new(ciot__queue **out, size_t max_messages, size_t max_bytes,
                    ciot__drop_policy policy, ciot__queue_drop_cb drop_cb, void *user_data)
{
    if (!out)
        return CIOT_EINVAL;
    *out = NULL;
    if (max_messages == 0 || max_bytes == 0)
        return CIOT_EINVAL;
    if (policy != CIOT__DROP_OLDEST && policy != CIOT__DROP_NEWEST && policy != CIOT__REFUSE)
        return CIOT_EINVAL;
    if (!drop_cb)
        return CIOT_EINVAL; /* every drop (clear() too) is reported to someone */
    ciot__queue *q = ciot__calloc(1, sizeof *q);
    if (!q)
        return CIOT_ENOMEM;
    q->max_messages = max_messages;
    q->max_bytes = max_bytes;
    q->policy = policy;
    q->drop_cb = drop_cb;
    q->user_data = user_data;
    q->next_id = 1;
    *out = q;
    return 0;
}

void ciot__queue_free(ciot__queue *q)
{
    if (!q)
        return;
    ciot__qmsg *m = q->head;
    while (m) {
        ciot__qmsg *next = m->next;
        ciot__free(m);
        m = next;
    }
    ciot__free(q);
}

size_t ciot__queue_msg_alloc_size(size_t topic_len, size_t payload_len)
{
    return sizeof(ciot__qmsg) + topic_len + payload_len;
}

static size_t msg_bytes(const ciot__qmsg *m)
{
    return (size_t)m->topic_len + (m->plen_flags & PLEN_MASK);
}

/* Unlinks m, whose predecessor is prev (NULL when m is the head). */
static void unlink_msg(ciot__queue *q, ciot__qmsg *prev, ciot__qmsg *m)
{
    if (prev)
        prev->next = m->next;
    else
        q->head = m->next;
    if (q->tail == m)
        q->tail = prev;
    if (q->unsent == m)
        q->unsent = m->next;
    if (q->last_sent == m)
        q->last_sent = NULL;
    if (m->plen_flags & F_SENT)
        q->in_flight--;
    q->count--;
    q->bytes -= msg_bytes(m);
}

static int do_push(ciot__queue *q, uint64_t id, const char *topic, size_t topic_len,
                   const void *payload, size_t payload_len, int qos, bool retain)
{
    if (!topic || topic_len == 0 || topic_len > CIOT__QUEUE_MAX_TOPIC)
        return CIOT_EINVAL;
    if ((!payload && payload_len) || payload_len > CIOT__QUEUE_MAX_PAYLOAD)
        return CIOT_EINVAL;
    if (qos < 0 || qos > 2)
        return CIOT_EINVAL;
    size_t need = topic_len + payload_len;
    if (need > q->max_bytes)
        return CIOT_EQUEUE_FULL; /* could never fit, whatever is evicted */

    bool fits = q->count < q->max_messages && need <= q->max_bytes - q->bytes;
    if (!fits && q->policy == CIOT__REFUSE)
        return CIOT_EQUEUE_FULL;
    if (!fits && q->policy == CIOT__DROP_OLDEST) {
        /* Only messages not yet sent are evicted: those in flight are with the
         * connection already and may be delivered. When evicting every unsent
         * message would still not make room, the new one is dropped instead. */
        size_t flight_bytes = 0;
        for (const ciot__qmsg *f = q->head; f && f != q->unsent; f = f->next)
            flight_bytes += msg_bytes(f);
        if (q->in_flight >= q->max_messages || need > q->max_bytes - flight_bytes)
            fits = false; /* dropped below */
        else
            fits = true; /* after eviction below */
    }
    if (!fits) {
        q->next_id = id + 1;
        q->drop_cb(id, CIOT__DROPPED_NEWEST, q->user_data);
        return 0;
    }

    /* Allocate before evicting: out of memory must not cost other messages. */
    ciot__qmsg *m = ciot__malloc(ciot__queue_msg_alloc_size(topic_len, payload_len));
    if (!m)
        return CIOT_ENOMEM;
    m->next = NULL;
    m->id = id;
    m->plen_flags = (uint32_t)payload_len | (uint32_t)qos << F_QOS_SHIFT | (retain ? F_RETAIN : 0);
    m->topic_len = (uint16_t)topic_len;
    m->packet_id = 0;
    memcpy(m + 1, topic, topic_len);
    if (payload_len)
        memcpy((char *)(m + 1) + topic_len, payload, payload_len);
    q->next_id = id + 1;

    while (q->count >= q->max_messages || need > q->max_bytes - q->bytes) {
        /* the oldest unsent message; never NULL here (checked above) */
        ciot__qmsg *prev = NULL, *old = q->head;
        while (old != q->unsent) {
            prev = old;
            old = old->next;
        }
        unlink_msg(q, prev, old);
        uint64_t old_id = old->id;
        ciot__free(old);
        q->drop_cb(old_id, CIOT__DROPPED_OLDEST, q->user_data);
    }

    if (q->tail)
        q->tail->next = m;
    else
        q->head = m;
    q->tail = m;
    if (!q->unsent)
        q->unsent = m;
    q->count++;
    q->bytes += need;
    return 0;
}

int ciot__queue_push(ciot__queue *q, uint64_t *out_id, const char *topic, size_t topic_len,
                     const void *payload, size_t payload_len, int qos, bool retain)
{
    if (!q || !out_id)
        return CIOT_EINVAL;
    if (q->next_id == UINT64_MAX)
        return CIOT_ERANGE;
    uint64_t id = q->next_id;
    int rc = do_push(q, id, topic, topic_len, payload, payload_len, qos, retain);
    if (rc == 0)
        *out_id = id;
    return rc;
}

void ciot__queue_set_next_id(ciot__queue *q, uint64_t next_id)
{
    if (q && next_id > q->next_id)
        q->next_id = next_id;
}

const ciot__qmsg *ciot__queue_last(const ciot__queue *q)
{
    return q ? q->tail : NULL;
}

uint64_t ciot__queue_take_id(ciot__queue *q)
{
    if (!q || q->next_id == UINT64_MAX)
        return 0;
    return q->next_id++;
}

int ciot__queue_restore(ciot__queue *q, uint64_t id, const char *topic, size_t topic_len,
                        const void *payload, size_t payload_len, int qos, bool retain)
{
    if (!q)
        return CIOT_EINVAL;
    if (id < q->next_id || id == UINT64_MAX)
        return CIOT_ERANGE;
    return do_push(q, id, topic, topic_len, payload, payload_len, qos, retain);
}

const ciot__qmsg *ciot__queue_peek(const ciot__queue *q)
{
    return q ? q->unsent : NULL;
}

int ciot__queue_mark_sent(ciot__queue *q, uint64_t id, uint16_t packet_id)
{
    if (!q)
        return CIOT_EINVAL;
    ciot__qmsg *m = q->unsent;
    if (!m || m->id != id)
        return CIOT_ESTATE;
    m->plen_flags |= F_SENT;
    m->packet_id = packet_id;
    q->unsent = m->next;
    q->last_sent = m;
    q->in_flight++;
    return 0;
}

int ciot__queue_ack(ciot__queue *q, uint64_t id)
{
    if (!q)
        return CIOT_EINVAL;
    ciot__qmsg *prev = NULL;
    for (ciot__qmsg *m = q->head; m && m->id <= id; prev = m, m = m->next) {
        if (m->id == id) {
            unlink_msg(q, prev, m);
            ciot__free(m);
            return 0;
        }
    }
    return CIOT_ENOTFOUND;
}

int ciot__queue_set_packet_id(ciot__queue *q, uint64_t id, uint16_t packet_id)
{
    if (!q || !q->last_sent || q->last_sent->id != id)
        return CIOT_ENOTFOUND;
    q->last_sent->packet_id = packet_id;
    return 0;
}

int ciot__queue_unmark(ciot__queue *q, uint64_t id)
{
    if (!q)
        return CIOT_EINVAL;
    ciot__qmsg *before = NULL, *last = NULL;
    for (ciot__qmsg *m = q->head; m && m != q->unsent; m = m->next) {
        before = last;
        last = m;
    }
    if (!last || last->id != id)
        return CIOT_ESTATE;
    last->plen_flags &= ~F_SENT;
    last->packet_id = 0;
    q->unsent = last;
    q->last_sent = before;
    q->in_flight--;
    return 0;
}

const ciot__qmsg *ciot__queue_find_in_flight(const ciot__queue *q, uint16_t packet_id)
{
    if (!q)
        return NULL;
    for (const ciot__qmsg *m = q->head; m && m != q->unsent; m = m->next)
        if (m->packet_id == packet_id)
            return m;
    return NULL;
}

size_t ciot__queue_requeue(ciot__queue *q)
{
    if (!q)
        return 0;
    size_t n = q->in_flight;
    for (ciot__qmsg *m = q->head; m && m != q->unsent; m = m->next) {
        m->plen_flags &= ~F_SENT;
        m->packet_id = 0;
    }
    q->unsent = q->head;
    q->last_sent = NULL;
    q->in_flight = 0;
    return n;
}

void ciot__queue_clear(ciot__queue *q)
{
    if (!q)
        return;
    while (q->head) {
        ciot__qmsg *m = q->head;
        unlink_msg(q, NULL, m);
        uint64_t id = m->id;
        ciot__free(m);
        q->drop_cb(id, CIOT__DROPPED_CLEARED, q->user_data);
    }
}

size_t ciot__queue_count(const ciot__queue *q) { return q ? q->count : 0; }
size_t ciot__queue_bytes(const ciot__queue *q) { return q ? q->bytes : 0; }
size_t ciot__queue_in_flight(const ciot__queue *q) { return q ? q->in_flight : 0; }
uint64_t ciot__queue_next_id(const ciot__queue *q) { return q ? q->next_id : 0; }
const ciot__qmsg *ciot__queue_first(const ciot__queue *q) { return q ? q->head : NULL; }
