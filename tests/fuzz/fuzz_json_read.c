/*
 * libFuzzer target for the on-demand JSON reader: validate, find with fixed
 * paths and with a path taken from the input (the first string in it),
 * iterate, typed getters; validity is compared with jansson where jansson
 * judges the same grammar.
 */
#include <cloudiot/cloudiot.h>

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                   \
    do {                                                                           \
        if (!(c)) {                                                                \
            fprintf(stderr, "check failed: %s (line %d)\n", #c, __LINE__);         \
            abort();                                                               \
        }                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *doc_begin, *doc_end;

static void in_doc(const ciot_json_value *v)
{
    CHECK(v->ptr >= doc_begin && v->ptr + v->len <= doc_end && v->len > 0);
}

/* Reads v every way there is; descends at most *budget values. */
static void exercise(const ciot_json_value *v, bool valid, int *budget)
{
    if (--*budget < 0)
        return;
    in_doc(v);
    double d;
    int64_t i;
    bool b;
    char buf[64];
    size_t len = 0;
    int rc;
    /* On a view of unvalidated text, any reader may also find it malformed. */
#define EXPECT(cond) CHECK((cond) || (!valid && (rc == CIOT_EINVAL || rc == CIOT_EDEPTH)))
    rc = ciot_json_get_double(v, &d);
    EXPECT(v->type == CIOT_JSON_NUMBER ? (rc == 0 || rc == CIOT_ERANGE) : rc == CIOT_ETYPE);
    rc = ciot_json_get_int64(v, &i);
    EXPECT(v->type == CIOT_JSON_NUMBER ? (rc == 0 || rc == CIOT_ERANGE) : rc == CIOT_ETYPE);
    rc = ciot_json_get_bool(v, &b);
    EXPECT((v->type == CIOT_JSON_TRUE || v->type == CIOT_JSON_FALSE) ? rc == 0 : rc == CIOT_ETYPE);
    rc = ciot_json_get_string(v, buf, sizeof buf, &len);
    if (v->type == CIOT_JSON_STRING) {
        EXPECT(rc == 0 || rc == CIOT_ENOSPC);
        if (rc == 0) {
            bool eq = false;
            CHECK(len < sizeof buf && buf[len] == '\0');
            CHECK(ciot_json_string_equal(v, buf, len, &eq) == 0 && eq);
        } else if (rc == CIOT_ENOSPC) {
            CHECK(len >= sizeof buf);
        }
    } else {
        EXPECT(rc == CIOT_ETYPE);
    }
    if (v->type != CIOT_JSON_OBJECT && v->type != CIOT_JSON_ARRAY)
        return;
    ciot_json_iter it;
    ciot_json_value k, m, g;
    rc = ciot_json_iter_init(&it, v);
    EXPECT(rc == 0);
    if (rc != 0)
        return;
    size_t n = 0;
    while ((rc = ciot_json_iter_next(&it, &k, &m)) == 0) {
        in_doc(&m);
        if (v->type == CIOT_JSON_OBJECT) {
            in_doc(&k);
            char kb[128];
            size_t kl;
            if (ciot_json_get_string(&k, kb, sizeof kb, &kl) == 0) {
                rc = ciot_json_get_member(v, kb, kl, &g);
                EXPECT(rc == 0 && g.ptr >= m.ptr); /* the last member of that name */
            }
        } else {
            rc = ciot_json_get_index(v, n, &g);
            EXPECT(rc == 0 && g.ptr == m.ptr && g.len == m.len);
        }
        exercise(&m, valid, budget);
        n++;
    }
#undef EXPECT
    /* inside a validated document nothing can be malformed */
    CHECK(rc == CIOT_ENOTFOUND || (!valid && rc < 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *doc = malloc(size ? size : 1);
    if (doc == NULL)
        return 0;
    if (size)
        memcpy(doc, data, size);
    doc_begin = doc;
    doc_end = doc + size;

    int vrc = ciot_json_validate(size ? doc : NULL, size);
    CHECK(vrc == 0 || vrc == CIOT_EINVAL || vrc == CIOT_EDEPTH);

    json_error_t e;
    json_t *j = json_loadb(doc, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (memchr(doc, 0, size) != NULL) {
        CHECK(vrc != 0); /* a raw NUL byte is never valid JSON (jansson skips some) */
    } else if (j != NULL) {
        CHECK(vrc == 0 || vrc == CIOT_EDEPTH); /* jansson nests up to 2048 */
    } else if (vrc == 0) {
        /* jansson's own limits, not JSON's */
        CHECK(json_error_code(&e) == json_error_numeric_overflow ||
              strstr(e.text, "NUL byte in object key") != NULL);
    }
    json_decref(j);

    /* paths: fixed ones, and the first string of the input as a key */
    char derived[80];
    size_t dl = 0;
    const char *q = size ? memchr(doc, '"', size) : NULL;
    if (q != NULL) {
        for (q++; q < doc_end && *q != '"' && dl < 40; q++)
            derived[dl++] = *q;
        memcpy(derived + dl, "[0].a", 5);
    }
    const struct {
        const char *p;
        size_t n;
    } paths[] = {{"", 0}, {"value", 5}, {"metadata.unit", 13}, {"[0]", 3}, {"a[1].b", 6},
                 {"[1][0]", 6}, {derived, dl}, {derived, dl + 3}, {derived, dl + 5}};
    for (size_t k = 0; k < sizeof paths / sizeof paths[0]; k++) {
        if (paths[k].n == 0 && k > 0)
            continue;
        ciot_json_value v;
        int rc = ciot_json_find(size ? doc : NULL, size, paths[k].n ? paths[k].p : NULL,
                                paths[k].n, &v);
        if (vrc != 0) {
            CHECK(rc == vrc || rc == CIOT_EINVAL);
            continue;
        }
        CHECK(rc == 0 || rc == CIOT_ENOTFOUND || rc == CIOT_EINVAL);
        if (rc == 0) {
            int budget = 2000;
            exercise(&v, true, &budget);
        }
    }
    /* the reader on a view whose text may be anything: any shape of the input */
    static const int types[] = {CIOT_JSON_OBJECT, CIOT_JSON_ARRAY, CIOT_JSON_STRING, CIOT_JSON_NUMBER,
                                CIOT_JSON_TRUE};
    if (size > 0) {
        ciot_json_value raw = {types[(unsigned char)doc[0] % 5], doc, size};
        int budget = 200;
        ciot_json_iter it;
        if (ciot_json_iter_init(&it, &raw) == 0 || raw.type == CIOT_JSON_STRING ||
            raw.type == CIOT_JSON_NUMBER || raw.type == CIOT_JSON_TRUE) {
            double d;
            int64_t i;
            bool b;
            char buf[16];
            size_t len;
            ciot_json_value g;
            (void)ciot_json_get_double(&raw, &d);
            (void)ciot_json_get_int64(&raw, &i);
            (void)ciot_json_get_bool(&raw, &b);
            (void)ciot_json_get_string(&raw, buf, sizeof buf, &len);
            (void)ciot_json_get_member(&raw, "a", 1, &g);
            (void)ciot_json_get_index(&raw, 1, &g);
            exercise(&raw, false, &budget);
        }
    }
    free(doc);
    return 0;
}
