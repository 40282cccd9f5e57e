#include "client/tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail_file(const ciot_config *cfg, const char *what, const char *path, const char *why)
{
    unsigned long e = ERR_peek_last_error();
    char ssl[200] = "";
    if (e)
        ERR_error_string_n(e, ssl, sizeof ssl);
    ERR_clear_error();
    return ciot__config_fail(cfg, CIOT_ETLS, "TLS: %s %s: %s%s%s", what, path, why,
                             ssl[0] ? " (" : "", ssl[0] ? ssl : "");
}

static int readable(const ciot_config *cfg, const char *what, const char *path, bool dir)
{
    struct stat st;
    if (stat(path, &st) != 0 || access(path, R_OK) != 0)
        return ciot__config_fail(cfg, CIOT_ETLS, "TLS: %s %s is unreadable: %s", what, path,
                                 strerror(errno));
    if (dir != S_ISDIR(st.st_mode))
        return ciot__config_fail(cfg, CIOT_ETLS, "TLS: %s %s is %s", what, path,
                                 dir ? "not a directory" : "a directory");
    return 0;
}

static SSL_CTX *ctx_of(SSL *ssl)
{
    return SSL_get_SSL_CTX(ssl);
}

static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    ciot__tls *t = SSL_CTX_get_app_data(ctx_of(ssl));
    if (!t)
        return 0;
    if (t->session)
        SSL_SESSION_free(t->session);
    t->session = sess;
    return 1; /* we keep the reference */
}

static void on_info(const SSL *ssl, int where, int ret)
{
    (void)ret;
    ciot__tls *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (!t)
        return;
    /* libmosquitto makes the SSL object itself; offer the saved session
     * before the ClientHello is written. */
    if ((where & SSL_CB_HANDSHAKE_START) && !SSL_is_server(ssl) && !SSL_is_init_finished(ssl)) {
        SSL *s = (SSL *)(uintptr_t)ssl;
        /* libmosquitto sends the connect host as SNI; CIOT_OPT_TLS_SNI may differ. */
        if (t->host[0])
            SSL_set_tlsext_host_name(s, t->host);
        if (t->session && SSL_get_session(ssl) == NULL)
            SSL_set_session(s, t->session);
    }
    if (where & SSL_CB_HANDSHAKE_DONE)
        t->resumed = SSL_session_reused((SSL *)(uintptr_t)ssl) == 1;
}

static int on_verify(int ok, X509_STORE_CTX *store)
{
    if (!ok) {
        SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
        ciot__tls *t = ssl ? SSL_CTX_get_app_data(ctx_of(ssl)) : NULL;
        if (t && !t->verify_error)
            t->verify_error = X509_STORE_CTX_get_error(store);
    }
    return ok;
}

