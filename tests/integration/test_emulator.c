/* The emulator plugin (emulator/) in a real mosquitto: the Device Shadow
 * service over MQTT (protocols.md §2.7 E1–E8 byte for byte, timestamps
 * aside), named shadows, persistence across a restart, the admin control
 * topics, identity and policies from the registry, and AWS's limits. */
#include "emu_fixture.h"
#include "tclient.h"

#include "core/shadow_doc.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <jansson.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef CIOT_EMU_PLUGIN
#error "CIOT_EMU_PLUGIN must name the built plugin"
#endif

#define ADMIN_PW "s3cret-admin"
#define M "{\"timestamp\":T}"
#define WAIT_MS 5000

static emu_fixture emu;

/* ------------------------------------------------------------ fixture */

static void make_data_dir(void)
{
    emu_data_dir_make(&emu, "/tmp/ciot-emu-XXXXXX");
}

static void start(bool enforce, const char *extra)
{
    char opts[2048];
    snprintf(opts, sizeof opts, "plugin_opt_admin_password " ADMIN_PW "\nplugin_opt_policies %s\n%s",
             enforce ? "enforce" : "off", extra ? extra : "");
    emu_start(&emu, true, opts);
}

static void setup_open(void)
{
    make_data_dir();
    start(false, NULL);
}

static void teardown(void) { emu_teardown(&emu); }
static void finish(void) { emu_finish(&emu); }
static int restart_broker(void) { return emu_restart(&emu); }

/* ------------------------------------------------------------ helpers */

/* "timestamp":<digits> -> "timestamp":T, in place. */
static char *norm(char *s)
{
    const char *key = "\"timestamp\":";
    size_t klen = strlen(key);
    char *r = s, *w = s;
    while (*r) {
        if (strncmp(r, key, klen) == 0) {
            memmove(w, r, klen);
            w += klen;
            r += klen;
            if (*r >= '0' && *r <= '9') {
                while (*r >= '0' && *r <= '9')
                    r++;
                *w++ = 'T';
            }
            continue;
        }
        *w++ = *r++;
    }
    *w = '\0';
    return s;
}

static tclient *open_client(const char *id)
{
    tclient *c = tc_new(id, NULL, NULL, NULL, NULL, NULL);
    cr_assert_not_null(c);
    cr_assert_eq(tc_connect(c, emu.broker.port), 0, "%s could not connect", id);
    return c;
}

static tclient *admin_client(const char *id)
{
    tclient *c = tc_new(id, "cloudiot-admin", ADMIN_PW, NULL, NULL, NULL);
    cr_assert_not_null(c);
    cr_assert_eq(tc_connect(c, emu.broker.port), 0, "admin %s could not connect", id);
    return c;
}

/* Subscribes to the reply topics of one shadow (prefix without the op). */
static void sub_replies(tclient *c, const char *prefix)
{
    static const char *suffix[] = {"get/accepted",    "get/rejected",   "update/accepted",
                                   "update/rejected", "update/delta",   "update/documents",
                                   "delete/accepted", "delete/rejected"};
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        char t[300];
        snprintf(t, sizeof t, "%s/%s", prefix, suffix[i]);
        cr_assert_eq(tc_sub(c, t, 1), 1, "subscribe %s", t);
    }
}

/* Waits for the next message on prefix/suffix and checks it (timestamps
 * replaced by T) against want. */
static void expect(tclient *c, const char *prefix, const char *suffix, const char *want)
{
    char t[300];
    snprintf(t, sizeof t, "%s/%s", prefix, suffix);
    tc_msg *m = tc_wait(c, t, WAIT_MS);
    cr_assert_not_null(m, "nothing on %s, want %s", t, want);
    cr_assert_str_eq(norm(m->payload), want, "on %s", t);
    tc_msg_free(m);
}

/* The next message on prefix/suffix, parsed. */
static json_t *expect_json(tclient *c, const char *prefix, const char *suffix)
{
    char t[300];
    snprintf(t, sizeof t, "%s/%s", prefix, suffix);
    tc_msg *m = tc_wait(c, t, WAIT_MS);
    cr_assert_not_null(m, "nothing on %s", t);
    json_error_t err;
    json_t *j = json_loads(m->payload, 0, &err);
    cr_assert_not_null(j, "not JSON on %s: %s", t, m->payload);
    tc_msg_free(m);
    return j;
}

static void assert_json_eq(json_t *got, const char *want)
{
    json_error_t err;
    json_t *w = json_loads(want, JSON_DECODE_ANY, &err);
    cr_assert_not_null(w, "bad test JSON %s", want);
    char *g = got ? json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    cr_assert(json_equal(got, w), "got %s, want %s", g ? g : "(none)", want);
    free(g);
    json_decref(w);
}

/* Nothing arrives on prefix/suffix for a while (after a later message
 * proved the broker already handled the request). */
static void expect_none(tclient *c, const char *prefix, const char *suffix)
{
    char t[300];
    snprintf(t, sizeof t, "%s/%s", prefix, suffix);
    tc_msg *m = tc_wait(c, t, 200);
    cr_assert_null(m, "unexpected message on %s: %s", t, m ? m->payload : "");
}

static void request(tclient *c, const char *prefix, const char *op, const char *payload)
{
    char t[300];
    snprintf(t, sizeof t, "%s/%s", prefix, op);
    cr_assert_eq(tc_pub(c, t, payload, 1), 0, "publish %s", t);
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

/* A stored classic shadow of thing at version (sections NULL: absent), in
 * the data directory before the broker starts: the store loads it. */
static void seed(const char *thing, unsigned version, const char *desired, const char *reported)
{
    json_error_t err;
    long long ts = 1700000000;
    json_t *doc = json_pack("{s:i,s:b,s:i,s:I}", "format", 1, "exists", 1, "version", (int)version,
                            "timestamp", (json_int_t)ts);
    json_t *st = json_object(), *meta = json_object();
    if (desired) {
        json_t *d = json_loads(desired, 0, &err);
        json_object_set_new(meta, "desired", tmeta(d, ts));
        json_object_set_new(st, "desired", d);
    }
    if (reported) {
        json_t *r = json_loads(reported, 0, &err);
        json_object_set_new(meta, "reported", tmeta(r, ts));
        json_object_set_new(st, "reported", r);
    }
    json_object_set_new(doc, "state", st);
    json_object_set_new(doc, "metadata", meta);
    char *txt = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    ciot__shadow *check = NULL;
    cr_assert_eq(ciot__shadow_load(&check, thing, strlen(thing), txt, strlen(txt)), 0,
                 "seed is not a persisted shadow: %s", txt);
    ciot__shadow_free(check);
    char dir[400], path[500];
    snprintf(dir, sizeof dir, "%s/shadows/%s", emu.data_dir, thing);
    emu_mkdir_p(dir);
    snprintf(path, sizeof path, "%s/classic.json", dir);
    emu_write_text(path, txt);
    free(txt);
}

/* Seeds before the broker starts (the suite starts none). */
static void start_seeded(void)
{
    start(false, NULL);
}

/* ------------------------------------------------------------ E1–E8 */

TestSuite(emulator, .init = setup_open, .fini = teardown, .timeout = 60);
TestSuite(emulator_seeded, .init = make_data_dir, .fini = teardown, .timeout = 60);

#define P1 "$aws/things/e1/shadow"

Test(emulator, e1_to_e3_create_report_converge)
{
    tclient *dev = open_client("e1-device");
    sub_replies(dev, P1);
    request(dev, P1, "update",
            "{\"state\":{\"desired\":{\"color\":\"red\",\"power\":\"on\"}},\"clientToken\":\"c1\"}");
    expect(dev, P1, "update/accepted",
           "{\"state\":{\"desired\":{\"color\":\"red\",\"power\":\"on\"}},\"metadata\":{\"desired\":{"
           "\"color\":" M ",\"power\":" M "}},\"version\":1,\"timestamp\":T,\"clientToken\":\"c1\"}");
    expect(dev, P1, "update/delta",
           "{\"state\":{\"color\":\"red\",\"power\":\"on\"},\"metadata\":{\"color\":" M
           ",\"power\":" M "},\"version\":1,\"timestamp\":T,\"clientToken\":\"c1\"}");
    /* §2.7 leaves metadata out of /documents; real payloads carry it. */
    expect(dev, P1, "update/documents",
           "{\"current\":{\"state\":{\"desired\":{\"color\":\"red\",\"power\":\"on\"}},\"metadata\":{"
           "\"desired\":{\"color\":" M ",\"power\":" M "}},\"version\":1},\"timestamp\":T,"
           "\"clientToken\":\"c1\"}");

    /* E2 */
    request(dev, P1, "update",
            "{\"state\":{\"reported\":{\"color\":\"red\",\"power\":\"off\",\"temp\":21}},"
            "\"clientToken\":\"c2\"}");
    expect(dev, P1, "update/accepted",
           "{\"state\":{\"reported\":{\"color\":\"red\",\"power\":\"off\",\"temp\":21}},\"metadata\":{"
           "\"reported\":{\"color\":" M ",\"power\":" M ",\"temp\":" M
           "}},\"version\":2,\"timestamp\":T,\"clientToken\":\"c2\"}");
    expect(dev, P1, "update/delta",
           "{\"state\":{\"power\":\"on\"},\"metadata\":{\"power\":" M
           "},\"version\":2,\"timestamp\":T,\"clientToken\":\"c2\"}");
    expect(dev, P1, "update/documents",
           "{\"previous\":{\"state\":{\"desired\":{\"color\":\"red\",\"power\":\"on\"}},\"metadata\":{"
           "\"desired\":{\"color\":" M ",\"power\":" M "}},\"version\":1},\"current\":{\"state\":{"
           "\"desired\":{\"color\":\"red\",\"power\":\"on\"},\"reported\":{\"color\":\"red\",\"power\":"
           "\"off\",\"temp\":21}},\"metadata\":{\"desired\":{\"color\":" M ",\"power\":" M
           "},\"reported\":{\"color\":" M ",\"power\":" M ",\"temp\":" M "}},\"version\":2},"
           "\"timestamp\":T,\"clientToken\":\"c2\"}");

    /* E3: converged, no delta */
    request(dev, P1, "update", "{\"state\":{\"reported\":{\"power\":\"on\"}}}");
    expect(dev, P1, "update/accepted",
           "{\"state\":{\"reported\":{\"power\":\"on\"}},\"metadata\":{\"reported\":{\"power\":" M
           "}},\"version\":3,\"timestamp\":T}");
    json_t *docs = expect_json(dev, P1, "update/documents");
    assert_json_eq(json_object_get(json_object_get(json_object_get(docs, "current"), "state"),
                                   "reported"),
                   "{\"color\":\"red\",\"power\":\"on\",\"temp\":21}");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(docs, "current"), "version")), 3);
    json_decref(docs);
    expect_none(dev, P1, "update/delta");

    /* /get returns the whole document with the delta (none now). */
    request(dev, P1, "get", "{\"clientToken\":\"g1\"}");
    expect(dev, P1, "get/accepted",
           "{\"state\":{\"desired\":{\"color\":\"red\",\"power\":\"on\"},\"reported\":{\"color\":\"red\","
           "\"power\":\"on\",\"temp\":21}},\"metadata\":{\"desired\":{\"color\":" M ",\"power\":" M
           "},\"reported\":{\"color\":" M ",\"power\":" M ",\"temp\":" M
           "}},\"version\":3,\"timestamp\":T,\"clientToken\":\"g1\"}");
    tc_free(dev);
    finish();
}

