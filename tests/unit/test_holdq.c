/* Hold queue: order, the three bounds, expiry, put-back keeping arrival time. */
#include <criterion/criterion.h>
#include <string.h>

#include "mqe2e/error.h"
#include "mqe2e/holdq.h"

static const uint8_t payload[4] = {1, 2, 3, 4};

Test(holdq, fifo_order_and_accounting)
{
    mqe2e_holdq *q = NULL;
    mqe2e_held *h = NULL;
    cr_assert_eq(mqe2e_holdq_new(&q, 8, 1000, 30), MQE2E_OK);
    cr_assert_eq(mqe2e_holdq_pop(q, &h), MQE2E_ERR_NOT_FOUND);
    cr_assert_null(h);
    for (uint32_t i = 0; i < 5; i++)
        cr_assert_eq(mqe2e_holdq_push(q, "t/a", payload, sizeof payload, i, 100 + i), MQE2E_OK);
    cr_assert_eq(mqe2e_holdq_count(q), 5);
    cr_assert_eq(mqe2e_holdq_bytes(q), 5 * (4 + 3));
    for (uint32_t i = 0; i < 5; i++) {
        cr_assert_eq(mqe2e_holdq_pop(q, &h), MQE2E_OK);
        cr_assert_eq(h->tag, i);
        cr_assert_eq(h->arrived_at, 100 + i);
        cr_assert_str_eq(h->topic, "t/a");
        cr_assert_arr_eq(h->data, payload, 4);
        mqe2e_held_free(h);
    }
    cr_assert_eq(mqe2e_holdq_count(q), 0);
    cr_assert_eq(mqe2e_holdq_bytes(q), 0);
    /* Empty payloads are messages too. */
    cr_assert_eq(mqe2e_holdq_push(q, "t", NULL, 0, 9, 1), MQE2E_OK);
    cr_assert_eq(mqe2e_holdq_pop(q, &h), MQE2E_OK);
    cr_assert_eq(h->len, 0);
    mqe2e_held_free(h);
    mqe2e_holdq_free(q);
}

Test(holdq, bounds_refuse_new_messages)
{
    mqe2e_holdq *q = NULL;
    cr_assert_eq(mqe2e_holdq_new(&q, 2, 20, 30), MQE2E_OK);
    cr_assert_eq(mqe2e_holdq_push(q, "t", payload, 4, 0, 1), MQE2E_OK);
    cr_assert_eq(mqe2e_holdq_push(q, "t", payload, 4, 1, 1), MQE2E_OK);
    cr_assert_eq(mqe2e_holdq_push(q, "t", payload, 4, 2, 1), MQE2E_ERR_EXHAUSTED, "count");
    mqe2e_holdq_free(q);

    uint8_t big[32] = {0};
    cr_assert_eq(mqe2e_holdq_new(&q, 100, 20, 30), MQE2E_OK);
    cr_assert_eq(mqe2e_holdq_push(q, "t", big, 20, 0, 1), MQE2E_ERR_TOO_LARGE, "alone too big");
    cr_assert_eq(mqe2e_holdq_push(q, "t", big, 10, 0, 1), MQE2E_OK);
    cr_assert_eq(mqe2e_holdq_push(q, "t", big, 9, 0, 1), MQE2E_ERR_EXHAUSTED, "bytes");
    cr_assert_eq(mqe2e_holdq_push(q, "t", big, 8, 0, 1), MQE2E_OK, "exactly full");
    cr_assert_eq(mqe2e_holdq_bytes(q), 20);
    mqe2e_holdq_free(q);

    cr_assert_eq(mqe2e_holdq_new(&q, 0, 20, 30), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_holdq_new(&q, 1, 0, 30), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_holdq_new(&q, 1, 1, 0), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_holdq_push(NULL, "t", payload, 4, 0, 1), MQE2E_ERR_INVALID_ARG);
}

