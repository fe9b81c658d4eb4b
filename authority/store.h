/**
 * @file store.h
 * @brief The authority's SQL store interface: one driver chosen at open time.
 *
 * A driver (SQLite: store_sqlite.c; PostgreSQL through libpq: store_pg.c)
 * only runs statements. It knows no table and no domain rule: the authority's
 * SQL is written once, in the portable subset both SQLite 3.40 and
 * PostgreSQL 15 accept, in authority_db.c, which also holds the rules (sender
 * ids, epochs, sealed columns, token states).
 *
 * Portable SQL, as the drivers expect it:
 * - parameters are `?N` (1-based); the PostgreSQL driver rewrites them to `$N`;
 * - `INSERT ... ON CONFLICT ... DO NOTHING / DO UPDATE`, `RETURNING`;
 * - blobs are bound and read with the blob calls (BLOB in SQLite, BYTEA in
 *   PostgreSQL); integers are signed 64-bit.
 *
 * Error mapping, the same for every driver: unique or primary-key violation
 * -> ::MQE2E_ERR_EXISTS; foreign-key violation -> ::MQE2E_ERR_NOT_FOUND;
 * check / not-null / type violation -> ::MQE2E_ERR_INVALID_ARG; out of
 * memory -> ::MQE2E_ERR_NOMEM; anything else (disk, network, server gone,
 * serialization failure) -> ::MQE2E_ERR_IO. A failed statement inside a
 * transaction undoes only itself, with both drivers (the PostgreSQL driver
 * wraps each write in a savepoint), and the transaction stays usable.
 *
 * Concurrency: a write transaction (store_begin() with ::STORE_TX_WRITE)
 * excludes every other write transaction on the same database, across
 * processes: SQLite takes the file's write lock up front (BEGIN IMMEDIATE,
 * with a 5 s busy timeout), PostgreSQL takes one transaction-scoped advisory
 * lock. Reads in a write transaction therefore see every earlier commit, and
 * read-modify-write steps (next sender id, epoch, token use) need no retry. A
 * write outside a transaction takes the same exclusion for its own short
 * transaction. A read transaction (::STORE_TX_READ) is one consistent snapshot.
 *
 * A lost server connection (PostgreSQL) is re-established at the next
 * transaction or statement outside one; inside a transaction every statement
 * fails with ::MQE2E_ERR_IO until the caller's COMMIT (also
 * ::MQE2E_ERR_IO) or ROLLBACK, so no part of it is replayed in autocommit.
 *
 * A handle and its statements are not thread-safe: one handle per thread.
 */
#ifndef MQE2E_AUTHORITY_STORE_H
#define MQE2E_AUTHORITY_STORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Opaque store connection. */
typedef struct store store;
/** Opaque statement, owned by its store. */
typedef struct store_stmt store_stmt;

/** SQL dialect of a driver (for the few per-dialect texts: DDL, migrations). */
typedef enum store_dialect {
    STORE_SQLITE = 1,
    STORE_POSTGRESQL = 2,
} store_dialect;

/** Kind of transaction for store_begin(). */
typedef enum store_tx_kind {
    STORE_TX_READ = 0,  /**< one snapshot; no writes expected */
    STORE_TX_WRITE = 1, /**< excludes other writers from the start */
} store_tx_kind;

/** Column type as seen by store_col_type(). */
typedef enum store_col_kind {
    STORE_COL_NULL = 0,
    STORE_COL_VALUE = 1,
} store_col_kind;

/**
 * @brief Open a store by URI.
 *
 * - `sqlite:PATH` or a plain path (no scheme): SQLite file PATH, created with
 *   mode 0600 if missing, WAL, synchronous=FULL, foreign keys, secure_delete;
 * - `postgresql://...` or `postgres://...`: a libpq connection URI (user,
 *   host or `host=/socket/dir` query parameter, port, dbname; see the libpq
 *   manual). The password, if any, is best given through PGPASSFILE.
 *
 * @param out receives the handle; close with store_close().
 * @param uri not kept after the call.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG (empty URI, unknown scheme);
 *         ::MQE2E_ERR_IO (cannot open or connect); ::MQE2E_ERR_NOMEM.
 */
int store_open(store **out, const char *uri);

