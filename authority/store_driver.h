/*
 * What a store driver provides (internal to authority/: store.c dispatches,
 * store_sqlite.c and store_pg.c implement). A new driver fills one
 * store_ops table and an open function, and is named in store.c's store_open().
 */
#ifndef MQE2E_AUTHORITY_STORE_DRIVER_H
#define MQE2E_AUTHORITY_STORE_DRIVER_H

#include "store.h"

typedef struct store_ops {
    /* Close the connection (statements are already destroyed). */
    void (*close)(store *s);
    /* A new statement for sql; store.c fills the header and caches it. */
    int (*create)(store *s, const char *sql, store_stmt **out);
    /* Make a statement reusable: result released, bindings cleared. */
    void (*recycle)(store_stmt *st);
    void (*destroy)(store_stmt *st);
    int (*reset)(store_stmt *st);
    int (*bind_i64)(store_stmt *st, int i, int64_t v);
    int (*bind_text)(store_stmt *st, int i, const char *v);
    int (*bind_blob)(store_stmt *st, int i, const void *v, size_t n);
    int (*bind_null)(store_stmt *st, int i);
    int (*step)(store_stmt *st);
    store_col_kind (*col_type)(store_stmt *st, int i);
    int64_t (*col_i64)(store_stmt *st, int i);
    const char *(*col_text)(store_stmt *st, int i, size_t *len);
    const uint8_t *(*col_blob)(store_stmt *st, int i, size_t *len);
    uint64_t (*changes)(store_stmt *st);
    int (*exec)(store *s, const char *script);
    int (*begin)(store *s, store_tx_kind kind);
    int (*in_tx)(store *s);
} store_ops;

/* Statements kept prepared per connection (store.c): every SQL text of
 * authority_db.c fits. */
#define STORE_STMT_CACHE 112

/* Every driver's connection and statement structs start with these. */
struct store_stmt {
    store *owner;
    const char *sql; /* the caller's literal: cache key */
    char *text;      /* a copy, checked on every hit */
    int busy;
    int cached;
};

struct store {
    const store_ops *ops;
    store_dialect dialect;
    store_stmt *cache[STORE_STMT_CACHE];
};

/* Driver constructors: target is the URI with its scheme removed (SQLite: the
 * path) or whole (PostgreSQL: libpq takes the URI). */
int store_sqlite_open(store **out, const char *path);
int store_pg_open(store **out, const char *conninfo);

#endif
