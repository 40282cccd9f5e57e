/* ciot_client against a real mosquitto broker on loopback (plain TCP and
 * passwords). TLS is in test_client_tls.c, faults in tests/fault/. */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static test_broker broker;

static void start_plain(void)
{
    test_broker_opts o = {.max_queued = 0};
    cr_assert_eq(test_broker_start(&broker, &o), 0, "the broker fixture did not start");
}

static void stop_broker(void)
{
    test_broker_stop(&broker);
}

/* A handler that records the payloads it sees. */
typedef struct inbox {
    pthread_mutex_t lock;
    int n;
    char order[128]; /* payloads received, comma-separated (short payloads) */
    char last_topic[128];
    char last_payload[256];
    uint8_t *seen; /* seen[i] counts message "i" */
    size_t nseen;
    int dups;
} inbox;

static int on_msg(ciot_client *c, const ciot_event *m, void *ud)
{
    (void)c;
    inbox *in = ud;
    size_t tl, pl;
    const char *t = ciot_event_topic(m, &tl);
    const char *p = ciot_event_payload(m, &pl);
    pthread_mutex_lock(&in->lock);
    in->n++;
    snprintf(in->last_topic, sizeof in->last_topic, "%.*s", (int)tl, t);
    snprintf(in->last_payload, sizeof in->last_payload, "%.*s", (int)pl, p);
    size_t ol = strlen(in->order);
    if (pl < 8 && ol + pl + 2 < sizeof in->order)
        snprintf(in->order + ol, sizeof in->order - ol, "%s%.*s", ol ? "," : "", (int)pl, p);
    if (in->seen) {
        char buf[32];
        snprintf(buf, sizeof buf, "%.*s", (int)(pl < 31 ? pl : 31), p);
        size_t i = strtoul(buf, NULL, 10);
        if (i < in->nseen) {
            if (in->seen[i])
                in->dups++;
            if (in->seen[i] < 255)
                in->seen[i]++;
        }
    }
    pthread_mutex_unlock(&in->lock);
    return 0;
}

struct inbox_want {
    inbox *in;
    int n;
};

static bool inbox_has(void *arg)
{
    struct inbox_want *w = arg;
    pthread_mutex_lock(&w->in->lock);
    bool ok = w->in->n >= w->n;
    pthread_mutex_unlock(&w->in->lock);
    return ok;
}

TestSuite(client, .init = start_plain, .fini = stop_broker, .timeout = 120);

Test(client, connects_subscribes_publishes_and_receives_its_own_message)
{
    h_events ev;
    h_events_init(&ev);
    ciot_config *cfg = h_config(&broker, "itest-1");
    ciot_client *c = h_client(cfg, &ev);
    ciot_config_free(cfg);
    inbox in = {.lock = PTHREAD_MUTEX_INITIALIZER};

    cr_assert_eq(ciot_client_subscribe(c, "t/+/x", 5, 1, on_msg, &in), 0);
    cr_assert_eq(ciot_client_connect(c), 0);
    cr_assert(h_run_until(c, h_is_connected, c, 5000), "no CONNACK: %s", ciot_client_errmsg(c));
    struct h_count_arg sub = {&ev, 1};
    cr_assert(h_run_until(c, (h_pred)h_subscribed_at_least, &sub, 5000), "no SUBACK");

    uint64_t id = 0;
    cr_assert_eq(ciot_client_publish(&id, c, "t/a/x", 5, "hello", 5, 1, 0), 0);
    cr_assert_gt(id, 0);
    struct inbox_want w = {&in, 1};
    cr_assert(h_run_until(c, inbox_has, &w, 5000), "message not received");
    cr_assert_str_eq(in.last_topic, "t/a/x");
    cr_assert_str_eq(in.last_payload, "hello");
    struct h_count_arg acked = {&ev, 1};
    cr_assert(h_run_until(c, h_acked_at_least, &acked, 5000), "no PUBACK event");
    cr_assert_eq(ev.connected, 1);
    cr_assert_eq(ev.messages, 0, "a handled message must not reach the event callback");
    cr_assert_eq(ciot_client_queued(c), 0);
    cr_assert_eq(ciot_client_disconnect(c), 0);
    cr_assert_not(ciot_client_is_connected(c));
    cr_assert_eq(ciot_client_free(c), 0);
}

