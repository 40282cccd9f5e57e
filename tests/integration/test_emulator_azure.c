/* The emulator's Azure IoT Hub side in a real mosquitto: devices provisioned
 * with the launcher (cloudiot-emulator create-device ...), SAS and X.509
 * authentication at CONNECT and the refusals, the kick at token expiry, the
 * per-device topic rules, direct methods (round trip, 404 offline, 504
 * timeout) and cloud-to-device messages over $CONTROL/cloudiot/v1/iothub. */
#include "emu_fixture.h"
#include "tclient.h"

#include "backend/azure_conn.h"
#include "core/azure.h"

#include <cloudiot/azure.h>

#include <criterion/criterion.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ADMIN_PW "s3cret-admin"
#define HUB "test-hub.azure-devices.net"
#define API "/?api-version=2021-04-12"
#define CTL "$CONTROL/cloudiot/v1/iothub"
#define WAIT_MS 5000

static emu_fixture emu;

/* ------------------------------------------------------------ fixture */

/* The primary (or secondary) key of a device, from show-device. */
static void device_key(const char *id, bool primary, char key[128])
{
    char out[4096];
    cr_assert_eq(emu_launcher(&emu, out, sizeof out, "show-device --device-id '%s'", id), 0);
    json_error_t err;
    json_t *j = json_loads(out, 0, &err);
    cr_assert_not_null(j, "show-device output is not JSON: %s", out);
    const char *k = json_string_value(json_object_get(
        json_object_get(json_object_get(j, "authentication"), "symmetricKey"),
        primary ? "primaryKey" : "secondaryKey"));
    cr_assert_not_null(k);
    snprintf(key, 128, "%s", k);
    json_decref(j);
}

static void setup(void)
{
    emu_data_dir_make(&emu, "/tmp/ciot-emu-az-XXXXXX");
    cr_assert_eq(emu_launcher(&emu, NULL, 0, "create-device --device-id d1 --hub-name test-hub"), 0);
    cr_assert_eq(emu_launcher(&emu, NULL, 0, "create-device --device-id d2"), 0);
    cr_assert_eq(emu_launcher(&emu, NULL, 0, "create-device --device-id d3-off --status disabled"),
                 0);
    cr_assert_eq(emu_launcher(&emu, NULL, 0, "create-device --device-id 'odd(1)!$x' "), 0);
    cr_assert_eq(
        emu_launcher(&emu, NULL, 0, "create-device --device-id device1 --auth-method x509_ca"), 0);
    emu_start(&emu, true, "plugin_opt_admin_password " ADMIN_PW "\n");
}

static void teardown(void) { emu_teardown(&emu); }
/* Stops the broker and fails on any sanitizer report about the plugin. */
static void finish(void) { emu_finish(&emu); }

TestSuite(emulator_azure, .init = setup, .fini = teardown, .timeout = 120);

/* ------------------------------------------------------------ helpers */

static void sas(char *tok, size_t cap, const char *host, const char *id, const char *key,
                uint64_t se)
{
    size_t len = 0;
    cr_assert_eq(ciot_azure_sas_token(tok, cap, &len, host, id, NULL, NULL, key, se), 0);
}

static uint64_t in(int seconds)
{
    return (uint64_t)time(NULL) + (uint64_t)seconds;
}

/* An MQTT client with the hub's user name for id and password token. */
static tclient *azure(const char *client_id, const char *user_id, const char *token)
{
    char user[400];
    snprintf(user, sizeof user, HUB "/%s" API, user_id);
    tclient *c = tc_new(client_id, user, token, NULL, NULL, NULL);
    cr_assert_not_null(c);
    return c;
}

/* A connected device d with a fresh token signed with its primary key. */
static tclient *device(const char *id)
{
    char key[128], tok[1024];
    device_key(id, true, key);
    sas(tok, sizeof tok, HUB, id, key, in(3600));
    tclient *c = azure(id, id, tok);
    cr_assert_eq(tc_connect(c, emu.broker.port), 0, "%s could not connect", id);
    return c;
}

static int connack_of(const char *client_id, const char *user_id, const char *token)
{
    tclient *c = azure(client_id, user_id, token);
    int rc = tc_connect(c, emu.broker.port);
    tc_free(c);
    return rc;
}

