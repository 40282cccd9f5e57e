/* The Azure device twin engine (protocols.md §4.5–§4.7): the worked
 * examples of §4.5 byte for byte, the merge rules, every limit at and just
 * past its boundary, the size rule, the persisted form and its corruption
 * checks, the device-side copy (stale, gap, $metadata), and a randomized
 * patch sequence checked against save/load and the device copy. */
#include "core/twin_doc.h"
#include "internal.h"

#include <cloudiot/error.h>

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double test_scale(void)
{
    const char *s = getenv("CIOT_TEST_SCALE");
    double f = s ? atof(s) : 1.0;
    return f > 0 ? f : 1.0;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p)
        abort(); /* (cr_assert is not known to end the function) */
    return p;
}

static ciot__twin *fresh(void)
{
    ciot__twin *t = NULL;
    cr_assert_eq(ciot__twin_new(&t), 0);
    cr_assert_not_null(t);
    return t;
}

static ciot__twin *loaded(const char *json)
{
    ciot__twin *t = NULL;
    cr_assert_eq(ciot__twin_load(&t, json, strlen(json)), 0, "load %s", json);
    return t;
}

static void expect_get(const ciot__twin *t, const char *want)
{
    char *s = NULL;
    size_t len = 0;
    cr_assert_eq(ciot__twin_get(&s, &len, t), 0);
    cr_assert_eq(len, strlen(s));
    cr_assert_str_eq(s, want);
    ciot__free(s);
}

static char *saved(const ciot__twin *t)
{
    char *s = NULL;
    size_t len = 0;
    cr_assert_eq(ciot__twin_save(&s, &len, t), 0);
    cr_assert_eq(len, strlen(s));
    return s;
}

/* Patches @p t, expects @p status, returns the result (caller frees). */
static ciot__twin_result patch(ciot__twin *t, int section, const char *p, int status)
{
    ciot__twin_result r;
    cr_assert_eq(ciot__twin_patch(&r, t, section, p, strlen(p)), 0);
    cr_assert_eq(r.status, status, "patch %.80s: status %d, want %d (%s)", p, r.status, status,
                 r.message);
    return r;
}

/* A rejected patch leaves the twin byte-identical and keeps the version. */
static void rejected(ciot__twin *t, int section, const char *p, size_t len, int status,
                     const char *msg_part)
{
    char *before = saved(t);
    ciot__twin_result r;
    cr_assert_eq(ciot__twin_patch(&r, t, section, p, len), 0);
    cr_assert_eq(r.status, status, "patch %.60s: %d want %d", p, r.status, status);
    cr_assert_not_null(strstr(r.message, msg_part), "message \"%s\" lacks \"%s\"", r.message,
                       msg_part);
    cr_assert_null(r.notification);
    cr_assert_eq(r.version, 0);
    char *after = saved(t);
    cr_assert_str_eq(before, after);
    ciot__free(before);
    ciot__free(after);
    ciot__twin_result_free(&r);
}

#define E45                                                                                        \
    "{\"format\":1,\"desired\":{\"telemetryInterval\":30},\"desiredVersion\":12,"                  \
    "\"reported\":{\"firmware\":\"1.1.0\"},\"reportedVersion\":5}"

/* ---- §4.5 worked examples ----------------------------------------------- */

Test(twin_doc, new_twin_is_empty_at_version_1)
{
    ciot__twin *t = fresh();
    expect_get(t, "{\"desired\":{\"$version\":1},\"reported\":{\"$version\":1}}");
    cr_assert_eq(ciot__twin_version(t, CIOT__TWIN_DESIRED), 1);
    cr_assert_eq(ciot__twin_version(t, CIOT__TWIN_REPORTED), 1);
    cr_assert_eq(ciot__twin_size(t, CIOT__TWIN_DESIRED), 0);
    ciot__twin_free(t);
}

Test(twin_doc, get_example_byte_for_byte)
{
    ciot__twin *t = loaded(E45);
    expect_get(t, "{\"desired\":{\"telemetryInterval\":30,\"$version\":12},"
                  "\"reported\":{\"firmware\":\"1.1.0\",\"$version\":5}}");
    ciot__twin_free(t);
}

Test(twin_doc, reported_patch_example_204_version_6)
{
    ciot__twin *t = loaded(E45);
    ciot__twin_result r =
        patch(t, CIOT__TWIN_REPORTED, "{\"firmware\":\"1.2.0\",\"battery\":null}", 204);
    cr_assert_eq(r.version, 6);
    cr_assert_null(r.notification);
    cr_assert_str_eq(r.message, "");
    ciot__twin_result_free(&r);
    expect_get(t, "{\"desired\":{\"telemetryInterval\":30,\"$version\":12},"
                  "\"reported\":{\"firmware\":\"1.2.0\",\"$version\":6}}");
    ciot__twin_free(t);
}

