/*
 * The Azure IoT Hub device twin document engine (protocols.md §4.6–§4.7).
 *
 * A twin is two jansson objects (desired, reported) that never hold a null,
 * and their $version counters. A patch is parsed and checked, merged into a
 * deep copy of its section, measured, and only then swapped in: a rejection
 * or an allocation failure leaves the twin as it was.
 *
 * Rules and their provenance ([DOC] Microsoft documentation S8/S10 as cited
 * in protocols.md; [LIB] this library's reading where the documentation is
 * silent):
 *  - keys: UTF-8, 1..1024 bytes, no C0/C1 control character, no '.', '$'
 *    or space [DOC]; the empty key and DEL (U+007F) are refused too [LIB];
 *  - values: bool, number, string of at most 4096 bytes, object, array
 *    [DOC]; integers in [-4503599627370496, 4503599627370495] [DOC];
 *    null only as an object member of a patch (it removes the member) [DOC],
 *    never inside an array [LIB];
 *  - depth: at most 10 levels of objects/arrays below the section [DOC]
 *    (the documentation's example nests ten objects below `tags`); arrays
 *    count as levels [LIB];
 *  - size of a section: sum over members of the key's length and the
 *    value's, strings counted in characters without C0/C1 controls, numbers
 *    8, booleans 4, objects and arrays the sum of their contents [DOC]
 *    (arrays: [LIB]); at most 32 KB (32768) [DOC], else 413;
 *  - a patch payload above 128 KB is refused with 413 before parsing, a
 *    duplicate key with 400 [LIB];
 *  - every accepted patch bumps the section's $version by one, also when
 *    nothing changed; a new twin starts at 1 for both sections [LIB, as the
 *    hub shows new identities];
 *  - an object patched onto an absent member or a non-object creates an
 *    object and merges into it, so nulls inside it vanish and an object left
 *    with no members stays as {} [LIB].
 */
#include "core/twin_doc.h"

#include <cloudiot/error.h>
#include <cloudiot/json.h>

#include "core/json_load.h"
#include "internal.h"

#include <string.h>

struct ciot__twin {
    json_t *sec[2];      /* objects, never NULL, no null inside */
    uint64_t version[2]; /* >= 1 for a twin of the service */
};

static const char MSG_BAD_JSON[] = "malformed JSON";
static const char MSG_NOT_OBJECT[] = "the patch must be a JSON object";
static const char MSG_BAD_KEY[] =
    "invalid property name: 1 to 1024 bytes, no control character, '.', '$' or space";
static const char MSG_STRING[] = "string value longer than 4096 bytes";
static const char MSG_INT[] = "integer out of range [-4503599627370496, 4503599627370495]";
static const char MSG_NULL_IN_ARRAY[] = "null is not allowed in an array";
static const char MSG_DEPTH[] = "nesting deeper than 10 levels";
static const char MSG_SIZE[] = "properties exceed the 32 KB limit";
static const char MSG_PAYLOAD[] = "payload larger than 128 KB";

/* ---- rules --------------------------------------------------------------- */

/* True for U+0000–U+001F, U+007F and U+0080–U+009F (as UTF-8 at p). */
static size_t control_len(const unsigned char *p, size_t avail)
{
    if (p[0] < 0x20 || p[0] == 0x7f)
        return 1;
    if (p[0] == 0xc2 && avail >= 2 && p[1] >= 0x80 && p[1] <= 0x9f)
        return 2;
    return 0;
}

static bool key_ok(const char *k, size_t len)
{
    if (len == 0 || len > CIOT__TWIN_MAX_KEY)
        return false;
    const unsigned char *p = (const unsigned char *)k;
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '.' || p[i] == '$' || p[i] == ' ' || control_len(p + i, len - i))
            return false;
    }
    return true;
}

/* Characters of a (valid UTF-8) string, C0/C1 controls not counted. */
static size_t text_size(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        size_t c = control_len(p + i, len - i);
        if (c) {
            i += c;
            continue;
        }
        /* count lead bytes only */
        if ((p[i] & 0xc0) != 0x80)
            n++;
        i++;
    }
    return n;
}