#define P4 "$aws/things/e4/shadow"
#define P5 "$aws/things/e5/shadow"
#define P6 "$aws/things/e6/shadow"
#define P7 "$aws/things/e7/shadow"
#define P8 "$aws/things/e8/shadow"

Test(emulator_seeded, e4_nested_merge_delta_keeps_the_path)
{
    const char *l = "{\"lights\":{\"color\":{\"r\":255,\"g\":0,\"b\":255},\"on\":true}}";
    seed("e4", 7, l, l);
    start_seeded();
    tclient *dev = open_client("e4-device");
    sub_replies(dev, P4);
    request(dev, P4, "update", "{\"state\":{\"desired\":{\"lights\":{\"color\":{\"g\":255}}}}}");
    expect(dev, P4, "update/accepted",
           "{\"state\":{\"desired\":{\"lights\":{\"color\":{\"g\":255}}}},\"metadata\":{\"desired\":{"
           "\"lights\":{\"color\":{\"g\":" M "}}}},\"version\":8,\"timestamp\":T}");
    expect(dev, P4, "update/delta",
           "{\"state\":{\"lights\":{\"color\":{\"g\":255}}},\"metadata\":{\"lights\":{\"color\":{\"g\":" M
           "}}},\"version\":8,\"timestamp\":T}");
    json_t *docs = expect_json(dev, P4, "update/documents");
    assert_json_eq(json_object_get(json_object_get(json_object_get(docs, "current"), "state"),
                                   "desired"),
                   "{\"lights\":{\"color\":{\"r\":255,\"g\":255,\"b\":255},\"on\":true}}");
    json_decref(docs);
    tc_free(dev);
    finish();
}

Test(emulator_seeded, e5_null_deletes_and_the_deleted_reported_key_reappears)
{
    seed("e5", 3, "{\"color\":\"red\",\"power\":\"on\",\"mode\":\"eco\"}",
         "{\"color\":\"blue\",\"power\":\"on\"}");
    start_seeded();
    tclient *dev = open_client("e5-device");
    sub_replies(dev, P5);
    request(dev, P5, "update",
            "{\"state\":{\"desired\":{\"mode\":null,\"color\":null},\"reported\":{\"power\":null}},"
            "\"clientToken\":\"c5\"}");
    expect(dev, P5, "update/accepted",
           "{\"state\":{\"desired\":{\"mode\":null,\"color\":null},\"reported\":{\"power\":null}},"
           "\"metadata\":{\"desired\":{\"mode\":" M ",\"color\":" M "},\"reported\":{\"power\":" M
           "}},\"version\":4,\"timestamp\":T,\"clientToken\":\"c5\"}");
    expect(dev, P5, "update/delta",
           "{\"state\":{\"power\":\"on\"},\"metadata\":{\"power\":" M
           "},\"version\":4,\"timestamp\":T,\"clientToken\":\"c5\"}");
    json_t *docs = expect_json(dev, P5, "update/documents");
    json_t *cur = json_object_get(json_object_get(docs, "current"), "state");
    assert_json_eq(json_object_get(cur, "desired"), "{\"power\":\"on\"}");
    assert_json_eq(json_object_get(cur, "reported"), "{\"color\":\"blue\"}");
    json_decref(docs);
    tc_free(dev);
    finish();
}

Test(emulator_seeded, e6_arrays_replace_whole)
{
    seed("e6", 10, "{\"colors\":[\"RED\",\"GREEN\",\"BLUE\"]}", "{\"colors\":[\"RED\",\"GREEN\"]}");
    start_seeded();
    tclient *dev = open_client("e6-device");
    sub_replies(dev, P6);
    request(dev, P6, "update", "{\"state\":{\"desired\":{\"colors\":[\"RED\"]}}}");
    expect(dev, P6, "update/accepted",
           "{\"state\":{\"desired\":{\"colors\":[\"RED\"]}},\"metadata\":{\"desired\":{\"colors\":[" M
           "]}},\"version\":11,\"timestamp\":T}");
    expect(dev, P6, "update/delta",
           "{\"state\":{\"colors\":[\"RED\"]},\"metadata\":{\"colors\":[" M
           "]},\"version\":11,\"timestamp\":T}");
    request(dev, P6, "update", "{\"state\":{\"reported\":{\"colors\":[\"RED\"]}}}");
    expect(dev, P6, "update/accepted",
           "{\"state\":{\"reported\":{\"colors\":[\"RED\"]}},\"metadata\":{\"reported\":{\"colors\":[" M
           "]}},\"version\":12,\"timestamp\":T}");
    expect_none(dev, P6, "update/delta");
    tc_free(dev);
    finish();
}

Test(emulator_seeded, e7_optimistic_locking)
{
    seed("e7", 5, "{\"fan\":\"low\"}", NULL);
    start_seeded();
    tclient *dev = open_client("e7-device");
    sub_replies(dev, P7);
    request(dev, P7, "update",
            "{\"state\":{\"desired\":{\"fan\":\"high\"}},\"version\":4,\"clientToken\":\"c7a\"}");
    expect(dev, P7, "update/rejected",
           "{\"code\":409,\"message\":\"Version conflict\",\"timestamp\":T,\"clientToken\":\"c7a\"}");
    request(dev, P7, "update",
            "{\"state\":{\"desired\":{\"fan\":\"high\"}},\"version\":5,\"clientToken\":\"c7b\"}");
    expect(dev, P7, "update/accepted",
           "{\"state\":{\"desired\":{\"fan\":\"high\"}},\"metadata\":{\"desired\":{\"fan\":" M
           "}},\"version\":6,\"timestamp\":T,\"clientToken\":\"c7b\"}");
    expect(dev, P7, "update/delta",
           "{\"state\":{\"fan\":\"high\"},\"metadata\":{\"fan\":" M
           "},\"version\":6,\"timestamp\":T,\"clientToken\":\"c7b\"}");
    expect(dev, P7, "update/documents",
           "{\"previous\":{\"state\":{\"desired\":{\"fan\":\"low\"}},\"metadata\":{\"desired\":{\"fan\":" M
           "}},\"version\":5},\"current\":{\"state\":{\"desired\":{\"fan\":\"high\"}},\"metadata\":{"
           "\"desired\":{\"fan\":" M "}},\"version\":6},\"timestamp\":T,\"clientToken\":\"c7b\"}");
    /* The rejected request published nothing else: only one accepted came. */
    expect_none(dev, P7, "update/accepted");
    tc_free(dev);
    finish();
}

