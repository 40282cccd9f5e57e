/*
 * The pure core of the rules engine: the AWS IoT SQL dialect of
 * protocols.md §3 (version 2016-03-23), compiled once to an AST and
 * evaluated against one message at a time.
 *
 * Internal; never exported. Pure: no I/O, no clock (the caller passes the
 * timestamp), no threads, no globals. Compiling allocates one block with
 * ciot__malloc; evaluating allocates nothing (a fixed scratch area on the
 * stack holds intermediate strings). A compiled rule is read-only during
 * evaluation, so one rule may be evaluated from several threads at once.
 */
#ifndef CIOT_CORE_RULES_SQL_H
#define CIOT_CORE_RULES_SQL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/json_check.h"

#define CIOT__RULES_SQL_VERSION "2016-03-23"
#define CIOT__RULES_MAX_SQL 8192      /* bytes of SQL text */
#define CIOT__RULES_MAX_DEPTH 64      /* nesting of parentheses, calls, NOT, unary - */
#define CIOT__RULES_MAX_HEIGHT 128    /* height of the expression tree */
#define CIOT__RULES_MAX_ITEMS 64      /* SELECT items */
#define CIOT__RULES_MAX_ROOTS 64      /* distinct top-level field names */
#define CIOT__RULES_SCRATCH 8192      /* bytes of intermediate strings per evaluation */
#define CIOT__RULES_DOC_MEMBERS 32    /* top-level payload members a ciot__rules_doc indexes */

typedef struct ciot__rule ciot__rule;

/* Where and why compiling failed. `msg` is "LINE:COL: what" (COL in bytes,
 * both 1-based), e.g. "1:37: expected FROM"; `offset` is the byte offset. */
typedef struct ciot__rules_error {
    size_t offset;
    char msg[160];
} ciot__rules_error;

/*
 * Compiles @p sql (@p len bytes, no NUL needed) for SQL version @p version
 * (@p version_len bytes; only "2016-03-23").
 *
 * @retval 0            *out_rule set; free it with ciot__rules_free()
 * @retval CIOT_EINVAL  a syntax error, an unknown function, a bad literal, a
 *                      FROM that is not a valid topic filter (err set)
 * @retval CIOT_EDEPTH  nesting deeper than CIOT__RULES_MAX_DEPTH (err set)
 * @retval CIOT_ERANGE  SQL too long, too many items or fields (err set)
 * @retval CIOT_EVERSION unknown SQL version (err set)
 * @retval CIOT_ENOMEM  allocation failed
 * @p err may be NULL. A NULL pointer argument (other than err) is CIOT_EINVAL.
 */
int ciot__rules_compile(ciot__rule **out_rule, ciot__rules_error *err, const char *sql, size_t len,
                        const char *version, size_t version_len);

void ciot__rules_free(ciot__rule *rule);

/* One incoming message. client_id NULL means "not MQTT" (clientid() = "n/a").
 * `random` fills buf with n random bytes for newuuid() (returns 0 on
 * success); NULL, or a failure, makes newuuid() Undefined. */
typedef struct ciot__rules_msg {
    const char *topic;
    size_t topic_len;
    const char *payload;
    size_t payload_len;
    const char *client_id;
    size_t client_id_len;
    int64_t timestamp_ms;
    int (*random)(void *ctx, uint8_t *buf, size_t n);
    void *random_ctx;
} ciot__rules_msg;

/*
 * Evaluates @p rule on @p msg: FROM, then WHERE, then SELECT.
 *
 * *out_fired is true when the rule produces a message: the topic matches
 * FROM, WHERE is Boolean true (or absent), and (for SELECT VALUE) the value
 * is not Undefined. Then the output document is written to @p buf (@p cap
 * bytes; NUL-terminated when there is room) and *out_len is its length.
 *
 * @retval 0            done (*out_fired says whether there is output)
 * @retval CIOT_ENOSPC  fired, but @p buf is too small: *out_len is the size needed
 * @retval CIOT_EINVAL  the topic is not a valid topic name, or a NULL argument
 * @retval CIOT_ERANGE  intermediate strings exceed CIOT__RULES_SCRATCH bytes
 * @retval CIOT_EDEPTH  the output would nest deeper than the JSON writer allows
 */
int ciot__rules_eval(bool *out_fired, size_t *out_len, char *buf, size_t cap,
                     const ciot__rule *rule, const ciot__rules_msg *msg);

/*
 * One message prepared for evaluating several rules on it: the payload is
 * validated once, with the first CIOT__RULES_DOC_MEMBERS members of a root
 * object located in the same scan (the rules then look their field names
 * up there), and numbers read from those members are converted and checked
 * for their output form once. Work is done lazily, on the first rule that
 * needs it. Lives in the caller's memory (no allocation); touch the fields
 * only through these functions. Not shared between threads.
 */
typedef struct ciot__rules_doc {
    const ciot__rules_msg *msg;
    const char *topic; /* without a Basic Ingest prefix */
    size_t topic_len;
    int state; /* 0: payload not scanned yet; 1: valid JSON; 2: not JSON */
    ciot_json_value root;
    size_t nmem; /* members of a root object (may exceed CIOT__RULES_DOC_MEMBERS) */
    ciot__json_member mem[CIOT__RULES_DOC_MEMBERS];
    struct {
        uint64_t wa, wb; /* first and last 8 bytes of a key without escapes */
    } kw[CIOT__RULES_DOC_MEMBERS];
    struct {
        uint8_t kind;     /* 0: not read; numbers: 1 Int (i), 2 Decimal (d), 3 neither;
                           * strings: 4 without escapes, 5 with */
        uint8_t verbatim; /* 0: not known; 1: written exactly as in the payload; 2: not */
        int64_t i;
        double d;
    } num[CIOT__RULES_DOC_MEMBERS];
} ciot__rules_doc;

/* Prepares @p doc for @p msg (borrowed: it must outlive the evaluations). */
void ciot__rules_doc_init(ciot__rules_doc *doc, const ciot__rules_msg *msg);

/*
 * ciot__rules_eval() on a prepared message: same results, byte for byte.
 * With @p from_matched the caller vouches that the topic matches the rule's
 * FROM filter with CIOT_MATCH_AWS (e.g. it found the rule through a
 * ciot_topicset of the FROM filters, or the rule shares its FROM with one
 * that was so found) and the topic is not checked again. Errors as
 * ciot__rules_eval().
 */
int ciot__rules_eval_doc(bool *out_fired, size_t *out_len, char *buf, size_t cap,
                         const ciot__rule *rule, ciot__rules_doc *doc, bool from_matched);

/* The topic filter of the FROM clause (borrowed from the rule). */
const char *ciot__rules_from(const ciot__rule *rule, size_t *out_len);

/* The longest numeric string ciot__rules_numeric_string() converts. */
#define CIOT__RULES_MAX_NUMSTR 400

/*
 * A numeric string, AWS IoT SQL's way (^-?\d+(\.\d+)?([eE]-?\d+)?$, at most
 * CIOT__RULES_MAX_NUMSTR bytes; leading zeros of the integer part allowed:
 * "007" is 7), to a double. @p s is @p n bytes, no NUL needed. False for
 * anything else, or a value out of double's range.
 * (lib/core/rules_num.c)
 */
bool ciot__rules_numeric_string(const char *s, size_t n, double *out);

#endif /* CIOT_CORE_RULES_SQL_H */
