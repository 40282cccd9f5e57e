/* What cloudiot-emulator's sub-command files share (launcher_util.h). */
#define _XOPEN_SOURCE 700

#include "launcher_util.h"

#include <cloudiot/error.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int ciot__lx_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s %s: ", CIOT__LX_PROG, cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(try '%s help')\n", CIOT__LX_PROG);
    va_end(ap);
    return CIOT__LX_EXIT_USAGE;
}

int ciot__lx_service_error(const char *op, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "\nAn error occurred (%s) when calling the %s operation: ", code, op);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CIOT__LX_EXIT_SERVICE;
}

int ciot__lx_other_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", CIOT__LX_PROG);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CIOT__LX_EXIT_OTHER;
}

int ciot__lx_print_json_indent(json_t *j, int indent)
{
    if (!j)
        return ciot__lx_other_error("out of memory");
    int rc = json_dumpf(j, stdout, JSON_INDENT(indent) | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (rc != 0 || fputc('\n', stdout) == EOF || fflush(stdout) != 0)
        return ciot__lx_other_error("cannot write the output");
    return 0;
}

int ciot__lx_print_json(json_t *j)
{
    return ciot__lx_print_json_indent(j, 4);
}

void ciot__lx_iso_time(json_int_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || strftime(out, 32, "%Y-%m-%dT%H:%M:%S+00:00", &tm) == 0)
        snprintf(out, 32, "1970-01-01T00:00:00+00:00");
}

int ciot__lx_parse(const char *cmd, int argc, char **argv, ciot__lx_opt *o, size_t n)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0)
            return ciot__lx_usage_error(cmd, "unexpected argument '%s'", a);
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        ciot__lx_opt *p = NULL;
        for (size_t k = 0; k < n; k++)
            if (strlen(o[k].name) == len && strncmp(o[k].name, a, len) == 0)
                p = &o[k];
        if (!p)
            return ciot__lx_usage_error(cmd, "unknown option '%.*s'", (int)len, a);
        if (p->seen)
            return ciot__lx_usage_error(cmd, "option %s given twice", p->name);
        p->seen = true;
        if (p->kind == CIOT__LX_FLAG) {
            if (eq)
                return ciot__lx_usage_error(cmd, "option %s takes no value", p->name);
        } else if (p->kind == CIOT__LX_VALUE) {
            if (eq)
                p->value = eq + 1;
            else if (i + 1 < argc)
                p->value = argv[++i];
            else
                return ciot__lx_usage_error(cmd, "option %s needs a value", p->name);
        } else {
            if (eq)
                return ciot__lx_usage_error(cmd, "option %s takes values as separate arguments",
                                            p->name);
            p->values = argv + i + 1;
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
                p->nvalues++;
                i++;
            }
            if (p->nvalues == 0)
                return ciot__lx_usage_error(cmd, "option %s needs at least one value", p->name);
        }
    }
    return 0;
}

ciot__lx_opt *ciot__lx_find(ciot__lx_opt *o, size_t n, const char *name)
{
    for (size_t k = 0; k < n; k++)
        if (strcmp(o[k].name, name) == 0)
            return &o[k];
    return NULL;
}

const char *ciot__lx_get(const ciot__lx_opt *o, size_t n, const char *name)
{
    for (size_t k = 0; k < n; k++)
        if (strcmp(o[k].name, name) == 0)
            return o[k].seen ? (o[k].value ? o[k].value : "") : NULL;
    return NULL;
}

int ciot__lx_open_reg(const char *cmd, const ciot__lx_opt *o, size_t n, bool create,
                      ciot__registry *r)
{
    const char *data = ciot__lx_get(o, n, "--data");
    if (!data || !*data)
        data = getenv("CLOUDIOT_EMULATOR_DATA");
    if (!data || !*data)
        return ciot__lx_usage_error(cmd, "the following argument is required: --data "
                                         "(or the environment variable CLOUDIOT_EMULATOR_DATA)");
    char err[512] = "";
    errno = 0;
    int rc = ciot__registry_open(r, data, ciot__lx_get(o, n, "--region"),
                                 ciot__lx_get(o, n, "--account"), create, err, sizeof err);
    if (rc == CIOT_EINVAL)
        return ciot__lx_usage_error(cmd, "%s", err);
    if (rc)
        return ciot__lx_other_error("%s", err);
    return 0;
}
