/* The shadow document engine (protocols.md §2): the worked examples E1–E8
 * byte for byte, every error of §2.5, merge and delta edge cases, limits,
 * versions across delete, the persisted form, and randomized update
 * sequences checked against a small independent model. */
#include "core/shadow_doc.h"
#include "internal.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T 1700000000
#define TS "1700000000"
#define M "{\"timestamp\":" TS "}"

static double test_scale(void)
{
    const char *s = getenv("CIOT_TEST_SCALE");
    double f = s ? atof(s) : 1.0;
    return f > 0 ? f : 1.0;
}

static long scaled(long n)
{
    long m = (long)((double)n * test_scale());
    return m < 1 ? 1 : m;
}

/* ---- helpers -------------------------------------------------------------- */

static ciot__shadow *fresh(void)
{
    ciot__shadow *s = NULL;
    cr_assert_eq(ciot__shadow_new(&s, "myShadow", 8), 0);
    return s;
}

static json_t *parse(const char *txt)
{
    json_error_t e;
    json_t *j = json_loads(txt, JSON_DECODE_ANY, &e);
    cr_assert_not_null(j, "bad test JSON: %s (%s)", txt, e.text);
    return j;
}

static json_t *tmeta(json_t *v, long long ts)
{
    if (json_is_object(v)) {
        json_t *r = json_object();
        const char *k;
        json_t *c;
        json_object_foreach (v, k, c)
            json_object_set_new(r, k, tmeta(c, ts));
        return r;
    }
    if (json_is_array(v)) {
        json_t *r = json_array();
        size_t i;
        json_t *c;
        json_array_foreach (v, i, c)
            json_array_append_new(r, tmeta(c, ts));
        return r;
    }
    return json_pack("{s:I}", "timestamp", (json_int_t)ts);
}

/* A stored shadow at @p version with the given sections (NULL: absent),
 * made through the persisted form with metadata timestamps @p ts. */
static ciot__shadow *stored(unsigned version, const char *desired, const char *reported, long long ts)
{
    json_t *doc = json_pack("{s:i,s:b,s:i,s:I}", "format", 1, "exists", 1, "version", (int)version,
                            "timestamp", (json_int_t)ts);
    json_t *st = json_object(), *meta = json_object();
    if (desired) {
        json_t *d = parse(desired);
        json_object_set_new(meta, "desired", tmeta(d, ts));
        json_object_set_new(st, "desired", d);
    }
    if (reported) {
        json_t *r = parse(reported);
        json_object_set_new(meta, "reported", tmeta(r, ts));
        json_object_set_new(st, "reported", r);
    }
    json_object_set_new(doc, "state", st);
    json_object_set_new(doc, "metadata", meta);
    char *txt = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    ciot__shadow *s = NULL;
    int rc = ciot__shadow_load(&s, "myShadow", 8, txt, strlen(txt));
    cr_assert_eq(rc, 0, "load of %s: %d", txt, rc);
    free(txt);
    return s;
}

static ciot__shadow_result upd(ciot__shadow *s, const char *req)
{
    ciot__shadow_result r;
    cr_assert_eq(ciot__shadow_update(&r, s, req, strlen(req), T), 0);
    return r;
}

static void assert_json_eq(json_t *got, const char *want)
{
    json_t *w = parse(want);
    char *g = got ? json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    cr_assert(json_equal(got, w), "got %s, want %s", g ? g : "(none)", want);
    free(g);
    json_decref(w);
}

static void assert_desired(const ciot__shadow *s, const char *want)
{
    if (!want)
        cr_assert_null(ciot__shadow_desired(s));
    else
        assert_json_eq(ciot__shadow_desired(s), want);
}

static void assert_reported(const ciot__shadow *s, const char *want)
{
    if (!want)
        cr_assert_null(ciot__shadow_reported(s));
    else
        assert_json_eq(ciot__shadow_reported(s), want);
}

static void assert_accepted(ciot__shadow_result *r, const char *accepted, const char *delta)
{
    cr_assert_eq(r->status, 200, "status %d: %s", r->status, r->rejected ? r->rejected : "");
    cr_assert_null(r->rejected);
    cr_assert_not_null(r->accepted);
    cr_assert_str_eq(r->accepted, accepted);
    cr_assert_eq(r->accepted_len, strlen(accepted));
    cr_assert_not_null(r->documents);
    if (delta) {
        cr_assert_not_null(r->delta, "no delta, want %s", delta);
        cr_assert_str_eq(r->delta, delta);
        cr_assert_eq(r->delta_len, strlen(delta));
    } else {
        cr_assert_null(r->delta, "unexpected delta %s", r->delta);
    }
}

static void assert_rejected(ciot__shadow_result *r, const char *rejected)
{
    cr_assert_str_eq(r->rejected ? r->rejected : "(none)", rejected);
    cr_assert_eq(r->rejected_len, strlen(rejected));
    cr_assert_null(r->accepted);
    cr_assert_null(r->delta);
    cr_assert_null(r->documents);
    json_t *j = parse(rejected);
    cr_assert_eq(r->status, json_integer_value(json_object_get(j, "code")));
    json_decref(j);
}

/* Field of a result document, e.g. docfield(r.documents, "current", "state"). */
static json_t *docs_part(const char *documents, const char *which, const char *field)
{
    json_t *d = parse(documents);
    json_t *p = json_object_get(d, which);
    json_t *f = p ? json_object_get(p, field) : NULL;
    json_incref(f);
    json_decref(d);
    return f;
}

static void assert_docs(const char *documents, const char *which, const char *state, long long version)
{
    if (!state) {
        json_t *d = parse(documents);
        cr_assert_null(json_object_get(d, which), "%s present in %s", which, documents);
        json_decref(d);
        return;
    }
    json_t *st = docs_part(documents, which, "state");
    assert_json_eq(st, state);
    json_decref(st);
    json_t *v = docs_part(documents, which, "version");
    cr_assert_eq(json_integer_value(v), version);
    json_decref(v);
}

/* ---- E1–E8 (§2.7) ------------------------------------------------------------ */

Test(shadow_doc, e1_create)
{
    ciot__shadow *s = fresh();
    ciot__shadow_result r = upd(s, "{\"state\":{\"desired\":{\"color\":\"red\",\"power\":\"on\"}},\"clientToken\":\"c1\"}");
    assert_accepted(&r,
                    "{\"state\":{\"desired\":{\"color\":\"red\",\"power\":\"on\"}},\"metadata\":{\"desired\":{\"color\":" M
                    ",\"power\":" M "}},\"version\":1,\"timestamp\":" TS ",\"clientToken\":\"c1\"}",
                    "{\"state\":{\"color\":\"red\",\"power\":\"on\"},\"metadata\":{\"color\":" M ",\"power\":" M
                    "},\"version\":1,\"timestamp\":" TS ",\"clientToken\":\"c1\"}");
    /* §2.7 leaves metadata out of /documents; real payloads carry it. */
    cr_assert_str_eq(r.documents,
                     "{\"current\":{\"state\":{\"desired\":{\"color\":\"red\",\"power\":\"on\"}},\"metadata\":{"
                     "\"desired\":{\"color\":" M ",\"power\":" M "}},\"version\":1},\"timestamp\":" TS
                     ",\"clientToken\":\"c1\"}");
    cr_assert(ciot__shadow_exists(s));
    cr_assert_eq(ciot__shadow_version(s), 1);
    ciot__shadow_result_free(&r);
    ciot__shadow_free(s);
}

Test(shadow_doc, e2_partial_mismatch_ignores_reported_only_keys)
{
    ciot__shadow *s = fresh();
    ciot__shadow_result r = upd(s, "{\"state\":{\"desired\":{\"color\":\"red\",\"power\":\"on\"}},\"clientToken\":\"c1\"}");
    ciot__shadow_result_free(&r);
    r = upd(s, "{\"state\":{\"reported\":{\"color\":\"red\",\"power\":\"off\",\"temp\":21}},\"clientToken\":\"c2\"}");
    assert_accepted(&r,
                    "{\"state\":{\"reported\":{\"color\":\"red\",\"power\":\"off\",\"temp\":21}},\"metadata\":{"
                    "\"reported\":{\"color\":" M ",\"power\":" M ",\"temp\":" M "}},\"version\":2,\"timestamp\":" TS
                    ",\"clientToken\":\"c2\"}",
                    "{\"state\":{\"power\":\"on\"},\"metadata\":{\"power\":" M "},\"version\":2,\"timestamp\":" TS
                    ",\"clientToken\":\"c2\"}");
    assert_docs(r.documents, "previous", "{\"desired\":{\"color\":\"red\",\"power\":\"on\"}}", 1);
    assert_docs(r.documents, "current",
                "{\"desired\":{\"color\":\"red\",\"power\":\"on\"},\"reported\":{\"color\":\"red\",\"power\":\"off\","
                "\"temp\":21}}",
                2);
    cr_assert_str_eq(r.documents,
                     "{\"previous\":{\"state\":{\"desired\":{\"color\":\"red\",\"power\":\"on\"}},\"metadata\":{"
                     "\"desired\":{\"color\":" M ",\"power\":" M "}},\"version\":1},\"current\":{\"state\":{"
                     "\"desired\":{\"color\":\"red\",\"power\":\"on\"},\"reported\":{\"color\":\"red\",\"power\":"
                     "\"off\",\"temp\":21}},\"metadata\":{\"desired\":{\"color\":" M ",\"power\":" M
                     "},\"reported\":{\"color\":" M ",\"power\":" M ",\"temp\":" M "}},\"version\":2},"
                     "\"timestamp\":" TS ",\"clientToken\":\"c2\"}");
    ciot__shadow_result_free(&r);

    /* E3 — converged: no delta. */
    r = upd(s, "{\"state\":{\"reported\":{\"power\":\"on\"}}}");
    assert_accepted(&r,
                    "{\"state\":{\"reported\":{\"power\":\"on\"}},\"metadata\":{\"reported\":{\"power\":" M
                    "}},\"version\":3,\"timestamp\":" TS "}",
                    NULL);
    json_t *cur = docs_part(r.documents, "current", "state");
    assert_json_eq(json_object_get(cur, "reported"), "{\"color\":\"red\",\"power\":\"on\",\"temp\":21}");
    json_decref(cur);
    assert_docs(r.documents, "current",
                "{\"desired\":{\"color\":\"red\",\"power\":\"on\"},\"reported\":{\"color\":\"red\",\"power\":\"on\","
                "\"temp\":21}}",
                3);
    ciot__shadow_result_free(&r);
    ciot__shadow_free(s);
}