Test(emulator_seeded, e8_section_removal_clear_and_validation_errors)
{
    seed("e8", 2, "{\"a\":1}", "{\"a\":1,\"b\":2}");
    start_seeded();
    tclient *dev = open_client("e8-device");
    sub_replies(dev, P8);
    request(dev, P8, "update", "{\"state\":{\"desired\":null}}");
    expect(dev, P8, "update/accepted",
           "{\"state\":{\"desired\":null},\"metadata\":{\"desired\":" M
           "},\"version\":3,\"timestamp\":T}");
    json_decref(expect_json(dev, P8, "update/documents"));
    expect_none(dev, P8, "update/delta");
    request(dev, P8, "update", "{\"state\":null}");
    expect(dev, P8, "update/accepted",
           "{\"state\":null,\"metadata\":" M ",\"version\":4,\"timestamp\":T}");
    expect(dev, P8, "update/documents",
           "{\"previous\":{\"state\":{\"reported\":{\"a\":1,\"b\":2}},\"metadata\":{\"reported\":{\"a\":" M
           ",\"b\":" M "}},\"version\":3},\"current\":{\"state\":{},\"metadata\":{},\"version\":4},"
           "\"timestamp\":T}");
    /* Validation errors: version unchanged after each. */
    static const struct {
        const char *req, *msg;
    } bad[] = {
        {"{\"desired\":{\"a\":2}}", "Missing required node: state"},
        {"{\"state\":{\"desired\":\"on\"}}", "Desired node must be an object"},
        {"{\"state\":{\"reported\":{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{\"g\":1}}}}}}}}}",
         "JSON contains too many levels of nesting; maximum is 6"},
        {"{\"state\":{\"desired\":{\"a\":1}},\"clientToken\":"
         "\"12345678901234567890123456789012345678901234567890123456789012345\"}",
         "Invalid clientToken"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        request(dev, P8, "update", bad[i].req);
        char want[256];
        snprintf(want, sizeof want, "{\"code\":400,\"message\":\"%s\",\"timestamp\":T}", bad[i].msg);
        expect(dev, P8, "update/rejected", want);
    }
    request(dev, P8, "update", "{\"state\":{\"reported\":{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":1}}}}}}}}");
    json_t *acc = expect_json(dev, P8, "update/accepted");
    cr_assert_eq(json_integer_value(json_object_get(acc, "version")), 5, "six levels are accepted");
    json_decref(acc);
    tc_free(dev);
    finish();
}

Test(emulator_seeded, e8_new_section_nulls_vanish)
{
    seed("e8b", 1, NULL, "{\"x\":1}");
    start_seeded();
    tclient *dev = open_client("e8b-device");
    sub_replies(dev, "$aws/things/e8b/shadow");
    request(dev, "$aws/things/e8b/shadow", "update",
            "{\"state\":{\"desired\":{\"cfg\":{\"a\":null,\"b\":{\"c\":null}},\"k\":null,\"m\":2}}}");
    json_t *acc = expect_json(dev, "$aws/things/e8b/shadow", "update/accepted");
    cr_assert_eq(json_integer_value(json_object_get(acc, "version")), 2);
    json_decref(acc);
    expect(dev, "$aws/things/e8b/shadow", "update/delta",
           "{\"state\":{\"m\":2},\"metadata\":{\"m\":" M "},\"version\":2,\"timestamp\":T}");
    json_t *docs = expect_json(dev, "$aws/things/e8b/shadow", "update/documents");
    assert_json_eq(json_object_get(json_object_get(json_object_get(docs, "current"), "state"), "desired"),
                   "{\"m\":2}");
    json_decref(docs);
    tc_free(dev);
    finish();
}

/* ------------------------------------------------------------ named shadows */

Test(emulator, named_shadows_are_separate_from_the_classic_one)
{
    tclient *dev = open_client("named-device");
    const char *cls = "$aws/things/lamp/shadow", *cfg = "$aws/things/lamp/shadow/name/cfg";
    sub_replies(dev, cls);
    sub_replies(dev, cfg);
    request(dev, cfg, "update", "{\"state\":{\"reported\":{\"mode\":\"eco\"}},\"clientToken\":\"n1\"}");
    expect(dev, cfg, "update/accepted",
           "{\"state\":{\"reported\":{\"mode\":\"eco\"}},\"metadata\":{\"reported\":{\"mode\":" M
           "}},\"version\":1,\"timestamp\":T,\"clientToken\":\"n1\"}");
    /* The classic shadow of the same thing does not exist. */
    request(dev, cls, "get", "");
    expect(dev, cls, "get/rejected",
           "{\"code\":404,\"message\":\"No shadow exists with name: lamp\",\"timestamp\":T}");
    request(dev, "$aws/things/lamp/shadow/name/other", "get", "{\"clientToken\":\"n2\"}");
    tc_msg *m = tc_wait(dev, "$aws/things/lamp/shadow/name/other/get/rejected", 300);
    cr_assert_null(m, "not subscribed to the other shadow's replies");
    request(dev, cfg, "get", "");
    expect(dev, cfg, "get/accepted",
           "{\"state\":{\"reported\":{\"mode\":\"eco\"}},\"metadata\":{\"reported\":{\"mode\":" M
           "}},\"version\":1,\"timestamp\":T}");
    request(dev, cfg, "delete", "{\"clientToken\":\"d1\"}");
    expect(dev, cfg, "delete/accepted", "{\"version\":1,\"timestamp\":T,\"clientToken\":\"d1\"}");
    request(dev, cfg, "get", "");
    expect(dev, cfg, "get/rejected",
           "{\"code\":404,\"message\":\"No shadow exists with name: cfg\",\"timestamp\":T}");
    request(dev, cfg, "delete", "");
    expect(dev, cfg, "delete/rejected",
           "{\"code\":404,\"message\":\"No shadow exists with name: cfg\",\"timestamp\":T}");
    /* Recreated within 48 h: the numbering continues. */
    request(dev, cfg, "update", "{\"state\":{\"reported\":{\"mode\":\"max\"}}}");
    json_t *acc = expect_json(dev, cfg, "update/accepted");
    cr_assert_eq(json_integer_value(json_object_get(acc, "version")), 2);
    json_decref(acc);
    tc_free(dev);
    finish();
}

Test(emulator, a_request_on_a_non_shadow_or_malformed_topic_gets_no_reply)
{
    tclient *dev = open_client("odd-device");
    cr_assert_eq(tc_sub(dev, "$aws/things/+/shadow/#", 1), 1);
    cr_assert_eq(tc_pub(dev, "$aws/things/bad name/shadow/update", "{\"state\":{}}", 1), 0);
    cr_assert_eq(tc_pub(dev, "$aws/things/t/shadow/updat", "{\"state\":{}}", 1), 0);
    cr_assert_eq(tc_pub(dev, "$aws/things/t/shadow/name//update", "{\"state\":{}}", 1), 0);
    /* The valid one proves the others were handled first. */
    cr_assert_eq(tc_pub(dev, "$aws/things/t/shadow/update", "{\"state\":{}}", 1), 0);
    tc_msg *m = tc_wait(dev, "$aws/things/t/shadow/update/accepted", WAIT_MS);
    cr_assert_not_null(m);
    tc_msg_free(m);
    /* The requests themselves reach subscribers of request topics, as on AWS. */
    cr_assert_eq(tc_count(dev, "$aws/things/t/shadow/update/accepted"), 0);
    cr_assert_eq(tc_count_exact(dev, "$aws/things/t/shadow/updat"), 1);
    cr_assert_eq(tc_count_exact(dev, "$aws/things/t/shadow/update"), 1);
    cr_assert_eq(tc_count_exact(dev, "$aws/things/bad name/shadow/update"), 1);
    cr_assert_eq(tc_count(dev, "$aws/things/bad name/shadow/update/"), 0);
    cr_assert_eq(tc_count(dev, "$aws/things/t/shadow/update/rejected"), 0);
    tc_free(dev);
    finish();
}

