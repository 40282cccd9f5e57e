/*
 * ciot_shadow: requests to the Device Shadow service correlated by
 * clientToken, a local copy kept with the document engine
 * (core/shadow_doc.h), deltas, and a /get on every connect.
 *
 * Locks: s->lock protects the shadow; it may be held while calling into the
 * client (publish, filter state, timer), never the other way round: the
 * client calls the shadow's hooks with no lock held. User callbacks run
 * with neither lock held, on the driving thread only: completions found on
 * another thread (a publish that fails) wait in s->done and the timer is
 * set to now, so that the driver delivers them.
 */
#include "client/service.h"
#include "core/shadow_doc.h"
#include "core/twin_doc.h"

#include <cloudiot/json.h>
#include <cloudiot/shadow.h>

#include <fcntl.h>
#include <stdlib.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MAX_INFLIGHT 10 /* AWS answers more with 429 */
#define MAX_PENDING 64
#define NFILTERS 7

static const char *const suffixes[NFILTERS] = {
    "/get/accepted",    "/get/rejected",    "/update/accepted", "/update/rejected",
    "/update/delta",    "/delete/accepted", "/delete/rejected",
};
enum { F_GET_ACC, F_GET_REJ, F_UPD_ACC, F_UPD_REJ, F_DELTA, F_DEL_ACC, F_DEL_REJ };

/* Azure IoT Hub's device twin (backend->iothub_twin; protocols.md §4.6) */
#define TWIN_RES "$iothub/twin/res/"
#define TWIN_DESIRED "$iothub/twin/PATCH/properties/desired/"
static const char *const twin_filters[] = {TWIN_RES "#", TWIN_DESIRED "#"};

struct req {
    struct req *next;
    int kind; /* ciot_shadow_request */
    uint64_t id;
    char token[48];
    size_t token_len;
    char *payload;
    size_t payload_len;
    bool sent, internal;
    uint64_t deadline;
    ciot_shadow_fn fn;
    void *ud;
};

struct ciot_shadow_result {
    int request, outcome, error, code;
    uint64_t id, version;
    char *doc; /* owned copy */
    size_t doc_len;
    char token[48];
    size_t token_len;
    char message[200];
};

/* A result waiting to be delivered. */
struct done {
    struct done *next;
    ciot_shadow_fn fn;
    void *ud;
    ciot_shadow_result r;
};

struct ciot_shadow {
    pthread_mutex_t lock;
    ciot_client *c; /* NULL once the client is gone */
    ciot__service svc;
    char *prefix;
    size_t prefix_len;
    char *filters[NFILTERS];
    size_t filter_len[NFILTERS];
    char token_prefix[20];
    uint64_t next_id;
    ciot__shadow *doc;
    char *doc_name;
    size_t doc_name_len;
    struct req *reqs; /* in order of the calls */
    size_t npending, inflight;
    struct done *done, **done_tail;
    uint64_t delta_seen; /* newest version whose delta was delivered (or fetched without one) */
    int64_t timeout_ms;
    ciot_shadow_fn delta_fn;
    void *delta_ud;
    int nfilters;
    bool az;           /* an IoT Hub twin: the fields below, not doc */
    bool twin_known;   /* a GET document was applied */
    ciot__twin *twin;  /* the local copy */
};

/* ---- completions ---- */

/* Queues a result; lock held. @p doc is copied. */
static void finish(ciot_shadow *s, struct req *q, int outcome, int error, int code,
                   const char *msg, const char *doc, size_t doc_len, uint64_t version)
{
    if (q->internal || !q->fn)
        return; /* nobody to tell */
    struct done *d = ciot__calloc(1, sizeof *d);
    if (!d) {
        ciot__log(CIOT_LOG_ERROR, "shadow: out of memory: the result of request %llu is lost",
                  (unsigned long long)q->id);
        return;
    }
    d->fn = q->fn;
    d->ud = q->ud;
    d->r.request = q->kind;
    d->r.outcome = outcome;
    d->r.error = error;
    d->r.code = code;
    d->r.id = q->id;
    d->r.version = version;
    memcpy(d->r.token, q->token, q->token_len);
    d->r.token_len = q->token_len;
    snprintf(d->r.message, sizeof d->r.message, "%s", msg ? msg : "");
    if (doc && (d->r.doc = ciot__malloc(doc_len + 1))) {
        memcpy(d->r.doc, doc, doc_len);
        d->r.doc[doc_len] = '\0';
        d->r.doc_len = doc_len;
    }
    *s->done_tail = d;
    s->done_tail = &d->next;
}

/* Removes q from the list; lock held. */
static void unlink_req(ciot_shadow *s, struct req *q)
{
    for (struct req **p = &s->reqs; *p; p = &(*p)->next) {
        if (*p == q) {
            *p = q->next;
            break;
        }
    }
    if (q->sent)
        s->inflight--;
    s->npending--;
}

static void free_req(struct req *q)
{
    ciot__free(q->payload);
    ciot__free(q);
}

/* Delivers the queued results; the driving thread, no lock held. */
static void deliver(ciot_shadow *s)
{
    for (;;) {
        pthread_mutex_lock(&s->lock);
        struct done *d = s->done;
        if (d) {
            s->done = d->next;
            if (!s->done)
                s->done_tail = &s->done;
        }
        ciot_client *c = s->c;
        pthread_mutex_unlock(&s->lock);
        if (!d)
            return;
        if (c)
            ciot__client_cb_enter(c);
        int rc = d->fn(s, &d->r, d->ud);
        if (c)
            ciot__client_cb_leave(c, rc);
        ciot__free(d->r.doc);
        ciot__free(d);
    }
}

