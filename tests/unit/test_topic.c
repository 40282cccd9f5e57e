#include <cloudiot/cloudiot.h>

#include <criterion/criterion.h>
#include <mosquitto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topic_gen.h"

#define S(lit) (lit), (sizeof(lit) - 1)

enum { F, T, INV }; /* expected: false, true, invalid */

typedef struct vec {
    int no;
    const char *topic;
    size_t tlen;
    const char *filter;
    size_t flen;
    int spec;
    int aws; /* with CIOT_MATCH_AWS */
} vec;

#define V(no, t, f, spec, aws) {no, t, sizeof(t) - 1, f, sizeof(f) - 1, spec, aws}

/* protocols.md §6.4, vectors 1-44 (45 and 46 need long strings: below). */
static const vec vectors[] = {
    V(1, "sport/tennis/player1", "sport/tennis/+", T, T),
    V(2, "sport/tennis/player1/ranking", "sport/tennis/+", F, F),
    V(3, "sport", "sport/#", T, F),
    V(4, "sport/tennis/player1/score/wimbledon", "sport/#", T, T),
    V(5, "sport", "sport/+", F, F),
    V(6, "sport/", "sport/+", T, T),
    V(7, "/finance", "+/+", T, T),
    V(8, "/finance", "/+", T, T),
    V(9, "/finance", "+", F, F),
    V(10, "a/b/c", "#", T, T),
    V(11, "/", "#", T, T),
    V(12, "/", "+", F, F),
    V(13, "/", "+/+", T, T),
    V(14, "a//b", "a/+/b", T, T),
    V(15, "a/", "a/#", T, T),
    V(16, "a", "+/#", T, F),
    V(17, "a/b", "a/b/", F, F),
    V(18, "A/b", "a/b", F, F),
    V(19, "$SYS/broker/load", "#", F, F),
    V(20, "$SYS/monitor/Clients", "+/monitor/Clients", F, F),
    V(21, "$SYS/monitor/Clients", "$SYS/#", T, T),
    V(22, "$SYS", "$SYS/#", T, F),
    V(23, "$SYS/monitor/Clients", "$SYS/monitor/+", T, T),
    V(24, "a/$b", "a/+", T, T),
    V(25, "$aws/things/t1/shadow/update/delta", "$aws/things/+/shadow/update/delta", T, T),
    V(26, "sensors/dev42/temperature", "sensors/+/temperature", T, T),
    V(27, "sensors/a/b/temperature", "sensors/+/temperature", F, F),
    V(28, "a/b/c", "a/b/c/#", T, F),
    V(29, "a/b", "a/b/c/#", F, F),
    V(30, "a/b", "+/+/+", F, F),
    V(31, "a/b/", "a/+/+", T, T),
    V(32, "devices/d1/messages/devicebound/%24.mid=1&k=v", "devices/d1/messages/devicebound/#", T, T),
    V(33, "a/b", "a/#/b", INV, INV),
    V(34, "a", "a+", INV, INV),
    V(35, "a", "#a", INV, INV),
    V(36, "a/b", "a/b#", INV, INV),
    V(37, "x", "a/+b", INV, INV),
    V(38, "a", "", INV, INV),
    V(39, "a/+", "a/+", INV, INV),
    V(40, "a/#", "#", INV, INV),
    V(41, "", "#", INV, INV),
    V(42, "a\0b", "#", INV, INV),
    V(43, "a\xc0\xaf" "b", "#", INV, INV),
    V(44, "a/b", "$share/grp/a/+", T, T),
};

static int run(const vec *v, unsigned flags)
{
    bool m = false;
    int rc = ciot_topic_match_ex(v->filter, v->flen, v->topic, v->tlen, flags, &m);
    if (rc == CIOT_EINVAL)
        return INV;
    cr_assert_eq(rc, 0, "vector %d: rc %d", v->no, rc);
    return m ? T : F;
}

Test(topic, protocols_vectors_1_to_44_in_spec_and_aws_modes)
{
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        const vec *v = &vectors[i];
        cr_expect_eq(run(v, 0), v->spec, "vector %d (spec): got %d want %d", v->no, run(v, 0),
                     v->spec);
        cr_expect_eq(run(v, CIOT_MATCH_AWS), v->aws, "vector %d (aws): got %d want %d", v->no,
                     run(v, CIOT_MATCH_AWS), v->aws);
        if (v->spec != INV) {
            bool m = !v->spec;
            cr_assert_eq(ciot_topic_match(v->filter, v->flen, v->topic, v->tlen, &m), 0);
            cr_expect_eq(m, v->spec == T, "vector %d via ciot_topic_match", v->no);
        }
    }
}

