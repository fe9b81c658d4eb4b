/**
 * @file ratelimit.h
 * @brief Admission of handshake work (the Diffie-Hellman and database part of
 *        ENROLL and HELLO) by token buckets: one global bucket and one bucket
 *        per key (the claimed client id of a frame) in a fixed-size table.
 *
 * No MQTT, no clock: the caller passes the time in milliseconds, so the
 * limiter is deterministic under test. Memory is allocated once by
 * authority_rl_new() and never grows: keys live in a set-associative table
 * (4 ways per set) and a key that finds its set full replaces the least
 * recently used entry of that set. A replaced key comes back with a full
 * bucket; the global bucket still caps the total.
 *
 * Keys are hashed with SipHash (crypto_shorthash) under a random key drawn at
 * creation, so a sender cannot aim many names at one set.
 */
#ifndef MQE2E_AUTHORITY_RATELIMIT_H
#define MQE2E_AUTHORITY_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Default admitted handshakes per second, all keys together. */
#define AUTHORITY_RL_DEFAULT_RATE 2000U
/** Default burst of the global bucket. */
#define AUTHORITY_RL_DEFAULT_BURST 4000U
/** Default admitted handshakes per minute for one key. */
#define AUTHORITY_RL_DEFAULT_KEY_PER_MIN 20U
/** Default burst of one key's bucket. */
#define AUTHORITY_RL_DEFAULT_KEY_BURST 10U
/** Default number of keys tracked (rounded up to a multiple of 4). */
#define AUTHORITY_RL_DEFAULT_KEYS 16384U

/** Settings; a rate of 0 turns that bucket off (everything admitted by it). */
typedef struct authority_rl_config {
    uint32_t rate;        /**< global: tokens per second */
    uint32_t burst;       /**< global: bucket size (at least 1 when rate > 0) */
    uint32_t key_per_min; /**< per key: tokens per minute */
    uint32_t key_burst;   /**< per key: bucket size (at least 1 when key_per_min > 0) */
    uint32_t keys;        /**< table entries (>= 4; rounded up to a multiple of 4) */
} authority_rl_config;

/** Verdict of authority_rl_admit(). */
typedef enum authority_rl_verdict {
    AUTHORITY_RL_ADMIT = 0,  /**< admitted: one token taken from each bucket */
    AUTHORITY_RL_KEY = 1,    /**< refused: this key's bucket is empty (nothing taken) */
    AUTHORITY_RL_GLOBAL = 2, /**< refused: the global bucket is empty (nothing taken) */
} authority_rl_verdict;

/** Opaque limiter. */
typedef struct authority_rl authority_rl;

/** Fill @p cfg with the defaults above. */
void authority_rl_defaults(authority_rl_config *cfg);

/**
 * @brief Create a limiter; buckets start full.
 * @param out receives the limiter; free with authority_rl_free().
 * @param cfg copied.
 * @return 0; MQE2E_ERR_INVALID_ARG (NULL, keys < 4 or > 2^24); MQE2E_ERR_NOMEM.
 */
int authority_rl_new(authority_rl **out, const authority_rl_config *cfg);

/** Free @p rl (NULL is a no-op). */
void authority_rl_free(authority_rl *rl);

/**
 * @brief Ask for one unit of handshake work for @p key at @p now_ms.
 *
 * The key bucket is checked first and the global one second; a refusal by
 * either takes nothing from the other, so a flood on one key does not spend
 * the global budget. Time going backwards is treated as no time passing.
 * @param key bytes naming the sender (e.g. kind byte + claimed client id); read only.
 * @return an ::authority_rl_verdict.
 */
authority_rl_verdict authority_rl_admit(authority_rl *rl, const void *key, size_t key_len,
                                        uint64_t now_ms);

/** Keys currently held in the table (for status and tests). */
size_t authority_rl_keys_used(const authority_rl *rl);

#ifdef __cplusplus
}
#endif
#endif
