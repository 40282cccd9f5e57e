/*
 * Cloud backends: one internal operations table per cloud (architecture.md).
 * The client picks the row named by CIOT_OPT_BACKEND when it is made; the
 * services (telemetry, commands, shadow) know a cloud only through it.
 * Adding a cloud means one file here and one row in ciot__backends[].
 * Internal; never exported.
 */
#ifndef CIOT_BACKEND_BACKEND_H
#define CIOT_BACKEND_BACKEND_H

#include "client/config_internal.h"

#include <stddef.h>

typedef struct ciot__backend {
    int id;           /* a ciot_backend */
    const char *name; /* "mqtt", "aws" */
    /* Default of CIOT_OPT_TELEMETRY_TOPIC ({thing}, {sensorType}). */
    const char *telemetry_topic;
    /* The filter of commands for {thing}; its last level is '+' and names the command. */
    const char *command_filter;
    /* Prefix of the shadow topics of {thing}, or NULL: the backend has no shadow service.
     * A named shadow appends "/name/<shadow>". */
    const char *shadow_prefix;
    /*
     * Adjusts the client's private copy of the settings (defaults, clamps,
     * TLS details) and checks what the cloud requires. Failures return a
     * CIOT_E* code with the reason in the user's config (ciot__config_fail(user, ...)).
     * NULL: nothing to do.
     */
    int (*prepare)(ciot_config *eff, const ciot_config *user);
    /*
     * Checks a topic name (for publish) or filter (for subscribe,
     * is_filter) and a payload length against the cloud's limits. Returns
     * 0 or CIOT_EINVAL with the reason in why. NULL: MQTT's limits only
     * (checked by the client anyway).
     */
    int (*check)(const char *topic, size_t topic_len, size_t payload_len, bool is_filter, char *why,
                 size_t why_cap);
    /*
     * Per-client state of the backend, made from the effective settings
     * once prepare() has run, and freed with the client. NULL: none.
     */
    int (*open)(void **state, const ciot_config *eff);
    void (*close)(void *state);
    /*
     * Before every connection attempt (driver thread, the client's lock
     * held: no callbacks, no I/O): writes the password to send into pw (cap
     * bytes, NUL-terminated) and sets *renew_at_ms (ciot__now_ms() clock) to
     * when the client should reconnect with fresh credentials (UINT64_MAX:
     * never). Returns 0, 1 when no password is sent (the configured one
     * stays), or a CIOT_E* code with the reason in why. NULL: the
     * configured credentials.
     */
    int (*credentials)(void *state, char *pw, size_t cap, uint64_t now_ms, uint64_t *renew_at_ms,
                       char *why, size_t why_cap);
    /* ciot_shadow speaks IoT Hub's device twin ($iothub/twin/...) instead of
     * shadow_prefix topics: one twin per identity, no names. */
    bool iothub_twin;
} ciot__backend;

/* The row of a ciot_backend, or NULL when it is not built (or not a backend). */
const ciot__backend *ciot__backend_get(int id);

#ifdef CIOT_HAVE_AWS
extern const ciot__backend ciot__backend_aws;
#endif
/* Always compiled; in the table only with CIOT_HAVE_AZURE. */
extern const ciot__backend ciot__backend_azure;
extern const ciot__backend ciot__backend_mqtt;

/* AWS limits (protocols.md §1.2), shared with the tests. */
#define CIOT__AWS_MAX_CLIENT_ID 128
#define CIOT__AWS_MAX_TOPIC 256
#define CIOT__AWS_MAX_SLASHES 7
#define CIOT__AWS_MAX_PAYLOAD 131072
#define CIOT__AWS_KEEPALIVE_MIN 30
#define CIOT__AWS_KEEPALIVE_MAX 1200

#endif
