/*
 * cloudiot-emulator: runs mosquitto with the cloudiot emulator plugin (the
 * `run` sub-command) and provisions its registry the way the AWS CLI's
 * `aws iot ...` calls of a getting-started guide do (same sub-command and
 * option names, same JSON output, same exit codes: 252 for a bad command
 * line, 254 for an error answered by the "service", 255 for anything else).
 * See doc/emulator-launcher.md.
 */
#define _XOPEN_SOURCE 700 /* realpath, nftw */

#include "core/aws_policy.h"
#include "launcher_azure.h"
#include "launcher_rules.h"
#include "launcher_util.h"
#include "pki.h"
#include "registry.h"

#include <cloudiot/error.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE CIOT__LX_EXIT_USAGE
#define EXIT_SERVICE CIOT__LX_EXIT_SERVICE
#define EXIT_OTHER CIOT__LX_EXIT_OTHER
#define PROG CIOT__LX_PROG

#ifndef CIOT_EMULATOR_PLUGIN_BUILD
#define CIOT_EMULATOR_PLUGIN_BUILD ""
#endif
#ifndef CIOT_EMULATOR_PLUGIN_INSTALLED
#define CIOT_EMULATOR_PLUGIN_INSTALLED ""
#endif

/* ---- command-line options ---------------------------------------------- */

static void usage(FILE *f);

#define GET(name) ciot__lx_get(opts, sizeof opts / sizeof *opts, name)
#define PARSE(cmd)                                                                                 \
    do {                                                                                           \
        int prc_ = ciot__lx_parse(cmd, argc, argv, opts, sizeof opts / sizeof *opts);              \
        if (prc_)                                                                                  \
            return prc_;                                                                           \
    } while (0)
#define REQUIRE(cmd, name)                                                                         \
    do {                                                                                           \
        if (!GET(name) || !*GET(name))                                                             \
            return ciot__lx_usage_error(cmd, "the following argument is required: %s", name);      \
    } while (0)

/* ---- errors and output --------------------------------------------------- */

/* A registry failure other than "not found". */
static int reg_failure(const ciot__registry *r, int rc, const char *what)
{
    return ciot__lx_other_error("%s in %s: %s%s%s", what, r->dir, ciot_err_name(rc),
                                errno ? ": " : "", errno ? strerror(errno) : "");
}

/* ---- registry helpers ---------------------------------------------------- */

static int lock_reg(const ciot__registry *r, int *fd)
{
    int rc = ciot__registry_lock(r, fd);
    return rc ? reg_failure(r, rc, "cannot lock the registry") : 0;
}

static bool json_array_has(const json_t *a, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
            return true;
    }
    return false;
}

/* Returns the array member @p key of @p obj, created empty if missing. */
static json_t *array_member(json_t *obj, const char *key)
{
    json_t *a = json_object_get(obj, key);
    if (json_is_array(a))
        return a;
    a = json_array();
    if (!a || json_object_set_new(obj, key, a) != 0)
        return NULL;
    return a;
}

static bool array_remove(json_t *a, const char *s)
{
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *v = json_array_get(a, i);
        if (json_is_string(v) && strcmp(json_string_value(v), s) == 0) {
            json_array_remove(a, i);
            return true;
        }
    }
    return false;
}

/* Loads a certificate given by ARN (or bare id) for operation @p op;
 * returns 0 or the exit code (message printed). */
static int load_cert_arn(const ciot__registry *r, const char *op, const char *arn, char id[65],
                         json_t **cert)
{
    if (ciot__registry_parse_cert_arn(r, arn, id) != 0)
        return ciot__lx_service_error(
            op, "InvalidRequestException",
            "Invalid principal: %s (expected arn:aws:iot:%s:%s:cert/<64 hex>)", arn, r->region,
            r->account);
    int rc = ciot__registry_load(r, CIOT__REG_CERT, id, cert);
    if (rc == CIOT_ENOTFOUND)
        return ciot__lx_service_error(op, "ResourceNotFoundException",
                                      "The certificate given in the principal does not exist.");
    return rc ? reg_failure(r, rc, "cannot read certificate") : 0;
}

static int load_thing(const ciot__registry *r, const char *op, const char *name, json_t **thing)
{
    if (!ciot__reg_name_valid(CIOT__REG_THING, name))
        return ciot__lx_service_error(
            op, "InvalidRequestException",
            "Invalid thing name '%s': 1 to 128 characters of [a-zA-Z0-9:_-]", name);
    int rc = ciot__registry_load(r, CIOT__REG_THING, name, thing);
    if (rc == CIOT_ENOTFOUND)
        return ciot__lx_service_error(op, "ResourceNotFoundException", "Thing %s cannot be found.",
                                      name);
    return rc ? reg_failure(r, rc, "cannot read thing") : 0;
}

static int check_policy_name(const char *op, const char *name)
{
    if (!ciot__reg_name_valid(CIOT__REG_POLICY, name))
        return ciot__lx_service_error(
            op, "InvalidRequestException",
            "Invalid policy name '%s': 1 to 128 characters of [\\w+=,.@-]", name);
    return 0;
}

/* ---- sub-commands: things ------------------------------------------------ */

static void uuid4(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1)
        for (size_t i = 0; i < sizeof b; i++)
            b[i] = (unsigned char)rand();
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
             b[13], b[14], b[15]);
}

