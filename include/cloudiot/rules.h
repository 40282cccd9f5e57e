/**
 * @file rules.h
 * @brief ciot_rules: a set of AWS IoT SQL rules (version 2016-03-23) with
 *        their actions, evaluated on the device, on a gateway or in the
 *        emulator.
 *
 * ## Rules
 * A rule is `SELECT … FROM 'topic/filter' [WHERE …]` in the dialect of
 * doc/rules-engine.md (AWS IoT SQL, version 2016-03-23), compiled once when
 * it is added (ciot_rules_add_sql(), or ciot_rules_add_payload() with the
 * JSON of AWS's CreateTopicRule). A syntax error, an unknown function or SQL
 * version, or an action that cannot run is an error when the rule is added,
 * never when a message arrives; ciot_rules_errmsg() then names the rule, the
 * position ("LINE:COL") and what was expected.
 *
 * ## Messages
 * ciot_rules_process() takes one message (topic, payload, the publisher's
 * client id when known). The rules whose FROM filter matches the topic are
 * found through a topic set (a trie), so a set of 1,000 rules costs about as
 * much as the few that match. Each rule that fires (FROM matches, WHERE is
 * true) produces an output document (the SELECT), which goes to the output
 * callback and then to each of the rule's actions in order:
 * - **function**: the callback registered under a name with
 *   ciot_rules_set_function() (a payload's `lambda` action names it by the
 *   last part of its `functionArn`, `…:function:<name>`; an `sns` action by the
 *   last part of its `targetArn`);
 * - **republish**: a publish through the publisher (ciot_rules_set_publisher(),
 *   or the client of ciot_rules_attach()) to a topic made from a template
 *   with `${expression}` substitutions (AWS's syntax: `alerts/${topic(2)}`),
 *   evaluated on the incoming message;
 * - **SQLite**: a row in a table of the database opened with
 *   ciot_rules_open_sqlite() (a payload's `dynamoDBv2` `putItem` action); the
 *   table name is a template too; each top-level member of the output object
 *   is a column (created when missing).
 * An action that fails (no function of that name, no publisher, a template
 * that yields no topic, a database error) is reported to the error callback
 * with the rule and the action's index, and the other actions still run.
 *
 * ## Callbacks
 * Inside any callback of the set (output, function, publisher, error,
 * clock, random), the calls that run or change it (ciot_rules_process(),
 * ciot_rules_free(), the ciot_rules_add_* calls, ciot_rules_remove(),
 * ciot_rules_enable(), ciot_rules_set_function(), ciot_rules_open_sqlite())
 * return CIOT_ERECURSIVE and do nothing; the readers and the void setters
 * may be called.
 *
 * ## Threads
 * A set is used by one thread at a time (the caller's lock, if any). Attached
 * to a client (ciot_rules_attach()), it is driven by the client: every call
 * on it must then come from the client's driving thread (or while nothing
 * drives the client), and its callbacks run there with no lock held.
 */
#ifndef CLOUDIOT_RULES_H
#define CLOUDIOT_RULES_H

#include <cloudiot/client.h>
#include <cloudiot/common.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

CIOT_BEGIN_DECLS

typedef struct ciot_rules ciot_rules;
/** One rule that fired on one message: borrowed, valid during the callback only. */
typedef struct ciot_rules_output ciot_rules_output;

/**
 * A function action, or the output callback.
 * @return 0 to go on; any other value is reported to the error callback
 *         (CIOT_EUSER) and, when attached, by ciot_client_process()
 */
typedef int (*ciot_rules_fn)(ciot_rules *r, const ciot_rules_output *out, void *user_data);

/**
 * The publisher of republish actions.
 * @return 0 when the message was taken, a negative CIOT_E* code otherwise
 */
typedef int (*ciot_rules_publish_fn)(void *user_data, const char *topic, size_t topic_len,
                                     const void *payload, size_t payload_len, int qos);

/**
 * The error callback: an action of a rule that fired could not run.
 * @param rule, rule_len  the rule's name
 * @param action          the action's index in the rule (0-based); -1 for the rule
 *                        itself (its evaluation failed, or the output callback
 *                        returned non-zero); the rule's number of actions for
 *                        its errorAction
 * @param error           a CIOT_E* code
 * @param msg             what happened (NUL-terminated)
 */
