/*
 * libFuzzer target: the shadow document engine.
 *
 * The input is cut at 0x01 bytes into up to 16 requests; the first byte of
 * each picks the operation (update, get, delete, save+load) and the rest is
 * the payload. After every step:
 *  - the call returns 0 (the engine never fails on content) and exactly one
 *    of accepted/rejected is set, each a JSON document jansson can read;
 *  - a rejection has one of the codes of §2.5 and leaves the version,
 *    the state and the existence unchanged;
 *  - an accepted update bumps the version by one (or starts a shadow) and
 *    publishes a delta exactly when the state has one;
 *  - the stored state stays within the limits: save, then load (which
 *    checks depth, size, metadata shape and nulls) succeeds and saves to
 *    the same bytes;
 *  - a device-side copy fed every /update/accepted document saves to the
 *    same bytes as the service's shadow, and feeding it raw fuzz bytes as
 *    a service document either changes nothing (EPROTOCOL) or leaves a
 *    copy within the limits.
 */
#include "core/shadow_doc.h"
#include "internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_json(const char *s, size_t len)
{
    if (!s)
        return;
    if (strlen(s) != len)
        abort();
    json_t *j = json_loadb(s, len, 0, NULL);
    if (!j || !json_is_object(j))
        abort();
    json_decref(j);
}

static char *save(const ciot__shadow *s, size_t *len)
{
    char *out = NULL;
    if (ciot__shadow_save(&out, len, s) != 0)
        abort();
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ciot__shadow *s = NULL, *dev = NULL;
    if (ciot__shadow_new(&s, "fuzz", 4) != 0 || ciot__shadow_new(&dev, "fuzz", 4) != 0)
        abort();
    bool dev_synced = true;
    int64_t now = 1700000000;
    const uint8_t *p = data, *end = data + size;
    for (int step = 0; step < 16 && p < end; step++) {
        const uint8_t *q = memchr(p, 1, (size_t)(end - p));
        if (!q)
            q = end;
        uint8_t op = p[0];
        const char *req = (const char *)p + 1;
        size_t len = (size_t)(q - p) - 1;
        p = q + (q < end);
        now += op >> 4;

        size_t before_len;
        char *before = save(s, &before_len);
        uint64_t v0 = ciot__shadow_version(s);
        bool existed = ciot__shadow_exists(s);
        ciot__shadow_result r;
        int rc;
        switch (op & 3) {
        case 0:
        case 1:
            rc = ciot__shadow_update(&r, s, req, len, now);
            break;
        case 2:
            if (op & 8) { /* raw bytes as a service document for the device copy */
                bool applied = false;
                int kind = CIOT__SHADOW_DOC_GET + (op >> 5) % 3;
                rc = ciot__shadow_apply(dev, kind, req, len, &applied, NULL);
                if ((rc != 0 && rc != CIOT_EPROTOCOL) || (rc != 0 && applied))
                    abort();
                if (applied)
                    dev_synced = false;
                size_t dl;
                char *ds = save(dev, &dl);
                ciot__shadow *t = NULL;
                if (ciot__shadow_load(&t, "fuzz", 4, ds, dl) != 0)
                    abort();
                ciot__shadow_free(t);
                ciot__free(ds);
                ciot__free(before);
                continue;
            }
            rc = (op & 4) ? ciot__shadow_delete(&r, s, req, len, now)
                          : ciot__shadow_get(&r, s, req, len, now);
            break;
        default: {
            ciot__shadow *t = NULL;
            if (ciot__shadow_load(&t, "fuzz", 4, before, before_len) != 0)
                abort();
            size_t again_len;
            char *again = save(t, &again_len);
            if (again_len != before_len || memcmp(again, before, before_len) != 0)
                abort();
            ciot__free(again);
            ciot__shadow_free(s);
            s = t;
            /* A corrupted copy of the persisted form must be refused or load cleanly. */
            if (len) {
                ciot__shadow *u = NULL;
                rc = ciot__shadow_load(&u, "fuzz", 4, req, len);
                if (rc != 0 && rc != CIOT_ECORRUPT)
                    abort();
                ciot__shadow_free(u);
            }
            ciot__free(before);
            continue;
        }
        }
        if (rc != 0)
            abort();
        if ((r.accepted == NULL) == (r.rejected == NULL))
            abort();
        check_json(r.accepted, r.accepted_len);
        check_json(r.rejected, r.rejected_len);
        check_json(r.delta, r.delta_len);
        check_json(r.documents, r.documents_len);
        if (r.rejected) {
            switch (r.status) {
            case 400: case 404: case 409: case 413: case 415:
                break;
            default:
                abort();
            }
            size_t after_len;
            char *after = save(s, &after_len);
            if (after_len != before_len || memcmp(after, before, before_len) != 0)
                abort();
            ciot__free(after);
            if (r.delta || r.documents)
                abort();
        } else if (r.status != 200) {
            abort();
        } else if ((op & 3) < 2) {
            uint64_t v1 = ciot__shadow_version(s);
            if (!ciot__shadow_exists(s) || !r.documents)
                abort();
            if (existed ? v1 != v0 + 1 : (v1 != 1 && v1 != v0 + 1))
                abort();
            json_t *delta = NULL;
            if (ciot__shadow_delta(&delta, s) != 0)
                abort();
            if ((delta == NULL) != (r.delta == NULL))
                abort();
            json_decref(delta);
            bool applied = false;
            if (ciot__shadow_apply(dev, CIOT__SHADOW_DOC_ACCEPTED, r.accepted, r.accepted_len, &applied,
                                   NULL) != 0 || !applied)
                dev_synced = false;
            if (dev_synced) {
                size_t a_len, b_len;
                char *a = save(s, &a_len), *b = save(dev, &b_len);
                if (a_len != b_len || memcmp(a, b, a_len) != 0)
                    abort();
                ciot__free(a);
                ciot__free(b);
            }
        } else if (r.accepted && (op & 3) == 2 && (op & 4)) { /* deleted: start a new copy */
            ciot__shadow_free(dev);
            if (ciot__shadow_new(&dev, "fuzz", 4) != 0)
                abort();
            dev_synced = true;
        }
        /* The stored state is within the limits: load re-checks them all. */
        size_t now_len;
        char *now_saved = save(s, &now_len);
        ciot__shadow *t = NULL;
        if (ciot__shadow_load(&t, "fuzz", 4, now_saved, now_len) != 0)
            abort();
        ciot__shadow_free(t);
        ciot__free(now_saved);
        ciot__free(before);
        ciot__shadow_result_free(&r);
    }
    ciot__shadow_free(s);
    ciot__shadow_free(dev);
    return 0;
}