Test(shadow_doc, e4_nested_merge_delta_keeps_path)
{
    const char *l = "{\"lights\":{\"color\":{\"r\":255,\"g\":0,\"b\":255},\"on\":true}}";
    ciot__shadow *s = stored(7, l, l, T - 100);
    ciot__shadow_result r = upd(s, "{\"state\":{\"desired\":{\"lights\":{\"color\":{\"g\":255}}}}}");
    assert_accepted(&r,
                    "{\"state\":{\"desired\":{\"lights\":{\"color\":{\"g\":255}}}},\"metadata\":{\"desired\":{"
                    "\"lights\":{\"color\":{\"g\":" M "}}}},\"version\":8,\"timestamp\":" TS "}",
                    "{\"state\":{\"lights\":{\"color\":{\"g\":255}}},\"metadata\":{\"lights\":{\"color\":{\"g\":" M
                    "}}},\"version\":8,\"timestamp\":" TS "}");
    assert_desired(s, "{\"lights\":{\"color\":{\"r\":255,\"g\":255,\"b\":255},\"on\":true}}");
    assert_reported(s, l);
    ciot__shadow_result_free(&r);
    ciot__shadow_free(s);
}

Test(shadow_doc, e5_null_deletes_and_deleted_reported_key_reappears)
{
    ciot__shadow *s = stored(3, "{\"color\":\"red\",\"power\":\"on\",\"mode\":\"eco\"}",
                             "{\"color\":\"blue\",\"power\":\"on\"}", T - 5);
    ciot__shadow_result r =
        upd(s, "{\"state\":{\"desired\":{\"mode\":null,\"color\":null},\"reported\":{\"power\":null}},"
               "\"clientToken\":\"c5\"}");
    assert_accepted(&r,
                    "{\"state\":{\"desired\":{\"mode\":null,\"color\":null},\"reported\":{\"power\":null}},"
                    "\"metadata\":{\"desired\":{\"mode\":" M ",\"color\":" M "},\"reported\":{\"power\":" M
                    "}},\"version\":4,\"timestamp\":" TS ",\"clientToken\":\"c5\"}",
                    "{\"state\":{\"power\":\"on\"},\"metadata\":{\"power\":{\"timestamp\":1699999995}},"
                    "\"version\":4,\"timestamp\":" TS ",\"clientToken\":\"c5\"}");
    assert_desired(s, "{\"power\":\"on\"}");
    assert_reported(s, "{\"color\":\"blue\"}");
    cr_assert_eq(ciot__shadow_version(s), 4);
    ciot__shadow_result_free(&r);
    ciot__shadow_free(s);
}

Test(shadow_doc, e6_arrays_replace_whole)
{
    ciot__shadow *s = stored(10, "{\"colors\":[\"RED\",\"GREEN\",\"BLUE\"]}", "{\"colors\":[\"RED\",\"GREEN\"]}", T);
    ciot__shadow_result r = upd(s, "{\"state\":{\"desired\":{\"colors\":[\"RED\"]}}}");
    assert_accepted(&r,
                    "{\"state\":{\"desired\":{\"colors\":[\"RED\"]}},\"metadata\":{\"desired\":{\"colors\":[" M
                    "]}},\"version\":11,\"timestamp\":" TS "}",
                    "{\"state\":{\"colors\":[\"RED\"]},\"metadata\":{\"colors\":[" M "]},\"version\":11,"
                    "\"timestamp\":" TS "}");
    assert_desired(s, "{\"colors\":[\"RED\"]}");
    ciot__shadow_result_free(&r);
    r = upd(s, "{\"state\":{\"reported\":{\"colors\":[\"RED\"]}}}");
    assert_accepted(&r,
                    "{\"state\":{\"reported\":{\"colors\":[\"RED\"]}},\"metadata\":{\"reported\":{\"colors\":[" M
                    "]}},\"version\":12,\"timestamp\":" TS "}",
                    NULL);
    ciot__shadow_result_free(&r);
    ciot__shadow_free(s);
}

Test(shadow_doc, e7_optimistic_locking)
{
    ciot__shadow *s = stored(5, "{\"fan\":\"low\"}", NULL, T);
    ciot__shadow_result r = upd(s, "{\"state\":{\"desired\":{\"fan\":\"high\"}},\"version\":4,\"clientToken\":\"c7a\"}");
    assert_rejected(&r, "{\"code\":409,\"message\":\"Version conflict\",\"timestamp\":" TS ",\"clientToken\":\"c7a\"}");
    cr_assert_eq(ciot__shadow_version(s), 5);
    assert_desired(s, "{\"fan\":\"low\"}");
    ciot__shadow_result_free(&r);

    r = upd(s, "{\"state\":{\"desired\":{\"fan\":\"high\"}},\"version\":5,\"clientToken\":\"c7b\"}");
    assert_accepted(&r,
                    "{\"state\":{\"desired\":{\"fan\":\"high\"}},\"metadata\":{\"desired\":{\"fan\":" M
                    "}},\"version\":6,\"timestamp\":" TS ",\"clientToken\":\"c7b\"}",
                    "{\"state\":{\"fan\":\"high\"},\"metadata\":{\"fan\":" M "},\"version\":6,\"timestamp\":" TS
                    ",\"clientToken\":\"c7b\"}");
    assert_docs(r.documents, "previous", "{\"desired\":{\"fan\":\"low\"}}", 5);
    assert_docs(r.documents, "current", "{\"desired\":{\"fan\":\"high\"}}", 6);
    ciot__shadow_result_free(&r);
    ciot__shadow_free(s);
}

Test(shadow_doc, e8_section_removal_clear_and_validation)
{
    ciot__shadow *s = stored(2, "{\"a\":1}", "{\"a\":1,\"b\":2}", T);
    ciot__shadow_result r = upd(s, "{\"state\":{\"desired\":null}}");
    assert_accepted(&r,
                    "{\"state\":{\"desired\":null},\"metadata\":{\"desired\":" M "},\"version\":3,\"timestamp\":" TS
                    "}",
                    NULL);
    assert_desired(s, NULL);
    ciot__shadow_result_free(&r);

    r = upd(s, "{\"state\":null}");
    assert_accepted(&r, "{\"state\":null,\"metadata\":" M ",\"version\":4,\"timestamp\":" TS "}", NULL);
    assert_docs(r.documents, "current", "{}", 4);
    cr_assert_str_eq(r.documents,
                     "{\"previous\":{\"state\":{\"reported\":{\"a\":1,\"b\":2}},\"metadata\":{\"reported\":{\"a\":" M
                     ",\"b\":" M "}},\"version\":3},\"current\":{\"state\":{},\"metadata\":{},\"version\":4},"
                     "\"timestamp\":" TS "}");
    assert_desired(s, NULL);
    assert_reported(s, NULL);
    cr_assert(ciot__shadow_exists(s));
    ciot__shadow_result_free(&r);

    r = upd(s, "{\"desired\":{\"a\":2}}");
    assert_rejected(&r, "{\"code\":400,\"message\":\"Missing required node: state\",\"timestamp\":" TS "}");
    cr_assert_eq(ciot__shadow_version(s), 4);
    ciot__shadow_result_free(&r);

    r = upd(s, "{\"state\":{\"desired\":\"on\"}}");
    assert_rejected(&r, "{\"code\":400,\"message\":\"Desired node must be an object\",\"timestamp\":" TS "}");
    ciot__shadow_result_free(&r);

    r = upd(s, "{\"state\":{\"reported\":{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{\"g\":1}}}}}}}}}");
    assert_rejected(&r, "{\"code\":400,\"message\":\"JSON contains too many levels of nesting; maximum is "
                        "6\",\"timestamp\":" TS "}");
    ciot__shadow_result_free(&r);
    cr_assert_eq(ciot__shadow_version(s), 4);
    r = upd(s, "{\"state\":{\"reported\":{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":1}}}}}}}}");
    cr_assert_eq(r.status, 200);
    ciot__shadow_result_free(&r);
    cr_assert_eq(ciot__shadow_version(s), 5);

    char req[200];
    snprintf(req, sizeof req, "{\"state\":{\"desired\":{\"x\":1}},\"clientToken\":\"%065d\"}", 0);
    r = upd(s, req);
    assert_rejected(&r, "{\"code\":400,\"message\":\"Invalid clientToken\",\"timestamp\":" TS "}");
    ciot__shadow_result_free(&r);
    snprintf(req, sizeof req, "{\"state\":{\"desired\":{\"x\":1}},\"clientToken\":\"%064d\"}", 0);
    r = upd(s, req);
    cr_assert_eq(r.status, 200);
    ciot__shadow_result_free(&r);
    ciot__shadow_free(s);

    /* 7: new-section nulls. */
    s = stored(1, NULL, "{\"x\":1}", T);
    r = upd(s, "{\"state\":{\"desired\":{\"cfg\":{\"a\":null,\"b\":{\"c\":null}},\"k\":null,\"m\":2}}}");
    cr_assert_eq(r.status, 200);
    assert_desired(s, "{\"m\":2}");
    cr_assert_not_null(r.delta);
    json_t *d = parse(r.delta);
    assert_json_eq(json_object_get(d, "state"), "{\"m\":2}");
    json_decref(d);
    cr_assert_eq(ciot__shadow_version(s), 2);
    ciot__shadow_result_free(&r);
    ciot__shadow_free(s);
}

