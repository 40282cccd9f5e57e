/*
 * ciot_rules: a set of AWS IoT SQL rules with their actions (doc/rules.md).
 *
 * Each rule is compiled once by the pure core (core/rules_sql.h); candidate
 * rules for a message are found through a topic set on their FROM filters
 * (AWS matching: `#` does not match its parent level). A message on a Basic
 * Ingest topic `$aws/rules/<name>/...` goes to the rule <name> only.
 *
 * `${expression}` templates (republish topics, SQLite table names) are
 * compiled when the action is added, as `SELECT VALUE <expression> FROM
 * '<the rule's filter>'`: they run only after their rule fired, so the
 * filter matches, and the expression sees the same message (topic, payload,
 * client id, timestamp). The compiled form is checked to be exactly one
 * VALUE item without WHERE, so an expression cannot smuggle in clauses.
 *
 * Evaluating allocates nothing in steady state: the output document, the
 * expanded templates and the errorAction's document are written into
 * buffers the set keeps and grows only when a message needs more.
 */
#include "services/rules_internal.h"
#include "services/rules_sqlite.h"

#include "core/azure.h"
#include "core/rules_ast.h"
#include "core/rules_sql.h"
#include "internal.h"

#include <cloudiot/error.h>
#include <cloudiot/json.h>
#include <cloudiot/rules.h>
#include <cloudiot/topic.h>

#include <jansson.h>
#include <openssl/rand.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NAME_MAX_LEN 128
#define ERRMSG_CAP 320

enum akind { A_FUNCTION, A_REPUBLISH, A_SQLITE };

/* One piece of a template: literal text, or an expression. */
typedef struct tpart {
    const char *lit; /* into tmpl.text */
    size_t lit_len;
    ciot__rule *expr; /* NULL for a literal */
    size_t pos;       /* byte offset of the `${` in the template */
} tpart;

typedef struct tmpl {
    char *text; /* the template as given (NUL-terminated copy) */
    size_t len;
    tpart *parts;
    size_t nparts;
} tmpl;

typedef struct action {
    int kind;
    char *fn; /* A_FUNCTION: the function's name (NUL-terminated) */
    size_t fn_len;
    const char *label; /* AWS's name of the action ("LambdaAction", ...) */
    tmpl t;            /* A_REPUBLISH: topic; A_SQLITE: table */
    int qos;
} action;

typedef struct rule {
    char *name;
    size_t name_len;
    ciot__rule *sql;
    bool enabled;
    uint64_t seq; /* order of addition: rules fire in this order */
    action *acts;
    size_t nacts;
    action *err_act; /* errorAction, or NULL */
} rule;

typedef struct fnent {
    char *name;
    size_t len;
    ciot_rules_fn fn;
    void *ud;
} fnent;

/* A distinct FROM filter of the enabled rules, with how many use it. */
typedef struct filt {
    char *f;
    size_t len;
    size_t refs;
} filt;

typedef struct buf {
    char *p;
    size_t cap;
} buf;

struct ciot_rules_output {
    const rule *r;
    const char *doc;
    size_t doc_len;
    const char *topic;
    size_t topic_len;
    const char *fn;
    size_t fn_len;
    int64_t ts;
};

struct ciot_rules {
    rule **rules;
    size_t n, cap;
    uint64_t next_seq;
    ciot_topicset *ts;
    rule **cand; /* capacity cap: the candidates of one message */
    fnent *fns;
    size_t nfns, capfns;
    filt *filts; /* for ciot__rules_each_filter() */
    size_t nfilts, capfilts;
    ciot_rules_publish_fn pub;
    void *pub_ud;
    ciot_rules_fn out_cb;
    void *out_ud;
    ciot_rules_error_fn err_cb;
    void *err_ud;
    ciot_rules_clock_fn clock;
    void *clock_ud;
    ciot_rules_random_fn rnd;
    void *rnd_ud;
    ciot__sqlite_sink *db;
    ciot__rules_hooks hooks;
    bool has_hooks;
    int in_cb; /* > 0 while one of the set's callbacks runs */
    bool freeing;
    buf out;   /* output documents */
    buf val;   /* one template expression's value */
    buf exp;   /* an expanded template (NUL-terminated) */
    buf edoc;  /* the errorAction's document */
    buf b64;   /* the payload in base64 for it */
    char errmsg[ERRMSG_CAP];
};

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

static void seterr(ciot_rules *r, const char *fmt, ...) CIOT__PRINTF(2, 3);
static void seterr(ciot_rules *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->errmsg, sizeof r->errmsg, fmt, ap);
    va_end(ap);
}

/* Grows b to at least n bytes (no-op when big enough). */
static int buf_reserve(buf *b, size_t n)
{
    if (n <= b->cap)
        return 0;
    size_t c = b->cap ? b->cap : 256;
    while (c < n) {
        if (c > SIZE_MAX / 2)
            return CIOT_ENOMEM;
        c *= 2;
    }
    char *p = ciot__realloc(b->p, c);
    if (!p)
        return CIOT_ENOMEM;
    b->p = p;
    b->cap = c;
    return 0;
}

static bool name_ok(const char *s, size_t n)
{
    if (!s || n == 0 || n > NAME_MAX_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
    }
    return true;
}

/* A name for messages: at most 128 bytes, non-printable bytes as '?'. */
static const char *shown(char out[NAME_MAX_LEN + 1], const char *s, size_t n)
{
    if (!s)
        n = 0;
    if (n > NAME_MAX_LEN)
        n = NAME_MAX_LEN;
    for (size_t i = 0; i < n; i++)
        out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    out[n] = '\0';
    return out;
}

static rule *find_rule(const ciot_rules *r, const char *name, size_t len, size_t *at)
{
    for (size_t i = 0; i < r->n; i++) {
        rule *x = r->rules[i];
        if (x->name_len == len && memcmp(x->name, name, len) == 0) {
            if (at)
                *at = i;
            return x;
        }
    }
    return NULL;
}

static fnent *find_fn(const ciot_rules *r, const char *name, size_t len, size_t *at)
{
    for (size_t i = 0; i < r->nfns; i++) {
        if (r->fns[i].len == len && memcmp(r->fns[i].name, name, len) == 0) {
            if (at)
                *at = i;
            return &r->fns[i];
        }
    }
    return NULL;
}

static filt *find_filt(const ciot_rules *r, const char *f, size_t len)
{
    for (size_t i = 0; i < r->nfilts; i++)
        if (r->filts[i].len == len && memcmp(r->filts[i].f, f, len) == 0)
            return &r->filts[i];
    return NULL;
}

/* One more enabled rule uses the FROM filter of x. */
static int filt_ref(ciot_rules *r, const ciot__rule *x)
{
    size_t len;
    const char *f = ciot__rules_from(x, &len);
    filt *e = find_filt(r, f, len);
    if (e) {
        e->refs++;
        return 0;
    }
    if (r->nfilts == r->capfilts) {
        size_t c = r->capfilts ? r->capfilts * 2 : 8;
        filt *n = ciot__realloc(r->filts, c * sizeof *n);
        if (!n)
            return CIOT_ENOMEM;
        r->filts = n;
        r->capfilts = c;
    }
    char *copy = ciot__strndup(f, len);
    if (!copy)
        return CIOT_ENOMEM;
    r->filts[r->nfilts++] = (filt){copy, len, 1};
    return 0;
}

static void filt_unref(ciot_rules *r, const ciot__rule *x)
{
    size_t len;
    const char *f = ciot__rules_from(x, &len);
    filt *e = find_filt(r, f, len);
    if (!e || --e->refs > 0)
        return;
    ciot__free(e->f);
    *e = r->filts[--r->nfilts];
}

static void notify_filters(ciot_rules *r)
{
    if (r->has_hooks && r->hooks.filters_changed)
        r->hooks.filters_changed(r, r->hooks.ud);
}

/* ------------------------------------------------------------------ */
/* templates                                                           */

