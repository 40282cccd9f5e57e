/*
 * libFuzzer target: the AWS IoT policy engine.
 *
 * The input is cut at 0x01 bytes into fields. The first byte picks the mode:
 *
 *  'M' (match): fields pattern, resource, client id, thing name. The pattern
 *      becomes the Resource of a one-statement document (built with jansson,
 *      so any valid UTF-8 pattern is a valid JSON string); when it parses,
 *      evaluation must agree with an independent reference matcher (dynamic
 *      programming over characters, variables substituted as literal text)
 *      for Allow (ALLOW or IMPLICIT_DENY) and for Deny (EXPLICIT_DENY or
 *      IMPLICIT_DENY). Compared only when every string is valid UTF-8,
 *      where `?` = one character is well defined.
 *  anything else (document): fields document, action, resource, client id,
 *      thing name. Parsing returns 0, CIOT_EINVAL or CIOT_ENOTBUILT with a
 *      non-empty NUL-terminated message; a parsed policy evaluates to one of
 *      the three results, the same twice, the same when listed twice, and
 *      never ALLOW when put next to its own Deny-everything twin.
 */
#include "core/aws_policy.h"
#include "core/utf8.h"
#include "internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXF 5

/* Splits into NUL-terminated copies (NULs inside a field end it early). */
static int split(char *buf, size_t size, char *f[MAXF], size_t flen[MAXF])
{
    int n = 0;
    char *p = buf, *end = buf + size;
    while (n < MAXF) {
        char *q = memchr(p, 1, (size_t)(end - p));
        if (!q || n == MAXF - 1)
            q = end;
        *q = '\0';
        f[n] = p;
        flen[n] = strlen(p);
        n++;
        if (q == end)
            break;
        p = q + 1;
    }
    for (int i = n; i < MAXF; i++) {
        f[i] = NULL;
        flen[i] = 0;
    }
    return n;
}

/* ---- reference matcher ---------------------------------------------------- */

enum { E_LIT, E_STAR, E_ANY };
typedef struct el {
    int kind;
    unsigned char c;
} el;

static size_t next_char(const unsigned char *t, size_t j, size_t n)
{
    size_t l = ciot__utf8_seq_len(t + j, n - j);
    return j + (l ? l : 1);
}

/* Expands a 2012-10-17 Resource into elements. *refused: the engine must
 * refuse it; *nothing: a variable it uses has no value (matches nothing).
 * Returns false when it has more than cap elements (not compared then). */
static bool expand(const char *p, const char *cid, const char *thing, bool attached, el *out,
                   size_t *nout, size_t cap, bool *refused, bool *nothing)
{
    size_t n = 0, len = strlen(p);
    *refused = *nothing = false;
    for (size_t i = 0; i < len;) {
        const char *lit = NULL;
        char one[2] = {0, 0};
        if (p[i] == '*' || p[i] == '?') {
            if (n < cap)
                out[n] = (el){p[i] == '*' ? E_STAR : E_ANY, 0};
            n++;
            i++;
            continue;
        }
        if (p[i] == '$' && p[i + 1] == '{') {
            const char *e = strchr(p + i + 2, '}');
            if (!e) {
                *refused = true;
                return false;
            }
            size_t nl = (size_t)(e - (p + i + 2));
            const char *nm = p + i + 2;
            i = (size_t)(e - p) + 1;
            if (nl == 1 && (nm[0] == '*' || nm[0] == '?' || nm[0] == '$')) {
                one[0] = nm[0];
                lit = one;
            } else if (nl == 12 && !memcmp(nm, "iot:ClientId", 12)) {
                lit = cid;
            } else if (nl == 30 && !memcmp(nm, "iot:Connection.Thing.ThingName", 30)) {
                lit = thing;
            } else if (nl == 31 && !memcmp(nm, "iot:Connection.Thing.IsAttached", 31)) {
                lit = attached ? "true" : "false";
            } else {
                *refused = true;
                return false;
            }
            if (!lit) {
                *nothing = true;
                lit = "";
            }
        } else {
            one[0] = p[i++];
            lit = one;
        }
        for (const char *c = lit; *c; c++) {
            if (n < cap)
                out[n] = (el){E_LIT, (unsigned char)*c};
            n++;
        }
    }
    *nout = n;
    return n <= cap; /* else too long to compare, but the scan for refusals is complete */
}

static bool ref_match(const el *e, size_t ne, const unsigned char *t, size_t tn)
{
    /* cur[j]: the pattern's first i elements match t[0, j). `*` and `?`
     * consume whole characters; literal bytes one byte. */
    static unsigned char cur[4096], nxt[4096];
    if (tn + 1 > sizeof cur)
        abort();
    memset(cur, 0, tn + 1);
    cur[0] = 1;
    for (size_t i = 0; i < ne; i++) {
        memset(nxt, 0, tn + 1);
        for (size_t j = 0; j <= tn; j++) {
            if (e[i].kind == E_STAR) {
                if (cur[j] || (j > 0 && nxt[j]))
                    nxt[j] = 1;
                if (nxt[j] && j < tn)
                    nxt[next_char(t, j, tn)] = 1;
            } else if (!cur[j] || j == tn) {
                continue;
            } else if (e[i].kind == E_ANY) {
                nxt[next_char(t, j, tn)] = 1;
            } else if (t[j] == e[i].c) {
                nxt[j + 1] = 1;
            }
        }
        memcpy(cur, nxt, tn + 1);
    }
    return cur[tn];
}