static tclient *admin(void)
{
    tclient *c = tc_new("operator", "cloudiot-admin", ADMIN_PW, NULL, NULL, NULL);
    cr_assert_not_null(c);
    cr_assert_eq(tc_connect(c, emu.broker.port), 0);
    cr_assert_eq(tc_sub(c, CTL "/response", 1), 1);
    return c;
}

/* The first message whose topic starts with prefix (waits up to ms). */
static tc_msg *wait_prefix(tclient *c, const char *prefix, int ms)
{
    uint64_t end = tc_now_ms() + (uint64_t)ms;
    for (;;) {
        pthread_mutex_lock(&c->lock);
        tc_msg *prev = NULL;
        for (tc_msg *m = c->head; m; prev = m, m = m->next) {
            if (strncmp(m->topic, prefix, strlen(prefix)) == 0) {
                if (prev)
                    prev->next = m->next;
                else
                    c->head = m->next;
                if (c->tail == m)
                    c->tail = prev;
                c->nmsgs--;
                m->next = NULL;
                pthread_mutex_unlock(&c->lock);
                return m;
            }
        }
        pthread_mutex_unlock(&c->lock);
        if (tc_now_ms() >= end)
            return NULL;
        tc_sleep_ms(2);
    }
}

static void send_ctl(tclient *a, const char *req)
{
    cr_assert_eq(tc_pub(a, CTL, req, 1), 0);
}

static json_t *ctl_response(tclient *a, int ms)
{
    tc_msg *m = tc_wait(a, CTL "/response", ms);
    cr_assert_not_null(m, "no control response");
    json_error_t err;
    json_t *j = json_loads(m->payload, 0, &err);
    cr_assert_not_null(j, "not JSON: %s", m->payload);
    tc_msg_free(m);
    return j;
}

static json_t *ctl(tclient *a, const char *req)
{
    send_ctl(a, req);
    return ctl_response(a, WAIT_MS);
}

static int status_of(json_t *r)
{
    return (int)json_integer_value(json_object_get(r, "status"));
}

static int error_code_of(json_t *r)
{
    return (int)json_integer_value(json_object_get(r, "errorCode"));
}

/* ------------------------------------------------------------ authentication */

Test(emulator_azure, a_valid_sas_token_connects_and_telemetry_flows)
{
    tclient *a = admin();
    cr_assert_eq(tc_sub(a, "devices/+/messages/events/#", 1), 1);
    tclient *d = device("d1");
    const char *topic = "devices/d1/messages/events/$.ct=application%2Fjson&alert=high%20temp";
    cr_assert_eq(tc_pub(d, topic, "{\"temperature\":37.5}", 1), 0);
    tc_msg *m = tc_wait(a, topic, WAIT_MS);
    cr_assert_not_null(m, "the telemetry did not reach the service side");
    cr_assert_str_eq(m->payload, "{\"temperature\":37.5}");
    tc_msg_free(m);
    /* the secondary key signs as well; special characters in the id */
    char key[128], tok[1024];
    device_key("odd(1)!$x", false, key);
    sas(tok, sizeof tok, HUB, "odd(1)!$x", key, in(600));
    cr_assert_eq(connack_of("odd(1)!$x", "odd(1)!$x", tok), 0);
    cr_assert_geq(test_broker_log_count(&emu.broker, "Azure device d1 authenticated"), 1);
    tc_free(d);
    tc_free(a);
    finish();
}

/* sr percent-encoded with lower-case hex, signed as sent (protocols.md §4.2). */
Test(emulator_azure, a_lower_case_hex_resource_is_accepted)
{
    char key[128];
    device_key("d1", true, key);
    unsigned char k[64];
    size_t klen = 0;
    cr_assert_eq(ciot__b64_decode(k, sizeof k, &klen, key, strlen(key)), 0);
    char se[32], sts[256], sr[128];
    snprintf(se, sizeof se, "%llu", (unsigned long long)in(600));
    snprintf(sr, sizeof sr, "test-hub.azure-devices.net%%2fdevices%%2fd1");
    int n = snprintf(sts, sizeof sts, "%s\n%s", sr, se);
    unsigned char mac[32];
    unsigned int mlen = 0;
    cr_assert_not_null(HMAC(EVP_sha256(), k, (int)klen, (unsigned char *)sts, (size_t)n, mac,
                            &mlen));
    char b64[64], sig[128];
    ciot__b64_encode(b64, mac, 32);
    size_t slen = ciot__azure_url_encode(sig, b64, 44);
    sig[slen] = '\0';
    char tok[512];
    snprintf(tok, sizeof tok, "SharedAccessSignature sr=%s&sig=%s&se=%s", sr, sig, se);
    cr_assert_eq(connack_of("d1", "d1", tok), 0);
    finish();
}

