/*
 * aws-device: the guide's temperature sensor on AWS IoT Core (or on
 * cloudiot-emulator, which plays it locally).
 *
 *   - connects with its X.509 certificate (mutual TLS, port 8883; the client
 *     id is the thing name, as the guide's SensorDevicePolicy requires);
 *   - publishes temperature and humidity readings (the guide's JSON:
 *     deviceId, sensorType, value, timestamp, metadata) to
 *     sensors/{thing}/{sensorType} with QoS 1;
 *   - handles the `calibrate` and `set_interval` commands sent to
 *     commands/{thing}/{name};
 *   - keeps its Device Shadow: reports its state at start, applies every
 *     desired-state change it receives as a delta and reports it back.
 *
 *   aws-device --endpoint HOST [--port N] --ca F --cert F --key F --thing NAME
 *              [--readings N] [--speedup K] [--expect-deltas D] [--max-seconds S]
 *              [--plain]
 *
 * --speedup K divides every interval by K (the demo runs the guide's 60 s
 * interval in 60 ms); --expect-deltas D keeps the device running after its
 * readings until D desired-state changes were applied (or --max-seconds,
 * default 60, passed). --plain connects without TLS (loopback only, for an
 * emulator started without --tls). Prints one line "aws-device: ready ..."
 * once its shadow is synchronised, and a summary line at the end; exits 0
 * when every reading was acknowledged and every expected delta applied.
 */
#include <cloudiot/cloudiot.h>

#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct device {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    const char *thing;
    double offset;       /* from `calibrate` */
    int64_t interval_s;  /* reporting interval, from `set_interval` or the shadow */
    char led[16];        /* a second piece of desired state */
    uint64_t *ids; /* message ids of the readings, increasing */
    size_t n_ids;
    int acked, dropped, commands, bad_commands, deltas, reports_accepted, reports_failed;
    int hot; /* temperature readings sent above 35 C: what the guide's alert rule catches */
    int connects;
    bool synced;         /* the first /get has ended */
    ciot_shadow *shadow;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int usage(void)
{
    fprintf(stderr, "usage: aws-device --endpoint HOST [--port N] --ca F --cert F --key F "
                    "--thing NAME\n"
                    "                  [--readings N] [--speedup K] [--expect-deltas D] "
                    "[--max-seconds S] [--plain]\n");
    return 2;
}

/* ---- client events ---- */

