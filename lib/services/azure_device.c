/*
 * Azure IoT Hub device services (protocols.md §4.4): direct methods
 * (<cloudiot/method.h>) and cloud-to-device messages (<cloudiot/azure.h>).
 * One registry per client, made with the backend's state; attached to the
 * client as a service on first use, to learn when a connection ends (an
 * answer to a request of an ended connection cannot be delivered any more).
 *
 * Locks: d->lock guards the registry; it is taken before the client's lock
 * (ciot_client_subscribe/publish) and never held while a user callback runs.
 */
#include "backend/azure_backend.h"
#include "client/service.h"
#include "core/azure.h"
#include "core/azure_method.h"
#include "core/utf8.h"

#include <cloudiot/azure.h>
#include <cloudiot/json.h>
#include <cloudiot/method.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define METHOD_FILTER "$iothub/methods/POST/#"
#define PENDING_MAX 1024

struct handler {
    char *name;
    size_t len;
    ciot_method_fn fn;
    void *ud;
};

struct pending {
    char *rid;
    size_t len;
    unsigned gen; /* the connection that received it */
};

struct ciot__azure_device {
    pthread_mutex_t lock;
    struct handler *h;
    size_t nh, caph;
    struct pending *p;
    size_t np, capp;
    ciot_method_error_fn err;
    void *err_ud;
    ciot_azure_c2d_fn c2d;
    void *c2d_ud;
    bool methods_subscribed, c2d_subscribed, attached, closed;
    unsigned gen; /* connections ended so far */
    ciot__service svc;
};

struct ciot_method_request {
    const char *name, *rid, *payload;
    size_t name_len, rid_len, payload_len;
};

struct ciot_azure_c2d {
    const char *topic;
    const void *payload;
    size_t topic_len, payload_len;
    const ciot__azure_prop *props;
    size_t nprops;
    int error;
};

int ciot__azure_device_new(struct ciot__azure_device **out)
{
    struct ciot__azure_device *d = ciot__calloc(1, sizeof *d);
    if (!d)
        return CIOT_ENOMEM;
    pthread_mutex_init(&d->lock, NULL);
    *out = d;
    return 0;
}

void ciot__azure_device_free(struct ciot__azure_device *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->nh; i++)
        ciot__free(d->h[i].name);
    for (size_t i = 0; i < d->np; i++)
        ciot__free(d->p[i].rid);
    ciot__free(d->h);
    ciot__free(d->p);
    pthread_mutex_destroy(&d->lock);
    ciot__free(d);
}

static void on_event(ciot_client *c, const ciot_event *ev, void *ud)
{
    (void)c;
    struct ciot__azure_device *d = ud;
    if (ciot_event_type_of(ev) != CIOT_EVENT_DISCONNECTED)
        return;
    pthread_mutex_lock(&d->lock);
    d->gen++; /* every waiting request is now unanswerable */
    pthread_mutex_unlock(&d->lock);
}

static void on_close(ciot_client *c, void *ud)
{
    (void)c;
    struct ciot__azure_device *d = ud;
    pthread_mutex_lock(&d->lock);
    d->closed = true;
    pthread_mutex_unlock(&d->lock);
}

/* The registry of an Azure client (attached as a service), or NULL with
 * CIOT_EINVAL / CIOT_ESTATE in *rc. Takes d->lock on success. */
static struct ciot__azure_device *device_locked(ciot_client *c, int *rc)
{
    if (!c) {
        *rc = CIOT_EINVAL;
        return NULL;
    }
    if (ciot__client_backend(c)->id != CIOT_BACKEND_AZURE) {
        ciot__client_set_err(c, "Azure IoT Hub: needs a client of CIOT_BACKEND_AZURE");
        *rc = CIOT_EINVAL;
        return NULL;
    }
    struct ciot__azure_device *d = ciot__azure_device_of(ciot__client_backend_state(c));
    pthread_mutex_lock(&d->lock);
    if (d->closed) {
        pthread_mutex_unlock(&d->lock);
        *rc = CIOT_ESTATE;
        return NULL;
    }
    if (!d->attached) {
        d->svc = (ciot__service){.on_event = on_event, .on_close = on_close, .ud = d};
        if ((*rc = ciot__client_attach(c, &d->svc)) != 0) {
            pthread_mutex_unlock(&d->lock);
            return NULL;
        }
        d->attached = true;
    }
    return d;
}

