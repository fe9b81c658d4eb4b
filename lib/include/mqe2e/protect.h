/**
 * @file protect.h
 * @brief The two-call API: protect a payload for a topic, unprotect a received
 *        one. Applies the topic policy, picks the group epoch, derives and
 *        caches sender keys, enforces replay windows and epoch grace periods,
 *        and counts every drop by reason.
 *
 * The clock is passed in (seconds); nothing here does I/O except through the
 * keystore's storage backend. Not thread-safe: callers serialise access.
 */
#ifndef MQE2E_PROTECT_H
#define MQE2E_PROTECT_H

#include <stddef.h>
#include <stdint.h>

#include "mqe2e/envelope.h"
#include "mqe2e/export.h"
#include "mqe2e/keystore.h"
#include "mqe2e/msgmeta.h"
#include "mqe2e/policy.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Opaque protector: seals and opens payloads per policy; owns its key cache. */
typedef struct mqe2e_protector mqe2e_protector;

/**
 * Options; initialise with ::MQE2E_PROTECTOR_OPTIONS_INIT.
 *
 * Replay checkpoints (the receive windows) are written to the keystore after
 * @c checkpoint_every accepted messages or once @c checkpoint_seconds of the
 * caller's clock passed since the last checkpoint, whichever comes first, and
 * when the protector is freed. A crash loses only what was accepted since the
 * last checkpoint: those messages (at most that many, received within that
 * time) could be accepted once more if replayed to a restarted receiver;
 * anything accepted before it stays refused (docs/KEYSTORE.md).
 */
typedef struct mqe2e_protector_options {
    uint32_t struct_version;      /**< 1 or 2 (2 adds checkpoint_seconds) */
    uint32_t replay_width;        /**< replay window width (0 = default 128) */
    uint64_t epoch_grace_seconds; /**< how long a retired epoch stays readable */
    size_t max_payload;           /**< largest plaintext (0 = 1 MiB) */
    uint32_t checkpoint_every;    /**< checkpoint after N accepted messages (0 = 4096;
                                       UINT32_MAX = never by count) */
    /* struct_version 2 */
    uint32_t checkpoint_seconds;  /**< checkpoint when this many seconds passed since the
                                       last one, checked on each accepted message (0 = 5;
                                       UINT32_MAX = never by time) */
} mqe2e_protector_options;

/** Initialiser of ::mqe2e_protector_options: struct_version 2, a one-hour epoch grace, defaults elsewhere. */
#define MQE2E_PROTECTOR_OPTIONS_INIT { 2U, 0U, 3600U, 0U, 0U, 0U }

/** Default of mqe2e_protector_options::checkpoint_every. */
#define MQE2E_CHECKPOINT_DEFAULT_EVERY 4096U
/** Default of mqe2e_protector_options::checkpoint_seconds. */
#define MQE2E_CHECKPOINT_DEFAULT_SECONDS 5U

/** Drop reasons counted by the receiver, indexed by mqe2e_drop_reason(). */
typedef enum mqe2e_drop_reason {
    MQE2E_DROP_DECODE = 0,     /**< malformed, truncated */
    MQE2E_DROP_TOO_LARGE,      /**< over max_payload */
    MQE2E_DROP_SUITE,          /**< unknown version / mode / suite */
    MQE2E_DROP_NO_POLICY,      /**< topic has no policy */
    MQE2E_DROP_POLICY,         /**< mode does not match the topic's policy */
    MQE2E_DROP_NO_KEY,         /**< unknown group or epoch */
    MQE2E_DROP_EXPIRED,        /**< epoch past grace */
    MQE2E_DROP_REPLAY,         /**< replayed or too old */
    MQE2E_DROP_AUTH,           /**< failed authentication */
    MQE2E_DROP_OTHER,          /**< anything else (I/O, memory) */
    MQE2E_DROP_UNKNOWN_SIGNER, /**< signed envelope from a sender id not in the signer directory */
    MQE2E_DROP_GRANT,          /**< signed envelope on a topic its signer may not publish on */
    MQE2E_DROP_REVOKED,        /**< sender id retired by the revocation list (any epoch) */
    MQE2E_DROP_REASON_COUNT
} mqe2e_drop_reason;

/** Counters; a plain snapshot copied out by mqe2e_protector_counters(). */
typedef struct mqe2e_counters {
    uint64_t sealed;     /**< envelopes produced */
    uint64_t opened;     /**< envelopes authenticated and delivered */
    uint64_t plaintext_out; /**< messages sent on explicit plaintext topics */
    uint64_t plaintext_in;  /**< messages received on explicit plaintext topics */
    uint64_t dropped[MQE2E_DROP_REASON_COUNT]; /**< by reason */
} mqe2e_counters;

/** @brief Map a return code to the drop reason it is counted under. */
MQE2E_API mqe2e_drop_reason mqe2e_drop_reason_of(int code);

/** @brief Stable label of a drop reason ("auth", "replay", ...). */
MQE2E_API const char *mqe2e_drop_reason_name(mqe2e_drop_reason r);