static int cmd_create_thing(int argc, char **argv)
{
    const char *op = "CreateThing";
    ciot__lx_opt opts[] = {CIOT__LX_OPTS_COMMON, CIOT__LX_OPT_VALUE("--thing-name"),
                           CIOT__LX_OPT_VALUE("--attribute-payload")};
    PARSE("create-thing");
    REQUIRE("create-thing", "--thing-name");
    const char *name = GET("--thing-name");
    json_t *attrs = json_object();
    if (!attrs)
        return ciot__lx_other_error("out of memory");
    if (GET("--attribute-payload")) {
        json_error_t je;
        json_t *p = json_loads(GET("--attribute-payload"), JSON_REJECT_DUPLICATES, &je);
        json_t *a = p ? json_object_get(p, "attributes") : NULL;
        bool ok = json_is_object(a);
        const char *k;
        json_t *v;
        if (ok)
            json_object_foreach(a, k, v) ok = ok && json_is_string(v);
        if (!ok) {
            json_decref(p);
            json_decref(attrs);
            return ciot__lx_usage_error(
                "create-thing",
                "--attribute-payload: expected {\"attributes\":{\"name\":\"value\",...}}");
        }
        json_object_update(attrs, a);
        json_decref(p);
    }
    ciot__registry r;
    int rc = ciot__lx_open_reg("create-thing", opts, sizeof opts / sizeof *opts, true, &r);
    if (rc) {
        json_decref(attrs);
        return rc;
    }
    if (!ciot__reg_name_valid(CIOT__REG_THING, name)) {
        json_decref(attrs);
        return ciot__lx_service_error(
            op, "InvalidRequestException",
            "Invalid thing name '%s': 1 to 128 characters of [a-zA-Z0-9:_-]", name);
    }
    int lk;
    if ((rc = lock_reg(&r, &lk)) != 0) {
        json_decref(attrs);
        return rc;
    }
    json_t *old = NULL;
    rc = ciot__registry_load(&r, CIOT__REG_THING, name, &old);
    if (rc == 0) {
        /* AWS: the same name and configuration again succeeds (idempotent);
         * the same name with other attributes is refused. */
        bool same = json_equal(json_object_get(old, "attributes"), attrs);
        json_decref(attrs);
        ciot__registry_unlock(lk);
        if (!same) {
            json_decref(old);
            return ciot__lx_service_error(
                op, "ResourceAlreadyExistsException",
                "Thing %s already exists in account with different attributes", name);
        }
        json_t *out = json_pack("{s:O,s:O,s:O*}", "thingName", json_object_get(old, "thingName"),
                                "thingArn", json_object_get(old, "thingArn"), "thingId",
                                json_object_get(old, "thingId"));
        json_decref(old);
        return ciot__lx_print_json(out);
    }
    if (rc != CIOT_ENOTFOUND) {
        json_decref(attrs);
        ciot__registry_unlock(lk);
        return reg_failure(&r, rc, "cannot read thing");
    }
    char arn[512], id[37];
    ciot__registry_arn(&r, CIOT__REG_THING, name, arn, sizeof arn);
    uuid4(id);
    json_t *doc = json_pack("{s:s,s:s,s:s,s:o,s:i}", "thingName", name, "thingArn", arn, "thingId",
                            id, "attributes", attrs, "version", 1);
    rc = doc ? ciot__registry_save(&r, CIOT__REG_THING, name, doc) : CIOT_ENOMEM;
    json_decref(doc);
    ciot__registry_unlock(lk);
    if (rc)
        return reg_failure(&r, rc, "cannot write thing");
    return ciot__lx_print_json(
        json_pack("{s:s,s:s,s:s}", "thingName", name, "thingArn", arn, "thingId", id));
}

static int cmd_describe_thing(int argc, char **argv)
{
    ciot__lx_opt opts[] = {CIOT__LX_OPTS_COMMON, CIOT__LX_OPT_VALUE("--thing-name")};
    PARSE("describe-thing");
    REQUIRE("describe-thing", "--thing-name");
    ciot__registry r;
    int rc = ciot__lx_open_reg("describe-thing", opts, sizeof opts / sizeof *opts, false, &r);
    json_t *t = NULL;
    if (rc || (rc = load_thing(&r, "DescribeThing", GET("--thing-name"), &t)) != 0)
        return rc;
    if (!json_is_object(json_object_get(t, "attributes")))
        json_object_set_new(t, "attributes", json_object());
    json_t *attrs = json_object_get(t, "attributes");
    json_t *out = json_pack("{s:O,s:O,s:O*,s:O,s:O,s:O*}", "defaultClientId",
                            json_object_get(t, "thingName"), "thingName",
                            json_object_get(t, "thingName"), "thingId", json_object_get(t, "thingId"),
                            "thingArn", json_object_get(t, "thingArn"), "attributes",
                            attrs, "version", json_object_get(t, "version"));
    json_decref(t);
    return ciot__lx_print_json(out);
}

static int cmd_list_things(int argc, char **argv)
{
    ciot__lx_opt opts[] = {CIOT__LX_OPTS_COMMON};
    PARSE("list-things");
    ciot__registry r;
    int rc = ciot__lx_open_reg("list-things", opts, sizeof opts / sizeof *opts, false, &r);
    if (rc)
        return rc;
    char **names;
    size_t n;
    if ((rc = ciot__registry_list(&r, CIOT__REG_THING, &names, &n)) != 0)
        return reg_failure(&r, rc, "cannot list things");
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        json_t *t;
        if (ciot__registry_load(&r, CIOT__REG_THING, names[i], &t) != 0)
            continue; /* deleted meanwhile, or unreadable: not listed */
        if (!json_is_object(json_object_get(t, "attributes")))
            json_object_set_new(t, "attributes", json_object());
        json_t *attrs = json_object_get(t, "attributes");
        json_array_append_new(arr, json_pack("{s:O,s:O,s:O,s:O*}", "thingName",
                                             json_object_get(t, "thingName"), "thingArn",
                                             json_object_get(t, "thingArn"), "attributes",
                                             attrs, "version",
                                             json_object_get(t, "version")));
        json_decref(t);
    }
    ciot__registry_list_free(names, n);
    return ciot__lx_print_json(arr ? json_pack("{s:o}", "things", arr) : NULL);
}

/* The ids of the certificates that list @p value in their @p member array. */
static int certs_with(const ciot__registry *r, const char *member, const char *value,
                      json_t **ids)
{
    char **names;
    size_t n;
    int rc = ciot__registry_list(r, CIOT__REG_CERT, &names, &n);
    if (rc)
        return rc;
    *ids = json_array();
    for (size_t i = 0; *ids && i < n; i++) {
        json_t *c;
        if (ciot__registry_load(r, CIOT__REG_CERT, names[i], &c) != 0)
            continue;
        if (json_array_has(json_object_get(c, member), value))
            json_array_append_new(*ids, json_string(names[i]));
        json_decref(c);
    }
    ciot__registry_list_free(names, n);
    return *ids ? 0 : CIOT_ENOMEM;
}

static int cmd_delete_thing(int argc, char **argv)
{
    const char *op = "DeleteThing";
    ciot__lx_opt opts[] = {CIOT__LX_OPTS_COMMON, CIOT__LX_OPT_VALUE("--thing-name"),
                           CIOT__LX_OPT_VALUE("--expected-version")};
    PARSE("delete-thing");
    REQUIRE("delete-thing", "--thing-name");
    const char *name = GET("--thing-name");
    ciot__registry r;
    int rc = ciot__lx_open_reg("delete-thing", opts, sizeof opts / sizeof *opts, true, &r);
    if (rc)
        return rc;
    if (!ciot__reg_name_valid(CIOT__REG_THING, name))
        return ciot__lx_service_error(op, "InvalidRequestException", "Invalid thing name '%s'",
                                      name);
    int lk;
    if ((rc = lock_reg(&r, &lk)) != 0)
        return rc;
    json_t *t = NULL;
    rc = ciot__registry_load(&r, CIOT__REG_THING, name, &t);
    if (rc == CIOT_ENOTFOUND) {
        /* AWS: deleting a thing that does not exist succeeds. */
        ciot__registry_unlock(lk);
        return 0;
    }
    if (rc) {
        ciot__registry_unlock(lk);
        return reg_failure(&r, rc, "cannot read thing");
    }
    const char *ev = GET("--expected-version");
    json_int_t version = json_integer_value(json_object_get(t, "version"));
    json_decref(t);
    if (ev && strtoll(ev, NULL, 10) != version) {
        ciot__registry_unlock(lk);
        return ciot__lx_service_error(
            op, "VersionConflictException",
            "The version for thing %s does not match the expected version.", name);
    }
    json_t *ids = NULL;
    if ((rc = certs_with(&r, "things", name, &ids)) != 0) {
        ciot__registry_unlock(lk);
        return reg_failure(&r, rc, "cannot list certificates");
    }
    size_t attached = json_array_size(ids);
    json_decref(ids);
    if (attached) {
        ciot__registry_unlock(lk);
        return ciot__lx_service_error(
            op, "InvalidRequestException",
            "Cannot delete. Thing %s is still attached to one or more principals", name);
    }
    rc = ciot__registry_remove(&r, CIOT__REG_THING, name);
    ciot__registry_unlock(lk);
    return rc && rc != CIOT_ENOTFOUND ? reg_failure(&r, rc, "cannot delete thing") : 0;
}