static void tmpl_free(tmpl *t)
{
    for (size_t i = 0; i < t->nparts; i++)
        ciot__rules_free(t->parts[i].expr);
    ciot__free(t->parts);
    ciot__free(t->text);
    memset(t, 0, sizeof *t);
}

static void action_free(action *a)
{
    if (!a)
        return;
    ciot__free(a->fn);
    tmpl_free(&a->t);
}

/* Compiles one `${...}` expression (src, n bytes) for the rule's filter. */
static int compile_expr(ciot__rule **out, const ciot__rule *owner, const char *src, size_t n,
                        size_t pos, char *err, size_t errcap)
{
    static const char pre[] = "SELECT VALUE ";
    static const char mid[] = " FROM '";
    size_t fl;
    const char *f = ciot__rules_from(owner, &fl);
    size_t quotes = 0;
    for (size_t i = 0; i < fl; i++)
        quotes += f[i] == '\'';
    size_t cap = sizeof pre - 1 + n + sizeof mid - 1 + fl + quotes + 1;
    if (n > CIOT__RULES_MAX_SQL || cap > CIOT__RULES_MAX_SQL) {
        snprintf(err, errcap, "template expression at byte %zu is too long", pos);
        return CIOT_ERANGE;
    }
    char sql[CIOT__RULES_MAX_SQL + 1];
    size_t k = 0;
    memcpy(sql, pre, sizeof pre - 1);
    k += sizeof pre - 1;
    memcpy(sql + k, src, n);
    k += n;
    memcpy(sql + k, mid, sizeof mid - 1);
    k += sizeof mid - 1;
    for (size_t i = 0; i < fl; i++) {
        sql[k++] = f[i];
        if (f[i] == '\'')
            sql[k++] = '\'';
    }
    sql[k++] = '\'';
    ciot__rules_error e;
    memset(&e, 0, sizeof e);
    ciot__rule *x = NULL;
    int rc = ciot__rules_compile(&x, &e, sql, k, CIOT__RULES_SQL_VERSION,
                                 sizeof CIOT__RULES_SQL_VERSION - 1);
    if (rc == CIOT_ENOMEM)
        return rc;
    const size_t expr_start = sizeof pre - 1;
    if (rc) {
        /* "LINE:COL: what" -> the position in the template */
        const char *what = strstr(e.msg, ": ");
        what = what ? what + 2 : e.msg;
        /* past the expression (at the FROM we appended): its end, the `}` */
        size_t at = e.offset < expr_start ? 0 : e.offset - expr_start;
        if (at >= n) {
            /* what was found there is our FROM: say the `}` instead */
            at = n;
            const char *found = strstr(what, ", found ");
            int wl = found ? (int)(found - what) : (int)strlen(what);
            snprintf(err, errcap, "template at byte %zu: %.*s, found '}'", pos + 2 + at, wl, what);
        } else {
            snprintf(err, errcap, "template at byte %zu: %s", pos + 2 + at, what);
        }
        return rc == CIOT_EVERSION ? CIOT_EINVAL : rc;
    }
    if (!x->value || x->nitems != 1 || x->where >= 0) {
        ciot__rules_free(x);
        snprintf(err, errcap, "template expression at byte %zu is not one expression", pos);
        return CIOT_EINVAL;
    }
    *out = x;
    return 0;
}

/*
 * Splits a template into literal parts and `${expression}` parts. The end
 * of an expression is the first `}` outside quotes and outside its own
 * `{...}` constructors.
 */
static int tmpl_compile(tmpl *t, const ciot__rule *owner, const char *s, size_t n, char *err,
                        size_t errcap)
{
    memset(t, 0, sizeof *t);
    if (!s || n == 0) {
        snprintf(err, errcap, "empty template");
        return CIOT_EINVAL;
    }
    if (n > 65535) {
        snprintf(err, errcap, "template longer than 65535 bytes");
        return CIOT_ERANGE;
    }
    if (memchr(s, '\0', n)) {
        snprintf(err, errcap, "template holds a NUL byte");
        return CIOT_EINVAL;
    }
    size_t maxparts = 1;
    for (size_t i = 0; i + 1 < n; i++)
        maxparts += s[i] == '$' && s[i + 1] == '{' ? 2 : 0;
    t->text = ciot__strndup(s, n);
    t->parts = ciot__calloc(maxparts, sizeof *t->parts);
    if (!t->text || !t->parts) {
        tmpl_free(t);
        return CIOT_ENOMEM;
    }
    t->len = n;
    const char *p = t->text;
    size_t i = 0, lit = 0;
    while (i < n) {
        if (!(p[i] == '$' && i + 1 < n && p[i + 1] == '{')) {
            i++;
            continue;
        }
        size_t start = i;
        if (i > lit) {
            t->parts[t->nparts++] = (tpart){p + lit, i - lit, NULL, lit};
        }
        size_t j = i + 2;
        int depth = 0;
        char q = 0;
        bool closed = false;
        for (; j < n; j++) {
            char c = p[j];
            if (q) {
                if (c == q) {
                    if (j + 1 < n && p[j + 1] == q)
                        j++; /* doubled quote */
                    else
                        q = 0;
                }
            } else if (c == '\'' || c == '"') {
                q = c;
            } else if (c == '{') {
                depth++;
            } else if (c == '}') {
                if (depth == 0) {
                    closed = true;
                    break;
                }
                depth--;
            }
        }
        if (!closed) {
            snprintf(err, errcap, "template: unbalanced '${' at byte %zu", start);
            tmpl_free(t);
            return CIOT_EINVAL;
        }
        size_t el = j - (start + 2);
        bool blank = true;
        for (size_t k = start + 2; k < j && blank; k++)
            blank = p[k] == ' ' || p[k] == '\t' || p[k] == '\n' || p[k] == '\r';
        if (blank) {
            snprintf(err, errcap, "template: empty '${}' at byte %zu", start);
            tmpl_free(t);
            return CIOT_EINVAL;
        }
        ciot__rule *x = NULL;
        int rc = compile_expr(&x, owner, p + start + 2, el, start, err, errcap);
        if (rc) {
            tmpl_free(t);
            return rc;
        }
        t->parts[t->nparts++] = (tpart){NULL, 0, x, start};
        i = lit = j + 1;
    }
    if (n > lit)
        t->parts[t->nparts++] = (tpart){p + lit, n - lit, NULL, lit};
    return 0;
}

static bool tmpl_has_expr(const tmpl *t)
{
    for (size_t i = 0; i < t->nparts; i++)
        if (t->parts[i].expr)
            return true;
    return false;
}

/* Evaluates one expression into r->val: *out is its JSON text, and *str
 * is true for a string (which the caller unescapes). */
static int eval_expr(ciot_rules *r, const ciot__rule *x, ciot__rules_doc *m,
                     ciot_json_value *out, bool *str, char *err, size_t errcap, size_t pos)
{
    bool fired = false;
    size_t len = 0;
    /* only evaluated once the owner has fired: the topic matches FROM */
    int rc = ciot__rules_eval_doc(&fired, &len, r->val.p, r->val.cap, x, m, true);
    if (rc == CIOT_ENOSPC) {
        rc = buf_reserve(&r->val, len + 1);
        if (rc) {
            snprintf(err, errcap, "out of memory");
            return rc;
        }
        rc = ciot__rules_eval_doc(&fired, &len, r->val.p, r->val.cap, x, m, true);
    }
    if (rc) {
        snprintf(err, errcap, "template expression at byte %zu: %s", pos, ciot_strerror(rc));
        return rc;
    }
    if (!fired) {
        snprintf(err, errcap, "template expression at byte %zu is Undefined", pos);
        return CIOT_ENOTFOUND;
    }
    rc = ciot_json_find(r->val.p, len, NULL, 0, out);
    if (rc) {
        /* numbers beyond a double, which the core copies verbatim */
        out->type = CIOT_JSON_NUMBER;
        out->ptr = r->val.p;
        out->len = len;
    }
    if (out->type == CIOT_JSON_NULL) {
        snprintf(err, errcap, "template expression at byte %zu is null", pos);
        return CIOT_ENOTFOUND;
    }
    *str = out->type == CIOT_JSON_STRING;
    return 0;
}

