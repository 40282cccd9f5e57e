/*
 * AWS IoT policies: parse with jansson once, compile every statement into
 * flat arrays of patterns, then evaluate without allocating.
 *
 * Layout of a compiled policy (one allocation): the statements, Deny ones
 * first (so evaluation can stop at the first Deny that matches, then at the
 * first Allow); the action patterns (lower-cased text, plus per statement a
 * bit mask of the well-known iot: actions they match, computed at parse
 * time, so that evaluating a well-known action is one bit test per
 * statement); the resource patterns as token runs (literal text, policy
 * variable, `?` run, `*`); and the text pool the literals point into.
 *
 * Resource matching splits a pattern at its `*` tokens into chunks: the
 * first chunk is matched at the start of the resource, the last one
 * (backwards) at its end, and each middle chunk at its leftmost position in
 * between (greedy leftmost is exact for a pattern whose only variable-length
 * element is `*`). Worst case O(resource length x pattern length); no
 * backtracking beyond that, no recursion. `?` matches one UTF-8 character.
 * Variable values are compared as literal bytes, never as wildcards.
 *
 * The document is parsed twice over the jansson tree: a first walk checks
 * everything and counts, the second (which cannot fail) fills the arrays.
 */
#include "core/aws_policy.h"

#include <cloudiot/error.h>

#include "internal.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* AWS IoT CreatePolicy: "policyDocument must have a minimum length of 1,
 * with a maximum length of 2048, excluding whitespace". */
#define MAX_CHARS 2048
/* Our own bound on the raw bytes (whitespace included) given to jansson. */
#define MAX_RAW 32768

enum { V_CLIENT_ID, V_THING_NAME, V_IS_ATTACHED, V_COUNT };
enum { TK_LIT, TK_VAR, TK_ANY1, TK_STAR };

typedef struct rtok {
    uint8_t kind;
    uint8_t var;  /* TK_VAR */
    uint32_t off; /* TK_LIT: offset in the pool */
    uint32_t len; /* TK_LIT: bytes; TK_ANY1: how many `?` */
} rtok;

typedef struct rpat {
    uint32_t tok, ntok;             /* tokens [tok, tok + ntok) */
    uint32_t first_star, last_star; /* relative indexes; ntok when none */
    uint32_t minlen;                /* bytes the fixed parts need at least */
    uint8_t vars;                   /* bit per variable used */
} rpat;

typedef struct apat {
    uint32_t off, len; /* lower-cased text in the pool */
} apat;

typedef struct stmt {
    uint32_t known; /* bit k: matches well-known action k */
    uint32_t act, nact;
    uint32_t res, nres;
} stmt;

struct ciot__aws_policy {
    stmt *st;
    uint32_t nst, ndeny; /* st[0, ndeny) are Deny statements */
    apat *ap;
    rpat *rp;
    rtok *tk;
    char *pool;
    uint8_t vars; /* union of the resource patterns' variables */
};

/* The AWS IoT data-plane actions, lower-cased; their index is their bit in
 * stmt.known. Any other action is matched against the patterns' text. */
static const char *const known_actions[] = {
    "iot:connect",
    "iot:publish",
    "iot:subscribe",
    "iot:receive",
    "iot:retainpublish",
    "iot:getretainedmessage",
    "iot:listretainedmessages",
    "iot:getthingshadow",
    "iot:updatethingshadow",
    "iot:deletethingshadow",
    "iot:listnamedshadowsforthing",
    "iot:describejobexecution",
    "iot:getpendingjobexecutions",
    "iot:startnextpendingjobexecution",
    "iot:updatejobexecution",
};
#define NKNOWN (sizeof known_actions / sizeof known_actions[0])
CIOT__STATIC_ASSERT(NKNOWN <= 32, "known actions fit a uint32_t mask");

static inline unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

static inline bool cont(unsigned char c)
{
    return (c & 0xC0) == 0x80;
}