/* Sets the client's timer to the earliest deadline; lock held. */
static void rearm(ciot_shadow *s)
{
    if (!s->c)
        return;
    uint64_t due = UINT64_MAX;
    for (struct req *q = s->reqs; q; q = q->next)
        if (q->deadline < due)
            due = q->deadline;
    if (s->done)
        due = 0;
    ciot__client_set_timer(s->c, &s->svc, due);
}

/* ---- sending ---- */

/* Publishes what may go out now; any thread, lock held. */
static void pump_locked(ciot_shadow *s)
{
    if (!s->c)
        return;
    bool ready = true;
    for (int i = 0; i < s->nfilters; i++) {
        int st = ciot__client_filter_state(s->c, s->filters[i], s->filter_len[i]);
        if (st == -1 || st == -2) {
            /* refused by the broker (or gone): nothing can be answered */
            for (struct req *q = s->reqs, *next; q; q = next) {
                next = q->next;
                if (q->sent)
                    continue;
                char msg[200];
                snprintf(msg, sizeof msg, "the broker refused the subscription to %s",
                         s->filters[i]);
                finish(s, q, CIOT_SHADOW_FAILED, CIOT_EAUTH, 0, msg, NULL, 0, 0);
                unlink_req(s, q);
                free_req(q);
            }
            rearm(s);
            return;
        }
        if (st != 1)
            ready = false;
    }
    if (!ready)
        return;
    for (struct req *q = s->reqs, *next; q && s->inflight < MAX_INFLIGHT; q = next) {
        next = q->next;
        if (q->sent)
            continue;
        static const char *const ops[] = {"", "/get", "/update", "/delete"};
        char topic[300];
        int n;
        if (s->az)
            n = snprintf(topic, sizeof topic, "$iothub/twin/%s/?$rid=%s",
                         q->kind == CIOT_SHADOW_GET ? "GET" : "PATCH/properties/reported", q->token);
        else
            n = snprintf(topic, sizeof topic, "%s%s", s->prefix, ops[q->kind]);
        int rc = ciot_client_publish(NULL, s->c, topic, (size_t)n, q->payload, q->payload_len, 1, 0);
        if (rc != 0) {
            char msg[200];
            snprintf(msg, sizeof msg, "the request could not be published: %s", ciot_strerror(rc));
            finish(s, q, CIOT_SHADOW_FAILED, rc, 0, msg, NULL, 0, 0);
            unlink_req(s, q);
            free_req(q);
            rearm(s);
            continue;
        }
        q->sent = true;
        s->inflight++;
    }
}

/* Queues a request; lock held. */
static int add_req(ciot_shadow *s, uint64_t *out_id, int kind, const char *section,
                   const char *json, size_t json_len, bool internal, ciot_shadow_fn fn, void *ud)
{
    if (!s->c)
        return CIOT_ESTATE;
    if (s->npending >= MAX_PENDING && !internal) {
        ciot__client_set_err(s->c, "shadow: %d requests are waiting already", MAX_PENDING);
        return CIOT_EQUEUE_FULL;
    }
    struct req *q = ciot__calloc(1, sizeof *q);
    if (!q)
        return CIOT_ENOMEM;
    q->kind = kind;
    q->id = ++s->next_id;
    q->internal = internal;
    q->fn = fn;
    q->ud = ud;
    q->token_len = (size_t)snprintf(q->token, sizeof q->token, "%s-%llu", s->token_prefix,
                                    (unsigned long long)q->id);
    size_t cap = json_len + q->token_len + 64;
    q->payload = ciot__malloc(cap);
    if (!q->payload) {
        ciot__free(q);
        return CIOT_ENOMEM;
    }
    if (s->az) {
        /* the body is the patch itself (GET: empty); the rid is in the topic */
        if (json_len)
            memcpy(q->payload, json, json_len);
        q->payload_len = json_len;
        goto queue;
    }
    ciot_json_writer w;
    (void)!ciot_json_writer_init(&w, q->payload, cap);
    (void)!ciot_json_begin_object(&w);
    if (section) {
        (void)!ciot_json_key(&w, "state", 5);
        (void)!ciot_json_begin_object(&w);
        (void)!ciot_json_key(&w, section, strlen(section));
        (void)!ciot_json_raw(&w, json, json_len);
        (void)!ciot_json_end_object(&w);
    }
    (void)!ciot_json_key(&w, "clientToken", 11);
    (void)!ciot_json_string(&w, q->token, q->token_len);
    (void)!ciot_json_end_object(&w);
    int rc = ciot_json_writer_finish(&w, &q->payload_len);
    if (rc != 0) {
        ciot__free(q->payload);
        ciot__free(q);
        return rc == CIOT_ENOMEM ? rc : CIOT_EINVAL;
    }
queue:
    q->deadline = ciot__now_ms() + (uint64_t)s->timeout_ms;
    struct req **p = &s->reqs;
    while (*p)
        p = &(*p)->next;
    *p = q;
    s->npending++;
    if (out_id)
        *out_id = q->id;
    rearm(s);
    return 0;
}

