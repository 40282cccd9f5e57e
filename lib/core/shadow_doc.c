/*
 * The AWS Device Shadow document engine (protocols.md §2.2–§2.6).
 *
 * One shadow is two jansson objects (desired, reported; NULL when the
 * section is absent) and two metadata objects of the same shape whose
 * leaves are {"timestamp":T}. An update works on deep copies of all four
 * and on the request tree, builds every response string, and only then
 * swaps the copies in: a rejection or an allocation failure leaves the
 * shadow exactly as it was.
 *
 * Output goes through the library's own JSON writer (compact, shortest
 * round-trip doubles, keys in insertion order), measured first and then
 * written into one ciot__malloc'd buffer.
 */
#include "core/shadow_doc.h"

#include <cloudiot/error.h>
#include <cloudiot/json.h>

#include "core/json_load.h"
#include "internal.h"

#include <math.h>
#include <string.h>

/* ==========================================================================
 * Rules whose provenance is [REF] or [LIB] (protocols.md §0: kept in one
 * place so they can be changed if the live service is shown to differ).
 * [DOC]/[SPEC] rules are plain code below. Set a flag to 0 to drop a rule.
 * ========================================================================== */

/* [REF] §2.3.6 (S5 JsonUtil.isNullOrMissing): an update value of {} acts
 * like null: it deletes the key; a section value {} removes the section. */
#define RULE_EMPTY_OBJECT_IS_NULL 1
/* [REF] §2.2 + E6: the metadata of an array is an array of per-element
 * metadata. (The 2023 developer guide's example document shows a single
 * {"timestamp"} for an array; the reference and E6 say per element.) */
#define RULE_ARRAY_META_PER_ELEMENT 1
/* [REF] §2.3.4: an object inserted where the key is absent is copied with
 * its nulls removed; sub-objects left empty by that vanish. */
#define RULE_INSERT_DROPS_NULLS 1
/* [LIB] §2.3.4: the same when an object replaces a scalar or an array (the
 * reference stores the nulls there; a stored null has no meaning). When
 * nothing is left, the key is removed. */
#define RULE_TYPE_CHANGE_DROPS_NULLS 1
/* [REF] §2.3.5: a section left with no keys is removed. (Nested objects
 * emptied by deletions are kept as {} — also [REF], no flag: the merge
 * simply never removes them.) */
#define RULE_DROP_EMPTY_SECTION 1
/* [REF] §2.5: a request `version` for a shadow that does not exist must be
 * this value, else 400 "Invalid version". */
#define RULE_FIRST_VERSION 1
/* [REF] §2.4: numbers compare numerically in the delta (1 == 1.0). Arrays
 * still compare by JSON equality, as in the reference. */
#define RULE_NUMERIC_DELTA 1
/* [LIB] §2.4: desired objects with no leaves ({}) never appear in a delta
 * (the reference emits null for them when reported has the key). */
#define RULE_DELTA_PRUNES_EMPTY 1
/* [REF] §2.4: /update/delta is produced after any accepted update whose
 * resulting delta is non-empty, also when only `reported` changed. */
#define RULE_DELTA_AFTER_ANY_UPDATE 1
/* [REF] §2.6: /update/documents has no `previous` when the update created
 * the shadow (also [LIB]: when it re-created a deleted one). */
#define RULE_DOCUMENTS_PREVIOUS_ON_CREATE 0
/* [LIB] check→message mapping of §2.2: a payload that is JSON but not an
 * object, and a null inside an array, get 400 "Invalid JSON"; invalid
 * UTF-8 gets 415; a request over CIOT__SHADOW_MAX_REQUEST bytes gets 413
 * before parsing. A clientToken that is itself valid is echoed in every
 * rejection of the request that carries it. */
#define RULE_NULL_IN_ARRAY_REJECTED 1
/* [LIB] §2.2: /get and /delete ignore payload content they cannot read (a
 * /delete payload is documented as ignored), but a clientToken that is
 * present and not a string of at most 64 bytes gets 400. */
#define RULE_GET_DELETE_CHECK_TOKEN 1
/* [LIB] §2.3.7: the size is that of the compact serialization of
 * {"desired":…,"reported":…} as this engine writes it. */

/* [DOC] S2 status codes and message texts, §2.5. */
enum shadow_err {
    E_MISSING_PAYLOAD, /* [REF] text */
    E_INVALID_JSON,
    E_MISSING_STATE,
    E_STATE_NOT_OBJECT,
    E_DESIRED_NOT_OBJECT,
    E_REPORTED_NOT_OBJECT,
    E_INVALID_VERSION,
    E_INVALID_TOKEN,
    E_TOO_DEEP,
    E_INVALID_NODE,
    E_NOT_FOUND, /* message gets the shadow name appended */
    E_CONFLICT,
    E_TOO_LARGE,
    E_ENCODING,
};

static const struct {
    int code;
    const char *msg;
} shadow_errors[] = {
    [E_MISSING_PAYLOAD] = {400, "Missing update payload"},
    [E_INVALID_JSON] = {400, "Invalid JSON"},
    [E_MISSING_STATE] = {400, "Missing required node: state"},
    [E_STATE_NOT_OBJECT] = {400, "State node must be an object"},
    [E_DESIRED_NOT_OBJECT] = {400, "Desired node must be an object"},
    [E_REPORTED_NOT_OBJECT] = {400, "Reported node must be an object"},
    [E_INVALID_VERSION] = {400, "Invalid version"},
    [E_INVALID_TOKEN] = {400, "Invalid clientToken"},
    [E_TOO_DEEP] = {400, "JSON contains too many levels of nesting; maximum is 6"},
    [E_INVALID_NODE] = {400, "State contains an invalid node"},
    [E_NOT_FOUND] = {404, "No shadow exists with name: "},
    [E_CONFLICT] = {409, "Version conflict"},
    [E_TOO_LARGE] = {413, "The payload exceeds the maximum size allowed"},
    [E_ENCODING] = {415, "Unsupported documented encoding; supported encoding is UTF-8"},
};

