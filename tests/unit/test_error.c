#include <cloudiot/cloudiot.h>

#include <criterion/criterion.h>
#include <string.h>

struct entry {
    int code;
    const char *name;
};

static const struct entry table[] = {
#define E_(name, value, msg) {name, #name},
    CIOT_ERRNO_MAP(E_)
#undef E_
};

Test(error, every_code_has_its_own_name_and_message)
{
    size_t n = sizeof table / sizeof table[0];
    cr_assert_gt(n, 20);
    for (size_t i = 0; i < n; i++) {
        cr_assert_lt(table[i].code, 0, "%s must be negative", table[i].name);
        cr_assert_str_eq(ciot_err_name(table[i].code), table[i].name);
        const char *msg = ciot_strerror(table[i].code);
        cr_assert_not_null(msg);
        cr_assert_str_neq(msg, "unknown error", "%s has no message", table[i].name);
        for (size_t j = i + 1; j < n; j++) {
            cr_assert_neq(table[i].code, table[j].code, "%s and %s share a value",
                          table[i].name, table[j].name);
            cr_assert_str_neq(msg, ciot_strerror(table[j].code), "%s and %s share a message",
                              table[i].name, table[j].name);
        }
    }
}

Test(error, codes_are_contiguous_and_bounded_by_last)
{
    /* Codes are never reused or left with holes: -1 .. CIOT_ERR_LAST_+1. */
    size_t n = sizeof table / sizeof table[0];
    cr_assert_eq((int)n, -(CIOT_ERR_LAST_ + 1));
    for (int code = -1; code > CIOT_ERR_LAST_; code--)
        cr_assert_str_neq(ciot_err_name(code), "CIOT_EUNKNOWN", "hole at %d", code);
}

Test(error, fixed_values_never_change)
{
    /* The ABI promise: these numbers are part of every binding. */
    cr_assert_eq(CIOT_ERROR, -1);
    cr_assert_eq(CIOT_EINVAL, -2);
    cr_assert_eq(CIOT_ENOMEM, -3);
    cr_assert_eq(CIOT_ENOSPC, -4);
    cr_assert_eq(CIOT_ENOTBUILT, -5);
    cr_assert_eq(CIOT_EUNKNOWN_OPTION, -6);
    cr_assert_eq(CIOT_ECORRUPT, -26);
}

Test(error, success_has_a_name)
{
    cr_assert_str_eq(ciot_err_name(0), "CIOT_OK");
    cr_assert_str_eq(ciot_strerror(0), "success");
}

Test(error, any_int_gives_a_static_string)
{
    const int odd[] = {1, 2, 100, -27, -1000, 2147483647, -2147483647 - 1};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        cr_assert_str_eq(ciot_strerror(odd[i]), "unknown error");
        cr_assert_str_eq(ciot_err_name(odd[i]), "CIOT_EUNKNOWN");
    }
    /* Static: the same pointer every time, nothing to free. */
    cr_assert_eq(ciot_strerror(CIOT_EINVAL), ciot_strerror(CIOT_EINVAL));
}
