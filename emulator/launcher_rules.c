/*
 * cloudiot-emulator's topic rules, one to one with the AWS CLI
 * (doc/emulator-launcher.md, "Topic rules"):
 *
 *   create-topic-rule / replace-topic-rule   aws iot create-topic-rule / replace-topic-rule
 *   get-topic-rule, list-topic-rules         aws iot get-topic-rule, list-topic-rules
 *   delete-topic-rule                        aws iot delete-topic-rule
 *   enable-topic-rule, disable-topic-rule    aws iot enable-topic-rule, disable-topic-rule
 *   deploy --template-file F                 aws cloudformation deploy
 *
 * One file per rule, written atomically under the registry lock:
 *   <data>/registry/rules/<ruleName>.json
 *   {"ruleName":"R","ruleArn":"arn:aws:iot:<region>:<account>:rule/R",
 *    "createdAt":<unix s>,"stackName":"S"?,"topicRulePayload":{...}}
 * The plugin (rules_service.c) loads the topicRulePayload of each file.
 * A payload is checked here as the service would check it: its shape, the
 * action kinds the emulator runs, and its SQL compiled by the rules engine
 * the plugin runs (lib/core/rules_sql.h); a rule that does not compile is
 * refused now rather than skipped by the broker.
 */
#define _XOPEN_SOURCE 700

#include "launcher_rules.h"
#include "launcher_util.h"

#include "cfn.h"
#include "core/rules_sql.h"
#include "registry.h"

#include <cloudiot/error.h>
#include <cloudiot/rules.h>

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE CIOT__LX_EXIT_USAGE
#define EXIT_OTHER CIOT__LX_EXIT_OTHER
#define MAX_FILE (1u << 20)

/* ---- errors and output --------------------------------------------------- */

/* The AWS CLI's client-side parameter validation (before any request). */
static int param_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int param_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "\nParameter validation failed:\n");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return EXIT_USAGE;
}

/* ---- options ------------------------------------------------------------- */

#define NOPTS (sizeof o / sizeof *o)
#define VAL(name) ciot__lx_get(o, NOPTS, name)

/* Reads "file://PATH" or takes the argument itself (as the AWS CLI). */
static int read_arg(const char *cmd, const char *param, const char *arg, char **out, size_t *len)
{
    *out = NULL;
    if (strncmp(arg, "file://", 7) != 0) {
        *out = strdup(arg);
        *len = strlen(arg);
        return *out ? 0 : ciot__lx_other_error("out of memory");
    }
    const char *path = arg + 7;
    FILE *f = fopen(path, "rb");
    if (!f)
        return ciot__lx_usage_error(cmd,
                                    "Error parsing parameter '%s': Unable to load paramfile %s: %s",
                                    param, arg, strerror(errno));
    char *buf = malloc(MAX_FILE + 1);
    size_t n = buf ? fread(buf, 1, MAX_FILE + 1, f) : 0;
    bool bad = ferror(f);
    fclose(f);
    if (!buf)
        return ciot__lx_other_error("out of memory");
    if (bad || n > MAX_FILE) {
        free(buf);
        return ciot__lx_usage_error(cmd, "Error parsing parameter '%s': %s: %s", param, path,
                                    bad ? "cannot read" : "larger than 1 MiB");
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* ---- the payload, checked as the service checks it ------------------------ */

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "dict";
    case JSON_ARRAY: return "list";
    case JSON_STRING: return "str";
    case JSON_INTEGER: return "int";
    case JSON_REAL: return "float";
    case JSON_TRUE:
    case JSON_FALSE: return "bool";
    default: return "None";
    }
}

typedef struct pfield {
    const char *name;
    char kind; /* s string, b bool, i integer, o object, a array */
    bool required;
} pfield;