/* Queues the /get of a (re)connect or a gap, unless one is waiting; lock held. */
static void want_get(ciot_shadow *s)
{
    for (struct req *q = s->reqs; q; q = q->next)
        if (q->internal && !q->sent)
            return;
    if (add_req(s, NULL, CIOT_SHADOW_GET, NULL, NULL, 0, true, NULL, NULL) != 0)
        ciot__log(CIOT_LOG_WARN, "shadow: cannot queue a /get of %s", s->prefix);
}

static int request(ciot_shadow *s, uint64_t *out_id, int kind, const char *section,
                   const char *json, size_t json_len, ciot_shadow_fn fn, void *ud)
{
    if (!s)
        return CIOT_EINVAL;
    if (section) {
        ciot_json_value root;
        if (!json || ciot_json_find(json, json_len, NULL, 0, &root) != 0 ||
            (root.type != CIOT_JSON_OBJECT && (root.type != CIOT_JSON_NULL || s->az))) {
            pthread_mutex_lock(&s->lock);
            if (s->c)
                ciot__client_set_err(s->c, "shadow: the %s state must be a JSON object%s",
                                     section, s->az ? "" : " or null");
            pthread_mutex_unlock(&s->lock);
            return CIOT_EINVAL;
        }
    }
    pthread_mutex_lock(&s->lock);
    int rc = add_req(s, out_id, kind, section, json, json_len, false, fn, ud);
    if (rc == 0)
        pump_locked(s);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int ciot_shadow_get(uint64_t *out_id, ciot_shadow *s, ciot_shadow_fn fn, void *user_data)
{
    return request(s, out_id, CIOT_SHADOW_GET, NULL, NULL, 0, fn, user_data);
}

int ciot_shadow_update_reported(uint64_t *out_id, ciot_shadow *s, const char *json,
                                size_t json_len, ciot_shadow_fn fn, void *user_data)
{
    return request(s, out_id, CIOT_SHADOW_UPDATE, "reported", json, json_len, fn, user_data);
}

/* IoT Hub: a device cannot change desired properties nor delete its twin. */
static int twin_refuse(ciot_shadow *s, const char *what)
{
    pthread_mutex_lock(&s->lock);
    if (s->c)
        ciot__client_set_err(s->c, "shadow: on Azure IoT Hub a device cannot %s "
                                   "(only the service side can)", what);
    pthread_mutex_unlock(&s->lock);
    return CIOT_EINVAL;
}

int ciot_shadow_update_desired(uint64_t *out_id, ciot_shadow *s, const char *json,
                               size_t json_len, ciot_shadow_fn fn, void *user_data)
{
    if (s && s->az)
        return twin_refuse(s, "change desired properties");
    return request(s, out_id, CIOT_SHADOW_UPDATE, "desired", json, json_len, fn, user_data);
}

int ciot_shadow_delete(uint64_t *out_id, ciot_shadow *s, ciot_shadow_fn fn, void *user_data)
{
    if (s && s->az)
        return twin_refuse(s, "delete its twin");
    return request(s, out_id, CIOT_SHADOW_DELETE, NULL, NULL, 0, fn, user_data);
}

/* ---- answers ---- */

static uint64_t doc_version(const char *doc, size_t len)
{
    ciot_json_value v;
    int64_t n = 0;
    if (ciot_json_find(doc, len, "version", 7, &v) == 0 && ciot_json_get_int64(&v, &n) == 0 && n > 0)
        return (uint64_t)n;
    return 0;
}

/* A fresh, non-existent local copy (the shadow was deleted); lock held.
 * The versions seen so far belong to the deleted shadow: one re-created
 * more than 48 h later starts again at 1, and its deltas are new. */
static void reset_copy(ciot_shadow *s)
{
    ciot__shadow *fresh = NULL;
    if (ciot__shadow_new(&fresh, s->doc_name, s->doc_name_len) == 0) {
        ciot__shadow_free(s->doc);
        s->doc = fresh;
    }
    s->delta_seen = 0;
}

/* Queues a delta callback for the state object @p st; lock held. */
static void queue_delta(ciot_shadow *s, const ciot_json_value *st, uint64_t version,
                        const char *doc, size_t len)
{
    s->delta_seen = version;
    if (!s->delta_fn)
        return;
    struct req fake = {.kind = CIOT_SHADOW_DELTA, .fn = s->delta_fn, .ud = s->delta_ud};
    ciot_json_value tok;
    size_t tl = 0;
    if (ciot_json_find(doc, len, "clientToken", 11, &tok) == 0 &&
        ciot_json_get_string(&tok, fake.token, sizeof fake.token, &tl) == 0)
        fake.token_len = tl;
    finish(s, &fake, CIOT_SHADOW_ACCEPTED, 0, 0, "", st->ptr, st->len, version);
}

static void on_delta(ciot_shadow *s, const char *doc, size_t len)
{
    ciot_json_value st;
    uint64_t version = doc_version(doc, len);
    if (ciot_json_find(doc, len, "state", 5, &st) != 0 || st.type != CIOT_JSON_OBJECT || !version) {
        ciot__log(CIOT_LOG_WARN, "shadow: %s/update/delta: not a delta document", s->prefix);
        return;
    }
    bool applied = false, gap = false;
    bool first = !ciot__shadow_exists(s->doc) && version == 1;
    int rc = ciot__shadow_apply(s->doc, CIOT__SHADOW_DOC_DELTA, doc, len, &applied, &gap);
    if (first)
        gap = false;
    if (rc != 0)
        ciot__log(CIOT_LOG_WARN, "shadow: %s/update/delta not applied: %s", s->prefix,
                  ciot_strerror(rc));
    if (version <= s->delta_seen)
        return; /* stale or seen: ignored */
    queue_delta(s, &st, version, doc, len);
    if (gap)
        want_get(s);
}

/* A /get/accepted of ours: the copy is replaced; a delta newer than the
 * last seen is delivered. Lock held. */
static void got_document(ciot_shadow *s, const char *doc, size_t len)
{
    uint64_t version = doc_version(doc, len);
    bool applied = false;
    int rc = ciot__shadow_apply(s->doc, CIOT__SHADOW_DOC_GET, doc, len, &applied, NULL);
    if (rc != 0)
        ciot__log(CIOT_LOG_WARN, "shadow: %s/get/accepted not applied: %s", s->prefix,
                  ciot_strerror(rc));
    if (version <= s->delta_seen)
        return;
    ciot_json_value st;
    if (ciot_json_find(doc, len, "state.delta", 11, &st) == 0 && st.type == CIOT_JSON_OBJECT &&
        st.len > 2)
        queue_delta(s, &st, version, doc, len);
    else
        s->delta_seen = version;
}

static void on_reply(ciot_shadow *s, int which, const char *doc, size_t len)
{
    ciot_json_value tok;
    char token[80];
    size_t tl = 0;
    if (ciot_json_find(doc, len, "clientToken", 11, &tok) != 0 ||
        ciot_json_get_string(&tok, token, sizeof token, &tl) != 0) {
        if (which == F_DEL_ACC)
            reset_copy(s); /* deleted by someone who sent no clientToken */
        return;            /* not an answer to anything of ours */
    }
    int kind = which <= F_GET_REJ ? CIOT_SHADOW_GET
               : which <= F_UPD_REJ ? CIOT_SHADOW_UPDATE
                                    : CIOT_SHADOW_DELETE;
    bool accepted = which == F_GET_ACC || which == F_UPD_ACC || which == F_DEL_ACC;
    struct req *q = s->reqs;
    while (q && !(q->sent && q->kind == kind && q->token_len == tl && memcmp(q->token, token, tl) == 0))
        q = q->next;
    if (!q) {
        /* another client's, or ended already (timed out); a deletion is
         * the shadow's whatever its author: the copy goes with it */
        if (which == F_DEL_ACC)
            reset_copy(s);
        return;
    }
    unlink_req(s, q);
    uint64_t version = doc_version(doc, len);
    if (accepted) {
        if (kind == CIOT_SHADOW_GET) {
            got_document(s, doc, len);
        } else if (kind == CIOT_SHADOW_UPDATE) {
            bool applied = false, gap = false;
            /* version 1 on a copy that knows no shadow: the first update, nothing missed */
            bool first = !ciot__shadow_exists(s->doc) && version == 1;
            if (ciot__shadow_apply(s->doc, CIOT__SHADOW_DOC_ACCEPTED, doc, len, &applied, &gap) == 0 &&
                gap && !first)
                want_get(s);
        } else {
            reset_copy(s);
        }
        finish(s, q, CIOT_SHADOW_ACCEPTED, 0, 0, "", doc, len, version);
    } else {
        ciot_json_value v;
        int64_t code = 0;
        char msg[200] = "";
        size_t ml;
        if (ciot_json_find(doc, len, "code", 4, &v) == 0)
            (void)!ciot_json_get_int64(&v, &code);
        if (ciot_json_find(doc, len, "message", 7, &v) != 0 ||
            ciot_json_get_string(&v, msg, sizeof msg, &ml) != 0)
            snprintf(msg, sizeof msg, "(no message)");
        if (q->internal && code == 404)
            reset_copy(s); /* deleted while we were away */
        finish(s, q, CIOT_SHADOW_REJECTED, 0, (int)code, msg, doc, len, version);
    }
    free_req(q);
}

/* ---- IoT Hub twin answers ---- */

/* The value of parameter @p name ("$rid") in the query of @p topic, or NULL. */
static const char *query_param(const char *topic, size_t tl, const char *name, size_t *len)
{
    const char *q = memchr(topic, '?', tl);
    if (!q)
        return NULL;
    const char *end = topic + tl;
    size_t nl = strlen(name);
    for (const char *p = q + 1; p < end;) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        if ((size_t)(e - p) > nl && memcmp(p, name, nl) == 0 && p[nl] == '=') {
            *len = (size_t)(e - p) - nl - 1;
            return p + nl + 1;
        }
        p = e + 1;
    }
    return NULL;
}

