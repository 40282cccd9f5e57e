/*
 * AWS IoT SQL (protocols.md §3): lexer and recursive-descent parser.
 * The evaluator is in rules_eval.c; the AST is in rules_ast.h.
 *
 * Compiling lexes the text once to count its tokens, then allocates one
 * block (rule header, node array, unescaped string storage) sized from that
 * count, and parses into it. Each node consumes at least one token, except
 * SELECT items (at most one per token), so 2 * tokens + 4 nodes suffice.
 */
#include "core/rules_ast.h"

#include <cloudiot/error.h>
#include <cloudiot/json.h>
#include <cloudiot/topic.h>

#include "core/utf8.h"
#include "internal.h"

#include <stdio.h>
#include <string.h>

enum tok_kind { T_EOF, T_IDENT, T_NUM, T_STR, T_OP };

typedef struct tok {
    int kind;
    size_t pos, len; /* bytes of the source */
    bool dec;        /* T_NUM with '.' or exponent */
} tok;

typedef struct parser {
    const char *src;
    size_t len;
    size_t pos; /* lexer position (after cur) */
    tok cur;
    ciot__rule *r; /* NULL while counting */
    int32_t nodes_cap;
    char *text; /* unescaped string storage */
    size_t text_used;
    ciot__rules_error *err;
    int rc;
    int depth;
} parser;