/* Checks value @p v found at container level @p level (the section's own
 * members are at level 1 when they are containers); @p in_array: somewhere
 * below an array, where a null would be stored, not applied. *msg is set on
 * failure. */
static bool value_ok(json_t *v, int level, bool in_array, bool allow_null, const char **msg)
{
    switch (json_typeof(v)) {
    case JSON_NULL:
        if (in_array) {
            *msg = MSG_NULL_IN_ARRAY;
            return false;
        }
        if (!allow_null) {
            *msg = MSG_BAD_JSON;
            return false;
        }
        return true;
    case JSON_STRING:
        if (json_string_length(v) > CIOT__TWIN_MAX_STRING) {
            *msg = MSG_STRING;
            return false;
        }
        return true;
    case JSON_INTEGER: {
        json_int_t i = json_integer_value(v);
        if (i < CIOT__TWIN_MIN_INT || i > CIOT__TWIN_MAX_INT) {
            *msg = MSG_INT;
            return false;
        }
        return true;
    }
    case JSON_OBJECT: {
        if (level > CIOT__TWIN_MAX_DEPTH) {
            *msg = MSG_DEPTH;
            return false;
        }
        const char *k;
        size_t klen;
        json_t *c;
        void *tmp;
        json_object_keylen_foreach_safe (v, tmp, k, klen, c) {
            if (!key_ok(k, klen)) {
                *msg = MSG_BAD_KEY;
                return false;
            }
            if (!value_ok(c, level + 1, in_array, allow_null, msg))
                return false;
        }
        return true;
    }
    case JSON_ARRAY: {
        if (level > CIOT__TWIN_MAX_DEPTH) {
            *msg = MSG_DEPTH;
            return false;
        }
        size_t i;
        json_t *c;
        json_array_foreach (v, i, c)
            if (!value_ok(c, level + 1, true, allow_null, msg))
                return false;
        return true;
    }
    default: /* real, true, false */
        return true;
    }
}

/* The members of @p obj (a section or a patch: level 0). */
static bool section_ok(json_t *obj, bool allow_null, const char **msg)
{
    return value_ok(obj, 0, false, allow_null, msg);
}

static size_t value_size(json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        return text_size(json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
    case JSON_REAL:
        return 8;
    case JSON_TRUE:
    case JSON_FALSE:
        return 4;
    case JSON_OBJECT: {
        size_t n = 0, klen;
        const char *k;
        json_t *c;
        void *tmp;
        json_object_keylen_foreach_safe (v, tmp, k, klen, c)
            n += text_size(k, klen) + value_size(c);
        return n;
    }
    case JSON_ARRAY: {
        size_t n = 0, i;
        json_t *c;
        json_array_foreach (v, i, c)
            n += value_size(c);
        return n;
    }
    default:
        return 0;
    }
}

/* ---- parsing ------------------------------------------------------------ */

/* 0, CIOT_ENOMEM or CIOT_EINVAL (not JSON, or JSON jansson refuses:
 * duplicate key, NUL, number overflow). */
static int parse(json_t **out, const char *p, size_t len)
{
    return ciot__json_load(out, NULL, p, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY);
}

/* ---- merge -------------------------------------------------------------- */

static int merge(json_t *dst, json_t *patch)
{
    const char *k;
    json_t *pv;
    json_object_foreach (patch, k, pv) {
        if (json_is_null(pv)) {
            json_object_del(dst, k); /* absent: nothing to do */
            continue;
        }
        if (json_is_object(pv)) {
            json_t *cur = json_object_get(dst, k);
            if (!json_is_object(cur)) {
                if (!(cur = json_object()) || json_object_set_new(dst, k, cur) != 0)
                    return CIOT_ENOMEM;
            }
            if (merge(cur, pv) != 0)
                return CIOT_ENOMEM;
            continue;
        }
        json_t *copy = json_deep_copy(pv);
        if (!copy || json_object_set_new(dst, k, copy) != 0)
            return CIOT_ENOMEM;
    }
    return 0;
}

/* ---- output through the library's JSON writer ------------------------------ */