Test(emulator_azure, bad_tokens_and_identities_are_refused_with_a_logged_reason)
{
    char key1[128], key2[128], tok[1024];
    device_key("d1", true, key1);
    device_key("d2", true, key2);
    /* expired */
    sas(tok, sizeof tok, HUB, "d1", key1, in(-10));
    cr_assert_eq(connack_of("d1", "d1", tok), 5);
    cr_assert_geq(test_broker_log_count(&emu.broker, "d1: token expired"), 1);
    /* forged: signed with another device's key */
    sas(tok, sizeof tok, HUB, "d1", key2, in(600));
    cr_assert_eq(connack_of("d1", "d1", tok), 5);
    cr_assert_geq(test_broker_log_count(&emu.broker, "d1: bad signature"), 1);
    /* wrong resource: d2's valid token presented by d1 */
    sas(tok, sizeof tok, HUB, "d2", key2, in(600));
    cr_assert_eq(connack_of("d1", "d1", tok), 5);
    cr_assert_geq(test_broker_log_count(&emu.broker, "d1: wrong resource"), 1);
    /* wrong resource: another hub's host in sr */
    sas(tok, sizeof tok, "other.azure-devices.net", "d1", key1, in(600));
    cr_assert_eq(connack_of("d1", "d1", tok), 5);
    /* unknown device */
    sas(tok, sizeof tok, HUB, "ghost", key1, in(600));
    cr_assert_eq(connack_of("ghost", "ghost", tok), 5);
    cr_assert_geq(test_broker_log_count(&emu.broker, "ghost: unknown device"), 1);
    /* disabled device (the token is otherwise good) */
    char key3[128];
    device_key("d3-off", true, key3);
    sas(tok, sizeof tok, HUB, "d3-off", key3, in(600));
    cr_assert_eq(connack_of("d3-off", "d3-off", tok), 5);
    cr_assert_geq(test_broker_log_count(&emu.broker, "d3-off: device disabled"), 1);
    /* client id other than the device id */
    sas(tok, sizeof tok, HUB, "d1", key1, in(600));
    cr_assert_eq(connack_of("not-d1", "d1", tok), 5);
    cr_assert_geq(test_broker_log_count(&emu.broker, "client id is not the device id"), 1);
    /* not a SAS token; a policy token (skn) */
    cr_assert_eq(connack_of("d1", "d1", "hunter2"), 5);
    char ptok[1100];
    snprintf(ptok, sizeof ptok, "%s&skn=device", tok);
    cr_assert_eq(connack_of("d1", "d1", ptok), 5);
    cr_assert_geq(test_broker_log_count(&emu.broker, "(skn) are not emulated"), 1);
    /* the user name's host is not this hub */
    tclient *c = tc_new("d1", "other.azure-devices.net/d1" API, tok, NULL, NULL, NULL);
    cr_assert_eq(tc_connect(c, emu.broker.port), 5);
    tc_free(c);
    /* the good token still works after all that */
    cr_assert_eq(connack_of("d1", "d1", tok), 0);
    finish();
}

Test(emulator_azure, a_connection_is_closed_when_its_token_expires)
{
    char key[128], tok[1024];
    device_key("d1", true, key);
    uint64_t se = in(3);
    sas(tok, sizeof tok, HUB, "d1", key, se);
    tclient *d = azure("d1", "d1", tok);
    cr_assert_eq(tc_connect(d, emu.broker.port), 0);
    cr_assert(tc_wait_disconnected(d, 8000), "not disconnected at expiry");
    /* at se, not before (a tick is about 100 ms; slack for slow builds) */
    uint64_t now = (uint64_t)time(NULL);
    cr_assert_geq(now, se, "disconnected before the expiry");
    cr_assert_leq(now, se + 2, "disconnected %llu s after the expiry",
                  (unsigned long long)(now - se));
    cr_assert_geq(test_broker_log_count(&emu.broker, "Azure SAS token expired"), 1);
    tc_free(d);
    finish();
}

