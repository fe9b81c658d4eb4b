/*
 * SQLite driver of the store interface: WAL, synchronous=FULL, foreign keys,
 * secure_delete; statements kept prepared (parsing cost more than running
 * them on the enrollment path); write transactions are BEGIN IMMEDIATE with
 * a busy timeout, so two processes on one file serialise their writes.
 */
#include <fcntl.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mqe2e/error.h"
#include "store_driver.h"

#define BUSY_TIMEOUT_MS 5000

typedef struct sq_stmt {
    store_stmt base;
    sqlite3_stmt *st;
} sq_stmt;

typedef struct sq_store {
    store base;
    sqlite3 *sql;
} sq_store;

static int sq_rc(int rc)
{
    switch (rc) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return MQE2E_OK;
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_UNIQUE:
        return MQE2E_ERR_EXISTS;
    case SQLITE_CONSTRAINT_FOREIGNKEY:
        return MQE2E_ERR_NOT_FOUND;
    case SQLITE_CONSTRAINT_CHECK:
    case SQLITE_CONSTRAINT_NOTNULL:
    case SQLITE_CONSTRAINT_DATATYPE:
        return MQE2E_ERR_INVALID_ARG;
    case SQLITE_NOMEM:
        return MQE2E_ERR_NOMEM;
    default:
        return MQE2E_ERR_IO;
    }
}

static sq_store *S(store *s)
{
    return (sq_store *)s;
}

static sq_stmt *T(store_stmt *st)
{
    return (sq_stmt *)st;
}

static void sq_destroy(store_stmt *st)
{
    (void)sqlite3_finalize(T(st)->st);
    free(st);
}

static void sq_close(store *s)
{
    sq_store *q = S(s);
    if (q->sql != NULL) {
        if (!sqlite3_get_autocommit(q->sql))
            (void)sqlite3_exec(q->sql, "ROLLBACK", NULL, NULL, NULL);
        (void)sqlite3_close_v2(q->sql);
    }
    free(q);
}

static int sq_create(store *s, const char *sql, store_stmt **out)
{
    sq_stmt *t = calloc(1, sizeof *t);
    if (t == NULL) return MQE2E_ERR_NOMEM;
    int rc = sq_rc(sqlite3_prepare_v2(S(s)->sql, sql, -1, &t->st, NULL));
    if (rc != MQE2E_OK || t->st == NULL) {
        (void)sqlite3_finalize(t->st);
        free(t);
        return rc != MQE2E_OK ? rc : MQE2E_ERR_IO;
    }
    *out = &t->base;
    return MQE2E_OK;
}

static void sq_recycle(store_stmt *st)
{
    (void)sqlite3_reset(T(st)->st);
    (void)sqlite3_clear_bindings(T(st)->st);
}

static int sq_reset(store_stmt *st)
{
    (void)sqlite3_reset(T(st)->st);
    return MQE2E_OK;
}

static int sq_bind_i64(store_stmt *st, int i, int64_t v)
{
    return sq_rc(sqlite3_bind_int64(T(st)->st, i, (sqlite3_int64)v));
}

static int sq_bind_text(store_stmt *st, int i, const char *v)
{
    return sq_rc(sqlite3_bind_text(T(st)->st, i, v, -1, SQLITE_STATIC));
}

static int sq_bind_blob(store_stmt *st, int i, const void *v, size_t n)
{
    if (n > (size_t)INT32_MAX) return MQE2E_ERR_TOO_LARGE;
    return sq_rc(sqlite3_bind_blob(T(st)->st, i, v, (int)n, SQLITE_STATIC));
}

static int sq_bind_null(store_stmt *st, int i)
{
    return sq_rc(sqlite3_bind_null(T(st)->st, i));
}

static int sq_step(store_stmt *st)
{
    int rc = sqlite3_step(T(st)->st);
    if (rc == SQLITE_ROW) return 1;
    if (rc == SQLITE_DONE) return 0;
    rc = sq_rc(rc);
    return rc == MQE2E_OK ? MQE2E_ERR_IO : rc;
}

static store_col_kind sq_col_type(store_stmt *st, int i)
{
    return sqlite3_column_type(T(st)->st, i) == SQLITE_NULL ? STORE_COL_NULL : STORE_COL_VALUE;
}

static int64_t sq_col_i64(store_stmt *st, int i)
{
    return (int64_t)sqlite3_column_int64(T(st)->st, i);
}

static const char *sq_col_text(store_stmt *st, int i, size_t *len)
{
    const unsigned char *p = sqlite3_column_text(T(st)->st, i);
    int n = sqlite3_column_bytes(T(st)->st, i);
    if (len != NULL) *len = (p != NULL && n > 0) ? (size_t)n : 0U;
    return (const char *)p;
}

