/*
 * The emulator's rules engine: the cloud side of AWS IoT rules
 * (doc/emulator.md, "Rules engine").
 *
 * Rules are the files <data>/registry/rules/<ruleName>.json written by the
 * launcher (create-topic-rule, deploy): {"ruleName", "topicRulePayload":
 * {...}} (a bare CreateTopicRule payload is accepted too, named by the file).
 * Each payload is loaded into one ciot_rules set through the public API
 * (<cloudiot/rules.h>), the same engine a device or gateway runs. The
 * directory is checked for changes at most every 100 ms (on the broker's
 * tick and before running a message); a change rebuilds the whole set. A file
 * that does not load is logged and left out; the others run.
 *
 * Every PUBLISH that passed the policy check (MOSQ_EVT_MESSAGE comes after
 * the ACL check; a refused publish never gets here) runs through the set
 * with clientid() = the publisher's client id and timestamp() the broker's
 * clock. Actions:
 *   republish   -> mosquitto_broker_publish_copy to the topic (every
 *                  subscriber the policies let receive it); a republished
 *                  message goes through the rules again, as AWS's do ("act
 *                  like messages sent by any other client"), at most
 *                  EMU_RULES_MAX_HOPS deep (a loop is cut and logged), and
 *                  reaches the shadow service when it is a shadow request
 *   lambda      -> the output document published (QoS 1) on
 *                  $CONTROL/cloudiot/v1/lambda/<functionName> (admin only)
 *   sns         -> the output document published (QoS 1) on
 *                  $CONTROL/cloudiot/v1/sns/<topicName> (admin only)
 *   dynamoDBv2  -> a row in table <tableName> of <data>/rules.sqlite3
 *                  (in memory without a data directory)
 * Action failures are logged with the rule's name and the action.
 */
#include "emu.h"

#include "internal.h"

#include <cloudiot/error.h>
#include <cloudiot/rules.h>

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define EMU_RULES_MAX_HOPS 8
#define EMU_RULES_CHECK_MS 100
#define EMU_RULES_MAX_FILE (256 * 1024)

typedef struct emu_pending {
    char *topic;
    char *payload;
    size_t len;
    int hops;
    struct emu_pending *next;
} emu_pending;