/* ========================================================================== */

struct ciot__shadow {
    char name[CIOT__SHADOW_MAX_NAME + 1];
    size_t name_len;
    json_t *desired;  /* object with >= 1 key, or NULL */
    json_t *reported; /* object with >= 1 key, or NULL */
    json_t *meta_desired;
    json_t *meta_reported;
    uint64_t version;   /* of the current shadow, or of the deleted one */
    int64_t timestamp;  /* last accepted update */
    int64_t deleted_at; /* when !exists and version > 0 */
    bool exists;
};

/* jansson reports allocation failure as -1 / NULL everywhere. */
#define TRY(expr)                  \
    do {                           \
        if ((expr) != 0)           \
            goto fail;             \
    } while (0)
#define TRYP(var, expr)            \
    do {                           \
        if (!((var) = (expr)))     \
            goto fail;             \
    } while (0)

/* ---- small helpers -------------------------------------------------------- */

static bool is_missing(json_t *v)
{
    if (!v || json_is_null(v))
        return true;
    return RULE_EMPTY_OBJECT_IS_NULL && json_is_object(v) && json_object_size(v) == 0;
}

static json_t *meta_leaf(int64_t now)
{
    json_t *o = json_object();
    if (o && json_object_set_new(o, "timestamp", json_integer(now)) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Metadata of a value: leaves (null included) become {"timestamp":now},
 * arrays arrays of element metadata, objects objects of member metadata. */
static json_t *meta_of(json_t *v, int64_t now)
{
    json_t *r = NULL;
    if (json_is_object(v)) {
        const char *k;
        json_t *c;
        TRYP(r, json_object());
        json_object_foreach (v, k, c) {
            json_t *m;
            TRYP(m, meta_of(c, now));
            TRY(json_object_set_new(r, k, m));
        }
        return r;
    }
    if (RULE_ARRAY_META_PER_ELEMENT && json_is_array(v)) {
        size_t i;
        json_t *c;
        TRYP(r, json_array());
        json_array_foreach (v, i, c) {
            json_t *m;
            TRYP(m, meta_of(c, now));
            TRY(json_array_append_new(r, m));
        }
        return r;
    }
    return meta_leaf(now);
fail:
    json_decref(r);
    return NULL;
}

/* Levels of containers, §2.3.8: @p v at @p level (desired/reported = 1);
 * a non-empty object or array deeper than the limit fails. */
static bool depth_ok(json_t *v, int level)
{
    if (json_is_object(v)) {
        if (json_object_size(v) == 0)
            return true;
        if (level > CIOT__SHADOW_MAX_DEPTH)
            return false;
        const char *k;
        json_t *c;
        json_object_foreach (v, k, c)
            if (!depth_ok(c, level + 1))
                return false;
    } else if (json_is_array(v)) {
        if (json_array_size(v) == 0)
            return true;
        if (level > CIOT__SHADOW_MAX_DEPTH)
            return false;
        size_t i;
        json_t *c;
        json_array_foreach (v, i, c)
            if (!depth_ok(c, level + 1))
                return false;
    }
    return true;
}

/* True when a null sits anywhere inside an array below @p v. */
static bool null_in_array(json_t *v, bool in_array)
{
    if (json_is_null(v))
        return in_array;
    if (json_is_object(v)) {
        const char *k;
        json_t *c;
        json_object_foreach (v, k, c)
            if (null_in_array(c, in_array))
                return true;
    } else if (json_is_array(v)) {
        size_t i;
        json_t *c;
        json_array_foreach (v, i, c)
            if (null_in_array(c, true))
                return true;
    }
    return false;
}

/* ---- serialization through the library's JSON writer ----------------------- */

static int put(ciot_json_writer *w, json_t *v)
{
    int rc;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *c;
        if ((rc = ciot_json_begin_object(w)) != 0)
            return rc;
        json_object_foreach (v, k, c) {
            if ((rc = ciot_json_key(w, k, strlen(k))) != 0 || (rc = put(w, c)) != 0)
                return rc;
        }
        return ciot_json_end_object(w);
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *c;
        if ((rc = ciot_json_begin_array(w)) != 0)
            return rc;
        json_array_foreach (v, i, c)
            if ((rc = put(w, c)) != 0)
                return rc;
        return ciot_json_end_array(w);
    }
    case JSON_STRING:
        return ciot_json_string(w, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        return ciot_json_int(w, (int64_t)json_integer_value(v));
    case JSON_REAL:
        return ciot_json_double(w, json_real_value(v));
    case JSON_TRUE:
        return ciot_json_bool(w, true);
    case JSON_FALSE:
        return ciot_json_bool(w, false);
    case JSON_NULL:
    default:
        return ciot_json_null(w);
    }
}

/* Length of the compact text of @p v, or a negative error. */
static int measure(size_t *len, json_t *v)
{
    ciot_json_writer w;
    int rc = ciot_json_writer_init(&w, NULL, 0);
    if (rc == 0)
        rc = put(&w, v);
    if (rc == 0)
        rc = ciot_json_writer_finish(&w, len);
    return rc == CIOT_ENOSPC || rc == 0 ? 0 : rc;
}

static int dump(char **out, size_t *out_len, json_t *v)
{
    size_t len = 0;
    int rc = measure(&len, v);
    if (rc)
        return rc;
    char *buf = ciot__malloc(len + 1);
    if (!buf)
        return CIOT_ENOMEM;
    ciot_json_writer w;
    rc = ciot_json_writer_init(&w, buf, len + 1);
    if (rc == 0)
        rc = put(&w, v);
    if (rc == 0)
        rc = ciot_json_writer_finish(&w, &len);
    if (rc) {
        ciot__free(buf);
        return rc;
    }
    *out = buf;
    if (out_len)
        *out_len = len;
    return 0;
}

/* ---- merge (§2.3) ------------------------------------------------------- */

/* A copy of object @p p without nulls; sub-objects emptied by removed nulls
 * vanish. *out = NULL when nothing is left because of them. */
static int strip_nulls(json_t **out, json_t *p)
{
    json_t *r = json_object();
    bool dropped = false;
    const char *k;
    json_t *c;
    if (!r)
        return CIOT_ENOMEM;
    json_object_foreach (p, k, c) {
        json_t *n;
        if (is_missing(c)) {
            dropped = true;
            continue;
        }
        if (json_is_object(c)) {
            if (strip_nulls(&n, c) != 0)
                goto fail;
            if (!n) {
                dropped = true;
                continue;
            }
        } else if (!(n = json_deep_copy(c))) {
            goto fail;
        }
        TRY(json_object_set_new(r, k, n));
    }
    if (dropped && json_object_size(r) == 0) {
        json_decref(r);
        r = NULL;
    }
    *out = r;
    return 0;
fail:
    json_decref(r);
    return CIOT_ENOMEM;
}

/* Merges patch object @p p into section object @p s and its metadata @p m. */
static int merge(json_t *s, json_t *m, json_t *p, int64_t now)
{
    const char *k;
    json_t *pv;
    json_object_foreach (p, k, pv) {
        json_t *sv = json_object_get(s, k);
        json_t *nv, *nm;
        if (is_missing(pv)) { /* [DOC] null deletes; no error when absent */
            json_object_del(s, k);
            json_object_del(m, k);
            continue;
        }
        if (json_is_object(sv) && json_is_object(pv)) { /* [DOC] recurse */
            json_t *mv = json_object_get(m, k);
            if (!json_is_object(mv)) {
                TRYP(mv, json_object());
                TRY(json_object_set_new(m, k, mv));
            }
            if (merge(sv, mv, pv, now) != 0)
                goto fail;
            continue;
        }
        if (json_is_object(pv) && (sv ? RULE_TYPE_CHANGE_DROPS_NULLS : RULE_INSERT_DROPS_NULLS)) {
            if (strip_nulls(&nv, pv) != 0)
                goto fail;
            if (!nv) {
                json_object_del(s, k);
                json_object_del(m, k);
                continue;
            }
        } else {
            TRYP(nv, json_deep_copy(pv)); /* [DOC] scalars, arrays: replace whole */
        }
        nm = meta_of(nv, now);
        if (!nm) {
            json_decref(nv);
            goto fail;
        }
        if (json_object_set_new(s, k, nv) != 0) {
            json_decref(nm);
            goto fail;
        }
        TRY(json_object_set_new(m, k, nm));
    }
    return 0;
fail:
    return CIOT_ENOMEM;
}

/* Applies a section value of the request to *sec / *meta (copies owned by
 * the caller). */
static int merge_section(json_t **sec, json_t **meta, json_t *p, int64_t now)
{
    if (is_missing(p)) { /* [DOC] null removes the section; {} per RULE_EMPTY_OBJECT_IS_NULL */
        json_decref(*sec);
        json_decref(*meta);
        *sec = *meta = NULL;
        return 0;
    }
    if (!*sec) {
        if (!(*sec = json_object()))
            return CIOT_ENOMEM;
    }
    if (!*meta) {
        if (!(*meta = json_object()))
            return CIOT_ENOMEM;
    }
    if (merge(*sec, *meta, p, now) != 0)
        return CIOT_ENOMEM;
    if (RULE_DROP_EMPTY_SECTION && json_object_size(*sec) == 0) {
        json_decref(*sec);
        json_decref(*meta);
        *sec = *meta = NULL;
    }
    return 0;
}

/* ---- delta (§2.4) ------------------------------------------------------- */

static bool leaf_equal(json_t *r, json_t *d)
{
    if (RULE_NUMERIC_DELTA && json_is_number(r) && json_is_number(d)) {
        if (json_is_integer(r) && json_is_integer(d))
            return json_integer_value(r) == json_integer_value(d);
        return json_number_value(r) == json_number_value(d);
    }
    return json_equal(r, d) != 0;
}

/* D(r, d) for desired object @p d; @p r is anything (NULL: absent).
 * *out = NULL when there is no difference. */
static int delta_obj(json_t **out, json_t *r, json_t *d)
{
    json_t *res = NULL;
    const char *k;
    json_t *dv;
    if (!json_is_object(r))
        r = NULL;
    json_object_foreach (d, k, dv) {
        json_t *rv = r ? json_object_get(r, k) : NULL;
        json_t *x;
        if (json_is_object(dv)) {
            if (delta_obj(&x, rv, dv) != 0)
                goto fail;
            if (!x)
                continue;
            if (!RULE_DELTA_PRUNES_EMPTY && json_object_size(dv) == 0 && rv)
                continue;
        } else if (rv && leaf_equal(rv, dv)) {
            continue;
        } else {
            TRYP(x, json_deep_copy(dv));
        }
        if (!res && !(res = json_object())) {
            json_decref(x);
            goto fail;
        }
        TRY(json_object_set_new(res, k, x));
    }
    *out = res;
    return 0;
fail:
    json_decref(res);
    return CIOT_ENOMEM;
}

static int compute_delta(json_t **out, json_t *desired, json_t *reported)
{
    *out = NULL;
    if (!desired) /* [DOC] no desired, no delta */
        return 0;
    return delta_obj(out, reported, desired);
}

/* The desired metadata restricted to the paths of @p delta. */
static json_t *restrict_meta(json_t *meta, json_t *delta)
{
    json_t *r = json_object();
    const char *k;
    json_t *dv;
    if (!r)
        return NULL;
    json_object_foreach (delta, k, dv) {
        json_t *mv = json_object_get(meta, k);
        json_t *x;
        if (!mv)
            continue;
        if (json_is_object(dv) && json_is_object(mv)) {
            TRYP(x, restrict_meta(mv, dv));
        } else {
            TRYP(x, json_deep_copy(mv));
        }
        TRY(json_object_set_new(r, k, x));
    }
    return r;
fail:
    json_decref(r);
    return NULL;
}

/* ---- documents ----------------------------------------------------------- */

static int set_opt(json_t *o, const char *k, json_t *v)
{
    return v ? json_object_set(o, k, v) : 0;
}

/* {"state":{desired?,reported?},"metadata":{…},"version":N} */
static json_t *state_doc(json_t *d, json_t *r, json_t *md, json_t *mr,
                         uint64_t version)
{
    json_t *doc = NULL, *st = NULL, *meta = NULL;
    TRYP(doc, json_object());
    TRYP(st, json_object());
    TRY(json_object_set_new(doc, "state", st));
    TRY(set_opt(st, "desired", d));
    TRY(set_opt(st, "reported", r));
    TRYP(meta, json_object());
    TRY(json_object_set_new(doc, "metadata", meta));
    TRY(set_opt(meta, "desired", md));
    TRY(set_opt(meta, "reported", mr));
    TRY(json_object_set_new(doc, "version", json_integer((json_int_t)version)));
    return doc;
fail:
    json_decref(doc);
    return NULL;
}

/* Appends "timestamp" and, when given, "clientToken" to @p doc. */
static int finish_doc(json_t *doc, int64_t now, json_t *token)
{
    if (json_object_set_new(doc, "timestamp", json_integer(now)) != 0)
        return -1;
    return token ? json_object_set(doc, "clientToken", token) : 0;
}

static int dump_into(char **out, size_t *out_len, json_t *doc)
{
    if (!doc)
        return CIOT_ENOMEM;
    int rc = dump(out, out_len, doc);
    json_decref(doc);
    return rc;
}

static int reject(ciot__shadow_result *out, const ciot__shadow *s, enum shadow_err e,
                  json_t *token, int64_t now)
{
    json_t *doc = json_object();
    int rc = CIOT_ENOMEM;
    if (!doc)
        return rc;
    TRY(json_object_set_new(doc, "code", json_integer(shadow_errors[e].code)));
    if (e == E_NOT_FOUND) {
        char msg[64 + CIOT__SHADOW_MAX_NAME];
        size_t n = strlen(shadow_errors[e].msg);
        memcpy(msg, shadow_errors[e].msg, n);
        memcpy(msg + n, s->name, s->name_len);
        TRY(json_object_set_new(doc, "message", json_stringn(msg, n + s->name_len)));
    } else {
        TRY(json_object_set_new(doc, "message", json_string(shadow_errors[e].msg)));
    }
    TRY(finish_doc(doc, now, token));
    rc = dump(&out->rejected, &out->rejected_len, doc);
    if (rc == 0)
        out->status = shadow_errors[e].code;
fail:
    json_decref(doc);
    return rc;
}

/* ---- public-ish functions -------------------------------------------------- */

void ciot__shadow_result_free(ciot__shadow_result *r)
{
    if (!r)
        return;
    ciot__free(r->accepted);
    ciot__free(r->delta);
    ciot__free(r->documents);
    ciot__free(r->rejected);
    memset(r, 0, sizeof *r);
}

static int set_name(ciot__shadow *s, const char *name, size_t len)
{
    if (!name || len == 0 || len > CIOT__SHADOW_MAX_NAME || memchr(name, 0, len))
        return CIOT_EINVAL;
    memcpy(s->name, name, len);
    s->name[len] = 0;
    s->name_len = len;
    return 0;
}

int ciot__shadow_new(ciot__shadow **out, const char *name, size_t name_len)
{
    if (!out)
        return CIOT_EINVAL;
    *out = NULL;
    ciot__shadow *s = ciot__calloc(1, sizeof *s);
    if (!s)
        return CIOT_ENOMEM;
    int rc = set_name(s, name, name_len);
    if (rc) {
        ciot__free(s);
        return rc;
    }
    *out = s;
    return 0;
}

static void clear_state(ciot__shadow *s)
{
    json_decref(s->desired);
    json_decref(s->reported);
    json_decref(s->meta_desired);
    json_decref(s->meta_reported);
    s->desired = s->reported = s->meta_desired = s->meta_reported = NULL;
}

void ciot__shadow_free(ciot__shadow *s)
{
    if (!s)
        return;
    clear_state(s);
    ciot__free(s);
}

bool ciot__shadow_exists(const ciot__shadow *s)
{
    return s && s->exists;
}

uint64_t ciot__shadow_version(const ciot__shadow *s)
{
    return s ? s->version : 0;
}

json_t *ciot__shadow_desired(const ciot__shadow *s)
{
    return s ? s->desired : NULL;
}

json_t *ciot__shadow_reported(const ciot__shadow *s)
{
    return s ? s->reported : NULL;
}

int ciot__shadow_delta(json_t **out, const ciot__shadow *s)
{
    if (!out || !s)
        return CIOT_EINVAL;
    return compute_delta(out, s->desired, s->reported);
}

/* Size of {"desired":…,"reported":…} (§2.3.7). */
static int state_size(size_t *len, json_t *d, json_t *r)
{
    json_t *st = json_object();
    int rc = CIOT_ENOMEM;
    if (!st)
        return rc;
    if (set_opt(st, "desired", d) == 0 && set_opt(st, "reported", r) == 0)
        rc = measure(len, st);
    json_decref(st);
    return rc;
}

/* Parses a request; *root = NULL with *err set when it is not usable. */
static int parse(json_t **root, enum shadow_err *err, const char *req, size_t len)
{
    enum json_error_code code;
    int rc = ciot__json_load(root, &code, req, len, 0);
    if (rc == CIOT_EINVAL) {
        *err = code == json_error_invalid_utf8 ? E_ENCODING : E_INVALID_JSON;
        return 0;
    }
    return rc;
}

/* The request's clientToken when it is a valid one, else NULL. */
static json_t *valid_token(json_t *root)
{
    json_t *t = json_object_get(root, "clientToken");
    if (json_is_string(t) && json_string_length(t) <= CIOT__SHADOW_MAX_TOKEN)
        return t;
    return NULL;
}

static bool version_value(json_t *v, uint64_t *out)
{
    if (json_is_integer(v)) {
        if (json_integer_value(v) < 0)
            return false;
        *out = (uint64_t)json_integer_value(v);
        return true;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!(d >= 0) || d != floor(d) || d >= 9007199254740992.0)
            return false;
        *out = (uint64_t)d;
        return true;
    }
    return false;
}

