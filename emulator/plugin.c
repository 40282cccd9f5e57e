/*
 * Entry points of the cloudiot emulator plugin (mosquitto plugin API v5):
 * options, event registration, and the small file helpers the other parts
 * share.
 */
#include "emu.h"

#include "core/azure.h"
#include "internal.h"
#include "registry.h"

#include <jansson.h>
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void emu_log(int level, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    mosquitto_log_printf(level, "cloudiot-emulator: %s", buf);
}

/* ------------------------------------------------------------ files */

int emu_read_file(char **out, size_t *len, const char *path, size_t max)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
        close(fd);
        errno = EFBIG;
        return -1;
    }
    size_t n = (size_t)st.st_size;
    char *buf = ciot__malloc(n + 1);
    if (!buf) {
        close(fd);
        errno = ENOMEM;
        return -1;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (got != n) {
        ciot__free(buf);
        errno = EIO;
        return -1;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

static int fsync_dir_of(const char *path)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return -1;
    int fd = open(dirname(tmp), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int emu_write_file(const char *path, const char *data, size_t len)
{
    return ciot__write_atomic(path, data, len, 0644) == 0 ? 0 : -1;
}

int emu_mkdir(const char *path)
{
    if (mkdir(path, 0755) == 0)
        return fsync_dir_of(path);
    return errno == EEXIST ? 0 : -1;
}

/* ------------------------------------------------------------ names */

static bool thing_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == ':' || c == '_' || c == '-';
}

bool emu_valid_thing(const char *s, size_t len)
{
    if (len == 0 || len > EMU_MAX_THING)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!thing_char(s[i]))
            return false;
    return true;
}

bool emu_valid_shadow_name(const char *s, size_t len)
{
    return len <= EMU_MAX_SHADOW_NAME && emu_valid_thing(s, len);
}

bool emu_valid_policy_name(const char *s, size_t len)
{
    if (len == 0 || len > EMU_MAX_POLICY_NAME)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("_+=,.@-", c) != NULL) || c == '\0')
            return false;
    }
    return true;
}

