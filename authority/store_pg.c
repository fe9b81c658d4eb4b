/*
 * PostgreSQL driver of the store interface, through libpq.
 *
 * - `?N` placeholders are rewritten to `$N` once per statement text (outside
 *   quoted strings and identifiers); integers are sent as int8 text, blobs as
 *   binary bytea, text as untyped text (the server infers the column type);
 *   results come back as text (bytea in hex, decoded here).
 * - A write transaction takes one transaction-scoped advisory lock, so write
 *   transactions of every authority process on the database run one at a
 *   time (the same guarantee as SQLite's BEGIN IMMEDIATE): a read-modify-write
 *   (next sender id, next epoch, token use) cannot interleave with another,
 *   and READ COMMITTED statements after the lock see every earlier commit.
 *   A read transaction is REPEATABLE READ READ ONLY: one snapshot, never a
 *   serialization failure.
 * - PostgreSQL aborts a whole transaction on a failed statement, SQLite does
 *   not: inside a transaction each write runs under its own savepoint, so a
 *   refused INSERT (unique violation: ::MQE2E_ERR_EXISTS) leaves the
 *   transaction usable, as with SQLite.
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mqe2e/error.h"
#include "store_driver.h"

#define MAX_PARAMS 32
#define OID_INT8 20U
#define OID_BYTEA 17U
/* The advisory lock every write transaction takes: "mqe2eadb" in ASCII. */
#define WRITE_LOCK_SQL "SELECT pg_advisory_xact_lock(7886754355735896418)"

typedef struct pg_stmt {
    store_stmt base;
    char *pgtext; /* rewritten with $N */
    int nparams;  /* highest $N used */
    int is_write;
    int is_end; /* COMMIT or ROLLBACK (not ROLLBACK TO): ends a transaction */
    const char *values[MAX_PARAMS];
    int lengths[MAX_PARAMS];
    int formats[MAX_PARAMS];
    Oid types[MAX_PARAMS];
    char ints[MAX_PARAMS][24];
    PGresult *res;
    int row; /* current row, -1 before the first step */
    uint64_t changes;
    uint8_t *blob; /* decoded bytea of the last col_blob() */
} pg_stmt;

typedef struct pg_store {
    store base;
    PGconn *conn;
    int tx; /* a transaction was begun and not yet ended by COMMIT/ROLLBACK */
} pg_store;

static pg_store *S(store *s)
{
    return (pg_store *)s;
}

static pg_stmt *T(store_stmt *st)
{
    return (pg_stmt *)st;
}

static int map_state(const PGresult *res)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (state == NULL) return MQE2E_ERR_IO;
    if (strcmp(state, "23505") == 0) return MQE2E_ERR_EXISTS;
    if (strcmp(state, "23503") == 0) return MQE2E_ERR_NOT_FOUND;
    if (strcmp(state, "23514") == 0 || strcmp(state, "23502") == 0) return MQE2E_ERR_INVALID_ARG;
    if (strncmp(state, "22", 2) == 0) return MQE2E_ERR_INVALID_ARG; /* data exception */
    if (strcmp(state, "53200") == 0) return MQE2E_ERR_NOMEM;
    return MQE2E_ERR_IO;
}

static int result_rc(const PGresult *res)
{
    ExecStatusType t = PQresultStatus(res);
    if (t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK) return MQE2E_OK;
    return map_state(res);
}

static int simple(pg_store *q, const char *sql)
{
    PGresult *r = PQexec(q->conn, sql);
    int rc = r == NULL ? MQE2E_ERR_IO : result_rc(r);
    PQclear(r);
    return rc;
}

static void stmt_reset(pg_stmt *t)
{
    PQclear(t->res);
    t->res = NULL;
    t->row = -1;
    free(t->blob);
    t->blob = NULL;
}

static void pg_destroy(store_stmt *st)
{
    pg_stmt *t = T(st);
    stmt_reset(t);
    free(t->pgtext);
    free(t);
}

static void pg_close(store *s)
{
    pg_store *q = S(s);
    if (q->conn != NULL) PQfinish(q->conn); /* the server rolls an open transaction back */
    free(q);
}