Test(topic, vector_45_name_of_257_bytes_valid_in_spec_invalid_under_aws_limits)
{
    char name[257];
    memset(name, 'n', sizeof name);
    bool m = false;
    cr_assert_eq(ciot_topic_match(S("#"), name, sizeof name, &m), 0);
    cr_assert(m);
    cr_assert_eq(ciot_topic_match_ex(S("#"), name, sizeof name, CIOT_TOPIC_AWS_LIMITS, &m),
                 CIOT_EINVAL);
    cr_assert_eq(ciot_topic_match_ex(S("#"), name, 256, CIOT_TOPIC_AWS, &m), 0);
    cr_assert(m);
    cr_assert_eq(ciot_topic_name_check_ex(name, sizeof name, CIOT_TOPIC_AWS_LIMITS), CIOT_EINVAL);
    cr_assert_eq(ciot_topic_name_check(name, sizeof name), 0);
}

Test(topic, vector_46_eight_slashes_valid_in_spec_invalid_under_aws_limits)
{
    bool m = false;
    cr_assert_eq(ciot_topic_match(S("#"), S("a/b/c/d/e/f/g/h/i"), &m), 0);
    cr_assert(m);
    cr_assert_eq(ciot_topic_match_ex(S("#"), S("a/b/c/d/e/f/g/h/i"), CIOT_TOPIC_AWS, &m),
                 CIOT_EINVAL);
    cr_assert_eq(ciot_topic_match_ex(S("#"), S("a/b/c/d/e/f/g/h"), CIOT_TOPIC_AWS, &m), 0);
    cr_assert(m);
    /* filters count too */
    cr_assert_eq(ciot_topic_filter_check_ex(S("a/b/c/d/e/f/g/h/#"), CIOT_TOPIC_AWS_LIMITS),
                 CIOT_EINVAL);
    cr_assert_eq(ciot_topic_filter_check_ex(S("a/b/c/d/e/f/g/#"), CIOT_TOPIC_AWS_LIMITS), 0);
    /* the Basic Ingest prefix is not counted */
    cr_assert_eq(ciot_topic_name_check_ex(S("$aws/rules/r1/a/b/c/d/e/f/g/h"),
                                          CIOT_TOPIC_AWS_LIMITS), 0);
    cr_assert_eq(ciot_topic_name_check_ex(S("$aws/rules/r1/a/b/c/d/e/f/g/h/i"),
                                          CIOT_TOPIC_AWS_LIMITS), CIOT_EINVAL);
}

Test(topic, filter_only_validity_list)
{
    static const char *const valid[] = {"#", "+", "+/+", "/#", "a/+/#", "$SYS/#", "//"};
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++)
        cr_expect_eq(ciot_topic_filter_check(valid[i], strlen(valid[i])), 0, "%s", valid[i]);
    static const char *const invalid[] = {"#/a", "a/#/", "a/##", "++", "a/b+/c"};
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++)
        cr_expect_eq(ciot_topic_filter_check(invalid[i], strlen(invalid[i])), CIOT_EINVAL, "%s",
                     invalid[i]);
    cr_expect_eq(ciot_topic_filter_check("", 0), CIOT_EINVAL);
    cr_expect_eq(ciot_topic_filter_check(S("a\0")), CIOT_EINVAL);
    cr_expect_eq(ciot_topic_filter_check(S("\0")), CIOT_EINVAL);
    cr_expect_eq(ciot_topic_filter_check(S("abcdefghijk/\0/#")), CIOT_EINVAL);
    cr_expect_eq(ciot_topic_filter_check(NULL, 1), CIOT_EINVAL);
}