/* ------------------------------------------------------------ matching */

/* Case-insensitive glob on bytes (@p p is lower-cased already): `*` any
 * run, `?` one byte. Two-pointer star backtracking, O(pn * tn). */
static bool action_glob(const char *p, size_t pn, const char *t, size_t tn)
{
    size_t i = 0, j = 0, star = SIZE_MAX, mark = 0;
    while (j < tn) {
        if (i < pn && p[i] == '*') {
            star = i++;
            mark = j;
        } else if (i < pn && (p[i] == '?' || (unsigned char)p[i] == lower((unsigned char)t[j]))) {
            i++;
            j++;
        } else if (star != SIZE_MAX) {
            i = star + 1;
            j = ++mark;
        } else {
            return false;
        }
    }
    while (i < pn && p[i] == '*')
        i++;
    return i == pn;
}

static int known_action(const char *a, size_t n)
{
    for (size_t k = 0; k < NKNOWN; k++) {
        const char *s = known_actions[k];
        if (strlen(s) != n)
            continue;
        size_t i = 0;
        while (i < n && lower((unsigned char)a[i]) == (unsigned char)s[i])
            i++;
        if (i == n)
            return (int)k;
    }
    return -1;
}

typedef struct vals {
    const char *v[V_COUNT];
    size_t n[V_COUNT];
    uint8_t null_mask; /* bit per variable without a value */
} vals;

#define NOMATCH SIZE_MAX

/* One UTF-8 character forward from p (< lim): the byte and at most three
 * continuation bytes after it. */
static inline size_t u8_next(const unsigned char *t, size_t p, size_t lim)
{
    p++;
    for (int k = 0; k < 3 && p < lim && cont(t[p]); k++)
        p++;
    return p;
}

/* One UTF-8 character backward from e (> lo). */
static inline size_t u8_prev(const unsigned char *t, size_t e, size_t lo)
{
    e--;
    for (int k = 0; k < 3 && e > lo && cont(t[e]); k++)
        e--;
    return e;
}

/* Matches tokens [a, b) at t[p...], not past lim; returns the end or NOMATCH. */
static size_t fwd(const ciot__aws_policy *pol, const rtok *tk, uint32_t a, uint32_t b,
                  const vals *vv, const unsigned char *t, size_t p, size_t lim)
{
    for (uint32_t i = a; i < b; i++) {
        const rtok *k = &tk[i];
        const char *s;
        size_t n;
        switch (k->kind) {
        case TK_LIT:
            s = pol->pool + k->off;
            n = k->len;
            break;
        case TK_VAR:
            s = vv->v[k->var];
            n = vv->n[k->var];
            break;
        default: /* TK_ANY1 */
            for (uint32_t c = 0; c < k->len; c++) {
                if (p >= lim)
                    return NOMATCH;
                p = u8_next(t, p, lim);
            }
            continue;
        }
        if (lim - p < n || memcmp(t + p, s, n) != 0)
            return NOMATCH;
        p += n;
    }
    return p;
}

/* Matches tokens [a, b) ending at t[e], not before lo; returns the start. */
static size_t bwd(const ciot__aws_policy *pol, const rtok *tk, uint32_t a, uint32_t b,
                  const vals *vv, const unsigned char *t, size_t e, size_t lo)
{
    for (uint32_t i = b; i-- > a;) {
        const rtok *k = &tk[i];
        const char *s;
        size_t n;
        switch (k->kind) {
        case TK_LIT:
            s = pol->pool + k->off;
            n = k->len;
            break;
        case TK_VAR:
            s = vv->v[k->var];
            n = vv->n[k->var];
            break;
        default: /* TK_ANY1 */
            for (uint32_t c = 0; c < k->len; c++) {
                if (e <= lo)
                    return NOMATCH;
                e = u8_prev(t, e, lo);
            }
            continue;
        }
        if (e - lo < n || memcmp(t + e - n, s, n) != 0)
            return NOMATCH;
        e -= n;
    }
    return e;
}

