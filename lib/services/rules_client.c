/*
 * A rule set attached to a client (ciot_rules_attach()): the client
 * subscribes to the FROM filters of the enabled rules, each message that
 * arrives through them runs ciot_rules_process() once, and republish actions
 * publish through the client.
 *
 * Once per message: a broker may deliver a message that matches several
 * subscriptions of a session once, or once per subscription (mosquitto 2.0
 * does the latter with MQTT 5), and the copies cannot be told apart from new
 * messages. So the attachment never holds two subscriptions that overlap: it
 * subscribes to ciot__filter_cover() of the rules' filters ('sensors/#'
 * alone for 'sensors/#' and 'sensors/+/temperature'; two filters that only
 * partly overlap are replaced by one that covers both, and the messages it
 * brings that no rule's filter matches fire nothing). Each message then
 * reaches exactly one of its subscriptions and is processed once. On an AWS
 * client the cover follows AWS's wildcard rule ('a/#' does not match 'a'),
 * and the client's own dispatch (MQTT's rule) is de-duplicated (att.dedupe).
 *
 * Threads: as the set's (rules.h): everything runs on the client's driving
 * thread (or while nothing drives it), so the attachment needs no lock.
 * Changes of the set's filters are applied by the client's loop (a service
 * timer due at once), so that adding many rules re-computes the
 * subscriptions once.
 *
 * Lifetimes: ciot_rules_detach() (or ciot_rules_free(), through the freeing
 * hook) unsubscribes at once; when that happens inside one of the client's
 * callbacks (including the set's callbacks, which run in this file's message
 * handler) the client may still be walking its list of services or be in
 * this handler, so the attachment lets go of the set there and is freed by
 * its own timer on the client's next loop (or by on_close when the client is
 * freed first). ciot_client_free() while attached leaves the set detached and
 * usable (on_close).
 */
#include "client/service.h"
#include "core/filter_cover.h"
#include "services/rules_internal.h"

#include "internal.h"

#include <cloudiot/rules.h>
#include <cloudiot/topic.h>

#include <stdint.h>
#include <string.h>

/* When a subscription could not be made for lack of memory, try again after: */
#define RETRY_MS 1000u

typedef struct att {
    ciot__service svc;
    ciot_client *c;
    ciot_rules *r; /* NULL once detached: then only waiting to be freed */
    int qos;
    bool aws; /* AWS IoT Core's wildcard rule ('a/#' does not match 'a') */
    ciot__filter *subs; /* subscribed through the client, sorted (ciot__filter_cmp) */
    size_t nsubs;
    /* On AWS, 'a' and 'a/#' are two subscriptions (they do not overlap
     * there, so the broker sends a message on 'a' once), but the client
     * hands a message to every handler whose filter matches by MQTT's rule:
     * twice here. When the subscriptions hold such a pair, each message's
     * first call is processed and the other calls of its dispatch skipped. */
    bool dedupe;
    int skip; /* calls of the current dispatch still to skip */
} att;

/* ---- what the client calls ---- */

static int on_message(ciot_client *c, const ciot_event *msg, void *ud)
{
    (void)c;
    att *a = ud;
    if (!a->r)
        return 0;
    size_t tl = 0, pl = 0;
    const char *topic = ciot_event_topic(msg, &tl);
    const void *payload = ciot_event_payload(msg, &pl);
    if (a->dedupe) {
        if (a->skip > 0) {
            a->skip--;
            return 0;
        }
        /* the calls this dispatch makes: one per subscription that matches
         * by the client's (MQTT's) rule */
        int calls = 0;
        for (size_t i = 0; i < a->nsubs; i++) {
            bool m = false;
            if (ciot_topic_match(a->subs[i].s, a->subs[i].len, topic, tl, &m) == 0 && m)
                calls++;
        }
        a->skip = calls > 0 ? calls - 1 : 0;
    }
    int rc = ciot_rules_process(NULL, a->r, topic, tl, pl ? payload : NULL, pl, NULL, 0);
    /* a non-zero return makes ciot_client_process() report CIOT_EUSER */
    if (rc == CIOT_EUSER)
        return 1;
    if (rc != 0)
        ciot__log(CIOT_LOG_WARN, "rules: a message on \"%.*s\" was not processed: %s",
                  (int)(tl > 128 ? 128 : tl), topic, ciot_err_name(rc));
    return 0;
}

