/*
 * ciot_client against plain libmosquitto, measured in the same run on the
 * same local broker (started here: mosquitto with max_queued_messages 0 and
 * set_tcp_nodelay true, on loopback ports):
 *
 *   - QoS 0 and QoS 1 publishing of the 169-byte telemetry message: client
 *     CPU per message (getrusage of this process: the broker is another
 *     process) and messages per second, until every message is written
 *     (QoS 0) or acknowledged (QoS 1);
 *   - memory per message in the offline queue, beyond topic and payload;
 *   - heap of a connected plain client;
 *   - mutual TLS connect against a raw OpenSSL handshake, and a reconnect
 *     that resumes the TLS session.
 *
 * These are wall-clock and CPU figures (network and kernel time dominate, so
 * callgrind would measure the wrong thing). Each figure is the median of
 * several runs. Prints "info ..." lines and "goal ..." verdicts; never fails
 * on a missed goal (benchmarks are not tests).
 */
#include "bench.h"
#include "broker.h"

#include <cloudiot/cloudiot.h>

#include <arpa/inet.h>
#include <malloc.h>
#include <mosquitto.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static const char TOPIC[] = "sensors/temperature-sensor-001/temperature";
static const char PAYLOAD[] =
    "{\"deviceId\":\"temperature-sensor-001\",\"sensorType\":\"temperature\",\"value\":27.31,"
    "\"timestamp\":\"2026-11-26T04:56:27.123Z\",\"metadata\":{\"unit\":\"celsius\","
    "\"accuracy\":\"\xc2\xb1" "0.5\xc2\xb0" "C\"}}";

static test_broker broker;

static double cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec * 1e6 + (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec * 1e6 + (double)ru.ru_stime.tv_usec;
}

static double median3(double a, double b, double c)
{
    double v[3] = {a, b, c};
    qsort(v, 3, sizeof v[0], bench_cmp_double);
    return v[1];
}

struct result {
    double cpu_us_per_msg, msgs_per_s;
};

/* ---- plain libmosquitto, as in the anchors' sync harness ---- */

static long mosq_done;

static void mosq_on_publish(struct mosquitto *m, void *ud, int mid)
{
    (void)m;
    (void)ud;
    (void)mid;
    mosq_done++;
}

static struct result run_mosquitto(int qos, long n, int inflight)
{
    struct mosquitto *m = mosquitto_new("bench-mosq", true, NULL);
    mosquitto_int_option(m, MOSQ_OPT_SEND_MAXIMUM, inflight);
    mosquitto_publish_callback_set(m, mosq_on_publish);
    if (mosquitto_connect(m, "127.0.0.1", broker.port, 60) != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "libmosquitto: connect failed\n");
        exit(1);
    }
    mosq_done = 0;
    double c0 = cpu_us();
    uint64_t t0 = bench_now_ns();
    for (long i = 0; i < n; i++) {
        mosquitto_publish(m, NULL, TOPIC, (int)sizeof PAYLOAD - 1, PAYLOAD, qos, false);
        if ((i & 63) == 63)
            mosquitto_loop(m, 0, 1);
    }
    while (mosq_done < n)
        mosquitto_loop(m, 10, 1);
    uint64_t t1 = bench_now_ns();
    double c1 = cpu_us();
    mosquitto_disconnect(m);
    mosquitto_loop(m, 10, 1);
    mosquitto_destroy(m);
    return (struct result){(c1 - c0) / (double)n, (double)n / ((double)(t1 - t0) / 1e9)};
}

/* ---- ciot_client, external loop on this thread ---- */

static long ciot_acked;

static int on_event(ciot_client *c, const ciot_event *ev, void *ud)
{
    (void)c;
    (void)ud;
    if (ciot_event_type_of(ev) == CIOT_EVENT_PUBLISH_ACKED)
        ciot_acked++;
    return 0;
}

static ciot_config *plain_config(const char *id, int inflight, long queue)
{
    ciot_config *cfg;
    if (ciot_config_new(&cfg) != 0 || ciot_config_set_str(cfg, CIOT_OPT_HOST, "127.0.0.1") != 0 ||
        ciot_config_set_int(cfg, CIOT_OPT_PORT, broker.port) != 0 ||
        ciot_config_set_str(cfg, CIOT_OPT_CLIENT_ID, id) != 0 ||
        ciot_config_set_int(cfg, CIOT_OPT_MAX_INFLIGHT, inflight) != 0 ||
        ciot_config_set_int(cfg, CIOT_OPT_QUEUE_MAX_MESSAGES, queue) != 0 ||
        ciot_config_set_int(cfg, CIOT_OPT_QUEUE_MAX_BYTES, (int64_t)queue * 512) != 0 ||
        /* libmosquitto's default, so that both send the same segments */
        ciot_config_set_int(cfg, CIOT_OPT_TCP_NODELAY, 0) != 0) {
        fprintf(stderr, "config refused\n");
        exit(1);
    }
    return cfg;
}

