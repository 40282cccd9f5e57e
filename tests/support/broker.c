#include "broker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CIOT_TEST_MOSQUITTO
#define CIOT_TEST_MOSQUITTO "mosquitto"
#endif

#ifndef CIOT_TEST_PKI_DIR
#error "CIOT_TEST_PKI_DIR must name the generated test PKI"
#endif

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static bool port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

const char *test_broker_pki(const test_broker *b, const char *file)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", b->pki, file);
    return path;
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int rc = fputs(text, f) < 0 ? -1 : 0;
    if (fclose(f) != 0)
        rc = -1;
    return rc;
}

static int make_passwd(const test_broker *b, const char *spec)
{
    char path[300];
    snprintf(path, sizeof path, "%s/passwd", b->dir);
    if (write_file(path, "") != 0)
        return -1;
    const char *p = spec;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char line[512];
        if (n >= sizeof line)
            return -1;
        memcpy(line, p, n);
        line[n] = '\0';
        p += n + (nl ? 1 : 0);
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        *colon = '\0';
        pid_t pid = fork();
        if (pid == 0) {
            int null = open("/dev/null", O_WRONLY);
            dup2(null, 1);
            dup2(null, 2);
            execlp("mosquitto_passwd", "mosquitto_passwd", "-b", path, line, colon + 1, (char *)NULL);
            _exit(127);
        }
        int st;
        if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "test broker: mosquitto_passwd failed\n");
            return -1;
        }
    }
    return 0;
}

static int write_config(test_broker *b, const test_broker_opts *o)
{
    char conf[4096], path[300];
    int n = snprintf(conf, sizeof conf,
                     "per_listener_settings %s\n"
                     "log_dest file %s/mosquitto.log\n"
                     "log_type all\n"
                     "connection_messages true\n"
                     "%s"
                     "%s"
                     "listener %d 127.0.0.1\n"
                     "allow_anonymous true\n",
                     o->plugin_conf ? "false" : "true", b->dir, getuid() == 0 ? "user root\n" : "",
                     o->nodelay ? "set_tcp_nodelay true\n" : "", b->port);
    if (o->plugin_conf)
        n += snprintf(conf + n, sizeof conf - (size_t)n, "%s\n", o->plugin_conf);
    if (o->persistence)
        n += snprintf(conf + n, sizeof conf - (size_t)n,
                      "persistence true\npersistence_location %s/\n"
                      "autosave_interval 1\nautosave_on_changes true\n",
                      b->dir);
    if (o->max_queued >= 0)
        n += snprintf(conf + n, sizeof conf - (size_t)n, "max_queued_messages %d\n", o->max_queued);
    if (o->unlimited_inflight)
        n += snprintf(conf + n, sizeof conf - (size_t)n, "max_inflight_messages 0\n");
    if (o->acl) {
        snprintf(path, sizeof path, "%s/acl", b->dir);
        if (write_file(path, o->acl) != 0)
            return -1;
    }
    if (o->tls)
        n += snprintf(conf + n, sizeof conf - (size_t)n,
                      "listener %d 127.0.0.1\n"
                      "cafile %s/ca.crt\ncertfile %s/server.crt\nkeyfile %s/server.key\n"
                      "require_certificate %s\nuse_identity_as_username %s\n"
                      "%s%s%s%s%s",
                      b->tls_port, b->pki, b->pki, b->pki,
                      o->tls_no_client_cert ? "false" : "true",
                      /* with a plugin, no identity as user name: mosquitto 2.0 then skips
                       * the plugin's authentication (MOSQ_EVT_BASIC_AUTH) altogether */
                      o->tls_no_client_cert || o->plugin_conf ? "false" : "true",
                      o->plugin_conf ? "" : "allow_anonymous ",
                      o->plugin_conf ? "" : o->tls_no_client_cert ? "true\n" : "false\n",
                      o->acl ? "acl_file " : "", o->acl ? b->dir : "", o->acl ? "/acl\n" : "");
    if (o->passwords) {
        if (make_passwd(b, o->passwords) != 0)
            return -1;
        n += snprintf(conf + n, sizeof conf - (size_t)n,
                      "listener %d 127.0.0.1\nallow_anonymous false\npassword_file %s/passwd\n%s%s%s",
                      b->pw_port, b->dir, o->acl ? "acl_file " : "", o->acl ? b->dir : "",
                      o->acl ? "/acl\n" : "");
    }
    if (n >= (int)sizeof conf)
        return -1;
    snprintf(path, sizeof path, "%s/mosquitto.conf", b->dir);
    return write_file(path, conf);
}