Test(client, overlapping_filters_each_get_the_message_once)
{
    h_events ev;
    h_events_init(&ev);
    ciot_config *cfg = h_config(&broker, "itest-overlap");
    ciot_client *c = h_client(cfg, &ev);
    ciot_config_free(cfg);
    inbox a = {.lock = PTHREAD_MUTEX_INITIALIZER}, b = {.lock = PTHREAD_MUTEX_INITIALIZER},
          d = {.lock = PTHREAD_MUTEX_INITIALIZER};
    cr_assert_eq(ciot_client_subscribe(c, "s/#", 3, 1, on_msg, &a), 0);
    cr_assert_eq(ciot_client_subscribe(c, "s/+/t", 5, 1, on_msg, &b), 0);
    cr_assert_eq(ciot_client_subscribe(c, "s/#", 3, 1, on_msg, &d), 0, "second handler, same filter");
    cr_assert_eq(ciot_client_subscribe(c, "s/#", 3, 1, on_msg, &d), CIOT_EEXIST);
    cr_assert_eq(ciot_client_connect(c), 0);
    struct h_count_arg sub = {&ev, 2};
    cr_assert(h_run_until(c, (h_pred)h_subscribed_at_least, &sub, 5000), "no SUBACKs");
    cr_assert_eq(ciot_client_publish(NULL, c, "s/1/t", 5, "1", 1, 1, 0), 0);
    cr_assert_eq(ciot_client_publish(NULL, c, "s/2", 3, "2", 1, 1, 0), 0);
    struct inbox_want w = {&a, 2};
    cr_assert(h_run_until(c, inbox_has, &w, 5000));
    struct h_count_arg acked = {&ev, 2};
    cr_assert(h_run_until(c, h_acked_at_least, &acked, 5000));
    cr_assert_eq(ciot_client_run(c, 100), 0);
    cr_assert_eq(a.n, 2);
    cr_assert_eq(b.n, 1);
    cr_assert_eq(d.n, 2);
    /* Removing one handler keeps the filter for the other. */
    cr_assert_eq(ciot_client_unsubscribe(c, "s/#", 3, on_msg, &a), 0);
    cr_assert_eq(ciot_client_unsubscribe(c, "s/#", 3, on_msg, &a), CIOT_ENOTFOUND);
    cr_assert_eq(ciot_client_publish(NULL, c, "s/3", 3, "3", 1, 1, 0), 0);
    struct inbox_want w2 = {&d, 3};
    cr_assert(h_run_until(c, inbox_has, &w2, 5000));
    cr_assert_eq(a.n, 2);
    cr_assert_eq(ciot_client_free(c), 0);
}

Test(client, bad_arguments_get_clear_errors)
{
    ciot_config *cfg = h_config(&broker, "itest-args");
    ciot_client *c = h_client(cfg, NULL);
    ciot_config_free(cfg);
    cr_assert_eq(ciot_client_publish(NULL, c, "a/+", 3, "x", 1, 1, 0), CIOT_EINVAL);
    cr_assert(strstr(ciot_client_errmsg(c), "topic") != NULL, "%s", ciot_client_errmsg(c));
    cr_assert_eq(ciot_client_publish(NULL, c, "a", 1, "x", 1, 2, 0), CIOT_EINVAL);
    cr_assert(strstr(ciot_client_errmsg(c), "QoS 2") != NULL);
    cr_assert_eq(ciot_client_publish(NULL, c, "a", 1, NULL, 3, 0, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_client_publish(NULL, c, "a", 1, "x", 1, 0, 0x80), CIOT_EINVAL);
    cr_assert_eq(ciot_client_publish(NULL, c, "", 0, "x", 1, 0, 0), CIOT_EINVAL);
    cr_assert_eq(ciot_client_subscribe(c, "a/#/b", 5, 0, on_msg, NULL), CIOT_EINVAL);
    cr_assert_eq(ciot_client_unsubscribe(c, "a", 1, on_msg, NULL), CIOT_ENOTFOUND);
    cr_assert_eq(ciot_client_disconnect(c), CIOT_ENOTCONN);
    cr_assert_eq(ciot_client_stop(c), CIOT_ESTATE);
    cr_assert_eq(ciot_client_free(c), 0);
    cr_assert_eq(ciot_client_free(NULL), 0);
}

Test(client, missing_settings_are_named)
{
    ciot_config *cfg;
    ciot_client *c = NULL;
    cr_assert_eq(ciot_config_new(&cfg), 0);
    cr_assert_eq(ciot_client_new(&c, cfg), CIOT_EINVAL);
    cr_assert(strstr(ciot_config_errmsg(cfg), "CIOT_OPT_HOST") != NULL);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_HOST, "localhost"), 0);
    cr_assert_eq(ciot_client_new(&c, cfg), CIOT_EINVAL);
    cr_assert(strstr(ciot_config_errmsg(cfg), "CIOT_OPT_CLIENT_ID") != NULL);
    cr_assert_null(c);
    ciot_config_free(cfg);
}

Test(client, wrong_password_is_refused_with_its_own_error)
{
    test_broker pw;
    test_broker_opts o = {.passwords = "alice:alice-secret\n", .max_queued = 0};
    cr_assert_eq(test_broker_start(&pw, &o), 0);
    h_events ev;
    h_events_init(&ev);
    ciot_config *cfg = h_config(&pw, "itest-pw");
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PORT, pw.pw_port), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_USERNAME, "alice"), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_PASSWORD, "wrong"), 0);
    ciot_client *c = h_client(cfg, &ev);
    cr_assert_eq(ciot_client_connect(c), 0);
    struct h_count_arg err = {&ev, 1};
    cr_assert(h_run_until(c, h_errors_at_least, &err, 5000), "no error event");
    cr_assert_eq(ev.last_error, CIOT_EAUTH, "got %s: %s", ciot_err_name(ev.last_error), ev.error_text);
    cr_assert(strstr(ev.error_text, "not authorized") != NULL, "%s", ev.error_text);
    cr_assert(strstr(ev.error_text, "wrong") == NULL, "the password must never appear");
    cr_assert_not(ciot_client_is_connected(c));
    cr_assert_eq(ciot_client_free(c), 0);

    /* The right password works. */
    h_events_init(&ev);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_PASSWORD, "alice-secret"), 0);
    c = h_client(cfg, &ev);
    cr_assert_eq(ciot_client_connect(c), 0);
    cr_assert(h_run_until(c, h_is_connected, c, 5000), "%s", ciot_client_errmsg(c));
    cr_assert_eq(ciot_client_free(c), 0);
    ciot_config_free(cfg);
    test_broker_stop(&pw);
}