/* ---- errors of §2.5 ------------------------------------------------------------ */

struct err_case {
    const char *req;
    int code;
    const char *msg;
};

Test(shadow_doc, every_update_error_has_its_code_and_message)
{
    static const struct err_case cases[] = {
        {"not json", 400, "Invalid JSON"},
        {"{\"state\":{}", 400, "Invalid JSON"},
        {"[1,2]", 400, "Invalid JSON"},
        {"\"state\"", 400, "Invalid JSON"},
        {"{\"state\":{\"desired\":{\"a\":[1,null]}}}", 400, "Invalid JSON"},
        {"{\"state\":{\"reported\":{\"a\":[{\"b\":null}]}}}", 400, "Invalid JSON"},
        {"{\"other\":\"x\"}", 400, "Missing required node: state"},
        {"{}", 400, "Missing required node: state"},
        {"{\"state\":5}", 400, "State node must be an object"},
        {"{\"state\":[]}", 400, "State node must be an object"},
        {"{\"state\":\"x\"}", 400, "State node must be an object"},
        {"{\"state\":{\"desired\":[1]}}", 400, "Desired node must be an object"},
        {"{\"state\":{\"desired\":true}}", 400, "Desired node must be an object"},
        {"{\"state\":{\"reported\":1}}", 400, "Reported node must be an object"},
        {"{\"state\":{\"desired\":{},\"reported\":\"x\"}}", 400, "Reported node must be an object"},
        {"{\"state\":{\"desired\":{},\"foo\":{}}}", 400, "State contains an invalid node"},
        {"{\"state\":{\"Desired\":{}}}", 400, "State contains an invalid node"},
        {"{\"state\":{\"desired\":{\"a\":1}},\"version\":-1}", 400, "Invalid version"},
        {"{\"state\":{\"desired\":{\"a\":1}},\"version\":1.5}", 400, "Invalid version"},
        {"{\"state\":{\"desired\":{\"a\":1}},\"version\":\"1\"}", 400, "Invalid version"},
        {"{\"state\":{\"desired\":{\"a\":1}},\"version\":null}", 400, "Invalid version"},
        {"{\"state\":{\"desired\":{\"a\":1}},\"clientToken\":5}", 400, "Invalid clientToken"},
        {"{\"state\":{\"desired\":{\"a\":1}},\"clientToken\":null}", 400, "Invalid clientToken"},
        {"{\"state\":{\"desired\":{\"a\":[[[[[[1]]]]]]}}}", 400,
         "JSON contains too many levels of nesting; maximum is 6"},
        {"{\"state\":{\"reported\":{\"a\":\"\xff\"}}}", 415,
         "Unsupported documented encoding; supported encoding is UTF-8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ciot__shadow *s = stored(3, "{\"keep\":1}", NULL, T);
        ciot__shadow_result r = upd(s, cases[i].req);
        char want[300];
        snprintf(want, sizeof want, "{\"code\":%d,\"message\":\"%s\",\"timestamp\":" TS "}", cases[i].code,
                 cases[i].msg);
        cr_assert_str_eq(r.rejected ? r.rejected : "(none)", want, "request %s", cases[i].req);
        cr_assert_eq(r.status, cases[i].code);
        cr_assert_null(r.accepted);
        cr_assert_eq(ciot__shadow_version(s), 3);
        assert_desired(s, "{\"keep\":1}");
        ciot__shadow_result_free(&r);
        ciot__shadow_free(s);
    }
}

Test(shadow_doc, missing_payload_and_oversized_request)
{
    ciot__shadow *s = fresh();
    ciot__shadow_result r;
    cr_assert_eq(ciot__shadow_update(&r, s, NULL, 0, T), 0);
    assert_rejected(&r, "{\"code\":400,\"message\":\"Missing update payload\",\"timestamp\":" TS "}");
    ciot__shadow_result_free(&r);
    size_t n = CIOT__SHADOW_MAX_REQUEST + 1;
    char *big = malloc(n);
    memset(big, ' ', n);
    memcpy(big, "{\"state\":{}}", 12);
    cr_assert_eq(ciot__shadow_update(&r, s, big, n, T), 0);
    assert_rejected(&r, "{\"code\":413,\"message\":\"The payload exceeds the maximum size allowed\",\"timestamp\":" TS
                        "}");
    ciot__shadow_result_free(&r);
    /* The same bytes one shorter are within the request cap: white space is fine. */
    cr_assert_eq(ciot__shadow_update(&r, s, big, n - 1, T), 0);
    cr_assert_eq(r.status, 200);
    ciot__shadow_result_free(&r);
    free(big);
    cr_assert(!ciot__shadow_exists(s) || ciot__shadow_version(s) == 1);
    ciot__shadow_free(s);
}

Test(shadow_doc, rejection_echoes_a_valid_client_token)
{
    ciot__shadow *s = stored(2, "{\"a\":1}", NULL, T);
    ciot__shadow_result r = upd(s, "{\"clientToken\":\"tok\",\"state\":{\"desired\":7}}");
    assert_rejected(&r, "{\"code\":400,\"message\":\"Desired node must be an object\",\"timestamp\":" TS
                        ",\"clientToken\":\"tok\"}");
    ciot__shadow_result_free(&r);
    ciot__shadow_free(s);
}

Test(shadow_doc, first_version_of_a_new_shadow_must_be_1)
{
    ciot__shadow *s = fresh();
    ciot__shadow_result r = upd(s, "{\"state\":{\"desired\":{\"a\":1}},\"version\":0}");
    assert_rejected(&r, "{\"code\":400,\"message\":\"Invalid version\",\"timestamp\":" TS "}");
    ciot__shadow_result_free(&r);
    r = upd(s, "{\"state\":{\"desired\":{\"a\":1}},\"version\":2}");
    assert_rejected(&r, "{\"code\":400,\"message\":\"Invalid version\",\"timestamp\":" TS "}");
    ciot__shadow_result_free(&r);
    cr_assert(!ciot__shadow_exists(s));
    r = upd(s, "{\"state\":{\"desired\":{\"a\":1}},\"version\":1}");
    cr_assert_eq(r.status, 200);
    cr_assert_eq(ciot__shadow_version(s), 1);
    ciot__shadow_result_free(&r);
    /* 1.0 is the same number as 1. */
    r = upd(s, "{\"state\":{\"desired\":{\"a\":2}},\"version\":1.0}");
    cr_assert_eq(r.status, 200);
    cr_assert_eq(ciot__shadow_version(s), 2);
    ciot__shadow_result_free(&r);
    r = upd(s, "{\"state\":{\"desired\":{\"a\":2}},\"version\":3}");
    assert_rejected(&r, "{\"code\":409,\"message\":\"Version conflict\",\"timestamp\":" TS "}");
    ciot__shadow_result_free(&r);
    ciot__shadow_free(s);
}

Test(shadow_doc, get_and_delete_of_missing_shadow_are_404)
{
    ciot__shadow *s = fresh();
    ciot__shadow_result r;
    cr_assert_eq(ciot__shadow_get(&r, s, "", 0, T), 0);
    assert_rejected(&r, "{\"code\":404,\"message\":\"No shadow exists with name: myShadow\",\"timestamp\":" TS "}");
    ciot__shadow_result_free(&r);
    const char *tok = "{\"clientToken\":\"g1\"}";
    cr_assert_eq(ciot__shadow_delete(&r, s, tok, strlen(tok), T), 0);
    assert_rejected(&r, "{\"code\":404,\"message\":\"No shadow exists with name: myShadow\",\"timestamp\":" TS
                        ",\"clientToken\":\"g1\"}");
    ciot__shadow_result_free(&r);
    ciot__shadow_free(s);
}

Test(shadow_doc, get_and_delete_reject_a_bad_client_token)
{
    ciot__shadow *s = stored(1, "{\"a\":1}", NULL, T);
    ciot__shadow_result r;
    char req[120];
    snprintf(req, sizeof req, "{\"clientToken\":\"%065d\"}", 0);
    cr_assert_eq(ciot__shadow_get(&r, s, req, strlen(req), T), 0);
    assert_rejected(&r, "{\"code\":400,\"message\":\"Invalid clientToken\",\"timestamp\":" TS "}");
    ciot__shadow_result_free(&r);
    cr_assert_eq(ciot__shadow_delete(&r, s, "{\"clientToken\":1}", 17, T), 0);
    assert_rejected(&r, "{\"code\":400,\"message\":\"Invalid clientToken\",\"timestamp\":" TS "}");
    ciot__shadow_result_free(&r);
    cr_assert(ciot__shadow_exists(s));
    /* Content that is not JSON is ignored (a /delete payload is documented as ignored). */
    cr_assert_eq(ciot__shadow_get(&r, s, "garbage", 7, T), 0);
    cr_assert_eq(r.status, 200);
    ciot__shadow_result_free(&r);
    ciot__shadow_free(s);
}

Test(shadow_doc, state_size_limit_is_8192_bytes_after_merge)
{
    /* {"reported":{"k":"…"}} is 21 bytes around the string. */
    size_t n = 8192 - 21;
    char *req = malloc(n + 100);
    int len = snprintf(req, n + 100, "{\"state\":{\"reported\":{\"k\":\"%0*d\"}}}", (int)n, 0);
    ciot__shadow *s = fresh();
    ciot__shadow_result r;
    cr_assert_eq(ciot__shadow_update(&r, s, req, (size_t)len, T), 0);
    cr_assert_eq(r.status, 200);
    ciot__shadow_result_free(&r);
    /* One more byte through another key of desired: 413, nothing changes. */
    r = upd(s, "{\"state\":{\"desired\":{}}}"); /* {} removes nothing that exists */
    cr_assert_eq(r.status, 200);
    ciot__shadow_result_free(&r);
    cr_assert_eq(ciot__shadow_version(s), 2);
    r = upd(s, "{\"state\":{\"desired\":{\"x\":1}},\"clientToken\":\"big\"}");
    assert_rejected(&r, "{\"code\":413,\"message\":\"The payload exceeds the maximum size allowed\",\"timestamp\":" TS
                        ",\"clientToken\":\"big\"}");
    ciot__shadow_result_free(&r);
    cr_assert_eq(ciot__shadow_version(s), 2);
    assert_desired(s, NULL);
    /* Shrinking and growing in one request is measured after the merge. */
    snprintf(req, n + 100, "{\"state\":{\"reported\":{\"k\":\"%0*d\"},\"desired\":{\"x\":1}}}", (int)n - 18, 0);
    r = upd(s, req);
    cr_assert_eq(r.status, 200, "%s", r.rejected);
    ciot__shadow_result_free(&r);
    /* Over by one from the start. */
    ciot__shadow *t = fresh();
    len = snprintf(req, n + 100, "{\"state\":{\"reported\":{\"k\":\"%0*d\"}}}", (int)n + 1, 0);
    cr_assert_eq(ciot__shadow_update(&r, t, req, (size_t)len, T), 0);
    cr_assert_eq(r.status, 413);
    cr_assert(!ciot__shadow_exists(t));
    ciot__shadow_result_free(&r);
    ciot__shadow_free(t);
    free(req);
    ciot__shadow_free(s);
}

Test(shadow_doc, depth_counts_arrays_and_ignores_empty_containers)
{
    ciot__shadow *s = fresh();
    ciot__shadow_result r = upd(s, "{\"state\":{\"reported\":{\"a\":[[[[[1]]]]]}}}");
    cr_assert_eq(r.status, 200);
    ciot__shadow_result_free(&r);
    r = upd(s, "{\"state\":{\"reported\":{\"a\":[[[[[[]]]]]]}}}"); /* empty at depth 7 */
    cr_assert_eq(r.status, 200, "%s", r.rejected);
    ciot__shadow_result_free(&r);
    r = upd(s, "{\"state\":{\"reported\":{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{}}}}}}}}}");
    cr_assert_eq(r.status, 200, "%s", r.rejected);
    ciot__shadow_result_free(&r);
    /* the empty object removed by the {} rule took its now-empty parents away, and so a */
    assert_reported(s, NULL);
    r = upd(s, "{\"state\":{\"reported\":{\"a\":[{\"b\":{\"c\":{\"d\":{\"e\":1}}}}]}}}");
    cr_assert_eq(r.status, 200);
    ciot__shadow_result_free(&r);
    r = upd(s, "{\"state\":{\"reported\":{\"a\":[{\"b\":{\"c\":{\"d\":{\"e\":[1]}}}}]}}}");
    cr_assert_eq(r.status, 400);
    ciot__shadow_result_free(&r);
    /* Very deep input (beyond any limit) is refused cleanly. */
    char deep[4200];
    size_t n = 0;
    n += (size_t)snprintf(deep, sizeof deep, "{\"state\":{\"desired\":");
    for (int i = 0; i < 1000; i++)
        deep[n++] = '[';
    for (int i = 0; i < 1000; i++)
        deep[n++] = ']';
    memcpy(deep + n, "}}", 2);
    n += 2;
    cr_assert_eq(ciot__shadow_update(&r, s, deep, n, T), 0);
    cr_assert_eq(r.status, 400);
    ciot__shadow_result_free(&r);
    ciot__shadow_free(s);
}

/* ---- merge and delta edge cases --------------------------------------------------- */

Test(shadow_doc, empty_object_value_deletes_like_null)
{
    ciot__shadow *s = stored(1, "{\"a\":{\"x\":1},\"b\":2}", NULL, T);
    ciot__shadow_result r = upd(s, "{\"state\":{\"desired\":{\"a\":{}}}}");
    cr_assert_eq(r.status, 200);
    assert_desired(s, "{\"b\":2}");
    ciot__shadow_result_free(&r);
    r = upd(s, "{\"state\":{\"desired\":{}}}");
    cr_assert_eq(r.status, 200);
    assert_desired(s, NULL);
    ciot__shadow_result_free(&r);
    ciot__shadow_free(s);
}

Test(shadow_doc, nested_objects_emptied_by_deletes_are_kept)
{
    ciot__shadow *s = stored(1, "{\"a\":{\"b\":1},\"c\":1}", "{\"c\":1}", T);
    ciot__shadow_result r = upd(s, "{\"state\":{\"desired\":{\"a\":{\"b\":null}}}}");
    cr_assert_eq(r.status, 200);
    assert_desired(s, "{\"a\":{},\"c\":1}");
    cr_assert_null(r.delta, "an empty desired object has no delta: %s", r.delta);
    ciot__shadow_result_free(&r);
    cr_assert_eq(ciot__shadow_get(&r, s, NULL, 0, T), 0);
    cr_assert_str_eq(r.accepted, "{\"state\":{\"desired\":{\"a\":{},\"c\":1},\"reported\":{\"c\":1}},\"metadata\":{"
                                 "\"desired\":{\"a\":{},\"c\":" M "},\"reported\":{\"c\":" M "}},\"version\":2,"
                                 "\"timestamp\":" TS "}");
    ciot__shadow_result_free(&r);
    /* Deleting the last key of a section removes the section. */
    r = upd(s, "{\"state\":{\"reported\":{\"c\":null}}}");
    assert_reported(s, NULL);
    cr_assert_not_null(r.delta);
    ciot__shadow_result_free(&r);
    ciot__shadow_free(s);
}

Test(shadow_doc, type_changes_replace_and_drop_nulls)
{
    ciot__shadow *s = stored(1, "{\"a\":1,\"b\":[1,2],\"c\":{\"x\":1}}", NULL, T);
    ciot__shadow_result r =
        upd(s, "{\"state\":{\"desired\":{\"a\":{\"p\":null,\"q\":2},\"b\":{\"z\":null},\"c\":\"s\"}}}");
    cr_assert_eq(r.status, 200);
    assert_desired(s, "{\"a\":{\"q\":2},\"c\":\"s\"}");
    ciot__shadow_result_free(&r);
    r = upd(s, "{\"state\":{\"desired\":{\"c\":[{\"k\":1},[2]]}}}");
    assert_accepted(&r,
                    "{\"state\":{\"desired\":{\"c\":[{\"k\":1},[2]]}},\"metadata\":{\"desired\":{\"c\":[{\"k\":" M
                    "},[" M "]]}},\"version\":3,\"timestamp\":" TS "}",
                    "{\"state\":{\"a\":{\"q\":2},\"c\":[{\"k\":1},[2]]},\"metadata\":{\"a\":{\"q\":" M "},\"c\":[{"
                    "\"k\":" M "},[" M "]]},\"version\":3,\"timestamp\":" TS "}");
    ciot__shadow_result_free(&r);
    ciot__shadow_free(s);
}

Test(shadow_doc, delta_compares_numbers_numerically_but_arrays_exactly)
{
    ciot__shadow *s = fresh();
    ciot__shadow_result r = upd(s, "{\"state\":{\"desired\":{\"t\":1,\"u\":2.5,\"v\":[1],\"w\":\"1\"},"
                                   "\"reported\":{\"t\":1.0,\"u\":2.5,\"v\":[1.0],\"w\":1}}}");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.delta, "{\"state\":{\"v\":[1],\"w\":\"1\"},\"metadata\":{\"v\":[" M "],\"w\":" M
                              "},\"version\":1,\"timestamp\":" TS "}");
    /* the echo keeps 1.0 as written */
    cr_assert_not_null(strstr(r.accepted, "\"t\":1.0"));
    ciot__shadow_result_free(&r);
    ciot__shadow_free(s);
}