Test(topic, shared_subscription_filters)
{
    cr_expect_eq(ciot_topic_filter_check(S("$share/g/a/+")), 0);
    cr_expect_eq(ciot_topic_filter_check(S("$share/g/#")), 0);
    cr_expect_eq(ciot_topic_filter_check(S("$share/g")), CIOT_EINVAL);
    cr_expect_eq(ciot_topic_filter_check(S("$share/g/")), CIOT_EINVAL);
    cr_expect_eq(ciot_topic_filter_check(S("$share//a")), CIOT_EINVAL);
    cr_expect_eq(ciot_topic_filter_check(S("$share/g+/a")), CIOT_EINVAL);
    cr_expect_eq(ciot_topic_filter_check(S("$share/g#/a")), CIOT_EINVAL);
    cr_expect_eq(ciot_topic_filter_check(S("$share/g/a/#/b")), CIOT_EINVAL);
    cr_expect_eq(ciot_topic_filter_check(S("$share/\xc0\xaf/a")), CIOT_EINVAL);
    bool m = true;
    cr_assert_eq(ciot_topic_match(S("$share/g+/a"), S("a"), &m), CIOT_EINVAL);
    cr_assert_eq(ciot_topic_match(S("$share/grp/a/+"), S("$share/grp/a/b"), &m), 0);
    cr_expect(!m, "matched against {filter} only");
    cr_assert_eq(ciot_topic_match(S("$share/grp/#"), S("$SYS/x"), &m), 0);
    cr_expect(!m, "leading wildcard of {filter} does not match $ names");
    cr_assert_eq(ciot_topic_match(S("$share/grp/#"), S("x/y"), &m), 0);
    cr_expect(m);
    /* "$share" alone or "$sharex/..." are ordinary filters */
    cr_assert_eq(ciot_topic_match(S("$share"), S("$share"), &m), 0);
    cr_expect(m);
    cr_assert_eq(ciot_topic_match(S("$sharex/g/a"), S("$sharex/g/a"), &m), 0);
    cr_expect(m);
}

Test(topic, utf8_rules)
{
    bool m;
    /* well-formed multi-byte, leading BOM kept, spaces legal */
    cr_expect_eq(ciot_topic_name_check(S("caf\xc3\xa9/\xe6\x97\xa5/\xf0\x9f\x98\x80")), 0);
    cr_expect_eq(ciot_topic_name_check(S("\xef\xbb\xbf" "a")), 0);
    cr_expect_eq(ciot_topic_match(S("\xef\xbb\xbf" "a"), S("a"), &m), 0);
    cr_expect(!m, "a leading U+FEFF is part of the string");
    cr_expect_eq(ciot_topic_name_check(S("a b")), 0);
    /* ill-formed */
    static const char *const bad[] = {
        "\xc0\x80", "\xc1\xbf", "\xe0\x9f\xbf", "\xed\xa0\x80", "\xed\xbf\xbf", "\xf0\x8f\xbf\xbf",
        "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff", "\x80", "\xc3", "\xe2\x82", "\xf0\x9f\x98",
        "\xc3\x28", "\xe2\x28\xa1", "longer-ascii-prefix-\xed\xa0\x80-tail",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_expect_eq(ciot_topic_name_check(bad[i], strlen(bad[i])), CIOT_EINVAL, "bad %zu", i);
        cr_expect_eq(ciot_topic_filter_check(bad[i], strlen(bad[i])), CIOT_EINVAL, "bad %zu", i);
        cr_expect_eq(ciot_topic_match(S("#"), bad[i], strlen(bad[i]), &m), CIOT_EINVAL);
        cr_expect_eq(ciot_topic_match(bad[i], strlen(bad[i]), S("a"), &m), CIOT_EINVAL);
    }
    /* edges that are valid */
    static const char *const good[] = {"\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf",
                                       "\xee\x80\x80", "\xef\xbf\xbf", "\xf0\x90\x80\x80",
                                       "\xf4\x8f\xbf\xbf"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        cr_expect_eq(ciot_topic_name_check(good[i], strlen(good[i])), 0, "good %zu", i);
}

Test(topic, strict_mode_refuses_controls_and_noncharacters)
{
    static const char *const refused[] = {"a\x01", "\x1f", "\x7f", "x\xc2\x80", "\xc2\x9f",
                                          "\xef\xb7\x90", "\xef\xb7\xaf", "\xef\xbf\xbe",
                                          "\xef\xbf\xbf", "\xf0\x9f\xbf\xbe", "\xf4\x8f\xbf\xbf",
                                          "twelve-bytes\x09tab"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        size_t n = strlen(refused[i]);
        cr_expect_eq(ciot_topic_name_check(refused[i], n), 0, "default accepts %zu", i);
        cr_expect_eq(ciot_topic_name_check_ex(refused[i], n, CIOT_TOPIC_STRICT), CIOT_EINVAL,
                     "strict refuses %zu", i);
        cr_expect_eq(ciot_topic_filter_check_ex(refused[i], n, CIOT_TOPIC_STRICT), CIOT_EINVAL);
        bool m;
        cr_expect_eq(ciot_topic_match_ex(refused[i], n, refused[i], n, CIOT_TOPIC_STRICT, &m),
                     CIOT_EINVAL);
        cr_expect_eq(ciot_topic_match_ex(refused[i], n, refused[i], n, 0, &m), 0);
        cr_expect(m);
    }
    static const char *const kept[] = {" ", "\xc2\xa0", "\xef\xb7\x8f", "\xef\xb7\xb0",
                                       "\xef\xbf\xbd", "\xf0\x9f\x98\x80"};
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++)
        cr_expect_eq(ciot_topic_name_check_ex(kept[i], strlen(kept[i]), CIOT_TOPIC_STRICT), 0,
                     "strict keeps %zu", i);
}

