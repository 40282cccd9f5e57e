/* What cloudiot-emulator's sub-command files share (launcher_util.c): the
 * AWS CLI's error printers and exit codes, JSON output, option parsing and
 * opening the registry. */
#ifndef CIOT_EMULATOR_LAUNCHER_UTIL_H
#define CIOT_EMULATOR_LAUNCHER_UTIL_H

#include "registry.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define CIOT__LX_EXIT_USAGE 252   /* aws-cli: bad syntax, unknown or bad parameter */
#define CIOT__LX_EXIT_SERVICE 254 /* aws-cli: the service returned an error */
#define CIOT__LX_EXIT_OTHER 255   /* aws-cli: anything else */
#define CIOT__LX_PROG "cloudiot-emulator"

#define CIOT__LX_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* "cloudiot-emulator CMD: message\n(try 'cloudiot-emulator help')": EXIT_USAGE. */
int ciot__lx_usage_error(const char *cmd, const char *fmt, ...) CIOT__LX_PRINTF(2, 3);
/* An error answered by the service, printed as aws-cli prints it: EXIT_SERVICE. */
int ciot__lx_service_error(const char *op, const char *code, const char *fmt, ...)
    CIOT__LX_PRINTF(3, 4);
/* "cloudiot-emulator: message": EXIT_OTHER. */
int ciot__lx_other_error(const char *fmt, ...) CIOT__LX_PRINTF(1, 2);

/* Prints j (taking its reference; NULL = out of memory) indented by indent
 * spaces, members in order, then a newline: 0 or EXIT_OTHER. */
int ciot__lx_print_json_indent(json_t *j, int indent);
/* The same with the AWS CLI's indent (4). */
int ciot__lx_print_json(json_t *j);
/* Unix seconds as "YYYY-MM-DDTHH:MM:SS+00:00" (the AWS CLI's dates). */
void ciot__lx_iso_time(json_int_t t, char out[32]);

/* ---- options: "--name value", "--name=value", flags, value lists ---------- */

enum { CIOT__LX_FLAG, CIOT__LX_VALUE, CIOT__LX_MULTI };

typedef struct ciot__lx_opt {
    const char *name; /* "--thing-name" */
    int kind;         /* CIOT__LX_FLAG, _VALUE or _MULTI */
    bool seen;
    const char *value;
    char **values; /* MULTI: the arguments up to the next --option */
    size_t nvalues;
} ciot__lx_opt;

#define CIOT__LX_OPT(name, kind) {(name), (kind), false, NULL, NULL, 0}
#define CIOT__LX_OPT_VALUE(name) CIOT__LX_OPT(name, CIOT__LX_VALUE)
#define CIOT__LX_OPT_FLAG(name) CIOT__LX_OPT(name, CIOT__LX_FLAG)
/* --data, --region, --account */
#define CIOT__LX_OPTS_COMMON                                                                 \
    CIOT__LX_OPT_VALUE("--data"), CIOT__LX_OPT_VALUE("--region"),                           \
        CIOT__LX_OPT_VALUE("--account")

/* Parses argv (after the sub-command) against o[0..n): 0 or EXIT_USAGE
 * (message printed). */
int ciot__lx_parse(const char *cmd, int argc, char **argv, ciot__lx_opt *o, size_t n);
/* The option of that name, or NULL. */
ciot__lx_opt *ciot__lx_find(ciot__lx_opt *o, size_t n, const char *name);
/* An option's value ("" for a flag) when it was given, else NULL. */
const char *ciot__lx_get(const ciot__lx_opt *o, size_t n, const char *name);

/* Opens the registry of --data (or $CLOUDIOT_EMULATOR_DATA) with --region
 * and --account, creating it with create: 0, EXIT_USAGE or EXIT_OTHER
 * (message printed). */
int ciot__lx_open_reg(const char *cmd, const ciot__lx_opt *o, size_t n, bool create,
                      ciot__registry *r);

#endif