Test(shadow_doc, delta_after_reported_only_update_carries_whole_delta)
{
    ciot__shadow *s = stored(1, "{\"a\":1,\"b\":2}", "{\"a\":0,\"b\":0}", T - 9);
    ciot__shadow_result r = upd(s, "{\"state\":{\"reported\":{\"a\":1}},\"clientToken\":\"r\"}");
    cr_assert_str_eq(r.delta, "{\"state\":{\"b\":2},\"metadata\":{\"b\":{\"timestamp\":1699999991}},\"version\":2,"
                              "\"timestamp\":" TS ",\"clientToken\":\"r\"}");
    ciot__shadow_result_free(&r);
    ciot__shadow_free(s);
}

Test(shadow_doc, state_delta_in_request_is_dropped)
{
    ciot__shadow *s = fresh();
    ciot__shadow_result r = upd(s, "{\"state\":{\"delta\":{\"y\":2},\"desired\":{\"x\":1}},\"other\":[1]}");
    assert_accepted(&r,
                    "{\"state\":{\"desired\":{\"x\":1}},\"metadata\":{\"desired\":{\"x\":" M
                    "}},\"version\":1,\"timestamp\":" TS "}",
                    "{\"state\":{\"x\":1},\"metadata\":{\"x\":" M "},\"version\":1,\"timestamp\":" TS "}");
    ciot__shadow_result_free(&r);
    ciot__shadow_free(s);
}

