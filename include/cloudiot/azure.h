/**
 * @file azure.h
 * @brief Azure IoT Hub: SAS tokens, and cloud-to-device messages of a client.
 */
#ifndef CLOUDIOT_AZURE_H
#define CLOUDIOT_AZURE_H

#include <cloudiot/client.h>
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

/** A received cloud-to-device message; borrowed, valid during the callback only. */
typedef struct ciot_azure_c2d ciot_azure_c2d;

/**
 * Receives cloud-to-device messages.
 * @param c         the client
 * @param msg       the message; read it with ciot_azure_c2d_*()
 * @param user_data as set
 * @return 0 to go on; any other value is reported as CIOT_EUSER by the
 *         ciot_client_process() call that ran it
 */
typedef int (*ciot_azure_c2d_fn)(ciot_client *c, const ciot_azure_c2d *msg, void *user_data);

/**
 * Sets the callback of cloud-to-device messages and, the first time,
 * subscribes (QoS 1) to `devices/{device}/messages/devicebound/#` (module
 * identity: `devices/{device}/modules/{module}/#`, where only `.../messages/
 * devicebound/...` topics are delivered). The properties of the topic's bag
 * are decoded (percent-decoding; a bare `name` is a property without value,
 * `name=` one with an empty value; a leading '?' is accepted). A message
 * whose bag is malformed still reaches the callback, with no properties and
 * ciot_azure_c2d_error() saying why.
 * @param c         a client of CIOT_BACKEND_AZURE
 * @param fn        the callback; NULL stops delivery (the subscription stays)
 * @param user_data passed to @p fn
 * @retval 0           done
 * @retval CIOT_EINVAL NULL client, or a client of another backend
 * @retval CIOT_ENOMEM, CIOT_ESTATE as ciot_client_subscribe()
 */
CIOT_API CIOT_NODISCARD int ciot_azure_c2d_set_callback(ciot_client *c, ciot_azure_c2d_fn fn,
                                                        void *user_data);

/** The payload (not NUL-terminated) and its length. */
CIOT_API const void *ciot_azure_c2d_payload(const ciot_azure_c2d *msg, size_t *len);

/** The whole topic (not NUL-terminated) and its length. */
CIOT_API const char *ciot_azure_c2d_topic(const ciot_azure_c2d *msg, size_t *len);

/** The number of properties decoded from the topic (0 when malformed). */
CIOT_API size_t ciot_azure_c2d_property_count(const ciot_azure_c2d *msg);

/**
 * Property @p i, in the order of the topic (duplicates kept).
 * @param[out] name      its decoded name (not NUL-terminated)
 * @param[out] value     its decoded value (empty when it has none)
 * @param[out] has_value false for a bare `name` (the hub's null); may be NULL
 * @param msg            the message
 * @param i              0..ciot_azure_c2d_property_count() - 1
 * @retval 0 done  @retval CIOT_ERANGE no such index  @retval CIOT_EINVAL NULL argument
 */
CIOT_API CIOT_NODISCARD int ciot_azure_c2d_property(ciot_view *name, ciot_view *value,
                                                    bool *has_value, const ciot_azure_c2d *msg,
                                                    size_t i);

/**
 * The value of the first property named @p name (decoded, byte for byte).
 * @retval 0 found  @retval CIOT_ENOTFOUND none  @retval CIOT_EINVAL NULL argument
 */
CIOT_API CIOT_NODISCARD int ciot_azure_c2d_property_find(ciot_view *value,
                                                         const ciot_azure_c2d *msg,
                                                         const char *name, size_t name_len);

/** 0, or CIOT_EPROTOCOL when the topic's property bag could not be decoded. */
CIOT_API int ciot_azure_c2d_error(const ciot_azure_c2d *msg);

CIOT_END_DECLS

#endif /* CLOUDIOT_AZURE_H */
