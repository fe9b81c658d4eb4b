/*
 * Bounded FIFO of envelopes waiting for a newer epoch's key (holdq.h).
 * A singly linked list with a tail pointer: pushes and pops are O(1);
 * expiry walks the whole list (at most max_count nodes).
 */
#include <stdlib.h>
#include <string.h>

#include "mqe2e/error.h"
#include "mqe2e/holdq.h"

typedef struct holdq_node {
    struct holdq_node *next;
    mqe2e_held item;
    size_t cost;
    uint32_t rank;
} holdq_node;

struct mqe2e_holdq {
    holdq_node *head, *tail;
    size_t count, bytes;
    size_t max_count, max_bytes;
    uint64_t max_age;
};

int mqe2e_holdq_new(mqe2e_holdq **q, size_t max_count, size_t max_bytes, uint64_t max_age)
{
    if (q == NULL) return MQE2E_ERR_INVALID_ARG;
    *q = NULL;
    if (max_count == 0 || max_bytes == 0 || max_age == 0) return MQE2E_ERR_INVALID_ARG;
    mqe2e_holdq *n = calloc(1, sizeof *n);
    if (n == NULL) return MQE2E_ERR_NOMEM;
    n->max_count = max_count;
    n->max_bytes = max_bytes;
    n->max_age = max_age;
    *q = n;
    return MQE2E_OK;
}

void mqe2e_held_free(mqe2e_held *h)
{
    if (h == NULL) return;
    free(h->topic);
    free(h->data);
    free(h->meta);
    free(h);
}

static void node_free(holdq_node *n)
{
    free(n->item.topic);
    free(n->item.data);
    free(n->item.meta);
    free(n);
}

void mqe2e_holdq_free(mqe2e_holdq *q)
{
    if (q == NULL) return;
    holdq_node *n = q->head;
    while (n != NULL) {
        holdq_node *next = n->next;
        node_free(n);
        n = next;
    }
    free(q);
}

int mqe2e_holdq_push(mqe2e_holdq *q, const char *topic, const uint8_t *data, size_t len,
                     uint32_t tag, uint64_t arrived_at)
{
    return mqe2e_holdq_push_ranked(q, topic, data, len, tag, arrived_at, 0);
}

int mqe2e_holdq_push_ranked(mqe2e_holdq *q, const char *topic, const uint8_t *data, size_t len,
                            uint32_t tag, uint64_t arrived_at, uint32_t rank)
{
    return mqe2e_holdq_push_meta(q, topic, data, len, NULL, 0, tag, arrived_at, rank);
}

int mqe2e_holdq_push_meta(mqe2e_holdq *q, const char *topic, const uint8_t *data, size_t len,
                          const uint8_t *meta, size_t meta_len, uint32_t tag, uint64_t arrived_at,
                          uint32_t rank)
{
    if (q == NULL || topic == NULL || (data == NULL && len != 0) || (meta == NULL && meta_len != 0))
        return MQE2E_ERR_INVALID_ARG;
    size_t tlen = strlen(topic);
    if (len > q->max_bytes || tlen > q->max_bytes - len || meta_len > q->max_bytes - len - tlen)
        return MQE2E_ERR_TOO_LARGE;
    size_t cost = len + tlen + meta_len;
    if (q->count >= q->max_count || cost > q->max_bytes - q->bytes) return MQE2E_ERR_EXHAUSTED;
    holdq_node *n = calloc(1, sizeof *n);
    if (n == NULL) return MQE2E_ERR_NOMEM;
    n->item.topic = malloc(tlen + 1U);
    n->item.data = malloc(len > 0 ? len : 1U);
    if (meta_len > 0) n->item.meta = malloc(meta_len);
    if (n->item.topic == NULL || n->item.data == NULL || (meta_len > 0 && n->item.meta == NULL)) {
        node_free(n);
        return MQE2E_ERR_NOMEM;
    }
    memcpy(n->item.topic, topic, tlen + 1U);
    if (len > 0) memcpy(n->item.data, data, len);
    if (meta_len > 0) memcpy(n->item.meta, meta, meta_len);
    n->item.meta_len = meta_len;
    n->item.len = len;
    n->item.tag = tag;
    n->item.arrived_at = arrived_at;
    n->cost = cost;
    n->rank = rank;
    if (q->tail != NULL)
        q->tail->next = n;
    else
        q->head = n;
    q->tail = n;
    q->count++;
    q->bytes += cost;
    return MQE2E_OK;
}

