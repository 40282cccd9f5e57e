/* The emulator's test PKI with the OpenSSL C API; see pki.h. */
#include "pki.h"
#include "registry.h"

#include <cloudiot/error.h>

#include <dirent.h>
#include <errno.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define VALID_DAYS 730

static int fail(char *err, size_t errlen, int rc, const char *what)
{
    if (err && errlen) {
        unsigned long e = ERR_peek_last_error();
        char ebuf[200] = "";
        if (e)
            ERR_error_string_n(e, ebuf, sizeof ebuf);
        snprintf(err, errlen, "%s%s%s", what, e ? ": " : "", ebuf);
    }
    ERR_clear_error();
    return rc;
}

static EVP_PKEY *new_key(bool rsa)
{
    if (rsa)
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

static bool add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return false;
    bool ok = X509_add_ext(cert, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

struct ext {
    int nid;
    const char *value;
};

/* A certificate for @p key with subject CN @p cn, signed by @p ca_key
 * (issuer @p ca; NULL: self-signed). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *ca, EVP_PKEY *ca_key,
                       const struct ext *exts, size_t n_ext)
{
    X509 *x = X509_new();
    BIGNUM *bn = BN_new();
    bool ok = x && bn && X509_set_version(x, 2) == 1;
    /* A random positive 127-bit serial. */
    ok = ok && BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) == 1 &&
         BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    ok = ok && X509_gmtime_adj(X509_getm_notBefore(x), -300) != NULL &&
         X509_time_adj_ex(X509_getm_notAfter(x), VALID_DAYS, 0, NULL) != NULL;
    ok = ok && X509_set_pubkey(x, key) == 1;
    X509_NAME *name = ok ? X509_get_subject_name(x) : NULL;
    ok = ok && X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn,
                                          -1, -1, 0) == 1;
    ok = ok && X509_set_issuer_name(x, ca ? X509_get_subject_name(ca) : name) == 1;
    for (size_t i = 0; ok && i < n_ext; i++)
        ok = add_ext(x, ca ? ca : x, exts[i].nid, exts[i].value);
    ok = ok && X509_sign(x, ca_key ? ca_key : key, EVP_sha256()) > 0;
    BN_free(bn);
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static char *bio_string(BIO *b)
{
    char *p;
    long n = BIO_get_mem_data(b, &p);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    memcpy(s, p, (size_t)n);
    s[n] = '\0';
    return s;
}

static char *cert_pem(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *s = b && PEM_write_bio_X509(b, x) == 1 ? bio_string(b) : NULL;
    BIO_free(b);
    return s;
}

static char *key_pem(EVP_PKEY *k, bool public_only)
{
    BIO *b = BIO_new(BIO_s_mem());
    int ok = b ? (public_only ? PEM_write_bio_PUBKEY(b, k)
                              : PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL))
               : 0;
    char *s = ok == 1 ? bio_string(b) : NULL;
    BIO_free(b);
    return s;
}

static int write_pem(const char *dir, const char *file, const char *pem, mode_t mode, char *err,
                     size_t errlen)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (!pem)
        return fail(err, errlen, CIOT_ENOMEM, "PEM encoding failed");
    if (ciot__write_atomic(path, pem, strlen(pem), mode) != 0) {
        if (err && errlen)
            snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return CIOT_EIO;
    }
    return 0;
}

static int write_pair(const char *dir, const char *name, X509 *x, EVP_PKEY *k, char *err,
                      size_t errlen)
{
    char file[64];
    snprintf(file, sizeof file, "%s.key", name);
    char *kp = key_pem(k, false);
    int rc = write_pem(dir, file, kp, 0600, err, errlen);
    free(kp);
    if (rc)
        return rc;
    snprintf(file, sizeof file, "%s.crt", name);
    char *cp = cert_pem(x);
    rc = write_pem(dir, file, cp, 0644, err, errlen);
    free(cp);
    return rc;
}