/* Expands t into r->exp (NUL-terminated): strings raw, anything else as
 * its JSON text. */
static int tmpl_expand(ciot_rules *r, const tmpl *t, ciot__rules_doc *m, size_t *out_len,
                       char *err, size_t errcap)
{
    size_t n = 0;
    for (size_t i = 0; i < t->nparts; i++) {
        const tpart *pt = &t->parts[i];
        const char *s = pt->lit;
        size_t sl = pt->lit_len;
        bool str = false;
        ciot_json_value v;
        if (pt->expr) {
            int rc = eval_expr(r, pt->expr, m, &v, &str, err, errcap, pt->pos);
            if (rc)
                return rc;
            s = v.ptr;
            sl = v.len; /* unescaped, a string is never longer than its JSON */
        }
        if (sl > SIZE_MAX - n - 1 || buf_reserve(&r->exp, n + sl + 1)) {
            snprintf(err, errcap, "out of memory");
            return CIOT_ENOMEM;
        }
        if (str) {
            int rc = ciot_json_get_string(&v, r->exp.p + n, r->exp.cap - n, &sl);
            if (rc) {
                snprintf(err, errcap, "template expression at byte %zu: %s", pt->pos,
                         ciot_strerror(rc));
                return rc;
            }
        } else {
            memcpy(r->exp.p + n, s, sl);
        }
        n += sl;
    }
    if (buf_reserve(&r->exp, n + 1)) {
        snprintf(err, errcap, "out of memory");
        return CIOT_ENOMEM;
    }
    r->exp.p[n] = '\0';
    *out_len = n;
    return 0;
}

/* ------------------------------------------------------------------ */
/* the set                                                             */

int ciot_rules_new(ciot_rules **out)
{
    if (!out)
        return CIOT_EINVAL;
    *out = NULL;
    ciot_rules *r = ciot__calloc(1, sizeof *r);
    if (!r)
        return CIOT_ENOMEM;
    int rc = ciot_topicset_new_ex(&r->ts, CIOT_MATCH_AWS);
    if (rc) {
        ciot__free(r);
        return rc;
    }
    *out = r;
    return 0;
}

static void rule_free(rule *x)
{
    if (!x)
        return;
    for (size_t i = 0; i < x->nacts; i++)
        action_free(&x->acts[i]);
    ciot__free(x->acts);
    action_free(x->err_act);
    ciot__free(x->err_act);
    ciot__rules_free(x->sql);
    ciot__free(x->name);
    ciot__free(x);
}

int ciot_rules_free(ciot_rules *r)
{
    if (!r)
        return 0;
    if (r->in_cb)
        return CIOT_ERECURSIVE;
    if (r->freeing)
        return 0;
    r->freeing = true;
    if (r->has_hooks && r->hooks.freeing)
        r->hooks.freeing(r, r->hooks.ud);
    for (size_t i = 0; i < r->n; i++)
        rule_free(r->rules[i]);
    ciot__free(r->rules);
    ciot__free(r->cand);
    for (size_t i = 0; i < r->nfns; i++)
        ciot__free(r->fns[i].name);
    ciot__free(r->fns);
    for (size_t i = 0; i < r->nfilts; i++)
        ciot__free(r->filts[i].f);
    ciot__free(r->filts);
    ciot_topicset_free(r->ts);
    if (r->db)
        ciot__sqlite_sink_close(r->db);
    ciot__free(r->out.p);
    ciot__free(r->val.p);
    ciot__free(r->exp.p);
    ciot__free(r->edoc.p);
    ciot__free(r->b64.p);
    ciot__free(r);
    return 0;
}

const char *ciot_rules_errmsg(const ciot_rules *r)
{
    return r ? r->errmsg : "";
}

size_t ciot_rules_count(const ciot_rules *r)
{
    return r ? r->n : 0;
}

/* Common entry checks of the calls that change the set. */
static int enter_change(ciot_rules *r)
{
    if (!r)
        return CIOT_EINVAL;
    if (r->in_cb) {
        seterr(r, "not allowed from inside a callback of the rule set");
        return CIOT_ERECURSIVE;
    }
    r->errmsg[0] = '\0';
    return 0;
}

/* Makes room for one more rule (rules and candidates arrays). */
static int reserve_rule(ciot_rules *r)
{
    if (r->n < r->cap)
        return 0;
    size_t c = r->cap ? r->cap * 2 : 8;
    rule **a = ciot__realloc(r->rules, c * sizeof *a);
    if (!a)
        return CIOT_ENOMEM;
    r->rules = a;
    rule **b = ciot__realloc(r->cand, c * sizeof *b);
    if (!b)
        return CIOT_ENOMEM; /* rules grown, cand not: cap unchanged, retried next time */
    r->cand = b;
    r->cap = c;
    return 0;
}

/* Compiles and creates a rule (not yet in the set). */
static int rule_make(ciot_rules *r, rule **out, const char *name, size_t name_len, const char *sql,
                     size_t sql_len, const char *version, size_t version_len)
{
    char nm[NAME_MAX_LEN + 1];
    if (!name_ok(name, name_len)) {
        seterr(r, "rule '%s': a rule name is 1..128 of A-Z a-z 0-9 _", shown(nm, name, name_len));
        return CIOT_EINVAL;
    }
    if (find_rule(r, name, name_len, NULL)) {
        seterr(r, "rule %s: a rule of that name exists", shown(nm, name, name_len));
        return CIOT_EEXIST;
    }
    if (!sql && sql_len) {
        seterr(r, "rule %s: NULL SQL", shown(nm, name, name_len));
        return CIOT_EINVAL;
    }
    ciot__rules_error e;
    memset(&e, 0, sizeof e);
    ciot__rule *c = NULL;
    int rc = ciot__rules_compile(&c, &e, sql ? sql : "", sql_len, version, version_len);
    if (rc) {
        if (rc == CIOT_ENOMEM)
            seterr(r, "rule %s: out of memory", shown(nm, name, name_len));
        else
            seterr(r, "rule %s: %s", shown(nm, name, name_len), e.msg);
        return rc;
    }
    rule *x = ciot__calloc(1, sizeof *x);
    char *n = ciot__strndup(name, name_len);
    if (!x || !n) {
        ciot__free(x);
        ciot__free(n);
        ciot__rules_free(c);
        seterr(r, "rule %s: out of memory", shown(nm, name, name_len));
        return CIOT_ENOMEM;
    }
    x->name = n;
    x->name_len = name_len;
    x->sql = c;
    x->enabled = true;
    *out = x;
    return 0;
}

/* Puts a made rule into the set. On failure the rule is freed. */
static int rule_insert(ciot_rules *r, rule *x)
{
    size_t fl;
    const char *f = ciot__rules_from(x->sql, &fl);
    int rc = reserve_rule(r);
    if (rc == 0 && x->enabled)
        rc = filt_ref(r, x->sql);
    if (rc == 0 && (rc = ciot_topicset_add(r->ts, f, fl, x)) != 0 && x->enabled)
        filt_unref(r, x->sql);
    if (rc) {
        char nm[NAME_MAX_LEN + 1];
        seterr(r, "rule %s: %s", shown(nm, x->name, x->name_len), ciot_strerror(rc));
        rule_free(x);
        return rc;
    }
    x->seq = r->next_seq++;
    r->rules[r->n++] = x;
    notify_filters(r);
    return 0;
}

int ciot_rules_add_sql(ciot_rules *r, const char *name, size_t name_len, const char *sql,
                       size_t sql_len)
{
    int rc = enter_change(r);
    if (rc)
        return rc;
    rule *x = NULL;
    rc = rule_make(r, &x, name, name_len, sql, sql_len, CIOT__RULES_SQL_VERSION,
                   sizeof CIOT__RULES_SQL_VERSION - 1);
    return rc ? rc : rule_insert(r, x);
}