static int put(ciot_json_writer *w, json_t *v)
{
    int rc;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        size_t klen;
        json_t *c;
        void *tmp;
        if ((rc = ciot_json_begin_object(w)) != 0)
            return rc;
        json_object_keylen_foreach_safe (v, tmp, k, klen, c) {
            if ((rc = ciot_json_key(w, k, klen)) != 0 || (rc = put(w, c)) != 0)
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

static int dump(char **out, size_t *out_len, json_t *v)
{
    ciot_json_writer w;
    size_t len = 0;
    int rc = ciot_json_writer_init(&w, NULL, 0);
    if (rc == 0)
        rc = put(&w, v);
    if (rc == 0)
        rc = ciot_json_writer_finish(&w, &len);
    if (rc != 0 && rc != CIOT_ENOSPC)
        return rc;
    char *buf = ciot__malloc(len + 1);
    if (!buf)
        return CIOT_ENOMEM;
    rc = ciot_json_writer_init(&w, buf, len + 1);
    if (rc == 0)
        rc = put(&w, v);
    if (rc == 0)
        rc = ciot_json_writer_finish(&w, &len);
    if (rc != 0) {
        ciot__free(buf);
        return rc;
    }
    *out = buf;
    if (out_len)
        *out_len = len;
    return 0;
}

/* A shallow copy of @p obj with "$version": v appended (NULL: no memory). */
static json_t *with_version(json_t *obj, uint64_t v)
{
    json_t *o = json_object();
    if (!o || json_object_update(o, obj) != 0 ||
        json_object_set_new(o, "$version", json_integer((json_int_t)v)) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* ---- lifecycle ------------------------------------------------------------ */

void ciot__twin_result_free(ciot__twin_result *r)
{
    if (!r)
        return;
    ciot__free(r->notification);
    memset(r, 0, sizeof *r);
}

int ciot__twin_new(ciot__twin **out)
{
    if (!out)
        return CIOT_EINVAL;
    *out = NULL;
    ciot__twin *t = ciot__calloc(1, sizeof *t);
    if (!t)
        return CIOT_ENOMEM;
    t->sec[0] = json_object();
    t->sec[1] = json_object();
    if (!t->sec[0] || !t->sec[1]) {
        ciot__twin_free(t);
        return CIOT_ENOMEM;
    }
    t->version[0] = t->version[1] = 1;
    *out = t;
    return 0;
}

void ciot__twin_free(ciot__twin *t)
{
    if (!t)
        return;
    json_decref(t->sec[0]);
    json_decref(t->sec[1]);
    ciot__free(t);
}

uint64_t ciot__twin_version(const ciot__twin *t, int section)
{
    if (!t || (section != CIOT__TWIN_DESIRED && section != CIOT__TWIN_REPORTED))
        return 0;
    return t->version[section];
}

json_t *ciot__twin_section(const ciot__twin *t, int section)
{
    if (!t || (section != CIOT__TWIN_DESIRED && section != CIOT__TWIN_REPORTED))
        return NULL;
    return t->sec[section];
}

size_t ciot__twin_size(const ciot__twin *t, int section)
{
    json_t *s = ciot__twin_section(t, section);
    return s ? value_size(s) : 0;
}

/* ---- service side ------------------------------------------------------------ */

static int reject(ciot__twin_result *out, int status, const char *msg)
{
    out->status = status;
    out->message = msg;
    return 0;
}

int ciot__twin_patch(ciot__twin_result *out, ciot__twin *t, int section, const char *p, size_t len)
{
    if (!out)
        return CIOT_EINVAL;
    memset(out, 0, sizeof *out);
    out->message = "";
    if (!t || (!p && len) || (section != CIOT__TWIN_DESIRED && section != CIOT__TWIN_REPORTED))
        return CIOT_EINVAL;
    if (len > CIOT__TWIN_MAX_PATCH)
        return reject(out, 413, MSG_PAYLOAD);
    if (len == 0)
        return reject(out, 400, MSG_BAD_JSON);
    json_t *root;
    int prc = parse(&root, p, len);
    if (prc == CIOT_ENOMEM)
        return prc;
    if (prc != 0)
        return reject(out, 400, MSG_BAD_JSON);
    const char *msg = NULL;
    int rc = 0;
    json_t *copy = NULL;
    if (!json_is_object(root)) {
        reject(out, 400, MSG_NOT_OBJECT);
        goto done;
    }
    if (!section_ok(root, true, &msg)) {
        reject(out, 400, msg);
        goto done;
    }
    rc = CIOT_ENOMEM;
    if (!(copy = json_deep_copy(t->sec[section])) || merge(copy, root) != 0)
        goto done;
    rc = 0;
    if (value_size(copy) > CIOT__TWIN_MAX_SECTION_SIZE) {
        reject(out, 413, MSG_SIZE);
        goto done;
    }
    uint64_t v = t->version[section] + 1;
    if (section == CIOT__TWIN_DESIRED) {
        json_t *note = with_version(root, v);
        rc = note ? dump(&out->notification, &out->notification_len, note) : CIOT_ENOMEM;
        json_decref(note);
        if (rc != 0)
            goto done;
    }
    json_decref(t->sec[section]);
    t->sec[section] = copy;
    copy = NULL;
    t->version[section] = v;
    out->status = section == CIOT__TWIN_DESIRED ? 200 : 204;
    out->version = v;
done:
    json_decref(copy);
    json_decref(root);
    if (rc != 0)
        ciot__twin_result_free(out);
    return rc;
}

int ciot__twin_get(char **out, size_t *out_len, const ciot__twin *t)
{
    if (!out || !t)
        return CIOT_EINVAL;
    *out = NULL;
    json_t *d = with_version(t->sec[0], t->version[0]);
    json_t *r = with_version(t->sec[1], t->version[1]);
    json_t *doc = json_object();
    int rc = CIOT_ENOMEM;
    if (d && r && doc && json_object_set(doc, "desired", d) == 0 &&
        json_object_set(doc, "reported", r) == 0)
        rc = dump(out, out_len, doc);
    json_decref(d);
    json_decref(r);
    json_decref(doc);
    return rc;
}

/* ---- persisted form ---------------------------------------------------------- */

int ciot__twin_save(char **out, size_t *out_len, const ciot__twin *t)
{
    if (!out || !t)
        return CIOT_EINVAL;
    *out = NULL;
    json_t *doc = json_pack("{sisOsIsOsI}", "format", 1, "desired", t->sec[0], "desiredVersion",
                            (json_int_t)t->version[0], "reported", t->sec[1], "reportedVersion",
                            (json_int_t)t->version[1]);
    if (!doc)
        return CIOT_ENOMEM;
    int rc = dump(out, out_len, doc);
    json_decref(doc);
    return rc;
}

static bool version_of(json_t *v, uint64_t min, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) < min)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static bool stored_section_ok(json_t *s)
{
    const char *msg;
    return json_is_object(s) && section_ok(s, false, &msg) &&
           value_size(s) <= CIOT__TWIN_MAX_SECTION_SIZE;
}

int ciot__twin_load(ciot__twin **out, const char *json, size_t len)
{
    if (!out || (!json && len))
        return CIOT_EINVAL;
    *out = NULL;
    if (len == 0)
        return CIOT_ECORRUPT;
    json_t *doc;
    int rc = parse(&doc, json, len);
    if (rc != 0)
        return rc == CIOT_ENOMEM ? rc : CIOT_ECORRUPT;
    rc = CIOT_ECORRUPT;
    json_t *f = json_object_get(doc, "format");
    json_t *d = json_object_get(doc, "desired"), *r = json_object_get(doc, "reported");
    uint64_t dv = 0, rv = 0;
    if (!json_is_object(doc) || json_object_size(doc) != 5 || !json_is_integer(f) ||
        json_integer_value(f) != 1 || !version_of(json_object_get(doc, "desiredVersion"), 1, &dv) ||
        !version_of(json_object_get(doc, "reportedVersion"), 1, &rv) || !stored_section_ok(d) ||
        !stored_section_ok(r))
        goto done;
    ciot__twin *t = ciot__calloc(1, sizeof *t);
    if (!t) {
        rc = CIOT_ENOMEM;
        goto done;
    }
    t->sec[0] = json_incref(d);
    t->sec[1] = json_incref(r);
    t->version[0] = dv;
    t->version[1] = rv;
    *out = t;
    rc = 0;
done:
    json_decref(doc);
    return rc;
}

/* ---- device side -------------------------------------------------------------- */

/* A copy of section @p s of a hub document without its top-level `$`
 * members; *ver gets its "$version" (required, integer >= 0). NULL with
 * *rc set when it is not usable. */
static json_t *strip_dollar(json_t *s, uint64_t *ver, int *rc)
{
    *rc = CIOT_EPROTOCOL;
    if (!json_is_object(s) || !version_of(json_object_get(s, "$version"), 0, ver))
        return NULL;
    json_t *o = json_object();
    if (!o) {
        *rc = CIOT_ENOMEM;
        return NULL;
    }
    const char *k;
    size_t klen;
    json_t *c;
    void *tmp;
    json_object_keylen_foreach_safe (s, tmp, k, klen, c) {
        if (klen > 0 && k[0] == '$')
            continue;
        if (json_object_setn(o, k, klen, c) != 0) {
            json_decref(o);
            *rc = CIOT_ENOMEM;
            return NULL;
        }
    }
    return o;
}

int ciot__twin_apply(ciot__twin *t, int kind, const char *doc, size_t len, bool *applied, bool *gap)
{
    if (applied)
        *applied = false;
    if (gap)
        *gap = false;
    if (!t || (!doc && len) || (kind != CIOT__TWIN_DOC_GET && kind != CIOT__TWIN_DOC_DESIRED))
        return CIOT_EINVAL;
    if (len == 0 || len > 2 * CIOT__TWIN_MAX_PATCH)
        return CIOT_EPROTOCOL;
    json_t *root;
    int rc = parse(&root, doc, len);
    if (rc != 0)
        return rc == CIOT_ENOMEM ? rc : CIOT_EPROTOCOL;
    json_t *n[2] = {NULL, NULL};
    uint64_t v[2] = {0, 0};
    rc = CIOT_EPROTOCOL;
    const char *msg;
    if (kind == CIOT__TWIN_DOC_GET) {
        if (!json_is_object(root))
            goto done;
        for (int i = 0; i < 2; i++) {
            n[i] = strip_dollar(json_object_get(root, i ? "reported" : "desired"), &v[i], &rc);
            if (!n[i])
                goto done;
            rc = CIOT_EPROTOCOL;
            if (!stored_section_ok(n[i]))
                goto done;
        }
        rc = 0;
        for (int i = 0; i < 2; i++) {
            if (v[i] < t->version[i])
                continue; /* a patch newer than this GET was applied already */
            json_decref(t->sec[i]);
            t->sec[i] = n[i];
            n[i] = NULL;
            t->version[i] = v[i];
            if (applied)
                *applied = true;
        }
        goto done;
    }
    json_t *patch = strip_dollar(root, &v[0], &rc);
    if (!patch)
        goto done;
    rc = CIOT_EPROTOCOL;
    if (!section_ok(patch, true, &msg)) {
        json_decref(patch);
        goto done;
    }
    if (v[0] <= t->version[0]) {
        json_decref(patch);
        rc = 0; /* stale */
        goto done;
    }
    rc = CIOT_ENOMEM;
    if (!(n[0] = json_deep_copy(t->sec[0])) || merge(n[0], patch) != 0) {
        json_decref(patch);
        goto done;
    }
    json_decref(patch);
    rc = CIOT_EPROTOCOL;
    if (value_size(n[0]) > CIOT__TWIN_MAX_SECTION_SIZE)
        goto done;
    if (gap)
        *gap = v[0] != t->version[0] + 1;
    json_decref(t->sec[0]);
    t->sec[0] = n[0];
    n[0] = NULL;
    t->version[0] = v[0];
    if (applied)
        *applied = true;
    rc = 0;
done:
    json_decref(n[0]);
    json_decref(n[1]);
    json_decref(root);
    return rc;
}