/* ---- sub-commands: certificates ------------------------------------------ */

static int write_out_file(const char *cmd, const char *path, const char *text, mode_t mode)
{
    if (!path)
        return 0;
    if (ciot__write_atomic(path, text, strlen(text), mode) != 0)
        return ciot__lx_other_error("%s: cannot write %s: %s", cmd, path, strerror(errno));
    return 0;
}

static const char *tls_dir_of(const ciot__lx_opt *opts, size_t n, const ciot__registry *r,
                              char *buf, size_t len)
{
    const char *tls = ciot__lx_get(opts, n, "--tls");
    if (tls && *tls)
        return tls;
    snprintf(buf, len, "%s/tls", r->dir);
    return buf;
}

static int cmd_create_keys_and_certificate(int argc, char **argv)
{
    const char *op = "CreateKeysAndCertificate";
    ciot__lx_opt opts[] = {CIOT__LX_OPTS_COMMON,
                           CIOT__LX_OPT_VALUE("--tls"),
                           CIOT__LX_OPT_FLAG("--set-as-active"),
                           CIOT__LX_OPT_FLAG("--no-set-as-active"),
                           CIOT__LX_OPT_VALUE("--certificate-pem-outfile"),
                           CIOT__LX_OPT_VALUE("--public-key-outfile"),
                           CIOT__LX_OPT_VALUE("--private-key-outfile"),
                           CIOT__LX_OPT_VALUE("--common-name")};
    PARSE("create-keys-and-certificate");
    if (GET("--set-as-active") && GET("--no-set-as-active"))
        return ciot__lx_usage_error("create-keys-and-certificate",
                                    "--set-as-active and --no-set-as-active exclude each other");
    const char *cn = GET("--common-name") ? GET("--common-name") : CIOT__PKI_DEVICE_CN;
    if (!*cn || strlen(cn) > 64)
        return ciot__lx_usage_error("create-keys-and-certificate", "--common-name: 1 to 64 bytes");
    ciot__registry r;
    int rc = ciot__lx_open_reg("create-keys-and-certificate", opts, sizeof opts / sizeof *opts,
                               true, &r);
    if (rc)
        return rc;
    char tbuf[1100], err[512] = "";
    const char *tls = tls_dir_of(opts, sizeof opts / sizeof *opts, &r, tbuf, sizeof tbuf);
    bool generated;
    if ((rc = ciot__pki_ensure(tls, &generated, err, sizeof err)) != 0)
        return ciot__lx_other_error("%s", err);
    if (generated)
        fprintf(stderr, "%s: generated a test PKI in %s\n", PROG, tls);
    ciot__pki_issued is;
    if ((rc = ciot__pki_issue_device(&is, tls, cn, err, sizeof err)) != 0)
        return ciot__lx_other_error("%s", err);
    char arn[512];
    ciot__registry_arn(&r, CIOT__REG_CERT, is.id, arn, sizeof arn);
    json_t *doc = json_pack("{s:s,s:s,s:s,s:s,s:[],s:[],s:I}", "certificateId", is.id,
                            "certificateArn", arn, "status",
                            GET("--set-as-active") ? "ACTIVE" : "INACTIVE", "certificatePem",
                            is.cert_pem, "policies", "things", "creationDate",
                            (json_int_t)time(NULL));
    rc = doc ? ciot__registry_save(&r, CIOT__REG_CERT, is.id, doc) : CIOT_ENOMEM;
    json_decref(doc);
    if (rc) {
        ciot__pki_issued_free(&is);
        return reg_failure(&r, rc, "cannot write certificate");
    }
    if ((rc = write_out_file("create-keys-and-certificate", GET("--certificate-pem-outfile"),
                             is.cert_pem, 0644)) != 0 ||
        (rc = write_out_file("create-keys-and-certificate", GET("--public-key-outfile"),
                             is.public_pem, 0644)) != 0 ||
        (rc = write_out_file("create-keys-and-certificate", GET("--private-key-outfile"),
                             is.private_pem, 0600)) != 0) {
        ciot__pki_issued_free(&is);
        return rc;
    }
    (void)op;
    json_t *out = json_pack("{s:s,s:s,s:s,s:{s:s,s:s}}", "certificateArn", arn, "certificateId",
                            is.id, "certificatePem", is.cert_pem, "keyPair", "PublicKey",
                            is.public_pem, "PrivateKey", is.private_pem);
    ciot__pki_issued_free(&is);
    return ciot__lx_print_json(out);
}

static int cmd_update_certificate(int argc, char **argv)
{
    const char *op = "UpdateCertificate";
    ciot__lx_opt opts[] = {CIOT__LX_OPTS_COMMON, CIOT__LX_OPT_VALUE("--certificate-id"),
                           CIOT__LX_OPT_VALUE("--new-status")};
    PARSE("update-certificate");
    REQUIRE("update-certificate", "--certificate-id");
    REQUIRE("update-certificate", "--new-status");
    const char *id = GET("--certificate-id"), *st = GET("--new-status");
    if (strcmp(st, "ACTIVE") != 0 && strcmp(st, "INACTIVE") != 0)
        return ciot__lx_usage_error("update-certificate",
                                    "--new-status: '%s' is not one of ACTIVE, INACTIVE", st);
    ciot__registry r;
    int rc = ciot__lx_open_reg("update-certificate", opts, sizeof opts / sizeof *opts, true, &r);
    if (rc)
        return rc;
    if (!ciot__reg_name_valid(CIOT__REG_CERT, id))
        return ciot__lx_service_error(
            op, "InvalidRequestException",
            "Invalid certificate id '%s': 64 lowercase hexadecimal digits", id);
    int lk;
    if ((rc = lock_reg(&r, &lk)) != 0)
        return rc;
    json_t *c = NULL;
    rc = ciot__registry_load(&r, CIOT__REG_CERT, id, &c);
    if (rc == CIOT_ENOTFOUND) {
        ciot__registry_unlock(lk);
        return ciot__lx_service_error(op, "ResourceNotFoundException",
                                      "The certificate does not exist (id=%s)", id);
    }
    if (rc == 0) {
        json_object_set_new(c, "status", json_string(st));
        rc = ciot__registry_save(&r, CIOT__REG_CERT, id, c);
    }
    json_decref(c);
    ciot__registry_unlock(lk);
    return rc ? reg_failure(&r, rc, "cannot update certificate") : 0;
}