/**
 * @brief Create a protector over a keystore and a policy.
 * @param out    receives the new protector; free with mqe2e_protector_free().
 * @param ks     borrowed; must outlive the protector.
 * @param policy borrowed; must outlive the protector.
 * @param opts   may be NULL for defaults; copied.
 */
MQE2E_API int mqe2e_protector_new(mqe2e_protector **out, mqe2e_keystore *ks,
                                  const mqe2e_policy *policy,
                                  const mqe2e_protector_options *opts);

/** @brief Write replay checkpoints, wipe cached keys, free. NULL is a no-op. */
MQE2E_API void mqe2e_protector_free(mqe2e_protector *p);

/** @brief Upper bound of the protected size of a payload of pt_len bytes (any mode,
 *         signed group mode included). */
MQE2E_API size_t mqe2e_protect_bound(size_t pt_len);

/**
 * @brief Protect a payload for publishing on @p topic.
 *
 * Group policy: seals with the group's current epoch and the next reserved
 * sequence number; in signed group mode (the rule has ::MQE2E_POLICY_FLAG_SIGNED
 * or the keystore marks the group signed) the envelope is also signed with
 * the keystore's identity key. Plaintext policy: copies the payload
 * unchanged. No policy: ::MQE2E_ERR_NO_POLICY and nothing is written (never a
 * clear-text fallback).
 * @param p       the protector.
 * @param topic   NUL-terminated topic name the payload is published on.
 * @param pt      plaintext payload; only read (may be NULL when pt_len is 0).
 * @param pt_len  length of @p pt.
 * @param now     caller's clock, seconds.
 * @param out     caller buffer of at least mqe2e_protect_bound(pt_len) bytes.
 * @param out_cap size of @p out in bytes.
 * @param out_len receives the protected payload length.
 * @return ::MQE2E_OK, ::MQE2E_ERR_NO_POLICY, ::MQE2E_ERR_NO_KEY,
 *         ::MQE2E_ERR_TOO_LARGE, ::MQE2E_ERR_BUFFER_TOO_SMALL, ::MQE2E_ERR_IO,
 *         ::MQE2E_ERR_POLICY (channel topics need the channel layer),
 *         ::MQE2E_ERR_STATE (signed topic, but the keystore cannot sign),
 *         ::MQE2E_ERR_INVALID_ARG.
 */
MQE2E_API int mqe2e_protect(mqe2e_protector *p, const char *topic, const uint8_t *pt,
                            size_t pt_len, uint64_t now, uint8_t *out, size_t out_cap,
                            size_t *out_len);

/**
 * @brief mqe2e_protect() for a message with MQTT v5 properties and a retain
 *        flag: when the topic's rule binds any (mqe2e_policy_bind_last()),
 *        they enter the associated data (docs/PROTOCOL.md section 2.5.1), so
 *        a receiver binding the same list refuses the message if a bound
 *        property or the retain flag was changed, added or removed on the way.
 * @param p       the protector.
 * @param topic   NUL-terminated topic name the payload is published on.
 * @param meta    the properties and retain flag the message will be published
 *                with (borrowed; NULL: none, retain 0). Ignored on topics whose
 *                rule binds nothing, which behave exactly as mqe2e_protect().
 * @param pt      plaintext payload; only read.
 * @param pt_len  length of @p pt.
 * @param now     caller's clock, seconds.
 * @param out     caller buffer of at least mqe2e_protect_bound(pt_len) bytes.
 * @param out_cap size of @p out in bytes.
 * @param out_len receives the protected payload length.
 * @return as mqe2e_protect(); also
 * ::MQE2E_ERR_INVALID_ARG for a bound property longer than
 * ::MQE2E_PROP_MAX_BYTES (no sequence number is used then).
 */
MQE2E_API int mqe2e_protect_meta(mqe2e_protector *p, const char *topic,
                                 const mqe2e_msg_meta *meta, const uint8_t *pt, size_t pt_len,
                                 uint64_t now, uint8_t *out, size_t out_cap, size_t *out_len);

/** A pending replay-window update returned by mqe2e_unprotect_begin(). */
typedef struct mqe2e_receipt {
    uint32_t active;    /**< 1 if commit has something to do */
    uint32_t epoch;     /**< epoch of the opened envelope */
    uint32_t sender_id; /**< its sender */
    uint64_t seq;       /**< its sequence number, recorded by the commit */
    char group_id[MQE2E_GROUP_ID_MAX_BYTES + 1]; /**< its group, NUL-terminated */
} mqe2e_receipt;

/**
 * @brief Check and decrypt a received payload, without recording it.
 *
 * On success the plaintext is in @p out and @p receipt must be passed to
 * mqe2e_unprotect_commit() once the application accepted the message (or
 * dropped if it asks for redelivery). Failures are counted by reason; @p out
 * is wiped on failure.
 *
 * Signed group topics accept only signed envelopes (a group-mode envelope is
 * ::MQE2E_ERR_POLICY); the sender id must be in the group's signer directory
 * (else ::MQE2E_ERR_UNKNOWN_SIGNER) and the signature is checked before
 * decryption (::MQE2E_ERR_AUTH). Unsigned group topics accept only group-mode
 * envelopes (a signed one is ::MQE2E_ERR_POLICY): every topic takes exactly
 * the mode its policy names.
 * @param p       the protector.
 * @param topic   NUL-terminated topic name the payload arrived on.
 * @param in      the received payload (untrusted).
 * @param in_len  length of @p in.
 * @param now     caller's clock, seconds.
 * @param out     caller buffer; in_len bytes always suffice.
 * @param out_cap size of @p out in bytes.
 * @param out_len receives the plaintext length.
 * @param receipt out: the pending replay-window update for mqe2e_unprotect_commit().
 * @return ::MQE2E_OK or the reason the message must be dropped.
 */