/* The members of one object: known names, required ones, types. */
static int check_members(json_t *obj, const char *where, const pfield *f)
{
    if (!json_is_object(obj))
        return param_err("Invalid type for parameter %s, type: %s, valid types: dict", where,
                         type_name(obj));
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        const pfield *p = NULL;
        for (const pfield *q = f; q->name; q++)
            if (strcmp(q->name, k) == 0)
                p = q;
        if (!p) {
            char names[256] = "";
            size_t off = 0;
            for (const pfield *q = f; q->name && off < sizeof names; q++) {
                int w = snprintf(names + off, sizeof names - off, "%s%s", q == f ? "" : ", ",
                                 q->name);
                off += w > 0 ? (size_t)w : 0;
            }
            return param_err("Unknown parameter in %s: \"%s\", must be one of: %s", where, k,
                             names);
        }
        bool ok = (p->kind == 's' && json_is_string(v)) ||
                  (p->kind == 'b' && json_is_boolean(v)) ||
                  (p->kind == 'i' && json_is_integer(v)) ||
                  (p->kind == 'o' && json_is_object(v)) || (p->kind == 'a' && json_is_array(v));
        if (!ok) {
            static const char *const names[] = {"s", "str", "b", "bool", "i", "int",
                                                "o", "dict", "a", "list"};
            const char *want = "";
            for (size_t i = 0; i < 10; i += 2)
                if (names[i][0] == p->kind)
                    want = names[i + 1];
            return param_err("Invalid type for parameter %s.%s, type: %s, valid types: %s",
                             where, k, type_name(v), want);
        }
    }
    for (const pfield *q = f; q->name; q++)
        if (q->required && !json_object_get(obj, q->name))
            return param_err("Missing required parameter in %s: \"%s\"", where, q->name);
    return 0;
}

static const pfield p_payload[] = {{"sql", 's', true},          {"description", 's', false},
                                   {"actions", 'a', true},      {"ruleDisabled", 'b', false},
                                   {"awsIotSqlVersion", 's', false}, {"errorAction", 'o', false},
                                   {0}};
static const pfield p_lambda[] = {{"functionArn", 's', true}, {0}};
static const pfield p_sns[] = {{"targetArn", 's', true}, {"roleArn", 's', true},
                               {"messageFormat", 's', false}, {0}};
static const pfield p_republish[] = {{"roleArn", 's', true}, {"topic", 's', true},
                                     {"qos", 'i', false}, {0}};
static const pfield p_dynamov2[] = {{"roleArn", 's', true}, {"putItem", 'o', true}, {0}};
static const pfield p_putitem[] = {{"tableName", 's', true}, {0}};

/* AWS's other action kinds: accepted by the service, not run by the emulator. */
static const char *const other_kinds[] = {
    "dynamoDB", "kinesis", "sqs", "s3", "firehose", "cloudwatchMetric", "cloudwatchAlarm",
    "cloudwatchLogs", "elasticsearch", "salesforce", "iotAnalytics", "iotEvents", "iotSiteWise",
    "stepFunctions", "timestream", "http", "kafka", "openSearch", "location", NULL};

/* Whether a ${...} template is well formed (balanced, not empty). */
static bool template_ok(const char *s)
{
    for (const char *d = strstr(s, "${"); d; d = strstr(d, "${")) {
        const char *e = strchr(d + 2, '}');
        if (!e || e == d + 2)
            return false;
        d = e + 1;
    }
    return true;
}

static int check_action(const char *op, json_t *a, const char *where)
{
    if (!json_is_object(a))
        return param_err("Invalid type for parameter %s, type: %s, valid types: dict", where,
                         type_name(a));
    if (json_object_size(a) != 1)
        return ciot__lx_service_error(op, "InvalidRequestException",
                                      "%s: an action must have exactly one kind", where);
    const char *kind = json_object_iter_key(json_object_iter(a));
    json_t *v = json_object_iter_value(json_object_iter(a));
    char w[96];
    snprintf(w, sizeof w, "%s.%s", where, kind);
    int rc;
    if (strcmp(kind, "lambda") == 0)
        return check_members(v, w, p_lambda);
    if (strcmp(kind, "sns") == 0) {
        if ((rc = check_members(v, w, p_sns)) != 0)
            return rc;
        const char *mf = json_string_value(json_object_get(v, "messageFormat"));
        if (mf && strcmp(mf, "RAW") != 0 && strcmp(mf, "JSON") != 0)
            return param_err("Invalid value for parameter %s.messageFormat: \"%s\", must be one "
                             "of: RAW, JSON",
                             w, mf);
        return 0;
    }
    if (strcmp(kind, "republish") == 0) {
        if ((rc = check_members(v, w, p_republish)) != 0)
            return rc;
        json_t *q = json_object_get(v, "qos");
        if (q && json_integer_value(q) != 0 && json_integer_value(q) != 1)
            return ciot__lx_service_error(op, "InvalidRequestException", "%s.qos must be 0 or 1",
                                          w);
        const char *t = json_string_value(json_object_get(v, "topic"));
        if (!*t || !template_ok(t))
            return ciot__lx_service_error(op, "InvalidRequestException",
                                          "%s.topic: not a valid topic template: '%s'", w, t);
        return 0;
    }
    if (strcmp(kind, "dynamoDBv2") == 0) {
        if ((rc = check_members(v, w, p_dynamov2)) != 0)
            return rc;
        snprintf(w + strlen(w), sizeof w - strlen(w), ".putItem");
        if ((rc = check_members(json_object_get(v, "putItem"), w, p_putitem)) != 0)
            return rc;
        const char *t = json_string_value(json_object_get(json_object_get(v, "putItem"),
                                                          "tableName"));
        if (!*t || !template_ok(t))
            return ciot__lx_service_error(op, "InvalidRequestException",
                                          "%s.tableName: not a valid table template: '%s'", w, t);
        return 0;
    }
    for (size_t i = 0; other_kinds[i]; i++)
        if (strcmp(other_kinds[i], kind) == 0)
            return ciot__lx_service_error(
                op, "InvalidRequestException",
                "%s: the action %s is not supported by the emulator (supported: "
                "lambda, sns, republish, dynamoDBv2)",
                where, kind);
    return param_err("Unknown parameter in %s: \"%s\"", where, kind);
}

