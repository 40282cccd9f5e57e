/*
 * cloudiot-emulator, the launcher: provisioning sub-commands (output JSON,
 * files, modes, errors and exit codes like the AWS CLI), the test PKI, and
 * `run` (with a plugin that does nothing, and with the emulator plugin when
 * it is built). Every child process is reaped; every wait is bounded.
 */
#define _XOPEN_SOURCE 700 /* nftw */

#include "emu_fixture.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <mosquitto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CIOT_TEST_LAUNCHER
#error "CIOT_TEST_LAUNCHER must name the built cloudiot-emulator"
#endif
#ifndef CIOT_TEST_NULL_PLUGIN
#error "CIOT_TEST_NULL_PLUGIN must name the test's do-nothing plugin"
#endif
#ifndef CIOT_TEST_EMULATOR_DIR
#error "CIOT_TEST_EMULATOR_DIR must name the build directory of emulator/"
#endif

static char tmp[256];

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void make_tmp(void)
{
    emu_tmp_make(tmp, sizeof tmp, "/tmp/ciot-emucli.XXXXXX");
}

static void remove_tmp(void)
{
    emu_tmp_remove(tmp);
}

static const char *in_tmp(const char *name)
{
    return emu_tmp_path(tmp, name);
}

typedef emu_cli_result result;
#define CLI EMU_CLI

/* Parses stdout as one JSON object. */
static json_t *out_json(const result *r)
{
    json_error_t je;
    json_t *j = json_loads(r->out, 0, &je);
    cr_assert_not_null(j, "stdout is not JSON (%s): %s\nstderr: %s", je.text, r->out, r->err);
    cr_assert(json_is_object(j));
    return j;
}

static const char *str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    cr_assert_not_null(s, "no string member \"%s\"", key);
    return s;
}

static void assert_ok(const result *r)
{
    cr_assert_eq(r->status, 0, "exit %d\nstdout: %s\nstderr: %s", r->status, r->out, r->err);
}

/* An AWS-CLI-style service error: exit 254, the exception named. */
static void assert_exception(const result *r, const char *code, const char *op)
{
    cr_assert_eq(r->status, 254, "exit %d, stderr: %s", r->status, r->err);
    char want[256];
    snprintf(want, sizeof want, "An error occurred (%s) when calling the %s operation: ", code, op);
    cr_assert(strstr(r->err, want) != NULL, "stderr: %s", r->err);
    cr_assert_eq(r->out_len, 0, "nothing on stdout on error: %s", r->out);
}

static mode_t file_mode(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "%s: %s", path, strerror(errno));
    return st.st_mode & 07777;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static X509 *read_cert(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    cr_assert_not_null(x, "%s: not a certificate", path);
    return x;
}

static X509 *pem_cert(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    cr_assert_not_null(x);
    return x;
}

/* What `openssl x509 -fingerprint -sha256` prints, as AWS's certificate id:
 * lowercase hex of the SHA-256 of the DER. */
static void fingerprint(X509 *x, char out[65])
{
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    cr_assert_gt(n, 0);
    unsigned char md[32];
    unsigned int mdlen = 0;
    cr_assert_eq(EVP_Digest(der, (size_t)n, md, &mdlen, EVP_sha256(), NULL), 1);
    OPENSSL_free(der);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static bool verifies(X509 *ca, X509 *leaf, int purpose)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_add_cert(store, ca);
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_STORE_CTX_init(ctx, store, leaf, NULL);
    X509_STORE_CTX_set_purpose(ctx, purpose);
    bool ok = X509_verify_cert(ctx) == 1;
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return ok;
}

static void cn_of(X509 *x, char *out, size_t len)
{
    out[0] = '\0';
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out, (int)len);
}

static json_t *read_json(const char *path)
{
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    cr_assert_not_null(j, "%s: %s", path, je.text);
    return j;
}

/* No temporary file of an atomic write is left anywhere under dir. */
static int leftovers;
static int count_tmp(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (strstr(path, ".tmp."))
        leftovers++;
    return 0;
}

static const char *data(void)
{
    return in_tmp("data");
}

TestSuite(emulator_cli, .init = make_tmp, .fini = remove_tmp, .timeout = 120);

/* ---- things ---------------------------------------------------------------- */

Test(emulator_cli, create_thing_prints_aws_fields_and_writes_the_registry)
{
    result *r = CLI("create-thing", "--data", data(), "--thing-name", "t1");
    assert_ok(r);
    json_t *j = out_json(r);
    cr_assert_str_eq(str(j, "thingName"), "t1");
    cr_assert_str_eq(str(j, "thingArn"), "arn:aws:iot:us-east-1:123456789012:thing/t1");
    cr_assert_eq(strlen(str(j, "thingId")), 36, "a UUID");
    cr_assert_eq(json_object_size(j), 3);

    const char *file = in_tmp("data/registry/things/t1.json");
    cr_assert_eq(file_mode(file), 0644);
    json_t *f = read_json(file);
    cr_assert_str_eq(str(f, "thingName"), "t1");
    cr_assert_str_eq(str(f, "thingArn"), str(j, "thingArn"));
    cr_assert(json_is_object(json_object_get(f, "attributes")));
    cr_assert_eq(json_integer_value(json_object_get(f, "version")), 1);
    json_t *s = read_json(in_tmp("data/emulator.json"));
    cr_assert_str_eq(str(s, "region"), "us-east-1");
    cr_assert_str_eq(str(s, "account"), "123456789012");

    /* describe-thing and list-things show it. */
    free(r);
    r = CLI("describe-thing", "--data", data(), "--thing-name", "t1");
    assert_ok(r);
    json_t *d = out_json(r);
    cr_assert_str_eq(str(d, "defaultClientId"), "t1");
    cr_assert_str_eq(str(d, "thingId"), str(j, "thingId"));
    free(r);
    r = CLI("list-things", "--data", data());
    assert_ok(r);
    json_t *l = out_json(r);
    json_t *things = json_object_get(l, "things");
    cr_assert_eq(json_array_size(things), 1);
    cr_assert_str_eq(str(json_array_get(things, 0), "thingName"), "t1");
    json_decref(j);
    json_decref(f);
    json_decref(s);
    json_decref(d);
    json_decref(l);
    free(r);
}