Test(twin_doc, desired_patch_example_notification)
{
    ciot__twin *t = loaded("{\"format\":1,\"desired\":{\"telemetryInterval\":30,\"route\":\"a\"},"
                           "\"desiredVersion\":12,\"reported\":{},\"reportedVersion\":1}");
    ciot__twin_result r =
        patch(t, CIOT__TWIN_DESIRED, "{\"telemetryInterval\":60,\"route\":null}", 200);
    cr_assert_eq(r.version, 13);
    cr_assert_str_eq(r.notification, "{\"telemetryInterval\":60,\"route\":null,\"$version\":13}");
    cr_assert_eq(r.notification_len, strlen(r.notification));
    ciot__twin_result_free(&r);
    cr_assert_null(r.notification);
    expect_get(t, "{\"desired\":{\"telemetryInterval\":60,\"$version\":13},"
                  "\"reported\":{\"$version\":1}}");
    ciot__twin_free(t);
}

/* ---- merge --------------------------------------------------------------- */

Test(twin_doc, merge_is_recursive_and_null_removes)
{
    ciot__twin *t = fresh();
    ciot__twin_result r =
        patch(t, CIOT__TWIN_REPORTED,
              "{\"a\":{\"b\":1,\"c\":{\"d\":true,\"e\":\"x\"}},\"arr\":[1,2,3],\"s\":\"v\"}", 204);
    cr_assert_eq(r.version, 2);
    r = patch(t, CIOT__TWIN_REPORTED,
              "{\"a\":{\"c\":{\"d\":null,\"f\":2.5}},\"arr\":[4],\"gone\":null}", 204);
    cr_assert_eq(r.version, 3);
    expect_get(t, "{\"desired\":{\"$version\":1},\"reported\":{\"a\":{\"b\":1,\"c\":{\"e\":\"x\","
                  "\"f\":2.5}},\"arr\":[4],\"s\":\"v\",\"$version\":3}}");
    /* type changes both ways; an object with only nulls onto a scalar
     * leaves {} */
    r = patch(t, CIOT__TWIN_REPORTED,
              "{\"s\":{\"x\":null,\"y\":[{\"z\":1}]},\"a\":7,\"n\":{\"m\":null}}", 204);
    expect_get(t, "{\"desired\":{\"$version\":1},\"reported\":{\"a\":7,\"arr\":[4],"
                  "\"s\":{\"y\":[{\"z\":1}]},\"n\":{},\"$version\":4}}");
    ciot__twin_free(t);
}

Test(twin_doc, empty_patch_still_bumps_version)
{
    ciot__twin *t = fresh();
    ciot__twin_result r = patch(t, CIOT__TWIN_REPORTED, "{}", 204);
    cr_assert_eq(r.version, 2);
    r = patch(t, CIOT__TWIN_REPORTED, " { \"x\" : null } ", 204);
    cr_assert_eq(r.version, 3);
    r = patch(t, CIOT__TWIN_DESIRED, "{}", 200);
    cr_assert_eq(r.version, 2);
    cr_assert_str_eq(r.notification, "{\"$version\":2}");
    ciot__twin_result_free(&r);
    ciot__twin_free(t);
}

Test(twin_doc, sections_are_independent)
{
    ciot__twin *t = fresh();
    ciot__twin_result r = patch(t, CIOT__TWIN_DESIRED, "{\"k\":1}", 200);
    ciot__twin_result_free(&r);
    r = patch(t, CIOT__TWIN_DESIRED, "{\"k\":2}", 200);
    ciot__twin_result_free(&r);
    r = patch(t, CIOT__TWIN_REPORTED, "{\"k\":\"r\"}", 204);
    expect_get(t,
               "{\"desired\":{\"k\":2,\"$version\":3},\"reported\":{\"k\":\"r\",\"$version\":2}}");
    ciot__twin_free(t);
}

Test(twin_doc, numbers_keep_their_form)
{
    ciot__twin *t = fresh();
    ciot__twin_result r = patch(t, CIOT__TWIN_REPORTED,
                                "{\"f\":0.1,\"e\":1e300,\"i\":-42,\"z\":0,\"u\":\"\\u00e9\"}", 204);
    expect_get(t, "{\"desired\":{\"$version\":1},\"reported\":{\"f\":0.1,\"e\":1e300,\"i\":-42,"
                  "\"z\":0,\"u\":\"\xc3\xa9\",\"$version\":2}}");
    (void)r;
    ciot__twin_free(t);
}

/* ---- rules -------------------------------------------------------------------- */

