/*
 * The Azure IoT Hub device twin document engine (protocols.md §4.6–§4.7):
 * one twin's desired and reported sections, each with its own $version;
 * the merge of desired patches (service side) and reported patches
 * (device side), with the hub's limits and status codes; the MQTT GET
 * document; the desired-patch notification body; a persisted form; and a
 * device-side copy kept up to date from GET documents and desired patches.
 *
 * Internal; never exported. Pure: no I/O, no clock, no threads, no
 * globals. A ciot__twin is not thread-safe; distinct twins are
 * independent. Built on jansson's DOM; every string it produces is compact
 * JSON with a fixed key order (the order in which keys were first set), so
 * the same inputs give the same bytes.
 */
#ifndef CIOT_CORE_TWIN_DOC_H
#define CIOT_CORE_TWIN_DOC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits of §4.6–§4.7 (tags in twin_doc.c). */
#define CIOT__TWIN_MAX_SECTION_SIZE (32 * 1024) /* computed size of desired / reported */
#define CIOT__TWIN_MAX_DEPTH 10                 /* containers below the section */
#define CIOT__TWIN_MAX_KEY 1024                 /* key bytes */
#define CIOT__TWIN_MAX_STRING 4096              /* string value bytes */
#define CIOT__TWIN_MAX_INT INT64_C(4503599627370495)
#define CIOT__TWIN_MIN_INT INT64_C(-4503599627370496)
#define CIOT__TWIN_MAX_PATCH (128 * 1024) /* patch payload bytes, checked before parsing */

enum { CIOT__TWIN_DESIRED = 0, CIOT__TWIN_REPORTED = 1 };

typedef struct ciot__twin ciot__twin;

/*
 * What a patch produced. `status` is the hub's code: 204 for an accepted
 * reported patch (the MQTT reply), 200 for an accepted desired patch (the
 * service API's answer); 400 for a payload that is not a JSON object or
 * breaks a rule (`message` says which), 413 when the section would exceed
 * CIOT__TWIN_MAX_SECTION_SIZE or the payload CIOT__TWIN_MAX_PATCH.
 * On acceptance `version` is the section's new $version and, for a desired
 * patch, `notification` is the body pushed to the device (the patch as
 * received, nulls included, then "$version"), NUL-terminated, from
 * ciot__malloc, released by ciot__twin_result_free().
 */
typedef struct ciot__twin_result {
    int status;
    uint64_t version;
    const char *message; /* static text; "" when accepted */
    char *notification;
    size_t notification_len;
} ciot__twin_result;

void ciot__twin_result_free(ciot__twin_result *r);

/* A new twin: both sections empty at $version 1 (what the hub shows for a
 * new identity). Returns 0, CIOT_EINVAL (out NULL) or CIOT_ENOMEM. */
int ciot__twin_new(ciot__twin **out);
void ciot__twin_free(ciot__twin *t);

/*
 * Merges patch @p p (len bytes, no NUL needed) into section @p section:
 * members are added or replaced, null removes a member (absent: no
 * error), objects merge recursively, arrays and scalars replace. The patch
 * is checked first (keys, values, depth; see twin_doc.c) and the result's
 * size after; a rejected patch leaves the twin unchanged. Every accepted
 * patch increments the section's $version, also one that changes nothing.
 * @p out is overwritten (not freed) on entry.
 * Returns 0 whenever @p out holds an answer (accepted or rejected);
 * CIOT_EINVAL for NULL arguments or a bad section; CIOT_ENOMEM (twin
 * unchanged, @p out empty).
 */
int ciot__twin_patch(ciot__twin_result *out, ciot__twin *t, int section, const char *p, size_t len);

/* The GET document {"desired":{…,"$version":n},"reported":{…,"$version":m}}.
 * *out is NUL-terminated, from ciot__malloc (free with ciot__free).
 * Returns 0, CIOT_EINVAL or CIOT_ENOMEM. */
int ciot__twin_get(char **out, size_t *out_len, const ciot__twin *t);

/*
 * Persisted form: {"format":1,"desired":{…},"desiredVersion":n,
 * "reported":{…},"reportedVersion":m}. save as ciot__twin_get(). load
 * checks everything (no other member, no duplicate key, versions integers
 * >= 1, sections that pass the patch rules with no null anywhere and fit
 * the size limit) and returns CIOT_ECORRUPT otherwise; CIOT_EINVAL for
 * NULL arguments; CIOT_ENOMEM.
 */
int ciot__twin_save(char **out, size_t *out_len, const ciot__twin *t);
int ciot__twin_load(ciot__twin **out, const char *json, size_t len);

/* Read access (borrowed, valid until the next change; do not modify). */
uint64_t ciot__twin_version(const ciot__twin *t, int section); /* 0 for a bad section */
json_t *ciot__twin_section(const ciot__twin *t, int section);  /* NULL for a bad section */
/* The section's size as the hub counts it against CIOT__TWIN_MAX_SECTION_SIZE
 * (0 for a bad section). */
size_t ciot__twin_size(const ciot__twin *t, int section);

/*
 * Device side: brings a local copy up to date from what the hub sent.
 * - CIOT__TWIN_DOC_GET: a GET document. Each section is replaced when its
 *   $version is >= the local one (so a desired patch that overtook the GET
 *   is not lost); `$metadata` and other `$` members of a section are
 *   ignored.
 * - CIOT__TWIN_DOC_DESIRED: a desired-patch notification (patch members
 *   and "$version"). Ignored when its $version is <= the local desired
 *   $version (stale: already in a GET); merged otherwise, and *gap is set
 *   when it skipped versions (the copy may miss changes: GET again).
 * *applied (may be NULL) says whether the copy changed.
 * Returns 0, CIOT_EINVAL, CIOT_EPROTOCOL (not such a document or it breaks
 * the rules; the copy is unchanged) or CIOT_ENOMEM.
 */
enum { CIOT__TWIN_DOC_GET = 1, CIOT__TWIN_DOC_DESIRED };
int ciot__twin_apply(ciot__twin *t, int kind, const char *doc, size_t len, bool *applied,
                     bool *gap);

#endif /* CIOT_CORE_TWIN_DOC_H */