/* ---- answers ---- */

/* Publishes `$iothub/methods/res/{status}/?$rid={rid}` (rid percent-encoded). */
static int publish_answer(ciot_client *c, const char *rid, size_t rid_len, int status,
                          const char *json, size_t json_len)
{
    char topic[64 + 3 * CIOT__AZURE_RID_MAX];
    int n = snprintf(topic, sizeof topic, "$iothub/methods/res/%d/?$rid=", status);
    if (n < 0 || rid_len > CIOT__AZURE_RID_MAX)
        return CIOT_EINVAL;
    size_t len = (size_t)n + ciot__azure_url_encode(topic + n, rid, rid_len);
    return ciot_client_publish(NULL, c, topic, len, json, json_len, 0, false);
}

/* An automatic answer with {"message":text}. */
static void answer_message(ciot_client *c, const char *rid, size_t rid_len, int status,
                           const char *text)
{
    char body[400];
    ciot_json_writer w;
    size_t len = 0;
    (void)!ciot_json_writer_init(&w, body, sizeof body);
    (void)!ciot_json_begin_object(&w);
    (void)!ciot_json_key(&w, "message", 7);
    (void)!ciot_json_string(&w, text, strlen(text));
    (void)!ciot_json_end_object(&w);
    int rc = ciot_json_writer_finish(&w, &len);
    if (rc == 0)
        rc = publish_answer(c, rid, rid_len, status, body, len);
    if (rc != 0)
        ciot__log(CIOT_LOG_WARN, "methods: cannot send the %d answer: %s", status,
                  ciot_strerror(rc));
}

int ciot_method_respond(ciot_client *c, const char *rid, size_t rid_len, int status,
                        const char *json, size_t json_len)
{
    int rc;
    if (!c || !rid || rid_len == 0 || rid_len > CIOT__AZURE_RID_MAX || status < 100 || status > 999 ||
        (!json && json_len))
        return CIOT_EINVAL;
    if (json_len && ciot_json_validate(json, json_len) != 0) {
        ciot__client_set_err(c, "methods: the answer is not one valid JSON value");
        return CIOT_EINVAL;
    }
    struct ciot__azure_device *d = device_locked(c, &rc);
    if (!d)
        return rc;
    size_t i = 0;
    while (i < d->np && !(d->p[i].len == rid_len && memcmp(d->p[i].rid, rid, rid_len) == 0))
        i++;
    if (i == d->np) {
        pthread_mutex_unlock(&d->lock);
        ciot__client_set_err(c, "methods: no request \"%.*s\" waits for an answer",
                             (int)rid_len, rid);
        return CIOT_ENOTFOUND;
    }
    bool lost = d->p[i].gen != d->gen;
    ciot__free(d->p[i].rid);
    d->p[i] = d->p[--d->np];
    pthread_mutex_unlock(&d->lock);
    if (lost) {
        ciot__client_set_err(c, "methods: request \"%.*s\" came on a connection that has ended; "
                                "the hub has forgotten it", (int)rid_len, rid);
        return CIOT_ECONNLOST;
    }
    return publish_answer(c, rid, rid_len, status, json ? json : "", json_len);
}

/* ---- requests ---- */

static void report(ciot_client *c, struct ciot__azure_device *d, const char *fmt, ...)
    CIOT__PRINTF(3, 4);
static void report(ciot_client *c, struct ciot__azure_device *d, const char *fmt, ...)
{
    char text[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&d->lock);
    ciot_method_error_fn fn = d->err;
    void *ud = d->err_ud;
    pthread_mutex_unlock(&d->lock);
    if (fn)
        fn(c, CIOT_EPROTOCOL, text, ud);
    else
        ciot__log(CIOT_LOG_WARN, "methods: %s", text);
}

