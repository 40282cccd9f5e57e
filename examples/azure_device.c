/*
 * azure-device: the guide's temperature sensor on Azure IoT Hub (or on
 * cloudiot-emulator, which plays the hub locally).
 *
 *   - connects with its device connection string (SAS token signed with the
 *     SharedAccessKey, renewed by the library before it expires);
 *   - sends temperature readings as telemetry with the application
 *     properties temperatureAlert ("true" above 35 C, else "false"),
 *     deviceType and timestamp, so that the hub can route on them;
 *   - answers the direct methods `reboot` (200, nothing is rebooted: it is a
 *     demo) and `getStatus` (200 with uptime, memory and CPU load read from
 *     /proc); any other method gets 404 from the library;
 *   - prints every cloud-to-device message with its properties;
 *   - keeps its twin through the ciot_shadow API: reports its state at start,
 *     applies desired changes and reports them back. When the library has no
 *     twin support for this backend, it says so and goes on without a twin.
 *
 *   azure-device [--connection-string CS] [--endpoint HOST] [--port N]
 *                [--ca F] [--cert F --key F] [--plain] [--readings N]
 *                [--speedup K] [--expect-methods N] [--expect-c2d N]
 *                [--expect-desired N] [--max-seconds S]
 *
 * The connection string comes from --connection-string or the environment
 * variable CIOT_AZURE_CONNECTION_STRING (better: it holds a key). --endpoint
 * and --port override the connection string's HostName (a local emulator);
 * --ca is the CA that signed the server certificate; --cert/--key give a TLS
 * client certificate when the listener demands one (cloudiot-emulator's
 * --tls listener does; the device still authenticates with its SAS token);
 * --plain connects without TLS (loopback only). Prints one line
 * "azure-device: ready ..." once it can receive methods and messages, and a
 * summary line at the end; exits 0 when every reading was acknowledged and
 * the expected methods, C2D messages and desired changes arrived within
 * --max-seconds (default 60).
 */
#include <cloudiot/cloudiot.h>

#include <errno.h>
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
    int64_t interval_s; /* reporting interval, from the twin */
    char led[16];       /* a second piece of desired state */
    uint64_t *ids;      /* message ids of the readings, increasing */
    size_t n_ids;
    int acked, dropped, alerts, methods, c2d, desired, reports_accepted, reports_failed;
    int connects, subscribed;
    bool synced; /* the first twin get has ended (or there is no twin) */
    ciot_shadow *twin;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: azure-device [--connection-string CS] [--endpoint HOST] [--port N] [--ca F]\n"
            "                    [--cert F --key F] [--plain] [--readings N] [--speedup K]\n"
            "                    [--expect-methods N] [--expect-c2d N] [--expect-desired N]\n"
            "                    [--max-seconds S]\n"
            "(the connection string may come from CIOT_AZURE_CONNECTION_STRING)\n");
    return 2;
}

/* ---- client events ---- */

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
        printf("azure-device: connected (%s)\n", ciot_event_text(ev));
        break;
    case CIOT_EVENT_DISCONNECTED:
        printf("azure-device: disconnected: %s\n", ciot_event_text(ev));
        break;
    case CIOT_EVENT_SUBSCRIBED: {
        size_t len;
        const char *t = ciot_event_topic(ev, &len);
        if ((len >= 22 && memcmp(t, "$iothub/methods/POST/#", 22) == 0) ||
            (len > 8 && memcmp(t, "devices/", 8) == 0))
            d->subscribed++;
        break;
    }
    case CIOT_EVENT_PUBLISH_ACKED:
        d->acked += is_reading(d, ciot_event_msg_id(ev));
        break;
    case CIOT_EVENT_MESSAGE_DROPPED:
        d->dropped += is_reading(d, ciot_event_msg_id(ev));
        break;
    case CIOT_EVENT_ERROR:
        printf("azure-device: %s\n", ciot_event_text(ev));
        break;
    default:
        break;
    }
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
    return 0;
}

/* ---- /proc, read with bounded reads ---- */

/* Reads at most cap - 1 bytes of @p path into @p buf (NUL-terminated); false on error. */
static bool read_small_file(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, cap - 1, f);
    bool ok = !ferror(f);
    fclose(f);
    buf[n] = '\0';
    return ok && n > 0;
}

