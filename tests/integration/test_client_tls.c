/* ciot_client over mutual TLS against mosquitto with a generated PKI: what
 * works, and each way it must fail, with its own clear error. */
#include "harness.h"

#include <openssl/ssl.h>
#include <sys/resource.h>

static test_broker broker;

static void start_tls(void)
{
    test_broker_opts o = {.tls = true, .max_queued = 0, .nodelay = true};
    cr_assert_eq(test_broker_start(&broker, &o), 0, "the broker fixture did not start");
}

static void stop_broker(void)
{
    test_broker_stop(&broker);
}

TestSuite(client_tls, .init = start_tls, .fini = stop_broker, .timeout = 120);

static ciot_config *tls_config(const char *host, const char *ca, const char *cert, const char *key)
{
    ciot_config *cfg = h_config(&broker, "device1");
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_HOST, host), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PORT, broker.tls_port), 0);
    if (ca)
        cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TLS_CA_FILE, test_broker_pki(&broker, ca)), 0);
    if (cert)
        cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TLS_CERT_FILE, test_broker_pki(&broker, cert)), 0);
    if (key)
        cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TLS_KEY_FILE, test_broker_pki(&broker, key)), 0);
    return cfg;
}

/* Connects and expects a first error event; returns it. */
static int first_error(ciot_config *cfg, h_events *ev)
{
    ciot_client *c = h_client(cfg, ev);
    cr_assert_eq(ciot_client_connect(c), 0);
    struct h_count_arg err = {ev, 1};
    cr_assert(h_run_until(c, h_errors_at_least, &err, 10000), "no error event");
    cr_assert_not(ciot_client_is_connected(c), "it must not fall back to anything");
    cr_assert_eq(ev->connected, 0);
    cr_assert_eq(ciot_client_free(c), 0);
    return ev->last_error;
}

Test(client_tls, mutual_tls_works_and_resumes_the_session)
{
    h_events ev;
    h_events_init(&ev);
    ciot_config *cfg = tls_config("localhost", "ca.crt", "device1.crt", "device1.key");
    int64_t port;
    cr_assert_eq(ciot_config_get_int(cfg, CIOT_OPT_TLS, &port), 0);
    cr_assert_eq(port, 1, "a TLS file turns TLS on");
    ciot_client *c = h_client(cfg, &ev);
    ciot_config_free(cfg);
    cr_assert_eq(ciot_client_connect(c), 0);
    cr_assert(h_run_until(c, h_is_connected, c, 10000), "%s", ciot_client_errmsg(c));
    cr_assert_eq(ciot_client_publish(NULL, c, "dt/device1/t", 12, "{}", 2, 1, 0), 0);
    struct h_count_arg acked = {&ev, 1};
    cr_assert(h_run_until(c, h_acked_at_least, &acked, 5000));
    cr_assert_eq(ciot_client_disconnect(c), 0);
    cr_assert_eq(ciot_client_connect(c), 0);
    cr_assert(h_run_until(c, h_is_connected, c, 10000), "%s", ciot_client_errmsg(c));
    cr_assert_eq(ciot_client_run(c, 20), 0);
    cr_assert(strstr(ev.last_text, "TLS session resumed") != NULL || ev.connected < 2,
              "reconnect did not resume: %s", ev.last_text);
    cr_assert(strstr(ev.last_text, "resumed") != NULL, "second connect: %s", ev.last_text);
    cr_assert_eq(ciot_client_free(c), 0);
}

Test(client_tls, an_ip_address_is_checked_against_the_ip_san)
{
    h_events ev;
    h_events_init(&ev);
    ciot_config *cfg = tls_config("127.0.0.1", "ca.crt", "device1.crt", "device1.key");
    ciot_client *c = h_client(cfg, &ev);
    ciot_config_free(cfg);
    cr_assert_eq(ciot_client_connect(c), 0);
    cr_assert(h_run_until(c, h_is_connected, c, 10000), "%s", ciot_client_errmsg(c));
    cr_assert_eq(ciot_client_free(c), 0);
}

Test(client_tls, no_client_certificate_is_refused_by_the_broker)
{
    h_events ev;
    h_events_init(&ev);
    ciot_config *cfg = tls_config("localhost", "ca.crt", NULL, NULL);
    int err = first_error(cfg, &ev);
    ciot_config_free(cfg);
    cr_assert_eq(err, CIOT_ETLS, "%s: %s", ciot_err_name(err), ev.error_text);
    cr_assert(strstr(ev.error_text, "handshake refused") != NULL ||
                  strstr(ev.error_text, "certificate required") != NULL,
              "%s", ev.error_text);
}

Test(client_tls, untrusted_ca_is_named)
{
    h_events ev;
    h_events_init(&ev);
    /* The client trusts only the rogue CA, which did not sign the server. */
    ciot_config *cfg = tls_config("localhost", "rogue-ca.crt", "device1.crt", "device1.key");
    int err = first_error(cfg, &ev);
    ciot_config_free(cfg);
    cr_assert_eq(err, CIOT_ETLS);
    cr_assert(strstr(ev.error_text, "chain not trusted") != NULL, "%s", ev.error_text);
}