static const uint8_t *sq_col_blob(store_stmt *st, int i, size_t *len)
{
    const uint8_t *p = sqlite3_column_blob(T(st)->st, i);
    int n = sqlite3_column_bytes(T(st)->st, i);
    if (len != NULL) *len = (p != NULL && n > 0) ? (size_t)n : 0U;
    return p;
}

static uint64_t sq_changes(store_stmt *st)
{
    int n = sqlite3_changes(sqlite3_db_handle(T(st)->st));
    return n > 0 ? (uint64_t)n : 0U;
}

static int sq_exec(store *s, const char *script)
{
    return sq_rc(sqlite3_exec(S(s)->sql, script, NULL, NULL, NULL));
}

static int sq_tx(store *s, const char *sql)
{
    store_stmt *st = NULL;
    int rc = store_prepare(s, &st, sql);
    if (rc == MQE2E_OK) {
        rc = sq_step(st);
        if (rc == 1) rc = MQE2E_ERR_IO;
        store_finish(s, st);
    }
    return rc;
}

static int sq_begin(store *s, store_tx_kind kind)
{
    /* IMMEDIATE: the write lock is taken up front, so a transaction cannot
     * fail half-way on a lock upgrade, and its reads see the last commit. */
    return sq_tx(s, kind == STORE_TX_WRITE ? "BEGIN IMMEDIATE" : "BEGIN");
}

static int sq_in_tx(store *s)
{
    return !sqlite3_get_autocommit(S(s)->sql);
}

static const store_ops SQ_OPS = {
    sq_close,     sq_create,    sq_recycle,   sq_destroy, sq_reset,    sq_bind_i64,
    sq_bind_text, sq_bind_blob, sq_bind_null, sq_step,    sq_col_type, sq_col_i64,
    sq_col_text,  sq_col_blob,  sq_changes,   sq_exec,    sq_begin,    sq_in_tx,
};

static int pragma_expect(store *s, const char *sql, const char *expect)
{
    store_stmt *st = NULL;
    int rc = store_prepare(s, &st, sql);
    if (rc == MQE2E_OK) {
        rc = sq_step(st);
        if (rc == 1) {
            const char *t = sq_col_text(st, 0, NULL);
            rc = (t != NULL && strcmp(t, expect) == 0) ? MQE2E_OK : MQE2E_ERR_IO;
        } else if (rc == 0) {
            rc = MQE2E_ERR_IO;
        }
        store_finish(s, st);
    }
    return rc;
}

int store_sqlite_open(store **out, const char *path)
{
    *out = NULL;
    /* Create the file ourselves so it is private from the first byte; SQLite
     * gives its -wal and -shm files the same mode. */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return MQE2E_ERR_IO;
    (void)close(fd);

    sq_store *q = calloc(1, sizeof *q);
    if (q == NULL) return MQE2E_ERR_NOMEM;
    q->base.ops = &SQ_OPS;
    q->base.dialect = STORE_SQLITE;
    store *s = &q->base;
    int rc = MQE2E_OK;
    if (sqlite3_open_v2(path, &q->sql, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        rc = MQE2E_ERR_IO;
        goto out;
    }
    (void)sqlite3_extended_result_codes(q->sql, 1);
    (void)sqlite3_busy_timeout(q->sql, BUSY_TIMEOUT_MS);
    rc = pragma_expect(s, "PRAGMA journal_mode = WAL", "wal");
    /* FULL: a commit is on disk (WAL fsync) before it is reported. */
    if (rc == MQE2E_OK) rc = sq_exec(s, "PRAGMA synchronous = FULL");
    if (rc == MQE2E_OK) rc = sq_exec(s, "PRAGMA foreign_keys = ON");
    /* Deleted rows (used tokens, pruned epochs) are overwritten, not left in free pages. */
    if (rc == MQE2E_OK) rc = sq_exec(s, "PRAGMA secure_delete = ON");
    if (rc == MQE2E_OK) rc = pragma_expect(s, "PRAGMA foreign_keys", "1");
    /* Savepoint journals (one per enrollment in a batch) and RETURNING's
     * staging tables stay in memory instead of spilling to temporary files:
     * they only ever undo work of a live transaction, so durability is
     * untouched, and no page copy reaches the temp directory. */
    if (rc == MQE2E_OK) rc = sq_exec(s, "PRAGMA temp_store = MEMORY");
    if (rc != MQE2E_OK) rc = MQE2E_ERR_IO;
out:
    if (rc != MQE2E_OK) {
        store_close(s);
        return rc;
    }
    *out = s;
    return MQE2E_OK;
}