Test(emulator_azure, an_x509_ca_device_is_its_certificate_cn)
{
    char ca[300], cert[300], ckey[300];
    snprintf(ca, sizeof ca, "%s", test_broker_pki(&emu.broker, "ca.crt"));
    snprintf(cert, sizeof cert, "%s/device1.crt", emu.broker.pki);
    snprintf(ckey, sizeof ckey, "%s/device1.key", emu.broker.pki);
    tclient *c = tc_new("device1", HUB "/device1" API, NULL, ca, cert, ckey);
    cr_assert_eq(tc_connect(c, emu.broker.tls_port), 0);
    cr_assert_eq(tc_sub(c, "$iothub/methods/POST/#", 0), 0);
    tc_free(c);
    /* the same certificate for another (SAS) device: refused */
    tclient *x = tc_new("d1", HUB "/d1" API, "SharedAccessSignature sr=x&sig=y&se=1", ca, cert,
                        ckey);
    cr_assert_eq(tc_connect(x, emu.broker.tls_port), 5);
    tc_free(x);
    /* an x509 device without a certificate: refused */
    cr_assert_eq(connack_of("device1", "device1", ""), 5);
    finish();
}

/* ------------------------------------------------------------ topics */

Test(emulator_azure, a_device_cannot_use_another_devices_topics)
{
    tclient *d1 = device("d1");
    cr_assert_eq(tc_sub(d1, "$iothub/methods/POST/#", 0), 0);
    cr_assert_eq(tc_sub(d1, "devices/d1/messages/devicebound/#", 1), 1);
    cr_assert_eq(tc_sub(d1, "devices/d2/messages/devicebound/#", 1), 0x80);
    cr_assert(tc_wait_disconnected(d1, WAIT_MS), "the hub closes the connection");
    tc_free(d1);
    tclient *d2 = device("d2");
    cr_assert_eq(tc_sub(d2, "#", 0), 0x80);
    tc_free(d2);
    tclient *d = device("d1");
    cr_assert_eq(tc_pub(d, "devices/d2/messages/events/", "x", 1), 0);
    cr_assert(tc_wait_disconnected(d, WAIT_MS), "publishing as d2 closes the connection");
    tc_free(d);
    /* QoS 2 on its own telemetry topic: the hub closes the connection */
    tclient *q = device("d1");
    mosquitto_publish(q->m, NULL, "devices/d1/messages/events/", 1, "x", 2, false);
    cr_assert(tc_wait_disconnected(q, WAIT_MS), "a QoS 2 publish closes the connection");
    tc_free(q);
    cr_assert_geq(test_broker_log_count(&emu.broker, "Azure device published with QoS 2"), 1);
    cr_assert_geq(test_broker_log_count(&emu.broker, "Azure device may not subscribe to devices/d2"),
                  1);
    cr_assert_geq(test_broker_log_count(&emu.broker, "Azure device may not publish to devices/d2"),
                  1);
    finish();
}

/* ------------------------------------------------------------ direct methods */

/* Answers the first method request on d with status and body; the $rid. */
static void answer_method(tclient *d, const char *name, const char *want_body, int status,
                          const char *body)
{
    char prefix[128];
    snprintf(prefix, sizeof prefix, "$iothub/methods/POST/%s/?$rid=", name);
    tc_msg *m = wait_prefix(d, prefix, WAIT_MS);
    cr_assert_not_null(m, "no method request %s", name);
    cr_assert_str_eq(m->payload, want_body);
    char res[128];
    snprintf(res, sizeof res, "$iothub/methods/res/%d/?$rid=%s", status,
             m->topic + strlen(prefix));
    cr_assert_eq(tc_pub(d, res, body, 0), 0);
    tc_msg_free(m);
}