Test(client_tls, wrong_host_name_is_named)
{
    h_events ev;
    h_events_init(&ev);
    ciot_config *cfg = tls_config("localhost", "ca.crt", "device1.crt", "device1.key");
    /* Connect to localhost but expect the name of another host. */
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TLS_SNI, "other.example"), 0);
    int err = first_error(cfg, &ev);
    ciot_config_free(cfg);
    cr_assert_eq(err, CIOT_ETLS);
    cr_assert(strstr(ev.error_text, "host name mismatch") != NULL, "%s", ev.error_text);
}

Test(client_tls, setup_errors_name_the_file_and_the_cause)
{
    ciot_client *c = NULL;
    ciot_config *cfg = tls_config("localhost", "ca.crt", "device1.crt", NULL);
    cr_assert_eq(ciot_client_new(&c, cfg), CIOT_EINVAL);
    cr_assert(strstr(ciot_config_errmsg(cfg), "KEY_FILE") != NULL, "%s", ciot_config_errmsg(cfg));
    ciot_config_free(cfg);

    cfg = tls_config("localhost", "ca.crt", "device1.crt", "device2.key");
    cr_assert_eq(ciot_client_new(&c, cfg), CIOT_ETLS);
    cr_assert(strstr(ciot_config_errmsg(cfg), "does not match the certificate") != NULL, "%s",
              ciot_config_errmsg(cfg));
    ciot_config_free(cfg);

    cfg = tls_config("localhost", NULL, "device1.crt", "device1.key");
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_TLS_CA_FILE, "/nonexistent/ca.pem"), 0);
    cr_assert_eq(ciot_client_new(&c, cfg), CIOT_ETLS);
    cr_assert(strstr(ciot_config_errmsg(cfg), "unreadable") != NULL, "%s", ciot_config_errmsg(cfg));
    ciot_config_free(cfg);

    /* A key file given as the CA file: readable, but no certificate in it. */
    cfg = tls_config("localhost", "device1.key", "device1.crt", "device1.key");
    cr_assert_eq(ciot_client_new(&c, cfg), CIOT_ETLS);
    cr_assert(strstr(ciot_config_errmsg(cfg), "no usable certificate") != NULL, "%s",
              ciot_config_errmsg(cfg));
    ciot_config_free(cfg);
    cr_assert_null(c);
}

Test(client_tls, a_refused_port_is_reported_at_once_without_spinning)
{
    h_events ev;
    h_events_init(&ev);
    ciot_config *cfg = tls_config("localhost", "ca.crt", "device1.crt", "device1.key");
    int port = broker.tls_port;
    test_broker_stop(&broker); /* nothing listens there now */
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PORT, port), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_RECONNECT_BASE_MS, 150), 0);
    ciot_client *c = h_client(cfg, &ev);
    ciot_config_free(cfg);
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    uint64_t t0 = h_now_ms();
    cr_assert_eq(ciot_client_connect(c), 0);
    struct h_count_arg err = {&ev, 1};
    cr_assert(h_run_until(c, h_errors_at_least, &err, 5000));
    cr_assert_eq(ev.last_error, CIOT_ECONNREFUSED, "%s: %s", ciot_err_name(ev.last_error), ev.error_text);
    cr_assert_lt(h_now_ms() - t0, 3000, "long before the 10 s connect timeout");
    cr_assert_eq(ciot_client_run(c, 1000), 0); /* retries with backoff meanwhile */
    getrusage(RUSAGE_SELF, &r1);
    double cpu = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
                 (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec + r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
    double wall = (double)(h_now_ms() - t0) / 1000.0;
    cr_assert_lt(cpu, 0.5 * wall * h_scale() + 0.2 / h_scale(), "%.2f s of CPU in %.2f s: the loop spins", cpu, wall);
    cr_assert_eq(ciot_client_disconnect(c), 0);
    cr_assert_eq(ciot_client_free(c), 0);
    start_tls(); /* for .fini */
}

Test(client_tls, a_tls_client_never_speaks_plain_mqtt)
{
    /* The plain listener of another broker: the TLS client must fail, not talk MQTT. */
    test_broker plain;
    test_broker_opts o = {.max_queued = 0};
    cr_assert_eq(test_broker_start(&plain, &o), 0);
    h_events ev;
    h_events_init(&ev);
    ciot_config *cfg = tls_config("localhost", "ca.crt", "device1.crt", "device1.key");
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PORT, plain.port), 0);
    int err = first_error(cfg, &ev);
    ciot_config_free(cfg);
    cr_assert(err == CIOT_ETLS || err == CIOT_ECONNLOST, "%s: %s", ciot_err_name(err), ev.error_text);
    cr_assert_eq(ev.connected, 0);
    test_broker_stop(&plain);
}