Test(topic, bad_arguments)
{
    bool m = true;
    cr_expect_eq(ciot_topic_match(NULL, 1, S("a"), &m), CIOT_EINVAL);
    cr_expect_eq(ciot_topic_match(S("a"), NULL, 1, &m), CIOT_EINVAL);
    cr_expect_eq(ciot_topic_match(S("a"), S("a"), NULL), CIOT_EINVAL);
    cr_expect_eq(ciot_topic_match_ex(S("a"), S("a"), 0x100, &m), CIOT_EINVAL);
    cr_expect_eq(ciot_topic_name_check_ex(S("a"), 0x80), CIOT_EINVAL);
    cr_expect(m, "untouched on error");
}

Test(topic, lengths_up_to_65535)
{
    static char big[65536];
    memset(big, 'x', sizeof big);
    bool m = false;
    cr_expect_eq(ciot_topic_match(big, 65535, big, 65535, &m), 0);
    cr_expect(m);
    cr_expect_eq(ciot_topic_match(big, 65536, big, 65535, &m), CIOT_EINVAL);
    cr_expect_eq(ciot_topic_match(big, 65535, big, 65536, &m), CIOT_EINVAL);
    cr_expect_eq(ciot_topic_name_check(big, 65536), CIOT_EINVAL);
    cr_expect_eq(ciot_topic_filter_check(big, 65536), CIOT_EINVAL);
    /* 32,768 levels of '+' against as many empty levels */
    for (size_t i = 0; i < 65535; i++)
        big[i] = i % 2 ? '/' : '+';
    cr_expect_eq(ciot_topic_filter_check(big, 65535), 0);
}

Test(topic, no_overread_past_the_given_length)
{
    /* The byte after the slice must never change the answer. */
    const char filter[] = "sensors/+/temperatureXX";
    const char topic[] = "sensors/dev42/temperature#";
    bool m = false;
    cr_assert_eq(ciot_topic_match(filter, sizeof filter - 3, topic, sizeof topic - 2, &m), 0);
    cr_expect(m);
}

/* ----------------------------------------------------- differential test */

/*
 * Where libmosquitto 2.0.11 differs from MQTT / this library, and how the
 * test handles it:
 *  - mosquitto_sub_topic_check / mosquitto_pub_topic_check accept "" (MQTT:
 *    invalid): the oracle adds the length >= 1 rule.
 *  - mosquitto_validate_utf8 also refuses U+0001-U+001F, U+007F-U+009F and
 *    the non-characters, which MQTT only says SHOULD NOT appear: that is
 *    exactly CIOT_TOPIC_STRICT, so strict pairs are compared as they are and
 *    default-mode pairs after swapping those characters for 'x'.
 *  - libmosquitto knows nothing of `$share/{name}/`: the generator makes no
 *    such filters (the vectors and test_topicset cover them).
 *  - It takes NUL-terminated strings (and ignores the lengths of _sub2), so it
 *    cannot see an embedded NUL: for those our CIOT_EINVAL is asserted alone.
 *  - mosquitto_topic_matches_sub does not validate UTF-8 and returns early
 *    without checking the rest of the filter: match results are compared only
 *    for pairs both checks call valid. On those, no disagreement was found.
 */