typedef void (*ciot_rules_error_fn)(ciot_rules *r, const char *rule, size_t rule_len, int action,
                                    int error, const char *msg, void *user_data);

/** The clock of `timestamp()`: milliseconds since the Unix epoch. */
typedef int64_t (*ciot_rules_clock_fn)(void *user_data);
/** The random source of `newuuid()`: fills @p buf with @p n bytes, returns 0. */
typedef int (*ciot_rules_random_fn)(void *user_data, uint8_t *buf, size_t n);

/* ---- the set ---- */

/** @retval 0 done @retval CIOT_EINVAL NULL @retval CIOT_ENOMEM out of memory */
CIOT_API CIOT_NODISCARD int ciot_rules_new(ciot_rules **out);

/** Frees the set (detaching it first). NULL is accepted.
 *  @retval 0 done @retval CIOT_ERECURSIVE from inside one of its callbacks: nothing freed */
CIOT_API int ciot_rules_free(ciot_rules *r);

/** What the last failed call on @p r was about; "" when nothing failed. */
CIOT_API const char *ciot_rules_errmsg(const ciot_rules *r);

/**
 * Adds a rule from SQL text, enabled, with no action yet.
 * @param name     1..128 of a-z A-Z 0-9 _ (AWS's rule names), copied; unique in the set
 * @param sql      the statement (pointer + length), copied
 * @retval 0 done
 * @retval CIOT_EINVAL   a bad name, or the SQL does not compile (ciot_rules_errmsg():
 *                       "rule NAME: LINE:COL: what")
 * @retval CIOT_EDEPTH, CIOT_ERANGE  nesting too deep, SQL too long, too many items
 * @retval CIOT_EEXIST   a rule of that name exists
 * @retval CIOT_ENOMEM   out of memory
 * @retval CIOT_ERECURSIVE from inside one of the set's callbacks
 */
CIOT_API CIOT_NODISCARD int ciot_rules_add_sql(ciot_rules *r, const char *name, size_t name_len,
                                               const char *sql, size_t sql_len);

/**
 * Adds a rule from the JSON of AWS's CreateTopicRule: a topicRulePayload
 * `{"sql":…, "description":…, "ruleDisabled":…, "awsIotSqlVersion":…,
 * "actions":[…], "errorAction":{…}}`, or the CLI's input shape
 * `{"ruleName":…, "topicRulePayload":{…}}` (then @p name may be NULL).
 * Actions: `lambda`, `sns`, `republish`, `dynamoDBv2` (doc/rules.md has the
 * mapping); any other action is an error naming it. A missing
 * awsIotSqlVersion means 2015-10-08 on AWS, which is refused (CIOT_EVERSION).
 * @retval 0 done
 * @retval CIOT_EINVAL   not such a JSON object, a member of the wrong type, an unknown or
 *                       malformed action, a bad template, or SQL that does not compile
 * @retval CIOT_EVERSION an SQL version other than 2016-03-23
 * @retval CIOT_EEXIST, CIOT_EDEPTH, CIOT_ERANGE, CIOT_ENOMEM  as ciot_rules_add_sql()
 */
CIOT_API CIOT_NODISCARD int ciot_rules_add_payload(ciot_rules *r, const char *name,
                                                   size_t name_len, const char *json,
                                                   size_t json_len);

/** Removes a rule. @retval 0 done @retval CIOT_ENOTFOUND no such rule
 *  @retval CIOT_ERECURSIVE from inside one of the set's callbacks */
CIOT_API CIOT_NODISCARD int ciot_rules_remove(ciot_rules *r, const char *name, size_t name_len);

/** Enables or disables a rule (`ruleDisabled`).
 *  @retval 0 done @retval CIOT_ENOTFOUND no such rule
 *  @retval CIOT_ENOMEM enabling: no memory to list its FROM filter again (still disabled)
 *  @retval CIOT_ERECURSIVE from inside one of the set's callbacks */
