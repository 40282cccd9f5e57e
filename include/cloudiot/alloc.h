/**
 * @file alloc.h
 * @brief Replacing the allocator libcloudiot uses.
 */
#ifndef CLOUDIOT_ALLOC_H
#define CLOUDIOT_ALLOC_H

#include <cloudiot/common.h>

CIOT_BEGIN_DECLS

/**
 * An allocator: three functions with the semantics of malloc, realloc and
 * free, each given @c ctx as its last argument. free(NULL) must be accepted.
 */
typedef struct ciot_allocator {
    void *(*malloc)(size_t size, void *ctx);
    void *(*realloc)(void *ptr, size_t size, void *ctx);
    void (*free)(void *ptr, void *ctx);
    void *ctx; /**< passed to each function; may be NULL */
} ciot_allocator;

/**
 * Makes the library allocate through @p alloc instead of malloc/realloc/free.
 *
 * Call it once, before any other function of the library that allocates.
 * The struct is copied. NULL restores the C library's functions.
 *
 * @retval 0            the allocator is in place
 * @retval CIOT_EINVAL  @p alloc lacks one of its three functions
 * @retval CIOT_EBUSY   the library has already allocated memory with the
 *                      current allocator; changing it now could free memory
 *                      with the wrong function, so nothing was changed
 * Not thread-safe: call it before starting threads that use the library.
 */
CIOT_API CIOT_NODISCARD int ciot_set_allocator(const ciot_allocator *alloc);

/**
 * Frees memory that the library handed to the caller to own, where the
 * function that returned it says so. NULL is accepted.
 */
CIOT_API void ciot_free(void *ptr);

CIOT_END_DECLS

#endif /* CLOUDIOT_ALLOC_H */