Test(client, connection_refused_is_retried_with_backoff)
{
    h_events ev;
    h_events_init(&ev);
    ciot_config *cfg = h_config(&broker, "itest-refused");
    /* A port where nothing listens: the fixture's own port after stopping it. */
    int port = broker.port;
    test_broker_stop(&broker);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PORT, port), 0);
    ciot_client *c = h_client(cfg, &ev);
    ciot_config_free(cfg);
    cr_assert_eq(ciot_client_connect(c), 0);
    struct h_count_arg err = {&ev, 3};
    cr_assert(h_run_until(c, h_errors_at_least, &err, 5000), "attempts stopped: %d errors", ev.errors);
    cr_assert(ev.last_error == CIOT_ECONNREFUSED || ev.last_error == CIOT_ECONNLOST, "%s: %s",
              ciot_err_name(ev.last_error), ev.error_text);
    cr_assert_eq(ciot_client_disconnect(c), 0, "stopping the attempts");
    cr_assert_eq(ciot_client_free(c), 0);
    start_plain(); /* for .fini */
}

/* Drops while the broker is down, with each policy: exactly the messages the
 * policy should drop are reported, the others arrive in order. */
static void bounded_queue_case(int policy)
{
    h_events ev;
    h_events_init(&ev);
    ciot_config *cfg = h_config(&broker, "itest-queue-pub");
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_QUEUE_MAX_MESSAGES, 5), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_QUEUE_DROP_POLICY, policy), 0);
    ciot_client *c = h_client(cfg, &ev);
    ciot_config_free(cfg);

    /* A receiver on the same broker. */
    h_events rev;
    h_events_init(&rev);
    ciot_config *rcfg = h_config(&broker, "itest-queue-sub");
    ciot_client *r = h_client(rcfg, &rev);
    ciot_config_free(rcfg);
    inbox in = {.lock = PTHREAD_MUTEX_INITIALIZER};
    cr_assert_eq(ciot_client_subscribe(r, "q/#", 3, 1, on_msg, &in), 0);
    cr_assert_eq(ciot_client_connect(r), 0);
    struct h_count_arg sub = {&rev, 1};
    cr_assert(h_run_until(r, (h_pred)h_subscribed_at_least, &sub, 5000));

    /* Not connected: 8 messages into a queue of 5. */
    int refused = 0;
    for (int i = 1; i <= 8; i++) {
        char p[8];
        int n = snprintf(p, sizeof p, "%d", i);
        int rc = ciot_client_publish(NULL, c, "q/m", 3, p, (size_t)n, 1, 0);
        if (rc == CIOT_EQUEUE_FULL)
            refused++;
        else
            cr_assert_eq(rc, 0);
    }
    cr_assert_eq(ciot_client_run(c, 0), 0); /* deliver the drop events */
    if (policy == CIOT_DROP_REFUSE) {
        cr_assert_eq(refused, 3);
        cr_assert_eq(ev.dropped, 0);
    } else {
        cr_assert_eq(refused, 0);
        cr_assert_eq(ev.dropped, 3, "dropped %llu", (unsigned long long)ev.dropped);
        for (int i = 0; i < 3; i++) {
            uint64_t want = policy == CIOT_DROP_OLDEST ? (uint64_t)i + 1 : (uint64_t)i + 6;
            cr_assert_eq(ev.dropped_ids[i], want);
            cr_assert_eq(ev.drop_errors[i], CIOT_EQUEUE_FULL);
        }
    }
    cr_assert_eq(ciot_client_queued(c), 5);
    cr_assert_eq(ciot_client_connect(c), 0);
    struct h_count_arg acked = {&ev, 5};
    cr_assert(h_run_until(c, h_acked_at_least, &acked, 5000), "acked %llu", (unsigned long long)ev.acked);
    struct inbox_want w = {&in, 5};
    cr_assert(h_run_until(r, inbox_has, &w, 5000), "received %d", in.n);
    cr_assert_eq(ciot_client_run(r, 100), 0);
    cr_assert_eq(in.n, 5);
    cr_assert_str_eq(in.order, policy == CIOT_DROP_OLDEST ? "4,5,6,7,8" : "1,2,3,4,5",
                     "the messages that stayed arrive in order");
    cr_assert_eq(ciot_client_free(c), 0);
    cr_assert_eq(ciot_client_free(r), 0);
}

Test(client, bounded_queue_drop_oldest)
{
    bounded_queue_case(CIOT_DROP_OLDEST);
}

Test(client, bounded_queue_drop_newest)
{
    bounded_queue_case(CIOT_DROP_NEWEST);
}

Test(client, bounded_queue_refuse)
{
    bounded_queue_case(CIOT_DROP_REFUSE);
}

static int free_inside(ciot_client *c, const ciot_event *ev, void *ud)
{
    int *rc = ud;
    if (ciot_event_type_of(ev) == CIOT_EVENT_CONNECTED) {
        *rc = ciot_client_free(c);
        rc[1] = ciot_client_process(c, 0);
        rc[2] = ciot_client_disconnect(c);
    }
    return 0;
}

