/*
 * The Azure IoT Hub backend's per-client state (lib/backend/azure.c), for
 * the Azure services and the tests. Internal.
 */
#ifndef CIOT_BACKEND_AZURE_BACKEND_H
#define CIOT_BACKEND_AZURE_BACKEND_H

#include "internal.h"

#include <cloudiot/common.h>

#include <stddef.h>
#include <stdint.h>

/* D2C message size [DOC] S10 (protocols.md §4.6). */
#define CIOT__AZURE_MAX_PAYLOAD 262144
/* Largest useful keep-alive: the hub times out at 1.5x, capped at 1767 s (§4.1). */
#define CIOT__AZURE_KEEPALIVE_MAX 1177

struct ciot__azure_state;

/* Signs a token valid until unix_now + the lifetime into pw (NUL-terminated);
 * *expiry gets its `se`. CIOT_ENOSPC when cap is too small. */
int ciot__azure_sign_now(struct ciot__azure_state *st, char *pw, size_t cap, uint64_t unix_now,
                         uint64_t *expiry);
/* `se` of the token sent with the last connection attempt; 0 before one (or
 * without a key). */
uint64_t ciot__azure_token_expiry(const struct ciot__azure_state *st);
/* The device id, and the module id (empty view for a device identity);
 * valid for the client's life. */
void ciot__azure_identity(const struct ciot__azure_state *st, ciot_view *device,
                          ciot_view *module);

/* The methods and cloud-to-device registry of a client (lib/services/
 * azure_device.c), made and freed with the backend state. */
struct ciot__azure_device;
struct ciot__azure_device *ciot__azure_device_of(const struct ciot__azure_state *st);
int ciot__azure_device_new(struct ciot__azure_device **out);
void ciot__azure_device_free(struct ciot__azure_device *d);

#endif