Test(shadow_doc, metadata_keeps_old_timestamps_for_untouched_leaves)
{
    ciot__shadow *s = fresh();
    ciot__shadow_result r;
    const char *a = "{\"state\":{\"desired\":{\"x\":{\"p\":1,\"q\":2}}}}";
    cr_assert_eq(ciot__shadow_update(&r, s, a, strlen(a), 100), 0);
    ciot__shadow_result_free(&r);
    const char *b = "{\"state\":{\"desired\":{\"x\":{\"q\":3}}}}";
    cr_assert_eq(ciot__shadow_update(&r, s, b, strlen(b), 200), 0);
    ciot__shadow_result_free(&r);
    cr_assert_eq(ciot__shadow_get(&r, s, "{\"clientToken\":\"g\"}", 19, 300), 0);
    cr_assert_str_eq(r.accepted, "{\"state\":{\"desired\":{\"x\":{\"p\":1,\"q\":3}},\"delta\":{\"x\":{\"p\":1,\"q\":3}}},"
                                 "\"metadata\":{\"desired\":{\"x\":{\"p\":{\"timestamp\":100},\"q\":{\"timestamp\":200}}}},"
                                 "\"version\":2,\"timestamp\":300,\"clientToken\":\"g\"}");
    ciot__shadow_result_free(&r);
    ciot__shadow_free(s);
}

/* ---- delete and versions ----------------------------------------------------------- */

