/*
 * ciot_alerts: threshold alerts and silence detection (<cloudiot/alerts.h>).
 *
 * Devices live in a chained hash table (FNV-1a of the id) and, once seen,
 * in a list ordered by last sighting (each sighting moves the device to the
 * tail; the set's clock never goes back), so the device silent longest is
 * the head: ticking and the next deadline cost O(1) per device reported.
 * Metrics are a small array (at most 64), so a device's raised alerts are
 * two 64-bit masks and its own thresholds a short array: after a device's
 * first sighting nothing is allocated.
 */
#include <cloudiot/alerts.h>
#include <cloudiot/json.h>

#include "core/rules_sql.h"
#include "core/utf8.h"
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MAX_ID 128
#define MAX_METRIC 64
#define MAX_SEV 32
#define MAX_NUMSTR CIOT__RULES_MAX_NUMSTR

CIOT__STATIC_ASSERT(CIOT_ALERTS_MAX_METRICS == 64, "one bit per metric in a uint64_t");

struct thr {
    double min, max, hyst;
    size_t sev_len;
    char sev[MAX_SEV + 1];
};

struct metric {
    struct thr dflt;
    bool has_dflt;
    size_t len;
    char name[MAX_METRIC + 1];
    char high[MAX_METRIC + 6]; /* "HIGH_" + NAME */
    char low[MAX_METRIC + 5];  /* "LOW_" + NAME */
};

struct ovr {
    unsigned metric;
    struct thr t;
};

struct dev {
    struct dev *hnext;       /* hash chain */
    struct dev *prev, *next; /* the list of online devices, oldest sighting first */
    uint64_t hash;
    uint64_t high, low; /* edge mode: raised HIGH_ / LOW_ alerts, one bit per metric */
    uint64_t ovr_mask;  /* metrics with a threshold of the device's own */
    struct ovr *ovr;
    unsigned novr, ovr_cap;
    int64_t last_seen;
    bool in_list; /* seen and not reported offline */
    bool offline; /* reported offline, not seen since */
    size_t len;
    char id[]; /* NUL-terminated */
};

struct ciot_alerts {
    ciot_alerts_fn fn;
    void *user_data;
    struct metric *metrics;
    unsigned nmetrics;
    uint64_t dflt_mask; /* metrics with a default threshold */
    struct dev **buckets;
    size_t nbuckets; /* 0 or a power of two */
    size_t ndev, max_dev;
    struct dev *head, *tail;
    int64_t timeout;
    int64_t clock;
    bool clock_set;
    bool in_cb;
    uint64_t skipped;
    char err[200];
};

struct ciot_alert {
    int kind;
    const struct dev *d;
    const char *metric;
    size_t metric_len;
    const char *type;
    size_t type_len;
    double value, threshold;
    const char *sev;
    size_t sev_len;
    int64_t ts, last_seen, silent;
};

static int fail(ciot_alerts *a, int rc, const char *msg)
{
    snprintf(a->err, sizeof a->err, "%s", msg);
    return rc;
}

static int64_t sat_add(int64_t x, int64_t y) /* y >= 0 */
{
    return x > INT64_MAX - y ? INT64_MAX : x + y;
}

static int64_t sat_sub(int64_t x, int64_t y) /* x >= y */
{
    if (y < 0 && x > INT64_MAX + y)
        return INT64_MAX;
    return x - y;
}

/* ---- validation ---- */

static bool ok_device(const char *id, size_t len)
{
    return id != NULL && len >= 1 && len <= MAX_ID && ciot__utf8_valid(id, len, false);
}

static bool ok_metric(const char *m, size_t len)
{
    if (m == NULL || len < 1 || len > MAX_METRIC)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)m[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* ---- devices ---- */

static uint64_t hash_id(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3u;
    }
    return h;
}

