/*
 * A small MQTT test client on libmosquitto (threaded loop) for the emulator
 * tests: connect (plain, password or TLS), subscribe and publish with the
 * broker's answers (CONNACK code, granted QoS, PUBACK), and messages
 * collected per topic with bounded waits. Header-only (static functions).
 */
#ifndef CIOT_TEST_TCLIENT_H
#define CIOT_TEST_TCLIENT_H

#include <mosquitto.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct tc_msg {
    char *topic;
    char *payload; /* NUL-terminated copy */
    int len;
    int qos;
    struct tc_msg *next;
} tc_msg;

typedef struct tclient {
    struct mosquitto *m;
    pthread_mutex_t lock;
    int connack;       /* -1 until CONNACK */
    bool disconnected; /* the connection ended after a CONNACK */
    int disconnect_rc;
    int granted[8];
    int ngranted;
    int subacks;
    int pubacks;
    int last_puback_reason; /* MQTT 5 only */
    int disconnect_reason;  /* MQTT 5 only: the broker's DISCONNECT reason, -1 none */
    tc_msg *head, *tail;
    int nmsgs;
} tclient;

static inline uint64_t tc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline void tc_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void tc_on_connect(struct mosquitto *m, void *ud, int rc)
{
    (void)m;
    tclient *c = ud;
    pthread_mutex_lock(&c->lock);
    c->connack = rc;
    pthread_mutex_unlock(&c->lock);
}

static void tc_on_disconnect(struct mosquitto *m, void *ud, int rc)
{
    tclient *c = ud;
    mosquitto_disconnect(m); /* no automatic reconnect: a test sees one connection */
    pthread_mutex_lock(&c->lock);
    c->disconnected = true;
    c->disconnect_rc = rc;
    pthread_mutex_unlock(&c->lock);
}

static void tc_on_subscribe(struct mosquitto *m, void *ud, int mid, int n, const int *granted)
{
    (void)m;
    (void)mid;
    tclient *c = ud;
    pthread_mutex_lock(&c->lock);
    c->ngranted = n < 8 ? n : 8;
    for (int i = 0; i < c->ngranted; i++)
        c->granted[i] = granted[i];
    c->subacks++;
    pthread_mutex_unlock(&c->lock);
}

static void tc_on_publish(struct mosquitto *m, void *ud, int mid)
{
    (void)m;
    (void)mid;
    tclient *c = ud;
    pthread_mutex_lock(&c->lock);
    c->pubacks++;
    pthread_mutex_unlock(&c->lock);
}

static void tc_on_publish_v5(struct mosquitto *m, void *ud, int mid, int reason,
                             const mosquitto_property *props)
{
    (void)props;
    tclient *c = ud;
    pthread_mutex_lock(&c->lock);
    c->last_puback_reason = reason;
    pthread_mutex_unlock(&c->lock);
    tc_on_publish(m, ud, mid);
}

static void tc_on_disconnect_v5(struct mosquitto *m, void *ud, int rc, const mosquitto_property *props)
{
    (void)props;
    tclient *c = ud;
    pthread_mutex_lock(&c->lock);
    c->disconnect_reason = rc;
    pthread_mutex_unlock(&c->lock);
    tc_on_disconnect(m, ud, rc);
}

static void tc_on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg)
{
    (void)m;
    tclient *c = ud;
    tc_msg *t = calloc(1, sizeof *t);
    if (!t)
        return;
    t->topic = strdup(msg->topic);
    t->payload = malloc((size_t)msg->payloadlen + 1);
    if (!t->topic || !t->payload) {
        free(t->topic);
        free(t->payload);
        free(t);
        return;
    }
    if (msg->payloadlen > 0)
        memcpy(t->payload, msg->payload, (size_t)msg->payloadlen);
    t->payload[msg->payloadlen] = '\0';
    t->len = msg->payloadlen;
    t->qos = msg->qos;
    pthread_mutex_lock(&c->lock);
    if (c->tail)
        c->tail->next = t;
    else
        c->head = t;
    c->tail = t;
    c->nmsgs++;
    pthread_mutex_unlock(&c->lock);
}