/* The whole payload; 0 or the exit status (message printed). */
static int check_payload(const char *op, const char *name, json_t *p, const char *where)
{
    int rc = check_members(p, where, p_payload);
    if (rc)
        return rc;
    json_t *acts = json_object_get(p, "actions");
    if (json_array_size(acts) > 10)
        return ciot__lx_service_error(op, "InvalidRequestException",
                                      "A rule may have at most 10 actions (it has %zu)",
                                      json_array_size(acts));
    for (size_t i = 0; i < json_array_size(acts); i++) {
        char w[64];
        snprintf(w, sizeof w, "%s.actions[%zu]", where, i);
        if ((rc = check_action(op, json_array_get(acts, i), w)) != 0)
            return rc;
    }
    json_t *ea = json_object_get(p, "errorAction");
    if (ea) {
        char w[64];
        snprintf(w, sizeof w, "%s.errorAction", where);
        if ((rc = check_action(op, ea, w)) != 0)
            return rc;
    }
    const char *ver = json_string_value(json_object_get(p, "awsIotSqlVersion"));
    if (!ver)
        return ciot__lx_service_error(
            op, "InvalidRequestException",
            "awsIotSqlVersion is missing: AWS then uses 2015-10-08, which the "
            "emulator does not run; give \"awsIotSqlVersion\": \"2016-03-23\"");
    const char *sql = json_string_value(json_object_get(p, "sql"));
    ciot__rule *rule = NULL;
    ciot__rules_error e = {0};
    rc = ciot__rules_compile(&rule, &e, sql, strlen(sql), ver, strlen(ver));
    ciot__rules_free(rule);
    if (rc == CIOT_EVERSION)
        return ciot__lx_service_error(
            op, "InvalidRequestException",
            "awsIotSqlVersion %s is not supported by the emulator (2016-03-23)", ver);
    if (rc == CIOT_ENOMEM)
        return ciot__lx_other_error("out of memory");
    if (rc)
        return ciot__lx_service_error(op, "SqlParseException", "%s",
                                      e.msg[0] ? e.msg : ciot_err_name(rc));
    /* Last, the rule set the plugin loads it into (templates, action details). */
    char *text = json_dumps(p, JSON_COMPACT);
    ciot_rules *set = NULL;
    if (!text || ciot_rules_new(&set) != 0) {
        free(text);
        return ciot__lx_other_error("out of memory");
    }
    rc = ciot_rules_add_payload(set, name, strlen(name), text, strlen(text));
    free(text);
    if (rc == CIOT_ENOMEM) {
        ciot_rules_free(set);
        return ciot__lx_other_error("out of memory");
    }
    if (rc)
        rc = ciot__lx_service_error(op, "InvalidRequestException", "%s", ciot_rules_errmsg(set));
    ciot_rules_free(set);
    return rc;
}

/* ---- rule files ----------------------------------------------------------- */

static int rule_path(const ciot__registry *r, const char *name, char *out, size_t cap)
{
    int k = snprintf(out, cap, "%s/registry/rules/%s.json", r->dir, name);
    return k > 0 && (size_t)k < cap ? 0 : -1;
}

static int check_name(const char *op, const char *name)
{
    if (!ciot__cfn_rule_name_valid(name, strlen(name)))
        return ciot__lx_service_error(op, "InvalidRequestException",
                                      "Invalid rule name '%s': 1 to 128 characters of [a-zA-Z0-9_]",
                                      name);
    return 0;
}

