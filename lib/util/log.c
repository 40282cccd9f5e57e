#include "internal.h"

#include <stdio.h>
#include <string.h>

static ciot_log_fn log_fn;
static void *log_user_data;
static int log_max = CIOT_LOG_NONE;

int ciot_set_log_callback(ciot_log_fn fn, int max_level, void *user_data)
{
    if (max_level < CIOT_LOG_NONE || max_level > CIOT_LOG_DEBUG)
        return CIOT_EINVAL;
    log_fn = fn;
    log_user_data = user_data;
    log_max = fn ? max_level : CIOT_LOG_NONE;
    return 0;
}

const char *ciot_log_level_name(int level)
{
    switch (level) {
    case CIOT_LOG_NONE:
        return "none";
    case CIOT_LOG_ERROR:
        return "error";
    case CIOT_LOG_WARN:
        return "warn";
    case CIOT_LOG_INFO:
        return "info";
    case CIOT_LOG_DEBUG:
        return "debug";
    default:
        return "unknown";
    }
}

bool ciot__log_enabled(int level)
{
    return level > CIOT_LOG_NONE && level <= log_max;
}

void ciot__log(int level, const char *fmt, ...)
{
    if (!ciot__log_enabled(level))
        return;
    /* Long messages are cut and marked, never overrun. */
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof buf)
        memcpy(buf + sizeof buf - 4, "...", 4);
    log_fn(level, buf, log_user_data);
}
