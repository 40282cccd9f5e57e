/* The SQLite sink of the rules engine (lib/services/rules_sqlite.c): rows
 * written by the sink, read back with the sqlite3 API, in memory and in real
 * files under a temporary directory. */
#include "services/rules_sqlite.h"

#include "internal.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef CIOT_TEST_HAVE_SQLITE

/* Built without SQLite: the sink says so, and nothing else happens. */
Test(rules_sqlite, not_built)
{
    ciot__sqlite_sink *s = (ciot__sqlite_sink *)&s;
    char err[128];
    cr_assert_eq(ciot__sqlite_sink_open(&s, ":memory:", err, sizeof err), CIOT_ENOTBUILT);
    cr_assert_null(s);
    cr_assert(strstr(err, "SQLite") != NULL, "%s", err);
    ciot__sqlite_sink_close(NULL);
}

#else

#include <sqlite3.h>

static char tmpdir[64];

static void make_dir(void)
{
    strcpy(tmpdir, "/tmp/ciot-sqlite-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void remove_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(rules_sqlite, .init = make_dir, .fini = remove_dir);

static void path_in_dir(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", tmpdir, name);
}

static ciot__sqlite_sink *open_ok(const char *path)
{
    ciot__sqlite_sink *s = NULL;
    char err[256] = "";
    int r = ciot__sqlite_sink_open(&s, path, err, sizeof err);
    cr_assert_eq(r, 0, "open %s: %d %s", path, r, err);
    cr_assert_not_null(s);
    return s;
}

static int put(ciot__sqlite_sink *s, const char *table, const char *doc, char *err, size_t cap)
{
    return ciot__sqlite_sink_put(s, table, strlen(table), doc, strlen(doc), err, cap);
}

static void put_ok(ciot__sqlite_sink *s, const char *table, const char *doc)
{
    char err[256] = "";
    int r = put(s, table, doc, err, sizeof err);
    cr_assert_eq(r, 0, "put %s into %s: %d %s", doc, table, r, err);
    cr_assert_str_eq(err, "");
}

static sqlite3 *db_open(const char *path)
{
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    return db;
}

static void db_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, msg ? msg : "");
}

static sqlite3_stmt *query(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, sqlite3_errmsg(db));
    return st;
}

static long long count_rows(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = query(db, sql);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    long long n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* The seed's TemperatureAlerts rows, with their types. */
Test(rules_sqlite, seed_temperature_alerts_rows_with_types)
{
    char path[128];
    path_in_dir(path, sizeof path, "alerts.db");
    ciot__sqlite_sink *s = open_ok(path);
    static const char *docs[] = {
        "{\"deviceId\":\"dev42\",\"sensorType\":\"DHT22\",\"temperature\":37.5,"
        "\"timestamp\":1700000000000,\"alertType\":\"HIGH_TEMPERATURE\"}",
        "{\"deviceId\":\"dev7\",\"sensorType\":\"DS18B20\",\"temperature\":41.25,"
        "\"timestamp\":1700000060000,\"alertType\":\"HIGH_TEMPERATURE\"}",
        " { \"deviceId\" : \"dev42\" , \"sensorType\":\"DHT22\",\"temperature\":-3.55e1,"
        "\"timestamp\":1700000120000,\"alertType\":\"LOW_TEMPERATURE\"} ",
    };
    for (int i = 0; i < 3; i++)
        put_ok(s, "TemperatureAlerts", docs[i]);
    ciot__sqlite_sink_close(s);

    sqlite3 *db = db_open(path);
    sqlite3_stmt *st = query(db, "SELECT deviceId, sensorType, temperature, timestamp, alertType,"
                                 " typeof(temperature), typeof(timestamp), typeof(deviceId)"
                                 " FROM TemperatureAlerts ORDER BY rowid");
    static const struct {
        const char *dev, *sensor;
        double t;
        long long ts;
        const char *alert;
    } want[] = {{"dev42", "DHT22", 37.5, 1700000000000LL, "HIGH_TEMPERATURE"},
                {"dev7", "DS18B20", 41.25, 1700000060000LL, "HIGH_TEMPERATURE"},
                {"dev42", "DHT22", -35.5, 1700000120000LL, "LOW_TEMPERATURE"}};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
        cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), want[i].dev);
        cr_assert_str_eq((const char *)sqlite3_column_text(st, 1), want[i].sensor);
        cr_assert_eq(sqlite3_column_type(st, 2), SQLITE_FLOAT);
        cr_assert_eq(sqlite3_column_double(st, 2), want[i].t);
        cr_assert_eq(sqlite3_column_type(st, 3), SQLITE_INTEGER);
        cr_assert_eq(sqlite3_column_int64(st, 3), want[i].ts);
        cr_assert_str_eq((const char *)sqlite3_column_text(st, 4), want[i].alert);
        cr_assert_str_eq((const char *)sqlite3_column_text(st, 5), "real");
        cr_assert_str_eq((const char *)sqlite3_column_text(st, 6), "integer");
        cr_assert_str_eq((const char *)sqlite3_column_text(st, 7), "text");
    }
    cr_assert_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    /* the columns are the members, in document order */
    st = query(db, "SELECT name FROM pragma_table_info('TemperatureAlerts') ORDER BY cid");
    static const char *cols[] = {"deviceId", "sensorType", "temperature", "timestamp", "alertType"};
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
        cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), cols[i]);
    }
    cr_assert_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* A later document with a new member adds a column; older rows have NULL. */
