/*
 * ciot_client: one libmosquitto session, driven by the caller's loop or by a
 * thread of its own.
 *
 * Threads. One thread drives the client (the caller of ciot_client_process()
 * or the client's thread); only that thread calls into libmosquitto's loop
 * and hands messages to it, and every libmosquitto callback runs there. Other
 * threads only touch the queue and the subscription list under c->lock and
 * wake the driver through an eventfd. c->lock is never held while calling
 * libmosquitto or a user callback, so callbacks may publish and subscribe.
 *
 * Delivery. Every published message goes into the queue (lib/client/queue.c)
 * and stays there until it is acknowledged: QoS 1 on PUBACK, QoS 0 once
 * libmosquitto has taken it. At most CIOT_OPT_MAX_INFLIGHT QoS 1 messages
 * are handed to libmosquitto at a time; it keeps those across a reconnect and
 * sends them again itself, so the client never hands a message over twice.
 *
 * The caller's loop watches one descriptor, an epoll set holding the MQTT
 * socket (which changes on reconnect) and the eventfd, so that descriptor
 * stays the same for the client's whole life.
 */
#include "client/config_internal.h"
#include "client/journal.h"
#include "client/service.h"
#include "client/queue.h"
#include "client/tls.h"
#include "core/backoff.h"

#include <cloudiot/client.h>
#include <cloudiot/topic.h>

#include <errno.h>
#include <fcntl.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum state {
    ST_IDLE,        /* not connected, no attempt planned */
    ST_CONNECTING,  /* TCP/TLS/CONNACK under way, until c->deadline */
    ST_CONNECTED,   /* CONNACK accepted */
    ST_WAITING,     /* next attempt at c->deadline (backoff) */
    ST_DRAINING,    /* ciot_client_disconnect(): waiting for acks until c->deadline */
};

enum filt_state { F_NEW, F_PENDING, F_ACTIVE, F_REFUSED, F_UNSUB_PENDING };

/* One filter as the broker knows it; several handlers may share it. */
struct filt {
    struct filt *next;
    char *filter;
    size_t len;
    int qos;
    int refs; /* handlers using it; 0: to be unsubscribed */
    enum filt_state state;
    int mid;
    uint64_t deadline;
};

/* One handler on a filter: the value stored in the topic set. */
struct sub {
    struct sub *next;
    struct filt *f;
    ciot_message_fn handler;
    void *user_data;
    bool removed;
};

struct ciot_event {
    int type;
    int error;
    uint64_t id;
    bool session_present;
    int qos;
    bool retain;
    const char *topic;
    size_t topic_len;
    const void *payload;
    size_t payload_len;
    char *owned; /* a copy the event owns (a SUBSCRIBED filter), freed after delivery */
    char text[200];
};

struct ciot_client {
    pthread_mutex_t lock;
    const ciot__backend *backend;
    char *thing;             /* CIOT_OPT_THING_NAME or the client id */
    size_t thing_len;
    char *telemetry_topic;   /* the template in use */
    int64_t request_timeout_ms;
    char *alpn, *sni;        /* TLS settings in use, for the tests */
    ciot__service *services; /* under lock */
    struct ciot__commands *commands;
    void *be_state;          /* the backend's own (backend->open) */
    char *username;          /* CIOT_OPT_USERNAME, sent again with renewed credentials */
    uint64_t renew_at;       /* reconnect with fresh credentials from then on (UINT64_MAX: never) */
    bool renewing;           /* that reconnect is under way: nothing new is handed over */
    pthread_cond_t cond;
    struct mosquitto *mosq;
    ciot__tls tls;
    bool use_tls;

    /* settings */
    char *host;
    int port;
    int keepalive;
    bool reconnect;
    int64_t connect_timeout_ms, op_timeout_ms, disconnect_timeout_ms, sync_ms;
    size_t max_inflight;
    int sync_policy;

    /* state (under lock where other threads read it) */
    enum state state;
    atomic_bool connected;
    bool connect_started; /* mosquitto_connect_async() done once */
    bool user_down;       /* the user asked for the session to end */
    bool closing;         /* ciot_client_free() under way: nothing may start */
    bool disconnect_sent; /* DISCONNECT handed to libmosquitto while draining */
    bool abort_attempt;   /* the driver must end the attempt under way */
    uint64_t deadline;
    int connack_rc;       /* last CONNACK refusal, 0 if none */
    int drain_rc;         /* result of the last ciot_client_disconnect() */
    ciot__backoff backoff;
    ciot__ratelimit drain;
    uint64_t drain_rate;
    size_t drain_left;    /* messages still paced by the drain rate after a reconnect */

    ciot__queue *queue;
    ciot__journal *journal;
    uint64_t last_flush;
    uint64_t *replay_drops; /* ids dropped while the journal was being replayed */
    int replay_rc;
    size_t nreplay_drops, capreplay_drops;

    /* QoS 0 packets libmosquitto took but has not written yet, in order: their
     * packet ids come from the same counter as QoS 1 ones, so a write
     * notification must not be mistaken for a PUBACK after the ids wrap. */
    uint16_t *qos0_mids;
    size_t qos0_head, qos0_count, qos0_cap;
    bool in_qos0_publish;
    int qos0_written; /* mid written during the current QoS 0 mosquitto_publish(), or -1 */

    ciot_topicset *topics;
    struct filt *filts;
    struct sub *subs;
    struct sub *graveyard; /* unsubscribed handlers, freed when no dispatch runs */
    bool filters_dirty;

    /* events produced under the lock, delivered by the driver without it */
    struct ciot_event *events;
    size_t nevents, capevents;

    ciot_event_fn cb;
    void *cb_ud;
    int cb_depth;
    pthread_t cb_thread;
    int user_rc;

    /* driving */
    int epfd, evfd;
    int sock;               /* our duplicate of the socket, in the epoll set, or -1 */
    int sock_src;           /* libmosquitto's descriptor it duplicates */
    bool sock_dup;          /* sock is a duplicate (not libmosquitto's own: no dup was possible) */
    bool sock_out;          /* EPOLLOUT registered */
    unsigned attempt_gen;   /* connection attempts made; a new one means a new socket */
    unsigned sock_gen;      /* the attempt whose socket is registered */
    int sock_error;         /* SO_ERROR seen on the current attempt's socket */
    atomic_bool wake_pending;
    pthread_t driver;     /* the thread that drives (under lock) */
    bool have_driver;
    pthread_t thread;
    atomic_bool thread_running;
    atomic_bool thread_stop;

    char topic_buf[512]; /* NUL-terminated topic for mosquitto_publish */
    char mosq_log[256];  /* last error libmosquitto logged (TLS causes) */
    char errmsg[512];
};

uint64_t ciot__now_ms(void);
static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

static void lib_init(void)
{
    mosquitto_lib_init();
}

static bool on_driver(const ciot_client *c)
{
    return c->have_driver && pthread_equal(c->driver, pthread_self());
}

static bool in_own_callback(const ciot_client *c)
{
    return c->cb_depth > 0 && pthread_equal(c->cb_thread, pthread_self());
}

static void set_err(ciot_client *c, const char *fmt, ...) CIOT__PRINTF(2, 3);
static void set_err(ciot_client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
    va_end(ap);
}

/* ---- events ---- */