Test(emulator_cli, create_thing_again_is_idempotent_but_other_attributes_are_refused)
{
    result *r = CLI("create-thing", "--data", data(), "--thing-name", "t1");
    assert_ok(r);
    json_t *a = out_json(r);
    free(r);
    r = CLI("create-thing", "--data", data(), "--thing-name", "t1");
    assert_ok(r);
    json_t *b = out_json(r);
    cr_assert_str_eq(str(a, "thingId"), str(b, "thingId"), "the same thing, as AWS answers");
    free(r);
    r = CLI("create-thing", "--data", data(), "--thing-name", "t1", "--attribute-payload",
            "{\"attributes\":{\"model\":\"x\"}}");
    assert_exception(r, "ResourceAlreadyExistsException", "CreateThing");
    cr_assert(strstr(r->err, "t1") != NULL);
    json_decref(a);
    json_decref(b);
    free(r);
}

Test(emulator_cli, bad_names_never_become_files)
{
    static const char *const bad_things[] = {"a/b", "../x", "sp ace", "a.b", "é"};
    for (size_t i = 0; i < sizeof bad_things / sizeof *bad_things; i++) {
        result *r = CLI("create-thing", "--data", data(), "--thing-name", bad_things[i]);
        assert_exception(r, "InvalidRequestException", "CreateThing");
        free(r);
    }
    char long_name[130];
    memset(long_name, 'a', 129);
    long_name[129] = '\0';
    result *r = CLI("create-thing", "--data", data(), "--thing-name", long_name);
    assert_exception(r, "InvalidRequestException", "CreateThing");
    free(r);
    long_name[128] = '\0'; /* 128 is the limit */
    r = CLI("create-thing", "--data", data(), "--thing-name", long_name);
    assert_ok(r);
    free(r);
    r = CLI("create-policy", "--data", data(), "--policy-name", "../p", "--policy-document",
            "{\"Statement\":[]}");
    assert_exception(r, "InvalidRequestException", "CreatePolicy");
    free(r);
    r = CLI("update-certificate", "--data", data(), "--certificate-id", "ABC", "--new-status",
            "ACTIVE");
    assert_exception(r, "InvalidRequestException", "UpdateCertificate");
    free(r);
    r = CLI("list-things", "--data", data());
    json_t *l = out_json(r);
    cr_assert_eq(json_array_size(json_object_get(l, "things")), 1, "only the valid one");
    json_decref(l);
    free(r);
    cr_assert_not(exists(in_tmp("data/registry/x.json")));
    cr_assert_not(exists(in_tmp("data/registry/p.json")));
}

Test(emulator_cli, command_line_errors_exit_252)
{
    result *r = CLI("create-thing", "--data", data());
    cr_assert_eq(r->status, 252);
    cr_assert(strstr(r->err, "--thing-name") != NULL, "%s", r->err);
    free(r);
    r = CLI("create-thing", "--data", data(), "--thing-name", "t", "--bogus", "1");
    cr_assert_eq(r->status, 252);
    cr_assert(strstr(r->err, "--bogus") != NULL, "%s", r->err);
    free(r);
    r = CLI("no-such-command");
    cr_assert_eq(r->status, 252);
    free(r);
    unsetenv("CLOUDIOT_EMULATOR_DATA");
    r = CLI("list-things");
    cr_assert_eq(r->status, 252, "no --data");
    free(r);
    r = CLI("update-certificate", "--data", data(), "--certificate-id", "x", "--new-status",
            "REVOKED-ish");
    cr_assert_eq(r->status, 252);
    free(r);
    r = CLI("describe-endpoint", "--endpoint-type", "iot:Data-ATS");
    assert_ok(r);
    json_t *ep = out_json(r);
    cr_assert_str_eq(str(ep, "endpointAddress"), "localhost", "a name the server certificate has");
    json_decref(ep);
    free(r);
    r = CLI("describe-endpoint", "--endpoint-type", "iot:CredentialProvider");
    assert_exception(r, "InvalidRequestException", "DescribeEndpoint");
    free(r);
    r = CLI("help");
    cr_assert_eq(r->status, 0);
    cr_assert(strstr(r->out, "create-keys-and-certificate") != NULL);
    free(r);
}

Test(emulator_cli, region_and_account_are_fixed_at_first_use)
{
    result *r = CLI("create-thing", "--data", data(), "--region", "eu-west-1", "--account",
                    "111122223333", "--thing-name", "t1");
    assert_ok(r);
    json_t *j = out_json(r);
    cr_assert_str_eq(str(j, "thingArn"), "arn:aws:iot:eu-west-1:111122223333:thing/t1");
    json_decref(j);
    free(r);
    r = CLI("create-thing", "--data", data(), "--thing-name", "t2");
    assert_ok(r);
    j = out_json(r);
    cr_assert_str_eq(str(j, "thingArn"), "arn:aws:iot:eu-west-1:111122223333:thing/t2");
    json_decref(j);
    free(r);
    r = CLI("create-thing", "--data", data(), "--region", "us-west-2", "--thing-name", "t3");
    cr_assert_neq(r->status, 0);
    cr_assert(strstr(r->err, "eu-west-1") != NULL, "%s", r->err);
    free(r);
    r = CLI("create-thing", "--data", in_tmp("d2"), "--account", "12", "--thing-name", "t3");
    cr_assert_eq(r->status, 252, "%s", r->err);
    free(r);
}