static bool resource_match(const ciot__aws_policy *pol, const rpat *rp, const vals *vv,
                           const unsigned char *t, size_t tn)
{
    if ((rp->vars & vv->null_mask) || tn < rp->minlen)
        return false;
    const rtok *tk = pol->tk + rp->tok;
    if (rp->first_star == rp->ntok)
        return fwd(pol, tk, 0, rp->ntok, vv, t, 0, tn) == tn;
    size_t p = fwd(pol, tk, 0, rp->first_star, vv, t, 0, tn);
    if (p == NOMATCH)
        return false;
    size_t q = bwd(pol, tk, rp->last_star + 1, rp->ntok, vv, t, tn, p);
    if (q == NOMATCH)
        return false;
    /* Middle chunks, each at its leftmost place in [p, q). */
    uint32_t i = rp->first_star + 1;
    while (i < rp->last_star) {
        uint32_t j = i;
        while (tk[j].kind != TK_STAR)
            j++;
        int first = tk[i].kind == TK_LIT ? (unsigned char)pol->pool[tk[i].off] : -1;
        size_t s = p, e = NOMATCH;
        for (;;) {
            if (first >= 0) {
                const unsigned char *hit = s < q ? memchr(t + s, first, q - s) : NULL;
                if (!hit)
                    return false;
                s = (size_t)(hit - t);
            } else if (s > p && s < q && cont(t[s])) {
                s++;
                continue;
            }
            e = fwd(pol, tk, i, j, vv, t, s, q);
            if (e != NOMATCH || s >= q)
                break;
            s++;
        }
        if (e == NOMATCH)
            return false;
        p = e;
        i = j + 1;
    }
    return true;
}

static bool stmt_match(const ciot__aws_policy *pol, const stmt *s, uint32_t bit, const char *action,
                       size_t alen, const vals *vv, const unsigned char *res, size_t rlen)
{
    if (bit) {
        if (!(s->known & bit))
            return false;
    } else {
        bool any = false;
        for (uint32_t i = 0; i < s->nact && !any; i++) {
            const apat *a = &pol->ap[s->act + i];
            any = action_glob(pol->pool + a->off, a->len, action, alen);
        }
        if (!any)
            return false;
    }
    for (uint32_t i = 0; i < s->nres; i++)
        if (resource_match(pol, &pol->rp[s->res + i], vv, res, rlen))
            return true;
    return false;
}

int ciot__aws_policy_eval(const ciot__aws_policy *const *policies, size_t n, const char *action,
                          const char *resource, const ciot__aws_policy_ctx *ctx)
{
    if (!policies || !action || !resource || !ctx)
        return CIOT__POLICY_IMPLICIT_DENY;
    size_t alen = strlen(action), rlen = strlen(resource);
    int k = known_action(action, alen);
    uint32_t bit = k >= 0 ? (uint32_t)1 << k : 0;

    uint8_t used = 0;
    for (size_t i = 0; i < n; i++)
        if (policies[i])
            used |= policies[i]->vars;
    vals vv = {{NULL, NULL, NULL}, {0, 0, 0}, 0};
    if (used) {
        vv.v[V_CLIENT_ID] = ctx->client_id;
        vv.v[V_THING_NAME] = ctx->thing_name;
        vv.v[V_IS_ATTACHED] = ctx->thing_attached ? "true" : "false";
        for (int v = 0; v < V_COUNT; v++) {
            if (!(used & (1u << v)))
                continue;
            if (vv.v[v])
                vv.n[v] = strlen(vv.v[v]);
            else
                vv.null_mask |= (uint8_t)(1u << v);
        }
    }
    const unsigned char *res = (const unsigned char *)resource;
    for (size_t i = 0; i < n; i++) {
        const ciot__aws_policy *p = policies[i];
        if (!p)
            continue;
        for (uint32_t s = 0; s < p->ndeny; s++)
            if (stmt_match(p, &p->st[s], bit, action, alen, &vv, res, rlen))
                return CIOT__POLICY_EXPLICIT_DENY;
    }
    for (size_t i = 0; i < n; i++) {
        const ciot__aws_policy *p = policies[i];
        if (!p)
            continue;
        for (uint32_t s = p->ndeny; s < p->nst; s++)
            if (stmt_match(p, &p->st[s], bit, action, alen, &vv, res, rlen))
                return CIOT__POLICY_ALLOW;
    }
    return CIOT__POLICY_IMPLICIT_DENY;
}