static struct dev *dev_find(const ciot_alerts *a, const char *id, size_t len, uint64_t h)
{
    if (a->nbuckets == 0)
        return NULL;
    for (struct dev *d = a->buckets[h & (a->nbuckets - 1)]; d != NULL; d = d->hnext)
        if (d->hash == h && d->len == len && memcmp(d->id, id, len) == 0)
            return d;
    return NULL;
}

static int grow(ciot_alerts *a)
{
    size_t n = a->nbuckets ? a->nbuckets * 2 : 16;
    struct dev **b = ciot__calloc(n, sizeof *b);
    if (b == NULL)
        return CIOT_ENOMEM;
    for (size_t i = 0; i < a->nbuckets; i++) {
        struct dev *d = a->buckets[i];
        while (d != NULL) {
            struct dev *next = d->hnext;
            size_t k = d->hash & (n - 1);
            d->hnext = b[k];
            b[k] = d;
            d = next;
        }
    }
    ciot__free(a->buckets);
    a->buckets = b;
    a->nbuckets = n;
    return 0;
}

/* Finds a device, or adds it (validating its id first). */
static int dev_get(struct dev **out, ciot_alerts *a, const char *id, size_t len)
{
    if (id == NULL || len == 0 || len > MAX_ID)
        return fail(a, CIOT_EINVAL, "device id: 1..128 bytes of UTF-8 expected");
    uint64_t h = hash_id(id, len);
    struct dev *d = dev_find(a, id, len, h);
    if (d != NULL) {
        *out = d;
        return 0;
    }
    if (!ciot__utf8_valid(id, len, false))
        return fail(a, CIOT_EINVAL, "device id: not UTF-8 (or a NUL byte)");
    if (a->ndev >= a->max_dev) {
        snprintf(a->err, sizeof a->err, "device limit reached (%zu devices)", a->max_dev);
        return CIOT_EQUEUE_FULL;
    }
    if (a->ndev + 1 > a->nbuckets && grow(a) != 0)
        return fail(a, CIOT_ENOMEM, "out of memory");
    d = ciot__calloc(1, sizeof *d + len + 1);
    if (d == NULL)
        return fail(a, CIOT_ENOMEM, "out of memory");
    d->hash = h;
    d->len = len;
    memcpy(d->id, id, len);
    size_t k = h & (a->nbuckets - 1);
    d->hnext = a->buckets[k];
    a->buckets[k] = d;
    a->ndev++;
    *out = d;
    return 0;
}

static void list_unlink(ciot_alerts *a, struct dev *d)
{
    if (!d->in_list)
        return;
    if (d->prev)
        d->prev->next = d->next;
    else
        a->head = d->next;
    if (d->next)
        d->next->prev = d->prev;
    else
        a->tail = d->prev;
    d->prev = d->next = NULL;
    d->in_list = false;
}

static void list_append(ciot_alerts *a, struct dev *d)
{
    d->prev = a->tail;
    d->next = NULL;
    if (a->tail)
        a->tail->next = d;
    else
        a->head = d;
    a->tail = d;
    d->in_list = true;
}

static void dev_free(struct dev *d)
{
    ciot__free(d->ovr);
    ciot__free(d);
}

static void dev_remove(ciot_alerts *a, struct dev *d)
{
    struct dev **pp = &a->buckets[d->hash & (a->nbuckets - 1)];
    while (*pp != d)
        pp = &(*pp)->hnext;
    *pp = d->hnext;
    list_unlink(a, d);
    dev_free(d);
    a->ndev--;
}

/* ---- metrics and thresholds ---- */

static int metric_find(const ciot_alerts *a, const char *name, size_t len)
{
    for (unsigned i = 0; i < a->nmetrics; i++)
        if (a->metrics[i].len == len && memcmp(a->metrics[i].name, name, len) == 0)
            return (int)i;
    return -1;
}