struct emu_rules {
    emu *e;
    ciot_rules *set;
    json_t *payloads; /* ruleName -> topicRulePayload (action kinds of function actions) */
    char *dir;        /* <data>/registry/rules, or NULL */
    char *db;         /* <data>/rules.sqlite3, or ":memory:" */
    uint64_t sig;     /* signature of the directory's entries at the last load */
    bool loaded;
    uint64_t last_check_ms;
    /* the rule whose actions are running, and the next action to match */
    char cur_rule[130];
    size_t cur_action;
    int cur_hops;
    emu_pending *head, *tail;
    bool loop_logged;
    bool busy; /* inside emu_rules_on_message */
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ------------------------------------------------------------ actions */

/* The function name the engine registers an action under (rules.h): a
 * lambda functionArn's name after ":function:" (an alias or version after it
 * dropped), an sns targetArn's last ':'-separated part. Into @p out. */
static const char *function_name(json_t *action, char out[160], const char **kind)
{
    const char *l = json_string_value(json_object_get(json_object_get(action, "lambda"),
                                                      "functionArn"));
    const char *t = json_string_value(json_object_get(json_object_get(action, "sns"),
                                                      "targetArn"));
    out[0] = '\0';
    if (l) {
        const char *f = strstr(l, ":function:");
        if (!f)
            return NULL;
        f += 10;
        const char *c = strchr(f, ':');
        snprintf(out, 160, "%.*s", (int)(c ? (size_t)(c - f) : strlen(f)), f);
        *kind = "lambda";
        return out;
    }
    if (t) {
        const char *c = strrchr(t, ':');
        snprintf(out, 160, "%s", c ? c + 1 : t);
        *kind = "sns";
        return out;
    }
    return NULL;
}

static const char *kind_of(json_t *action)
{
    void *it = json_object_iter(action);
    return it ? json_object_iter_key(it) : "?";
}

/* The output callback: a rule fired; its actions follow, in order. */
static int on_output(ciot_rules *r, const ciot_rules_output *out, void *ud)
{
    (void)r;
    struct emu_rules *s = ud;
    size_t len;
    const char *name = ciot_rules_output_rule(out, &len);
    snprintf(s->cur_rule, sizeof s->cur_rule, "%.*s", (int)(len < 128 ? len : 128), name);
    s->cur_action = 0;
    return 0;
}

/* A function action: lambda or sns, told apart by the rule's next function
 * action of that name (the engine runs a rule's actions in order). */
static int on_function(ciot_rules *r, const ciot_rules_output *out, void *ud)
{
    (void)r;
    struct emu_rules *s = ud;
    size_t flen, dlen;
    const char *fn = ciot_rules_output_function(out, &flen);
    const char *doc = ciot_rules_output_document(out, &dlen);
    json_t *p = json_object_get(s->payloads, s->cur_rule);
    json_t *acts = json_object_get(p, "actions");
    const char *kind = NULL;
    size_t n = json_array_size(acts);
    for (size_t i = s->cur_action; i <= n && !kind; i++) {
        /* the actions in order, then the errorAction */
        json_t *a = i < n ? json_array_get(acts, i) : json_object_get(p, "errorAction");
        char nm[160];
        const char *k = NULL;
        if (function_name(a, nm, &k) && strlen(nm) == flen && memcmp(nm, fn, flen) == 0) {
            kind = k;
            s->cur_action = i + 1;
        }
    }
    if (!kind)
        kind = "lambda";
    char topic[512];
    int k = snprintf(topic, sizeof topic, "$CONTROL/cloudiot/v1/%s/%.*s", kind, (int)flen, fn);
    if (k < 0 || (size_t)k >= sizeof topic)
        return CIOT_ERANGE;
    int rc = mosquitto_broker_publish_copy(NULL, topic, (int)dlen, doc, 1, false, NULL);
    return rc == MOSQ_ERR_SUCCESS ? 0 : CIOT_EIO;
}

/* Queues a message to run through the rules once the current one is done,
 * one hop further; past EMU_RULES_MAX_HOPS it is dropped (logged once).
 * Takes @p topic (ciot__malloc'd). 0 or -1 (out of memory). */
static int enqueue(struct emu_rules *s, char *topic, const void *payload, size_t len)
{
    if (s->cur_hops + 1 > EMU_RULES_MAX_HOPS) {
        if (!s->loop_logged)
            emu_log(MOSQ_LOG_WARNING,
                    "rules: rule %s: the message republished on %s is not run through the "
                    "rules again (a republish loop, %d hops); logged once",
                    s->cur_rule[0] ? s->cur_rule : "(shadow service)", topic,
                    EMU_RULES_MAX_HOPS);
        s->loop_logged = true;
        ciot__free(topic);
        return 0;
    }
    emu_pending *p = ciot__calloc(1, sizeof *p);
    char *body = ciot__malloc(len + 1);
    if (!p || !body) {
        ciot__free(p);
        ciot__free(body);
        ciot__free(topic);
        return -1;
    }
    if (len)
        memcpy(body, payload, len);
    body[len] = '\0';
    p->topic = topic;
    p->payload = body;
    p->len = len;
    p->hops = s->cur_hops + 1;
    if (s->tail)
        s->tail->next = p;
    else
        s->head = p;
    s->tail = p;
    return 0;
}

/* Republish: to the broker, and queued to run through the rules again. */
static int on_publish(void *ud, const char *topic, size_t topic_len, const void *payload,
                      size_t payload_len, int qos)
{
    struct emu_rules *s = ud; /* "$$aws/..." is "$aws/..." already (the rule set does it) */
    char *t = ciot__strndup(topic, topic_len);
    if (!t)
        return CIOT_ENOMEM;
    int rc = mosquitto_broker_publish_copy(NULL, t, (int)payload_len, payload, qos, false, NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
        ciot__free(t);
        return rc == MOSQ_ERR_NOMEM ? CIOT_ENOMEM : CIOT_EINVAL;
    }
    return enqueue(s, t, payload, payload_len) == 0 ? 0 : CIOT_ENOMEM;
}

static void on_error(ciot_rules *r, const char *rule, size_t rule_len, int action, int error,
                     const char *msg, void *ud)
{
    (void)r;
    struct emu_rules *s = ud;
    char name[130];
    snprintf(name, sizeof name, "%.*s", (int)(rule_len < 128 ? rule_len : 128), rule);
    json_t *acts = json_object_get(json_object_get(s->payloads, name), "actions");
    json_t *a = json_array_get(acts, (size_t)action);
    if (action < 0) { /* the rule itself: its evaluation failed */
        emu_log(MOSQ_LOG_WARNING, "rules: rule %s failed: %s (%s)", name, msg,
                ciot_err_name(error));
        return;
    }
    bool err_act = (size_t)action == json_array_size(acts);
    emu_log(MOSQ_LOG_WARNING, "rules: rule %s, action %d (%s) failed: %s (%s)", name, action,
            a ? kind_of(a) : err_act ? "errorAction" : "?", msg, ciot_err_name(error));
}

/* ------------------------------------------------------------ loading */

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.json entries of the directory, sorted, and a signature of (name,
 * inode, size, mtime) of each. 0, or -1 (no directory: no rules). */
static int scan(struct emu_rules *s, char ***out, size_t *n, uint64_t *sig)
{
    *out = NULL;
    *n = 0;
    uint64_t h = 1469598103934665603ull;
    DIR *d = s->dir ? opendir(s->dir) : NULL;
    if (!d) {
        *sig = 0;
        return -1;
    }
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l <= 5 || strcmp(de->d_name + l - 5, ".json") != 0 || de->d_name[0] == '.')
            continue;
        char path[4096];
        struct stat st;
        if (snprintf(path, sizeof path, "%s/%s", s->dir, de->d_name) >= (int)sizeof path ||
            stat(path, &st) != 0)
            continue;
        uint64_t vals[5] = {(uint64_t)st.st_ino, (uint64_t)st.st_size,
                            (uint64_t)st.st_mtim.tv_sec, (uint64_t)st.st_mtim.tv_nsec, l};
        uint64_t mix = 0;
        for (size_t i = 0; i < l; i++)
            mix = (mix ^ (unsigned char)de->d_name[i]) * 1099511628211ull;
        for (int i = 0; i < 5; i++)
            mix = (mix ^ vals[i]) * 1099511628211ull;
        h += mix; /* order-independent */
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **nv = ciot__realloc(*out, nc * sizeof *nv);
            if (!nv)
                break;
            *out = nv;
            cap = nc;
        }
        (*out)[*n] = ciot__strndup(de->d_name, l);
        if (!(*out)[*n])
            break;
        (*n)++;
    }
    closedir(d);
    if (*n)
        qsort(*out, *n, sizeof **out, cmp_names);
    *sig = h;
    return 0;
}

