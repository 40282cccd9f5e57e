/*
 * Helpers for tests that drive ciot_client against the broker fixture:
 * an event recorder and bounded waits. Header-only (static functions), for
 * the integration and fault tests.
 */
#ifndef CIOT_TEST_HARNESS_H
#define CIOT_TEST_HARNESS_H

#include "broker.h"

#include <cloudiot/cloudiot.h>

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline uint64_t h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline double h_scale(void)
{
    const char *s = getenv("CIOT_TEST_SCALE");
    double f = s ? atof(s) : 1.0;
    return f > 0 ? f : 1.0;
}

static inline long h_scaled(long n, long min)
{
    long v = (long)((double)n * h_scale());
    return v < min ? min : v;
}

/* What a client's event callback saw. */
typedef struct h_events {
    pthread_mutex_t lock;
    int connected, disconnected, errors, subscribed, messages;
    uint64_t acked;           /* PUBLISH_ACKED count */
    uint64_t dropped;         /* MESSAGE_DROPPED count */
    uint64_t dropped_ids[64]; /* the first 64 dropped ids */
    int drop_errors[64];
    int last_error;
    bool last_session_present;
    char last_text[256];
    char error_text[256];
} h_events;

static inline void h_events_init(h_events *e)
{
    memset(e, 0, sizeof *e);
    pthread_mutex_init(&e->lock, NULL);
}

static inline int h_on_event(ciot_client *c, const ciot_event *ev, void *ud)
{
    (void)c;
    h_events *e = ud;
    pthread_mutex_lock(&e->lock);
    switch (ciot_event_type_of(ev)) {
    case CIOT_EVENT_CONNECTED:
        e->connected++;
        e->last_session_present = ciot_event_session_present(ev);
        break;
    case CIOT_EVENT_DISCONNECTED:
        e->disconnected++;
        break;
    case CIOT_EVENT_ERROR:
        e->errors++;
        e->last_error = ciot_event_error(ev);
        snprintf(e->error_text, sizeof e->error_text, "%s", ciot_event_text(ev));
        break;
    case CIOT_EVENT_SUBSCRIBED:
        e->subscribed++;
        break;
    case CIOT_EVENT_MESSAGE:
        e->messages++;
        break;
    case CIOT_EVENT_PUBLISH_ACKED:
        e->acked++;
        break;
    case CIOT_EVENT_MESSAGE_DROPPED:
        if (e->dropped < 64) {
            e->dropped_ids[e->dropped] = ciot_event_msg_id(ev);
            e->drop_errors[e->dropped] = ciot_event_error(ev);
        }
        e->dropped++;
        break;
    default:
        break;
    }
    snprintf(e->last_text, sizeof e->last_text, "%s", ciot_event_text(ev));
    pthread_mutex_unlock(&e->lock);
    return 0;
}

/* A config for the plain listener of the fixture. */
static inline ciot_config *h_config(const test_broker *b, const char *client_id)
{
    ciot_config *cfg;
    cr_assert_eq(ciot_config_new(&cfg), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_HOST, "127.0.0.1"), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PORT, b->port), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_CLIENT_ID, client_id), 0);
    /* Tests reconnect quickly; the policy itself is tested with an injected clock. */
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_RECONNECT_BASE_MS, 20), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_RECONNECT_MAX_MS, 200), 0);
    return cfg;
}

static inline void h_log(int level, const char *msg, void *ud)
{
    (void)ud;
    fprintf(stderr, "[%llu %s] %s\n", (unsigned long long)(h_now_ms() % 100000), ciot_log_level_name(level), msg);
}

static inline ciot_client *h_client(ciot_config *cfg, h_events *e)
{
    /* CIOT_TEST_LOG=1 shows the library's log on stderr */
    if (getenv("CIOT_TEST_LOG"))
        cr_assert_eq(ciot_set_log_callback(h_log, CIOT_LOG_DEBUG, NULL), 0);
    ciot_client *c = NULL;
    int rc = ciot_client_new(&c, cfg);
    cr_assert_eq(rc, 0, "ciot_client_new: %s: %s", ciot_err_name(rc), ciot_config_errmsg(cfg));
    if (e)
        ciot_client_set_event_callback(c, h_on_event, e);
    return c;
}

typedef bool (*h_pred)(void *arg);

/* Drives c (external loop) until pred(arg) or ms elapsed; true if pred held. */
static inline bool h_run_until(ciot_client *c, h_pred pred, void *arg, int ms)
{
    uint64_t end = h_now_ms() + (uint64_t)ms;
    while (!pred(arg)) {
        if (h_now_ms() >= end)
            return false;
        int rc = ciot_client_run(c, 10);
        cr_assert(rc == 0 || rc == CIOT_EUSER, "ciot_client_run: %s", ciot_err_name(rc));
    }
    return true;
}

/* Waits (another thread drives) until pred(arg) or ms elapsed. */
static inline bool h_wait_until(h_pred pred, void *arg, int ms)
{
    uint64_t end = h_now_ms() + (uint64_t)ms;
    while (!pred(arg)) {
        if (h_now_ms() >= end)
            return false;
        struct timespec ts = {0, 2 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return true;
}

static inline bool h_is_connected(void *c)
{
    return ciot_client_is_connected(c);
}

static inline bool h_is_disconnected(void *c)
{
    return !ciot_client_is_connected(c);
}

struct h_count_arg {
    h_events *e;
    uint64_t want;
};

static inline bool h_acked_at_least(void *arg)
{
    struct h_count_arg *a = arg;
    pthread_mutex_lock(&a->e->lock);
    bool ok = a->e->acked >= a->want;
    pthread_mutex_unlock(&a->e->lock);
    return ok;
}

static inline bool h_subscribed_at_least(void *arg)
{
    struct h_count_arg *a = arg;
    pthread_mutex_lock(&a->e->lock);
    bool ok = (uint64_t)a->e->subscribed >= a->want;
    pthread_mutex_unlock(&a->e->lock);
    return ok;
}

static inline bool h_errors_at_least(void *arg)
{
    struct h_count_arg *a = arg;
    pthread_mutex_lock(&a->e->lock);
    bool ok = (uint64_t)a->e->errors >= a->want;
    pthread_mutex_unlock(&a->e->lock);
    return ok;
}

#endif
