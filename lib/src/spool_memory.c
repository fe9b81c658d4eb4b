/*
 * In-memory spool (spool.h): a list of copied entries in id order. Nothing
 * in it is secret (envelopes, topics, flags, properties).
 */
#include <stdlib.h>
#include <string.h>

#include "mqe2e/error.h"
#include "mqe2e/spool.h"

typedef struct mem_node {
    struct mem_node *next;
    uint64_t id;
    size_t cost;
    mqe2e_held *h;
} mem_node;

typedef struct mem_spool {
    mem_node *head, *tail;
    size_t count, bytes, max_count, max_bytes;
    uint64_t next_id;
} mem_spool;

/* A deep copy of an entry (the caller frees with mqe2e_held_free()). */
static mqe2e_held *held_copy(const mqe2e_held *e)
{
    mqe2e_held *h = calloc(1, sizeof *h);
    if (h == NULL) return NULL;
    h->topic = strdup(e->topic);
    h->data = malloc(e->len > 0 ? e->len : 1U);
    if (e->meta_len > 0) h->meta = malloc(e->meta_len);
    if (h->topic == NULL || h->data == NULL || (e->meta_len > 0 && h->meta == NULL)) {
        mqe2e_held_free(h);
        return NULL;
    }
    if (e->len > 0) memcpy(h->data, e->data, e->len);
    if (e->meta_len > 0) memcpy(h->meta, e->meta, e->meta_len);
    h->len = e->len;
    h->meta_len = e->meta_len;
    h->tag = e->tag;
    h->arrived_at = e->arrived_at;
    return h;
}

static int mem_put(void *vctx, const mqe2e_held *e, uint64_t *id)
{
    mem_spool *s = vctx;
    if (s == NULL || e == NULL || e->topic == NULL || id == NULL || (e->data == NULL && e->len) ||
        (e->meta == NULL && e->meta_len))
        return MQE2E_ERR_INVALID_ARG;
    size_t tlen = strlen(e->topic);
    if (e->len > s->max_bytes || tlen > s->max_bytes - e->len ||
        e->meta_len > s->max_bytes - e->len - tlen)
        return MQE2E_ERR_TOO_LARGE;
    size_t cost = e->len + tlen + e->meta_len;
    if (s->count >= s->max_count || cost > s->max_bytes - s->bytes) return MQE2E_ERR_EXHAUSTED;
    mem_node *n = calloc(1, sizeof *n);
    if (n == NULL) return MQE2E_ERR_NOMEM;
    n->h = held_copy(e);
    if (n->h == NULL) {
        free(n);
        return MQE2E_ERR_NOMEM;
    }
    n->id = s->next_id++;
    n->cost = cost;
    if (s->tail != NULL)
        s->tail->next = n;
    else
        s->head = n;
    s->tail = n;
    s->count++;
    s->bytes += cost;
    *id = n->id;
    return MQE2E_OK;
}

static int mem_next(void *vctx, uint64_t after, uint64_t *id, mqe2e_held **out)
{
    mem_spool *s = vctx;
    if (s == NULL || id == NULL || out == NULL) return MQE2E_ERR_INVALID_ARG;
    *out = NULL;
    for (mem_node *n = s->head; n != NULL; n = n->next) {
        if (n->id <= after) continue;
        *out = held_copy(n->h);
        if (*out == NULL) return MQE2E_ERR_NOMEM;
        *id = n->id;
        return MQE2E_OK;
    }
    return MQE2E_ERR_NOT_FOUND;
}

static int mem_remove(void *vctx, uint64_t id)
{
    mem_spool *s = vctx;
    mem_node *prev = NULL;
    if (s == NULL) return MQE2E_ERR_INVALID_ARG;
    for (mem_node **link = &s->head; *link != NULL; link = &(*link)->next) {
        mem_node *n = *link;
        if (n->id != id) {
            prev = n;
            continue;
        }
        *link = n->next;
        if (s->tail == n) s->tail = prev;
        s->count--;
        s->bytes -= n->cost;
        mqe2e_held_free(n->h);
        free(n);
        return MQE2E_OK;
    }
    return MQE2E_ERR_NOT_FOUND;
}

static size_t mem_count(void *vctx)
{
    const mem_spool *s = vctx;
    return s != NULL ? s->count : 0;
}

static void mem_destroy(void *vctx)
{
    mem_spool *s = vctx;
    if (s == NULL) return;
    while (s->head != NULL) {
        mem_node *n = s->head;
        s->head = n->next;
        mqe2e_held_free(n->h);
        free(n);
    }
    free(s);
}

int mqe2e_spool_memory(mqe2e_spool *out, size_t max_count, size_t max_bytes)
{
    if (out == NULL) return MQE2E_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    mem_spool *s = calloc(1, sizeof *s);
    if (s == NULL) return MQE2E_ERR_NOMEM;
    s->max_count = max_count > 0 ? max_count : MQE2E_SPOOL_DEFAULT_COUNT;
    s->max_bytes = max_bytes > 0 ? max_bytes : MQE2E_SPOOL_DEFAULT_BYTES;
    s->next_id = 1;
    out->put = mem_put;
    out->next = mem_next;
    out->remove = mem_remove;
    out->count = mem_count;
    out->destroy = mem_destroy;
    out->ctx = s;
    return MQE2E_OK;
}

void mqe2e_spool_destroy(mqe2e_spool *s)
{
    if (s == NULL) return;
    if (s->destroy != NULL) s->destroy(s->ctx);
    memset(s, 0, sizeof *s);
}
