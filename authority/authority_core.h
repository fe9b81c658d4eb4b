/**
 * @file authority_core.h
 * @brief The authority's core: control frames and time in, frames and store
 *        operations out. No MQTT, no clock, no Paho header.
 *
 * The core decides everything the authority does: which control frames it
 * answers (enrollment, HELLO, operator commands, through one control-frame
 * table), which groups it rotates and when, what it pushes to whom. It reads
 * and writes the store (authority_db.h) and hands every outgoing frame to the
 * caller's ::authority_io. Time comes in with every call (wall seconds for
 * protocol decisions, a monotonic millisecond count for admission and
 * batching), so the same frames at the same times give the same decisions:
 * tests drive it in-process without a broker (tests/unit/test_authority_core.c),
 * and the Paho service (authority_service.c) is a thin loop around it.
 *
 * The core is single-threaded: one caller at a time.
 */
#ifndef MQE2E_AUTHORITY_CORE_H
#define MQE2E_AUTHORITY_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "authority_db.h"
#include "mqe2e/keystore.h"
#include "ratelimit.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Default control prefix. */
#define AUTHORITY_DEFAULT_PREFIX "mqe2e"
/** Default credential lifetime: 30 days. */
#define AUTHORITY_DEFAULT_CREDENTIAL_TTL (30ULL * 24U * 3600U)
/** Default grace of retired epochs handed out by HELLO: 1 hour. */
#define AUTHORITY_DEFAULT_GRACE 3600ULL
/** Grace of a group's retired epochs after a member left it (revoked,
 *  replaced, ungranted): they held those epochs. */
#define AUTHORITY_DEFAULT_REVOKE_GRACE 30ULL
/** Default validity of a signed revocation list (next_update - issued_at): 1 hour. */
#define AUTHORITY_DEFAULT_LIST_VALIDITY 3600ULL
/** Most ENROLL requests made durable by one database commit (group commit). */
#define AUTHORITY_ENROLL_BATCH 32U
/** Refusal log lines written per second at most; the rest are only counted. */
#define AUTHORITY_REFUSAL_LOG_PER_S 20U
/** Longest wait (ms) of a queued enrollment for its batch while frames keep coming. */
#define AUTHORITY_ENROLL_BATCH_WAIT_MS 20U

/** HKDF salt of the database key. */
#define AUTHORITY_DB_KEY_SALT "mqe2e/v1/authority-db"

/** Protocol settings of the core. Strings are borrowed for the core's life. */
typedef struct authority_core_config {
    const char *prefix;      /**< control prefix P */
    uint64_t credential_ttl; /**< seconds */
    uint64_t grace;          /**< seconds a retired epoch is still handed out */
    uint64_t revoke_grace;   /**< retired epochs' grace after a member left (0 = default) */
    /** Revocation list validity (next_update - issued_at), seconds; the list is
     *  signed afresh when half of it passed (0: AUTHORITY_DEFAULT_LIST_VALIDITY). */
    uint64_t list_validity;
    /** Members at which a `group grant` or an enrollment converts a push
     *  group to a key tree (docs/AUTHORITY.md, tree_threshold); 0: never. */
    uint64_t tree_threshold;
    int verbose; /**< 1: log every handled message */
    /** Admission of handshake work (ratelimit.h), or NULL for authority_rl_defaults(). */
    const authority_rl_config *limits;
} authority_core_config;

/**
 * What the core asks of the outside world. Every callback gets @c ctx back.
 * Buffers passed to a callback are borrowed for the call only (the core
 * reuses and wipes them afterwards); the callee copies what it keeps.
 */
typedef struct authority_io {
    void *ctx; /**< the caller's, passed back unchanged */
    /**
     * Publish @p len bytes of @p payload to @p topic (QoS 1; retained when
     * @p retained is 1). Returns 0 when handed over, -1 on failure (the core
     * counts a failed push; the callee logs why). Required.
     */
    int (*publish)(void *ctx, const char *topic, const uint8_t *payload, size_t len, int retained);
    /** Wait until the publishes handed over so far are delivered (or failed). Optional. */
    void (*flush)(void *ctx);
    /**
     * Start receiving @p filter (QoS 0): data envelopes of a group rotated by
     * message count, which the core counts (authority_core_message()). Optional.
     */
    void (*subscribe)(void *ctx, const char *filter);
    /** One log line, without a time stamp or newline (the caller adds them). Optional:
     *  NULL discards the lines. Lines never hold secrets. */
    void (*log)(void *ctx, const char *line);
    /**
     * Optional stopwatch in microseconds, read only to report in the log how
     * long pushing a rotated group took ("members pushed in X ms", which the
     * benchmarks read). It never influences a decision; NULL reports 0.0 ms.
     */
    uint64_t (*stopwatch_us)(void *ctx);
} authority_io;

