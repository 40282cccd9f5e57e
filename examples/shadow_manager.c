/*
 * shadow-manager: the fleet operator's side of the guide (what boto3's
 * `iot-data` and `iot` clients do there), against cloudiot-emulator: read,
 * change and delete device shadows, list things, and publish a command to a
 * device. It speaks the emulator's service-side control topics
 * ($CONTROL/cloudiot/v1/<service>, doc/emulator.md) as its admin identity,
 * through an ordinary ciot_client.
 *
 *   shadow-manager [connection] list-things
 *   shadow-manager [connection] get-thing-shadow THING [SHADOW]
 *   shadow-manager [connection] update-thing-shadow THING JSON [SHADOW]
 *   shadow-manager [connection] delete-thing-shadow THING [SHADOW]
 *   shadow-manager [connection] list-named-shadows-for-thing THING
 *   shadow-manager [connection] publish TOPIC JSON
 *
 * and the Azure IoT Hub service side (what `az iot hub` does), on
 * $CONTROL/cloudiot/v1/iothub:
 *
 *   shadow-manager [connection] invoke-device-method DEVICE METHOD JSON [TIMEOUT_S]
 *   shadow-manager [connection] send-c2d-message DEVICE PAYLOAD [NAME=VALUE ...]
 *   shadow-manager [connection] get-twin DEVICE
 *   shadow-manager [connection] update-twin DEVICE JSON      (a desired-properties patch)
 *   shadow-manager [connection] monitor-events DEVICE COUNT
 *
 * monitor-events (az iot hub monitor-events) subscribes to the device's
 * telemetry, prints "monitoring DEVICE" once subscribed, then one line
 * "TOPIC PAYLOAD" per message (the topic carries the property bag) and exits 0
 * after COUNT messages, 1 when --timeout-ms passes first.
 *
 * invoke-device-method prints {"status":<the device's status>,"payload":<its answer>}
 * and exits 0 whatever status the device gave (1 when the hub refused the call:
 * unknown or offline device, timeout).
 *
 * connection: --endpoint HOST (127.0.0.1) --port N (8883)
 *             --ca FILE --cert FILE --key FILE   (mutual TLS, admin certificate)
 *             or --username NAME --password PW    (plain listener)
 *             --timeout-ms N (10000)
 *
 * Prints the service's answer (the `result` document) on stdout; exits 0 when
 * the service accepted the request, 1 when it refused it (the error goes to
 * stderr), 2 on a usage or connection problem.
 */
#include <cloudiot/cloudiot.h>

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct reply {
    const char *request_id;
    bool subscribed, done, acked;
    int status;
    char *body; /* copy of the whole response */
    size_t body_len;
};

static int usage(void)
{
    fprintf(stderr,
            "usage: shadow-manager [--endpoint HOST] [--port N] [--ca F --cert F --key F |\n"
            "                       --username U --password P] [--timeout-ms N] COMMAND ARGS\n"
            "commands: list-things | get-thing-shadow THING [SHADOW] |\n"
            "          update-thing-shadow THING JSON [SHADOW] | delete-thing-shadow THING [SHADOW] |\n"
            "          list-named-shadows-for-thing THING | publish TOPIC JSON |\n"
            "          invoke-device-method DEVICE METHOD JSON [TIMEOUT_S] |\n"
            "          send-c2d-message DEVICE PAYLOAD [NAME=VALUE ...] |\n"
            "          get-twin DEVICE | update-twin DEVICE JSON | monitor-events DEVICE COUNT\n");
    return 2;
}

static int on_response(ciot_client *c, const ciot_event *m, void *ud)
{
    (void)c;
    struct reply *r = ud;
    size_t len;
    const char *p = ciot_event_payload(m, &len);
    ciot_json_value v;
    char id[128];
    size_t id_len = 0;
    if (ciot_json_find(p, len, "requestId", 9, &v) != 0 ||
        ciot_json_get_string(&v, id, sizeof id, &id_len) != 0 || strcmp(id, r->request_id) != 0)
        return 0; /* somebody else's answer */
    int64_t status = 0;
    if (ciot_json_find(p, len, "status", 6, &v) != 0 || ciot_json_get_int64(&v, &status) != 0)
        status = 0;
    free(r->body);
    r->body = malloc(len + 1);
    if (r->body) {
        memcpy(r->body, p, len);
        r->body[len] = '\0';
        r->body_len = len;
    }
    r->status = (int)status;
    r->done = true;
    return 0;
}