static void match_mode(char *f[MAXF], size_t fl[MAXF])
{
    const char *pat = f[0], *res = f[1] ? f[1] : "";
    const char *cid = f[2], *thing = f[3];
    bool attached = fl[3] & 1;
    if (!ciot__utf8_valid(pat, fl[0], false) || !ciot__utf8_valid(res, strlen(res), false) ||
        (cid && !ciot__utf8_valid(cid, fl[2], false)) ||
        (thing && !ciot__utf8_valid(thing, fl[3], false)) || strlen(res) > 2000)
        return;
    for (int deny = 0; deny < 2; deny++) {
        json_t *doc = json_pack("{s:s,s:{s:s,s:s,s:s}}", "Version", "2012-10-17", "Statement",
                                "Effect", deny ? "Deny" : "Allow", "Action", "iot:Publish",
                                "Resource", pat);
        if (!doc)
            return;
        char *txt = json_dumps(doc, JSON_COMPACT);
        json_decref(doc);
        if (!txt)
            abort();
        ciot__aws_policy *p = NULL;
        char err[200];
        int rc = ciot__aws_policy_parse(&p, txt, strlen(txt), err, sizeof err);
        bool too_big = strlen(txt) > 2048;
        free(txt);
        static el e[4096];
        size_t ne = 0;
        bool refused, nothing;
        bool ok = expand(pat, cid, thing, attached, e, &ne, sizeof e / sizeof e[0], &refused,
                         &nothing);
        if (rc != 0) {
            if (!(refused || too_big || fl[0] == 0)) {
                fprintf(stderr, "refused: %s\n", err);
                abort(); /* refused a pattern the reference accepts */
            }
            continue;
        }
        if (refused || fl[0] == 0)
            abort(); /* accepted what must be refused */
        ciot__aws_policy_ctx ctx = {cid, thing, attached};
        const ciot__aws_policy *ps[1] = {p};
        int got = ciot__aws_policy_eval(ps, 1, "iot:Publish", res, &ctx);
        if (ok) {
            bool m = !nothing && ref_match(e, ne, (const unsigned char *)res, strlen(res));
            int want = m ? (deny ? CIOT__POLICY_EXPLICIT_DENY : CIOT__POLICY_ALLOW)
                         : CIOT__POLICY_IMPLICIT_DENY;
            if (got != want)
                abort();
        }
        if (ciot__aws_policy_eval(ps, 1, "iot:Receive", res, &ctx) != CIOT__POLICY_IMPLICIT_DENY)
            abort();
        ciot__aws_policy_free(p);
    }
}

static void doc_mode(char *f[MAXF], size_t fl[MAXF])
{
    ciot__aws_policy *p = (ciot__aws_policy *)(uintptr_t)1;
    char err[128];
    memset(err, 'x', sizeof err);
    int rc = ciot__aws_policy_parse(&p, f[0], fl[0], err, sizeof err);
    if (rc != 0) {
        if (p != NULL || (rc != CIOT_EINVAL && rc != CIOT_ENOTBUILT && rc != CIOT_ENOMEM) ||
            !memchr(err, '\0', sizeof err) || err[0] == '\0')
            abort();
        return;
    }
    static const char deny_all[] =
        "{\"Statement\":{\"Effect\":\"Deny\",\"Action\":\"*\",\"Resource\":\"*\"}}";
    ciot__aws_policy *d = NULL;
    if (ciot__aws_policy_parse(&d, deny_all, sizeof deny_all - 1, NULL, 0) != 0)
        abort();
    const char *action = f[1] ? f[1] : "iot:Publish";
    const char *res = f[2] ? f[2] : "arn:aws:iot:us-east-1:123456789012:topic/a";
    ciot__aws_policy_ctx ctx = {f[3], f[4], fl[0] & 1};
    const ciot__aws_policy *one[1] = {p}, *two[2] = {p, p}, *with_deny[2] = {p, d};
    int r = ciot__aws_policy_eval(one, 1, action, res, &ctx);
    if (r != CIOT__POLICY_IMPLICIT_DENY && r != CIOT__POLICY_ALLOW &&
        r != CIOT__POLICY_EXPLICIT_DENY)
        abort();
    if (ciot__aws_policy_eval(one, 1, action, res, &ctx) != r ||
        ciot__aws_policy_eval(two, 2, action, res, &ctx) != r)
        abort();
    if (ciot__aws_policy_eval(with_deny, 2, action, res, &ctx) != CIOT__POLICY_EXPLICIT_DENY)
        abort();
    ciot__aws_policy_free(d);
    ciot__aws_policy_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 40000)
        return 0;
    char *buf = malloc(size);
    if (!buf)
        return 0;
    memcpy(buf, data + 1, size - 1);
    char *f[MAXF];
    size_t fl[MAXF];
    split(buf, size - 1, f, fl);
    if (data[0] == 'M')
        match_mode(f, fl);
    else
        doc_mode(f, fl);
    free(buf);
    return 0;
}
