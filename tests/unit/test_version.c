#include <cloudiot/cloudiot.h>

#include <criterion/criterion.h>
#include <stdio.h>

Test(version, runtime_matches_headers)
{
    cr_assert_eq(ciot_version(), (unsigned)CIOT_VERSION_HEX);
    char text[32];
    snprintf(text, sizeof text, "%d.%d.%d", CIOT_VERSION_MAJOR, CIOT_VERSION_MINOR,
             CIOT_VERSION_PATCH);
    cr_assert_str_eq(ciot_version_string(), text);
    cr_assert_str_eq(ciot_version_string(), CIOT_VERSION_STRING);
}

Test(version, hex_layout)
{
    cr_assert_eq(CIOT_VERSION_HEX >> 16, CIOT_VERSION_MAJOR);
    cr_assert_eq((CIOT_VERSION_HEX >> 8) & 0xff, CIOT_VERSION_MINOR);
    cr_assert_eq(CIOT_VERSION_HEX & 0xff, CIOT_VERSION_PATCH);
}

Test(version, at_least_macro_and_function_agree)
{
#if !CIOT_VERSION_AT_LEAST(0, 1, 0)
    cr_assert_fail("headers older than 0.1.0");
#endif
#if CIOT_VERSION_AT_LEAST(255, 0, 0)
    cr_assert_fail("AT_LEAST(255,0,0) must be false");
#endif
    cr_assert(ciot_version_at_least(0, 0, 0));
    cr_assert(ciot_version_at_least(CIOT_VERSION_MAJOR, CIOT_VERSION_MINOR, CIOT_VERSION_PATCH));
    cr_assert_not(ciot_version_at_least(CIOT_VERSION_MAJOR, CIOT_VERSION_MINOR,
                                        CIOT_VERSION_PATCH + 1));
    cr_assert_not(ciot_version_at_least(CIOT_VERSION_MAJOR + 1, 0, 0));
    /* Components that do not fit the hex layout are never "at least". */
    cr_assert_not(ciot_version_at_least(0, 256, 0));
}