Test(shadow_doc, delete_then_recreate_continues_version_within_48h)
{
    ciot__shadow *s = stored(3, "{\"a\":1}", NULL, T);
    ciot__shadow_result r;
    cr_assert_eq(ciot__shadow_delete(&r, s, "{\"clientToken\":\"d1\"}", 20, T), 0);
    cr_assert_str_eq(r.accepted, "{\"version\":3,\"timestamp\":" TS ",\"clientToken\":\"d1\"}");
    cr_assert_null(r.delta);
    cr_assert_null(r.documents);
    ciot__shadow_result_free(&r);
    cr_assert(!ciot__shadow_exists(s));
    assert_desired(s, NULL);
    cr_assert_eq(ciot__shadow_get(&r, s, NULL, 0, T), 0);
    cr_assert_eq(r.status, 404);
    ciot__shadow_result_free(&r);
    cr_assert_eq(ciot__shadow_delete(&r, s, NULL, 0, T), 0);
    cr_assert_eq(r.status, 404);
    ciot__shadow_result_free(&r);

    const char *u = "{\"state\":{\"reported\":{\"b\":1}}}";
    cr_assert_eq(ciot__shadow_update(&r, s, u, strlen(u), T + CIOT__SHADOW_RECREATE_WINDOW_S - 1), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(ciot__shadow_version(s), 4);
    assert_docs(r.documents, "previous", NULL, 0);
    assert_docs(r.documents, "current", "{\"reported\":{\"b\":1}}", 4);
    ciot__shadow_result_free(&r);

    cr_assert_eq(ciot__shadow_delete(&r, s, NULL, 0, T + 10), 0);
    cr_assert_str_eq(r.accepted, "{\"version\":4,\"timestamp\":1700000010}");
    ciot__shadow_result_free(&r);
    cr_assert_eq(ciot__shadow_update(&r, s, u, strlen(u), T + 10 + CIOT__SHADOW_RECREATE_WINDOW_S), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(ciot__shadow_version(s), 1);
    ciot__shadow_result_free(&r);
    ciot__shadow_free(s);
}

Test(shadow_doc, get_returns_full_document_with_delta)
{
    ciot__shadow *s = stored(9, "{\"a\":{\"b\":1,\"c\":[1]},\"d\":true}", "{\"a\":{\"b\":1},\"e\":0}", T);
    ciot__shadow_result r;
    cr_assert_eq(ciot__shadow_get(&r, s, "{\"clientToken\":\"x\",\"ignored\":1}", 31, T), 0);
    cr_assert_str_eq(r.accepted,
                     "{\"state\":{\"desired\":{\"a\":{\"b\":1,\"c\":[1]},\"d\":true},\"reported\":{\"a\":{\"b\":1},"
                     "\"e\":0},\"delta\":{\"a\":{\"c\":[1]},\"d\":true}},\"metadata\":{\"desired\":{\"a\":{\"b\":" M
                     ",\"c\":[" M "]},\"d\":" M "},\"reported\":{\"a\":{\"b\":" M "},\"e\":" M "}},\"version\":9,"
                     "\"timestamp\":" TS ",\"clientToken\":\"x\"}");
    json_t *delta = NULL;
    cr_assert_eq(ciot__shadow_delta(&delta, s), 0);
    assert_json_eq(delta, "{\"a\":{\"c\":[1]},\"d\":true}");
    json_decref(delta);
    ciot__shadow_result_free(&r);
    ciot__shadow_free(s);
}

/* ---- persisted form ------------------------------------------------------------------ */

Test(shadow_doc, persisted_round_trip)
{
    ciot__shadow *s = fresh();
    const char *reqs[] = {
        "{\"state\":{\"desired\":{\"a\":{\"b\":[1,{\"c\":2.5}],\"s\":\"\\u00e9\\n\"},\"n\":-3}}}",
        "{\"state\":{\"reported\":{\"a\":{\"b\":[1]},\"z\":false}}}",
        "{\"state\":{\"desired\":{\"n\":null}}}",
    };
    ciot__shadow_result r;
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(ciot__shadow_update(&r, s, reqs[i], strlen(reqs[i]), T + i), 0);
        cr_assert_eq(r.status, 200);
        ciot__shadow_result_free(&r);
    }
    char *a = NULL, *b = NULL;
    size_t al, bl;
    cr_assert_eq(ciot__shadow_save(&a, &al, s), 0);
    ciot__shadow *t = NULL;
    cr_assert_eq(ciot__shadow_load(&t, "myShadow", 8, a, al), 0);
    cr_assert_eq(ciot__shadow_save(&b, &bl, t), 0);
    cr_assert_str_eq(a, b);
    cr_assert_eq(ciot__shadow_version(t), 3);
    ciot__shadow_result r1, r2;
    cr_assert_eq(ciot__shadow_get(&r1, s, NULL, 0, T + 9), 0);
    cr_assert_eq(ciot__shadow_get(&r2, t, NULL, 0, T + 9), 0);
    cr_assert_str_eq(r1.accepted, r2.accepted);
    ciot__shadow_result_free(&r1);
    ciot__shadow_result_free(&r2);
    ciot__free(a);
    ciot__free(b);

    /* A deleted shadow keeps its version and delete time across save/load. */
    cr_assert_eq(ciot__shadow_delete(&r, t, NULL, 0, T + 20), 0);
    ciot__shadow_result_free(&r);
    cr_assert_eq(ciot__shadow_save(&a, &al, t), 0);
    cr_assert_str_eq(a, "{\"format\":1,\"exists\":false,\"version\":3,\"timestamp\":1700000002,\"deletedAt\":1700000020,"
                        "\"state\":{},\"metadata\":{}}");
    ciot__shadow *u = NULL;
    cr_assert_eq(ciot__shadow_load(&u, "myShadow", 8, a, al), 0);
    const char *q = "{\"state\":{\"desired\":{\"k\":1}}}";
    cr_assert_eq(ciot__shadow_update(&r, u, q, strlen(q), T + 30), 0);
    cr_assert_eq(ciot__shadow_version(u), 4);
    ciot__shadow_result_free(&r);
    ciot__free(a);
    ciot__shadow_free(u);
    ciot__shadow_free(t);
    ciot__shadow_free(s);
}

Test(shadow_doc, load_refuses_corrupt_documents)
{
    static const char *bad[] = {
        "",
        "nope",
        "[]",
        "{\"format\":2,\"exists\":false,\"version\":0,\"timestamp\":0,\"state\":{},\"metadata\":{}}",
        "{\"format\":1,\"exists\":1,\"version\":1,\"timestamp\":0,\"state\":{},\"metadata\":{}}",
        "{\"format\":1,\"exists\":true,\"version\":-1,\"timestamp\":0,\"state\":{},\"metadata\":{}}",
        "{\"format\":1,\"exists\":true,\"version\":0,\"timestamp\":0,\"state\":{},\"metadata\":{}}",
        "{\"format\":1,\"exists\":true,\"version\":1,\"timestamp\":\"x\",\"state\":{},\"metadata\":{}}",
        "{\"format\":1,\"exists\":true,\"version\":1,\"timestamp\":0,\"state\":[],\"metadata\":{}}",
        "{\"format\":1,\"exists\":true,\"version\":1,\"timestamp\":0,\"state\":{\"desired\":{\"a\":1}},\"metadata\":{}}",
        "{\"format\":1,\"exists\":true,\"version\":1,\"timestamp\":0,\"state\":{\"desired\":{\"a\":1}},"
        "\"metadata\":{\"desired\":{\"a\":{\"timestamp\":\"0\"}}}}",
        "{\"format\":1,\"exists\":true,\"version\":1,\"timestamp\":0,\"state\":{\"desired\":{\"a\":[1]}},"
        "\"metadata\":{\"desired\":{\"a\":{\"timestamp\":0}}}}",
        "{\"format\":1,\"exists\":true,\"version\":1,\"timestamp\":0,\"state\":{\"desired\":{\"a\":null}},"
        "\"metadata\":{\"desired\":{\"a\":{\"timestamp\":0}}}}",
        "{\"format\":1,\"exists\":true,\"version\":1,\"timestamp\":0,\"state\":{\"desired\":{}},"
        "\"metadata\":{\"desired\":{}}}",
        "{\"format\":1,\"exists\":true,\"version\":1,\"timestamp\":0,\"state\":{\"other\":{\"a\":1}},"
        "\"metadata\":{}}",
        "{\"format\":1,\"exists\":false,\"version\":1,\"timestamp\":0,\"state\":{\"desired\":{\"a\":1}},"
        "\"metadata\":{\"desired\":{\"a\":{\"timestamp\":0}}}}",
        "{\"format\":1,\"exists\":true,\"version\":1,\"timestamp\":0,\"state\":{},\"metadata\":{},\"format\":1}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ciot__shadow *s = (ciot__shadow *)&s;
        cr_assert_eq(ciot__shadow_load(&s, "n", 1, bad[i], strlen(bad[i])), CIOT_ECORRUPT, "%s", bad[i]);
        cr_assert_null(s);
    }
}

Test(shadow_doc, argument_errors)
{
    ciot__shadow *s = NULL;
    ciot__shadow_result r;
    cr_assert_eq(ciot__shadow_new(NULL, "a", 1), CIOT_EINVAL);
    cr_assert_eq(ciot__shadow_new(&s, "", 0), CIOT_EINVAL);
    cr_assert_eq(ciot__shadow_new(&s, "a\0b", 3), CIOT_EINVAL);
    char longname[CIOT__SHADOW_MAX_NAME + 1];
    memset(longname, 'x', sizeof longname);
    cr_assert_eq(ciot__shadow_new(&s, longname, sizeof longname), CIOT_EINVAL);
    cr_assert_eq(ciot__shadow_new(&s, longname, CIOT__SHADOW_MAX_NAME), 0);
    cr_assert_eq(ciot__shadow_update(NULL, s, "{}", 2, T), CIOT_EINVAL);
    cr_assert_eq(ciot__shadow_update(&r, NULL, "{}", 2, T), CIOT_EINVAL);
    cr_assert_eq(ciot__shadow_update(&r, s, NULL, 2, T), CIOT_EINVAL);
    cr_assert_eq(ciot__shadow_get(&r, NULL, NULL, 0, T), CIOT_EINVAL);
    cr_assert_eq(ciot__shadow_delete(&r, s, NULL, 1, T), CIOT_EINVAL);
    cr_assert_eq(ciot__shadow_save(NULL, NULL, s), CIOT_EINVAL);
    cr_assert_eq(ciot__shadow_load(NULL, "a", 1, "{}", 2), CIOT_EINVAL);
    cr_assert_eq(ciot__shadow_delta(NULL, s), CIOT_EINVAL);
    ciot__shadow_result_free(NULL);
    ciot__shadow_free(NULL);
    cr_assert_eq(ciot__shadow_get(&r, s, NULL, 0, T), 0);
    cr_assert_eq(r.status, 404);
    cr_assert_eq(r.rejected_len, strlen("{\"code\":404,\"message\":\"No shadow exists with name: \",\"timestamp\":" TS "}") +
                                     CIOT__SHADOW_MAX_NAME);
    ciot__shadow_result_free(&r);
    ciot__shadow_free(s);
}

/* ---- randomized: the engine against a small model ------------------------------------------ */

static uint64_t rng_state;
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static json_t *gen_value(int depth, bool in_array);

static json_t *gen_object(int depth, bool in_array)
{
    static const char *keys[] = {"a", "b", "c", "d", "e"};
    json_t *o = json_object();
    int n = (int)(rnd() % 4);
    for (int i = 0; i < n; i++)
        json_object_set_new(o, keys[rnd() % 5], gen_value(depth + 1, in_array));
    return o;
}

static json_t *gen_value(int depth, bool in_array)
{
    unsigned k = (unsigned)(rnd() % 100);
    if (depth < 5 && k < 30)
        return gen_object(depth, in_array);
    if (depth < 5 && k < 38) {
        json_t *a = json_array();
        int n = (int)(rnd() % 3);
        for (int i = 0; i < n; i++)
            json_array_append_new(a, gen_value(depth + 1, true));
        return a;
    }
    if (k < 50 && !in_array)
        return json_null();
    switch (rnd() % 6) {
    case 0: return json_integer((json_int_t)(rnd() % 3));
    case 1: return json_real((double)(rnd() % 3)); /* 1.0 vs 1 */
    case 2: return json_real(0.5);
    case 3: return json_string(rnd() % 2 ? "x" : "y");
    case 4: return json_boolean(rnd() % 2);
    default: return json_integer(-1);
    }
}

/* -- the model: plain recursive rules, written from §2.3/§2.4 -- */

static bool m_missing(json_t *v)
{
    return !v || json_is_null(v) || (json_is_object(v) && json_object_size(v) == 0);
}

/* copy without nulls/{}; NULL if nothing left only because of them */
static json_t *m_clean(json_t *p)
{
    json_t *r = json_object();
    bool dropped = false;
    const char *k;
    json_t *v;
    json_object_foreach (p, k, v) {
        if (m_missing(v)) {
            dropped = true;
        } else if (json_is_object(v)) {
            json_t *c = m_clean(v);
            if (c)
                json_object_set_new(r, k, c);
            else
                dropped = true;
        } else {
            json_object_set_new(r, k, json_deep_copy(v));
        }
    }
    if (dropped && json_object_size(r) == 0) {
        json_decref(r);
        return NULL;
    }
    return r;
}

static void m_merge(json_t *s, json_t *p)
{
    const char *k;
    json_t *v;
    json_object_foreach (p, k, v) {
        json_t *cur = json_object_get(s, k);
        if (m_missing(v)) {
            json_object_del(s, k);
        } else if (json_is_object(v) && json_is_object(cur)) {
            m_merge(cur, v);
        } else if (json_is_object(v)) {
            json_t *c = m_clean(v);
            if (c)
                json_object_set_new(s, k, c);
            else
                json_object_del(s, k);
        } else {
            json_object_set_new(s, k, json_deep_copy(v));
        }
    }
}

static void m_section(json_t **sec, json_t *p)
{
    if (!p)
        return;
    if (m_missing(p)) {
        json_decref(*sec);
        *sec = NULL;
        return;
    }
    if (!*sec)
        *sec = json_object();
    m_merge(*sec, p);
    if (json_object_size(*sec) == 0) {
        json_decref(*sec);
        *sec = NULL;
    }
}

static bool m_leaf_eq(json_t *a, json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) == json_number_value(b);
    return json_equal(a, b);
}