static int metric_add(ciot_alerts *a, const char *name, size_t len)
{
    if (a->nmetrics >= CIOT_ALERTS_MAX_METRICS)
        return fail(a, CIOT_EQUEUE_FULL, "metric limit reached (64 names)");
    struct metric *m = ciot__realloc(a->metrics, (a->nmetrics + 1) * sizeof *m);
    if (m == NULL)
        return fail(a, CIOT_ENOMEM, "out of memory");
    a->metrics = m;
    m += a->nmetrics;
    memset(m, 0, sizeof *m);
    m->len = len;
    memcpy(m->name, name, len);
    memcpy(m->high, "HIGH_", 5);
    memcpy(m->low, "LOW_", 4);
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        m->high[5 + i] = c;
        m->low[4 + i] = c;
    }
    return (int)a->nmetrics++;
}

static const struct thr *thr_for(const ciot_alerts *a, const struct dev *d, unsigned mi)
{
    if (d->ovr_mask >> mi & 1u) {
        for (unsigned i = 0; i < d->novr; i++)
            if (d->ovr[i].metric == mi)
                return &d->ovr[i].t;
    }
    return a->metrics[mi].has_dflt ? &a->metrics[mi].dflt : NULL;
}

/* A default changed: devices that follow it start afresh for that metric. */
static void reset_followers(ciot_alerts *a, unsigned mi)
{
    uint64_t bit = (uint64_t)1 << mi;
    for (size_t i = 0; i < a->nbuckets; i++)
        for (struct dev *d = a->buckets[i]; d != NULL; d = d->hnext)
            if (!(d->ovr_mask & bit)) {
                d->high &= ~bit;
                d->low &= ~bit;
            }
}

static void reset_dev(struct dev *d, unsigned mi)
{
    uint64_t bit = (uint64_t)1 << mi;
    d->high &= ~bit;
    d->low &= ~bit;
}

static bool guard(ciot_alerts *a, int *rc)
{
    if (a == NULL) {
        *rc = CIOT_EINVAL;
        return false;
    }
    if (a->in_cb) {
        *rc = fail(a, CIOT_ERECURSIVE, "not allowed from inside the alert callback");
        return false;
    }
    return true;
}

/* ---- alerts ---- */

static int emit(ciot_alerts *a, const ciot_alert *al)
{
    a->in_cb = true;
    int r = a->fn(a, al, a->user_data);
    a->in_cb = false;
    if (r != 0)
        return fail(a, CIOT_EUSER, "the alert callback returned non-zero");
    return 0;
}

static int64_t advance(ciot_alerts *a, int64_t now)
{
    if (!a->clock_set || now > a->clock) {
        a->clock = now;
        a->clock_set = true;
    }
    return a->clock;
}

/* A sighting: to the tail of the list, ONLINE when it was reported offline. */
static int sight(ciot_alerts *a, struct dev *d, int64_t now)
{
    int64_t t = advance(a, now);
    bool was_off = d->offline;
    int64_t last = d->last_seen;
    list_unlink(a, d);
    d->last_seen = t;
    d->offline = false;
    list_append(a, d);
    if (!was_off)
        return 0;
    ciot_alert al = {CIOT_ALERT_ONLINE, d, "", 0, "DEVICE_ONLINE", 13, NAN, NAN, "", 0,
                     t, last, sat_sub(t, last)};
    return emit(a, &al);
}

static int raise_or_clear(ciot_alerts *a, int kind, const struct dev *d, const struct metric *m,
                          bool high, double v, double bound, const struct thr *t, int64_t now)
{
    ciot_alert al = {kind, d, m->name, m->len, high ? m->high : m->low,
                     m->len + (high ? 5 : 4), v, bound, t->sev, t->sev_len, now, 0, 0};
    return emit(a, &al);
}