static int publish(void *ud, const char *topic, size_t topic_len, const void *payload,
                   size_t payload_len, int qos)
{
    return ciot_client_publish(NULL, ud, topic, topic_len, payload, payload_len, qos, 0);
}

/* ---- the subscriptions ---- */

struct collect {
    ciot__filter *v;
    size_t n, cap;
};

static int collect_filter(void *ud, const char *filter, size_t len)
{
    struct collect *k = ud;
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 16;
        ciot__filter *v = ciot__realloc(k->v, cap * sizeof *v);
        if (!v)
            return CIOT_ENOMEM;
        k->v = v;
        k->cap = cap;
    }
    char *s = ciot__strndup(filter, len);
    if (!s)
        return CIOT_ENOMEM;
    k->v[k->n++] = (ciot__filter){s, len};
    return 0;
}

static bool has(const ciot__filter *v, size_t n, const ciot__filter *f)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = ciot__filter_cmp(&v[mid], f);
        if (c == 0)
            return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

static void unsubscribe_all(att *a)
{
    for (size_t i = 0; i < a->nsubs; i++)
        (void)!ciot_client_unsubscribe(a->c, a->subs[i].s, a->subs[i].len, on_message, a);
    ciot__filters_free(a->subs, a->nsubs);
    a->subs = NULL;
    a->nsubs = 0;
}

/*
 * Makes the client's subscriptions those of the set's filters now: the new
 * ones first, then the old ones go (a message in between may come twice
 * rather than not at all). @p strict (attaching): the first failure undoes
 * what this call subscribed and is returned. Otherwise failures are logged
 * and the filter is left out; a lack of memory is retried later.
 */
static int sync_subs(att *a, bool strict)
{
    struct collect k = {0};
    ciot__filter *want = NULL;
    size_t nwant = 0;
    int rc = ciot__rules_each_filter(a->r, collect_filter, &k);
    if (rc == 0)
        rc = ciot__filter_cover(&want, &nwant, k.v, k.n, a->aws);
    ciot__filters_free(k.v, k.n);
    if (rc != 0) {
        ciot__log(CIOT_LOG_WARN, "rules: the subscriptions could not be updated: %s",
                  ciot_err_name(rc));
        if (!strict)
            ciot__client_set_timer(a->c, &a->svc, ciot__now_ms() + RETRY_MS);
        return rc;
    }
    size_t kept = 0; /* want[0..kept): subscribed now; the others are freed */
    bool retry = false;
    for (size_t i = 0; i < nwant; i++) {
        if (!has(a->subs, a->nsubs, &want[i])) {
            rc = ciot_client_subscribe(a->c, want[i].s, want[i].len, a->qos, on_message, a);
            if (rc != 0) {
                if (strict) {
                    for (size_t j = 0; j < kept; j++)
                        if (!has(a->subs, a->nsubs, &want[j]))
                            (void)!ciot_client_unsubscribe(a->c, want[j].s, want[j].len,
                                                           on_message, a);
                    ciot__filters_free(want, nwant);
                    return rc;
                }
                ciot__log(CIOT_LOG_WARN, "rules: subscribing to \"%s\": %s: %s", want[i].s,
                          ciot_err_name(rc), ciot_client_errmsg(a->c));
                retry |= rc == CIOT_ENOMEM;
                ciot__free(want[i].s);
                continue;
            }
        }
        want[kept++] = want[i];
    }
    for (size_t i = 0; i < a->nsubs; i++)
        if (!has(want, kept, &a->subs[i]))
            (void)!ciot_client_unsubscribe(a->c, a->subs[i].s, a->subs[i].len, on_message, a);
    ciot__filters_free(a->subs, a->nsubs);
    a->subs = want;
    a->nsubs = kept;
    if (kept == 0) {
        ciot__free(want);
        a->subs = NULL;
    }
    a->dedupe = false;
    a->skip = 0;
    for (size_t i = 0; a->aws && i < a->nsubs && !a->dedupe; i++)
        for (size_t j = i + 1; j < a->nsubs && !a->dedupe; j++)
            a->dedupe = ciot__filter_overlaps(a->subs[i].s, a->subs[i].len, a->subs[j].s,
                                              a->subs[j].len, false);
    if (retry)
        ciot__client_set_timer(a->c, &a->svc, ciot__now_ms() + RETRY_MS);
    return 0;
}

