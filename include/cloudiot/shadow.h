/**
 * @file shadow.h
 * @brief ciot_shadow: the device's side of an AWS IoT Device Shadow (classic
 *        or named) over a ciot_client, with a local copy of its state.
 *
 * ## Requests
 * ciot_shadow_get(), ciot_shadow_update_reported(), ciot_shadow_update_desired()
 * and ciot_shadow_delete() each send one request with a clientToken of its
 * own (at most 64 bytes: "<random prefix>-<counter>") and end in exactly one
 * call of their callback: accepted (with the document), rejected (with the
 * service's code and message), or failed (CIOT_ETIMEDOUT when no answer came
 * within CIOT_OPT_REQUEST_TIMEOUT_MS; CIOT_ESTATE when the shadow or its
 * client was freed first; CIOT_EAUTH when the broker refused the shadow's
 * subscriptions). Answers are matched by clientToken only: answers to other
 * clients (another device of the same thing, the service side) never end a
 * request of this shadow.
 *
 * A request is published only once the shadow's subscriptions to its
 * `/accepted`, `/rejected` and `/update/delta` topics are granted on the
 * current connection; until then, and beyond 10 requests in flight (AWS
 * answers more with 429), requests wait in the shadow, at most 64 in all
 * (CIOT_EQUEUE_FULL beyond). The timeout runs from the call.
 *
 * ## Local copy, deltas and reconnects
 * The shadow keeps a copy of the desired and reported state and the version
 * last seen, updated from the answers to its own requests, from deltas and from any deletion
 * (ciot_shadow_read(), ciot_shadow_version()). A delta callback
 * (ciot_shadow_set_delta_callback()) gets every `/update/delta` whose
 * version is newer than the last one seen; older ones (stale, reordered)
 * are ignored. A deletion seen by the shadow (any `/delete/accepted`, its
 * own or another client's, or a /get answered 404) empties the copy and
 * forgets the versions: a shadow re-created more than 48 h later starts
 * again at version 1. On every connect (the first one and each reconnect) the
 * shadow sends a /get of its own, so that a change made while the device
 * was offline is seen: when the document fetched has a delta newer than the
 * last one seen, the delta callback runs with it. A delta or an update
 * whose version skips versions the copy never saw triggers such a /get too.
 *
 * ## Azure IoT Hub (CIOT_BACKEND_AZURE): the device twin
 * On an Azure client the same functions speak IoT Hub's device twin
 * (doc/shadow.md has the table AWS / Azure):
 * - ciot_shadow_new(): one twin per device or module identity: @p name must be
 *   NULL (a name gives CIOT_EINVAL).
 * - ciot_shadow_get(): `$iothub/twin/GET/?$rid={rid}`; accepted with code 200
 *   and the document `{"desired":{…,"$version":n},"reported":{…,"$version":m}}`.
 * - ciot_shadow_update_reported(): `$iothub/twin/PATCH/properties/reported/?$rid={rid}`
 *   with the JSON object as the body (a member set to null is removed; the
 *   whole-section `null` is refused with CIOT_EINVAL); accepted with code 204
 *   and the reported section's new `$version` as the result version.
 * - ciot_shadow_update_desired() and ciot_shadow_delete(): CIOT_EINVAL at once,
 *   nothing sent: on IoT Hub a device cannot change desired properties nor
 *   delete its twin (the service side can).
 * - The clientToken is the request's `$rid`. A status >= 400 ends the
 *   request CIOT_SHADOW_REJECTED, code = the status, message = the body's
 *   "message".
 * - Delta callback: every desired-property patch
 *   (`$iothub/twin/PATCH/properties/desired/?$version={v}`) newer than the
 *   copy, with the patch body as sent (nulls and "$version" included) and
 *   version v; stale and duplicate patches are ignored, one that skips
 *   versions is delivered and a GET follows. Unlike AWS, the delta is the
 *   desired patch, not a computed difference; after a (re)connect the full
 *   GET delivers the whole desired section (no `$` members) when its
 *   `$version` is newer than the last seen (not for the first document of a
 *   twin whose desired section is empty).
 * - ciot_shadow_read(): the twin copy without `$version`/`$metadata`;
 *   CIOT_SHADOW_DIFF is the desired members that differ from reported.
 *   ciot_shadow_version(): the copy's desired `$version`.
 *
 * ## Threads
 * As the client's (<cloudiot/client.h>): the requests may be called from
 * any thread; ciot_shadow_new(), ciot_shadow_free() and the setters from
 * the thread that drives the client (or while nothing drives it: before
 * ciot_client_start() or after ciot_client_stop()). Every callback runs on
 * the driving thread with no lock held, so it may make new requests.
 * ciot_shadow_free() from inside a callback of its client is refused.
 */
#ifndef CLOUDIOT_SHADOW_H
#define CLOUDIOT_SHADOW_H

