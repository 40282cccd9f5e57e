/**
 * @file log.h
 * @brief Where the library's diagnostic messages go.
 *
 * By default the library logs nothing. Messages never contain key material:
 * private keys, SAS keys, SAS tokens and passwords are never passed to the
 * log callback, at any level.
 */
#ifndef CLOUDIOT_LOG_H
#define CLOUDIOT_LOG_H

#include <cloudiot/common.h>

CIOT_BEGIN_DECLS

/** Log levels, from the most to the least severe. */
typedef enum ciot_log_level {
    CIOT_LOG_NONE = 0,  /**< as a threshold: log nothing */
    CIOT_LOG_ERROR = 1, /**< an operation failed */
    CIOT_LOG_WARN = 2,  /**< something unexpected that the library handled */
    CIOT_LOG_INFO = 3,  /**< connections, reconnects, subscriptions */
    CIOT_LOG_DEBUG = 4  /**< per-packet detail */
} ciot_log_level;

/**
 * A log callback.
 *
 * @param level     one of ciot_log_level
 * @param msg       the message, NUL-terminated, without a trailing newline;
 *                  borrowed, valid during the call only
 * @param user_data as given to ciot_set_log_callback()
 *
 * It may be called from any thread that runs library code, including a
 * client's network thread; it must not call back into the library.
 */
typedef void (*ciot_log_fn)(int level, const char *msg, void *user_data);

/**
 * Sends messages at @p max_level and more severe to @p fn.
 *
 * @param fn        the callback; NULL turns logging off
 * @param max_level the least severe level passed on (CIOT_LOG_ERROR … CIOT_LOG_DEBUG)
 * @param user_data kept until the next call of this function
 *
 * @retval 0           done
 * @retval CIOT_EINVAL @p max_level is not a ciot_log_level; nothing changed
 *
 * Not thread-safe with respect to library calls in progress: set it at start.
 */
CIOT_API CIOT_NODISCARD int ciot_set_log_callback(ciot_log_fn fn, int max_level, void *user_data);

/** The name of a level ("error", "warn", "info", "debug"; "none"); a static string, never NULL. */
CIOT_API const char *ciot_log_level_name(int level);

CIOT_END_DECLS

#endif /* CLOUDIOT_LOG_H */
