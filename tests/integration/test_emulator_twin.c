/* The emulator's Azure device twin service (emulator/twin_service.c) in a
 * real mosquitto: GET, reported patches with null removal and $version,
 * desired updates over the control topic pushed to the one device, replies
 * that never reach another connection, persistence across a restart,
 * module identities, and the error codes of protocols.md §4.6. Devices
 * connect unauthenticated (plugin_opt_policies off); the SAS check is not
 * part of this file. */
#include "emu_fixture.h"
#include "tclient.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ADMIN_PW "s3cret-admin"
#define WAIT_MS 5000
#define CTL_HUB "$CONTROL/cloudiot/v1/iothub"
#define RES "$iothub/twin/res/"
#define DESIRED "$iothub/twin/PATCH/properties/desired/"

static emu_fixture emu;

/* ------------------------------------------------------------ fixture */

static void setup_open(void)
{
    emu_data_dir_make(&emu, "/tmp/ciot-emu-XXXXXX");
    emu_start(&emu, true, "plugin_opt_admin_password " ADMIN_PW "\nplugin_opt_policies off\n");
}

static void teardown(void) { emu_teardown(&emu); }
static void finish(void) { emu_finish(&emu); }
static int restart_broker(void) { return emu_restart(&emu); }

/* ------------------------------------------------------------ helpers */

static tclient *device(const char *id)
{
    tclient *c = tc_new(id, NULL, NULL, NULL, NULL, NULL);
    cr_assert_not_null(c);
    cr_assert_eq(tc_connect(c, emu.broker.port), 0, "%s could not connect", id);
    cr_assert_eq(tc_sub(c, RES "#", 1), 1);
    cr_assert_eq(tc_sub(c, DESIRED "#", 1), 1);
    return c;
}

static tclient *admin_client(void)
{
    tclient *c = tc_new("operator", "cloudiot-admin", ADMIN_PW, NULL, NULL, NULL);
    cr_assert_not_null(c);
    cr_assert_eq(tc_connect(c, emu.broker.port), 0, "admin could not connect");
    cr_assert_eq(tc_sub(c, CTL_HUB "/response", 1), 1);
    return c;
}

/* Publishes a twin request (QoS 1: the PUBACK must come even though the
 * plugin consumes the message). */
static void twin_pub(tclient *c, const char *topic, const char *payload)
{
    cr_assert_eq(tc_pub(c, topic, payload, 1), 0, "publish %s", topic);
}

/* Waits for exactly @p topic and checks its body (NULL: empty body). */
static void expect(tclient *c, const char *topic, const char *body)
{
    tc_msg *m = tc_wait(c, topic, WAIT_MS);
    cr_assert_not_null(m, "nothing on %s", topic);
    if (body)
        cr_assert_str_eq(m->payload, body, "on %s", topic);
    else
        cr_assert_eq(m->len, 0, "on %s: body %s", topic, m->payload);
    tc_msg_free(m);
}

/* Waits for @p topic and returns its "message" (caller frees). */
static char *expect_error(tclient *c, const char *topic)
{
    tc_msg *m = tc_wait(c, topic, WAIT_MS);
    cr_assert_not_null(m, "nothing on %s", topic);
    json_error_t err;
    json_t *j = json_loads(m->payload, 0, &err);
    cr_assert_not_null(j, "not JSON: %s", m->payload);
    const char *msg = json_string_value(json_object_get(j, "message"));
    cr_assert_not_null(msg);
    char *r = strdup(msg);
    json_decref(j);
    tc_msg_free(m);
    return r;
}

