/*
 * libFuzzer target: the rules engine core (AWS IoT SQL, protocols.md §3).
 *
 * Input: SQL, a 0x00 byte, then a payload. When the SQL starts with `!`
 * the rest is used as a select list: `SELECT <rest> FROM '#'`, so most
 * inputs reach the evaluator. Checks:
 *  - compiling never crashes; a failure carries a message and an offset
 *    inside the text;
 *  - a compiled rule evaluates on the payload (topic `a/b/c`) with 0,
 *    CIOT_ERANGE (scratch) or CIOT_EDEPTH; when it fires, the output is one
 *    valid JSON text (RFC 8259, checked with ciot_json_validate), and
 *    measuring with no buffer gives the same length.
 */
#include "core/rules_sql.h"
#include "internal.h"

#include <cloudiot/json.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* newuuid()'s source: deterministic bytes */
static int fuzz_random(void *ctx, uint8_t *buf, size_t n)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)(i * 37u + 11u);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    const char *nul = memchr(in, 0, size);
    size_t sql_len = nul ? (size_t)(nul - in) : size;
    const char *payload = nul ? nul + 1 : "";
    size_t payload_len = nul ? size - sql_len - 1 : 0;

    static char sql[CIOT__RULES_MAX_SQL + 64];
    size_t n = sql_len;
    if (sql_len > 0 && in[0] == '!' && sql_len < CIOT__RULES_MAX_SQL) {
        memcpy(sql, "SELECT ", 7);
        memcpy(sql + 7, in + 1, sql_len - 1);
        memcpy(sql + 7 + sql_len - 1, " FROM '#'", 9);
        n = 7 + sql_len - 1 + 9;
    } else {
        if (sql_len > sizeof sql)
            return 0;
        memcpy(sql, in, sql_len);
    }
    ciot__rule *r = NULL;
    ciot__rules_error err;
    int rc = ciot__rules_compile(&r, &err, sql, n, CIOT__RULES_SQL_VERSION,
                                 sizeof CIOT__RULES_SQL_VERSION - 1);
    if (rc) {
        if (r || err.msg[0] == 0 || err.offset > n)
            abort();
        return 0;
    }
    static char out[65536];
    ciot__rules_msg m = {"a/b/c", 5, payload, payload_len, "fuzz", 4, 1700000000000, fuzz_random, NULL};
    bool fired = false;
    size_t len = 0;
    rc = ciot__rules_eval(&fired, &len, out, sizeof out, r, &m);
    if (rc != 0 && rc != CIOT_ERANGE && rc != CIOT_EDEPTH && rc != CIOT_ENOSPC)
        abort();
    if (rc == 0 && fired) {
        /* the library's strict reader (jansson refuses numbers beyond a
         * double, which payloads may hold and nested values copy verbatim) */
        if (ciot_json_validate(out, len) != 0)
            abort();
        bool fired2 = false;
        size_t need = 0;
        if (ciot__rules_eval(&fired2, &need, NULL, 0, r, &m) != CIOT_ENOSPC || !fired2 ||
            need != len)
            abort();
    }
    ciot__rules_free(r);
    return 0;
}