/* ------------------------------------------------------------- parsing */

typedef struct ps {
    char *errmsg;
    size_t errmsg_len;
    bool vars_on;  /* Version 2012-10-17: policy variables substituted */
    bool fill;     /* second walk: write into pol */
    ciot__aws_policy *pol;
    /* counts (first walk) or next free slots (second walk) */
    uint32_t nst, ndeny, nap, nrp, ntok, npool;
    uint32_t next_deny, next_allow;
    char path[48]; /* "Statement[12]" or "Statement" */
} ps;

static int fail(ps *s, int rc, const char *fmt, ...) CIOT__PRINTF(3, 4);
static int fail(ps *s, int rc, const char *fmt, ...)
{
    if (s->errmsg && s->errmsg_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->errmsg, s->errmsg_len, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static void pool_put(ps *s, const char *p, size_t n)
{
    if (s->fill)
        memcpy(s->pol->pool + s->npool, p, n);
    s->npool += (uint32_t)n;
}

static rtok *tok_new(ps *s, int kind)
{
    rtok *k = s->fill ? &s->pol->tk[s->ntok] : NULL;
    if (k) {
        k->kind = (uint8_t)kind;
        k->var = 0;
        k->off = s->npool;
        k->len = 0;
    }
    s->ntok++;
    return k;
}

/* Variables of Version 2012-10-17 that this engine substitutes. */
static int var_id(const char *name, size_t n)
{
    static const struct {
        const char *name;
        int id;
    } vars[] = {
        {"iot:ClientId", V_CLIENT_ID},
        {"iot:Connection.Thing.ThingName", V_THING_NAME},
        {"iot:Connection.Thing.IsAttached", V_IS_ATTACHED},
    };
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (strlen(vars[i].name) == n && memcmp(vars[i].name, name, n) == 0)
            return vars[i].id;
    return -1;
}

/* Compiles one Resource string; @p where names it in messages. */
static int compile_resource(ps *s, const char *r, size_t n, const char *where)
{
    uint32_t tok0 = s->ntok;
    int last = -1; /* kind of the previous token, -1 none */
    uint32_t minlen = 0;
    uint8_t vars = 0;
    rtok *prev = NULL;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)r[i];
        int lit = -1; /* a literal byte to add, or -1 */
        if (c == '*') {
            if (last != TK_STAR)
                prev = tok_new(s, TK_STAR), last = TK_STAR;
            i++;
            continue;
        }
        if (c == '?') {
            if (last != TK_ANY1)
                prev = tok_new(s, TK_ANY1), last = TK_ANY1;
            if (prev)
                prev->len++;
            minlen++;
            i++;
            continue;
        }
        if (c == '$' && s->vars_on && i + 1 < n && r[i + 1] == '{') {
            const char *name = r + i + 2;
            const char *end = memchr(name, '}', n - (i + 2));
            if (!end)
                return fail(s, CIOT_EINVAL, "%s: unterminated policy variable \"${\"", where);
            size_t nl = (size_t)(end - name);
            i = (size_t)(end - r) + 1;
            if (nl == 1 && (name[0] == '*' || name[0] == '?' || name[0] == '$')) {
                lit = name[0]; /* ${*} ${?} ${$}: the character itself */
            } else if (nl == 0) {
                return fail(s, CIOT_EINVAL, "%s: empty policy variable \"${}\"", where);
            } else if (memchr(name, ',', nl)) {
                return fail(s, CIOT_ENOTBUILT,
                            "%s: policy variable default values (\"${%.*s}\") are not evaluated "
                            "here",
                            where, (int)(nl > 64 ? 64 : nl), name);
            } else {
                int v = var_id(name, nl);
                if (v < 0)
                    return fail(s, CIOT_ENOTBUILT,
                                "%s: policy variable \"${%.*s}\" is not evaluated here (known: "
                                "iot:ClientId, iot:Connection.Thing.ThingName, "
                                "iot:Connection.Thing.IsAttached)",
                                where, (int)(nl > 64 ? 64 : nl), name);
                prev = tok_new(s, TK_VAR), last = TK_VAR;
                if (prev)
                    prev->var = (uint8_t)v;
                vars |= (uint8_t)(1u << v);
                continue;
            }
        } else {
            lit = c;
            i++;
        }
        if (last != TK_LIT)
            prev = tok_new(s, TK_LIT), last = TK_LIT;
        char ch = (char)lit;
        pool_put(s, &ch, 1);
        if (prev)
            prev->len++;
        minlen++;
    }
    if (s->fill) {
        rpat *rp = &s->pol->rp[s->nrp];
        rp->tok = tok0;
        rp->ntok = s->ntok - tok0;
        rp->first_star = rp->last_star = rp->ntok;
        for (uint32_t k = 0; k < rp->ntok; k++) {
            if (s->pol->tk[tok0 + k].kind == TK_STAR) {
                if (rp->first_star == rp->ntok)
                    rp->first_star = k;
                rp->last_star = k;
            }
        }
        rp->minlen = minlen;
        rp->vars = vars;
        s->pol->vars |= vars;
    }
    s->nrp++;
    return 0;
}

