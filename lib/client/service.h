/*
 * What services built on a client (shadow, commands) need from it, and
 * nothing more: every event before the user's event callback, a timer that
 * the client's loop honours in both driving modes, the state of their
 * subscriptions, and a hook when the client goes away. Internal.
 *
 * Threads: the hooks run on the driving thread with no lock of the client
 * held (like every callback), so they may publish and subscribe. A service
 * is attached and detached from the driving thread (or while nothing drives
 * the client), never from inside one of the client's callbacks.
 */
#ifndef CIOT_CLIENT_SERVICE_H
#define CIOT_CLIENT_SERVICE_H

#include "backend/backend.h"

#include <cloudiot/client.h>

typedef struct ciot__service ciot__service;
struct ciot__service {
    /* Every event (CONNECTED with session_present, SUBSCRIBED with its
     * filter, ERROR, ...), before the event callback. May be NULL. */
    void (*on_event)(ciot_client *c, const ciot_event *ev, void *ud);
    /* The time set with ciot__client_set_timer() has come (once per setting). May be NULL. */
    void (*on_timer)(ciot_client *c, uint64_t now_ms, void *ud);
    /* The client is being freed: end every request; the client must not be
     * used by the service afterwards. May be NULL. */
    void (*on_close)(ciot_client *c, void *ud);
    void *ud;
    /* owned by the client, under its lock */
    uint64_t deadline_;
    ciot__service *next_;
};

/* CLOCK_MONOTONIC in milliseconds (the clock of the timers). */
uint64_t ciot__now_ms(void);

/* Attaches @p s; CIOT_ESTATE when the client is being freed. */
int ciot__client_attach(ciot_client *c, ciot__service *s);
/* Detaches @p s (no hook of it runs afterwards); nothing when not attached. */
void ciot__client_detach(ciot_client *c, ciot__service *s);
/* on_timer at @p due_ms (ciot__now_ms() clock; UINT64_MAX: none). Any thread;
 * wakes the driver so that its loop's next timeout accounts for it. */
void ciot__client_set_timer(ciot_client *c, ciot__service *s, uint64_t due_ms);

/* A filter subscribed with ciot_client_subscribe(): 1 granted by the broker
 * on this session, 0 waiting (not connected, or no SUBACK yet), -1 refused
 * by the broker, -2 not subscribed. Any thread. */
int ciot__client_filter_state(ciot_client *c, const char *filter, size_t len);

/* The backend row, the thing name (CIOT_OPT_THING_NAME or the client id) and
 * the effective settings; fixed for the client's life. */
const ciot__backend *ciot__client_backend(const ciot_client *c);
/* The backend's per-client state (backend->open), or NULL. */
void *ciot__client_backend_state(const ciot_client *c);
/* When the client reconnects to renew its credentials (ciot__now_ms() clock;
 * UINT64_MAX: not planned). Any thread. */
uint64_t ciot__client_renew_at(ciot_client *c);
const char *ciot__client_thing(const ciot_client *c, size_t *len);
const char *ciot__client_telemetry_topic(const ciot_client *c);
int64_t ciot__client_request_timeout_ms(const ciot_client *c);
/* The TLS settings in use (for tests): "" when none. */
const char *ciot__client_alpn(const ciot_client *c);
const char *ciot__client_sni(const ciot_client *c);
int ciot__client_port(const ciot_client *c);
int ciot__client_keepalive(const ciot_client *c);

/* Around a user callback a service runs: ciot_client_free() and friends are
 * refused inside it; a non-zero @p rc makes ciot_client_process() report CIOT_EUSER. */
void ciot__client_cb_enter(ciot_client *c);
void ciot__client_cb_leave(ciot_client *c, int rc);
/* true inside a callback of this client on the calling thread */
bool ciot__client_in_callback(const ciot_client *c);

/* Writes ciot_client_errmsg(c). */
void ciot__client_set_err(ciot_client *c, const char *fmt, ...) CIOT__PRINTF(2, 3);

/* The command registry of a client (lib/services/command.c), freed with it. */
struct ciot__commands;
struct ciot__commands **ciot__client_commands_slot(ciot_client *c);
int ciot__commands_new(struct ciot__commands **out);
void ciot__commands_free(struct ciot__commands *r);

#endif