/* A client; user/password and TLS files may be NULL; MQTT 3.1.1, or 5. */
static inline tclient *tc_new_v(int version, const char *id, const char *user, const char *pass,
                                const char *ca, const char *cert, const char *key)
{
    static bool inited;
    if (!inited) {
        mosquitto_lib_init();
        inited = true;
    }
    tclient *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    pthread_mutex_init(&c->lock, NULL);
    c->connack = -1;
    c->m = mosquitto_new(id, true, c);
    if (!c->m) {
        free(c);
        return NULL;
    }
    c->disconnect_reason = -1;
    mosquitto_int_option(c->m, MOSQ_OPT_PROTOCOL_VERSION,
                         version == 5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
    mosquitto_connect_callback_set(c->m, tc_on_connect);
    mosquitto_subscribe_callback_set(c->m, tc_on_subscribe);
    if (version == 5) {
        mosquitto_disconnect_v5_callback_set(c->m, tc_on_disconnect_v5);
        mosquitto_publish_v5_callback_set(c->m, tc_on_publish_v5);
    } else {
        mosquitto_disconnect_callback_set(c->m, tc_on_disconnect);
        mosquitto_publish_callback_set(c->m, tc_on_publish);
    }
    mosquitto_message_callback_set(c->m, tc_on_message);
    if (user)
        mosquitto_username_pw_set(c->m, user, pass);
    if (ca)
        mosquitto_tls_set(c->m, ca, NULL, cert, key, NULL);
    return c;
}

static inline int tc_get(tclient *c, int *field)
{
    pthread_mutex_lock(&c->lock);
    int v = *field;
    pthread_mutex_unlock(&c->lock);
    return v;
}

static inline tclient *tc_new(const char *id, const char *user, const char *pass, const char *ca,
                              const char *cert, const char *key)
{
    return tc_new_v(4, id, user, pass, ca, cert, key);
}

/* Connects and waits (5 s at most) for the CONNACK: its return code, or -1
 * when none came (connection closed or timeout). */
static inline int tc_connect(tclient *c, int port)
{
    if (mosquitto_connect(c->m, "localhost", port, 30) != MOSQ_ERR_SUCCESS)
        return -1;
    if (mosquitto_loop_start(c->m) != MOSQ_ERR_SUCCESS)
        return -1;
    for (uint64_t end = tc_now_ms() + 5000; tc_now_ms() < end; tc_sleep_ms(5)) {
        int rc = tc_get(c, &c->connack);
        if (rc >= 0)
            return rc;
        pthread_mutex_lock(&c->lock);
        bool gone = c->disconnected;
        pthread_mutex_unlock(&c->lock);
        if (gone)
            return -1;
    }
    return -1;
}

/* Subscribes and waits for the SUBACK: the granted QoS (0x80 = failure),
 * or -1 when none came within 5 s. */
static inline int tc_sub(tclient *c, const char *filter, int qos)
{
    int before = tc_get(c, &c->subacks);
    if (mosquitto_subscribe(c->m, NULL, filter, qos) != MOSQ_ERR_SUCCESS)
        return -1;
    for (uint64_t end = tc_now_ms() + 5000; tc_now_ms() < end; tc_sleep_ms(2))
        if (tc_get(c, &c->subacks) > before)
            return tc_get(c, &c->granted[0]);
    return -1;
}

/* Publishes; with QoS 1 waits (5 s) for the PUBACK. 0, or -1. */
static inline int tc_pub(tclient *c, const char *topic, const char *payload, int qos)
{
    int before = tc_get(c, &c->pubacks);
    int len = payload ? (int)strlen(payload) : 0;
    if (mosquitto_publish(c->m, NULL, topic, len, payload, qos, false) != MOSQ_ERR_SUCCESS)
        return -1;
    if (qos == 0)
        return 0;
    for (uint64_t end = tc_now_ms() + 5000; tc_now_ms() < end; tc_sleep_ms(2))
        if (tc_get(c, &c->pubacks) > before)
            return 0;
    return -1;
}

/* Removes and returns the first message whose topic is @p topic (or, with
 * @p prefix, starts with it), waiting up to timeout_ms; NULL when none. */
static inline tc_msg *tc_take(tclient *c, const char *topic, bool prefix, int timeout_ms)
{
    uint64_t end = tc_now_ms() + (uint64_t)timeout_ms;
    size_t tlen = strlen(topic);
    for (;;) {
        pthread_mutex_lock(&c->lock);
        tc_msg *prev = NULL;
        for (tc_msg *m = c->head; m; prev = m, m = m->next) {
            if (prefix ? strncmp(m->topic, topic, tlen) == 0 : strcmp(m->topic, topic) == 0) {
                if (prev)
                    prev->next = m->next;
                else
                    c->head = m->next;
                if (c->tail == m)
                    c->tail = prev;
                c->nmsgs--;
                m->next = NULL;
                pthread_mutex_unlock(&c->lock);
                return m;
            }
        }
        pthread_mutex_unlock(&c->lock);
        if (tc_now_ms() >= end)
            return NULL;
        tc_sleep_ms(2);
    }
}

/* Removes and returns the first message on @p topic, waiting up to
 * timeout_ms; NULL when none. Free with tc_msg_free. */
static inline tc_msg *tc_wait(tclient *c, const char *topic, int timeout_ms)
{
    return tc_take(c, topic, false, timeout_ms);
}

/* The same for the first message whose topic starts with @p prefix. */
static inline tc_msg *tc_wait_prefix(tclient *c, const char *prefix, int timeout_ms)
{
    return tc_take(c, prefix, true, timeout_ms);
}

/* Messages received and not yet taken whose topic starts with prefix. */
static inline int tc_count(tclient *c, const char *prefix)
{
    pthread_mutex_lock(&c->lock);
    int n = 0;
    for (tc_msg *m = c->head; m; m = m->next)
        n += strncmp(m->topic, prefix, strlen(prefix)) == 0;
    pthread_mutex_unlock(&c->lock);
    return n;
}

/* Messages received and not yet taken on exactly this topic. */
static inline int tc_count_exact(tclient *c, const char *topic)
{
    pthread_mutex_lock(&c->lock);
    int n = 0;
    for (tc_msg *m = c->head; m; m = m->next)
        n += strcmp(m->topic, topic) == 0;
    pthread_mutex_unlock(&c->lock);
    return n;
}

/* Waits until the connection is closed by the broker (true) or timeout. */
static inline bool tc_wait_disconnected(tclient *c, int timeout_ms)
{
    for (uint64_t end = tc_now_ms() + (uint64_t)timeout_ms; tc_now_ms() < end; tc_sleep_ms(5)) {
        pthread_mutex_lock(&c->lock);
        bool gone = c->disconnected;
        pthread_mutex_unlock(&c->lock);
        if (gone)
            return true;
    }
    return false;
}

static inline void tc_msg_free(tc_msg *m)
{
    if (!m)
        return;
    free(m->topic);
    free(m->payload);
    free(m);
}

static inline void tc_free(tclient *c)
{
    if (!c)
        return;
    mosquitto_disconnect(c->m);
    mosquitto_loop_stop(c->m, true);
    mosquitto_destroy(c->m);
    while (c->head) {
        tc_msg *m = c->head;
        c->head = m->next;
        tc_msg_free(m);
    }
    pthread_mutex_destroy(&c->lock);
    free(c);
}

#endif
