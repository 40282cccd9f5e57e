/*
 * Drives the JSON writer with a call sequence taken from the fuzz input,
 * on three writers at once: a large buffer, a small one (its size from the
 * input) and a measuring one (NULL, 0). Checks that
 * - all three return the same code for every call (running out of room is
 *   only reported by finish), and that codes are sticky;
 * - a successful document passes the library's own JSON check and, when no
 *   raw JSON went in (jansson refuses some valid numbers) and no key holds
 *   a NUL (jansson cannot store one), parses with jansson;
 * - ciot_json_raw()'s checker agrees with jansson on the raw inputs;
 * - the small writer gives either the same bytes or CIOT_ENOSPC with the
 *   same size and a clean prefix; the measuring one gives that size.
 */
#include "core/json_check.h"
#include "internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct input {
    const uint8_t *p;
    size_t n;
};

static uint8_t take8(struct input *in)
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

static uint64_t take64(struct input *in)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | take8(in);
    return v;
}

/* A byte string from the input: a length byte, then that many bytes. */
static const char *take_bytes(struct input *in, size_t *len)
{
    size_t l = take8(in);
    if (l > in->n)
        l = in->n;
    const char *s = (const char *)in->p;
    in->p += l;
    in->n -= l;
    *len = l;
    return s;
}

/*
 * The library's JSON check against jansson on the same bytes: what jansson
 * accepts (within our depth limit, and without a NUL byte, where jansson
 * stops reading) we accept; what we accept jansson
 * accepts, except numbers it cannot hold (it refuses integers beyond
 * int64 and reals that overflow; JSON itself has no such limit).
 */
static void check_against_jansson(const char *s, size_t len)
{
    unsigned depth = 0;
    int ours = ciot__json_check(s, len, 64, &depth);
    json_error_t e;
    json_t *j = json_loadb(s, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    /* jansson stops reading at a NUL byte outside strings; we refuse it */
    if (j && ours == CIOT_EINVAL && !memchr(s, 0, len)) {
        fprintf(stderr, "we refuse what jansson accepts: %.*s\n", (int)len, s);
        abort();
    }
    if (!j && ours == 0 && !strstr(e.text, "too big") && !strstr(e.text, "overflow")) {
        fprintf(stderr, "jansson refuses what we accept: %.*s (%s)\n", (int)len, s, e.text);
        abort();
    }
    json_decref(j);
}

#define BIG (1 << 20) /* inputs are limited to 64 KiB, output is at most 6x */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char big[BIG];
    if (size > 65536)
        return 0;
    struct input in = {data, size};
    size_t small_cap = take8(&in);
    char *small = malloc(small_cap ? small_cap : 1);
    ciot_json_writer w[3];
    char *bufs[3] = {big, small_cap ? small : NULL, NULL};
    size_t caps[3] = {BIG, small_cap, 0};
    int rc = 0, err = 0;
    bool used_raw = false;
    for (int k = 0; k < 3; k++)
        if (ciot_json_writer_init(&w[k], bufs[k], caps[k]) != 0)
            abort();

    for (int steps = 0; in.n && steps < 4096; steps++) {
        uint8_t op = take8(&in) % 13;
        size_t len = 0;
        const char *s = NULL;
        uint64_t v = 0;
        if (op == 4 || op == 5 || op == 10)
            s = take_bytes(&in, &len);
        else if (op == 6 || op == 7 || op == 11)
            v = take64(&in);
        else if (op == 8)
            v = take8(&in) & 1;
        int r[3];
        for (int k = 0; k < 3; k++) {
            switch (op) {
            case 0: r[k] = ciot_json_begin_object(&w[k]); break;
            case 1: r[k] = ciot_json_end_object(&w[k]); break;
            case 2: r[k] = ciot_json_begin_array(&w[k]); break;
            case 3: r[k] = ciot_json_end_array(&w[k]); break;
            case 4: r[k] = ciot_json_key(&w[k], s, len); break;
            case 5: r[k] = ciot_json_string(&w[k], s, len); break;
            case 6: {
                double d;
                memcpy(&d, &v, sizeof d);
                r[k] = ciot_json_double(&w[k], d);
                break;
            }
            case 7: r[k] = ciot_json_int(&w[k], (int64_t)v); break;
            case 8: r[k] = ciot_json_bool(&w[k], v != 0); break;
            case 9: r[k] = ciot_json_null(&w[k]); break;
            case 10: r[k] = ciot_json_raw(&w[k], s, len); break;
            case 11: r[k] = ciot_json_timestamp(&w[k], (int64_t)(v % 600000000000000ull) - 100000000000000LL); break;
            default: {
                size_t l;
                r[k] = ciot_json_writer_finish(&w[k], &l);
                if (r[k] == CIOT_ENOSPC)
                    r[k] = 0; /* the small writers may not have room */
                break;
            }
            }
        }
        if (r[0] != r[1] || r[0] != r[2])
            abort();
        if (err && r[0] != err) /* sticky */
            abort();
        if (r[0] && !err)
            err = r[0];
        if (op == 10 && r[0] == 0)
            used_raw = true;
        if (op == 10)
            check_against_jansson(s, len);
        if (op == 4 && r[0] == 0 && memchr(s, 0, len))
            used_raw = true; /* jansson cannot hold a NUL in a key */
        rc = r[0];
    }
    (void)rc;

    size_t l[3] = {0, 0, 0};
    int f[3];
    for (int k = 0; k < 3; k++)
        f[k] = ciot_json_writer_finish(&w[k], &l[k]);
    if (f[0] == 0) {
        size_t n = l[0];
        if (n >= BIG || big[n] != '\0')
            abort();
        unsigned depth;
        if (ciot__json_check(big, n, 64, &depth) != 0 || depth > CIOT_JSON_WRITER_MAX_DEPTH)
            abort();
        if (!used_raw) {
            json_error_t e;
            json_t *j = json_loadb(big, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
            if (!j) {
                fprintf(stderr, "jansson refuses %.*s: %s\n", (int)n, big, e.text);
                abort();
            }
            json_decref(j);
        }
        if (n <= small_cap) {
            if (f[1] != 0 || l[1] != n || memcmp(small, big, n) != 0)
                abort();
        } else {
            if (f[1] != CIOT_ENOSPC || l[1] != n)
                abort();
        }
        if (n > 0 && (f[2] != CIOT_ENOSPC || l[2] != n))
            abort();
    } else if (f[0] != CIOT_ENOSPC) {
        if (f[1] != f[0] || f[2] != f[0])
            abort();
    } else {
        abort(); /* the big buffer cannot run out: at most 4096 small steps */
    }
    free(small);
    return 0;
}