CIOT_API CIOT_NODISCARD int ciot_rules_enable(ciot_rules *r, const char *name, size_t name_len,
                                              bool enabled);

/** Number of rules in the set. */
CIOT_API size_t ciot_rules_count(const ciot_rules *r);

/* ---- actions of rules added as SQL ---- */

/** Appends a function action: the callback registered as @p function.
 *  @retval 0 @retval CIOT_ENOTFOUND no such rule @retval CIOT_EINVAL bad name @retval CIOT_ENOMEM
 *  @retval CIOT_ERECURSIVE from inside one of the set's callbacks */
CIOT_API CIOT_NODISCARD int ciot_rules_add_function_action(ciot_rules *r, const char *rule,
                                                           size_t rule_len, const char *function,
                                                           size_t function_len);

/** Appends a republish action to the topic template @p topic (`${expr}` substitutions).
 *  @retval 0 @retval CIOT_ENOTFOUND @retval CIOT_EINVAL bad template or QoS @retval CIOT_ENOMEM
 *  @retval CIOT_ERANGE a template over 65,535 bytes, or an expression in it over 8 KiB
 *  @retval CIOT_ERECURSIVE from inside one of the set's callbacks */
CIOT_API CIOT_NODISCARD int ciot_rules_add_republish_action(ciot_rules *r, const char *rule,
                                                            size_t rule_len, const char *topic,
                                                            size_t topic_len, int qos);

/** Appends an SQLite action: a row in the table named by the template @p table.
 *  @retval 0 @retval CIOT_ENOTFOUND @retval CIOT_EINVAL bad template @retval CIOT_ENOMEM
 *  @retval CIOT_ERANGE a template over 65,535 bytes, or an expression in it over 8 KiB
 *  @retval CIOT_ERECURSIVE from inside one of the set's callbacks */
CIOT_API CIOT_NODISCARD int ciot_rules_add_sqlite_action(ciot_rules *r, const char *rule,
                                                         size_t rule_len, const char *table,
                                                         size_t table_len);

/* ---- where actions go ---- */

/** Registers (or with @p fn NULL removes) the function @p name (1..128 bytes, copied).
 *  @retval 0 @retval CIOT_EINVAL @retval CIOT_ENOTFOUND removing an unknown one @retval CIOT_ENOMEM
 *  @retval CIOT_ERECURSIVE from inside one of the set's callbacks */
CIOT_API CIOT_NODISCARD int ciot_rules_set_function(ciot_rules *r, const char *name,
                                                    size_t name_len, ciot_rules_fn fn,
                                                    void *user_data);

/** The publisher of republish actions (NULL: none; ciot_rules_attach() sets the client). */
CIOT_API void ciot_rules_set_publisher(ciot_rules *r, ciot_rules_publish_fn fn, void *user_data);

/**
 * Opens (creating it if needed) the SQLite database of SQLite actions;
 * ":memory:" is an in-memory one. Replaces the one open before.
 * @retval 0 done
 * @retval CIOT_ENOTBUILT the library was built without SQLite
 * @retval CIOT_EIO       the database could not be opened (ciot_rules_errmsg() says why)
 * @retval CIOT_EINVAL    NULL argument
 * @retval CIOT_ENOMEM    out of memory
 * @retval CIOT_ERECURSIVE from inside one of the set's callbacks
 */
CIOT_API CIOT_NODISCARD int ciot_rules_open_sqlite(ciot_rules *r, const char *path);

/** Called with every output document, before the rule's actions (NULL: none). */
CIOT_API void ciot_rules_set_output_callback(ciot_rules *r, ciot_rules_fn fn, void *user_data);
/** Where action failures go (NULL: they are only counted, see ciot_rules_process()). */
CIOT_API void ciot_rules_set_error_callback(ciot_rules *r, ciot_rules_error_fn fn,
                                            void *user_data);
/** The clock of `timestamp()` (NULL: the system's real-time clock). */
CIOT_API void ciot_rules_set_clock(ciot_rules *r, ciot_rules_clock_fn fn, void *user_data);
/** The random source of `newuuid()` (NULL: OpenSSL's RAND_bytes). */
CIOT_API void ciot_rules_set_random(ciot_rules *r, ciot_rules_random_fn fn, void *user_data);