/* Length of a non-character's UTF-8 form at s[i] (0 if none there). */
static size_t nonchar_at(const unsigned char *s, size_t i, size_t n)
{
    if (i + 3 <= n && s[i] == 0xef &&
        ((s[i + 1] == 0xb7 && s[i + 2] >= 0x90 && s[i + 2] <= 0xaf) ||
         (s[i + 1] == 0xbf && s[i + 2] >= 0xbe)))
        return 3;
    if (i + 4 <= n && s[i] >= 0xf0 && s[i] <= 0xf4 && (s[i + 1] & 0x0f) == 0x0f &&
        s[i + 1] >= 0x80 && s[i + 2] == 0xbf && s[i + 3] >= 0xbe && s[i + 3] <= 0xbf)
        return 4;
    return 0;
}

/*
 * libmosquitto's validity for s (no NUL inside). Its mosquitto_validate_utf8
 * (2.0.11) also refuses U+0001-U+001F, U+007F-U+009F and the non-characters,
 * which MQTT only says SHOULD NOT appear: exactly what CIOT_TOPIC_STRICT
 * refuses. For the default mode those are swapped for 'x' first, so that only
 * well-formedness is compared.
 */
static bool mosq_valid(const char *s, size_t n, bool filter, bool strict)
{
    char tmp[600];
    cr_assert_lt(n, sizeof tmp);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t nc = strict ? 0 : nonchar_at((const unsigned char *)s, i, n);
        if (nc) {
            for (size_t j = 0; j < nc; j++)
                tmp[k++] = 'x';
            i += nc - 1;
        } else if (!strict && (c < 0x20 || c == 0x7f)) {
            tmp[k++] = 'x';
        } else if (!strict && c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 &&
                   (unsigned char)s[i + 1] <= 0x9f) {
            tmp[k++] = 'x';
            tmp[k++] = 'x';
            i++;
        } else {
            tmp[k++] = (char)c;
        }
    }
    tmp[k] = 0;
    if (n == 0) /* mosquitto_{sub,pub}_topic_check accept "" */
        return false;
    if ((filter ? mosquitto_sub_topic_check(tmp) : mosquitto_pub_topic_check(tmp)) !=
        MOSQ_ERR_SUCCESS)
        return false;
    return mosquitto_validate_utf8(tmp, (int)k) == MOSQ_ERR_SUCCESS;
}