Test(emulator_azure, a_direct_method_reaches_its_device_only_and_returns_its_answer)
{
    tclient *a = admin();
    tclient *d1 = device("d1"), *d2 = device("d2");
    cr_assert_eq(tc_sub(d1, "$iothub/methods/POST/#", 0), 0);
    cr_assert_eq(tc_sub(d2, "$iothub/methods/POST/#", 0), 0);
    send_ctl(a, "{\"op\":\"invoke-device-method\",\"deviceId\":\"d1\",\"methodName\":\"reboot\","
                "\"payload\":{\"delay\":5},\"requestId\":\"m1\"}");
    answer_method(d1, "reboot", "{\"delay\":5}", 200, "{\"result\":\"scheduled\"}");
    json_t *r = ctl_response(a, WAIT_MS);
    cr_assert_eq(status_of(r), 200);
    cr_assert_str_eq(json_string_value(json_object_get(r, "requestId")), "m1");
    json_t *res = json_object_get(r, "result");
    cr_assert_eq(json_integer_value(json_object_get(res, "status")), 200);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(res, "payload"), "result")),
                     "scheduled");
    json_decref(r);
    /* a device status is echoed as is; an empty body is null */
    send_ctl(a, "{\"op\":\"invoke-device-method\",\"deviceId\":\"d2\",\"methodName\":\"nope\","
                "\"requestId\":\"m2\"}");
    answer_method(d2, "nope", "null", 404, "");
    r = ctl_response(a, WAIT_MS);
    cr_assert_eq(status_of(r), 200);
    res = json_object_get(r, "result");
    cr_assert_eq(json_integer_value(json_object_get(res, "status")), 404);
    cr_assert(json_is_null(json_object_get(res, "payload")));
    json_decref(r);
    tc_sleep_ms(200);
    cr_assert_eq(tc_count(d2, "$iothub/methods/POST/reboot"), 0, "d2 saw d1's method call");
    cr_assert_eq(tc_count(d1, "$iothub/methods/POST/nope"), 0, "d1 saw d2's method call");
    /* $iothub messages are never routed to devices: a publish by another client
     * (here the admin, whom no rule stops) reaches neither, although both
     * subscribed to $iothub/methods/POST/# */
    cr_assert_eq(tc_pub(a, "$iothub/methods/POST/spoof/?$rid=7", "{}", 1), 0);
    cr_assert_eq(tc_pub(a, "$iothub/twin/res/200/?$rid=7", "{}", 1), 0);
    tc_sleep_ms(300);
    cr_assert_eq(tc_count(d1, "$iothub/"), 0, "a routed $iothub message reached d1");
    cr_assert_eq(tc_count(d2, "$iothub/"), 0, "a routed $iothub message reached d2");
    /* a response with a $rid of no call of this device changes nothing */
    cr_assert_eq(tc_pub(d2, "$iothub/methods/res/200/?$rid=999", "{}", 0), 0);
    tc_free(d1);
    tc_free(d2);
    tc_free(a);
    finish();
}