static int cmd_describe_certificate(int argc, char **argv)
{
    ciot__lx_opt opts[] = {CIOT__LX_OPTS_COMMON, CIOT__LX_OPT_VALUE("--certificate-id")};
    PARSE("describe-certificate");
    REQUIRE("describe-certificate", "--certificate-id");
    ciot__registry r;
    int rc = ciot__lx_open_reg("describe-certificate", opts, sizeof opts / sizeof *opts, false, &r);
    if (rc)
        return rc;
    char id[65];
    json_t *c;
    if ((rc = load_cert_arn(&r, "DescribeCertificate", GET("--certificate-id"), id, &c)) != 0)
        return rc;
    char when[32];
    ciot__lx_iso_time(json_integer_value(json_object_get(c, "creationDate")), when);
    json_t *out = json_pack("{s:{s:O,s:O,s:O,s:O,s:s}}", "certificateDescription",
                            "certificateArn", json_object_get(c, "certificateArn"),
                            "certificateId", json_object_get(c, "certificateId"), "status",
                            json_object_get(c, "status"), "certificatePem",
                            json_object_get(c, "certificatePem"), "creationDate", when);
    json_decref(c);
    return ciot__lx_print_json(out);
}

static int cmd_list_certificates(int argc, char **argv)
{
    ciot__lx_opt opts[] = {CIOT__LX_OPTS_COMMON};
    PARSE("list-certificates");
    ciot__registry r;
    int rc = ciot__lx_open_reg("list-certificates", opts, sizeof opts / sizeof *opts, false, &r);
    if (rc)
        return rc;
    char **names;
    size_t n;
    if ((rc = ciot__registry_list(&r, CIOT__REG_CERT, &names, &n)) != 0)
        return reg_failure(&r, rc, "cannot list certificates");
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        json_t *c;
        if (ciot__registry_load(&r, CIOT__REG_CERT, names[i], &c) != 0)
            continue;
        char when[32];
        ciot__lx_iso_time(json_integer_value(json_object_get(c, "creationDate")), when);
        json_array_append_new(arr, json_pack("{s:O,s:O,s:O,s:s}", "certificateArn",
                                             json_object_get(c, "certificateArn"), "certificateId",
                                             json_object_get(c, "certificateId"), "status",
                                             json_object_get(c, "status"), "creationDate", when));
        json_decref(c);
    }
    ciot__registry_list_free(names, n);
    return ciot__lx_print_json(arr ? json_pack("{s:o}", "certificates", arr) : NULL);
}

/* attach-thing-principal / detach-thing-principal */
static int thing_principal(int argc, char **argv, bool attach)
{
    const char *cmd = attach ? "attach-thing-principal" : "detach-thing-principal";
    const char *op = attach ? "AttachThingPrincipal" : "DetachThingPrincipal";
    ciot__lx_opt opts[] = {CIOT__LX_OPTS_COMMON, CIOT__LX_OPT_VALUE("--thing-name"),
                           CIOT__LX_OPT_VALUE("--principal")};
    PARSE(cmd);
    REQUIRE(cmd, "--thing-name");
    REQUIRE(cmd, "--principal");
    ciot__registry r;
    int rc = ciot__lx_open_reg(cmd, opts, sizeof opts / sizeof *opts, true, &r);
    if (rc)
        return rc;
    int lk;
    if ((rc = lock_reg(&r, &lk)) != 0)
        return rc;
    json_t *t = NULL, *c = NULL;
    char id[65];
    if ((rc = load_thing(&r, op, GET("--thing-name"), &t)) != 0 ||
        (rc = load_cert_arn(&r, op, GET("--principal"), id, &c)) != 0) {
        json_decref(t);
        ciot__registry_unlock(lk);
        return rc;
    }
    json_decref(t);
    json_t *things = array_member(c, "things");
    const char *name = GET("--thing-name");
    bool changed = false;
    if (!things)
        rc = CIOT_ENOMEM;
    else if (attach && !json_array_has(things, name))
        changed = json_array_append_new(things, json_string(name)) == 0;
    else if (!attach)
        changed = array_remove(things, name);
    if (changed)
        rc = ciot__registry_save(&r, CIOT__REG_CERT, id, c);
    json_decref(c);
    ciot__registry_unlock(lk);
    return rc ? reg_failure(&r, rc, "cannot update certificate") : 0;
}

static int cmd_list_thing_principals(int argc, char **argv)
{
    ciot__lx_opt opts[] = {CIOT__LX_OPTS_COMMON, CIOT__LX_OPT_VALUE("--thing-name")};
    PARSE("list-thing-principals");
    REQUIRE("list-thing-principals", "--thing-name");
    ciot__registry r;
    int rc =
        ciot__lx_open_reg("list-thing-principals", opts, sizeof opts / sizeof *opts, false, &r);
    json_t *t = NULL, *ids = NULL;
    if (rc || (rc = load_thing(&r, "ListThingPrincipals", GET("--thing-name"), &t)) != 0)
        return rc;
    json_decref(t);
    if ((rc = certs_with(&r, "things", GET("--thing-name"), &ids)) != 0)
        return reg_failure(&r, rc, "cannot list certificates");
    json_t *arr = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        char arn[512];
        ciot__registry_arn(&r, CIOT__REG_CERT, json_string_value(v), arn, sizeof arn);
        json_array_append_new(arr, json_string(arn));
    }
    json_decref(ids);
    return ciot__lx_print_json(arr ? json_pack("{s:o}", "principals", arr) : NULL);
}

/* ---- sub-commands: policies ---------------------------------------------- */