static int judge(ciot_alerts *a, struct dev *d, unsigned mi, const struct thr *t, double v,
                 int64_t now)
{
    const struct metric *m = &a->metrics[mi];
    uint64_t bit = (uint64_t)1 << mi;
    int rc = 0;
    if (t->hyst < 0) {
        if (!isnan(t->max) && v > t->max)
            rc = raise_or_clear(a, CIOT_ALERT_RAISED, d, m, true, v, t->max, t, now);
        if (rc == 0 && !isnan(t->min) && v < t->min)
            rc = raise_or_clear(a, CIOT_ALERT_RAISED, d, m, false, v, t->min, t, now);
        return rc;
    }
    /* clears first, so that a jump from below min to above max reads in order */
    bool hi = !isnan(t->max), lo = !isnan(t->min);
    if (hi && (d->high & bit) && v <= t->max - t->hyst) {
        d->high &= ~bit;
        rc = raise_or_clear(a, CIOT_ALERT_CLEARED, d, m, true, v, t->max, t, now);
    }
    if (rc == 0 && lo && (d->low & bit) && v >= t->min + t->hyst) {
        d->low &= ~bit;
        rc = raise_or_clear(a, CIOT_ALERT_CLEARED, d, m, false, v, t->min, t, now);
    }
    if (rc == 0 && hi && !(d->high & bit) && v > t->max) {
        d->high |= bit;
        rc = raise_or_clear(a, CIOT_ALERT_RAISED, d, m, true, v, t->max, t, now);
    }
    if (rc == 0 && lo && !(d->low & bit) && v < t->min) {
        d->low |= bit;
        rc = raise_or_clear(a, CIOT_ALERT_RAISED, d, m, false, v, t->min, t, now);
    }
    return rc;
}

/* ---- the handle ---- */

CIOT_API int ciot_alerts_new(ciot_alerts **out, ciot_alerts_fn fn, void *user_data)
{
    if (out == NULL)
        return CIOT_EINVAL;
    *out = NULL;
    if (fn == NULL)
        return CIOT_EINVAL;
    ciot_alerts *a = ciot__calloc(1, sizeof *a);
    if (a == NULL)
        return CIOT_ENOMEM;
    a->fn = fn;
    a->user_data = user_data;
    a->max_dev = CIOT_ALERTS_DEFAULT_MAX_DEVICES;
    *out = a;
    return 0;
}

CIOT_API int ciot_alerts_free(ciot_alerts *a)
{
    if (a == NULL)
        return 0;
    if (a->in_cb)
        return fail(a, CIOT_ERECURSIVE, "ciot_alerts_free() from inside the alert callback");
    for (size_t i = 0; i < a->nbuckets; i++) {
        struct dev *d = a->buckets[i];
        while (d != NULL) {
            struct dev *next = d->hnext;
            dev_free(d);
            d = next;
        }
    }
    ciot__free(a->buckets);
    ciot__free(a->metrics);
    ciot__free(a);
    return 0;
}

CIOT_API const char *ciot_alerts_errmsg(const ciot_alerts *a)
{
    return a == NULL ? "no alert set (NULL)" : a->err;
}