bool emu_valid_cert_id(const char *s, size_t len)
{
    if (len != 64)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* ------------------------------------------------------------ callbacks */

static int cb_basic_auth(int event, void *event_data, void *userdata)
{
    (void)event;
    struct mosquitto_evt_basic_auth *ed = event_data;
    return emu_on_basic_auth(userdata, ed->client, ed->username, ed->password);
}

static int cb_acl_check(int event, void *event_data, void *userdata)
{
    (void)event;
    struct mosquitto_evt_acl_check *ed = event_data;
    return emu_on_acl_check(userdata, ed->client, ed->topic, ed->access, ed->payloadlen, ed->qos,
                            ed->retain);
}

static int cb_message(int event, void *event_data, void *userdata)
{
    (void)event;
    struct mosquitto_evt_message *ed = event_data;
    emu_azure_on_message(userdata, ed->client, ed->topic, ed->payload, ed->payloadlen);
    int rc = emu_on_message(userdata, ed->topic, ed->payload, ed->payloadlen);
    /* after the ACL check: a publish a policy refused never gets here */
    emu_rules_on_message(userdata, ed->client, ed->topic, ed->payload, ed->payloadlen);
    return rc;
}

static int cb_control(int event, void *event_data, void *userdata)
{
    (void)event;
    struct mosquitto_evt_control *ed = event_data;
    return emu_on_control(userdata, ed->client, ed->topic, ed->payload, ed->payloadlen);
}

static int cb_tick(int event, void *event_data, void *userdata)
{
    (void)event;
    (void)event_data;
    emu_azure_tick(userdata);
    emu_run_kicks(userdata);
    emu_rules_tick(userdata);
    return MOSQ_ERR_SUCCESS;
}

static int cb_disconnect(int event, void *event_data, void *userdata)
{
    (void)event;
    struct mosquitto_evt_disconnect *ed = event_data;
    emu_on_disconnect(userdata, ed->client);
    return MOSQ_ERR_SUCCESS;
}

static const struct {
    int event;
    MOSQ_FUNC_generic_callback cb;
    const char *data;
} callbacks[] = {
    {MOSQ_EVT_BASIC_AUTH, cb_basic_auth, NULL},
    {MOSQ_EVT_ACL_CHECK, cb_acl_check, NULL},
    {MOSQ_EVT_MESSAGE, cb_message, NULL},
    {MOSQ_EVT_MESSAGE, emu_twin_cb_message, NULL},
    {MOSQ_EVT_CONTROL, cb_control, EMU_CONTROL_IOT_DATA},
    {MOSQ_EVT_CONTROL, cb_control, EMU_CONTROL_IOT},
    {MOSQ_EVT_CONTROL, cb_control, EMU_CONTROL_IOTHUB},
    {MOSQ_EVT_TICK, cb_tick, NULL},
    {MOSQ_EVT_DISCONNECT, cb_disconnect, NULL},
};
#define NCALLBACKS (sizeof callbacks / sizeof callbacks[0])

/* ------------------------------------------------------------ lifecycle */

static void emu_free(emu *e)
{
    if (!e)
        return;
    emu_rules_free(e);
    emu_azure_free(e);
    emu_clients_free(e);
    emu_twins_free(e);
    emu_store_free(&e->store);
    ciot__free(e->hub_host);
    ciot__free(e->data_dir);
    ciot__free(e->region);
    ciot__free(e->account);
    ciot__free(e->admin_cn);
    if (e->admin_password) {
        ciot__wipe(e->admin_password, strlen(e->admin_password));
        ciot__free(e->admin_password);
    }
    ciot__free(e);
}

static int set_str(char **dst, const char *v)
{
    ciot__free(*dst);
    *dst = ciot__strndup(v, strlen(v));
    return *dst ? 0 : -1;
}

/* <data>/emulator.json: region and account written by the launcher. */
static int read_emulator_json(emu *e, bool region_set, bool account_set, bool hub_set)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/emulator.json", e->data_dir) >= (int)sizeof path)
        return -1;
    char *text;
    size_t len;
    if (emu_read_file(&text, &len, path, 64 * 1024) != 0)
        return errno == ENOENT ? 0 : -1;
    json_error_t err;
    json_t *root = json_loadb(text, len, 0, &err);
    ciot__free(text);
    if (!json_is_object(root)) {
        json_decref(root);
        emu_log(MOSQ_LOG_ERR, "%s: not a JSON object", path);
        return -1;
    }
    int rc = 0;
    const char *region = json_string_value(json_object_get(root, "region"));
    const char *account = json_string_value(json_object_get(root, "account"));
    const char *hub = json_string_value(json_object_get(root, "hubHostName"));
    if (hub && !hub_set)
        rc |= set_str(&e->hub_host, hub);
    if (region && !region_set)
        rc |= set_str(&e->region, region);
    if (account && !account_set)
        rc |= set_str(&e->account, account);
    json_decref(root);
    return rc;
}