/* Reads --policy-document: "file://PATH" or the JSON text itself. */
static int policy_document(const char *arg, char **out)
{
    *out = NULL;
    if (strncmp(arg, "file://", 7) != 0) {
        *out = strdup(arg);
        return *out ? 0 : ciot__lx_other_error("out of memory");
    }
    const char *path = arg + 7;
    FILE *f = fopen(path, "rb");
    if (!f)
        return ciot__lx_usage_error(
            "create-policy",
            "Error parsing parameter '--policy-document': Unable to load paramfile "
            "%s: %s",
            arg, strerror(errno));
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t k = fread(buf + len, 1, cap - len - 1, f);
        len += k;
        if (k == 0)
            break;
        if (len + 1 == cap) {
            if (cap >= (1u << 20)) {
                free(buf);
                fclose(f);
                return ciot__lx_usage_error("create-policy", "%s: larger than 1 MiB", path);
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    bool bad = ferror(f);
    fclose(f);
    if (!buf)
        return ciot__lx_other_error("out of memory");
    if (bad) {
        free(buf);
        return ciot__lx_usage_error("create-policy", "cannot read %s", path);
    }
    if (memchr(buf, '\0', len)) {
        /* Taken whole, as the AWS CLI does: never a document cut at the NUL. */
        free(buf);
        return ciot__lx_service_error("CreatePolicy", "MalformedPolicyException",
                                      "Policy document is not valid JSON: %s contains a NUL byte",
                                      path);
    }
    buf[len] = '\0';
    *out = buf;
    return 0;
}

static int cmd_create_policy(int argc, char **argv)
{
    const char *op = "CreatePolicy";
    ciot__lx_opt opts[] = {CIOT__LX_OPTS_COMMON, CIOT__LX_OPT_VALUE("--policy-name"),
                           CIOT__LX_OPT_VALUE("--policy-document")};
    PARSE("create-policy");
    REQUIRE("create-policy", "--policy-name");
    REQUIRE("create-policy", "--policy-document");
    const char *name = GET("--policy-name");
    ciot__registry r;
    int rc = ciot__lx_open_reg("create-policy", opts, sizeof opts / sizeof *opts, true, &r);
    if (rc || (rc = check_policy_name(op, name)) != 0)
        return rc;
    char *text;
    if ((rc = policy_document(GET("--policy-document"), &text)) != 0)
        return rc;
    size_t len = strlen(text);
    json_error_t je;
    json_t *parsed = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(parsed)) {
        json_decref(parsed);
        free(text);
        if (!parsed)
            return ciot__lx_service_error(
                op, "MalformedPolicyException",
                "Policy document is not valid JSON: %s (line %d, column %d)", je.text, je.line,
                je.column);
        return ciot__lx_service_error(op, "MalformedPolicyException",
                                      "Policy document must be a JSON object");
    }
    json_t *st = json_object_get(parsed, "Statement");
    bool has_statement = json_is_array(st) || json_is_object(st);
    json_decref(parsed);
    if (!has_statement) {
        free(text);
        return ciot__lx_service_error(op, "MalformedPolicyException",
                                      "Policy document is missing required field: Statement");
    }
    /* The policy engine the plugin evaluates with: what it cannot parse or
     * would not evaluate is refused now rather than at CONNECT. */
    {
        char msg[256] = "";
        ciot__aws_policy *pol = NULL;
        int prc = ciot__aws_policy_parse(&pol, text, len, msg, sizeof msg);
        ciot__aws_policy_free(pol);
        if (prc) {
            free(text);
            return ciot__lx_service_error(
                op, "MalformedPolicyException", "%s%s",
                prc == CIOT_ENOTBUILT ? "Not supported by the emulator: " : "", msg);
        }
    }
    int lk;
    if ((rc = lock_reg(&r, &lk)) != 0) {
        free(text);
        return rc;
    }
    json_t *old = NULL;
    rc = ciot__registry_load(&r, CIOT__REG_POLICY, name, &old);
    json_decref(old);
    if (rc == 0) {
        ciot__registry_unlock(lk);
        free(text);
        return ciot__lx_service_error(op, "ResourceAlreadyExistsException",
                                      "Policy cannot be created - name already exists (name=%s)",
                                      name);
    }
    if (rc != CIOT_ENOTFOUND) {
        ciot__registry_unlock(lk);
        free(text);
        return reg_failure(&r, rc, "cannot read policy");
    }
    char arn[512];
    ciot__registry_arn(&r, CIOT__REG_POLICY, name, arn, sizeof arn);
    json_t *doc = json_pack("{s:s,s:s,s:s,s:s}", "policyName", name, "policyArn", arn,
                            "policyDocument", text, "policyVersionId", "1");
    free(text);
    rc = doc ? ciot__registry_save(&r, CIOT__REG_POLICY, name, doc) : CIOT_ENOMEM;
    ciot__registry_unlock(lk);
    if (rc) {
        json_decref(doc);
        return reg_failure(&r, rc, "cannot write policy");
    }
    return ciot__lx_print_json(doc);
}

/* attach-policy / detach-policy */
static int policy_target(int argc, char **argv, bool attach)
{
    const char *cmd = attach ? "attach-policy" : "detach-policy";
    const char *op = attach ? "AttachPolicy" : "DetachPolicy";
    ciot__lx_opt opts[] = {CIOT__LX_OPTS_COMMON, CIOT__LX_OPT_VALUE("--policy-name"),
                           CIOT__LX_OPT_VALUE("--target")};
    PARSE(cmd);
    REQUIRE(cmd, "--policy-name");
    REQUIRE(cmd, "--target");
    const char *name = GET("--policy-name");
    ciot__registry r;
    int rc = ciot__lx_open_reg(cmd, opts, sizeof opts / sizeof *opts, true, &r);
    if (rc || (rc = check_policy_name(op, name)) != 0)
        return rc;
    int lk;
    if ((rc = lock_reg(&r, &lk)) != 0)
        return rc;
    json_t *p = NULL, *c = NULL;
    char id[65];
    if (attach) {
        rc = ciot__registry_load(&r, CIOT__REG_POLICY, name, &p);
        json_decref(p);
        if (rc) {
            ciot__registry_unlock(lk);
            return rc == CIOT_ENOTFOUND ? ciot__lx_service_error(op, "ResourceNotFoundException",
                                                                 "Policy %s does not exist", name)
                                        : reg_failure(&r, rc, "cannot read policy");
        }
    }
    if ((rc = load_cert_arn(&r, op, GET("--target"), id, &c)) != 0) {
        ciot__registry_unlock(lk);
        return rc;
    }
    json_t *pols = array_member(c, "policies");
    bool changed = false;
    if (!pols)
        rc = CIOT_ENOMEM;
    else if (attach && !json_array_has(pols, name))
        changed = json_array_append_new(pols, json_string(name)) == 0;
    else if (!attach)
        changed = array_remove(pols, name);
    if (changed)
        rc = ciot__registry_save(&r, CIOT__REG_CERT, id, c);
    json_decref(c);
    ciot__registry_unlock(lk);
    return rc ? reg_failure(&r, rc, "cannot update certificate") : 0;
}

static int cmd_list_attached_policies(int argc, char **argv)
{
    ciot__lx_opt opts[] = {CIOT__LX_OPTS_COMMON, CIOT__LX_OPT_VALUE("--target"),
                           CIOT__LX_OPT_FLAG("--recursive")};
    PARSE("list-attached-policies");
    REQUIRE("list-attached-policies", "--target");
    ciot__registry r;
    int rc =
        ciot__lx_open_reg("list-attached-policies", opts, sizeof opts / sizeof *opts, false, &r);
    char id[65];
    json_t *c = NULL;
    if (rc || (rc = load_cert_arn(&r, "ListAttachedPolicies", GET("--target"), id, &c)) != 0)
        return rc;
    json_t *arr = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(c, "policies"), i, v)
    {
        char arn[512];
        if (!json_is_string(v) ||
            ciot__registry_arn(&r, CIOT__REG_POLICY, json_string_value(v), arn, sizeof arn) != 0)
            continue;
        json_array_append_new(arr, json_pack("{s:O,s:s}", "policyName", v, "policyArn", arn));
    }
    json_decref(c);
    return ciot__lx_print_json(arr ? json_pack("{s:o}", "policies", arr) : NULL);
}

static int cmd_list_policies(int argc, char **argv)
{
    ciot__lx_opt opts[] = {CIOT__LX_OPTS_COMMON};
    PARSE("list-policies");
    ciot__registry r;
    int rc = ciot__lx_open_reg("list-policies", opts, sizeof opts / sizeof *opts, false, &r);
    if (rc)
        return rc;
    char **names;
    size_t n;
    if ((rc = ciot__registry_list(&r, CIOT__REG_POLICY, &names, &n)) != 0)
        return reg_failure(&r, rc, "cannot list policies");
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        char arn[512];
        ciot__registry_arn(&r, CIOT__REG_POLICY, names[i], arn, sizeof arn);
        json_array_append_new(arr, json_pack("{s:s,s:s}", "policyName", names[i], "policyArn", arn));
    }
    ciot__registry_list_free(names, n);
    return ciot__lx_print_json(arr ? json_pack("{s:o}", "policies", arr) : NULL);
}

