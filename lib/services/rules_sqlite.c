/*
 * The SQLite sink of the rules engine (services/rules_sqlite.h): one row per
 * JSON object, its top-level members as columns.
 *
 * The document is read with the core on-demand reader (no tree). Names go
 * into SQL text only as quoted identifiers ("" doubled); values are always
 * bound parameters. Columns are created without a declared type, so each
 * value keeps the storage class it is bound with (INTEGER, REAL, TEXT,
 * NULL), as a DynamoDB attribute keeps its type.
 *
 * Steady state: one cached INSERT statement per (table, column list), run in
 * a transaction with cached BEGIN IMMEDIATE / COMMIT statements; no schema
 * look-up. The first row of a column list looks the table up (pragma
 * table_info, cached per table), creates it or adds the missing columns, and
 * prepares the INSERT. Any failure rolls the row back and forgets what the
 * sink knew about that table; a failure that may come from stale knowledge
 * (the schema changed under us: SQLITE_ERROR / SQLITE_SCHEMA) is retried
 * once from a fresh look-up.
 *
 * SQLite allocates through its own allocator (sqlite3_config is process-wide
 * and not the library's to set); the sink's own memory goes through
 * ciot__malloc.
 */
#include "services/rules_sqlite.h"

#include "internal.h"

#include <cloudiot/error.h>

#include <stdio.h>

#ifdef CIOT_HAVE_SQLITE

#include "core/utf8.h"

#include <cloudiot/json.h>

#include <sqlite3.h>
#include <stdint.h>
#include <string.h>

#define MAX_TABLE_NAME 128
#define STMT_CACHE 32   /* prepared INSERTs kept, least recently used evicted */
#define TABLE_CACHE 32  /* tables whose columns are known */
#define BUSY_TIMEOUT_MS 2000

typedef struct tinfo {
    char *name; /* exact bytes as first used; SQLite compares ASCII case-insensitively */
    size_t len;
    char **cols; /* known column names (NUL-terminated, no NUL inside) */
    size_t *col_lens;
    size_t ncols, capcols;
    uint64_t used;
} tinfo;

typedef struct scache {
    uint64_t hash;
    char *key; /* table \0 col1 \0 col2 ... */
    size_t key_len;
    sqlite3_stmt *st;
    uint64_t used;
} scache;

typedef struct member {
    size_t name_off, name_len; /* in buf */
    ciot_json_value v;
    size_t str_off, str_len; /* unescaped string value in buf (CIOT_JSON_STRING with escapes) */
    bool str_in_buf;
} member;

struct ciot__sqlite_sink {
    sqlite3 *db;
    sqlite3_stmt *begin, *commit, *rollback, *info;
    tinfo tables[TABLE_CACHE];
    size_t ntables;
    scache stmts[STMT_CACHE];
    size_t nstmts;
    uint64_t tick;
    /* scratch, grown as needed and kept */
    member *m;
    size_t mcap;
    char *buf; /* member names, unescaped strings */
    size_t bufcap;
    char *sql; /* SQL text or the statement key */
    size_t sqlcap, sqllen;
};

static void seterr(char *err, size_t cap, const char *fmt, ...) CIOT__PRINTF(3, 4);
static void seterr(char *err, size_t cap, const char *fmt, ...)
{
    if (!err || cap == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 16;
    while (n < need) {
        if (n > SIZE_MAX / 2 / elem)
            return CIOT_ENOMEM;
        n *= 2;
    }
    void *q = ciot__realloc(*p, n * elem);
    if (!q)
        return CIOT_ENOMEM;
    *p = q;
    *cap = n;
    return 0;
}

/* ---- SQL text builder (s->sql) ---- */

static int sql_put(ciot__sqlite_sink *s, const char *b, size_t n)
{
    if (n > SIZE_MAX - s->sqllen - 1)
        return CIOT_ENOMEM;
    void *p = s->sql;
    if (grow(&p, &s->sqlcap, s->sqllen + n + 1, 1))
        return CIOT_ENOMEM;
    s->sql = p;
    memcpy(s->sql + s->sqllen, b, n);
    s->sqllen += n;
    s->sql[s->sqllen] = '\0';
    return 0;
}

static int sql_str(ciot__sqlite_sink *s, const char *z) { return sql_put(s, z, strlen(z)); }

/* "name" with every " doubled */
static int sql_ident(ciot__sqlite_sink *s, const char *name, size_t len)
{
    if (sql_put(s, "\"", 1))
        return CIOT_ENOMEM;
    size_t i = 0;
    while (i < len) {
        const char *q = memchr(name + i, '"', len - i);
        size_t n = q ? (size_t)(q - (name + i)) + 1 : len - i;
        if (sql_put(s, name + i, n))
            return CIOT_ENOMEM;
        if (q && sql_put(s, "\"", 1))
            return CIOT_ENOMEM;
        i += n;
    }
    return sql_put(s, "\"", 1);
}

/* ---- names ---- */

/* SQLite's identifier comparison: ASCII letters fold, other bytes compare as is. */
static bool name_eq_ci(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x + 32);
        if (y >= 'A' && y <= 'Z')
            y = (unsigned char)(y + 32);
        if (x != y)
            return false;
    }
    return true;
}

