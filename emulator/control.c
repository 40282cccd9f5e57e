/*
 * Service-side control over MQTT, for the admin identity only (what boto3's
 * iot-data and iot clients do against AWS). A request is published on
 * $CONTROL/cloudiot/v1/<service> (mosquitto hands these to the plugin and
 * to no subscriber); the response goes to that client alone on
 * $CONTROL/cloudiot/v1/<service>/response. Request:
 *   {"op":"update-thing-shadow","thingName":"t1","shadowName":"opt",
 *    "payload":{...},"requestId":"r1"}
 * Response:
 *   {"requestId":"r1","op":"...","status":200,"result":{...}}
 *   {"requestId":"r1","op":"...","status":4xx,"error":"message"}
 * Services and ops: iot-data get-thing-shadow, update-thing-shadow,
 * delete-thing-shadow, list-named-shadows-for-thing; iot list-things,
 * describe-thing. A shadow change made here publishes the same
 * /update/accepted, /delta, /documents and /delete/accepted messages an
 * MQTT request would (as AWS's HTTP shadow API does); reads and rejected
 * requests are answered on the control response only.
 */
#include "emu.h"

#include "internal.h"

#include <jansson.h>
#include <mosquitto.h>
#include <mosquitto_broker.h>

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct reply {
    int status;
    json_t *result;   /* owned */
    char error[512];
} reply;

static void fail(reply *r, int status, const char *fmt, ...) CIOT__PRINTF(3, 4);
static void fail(reply *r, int status, const char *fmt, ...)
{
    r->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof r->error, fmt, ap);
    va_end(ap);
}

static const char *str_arg(json_t *req, const char *key)
{
    return json_string_value(json_object_get(req, key));
}

/* thingName (required) and shadowName (optional) from the request. */
static bool shadow_args(reply *r, json_t *req, const char **thing, const char **name)
{
    *thing = str_arg(req, "thingName");
    *name = str_arg(req, "shadowName");
    json_t *n = json_object_get(req, "shadowName");
    if (!*thing || !emu_valid_thing(*thing, strlen(*thing))) {
        fail(r, 400, "thingName: a string matching [a-zA-Z0-9:_-]{1,128} is required");
        return false;
    }
    if ((n && !json_is_null(n) && !*name) ||
        (*name && !emu_valid_shadow_name(*name, strlen(*name)))) {
        fail(r, 400, "shadowName: must match [a-zA-Z0-9:_-]{1,64}");
        return false;
    }
    if (!*name)
        *name = "";
    return true;
}

/* The engine's reply as the control result: accepted document parsed as
 * JSON, or its code and message. */
static void from_shadow(reply *r, const ciot__shadow_result *sr)
{
    json_error_t err;
    if (sr->status == 200) {
        r->status = 200;
        r->result = json_loadb(sr->accepted, sr->accepted_len, 0, &err);
        if (!r->result)
            fail(r, 500, "Internal service failure");
        return;
    }
    json_t *doc = json_loadb(sr->rejected, sr->rejected_len, 0, &err);
    json_t *code = json_object_get(doc, "code");
    const char *msg = json_string_value(json_object_get(doc, "message"));
    r->status = json_is_integer(code) ? (int)json_integer_value(code) : 500;
    snprintf(r->error, sizeof r->error, "%s", msg ? msg : "Internal service failure");
    json_decref(doc);
}

static void shadow_op(emu *e, reply *r, json_t *req, int op)
{
    const char *thing, *name;
    if (!shadow_args(r, req, &thing, &name))
        return;
    char *body = NULL;
    size_t len = 0;
    json_t *payload = json_object_get(req, "payload");
    if (op == EMU_SHADOW_UPDATE) {
        if (json_is_string(payload)) {
            body = ciot__strndup(json_string_value(payload), json_string_length(payload));
            len = json_string_length(payload);
        } else if (payload) {
            body = json_dumps(payload, JSON_COMPACT | JSON_ENCODE_ANY);
            len = body ? strlen(body) : 0;
            if (body) { /* re-own with ciot__ allocation rules */
                char *copy = ciot__strndup(body, len);
                free(body);
                body = copy;
            }
        }
        if (!body) {
            if (payload)
                fail(r, 500, "Internal service failure");
            else
                fail(r, 400, "payload: the update document is required");
            return;
        }
    }
    ciot__shadow_result sr;
    if (emu_shadow_request(e, thing, name, op, body, len, false, &sr) != 0)
        fail(r, 500, "Internal service failure");
    else
        from_shadow(r, &sr);
    ciot__shadow_result_free(&sr);
    ciot__free(body);
}