/* monitor-events: prints each telemetry message, counts them. */
struct monitor {
    long want, got;
    bool done;
};

static int on_telemetry(ciot_client *c, const ciot_event *m, void *ud)
{
    (void)c;
    struct monitor *mon = ud;
    size_t tl, pl;
    const char *t = ciot_event_topic(m, &tl);
    const char *p = ciot_event_payload(m, &pl);
    printf("%.*s %.*s\n", (int)tl, t, (int)pl, p);
    fflush(stdout);
    if (++mon->got >= mon->want)
        mon->done = true;
    return 0;
}

static int on_event(ciot_client *c, const ciot_event *ev, void *ud)
{
    (void)c;
    struct reply *r = ud;
    if (ciot_event_type_of(ev) == CIOT_EVENT_SUBSCRIBED)
        r->subscribed = true;
    else if (ciot_event_type_of(ev) == CIOT_EVENT_PUBLISH_ACKED)
        r->acked = true;
    else if (ciot_event_type_of(ev) == CIOT_EVENT_ERROR)
        fprintf(stderr, "shadow-manager: %s\n", ciot_event_text(ev));
    return 0;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Runs the client until *flag is set or the deadline passes. */
static bool run_until(ciot_client *c, const bool *flag, uint64_t deadline)
{
    while (!*flag) {
        uint64_t now = now_ms();
        if (now >= deadline)
            return false;
        if (ciot_client_run(c, (int)(deadline - now < 50 ? deadline - now : 50)) != 0)
            return false;
    }
    return true;
}

/* Writes the request {"op":..,"requestId":..,"thingName"?,"shadowName"?,"payload"?}. */
static int build_request(char *buf, size_t cap, size_t *len, const char *op, const char *id,
                         const char *thing, const char *shadow, const char *payload)
{
    ciot_json_writer w;
    int rc = ciot_json_writer_init(&w, buf, cap);
    rc = rc ? rc : ciot_json_begin_object(&w);
    rc = rc ? rc : ciot_json_key(&w, "op", 2);
    rc = rc ? rc : ciot_json_string(&w, op, strlen(op));
    rc = rc ? rc : ciot_json_key(&w, "requestId", 9);
    rc = rc ? rc : ciot_json_string(&w, id, strlen(id));
    if (thing) {
        rc = rc ? rc : ciot_json_key(&w, "thingName", 9);
        rc = rc ? rc : ciot_json_string(&w, thing, strlen(thing));
    }
    if (shadow) {
        rc = rc ? rc : ciot_json_key(&w, "shadowName", 10);
        rc = rc ? rc : ciot_json_string(&w, shadow, strlen(shadow));
    }
    if (payload) {
        rc = rc ? rc : ciot_json_key(&w, "payload", 7);
        rc = rc ? rc : ciot_json_raw(&w, payload, strlen(payload)); /* checked: must be JSON */
    }
    rc = rc ? rc : ciot_json_end_object(&w);
    rc = rc ? rc : ciot_json_writer_finish(&w, len);
    return rc;
}

/* The iothub service's request: {"op","requestId","deviceId", then per op
 * "methodName","payload","responseTimeoutInSeconds" | "payload" (a string),
 * "properties" | "patch"}. props/nprops are NAME=VALUE arguments. */
static int build_iothub_request(char *buf, size_t cap, size_t *len, const char *op,
                                const char *id, const char *device, const char *method,
                                const char *json, long timeout_s, char **props, int nprops)
{
    ciot_json_writer w;
    bool c2d = strcmp(op, "send-c2d-message") == 0;
    int rc = ciot_json_writer_init(&w, buf, cap);
    rc = rc ? rc : ciot_json_begin_object(&w);
    rc = rc ? rc : ciot_json_key(&w, "op", 2);
    rc = rc ? rc : ciot_json_string(&w, op, strlen(op));
    rc = rc ? rc : ciot_json_key(&w, "requestId", 9);
    rc = rc ? rc : ciot_json_string(&w, id, strlen(id));
    rc = rc ? rc : ciot_json_key(&w, "deviceId", 8);
    rc = rc ? rc : ciot_json_string(&w, device, strlen(device));
    if (method) {
        rc = rc ? rc : ciot_json_key(&w, "methodName", 10);
        rc = rc ? rc : ciot_json_string(&w, method, strlen(method));
    }
    if (timeout_s > 0) {
        rc = rc ? rc : ciot_json_key(&w, "responseTimeoutInSeconds", 24);
        rc = rc ? rc : ciot_json_int(&w, timeout_s);
    }
    if (json && c2d) {
        /* a C2D body is any bytes: sent as a string, delivered unchanged */
        rc = rc ? rc : ciot_json_key(&w, "payload", 7);
        rc = rc ? rc : ciot_json_string(&w, json, strlen(json));
    } else if (json) {
        bool twin = strcmp(op, "update-twin") == 0;
        rc = rc ? rc : ciot_json_key(&w, twin ? "patch" : "payload", twin ? 5 : 7);
        rc = rc ? rc : ciot_json_raw(&w, json, strlen(json)); /* checked: must be JSON */
    }
    if (nprops > 0) {
        rc = rc ? rc : ciot_json_key(&w, "properties", 10);
        rc = rc ? rc : ciot_json_begin_object(&w);
        for (int i = 0; i < nprops && rc == 0; i++) {
            const char *eq = strchr(props[i], '=');
            if (!eq || eq == props[i])
                return CIOT_EINVAL;
            rc = ciot_json_key(&w, props[i], (size_t)(eq - props[i]));
            rc = rc ? rc : ciot_json_string(&w, eq + 1, strlen(eq + 1));
        }
        rc = rc ? rc : ciot_json_end_object(&w);
    }
    rc = rc ? rc : ciot_json_end_object(&w);
    rc = rc ? rc : ciot_json_writer_finish(&w, len);
    return rc;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *ca = NULL, *cert = NULL, *key = NULL, *user = NULL,
               *pass = NULL;
    long port = 8883, timeout_ms = 10000;
    static const struct option longopts[] = {
        {"endpoint", required_argument, NULL, 'e'}, {"port", required_argument, NULL, 'p'},
        {"ca", required_argument, NULL, 'a'},       {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'k'},      {"username", required_argument, NULL, 'u'},
        {"password", required_argument, NULL, 'w'}, {"timeout-ms", required_argument, NULL, 't'},
        {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        char *end;
        switch (o) {
        case 'e': host = optarg; break;
        case 'a': ca = optarg; break;
        case 'c': cert = optarg; break;
        case 'k': key = optarg; break;
        case 'u': user = optarg; break;
        case 'w': pass = optarg; break;
        case 'p':
            port = strtol(optarg, &end, 10);
            if (*end || port < 1 || port > 65535)
                return usage();
            break;
        case 't':
            timeout_ms = strtol(optarg, &end, 10);
            if (*end || timeout_ms < 1 || timeout_ms > 600000)
                return usage();
            break;
        default: return usage();
        }
    }
    if (optind >= argc)
        return usage();
    const char *cmd = argv[optind];
    char **arg = argv + optind + 1;
    int nargs = argc - optind - 1;
    const char *service = "iot-data", *thing = NULL, *shadow = NULL, *payload = NULL,
               *topic = NULL, *device = NULL, *method = NULL;
    long method_timeout = 0;
    struct monitor mon = {0};
    char **props = NULL;
    int nprops = 0;
    if (strcmp(cmd, "list-things") == 0 && nargs == 0) {
        service = "iot";
    } else if ((strcmp(cmd, "get-thing-shadow") == 0 || strcmp(cmd, "delete-thing-shadow") == 0) &&
               (nargs == 1 || nargs == 2)) {
        thing = arg[0];
        shadow = nargs == 2 ? arg[1] : NULL;
    } else if (strcmp(cmd, "update-thing-shadow") == 0 && (nargs == 2 || nargs == 3)) {
        thing = arg[0];
        payload = arg[1];
        shadow = nargs == 3 ? arg[2] : NULL;
    } else if (strcmp(cmd, "list-named-shadows-for-thing") == 0 && nargs == 1) {
        thing = arg[0];
    } else if (strcmp(cmd, "publish") == 0 && nargs == 2) {
        topic = arg[0];
        payload = arg[1];
    } else if (strcmp(cmd, "invoke-device-method") == 0 && (nargs == 3 || nargs == 4)) {
        service = "iothub";
        device = arg[0];
        method = arg[1];
        payload = arg[2];
        if (nargs == 4) {
            char *end;
            method_timeout = strtol(arg[3], &end, 10);
            if (!*arg[3] || *end || method_timeout < 5 || method_timeout > 300)
                return usage();
            /* the hub may take that long: wait for its answer a little longer */
            if (timeout_ms < method_timeout * 1000 + 5000)
                timeout_ms = method_timeout * 1000 + 5000;
        }
    } else if (strcmp(cmd, "send-c2d-message") == 0 && nargs >= 2) {
        service = "iothub";
        device = arg[0];
        payload = arg[1];
        props = arg + 2;
        nprops = nargs - 2;
    } else if (strcmp(cmd, "monitor-events") == 0 && nargs == 2) {
        char *end;
        device = arg[0];
        mon.want = strtol(arg[1], &end, 10);
        if (!*arg[1] || *end || mon.want < 1 || mon.want > 1000000)
            return usage();
    } else if ((strcmp(cmd, "get-twin") == 0 && nargs == 1) ||
               (strcmp(cmd, "update-twin") == 0 && nargs == 2)) {
        service = "iothub";
        device = arg[0];
        payload = nargs == 2 ? arg[1] : NULL;
    } else {
        return usage();
    }

    char id[64];
    snprintf(id, sizeof id, "shadow-manager-%ld-%llu", (long)getpid(), (unsigned long long)now_ms());
    ciot_config *cfg;
    ciot_client *c = NULL;
    if (ciot_config_new(&cfg) != 0)
        return 2;
    int rc = ciot_config_set_str(cfg, CIOT_OPT_HOST, host);
    rc = rc ? rc : ciot_config_set_int(cfg, CIOT_OPT_PORT, port);
    rc = rc ? rc : ciot_config_set_str(cfg, CIOT_OPT_CLIENT_ID, id);
    rc = rc ? rc : ciot_config_set_int(cfg, CIOT_OPT_RECONNECT, 0);
    rc = rc ? rc : ciot_config_set_int(cfg, CIOT_OPT_CONNECT_TIMEOUT_MS, timeout_ms);
    if (ca)
        rc = rc ? rc : ciot_config_set_str(cfg, CIOT_OPT_TLS_CA_FILE, ca);
    if (cert)
        rc = rc ? rc : ciot_config_set_str(cfg, CIOT_OPT_TLS_CERT_FILE, cert);
    if (key)
        rc = rc ? rc : ciot_config_set_str(cfg, CIOT_OPT_TLS_KEY_FILE, key);
    if (user)
        rc = rc ? rc : ciot_config_set_str(cfg, CIOT_OPT_USERNAME, user);
    if (pass)
        rc = rc ? rc : ciot_config_set_str(cfg, CIOT_OPT_PASSWORD, pass);
    rc = rc ? rc : ciot_client_new(&c, cfg);
    if (rc != 0) {
        fprintf(stderr, "shadow-manager: %s: %s\n", ciot_err_name(rc), ciot_config_errmsg(cfg));
        ciot_config_free(cfg);
        return 2;
    }
    ciot_config_free(cfg);

    struct reply r = {.request_id = id};
    int status = 2;
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    char req_topic[64], resp_topic[80];
    snprintf(req_topic, sizeof req_topic, "$CONTROL/cloudiot/v1/%s", service);
    snprintf(resp_topic, sizeof resp_topic, "%s/response", req_topic);
    ciot_client_set_event_callback(c, on_event, &r);
    if (mon.want) {
        char filter[300];
        int fl = snprintf(filter, sizeof filter, "devices/%s/messages/events/#", device);
        if (fl < 0 || (size_t)fl >= sizeof filter ||
            ciot_client_subscribe(c, filter, (size_t)fl, 1, on_telemetry, &mon) != 0 ||
            ciot_client_connect(c) != 0) {
            fprintf(stderr, "shadow-manager: cannot monitor %s: %s\n", device,
                    ciot_client_errmsg(c));
            goto out;
        }
        if (!run_until(c, &r.subscribed, deadline)) {
            fprintf(stderr, "shadow-manager: no subscription to %s: %s\n", filter,
                    ciot_client_errmsg(c));
            goto out;
        }
        printf("monitoring %s\n", device);
        fflush(stdout);
        if (run_until(c, &mon.done, deadline)) {
            status = 0;
        } else {
            fprintf(stderr, "shadow-manager: %ld of %ld messages within %ld ms\n", mon.got,
                    mon.want, timeout_ms);
            status = 1;
        }
        (void)!ciot_client_disconnect(c);
        goto out;
    }
    if (!topic && ciot_client_subscribe(c, resp_topic, strlen(resp_topic), 1, on_response, &r) != 0)
        goto out;
    if (ciot_client_connect(c) != 0)
        goto out;
    if (topic) {
        /* iot-data publish: an ordinary QoS 1 message, done when acknowledged */
        if (ciot_client_publish(NULL, c, topic, strlen(topic), payload, strlen(payload), 1, 0) != 0) {
            fprintf(stderr, "shadow-manager: publish refused: bad topic %s\n", topic);
            goto out;
        }
        if (run_until(c, &r.acked, deadline)) {
            printf("{\"published\":\"%s\"}\n", topic);
            status = 0;
            (void)!ciot_client_disconnect(c);
        } else {
            fprintf(stderr, "shadow-manager: not acknowledged within %ld ms: %s\n", timeout_ms,
                    ciot_client_errmsg(c));
        }
        goto out;
    }
    if (!run_until(c, &r.subscribed, deadline)) {
        fprintf(stderr, "shadow-manager: no subscription to %s: %s\n", resp_topic,
                ciot_client_errmsg(c));
        goto out;
    }
    char buf[64 * 1024];
    size_t len = 0;
    int brc = device ? build_iothub_request(buf, sizeof buf, &len, cmd, id, device, method,
                                            payload, method_timeout, props, nprops)
                     : build_request(buf, sizeof buf, &len, cmd, id, thing, shadow, payload);
    if (brc != 0) {
        fprintf(stderr, "shadow-manager: %s\n",
                nprops ? "the payload is too long or a property is not NAME=VALUE"
                       : "the payload is not a JSON document (or too long)");
        goto out;
    }
    if (ciot_client_publish(NULL, c, req_topic, strlen(req_topic), buf, len, 1, 0) != 0)
        goto out;
    if (!run_until(c, &r.done, deadline)) {
        fprintf(stderr, "shadow-manager: no answer within %ld ms\n", timeout_ms);
        goto out;
    }
    ciot_json_value v;
    if (r.status == 200) {
        if (ciot_json_find(r.body, r.body_len, "result", 6, &v) == 0)
            printf("%.*s\n", (int)v.len, v.ptr);
        status = 0;
    } else {
        char msg[512];
        size_t ml = 0;
        if (ciot_json_find(r.body, r.body_len, "error", 5, &v) != 0 ||
            ciot_json_get_string(&v, msg, sizeof msg, &ml) != 0)
            snprintf(msg, sizeof msg, "(no message)");
        fprintf(stderr, "shadow-manager: %s refused: %d %s\n", cmd, r.status, msg);
        status = 1;
    }
    (void)!ciot_client_disconnect(c);
out:
    (void)!ciot_client_free(c);
    free(r.body);
    return status;
}