static void free_names(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ciot__free(v[i]);
    ciot__free(v);
}

/* Registers the function actions (lambda, sns) of a payload by name. */
static int register_functions(struct emu_rules *s, ciot_rules *set, json_t *payload)
{
    json_t *acts = json_object_get(payload, "actions");
    size_t n = json_array_size(acts);
    for (size_t i = 0; i <= n; i++) {
        json_t *a = i < n ? json_array_get(acts, i) : json_object_get(payload, "errorAction");
        char nm[160];
        const char *kind;
        if (!function_name(a, nm, &kind))
            continue;
        int rc = ciot_rules_set_function(set, nm, strlen(nm), on_function, s);
        if (rc != 0 && rc != CIOT_EEXIST)
            return rc;
    }
    return 0;
}

/* One file into @p set; logs and returns false when it does not load. */
static bool load_file(struct emu_rules *s, ciot_rules *set, json_t *payloads, const char *file)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", s->dir, file);
    char stem[256];
    snprintf(stem, sizeof stem, "%.*s", (int)(strlen(file) - 5), file);
    char *text;
    size_t len;
    if (emu_read_file(&text, &len, path, EMU_RULES_MAX_FILE) != 0) {
        emu_log(MOSQ_LOG_ERR, "rules: skipping %s: %s", path, strerror(errno));
        return false;
    }
    json_error_t je;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    ciot__free(text);
    json_t *payload = json_object_get(doc, "topicRulePayload");
    if (!payload && json_object_get(doc, "sql"))
        payload = doc;
    const char *name = json_string_value(json_object_get(doc, "ruleName"));
    if (!name)
        name = stem;
    const char *why = NULL;
    char msg[512];
    if (!doc) {
        snprintf(msg, sizeof msg, "not JSON: %s (line %d)", je.text, je.line);
        why = msg;
    } else if (!json_is_object(payload))
        why = "neither a rule file ({\"ruleName\",\"topicRulePayload\"}) nor a payload";
    else if (strcmp(name, stem) != 0)
        why = "its ruleName is not the file's name";
    if (!why) {
        char *ptext = json_dumps(payload, JSON_COMPACT);
        int rc = ptext ? ciot_rules_add_payload(set, name, strlen(name), ptext, strlen(ptext))
                       : CIOT_ENOMEM;
        free(ptext);
        if (rc == 0)
            rc = register_functions(s, set, payload);
        if (rc != 0) {
            snprintf(msg, sizeof msg, "%s (%s)", ciot_rules_errmsg(set), ciot_err_name(rc));
            why = msg;
            int rrc = ciot_rules_remove(set, name, strlen(name)); /* absent when add failed */
            (void)rrc;
        }
    }
    if (why) {
        emu_log(MOSQ_LOG_ERR, "rules: skipping %s: %s", path, why);
        json_decref(doc);
        return false;
    }
    json_object_set(payloads, name, payload);
    json_decref(doc);
    return true;
}