/* §2.2 schema checks, in the reference's order. */
static bool check_request(enum shadow_err *err, json_t *root, bool *has_version,
                          uint64_t *version)
{
    json_t *state = json_object_get(root, "state");
    if (!state) {
        *err = E_MISSING_STATE;
        return false;
    }
    if (!json_is_object(state) && !json_is_null(state)) {
        *err = E_STATE_NOT_OBJECT;
        return false;
    }
    if (json_is_object(state)) {
        json_t *d = json_object_get(state, "desired");
        json_t *r = json_object_get(state, "reported");
        if (d && !json_is_object(d) && !json_is_null(d)) {
            *err = E_DESIRED_NOT_OBJECT;
            return false;
        }
        if (r && !json_is_object(r) && !json_is_null(r)) {
            *err = E_REPORTED_NOT_OBJECT;
            return false;
        }
        const char *k;
        json_t *c;
        json_object_foreach (state, k, c) {
            if (strcmp(k, "desired") && strcmp(k, "reported") && strcmp(k, "delta")) {
                *err = E_INVALID_NODE;
                return false;
            }
        }
    }
    json_t *v = json_object_get(root, "version");
    *has_version = v != NULL;
    if (v && !version_value(v, version)) {
        *err = E_INVALID_VERSION;
        return false;
    }
    json_t *t = json_object_get(root, "clientToken");
    if (t && !valid_token(root)) {
        *err = E_INVALID_TOKEN;
        return false;
    }
    if (json_is_object(state)) {
        const char *sec[2] = {"desired", "reported"};
        for (int i = 0; i < 2; i++) {
            json_t *x = json_object_get(state, sec[i]);
            if (x && !depth_ok(x, 1)) {
                *err = E_TOO_DEEP;
                return false;
            }
        }
        for (int i = 0; i < 2; i++) {
            json_t *x = json_object_get(state, sec[i]);
            if (RULE_NULL_IN_ARRAY_REJECTED && x && null_in_array(x, false)) {
                *err = E_INVALID_JSON;
                return false;
            }
        }
    }
    return true;
}