int ciot_rules_remove(ciot_rules *r, const char *name, size_t name_len)
{
    int rc = enter_change(r);
    if (rc)
        return rc;
    size_t at = 0;
    rule *x = name ? find_rule(r, name, name_len, &at) : NULL;
    if (!x) {
        char nm[NAME_MAX_LEN + 1];
        seterr(r, "rule %s: no such rule", shown(nm, name, name_len));
        return CIOT_ENOTFOUND;
    }
    size_t fl;
    const char *f = ciot__rules_from(x->sql, &fl);
    int rm = ciot_topicset_remove(r->ts, f, fl, x); /* it is there: cannot fail */
    (void)rm;
    if (x->enabled)
        filt_unref(r, x->sql);
    memmove(&r->rules[at], &r->rules[at + 1], (r->n - at - 1) * sizeof r->rules[0]);
    r->n--;
    rule_free(x);
    notify_filters(r);
    return 0;
}

int ciot_rules_enable(ciot_rules *r, const char *name, size_t name_len, bool enabled)
{
    int rc = enter_change(r);
    if (rc)
        return rc;
    rule *x = name ? find_rule(r, name, name_len, NULL) : NULL;
    if (!x) {
        char nm[NAME_MAX_LEN + 1];
        seterr(r, "rule %s: no such rule", shown(nm, name, name_len));
        return CIOT_ENOTFOUND;
    }
    if (x->enabled != enabled) {
        if (enabled && filt_ref(r, x->sql) != 0) {
            char nm[NAME_MAX_LEN + 1];
            seterr(r, "rule %s: out of memory", shown(nm, name, name_len));
            return CIOT_ENOMEM;
        }
        if (!enabled)
            filt_unref(r, x->sql);
        x->enabled = enabled;
        notify_filters(r);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* actions                                                             */

static int make_function_action(action *a, const char *fn, size_t fn_len, const char *label)
{
    memset(a, 0, sizeof *a);
    a->kind = A_FUNCTION;
    a->label = label;
    a->fn = ciot__strndup(fn, fn_len);
    a->fn_len = fn_len;
    return a->fn ? 0 : CIOT_ENOMEM;
}

/* Checks the literal parts of a republish topic template (and the whole
 * topic when it has no expression). */
static int check_topic_template(const tmpl *t, char *err, size_t errcap)
{
    if (!tmpl_has_expr(t)) {
        if (ciot_topic_name_check(t->text, t->len)) {
            snprintf(err, errcap, "republish topic '%.*s' is not a valid topic name",
                     (int)(t->len > 200 ? 200 : t->len), t->text);
            return CIOT_EINVAL;
        }
        return 0;
    }
    for (size_t i = 0; i < t->nparts; i++) {
        const tpart *p = &t->parts[i];
        if (!p->expr && (memchr(p->lit, '+', p->lit_len) || memchr(p->lit, '#', p->lit_len))) {
            snprintf(err, errcap, "republish topic template: a wildcard at byte %zu",
                     p->pos + (size_t)((const char *)(memchr(p->lit, '+', p->lit_len)
                                                          ? memchr(p->lit, '+', p->lit_len)
                                                          : memchr(p->lit, '#', p->lit_len)) -
                                       p->lit));
            return CIOT_EINVAL;
        }
    }
    return 0;
}

static int make_template_action(action *a, int kind, const rule *owner, const char *text,
                                size_t len, int qos, const char *label, char *err, size_t errcap)
{
    memset(a, 0, sizeof *a);
    a->kind = kind;
    a->label = label;
    a->qos = qos;
    int rc = tmpl_compile(&a->t, owner->sql, text, len, err, errcap);
    if (rc == 0 && kind == A_REPUBLISH)
        rc = check_topic_template(&a->t, err, errcap);
    if (rc)
        tmpl_free(&a->t);
    return rc;
}

/* Appends a (made) action to x; frees it on failure. */
static int append_action(rule *x, action *a)
{
    action *n = ciot__realloc(x->acts, (x->nacts + 1) * sizeof *n);
    if (!n) {
        action_free(a);
        return CIOT_ENOMEM;
    }
    x->acts = n;
    x->acts[x->nacts++] = *a;
    return 0;
}

/* The rule an action is added to (entry checks and message). */
static int action_target(ciot_rules *r, rule **out, const char *rule_name, size_t rule_len)
{
    int rc = enter_change(r);
    if (rc)
        return rc;
    *out = rule_name ? find_rule(r, rule_name, rule_len, NULL) : NULL;
    if (!*out) {
        char nm[NAME_MAX_LEN + 1];
        seterr(r, "rule %s: no such rule", shown(nm, rule_name, rule_len));
        return CIOT_ENOTFOUND;
    }
    return 0;
}

int ciot_rules_add_function_action(ciot_rules *r, const char *rule_name, size_t rule_len,
                                   const char *function, size_t function_len)
{
    rule *x;
    int rc = action_target(r, &x, rule_name, rule_len);
    if (rc)
        return rc;
    char nm[NAME_MAX_LEN + 1];
    if (!function || function_len == 0 || function_len > NAME_MAX_LEN ||
        memchr(function, '\0', function_len)) {
        seterr(r, "rule %s: a function name is 1..128 bytes without NUL",
               shown(nm, x->name, x->name_len));
        return CIOT_EINVAL;
    }
    action a;
    rc = make_function_action(&a, function, function_len, "FunctionAction");
    rc = rc ? rc : append_action(x, &a);
    if (rc)
        seterr(r, "rule %s: out of memory", shown(nm, x->name, x->name_len));
    return rc;
}

int ciot_rules_add_republish_action(ciot_rules *r, const char *rule_name, size_t rule_len,
                                    const char *topic, size_t topic_len, int qos)
{
    rule *x;
    int rc = action_target(r, &x, rule_name, rule_len);
    if (rc)
        return rc;
    char nm[NAME_MAX_LEN + 1];
    if (qos != 0 && qos != 1) {
        seterr(r, "rule %s: republish QoS %d (0 or 1)", shown(nm, x->name, x->name_len), qos);
        return CIOT_EINVAL;
    }
    char err[200];
    action a;
    rc = make_template_action(&a, A_REPUBLISH, x, topic, topic_len, qos, "RepublishAction", err,
                              sizeof err);
    if (rc == 0 && (rc = append_action(x, &a)) != 0)
        snprintf(err, sizeof err, "out of memory");
    if (rc)
        seterr(r, "rule %s: %s", shown(nm, x->name, x->name_len),
               rc == CIOT_ENOMEM ? "out of memory" : err);
    return rc;
}

int ciot_rules_add_sqlite_action(ciot_rules *r, const char *rule_name, size_t rule_len,
                                 const char *table, size_t table_len)
{
    rule *x;
    int rc = action_target(r, &x, rule_name, rule_len);
    if (rc)
        return rc;
    char nm[NAME_MAX_LEN + 1];
    char err[200];
    action a;
    rc = make_template_action(&a, A_SQLITE, x, table, table_len, 0, "SqliteAction", err,
                              sizeof err);
    if (rc == 0 && (rc = append_action(x, &a)) != 0)
        snprintf(err, sizeof err, "out of memory");
    if (rc)
        seterr(r, "rule %s: %s", shown(nm, x->name, x->name_len),
               rc == CIOT_ENOMEM ? "out of memory" : err);
    return rc;
}

/* ------------------------------------------------------------------ */
/* where actions go                                                    */

int ciot_rules_set_function(ciot_rules *r, const char *name, size_t name_len, ciot_rules_fn fn,
                            void *user_data)
{
    int rc = enter_change(r);
    if (rc)
        return rc;
    if (!name || name_len == 0 || name_len > NAME_MAX_LEN || memchr(name, '\0', name_len)) {
        seterr(r, "a function name is 1..128 bytes without NUL");
        return CIOT_EINVAL;
    }
    size_t at = 0;
    fnent *e = find_fn(r, name, name_len, &at);
    if (!fn) {
        if (!e) {
            char nm[NAME_MAX_LEN + 1];
            seterr(r, "function %s: not registered", shown(nm, name, name_len));
            return CIOT_ENOTFOUND;
        }
        ciot__free(e->name);
        r->fns[at] = r->fns[--r->nfns];
        return 0;
    }
    if (e) {
        e->fn = fn;
        e->ud = user_data;
        return 0;
    }
    if (r->nfns == r->capfns) {
        size_t c = r->capfns ? r->capfns * 2 : 4;
        fnent *n = ciot__realloc(r->fns, c * sizeof *n);
        if (!n) {
            seterr(r, "out of memory");
            return CIOT_ENOMEM;
        }
        r->fns = n;
        r->capfns = c;
    }
    char *copy = ciot__strndup(name, name_len);
    if (!copy) {
        seterr(r, "out of memory");
        return CIOT_ENOMEM;
    }
    r->fns[r->nfns++] = (fnent){copy, name_len, fn, user_data};
    return 0;
}

void ciot_rules_set_publisher(ciot_rules *r, ciot_rules_publish_fn fn, void *user_data)
{
    if (r) {
        r->pub = fn;
        r->pub_ud = fn ? user_data : NULL;
    }
}

int ciot_rules_open_sqlite(ciot_rules *r, const char *path)
{
    int rc = enter_change(r);
    if (rc)
        return rc;
    if (!path) {
        seterr(r, "NULL database path");
        return CIOT_EINVAL;
    }
    ciot__sqlite_sink *s = NULL;
    char err[200] = "";
    rc = ciot__sqlite_sink_open(&s, path, err, sizeof err);
    if (rc) {
        if (rc == CIOT_ENOTBUILT)
            seterr(r, "this library was built without SQLite");
        else
            seterr(r, "SQLite database '%.*s': %s", 120, path, err[0] ? err : ciot_strerror(rc));
        return rc;
    }
    if (r->db)
        ciot__sqlite_sink_close(r->db);
    r->db = s;
    return 0;
}

void ciot_rules_set_output_callback(ciot_rules *r, ciot_rules_fn fn, void *user_data)
{
    if (r) {
        r->out_cb = fn;
        r->out_ud = user_data;
    }
}

void ciot_rules_set_error_callback(ciot_rules *r, ciot_rules_error_fn fn, void *user_data)
{
    if (r) {
        r->err_cb = fn;
        r->err_ud = user_data;
    }
}

void ciot_rules_set_clock(ciot_rules *r, ciot_rules_clock_fn fn, void *user_data)
{
    if (r) {
        r->clock = fn;
        r->clock_ud = user_data;
    }
}

void ciot_rules_set_random(ciot_rules *r, ciot_rules_random_fn fn, void *user_data)
{
    if (r) {
        r->rnd = fn;
        r->rnd_ud = user_data;
    }
}

/* ------------------------------------------------------------------ */
/* CreateTopicRule payloads (jansson)                                  */

static bool only_members(json_t *o, const char *const *known, const char **bad)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        bool ok = false;
        for (size_t i = 0; known[i] && !ok; i++)
            ok = strcmp(k, known[i]) == 0;
        if (!ok) {
            *bad = k;
            return false;
        }
    }
    return true;
}

