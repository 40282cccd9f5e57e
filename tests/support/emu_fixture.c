/* The emulator plugin in the broker fixture: see emu_fixture.h. */
#define _XOPEN_SOURCE 700 /* nftw */

#include "emu_fixture.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CIOT_EMU_PLUGIN
#error "CIOT_EMU_PLUGIN must name the built plugin"
#endif
#ifndef CIOT_TEST_LAUNCHER
#error "CIOT_TEST_LAUNCHER must name the built cloudiot-emulator"
#endif
#ifndef CIOT_TEST_PKI_DIR
#error "CIOT_TEST_PKI_DIR must name the test PKI"
#endif

#define ARN "arn:aws:iot:us-east-1:123456789012:"

const char *emu_plugin_path(void)
{
    return CIOT_EMU_PLUGIN;
}

/* ------------------------------------------------------------ data directory */

void emu_data_dir_make(emu_fixture *f, const char *tmpl)
{
    snprintf(f->data_dir, sizeof f->data_dir, "%s", tmpl);
    cr_assert_not_null(mkdtemp(f->data_dir), "mkdtemp %s", tmpl);
}

void emu_data_dir_remove(emu_fixture *f)
{
    if (!f->data_dir[0])
        return;
    const char *keep = getenv("CIOT_TEST_KEEP_BROKER");
    if (!keep || !*keep) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->data_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", f->data_dir);
    }
    f->data_dir[0] = '\0';
}

/* ------------------------------------------------------------ sanitizers */

void emu_preload(emu_fixture *f, bool on)
{
#ifdef CIOT_EMU_PRELOAD
    static const char *names[3] = {"LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS"};
    if (on) {
        char opts[2][600];
        snprintf(opts[0], sizeof opts[0], "log_path=%s/asan:detect_leaks=%d", f->data_dir,
                 f->skip_leak_check ? 0 : 1);
        snprintf(opts[1], sizeof opts[1], "log_path=%s/ubsan:print_stacktrace=1", f->data_dir);
        const char *vals[3] = {CIOT_EMU_PRELOAD, opts[0], opts[1]};
        for (int i = 0; i < 3; i++) {
            const char *old = getenv(names[i]);
            f->saved_env_[i] = old ? strdup(old) : NULL;
            setenv(names[i], vals[i], 1);
        }
    } else {
        for (int i = 0; i < 3; i++) {
            if (f->saved_env_[i])
                setenv(names[i], f->saved_env_[i], 1);
            else
                unsetenv(names[i]);
            free(f->saved_env_[i]);
            f->saved_env_[i] = NULL;
        }
    }
#else
    (void)f;
    (void)on;
#endif
}

/* Fails on any sanitizer report in the data directory. (A leak report
 * cannot name the plugin: mosquitto has unloaded it by then, its frames
 * show as "<unknown module>"; mosquitto itself reports nothing here.) */
static void check_sanitizer_reports(const emu_fixture *f)
{
#ifdef CIOT_EMU_PRELOAD
    char cmd[600];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && for f in asan.* ubsan.*; do [ -e \"$f\" ] || continue; "
             "cat \"$f\"; exit 1; done; exit 0",
             f->data_dir);
    cr_assert_eq(system(cmd), 0, "a sanitizer reported on the plugin (see above)");
#else
    (void)f;
#endif
}

/* ------------------------------------------------------------ the broker */

int emu_broker_start(emu_fixture *f, const test_broker_opts *o)
{
    emu_preload(f, true);
    int rc = test_broker_start(&f->broker, o);
    emu_preload(f, false);
    return rc;
}

void emu_start(emu_fixture *f, bool tls, const char *plugin_opts)
{
    char conf[4096];
    int n = snprintf(conf, sizeof conf, "plugin %s\nplugin_opt_data_dir %s\n%s", CIOT_EMU_PLUGIN,
                     f->data_dir, plugin_opts ? plugin_opts : "");
    cr_assert(n > 0 && (size_t)n < sizeof conf, "the plugin configuration is too long");
    test_broker_opts o = {.tls = tls, .max_queued = -1, .plugin_conf = conf};
    cr_assert_eq(emu_broker_start(f, &o), 0, "the broker did not start with the plugin");
    f->broker_up = true;
}

