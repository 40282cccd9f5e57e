/*
 * The Azure IoT Hub device twin service (protocols.md §4.4–§4.7), on the
 * documents of the engine lib/core/twin_doc:
 *
 *   device publishes                    the plugin answers (to that connection only)
 *   $iothub/twin/GET/?$rid={rid}         $iothub/twin/res/200/?$rid={rid} + the document
 *   $iothub/twin/PATCH/properties/reported/?$rid={rid}
 *                                        $iothub/twin/res/204/?$rid={rid}&$version={v}
 *   (a rejected patch)                   $iothub/twin/res/{400|413}/?$rid={rid}
 *                                        + {"message":"…"}
 *   (any other $iothub/twin/ topic)      $iothub/twin/res/404/?$rid={rid}
 *
 * and pushes $iothub/twin/PATCH/properties/desired/?$version={v} (the patch
 * and "$version") to the device when the service side changes desired
 * properties while it is connected (the hub does not queue them).
 *
 * Scope: on IoT Hub each connection has its own $iothub topic space. A
 * plain broker would route a reply to every subscriber of
 * $iothub/twin/res/#, so every reply is published to the asking client id
 * alone, and the device's own publications on $iothub/twin/ are consumed
 * here (the message callback refuses them to the broker, which drops them
 * after acknowledging a QoS 1 publish): no device sees another's requests,
 * and no device can forge a desired-patch notification for the others.
 *
 * Identity: the MQTT client id, `{deviceId}` or `{deviceId}/{moduleId}`
 * (§4.1), both parts checked with the identity-registry rules. Twins are
 * kept in memory and, with a data directory, one file each (the engine's
 * persisted form, written atomically by emu_write_file):
 *   <data>/twins/<deviceId>.json, <data>/twins/<deviceId>~<moduleId>.json
 * ('~' cannot occur in an id). A twin is loaded on first use; an identity
 * with no twin yet starts empty at $version 1 for both sections.
 *
 * Service side ($CONTROL/cloudiot/v1/iothub, admin only; control.c):
 *   {"op":"get-twin","deviceId":"d1","moduleId"?:"m"}
 *       -> result: the GET document
 *   {"op":"update-twin","deviceId":"d1","moduleId"?:"m","patch":{…}}
 *       -> merged into desired; result: the GET document after the change;
 *          400/413 with the engine's message otherwise.
 */
#include "emu.h"

#include "core/azure.h"
#include "core/twin_doc.h"
#include "internal.h"

#include <cloudiot/error.h>

#include <jansson.h>
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TWIN_PREFIX "$iothub/twin/"
#define TWIN_BUCKETS 256
#define MAX_RID 128
#define MAX_TWIN_FILE (1024 * 1024)

typedef struct emu_twin {
    char *id; /* client id form */
    ciot__twin *doc;
    struct emu_twin *next;
} emu_twin;

struct emu_twins {
    emu_twin *buckets[TWIN_BUCKETS];
};

/* ---------------------------------------------------------------- store */