/* 1: missing or empty, 0: has entries, -1: not a readable directory. */
static int dir_empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 1 : -1;
    struct dirent *e;
    int empty = 1;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            empty = 0;
            break;
        }
    closedir(d);
    return empty;
}

int ciot__pki_generate(const char *dir, char *err, size_t errlen)
{
    if (!dir || !*dir || strlen(dir) > 1000) {
        if (err && errlen)
            snprintf(err, errlen, "invalid PKI directory");
        return CIOT_EINVAL;
    }
    int e = dir_empty(dir);
    if (e <= 0) {
        if (err && errlen)
            snprintf(err, errlen, "%s: %s", dir,
                     e == 0 ? "not empty; a test PKI is only generated into an empty directory"
                            : strerror(errno));
        return e == 0 ? CIOT_EEXIST : CIOT_EIO;
    }
    if (ciot__mkdir_p(dir, 0700) != 0) {
        if (err && errlen)
            snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return CIOT_EIO;
    }
    EVP_PKEY *ca_key = new_key(false), *srv_key = new_key(false), *adm_key = new_key(false);
    X509 *ca = NULL, *srv = NULL, *adm = NULL;
    int rc = CIOT_ERROR;
    if (!ca_key || !srv_key || !adm_key) {
        rc = fail(err, errlen, CIOT_ERROR, "key generation failed");
        goto out;
    }
    const struct ext ca_ext[] = {
        {NID_basic_constraints, "critical,CA:TRUE"},
        {NID_key_usage, "critical,keyCertSign,cRLSign"},
        {NID_subject_key_identifier, "hash"},
    };
    const struct ext srv_ext[] = {
        {NID_basic_constraints, "CA:FALSE"},
        {NID_key_usage, "critical,digitalSignature"},
        {NID_ext_key_usage, "serverAuth"},
        {NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1"},
        {NID_subject_key_identifier, "hash"},
        {NID_authority_key_identifier, "keyid"},
    };
    const struct ext adm_ext[] = {
        {NID_basic_constraints, "CA:FALSE"},
        {NID_key_usage, "critical,digitalSignature"},
        {NID_ext_key_usage, "clientAuth"},
        {NID_subject_key_identifier, "hash"},
        {NID_authority_key_identifier, "keyid"},
    };
    ca = make_cert(ca_key, "cloudiot emulator test CA", NULL, NULL, ca_ext,
                   sizeof ca_ext / sizeof *ca_ext);
    srv = ca ? make_cert(srv_key, "localhost", ca, ca_key, srv_ext,
                         sizeof srv_ext / sizeof *srv_ext)
             : NULL;
    adm = srv ? make_cert(adm_key, CIOT__PKI_ADMIN_CN, ca, ca_key, adm_ext,
                          sizeof adm_ext / sizeof *adm_ext)
              : NULL;
    if (!adm) {
        rc = fail(err, errlen, CIOT_ERROR, "certificate creation failed");
        goto out;
    }
    /* ca.crt last: its presence marks a complete PKI (ciot__pki_ensure). */
    if ((rc = write_pair(dir, "server", srv, srv_key, err, errlen)) != 0 ||
        (rc = write_pair(dir, "admin", adm, adm_key, err, errlen)) != 0 ||
        (rc = write_pair(dir, "ca", ca, ca_key, err, errlen)) != 0)
        goto out;
    rc = 0;
out:
    X509_free(ca);
    X509_free(srv);
    X509_free(adm);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(srv_key);
    EVP_PKEY_free(adm_key);
    return rc;
}

int ciot__pki_ensure(const char *dir, bool *generated, char *err, size_t errlen)
{
    if (generated)
        *generated = false;
    if (!dir || !*dir || strlen(dir) > 1000) {
        if (err && errlen)
            snprintf(err, errlen, "invalid PKI directory");
        return CIOT_EINVAL;
    }
    char path[1100];
    snprintf(path, sizeof path, "%s/ca.crt", dir);
    struct stat st;
    if (stat(path, &st) == 0)
        return 0;
    int e = dir_empty(dir);
    if (e == 0) {
        if (err && errlen)
            snprintf(err, errlen,
                     "%s has no ca.crt and is not empty: give a directory with ca.crt, "
                     "server.crt, server.key, or an empty one to generate a test PKI in",
                     dir);
        return CIOT_EINVAL;
    }
    int rc = ciot__pki_generate(dir, err, errlen);
    if (rc == 0 && generated)
        *generated = true;
    return rc;
}

void ciot__pki_issued_free(ciot__pki_issued *out)
{
    if (!out)
        return;
    free(out->cert_pem);
    free(out->public_pem);
    if (out->private_pem) {
        OPENSSL_cleanse(out->private_pem, strlen(out->private_pem));
        free(out->private_pem);
    }
    memset(out, 0, sizeof *out);
}

static void hex(const unsigned char *d, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = '\0';
}

static int x509_id(X509 *x, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (X509_digest(x, EVP_sha256(), md, &n) != 1 || n != 32)
        return CIOT_ERROR;
    hex(md, 32, out);
    return 0;
}

int ciot__pki_cert_id(const char *pem, size_t len, char out[65])
{
    if (!pem || !out || len == 0 || len > 1u << 20)
        return CIOT_EINVAL;
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    ERR_clear_error();
    if (!x)
        return CIOT_EINVAL;
    int rc = x509_id(x, out);
    X509_free(x);
    return rc;
}

static X509 *load_cert(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    return x;
}

static EVP_PKEY *load_key(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return k;
}

int ciot__pki_issue_device(ciot__pki_issued *out, const char *ca_dir, const char *cn, char *err,
                           size_t errlen)
{
    if (!out || !ca_dir || !cn || !*cn || strlen(cn) > 64 || strlen(ca_dir) > 1000) {
        if (err && errlen)
            snprintf(err, errlen, "invalid argument (the common name must be 1 to 64 bytes)");
        return CIOT_EINVAL;
    }
    memset(out, 0, sizeof *out);
    char path[1100];
    snprintf(path, sizeof path, "%s/ca.crt", ca_dir);
    X509 *ca = load_cert(path);
    snprintf(path, sizeof path, "%s/ca.key", ca_dir);
    EVP_PKEY *ca_key = ca ? load_key(path) : NULL;
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    int rc;
    if (!ca_key) {
        if (err && errlen)
            snprintf(err, errlen, "cannot read the CA (%s/ca.crt, %s/ca.key)", ca_dir, ca_dir);
        rc = CIOT_EIO;
        goto out;
    }
    if (X509_check_private_key(ca, ca_key) != 1) {
        rc = fail(err, errlen, CIOT_EINVAL, "ca.key does not match ca.crt");
        goto out;
    }
    const struct ext dev_ext[] = {
        {NID_basic_constraints, "CA:FALSE"},
        {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
        {NID_ext_key_usage, "clientAuth"},
        {NID_subject_key_identifier, "hash"},
        {NID_authority_key_identifier, "keyid"},
    };
    key = new_key(true);
    x = key ? make_cert(key, cn, ca, ca_key, dev_ext, sizeof dev_ext / sizeof *dev_ext) : NULL;
    if (!x) {
        rc = fail(err, errlen, CIOT_ERROR, "certificate creation failed");
        goto out;
    }
    out->cert_pem = cert_pem(x);
    out->public_pem = key_pem(key, true);
    out->private_pem = key_pem(key, false);
    if (!out->cert_pem || !out->public_pem || !out->private_pem || x509_id(x, out->id) != 0) {
        ciot__pki_issued_free(out);
        rc = fail(err, errlen, CIOT_ENOMEM, "PEM encoding failed");
        goto out;
    }
    rc = 0;
out:
    ERR_clear_error();
    X509_free(x);
    X509_free(ca);
    EVP_PKEY_free(key);
    EVP_PKEY_free(ca_key);
    return rc;
}