struct list_ctx {
    json_t *names;
    bool oom;
};

static void add_name(emu_shadow *sh, void *ud)
{
    struct list_ctx *lc = ud;
    if (sh->name && ciot__shadow_exists(sh->doc) &&
        json_array_append_new(lc->names, json_string(sh->name)) != 0)
        lc->oom = true;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(json_string_value(*(json_t *const *)a), json_string_value(*(json_t *const *)b));
}

static json_t *sorted(json_t *arr)
{
    size_t n = json_array_size(arr);
    if (n < 2)
        return arr;
    json_t **v = ciot__calloc(n, sizeof *v);
    if (!v)
        return arr;
    for (size_t i = 0; i < n; i++)
        v[i] = json_incref(json_array_get(arr, i));
    qsort(v, n, sizeof *v, cmp_str);
    json_array_clear(arr);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, v[i]);
    ciot__free(v);
    return arr;
}

static void list_named(emu *e, reply *r, json_t *req)
{
    const char *thing = str_arg(req, "thingName");
    if (!thing || !emu_valid_thing(thing, strlen(thing))) {
        fail(r, 400, "thingName: a string matching [a-zA-Z0-9:_-]{1,128} is required");
        return;
    }
    struct list_ctx lc = {json_array(), false};
    if (lc.names)
        emu_store_each(&e->store, thing, add_name, &lc);
    if (!lc.names || lc.oom) {
        json_decref(lc.names);
        fail(r, 500, "Internal service failure");
        return;
    }
    r->status = 200;
    r->result = json_pack("{s:o,s:I}", "results", sorted(lc.names), "timestamp",
                          (json_int_t)time(NULL));
    if (!r->result)
        fail(r, 500, "Internal service failure");
}

static void list_things(emu *e, reply *r)
{
    json_t *things = json_array();
    if (!things) {
        fail(r, 500, "Internal service failure");
        return;
    }
    char path[4096];
    DIR *d = NULL;
    if (e->data_dir) {
        snprintf(path, sizeof path, "%s/registry/things", e->data_dir);
        d = opendir(path);
    }
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n <= 5 || strcmp(de->d_name + n - 5, ".json") != 0)
            continue;
        char name[EMU_MAX_THING + 1];
        if (n - 5 > EMU_MAX_THING || !emu_valid_thing(de->d_name, n - 5))
            continue;
        memcpy(name, de->d_name, n - 5);
        name[n - 5] = '\0';
        json_t *t = emu_registry_read(e, "things", name);
        if (t)
            json_array_append_new(things, t);
    }
    if (d)
        closedir(d);
    /* Sorted by thing name, so the listing does not depend on the directory. */
    size_t count = json_array_size(things);
    json_t *names = json_array();
    for (size_t i = 0; names && i < count; i++)
        json_array_append(names, json_object_get(json_array_get(things, i), "thingName"));
    json_t *out = json_array();
    if (names && out) {
        sorted(names);
        for (size_t i = 0; i < json_array_size(names); i++) {
            const char *want = json_string_value(json_array_get(names, i));
            for (size_t k = 0; want && k < count; k++) {
                json_t *t = json_array_get(things, k);
                const char *tn = json_string_value(json_object_get(t, "thingName"));
                if (tn && strcmp(tn, want) == 0) {
                    json_array_append(out, t);
                    break;
                }
            }
        }
    }
    json_decref(names);
    json_decref(things);
    r->status = 200;
    r->result = out ? json_pack("{s:o}", "things", out) : NULL;
    if (!r->result)
        fail(r, 500, "Internal service failure");
}