/* The delta as the set of desired leaves (non-objects reached through
 * objects) whose reported counterpart differs, rebuilt as an object. */
static void m_delta_leaves(json_t *out, json_t *d, json_t *r)
{
    const char *k;
    json_t *v;
    json_object_foreach (d, k, v) {
        json_t *rv = json_is_object(r) ? json_object_get(r, k) : NULL;
        if (json_is_object(v)) {
            json_t *sub = json_object();
            m_delta_leaves(sub, v, rv);
            if (json_object_size(sub))
                json_object_set_new(out, k, sub);
            else
                json_decref(sub);
        } else if (!rv || !m_leaf_eq(v, rv)) {
            json_object_set_new(out, k, json_deep_copy(v));
        }
    }
}

/* Metadata mirrors the state, and leaves the request wrote carry @p now. */
static void check_meta(json_t *v, json_t *m, long long min_ts, long long now)
{
    if (json_is_object(v)) {
        cr_assert(json_is_object(m));
        cr_assert_eq(json_object_size(m), json_object_size(v));
        const char *k;
        json_t *c;
        json_object_foreach (v, k, c)
            check_meta(c, json_object_get(m, k), min_ts, now);
    } else if (json_is_array(v)) {
        cr_assert(json_is_array(m));
        cr_assert_eq(json_array_size(m), json_array_size(v));
        for (size_t i = 0; i < json_array_size(v); i++)
            check_meta(json_array_get(v, i), json_array_get(m, i), min_ts, now);
    } else {
        cr_assert(json_is_object(m) && json_object_size(m) == 1);
        json_int_t ts = json_integer_value(json_object_get(m, "timestamp"));
        cr_assert(ts >= min_ts && ts <= now);
    }
}

/* Leaves of the request's section that are stored now carry @p now. */
static void check_written(json_t *p, json_t *stored_v, json_t *m, long long now)
{
    if (!json_is_object(p) || !json_is_object(stored_v))
        return;
    const char *k;
    json_t *v;
    json_object_foreach (p, k, v) {
        json_t *sv = json_object_get(stored_v, k), *mv = json_object_get(m, k);
        if (!sv || m_missing(v))
            continue;
        if (json_is_object(v))
            check_written(v, sv, mv, now);
        else if (!json_is_array(v))
            cr_assert_eq(json_integer_value(json_object_get(mv, "timestamp")), now);
    }
}

static void check_against_model(ciot__shadow *s, json_t *md, json_t *mr, long long base, long long now)
{
    json_t *d = ciot__shadow_desired(s), *r = ciot__shadow_reported(s);
    cr_assert((d == NULL) == (md == NULL));
    cr_assert((r == NULL) == (mr == NULL));
    if (md)
        cr_assert(json_equal(d, md));
    if (mr)
        cr_assert(json_equal(r, mr));
    json_t *delta = NULL;
    cr_assert_eq(ciot__shadow_delta(&delta, s), 0);
    json_t *want = json_object();
    if (md)
        m_delta_leaves(want, md, mr);
    if (json_object_size(want) == 0)
        cr_assert_null(delta);
    else
        cr_assert(json_equal(delta, want));
    json_decref(want);
    json_decref(delta);
    /* metadata shape via the persisted form */
    char *txt;
    size_t len;
    cr_assert_eq(ciot__shadow_save(&txt, &len, s), 0);
    json_t *p = json_loadb(txt, len, 0, NULL);
    cr_assert_not_null(p);
    json_t *meta = json_object_get(p, "metadata");
    if (d)
        check_meta(d, json_object_get(meta, "desired"), base, now);
    if (r)
        check_meta(r, json_object_get(meta, "reported"), base, now);
    json_decref(p);
    ciot__free(txt);
}

Test(shadow_doc, randomized_updates_match_the_model)
{
    rng_state = 0x5EED0005u;
    long rounds = scaled(2000);
    long accepted = 0, deltas = 0, rejected = 0;
    for (long round = 0; round < rounds; round++) {
        ciot__shadow *s = fresh();
        json_t *md = NULL, *mr = NULL;
        bool exists = false;
        long long now = 1000;
        for (int step = 0; step < 25; step++) {
            now += 1 + (long long)(rnd() % 5);
            unsigned op = (unsigned)(rnd() % 100);
            ciot__shadow_result res;
            if (op < 4) { /* delete */
                cr_assert_eq(ciot__shadow_delete(&res, s, NULL, 0, now), 0);
                cr_assert_eq(res.status, exists ? 200 : 404);
                ciot__shadow_result_free(&res);
                json_decref(md);
                json_decref(mr);
                md = mr = NULL;
                exists = false;
                continue;
            }
            json_t *req = json_object(), *state;
            if (op < 8) {
                state = json_null();
            } else {
                state = json_object();
                if (rnd() % 3)
                    json_object_set_new(state, "desired", rnd() % 8 ? gen_object(1, false) : json_null());
                if (rnd() % 3)
                    json_object_set_new(state, "reported", rnd() % 8 ? gen_object(1, false) : json_null());
            }
            json_object_set_new(req, "state", state);
            bool want_conflict = false;
            if (rnd() % 6 == 0 && exists) {
                bool right = rnd() % 2;
                json_object_set_new(req, "version",
                                    json_integer((json_int_t)ciot__shadow_version(s) + (right ? 0 : 1)));
                want_conflict = !right;
            }
            char *txt = json_dumps(req, JSON_COMPACT);
            uint64_t v0 = ciot__shadow_version(s);
            cr_assert_eq(ciot__shadow_update(&res, s, txt, strlen(txt), now), 0);
            if (want_conflict) {
                cr_assert_eq(res.status, 409);
                rejected++;
            } else {
                cr_assert_eq(res.status, 200, "%s -> %s", txt, res.rejected);
                accepted++;
                if (json_is_null(state)) {
                    json_decref(md);
                    json_decref(mr);
                    md = mr = NULL;
                } else {
                    m_section(&md, json_object_get(state, "desired"));
                    m_section(&mr, json_object_get(state, "reported"));
                }
                cr_assert_eq(ciot__shadow_version(s), exists ? v0 + 1 : (v0 ? v0 + 1 : 1));
                exists = true;
                /* The /update/delta document agrees with the delta of the state. */
                json_t *delta = NULL;
                cr_assert_eq(ciot__shadow_delta(&delta, s), 0);
                cr_assert_eq(delta == NULL, res.delta == NULL);
                if (delta) {
                    deltas++;
                    json_t *dd = json_loads(res.delta, 0, NULL);
                    cr_assert(json_equal(json_object_get(dd, "state"), delta));
                    check_meta(delta, json_object_get(dd, "metadata"), 1000, now);
                    json_decref(dd);
                }
                json_decref(delta);
                /* Leaves this request wrote carry the request time. */
                if (json_is_object(state)) {
                    json_t *pd = json_object_get(state, "desired"), *pr = json_object_get(state, "reported");
                    char *saved;
                    size_t sl;
                    cr_assert_eq(ciot__shadow_save(&saved, &sl, s), 0);
                    json_t *p = json_loadb(saved, sl, 0, NULL);
                    json_t *meta = json_object_get(p, "metadata");
                    check_written(pd, ciot__shadow_desired(s), json_object_get(meta, "desired"), now);
                    check_written(pr, ciot__shadow_reported(s), json_object_get(meta, "reported"), now);
                    json_decref(p);
                    ciot__free(saved);
                }
            }
            ciot__shadow_result_free(&res);
            free(txt);
            json_decref(req);
            check_against_model(s, md, mr, 1000, now);
        }
        json_decref(md);
        json_decref(mr);
        ciot__shadow_free(s);
    }
    cr_assert_gt(accepted, rounds * 10);
    cr_assert_gt(deltas, rounds);
    cr_assert_gt(rejected, 0);
}

/* ---- device side: a local copy kept from the service's documents ------------------------- */

static void assert_same_shadow(const ciot__shadow *a, const ciot__shadow *b)
{
    char *x, *y;
    size_t xl, yl;
    cr_assert_eq(ciot__shadow_save(&x, &xl, a), 0);
    cr_assert_eq(ciot__shadow_save(&y, &yl, b), 0);
    cr_assert_str_eq(x, y);
    ciot__free(x);
    ciot__free(y);
}

