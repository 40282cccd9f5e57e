/*
 * The emulator's test PKI, made with the OpenSSL C API: a self-signed CA,
 * a server certificate for localhost and an admin client certificate
 * (EC P-256, SHA-256, valid two years), and device certificates issued by
 * that CA the way AWS IoT's CreateKeysAndCertificate issues them
 * (RSA-2048 key pair, clientAuth). No mosquitto dependency.
 *
 * Files of a generated directory: ca.crt ca.key server.crt server.key
 * admin.crt admin.key (keys mode 0600, certificates 0644).
 * Functions return 0 or a negative CIOT_E* code and, on failure, write a
 * one-line reason to err (if not NULL).
 */
#ifndef CIOT_EMULATOR_PKI_H
#define CIOT_EMULATOR_PKI_H

#include <stdbool.h>
#include <stddef.h>

#define CIOT__PKI_ADMIN_CN "cloudiot-admin"
#define CIOT__PKI_DEVICE_CN "AWS IoT Certificate"

/* Generates the PKI in @p dir, which must be missing or empty (it is
 * created, mode 0700). @retval 0, CIOT_EEXIST (not empty), CIOT_EIO, CIOT_ERROR */
int ciot__pki_generate(const char *dir, char *err, size_t errlen);

/* Uses the PKI in @p dir if it has ca.crt, generates one if @p dir is
 * missing or empty (*generated = true). A non-empty directory without
 * ca.crt is refused (CIOT_EINVAL): nothing is written into it. */
int ciot__pki_ensure(const char *dir, bool *generated, char *err, size_t errlen);

typedef struct ciot__pki_issued {
    char *cert_pem;    /* the certificate, PEM */
    char *public_pem;  /* "-----BEGIN PUBLIC KEY-----" */
    char *private_pem; /* "-----BEGIN PRIVATE KEY-----" (PKCS#8) */
    char id[65];       /* SHA-256 of the certificate's DER, lowercase hex */
} ciot__pki_issued;

/* Issues a client certificate with subject CN @p cn (1..64 bytes) signed
 * by the CA in @p ca_dir (ca.crt, ca.key); free with ciot__pki_issued_free.
 * @retval 0, CIOT_EINVAL, CIOT_EIO (CA unreadable), CIOT_ENOMEM, CIOT_ERROR */
int ciot__pki_issue_device(ciot__pki_issued *out, const char *ca_dir, const char *cn, char *err,
                           size_t errlen);
void ciot__pki_issued_free(ciot__pki_issued *out);

/* Certificate id (SHA-256 of the DER, lowercase hex) of the first
 * certificate in @p pem. @retval 0, CIOT_EINVAL (no certificate) */
int ciot__pki_cert_id(const char *pem, size_t len, char out[65]);

#endif /* CIOT_EMULATOR_PKI_H */
