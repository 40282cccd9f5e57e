/*
 * The AWS Device Shadow document engine (protocols.md §2): one shadow's
 * state (desired, reported, per-leaf metadata, version, timestamps, whether
 * it exists), the /update merge and delta rules, /get and /delete, the
 * error documents of §2.5, and a persisted form.
 *
 * Internal; never exported. Pure: no I/O, no clock (the caller passes
 * `now_s`, Unix seconds), no threads, no globals. A ciot__shadow is not
 * thread-safe; distinct shadows are independent. Built on jansson's DOM.
 *
 * Every response the service would publish is produced as a compact JSON
 * string with a fixed key order, so that the same inputs (and the same
 * `now_s`) give the same bytes.
 */
#ifndef CIOT_CORE_SHADOW_DOC_H
#define CIOT_CORE_SHADOW_DOC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits of §2 (the engine enforces them; see shadow_doc.c for the tags). */
#define CIOT__SHADOW_MAX_STATE_BYTES 8192     /* serialized desired + reported */
#define CIOT__SHADOW_MAX_DEPTH 6              /* levels below desired/reported */
#define CIOT__SHADOW_MAX_TOKEN 64             /* clientToken bytes */
#define CIOT__SHADOW_MAX_REQUEST (128 * 1024) /* request payload bytes */
#define CIOT__SHADOW_RECREATE_WINDOW_S (48 * 3600)
#define CIOT__SHADOW_MAX_NAME 128             /* name used in the 404 message */

typedef struct ciot__shadow ciot__shadow;

/*
 * What one request produced. `status` is 200 when the request was accepted
 * (then `accepted` is set and, for /update, `documents` and maybe `delta`),
 * otherwise the error code of §2.5 (400, 404, 409, 413, 415, 500) and only
 * `rejected` is set. Strings are NUL-terminated, allocated with
 * ciot__malloc and released by ciot__shadow_result_free().
 */
typedef struct ciot__shadow_result {
    int status;
    char *accepted;  /* /update/accepted, /get/accepted or /delete/accepted */
    size_t accepted_len;
    char *delta; /* /update/delta, only when the delta is non-empty */
    size_t delta_len;
    char *documents; /* /update/documents */
    size_t documents_len;
    char *rejected; /* the /rejected document */
    size_t rejected_len;
} ciot__shadow_result;

/* Releases the strings of @p r and zeroes it; NULL does nothing. */
void ciot__shadow_result_free(ciot__shadow_result *r);

/*
 * A new, non-existent shadow. @p name (1..CIOT__SHADOW_MAX_NAME bytes, no
 * NUL needed) is the name quoted in `No shadow exists with name: …`; for a
 * classic shadow the caller passes the thing name.
 * Returns 0, CIOT_EINVAL (NULL out or name, bad length, NUL in name) or
 * CIOT_ENOMEM.
 */
int ciot__shadow_new(ciot__shadow **out, const char *name, size_t name_len);
void ciot__shadow_free(ciot__shadow *s);

/*
 * Persisted form (what the emulator keeps on disk): a JSON object with
 * "format":1, "exists", "version", "timestamp", optional "deletedAt",
 * "state" {desired?, reported?} and "metadata" {desired?, reported?}.
 * save: *out is NUL-terminated, from ciot__malloc, freed with ciot__free.
 * load: checks every field (types, metadata shape matching the state,
 * limits) and returns CIOT_ECORRUPT for anything else, CIOT_EINVAL for NULL
 * arguments, CIOT_ENOMEM.
 */
int ciot__shadow_save(char **out, size_t *out_len, const ciot__shadow *s);
int ciot__shadow_load(ciot__shadow **out, const char *name, size_t name_len, const char *json,
                      size_t len);

/*
 * /update: validates @p req (len bytes, no NUL needed) per §2.2/§2.5,
 * checks the version, merges (§2.3), updates metadata, bumps the version
 * and fills @p out (§2.4, §2.6), or fills only out->rejected and leaves
 * the shadow unchanged. @p out is overwritten (not freed) on entry.
 * Returns 0 whenever @p out holds a response (accepted or rejected);
 * CIOT_EINVAL for NULL arguments (req may be NULL when len is 0);
 * CIOT_ENOMEM (shadow unchanged, @p out empty).
 */
int ciot__shadow_update(ciot__shadow_result *out, ciot__shadow *s, const char *req, size_t len,
                        int64_t now_s);

/*
 * /get: @p req is the request payload (empty, or an object whose
 * "clientToken" is echoed). Accepted: the full document with state
 * desired/reported/delta, metadata desired/reported, version, timestamp,
 * clientToken. Rejected: 404 when the shadow does not exist, 400 for a
 * payload that is not a JSON object or a bad clientToken. Returns as
 * ciot__shadow_update().
 */
int ciot__shadow_get(ciot__shadow_result *out, ciot__shadow *s, const char *req, size_t len,
                     int64_t now_s);

/*
 * /delete: accepted {"version":N,"timestamp":T,"clientToken"?} with N the
 * version of the deleted shadow; the shadow then does not exist, and an
 * update within CIOT__SHADOW_RECREATE_WINDOW_S of the delete continues at
 * N+1, later ones restart at 1. 404 when it does not exist.
 */
int ciot__shadow_delete(ciot__shadow_result *out, ciot__shadow *s, const char *req, size_t len,
                        int64_t now_s);

/* Read access (borrowed; valid until the next call that changes @p s). */
bool ciot__shadow_exists(const ciot__shadow *s);
uint64_t ciot__shadow_version(const ciot__shadow *s);
json_t *ciot__shadow_desired(const ciot__shadow *s);  /* NULL: no section; do not modify */
json_t *ciot__shadow_reported(const ciot__shadow *s); /* NULL: no section; do not modify */

/*
 * The current delta (§2.4) as a new jansson object in *out (the caller
 * json_decref()s it), or *out = NULL when the delta is empty.
 * Returns 0, CIOT_EINVAL or CIOT_ENOMEM.
 */
int ciot__shadow_delta(json_t **out, const ciot__shadow *s);

/*
 * Device side: brings a local copy up to date from a document the service
 * published (len bytes, no NUL needed), with the same merge rules.
 * - CIOT__SHADOW_DOC_GET: a /get/accepted document replaces the state and
 *   metadata (applied when its version is >= the local one);
 * - CIOT__SHADOW_DOC_ACCEPTED: an /update/accepted document is merged
 *   (applied when its version is newer);
 * - CIOT__SHADOW_DOC_DELTA: an /update/delta document is merged into
 *   desired (applied when its version is newer; stale deltas are ignored).
 * *applied says whether the copy changed (may be NULL). *gap (may be NULL)
 * is set when an ACCEPTED or DELTA version skipped versions the copy never
 * saw: the copy may then miss changes, and the caller should /get again.
 * Returns 0, CIOT_EINVAL, CIOT_EPROTOCOL (not such a document, or its
 * state breaks the limits; the copy is unchanged) or CIOT_ENOMEM.
 */
enum { CIOT__SHADOW_DOC_GET = 1, CIOT__SHADOW_DOC_ACCEPTED, CIOT__SHADOW_DOC_DELTA };
int ciot__shadow_apply(ciot__shadow *s, int kind, const char *doc, size_t len, bool *applied,
                       bool *gap);

#endif /* CIOT_CORE_SHADOW_DOC_H */