/* ?N -> $N outside '...' and "..."; a bare ? takes the next number. */
static int rewrite(pg_stmt *t, const char *sql)
{
    size_t n = strlen(sql);
    char *o = malloc(n * 2 + 1);
    if (o == NULL) return MQE2E_ERR_NOMEM;
    size_t j = 0;
    char quote = 0;
    int next = 1, maxp = 0;
    for (size_t i = 0; i < n; i++) {
        char c = sql[i];
        if (quote != 0) {
            if (c == quote) quote = 0;
            o[j++] = c;
        } else if (c == '\'' || c == '"') {
            quote = c;
            o[j++] = c;
        } else if (c == '?') {
            int num = 0;
            while (i + 1 < n && sql[i + 1] >= '0' && sql[i + 1] <= '9' && num < 1000)
                num = num * 10 + (sql[++i] - '0');
            if (num == 0) num = next;
            next = num + 1;
            if (num > MAX_PARAMS) {
                free(o);
                return MQE2E_ERR_TOO_LARGE;
            }
            if (num > maxp) maxp = num;
            j += (size_t)snprintf(o + j, 8, "$%d", num);
        } else {
            o[j++] = c;
        }
    }
    o[j] = '\0';
    t->pgtext = o;
    t->nparams = maxp;
    const char *p = sql;
    while (*p == ' ' || *p == '\n')
        p++;
    t->is_write = strncasecmp(p, "INSERT", 6) == 0 || strncasecmp(p, "UPDATE", 6) == 0 ||
                  strncasecmp(p, "DELETE", 6) == 0;
    t->is_end = strncasecmp(p, "COMMIT", 6) == 0 ||
                (strncasecmp(p, "ROLLBACK", 8) == 0 && strncasecmp(p, "ROLLBACK TO", 11) != 0);
    return MQE2E_OK;
}

static void clear_binds(pg_stmt *t)
{
    for (int i = 0; i < MAX_PARAMS; i++) {
        t->values[i] = NULL;
        t->lengths[i] = 0;
        t->formats[i] = 0;
        t->types[i] = 0;
    }
}

static int pg_create(store *s, const char *sql, store_stmt **out)
{
    (void)s;
    pg_stmt *t = calloc(1, sizeof *t);
    if (t == NULL) return MQE2E_ERR_NOMEM;
    int rc = rewrite(t, sql);
    if (rc != MQE2E_OK) {
        free(t);
        return rc;
    }
    t->row = -1;
    *out = &t->base;
    return MQE2E_OK;
}

static void pg_recycle(store_stmt *st)
{
    stmt_reset(T(st));
    clear_binds(T(st));
}

static int pg_reset(store_stmt *st)
{
    stmt_reset(T(st));
    return MQE2E_OK;
}

static int slot(int i)
{
    if (i < 1 || i > MAX_PARAMS) return -1;
    return i - 1;
}

static int pg_bind_i64(store_stmt *st, int i, int64_t v)
{
    pg_stmt *t = T(st);
    int k = slot(i);
    if (k < 0) return MQE2E_ERR_INVALID_ARG;
    (void)snprintf(t->ints[k], sizeof t->ints[k], "%lld", (long long)v);
    t->values[k] = t->ints[k];
    t->lengths[k] = 0;
    t->formats[k] = 0;
    t->types[k] = OID_INT8;
    return MQE2E_OK;
}

static int pg_bind_text(store_stmt *st, int i, const char *v)
{
    pg_stmt *t = T(st);
    int k = slot(i);
    if (k < 0) return MQE2E_ERR_INVALID_ARG;
    t->values[k] = v;
    t->lengths[k] = 0;
    t->formats[k] = 0;
    t->types[k] = 0;
    return MQE2E_OK;
}

static int pg_bind_blob(store_stmt *st, int i, const void *v, size_t n)
{
    pg_stmt *t = T(st);
    int k = slot(i);
    if (k < 0) return MQE2E_ERR_INVALID_ARG;
    if (n > (size_t)INT32_MAX) return MQE2E_ERR_TOO_LARGE;
    /* libpq takes a NULL value as SQL NULL: an empty blob needs an address. */
    t->values[k] = v != NULL ? (const char *)v : "";
    t->lengths[k] = (int)n;
    t->formats[k] = 1;
    t->types[k] = OID_BYTEA;
    return MQE2E_OK;
}

static int pg_bind_null(store_stmt *st, int i)
{
    pg_stmt *t = T(st);
    int k = slot(i);
    if (k < 0) return MQE2E_ERR_INVALID_ARG;
    t->values[k] = NULL;
    t->types[k] = 0;
    return MQE2E_OK;
}

/* Hex bytea, UTF-8 text, and a bounded wait for the write lock (a hung peer
 * holding it is reported as an I/O error, not waited on forever). */