int emu_restart(emu_fixture *f)
{
    emu_preload(f, true);
    int rc = test_broker_restart(&f->broker);
    emu_preload(f, false);
    return rc;
}

void emu_stop(emu_fixture *f)
{
    if (f->broker_up)
        test_broker_stop(&f->broker);
    f->broker_up = false;
}

void emu_teardown(emu_fixture *f)
{
    emu_stop(f);
    emu_data_dir_remove(f);
}

void emu_finish(emu_fixture *f)
{
    emu_stop(f);
    check_sanitizer_reports(f);
}

/* ------------------------------------------------------------ files */

void emu_mkdir_p(const char *path)
{
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(tmp, 0755);
            *p = '/';
        }
    }
    mkdir(tmp, 0755);
}

void emu_write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    cr_assert_not_null(fp, "cannot write %s", path);
    cr_assert(fputs(text, fp) >= 0);
    cr_assert_eq(fclose(fp), 0);
}

char *emu_slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    cr_assert_not_null(fp, "%s", path);
    static char buf[16384];
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    return buf;
}

/* ------------------------------------------------------------ the registry */

void emu_cert_id(char out[65], const char *pem_path)
{
    FILE *fp = fopen(pem_path, "r");
    cr_assert_not_null(fp, "%s", pem_path);
    X509 *x = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    cr_assert_not_null(x);
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    cr_assert_gt(n, 0);
    unsigned char md[32];
    unsigned int mdlen = 0;
    cr_assert(EVP_Digest(der, (size_t)n, md, &mdlen, EVP_sha256(), NULL));
    OPENSSL_free(der);
    X509_free(x);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void write_json(const char *dir, const char *name, json_t *doc)
{
    char path[600];
    emu_mkdir_p(dir);
    snprintf(path, sizeof path, "%s/%s.json", dir, name);
    char *text = json_dumps(doc, JSON_COMPACT);
    cr_assert_not_null(text);
    emu_write_text(path, text);
    free(text);
    json_decref(doc);
}

void emu_register_policy(emu_fixture *f, const char *name, const char *document)
{
    char dir[400], arn[300];
    snprintf(dir, sizeof dir, "%s/registry/policies", f->data_dir);
    snprintf(arn, sizeof arn, ARN "policy/%s", name);
    json_t *doc = json_pack("{s:s,s:s,s:s,s:s}", "policyName", name, "policyArn", arn,
                            "policyDocument", document, "policyVersionId", "1");
    cr_assert_not_null(doc);
    write_json(dir, name, doc);
}

void emu_register_cert(emu_fixture *f, const char *name, const char *status, const char *policy,
                       const char *thing)
{
    char pem[300], id[65], dir[400], arn[200];
    snprintf(pem, sizeof pem, "%s/%s.crt", CIOT_TEST_PKI_DIR, name);
    emu_cert_id(id, pem);
    snprintf(arn, sizeof arn, ARN "cert/%s", id);
    json_t *doc = json_pack("{s:s,s:s,s:s,s:s,s:[],s:[],s:i}", "certificateId", id,
                            "certificateArn", arn, "status", status, "certificatePem",
                            emu_slurp(pem), "policies", "things", "creationDate", 1700000000);
    cr_assert_not_null(doc);
    if (policy)
        json_array_append_new(json_object_get(doc, "policies"), json_string(policy));
    if (thing)
        json_array_append_new(json_object_get(doc, "things"), json_string(thing));
    snprintf(dir, sizeof dir, "%s/registry/certificates", f->data_dir);
    write_json(dir, id, doc);
}

void emu_unregister_cert(emu_fixture *f, const char *name)
{
    char pem[300], id[65], path[600];
    snprintf(pem, sizeof pem, "%s/%s.crt", CIOT_TEST_PKI_DIR, name);
    emu_cert_id(id, pem);
    snprintf(path, sizeof path, "%s/registry/certificates/%s.json", f->data_dir, id);
    cr_assert_eq(unlink(path), 0);
}

void emu_write_thing(emu_fixture *f, const char *name)
{
    char dir[400], path[600], text[512];
    snprintf(dir, sizeof dir, "%s/registry/things", f->data_dir);
    emu_mkdir_p(dir);
    snprintf(path, sizeof path, "%s/%s.json", dir, name);
    snprintf(text, sizeof text,
             "{\"thingName\":\"%s\",\"thingArn\":\"" ARN "thing/%s\",\"attributes\":{},\"version\":1}",
             name, name);
    emu_write_text(path, text);
}

/* ------------------------------------------------------------ the launcher */

int emu_launcher(emu_fixture *f, char *out, size_t cap, const char *fmt, ...)
{
    char args[1024], cmd[1600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s %s --data %s", CIOT_TEST_LAUNCHER, args, f->data_dir);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = out ? fread(out, 1, cap - 1, p) : 0;
    if (out)
        out[n] = '\0';
    else
        while (fgetc(p) != EOF) {
        }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

emu_cli_result *emu_cli_v(const char *const *args)
{
    emu_cli_result *r = calloc(1, sizeof *r);
    cr_assert_not_null(r);
    int po[2], pe[2];
    cr_assert_eq(pipe(po), 0);
    cr_assert_eq(pipe(pe), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(po[1], 1);
        dup2(pe[1], 2);
        close(po[0]);
        close(pe[0]);
        char *argv[64]; /* copies: execv takes non-const strings */
        size_t n = 0;
        argv[n++] = strdup(CIOT_TEST_LAUNCHER);
        for (size_t i = 0; args[i] && n < 63; i++)
            argv[n++] = strdup(args[i]);
        argv[n] = NULL;
        execv(CIOT_TEST_LAUNCHER, argv);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    struct pollfd fds[2] = {{.fd = po[0], .events = POLLIN}, {.fd = pe[0], .events = POLLIN}};
    uint64_t deadline = now_ms() + 60000;
    int open_fds = 2;
    while (open_fds && now_ms() < deadline) {
        if (poll(fds, 2, 200) <= 0)
            continue;
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP)))
                continue;
            char *buf = i ? r->err : r->out;
            size_t *len = i ? &r->err_len : &r->out_len;
            size_t cap = i ? sizeof r->err : sizeof r->out;
            char scratch[4096];
            ssize_t k = cap - 1 > *len ? read(fds[i].fd, buf + *len, cap - 1 - *len)
                                       : read(fds[i].fd, scratch, sizeof scratch);
            if (k <= 0) {
                close(fds[i].fd);
                fds[i].fd = -1;
                open_fds--;
            } else if (cap - 1 > *len) {
                *len += (size_t)k;
                buf[*len] = '\0';
            }
        }
    }
    int st;
    if (open_fds) {
        kill(pid, SIGKILL);
        for (int i = 0; i < 2; i++)
            if (fds[i].fd >= 0)
                close(fds[i].fd);
    }
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert_eq(open_fds, 0, "the launcher did not finish within 60 s");
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return r;
}

/* ------------------------------------------------------------ temporary directories */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void emu_tmp_make(char *dir, size_t cap, const char *tmpl)
{
    snprintf(dir, cap, "%s", tmpl);
    cr_assert_not_null(mkdtemp(dir), "mkdtemp %s", tmpl);
}

const char *emu_tmp_path(const char *dir, const char *name)
{
    static char buf[4][1024];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

void emu_tmp_remove(char *dir)
{
    if (dir[0])
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    dir[0] = '\0';
}