static ciot_rules *new_set(struct emu_rules *s)
{
    ciot_rules *set;
    if (ciot_rules_new(&set) != 0)
        return NULL;
    ciot_rules_set_publisher(set, on_publish, s);
    ciot_rules_set_output_callback(set, on_output, s);
    ciot_rules_set_error_callback(set, on_error, s);
    int rc = ciot_rules_open_sqlite(set, s->db);
    if (rc != 0)
        emu_log(MOSQ_LOG_WARNING, "rules: dynamoDBv2 actions will fail: cannot open %s: %s (%s)",
                s->db, ciot_rules_errmsg(set), ciot_err_name(rc));
    return set;
}

/* Reloads when the directory changed (checked at most every 100 ms). */
static void maybe_reload(struct emu_rules *s, bool force)
{
    uint64_t now = mono_ms();
    if (!force && s->loaded && now - s->last_check_ms < EMU_RULES_CHECK_MS)
        return;
    s->last_check_ms = now;
    char **names;
    size_t n;
    uint64_t sig;
    scan(s, &names, &n, &sig);
    if (s->loaded && sig == s->sig) {
        free_names(names, n);
        return;
    }
    ciot_rules *set = new_set(s);
    json_t *payloads = json_object();
    if (!set || !payloads) {
        emu_log(MOSQ_LOG_ERR, "rules: out of memory reloading the rules");
        ciot_rules_free(set);
        json_decref(payloads);
        free_names(names, n);
        return;
    }
    size_t ok = 0;
    for (size_t i = 0; i < n; i++)
        ok += load_file(s, set, payloads, names[i]);
    free_names(names, n);
    ciot_rules_free(s->set);
    json_decref(s->payloads);
    s->set = set;
    s->payloads = payloads;
    s->sig = sig;
    s->loaded = true;
    emu_log(MOSQ_LOG_INFO, "rules: %zu rule(s) loaded from %s (%zu skipped)", ok,
            s->dir ? s->dir : "(no data directory)", n - ok);
}