/* The local endpoint: the broker listens on localhost (the server
 * certificate's names are localhost, 127.0.0.1 and ::1); the port is the one
 * `run` printed in its ready line. */
static int cmd_describe_endpoint(int argc, char **argv)
{
    ciot__lx_opt opts[] = {CIOT__LX_OPT_VALUE("--endpoint-type")};
    PARSE("describe-endpoint");
    const char *t = GET("--endpoint-type");
    if (t && strcmp(t, "iot:Data-ATS") != 0 && strcmp(t, "iot:Data") != 0)
        return ciot__lx_service_error(
            "DescribeEndpoint", "InvalidRequestException",
            "Endpoint type %s is not served by the emulator (iot:Data-ATS only)", t);
    return ciot__lx_print_json(json_pack("{s:s}", "endpointAddress", "localhost"));
}

static int cmd_pki(int argc, char **argv)
{
    ciot__lx_opt opts[] = {CIOT__LX_OPT_VALUE("--tls")};
    PARSE("pki");
    REQUIRE("pki", "--tls");
    char err[512] = "";
    const char *dir = GET("--tls");
    int rc = ciot__pki_generate(dir, err, sizeof err);
    if (rc)
        return ciot__lx_other_error("%s", err);
    json_t *files = json_array();
    static const char *const names[] = {"ca.crt",    "ca.key",    "server.crt",
                                        "server.key", "admin.crt", "admin.key"};
    for (size_t i = 0; files && i < sizeof names / sizeof *names; i++) {
        char p[1200];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        json_array_append_new(files, json_string(p));
    }
    return ciot__lx_print_json(files
                                   ? json_pack("{s:s,s:s,s:o}", "directory", dir, "adminCommonName",
                                               CIOT__PKI_ADMIN_CN, "files", files)
                                   : NULL);
}

/* ---- run ----------------------------------------------------------------- */

static volatile sig_atomic_t child_pid;
static volatile sig_atomic_t got_signal;

/* SIGINT and SIGTERM are forwarded; a hang-up stops mosquitto too (for
 * mosquitto SIGHUP would mean "reload", leaving it running without us). */
static void on_signal(int sig)
{
    got_signal = sig;
    if (child_pid > 0)
        kill((pid_t)child_pid, sig == SIGHUP ? SIGTERM : sig);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static bool is_file(const char *p)
{
    struct stat st;
    return p && *p && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static bool is_exec(const char *p)
{
    return is_file(p) && access(p, X_OK) == 0;
}

/* Finds the plugin module; writes the places tried to @p tried. */
static bool find_plugin(const char *given, char *out, size_t outlen, char *tried, size_t tlen)
{
    const char *cands[8];
    size_t n = 0;
    char exe_dir[PATH_MAX] = "", c1[PATH_MAX + 32] = "", c2[PATH_MAX + 32] = "";
    if (given) {
        cands[n++] = given;
    } else {
        const char *env = getenv("CLOUDIOT_EMULATOR_PLUGIN");
        if (env && *env)
            cands[n++] = env;
        /* The build tree: the module next to this program. */
        ssize_t k = readlink("/proc/self/exe", exe_dir, sizeof exe_dir - 1);
        if (k > 0) {
            exe_dir[k] = '\0';
            char *slash = strrchr(exe_dir, '/');
            if (slash) {
                *slash = '\0';
                snprintf(c1, sizeof c1, "%s/cloudiot_emulator.so", exe_dir);
                snprintf(c2, sizeof c2, "%s/libcloudiot_emulator.so", exe_dir);
                cands[n++] = c1;
                cands[n++] = c2;
            }
        }
        if (*CIOT_EMULATOR_PLUGIN_BUILD && strcmp(CIOT_EMULATOR_PLUGIN_BUILD, c1) != 0)
            cands[n++] = CIOT_EMULATOR_PLUGIN_BUILD;
        if (*CIOT_EMULATOR_PLUGIN_INSTALLED)
            cands[n++] = CIOT_EMULATOR_PLUGIN_INSTALLED;
    }
    tried[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (is_file(cands[i])) {
            if (!realpath(cands[i], out) && strlen(cands[i]) < outlen)
                snprintf(out, outlen, "%s", cands[i]);
            return true;
        }
        size_t used = strlen(tried);
        snprintf(tried + used, tlen - used, "%s  %s", used ? "\n" : "", cands[i]);
    }
    return false;
}

static bool find_mosquitto(const char *given, char *out, size_t outlen)
{
    if (given) {
        snprintf(out, outlen, "%s", given);
        return is_exec(given);
    }
    if (is_exec("/usr/sbin/mosquitto")) {
        snprintf(out, outlen, "/usr/sbin/mosquitto");
        return true;
    }
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin";
    while (*path) {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        if (len && len < outlen - 16) {
            snprintf(out, outlen, "%.*s/mosquitto", (int)len, path);
            if (is_exec(out))
                return true;
        }
        path += len + (end ? 1 : 0);
    }
    snprintf(out, outlen, "mosquitto");
    return false;
}

static void print_log_tail(const char *log)
{
    FILE *f = fopen(log, "rb");
    if (!f) {
        fprintf(stderr, "%s: (no log at %s)\n", PROG, log);
        return;
    }
    char buf[4096];
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : 0;
    long from = size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0;
    fseek(f, from, SEEK_SET);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The last 15 lines. */
    int lines = 0;
    size_t start = n;
    while (start > 0) {
        if (buf[start - 1] == '\n' && start != n && ++lines == 15)
            break;
        start--;
    }
    fprintf(stderr, "%s: last lines of %s:\n%s%s", PROG, log, buf + start,
            n && buf[n - 1] != '\n' ? "\n" : "");
}

/* Resolves host:port for a TCP socket; NULL on failure. */
static struct addrinfo *resolve(const char *host, int port)
{
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(host, ps, &hints, &ai) != 0)
        return NULL;
    return ai;
}

/* Binds host:port (0: any free port) and returns the port bound, or -1
 * with errno set (EADDRINUSE when taken). */
static int try_bind(const char *host, int want)
{
    struct addrinfo *ai = resolve(host, want);
    int port = -1;
    if (!ai)
        return -1;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    /* As mosquitto does, so that a port in TIME_WAIT counts as free. */
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd >= 0 && bind(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
            port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                  : ((struct sockaddr_in *)&ss)->sin_port);
    }
    int e = errno;
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    errno = e;
    return port;
}

static bool port_accepts(const char *host, int port)
{
    struct addrinfo *ai = resolve(host, port);
    if (!ai)
        return false;
    bool ok = false;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd >= 0) {
        int r = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (r == 0) {
            ok = true;
        } else if (errno == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int err = 0;
            socklen_t el = sizeof err;
            if (poll(&p, 1, 200) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 &&
                err == 0)
                ok = true;
        }
        close(fd);
    }
    freeaddrinfo(ai);
    return ok;
}

