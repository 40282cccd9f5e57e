/*
 * AWS IoT SQL (protocols.md §3): the evaluator.
 *
 * The payload is never turned into a tree: one validating scan
 * (ciot__json_scan_root) also records its top-level members in a
 * ciot__rules_doc, which several rules evaluated on the same message share;
 * each rule looks the field names it uses up there, lazily, and deeper
 * steps use ciot_json_get_member / ciot_json_get_index on those views. Values are
 * small structs; strings are views into the payload, into the rule, or into
 * a fixed scratch area on the stack (results of upper(), concat(), ...).
 */
#include "core/rules_ast.h"

#include <cloudiot/error.h>
#include <cloudiot/json.h>
#include <cloudiot/topic.h>

#include "core/json_write.h"
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum vtype { V_UNDEF, V_NULL, V_BOOL, V_INT, V_DEC, V_STR, V_ARR, V_OBJ };

typedef struct rval {
    int t;
    bool b;
    int64_t i;
    double d;
    const char *p; /* V_STR: raw UTF-8 bytes; V_ARR/V_OBJ: JSON text */
    size_t n;
    bool q;      /* V_STR: p[-1] and p[n] are the quotes of a JSON string without escapes
                  * in validated text, so p - 1 (n + 2 bytes) is its JSON form */
    int16_t src; /* a top-level payload member as read: 1 + its index in the doc, else 0 */
} rval;

typedef struct ctx {
    const ciot__rule *r;
    const ciot__rules_msg *m;
    ciot__rules_doc *d;
    const char *topic; /* without a Basic Ingest prefix */
    size_t topic_len;
    ciot_json_value slots[CIOT__RULES_MAX_ROOTS];
    int16_t midx[CIOT__RULES_MAX_ROOTS];    /* index in d->mem, or -1 */
    uint8_t looked[CIOT__RULES_MAX_ROOTS];  /* 0: not yet; 1: found (slots); 2: absent */
    char *scr;
    size_t scr_used;
    _Alignas(8) char scratch[CIOT__RULES_SCRATCH];
} ctx;

static const rval UNDEF = {V_UNDEF, false, 0, 0, NULL, 0};

static void *salloc(ctx *c, size_t n, size_t align)
{
    size_t at = (c->scr_used + align - 1) & ~(align - 1);
    if (at > sizeof c->scratch || n > sizeof c->scratch - at)
        return NULL;
    c->scr_used = at + n;
    return c->scratch + at;
}

static rval mk_int(int64_t i) { return (rval){V_INT, false, i, 0, NULL, 0}; }
static rval mk_bool(bool b) { return (rval){V_BOOL, b, 0, 0, NULL, 0}; }
static rval mk_str(const char *p, size_t n) { return (rval){V_STR, false, 0, 0, p, n}; }

static rval mk_dec(double d)
{
    if (!isfinite(d))
        return UNDEF; /* [LIB] overflow or NaN: Undefined */
    return (rval){V_DEC, false, 0, d, NULL, 0};
}

/* A JSON view to a value. Strings are unescaped (into scratch if needed). */
static int from_json(ctx *c, const ciot_json_value *j, rval *out)
{
    switch (j->type) {
    case CIOT_JSON_NULL:
        *out = (rval){V_NULL, false, 0, 0, NULL, 0};
        return 0;
    case CIOT_JSON_TRUE:
    case CIOT_JSON_FALSE:
        *out = mk_bool(j->type == CIOT_JSON_TRUE);
        return 0;
    case CIOT_JSON_NUMBER: {
        int64_t i;
        double d;
        if (ciot_json_get_int64(j, &i) == 0)
            *out = mk_int(i);
        else if (ciot_json_get_double(j, &d) == 0)
            *out = mk_dec(d);
        else
            *out = UNDEF; /* beyond a double */
        return 0;
    }
    case CIOT_JSON_STRING: {
        if (!memchr(j->ptr, '\\', j->len)) {
            *out = mk_str(j->ptr + 1, j->len - 2);
            out->q = true;
            return 0;
        }
        size_t n = 0;
        char *b = salloc(c, j->len, 1); /* unescaped is never longer */
        if (!b)
            return CIOT_ERANGE;
        if (ciot_json_get_string(j, b, j->len, &n) != 0) {
            *out = UNDEF;
            return 0;
        }
        *out = mk_str(b, n);
        return 0;
    }
    case CIOT_JSON_ARRAY:
    case CIOT_JSON_OBJECT:
        *out = (rval){j->type == CIOT_JSON_ARRAY ? V_ARR : V_OBJ, false, 0, 0, j->ptr, j->len};
        return 0;
    default:
        *out = UNDEF;
        return 0;
    }
}

static ciot_json_value to_view(const rval *v)
{
    return (ciot_json_value){v->t == V_ARR ? CIOT_JSON_ARRAY : CIOT_JSON_OBJECT, v->p, v->n};
}

/* ---- conversions ---- */

static bool is_num(const rval *v) { return v->t == V_INT || v->t == V_DEC; }

/* Int, Decimal or numeric string to a double. */
static bool to_dec(const rval *v, double *out)
{
    if (v->t == V_INT) {
        *out = (double)v->i;
        return true;
    }
    if (v->t == V_DEC) {
        *out = v->d;
        return true;
    }
    if (v->t == V_STR)
        return ciot__rules_numeric_string(v->p, v->n, out);
    return false;
}