Test(rules_sqlite, new_member_adds_a_column)
{
    char path[128];
    path_in_dir(path, sizeof path, "grow.db");
    ciot__sqlite_sink *s = open_ok(path);
    put_ok(s, "T", "{\"deviceId\":\"d1\",\"temperature\":36}");
    put_ok(s, "T", "{\"deviceId\":\"d2\",\"temperature\":37,\"humidity\":80.5}");
    /* fewer members than the table has: the others are NULL */
    put_ok(s, "T", "{\"humidity\":10}");
    /* a different order of the same columns */
    put_ok(s, "T", "{\"temperature\":38,\"deviceId\":\"d3\"}");
    /* a member differing only in ASCII case is the same column (SQLite's rule) */
    put_ok(s, "T", "{\"DEVICEID\":\"d4\"}");
    ciot__sqlite_sink_close(s);

    sqlite3 *db = db_open(path);
    cr_assert_eq(count_rows(db, "SELECT count(*) FROM pragma_table_info('T')"), 3);
    sqlite3_stmt *st = query(db, "SELECT deviceId, temperature, humidity FROM T ORDER BY rowid");
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), "d1");
    cr_assert_eq(sqlite3_column_int64(st, 1), 36);
    cr_assert_eq(sqlite3_column_type(st, 2), SQLITE_NULL);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), "d2");
    cr_assert_eq(sqlite3_column_double(st, 2), 80.5);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_eq(sqlite3_column_type(st, 0), SQLITE_NULL);
    cr_assert_eq(sqlite3_column_type(st, 1), SQLITE_NULL);
    cr_assert_eq(sqlite3_column_type(st, 2), SQLITE_INTEGER);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), "d3");
    cr_assert_eq(sqlite3_column_int64(st, 1), 38);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), "d4");
    cr_assert_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* Values of every JSON type, escapes, nesting, duplicates. */