Test(client, freeing_from_its_own_callback_is_refused)
{
    ciot_config *cfg = h_config(&broker, "itest-recursive");
    ciot_client *c = h_client(cfg, NULL);
    ciot_config_free(cfg);
    int rc[3] = {1, 1, 1};
    ciot_client_set_event_callback(c, free_inside, rc);
    cr_assert_eq(ciot_client_connect(c), 0);
    cr_assert(h_run_until(c, h_is_connected, c, 5000));
    cr_assert_eq(ciot_client_run(c, 50), 0);
    cr_assert_eq(rc[0], CIOT_ERECURSIVE);
    cr_assert_eq(rc[1], CIOT_ERECURSIVE);
    cr_assert_eq(rc[2], CIOT_ERECURSIVE);
    cr_assert_eq(ciot_client_free(c), 0);
}

/* Four threads publish at once while the client's own thread drives it. */
struct pub_arg {
    ciot_client *c;
    int thread, count;
    int failures;
};

static void *publisher(void *arg)
{
    struct pub_arg *a = arg;
    for (int i = 0; i < a->count; i++) {
        char p[32];
        int n = snprintf(p, sizeof p, "%d", a->thread * a->count + i);
        if (ciot_client_publish(NULL, a->c, "mt/x", 4, p, (size_t)n, 1, 0) != 0)
            a->failures++;
    }
    return NULL;
}

static bool all_seen(void *arg)
{
    inbox *in = arg;
    pthread_mutex_lock(&in->lock);
    size_t distinct = 0;
    for (size_t i = 0; i < in->nseen; i++)
        distinct += in->seen[i] != 0;
    pthread_mutex_unlock(&in->lock);
    return distinct == in->nseen;
}

Test(client, four_threads_publish_while_the_client_thread_drives)
{
    int per = (int)h_scaled(2500, 50);
    h_events ev;
    h_events_init(&ev);
    ciot_config *cfg = h_config(&broker, "itest-mt-pub");
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_QUEUE_MAX_MESSAGES, 4 * per), 0);
    ciot_client *c = h_client(cfg, &ev);
    ciot_config_free(cfg);

    h_events rev;
    h_events_init(&rev);
    ciot_config *rcfg = h_config(&broker, "itest-mt-sub");
    ciot_client *r = h_client(rcfg, &rev);
    ciot_config_free(rcfg);
    inbox in = {.lock = PTHREAD_MUTEX_INITIALIZER};
    in.nseen = (size_t)(4 * per);
    in.seen = calloc(in.nseen, 1);
    cr_assert_eq(ciot_client_subscribe(r, "mt/#", 4, 1, on_msg, &in), 0);
    cr_assert_eq(ciot_client_connect(r), 0);
    cr_assert_eq(ciot_client_start(r), 0, "receiver in thread mode too");
    struct h_count_arg sub = {&rev, 1};
    cr_assert(h_wait_until(h_subscribed_at_least, &sub, 5000));

    cr_assert_eq(ciot_client_connect(c), 0);
    cr_assert_eq(ciot_client_start(c), 0);
    cr_assert_eq(ciot_client_start(c), CIOT_ESTATE);
    cr_assert(h_wait_until(h_is_connected, c, 5000));
    pthread_t th[4];
    struct pub_arg args[4];
    for (int t = 0; t < 4; t++) {
        args[t] = (struct pub_arg){c, t, per, 0};
        pthread_create(&th[t], NULL, publisher, &args[t]);
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
        cr_assert_eq(args[t].failures, 0);
    }
    struct h_count_arg acked = {&ev, (uint64_t)(4 * per)};
    cr_assert(h_wait_until(h_acked_at_least, &acked, 60000), "acked %llu of %d",
              (unsigned long long)ev.acked, 4 * per);
    cr_assert(h_wait_until(all_seen, &in, 60000), "not every message arrived");
    cr_assert_eq(ciot_client_disconnect(c), 0);
    cr_assert_eq(ciot_client_stop(c), 0);
    cr_assert_eq(ciot_client_free(c), 0);
    cr_assert_eq(ciot_client_free(r), 0, "free stops the thread too");
    cr_assert_eq(ev.dropped, 0);
    free(in.seen);
}

Test(client, external_loop_driven_by_poll)
{
    h_events ev;
    h_events_init(&ev);
    ciot_config *cfg = h_config(&broker, "itest-poll");
    ciot_client *c = h_client(cfg, &ev);
    ciot_config_free(cfg);
    inbox in = {.lock = PTHREAD_MUTEX_INITIALIZER};
    cr_assert_eq(ciot_client_subscribe(c, "p/x", 3, 0, on_msg, &in), 0);
    cr_assert_eq(ciot_client_connect(c), 0);
    int fd = ciot_client_fd(c);
    cr_assert_geq(fd, 0);
    int n = (int)h_scaled(1000, 20);
    int sent = 0;
    uint64_t end = h_now_ms() + 20000;
    while (in.n < n && h_now_ms() < end) {
        struct pollfd p = {.fd = ciot_client_fd(c), .events = POLLIN};
        cr_assert_eq(ciot_client_fd(c), fd, "the descriptor stays the same");
        poll(&p, 1, ciot_client_timeout_ms(c));
        cr_assert_eq(ciot_client_process(c, (p.revents & POLLIN) ? CIOT_EV_READ : 0), 0);
        if (ev.subscribed && sent < n && ciot_client_queued(c) < 100) {
            char b[16];
            int len = snprintf(b, sizeof b, "%d", sent++);
            cr_assert_eq(ciot_client_publish(NULL, c, "p/x", 3, b, (size_t)len, 1, 0), 0);
        }
    }
    cr_assert_eq(in.n, n, "received %d of %d", in.n, n);
    cr_assert_eq(ciot_client_free(c), 0);
}