/* Whether @p id is one of the readings' (the others are shadow requests). */
static bool is_reading(const struct device *d, uint64_t id)
{
    size_t lo = 0, hi = d->n_ids;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (d->ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < d->n_ids && d->ids[lo] == id;
}

static int on_event(ciot_client *c, const ciot_event *ev, void *ud)
{
    (void)c;
    struct device *d = ud;
    pthread_mutex_lock(&d->lock);
    switch (ciot_event_type_of(ev)) {
    case CIOT_EVENT_CONNECTED:
        d->connects++;
        printf("aws-device: connected (%s)\n", ciot_event_text(ev));
        break;
    case CIOT_EVENT_DISCONNECTED:
        printf("aws-device: disconnected: %s\n", ciot_event_text(ev));
        break;
    case CIOT_EVENT_PUBLISH_ACKED:
        d->acked += is_reading(d, ciot_event_msg_id(ev));
        break;
    case CIOT_EVENT_MESSAGE_DROPPED:
        d->dropped += is_reading(d, ciot_event_msg_id(ev));
        break;
    case CIOT_EVENT_ERROR:
        printf("aws-device: %s\n", ciot_event_text(ev));
        break;
    default:
        break;
    }
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
    return 0;
}

/* ---- commands ---- */

static int on_calibrate(ciot_client *c, const ciot_command *cmd, void *ud)
{
    (void)c;
    struct device *d = ud;
    ciot_json_value args, v;
    double offset;
    if (ciot_command_args(cmd, &args) != 0 ||
        ciot_json_get_member(&args, "offset", 6, &v) != 0 ||
        ciot_json_get_double(&v, &offset) != 0 || fabs(offset) > 10) {
        printf("aws-device: calibrate ignored: needs {\"offset\": -10..10}\n");
        pthread_mutex_lock(&d->lock);
        d->bad_commands++;
        pthread_mutex_unlock(&d->lock);
        return 0;
    }
    pthread_mutex_lock(&d->lock);
    d->offset = offset;
    d->commands++;
    pthread_mutex_unlock(&d->lock);
    printf("aws-device: command calibrate: offset now %+.2f\n", offset);
    return 0;
}

static int on_set_interval(ciot_client *c, const ciot_command *cmd, void *ud)
{
    (void)c;
    struct device *d = ud;
    ciot_json_value args, v;
    int64_t s;
    if (ciot_command_args(cmd, &args) != 0 ||
        ciot_json_get_member(&args, "seconds", 7, &v) != 0 || ciot_json_get_int64(&v, &s) != 0 ||
        s < 1 || s > 86400) {
        printf("aws-device: set_interval ignored: needs {\"seconds\": 1..86400}\n");
        pthread_mutex_lock(&d->lock);
        d->bad_commands++;
        pthread_mutex_unlock(&d->lock);
        return 0;
    }
    pthread_mutex_lock(&d->lock);
    d->interval_s = s;
    d->commands++;
    pthread_mutex_unlock(&d->lock);
    printf("aws-device: command set_interval: every %lld s\n", (long long)s);
    return 0;
}

static int on_bad_command(ciot_client *c, const ciot_command *cmd, void *ud)
{
    (void)c;
    struct device *d = ud;
    size_t nl;
    const char *name = ciot_command_name(cmd, &nl);
    printf("aws-device: command \"%.*s\" refused: %s\n", (int)nl, name,
           ciot_command_error_text(cmd));
    pthread_mutex_lock(&d->lock);
    d->bad_commands++;
    pthread_mutex_unlock(&d->lock);
    return 0;
}

/* ---- shadow ---- */

/* Writes {"interval":N,"led":"..","firmware":".."} from the device's state. */
static int state_json(struct device *d, char *buf, size_t cap, size_t *len)
{
    ciot_json_writer w;
    pthread_mutex_lock(&d->lock);
    int rc = ciot_json_writer_init(&w, buf, cap);
    rc = rc ? rc : ciot_json_begin_object(&w);
    rc = rc ? rc : ciot_json_key(&w, "interval", 8);
    rc = rc ? rc : ciot_json_int(&w, d->interval_s);
    rc = rc ? rc : ciot_json_key(&w, "led", 3);
    rc = rc ? rc : ciot_json_string(&w, d->led, strlen(d->led));
    rc = rc ? rc : ciot_json_key(&w, "firmware", 8);
    rc = rc ? rc : ciot_json_string(&w, "1.0.0", 5);
    rc = rc ? rc : ciot_json_end_object(&w);
    rc = rc ? rc : ciot_json_writer_finish(&w, len);
    pthread_mutex_unlock(&d->lock);
    return rc;
}

static int on_reported(ciot_shadow *s, const ciot_shadow_result *r, void *ud)
{
    (void)s;
    struct device *d = ud;
    pthread_mutex_lock(&d->lock);
    if (ciot_shadow_result_outcome(r) == CIOT_SHADOW_ACCEPTED) {
        d->reports_accepted++;
        printf("aws-device: reported state accepted, shadow version %llu\n",
               (unsigned long long)ciot_shadow_result_version(r));
    } else {
        d->reports_failed++;
        printf("aws-device: report failed: %d %s\n", ciot_shadow_result_code(r),
               ciot_shadow_result_message(r) ? ciot_shadow_result_message(r)
                                             : ciot_strerror(ciot_shadow_result_error(r)));
    }
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
    return 0;
}

static int report(struct device *d)
{
    char buf[256];
    size_t len;
    int rc = state_json(d, buf, sizeof buf, &len);
    return rc ? rc : ciot_shadow_update_reported(NULL, d->shadow, buf, len, on_reported, d);
}

/* A desired-state change: apply what the device knows, report it back. */
static int on_delta(ciot_shadow *s, const ciot_shadow_result *r, void *ud)
{
    (void)s;
    struct device *d = ud;
    size_t len;
    const char *doc = ciot_shadow_result_document(r, &len);
    ciot_json_value v;
    int64_t interval;
    char led[16];
    size_t led_len;
    bool changed = false;
    pthread_mutex_lock(&d->lock);
    if (ciot_json_find(doc, len, "interval", 8, &v) == 0 && ciot_json_get_int64(&v, &interval) == 0 &&
        interval >= 1 && interval <= 86400) {
        d->interval_s = interval;
        changed = true;
    }
    if (ciot_json_find(doc, len, "led", 3, &v) == 0 &&
        ciot_json_get_string(&v, led, sizeof led, &led_len) == 0) {
        memcpy(d->led, led, led_len + 1);
        changed = true;
    }
    if (changed)
        d->deltas++;
    pthread_mutex_unlock(&d->lock);
    printf("aws-device: delta v%llu %.*s -> %s\n", (unsigned long long)ciot_shadow_result_version(r),
           (int)len, doc, changed ? "applied, reporting back" : "nothing this device knows");
    return changed ? report(d) : 0;
}

static int on_first_get(ciot_shadow *s, const ciot_shadow_result *r, void *ud)
{
    (void)s;
    struct device *d = ud;
    int outcome = ciot_shadow_result_outcome(r);
    if (outcome == CIOT_SHADOW_REJECTED && ciot_shadow_result_code(r) == 404)
        printf("aws-device: no shadow yet; creating it\n");
    else if (outcome == CIOT_SHADOW_FAILED)
        printf("aws-device: shadow get failed: %s\n", ciot_strerror(ciot_shadow_result_error(r)));
    pthread_mutex_lock(&d->lock);
    d->synced = true;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
    /* Report the device's own state; a pending delta (if any) reached on_delta already. */
    return report(d);
}

/* ---- readings ---- */

/* Sends one reading and records its id; the device's lock is held across
 * the call so that its acknowledgement cannot be counted before the id is
 * known (callbacks run with no lock of the client held: no deadlock). */
static int send_reading(ciot_client *c, struct device *d, const char *type, double value,
                        const char *unit)
{
    char meta[96];
    int n = snprintf(meta, sizeof meta, "{\"unit\":\"%s\",\"firmware\":\"1.0.0\"}", unit);
    ciot_telemetry_opts o = CIOT_TELEMETRY_OPTS_INIT;
    o.metadata = meta;
    o.metadata_len = (size_t)n;
    uint64_t id;
    pthread_mutex_lock(&d->lock);
    int rc = ciot_telemetry_send(&id, c, type, strlen(type), value, &o);
    if (rc == 0)
        d->ids[d->n_ids++] = id;
    pthread_mutex_unlock(&d->lock);
    return rc;
}

static bool wait_until(struct device *d, bool (*pred)(struct device *), uint64_t deadline)
{
    pthread_mutex_lock(&d->lock);
    while (!pred(d) && now_ms() < deadline) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&d->cond, &d->lock, &ts);
    }
    bool ok = pred(d);
    pthread_mutex_unlock(&d->lock);
    return ok;
}