Test(twin_doc, malformed_payloads_are_400)
{
    ciot__twin *t = fresh();
    rejected(t, CIOT__TWIN_REPORTED, "", 0, 400, "malformed");
    rejected(t, CIOT__TWIN_REPORTED, "{", 1, 400, "malformed");
    rejected(t, CIOT__TWIN_REPORTED, "{\"a\":1}x", 8, 400, "malformed");
    rejected(t, CIOT__TWIN_REPORTED, "{\"a\":1,\"a\":2}", 13, 400, "malformed");
    rejected(t, CIOT__TWIN_REPORTED, "{\"a\":\"\xff\"}", 8, 400, "malformed");
    rejected(t, CIOT__TWIN_REPORTED, "{\"a\":\"\\u0000\"}", 14, 400, "malformed");
    rejected(t, CIOT__TWIN_DESIRED, "[1]", 3, 400, "object");
    rejected(t, CIOT__TWIN_DESIRED, "\"s\"", 3, 400, "object");
    rejected(t, CIOT__TWIN_DESIRED, "null", 4, 400, "object");
    rejected(t, CIOT__TWIN_DESIRED, "{\"a\":[1,null]}", 14, 400, "null is not allowed");
    rejected(t, CIOT__TWIN_DESIRED, "{\"a\":[[{\"b\":null}]]}", 20, 400, "null is not allowed");
    ciot__twin_free(t);
}

