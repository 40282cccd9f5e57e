/**
 * @file client.h
 * @brief ciot_client: one MQTT session with one endpoint (TLS, authentication,
 *        reconnect with backoff, a bounded offline queue, optional disk
 *        persistence), driven by the caller's event loop or by its own thread.
 *
 * ## Delivery
 * A QoS 1 message stays in the client until its PUBACK arrives: across
 * disconnects, broker restarts and reconnects it is sent again. Messages
 * published while offline wait in a bounded queue (CIOT_OPT_QUEUE_*) and go
 * out in order after the next connect, at CIOT_OPT_QUEUE_DRAIN_RATE. When the
 * queue is full the drop policy decides, and every message dropped is
 * reported by a CIOT_EVENT_MESSAGE_DROPPED event: nothing is dropped
 * silently. With CIOT_OPT_PERSIST_DIR, unacknowledged QoS 1 messages are also
 * kept in a journal on disk and delivered by the next client that opens the
 * same directory (after a crash or kill -9, every message whose publish call
 * succeeded under CIOT_SYNC_ALWAYS).
 *
 * ## Threads
 * ciot_client_publish(), ciot_client_subscribe() and ciot_client_unsubscribe()
 * may be called from any thread. Everything else is called from the thread
 * that drives the client: the caller's loop (ciot_client_fd(),
 * ciot_client_want_write(), ciot_client_timeout_ms(), ciot_client_process(),
 * or ciot_client_run() built on them) or, after ciot_client_start(), the
 * client's own thread. Callbacks run on the driving thread, with no lock of
 * the client held, so they may publish and subscribe.
 */
#ifndef CLOUDIOT_CLIENT_H
#define CLOUDIOT_CLIENT_H

#include <cloudiot/common.h>
#include <cloudiot/config.h>

CIOT_BEGIN_DECLS

typedef struct ciot_client ciot_client;
typedef struct ciot_event ciot_event;

/** What happened (ciot_event_type()). */
typedef enum ciot_event_type {
    CIOT_EVENT_CONNECTED = 1,       /**< CONNACK accepted; see ciot_event_session_present() */
    CIOT_EVENT_DISCONNECTED = 2,    /**< the session ended; ciot_event_error() says why (0: asked for) */
    CIOT_EVENT_MESSAGE = 3,         /**< a message matched no subscription handler */
    CIOT_EVENT_PUBLISH_ACKED = 4,   /**< QoS 1: PUBACK received; QoS 0: handed to the connection */
    CIOT_EVENT_MESSAGE_DROPPED = 5, /**< a published message will never be sent, or (MQTT 5) the broker
                                         refused it in its PUBACK (CIOT_EAUTH for "not authorized",
                                         CIOT_EPROTOCOL otherwise); ciot_event_error() says why */
    CIOT_EVENT_ERROR = 6,           /**< a failure that the client handles (a refused connect, a refused
                                         subscription, a journal write error); see ciot_event_text() */
    CIOT_EVENT_SUBSCRIBED = 7       /**< the broker granted a subscription (ciot_event_topic(): its filter) */
} ciot_event_type;

/** Flags of ciot_client_process() and ciot_client_want(). */
#define CIOT_EV_READ 1u  /**< the socket is readable */
#define CIOT_EV_WRITE 2u /**< the socket is writable */

/** Flags of ciot_client_publish(). */
#define CIOT_PUBLISH_RETAIN 1u /**< the broker keeps the message for later subscribers */

/**
 * An event callback: every event the client has, on the driving thread.
 * @param c         the client
 * @param ev        borrowed, valid during the call only; read it with ciot_event_*()
 * @param user_data as given to ciot_client_set_event_callback()
 * @return 0 to go on; any other value is reported as CIOT_EUSER by the
 *         ciot_client_process() call that ran the callback
 */
typedef int (*ciot_event_fn)(ciot_client *c, const ciot_event *ev, void *user_data);

/**
 * A subscription handler: a message whose topic matches the handler's filter.
 * Each message the broker delivers reaches every handler whose filter
 * matches its topic, once. A broker may deliver a message once per matching
 * subscription when the session's filters overlap (mosquitto does with
 * MQTT 5, not with 3.1.1): each copy then reaches the handlers again.
 * ciot_rules_attach() subscribes so that its filters never overlap.
 * Return value as ciot_event_fn.
 */
