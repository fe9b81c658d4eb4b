/* Store interface: choose a driver by URI scheme, then dispatch. */
#include "store.h"

#include <string.h>

#include "mqe2e/error.h"
#include "store_driver.h"

static int has_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

int store_open(store **out, const char *uri)
{
    if (out == NULL) return MQE2E_ERR_INVALID_ARG;
    *out = NULL;
    if (uri == NULL || uri[0] == '\0') return MQE2E_ERR_INVALID_ARG;
    if (has_prefix(uri, "postgresql://") || has_prefix(uri, "postgres://"))
        return store_pg_open(out, uri);
    if (has_prefix(uri, "sqlite:")) {
        const char *path = uri + strlen("sqlite:");
        return path[0] == '\0' ? MQE2E_ERR_INVALID_ARG : store_sqlite_open(out, path);
    }
    /* Any other scheme is refused rather than taken for a file name: a typo
     * in "postgresql://" must not create a local file. */
    const char *colon = strstr(uri, "://");
    if (colon != NULL) return MQE2E_ERR_INVALID_ARG;
    return store_sqlite_open(out, uri);
}

void store_close(store *s)
{
    if (s != NULL) s->ops->close(s);
}

store_dialect store_get_dialect(const store *s)
{
    return s->dialect;
}

int store_prepare(store *s, store_stmt **out, const char *sql)
{
    *out = NULL;
    return s->ops->prepare(s, out, sql);
}

void store_finish(store *s, store_stmt *st)
{
    if (st != NULL) s->ops->finish(s, st);
}

int store_reset(store_stmt *st)
{
    return st->owner->ops->reset(st);
}

int store_bind_i64(store_stmt *st, int i, int64_t v)
{
    return st->owner->ops->bind_i64(st, i, v);
}

int store_bind_text(store_stmt *st, int i, const char *v)
{
    return st->owner->ops->bind_text(st, i, v);
}

int store_bind_blob(store_stmt *st, int i, const void *v, size_t n)
{
    return st->owner->ops->bind_blob(st, i, v, n);
}

int store_bind_null(store_stmt *st, int i)
{
    return st->owner->ops->bind_null(st, i);
}

int store_step(store_stmt *st)
{
    return st->owner->ops->step(st);
}

store_col_kind store_col_type(store_stmt *st, int i)
{
    return st->owner->ops->col_type(st, i);
}

int64_t store_col_i64(store_stmt *st, int i)
{
    return st->owner->ops->col_i64(st, i);
}

const char *store_col_text(store_stmt *st, int i, size_t *len)
{
    return st->owner->ops->col_text(st, i, len);
}

const uint8_t *store_col_blob(store_stmt *st, int i, size_t *len)
{
    return st->owner->ops->col_blob(st, i, len);
}

uint64_t store_changes(store_stmt *st)
{
    return st->owner->ops->changes(st);
}

int store_exec(store *s, const char *script)
{
    return s->ops->exec(s, script);
}

int store_begin(store *s, store_tx_kind kind)
{
    return s->ops->begin(s, kind);
}

int store_in_tx(store *s)
{
    return s->ops->in_tx(s);
}