Test(twin_doc, key_rules)
{
    ciot__twin *t = fresh();
    const char *bad[] = {"{\"a.b\":1}",      "{\"$version\":1}",   "{\"a b\":1}",
                         "{\"\":1}",         "{\"a\\tb\":1}",      "{\"a\\u007f\":1}",
                         "{\"a\\u0085\":1}", "{\"o\":{\"x.y\":1}}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        rejected(t, CIOT__TWIN_REPORTED, bad[i], strlen(bad[i]), 400, "property name");
    /* 1024-byte key accepted, 1025 refused; non-ASCII and punctuation fine */
    char buf[1100];
    memset(buf, 'k', sizeof buf);
    memcpy(buf, "{\"", 2);
    memcpy(buf + 2 + 1024, "\":1}", 5);
    ciot__twin_result r = patch(t, CIOT__TWIN_REPORTED, buf, 204);
    memset(buf, 'k', sizeof buf);
    memcpy(buf, "{\"", 2);
    memcpy(buf + 2 + 1025, "\":1}", 5);
    rejected(t, CIOT__TWIN_REPORTED, buf, strlen(buf), 400, "property name");
    r = patch(t, CIOT__TWIN_REPORTED, "{\"\xc3\xa9t\xc3\xa9-_:@#\":1}", 204);
    cr_assert_eq(r.version, 3);
    ciot__twin_free(t);
}

Test(twin_doc, value_limits)
{
    ciot__twin *t = fresh();
    char *buf = xmalloc(5000);
    memcpy(buf, "{\"s\":\"", 6);
    memset(buf + 6, 'v', 4096);
    memcpy(buf + 6 + 4096, "\"}", 3);
    ciot__twin_result r = patch(t, CIOT__TWIN_REPORTED, buf, 204); /* 4096 bytes ok */
    memset(buf + 6, 'v', 4097);
    memcpy(buf + 6 + 4097, "\"}", 3);
    rejected(t, CIOT__TWIN_REPORTED, buf, strlen(buf), 400, "4096");
    free(buf);
    r = patch(t, CIOT__TWIN_REPORTED, "{\"max\":4503599627370495,\"min\":-4503599627370496}", 204);
    cr_assert_eq(r.version, 3);
    rejected(t, CIOT__TWIN_REPORTED, "{\"i\":4503599627370496}", 22, 400, "integer");
    rejected(t, CIOT__TWIN_REPORTED, "{\"i\":-4503599627370497}", 23, 400, "integer");
    rejected(t, CIOT__TWIN_REPORTED, "{\"i\":[4503599627370496]}", 24, 400, "integer");
    rejected(t, CIOT__TWIN_REPORTED, "{\"i\":99999999999999999999}", 26, 400, "malformed");
    ciot__twin_free(t);
}

/* {"a":<levels containers>1...}: objects {"a":…}, or alternately arrays. */
static void append(char *s, size_t *n, const char *t)
{
    size_t l = strlen(t);
    memcpy(s + *n, t, l + 1);
    *n += l;
}

static char *nested(int levels, bool arrays)
{
    char *s = xmalloc(8 * (size_t)levels + 32);
    size_t n = 0;
    append(s, &n, "{\"a\":");
    for (int i = 0; i < levels; i++)
        append(s, &n, arrays && i % 2 ? "[" : "{\"a\":");
    append(s, &n, "1");
    for (int i = levels - 1; i >= 0; i--)
        append(s, &n, arrays && i % 2 ? "]" : "}");
    append(s, &n, "}");
    return s;
}

Test(twin_doc, depth_ten_levels_below_the_section)
{
    ciot__twin *t = fresh();
    char *ok = nested(10, false), *bad = nested(11, false);
    ciot__twin_result r = patch(t, CIOT__TWIN_DESIRED, ok, 200);
    ciot__twin_result_free(&r);
    rejected(t, CIOT__TWIN_DESIRED, bad, strlen(bad), 400, "deeper");
    free(ok);
    free(bad);
    ok = nested(10, true);
    bad = nested(11, true);
    r = patch(t, CIOT__TWIN_REPORTED, ok, 204);
    rejected(t, CIOT__TWIN_REPORTED, bad, strlen(bad), 400, "deeper");
    free(ok);
    free(bad);
    /* an empty object past the limit counts too */
    rejected(t, CIOT__TWIN_REPORTED,
             "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{}}}}}}}"
             "}}}}}",
             strlen("{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{"
                    "}}}}}}}}}}}}"),
             400, "deeper");
    ciot__twin_free(t);
}

Test(twin_doc, size_is_counted_as_the_hub_does)
{
    ciot__twin *t = fresh();
    /* keys 1+2+1+1+1, number 8, bool 4, string "é\u0001x" = 2 chars
     * (the control is not counted), nested object: key 1 + bool 4,
     * array of a number and a string "ab": 8 + 2 */
    ciot__twin_result r = patch(
        t, CIOT__TWIN_REPORTED,
        "{\"n\":1.5,\"bb\":true,\"s\":\"\xc3\xa9\\u0001x\",\"o\":{\"f\":false},\"a\":[3,\"ab\"]}",
        204);
    cr_assert_eq(ciot__twin_size(t, CIOT__TWIN_REPORTED),
                 (1 + 8) + (2 + 4) + (1 + 2) + (1 + 1 + 4) + (1 + 8 + 2));
    cr_assert_eq(ciot__twin_size(t, 7), 0);
    (void)r;
    ciot__twin_free(t);
}

/* 8 members "k0".."k7": 7 strings of 4096 chars and one of @p last. */
static char *sized(size_t last)
{
    char *s = xmalloc(40000);
    size_t n = 0;
    s[n++] = '{';
    for (int i = 0; i < 8; i++) {
        size_t l = i < 7 ? 4096 : last;
        n += (size_t)sprintf(s + n, "%s\"k%d\":\"", i ? "," : "", i);
        memset(s + n, 'x', l);
        n += l;
        s[n++] = '"';
    }
    s[n++] = '}';
    s[n] = '\0';
    return s;
}

Test(twin_doc, section_limit_32k_is_413)
{
    ciot__twin *t = fresh();
    char *ok = sized(4080); /* 8 * 2 + 7 * 4096 + 4080 = 32768 */
    ciot__twin_result r = patch(t, CIOT__TWIN_REPORTED, ok, 204);
    cr_assert_eq(ciot__twin_size(t, CIOT__TWIN_REPORTED), 32768);
    rejected(t, CIOT__TWIN_REPORTED, "{\"y\":true}", 10, 413, "32 KB");
    /* replacing a value by a shorter one is fine; a removal too */
    r = patch(t, CIOT__TWIN_REPORTED, "{\"k7\":\"short\",\"k0\":null}", 204);
    cr_assert_eq(r.version, 3);
    cr_assert_eq(ciot__twin_size(t, CIOT__TWIN_REPORTED), 6 * (2 + 4096) + 2 + 5);
    ciot__twin *d = fresh();
    char *bad = sized(4081);
    rejected(d, CIOT__TWIN_DESIRED, bad, strlen(bad), 413, "32 KB");
    free(ok);
    free(bad);
    ciot__twin_free(t);
    ciot__twin_free(d);
}

Test(twin_doc, payload_over_128k_is_413_before_parsing)
{
    ciot__twin *t = fresh();
    size_t n = CIOT__TWIN_MAX_PATCH + 1;
    char *p = xmalloc(n);
    memset(p, ' ', n); /* would parse as nothing: the size check comes first */
    rejected(t, CIOT__TWIN_REPORTED, p, n, 413, "128 KB");
    free(p);
    ciot__twin_free(t);
}

Test(twin_doc, invalid_arguments)
{
    ciot__twin *t = fresh();
    ciot__twin_result r;
    cr_assert_eq(ciot__twin_new(NULL), CIOT_EINVAL);
    cr_assert_eq(ciot__twin_patch(NULL, t, 0, "{}", 2), CIOT_EINVAL);
    cr_assert_eq(ciot__twin_patch(&r, NULL, 0, "{}", 2), CIOT_EINVAL);
    cr_assert_eq(ciot__twin_patch(&r, t, 2, "{}", 2), CIOT_EINVAL);
    cr_assert_eq(ciot__twin_patch(&r, t, -1, "{}", 2), CIOT_EINVAL);
    cr_assert_eq(ciot__twin_patch(&r, t, 0, NULL, 2), CIOT_EINVAL);
    char *s = NULL;
    size_t len;
    cr_assert_eq(ciot__twin_get(NULL, &len, t), CIOT_EINVAL);
    cr_assert_eq(ciot__twin_get(&s, &len, NULL), CIOT_EINVAL);
    cr_assert_eq(ciot__twin_save(&s, &len, NULL), CIOT_EINVAL);
    cr_assert_eq(ciot__twin_save(NULL, &len, t), CIOT_EINVAL);
    ciot__twin *o = (ciot__twin *)1;
    cr_assert_eq(ciot__twin_load(NULL, "{}", 2), CIOT_EINVAL);
    cr_assert_eq(ciot__twin_load(&o, NULL, 2), CIOT_EINVAL);
    cr_assert_eq(ciot__twin_apply(NULL, CIOT__TWIN_DOC_GET, "{}", 2, NULL, NULL), CIOT_EINVAL);
    cr_assert_eq(ciot__twin_apply(t, 0, "{}", 2, NULL, NULL), CIOT_EINVAL);
    cr_assert_eq(ciot__twin_apply(t, 3, "{}", 2, NULL, NULL), CIOT_EINVAL);
    cr_assert_eq(ciot__twin_apply(t, CIOT__TWIN_DOC_GET, NULL, 2, NULL, NULL), CIOT_EINVAL);
    cr_assert_eq(ciot__twin_version(NULL, 0), 0);
    cr_assert_eq(ciot__twin_version(t, 2), 0);
    cr_assert_null(ciot__twin_section(t, -1));
    cr_assert_null(ciot__twin_section(NULL, 0));
    ciot__twin_free(NULL);
    ciot__twin_result_free(NULL);
    ciot__twin_free(t);
}

/* ---- persisted form -------------------------------------------------------------- */

Test(twin_doc, save_load_round_trip)
{
    ciot__twin *t = fresh();
    ciot__twin_result r =
        patch(t, CIOT__TWIN_DESIRED, "{\"a\":{\"b\":[1,\"x\",{\"c\":false}]},\"d\":0.25}", 200);
    ciot__twin_result_free(&r);
    r = patch(t, CIOT__TWIN_REPORTED, "{\"fw\":\"1.0\"}", 204);
    char *s = saved(t);
    cr_assert_str_eq(s,
                     "{\"format\":1,\"desired\":{\"a\":{\"b\":[1,\"x\",{\"c\":false}]},\"d\":0.25},"
                     "\"desiredVersion\":2,\"reported\":{\"fw\":\"1.0\"},\"reportedVersion\":2}");
    ciot__twin *u = loaded(s);
    char *s2 = saved(u);
    cr_assert_str_eq(s, s2);
    cr_assert_eq(ciot__twin_version(u, CIOT__TWIN_DESIRED), 2);
    ciot__free(s);
    ciot__free(s2);
    ciot__twin_free(t);
    ciot__twin_free(u);
}

Test(twin_doc, load_rejects_corruption)
{
    const char *bad[] = {
        "",
        "{",
        "[]",
        "{\"format\":1}",
        "{\"format\":2,\"desired\":{},\"desiredVersion\":1,\"reported\":{},\"reportedVersion\":1}",
        "{\"format\":\"1\",\"desired\":{},\"desiredVersion\":1,\"reported\":{},\"reportedVersion\":"
        "1}",
        "{\"format\":1,\"desired\":{},\"desiredVersion\":0,\"reported\":{},\"reportedVersion\":1}",
        "{\"format\":1,\"desired\":{},\"desiredVersion\":1,\"reported\":{},\"reportedVersion\":-3}",
        "{\"format\":1,\"desired\":{},\"desiredVersion\":1.0,\"reported\":{},\"reportedVersion\":"
        "1}",
        "{\"format\":1,\"desired\":[],\"desiredVersion\":1,\"reported\":{},\"reportedVersion\":1}",
        "{\"format\":1,\"desired\":{},\"desiredVersion\":1,\"reported\":{\"a\":null},"
        "\"reportedVersion\":1}",
        "{\"format\":1,\"desired\":{\"a.b\":1},\"desiredVersion\":1,\"reported\":{},"
        "\"reportedVersion\":1}",
        "{\"format\":1,\"desired\":{},\"desiredVersion\":1,\"reported\":{},\"reportedVersion\":1,"
        "\"x\":1}",
        "{\"format\":1,\"desired\":{},\"desiredVersion\":1,\"reported\":{},\"reportedVersion\":1,"
        "\"format\":1}",
        "{\"format\":1,\"desired\":{},\"desiredVersion\":1,\"reported\":{},\"rep\":1}",
        "{\"format\":1,\"desired\":{\"i\":9007199254740993},\"desiredVersion\":1,\"reported\":{},"
        "\"reportedVersion\":1}",
        "{\"format\":1,\"desired\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{"
        "\"a\":{\"a\":{\"a\":1}}}}}}}}}}}},"
        "\"desiredVersion\":1,\"reported\":{},\"reportedVersion\":1}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ciot__twin *t = (ciot__twin *)1;
        cr_assert_eq(ciot__twin_load(&t, bad[i], strlen(bad[i])), CIOT_ECORRUPT, "case %zu", i);
        cr_assert_null(t);
    }
    /* a section over 32 KB */
    char *big = sized(4081);
    size_t n = strlen(big);
    char *doc = xmalloc(n + 200);
    sprintf(
        doc,
        "{\"format\":1,\"desired\":{},\"desiredVersion\":1,\"reported\":%s,\"reportedVersion\":1}",
        big);
    ciot__twin *t = NULL;
    cr_assert_eq(ciot__twin_load(&t, doc, strlen(doc)), CIOT_ECORRUPT);
    free(big);
    free(doc);
}

/* ---- device side --------------------------------------------------------------- */

static void apply(ciot__twin *t, int kind, const char *doc, int rc, bool applied, bool gap)
{
    bool a = !applied, g = !gap;
    cr_assert_eq(ciot__twin_apply(t, kind, doc, strlen(doc), &a, &g), rc, "apply %s", doc);
    cr_assert_eq(a, applied, "applied for %s", doc);
    cr_assert_eq(g, gap, "gap for %s", doc);
}

Test(twin_doc, device_copy_follows_get_and_patches)
{
    ciot__twin *d = fresh();
    apply(d, CIOT__TWIN_DOC_GET,
          "{\"desired\":{\"telemetryInterval\":30,\"$version\":12,\"$metadata\":{\"$lastUpdated\":"
          "\"x\"}},"
          "\"reported\":{\"firmware\":\"1.1.0\",\"$version\":5}}",
          0, true, false);
    expect_get(d, "{\"desired\":{\"telemetryInterval\":30,\"$version\":12},"
                  "\"reported\":{\"firmware\":\"1.1.0\",\"$version\":5}}");
    /* stale notification (already in the GET) */
    apply(d, CIOT__TWIN_DOC_DESIRED, "{\"telemetryInterval\":1,\"$version\":12}", 0, false, false);
    apply(d, CIOT__TWIN_DOC_DESIRED, "{\"telemetryInterval\":60,\"route\":null,\"$version\":13}", 0,
          true, false);
    /* a gap: merged, but the caller is told to GET again */
    apply(d, CIOT__TWIN_DOC_DESIRED, "{\"mode\":{\"x\":1},\"$version\":15}", 0, true, true);
    expect_get(d, "{\"desired\":{\"telemetryInterval\":60,\"mode\":{\"x\":1},\"$version\":15},"
                  "\"reported\":{\"firmware\":\"1.1.0\",\"$version\":5}}");
    /* a GET older than the desired copy keeps desired, takes reported */
    apply(d, CIOT__TWIN_DOC_GET,
          "{\"desired\":{\"$version\":14},\"reported\":{\"firmware\":\"2\",\"$version\":6}}", 0,
          true, false);
    expect_get(d, "{\"desired\":{\"telemetryInterval\":60,\"mode\":{\"x\":1},\"$version\":15},"
                  "\"reported\":{\"firmware\":\"2\",\"$version\":6}}");
    /* an entirely stale GET changes nothing */
    apply(d, CIOT__TWIN_DOC_GET, "{\"desired\":{\"$version\":3},\"reported\":{\"$version\":2}}", 0,
          false, false);
    ciot__twin_free(d);
}

Test(twin_doc, device_copy_rejects_bad_documents)
{
    ciot__twin *d = fresh();
    const char *bad_get[] = {
        "x",
        "[]",
        "{\"desired\":{\"$version\":2}}",
        "{\"desired\":{},\"reported\":{\"$version\":2}}",
        "{\"desired\":{\"$version\":\"2\"},\"reported\":{\"$version\":2}}",
        "{\"desired\":{\"$version\":-1},\"reported\":{\"$version\":2}}",
        "{\"desired\":{\"$version\":2,\"a\":null},\"reported\":{\"$version\":2}}",
        "{\"desired\":{\"$version\":2,\"a b\":1},\"reported\":{\"$version\":2}}",
        "{\"desired\":[],\"reported\":{\"$version\":2}}",
    };
    for (size_t i = 0; i < sizeof bad_get / sizeof bad_get[0]; i++)
        apply(d, CIOT__TWIN_DOC_GET, bad_get[i], CIOT_EPROTOCOL, false, false);
    const char *bad_patch[] = {
        "{\"a\":1}",
        "{\"a\":1,\"$version\":\"3\"}",
        "[1]",
        "{\"o\":[{\"x\":null}],\"$version\":3}",
        "{\"a\":[null],\"$version\":3}",
        "{\"a.b\":1,\"$version\":3}",
        "{\"a\":1,\"$version\":3",
    };
    for (size_t i = 0; i < sizeof bad_patch / sizeof bad_patch[0]; i++)
        apply(d, CIOT__TWIN_DOC_DESIRED, bad_patch[i], CIOT_EPROTOCOL, false, false);
    cr_assert_eq(ciot__twin_apply(d, CIOT__TWIN_DOC_DESIRED, "", 0, NULL, NULL), CIOT_EPROTOCOL);
    char *big = sized(4081);
    size_t n = strlen(big);
    big[n - 1] = ',';
    char *doc = xmalloc(n + 40);
    sprintf(doc, "%s\"$version\":2}", big);
    apply(d, CIOT__TWIN_DOC_DESIRED, doc, CIOT_EPROTOCOL, false, false);
    free(doc);
    free(big);
    expect_get(d, "{\"desired\":{\"$version\":1},\"reported\":{\"$version\":1}}");
    ciot__twin_free(d);
}

/* ---- randomized: service and device copy stay equal --------------------------------- */

Test(twin_doc, random_desired_patches_keep_the_device_copy_equal)
{
    long n = (long)(2000 * test_scale());
    if (n < 50)
        n = 50;
    srand(6);
    ciot__twin *svc = fresh(), *dev = fresh();
    const char *keys[] = {"a", "b", "c"};
    char p[256];
    for (long i = 0; i < n; i++) {
        /* {"k1":v1,"k2":{"k3":v3}} with random nulls, scalars, arrays */
        const char *vals[] = {"null", "1", "\"s\"", "[1,2]", "{\"a\":null}", "true", "{\"b\":2}"};
        snprintf(p, sizeof p, "{\"%s\":%s,\"%s\":{\"%s\":%s}}", keys[rand() % 3], vals[rand() % 7],
                 keys[rand() % 3], keys[rand() % 3], vals[rand() % 7]);
        ciot__twin_result r;
        cr_assert_eq(ciot__twin_patch(&r, svc, CIOT__TWIN_DESIRED, p, strlen(p)), 0);
        if (r.status == 400) { /* a duplicate key */
            ciot__twin_result_free(&r);
            continue;
        }
        cr_assert_eq(r.status, 200, "%s: %s", p, r.message);
        bool a, g;
        cr_assert_eq(ciot__twin_apply(dev, CIOT__TWIN_DOC_DESIRED, r.notification,
                                      r.notification_len, &a, &g),
                     0);
        cr_assert(a && !g);
        ciot__twin_result_free(&r);
        if (i % 97 == 0) {
            char *x = saved(svc), *y = saved(dev);
            cr_assert_str_eq(x, y);
            ciot__twin *u = loaded(x);
            ciot__twin_free(u);
            ciot__free(x);
            ciot__free(y);
        }
    }
    char *x = saved(svc), *y = saved(dev);
    cr_assert_str_eq(x, y);
    ciot__free(x);
    ciot__free(y);
    ciot__twin_free(svc);
    ciot__twin_free(dev);
}

/* ---- out of memory: every allocation failing in turn ------------------------------ */

static long n_allocs, fail_at = -1;

static bool may_alloc(void)
{
    if (fail_at >= 0 && n_allocs >= fail_at)
        return false;
    n_allocs++;
    return true;
}

static void *t_malloc(size_t n, void *ctx)
{
    (void)ctx;
    return may_alloc() ? malloc(n) : NULL;
}

static void *t_realloc(void *p, size_t n, void *ctx)
{
    (void)ctx;
    return may_alloc() ? realloc(p, n) : NULL;
}

static void t_free(void *p, void *ctx)
{
    (void)ctx;
    free(p);
}

static void *j_malloc(size_t n)
{
    return may_alloc() ? malloc(n) : NULL;
}

#define START                                                                                      \
    "{\"format\":1,\"desired\":{\"a\":{\"b\":[1,\"x\"]},\"c\":0.5},\"desiredVersion\":4,"          \
    "\"reported\":{\"r\":{\"s\":true}},\"reportedVersion\":9}"

/* Runs op on a twin loaded from START with allocation k failing (and all
 * after it), for k = 0, 1, ... until it succeeds: every failure must be
 * CIOT_ENOMEM with the twin unchanged. Returns the number of failures. */
static int sweep(int (*op)(ciot__twin *t, void *ud), void *ud)
{
    int failures = 0;
    for (long k = 0; k < 2000; k++) {
        fail_at = -1;
        ciot__twin *t = loaded(START);
        n_allocs = 0;
        fail_at = k;
        int rc = op(t, ud);
        fail_at = -1;
        if (rc == 0) {
            ciot__twin_free(t);
            return failures;
        }
        cr_assert_eq(rc, CIOT_ENOMEM, "allocation %ld: %d", k, rc);
        char *s = saved(t);
        cr_assert_str_eq(s, START, "allocation %ld changed the twin", k);
        ciot__free(s);
        ciot__twin_free(t);
        failures++;
    }
    cr_assert_fail("never succeeded");
    return failures;
}

static int op_patch(ciot__twin *t, void *ud)
{
    int section = *(int *)ud;
    const char *p = "{\"a\":{\"b\":null,\"n\":{\"m\":[1,{\"z\":2}]}},\"c\":null,\"s\":\"x\"}";
    ciot__twin_result r;
    int rc = ciot__twin_patch(&r, t, section, p, strlen(p));
    if (rc == 0) {
        cr_assert_eq(r.status, section == CIOT__TWIN_DESIRED ? 200 : 204, "%s", r.message);
        ciot__twin_result_free(&r);
    } else {
        cr_assert_null(r.notification);
    }
    return rc;
}

static int op_get(ciot__twin *t, void *ud)
{
    (void)ud;
    char *s = NULL;
    size_t len;
    int rc = ciot__twin_get(&s, &len, t);
    cr_assert(rc == 0 ? s != NULL : s == NULL);
    ciot__free(s);
    return rc;
}

static int op_save_load(ciot__twin *t, void *ud)
{
    (void)ud;
    char *s = NULL;
    size_t len;
    int rc = ciot__twin_save(&s, &len, t);
    if (rc == 0) {
        ciot__twin *u = NULL;
        rc = ciot__twin_load(&u, s, len);
        cr_assert(rc == 0 ? u != NULL : u == NULL);
        ciot__twin_free(u);
        ciot__free(s);
    }
    return rc;
}

static int op_apply(ciot__twin *t, void *ud)
{
    int kind = *(int *)ud;
    const char *doc = kind == CIOT__TWIN_DOC_GET
                          ? "{\"desired\":{\"q\":{\"w\":1},\"$version\":5,\"$metadata\":{}},"
                            "\"reported\":{\"e\":[2],\"$version\":10}}"
                          : "{\"a\":{\"b\":null,\"k\":{\"l\":1}},\"$version\":5}";
    bool applied = false;
    int rc = ciot__twin_apply(t, kind, doc, strlen(doc), &applied, NULL);
    cr_assert(rc == 0 ? applied : !applied);
    return rc;
}

Test(twin_doc, out_of_memory_anywhere_leaves_the_twin_unchanged)
{
    ciot_allocator a = {t_malloc, t_realloc, t_free, NULL};
    cr_assert_eq(ciot_set_allocator(&a), 0);
    json_set_alloc_funcs(j_malloc, free);
    int d = CIOT__TWIN_DESIRED, r = CIOT__TWIN_REPORTED, g = CIOT__TWIN_DOC_GET,
        p = CIOT__TWIN_DOC_DESIRED;
    cr_assert_gt(sweep(op_patch, &d), 10);
    cr_assert_gt(sweep(op_patch, &r), 10);
    cr_assert_gt(sweep(op_get, NULL), 3);
    cr_assert_gt(sweep(op_save_load, NULL), 10);
    cr_assert_gt(sweep(op_apply, &g), 5);
    cr_assert_gt(sweep(op_apply, &p), 5);
    /* ciot__twin_new */
    for (long k = 0;; k++) {
        n_allocs = 0;
        fail_at = k;
        ciot__twin *t = (ciot__twin *)1;
        int rc = ciot__twin_new(&t);
        fail_at = -1;
        if (rc == 0) {
            ciot__twin_free(t);
            cr_assert_geq(k, 3);
            break;
        }
        cr_assert_eq(rc, CIOT_ENOMEM);
        cr_assert_null(t);
    }
}