Test(emulator, two_devices_see_only_their_own_shadow_replies)
{
    tclient *a = open_client("dev-a"), *b = open_client("dev-b");
    sub_replies(a, "$aws/things/dev-a/shadow");
    sub_replies(b, "$aws/things/dev-b/shadow");
    for (int i = 0; i < 5; i++) {
        char req[128];
        snprintf(req, sizeof req, "{\"state\":{\"reported\":{\"n\":%d}},\"clientToken\":\"a%d\"}", i, i);
        request(a, "$aws/things/dev-a/shadow", "update", req);
        snprintf(req, sizeof req, "{\"state\":{\"reported\":{\"n\":%d}},\"clientToken\":\"b%d\"}", i, i);
        request(b, "$aws/things/dev-b/shadow", "update", req);
    }
    for (int i = 0; i < 5; i++) {
        json_t *ja = expect_json(a, "$aws/things/dev-a/shadow", "update/accepted");
        json_t *jb = expect_json(b, "$aws/things/dev-b/shadow", "update/accepted");
        char ta[8], tb[8];
        snprintf(ta, sizeof ta, "a%d", i);
        snprintf(tb, sizeof tb, "b%d", i);
        cr_assert_str_eq(json_string_value(json_object_get(ja, "clientToken")), ta);
        cr_assert_str_eq(json_string_value(json_object_get(jb, "clientToken")), tb);
        cr_assert_eq(json_integer_value(json_object_get(ja, "version")), i + 1);
        json_decref(ja);
        json_decref(jb);
    }
    cr_assert_eq(tc_count(a, "$aws/things/dev-b"), 0);
    cr_assert_eq(tc_count(b, "$aws/things/dev-a"), 0);
    tc_free(a);
    tc_free(b);
    finish();
}

/* ------------------------------------------------------------ persistence */

Test(emulator, shadows_survive_a_broker_restart)
{
    tclient *dev = open_client("persist-device");
    const char *p = "$aws/things/keep/shadow", *n = "$aws/things/keep/shadow/name/cfg";
    sub_replies(dev, p);
    sub_replies(dev, n);
    request(dev, p, "update", "{\"state\":{\"desired\":{\"on\":true},\"reported\":{\"on\":false}}}");
    json_decref(expect_json(dev, p, "update/accepted"));
    request(dev, p, "update", "{\"state\":{\"reported\":{\"t\":[1,2,{\"x\":null}]}}}");
    json_t *acc = expect_json(dev, p, "update/rejected");
    json_decref(acc); /* null inside an array */
    request(dev, n, "update", "{\"state\":{\"reported\":{\"level\":3}}}");
    json_decref(expect_json(dev, n, "update/accepted"));
    request(dev, "$aws/things/gone/shadow", "update", "{\"state\":{\"reported\":{\"a\":1}}}");
    request(dev, "$aws/things/gone/shadow", "delete", "");
    request(dev, p, "get", "");
    json_t *before = expect_json(dev, p, "get/accepted");
    tc_free(dev);

    cr_assert_eq(restart_broker(), 0);
    dev = open_client("persist-device");
    sub_replies(dev, p);
    sub_replies(dev, n);
    sub_replies(dev, "$aws/things/gone/shadow");
    request(dev, p, "get", "");
    json_t *after = expect_json(dev, p, "get/accepted");
    json_object_del(before, "timestamp"); /* the time of the reply */
    json_object_del(after, "timestamp");
    cr_assert(json_equal(before, after), "the document changed across the restart");
    cr_assert_eq(json_integer_value(json_object_get(after, "version")), 1);
    json_decref(before);
    json_decref(after);
    request(dev, n, "get", "");
    expect(dev, n, "get/accepted",
           "{\"state\":{\"reported\":{\"level\":3}},\"metadata\":{\"reported\":{\"level\":" M
           "}},\"version\":1,\"timestamp\":T}");
    /* A deleted shadow stays deleted, and its numbering continues. */
    request(dev, "$aws/things/gone/shadow", "get", "");
    json_t *rej = expect_json(dev, "$aws/things/gone/shadow", "get/rejected");
    cr_assert_eq(json_integer_value(json_object_get(rej, "code")), 404);
    json_decref(rej);
    request(dev, "$aws/things/gone/shadow", "update", "{\"state\":{\"reported\":{\"a\":2}}}");
    json_t *v = expect_json(dev, "$aws/things/gone/shadow", "update/accepted");
    cr_assert_eq(json_integer_value(json_object_get(v, "version")), 2);
    json_decref(v);
    /* The files are where doc/emulator.md says. */
    char path[512];
    snprintf(path, sizeof path, "%s/shadows/keep/classic.json", emu.data_dir);
    cr_assert_eq(access(path, R_OK), 0, "%s", path);
    snprintf(path, sizeof path, "%s/shadows/keep/name/cfg.json", emu.data_dir);
    cr_assert_eq(access(path, R_OK), 0, "%s", path);
    tc_free(dev);
    finish();
}

Test(emulator_seeded, a_corrupt_shadow_file_is_skipped_not_fatal)
{
    char dir[400], path[500];
    snprintf(dir, sizeof dir, "%s/shadows/broken", emu.data_dir);
    emu_mkdir_p(dir);
    snprintf(path, sizeof path, "%s/classic.json", dir);
    emu_write_text(path, "{\"format\":1,\"exists\":tru");
    seed("fine", 4, "{\"a\":1}", NULL);
    start_seeded();
    tclient *dev = open_client("corrupt-device");
    sub_replies(dev, "$aws/things/broken/shadow");
    sub_replies(dev, "$aws/things/fine/shadow");
    request(dev, "$aws/things/broken/shadow", "get", "");
    json_t *r = expect_json(dev, "$aws/things/broken/shadow", "get/rejected");
    cr_assert_eq(json_integer_value(json_object_get(r, "code")), 404);
    json_decref(r);
    request(dev, "$aws/things/fine/shadow", "get", "");
    r = expect_json(dev, "$aws/things/fine/shadow", "get/accepted");
    cr_assert_eq(json_integer_value(json_object_get(r, "version")), 4);
    json_decref(r);
    cr_assert_geq(test_broker_log_count(&emu.broker, "skipping"), 1, "the bad file is logged");
    tc_free(dev);
    finish();
}

/* ------------------------------------------------------------ control topics */

#define CTL_DATA "$CONTROL/cloudiot/v1/iot-data"
#define CTL_IOT "$CONTROL/cloudiot/v1/iot"

/* Sends a control request and returns the parsed response. */
static json_t *control(tclient *admin, const char *service, const char *req)
{
    char rt[128];
    snprintf(rt, sizeof rt, "%s/response", service);
    cr_assert_eq(tc_pub(admin, service, req, 1), 0);
    tc_msg *m = tc_wait(admin, rt, WAIT_MS);
    cr_assert_not_null(m, "no control response to %s", req);
    json_error_t err;
    json_t *j = json_loads(m->payload, 0, &err);
    cr_assert_not_null(j, "response is not JSON: %s", m->payload);
    tc_msg_free(m);
    return j;
}

static int status_of(json_t *resp)
{
    return (int)json_integer_value(json_object_get(resp, "status"));
}

