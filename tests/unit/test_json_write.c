/* The JSON writer: exact output, shortest round-trip doubles, UTF-8
 * checking, misuse errors, ENOSPC sizing, raw JSON checking, and generated
 * documents that jansson must read back to exactly the values written. */
#include "core/json_check.h"
#include "core/json_write.h"
#include "internal.h"

#include <criterion/criterion.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double test_scale(void)
{
    const char *s = getenv("CIOT_TEST_SCALE");
    double f = s ? atof(s) : 1.0;
    return f > 0 ? f : 1.0;
}

static long scaled(long n)
{
    long m = (long)((double)n * test_scale());
    return m < 1 ? 1 : m;
}

static uint64_t rng_state = 0x243F6A8885A308D3ull;
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double from_bits(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

static uint64_t bits_of(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

/* ---- exact output -------------------------------------------------------- */

#define TELEMETRY                                                                            \
    "{\"deviceId\":\"temperature-sensor-001\",\"sensorType\":\"temperature\",\"value\":27.31," \
    "\"timestamp\":\"2026-11-26T04:56:27.123Z\",\"metadata\":{\"unit\":\"celsius\","            \
    "\"accuracy\":\"\xC2\xB1"                                                                \
    "0.5\xC2\xB0"                                                                            \
    "C\"}}"

#define KEY(w, s) cr_assert_eq(ciot_json_key(w, s, strlen(s)), 0)
#define STR(w, s) cr_assert_eq(ciot_json_string(w, s, strlen(s)), 0)

static int write_telemetry(char *buf, size_t cap, size_t *len)
{
    ciot_json_writer w;
    cr_assert_eq(ciot_json_writer_init(&w, buf, cap), 0);
    cr_assert_eq(ciot_json_begin_object(&w), 0);
    KEY(&w, "deviceId");
    STR(&w, "temperature-sensor-001");
    KEY(&w, "sensorType");
    STR(&w, "temperature");
    KEY(&w, "value");
    cr_assert_eq(ciot_json_double(&w, 27.31), 0);
    KEY(&w, "timestamp");
    cr_assert_eq(ciot_json_timestamp(&w, 1795668987123LL), 0);
    KEY(&w, "metadata");
    cr_assert_eq(ciot_json_begin_object(&w), 0);
    KEY(&w, "unit");
    STR(&w, "celsius");
    KEY(&w, "accuracy");
    STR(&w, "\xC2\xB1"
            "0.5\xC2\xB0"
            "C");
    cr_assert_eq(ciot_json_end_object(&w), 0);
    cr_assert_eq(ciot_json_end_object(&w), 0);
    return ciot_json_writer_finish(&w, len);
}

Test(json_write, telemetry_message_byte_for_byte)
{
    char buf[256];
    size_t len = 0;
    cr_assert_eq(write_telemetry(buf, sizeof buf, &len), 0);
    cr_assert_eq(len, strlen(TELEMETRY));
    cr_assert_eq(len, 169);
    cr_assert_str_eq(buf, TELEMETRY); /* NUL written: there was room */
}

Test(json_write, enospc_gives_the_exact_size_for_every_cap)
{
    const size_t full = strlen(TELEMETRY);
    size_t len = 0;
    cr_assert_eq(write_telemetry(NULL, 0, &len), CIOT_ENOSPC);
    cr_assert_eq(len, full);
    for (size_t cap = 0; cap <= full + 2; cap++) {
        /* the writer may use all of its buffer, never a byte past it: a
         * canary follows the cap bytes (and ASan watches the block) */
        char *buf = malloc(cap + 16);
        memset(buf, 0x7F, cap + 16);
        len = 12345;
        int rc = write_telemetry(cap ? buf : NULL, cap, &len);
        cr_assert_eq(len, full, "cap %zu", cap);
        for (size_t i = cap; i < cap + 16; i++)
            cr_assert_eq(buf[i], 0x7F, "cap %zu: byte %zu past the buffer written", cap, i);
        if (cap < full) {
            cr_assert_eq(rc, CIOT_ENOSPC, "cap %zu", cap);
        } else {
            cr_assert_eq(rc, 0, "cap %zu", cap);
            cr_assert(memcmp(buf, TELEMETRY, full) == 0);
            if (cap > full)
                cr_assert_eq(buf[full], '\0');
        }
        free(buf);
    }
}

static void expect_doc(const char *want, int (*build)(ciot_json_writer *))
{
    char buf[512];
    ciot_json_writer w;
    size_t len = 0;
    cr_assert_eq(ciot_json_writer_init(&w, buf, sizeof buf), 0);
    cr_assert_eq(build(&w), 0);
    cr_assert_eq(ciot_json_writer_finish(&w, &len), 0);
    cr_assert_eq(len, strlen(want));
    cr_assert_str_eq(buf, want);
}

static int build_scalars(ciot_json_writer *w)
{
    int rc = ciot_json_begin_array(w);
    rc = rc ? rc : ciot_json_int(w, INT64_MIN);
    rc = rc ? rc : ciot_json_int(w, INT64_MAX);
    rc = rc ? rc : ciot_json_int(w, 0);
    rc = rc ? rc : ciot_json_int(w, -1);
    rc = rc ? rc : ciot_json_int(w, 1000000);
    rc = rc ? rc : ciot_json_bool(w, true);
    rc = rc ? rc : ciot_json_bool(w, false);
    rc = rc ? rc : ciot_json_null(w);
    rc = rc ? rc : ciot_json_begin_object(w);
    rc = rc ? rc : ciot_json_end_object(w);
    rc = rc ? rc : ciot_json_begin_array(w);
    rc = rc ? rc : ciot_json_end_array(w);
    rc = rc ? rc : ciot_json_string(w, "", 0);
    rc = rc ? rc : ciot_json_string(w, NULL, 0);
    rc = rc ? rc : ciot_json_raw(w, " {\"a\" : [1, 2]} ", 16);
    rc = rc ? rc : ciot_json_timestamp(w, -1);
    rc = rc ? rc : ciot_json_begin_object(w);
    rc = rc ? rc : ciot_json_key(w, "", 0);
    rc = rc ? rc : ciot_json_double(w, -0.0);
    rc = rc ? rc : ciot_json_key(w, "k\"\\", 3);
    rc = rc ? rc : ciot_json_begin_array(w);
    rc = rc ? rc : ciot_json_begin_array(w);
    rc = rc ? rc : ciot_json_end_array(w);
    rc = rc ? rc : ciot_json_end_array(w);
    rc = rc ? rc : ciot_json_end_object(w);
    rc = rc ? rc : ciot_json_end_array(w);
    return rc;
}

Test(json_write, every_kind_of_value)
{
    expect_doc("[-9223372036854775808,9223372036854775807,0,-1,1000000,true,false,null,{},[],"
               "\"\",\"\", {\"a\" : [1, 2]} ,\"1969-12-31T23:59:59.999Z\","
               "{\"\":-0.0,\"k\\\"\\\\\":[[]]}]",
               build_scalars);
}

Test(json_write, a_scalar_alone_is_a_document)
{
    char buf[64];
    ciot_json_writer w;
    size_t len;
    cr_assert_eq(ciot_json_writer_init(&w, buf, sizeof buf), 0);
    cr_assert_eq(ciot_json_string(&w, "x", 1), 0);
    cr_assert_eq(ciot_json_writer_finish(&w, &len), 0);
    cr_assert_str_eq(buf, "\"x\"");
    cr_assert_eq(ciot_json_writer_init(&w, buf, sizeof buf), 0);
    cr_assert_eq(ciot_json_null(&w), 0);
    cr_assert_eq(ciot_json_writer_finish(&w, NULL), 0);
    cr_assert_str_eq(buf, "null");
    /* finish twice: same answer */
    cr_assert_eq(ciot_json_writer_finish(&w, &len), 0);
    cr_assert_eq(len, 4);
}

Test(json_write, escapes_quotes_backslashes_and_every_control_character)
{
    static const char *const want[32] = {
        "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006", "\\u0007",
        "\\b",     "\\t",     "\\n",     "\\u000b", "\\f",     "\\r",     "\\u000e", "\\u000f",
        "\\u0010", "\\u0011", "\\u0012", "\\u0013", "\\u0014", "\\u0015", "\\u0016", "\\u0017",
        "\\u0018", "\\u0019", "\\u001a", "\\u001b", "\\u001c", "\\u001d", "\\u001e", "\\u001f",
    };
    for (int c = 0; c < 128; c++) {
        /* the character alone, and at every place of a 20-byte string (so
         * both the 8-byte scan and the byte loop see it) */
        for (size_t at = 0; at < 20; at++) {
            char in[20], out[256], exp[256];
            memset(in, 'a', sizeof in);
            in[at] = (char)c;
            const char *esc = c < 32 ? want[c] : c == '"' ? "\\\"" : c == '\\' ? "\\\\" : NULL;
            char one[2] = {(char)c, 0};
            if (!esc)
                esc = one;
            snprintf(exp, sizeof exp, "[\"%.*s%s%.*s\"]", (int)at, in, esc, (int)(19 - at),
                     in + at + 1);
            ciot_json_writer w;
            size_t len;
            cr_assert_eq(ciot_json_writer_init(&w, out, sizeof out), 0);
            cr_assert_eq(ciot_json_begin_array(&w), 0);
            cr_assert_eq(ciot_json_string(&w, in, sizeof in), 0);
            cr_assert_eq(ciot_json_end_array(&w), 0);
            cr_assert_eq(ciot_json_writer_finish(&w, &len), 0);
            cr_assert_str_eq(out, exp, "char %d at %zu", c, at);
        }
    }
    /* '/' and DEL are not escaped; keys are escaped like strings */
    char out[64];
    ciot_json_writer w;
    cr_assert_eq(ciot_json_writer_init(&w, out, sizeof out), 0);
    cr_assert_eq(ciot_json_begin_object(&w), 0);
    cr_assert_eq(ciot_json_key(&w, "a/\x7F\n\0", 5), 0);
    cr_assert_eq(ciot_json_string(&w, "</script>", 9), 0);
    cr_assert_eq(ciot_json_end_object(&w), 0);
    cr_assert_eq(ciot_json_writer_finish(&w, NULL), 0);
    cr_assert_str_eq(out, "{\"a/\x7F\\n\\u0000\":\"</script>\"}");
}

/* ---- UTF-8 --------------------------------------------------------------- */

static const char *const bad_utf8[] = {
    "\x80", "\xBF", "a\x80", "\xC0\x80", "\xC0\xAF", "\xC1\xBF",          /* stray, overlong */
    "\xE0\x80\x80", "\xE0\x9F\xBF", "\xF0\x80\x80\x80", "\xF0\x8F\xBF\xBF", /* overlong */
    "\xED\xA0\x80", "\xED\xAF\xBF", "\xED\xB0\x80", "\xED\xBF\xBF",         /* surrogates */
    "\xF4\x90\x80\x80", "\xF5\x80\x80\x80", "\xF7\xBF\xBF\xBF", "\xF8\x88\x80\x80\x80",
    "\xFC\x84\x80\x80\x80\x80", "\xFE", "\xFF",                             /* > U+10FFFF */
    "\xC3", "\xE2\x82", "\xF0\x9F\x98", "abc\xC3", "\xE2\x28\xA1", "\xC3\x28", /* truncated */
    "\xF0\x28\x8C\xBC", "\xF0\x90\x28\xBC", "\xE1\x80\xC0",
};

static const char *const good_utf8[] = {
    "\xC2\x80",         "\xDF\xBF",         "\xE0\xA0\x80",     "\xED\x9F\xBF", "\xEE\x80\x80",
    "\xEF\xBF\xBF",     "\xF0\x90\x80\x80", "\xF4\x8F\xBF\xBF", "\xF3\xBF\xBF\xBF",
    "\xC2\xB1" "0.5\xC2\xB0" "C", "\xE6\x97\xA5\xE6\x9C\xAC", "\xF0\x9F\x98\x80",
};

Test(json_write, invalid_utf8_is_rejected_in_strings_and_keys)
{
    char pad[64];
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
        const char *b = bad_utf8[i];
        /* at every offset of a long ASCII string, so the 8-byte scan hits it */
        for (size_t at = 0; at < 24; at++) {
            memset(pad, 'x', sizeof pad);
            size_t bl = strlen(b);
            memcpy(pad + at, b, bl);
            size_t n = at + bl + ((at * 7) % 13); /* tail of ASCII, varying */
            char out[256];
            ciot_json_writer w;
            cr_assert_eq(ciot_json_writer_init(&w, out, sizeof out), 0);
            cr_assert_eq(ciot_json_string(&w, pad, n), CIOT_EINVAL, "bad %zu at %zu", i, at);
            cr_assert_eq(ciot_json_null(&w), CIOT_EINVAL, "sticky");
            cr_assert_eq(ciot_json_writer_finish(&w, NULL), CIOT_EINVAL);

            cr_assert_eq(ciot_json_writer_init(&w, out, sizeof out), 0);
            cr_assert_eq(ciot_json_begin_object(&w), 0);
            cr_assert_eq(ciot_json_key(&w, pad, n), CIOT_EINVAL, "bad key %zu at %zu", i, at);
            cr_assert_eq(ciot_json_writer_finish(&w, NULL), CIOT_EINVAL);
        }
    }
    for (size_t i = 0; i < sizeof good_utf8 / sizeof good_utf8[0]; i++) {
        char out[256];
        ciot_json_writer w;
        size_t len;
        cr_assert_eq(ciot_json_writer_init(&w, out, sizeof out), 0);
        cr_assert_eq(ciot_json_string(&w, good_utf8[i], strlen(good_utf8[i])), 0, "good %zu", i);
        cr_assert_eq(ciot_json_writer_finish(&w, &len), 0);
        cr_assert_eq(len, strlen(good_utf8[i]) + 2);
        cr_assert(memcmp(out + 1, good_utf8[i], len - 2) == 0);
    }
}

/* Reference decoder straight from the definition: decode, then check the
 * code point range, the shortest form and the surrogate gap. */
static size_t ref_utf8(const unsigned char *p, size_t avail)
{
    unsigned c = p[0], n;
    uint32_t cp;
    if (c >= 0xC0 && c < 0xE0) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c < 0xF0) {
        n = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c < 0xF8) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    for (unsigned i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3F);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

Test(json_write, utf8_checker_agrees_with_a_reference_decoder)
{
    unsigned char b[4];
    /* every lead byte with every second and third byte; random fourth */
    for (unsigned x = 0x80; x < 0x100; x++)
        for (unsigned y = 0; y < 0x100; y++)
            for (unsigned z = 0; z < 0x100; z += 1) {
                b[0] = (unsigned char)x;
                b[1] = (unsigned char)y;
                b[2] = (unsigned char)z;
                b[3] = (unsigned char)(0x80 + rnd() % 0x40);
                if (rnd() % 4 == 0)
                    b[3] = (unsigned char)rnd();
                for (size_t avail = 1; avail <= 4; avail++)
                    cr_assert_eq(ciot__utf8_seq_len(b, avail), ref_utf8(b, avail),
                                 "%02x %02x %02x %02x avail %zu", x, y, z, b[3], avail);
            }
}

/* ---- misuse -------------------------------------------------------------- */

static void all_calls_return(ciot_json_writer *w, int err)
{
    size_t len = 777;
    cr_assert_eq(ciot_json_begin_object(w), err);
    cr_assert_eq(ciot_json_end_object(w), err);
    cr_assert_eq(ciot_json_begin_array(w), err);
    cr_assert_eq(ciot_json_end_array(w), err);
    cr_assert_eq(ciot_json_key(w, "k", 1), err);
    cr_assert_eq(ciot_json_string(w, "s", 1), err);
    cr_assert_eq(ciot_json_double(w, 1.5), err);
    cr_assert_eq(ciot_json_int(w, 1), err);
    cr_assert_eq(ciot_json_bool(w, true), err);
    cr_assert_eq(ciot_json_null(w), err);
    cr_assert_eq(ciot_json_raw(w, "1", 1), err);
    cr_assert_eq(ciot_json_timestamp(w, 0), err);
    cr_assert_eq(ciot_json_writer_finish(w, &len), err);
    cr_assert_eq(len, 777, "finish must not report a length after an error");
}

enum { OP_BO, OP_EO, OP_BA, OP_EA, OP_KEY, OP_STR, OP_NUM, OP_FIN, OP_END_ };

static int do_op(ciot_json_writer *w, int op)
{
    switch (op) {
    case OP_BO: return ciot_json_begin_object(w);
    case OP_EO: return ciot_json_end_object(w);
    case OP_BA: return ciot_json_begin_array(w);
    case OP_EA: return ciot_json_end_array(w);
    case OP_KEY: return ciot_json_key(w, "k", 1);
    case OP_STR: return ciot_json_string(w, "s", 1);
    case OP_NUM: return ciot_json_int(w, 7);
    default: return ciot_json_writer_finish(w, NULL);
    }
}

struct misuse {
    const char *what;
    int ops[8];
    int n;
    int err;
};

Test(json_write, misuse_is_refused_and_sticky)
{
    static const struct misuse cases[] = {
        {"value where a key is due", {OP_BO, OP_STR}, 2, CIOT_ESTATE},
        {"number where a key is due", {OP_BO, OP_KEY, OP_NUM, OP_NUM}, 4, CIOT_ESTATE},
        {"key at top level", {OP_KEY}, 1, CIOT_ESTATE},
        {"key in an array", {OP_BA, OP_KEY}, 2, CIOT_ESTATE},
        {"two keys in a row", {OP_BO, OP_KEY, OP_KEY}, 3, CIOT_ESTATE},
        {"end object after a key", {OP_BO, OP_KEY, OP_EO}, 3, CIOT_ESTATE},
        {"end array in an object", {OP_BO, OP_EA}, 2, CIOT_ESTATE},
        {"end object in an array", {OP_BA, OP_EO}, 2, CIOT_ESTATE},
        {"end at top level", {OP_EA}, 1, CIOT_ESTATE},
        {"end after the document", {OP_BA, OP_EA, OP_EA}, 3, CIOT_ESTATE},
        {"second top-level value", {OP_NUM, OP_NUM}, 2, CIOT_ESTATE},
        {"second top-level container", {OP_BO, OP_EO, OP_BA}, 3, CIOT_ESTATE},
        {"finish with an open object", {OP_BO, OP_FIN}, 2, CIOT_ESTATE},
        {"finish with a pending key", {OP_BO, OP_KEY, OP_FIN}, 3, CIOT_ESTATE},
        {"finish with an open array", {OP_BA, OP_BA, OP_EA, OP_FIN}, 4, CIOT_ESTATE},
        {"finish with nothing written", {OP_FIN}, 1, CIOT_ESTATE},
        {"value after finish", {OP_NUM, OP_FIN, OP_NUM}, 3, CIOT_ESTATE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct misuse *m = &cases[i];
        char buf[64];
        memset(buf, 0, sizeof buf);
        ciot_json_writer w;
        cr_assert_eq(ciot_json_writer_init(&w, buf, sizeof buf), 0);
        for (int k = 0; k < m->n - 1; k++)
            cr_assert_eq(do_op(&w, m->ops[k]), 0, "%s: step %d", m->what, k);
        cr_assert_eq(do_op(&w, m->ops[m->n - 1]), m->err, "%s", m->what);
        all_calls_return(&w, m->err);
    }
}

Test(json_write, bad_arguments)
{
    ciot_json_writer w;
    char buf[16];
    cr_assert_eq(ciot_json_writer_init(NULL, buf, sizeof buf), CIOT_EINVAL);
    cr_assert_eq(ciot_json_null(NULL), CIOT_EINVAL);
    cr_assert_eq(ciot_json_writer_finish(NULL, NULL), CIOT_EINVAL);

    cr_assert_eq(ciot_json_writer_init(&w, NULL, 5), CIOT_EINVAL);
    all_calls_return(&w, CIOT_EINVAL);

    /* never initialised */
    memset(&w, 0xA5, sizeof w);
    all_calls_return(&w, CIOT_EINVAL);
    memset(&w, 0, sizeof w);
    all_calls_return(&w, CIOT_EINVAL);

    cr_assert_eq(ciot_json_writer_init(&w, buf, sizeof buf), 0);
    cr_assert_eq(ciot_json_string(&w, NULL, 1), CIOT_EINVAL);
    all_calls_return(&w, CIOT_EINVAL);

    cr_assert_eq(ciot_json_writer_init(&w, buf, sizeof buf), 0);
    cr_assert_eq(ciot_json_begin_object(&w), 0);
    cr_assert_eq(ciot_json_key(&w, NULL, 2), CIOT_EINVAL);
    all_calls_return(&w, CIOT_EINVAL);

    cr_assert_eq(ciot_json_writer_init(&w, buf, sizeof buf), 0);
    cr_assert_eq(ciot_json_raw(&w, NULL, 2), CIOT_EINVAL);
    all_calls_return(&w, CIOT_EINVAL);

    const double bad[] = {NAN, -NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(ciot_json_writer_init(&w, buf, sizeof buf), 0);
        cr_assert_eq(ciot_json_begin_array(&w), 0);
        cr_assert_eq(ciot_json_double(&w, bad[i]), CIOT_EINVAL);
        all_calls_return(&w, CIOT_EINVAL);
    }

    cr_assert_eq(ciot_json_writer_init(&w, buf, sizeof buf), 0);
    cr_assert_eq(ciot_json_timestamp(&w, CIOT_TIMESTAMP_MAX_MS + 1), CIOT_ERANGE);
    all_calls_return(&w, CIOT_ERANGE);
}

Test(json_write, nesting_is_limited_to_the_stated_depth)
{
    char buf[512];
    for (int obj = 0; obj < 2; obj++) {
        ciot_json_writer w;
        cr_assert_eq(ciot_json_writer_init(&w, buf, sizeof buf), 0);
        for (int d = 0; d < CIOT_JSON_WRITER_MAX_DEPTH; d++) {
            cr_assert_eq(obj ? ciot_json_begin_object(&w) : ciot_json_begin_array(&w), 0);
            if (obj)
                cr_assert_eq(ciot_json_key(&w, "a", 1), 0);
        }
        cr_assert_eq(obj ? ciot_json_begin_object(&w) : ciot_json_begin_array(&w), CIOT_EDEPTH);
        all_calls_return(&w, CIOT_EDEPTH);

        cr_assert_eq(ciot_json_writer_init(&w, buf, sizeof buf), 0);
        for (int d = 0; d < CIOT_JSON_WRITER_MAX_DEPTH; d++) {
            cr_assert_eq(obj ? ciot_json_begin_object(&w) : ciot_json_begin_array(&w), 0);
            if (obj)
                cr_assert_eq(ciot_json_key(&w, "a", 1), 0);
        }
        cr_assert_eq(ciot_json_null(&w), 0);
        for (int d = 0; d < CIOT_JSON_WRITER_MAX_DEPTH; d++)
            cr_assert_eq(obj ? ciot_json_end_object(&w) : ciot_json_end_array(&w), 0);
        size_t len;
        cr_assert_eq(ciot_json_writer_finish(&w, &len), 0);
        json_error_t e;
        json_t *j = json_loadb(buf, len, JSON_DECODE_ANY, &e);
        cr_assert_not_null(j, "%s", e.text);
        json_decref(j);
    }
    /* raw JSON counts towards the depth */
    char deep[2 * CIOT_JSON_WRITER_MAX_DEPTH + 1];
    memset(deep, '[', CIOT_JSON_WRITER_MAX_DEPTH);
    memset(deep + CIOT_JSON_WRITER_MAX_DEPTH, ']', CIOT_JSON_WRITER_MAX_DEPTH);
    ciot_json_writer w;
    cr_assert_eq(ciot_json_writer_init(&w, buf, sizeof buf), 0);
    cr_assert_eq(ciot_json_raw(&w, deep, 2 * CIOT_JSON_WRITER_MAX_DEPTH), 0);
    cr_assert_eq(ciot_json_writer_init(&w, buf, sizeof buf), 0);
    cr_assert_eq(ciot_json_begin_array(&w), 0);
    cr_assert_eq(ciot_json_raw(&w, deep + 1, 2 * CIOT_JSON_WRITER_MAX_DEPTH - 2), 0);
    cr_assert_eq(ciot_json_raw(&w, deep, 2 * CIOT_JSON_WRITER_MAX_DEPTH), CIOT_EDEPTH);
    all_calls_return(&w, CIOT_EDEPTH);
}

/* ---- raw JSON -------------------------------------------------------------- */

static const char *const good_raw[] = {
    "0", "-0", "1", "-1.5e+10", "1E-2", "0.0", "12345678.5e-3", "true",
    "false", "null", "\"\"", " \t\r\n\"a\\/\\b\\f\\n\\r\\t\\\\\\\"\" ", "[]", "{}",
    "[1,[2,[3]],{\"a\":{\"b\":[]}}]", "{\"a\":1,\"b\":\"\\u00e9\\ud83d\\ude00\\uFFFF\"}",
    "\"\xC2\xB1\xF0\x9F\x98\x80\"", "[ 1 , 2 ]", "{ \"k\" : null }", "\"\\u0000\"",
};

/* valid JSON that jansson happens to refuse (integer overflow) */
Test(json_write, raw_accepts_numbers_of_any_size)
{
    unsigned d = 99;
    cr_assert_eq(ciot__json_check("123456789012345678901234567890", 30, 64, &d), 0);
    cr_assert_eq(d, 0);
    cr_assert_eq(ciot__json_check("[-1e99999]", 10, 64, &d), 0);
    cr_assert_eq(d, 1);
}

static const char *const bad_raw[] = {
    "", " ", "01", "-01", "1.", ".5", "-", "+1", "1e", "1e+", "0x1", "1.e5", "--1",
    "NaN", "Infinity", "-Infinity", "[1,]", "[,1]", "[1 2]", "{\"a\"}", "{\"a\":}",
    "{\"a\":1,}", "{,}", "{1:2}", "{'a':1}", "['a']", "tru", "truee", "nul", "nulll",
    "True", "\"a", "\"\\x\"", "\"\\u12\"", "\"\\u12G4\"", "\"\\ud800\"", "\"\\udc00\"",
    "\"\\ud800\\u0041\"", "\"\\ud800x\"", "\"\\ude00\\ud83d\"", "\"\x01\"", "\"\t\"",
    "\"\xC3\x28\"", "\"\xED\xA0\x80\"", "\"\xC0\xAF\"", "[", "]", "{", "}", "[}", "{]",
    "{}}", "[]]", "1 2", "{}x", "[] []", "/*c*/1", "1//", "\"a\"\"b\"", "[\"a\" \"b\"]",
    "{\"a\" 1}", "{\"a\"::1}", "\xEF\xBB\xBF{}",
};

Test(json_write, raw_json_is_checked)
{
    char buf[512];
    for (size_t i = 0; i < sizeof good_raw / sizeof good_raw[0]; i++) {
        ciot_json_writer w;
        size_t len;
        const char *r = good_raw[i];
        cr_assert_eq(ciot_json_writer_init(&w, buf, sizeof buf), 0);
        cr_assert_eq(ciot_json_begin_array(&w), 0);
        cr_assert_eq(ciot_json_raw(&w, r, strlen(r)), 0, "good %s", r);
        cr_assert_eq(ciot_json_raw(&w, r, strlen(r)), 0, "good %s", r);
        cr_assert_eq(ciot_json_end_array(&w), 0);
        cr_assert_eq(ciot_json_writer_finish(&w, &len), 0);
        json_error_t e;
        json_t *j = json_loadb(buf, len, JSON_ALLOW_NUL, &e);
        cr_assert_not_null(j, "jansson refuses [%s]: %s", buf, e.text);
        cr_assert_eq(json_array_size(j), 2);
        json_decref(j);
    }
    for (size_t i = 0; i < sizeof bad_raw / sizeof bad_raw[0]; i++) {
        ciot_json_writer w;
        const char *r = bad_raw[i];
        cr_assert_eq(ciot_json_writer_init(&w, buf, sizeof buf), 0);
        cr_assert_eq(ciot_json_begin_array(&w), 0);
        cr_assert_eq(ciot_json_raw(&w, r, strlen(r)), CIOT_EINVAL, "bad [%s]", r);
        all_calls_return(&w, CIOT_EINVAL);
        /* and every proper prefix of a good value is refused too */
    }
    for (size_t i = 0; i < sizeof good_raw / sizeof good_raw[0]; i++) {
        const char *r = good_raw[i];
        size_t n = strlen(r);
        for (size_t k = 0; k < n; k++) {
            unsigned d;
            int rc = ciot__json_check(r, k, 64, &d);
            /* a prefix may be a complete value itself ("12" of "123", or
             * the value without its trailing white space) */
            json_error_t e;
            json_t *j = json_loadb(r, k, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
            cr_assert_eq(rc == 0, j != NULL, "prefix %zu of %s: check %d", k, r, rc);
            json_decref(j);
        }
    }
}

/* ---- doubles ---------------------------------------------------------------- */

static void expect_double(double v, const char *text)
{
    char t[CIOT__DOUBLE_BUF + 1];
    size_t n = ciot__json_fmt_double(t, v);
    t[n] = 0;
    cr_assert_str_eq(t, text, "%.17g", v);
}

Test(json_write, double_formats)
{
    expect_double(27.31, "27.31");
    expect_double(-27.31, "-27.31");
    expect_double(27.0, "27.0");
    expect_double(0.0, "0.0");
    expect_double(-0.0, "-0.0");
    expect_double(0.1, "0.1");
    expect_double(0.3, "0.3");
    expect_double(0.1 + 0.2, "0.30000000000000004");
    expect_double(1.0 / 3, "0.3333333333333333");
    expect_double(2.0 / 3, "0.6666666666666666");
    expect_double(100.0, "100.0");
    expect_double(1e15, "1000000000000000.0");
    expect_double(1e16, "1e16");
    expect_double(1.5e16, "1.5e16");
    expect_double(9007199254740991.0, "9007199254740991.0");
    expect_double(9007199254740992.0, "9007199254740992.0");
    expect_double(9007199254740994.0, "9007199254740994.0");
    expect_double(1e-5, "0.00001");
    expect_double(1.25e-5, "0.0000125");
    expect_double(9.99e-6, "9.99e-6");
    expect_double(1e-7, "1e-7");
    expect_double(1e22, "1e22");
    expect_double(1e23, "1e23");
    expect_double(1e300, "1e300");
    expect_double(-1e-300, "-1e-300");
    expect_double(1e308, "1e308");
    expect_double(DBL_MAX, "1.7976931348623157e308");
    expect_double(DBL_MIN, "2.2250738585072014e-308");
    expect_double(4.9406564584124654e-324, "5e-324");
    expect_double(-4.9406564584124654e-324, "-5e-324");
    expect_double(2.2250738585072009e-308, "2.225073858507201e-308"); /* largest subnormal */
    expect_double(123.456, "123.456");
    expect_double(5e-324 * 3, "1.5e-323");
    expect_double(0x1p-1022 * 1.5, "3.337610787760802e-308");
    expect_double(9.5, "9.5");
    expect_double(0.000123, "0.000123");
    expect_double(1234567.0, "1234567.0");
    expect_double(4.35, "4.35");
    expect_double(2.675, "2.675");
}

/* The digits of a number text: significant digits (no leading zeros, no
 * trailing zeros) and whether it parses as a real with jansson. */
static int sig_digits(const char *t)
{
    int n = 0, started = 0, trailing = 0;
    for (const char *p = t; *p && *p != 'e' && *p != 'E'; p++) {
        if (*p < '0' || *p > '9')
            continue;
        if (*p != '0' || started) {
            started = 1;
            n++;
            trailing = *p == '0' ? trailing + 1 : 0;
        }
    }
    return n - trailing;
}

/* A spread of doubles: random bit patterns, subnormals, few-decimal
 * readings, integers near 2^53, powers, extremes. */
static double gen_double(uint64_t i)
{
    static const double special[] = {
        0.0, -0.0, DBL_MAX, -DBL_MAX, DBL_MIN, -DBL_MIN, 4.9406564584124654e-324,
        -4.9406564584124654e-324, 1e308, -1e308, 1e-308, -1e-308, 1e300, 1e-300,
        9007199254740992.0, 9007199254740991.0, 9007199254740993.0, 4503599627370496.5,
        1e15, 1e16, 1e17, 1e21, 1e22, 1e23, 0.1, 0.2, 0.3, 27.31, 1.7976931348623155e308,
        2.2250738585072009e-308, 2.2250738585072014e-308, 5e-324 * 2,
    };
    uint64_t r = rnd();
    double v;
    switch (i % 9) {
    case 0:
    case 1: /* any bit pattern */
        do
            v = from_bits(rnd());
        while (!isfinite(v));
        return v;
    case 2: /* subnormal */
        return from_bits((r & 0x800FFFFFFFFFFFFFull) | (rnd() % 2 ? 0 : 1));
    case 3:
        if (r & 1) /* sensor reading: few decimals */
            return (double)((int64_t)(r % 2000001) - 1000000) / pow(10, (double)(rnd() % 5));
        /* up to 16 digits near the exact path's limits: d / 10^k, d < 2^53 */
        return (double)(rnd() % 9007199254740992ull) / pow(10, (double)(rnd() % 23));
    case 4: /* integers near 2^53 and random integers below it */
        if (r & 1)
            return 9007199254740992.0 + (double)((int64_t)(rnd() % 4001) - 2000);
        return (double)(int64_t)(rnd() >> 11) * ((r & 2) ? -1 : 1);
    case 5: /* powers of two and ten, and their neighbours */
    {
        double p = (r & 1) ? ldexp(1.0, (int)(rnd() % 2098) - 1074)
                           : pow(10, (double)((int)(rnd() % 617) - 308));
        if (rnd() % 3 == 0)
            p = nextafter(p, (r & 4) ? INFINITY : 0);
        return (r & 8) ? -p : p;
    }
    case 6: /* short decimal with an exponent */
    {
        char t[64];
        snprintf(t, sizeof t, "%llue%d", (unsigned long long)(rnd() % 1000000000),
                 (int)(rnd() % 640) - 330);
        v = strtod(t, NULL);
        return isfinite(v) ? v : 1.0;
    }
    case 7:
        return special[rnd() % (sizeof special / sizeof special[0])];
    default: /* uniform in [0, 1) times a power of ten */
        return (double)(rnd() >> 11) * 0x1p-53 * pow(10, (double)((int)(rnd() % 40) - 20));
    }
}

static void check_double_text(double v, const char *t, size_t n, bool check_shortest)
{
    char *end;
    double back = strtod(t, &end);
    cr_assert_eq((size_t)(end - t), n, "strtod stopped early in %s", t);
    cr_assert_eq(bits_of(back), bits_of(v), "%s does not read back as %a", t, v);
    cr_assert(strchr(t, '.') || strchr(t, 'e'), "%s would read as an integer", t);
    if (!check_shortest)
        return;
    int mine = sig_digits(t);
    /* no %.Ng with fewer digits reads back */
    for (int p = 1; p < mine; p++) {
        char g[400];
        snprintf(g, sizeof g, "%.*g", p, v);
        cr_assert_neq(bits_of(strtod(g, NULL)), bits_of(v), "%s reads back but we wrote %s", g, t);
    }
    cr_assert_leq(mine, 17);
}

Test(json_write, doubles_round_trip_bit_for_bit_and_are_shortest)
{
    /* every power of two (where the rounding interval is lopsided) */
    for (int e = -1074; e <= 1023; e++) {
        for (int s = 0; s < 2; s++) {
            double v = ldexp(s ? -1.0 : 1.0, e);
            char t[CIOT__DOUBLE_BUF + 1];
            size_t n = ciot__json_fmt_double(t, v);
            t[n] = 0;
            check_double_text(v, t, n, true);
        }
    }
    long total = scaled(2000000), shortest = scaled(200000);
    for (long i = 0; i < total; i++) {
        double v = gen_double((uint64_t)i);
        char t[CIOT__DOUBLE_BUF + 1];
        size_t n = ciot__json_fmt_double(t, v);
        cr_assert_leq(n, 25);
        t[n] = 0;
        check_double_text(v, t, n, i < shortest);
    }
}

/* ---- generated documents read back by jansson -------------------------------- */

struct gen {
    ciot_json_writer w;
    char scratch[256];
};

static size_t gen_string(char *out, size_t max)
{
    static const char *const pieces[] = {
        "\"", "\\", "/", "\xC2\xB1", "\xC2\xB0", "\xE2\x82\xAC", "\xF0\x9F\x98\x80",
        "\xF4\x8F\xBF\xBF", "\xEF\xBF\xBF", "\xED\x9F\xBF", "\xEE\x80\x80", "\x7F", "abc",
        "temperature", " ", "\\u0041",
    };
    size_t n = 0, want = rnd() % (max / 4);
    while (n < want) {
        uint64_t r = rnd() % 4;
        if (r == 0) { /* any control character, NUL included */
            out[n++] = (char)(rnd() % 32);
        } else if (r == 1) {
            out[n++] = (char)(32 + rnd() % 95);
        } else {
            const char *p = pieces[rnd() % (sizeof pieces / sizeof pieces[0])];
            size_t l = strlen(p);
            if (n + l > max)
                break;
            memcpy(out + n, p, l);
            n += l;
        }
    }
    return n;
}

/* Writes a random value with w and returns the jansson value it must read
 * back as. */
static json_t *gen_value(ciot_json_writer *w, int depth, long *doubles)
{
    char s[256];
    uint64_t k = rnd() % (depth > 5 ? 6 : 9);
    switch (k) {
    case 0:
    case 1: {
        size_t n = gen_string(s, sizeof s);
        cr_assert_eq(ciot_json_string(w, s, n), 0);
        return json_stringn(s, n);
    }
    case 2: {
        double v = gen_double(rnd());
        cr_assert_eq(ciot_json_double(w, v), 0);
        ++*doubles;
        return json_real(v);
    }
    case 3: {
        static const int64_t ext[] = {INT64_MIN, INT64_MAX, INT64_MIN + 1, INT64_MAX - 1,
                                      0, -1, 1, 9007199254740993LL, -9007199254740993LL};
        int64_t v = (rnd() & 1) ? ext[rnd() % 9] : (int64_t)rnd();
        cr_assert_eq(ciot_json_int(w, v), 0);
        return json_integer(v);
    }
    case 4:
        if (rnd() & 1) {
            bool b = rnd() & 1;
            cr_assert_eq(ciot_json_bool(w, b), 0);
            return json_boolean(b);
        }
        cr_assert_eq(ciot_json_null(w), 0);
        return json_null();
    case 5: {
        double v = gen_double(rnd());
        cr_assert_eq(ciot_json_double(w, v), 0);
        ++*doubles;
        return json_real(v);
    }
    case 6:
    case 7: {
        json_t *a = json_array();
        cr_assert_eq(ciot_json_begin_array(w), 0);
        int n = (int)(rnd() % 8);
        for (int i = 0; i < n; i++)
            json_array_append_new(a, gen_value(w, depth + 1, doubles));
        cr_assert_eq(ciot_json_end_array(w), 0);
        return a;
    }
    default: {
        json_t *o = json_object();
        cr_assert_eq(ciot_json_begin_object(w), 0);
        int n = (int)(rnd() % 8);
        for (int i = 0; i < n; i++) {
            /* unique keys without NUL (jansson's C-string key API) */
            size_t kl = gen_string(s, 200);
            for (size_t j = 0; j < kl; j++)
                if (s[j] == 0)
                    s[j] = 1;
            kl += (size_t)snprintf(s + kl, sizeof s - kl, "#%d", i);
            cr_assert_eq(ciot_json_key(w, s, kl), 0);
            json_object_set_new(o, s, gen_value(w, depth + 1, doubles));
        }
        cr_assert_eq(ciot_json_end_object(w), 0);
        return o;
    }
    }
}

/* Equal, with reals compared bit for bit and strings byte for byte. */
static void same(json_t *want, json_t *got, const char *doc)
{
    cr_assert_eq(json_typeof(got), json_typeof(want), "type differs in %s", doc);
    switch (json_typeof(want)) {
    case JSON_REAL:
        cr_assert_eq(bits_of(json_real_value(got)), bits_of(json_real_value(want)),
                     "real %a read back as %a", json_real_value(want), json_real_value(got));
        break;
    case JSON_INTEGER:
        cr_assert_eq(json_integer_value(got), json_integer_value(want));
        break;
    case JSON_STRING:
        cr_assert_eq(json_string_length(got), json_string_length(want));
        cr_assert(memcmp(json_string_value(got), json_string_value(want),
                         json_string_length(want)) == 0);
        break;
    case JSON_ARRAY:
        cr_assert_eq(json_array_size(got), json_array_size(want));
        for (size_t i = 0; i < json_array_size(want); i++)
            same(json_array_get(want, i), json_array_get(got, i), doc);
        break;
    case JSON_OBJECT: {
        cr_assert_eq(json_object_size(got), json_object_size(want));
        const char *key;
        json_t *v;
        json_object_foreach(want, key, v)
        {
            json_t *g = json_object_get(got, key);
            cr_assert_not_null(g, "key %s missing", key);
            same(v, g, doc);
        }
        break;
    }
    default:
        break;
    }
}

Test(json_write, generated_documents_read_back_exactly_with_jansson)
{
    long docs = scaled(20000), doubles = 0;
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    for (long i = 0; i < docs; i++) {
        ciot_json_writer w;
        cr_assert_eq(ciot_json_writer_init(&w, buf, cap), 0);
        json_t *want = gen_value(&w, 0, &doubles);
        size_t len;
        cr_assert_eq(ciot_json_writer_finish(&w, &len), 0);
        cr_assert_lt(len, cap);
        cr_assert_eq(buf[len], '\0');
        unsigned depth;
        cr_assert_eq(ciot__json_check(buf, len, 64, &depth), 0, "own check refuses %s", buf);
        json_error_t e;
        json_t *got = json_loadb(buf, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
        cr_assert_not_null(got, "jansson refuses %s: %s", buf, e.text);
        same(want, got, buf);
        json_decref(got);
        json_decref(want);
    }
    free(buf);

    /* and many doubles through jansson, one array of 1000 per document */
    long arrays = scaled(1000);
    char *big = malloc(64 * 1024);
    for (long a = 0; a < arrays; a++) {
        double vals[1000];
        ciot_json_writer w;
        cr_assert_eq(ciot_json_writer_init(&w, big, 64 * 1024), 0);
        cr_assert_eq(ciot_json_begin_array(&w), 0);
        for (int i = 0; i < 1000; i++) {
            vals[i] = gen_double(rnd());
            cr_assert_eq(ciot_json_double(&w, vals[i]), 0);
        }
        cr_assert_eq(ciot_json_end_array(&w), 0);
        size_t len;
        cr_assert_eq(ciot_json_writer_finish(&w, &len), 0);
        json_error_t e;
        json_t *got = json_loadb(big, len, 0, &e);
        cr_assert_not_null(got, "%s", e.text);
        for (int i = 0; i < 1000; i++) {
            json_t *r = json_array_get(got, (size_t)i);
            cr_assert(json_is_real(r), "element %d is not a real", i);
            cr_assert_eq(bits_of(json_real_value(r)), bits_of(vals[i]), "%a", vals[i]);
        }
        json_decref(got);
        doubles += 1000;
    }
    free(big);
    cr_log_info("%ld doubles read back by jansson", doubles);
}

/* Writes the document that the generator makes from `seed` into (buf, cap). */
static int write_generated(uint64_t seed, char *buf, size_t cap, size_t *len)
{
    ciot_json_writer w;
    long dbl = 0;
    rng_state = seed;
    cr_assert_eq(ciot_json_writer_init(&w, buf, cap), 0);
    json_t *j = gen_value(&w, 0, &dbl);
    json_decref(j);
    return ciot_json_writer_finish(&w, len);
}

Test(json_write, enospc_size_is_exact_for_generated_documents)
{
    long docs = scaled(300);
    size_t big = 1 << 20;
    char *ref = malloc(big);
    for (long d = 0; d < docs; d++) {
        uint64_t seed = rnd();
        size_t full = 0, len = 0;
        cr_assert_eq(write_generated(seed, ref, big, &full), 0);
        cr_assert_eq(write_generated(seed, NULL, 0, &len), CIOT_ENOSPC);
        cr_assert_eq(len, full);
        for (int t = 0; t < 40; t++) {
            /* every cap for small documents, else samples and the edges */
            size_t cap;
            if (full < 40)
                cap = (size_t)t;
            else if (t < 4)
                cap = full - 1 + (size_t)t % 3 + (t == 3 ? 2 : 0);
            else
                cap = (size_t)(rnd() % (full + 1));
            char *buf = malloc(cap + 16);
            memset(buf, 0x7F, cap + 16);
            len = 0;
            int rc = write_generated(seed, cap ? buf : NULL, cap, &len);
            cr_assert_eq(len, full, "doc %ld cap %zu", d, cap);
            for (size_t i = cap; i < cap + 16; i++)
                cr_assert_eq(buf[i], 0x7F, "cap %zu: byte %zu past the buffer written", cap, i);
            if (cap < full) {
                cr_assert_eq(rc, CIOT_ENOSPC);
            } else {
                cr_assert_eq(rc, 0);
                cr_assert(memcmp(buf, ref, full) == 0);
            }
            free(buf);
        }
        rng_state = seed * 31 + 7; /* move on */
    }
    free(ref);
}