int ciot__tls_init(ciot__tls *t, const ciot_config *cfg)
{
    memset(t, 0, sizeof *t);
    const char *ca = cfg->strs[CIOT_OPT_TLS_CA_FILE], *cadir = cfg->strs[CIOT_OPT_TLS_CA_DIR];
    const char *cert = cfg->strs[CIOT_OPT_TLS_CERT_FILE], *key = cfg->strs[CIOT_OPT_TLS_KEY_FILE];
    const char *alpn = cfg->strs[CIOT_OPT_TLS_ALPN];
    bool insecure = cfg->ints[CIOT_OPT_TLS_INSECURE_SKIP_VERIFY] != 0;
    int rc;

    if ((cert != NULL) != (key != NULL))
        return ciot__config_fail(cfg, CIOT_EINVAL, "TLS: a client certificate needs its key and a "
                                                   "key its certificate (CIOT_OPT_TLS_%s is not set)",
                                 cert ? "KEY_FILE" : "CERT_FILE");
    if (ca && (rc = readable(cfg, "CA file", ca, false)) != 0)
        return rc;
    if (cadir && (rc = readable(cfg, "CA directory", cadir, true)) != 0)
        return rc;
    if (cert && (rc = readable(cfg, "certificate file", cert, false)) != 0)
        return rc;
    if (key && (rc = readable(cfg, "key file", key, false)) != 0)
        return rc;

    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return ciot__config_fail(cfg, CIOT_ENOMEM, "TLS: cannot make a context");
    t->ctx = ctx;
    SSL_CTX_set_app_data(ctx, t);
    SSL_CTX_set_min_proto_version(ctx, cfg->ints[CIOT_OPT_TLS_MIN_VERSION] == 13 ? TLS1_3_VERSION
                                                                                : TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);

    if (ca || cadir) {
        if (SSL_CTX_load_verify_locations(ctx, ca, cadir) != 1) {
            rc = fail_file(cfg, ca ? "CA file" : "CA directory", ca ? ca : cadir,
                           "holds no usable certificate");
            goto fail;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        rc = fail_file(cfg, "system CA store", "", "cannot be loaded");
        goto fail;
    }
    if (cert) {
        if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
            rc = fail_file(cfg, "certificate file", cert, "is not a PEM certificate");
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
            unsigned long e = ERR_peek_last_error();
            bool mismatch = ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH;
            rc = fail_file(cfg, "key file", key,
                           mismatch ? "does not match the certificate" : "is not a PEM private key");
            goto fail;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            rc = fail_file(cfg, "key file", key, "does not match the certificate");
            goto fail;
        }
    }
    if (alpn) {
        unsigned char wire[256];
        size_t n = strlen(alpn);
        wire[0] = (unsigned char)n;
        memcpy(wire + 1, alpn, n);
        if (SSL_CTX_set_alpn_protos(ctx, wire, (unsigned)n + 1) != 0) {
            rc = ciot__config_fail(cfg, CIOT_ETLS, "TLS: ALPN protocol refused by OpenSSL");
            goto fail;
        }
    }
    const char *name = cfg->strs[CIOT_OPT_TLS_SNI] ? cfg->strs[CIOT_OPT_TLS_SNI]
                                                  : cfg->strs[CIOT_OPT_HOST];
    snprintf(t->host, sizeof t->host, "%s", name ? name : "");
    if (insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, on_verify);
        X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
        /* An address is checked against the IP SANs, a name against the DNS names. */
        if (X509_VERIFY_PARAM_set1_ip_asc(param, t->host) != 1) {
            X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            if (X509_VERIFY_PARAM_set1_host(param, t->host, 0) != 1) {
                rc = ciot__config_fail(cfg, CIOT_EINVAL, "TLS: cannot verify host name \"%s\"",
                                       t->host);
                goto fail;
            }
        }
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    SSL_CTX_set_info_callback(ctx, on_info);
    ERR_clear_error();
    return 0;
fail:
    SSL_CTX_free(ctx);
    t->ctx = NULL;
    return rc;
}

void ciot__tls_free(ciot__tls *t)
{
    if (t->session)
        SSL_SESSION_free(t->session);
    if (t->ctx)
        SSL_CTX_free(t->ctx);
    memset(t, 0, sizeof *t);
}

void ciot__tls_describe_failure(const ciot__tls *t, const char *ssl_log, char *out, size_t cap)
{
    switch (t->verify_error) {
    case 0:
        break;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        snprintf(out, cap, "TLS: host name mismatch: the server's certificate is not for \"%s\"",
                 t->host);
        return;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_UNTRUSTED:
        snprintf(out, cap, "TLS: chain not trusted: %s",
                 X509_verify_cert_error_string(t->verify_error));
        return;
    default:
        snprintf(out, cap, "TLS: server certificate rejected: %s",
                 X509_verify_cert_error_string(t->verify_error));
        return;
    }
    if (ssl_log && *ssl_log)
        snprintf(out, cap, "TLS: handshake refused: %s", ssl_log);
    else
        snprintf(out, cap, "TLS: handshake failed");
}
