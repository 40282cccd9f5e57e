/**
 * @file common.h
 * @brief Macros and types shared by every public header of libcloudiot.
 *
 * Every public header includes this one first, so each of them compiles on
 * its own, as C99 and as C++.
 */
#ifndef CLOUDIOT_COMMON_H
#define CLOUDIOT_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#define CIOT_BEGIN_DECLS extern "C" {
#define CIOT_END_DECLS }
#else
#define CIOT_BEGIN_DECLS
#define CIOT_END_DECLS
#endif

/** Marks a function exported from the shared library. Everything else is hidden. */
#if defined(_WIN32)
#if defined(CIOT_BUILDING)
#define CIOT_API __declspec(dllexport)
#else
#define CIOT_API __declspec(dllimport)
#endif
#elif defined(__GNUC__) || defined(__clang__)
#define CIOT_API __attribute__((visibility("default")))
#else
#define CIOT_API
#endif

/** The caller must look at the result (every fallible function returns an error code). */
#if defined(__cplusplus) && __cplusplus >= 201703L
#define CIOT_NODISCARD [[nodiscard]]
#elif defined(__GNUC__) || defined(__clang__)
#define CIOT_NODISCARD __attribute__((warn_unused_result))
#else
#define CIOT_NODISCARD
#endif

/** Marks a deprecated function or type; @p msg says since when and what to use instead. */
#if defined(CIOT_BUILDING)
#define CIOT_DEPRECATED(msg)
#elif defined(__GNUC__) || defined(__clang__)
#define CIOT_DEPRECATED(msg) __attribute__((deprecated(msg)))
#elif defined(_MSC_VER)
#define CIOT_DEPRECATED(msg) __declspec(deprecated(msg))
#else
#define CIOT_DEPRECATED(msg)
#endif

CIOT_BEGIN_DECLS

/**
 * A borrowed view of bytes owned by someone else (pointer + length, no NUL
 * needed). The layout of this struct is frozen for good; it crosses the ABI
 * by pointer only.
 */
typedef struct ciot_view {
    const char *ptr; /**< first byte; may be NULL when len is 0 */
    size_t len;      /**< number of bytes */
} ciot_view;

CIOT_END_DECLS

#endif /* CLOUDIOT_COMMON_H */