static uint64_t parse_u64(const char *p, size_t len)
{
    uint64_t v = 0;
    if (!p || len == 0 || len > 19)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    return v;
}

/* Queues a delta callback with @p doc (copied); lock held. */
static void twin_delta(ciot_shadow *s, const char *doc, size_t len, uint64_t version)
{
    if (version > s->delta_seen)
        s->delta_seen = version;
    if (!s->delta_fn)
        return;
    struct req fake = {.kind = CIOT_SHADOW_DELTA, .fn = s->delta_fn, .ud = s->delta_ud};
    finish(s, &fake, CIOT_SHADOW_ACCEPTED, 0, 0, "", doc, len, version);
}

/* A GET document: the copy is brought up to date; a desired version newer
 * than the last seen delivers the whole desired section. Lock held. */
static void twin_got_document(ciot_shadow *s, const char *doc, size_t len)
{
    bool applied = false;
    int rc = ciot__twin_apply(s->twin, CIOT__TWIN_DOC_GET, doc, len, &applied, NULL);
    if (rc != 0) {
        ciot__log(CIOT_LOG_WARN, "shadow: twin GET document not applied: %s", ciot_strerror(rc));
        return;
    }
    s->twin_known = true;
    uint64_t v = ciot__twin_version(s->twin, CIOT__TWIN_DESIRED);
    if (v <= s->delta_seen)
        return;
    json_t *d = ciot__twin_section(s->twin, CIOT__TWIN_DESIRED);
    /* the first document of an untouched twin (empty desired) is no change */
    if (s->delta_seen == 0 && json_object_size(d) == 0) {
        s->delta_seen = v;
        return;
    }
    char *text = json_dumps(d, JSON_COMPACT);
    if (!text) {
        ciot__log(CIOT_LOG_ERROR, "shadow: out of memory: a desired change is lost");
        return;
    }
    twin_delta(s, text, strlen(text), v);
    free(text);
}

