/*
 * cloudiot-emulator's Azure IoT Hub device registry sub-commands, one to
 * one with the Azure CLI's `az iot hub device-identity ...` (doc/emulator-
 * launcher.md, "Azure IoT Hub devices"):
 *
 *   create-device             az iot hub device-identity create
 *   show-device               az iot hub device-identity show
 *   list-devices              az iot hub device-identity list
 *   update-device --status    az iot hub device-identity update --set status=...
 *   delete-device             az iot hub device-identity delete
 *   device-connection-string  az iot hub device-identity connection-string show
 *   generate-sas-token        az iot hub generate-sas-token
 *
 * One file per device: <data>/registry/azure-devices/<deviceId>.json
 *   {"deviceId":"d1","primaryKey":"<base64 of 32 random bytes>",
 *    "secondaryKey":"...","status":"enabled"|"disabled",
 *    "authentication":"sas"|"x509",
 *    "x509Thumbprint":{"primaryThumbprint":"..","secondaryThumbprint":".."}}
 * Every Azure device id character (protocols.md §4.1: letters, digits and
 * - . % _ * ? ! ( ) , : = @ $ ') is allowed in a POSIX file name, and no id
 * can be "." or ".." once ".json" is appended, so ids are used as file
 * names unchanged. Modules are not emulated.
 * The hub host name is "hubHostName" in <data>/emulator.json (--hub-name:
 * a name without a dot becomes <name>.azure-devices.net).
 */
#define _XOPEN_SOURCE 700

#include "launcher_azure.h"
#include "launcher_util.h"

#include "core/azure.h"
#include "registry.h"

#include <cloudiot/azure.h>
#include <cloudiot/error.h>

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXIT_USAGE CIOT__LX_EXIT_USAGE
#define EXIT_SERVICE CIOT__LX_EXIT_SERVICE
#define PROG CIOT__LX_PROG
#define DEFAULT_HUB "emulator-hub.azure-devices.net"

typedef struct aopt {
    const char *name;
    bool has_value;
    const char *value;
} aopt;