static void fail(parser *p, int rc, size_t off, const char *fmt, const char *arg)
{
    if (p->rc)
        return;
    p->rc = rc;
    if (!p->err)
        return;
    size_t line = 1, col = 1;
    for (size_t i = 0; i < off && i < p->len; i++) {
        if (p->src[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    p->err->offset = off;
    int n = snprintf(p->err->msg, sizeof p->err->msg, "%zu:%zu: ", line, col);
    if (n < 0 || (size_t)n >= sizeof p->err->msg)
        return;
    snprintf(p->err->msg + n, sizeof p->err->msg - (size_t)n, "%s%s%s%s", fmt, arg ? " '" : "",
             arg ? arg : "", arg ? "'" : "");
}

static bool is_id0(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_id(char c) { return is_id0(c) || is_digit(c); }

/* Reads the next token into p->cur; on a lexical error sets p->rc. */
static void lex(parser *p)
{
    const char *s = p->src;
    size_t i = p->pos, n = p->len;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
        i++;
    tok t = {T_EOF, i, 0, false};
    if (i >= n) {
        p->cur = t;
        p->pos = i;
        return;
    }
    char c = s[i];
    size_t j = i;
    if (is_id0(c)) {
        while (j < n && is_id(s[j]))
            j++;
        t.kind = T_IDENT;
    } else if (is_digit(c)) {
        t.kind = T_NUM;
        if (c == '0' && j + 1 < n && is_digit(s[j + 1])) {
            fail(p, CIOT_EINVAL, i, "bad number literal (leading zero)", NULL);
            return;
        }
        while (j < n && is_digit(s[j]))
            j++;
        if (j < n && s[j] == '.') {
            j++;
            t.dec = true;
            if (j >= n || !is_digit(s[j])) {
                fail(p, CIOT_EINVAL, i, "bad number literal (digit expected after '.')", NULL);
                return;
            }
            while (j < n && is_digit(s[j]))
                j++;
        }
        if (j < n && (s[j] == 'e' || s[j] == 'E')) {
            j++;
            t.dec = true;
            if (j < n && (s[j] == '+' || s[j] == '-'))
                j++;
            if (j >= n || !is_digit(s[j])) {
                fail(p, CIOT_EINVAL, i, "bad number literal (digit expected in exponent)", NULL);
                return;
            }
            while (j < n && is_digit(s[j]))
                j++;
        }
        if (j < n && (is_id(s[j]) || s[j] == '.')) {
            fail(p, CIOT_EINVAL, i, "bad number literal", NULL);
            return;
        }
    } else if (c == '\'' || c == '"') {
        t.kind = T_STR;
        j++;
        for (;;) {
            if (j >= n) {
                fail(p, CIOT_EINVAL, i, "unterminated string literal", NULL);
                return;
            }
            if (s[j] == c) {
                if (j + 1 < n && s[j + 1] == c) {
                    j += 2;
                    continue;
                }
                j++;
                break;
            }
            j++;
        }
    } else {
        t.kind = T_OP;
        j++;
        if ((c == '<' || c == '>') && j < n && s[j] == '=')
            j++;
        else if (c == '<' && j < n && s[j] == '>')
            j++;
        else if (!strchr("=<>+-*/%(),.[]{}:", c)) {
            char buf[2] = {c, 0};
            if ((unsigned char)c >= 0x80 || (unsigned char)c < 0x20)
                fail(p, CIOT_EINVAL, i, "unexpected byte", NULL);
            else if (c == '!')
                fail(p, CIOT_EINVAL, i, "unexpected character '!' (use <> for inequality)", NULL);
            else
                fail(p, CIOT_EINVAL, i, "unexpected character", buf);
            return;
        }
    }
    t.len = j - i;
    p->cur = t;
    p->pos = j;
}

static bool tok_is(const parser *p, const tok *t, const char *word)
{
    size_t wl = strlen(word);
    if (t->len != wl)
        return false;
    const char *s = p->src + t->pos;
    if (t->kind == T_OP)
        return memcmp(s, word, wl) == 0;
    if (t->kind != T_IDENT)
        return false;
    for (size_t i = 0; i < wl; i++) {
        char a = s[i];
        if (a >= 'a' && a <= 'z')
            a = (char)(a - 'a' + 'A');
        if (a != word[i])
            return false;
    }
    return true;
}

static bool is(const parser *p, const char *word) { return tok_is(p, &p->cur, word); }

static const char *const keywords[] = {"SELECT", "FROM", "WHERE", "AS",   "AND",  "OR",
                                       "NOT",    "CASE", "WHEN",  "THEN", "ELSE", "END",
                                       "TRUE",   "FALSE", "NULL"};

static bool is_keyword(const parser *p, const tok *t)
{
    if (t->kind != T_IDENT)
        return false;
    for (size_t i = 0; i < sizeof keywords / sizeof keywords[0]; i++)
        if (tok_is(p, t, keywords[i]))
            return true;
    return false;
}

static tok peek(parser *p)
{
    parser q = *p;
    q.err = NULL;
    lex(&q);
    return q.rc ? (tok){T_EOF, q.pos, 0, false} : q.cur;
}

static void next(parser *p)
{
    if (!p->rc)
        lex(p);
}

static const char *tok_desc(const parser *p)
{
    switch (p->cur.kind) {
    case T_EOF:
        return "end of input";
    case T_IDENT:
        return "a name";
    case T_NUM:
        return "a number";
    case T_STR:
        return "a string";
    default:
        return "an operator";
    }
}

static void expected(parser *p, const char *what)
{
    char buf[96];
    snprintf(buf, sizeof buf, "expected %s, found %s", what, tok_desc(p));
    fail(p, CIOT_EINVAL, p->cur.pos, buf, NULL);
}

static bool accept(parser *p, const char *word)
{
    if (!p->rc && is(p, word)) {
        next(p);
        return true;
    }
    return false;
}

static bool expect(parser *p, const char *word)
{
    if (accept(p, word))
        return true;
    if (!p->rc) {
        char buf[48];
        snprintf(buf, sizeof buf, "%s%s%s", is_id0(word[0]) ? "" : "'", word, is_id0(word[0]) ? "" : "'");
        expected(p, buf);
    }
    return false;
}

/* ---- nodes ---- */

static int32_t new_node(parser *p, int kind, size_t pos)
{
    if (p->rc)
        return -1;
    if (p->r->nnodes >= p->nodes_cap) { /* cannot happen with the bound above */
        fail(p, CIOT_ERANGE, pos, "rule too complex", NULL);
        return -1;
    }
    int32_t id = p->r->nnodes++;
    rnode *n = &p->r->nodes[id];
    memset(n, 0, sizeof *n);
    n->kind = (uint8_t)kind;
    n->pos = (uint32_t)pos;
    n->kid = -1;
    n->next = -1;
    n->height = 1;
    return id;
}

static rnode *N(parser *p, int32_t id) { return &p->r->nodes[id]; }

/* Appends child c to node n (keeps a tail pointer via a scan; lists are short). */
static void add_kid(parser *p, int32_t n, int32_t c)
{
    if (p->rc || n < 0 || c < 0)
        return;
    rnode *pn = N(p, n);
    if (pn->kid < 0) {
        pn->kid = c;
    } else {
        int32_t k = pn->kid;
        while (N(p, k)->next >= 0)
            k = N(p, k)->next;
        N(p, k)->next = c;
    }
    pn->nkids++;
    if (N(p, c)->height + 1 > pn->height)
        pn->height = (uint16_t)(N(p, c)->height + 1);
    if (pn->height > CIOT__RULES_MAX_HEIGHT)
        fail(p, CIOT_EDEPTH, pn->pos, "expression nested too deeply", NULL);
}

/* Unescapes the string token into the text storage. */
static void str_value(parser *p, const tok *t, const char **out, size_t *out_len)
{
    const char *s = p->src + t->pos;
    char q = s[0];
    char *d = p->text + p->text_used;
    size_t k = 0;
    for (size_t i = 1; i + 1 < t->len; i++) {
        d[k++] = s[i];
        if (s[i] == q)
            i++; /* doubled quote */
    }
    *out = d;
    *out_len = k;
    p->text_used += k;
}

static int32_t parse_expr(parser *p);

static int32_t parse_path(parser *p)
{
    tok t = p->cur;
    int32_t n = new_node(p, N_PATH, t.pos);
    if (n < 0)
        return -1;
    N(p, n)->s = p->src + t.pos;
    N(p, n)->n = t.len;
    /* distinct root names get a slot */
    ciot__rule *r = p->r;
    int32_t slot = -1;
    for (int32_t i = 0; i < r->nroots; i++)
        if (r->roots[i].n == t.len && memcmp(r->roots[i].s, p->src + t.pos, t.len) == 0)
            slot = i;
    if (slot < 0) {
        if (r->nroots >= CIOT__RULES_MAX_ROOTS) {
            fail(p, CIOT_ERANGE, t.pos, "too many distinct field names", NULL);
            return -1;
        }
        slot = r->nroots++;
        r->roots[slot].s = p->src + t.pos;
        r->roots[slot].n = t.len;
        rules_key_words(r->roots[slot].s, t.len, &r->roots[slot].wa, &r->roots[slot].wb);
    }
    N(p, n)->slot = slot;
    N(p, n)->key = p->src + t.pos; /* output key: last name segment */
    N(p, n)->key_len = t.len;
    next(p);
    for (;;) {
        if (p->rc)
            return -1;
        if (is(p, ".")) {
            next(p);
            if (p->cur.kind != T_IDENT || is_keyword(p, &p->cur)) {
                if (!p->rc)
                    expected(p, "a field name after '.'");
                return -1;
            }
            int32_t sg = new_node(p, N_SEG_KEY, p->cur.pos);
            if (sg < 0)
                return -1;
            N(p, sg)->s = p->src + p->cur.pos;
            N(p, sg)->n = p->cur.len;
            N(p, n)->key = N(p, sg)->s;
            N(p, n)->key_len = N(p, sg)->n;
            add_kid(p, n, sg);
            next(p);
        } else if (is(p, "[")) {
            next(p);
            if (p->cur.kind != T_NUM || p->cur.dec) {
                if (!p->rc)
                    expected(p, "an array index");
                return -1;
            }
            int32_t sg = new_node(p, N_SEG_IDX, p->cur.pos);
            if (sg < 0)
                return -1;
            ciot_json_value v = {CIOT_JSON_NUMBER, p->src + p->cur.pos, p->cur.len};
            if (ciot_json_get_int64(&v, &N(p, sg)->i) != 0) {
                fail(p, CIOT_EINVAL, p->cur.pos, "array index out of range", NULL);
                return -1;
            }
            add_kid(p, n, sg);
            next(p);
            if (!expect(p, "]"))
                return -1;
        } else {
            return n;
        }
    }
}

static const struct {
    const char *name;
    int id;
} functions[] = {
    {"topic", F_TOPIC},         {"timestamp", F_TIMESTAMP}, {"clientid", F_CLIENTID},
    {"abs", F_ABS},             {"lower", F_LOWER},         {"upper", F_UPPER},
    {"trim", F_TRIM},           {"concat", F_CONCAT},       {"length", F_LENGTH},
    {"substring", F_SUBSTRING}, {"startswith", F_STARTSWITH}, {"endswith", F_ENDSWITH},
    {"indexof", F_INDEXOF},     {"get", F_GET},             {"isnull", F_ISNULL},
    {"isundefined", F_ISUNDEFINED}, {"cast", F_CAST},       {"round", F_ROUND},
    {"floor", F_FLOOR},         {"ceil", F_CEIL},           {"trunc", F_TRUNC},
    {"mod", F_MOD},             {"power", F_POWER},         {"sqrt", F_SQRT},
    {"sign", F_SIGN},           {"newuuid", F_NEWUUID},
};

static const char *const cast_types[] = {"INT", "DECIMAL", "DOUBLE", "STRING", "BOOL", "BOOLEAN"};

static int32_t parse_call(parser *p)
{
    tok t = p->cur;
    int fid = -1;
    for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++) {
        size_t fl = strlen(functions[i].name);
        if (fl != t.len)
            continue;
        size_t k = 0;
        for (; k < fl; k++) {
            char a = p->src[t.pos + k];
            if (a >= 'A' && a <= 'Z')
                a = (char)(a - 'A' + 'a');
            if (a != functions[i].name[k])
                break;
        }
        if (k == fl)
            fid = functions[i].id;
    }
    if (fid < 0) {
        char name[40];
        size_t l = t.len < sizeof name - 1 ? t.len : sizeof name - 1;
        memcpy(name, p->src + t.pos, l);
        name[l] = 0;
        fail(p, CIOT_EINVAL, t.pos, "unsupported function", name);
        return -1;
    }
    int32_t n = new_node(p, N_CALL, t.pos);
    if (n < 0)
        return -1;
    N(p, n)->op = (uint8_t)fid;
    next(p); /* name */
    next(p); /* ( */
    if (fid == F_CAST) {
        add_kid(p, n, parse_expr(p));
        if (!expect(p, "AS"))
            return -1;
        int ty = -1;
        for (int i = 0; i < 6; i++)
            if (p->cur.kind == T_IDENT && is(p, cast_types[i]))
                ty = i;
        if (ty < 0) {
            if (!p->rc)
                expected(p, "a type (Int, Decimal, Double, String, Bool, Boolean)");
            return -1;
        }
        N(p, n)->i = ty;
        next(p);
        expect(p, ")");
        return p->rc ? -1 : n;
    }
    if (!is(p, ")")) {
        do {
            add_kid(p, n, parse_expr(p));
        } while (!p->rc && accept(p, ","));
    }
    if (!expect(p, ")"))
        return -1;
    return n;
}

static int32_t parse_number(parser *p)
{
    tok t = p->cur;
    ciot_json_value v = {CIOT_JSON_NUMBER, p->src + t.pos, t.len};
    int32_t n = new_node(p, N_INT, t.pos);
    if (n < 0)
        return -1;
    if (ciot_json_get_int64(&v, &N(p, n)->i) == 0) {
        /* digits, or a whole-number Decimal: Int (§3.1) */
    } else if (t.dec && ciot_json_get_double(&v, &N(p, n)->d) == 0) {
        N(p, n)->kind = N_DEC;
    } else {
        fail(p, CIOT_EINVAL, t.pos, "number literal out of range", NULL);
        return -1;
    }
    next(p);
    return n;
}

static int32_t parse_primary(parser *p)
{
    if (p->rc)
        return -1;
    tok t = p->cur;
    switch (t.kind) {
    case T_NUM:
        return parse_number(p);
    case T_STR: {
        int32_t n = new_node(p, N_STR, t.pos);
        if (n < 0)
            return -1;
        str_value(p, &t, &N(p, n)->s, &N(p, n)->n);
        next(p);
        return n;
    }
    case T_IDENT: {
        if (is(p, "TRUE") || is(p, "FALSE") || is(p, "NULL")) {
            int32_t n = new_node(p, is(p, "NULL") ? N_NULL : N_BOOL, t.pos);
            if (n >= 0)
                N(p, n)->i = is(p, "TRUE");
            next(p);
            return n;
        }
        if (is(p, "CASE")) {
            int32_t n = new_node(p, N_CASE, t.pos);
            next(p);
            add_kid(p, n, parse_expr(p));
            if (!is(p, "WHEN")) {
                if (!p->rc)
                    expected(p, "WHEN");
                return -1;
            }
            while (!p->rc && is(p, "WHEN")) {
                int32_t w = new_node(p, N_WHEN, p->cur.pos);
                next(p);
                add_kid(p, w, parse_expr(p));
                expect(p, "THEN");
                add_kid(p, w, parse_expr(p));
                add_kid(p, n, w);
            }
            if (accept(p, "ELSE")) {
                int32_t e = new_node(p, N_ELSE, t.pos);
                add_kid(p, e, parse_expr(p));
                add_kid(p, n, e);
            }
            if (!expect(p, "END"))
                return -1;
            return n;
        }
        if (is_keyword(p, &t)) {
            expected(p, "an expression");
            return -1;
        }
        tok nx = peek(p);
        if (tok_is(p, &nx, "("))
            return parse_call(p);
        return parse_path(p);
    }
    case T_OP:
        if (is(p, "(")) {
            next(p);
            if (is(p, "SELECT")) {
                fail(p, CIOT_EINVAL, p->cur.pos, "nested SELECT is not supported", NULL);
                return -1;
            }
            int32_t e = parse_expr(p);
            if (!expect(p, ")"))
                return -1;
            return e;
        }
        if (is(p, "{")) {
            int32_t n = new_node(p, N_OBJ, t.pos);
            next(p);
            if (!is(p, "}")) {
                do {
                    if (p->cur.kind != T_STR) {
                        if (!p->rc)
                            expected(p, "a string key");
                        return -1;
                    }
                    int32_t m = new_node(p, N_MEMBER, p->cur.pos);
                    if (m < 0)
                        return -1;
                    str_value(p, &p->cur, &N(p, m)->key, &N(p, m)->key_len);
                    next(p);
                    expect(p, ":");
                    add_kid(p, m, parse_expr(p));
                    add_kid(p, n, m);
                } while (!p->rc && accept(p, ","));
            }
            if (!expect(p, "}"))
                return -1;
            return n;
        }
        if (is(p, "[")) {
            int32_t n = new_node(p, N_ARR, t.pos);
            next(p);
            if (!is(p, "]")) {
                do {
                    add_kid(p, n, parse_expr(p));
                } while (!p->rc && accept(p, ","));
            }
            if (!expect(p, "]"))
                return -1;
            return n;
        }
        break;
    default:
        break;
    }
    expected(p, "an expression");
    return -1;
}

static bool enter(parser *p)
{
    if (++p->depth > CIOT__RULES_MAX_DEPTH) {
        fail(p, CIOT_EDEPTH, p->cur.pos, "expression nested too deeply", NULL);
        return false;
    }
    return !p->rc;
}

static int32_t parse_unary(parser *p)
{
    bool prefix = is(p, "-");
    if (prefix && !enter(p))
        return -1;
    int32_t r;
    if (prefix) {
        int32_t n = new_node(p, N_NEG, p->cur.pos);
        next(p);
        add_kid(p, n, parse_unary(p));
        r = n;
    } else {
        r = parse_primary(p);
    }
    if (prefix)
        p->depth--;
    return p->rc ? -1 : r;
}

static int32_t binary(parser *p, int op, size_t pos, int32_t a, int32_t b)
{
    int32_t n = new_node(p, N_BIN, pos);
    if (n < 0)
        return -1;
    N(p, n)->op = (uint8_t)op;
    add_kid(p, n, a);
    add_kid(p, n, b);
    return p->rc ? -1 : n;
}

static int32_t parse_mul(parser *p)
{
    int32_t a = parse_unary(p);
    for (;;) {
        int op = is(p, "*") ? OP_MUL : is(p, "/") ? OP_DIV : is(p, "%") ? OP_MOD : -1;
        if (p->rc || op < 0)
            return p->rc ? -1 : a;
        size_t pos = p->cur.pos;
        next(p);
        a = binary(p, op, pos, a, parse_unary(p));
    }
}

static int32_t parse_add(parser *p)
{
    int32_t a = parse_mul(p);
    for (;;) {
        int op = is(p, "+") ? OP_ADD : is(p, "-") ? OP_SUB : -1;
        if (p->rc || op < 0)
            return p->rc ? -1 : a;
        size_t pos = p->cur.pos;
        next(p);
        a = binary(p, op, pos, a, parse_mul(p));
    }
}

static int32_t parse_cmp(parser *p)
{
    int32_t a = parse_add(p);
    int op = is(p, "=")    ? OP_EQ
             : is(p, "<>") ? OP_NE
             : is(p, "<")  ? OP_LT
             : is(p, "<=") ? OP_LE
             : is(p, ">")  ? OP_GT
             : is(p, ">=") ? OP_GE
                           : -1;
    if (p->rc || op < 0)
        return p->rc ? -1 : a;
    size_t pos = p->cur.pos;
    next(p);
    return binary(p, op, pos, a, parse_add(p));
}

static int32_t parse_not(parser *p)
{
    bool prefix = is(p, "NOT");
    if (prefix && !enter(p))
        return -1;
    int32_t r;
    if (prefix) {
        int32_t n = new_node(p, N_NOT, p->cur.pos);
        next(p);
        add_kid(p, n, parse_not(p));
        r = n;
    } else {
        r = parse_cmp(p);
    }
    if (prefix)
        p->depth--;
    return p->rc ? -1 : r;
}

static int32_t parse_and(parser *p)
{
    int32_t a = parse_not(p);
    while (!p->rc && is(p, "AND")) {
        size_t pos = p->cur.pos;
        next(p);
        a = binary(p, OP_AND, pos, a, parse_not(p));
    }
    return p->rc ? -1 : a;
}

static int32_t parse_expr(parser *p)
{
    if (!enter(p))
        return -1;
    int32_t a = parse_and(p);
    while (!p->rc && is(p, "OR")) {
        size_t pos = p->cur.pos;
        next(p);
        a = binary(p, OP_OR, pos, a, parse_and(p));
    }
    p->depth--;
    return p->rc ? -1 : a;
}

static void parse_rule(parser *p)
{
    ciot__rule *r = p->r;
    next(p);
    if (!expect(p, "SELECT"))
        return;
    if (is(p, "VALUE")) {
        /* VALUE is a keyword only directly after SELECT, and only when it
         * does not itself read as a field (`SELECT value FROM`, `value AS x`) */
        tok nx = peek(p);
        if (!(tok_is(p, &nx, ",") || tok_is(p, &nx, "FROM") || tok_is(p, &nx, "AS") ||
              tok_is(p, &nx, ".") || tok_is(p, &nx, "["))) {
            r->value = true;
            next(p);
        }
    }
    do {
        if (p->rc)
            return;
        size_t pos = p->cur.pos;
        if (r->nitems >= CIOT__RULES_MAX_ITEMS) {
            fail(p, CIOT_ERANGE, pos, "too many SELECT items", NULL);
            return;
        }
        if (is(p, "*")) {
            if (r->value) {
                fail(p, CIOT_EINVAL, pos, "SELECT VALUE needs an expression, not '*'", NULL);
                return;
            }
            int32_t it = new_node(p, N_STAR, pos);
            next(p);
            r->items[r->nitems++] = it;
            continue;
        }
        int32_t e = parse_expr(p);
        if (p->rc)
            return;
        int32_t it = new_node(p, N_ITEM, pos);
        add_kid(p, it, e);
        if (accept(p, "AS")) {
            if (p->cur.kind != T_IDENT || is_keyword(p, &p->cur)) {
                if (!p->rc)
                    expected(p, "an alias name after AS");
                return;
            }
            N(p, it)->key = p->src + p->cur.pos;
            N(p, it)->key_len = p->cur.len;
            next(p);
        } else if (N(p, e)->kind == N_PATH) {
            N(p, it)->key = N(p, e)->key;
            N(p, it)->key_len = N(p, e)->key_len;
        } else if (!r->value) {
            if (!p->rc)
                expected(p, "AS (an expression that is not a field needs an alias)");
            return;
        }
        r->items[r->nitems++] = it;
        if (r->value && is(p, ",")) {
            fail(p, CIOT_EINVAL, p->cur.pos, "SELECT VALUE takes exactly one expression", NULL);
            return;
        }
    } while (!p->rc && accept(p, ","));
    if (p->rc)
        return;
    if (r->value && r->nitems != 1) {
        fail(p, CIOT_EINVAL, p->cur.pos, "SELECT VALUE takes exactly one expression", NULL);
        return;
    }
    if (!expect(p, "FROM"))
        return;
    if (p->cur.kind != T_STR) {
        expected(p, "a quoted topic filter after FROM");
        return;
    }
    size_t fpos = p->cur.pos;
    str_value(p, &p->cur, &r->filter, &r->filter_len);
    if (ciot_topic_filter_check_ex(r->filter, r->filter_len, CIOT_TOPIC_AWS) != 0) {
        fail(p, CIOT_EINVAL, fpos, "FROM is not a valid topic filter", NULL);
        return;
    }
    next(p);
    r->where = -1;
    if (accept(p, "WHERE")) {
        r->where = parse_expr(p);
        if (p->rc)
            return;
    }
    if (p->cur.kind != T_EOF)
        expected(p, r->where < 0 ? "WHERE or end of input" : "end of input");
}

/* What the evaluator would otherwise work out for every message. */
static void item_flags(ciot__rule *r)
{
    for (int32_t i = 0; i < r->nitems; i++) {
        const rnode *it = &r->nodes[r->items[i]];
        uint8_t f = 0;
        if (it->kind == N_STAR)
            r->star = true;
        for (int32_t j = i + 1; j < r->nitems && !(f & IF_LATER); j++) {
            const rnode *o = &r->nodes[r->items[j]];
            if (it->kind == N_STAR || o->kind == N_STAR ||
                (o->key_len == it->key_len && (it->key_len == 0 || memcmp(o->key, it->key, it->key_len) == 0)))
                f |= IF_LATER;
        }
        if (it->kind == N_ITEM && ciot__utf8_valid(it->key, it->key_len, false)) {
            bool plain = true;
            for (size_t k = 0; k < it->key_len && plain; k++) {
                unsigned char ch = (unsigned char)it->key[k];
                plain = ch >= 0x20 && ch != '"' && ch != '\\';
            }
            if (plain)
                f |= IF_PLAIN;
        }
        r->item_flags[i] = f;
    }
}

int ciot__rules_compile(ciot__rule **out_rule, ciot__rules_error *err, const char *sql, size_t len,
                        const char *version, size_t version_len)
{
    parser p;
    memset(&p, 0, sizeof p);
    p.err = err;
    p.src = sql;
    p.len = len;
    if (err) {
        err->offset = 0;
        err->msg[0] = 0;
    }
    if (!out_rule || (!sql && len) || (!version && version_len)) {
        fail(&p, CIOT_EINVAL, 0, "invalid argument", NULL);
        return CIOT_EINVAL;
    }
    *out_rule = NULL;
    if (version_len != sizeof CIOT__RULES_SQL_VERSION - 1 ||
        memcmp(version, CIOT__RULES_SQL_VERSION, version_len) != 0) {
        fail(&p, CIOT_EVERSION, 0, "unsupported SQL version (only " CIOT__RULES_SQL_VERSION ")", NULL);
        return CIOT_EVERSION;
    }
    if (len > CIOT__RULES_MAX_SQL) {
        fail(&p, CIOT_ERANGE, CIOT__RULES_MAX_SQL, "SQL text too long", NULL);
        return CIOT_ERANGE;
    }
    if (!ciot__utf8_valid(sql, len, false)) {
        size_t off = 0;
        while (off < len && (unsigned char)sql[off] < 0x80 && sql[off] != 0)
            off++;
        fail(&p, CIOT_EINVAL, off, "SQL text is not valid UTF-8", NULL);
        return CIOT_EINVAL;
    }
    /* pass 1: count tokens (and catch lexical errors) */
    size_t ntok = 0;
    do {
        lex(&p);
        ntok++;
    } while (!p.rc && p.cur.kind != T_EOF);
    if (p.rc)
        return p.rc;
    size_t nnodes = 2 * ntok + 4;
    size_t sz = sizeof(ciot__rule) + nnodes * sizeof(rnode) + 2 * len + 1;
    ciot__rule *r = ciot__malloc(sz);
    if (!r)
        return CIOT_ENOMEM;
    memset(r, 0, sizeof *r);
    r->nodes = (rnode *)(r + 1);
    p.r = r;
    p.nodes_cap = (int32_t)nnodes;
    /* the rule keeps its own copy of the text: names point into it */
    char *copy = (char *)(r->nodes + nnodes);
    if (len)
        memcpy(copy, sql, len);
    p.src = copy;
    p.text = copy + len;
    p.pos = 0;
    p.depth = 0;
    r->where = -1;
    parse_rule(&p);
    if (p.rc) {
        ciot__free(r);
        return p.rc;
    }
    item_flags(r);
    *out_rule = r;
    return 0;
}

void ciot__rules_free(ciot__rule *rule) { ciot__free(rule); }

const char *ciot__rules_from(const ciot__rule *rule, size_t *out_len)
{
    if (out_len)
        *out_len = rule ? rule->filter_len : 0;
    return rule ? rule->filter : NULL;
}