static bool reconnected_twice(void *arg)
{
    h_events *e = arg;
    return e->connected >= 2 && e->subscribed >= 2;
}

Test(client, subscriptions_are_restored_after_a_broker_restart)
{
    h_events ev;
    h_events_init(&ev);
    ciot_config *cfg = h_config(&broker, "itest-restore");
    ciot_client *c = h_client(cfg, &ev);
    ciot_config_free(cfg);
    inbox in = {.lock = PTHREAD_MUTEX_INITIALIZER};
    cr_assert_eq(ciot_client_subscribe(c, "r/#", 3, 1, on_msg, &in), 0);
    cr_assert_eq(ciot_client_connect(c), 0);
    struct h_count_arg sub = {&ev, 1};
    cr_assert(h_run_until(c, (h_pred)h_subscribed_at_least, &sub, 5000));
    cr_assert_eq(test_broker_kill9(&broker), 0);
    cr_assert_eq(test_broker_restart(&broker), 0);
    cr_assert(h_run_until(c, reconnected_twice, &ev, 10000), "connected %d, subscribed %d: %s",
              ev.connected, ev.subscribed, ev.error_text);
    cr_assert_eq(ev.disconnected, 1);
    cr_assert_not(ev.last_session_present, "a broker without persistence kept no session");
    cr_assert_eq(ciot_client_publish(NULL, c, "r/1", 3, "after", 5, 1, 0), 0);
    struct inbox_want w = {&in, 1};
    cr_assert(h_run_until(c, inbox_has, &w, 5000), "the subscription was not restored");
    cr_assert_eq(ciot_client_free(c), 0);
}

Test(client, mqtt5_session_works)
{
    h_events ev;
    h_events_init(&ev);
    ciot_config *cfg = h_config(&broker, "itest-v5");
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PROTOCOL, 5), 0);
    ciot_client *c = h_client(cfg, &ev);
    ciot_config_free(cfg);
    inbox in = {.lock = PTHREAD_MUTEX_INITIALIZER};
    cr_assert_eq(ciot_client_subscribe(c, "v5/#", 4, 1, on_msg, &in), 0);
    cr_assert_eq(ciot_client_connect(c), 0);
    struct h_count_arg sub = {&ev, 1};
    cr_assert(h_run_until(c, (h_pred)h_subscribed_at_least, &sub, 5000), "%s", ciot_client_errmsg(c));
    cr_assert_eq(ciot_client_publish(NULL, c, "v5/a", 4, "five", 4, 1, 0), 0);
    struct inbox_want w = {&in, 1};
    cr_assert(h_run_until(c, inbox_has, &w, 5000));
    cr_assert_str_eq(in.last_payload, "five");
    cr_assert_eq(ciot_client_free(c), 0);
}

/* A listener that accepts and never answers: the connect timeout must fire. */
Test(client, connect_timeout_fires_when_the_broker_never_answers)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    cr_assert_eq(bind(ls, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(ls, 4), 0);
    cr_assert_eq(getsockname(ls, (struct sockaddr *)&a, &len), 0);

    h_events ev;
    h_events_init(&ev);
    ciot_config *cfg = h_config(&broker, "itest-timeout");
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PORT, ntohs(a.sin_port)), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_CONNECT_TIMEOUT_MS, 300), 0);
    ciot_client *c = h_client(cfg, &ev);
    ciot_config_free(cfg);
    uint64_t t0 = h_now_ms();
    cr_assert_eq(ciot_client_connect(c), 0);
    struct h_count_arg err = {&ev, 1};
    cr_assert(h_run_until(c, h_errors_at_least, &err, 5000), "no timeout reported");
    uint64_t took = h_now_ms() - t0;
    cr_assert_eq(ev.last_error, CIOT_ETIMEDOUT, "%s: %s", ciot_err_name(ev.last_error), ev.error_text);
    cr_assert(strstr(ev.error_text, "timed out after 300 ms") != NULL, "%s", ev.error_text);
    cr_assert(took >= 290 && took < 3000, "took %llu ms", (unsigned long long)took);
    cr_assert_eq(ciot_client_disconnect(c), 0);
    cr_assert_eq(ciot_client_free(c), 0);
    close(ls);
}

/* With a journal, QoS 1 messages outlive the client that accepted them; those
 * the queue policy dropped do not come back, QoS 0 ones are not kept. */