static int spawn(test_broker *b)
{
    char conf[300], out[300];
    snprintf(conf, sizeof conf, "%s/mosquitto.conf", b->dir);
    snprintf(out, sizeof out, "%s/mosquitto.out", b->dir);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        /* CIOT_TEST_BROKER_WRAPPER (e.g. "valgrind --log-file=/tmp/vg.%p"): a
         * command line the broker runs under, to check a plugin inside it. */
        const char *wrap = getenv("CIOT_TEST_BROKER_WRAPPER");
        if (wrap && *wrap)
            execl("/bin/sh", "sh", "-c", "exec $CIOT_TEST_BROKER_WRAPPER \"$0\" -c \"$1\"",
                  CIOT_TEST_MOSQUITTO, conf, (char *)NULL);
        else
            execl(CIOT_TEST_MOSQUITTO, "mosquitto", "-c", conf, (char *)NULL);
        _exit(127);
    }
    b->pid = pid;
    int ports[3] = {b->port, b->tls_port, b->pw_port};
    for (int i = 0; i < 1000; i++) { /* 10 s at most */
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            b->pid = 0;
            fprintf(stderr, "test broker: mosquitto exited at start (see %s)\n", out);
            return -1;
        }
        bool all = true;
        for (int k = 0; k < 3; k++)
            if (ports[k] && !port_open(ports[k]))
                all = false;
        if (all)
            return 0;
        sleep_ms(10);
    }
    fprintf(stderr, "test broker: not listening after 10 s\n");
    return -1;
}

int test_broker_start(test_broker *b, const test_broker_opts *o)
{
    static const test_broker_opts dflt = {.max_queued = 0};
    if (!o)
        o = &dflt;
    if (o->plugin_conf && (o->acl || o->passwords)) {
        fprintf(stderr, "test broker: plugin_conf cannot be combined with acl or passwords\n");
        return -1;
    }
    memset(b, 0, sizeof *b);
    snprintf(b->pki, sizeof b->pki, "%s", CIOT_TEST_PKI_DIR);
    snprintf(b->dir, sizeof b->dir, "/tmp/ciot-broker-XXXXXX");
    if (!mkdtemp(b->dir)) {
        perror("test broker: mkdtemp");
        return -1;
    }
    b->port = free_port();
    b->tls_port = o->tls ? free_port() : 0;
    b->pw_port = o->passwords ? free_port() : 0;
    if (b->port < 0 || b->tls_port < 0 || b->pw_port < 0 || write_config(b, o) != 0) {
        fprintf(stderr, "test broker: could not prepare %s\n", b->dir);
        return -1;
    }
    /* Another process may take a port between free_port() and the bind:
     * try a few times with new ports. */
    for (int attempt = 0; attempt < 3; attempt++) {
        if (spawn(b) == 0)
            return 0;
        b->port = free_port();
        if (o->tls)
            b->tls_port = free_port();
        if (o->passwords)
            b->pw_port = free_port();
        if (write_config(b, o) != 0)
            break;
    }
    return -1;
}

static void reap(test_broker *b, int sig, int grace_ms)
{
    if (b->pid <= 0)
        return;
    kill(b->pid, sig);
    for (int waited = 0;; waited += 10) {
        int st;
        if (waitpid(b->pid, &st, WNOHANG) != 0)
            break;
        if (waited >= grace_ms) {
            kill(b->pid, SIGKILL);
            waitpid(b->pid, &st, 0);
            break;
        }
        sleep_ms(10);
    }
    b->pid = 0;
}

int test_broker_kill9(test_broker *b)
{
    if (b->pid <= 0)
        return -1;
    reap(b, SIGKILL, 5000);
    return 0;
}

int test_broker_restart(test_broker *b)
{
    if (b->pid > 0)
        reap(b, SIGTERM, 5000);
    for (int attempt = 0; attempt < 50; attempt++) { /* the old sockets may linger briefly */
        if (spawn(b) == 0)
            return 0;
        sleep_ms(100);
    }
    return -1;
}

void test_broker_stop(test_broker *b)
{
    reap(b, SIGTERM, 5000);
    if (b->dir[0]) {
        const char *keep = getenv("CIOT_TEST_KEEP_BROKER");
        if (!keep || !*keep) {
            char cmd[400];
            snprintf(cmd, sizeof cmd, "rm -rf '%s'", b->dir);
            if (system(cmd) != 0)
                fprintf(stderr, "test broker: could not remove %s\n", b->dir);
        }
        b->dir[0] = '\0';
    }
}

int test_broker_log_count(const test_broker *b, const char *needle)
{
    char path[300], line[1024];
    snprintf(path, sizeof path, "%s/mosquitto.log", b->dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int n = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, needle))
            n++;
    fclose(f);
    return n;
}
