/* Fuzz target: direct-method request topics (lib/core/azure_method.c). */
#include "core/azure_method.h"

#include <cloudiot/error.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char buf[CIOT__AZURE_METHOD_TOPIC_MAX];
    /* an exact-size copy, so that ASan sees any overread */
    char *t = malloc(size ? size : 1);
    if (!t)
        return 0;
    memcpy(t, data, size);
    ciot__azure_method_req r;
    const char *why = NULL;
    int rc = ciot__azure_method_parse(&r, &why, buf, sizeof buf, t, size);
    if (rc == 0) {
        if (r.name.len == 0 || r.name.len > CIOT__AZURE_METHOD_NAME_MAX || r.rid.len == 0 ||
            r.rid.len > CIOT__AZURE_RID_MAX || r.name.ptr < t || r.name.ptr + r.name.len > t + size ||
            r.rid.ptr < buf || r.rid.ptr + r.rid.len > buf + sizeof buf)
            abort();
    } else if (rc == CIOT_EPROTOCOL) {
        if (!why || !*why)
            abort();
    } else if (rc != CIOT_ENOTFOUND) {
        abort();
    }
    free(t);
    return 0;
}