static bool conf_value_ok(const char *s)
{
    return s && !strpbrk(s, "\r\n");
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int exit_status(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return EXIT_OTHER;
}

static int cmd_run(int argc, char **argv)
{
    ciot__lx_opt opts[] = {CIOT__LX_OPTS_COMMON,
                           CIOT__LX_OPT_VALUE("--port"),
                           CIOT__LX_OPT_VALUE("--host"),
                           CIOT__LX_OPT_VALUE("--tls"),
                           CIOT__LX_OPT_VALUE("--plugin"),
                           CIOT__LX_OPT_VALUE("--mosquitto"),
                           CIOT__LX_OPT_VALUE("--policies"),
                           CIOT__LX_OPT_VALUE("--admin-password"),
                           CIOT__LX_OPT_FLAG("--verbose")};
    PARSE("run");
    const char *host = GET("--host") ? GET("--host") : "127.0.0.1";
    const char *tls = GET("--tls");
    const char *policies = GET("--policies") ? GET("--policies") : "enforce";
    const char *admin_pw = GET("--admin-password");
    bool verbose = GET("--verbose") != NULL;
    if (strcmp(policies, "enforce") != 0 && strcmp(policies, "off") != 0)
        return ciot__lx_usage_error("run", "--policies: 'enforce' or 'off', not '%s'", policies);
    if (!*host || !conf_value_ok(host) || strchr(host, ' '))
        return ciot__lx_usage_error("run", "--host: invalid host");
    if (admin_pw && (!*admin_pw || !conf_value_ok(admin_pw)))
        return ciot__lx_usage_error("run", "--admin-password: must be one non-empty line");
    int port = tls ? 8883 : 1883;
    if (GET("--port")) {
        char *end;
        long p = strtol(GET("--port"), &end, 10);
        if (!*GET("--port") || *end || p < 0 || p > 65535)
            return ciot__lx_usage_error("run", "--port: 0 to 65535, not '%s'", GET("--port"));
        port = (int)p;
    }
    char plugin[PATH_MAX], tried[4096];
    if (!find_plugin(GET("--plugin"), plugin, sizeof plugin, tried, sizeof tried)) {
        fprintf(stderr,
                "%s: the emulator plugin (cloudiot_emulator.so) was not found; tried:\n%s\n"
                "%s: build it (meson option emulator), or give --plugin PATH or "
                "CLOUDIOT_EMULATOR_PLUGIN\n",
                PROG, tried, PROG);
        return 1;
    }
    char mosq[PATH_MAX];
    if (!find_mosquitto(GET("--mosquitto"), mosq, sizeof mosq)) {
        fprintf(stderr, "%s: mosquitto not found or not executable (%s); give --mosquitto PATH\n",
                PROG, mosq);
        return 1;
    }

    /* The directory of the configuration and the log. */
    ciot__registry reg;
    bool have_data = GET("--data") != NULL || getenv("CLOUDIOT_EMULATOR_DATA") != NULL;
    char dir[PATH_MAX] = "";
    bool temp = false;
    int rc;
    if (have_data) {
        if ((rc = ciot__lx_open_reg("run", opts, sizeof opts / sizeof *opts, true, &reg)) != 0)
            return rc;
        if (!realpath(reg.dir, dir))
            return ciot__lx_other_error("%s: %s", reg.dir, strerror(errno));
    } else {
        char err[512] = "";
        if (ciot__registry_open(&reg, "/nonexistent", GET("--region"), GET("--account"), false,
                                err, sizeof err) != 0)
            return ciot__lx_usage_error("run", "%s", err);
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/cloudiot-emulator.XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir))
            return ciot__lx_other_error("cannot create a temporary directory: %s", strerror(errno));
        temp = true;
    }
    if (!conf_value_ok(dir) || !conf_value_ok(plugin)) {
        rc = ciot__lx_other_error("paths must not contain line breaks");
        goto out;
    }
    char tls_abs[PATH_MAX] = "";
    if (tls) {
        char err[512] = "";
        bool generated;
        if (ciot__pki_ensure(tls, &generated, err, sizeof err) != 0) {
            rc = ciot__lx_other_error("%s", err);
            goto out;
        }
        if (generated)
            fprintf(stderr, "%s: generated a test PKI in %s\n", PROG, tls);
        if (!realpath(tls, tls_abs) || !conf_value_ok(tls_abs)) {
            rc = ciot__lx_other_error("%s: %s", tls, strerror(errno));
            goto out;
        }
        static const char *const need[] = {"ca.crt", "server.crt", "server.key"};
        for (size_t i = 0; i < 3; i++) {
            char p[PATH_MAX + 32];
            snprintf(p, sizeof p, "%s/%s", tls_abs, need[i]);
            if (!is_file(p)) {
                rc = ciot__lx_other_error("%s: missing (a TLS directory needs ca.crt, server.crt, "
                                          "server.key)",
                                          p);
                goto out;
            }
        }
    }
    errno = 0;
    int bound = try_bind(host, port);
    if (bound <= 0) {
        rc = port ? ciot__lx_other_error("cannot listen on %s port %d: %s", host, port,
                                         errno ? strerror(errno) : "cannot resolve the host")
                  : ciot__lx_other_error("cannot find a free port on %s: %s", host,
                                         errno ? strerror(errno) : "cannot resolve the host");
        if (port)
            rc = 1;
        goto out;
    }
    port = bound;

    char conf[PATH_MAX + 32], log[PATH_MAX + 32];
    snprintf(conf, sizeof conf, "%s/mosquitto.conf", dir);
    snprintf(log, sizeof log, "%s/mosquitto.log", dir);
    char *text = NULL;
    size_t tlen = 0;
    FILE *cf = open_memstream(&text, &tlen);
    if (!cf) {
        rc = ciot__lx_other_error("out of memory");
        goto out;
    }
    fprintf(cf, "# written by %s run; rewritten at each start\n", PROG);
    fprintf(cf, "per_listener_settings false\nallow_anonymous true\npersistence false\n");
    fprintf(cf, "log_dest file %s\n", log);
    if (verbose)
        fprintf(cf, "log_dest stderr\nlog_type all\n");
    else
        fprintf(cf, "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n");
    fprintf(cf, "connection_messages true\nlog_timestamp true\n");
    /* As root mosquitto would switch to the user "mosquitto", who cannot
     * read the keys (0600) nor write the log here. */
    if (geteuid() == 0)
        fprintf(cf, "user root\n");
    fprintf(cf, "plugin %s\n", plugin);
    if (have_data)
        fprintf(cf, "plugin_opt_data_dir %s\n", dir);
    fprintf(cf, "plugin_opt_region %s\nplugin_opt_account %s\nplugin_opt_policies %s\n",
            reg.region, reg.account, policies);
    if (admin_pw)
        fprintf(cf, "plugin_opt_admin_password %s\n", admin_pw);
    fprintf(cf, "listener %d %s\n", port, host);
    if (tls)
        fprintf(cf,
                "cafile %s/ca.crt\ncertfile %s/server.crt\nkeyfile %s/server.key\n"
                "require_certificate true\ntls_version tlsv1.2\n",
                tls_abs, tls_abs, tls_abs);
    if (fclose(cf) != 0 || !text) {
        free(text);
        rc = ciot__lx_other_error("out of memory");
        goto out;
    }
    rc = ciot__write_atomic(conf, text, tlen, 0600);
    free(text);
    if (rc) {
        rc = ciot__lx_other_error("cannot write %s: %s", conf, strerror(errno));
        goto out;
    }
    unlink(log); /* this run's log only */

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        rc = ciot__lx_other_error("fork: %s", strerror(errno));
        goto out;
    }
    if (pid == 0) {
#ifdef __linux__
        /* Never outlive the launcher, even if it is killed with SIGKILL. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1);
#else
        (void)parent;
#endif
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        dup2(STDERR_FILENO, STDOUT_FILENO); /* stdout carries the ready line only */
        execl(mosq, mosq, "-c", conf, (char *)NULL);
        fprintf(stderr, "%s: cannot run %s: %s\n", PROG, mosq, strerror(errno));
        _exit(127);
    }
    child_pid = pid;

    /* Wait until the listener accepts connections (at most 10 s). */
    uint64_t deadline = now_ms() + 10000;
    int st = 0;
    bool ready = false, exited = false;
    while (!got_signal) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) {
            exited = true;
            break;
        }
        /* Listening, and by mosquitto (it may have failed meanwhile). */
        if (port_accepts(host, port)) {
            ready = waitpid(pid, &st, WNOHANG) == 0;
            exited = !ready;
            break;
        }
        if (now_ms() > deadline)
            break;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (!ready) {
        if (exited) {
            fprintf(stderr, "%s: mosquitto exited before accepting connections (status %d)\n",
                    PROG, exit_status(st));
        } else {
            if (!got_signal)
                fprintf(stderr, "%s: mosquitto did not accept connections on %s:%d within 10 s\n",
                        PROG, host, port);
            kill(pid, SIGKILL);
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
        }
        child_pid = 0;
        if (!got_signal)
            print_log_tail(log);
        rc = got_signal ? 128 + got_signal : 1;
        goto out;
    }
    bool v6 = strchr(host, ':') != NULL;
    printf("%s: ready on %s%s%s:%d (data %s, %s%s)\n", PROG, v6 ? "[" : "", host, v6 ? "]" : "",
           port, have_data ? dir : "none", tls ? "tls " : "plain", tls ? tls_abs : "");
    fflush(stdout);

    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) {
            st = 0;
            break;
        }
    }
    child_pid = 0;
    rc = exit_status(st);
    if (!got_signal && rc != 0) {
        fprintf(stderr, "%s: mosquitto exited (status %d)\n", PROG, rc);
        print_log_tail(log);
    }
