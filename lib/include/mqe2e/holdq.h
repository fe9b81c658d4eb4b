/**
 * @file holdq.h
 * @brief A bounded first-in first-out queue of received envelopes waiting for
 *        a key (an epoch newer than any the keystore holds).
 *
 * Holding instead of dropping lets a device that was offline during a
 * rotation read what the broker queued for it once the control plane has
 * fetched the new epoch. The queue is bounded three ways: number of
 * messages, total bytes (payload plus topic) and age. The clock is passed in
 * (seconds). Items hold envelopes, which are ciphertext: nothing here is
 * secret. Not thread-safe: callers serialise access.
 */
#ifndef MQE2E_HOLDQ_H
#define MQE2E_HOLDQ_H

#include <stddef.h>
#include <stdint.h>

#include "mqe2e/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Default message count limit (used by the Paho front). */
#define MQE2E_HOLDQ_DEFAULT_COUNT 256U
/** Default byte limit, payload plus topic (used by the Paho front). */
#define MQE2E_HOLDQ_DEFAULT_BYTES (1U << 20)
/** Default age limit in seconds (used by the Paho front). */
#define MQE2E_HOLDQ_DEFAULT_AGE 30U

/** Opaque queue handle; created by mqe2e_holdq_new(), freed by mqe2e_holdq_free(). */
typedef struct mqe2e_holdq mqe2e_holdq;

/** One held message; owned by the caller once taken out (free with mqe2e_held_free()). */
typedef struct mqe2e_held {
    char *topic;         /**< NUL-terminated topic name */
    uint8_t *data;       /**< the envelope as received */
    size_t len;          /**< its length */
    uint32_t tag;        /**< caller's flags (e.g. QoS, retained), kept as given */
    uint64_t arrived_at; /**< seconds, when it was first held */
    uint8_t *meta;       /**< caller's bytes kept with it (mqe2e_holdq_push_meta()), or NULL */
    size_t meta_len;     /**< their length */
} mqe2e_held;

/**
 * @brief Create a queue.
 * @param q         receives the new queue (caller frees with mqe2e_holdq_free()).
 * @param max_count most messages (>= 1).
 * @param max_bytes most bytes (>= 1).
 * @param max_age   seconds a message may wait (>= 1).
 * @return ::MQE2E_OK, ::MQE2E_ERR_INVALID_ARG, ::MQE2E_ERR_NOMEM.
 */
MQE2E_API int mqe2e_holdq_new(mqe2e_holdq **q, size_t max_count, size_t max_bytes,
                              uint64_t max_age);

/** @brief Free the queue and everything still in it. NULL is a no-op. */
MQE2E_API void mqe2e_holdq_free(mqe2e_holdq *q);

/**
 * @brief Append a copy of a message at the tail.
 * @param q     the queue.
 * @param topic NUL-terminated topic name; copied.
 * @param data  the envelope; copied.
 * @param len   length of @p data.
 * @param tag   caller's flags, returned unchanged in mqe2e_held::tag.
 * @param arrived_at when it first arrived (kept when a message is put back).
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_TOO_LARGE (alone
 *         over max_bytes); ::MQE2E_ERR_EXHAUSTED (the queue is full by count
 *         or bytes: the caller drops the message); ::MQE2E_ERR_NOMEM.
 */
MQE2E_API int mqe2e_holdq_push(mqe2e_holdq *q, const char *topic, const uint8_t *data, size_t len,
                               uint32_t tag, uint64_t arrived_at);

/**
 * @brief As mqe2e_holdq_push(), with a rank for mqe2e_holdq_evict_worst()
 *        (mqe2e_holdq_push() ranks 0). The device session ranks a message by how
 *        many epochs ahead of the keystore's current one it names: a genuine
 *        rotation is one ahead, a forger's guess usually more.
 * @param q     the queue.
 * @param topic NUL-terminated topic name; copied.
 * @param data  the envelope; copied.
 * @param len   length of @p data.
 * @param tag   caller's flags, returned unchanged in mqe2e_held::tag.
 * @param arrived_at when it first arrived.
 * @param rank  caller's rank; higher is evicted first.
 * @return as mqe2e_holdq_push().
 */