static void wait_connected(ciot_client *c)
{
    /* process() as soon as the descriptor is ready: ciot_client_run() would
     * only return at the end of its time slice. */
    uint64_t end = bench_now_ns() + 10000000000ull;
    while (!ciot_client_is_connected(c) && bench_now_ns() < end) {
        struct pollfd p = {.fd = ciot_client_fd(c), .events = POLLIN};
        poll(&p, 1, ciot_client_timeout_ms(c));
        (void)!ciot_client_process(c, 0);
    }
    if (!ciot_client_is_connected(c)) {
        fprintf(stderr, "ciot: no connection: %s\n", ciot_client_errmsg(c));
        exit(1);
    }
}

static struct result run_ciot(int qos, long n, int inflight)
{
    ciot_config *cfg = plain_config("bench-ciot", inflight, n);
    ciot_client *c;
    if (ciot_client_new(&c, cfg) != 0) {
        fprintf(stderr, "ciot_client_new: %s\n", ciot_config_errmsg(cfg));
        exit(1);
    }
    ciot_config_free(cfg);
    ciot_client_set_event_callback(c, on_event, NULL);
    (void)!ciot_client_connect(c);
    wait_connected(c);
    ciot_acked = 0;
    double c0 = cpu_us();
    uint64_t t0 = bench_now_ns();
    for (long i = 0; i < n; i++) {
        if (ciot_client_publish(NULL, c, TOPIC, sizeof TOPIC - 1, PAYLOAD, sizeof PAYLOAD - 1, qos, 0) != 0) {
            fprintf(stderr, "publish: %s\n", ciot_client_errmsg(c));
            exit(1);
        }
        if ((i & 63) == 63)
            (void)!ciot_client_process(c, 0);
    }
    /* QoS 0 counts as done when written, as libmosquitto's on_publish does. */
    while (ciot_acked < n || ciot_client_want_write(c)) {
        struct pollfd p = {.fd = ciot_client_fd(c), .events = POLLIN};
        poll(&p, 1, 10);
        (void)!ciot_client_process(c, 0);
    }
    uint64_t t1 = bench_now_ns();
    double c1 = cpu_us();
    (void)!ciot_client_disconnect(c);
    (void)!ciot_client_free(c);
    return (struct result){(c1 - c0) / (double)n, (double)n / ((double)(t1 - t0) / 1e9)};
}

static void goal(const char *what, double ratio, const char *op, double target)
{
    bool ok = op[0] == '<' ? ratio <= target : ratio >= target;
    printf("goal %-58s %8.3f  (%s %.2f) %s\n", what, ratio, op, target, ok ? "met" : "MISSED");
}

static void bench_publish(long n)
{
    for (int qos = 0; qos <= 1; qos++) {
        struct result m[3], c[3];
        for (int r = 0; r < 3; r++) {
            m[r] = run_mosquitto(qos, n, 100);
            c[r] = run_ciot(qos, n, 100);
        }
        double mc = median3(m[0].cpu_us_per_msg, m[1].cpu_us_per_msg, m[2].cpu_us_per_msg);
        double cc = median3(c[0].cpu_us_per_msg, c[1].cpu_us_per_msg, c[2].cpu_us_per_msg);
        double mr = median3(m[0].msgs_per_s, m[1].msgs_per_s, m[2].msgs_per_s);
        double cr = median3(c[0].msgs_per_s, c[1].msgs_per_s, c[2].msgs_per_s);
        printf("info QoS %d, %ld x 169 B: libmosquitto %.2f us CPU/msg %.0f msg/s; "
               "ciot_client %.2f us CPU/msg %.0f msg/s (median of 3, inflight 100)\n",
               qos, n, mc, mr, cc, cr);
        char label[96];
        snprintf(label, sizeof label, "QoS %d client CPU per message vs libmosquitto", qos);
        goal(label, cc / mc, "<=", 1.1);
        snprintf(label, sizeof label, "QoS %d throughput vs libmosquitto", qos);
        goal(label, cr / mr, ">=", 0.95);
    }
}