/* ---- certificates ----------------------------------------------------------- */

static json_t *create_cert(const char *extra_flag)
{
    result *r = extra_flag
                    ? CLI("create-keys-and-certificate", "--data", data(), extra_flag,
                          "--certificate-pem-outfile", in_tmp("dev.crt"), "--public-key-outfile",
                          in_tmp("dev.pub"), "--private-key-outfile", in_tmp("dev.key"))
                    : CLI("create-keys-and-certificate", "--data", data(),
                          "--certificate-pem-outfile", in_tmp("dev.crt"), "--public-key-outfile",
                          in_tmp("dev.pub"), "--private-key-outfile", in_tmp("dev.key"));
    assert_ok(r);
    json_t *j = out_json(r);
    free(r);
    return j;
}

Test(emulator_cli, create_keys_and_certificate_matches_aws_and_openssl)
{
    json_t *j = create_cert("--set-as-active");
    const char *id = str(j, "certificateId");
    char arn[256];
    snprintf(arn, sizeof arn, "arn:aws:iot:us-east-1:123456789012:cert/%s", id);
    cr_assert_str_eq(str(j, "certificateArn"), arn);
    json_t *kp = json_object_get(j, "keyPair");
    cr_assert(strstr(str(kp, "PublicKey"), "-----BEGIN PUBLIC KEY-----") != NULL);
    cr_assert(strstr(str(kp, "PrivateKey"), "PRIVATE KEY-----") != NULL);

    /* The id is the SHA-256 fingerprint of the DER, as AWS's. */
    X509 *x = pem_cert(str(j, "certificatePem"));
    char fp[65];
    fingerprint(x, fp);
    cr_assert_str_eq(id, fp);
    char cn[128];
    cn_of(x, cn, sizeof cn);
    cr_assert_str_eq(cn, "AWS IoT Certificate", "AWS's default subject");

    /* Files: the same certificate; the private key private; the keys match. */
    X509 *fx = read_cert(in_tmp("dev.crt"));
    cr_assert_eq(X509_cmp(x, fx), 0);
    cr_assert_eq(file_mode(in_tmp("dev.key")), 0600);
    cr_assert_eq(file_mode(in_tmp("dev.crt")), 0644);
    FILE *f = fopen(in_tmp("dev.key"), "rb");
    EVP_PKEY *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    cr_assert_not_null(key);
    cr_assert_eq(X509_check_private_key(x, key), 1);
    cr_assert_eq(EVP_PKEY_get_bits(key), 2048, "RSA-2048 as CreateKeysAndCertificate");
    f = fopen(in_tmp("dev.pub"), "rb");
    EVP_PKEY *pub = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    cr_assert_eq(EVP_PKEY_eq(pub, X509_get0_pubkey(x)), 1);

    /* Signed by the emulator CA, which was generated in DATA/tls. */
    X509 *ca = read_cert(in_tmp("data/tls/ca.crt"));
    cr_assert(verifies(ca, x, X509_PURPOSE_SSL_CLIENT));

    /* The registry entry. */
    char file[512];
    snprintf(file, sizeof file, "data/registry/certificates/%s.json", id);
    json_t *reg = read_json(in_tmp(file));
    cr_assert_str_eq(str(reg, "status"), "ACTIVE");
    cr_assert_str_eq(str(reg, "certificateArn"), arn);
    cr_assert_str_eq(str(reg, "certificatePem"), str(j, "certificatePem"));
    cr_assert_eq(json_array_size(json_object_get(reg, "policies")), 0);
    cr_assert_eq(json_array_size(json_object_get(reg, "things")), 0);
    cr_assert(json_integer_value(json_object_get(reg, "creationDate")) > 1600000000);

    X509_free(x);
    X509_free(fx);
    X509_free(ca);
    EVP_PKEY_free(key);
    EVP_PKEY_free(pub);
    json_decref(reg);
    json_decref(j);
}

Test(emulator_cli, certificate_status_and_common_name)
{
    json_t *j = create_cert(NULL);
    const char *id = str(j, "certificateId");
    char file[512];
    snprintf(file, sizeof file, "data/registry/certificates/%s.json", id);
    json_t *reg = read_json(in_tmp(file));
    cr_assert_str_eq(str(reg, "status"), "INACTIVE", "without --set-as-active");
    json_decref(reg);
    result *r = CLI("update-certificate", "--data", data(), "--certificate-id", id, "--new-status",
                    "ACTIVE");
    assert_ok(r);
    cr_assert_eq(r->out_len, 0, "no output, as the AWS CLI");
    free(r);
    reg = read_json(in_tmp(file));
    cr_assert_str_eq(str(reg, "status"), "ACTIVE");
    json_decref(reg);
    r = CLI("describe-certificate", "--data", data(), "--certificate-id", id);
    assert_ok(r);
    json_t *d = out_json(r);
    cr_assert_str_eq(str(json_object_get(d, "certificateDescription"), "status"), "ACTIVE");
    json_decref(d);
    free(r);
    char other[65];
    memset(other, 'a', 64);
    other[64] = '\0';
    r = CLI("update-certificate", "--data", data(), "--certificate-id", other, "--new-status",
            "ACTIVE");
    assert_exception(r, "ResourceNotFoundException", "UpdateCertificate");
    free(r);

    r = CLI("create-keys-and-certificate", "--data", data(), "--common-name", "sensor-42");
    assert_ok(r);
    json_t *k = out_json(r);
    X509 *x = pem_cert(str(k, "certificatePem"));
    char cn[128];
    cn_of(x, cn, sizeof cn);
    cr_assert_str_eq(cn, "sensor-42");
    X509_free(x);
    json_decref(k);
    free(r);
    r = CLI("list-certificates", "--data", data());
    assert_ok(r);
    json_t *l = out_json(r);
    cr_assert_eq(json_array_size(json_object_get(l, "certificates")), 2);
    json_decref(l);
    free(r);
    json_decref(j);
}