Test(emulator, control_iot_data_ops_reach_devices_like_mqtt_updates)
{
    tclient *admin = admin_client("operator");
    cr_assert_eq(tc_sub(admin, CTL_DATA "/response", 1), 1);
    tclient *dev = open_client("ctl-device");
    sub_replies(dev, "$aws/things/ctl1/shadow");

    json_t *r = control(admin, CTL_DATA,
                        "{\"op\":\"update-thing-shadow\",\"thingName\":\"ctl1\",\"requestId\":\"r1\","
                        "\"payload\":{\"state\":{\"desired\":{\"interval\":30}},\"clientToken\":\"svc\"}}");
    cr_assert_eq(status_of(r), 200);
    cr_assert_str_eq(json_string_value(json_object_get(r, "requestId")), "r1");
    cr_assert_str_eq(json_string_value(json_object_get(r, "op")), "update-thing-shadow");
    json_t *res = json_object_get(r, "result");
    cr_assert_eq(json_integer_value(json_object_get(res, "version")), 1);
    assert_json_eq(json_object_get(res, "state"), "{\"desired\":{\"interval\":30}}");
    json_decref(r);
    /* The device sees the same messages an MQTT update produces. */
    expect(dev, "$aws/things/ctl1/shadow", "update/delta",
           "{\"state\":{\"interval\":30},\"metadata\":{\"interval\":" M
           "},\"version\":1,\"timestamp\":T,\"clientToken\":\"svc\"}");
    json_decref(expect_json(dev, "$aws/things/ctl1/shadow", "update/accepted"));
    json_decref(expect_json(dev, "$aws/things/ctl1/shadow", "update/documents"));

    /* The payload may also be given as a string. */
    r = control(admin, CTL_DATA,
                "{\"op\":\"update-thing-shadow\",\"thingName\":\"ctl1\",\"requestId\":\"r2\","
                "\"payload\":\"{\\\"state\\\":{\\\"reported\\\":{\\\"interval\\\":30}}}\"}");
    cr_assert_eq(status_of(r), 200);
    json_decref(r);

    r = control(admin, CTL_DATA, "{\"op\":\"get-thing-shadow\",\"thingName\":\"ctl1\",\"requestId\":\"r3\"}");
    cr_assert_eq(status_of(r), 200);
    res = json_object_get(r, "result");
    assert_json_eq(json_object_get(res, "state"),
                   "{\"desired\":{\"interval\":30},\"reported\":{\"interval\":30}}");
    cr_assert_eq(json_integer_value(json_object_get(res, "version")), 2);
    json_decref(r);

    /* A rejected update: the engine's code and message. */
    r = control(admin, CTL_DATA,
                "{\"op\":\"update-thing-shadow\",\"thingName\":\"ctl1\",\"requestId\":\"r4\","
                "\"payload\":{\"state\":{\"desired\":{\"a\":1}},\"version\":1}}");
    cr_assert_eq(status_of(r), 409);
    cr_assert_str_eq(json_string_value(json_object_get(r, "error")), "Version conflict");
    json_decref(r);

    /* Named shadows and their listing. */
    r = control(admin, CTL_DATA,
                "{\"op\":\"update-thing-shadow\",\"thingName\":\"ctl1\",\"shadowName\":\"zeta\","
                "\"payload\":{\"state\":{\"reported\":{\"a\":1}}}}");
    cr_assert_eq(status_of(r), 200);
    json_decref(r);
    r = control(admin, CTL_DATA,
                "{\"op\":\"update-thing-shadow\",\"thingName\":\"ctl1\",\"shadowName\":\"alpha\","
                "\"payload\":{\"state\":{\"reported\":{\"a\":1}}}}");
    json_decref(r);
    r = control(admin, CTL_DATA,
                "{\"op\":\"list-named-shadows-for-thing\",\"thingName\":\"ctl1\",\"requestId\":\"l\"}");
    cr_assert_eq(status_of(r), 200);
    assert_json_eq(json_object_get(json_object_get(r, "result"), "results"), "[\"alpha\",\"zeta\"]");
    json_decref(r);

    r = control(admin, CTL_DATA, "{\"op\":\"delete-thing-shadow\",\"thingName\":\"ctl1\"}");
    cr_assert_eq(status_of(r), 200);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(r, "result"), "version")), 2);
    json_decref(r);
    json_decref(expect_json(dev, "$aws/things/ctl1/shadow", "delete/accepted"));
    r = control(admin, CTL_DATA, "{\"op\":\"get-thing-shadow\",\"thingName\":\"ctl1\"}");
    cr_assert_eq(status_of(r), 404);
    cr_assert_str_eq(json_string_value(json_object_get(r, "error")), "No shadow exists with name: ctl1");
    cr_assert(json_is_null(json_object_get(r, "requestId")));
    json_decref(r);

    /* Bad requests. */
    r = control(admin, CTL_DATA, "not json");
    cr_assert_eq(status_of(r), 400);
    json_decref(r);
    r = control(admin, CTL_DATA, "{\"op\":\"fly\",\"requestId\":7}");
    cr_assert_eq(status_of(r), 400);
    cr_assert_eq(json_integer_value(json_object_get(r, "requestId")), 7);
    json_decref(r);
    r = control(admin, CTL_DATA, "{\"op\":\"get-thing-shadow\",\"thingName\":\"no/slash\"}");
    cr_assert_eq(status_of(r), 400);
    json_decref(r);
    r = control(admin, CTL_DATA, "{\"op\":\"update-thing-shadow\",\"thingName\":\"t\"}");
    cr_assert_eq(status_of(r), 400);
    json_decref(r);
    r = control(admin, CTL_DATA, "{\"op\":\"list-things\"}");
    cr_assert_eq(status_of(r), 400, "list-things belongs to the iot service");
    json_decref(r);
    tc_free(dev);
    tc_free(admin);
    finish();
}

Test(emulator, control_iot_lists_and_describes_things)
{
    tclient *admin = admin_client("operator2");
    cr_assert_eq(tc_sub(admin, CTL_IOT "/response", 1), 1);
    json_t *r = control(admin, CTL_IOT, "{\"op\":\"list-things\",\"requestId\":\"a\"}");
    cr_assert_eq(status_of(r), 200);
    assert_json_eq(json_object_get(r, "result"), "{\"things\":[]}");
    json_decref(r);
    emu_write_thing(&emu, "sensor-2");
    emu_write_thing(&emu, "sensor-1"); /* read at each request: no restart needed */
    r = control(admin, CTL_IOT, "{\"op\":\"list-things\"}");
    json_t *things = json_object_get(json_object_get(r, "result"), "things");
    cr_assert_eq(json_array_size(things), 2);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(things, 0), "thingName")), "sensor-1");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(things, 1), "thingArn")),
                     "arn:aws:iot:us-east-1:123456789012:thing/sensor-2");
    json_decref(r);
    r = control(admin, CTL_IOT, "{\"op\":\"describe-thing\",\"thingName\":\"sensor-1\"}");
    cr_assert_eq(status_of(r), 200);
    json_t *res = json_object_get(r, "result");
    cr_assert_str_eq(json_string_value(json_object_get(res, "thingName")), "sensor-1");
    cr_assert_str_eq(json_string_value(json_object_get(res, "defaultClientId")), "sensor-1");
    json_decref(r);
    r = control(admin, CTL_IOT, "{\"op\":\"describe-thing\",\"thingName\":\"nope\"}");
    cr_assert_eq(status_of(r), 404);
    json_decref(r);
    r = control(admin, CTL_IOT, "{\"op\":\"get-thing-shadow\",\"thingName\":\"x\"}");
    cr_assert_eq(status_of(r), 400, "shadow ops belong to iot-data");
    json_decref(r);
    tc_free(admin);
    finish();
}

Test(emulator, control_topics_are_refused_to_non_admins)
{
    /* A device: cannot read the response topic, and its requests do nothing. */
    tclient *dev = open_client("intruder");
    cr_assert_eq(tc_sub(dev, CTL_DATA "/response", 1), 0x80, "SUBACK failure for a non-admin");
    cr_assert_eq(tc_sub(dev, "$CONTROL/#", 1), 0x80);
    tclient *watch = open_client("watcher");
    sub_replies(watch, "$aws/things/victim/shadow");
    cr_assert_eq(tc_pub(dev, CTL_DATA,
                        "{\"op\":\"update-thing-shadow\",\"thingName\":\"victim\","
                        "\"payload\":{\"state\":{\"desired\":{\"x\":1}}}}",
                        1),
                 0);
    /* A wrong admin password is a plain (non-admin) client. */
    tclient *fake = tc_new("fake-admin", "cloudiot-admin", "wrong", NULL, NULL, NULL);
    cr_assert_eq(tc_connect(fake, emu.broker.port), 0);
    cr_assert_eq(tc_sub(fake, CTL_DATA "/response", 1), 0x80);
    cr_assert_eq(tc_pub(fake, CTL_DATA, "{\"op\":\"get-thing-shadow\",\"thingName\":\"victim\"}", 1), 0);
    /* The admin's own request proves the others were processed before. */
    tclient *admin = admin_client("operator3");
    cr_assert_eq(tc_sub(admin, CTL_DATA "/response", 1), 1);
    json_t *r = control(admin, CTL_DATA, "{\"op\":\"get-thing-shadow\",\"thingName\":\"victim\"}");
    cr_assert_eq(status_of(r), 404, "the intruder's update must not have happened");
    json_decref(r);
    cr_assert_eq(tc_count(watch, "$aws/things/victim"), 0);
    cr_assert_eq(tc_count(dev, "$CONTROL"), 0);
    cr_assert_eq(tc_count(fake, "$CONTROL"), 0);
    cr_assert_geq(test_broker_log_count(&emu.broker, "admin only"), 2);
    tc_free(fake);
    tc_free(watch);
    tc_free(dev);
    tc_free(admin);
    finish();
}

/* ------------------------------------------------------------ identity */

static tclient *tls_client(const char *id, const char *name)
{
    char cert[300], key[300], ca[300];
    snprintf(ca, sizeof ca, "%s", test_broker_pki(&emu.broker, "ca.crt"));
    snprintf(cert, sizeof cert, "%s/%s.crt", emu.broker.pki, name);
    snprintf(key, sizeof key, "%s/%s.key", emu.broker.pki, name);
    tclient *c = tc_new(id, NULL, NULL, ca, cert, key);
    cr_assert_not_null(c);
    return c;
}

Test(emulator, policies_off_a_certificate_client_is_its_cn)
{
    tclient *d = tls_client("device1", "device1");
    cr_assert_eq(tc_connect(d, emu.broker.tls_port), 0);
    cr_assert_eq(tc_sub(d, "anything/at/all", 1), 1);
    cr_assert_geq(test_broker_log_count(&emu.broker, "device1 connected as thing device1"), 1);
    tc_free(d);
    finish();
}

/* ------------------------------------------------------------ limits */

static char *repeat(char ch, size_t n)
{
    char *s = malloc(n + 1);
    cr_assert_not_null(s);
    memset(s, ch, n);
    s[n] = '\0';
    return s;
}