/** @brief 1 if @p uri names a database server (postgresql:// or postgres://), 0 for a file. */
int store_uri_is_server(const char *uri);

/**
 * @brief 1 if store_open() accepts the form of @p uri (sqlite:PATH with a
 *        path, a plain path, postgresql:// or postgres://), 0 otherwise (NULL,
 *        empty, another `scheme://`). Checks the form only, opens nothing.
 */
int store_uri_valid(const char *uri);

/**
 * @brief What to print for @p uri in messages: the URI itself for a file, the
 *        constant "postgresql://(hidden)" for a server (its URI may carry a
 *        password). Static storage or @p uri itself; never NULL.
 */
const char *store_uri_shown(const char *uri);

/** @brief Close the store, rolling back an open transaction. NULL is a no-op. */
void store_close(store *s);

/** @brief The driver's SQL dialect. */
store_dialect store_get_dialect(const store *s);

/**
 * @brief Prepare a statement. Drivers keep statements prepared, keyed by the
 *        address and text of @p sql: pass string literals.
 * @param sql one statement in portable SQL (see above); must outlive the store.
 * @return ::MQE2E_OK or a mapped error; *out is NULL on error.
 */
int store_prepare(store *s, store_stmt **out, const char *sql);

/** @brief Give a statement back (reset, bindings cleared). NULL is a no-op. */
void store_finish(store *s, store_stmt *st);

/** @brief Rewind a statement to run it again; bindings are kept until rebound. */
int store_reset(store_stmt *st);

/** @brief Bind a signed 64-bit integer to parameter @p i (1-based). */
int store_bind_i64(store_stmt *st, int i, int64_t v);
/** @brief Bind NUL-terminated text; @p v must stay valid until store_finish(). */
int store_bind_text(store_stmt *st, int i, const char *v);
/** @brief Bind a blob of @p n bytes; @p v must stay valid until store_finish(). */
int store_bind_blob(store_stmt *st, int i, const void *v, size_t n);
/** @brief Bind SQL NULL. */
int store_bind_null(store_stmt *st, int i);

/**
 * @brief Run the statement (first call) or advance to its next row.
 * @return 1: a row is available; 0: done; a negative mapped error.
 */
int store_step(store_stmt *st);

/**
 * @brief The loop over a query's rows: `while (store_next_row(&rc, st)) { ... }`
 *        runs the body for each row while @p rc stays ::MQE2E_OK.
 * @return 1 when a row is available; 0 at the end (rc unchanged), when @p rc
 *         was already an error, or on a step error (then stored in @p rc).
 */
int store_next_row(int *rc, store_stmt *st);

/**
 * @brief A query that names one row: 1 when it is there; otherwise 0 with
 *        @p rc set (::MQE2E_ERR_NOT_FOUND without a row, else the step's error).
 *        Does nothing and returns 0 when @p rc is already an error.
 */
int store_one_row(int *rc, store_stmt *st);

/** @brief ::STORE_COL_NULL or ::STORE_COL_VALUE for column @p i (0-based) of the row. */
store_col_kind store_col_type(store_stmt *st, int i);
/** @brief Integer column (0 for NULL or non-numeric text). */
int64_t store_col_i64(store_stmt *st, int i);
/**
 * @brief Text column: NUL-terminated, valid until the next step or finish;
 *        NULL for SQL NULL. @param len receives the length (may be NULL).
 */
const char *store_col_text(store_stmt *st, int i, size_t *len);
/** @brief Blob column, valid until the next step or finish; NULL for SQL NULL or empty. */
const uint8_t *store_col_blob(store_stmt *st, int i, size_t *len);

/** @brief Rows changed by the statement's last completed run (INSERT/UPDATE/DELETE). */
uint64_t store_changes(store_stmt *st);

/**
 * @brief Run a script of one or more statements without parameters (DDL).
 * @return ::MQE2E_OK or a mapped error.
 */
int store_exec(store *s, const char *script);

/** @brief Start a transaction of kind @p kind. @return ::MQE2E_OK or a mapped error. */
int store_begin(store *s, store_tx_kind kind);

/** @brief Whether a transaction is open on this connection. */
int store_in_tx(store *s);

#ifdef __cplusplus
}
#endif
#endif