/* ---- PKI ------------------------------------------------------------------ */

static bool has_san(X509 *x, int type, const char *want, size_t want_len)
{
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    bool found = false;
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        if (g->type != type)
            continue;
        ASN1_STRING *s = type == GEN_DNS ? g->d.dNSName : g->d.iPAddress;
        if ((size_t)ASN1_STRING_length(s) == want_len &&
            memcmp(ASN1_STRING_get0_data(s), want, want_len) == 0)
            found = true;
    }
    GENERAL_NAMES_free(names);
    return found;
}

Test(emulator_cli, pki_generates_a_ca_a_server_and_an_admin_that_verify)
{
    result *r = CLI("pki", "--tls", in_tmp("pki"));
    assert_ok(r);
    json_t *j = out_json(r);
    cr_assert_str_eq(str(j, "adminCommonName"), "cloudiot-admin");
    json_decref(j);
    free(r);
    static const char *const keys[] = {"pki/ca.key", "pki/server.key", "pki/admin.key"};
    for (size_t i = 0; i < 3; i++)
        cr_assert_eq(file_mode(in_tmp(keys[i])), 0600, "%s", keys[i]);
    X509 *ca = read_cert(in_tmp("pki/ca.crt"));
    X509 *srv = read_cert(in_tmp("pki/server.crt"));
    X509 *adm = read_cert(in_tmp("pki/admin.crt"));
    cr_assert(verifies(ca, srv, X509_PURPOSE_SSL_SERVER), "server cert verifies as a server");
    cr_assert(verifies(ca, adm, X509_PURPOSE_SSL_CLIENT), "admin cert verifies as a client");
    cr_assert_not(verifies(ca, adm, X509_PURPOSE_SSL_SERVER), "admin is clientAuth only");
    cr_assert_not(verifies(srv, adm, X509_PURPOSE_SSL_CLIENT), "not trusted by another root");
    cr_assert_eq(X509_check_host(srv, "localhost", 0, 0, NULL), 1);
    cr_assert_eq(X509_check_ip_asc(srv, "127.0.0.1", 0), 1);
    cr_assert_eq(X509_check_ip_asc(srv, "::1", 0), 1);
    cr_assert(has_san(srv, GEN_DNS, "localhost", 9));
    static const unsigned char v4[] = {127, 0, 0, 1};
    cr_assert(has_san(srv, GEN_IPADD, (const char *)v4, 4));
    char cn[128];
    cn_of(adm, cn, sizeof cn);
    cr_assert_str_eq(cn, "cloudiot-admin");
    EVP_PKEY *k = X509_get0_pubkey(ca);
    cr_assert_eq(EVP_PKEY_get_base_id(k), EVP_PKEY_EC);
    cr_assert_eq(X509_get_signature_nid(srv), NID_ecdsa_with_SHA256);
    /* Valid now and for about two years. */
    int days = 0, secs = 0;
    cr_assert_eq(ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(srv)), 1);
    cr_assert(days > 700 && days <= 731, "%d days", days);

    /* Never into a non-empty directory: the CA is kept. */
    char before[65], after[65];
    fingerprint(ca, before);
    r = CLI("pki", "--tls", in_tmp("pki"));
    cr_assert_neq(r->status, 0);
    cr_assert(strstr(r->err, "not empty") != NULL, "%s", r->err);
    free(r);
    X509 *ca2 = read_cert(in_tmp("pki/ca.crt"));
    fingerprint(ca2, after);
    cr_assert_str_eq(before, after);
    X509_free(ca);
    X509_free(ca2);
    X509_free(srv);
    X509_free(adm);
}

/* ---- policies ---------------------------------------------------------------- */

static const char policy_doc[] =
    "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"iot:Connect\","
    "\"Resource\":\"arn:aws:iot:us-east-1:123456789012:client/${iot:Connection.Thing.ThingName}\"}]}";

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