Test(emulator, a_client_id_over_128_bytes_is_refused_at_connect)
{
    char *id = repeat('c', 128);
    tclient *ok = tc_new(id, NULL, NULL, NULL, NULL, NULL);
    cr_assert_eq(tc_connect(ok, emu.broker.port), 0, "128 bytes are allowed");
    tc_free(ok);
    free(id);
    id = repeat('c', 129);
    tclient *bad = tc_new(id, NULL, NULL, NULL, NULL, NULL);
    /* MQTT 3.1.1 CONNACK 5: not authorized. */
    cr_assert_eq(tc_connect(bad, emu.broker.port), 5);
    tc_free(bad);
    free(id);
    cr_assert_geq(test_broker_log_count(&emu.broker, "refusing a client id of 129 bytes"), 1);
    finish();
}

/* A client that breaks a limit is disconnected (AWS: CLIENT_ERROR); the
 * message reaches nobody. */
static void expect_kicked_after_publish(const char *topic, size_t payload_len, int qos)
{
    tclient *watch = open_client("limit-watch");
    cr_assert_eq(tc_sub(watch, "#", 1), 1);
    tclient *c = open_client("limit-breaker");
    char *payload = repeat('p', payload_len);
    cr_assert_eq(mosquitto_publish(c->m, NULL, topic, (int)payload_len, payload, qos, false),
                 MOSQ_ERR_SUCCESS);
    free(payload);
    cr_assert(tc_wait_disconnected(c, 5000), "publishing on %.40s... (%zu bytes, QoS %d) was not "
                                             "answered with a disconnect", topic, payload_len, qos);
    /* The watcher's own message proves the broker is past the bad one. */
    cr_assert_eq(tc_pub(watch, "limit/probe", "x", 1), 0);
    tc_msg *m = tc_wait(watch, "limit/probe", WAIT_MS);
    cr_assert_not_null(m);
    tc_msg_free(m);
    cr_assert_eq(tc_count_exact(watch, topic), 0, "the refused message was delivered");
    tc_free(c);
    tc_free(watch);
}

static void expect_publish_allowed(const char *topic, size_t payload_len)
{
    tclient *c = open_client("limit-keeper");
    cr_assert_eq(tc_sub(c, topic, 1), 1);
    char *payload = repeat('p', payload_len);
    cr_assert_eq(tc_pub(c, topic, payload, 1), 0);
    free(payload);
    tc_msg *m = tc_wait(c, topic, WAIT_MS);
    cr_assert_not_null(m, "%.60s: not delivered", topic);
    cr_assert_eq((size_t)m->len, payload_len);
    tc_msg_free(m);
    cr_assert_not(tc_wait_disconnected(c, 300));
    tc_free(c);
}

Test(emulator, topic_length_limit_is_256_bytes)
{
    char *t = repeat('t', 256);
    expect_publish_allowed(t, 4);
    free(t);
    t = repeat('t', 257);
    expect_kicked_after_publish(t, 4, 1);
    free(t);
    cr_assert_geq(test_broker_log_count(&emu.broker, "topic longer than 256 bytes"), 1);
    finish();
}

Test(emulator, topic_levels_limit_is_7_slashes_outside_the_basic_ingest_prefix)
{
    expect_publish_allowed("a/b/c/d/e/f/g/h", 1);
    expect_publish_allowed("$aws/rules/myRule/a/b/c/d/e/f/g/h", 1);
    expect_kicked_after_publish("a/b/c/d/e/f/g/h/i", 1, 1);
    cr_assert_geq(test_broker_log_count(&emu.broker, "more than 7 slashes"), 1);
    finish();
}

Test(emulator, payload_limit_is_128_kb)
{
    expect_publish_allowed("big/ok", 128 * 1024);
    expect_kicked_after_publish("big/no", 128 * 1024 + 1, 1);
    cr_assert_geq(test_broker_log_count(&emu.broker, "payload larger than 128 KB"), 1);
    finish();
}

Test(emulator, qos_2_publish_is_refused)
{
    expect_kicked_after_publish("q2/pub", 3, 2);
    cr_assert_geq(test_broker_log_count(&emu.broker, "QoS 2 is not supported"), 1);
    finish();
}

Test(emulator, retain_on_a_reserved_topic_is_refused)
{
    tclient *c = open_client("retainer");
    cr_assert_eq(tc_sub(c, "plain/retained", 1), 1);
    cr_assert_eq(mosquitto_publish(c->m, NULL, "plain/retained", 1, "1", 1, true), MOSQ_ERR_SUCCESS);
    tc_msg *m = tc_wait(c, "plain/retained", WAIT_MS);
    cr_assert_not_null(m, "RETAIN elsewhere is fine");
    tc_msg_free(m);
    cr_assert_not(tc_wait_disconnected(c, 200));
    cr_assert_eq(mosquitto_publish(c->m, NULL, "$aws/things/r/shadow/update", 12, "{\"state\":{}}",
                                   1, true),
                 MOSQ_ERR_SUCCESS);
    cr_assert(tc_wait_disconnected(c, 5000));
    tc_free(c);
    cr_assert_geq(test_broker_log_count(&emu.broker, "RETAIN on a reserved ($) topic"), 1);
    /* The refused request did not reach the shadow service either. */
    tclient *admin = admin_client("ops");
    cr_assert_eq(tc_sub(admin, CTL_DATA "/response", 1), 1);
    json_t *r = control(admin, CTL_DATA, "{\"op\":\"get-thing-shadow\",\"thingName\":\"r\"}");
    cr_assert_eq(status_of(r), 404);
    json_decref(r);
    tc_free(admin);
    finish();
}

Test(emulator, qos_2_and_oversized_subscriptions_are_refused)
{
    tclient *c = open_client("sub-q2");
    cr_assert_eq(tc_sub(c, "q2/sub", 2), 0x80, "SUBACK failure for QoS 2");
    cr_assert(tc_wait_disconnected(c, 5000), "then the connection is closed");
    tc_free(c);
    c = open_client("sub-deep");
    cr_assert_eq(tc_sub(c, "a/b/c/d/e/f/g/h/#", 1), 0x80);
    cr_assert(tc_wait_disconnected(c, 5000));
    tc_free(c);
    c = open_client("sub-fine");
    cr_assert_eq(tc_sub(c, "a/b/c/d/e/f/g/#", 0), 0);
    cr_assert_not(tc_wait_disconnected(c, 300));
    tc_free(c);
    finish();
}

/* ------------------------------------------------------------ policies */

#define ARN "arn:aws:iot:us-east-1:123456789012:"
#define THING "${iot:Connection.Thing.ThingName}"

/* The developer guide's kind of device policy, plus an explicit Deny and
 * a filter the device may subscribe to but not receive from. */
static const char sensor_policy[] =
    "{\"Version\":\"2012-10-17\",\"Statement\":["
    "{\"Effect\":\"Allow\",\"Action\":\"iot:Connect\",\"Resource\":\"" ARN "client/" THING "\"},"
    "{\"Effect\":\"Allow\",\"Action\":\"iot:Publish\",\"Resource\":["
    "\"" ARN "topic/sensors/" THING "/*\",\"" ARN "topic/$aws/things/" THING "/shadow/*\"]},"
    "{\"Effect\":\"Allow\",\"Action\":\"iot:Subscribe\",\"Resource\":["
    "\"" ARN "topicfilter/commands/" THING "/*\",\"" ARN "topicfilter/$aws/things/" THING "/shadow/*\","
    "\"" ARN "topicfilter/alerts/*\"]},"
    "{\"Effect\":\"Allow\",\"Action\":\"iot:Receive\",\"Resource\":["
    "\"" ARN "topic/commands/" THING "/*\",\"" ARN "topic/$aws/things/" THING "/shadow/*\"]},"
    "{\"Effect\":\"Deny\",\"Action\":\"iot:Publish\",\"Resource\":\"" ARN "topic/sensors/*/secret\"}"
    "]}";

static void setup_policies(void)
{
    make_data_dir();
    emu_register_policy(&emu, "SensorDevicePolicy", sensor_policy);
    emu_register_cert(&emu, "device1", "ACTIVE", "SensorDevicePolicy", "device1");
    emu_register_cert(&emu, "device2", "ACTIVE", "SensorDevicePolicy", "device2");
    emu_write_thing(&emu, "device1");
    emu_write_thing(&emu, "device2");
    start(true, NULL);
}

TestSuite(emulator_policy, .init = setup_policies, .fini = teardown, .timeout = 60);

static tclient *device(const char *id, const char *cert)
{
    tclient *c = tls_client(id, cert);
    cr_assert_eq(tc_connect(c, emu.broker.tls_port), 0, "%s (%s) was refused", id, cert);
    return c;
}