static void twin_desired_patch(ciot_shadow *s, const char *topic, size_t tl, const char *doc,
                               size_t len)
{
    bool applied = false, gap = false;
    int rc = ciot__twin_apply(s->twin, CIOT__TWIN_DOC_DESIRED, doc, len, &applied, &gap);
    if (rc != 0) {
        ciot__log(CIOT_LOG_WARN, "shadow: desired patch %.*s not applied: %s", (int)tl, topic,
                  ciot_strerror(rc));
        return;
    }
    if (!applied)
        return; /* stale or a duplicate: its $version is in the copy already */
    uint64_t v = ciot__twin_version(s->twin, CIOT__TWIN_DESIRED);
    if (v > s->delta_seen)
        twin_delta(s, doc, len, v);
    if (gap)
        want_get(s); /* versions were skipped: the copy may miss changes */
}

static void twin_reply(ciot_shadow *s, const char *topic, size_t tl, const char *doc, size_t len)
{
    const char *st = topic + strlen(TWIN_RES);
    size_t sl = 0;
    while (st + sl < topic + tl && st[sl] >= '0' && st[sl] <= '9')
        sl++;
    int status = sl == 3 ? (int)parse_u64(st, sl) : 0; /* HTTP-style: three digits */
    size_t rl = 0, vl = 0;
    const char *rid = query_param(topic, tl, "$rid", &rl);
    if (!rid || !status)
        return;
    struct req *q = s->reqs;
    while (q && !(q->sent && q->token_len == rl && memcmp(q->token, rid, rl) == 0))
        q = q->next;
    if (!q)
        return; /* ended already (timed out), or not ours */
    unlink_req(s, q);
    const char *vp = query_param(topic, tl, "$version", &vl);
    uint64_t version = parse_u64(vp, vl);
    if (status >= 200 && status < 300) {
        if (q->kind == CIOT_SHADOW_GET) {
            if (ciot_json_validate(doc, len) == 0)
                twin_got_document(s, doc, len);
            if (!version)
                version = ciot__twin_version(s->twin, CIOT__TWIN_DESIRED);
        } else {
            ciot__twin_result r;
            /* the hub took the patch: the copy merges it (the copy's reported
             * $version is its own count; the hub's is the result's) */
            if (ciot__twin_patch(&r, s->twin, CIOT__TWIN_REPORTED, q->payload, q->payload_len) == 0)
                ciot__twin_result_free(&r);
        }
        finish(s, q, CIOT_SHADOW_ACCEPTED, 0, status, "", doc, len, version);
    } else {
        char msg[200] = "";
        ciot_json_value v;
        size_t ml;
        if (ciot_json_validate(doc, len) != 0 || ciot_json_find(doc, len, "message", 7, &v) != 0 ||
            ciot_json_get_string(&v, msg, sizeof msg, &ml) != 0)
            snprintf(msg, sizeof msg, "status %d (no message)", status);
        if (q->internal)
            ciot__log(CIOT_LOG_WARN, "shadow: twin GET refused: %d %s", status, msg);
        finish(s, q, CIOT_SHADOW_REJECTED, 0, status, msg, doc, len, version);
    }
    free_req(q);
}

static void twin_message(ciot_shadow *s, const char *topic, size_t tl, const char *payload,
                         size_t pl)
{
    size_t rl = strlen(TWIN_RES), dl = strlen(TWIN_DESIRED);
    if (tl > rl && memcmp(topic, TWIN_RES, rl) == 0) {
        twin_reply(s, topic, tl, payload, pl);
    } else if (tl >= dl && memcmp(topic, TWIN_DESIRED, dl) == 0) {
        if (ciot_json_validate(payload, pl) != 0)
            ciot__log(CIOT_LOG_WARN, "shadow: desired patch: payload is not JSON");
        else
            twin_desired_patch(s, topic, tl, payload, pl);
    }
}