typedef int (*ciot_message_fn)(ciot_client *c, const ciot_event *msg, void *user_data);

/* ---- lifetime ---- */

/**
 * Makes a client from a config. Nothing is sent yet; the config is copied and
 * may be freed afterwards. TLS files are read here, once (not on every
 * reconnect), and a journal in CIOT_OPT_PERSIST_DIR is opened and replayed:
 * its messages are queued for the first connect.
 * @param[out] out the new client
 * @param cfg       the settings; read only (but see the message buffer below)
 * @retval 0            done
 * @retval CIOT_EINVAL  a setting is missing or inconsistent (no host, no client id, a key
 *                      without certificate, ...) or the backend refuses it (AWS: a client id
 *                      over 128 bytes or starting with '$', no TLS to a host that is not
 *                      loopback; Azure: no connection string, or a setting the connection
 *                      string decides); ciot_config_errmsg(cfg) says which
 * @retval CIOT_ENOTBUILT CIOT_OPT_BACKEND names a backend not built in
 * @retval CIOT_EUNKNOWN_OPTION, CIOT_EEXIST, CIOT_ENOTFOUND, CIOT_ETYPE, CIOT_ECORRUPT,
 *         CIOT_ERANGE  Azure: the connection string is malformed (an unknown or repeated
 *                      field, a missing one, credentials that exclude each other, a key that
 *                      is not base64, a value out of range); the message names the field,
 *                      never a key
 * @retval CIOT_ETLS    a TLS file is unreadable or unusable, or the key does not match the
 *                      certificate; ciot_config_errmsg(cfg) names the file and the cause
 * @retval CIOT_EIO     the journal could not be opened
 * @retval CIOT_ENOMEM  out of memory
 * Details go to ciot_config_errmsg(cfg) (the config's message buffer is written even
 * though the config is otherwise read-only here).
 */
CIOT_API CIOT_NODISCARD int ciot_client_new(ciot_client **out, const ciot_config *cfg);

/**
 * Frees a client: stops its thread, closes the connection without waiting
 * (call ciot_client_disconnect() first to wait for acknowledgements) and
 * reports every message still queued and not persisted as dropped
 * (CIOT_EVENT_MESSAGE_DROPPED with CIOT_ESTATE). NULL is accepted.
 * @retval 0               done
 * @retval CIOT_ERECURSIVE called from inside one of this client's callbacks: nothing was freed
 */
CIOT_API int ciot_client_free(ciot_client *c);

/** Sets the event callback (NULL: none). user_data is kept until the next call. */
CIOT_API void ciot_client_set_event_callback(ciot_client *c, ciot_event_fn fn, void *user_data);

/* ---- session ---- */

/**
 * Starts connecting, without blocking: DNS, TCP, TLS and CONNACK proceed in
 * ciot_client_process() (or the client's thread). CIOT_EVENT_CONNECTED tells
 * when it is done; failures are CIOT_EVENT_ERROR events and, when
 * CIOT_OPT_RECONNECT is on (the default), further attempts follow with
 * backoff. After a lost connection the client reconnects by itself.
 * @retval 0 started  @retval CIOT_ESTATE already connecting or connected
 * @retval CIOT_EINVAL NULL client
 */
CIOT_API CIOT_NODISCARD int ciot_client_connect(ciot_client *c);

/**
 * Ends the session: waits up to CIOT_OPT_DISCONNECT_TIMEOUT_MS for the QoS 1
 * messages in flight to be acknowledged (driving the connection itself, or
 * waiting for the client's thread), then sends DISCONNECT and closes. No
 * reconnect follows. Messages not yet sent stay queued for the next connect.
 * @retval 0                 done, nothing was left in flight
 * @retval CIOT_ETIMEDOUT    done, but messages were still in flight (they stay queued)
 * @retval CIOT_ENOTCONN     was not connected (nothing to do)
 * @retval CIOT_ERECURSIVE   called from a callback of this client
 */
CIOT_API CIOT_NODISCARD int ciot_client_disconnect(ciot_client *c);

/** true while the session is up (CONNACK received, not yet lost). Thread-safe. */
CIOT_API bool ciot_client_is_connected(const ciot_client *c);

/**
 * Why the last call on @p c failed, or what the last CIOT_EVENT_ERROR was
 * about; "" when nothing failed. One buffer per client, shared by every
 * thread that uses it: read it right after the failed call, from the thread
 * that made it, and expect another thread's failure to overwrite it. Never
 * contains a password, a key or a token.
 */
