/*
 * Test fixture: a real mosquitto broker on free loopback ports, with a
 * generated configuration, stopped (and its directory removed) at the end.
 * Used by the integration and fault tests; never reaches beyond 127.0.0.1.
 */
#ifndef CIOT_TEST_BROKER_H
#define CIOT_TEST_BROKER_H

#include <stdbool.h>
#include <sys/types.h>

typedef struct test_broker_opts {
    bool tls;                 /* a mutual-TLS listener (tls_port) using the test PKI */
    bool tls_no_client_cert;  /* the TLS listener asks for no client certificate */
    const char *passwords;    /* "user:password\n..." -> a listener (pw_port) that requires them */
    const char *acl;          /* text of an ACL file for the TLS and password listeners */
    bool persistence;         /* persistence true, autosave_interval 1, autosave_on_changes true */
    int max_queued;           /* max_queued_messages; -1 leaves mosquitto's default */
    bool unlimited_inflight;  /* max_inflight_messages 0: the broker writes every message to a
                                 subscriber at once instead of holding it back in memory */
    bool nodelay;             /* set_tcp_nodelay true */
    const char *plugin_conf;  /* global lines ("plugin PATH\nplugin_opt_x y"): the broker then runs
                                 with per_listener_settings false and allow_anonymous true, so the
                                 plugin decides who may connect (the TLS listener then does not
                                 set use_identity_as_username, which would bypass the plugin's
                                 authentication); not with acl or passwords */
} test_broker_opts;

typedef struct test_broker {
    char dir[256];     /* scratch directory: config, log, persistence */
    char pki[256];     /* directory of the test PKI (ca.crt, server.*, device1.*, ...) */
    int port;          /* plain listener, anonymous */
    int tls_port;      /* 0 unless opts.tls */
    int pw_port;       /* 0 unless opts.passwords */
    pid_t pid;
} test_broker;

/* Writes the configuration, starts mosquitto, waits until every listener
 * accepts connections (at most 10 s). 0 or -1 (with a message on stderr). */
int test_broker_start(test_broker *b, const test_broker_opts *o);
/* SIGKILL, reaped. */
int test_broker_kill9(test_broker *b);
/* Starts it again with the same configuration and ports. */
int test_broker_restart(test_broker *b);
/* SIGTERM (SIGKILL after 5 s), reaped, directory removed. Safe to call twice. */
void test_broker_stop(test_broker *b);
/* Path of a file of the test PKI, e.g. test_broker_pki(b, "ca.crt"); static buffer. */
const char *test_broker_pki(const test_broker *b, const char *file);
/* Number of lines of the broker's log that contain needle (for asserting refusals). */
int test_broker_log_count(const test_broker *b, const char *needle);

#endif