/* Bounded copy of diagnostic text; a long text is cut. */
static void copy_text(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Under c->lock. Events are small; when memory runs out the event is lost
 * but the condition is still logged. */
static struct ciot_event *push_event(ciot_client *c, int type)
{
    if (c->nevents == c->capevents) {
        size_t cap = c->capevents ? c->capevents * 2 : 16;
        struct ciot_event *e = ciot__realloc(c->events, cap * sizeof *e);
        if (!e) {
            ciot__log(CIOT_LOG_ERROR, "client: out of memory for an event of type %d", type);
            return NULL;
        }
        c->events = e;
        c->capevents = cap;
    }
    struct ciot_event *ev = &c->events[c->nevents++];
    /* every field but the text, which only needs its first byte */
    memset(ev, 0, offsetof(struct ciot_event, text));
    ev->text[0] = '\0';
    ev->type = type;
    return ev;
}

static void push_error(ciot_client *c, int err, const char *fmt, ...) CIOT__PRINTF(3, 4);
static void push_error(ciot_client *c, int err, const char *fmt, ...)
{
    struct ciot_event *ev = push_event(c, CIOT_EVENT_ERROR);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
    va_end(ap);
    ciot__log(CIOT_LOG_WARN, "client: %s", c->errmsg);
    if (ev) {
        ev->error = err;
        copy_text(ev->text, sizeof ev->text, c->errmsg);
    }
}

static int call_user(ciot_client *c, int (*fn)(ciot_client *, const ciot_event *, void *),
                     const ciot_event *ev, void *ud)
{
    c->cb_depth++;
    c->cb_thread = pthread_self();
    int rc = fn(c, ev, ud);
    c->cb_depth--;
    if (rc != 0 && c->user_rc == 0)
        c->user_rc = CIOT_EUSER;
    return rc;
}

/* Hands an event to every service; driver thread, lock not held. Services
 * are not detached while this runs (not from callbacks: see service.h). */
static void notify_services(ciot_client *c, const ciot_event *ev)
{
    pthread_mutex_lock(&c->lock);
    ciot__service *s = c->services;
    pthread_mutex_unlock(&c->lock);
    while (s) {
        pthread_mutex_lock(&c->lock);
        ciot__service *next = s->next_;
        pthread_mutex_unlock(&c->lock);
        if (s->on_event)
            s->on_event(c, ev, s->ud);
        s = next;
    }
}

/* Runs the timers of services that are due; driver thread, lock not held. */
static void run_service_timers(ciot_client *c)
{
    for (;;) {
        uint64_t now = now_ms();
        pthread_mutex_lock(&c->lock);
        ciot__service *s = c->services;
        while (s && s->deadline_ > now)
            s = s->next_;
        if (s)
            s->deadline_ = UINT64_MAX; /* once per setting */
        pthread_mutex_unlock(&c->lock);
        if (!s)
            return;
        if (s->on_timer)
            s->on_timer(c, now, s->ud);
    }
}

/* Delivers queued events; driver thread, lock not held on entry. */
static void deliver_events(ciot_client *c)
{
    for (;;) {
        pthread_mutex_lock(&c->lock);
        if (c->nevents == 0) {
            pthread_mutex_unlock(&c->lock);
            return;
        }
        /* Take the whole batch so that callbacks may add new events. */
        struct ciot_event *batch = c->events;
        size_t n = c->nevents;
        c->events = NULL;
        c->nevents = c->capevents = 0;
        ciot_event_fn cb = c->cb;
        void *ud = c->cb_ud;
        pthread_mutex_unlock(&c->lock);
        for (size_t i = 0; i < n; i++) {
            notify_services(c, &batch[i]);
            if (cb)
                call_user(c, cb, &batch[i], ud);
            ciot__free(batch[i].owned);
        }
        ciot__free(batch);
    }
}

static void on_drop(uint64_t id, ciot__drop_reason reason, void *user_data)
{
    ciot_client *c = user_data;
    struct ciot_event *ev = push_event(c, CIOT_EVENT_MESSAGE_DROPPED);
    if (ev) {
        ev->id = id;
        ev->error = reason == CIOT__DROPPED_CLEARED ? CIOT_ESTATE : CIOT_EQUEUE_FULL;
        snprintf(ev->text, sizeof ev->text, "%s",
                 reason == CIOT__DROPPED_OLDEST   ? "queue full: the oldest waiting message was dropped"
                 : reason == CIOT__DROPPED_NEWEST ? "queue full: the new message was dropped"
                                                  : "the client was freed before the message was sent");
    }
    if (c->journal && reason != CIOT__DROPPED_CLEARED &&
        ciot__journal_ack(c->journal, id) == CIOT_ESTATE) {
        /* Replay under way (the journal opens after it): acked once it is open. */
        if (c->nreplay_drops == c->capreplay_drops) {
            size_t cap = c->capreplay_drops ? c->capreplay_drops * 2 : 64;
            uint64_t *v = ciot__realloc(c->replay_drops, cap * sizeof *v);
            if (!v)
                return; /* it comes back on the next start, and is dropped again */
            c->replay_drops = v;
            c->capreplay_drops = cap;
        }
        c->replay_drops[c->nreplay_drops++] = id;
    }
}

/* ---- QoS 0 write notifications (see qos0_mids) ---- */

static void qos0_push(ciot_client *c, uint16_t mid)
{
    if (c->qos0_count == c->qos0_cap) {
        size_t cap = c->qos0_cap ? c->qos0_cap * 2 : 64;
        uint16_t *v = ciot__malloc(cap * sizeof *v);
        if (!v)
            return; /* only the rare wrap-around guard is lost */
        for (size_t i = 0; i < c->qos0_count; i++)
            v[i] = c->qos0_mids[(c->qos0_head + i) % c->qos0_cap];
        ciot__free(c->qos0_mids);
        c->qos0_mids = v;
        c->qos0_cap = cap;
        c->qos0_head = 0;
    }
    c->qos0_mids[(c->qos0_head + c->qos0_count++) % c->qos0_cap] = mid;
}

/* true when mid is the next QoS 0 packet libmosquitto had to write */
static bool qos0_pop(ciot_client *c, uint16_t mid)
{
    if (c->qos0_count == 0 || c->qos0_mids[c->qos0_head] != mid)
        return false;
    c->qos0_head = (c->qos0_head + 1) % c->qos0_cap;
    c->qos0_count--;
    return true;
}

/* ---- the epoll set ---- */

static void wake(ciot_client *c)
{
    if (!atomic_exchange(&c->wake_pending, true)) {
        uint64_t one = 1;
        ssize_t n = write(c->evfd, &one, sizeof one);
        (void)n; /* a full counter already wakes the driver */
    }
}

/*
 * The epoll set never holds libmosquitto's own descriptor but a duplicate of
 * it that belongs to us. libmosquitto closes its socket whenever it sees the
 * connection end (inside mosquitto_loop_read() and friends), and closing a
 * descriptor takes the socket out of an epoll set only when no other
 * descriptor anywhere still refers to it. Often one does: a child process
 * inherited it (fork() without exec, or an exec before close-on-exec was
 * set). The entry then stayed in the set under the old number, could not be
 * removed any more (EPOLL_CTL_DEL needs an open descriptor), reported the
 * dead connection's EPOLLIN|EPOLLHUP for ever, and, as the next attempt's
 * socket got the same number, was taken for it: each new connection was
 * shut at once, in a loop. Our duplicate is removed from the set and closed
 * as soon as libmosquitto's socket is no longer the one watched.
 */
static void unwatch_socket(ciot_client *c)
{
    if (c->sock >= 0) {
        epoll_ctl(c->epfd, EPOLL_CTL_DEL, c->sock, NULL);
        if (c->sock_dup)
            close(c->sock);
    }
    c->sock = -1;
    c->sock_src = -1;
    c->sock_dup = false;
}

static void watch_socket(ciot_client *c)
{
    if (c->state == ST_IDLE || c->state == ST_WAITING) {
        /* Between sessions a socket libmosquitto still holds (shut, or
         * refused) would only wake the loop with hang-ups. */
        unwatch_socket(c);
        return;
    }
    int fd = mosquitto_socket(c->mosq);
    bool out = mosquitto_want_write(c->mosq);
    /* libmosquitto's descriptor number may come back for the next
     * attempt's socket: a new attempt is always a new socket. */
    if (fd != c->sock_src || c->sock_gen != c->attempt_gen) {
        unwatch_socket(c);
        c->sock_gen = c->attempt_gen;
        if (fd < 0)
            return;
        /* libmosquitto makes its sockets without close-on-exec: a program
         * the application starts would keep the connection open. */
        int fl = fcntl(fd, F_GETFD);
        if (fl >= 0 && !(fl & FD_CLOEXEC))
            (void)fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
        int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        c->sock_dup = d >= 0;
        if (d < 0) {
            ciot__log(CIOT_LOG_WARN, "client: cannot duplicate the socket (%s): watching it "
                                     "directly", strerror(errno));
            d = fd;
        }
        struct epoll_event e = {.events = EPOLLIN | (out ? EPOLLOUT : 0u), .data.fd = d};
        if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, d, &e) != 0 && errno == EEXIST)
            epoll_ctl(c->epfd, EPOLL_CTL_MOD, d, &e);
        c->sock = d;
        c->sock_src = fd;
        c->sock_out = out;
        return;
    }
    if (fd >= 0 && out != c->sock_out) {
        struct epoll_event e = {.events = EPOLLIN | (out ? EPOLLOUT : 0u), .data.fd = c->sock};
        epoll_ctl(c->epfd, EPOLL_CTL_MOD, c->sock, &e);
        c->sock_out = out;
    }
}

/* ---- connection state machine (driver thread) ---- */

static void schedule_retry(ciot_client *c)
{
    if (c->reconnect && !c->user_down) {
        uint64_t delay = ciot__backoff_next_delay(&c->backoff);
        c->state = ST_WAITING;
        c->deadline = now_ms() + delay;
        ciot__log(CIOT_LOG_INFO, "client: next connection attempt in %llu ms",
                  (unsigned long long)delay);
    } else {
        c->state = ST_IDLE;
    }
}

static const char *connack_text(int rc, int *err)
{
    *err = CIOT_ECONNREFUSED;
    switch (rc) {
    case 1:
        return "the broker refused the protocol version";
    case 2:
        return "the broker refused the client id";
    case 3:
        return "the broker is unavailable";
    case 4:
    case 134: /* MQTT 5: bad user name or password */
        *err = CIOT_EAUTH;
        return "not authorized: bad user name or password";
    case 5:
    case 135: /* MQTT 5: not authorized */
        *err = CIOT_EAUTH;
        return "not authorized";
    default:
        return "the broker refused the connection";
    }
}

/* The connection went down or an attempt failed; lock held. */
static void went_down(ciot_client *c, int mosq_rc, int os_errno)
{
    enum state was = c->state;
    if (mosq_rc == MOSQ_ERR_ERRNO && !os_errno)
        os_errno = c->sock_error;
    bool was_connected = atomic_exchange(&c->connected, false);
    char why[256];
    int err = CIOT_ECONNLOST;

    if (c->connack_rc) {
        const char *t = connack_text(c->connack_rc, &err);
        snprintf(why, sizeof why, "%s (CONNACK code %d)", t, c->connack_rc);
    } else if (mosq_rc == MOSQ_ERR_ERRNO &&
               (os_errno == ECONNREFUSED || os_errno == EHOSTUNREACH || os_errno == ENETUNREACH ||
                os_errno == ETIMEDOUT)) {
        /* the TCP connection itself failed: not a TLS matter */
        err = os_errno == ETIMEDOUT ? CIOT_ETIMEDOUT : CIOT_ECONNREFUSED;
        snprintf(why, sizeof why, "%s", strerror(os_errno));
    } else if (c->use_tls && was == ST_CONNECTING && mosq_rc != MOSQ_ERR_KEEPALIVE) {
        /* Before CONNACK on a TLS connection, an ended connection is the TLS
         * layer refusing: with TLS 1.3 the server's verdict on our certificate
         * arrives after our side of the handshake is done. */
        char detail[256];
        snprintf(detail, sizeof detail, "%s",
                 c->mosq_log[0]                               ? c->mosq_log
                 : mosq_rc == MOSQ_ERR_ERRNO && os_errno     ? strerror(os_errno)
                                                              : mosquitto_strerror(mosq_rc));
        err = CIOT_ETLS;
        ciot__tls_describe_failure(&c->tls, detail, why, sizeof why);
    } else if (mosq_rc == MOSQ_ERR_KEEPALIVE) {
        snprintf(why, sizeof why, "no answer from the broker within the keep-alive");
    } else if (mosq_rc == MOSQ_ERR_ERRNO && os_errno) {
        err = os_errno == ECONNREFUSED ? CIOT_ECONNREFUSED : CIOT_ECONNLOST;
        snprintf(why, sizeof why, "%s", strerror(os_errno));
    } else if (mosq_rc == 0 && was == ST_DRAINING) {
        err = 0;
        snprintf(why, sizeof why, "disconnected on request");
    } else if (mosq_rc >= 0x80 && mosq_rc <= 0xff) {
        /* MQTT 5: the broker's DISCONNECT carries a reason code */
        snprintf(why, sizeof why, "the broker closed the connection: %s (reason 0x%02x)",
                 mosquitto_reason_string(mosq_rc), (unsigned)mosq_rc);
    } else {
        snprintf(why, sizeof why, "%s", mosquitto_strerror(mosq_rc ? mosq_rc : MOSQ_ERR_CONN_LOST));
    }
    c->connack_rc = 0;
    c->mosq_log[0] = '\0';
    bool renewal = c->renewing && was == ST_CONNECTED && mosq_rc == MOSQ_ERR_SUCCESS;
    if (renewal) {
        err = 0;
        snprintf(why, sizeof why, "reconnecting with renewed credentials");
    }
    c->renewing = false;

    if (was_connected) {
        struct ciot_event *ev = push_event(c, CIOT_EVENT_DISCONNECTED);
        if (ev) {
            ev->error = err;
            copy_text(ev->text, sizeof ev->text, why);
        }
        if (err)
            snprintf(c->errmsg, sizeof c->errmsg, "connection lost: %s", why);
        ciot__backoff_disconnected(&c->backoff, now_ms());
    } else if (was == ST_CONNECTING) {
        push_error(c, err, "connect to %s:%d failed: %s", c->host, c->port, why);
    }
    /* A (UN)SUBSCRIBE that got no answer is sent again on the next session. */
    for (struct filt *f = c->filts; f; f = f->next) {
        if (f->state == F_PENDING)
            f->state = F_NEW;
        else if (f->state == F_UNSUB_PENDING)
            f->state = f->refs ? F_NEW : F_ACTIVE;
    }
    c->filters_dirty = true;
    /* libmosquitto drops unwritten QoS 0 packets on reconnect */
    c->qos0_head = c->qos0_count = 0;
    c->disconnect_sent = false;
    if (was == ST_DRAINING || c->user_down) {
        c->state = ST_IDLE;
    } else if (renewal) {
        c->state = ST_WAITING; /* at once: not a failure, no backoff */
        c->deadline = now_ms();
    } else {
        schedule_retry(c);
    }
    pthread_cond_broadcast(&c->cond);
}

static void cb_log(struct mosquitto *m, void *obj, int level, const char *str);