static unsigned hash_id(const char *id)
{
    unsigned h = 2166136261u;
    for (const char *p = id; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h % TWIN_BUCKETS;
}

void emu_twins_free(emu *e)
{
    if (!e->twins)
        return;
    for (size_t b = 0; b < TWIN_BUCKETS; b++) {
        emu_twin *t = e->twins->buckets[b];
        while (t) {
            emu_twin *next = t->next;
            ciot__twin_free(t->doc);
            ciot__free(t->id);
            ciot__free(t);
            t = next;
        }
    }
    ciot__free(e->twins);
    e->twins = NULL;
}

/* True when @p id is `device` or `device/module` with valid parts. */
static bool id_valid(const char *id)
{
    const char *slash = strchr(id, '/');
    if (!slash)
        return ciot__azure_id_valid(id, strlen(id));
    return ciot__azure_id_valid(id, (size_t)(slash - id)) &&
           ciot__azure_id_valid(slash + 1, strlen(slash + 1));
}

/* <data>/twins, or <data>/twins/<file>.json for @p id (device/module ->
 * device~module); false when it does not fit. */
static bool twin_path(char *buf, size_t cap, const emu *e, const char *id)
{
    char file[2 * CIOT__AZURE_ID_MAX + 2];
    if (id) {
        size_t n = strlen(id);
        if (n >= sizeof file)
            return false;
        for (size_t i = 0; i <= n; i++)
            file[i] = id[i] == '/' ? '~' : id[i];
    }
    int n = id ? snprintf(buf, cap, "%s/twins/%s.json", e->data_dir, file)
               : snprintf(buf, cap, "%s/twins", e->data_dir);
    return n >= 0 && (size_t)n < cap;
}

/* The twin of @p id (loaded from disk or created on first use). NULL with
 * *status 500 when the file is unreadable or corrupt, or out of memory. */
static emu_twin *twin_get(emu *e, const char *id, int *status)
{
    *status = 500;
    if (!e->twins && !(e->twins = ciot__calloc(1, sizeof *e->twins)))
        return NULL;
    unsigned b = hash_id(id);
    for (emu_twin *t = e->twins->buckets[b]; t; t = t->next)
        if (strcmp(t->id, id) == 0)
            return t;
    ciot__twin *doc = NULL;
    if (e->data_dir) {
        char path[4096], *text;
        size_t len;
        if (!twin_path(path, sizeof path, e, id))
            return NULL;
        if (emu_read_file(&text, &len, path, MAX_TWIN_FILE) == 0) {
            int rc = ciot__twin_load(&doc, text, len);
            ciot__free(text);
            if (rc != 0) {
                emu_log(MOSQ_LOG_ERR, "%s: %s; the twin of %s is unavailable", path,
                        ciot_err_name(rc), id);
                return NULL;
            }
        } else if (errno != ENOENT) {
            emu_log(MOSQ_LOG_ERR, "%s: cannot read (%s)", path, strerror(errno));
            return NULL;
        }
    }
    if (!doc && ciot__twin_new(&doc) != 0)
        return NULL;
    emu_twin *t = ciot__calloc(1, sizeof *t);
    if (!t || !(t->id = ciot__strndup(id, strlen(id)))) {
        ciot__free(t);
        ciot__twin_free(doc);
        return NULL;
    }
    t->doc = doc;
    t->next = e->twins->buckets[b];
    e->twins->buckets[b] = t;
    *status = 200;
    return t;
}

static int twin_save(emu *e, const emu_twin *t)
{
    if (!e->data_dir)
        return 0;
    char dir[4096], path[4096], *text = NULL;
    size_t len = 0;
    if (!twin_path(dir, sizeof dir, e, NULL) || !twin_path(path, sizeof path, e, t->id) ||
        emu_mkdir(dir) != 0 || ciot__twin_save(&text, &len, t->doc) != 0 ||
        emu_write_file(path, text, len) != 0) {
        emu_log(MOSQ_LOG_ERR, "cannot save the twin of %s", t->id);
        ciot__free(text);
        return -1;
    }
    ciot__free(text);
    return 0;
}

/* ---------------------------------------------------------------- MQTT */

static void send_to(const char *client_id, const char *topic, const char *body, size_t len)
{
    int rc = mosquitto_broker_publish_copy(client_id, topic, (int)len, len ? body : NULL, 1, false,
                                           NULL);
    if (rc != MOSQ_ERR_SUCCESS)
        emu_log(MOSQ_LOG_ERR, "could not publish on %s to %s (%d)", topic, client_id, rc);
}

static void reply(const char *client_id, int status, const char *rid, uint64_t version,
                  const char *body, size_t len)
{
    char topic[EMU_MAX_TOPIC + 64];
    if (version)
        snprintf(topic, sizeof topic, TWIN_PREFIX "res/%d/?$rid=%s&$version=%llu", status, rid,
                 (unsigned long long)version);
    else
        snprintf(topic, sizeof topic, TWIN_PREFIX "res/%d/?$rid=%s", status, rid);
    send_to(client_id, topic, body, len);
}

static void reply_error(const char *client_id, int status, const char *rid, const char *msg)
{
    json_t *o = json_pack("{ss}", "message", msg);
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    reply(client_id, status, rid, 0, body ? body : "", body ? strlen(body) : 0);
    free(body);
}

/* $rid from the query part "?a=b&$rid=x" of a topic; false when absent or
 * not a plain token. */
static bool find_rid(const char *query, char rid[MAX_RID + 1])
{
    if (query[0] != '?')
        return false;
    const char *p = query + 1;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t n = amp ? (size_t)(amp - p) : strlen(p);
        if (n > 5 && strncmp(p, "$rid=", 5) == 0) {
            size_t rl = n - 5;
            if (rl > MAX_RID)
                return false;
            for (size_t i = 0; i < rl; i++) {
                unsigned char c = (unsigned char)p[5 + i];
                if (c <= ' ' || c >= 0x7f || c == '/' || c == '+' || c == '#')
                    return false;
            }
            memcpy(rid, p + 5, rl);
            rid[rl] = '\0';
            return true;
        }
        p += n + (amp ? 1 : 0);
    }
    return false;
}