Test(topic, differential_against_libmosquitto_1M_pairs, .timeout = 600)
{
    long pairs = tg_scaled(1000000);
    tg_rng r = {0x5eed0001ull};
    tg_str t, f;
    long n_match = 0, n_false = 0, n_inv = 0, n_nul = 0, n_dollar = 0;
    for (long it = 0; it < pairs; it++) {
        int kinds = (it % 5 == 0) ? (TG_CTRL | TG_NONCHAR | TG_BADUTF8) : 0;
        tg_name(&r, &t, kinds);
        tg_filter_from(&r, &f, &t, kinds);
        if (tg_below(&r, 16) == 0) { /* a wildcard in the name */
            tg_append(&t, tg_below(&r, 2) ? "/+" : "/#", 2);
        }
        bool strict = tg_below(&r, 4) == 0;
        unsigned flags = strict ? CIOT_TOPIC_STRICT : 0;

        if (tg_below(&r, 50) == 0) { /* embedded NUL: libmosquitto can't see it */
            tg_str *s = tg_below(&r, 2) ? &t : &f;
            size_t at = s->len ? tg_below(&r, (uint32_t)s->len + 1) : 0;
            if (s->len < sizeof s->buf) {
                memmove(s->buf + at + 1, s->buf + at, s->len - at);
                s->buf[at] = 0;
                s->len++;
            }
            bool m;
            cr_assert_eq(ciot_topic_match_ex(f.buf, f.len, t.buf, t.len, flags, &m), CIOT_EINVAL,
                         "embedded NUL must be invalid (pair %ld)", it);
            n_nul++;
            continue;
        }
        if (t.buf[0] == '$')
            n_dollar++;

        bool fv = mosq_valid(f.buf, f.len, true, strict);
        bool tv = mosq_valid(t.buf, t.len, false, strict);
        cr_assert_eq(ciot_topic_filter_check_ex(f.buf, f.len, flags) == 0, fv,
                     "filter validity differs: '%.*s' strict=%d (pair %ld)", (int)f.len, f.buf,
                     strict, it);
        cr_assert_eq(ciot_topic_name_check_ex(t.buf, t.len, flags) == 0, tv,
                     "name validity differs: '%.*s' strict=%d (pair %ld)", (int)t.len, t.buf,
                     strict, it);

        bool m = false;
        int rc = ciot_topic_match_ex(f.buf, f.len, t.buf, t.len, flags, &m);
        if (!fv || !tv) {
            cr_assert_eq(rc, CIOT_EINVAL, "invalid pair accepted: '%.*s' vs '%.*s'", (int)f.len,
                         f.buf, (int)t.len, t.buf);
            n_inv++;
            continue;
        }
        cr_assert_eq(rc, 0);
        f.buf[f.len] = 0;
        t.buf[t.len] = 0;
        bool mm = false;
        cr_assert_eq(mosquitto_topic_matches_sub(f.buf, t.buf, &mm), MOSQ_ERR_SUCCESS,
                     "libmosquitto refused a valid pair '%s' vs '%s'", f.buf, t.buf);
        cr_assert_eq(m, mm, "match differs: filter '%s' name '%s': ours %d libmosquitto %d",
                     f.buf, t.buf, m, mm);
        if (m)
            n_match++;
        else
            n_false++;

        /* AWS mode differs exactly on the parent-level case of "/#" */
        bool ma = !m;
        cr_assert_eq(ciot_topic_match_ex(f.buf, f.len, t.buf, t.len, flags | CIOT_MATCH_AWS, &ma),
                     0);
        bool parent = false;
        if (m && f.len > 2 && memcmp(f.buf + f.len - 2, "/#", 2) == 0) {
            bool pm = false;
            cr_assert_eq(ciot_topic_match_ex(f.buf, f.len - 2, t.buf, t.len, flags, &pm), 0);
            parent = pm;
        }
        cr_assert_eq(ma, m && !parent, "aws mode: '%s' vs '%s'", f.buf, t.buf);
    }
    cr_log_info("pairs %ld: match %ld, no match %ld, invalid %ld, embedded NUL %ld, $-names %ld",
                pairs, n_match, n_false, n_inv, n_nul, n_dollar);
    /* the generator must exercise every outcome */
    cr_assert_gt(n_match, pairs / 10);
    cr_assert_gt(n_false, pairs / 10);
    cr_assert_gt(n_inv, pairs / 20);
    cr_assert_gt(n_dollar, pairs / 50);
}

/*
 * Reference matcher for valid strings, level by level (spec rules; aws: "#"
 * does not match its parent level).
 */
static bool ref_match(const char *f, size_t fn, const char *t, size_t tn, bool aws)
{
    size_t fi = 0, ti = 0;
    bool first = true;
    for (;;) {
        size_t fe = fi, te = ti;
        while (fe < fn && f[fe] != '/')
            fe++;
        while (te < tn && t[te] != '/')
            te++;
        if (fe - fi == 1 && f[fi] == '#')
            return !(first && t[0] == '$');
        if (fe - fi == 1 && f[fi] == '+') {
            if (first && t[0] == '$')
                return false;
        } else if (fe - fi != te - ti || memcmp(f + fi, t + ti, fe - fi) != 0) {
            return false;
        }
        first = false;
        bool fend = fe == fn, tend = te == tn;
        if (fend || tend) {
            if (fend && tend)
                return true;
            /* the name ends here: "x/#" matches "x" */
            return tend && !aws && fn - fe == 2 && f[fe + 1] == '#';
        }
        fi = fe + 1;
        ti = te + 1;
    }
}

/* Appends a random level of 0..max characters, ASCII or 2-, 3-, 4-byte UTF-8. */
static void rand_level(tg_rng *r, tg_str *s, uint32_t max)
{
    static const char *const chars[] = {"a", "b", "c", "$", "\xc3\xa9", "\xe2\x82\xac",
                                        "\xf0\x9f\x98\x80", "z", "0"};
    uint32_t n = tg_below(r, max + 1);
    for (uint32_t i = 0; i < n; i++) {
        const char *c = chars[tg_below(r, TG_NELEM(chars))];
        tg_append(s, c, strlen(c));
    }
}