/** The core's state; opaque outside the core's own files. */
typedef struct authority authority_core;

/**
 * @brief Create a core over an open store.
 * @param out the new core; free it with authority_core_free().
 * @param ks the authority keystore (identity), borrowed; must outlive the core.
 *        The core keeps a sodium_malloc()ed copy of its X25519 secret, wiped
 *        and freed by authority_core_free().
 * @param db the open store, borrowed; must outlive the core.
 * @param cfg settings, borrowed with its strings for the core's life.
 * @param io the outside world, copied (its @c ctx is borrowed).
 * @param now wall clock (seconds): the core's start time (status "uptime").
 * @return MQE2E_OK; MQE2E_ERR_INVALID_ARG (no client id, invalid prefix, no
 *         publish callback); MQE2E_ERR_NOMEM; a keystore error.
 */
int authority_core_new(authority_core **out, mqe2e_keystore *ks, mqe2e_adb *db,
                       const authority_core_config *cfg, const authority_io *io, uint64_t now);

/** @brief Commit queued enrollments, then wipe and free the core. NULL is a no-op. */
void authority_core_free(authority_core *a, uint64_t now, uint64_t now_ms);

/**
 * @brief (Re)connected: publish the retained revocation list (P/revocations)
 *        and the subscriptions of groups rotated by message count.
 * @param now wall clock, seconds.
 */
void authority_core_connected(authority_core *a, uint64_t now);

/** @brief The request topic, "P/authority" (owned by the core). */
const char *authority_core_request_topic(const authority_core *a);

/**
 * @brief Handle one received message.
 *
 * A message on P/authority is a control frame: the control-frame table picks
 * its decoder and handler by kind (ENROLL and HELLO step 1, OPERATOR step 1);
 * anything else is counted (frame_unknown) and dropped. Other topics carry
 * data envelopes of groups rotated by message count (counted, never opened).
 * Replies and pushes go out through the io's publish. ENROLL requests are
 * queued and answered in batches (one store commit): by a later message,
 * authority_core_tick() or authority_core_free().
 * @param topic, payload, len borrowed for the call.
 * @param now wall clock, seconds; @param now_ms monotonic milliseconds.
 */
void authority_core_message(authority_core *a, const char *topic, const uint8_t *payload,
                            size_t len, uint64_t now, uint64_t now_ms);

/**
 * @brief Time passed: answer the queued enrollments when their batch is due
 *        (@p idle, full or AUTHORITY_ENROLL_BATCH_WAIT_MS old), rotate the
 *        groups due by schedule, sign the revocation list afresh and publish
 *        it retained once half its validity (@c list_validity) passed since
 *        it was issued, prune expired operator nonces and tokens.
 * @param idle 1 when no message arrived since the last call.
 */
void authority_core_tick(authority_core *a, uint64_t now, uint64_t now_ms, int idle);

/** @brief 1 while enrollments wait for their batch (the caller polls sooner). */
int authority_core_batching(const authority_core *a);

/** @brief The value of counter @p name (the names of `mqe2e status --json`), or 0. */
uint64_t authority_core_counter(const authority_core *a, const char *name);

/**
 * @brief Database key: HKDF-SHA256(salt "mqe2e/v1/authority-db", ikm = the
 *        authority's X25519 secret, info = authority id).
 * @param key 32 bytes, caller-owned; the caller wipes it.
 * @return MQE2E_OK or a negative mqe2e_error.
 */
int authority_db_key(uint8_t key[MQE2E_ADB_KEY_BYTES], const mqe2e_keystore *ks);

/**
 * @brief The authority pin text of @p ks with control prefix @p prefix.
 * @param out malloc()ed text (public); the caller free()s it.
 * @return MQE2E_OK or a negative mqe2e_error.
 */
int authority_pin_text(char **out, const mqe2e_keystore *ks, const char *prefix);

/** Signing callback over mqe2e_keystore_sign() (ctx is the keystore). */
int authority_keystore_sign(void *ctx, uint8_t sig[64], const uint8_t *msg, size_t msg_len);

#ifdef __cplusplus
}
#endif
#endif