static int parse_options(emu *e, struct mosquitto_opt *opts, int n)
{
    bool region_set = false, account_set = false, hub_set = false;
    for (int i = 0; i < n; i++) {
        const char *k = opts[i].key, *v = opts[i].value ? opts[i].value : "";
        int rc = 0;
        if (strcmp(k, "data_dir") == 0) {
            rc = set_str(&e->data_dir, v);
        } else if (strcmp(k, "region") == 0) {
            rc = set_str(&e->region, v);
            region_set = true;
        } else if (strcmp(k, "account") == 0) {
            rc = set_str(&e->account, v);
            account_set = true;
        } else if (strcmp(k, "hub_name") == 0) {
            rc = set_str(&e->hub_host, v);
            hub_set = true;
        } else if (strcmp(k, "admin_cn") == 0) {
            rc = set_str(&e->admin_cn, v);
        } else if (strcmp(k, "admin_password") == 0) {
            rc = set_str(&e->admin_password, v);
        } else if (strcmp(k, "policies") == 0) {
            if (strcmp(v, "enforce") == 0) {
                e->enforce = true;
            } else if (strcmp(v, "off") == 0) {
                e->enforce = false;
            } else {
                emu_log(MOSQ_LOG_ERR, "plugin_opt_policies: \"%s\" is neither enforce nor off", v);
                return -1;
            }
        } else {
            emu_log(MOSQ_LOG_ERR, "unknown option plugin_opt_%s", k);
            return -1;
        }
        if (rc != 0)
            return -1;
    }
    if (e->data_dir && e->data_dir[0] == '\0') {
        ciot__free(e->data_dir);
        e->data_dir = NULL;
    }
    if (e->data_dir && read_emulator_json(e, region_set, account_set, hub_set) != 0)
        return -1;
    if (!e->region[0] || !e->account[0] || !e->admin_cn[0] ||
        !ciot__azure_host_valid(e->hub_host, strlen(e->hub_host))) {
        emu_log(MOSQ_LOG_ERR, "region, account and admin_cn must not be empty, hub_name must be "
                              "a host name");
        return -1;
    }
    return 0;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
    for (int i = 0; i < supported_version_count; i++)
        if (supported_versions[i] == 5)
            return 5;
    return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
                          struct mosquitto_opt *options, int option_count)
{
    emu *e = ciot__calloc(1, sizeof *e);
    if (!e)
        return MOSQ_ERR_NOMEM;
    e->plugin_id = identifier;
    e->enforce = true;
    if (set_str(&e->region, "us-east-1") != 0 || set_str(&e->account, "123456789012") != 0 ||
        set_str(&e->admin_cn, "cloudiot-admin") != 0 ||
        set_str(&e->hub_host, EMU_AZURE_DEFAULT_HUB) != 0) {
        emu_free(e);
        return MOSQ_ERR_NOMEM;
    }
    if (parse_options(e, options, option_count) != 0) {
        emu_free(e);
        return MOSQ_ERR_INVAL;
    }
    if (emu_store_init(&e->store, e->data_dir) != 0) {
        emu_log(MOSQ_LOG_ERR, "cannot open the shadow store under %s", e->data_dir);
        emu_free(e);
        return MOSQ_ERR_UNKNOWN;
    }
    if (emu_rules_init(e) != 0) {
        emu_log(MOSQ_LOG_ERR, "out of memory starting the rules engine");
        emu_free(e);
        return MOSQ_ERR_NOMEM;
    }
    for (size_t i = 0; i < NCALLBACKS; i++) {
        int rc = mosquitto_callback_register(identifier, callbacks[i].event, callbacks[i].cb,
                                             callbacks[i].data, e);
        if (rc != MOSQ_ERR_SUCCESS) {
            emu_log(MOSQ_LOG_ERR, "cannot register callback for event %d", callbacks[i].event);
            for (size_t k = 0; k < i; k++)
                mosquitto_callback_unregister(identifier, callbacks[k].event, callbacks[k].cb,
                                              callbacks[k].data);
            emu_free(e);
            return rc;
        }
    }
    emu_log(MOSQ_LOG_INFO,
            "loaded: region %s, account %s, policies %s, data %s, %zu shadow(s)", e->region,
            e->account, e->enforce ? "enforce" : "off", e->data_dir ? e->data_dir : "(memory)",
            e->store.count);
    *userdata = e;
    return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
    (void)options;
    (void)option_count;
    emu *e = userdata;
    if (!e)
        return MOSQ_ERR_SUCCESS;
    for (size_t i = 0; i < NCALLBACKS; i++)
        mosquitto_callback_unregister(e->plugin_id, callbacks[i].event, callbacks[i].cb,
                                      callbacks[i].data);
    emu_free(e);
    return MOSQ_ERR_SUCCESS;
}