/* The request state as echoed in /update/accepted: `delta` dropped. */
static json_t *echo_state(json_t *state)
{
    if (!json_is_object(state))
        return json_null();
    json_t *e = json_object();
    const char *k;
    json_t *c;
    if (!e)
        return NULL;
    json_object_foreach (state, k, c) {
        if (strcmp(k, "delta") == 0)
            continue;
        if (json_object_set(e, k, c) != 0) {
            json_decref(e);
            return NULL;
        }
    }
    return e;
}

int ciot__shadow_update(ciot__shadow_result *out, ciot__shadow *s, const char *req, size_t len,
                        int64_t now)
{
    if (!out)
        return CIOT_EINVAL;
    memset(out, 0, sizeof *out);
    if (!s || (!req && len))
        return CIOT_EINVAL;
    if (len == 0)
        return reject(out, s, E_MISSING_PAYLOAD, NULL, now);
    if (len > CIOT__SHADOW_MAX_REQUEST)
        return reject(out, s, E_TOO_LARGE, NULL, now);

    json_t *root = NULL, *nd = NULL, *nr = NULL, *nmd = NULL, *nmr = NULL;
    json_t *echo = NULL, *doc = NULL, *delta = NULL;
    enum shadow_err err = E_INVALID_JSON;
    int rc = parse(&root, &err, req, len);
    if (rc)
        return rc;
    if (!root)
        return reject(out, s, err, NULL, now);
    json_t *token = json_is_object(root) ? valid_token(root) : NULL;
    bool has_version = false;
    uint64_t version = 0;
    if (!json_is_object(root)) {
        rc = reject(out, s, E_INVALID_JSON, NULL, now);
        goto done;
    }
    if (!check_request(&err, root, &has_version, &version)) {
        rc = reject(out, s, err, token, now);
        goto done;
    }
    if (has_version) { /* [DOC] optimistic locking */
        if (!s->exists && version != RULE_FIRST_VERSION) {
            rc = reject(out, s, E_INVALID_VERSION, token, now);
            goto done;
        }
        if (s->exists && version != s->version) {
            rc = reject(out, s, E_CONFLICT, token, now);
            goto done;
        }
    }

    /* Merge into copies; a section the request does not touch is shared
     * (nothing below modifies it). */
    rc = CIOT_ENOMEM;
    json_t *state = json_object_get(root, "state");
    bool touch_d = !json_is_object(state) || json_object_get(state, "desired");
    bool touch_r = !json_is_object(state) || json_object_get(state, "reported");
    if (!touch_d) {
        nd = json_incref(s->desired);
        nmd = json_incref(s->meta_desired);
    } else if (s->desired &&
               (!(nd = json_deep_copy(s->desired)) || !(nmd = json_deep_copy(s->meta_desired)))) {
        goto done;
    }
    if (!touch_r) {
        nr = json_incref(s->reported);
        nmr = json_incref(s->meta_reported);
    } else if (s->reported &&
               (!(nr = json_deep_copy(s->reported)) || !(nmr = json_deep_copy(s->meta_reported)))) {
        goto done;
    }
    if (json_is_null(state)) { /* [REF] §2.3.1: clear both sections */
        json_decref(nd);
        json_decref(nr);
        json_decref(nmd);
        json_decref(nmr);
        nd = nr = nmd = nmr = NULL;
    } else {
        json_t *pd = json_object_get(state, "desired");
        json_t *pr = json_object_get(state, "reported");
        if (pd && merge_section(&nd, &nmd, pd, now) != 0)
            goto done;
        if (pr && merge_section(&nr, &nmr, pr, now) != 0)
            goto done;
    }
    size_t size = 0;
    if ((rc = state_size(&size, nd, nr)) != 0)
        goto done;
    if (size > CIOT__SHADOW_MAX_STATE_BYTES) { /* [DOC] 413, shadow unchanged */
        rc = reject(out, s, E_TOO_LARGE, token, now);
        goto done;
    }

    /* [DOC] a new shadow starts at 1; a re-created one continues within 48 h. */
    uint64_t nv = 1;
    if (s->exists ||
        (s->version > 0 && (now < s->deleted_at || (uint64_t)now - (uint64_t)s->deleted_at <
                                                       CIOT__SHADOW_RECREATE_WINDOW_S)))
        nv = s->version + 1; /* unsigned: no overflow for any pair of times */

    /* /update/accepted */
    rc = CIOT_ENOMEM;
    if (!(echo = echo_state(state)) || !(doc = json_object()))
        goto done;
    json_t *m = meta_of(echo, now);
    if (!m)
        goto done;
    if (json_object_set_new(doc, "state", json_incref(echo)) != 0) {
        json_decref(m); /* not yet owned by doc */
        goto done;
    }
    if (json_object_set_new(doc, "metadata", m) != 0 ||
        json_object_set_new(doc, "version", json_integer((json_int_t)nv)) != 0 ||
        finish_doc(doc, now, token) != 0)
        goto done;
    if ((rc = dump(&out->accepted, &out->accepted_len, doc)) != 0)
        goto done;
    json_decref(doc);
    doc = NULL;

    /* /update/delta */
    if ((rc = compute_delta(&delta, nd, nr)) != 0)
        goto done;
    if (delta && RULE_DELTA_AFTER_ANY_UPDATE) {
        rc = CIOT_ENOMEM;
        json_t *dm = restrict_meta(nmd, delta);
        if (!dm || !(doc = json_object())) {
            json_decref(dm);
            goto done;
        }
        if (json_object_set(doc, "state", delta) != 0) {
            json_decref(dm); /* not yet owned by doc */
            goto done;
        }
        if (json_object_set_new(doc, "metadata", dm) != 0 ||
            json_object_set_new(doc, "version", json_integer((json_int_t)nv)) != 0 ||
            finish_doc(doc, now, token) != 0)
            goto done;
        if ((rc = dump(&out->delta, &out->delta_len, doc)) != 0)
            goto done;
        json_decref(doc);
        doc = NULL;
    }

    /* /update/documents */
    rc = CIOT_ENOMEM;
    if (!(doc = json_object()))
        goto done;
    if (s->exists || RULE_DOCUMENTS_PREVIOUS_ON_CREATE) {
        json_t *prev = state_doc(s->desired, s->reported, s->meta_desired, s->meta_reported,
                                 s->exists ? s->version : 0);
        if (!prev || json_object_set_new(doc, "previous", prev) != 0)
            goto done;
    }
    json_t *cur = state_doc(nd, nr, nmd, nmr, nv);
    if (!cur || json_object_set_new(doc, "current", cur) != 0 || finish_doc(doc, now, token) != 0)
        goto done;
    if ((rc = dump(&out->documents, &out->documents_len, doc)) != 0)
        goto done;

    /* Commit. */
    clear_state(s);
    s->desired = nd;
    s->reported = nr;
    s->meta_desired = nmd;
    s->meta_reported = nmr;
    nd = nr = nmd = nmr = NULL;
    s->version = nv;
    s->timestamp = now;
    s->exists = true;
    s->deleted_at = 0;
    out->status = 200;
    rc = 0;
done:
    if (rc != 0)
        ciot__shadow_result_free(out);
    json_decref(root);
    json_decref(nd);
    json_decref(nr);
    json_decref(nmd);
    json_decref(nmr);
    json_decref(echo);
    json_decref(doc);
    json_decref(delta);
    return rc;
}

