/*
 * Azure IoT Hub building blocks (protocols.md §4): base64, URL encoding,
 * identity checks, the MQTT user name and client id, and the message
 * property bag of telemetry and cloud-to-device topics.
 *
 * Pure: no I/O, no globals, no allocation. Every builder writes into caller
 * memory with the library's usual contract: the text is exactly *out_len
 * bytes, a NUL follows when cap > *out_len (never required, never counted),
 * and CIOT_ENOSPC sets *out_len to the exact size needed (nothing useful is
 * written then). out may be NULL when cap is 0, to measure.
 */
#ifndef CIOT_CORE_AZURE_H
#define CIOT_CORE_AZURE_H

#include <cloudiot/common.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits checked by the validators below. */
#define CIOT__AZURE_ID_MAX 128         /* device and module ids [DOC] S10 */
#define CIOT__AZURE_HOST_MAX 255       /* DNS names */
#define CIOT__AZURE_MID_MAX 128        /* $.mid: ASCII, at most 128 [DOC] */
#define CIOT__AZURE_TOPIC_MAX 65535    /* an MQTT topic name [SPEC] */
#define CIOT__AZURE_API_VERSION "2021-04-12"

/* ---- base64 (RFC 4648 §4, standard alphabet, with padding) ---- */

/* 4 * ceil(n / 3); n must be below SIZE_MAX / 4 * 3. */
size_t ciot__b64_encoded_len(size_t n);
/* Writes exactly ciot__b64_encoded_len(n) bytes (no NUL). */
void ciot__b64_encode(char *out, const unsigned char *in, size_t n);
/*
 * Strict decoder: the length must be a multiple of 4, only the standard
 * alphabet, '=' only as one or two final padding characters, the unused
 * bits of the last group zero (one canonical spelling per byte string), no
 * whitespace. "" decodes to 0 bytes.
 * @retval 0            decoded; *out_len bytes in out
 * @retval CIOT_ECORRUPT not base64 as above (nothing useful in out)
 * @retval CIOT_ENOSPC  cap too small; *out_len = bytes needed
 * @retval CIOT_EINVAL  NULL where a pointer is needed
 */
int ciot__b64_decode(unsigned char *out, size_t cap, size_t *out_len, const char *in, size_t len);

/* ---- percent-encoding (RFC 3986) ---- */

/* true for the unreserved set A-Z a-z 0-9 - _ . ~ , kept as is. */
bool ciot__azure_url_unreserved(unsigned char c);
/* Length of s once every byte outside the unreserved set is %XX. */
size_t ciot__azure_url_encoded_len(const char *s, size_t len);
/* Writes ciot__azure_url_encoded_len() bytes; hex digits upper-case. */
size_t ciot__azure_url_encode(char *out, const char *s, size_t len);
/*
 * Percent-decoding: "%XX" (either case of hex digit) becomes one byte,
 * every other byte is copied ('+' stays '+': RFC 3986, not form encoding).
 * The result is never longer than the input.
 * @retval CIOT_EPROTOCOL a '%' not followed by two hex digits
 * @retval CIOT_ENOSPC    cap too small; *out_len = bytes needed
 */
int ciot__azure_url_decode(char *out, size_t cap, size_t *out_len, const char *s, size_t len);

/* ---- identities ---- */

/* Device or module id: 1..128 bytes of A-Z a-z 0-9 and - . % _ * ? ! ( ) , : = @ $ '
 * ([DOC] S10 identity registry; '/', '+', '#', spaces, non-ASCII refused). */
bool ciot__azure_id_valid(const char *s, size_t len);
/* Host name: 1..255 bytes of A-Z a-z 0-9 - . _ , not starting or ending
 * with '.' or '-'. */
bool ciot__azure_host_valid(const char *s, size_t len);

/*
 * MQTT user name `{host}/{device}/?api-version=2021-04-12`, or with a
 * module `{host}/{device}/{module}/?api-version=2021-04-12` [DOC] S8.
 * module may be NULL (mlen ignored) for a device identity.
 * @retval CIOT_EINVAL an invalid host or id (see the validators), or out
 *                     NULL while cap > 0
 * @retval CIOT_ENOSPC *out_len = bytes needed
 */
int ciot__azure_username(char *out, size_t cap, size_t *out_len, const char *host, size_t hlen,
                         const char *device, size_t dlen, const char *module, size_t mlen);