Test(client, journal_keeps_unsent_qos1_messages_for_the_next_client)
{
    char dir[] = "/tmp/ciot-itest-journal-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    h_events ev;
    h_events_init(&ev);
    ciot_config *cfg = h_config(&broker, "itest-journal");
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_PERSIST_DIR, dir), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PERSIST_SYNC, CIOT_SYNC_ALWAYS), 0);
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_QUEUE_MAX_MESSAGES, 4), 0);
    ciot_client *c = h_client(cfg, &ev);
    /* Offline: 6 QoS 1 messages into a queue of 4 (1 and 2 are dropped), one QoS 0. */
    for (int i = 1; i <= 6; i++) {
        char p[8];
        int n = snprintf(p, sizeof p, "%d", i);
        cr_assert_eq(ciot_client_publish(NULL, c, "j/m", 3, p, (size_t)n, 1, 0), 0);
    }
    cr_assert_eq(ciot_client_publish(NULL, c, "j/m", 3, "q0", 2, 0, 0), 0); /* drops 3 */
    cr_assert_eq(ciot_client_run(c, 0), 0);
    cr_assert_eq(ev.dropped, 3);
    cr_assert_eq(ciot_client_free(c), 0);
    cr_assert_eq(ev.dropped, 4, "the QoS 0 message is reported when the client goes");
    cr_assert_eq(ev.drop_errors[3], CIOT_ESTATE);

    /* A receiver, then the next client on the same journal. */
    h_events rev;
    h_events_init(&rev);
    ciot_config *rcfg = h_config(&broker, "itest-journal-sub");
    ciot_client *r = h_client(rcfg, &rev);
    ciot_config_free(rcfg);
    inbox in = {.lock = PTHREAD_MUTEX_INITIALIZER};
    cr_assert_eq(ciot_client_subscribe(r, "j/#", 3, 1, on_msg, &in), 0);
    cr_assert_eq(ciot_client_connect(r), 0);
    struct h_count_arg sub = {&rev, 1};
    cr_assert(h_run_until(r, (h_pred)h_subscribed_at_least, &sub, 5000));

    h_events_init(&ev);
    c = h_client(cfg, &ev);
    ciot_config_free(cfg);
    cr_assert_eq(ciot_client_queued(c), 3, "4, 5 and 6 come back from the journal");
    cr_assert_eq(ciot_client_connect(c), 0);
    struct h_count_arg acked = {&ev, 3};
    cr_assert(h_run_until(c, h_acked_at_least, &acked, 5000));
    struct inbox_want w = {&in, 3};
    cr_assert(h_run_until(r, inbox_has, &w, 5000), "received %d", in.n);
    cr_assert_eq(ciot_client_run(r, 100), 0);
    cr_assert_eq(in.n, 3);
    cr_assert_str_eq(in.last_payload, "6");
    cr_assert_eq(ciot_client_free(c), 0);
    cr_assert_eq(ciot_client_free(r), 0);

    /* Everything was acknowledged: a third client finds nothing to send. */
    cfg = h_config(&broker, "itest-journal");
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_PERSIST_DIR, dir), 0);
    c = h_client(cfg, NULL);
    ciot_config_free(cfg);
    cr_assert_eq(ciot_client_queued(c), 0);
    /* and its new messages get new ids, after every id the journal held */
    uint64_t id = 0;
    cr_assert_eq(ciot_client_publish(&id, c, "j/m", 3, "new", 3, 1, 0), 0, "%s", ciot_client_errmsg(c));
    cr_assert_gt(id, 6, "after the ids the journal held (1..6)");
    cr_assert_eq(ciot_client_free(c), 0);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static int reconnect_on_disconnect(ciot_client *c, const ciot_event *ev, void *ud)
{
    int *seen = ud;
    if (ciot_event_type_of(ev) == CIOT_EVENT_DISCONNECTED) {
        seen[0]++;
        seen[1] = ciot_event_error(ev);
        seen[2] = ciot_client_connect(c); /* a common reflex: must be refused, not crash */
        seen[3] = ciot_client_publish(NULL, c, "x", 1, "y", 1, 1, 0);
    }
    return 0;
}

Test(client, free_reports_the_end_as_asked_for_and_refuses_new_work)
{
    ciot_config *cfg = h_config(&broker, "itest-free");
    ciot_client *c = h_client(cfg, NULL);
    ciot_config_free(cfg);
    int seen[4] = {0, -1, 0, 0};
    ciot_client_set_event_callback(c, reconnect_on_disconnect, seen);
    cr_assert_eq(ciot_client_connect(c), 0);
    cr_assert(h_run_until(c, h_is_connected, c, 5000));
    cr_assert_eq(ciot_client_free(c), 0);
    cr_assert_eq(seen[0], 1, "one DISCONNECTED event");
    cr_assert_eq(seen[1], 0, "an end the user asked for has no error");
    cr_assert_eq(seen[2], CIOT_ESTATE);
    cr_assert_eq(seen[3], CIOT_ESTATE);
}

static void *publish_ten(void *arg)
{
    ciot_client *c = arg;
    for (int i = 0; i < 10; i++)
        if (ciot_client_publish(NULL, c, "stop/x", 6, "m", 1, 1, 0) != 0)
            return (void *)1;
    return NULL;
}

Test(client, after_stop_other_threads_only_queue_until_someone_drives)
{
    h_events ev;
    h_events_init(&ev);
    ciot_config *cfg = h_config(&broker, "itest-stop");
    ciot_client *c = h_client(cfg, &ev);
    ciot_config_free(cfg);
    cr_assert_eq(ciot_client_connect(c), 0);
    cr_assert_eq(ciot_client_start(c), 0);
    cr_assert(h_wait_until(h_is_connected, c, 5000));
    cr_assert_eq(ciot_client_stop(c), 0);
    cr_assert(ciot_client_is_connected(c), "stopping the thread keeps the session");
    pthread_t t;
    void *ret = (void *)2;
    pthread_create(&t, NULL, publish_ten, c);
    pthread_join(t, &ret);
    cr_assert_null(ret);
    cr_assert_eq(ciot_client_queued(c), 10, "nobody drives: the messages wait");
    struct h_count_arg acked = {&ev, 10};
    cr_assert(h_run_until(c, h_acked_at_least, &acked, 5000), "this thread now drives");
    cr_assert_eq(ciot_client_queued(c), 0);
    cr_assert_eq(ciot_client_free(c), 0);
}

/* The fixture's ACL file: what a user may not publish never reaches anyone
 * (mosquitto with MQTT 3.1.1 still answers PUBACK and drops the message). */