/* Starts one connection attempt; lock held. */
static void start_attempt(ciot_client *c)
{
    c->tls.verify_error = 0;
    c->mosq_log[0] = '\0';
    c->connack_rc = 0;
    c->sock_error = 0;
    c->state = ST_CONNECTING;
    c->deadline = now_ms() + (uint64_t)c->connect_timeout_ms;
    c->attempt_gen++;
    /* libmosquitto formats a message (malloc + vsnprintf) for every packet
     * when a log callback is set: listen only while connecting, where its
     * error lines name the TLS failure, or when debug logging is on. */
    mosquitto_log_callback_set(c->mosq, cb_log);
    c->renew_at = UINT64_MAX;
    if (c->backend->credentials) {
        /* Fresh credentials for every attempt (a SAS token signed now). */
        char pw[4096], why[160] = ""; /* the longest token: ids of 128 bytes, each %XX */
        int crc = c->backend->credentials(c->be_state, pw, sizeof pw, now_ms(), &c->renew_at, why,
                                          sizeof why);
        if (crc == 0 && mosquitto_username_pw_set(c->mosq, c->username ? c->username : "", pw) !=
                            MOSQ_ERR_SUCCESS) {
            crc = CIOT_ENOMEM;
            snprintf(why, sizeof why, "libmosquitto refused the credentials");
        }
        ciot__wipe(pw, sizeof pw);
        if (crc < 0) {
            push_error(c, crc, "connect to %s:%d: no credentials: %s", c->host, c->port, why);
            c->state = ST_CONNECTING; /* so that the retry is planned as for a failed attempt */
            schedule_retry(c);
            return;
        }
    }
    bool first = !c->connect_started;
    c->connect_started = true;
    /* libmosquitto resolves the host name here, synchronously: other threads
     * must not wait for DNS to publish, so the lock is let go meanwhile (the
     * state says CONNECTING; only this thread calls into libmosquitto). The
     * caller holds the lock exactly once. */
    pthread_mutex_unlock(&c->lock);
    errno = 0;
    int rc = first ? mosquitto_connect_async(c->mosq, c->host, c->port, c->keepalive)
                   : mosquitto_reconnect_async(c->mosq);
    int e = errno;
    pthread_mutex_lock(&c->lock);
    if (rc != MOSQ_ERR_SUCCESS) {
        went_down(c, rc, e);
    } else if (mosquitto_socket(c->mosq) >= 0) {
        /* A refused TCP connect is often known at once: the first write (the
         * CONNECT, or a TLS ClientHello that libmosquitto then retries
         * quietly) failed with it. Kept to name the cause when the socket
         * hangs up. */
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(mosquitto_socket(c->mosq), SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr)
            c->sock_error = soerr;
        else if (e == ECONNREFUSED || e == EHOSTUNREACH || e == ENETUNREACH || e == ETIMEDOUT)
            c->sock_error = e;
    }
    watch_socket(c);
}

/* ---- libmosquitto callbacks (driver thread, inside its loop calls) ---- */

static void cb_connect(struct mosquitto *m, void *obj, int rc, int flags)
{
    (void)m;
    ciot_client *c = obj;
    pthread_mutex_lock(&c->lock);
    if (rc != 0) {
        c->connack_rc = rc; /* the disconnect callback that follows reports it */
        pthread_mutex_unlock(&c->lock);
        return;
    }
    if (c->user_down || c->closing || c->state != ST_CONNECTING) {
        /* The user ended the attempt while the CONNACK was on its way. */
        mosquitto_disconnect(m);
        pthread_mutex_unlock(&c->lock);
        return;
    }
    c->state = ST_CONNECTED;
    atomic_store(&c->connected, true);
    /* After a reconnect the backlog drains at the configured rate. */
    c->drain_left = c->drain_rate ? ciot__queue_count(c->queue) - ciot__queue_in_flight(c->queue) : 0;
    if (c->drain_rate)
        (void)ciot__ratelimit_init(&c->drain, c->drain_rate, 1, now_ms());
    if (!ciot__log_enabled(CIOT_LOG_DEBUG))
        mosquitto_log_callback_set(c->mosq, NULL);
    ciot__backoff_connected(&c->backoff, now_ms());
    bool present = (flags & 1) != 0;
    for (struct filt *f = c->filts; f; f = f->next) {
        /* Without a session every filter is sent again; with one, only those
         * whose SUBACK never came. A filter the broker refused is not: AWS
         * and the emulator close the connection on a refused SUBSCRIBE, so
         * sending it on every reconnect would loop. Subscribing it again
         * (ciot_client_subscribe()) retries it. */
        if (f->refs > 0 && f->state != F_REFUSED && (!present || f->state == F_PENDING))
            f->state = F_NEW;
    }
    c->filters_dirty = true;
    struct ciot_event *ev = push_event(c, CIOT_EVENT_CONNECTED);
    if (ev) {
        ev->session_present = present;
        snprintf(ev->text, sizeof ev->text, "connected to %s:%d%s", c->host, c->port,
                 c->use_tls && c->tls.resumed ? " (TLS session resumed)" : "");
    }
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static void cb_disconnect(struct mosquitto *m, void *obj, int rc)
{
    (void)m;
    ciot_client *c = obj;
    int e = errno;
    pthread_mutex_lock(&c->lock);
    if (c->state != ST_IDLE && c->state != ST_WAITING)
        went_down(c, rc, e);
    pthread_mutex_unlock(&c->lock);
}

/* PUBACK of MQTT 5 (reason code) or 3.1.1 (always 0), and QoS 0 writes. A
 * reason of 0x80 or more means the broker took the message and refused it:
 * it is done with (never sent again) but it was not delivered, so it is
 * reported as dropped, not acknowledged. */
static void cb_publish(struct mosquitto *m, void *obj, int mid, int reason,
                       const mosquitto_property *props)
{
    (void)m;
    (void)props;
    ciot_client *c = obj;
    pthread_mutex_lock(&c->lock);
    /* A QoS 0 packet written (inside the mosquitto_publish() that took it, or
     * later, in order): not a PUBACK, whatever QoS 1 message has that id. */
    if (qos0_pop(c, (uint16_t)mid)) {
        pthread_mutex_unlock(&c->lock);
        return;
    }
    if (c->in_qos0_publish) { /* the packet being published, written at once */
        c->qos0_written = mid;
        pthread_mutex_unlock(&c->lock);
        return;
    }
    const ciot__qmsg *q = ciot__queue_find_in_flight(c->queue, (uint16_t)mid);
    if (q && ciot__qmsg_qos(q) == 1) {
        uint64_t id = q->id;
        ciot__queue_ack(c->queue, id);
        if (c->journal) {
            int rc = ciot__journal_ack(c->journal, id);
            if (rc != 0 && rc != CIOT_ENOTFOUND)
                push_error(c, rc, "persistence: %s", ciot__journal_errmsg(c->journal));
        }
        struct ciot_event *ev =
            push_event(c, reason >= 0x80 ? CIOT_EVENT_MESSAGE_DROPPED : CIOT_EVENT_PUBLISH_ACKED);
        if (ev) {
            ev->id = id;
            ev->qos = 1;
            if (reason >= 0x80) {
                ev->error = reason == MQTT_RC_NOT_AUTHORIZED ? CIOT_EAUTH : CIOT_EPROTOCOL;
                snprintf(ev->text, sizeof ev->text, "the broker refused the message: %s (0x%02x)",
                         mosquitto_reason_string(reason), (unsigned)reason);
            }
        }
    }
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static struct filt *filt_by_mid(ciot_client *c, int mid, enum filt_state st)
{
    for (struct filt *f = c->filts; f; f = f->next)
        if (f->state == st && f->mid == mid)
            return f;
    return NULL;
}

static void cb_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *granted)
{
    (void)m;
    ciot_client *c = obj;
    pthread_mutex_lock(&c->lock);
    struct filt *f = filt_by_mid(c, mid, F_PENDING);
    if (f) {
        if (n < 1 || granted[0] >= 0x80) {
            f->state = F_REFUSED;
            size_t before = c->nevents;
            push_error(c, CIOT_EAUTH, "the broker refused the subscription to \"%.*s\" (code %d)",
                       (int)(f->len > 128 ? 128 : f->len), f->filter, n < 1 ? -1 : granted[0]);
            if (c->nevents > before) { /* (not when out of memory: no event was added) */
                /* the filter, for the services waiting for it */
                struct ciot_event *ev = &c->events[c->nevents - 1];
                ev->owned = ciot__strndup(f->filter, f->len);
                ev->topic = ev->owned;
                ev->topic_len = ev->owned ? f->len : 0;
            }
        } else {
            f->state = F_ACTIVE;
            struct ciot_event *ev = push_event(c, CIOT_EVENT_SUBSCRIBED);
            if (ev) {
                /* a copy: the filter may be unsubscribed before the event is delivered */
                ev->owned = ciot__strndup(f->filter, f->len);
                ev->topic = ev->owned;
                ev->topic_len = ev->owned ? f->len : 0;
                ev->qos = granted[0];
            }
        }
    }
    pthread_mutex_unlock(&c->lock);
}

static void free_filt(ciot_client *c, struct filt *dead)
{
    for (struct filt **p = &c->filts; *p; p = &(*p)->next) {
        if (*p == dead) {
            *p = dead->next;
            ciot__free(dead->filter);
            ciot__free(dead);
            return;
        }
    }
}

static void cb_unsubscribe(struct mosquitto *m, void *obj, int mid)
{
    (void)m;
    ciot_client *c = obj;
    pthread_mutex_lock(&c->lock);
    struct filt *f = filt_by_mid(c, mid, F_UNSUB_PENDING);
    if (f) {
        if (f->refs > 0) {
            f->state = F_NEW; /* subscribed again meanwhile */
            c->filters_dirty = true;
        } else {
            free_filt(c, f);
        }
    }
    pthread_mutex_unlock(&c->lock);
}

struct collect {
    struct sub **v;
    size_t n, cap;
    struct sub *local[16];
};

static int collect_sub(void *value, void *user_data)
{
    struct collect *k = user_data;
    if (k->n == k->cap) {
        size_t cap = k->cap * 2;
        struct sub **v = ciot__malloc(cap * sizeof *v);
        if (!v)
            return CIOT_ENOMEM;
        memcpy(v, k->v, k->n * sizeof *v);
        if (k->v != k->local)
            ciot__free(k->v);
        k->v = v;
        k->cap = cap;
    }
    k->v[k->n++] = value;
    return 0;
}

static void cb_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
    (void)m;
    ciot_client *c = obj;
    deliver_events(c); /* CONNECTED and SUBSCRIBED come before the first message */

    struct ciot_event ev = {.type = CIOT_EVENT_MESSAGE};
    ev.topic = msg->topic;
    ev.topic_len = strlen(msg->topic);
    ev.payload = msg->payload;
    ev.payload_len = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;
    ev.qos = msg->qos;
    ev.retain = msg->retain;

    struct collect k = {.cap = 16};
    k.v = k.local;
    pthread_mutex_lock(&c->lock);
    int rc = ciot_topicset_match(c->topics, ev.topic, ev.topic_len, collect_sub, &k);
    ciot_event_fn cb = c->cb;
    void *cb_ud = c->cb_ud;
    pthread_mutex_unlock(&c->lock);
    if (rc == CIOT_ENOMEM)
        ciot__log(CIOT_LOG_ERROR, "client: out of memory dispatching a message");

    size_t handled = 0;
    for (size_t i = 0; i < k.n; i++) {
        struct sub *s = k.v[i];
        pthread_mutex_lock(&c->lock);
        bool live = !s->removed;
        pthread_mutex_unlock(&c->lock);
        if (!live)
            continue;
        if (s->handler) {
            call_user(c, s->handler, &ev, s->user_data);
            handled++;
        }
    }
    if (k.v != k.local)
        ciot__free(k.v);
    if (handled == 0 && cb)
        call_user(c, cb, &ev, cb_ud);
}

static void cb_log(struct mosquitto *m, void *obj, int level, const char *str)
{
    (void)m;
    ciot_client *c = obj;
    if (level == MOSQ_LOG_ERR && str) {
        /* "OpenSSL Error[0]: error:0A00045C:SSL routines::tlsv13 alert certificate required" */
        const char *p = strstr(str, "OpenSSL Error");
        if (p) {
            const char *r = strstr(p, "::");
            snprintf(c->mosq_log, sizeof c->mosq_log, "%s", r ? r + 2 : p);
        } else if (!c->mosq_log[0]) {
            snprintf(c->mosq_log, sizeof c->mosq_log, "%s", str);
        }
    }
    ciot__log(level == MOSQ_LOG_ERR ? CIOT_LOG_WARN : CIOT_LOG_DEBUG, "mosquitto: %s", str);
}