static void describe_thing(emu *e, reply *r, json_t *req)
{
    const char *thing = str_arg(req, "thingName");
    if (!thing || !emu_valid_thing(thing, strlen(thing))) {
        fail(r, 400, "thingName: a string matching [a-zA-Z0-9:_-]{1,128} is required");
        return;
    }
    json_t *t = e->data_dir ? emu_registry_read(e, "things", thing) : NULL;
    if (!t) {
        fail(r, 404, "Thing %s cannot be found.", thing);
        return;
    }
    json_object_set_new(t, "defaultClientId", json_string(thing));
    r->status = 200;
    r->result = t;
}

static void respond(const struct mosquitto *client, const char *topic, json_t *req_id,
                    const char *op, reply *r)
{
    json_t *resp = json_object();
    if (!resp)
        return;
    json_object_set(resp, "requestId", req_id ? req_id : json_null());
    json_object_set_new(resp, "op", op ? json_string(op) : json_null());
    json_object_set_new(resp, "status", json_integer(r->status));
    if (r->status == 200)
        json_object_set(resp, "result", r->result ? r->result : json_null());
    else
        json_object_set_new(resp, "error", json_string(r->error));
    char *text = json_dumps(resp, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(resp);
    if (!text)
        return;
    char rtopic[128];
    snprintf(rtopic, sizeof rtopic, "%s/response", topic);
    int rc = mosquitto_broker_publish_copy(mosquitto_client_id(client), rtopic, (int)strlen(text),
                                           text, 1, false, NULL);
    if (rc != MOSQ_ERR_SUCCESS)
        emu_log(MOSQ_LOG_ERR, "could not publish on %s (%d)", rtopic, rc);
    free(text);
}

int emu_on_control(emu *e, struct mosquitto *client, const char *topic, const void *payload,
                   uint32_t len)
{
    emu_client *c = emu_client_find(e, client);
    if (!c || !c->admin) {
        emu_log(MOSQ_LOG_NOTICE, "%s: refused for %s (admin only)", topic,
                c ? c->client_id : "an unknown client");
        return MOSQ_ERR_ACL_DENIED;
    }
    bool iot_data = strcmp(topic, EMU_CONTROL_IOT_DATA) == 0;
    bool iot = strcmp(topic, EMU_CONTROL_IOT) == 0;
    bool iothub = strcmp(topic, EMU_CONTROL_IOTHUB) == 0;
    reply r = {0};
    json_error_t err;
    json_t *req = json_loadb(payload, len, JSON_REJECT_DUPLICATES, &err);
    const char *op = str_arg(req, "op");
    json_t *req_id = json_object_get(req, "requestId");
    if (json_is_object(req) && op && strcmp(topic, EMU_CONTROL_IOTHUB) == 0 &&
        emu_azure_control(e, client, op, req)) { /* azure_service.c answers */
        json_decref(req);
        return MOSQ_ERR_SUCCESS;
    }
    if (!json_is_object(req)) {
        fail(&r, 400, "the request is not a JSON object");
    } else if (!op) {
        fail(&r, 400, "op: a string is required");
    } else if (iot_data && strcmp(op, "get-thing-shadow") == 0) {
        shadow_op(e, &r, req, EMU_SHADOW_GET);
    } else if (iot_data && strcmp(op, "update-thing-shadow") == 0) {
        shadow_op(e, &r, req, EMU_SHADOW_UPDATE);
    } else if (iot_data && strcmp(op, "delete-thing-shadow") == 0) {
        shadow_op(e, &r, req, EMU_SHADOW_DELETE);
    } else if (iot_data && strcmp(op, "list-named-shadows-for-thing") == 0) {
        list_named(e, &r, req);
    } else if (iothub &&
               emu_twin_control(e, op, req, &r.status, &r.result, r.error, sizeof r.error)) {
        /* get-twin, update-twin (twin_service.c) */
    } else if (iot && strcmp(op, "list-things") == 0) {
        list_things(e, &r);
    } else if (iot && strcmp(op, "describe-thing") == 0) {
        describe_thing(e, &r, req);
    } else {
        fail(&r, 400, "unknown op \"%s\"", op);
    }
    respond(client, topic, req_id, op, &r);
    json_decref(r.result);
    json_decref(req);
    return MOSQ_ERR_SUCCESS;
}
