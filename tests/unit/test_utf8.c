/* ciot__utf8_valid: the UTF-8 check used for client ids, user names and
 * other settings (the topic and JSON code have their own fast paths). */
#include "core/utf8.h"

#include <criterion/criterion.h>
#include <string.h>

static bool v(const char *s, size_t n)
{
    return ciot__utf8_valid(s, n, false);
}

Test(utf8, accepts_well_formed_text)
{
    cr_assert(v("", 0));
    cr_assert(v("plain ascii, longer than eight bytes", 36));
    cr_assert(v("\xc2\xb1" "0.5\xc2\xb0" "C", 8));
    cr_assert(v("\xe2\x82\xac", 3));             /* U+20AC */
    cr_assert(v("\xef\xbf\xbf", 3));             /* U+FFFF */
    cr_assert(v("\xf0\x9f\x98\x80", 4));         /* U+1F600 */
    cr_assert(v("\xf4\x8f\xbf\xbf", 4));         /* U+10FFFF */
    cr_assert(v("12345678\xc3\xa9" "12345678", 18), "a sequence between ASCII runs");
}

Test(utf8, rejects_ill_formed_text)
{
    cr_assert_not(v("\xc0\xaf", 2), "overlong /");
    cr_assert_not(v("\xe0\x80\xaf", 3), "overlong 3-byte");
    cr_assert_not(v("\xf0\x80\x80\xaf", 4), "overlong 4-byte");
    cr_assert_not(v("\xed\xa0\x80", 3), "surrogate U+D800");
    cr_assert_not(v("\xed\xbf\xbf", 3), "surrogate U+DFFF");
    cr_assert_not(v("\xf4\x90\x80\x80", 4), "above U+10FFFF");
    cr_assert_not(v("\xf5\x80\x80\x80", 4));
    cr_assert_not(v("\x80", 1), "stray continuation byte");
    cr_assert_not(v("\xc3", 1), "truncated");
    cr_assert_not(v("abcdefgh\xe2\x82", 10), "truncated after an ASCII run");
    cr_assert_not(v("\xff", 1));
}

Test(utf8, nul_only_when_allowed)
{
    cr_assert_not(v("a\0b", 3));
    cr_assert_not(v("abcdefg\0abcdefgh", 16), "a NUL inside an 8-byte block");
    cr_assert(ciot__utf8_valid("a\0b", 3, true));
    cr_assert(ciot__utf8_valid("abcdefg\0abcdefgh", 16, true));
}

Test(utf8, never_reads_past_the_length)
{
    /* The valid prefix of an invalid buffer is judged on its own. */
    const char buf[] = "valid\xff";
    cr_assert(v(buf, 5));
}