/* ---- work done by the driver ---- */

/* Hands waiting messages to libmosquitto while the session, the in-flight
 * limit and the drain rate allow. Driver thread, lock not held. */
/* Return codes with which mosquitto_publish() refused a message before
 * taking it: the broker can never be sent this message as it is. Any other
 * failure of a QoS 1 publish comes after libmosquitto queued the message
 * (a write that failed on a dying connection): it sends it again itself
 * after the reconnect. */
static bool refused_for_good(int rc)
{
    return rc == MOSQ_ERR_INVAL || rc == MOSQ_ERR_PAYLOAD_SIZE || rc == MOSQ_ERR_OVERSIZE_PACKET ||
           rc == MOSQ_ERR_MALFORMED_UTF8 || rc == MOSQ_ERR_QOS_NOT_SUPPORTED ||
           rc == MOSQ_ERR_RETAIN_NOT_SUPPORTED;
}

/* Hands one message to libmosquitto; driver thread, lock not held; returns
 * libmosquitto's code and the packet id. For a QoS 0 message taken, the
 * caller calls qos0_taken() under the lock. */
static int hand_over(ciot_client *c, const char *topic, const void *payload, size_t len, int qos,
                     bool retain, int *mid)
{
    c->in_qos0_publish = qos == 0;
    c->qos0_written = -1;
    int rc = mosquitto_publish(c->mosq, mid, topic, (int)len, payload, qos, retain);
    c->in_qos0_publish = false;
    return rc;
}

/* A QoS 0 packet libmosquitto took: unless it was written at once, its write
 * notification comes later, in order, and must not be taken for a PUBACK.
 * Lock held. */
static void qos0_taken(ciot_client *c, int mid)
{
    if (c->qos0_written != mid)
        qos0_push(c, (uint16_t)mid);
}

/* Reports a message the broker can never take; lock held. */
static void drop_refused(ciot_client *c, uint64_t id, int rc)
{
    ciot__queue_ack(c->queue, id);
    if (c->journal)
        (void)ciot__journal_ack(c->journal, id);
    struct ciot_event *ev = push_event(c, CIOT_EVENT_MESSAGE_DROPPED);
    if (ev) {
        ev->id = id;
        ev->error = CIOT_EPROTOCOL;
        snprintf(ev->text, sizeof ev->text, "refused by libmosquitto: %s", mosquitto_strerror(rc));
    }
}

/* Hands waiting messages to libmosquitto while the session, the in-flight
 * limit and (after a reconnect) the drain rate allow. Driver thread only,
 * lock not held. */
static void pump(ciot_client *c)
{
    for (;;) {
        pthread_mutex_lock(&c->lock);
        const ciot__qmsg *q = ciot__queue_peek(c->queue);
        if (!q || c->state != ST_CONNECTED || c->renewing ||
            ciot__queue_in_flight(c->queue) >= c->max_inflight ||
            (c->drain_left && !ciot__ratelimit_take(&c->drain, now_ms()))) {
            pthread_mutex_unlock(&c->lock);
            return;
        }
        if (c->drain_left)
            c->drain_left--;
        /* In flight from here on: the drop policy never takes it, and only
         * this thread removes it, so q stays valid without the lock. */
        uint64_t id = q->id;
        ciot__queue_mark_sent(c->queue, id, 0);
        pthread_mutex_unlock(&c->lock);

        size_t tlen = ciot__qmsg_topic_len(q);
        char *topic = c->topic_buf;
        if (tlen >= sizeof c->topic_buf && !(topic = ciot__malloc(tlen + 1))) {
            pthread_mutex_lock(&c->lock);
            ciot__queue_unmark(c->queue, id);
            push_error(c, CIOT_ENOMEM, "out of memory sending message %llu", (unsigned long long)id);
            pthread_mutex_unlock(&c->lock);
            return;
        }
        memcpy(topic, ciot__qmsg_topic(q), tlen);
        topic[tlen] = '\0';
        int mid = 0, qos = ciot__qmsg_qos(q);
        int rc = hand_over(c, topic, ciot__qmsg_payload(q), ciot__qmsg_payload_len(q), qos,
                           ciot__qmsg_retain(q), &mid);
        if (topic != c->topic_buf)
            ciot__free(topic);

        pthread_mutex_lock(&c->lock);
        if (refused_for_good(rc)) {
            drop_refused(c, id, rc);
            pthread_mutex_unlock(&c->lock);
            continue;
        }
        if (qos == 1 && rc != MOSQ_ERR_NOMEM) {
            /* libmosquitto has it, whatever the write did: it resends it after
             * a reconnect, and its PUBACK finds it here by packet id. */
            ciot__queue_set_packet_id(c->queue, id, (uint16_t)mid);
            pthread_mutex_unlock(&c->lock);
            if (rc != MOSQ_ERR_SUCCESS)
                return; /* the connection is going down */
            continue;
        }
        if (rc == MOSQ_ERR_SUCCESS) { /* QoS 0: taken */
            qos0_taken(c, mid);
            ciot__queue_ack(c->queue, id);
            struct ciot_event *ev = push_event(c, CIOT_EVENT_PUBLISH_ACKED);
            if (ev)
                ev->id = id;
            pthread_mutex_unlock(&c->lock);
            continue;
        }
        /* Not taken (out of memory, or a QoS 0 write on a dying connection,
         * which libmosquitto discards on reconnect): it goes out again later. */
        ciot__queue_unmark(c->queue, id);
        pthread_mutex_unlock(&c->lock);
        return;
    }
}

/* Sends SUBSCRIBE/UNSUBSCRIBE for filters that need it. Driver, lock not held. */
static void sync_filters(ciot_client *c)
{
    pthread_mutex_lock(&c->lock);
    if (!c->filters_dirty || c->state != ST_CONNECTED) {
        pthread_mutex_unlock(&c->lock);
        return;
    }
    c->filters_dirty = false;
    struct filt *f = c->filts;
    while (f) {
        struct filt *next = f->next;
        int mid = 0, rc = MOSQ_ERR_SUCCESS;
        if (f->refs > 0 && f->state == F_NEW) {
            rc = mosquitto_subscribe(c->mosq, &mid, f->filter, f->qos);
            if (rc == MOSQ_ERR_SUCCESS) {
                f->state = F_PENDING;
                f->mid = mid;
                f->deadline = now_ms() + (uint64_t)c->op_timeout_ms;
            }
        } else if (f->refs == 0 && f->state != F_UNSUB_PENDING) {
            if (f->state == F_NEW || f->state == F_REFUSED) {
                free_filt(c, f); /* the broker never had it */
            } else {
                rc = mosquitto_unsubscribe(c->mosq, &mid, f->filter);
                if (rc == MOSQ_ERR_SUCCESS) {
                    f->state = F_UNSUB_PENDING;
                    f->mid = mid;
                    f->deadline = now_ms() + (uint64_t)c->op_timeout_ms;
                }
            }
        }
        if (rc != MOSQ_ERR_SUCCESS) {
            c->filters_dirty = true; /* try again on the next pass */
            if (rc != MOSQ_ERR_NO_CONN)
                push_error(c, CIOT_EPROTOCOL, "cannot send (UN)SUBSCRIBE for \"%s\": %s",
                           f->filter, mosquitto_strerror(rc));
            break;
        }
        f = next;
    }
    pthread_mutex_unlock(&c->lock);
}

/* Ends the current attempt or session on our side: libmosquitto sees the
 * shut socket (and closes it on the next reconnect); we stop watching it so
 * that a dead socket cannot keep the loop awake. Driver thread, lock held. */
static void end_attempt(ciot_client *c)
{
    int fd = mosquitto_socket(c->mosq);
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
    unwatch_socket(c);
}

static void run_timers(ciot_client *c)
{
    uint64_t now = now_ms();
    pthread_mutex_lock(&c->lock);
    if (c->abort_attempt) { /* ciot_client_disconnect() during an attempt, from another thread */
        c->abort_attempt = false;
        if (c->state == ST_IDLE)
            end_attempt(c);
    }
    if (c->state == ST_WAITING && now >= c->deadline) {
        start_attempt(c);
    } else if (c->state == ST_CONNECTING && now >= c->deadline) {
        push_error(c, CIOT_ETIMEDOUT, "connect to %s:%d timed out after %lld ms", c->host, c->port,
                   (long long)c->connect_timeout_ms);
        end_attempt(c);
        atomic_store(&c->connected, false);
        schedule_retry(c);
    } else if (c->state == ST_DRAINING && !c->disconnect_sent &&
               (ciot__queue_in_flight(c->queue) == 0 || now >= c->deadline)) {
        c->drain_rc = ciot__queue_in_flight(c->queue) == 0 ? 0 : CIOT_ETIMEDOUT;
        c->disconnect_sent = true;
        c->deadline = now + 1000; /* for the DISCONNECT to be written */
        mosquitto_disconnect(c->mosq); /* cb_disconnect reports the end */
    } else if (c->state == ST_DRAINING && c->disconnect_sent && now >= c->deadline) {
        /* The DISCONNECT could not be written: close anyway. */
        end_attempt(c);
        went_down(c, MOSQ_ERR_SUCCESS, 0);
    } else if (c->state == ST_CONNECTED && now >= c->renew_at) {
        /* Credentials about to expire: hand nothing new over (pump) and,
         * once every QoS 1 message is acknowledged, end the session
         * cleanly; went_down() reconnects at once, start_attempt() signs
         * new credentials. The queue keeps its order meanwhile. */
        if (!c->renewing)
            ciot__log(CIOT_LOG_INFO, "client: credentials due for renewal: reconnecting once "
                                     "nothing is in flight");
        c->renewing = true;
        if (ciot__queue_in_flight(c->queue) == 0 && c->qos0_count == 0) {
            c->renew_at = UINT64_MAX;
            mosquitto_disconnect(c->mosq); /* cb_disconnect reports the end */
        }
    }
    for (struct filt *f = c->filts; f; f = f->next) {
        if ((f->state == F_PENDING || f->state == F_UNSUB_PENDING) && now >= f->deadline) {
            push_error(c, CIOT_ETIMEDOUT, "no %s from the broker for \"%s\" within %lld ms",
                       f->state == F_PENDING ? "SUBACK" : "UNSUBACK", f->filter,
                       (long long)c->op_timeout_ms);
            f->deadline = UINT64_MAX; /* reported once; sent again on the next session */
        }
    }
    if (c->journal && c->sync_policy == CIOT_SYNC_INTERVAL &&
        now >= c->last_flush + (uint64_t)c->sync_ms) {
        c->last_flush = now;
        if (ciot__journal_flush(c->journal) != 0)
            push_error(c, CIOT_EIO, "persistence: %s", ciot__journal_errmsg(c->journal));
    }
    pthread_mutex_unlock(&c->lock);
}

static void bury_subs(ciot_client *c)
{
    pthread_mutex_lock(&c->lock);
    struct sub *s = c->graveyard;
    c->graveyard = NULL;
    pthread_mutex_unlock(&c->lock);
    while (s) {
        struct sub *next = s->next;
        ciot__free(s);
        s = next;
    }
}

