/**
 * @file error.h
 * @brief Error codes of libcloudiot.
 *
 * Fallible functions return an `int`: 0 on success, one of the negative
 * CIOT_E* codes below on failure. "No match" and "nothing to do" are not
 * errors. Codes are never renumbered or reused: a retired code keeps its slot.
 * Details of a failure (which field, which file) live on the handle that
 * failed, e.g. a per-handle errmsg accessor, never in errno.
 */
#ifndef CLOUDIOT_ERROR_H
#define CLOUDIOT_ERROR_H

#include <cloudiot/common.h>

/**
 * The one table of error codes: X(NAME, value, "message").
 *
 * The enum, ciot_strerror() and ciot_err_name() are all generated from it.
 * Add new codes at the end with the next free value.
 */
#define CIOT_ERRNO_MAP(X)                                                          \
    X(CIOT_ERROR, -1, "unspecified error")                                          \
    X(CIOT_EINVAL, -2, "invalid argument")                                          \
    X(CIOT_ENOMEM, -3, "out of memory")                                             \
    X(CIOT_ENOSPC, -4, "buffer too small")                                          \
    X(CIOT_ENOTBUILT, -5, "feature not built into this library")                   \
    X(CIOT_EUNKNOWN_OPTION, -6, "unknown option")                                  \
    X(CIOT_ERANGE, -7, "value out of range")                                       \
    X(CIOT_ENOTFOUND, -8, "not found")                                             \
    X(CIOT_EEXIST, -9, "already exists")                                           \
    X(CIOT_ETYPE, -10, "value has another type")                                   \
    X(CIOT_EUSER, -11, "aborted by a callback")                                    \
    X(CIOT_ERECURSIVE, -12, "not allowed from inside a callback")                  \
    X(CIOT_EBUSY, -13, "resource busy")                                            \
    X(CIOT_ESTATE, -14, "operation not valid in the current state")                \
    X(CIOT_ETIMEDOUT, -15, "operation timed out")                                  \
    X(CIOT_EIO, -16, "input/output error")                                         \
    X(CIOT_ECONNREFUSED, -17, "connection refused")                                \
    X(CIOT_ENOTCONN, -18, "not connected")                                         \
    X(CIOT_ECONNLOST, -19, "connection lost")                                      \
    X(CIOT_ETLS, -20, "TLS error")                                                 \
    X(CIOT_EAUTH, -21, "not authorized")                                           \
    X(CIOT_EPROTOCOL, -22, "protocol error")                                       \
    X(CIOT_EQUEUE_FULL, -23, "queue full")                                         \
    X(CIOT_EDEPTH, -24, "nesting too deep")                                        \
    X(CIOT_EVERSION, -25, "unsupported version")                                   \
    X(CIOT_ECORRUPT, -26, "corrupt data")

CIOT_BEGIN_DECLS

/** Error codes; see CIOT_ERRNO_MAP for their meaning. */
typedef enum ciot_err {
    CIOT_OK = 0, /**< success */
#define CIOT_ERR_ENUM_(name, value, msg) name = (value),
    CIOT_ERRNO_MAP(CIOT_ERR_ENUM_)
#undef CIOT_ERR_ENUM_
    CIOT_ERR_LAST_ = -27 /**< one past the lowest code in use; not an error code */
} ciot_err;

/**
 * A short English description of @p err.
 *
 * @param err any int: 0, a CIOT_E* code or anything else.
 * @return a static string, never NULL; "unknown error" for codes not in the table.
 * Thread-safe.
 */
CIOT_API const char *ciot_strerror(int err);

/**
 * The symbolic name of @p err, e.g. "CIOT_EINVAL"; "CIOT_OK" for 0.
 *
 * @return a static string, never NULL; "CIOT_EUNKNOWN" for codes not in the table.
 * Thread-safe.
 */
CIOT_API const char *ciot_err_name(int err);

CIOT_END_DECLS

#endif /* CLOUDIOT_ERROR_H */