static int session_setup(pg_store *q)
{
    return simple(q, "SET bytea_output = 'hex'; SET client_encoding = 'UTF8';"
                     " SET lock_timeout = '30s'; SET synchronous_commit = on");
}

/* A lost connection (server restart, network) is re-established only between
 * transactions: inside one, every statement fails until the caller's COMMIT
 * (reported as an I/O error) or ROLLBACK ends it, so no half of a transaction
 * is ever replayed in autocommit on a new connection. */
static int ensure_connected(pg_store *q)
{
    if (PQstatus(q->conn) == CONNECTION_OK) return MQE2E_OK;
    if (q->tx) return MQE2E_ERR_IO;
    PQreset(q->conn);
    if (PQstatus(q->conn) != CONNECTION_OK) return MQE2E_ERR_IO;
    return session_setup(q);
}

static int pg_begin(store *s, store_tx_kind kind);

static int run(pg_stmt *t)
{
    pg_store *q = S(t->base.owner);
    if (PQstatus(q->conn) != CONNECTION_OK && q->tx && t->is_end) {
        /* The server already rolled the lost transaction back. */
        q->tx = 0;
        return strncasecmp(t->pgtext, "COMMIT", 6) == 0 ? MQE2E_ERR_IO : MQE2E_OK;
    }
    int rc = ensure_connected(q);
    if (rc != MQE2E_OK) return rc;
    PGTransactionStatusType ts = PQtransactionStatus(q->conn);
    /* A write outside a transaction takes the write lock too (its own short
     * transaction): every write on the database is serialised, as with
     * SQLite, not only the multi-statement ones. */
    int own_tx = t->is_write && ts == PQTRANS_IDLE;
    int guarded = t->is_write && ts == PQTRANS_INTRANS;
    if (own_tx) rc = pg_begin(&q->base, STORE_TX_WRITE);
    if (guarded) rc = simple(q, "SAVEPOINT store_stmt");
    if (rc != MQE2E_OK) return rc;
    t->res = PQexecParams(q->conn, t->pgtext, t->nparams, t->types, t->values, t->lengths,
                          t->formats, 0);
    rc = t->res == NULL ? MQE2E_ERR_NOMEM : result_rc(t->res);
    if (rc != MQE2E_OK && !t->is_write && !q->tx && ts == PQTRANS_IDLE &&
        PQstatus(q->conn) != CONNECTION_OK && ensure_connected(q) == MQE2E_OK) {
        /* A read alone found the connection gone (see pg_begin): once more. */
        PQclear(t->res);
        t->res = PQexecParams(q->conn, t->pgtext, t->nparams, t->types, t->values, t->lengths,
                              t->formats, 0);
        rc = t->res == NULL ? MQE2E_ERR_NOMEM : result_rc(t->res);
    }
    if (guarded) {
        if (rc != MQE2E_OK) (void)simple(q, "ROLLBACK TO SAVEPOINT store_stmt");
        int rel = simple(q, "RELEASE SAVEPOINT store_stmt");
        if (rc == MQE2E_OK) rc = rel;
    }
    if (own_tx) {
        int end = simple(q, rc == MQE2E_OK ? "COMMIT" : "ROLLBACK");
        if (rc == MQE2E_OK) rc = end != MQE2E_OK ? MQE2E_ERR_IO : MQE2E_OK;
        q->tx = 0;
    }
    if (t->is_end) q->tx = 0;
    if (rc != MQE2E_OK) return rc;
    const char *ct = PQcmdTuples(t->res);
    t->changes = (ct != NULL && ct[0] != '\0') ? strtoull(ct, NULL, 10) : 0U;
    return MQE2E_OK;
}

static int pg_step(store_stmt *st)
{
    pg_stmt *t = T(st);
    free(t->blob);
    t->blob = NULL;
    if (t->res == NULL) {
        int rc = run(t);
        if (rc != MQE2E_OK) {
            PQclear(t->res);
            t->res = NULL;
            return rc;
        }
    }
    t->row++;
    return t->row < PQntuples(t->res) ? 1 : 0;
}

static int has_value(pg_stmt *t, int i)
{
    return t->res != NULL && t->row >= 0 && t->row < PQntuples(t->res) && i >= 0 &&
           i < PQnfields(t->res) && !PQgetisnull(t->res, t->row, i);
}

static store_col_kind pg_col_type(store_stmt *st, int i)
{
    return has_value(T(st), i) ? STORE_COL_VALUE : STORE_COL_NULL;
}