static uint64_t fnv(uint64_t h, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211u;
    }
    return h;
}

/* ---- caches ---- */

static void tinfo_clear(tinfo *t)
{
    for (size_t i = 0; i < t->ncols; i++)
        ciot__free(t->cols[i]);
    ciot__free(t->cols);
    ciot__free(t->col_lens);
    ciot__free(t->name);
    memset(t, 0, sizeof *t);
}

static tinfo *tinfo_find(ciot__sqlite_sink *s, const char *name, size_t len)
{
    for (size_t i = 0; i < s->ntables; i++)
        if (name_eq_ci(s->tables[i].name, s->tables[i].len, name, len))
            return &s->tables[i];
    return NULL;
}

static void tinfo_forget(ciot__sqlite_sink *s, const char *name, size_t len)
{
    tinfo *t = tinfo_find(s, name, len);
    if (!t)
        return;
    tinfo_clear(t);
    *t = s->tables[--s->ntables];
    memset(&s->tables[s->ntables], 0, sizeof s->tables[0]);
}

static int tinfo_add_col(tinfo *t, const char *name, size_t len)
{
    if (t->ncols == t->capcols) {
        size_t n = t->capcols ? t->capcols * 2 : 16;
        char **c = ciot__realloc(t->cols, n * sizeof *c);
        if (!c)
            return CIOT_ENOMEM;
        t->cols = c;
        size_t *l = ciot__realloc(t->col_lens, n * sizeof *l);
        if (!l)
            return CIOT_ENOMEM;
        t->col_lens = l;
        t->capcols = n;
    }
    char *d = ciot__strndup(name, len);
    if (!d)
        return CIOT_ENOMEM;
    t->cols[t->ncols] = d;
    t->col_lens[t->ncols++] = len;
    return 0;
}

static bool tinfo_has(const tinfo *t, const char *name, size_t len)
{
    for (size_t i = 0; i < t->ncols; i++)
        if (name_eq_ci(t->cols[i], t->col_lens[i], name, len))
            return true;
    return false;
}

static void stmt_drop(ciot__sqlite_sink *s, size_t i)
{
    sqlite3_finalize(s->stmts[i].st);
    ciot__free(s->stmts[i].key);
    s->stmts[i] = s->stmts[--s->nstmts];
    memset(&s->stmts[s->nstmts], 0, sizeof s->stmts[0]);
}

/* ---- open / close ---- */

static const char *db_msg(sqlite3 *db, int rc)
{
    return db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
}

static int prep(ciot__sqlite_sink *s, const char *sql, sqlite3_stmt **st, char *err, size_t errcap)
{
    int rc = sqlite3_prepare_v2(s->db, sql, -1, st, NULL);
    if (rc == SQLITE_OK)
        return 0;
    seterr(err, errcap, "SQLite: %s", sqlite3_errmsg(s->db));
    return rc == SQLITE_NOMEM ? CIOT_ENOMEM : CIOT_EIO;
}