/* ------------------------------------------------------------ entry points */

int emu_rules_init(emu *e)
{
    struct emu_rules *s = ciot__calloc(1, sizeof *s);
    if (!s)
        return -1;
    s->e = e;
    char buf[4096];
    if (e->data_dir) {
        snprintf(buf, sizeof buf, "%s/registry/rules", e->data_dir);
        s->dir = ciot__strndup(buf, strlen(buf));
        snprintf(buf, sizeof buf, "%s/rules.sqlite3", e->data_dir);
        s->db = ciot__strndup(buf, strlen(buf));
    } else {
        s->db = ciot__strndup(":memory:", 8);
    }
    if ((e->data_dir && !s->dir) || !s->db) {
        ciot__free(s->dir);
        ciot__free(s->db);
        ciot__free(s);
        return -1;
    }
    e->rules = s;
    maybe_reload(s, true);
    return 0;
}

void emu_rules_free(emu *e)
{
    struct emu_rules *s = e->rules;
    if (!s)
        return;
    ciot_rules_free(s->set);
    json_decref(s->payloads);
    while (s->head) {
        emu_pending *p = s->head;
        s->head = p->next;
        ciot__free(p->topic);
        ciot__free(p->payload);
        ciot__free(p);
    }
    ciot__free(s->dir);
    ciot__free(s->db);
    ciot__free(s);
    e->rules = NULL;
}

void emu_rules_tick(emu *e)
{
    if (e->rules)
        maybe_reload(e->rules, false);
}

static void run(struct emu_rules *s, const char *topic, const void *payload, size_t len,
                const char *client_id, int hops)
{
    s->cur_hops = hops;
    s->cur_rule[0] = '\0';
    size_t fired = 0;
    int rc = ciot_rules_process(&fired, s->set, topic, strlen(topic), payload, len, client_id,
                                client_id ? strlen(client_id) : 0);
    if (rc != 0 && rc != CIOT_EUSER)
        emu_log(MOSQ_LOG_WARNING, "rules: message on %s not processed: %s", topic,
                ciot_err_name(rc));
}

void emu_rules_on_message(emu *e, const struct mosquitto *client, const char *topic,
                          const void *payload, uint32_t len)
{
    struct emu_rules *s = e->rules;
    if (!s || strncmp(topic, "$CONTROL/", 9) == 0)
        return;
    maybe_reload(s, false);
    if (!s->set || ciot_rules_count(s->set) == 0)
        return;
    const char *cid = client ? mosquitto_client_id(client) : NULL;
    s->busy = true;
    run(s, topic, payload, len, cid, 0);
    /* republished messages, breadth first */
    while (s->head) {
        emu_pending *p = s->head;
        s->head = p->next;
        if (!s->head)
            s->tail = NULL;
        char thing[EMU_MAX_THING + 1], name[EMU_MAX_SHADOW_NAME + 1];
        s->cur_hops = p->hops; /* the shadow service's replies are one hop further */
        s->cur_rule[0] = '\0';
        if (emu_shadow_topic(p->topic, thing, name) != 0)
            emu_on_message(e, p->topic, p->payload, (uint32_t)p->len);
        run(s, p->topic, p->payload, p->len, NULL, p->hops);
        ciot__free(p->topic);
        ciot__free(p->payload);
        ciot__free(p);
    }
    s->busy = false;
}

void emu_rules_on_service_message(emu *e, const char *topic, const void *payload, size_t len)
{
    struct emu_rules *s = e->rules;
    if (!s || !s->set || ciot_rules_count(s->set) == 0)
        return;
    if (!s->busy) {
        emu_rules_on_message(e, NULL, topic, payload, (uint32_t)len);
        return;
    }
    char *t = ciot__strndup(topic, strlen(topic));
    if (!t || enqueue(s, t, payload, len) != 0)
        emu_log(MOSQ_LOG_ERR, "rules: out of memory: %s not run through the rules", topic);
}
