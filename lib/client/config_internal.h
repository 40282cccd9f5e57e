/* The layout of ciot_config, shared by config.c and the client. */
#ifndef CIOT_CLIENT_CONFIG_INTERNAL_H
#define CIOT_CLIENT_CONFIG_INTERNAL_H

#include "internal.h"

#include <cloudiot/config.h>

struct ciot_config {
    int64_t ints[CIOT_OPT_MAX_];
    char *strs[CIOT_OPT_MAX_];   /* strings and bytes, NUL-terminated copies */
    size_t lens[CIOT_OPT_MAX_];  /* their lengths */
    bool set[CIOT_OPT_MAX_];     /* set explicitly (e.g. PORT, to pick 1883 or 8883) */
    char errmsg[256];
};

/* Formats cfg->errmsg; returns rc. */
int ciot__config_fail(const ciot_config *cfg, int rc, const char *fmt, ...) CIOT__PRINTF(3, 4);

/* The port to use: the one set, or 1883 / 8883 by TLS. */
int ciot__config_port(const ciot_config *cfg);

/* A copy of every setting (the client adjusts its own copy for its backend). */
int ciot__config_clone(ciot_config **out, const ciot_config *src);

/* Sets a string without the setters' checks (the caller has checked it). */
int ciot__config_set_internal(ciot_config *cfg, int opt, const char *value, size_t len);

/* 1..128 bytes of [a-zA-Z0-9:_-]: an AWS thing name. */
bool ciot__thing_name_ok(const char *s, size_t len);

#endif