static int on_message(ciot_client *c, const ciot_event *msg, void *ud)
{
    (void)c;
    ciot_shadow *s = ud;
    size_t tl, pl;
    const char *topic = ciot_event_topic(msg, &tl);
    const char *payload = ciot_event_payload(msg, &pl);
    if (!payload)
        payload = "";
    pthread_mutex_lock(&s->lock);
    if (s->az)
        twin_message(s, topic, tl, payload, pl);
    for (int i = 0; i < NFILTERS && !s->az; i++) {
        if (tl == s->filter_len[i] && memcmp(topic, s->filters[i], tl) == 0) {
            if (ciot_json_validate(payload, pl) != 0) {
                ciot__log(CIOT_LOG_WARN, "shadow: %s: payload is not JSON", s->filters[i]);
                break;
            }
            if (i == F_DELTA)
                on_delta(s, payload, pl);
            else
                on_reply(s, i, payload, pl);
            break;
        }
    }
    pump_locked(s); /* a slot may be free */
    rearm(s);
    pthread_mutex_unlock(&s->lock);
    deliver(s);
    return 0;
}

/* ---- client hooks (driving thread, no lock) ---- */

static void svc_event(ciot_client *c, const ciot_event *ev, void *ud)
{
    (void)c;
    ciot_shadow *s = ud;
    int type = ciot_event_type_of(ev);
    if (type != CIOT_EVENT_CONNECTED && type != CIOT_EVENT_SUBSCRIBED && type != CIOT_EVENT_ERROR)
        return;
    pthread_mutex_lock(&s->lock);
    if (type == CIOT_EVENT_CONNECTED)
        want_get(s); /* whatever changed while offline */
    pump_locked(s);
    pthread_mutex_unlock(&s->lock);
    deliver(s);
}

static void svc_timer(ciot_client *c, uint64_t now, void *ud)
{
    (void)c;
    ciot_shadow *s = ud;
    pthread_mutex_lock(&s->lock);
    for (struct req *q = s->reqs, *next; q; q = next) {
        next = q->next;
        if (q->deadline > now)
            continue;
        char msg[200];
        snprintf(msg, sizeof msg, "no answer to %s within %lld ms", q->token, (long long)s->timeout_ms);
        if (q->internal)
            ciot__log(CIOT_LOG_WARN, "shadow: %s: %s", s->prefix, msg);
        finish(s, q, CIOT_SHADOW_FAILED, CIOT_ETIMEDOUT, 0, msg, NULL, 0, 0);
        unlink_req(s, q);
        free_req(q);
    }
    pump_locked(s);
    /* the done list is delivered now: the timer only needs the deadlines */
    struct done *pending = s->done;
    s->done = NULL;
    rearm(s);
    s->done = pending;
    pthread_mutex_unlock(&s->lock);
    deliver(s);
}

/* Ends every request with CIOT_ESTATE; lock held. */
static void cancel_all(ciot_shadow *s, const char *why)
{
    while (s->reqs) {
        struct req *q = s->reqs;
        finish(s, q, CIOT_SHADOW_FAILED, CIOT_ESTATE, 0, why, NULL, 0, 0);
        unlink_req(s, q);
        free_req(q);
    }
}

static void svc_close(ciot_client *c, void *ud)
{
    (void)c;
    ciot_shadow *s = ud;
    pthread_mutex_lock(&s->lock);
    cancel_all(s, "cancelled: the client was freed");
    s->c = NULL;
    pthread_mutex_unlock(&s->lock);
    deliver(s);
}

/* ---- lifetime ---- */