/* A printable excerpt of a topic for messages: at most 64 bytes, bytes
 * outside printable ASCII as '?'. */
static void excerpt(char *out, size_t cap, const char *s, size_t len)
{
    size_t n = len < 64 ? len : 64;
    if (n >= cap)
        n = cap - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    out[n] = '\0';
}

static bool name_ok(const char *s, size_t len)
{
    if (!s || len == 0 || len > CIOT__AZURE_METHOD_NAME_MAX || !ciot__utf8_valid(s, len, false))
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] == '/' || s[i] == '+' || s[i] == '#' || s[i] == '?')
            return false;
    return true;
}

static int on_request(ciot_client *c, const ciot_event *msg, void *ud)
{
    struct ciot__azure_device *d = ud;
    size_t tlen = 0, plen = 0;
    const char *topic = ciot_event_topic(msg, &tlen);
    const char *payload = ciot_event_payload(msg, &plen);
    char buf[CIOT__AZURE_METHOD_TOPIC_MAX];
    ciot__azure_method_req req0;
    const char *why = "";
    int rc = ciot__azure_method_parse(&req0, &why, buf, sizeof buf, topic, tlen);
    if (rc == CIOT_ENOTFOUND)
        return 0; /* not ours (cannot happen with our filter) */
    if (rc != 0) {
        char ex[80];
        excerpt(ex, sizeof ex, topic, tlen);
        report(c, d, "method request \"%s%s\" (%zu bytes): %s", ex, tlen > 64 ? "..." : "", tlen,
               why);
        if (req0.rid.len)
            answer_message(c, req0.rid.ptr, req0.rid.len, 400, why);
        return 0;
    }
    const char *name = req0.name.ptr, *rid = req0.rid.ptr;
    size_t name_len = req0.name.len, rid_len = req0.rid.len;

    pthread_mutex_lock(&d->lock);
    ciot_method_fn fn = NULL;
    void *fud = NULL;
    for (size_t i = 0; i < d->nh; i++)
        if (d->h[i].len == name_len && memcmp(d->h[i].name, name, name_len) == 0) {
            fn = d->h[i].fn;
            fud = d->h[i].ud;
            break;
        }
    int status = 0;
    if (fn) {
        /* forget answers that can no longer be sent before refusing for room */
        for (size_t i = 0; d->np >= PENDING_MAX && i < d->np;) {
            if (d->p[i].gen != d->gen) {
                ciot__free(d->p[i].rid);
                d->p[i] = d->p[--d->np];
            } else {
                i++;
            }
        }
        if (d->np >= PENDING_MAX) {
            status = 429;
        } else if (d->np == d->capp) {
            size_t cap = d->capp ? d->capp * 2 : 16;
            struct pending *p = ciot__realloc(d->p, cap * sizeof *p);
            if (p) {
                d->p = p;
                d->capp = cap;
            } else {
                status = 503;
            }
        }
        char *copy = status ? NULL : ciot__strndup(rid, rid_len);
        if (!status && !copy)
            status = 503;
        if (copy)
            d->p[d->np++] = (struct pending){copy, rid_len, d->gen};
    }
    pthread_mutex_unlock(&d->lock);
    if (!fn) {
        char text[200];
        snprintf(text, sizeof text, "method \"%.*s\" is not registered on this device",
                 (int)name_len, name);
        answer_message(c, rid, rid_len, 404, text);
        return 0;
    }
    if (status) {
        answer_message(c, rid, rid_len, status,
                       status == 429 ? "too many requests waiting" : "out of memory");
        return 0;
    }
    ciot_method_request req = {name, rid, payload ? payload : "", name_len, rid_len, plen};
    return fn(c, &req, fud);
}