Test(emulator_policy, a_device_works_within_its_policy)
{
    tclient *admin = admin_client("ops");
    cr_assert_eq(tc_sub(admin, "sensors/#", 1), 1);
    tclient *d = device("device1", "device1");
    cr_assert_eq(tc_sub(d, "commands/device1/+", 1), 1);
    cr_assert_eq(tc_pub(d, "sensors/device1/temperature", "{\"value\":21.5}", 1), 0);
    tc_msg *m = tc_wait(admin, "sensors/device1/temperature", WAIT_MS);
    cr_assert_not_null(m);
    cr_assert_str_eq(m->payload, "{\"value\":21.5}");
    tc_msg_free(m);
    cr_assert_eq(tc_pub(admin, "commands/device1/calibrate", "{}", 1), 0);
    m = tc_wait(d, "commands/device1/calibrate", WAIT_MS);
    cr_assert_not_null(m);
    tc_msg_free(m);
    /* Its shadow: requests allowed, replies received. */
    sub_replies(d, "$aws/things/device1/shadow");
    request(d, "$aws/things/device1/shadow", "update", "{\"state\":{\"reported\":{\"interval\":10}}}");
    json_t *acc = expect_json(d, "$aws/things/device1/shadow", "update/accepted");
    cr_assert_eq(json_integer_value(json_object_get(acc, "version")), 1);
    json_decref(acc);
    cr_assert_not(tc_wait_disconnected(d, 200));
    cr_assert_geq(test_broker_log_count(&emu.broker, "device1 connected as thing device1 (attached)"), 1);
    tc_free(d);
    tc_free(admin);
    finish();
}

Test(emulator_policy, publishing_outside_the_policy_disconnects_and_delivers_nothing)
{
    tclient *admin = admin_client("ops");
    cr_assert_eq(tc_sub(admin, "#", 1), 1);
    tclient *d = device("device1", "device1");
    /* mosquitto answers the QoS 1 PUBLISH with a PUBACK (MQTT 5: reason 0x87),
     * then the plugin closes the connection as AWS does (AUTH_ERROR). */
    cr_assert_eq(mosquitto_publish(d->m, NULL, "sensors/device2/temperature", 2, "42", 1, false),
                 MOSQ_ERR_SUCCESS);
    cr_assert(tc_wait_disconnected(d, 5000), "not disconnected after a forbidden publish");
    tc_free(d);
    /* An explicit Deny wins over the Allow on sensors/<thing>/... */
    d = device("device1", "device1");
    cr_assert_eq(mosquitto_publish(d->m, NULL, "sensors/device1/secret", 2, "42", 1, false),
                 MOSQ_ERR_SUCCESS);
    cr_assert(tc_wait_disconnected(d, 5000));
    tc_free(d);
    cr_assert_eq(tc_pub(admin, "probe", "x", 1), 0);
    tc_msg_free(tc_wait(admin, "probe", WAIT_MS));
    cr_assert_eq(tc_count(admin, "sensors/"), 0, "a refused message was delivered");
    cr_assert_geq(test_broker_log_count(&emu.broker, "iot:Publish on sensors/device2/temperature not allowed"), 1);
    cr_assert_geq(test_broker_log_count(&emu.broker, "iot:Publish on sensors/device1/secret explicitly denied"), 1);
    tc_free(admin);
    finish();
}

Test(emulator_policy, subscribing_outside_the_policy_gets_suback_0x80_and_a_disconnect)
{
    tclient *d = device("device1", "device1");
    cr_assert_eq(tc_sub(d, "commands/#", 1), 0x80);
    cr_assert(tc_wait_disconnected(d, 5000));
    tc_free(d);
    d = device("device1", "device1");
    cr_assert_eq(tc_sub(d, "$aws/things/device2/shadow/update/accepted", 1), 0x80);
    cr_assert(tc_wait_disconnected(d, 5000));
    tc_free(d);
    finish();
}

Test(emulator_policy, a_message_the_device_may_not_receive_is_silently_not_delivered)
{
    tclient *admin = admin_client("ops");
    tclient *d = device("device1", "device1");
    cr_assert_eq(tc_sub(d, "alerts/+", 1), 1, "subscribe is allowed on alerts/+");
    cr_assert_eq(tc_sub(d, "commands/device1/+", 1), 1);
    cr_assert_eq(tc_pub(admin, "alerts/fire", "1", 1), 0);
    cr_assert_eq(tc_pub(admin, "commands/device1/ping", "2", 1), 0);
    tc_msg *m = tc_wait(d, "commands/device1/ping", WAIT_MS);
    cr_assert_not_null(m, "the later, allowed message arrives");
    tc_msg_free(m);
    cr_assert_eq(tc_count(d, "alerts/"), 0, "iot:Receive is not allowed on alerts");
    cr_assert_not(tc_wait_disconnected(d, 200), "no disconnect for a receive denial");
    tc_free(d);
    tc_free(admin);
    finish();
}

/* AWS lists the shadow reply topics (/accepted, /rejected, /update/delta,
 * /update/documents) as Subscribe only (developer guide, "Reserved topics"):
 * the service alone publishes there. A device whose policy allows
 * iot:Publish on every shadow topic of its thing still cannot forge a delta or
 * an answer for the other subscribers of its shadow. */
Test(emulator_policy, a_device_cannot_publish_on_shadow_reply_topics)
{
    static const char *const forged[] = {
        "$aws/things/device1/shadow/update/delta",
        "$aws/things/device1/shadow/update/accepted",
        "$aws/things/device1/shadow/name/cfg/get/accepted",
        "$aws/things/device1/shadow/update/documents",
        "$aws/things/device1/shadow/delete/rejected",
    };
    tclient *admin = admin_client("ops");
    cr_assert_eq(tc_sub(admin, "$aws/things/device1/shadow/#", 1), 1);
    for (size_t i = 0; i < sizeof forged / sizeof *forged; i++) {
        tclient *d = device("device1", "device1");
        cr_assert_eq(mosquitto_publish(d->m, NULL, forged[i], 36,
                                       "{\"state\":{\"led\":\"off\"},\"version\":99}", 1, false),
                     MOSQ_ERR_SUCCESS);
        cr_assert(tc_wait_disconnected(d, 5000), "%s: not disconnected", forged[i]);
        tc_free(d);
    }
    /* The requests themselves stay allowed. */
    tclient *d = device("device1", "device1");
    cr_assert_eq(tc_pub(d, "$aws/things/device1/shadow/get", "", 1), 0);
    cr_assert_not(tc_wait_disconnected(d, 300));
    tc_free(d);
    cr_assert_eq(tc_pub(admin, "probe", "x", 1), 0);
    tc_msg_free(tc_wait(admin, "probe", WAIT_MS));
    for (size_t i = 0; i < sizeof forged / sizeof *forged; i++)
        cr_assert_eq(tc_count_exact(admin, forged[i]), 0, "%s: a forged reply was delivered",
                     forged[i]);
    cr_assert_geq(test_broker_log_count(&emu.broker, "shadow reply topic"), 1);
    tc_free(admin);
    finish();
}

Test(emulator_policy, two_devices_never_see_each_others_shadow_replies)
{
    tclient *a = device("device1", "device1"), *b = device("device2", "device2");
    sub_replies(a, "$aws/things/device1/shadow");
    sub_replies(b, "$aws/things/device2/shadow");
    request(a, "$aws/things/device1/shadow", "update", "{\"state\":{\"reported\":{\"who\":1}},\"clientToken\":\"a\"}");
    request(b, "$aws/things/device2/shadow", "update", "{\"state\":{\"reported\":{\"who\":2}},\"clientToken\":\"b\"}");
    request(a, "$aws/things/device1/shadow", "get", "{\"clientToken\":\"ga\"}");
    request(b, "$aws/things/device2/shadow", "get", "{\"clientToken\":\"gb\"}");
    json_t *ga = expect_json(a, "$aws/things/device1/shadow", "get/accepted");
    json_t *gb = expect_json(b, "$aws/things/device2/shadow", "get/accepted");
    cr_assert_str_eq(json_string_value(json_object_get(ga, "clientToken")), "ga");
    cr_assert_str_eq(json_string_value(json_object_get(gb, "clientToken")), "gb");
    json_decref(ga);
    json_decref(gb);
    cr_assert_eq(tc_count(a, "$aws/things/device2"), 0);
    cr_assert_eq(tc_count(b, "$aws/things/device1"), 0);
    /* The policy keeps device2 from even asking. */
    cr_assert_eq(tc_sub(b, "$aws/things/device1/shadow/get/accepted", 1), 0x80);
    cr_assert(tc_wait_disconnected(b, 5000));
    tc_free(a);
    tc_free(b);
    finish();
}