/* MQTT client id: `{device}` or `{device}/{module}`. Errors as above. */
int ciot__azure_client_id(char *out, size_t cap, size_t *out_len, const char *device, size_t dlen,
                          const char *module, size_t mlen);

/* ---- property bags ---- */

/* One property of a bag: views of raw (not encoded) bytes. has_value false
 * is a property without '=' (the hub's form of a null value); value is then
 * ignored on encoding and empty on decoding. */
typedef struct ciot__azure_prop {
    ciot_view name;
    ciot_view value;
    bool has_value;
} ciot__azure_prop;

/* System properties of a device-to-cloud message; a view with len 0 is
 * left out. Written in this order, before the application properties. */
typedef struct ciot__azure_sysprops {
    ciot_view content_type;     /* $.ct, e.g. application/json */
    ciot_view content_encoding; /* $.ce, e.g. utf-8 */
    ciot_view message_id;       /* $.mid, <= 128 printable ASCII */
    ciot_view correlation_id;   /* $.cid */
    ciot_view user_id;          /* $.uid */
    ciot_view creation_time;    /* $.ctime */
    ciot_view component;        /* $.sub */
} ciot__azure_sysprops;

/*
 * Telemetry topic `devices/{device}/messages/events/{bag}` (module:
 * `devices/{device}/modules/{module}/messages/events/{bag}`) [DOC] S8.
 * The bag is `name=value&...`: system properties first, with their `$.`
 * prefix written literally as in protocols.md §4.5 (the hub also accepts
 * `%24.`), then props[0..n) in order; every name and value is
 * percent-encoded (ciot__azure_url_encode: unreserved kept, %XX upper-case,
 * space as %20). sys may be NULL; props may be NULL when n is 0.
 * @retval CIOT_EINVAL an invalid id; a name that is empty, starts with "$."
 *         (reserved for system properties) or is not UTF-8; a value that is
 *         not UTF-8 (NUL bytes are refused in both); a $.mid longer than
 *         128 bytes or not printable ASCII; out NULL while cap > 0
 * @retval CIOT_ERANGE the topic would be longer than 65535 bytes (MQTT)
 * @retval CIOT_ENOSPC *out_len = bytes needed
 */
int ciot__azure_telemetry_topic(char *out, size_t cap, size_t *out_len, const char *device,
                                size_t dlen, const char *module, size_t mlen,
                                const ciot__azure_sysprops *sys, const ciot__azure_prop *props,
                                size_t n);

/*
 * Decodes a property bag (the part after `devicebound/`): an optional
 * leading '?', then properties separated by '&' (empty ones skipped), each
 * `name`, `name=` or `name=value`, split at the first '='. Names and values
 * are percent-decoded into buf (back to back) and props[i] views point
 * into buf. Since decoding never lengthens, a buf of len bytes always
 * suffices. Order and duplicates are kept as received.
 * @param buf_len  set to the bytes of buf used, or needed on CIOT_ENOSPC
 * @param n        set to the number of properties (found, or needed)
 * @retval CIOT_EPROTOCOL a malformed escape, an empty name, or a decoded
 *         name or value that is not UTF-8 (*n and *buf_len not set). UTF-8
 *         is checked only on what is decoded, so a measuring call may give
 *         CIOT_ENOSPC where the full call then gives CIOT_EPROTOCOL.
 * @retval CIOT_ENOSPC buf or props too small; *buf_len and *n say how much
 *         is needed (buf and props hold nothing useful then)
 * @retval CIOT_EINVAL NULL where a pointer is needed
 */
int ciot__azure_bag_decode(char *buf, size_t cap, size_t *buf_len, ciot__azure_prop *props,
                           size_t max, size_t *n, const char *bag, size_t len);

/*
 * Splits a received cloud-to-device topic `devices/{device}/messages/
 * devicebound/{bag}` (or `devices/{device}/modules/{module}/messages/
 * devicebound/{bag}`). Sets *matched; when false, the other outputs are not
 * set and 0 is returned ("no match" is not an error). module is an empty
 * view for a device topic. The ids are not validated beyond being
 * non-empty and free of '/'.
 * @retval CIOT_EINVAL NULL where a pointer is needed
 */
int ciot__azure_c2d_split(bool *matched, ciot_view *device, ciot_view *module, ciot_view *bag,
                          const char *topic, size_t len);

#endif