static void on_request(emu *e, const char *client_id, const char *topic, const char *payload,
                       size_t len)
{
    const char *rest = topic + sizeof TWIN_PREFIX - 1;
    const char *q = strchr(rest, '?');
    char rid[MAX_RID + 1];
    if (!q || q == rest || q[-1] != '/' || !find_rid(q, rid)) {
        emu_log(MOSQ_LOG_NOTICE, "%s: %s has no usable $rid; dropped", client_id, topic);
        return;
    }
    size_t oplen = (size_t)(q - rest);
    bool get = oplen == 4 && strncmp(rest, "GET/", 4) == 0;
    bool patch = oplen == 26 && strncmp(rest, "PATCH/properties/reported/", 26) == 0;
    if (!get && !patch) {
        reply_error(client_id, 404, rid, "unknown twin operation");
        return;
    }
    if (!id_valid(client_id)) {
        reply_error(client_id, 400, rid, "the client id is not a device or module identity");
        return;
    }
    int status;
    emu_twin *t = twin_get(e, client_id, &status);
    if (!t) {
        reply_error(client_id, status, rid, "internal error");
        return;
    }
    if (get) {
        char *doc = NULL;
        size_t dlen = 0;
        if (ciot__twin_get(&doc, &dlen, t->doc) != 0)
            reply_error(client_id, 500, rid, "internal error");
        else
            reply(client_id, 200, rid, 0, doc, dlen);
        ciot__free(doc);
        return;
    }
    ciot__twin_result r;
    if (ciot__twin_patch(&r, t->doc, CIOT__TWIN_REPORTED, payload, len) != 0) {
        reply_error(client_id, 500, rid, "internal error");
        return;
    }
    if (r.status != 204) {
        reply_error(client_id, r.status, rid, r.message);
    } else {
        twin_save(e, t); /* logged on failure; the change holds in memory */
        reply(client_id, 204, rid, r.version, NULL, 0);
    }
    ciot__twin_result_free(&r);
}

int emu_twin_cb_message(int event, void *event_data, void *userdata)
{
    (void)event;
    struct mosquitto_evt_message *ed = event_data;
    if (strncmp(ed->topic, TWIN_PREFIX, sizeof TWIN_PREFIX - 1) != 0)
        return MOSQ_ERR_SUCCESS;
    const char *id = mosquitto_client_id(ed->client);
    if (!id)
        return MOSQ_ERR_ACL_DENIED;
    on_request(userdata, id, ed->topic, ed->payload, ed->payloadlen);
    return MOSQ_ERR_ACL_DENIED; /* consumed: never routed to other clients */
}

/* ---------------------------------------------------------------- control */

