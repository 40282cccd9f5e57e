#include "internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static void *libc_malloc(size_t size, void *ctx)
{
    (void)ctx;
    return malloc(size);
}

static void *libc_realloc(void *ptr, size_t size, void *ctx)
{
    (void)ctx;
    return realloc(ptr, size);
}

static void libc_free(void *ptr, void *ctx)
{
    (void)ctx;
    free(ptr);
}

static ciot_allocator current = {libc_malloc, libc_realloc, libc_free, NULL};
/* Set on the first allocation: from then on the allocator may not change. */
static atomic_bool allocated;

int ciot_set_allocator(const ciot_allocator *alloc)
{
    static const ciot_allocator libc = {libc_malloc, libc_realloc, libc_free, NULL};

    if (alloc && (!alloc->malloc || !alloc->realloc || !alloc->free))
        return CIOT_EINVAL;
    if (atomic_load(&allocated))
        return CIOT_EBUSY;
    current = alloc ? *alloc : libc;
    return 0;
}

void *ciot__malloc(size_t size)
{
    atomic_store_explicit(&allocated, true, memory_order_relaxed);
    return current.malloc(size ? size : 1, current.ctx);
}

void *ciot__calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = ciot__malloc(n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

void *ciot__realloc(void *ptr, size_t size)
{
    atomic_store_explicit(&allocated, true, memory_order_relaxed);
    return current.realloc(ptr, size ? size : 1, current.ctx);
}

void ciot__free(void *ptr)
{
    if (ptr)
        current.free(ptr, current.ctx);
}

void ciot_free(void *ptr)
{
    ciot__free(ptr);
}

char *ciot__strndup(const char *s, size_t len)
{
    if (len == SIZE_MAX)
        return NULL;
    char *p = ciot__malloc(len + 1);
    if (p) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

void ciot__wipe(void *ptr, size_t len)
{
    volatile unsigned char *p = ptr;
    while (len--)
        *p++ = 0;
}