static int compile_action(ps *s, const char *a, size_t n, uint32_t *known)
{
    if (s->fill) {
        char *dst = s->pol->pool + s->npool;
        for (size_t i = 0; i < n; i++)
            dst[i] = (char)lower((unsigned char)a[i]);
        apat *ap = &s->pol->ap[s->nap];
        ap->off = s->npool;
        ap->len = (uint32_t)n;
        for (size_t k = 0; k < NKNOWN; k++)
            if (action_glob(dst, n, known_actions[k], strlen(known_actions[k])))
                *known |= (uint32_t)1 << k;
    }
    s->npool += (uint32_t)n;
    s->nap++;
    return 0;
}

/* Action or Resource: a non-empty string or a non-empty array of them. */
static int string_list(ps *s, json_t *st, const char *key, bool is_action, uint32_t *known)
{
    json_t *v = json_object_get(st, key);
    if (!v)
        return fail(s, CIOT_EINVAL, "%s.%s: missing", s->path, key);
    size_t count = json_is_array(v) ? json_array_size(v) : 1;
    if (!json_is_string(v) && !json_is_array(v))
        return fail(s, CIOT_EINVAL, "%s.%s: must be a string or an array of strings", s->path, key);
    if (count == 0)
        return fail(s, CIOT_EINVAL, "%s.%s: must not be an empty array", s->path, key);
    for (size_t i = 0; i < count; i++) {
        json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
        char where[80];
        if (json_is_array(v))
            snprintf(where, sizeof where, "%s.%s[%zu]", s->path, key, i);
        else
            snprintf(where, sizeof where, "%s.%s", s->path, key);
        if (!json_is_string(e))
            return fail(s, CIOT_EINVAL, "%s: must be a string", where);
        size_t n = json_string_length(e);
        if (n == 0)
            return fail(s, CIOT_EINVAL, "%s: must not be empty", where);
        int rc = is_action ? compile_action(s, json_string_value(e), n, known)
                           : compile_resource(s, json_string_value(e), n, where);
        if (rc)
            return rc;
    }
    return 0;
}