static int process(ciot_client *c)
{
    struct epoll_event evs[4];
    bool readable = false, writable = false, hup = false;
    int n = epoll_wait(c->epfd, evs, 4, 0);
    int msock = mosquitto_socket(c->mosq);
    for (int i = 0; i < n; i++) {
        if (evs[i].data.fd == c->evfd) {
            uint64_t v;
            ssize_t r = read(c->evfd, &v, sizeof v);
            (void)r;
            atomic_store(&c->wake_pending, false);
        } else if (evs[i].data.fd == c->sock && msock >= 0) {
            readable |= (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0;
            writable |= (evs[i].events & EPOLLOUT) != 0;
            hup |= (evs[i].events & (EPOLLHUP | EPOLLERR)) != 0;
        }
    }
    int rc, last_rc = MOSQ_ERR_SUCCESS, last_errno = 0;
    if (readable && msock >= 0) {
        errno = 0;
        rc = mosquitto_loop_read(c->mosq, 1);
        if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN) {
            last_rc = rc;
            last_errno = errno;
            ciot__log(CIOT_LOG_DEBUG, "client: read: %s", mosquitto_strerror(rc));
        }
    }
    if ((writable || mosquitto_want_write(c->mosq)) && mosquitto_socket(c->mosq) >= 0) {
        errno = 0;
        rc = mosquitto_loop_write(c->mosq, 1);
        if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN) {
            last_rc = rc;
            last_errno = errno;
            ciot__log(CIOT_LOG_DEBUG, "client: write: %s", mosquitto_strerror(rc));
        }
    }
    pthread_mutex_lock(&c->lock);
    bool live = c->state == ST_CONNECTING || c->state == ST_CONNECTED || c->state == ST_DRAINING;
    pthread_mutex_unlock(&c->lock);
    if (live && mosquitto_socket(c->mosq) >= 0)
        mosquitto_loop_misc(c->mosq); /* keep-alive */
    /* The state follows the socket, whichever way it went: libmosquitto
     * closes it on some failures (a TLS handshake that fails) without calling
     * the disconnect callback, and on others (a TLS connect whose TCP
     * connection was refused) keeps a dead socket and reports nothing. */
    pthread_mutex_lock(&c->lock);
    live = c->state == ST_CONNECTING || c->state == ST_CONNECTED || c->state == ST_DRAINING;
    if (live && mosquitto_socket(c->mosq) < 0) {
        went_down(c, last_rc ? last_rc : MOSQ_ERR_CONN_LOST, last_errno);
    } else if (live && hup) {
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        getsockopt(mosquitto_socket(c->mosq), SOL_SOCKET, SO_ERROR, &soerr, &sl);
        if (!soerr)
            soerr = c->sock_error ? c->sock_error : ECONNRESET;
        end_attempt(c);
        went_down(c, MOSQ_ERR_ERRNO, soerr);
    }
    pthread_mutex_unlock(&c->lock);
    run_timers(c);
    deliver_events(c); /* services see CONNECTED before their timers */
    run_service_timers(c);
    sync_filters(c);
    pump(c);
    if (mosquitto_want_write(c->mosq) && mosquitto_socket(c->mosq) >= 0)
        mosquitto_loop_write(c->mosq, 1);
    pthread_mutex_lock(&c->lock);
    watch_socket(c);
    pthread_mutex_unlock(&c->lock);
    deliver_events(c);
    bury_subs(c);
    return 0;
}

/* ---- public API ---- */

static char *dup_opt(const ciot_config *cfg, int opt)
{
    return cfg->strs[opt] ? ciot__strndup(cfg->strs[opt], cfg->lens[opt]) : NULL;
}

static int replay_one(uint64_t id, const char *topic, size_t topic_len, const void *payload,
                      size_t payload_len, int qos, bool retain, void *user_data)
{
    ciot_client *c = user_data;
    int rc = ciot__queue_restore(c->queue, id, topic, topic_len, payload, payload_len, qos, retain);
    if (rc == CIOT_EQUEUE_FULL) {
        /* The journal holds more than the queue now allows (its limits were
         * lowered): the message is reported dropped, and acknowledged in the
         * journal once it is open, never silently kept. */
        on_drop(id, CIOT__DROPPED_NEWEST, c);
        return 0;
    }
    c->replay_rc = rc;
    return rc;
}

static int setup_mosquitto(ciot_client *c, const ciot_config *cfg)
{
    const char *id = cfg->strs[CIOT_OPT_CLIENT_ID];
    c->mosq = mosquitto_new(id, cfg->ints[CIOT_OPT_CLEAN_SESSION] != 0, c);
    if (!c->mosq)
        return ciot__config_fail(cfg, CIOT_ENOMEM, "cannot make the MQTT session");
    struct mosquitto *m = c->mosq;
    mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION,
                         cfg->ints[CIOT_OPT_PROTOCOL] == 5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
    mosquitto_int_option(m, MOSQ_OPT_SEND_MAXIMUM, (int)c->max_inflight);
    mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, (int)cfg->ints[CIOT_OPT_TCP_NODELAY]);
    if (cfg->strs[CIOT_OPT_USERNAME] || cfg->strs[CIOT_OPT_PASSWORD]) {
        if (mosquitto_username_pw_set(m, cfg->strs[CIOT_OPT_USERNAME] ? cfg->strs[CIOT_OPT_USERNAME] : "",
                                      cfg->strs[CIOT_OPT_PASSWORD]) != MOSQ_ERR_SUCCESS)
            return ciot__config_fail(cfg, CIOT_EINVAL, "user name or password refused by libmosquitto");
    }
    if (cfg->strs[CIOT_OPT_WILL_TOPIC]) {
        int rc = mosquitto_will_set(m, cfg->strs[CIOT_OPT_WILL_TOPIC], (int)cfg->lens[CIOT_OPT_WILL_PAYLOAD],
                                    cfg->strs[CIOT_OPT_WILL_PAYLOAD], (int)cfg->ints[CIOT_OPT_WILL_QOS],
                                    cfg->ints[CIOT_OPT_WILL_RETAIN] != 0);
        if (rc != MOSQ_ERR_SUCCESS)
            return ciot__config_fail(cfg, CIOT_EINVAL, "will refused by libmosquitto: %s",
                                     mosquitto_strerror(rc));
    } else if (cfg->strs[CIOT_OPT_WILL_PAYLOAD]) {
        return ciot__config_fail(cfg, CIOT_EINVAL, "a will payload needs CIOT_OPT_WILL_TOPIC");
    }
    if (c->use_tls) {
        mosquitto_int_option(m, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0);
        if (mosquitto_void_option(m, MOSQ_OPT_SSL_CTX, c->tls.ctx) != MOSQ_ERR_SUCCESS)
            return ciot__config_fail(cfg, CIOT_ETLS, "TLS: libmosquitto refused the context");
    }
    mosquitto_connect_with_flags_callback_set(m, cb_connect);
    mosquitto_disconnect_callback_set(m, cb_disconnect);
    mosquitto_publish_v5_callback_set(m, cb_publish);
    mosquitto_message_callback_set(m, cb_message);
    mosquitto_subscribe_callback_set(m, cb_subscribe);
    mosquitto_unsubscribe_callback_set(m, cb_unsubscribe);
    return 0;
}

static int client_new(ciot_client **out, const ciot_config *cfg, const ciot__backend *be);

int ciot_client_new(ciot_client **out, const ciot_config *user)
{
    if (!out || !user)
        return CIOT_EINVAL;
    *out = NULL;
    if (user->ints[CIOT_OPT_RECONNECT_MAX_MS] < user->ints[CIOT_OPT_RECONNECT_BASE_MS])
        return ciot__config_fail(user, CIOT_EINVAL, "CIOT_OPT_RECONNECT_MAX_MS is below the base");
    const ciot__backend *be = ciot__backend_get((int)user->ints[CIOT_OPT_BACKEND]);
    if (!be)
        return ciot__config_fail(user, CIOT_ENOTBUILT, "CIOT_OPT_BACKEND %lld is not built in",
                                 (long long)user->ints[CIOT_OPT_BACKEND]);
    /* The backend adjusts a private copy: defaults, clamps, TLS details. */
    ciot_config *eff = NULL;
    int rc = ciot__config_clone(&eff, user);
    if (rc != 0)
        return ciot__config_fail(user, rc, "out of memory");
    if (be->prepare && (rc = be->prepare(eff, user)) != 0) {
        ciot_config_free(eff);
        return rc;
    }
    /* Required, unless the backend found them elsewhere (Azure: the connection string). */
    if (!eff->strs[CIOT_OPT_HOST] || !eff->strs[CIOT_OPT_CLIENT_ID]) {
        const char *missing = !eff->strs[CIOT_OPT_HOST] ? "CIOT_OPT_HOST" : "CIOT_OPT_CLIENT_ID";
        ciot_config_free(eff);
        return ciot__config_fail(user, CIOT_EINVAL, "%s is required", missing);
    }
    rc = client_new(out, eff, be);
    if (rc != 0)
        memcpy(((ciot_config *)(uintptr_t)user)->errmsg, eff->errmsg, sizeof eff->errmsg);
    else
        ((ciot_config *)(uintptr_t)user)->errmsg[0] = '\0';
    ciot_config_free(eff);
    return rc;
}