Test(rules_sqlite, value_types_nested_and_duplicates)
{
    char path[128];
    path_in_dir(path, sizeof path, "types.db");
    ciot__sqlite_sink *s = open_ok(path);
    put_ok(s, "v",
           "{\"i\":-9223372036854775808,\"whole\":2.50e1,\"d\":0.1,\"big\":12345678901234567890,"
           "\"t\":true,\"f\":false,\"n\":null,\"s\":\"a\\\"b\\n\\u00e9\\ud83d\\ude00\\u0000z\","
           "\"plain\":\"h\\u00e9\",\"raw\":\"caf\xc3\xa9\","
           "\"o\":{\"a\": [1, {\"b\":null}] },\"a\":[ 1,2 ,\"x\"],\"e\":\"\","
           "\"dup\":1,\"dup\":\"last\"}");
    ciot__sqlite_sink_close(s);

    sqlite3 *db = db_open(path);
    sqlite3_stmt *st = query(db, "SELECT i, whole, d, big, t, f, n, s, plain, raw, o, a, e, dup,"
                                 " typeof(whole), typeof(big), typeof(t) FROM v");
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_eq(sqlite3_column_type(st, 0), SQLITE_INTEGER);
    cr_assert_eq(sqlite3_column_int64(st, 0), INT64_MIN);
    /* as the rules engine: a whole number that fits an int64 is an Int */
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 14), "integer");
    cr_assert_eq(sqlite3_column_int64(st, 1), 25);
    cr_assert_eq(sqlite3_column_double(st, 2), 0.1);
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 15), "real");
    cr_assert_eq(sqlite3_column_double(st, 3), 12345678901234567890.0);
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 16), "integer");
    cr_assert_eq(sqlite3_column_int64(st, 4), 1);
    cr_assert_eq(sqlite3_column_int64(st, 5), 0);
    cr_assert_eq(sqlite3_column_type(st, 6), SQLITE_NULL);
    /* unescaped to UTF-8, the NUL kept (the length says so) */
    static const char want_s[] = "a\"b\n\xc3\xa9\xf0\x9f\x98\x80\0z";
    cr_assert_eq(sqlite3_column_type(st, 7), SQLITE_TEXT);
    cr_assert_eq(sqlite3_column_bytes(st, 7), (int)sizeof want_s - 1);
    cr_assert_arr_eq(sqlite3_column_blob(st, 7), want_s, sizeof want_s - 1);
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 8), "h\xc3\xa9");
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 9), "caf\xc3\xa9");
    /* objects and arrays: their JSON text, byte for byte */
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 10), "{\"a\": [1, {\"b\":null}] }");
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 11), "[ 1,2 ,\"x\"]");
    cr_assert_eq(sqlite3_column_type(st, 12), SQLITE_TEXT);
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 12), "");
    /* duplicate member: the last wins, one column */
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 13), "last");
    cr_assert_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    cr_assert_eq(count_rows(db, "SELECT count(*) FROM pragma_table_info('v') WHERE name='dup'"), 1);
    cr_assert_eq(count_rows(db, "SELECT count(*) FROM pragma_table_info('v')"), 14);
    sqlite3_close(db);
}

/* Names are quoted identifiers: quotes, spaces, SQL, Unicode are just names. */
Test(rules_sqlite, hostile_names_are_only_names)
{
    char path[128];
    path_in_dir(path, sizeof path, "names.db");
    ciot__sqlite_sink *s = open_ok(path);
    const char *t1 = "we\"ird ta'ble; DROP TABLE x;--";
    const char *t2 = "temp\xc3\xa9rature \xe6\xb8\xa9\xe5\xba\xa6 \xf0\x9f\x8c\xa1";
    put_ok(s, "x", "{\"keep\":1}");
    put_ok(s, t1, "{\"a\\\"b\":1,\"c d\":2,\"e'); DROP TABLE x;--\":3,\"\\u00fc\\\\\":4}");
    put_ok(s, t2, "{\"\xe6\xb8\xa9\xe5\xba\xa6\":21.5,\"\\\"\\\"\":\"q\"}");
    put_ok(s, t2, "{\"\xe6\xb8\xa9\xe5\xba\xa6\":22.5}");
    char t128[129];
    memset(t128, 'x', 128);
    t128[128] = '\0';
    put_ok(s, t128, "{\"a\":1}");
    ciot__sqlite_sink_close(s);

    sqlite3 *db = db_open(path);
    cr_assert_eq(count_rows(db, "SELECT count(*) FROM x"), 1);
    cr_assert_eq(count_rows(db, "SELECT \"a\"\"b\" + \"c d\" + \"e'); DROP TABLE x;--\" + \"\xc3\xbc\\\""
                                " FROM \"we\"\"ird ta'ble; DROP TABLE x;--\""),
                 10);
    cr_assert_eq(count_rows(db, "SELECT count(*) FROM \"temp\xc3\xa9rature \xe6\xb8\xa9\xe5\xba\xa6"
                                " \xf0\x9f\x8c\xa1\" WHERE \"\"\"\"\"\" = 'q'"),
                 1);
    cr_assert_eq(count_rows(db, "SELECT count(*) FROM sqlite_master WHERE type='table'"), 4);
    sqlite3_close(db);
}