CIOT_API int ciot_alerts_set_threshold(ciot_alerts *a, const char *device, size_t device_len,
                                       const char *metric, size_t metric_len, double min,
                                       double max, const char *severity, size_t severity_len,
                                       double hysteresis)
{
    int rc;
    if (!guard(a, &rc))
        return rc;
    if (device == NULL ? device_len != 0 : !ok_device(device, device_len))
        return fail(a, CIOT_EINVAL, "device id: 1..128 bytes of UTF-8 expected (NULL, 0: default)");
    if (!ok_metric(metric, metric_len))
        return fail(a, CIOT_EINVAL, "metric name: 1..64 of a-z A-Z 0-9 _ - expected");
    if (isinf(min) || isinf(max))
        return fail(a, CIOT_EINVAL, "threshold: an infinite bound (NAN means no bound)");
    if (!isnan(min) && !isnan(max) && min > max)
        return fail(a, CIOT_EINVAL, "threshold: min > max");
    if (!isfinite(hysteresis))
        return fail(a, CIOT_EINVAL, "hysteresis: NaN or infinite");
    struct thr t = {min, max, hysteresis, 0, {0}};
    if (severity == NULL && severity_len == 0) {
        memcpy(t.sev, "WARNING", 7);
        t.sev_len = 7;
    } else if (severity == NULL || severity_len == 0 || severity_len > MAX_SEV ||
               !ciot__utf8_valid(severity, severity_len, false)) {
        return fail(a, CIOT_EINVAL, "severity: 1..32 bytes of UTF-8 expected");
    } else {
        memcpy(t.sev, severity, severity_len);
        t.sev_len = severity_len;
    }
    /* Whatever can fail comes first; a device made by this call goes again on failure. */
    int mi = metric_find(a, metric, metric_len);
    if (mi < 0 && a->nmetrics >= CIOT_ALERTS_MAX_METRICS)
        return fail(a, CIOT_EQUEUE_FULL, "metric limit reached (64 names)");
    struct dev *d = NULL;
    bool made = false;
    if (device != NULL) {
        size_t before = a->ndev;
        rc = dev_get(&d, a, device, device_len);
        if (rc != 0)
            return rc;
        made = a->ndev != before;
        bool has = mi >= 0 && (d->ovr_mask >> mi & 1u) != 0;
        if (!has && d->novr == d->ovr_cap) {
            unsigned cap = d->ovr_cap ? d->ovr_cap * 2 : 2;
            struct ovr *o = ciot__realloc(d->ovr, cap * sizeof *o);
            if (o == NULL) {
                if (made)
                    dev_remove(a, d);
                return fail(a, CIOT_ENOMEM, "out of memory");
            }
            d->ovr = o;
            d->ovr_cap = cap;
        }
    }
    if (mi < 0) {
        mi = metric_add(a, metric, metric_len);
        if (mi < 0) {
            if (made)
                dev_remove(a, d);
            return mi;
        }
    }
    unsigned m = (unsigned)mi;
    if (d == NULL) {
        a->metrics[m].dflt = t;
        a->metrics[m].has_dflt = true;
        a->dflt_mask |= (uint64_t)1 << m;
        reset_followers(a, m);
        return 0;
    }
    if (d->ovr_mask >> m & 1u) {
        for (unsigned i = 0; i < d->novr; i++)
            if (d->ovr[i].metric == m)
                d->ovr[i].t = t;
    } else {
        d->ovr[d->novr].metric = m;
        d->ovr[d->novr].t = t;
        d->novr++;
        d->ovr_mask |= (uint64_t)1 << m;
    }
    reset_dev(d, m);
    return 0;
}

CIOT_API int ciot_alerts_clear_threshold(ciot_alerts *a, const char *device, size_t device_len,
                                         const char *metric, size_t metric_len)
{
    int rc;
    if (!guard(a, &rc))
        return rc;
    if (device == NULL ? device_len != 0 : !ok_device(device, device_len))
        return fail(a, CIOT_EINVAL, "device id: 1..128 bytes of UTF-8 expected (NULL, 0: default)");
    if (!ok_metric(metric, metric_len))
        return fail(a, CIOT_EINVAL, "metric name: 1..64 of a-z A-Z 0-9 _ - expected");
    int mi = metric_find(a, metric, metric_len);
    if (mi < 0)
        return fail(a, CIOT_ENOTFOUND, "no threshold for that metric");
    unsigned m = (unsigned)mi;
    if (device == NULL) {
        if (!a->metrics[m].has_dflt)
            return fail(a, CIOT_ENOTFOUND, "no default threshold for that metric");
        a->metrics[m].has_dflt = false;
        a->dflt_mask &= ~((uint64_t)1 << m);
        reset_followers(a, m);
        return 0;
    }
    struct dev *d = dev_find(a, device, device_len, hash_id(device, device_len));
    if (d == NULL || !(d->ovr_mask >> m & 1u))
        return fail(a, CIOT_ENOTFOUND, "no threshold of that device for that metric");
    for (unsigned i = 0; i < d->novr; i++)
        if (d->ovr[i].metric == m) {
            d->ovr[i] = d->ovr[--d->novr];
            break;
        }
    d->ovr_mask &= ~((uint64_t)1 << m);
    reset_dev(d, m);
    return 0;
}