CIOT_API const char *ciot_client_errmsg(const ciot_client *c);

/* ---- messages ---- */

/**
 * Publishes a message. The topic and payload are copied; the message is queued
 * and sent as soon as the session and the in-flight limit allow. Thread-safe.
 * @param[out] out_id     the message's id (increasing, never reused, 64 bits), as
 *                        later given by CIOT_EVENT_PUBLISH_ACKED or
 *                        CIOT_EVENT_MESSAGE_DROPPED; may be NULL
 * @param c               the client
 * @param topic           topic name (pointer + length, no NUL needed), copied
 * @param topic_len       its length in bytes
 * @param payload         the payload, copied; may be NULL when @p payload_len is 0
 * @param payload_len     its length in bytes
 * @param qos             0 or 1
 * @param flags           0 or CIOT_PUBLISH_RETAIN
 * @retval 0               queued (with CIOT_DROP_NEWEST on a full queue, "queued" can mean
 *                         "dropped and reported")
 * @retval CIOT_EINVAL     invalid topic name (wildcards, empty, U+0000, invalid UTF-8),
 *                         QoS other than 0 or 1, unknown flag, NULL payload with a length,
 *                         or a topic or payload beyond the backend's limits (AWS: 256 bytes
 *                         and 7 slashes per topic, 128 KiB per payload)
 * @retval CIOT_EQUEUE_FULL the queue is full and its policy is CIOT_DROP_REFUSE, or the
 *                         message alone is larger than CIOT_OPT_QUEUE_MAX_BYTES
 * @retval CIOT_EIO        persistence is on and the journal could not be written (nothing queued)
 * @retval CIOT_ENOMEM     out of memory
 */
CIOT_API CIOT_NODISCARD int ciot_client_publish(uint64_t *out_id, ciot_client *c,
                                                const char *topic, size_t topic_len,
                                                const void *payload, size_t payload_len,
                                                int qos, unsigned int flags);

/**
 * Subscribes @p handler to @p filter. Sent at once when connected, else at
 * the next connect; restored after every reconnect where the broker did not
 * keep the session. The broker's answer is a CIOT_EVENT_SUBSCRIBED or a
 * CIOT_EVENT_ERROR event (refused, or no SUBACK within
 * CIOT_OPT_OPERATION_TIMEOUT_MS). A filter the broker refused (CIOT_EAUTH,
 * the filter as ciot_event_topic()) is not sent again on reconnects (AWS
 * closes the connection on a refused subscription, so that would loop):
 * subscribing it again, e.g. after ciot_client_unsubscribe(), retries it.
 * Thread-safe.
 * @param c          the client
 * @param filter     topic filter (pointer + length), copied
 * @param filter_len its length in bytes
 * @param qos        0 or 1
 * @param handler   NULL: messages go to the event callback as CIOT_EVENT_MESSAGE
 * @param user_data kept until the subscription is removed or the client freed
 * @retval 0 done  @retval CIOT_EINVAL invalid filter or QoS, or a filter beyond the backend's limits
 * @retval CIOT_EEXIST the same filter, handler and user_data are subscribed already
 * @retval CIOT_ENOMEM out of memory
 */
CIOT_API CIOT_NODISCARD int ciot_client_subscribe(ciot_client *c, const char *filter,
                                                  size_t filter_len, int qos,
                                                  ciot_message_fn handler, void *user_data);

/**
 * Removes what ciot_client_subscribe() added with the same filter, handler
 * and user_data; the broker is told when no other handler uses the filter.
 * Safe from inside a handler, including the one being removed. Thread-safe;
 * but called from another thread than the driving one, the handler may still
 * be running (or run once more for a message already being dispatched): free
 * its user_data only after ciot_client_stop(), or from the driving thread.
 * @retval 0 done  @retval CIOT_ENOTFOUND no such subscription  @retval CIOT_EINVAL bad filter
 */
CIOT_API CIOT_NODISCARD int ciot_client_unsubscribe(ciot_client *c, const char *filter,
                                                    size_t filter_len, ciot_message_fn handler,
                                                    void *user_data);

/** Messages in the queue: waiting or in flight. Thread-safe. */
CIOT_API size_t ciot_client_queued(const ciot_client *c);

