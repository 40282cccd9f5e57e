/*
 * Azure IoT Hub device connection strings (protocols.md §4.3) and SAS
 * signing with a decoded key (§4.2). Internal to the library.
 */
#ifndef CIOT_BACKEND_AZURE_CONN_H
#define CIOT_BACKEND_AZURE_CONN_H

#include <cloudiot/common.h>

#include <stddef.h>
#include <stdint.h>

/* Size of the message buffer of ciot__azure_conn_parse(). */
#define CIOT__AZURE_ERRMSG_MAX 160
/* Longest connection string accepted. */
#define CIOT__AZURE_CONN_MAX 4096
/* Longest base64 key accepted (Azure keys are 44 or 88 characters). */
#define CIOT__AZURE_KEY_B64_MAX 1024
/* Longest shared access policy name accepted. */
#define CIOT__AZURE_POLICY_MAX 256

/*
 * A parsed connection string. Every string is NUL-terminated and lives in
 * one block with the struct; ciot__azure_conn_free() wipes the whole block
 * (key, signature and all) before freeing it. Absent fields are NULL.
 */
typedef struct ciot__azure_conn {
    const char *host;          /* HostName (required) */
    const char *device_id;     /* DeviceId (required) */
    const char *module_id;     /* ModuleId */
    const char *gateway_host;  /* GatewayHostName: TCP/TLS target only */
    const char *key_name;      /* SharedAccessKeyName: a policy key, sent as skn */
    const char *sas;           /* SharedAccessSignature: a ready-made token (secret) */
    const unsigned char *key;  /* SharedAccessKey, base64-decoded (secret) */
    size_t key_len;            /* > 0 when key is set */
    bool x509;                 /* x509=true: certificate authentication */
    size_t block_size_;        /* private: bytes to wipe */
} ciot__azure_conn;

/*
 * Parses `Key=Value;Key=Value...` (split at the first '=' of each pair;
 * names case-sensitive; one trailing ';' allowed; no whitespace trimmed).
 * Known names: HostName, DeviceId, SharedAccessKey, SharedAccessKeyName,
 * SharedAccessSignature, ModuleId, GatewayHostName, x509, UseProvisioning.
 * The first problem found is reported; a message naming the field (never a
 * value: keys and tokens stay out of it) goes to errmsg when not NULL.
 *
 * @retval 0                    *out set; free with ciot__azure_conn_free()
 * @retval CIOT_EUNKNOWN_OPTION a field name that is not one of the above
 * @retval CIOT_EEXIST          a field given twice
 * @retval CIOT_ENOTFOUND       HostName or DeviceId missing, or no
 *                              credential (SharedAccessKey,
 *                              SharedAccessSignature or x509=true)
 * @retval CIOT_EINVAL          an empty value, a pair without '=' or with
 *                              an empty name, an empty pair, a host or id
 *                              of the wrong form, input that is not UTF-8
 *                              or holds a NUL, NULL arguments
 * @retval CIOT_ETYPE           credentials that exclude each other: x509=true
 *                              with a key, key name or signature;
 *                              SharedAccessKey with SharedAccessSignature;
 *                              SharedAccessKeyName without SharedAccessKey
 *                              but with a signature
 * @retval CIOT_ECORRUPT        SharedAccessKey is not strict base64
 * @retval CIOT_ERANGE          x509 or UseProvisioning with a value other
 *                              than "true"; input or key too long
 * @retval CIOT_ENOTBUILT       UseProvisioning=true (no DPS client here)
 * @retval CIOT_ENOMEM          allocation failed
 */
int ciot__azure_conn_parse(ciot__azure_conn **out, const char *s, size_t len, char *errmsg,
                           size_t errcap);

/* Wipes and frees; NULL is accepted. */
void ciot__azure_conn_free(ciot__azure_conn *c);

/*
 * The SAS token for host/device[/module] signed with the raw key bytes,
 * `SharedAccessSignature sr=..&sig=..&se=..[&skn=..]`. Same output
 * contract and argument rules as ciot_azure_sas_token() (lengths instead of
 * NUL-terminated strings; module and policy NULL when absent).
 * @retval CIOT_EINVAL bad host, id, policy name, key length 0, or out NULL
 *                     while cap > 0
 * @retval CIOT_ERANGE expiry 0
 * @retval CIOT_ENOSPC *out_len = bytes needed
 * @retval CIOT_ERROR  OpenSSL failed to compute the HMAC
 */
int ciot__azure_sas_sign(char *out, size_t cap, size_t *out_len, const char *host, size_t hlen,
                         const char *device, size_t dlen, const char *module, size_t mlen,
                         const char *policy, size_t plen, const unsigned char *key, size_t klen,
                         uint64_t expiry);

#endif