Test(emulator_azure, a_direct_method_to_an_offline_device_is_404_and_a_silent_one_504)
{
    tclient *a = admin();
    json_t *r = ctl(a, "{\"op\":\"invoke-device-method\",\"deviceId\":\"d2\","
                       "\"methodName\":\"m\",\"requestId\":\"o1\"}");
    cr_assert_eq(status_of(r), 404);
    cr_assert_eq(error_code_of(r), 404103);
    json_decref(r);
    r = ctl(a, "{\"op\":\"invoke-device-method\",\"deviceId\":\"ghost\",\"methodName\":\"m\"}");
    cr_assert_eq(status_of(r), 404);
    cr_assert_eq(error_code_of(r), 404001);
    json_decref(r);
    r = ctl(a, "{\"op\":\"invoke-device-method\",\"deviceId\":\"d2\",\"methodName\":\"m\","
               "\"responseTimeoutInSeconds\":4}");
    cr_assert_eq(status_of(r), 400);
    json_decref(r);
    r = ctl(a, "{\"op\":\"invoke-device-method\",\"deviceId\":\"d2\",\"methodName\":\"a/b\"}");
    cr_assert_eq(status_of(r), 400);
    json_decref(r);
    /* connected but not subscribed to methods: not online for methods */
    tclient *d = device("d2");
    r = ctl(a, "{\"op\":\"invoke-device-method\",\"deviceId\":\"d2\",\"methodName\":\"m\"}");
    cr_assert_eq(status_of(r), 404);
    json_decref(r);
    /* subscribed, never answers: 504 after responseTimeoutInSeconds */
    cr_assert_eq(tc_sub(d, "$iothub/methods/POST/#", 0), 0);
    uint64_t t0 = tc_now_ms();
    send_ctl(a, "{\"op\":\"invoke-device-method\",\"deviceId\":\"d2\",\"methodName\":\"slow\","
                "\"responseTimeoutInSeconds\":5,\"requestId\":\"t1\"}");
    r = ctl_response(a, 9000);
    uint64_t dt = tc_now_ms() - t0;
    cr_assert_eq(status_of(r), 504);
    cr_assert_eq(error_code_of(r), 504101);
    cr_assert_geq(dt, 4900);
    cr_assert_leq(dt, 7000);
    json_decref(r);
    tc_msg *m = wait_prefix(d, "$iothub/methods/POST/slow/?$rid=", 100);
    cr_assert_not_null(m, "the device got the call it did not answer");
    tc_msg_free(m);
    tc_free(d);
    tc_free(a);
    finish();
}

/* connectTimeoutInSeconds: the call waits for the device to come online. */
Test(emulator_azure, a_direct_method_waits_connect_timeout_for_the_device)
{
    tclient *a = admin();
    send_ctl(a, "{\"op\":\"invoke-device-method\",\"deviceId\":\"d1\",\"methodName\":\"late\","
                "\"connectTimeoutInSeconds\":10,\"payload\":1}");
    tc_sleep_ms(500);
    tclient *d = device("d1");
    cr_assert_eq(tc_sub(d, "$iothub/methods/POST/#", 0), 0);
    answer_method(d, "late", "1", 201, "\"ok\"");
    json_t *r = ctl_response(a, WAIT_MS);
    cr_assert_eq(status_of(r), 200);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "result"), "payload")),
                     "ok");
    json_decref(r);
    tc_free(d);
    tc_free(a);
    finish();
}

/* ------------------------------------------------------------ C2D */

Test(emulator_azure, a_c2d_message_with_properties_reaches_only_its_device)
{
    tclient *a = admin();
    tclient *d1 = device("d1"), *d2 = device("d2");
    cr_assert_eq(tc_sub(d1, "devices/d1/messages/devicebound/#", 1), 1);
    cr_assert_eq(tc_sub(d2, "devices/d2/messages/devicebound/#", 1), 1);
    json_t *r = ctl(a, "{\"op\":\"send-c2d-message\",\"deviceId\":\"d1\",\"payload\":\"hello\","
                       "\"properties\":{\"color\":\"red\",\"note\":\"a b&c\"},"
                       "\"messageId\":\"mid-1\",\"correlationId\":\"c-9\",\"requestId\":\"c1\"}");
    cr_assert_eq(status_of(r), 200, "%s", json_string_value(json_object_get(r, "error")));
    cr_assert(json_is_true(json_object_get(json_object_get(r, "result"), "deviceConnected")));
    json_decref(r);
    tc_msg *m = wait_prefix(d1, "devices/d1/messages/devicebound/", WAIT_MS);
    cr_assert_not_null(m, "d1 got no C2D message");
    cr_assert_str_eq(m->payload, "hello");
    cr_assert_eq(m->qos, 1);
    bool matched = false;
    ciot_view dev, mod, bag;
    cr_assert_eq(ciot__azure_c2d_split(&matched, &dev, &mod, &bag, m->topic, strlen(m->topic)), 0);
    cr_assert(matched);
    char buf[1024];
    size_t blen = 0, n = 0;
    ciot__azure_prop props[16];
    cr_assert_eq(ciot__azure_bag_decode(buf, sizeof buf, &blen, props, 16, &n, bag.ptr, bag.len), 0);
    json_t *got = json_object();
    for (size_t i = 0; i < n; i++) {
        char k[128];
        snprintf(k, sizeof k, "%.*s", (int)props[i].name.len, (const char *)props[i].name.ptr);
        json_object_set_new(got, k, json_stringn(props[i].value.ptr, props[i].value.len));
    }
    cr_assert_str_eq(json_string_value(json_object_get(got, "$.to")),
                     "/devices/d1/messages/deviceBound");
    cr_assert_str_eq(json_string_value(json_object_get(got, "$.mid")), "mid-1");
    cr_assert_str_eq(json_string_value(json_object_get(got, "$.cid")), "c-9");
    cr_assert_str_eq(json_string_value(json_object_get(got, "color")), "red");
    cr_assert_str_eq(json_string_value(json_object_get(got, "note")), "a b&c");
    cr_assert_eq(n, 5);
    json_decref(got);
    tc_msg_free(m);
    tc_sleep_ms(200);
    cr_assert_eq(tc_count(d2, ""), 0, "d2 received d1's C2D message");
    /* bad requests */
    r = ctl(a, "{\"op\":\"send-c2d-message\",\"deviceId\":\"ghost\",\"payload\":\"x\"}");
    cr_assert_eq(status_of(r), 404);
    json_decref(r);
    r = ctl(a, "{\"op\":\"send-c2d-message\",\"deviceId\":\"d1\",\"properties\":{\"n\":1}}");
    cr_assert_eq(status_of(r), 400);
    json_decref(r);
    r = ctl(a, "{\"op\":\"send-c2d-message\",\"deviceId\":\"d1\",\"properties\":{\"$.x\":\"1\"}}");
    cr_assert_eq(status_of(r), 400);
    json_decref(r);
    r = ctl(a, "{\"op\":\"no-such-op\"}");
    cr_assert_eq(status_of(r), 400);
    json_decref(r);
    tc_free(d1);
    tc_free(d2);
    tc_free(a);
    finish();
}