CIOT_API int ciot_alerts_set_silence(ciot_alerts *a, int64_t timeout_ms)
{
    int rc;
    if (!guard(a, &rc))
        return rc;
    if (timeout_ms < 0)
        return fail(a, CIOT_EINVAL, "silence timeout: negative");
    a->timeout = timeout_ms;
    return 0;
}

CIOT_API int ciot_alerts_set_max_devices(ciot_alerts *a, size_t max_devices)
{
    int rc;
    if (!guard(a, &rc))
        return rc;
    if (max_devices == 0)
        return fail(a, CIOT_EINVAL, "device limit: 0");
    a->max_dev = max_devices;
    return 0;
}

CIOT_API int ciot_alerts_feed(ciot_alerts *a, const char *device, size_t device_len,
                              const char *metric, size_t metric_len, double value, int64_t now_ms)
{
    int rc;
    if (!guard(a, &rc))
        return rc;
    if (!ok_metric(metric, metric_len))
        return fail(a, CIOT_EINVAL, "metric name: 1..64 of a-z A-Z 0-9 _ - expected");
    if (!isfinite(value))
        return fail(a, CIOT_EINVAL, "value: NaN or infinite");
    struct dev *d = NULL;
    rc = dev_get(&d, a, device, device_len);
    if (rc != 0)
        return rc;
    rc = sight(a, d, now_ms);
    if (rc != 0)
        return rc;
    int mi = metric_find(a, metric, metric_len);
    if (mi < 0)
        return 0;
    const struct thr *t = thr_for(a, d, (unsigned)mi);
    return t == NULL ? 0 : judge(a, d, (unsigned)mi, t, value, now_ms);
}