Test(emulator_cli, create_policy_from_a_file_and_errors)
{
    write_file(in_tmp("p.json"), policy_doc);
    char arg[600];
    snprintf(arg, sizeof arg, "file://%s", in_tmp("p.json"));
    result *r = CLI("create-policy", "--data", data(), "--policy-name", "SensorDevicePolicy",
                    "--policy-document", arg);
    assert_ok(r);
    json_t *j = out_json(r);
    cr_assert_str_eq(str(j, "policyName"), "SensorDevicePolicy");
    cr_assert_str_eq(str(j, "policyArn"),
                     "arn:aws:iot:us-east-1:123456789012:policy/SensorDevicePolicy");
    cr_assert_str_eq(str(j, "policyDocument"), policy_doc);
    cr_assert_str_eq(str(j, "policyVersionId"), "1");
    json_decref(j);
    free(r);
    json_t *f = read_json(in_tmp("data/registry/policies/SensorDevicePolicy.json"));
    cr_assert_str_eq(str(f, "policyDocument"), policy_doc);
    json_decref(f);

    r = CLI("create-policy", "--data", data(), "--policy-name", "SensorDevicePolicy",
            "--policy-document", arg);
    assert_exception(r, "ResourceAlreadyExistsException", "CreatePolicy");
    free(r);
    r = CLI("create-policy", "--data", data(), "--policy-name", "P2", "--policy-document",
            "{\"Statement\": [");
    assert_exception(r, "MalformedPolicyException", "CreatePolicy");
    free(r);
    r = CLI("create-policy", "--data", data(), "--policy-name", "P2", "--policy-document", "[1]");
    assert_exception(r, "MalformedPolicyException", "CreatePolicy");
    free(r);
    r = CLI("create-policy", "--data", data(), "--policy-name", "P2", "--policy-document",
            "{\"Version\":\"2012-10-17\"}");
    assert_exception(r, "MalformedPolicyException", "CreatePolicy");
    cr_assert(strstr(r->err, "Statement") != NULL);
    free(r);
    /* Checked by the policy engine the plugin uses. */
    r = CLI("create-policy", "--data", data(), "--policy-name", "P2", "--policy-document",
            "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Maybe\","
            "\"Action\":\"iot:Connect\",\"Resource\":\"*\"}]}");
    assert_exception(r, "MalformedPolicyException", "CreatePolicy");
    cr_assert(strstr(r->err, "Effect") != NULL, "%s", r->err);
    free(r);
    r = CLI("create-policy", "--data", data(), "--policy-name", "P2", "--policy-document",
            "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\","
            "\"Action\":\"iot:Connect\",\"Resource\":\"*\",\"Condition\":{}}]}");
    assert_exception(r, "MalformedPolicyException", "CreatePolicy");
    cr_assert(strstr(r->err, "Condition") != NULL, "%s", r->err);
    free(r);
    r = CLI("create-policy", "--data", data(), "--policy-name", "P2", "--policy-document",
            "file:///nonexistent/p.json");
    cr_assert_eq(r->status, 252);
    cr_assert(strstr(r->err, "Unable to load paramfile") != NULL, "%s", r->err);
    free(r);
    cr_assert_not(exists(in_tmp("data/registry/policies/P2.json")));
    r = CLI("list-policies", "--data", data());
    j = out_json(r);
    cr_assert_eq(json_array_size(json_object_get(j, "policies")), 1);
    json_decref(j);
    free(r);
}

Test(emulator_cli, attach_policy_and_thing_to_a_certificate)
{
    json_t *c = create_cert("--set-as-active");
    const char *arn = str(c, "certificateArn");
    const char *id = str(c, "certificateId");
    result *r = CLI("create-policy", "--data", data(), "--policy-name", "P", "--policy-document",
                    policy_doc);
    assert_ok(r);
    free(r);
    r = CLI("create-thing", "--data", data(), "--thing-name", "dev1");
    assert_ok(r);
    free(r);

    /* Unknown certificate, unknown policy, malformed target. */
    char unknown[256];
    snprintf(unknown, sizeof unknown, "arn:aws:iot:us-east-1:123456789012:cert/%064d", 0);
    r = CLI("attach-policy", "--data", data(), "--policy-name", "P", "--target", unknown);
    assert_exception(r, "ResourceNotFoundException", "AttachPolicy");
    free(r);
    r = CLI("attach-policy", "--data", data(), "--policy-name", "Nope", "--target", arn);
    assert_exception(r, "ResourceNotFoundException", "AttachPolicy");
    free(r);
    r = CLI("attach-policy", "--data", data(), "--policy-name", "P", "--target",
            "arn:aws:iot:eu-west-1:123456789012:cert/abc");
    assert_exception(r, "InvalidRequestException", "AttachPolicy");
    free(r);
    r = CLI("attach-thing-principal", "--data", data(), "--thing-name", "nope", "--principal", arn);
    assert_exception(r, "ResourceNotFoundException", "AttachThingPrincipal");
    free(r);

    /* Attach (twice: once in the registry), list, detach. */
    for (int i = 0; i < 2; i++) {
        r = CLI("attach-policy", "--data", data(), "--policy-name", "P", "--target", arn);
        assert_ok(r);
        cr_assert_eq(r->out_len, 0);
        free(r);
        r = CLI("attach-thing-principal", "--data", data(), "--thing-name", "dev1", "--principal",
                arn);
        assert_ok(r);
        free(r);
    }
    char file[512];
    snprintf(file, sizeof file, "data/registry/certificates/%s.json", id);
    json_t *reg = read_json(in_tmp(file));
    json_t *pols = json_object_get(reg, "policies"), *things = json_object_get(reg, "things");
    cr_assert_eq(json_array_size(pols), 1);
    cr_assert_str_eq(json_string_value(json_array_get(pols, 0)), "P");
    cr_assert_eq(json_array_size(things), 1);
    cr_assert_str_eq(json_string_value(json_array_get(things, 0)), "dev1");
    json_decref(reg);
    r = CLI("list-attached-policies", "--data", data(), "--target", arn);
    assert_ok(r);
    json_t *l = out_json(r);
    json_t *p0 = json_array_get(json_object_get(l, "policies"), 0);
    cr_assert_str_eq(str(p0, "policyName"), "P");
    cr_assert_str_eq(str(p0, "policyArn"), "arn:aws:iot:us-east-1:123456789012:policy/P");
    json_decref(l);
    free(r);
    r = CLI("list-thing-principals", "--data", data(), "--thing-name", "dev1");
    assert_ok(r);
    l = out_json(r);
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(l, "principals"), 0)), arn);
    json_decref(l);
    free(r);

    /* A thing with a principal is not deleted (AWS's rule). */
    r = CLI("delete-thing", "--data", data(), "--thing-name", "dev1");
    assert_exception(r, "InvalidRequestException", "DeleteThing");
    free(r);
    r = CLI("detach-thing-principal", "--data", data(), "--thing-name", "dev1", "--principal", arn);
    assert_ok(r);
    free(r);
    r = CLI("delete-thing", "--data", data(), "--thing-name", "dev1");
    assert_ok(r);
    free(r);
    cr_assert_not(exists(in_tmp("data/registry/things/dev1.json")));
    r = CLI("describe-thing", "--data", data(), "--thing-name", "dev1");
    assert_exception(r, "ResourceNotFoundException", "DescribeThing");
    free(r);
    r = CLI("detach-policy", "--data", data(), "--policy-name", "P", "--target", arn);
    assert_ok(r);
    free(r);
    r = CLI("list-attached-policies", "--data", data(), "--target", arn);
    l = out_json(r);
    cr_assert_eq(json_array_size(json_object_get(l, "policies")), 0);
    json_decref(l);
    free(r);

    leftovers = 0;
    nftw(data(), count_tmp, 16, FTW_PHYS);
    cr_assert_eq(leftovers, 0, "a temporary file of an atomic write was left behind");
    json_decref(c);
}