/* A string member (NULL when absent); *bad when present but not a string. */
static const char *str_member(json_t *o, const char *key, size_t *len, bool *bad)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return NULL;
    if (!json_is_string(v)) {
        *bad = true;
        return NULL;
    }
    *len = json_string_length(v);
    return json_string_value(v);
}

/*
 * One action object of a payload ({"lambda":{...}} etc.) into *a.
 * @p where is "action N" or "errorAction" for messages.
 */
static int parse_action(action *a, const rule *owner, json_t *obj, const char *where, char *err,
                        size_t errcap)
{
    if (!json_is_object(obj) || json_object_size(obj) != 1) {
        snprintf(err, errcap, "%s: an object with exactly one action kind expected", where);
        return CIOT_EINVAL;
    }
    const char *kind = json_object_iter_key(json_object_iter(obj));
    json_t *body = json_object_iter_value(json_object_iter(obj));
    if (!json_is_object(body)) {
        snprintf(err, errcap, "%s: '%.60s' must be an object", where, kind);
        return CIOT_EINVAL;
    }
    const char *badm = NULL;
    bool bad = false;
    size_t l1 = 0, l2 = 0;
    if (strcmp(kind, "lambda") == 0) {
        static const char *const known[] = {"functionArn", NULL};
        if (!only_members(body, known, &badm))
            goto unknown_member;
        const char *arn = str_member(body, "functionArn", &l1, &bad);
        if (!arn || bad) {
            snprintf(err, errcap, "%s: lambda needs a string functionArn", where);
            return CIOT_EINVAL;
        }
        /* arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER] */
        static const char mark[] = ":function:";
        const char *f = NULL;
        for (size_t i = 0; i + sizeof mark - 1 <= l1 && !f; i++)
            if (memcmp(arn + i, mark, sizeof mark - 1) == 0)
                f = arn + i + sizeof mark - 1;
        if (!f) {
            snprintf(err, errcap, "%s: lambda functionArn '%.100s' has no ':function:<name>'",
                     where, arn);
            return CIOT_EINVAL;
        }
        size_t fl = (size_t)(arn + l1 - f);
        const char *colon = memchr(f, ':', fl);
        if (colon)
            fl = (size_t)(colon - f); /* the alias or version is dropped */
        if (fl == 0 || fl > NAME_MAX_LEN) {
            snprintf(err, errcap, "%s: lambda functionArn '%.100s': bad function name", where,
                     arn);
            return CIOT_EINVAL;
        }
        return make_function_action(a, f, fl, "LambdaAction");
    }
    if (strcmp(kind, "sns") == 0) {
        static const char *const known[] = {"targetArn", "roleArn", "messageFormat", NULL};
        if (!only_members(body, known, &badm))
            goto unknown_member;
        const char *arn = str_member(body, "targetArn", &l1, &bad);
        const char *fmt = str_member(body, "messageFormat", &l2, &bad);
        (void)str_member(body, "roleArn", &l2, &bad);
        if (!arn || bad) {
            snprintf(err, errcap, "%s: sns needs a string targetArn (and string roleArn, messageFormat)",
                     where);
            return CIOT_EINVAL;
        }
        if (fmt && strcmp(fmt, "RAW") != 0 && strcmp(fmt, "JSON") != 0) {
            snprintf(err, errcap, "%s: sns messageFormat '%.40s' (RAW or JSON)", where, fmt);
            return CIOT_EINVAL;
        }
        const char *last = arn;
        for (size_t i = 0; i < l1; i++)
            if (arn[i] == ':')
                last = arn + i + 1;
        size_t nl = (size_t)(arn + l1 - last);
        if (nl == 0 || nl > NAME_MAX_LEN || last == arn) {
            snprintf(err, errcap, "%s: sns targetArn '%.100s': no topic name after ':'", where,
                     arn);
            return CIOT_EINVAL;
        }
        return make_function_action(a, last, nl, "SnsAction");
    }
    if (strcmp(kind, "republish") == 0) {
        static const char *const known[] = {"topic", "qos", "roleArn", "headers", NULL};
        if (!only_members(body, known, &badm))
            goto unknown_member;
        const char *topic = str_member(body, "topic", &l1, &bad);
        (void)str_member(body, "roleArn", &l2, &bad);
        if (!topic || bad) {
            snprintf(err, errcap, "%s: republish needs a string topic (and string roleArn)", where);
            return CIOT_EINVAL;
        }
        json_t *q = json_object_get(body, "qos");
        int qos = 0;
        if (q) {
            if (!json_is_integer(q) || (json_integer_value(q) != 0 && json_integer_value(q) != 1)) {
                snprintf(err, errcap, "%s: republish qos must be 0 or 1", where);
                return CIOT_EINVAL;
            }
            qos = (int)json_integer_value(q);
        }
        char terr[200];
        int rc = make_template_action(a, A_REPUBLISH, owner, topic, l1, qos, "RepublishAction",
                                      terr, sizeof terr);
        if (rc && rc != CIOT_ENOMEM)
            snprintf(err, errcap, "%s: %s", where, terr);
        return rc;
    }
    if (strcmp(kind, "dynamoDBv2") == 0) {
        static const char *const known[] = {"roleArn", "putItem", NULL};
        static const char *const known_put[] = {"tableName", NULL};
        if (!only_members(body, known, &badm))
            goto unknown_member;
        (void)str_member(body, "roleArn", &l2, &bad);
        json_t *put = json_object_get(body, "putItem");
        if (bad || !json_is_object(put)) {
            snprintf(err, errcap, "%s: dynamoDBv2 needs a putItem object (and string roleArn)",
                     where);
            return CIOT_EINVAL;
        }
        if (!only_members(put, known_put, &badm)) {
            snprintf(err, errcap, "%s: dynamoDBv2 putItem: unknown member '%.60s'", where, badm);
            return CIOT_EINVAL;
        }
        const char *table = str_member(put, "tableName", &l1, &bad);
        if (!table || bad) {
            snprintf(err, errcap, "%s: dynamoDBv2 putItem needs a string tableName", where);
            return CIOT_EINVAL;
        }
        char terr[200];
        int rc = make_template_action(a, A_SQLITE, owner, table, l1, 0, "DynamoDBv2Action", terr,
                                      sizeof terr);
        if (rc && rc != CIOT_ENOMEM)
            snprintf(err, errcap, "%s: %s", where, terr);
        return rc;
    }
    snprintf(err, errcap,
             "%s: unsupported action '%.60s' (supported: lambda, sns, republish, dynamoDBv2)",
             where, kind);
    return CIOT_EINVAL;
unknown_member:
    snprintf(err, errcap, "%s: %s: unknown member '%.60s'", where, kind, badm);
    return CIOT_EINVAL;
}