Test(holdq, expiry_by_age_including_put_back)
{
    mqe2e_holdq *q = NULL;
    mqe2e_held *h = NULL;
    cr_assert_eq(mqe2e_holdq_new(&q, 10, 1000, 30), MQE2E_OK);
    cr_assert_eq(mqe2e_holdq_push(q, "a", payload, 4, 0, 100), MQE2E_OK);
    cr_assert_eq(mqe2e_holdq_push(q, "b", payload, 4, 1, 110), MQE2E_OK);
    cr_assert_eq(mqe2e_holdq_push(q, "c", payload, 4, 2, 120), MQE2E_OK);
    /* Put the oldest back: it goes to the tail with its first arrival time. */
    cr_assert_eq(mqe2e_holdq_pop(q, &h), MQE2E_OK);
    cr_assert_eq(mqe2e_holdq_push(q, h->topic, h->data, h->len, h->tag, h->arrived_at), MQE2E_OK);
    mqe2e_held_free(h);
    cr_assert_eq(mqe2e_holdq_expire(q, 129), 0);
    cr_assert_eq(mqe2e_holdq_expire(q, 130), 1, "a (at the tail) is 30 s old");
    cr_assert_eq(mqe2e_holdq_count(q), 2);
    cr_assert_eq(mqe2e_holdq_pop(q, &h), MQE2E_OK);
    cr_assert_str_eq(h->topic, "b");
    mqe2e_held_free(h);
    /* The tail is still right after expiring the last node. */
    cr_assert_eq(mqe2e_holdq_push(q, "d", payload, 4, 3, 131), MQE2E_OK);
    cr_assert_eq(mqe2e_holdq_expire(q, 150), 1);
    cr_assert_eq(mqe2e_holdq_pop(q, &h), MQE2E_OK);
    cr_assert_str_eq(h->topic, "d");
    mqe2e_held_free(h);
    cr_assert_eq(mqe2e_holdq_push(q, "e", payload, 4, 4, 151), MQE2E_OK);
    cr_assert_eq(mqe2e_holdq_expire(q, 1000), 1);
    cr_assert_eq(mqe2e_holdq_count(q), 0);
    cr_assert_eq(mqe2e_holdq_push(q, "f", payload, 4, 5, 1000), MQE2E_OK, "tail reset");
    cr_assert_eq(mqe2e_holdq_pop(q, &h), MQE2E_OK);
    cr_assert_str_eq(h->topic, "f");
    mqe2e_held_free(h);
    mqe2e_holdq_free(q);
}

Test(holdq, topic_usage_for_quotas)
{
    mqe2e_holdq *q = NULL;
    mqe2e_held *h = NULL;
    size_t n = 99, b = 99;
    cr_assert_eq(mqe2e_holdq_new(&q, 8, 1000, 30), MQE2E_OK);
    mqe2e_holdq_topic_usage(q, "t/a", &n, &b);
    cr_assert_eq(n, 0);
    cr_assert_eq(b, 0);
    cr_assert_eq(mqe2e_holdq_push(q, "t/a", payload, sizeof payload, 0, 1), MQE2E_OK);
    cr_assert_eq(mqe2e_holdq_push(q, "t/b", payload, 2, 0, 1), MQE2E_OK);
    cr_assert_eq(mqe2e_holdq_push(q, "t/a", payload, 1, 0, 1), MQE2E_OK);
    mqe2e_holdq_topic_usage(q, "t/a", &n, &b);
    cr_assert_eq(n, 2);
    cr_assert_eq(b, (4 + 3) + (1 + 3));
    mqe2e_holdq_topic_usage(q, "t/b", &n, NULL);
    cr_assert_eq(n, 1);
    mqe2e_holdq_topic_usage(q, "t/", &n, &b); /* exact topic, not a prefix */
    cr_assert_eq(n, 0);
    cr_assert_eq(mqe2e_holdq_pop(q, &h), MQE2E_OK);
    mqe2e_held_free(h);
    mqe2e_holdq_topic_usage(q, "t/a", &n, &b);
    cr_assert_eq(n, 1);
    cr_assert_eq(b, 1 + 3);
    mqe2e_holdq_topic_usage(NULL, "t/a", &n, &b);
    cr_assert_eq(n, 0);
    mqe2e_holdq_free(q);
}

/* Issue 11: eviction by rank (epochs ahead): the highest rank above the
 * threshold goes first, the newest of equal ranks, on one topic or any;
 * nothing ranked at or below the threshold is ever evicted. */
