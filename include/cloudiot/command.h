/**
 * @file command.h
 * @brief Commands sent to the device, dispatched by name to handlers.
 *
 * The backend names the topic: `commands/{thing}/<name>` on AWS
 * (`devices/{thing}/commands/<name>` on a generic broker). When the first
 * handler is registered the client subscribes to the filter once
 * (`commands/{thing}/+`, QoS 1; restored after reconnects like any
 * subscription), and each message goes to the handler registered under the
 * last level of its topic. A payload must be a JSON object (UTF-8); the
 * handler gets it as a view and can read it with the on-demand reader
 * (<cloudiot/json.h>, ciot_command_args()). A payload that is not a JSON
 * object, and a command nobody handles (when no default handler is
 * registered), go to the error callback with the reason; they never crash
 * and never reach a handler.
 *
 * Threads: registering and unregistering are safe from any thread (with the
 * caveat of ciot_client_unsubscribe() about user data); handlers and the
 * error callback run on the client's driving thread, with no lock held.
 */
#ifndef CLOUDIOT_COMMAND_H
#define CLOUDIOT_COMMAND_H

#include <cloudiot/client.h>
#include <cloudiot/common.h>
#include <cloudiot/json.h>

CIOT_BEGIN_DECLS

/** One received command; borrowed, valid during the callback only. */
typedef struct ciot_command ciot_command;

/**
 * A command handler, or the error callback.
 * @param c         the client
 * @param cmd       the command; read it with ciot_command_*()
 * @param user_data as registered
 * @return 0 to go on; any other value is reported as CIOT_EUSER by the
 *         ciot_client_process() call that ran it
 */
typedef int (*ciot_command_fn)(ciot_client *c, const ciot_command *cmd, void *user_data);

/**
 * Registers @p fn for the command @p name. The name is copied.
 * @param c         the client
 * @param name      the command's name (the last topic level): 1..128 bytes of UTF-8 without
 *                  '/', '+', '#'; NULL with @p name_len 0 registers the default handler, which
 *                  gets every command that has no handler of its own
 * @param name_len  its length
 * @param fn        the handler
 * @param user_data passed to @p fn
 * @retval 0             done (the first registration also subscribes)
 * @retval CIOT_EINVAL   NULL client or handler, a bad name, or a thing name that makes the
 *                       command filter invalid (ciot_client_errmsg() says which)
 * @retval CIOT_EEXIST   a handler is registered under that name already
 * @retval CIOT_ENOMEM   out of memory
 * @retval CIOT_ESTATE   the client is being freed
 */
CIOT_API CIOT_NODISCARD int ciot_command_register(ciot_client *c, const char *name,
                                                  size_t name_len, ciot_command_fn fn,
                                                  void *user_data);

/**
 * Removes the handler of @p name (NULL, 0: the default handler). The
 * subscription stays (commands without a handler then go to the default
 * handler or the error callback).
 * @retval 0 done  @retval CIOT_ENOTFOUND no such handler  @retval CIOT_EINVAL NULL client
 */
CIOT_API CIOT_NODISCARD int ciot_command_unregister(ciot_client *c, const char *name,
                                                    size_t name_len);

/**
 * Sets the callback that gets what cannot be dispatched: ciot_command_error()
 * says why (CIOT_EPROTOCOL: the payload is not a JSON object or not UTF-8;
 * CIOT_ENOTFOUND: no handler for the name). NULL: such commands are only
 * logged (CIOT_LOG_WARN).
 */
CIOT_API void ciot_command_set_error_callback(ciot_client *c, ciot_command_fn fn, void *user_data);

/** The command's name (the last topic level; not NUL-terminated); *len gets its length. */
CIOT_API const char *ciot_command_name(const ciot_command *cmd, size_t *len);

/** The payload (not NUL-terminated) and its length. */
CIOT_API const char *ciot_command_payload(const ciot_command *cmd, size_t *len);

/** The whole topic (not NUL-terminated) and its length. */
CIOT_API const char *ciot_command_topic(const ciot_command *cmd, size_t *len);

/**
 * The payload's root object as a value for the on-demand reader
 * (ciot_json_get_member(), ciot_json_iter_init(), ...).
 * @retval 0 done  @retval CIOT_EPROTOCOL the payload is not a JSON object (error callback only)
 * @retval CIOT_EINVAL NULL argument
 */
CIOT_API CIOT_NODISCARD int ciot_command_args(const ciot_command *cmd, ciot_json_value *out);

/** 0 in a handler; in the error callback, why it was not dispatched (see above). */
CIOT_API int ciot_command_error(const ciot_command *cmd);

/** In the error callback, a description of the problem; "" in a handler. */
CIOT_API const char *ciot_command_error_text(const ciot_command *cmd);

CIOT_END_DECLS

#endif /* CLOUDIOT_COMMAND_H */
