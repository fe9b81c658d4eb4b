/*
 * What a store driver provides (internal to authority/: store.c dispatches,
 * store_sqlite.c and store_pg.c implement). A new driver fills one
 * store_ops table and an open function, and is named in store.c's store_open().
 */
#ifndef MQE2E_AUTHORITY_STORE_DRIVER_H
#define MQE2E_AUTHORITY_STORE_DRIVER_H

#include "store.h"

typedef struct store_ops {
    void (*close)(store *s);
    int (*prepare)(store *s, store_stmt **out, const char *sql);
    void (*finish)(store *s, store_stmt *st);
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

/* Every driver's connection and statement structs start with these. */
struct store {
    const store_ops *ops;
    store_dialect dialect;
};

struct store_stmt {
    store *owner;
};

/* Driver constructors: target is the URI with its scheme removed (SQLite: the
 * path) or whole (PostgreSQL: libpq takes the URI). */
int store_sqlite_open(store **out, const char *path);
int store_pg_open(store **out, const char *conninfo);

#endif