/* A whole double that fits an int64, as one. */
static bool whole(double d, int64_t *out)
{
    if (d == floor(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
        *out = (int64_t)d;
        return true;
    }
    return false;
}

static int fmt_num(ctx *c, const rval *v, rval *out)
{
    char *b = salloc(c, 40, 1);
    if (!b)
        return CIOT_ERANGE;
    int64_t i;
    ciot_json_writer w;
    size_t n = 0;
    int rc = ciot_json_writer_init(&w, b, 40);
    if (v->t == V_INT)
        rc = rc ? rc : ciot_json_int(&w, v->i);
    else if (whole(v->d, &i))
        rc = rc ? rc : ciot_json_int(&w, i);
    else
        rc = rc ? rc : ciot_json_double(&w, v->d);
    rc = rc ? rc : ciot_json_writer_finish(&w, &n);
    if (rc)
        return rc;
    *out = mk_str(b, n);
    return 0;
}

/* The String conversion of §3.2; Null and Undefined give Undefined. */
static int to_str(ctx *c, const rval *v, rval *out)
{
    switch (v->t) {
    case V_STR:
        *out = *v;
        return 0;
    case V_INT:
    case V_DEC:
        return fmt_num(c, v, out);
    case V_BOOL:
        *out = v->b ? mk_str("true", 4) : mk_str("false", 5);
        return 0;
    case V_ARR:
    case V_OBJ:
        *out = mk_str(v->p, v->n);
        return 0;
    default:
        *out = UNDEF;
        return 0;
    }
}

static bool ieq(const char *a, size_t n, const char *lit)
{
    if (strlen(lit) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char x = a[i];
        if (x >= 'A' && x <= 'Z')
            x = (char)(x - 'A' + 'a');
        if (x != lit[i])
            return false;
    }
    return true;
}

/* Boolean, or the strings "true"/"false" in any case. */
static bool to_bool(const rval *v, bool *out)
{
    if (v->t == V_BOOL) {
        *out = v->b;
        return true;
    }
    if (v->t == V_STR && (ieq(v->p, v->n, "true") || ieq(v->p, v->n, "false"))) {
        *out = v->n == 4;
        return true;
    }
    return false;
}

/* ---- equality: 1 true, 0 false, -1 Undefined; or a negative error code - 2 ---- */

static int eq(ctx *c, const rval *a, const rval *b, int *res);

static int eq_json(ctx *c, const ciot_json_value *x, const ciot_json_value *y, int *res)
{
    rval a, b;
    int rc = from_json(c, x, &a);
    rc = rc ? rc : from_json(c, y, &b);
    return rc ? rc : eq(c, &a, &b, res);
}

static int eq(ctx *c, const rval *a, const rval *b, int *res)
{
    if (a->t == V_UNDEF || b->t == V_UNDEF) {
        *res = -1;
        return 0;
    }
    if (is_num(a) && is_num(b)) {
        if (a->t == V_INT && b->t == V_INT)
            *res = a->i == b->i;
        else
            *res = (a->t == V_INT ? (double)a->i : a->d) == (b->t == V_INT ? (double)b->i : b->d);
        return 0;
    }
    if (a->t != b->t) {
        *res = 0;
        return 0;
    }
    switch (a->t) {
    case V_NULL:
        *res = 1;
        return 0;
    case V_BOOL:
        *res = a->b == b->b;
        return 0;
    case V_STR:
        *res = a->n == b->n && memcmp(a->p, b->p, a->n) == 0;
        return 0;
    case V_ARR: {
        ciot_json_iter ia, ib;
        ciot_json_value va = to_view(a), vb = to_view(b), ea, eb;
        if (ciot_json_iter_init(&ia, &va) || ciot_json_iter_init(&ib, &vb)) {
            *res = 0;
            return 0;
        }
        for (;;) {
            int ra = ciot_json_iter_next(&ia, NULL, &ea);
            int rb = ciot_json_iter_next(&ib, NULL, &eb);
            if (ra || rb) {
                *res = ra == CIOT_ENOTFOUND && rb == CIOT_ENOTFOUND;
                return 0;
            }
            int r, rc = eq_json(c, &ea, &eb, &r);
            if (rc)
                return rc;
            if (r != 1) {
                *res = r < 0 ? 0 : r;
                return 0;
            }
        }
    }
    case V_OBJ: {
        /* as sets of key/value: same number of distinct keys, and each
         * member of a (the last one of its name) equal in b */
        ciot_json_value va = to_view(a), vb = to_view(b), k, v, w;
        size_t na = 0, nb = 0;
        ciot_json_iter it;
        for (int side = 0; side < 2; side++) {
            ciot_json_value *o = side ? &vb : &va;
            if (ciot_json_iter_init(&it, o)) {
                *res = 0;
                return 0;
            }
            while (ciot_json_iter_next(&it, &k, &v) == 0) {
                rval key;
                int rc = from_json(c, &k, &key);
                if (rc)
                    return rc;
                if (key.t != V_STR ||
                    ciot_json_get_member(o, key.p, key.n, &w) != 0 || w.ptr != v.ptr)
                    continue; /* a duplicate that lost */
                if (side) {
                    nb++;
                    continue;
                }
                na++;
                if (ciot_json_get_member(&vb, key.p, key.n, &w) != 0) {
                    *res = 0;
                    return 0;
                }
                int r;
                rc = eq_json(c, &v, &w, &r);
                if (rc)
                    return rc;
                if (r != 1) {
                    *res = 0;
                    return 0;
                }
            }
        }
        *res = na == nb;
        return 0;
    }
    default:
        *res = 0;
        return 0;
    }
}

/* ---- evaluation ---- */

static int eval(ctx *c, int32_t id, rval *out);

static const rnode *node(const ctx *c, int32_t id) { return &c->r->nodes[id]; }

/* Validates the payload and indexes its top-level members, once per doc. */
static bool doc_ready(ciot__rules_doc *d)
{
    if (d->state == 0) {
        const ciot__rules_msg *m = d->msg;
        d->state = m->payload_len && ciot__json_scan_root(m->payload, m->payload_len, &d->root,
                                                           d->mem, CIOT__RULES_DOC_MEMBERS,
                                                           &d->nmem) == 0
                       ? 1
                       : 2;
        size_t n = d->nmem < CIOT__RULES_DOC_MEMBERS ? d->nmem : CIOT__RULES_DOC_MEMBERS;
        for (size_t i = 0; i < n; i++) {
            const ciot__json_member *k = &d->mem[i];
            if (!k->key_esc)
                rules_key_words(k->key.ptr + 1, k->key.len - 2, &d->kw[i].wa, &d->kw[i].wb);
            d->num[i].kind = 0;
            d->num[i].verbatim = 0;
        }
    }
    return d->state == 1;
}

static bool key_is(const ciot_json_value *k, bool esc, const char *s, size_t n)
{
    bool hit = false;
    if (!esc)
        return k->len - 2 == n && memcmp(k->ptr + 1, s, n) == 0;
    if (ciot_json_string_equal(k, s, n, &hit))
        return false;
    return hit;
}

/* The value of the top-level member `name` of an object payload (the last
 * one if repeated): *idx is its index in d->mem, or -1 if it is beyond the
 * indexed members. */
static bool doc_member(ciot__rules_doc *d, const char *name, size_t n, uint64_t wa, uint64_t wb,
                       ciot_json_value *out, int *idx)
{
    *idx = -1;
    if (!doc_ready(d) || d->root.type != CIOT_JSON_OBJECT)
        return false;
    if (d->nmem <= CIOT__RULES_DOC_MEMBERS) {
        for (size_t i = d->nmem; i-- > 0;) {
            const ciot__json_member *k = &d->mem[i];
            bool hit;
            if (k->key_esc)
                hit = key_is(&k->key, true, name, n);
            else
                hit = k->key.len - 2 == n && d->kw[i].wa == wa && d->kw[i].wb == wb &&
                      (n <= 16 || memcmp(k->key.ptr + 1 + 8, name + 8, n - 16) == 0);
            if (hit) {
                *out = d->mem[i].val;
                *idx = (int)i;
                return true;
            }
        }
        return false;
    }
    /* more members than the index holds: walk the (validated) object */
    ciot_json_iter it;
    ciot_json_value k, v;
    bool found = false;
    if (ciot_json_iter_init(&it, &d->root) != 0)
        return false;
    while (ciot_json_iter_next(&it, &k, &v) == 0)
        if (key_is(&k, memchr(k.ptr, '\\', k.len) != NULL, name, n)) {
            *out = v; /* the last duplicate wins */
            found = true;
        }
    return found;
}

static int eval_path(ctx *c, const rnode *n, rval *out)
{
    int32_t slot = n->slot;
    if (!c->looked[slot]) {
        int idx;
        const rname *rn = &c->r->roots[slot];
        c->looked[slot] = doc_member(c->d, rn->s, rn->n, rn->wa, rn->wb, &c->slots[slot], &idx) ? 1 : 2;
        c->midx[slot] = (int16_t)idx;
    }
    if (c->looked[slot] != 1) {
        *out = UNDEF;
        return 0;
    }
    ciot_json_value cur = c->slots[slot], nx;
    int mi = c->midx[slot];
    if (n->kid < 0 && mi >= 0 && cur.type == CIOT_JSON_STRING) {
        /* a top-level string: looked at for escapes once per message */
        ciot__rules_doc *d = c->d;
        if (d->num[mi].kind == 0)
            d->num[mi].kind = memchr(cur.ptr, '\\', cur.len) ? 5 : 4;
        if (d->num[mi].kind == 4) {
            *out = mk_str(cur.ptr + 1, cur.len - 2);
            out->q = true;
            return 0;
        }
    } else if (n->kid < 0 && mi >= 0 && cur.type == CIOT_JSON_NUMBER) {
        /* a top-level number: converted once per message */
        ciot__rules_doc *d = c->d;
        if (d->num[mi].kind == 0) {
            rval v;
            int rc = from_json(c, &cur, &v);
            if (rc)
                return rc;
            d->num[mi].kind = v.t == V_INT ? 1 : v.t == V_DEC ? 2 : 3;
            d->num[mi].i = v.i;
            d->num[mi].d = v.d;
        }
        switch (d->num[mi].kind) {
        case 1:
            *out = mk_int(d->num[mi].i);
            break;
        case 2:
            *out = mk_dec(d->num[mi].d);
            break;
        default:
            *out = UNDEF;
            return 0;
        }
        out->src = (int16_t)(mi + 1);
        return 0;
    }
    for (int32_t k = n->kid; k >= 0; k = node(c, k)->next) {
        const rnode *sg = node(c, k);
        int rc;
        if (sg->kind == N_SEG_KEY)
            rc = cur.type == CIOT_JSON_OBJECT ? ciot_json_get_member(&cur, sg->s, sg->n, &nx) : -1;
        else
            rc = cur.type == CIOT_JSON_ARRAY && sg->i >= 0
                     ? ciot_json_get_index(&cur, (size_t)sg->i, &nx)
                     : -1;
        if (rc) {
            *out = UNDEF;
            return 0;
        }
        cur = nx;
    }
    return from_json(c, &cur, out);
}

static int arith(int op, const rval *a, const rval *b, rval *out)
{
    if (a->t == V_INT && b->t == V_INT) {
        int64_t x = a->i, y = b->i, r;
        switch (op) {
        case OP_ADD:
            if (!__builtin_add_overflow(x, y, &r)) {
                *out = mk_int(r);
                return 0;
            }
            break;
        case OP_SUB:
            if (!__builtin_sub_overflow(x, y, &r)) {
                *out = mk_int(r);
                return 0;
            }
            break;
        case OP_MUL:
            if (!__builtin_mul_overflow(x, y, &r)) {
                *out = mk_int(r);
                return 0;
            }
            break;
        case OP_DIV:
        case OP_MOD:
            if (y == 0) {
                *out = UNDEF;
                return 0;
            }
            if (x == INT64_MIN && y == -1) {
                *out = op == OP_DIV ? mk_dec(-(double)x) : mk_int(0);
                return 0;
            }
            *out = mk_int(op == OP_DIV ? x / y : x % y);
            return 0;
        default:
            break;
        }
        /* overflow: fall through to Decimal [LIB] */
    }
    double x, y;
    if (op == OP_ADD ? !(is_num(a) && is_num(b)) : !(to_dec(a, &x) && to_dec(b, &y))) {
        *out = UNDEF;
        return 0;
    }
    if (op == OP_ADD) {
        x = a->t == V_INT ? (double)a->i : a->d;
        y = b->t == V_INT ? (double)b->i : b->d;
    }
    switch (op) {
    case OP_ADD:
        *out = mk_dec(x + y);
        break;
    case OP_SUB:
        *out = mk_dec(x - y);
        break;
    case OP_MUL:
        *out = mk_dec(x * y);
        break;
    case OP_DIV:
        *out = y == 0 ? UNDEF : mk_dec(x / y);
        break;
    default:
        *out = y == 0 ? UNDEF : mk_dec(fmod(x, y));
        break;
    }
    return 0;
}

static int concat_str(ctx *c, const rval *v, size_t nv, rval *out)
{
    size_t total = 0;
    rval *s = salloc(c, nv * sizeof *s, 8);
    if (!s)
        return CIOT_ERANGE;
    for (size_t i = 0; i < nv; i++) {
        int rc = to_str(c, &v[i], &s[i]);
        if (rc)
            return rc;
        if (s[i].t == V_UNDEF) {
            *out = UNDEF;
            return 0;
        }
        total += s[i].n;
    }
    char *b = salloc(c, total ? total : 1, 1);
    if (!b)
        return CIOT_ERANGE;
    size_t k = 0;
    for (size_t i = 0; i < nv; i++) {
        if (s[i].n)
            memcpy(b + k, s[i].p, s[i].n);
        k += s[i].n;
    }
    *out = mk_str(b, total);
    return 0;
}

static int eval_bin(ctx *c, const rnode *n, rval *out)
{
    rval ab[2];
    int rc = eval(c, n->kid, &ab[0]);
    rc = rc ? rc : eval(c, node(c, n->kid)->next, &ab[1]);
    if (rc)
        return rc;
    const rval *a = &ab[0], *b = &ab[1];
    switch (n->op) {
    case OP_AND:
    case OP_OR: {
        bool x, y;
        if (!to_bool(a, &x) || !to_bool(b, &y))
            *out = UNDEF; /* no short-circuit rescue (§3.2) */
        else
            *out = mk_bool(n->op == OP_AND ? (x && y) : (x || y));
        return 0;
    }
    case OP_EQ:
    case OP_NE: {
        int r;
        rc = eq(c, a, b, &r);
        if (rc)
            return rc;
        *out = r < 0 ? UNDEF : mk_bool(n->op == OP_EQ ? r == 1 : r == 0);
        return 0;
    }
    case OP_LT:
    case OP_LE:
    case OP_GT:
    case OP_GE: {
        int cmp;
        double x, y;
        if (a->t == V_INT && b->t == V_INT) {
            cmp = (a->i > b->i) - (a->i < b->i);
        } else if (to_dec(a, &x) && to_dec(b, &y)) {
            cmp = (x > y) - (x < y);
        } else {
            *out = UNDEF;
            return 0;
        }
        bool r = n->op == OP_LT ? cmp < 0 : n->op == OP_LE ? cmp <= 0 : n->op == OP_GT ? cmp > 0 : cmp >= 0;
        *out = mk_bool(r);
        return 0;
    }
    case OP_ADD:
        if (a->t == V_STR || b->t == V_STR)
            return concat_str(c, ab, 2, out);
        return arith(n->op, a, b, out);
    default:
        return arith(n->op, a, b, out);
    }
}

/* The writer's text for a number (ciot_json_int / ciot_json_double). */
static size_t num_text(const rval *v, char t[CIOT__DOUBLE_BUF])
{
    int64_t i;
    if (v->t == V_INT || whole(v->d, &i)) {
        int64_t x = v->t == V_INT ? v->i : i;
        uint64_t u = (uint64_t)x;
        size_t n = 0;
        if (x < 0) {
            t[n++] = '-';
            u = 0 - u;
        }
        return n + ciot__fmt_u64(t + n, u);
    }
    return ciot__json_fmt_double(t, v->d);
}

/* Writes a value with the JSON writer; the caller skips Undefined. */
static int write_val(ctx *c, ciot_json_writer *w, const rval *v)
{
    int64_t i;
    if ((v->t == V_INT || v->t == V_DEC) && v->src) {
        /* a top-level number of the payload: when the writer's text is the
         * payload's own (found out once per message), copy it */
        int mi = v->src - 1;
        const ciot_json_value *pv = &c->d->mem[mi].val;
        uint8_t *vb = &c->d->num[mi].verbatim;
        if (*vb == 1)
            return ciot__json_put_trusted(w, pv->ptr, pv->len);
        if (*vb == 0) {
            char t[CIOT__DOUBLE_BUF];
            size_t n = num_text(v, t);
            *vb = n == pv->len && memcmp(t, pv->ptr, n) == 0 ? 1 : 2;
            return ciot__json_put_trusted(w, t, n);
        }
    }
    if (v->t == V_STR && v->q)
        return ciot__json_put_trusted(w, v->p - 1, v->n + 2);
    switch (v->t) {
    case V_NULL:
        return ciot_json_null(w);
    case V_BOOL:
        return ciot_json_bool(w, v->b);
    case V_INT:
        return ciot_json_int(w, v->i);
    case V_DEC:
        /* whole-number Decimals print as Int (§3.4) */
        return whole(v->d, &i) ? ciot_json_int(w, i) : ciot_json_double(w, v->d);
    case V_STR:
        return ciot_json_string(w, v->p, v->n);
    case V_ARR:
    case V_OBJ:
        return ciot_json_raw(w, v->p, v->n);
    default:
        return CIOT_EINVAL;
    }
}

/* Evaluates the children of n into an array in scratch. */
static int eval_kids(ctx *c, const rnode *n, rval **out)
{
    rval *v = salloc(c, (size_t)(n->nkids ? n->nkids : 1) * sizeof *v, 8);
    if (!v)
        return CIOT_ERANGE;
    int32_t i = 0;
    for (int32_t k = n->kid; k >= 0; k = node(c, k)->next, i++) {
        const rnode *kn = node(c, k);
        int rc = eval(c, kn->kind == N_MEMBER ? kn->kid : k, &v[i]);
        if (rc)
            return rc;
    }
    *out = v;
    return 0;
}

/* Builds an array or object from values already computed, in scratch. */
static int build(ctx *c, const rnode *n, const rval *v, int32_t nv, bool flatten, rval *out)
{
    ciot_json_writer w;
    size_t at = c->scr_used, len = 0;
    char *b = c->scratch + at;
    int rc = ciot_json_writer_init(&w, b, sizeof c->scratch - at);
    bool obj = n && n->kind == N_OBJ;
    rc = rc ? rc : (obj ? ciot_json_begin_object(&w) : ciot_json_begin_array(&w));
    int32_t k = n ? n->kid : -1;
    for (int32_t i = 0; i < nv && !rc; i++) {
        const rnode *kn = k >= 0 ? node(c, k) : NULL;
        if (k >= 0)
            k = kn->next;
        if (v[i].t == V_UNDEF)
            continue; /* [LIB] Undefined members and elements are left out */
        if (flatten && v[i].t == V_ARR) {
            ciot_json_iter it;
            ciot_json_value view = to_view(&v[i]), e;
            rc = ciot_json_iter_init(&it, &view);
            while (!rc && (rc = ciot_json_iter_next(&it, NULL, &e)) == 0)
                rc = ciot_json_raw(&w, e.ptr, e.len);
            if (rc == CIOT_ENOTFOUND)
                rc = 0;
            continue;
        }
        if (obj)
            rc = ciot_json_key(&w, kn->key, kn->key_len);
        rc = rc ? rc : write_val(c, &w, &v[i]);
    }
    rc = rc ? rc : (obj ? ciot_json_end_object(&w) : ciot_json_end_array(&w));
    rc = rc ? rc : ciot_json_writer_finish(&w, &len);
    if (rc == CIOT_ENOSPC)
        return CIOT_ERANGE;
    if (rc)
        return rc;
    c->scr_used = at + len;
    *out = (rval){obj ? V_OBJ : V_ARR, false, 0, 0, b, len};
    return 0;
}

/* Number of UTF-8 characters in s (valid UTF-8). */
static size_t nchars(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

/* Byte offset of character index ci (clamped to n). */
static size_t char_off(const char *s, size_t n, size_t ci)
{
    size_t i = 0;
    while (i < n && ci > 0) {
        i++;
        while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80)
            i++;
        ci--;
    }
    return i;
}

/* An Int argument (Int, or a Decimal/numeric string floored). */
static bool to_index(const rval *v, int64_t *out)
{
    if (v->t == V_INT) {
        *out = v->i;
        return true;
    }
    double d;
    if (!to_dec(v, &d))
        return false;
    d = floor(d);
    if (d < -9.2e18 || d > 9.2e18)
        return false;
    *out = (int64_t)d;
    return true;
}

static int eval_call(ctx *c, const rnode *n, rval *out)
{
    rval *a;
    int rc = eval_kids(c, n, &a);
    if (rc)
        return rc;
    int32_t na = n->nkids;
    *out = UNDEF;
    switch (n->op) {
    case F_TOPIC: {
        if (na == 0) {
            *out = mk_str(c->topic, c->topic_len);
            return 0;
        }
        int64_t lv;
        if (na != 1 || a[0].t != V_INT || (lv = a[0].i) < 1)
            return 0;
        const char *s = c->topic, *e = s + c->topic_len;
        for (int64_t l = 1; l < lv; l++) {
            const char *sl = memchr(s, '/', (size_t)(e - s));
            if (!sl)
                return 0; /* out of range: Undefined [LIB] */
            s = sl + 1;
        }
        const char *sl = memchr(s, '/', (size_t)(e - s));
        *out = mk_str(s, (size_t)((sl ? sl : e) - s));
        return 0;
    }
    case F_TIMESTAMP:
        if (na == 0)
            *out = mk_int(c->m->timestamp_ms);
        return 0;
    case F_CLIENTID:
        if (na == 0)
            *out = c->m->client_id ? mk_str(c->m->client_id, c->m->client_id_len) : mk_str("n/a", 3);
        return 0;
    case F_ABS:
        if (na != 1)
            return 0;
        if (a[0].t == V_INT && a[0].i != INT64_MIN)
            *out = mk_int(a[0].i < 0 ? -a[0].i : a[0].i);
        else {
            double d;
            if (to_dec(&a[0], &d))
                *out = mk_dec(fabs(d));
        }
        return 0;
    case F_LOWER:
    case F_UPPER:
    case F_TRIM: {
        rval s;
        if (na != 1 || (rc = to_str(c, &a[0], &s)) != 0 || s.t == V_UNDEF)
            return rc;
        if (n->op == F_TRIM) {
            size_t i = 0, j = s.n;
            while (i < j && strchr(" \t\r\n\f\v", s.p[i]))
                i++;
            while (j > i && strchr(" \t\r\n\f\v", s.p[j - 1]))
                j--;
            *out = mk_str(s.p + i, j - i);
            return 0;
        }
        char *b = salloc(c, s.n ? s.n : 1, 1);
        if (!b)
            return CIOT_ERANGE;
        for (size_t i = 0; i < s.n; i++) { /* ASCII case mapping [LIB] */
            char ch = s.p[i];
            if (n->op == F_UPPER && ch >= 'a' && ch <= 'z')
                ch = (char)(ch - 'a' + 'A');
            else if (n->op == F_LOWER && ch >= 'A' && ch <= 'Z')
                ch = (char)(ch - 'A' + 'a');
            b[i] = ch;
        }
        *out = mk_str(b, s.n);
        return 0;
    }
    case F_CONCAT: {
        if (na == 0)
            return 0;
        if (na == 1) {
            *out = a[0];
            return 0;
        }
        for (int32_t i = 0; i < na; i++)
            if (a[i].t == V_ARR)
                return build(c, NULL, a, na, true, out);
        return concat_str(c, a, (size_t)na, out);
    }
    case F_LENGTH: {
        rval s;
        if (na != 1 || (rc = to_str(c, &a[0], &s)) != 0 || s.t == V_UNDEF)
            return rc;
        *out = mk_int((int64_t)nchars(s.p, s.n));
        return 0;
    }
    case F_SUBSTRING: {
        rval s;
        int64_t i, j;
        if ((na != 2 && na != 3) || (rc = to_str(c, &a[0], &s)) != 0 || s.t == V_UNDEF)
            return rc;
        int64_t len = (int64_t)nchars(s.p, s.n);
        if (!to_index(&a[1], &i) || (na == 3 && !to_index(&a[2], &j)))
            return 0;
        if (na == 2)
            j = len;
        i = i < 0 ? 0 : i > len ? len : i;
        j = j < 0 ? 0 : j > len ? len : j;
        if (i >= j) {
            *out = mk_str("", 0);
            return 0;
        }
        size_t bi = char_off(s.p, s.n, (size_t)i), bj = char_off(s.p, s.n, (size_t)j);
        *out = mk_str(s.p + bi, bj - bi);
        return 0;
    }
    case F_STARTSWITH:
    case F_ENDSWITH:
    case F_INDEXOF: {
        rval x, y;
        if (na != 2 || (rc = to_str(c, &a[0], &x)) != 0 || (rc = to_str(c, &a[1], &y)) != 0)
            return rc;
        if (x.t == V_UNDEF || y.t == V_UNDEF)
            return 0;
        if (n->op == F_STARTSWITH) {
            *out = mk_bool(y.n <= x.n && memcmp(x.p, y.p, y.n) == 0);
        } else if (n->op == F_ENDSWITH) {
            *out = mk_bool(y.n <= x.n && memcmp(x.p + x.n - y.n, y.p, y.n) == 0);
        } else {
            int64_t at = -1;
            for (size_t k = 0; y.n <= x.n && k + y.n <= x.n; k++)
                if (memcmp(x.p + k, y.p, y.n) == 0) {
                    at = (int64_t)nchars(x.p, k);
                    break;
                }
            *out = mk_int(at);
        }
        return 0;
    }
    case F_GET: {
        if (na != 2)
            return 0;
        ciot_json_value view, e;
        if (a[0].t == V_ARR && a[1].t == V_INT) {
            view = to_view(&a[0]);
            if (a[1].i >= 0 && ciot_json_get_index(&view, (size_t)a[1].i, &e) == 0)
                return from_json(c, &e, out);
        } else if (a[0].t == V_OBJ && a[1].t == V_STR) {
            view = to_view(&a[0]);
            if (ciot_json_get_member(&view, a[1].p, a[1].n, &e) == 0)
                return from_json(c, &e, out);
        } else if (a[0].t == V_STR && a[1].t == V_INT) {
            int64_t len = (int64_t)nchars(a[0].p, a[0].n);
            if (a[1].i >= 0 && a[1].i < len) {
                size_t b0 = char_off(a[0].p, a[0].n, (size_t)a[1].i);
                size_t b1 = char_off(a[0].p, a[0].n, (size_t)a[1].i + 1);
                *out = mk_str(a[0].p + b0, b1 - b0);
            }
        }
        return 0;
    }
    case F_ISNULL:
    case F_ISUNDEFINED:
        if (na == 1)
            *out = mk_bool(a[0].t == (n->op == F_ISNULL ? V_NULL : V_UNDEF));
        return 0;
    case F_CAST: {
        rval *v = &a[0];
        double d;
        bool b;
        switch ((int)n->i) {
        case C_INT:
            if (v->t == V_BOOL)
                *out = mk_int(v->b);
            else if (v->t == V_INT)
                *out = *v;
            else if (to_dec(v, &d) && fabs(d) < 9.2e18)
                *out = mk_int((int64_t)d); /* toward zero [LIB] */
            return 0;
        case C_DECIMAL:
        case C_DOUBLE:
            if (v->t == V_BOOL)
                *out = mk_dec(v->b);
            else if (to_dec(v, &d))
                *out = mk_dec(d);
            return 0;
        case C_STRING:
            return to_str(c, v, out);
        default:
            if (to_bool(v, &b))
                *out = mk_bool(b);
            else if (is_num(v))
                *out = mk_bool(v->t == V_INT ? v->i != 0 : v->d != 0);
            return 0;
        }
    }
    case F_ROUND:
    case F_FLOOR:
    case F_CEIL:
    case F_SIGN:
    case F_SQRT: {
        double d;
        if (na != 1)
            return 0;
        if (a[0].t == V_INT && n->op != F_SQRT) {
            *out = n->op == F_SIGN ? mk_int((a[0].i > 0) - (a[0].i < 0)) : a[0];
            return 0;
        }
        if (!to_dec(&a[0], &d))
            return 0;
        double r = n->op == F_ROUND   ? round(d)
                   : n->op == F_FLOOR ? floor(d)
                   : n->op == F_CEIL  ? ceil(d)
                   : n->op == F_SIGN  ? (double)((d > 0) - (d < 0))
                                      : (d < 0 ? NAN : sqrt(d));
        int64_t i;
        *out = n->op != F_SQRT && whole(r, &i) ? mk_int(i) : mk_dec(r);
        return 0;
    }
    case F_TRUNC: {
        double d;
        int64_t places;
        if (na != 2 || !to_dec(&a[0], &d) || !to_index(&a[1], &places) || places < 0 || places > 17)
            return 0;
        double s = pow(10.0, (double)places);
        *out = mk_dec(trunc(d * s) / s);
        return 0;
    }
    case F_MOD:
        if (na == 2)
            return arith(OP_MOD, &a[0], &a[1], out);
        return 0;
    case F_POWER: {
        double x, y;
        if (na == 2 && to_dec(&a[0], &x) && to_dec(&a[1], &y))
            *out = mk_dec(pow(x, y));
        return 0;
    }
    case F_NEWUUID: {
        /* a version 4 UUID from the caller's random source, lower case */
        uint8_t u[16];
        if (na != 0 || !c->m->random || c->m->random(c->m->random_ctx, u, sizeof u) != 0)
            return 0;
        u[6] = (uint8_t)((u[6] & 0x0F) | 0x40);
        u[8] = (uint8_t)((u[8] & 0x3F) | 0x80);
        char *b = salloc(c, 36, 1);
        if (!b)
            return CIOT_ERANGE;
        static const char hex[] = "0123456789abcdef";
        size_t k = 0;
        for (int i = 0; i < 16; i++) {
            if (i == 4 || i == 6 || i == 8 || i == 10)
                b[k++] = '-';
            b[k++] = hex[u[i] >> 4];
            b[k++] = hex[u[i] & 15];
        }
        *out = mk_str(b, 36);
        return 0;
    }
    default:
        return 0;
    }
}

static int eval(ctx *c, int32_t id, rval *out)
{
    const rnode *n = node(c, id);
    switch (n->kind) {
    case N_INT:
        *out = mk_int(n->i);
        return 0;
    case N_DEC:
        *out = mk_dec(n->d);
        return 0;
    case N_STR:
        *out = mk_str(n->s, n->n);
        return 0;
    case N_BOOL:
        *out = mk_bool(n->i != 0);
        return 0;
    case N_NULL:
        *out = (rval){V_NULL, false, 0, 0, NULL, 0};
        return 0;
    case N_PATH:
        return eval_path(c, n, out);
    case N_CALL:
        return eval_call(c, n, out);
    case N_NEG: {
        rval v;
        int rc = eval(c, n->kid, &v);
        if (rc)
            return rc;
        rval zero = mk_int(0);
        return arith(OP_SUB, &zero, &v, out);
    }
    case N_NOT: {
        rval v;
        bool b;
        int rc = eval(c, n->kid, &v);
        if (rc)
            return rc;
        *out = to_bool(&v, &b) ? mk_bool(!b) : UNDEF;
        return 0;
    }
    case N_BIN:
        return eval_bin(c, n, out);
    case N_CASE: {
        rval subj;
        int rc = eval(c, n->kid, &subj);
        if (rc)
            return rc;
        *out = UNDEF;
        if (subj.t == V_UNDEF)
            return 0; /* CASE on Undefined is Undefined [DOC] */
        for (int32_t k = node(c, n->kid)->next; k >= 0; k = node(c, k)->next) {
            const rnode *w = node(c, k);
            if (w->kind == N_ELSE)
                return eval(c, w->kid, out);
            rval v;
            int r;
            rc = eval(c, w->kid, &v);
            rc = rc ? rc : eq(c, &subj, &v, &r);
            if (rc)
                return rc;
            if (r == 1)
                return eval(c, node(c, w->kid)->next, out);
        }
        return 0; /* no match, no ELSE: Undefined [LIB] */
    }
    case N_OBJ:
    case N_ARR: {
        rval *v;
        int rc = eval_kids(c, n, &v);
        return rc ? rc : build(c, n, v, n->nkids, false, out);
    }
    default:
        *out = UNDEF;
        return 0;
    }
}

static bool key_eq(const char *a, size_t an, const char *b, size_t bn)
{
    return an == bn && memcmp(a, b, an) == 0;
}

/* Index of the topic after a Basic Ingest prefix `$aws/rules/<rule>/`. */
static size_t ingest_prefix(const char *t, size_t n)
{
    static const char pre[] = "$aws/rules/";
    size_t pl = sizeof pre - 1;
    if (n <= pl || memcmp(t, pre, pl) != 0)
        return 0;
    const char *sl = memchr(t + pl, '/', n - pl);
    return sl ? (size_t)(sl - t) + 1 : 0;
}

void ciot__rules_doc_init(ciot__rules_doc *doc, const ciot__rules_msg *msg)
{
    doc->msg = msg;
    size_t skip = msg && msg->topic ? ingest_prefix(msg->topic, msg->topic_len) : 0;
    doc->topic = msg ? msg->topic + skip : NULL;
    doc->topic_len = msg ? msg->topic_len - skip : 0;
    doc->state = 0;
    doc->nmem = 0;
}

int ciot__rules_eval(bool *out_fired, size_t *out_len, char *buf, size_t cap,
                     const ciot__rule *rule, const ciot__rules_msg *msg)
{
    if (!msg)
        return CIOT_EINVAL;
    ciot__rules_doc d;
    ciot__rules_doc_init(&d, msg);
    return ciot__rules_eval_doc(out_fired, out_len, buf, cap, rule, &d, false);
}

int ciot__rules_eval_doc(bool *out_fired, size_t *out_len, char *buf, size_t cap,
                         const ciot__rule *rule, ciot__rules_doc *doc, bool from_matched)
{
    const ciot__rules_msg *msg = doc ? doc->msg : NULL;
    if (!out_fired || !out_len || (!buf && cap) || !rule || !msg || (!msg->topic && msg->topic_len) ||
        (!msg->payload && msg->payload_len) || (!msg->client_id && msg->client_id_len))
        return CIOT_EINVAL;
    *out_fired = false;
    *out_len = 0;
    int rc;
    if (!from_matched) {
        bool match = false;
        rc = ciot_topic_match_ex(rule->filter, rule->filter_len, doc->topic, doc->topic_len,
                                 CIOT_MATCH_AWS, &match);
        if (rc)
            return rc;
        if (!match)
            return 0;
    }

    ctx c;
    c.r = rule;
    c.m = msg;
    c.d = doc;
    c.topic = doc->topic;
    c.topic_len = doc->topic_len;
    c.scr_used = 0;
    c.scr = c.scratch;
    memset(c.looked, 0, (size_t)rule->nroots * sizeof c.looked[0]);
    bool root_ok = rule->star && doc_ready(doc);

    if (rule->where >= 0) {
        rval w;
        rc = eval(&c, rule->where, &w);
        if (rc)
            return rc;
        if (w.t != V_BOOL || !w.b)
            return 0;
    }

    ciot_json_writer wr;
    rc = ciot_json_writer_init(&wr, buf, cap);
    if (rc)
        return rc;
    if (rule->value) {
        rval v;
        rc = eval(&c, rule->nodes[rule->items[0]].kid, &v);
        if (rc)
            return rc;
        if (v.t == V_UNDEF)
            return 0; /* no output [LIB] */
        rc = write_val(&c, &wr, &v);
    } else {
        rval vals[CIOT__RULES_MAX_ITEMS];
        for (int32_t i = 0; i < rule->nitems; i++) {
            const rnode *it = &rule->nodes[rule->items[i]];
            vals[i] = UNDEF;
            if (it->kind == N_ITEM && (rc = eval(&c, it->kid, &vals[i])) != 0)
                return rc;
        }
        rc = ciot_json_begin_object(&wr);
        for (int32_t i = 0; i < rule->nitems && !rc; i++) {
            const rnode *it = &rule->nodes[rule->items[i]];
            uint8_t fl = rule->item_flags[i];
            if (it->kind == N_ITEM) {
                if (vals[i].t == V_UNDEF)
                    continue;
                bool later = false; /* a later defined item with the same key wins [LIB] */
                for (int32_t j = i + 1; j < rule->nitems && !later && (fl & IF_LATER); j++) {
                    const rnode *o = &rule->nodes[rule->items[j]];
                    int idx;
                    uint64_t wa, wb;
                    rules_key_words(it->key, it->key_len, &wa, &wb);
                    later = (o->kind == N_STAR && root_ok && doc->root.type == CIOT_JSON_OBJECT &&
                             doc_member(doc, it->key, it->key_len, wa, wb, &(ciot_json_value){0}, &idx)) ||
                            (o->kind == N_ITEM && vals[j].t != V_UNDEF &&
                             key_eq(o->key, o->key_len, it->key, it->key_len));
                }
                if (later)
                    continue;
                rc = (fl & IF_PLAIN) ? ciot__json_key_plain(&wr, it->key, it->key_len)
                                     : ciot_json_key(&wr, it->key, it->key_len);
                rc = rc ? rc : write_val(&c, &wr, &vals[i]);
                continue;
            }
            /* `*`: every member of an object payload */
            if (!root_ok || doc->root.type != CIOT_JSON_OBJECT)
                continue;
            ciot_json_iter iter;
            ciot_json_value k, v;
            rc = ciot_json_iter_init(&iter, &doc->root);
            while (!rc && (rc = ciot_json_iter_next(&iter, &k, &v)) == 0) {
                rval key, val;
                size_t mark = c.scr_used;
                rc = from_json(&c, &k, &key);
                if (rc)
                    break;
                /* duplicate keys in the payload are copied as they are, in
                 * order (readers that keep the last one see the same value);
                 * removing them would cost a scan of the payload per member */
                bool later = false;
                for (int32_t j = i + 1; j < rule->nitems && !later && (fl & IF_LATER); j++) {
                    const rnode *o = &rule->nodes[rule->items[j]];
                    later = o->kind == N_STAR ||
                            (vals[j].t != V_UNDEF && key_eq(o->key, o->key_len, key.p, key.n));
                }
                if (later)
                    continue;
                rc = from_json(&c, &v, &val);
                rc = rc ? rc : ciot_json_key(&wr, key.p, key.n);
                rc = rc ? rc : (val.t == V_UNDEF ? ciot_json_raw(&wr, v.ptr, v.len) : write_val(&c, &wr, &val));
                c.scr_used = mark;
            }
            if (rc == CIOT_ENOTFOUND)
                rc = 0;
        }
        rc = rc ? rc : ciot_json_end_object(&wr);
    }
    size_t len = 0;
    rc = rc ? rc : ciot_json_writer_finish(&wr, &len);
    if (rc == 0 || rc == CIOT_ENOSPC) {
        *out_fired = true;
        *out_len = len;
    }
    return rc;
}