static int statement(ps *s, json_t *st)
{
    if (!json_is_object(st))
        return fail(s, CIOT_EINVAL, "%s: must be an object", s->path);
    const char *key;
    json_t *val;
    json_object_foreach (st, key, val) {
        if (!strcmp(key, "Sid") || !strcmp(key, "Effect") || !strcmp(key, "Action") ||
            !strcmp(key, "Resource"))
            continue;
        if (!strcmp(key, "Condition") || !strcmp(key, "NotAction") ||
            !strcmp(key, "NotResource") || !strcmp(key, "Principal") ||
            !strcmp(key, "NotPrincipal"))
            return fail(s, CIOT_ENOTBUILT,
                        "%s.%s: not evaluated here (a statement with %s is refused rather "
                        "than evaluated without it)",
                        s->path, key, key);
        return fail(s, CIOT_EINVAL, "%s: unknown key \"%.64s\"", s->path, key);
    }
    json_t *sid = json_object_get(st, "Sid");
    if (sid && !json_is_string(sid))
        return fail(s, CIOT_EINVAL, "%s.Sid: must be a string", s->path);
    json_t *eff = json_object_get(st, "Effect");
    if (!eff)
        return fail(s, CIOT_EINVAL, "%s.Effect: missing", s->path);
    const char *e = json_string_value(eff);
    bool deny;
    if (e && !strcmp(e, "Allow") && json_string_length(eff) == 5)
        deny = false;
    else if (e && !strcmp(e, "Deny") && json_string_length(eff) == 4)
        deny = true;
    else
        return fail(s, CIOT_EINVAL, "%s.Effect: must be \"Allow\" or \"Deny\"", s->path);

    uint32_t known = 0, act0 = s->nap, res0 = s->nrp;
    int rc = string_list(s, st, "Action", true, &known);
    if (rc == 0)
        rc = string_list(s, st, "Resource", false, NULL);
    if (rc)
        return rc;
    if (s->fill) {
        stmt *o = &s->pol->st[deny ? s->next_deny++ : s->next_allow++];
        o->known = known;
        o->act = act0;
        o->nact = s->nap - act0;
        o->res = res0;
        o->nres = s->nrp - res0;
    }
    s->nst++;
    if (deny)
        s->ndeny++;
    return 0;
}

static int walk(ps *s, json_t *root)
{
    if (!json_is_object(root))
        return fail(s, CIOT_EINVAL, "the policy document must be a JSON object");
    const char *key;
    json_t *val;
    json_object_foreach (root, key, val) {
        if (strcmp(key, "Version") && strcmp(key, "Statement") && strcmp(key, "Id"))
            return fail(s, CIOT_EINVAL, "unknown key \"%.64s\" (expected Version, Statement, Id)",
                        key);
    }
    json_t *id = json_object_get(root, "Id");
    if (id && !json_is_string(id))
        return fail(s, CIOT_EINVAL, "Id: must be a string");
    json_t *ver = json_object_get(root, "Version");
    s->vars_on = false; /* no Version: 2008-10-17, variables are plain text */
    if (ver) {
        const char *v = json_string_value(ver);
        if (v && json_string_length(ver) == 10 && !strcmp(v, "2012-10-17"))
            s->vars_on = true;
        else if (!(v && json_string_length(ver) == 10 && !strcmp(v, "2008-10-17")))
            return fail(s, CIOT_EINVAL, "Version: must be \"2012-10-17\" or \"2008-10-17\"");
    }
    json_t *sts = json_object_get(root, "Statement");
    if (!sts)
        return fail(s, CIOT_EINVAL, "Statement: missing");
    if (json_is_object(sts)) {
        snprintf(s->path, sizeof s->path, "Statement");
        return statement(s, sts);
    }
    if (!json_is_array(sts))
        return fail(s, CIOT_EINVAL, "Statement: must be an object or an array of objects");
    if (json_array_size(sts) == 0)
        return fail(s, CIOT_EINVAL, "Statement: must not be an empty array");
    for (size_t i = 0; i < json_array_size(sts); i++) {
        snprintf(s->path, sizeof s->path, "Statement[%zu]", i);
        int rc = statement(s, json_array_get(sts, i));
        if (rc)
            return rc;
    }
    return 0;
}

