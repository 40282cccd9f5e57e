/* Direct-method request topics (lib/core/azure_method.c): edge cases. */
#include "core/azure_method.h"

#include <cloudiot/error.h>

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static int parse(ciot__azure_method_req *r, const char **why, const char *topic)
{
    static char buf[CIOT__AZURE_METHOD_TOPIC_MAX];
    return ciot__azure_method_parse(r, why, buf, sizeof buf, topic, strlen(topic));
}

static void is(ciot_view v, const char *want)
{
    cr_assert_eq(v.len, strlen(want), "\"%.*s\" vs \"%s\"", (int)v.len, v.ptr, want);
    cr_assert_eq(memcmp(v.ptr, want, v.len), 0, "\"%.*s\" vs \"%s\"", (int)v.len, v.ptr, want);
}

Test(azure_method, the_documented_request_and_variants)
{
    ciot__azure_method_req r;
    const char *why;
    cr_assert_eq(parse(&r, &why, "$iothub/methods/POST/reboot/?$rid=1"), 0);
    is(r.name, "reboot");
    is(r.rid, "1");
    /* $rid anywhere, other fields ignored, no '?', escapes decoded */
    cr_assert_eq(parse(&r, &why, "$iothub/methods/POST/get.Status/?a=1&$rid=ab%20c&b"), 0);
    is(r.name, "get.Status");
    is(r.rid, "ab c");
    cr_assert_eq(parse(&r, &why, "$iothub/methods/POST/x/$rid=7"), 0);
    is(r.rid, "7");
    /* the first $rid wins */
    cr_assert_eq(parse(&r, &why, "$iothub/methods/POST/x/?$rid=1&$rid=2"), 0);
    is(r.rid, "1");
    /* a UTF-8 name */
    cr_assert_eq(parse(&r, &why, "$iothub/methods/POST/caf\xc3\xa9/?$rid=1"), 0);
    is(r.name, "caf\xc3\xa9");
}

Test(azure_method, malformed_requests_say_why_and_keep_a_usable_rid)
{
    ciot__azure_method_req r;
    const char *why;
    cr_assert_eq(parse(&r, &why, "$iothub/methods/res/200/?$rid=1"), CIOT_ENOTFOUND);
    cr_assert_eq(parse(&r, &why, "$iothub/methods/POST"), CIOT_ENOTFOUND);
    static const struct {
        const char *topic, *why;
        bool rid;
    } bad[] = {
        {"$iothub/methods/POST/", "no request id", false},
        {"$iothub/methods/POST/reboot", "no request id", false},
        {"$iothub/methods/POST/reboot/", "no request id", false},
        {"$iothub/methods/POST/reboot/?x=1", "no request id", false},
        {"$iothub/methods/POST/reboot/?$rid", "no request id", false},
        {"$iothub/methods/POST/reboot/?$rid=", "no request id", false},
        {"$iothub/methods/POST/reboot/?$rid=%zz", "malformed query", false},
        {"$iothub/methods/POST/reboot/?$rid=%4", "malformed query", false},
        {"$iothub/methods/POST/reboot/?$rid=%ff", "malformed query", false},
        {"$iothub/methods/POST/reboot/?=1&$rid=1", "malformed query", false},
        {"$iothub/methods/POST/reboot/?a&b&c&d&e&f&g&h&$rid=1", "more than 8", false},
        {"$iothub/methods/POST//?$rid=5", "method name", true},
        {"$iothub/methods/POST/a+b/?$rid=5", "method name", true},
        {"$iothub/methods/POST/a#/?$rid=5", "method name", true},
        {"$iothub/methods/POST/a\xff/?$rid=5", "method name", true},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(parse(&r, &why, bad[i].topic), CIOT_EPROTOCOL, "%s", bad[i].topic);
        cr_assert(strstr(why, bad[i].why) != NULL, "%s: %s", bad[i].topic, why);
        cr_assert_eq(r.rid.len != 0, bad[i].rid, "%s", bad[i].topic);
    }
    /* limits: 128-byte name and rid pass, 129 do not */
    char t[400];
    snprintf(t, sizeof t, "$iothub/methods/POST/%0128d/?$rid=%0128d", 0, 0);
    cr_assert_eq(parse(&r, &why, t), 0);
    snprintf(t, sizeof t, "$iothub/methods/POST/%0129d/?$rid=1", 0);
    cr_assert_eq(parse(&r, &why, t), CIOT_EPROTOCOL);
    cr_assert_eq(r.rid.len, 1);
    snprintf(t, sizeof t, "$iothub/methods/POST/x/?$rid=%0129d", 0);
    cr_assert_eq(parse(&r, &why, t), CIOT_EPROTOCOL);
    cr_assert(strstr(why, "longer than 128") != NULL);
    /* huge topics */
    char big[2000];
    memset(big, 'a', sizeof big);
    memcpy(big, "$iothub/methods/POST/x/?$rid=1&", 31);
    big[1024] = '\0';
    cr_assert_eq(parse(&r, &why, big), 0);
    big[1024] = 'a';
    big[1025] = '\0';
    cr_assert_eq(parse(&r, &why, big), CIOT_EPROTOCOL);
    cr_assert(strstr(why, "longer than 1024") != NULL);
    /* a small buffer is reported, never overrun */
    char small[4];
    cr_assert_eq(ciot__azure_method_parse(&r, &why, small, sizeof small,
                                          "$iothub/methods/POST/x/?$rid=123456", 35),
                 CIOT_EPROTOCOL);
    cr_assert_eq(ciot__azure_method_parse(NULL, &why, small, 4, "x", 1), CIOT_EINVAL);
    cr_assert_eq(ciot__azure_method_parse(&r, &why, NULL, 4, "x", 1), CIOT_EINVAL);
}