static int client_new(ciot_client **out, const ciot_config *cfg, const ciot__backend *be)
{
    pthread_once(&lib_once, lib_init);

    ciot_client *c = ciot__calloc(1, sizeof *c);
    if (!c)
        return ciot__config_fail(cfg, CIOT_ENOMEM, "out of memory");
    c->epfd = c->evfd = c->sock = c->sock_src = -1;
    /* Recursive: libmosquitto may call back into the client from a call the
     * driver makes with the lock held. */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&c->lock, &ma);
    pthread_mutexattr_destroy(&ma);
    pthread_cond_init(&c->cond, NULL);
    c->host = dup_opt(cfg, CIOT_OPT_HOST);
    c->port = ciot__config_port(cfg);
    c->keepalive = (int)cfg->ints[CIOT_OPT_KEEPALIVE_S];
    c->reconnect = cfg->ints[CIOT_OPT_RECONNECT] != 0;
    c->connect_timeout_ms = cfg->ints[CIOT_OPT_CONNECT_TIMEOUT_MS];
    c->op_timeout_ms = cfg->ints[CIOT_OPT_OPERATION_TIMEOUT_MS];
    c->disconnect_timeout_ms = cfg->ints[CIOT_OPT_DISCONNECT_TIMEOUT_MS];
    c->max_inflight = (size_t)cfg->ints[CIOT_OPT_MAX_INFLIGHT];
    c->sync_policy = (int)cfg->ints[CIOT_OPT_PERSIST_SYNC];
    c->sync_ms = cfg->ints[CIOT_OPT_PERSIST_SYNC_MS];
    c->drain_rate = (uint64_t)cfg->ints[CIOT_OPT_QUEUE_DRAIN_RATE];
    c->use_tls = cfg->ints[CIOT_OPT_TLS] != 0;
    c->backend = be;
    c->request_timeout_ms = cfg->ints[CIOT_OPT_REQUEST_TIMEOUT_MS];
    int thing_opt = cfg->strs[CIOT_OPT_THING_NAME] ? CIOT_OPT_THING_NAME : CIOT_OPT_CLIENT_ID;
    c->thing = dup_opt(cfg, thing_opt);
    c->thing_len = cfg->lens[thing_opt];
    c->telemetry_topic = cfg->strs[CIOT_OPT_TELEMETRY_TOPIC]
                             ? dup_opt(cfg, CIOT_OPT_TELEMETRY_TOPIC)
                             : ciot__strndup(be->telemetry_topic, strlen(be->telemetry_topic));
    c->alpn = ciot__strndup(c->use_tls && cfg->strs[CIOT_OPT_TLS_ALPN] ? cfg->strs[CIOT_OPT_TLS_ALPN] : "",
                            c->use_tls && cfg->strs[CIOT_OPT_TLS_ALPN] ? cfg->lens[CIOT_OPT_TLS_ALPN] : 0);
    c->sni = ciot__strndup(c->use_tls && cfg->strs[CIOT_OPT_TLS_SNI] ? cfg->strs[CIOT_OPT_TLS_SNI] : "",
                           c->use_tls && cfg->strs[CIOT_OPT_TLS_SNI] ? cfg->lens[CIOT_OPT_TLS_SNI] : 0);
    int rc;
    if (!c->host || !c->thing || !c->telemetry_topic || !c->alpn || !c->sni ||
        ciot__commands_new(&c->commands) != 0) {
        rc = ciot__config_fail(cfg, CIOT_ENOMEM, "out of memory");
        goto fail;
    }
    rc = ciot__backoff_init(&c->backoff, (uint64_t)cfg->ints[CIOT_OPT_RECONNECT_BASE_MS],
                            (uint64_t)cfg->ints[CIOT_OPT_RECONNECT_MAX_MS],
                            (uint64_t)cfg->ints[CIOT_OPT_RECONNECT_STABLE_MS],
                            now_ms() ^ (uint64_t)(uintptr_t)c);
    if (rc == 0 && c->drain_rate)
        rc = ciot__ratelimit_init(&c->drain, c->drain_rate, 1, now_ms());
    if (rc != 0) {
        rc = ciot__config_fail(cfg, rc, "reconnect or drain settings refused");
        goto fail;
    }
    static const ciot__drop_policy policies[] = {CIOT__DROP_OLDEST, CIOT__DROP_NEWEST, CIOT__REFUSE};
    rc = ciot__queue_new(&c->queue, (size_t)cfg->ints[CIOT_OPT_QUEUE_MAX_MESSAGES],
                         (size_t)cfg->ints[CIOT_OPT_QUEUE_MAX_BYTES],
                         policies[cfg->ints[CIOT_OPT_QUEUE_DROP_POLICY]], on_drop, c);
    if (rc == 0)
        rc = ciot_topicset_new(&c->topics);
    if (rc != 0) {
        rc = ciot__config_fail(cfg, rc, "out of memory");
        goto fail;
    }
    if (c->use_tls && (rc = ciot__tls_init(&c->tls, cfg)) != 0)
        goto fail;
    if ((rc = setup_mosquitto(c, cfg)) != 0)
        goto fail;
    c->renew_at = UINT64_MAX;
    if (cfg->strs[CIOT_OPT_USERNAME] && !(c->username = dup_opt(cfg, CIOT_OPT_USERNAME))) {
        rc = ciot__config_fail(cfg, CIOT_ENOMEM, "out of memory");
        goto fail;
    }
    if (be->open && (rc = be->open(&c->be_state, cfg)) != 0) {
        rc = ciot__config_fail(cfg, rc, "%s backend: cannot set up: %s", be->name, ciot_strerror(rc));
        goto fail;
    }
    if (cfg->strs[CIOT_OPT_PERSIST_DIR]) {
        /* As much as the queue can hold, with every record's framing and an
         * ack record for each message. */
        uint64_t per_msg = ciot__journal_add_record_size(0, 0) + CIOT__JOURNAL_ACK_RECORD_SIZE;
        ciot__journal_opts jo = {
            .max_bytes = (uint64_t)cfg->ints[CIOT_OPT_QUEUE_MAX_BYTES] +
                         (uint64_t)cfg->ints[CIOT_OPT_QUEUE_MAX_MESSAGES] * per_msg +
                         CIOT__JOURNAL_HEADER_SIZE + 65536,
            .sync = c->sync_policy == CIOT_SYNC_ALWAYS     ? CIOT__JOURNAL_SYNC_EVERY
                    : c->sync_policy == CIOT_SYNC_INTERVAL ? CIOT__JOURNAL_SYNC_INTERVAL
                                                           : CIOT__JOURNAL_SYNC_NONE,
            .sync_interval_ms = (uint64_t)c->sync_ms,
        };
        ciot__journal_report rep = {0};
        rc = ciot__journal_new(&c->journal, &jo);
        if (rc == 0)
            rc = ciot__journal_open(c->journal, cfg->strs[CIOT_OPT_PERSIST_DIR], replay_one, c, &rep);
        if (rc == 0) {
            /* New ids continue after every id the journal ever held. */
            ciot__queue_set_next_id(c->queue, rep.next_id);
            for (size_t i = 0; i < c->nreplay_drops; i++)
                (void)ciot__journal_ack(c->journal, c->replay_drops[i]);
            c->nreplay_drops = 0;
        }
        if (rc != 0) {
            rc = ciot__config_fail(cfg, rc == CIOT_EUSER && c->replay_rc ? c->replay_rc : rc,
                                   "persistence in %s: %s", cfg->strs[CIOT_OPT_PERSIST_DIR],
                                   c->journal && *ciot__journal_errmsg(c->journal)
                                       ? ciot__journal_errmsg(c->journal)
                                       : ciot_strerror(rc));
            goto fail;
        }
    }
    c->epfd = epoll_create1(EPOLL_CLOEXEC);
    c->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (c->epfd < 0 || c->evfd < 0) {
        rc = ciot__config_fail(cfg, CIOT_EIO, "cannot make the event descriptors: %s", strerror(errno));
        goto fail;
    }
    struct epoll_event e = {.events = EPOLLIN, .data.fd = c->evfd};
    epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->evfd, &e);
    *out = c;
    return 0;
fail:
    ciot_client_free(c);
    return rc;
}

int ciot_client_free(ciot_client *c)
{
    if (!c)
        return 0;
    if (in_own_callback(c))
        return CIOT_ERECURSIVE;
    if (atomic_load(&c->thread_running))
        (void)!ciot_client_stop(c);
    /* From here on nothing may start again: callbacks of the events below
     * that call back into the client get CIOT_ESTATE. */
    pthread_mutex_lock(&c->lock);
    c->closing = true;
    c->user_down = true;
    bool up = c->mosq && atomic_load(&c->connected);
    if (up)
        c->state = ST_DRAINING; /* so that the end is reported as asked for */
    pthread_mutex_unlock(&c->lock);
    if (up) {
        mosquitto_disconnect(c->mosq);
        mosquitto_loop_write(c->mosq, 1);
        pthread_mutex_lock(&c->lock);
        if (c->state == ST_DRAINING) /* the DISCONNECT was not written: closed anyway */
            went_down(c, MOSQ_ERR_SUCCESS, 0);
        pthread_mutex_unlock(&c->lock);
    }
    /* our duplicate of the socket: the connection ends with it */
    pthread_mutex_lock(&c->lock);
    if (c->epfd >= 0)
        unwatch_socket(c);
    pthread_mutex_unlock(&c->lock);
    if (c->queue) {
        pthread_mutex_lock(&c->lock);
        if (c->journal) {
            /* Persisted QoS 1 messages are not lost: the next client sends them.
             * Only what the journal does not hold is reported. */
            const ciot__qmsg *m = ciot__queue_first(c->queue);
            for (; m; m = ciot__queue_next(m))
                if (ciot__qmsg_qos(m) == 0)
                    on_drop(m->id, CIOT__DROPPED_CLEARED, c);
        } else {
            ciot__queue_clear(c->queue);
        }
        pthread_mutex_unlock(&c->lock);
    }
    deliver_events(c); /* while everything they may touch still exists */
    /* Services end their requests (reported as cancelled) and let go of the client. */
    for (;;) {
        pthread_mutex_lock(&c->lock);
        ciot__service *s = c->services;
        if (s)
            c->services = s->next_;
        pthread_mutex_unlock(&c->lock);
        if (!s)
            break;
        s->next_ = NULL;
        if (s->on_close) {
            c->cb_depth++;
            c->cb_thread = pthread_self();
            s->on_close(c, s->ud);
            c->cb_depth--;
        }
    }
    deliver_events(c);
    if (c->mosq)
        mosquitto_destroy(c->mosq);
    c->mosq = NULL;
    ciot__queue_free(c->queue);
    ciot__journal_free(c->journal);
    ciot__tls_free(&c->tls);
    ciot_topicset_free(c->topics);
    for (struct sub *s = c->subs; s;) {
        struct sub *n = s->next;
        ciot__free(s);
        s = n;
    }
    c->subs = NULL;
    bury_subs(c);
    while (c->filts)
        free_filt(c, c->filts);
    ciot__free(c->events);
    ciot__free(c->replay_drops);
    ciot__free(c->qos0_mids);
    if (c->epfd >= 0)
        close(c->epfd);
    if (c->evfd >= 0)
        close(c->evfd);
    ciot__free(c->host);
    ciot__free(c->username);
    if (c->be_state && c->backend && c->backend->close)
        c->backend->close(c->be_state);
    ciot__free(c->thing);
    ciot__free(c->telemetry_topic);
    ciot__free(c->alpn);
    ciot__free(c->sni);
    ciot__commands_free(c->commands);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    ciot__wipe(c, sizeof *c);
    ciot__free(c);
    return 0;
}

void ciot_client_set_event_callback(ciot_client *c, ciot_event_fn fn, void *user_data)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    c->cb = fn;
    c->cb_ud = user_data;
    pthread_mutex_unlock(&c->lock);
}

int ciot_client_connect(ciot_client *c)
{
    if (!c)
        return CIOT_EINVAL;
    pthread_mutex_lock(&c->lock);
    if (c->closing) {
        pthread_mutex_unlock(&c->lock);
        return CIOT_ESTATE;
    }
    if (c->state == ST_CONNECTING || c->state == ST_CONNECTED || c->state == ST_DRAINING) {
        pthread_mutex_unlock(&c->lock);
        set_err(c, "already connecting or connected");
        return CIOT_ESTATE;
    }
    c->user_down = false;
    ciot__backoff_reset(&c->backoff);
    if (!atomic_load(&c->thread_running) && !c->have_driver) {
        c->driver = pthread_self(); /* the caller's loop drives it */
        c->have_driver = true;
    }
    if (atomic_load(&c->thread_running) && !on_driver(c)) {
        /* The client's thread starts the attempt on its next pass. */
        c->state = ST_WAITING;
        c->deadline = 0;
        pthread_mutex_unlock(&c->lock);
        wake(c);
        return 0;
    }
    start_attempt(c);
    pthread_mutex_unlock(&c->lock);
    deliver_events(c);
    return 0;
}