out:
    if (temp)
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}

/* ---- main ---------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s COMMAND [options]\n"
            "\n"
            "Run the local AWS IoT Core emulator (mosquitto with the cloudiot plugin):\n"
            "  run [--port N (0: a free one)] [--host H] [--data DIR] [--tls DIR]\n"
            "      [--plugin PATH] [--mosquitto PATH] [--policies enforce|off]\n"
            "      [--admin-password P] [--verbose] [--region R] [--account A]\n"
            "  pki --tls DIR          generate a test PKI (CA, server, admin) in an empty DIR\n"
            "  describe-endpoint [--endpoint-type iot:Data-ATS]   {\"endpointAddress\": \"localhost\"}\n"
            "\n"
            "Provisioning, like `aws iot ...` (all take --data DIR [--region R --account A]):\n"
            "  create-thing --thing-name N [--attribute-payload JSON]\n"
            "  describe-thing --thing-name N\n"
            "  list-things\n"
            "  delete-thing --thing-name N [--expected-version V]\n"
            "  create-keys-and-certificate [--set-as-active] [--certificate-pem-outfile F]\n"
            "      [--public-key-outfile F] [--private-key-outfile F] [--common-name CN]\n"
            "      [--tls DIR (default DATA/tls; a test PKI is generated if missing)]\n"
            "  update-certificate --certificate-id ID --new-status ACTIVE|INACTIVE\n"
            "  describe-certificate --certificate-id ID\n"
            "  list-certificates\n"
            "  create-policy --policy-name N --policy-document file://F|JSON\n"
            "  list-policies\n"
            "  attach-policy --policy-name N --target CERT_ARN\n"
            "  detach-policy --policy-name N --target CERT_ARN\n"
            "  list-attached-policies --target CERT_ARN\n"
            "  attach-thing-principal --thing-name N --principal CERT_ARN\n"
            "  detach-thing-principal --thing-name N --principal CERT_ARN\n"
            "  list-thing-principals --thing-name N\n",
            PROG);
    ciot__launcher_azure_usage(f);
    ciot__launcher_rules_usage(f);
    fprintf(f,
            "\n"
            "Exit status: 0 success, 252 bad command line, 254 error answered by the\n"
            "registry (AWS-style exception on stderr), 255 other failure; `run` exits\n"
            "with mosquitto's status (1 if it could not start).\n");
}

static int attach_thing_principal(int argc, char **argv)
{
    return thing_principal(argc, argv, true);
}
static int detach_thing_principal(int argc, char **argv)
{
    return thing_principal(argc, argv, false);
}
static int attach_policy(int argc, char **argv)
{
    return policy_target(argc, argv, true);
}
static int detach_policy(int argc, char **argv)
{
    return policy_target(argc, argv, false);
}

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
} commands[] = {
    {"run", cmd_run},
    {"pki", cmd_pki},
    {"describe-endpoint", cmd_describe_endpoint},
    {"create-thing", cmd_create_thing},
    {"describe-thing", cmd_describe_thing},
    {"list-things", cmd_list_things},
    {"delete-thing", cmd_delete_thing},
    {"create-keys-and-certificate", cmd_create_keys_and_certificate},
    {"update-certificate", cmd_update_certificate},
    {"describe-certificate", cmd_describe_certificate},
    {"list-certificates", cmd_list_certificates},
    {"create-policy", cmd_create_policy},
    {"list-policies", cmd_list_policies},
    {"attach-policy", attach_policy},
    {"detach-policy", detach_policy},
    {"list-attached-policies", cmd_list_attached_policies},
    {"attach-thing-principal", attach_thing_principal},
    {"detach-thing-principal", detach_thing_principal},
    {"list-thing-principals", cmd_list_thing_principals},
};

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(commands[i].name, cmd) == 0)
            return commands[i].fn(argc - 2, argv + 2);
    int azure_status;
    if (ciot__launcher_azure(cmd, argc - 2, argv + 2, &azure_status))
        return azure_status;
    if (ciot__launcher_rules(cmd, argc - 2, argv + 2, &azure_status))
        return azure_status;
    fprintf(stderr, "%s: unknown command '%s'\n", PROG, cmd);
    usage(stderr);
    return EXIT_USAGE;
}