/* ---- evaluating ---- */

/**
 * Runs every enabled rule whose FROM filter matches @p topic on one message,
 * and the actions of those that fire.
 * @param[out] out_fired  rules that fired; may be NULL
 * @param r               the set
 * @param topic           the message's topic (a topic name), pointer + length
 * @param payload         its payload (any bytes: a payload that is not JSON leaves
 *                        every field Undefined), may be NULL when @p payload_len is 0
 * @param client_id       the publisher's client id for `clientid()`; NULL: "n/a"
 * @retval 0             done (actions that failed went to the error callback)
 * @retval CIOT_EINVAL   NULL set, or @p topic is not a valid topic name
 * @retval CIOT_EUSER    a callback returned non-zero (the other rules still ran)
 * @retval CIOT_ERECURSIVE called from inside one of the set's callbacks
 */
CIOT_API CIOT_NODISCARD int ciot_rules_process(size_t *out_fired, ciot_rules *r,
                                               const char *topic, size_t topic_len,
                                               const void *payload, size_t payload_len,
                                               const char *client_id, size_t client_id_len);

/* ---- the output of a rule that fired ---- */

/** The rule's name. */
CIOT_API const char *ciot_rules_output_rule(const ciot_rules_output *o, size_t *len);
/** The output document (a JSON text; a bare value for SELECT VALUE). */
CIOT_API const char *ciot_rules_output_document(const ciot_rules_output *o, size_t *len);
/** The incoming message's topic. */
CIOT_API const char *ciot_rules_output_topic(const ciot_rules_output *o, size_t *len);
/** The name the function action was registered under ("" for the output callback). */
CIOT_API const char *ciot_rules_output_function(const ciot_rules_output *o, size_t *len);
/** The `timestamp()` of this evaluation, in ms since the Unix epoch. */
CIOT_API int64_t ciot_rules_output_timestamp(const ciot_rules_output *o);

/* ---- on a client ---- */

/**
 * Attaches the set to a client: the client subscribes to the FROM filter of
 * every enabled rule (rules added, removed, enabled or disabled later too,
 * applied on the client's next loop turn) with @p qos, runs
 * ciot_rules_process() once on each message that arrives through them
 * (`clientid()` is "n/a": MQTT does not say who published), and republish
 * actions publish through it (the set's publisher becomes the client).
 * Callbacks then run on the client's driving thread, and a function that
 * returns non-zero makes ciot_client_process() return CIOT_EUSER.
 * No two of the subscriptions overlap, so that a broker that sends a copy
 * per matching subscription cannot make a message run twice: a filter
 * covered by another is not subscribed ('sensors/+/temperature' under
 * 'sensors/#'), and two that partly overlap are replaced by one covering
 * both (doc/rules.md, "On a client"). Several sets may share a client
 * (each with its own subscriptions: keep their filters from overlapping).
 * @retval 0 done
 * @retval CIOT_EINVAL   NULL argument, a QoS other than 0 or 1, or a filter the client
 *                       refuses (beyond the backend's limits; ciot_client_errmsg() says
 *                       which); then nothing stays subscribed
 * @retval CIOT_EBUSY    attached already (to this or another client)
 * @retval CIOT_ESTATE   the client is being freed
 * @retval CIOT_ENOMEM   out of memory
 */
CIOT_API CIOT_NODISCARD int ciot_rules_attach(ciot_rules *r, ciot_client *c, int qos);

/**
 * Undoes ciot_rules_attach(): unsubscribes at once and leaves the set without
 * a publisher, usable on its own or attached again. Allowed from inside the
 * set's and the client's callbacks. ciot_rules_free() detaches by itself;
 * ciot_client_free() of the client detaches the set too.
 * @retval 0 done @retval CIOT_EINVAL NULL @retval CIOT_ESTATE not attached
 */
CIOT_API CIOT_NODISCARD int ciot_rules_detach(ciot_rules *r);

CIOT_END_DECLS

#endif /* CLOUDIOT_RULES_H */