/* Exact-size heap copy, so that ASan sees any read past the end. */
static char *exact_copy(const tg_str *s)
{
    char *p = malloc(s->len ? s->len : 1);
    cr_assert_not_null(p);
    memcpy(p, s->buf, s->len);
    return p;
}

Test(topic, agrees_with_reference_across_block_and_character_boundaries, .timeout = 300)
{
    long iters = tg_scaled(300000);
    tg_rng r = {0x5eed0003ull};
    tg_str t, f;
    long n_match = 0, n_false = 0, n_inv = 0;
    for (long it = 0; it < iters; it++) {
        t.len = 0;
        uint32_t levels = 1 + tg_below(&r, 12), maxlev = tg_below(&r, 4) ? 12 : 40;
        for (uint32_t l = 0; l < levels && t.len < 400; l++) {
            if (l)
                tg_append(&t, "/", 1);
            rand_level(&r, &t, maxlev);
        }
        if (t.len == 0)
            tg_append(&t, "a", 1);
        /* the filter: the name with levels made '+', cut with '#', or changed */
        f.len = 0;
        size_t i = 0;
        while (i <= t.len) {
            size_t e = i;
            while (e < t.len && t.buf[e] != '/')
                e++;
            uint32_t what = tg_below(&r, 10);
            if (what == 0) {
                tg_append(&f, "+", 1);
            } else if (what == 1 && i > 0) {
                tg_append(&f, "#", 1);
                break;
            } else {
                tg_append(&f, t.buf + i, e - i);
            }
            if (e == t.len)
                break;
            tg_append(&f, "/", 1);
            i = e + 1;
        }
        switch (tg_below(&r, 8)) {
        case 0: /* one byte changed, maybe inside a character */
            if (f.len)
                f.buf[tg_below(&r, (uint32_t)f.len)] ^= (char)(1u << tg_below(&r, 8));
            break;
        case 1: /* cut, maybe inside a character */
            if (f.len > 1)
                f.len = 1 + tg_below(&r, (uint32_t)f.len - 1);
            break;
        case 2:
            tg_append(&f, "/#", 2);
            break;
        case 3: /* the name cut or changed instead */
            if (t.len > 1 && tg_below(&r, 2))
                t.len = 1 + tg_below(&r, (uint32_t)t.len - 1);
            else
                t.buf[tg_below(&r, (uint32_t)t.len)] ^= (char)(1u << tg_below(&r, 8));
            break;
        default:
            break;
        }
        if (f.len == 0)
            tg_append(&f, "#", 1);
        char *fp = exact_copy(&f), *tp = exact_copy(&t);
        bool valid = ciot_topic_filter_check(fp, f.len) == 0 && ciot_topic_name_check(tp, t.len) == 0;
        for (unsigned aws = 0; aws < 2; aws++) {
            bool m = false;
            int rc = ciot_topic_match_ex(fp, f.len, tp, t.len, aws ? CIOT_MATCH_AWS : 0, &m);
            if (!valid) {
                cr_assert_eq(rc, CIOT_EINVAL, "invalid pair accepted: '%.*s' vs '%.*s'",
                             (int)f.len, f.buf, (int)t.len, t.buf);
                continue;
            }
            cr_assert_eq(rc, 0, "valid pair refused: '%.*s' vs '%.*s'", (int)f.len, f.buf,
                         (int)t.len, t.buf);
            bool want = ref_match(f.buf, f.len, t.buf, t.len, aws != 0);
            cr_assert_eq(m, want, "filter '%.*s' name '%.*s' aws %u: got %d want %d", (int)f.len,
                         f.buf, (int)t.len, t.buf, aws, m, want);
        }
        if (!valid)
            n_inv++;
        else if (ref_match(f.buf, f.len, t.buf, t.len, false))
            n_match++;
        else
            n_false++;
        free(fp);
        free(tp);
    }
    cr_log_info("pairs %ld: match %ld, no match %ld, invalid %ld", iters, n_match, n_false, n_inv);
    cr_assert_gt(n_match, iters / 10);
    cr_assert_gt(n_false, iters / 10);
    cr_assert_gt(n_inv, iters / 20);
}