/* clientToken of a /get or /delete payload; false: reject with 400. */
static int small_request(json_t **root, json_t **token, bool *bad_token, const char *req,
                         size_t len)
{
    enum shadow_err ignored;
    *root = NULL;
    *token = NULL;
    *bad_token = false;
    if (len == 0 || len > CIOT__SHADOW_MAX_REQUEST)
        return 0;
    int rc = parse(root, &ignored, req, len);
    if (rc || !*root)
        return rc;
    if (json_is_object(*root)) {
        *token = valid_token(*root);
        *bad_token = RULE_GET_DELETE_CHECK_TOKEN && !*token &&
                     json_object_get(*root, "clientToken") != NULL;
    }
    return 0;
}

int ciot__shadow_get(ciot__shadow_result *out, ciot__shadow *s, const char *req, size_t len,
                     int64_t now)
{
    if (!out)
        return CIOT_EINVAL;
    memset(out, 0, sizeof *out);
    if (!s || (!req && len))
        return CIOT_EINVAL;
    json_t *root, *doc = NULL, *delta = NULL;
    json_t *token;
    bool bad;
    int rc = small_request(&root, &token, &bad, req, len);
    if (rc)
        return rc;
    if (bad) {
        rc = reject(out, s, E_INVALID_TOKEN, NULL, now);
        goto done;
    }
    if (!s->exists) {
        rc = reject(out, s, E_NOT_FOUND, token, now);
        goto done;
    }
    if ((rc = compute_delta(&delta, s->desired, s->reported)) != 0)
        goto done;
    rc = CIOT_ENOMEM;
    if (!(doc = state_doc(s->desired, s->reported, s->meta_desired, s->meta_reported, s->version)))
        goto done;
    /* [REF] GET has state.delta but no metadata.delta */
    if (set_opt(json_object_get(doc, "state"), "delta", delta) != 0 ||
        finish_doc(doc, now, token) != 0)
        goto done;
    if ((rc = dump(&out->accepted, &out->accepted_len, doc)) != 0)
        goto done;
    out->status = 200;
done:
    json_decref(root);
    json_decref(doc);
    json_decref(delta);
    return rc;
}