Test(holdq, evict_worst_by_rank)
{
    mqe2e_holdq *q = NULL;
    cr_assert_eq(mqe2e_holdq_new(&q, 16, 4096, 30), MQE2E_OK);
    const uint8_t d[4] = {1, 2, 3, 4};
    cr_assert_eq(mqe2e_holdq_push_ranked(q, "a", d, 1, 1, 100, 1), MQE2E_OK);
    cr_assert_eq(mqe2e_holdq_push_ranked(q, "a", d, 2, 2, 100, 3), MQE2E_OK);
    cr_assert_eq(mqe2e_holdq_push_ranked(q, "b", d, 3, 3, 100, 5), MQE2E_OK);
    cr_assert_eq(mqe2e_holdq_push_ranked(q, "a", d, 4, 4, 100, 3), MQE2E_OK);
    cr_assert_eq(mqe2e_holdq_push(q, "a", d, 1, 5, 100), MQE2E_OK); /* rank 0 */
    size_t bytes = mqe2e_holdq_bytes(q);

    /* Topic "a": rank 3, newest first (len 4), then the other rank 3. */
    cr_assert_eq(mqe2e_holdq_evict_worst(q, "a", 1), MQE2E_OK);
    cr_assert_eq(mqe2e_holdq_count(q), 4);
    cr_assert_eq(mqe2e_holdq_bytes(q), bytes - 5U);
    cr_assert_eq(mqe2e_holdq_evict_worst(q, "a", 1), MQE2E_OK);
    cr_assert_eq(mqe2e_holdq_evict_worst(q, "a", 1), MQE2E_ERR_NOT_FOUND);
    /* Any topic: "b" (rank 5); then only rank 1 above 0. */
    cr_assert_eq(mqe2e_holdq_evict_worst(q, NULL, 0), MQE2E_OK);
    cr_assert_eq(mqe2e_holdq_evict_worst(q, NULL, 1), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_holdq_evict_worst(q, NULL, 0), MQE2E_OK);
    cr_assert_eq(mqe2e_holdq_evict_worst(q, NULL, 0), MQE2E_ERR_NOT_FOUND);
    /* The rank-0 message is left, and the queue is still a working FIFO. */
    cr_assert_eq(mqe2e_holdq_count(q), 1);
    cr_assert_eq(mqe2e_holdq_push(q, "c", d, 2, 6, 101), MQE2E_OK);
    mqe2e_held *h = NULL;
    cr_assert_eq(mqe2e_holdq_pop(q, &h), MQE2E_OK);
    cr_assert_eq(h->tag, 5);
    mqe2e_held_free(h);
    cr_assert_eq(mqe2e_holdq_pop(q, &h), MQE2E_OK);
    cr_assert_eq(h->tag, 6);
    mqe2e_held_free(h);
    cr_assert_eq(mqe2e_holdq_count(q), 0);
    cr_assert_eq(mqe2e_holdq_bytes(q), 0);
    /* Evicting the tail keeps pushes working. */
    cr_assert_eq(mqe2e_holdq_push_ranked(q, "a", d, 1, 7, 102, 0), MQE2E_OK);
    cr_assert_eq(mqe2e_holdq_push_ranked(q, "a", d, 1, 8, 102, 9), MQE2E_OK);
    cr_assert_eq(mqe2e_holdq_evict_worst(q, NULL, 0), MQE2E_OK);
    cr_assert_eq(mqe2e_holdq_push_ranked(q, "a", d, 1, 9, 102, 0), MQE2E_OK);
    cr_assert_eq(mqe2e_holdq_pop(q, &h), MQE2E_OK);
    cr_assert_eq(h->tag, 7);
    mqe2e_held_free(h);
    cr_assert_eq(mqe2e_holdq_pop(q, &h), MQE2E_OK);
    cr_assert_eq(h->tag, 9);
    mqe2e_held_free(h);
    cr_assert_eq(mqe2e_holdq_evict_worst(NULL, NULL, 0), MQE2E_ERR_INVALID_ARG);
    mqe2e_holdq_free(q);
}