static int64_t pg_col_i64(store_stmt *st, int i)
{
    pg_stmt *t = T(st);
    if (!has_value(t, i)) return 0;
    const char *v = PQgetvalue(t->res, t->row, i);
    if (v[0] == 't') return 1; /* boolean */
    if (v[0] == 'f') return 0;
    return (int64_t)strtoll(v, NULL, 10);
}

static const char *pg_col_text(store_stmt *st, int i, size_t *len)
{
    pg_stmt *t = T(st);
    if (len != NULL) *len = 0;
    if (!has_value(t, i)) return NULL;
    if (len != NULL) *len = (size_t)PQgetlength(t->res, t->row, i);
    return PQgetvalue(t->res, t->row, i);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static const uint8_t *pg_col_blob(store_stmt *st, int i, size_t *len)
{
    pg_stmt *t = T(st);
    if (len != NULL) *len = 0;
    if (!has_value(t, i)) return NULL;
    const char *v = PQgetvalue(t->res, t->row, i);
    size_t n = (size_t)PQgetlength(t->res, t->row, i);
    /* bytea_output is hex on every supported server: "\x0a1b...". */
    if (n < 2 || v[0] != '\\' || v[1] != 'x' || (n - 2) % 2 != 0) return NULL;
    size_t m = (n - 2) / 2;
    if (m == 0) return NULL;
    free(t->blob);
    t->blob = malloc(m);
    if (t->blob == NULL) return NULL;
    for (size_t k = 0; k < m; k++) {
        int hi = hexval(v[2 + 2 * k]), lo = hexval(v[3 + 2 * k]);
        if (hi < 0 || lo < 0) return NULL;
        t->blob[k] = (uint8_t)(hi << 4 | lo);
    }
    if (len != NULL) *len = m;
    return t->blob;
}

static uint64_t pg_changes(store_stmt *st)
{
    return T(st)->changes;
}

static int pg_exec(store *s, const char *script)
{
    return simple(S(s), script);
}

static int pg_begin(store *s, store_tx_kind kind)
{
    pg_store *q = S(s);
    int rc = ensure_connected(q);
    if (rc != MQE2E_OK) return rc;
    const char *begin = kind == STORE_TX_READ ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
                                              : "BEGIN ISOLATION LEVEL READ COMMITTED";
    rc = simple(q, begin);
    /* libpq learns of a connection the server ended only when it next uses
     * it: BEGIN is the first statement of a transaction, so nothing is lost
     * by connecting again and repeating it once. */
    if (rc != MQE2E_OK && PQstatus(q->conn) != CONNECTION_OK) {
        rc = ensure_connected(q);
        if (rc == MQE2E_OK) rc = simple(q, begin);
    }
    if (rc == MQE2E_OK && kind == STORE_TX_WRITE) rc = simple(q, WRITE_LOCK_SQL);
    if (rc != MQE2E_OK && PQtransactionStatus(q->conn) != PQTRANS_IDLE) (void)simple(q, "ROLLBACK");
    q->tx = rc == MQE2E_OK;
    return rc;
}

static int pg_in_tx(store *s)
{
    PGTransactionStatusType ts = PQtransactionStatus(S(s)->conn);
    return S(s)->tx || ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR || ts == PQTRANS_ACTIVE;
}

static const store_ops PG_OPS = {
    pg_close,     pg_create,    pg_recycle,   pg_destroy, pg_reset,    pg_bind_i64,
    pg_bind_text, pg_bind_blob, pg_bind_null, pg_step,    pg_col_type, pg_col_i64,
    pg_col_text,  pg_col_blob,  pg_changes,   pg_exec,    pg_begin,    pg_in_tx,
};

/* Server notices ("relation already exists, skipping") are not errors: drop them. */
static void quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

int store_pg_open(store **out, const char *conninfo)
{
    *out = NULL;
    pg_store *q = calloc(1, sizeof *q);
    if (q == NULL) return MQE2E_ERR_NOMEM;
    q->base.ops = &PG_OPS;
    q->base.dialect = STORE_POSTGRESQL;
    q->conn = PQconnectdb(conninfo);
    int rc = MQE2E_OK;
    if (q->conn == NULL || PQstatus(q->conn) != CONNECTION_OK) {
        rc = MQE2E_ERR_IO;
        goto out;
    }
    (void)PQsetNoticeProcessor(q->conn, quiet, NULL);
    rc = session_setup(q);
out:
    if (rc != MQE2E_OK) {
        store_close(&q->base);
        return rc;
    }
    *out = &q->base;
    return MQE2E_OK;
}