#include <cloudiot/client.h>
#include <cloudiot/common.h>

CIOT_BEGIN_DECLS

typedef struct ciot_shadow ciot_shadow;
/** The end of a request, or a delta: read through the ciot_shadow_result_*() accessors. */
typedef struct ciot_shadow_result ciot_shadow_result;

/** What a result is about (ciot_shadow_result_request()). */
typedef enum ciot_shadow_request {
    CIOT_SHADOW_GET = 1,    /**< ciot_shadow_get() */
    CIOT_SHADOW_UPDATE = 2, /**< ciot_shadow_update_reported() or ciot_shadow_update_desired() */
    CIOT_SHADOW_DELETE = 3, /**< ciot_shadow_delete() */
    CIOT_SHADOW_DELTA = 4   /**< a delta (the delta callback) */
} ciot_shadow_request;

/** How a request ended (ciot_shadow_result_outcome()). */
typedef enum ciot_shadow_outcome {
    CIOT_SHADOW_ACCEPTED = 1, /**< the service accepted it (and every delta) */
    CIOT_SHADOW_REJECTED = 2, /**< the service rejected it: ciot_shadow_result_code(), _message() */
    CIOT_SHADOW_FAILED = 3    /**< no answer: ciot_shadow_result_error() says why */
} ciot_shadow_outcome;

/** Parts of the local copy (ciot_shadow_read()). */
typedef enum ciot_shadow_section {
    CIOT_SHADOW_DESIRED = 1,  /**< state.desired */
    CIOT_SHADOW_REPORTED = 2, /**< state.reported */
    CIOT_SHADOW_DIFF = 3      /**< the delta of desired against reported, computed locally */
} ciot_shadow_section;

/**
 * A result callback.
 * @param s         the shadow
 * @param r         borrowed, valid during the call only
 * @param user_data as given with the request
 * @return 0 to go on; any other value is reported as CIOT_EUSER by the
 *         ciot_client_process() call that ran the callback
 */
typedef int (*ciot_shadow_fn)(ciot_shadow *s, const ciot_shadow_result *r, void *user_data);

/**
 * Makes a shadow on @p c and subscribes to its topics (the backend must
 * have a shadow service: CIOT_BACKEND_AWS, or CIOT_BACKEND_AZURE for the
 * device twin). The thing is the client's CIOT_OPT_THING_NAME (or its client
 * id); on Azure the twin is the connection string's device (or module).
 * @param[out] out  the new shadow; free it with ciot_shadow_free() before the client
 *                  (or after: see ciot_shadow_free())
 * @param c         the client
 * @param name      a named shadow's name (1..64 of a-z A-Z 0-9 : _ -), or NULL with
 *                  @p name_len 0 for the classic shadow (Azure: NULL only); copied
 * @param name_len  its length
 * @retval 0            done; a /get follows on every connect
 * @retval CIOT_EINVAL  NULL argument, a bad shadow name, a thing name that is not one
 *                      (1..128 of a-z A-Z 0-9 : _ -), a name on Azure, or a backend without shadows
 *                      (ciot_client_errmsg() says which)
 * @retval CIOT_ESTATE  the client is being freed
 * @retval CIOT_ENOMEM  out of memory
 */
CIOT_API CIOT_NODISCARD int ciot_shadow_new(ciot_shadow **out, ciot_client *c, const char *name,
                                            size_t name_len);

/**
 * Frees a shadow: every request not yet ended gets its callback with
 * CIOT_SHADOW_FAILED and CIOT_ESTATE (on the calling thread), and the
 * subscriptions go. After its client was freed it only releases memory
 * (its requests ended with CIOT_ESTATE when the client went). NULL is accepted.
 * @retval 0               done
 * @retval CIOT_ERECURSIVE called from inside a callback of its client: nothing was freed
 */
CIOT_API int ciot_shadow_free(ciot_shadow *s);

/**
 * Asks for the whole document (/get). On acceptance the local copy is
 * replaced by it.
 * @param[out] out_id the request's id (ciot_shadow_result_id()); may be NULL
 * @param s           the shadow
 * @param fn          its callback; may be NULL (the request still runs)
 * @param user_data   passed to @p fn
 * @retval 0                sent or waiting to be sent
 * @retval CIOT_EINVAL      NULL shadow
 * @retval CIOT_EQUEUE_FULL 64 requests are not yet ended
 * @retval CIOT_ESTATE      the client was freed
 * @retval CIOT_ENOMEM      out of memory
 */
CIOT_API CIOT_NODISCARD int ciot_shadow_get(uint64_t *out_id, ciot_shadow *s, ciot_shadow_fn fn,
                                            void *user_data);