MQE2E_API int mqe2e_holdq_push_ranked(mqe2e_holdq *q, const char *topic, const uint8_t *data,
                                      size_t len, uint32_t tag, uint64_t arrived_at,
                                      uint32_t rank);

/**
 * @brief As mqe2e_holdq_push_ranked(), keeping a copy of @p meta (the device
 *        session's serialised MQTT v5 properties of the message) with it,
 *        returned in mqe2e_held::meta. Its bytes count towards the limits.
 * @param q     the queue.
 * @param topic NUL-terminated topic name; copied.
 * @param data  the envelope; copied.
 * @param len   length of @p data.
 * @param meta  caller's bytes (no secret); copied; NULL when @p meta_len is 0.
 * @param meta_len length of @p meta.
 * @param tag   caller's flags, returned unchanged in mqe2e_held::tag.
 * @param arrived_at when it first arrived.
 * @param rank  caller's rank; higher is evicted first.
 * @return as mqe2e_holdq_push().
 */
MQE2E_API int mqe2e_holdq_push_meta(mqe2e_holdq *q, const char *topic, const uint8_t *data,
                                    size_t len, const uint8_t *meta, size_t meta_len,
                                    uint32_t tag, uint64_t arrived_at, uint32_t rank);

/**
 * @brief Remove the held message of the highest rank above @p above (the
 *        newest of equal ranks), on @p topic only when it is not NULL.
 * @param q     the queue.
 * @param topic NUL-terminated topic name compared exactly, or NULL for any.
 * @param above only a message ranked strictly higher is removed.
 * @return ::MQE2E_OK (one removed and freed: the caller counts it),
 *         ::MQE2E_ERR_NOT_FOUND (none ranked above), ::MQE2E_ERR_INVALID_ARG.
 */
MQE2E_API int mqe2e_holdq_evict_worst(mqe2e_holdq *q, const char *topic, uint32_t above);

/**
 * @brief As mqe2e_holdq_evict_worst(), handing the removed message to the
 *        caller instead of freeing it (the device session spools it).
 * @param q     the queue.
 * @param topic NUL-terminated topic name compared exactly, or NULL for any.
 * @param above only a message ranked strictly higher is removed.
 * @param out   receives it (caller frees with mqe2e_held_free()); NULL when none.
 * @return ::MQE2E_OK, ::MQE2E_ERR_NOT_FOUND, ::MQE2E_ERR_INVALID_ARG,
 *         ::MQE2E_ERR_NOMEM (nothing removed).
 */
MQE2E_API int mqe2e_holdq_evict_take(mqe2e_holdq *q, const char *topic, uint32_t above,
                                     mqe2e_held **out);

/**
 * @brief Take the oldest message out.
 * @param q   the queue.
 * @param out receives a new item (caller frees with mqe2e_held_free()); NULL when empty.
 * @return ::MQE2E_OK, ::MQE2E_ERR_NOT_FOUND (empty), ::MQE2E_ERR_INVALID_ARG.
 */
MQE2E_API int mqe2e_holdq_pop(mqe2e_holdq *q, mqe2e_held **out);

/**
 * @brief Drop every message that waited max_age seconds or more at @p now.
 * @return how many were dropped (the caller counts them).
 */
MQE2E_API size_t mqe2e_holdq_expire(mqe2e_holdq *q, uint64_t now);

/** @brief Messages held (0 for NULL). */
MQE2E_API size_t mqe2e_holdq_count(const mqe2e_holdq *q);

/** @brief Bytes held (0 for NULL). */
MQE2E_API size_t mqe2e_holdq_bytes(const mqe2e_holdq *q);

/**
 * @brief How many messages and bytes (envelope plus topic) are held for one
 *        topic, for per-topic quotas (one forger must not crowd out others).
 * @param q     the queue (NULL: nothing held).
 * @param topic the topic name, compared exactly (not as a filter).
 * @param count receives the number of messages held for @p topic (may be NULL).
 * @param bytes receives their bytes (may be NULL); both 0 for NULL arguments.
 */
MQE2E_API void mqe2e_holdq_topic_usage(const mqe2e_holdq *q, const char *topic, size_t *count,
                                       size_t *bytes);

/** @brief Free an item taken out of a queue. NULL is a no-op. */
MQE2E_API void mqe2e_held_free(mqe2e_held *h);

#ifdef __cplusplus
}
#endif
#endif