static int g_readings, g_expect_deltas;

static bool is_synced(struct device *d) { return d->synced; }
static bool all_done(struct device *d)
{
    return d->acked >= 2 * g_readings && d->deltas >= g_expect_deltas &&
           d->reports_accepted + d->reports_failed >= 1 + d->deltas;
}

int main(int argc, char **argv)
{
    const char *host = NULL, *ca = NULL, *cert = NULL, *key = NULL, *thing = NULL;
    long port = 8883, speedup = 1, max_s = 60;
    bool plain = false;
    g_readings = 10;
    static const struct option longopts[] = {
        {"endpoint", required_argument, NULL, 'e'},  {"port", required_argument, NULL, 'p'},
        {"ca", required_argument, NULL, 'a'},        {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'k'},       {"thing", required_argument, NULL, 't'},
        {"readings", required_argument, NULL, 'n'},  {"speedup", required_argument, NULL, 's'},
        {"expect-deltas", required_argument, NULL, 'd'},
        {"max-seconds", required_argument, NULL, 'm'}, {"plain", no_argument, NULL, 'P'},
        {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        char *end = NULL;
        long v = optarg ? strtol(optarg, &end, 10) : 0;
        bool num_ok = optarg && *optarg && end && !*end;
        switch (o) {
        case 'e': host = optarg; break;
        case 'a': ca = optarg; break;
        case 'c': cert = optarg; break;
        case 'k': key = optarg; break;
        case 't': thing = optarg; break;
        case 'P': plain = true; break;
        case 'p': if (!num_ok || v < 1 || v > 65535) return usage(); port = v; break;
        case 'n': if (!num_ok || v < 0 || v > 1000000) return usage(); g_readings = (int)v; break;
        case 's': if (!num_ok || v < 1 || v > 100000) return usage(); speedup = v; break;
        case 'd': if (!num_ok || v < 0 || v > 1000) return usage(); g_expect_deltas = (int)v; break;
        case 'm': if (!num_ok || v < 1 || v > 86400) return usage(); max_s = v; break;
        default: return usage();
        }
    }
    if (!host || !thing || optind != argc || (!plain && (!ca || !cert || !key)))
        return usage();

    struct device d = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER,
                       .thing = thing, .interval_s = 60};
    snprintf(d.led, sizeof d.led, "off");
    d.ids = calloc(2 * (size_t)g_readings + 1, sizeof *d.ids);
    if (!d.ids)
        return 2;
    ciot_config *cfg;
    ciot_client *c = NULL;
    if (ciot_config_new(&cfg) != 0) {
        free(d.ids);
        return 2;
    }
    int rc = ciot_config_set_int(cfg, CIOT_OPT_BACKEND, CIOT_BACKEND_AWS);
    rc = rc ? rc : ciot_config_set_str(cfg, CIOT_OPT_HOST, host);
    rc = rc ? rc : ciot_config_set_int(cfg, CIOT_OPT_PORT, port);
    rc = rc ? rc : ciot_config_set_str(cfg, CIOT_OPT_CLIENT_ID, thing);
    rc = rc ? rc : ciot_config_set_int(cfg, CIOT_OPT_RECONNECT_BASE_MS, 200);
    rc = rc ? rc : ciot_config_set_int(cfg, CIOT_OPT_RECONNECT_MAX_MS, 2000);
    if (plain) {
        rc = rc ? rc : ciot_config_set_int(cfg, CIOT_OPT_TLS, 0);
    } else {
        rc = rc ? rc : ciot_config_set_str(cfg, CIOT_OPT_TLS_CA_FILE, ca);
        rc = rc ? rc : ciot_config_set_str(cfg, CIOT_OPT_TLS_CERT_FILE, cert);
        rc = rc ? rc : ciot_config_set_str(cfg, CIOT_OPT_TLS_KEY_FILE, key);
    }
    rc = rc ? rc : ciot_client_new(&c, cfg);
    if (rc != 0) {
        fprintf(stderr, "aws-device: %s: %s\n", ciot_err_name(rc), ciot_config_errmsg(cfg));
        ciot_config_free(cfg);
        free(d.ids);
        return 2;
    }
    ciot_config_free(cfg);
    ciot_client_set_event_callback(c, on_event, &d);
    ciot_command_set_error_callback(c, on_bad_command, &d);
    int status = 1;
    rc = ciot_command_register(c, "calibrate", 9, on_calibrate, &d);
    rc = rc ? rc : ciot_command_register(c, "set_interval", 12, on_set_interval, &d);
    rc = rc ? rc : ciot_shadow_new(&d.shadow, c, NULL, 0);
    if (rc != 0) {
        fprintf(stderr, "aws-device: %s: %s\n", ciot_err_name(rc), ciot_client_errmsg(c));
        goto out;
    }
    ciot_shadow_set_delta_callback(d.shadow, on_delta, &d);
    rc = ciot_shadow_get(NULL, d.shadow, on_first_get, &d);
    rc = rc ? rc : ciot_client_connect(c);
    rc = rc ? rc : ciot_client_start(c);
    if (rc != 0) {
        fprintf(stderr, "aws-device: %s: %s\n", ciot_err_name(rc), ciot_client_errmsg(c));
        goto out;
    }
    uint64_t deadline = now_ms() + (uint64_t)max_s * 1000u;
    if (!wait_until(&d, is_synced, deadline)) {
        fprintf(stderr, "aws-device: no shadow answer: %s\n", ciot_client_errmsg(c));
        goto stop;
    }
    printf("aws-device: ready (thing %s, shadow version %llu)\n", thing,
           (unsigned long long)ciot_shadow_version(d.shadow));
    fflush(stdout);

    for (int i = 0; i < g_readings && now_ms() < deadline; i++) {
        pthread_mutex_lock(&d.lock);
        double offset = d.offset;
        int64_t interval_s = d.interval_s;
        pthread_mutex_unlock(&d.lock);
        double temp = 22.0 + 14.0 * sin(i / 3.0) + offset; /* crosses 35 C now and then */
        double hum = 45.0 + 10.0 * cos(i / 4.0);
        temp = round(temp * 100) / 100;
        if (send_reading(c, &d, "temperature", temp, "celsius") != 0 ||
            send_reading(c, &d, "humidity", round(hum * 100) / 100, "percent") != 0) {
            fprintf(stderr, "aws-device: a reading was refused: %s\n", ciot_client_errmsg(c));
            goto stop;
        }
        if (temp > 35)
            d.hot++;
        uint64_t pause = (uint64_t)interval_s * 1000u / (uint64_t)speedup;
        struct timespec ts = {(time_t)(pause / 1000), (long)(pause % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    bool ok = wait_until(&d, all_done, deadline);
    char desired[512] = "", reported[512] = "";
    (void)!ciot_shadow_read(desired, sizeof desired, NULL, d.shadow, CIOT_SHADOW_DESIRED);
    (void)!ciot_shadow_read(reported, sizeof reported, NULL, d.shadow, CIOT_SHADOW_REPORTED);
    pthread_mutex_lock(&d.lock);
    printf("aws-device: summary: %zu readings sent, %d acknowledged, %d dropped, %d commands "
           "handled (%d refused), %d deltas applied, %d reports accepted, shadow version %llu, "
           "connected %d time(s), %d temperature readings above 35 C\n",
           d.n_ids, d.acked, d.dropped, d.commands, d.bad_commands, d.deltas,
           d.reports_accepted, (unsigned long long)ciot_shadow_version(d.shadow), d.connects,
           d.hot);
    printf("aws-device: local copy: desired %s reported %s\n", desired[0] ? desired : "(none)",
           reported[0] ? reported : "(none)");
    pthread_mutex_unlock(&d.lock);
    status = ok && d.reports_failed == 0 ? 0 : 1;
stop:
    (void)!ciot_client_stop(c);
    (void)!ciot_client_disconnect(c);
out:
    ciot_shadow_free(d.shadow);
    (void)!ciot_client_free(c);
    free(d.ids);
    return status;
}