/* Loads one rule file: 0, CIOT_ENOTFOUND, or another error (message printed: the exit status). */
static int load_rule(const ciot__registry *r, const char *name, json_t **out)
{
    *out = NULL;
    char path[1400];
    if (rule_path(r, name, path, sizeof path) != 0)
        return ciot__lx_other_error("path too long");
    FILE *f = fopen(path, "rb");
    if (!f)
        return errno == ENOENT ? CIOT_ENOTFOUND
                               : ciot__lx_other_error("%s: %s", path, strerror(errno));
    json_error_t je;
    json_t *j = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
    fclose(f);
    if (!json_is_object(j) || !json_is_object(json_object_get(j, "topicRulePayload"))) {
        json_decref(j);
        return ciot__lx_other_error("%s: not a rule file (%s)", path,
                                    j ? "no topicRulePayload" : je.text);
    }
    *out = j;
    return 0;
}

static int save_rule(const ciot__registry *r, const char *name, const json_t *doc)
{
    char dir[1200], path[1400];
    snprintf(dir, sizeof dir, "%s/registry/rules", r->dir);
    if (ciot__mkdir_p(dir, 0755) != 0)
        return ciot__lx_other_error("cannot create %s: %s", dir, strerror(errno));
    if (rule_path(r, name, path, sizeof path) != 0)
        return ciot__lx_other_error("path too long");
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!text)
        return ciot__lx_other_error("out of memory");
    int rc = ciot__write_atomic(path, text, strlen(text), 0644);
    free(text);
    return rc ? ciot__lx_other_error("cannot write %s: %s", path, strerror(errno)) : 0;
}

static int remove_rule(const ciot__registry *r, const char *name)
{
    char path[1400];
    if (rule_path(r, name, path, sizeof path) != 0)
        return ciot__lx_other_error("path too long");
    if (unlink(path) != 0 && errno != ENOENT)
        return ciot__lx_other_error("cannot remove %s: %s", path, strerror(errno));
    return 0;
}

static json_t *new_rule_doc(const ciot__registry *r, const char *name, json_t *payload,
                            const char *stack)
{
    char arn[512];
    snprintf(arn, sizeof arn, "arn:aws:iot:%s:%s:rule/%s", r->region, r->account, name);
    json_t *d = json_pack("{s:s,s:s,s:I,s:O}", "ruleName", name, "ruleArn", arn, "createdAt",
                          (json_int_t)time(NULL), "topicRulePayload", payload);
    if (d && stack)
        json_object_set_new(d, "stackName", json_string(stack));
    return d;
}

static int lock(const ciot__registry *r, int *fd)
{
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/registry", r->dir);
    if (ciot__mkdir_p(dir, 0755) != 0 || ciot__registry_lock(r, fd) != 0)
        return ciot__lx_other_error("cannot lock the registry in %s: %s", r->dir, strerror(errno));
    return 0;
}

/* ---- sub-commands ------------------------------------------------------- */

/* create-topic-rule and replace-topic-rule */
static int cmd_put(int argc, char **argv, bool replace)
{
    const char *cmd = replace ? "replace-topic-rule" : "create-topic-rule";
    const char *op = replace ? "ReplaceTopicRule" : "CreateTopicRule";
    ciot__lx_opt o[] = {CIOT__LX_OPTS_COMMON, CIOT__LX_OPT_VALUE("--rule-name"),
                        CIOT__LX_OPT_VALUE("--topic-rule-payload"), CIOT__LX_OPT_VALUE("--tags")};
    int rc = ciot__lx_parse(cmd, argc, argv, o, NOPTS);
    if (rc)
        return rc;
    if (!VAL("--rule-name") || !VAL("--topic-rule-payload"))
        return ciot__lx_usage_error(cmd, "the following arguments are required: --rule-name, "
                                         "--topic-rule-payload");
    if (replace && VAL("--tags"))
        return ciot__lx_usage_error(cmd, "unknown option '--tags'");
    const char *name = VAL("--rule-name");
    ciot__registry r;
    if ((rc = ciot__lx_open_reg(cmd, o, NOPTS, true, &r)) != 0)
        return rc;
    char *text;
    size_t len;
    if ((rc = read_arg(cmd, "--topic-rule-payload", VAL("--topic-rule-payload"), &text, &len)))
        return rc;
    json_error_t je;
    json_t *p = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!p)
        return ciot__lx_usage_error(
            cmd,
            "Error parsing parameter '--topic-rule-payload': Invalid JSON: %s "
            "(line %d, column %d)",
            je.text, je.line, je.column);
    if ((rc = check_name(op, name)) != 0 || (rc = check_payload(op, name, p, "topicRulePayload"))) {
        json_decref(p);
        return rc;
    }
    int lk;
    if ((rc = lock(&r, &lk)) != 0) {
        json_decref(p);
        return rc;
    }
    json_t *old;
    rc = load_rule(&r, name, &old);
    if (rc == 0 && !replace) {
        rc = ciot__lx_service_error(op, "ResourceAlreadyExistsException", "Rule %s already exists",
                                    name);
    } else if (rc == CIOT_ENOTFOUND && replace) {
        rc = ciot__lx_service_error(op, "UnauthorizedException", "Rule %s does not exist", name);
    } else if (rc == 0 || rc == CIOT_ENOTFOUND) {
        json_t *doc = new_rule_doc(&r, name, p, NULL);
        if (doc && old) {
            json_object_set(doc, "createdAt", json_object_get(old, "createdAt"));
            if (json_object_get(old, "stackName"))
                json_object_set(doc, "stackName", json_object_get(old, "stackName"));
        }
        rc = doc ? save_rule(&r, name, doc) : ciot__lx_other_error("out of memory");
        json_decref(doc);
    }
    json_decref(old);
    ciot__registry_unlock(lk);
    json_decref(p);
    return rc;
}