Test(client, broker_acl_is_applied_per_user)
{
    test_broker pw;
    test_broker_opts o = {.passwords = "alice:alice-secret\nbob:bob-secret\n",
                          .acl = "user alice\ntopic write allowed/#\n\nuser bob\ntopic read #\n",
                          .max_queued = 0};
    cr_assert_eq(test_broker_start(&pw, &o), 0);
    h_events bev;
    h_events_init(&bev);
    ciot_config *cfg = h_config(&pw, "itest-acl-bob");
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PORT, pw.pw_port), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_USERNAME, "bob"), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_PASSWORD, "bob-secret"), 0);
    ciot_client *bob = h_client(cfg, &bev);
    ciot_config_free(cfg);
    inbox in = {.lock = PTHREAD_MUTEX_INITIALIZER};
    cr_assert_eq(ciot_client_subscribe(bob, "#", 1, 1, on_msg, &in), 0);
    cr_assert_eq(ciot_client_connect(bob), 0);
    struct h_count_arg sub = {&bev, 1};
    cr_assert(h_run_until(bob, (h_pred)h_subscribed_at_least, &sub, 5000), "%s", bev.error_text);

    h_events aev;
    h_events_init(&aev);
    cfg = h_config(&pw, "itest-acl-alice");
    cr_assert_eq(ciot_config_set_int(cfg, CIOT_OPT_PORT, pw.pw_port), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_USERNAME, "alice"), 0);
    cr_assert_eq(ciot_config_set_str(cfg, CIOT_OPT_PASSWORD, "alice-secret"), 0);
    ciot_client *alice = h_client(cfg, &aev);
    ciot_config_free(cfg);
    cr_assert_eq(ciot_client_connect(alice), 0);
    cr_assert(h_run_until(alice, h_is_connected, alice, 5000), "%s", ciot_client_errmsg(alice));
    cr_assert_eq(ciot_client_publish(NULL, alice, "denied/x", 8, "no", 2, 1, 0), 0);
    cr_assert_eq(ciot_client_publish(NULL, alice, "allowed/x", 9, "yes", 3, 1, 0), 0);
    struct h_count_arg acked = {&aev, 2};
    cr_assert(h_run_until(alice, h_acked_at_least, &acked, 5000), "both are acknowledged");
    struct inbox_want w = {&in, 1};
    cr_assert(h_run_until(bob, inbox_has, &w, 5000));
    cr_assert_eq(ciot_client_run(bob, 200), 0);
    cr_assert_eq(in.n, 1, "only the allowed message arrives");
    cr_assert_str_eq(in.last_topic, "allowed/x");
    cr_assert_geq(test_broker_log_count(&pw, "Denied PUBLISH"), 1, "the broker says why");
    cr_assert_eq(ciot_client_free(alice), 0);
    cr_assert_eq(ciot_client_free(bob), 0);
    test_broker_stop(&pw);
}

static int count_connects(ciot_client *c, const ciot_event *ev, void *ud)
{
    (void)c;
    if (ciot_event_type_of(ev) == CIOT_EVENT_CONNECTED)
        ++*(int *)ud;
    return 0;
}

/* The descriptors of this process that are TCP sockets to @p port, in @p fds
 * (at most @p cap); returns how many. */
static int sockets_to(int port, int *fds, int cap)
{
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d);
    int n = 0, dfd = dirfd(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        int fd = atoi(de->d_name);
        if (de->d_name[0] == '.' || fd == dfd)
            continue;
        struct sockaddr_in peer;
        socklen_t pl = sizeof peer;
        if (getpeername(fd, (struct sockaddr *)&peer, &pl) == 0 && peer.sin_family == AF_INET &&
            ntohs(peer.sin_port) == port && n < cap)
            fds[n++] = fd;
    }
    closedir(d);
    return n;
}

/* A child that holds every descriptor of the connection to the broker (as
 * a child forked without exec does) and nothing else, until killed. */
static pid_t hold_sockets(int port)
{
    int keep[16];
    int n = sockets_to(port, keep, 16);
    cr_assert_geq(n, 1, "no socket to the broker");
    pid_t kid = fork();
    cr_assert_geq(kid, 0);
    if (kid == 0) {
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (int fd = 3; fd < 1024; fd++) {
            bool held = false;
            for (int i = 0; i < n; i++)
                held |= keep[i] == fd;
            if (!held)
                close(fd);
        }
        sleep(60);
        _exit(0);
    }
    return kid;
}

/* After the broker came back, nothing is pending in the client's descriptor:
 * a dead socket left in its epoll set would keep it readable (a busy loop)
 * and, when its number came back, shut the new connection at once. */
static void assert_quiet(ciot_client *c)
{
    struct pollfd p = {.fd = ciot_client_fd(c), .events = POLLIN};
    int ready = 0;
    for (int i = 0; i < 3 && (ready = poll(&p, 1, 200)) > 0; i++)
        cr_assert_eq(ciot_client_process(c, 0), 0); /* legitimate traffic: once */
    cr_assert_eq(ready, 0, "the client's descriptor stays readable (events 0x%x)",
                 (unsigned)p.revents);
}

/* The broker dies and comes back while nobody drives the client: once
 * driven again, it notices the loss, reconnects once and stays connected
 * (it used to take the new connection and drop it at once, in a loop), and
 * its descriptor is quiet (the restarted broker inherited the dead socket,
 * which stayed in the client's epoll set, readable for ever: a busy loop). */