static void expect_einval(ciot__sqlite_sink *s, const char *table, size_t tlen, const char *doc,
                          size_t dlen, const char *needle)
{
    char err[256] = "";
    int r = ciot__sqlite_sink_put(s, table, tlen, doc, dlen, err, sizeof err);
    cr_assert_eq(r, CIOT_EINVAL, "%.*s / %.*s: %d (%s)", (int)tlen, table ? table : "",
                 (int)dlen, doc ? doc : "", r, err);
    cr_assert(strstr(err, needle) != NULL, "message \"%s\" lacks \"%s\"", err, needle);
}

Test(rules_sqlite, refused_table_names)
{
    ciot__sqlite_sink *s = open_ok(":memory:");
    const char *doc = "{\"a\":1}";
    size_t dl = strlen(doc);
    expect_einval(s, "sqlite_master", 13, doc, dl, "sqlite_");
    expect_einval(s, "SQLite_x", 8, doc, dl, "sqlite_");
    expect_einval(s, "", 0, doc, dl, "1 to 128 bytes");
    char t129[129];
    memset(t129, 'x', sizeof t129);
    expect_einval(s, t129, sizeof t129, doc, dl, "1 to 128 bytes");
    expect_einval(s, "a\0b", 3, doc, dl, "U+0000");
    expect_einval(s, "\xc3(", 2, doc, dl, "UTF-8");
    expect_einval(s, "\xed\xa0\x80", 3, doc, dl, "UTF-8"); /* a surrogate */
    expect_einval(s, NULL, 1, doc, dl, "NULL");
    char err[64];
    cr_assert_eq(ciot__sqlite_sink_put(NULL, "t", 1, doc, dl, err, sizeof err), CIOT_EINVAL);
    /* "sqlite" alone and a name merely containing it are fine */
    char e2[256] = "";
    cr_assert_eq(ciot__sqlite_sink_put(s, "sqlite", 6, doc, dl, e2, sizeof e2), 0, "%s", e2);
    cr_assert_eq(ciot__sqlite_sink_put(s, "my_sqlite_t", 11, doc, dl, e2, sizeof e2), 0, "%s", e2);
    ciot__sqlite_sink_close(s);
}