/* ---- driving the client from the caller's loop ---- */

/** The socket to watch, or -1 while there is none (then only the timeout matters). */
CIOT_API int ciot_client_fd(const ciot_client *c);

/**
 * true when data is waiting to be written. The descriptor of ciot_client_fd()
 * already watches writability inside it, so a loop only ever waits for it to
 * be readable; this is for information.
 */
CIOT_API bool ciot_client_want_write(const ciot_client *c);

/**
 * Milliseconds until ciot_client_process() must be called even if the socket
 * stays quiet (keep-alive, reconnect, timeouts, drain rate); never negative;
 * at most 1000.
 */
CIOT_API int ciot_client_timeout_ms(const ciot_client *c);

/**
 * Does the work that is due: reads and writes what the socket is ready for,
 * runs timers, reconnects, and calls the callbacks. Readiness is read from
 * the descriptor of ciot_client_fd() itself, so @p events (CIOT_EV_READ,
 * CIOT_EV_WRITE, or 0 after a timeout) is only a hint and may be 0.
 * @retval 0 done  @retval CIOT_EUSER a callback returned non-zero
 * @retval CIOT_ERECURSIVE called from a callback  @retval CIOT_EBUSY the client's thread drives it
 */
CIOT_API CIOT_NODISCARD int ciot_client_process(ciot_client *c, unsigned int events);

/**
 * Drives the client for up to @p timeout_ms milliseconds with poll(), built on
 * the four calls above (-1: until ciot_client_disconnect() from a callback).
 * @retval as ciot_client_process()
 */
CIOT_API CIOT_NODISCARD int ciot_client_run(ciot_client *c, int timeout_ms);

/* ---- driving the client from its own thread ---- */

/**
 * Starts a thread that drives the client until ciot_client_stop() or
 * ciot_client_free(). Callbacks then run on that thread.
 * @retval 0 started  @retval CIOT_ESTATE already started  @retval CIOT_ENOMEM no thread
 */
CIOT_API CIOT_NODISCARD int ciot_client_start(ciot_client *c);

/**
 * Stops the thread started by ciot_client_start() and waits for it. The
 * session stays as it is (call ciot_client_disconnect() first to end it).
 * @retval 0 done  @retval CIOT_ESTATE not started  @retval CIOT_ERECURSIVE from a callback
 */
CIOT_API CIOT_NODISCARD int ciot_client_stop(ciot_client *c);

/* ---- events ---- */

/** One of ciot_event_type. */
CIOT_API int ciot_event_type_of(const ciot_event *ev);

/** The message id (PUBLISH_ACKED, MESSAGE_DROPPED); 0 for other events. */
CIOT_API uint64_t ciot_event_msg_id(const ciot_event *ev);

/**
 * A CIOT_E* code: why a message was dropped (CIOT_EQUEUE_FULL: the queue
 * policy; CIOT_ESTATE: the client was freed), why the session ended (0 when
 * asked for), what failed (ERROR). 0 for other events.
 */
CIOT_API int ciot_event_error(const ciot_event *ev);

/** A human-readable description (ERROR, DISCONNECTED, MESSAGE_DROPPED); "" otherwise. */
CIOT_API const char *ciot_event_text(const ciot_event *ev);

/** CONNECTED: whether the broker kept the session (subscriptions were not re-sent). */
CIOT_API bool ciot_event_session_present(const ciot_event *ev);

/**
 * MESSAGE (and handlers): the topic; SUBSCRIBED, and the ERROR of a refused
 * subscription: the filter. *len gets the length; the bytes are not
 * NUL-terminated. NULL and 0 for other events.
 */
CIOT_API const char *ciot_event_topic(const ciot_event *ev, size_t *len);

/** MESSAGE: the payload and its length (borrowed, valid during the callback). */
CIOT_API const void *ciot_event_payload(const ciot_event *ev, size_t *len);

/** MESSAGE: its QoS; SUBSCRIBED: the granted QoS. */
CIOT_API int ciot_event_qos(const ciot_event *ev);

/** MESSAGE: the retain flag. */
CIOT_API bool ciot_event_retain(const ciot_event *ev);

/** The name of an event type ("connected", ...); a static string, "unknown" for other values. */
CIOT_API const char *ciot_event_type_name(int type);

CIOT_END_DECLS

#endif /* CLOUDIOT_CLIENT_H */