int ciot_method_register(ciot_client *c, const char *name, size_t name_len, ciot_method_fn fn,
                         void *user_data)
{
    int rc = 0;
    if (!c || !fn)
        return CIOT_EINVAL;
    if (!name_ok(name, name_len)) {
        ciot__client_set_err(c, "methods: a name is 1..128 bytes of UTF-8 without / + # ?");
        return CIOT_EINVAL;
    }
    struct ciot__azure_device *d = device_locked(c, &rc);
    if (!d)
        return rc;
    for (size_t i = 0; i < d->nh; i++)
        if (d->h[i].len == name_len && memcmp(d->h[i].name, name, name_len) == 0) {
            ciot__client_set_err(c, "methods: \"%.*s\" has a handler already", (int)name_len,
                                 name);
            rc = CIOT_EEXIST;
            goto out;
        }
    if (!d->methods_subscribed) {
        rc = ciot_client_subscribe(c, METHOD_FILTER, sizeof METHOD_FILTER - 1, 0, on_request, d);
        if (rc != 0)
            goto out;
        d->methods_subscribed = true;
    }
    if (d->nh == d->caph) {
        size_t cap = d->caph ? d->caph * 2 : 8;
        struct handler *h = ciot__realloc(d->h, cap * sizeof *h);
        if (!h) {
            rc = CIOT_ENOMEM;
            goto out;
        }
        d->h = h;
        d->caph = cap;
    }
    char *copy = ciot__strndup(name, name_len);
    if (!copy) {
        rc = CIOT_ENOMEM;
        goto out;
    }
    d->h[d->nh++] = (struct handler){copy, name_len, fn, user_data};
out:
    pthread_mutex_unlock(&d->lock);
    return rc;
}