/* Characters (UTF-8 sequences) that are not JSON whitespace. */
static size_t count_chars(const char *j, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)j[i];
        n += !(c == ' ' || c == '\t' || c == '\n' || c == '\r' || cont(c));
    }
    return n;
}

static size_t align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

int ciot__aws_policy_parse(ciot__aws_policy **out, const char *json, size_t len, char *errmsg,
                           size_t errmsg_len)
{
    ps s;
    memset(&s, 0, sizeof s);
    s.errmsg = errmsg;
    s.errmsg_len = errmsg_len;
    if (errmsg && errmsg_len > 0)
        errmsg[0] = '\0';
    if (!out)
        return fail(&s, CIOT_EINVAL, "NULL output pointer");
    *out = NULL;
    if (!json && len > 0)
        return fail(&s, CIOT_EINVAL, "NULL document");
    if (len > MAX_RAW)
        return fail(&s, CIOT_EINVAL, "document is %zu bytes; at most %d are read", len, MAX_RAW);
    size_t chars = count_chars(json, len);
    if (chars == 0)
        return fail(&s, CIOT_EINVAL, "empty document");
    if (chars > MAX_CHARS)
        return fail(&s, CIOT_EINVAL,
                    "document has %zu characters excluding whitespace; AWS IoT allows at most %d",
                    chars, MAX_CHARS);

    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (json_error_code(&je) == json_error_out_of_memory)
            return fail(&s, CIOT_ENOMEM, "out of memory");
        return fail(&s, CIOT_EINVAL, "not valid JSON: %s (line %d, column %d)", je.text, je.line,
                    je.column);
    }
    int rc = walk(&s, root);
    if (rc) {
        json_decref(root);
        return rc;
    }
    size_t sz_st = align8(sizeof(stmt) * s.nst), sz_ap = align8(sizeof(apat) * s.nap),
           sz_rp = align8(sizeof(rpat) * s.nrp), sz_tk = align8(sizeof(rtok) * s.ntok);
    size_t total = align8(sizeof(ciot__aws_policy)) + sz_st + sz_ap + sz_rp + sz_tk + s.npool + 1;
    char *block = ciot__calloc(1, total);
    if (!block) {
        json_decref(root);
        return fail(&s, CIOT_ENOMEM, "out of memory");
    }
    ciot__aws_policy *pol = (ciot__aws_policy *)(void *)block;
    char *q = block + align8(sizeof *pol);
    pol->st = (stmt *)(void *)q;
    q += sz_st;
    pol->ap = (apat *)(void *)q;
    q += sz_ap;
    pol->rp = (rpat *)(void *)q;
    q += sz_rp;
    pol->tk = (rtok *)(void *)q;
    q += sz_tk;
    pol->pool = q;
    pol->nst = s.nst;
    pol->ndeny = s.ndeny;

    ps f = s;
    f.fill = true;
    f.pol = pol;
    f.nst = f.ndeny = f.nap = f.nrp = f.ntok = f.npool = 0;
    f.next_deny = 0;
    f.next_allow = s.ndeny;
    rc = walk(&f, root); /* cannot fail: the same tree passed the first walk */
    json_decref(root);
    if (rc) {
        ciot__free(block);
        return rc;
    }
    *out = pol;
    return 0;
}

void ciot__aws_policy_free(ciot__aws_policy *p)
{
    ciot__free(p);
}
