/**
 * @file method.h
 * @brief Azure IoT Hub direct methods: handlers registered by name, answered
 *        now or later with a status and a JSON payload.
 *
 * Only on a client of CIOT_BACKEND_AZURE. The first registration subscribes
 * to `$iothub/methods/POST/#` (QoS 0, restored after reconnects like any
 * subscription). A request arrives as `$iothub/methods/POST/{name}/?$rid={rid}`
 * with a payload (JSON, usually an object; the library does not require it)
 * and goes to the handler registered under {name}. The handler, or any thread
 * later, answers with ciot_method_respond(): published (QoS 0) to
 * `$iothub/methods/res/{status}/?$rid={rid}`. Only the connection that got
 * the request can answer it (the hub forgets requests when a device
 * disconnects): an answer after the connection was lost fails with
 * CIOT_ECONNLOST. A method nobody handles gets status 404 and
 * `{"message":"method \"<name>\" is not registered on this device"}` at once.
 *
 * Requests that cannot be understood (no request id, a request id or name
 * that is not UTF-8 or too long, an oversized topic) never reach a handler;
 * they go to the error callback (ciot_method_set_error_callback()) and, when
 * the request id is usable, get status 400.
 *
 * At most 1024 requests wait for an answer at a time; more are answered 429
 * ("too many requests waiting") at once.
 *
 * Threads: registration, ciot_method_respond() and the error callback setter
 * are safe from any thread; handlers and the error callback run on the
 * client's driving thread with no lock held.
 */
#ifndef CLOUDIOT_METHOD_H
#define CLOUDIOT_METHOD_H

#include <cloudiot/client.h>
#include <cloudiot/common.h>

CIOT_BEGIN_DECLS

/** One received method request; borrowed, valid during the handler only. */
typedef struct ciot_method_request ciot_method_request;

/**
 * A method handler.
 * @param c         the client
 * @param req       the request: read it with ciot_method_request_*(); keep a copy of its
 *                  request id to answer later
 * @param user_data as registered
 * @return 0 to go on; any other value is reported as CIOT_EUSER by the
 *         ciot_client_process() call that ran it (the request still waits for its answer)
 */
typedef int (*ciot_method_fn)(ciot_client *c, const ciot_method_request *req, void *user_data);

/**
 * The error callback: a request that cannot be dispatched.
 * @param c         the client
 * @param err       CIOT_EPROTOCOL (malformed topic)
 * @param text      what was wrong (NUL-terminated; never more than 200 bytes of the topic)
 * @param user_data as set
 */
typedef void (*ciot_method_error_fn)(ciot_client *c, int err, const char *text, void *user_data);

/**
 * Registers @p fn for the method @p name (copied).
 * @param c         a client of CIOT_BACKEND_AZURE
 * @param name      1..128 bytes of UTF-8 without '/', '+', '#', '?'
 * @param name_len  its length
 * @param fn        the handler
 * @param user_data passed to @p fn
 * @retval 0            done (the first registration also subscribes)
 * @retval CIOT_EINVAL  NULL client or handler, a bad name, or a client of another backend
 * @retval CIOT_EEXIST  a handler is registered under that name already
 * @retval CIOT_ENOMEM  out of memory
 * @retval CIOT_ESTATE  the client is being freed
 */
CIOT_API CIOT_NODISCARD int ciot_method_register(ciot_client *c, const char *name, size_t name_len,
                                                 ciot_method_fn fn, void *user_data);

/**
 * Removes the handler of @p name; its later requests are answered 404.
 * @retval 0 done  @retval CIOT_ENOTFOUND no such handler  @retval CIOT_EINVAL bad arguments
 */
CIOT_API CIOT_NODISCARD int ciot_method_unregister(ciot_client *c, const char *name,
                                                   size_t name_len);

/** Sets the error callback (NULL: such requests are only logged, CIOT_LOG_WARN). */
CIOT_API void ciot_method_set_error_callback(ciot_client *c, ciot_method_error_fn fn,
                                             void *user_data);

/**
 * Answers a request: `$iothub/methods/res/{status}/?$rid={rid}` with @p json.
 * @param c          the client that received the request
 * @param rid        the request id (ciot_method_request_id()), pointer + length
 * @param rid_len    its length
 * @param status     the status the caller gets, 100..999 (200 for success, by convention)
 * @param json       the payload: one JSON value; NULL with @p json_len 0 sends an empty payload
 * @param json_len   its length
 * @retval 0              queued for sending
 * @retval CIOT_ENOTFOUND no request with this id is waiting (never received, or answered already)
 * @retval CIOT_ECONNLOST the connection that received it ended: the hub has forgotten the
 *                        request, nothing is sent (the request is forgotten here too)
 * @retval CIOT_EINVAL    NULL client, a status outside 100..999, a payload that is not JSON
 * @retval CIOT_ENOMEM, CIOT_EQUEUE_FULL, CIOT_ESTATE as ciot_client_publish()
 */
CIOT_API CIOT_NODISCARD int ciot_method_respond(ciot_client *c, const char *rid, size_t rid_len,
                                                int status, const char *json, size_t json_len);

/** The method's name (not NUL-terminated); *len gets its length. */
CIOT_API const char *ciot_method_request_name(const ciot_method_request *req, size_t *len);

/** The request id to answer with (not NUL-terminated, decoded); *len gets its length. */
CIOT_API const char *ciot_method_request_id(const ciot_method_request *req, size_t *len);

/** The payload (not NUL-terminated) and its length. */
CIOT_API const char *ciot_method_request_payload(const ciot_method_request *req, size_t *len);

CIOT_END_DECLS

#endif /* CLOUDIOT_METHOD_H */
