/*
 * The service side of the emulated Azure IoT Hub over the control topic
 * $CONTROL/cloudiot/v1/iothub (admin only; format of control.c): direct
 * methods and cloud-to-device messages (doc/emulator.md, "Azure IoT Hub").
 *
 * invoke-device-method {deviceId, methodName, payload, responseTimeoutInSeconds
 * (5..300, default 30), connectTimeoutInSeconds (0..300, default 0)}: the
 * request goes to that device's connection alone on
 * $iothub/methods/POST/{methodName}/?$rid={rid}; the device's
 * $iothub/methods/res/{status}/?$rid={rid} is answered to the admin as
 * {"status":<device status>,"payload":<device body>}. Nothing blocks: the
 * call waits in e->calls and MOSQ_EVT_TICK answers 504 (errorCode 504101)
 * when the response timeout passes, 404 (404103) when the device is not
 * connected and subscribed to methods (after connectTimeoutInSeconds).
 *
 * send-c2d-message {deviceId, payload, properties, messageId, correlationId,
 * contentType, contentEncoding}: published QoS 1 on
 * devices/{id}/messages/devicebound/{bag}; the ACL lets only that device
 * read it. An offline device with a persistent session (clean session 0)
 * that subscribed before gets it when it reconnects (mosquitto's queue);
 * otherwise the message is dropped, which the result says (deviceConnected).
 */
#include "emu.h"

#include "core/azure.h"
#include "internal.h"

#include <jansson.h>
#include <mosquitto.h>
#include <mosquitto_broker.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RESPONSE_TOPIC EMU_CONTROL_IOTHUB "/response"
#define METHOD_PAYLOAD_MAX (128 * 1024) /* protocols.md §4.6 */
#define C2D_PAYLOAD_MAX (64 * 1024)
#define METHOD_NAME_MAX 128

typedef struct emu_azure_call {
    uint64_t rid;          /* 0 until sent to the device */
    char *device;          /* target device id */
    char *method;          /* method name */
    char *body;            /* request payload (JSON text), until sent */
    size_t body_len;
    const struct mosquitto *admin;
    char *admin_id;
    json_t *request_id;    /* the admin's requestId */
    uint64_t connect_deadline_ms;
    uint64_t response_timeout_ms;
    uint64_t deadline_ms;  /* response deadline, once sent */
    struct emu_azure_call *next;
} emu_azure_call;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void call_free(emu_azure_call *k)
{
    ciot__free(k->device);
    ciot__free(k->method);
    ciot__free(k->body);
    ciot__free(k->admin_id);
    json_decref(k->request_id);
    ciot__free(k);
}

void emu_azure_free(emu *e)
{
    while (e->calls) {
        emu_azure_call *k = e->calls;
        e->calls = k->next;
        call_free(k);
    }
}

/* {"requestId","op","status",("result"|"error","errorCode")} to the admin. */
static void answer(const char *admin_id, json_t *request_id, const char *op, int status,
                   json_t *result, const char *error, int error_code)
{
    json_t *resp = json_object();
    if (!resp) {
        json_decref(result);
        return;
    }
    json_object_set(resp, "requestId", request_id ? request_id : json_null());
    json_object_set_new(resp, "op", json_string(op));
    json_object_set_new(resp, "status", json_integer(status));
    if (error) {
        json_object_set_new(resp, "error", json_string(error));
        if (error_code)
            json_object_set_new(resp, "errorCode", json_integer(error_code));
        json_decref(result);
    } else {
        json_object_set_new(resp, "result", result ? result : json_null());
    }
    char *text = json_dumps(resp, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(resp);
    if (!text)
        return;
    int rc = mosquitto_broker_publish_copy(admin_id, RESPONSE_TOPIC, (int)strlen(text), text, 1,
                                           false, NULL);
    if (rc != MOSQ_ERR_SUCCESS)
        emu_log(MOSQ_LOG_ERR, "could not publish on %s (%d)", RESPONSE_TOPIC, rc);
    free(text);
}

static void fail(struct mosquitto *client, json_t *req, const char *op, int status,
                 const char *msg, int code)
{
    answer(mosquitto_client_id(client), json_object_get(req, "requestId"), op, status, NULL, msg,
           code);
}

static bool device_registered(emu *e, const char *id)
{
    if (!e->data_dir)
        return false;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/registry/azure-devices/%s.json", e->data_dir, id) >=
        (int)sizeof path)
        return false;
    char *text;
    size_t len;
    if (emu_read_file(&text, &len, path, 64 * 1024) != 0)
        return false;
    ciot__free(text);
    return true;
}

