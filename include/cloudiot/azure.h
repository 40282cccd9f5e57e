/**
 * @file azure.h
 * @brief Azure IoT Hub helpers that stand on their own: SAS tokens.
 */
#ifndef CLOUDIOT_AZURE_H
#define CLOUDIOT_AZURE_H

#include <cloudiot/common.h>

CIOT_BEGIN_DECLS

/**
 * Builds the shared access signature that an Azure IoT Hub device or
 * module sends as its MQTT password:
 * `SharedAccessSignature sr={resource}&sig={signature}&se={expiry}[&skn={policy}]`.
 *
 * The resource is `{host}/devices/{device_id}` or
 * `{host}/devices/{device_id}/modules/{module_id}`, percent-encoded as a
 * whole: the RFC 3986 unreserved bytes `A-Z a-z 0-9 - _ . ~` stay, every
 * other byte becomes `%XX` with upper-case hex (so `/` is `%2F`), as
 * azure-sdk-for-c does. The signature is
 * base64(HMAC-SHA256(key, resource_encoded + "\n" + expiry)), percent-encoded
 * the same way (`+` `/` `=` become `%2B` `%2F` `%3D`). `skn` (also
 * percent-encoded) is added only for a shared access policy key.
 *
 * The output follows the library's buffer contract: exactly @p *out_len
 * bytes; a NUL after them when @p cap > @p *out_len (never required, never
 * counted). The decoded key is held on the stack only and wiped before the
 * function returns. Thread-safe; allocates nothing itself (OpenSSL's HMAC
 * may allocate internally).
 *
 * @param out        where the token goes; may be NULL when @p cap is 0
 *                   (to measure)
 * @param cap        size of @p out in bytes
 * @param out_len    set to the token length on success, and to the size
 *                   needed on CIOT_ENOSPC; may be NULL
 * @param host       the hub's host name, e.g. `myhub.azure-devices.net`
 *                   (1..255 bytes of `A-Z a-z 0-9 - . _`); NUL-terminated
 * @param device_id  1..128 bytes of `A-Z a-z 0-9 - . % _ * ? ! ( ) , : = @ $ '`
 * @param module_id  NULL for a device identity; otherwise like @p device_id
 * @param policy_name NULL unless @p key_base64 is a shared access policy
 *                   key; then 1..256 bytes of UTF-8 without control
 *                   characters
 * @param key_base64 the key as the portal shows it: strict base64
 *                   (RFC 4648 standard alphabet, padded, canonical, no
 *                   whitespace), 1..1024 characters
 * @param expiry_unix expiry in seconds since 1970-01-01T00:00:00Z; not 0
 *
 * @retval 0             written
 * @retval CIOT_ENOSPC   @p cap is too small; @p *out_len is the size needed
 *                       and the contents of @p out are unspecified
 * @retval CIOT_EINVAL   a required pointer is NULL (@p out with @p cap > 0,
 *                       @p host, @p device_id, @p key_base64), a string is
 *                       empty, has bytes outside its set above or is not
 *                       UTF-8 (@p policy_name)
 * @retval CIOT_ECORRUPT @p key_base64 is not strict base64
 * @retval CIOT_ERANGE   @p expiry_unix is 0, or @p key_base64 or
 *                       @p policy_name is too long
 * @retval CIOT_ERROR    OpenSSL could not compute the HMAC
 */
CIOT_API CIOT_NODISCARD int ciot_azure_sas_token(char *out, size_t cap, size_t *out_len,
                                                 const char *host, const char *device_id,
                                                 const char *module_id, const char *policy_name,
                                                 const char *key_base64, uint64_t expiry_unix);

CIOT_END_DECLS

#endif /* CLOUDIOT_AZURE_H */