int ciot_client_disconnect(ciot_client *c)
{
    if (!c)
        return CIOT_EINVAL;
    if (in_own_callback(c))
        return CIOT_ERECURSIVE;
    pthread_mutex_lock(&c->lock);
    c->user_down = true;
    if (c->state != ST_CONNECTED) {
        bool was_trying = c->state == ST_CONNECTING || c->state == ST_WAITING;
        bool drive = !atomic_load(&c->thread_running) || on_driver(c);
        /* An attempt under way ends; only the driver touches the socket. */
        bool ask_driver = c->state == ST_CONNECTING && !drive;
        if (c->state == ST_CONNECTING && drive)
            end_attempt(c);
        else if (ask_driver)
            c->abort_attempt = true;
        c->state = ST_IDLE;
        pthread_mutex_unlock(&c->lock);
        if (ask_driver)
            wake(c);
        if (!was_trying)
            set_err(c, "not connected");
        return was_trying ? 0 : CIOT_ENOTCONN;
    }
    c->state = ST_DRAINING;
    c->disconnect_sent = false;
    c->drain_rc = 0;
    c->deadline = now_ms() + (uint64_t)c->disconnect_timeout_ms;
    uint64_t limit = c->deadline + 2000;
    pthread_mutex_unlock(&c->lock);

    pthread_mutex_lock(&c->lock);
    bool threaded = atomic_load(&c->thread_running) && !on_driver(c);
    if (!threaded) {
        c->driver = pthread_self();
        c->have_driver = true;
    }
    pthread_mutex_unlock(&c->lock);
    if (threaded) {
        wake(c);
        pthread_mutex_lock(&c->lock);
        while (c->state == ST_DRAINING && now_ms() < limit) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 50 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&c->cond, &c->lock, &ts);
        }
        pthread_mutex_unlock(&c->lock);
    } else {
        while (now_ms() < limit) {
            process(c);
            pthread_mutex_lock(&c->lock);
            bool draining = c->state == ST_DRAINING;
            pthread_mutex_unlock(&c->lock);
            if (!draining)
                break;
            struct pollfd p = {.fd = c->epfd, .events = POLLIN};
            poll(&p, 1, ciot_client_timeout_ms(c));
        }
    }
    pthread_mutex_lock(&c->lock);
    if (c->state == ST_DRAINING) {
        /* Not even the forced close happened in time (the client's thread is
         * stuck in a callback): end it here, reported like any end. */
        if (!threaded)
            end_attempt(c);
        c->drain_rc = CIOT_ETIMEDOUT;
        went_down(c, MOSQ_ERR_SUCCESS, 0);
    }
    int rc = c->drain_rc;
    pthread_mutex_unlock(&c->lock);
    if (rc)
        set_err(c, "disconnected with %zu messages still in flight (they stay queued)",
                ciot__queue_in_flight(c->queue));
    deliver_events(c);
    return rc;
}

bool ciot_client_is_connected(const ciot_client *c)
{
    return c && atomic_load(&((ciot_client *)(uintptr_t)c)->connected);
}

const char *ciot_client_errmsg(const ciot_client *c)
{
    return c ? c->errmsg : "no client";
}

int ciot_client_publish(uint64_t *out_id, ciot_client *c, const char *topic, size_t topic_len,
                        const void *payload, size_t payload_len, int qos, unsigned int flags)
{
    if (!c)
        return CIOT_EINVAL;
    if (ciot_topic_name_check(topic, topic_len) != 0) {
        set_err(c, "publish: not a valid topic name");
        return CIOT_EINVAL;
    }
    if (qos != 0 && qos != 1) {
        set_err(c, "publish: QoS %d is not supported (0 or 1)", qos);
        return CIOT_EINVAL;
    }
    if (flags & ~CIOT_PUBLISH_RETAIN) {
        set_err(c, "publish: unknown flags 0x%x", flags & ~CIOT_PUBLISH_RETAIN);
        return CIOT_EINVAL;
    }
    if (!payload && payload_len) {
        set_err(c, "publish: NULL payload with length %zu", payload_len);
        return CIOT_EINVAL;
    }
    if (payload_len > CIOT__QUEUE_MAX_PAYLOAD) {
        set_err(c, "publish: payload of %zu bytes is larger than MQTT allows", payload_len);
        return CIOT_EINVAL;
    }
    if (c->backend->check) {
        char why[200];
        if (c->backend->check(topic, topic_len, payload_len, false, why, sizeof why) != 0) {
            set_err(c, "publish: %s", why);
            return CIOT_EINVAL;
        }
    }
    bool retain = flags & CIOT_PUBLISH_RETAIN;
    uint64_t id = 0;
    pthread_mutex_lock(&c->lock);
    if (c->closing) {
        pthread_mutex_unlock(&c->lock);
        return CIOT_ESTATE;
    }
    bool drive = on_driver(c);
    bool direct = drive && qos == 0 && topic_len < sizeof c->topic_buf &&
                  c->state == ST_CONNECTED && ciot__queue_count(c->queue) == 0;
    if (direct)
        id = ciot__queue_take_id(c->queue);
    pthread_mutex_unlock(&c->lock);
    if (direct && id) {
        /* QoS 0 on the driving thread with nothing waiting: straight to
         * libmosquitto, without a round through the queue (order is kept:
         * the queue is empty, and only this thread hands messages over). */
        memcpy(c->topic_buf, topic, topic_len);
        c->topic_buf[topic_len] = '\0';
        int mid = 0;
        int mrc = hand_over(c, c->topic_buf, payload, payload_len, 0, retain, &mid);
        pthread_mutex_lock(&c->lock);
        if (mrc == MOSQ_ERR_SUCCESS) {
            qos0_taken(c, mid);
            struct ciot_event *ev = push_event(c, CIOT_EVENT_PUBLISH_ACKED);
            if (ev)
                ev->id = id;
            pthread_mutex_unlock(&c->lock);
            if (out_id)
                *out_id = id;
            return 0;
        }
        if (refused_for_good(mrc)) {
            pthread_mutex_unlock(&c->lock);
            set_err(c, "publish: refused by libmosquitto: %s", mosquitto_strerror(mrc));
            return CIOT_EINVAL;
        }
        /* Not taken (the connection is going down): it waits in the queue,
         * under its id if no other message took a newer one meanwhile. */
        int rrc = ciot__queue_restore(c->queue, id, topic, topic_len, payload, payload_len, 0, retain);
        if (rrc == CIOT_ERANGE)
            rrc = ciot__queue_push(c->queue, &id, topic, topic_len, payload, payload_len, 0, retain);
        pthread_mutex_unlock(&c->lock);
        if (rrc != 0) {
            set_err(c, "publish: %s", rrc == CIOT_EQUEUE_FULL ? "the queue is full" : ciot_strerror(rrc));
            return rrc;
        }
        if (out_id)
            *out_id = id;
        return 0;
    }
    pthread_mutex_lock(&c->lock);
    int rc = ciot__queue_push(c->queue, &id, topic, topic_len, payload, payload_len, qos, retain);
    /* With DROP_NEWEST a full queue reports the new message dropped: it is
     * then not the newest in the queue and must not reach the journal. */
    const ciot__qmsg *last = ciot__queue_last(c->queue);
    if (rc == 0 && c->journal && qos == 1 && last && last->id == id) {
        int jrc = ciot__journal_add(c->journal, id, topic, topic_len, payload, payload_len, qos, retain);
        if (jrc != 0) {
            ciot__queue_ack(c->queue, id);
            pthread_mutex_unlock(&c->lock);
            set_err(c, "publish: persistence: %s",
                    jrc == CIOT_EQUEUE_FULL ? "the journal is full"
                    : *ciot__journal_errmsg(c->journal) ? ciot__journal_errmsg(c->journal)
                                                        : ciot_strerror(jrc));
            return jrc == CIOT_EQUEUE_FULL ? CIOT_EQUEUE_FULL : CIOT_EIO;
        }
    }
    bool connected = c->state == ST_CONNECTED;
    pthread_mutex_unlock(&c->lock);
    if (rc != 0) {
        set_err(c, "publish: %s", rc == CIOT_EQUEUE_FULL ? "the queue is full" : ciot_strerror(rc));
        return rc;
    }
    if (out_id)
        *out_id = id;
    if (connected) {
        if (drive)
            pump(c); /* the driving thread hands it over at once */
        else
            wake(c); /* only the driving thread calls into libmosquitto */
    }
    return 0;
}

static void free_sub(ciot_client *c, struct sub *s)
{
    /* Handlers being dispatched may still hold s: it is freed by the driver. */
    s->removed = true;
    s->next = c->graveyard;
    c->graveyard = s;
}

int ciot_client_subscribe(ciot_client *c, const char *filter, size_t filter_len, int qos,
                          ciot_message_fn handler, void *user_data)
{
    if (!c)
        return CIOT_EINVAL;
    if (ciot_topic_filter_check(filter, filter_len) != 0) {
        set_err(c, "subscribe: not a valid topic filter");
        return CIOT_EINVAL;
    }
    if (qos != 0 && qos != 1) {
        set_err(c, "subscribe: QoS %d is not supported (0 or 1)", qos);
        return CIOT_EINVAL;
    }
    if (c->backend->check) {
        char why[200];
        if (c->backend->check(filter, filter_len, 0, true, why, sizeof why) != 0) {
            set_err(c, "subscribe: %s", why);
            return CIOT_EINVAL;
        }
    }
    pthread_mutex_lock(&c->lock);
    if (c->closing) {
        pthread_mutex_unlock(&c->lock);
        return CIOT_ESTATE;
    }
    struct filt *f = NULL;
    for (struct filt *g = c->filts; g; g = g->next)
        if (g->len == filter_len && memcmp(g->filter, filter, filter_len) == 0)
            f = g;
    for (struct sub *s = c->subs; s; s = s->next) {
        if (s->f == f && f && s->handler == handler && s->user_data == user_data) {
            pthread_mutex_unlock(&c->lock);
            set_err(c, "subscribe: this filter, handler and user data are subscribed already");
            return CIOT_EEXIST;
        }
    }
    struct sub *s = ciot__calloc(1, sizeof *s);
    bool new_filt = f == NULL;
    if (new_filt) {
        f = ciot__calloc(1, sizeof *f);
        if (f && !(f->filter = ciot__strndup(filter, filter_len))) {
            ciot__free(f);
            f = NULL;
        }
    }
    int rc = (s && f) ? ciot_topicset_add(c->topics, filter, filter_len, s) : CIOT_ENOMEM;
    if (rc != 0) {
        ciot__free(s);
        if (new_filt && f) {
            ciot__free(f->filter);
            ciot__free(f);
        }
        pthread_mutex_unlock(&c->lock);
        set_err(c, "subscribe: %s", ciot_strerror(rc));
        return rc;
    }
    if (new_filt) {
        f->len = filter_len;
        f->state = F_NEW;
        f->next = c->filts;
        c->filts = f;
    } else if (qos > f->qos || f->state == F_UNSUB_PENDING || f->state == F_REFUSED ||
               f->refs == 0) {
        if (f->state != F_UNSUB_PENDING)
            f->state = F_NEW; /* a higher QoS, refused before, or revived before its
                                 UNSUBSCRIBE went out */
    }
    if (qos > f->qos)
        f->qos = qos;
    f->refs++;
    s->f = f;
    s->handler = handler;
    s->user_data = user_data;
    s->next = c->subs;
    c->subs = s;
    c->filters_dirty = true;
    bool connected = c->state == ST_CONNECTED, drive = on_driver(c);
    pthread_mutex_unlock(&c->lock);
    if (connected) {
        if (drive)
            sync_filters(c);
        else
            wake(c);
    }
    return 0;
}

int ciot_client_unsubscribe(ciot_client *c, const char *filter, size_t filter_len,
                            ciot_message_fn handler, void *user_data)
{
    if (!c)
        return CIOT_EINVAL;
    if (ciot_topic_filter_check(filter, filter_len) != 0) {
        set_err(c, "unsubscribe: not a valid topic filter");
        return CIOT_EINVAL;
    }
    pthread_mutex_lock(&c->lock);
    for (struct sub **p = &c->subs; *p; p = &(*p)->next) {
        struct sub *s = *p;
        if (s->handler == handler && s->user_data == user_data && s->f->len == filter_len &&
            memcmp(s->f->filter, filter, filter_len) == 0) {
            *p = s->next;
            (void)!ciot_topicset_remove(c->topics, filter, filter_len, s);
            s->f->refs--;
            c->filters_dirty = true;
            free_sub(c, s);
            bool connected = c->state == ST_CONNECTED, drive = on_driver(c);
            if (!connected) {
                /* Nothing to tell the broker now; a filter it never had goes. */
                for (struct filt *f = c->filts; f; f = f->next)
                    if (f->refs == 0 && (f->state == F_NEW || f->state == F_REFUSED)) {
                        free_filt(c, f);
                        break;
                    }
            }
            pthread_mutex_unlock(&c->lock);
            if (connected) {
                if (drive)
                    sync_filters(c);
                else
                    wake(c);
            }
            return 0;
        }
    }
    pthread_mutex_unlock(&c->lock);
    set_err(c, "unsubscribe: no such subscription");
    return CIOT_ENOTFOUND;
}