/* The kB value of the line "@p key: N kB" of /proc/meminfo's text; -1 when absent. */
static long long meminfo_kb(const char *text, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, key, kl) == 0 && p[kl] == ':') {
            char *end;
            errno = 0;
            long long v = strtoll(p + kl + 1, &end, 10);
            return errno || end == p + kl + 1 || v < 0 ? -1 : v;
        }
    }
    return -1;
}

/* {"uptimeSeconds":..,"memory":{"totalKb":..,"availableKb":..},"cpuLoad":{"1m":..,"5m":..,"15m":..}}
 * with null for whatever could not be read. */
static int status_json(char *out, size_t cap, size_t *len)
{
    char buf[8192];
    double up = -1, l1 = -1, l5 = -1, l15 = -1;
    long long total = -1, avail = -1;
    if (read_small_file("/proc/uptime", buf, sizeof buf) && sscanf(buf, "%lf", &up) != 1)
        up = -1;
    if (read_small_file("/proc/meminfo", buf, sizeof buf)) {
        total = meminfo_kb(buf, "MemTotal");
        avail = meminfo_kb(buf, "MemAvailable");
    }
    if (read_small_file("/proc/loadavg", buf, sizeof buf) &&
        sscanf(buf, "%lf %lf %lf", &l1, &l5, &l15) != 3)
        l1 = l5 = l15 = -1;
    ciot_json_writer w;
    int rc = ciot_json_writer_init(&w, out, cap);
    rc = rc ? rc : ciot_json_begin_object(&w);
    rc = rc ? rc : ciot_json_key(&w, "uptimeSeconds", 13);
    rc = rc ? rc : (up >= 0 && up < 9e15 ? ciot_json_int(&w, (int64_t)up) : ciot_json_null(&w));
    rc = rc ? rc : ciot_json_key(&w, "memory", 6);
    rc = rc ? rc : ciot_json_begin_object(&w);
    rc = rc ? rc : ciot_json_key(&w, "totalKb", 7);
    rc = rc ? rc : (total >= 0 ? ciot_json_int(&w, total) : ciot_json_null(&w));
    rc = rc ? rc : ciot_json_key(&w, "availableKb", 11);
    rc = rc ? rc : (avail >= 0 ? ciot_json_int(&w, avail) : ciot_json_null(&w));
    rc = rc ? rc : ciot_json_end_object(&w);
    rc = rc ? rc : ciot_json_key(&w, "cpuLoad", 7);
    rc = rc ? rc : ciot_json_begin_object(&w);
    const char *names[3] = {"1m", "5m", "15m"};
    double loads[3] = {l1, l5, l15};
    for (int i = 0; i < 3; i++) {
        rc = rc ? rc : ciot_json_key(&w, names[i], strlen(names[i]));
        rc = rc ? rc
                : (loads[i] >= 0 && isfinite(loads[i]) ? ciot_json_double(&w, loads[i])
                                                       : ciot_json_null(&w));
    }
    rc = rc ? rc : ciot_json_end_object(&w);
    rc = rc ? rc : ciot_json_end_object(&w);
    return rc ? rc : ciot_json_writer_finish(&w, len);
}

/* ---- direct methods ---- */