Test(emulator_cli, concurrent_attaches_are_not_lost)
{
    json_t *c = create_cert("--set-as-active");
    const char *arn = str(c, "certificateArn");
    enum { N = 8 };
    for (int i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof name, "P%d", i);
        result *r = CLI("create-policy", "--data", data(), "--policy-name", name,
                        "--policy-document", policy_doc);
        assert_ok(r);
        free(r);
    }
    /* N launchers at once, each attaching its own policy to the same certificate. */
    pid_t pids[N];
    for (int i = 0; i < N; i++) {
        pids[i] = fork();
        cr_assert_geq(pids[i], 0);
        if (pids[i] == 0) {
            char name[16];
            snprintf(name, sizeof name, "P%d", i);
            int fd = open("/dev/null", O_WRONLY);
            dup2(fd, 1);
            execl(CIOT_TEST_LAUNCHER, CIOT_TEST_LAUNCHER, "attach-policy", "--data", data(),
                  "--policy-name", name, "--target", arn, (char *)NULL);
            _exit(127);
        }
    }
    for (int i = 0; i < N; i++) {
        int st;
        cr_assert_eq(waitpid(pids[i], &st, 0), pids[i]);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    result *r = CLI("list-attached-policies", "--data", data(), "--target", arn);
    json_t *l = out_json(r);
    cr_assert_eq(json_array_size(json_object_get(l, "policies")), N,
                 "a read-modify-write was lost: %s", r->out);
    json_decref(l);
    free(r);
    json_decref(c);
}

/* ---- run ------------------------------------------------------------------ */

typedef struct emu {
    pid_t pid;
    int out_fd;
    int port;
    char line[512];
} emu;

/* Starts `run` with the given arguments; waits (at most 15 s) for the ready
 * line. Returns false (child reaped) if it exits first. */
static bool run_start(emu *e, const char *const *args)
{
    memset(e, 0, sizeof *e);
    int p[2];
    cr_assert_eq(pipe(p), 0);
    e->pid = fork();
    cr_assert_geq(e->pid, 0);
    if (e->pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        char *argv[40]; /* copies: execv takes non-const strings */
        size_t n = 0;
        argv[n++] = strdup(CIOT_TEST_LAUNCHER);
        argv[n++] = strdup("run");
        for (size_t i = 0; args[i] && n < 39; i++)
            argv[n++] = strdup(args[i]);
        argv[n] = NULL;
        execv(CIOT_TEST_LAUNCHER, argv);
        _exit(127);
    }
    close(p[1]);
    e->out_fd = p[0];
    uint64_t deadline = now_ms() + 15000;
    size_t len = 0;
    while (now_ms() < deadline && len < sizeof e->line - 1) {
        struct pollfd pf = {.fd = e->out_fd, .events = POLLIN};
        if (poll(&pf, 1, 200) <= 0)
            continue;
        ssize_t k = read(e->out_fd, e->line + len, 1);
        if (k <= 0)
            break;
        if (e->line[len] == '\n') {
            e->line[len] = '\0';
            /* "...: ready on HOST:PORT (...)": the port is after the last
             * ':' before " (". */
            char *at = strstr(e->line, "ready on ");
            char *paren = at ? strstr(at, " (") : NULL;
            for (char *c = paren; c && c > at; c--)
                if (*c == ':') {
                    e->port = atoi(c + 1);
                    break;
                }
            return e->port > 0;
        }
        len++;
    }
    /* No ready line: stop it and say so. */
    kill(e->pid, SIGKILL);
    waitpid(e->pid, NULL, 0);
    close(e->out_fd);
    e->pid = 0;
    return false;
}