/* The JSON text of a request member (absent: null), in ciot__ memory. */
static char *dump_any(json_t *v, size_t *len)
{
    char *t = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    const char *src = v ? t : "null";
    if (v && !t)
        return NULL;
    char *out = ciot__strndup(src, strlen(src));
    *len = out ? strlen(out) : 0;
    free(t);
    return out;
}

static bool method_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > METHOD_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '/' || s[i] == '+' || s[i] == '#' || (unsigned char)s[i] < 0x21 ||
            (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

/* Reads an optional integer member in [lo, hi]; def when absent. */
static bool int_arg(json_t *req, const char *key, long long lo, long long hi, long long def,
                    long long *out)
{
    json_t *v = json_object_get(req, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return true;
    }
    if (!json_is_integer(v))
        return false;
    *out = json_integer_value(v);
    return *out >= lo && *out <= hi;
}

/* The device's connection, when it is connected and subscribed to methods. */
static emu_client *method_target(emu *e, const char *device)
{
    emu_client *c = emu_azure_find_device(e, device);
    return c && c->azure_methods ? c : NULL;
}

static void send_call(emu *e, emu_azure_call *k, emu_client *dev)
{
    k->rid = ++e->call_seq;
    char topic[64 + METHOD_NAME_MAX];
    snprintf(topic, sizeof topic, "$iothub/methods/POST/%s/?$rid=%" PRIu64, k->method, k->rid);
    int rc = mosquitto_broker_publish_copy(dev->client_id, topic, (int)k->body_len, k->body, 0,
                                           false, NULL);
    if (rc != MOSQ_ERR_SUCCESS)
        emu_log(MOSQ_LOG_ERR, "could not publish on %s (%d)", topic, rc);
    ciot__free(k->body);
    k->body = NULL;
    k->deadline_ms = now_ms() + k->response_timeout_ms;
}

static void invoke(emu *e, struct mosquitto *client, json_t *req)
{
    const char *op = "invoke-device-method";
    const char *dev = json_string_value(json_object_get(req, "deviceId"));
    const char *method = json_string_value(json_object_get(req, "methodName"));
    long long rto = 0, cto = 0;
    if (!dev || !ciot__azure_id_valid(dev, strlen(dev))) {
        fail(client, req, op, 400, "deviceId: a valid device id is required", 400001);
        return;
    }
    if (!method || !method_name_ok(method)) {
        fail(client, req, op, 400,
             "methodName: 1 to 128 printable ASCII characters without '/', '+', '#'", 400001);
        return;
    }
    if (!int_arg(req, "responseTimeoutInSeconds", 5, 300, 30, &rto) ||
        !int_arg(req, "connectTimeoutInSeconds", 0, 300, 0, &cto)) {
        fail(client, req, op, 400,
             "responseTimeoutInSeconds must be 5..300 and connectTimeoutInSeconds 0..300",
             400027);
        return;
    }
    if (!device_registered(e, dev)) {
        fail(client, req, op, 404, "Device not found", 404001);
        return;
    }
    emu_client *target = method_target(e, dev);
    if (!target && cto == 0) {
        fail(client, req, op, 404, "Timed out waiting for device to connect.", 404103);
        return;
    }
    emu_azure_call *k = ciot__calloc(1, sizeof *k);
    const char *admin_id = mosquitto_client_id(client);
    if (k) {
        k->device = ciot__strndup(dev, strlen(dev));
        k->method = ciot__strndup(method, strlen(method));
        k->body = dump_any(json_object_get(req, "payload"), &k->body_len);
        k->admin_id = ciot__strndup(admin_id, strlen(admin_id));
    }
    if (!k || !k->device || !k->method || !k->body || !k->admin_id) {
        if (k)
            call_free(k);
        fail(client, req, op, 500, "Internal service failure", 500001);
        return;
    }
    if (k->body_len > METHOD_PAYLOAD_MAX) {
        call_free(k);
        fail(client, req, op, 413, "payload: larger than 128 KB", 413001);
        return;
    }
    k->admin = client;
    k->request_id = json_incref(json_object_get(req, "requestId"));
    k->response_timeout_ms = (uint64_t)rto * 1000u;
    k->connect_deadline_ms = now_ms() + (uint64_t)cto * 1000u;
    k->next = e->calls;
    e->calls = k;
    if (target)
        send_call(e, k, target);
}

/* devices/{id}/messages/devicebound/{bag} with the system properties
 * $.to, $.mid, $.cid, $.ct, $.ce and the application properties. */
static int c2d_topic(char **out, const char *dev, json_t *req, const char **why)
{
    json_t *props = json_object_get(req, "properties");
    if (props && !json_is_object(props) && !json_is_null(props)) {
        *why = "properties: an object of string values";
        return 400;
    }
    size_t n = json_object_size(props);
    ciot__azure_prop *p = ciot__calloc(n ? n : 1, sizeof *p);
    if (!p)
        return 500;
    size_t i = 0;
    const char *key;
    json_t *v;
    json_object_foreach(props, key, v)
    {
        if (!json_is_string(v) && !json_is_null(v)) {
            ciot__free(p);
            *why = "properties: an object of string values";
            return 400;
        }
        p[i].name = (ciot_view){key, strlen(key)};
        p[i].has_value = json_is_string(v);
        if (p[i].has_value)
            p[i].value = (ciot_view){json_string_value(v), json_string_length(v)};
        i++;
    }
    const char *mid = json_string_value(json_object_get(req, "messageId"));
    const char *cid = json_string_value(json_object_get(req, "correlationId"));
    const char *ct = json_string_value(json_object_get(req, "contentType"));
    const char *ce = json_string_value(json_object_get(req, "contentEncoding"));
    ciot__azure_sysprops sys = {0};
    if (ct)
        sys.content_type = (ciot_view){ct, strlen(ct)};
    if (ce)
        sys.content_encoding = (ciot_view){ce, strlen(ce)};
    if (mid)
        sys.message_id = (ciot_view){mid, strlen(mid)};
    if (cid)
        sys.correlation_id = (ciot_view){cid, strlen(cid)};
    /* The library's bag encoder builds a telemetry topic; its bag is reused
     * after devicebound/, behind the $.to the hub adds. */
    size_t need = 0, dlen = strlen(dev);
    int rc = ciot__azure_telemetry_topic(NULL, 0, &need, dev, dlen, NULL, 0, &sys, p, n);
    char *tele = rc == CIOT_ENOSPC ? ciot__malloc(need + 1) : NULL;
    if (tele)
        rc = ciot__azure_telemetry_topic(tele, need + 1, &need, dev, dlen, NULL, 0, &sys, p, n);
    ciot__free(p);
    if (rc != 0) {
        ciot__free(tele);
        if (rc == CIOT_ENOSPC || rc == CIOT_ENOMEM)
            return 500;
        *why = "properties, messageId or correlationId: invalid (names must be non-empty "
               "UTF-8 not starting with \"$.\"; messageId at most 128 printable ASCII)";
        return 400;
    }
    char to[3 * 300];
    char tov[300];
    int tn = snprintf(tov, sizeof tov, "/devices/%s/messages/deviceBound", dev);
    size_t tolen = ciot__azure_url_encode(to, tov, (size_t)tn);
    size_t prefix = strlen("devices/") + dlen + strlen("/messages/events/");
    const char *bag = tele + prefix;
    size_t blen = need - prefix;
    size_t total = strlen("devices/") + dlen + strlen("/messages/devicebound/$.to=") + tolen +
                   (blen ? 1 + blen : 0);
    if (total > CIOT__AZURE_TOPIC_MAX) {
        ciot__free(tele);
        *why = "properties: the topic would be longer than 65535 bytes";
        return 400;
    }
    *out = ciot__malloc(total + 1);
    if (!*out) {
        ciot__free(tele);
        return 500;
    }
    snprintf(*out, total + 1, "devices/%s/messages/devicebound/$.to=%.*s%s%.*s", dev, (int)tolen,
             to, blen ? "&" : "", (int)blen, bag);
    ciot__free(tele);
    return 0;
}

static void send_c2d(emu *e, struct mosquitto *client, json_t *req)
{
    const char *op = "send-c2d-message";
    const char *dev = json_string_value(json_object_get(req, "deviceId"));
    if (!dev || !ciot__azure_id_valid(dev, strlen(dev))) {
        fail(client, req, op, 400, "deviceId: a valid device id is required", 400001);
        return;
    }
    if (!device_registered(e, dev)) {
        fail(client, req, op, 404, "Device not found", 404001);
        return;
    }
    json_t *pl = json_object_get(req, "payload");
    size_t len = 0;
    char *body = json_is_string(pl) ? ciot__strndup(json_string_value(pl), json_string_length(pl))
                                    : dump_any(pl, &len);
    if (json_is_string(pl))
        len = json_string_length(pl);
    if (!pl)
        len = 0;
    if (!body) {
        fail(client, req, op, 500, "Internal service failure", 500001);
        return;
    }
    if (len > C2D_PAYLOAD_MAX) {
        ciot__free(body);
        fail(client, req, op, 413, "payload: larger than 64 KB", 413001);
        return;
    }
    char *topic = NULL;
    const char *why = "Internal service failure";
    int st = c2d_topic(&topic, dev, req, &why);
    if (st != 0) {
        ciot__free(body);
        fail(client, req, op, st, why, st * 1000 + 1);
        return;
    }
    bool connected = emu_azure_find_device(e, dev) != NULL;
    int rc = mosquitto_broker_publish_copy(NULL, topic, (int)len, body, 1, false, NULL);
    ciot__free(body);
    if (rc != MOSQ_ERR_SUCCESS) {
        emu_log(MOSQ_LOG_ERR, "could not publish on %s (%d)", topic, rc);
        ciot__free(topic);
        fail(client, req, op, 500, "Internal service failure", 500001);
        return;
    }
    json_t *result = json_pack("{s:s,s:b}", "topic", topic, "deviceConnected", connected);
    ciot__free(topic);
    answer(mosquitto_client_id(client), json_object_get(req, "requestId"), op, 200, result,
           NULL, 0);
}

bool emu_azure_control(emu *e, struct mosquitto *client, const char *op, void *req)
{
    if (strcmp(op, "invoke-device-method") == 0)
        invoke(e, client, req);
    else if (strcmp(op, "send-c2d-message") == 0)
        send_c2d(e, client, req);
    else
        return false;
    return true;
}

/* $iothub/methods/res/{status}/?$rid={rid}: status and rid, or false. */
static bool parse_method_res(const char *topic, long *status, uint64_t *rid)
{
    const char *p = topic + strlen("$iothub/methods/res/");
    char *end;
    long st = strtol(p, &end, 10);
    if (end == p || strncmp(end, "/?", 2) != 0)
        return false;
    const char *q = end + 2;
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t n = amp ? (size_t)(amp - q) : strlen(q);
        if (n > 5 && (strncmp(q, "$rid=", 5) == 0)) {
            uint64_t v = 0;
            for (size_t i = 5; i < n; i++) {
                if (q[i] < '0' || q[i] > '9' || v > UINT64_MAX / 10 - 1)
                    return false;
                v = v * 10 + (uint64_t)(q[i] - '0');
            }
            *status = st;
            *rid = v;
            return true;
        }
        q += n;
        if (*q == '&')
            q++;
    }
    return false;
}

