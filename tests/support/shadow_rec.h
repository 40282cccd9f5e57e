/*
 * Recorders of ciot_shadow results for the integration tests: the last
 * result of a shadow request (sres, on_sres, wait_result) and the ends of
 * many requests counted per id and outcome (ends, on_end, ends_at).
 * Header-only, beside harness.h.
 */
#ifndef CIOT_TEST_SHADOW_REC_H
#define CIOT_TEST_SHADOW_REC_H

#include "harness.h"

#include <cloudiot/shadow.h>

typedef struct sres {
    pthread_mutex_t lock;
    int n;
    int outcome, error, code, request;
    uint64_t version, id;
    char msg[200];
    char doc[4096];
    char token[80];
    ciot_shadow *shadow;
    int per_id[64]; /* how often each request id ended */
} sres;

static inline void sres_init(sres *r)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->lock, NULL);
}

static inline int on_sres(ciot_shadow *s, const ciot_shadow_result *res, void *ud)
{
    sres *r = ud;
    size_t dl = 0, tl = 0;
    const char *d = ciot_shadow_result_document(res, &dl);
    const char *t = ciot_shadow_result_token(res, &tl);
    pthread_mutex_lock(&r->lock);
    r->n++;
    r->shadow = s;
    r->outcome = ciot_shadow_result_outcome(res);
    r->error = ciot_shadow_result_error(res);
    r->code = ciot_shadow_result_code(res);
    r->request = ciot_shadow_result_request(res);
    r->version = ciot_shadow_result_version(res);
    r->id = ciot_shadow_result_id(res);
    if (r->id < 64)
        r->per_id[r->id]++;
    snprintf(r->msg, sizeof r->msg, "%s", ciot_shadow_result_message(res));
    snprintf(r->doc, sizeof r->doc, "%.*s", (int)dl, d ? d : "");
    snprintf(r->token, sizeof r->token, "%.*s", (int)tl, t ? t : "");
    pthread_mutex_unlock(&r->lock);
    return 0;
}

struct sres_want {
    sres *r;
    int n;
};

static inline bool sres_has(void *arg)
{
    struct sres_want *w = arg;
    pthread_mutex_lock(&w->r->lock);
    bool ok = w->r->n >= w->n;
    pthread_mutex_unlock(&w->r->lock);
    return ok;
}

static inline void wait_result(ciot_client *c, sres *r, int n, int ms)
{
    struct sres_want w = {r, n};
    cr_assert(h_run_until(c, sres_has, &w, ms), "%d results expected, %d came", n, r->n);
}

typedef struct ends {
    int count[64];
    int accepted, timed_out, other;
} ends;

static inline int on_end(ciot_shadow *s, const ciot_shadow_result *r, void *ud)
{
    (void)s;
    ends *e = ud;
    uint64_t id = ciot_shadow_result_id(r);
    if (id < 64)
        e->count[id]++;
    if (ciot_shadow_result_outcome(r) == CIOT_SHADOW_ACCEPTED)
        e->accepted++;
    else if (ciot_shadow_result_error(r) == CIOT_ETIMEDOUT)
        e->timed_out++;
    else
        e->other++;
    return 0;
}

struct ends_want {
    ends *e;
    int n;
};

static inline bool ends_at(void *arg)
{
    struct ends_want *w = arg;
    return w->e->accepted + w->e->timed_out + w->e->other >= w->n;
}

#endif