static void bench_queue_memory(long n)
{
    ciot_config *cfg = plain_config("bench-offline", 100, n);
    ciot_client *c;
    if (ciot_client_new(&c, cfg) != 0)
        exit(1);
    ciot_config_free(cfg);
    struct mallinfo2 a = mallinfo2();
    for (long i = 0; i < n; i++)
        if (ciot_client_publish(NULL, c, TOPIC, sizeof TOPIC - 1, PAYLOAD, sizeof PAYLOAD - 1, 1, 0) != 0)
            exit(1);
    struct mallinfo2 b = mallinfo2();
    double per = (double)(b.uordblks - a.uordblks) / (double)n;
    double data = (double)(sizeof TOPIC - 1 + sizeof PAYLOAD - 1);
    printf("info offline queue: %ld messages, %.1f B heap each for %.0f B of topic + payload: "
           "%.1f B overhead (libmosquitto's queue: ~141 B)\n", n, per, data, per - data);
    goal("offline queue overhead per message, bytes", per - data, "<=", 64);
    (void)!ciot_client_free(c); /* reports them dropped: no callback set */
}

static void bench_heap(void)
{
    /* libmosquitto first: its global init is then paid before either figure. */
    mosquitto_lib_init();
    struct mallinfo2 a = mallinfo2();
    struct mosquitto *m = mosquitto_new("bench-heap-mosq", true, NULL);
    if (mosquitto_connect(m, "127.0.0.1", broker.port, 60) != MOSQ_ERR_SUCCESS)
        exit(1);
    for (int i = 0; i < 20; i++)
        mosquitto_loop(m, 10, 1);
    struct mallinfo2 b = mallinfo2();
    double mosq_heap = (double)(b.uordblks - a.uordblks);
    mosquitto_disconnect(m);
    mosquitto_loop(m, 10, 1);
    mosquitto_destroy(m);

    a = mallinfo2();
    ciot_config *cfg = plain_config("bench-heap-ciot", 100, 10000);
    ciot_client *c;
    if (ciot_client_new(&c, cfg) != 0)
        exit(1);
    ciot_config_free(cfg);
    (void)!ciot_client_connect(c);
    wait_connected(c);
    (void)!ciot_client_run(c, 200);
    b = mallinfo2();
    double ciot_heap = (double)(b.uordblks - a.uordblks);
    printf("info heap of a connected plain client: libmosquitto %.0f B, ciot_client %.0f B "
           "(difference %.0f B)\n", mosq_heap, ciot_heap, ciot_heap - mosq_heap);
    goal("connected client heap beyond libmosquitto's, bytes", ciot_heap - mosq_heap, "<=", 4096);
    (void)!ciot_client_disconnect(c);
    (void)!ciot_client_free(c);
}

/* ---- TLS ---- */

static double raw_handshake_ms(SSL_CTX *ctx)
{
    uint64_t t0 = bench_now_ns();
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)broker.tls_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        exit(1);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    char host[] = "localhost"; /* the macro casts away const */
    SSL_set_tlsext_host_name(ssl, host);
    if (SSL_connect(ssl) != 1) {
        fprintf(stderr, "raw handshake failed\n");
        exit(1);
    }
    uint64_t t1 = bench_now_ns();
    SSL_shutdown(ssl);
    SSL_free(ssl);
    close(fd);
    return (double)(t1 - t0) / 1e6;
}

static int mosq_connected;

static void mosq_on_connect(struct mosquitto *m, void *ud, int rc)
{
    (void)m;
    (void)ud;
    mosq_connected = rc == 0 ? 1 : -1;
}

/* libmosquitto itself: mosquitto_new + tls_set + connect until CONNACK. */
static double mosq_tls_connect_ms(const char *ca, const char *crt, const char *key)
{
    uint64_t t0 = bench_now_ns();
    struct mosquitto *m = mosquitto_new("device1", true, NULL);
    mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_connect_callback_set(m, mosq_on_connect);
    if (mosquitto_tls_set(m, ca, NULL, crt, key, NULL) != MOSQ_ERR_SUCCESS)
        exit(1);
    mosq_connected = 0;
    if (mosquitto_connect(m, "localhost", broker.tls_port, 60) != MOSQ_ERR_SUCCESS)
        exit(1);
    while (mosq_connected == 0)
        mosquitto_loop(m, 10, 1);
    double ms = (double)(bench_now_ns() - t0) / 1e6;
    mosquitto_disconnect(m);
    mosquitto_loop(m, 10, 1);
    mosquitto_destroy(m);
    return ms;
}