void emu_azure_on_message(emu *e, struct mosquitto *client, const char *topic,
                          const void *payload, uint32_t len)
{
    if (strncmp(topic, "$iothub/methods/res/", 20) != 0)
        return;
    emu_client *c = emu_client_find(e, client);
    long status;
    uint64_t rid;
    if (!c || !c->azure_device || !parse_method_res(topic, &status, &rid))
        return;
    for (emu_azure_call **pp = &e->calls; *pp; pp = &(*pp)->next) {
        emu_azure_call *k = *pp;
        if (k->rid != rid || strcmp(k->device, c->azure_device) != 0)
            continue;
        *pp = k->next;
        json_error_t err;
        json_t *body = len ? json_loadb(payload, len, JSON_DECODE_ANY, &err) : json_null();
        if (!body) /* not JSON: handed back as a string */
            body = json_stringn(payload, len);
        json_t *result = json_pack("{s:I,s:o}", "status", (json_int_t)status, "payload",
                                   body ? body : json_null());
        answer(k->admin_id, k->request_id, "invoke-device-method", 200, result, NULL, 0);
        call_free(k);
        return;
    }
    emu_log(MOSQ_LOG_INFO, "method response from %s with $rid %" PRIu64 " matches no call",
            c->azure_device, rid);
}

void emu_azure_on_disconnect(emu *e, const struct mosquitto *client)
{
    emu_azure_call **pp = &e->calls;
    while (*pp) {
        emu_azure_call *k = *pp;
        if (k->admin == client) {
            *pp = k->next;
            call_free(k);
        } else {
            pp = &k->next;
        }
    }
}

void emu_azure_calls_tick(emu *e)
{
    if (!e->calls)
        return;
    uint64_t now = now_ms();
    emu_azure_call **pp = &e->calls;
    while (*pp) {
        emu_azure_call *k = *pp;
        if (k->rid == 0) { /* waiting for the device to connect */
            emu_client *t = method_target(e, k->device);
            if (t) {
                send_call(e, k, t);
            } else if (now >= k->connect_deadline_ms) {
                *pp = k->next;
                answer(k->admin_id, k->request_id, "invoke-device-method", 404, NULL,
                       "Timed out waiting for device to connect.", 404103);
                call_free(k);
                continue;
            }
        } else if (now >= k->deadline_ms) {
            *pp = k->next;
            answer(k->admin_id, k->request_id, "invoke-device-method", 504, NULL,
                   "Timed out waiting for the response from device.", 504101);
            call_free(k);
            continue;
        }
        pp = &k->next;
    }
}