int ciot__shadow_delete(ciot__shadow_result *out, ciot__shadow *s, const char *req, size_t len,
                        int64_t now)
{
    if (!out)
        return CIOT_EINVAL;
    memset(out, 0, sizeof *out);
    if (!s || (!req && len))
        return CIOT_EINVAL;
    json_t *root, *doc = NULL;
    json_t *token;
    bool bad;
    int rc = small_request(&root, &token, &bad, req, len);
    if (rc)
        return rc;
    if (bad) {
        rc = reject(out, s, E_INVALID_TOKEN, NULL, now);
        goto done;
    }
    if (!s->exists) {
        rc = reject(out, s, E_NOT_FOUND, token, now);
        goto done;
    }
    rc = CIOT_ENOMEM;
    if (!(doc = json_object()) ||
        json_object_set_new(doc, "version", json_integer((json_int_t)s->version)) != 0 ||
        finish_doc(doc, now, token) != 0)
        goto done;
    if ((rc = dump(&out->accepted, &out->accepted_len, doc)) != 0)
        goto done;
    clear_state(s);
    s->exists = false;
    s->deleted_at = now;
    out->status = 200;
done:
    json_decref(root);
    json_decref(doc);
    return rc;
}

/* ---- persisted form --------------------------------------------------------- */

