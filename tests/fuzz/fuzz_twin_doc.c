/*
 * libFuzzer target: the Azure device twin engine (lib/core/twin_doc).
 *
 * The input is cut at 0x01 bytes into up to 16 steps; the first byte of
 * each picks the operation and the rest is its payload:
 *   0 reported patch, 1 desired patch, 2 a raw GET document for a scratch
 *   device copy, 3 a raw desired notification for that copy, 4 save+load.
 * After every step:
 *  - a patch returns 0 with status 204/200 (version + 1, a notification
 *    for desired that jansson reads) or 400/413 (twin byte-identical);
 *  - save, load and save again give the same bytes (the stored twin keeps
 *    within every limit load checks);
 *  - a device copy fed every desired notification equals the service's
 *    desired section and version (no gap ever);
 *  - raw documents leave the scratch copy unchanged (EPROTOCOL) or within
 *    the limits (it saves and loads).
 */
#include "core/twin_doc.h"
#include "internal.h"

#include <cloudiot/error.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *save(const ciot__twin *t, size_t *len)
{
    char *out = NULL;
    if (ciot__twin_save(&out, len, t) != 0 || strlen(out) != *len)
        abort();
    return out;
}

static void roundtrip(const ciot__twin *t)
{
    size_t n1, n2;
    char *a = save(t, &n1);
    ciot__twin *u = NULL;
    if (ciot__twin_load(&u, a, n1) != 0)
        abort();
    char *b = save(u, &n2);
    if (n1 != n2 || memcmp(a, b, n1) != 0)
        abort();
    ciot__free(a);
    ciot__free(b);
    ciot__twin_free(u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ciot__twin *svc = NULL, *dev = NULL, *scratch = NULL;
    if (ciot__twin_new(&svc) != 0 || ciot__twin_new(&dev) != 0 || ciot__twin_new(&scratch) != 0)
        abort();
    const uint8_t *p = data, *end = data + size;
    for (int step = 0; step < 16 && p < end; step++) {
        const uint8_t *q = memchr(p, 1, (size_t)(end - p));
        if (!q)
            q = end;
        int op = p[0] % 5;
        const char *body = (const char *)p + 1;
        size_t len = (size_t)(q - p) - 1;
        p = q < end ? q + 1 : end;
        if (op <= 1) {
            int section = op == 0 ? CIOT__TWIN_REPORTED : CIOT__TWIN_DESIRED;
            size_t n0;
            char *before = save(svc, &n0);
            uint64_t v0 = ciot__twin_version(svc, section);
            ciot__twin_result r;
            if (ciot__twin_patch(&r, svc, section, body, len) != 0)
                abort();
            if (r.status == 400 || r.status == 413) {
                size_t n1;
                char *after = save(svc, &n1);
                if (n0 != n1 || memcmp(before, after, n0) != 0 || r.notification || !r.message[0])
                    abort();
                ciot__free(after);
            } else {
                if (r.status != (op == 0 ? 204 : 200) || r.version != v0 + 1 ||
                    ciot__twin_version(svc, section) != v0 + 1)
                    abort();
                if (op == 1) {
                    json_t *j = json_loadb(r.notification, r.notification_len, 0, NULL);
                    if (!json_is_object(j))
                        abort();
                    json_decref(j);
                    bool applied, gap;
                    if (ciot__twin_apply(dev, CIOT__TWIN_DOC_DESIRED, r.notification,
                                         r.notification_len, &applied, &gap) != 0 ||
                        !applied || gap)
                        abort();
                    if (!json_equal(ciot__twin_section(dev, CIOT__TWIN_DESIRED),
                                    ciot__twin_section(svc, CIOT__TWIN_DESIRED)) ||
                        ciot__twin_version(dev, CIOT__TWIN_DESIRED) !=
                            ciot__twin_version(svc, CIOT__TWIN_DESIRED))
                        abort();
                } else if (r.notification) {
                    abort();
                }
            }
            ciot__free(before);
            ciot__twin_result_free(&r);
        } else if (op == 2 || op == 3) {
            size_t n0, n1;
            char *before = save(scratch, &n0);
            int rc =
                ciot__twin_apply(scratch, op == 2 ? CIOT__TWIN_DOC_GET : CIOT__TWIN_DOC_DESIRED,
                                 body, len, NULL, NULL);
            char *after = save(scratch, &n1);
            if (rc == CIOT_EPROTOCOL) {
                if (n0 != n1 || memcmp(before, after, n0) != 0)
                    abort();
            } else if (rc != 0) {
                abort();
            }
            ciot__free(before);
            ciot__free(after);
            roundtrip(scratch);
        } else {
            roundtrip(svc);
            ciot__twin *u = NULL;
            int rc = ciot__twin_load(&u, body, len);
            if (rc == 0)
                roundtrip(u);
            else if (rc != CIOT_ECORRUPT)
                abort();
            ciot__twin_free(u);
        }
    }
    roundtrip(svc);
    roundtrip(dev);
    ciot__twin_free(svc);
    ciot__twin_free(dev);
    ciot__twin_free(scratch);
    return 0;
}