Test(rules_sqlite, refused_documents)
{
    ciot__sqlite_sink *s = open_ok(":memory:");
    static const struct {
        const char *doc, *needle;
    } bad[] = {
        {"[1,2]", "not a JSON object"},
        {"42", "not a JSON object"},
        {"\"s\"", "not a JSON object"},
        {"null", "not a JSON object"},
        {"not json", "not valid JSON"},
        {"{\"a\":1", "not valid JSON"},
        {"{\"a\":1,}", "not valid JSON"},
        {"{\"a\":1} x", "not valid JSON"},
        {"", "not valid JSON"},
        {"{}", "no member"},
        {" { } ", "no member"},
        {"{\"\":1}", "empty"},
        {"{\"a\\u0000b\":1}", "U+0000"},
        {"{\"temp\":1,\"TEMP\":2}", "same column"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_einval(s, "t", 1, bad[i].doc, strlen(bad[i].doc), bad[i].needle);
    expect_einval(s, "t", 1, NULL, 3, "NULL");
    /* too deep for the reader */
    size_t depth = 300, n = 0;
    char *deep = malloc(2 * depth + 16);
    cr_assert_not_null(deep);
    n += (size_t)sprintf(deep, "{\"a\":");
    for (size_t i = 0; i < depth; i++)
        deep[n++] = '[';
    for (size_t i = 0; i < depth; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    expect_einval(s, "t", 1, deep, n, "nested too deep");
    free(deep);
    /* a number beyond a double */
    char err[256] = "";
    cr_assert_eq(put(s, "t", "{\"x\":1e400}", err, sizeof err), CIOT_ERANGE);
    cr_assert(strstr(err, "too large") != NULL, "%s", err);
    /* nothing was written by any of them: the table does not even exist */
    put_ok(s, "t", "{\"ok\":1}");
    ciot__sqlite_sink_close(s);
}

Test(rules_sqlite, too_many_columns_is_erange)
{
    ciot__sqlite_sink *s = open_ok(":memory:");
    /* SQLite's default limit is 2000 columns */
    size_t cap = 2100 * 16, n = 0;
    char *doc = malloc(cap);
    cr_assert_not_null(doc);
    doc[n++] = '{';
    for (int i = 0; i < 2001; i++)
        n += (size_t)snprintf(doc + n, cap - n, "%s\"c%d\":%d", i ? "," : "", i, i);
    doc[n++] = '}';
    char err[256] = "";
    cr_assert_eq(ciot__sqlite_sink_put(s, "w", 1, doc, n, err, sizeof err), CIOT_ERANGE, "%s", err);
    cr_assert(strstr(err, "2000") != NULL, "%s", err);
    /* 1999 columns, then 2 more: the table would pass the limit */
    n = 0;
    doc[n++] = '{';
    for (int i = 0; i < 1999; i++)
        n += (size_t)snprintf(doc + n, cap - n, "%s\"c%d\":%d", i ? "," : "", i, i);
    doc[n++] = '}';
    cr_assert_eq(ciot__sqlite_sink_put(s, "w", 1, doc, n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(put(s, "w", "{\"new1\":1,\"new2\":2}", err, sizeof err), CIOT_ERANGE);
    cr_assert(strstr(err, "limit") != NULL, "%s", err);
    put_ok(s, "w", "{\"new1\":1}"); /* exactly 2000 */
    free(doc);
    ciot__sqlite_sink_close(s);
}

/* A file database closed and reopened: the table is found again, grown, used. */
Test(rules_sqlite, file_database_reopened)
{
    char path[128];
    path_in_dir(path, sizeof path, "re.db");
    for (int round = 0; round < 3; round++) {
        ciot__sqlite_sink *s = open_ok(path);
        char doc[128];
        snprintf(doc, sizeof doc, "{\"deviceId\":\"d%d\",\"r%d\":%d}", round, round, round);
        put_ok(s, "TemperatureAlerts", doc);
        put_ok(s, "TemperatureAlerts", doc);
        ciot__sqlite_sink_close(s);
    }
    sqlite3 *db = db_open(path);
    cr_assert_eq(count_rows(db, "SELECT count(*) FROM TemperatureAlerts"), 6);
    cr_assert_eq(count_rows(db, "SELECT count(*) FROM pragma_table_info('TemperatureAlerts')"), 4);
    cr_assert_eq(count_rows(db, "SELECT count(*) FROM TemperatureAlerts WHERE r2 = 2"), 2);
    cr_assert_eq(count_rows(db, "SELECT count(*) FROM TemperatureAlerts WHERE r1 IS NULL"), 4);
    sqlite3_close(db);
}

/* Many rows of one shape (the steady state: one cached INSERT), several tables. */
Test(rules_sqlite, many_rows_several_tables)
{
    ciot__sqlite_sink *s = open_ok(":memory:");
    char doc[160], table[16];
    for (int i = 0; i < 3000; i++) {
        snprintf(table, sizeof table, "t%d", i % 40); /* more tables than the caches hold */
        snprintf(doc, sizeof doc, "{\"deviceId\":\"d%d\",\"temperature\":%d.5,\"k%d\":1}", i,
                 i % 50, i % 37);
        put_ok(s, table, doc);
    }
    ciot__sqlite_sink_close(s);
}

static void expect_open_eio(const char *path, const char *needle)
{
    ciot__sqlite_sink *s = (ciot__sqlite_sink *)&s;
    char err[256] = "";
    int r = ciot__sqlite_sink_open(&s, path, err, sizeof err);
    cr_assert_eq(r, CIOT_EIO, "%s: %d %s", path, r, err);
    cr_assert_null(s);
    cr_assert(strstr(err, needle) != NULL, "message \"%s\" lacks \"%s\"", err, needle);
}

Test(rules_sqlite, unopenable_paths_are_eio)
{
    char p[160];
    path_in_dir(p, sizeof p, "no/such/dir/x.db");
    expect_open_eio(p, "unable to open");
    expect_open_eio(tmpdir, "unable to open"); /* a directory */
    path_in_dir(p, sizeof p, "garbage.db");
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f);
    for (int i = 0; i < 512; i++)
        fputs("this is not a database ", f);
    fclose(f);
    expect_open_eio(p, "not a database");
    /* read-only: only meaningful when permissions apply to us (not root) */
    if (geteuid() != 0) {
        path_in_dir(p, sizeof p, "ro.db");
        ciot__sqlite_sink *s = open_ok(p);
        put_ok(s, "t", "{\"a\":1}");
        ciot__sqlite_sink_close(s);
        cr_assert_eq(chmod(p, 0444), 0);
        expect_open_eio(p, "read-only");
    }
    char err[8];
    cr_assert_eq(ciot__sqlite_sink_open(NULL, ":memory:", err, sizeof err), CIOT_EINVAL);
    ciot__sqlite_sink *s = NULL;
    cr_assert_eq(ciot__sqlite_sink_open(&s, NULL, NULL, 0), CIOT_EINVAL);
    ciot__sqlite_sink_close(NULL);
}

/* A table created outside with its own constraints: violations are EIO with
 * SQLite's message, and the row is rolled back. */
Test(rules_sqlite, schema_clash_is_eio_and_rolled_back)
{
    char path[128];
    path_in_dir(path, sizeof path, "clash.db");
    sqlite3 *db = db_open(path);
    db_exec(db, "CREATE TABLE TemperatureAlerts (deviceId TEXT NOT NULL,"
                " temperature REAL CHECK (temperature < 100), timestamp INTEGER)");
    ciot__sqlite_sink *s = open_ok(path);
    put_ok(s, "TemperatureAlerts", "{\"deviceId\":\"d1\",\"temperature\":37.5}");
    char err[256] = "";
    cr_assert_eq(put(s, "TemperatureAlerts", "{\"deviceId\":\"d1\",\"temperature\":150}", err,
                     sizeof err),
                 CIOT_EIO);
    cr_assert(strstr(err, "CHECK constraint failed") != NULL, "%s", err);
    /* a new column and a violation in one row: neither stays */
    cr_assert_eq(put(s, "TemperatureAlerts", "{\"deviceId\":\"d2\",\"temperature\":200,\"extra\":1}",
                     err, sizeof err),
                 CIOT_EIO);
    cr_assert(strstr(err, "CHECK constraint failed") != NULL, "%s", err);
    cr_assert_eq(put(s, "TemperatureAlerts", "{\"temperature\":20}", err, sizeof err), CIOT_EIO);
    cr_assert(strstr(err, "NOT NULL constraint failed") != NULL, "%s", err);
    put_ok(s, "TemperatureAlerts", "{\"deviceId\":\"d3\",\"temperature\":38}");
    cr_assert_eq(count_rows(db, "SELECT count(*) FROM TemperatureAlerts"), 2);
    cr_assert_eq(count_rows(db, "SELECT count(*) FROM pragma_table_info('TemperatureAlerts')"), 3);
    /* the sink's transaction is over: another connection can write */
    db_exec(db, "INSERT INTO TemperatureAlerts (deviceId) VALUES ('outside')");
    /* a view is not a table */
    db_exec(db, "CREATE VIEW v AS SELECT 1 AS a");
    cr_assert_eq(put(s, "v", "{\"a\":1}", err, sizeof err), CIOT_EIO);
    cr_assert(strstr(err, "SQLite") != NULL, "%s", err);
    ciot__sqlite_sink_close(s);
    sqlite3_close(db);
}

/* The schema changed by another connection after the sink cached it: the
 * sink looks again and goes on. */
Test(rules_sqlite, schema_changed_outside_is_followed)
{
    char path[128];
    path_in_dir(path, sizeof path, "changed.db");
    ciot__sqlite_sink *s = open_ok(path);
    put_ok(s, "t", "{\"a\":1,\"b\":2}");
    sqlite3 *db = db_open(path);
    db_exec(db, "DROP TABLE t");
    put_ok(s, "t", "{\"a\":3,\"b\":4}"); /* cached statement, table gone */
    cr_assert_eq(count_rows(db, "SELECT a + b FROM t"), 7);
    db_exec(db, "DROP TABLE t; CREATE TABLE t (a)");
    put_ok(s, "t", "{\"a\":5,\"b\":6}"); /* cached columns, one gone */
    cr_assert_eq(count_rows(db, "SELECT a * b FROM t"), 30);
    sqlite3_close(db);
    ciot__sqlite_sink_close(s);
}

/* Another connection holding the write lock: the sink waits its busy time,
 * then reports SQLite's message; nothing half-written. */
Test(rules_sqlite, locked_database_is_eio_after_waiting)
{
    char path[128];
    path_in_dir(path, sizeof path, "locked.db");
    ciot__sqlite_sink *s = open_ok(path);
    put_ok(s, "t", "{\"a\":1}");
    sqlite3 *db = db_open(path);
    db_exec(db, "BEGIN EXCLUSIVE");
    char err[256] = "";
    cr_assert_eq(put(s, "t", "{\"a\":2}", err, sizeof err), CIOT_EIO);
    cr_assert(strstr(err, "locked") != NULL, "message: %s", err);
    db_exec(db, "COMMIT");
    put_ok(s, "t", "{\"a\":3}");
    cr_assert_eq(count_rows(db, "SELECT sum(a) FROM t"), 4);
    sqlite3_close(db);
    ciot__sqlite_sink_close(s);
}

/* ---- allocation failures: every one of the sink's allocations failing in
 * turn gives CIOT_ENOMEM (or success), never a crash or a leak ---- */

static struct {
    long n, fail_at, live;
} fa;

static void *fa_malloc(size_t n, void *ctx)
{
    (void)ctx;
    if (++fa.n == fa.fail_at)
        return NULL;
    void *p = malloc(n);
    if (p)
        fa.live++;
    return p;
}

static void *fa_realloc(void *p, size_t n, void *ctx)
{
    (void)ctx;
    if (++fa.n == fa.fail_at)
        return NULL;
    void *q = realloc(p, n);
    if (q && !p)
        fa.live++;
    return q;
}

static void fa_free(void *p, void *ctx)
{
    (void)ctx;
    if (p)
        fa.live--;
    free(p);
}

Test(rules_sqlite, allocation_failures)
{
    ciot_allocator a = {fa_malloc, fa_realloc, fa_free, NULL};
    cr_assert_eq(ciot_set_allocator(&a), 0);
    int ok = 0;
    for (long k = 1; k < 200; k++) {
        fa.n = 0;
        fa.fail_at = k;
        ciot__sqlite_sink *s = NULL;
        char err[256] = "";
        int r = ciot__sqlite_sink_open(&s, ":memory:", err, sizeof err);
        if (r) {
            cr_assert_eq(r, CIOT_ENOMEM, "%d %s", r, err);
            cr_assert_eq(fa.live, 0);
            continue;
        }
        int fails = 0;
        const char *docs[] = {"{\"a\":1,\"b\":\"x\\ny\"}", "{\"a\":2,\"c\":[1]}",
                              "{\"a\":3,\"b\":\"z\"}", "{\"d\":null}"};
        for (int i = 0; i < 4; i++) {
            r = put(s, i == 3 ? "u" : "t", docs[i], err, sizeof err);
            if (r) {
                cr_assert_eq(r, CIOT_ENOMEM, "fail_at %ld, doc %d: %d %s", k, i, r, err);
                cr_assert_str_eq(err, "out of memory");
                fails++;
            }
        }
        /* after a failure the sink is still usable */
        long made = fa.n;
        fa.fail_at = -1;
        put_ok(s, "t", "{\"a\":9,\"e\":1}");
        ciot__sqlite_sink_close(s);
        cr_assert_eq(fa.live, 0, "fail_at %ld: %ld blocks leaked", k, fa.live);
        if (fails == 0 && made < k) {
            ok = 1; /* no allocation left to fail */
            break;
        }
    }
    cr_assert(ok, "the sink made more than 200 allocations for 5 rows");
}

#endif