/* A device with a persistent session (clean session 0) subscribed before
 * gets a C2D message sent while it was offline, as the hub queues them. */
Test(emulator_azure, a_c2d_message_waits_in_a_persistent_session)
{
    char key[128], tok[1024];
    device_key("d2", true, key);
    sas(tok, sizeof tok, HUB, "d2", key, in(3600));
    tclient *d = azure("d2", "d2", tok);
    mosquitto_reinitialise(d->m, "d2", false, d);
    mosquitto_connect_callback_set(d->m, tc_on_connect);
    mosquitto_subscribe_callback_set(d->m, tc_on_subscribe);
    mosquitto_disconnect_callback_set(d->m, tc_on_disconnect);
    mosquitto_publish_callback_set(d->m, tc_on_publish);
    mosquitto_message_callback_set(d->m, tc_on_message);
    mosquitto_username_pw_set(d->m, HUB "/d2" API, tok);
    cr_assert_eq(tc_connect(d, emu.broker.port), 0);
    cr_assert_eq(tc_sub(d, "devices/d2/messages/devicebound/#", 1), 1);
    mosquitto_disconnect(d->m);
    mosquitto_loop_stop(d->m, false);
    tc_sleep_ms(200);
    tclient *a = admin();
    json_t *r = ctl(a, "{\"op\":\"send-c2d-message\",\"deviceId\":\"d2\",\"payload\":\"later\"}");
    cr_assert_eq(status_of(r), 200);
    cr_assert(json_is_false(json_object_get(json_object_get(r, "result"), "deviceConnected")));
    json_decref(r);
    d->connack = -1;
    d->disconnected = false;
    cr_assert_eq(tc_connect(d, emu.broker.port), 0);
    tc_msg *m = wait_prefix(d, "devices/d2/messages/devicebound/", WAIT_MS);
    cr_assert_not_null(m, "the queued C2D message was not delivered");
    cr_assert_str_eq(m->payload, "later");
    tc_msg_free(m);
    tc_free(d);
    tc_free(a);
    finish();
}

/* ------------------------------------------------------------ launcher */