static json_t *control(tclient *admin, const char *req)
{
    cr_assert_eq(tc_pub(admin, CTL_HUB, req, 1), 0);
    tc_msg *m = tc_wait(admin, CTL_HUB "/response", WAIT_MS);
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

static void assert_result(json_t *resp, const char *want)
{
    json_error_t err;
    json_t *w = json_loads(want, 0, &err);
    cr_assert_not_null(w, "bad test JSON %s", want);
    json_t *got = json_object_get(resp, "result");
    char *g = json_dumps(resp, JSON_COMPACT);
    cr_assert(json_equal(got, w), "got %s, want result %s", g, want);
    free(g);
    json_decref(w);
}

/* ------------------------------------------------------------ tests */

TestSuite(twin, .init = setup_open, .fini = teardown, .timeout = 60);

Test(twin, get_of_a_new_device_is_empty_at_version_1)
{
    tclient *d = device("dev1");
    twin_pub(d, "$iothub/twin/GET/?$rid=1", "");
    expect(d, RES "200/?$rid=1", "{\"desired\":{\"$version\":1},\"reported\":{\"$version\":1}}");
    tc_free(d);
    finish();
}

Test(twin, reported_patch_merges_removes_nulls_and_bumps_version)
{
    tclient *d = device("dev1");
    twin_pub(d, "$iothub/twin/PATCH/properties/reported/?$rid=7",
             "{\"firmware\":\"1.1.0\",\"battery\":80,\"net\":{\"ssid\":\"a\",\"rssi\":-60}}");
    expect(d, RES "204/?$rid=7&$version=2", NULL);
    /* protocols.md §4.5: null removes, and the answer carries $version */
    twin_pub(d, "$iothub/twin/PATCH/properties/reported/?$rid=8",
             "{\"firmware\":\"1.2.0\",\"battery\":null,\"net\":{\"rssi\":null}}");
    expect(d, RES "204/?$rid=8&$version=3", NULL);
    /* $rid anywhere in the query */
    twin_pub(d, "$iothub/twin/GET/?foo=bar&$rid=x-9", "");
    expect(d, RES "200/?$rid=x-9",
           "{\"desired\":{\"$version\":1},\"reported\":{\"firmware\":\"1.2.0\",\"net\":{\"ssid\":"
           "\"a\"},"
           "\"$version\":3}}");
    tc_free(d);
    finish();
}

Test(twin, desired_update_by_control_is_pushed_to_that_device_only)
{
    tclient *admin = admin_client();
    tclient *d1 = device("dev1"), *d2 = device("dev2");
    json_t *r = control(admin, "{\"op\":\"update-twin\",\"deviceId\":\"dev1\",\"requestId\":\"u1\","
                               "\"patch\":{\"telemetryInterval\":30,\"route\":\"a\"}}");
    cr_assert_eq(status_of(r), 200);
    cr_assert_str_eq(json_string_value(json_object_get(r, "requestId")), "u1");
    assert_result(r, "{\"desired\":{\"telemetryInterval\":30,\"route\":\"a\",\"$version\":2},"
                     "\"reported\":{\"$version\":1}}");
    json_decref(r);
    expect(d1, DESIRED "?$version=2", "{\"telemetryInterval\":30,\"route\":\"a\",\"$version\":2}");
    /* the §4.5 example: null in a desired patch travels to the device */
    r = control(admin, "{\"op\":\"update-twin\",\"deviceId\":\"dev1\","
                       "\"patch\":\"{\\\"telemetryInterval\\\":60,\\\"route\\\":null}\"}");
    cr_assert_eq(status_of(r), 200);
    json_decref(r);
    expect(d1, DESIRED "?$version=3", "{\"telemetryInterval\":60,\"route\":null,\"$version\":3}");
    r = control(admin, "{\"op\":\"get-twin\",\"deviceId\":\"dev1\"}");
    assert_result(r, "{\"desired\":{\"telemetryInterval\":60,\"$version\":3},"
                     "\"reported\":{\"$version\":1}}");
    json_decref(r);
    /* the device's GET agrees */
    twin_pub(d1, "$iothub/twin/GET/?$rid=g", "");
    expect(d1, RES "200/?$rid=g",
           "{\"desired\":{\"telemetryInterval\":60,\"$version\":3},\"reported\":{\"$version\":1}}");
    /* dev2 saw nothing of it */
    twin_pub(d2, "$iothub/twin/GET/?$rid=g2", "");
    expect(d2, RES "200/?$rid=g2", "{\"desired\":{\"$version\":1},\"reported\":{\"$version\":1}}");
    cr_assert_eq(tc_count(d2, "$iothub"), 0);
    /* an offline device: the change is kept, nothing is queued for it */
    tc_free(d2);
    r = control(admin, "{\"op\":\"update-twin\",\"deviceId\":\"dev2\",\"patch\":{\"x\":1}}");
    cr_assert_eq(status_of(r), 200);
    json_decref(r);
    d2 = device("dev2");
    tc_sleep_ms(200);
    cr_assert_eq(tc_count(d2, DESIRED), 0);
    twin_pub(d2, "$iothub/twin/GET/?$rid=g3", "");
    expect(d2, RES "200/?$rid=g3",
           "{\"desired\":{\"x\":1,\"$version\":2},\"reported\":{\"$version\":1}}");
    tc_free(d1);
    tc_free(d2);
    tc_free(admin);
    finish();
}

Test(twin, two_devices_never_see_each_others_replies_or_requests)
{
    tclient *d1 = device("dev1"), *d2 = device("dev2");
    tclient *snoop = tc_new("snoop", NULL, NULL, NULL, NULL, NULL);
    cr_assert_not_null(snoop);
    cr_assert_eq(tc_connect(snoop, emu.broker.port), 0);
    cr_assert_eq(tc_sub(snoop, "$iothub/#", 1), 1);
    cr_assert_eq(tc_sub(d2, "$iothub/#", 1), 1);
    twin_pub(d1, "$iothub/twin/PATCH/properties/reported/?$rid=1", "{\"who\":\"one\"}");
    twin_pub(d2, "$iothub/twin/PATCH/properties/reported/?$rid=1", "{\"who\":\"two\"}");
    expect(d1, RES "204/?$rid=1&$version=2", NULL);
    expect(d2, RES "204/?$rid=1&$version=2", NULL);
    twin_pub(d1, "$iothub/twin/GET/?$rid=1", "");
    twin_pub(d2, "$iothub/twin/GET/?$rid=1", "");
    expect(d1, RES "200/?$rid=1",
           "{\"desired\":{\"$version\":1},\"reported\":{\"who\":\"one\",\"$version\":2}}");
    expect(d2, RES "200/?$rid=1",
           "{\"desired\":{\"$version\":1},\"reported\":{\"who\":\"two\",\"$version\":2}}");
    /* a device cannot forge a desired notification for the others */
    twin_pub(d2, DESIRED "?$version=99", "{\"evil\":1,\"$version\":99}");
    twin_pub(d1, "$iothub/twin/GET/?$rid=2", "");
    expect(d1, RES "200/?$rid=2",
           "{\"desired\":{\"$version\":1},\"reported\":{\"who\":\"one\",\"$version\":2}}");
    tc_sleep_ms(200);
    cr_assert_eq(tc_count(d1, "$iothub"), 0, "dev1 got a message not meant for it");
    cr_assert_eq(tc_count(d2, "$iothub"), 0, "dev2 got a message not meant for it");
    cr_assert_eq(tc_count(snoop, "$iothub"), 0, "the snooper saw twin traffic");
    tc_free(snoop);
    tc_free(d1);
    tc_free(d2);
    finish();
}

Test(twin, twins_persist_across_a_restart_modules_included)
{
    tclient *admin = admin_client();
    tclient *d = device("dev1"), *m = device("dev1/modA");
    twin_pub(d, "$iothub/twin/PATCH/properties/reported/?$rid=1", "{\"fw\":\"2.0\"}");
    expect(d, RES "204/?$rid=1&$version=2", NULL);
    twin_pub(m, "$iothub/twin/PATCH/properties/reported/?$rid=1", "{\"mod\":true}");
    expect(m, RES "204/?$rid=1&$version=2", NULL);
    json_t *r =
        control(admin, "{\"op\":\"update-twin\",\"deviceId\":\"dev1\",\"moduleId\":\"modA\","
                       "\"patch\":{\"level\":{\"a\":1}}}");
    cr_assert_eq(status_of(r), 200);
    json_decref(r);
    expect(m, DESIRED "?$version=2", "{\"level\":{\"a\":1},\"$version\":2}");
    cr_assert_eq(tc_count(d, DESIRED), 0);
    tc_free(d);
    tc_free(m);
    tc_free(admin);
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/twins/dev1.json", emu.data_dir);
    cr_assert_eq(stat(path, &st), 0, "%s missing", path);
    snprintf(path, sizeof path, "%s/twins/dev1~modA.json", emu.data_dir);
    cr_assert_eq(stat(path, &st), 0, "%s missing", path);

    cr_assert_eq(restart_broker(), 0);
    d = device("dev1");
    m = device("dev1/modA");
    twin_pub(d, "$iothub/twin/GET/?$rid=a", "");
    expect(d, RES "200/?$rid=a",
           "{\"desired\":{\"$version\":1},\"reported\":{\"fw\":\"2.0\",\"$version\":2}}");
    twin_pub(m, "$iothub/twin/GET/?$rid=b", "");
    expect(m, RES "200/?$rid=b",
           "{\"desired\":{\"level\":{\"a\":1},\"$version\":2},\"reported\":{\"mod\":true,\"$"
           "version\":2}}");
    /* versions continue */
    twin_pub(d, "$iothub/twin/PATCH/properties/reported/?$rid=c", "{\"fw\":null}");
    expect(d, RES "204/?$rid=c&$version=3", NULL);
    tc_free(d);
    tc_free(m);
    finish();
}

Test(twin, errors_have_the_hub_status_codes)
{
    tclient *d = device("dev1");
    char *msg;
    twin_pub(d, "$iothub/twin/PATCH/properties/reported/?$rid=1", "{\"a\":");
    msg = expect_error(d, RES "400/?$rid=1");
    cr_assert_str_eq(msg, "malformed JSON");
    free(msg);
    twin_pub(d, "$iothub/twin/PATCH/properties/reported/?$rid=2", "[1,2]");
    msg = expect_error(d, RES "400/?$rid=2");
    cr_assert_not_null(strstr(msg, "object"));
    free(msg);
    twin_pub(d, "$iothub/twin/PATCH/properties/reported/?$rid=3", "{\"a.b\":1}");
    msg = expect_error(d, RES "400/?$rid=3");
    cr_assert_not_null(strstr(msg, "property name"));
    free(msg);
    /* over 32 KB: 9 strings of 4000 characters */
    char *big = malloc(40000);
    size_t n = 0;
    big[n++] = '{';
    for (int i = 0; i < 9; i++) {
        n += (size_t)sprintf(big + n, "%s\"k%d\":\"", i ? "," : "", i);
        memset(big + n, 'x', 4000);
        n += 4000;
        big[n++] = '"';
    }
    big[n++] = '}';
    big[n] = '\0';
    twin_pub(d, "$iothub/twin/PATCH/properties/reported/?$rid=4", big);
    free(big);
    msg = expect_error(d, RES "413/?$rid=4");
    cr_assert_not_null(strstr(msg, "32 KB"));
    free(msg);
    twin_pub(d, "$iothub/twin/PATCH/properties/desired/?$rid=5", "{\"a\":1}");
    msg = expect_error(d, RES "404/?$rid=5");
    free(msg);
    twin_pub(d, "$iothub/twin/GET/", ""); /* no $rid: dropped */
    twin_pub(d, "$iothub/twin/GET/?$rid=6", "");
    expect(d, RES "200/?$rid=6", "{\"desired\":{\"$version\":1},\"reported\":{\"$version\":1}}");
    tc_sleep_ms(100);
    cr_assert_eq(tc_count(d, "$iothub"), 0, "a rejected request changed or answered more");
    /* a client id that is no Azure identity */
    tclient *bad = device("bad id");
    twin_pub(bad, "$iothub/twin/GET/?$rid=1", "");
    msg = expect_error(bad, RES "400/?$rid=1");
    cr_assert_not_null(strstr(msg, "client id"));
    free(msg);
    tc_free(bad);
    tc_free(d);
    finish();
}

Test(twin, control_errors)
{
    tclient *admin = admin_client();
    static const struct {
        const char *req;
        int status;
        const char *part;
    } cases[] = {
        {"{\"op\":\"get-twin\"}", 400, "deviceId"},
        {"{\"op\":\"get-twin\",\"deviceId\":\"a/b\"}", 400, "deviceId"},
        {"{\"op\":\"get-twin\",\"deviceId\":\"d\",\"moduleId\":7}", 400, "moduleId"},
        {"{\"op\":\"update-twin\",\"deviceId\":\"d\"}", 400, "patch"},
        {"{\"op\":\"update-twin\",\"deviceId\":\"d\",\"patch\":[1]}", 400, "object"},
        {"{\"op\":\"update-twin\",\"deviceId\":\"d\",\"patch\":\"{\"}", 400, "malformed"},
        {"{\"op\":\"update-twin\",\"deviceId\":\"d\",\"patch\":{\"$x\":1}}", 400, "property name"},
        {"{\"op\":\"list-things\"}", 400, "unknown op"},
        {"{\"op\":\"nope\"}", 400, "unknown op"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *r = control(admin, cases[i].req);
        cr_assert_eq(status_of(r), cases[i].status, "%s", cases[i].req);
        const char *e = json_string_value(json_object_get(r, "error"));
        cr_assert(e && strstr(e, cases[i].part), "%s: error %s", cases[i].req, e ? e : "(none)");
        json_decref(r);
    }
    /* nothing was created by the refusals */
    json_t *r = control(admin, "{\"op\":\"get-twin\",\"deviceId\":\"d\"}");
    assert_result(r, "{\"desired\":{\"$version\":1},\"reported\":{\"$version\":1}}");
    json_decref(r);
    /* a device may not use the control topic */
    tclient *d = device("dev1");
    cr_assert_eq(tc_sub(d, CTL_HUB "/response", 1), 0x80);
    tc_free(d);
    tc_free(admin);
    finish();
}

Test(twin, a_corrupt_twin_file_is_a_500_not_a_reset)
{
    char path[512];
    snprintf(path, sizeof path, "%s/twins", emu.data_dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/twins/broken.json", emu.data_dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("{\"format\":1,\"desired\":{}}", f);
    fclose(f);
    tclient *d = device("broken");
    twin_pub(d, "$iothub/twin/GET/?$rid=1", "");
    char *msg = expect_error(d, RES "500/?$rid=1");
    free(msg);
    twin_pub(d, "$iothub/twin/PATCH/properties/reported/?$rid=2", "{\"a\":1}");
    msg = expect_error(d, RES "500/?$rid=2");
    free(msg);
    tc_free(d);
    /* the file is left as it was */
    f = fopen(path, "r");
    char buf[64] = {0};
    cr_assert_not_null(f);
    cr_assert_gt(fread(buf, 1, sizeof buf - 1, f), 0);
    fclose(f);
    cr_assert_str_eq(buf, "{\"format\":1,\"desired\":{}}");
    finish();
}

/* IoT Hub speaks MQTT 3.1.1 (§4.1); an MQTT 5 client is still answered, but
 * its PUBACK carries mosquitto's reason for a message the plugin consumed. */
Test(twin, mqtt5_device_is_answered_puback_reason_documented)
{
    tclient *d = tc_new_v(5, "dev5", NULL, NULL, NULL, NULL, NULL);
    cr_assert_not_null(d);
    cr_assert_eq(tc_connect(d, emu.broker.port), 0);
    cr_assert_eq(tc_sub(d, RES "#", 1), 1);
    twin_pub(d, "$iothub/twin/GET/?$rid=1", "");
    expect(d, RES "200/?$rid=1", "{\"desired\":{\"$version\":1},\"reported\":{\"$version\":1}}");
    cr_assert_eq(tc_get(d, &d->last_puback_reason), 0x87);
    tc_free(d);
    finish();
}