int ciot__sqlite_sink_open(ciot__sqlite_sink **out, const char *path, char *err, size_t errcap)
{
    if (err && errcap)
        err[0] = '\0';
    if (!out || !path) {
        seterr(err, errcap, "NULL argument");
        return CIOT_EINVAL;
    }
    *out = NULL;
    ciot__sqlite_sink *s = ciot__calloc(1, sizeof *s);
    if (!s) {
        seterr(err, errcap, "out of memory");
        return CIOT_ENOMEM;
    }
    int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        seterr(err, errcap, "SQLite cannot open \"%s\": %s", path, db_msg(s->db, rc));
        ciot__sqlite_sink_close(s);
        return rc == SQLITE_NOMEM ? CIOT_ENOMEM : CIOT_EIO;
    }
    sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
    /* Read the schema now, so that "file is not a database" shows here. */
    rc = sqlite3_exec(s->db, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        seterr(err, errcap, "SQLite cannot use \"%s\": %s", path, sqlite3_errmsg(s->db));
        ciot__sqlite_sink_close(s);
        return rc == SQLITE_NOMEM ? CIOT_ENOMEM : CIOT_EIO;
    }
    /* SQLite falls back to read-only when it may not write the file: a sink
     * must write, so say so now rather than at the first row. */
    if (sqlite3_db_readonly(s->db, "main") == 1) {
        seterr(err, errcap, "SQLite opened \"%s\" read-only (no write permission)", path);
        ciot__sqlite_sink_close(s);
        return CIOT_EIO;
    }
    int r;
    if ((r = prep(s, "BEGIN IMMEDIATE", &s->begin, err, errcap)) ||
        (r = prep(s, "COMMIT", &s->commit, err, errcap)) ||
        (r = prep(s, "ROLLBACK", &s->rollback, err, errcap)) ||
        (r = prep(s, "SELECT name FROM pragma_table_info(?1)", &s->info, err, errcap))) {
        ciot__sqlite_sink_close(s);
        return r;
    }
    *out = s;
    return 0;
}

void ciot__sqlite_sink_close(ciot__sqlite_sink *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nstmts; i++) {
        sqlite3_finalize(s->stmts[i].st);
        ciot__free(s->stmts[i].key);
    }
    for (size_t i = 0; i < s->ntables; i++)
        tinfo_clear(&s->tables[i]);
    sqlite3_finalize(s->begin);
    sqlite3_finalize(s->commit);
    sqlite3_finalize(s->rollback);
    sqlite3_finalize(s->info);
    sqlite3_close(s->db); /* every statement is finalized: this closes */
    ciot__free(s->m);
    ciot__free(s->buf);
    ciot__free(s->sql);
    ciot__free(s);
}

/* ---- put ---- */