int ciot__shadow_save(char **out, size_t *out_len, const ciot__shadow *s)
{
    if (!out || !s)
        return CIOT_EINVAL;
    *out = NULL;
    json_t *doc = json_object(), *st = NULL, *meta = NULL;
    if (!doc)
        return CIOT_ENOMEM;
    TRY(json_object_set_new(doc, "format", json_integer(1)));
    TRY(json_object_set_new(doc, "exists", json_boolean(s->exists)));
    TRY(json_object_set_new(doc, "version", json_integer((json_int_t)s->version)));
    TRY(json_object_set_new(doc, "timestamp", json_integer(s->timestamp)));
    if (!s->exists && s->version > 0)
        TRY(json_object_set_new(doc, "deletedAt", json_integer(s->deleted_at)));
    TRYP(st, json_object());
    TRY(json_object_set_new(doc, "state", st));
    TRY(set_opt(st, "desired", s->desired));
    TRY(set_opt(st, "reported", s->reported));
    TRYP(meta, json_object());
    TRY(json_object_set_new(doc, "metadata", meta));
    TRY(set_opt(meta, "desired", s->meta_desired));
    TRY(set_opt(meta, "reported", s->meta_reported));
    return dump_into(out, out_len, doc);
fail:
    json_decref(doc);
    return CIOT_ENOMEM;
}

static bool is_meta_leaf(json_t *m)
{
    return json_is_object(m) && json_object_size(m) == 1 &&
           json_is_integer(json_object_get(m, "timestamp"));
}

/* Metadata @p m has exactly the shape of value @p v. */
static bool meta_matches(json_t *v, json_t *m)
{
    if (json_is_object(v)) {
        if (!json_is_object(m) || json_object_size(m) != json_object_size(v))
            return false;
        const char *k;
        json_t *c;
        json_object_foreach (v, k, c)
            if (!meta_matches(c, json_object_get(m, k)))
                return false;
        return true;
    }
    if (RULE_ARRAY_META_PER_ELEMENT && json_is_array(v)) {
        if (!json_is_array(m) || json_array_size(m) != json_array_size(v))
            return false;
        for (size_t i = 0; i < json_array_size(v); i++)
            if (!meta_matches(json_array_get(v, i), json_array_get(m, i)))
                return false;
        return true;
    }
    return is_meta_leaf(m);
}

static bool null_anywhere(json_t *v)
{
    if (json_is_null(v))
        return true;
    if (json_is_object(v)) {
        const char *k;
        json_t *c;
        json_object_foreach (v, k, c)
            if (null_anywhere(c))
                return true;
    } else if (json_is_array(v)) {
        size_t i;
        json_t *c;
        json_array_foreach (v, i, c)
            if (null_anywhere(c))
                return true;
    }
    return false;
}

static bool section_ok(json_t *sec, json_t *meta)
{
    if (!sec)
        return meta == NULL;
    return json_is_object(sec) && json_object_size(sec) > 0 && depth_ok(sec, 1) &&
           !null_anywhere(sec) && meta_matches(sec, meta);
}

static bool get_i64(json_t *o, const char *k, bool required, int64_t *out)
{
    json_t *v = json_object_get(o, k);
    if (!v)
        return !required;
    if (!json_is_integer(v))
        return false;
    *out = (int64_t)json_integer_value(v);
    return true;
}

int ciot__shadow_load(ciot__shadow **out, const char *name, size_t name_len, const char *json,
                      size_t len)
{
    if (!out)
        return CIOT_EINVAL;
    *out = NULL;
    if (!json && len)
        return CIOT_EINVAL;
    ciot__shadow *s;
    int rc = ciot__shadow_new(&s, name, name_len);
    if (rc)
        return rc;
    json_error_t je;
    json_t *doc = len ? json_loadb(json, len, JSON_REJECT_DUPLICATES, &je) : NULL;
    if (!doc) {
        rc = len && json_error_code(&je) == json_error_out_of_memory ? CIOT_ENOMEM : CIOT_ECORRUPT;
        goto fail;
    }
    rc = CIOT_ECORRUPT;
    int64_t format = 0, version = -1, ts = 0, deleted = 0;
    json_t *exists = json_object_get(doc, "exists");
    json_t *st = json_object_get(doc, "state");
    json_t *meta = json_object_get(doc, "metadata");
    if (!json_is_object(doc) || !get_i64(doc, "format", true, &format) || format != 1 ||
        !json_is_boolean(exists) || !get_i64(doc, "version", true, &version) || version < 0 ||
        !get_i64(doc, "timestamp", true, &ts) || !get_i64(doc, "deletedAt", false, &deleted) ||
        !json_is_object(st) || !json_is_object(meta))
        goto fail;
    json_t *d = json_object_get(st, "desired"), *r = json_object_get(st, "reported");
    json_t *md = json_object_get(meta, "desired"), *mr = json_object_get(meta, "reported");
    if (json_object_size(st) != (size_t)((d != NULL) + (r != NULL)) ||
        json_object_size(meta) != (size_t)((md != NULL) + (mr != NULL)) || !section_ok(d, md) ||
        !section_ok(r, mr))
        goto fail;
    bool ex = json_is_true(exists);
    if ((!ex && (d || r)) || (ex && version == 0))
        goto fail;
    size_t size = 0;
    if ((rc = state_size(&size, d, r)) != 0)
        goto fail;
    rc = CIOT_ECORRUPT;
    if (size > CIOT__SHADOW_MAX_STATE_BYTES)
        goto fail;
    s->exists = ex;
    s->version = (uint64_t)version;
    s->timestamp = ts;
    s->deleted_at = deleted;
    s->desired = json_incref(d);
    s->reported = json_incref(r);
    s->meta_desired = json_incref(md);
    s->meta_reported = json_incref(mr);
    json_decref(doc);
    *out = s;
    return 0;
fail:
    json_decref(doc);
    ciot__shadow_free(s);
    return rc;
}