/* ---- hooks ---- */

static void filters_changed(ciot_rules *r, void *ud)
{
    (void)r;
    att *a = ud;
    ciot__client_set_timer(a->c, &a->svc, 0); /* the client's next loop */
}

/* Lets go of the set and unsubscribes; frees @p a unless the client may
 * still hold it on this thread (then its timer does). */
static void let_go(att *a)
{
    ciot__rules_set_hooks(a->r, NULL);
    ciot_rules_set_publisher(a->r, NULL, NULL);
    a->r = NULL;
    unsubscribe_all(a);
    if (ciot__client_in_callback(a->c)) {
        ciot__client_set_timer(a->c, &a->svc, 0);
        return;
    }
    ciot__client_detach(a->c, &a->svc);
    ciot__free(a);
}

static void freeing(ciot_rules *r, void *ud)
{
    (void)r;
    let_go(ud);
}

static void svc_timer(ciot_client *c, uint64_t now_ms, void *ud)
{
    (void)now_ms;
    att *a = ud;
    if (!a->r) { /* detached from inside a callback */
        ciot__client_detach(c, &a->svc);
        ciot__free(a);
        return;
    }
    (void)sync_subs(a, false);
}

/* The client is being freed: its subscriptions go with it. */
static void svc_close(ciot_client *c, void *ud)
{
    (void)c;
    att *a = ud;
    if (a->r) {
        ciot__rules_set_hooks(a->r, NULL);
        ciot_rules_set_publisher(a->r, NULL, NULL);
    }
    ciot__filters_free(a->subs, a->nsubs);
    ciot__free(a);
}

/* ---- public ---- */

int ciot_rules_attach(ciot_rules *r, ciot_client *c, int qos)
{
    if (!r || !c || (qos != 0 && qos != 1))
        return CIOT_EINVAL;
    if (ciot__rules_hooks_ud(r))
        return CIOT_EBUSY;
    att *a = ciot__calloc(1, sizeof *a);
    if (!a)
        return CIOT_ENOMEM;
    a->c = c;
    a->r = r;
    a->qos = qos;
    a->aws = ciot__client_backend(c)->id == CIOT_BACKEND_AWS;
    a->svc.on_timer = svc_timer;
    a->svc.on_close = svc_close;
    a->svc.ud = a;
    int rc = ciot__client_attach(c, &a->svc);
    if (rc != 0) {
        ciot__free(a);
        return rc;
    }
    if ((rc = sync_subs(a, true)) != 0) {
        ciot__client_detach(c, &a->svc);
        ciot__free(a);
        return rc;
    }
    const ciot__rules_hooks h = {filters_changed, freeing, a};
    ciot__rules_set_hooks(r, &h);
    ciot_rules_set_publisher(r, publish, c);
    return 0;
}

int ciot_rules_detach(ciot_rules *r)
{
    if (!r)
        return CIOT_EINVAL;
    att *a = ciot__rules_hooks_ud(r);
    if (!a)
        return CIOT_ESTATE;
    let_go(a);
    return 0;
}