/**
 * Reports state: sends `{"state":{"reported":<json>},"clientToken":"..."}`
 * (/update). @p json is a JSON object (keys set to null are removed by the
 * service) or `null` (removes the whole section); copied. On acceptance the
 * local copy is merged with it.
 * On Azure: see "Azure IoT Hub" above (an object only; the hub's $version in the result).
 * @retval 0 sent or waiting  @retval CIOT_EINVAL @p json is not a JSON object or null
 * @retval CIOT_EQUEUE_FULL, CIOT_ESTATE, CIOT_ENOMEM as ciot_shadow_get()
 */
CIOT_API CIOT_NODISCARD int ciot_shadow_update_reported(uint64_t *out_id, ciot_shadow *s,
                                                        const char *json, size_t json_len,
                                                        ciot_shadow_fn fn, void *user_data);

/**
 * As ciot_shadow_update_reported(), for the desired section.
 * @retval as there; CIOT_EINVAL on Azure IoT Hub, where a device cannot change
 *         desired properties (nothing is sent)
 */
CIOT_API CIOT_NODISCARD int ciot_shadow_update_desired(uint64_t *out_id, ciot_shadow *s,
                                                       const char *json, size_t json_len,
                                                       ciot_shadow_fn fn, void *user_data);

/**
 * Deletes the shadow (/delete). On acceptance the local copy is emptied.
 * @retval as ciot_shadow_get(); CIOT_EINVAL on Azure IoT Hub, where a device
 *         cannot delete its twin (nothing is sent)
 */
CIOT_API CIOT_NODISCARD int ciot_shadow_delete(uint64_t *out_id, ciot_shadow *s,
                                               ciot_shadow_fn fn, void *user_data);

/**
 * Sets the delta callback (NULL: none): its result has request
 * CIOT_SHADOW_DELTA, the delta's `state` object as document, and its version.
 */
CIOT_API void ciot_shadow_set_delta_callback(ciot_shadow *s, ciot_shadow_fn fn, void *user_data);

/**
 * Copies a section of the local copy as compact JSON into @p buf (a NUL
 * follows when there is room). Thread-safe.
 * @param[out] buf     destination; may be NULL when @p cap is 0 (to measure)
 * @param cap          its size
 * @param[out] out_len the text's length without NUL, also on CIOT_ENOSPC; may be NULL
 * @param s            the shadow
 * @param section      a ciot_shadow_section
 * @retval 0              done
 * @retval CIOT_ENOTFOUND the copy has no such section (no shadow, never fetched, or empty)
 * @retval CIOT_ENOSPC    @p buf is too small; *out_len says what is needed
 * @retval CIOT_EINVAL    NULL shadow, unknown section, NULL buf with cap > 0
 * @retval CIOT_ENOMEM    out of memory
 */
CIOT_API CIOT_NODISCARD int ciot_shadow_read(char *buf, size_t cap, size_t *out_len,
                                             ciot_shadow *s, int section);

/** The version of the local copy; 0 before anything is known or when the shadow does not exist. Thread-safe. */
CIOT_API uint64_t ciot_shadow_version(ciot_shadow *s);

/** Requests not yet ended (waiting or in flight). Thread-safe. */
CIOT_API size_t ciot_shadow_pending(ciot_shadow *s);

/* ---- results ---- */

/** A ciot_shadow_request. */
CIOT_API int ciot_shadow_result_request(const ciot_shadow_result *r);
/** A ciot_shadow_outcome. */
CIOT_API int ciot_shadow_result_outcome(const ciot_shadow_result *r);
/** CIOT_SHADOW_FAILED: CIOT_ETIMEDOUT, CIOT_ESTATE (cancelled) or CIOT_EAUTH; 0 otherwise. */
CIOT_API int ciot_shadow_result_error(const ciot_shadow_result *r);
/** CIOT_SHADOW_REJECTED: the service's code (400, 404, 409, 413, 429, ...); on Azure also the
 *  status of an accepted answer (200 for a GET, 204 for a reported patch); 0 otherwise. */
CIOT_API int ciot_shadow_result_code(const ciot_shadow_result *r);
/** REJECTED: the service's message; FAILED: a description; "" when accepted. NUL-terminated. */
CIOT_API const char *ciot_shadow_result_message(const ciot_shadow_result *r);
/**
 * The document (not NUL-terminated): the /accepted or /rejected payload, or
 * a delta's `state` object; NULL and 0 when FAILED.
 */
CIOT_API const char *ciot_shadow_result_document(const ciot_shadow_result *r, size_t *len);
/** The request's clientToken (not NUL-terminated); the delta's when it has one. */
CIOT_API const char *ciot_shadow_result_token(const ciot_shadow_result *r, size_t *len);
/** The request's id as given by the request function; 0 for a delta. */
CIOT_API uint64_t ciot_shadow_result_id(const ciot_shadow_result *r);
/** The version the document carries (0 when it has none). */
CIOT_API uint64_t ciot_shadow_result_version(const ciot_shadow_result *r);

CIOT_END_DECLS

#endif /* CLOUDIOT_SHADOW_H */