int ciot_method_unregister(ciot_client *c, const char *name, size_t name_len)
{
    int rc;
    if (!c || !name_ok(name, name_len))
        return CIOT_EINVAL;
    struct ciot__azure_device *d = device_locked(c, &rc);
    if (!d)
        return rc;
    rc = CIOT_ENOTFOUND;
    for (size_t i = 0; i < d->nh; i++)
        if (d->h[i].len == name_len && memcmp(d->h[i].name, name, name_len) == 0) {
            ciot__free(d->h[i].name);
            d->h[i] = d->h[--d->nh];
            rc = 0;
            break;
        }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

void ciot_method_set_error_callback(ciot_client *c, ciot_method_error_fn fn, void *user_data)
{
    int rc;
    struct ciot__azure_device *d = device_locked(c, &rc);
    if (!d)
        return;
    d->err = fn;
    d->err_ud = user_data;
    pthread_mutex_unlock(&d->lock);
}

const char *ciot_method_request_name(const ciot_method_request *req, size_t *len)
{
    if (len)
        *len = req ? req->name_len : 0;
    return req ? req->name : NULL;
}

const char *ciot_method_request_id(const ciot_method_request *req, size_t *len)
{
    if (len)
        *len = req ? req->rid_len : 0;
    return req ? req->rid : NULL;
}

const char *ciot_method_request_payload(const ciot_method_request *req, size_t *len)
{
    if (len)
        *len = req ? req->payload_len : 0;
    return req ? req->payload : NULL;
}

/* ---- cloud-to-device ---- */

static int on_c2d(ciot_client *c, const ciot_event *msg, void *ud)
{
    struct ciot__azure_device *d = ud;
    ciot_azure_c2d m = {0};
    m.topic = ciot_event_topic(msg, &m.topic_len);
    m.payload = ciot_event_payload(msg, &m.payload_len);
    if (!m.payload)
        m.payload = "";
    bool matched = false;
    ciot_view dev, mod, bag;
    if (ciot__azure_c2d_split(&matched, &dev, &mod, &bag, m.topic, m.topic_len) != 0 || !matched) {
        ciot__log(CIOT_LOG_DEBUG, "c2d: not a cloud-to-device topic: %.*s",
                  (int)(m.topic_len > 64 ? 64 : m.topic_len), m.topic);
        return 0;
    }
    char local_buf[512], *buf = local_buf;
    ciot__azure_prop local_props[32], *props = local_props;
    size_t used = 0, n = 0, maxp = 32;
    if (bag.len > sizeof local_buf && !(buf = ciot__malloc(bag.len)))
        m.error = CIOT_ENOMEM;
    int rc = m.error ? m.error
                     : ciot__azure_bag_decode(buf, bag.len > sizeof local_buf ? bag.len : sizeof local_buf,
                                              &used, props, maxp, &n, bag.ptr, bag.len);
    if (rc == CIOT_ENOSPC && n > maxp) {
        /* more properties than the local array holds */
        if (n > SIZE_MAX / sizeof *props || !(props = ciot__malloc(n * sizeof *props))) {
            props = local_props;
            rc = CIOT_ENOMEM;
        } else {
            maxp = n;
            rc = ciot__azure_bag_decode(buf, bag.len > sizeof local_buf ? bag.len : sizeof local_buf,
                                        &used, props, maxp, &n, bag.ptr, bag.len);
        }
    }
    if (rc == 0) {
        m.props = props;
        m.nprops = n;
    } else {
        m.error = rc == CIOT_ENOMEM ? CIOT_ENOMEM : CIOT_EPROTOCOL;
    }
    pthread_mutex_lock(&d->lock);
    ciot_azure_c2d_fn fn = d->c2d;
    void *fud = d->c2d_ud;
    pthread_mutex_unlock(&d->lock);
    int urc = 0;
    if (fn)
        urc = fn(c, &m, fud);
    else
        ciot__log(CIOT_LOG_INFO, "c2d: a message and no callback: dropped");
    if (buf != local_buf)
        ciot__free(buf);
    if (props != local_props)
        ciot__free(props);
    return urc;
}

int ciot_azure_c2d_set_callback(ciot_client *c, ciot_azure_c2d_fn fn, void *user_data)
{
    int rc = 0;
    struct ciot__azure_device *d = device_locked(c, &rc);
    if (!d)
        return rc;
    if (!d->c2d_subscribed) {
        ciot_view dev, mod;
        ciot__azure_identity(ciot__client_backend_state(c), &dev, &mod);
        char f[300];
        int n = mod.len ? snprintf(f, sizeof f, "devices/%.*s/modules/%.*s/#", (int)dev.len,
                                   dev.ptr, (int)mod.len, mod.ptr)
                        : snprintf(f, sizeof f, "devices/%.*s/messages/devicebound/#",
                                   (int)dev.len, dev.ptr);
        rc = ciot_client_subscribe(c, f, (size_t)n, 1, on_c2d, d);
        if (rc != 0)
            goto out;
        d->c2d_subscribed = true;
    }
    d->c2d = fn;
    d->c2d_ud = user_data;
out:
    pthread_mutex_unlock(&d->lock);
    return rc;
}

const void *ciot_azure_c2d_payload(const ciot_azure_c2d *msg, size_t *len)
{
    if (len)
        *len = msg ? msg->payload_len : 0;
    return msg ? msg->payload : NULL;
}

const char *ciot_azure_c2d_topic(const ciot_azure_c2d *msg, size_t *len)
{
    if (len)
        *len = msg ? msg->topic_len : 0;
    return msg ? msg->topic : NULL;
}

size_t ciot_azure_c2d_property_count(const ciot_azure_c2d *msg)
{
    return msg ? msg->nprops : 0;
}

int ciot_azure_c2d_property(ciot_view *name, ciot_view *value, bool *has_value,
                            const ciot_azure_c2d *msg, size_t i)
{
    if (!name || !value || !msg)
        return CIOT_EINVAL;
    if (i >= msg->nprops)
        return CIOT_ERANGE;
    *name = msg->props[i].name;
    *value = msg->props[i].value;
    if (has_value)
        *has_value = msg->props[i].has_value;
    return 0;
}

int ciot_azure_c2d_property_find(ciot_view *value, const ciot_azure_c2d *msg, const char *name,
                                 size_t name_len)
{
    if (!value || !msg || (!name && name_len))
        return CIOT_EINVAL;
    for (size_t i = 0; i < msg->nprops; i++)
        if (msg->props[i].name.len == name_len &&
            memcmp(msg->props[i].name.ptr, name, name_len) == 0) {
            *value = msg->props[i].value;
            return 0;
        }
    return CIOT_ENOTFOUND;
}

int ciot_azure_c2d_error(const ciot_azure_c2d *msg)
{
    return msg ? msg->error : CIOT_EINVAL;
}
