/*
 * The on-demand JSON reader against jansson (the oracle) on generated
 * documents, and against a corpus of malformed JSON. Every input is copied
 * into a buffer of exactly its size, so that ASan and valgrind catch a read
 * past the end.
 */
#include <cloudiot/cloudiot.h>

#include <criterion/criterion.h>
#include <float.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---- */

static double test_scale(void)
{
    const char *s = getenv("CIOT_TEST_SCALE");
    double f = s ? atof(s) : 1.0;
    return f > 0 ? f : 1.0;
}

static long scaled(long n)
{
    long r = (long)((double)n * test_scale());
    return r < 1 ? 1 : r;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1Du;
}

static unsigned rn(unsigned n)
{
    return (unsigned)(rnd() % n);
}

/* An exact-size heap copy: any read past len is a heap overflow. */
static char *exact(const char *s, size_t len)
{
    char *p = malloc(len ? len : 1);
    cr_assert_not_null(p);
    if (len)
        memcpy(p, s, len);
    return p;
}

typedef struct sb {
    char *p;
    size_t n, cap;
} sb;

static void sb_put(sb *b, const void *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap * 2 : 256;
        while (c < b->n + n + 1)
            c *= 2;
        b->p = realloc(b->p, c);
        cr_assert_not_null(b->p);
        b->cap = c;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_str(sb *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

static void sb_ch(sb *b, char c)
{
    sb_put(b, &c, 1);
}

static int j_flags = JSON_DECODE_ANY | JSON_ALLOW_NUL;

/* 1: jansson accepts; 0: rejects; 2: jansson cannot judge: it stops at the
 * first integer beyond int64 or real beyond double (valid JSON for us)
 * before it looks at the rest of the text, and it refuses \u0000 in keys. */
static int jansson_verdict(const char *s, size_t n)
{
    json_error_t e;
    json_t *j = json_loadb(s, n, (size_t)j_flags, &e);
    if (j) {
        json_decref(j);
        return 1;
    }
    if (json_error_code(&e) == json_error_numeric_overflow)
        return 2;
    /* jansson's own limit, not a JSON rule: \u0000 in a member name */
    return strstr(e.text, "NUL byte in object key") ? 2 : 0;
}

/* The copy of the document stays alive until the next call, so that the
 * view found can be used. */
static char *last_doc;

static int find(const char *doc, size_t n, const char *path, ciot_json_value *v)
{
    free(last_doc);
    last_doc = exact(doc, n);
    char *pa = exact(path, strlen(path));
    int rc = ciot_json_find(last_doc, n, pa, strlen(path), v);
    free(pa);
    return rc;
}

static int findz(const char *doc, const char *path, ciot_json_value *v)
{
    return find(doc, strlen(doc), path, v);
}

/* ---- generator ---- */

static void gen_ws(sb *b)
{
    static const char w[] = " \t\r\n";
    while (rn(6) == 0)
        sb_ch(b, w[rn(4)]);
}

static uint32_t gen_cp(void)
{
    switch (rn(10)) {
    case 0: return rn(0x20);                     /* control characters */
    case 1: return 0x80 + rn(0x800 - 0x80);      /* 2 bytes */
    case 2: {                                    /* 3 bytes, no surrogates */
        uint32_t c = 0x800 + rn(0x10000 - 0x800);
        return (c >= 0xD800 && c <= 0xDFFF) ? 0xFFFD : c;
    }
    case 3: return 0x10000 + rn(0x110000 - 0x10000); /* 4 bytes */
    case 4: {
        static const char sp[] = "\"\\/.[]";
        return (uint32_t)(unsigned char)sp[rn(sizeof sp - 1)];
    }
    default: return 0x20 + rn(0x5F);
    }
}

static void put_utf8(sb *b, uint32_t c)
{
    unsigned char o[4];
    size_t n;
    if (c < 0x80) {
        o[0] = (unsigned char)c;
        n = 1;
    } else if (c < 0x800) {
        o[0] = (unsigned char)(0xC0 | (c >> 6));
        o[1] = (unsigned char)(0x80 | (c & 0x3F));
        n = 2;
    } else if (c < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (c >> 12));
        o[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (c & 0x3F));
        n = 3;
    } else {
        o[0] = (unsigned char)(0xF0 | (c >> 18));
        o[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
        o[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
        o[3] = (unsigned char)(0x80 | (c & 0x3F));
        n = 4;
    }
    sb_put(b, o, n);
}

static void put_u(sb *b, unsigned u)
{
    char t[8];
    snprintf(t, sizeof t, rn(2) ? "\\u%04x" : "\\u%04X", u);
    sb_str(b, t);
}

/* A JSON string literal for code point c, escaped in one of the allowed ways. */
static void put_cp(sb *b, uint32_t c)
{
    if (c == '"' || c == '\\' || c < 0x20 || rn(8) == 0) {
        const char *short_esc = NULL;
        switch (c) {
        case '"': short_esc = "\\\""; break;
        case '\\': short_esc = "\\\\"; break;
        case '/': short_esc = "\\/"; break;
        case '\b': short_esc = "\\b"; break;
        case '\f': short_esc = "\\f"; break;
        case '\n': short_esc = "\\n"; break;
        case '\r': short_esc = "\\r"; break;
        case '\t': short_esc = "\\t"; break;
        default: break;
        }
        if (short_esc && rn(2)) {
            sb_str(b, short_esc);
        } else if (c >= 0x10000) {
            uint32_t v = c - 0x10000;
            put_u(b, 0xD800 + (v >> 10));
            put_u(b, 0xDC00 + (v & 0x3FF));
        } else {
            put_u(b, c);
        }
        return;
    }
    put_utf8(b, c);
}

static void gen_string(sb *b, int tag)
{
    sb_ch(b, '"');
    unsigned n = rn(4) == 0 ? rn(40) : rn(8);
    for (unsigned i = 0; i < n; i++) {
        uint32_t c = gen_cp();
        put_cp(b, c == 0 && tag >= 0 ? 1 : c); /* jansson refuses NUL in keys */
    }
    if (tag >= 0) { /* keys: a distinct suffix keeps them unique in their object */
        char t[16];
        snprintf(t, sizeof t, "#%d", tag);
        sb_str(b, t);
    }
    sb_ch(b, '"');
}

static void gen_number(sb *b)
{
    char t[64];
    switch (rn(8)) {
    case 0: {
        static const int64_t ex[] = {INT64_MIN, INT64_MAX, INT64_MIN + 1, INT64_MAX - 1, 0,
                                     (int64_t)1 << 53, ((int64_t)1 << 53) + 1, -((int64_t)1 << 53) - 1};
        snprintf(t, sizeof t, "%" PRId64, ex[rn(8)]);
        break;
    }
    case 1:
        snprintf(t, sizeof t, "%" PRId64, (int64_t)rnd());
        break;
    case 2:
        snprintf(t, sizeof t, "%d", (int)rn(2000) - 1000);
        break;
    case 3: { /* any finite double, shortest-ish or full precision */
        double d;
        do {
            uint64_t u = rnd();
            memcpy(&d, &u, sizeof d);
        } while (!isfinite(d));
        snprintf(t, sizeof t, "%.*g", 1 + (int)rn(17), d);
        break;
    }
    case 4: { /* decimal with many digits and an exponent, no overflow */
        unsigned nd = 1 + rn(40);
        size_t k = 0;
        if (rn(2))
            t[k++] = '-';
        t[k++] = (char)('1' + rn(9));
        for (unsigned i = 1; i < nd && k < 45; i++)
            t[k++] = (char)('0' + rn(10));
        if (rn(2)) {
            t[k++] = '.';
            t[k++] = (char)('0' + rn(10));
        }
        int e = (int)rn(600) - 340 - (int)nd;
        snprintf(t + k, sizeof t - k, "%s%d", rn(2) ? "e" : "E", e);
        break;
    }
    case 5: {
        static const char *sp[] = {"0", "-0", "0.0", "-0.0", "1e5", "1E+5", "1e-5", "0.5",
                                   "4.9406564584124654e-324", "2.2250738585072014E-308",
                                   "1.7976931348623157e308", "27.31", "1e-400", "123.456e-2"};
        snprintf(t, sizeof t, "%s", sp[rn(14)]);
        break;
    }
    default:
        snprintf(t, sizeof t, "%u.%u", rn(100000), rn(1000));
        break;
    }
    sb_str(b, t);
}

static void gen_value(sb *b, int depth)
{
    unsigned k = depth >= 6 ? 2 + rn(5) : rn(depth == 0 ? 2 : 8);
    switch (k) {
    case 0: { /* object */
        unsigned n = rn(6);
        sb_ch(b, '{');
        gen_ws(b);
        for (unsigned i = 0; i < n; i++) {
            if (i) {
                sb_ch(b, ',');
                gen_ws(b);
            }
            gen_string(b, (int)i);
            gen_ws(b);
            sb_ch(b, ':');
            gen_ws(b);
            gen_value(b, depth + 1);
            gen_ws(b);
        }
        sb_ch(b, '}');
        break;
    }
    case 1: { /* array */
        unsigned n = rn(6);
        sb_ch(b, '[');
        gen_ws(b);
        for (unsigned i = 0; i < n; i++) {
            if (i) {
                sb_ch(b, ',');
                gen_ws(b);
            }
            gen_value(b, depth + 1);
            gen_ws(b);
        }
        sb_ch(b, ']');
        break;
    }
    case 2: gen_string(b, -1); break;
    case 3: case 4: gen_number(b); break;
    case 5: sb_str(b, "true"); break;
    case 6: sb_str(b, "false"); break;
    default: sb_str(b, "null"); break;
    }
}

static void gen_doc(sb *b)
{
    b->n = 0;
    gen_ws(b);
    gen_value(b, 0);
    gen_ws(b);
}

/* ---- comparison with jansson ---- */

static int expected_type(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: return CIOT_JSON_OBJECT;
    case JSON_ARRAY: return CIOT_JSON_ARRAY;
    case JSON_STRING: return CIOT_JSON_STRING;
    case JSON_INTEGER: case JSON_REAL: return CIOT_JSON_NUMBER;
    case JSON_TRUE: return CIOT_JSON_TRUE;
    case JSON_FALSE: return CIOT_JSON_FALSE;
    default: return CIOT_JSON_NULL;
    }
}

static void same_bits(double a, double b, const char *what)
{
    cr_assert(memcmp(&a, &b, sizeof a) == 0, "%s: %.17g vs jansson %.17g", what, a, b);
}

static long leaves_checked;

/* Compares the value v (found at path) with jansson's j, and descends. */
static void compare(const char *doc, size_t n, sb *path, const ciot_json_value *v, json_t *j)
{
    cr_assert_eq(v->type, expected_type(j), "path %s: type %d", path->p ? path->p : "", v->type);
    cr_assert(v->ptr >= doc && v->ptr + v->len <= doc + n);
    switch (json_typeof(j)) {
    case JSON_STRING: {
        size_t len = 0, jl = json_string_length(j);
        char *buf = malloc(jl + 1);
        cr_assert_eq(ciot_json_get_string(v, buf, jl + 1, &len), 0);
        cr_assert_eq(len, jl);
        cr_assert(memcmp(buf, json_string_value(j), jl) == 0, "string at %s", path->p);
        cr_assert_eq(buf[jl], '\0');
        if (jl > 0) {
            cr_assert_eq(ciot_json_get_string(v, buf, jl, &len), CIOT_ENOSPC);
            cr_assert_eq(len, jl);
            cr_assert_eq(buf[0], '\0');
        }
        bool eq = false;
        cr_assert_eq(ciot_json_string_equal(v, json_string_value(j), jl, &eq), 0);
        cr_assert(eq);
        cr_assert_eq(ciot_json_string_equal(v, json_string_value(j), jl ? jl - 1 : 0, &eq), 0);
        cr_assert_eq(eq, jl == 0);
        double d;
        cr_assert_eq(ciot_json_get_double(v, &d), CIOT_ETYPE);
        free(buf);
        leaves_checked++;
        break;
    }
    case JSON_INTEGER: {
        int64_t i = 0;
        double d = 0;
        cr_assert_eq(ciot_json_get_int64(v, &i), 0, "int at %s: %.*s", path->p, (int)v->len, v->ptr);
        cr_assert_eq(i, (int64_t)json_integer_value(j));
        cr_assert_eq(ciot_json_get_double(v, &d), 0);
        same_bits(d, v->ptr[0] == '-' && i == 0 ? -0.0 : (double)json_integer_value(j), "int as double");
        leaves_checked++;
        break;
    }
    case JSON_REAL: {
        double d = 0, jd = json_real_value(j);
        int64_t i = 0;
        cr_assert_eq(ciot_json_get_double(v, &d), 0, "real at %s: %.*s", path->p, (int)v->len, v->ptr);
        same_bits(d, jd, path->p ? path->p : "");
        int rc = ciot_json_get_int64(v, &i);
        if (rc == 0)
            cr_assert(jd == (double)i, "int64 %" PRId64 " from %.*s", i, (int)v->len, v->ptr);
        else
            cr_assert(rc == CIOT_ERANGE &&
                          (jd != floor(jd) || fabs(jd) >= 9.2e18 || jd == 0 || v->len > 16),
                      "int64 of %.*s: %d", (int)v->len, v->ptr, rc);
        leaves_checked++;
        break;
    }
    case JSON_TRUE: case JSON_FALSE: {
        bool bv = !json_is_true(j);
        cr_assert_eq(ciot_json_get_bool(v, &bv), 0);
        cr_assert_eq(bv, json_is_true(j));
        leaves_checked++;
        break;
    }
    case JSON_NULL: {
        bool bv;
        cr_assert_eq(ciot_json_get_bool(v, &bv), CIOT_ETYPE);
        leaves_checked++;
        break;
    }
    case JSON_OBJECT: {
        ciot_json_iter it;
        ciot_json_value k, m;
        size_t count = 0;
        int rc;
        cr_assert_eq(ciot_json_iter_init(&it, v), 0);
        while ((rc = ciot_json_iter_next(&it, &k, &m)) == 0) {
            char kb[512];
            size_t kl;
            cr_assert_eq(ciot_json_get_string(&k, kb, sizeof kb, &kl), 0);
            const json_t *jm = json_object_getn(j, kb, kl);
            cr_assert_not_null(jm, "iterated key %.*s not in jansson", (int)kl, kb);
            cr_assert_eq(m.type, expected_type(jm));
            ciot_json_value g;
            cr_assert_eq(ciot_json_get_member(v, kb, kl, &g), 0);
            cr_assert(g.ptr == m.ptr && g.len == m.len);
            count++;
        }
        cr_assert_eq(rc, CIOT_ENOTFOUND);
        cr_assert_eq(ciot_json_iter_next(&it, &k, &m), CIOT_ENOTFOUND);
        cr_assert_eq(count, json_object_size(j));
        const char *key;
        size_t kl;
        json_t *jm;
        size_t base = path->n;
        json_object_keylen_foreach(j, key, kl, jm) {
            if (base)
                sb_ch(path, '.');
            for (size_t i = 0; i < kl; i++) {
                if (key[i] == '.' || key[i] == '[' || key[i] == ']' || key[i] == '\\')
                    sb_ch(path, '\\');
                sb_ch(path, key[i]);
            }
            ciot_json_value f;
            char *pa = exact(path->p, path->n);
            cr_assert_eq(ciot_json_find(doc, n, pa, path->n, &f), 0, "path %s", path->p);
            free(pa);
            compare(doc, n, path, &f, jm);
            path->n = base;
            if (path->p)
                path->p[base] = '\0';
        }
        cr_assert_eq(ciot_json_get_member(v, "no such key", 11, &m), CIOT_ENOTFOUND);
        break;
    }
    case JSON_ARRAY: {
        ciot_json_iter it;
        ciot_json_value m;
        size_t count = 0;
        int rc;
        cr_assert_eq(ciot_json_iter_init(&it, v), 0);
        while ((rc = ciot_json_iter_next(&it, NULL, &m)) == 0) {
            ciot_json_value g;
            cr_assert_eq(ciot_json_get_index(v, count, &g), 0);
            cr_assert(g.ptr == m.ptr && g.len == m.len);
            count++;
        }
        cr_assert_eq(rc, CIOT_ENOTFOUND);
        cr_assert_eq(count, json_array_size(j));
        cr_assert_eq(ciot_json_get_index(v, count, &m), CIOT_ENOTFOUND);
        size_t base = path->n;
        for (size_t i = 0; i < count; i++) {
            char t[32];
            snprintf(t, sizeof t, "[%zu]", i);
            sb_str(path, t);
            char *pa = exact(path->p, path->n);
            ciot_json_value f;
            cr_assert_eq(ciot_json_find(doc, n, pa, path->n, &f), 0, "path %s", path->p);
            free(pa);
            compare(doc, n, path, &f, json_array_get(j, i));
            path->n = base;
            path->p[base] = '\0';
        }
        break;
    }
    }
}

Test(json_read, agrees_with_jansson_on_generated_documents)
{
    long docs = scaled(20000);
    sb b = {0}, path = {0};
    leaves_checked = 0;
    for (long d = 0; d < docs; d++) {
        gen_doc(&b);
        char *doc = exact(b.p, b.n);
        json_error_t e;
        json_t *j = json_loadb(doc, b.n, (size_t)j_flags, &e);
        cr_assert_not_null(j, "generator made a document jansson rejects: %s (%s)", e.text, b.p);
        cr_assert_eq(ciot_json_validate(doc, b.n), 0, "doc %s", b.p);
        ciot_json_value root;
        cr_assert_eq(ciot_json_find(doc, b.n, NULL, 0, &root), 0);
        path.n = 0;
        compare(doc, b.n, &path, &root, j);
        json_decref(j);
        free(doc);
    }
    cr_log_info("%ld documents, %ld leaves compared", docs, leaves_checked);
    cr_assert_gt(leaves_checked, docs);
    free(b.p);
    free(path.p);
}

Test(json_read, every_truncation_is_judged_like_jansson)
{
    static const char *fixed[] = {
        "{\"deviceId\":\"temperature-sensor-001\",\"sensorType\":\"temperature\",\"value\":27.31,"
        "\"timestamp\":\"2026-11-26T04:56:27.123Z\",\"metadata\":{\"unit\":\"celsius\","
        "\"accuracy\":\"\xc2\xb1" "0.5\xc2\xb0" "C\"}}",
        "[1,-2.5e+3,true,false,null,\"\\ud83d\\ude00\\n\",{\"a\":[{}]}]",
        "\"\\u00e9\xf0\x9f\x98\x80\"",
        "-12.5E-7",
    };
    long docs = scaled(1000);
    sb b = {0};
    long checked = 0;
    for (long d = 0; d < docs + 4; d++) {
        if (d < 4) {
            b.n = 0;
            sb_str(&b, fixed[d]);
        } else {
            gen_doc(&b);
        }
        for (size_t cut = 0; cut < b.n; cut++) {
            char *p = exact(b.p, cut);
            int rc = ciot_json_validate(p, cut);
            int jv = jansson_verdict(p, cut);
            cr_assert(rc == 0 || rc == CIOT_EINVAL, "rc %d", rc);
            if (jv != 2)
                cr_assert_eq(rc == 0, jv == 1, "prefix %zu of %s: ours %d jansson %d", cut, b.p, rc, jv);
            ciot_json_value v;
            int frc = ciot_json_find(p, cut, "a", 1, &v);
            cr_assert(rc == 0 ? (frc == 0 || frc == CIOT_ENOTFOUND) : frc == rc);
            free(p);
            checked++;
        }
    }
    cr_log_info("%ld truncations checked", checked);
    free(b.p);
}

Test(json_read, random_mutations_are_judged_like_jansson)
{
    long docs = scaled(100000);
    sb b = {0};
    long accepted = 0, unjudged = 0;
    for (long d = 0; d < docs; d++) {
        gen_doc(&b);
        unsigned muts = 1 + rn(3);
        for (unsigned m = 0; m < muts && b.n > 0; m++) {
            size_t at = rn((unsigned)b.n);
            switch (rn(4)) {
            case 0: b.p[at] = (char)rn(256); break;
            case 1: {
                static const char pick[] = "{}[]\",:\\0-.eE+ \x80\xc0\xff";
                b.p[at] = pick[rn(sizeof pick - 1)];
                break;
            }
            case 2: memmove(b.p + at, b.p + at + 1, b.n - at - 1); b.n--; break;
            default: b.p[at] ^= (char)(1u << rn(8)); break;
            }
        }
        char *p = exact(b.p, b.n);
        int rc = ciot_json_validate(p, b.n);
        int jv = jansson_verdict(p, b.n);
        cr_assert(rc == 0 || rc == CIOT_EINVAL);
        if (memchr(p, 0, b.n) != NULL) {
            /* A raw NUL byte is never valid JSON, but jansson's lexer skips
             * one that follows a number: judge these without it. */
            cr_assert_eq(rc, CIOT_EINVAL);
            jv = 3;
        }
        if (jv < 2)
            cr_assert_eq(rc == 0, jv == 1, "ours %d jansson %d on %.*s", rc, jv, (int)b.n, b.p);
        else if (jv == 2)
            unjudged++;
        accepted += rc == 0;
        ciot_json_value v;
        int frc = ciot_json_find(p, b.n, "[0]", 3, &v);
        cr_assert(rc == 0 ? (frc == 0 || frc == CIOT_ENOTFOUND) : frc == rc);
        free(p);
    }
    cr_log_info("%ld mutated documents, %ld still valid, %ld beyond jansson's number range",
                docs, accepted, unjudged);
    cr_assert_lt(unjudged, docs / 10);
    free(b.p);
}

/* ---- the corpus of invalid JSON ---- */

static const struct {
    const char *s;
    size_t n; /* 0: strlen */
} invalid[] = {
    {"", 0}, {" ", 0}, {" \t\r\n", 0}, {"\f1", 0}, {"\v1", 0}, {"\xc2\xa0" "1", 0},
    {"{", 0}, {"}", 0}, {"[", 0}, {"]", 0}, {"[}", 0}, {"{]", 0}, {"[[]", 0}, {"[]]", 0},
    {"{\"a\":1", 0}, {"{\"a\":1,", 0}, {"{\"a\":1}}", 0}, {"{\"a\"}", 0}, {"{\"a\":}", 0},
    {"{\"a\" 1}", 0}, {"{:1}", 0}, {"{1:1}", 0}, {"{a:1}", 0}, {"{'a':1}", 0}, {"['a']", 0},
    {"{\"a\":1,}", 0}, {"[1,]", 0}, {"[,1]", 0}, {"[1,,2]", 0}, {"{,}", 0}, {"[1 2]", 0},
    {"{\"a\":1 \"b\":2}", 0}, {"{\"a\":1;\"b\":2}", 0}, {"[1]x", 0}, {"[1] [2]", 0},
    {"1 2", 0}, {"true false", 0}, {"{}{}", 0}, {"\"a\"\"b\"", 0}, {"nul", 0}, {"nulll", 0},
    {"tru", 0}, {"True", 0}, {"TRUE", 0}, {"fals", 0}, {"falsey", 0}, {"NULL", 0}, {"undefined", 0},
    {"NaN", 0}, {"-NaN", 0}, {"Infinity", 0}, {"-Infinity", 0}, {"inf", 0},
    {"01", 0}, {"-01", 0}, {"00", 0}, {"012.5", 0}, {"-", 0}, {"--1", 0}, {"+1", 0}, {"1.", 0},
    {"1.e5", 0}, {".5", 0}, {"-.5", 0}, {"1e", 0}, {"1e+", 0}, {"1e-", 0}, {"1E", 0}, {"1ee5", 0},
    {"1e5.5", 0}, {"1.5.5", 0}, {"0x10", 0}, {"1_000", 0}, {"1,5", 0}, {"[1.]", 0}, {"[-]", 0},
    {"{\"a\":01}", 0}, {"[.5]", 0}, {"\xef\xbc\x91", 0},
    {"\"abc", 0}, {"\"", 0}, {"\"\\\"", 0}, {"\"\\", 0}, {"abc\"", 0},
    {"\"\\x41\"", 0}, {"\"\\a\"", 0}, {"\"\\'\"", 0}, {"\"\\0\"", 0}, {"\"\\U0041\"", 0},
    {"\"\\u\"", 0}, {"\"\\u12\"", 0}, {"\"\\u12g4\"", 0}, {"\"\\u 123\"", 0}, {"\"\\u-123\"", 0},
    {"\"\\ud800\"", 0}, {"\"\\udc00\"", 0}, {"\"\\udc00\\ud800\"", 0}, {"\"\\ud800\\ud800\"", 0},
    {"\"\\ud800x\"", 0}, {"\"\\ud800\\u0041\"", 0}, {"\"\\ud800\\\"", 0}, {"\"\\uDBFF\\uE000\"", 0},
    {"\"\\ud800\\n\"", 0}, {"\"\\ud83d\"", 0}, {"\"\\ude00\"", 0}, {"\"\\ud83d\\u\"", 0},
    {"\"\x01\"", 0}, {"\"\x1f\"", 0}, {"\"a\nb\"", 0}, {"\"a\tb\"", 0}, {"\"\r\"", 0},
    {"\"a\0b\"", 5},
    {"\"\x80\"", 0}, {"\"\xbf\"", 0}, {"\"\xc0\x80\"", 0}, {"\"\xc1\xbf\"", 0}, {"\"\xc2\"", 0},
    {"\"\xc2\x41\"", 0}, {"\"\xe0\x80\x80\"", 0}, {"\"\xe0\x9f\xbf\"", 0}, {"\"\xed\xa0\x80\"", 0},
    {"\"\xed\xbf\xbf\"", 0}, {"\"\xe2\x82\"", 0}, {"\"\xe2\x28\xa1\"", 0}, {"\"\xf0\x80\x80\x80\"", 0},
    {"\"\xf0\x8f\xbf\xbf\"", 0}, {"\"\xf4\x90\x80\x80\"", 0}, {"\"\xf5\x80\x80\x80\"", 0},
    {"\"\xf8\x88\x80\x80\x80\"", 0}, {"\"\xff\"", 0}, {"\"\xfe\"", 0}, {"\"\xf0\x9f\x98\"", 0},
    {"{\"\xff\":1}", 0}, {"{\"a\x01\":1}", 0},
    {"\xef\xbb\xbf{}", 0}, {"/* c */ {}", 0}, {"{} // c", 0}, {"# c\n{}", 0},
    {"{\"a\":1}\0", 8}, {"\0", 1}, {"[\0]", 3},
    {"{\"a\":[1,{\"b\":2]}}", 0}, {"{\"a\":{\"b\":[}}", 0}, {"[{\"a\":1},{\"b\"}]", 0},
};

Test(json_read, corpus_of_invalid_json_is_rejected)
{
    static const char *paths[] = {"", "a", "a.b", "[0]", "a[1].b"};
    size_t count = sizeof invalid / sizeof invalid[0];
    for (size_t i = 0; i < count; i++) {
        size_t n = invalid[i].n ? invalid[i].n : strlen(invalid[i].s);
        char *p = exact(invalid[i].s, n);
        int rc = ciot_json_validate(n ? p : NULL, n);
        cr_assert_eq(rc, CIOT_EINVAL, "case %zu (%s): %d", i, invalid[i].s, rc);
        cr_assert_eq(jansson_verdict(p, n), 0, "case %zu: jansson accepts it", i);
        for (size_t k = 0; k < sizeof paths / sizeof paths[0]; k++) {
            ciot_json_value v = {99, NULL, 7};
            cr_assert_eq(ciot_json_find(p, n, paths[k], strlen(paths[k]), &v), CIOT_EINVAL,
                         "case %zu path %s", i, paths[k]);
            cr_assert_eq(v.type, 99); /* untouched */
        }
        free(p);
    }
    cr_log_info("%zu invalid documents rejected", count);
}

Test(json_read, malformation_after_the_field_is_still_rejected)
{
    ciot_json_value v;
    cr_assert_eq(findz("{\"value\":1, garbage", "value", &v), CIOT_EINVAL);
    cr_assert_eq(findz("{\"value\":1}x", "value", &v), CIOT_EINVAL);
    cr_assert_eq(findz("{\"value\":1,\"b\":[1,]}", "value", &v), CIOT_EINVAL);
    cr_assert_eq(findz("[1,2,3,01]", "[0]", &v), CIOT_EINVAL);
    cr_assert_eq(findz("{\"a\":{\"b\":1,\"c\":tru}}", "a.b", &v), CIOT_EINVAL);
}

/* ---- depth ---- */

static char *nested(size_t depth, const char *open, const char *close, const char *inner)
{
    sb b = {0};
    for (size_t i = 0; i < depth; i++)
        sb_str(&b, open);
    sb_str(&b, inner);
    for (size_t i = 0; i < depth; i++)
        sb_str(&b, close);
    return b.p;
}

Test(json_read, nesting_limit_is_exact)
{
    char *ok = nested(CIOT_JSON_READER_MAX_DEPTH, "[", "]", "1");
    char *deep = nested(CIOT_JSON_READER_MAX_DEPTH + 1, "[", "]", "1");
    char *oko = nested(CIOT_JSON_READER_MAX_DEPTH, "{\"a\":", "}", "1");
    char *deepo = nested(CIOT_JSON_READER_MAX_DEPTH + 1, "{\"a\":", "}", "1");
    char *huge = nested(200000, "[", "]", "");
    char *open_only = nested(200000, "[{\"a\":", "", "");
    ciot_json_value v;
    int64_t i;
    cr_assert_eq(ciot_json_validate(ok, strlen(ok)), 0);
    cr_assert_eq(ciot_json_validate(oko, strlen(oko)), 0);
    cr_assert_eq(ciot_json_validate(deep, strlen(deep)), CIOT_EDEPTH);
    cr_assert_eq(ciot_json_validate(deepo, strlen(deepo)), CIOT_EDEPTH);
    cr_assert_eq(ciot_json_validate(huge, strlen(huge)), CIOT_EDEPTH);
    cr_assert_eq(ciot_json_validate(open_only, strlen(open_only)), CIOT_EDEPTH);
    cr_assert_eq(findz(deep, "[0]", &v), CIOT_EDEPTH);
    cr_assert_eq(findz(deepo, "a", &v), CIOT_EDEPTH);
    /* the innermost value of the deepest allowed document */
    sb p = {0};
    for (int k = 0; k < CIOT_JSON_READER_MAX_DEPTH; k++)
        sb_str(&p, k ? ".a" : "a");
    cr_assert_eq(findz(oko, p.p, &v), 0);
    cr_assert_eq(ciot_json_get_int64(&v, &i), 0);
    cr_assert_eq(i, 1);
    p.n = 0;
    for (int k = 0; k < CIOT_JSON_READER_MAX_DEPTH; k++)
        sb_str(&p, "[0]");
    cr_assert_eq(findz(ok, p.p, &v), 0);
    cr_assert_eq(v.type, CIOT_JSON_NUMBER);
    sb_str(&p, "[0]");
    cr_assert_eq(findz(ok, p.p, &v), CIOT_ENOTFOUND);
    /* jansson accepts the deeper one: our limit is stated, not jansson's */
    cr_assert_eq(jansson_verdict(deep, strlen(deep)), 1);
    free(p.p);
    free(ok);
    free(deep);
    free(oko);
    free(deepo);
    free(huge);
    free(open_only);
}

/* ---- paths ---- */

Test(json_read, paths_address_members_and_elements)
{
    const char *doc = "{\"a\":{\"b\":[10,{\"c\":\"x\"},[true]]},\"a.b\":1,\"[0]\":2,\"k\\\\\":3,"
                      "\"\xc3\xa9t\xc3\xa9\":4,\"\\u00e9\":5,\"n\\u0000ul\":6,\"\":7,\"x]\":8}";
    ciot_json_value v;
    int64_t i;
    cr_assert_eq(ciot_json_validate(doc, strlen(doc)), 0);
    cr_assert_eq(findz(doc, "a.b[0]", &v), 0);
    cr_assert_eq(ciot_json_get_int64(&v, &i), 0);
    cr_assert_eq(i, 10);
    cr_assert_eq(findz(doc, "a.b[1].c", &v), 0);
    cr_assert_eq(v.len, 3);
    cr_assert(memcmp(v.ptr, "\"x\"", 3) == 0);
    cr_assert_eq(findz(doc, "a.b[2][0]", &v), 0);
    cr_assert_eq(v.type, CIOT_JSON_TRUE);
    cr_assert_eq(findz(doc, "a.b", &v), 0);
    cr_assert_eq(v.type, CIOT_JSON_ARRAY);
    cr_assert_eq(v.ptr[0], '[');
    cr_assert_eq(v.ptr[v.len - 1], ']');
    cr_assert_eq(findz(doc, "a\\.b", &v), 0);
    cr_assert_eq(ciot_json_get_int64(&v, &i), 0);
    cr_assert_eq(i, 1);
    cr_assert_eq(findz(doc, "\\[0]", &v), 0);
    cr_assert_eq(ciot_json_get_int64(&v, &i), 0);
    cr_assert_eq(i, 2);
    cr_assert_eq(findz(doc, "\\[0\\]", &v), 0);
    cr_assert_eq(findz(doc, "k\\\\", &v), 0);
    cr_assert_eq(ciot_json_get_int64(&v, &i), 0);
    cr_assert_eq(i, 3);
    cr_assert_eq(findz(doc, "\xc3\xa9t\xc3\xa9", &v), 0);
    cr_assert_eq(findz(doc, "\xc3\xa9", &v), 0); /* the key was written \u00e9 */
    cr_assert_eq(ciot_json_get_int64(&v, &i), 0);
    cr_assert_eq(i, 5);
    cr_assert_eq(find(doc, strlen(doc), "n\0ul", &v), CIOT_ENOTFOUND); /* strlen stops at NUL */
    char *pa = exact("n\0ul", 4);
    cr_assert_eq(ciot_json_find(doc, strlen(doc), pa, 4, &v), 0);
    free(pa);
    cr_assert_eq(ciot_json_get_int64(&v, &i), 0);
    cr_assert_eq(i, 6);
    cr_assert_eq(findz(doc, "x]", &v), 0);
    cr_assert_eq(ciot_json_get_int64(&v, &i), 0);
    cr_assert_eq(i, 8);
    /* the empty key only through get_member */
    ciot_json_value root, m;
    cr_assert_eq(findz(doc, "", &root), 0);
    cr_assert_eq(root.type, CIOT_JSON_OBJECT);
    cr_assert_eq(root.len, strlen(doc));
    cr_assert_eq(ciot_json_get_member(&root, "", 0, &m), 0);
    cr_assert_eq(ciot_json_get_int64(&m, &i), 0);
    cr_assert_eq(i, 7);
    cr_assert_eq(ciot_json_get_member(&root, NULL, 0, &m), 0);
    cr_assert_eq(ciot_json_get_member(&root, "a.b", 3, &m), 0); /* no path syntax here */
    cr_assert_eq(ciot_json_get_int64(&m, &i), 0);
    cr_assert_eq(i, 1);
}

Test(json_read, absent_paths_are_not_found)
{
    const char *doc = " {\"a\":{\"b\":[10,20]},\"n\":5,\"s\":\"str\"} ";
    ciot_json_value v = {42, NULL, 0};
    cr_assert_eq(findz(doc, "x", &v), CIOT_ENOTFOUND);
    cr_assert_eq(findz(doc, "a.c", &v), CIOT_ENOTFOUND);
    cr_assert_eq(findz(doc, "a.b[2]", &v), CIOT_ENOTFOUND);
    cr_assert_eq(findz(doc, "a.b[99999999999999999999999]", &v), CIOT_ENOTFOUND);
    cr_assert_eq(findz(doc, "a[0]", &v), CIOT_ENOTFOUND); /* index into an object */
    cr_assert_eq(findz(doc, "a.b.c", &v), CIOT_ENOTFOUND); /* key into an array */
    cr_assert_eq(findz(doc, "n.x", &v), CIOT_ENOTFOUND);   /* key into a number */
    cr_assert_eq(findz(doc, "s[0]", &v), CIOT_ENOTFOUND);  /* index into a string */
    cr_assert_eq(findz(doc, "[0]", &v), CIOT_ENOTFOUND);
    cr_assert_eq(findz("[1,2]", "a", &v), CIOT_ENOTFOUND);
    cr_assert_eq(findz("5", "a", &v), CIOT_ENOTFOUND);
    cr_assert_eq(findz("{}", "a", &v), CIOT_ENOTFOUND);
    cr_assert_eq(findz("[]", "[0]", &v), CIOT_ENOTFOUND);
    cr_assert_eq(v.type, 42);
    cr_assert_eq(findz(doc, "", &v), 0);
    cr_assert_eq(v.type, CIOT_JSON_OBJECT);
    cr_assert_eq(v.ptr[0], '{'); /* surrounding whitespace is not part of the value */
    cr_assert_eq(v.ptr[v.len - 1], '}');
}

Test(json_read, malformed_paths_are_rejected)
{
    static const char *bad[] = {".a", "a.", "a..b", "[", "[]", "[a]", "[-1]", "[01]", "[1",
                                "[1]a", "[1]]", "a[", "a[1", "a\\", "a\\b", "a\\n", "a.[0]",
                                "[0].", "[ 0]", "[0 ]", "[+1]", "[1.5]"};
    const char *doc = "{\"a\":[1]}";
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ciot_json_value v;
        cr_assert_eq(findz(doc, bad[i], &v), CIOT_EINVAL, "path %s", bad[i]);
        cr_assert_eq(findz("[[[", bad[i], &v), CIOT_EINVAL);
    }
    ciot_json_value v;
    cr_assert_eq(ciot_json_find(doc, strlen(doc), NULL, 1, &v), CIOT_EINVAL);
    cr_assert_eq(ciot_json_find(NULL, 3, "a", 1, &v), CIOT_EINVAL);
    cr_assert_eq(ciot_json_find(doc, strlen(doc), "a", 1, NULL), CIOT_EINVAL);
    cr_assert_eq(ciot_json_find(doc, 0, "a", 1, &v), CIOT_EINVAL);
    cr_assert_eq(ciot_json_validate(NULL, 0), CIOT_EINVAL);
}

Test(json_read, duplicate_keys_last_wins_like_jansson)
{
    const char *doc = "{\"a\":{\"b\":1},\"x\":0,\"a\":{\"c\":2}}";
    ciot_json_value v;
    int64_t i;
    cr_assert_eq(findz(doc, "a.b", &v), CIOT_ENOTFOUND);
    cr_assert_eq(findz(doc, "a.c", &v), 0);
    cr_assert_eq(ciot_json_get_int64(&v, &i), 0);
    cr_assert_eq(i, 2);
    json_t *j = json_loads(doc, 0, NULL);
    cr_assert_null(json_object_get(json_object_get(j, "a"), "b"));
    json_decref(j);
    const char *esc = "{\"k\":1,\"\\u006b\":2}"; /* same name, written differently */
    cr_assert_eq(findz(esc, "k", &v), 0);
    cr_assert_eq(ciot_json_get_int64(&v, &i), 0);
    cr_assert_eq(i, 2);
    /* iteration yields both */
    ciot_json_value root, k, m;
    ciot_json_iter it;
    int n = 0;
    cr_assert_eq(findz(esc, "", &root), 0);
    cr_assert_eq(ciot_json_iter_init(&it, &root), 0);
    while (ciot_json_iter_next(&it, &k, &m) == 0) {
        bool eq;
        cr_assert_eq(ciot_json_string_equal(&k, "k", 1, &eq), 0);
        cr_assert(eq);
        n++;
    }
    cr_assert_eq(n, 2);
}

/* ---- typed getters ---- */

static ciot_json_value num(const char *s)
{
    ciot_json_value v = {CIOT_JSON_NUMBER, s, strlen(s)};
    return v;
}

static int get_d(const char *s, double *d)
{
    char *p = exact(s, strlen(s));
    ciot_json_value v = {CIOT_JSON_NUMBER, p, strlen(s)};
    int rc = ciot_json_get_double(&v, d);
    free(p);
    return rc;
}

static int get_i(const char *s, int64_t *i)
{
    char *p = exact(s, strlen(s));
    ciot_json_value v = {CIOT_JSON_NUMBER, p, strlen(s)};
    int rc = ciot_json_get_int64(&v, i);
    free(p);
    return rc;
}

Test(json_read, int64_is_exact_and_range_checked)
{
    static const struct {
        const char *s;
        int rc;
        int64_t v;
    } t[] = {
        {"0", 0, 0}, {"-0", 0, 0}, {"42", 0, 42}, {"-42", 0, -42},
        {"9223372036854775807", 0, INT64_MAX}, {"-9223372036854775808", 0, INT64_MIN},
        {"9223372036854775808", CIOT_ERANGE, 0}, {"-9223372036854775809", CIOT_ERANGE, 0},
        {"18446744073709551616", CIOT_ERANGE, 0}, {"100000000000000000000000000", CIOT_ERANGE, 0},
        {"1.0", 0, 1}, {"1e3", 0, 1000}, {"2.50e1", 0, 25}, {"-1.5E+1", 0, -15},
        {"1.5", CIOT_ERANGE, 0}, {"0.1", CIOT_ERANGE, 0}, {"1e-1", CIOT_ERANGE, 0},
        {"100e-2", 0, 1}, {"123e-2", CIOT_ERANGE, 0}, {"0.0e999999999999999999", 0, 0},
        {"1e19", CIOT_ERANGE, 0}, {"1e18", 0, 1000000000000000000}, {"1e999999999999999999999", CIOT_ERANGE, 0},
        {"9.223372036854775807e18", 0, INT64_MAX}, {"92233720368547758070e-1", 0, INT64_MAX},
        {"-92233720368547758080e-1", 0, INT64_MIN}, {"1e-99999999999999999999", CIOT_ERANGE, 0},
        {"0.000", 0, 0}, {"00", CIOT_EINVAL, 0}, {"1.", CIOT_EINVAL, 0}, {"- 1", CIOT_EINVAL, 0},
        {"1 ", CIOT_EINVAL, 0}, {"", CIOT_EINVAL, 0},
    };
    for (size_t k = 0; k < sizeof t / sizeof t[0]; k++) {
        int64_t v = 12345;
        int rc = get_i(t[k].s, &v);
        cr_assert_eq(rc, t[k].rc, "%s: rc %d", t[k].s, rc);
        if (rc == 0)
            cr_assert_eq(v, t[k].v, "%s: %" PRId64, t[k].s, v);
    }
    ciot_json_value s = {CIOT_JSON_STRING, "\"1\"", 3};
    int64_t v;
    cr_assert_eq(ciot_json_get_int64(&s, &v), CIOT_ETYPE);
    cr_assert_eq(ciot_json_get_int64(NULL, &v), CIOT_EINVAL);
    ciot_json_value n1 = num("1");
    cr_assert_eq(ciot_json_get_int64(&n1, NULL), CIOT_EINVAL);
}

Test(json_read, doubles_are_correctly_rounded)
{
    static const struct {
        const char *s;
        double v;
    } t[] = {
        {"27.31", 27.31}, {"0", 0.0}, {"1e5", 1e5}, {"0.1", 0.1}, {"-2.5e-3", -2.5e-3},
        {"9007199254740993", 9007199254740992.0}, /* halfway: to even */
        {"9007199254740995", 9007199254740996.0},
        {"0.1000000000000000055511151231257827021181583404541015625", 0.1},
        {"2.2250738585072011e-308", 2.2250738585072011e-308},
        {"4.9406564584124654e-324", 4.9406564584124654e-324},
        {"2.4703282292062327e-324", 0.0}, /* exactly half the smallest: to even (0) */
        {"2.4703282292062328e-324", 4.9406564584124654e-324},
        {"1.7976931348623157e308", 1.7976931348623157e308},
        {"1e-400", 0.0}, {"123456789012345678901234567890", 123456789012345678901234567890.0},
        {"1e23", 1e23}, {"8.5e-1", 0.85}, {"0.000001", 1e-6}, {"1E22", 1e22}, {"1e-22", 1e-22},
    };
    for (size_t k = 0; k < sizeof t / sizeof t[0]; k++) {
        double d = -1;
        cr_assert_eq(get_d(t[k].s, &d), 0, "%s", t[k].s);
        same_bits(d, t[k].v, t[k].s);
    }
    double d;
    cr_assert_eq(get_d("-0", &d), 0);
    cr_assert(d == 0 && signbit(d));
    cr_assert_eq(get_d("-0.0e5", &d), 0);
    cr_assert(d == 0 && signbit(d));
    cr_assert_eq(get_d("-1e-400", &d), 0);
    cr_assert(d == 0 && signbit(d));
    cr_assert_eq(get_d("1e400", &d), CIOT_ERANGE);
    cr_assert_eq(get_d("-1e400", &d), CIOT_ERANGE);
    cr_assert_eq(get_d("1.7976931348623159e308", &d), CIOT_ERANGE);
    cr_assert_eq(get_d("1e99999999999999999999999", &d), CIOT_ERANGE);
    cr_assert_eq(get_d("1e-99999999999999999999999", &d), 0);
    cr_assert_eq(d, 0.0);
    cr_assert_eq(get_d("1.5.", &d), CIOT_EINVAL);
    cr_assert_eq(get_d("+1", &d), CIOT_EINVAL);
}

Test(json_read, long_numbers_round_like_strtod)
{
    /* Up to 1,100 significant digits (beyond the 780 kept plus a sticky
     * digit), compared with glibc's correctly rounded strtod on a NUL-
     * terminated copy. */
    long n = scaled(3000);
    sb b = {0};
    for (long k = 0; k < n; k++) {
        b.n = 0;
        unsigned nd = 1 + rn(k % 10 == 0 ? 1100 : 60);
        sb_ch(&b, (char)('1' + rn(9)));
        for (unsigned i = 1; i < nd; i++) {
            /* long runs of 0 and 9 and halfway-looking tails */
            unsigned r = rn(10);
            if (i == nd / 2 && rn(2))
                sb_ch(&b, '.');
            sb_ch(&b, (char)(r < 3 ? '0' : r < 5 ? '9' : r == 5 ? '5' : '0' + rn(10)));
        }
        char e[16];
        snprintf(e, sizeof e, "e%d", (int)rn(700) - 360 - (int)nd / 2);
        sb_str(&b, e);
        double want = strtod(b.p, NULL), got;
        int rc = get_d(b.p, &got);
        if (isinf(want)) {
            cr_assert_eq(rc, CIOT_ERANGE, "%s", b.p);
        } else {
            cr_assert_eq(rc, 0, "%s", b.p);
            same_bits(got, want, b.p);
        }
    }
    free(b.p);
}

Test(json_read, bools_and_type_errors)
{
    bool bv;
    double d;
    int64_t i;
    size_t len;
    char buf[8];
    ciot_json_value t = {CIOT_JSON_TRUE, "true", 4}, f = {CIOT_JSON_FALSE, "false", 5};
    ciot_json_value nul = {CIOT_JSON_NULL, "null", 4}, n = num("1");
    ciot_json_value lie = {CIOT_JSON_TRUE, "nope", 4};
    cr_assert_eq(ciot_json_get_bool(&t, &bv), 0);
    cr_assert(bv);
    cr_assert_eq(ciot_json_get_bool(&f, &bv), 0);
    cr_assert(!bv);
    cr_assert_eq(ciot_json_get_bool(&nul, &bv), CIOT_ETYPE);
    cr_assert_eq(ciot_json_get_bool(&n, &bv), CIOT_ETYPE);
    cr_assert_eq(ciot_json_get_bool(&lie, &bv), CIOT_EINVAL);
    cr_assert_eq(ciot_json_get_double(&t, &d), CIOT_ETYPE);
    cr_assert_eq(ciot_json_get_int64(&nul, &i), CIOT_ETYPE);
    cr_assert_eq(ciot_json_get_string(&n, buf, sizeof buf, &len), CIOT_ETYPE);
    ciot_json_value m;
    cr_assert_eq(ciot_json_get_member(&n, "a", 1, &m), CIOT_ETYPE);
    cr_assert_eq(ciot_json_get_index(&n, 0, &m), CIOT_ETYPE);
    ciot_json_iter it;
    cr_assert_eq(ciot_json_iter_init(&it, &n), CIOT_ETYPE);
}

static int get_s(const char *raw, char *buf, size_t cap, size_t *len)
{
    char *p = exact(raw, strlen(raw));
    ciot_json_value v = {CIOT_JSON_STRING, p, strlen(raw)};
    int rc = ciot_json_get_string(&v, buf, cap, len);
    free(p);
    return rc;
}

Test(json_read, strings_are_unescaped_into_utf8)
{
    char buf[64];
    size_t len;
    cr_assert_eq(get_s("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"", buf, sizeof buf, &len), 0);
    cr_assert_eq(len, 12);
    cr_assert(memcmp(buf, "a\"b\\c/d\b\f\n\r\t", 13) == 0);
    cr_assert_eq(get_s("\"\\u0041\\u00e9\\u20AC\\ud83d\\ude00\"", buf, sizeof buf, &len), 0);
    cr_assert_str_eq(buf, "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    cr_assert_eq(get_s("\"\\uDBFF\\uDFFF\"", buf, sizeof buf, &len), 0);
    cr_assert_str_eq(buf, "\xf4\x8f\xbf\xbf");
    cr_assert_eq(get_s("\"x\\u0000y\"", buf, sizeof buf, &len), 0);
    cr_assert_eq(len, 3);
    cr_assert(memcmp(buf, "x\0y", 4) == 0);
    cr_assert_eq(get_s("\"\"", buf, sizeof buf, &len), 0);
    cr_assert_eq(len, 0);
    cr_assert_eq(buf[0], '\0');
    /* ENOSPC reports the length; the NUL needs one more byte */
    cr_assert_eq(get_s("\"hello\"", buf, 5, &len), CIOT_ENOSPC);
    cr_assert_eq(len, 5);
    cr_assert_eq(buf[0], '\0');
    cr_assert_eq(get_s("\"hello\"", NULL, 0, &len), CIOT_ENOSPC);
    cr_assert_eq(len, 5);
    cr_assert_eq(get_s("\"hello\"", buf, 6, &len), 0);
    cr_assert_str_eq(buf, "hello");
    cr_assert_eq(get_s("\"\\ud83d\\ude00\"", buf, 4, &len), CIOT_ENOSPC);
    cr_assert_eq(len, 4);
    /* malformed views */
    static const char *bad[] = {"\"", "x", "\"a", "a\"", "\"a\"b\"", "\"\\\"", "\"\\ud800\"",
                                "\"\\udc00\"", "\"\x01\"", "\"\xc0\xaf\"", "\"\\q\"", "\"\xe2\x82\""};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++)
        cr_assert_eq(get_s(bad[k], buf, sizeof buf, &len), CIOT_EINVAL, "%s", bad[k]);
    ciot_json_value v = {CIOT_JSON_STRING, "\"a\"", 3};
    cr_assert_eq(ciot_json_get_string(&v, NULL, 4, &len), CIOT_EINVAL);
    cr_assert_eq(ciot_json_get_string(&v, buf, 4, NULL), CIOT_EINVAL);
    bool eq = true;
    ciot_json_value e = {CIOT_JSON_STRING, "\"\\u00e9\"", 8};
    cr_assert_eq(ciot_json_string_equal(&e, "\xc3\xa9", 2, &eq), 0);
    cr_assert(eq);
    cr_assert_eq(ciot_json_string_equal(&e, "\xc3\xa9x", 3, &eq), 0);
    cr_assert(!eq);
    cr_assert_eq(ciot_json_string_equal(&e, "", 0, &eq), 0);
    cr_assert(!eq);
    cr_assert_eq(ciot_json_string_equal(&e, NULL, 0, &eq), 0);
    cr_assert(!eq);
}

Test(json_read, iteration_walks_members_and_stops_on_errors)
{
    const char *doc = "{ \"a\" : 1 , \"b\":[ ],\"c\":{}}";
    ciot_json_value root, k, v;
    ciot_json_iter it;
    cr_assert_eq(findz(doc, "", &root), 0);
    cr_assert_eq(ciot_json_iter_init(&it, &root), 0);
    cr_assert_eq(ciot_json_iter_next(&it, &k, &v), 0);
    cr_assert_eq(k.type, CIOT_JSON_STRING);
    cr_assert_eq(k.len, 3);
    cr_assert_eq(v.type, CIOT_JSON_NUMBER);
    cr_assert_eq(v.len, 1);
    cr_assert_eq(ciot_json_iter_next(&it, &k, &v), 0);
    cr_assert_eq(v.type, CIOT_JSON_ARRAY);
    cr_assert_eq(v.len, 3);
    ciot_json_iter in;
    cr_assert_eq(ciot_json_iter_init(&in, &v), 0);
    cr_assert_eq(ciot_json_iter_next(&in, &k, &v), CIOT_ENOTFOUND);
    cr_assert_eq(ciot_json_iter_next(&it, &k, &v), 0);
    cr_assert_eq(v.type, CIOT_JSON_OBJECT);
    cr_assert_eq(ciot_json_iter_next(&it, &k, &v), CIOT_ENOTFOUND);
    cr_assert_eq(ciot_json_iter_next(&it, &k, &v), CIOT_ENOTFOUND);
    /* hand-made views of malformed text */
    static const struct {
        int type;
        const char *s;
        int init_rc, next_rc;
    } t[] = {
        {CIOT_JSON_ARRAY, "[1,]", 0, CIOT_EINVAL}, {CIOT_JSON_ARRAY, "[,1]", 0, CIOT_EINVAL},
        {CIOT_JSON_ARRAY, "[1 2]", 0, CIOT_EINVAL}, {CIOT_JSON_OBJECT, "{1:2}", 0, CIOT_EINVAL},
        {CIOT_JSON_OBJECT, "{\"a\"}", 0, CIOT_EINVAL}, {CIOT_JSON_ARRAY, "[[1]", 0, CIOT_EINVAL},
        {CIOT_JSON_ARRAY, "[1]]", 0, CIOT_EINVAL}, {CIOT_JSON_ARRAY, "[", CIOT_EINVAL, 0},
        {CIOT_JSON_ARRAY, "{}", CIOT_EINVAL, 0}, {CIOT_JSON_OBJECT, "[]", CIOT_EINVAL, 0},
        {CIOT_JSON_STRING, "\"a\"", CIOT_ETYPE, 0},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char *p = exact(t[i].s, strlen(t[i].s));
        ciot_json_value c = {t[i].type, p, strlen(t[i].s)};
        int rc = ciot_json_iter_init(&it, &c);
        cr_assert_eq(rc, t[i].init_rc, "%s", t[i].s);
        if (rc == 0) {
            while ((rc = ciot_json_iter_next(&it, &k, &v)) == 0)
                ;
            cr_assert_eq(rc, t[i].next_rc, "%s: %d", t[i].s, rc);
            cr_assert_eq(ciot_json_iter_next(&it, &k, &v), t[i].next_rc); /* stays */
        }
        free(p);
    }
    char *deep = nested(CIOT_JSON_READER_MAX_DEPTH, "[", "]", "");
    ciot_json_value c = {CIOT_JSON_ARRAY, deep, strlen(deep)};
    cr_assert_eq(ciot_json_iter_init(&it, &c), 0);
    cr_assert_eq(ciot_json_iter_next(&it, &k, &v), 0);
    free(deep);
    deep = nested(CIOT_JSON_READER_MAX_DEPTH + 1, "[", "]", "");
    c.ptr = deep;
    c.len = strlen(deep);
    cr_assert_eq(ciot_json_iter_init(&it, &c), 0);
    cr_assert_eq(ciot_json_iter_next(&it, &k, &v), CIOT_EDEPTH);
    free(deep);
    cr_assert_eq(ciot_json_iter_init(NULL, &root), CIOT_EINVAL);
    cr_assert_eq(ciot_json_iter_next(NULL, &k, &v), CIOT_EINVAL);
}

Test(json_read, member_and_index_validate_hand_made_views)
{
    ciot_json_value m;
    ciot_json_value o = {CIOT_JSON_OBJECT, "{\"a\":1,}", 8};
    cr_assert_eq(ciot_json_get_member(&o, "a", 1, &m), CIOT_EINVAL);
    ciot_json_value o2 = {CIOT_JSON_OBJECT, "{\"a\":1} ", 8};
    cr_assert_eq(ciot_json_get_member(&o2, "a", 1, &m), CIOT_EINVAL);
    ciot_json_value a = {CIOT_JSON_ARRAY, "[1,2,x]", 7};
    cr_assert_eq(ciot_json_get_index(&a, 1, &m), 0); /* scanned up to element 1 only */
    cr_assert_eq(ciot_json_get_index(&a, 2, &m), CIOT_EINVAL);
    cr_assert_eq(ciot_json_get_index(&a, 5, &m), CIOT_EINVAL);
    ciot_json_value a2 = {CIOT_JSON_ARRAY, "[1,2]x", 6};
    cr_assert_eq(ciot_json_get_index(&a2, 5, &m), CIOT_EINVAL);
    ciot_json_value a3 = {CIOT_JSON_ARRAY, "[1,2]", 5};
    cr_assert_eq(ciot_json_get_index(&a3, 2, &m), CIOT_ENOTFOUND);
    cr_assert_eq(ciot_json_get_index(&a3, 1, NULL), CIOT_EINVAL);
    cr_assert_eq(ciot_json_get_member(&o, NULL, 1, &m), CIOT_EINVAL);
}

Test(json_read, telemetry_message_fields)
{
    const char *msg = "{\"deviceId\":\"temperature-sensor-001\",\"sensorType\":\"temperature\","
                      "\"value\":27.31,\"timestamp\":\"2026-11-26T04:56:27.123Z\",\"metadata\":"
                      "{\"unit\":\"celsius\",\"accuracy\":\"\xc2\xb1" "0.5\xc2\xb0" "C\"}}";
    cr_assert_eq(strlen(msg), 169);
    ciot_json_value v;
    double d;
    char buf[32];
    size_t len;
    cr_assert_eq(findz(msg, "value", &v), 0);
    cr_assert_eq(ciot_json_get_double(&v, &d), 0);
    cr_assert_eq(d, 27.31);
    cr_assert_eq(findz(msg, "metadata.unit", &v), 0);
    cr_assert_eq(ciot_json_get_string(&v, buf, sizeof buf, &len), 0);
    cr_assert_str_eq(buf, "celsius");
    cr_assert_eq(findz(msg, "metadata.accuracy", &v), 0);
    cr_assert_eq(ciot_json_get_string(&v, buf, sizeof buf, &len), 0);
    cr_assert_str_eq(buf, "\xc2\xb1" "0.5\xc2\xb0" "C");
}

static long allocations;

static void *count_malloc(size_t size, void *ctx)
{
    (void)ctx;
    allocations++;
    return malloc(size);
}

static void *count_realloc(void *ptr, size_t size, void *ctx)
{
    (void)ctx;
    allocations++;
    return realloc(ptr, size);
}

static void count_free(void *ptr, void *ctx)
{
    (void)ctx;
    free(ptr);
}

Test(json_read, reader_never_allocates)
{
    ciot_allocator a = {count_malloc, count_realloc, count_free, NULL};
    cr_assert_eq(ciot_set_allocator(&a), 0);
    const char *doc = "{\"a\":[1,{\"b\":\"x\\u00e9\"}],\"n\":"
                      "1234567890123456789012345678901234567890.5e-3,\"t\":true}";
    ciot_json_value v, root, k, m;
    ciot_json_iter it;
    double d;
    int64_t i;
    bool bv;
    char buf[16];
    size_t len;
    cr_assert_eq(ciot_json_validate(doc, strlen(doc)), 0);
    cr_assert_eq(ciot_json_find(doc, strlen(doc), "a[1].b", 6, &v), 0);
    cr_assert_eq(ciot_json_get_string(&v, buf, sizeof buf, &len), 0);
    cr_assert_eq(ciot_json_find(doc, strlen(doc), "n", 1, &v), 0);
    cr_assert_eq(ciot_json_get_double(&v, &d), 0); /* the slow, exact path */
    cr_assert_eq(ciot_json_get_int64(&v, &i), CIOT_ERANGE);
    cr_assert_eq(ciot_json_find(doc, strlen(doc), "t", 1, &v), 0);
    cr_assert_eq(ciot_json_get_bool(&v, &bv), 0);
    cr_assert_eq(ciot_json_find(doc, strlen(doc), "", 0, &root), 0);
    cr_assert_eq(ciot_json_iter_init(&it, &root), 0);
    while (ciot_json_iter_next(&it, &k, &m) == 0)
        ;
    cr_assert_eq(ciot_json_get_member(&root, "t", 1, &v), 0);
    cr_assert_eq(allocations, 0);
}