Test(emulator_azure, the_launcher_connection_string_is_usable)
{
    char out[2048];
    cr_assert_eq(emu_launcher(&emu, out, sizeof out, "device-connection-string --device-id d1"), 0);
    json_error_t err;
    json_t *j = json_loads(out, 0, &err);
    cr_assert_not_null(j, "%s", out);
    const char *cs = json_string_value(json_object_get(j, "connectionString"));
    cr_assert_not_null(cs);
    ciot__azure_conn *c = NULL;
    cr_assert_eq(ciot__azure_conn_parse(&c, cs, strlen(cs), NULL, 0), 0, "%s", cs);
    cr_assert_str_eq(c->host, HUB);
    cr_assert_str_eq(c->device_id, "d1");
    cr_assert_eq(c->key_len, 32);
    char tok[1024];
    size_t len = 0;
    cr_assert_eq(ciot__azure_sas_sign(tok, sizeof tok, &len, c->host, strlen(c->host), "d1", 2,
                                      NULL, 0, NULL, 0, c->key, c->key_len, in(600)),
                 0);
    ciot__azure_conn_free(c);
    json_decref(j);
    cr_assert_eq(connack_of("d1", "d1", tok), 0);
    /* generate-sas-token signs a usable token too */
    cr_assert_eq(emu_launcher(&emu, out, sizeof out, "generate-sas-token --device-id d2 --duration 60"), 0);
    j = json_loads(out, 0, &err);
    cr_assert_not_null(j, "%s", out);
    cr_assert_eq(connack_of("d2", "d2", json_string_value(json_object_get(j, "sas"))), 0);
    json_decref(j);
    /* disabling applies to the next connection; delete removes the device */
    cr_assert_eq(emu_launcher(&emu, NULL, 0, "update-device --device-id d1 --status disabled"), 0);
    cr_assert_eq(connack_of("d1", "d1", tok), 5);
    cr_assert_eq(emu_launcher(&emu, NULL, 0, "update-device --device-id d1 --status enabled"), 0);
    cr_assert_eq(connack_of("d1", "d1", tok), 0);
    cr_assert_eq(emu_launcher(&emu, NULL, 0, "delete-device --device-id d1"), 0);
    cr_assert_eq(connack_of("d1", "d1", tok), 5);
    finish();
}

Test(emulator_azure, the_launcher_device_commands_answer_like_az)
{
    char out[8192];
    cr_assert_eq(emu_launcher(&emu, out, sizeof out, "list-devices"), 0);
    json_error_t err;
    json_t *j = json_loads(out, 0, &err);
    cr_assert(json_is_array(j), "%s", out);
    cr_assert_eq(json_array_size(j), 5);
    const char *want[] = {"d1", "d2", "d3-off", "device1", "odd(1)!$x"};
    for (size_t i = 0; i < 5; i++)
        cr_assert_str_eq(json_string_value(json_object_get(json_array_get(j, i), "deviceId")),
                         want[i]);
    json_t *x = json_object_get(json_array_get(j, 3), "authentication");
    cr_assert_str_eq(json_string_value(json_object_get(x, "type")), "certificateAuthority");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 2), "status")),
                     "disabled");
    json_decref(j);
    /* errors: exists 254, not found 254, bad id and bad option 252 */
    cr_assert_eq(emu_launcher(&emu, NULL, 0, "create-device --device-id d1 2>/dev/null"), 254);
    cr_assert_eq(emu_launcher(&emu, NULL, 0, "show-device --device-id nope 2>/dev/null"), 254);
    cr_assert_eq(emu_launcher(&emu, NULL, 0, "delete-device --device-id nope 2>/dev/null"), 254);
    cr_assert_eq(emu_launcher(&emu, NULL, 0, "create-device --device-id 'a/b' 2>/dev/null"), 252);
    cr_assert_eq(emu_launcher(&emu, NULL, 0, "create-device --device-id 'a#b' 2>/dev/null"), 252);
    cr_assert_eq(emu_launcher(&emu, NULL, 0, "create-device --device-id x --auth-method pw 2>/dev/null"),
                 252);
    cr_assert_eq(emu_launcher(&emu, NULL, 0, "create-device --device-id x --hub-name other 2>/dev/null"),
                 252);
    /* given keys are kept */
    cr_assert_eq(emu_launcher(&emu, out, sizeof out,
                          "create-device --device-id k1 --primary-key "
                          "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
                 0);
    char key[128];
    device_key("k1", true, key);
    cr_assert_str_eq(key, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
    finish();
}