static bool shadow_name_ok(const char *n, size_t len)
{
    if (len < 1 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = n[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == ':' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

static void random_prefix(char *out, size_t cap, const void *salt)
{
    unsigned char b[6] = {0};
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, b, sizeof b) : -1;
    if (fd >= 0)
        close(fd);
    if (n != (ssize_t)sizeof b) {
        uint64_t x = ciot__now_ms() ^ (uint64_t)(uintptr_t)salt ^ ((uint64_t)getpid() << 32);
        for (size_t i = 0; i < sizeof b; i++)
            b[i] = (unsigned char)(x >> (8 * i));
    }
    snprintf(out, cap, "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
}

int ciot_shadow_free(ciot_shadow *s);

/* Subscribes and starts; lock not held. */
static void release(ciot_shadow *s);

static int start(ciot_shadow *s, ciot_client *c)
{
    int rc = ciot__client_attach(c, &s->svc);
    if (rc != 0)
        return rc;
    s->c = c;
    for (int i = 0; i < s->nfilters; i++) {
        if ((rc = ciot_client_subscribe(c, s->filters[i], s->filter_len[i], 1, on_message, s)) != 0)
            return rc;
    }
    pthread_mutex_lock(&s->lock);
    if (ciot_client_is_connected(c))
        want_get(s); /* made while connected: no CONNECTED event will come */
    pump_locked(s);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* The IoT Hub twin of the client's identity (device or module). */
static int twin_new(ciot_shadow **out, ciot_client *c, const char *name)
{
    if (name) {
        ciot__client_set_err(c, "shadow: Azure IoT Hub has one twin per device or module: "
                                "give no shadow name (NULL, 0)");
        return CIOT_EINVAL;
    }
    ciot_shadow *s = ciot__calloc(1, sizeof *s);
    if (!s)
        return CIOT_ENOMEM;
    pthread_mutex_init(&s->lock, NULL);
    s->done_tail = &s->done;
    s->az = true;
    s->timeout_ms = ciot__client_request_timeout_ms(c);
    random_prefix(s->token_prefix, sizeof s->token_prefix, s);
    s->svc.on_event = svc_event;
    s->svc.on_timer = svc_timer;
    s->svc.on_close = svc_close;
    s->svc.ud = s;
    s->nfilters = 2;
    int rc = CIOT_ENOMEM;
    if (!(s->prefix = ciot__strndup("$iothub/twin", 12)) || ciot__twin_new(&s->twin) != 0)
        goto fail;
    s->prefix_len = 12;
    for (int i = 0; i < s->nfilters; i++) {
        s->filter_len[i] = strlen(twin_filters[i]);
        if (!(s->filters[i] = ciot__strndup(twin_filters[i], s->filter_len[i])))
            goto fail;
    }
    if ((rc = start(s, c)) != 0) {
        release(s);
        return rc;
    }
    *out = s;
    return 0;
fail:
    s->c = NULL;
    release(s);
    return rc;
}

int ciot_shadow_new(ciot_shadow **out, ciot_client *c, const char *name, size_t name_len)
{
    if (!out || !c || (!name && name_len))
        return CIOT_EINVAL;
    *out = NULL;
    const ciot__backend *be = ciot__client_backend(c);
    if (be->iothub_twin)
        return twin_new(out, c, name);
    if (!be->shadow_prefix) {
        ciot__client_set_err(c, "shadow: the %s backend has no shadow service", be->name);
        return CIOT_EINVAL;
    }
    if (name && !shadow_name_ok(name, name_len)) {
        ciot__client_set_err(c, "shadow: a shadow name is 1..64 of a-z A-Z 0-9 : _ -");
        return CIOT_EINVAL;
    }
    size_t tl;
    const char *thing = ciot__client_thing(c, &tl);
    if (!ciot__thing_name_ok(thing, tl)) {
        ciot__client_set_err(c, "shadow: \"%.*s\" is not a thing name (1..128 of a-z A-Z 0-9 : _ -); "
                                "set CIOT_OPT_THING_NAME", (int)(tl > 64 ? 64 : tl), thing);
        return CIOT_EINVAL;
    }
    ciot_shadow *s = ciot__calloc(1, sizeof *s);
    if (!s)
        return CIOT_ENOMEM;
    pthread_mutex_init(&s->lock, NULL);
    s->done_tail = &s->done;
    s->timeout_ms = ciot__client_request_timeout_ms(c);
    random_prefix(s->token_prefix, sizeof s->token_prefix, s);
    s->svc.on_event = svc_event;
    s->svc.on_timer = svc_timer;
    s->svc.on_close = svc_close;
    s->svc.ud = s;
    s->nfilters = NFILTERS;
    /* prefix: the template with {thing}, then /name/<name> */
    const char *tpl = be->shadow_prefix;
    const char *at = strstr(tpl, "{thing}");
    size_t pre = at ? (size_t)(at - tpl) : strlen(tpl);
    const char *post = at ? at + 7 : "";
    size_t n = pre + (at ? tl : 0) + strlen(post) + (name ? 6 + name_len : 0);
    int rc = CIOT_ENOMEM;
    if (!(s->prefix = ciot__malloc(n + 1)))
        goto fail;
    int w = snprintf(s->prefix, n + 1, "%.*s%.*s%s%s%.*s", (int)pre, tpl, at ? (int)tl : 0, thing, post,
                     name ? "/name/" : "", (int)name_len, name ? name : "");
    s->prefix_len = (size_t)w;
    s->doc_name = name ? ciot__strndup(name, name_len) : ciot__strndup(thing, tl);
    s->doc_name_len = name ? name_len : tl;
    if (!s->doc_name || ciot__shadow_new(&s->doc, s->doc_name, s->doc_name_len) != 0)
        goto fail;
    for (int i = 0; i < NFILTERS; i++) {
        size_t fl = s->prefix_len + strlen(suffixes[i]);
        if (!(s->filters[i] = ciot__malloc(fl + 1)))
            goto fail;
        snprintf(s->filters[i], fl + 1, "%s%s", s->prefix, suffixes[i]);
        s->filter_len[i] = fl;
    }
    if ((rc = start(s, c)) != 0) {
        if (!s->c)
            goto fail;
        release(s);
        return rc;
    }
    *out = s;
    return 0;
fail:
    s->c = NULL;
    release(s);
    return rc;
}

/* Everything ciot_shadow_free() does once it may: also how a shadow that
 * ciot_shadow_new() could not finish is undone, which is allowed inside a
 * callback (it never had a request, so no callback of its own runs). */
static void release(ciot_shadow *s)
{
    pthread_mutex_lock(&s->lock);
    ciot_client *c = s->c;
    pthread_mutex_unlock(&s->lock);
    if (c) {
        ciot__client_detach(c, &s->svc);
        for (int i = 0; i < s->nfilters; i++)
            if (s->filters[i])
                (void)!ciot_client_unsubscribe(c, s->filters[i], s->filter_len[i], on_message, s);
    }
    pthread_mutex_lock(&s->lock);
    cancel_all(s, "cancelled: the shadow was freed");
    s->c = NULL; /* callbacks below run outside the client's dispatch */
    pthread_mutex_unlock(&s->lock);
    deliver(s);
    for (int i = 0; i < NFILTERS; i++)
        ciot__free(s->filters[i]);
    ciot__free(s->prefix);
    ciot__free(s->doc_name);
    ciot__shadow_free(s->doc);
    ciot__twin_free(s->twin);
    pthread_mutex_destroy(&s->lock);
    ciot__free(s);
}

int ciot_shadow_free(ciot_shadow *s)
{
    if (!s)
        return 0;
    pthread_mutex_lock(&s->lock);
    ciot_client *c = s->c;
    pthread_mutex_unlock(&s->lock);
    if (c && ciot__client_in_callback(c))
        return CIOT_ERECURSIVE;
    release(s);
    return 0;
}

void ciot_shadow_set_delta_callback(ciot_shadow *s, ciot_shadow_fn fn, void *user_data)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->delta_fn = fn;
    s->delta_ud = user_data;
    pthread_mutex_unlock(&s->lock);
}

/* Members of desired @p d whose value differs from reported @p r (objects
 * compared member by member), as a new object in *out, or NULL when none. */
static int twin_diff(json_t **out, json_t *d, json_t *r)
{
    *out = NULL;
    const char *k;
    json_t *dv;
    json_object_foreach (d, k, dv) {
        json_t *rv = json_is_object(r) ? json_object_get(r, k) : NULL;
        json_t *x = NULL;
        if (json_is_object(dv) && json_is_object(rv)) {
            int rc = twin_diff(&x, dv, rv);
            if (rc != 0)
                goto fail;
            if (!x)
                continue;
        } else if (rv && json_equal(dv, rv)) {
            continue;
        } else if (!(x = json_deep_copy(dv))) {
            goto fail;
        }
        if (!*out && !(*out = json_object())) {
            json_decref(x);
            goto fail;
        }
        if (json_object_set_new(*out, k, x) != 0) /* x is released either way */
            goto fail;
    }
    return 0;
fail:
    json_decref(*out);
    *out = NULL;
    return CIOT_ENOMEM;
}

int ciot_shadow_read(char *buf, size_t cap, size_t *out_len, ciot_shadow *s, int section)
{
    if (!s || (!buf && cap) || section < CIOT_SHADOW_DESIRED || section > CIOT_SHADOW_DIFF)
        return CIOT_EINVAL;
    pthread_mutex_lock(&s->lock);
    json_t *owned = NULL, *j = NULL;
    int rc = 0;
    if (s->az) {
        json_t *d = ciot__twin_section(s->twin, CIOT__TWIN_DESIRED);
        json_t *r = ciot__twin_section(s->twin, CIOT__TWIN_REPORTED);
        if (!s->twin_known)
            rc = CIOT_ENOTFOUND;
        else if (section == CIOT_SHADOW_DESIRED)
            j = d;
        else if (section == CIOT_SHADOW_REPORTED)
            j = r;
        else
            rc = twin_diff(&owned, d, r);
        j = owned ? owned : j;
    } else if (section == CIOT_SHADOW_DESIRED)
        j = ciot__shadow_desired(s->doc);
    else if (section == CIOT_SHADOW_REPORTED)
        j = ciot__shadow_reported(s->doc);
    else if ((rc = ciot__shadow_delta(&owned, s->doc)) == 0)
        j = owned;
    if (rc == 0 && !j)
        rc = CIOT_ENOTFOUND;
    if (rc == 0) {
        size_t need = json_dumpb(j, NULL, 0, JSON_COMPACT);
        if (need == 0) {
            rc = CIOT_ENOMEM;
        } else {
            if (out_len)
                *out_len = need;
            if (need >= cap) {
                rc = CIOT_ENOSPC;
                if (cap)
                    buf[0] = '\0';
            } else {
                json_dumpb(j, buf, cap, JSON_COMPACT);
                buf[need] = '\0';
            }
        }
    }
    json_decref(owned);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

uint64_t ciot_shadow_version(ciot_shadow *s)
{
    if (!s)
        return 0;
    pthread_mutex_lock(&s->lock);
    uint64_t v = s->az ? (s->twin_known ? ciot__twin_version(s->twin, CIOT__TWIN_DESIRED) : 0)
             : ciot__shadow_exists(s->doc) ? ciot__shadow_version(s->doc) : 0;
    pthread_mutex_unlock(&s->lock);
    return v;
}

size_t ciot_shadow_pending(ciot_shadow *s)
{
    if (!s)
        return 0;
    pthread_mutex_lock(&s->lock);
    size_t n = 0;
    for (struct req *q = s->reqs; q; q = q->next)
        n += !q->internal;
    pthread_mutex_unlock(&s->lock);
    return n;
}

int ciot_shadow_result_request(const ciot_shadow_result *r)
{
    return r ? r->request : 0;
}

int ciot_shadow_result_outcome(const ciot_shadow_result *r)
{
    return r ? r->outcome : 0;
}

int ciot_shadow_result_error(const ciot_shadow_result *r)
{
    return r ? r->error : 0;
}

int ciot_shadow_result_code(const ciot_shadow_result *r)
{
    return r ? r->code : 0;
}

const char *ciot_shadow_result_message(const ciot_shadow_result *r)
{
    return r ? r->message : "";
}

const char *ciot_shadow_result_document(const ciot_shadow_result *r, size_t *len)
{
    if (len)
        *len = r && r->doc ? r->doc_len : 0;
    return r ? r->doc : NULL;
}

const char *ciot_shadow_result_token(const ciot_shadow_result *r, size_t *len)
{
    if (len)
        *len = r ? r->token_len : 0;
    return r ? r->token : NULL;
}

uint64_t ciot_shadow_result_id(const ciot_shadow_result *r)
{
    return r ? r->id : 0;
}

uint64_t ciot_shadow_result_version(const ciot_shadow_result *r)
{
    return r ? r->version : 0;
}