MQE2E_API int mqe2e_unprotect_begin(mqe2e_protector *p, const char *topic, const uint8_t *in,
                                    size_t in_len, uint64_t now, uint8_t *out, size_t out_cap,
                                    size_t *out_len, mqe2e_receipt *receipt);

/**
 * @brief mqe2e_unprotect_begin() for a message that arrived with MQTT v5
 *        properties and a retain flag. On a topic whose rule binds them
 *        (mqe2e_policy_bind_last()) the associated data is rebuilt from
 *        @p meta as received: a changed, added or removed bound property is
 *        ::MQE2E_ERR_AUTH, like any other tampering (the AEAD cannot tell
 *        which). With `retain` bound, a message received with retain 1 is
 *        checked with 1 only; one received with retain 0 with 0, then with 1
 *        (brokers clear the flag on live delivery), so such a failure costs
 *        two AEAD opens (signed mode: two signature checks).
 * @param p       the protector.
 * @param topic   NUL-terminated topic name the payload arrived on.
 * @param meta    as received (borrowed; NULL: no properties, retain 0).
 * @param in      the received payload (untrusted).
 * @param in_len  length of @p in.
 * @param now     caller's clock, seconds.
 * @param out     caller buffer; in_len bytes always suffice; wiped on failure.
 * @param out_cap size of @p out in bytes.
 * @param out_len receives the plaintext length.
 * @param receipt out: the pending replay-window update for mqe2e_unprotect_commit().
 * @return as mqe2e_unprotect_begin().
 */
MQE2E_API int mqe2e_unprotect_begin_meta(mqe2e_protector *p, const char *topic,
                                         const mqe2e_msg_meta *meta, const uint8_t *in,
                                         size_t in_len, uint64_t now, uint8_t *out,
                                         size_t out_cap, size_t *out_len, mqe2e_receipt *receipt);

/**
 * @brief Record an accepted message in its replay window.
 * @return ::MQE2E_OK, or ::MQE2E_ERR_REPLAY if the same message was committed
 *         in between (then it must not be delivered again).
 */
MQE2E_API int mqe2e_unprotect_commit(mqe2e_protector *p, const mqe2e_receipt *receipt);

/** @brief mqe2e_unprotect_begin() followed by mqe2e_unprotect_commit(). */
MQE2E_API int mqe2e_unprotect(mqe2e_protector *p, const char *topic, const uint8_t *in,
                              size_t in_len, uint64_t now, uint8_t *out, size_t out_cap,
                              size_t *out_len);

/** @brief Count a drop that happened outside the protector (e.g. in the plugin). */
MQE2E_API void mqe2e_protector_count_drop(mqe2e_protector *p, int code);

/** @brief Copy out the counters. */
MQE2E_API void mqe2e_protector_counters(const mqe2e_protector *p, mqe2e_counters *out);

/**
 * @brief Write replay checkpoints to the keystore and flush it (nothing is
 *        written when no window and nothing else in the keystore changed).
 */
MQE2E_API int mqe2e_protector_checkpoint(mqe2e_protector *p);

struct mqe2e_revocation_list;

/**
 * @brief Adopt the retired sender ids of a verified revocation list: from
 *        now on mqe2e_unprotect_begin() drops every envelope under one of
 *        them, whatever its epoch, as ::MQE2E_ERR_REVOKED (before any key is
 *        looked up). The pairs are copied; the previous set is replaced.
 * @param p  the protector.
 * @param rl a list from mqe2e_revocation_list_verify() (borrowed, only read
 *           during the call); NULL clears the set.
 * @return ::MQE2E_OK, ::MQE2E_ERR_INVALID_ARG (p NULL), ::MQE2E_ERR_NOMEM
 *         (the previous set is kept).
 */
MQE2E_API int mqe2e_protector_set_revocations(mqe2e_protector *p,
                                              const struct mqe2e_revocation_list *rl);

/**
 * @brief Forget cached keys for a group (call after the keystore gained or
 *        lost epochs of it, e.g. after a rotation).
 */
MQE2E_API void mqe2e_protector_invalidate(mqe2e_protector *p, const char *group_id);

/**
 * @brief Build a policy with one group rule per keystore group (its topic
 *        filter), with ::MQE2E_POLICY_FLAG_SIGNED for groups marked signed.
 * @param p  existing policy to append to.
 * @param ks the keystore whose groups are read.
 */
MQE2E_API int mqe2e_policy_add_keystore_groups(mqe2e_policy *p, const mqe2e_keystore *ks);

#ifdef __cplusplus
}
#endif
#endif