/* Runs a statement that returns no row (or whose rows are ignored) to the end. */
static int run(sqlite3_stmt *st)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int exec_sql(ciot__sqlite_sink *s)
{
    sqlite3_stmt *st;
    if (s->sqllen > INT32_MAX)
        return SQLITE_TOOBIG;
    int rc = sqlite3_prepare_v2(s->db, s->sql, (int)s->sqllen, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Collects the members of @p root into s->m (names unescaped into s->buf;
 * duplicates: the last value wins, in the first one's place). */
static int collect(ciot__sqlite_sink *s, const ciot_json_value *root, size_t *out_n, char *err,
                   size_t errcap)
{
    ciot_json_iter it;
    ciot_json_value k, v;
    size_t n = 0, used = 0;
    int limit = sqlite3_limit(s->db, SQLITE_LIMIT_COLUMN, -1);
    int r = ciot_json_iter_init(&it, root);
    if (r)
        return r;
    while ((r = ciot_json_iter_next(&it, &k, &v)) == 0) {
        void *p = s->buf;
        if (k.len > SIZE_MAX - used - 1 || grow(&p, &s->bufcap, used + k.len + 1, 1))
            return CIOT_ENOMEM;
        s->buf = p;
        size_t len;
        r = ciot_json_get_string(&k, s->buf + used, s->bufcap - used, &len);
        if (r)
            return r;
        const char *name = s->buf + used;
        if (len == 0) {
            seterr(err, errcap, "a member name is empty (a column needs a name)");
            return CIOT_EINVAL;
        }
        if (memchr(name, '\0', len)) {
            seterr(err, errcap, "member \"%s\": its name contains U+0000", name);
            return CIOT_EINVAL;
        }
        size_t dup = n;
        for (size_t i = 0; i < n; i++) {
            const char *o = s->buf + s->m[i].name_off;
            if (name_eq_ci(o, s->m[i].name_len, name, len)) {
                if (memcmp(o, name, len) != 0) {
                    seterr(err, errcap,
                           "members \"%.*s\" and \"%s\" name the same column (SQLite column names "
                           "ignore ASCII case)",
                           (int)s->m[i].name_len, o, name);
                    return CIOT_EINVAL;
                }
                dup = i;
                break;
            }
        }
        if (dup < n) {
            s->m[dup].v = v; /* the last wins */
            continue;
        }
        if (n >= (size_t)limit) {
            seterr(err, errcap, "more than %d members: SQLite allows at most %d columns", limit,
                   limit);
            return CIOT_ERANGE;
        }
        p = s->m;
        if (grow(&p, &s->mcap, n + 1, sizeof *s->m))
            return CIOT_ENOMEM;
        s->m = p;
        s->m[n] = (member){.name_off = used, .name_len = len, .v = v};
        used += len + 1;
        n++;
    }
    if (r != CIOT_ENOTFOUND)
        return r;
    if (n == 0) {
        seterr(err, errcap, "the object has no member (a row needs a column)");
        return CIOT_EINVAL;
    }
    /* strings with escapes: unescaped after the names (no buffer move later) */
    for (size_t i = 0; i < n; i++) {
        member *m = &s->m[i];
        if (m->v.type != CIOT_JSON_STRING || !memchr(m->v.ptr, '\\', m->v.len))
            continue;
        void *p = s->buf;
        if (m->v.len > SIZE_MAX - used || grow(&p, &s->bufcap, used + m->v.len, 1))
            return CIOT_ENOMEM;
        s->buf = p;
        r = ciot_json_get_string(&m->v, s->buf + used, s->bufcap - used, &m->str_len);
        if (r)
            return r;
        m->str_off = used;
        m->str_in_buf = true;
        used += m->str_len + 1;
    }
    *out_n = n;
    return 0;
}

static int bind_all(ciot__sqlite_sink *s, sqlite3_stmt *st, size_t n, char *err, size_t errcap)
{
    for (size_t i = 0; i < n; i++) {
        const member *m = &s->m[i];
        int col = (int)i + 1, rc;
        int64_t iv;
        double dv;
        switch (m->v.type) {
        case CIOT_JSON_NULL:
            rc = sqlite3_bind_null(st, col);
            break;
        case CIOT_JSON_TRUE:
        case CIOT_JSON_FALSE:
            rc = sqlite3_bind_int64(st, col, m->v.type == CIOT_JSON_TRUE);
            break;
        case CIOT_JSON_NUMBER:
            /* as the rules engine types numbers: a whole number that fits is an Int */
            if (ciot_json_get_int64(&m->v, &iv) == 0) {
                rc = sqlite3_bind_int64(st, col, (sqlite3_int64)iv);
            } else if (ciot_json_get_double(&m->v, &dv) == 0) {
                rc = sqlite3_bind_double(st, col, dv);
            } else {
                seterr(err, errcap, "member \"%s\": the number %.*s is too large for a double",
                       s->buf + m->name_off, (int)(m->v.len > 40 ? 40 : m->v.len), m->v.ptr);
                return CIOT_ERANGE;
            }
            break;
        case CIOT_JSON_STRING:
            if (m->str_in_buf)
                rc = sqlite3_bind_text64(st, col, s->buf + m->str_off, m->str_len, SQLITE_STATIC,
                                         SQLITE_UTF8);
            else
                rc = sqlite3_bind_text64(st, col, m->v.ptr + 1, m->v.len - 2, SQLITE_STATIC,
                                         SQLITE_UTF8);
            break;
        default: /* object, array: their JSON text */
            rc = sqlite3_bind_text64(st, col, m->v.ptr, m->v.len, SQLITE_STATIC, SQLITE_UTF8);
            break;
        }
        if (rc != SQLITE_OK) {
            seterr(err, errcap, "SQLite: member \"%s\": %s", s->buf + m->name_off,
                   sqlite3_errmsg(s->db));
            return rc == SQLITE_NOMEM ? CIOT_ENOMEM : CIOT_EIO;
        }
    }
    return 0;
}

/* Loads the table's known columns (pragma table_info) into a cache entry. */
static int load_table(ciot__sqlite_sink *s, const char *table, size_t tlen, tinfo **out, int *src)
{
    tinfo *t = tinfo_find(s, table, tlen);
    if (t) {
        t->used = ++s->tick;
        *out = t;
        return 0;
    }
    if (s->ntables == TABLE_CACHE) { /* evict the least recently used */
        size_t lru = 0;
        for (size_t i = 1; i < s->ntables; i++)
            if (s->tables[i].used < s->tables[lru].used)
                lru = i;
        tinfo_forget(s, s->tables[lru].name, s->tables[lru].len);
    }
    t = &s->tables[s->ntables];
    memset(t, 0, sizeof *t);
    t->name = ciot__strndup(table, tlen);
    if (!t->name)
        return CIOT_ENOMEM;
    t->len = tlen;
    t->used = ++s->tick;
    s->ntables++;
    int rc = sqlite3_bind_text64(s->info, 1, table, tlen, SQLITE_STATIC, SQLITE_UTF8);
    int r = 0;
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
        if ((rc = sqlite3_step(s->info)) != SQLITE_ROW)
            break;
        const char *c = (const char *)sqlite3_column_text(s->info, 0);
        int clen = sqlite3_column_bytes(s->info, 0);
        if (!c) {
            rc = SQLITE_NOMEM;
            break;
        }
        if ((r = tinfo_add_col(t, c, (size_t)clen)) != 0)
            break;
    }
    sqlite3_reset(s->info);
    sqlite3_clear_bindings(s->info);
    if (r == 0 && rc != SQLITE_DONE) {
        *src = rc;
        r = rc == SQLITE_NOMEM ? CIOT_ENOMEM : CIOT_EIO;
    }
    if (r) {
        tinfo_forget(s, table, tlen);
        return r;
    }
    *out = t;
    return 0;
}

/*
 * Creates the table or adds the missing columns, then prepares the INSERT.
 * Runs inside the transaction. Known columns are added to the cache as they
 * are created (the caller forgets the table if the transaction fails).
 */
static int prepare_insert(ciot__sqlite_sink *s, const char *table, size_t tlen, size_t n,
                          sqlite3_stmt **out, int *src, char *err, size_t errcap)
{
    tinfo *t;
    int r = load_table(s, table, tlen, &t, src);
    if (r)
        return r;
    int rc;
    if (t->ncols == 0) {
        s->sqllen = 0;
        if (sql_str(s, "CREATE TABLE IF NOT EXISTS ") || sql_ident(s, table, tlen) || sql_str(s, " ("))
            return CIOT_ENOMEM;
        for (size_t i = 0; i < n; i++)
            if ((i && sql_str(s, ", ")) || sql_ident(s, s->buf + s->m[i].name_off, s->m[i].name_len))
                return CIOT_ENOMEM;
        if (sql_str(s, ")"))
            return CIOT_ENOMEM;
        if ((rc = exec_sql(s)) != SQLITE_OK) {
            *src = rc;
            return rc == SQLITE_NOMEM ? CIOT_ENOMEM : CIOT_EIO;
        }
        for (size_t i = 0; i < n; i++)
            if (tinfo_add_col(t, s->buf + s->m[i].name_off, s->m[i].name_len))
                return CIOT_ENOMEM;
    } else {
        size_t missing = 0;
        for (size_t i = 0; i < n; i++)
            if (!tinfo_has(t, s->buf + s->m[i].name_off, s->m[i].name_len))
                missing++;
        int limit = sqlite3_limit(s->db, SQLITE_LIMIT_COLUMN, -1);
        if (missing && t->ncols + missing > (size_t)limit) {
            seterr(err, errcap,
                   "table \"%.*s\" has %zu columns; %zu more would pass SQLite's limit of %d",
                   (int)tlen, table, t->ncols, missing, limit);
            return CIOT_ERANGE;
        }
        for (size_t i = 0; missing && i < n; i++) {
            const char *c = s->buf + s->m[i].name_off;
            size_t clen = s->m[i].name_len;
            if (tinfo_has(t, c, clen))
                continue;
            s->sqllen = 0;
            if (sql_str(s, "ALTER TABLE ") || sql_ident(s, table, tlen) ||
                sql_str(s, " ADD COLUMN ") || sql_ident(s, c, clen))
                return CIOT_ENOMEM;
            if ((rc = exec_sql(s)) != SQLITE_OK) {
                *src = rc;
                return rc == SQLITE_NOMEM ? CIOT_ENOMEM : CIOT_EIO;
            }
            if (tinfo_add_col(t, c, clen))
                return CIOT_ENOMEM;
        }
    }
    s->sqllen = 0;
    if (sql_str(s, "INSERT INTO ") || sql_ident(s, table, tlen) || sql_str(s, " ("))
        return CIOT_ENOMEM;
    for (size_t i = 0; i < n; i++)
        if ((i && sql_str(s, ", ")) || sql_ident(s, s->buf + s->m[i].name_off, s->m[i].name_len))
            return CIOT_ENOMEM;
    if (sql_str(s, ") VALUES ("))
        return CIOT_ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (sql_str(s, i ? ", ?" : "?"))
            return CIOT_ENOMEM;
    if (sql_str(s, ")"))
        return CIOT_ENOMEM;
    if (s->sqllen > INT32_MAX) {
        *src = SQLITE_TOOBIG;
        return CIOT_EIO;
    }
    rc = sqlite3_prepare_v3(s->db, s->sql, (int)s->sqllen, SQLITE_PREPARE_PERSISTENT, out, NULL);
    if (rc != SQLITE_OK) {
        *src = rc;
        return rc == SQLITE_NOMEM ? CIOT_ENOMEM : CIOT_EIO;
    }
    return 0;
}

/* Builds the statement key (table \0 col \0 col ...) in s->sql. */
static int make_key(ciot__sqlite_sink *s, const char *table, size_t tlen, size_t n, uint64_t *hash)
{
    s->sqllen = 0;
    if (sql_put(s, table, tlen))
        return CIOT_ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (sql_put(s, "", 1) || sql_put(s, s->buf + s->m[i].name_off, s->m[i].name_len))
            return CIOT_ENOMEM;
    *hash = fnv(14695981039346656037u, s->sql, s->sqllen);
    return 0;
}

/* One attempt: 0, or an error with *src the SQLite code when SQLite failed. */
static int attempt(ciot__sqlite_sink *s, const char *table, size_t tlen, size_t n, bool *used_cache,
                   int *src, char *err, size_t errcap)
{
    uint64_t h;
    *used_cache = false;
    if (make_key(s, table, tlen, n, &h))
        return CIOT_ENOMEM;
    size_t hit = s->nstmts;
    for (size_t i = 0; i < s->nstmts; i++)
        if (s->stmts[i].hash == h && s->stmts[i].key_len == s->sqllen &&
            memcmp(s->stmts[i].key, s->sql, s->sqllen) == 0) {
            hit = i;
            break;
        }
    char *key = NULL;
    size_t key_len = s->sqllen;
    if (hit == s->nstmts) {
        key = ciot__malloc(key_len ? key_len : 1);
        if (!key)
            return CIOT_ENOMEM;
        memcpy(key, s->sql, key_len);
    } else {
        *used_cache = true;
    }
    int rc = run(s->begin);
    if (rc != SQLITE_OK) {
        ciot__free(key);
        *src = rc;
        seterr(err, errcap, "SQLite, table \"%.*s\": %s", (int)tlen, table, sqlite3_errmsg(s->db));
        return rc == SQLITE_NOMEM ? CIOT_ENOMEM : CIOT_EIO;
    }
    sqlite3_stmt *st;
    int r = 0;
    if (hit < s->nstmts) {
        st = s->stmts[hit].st;
        s->stmts[hit].used = ++s->tick;
    } else {
        *used_cache = tinfo_find(s, table, tlen) != NULL;
        r = prepare_insert(s, table, tlen, n, &st, src, err, errcap);
        if (r == 0) {
            if (s->nstmts == STMT_CACHE) {
                size_t lru = 0;
                for (size_t i = 1; i < s->nstmts; i++)
                    if (s->stmts[i].used < s->stmts[lru].used)
                        lru = i;
                stmt_drop(s, lru);
            }
            hit = s->nstmts++;
            s->stmts[hit] = (scache){.hash = h, .key = key, .key_len = key_len, .st = st,
                                     .used = ++s->tick};
            key = NULL;
        }
    }
    ciot__free(key);
    if (r == 0)
        r = bind_all(s, st, n, err, errcap);
    if (r == 0) {
        rc = sqlite3_step(st);
        if (rc != SQLITE_DONE) {
            *src = rc;
            r = rc == SQLITE_NOMEM ? CIOT_ENOMEM : CIOT_EIO;
        }
    }
    if (r == 0 && (rc = run(s->commit)) != SQLITE_OK) {
        *src = rc;
        r = rc == SQLITE_NOMEM ? CIOT_ENOMEM : CIOT_EIO;
    }
    if (r && *src != SQLITE_OK)
        seterr(err, errcap, "SQLite, table \"%.*s\": %s", (int)tlen, table, sqlite3_errmsg(s->db));
    if (hit < s->nstmts) {
        sqlite3_reset(s->stmts[hit].st);
        sqlite3_clear_bindings(s->stmts[hit].st);
    }
    if (r) {
        if (sqlite3_get_autocommit(s->db) == 0)
            (void)run(s->rollback);
        tinfo_forget(s, table, tlen);
        if (hit < s->nstmts)
            stmt_drop(s, hit);
    }
    return r;
}

int ciot__sqlite_sink_put(ciot__sqlite_sink *s, const char *table, size_t table_len,
                          const char *doc, size_t doc_len, char *err, size_t errcap)
{
    if (err && errcap)
        err[0] = '\0';
    if (!s || (!table && table_len) || (!doc && doc_len)) {
        seterr(err, errcap, "NULL argument");
        return CIOT_EINVAL;
    }
    if (table_len == 0 || table_len > MAX_TABLE_NAME) {
        seterr(err, errcap, "a table name has 1 to %d bytes (this one has %zu)", MAX_TABLE_NAME,
               table_len);
        return CIOT_EINVAL;
    }
    if (!ciot__utf8_valid(table, table_len, false)) {
        seterr(err, errcap, "the table name is not UTF-8 or contains U+0000");
        return CIOT_EINVAL;
    }
    if (table_len >= 7 && name_eq_ci(table, 7, "sqlite_", 7)) {
        seterr(err, errcap, "table \"%.*s\": names starting with \"sqlite_\" are SQLite's own",
               (int)table_len, table);
        return CIOT_EINVAL;
    }
    ciot_json_value root;
    int r = ciot_json_find(doc, doc_len, NULL, 0, &root);
    if (r) {
        seterr(err, errcap, "the document is not valid JSON%s",
               r == CIOT_EDEPTH ? " (nested too deep)" : "");
        return CIOT_EINVAL;
    }
    if (root.type != CIOT_JSON_OBJECT) {
        seterr(err, errcap, "the document is not a JSON object");
        return CIOT_EINVAL;
    }
    size_t n;
    r = collect(s, &root, &n, err, errcap);
    if (r) {
        if (r == CIOT_ENOMEM)
            seterr(err, errcap, "out of memory");
        else if (err && errcap && !err[0])
            seterr(err, errcap, "the document is not valid JSON");
        return r == CIOT_ENOMEM || r == CIOT_ERANGE ? r : CIOT_EINVAL;
    }
    for (int tries = 0;; tries++) {
        bool used_cache;
        int src = SQLITE_OK;
        if (err && errcap)
            err[0] = '\0';
        r = attempt(s, table, table_len, n, &used_cache, &src, err, errcap);
        /* stale knowledge of the schema (changed by another connection):
         * once more from a fresh look-up */
        if (r == CIOT_EIO && used_cache && tries == 0 &&
            ((src & 0xff) == SQLITE_ERROR || (src & 0xff) == SQLITE_SCHEMA))
            continue;
        if (r == CIOT_ENOMEM && err && errcap && !err[0])
            seterr(err, errcap, "out of memory");
        return r;
    }
}

#else /* !CIOT_HAVE_SQLITE */

int ciot__sqlite_sink_open(ciot__sqlite_sink **out, const char *path, char *err, size_t errcap)
{
    (void)path;
    if (out)
        *out = NULL;
    if (err && errcap)
        snprintf(err, errcap, "libcloudiot was built without SQLite (meson option sqlite)");
    return CIOT_ENOTBUILT;
}

void ciot__sqlite_sink_close(ciot__sqlite_sink *s)
{
    (void)s; /* no sink can exist */
}

int ciot__sqlite_sink_put(ciot__sqlite_sink *s, const char *table, size_t table_len,
                          const char *doc, size_t doc_len, char *err, size_t errcap)
{
    (void)s, (void)table, (void)table_len, (void)doc, (void)doc_len;
    if (err && errcap)
        snprintf(err, errcap, "libcloudiot was built without SQLite (meson option sqlite)");
    return CIOT_ENOTBUILT;
}

#endif