/* ---- device side ---------------------------------------------------------------- */

int ciot__shadow_apply(ciot__shadow *s, int kind, const char *doc, size_t len, bool *applied,
                       bool *gap)
{
    if (applied)
        *applied = false;
    if (gap)
        *gap = false;
    if (!s || (!doc && len) || kind < CIOT__SHADOW_DOC_GET || kind > CIOT__SHADOW_DOC_DELTA)
        return CIOT_EINVAL;
    if (len == 0 || len > CIOT__SHADOW_MAX_REQUEST)
        return CIOT_EPROTOCOL;
    json_error_t je;
    json_t *root = json_loadb(doc, len, 0, &je);
    if (!root)
        return json_error_code(&je) == json_error_out_of_memory ? CIOT_ENOMEM : CIOT_EPROTOCOL;
    json_t *nd = NULL, *nr = NULL, *nmd = NULL, *nmr = NULL;
    int rc = CIOT_EPROTOCOL;
    int64_t ts = 0;
    json_t *state = json_object_get(root, "state");
    json_t *v = json_object_get(root, "version");
    if (!json_is_object(root) || !json_is_integer(v) || json_integer_value(v) < 1 ||
        !get_i64(root, "timestamp", kind != CIOT__SHADOW_DOC_GET, &ts))
        goto done;
    uint64_t version = (uint64_t)json_integer_value(v);
    bool newer = !s->exists || version > s->version;
    if (kind == CIOT__SHADOW_DOC_GET ? (s->exists && version < s->version) : !newer) {
        rc = 0; /* stale: ignored */
        goto done;
    }
    if (kind == CIOT__SHADOW_DOC_GET) {
        json_t *meta = json_object_get(root, "metadata");
        if (!json_is_object(state) || (meta && !json_is_object(meta)))
            goto done;
        json_t *d = json_object_get(state, "desired"), *r = json_object_get(state, "reported");
        json_t *md = json_object_get(meta, "desired"), *mr = json_object_get(meta, "reported");
        if (!section_ok(d, md) || !section_ok(r, mr))
            goto done;
        nd = json_incref(d);
        nr = json_incref(r);
        nmd = json_incref(md);
        nmr = json_incref(mr);
    } else {
        rc = CIOT_ENOMEM;
        if (s->desired && (!(nd = json_deep_copy(s->desired)) || !(nmd = json_deep_copy(s->meta_desired))))
            goto done;
        if (s->reported &&
            (!(nr = json_deep_copy(s->reported)) || !(nmr = json_deep_copy(s->meta_reported))))
            goto done;
        rc = CIOT_EPROTOCOL;
        if (kind == CIOT__SHADOW_DOC_DELTA) {
            if (!json_is_object(state) || json_object_size(state) == 0 || !depth_ok(state, 1) ||
                null_in_array(state, false))
                goto done;
            rc = CIOT_ENOMEM;
            if (merge_section(&nd, &nmd, state, ts) != 0)
                goto done;
        } else if (json_is_null(state)) {
            json_decref(nd);
            json_decref(nr);
            json_decref(nmd);
            json_decref(nmr);
            nd = nr = nmd = nmr = NULL;
        } else {
            enum shadow_err err;
            bool hv;
            uint64_t ignored;
            json_t *req = json_pack("{sO}", "state", state);
            if (!req) {
                rc = state ? CIOT_ENOMEM : CIOT_EPROTOCOL;
                goto done;
            }
            bool ok = check_request(&err, req, &hv, &ignored);
            json_decref(req);
            if (!ok)
                goto done;
            rc = CIOT_ENOMEM;
            json_t *pd = json_object_get(state, "desired"), *pr = json_object_get(state, "reported");
            if (pd && merge_section(&nd, &nmd, pd, ts) != 0)
                goto done;
            if (pr && merge_section(&nr, &nmr, pr, ts) != 0)
                goto done;
        }
    }
    size_t size = 0;
    if ((rc = state_size(&size, nd, nr)) != 0)
        goto done;
    if (size > CIOT__SHADOW_MAX_STATE_BYTES) {
        rc = CIOT_EPROTOCOL;
        goto done;
    }
    if (gap && kind != CIOT__SHADOW_DOC_GET)
        *gap = !s->exists || version != s->version + 1;
    clear_state(s);
    s->desired = nd;
    s->reported = nr;
    s->meta_desired = nmd;
    s->meta_reported = nmr;
    nd = nr = nmd = nmr = NULL;
    s->version = version;
    if (ts)
        s->timestamp = ts;
    s->exists = true;
    s->deleted_at = 0;
    if (applied)
        *applied = true;
    rc = 0;
done:
    json_decref(root);
    json_decref(nd);
    json_decref(nr);
    json_decref(nmd);
    json_decref(nmr);
    return rc;
}