static int cmd_create(int argc, char **argv)
{
    return cmd_put(argc, argv, false);
}

static int cmd_replace(int argc, char **argv)
{
    return cmd_put(argc, argv, true);
}

/* A rule that must exist: 0 (*doc set) or the exit status. */
static int existing(const ciot__registry *r, const char *op, const char *name, json_t **doc)
{
    int rc = check_name(op, name);
    if (rc)
        return rc;
    rc = load_rule(r, name, doc);
    if (rc == CIOT_ENOTFOUND)
        return ciot__lx_service_error(op, "UnauthorizedException", "Rule %s does not exist", name);
    return rc;
}

static int cmd_get(int argc, char **argv)
{
    ciot__lx_opt o[] = {CIOT__LX_OPTS_COMMON, CIOT__LX_OPT_VALUE("--rule-name")};
    int rc = ciot__lx_parse("get-topic-rule", argc, argv, o, NOPTS);
    if (rc)
        return rc;
    if (!VAL("--rule-name"))
        return ciot__lx_usage_error("get-topic-rule",
                                    "the following argument is required: --rule-name");
    ciot__registry r;
    json_t *d;
    if ((rc = ciot__lx_open_reg("get-topic-rule", o, NOPTS, false, &r)) != 0 ||
        (rc = existing(&r, "GetTopicRule", VAL("--rule-name"), &d)) != 0)
        return rc;
    json_t *p = json_object_get(d, "topicRulePayload");
    char created[32];
    ciot__lx_iso_time(json_integer_value(json_object_get(d, "createdAt")), created);
    json_t *rule = json_pack("{s:O,s:O}", "ruleName", json_object_get(d, "ruleName"), "sql",
                             json_object_get(p, "sql"));
    if (rule) {
        if (json_object_get(p, "description"))
            json_object_set(rule, "description", json_object_get(p, "description"));
        json_object_set_new(rule, "createdAt", json_string(created));
        json_object_set(rule, "actions", json_object_get(p, "actions"));
        json_object_set_new(rule, "ruleDisabled",
                            json_boolean(json_is_true(json_object_get(p, "ruleDisabled"))));
        if (json_object_get(p, "awsIotSqlVersion"))
            json_object_set(rule, "awsIotSqlVersion", json_object_get(p, "awsIotSqlVersion"));
        if (json_object_get(p, "errorAction"))
            json_object_set(rule, "errorAction", json_object_get(p, "errorAction"));
    }
    json_t *out = rule ? json_pack("{s:O,s:o}", "ruleArn", json_object_get(d, "ruleArn"), "rule",
                                   rule)
                       : NULL;
    json_decref(d);
    return ciot__lx_print_json(out);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names of the rule files, sorted. */
static int list_names(const ciot__registry *r, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/registry/rules", r->dir);
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0
                               : ciot__lx_other_error("cannot read %s: %s", dir, strerror(errno));
    struct dirent *e;
    size_t cap = 0;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l <= 5 || strcmp(e->d_name + l - 5, ".json") != 0 ||
            !ciot__cfn_rule_name_valid(e->d_name, l - 5))
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nv = realloc(*out, cap * sizeof *nv);
            if (!nv) {
                rc = ciot__lx_other_error("out of memory");
                break;
            }
            *out = nv;
        }
        (*out)[*n] = strndup(e->d_name, l - 5);
        if (!(*out)[*n]) {
            rc = ciot__lx_other_error("out of memory");
            break;
        }
        (*n)++;
    }
    closedir(d);
    if (*n)
        qsort(*out, *n, sizeof **out, cmp_str);
    return rc;
}