static int usage_err(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_err(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s %s: error: ", PROG, cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return EXIT_USAGE;
}

/* az prints service errors as "ErrorCode:<code>;<message>". */
static int service_err(const char *code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int service_err(const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ErrorCode:%s;", code);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return EXIT_SERVICE;
}

static int parse(const char *cmd, int argc, char **argv, aopt *o, size_t n)
{
    for (int i = 0; i < argc; i++) {
        size_t k = 0;
        while (k < n && strcmp(o[k].name, argv[i]) != 0)
            k++;
        if (k == n)
            return usage_err(cmd, "unknown option '%s'", argv[i]);
        if (o[k].value)
            return usage_err(cmd, "option %s given twice", argv[i]);
        if (!o[k].has_value) {
            o[k].value = "";
            continue;
        }
        if (i + 1 >= argc)
            return usage_err(cmd, "option %s needs a value", argv[i]);
        o[k].value = argv[++i];
    }
    return 0;
}

static const char *val(const aopt *o, size_t n, const char *name)
{
    for (size_t k = 0; k < n; k++)
        if (strcmp(o[k].name, name) == 0)
            return o[k].value;
    return NULL;
}

/* Context of one command: the registry and the hub host name. */
typedef struct actx {
    ciot__registry reg;
    char dir[1200]; /* <data>/registry/azure-devices */
    char hub[CIOT__AZURE_HOST_MAX + 1];
} actx;

static int hub_from_arg(const char *cmd, const char *arg, char out[CIOT__AZURE_HOST_MAX + 1])
{
    size_t n = strlen(arg);
    int w = strchr(arg, '.') ? snprintf(out, CIOT__AZURE_HOST_MAX + 1, "%s", arg)
                             : snprintf(out, CIOT__AZURE_HOST_MAX + 1, "%s.azure-devices.net", arg);
    if (n == 0 || w < 0 || w > CIOT__AZURE_HOST_MAX ||
        !ciot__azure_host_valid(out, (size_t)w))
        return usage_err(cmd, "--hub-name: a hub name or host name, not '%s'", arg);
    return 0;
}

/* Opens the registry (creating it with create), reads or records the hub
 * host name in emulator.json. */
static int open_ctx(const char *cmd, const aopt *o, size_t n, bool create, actx *c)
{
    const char *data = val(o, n, "--data");
    if (!data || !*data)
        data = getenv("CLOUDIOT_EMULATOR_DATA");
    if (!data || !*data)
        return usage_err(cmd, "the following argument is required: --data "
                              "(or the environment variable CLOUDIOT_EMULATOR_DATA)");
    char err[512] = "";
    int rc = ciot__registry_open(&c->reg, data, NULL, NULL, create, err, sizeof err);
    if (rc == CIOT_EINVAL)
        return usage_err(cmd, "%s", err);
    if (rc)
        return ciot__lx_other_error("%s", err);
    if (snprintf(c->dir, sizeof c->dir, "%s/registry/azure-devices", c->reg.dir) >=
        (int)sizeof c->dir)
        return usage_err(cmd, "--data: path too long");
    const char *want = val(o, n, "--hub-name");
    char given[CIOT__AZURE_HOST_MAX + 1] = "";
    if (want && (rc = hub_from_arg(cmd, want, given)) != 0)
        return rc;
    char path[1300];
    snprintf(path, sizeof path, "%s/emulator.json", c->reg.dir);
    json_error_t jerr;
    json_t *conf = json_load_file(path, 0, &jerr);
    const char *stored = json_string_value(json_object_get(conf, "hubHostName"));
    snprintf(c->hub, sizeof c->hub, "%s", stored ? stored : DEFAULT_HUB);
    if (given[0] && stored && strcmp(given, stored) != 0) {
        json_decref(conf);
        return usage_err(cmd, "--hub-name: this data directory's hub is %s, not %s", c->hub,
                         given);
    }
    if (given[0] && !stored) {
        snprintf(c->hub, sizeof c->hub, "%s", given);
        if (create && json_is_object(conf)) {
            json_object_set_new(conf, "hubHostName", json_string(given));
            char *text = json_dumps(conf, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
            rc = text ? ciot__write_atomic(path, text, strlen(text), 0644) : CIOT_ENOMEM;
            free(text);
            if (rc) {
                json_decref(conf);
                return ciot__lx_other_error("cannot write %s: %s", path, ciot_err_name(rc));
            }
        }
    }
    json_decref(conf);
    if (create && ciot__mkdir_p(c->dir, 0755) != 0)
        return ciot__lx_other_error("cannot create %s: %s", c->dir, strerror(errno));
    return 0;
}

static int id_arg(const char *cmd, const char *id)
{
    if (!id)
        return usage_err(cmd, "the following argument is required: --device-id");
    if (!ciot__azure_id_valid(id, strlen(id)))
        return usage_err(cmd,
                         "--device-id: 1 to 128 characters of letters, digits and "
                         "- . %% _ * ? ! ( ) , : = @ $ ' (Azure's set; not '%s')",
                         id);
    return 0;
}

static int dev_path(const actx *c, const char *id, char *out, size_t cap)
{
    return snprintf(out, cap, "%s/%s.json", c->dir, id) >= (int)cap ? -1 : 0;
}

static json_t *load_dev(const actx *c, const char *id)
{
    char path[1500];
    if (dev_path(c, id, path, sizeof path) != 0)
        return NULL;
    json_error_t err;
    json_t *d = json_load_file(path, 0, &err);
    if (d && !json_is_object(d)) {
        json_decref(d);
        return NULL;
    }
    return d;
}

static int save_dev(const actx *c, const char *id, json_t *d)
{
    char path[1500];
    if (dev_path(c, id, path, sizeof path) != 0)
        return ciot__lx_other_error("path too long");
    char *text = json_dumps(d, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!text)
        return ciot__lx_other_error("out of memory");
    int rc = ciot__write_atomic(path, text, strlen(text), 0600);
    free(text);
    return rc ? ciot__lx_other_error("cannot write %s: %s", path, strerror(errno)) : 0;
}

static json_t *jstr_or_null(json_t *v)
{
    return json_is_string(v) ? json_incref(v) : json_null();
}

/* The registry entry in the shape az prints a device identity. */
static json_t *az_view(const actx *c, json_t *d)
{
    const char *auth = json_string_value(json_object_get(d, "authentication"));
    bool x509 = auth && strcmp(auth, "x509") == 0;
    json_t *tp = json_object_get(d, "x509Thumbprint");
    bool has_tp = json_string_length(json_object_get(tp, "primaryThumbprint")) ||
                  json_string_length(json_object_get(tp, "secondaryThumbprint"));
    return json_pack(
        "{s:o,s:{s:o,s:o,s:{s:o,s:o}},s:s,s:o,s:s,s:s,s:{s:b}}", "deviceId",
        json_incref(json_object_get(d, "deviceId")), "authentication", "symmetricKey",
        x509 ? json_pack("{s:n,s:n}", "primaryKey", "secondaryKey")
             : json_pack("{s:o,s:o}", "primaryKey", jstr_or_null(json_object_get(d, "primaryKey")),
                         "secondaryKey", jstr_or_null(json_object_get(d, "secondaryKey"))),
        "type", json_string(!x509 ? "sas" : has_tp ? "selfSigned" : "certificateAuthority"),
        "x509Thumbprint", "primaryThumbprint",
        jstr_or_null(json_object_get(tp, "primaryThumbprint")), "secondaryThumbprint",
        jstr_or_null(json_object_get(tp, "secondaryThumbprint")), "status",
        json_string_value(json_object_get(d, "status")) ? json_string_value(json_object_get(d, "status"))
                                                        : "enabled",
        "statusReason", json_null(), "hubName", c->hub, "connectionState", "Disconnected",
        "capabilities", "iotEdge", false);
}

static int random_key(char out[45])
{
    unsigned char k[32];
    if (RAND_bytes(k, sizeof k) != 1)
        return -1;
    ciot__b64_encode(out, k, sizeof k);
    out[44] = '\0';
    return 0;
}

static bool key_ok(const char *k)
{
    unsigned char buf[128];
    size_t n = 0;
    return ciot__b64_decode(buf, sizeof buf, &n, k, strlen(k)) == 0 && n >= 16 && n <= 64;
}

static bool thumb_ok(const char *t)
{
    size_t n = strlen(t);
    if (n != 40 && n != 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((t[i] >= '0' && t[i] <= '9') || (t[i] >= 'a' && t[i] <= 'f') ||
              (t[i] >= 'A' && t[i] <= 'F')))
            return false;
    return true;
}

static int cmd_create(int argc, char **argv)
{
    const char *cmd = "create-device";
    aopt o[] = {{"--data", true, NULL},          {"--hub-name", true, NULL},
                {"--device-id", true, NULL},     {"--auth-method", true, NULL},
                {"--primary-key", true, NULL},   {"--secondary-key", true, NULL},
                {"--primary-thumbprint", true, NULL}, {"--secondary-thumbprint", true, NULL},
                {"--status", true, NULL}};
    size_t n = sizeof o / sizeof *o;
    int rc = parse(cmd, argc, argv, o, n);
    const char *id = val(o, n, "--device-id");
    if (rc || (rc = id_arg(cmd, id)) != 0)
        return rc;
    const char *am = val(o, n, "--auth-method");
    const char *status = val(o, n, "--status");
    const char *pk = val(o, n, "--primary-key"), *sk = val(o, n, "--secondary-key");
    const char *pt = val(o, n, "--primary-thumbprint"), *st = val(o, n, "--secondary-thumbprint");
    if (!am)
        am = "shared_private_key";
    bool sas = strcmp(am, "shared_private_key") == 0;
    bool self_signed = strcmp(am, "x509_thumbprint") == 0;
    if (!sas && !self_signed && strcmp(am, "x509_ca") != 0)
        return usage_err(cmd, "--auth-method: shared_private_key, x509_ca or x509_thumbprint, "
                              "not '%s'", am);
    if (status && strcmp(status, "enabled") != 0 && strcmp(status, "disabled") != 0)
        return usage_err(cmd, "--status: enabled or disabled, not '%s'", status);
    if ((pk || sk) && !sas)
        return usage_err(cmd, "--primary-key/--secondary-key need --auth-method shared_private_key");
    if ((pk && !key_ok(pk)) || (sk && !key_ok(sk)))
        return usage_err(cmd, "--primary-key/--secondary-key: base64 of 16 to 64 bytes");
    if ((pt || st) && !self_signed)
        return usage_err(cmd, "thumbprints need --auth-method x509_thumbprint");
    if (self_signed && !pt)
        return usage_err(cmd, "--auth-method x509_thumbprint needs --primary-thumbprint");
    if ((pt && !thumb_ok(pt)) || (st && !thumb_ok(st)))
        return usage_err(cmd, "thumbprints: 40 (SHA-1) or 64 (SHA-256) hex digits");
    actx c;
    if ((rc = open_ctx(cmd, o, n, true, &c)) != 0)
        return rc;
    int lock;
    if (ciot__registry_lock(&c.reg, &lock) != 0)
        return ciot__lx_other_error("cannot lock the registry");
    json_t *old = load_dev(&c, id);
    if (old) {
        json_decref(old);
        ciot__registry_unlock(lock);
        return service_err("DeviceAlreadyExists", "A device with ID '%s' is already registered.",
                           id);
    }
    json_t *d = json_pack("{s:s,s:s}", "deviceId", id, "status", status ? status : "enabled");
    if (sas) {
        char k1[45], k2[45];
        if (random_key(k1) != 0 || random_key(k2) != 0) {
            json_decref(d);
            ciot__registry_unlock(lock);
            return ciot__lx_other_error("no random bytes");
        }
        json_object_set_new(d, "primaryKey", json_string(pk ? pk : k1));
        json_object_set_new(d, "secondaryKey", json_string(sk ? sk : k2));
        json_object_set_new(d, "authentication", json_string("sas"));
    } else {
        json_object_set_new(d, "authentication", json_string("x509"));
        if (self_signed)
            json_object_set_new(d, "x509Thumbprint",
                                json_pack("{s:s,s:s?}", "primaryThumbprint", pt,
                                          "secondaryThumbprint", st));
    }
    rc = save_dev(&c, id, d);
    ciot__registry_unlock(lock);
    if (rc) {
        json_decref(d);
        return rc;
    }
    rc = ciot__lx_print_json_indent(az_view(&c, d), 2);
    json_decref(d);
    return rc;
}

static int one_device(const char *cmd, int argc, char **argv, actx *c, json_t **d,
                      const char **id, aopt *extra, size_t nextra)
{
    aopt o[12] = {{"--data", true, NULL}, {"--hub-name", true, NULL}, {"--device-id", true, NULL}};
    size_t n = 3;
    for (size_t i = 0; i < nextra && n < 12; i++)
        o[n++] = extra[i];
    int rc = parse(cmd, argc, argv, o, n);
    *id = val(o, n, "--device-id");
    if (rc || (rc = id_arg(cmd, *id)) != 0 || (rc = open_ctx(cmd, o, n, false, c)) != 0)
        return rc;
    for (size_t i = 0; i < nextra; i++)
        extra[i].value = o[3 + i].value;
    *d = load_dev(c, *id);
    if (!*d)
        return service_err("DeviceNotFound", "Device %s not registered.", *id);
    return 0;
}

static int cmd_show(int argc, char **argv)
{
    actx c;
    json_t *d;
    const char *id;
    int rc = one_device("show-device", argc, argv, &c, &d, &id, NULL, 0);
    if (rc)
        return rc;
    rc = ciot__lx_print_json_indent(az_view(&c, d), 2);
    json_decref(d);
    return rc;
}

static int cmd_update(int argc, char **argv)
{
    const char *cmd = "update-device";
    aopt extra[] = {{"--status", true, NULL}};
    actx c;
    json_t *d;
    const char *id;
    int rc = one_device(cmd, argc, argv, &c, &d, &id, extra, 1);
    if (rc)
        return rc;
    const char *status = extra[0].value;
    if (!status || (strcmp(status, "enabled") != 0 && strcmp(status, "disabled") != 0)) {
        json_decref(d);
        return usage_err(cmd, "--status: enabled or disabled is required");
    }
    json_object_set_new(d, "status", json_string(status));
    int lock;
    if (ciot__registry_lock(&c.reg, &lock) != 0) {
        json_decref(d);
        return ciot__lx_other_error("cannot lock the registry");
    }
    rc = save_dev(&c, id, d);
    ciot__registry_unlock(lock);
    if (!rc)
        rc = ciot__lx_print_json_indent(az_view(&c, d), 2);
    json_decref(d);
    return rc;
}

static int cmd_delete(int argc, char **argv)
{
    actx c;
    json_t *d;
    const char *id;
    int rc = one_device("delete-device", argc, argv, &c, &d, &id, NULL, 0);
    if (rc)
        return rc;
    json_decref(d);
    char path[1500];
    int lock;
    if (ciot__registry_lock(&c.reg, &lock) != 0)
        return ciot__lx_other_error("cannot lock the registry");
    rc = dev_path(&c, id, path, sizeof path) != 0 || remove(path) != 0;
    int err = errno;
    ciot__registry_unlock(lock);
    if (rc)
        return ciot__lx_other_error("cannot remove the device %s: %s", id, strerror(err));
    return 0;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmd_list(int argc, char **argv)
{
    const char *cmd = "list-devices";
    aopt o[] = {{"--data", true, NULL}, {"--hub-name", true, NULL}};
    size_t n = 2;
    actx c;
    int rc = parse(cmd, argc, argv, o, n);
    if (rc || (rc = open_ctx(cmd, o, n, false, &c)) != 0)
        return rc;
    char **names = NULL;
    size_t count = 0, cap = 0;
    DIR *dir = opendir(c.dir);
    struct dirent *de;
    while (dir && (de = readdir(dir)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l <= 5 || strcmp(de->d_name + l - 5, ".json") != 0 ||
            !ciot__azure_id_valid(de->d_name, l - 5))
            continue;
        if (count == cap) {
            cap = cap ? 2 * cap : 16;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn)
                break;
            names = nn;
        }
        names[count] = strndup(de->d_name, l - 5);
        if (names[count])
            count++;
    }
    if (dir)
        closedir(dir);
    qsort(names, count, sizeof *names, cmp);
    json_t *arr = json_array();
    for (size_t i = 0; i < count; i++) {
        json_t *d = load_dev(&c, names[i]);
        if (d)
            json_array_append_new(arr, az_view(&c, d));
        json_decref(d);
        free(names[i]);
    }
    free(names);
    return ciot__lx_print_json_indent(arr, 2);
}

static int cmd_connection_string(int argc, char **argv)
{
    const char *cmd = "device-connection-string";
    aopt extra[] = {{"--key-type", true, NULL}};
    actx c;
    json_t *d;
    const char *id;
    int rc = one_device(cmd, argc, argv, &c, &d, &id, extra, 1);
    if (rc)
        return rc;
    const char *kt = extra[0].value ? extra[0].value : "primary";
    if (strcmp(kt, "primary") != 0 && strcmp(kt, "secondary") != 0) {
        json_decref(d);
        return usage_err(cmd, "--key-type: primary or secondary, not '%s'", kt);
    }
    const char *auth = json_string_value(json_object_get(d, "authentication"));
    char cs[1024];
    if (auth && strcmp(auth, "x509") == 0) {
        snprintf(cs, sizeof cs, "HostName=%s;DeviceId=%s;x509=true", c.hub, id);
    } else {
        const char *key = json_string_value(
            json_object_get(d, strcmp(kt, "primary") == 0 ? "primaryKey" : "secondaryKey"));
        snprintf(cs, sizeof cs, "HostName=%s;DeviceId=%s;SharedAccessKey=%s", c.hub, id,
                 key ? key : "");
    }
    json_decref(d);
    return ciot__lx_print_json_indent(json_pack("{s:s}", "connectionString", cs), 2);
}

static int cmd_sas(int argc, char **argv)
{
    const char *cmd = "generate-sas-token";
    aopt extra[] = {{"--duration", true, NULL}, {"--key-type", true, NULL}};
    actx c;
    json_t *d;
    const char *id;
    int rc = one_device(cmd, argc, argv, &c, &d, &id, extra, 2);
    if (rc)
        return rc;
    long long dur = 3600;
    if (extra[0].value) {
        char *end;
        dur = strtoll(extra[0].value, &end, 10);
        if (*end || end == extra[0].value || dur < 1 || dur > 365LL * 86400) {
            json_decref(d);
            return usage_err(cmd, "--duration: seconds, 1 to 31536000");
        }
    }
    const char *kt = extra[1].value ? extra[1].value : "primary";
    const char *key = json_string_value(
        json_object_get(d, strcmp(kt, "secondary") == 0 ? "secondaryKey" : "primaryKey"));
    if (!key) {
        json_decref(d);
        return service_err("BadRequest", "Device %s has no symmetric key (X.509).", id);
    }
    char tok[1024];
    size_t len = 0;
    rc = ciot_azure_sas_token(tok, sizeof tok, &len, c.hub, id, NULL, NULL, key,
                              (uint64_t)time(NULL) + (uint64_t)dur);
    json_decref(d);
    if (rc)
        return ciot__lx_other_error("cannot sign: %s", ciot_err_name(rc));
    return ciot__lx_print_json_indent(json_pack("{s:s}", "sas", tok), 2);
}

static const struct {
    const char *name;
    int (*fn)(int, char **);
} cmds[] = {
    {"create-device", cmd_create},
    {"show-device", cmd_show},
    {"list-devices", cmd_list},
    {"update-device", cmd_update},
    {"delete-device", cmd_delete},
    {"device-connection-string", cmd_connection_string},
    {"generate-sas-token", cmd_sas},
};

bool ciot__launcher_azure(const char *cmd, int argc, char **argv, int *status)
{
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        if (strcmp(cmds[i].name, cmd) == 0) {
            *status = cmds[i].fn(argc, argv);
            return true;
        }
    return false;
}

void ciot__launcher_azure_usage(FILE *f)
{
    fputs("\nAzure IoT Hub devices, like `az iot hub device-identity ...` (all take --data DIR\n"
          "[--hub-name H]):\n"
          "  create-device --device-id D [--auth-method shared_private_key|x509_ca|\n"
          "      x509_thumbprint] [--primary-key K] [--secondary-key K]\n"
          "      [--primary-thumbprint T] [--secondary-thumbprint T] [--status enabled|disabled]\n"
          "  show-device --device-id D\n"
          "  list-devices\n"
          "  update-device --device-id D --status enabled|disabled\n"
          "  delete-device --device-id D\n"
          "  device-connection-string --device-id D [--key-type primary|secondary]\n"
          "  generate-sas-token --device-id D [--duration S] [--key-type primary|secondary]\n",
          f);
}
