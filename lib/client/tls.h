/* TLS for the client: one SSL_CTX per client, certificates loaded once,
 * verification of the chain and the host name, session resumption, and
 * errors that name their cause. */
#ifndef CIOT_CLIENT_TLS_H
#define CIOT_CLIENT_TLS_H

#include "client/config_internal.h"

#include <openssl/ssl.h>

typedef struct ciot__tls {
    SSL_CTX *ctx;
    SSL_SESSION *session; /* last session the server gave; offered on reconnect */
    int verify_error;     /* X509_V_* of the last failed verification, 0 if none */
    bool resumed;         /* the last handshake resumed a session */
    char host[256];       /* name verified (SNI or host) */
} ciot__tls;

/* Builds the context from the config (TLS must be on). On failure writes the
 * cause into the config's errmsg and returns CIOT_EINVAL (inconsistent
 * settings) or CIOT_ETLS (a file unreadable or unusable, key mismatch). */
int ciot__tls_init(ciot__tls *t, const ciot_config *cfg);
void ciot__tls_free(ciot__tls *t);

/* Describes why the last handshake failed, from the verification result and
 * the OpenSSL error text libmosquitto logged (may be ""). */
void ciot__tls_describe_failure(const ciot__tls *t, const char *ssl_log, char *out, size_t cap);

#endif