static void count_method(struct device *d)
{
    pthread_mutex_lock(&d->lock);
    d->methods++;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

static int on_reboot(ciot_client *c, const ciot_method_request *req, void *ud)
{
    size_t rl, pl;
    const char *rid = ciot_method_request_id(req, &rl);
    const char *p = ciot_method_request_payload(req, &pl);
    printf("azure-device: method reboot %.*s: simulated, nothing is rebooted\n", (int)pl, p);
    static const char answer[] =
        "{\"result\":\"rebooting\",\"simulated\":true,\"message\":\"a demo device: nothing was "
        "rebooted\"}";
    int rc = ciot_method_respond(c, rid, rl, 200, answer, sizeof answer - 1);
    if (rc != 0)
        printf("azure-device: reboot answer not sent: %s\n", ciot_err_name(rc));
    else
        count_method(ud);
    return 0;
}

static int on_get_status(ciot_client *c, const ciot_method_request *req, void *ud)
{
    size_t rl;
    const char *rid = ciot_method_request_id(req, &rl);
    char buf[512];
    size_t len;
    int rc = status_json(buf, sizeof buf, &len);
    if (rc == 0) {
        printf("azure-device: method getStatus -> %.*s\n", (int)len, buf);
        rc = ciot_method_respond(c, rid, rl, 200, buf, len);
    } else {
        static const char err[] = "{\"message\":\"status could not be written\"}";
        (void)!ciot_method_respond(c, rid, rl, 500, err, sizeof err - 1);
    }
    if (rc != 0)
        printf("azure-device: getStatus answer not sent: %s\n", ciot_err_name(rc));
    else
        count_method(ud);
    return 0;
}

static void on_method_error(ciot_client *c, int err, const char *text, void *ud)
{
    (void)c;
    (void)ud;
    printf("azure-device: bad method request (%s): %s\n", ciot_err_name(err), text);
}

/* ---- cloud-to-device messages ---- */

static int on_c2d(ciot_client *c, const ciot_azure_c2d *msg, void *ud)
{
    (void)c;
    struct device *d = ud;
    size_t len;
    const char *p = ciot_azure_c2d_payload(msg, &len);
    printf("azure-device: C2D message %.*s", (int)len, p);
    size_t n = ciot_azure_c2d_property_count(msg);
    for (size_t i = 0; i < n; i++) {
        ciot_view name, value;
        bool has_value;
        if (ciot_azure_c2d_property(&name, &value, &has_value, msg, i) == 0)
            printf(" %s%.*s%s%.*s", i ? "" : "properties: ", (int)name.len, name.ptr,
                   has_value ? "=" : "", (int)value.len, value.ptr);
    }
    if (ciot_azure_c2d_error(msg))
        printf(" (property bag unreadable)");
    printf("\n");
    pthread_mutex_lock(&d->lock);
    d->c2d++;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
    return 0;
}

/* ---- twin (ciot_shadow) ---- */

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
        printf("azure-device: reported properties accepted, version %llu\n",
               (unsigned long long)ciot_shadow_result_version(r));
    } else {
        d->reports_failed++;
        printf("azure-device: report failed: %d %s\n", ciot_shadow_result_code(r),
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
    return rc ? rc : ciot_shadow_update_reported(NULL, d->twin, buf, len, on_reported, d);
}

static int on_desired(ciot_shadow *s, const ciot_shadow_result *r, void *ud)
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
    if (ciot_json_find(doc, len, "interval", 8, &v) == 0 &&
        ciot_json_get_int64(&v, &interval) == 0 && interval >= 1 && interval <= 86400) {
        d->interval_s = interval;
        changed = true;
    }
    if (ciot_json_find(doc, len, "led", 3, &v) == 0 &&
        ciot_json_get_string(&v, led, sizeof led, &led_len) == 0) {
        memcpy(d->led, led, led_len + 1);
        changed = true;
    }
    if (changed)
        d->desired++;
    pthread_mutex_unlock(&d->lock);
    printf("azure-device: desired v%llu %.*s -> %s\n",
           (unsigned long long)ciot_shadow_result_version(r), (int)len, doc,
           changed ? "applied, reporting back" : "nothing this device knows");
    return changed ? report(d) : 0;
}

static int on_first_get(ciot_shadow *s, const ciot_shadow_result *r, void *ud)
{
    (void)s;
    struct device *d = ud;
    if (ciot_shadow_result_outcome(r) == CIOT_SHADOW_FAILED)
        printf("azure-device: twin get failed: %s\n", ciot_strerror(ciot_shadow_result_error(r)));
    pthread_mutex_lock(&d->lock);
    d->synced = true;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
    return report(d);
}

/* ---- readings ---- */