Test(emulator_policy, unknown_or_inactive_certificates_are_refused_at_connect)
{
    emu_unregister_cert(&emu, "device2");
    tclient *c = tls_client("device2", "device2");
    cr_assert_eq(tc_connect(c, emu.broker.tls_port), 5, "unknown certificate: CONNACK 5");
    tc_free(c);
    emu_register_cert(&emu, "device2", "INACTIVE", "SensorDevicePolicy", "device2");
    c = tls_client("device2", "device2");
    cr_assert_eq(tc_connect(c, emu.broker.tls_port), 5, "INACTIVE certificate: CONNACK 5");
    tc_free(c);
    /* Registry changes apply to the next connection, no restart. */
    emu_register_cert(&emu, "device2", "ACTIVE", "SensorDevicePolicy", "device2");
    c = device("device2", "device2");
    tc_free(c);
    cr_assert_geq(test_broker_log_count(&emu.broker, "is not registered"), 1);
    cr_assert_geq(test_broker_log_count(&emu.broker, "is INACTIVE"), 1);
    finish();
}

Test(emulator_policy, connect_needs_iot_connect_for_the_client_id)
{
    /* The policy allows client/${thing}: device1's certificate with another
     * client id is refused. */
    tclient *c = tls_client("not-device1", "device1");
    cr_assert_eq(tc_connect(c, emu.broker.tls_port), 5);
    tc_free(c);
    cr_assert_geq(test_broker_log_count(&emu.broker, "no policy allows iot:Connect"), 1);
    /* A certificate without policies cannot connect at all. */
    emu_register_cert(&emu, "device2", "ACTIVE", NULL, "device2");
    c = tls_client("device2", "device2");
    cr_assert_eq(tc_connect(c, emu.broker.tls_port), 5);
    tc_free(c);
    finish();
}

Test(emulator_policy, without_a_certificate_only_the_admin_gets_in)
{
    tclient *c = tc_new("anon", NULL, NULL, NULL, NULL, NULL);
    cr_assert_eq(tc_connect(c, emu.broker.port), 5);
    tc_free(c);
    c = tc_new("pw", "device1", "x", NULL, NULL, NULL);
    cr_assert_eq(tc_connect(c, emu.broker.port), 5);
    tc_free(c);
    /* The admin bypasses policies. */
    tclient *admin = admin_client("ops");
    cr_assert_eq(tc_sub(admin, "anything/#", 1), 1);
    cr_assert_eq(tc_pub(admin, "anything/x", "1", 1), 0);
    tc_msg *m = tc_wait(admin, "anything/x", WAIT_MS);
    cr_assert_not_null(m);
    tc_msg_free(m);
    tc_free(admin);
    finish();
}

/* ------------------------------------------------------------ options */

Test(emulator_seeded, an_unknown_option_or_policies_value_stops_the_broker)
{
    char conf[1024];
    snprintf(conf, sizeof conf, "plugin %s\nplugin_opt_bogus 1\n", CIOT_EMU_PLUGIN);
    test_broker_opts o = {.max_queued = -1, .plugin_conf = conf};
    emu.skip_leak_check = true;
    int rc = emu_broker_start(&emu, &o);
    cr_assert_neq(rc, 0, "the broker must not start");
    cr_assert_geq(test_broker_log_count(&emu.broker, "unknown option plugin_opt_bogus"), 1);
    test_broker_stop(&emu.broker);
    snprintf(conf, sizeof conf, "plugin %s\nplugin_opt_policies maybe\n", CIOT_EMU_PLUGIN);
    rc = emu_broker_start(&emu, &o);
    cr_assert_neq(rc, 0);
    cr_assert_geq(test_broker_log_count(&emu.broker, "plugin_opt_policies: \"maybe\""), 1);
    test_broker_stop(&emu.broker);
    emu.skip_leak_check = false;
    finish();
}

Test(emulator_seeded, region_and_account_come_from_emulator_json_unless_given)
{
    char path[500];
    snprintf(path, sizeof path, "%s/emulator.json", emu.data_dir);
    emu_write_text(path, "{\"region\":\"eu-west-1\",\"account\":\"111122223333\"}");
    emu_register_policy(&emu, "EuPolicy",
                    "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":"
                    "[\"iot:Connect\",\"iot:Publish\"],\"Resource\":"
                    "\"arn:aws:iot:eu-west-1:111122223333:*\"}]}");
    emu_register_cert(&emu, "device1", "ACTIVE", "EuPolicy", "device1");
    start(true, NULL);
    tclient *d = device("device1", "device1");
    cr_assert_eq(tc_pub(d, "any/topic", "1", 1), 0);
    cr_assert_not(tc_wait_disconnected(d, 300), "the eu-west-1 policy allows it");
    tc_free(d);
    finish();
    /* An option wins over the file: the same policy no longer matches. */
    start(true, "plugin_opt_region us-west-2\n");
    d = tls_client("device1", "device1");
    cr_assert_eq(tc_connect(d, emu.broker.tls_port), 5);
    tc_free(d);
    finish();
}

Test(emulator_policy, what_an_mqtt5_client_sees_on_a_policy_violation)
{
    char cert[300], key[300], ca[300];
    snprintf(ca, sizeof ca, "%s", test_broker_pki(&emu.broker, "ca.crt"));
    snprintf(cert, sizeof cert, "%s/device1.crt", emu.broker.pki);
    snprintf(key, sizeof key, "%s/device1.key", emu.broker.pki);
    tclient *d = tc_new_v(5, "device1", NULL, NULL, ca, cert, key);
    cr_assert_eq(tc_connect(d, emu.broker.tls_port), 0);
    cr_assert_eq(tc_pub(d, "sensors/device2/t", "1", 1), 0, "a PUBACK comes first");
    cr_assert_eq(tc_get(d, &d->last_puback_reason), 0x87, "PUBACK reason: not authorized");
    cr_assert(tc_wait_disconnected(d, 5000));
    cr_assert_eq(tc_get(d, &d->disconnect_reason), 0x98,
                 "DISCONNECT reason 0x98, administrative action (AWS: the connection closes)");
    tc_free(d);
    d = tc_new_v(5, "device1", NULL, NULL, ca, cert, key);
    cr_assert_eq(tc_connect(d, emu.broker.tls_port), 0);
    cr_assert_eq(tc_sub(d, "commands/#", 1), 0x87, "SUBACK reason: not authorized");
    cr_assert(tc_wait_disconnected(d, 5000));
    tc_free(d);
    /* Unknown certificate: CONNACK reason 0x87. */
    emu_unregister_cert(&emu, "device2");
    snprintf(cert, sizeof cert, "%s/device2.crt", emu.broker.pki);
    snprintf(key, sizeof key, "%s/device2.key", emu.broker.pki);
    d = tc_new_v(5, "device2", NULL, NULL, ca, cert, key);
    cr_assert_eq(tc_connect(d, emu.broker.tls_port), 0x87);
    tc_free(d);
    finish();
}

/* A listener with use_identity_as_username (mosquitto then skips the
 * plugin's CONNECT check): the plugin decides at the first operation. */
Test(emulator_seeded, a_listener_that_skips_authentication_is_caught_at_the_first_operation)
{
    emu_register_policy(&emu, "SensorDevicePolicy", sensor_policy);
    emu_register_cert(&emu, "device1", "ACTIVE", "SensorDevicePolicy", "device1");
    int port = 0;
    for (int attempt = 0; attempt < 20 && port == 0; attempt++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
            getsockname(fd, (struct sockaddr *)&a, &len) == 0)
            port = ntohs(a.sin_port);
        close(fd);
    }
    cr_assert_gt(port, 0);
    char extra[1200];
    snprintf(extra, sizeof extra,
             "listener %d 127.0.0.1\ncafile %s/ca.crt\ncertfile %s/server.crt\nkeyfile %s/server.key\n"
             "require_certificate true\nuse_identity_as_username true\n",
             port, CIOT_TEST_PKI_DIR_FOR_TESTS, CIOT_TEST_PKI_DIR_FOR_TESTS,
             CIOT_TEST_PKI_DIR_FOR_TESTS);
    start(true, extra);
    tclient *ok = tls_client("device1", "device1");
    int rc = -1;
    for (int i = 0; i < 50 && rc != 0; i++) { /* the extra listener may still be starting */
        rc = tc_connect(ok, port);
        if (rc != 0) {
            tc_free(ok);
            tc_sleep_ms(100);
            ok = tls_client("device1", "device1");
        }
    }
    cr_assert_eq(rc, 0);
    cr_assert_eq(tc_sub(ok, "commands/device1/+", 1), 1, "allowed by its policy");
    cr_assert_not(tc_wait_disconnected(ok, 300));
    tc_free(ok);
    /* device2 is not registered: its CONNECT is accepted by mosquitto, its
     * first operation refused and the connection closed. */
    tclient *bad = tls_client("device2", "device2");
    cr_assert_eq(tc_connect(bad, port), 0);
    cr_assert_eq(tc_sub(bad, "commands/device2/+", 1), 0x80);
    cr_assert(tc_wait_disconnected(bad, 5000));
    tc_free(bad);
    cr_assert_geq(test_broker_log_count(&emu.broker, "was not authenticated at CONNECT"), 2);
    finish();
}
