/* Allocator hook and log callback. Each Criterion test runs in its own
 * process, so the global settings of one test do not leak into another. */
#include "internal.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct counter {
    int mallocs, reallocs, frees;
};

static void *count_malloc(size_t n, void *ctx)
{
    ((struct counter *)ctx)->mallocs++;
    return malloc(n);
}

static void *count_realloc(void *p, size_t n, void *ctx)
{
    ((struct counter *)ctx)->reallocs++;
    return realloc(p, n);
}

static void count_free(void *p, void *ctx)
{
    if (p)
        ((struct counter *)ctx)->frees++;
    free(p);
}

Test(alloc, custom_allocator_is_used)
{
    struct counter c = {0};
    ciot_allocator a = {count_malloc, count_realloc, count_free, &c};
    cr_assert_eq(ciot_set_allocator(&a), 0);
    char *s = ciot__strndup("abc", 3);
    cr_assert_str_eq(s, "abc");
    s = ciot__realloc(s, 10);
    cr_assert_not_null(s);
    ciot_free(s);
    ciot_free(NULL);
    cr_assert_eq(c.mallocs, 1);
    cr_assert_eq(c.reallocs, 1);
    cr_assert_eq(c.frees, 1);
}

Test(alloc, incomplete_allocator_is_refused)
{
    struct counter c = {0};
    ciot_allocator a = {count_malloc, NULL, count_free, &c};
    cr_assert_eq(ciot_set_allocator(&a), CIOT_EINVAL);
}

Test(alloc, cannot_change_after_first_allocation)
{
    void *p = ciot__malloc(8);
    cr_assert_not_null(p);
    struct counter c = {0};
    ciot_allocator a = {count_malloc, count_realloc, count_free, &c};
    cr_assert_eq(ciot_set_allocator(&a), CIOT_EBUSY);
    cr_assert_eq(ciot_set_allocator(NULL), CIOT_EBUSY);
    ciot_free(p);
    cr_assert_eq(c.frees, 0, "memory must go back to the allocator that made it");
}

Test(alloc, calloc_overflow_is_refused)
{
    cr_assert_null(ciot__calloc(SIZE_MAX / 2, 4));
    unsigned char *p = ciot__calloc(4, 4);
    for (int i = 0; i < 16; i++)
        cr_assert_eq(p[i], 0);
    ciot_free(p);
}

Test(alloc, wipe_clears)
{
    char key[16];
    memset(key, 'k', sizeof key);
    ciot__wipe(key, sizeof key);
    for (size_t i = 0; i < sizeof key; i++)
        cr_assert_eq(key[i], 0);
}

struct seen {
    int calls;
    int level;
    char msg[600];
};

static void on_log(int level, const char *msg, void *ud)
{
    struct seen *s = ud;
    s->calls++;
    s->level = level;
    snprintf(s->msg, sizeof s->msg, "%s", msg);
}

Test(log, silent_by_default)
{
    cr_assert_not(ciot__log_enabled(CIOT_LOG_ERROR));
}

Test(log, threshold_filters_levels)
{
    struct seen s = {0};
    cr_assert_eq(ciot_set_log_callback(on_log, CIOT_LOG_WARN, &s), 0);
    ciot__log(CIOT_LOG_INFO, "not shown %d", 1);
    cr_assert_eq(s.calls, 0);
    ciot__log(CIOT_LOG_ERROR, "shown %d", 2);
    cr_assert_eq(s.calls, 1);
    cr_assert_eq(s.level, CIOT_LOG_ERROR);
    cr_assert_str_eq(s.msg, "shown 2");
    cr_assert_eq(ciot_set_log_callback(NULL, CIOT_LOG_DEBUG, NULL), 0);
    ciot__log(CIOT_LOG_ERROR, "off");
    cr_assert_eq(s.calls, 1);
}

Test(log, bad_level_is_refused)
{
    cr_assert_eq(ciot_set_log_callback(on_log, 7, NULL), CIOT_EINVAL);
    cr_assert_eq(ciot_set_log_callback(on_log, -1, NULL), CIOT_EINVAL);
}

Test(log, long_message_is_cut_and_marked)
{
    struct seen s = {0};
    cr_assert_eq(ciot_set_log_callback(on_log, CIOT_LOG_DEBUG, &s), 0);
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ciot__log(CIOT_LOG_DEBUG, "%s", big);
    size_t n = strlen(s.msg);
    cr_assert_eq(n, 511);
    cr_assert_str_eq(s.msg + n - 3, "...");
}

Test(log, level_names)
{
    cr_assert_str_eq(ciot_log_level_name(CIOT_LOG_ERROR), "error");
    cr_assert_str_eq(ciot_log_level_name(CIOT_LOG_DEBUG), "debug");
    cr_assert_str_eq(ciot_log_level_name(99), "unknown");
}