static ciot_config *tls_config(void)
{
    ciot_config *cfg;
    if (ciot_config_new(&cfg) != 0 || ciot_config_set_str(cfg, CIOT_OPT_HOST, "localhost") != 0 ||
        ciot_config_set_int(cfg, CIOT_OPT_PORT, broker.tls_port) != 0 ||
        ciot_config_set_str(cfg, CIOT_OPT_CLIENT_ID, "device1") != 0 ||
        ciot_config_set_str(cfg, CIOT_OPT_TLS_CA_FILE, test_broker_pki(&broker, "ca.crt")) != 0 ||
        ciot_config_set_str(cfg, CIOT_OPT_TLS_CERT_FILE, test_broker_pki(&broker, "device1.crt")) != 0 ||
        ciot_config_set_str(cfg, CIOT_OPT_TLS_KEY_FILE, test_broker_pki(&broker, "device1.key")) != 0)
        exit(1);
    return cfg;
}

static void bench_tls(int reps)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    char ca[512], crt[512], key[512];
    snprintf(ca, sizeof ca, "%s", test_broker_pki(&broker, "ca.crt"));
    snprintf(crt, sizeof crt, "%s", test_broker_pki(&broker, "device1.crt"));
    snprintf(key, sizeof key, "%s", test_broker_pki(&broker, "device1.key"));
    SSL_CTX_load_verify_locations(ctx, ca, NULL);
    SSL_CTX_use_certificate_chain_file(ctx, crt);
    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    double raw[64], fresh[64], again[64], mosq[64];
    if (reps > 64)
        reps = 64;
    for (int r = 0; r < reps; r++) {
        raw[r] = raw_handshake_ms(ctx);
        mosq[r] = mosq_tls_connect_ms(ca, crt, key);

        /* What a device pays at start: make the client (PEM files read once) and connect. */
        uint64_t t0 = bench_now_ns();
        ciot_config *cfg = tls_config();
        ciot_client *c;
        if (ciot_client_new(&c, cfg) != 0) {
            fprintf(stderr, "%s\n", ciot_config_errmsg(cfg));
            exit(1);
        }
        ciot_config_free(cfg);
        (void)!ciot_client_connect(c);
        wait_connected(c);
        fresh[r] = (double)(bench_now_ns() - t0) / 1e6;
        (void)!ciot_client_run(c, 5); /* take the session tickets */
        (void)!ciot_client_disconnect(c);
        t0 = bench_now_ns();
        (void)!ciot_client_connect(c);
        wait_connected(c);
        again[r] = (double)(bench_now_ns() - t0) / 1e6;
        (void)!ciot_client_free(c);
    }
    qsort(raw, (size_t)reps, sizeof raw[0], bench_cmp_double);
    qsort(fresh, (size_t)reps, sizeof fresh[0], bench_cmp_double);
    qsort(again, (size_t)reps, sizeof again[0], bench_cmp_double);
    qsort(mosq, (size_t)reps, sizeof mosq[0], bench_cmp_double);
    double r = raw[reps / 2], f = fresh[reps / 2], a = again[reps / 2], mq = mosq[reps / 2];
    printf("info libmosquitto new + tls_set + connect to CONNACK: %.2f ms (median of %d)\n", mq, reps);
    printf("info mutual TLS (RSA-2048), broker with set_tcp_nodelay, median of %d: raw OpenSSL "
           "handshake %.2f ms; ciot_client new + connect to CONNACK %.2f ms; reconnect with "
           "session resumption %.2f ms\n", reps, r, f, a);
    goal("TLS connect (new client, to CONNACK) vs raw handshake", f / r, "<=", 1.2);
    goal("TLS reconnect with resumption vs full raw handshake", a / r, "<=", 0.6);
    SSL_CTX_free(ctx);
}

int main(void)
{
    test_broker_opts o = {.tls = true, .max_queued = 0, .nodelay = true};
    if (test_broker_start(&broker, &o) != 0)
        return 1;
    long n = bench_iters(100000);
    bench_heap();
    bench_publish(n);
    bench_queue_memory(n);
    bench_tls((int)bench_iters(30) < 3 ? 3 : (int)bench_iters(30));
    test_broker_stop(&broker);
    return 0;
}