static bool connected(const emu *e, const char *client_id)
{
    for (size_t b = 0; b < EMU_CLIENT_BUCKETS; b++)
        for (const emu_client *c = e->clients[b]; c; c = c->next)
            if (!c->admin && c->client_id && strcmp(c->client_id, client_id) == 0)
                return true;
    return false;
}

static void set_err(char *err, size_t cap, const char *msg)
{
    snprintf(err, cap, "%s", msg);
}

/* deviceId[/moduleId] of a control request into id; false with a 400. */
static bool control_id(json_t *req, char id[2 * CIOT__AZURE_ID_MAX + 2], int *status, char *err,
                       size_t cap)
{
    const char *dev = json_string_value(json_object_get(req, "deviceId"));
    json_t *m = json_object_get(req, "moduleId");
    const char *mod = json_string_value(m);
    *status = 400;
    if (!dev || !ciot__azure_id_valid(dev, strlen(dev))) {
        set_err(err, cap,
                "deviceId: a device id (1-128 of A-Z a-z 0-9 -.%_*?!(),:=@$') is required");
        return false;
    }
    if ((m && !json_is_null(m) && !mod) || (mod && !ciot__azure_id_valid(mod, strlen(mod)))) {
        set_err(err, cap, "moduleId: not a module id");
        return false;
    }
    snprintf(id, 2 * CIOT__AZURE_ID_MAX + 2, "%s%s%s", dev, mod ? "/" : "", mod ? mod : "");
    return true;
}

static json_t *get_doc(const emu_twin *t)
{
    char *doc = NULL;
    size_t len = 0;
    if (ciot__twin_get(&doc, &len, t->doc) != 0)
        return NULL;
    json_error_t je;
    json_t *j = json_loadb(doc, len, 0, &je);
    ciot__free(doc);
    return j;
}

bool emu_twin_control(emu *e, const char *op, json_t *req, int *status, json_t **result, char *err,
                      size_t errcap)
{
    bool get = strcmp(op, "get-twin") == 0;
    if (!get && strcmp(op, "update-twin") != 0)
        return false;
    char id[2 * CIOT__AZURE_ID_MAX + 2];
    if (!control_id(req, id, status, err, errcap))
        return true;
    json_t *patch = json_object_get(req, "patch");
    char *body = NULL;
    size_t len = 0;
    if (!get) {
        if (json_is_string(patch)) {
            body = ciot__strndup(json_string_value(patch), json_string_length(patch));
            len = json_string_length(patch);
        } else if (patch) {
            char *text = json_dumps(patch, JSON_COMPACT | JSON_ENCODE_ANY);
            len = text ? strlen(text) : 0;
            body = text ? ciot__strndup(text, len) : NULL;
            free(text);
        } else {
            *status = 400;
            set_err(err, errcap, "patch: the desired-properties patch is required");
            return true;
        }
        if (!body) {
            *status = 500;
            set_err(err, errcap, "internal error");
            return true;
        }
    }
    emu_twin *t = twin_get(e, id, status);
    if (!t) {
        ciot__free(body);
        set_err(err, errcap, "internal error");
        return true;
    }
    if (!get) {
        ciot__twin_result r;
        if (ciot__twin_patch(&r, t->doc, CIOT__TWIN_DESIRED, body, len) != 0) {
            ciot__free(body);
            *status = 500;
            set_err(err, errcap, "internal error");
            return true;
        }
        ciot__free(body);
        if (r.status != 200) {
            *status = r.status;
            set_err(err, errcap, r.message);
            ciot__twin_result_free(&r);
            return true;
        }
        twin_save(e, t);
        if (connected(e, id)) {
            char topic[96];
            snprintf(topic, sizeof topic, TWIN_PREFIX "PATCH/properties/desired/?$version=%llu",
                     (unsigned long long)r.version);
            send_to(id, topic, r.notification, r.notification_len);
        }
        ciot__twin_result_free(&r);
    }
    *result = get_doc(t);
    *status = *result ? 200 : 500;
    if (!*result)
        set_err(err, errcap, "internal error");
    return true;
}