size_t ciot_client_queued(const ciot_client *c)
{
    if (!c)
        return 0;
    ciot_client *m = (ciot_client *)(uintptr_t)c;
    pthread_mutex_lock(&m->lock);
    size_t n = ciot__queue_count(m->queue);
    pthread_mutex_unlock(&m->lock);
    return n;
}

int ciot_client_fd(const ciot_client *c)
{
    return c ? c->epfd : -1;
}

bool ciot_client_want_write(const ciot_client *c)
{
    /* Writability is watched inside the descriptor ciot_client_fd() returns;
     * this only tells whether data is waiting to go out. */
    return c && c->mosq && mosquitto_want_write(c->mosq);
}

int ciot_client_timeout_ms(const ciot_client *c)
{
    if (!c)
        return 1000;
    ciot_client *m = (ciot_client *)(uintptr_t)c;
    uint64_t now = now_ms(), due = now + 1000;
    pthread_mutex_lock(&m->lock);
    if (m->state == ST_WAITING || m->state == ST_CONNECTING || m->state == ST_DRAINING)
        due = m->deadline < due ? m->deadline : due;
    if (m->state == ST_DRAINING && !m->disconnect_sent && ciot__queue_in_flight(m->queue) == 0)
        due = now; /* nothing left to wait for: send DISCONNECT now */
    if (m->drain_left && m->state == ST_CONNECTED && ciot__queue_peek(m->queue)) {
        uint64_t step = 1000 / m->drain_rate > 0 ? 1000 / m->drain_rate : 1;
        due = now + step < due ? now + step : due;
    }
    if (m->abort_attempt)
        due = now;
    /* (while renewing, the PUBACKs it waits for wake the loop) */
    if (m->state == ST_CONNECTED && !m->renewing && m->renew_at < due)
        due = m->renew_at > now ? m->renew_at : now;
    for (struct filt *f = m->filts; f; f = f->next)
        if ((f->state == F_PENDING || f->state == F_UNSUB_PENDING) && f->deadline < due)
            due = f->deadline;
    for (ciot__service *s = m->services; s; s = s->next_)
        if (s->deadline_ < due)
            due = s->deadline_;
    if (m->nevents || m->graveyard)
        due = now;
    pthread_mutex_unlock(&m->lock);
    return due <= now ? 0 : (int)(due - now);
}

int ciot_client_process(ciot_client *c, unsigned int events)
{
    (void)events; /* readiness is read from the epoll set itself */
    if (!c)
        return CIOT_EINVAL;
    if (in_own_callback(c))
        return CIOT_ERECURSIVE;
    if (atomic_load(&c->thread_running) && !pthread_equal(c->thread, pthread_self()))
        return CIOT_EBUSY;
    pthread_mutex_lock(&c->lock);
    bool closing = c->closing;
    c->driver = pthread_self();
    c->have_driver = true;
    pthread_mutex_unlock(&c->lock);
    if (closing)
        return CIOT_ESTATE;
    c->user_rc = 0;
    process(c);
    return c->user_rc;
}

int ciot_client_run(ciot_client *c, int timeout_ms)
{
    if (!c)
        return CIOT_EINVAL;
    if (in_own_callback(c))
        return CIOT_ERECURSIVE;
    uint64_t end = timeout_ms < 0 ? UINT64_MAX : now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        int wait = ciot_client_timeout_ms(c);
        uint64_t now = now_ms();
        if (timeout_ms >= 0 && end - now < (uint64_t)wait)
            wait = now >= end ? 0 : (int)(end - now);
        struct pollfd p = {.fd = c->epfd, .events = POLLIN};
        poll(&p, 1, wait);
        int rc = ciot_client_process(c, 0);
        if (rc != 0)
            return rc;
        if (now_ms() >= end)
            return 0;
        if (timeout_ms < 0) {
            pthread_mutex_lock(&c->lock);
            bool idle = c->state == ST_IDLE;
            pthread_mutex_unlock(&c->lock);
            if (idle)
                return 0;
        }
    }
}

static void *thread_main(void *arg)
{
    ciot_client *c = arg;
    pthread_mutex_lock(&c->lock);
    c->driver = pthread_self(); /* from its first pass on, this thread drives */
    c->have_driver = true;
    pthread_mutex_unlock(&c->lock);
    while (!atomic_load(&c->thread_stop)) {
        struct pollfd p = {.fd = c->epfd, .events = POLLIN};
        poll(&p, 1, ciot_client_timeout_ms(c));
        if (atomic_load(&c->thread_stop))
            break;
        c->user_rc = 0;
        process(c);
    }
    return NULL;
}

int ciot_client_start(ciot_client *c)
{
    if (!c)
        return CIOT_EINVAL;
    pthread_mutex_lock(&c->lock);
    if (c->closing || atomic_load(&c->thread_running)) {
        pthread_mutex_unlock(&c->lock);
        set_err(c, "the client's thread is already running");
        return CIOT_ESTATE;
    }
    /* Nobody drives until the thread says so: publishers queue and wake it. */
    c->have_driver = false;
    atomic_store(&c->thread_stop, false);
    atomic_store(&c->thread_running, true);
    int e = pthread_create(&c->thread, NULL, thread_main, c);
    if (e != 0)
        atomic_store(&c->thread_running, false);
    pthread_mutex_unlock(&c->lock);
    if (e != 0) {
        set_err(c, "cannot start a thread: %s", strerror(e));
        return CIOT_ENOMEM;
    }
    return 0;
}

int ciot_client_stop(ciot_client *c)
{
    if (!c)
        return CIOT_EINVAL;
    if (in_own_callback(c))
        return CIOT_ERECURSIVE;
    if (!atomic_load(&c->thread_running)) {
        set_err(c, "the client's thread is not running");
        return CIOT_ESTATE;
    }
    atomic_store(&c->thread_stop, true);
    atomic_store(&c->wake_pending, false);
    wake(c);
    pthread_join(c->thread, NULL);
    pthread_mutex_lock(&c->lock);
    atomic_store(&c->thread_running, false);
    /* The next thread that calls ciot_client_process() drives; until then
     * publishers only queue (and wake it). */
    c->have_driver = false;
    pthread_mutex_unlock(&c->lock);
    return 0;
}

/* ---- events ---- */

int ciot_event_type_of(const ciot_event *ev)
{
    return ev ? ev->type : 0;
}

uint64_t ciot_event_msg_id(const ciot_event *ev)
{
    return ev ? ev->id : 0;
}

int ciot_event_error(const ciot_event *ev)
{
    return ev ? ev->error : 0;
}

const char *ciot_event_text(const ciot_event *ev)
{
    return ev ? ev->text : "";
}

bool ciot_event_session_present(const ciot_event *ev)
{
    return ev && ev->session_present;
}

const char *ciot_event_topic(const ciot_event *ev, size_t *len)
{
    if (len)
        *len = ev ? ev->topic_len : 0;
    return ev ? ev->topic : NULL;
}

const void *ciot_event_payload(const ciot_event *ev, size_t *len)
{
    if (len)
        *len = ev ? ev->payload_len : 0;
    return ev ? ev->payload : NULL;
}

int ciot_event_qos(const ciot_event *ev)
{
    return ev ? ev->qos : 0;
}

bool ciot_event_retain(const ciot_event *ev)
{
    return ev && ev->retain;
}

const char *ciot_event_type_name(int type)
{
    switch (type) {
    case CIOT_EVENT_CONNECTED:
        return "connected";
    case CIOT_EVENT_DISCONNECTED:
        return "disconnected";
    case CIOT_EVENT_MESSAGE:
        return "message";
    case CIOT_EVENT_PUBLISH_ACKED:
        return "publish-acked";
    case CIOT_EVENT_MESSAGE_DROPPED:
        return "message-dropped";
    case CIOT_EVENT_ERROR:
        return "error";
    case CIOT_EVENT_SUBSCRIBED:
        return "subscribed";
    default:
        return "unknown";
    }
}

/* ---- for services (client/service.h) ---- */

uint64_t ciot__now_ms(void)
{
    return now_ms();
}

int ciot__client_attach(ciot_client *c, ciot__service *s)
{
    pthread_mutex_lock(&c->lock);
    if (c->closing) {
        pthread_mutex_unlock(&c->lock);
        return CIOT_ESTATE;
    }
    s->deadline_ = UINT64_MAX;
    s->next_ = c->services;
    c->services = s;
    pthread_mutex_unlock(&c->lock);
    return 0;
}

void ciot__client_detach(ciot_client *c, ciot__service *s)
{
    pthread_mutex_lock(&c->lock);
    for (ciot__service **p = &c->services; *p; p = &(*p)->next_) {
        if (*p == s) {
            *p = s->next_;
            break;
        }
    }
    s->next_ = NULL;
    pthread_mutex_unlock(&c->lock);
}

void ciot__client_set_timer(ciot_client *c, ciot__service *s, uint64_t due_ms)
{
    pthread_mutex_lock(&c->lock);
    bool earlier = due_ms < s->deadline_;
    s->deadline_ = due_ms;
    bool drive = on_driver(c);
    pthread_mutex_unlock(&c->lock);
    if (earlier && !drive)
        wake(c); /* the driver's wait may end later than this */
}

int ciot__client_filter_state(ciot_client *c, const char *filter, size_t len)
{
    int st = -2;
    pthread_mutex_lock(&c->lock);
    for (struct filt *f = c->filts; f; f = f->next) {
        if (f->len == len && memcmp(f->filter, filter, len) == 0 && f->refs > 0) {
            st = f->state == F_ACTIVE ? (c->state == ST_CONNECTED ? 1 : 0)
                 : f->state == F_REFUSED ? -1
                                         : 0;
            break;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return st;
}

void *ciot__client_backend_state(const ciot_client *c)
{
    return c->be_state;
}

uint64_t ciot__client_renew_at(ciot_client *c)
{
    pthread_mutex_lock(&c->lock);
    uint64_t t = c->renew_at;
    pthread_mutex_unlock(&c->lock);
    return t;
}

const ciot__backend *ciot__client_backend(const ciot_client *c)
{
    return c->backend;
}

const char *ciot__client_thing(const ciot_client *c, size_t *len)
{
    if (len)
        *len = c->thing_len;
    return c->thing;
}

const char *ciot__client_telemetry_topic(const ciot_client *c)
{
    return c->telemetry_topic;
}

int64_t ciot__client_request_timeout_ms(const ciot_client *c)
{
    return c->request_timeout_ms;
}

const char *ciot__client_alpn(const ciot_client *c)
{
    return c->alpn;
}

const char *ciot__client_sni(const ciot_client *c)
{
    return c->sni;
}

int ciot__client_port(const ciot_client *c)
{
    return c->port;
}

int ciot__client_keepalive(const ciot_client *c)
{
    return c->keepalive;
}

void ciot__client_cb_enter(ciot_client *c)
{
    c->cb_depth++;
    c->cb_thread = pthread_self();
}

void ciot__client_cb_leave(ciot_client *c, int rc)
{
    c->cb_depth--;
    if (rc != 0 && c->user_rc == 0)
        c->user_rc = CIOT_EUSER;
}

bool ciot__client_in_callback(const ciot_client *c)
{
    return in_own_callback(c);
}

struct ciot__commands **ciot__client_commands_slot(ciot_client *c)
{
    return &c->commands;
}

void ciot__client_set_err(ciot_client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
    va_end(ap);
}