Test(client, a_broker_restarted_while_the_client_is_not_driven_is_reconnected_once)
{
    ciot_config *cfg = h_config(&broker, "itest-undriven");
    ciot_client *c = NULL;
    cr_assert_eq(ciot_client_new(&c, cfg), 0);
    ciot_config_free(cfg);
    int connects = 0;
    ciot_client_set_event_callback(c, count_connects, &connects);
    cr_assert_eq(ciot_client_connect(c), 0);
    cr_assert(h_run_until(c, h_is_connected, c, 10000));
    cr_assert_eq(test_broker_kill9(&broker), 0);
    cr_assert_eq(test_broker_restart(&broker), 0);
    uint64_t end = h_now_ms() + 3000;
    while (h_now_ms() < end)
        cr_assert_eq(ciot_client_run(c, 10), 0);
    cr_assert(ciot_client_is_connected(c), "%s", ciot_client_errmsg(c));
    cr_assert_eq(connects, 2, "connected %d times", connects);
    assert_quiet(c);
    cr_assert_eq(ciot_client_free(c), 0);
}

/* The connection's socket outlives libmosquitto's close of it in another
 * process (a child forked without exec holds it), and the client was not
 * driven while the broker died with messages for it on the wire: once
 * driven it reads one, answers on the dead connection (which resets it),
 * then reconnects. It used to keep the dead socket in its epoll set under
 * a number the new socket then got, take the dead one's hang-up for the new
 * connection's and shut every new connection at once, in a loop. */
Test(client, a_socket_held_by_a_child_process_does_not_break_the_reconnect)
{
    h_events ev;
    h_events_init(&ev);
    ciot_config *cfg = h_config(&broker, "itest-held");
    ciot_client *c = h_client(cfg, &ev);
    ciot_config_free(cfg);
    inbox in = {.lock = PTHREAD_MUTEX_INITIALIZER};
    cr_assert_eq(ciot_client_subscribe(c, "held/#", 6, 1, on_msg, &in), 0);
    cr_assert_eq(ciot_client_connect(c), 0);
    cr_assert(h_run_until(c, h_is_connected, c, 5000), "%s", ciot_client_errmsg(c));
    struct h_count_arg sub = {&ev, 1};
    cr_assert(h_run_until(c, (h_pred)h_subscribed_at_least, &sub, 5000), "no SUBACK");
    pid_t kid = hold_sockets(broker.port);

    /* messages reach the subscriber's socket while nobody reads it */
    h_events pev;
    h_events_init(&pev);
    cfg = h_config(&broker, "itest-held-pub");
    ciot_client *pub = h_client(cfg, &pev);
    ciot_config_free(cfg);
    cr_assert_eq(ciot_client_connect(pub), 0);
    cr_assert(h_run_until(pub, h_is_connected, pub, 5000));
    for (int i = 0; i < 3; i++)
        cr_assert_eq(ciot_client_publish(NULL, pub, "held/x", 6, "m", 1, 1, 0), 0);
    struct h_count_arg acked = {&pev, 3};
    cr_assert(h_run_until(pub, h_acked_at_least, &acked, 5000), "no PUBACK");
    cr_assert_eq(ciot_client_free(pub), 0);
    nanosleep(&(struct timespec){.tv_nsec = 100 * 1000000L}, NULL);

    cr_assert_eq(test_broker_kill9(&broker), 0);
    cr_assert_eq(test_broker_restart(&broker), 0);
    uint64_t end = h_now_ms() + 3000;
    while (h_now_ms() < end)
        cr_assert_eq(ciot_client_run(c, 10), 0);
    kill(kid, SIGKILL);
    waitpid(kid, NULL, 0);
    cr_assert(ciot_client_is_connected(c), "%s", ciot_client_errmsg(c));
    cr_assert_eq(ev.connected, 2, "connected %d times", ev.connected);
    cr_assert_eq(ev.disconnected, 1, "disconnected %d times", ev.disconnected);
    assert_quiet(c);
    /* the new session works */
    int before = in.n;
    cr_assert_eq(ciot_client_publish(NULL, c, "held/y", 6, "n", 1, 1, 0), 0);
    struct inbox_want w = {&in, before + 1};
    cr_assert(h_run_until(c, inbox_has, &w, 5000), "no message on the new session");
    cr_assert_eq(ciot_client_free(c), 0);
}

/* The client's descriptors do not leak into programs the application
 * starts: libmosquitto makes its socket without close-on-exec, and a child
 * holding the connection keeps it open after the client closed it. */
Test(client, the_connection_is_not_inherited_by_programs_the_application_starts)
{
    ciot_config *cfg = h_config(&broker, "itest-cloexec");
    ciot_client *c = h_client(cfg, NULL);
    ciot_config_free(cfg);
    cr_assert_eq(ciot_client_connect(c), 0);
    cr_assert(h_run_until(c, h_is_connected, c, 5000), "%s", ciot_client_errmsg(c));
    int fds[16];
    int n = sockets_to(broker.port, fds, 16);
    cr_assert_geq(n, 1);
    for (int i = 0; i < n; i++) {
        int fl = fcntl(fds[i], F_GETFD);
        cr_assert(fl >= 0 && (fl & FD_CLOEXEC), "descriptor %d is inherited by exec", fds[i]);
    }
    cr_assert_eq(ciot_client_free(c), 0);
    cr_assert_eq(sockets_to(broker.port, fds, 16), 0, "a socket outlived the client");
}