static holdq_node *unlink_head(mqe2e_holdq *q)
{
    holdq_node *n = q->head;
    q->head = n->next;
    if (q->head == NULL) q->tail = NULL;
    q->count--;
    q->bytes -= n->cost;
    return n;
}

int mqe2e_holdq_pop(mqe2e_holdq *q, mqe2e_held **out)
{
    if (q == NULL || out == NULL) return MQE2E_ERR_INVALID_ARG;
    *out = NULL;
    if (q->head == NULL) return MQE2E_ERR_NOT_FOUND;
    holdq_node *n = unlink_head(q);
    mqe2e_held *h = malloc(sizeof *h);
    if (h == NULL) {
        /* Put it back where it was rather than lose it. */
        n->next = q->head;
        q->head = n;
        if (q->tail == NULL) q->tail = n;
        q->count++;
        q->bytes += n->cost;
        return MQE2E_ERR_NOMEM;
    }
    *h = n->item;
    free(n);
    *out = h;
    return MQE2E_OK;
}

size_t mqe2e_holdq_expire(mqe2e_holdq *q, uint64_t now)
{
    if (q == NULL) return 0;
    size_t dropped = 0;
    holdq_node **link = &q->head;
    holdq_node *prev = NULL;
    /* A full pass: messages put back keep their first arrival time, so the
     * list is not strictly ordered by time. */
    while (*link != NULL) {
        holdq_node *n = *link;
        if (now >= n->item.arrived_at && now - n->item.arrived_at >= q->max_age) {
            *link = n->next;
            q->count--;
            q->bytes -= n->cost;
            node_free(n);
            dropped++;
        } else {
            prev = n;
            link = &n->next;
        }
    }
    q->tail = prev;
    return dropped;
}

size_t mqe2e_holdq_count(const mqe2e_holdq *q)
{
    return q != NULL ? q->count : 0;
}

size_t mqe2e_holdq_bytes(const mqe2e_holdq *q)
{
    return q != NULL ? q->bytes : 0;
}

void mqe2e_holdq_topic_usage(const mqe2e_holdq *q, const char *topic, size_t *count, size_t *bytes)
{
    size_t c = 0, b = 0;
    if (q != NULL && topic != NULL) {
        for (const holdq_node *n = q->head; n != NULL; n = n->next) {
            if (strcmp(n->item.topic, topic) != 0) continue;
            c++;
            b += n->cost;
        }
    }
    if (count != NULL) *count = c;
    if (bytes != NULL) *bytes = b;
}

int mqe2e_holdq_evict_worst(mqe2e_holdq *q, const char *topic, uint32_t above)
{
    mqe2e_held *h = NULL;
    if (q == NULL) return MQE2E_ERR_INVALID_ARG;
    int rc = mqe2e_holdq_evict_take(q, topic, above, &h);
    mqe2e_held_free(h);
    return rc;
}

int mqe2e_holdq_evict_take(mqe2e_holdq *q, const char *topic, uint32_t above, mqe2e_held **out)
{
    if (q == NULL || out == NULL) return MQE2E_ERR_INVALID_ARG;
    *out = NULL;
    holdq_node **worst = NULL, *worst_prev = NULL, *prev = NULL;
    /* Later nodes win ties (>=): the newest of equal rank goes first. */
    for (holdq_node **link = &q->head; *link != NULL; link = &(*link)->next) {
        holdq_node *n = *link;
        if ((topic == NULL || strcmp(n->item.topic, topic) == 0) && n->rank > above &&
            (worst == NULL || n->rank >= (*worst)->rank)) {
            worst = link;
            worst_prev = prev;
        }
        prev = n;
    }
    if (worst == NULL) return MQE2E_ERR_NOT_FOUND;
    mqe2e_held *h = malloc(sizeof *h);
    if (h == NULL) return MQE2E_ERR_NOMEM;
    holdq_node *n = *worst;
    *worst = n->next;
    if (q->tail == n) q->tail = worst_prev;
    q->count--;
    q->bytes -= n->cost;
    *h = n->item;
    free(n);
    *out = h;
    return MQE2E_OK;
}
