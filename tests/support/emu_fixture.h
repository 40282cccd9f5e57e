/*
 * The emulator plugin (emulator/) in the broker fixture, for the
 * integration tests that run against it: a data directory per test, the
 * broker started with the plugin, the sanitizer runtimes preloaded into the
 * (uninstrumented) mosquitto in sanitizer builds and their reports about the
 * plugin collected, and writers of the registry files the launcher would
 * write (common.txt's layout) and a runner of the launcher itself.
 *
 * Assertions are Criterion's: call these from inside a test (or its .init).
 * Built by tests/meson.build with the plugin's and the launcher's paths and,
 * in sanitizer builds, CIOT_EMU_PRELOAD (the runtimes to preload).
 */
#ifndef CIOT_TEST_EMU_FIXTURE_H
#define CIOT_TEST_EMU_FIXTURE_H

#include "broker.h"

#include <stdbool.h>
#include <stddef.h>

/* One per test file, zero-initialised (a static). */
typedef struct emu_fixture {
    test_broker broker;
    char data_dir[256];  /* "" when there is none */
    bool broker_up;
    bool skip_leak_check; /* sanitizer builds: no leak check in the broker (set it around a
                             broker that fails to start: mosquitto then exits without freeing
                             its own configuration) */
    char *saved_env_[3];  /* private: environment saved by emu_preload() */
} emu_fixture;

/* The path of the built plugin (for configurations written by hand). */
const char *emu_plugin_path(void);

/* A fresh data directory from a mkdtemp template ("/tmp/ciot-emu-XXXXXX"). */
void emu_data_dir_make(emu_fixture *f, const char *tmpl);
/* Removes it, unless CIOT_TEST_KEEP_BROKER is set (non-empty). */
void emu_data_dir_remove(emu_fixture *f);

/* Sanitizer builds: on, sets LD_PRELOAD and the sanitizer options (reports
 * into the data directory) for the broker about to start; off, restores the
 * environment. Does nothing in other builds. */
void emu_preload(emu_fixture *f, bool on);

/* Starts the broker with "plugin <plugin>\nplugin_opt_data_dir <data_dir>\n"
 * followed by @p plugin_opts (more lines, may be NULL), the TLS listener when
 * @p tls, max_queued -1; asserts that it started. */
void emu_start(emu_fixture *f, bool tls, const char *plugin_opts);
/* test_broker_start() with the preload, without assertion (for brokers
 * expected to fail); does not mark the broker up. */
int emu_broker_start(emu_fixture *f, const test_broker_opts *o);
/* test_broker_restart() with the preload. */
int emu_restart(emu_fixture *f);
/* Stops the broker if it is up (the plugin's cleanup runs). */
void emu_stop(emu_fixture *f);
/* For .fini: stops the broker, removes the data directory. */
void emu_teardown(emu_fixture *f);
/* The end of every test: stops the broker and fails on any sanitizer report
 * in the data directory. (An assertion in .fini would not fail the test.) */
void emu_finish(emu_fixture *f);

/* ---- files ---- */

/* mkdir -p (errors ignored: the writes after it fail loudly). */
void emu_mkdir_p(const char *path);
/* Writes text to path (asserts). */
void emu_write_text(const char *path, const char *text);
/* The contents of a file (at most 16 KiB) in a static buffer (asserts). */
char *emu_slurp(const char *path);

/* ---- the AWS registry, as the launcher writes it (region us-east-1, account 123456789012) ---- */

/* SHA-256 of the certificate's DER, lowercase hex (AWS's certificate id). */
void emu_cert_id(char out[65], const char *pem_path);
/* <data>/registry/policies/<name>.json */
void emu_register_policy(emu_fixture *f, const char *name, const char *document);
/* A test-PKI certificate (tests/pki/<name>.crt) with status ("ACTIVE",
 * "INACTIVE") and at most one policy and one thing (NULL: none). Read at
 * each CONNECT. */
void emu_register_cert(emu_fixture *f, const char *name, const char *status, const char *policy,
                       const char *thing);
/* Removes that certificate's registry file (asserts it was there). */
void emu_unregister_cert(emu_fixture *f, const char *name);
/* <data>/registry/things/<name>.json */
void emu_write_thing(emu_fixture *f, const char *name);

/* ---- the launcher ---- */

/* Runs `cloudiot-emulator <args> --data <data_dir>` (args: a shell fragment
 * built from fmt); its stdout into out (cap bytes, NUL-terminated) when out
 * is not NULL. Returns its exit status (-1 if it did not exit). */
int emu_launcher(emu_fixture *f, char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* What one run of the launcher did. */
typedef struct emu_cli_result {
    int status; /* exit status, or 128 + signal */
    char out[65536];
    char err[8192];
    size_t out_len, err_len;
} emu_cli_result;

/* Runs the launcher with the given arguments (NULL-terminated, no shell),
 * at most 60 s (asserts that it finished); stdout and stderr captured
 * (beyond their buffers, read and dropped). The result is the caller's to
 * free(). */
emu_cli_result *emu_cli_v(const char *const *args);
#define EMU_CLI(...) emu_cli_v((const char *const[]){__VA_ARGS__, NULL})

/* ---- temporary directories ---- */

/* dir (cap bytes) = a fresh directory from a mkdtemp template (asserts). */
void emu_tmp_make(char *dir, size_t cap, const char *tmpl);
/* Removes dir and everything below it (when dir is not ""); dir = "". */
void emu_tmp_remove(char *dir);
/* "dir/name" in one of four rotating static buffers (so that a call can
 * take a few of them as arguments). */
const char *emu_tmp_path(const char *dir, const char *name);

#endif