int ciot_rules_add_payload(ciot_rules *r, const char *name, size_t name_len, const char *json,
                           size_t json_len)
{
    int rc = enter_change(r);
    if (rc)
        return rc;
    if (!json && json_len) {
        seterr(r, "NULL payload");
        return CIOT_EINVAL;
    }
    if (name && !name_ok(name, name_len)) {
        char nm[NAME_MAX_LEN + 1];
        seterr(r, "rule '%s': a rule name is 1..128 of A-Z a-z 0-9 _", shown(nm, name, name_len));
        return CIOT_EINVAL;
    }
    json_error_t je;
    memset(&je, 0, sizeof je);
    json_t *root = json_loadb(json ? json : "", json_len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        seterr(r, "rule payload: %d:%d: %s", je.line, je.column, je.text);
        return CIOT_EINVAL;
    }
    char nmb[NAME_MAX_LEN + 1], nmb2[NAME_MAX_LEN + 1];
    rule *x = NULL;
    json_t *p = root;
    const char *badm = NULL;
    char err[240] = "";
    rc = CIOT_EINVAL;
    if (!json_is_object(root)) {
        seterr(r, "rule payload: a JSON object expected");
        goto done;
    }
    if (json_object_get(root, "topicRulePayload")) {
        static const char *const outer[] = {"ruleName", "topicRulePayload", "tags", NULL};
        if (!only_members(root, outer, &badm)) {
            seterr(r, "rule payload: unknown member '%.60s'", badm);
            goto done;
        }
        json_t *rn = json_object_get(root, "ruleName");
        p = json_object_get(root, "topicRulePayload");
        if (rn && !json_is_string(rn)) {
            seterr(r, "rule payload: ruleName must be a string");
            goto done;
        }
        if (!json_is_object(p)) {
            seterr(r, "rule payload: topicRulePayload must be an object");
            goto done;
        }
        if (rn) {
            const char *s = json_string_value(rn);
            size_t sl = json_string_length(rn);
            if (name && (sl != name_len || memcmp(s, name, sl) != 0)) {
                seterr(r, "rule %s: the payload's ruleName is '%s'", shown(nmb, name, name_len),
                       shown(nmb2, s, sl));
                goto done;
            }
            if (!name) {
                name = s;
                name_len = sl;
            }
        }
    }
    if (!name) {
        seterr(r, "rule payload: no rule name (pass one, or use {\"ruleName\":..., "
                  "\"topicRulePayload\":...})");
        goto done;
    }
    static const char *const members[] = {"sql",     "description", "ruleDisabled", "awsIotSqlVersion",
                                          "actions", "errorAction", NULL};
    if (!only_members(p, members, &badm)) {
        seterr(r, "rule %s: unknown member '%.60s'", shown(nmb, name, name_len), badm);
        goto done;
    }
    json_t *sql = json_object_get(p, "sql");
    json_t *desc = json_object_get(p, "description");
    json_t *dis = json_object_get(p, "ruleDisabled");
    json_t *ver = json_object_get(p, "awsIotSqlVersion");
    json_t *acts = json_object_get(p, "actions");
    json_t *eact = json_object_get(p, "errorAction");
    if (!json_is_string(sql)) {
        seterr(r, "rule %s: 'sql' must be a string", shown(nmb, name, name_len));
        goto done;
    }
    if (desc && !json_is_string(desc)) {
        seterr(r, "rule %s: 'description' must be a string", shown(nmb, name, name_len));
        goto done;
    }
    if (dis && !json_is_boolean(dis)) {
        seterr(r, "rule %s: 'ruleDisabled' must be true or false", shown(nmb, name, name_len));
        goto done;
    }
    if (acts && !json_is_array(acts)) {
        seterr(r, "rule %s: 'actions' must be an array", shown(nmb, name, name_len));
        goto done;
    }
    if (ver && !json_is_string(ver)) {
        seterr(r, "rule %s: 'awsIotSqlVersion' must be a string", shown(nmb, name, name_len));
        goto done;
    }
    if (!ver) {
        seterr(r,
               "rule %s: no awsIotSqlVersion: AWS then uses 2015-10-08, which this library does "
               "not implement; set \"awsIotSqlVersion\": \"2016-03-23\"",
               shown(nmb, name, name_len));
        rc = CIOT_EVERSION;
        goto done;
    }
    if (strcmp(json_string_value(ver), CIOT__RULES_SQL_VERSION) != 0 ||
        json_string_length(ver) != sizeof CIOT__RULES_SQL_VERSION - 1) {
        seterr(r, "rule %s: awsIotSqlVersion '%.40s' is not supported (only 2016-03-23)",
               shown(nmb, name, name_len), json_string_value(ver));
        rc = CIOT_EVERSION;
        goto done;
    }
    rc = rule_make(r, &x, name, name_len, json_string_value(sql), json_string_length(sql),
                   json_string_value(ver), json_string_length(ver));
    if (rc)
        goto done;
    x->enabled = !(dis && json_is_true(dis));
    size_t na = acts ? json_array_size(acts) : 0;
    if (na) {
        x->acts = ciot__calloc(na, sizeof *x->acts);
        if (!x->acts) {
            rc = CIOT_ENOMEM;
            goto oom;
        }
    }
    for (size_t i = 0; i < na; i++) {
        char where[32];
        snprintf(where, sizeof where, "action %zu", i);
        rc = parse_action(&x->acts[i], x, json_array_get(acts, i), where, err, sizeof err);
        if (rc == CIOT_ENOMEM)
            goto oom;
        if (rc) {
            seterr(r, "rule %s: %s", shown(nmb, name, name_len), err);
            goto done;
        }
        x->nacts++;
    }
    if (eact) {
        x->err_act = ciot__calloc(1, sizeof *x->err_act);
        if (!x->err_act) {
            rc = CIOT_ENOMEM;
            goto oom;
        }
        rc = parse_action(x->err_act, x, eact, "errorAction", err, sizeof err);
        if (rc) {
            ciot__free(x->err_act);
            x->err_act = NULL;
            if (rc == CIOT_ENOMEM)
                goto oom;
            seterr(r, "rule %s: %s", shown(nmb, name, name_len), err);
            goto done;
        }
    }
    json_decref(root);
    return rule_insert(r, x);
oom:
    seterr(r, "rule %s: out of memory", shown(nmb, name, name_len));
done:
    rule_free(x);
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------------ */
/* evaluating                                                          */

static int64_t default_clock(void)
{
    struct timespec t;
    if (clock_gettime(CLOCK_REALTIME, &t) != 0)
        return 0;
    return (int64_t)t.tv_sec * 1000 + (int64_t)(t.tv_nsec / 1000000);
}

static int default_random(void *ctx, uint8_t *b, size_t n)
{
    (void)ctx;
    if (n > INT32_MAX)
        return -1;
    return RAND_bytes(b, (int)n) == 1 ? 0 : -1;
}

typedef struct rnd_bridge {
    ciot_rules_random_fn fn;
    void *ud;
} rnd_bridge;

static int bridge_random(void *ctx, uint8_t *b, size_t n)
{
    const rnd_bridge *br = ctx;
    return br->fn(br->ud, b, n);
}

typedef struct coll {
    rule **cand;
    size_t n;
} coll;

static int collect_enabled(void *value, void *ud)
{
    coll *c = ud;
    rule *x = value;
    if (!x->enabled)
        return 0;
    size_t i = c->n++;
    while (i > 0 && c->cand[i - 1]->seq > x->seq) {
        c->cand[i] = c->cand[i - 1];
        i--;
    }
    c->cand[i] = x;
    return 0;
}

static void report(ciot_rules *r, const rule *x, int action_index, int error, const char *msg)
{
    snprintf(r->errmsg, sizeof r->errmsg, "rule %.*s: action %d: %s", (int)x->name_len, x->name,
             action_index, msg);
    if (r->err_cb) {
        r->in_cb++;
        r->err_cb(r, x->name, x->name_len, action_index, error, msg, r->err_ud);
        r->in_cb--;
    }
}

/* Runs one action. 0, or a CIOT_E* code with err filled. */
static int run_action(ciot_rules *r, const rule *x, const action *a, ciot__rules_doc *m,
                      ciot_rules_output *o, const char *doc, size_t doc_len, char *err,
                      size_t errcap)
{
    (void)x;
    switch (a->kind) {
    case A_FUNCTION: {
        const fnent *f = find_fn(r, a->fn, a->fn_len, NULL);
        if (!f) {
            snprintf(err, errcap, "no function '%.128s' registered", a->fn);
            return CIOT_ENOTFOUND;
        }
        ciot_rules_output fo = *o;
        fo.doc = doc;
        fo.doc_len = doc_len;
        fo.fn = a->fn;
        fo.fn_len = a->fn_len;
        ciot_rules_fn fn = f->fn;
        void *ud = f->ud;
        r->in_cb++;
        int rc = fn(r, &fo, ud);
        r->in_cb--;
        if (rc) {
            snprintf(err, errcap, "function '%.128s' returned %d", a->fn, rc);
            return CIOT_EUSER;
        }
        return 0;
    }
    case A_REPUBLISH: {
        size_t tl = 0;
        int rc = tmpl_expand(r, &a->t, m, &tl, err, errcap);
        if (rc)
            return rc;
        /* AWS: a republish to a reserved topic is written with "$$"
         * ("$$aws/things/t/shadow/update" publishes to "$aws/..."). */
        const char *topic = r->exp.p;
        if (tl >= 2 && topic[0] == '$' && topic[1] == '$') {
            topic++;
            tl--;
        }
        if (ciot_topic_name_check(topic, tl)) {
            snprintf(err, errcap, "republish topic '%.150s' is not a valid topic name", topic);
            return CIOT_EINVAL;
        }
        if (!r->pub) {
            snprintf(err, errcap, "no publisher for republish to '%.150s'", topic);
            return CIOT_ESTATE;
        }
        r->in_cb++;
        rc = r->pub(r->pub_ud, topic, tl, doc, doc_len, a->qos);
        r->in_cb--;
        if (rc) {
            snprintf(err, errcap, "republish to '%.150s' failed: %s", topic,
                     rc < 0 ? ciot_strerror(rc) : "publisher returned a positive value");
            return rc < 0 ? rc : CIOT_EUSER;
        }
        return 0;
    }
    case A_SQLITE: {
        size_t tl = 0;
        int rc = tmpl_expand(r, &a->t, m, &tl, err, errcap);
        if (rc)
            return rc;
        if (!r->db) {
            snprintf(err, errcap, "no SQLite database open for table '%.128s'", r->exp.p);
            return CIOT_ESTATE;
        }
        char serr[200] = "";
        rc = ciot__sqlite_sink_put(r->db, r->exp.p, tl, doc, doc_len, serr, sizeof serr);
        if (rc) {
            snprintf(err, errcap, "SQLite table '%.100s': %s", r->exp.p,
                     serr[0] ? serr : ciot_strerror(rc));
            return rc;
        }
        return 0;
    }
    default:
        snprintf(err, errcap, "unknown action");
        return CIOT_EINVAL;
    }
}

/* The document an errorAction receives (AWS's shape). */
static int error_doc(ciot_rules *r, const rule *x, const action *failed, const char *msg,
                     const ciot__rules_msg *m, size_t *out_len)
{
    size_t bl = ciot__b64_encoded_len(m->payload_len);
    int rc = buf_reserve(&r->b64, bl + 1);
    if (rc)
        return rc;
    ciot__b64_encode(r->b64.p, (const unsigned char *)(m->payload ? m->payload : ""),
                     m->payload_len);
    for (int pass = 0; pass < 2; pass++) {
        ciot_json_writer w;
        rc = ciot_json_writer_init(&w, r->edoc.p, r->edoc.cap);
        rc = rc ? rc : ciot_json_begin_object(&w);
        rc = rc ? rc : ciot_json_key(&w, "ruleName", 8);
        rc = rc ? rc : ciot_json_string(&w, x->name, x->name_len);
        rc = rc ? rc : ciot_json_key(&w, "topic", 5);
        rc = rc ? rc : ciot_json_string(&w, m->topic, m->topic_len);
        rc = rc ? rc : ciot_json_key(&w, "clientId", 8);
        rc = rc ? rc
                : (m->client_id ? ciot_json_string(&w, m->client_id, m->client_id_len)
                                : ciot_json_string(&w, "n/a", 3));
        rc = rc ? rc : ciot_json_key(&w, "base64OriginalPayload", 21);
        rc = rc ? rc : ciot_json_string(&w, r->b64.p, bl);
        rc = rc ? rc : ciot_json_key(&w, "failures", 8);
        rc = rc ? rc : ciot_json_begin_array(&w);
        rc = rc ? rc : ciot_json_begin_object(&w);
        rc = rc ? rc : ciot_json_key(&w, "failedAction", 12);
        rc = rc ? rc : ciot_json_string(&w, failed->label, strlen(failed->label));
        rc = rc ? rc : ciot_json_key(&w, "failedResource", 14);
        rc = rc ? rc
                : (failed->kind == A_FUNCTION ? ciot_json_string(&w, failed->fn, failed->fn_len)
                                              : ciot_json_string(&w, failed->t.text, failed->t.len));
        rc = rc ? rc : ciot_json_key(&w, "errorMessage", 12);
        rc = rc ? rc : ciot_json_string(&w, msg, strlen(msg));
        rc = rc ? rc : ciot_json_end_object(&w);
        rc = rc ? rc : ciot_json_end_array(&w);
        rc = rc ? rc : ciot_json_end_object(&w);
        size_t len = 0;
        int frc = ciot_json_writer_finish(&w, &len);
        rc = rc ? rc : frc;
        if (rc == 0) {
            *out_len = len;
            return 0;
        }
        if (rc != CIOT_ENOSPC || pass == 1)
            return rc;
        rc = buf_reserve(&r->edoc, len + 1);
        if (rc)
            return rc;
    }
    return CIOT_ENOMEM;
}

/* An action failed: the error callback, then the rule's errorAction.
 * Returns true when the errorAction's callback returned non-zero. */
static bool action_failed(ciot_rules *r, const rule *x, int index, const action *a, int error,
                          const char *msg, ciot__rules_doc *m, ciot_rules_output *o)
{
    report(r, x, index, error, msg);
    if (!x->err_act)
        return false;
    size_t dl = 0;
    int rc = error_doc(r, x, a, msg, m->msg, &dl);
    char err[240];
    if (rc) {
        snprintf(err, sizeof err, "errorAction: %s", ciot_strerror(rc));
        report(r, x, (int)x->nacts, rc, err);
        return false;
    }
    rc = run_action(r, x, x->err_act, m, o, r->edoc.p, dl, err, sizeof err);
    if (rc) {
        char e2[280];
        snprintf(e2, sizeof e2, "errorAction: %s", err);
        report(r, x, (int)x->nacts, rc, e2);
    }
    return rc == CIOT_EUSER;
}

static bool ingest(const char *t, size_t n, const char **name, size_t *name_len)
{
    static const char pre[] = "$aws/rules/";
    size_t pl = sizeof pre - 1;
    if (n <= pl || memcmp(t, pre, pl) != 0)
        return false;
    const char *sl = memchr(t + pl, '/', n - pl);
    if (!sl)
        return false;
    *name = t + pl;
    *name_len = (size_t)(sl - *name);
    return true;
}

int ciot_rules_process(size_t *out_fired, ciot_rules *r, const char *topic, size_t topic_len,
                       const void *payload, size_t payload_len, const char *client_id,
                       size_t client_id_len)
{
    if (out_fired)
        *out_fired = 0;
    if (!r)
        return CIOT_EINVAL;
    if (r->in_cb) {
        seterr(r, "ciot_rules_process() from inside a callback of the rule set");
        return CIOT_ERECURSIVE;
    }
    r->errmsg[0] = '\0';
    if (!topic || (!payload && payload_len) || (!client_id && client_id_len)) {
        seterr(r, "a NULL argument");
        return CIOT_EINVAL;
    }
    coll c = {r->cand, 0};
    const char *iname = NULL;
    size_t ilen = 0;
    bool is_ingest = ingest(topic, topic_len, &iname, &ilen);
    /* the topic set's lookup validates the name itself */
    if ((is_ingest || r->n == 0) && ciot_topic_name_check(topic, topic_len)) {
        seterr(r, "not a valid topic name");
        return CIOT_EINVAL;
    }
    if (is_ingest) {
        /* Basic Ingest: straight to the rule named in the topic */
        rule *x = find_rule(r, iname, ilen, NULL);
        if (x && x->enabled)
            c.cand[c.n++] = x;
    } else if (r->n) {
        int rc = ciot_topicset_match(r->ts, topic, topic_len, collect_enabled, &c);
        if (rc) {
            seterr(r, "not a valid topic name");
            return rc;
        }
    }
    if (c.n == 0)
        return 0;

    rnd_bridge br = {r->rnd, r->rnd_ud};
    ciot__rules_msg m;
    m.topic = topic;
    m.topic_len = topic_len;
    m.payload = payload;
    m.payload_len = payload_len;
    m.client_id = client_id;
    m.client_id_len = client_id_len;
    if (r->clock) {
        r->in_cb++;
        m.timestamp_ms = r->clock(r->clock_ud);
        r->in_cb--;
    } else {
        m.timestamp_ms = default_clock();
    }
    m.random = r->rnd ? bridge_random : default_random;
    m.random_ctx = r->rnd ? (void *)&br : NULL;
    /* the payload is validated and indexed once for all the candidates */
    ciot__rules_doc doc;
    ciot__rules_doc_init(&doc, &m);

    /* r->cand is not touched again until the loop ends (changes are refused
     * inside callbacks), so the candidates stay valid. */
    bool user = false;
    size_t fired = 0;
    char err[240];
    for (size_t k = 0; k < c.n; k++) {
        const rule *x = c.cand[k];
        bool f = false;
        size_t len = 0;
        /* found through the topic set of the FROM filters: no need to match again */
        int rc = ciot__rules_eval_doc(&f, &len, r->out.p, r->out.cap, x->sql, &doc, !is_ingest);
        if (rc == CIOT_ENOSPC) {
            rc = buf_reserve(&r->out, len + 1);
            if (rc == 0)
                rc = ciot__rules_eval_doc(&f, &len, r->out.p, r->out.cap, x->sql, &doc, !is_ingest);
        }
        if (rc) {
            snprintf(err, sizeof err, "evaluation failed: %s", ciot_strerror(rc));
            report(r, x, -1, rc, err);
            continue;
        }
        if (!f)
            continue;
        fired++;
        ciot_rules_output o = {x, r->out.p, len, topic, topic_len, "", 0, m.timestamp_ms};
        if (r->out_cb) {
            r->in_cb++;
            int u = r->out_cb(r, &o, r->out_ud);
            r->in_cb--;
            if (u) {
                user = true;
                snprintf(err, sizeof err, "the output callback returned %d", u);
                report(r, x, -1, CIOT_EUSER, err);
            }
        }
        for (size_t i = 0; i < x->nacts; i++) {
            rc = run_action(r, x, &x->acts[i], &doc, &o, r->out.p, len, err, sizeof err);
            if (rc) {
                user |= rc == CIOT_EUSER;
                user |= action_failed(r, x, (int)i, &x->acts[i], rc, err, &doc, &o);
            }
        }
    }
    if (out_fired)
        *out_fired = fired;
    return user ? CIOT_EUSER : 0;
}

/* ------------------------------------------------------------------ */
/* outputs                                                             */

const char *ciot_rules_output_rule(const ciot_rules_output *o, size_t *len)
{
    if (len)
        *len = o ? o->r->name_len : 0;
    return o ? o->r->name : "";
}

const char *ciot_rules_output_document(const ciot_rules_output *o, size_t *len)
{
    if (len)
        *len = o ? o->doc_len : 0;
    return o ? o->doc : "";
}

const char *ciot_rules_output_topic(const ciot_rules_output *o, size_t *len)
{
    if (len)
        *len = o ? o->topic_len : 0;
    return o ? o->topic : "";
}

const char *ciot_rules_output_function(const ciot_rules_output *o, size_t *len)
{
    if (len)
        *len = o ? o->fn_len : 0;
    return o ? o->fn : "";
}

int64_t ciot_rules_output_timestamp(const ciot_rules_output *o)
{
    return o ? o->ts : 0;
}

/* ------------------------------------------------------------------ */
/* internal: the client attachment                                     */

void ciot__rules_set_hooks(ciot_rules *r, const ciot__rules_hooks *h)
{
    if (!r)
        return;
    if (h) {
        r->hooks = *h;
        r->has_hooks = true;
    } else {
        memset(&r->hooks, 0, sizeof r->hooks);
        r->has_hooks = false;
    }
}

void *ciot__rules_hooks_ud(const ciot_rules *r)
{
    return r && r->has_hooks ? r->hooks.ud : NULL;
}

int ciot__rules_each_filter(const ciot_rules *r,
                            int (*each)(void *ud, const char *filter, size_t len), void *ud)
{
    if (!r || !each)
        return CIOT_EINVAL;
    /* a list kept up to date by add/remove/enable: O(distinct filters) */
    for (size_t i = 0; i < r->nfilts; i++) {
        int rc = each(ud, r->filts[i].f, r->filts[i].len);
        if (rc)
            return rc;
    }
    return 0;
}

bool ciot__rules_in_callback(const ciot_rules *r)
{
    return r && r->in_cb > 0;
}
