/* Store interface: choose a driver by URI scheme, then dispatch. */
#include "store.h"

#include <stdlib.h>
#include <string.h>

#include "mqe2e/error.h"
#include "store_driver.h"

static int has_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

int store_uri_is_server(const char *uri)
{
    return uri != NULL && (has_prefix(uri, "postgresql://") || has_prefix(uri, "postgres://"));
}

int store_uri_valid(const char *uri)
{
    if (uri == NULL || uri[0] == '\0') return 0;
    if (store_uri_is_server(uri)) return 1;
    if (has_prefix(uri, "sqlite:")) return uri[strlen("sqlite:")] != '\0';
    /* Any other scheme is refused rather than taken for a file name: a typo
     * in "postgresql://" must not create a local file. */
    return strstr(uri, "://") == NULL;
}

const char *store_uri_shown(const char *uri)
{
    if (uri == NULL) return "(none)";
    return store_uri_is_server(uri) ? "postgresql://(hidden)" : uri;
}

int store_open(store **out, const char *uri)
{
    if (out == NULL) return MQE2E_ERR_INVALID_ARG;
    *out = NULL;
    if (!store_uri_valid(uri)) return MQE2E_ERR_INVALID_ARG;
    if (store_uri_is_server(uri)) return store_pg_open(out, uri);
    if (has_prefix(uri, "sqlite:")) return store_sqlite_open(out, uri + strlen("sqlite:"));
    return store_sqlite_open(out, uri);
}

static void stmt_destroy(store_stmt *st)
{
    char *text = st->text;
    st->owner->ops->destroy(st);
    free(text);
}

void store_close(store *s)
{
    if (s == NULL) return;
    for (size_t i = 0; i < STORE_STMT_CACHE; i++)
        if (s->cache[i] != NULL) stmt_destroy(s->cache[i]);
    s->ops->close(s);
}

store_dialect store_get_dialect(const store *s)
{
    return s->dialect;
}

/* Parsing SQL cost more than running it on the enrollment path, so
 * statements are kept prepared, keyed by their (literal) text and checked
 * against it; a statement in use is never handed out twice (a nested query
 * gets its own). */
int store_prepare(store *s, store_stmt **out, const char *sql)
{
    *out = NULL;
    size_t free_slot = STORE_STMT_CACHE;
    for (size_t i = 0; i < STORE_STMT_CACHE; i++) {
        store_stmt *t = s->cache[i];
        if (t == NULL) {
            if (free_slot == STORE_STMT_CACHE) free_slot = i;
        } else if (t->sql == sql && !t->busy && strcmp(t->text, sql) == 0) {
            t->busy = 1;
            *out = t;
            return MQE2E_OK;
        }
    }
    char *text = strdup(sql);
    if (text == NULL) return MQE2E_ERR_NOMEM;
    store_stmt *t = NULL;
    int rc = s->ops->create(s, sql, &t);
    if (rc != MQE2E_OK) {
        free(text);
        return rc;
    }
    t->owner = s;
    t->sql = sql;
    t->text = text;
    t->busy = 1;
    if (free_slot < STORE_STMT_CACHE) {
        t->cached = 1;
        s->cache[free_slot] = t;
    }
    *out = t;
    return MQE2E_OK;
}

void store_finish(store *s, store_stmt *st)
{
    (void)s;
    if (st == NULL) return;
    if (!st->cached) {
        stmt_destroy(st);
        return;
    }
    st->owner->ops->recycle(st);
    st->busy = 0;
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

int store_next_row(int *rc, store_stmt *st)
{
    if (*rc != MQE2E_OK) return 0;
    int r = store_step(st);
    if (r < 0) *rc = r;
    return r == 1;
}

int store_one_row(int *rc, store_stmt *st)
{
    if (*rc != MQE2E_OK) return 0;
    int r = store_step(st);
    *rc = r == 0 ? MQE2E_ERR_NOT_FOUND : (r < 0 ? r : MQE2E_OK);
    return r == 1;
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