static int send_reading(ciot_client *c, struct device *d, double value, const char *cs_device)
{
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    size_t tsl = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    bool alert = value > 35.0;
    ciot_property props[3] = {
        {"temperatureAlert", 16, alert ? "true" : "false", alert ? 4u : 5u},
        {"deviceType", 10, "temperature-sensor", 18},
        {"timestamp", 9, ts, tsl},
    };
    char meta[96];
    int n = snprintf(meta, sizeof meta, "{\"unit\":\"celsius\",\"device\":\"%.40s\"}", cs_device);
    ciot_telemetry_opts o = CIOT_TELEMETRY_OPTS_INIT;
    o.metadata = meta;
    o.metadata_len = (size_t)n;
    o.properties = props;
    o.property_count = 3;
    uint64_t id;
    pthread_mutex_lock(&d->lock);
    int rc = ciot_telemetry_send(&id, c, "temperature", 11, value, &o);
    if (rc == 0) {
        d->ids[d->n_ids++] = id;
        d->alerts += alert;
    }
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

static int g_readings, g_expect_methods, g_expect_c2d, g_expect_desired;

/* Subscribed to methods and C2D, and the twin synchronised (when there is one). */
static bool is_ready(struct device *d) { return d->subscribed >= 2 && d->synced; }
static bool all_done(struct device *d)
{
    bool twin_ok = !d->twin || (d->desired >= g_expect_desired &&
                                d->reports_accepted + d->reports_failed >= 1 + d->desired);
    return d->acked >= g_readings && d->methods >= g_expect_methods && d->c2d >= g_expect_c2d &&
           twin_ok;
}

/* The DeviceId field of a connection string (for messages only; the library parses it). */
static void device_id_of(const char *cs, char *out, size_t cap)
{
    snprintf(out, cap, "?");
    const char *p = strstr(cs, "DeviceId=");
    if (!p)
        return;
    p += 9;
    size_t n = strcspn(p, ";");
    snprintf(out, cap, "%.*s", (int)(n < cap - 1 ? n : cap - 1), p);
}

int main(int argc, char **argv)
{
    const char *cs = getenv("CIOT_AZURE_CONNECTION_STRING"), *host = NULL, *ca = NULL,
               *cert = NULL, *key = NULL;
    long port = 0, speedup = 1, max_s = 60;
    bool plain = false;
    g_readings = 10;
    static const struct option longopts[] = {
        {"connection-string", required_argument, NULL, 'C'},
        {"endpoint", required_argument, NULL, 'e'},
        {"port", required_argument, NULL, 'p'},
        {"ca", required_argument, NULL, 'a'},
        {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'k'},
        {"plain", no_argument, NULL, 'P'},
        {"readings", required_argument, NULL, 'n'},
        {"speedup", required_argument, NULL, 's'},
        {"expect-methods", required_argument, NULL, 'M'},
        {"expect-c2d", required_argument, NULL, 'D'},
        {"expect-desired", required_argument, NULL, 'd'},
        {"max-seconds", required_argument, NULL, 'm'},
        {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        char *end = NULL;
        long v = optarg ? strtol(optarg, &end, 10) : 0;
        bool num_ok = optarg && *optarg && end && !*end;
        switch (o) {
        case 'C': cs = optarg; break;
        case 'e': host = optarg; break;
        case 'a': ca = optarg; break;
        case 'c': cert = optarg; break;
        case 'k': key = optarg; break;
        case 'P': plain = true; break;
        case 'p': if (!num_ok || v < 1 || v > 65535) return usage(); port = v; break;
        case 'n': if (!num_ok || v < 0 || v > 1000000) return usage(); g_readings = (int)v; break;
        case 's': if (!num_ok || v < 1 || v > 100000) return usage(); speedup = v; break;
        case 'M': if (!num_ok || v < 0 || v > 1000) return usage(); g_expect_methods = (int)v; break;
        case 'D': if (!num_ok || v < 0 || v > 1000) return usage(); g_expect_c2d = (int)v; break;
        case 'd': if (!num_ok || v < 0 || v > 1000) return usage(); g_expect_desired = (int)v; break;
        case 'm': if (!num_ok || v < 1 || v > 86400) return usage(); max_s = v; break;
        default: return usage();
        }
    }
    if (!cs || !*cs || optind != argc || (!cert) != (!key))
        return usage();
    char dev_id[64];
    device_id_of(cs, dev_id, sizeof dev_id);

    struct device d = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER,
                       .interval_s = 60};
    snprintf(d.led, sizeof d.led, "off");
    d.ids = calloc((size_t)g_readings + 1, sizeof *d.ids);
    if (!d.ids)
        return 2;
    ciot_config *cfg;
    ciot_client *c = NULL;
    if (ciot_config_new(&cfg) != 0) {
        free(d.ids);
        return 2;
    }
    int rc = ciot_config_set_int(cfg, CIOT_OPT_BACKEND, CIOT_BACKEND_AZURE);
    rc = rc ? rc : ciot_config_set_str(cfg, CIOT_OPT_AZURE_CONNECTION_STRING, cs);
    if (host)
        rc = rc ? rc : ciot_config_set_str(cfg, CIOT_OPT_HOST, host);
    if (port)
        rc = rc ? rc : ciot_config_set_int(cfg, CIOT_OPT_PORT, port);
    rc = rc ? rc : ciot_config_set_int(cfg, CIOT_OPT_RECONNECT_BASE_MS, 200);
    rc = rc ? rc : ciot_config_set_int(cfg, CIOT_OPT_RECONNECT_MAX_MS, 2000);
    if (plain)
        rc = rc ? rc : ciot_config_set_int(cfg, CIOT_OPT_TLS, 0);
    if (ca)
        rc = rc ? rc : ciot_config_set_str(cfg, CIOT_OPT_TLS_CA_FILE, ca);
    if (cert) {
        rc = rc ? rc : ciot_config_set_str(cfg, CIOT_OPT_TLS_CERT_FILE, cert);
        rc = rc ? rc : ciot_config_set_str(cfg, CIOT_OPT_TLS_KEY_FILE, key);
    }
    rc = rc ? rc : ciot_client_new(&c, cfg);
    if (rc != 0) {
        fprintf(stderr, "azure-device: %s: %s\n", ciot_err_name(rc), ciot_config_errmsg(cfg));
        ciot_config_free(cfg);
        free(d.ids);
        return 2;
    }
    ciot_config_free(cfg);
    ciot_client_set_event_callback(c, on_event, &d);
    ciot_method_set_error_callback(c, on_method_error, &d);
    int status = 1;
    rc = ciot_method_register(c, "reboot", 6, on_reboot, &d);
    rc = rc ? rc : ciot_method_register(c, "getStatus", 9, on_get_status, &d);
    rc = rc ? rc : ciot_azure_c2d_set_callback(c, on_c2d, &d);
    if (rc != 0) {
        fprintf(stderr, "azure-device: %s: %s\n", ciot_err_name(rc), ciot_client_errmsg(c));
        goto out;
    }
    /* The twin, through the same API as an AWS shadow. */
    rc = ciot_shadow_new(&d.twin, c, NULL, 0);
    if (rc == 0) {
        ciot_shadow_set_delta_callback(d.twin, on_desired, &d);
        rc = ciot_shadow_get(NULL, d.twin, on_first_get, &d);
        if (rc != 0) {
            fprintf(stderr, "azure-device: %s: %s\n", ciot_err_name(rc), ciot_client_errmsg(c));
            goto out;
        }
    } else {
        printf("azure-device: twin not available (%s: %s); going on without it\n",
               ciot_err_name(rc), ciot_client_errmsg(c));
        d.twin = NULL;
        d.synced = true;
    }
    rc = ciot_client_connect(c);
    rc = rc ? rc : ciot_client_start(c);
    if (rc != 0) {
        fprintf(stderr, "azure-device: %s: %s\n", ciot_err_name(rc), ciot_client_errmsg(c));
        goto out;
    }
    uint64_t deadline = now_ms() + (uint64_t)max_s * 1000u;
    if (!wait_until(&d, is_ready, deadline)) {
        fprintf(stderr, "azure-device: not ready in time: %s\n", ciot_client_errmsg(c));
        goto stop;
    }
    printf("azure-device: ready (device %s, twin %s)\n", dev_id,
           d.twin ? "available" : "not available");
    fflush(stdout);

    for (int i = 0; i < g_readings && now_ms() < deadline; i++) {
        pthread_mutex_lock(&d.lock);
        int64_t interval_s = d.interval_s;
        pthread_mutex_unlock(&d.lock);
        double temp = 26.0 + 12.0 * sin(i / 2.0); /* crosses 35 C now and then */
        if (send_reading(c, &d, round(temp * 100) / 100, dev_id) != 0) {
            fprintf(stderr, "azure-device: a reading was refused: %s\n", ciot_client_errmsg(c));
            goto stop;
        }
        uint64_t pause = (uint64_t)interval_s * 1000u / (uint64_t)speedup;
        struct timespec ts = {(time_t)(pause / 1000), (long)(pause % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    bool ok = wait_until(&d, all_done, deadline);
    pthread_mutex_lock(&d.lock);
    printf("azure-device: summary: %zu readings sent (%d with temperatureAlert=true), "
           "%d acknowledged, %d dropped, %d methods answered, %d C2D messages, "
           "%d desired changes applied, %d reports accepted, twin %s, connected %d time(s)\n",
           d.n_ids, d.alerts, d.acked, d.dropped, d.methods, d.c2d, d.desired,
           d.reports_accepted, d.twin ? "available" : "not available", d.connects);
    pthread_mutex_unlock(&d.lock);
    status = ok && d.reports_failed == 0 ? 0 : 1;
stop:
    (void)!ciot_client_stop(c);
    (void)!ciot_client_disconnect(c);
out:
    ciot_shadow_free(d.twin);
    (void)!ciot_client_free(c);
    free(d.ids);
    return status;
}
