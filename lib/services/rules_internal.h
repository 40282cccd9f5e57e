/*
 * Between the rule set (lib/services/rules.c) and its attachment to a
 * client (lib/services/rules_client.c). Internal.
 */
#ifndef CIOT_SERVICES_RULES_INTERNAL_H
#define CIOT_SERVICES_RULES_INTERNAL_H

#include <cloudiot/rules.h>

#include <stdbool.h>
#include <stddef.h>

/* What the attachment needs to hear from the set. */
typedef struct ciot__rules_hooks {
    /* After every change of the set's FROM filters: a rule added, removed,
     * enabled or disabled. */
    void (*filters_changed)(ciot_rules *r, void *ud);
    /* ciot_rules_free() has begun: detach (nothing is released yet). */
    void (*freeing)(ciot_rules *r, void *ud);
    void *ud;
} ciot__rules_hooks;

/* Installs @p h (copied), or with NULL removes the hooks. */
void ciot__rules_set_hooks(ciot_rules *r, const ciot__rules_hooks *h);
/* The hooks' ud, or NULL when none are installed (not attached). */
void *ciot__rules_hooks_ud(const ciot_rules *r);

/* Calls @p each once for every distinct FROM filter of an enabled rule,
 * in no particular order; stops and returns the first non-zero result. */
int ciot__rules_each_filter(const ciot_rules *r,
                            int (*each)(void *ud, const char *filter, size_t len), void *ud);

/* true while one of the set's callbacks runs on the calling thread. */
bool ciot__rules_in_callback(const ciot_rules *r);

#endif