static void free_names(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* The FROM topic filter of a rule's SQL ("" when it does not compile). */
static json_t *topic_pattern(const json_t *p)
{
    const char *sql = json_string_value(json_object_get(p, "sql"));
    const char *ver = json_string_value(json_object_get(p, "awsIotSqlVersion"));
    ciot__rule *rule = NULL;
    json_t *out = NULL;
    if (sql && ver &&
        ciot__rules_compile(&rule, NULL, sql, strlen(sql), ver, strlen(ver)) == 0) {
        size_t len;
        const char *f = ciot__rules_from(rule, &len);
        out = json_stringn(f, len);
    }
    ciot__rules_free(rule);
    return out ? out : json_string("");
}

static int cmd_list(int argc, char **argv)
{
    ciot__lx_opt o[] = {CIOT__LX_OPTS_COMMON, CIOT__LX_OPT_VALUE("--topic"),
                        CIOT__LX_OPT_FLAG("--rule-disabled"),
                        CIOT__LX_OPT_FLAG("--no-rule-disabled")};
    int rc = ciot__lx_parse("list-topic-rules", argc, argv, o, NOPTS);
    if (rc)
        return rc;
    ciot__registry r;
    if ((rc = ciot__lx_open_reg("list-topic-rules", o, NOPTS, false, &r)) != 0)
        return rc;
    bool want_disabled = ciot__lx_find(o, NOPTS, "--rule-disabled")->seen;
    bool want_enabled = ciot__lx_find(o, NOPTS, "--no-rule-disabled")->seen;
    const char *topic = VAL("--topic");
    char **names;
    size_t n;
    if ((rc = list_names(&r, &names, &n)) != 0)
        return rc;
    json_t *rules = json_array();
    for (size_t i = 0; i < n && rules; i++) {
        json_t *d;
        if (load_rule(&r, names[i], &d) != 0)
            continue; /* reported on stderr; the others are listed */
        json_t *p = json_object_get(d, "topicRulePayload");
        bool disabled = json_is_true(json_object_get(p, "ruleDisabled"));
        json_t *pat = topic_pattern(p);
        char created[32];
        ciot__lx_iso_time(json_integer_value(json_object_get(d, "createdAt")), created);
        bool keep = !(want_disabled && !disabled) && !(want_enabled && disabled) &&
                    !(topic && strcmp(topic, json_string_value(pat)) != 0);
        if (keep)
            json_array_append_new(rules, json_pack("{s:O,s:O,s:O,s:s,s:b}", "ruleArn",
                                                   json_object_get(d, "ruleArn"), "ruleName",
                                                   json_object_get(d, "ruleName"), "topicPattern",
                                                   pat, "createdAt", created, "ruleDisabled",
                                                   disabled));
        json_decref(pat);
        json_decref(d);
    }
    free_names(names, n);
    return ciot__lx_print_json(rules ? json_pack("{s:o}", "rules", rules) : NULL);
}

static int cmd_delete(int argc, char **argv)
{
    ciot__lx_opt o[] = {CIOT__LX_OPTS_COMMON, CIOT__LX_OPT_VALUE("--rule-name")};
    int rc = ciot__lx_parse("delete-topic-rule", argc, argv, o, NOPTS);
    if (rc)
        return rc;
    if (!VAL("--rule-name"))
        return ciot__lx_usage_error("delete-topic-rule",
                                    "the following argument is required: --rule-name");
    ciot__registry r;
    if ((rc = ciot__lx_open_reg("delete-topic-rule", o, NOPTS, false, &r)) != 0)
        return rc;
    int lk;
    if ((rc = lock(&r, &lk)) != 0)
        return rc;
    json_t *d;
    rc = existing(&r, "DeleteTopicRule", VAL("--rule-name"), &d);
    if (rc == 0)
        rc = remove_rule(&r, VAL("--rule-name"));
    json_decref(d);
    ciot__registry_unlock(lk);
    return rc;
}

static int set_enabled(int argc, char **argv, bool enable)
{
    const char *cmd = enable ? "enable-topic-rule" : "disable-topic-rule";
    ciot__lx_opt o[] = {CIOT__LX_OPTS_COMMON, CIOT__LX_OPT_VALUE("--rule-name")};
    int rc = ciot__lx_parse(cmd, argc, argv, o, NOPTS);
    if (rc)
        return rc;
    if (!VAL("--rule-name"))
        return ciot__lx_usage_error(cmd, "the following argument is required: --rule-name");
    ciot__registry r;
    if ((rc = ciot__lx_open_reg(cmd, o, NOPTS, false, &r)) != 0)
        return rc;
    int lk;
    if ((rc = lock(&r, &lk)) != 0)
        return rc;
    json_t *d;
    rc = existing(&r, enable ? "EnableTopicRule" : "DisableTopicRule", VAL("--rule-name"), &d);
    if (rc == 0) {
        json_object_set_new(json_object_get(d, "topicRulePayload"), "ruleDisabled",
                            json_boolean(!enable));
        rc = save_rule(&r, VAL("--rule-name"), d);
    }
    json_decref(d);
    ciot__registry_unlock(lk);
    return rc;
}

static int cmd_enable(int argc, char **argv)
{
    return set_enabled(argc, argv, true);
}

static int cmd_disable(int argc, char **argv)
{
    return set_enabled(argc, argv, false);
}

/* deploy: aws cloudformation deploy. The rules of the template replace
 * those of the previous deployment of the same stack (rules it no longer
 * has are deleted); a rule of the same name made outside the stack is a
 * conflict. */
static int cmd_deploy(int argc, char **argv)
{
    ciot__lx_opt o[] = {CIOT__LX_OPTS_COMMON, CIOT__LX_OPT_VALUE("--template-file"),
                        CIOT__LX_OPT_VALUE("--stack-name"),
                        CIOT__LX_OPT("--parameter-overrides", CIOT__LX_MULTI),
                        CIOT__LX_OPT_FLAG("--skip-unsupported")};
    int rc = ciot__lx_parse("deploy", argc, argv, o, NOPTS);
    if (rc)
        return rc;
    if (!VAL("--template-file"))
        return ciot__lx_usage_error("deploy",
                                    "the following argument is required: --template-file");
    const char *stack = VAL("--stack-name") ? VAL("--stack-name") : "cloudiot-emulator";
    for (const char *s = stack; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              (*s == '-' && s != stack)) ||
            s - stack >= 128)
            return ciot__lx_usage_error("deploy",
                                        "--stack-name: 1 to 128 of [a-zA-Z0-9-], starting with a "
                                        "letter or digit");
    if (!*stack)
        return ciot__lx_usage_error("deploy", "--stack-name must not be empty");
    ciot__registry r;
    if ((rc = ciot__lx_open_reg("deploy", o, NOPTS, true, &r)) != 0)
        return rc;
    const char *file = VAL("--template-file");
    char arg[1100];
    snprintf(arg, sizeof arg, "file://%s", file);
    char *text;
    size_t len;
    if ((rc = read_arg("deploy", "--template-file", arg, &text, &len)) != 0)
        return rc;
    ciot__lx_opt *ov = ciot__lx_find(o, NOPTS, "--parameter-overrides");
    ciot__cfn_options co = {.region = r.region,
                            .account = r.account,
                            .stack_name = stack,
                            .overrides = (const char *const *)ov->values,
                            .noverrides = ov->nvalues,
                            .skip_unsupported =
                                ciot__lx_find(o, NOPTS, "--skip-unsupported")->seen};
    ciot__cfn_result res;
    char err[512];
    rc = ciot__cfn_load(&res, text, len, &co, err, sizeof err);
    free(text);
    if (rc == CIOT_ENOMEM)
        return ciot__lx_other_error("out of memory");
    if (rc)
        return ciot__lx_service_error("CreateChangeSet", "ValidationError", "Template error: %s:%s",
                                      file, err);
    /* every rule checked before anything is written */
    size_t i;
    json_t *rule;
    json_array_foreach(res.rules, i, rule)
    {
        char where[200];
        snprintf(where, sizeof where, "%s.topicRulePayload",
                 json_string_value(json_object_get(rule, "ruleName")));
        int crc = check_payload("CreateTopicRule",
                                json_string_value(json_object_get(rule, "ruleName")),
                                json_object_get(rule, "topicRulePayload"), where);
        if (crc) {
            fprintf(stderr, "\nFailed to create/update the stack %s: rule %s is invalid (see "
                            "above)\n",
                    stack, json_string_value(json_object_get(rule, "ruleName")));
            ciot__cfn_result_free(&res);
            return EXIT_OTHER;
        }
    }
    int lk;
    if ((rc = lock(&r, &lk)) != 0) {
        ciot__cfn_result_free(&res);
        return rc;
    }
    /* conflicts with rules made outside this stack */
    json_array_foreach(res.rules, i, rule)
    {
        const char *name = json_string_value(json_object_get(rule, "ruleName"));
        json_t *old;
        int lrc = load_rule(&r, name, &old);
        const char *owner = old ? json_string_value(json_object_get(old, "stackName")) : NULL;
        if (lrc != 0 && lrc != CIOT_ENOTFOUND) {
            rc = lrc;
        } else if (lrc == 0 && (!owner || strcmp(owner, stack) != 0)) {
            fprintf(stderr, "\nFailed to create/update the stack %s: %s already exists (%s)\n",
                    stack, name, owner ? owner : "made by create-topic-rule");
            rc = EXIT_OTHER;
        }
        json_decref(old);
        if (rc)
            break;
    }
    printf("\nWaiting for changeset to be created..\n");
    json_t *note;
    json_array_foreach(res.notes, i, note)
    {
        printf("Not emulated: %s (%s): %s\n", json_string_value(json_object_get(note, "logicalId")),
               json_string_value(json_object_get(note, "type")),
               json_string_value(json_object_get(note, "reason")));
    }
    if (rc == 0) {
        printf("Waiting for stack create/update to complete\n");
        json_array_foreach(res.rules, i, rule)
        {
            const char *name = json_string_value(json_object_get(rule, "ruleName"));
            json_t *old = NULL;
            (void)load_rule(&r, name, &old);
            json_t *doc = new_rule_doc(&r, name, json_object_get(rule, "topicRulePayload"), stack);
            if (doc && old)
                json_object_set(doc, "createdAt", json_object_get(old, "createdAt"));
            json_decref(old);
            rc = doc ? save_rule(&r, name, doc) : ciot__lx_other_error("out of memory");
            json_decref(doc);
            if (rc)
                break;
            printf("Rule %s: %s/registry/rules/%s.json\n", name, r.dir, name);
        }
    }
    if (rc == 0) {
        /* rules of the previous deployment that the template no longer has */
        char **names;
        size_t n;
        rc = list_names(&r, &names, &n);
        for (size_t k = 0; rc == 0 && k < n; k++) {
            json_t *d;
            if (load_rule(&r, names[k], &d) != 0)
                continue;
            const char *owner = json_string_value(json_object_get(d, "stackName"));
            bool keep = !owner || strcmp(owner, stack) != 0;
            json_array_foreach(res.rules, i, rule)
            {
                keep = keep || strcmp(json_string_value(json_object_get(rule, "ruleName")),
                                      names[k]) == 0;
            }
            json_decref(d);
            if (!keep) {
                rc = remove_rule(&r, names[k]);
                if (rc == 0)
                    printf("Rule %s: deleted (no longer in the template)\n", names[k]);
            }
        }
        free_names(names, n);
    }
    ciot__registry_unlock(lk);
    ciot__cfn_result_free(&res);
    if (rc == 0)
        printf("Successfully created/updated stack - %s\n", stack);
    fflush(stdout);
    return rc;
}

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
} commands[] = {
    {"create-topic-rule", cmd_create},   {"replace-topic-rule", cmd_replace},
    {"get-topic-rule", cmd_get},         {"list-topic-rules", cmd_list},
    {"delete-topic-rule", cmd_delete},   {"enable-topic-rule", cmd_enable},
    {"disable-topic-rule", cmd_disable}, {"deploy", cmd_deploy},
};

bool ciot__launcher_rules(const char *cmd, int argc, char **argv, int *status)
{
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(commands[i].name, cmd) == 0) {
            *status = commands[i].fn(argc, argv);
            return true;
        }
    return false;
}

void ciot__launcher_rules_usage(FILE *f)
{
    fprintf(f,
            "\n"
            "Topic rules, like `aws iot ...` (all take --data DIR):\n"
            "  create-topic-rule --rule-name N --topic-rule-payload file://F|JSON\n"
            "  replace-topic-rule --rule-name N --topic-rule-payload file://F|JSON\n"
            "  get-topic-rule --rule-name N\n"
            "  list-topic-rules [--topic FILTER] [--rule-disabled | --no-rule-disabled]\n"
            "  delete-topic-rule --rule-name N\n"
            "  enable-topic-rule --rule-name N    disable-topic-rule --rule-name N\n"
            "Rules from a CloudFormation template, like `aws cloudformation deploy`:\n"
            "  deploy --template-file F [--stack-name S] [--parameter-overrides K=V ...]\n"
            "      [--skip-unsupported]\n");
}
