/*
 * The SQLite sink of the rules engine (the `sqlite` action of ciot_rules and
 * the emulator's mapping of `dynamoDBv2` `putItem`): one row per output
 * document. Internal.
 *
 * Like DynamoDB's putItem, the sink is schemaless from the rule's point of
 * view: each top-level member of the JSON object is a column, and a table or
 * column that does not exist yet is created (CREATE TABLE IF NOT EXISTS,
 * ALTER TABLE ADD COLUMN). Values: Int -> INTEGER, Decimal -> REAL, String
 * -> TEXT, true/false -> INTEGER 1/0, null -> NULL, objects and arrays ->
 * TEXT holding their JSON. Names are bound as quoted identifiers, values as
 * parameters: nothing of the document is ever pasted into SQL text.
 *
 * Built only with SQLite (meson option `sqlite`); without it, open returns
 * CIOT_ENOTBUILT.
 */
#ifndef CIOT_SERVICES_RULES_SQLITE_H
#define CIOT_SERVICES_RULES_SQLITE_H

#include <stddef.h>

typedef struct ciot__sqlite_sink ciot__sqlite_sink;

/*
 * Opens (or creates) the database at @p path (NUL-terminated; ":memory:"
 * allowed).
 * @retval 0              *out set; close with ciot__sqlite_sink_close()
 * @retval CIOT_ENOTBUILT built without SQLite
 * @retval CIOT_EIO       SQLite could not open it (@p err says why)
 * @retval CIOT_EINVAL    NULL argument
 * @retval CIOT_ENOMEM    out of memory
 * @p err (@p errcap bytes, always NUL-terminated when errcap > 0) may be NULL.
 */
int ciot__sqlite_sink_open(ciot__sqlite_sink **out, const char *path, char *err, size_t errcap);

void ciot__sqlite_sink_close(ciot__sqlite_sink *s);

/*
 * Writes @p doc (a JSON object, @p doc_len bytes) as one row of @p table
 * (1..128 bytes of UTF-8 without U+0000), creating the table and columns
 * as needed, in one transaction.
 * @retval 0            written
 * @retval CIOT_EINVAL  @p doc is not a JSON object, has no member, a member name is empty
 *                      or contains U+0000, two member names differ only in ASCII case
 *                      (SQLite's column names ignore it), or the table name is not
 *                      acceptable: empty, over 128 bytes, not UTF-8, U+0000, or starting
 *                      with "sqlite_" in any case (SQLite reserves those) (@p err says which)
 * @retval CIOT_ERANGE  more members than SQLite allows columns (in the document, or with the
 *                      table's existing columns), or a number too large for a double
 *
 * Duplicate member names: the last value wins (as the JSON reader's
 * look-ups). A number is an INTEGER when it is whole and fits an int64
 * (`25`, `2.5e1`: as the rules engine types it), else a REAL. Columns have
 * no declared type. Rows go to the table as SQLite resolves the name (the
 * ASCII case of table and column names does not matter).
 * @retval CIOT_EIO     SQLite failed (@p err has its message)
 * @retval CIOT_ENOMEM  out of memory
 */
int ciot__sqlite_sink_put(ciot__sqlite_sink *s, const char *table, size_t table_len,
                          const char *doc, size_t doc_len, char *err, size_t errcap);

#endif
