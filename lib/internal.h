/*
 * Internal helpers shared across the library's files. Never installed;
 * nothing declared here is exported (names start with ciot__).
 */
#ifndef CIOT_INTERNAL_H
#define CIOT_INTERNAL_H

#include <cloudiot/cloudiot.h>

#include <stdarg.h>

#if defined(__GNUC__) || defined(__clang__)
#define CIOT__LIKELY(x) __builtin_expect(!!(x), 1)
#define CIOT__UNLIKELY(x) __builtin_expect(!!(x), 0)
#define CIOT__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CIOT__LIKELY(x) (x)
#define CIOT__UNLIKELY(x) (x)
#define CIOT__PRINTF(f, a)
#endif

#define CIOT__STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)

/* Allocation through the allocator set with ciot_set_allocator(). */
void *ciot__malloc(size_t size);
void *ciot__calloc(size_t n, size_t size);
void *ciot__realloc(void *ptr, size_t size);
void ciot__free(void *ptr);
char *ciot__strndup(const char *s, size_t len);
/* Overwrites len bytes in a way the compiler may not remove (key material). */
void ciot__wipe(void *ptr, size_t len);

/* Logging; a no-op unless a callback is set and level passes the threshold. */
bool ciot__log_enabled(int level);
void ciot__log(int level, const char *fmt, ...) CIOT__PRINTF(2, 3);

#endif /* CIOT_INTERNAL_H */