/* A JSON string view holding a numeric string, AWS IoT SQL's way, to a double. */
static bool numeric_string(const ciot_json_value *v, double *out)
{
    char raw[MAX_NUMSTR + 2];
    const char *s = v->ptr + 1;
    size_t n = v->len - 2;
    if (memchr(s, '\\', n) != NULL) {
        size_t len = 0;
        if (ciot_json_get_string(v, raw, sizeof raw, &len) != 0)
            return false;
        s = raw;
        n = len;
    }
    return ciot__rules_numeric_string(s, n, out);
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

CIOT_API int ciot_alerts_feed_json(ciot_alerts *a, const char *device, size_t device_len,
                                   const char *json, size_t json_len, int64_t now_ms)
{
    int rc;
    if (!guard(a, &rc))
        return rc;
    if (json == NULL)
        return fail(a, CIOT_EINVAL, "payload: NULL");
    size_t b = 0, e = json_len;
    while (b < e && is_ws(json[b]))
        b++;
    while (e > b && is_ws(json[e - 1]))
        e--;
    if (b == e || json[b] != '{')
        return fail(a, CIOT_EINVAL, "payload: not a JSON object");
    ciot_json_value root = {CIOT_JSON_OBJECT, json + b, e - b};
    ciot_json_iter it;
    if (ciot_json_iter_init(&it, &root) != 0)
        return fail(a, CIOT_EINVAL, "payload: malformed JSON");
    ciot_json_value views[CIOT_ALERTS_MAX_METRICS];
    uint64_t found = 0;
    ciot_json_value k, v;
    while ((rc = ciot_json_iter_next(&it, &k, &v)) == 0) {
        const char *name = k.ptr + 1;
        size_t len = k.len - 2;
        char buf[MAX_METRIC + 1];
        if (len > 0 && memchr(name, '\\', len) != NULL) {
            if (ciot_json_get_string(&k, buf, sizeof buf, &len) != 0)
                continue; /* too long for a metric name */
            name = buf;
        }
        for (unsigned i = 0; i < a->nmetrics; i++)
            if (a->metrics[i].len == len && memcmp(a->metrics[i].name, name, len) == 0) {
                views[i] = v;
                found |= (uint64_t)1 << i;
                break;
            }
    }
    if (rc == CIOT_EDEPTH)
        return fail(a, CIOT_EDEPTH, "payload: nested too deep");
    if (rc != CIOT_ENOTFOUND)
        return fail(a, CIOT_EINVAL, "payload: malformed JSON");
    struct dev *d = NULL;
    rc = dev_get(&d, a, device, device_len);
    if (rc != 0)
        return rc;
    rc = sight(a, d, now_ms);
    if (rc != 0)
        return rc;
    uint64_t left = found & (a->dflt_mask | d->ovr_mask);
    while (left != 0) {
        unsigned i = (unsigned)__builtin_ctzll(left);
        left &= left - 1;
        const struct thr *t = thr_for(a, d, i);
        if (t == NULL)
            continue;
        double x;
        if (views[i].type == CIOT_JSON_NUMBER) {
            if (ciot_json_get_double(&views[i], &x) != 0) {
                a->skipped++;
                continue;
            }
        } else if (views[i].type != CIOT_JSON_STRING || !numeric_string(&views[i], &x)) {
            a->skipped++;
            continue;
        }
        rc = judge(a, d, i, t, x, now_ms);
        if (rc != 0)
            return rc;
    }
    return 0;
}

CIOT_API int ciot_alerts_seen(ciot_alerts *a, const char *device, size_t device_len, int64_t now_ms)
{
    int rc;
    if (!guard(a, &rc))
        return rc;
    struct dev *d = NULL;
    rc = dev_get(&d, a, device, device_len);
    if (rc != 0)
        return rc;
    return sight(a, d, now_ms);
}

CIOT_API int ciot_alerts_tick(ciot_alerts *a, int64_t now_ms)
{
    int rc;
    if (!guard(a, &rc))
        return rc;
    int64_t t = advance(a, now_ms);
    if (a->timeout == 0)
        return 0;
    while (a->head != NULL && sat_add(a->head->last_seen, a->timeout) <= t) {
        struct dev *d = a->head;
        list_unlink(a, d);
        d->offline = true;
        ciot_alert al = {CIOT_ALERT_OFFLINE, d, "", 0, "DEVICE_OFFLINE", 14, NAN, NAN, "", 0,
                         t, d->last_seen, sat_sub(t, d->last_seen)};
        rc = emit(a, &al);
        if (rc != 0)
            return rc;
    }
    return 0;
}

CIOT_API int64_t ciot_alerts_next_deadline(const ciot_alerts *a)
{
    if (a == NULL || a->timeout == 0 || a->head == NULL)
        return INT64_MAX;
    return sat_add(a->head->last_seen, a->timeout);
}

CIOT_API int ciot_alerts_forget(ciot_alerts *a, const char *device, size_t device_len)
{
    int rc;
    if (!guard(a, &rc))
        return rc;
    if (!ok_device(device, device_len))
        return fail(a, CIOT_EINVAL, "device id: 1..128 bytes of UTF-8 expected");
    struct dev *d = dev_find(a, device, device_len, hash_id(device, device_len));
    if (d == NULL)
        return fail(a, CIOT_ENOTFOUND, "no such device");
    dev_remove(a, d);
    return 0;
}

CIOT_API size_t ciot_alerts_device_count(const ciot_alerts *a)
{
    return a == NULL ? 0 : a->ndev;
}

CIOT_API uint64_t ciot_alerts_skipped(const ciot_alerts *a)
{
    return a == NULL ? 0 : a->skipped;
}

/* ---- the alert ---- */

static const char *str_out(const char *s, size_t n, size_t *len)
{
    if (len != NULL)
        *len = n;
    return s;
}

CIOT_API int ciot_alert_kind(const ciot_alert *al)
{
    return al == NULL ? 0 : al->kind;
}

CIOT_API const char *ciot_alert_device(const ciot_alert *al, size_t *len)
{
    return al == NULL ? str_out("", 0, len) : str_out(al->d->id, al->d->len, len);
}

CIOT_API const char *ciot_alert_metric(const ciot_alert *al, size_t *len)
{
    return al == NULL ? str_out("", 0, len) : str_out(al->metric, al->metric_len, len);
}

CIOT_API const char *ciot_alert_type(const ciot_alert *al, size_t *len)
{
    return al == NULL ? str_out("", 0, len) : str_out(al->type, al->type_len, len);
}

CIOT_API double ciot_alert_value(const ciot_alert *al)
{
    return al == NULL ? NAN : al->value;
}

CIOT_API double ciot_alert_threshold(const ciot_alert *al)
{
    return al == NULL ? NAN : al->threshold;
}

CIOT_API const char *ciot_alert_severity(const ciot_alert *al, size_t *len)
{
    return al == NULL ? str_out("", 0, len) : str_out(al->sev, al->sev_len, len);
}

CIOT_API int64_t ciot_alert_timestamp(const ciot_alert *al)
{
    return al == NULL ? 0 : al->ts;
}

CIOT_API int64_t ciot_alert_last_seen(const ciot_alert *al)
{
    return al == NULL ? 0 : al->last_seen;
}

CIOT_API int64_t ciot_alert_silent_ms(const ciot_alert *al)
{
    return al == NULL ? 0 : al->silent;
}

/* Whole numbers below 2^53 as integers (35, not 35.0), as AWS's rules write them. */
static int put_num(ciot_json_writer *w, double v)
{
    if (v == floor(v) && fabs(v) < 9007199254740992.0)
        return ciot_json_int(w, (int64_t)v);
    return ciot_json_double(w, v);
}

#define KEY(w, s) ciot_json_key(w, s, sizeof s - 1)

CIOT_API int ciot_alert_to_json(char *buf, size_t cap, size_t *out_len, const ciot_alert *al)
{
    if (al == NULL || (buf == NULL && cap != 0))
        return CIOT_EINVAL;
    ciot_json_writer w;
    int rc = ciot_json_writer_init(&w, buf, cap);
    rc = rc ? rc : ciot_json_begin_object(&w);
    rc = rc ? rc : KEY(&w, "deviceId");
    rc = rc ? rc : ciot_json_string(&w, al->d->id, al->d->len);
    rc = rc ? rc : KEY(&w, "alertType");
    rc = rc ? rc : ciot_json_string(&w, al->type, al->type_len);
    if (al->kind == CIOT_ALERT_RAISED || al->kind == CIOT_ALERT_CLEARED) {
        rc = rc ? rc : KEY(&w, "metric");
        rc = rc ? rc : ciot_json_string(&w, al->metric, al->metric_len);
        rc = rc ? rc : KEY(&w, "value");
        rc = rc ? rc : put_num(&w, al->value);
        rc = rc ? rc : KEY(&w, "threshold");
        rc = rc ? rc : put_num(&w, al->threshold);
        rc = rc ? rc : KEY(&w, "severity");
        rc = rc ? rc : ciot_json_string(&w, al->sev, al->sev_len);
        rc = rc ? rc : KEY(&w, "timestamp");
        rc = rc ? rc : ciot_json_timestamp(&w, al->ts);
        if (al->kind == CIOT_ALERT_CLEARED) {
            rc = rc ? rc : KEY(&w, "cleared");
            rc = rc ? rc : ciot_json_bool(&w, true);
        }
    } else {
        rc = rc ? rc : KEY(&w, "timestamp");
        rc = rc ? rc : ciot_json_timestamp(&w, al->ts);
        rc = rc ? rc : KEY(&w, "lastSeen");
        rc = rc ? rc : ciot_json_timestamp(&w, al->last_seen);
        rc = rc ? rc : KEY(&w, "silentMs");
        rc = rc ? rc : ciot_json_int(&w, al->silent);
    }
    rc = rc ? rc : ciot_json_end_object(&w);
    if (rc != 0)
        return rc;
    return ciot_json_writer_finish(&w, out_len);
}