/* SIGTERM (SIGKILL after 10 s); returns the exit status. */
static int run_stop(emu *e)
{
    if (e->pid <= 0)
        return -1;
    kill(e->pid, SIGTERM);
    int st = 0;
    uint64_t deadline = now_ms() + 10000;
    pid_t w;
    while ((w = waitpid(e->pid, &st, WNOHANG)) == 0 && now_ms() < deadline) {
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    if (w == 0) {
        kill(e->pid, SIGKILL);
        waitpid(e->pid, &st, 0);
    }
    close(e->out_fd);
    e->pid = 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static emu running;
static void stop_running(void)
{
    run_stop(&running);
    remove_tmp();
}

TestSuite(emulator_run, .init = make_tmp, .fini = stop_running, .timeout = 120);

struct conn_state {
    int rc; /* -1 until CONNACK */
};

static void on_connect(struct mosquitto *m, void *ud, int rc)
{
    (void)m;
    ((struct conn_state *)ud)->rc = rc;
}

/* Connects with libmosquitto; returns the CONNACK code (or -1: none in 10 s,
 * -2: the connection failed). */
static int mqtt_connect_as(const char *client_id, int port, const char *cafile, const char *cert,
                           const char *key, const char *user, const char *pw)
{
    mosquitto_lib_init();
    struct conn_state s = {-1};
    struct mosquitto *m = mosquitto_new(client_id, true, &s);
    cr_assert_not_null(m);
    mosquitto_connect_callback_set(m, on_connect);
    if (cafile)
        cr_assert_eq(mosquitto_tls_set(m, cafile, NULL, cert, key, NULL), MOSQ_ERR_SUCCESS);
    if (user)
        mosquitto_username_pw_set(m, user, pw);
    int rc = mosquitto_connect(m, "localhost", port, 30);
    uint64_t deadline = now_ms() + 10000;
    while (rc == MOSQ_ERR_SUCCESS && s.rc < 0 && now_ms() < deadline)
        rc = mosquitto_loop(m, 100, 1);
    if (s.rc == 0)
        mosquitto_disconnect(m);
    mosquitto_destroy(m);
    mosquitto_lib_cleanup();
    return rc != MOSQ_ERR_SUCCESS && s.rc < 0 ? -2 : s.rc;
}

static int mqtt_connect(int port, const char *cafile, const char *cert, const char *key,
                        const char *user, const char *pw)
{
    return mqtt_connect_as("emu-test", port, cafile, cert, key, user, pw);
}

static bool port_free(int port)
{
    return mqtt_connect(port, NULL, NULL, NULL, NULL, NULL) == -2;
}

Test(emulator_run, a_missing_plugin_is_a_clear_error)
{
    result *r = CLI("run", "--port", "0", "--plugin", in_tmp("nothing.so"));
    cr_assert_eq(r->status, 1);
    cr_assert(strstr(r->err, "plugin") != NULL && strstr(r->err, "nothing.so") != NULL, "%s",
              r->err);
    cr_assert_eq(r->out_len, 0, "no ready line");
    free(r);
    r = CLI("run", "--port", "0", "--policies", "sometimes");
    cr_assert_eq(r->status, 252);
    free(r);
}

Test(emulator_run, plain_on_a_free_port_with_data_then_sigterm)
{
    const char *const args[] = {"--port", "0", "--plugin", CIOT_TEST_NULL_PLUGIN, "--data", data(),
                                NULL};
    uint64_t t0 = now_ms();
    cr_assert(run_start(&running, args), "no ready line: '%s'", running.line);
    cr_assert_lt(now_ms() - t0, 10000);
    char want[600];
    snprintf(want, sizeof want, "cloudiot-emulator: ready on 127.0.0.1:%d (data ", running.port);
    cr_assert(strncmp(running.line, want, strlen(want)) == 0, "%s", running.line);
    cr_assert(strstr(running.line, ", plain)") != NULL, "%s", running.line);
    cr_assert_eq(mqtt_connect(running.port, NULL, NULL, NULL, NULL, NULL), 0);
    /* The configuration it wrote: the plugin and its options. */
    FILE *f = fopen(in_tmp("data/mosquitto.conf"), "r");
    cr_assert_not_null(f);
    char conf[4096];
    size_t n = fread(conf, 1, sizeof conf - 1, f);
    fclose(f);
    conf[n] = '\0';
    cr_assert(strstr(conf, "per_listener_settings false\n") != NULL);
    cr_assert(strstr(conf, "plugin_opt_data_dir ") != NULL);
    cr_assert(strstr(conf, "plugin_opt_policies enforce\n") != NULL);
    cr_assert(strstr(conf, "persistence false\n") != NULL);
    cr_assert_eq(file_mode(in_tmp("data/mosquitto.conf")), 0600);
    cr_assert(exists(in_tmp("data/emulator.json")));
    int port = running.port;
    cr_assert_eq(run_stop(&running), 0, "SIGTERM is forwarded; mosquitto exits 0");
    cr_assert(port_free(port), "mosquitto is gone");
}

Test(emulator_run, tls_generates_the_pki_and_the_admin_certificate_connects)
{
    const char *const args[] = {"--port", "0", "--plugin", CIOT_TEST_NULL_PLUGIN, "--tls",
                                in_tmp("tls"), "--admin-password", "s3cret", NULL};
    cr_assert(run_start(&running, args), "no ready line: '%s'", running.line);
    cr_assert(strstr(running.line, "(data none, tls ") != NULL, "%s", running.line);
    cr_assert(exists(in_tmp("tls/ca.crt")) && exists(in_tmp("tls/admin.key")));
    char ca[512], crt[512], key[512];
    snprintf(ca, sizeof ca, "%s", in_tmp("tls/ca.crt"));
    snprintf(crt, sizeof crt, "%s", in_tmp("tls/admin.crt"));
    snprintf(key, sizeof key, "%s", in_tmp("tls/admin.key"));
    cr_assert_eq(mqtt_connect(running.port, ca, crt, key, NULL, NULL), 0);
    /* require_certificate: no client certificate, no connection. */
    cr_assert_neq(mqtt_connect(running.port, ca, NULL, NULL, NULL, NULL), 0);
    cr_assert_eq(run_stop(&running), 0);
}

Test(emulator_run, a_port_in_use_and_a_dying_broker_are_reported)
{
    const char *const args[] = {"--port", "0", "--plugin", CIOT_TEST_NULL_PLUGIN, NULL};
    cr_assert(run_start(&running, args));
    char port[16];
    snprintf(port, sizeof port, "%d", running.port);
    result *r = CLI("run", "--port", port, "--plugin", CIOT_TEST_NULL_PLUGIN);
    cr_assert_eq(r->status, 1);
    cr_assert(strstr(r->err, "in use") != NULL, "%s", r->err);
    cr_assert_eq(r->out_len, 0);
    free(r);
    /* A plugin file that is not a plugin: mosquitto refuses it, and the
     * launcher says so with the end of mosquitto's log. */
    write_file(in_tmp("bad.so"), "not a shared object");
    r = CLI("run", "--port", "0", "--plugin", in_tmp("bad.so"));
    cr_assert_eq(r->status, 1, "%s", r->err);
    cr_assert(strstr(r->err, "exited before accepting connections") != NULL, "%s", r->err);
    cr_assert_eq(r->out_len, 0);
    free(r);
    cr_assert_eq(run_stop(&running), 0);
}

Test(emulator_run, mosquitto_does_not_outlive_a_killed_launcher)
{
    /* Its temporary directory survives a SIGKILL: keep it in ours. */
    setenv("TMPDIR", tmp, 1);
    const char *const args[] = {"--port", "0", "--plugin", CIOT_TEST_NULL_PLUGIN, NULL};
    cr_assert(run_start(&running, args), "no ready line: '%s'", running.line);
    int port = running.port;
    kill(running.pid, SIGKILL);
    waitpid(running.pid, NULL, 0);
    close(running.out_fd);
    running.pid = 0;
    uint64_t deadline = now_ms() + 5000;
    bool gone = false;
    while (!gone && now_ms() < deadline) {
        gone = port_free(port);
        if (!gone) {
            struct timespec ts = {0, 50000000};
            nanosleep(&ts, NULL);
        }
    }
    cr_assert(gone, "mosquitto still listens on %d after the launcher was killed", port);
}

/* With the emulator plugin itself (skipped until it is built in this tree). */
static const char *real_plugin(void)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/cloudiot_emulator.so", CIOT_TEST_EMULATOR_DIR);
    if (exists(path))
        return path;
    snprintf(path, sizeof path, "%s/libcloudiot_emulator.so", CIOT_TEST_EMULATOR_DIR);
    return exists(path) ? path : NULL;
}

Test(emulator_run, the_emulator_plugin_admits_the_admin_and_a_provisioned_device)
{
    if (!real_plugin()) {
        remove_tmp(); /* a skipped test does not reach .fini */
        cr_skip_test("the emulator plugin is not built in this tree");
    }
    /* Provision as the guide does: thing, certificate, policy, attachments. */
    result *r = CLI("create-thing", "--data", data(), "--thing-name", "dev1");
    assert_ok(r);
    free(r);
    r = CLI("create-keys-and-certificate", "--data", data(), "--tls", in_tmp("tls"),
            "--set-as-active", "--certificate-pem-outfile", in_tmp("dev1.crt"),
            "--private-key-outfile", in_tmp("dev1.key"));
    assert_ok(r);
    json_t *c = out_json(r);
    free(r);
    /* The guide's rule: connect only as the thing attached to the certificate. */
    r = CLI("create-policy", "--data", data(), "--policy-name", "P", "--policy-document",
            policy_doc);
    assert_ok(r);
    free(r);
    r = CLI("attach-policy", "--data", data(), "--policy-name", "P", "--target",
            str(c, "certificateArn"));
    assert_ok(r);
    free(r);
    r = CLI("attach-thing-principal", "--data", data(), "--thing-name", "dev1", "--principal",
            str(c, "certificateArn"));
    assert_ok(r);
    free(r);
#ifdef CIOT_EMU_PRELOAD
    /* A sanitizer build: the plugin is instrumented, mosquitto is not; the
     * runtimes go first into mosquitto (the plugin's own leak checks are in
     * the emulator's tests). */
    setenv("LD_PRELOAD", CIOT_EMU_PRELOAD, 1);
    setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
#endif
    const char *const args[] = {"--port", "0", "--data", data(), "--tls", in_tmp("tls"), NULL};
    cr_assert(run_start(&running, args), "no ready line: '%s'", running.line);
    char ca[512], crt[512], key[512];
    snprintf(ca, sizeof ca, "%s", in_tmp("tls/ca.crt"));
    snprintf(crt, sizeof crt, "%s", in_tmp("tls/admin.crt"));
    snprintf(key, sizeof key, "%s", in_tmp("tls/admin.key"));
    cr_assert_eq(mqtt_connect(running.port, ca, crt, key, NULL, NULL), 0, "the admin");
    snprintf(crt, sizeof crt, "%s", in_tmp("dev1.crt"));
    snprintf(key, sizeof key, "%s", in_tmp("dev1.key"));
    cr_assert_eq(mqtt_connect_as("dev1", running.port, ca, crt, key, NULL, NULL), 0,
                 "the device, as its thing");
    cr_assert_neq(mqtt_connect_as("intruder", running.port, ca, crt, key, NULL, NULL), 0,
                  "iot:Connect allows only client/${iot:Connection.Thing.ThingName}");
    /* Deactivated: refused at the next connection, while the broker runs. */
    r = CLI("update-certificate", "--data", data(), "--certificate-id", str(c, "certificateId"),
            "--new-status", "INACTIVE");
    assert_ok(r);
    free(r);
    cr_assert_neq(mqtt_connect_as("dev1", running.port, ca, crt, key, NULL, NULL), 0,
                  "INACTIVE refused");
    json_decref(c);
    cr_assert_eq(run_stop(&running), 0);
}

/* A policy file is taken whole: a NUL byte inside makes it no JSON document
 * (as for the AWS CLI), never a shorter policy that stops at the NUL. */
Test(emulator_cli, a_policy_file_with_a_nul_byte_is_refused_not_cut_short)
{
    static const char doc[] =
        "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\","
        "\"Action\":\"iot:Connect\",\"Resource\":\"*\"}]}\0{\"Effect\":\"Deny\"}";
    FILE *f = fopen(in_tmp("nul.json"), "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(doc, 1, sizeof doc - 1, f), sizeof doc - 1);
    fclose(f);
    char arg[600];
    snprintf(arg, sizeof arg, "file://%s", in_tmp("nul.json"));
    result *r = CLI("create-policy", "--data", data(), "--policy-name", "NulPolicy",
                    "--policy-document", arg);
    assert_exception(r, "MalformedPolicyException", "CreatePolicy");
    cr_assert(strstr(r->err, "NUL") != NULL, "%s", r->err);
    free(r);
    cr_assert_not(exists(in_tmp("data/registry/policies/NulPolicy.json")));
}