Test(shadow_doc, device_copy_follows_accepted_documents)
{
    rng_state = 0xD371CEu;
    long rounds = scaled(300);
    for (long round = 0; round < rounds; round++) {
        ciot__shadow *svc = fresh(), *dev = fresh();
        long long now = 5000;
        for (int step = 0; step < 20; step++) {
            now += 1;
            json_t *req = json_object(), *state = json_object();
            if (rnd() % 2)
                json_object_set_new(state, "desired", rnd() % 8 ? gen_object(1, false) : json_null());
            if (rnd() % 2)
                json_object_set_new(state, "reported", rnd() % 8 ? gen_object(1, false) : json_null());
            json_object_set_new(req, "state", rnd() % 20 ? state : json_null());
            if (json_is_null(json_object_get(req, "state")))
                json_decref(state);
            char *txt = json_dumps(req, JSON_COMPACT);
            ciot__shadow_result r;
            cr_assert_eq(ciot__shadow_update(&r, svc, txt, strlen(txt), now), 0);
            cr_assert_eq(r.status, 200);
            bool applied, gap;
            cr_assert_eq(ciot__shadow_apply(dev, CIOT__SHADOW_DOC_ACCEPTED, r.accepted, r.accepted_len, &applied, &gap), 0,
                         "%s", r.accepted);
            cr_assert(applied);
            cr_assert_eq(gap, step == 0);
            assert_same_shadow(svc, dev);
            if (r.delta) { /* the delta is already in the copy: same version, stale */
                cr_assert_eq(ciot__shadow_apply(dev, CIOT__SHADOW_DOC_DELTA, r.delta, r.delta_len, &applied, NULL), 0);
                cr_assert(!applied);
            }
            ciot__shadow_result_free(&r);
            free(txt);
            json_decref(req);
        }
        /* A /get document gives the same copy to a device that saw nothing. */
        ciot__shadow *late = fresh();
        ciot__shadow_result g;
        cr_assert_eq(ciot__shadow_get(&g, svc, NULL, 0, now), 0);
        bool applied;
        cr_assert_eq(ciot__shadow_apply(late, CIOT__SHADOW_DOC_GET, g.accepted, g.accepted_len, &applied, NULL), 0);
        cr_assert(applied);
        cr_assert_eq(ciot__shadow_version(late), ciot__shadow_version(svc));
        json_t *a = ciot__shadow_desired(late), *b = ciot__shadow_desired(svc);
        cr_assert((a == NULL) == (b == NULL));
        cr_assert(!a || json_equal(a, b));
        a = ciot__shadow_reported(late);
        b = ciot__shadow_reported(svc);
        cr_assert((a == NULL) == (b == NULL));
        cr_assert(!a || json_equal(a, b));
        ciot__shadow_result_free(&g);
        ciot__shadow_free(late);
        ciot__shadow_free(svc);
        ciot__shadow_free(dev);
    }
}

Test(shadow_doc, device_copy_applies_new_deltas_and_ignores_stale_ones)
{
    ciot__shadow *dev = stored(4, "{\"fan\":\"low\"}", "{\"fan\":\"low\"}", T);
    bool applied, gap;
    const char *d5 = "{\"state\":{\"fan\":\"high\",\"x\":{\"y\":1}},\"metadata\":{},\"version\":5,\"timestamp\":" TS "}";
    cr_assert_eq(ciot__shadow_apply(dev, CIOT__SHADOW_DOC_DELTA, d5, strlen(d5), &applied, &gap), 0);
    cr_assert(applied);
    cr_assert(!gap);
    assert_desired(dev, "{\"fan\":\"high\",\"x\":{\"y\":1}}");
    cr_assert_eq(ciot__shadow_version(dev), 5);
    const char *d4 = "{\"state\":{\"fan\":\"off\"},\"version\":4,\"timestamp\":" TS "}";
    cr_assert_eq(ciot__shadow_apply(dev, CIOT__SHADOW_DOC_DELTA, d4, strlen(d4), &applied, &gap), 0);
    cr_assert(!applied);
    assert_desired(dev, "{\"fan\":\"high\",\"x\":{\"y\":1}}");
    const char *d9 = "{\"state\":{\"fan\":\"off\"},\"version\":9,\"timestamp\":" TS "}";
    cr_assert_eq(ciot__shadow_apply(dev, CIOT__SHADOW_DOC_DELTA, d9, strlen(d9), &applied, &gap), 0);
    cr_assert(applied);
    cr_assert(gap);
    /* Malformed documents change nothing. */
    static const char *bad[] = {
        "{}",
        "nope",
        "{\"state\":{},\"version\":10,\"timestamp\":1}",
        "{\"state\":{\"a\":[null]},\"version\":10,\"timestamp\":1}",
        "{\"state\":{\"a\":1},\"version\":\"10\",\"timestamp\":1}",
        "{\"state\":{\"a\":1},\"version\":10}",
        "{\"state\":{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{\"g\":1}}}}}}},\"version\":10,\"timestamp\":1}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(ciot__shadow_apply(dev, CIOT__SHADOW_DOC_DELTA, bad[i], strlen(bad[i]), &applied, NULL),
                     CIOT_EPROTOCOL, "%s", bad[i]);
        cr_assert(!applied);
    }
    const char *g = "{\"state\":{\"desired\":{\"a\":1}},\"metadata\":{\"desired\":{\"a\":[]}},\"version\":10}";
    cr_assert_eq(ciot__shadow_apply(dev, CIOT__SHADOW_DOC_GET, g, strlen(g), &applied, NULL), CIOT_EPROTOCOL);
    const char *u = "{\"state\":{\"desired\":5},\"version\":10,\"timestamp\":1}";
    cr_assert_eq(ciot__shadow_apply(dev, CIOT__SHADOW_DOC_ACCEPTED, u, strlen(u), &applied, NULL), CIOT_EPROTOCOL);
    cr_assert_eq(ciot__shadow_apply(dev, 99, u, strlen(u), &applied, NULL), CIOT_EINVAL);
    cr_assert_eq(ciot__shadow_version(dev), 9);
    assert_desired(dev, "{\"fan\":\"off\",\"x\":{\"y\":1}}");
    ciot__shadow_free(dev);
}

Test(shadow_doc, extreme_clock_values_are_handled)
{
    ciot__shadow *s = stored(2, "{\"a\":1}", NULL, 0);
    ciot__shadow_result r;
    cr_assert_eq(ciot__shadow_delete(&r, s, NULL, 0, INT64_MIN), 0);
    ciot__shadow_result_free(&r);
    const char *u = "{\"state\":{\"desired\":{\"a\":2}}}";
    cr_assert_eq(ciot__shadow_update(&r, s, u, strlen(u), INT64_MAX), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(ciot__shadow_version(s), 1); /* long after the delete: restarts */
    cr_assert_not_null(strstr(r.accepted, "\"timestamp\":9223372036854775807"));
    ciot__shadow_result_free(&r);
    cr_assert_eq(ciot__shadow_delete(&r, s, NULL, 0, INT64_MAX), 0);
    ciot__shadow_result_free(&r);
    cr_assert_eq(ciot__shadow_update(&r, s, u, strlen(u), INT64_MIN), 0); /* clock went back */
    cr_assert_eq(ciot__shadow_version(s), 2);
    ciot__shadow_result_free(&r);
    ciot__shadow_free(s);
}

/* ---- out of memory inside jansson ------------------------------------------ */

static long j_allocs, j_fail_at = -1;

/* Only the j_fail_at-th allocation fails: a passing shortage, so that the
 * engine's own rejection (which allocates too) would get through. */
static void *j_failing_malloc(size_t n)
{
    if (j_fail_at >= 0 && j_allocs++ == j_fail_at)
        return NULL;
    return malloc(n);
}

/* jansson reports most of its allocation failures as syntax errors; the
 * engine must answer them CIOT_ENOMEM (nothing sent, shadow unchanged), never
 * a 400 "Invalid JSON" rejection of a valid request. */
Test(shadow_doc, jansson_out_of_memory_is_not_reported_as_invalid_json)
{
    const char *u = "{\"state\":{\"desired\":{\"a\":{\"b\":[1,2,{\"c\":\"x\"}]},\"d\":true}},"
                    "\"clientToken\":\"tok\"}";
    int failures = 0;
    json_set_alloc_funcs(j_failing_malloc, free);
    for (long k = 0; k < 500; k++) {
        ciot__shadow *s = fresh();
        ciot__shadow_result r;
        j_allocs = 0;
        j_fail_at = k;
        int rc = ciot__shadow_update(&r, s, u, strlen(u), 1000);
        j_fail_at = -1;
        if (j_allocs <= k) { /* no allocation failed: done */
            cr_assert_eq(rc, 0);
            cr_assert_eq(r.status, 200);
            ciot__shadow_result_free(&r);
            ciot__shadow_free(s);
            break;
        }
        cr_assert_eq(rc, CIOT_ENOMEM, "allocation %ld: rc %d, status %d (%s)", k, rc,
                     rc == 0 ? r.status : 0, rc == 0 && r.rejected ? r.rejected : "");
        cr_assert_not(ciot__shadow_exists(s), "allocation %ld changed the shadow", k);
        ciot__shadow_free(s);
        failures++;
    }
    json_set_alloc_funcs(malloc, free);
    cr_assert_gt(failures, 5);
    /* Bad requests are still told apart from allocation failures. */
    ciot__shadow *s = fresh();
    ciot__shadow_result r;
    cr_assert_eq(ciot__shadow_update(&r, s, "{\"state\":", 9, 1000), 0);
    cr_assert_eq(r.status, 400);
    ciot__shadow_result_free(&r);
    cr_assert_eq(ciot__shadow_update(&r, s, "5", 1, 1000), 0);
    cr_assert_eq(r.status, 400);
    ciot__shadow_result_free(&r);
    cr_assert_eq(ciot__shadow_update(&r, s, "{\"a\":\"\xff\"}", 8, 1000), 0);
    cr_assert_eq(r.status, 415);
    ciot__shadow_result_free(&r);
    ciot__shadow_free(s);
}
