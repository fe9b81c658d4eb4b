/**
 * @file session.h
 * @brief The sans-I/O device session: everything a connected client does,
 *        without a transport, a thread or a clock.
 *
 * A session owns what an encrypting MQTT client must do between its
 * transport and its application (docs/PROTOCOL.md, "Client behaviour"):
 * policy lookup, protect and unprotect, replay commits, and the control
 * plane (HELLO on connect, periodic HELLO and the freshness bound, PUSH,
 * the hold queue, pairwise channels, credential renewal, revocation lists,
 * signer grants). It never calls out to do I/O: the caller reports what
 * happened (connected, a message arrived, time passed, the application wants
 * to publish) and then takes the session's answers one by one with
 * mqe2e_session_next(): deliver a plaintext, a message was dropped (and why),
 * publish these bytes, subscribe to this filter. mqe2e_session_next_timer()
 * says when to call mqe2e_session_tick() again.
 *
 * Time comes in with every call as a ::mqe2e_session_time: wall-clock
 * seconds (epoch grace, credential expiry and the authority's retirement
 * times are wall-clock facts) and monotonic milliseconds (the freshness
 * bound, retries, rate limits; never jumps). Passing both keeps the session
 * deterministic: the same inputs give the same actions, which is what its
 * unit tests and every language binding rely on.
 *
 * Ownership. The session borrows the keystore (which must outlive it) and
 * owns its protector and, unless the caller gave one, its policy. Pointers in
 * an action stay valid until the next call of any mqe2e_session_* function
 * on the same session; plaintext in a ::MQE2E_SESSION_DELIVER action is wiped
 * by the session at that point, so copy what you keep (the session reuses
 * the released action's buffers for the next one: a pointer kept past that
 * call may read another message, zeros, or freed memory).
 *
 * Threads. Not thread-safe: one session is used by one thread at a time
 * (the Paho fronts hold one lock around every call and the action drain).
 *
 * The Paho fronts (plugin/) are glue over this object; docs/ARCHITECTURE.md
 * ("Binding the session") shows how another language binds to it.
 */
#ifndef MQE2E_SESSION_H
#define MQE2E_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "mqe2e/export.h"
#include "mqe2e/keystore.h"
#include "mqe2e/policy.h"
#include "mqe2e/protect.h"
#include "mqe2e/spool.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Opaque session handle: mqe2e_session_new(), mqe2e_session_free(). */
typedef struct mqe2e_session mqe2e_session;

/** The caller's clocks, passed by value to every call that may act on time. */
typedef struct mqe2e_session_time {
    uint64_t wall_s;  /**< wall clock, seconds since the Unix epoch */
    uint64_t mono_ms; /**< monotonic clock, milliseconds (any origin; never goes back) */
} mqe2e_session_time;

/** Log levels of the session's log callback (same values as the Paho fronts'). */
typedef enum mqe2e_session_log_level {
    MQE2E_SESSION_LOG_ERROR = 1,   /**< something the operator must act on */
    MQE2E_SESSION_LOG_WARNING = 2, /**< a refused frame or message */
    MQE2E_SESSION_LOG_INFO = 3,    /**< control-plane progress */
    MQE2E_SESSION_LOG_DEBUG = 4,   /**< every frame */
} mqe2e_session_log_level;

/**
 * Log sink: called synchronously from inside session calls, never with keys
 * or plaintext in @p message (borrowed for the call).
 */
typedef void mqe2e_session_log_fn(void *ctx, int level, const char *message);

/** Session options; start from ::MQE2E_SESSION_OPTIONS_INIT. */
typedef struct mqe2e_session_options {
    uint32_t struct_version;  /**< 1, or 2 (adds @ref spool) */
    size_t hold_count;        /**< hold queue: most messages (0 = ::MQE2E_HOLDQ_DEFAULT_COUNT) */
    size_t hold_bytes;        /**< hold queue: most bytes (0 = ::MQE2E_HOLDQ_DEFAULT_BYTES) */
    uint64_t hold_seconds;    /**< hold queue: most seconds held (0 = ::MQE2E_HOLDQ_DEFAULT_AGE) */
    uint64_t fresh_max_seconds; /**< freshness bound of group sealing (0 = 900) */
    const mqe2e_protector_options *protector; /**< NULL for defaults; copied */
    mqe2e_session_log_fn *log; /**< NULL: no log */
    void *log_ctx;            /**< passed to the log callback */
    int log_level;            /**< most verbose level passed to @ref log (0 = WARNING) */
    /** struct_version 2: where held QoS >= 1 messages go when the hold queue
     * has no room for them (mqe2e/spool.h; docs/PROTOCOL.md 9.4); NULL: none,
     * they are dropped (hold_dropped, no_key). Borrowed: it must outlive the
     * session. Entries it holds already are loaded: released once their key
     * is known, forgeries purged after the first answered HELLO. */
    mqe2e_spool *spool;
} mqe2e_session_options;

/** Initializer of ::mqe2e_session_options (all defaults). */
#define MQE2E_SESSION_OPTIONS_INIT                                                                 \
    {                                                                                              \
        2U, 0U, 0U, 0U, 0U, NULL, NULL, NULL, 0, NULL                                              \
    }

/** Default freshness bound in seconds (fresh_max_seconds = 0). */
#define MQE2E_SESSION_FRESH_MAX_DEFAULT 900U

/** What the session asks its caller to do. */
typedef enum mqe2e_session_action_kind {
    MQE2E_SESSION_NONE = 0, /**< nothing (mqe2e_session_next() returned 0) */
    /** Hand @p data (plaintext, @p len bytes) received on @p topic to the
     * application. If @p receipt.active, call mqe2e_session_commit() once the
     * application accepted it; a message it refuses may come again. */
    MQE2E_SESSION_DELIVER = 1,
    /** A message on @p topic was dropped for @p code (an ::mqe2e_error); it
     * is counted already. Report it; never deliver anything for it. */
    MQE2E_SESSION_DROP = 2,
    /** Publish @p data (@p len bytes) on @p topic with @p qos and @p retained. */
    MQE2E_SESSION_PUBLISH = 3,
    /** Subscribe to the filter @p topic with @p qos: the control topics
     * after mqe2e_session_connected(), and P/tree/\<group\> of a key-tree group
     * this client became a member of (docs/PROTOCOL.md §10.9), which may come
     * out of any call, also mqe2e_session_message_received(). A transport
     * that cannot subscribe from inside its receive callback (Paho's
     * synchronous client) performs it later from another thread; updates
     * missed meanwhile are caught up by the session. */
    MQE2E_SESSION_SUBSCRIBE = 4,
    /** Unsubscribe from the filter @p topic: P/tree/\<group\> of a key-tree
     * group this client left (removed, ungranted, refused by the authority).
     * Same rule as ::MQE2E_SESSION_SUBSCRIBE; messages still arriving on it
     * are consumed and counted (control_ignored, tree_revoked). */
    MQE2E_SESSION_UNSUBSCRIBE = 5,
} mqe2e_session_action_kind;

/**
 * One action, filled by mqe2e_session_next(). Every pointer is owned by the
 * session and valid until the next mqe2e_session_* call on that session.
 */
typedef struct mqe2e_session_action {
    mqe2e_session_action_kind kind; /**< what to do */
    const char
        *topic; /**< topic name (DELIVER, DROP, PUBLISH) or filter (SUBSCRIBE, UNSUBSCRIBE) */
    const uint8_t *data;  /**< DELIVER: plaintext (wiped by the session); PUBLISH: payload */
    size_t len;           /**< length of @p data */
    int qos;              /**< DELIVER: as received; PUBLISH, SUBSCRIBE: to use */
    int retained;         /**< DELIVER: as received; PUBLISH: to set */
    int dup;              /**< DELIVER: as received */
    /** DELIVER, DROP: 1 when this is the message passed to the
     * mqe2e_session_message_received() call just made (its transport
     * properties and packet id apply), 0 when it comes from the hold queue. */
    int current;
    int code;             /**< DROP: the ::mqe2e_error reason */
    mqe2e_receipt receipt; /**< DELIVER: the replay-window update for mqe2e_session_commit() */
    /** DELIVER with @p current 0 (a released held message): the MQTT v5
     * properties it arrived with, in their order (the session's, valid as
     * the other pointers); NULL for current messages, whose properties are
     * the transport's message's. */
    const mqe2e_msg_property *props;
    size_t nprops; /**< number of @p props */
} mqe2e_session_action;

/** mqe2e_session_message_received() flag: never hold (the caller cannot take
 * released messages later, e.g. a blocking receive call). */
#define MQE2E_SESSION_NO_HOLD 1U

/** Returned by mqe2e_session_publish(): the session queued the message (a
 * channel topic); it goes out as a ::MQE2E_SESSION_PUBLISH action. */
#define MQE2E_SESSION_QUEUED 1

/** Control-plane counters; a plain snapshot (same fields and order as the
 * Paho fronts' mqe2e_control_counters). */
typedef struct mqe2e_session_counters {
    uint64_t handshakes_ok;        /**< HELLO replies and channels completed */
    uint64_t handshakes_failed;    /**< HELLO/CHANNEL frames that failed checks */
    uint64_t hellos_sent;          /**< HELLO step 1 frames queued */
    uint64_t pushes_applied;       /**< PUSH frames authenticated and applied */
    uint64_t pushes_refused;       /**< PUSH frames refused */
    uint64_t held;                 /**< messages held waiting for a newer epoch */
    uint64_t released;             /**< held messages handed to the receive path */
    uint64_t hold_dropped;         /**< held messages dropped (also counted no_key) */
    uint64_t revoked_refused;      /**< channel handshakes or messages refused: peer revoked */
    uint64_t channel_sent;         /**< channel envelopes queued */
    uint64_t channel_opened;       /**< channel envelopes authenticated and delivered */
    uint64_t control_ignored;      /**< control frames ignored */
    uint64_t channel_rate_limited; /**< CHANNEL step 1 frames refused before DH work */
    uint64_t stale_refused;        /**< group publishes refused: authority not heard in time */
    uint64_t spooled;              /**< held QoS >= 1 messages written to the spool */
    /* Key-tree groups (docs/PROTOCOL.md §10.9), appended last: */
    uint64_t tree_applied;  /**< TreeUpdates applied: a new epoch installed */
    uint64_t tree_refused;  /**< TreeUpdates refused: malformed, bad signature, a wrap
                                 that does not open, another tree */
    uint64_t tree_replayed; /**< TreeUpdates not newer than the member's epoch (replayed, reordered) */
    uint64_t tree_gaps;     /**< TreeUpdates after a missed one: a HELLO catches up */
    uint64_t tree_revoked;  /**< TreeUpdates that removed this member (it keeps nothing) */
} mqe2e_session_counters;

/**
 * @brief Create a session over an open keystore.
 *
 * With an authority pin in the keystore the control plane is on; without
 * one the session only protects and unprotects.
 * @param out     receives the session; free with mqe2e_session_free().
 * @param ks      borrowed; must outlive the session; the session changes it
 *                (keys, credential, revocation list, replay checkpoints).
 * @param policy  borrowed, must outlive the session; NULL: the session makes
 *                (and owns) a policy from the keystore's groups that grows
 *                with the groups the authority adds.
 * @param opts    NULL for defaults; copied.
 * @return ::MQE2E_OK, ::MQE2E_ERR_INVALID_ARG (bad options, invalid client
 *         id or control prefix), ::MQE2E_ERR_NOMEM, or a protector error. On
 *         failure nothing is left allocated.
 */
MQE2E_API int mqe2e_session_new(mqe2e_session **out, mqe2e_keystore *ks,
                                const mqe2e_policy *policy, const mqe2e_session_options *opts);

/** @brief Wipe (queued plaintext, channel keys) and free. NULL is a no-op.
 *  The keystore stays open (the caller closes it). */
MQE2E_API void mqe2e_session_free(mqe2e_session *s);

/** @brief Whether the control plane is on (the keystore holds an authority pin). */
MQE2E_API int mqe2e_session_has_control(const mqe2e_session *s);

/**
 * @brief The transport connected: queue SUBSCRIBE actions for the control
 *        topics (inbox, revocations, and P/tree/\<group\> of each key-tree
 *        group it is a member of) and a PUBLISH of a HELLO (with a control
 *        plane; else nothing). Perform the SUBSCRIBEs before the PUBLISH.
 * @return ::MQE2E_OK.
 */
MQE2E_API int mqe2e_session_connected(mqe2e_session *s, mqe2e_session_time now);

/** @brief The transport went down: retries wait until mqe2e_session_connected(). */
MQE2E_API void mqe2e_session_disconnected(mqe2e_session *s);

/**
 * @brief One message arrived from the transport.
 *
 * Control frames are consumed; envelopes are opened into a DELIVER action,
 * held (a newer epoch: a HELLO is queued) or dropped (a DROP action, counted
 * under its reason). Never delivers what failed a check; never falls back to
 * plaintext. Messages the session released from its hold queue come as
 * further DELIVER/DROP actions with current = 0.
 * @param s       the session.
 * @param topic   NUL-terminated topic name (borrowed for the call).
 * @param topic_len the transport's topic length, or 0 if unknown: a topic
 *                holding a NUL byte (topic_len != strlen) is dropped as
 *                ::MQE2E_ERR_DECODE.
 * @param payload received bytes (untrusted; borrowed; NULL when len is 0).
 * @param len     length of @p payload.
 * @param qos     QoS it arrived with (0..2).
 * @param retained whether it was a retained message.
 * @param dup     whether the transport flagged it as a duplicate.
 * @param flags   0 or ::MQE2E_SESSION_NO_HOLD.
 * @param now     the caller's clocks.
 * @return ::MQE2E_OK (see the actions), ::MQE2E_ERR_INVALID_ARG (NULL s).
 */
MQE2E_API int mqe2e_session_message_received(mqe2e_session *s, const char *topic,
                                             size_t topic_len, const uint8_t *payload, size_t len,
                                             int qos, int retained, int dup, unsigned flags,
                                             mqe2e_session_time now);

/**
 * @brief mqe2e_session_message_received() for a message with MQTT v5
 *        properties. On a topic whose rule binds properties or the retain
 *        flag (docs/PROTOCOL.md 2.5.1) they are checked with the envelope; a
 *        message held for an unknown epoch keeps a copy of them, checked when
 *        released and handed out in its DELIVER action (props, nprops).
 * @param s       the session.
 * @param topic   NUL-terminated topic name (borrowed for the call).
 * @param topic_len as mqe2e_session_message_received().
 * @param payload received bytes (untrusted; borrowed; NULL when len is 0).
 * @param len     length of @p payload.
 * @param qos     QoS it arrived with (0..2).
 * @param retained the retain flag it arrived with.
 * @param dup     whether the transport flagged it as a duplicate.
 * @param flags   0 or ::MQE2E_SESSION_NO_HOLD.
 * @param props   its properties in packet order (borrowed for the call; NULL when @p nprops is 0).
 * @param nprops  number of @p props.
 * @param now     the caller's clocks.
 * @return as mqe2e_session_message_received().
 */
MQE2E_API int mqe2e_session_message_received_props(mqe2e_session *s, const char *topic,
                                                   size_t topic_len, const uint8_t *payload,
                                                   size_t len, int qos, int retained, int dup,
                                                   unsigned flags,
                                                   const mqe2e_msg_property *props,
                                                   size_t nprops, mqe2e_session_time now);

/**
 * @brief Record a delivered message the application accepted (replay window).
 * @param s       the session.
 * @param receipt the receipt of its DELIVER action (copied out by the caller;
 *                wiped by the caller afterwards). Inactive receipts are a no-op.
 * @return ::MQE2E_OK, ::MQE2E_ERR_REPLAY (the same message was committed in
 *         between), ::MQE2E_ERR_IO (the keystore could not record it).
 */
MQE2E_API int mqe2e_session_commit(mqe2e_session *s, const mqe2e_receipt *receipt);

/** @brief Upper bound of the bytes mqe2e_session_publish() writes for pt_len bytes. */
MQE2E_API size_t mqe2e_session_publish_bound(size_t pt_len);

/**
 * @brief The application publishes @p pt on @p topic.
 *
 * Group and plaintext topics: the envelope is written to @p out for the
 * caller to publish (::MQE2E_OK). Channel topics: the plaintext is copied and
 * queued (sent once the channel is up, as a PUBLISH action):
 * ::MQE2E_SESSION_QUEUED. Group topics are refused while the authority was not
 * heard within the freshness bound, or the revocation list was not renewed
 * within its validity (::MQE2E_ERR_EXPIRED, counted `stale_refused`).
 * @param s       the session.
 * @param topic   NUL-terminated topic name.
 * @param pt      plaintext (borrowed; never kept unless queued, then wiped when sent or dropped).
 * @param pt_len  its length.
 * @param qos     QoS to publish with (queued channel messages).
 * @param retained retained flag (queued channel messages).
 * @param now     the caller's clocks.
 * @param out     caller buffer of mqe2e_session_publish_bound(pt_len) bytes;
 *                on a plaintext topic it holds the application's payload: wipe it.
 * @param out_cap size of @p out.
 * @param out_len receives the envelope length (0 when queued).
 * @return ::MQE2E_OK, ::MQE2E_SESSION_QUEUED, or the reason it was refused
 *         (::MQE2E_ERR_NO_POLICY, ::MQE2E_ERR_POLICY, ::MQE2E_ERR_EXPIRED,
 *         ::MQE2E_ERR_NO_KEY, ::MQE2E_ERR_TOO_LARGE, ::MQE2E_ERR_EXHAUSTED,
 *         ::MQE2E_ERR_AUTH (channel peer revoked), ...).
 */
MQE2E_API int mqe2e_session_publish(mqe2e_session *s, const char *topic, const uint8_t *pt,
                                    size_t pt_len, int qos, int retained, mqe2e_session_time now,
                                    uint8_t *out, size_t out_cap, size_t *out_len);

/**
 * @brief mqe2e_session_publish() for a message that will be published with
 *        MQTT v5 properties: on a topic whose rule binds them (and the retain
 *        flag @p retained), they are sealed into the associated data
 *        (docs/PROTOCOL.md 2.5.1). The caller publishes exactly these
 *        properties and flag. Channel topics bind nothing.
 * @param s       the session.
 * @param topic   NUL-terminated topic name.
 * @param pt      plaintext (borrowed; never kept unless queued).
 * @param pt_len  its length.
 * @param qos     QoS to publish with.
 * @param retained the retain flag it will be published with.
 * @param props   its properties (borrowed for the call; NULL when @p nprops is 0).
 * @param nprops  number of @p props.
 * @param now     the caller's clocks.
 * @param out     caller buffer of mqe2e_session_publish_bound(pt_len) bytes.
 * @param out_cap size of @p out.
 * @param out_len receives the envelope length (0 when queued).
 * @return as mqe2e_session_publish(); ::MQE2E_ERR_INVALID_ARG also for a
 *         bound property over ::MQE2E_PROP_MAX_BYTES.
 */
MQE2E_API int mqe2e_session_publish_props(mqe2e_session *s, const char *topic,
                                          const uint8_t *pt, size_t pt_len, int qos,
                                          int retained, const mqe2e_msg_property *props,
                                          size_t nprops, mqe2e_session_time now, uint8_t *out,
                                          size_t out_cap, size_t *out_len);

/**
 * @brief Time passed: run the timers (HELLO retries, periodic HELLO,
 *        renewal, channel retries, hold-queue expiry and release, pruning).
 * @param s         the session.
 * @param connected whether the transport is connected now (retries and HELLO
 *                  only go out while it is).
 * @param now       the caller's clocks.
 * @return ::MQE2E_OK.
 */
MQE2E_API int mqe2e_session_tick(mqe2e_session *s, int connected, mqe2e_session_time now);

/**
 * @brief When to call mqe2e_session_tick() next, on the monotonic clock (ms).
 * @return the deadline; UINT64_MAX when no timer is pending.
 */
MQE2E_API uint64_t mqe2e_session_next_timer(const mqe2e_session *s, mqe2e_session_time now);

/**
 * @brief Take the next action, oldest first.
 * @param s   the session.
 * @param out filled when one was waiting; its pointers are the session's,
 *            valid until the next mqe2e_session_* call on @p s.
 * @return 1 when @p out holds an action, 0 when none waits.
 */
MQE2E_API int mqe2e_session_next(mqe2e_session *s, mqe2e_session_action *out);

/** @brief Number of actions waiting (not yet taken by mqe2e_session_next()). */
MQE2E_API size_t mqe2e_session_pending(const mqe2e_session *s);

/**
 * @brief Fast path for bindings: mqe2e_session_message_received() and, when
 *        it left exactly one action, mqe2e_session_next() into @p out, in
 *        one call.
 *
 * The common case (a current message opened: one ::MQE2E_SESSION_DELIVER)
 * costs one crossing of a foreign-function boundary instead of three. Nothing
 * else changes: a DELIVER with @p out->receipt.active still needs
 * mqe2e_session_commit() once the application accepted the plaintext (never
 * before), and a drop is counted with its reason as always.
 * @param s        the session.
 * @param topic    as mqe2e_session_message_received() (borrowed).
 * @param topic_len as mqe2e_session_message_received().
 * @param payload  received bytes (untrusted; borrowed; NULL when len is 0).
 * @param len      length of @p payload.
 * @param qos      QoS it arrived with (0..2).
 * @param retained the retain flag it arrived with.
 * @param dup      whether the transport flagged it as a duplicate.
 * @param flags    ::MQE2E_SESSION_NO_HOLD or 0.
 * @param now      the caller's clocks.
 * @param out      receives the only action, as mqe2e_session_next(): every
 *                 pointer in it (plaintext included) is owned by the session,
 *                 wiped by it, and valid until the next mqe2e_session_* call
 *                 on @p s; zeroed (kind ::MQE2E_SESSION_NONE) when 0 is
 *                 returned.
 * @return 1: @p out holds the only action; 0: no action, or several, left for
 *         mqe2e_session_next(); ::MQE2E_ERR_INVALID_ARG (s or out NULL).
 */
MQE2E_API int mqe2e_session_receive_one(mqe2e_session *s, const char *topic, size_t topic_len,
                                        const uint8_t *payload, size_t len, int qos,
                                        int retained, int dup, unsigned flags,
                                        mqe2e_session_time now, mqe2e_session_action *out);

/**
 * @brief mqe2e_session_receive_one() that first commits the receipt of the
 *        previous message the application accepted, in the same call.
 *
 * For bindings whose every crossing of the foreign-function boundary costs:
 * instead of mqe2e_session_commit() right after the application accepted a
 * message, the caller keeps that receipt and hands it to the next receive.
 * The commit happens before the new message is checked, so a duplicate of
 * the accepted message is a replay as before. The caller must still commit a
 * kept receipt (mqe2e_session_commit()) before any other call that may
 * deliver (mqe2e_session_message_received(), mqe2e_session_tick()) and
 * before mqe2e_session_free(); a receipt is never committed before the
 * application accepted its message.
 * @param s        the session.
 * @param accepted NULL, or the receipt (caller memory, copied out of an
 *                 earlier DELIVER action) of a message the application
 *                 accepted and that is not committed yet: committed as by
 *                 mqe2e_session_commit(), then wiped by this call (zeroed,
 *                 inactive) whatever the result.
 * @param commit_rc receives the commit's result (::MQE2E_OK, or as
 *                 mqe2e_session_commit(): ::MQE2E_ERR_REPLAY,
 *                 ::MQE2E_ERR_IO); ::MQE2E_OK when @p accepted is NULL or
 *                 inactive. Must not be NULL when @p accepted is not.
 * @param topic    as mqe2e_session_receive_one() (borrowed).
 * @param topic_len as mqe2e_session_receive_one().
 * @param payload  received bytes (untrusted; borrowed; NULL when len is 0).
 * @param len      length of @p payload.
 * @param qos      QoS it arrived with (0..2).
 * @param retained the retain flag it arrived with.
 * @param dup      whether the transport flagged it as a duplicate.
 * @param flags    ::MQE2E_SESSION_NO_HOLD or 0.
 * @param now      the caller's clocks.
 * @param out      as mqe2e_session_receive_one() (the session's pointers,
 *                 plaintext wiped by the session at the next call).
 * @return as mqe2e_session_receive_one(); ::MQE2E_ERR_INVALID_ARG (s or out
 *         NULL, or @p accepted without @p commit_rc: nothing committed).
 */
MQE2E_API int mqe2e_session_commit_receive_one(mqe2e_session *s, mqe2e_receipt *accepted,
                                               int *commit_rc, const char *topic,
                                               size_t topic_len, const uint8_t *payload,
                                               size_t len, int qos, int retained, int dup,
                                               unsigned flags, mqe2e_session_time now,
                                               mqe2e_session_action *out);

/** mqe2e_session_receive_rx() @p meta: the QoS the message arrived with (0..2). */
#define MQE2E_SESSION_RX_QOS_MASK 3U
/** mqe2e_session_receive_rx() @p meta: the retain flag was set. */
#define MQE2E_SESSION_RX_RETAINED 4U
/** mqe2e_session_receive_rx() @p meta: the transport flagged a duplicate. */
#define MQE2E_SESSION_RX_DUP 8U
/** mqe2e_session_receive_rx() @p meta: as ::MQE2E_SESSION_NO_HOLD. */
#define MQE2E_SESSION_RX_NO_HOLD 16U

/**
 * The receive state of mqe2e_session_receive_rx(): caller memory, one per
 * session, reused for every message. Not an options struct (no
 * struct_version): bindings declare it next to the call that uses it.
 */
typedef struct mqe2e_session_rx {
    mqe2e_session_time now; /**< in: the caller's clocks (set when they change) */
    /** in: 1 to commit @p accepted before receiving (then reset to 0 by the
     * call); 0: @p accepted is left alone. */
    int commit;
    int commit_rc; /**< out: that commit's result, ::MQE2E_OK when none */
    /** in: receipt of the message the application accepted (caller copy of
     * an earlier DELIVER's); wiped by the call when @p commit is 1. */
    mqe2e_receipt accepted;
    /** out: as mqe2e_session_receive_one()'s @p out (the session's
     * pointers, plaintext wiped by the session at the next call). */
    mqe2e_session_action out;
} mqe2e_session_rx;

/**
 * @brief mqe2e_session_commit_receive_one() with its per-message inputs in
 *        seven arguments: for bindings whose foreign-function layer costs
 *        per argument (cffi in ABI mode: ~350 instructions each, and more
 *        for a structure passed by value).
 *
 * Same behaviour and order: when @p rx->commit is 1, @p rx->accepted is
 * committed first (as mqe2e_session_commit(); result in @p rx->commit_rc,
 * then wiped and @p rx->commit reset to 0, whatever the result), then the
 * message is received with @p rx->now and the only resulting action, if
 * any, is written to @p rx->out. The rules of
 * mqe2e_session_commit_receive_one() hold unchanged: a receipt is committed
 * only after the application accepted its message, and a kept receipt is
 * committed before any other call that may deliver.
 * @param s         the session.
 * @param rx        caller-owned state (see ::mqe2e_session_rx).
 * @param topic     as mqe2e_session_receive_one() (borrowed).
 * @param topic_len as mqe2e_session_receive_one().
 * @param payload   received bytes (untrusted; borrowed; NULL when len is 0).
 * @param len       length of @p payload.
 * @param meta      QoS (::MQE2E_SESSION_RX_QOS_MASK) OR-ed with
 *                  ::MQE2E_SESSION_RX_RETAINED, ::MQE2E_SESSION_RX_DUP,
 *                  ::MQE2E_SESSION_RX_NO_HOLD.
 * @return as mqe2e_session_receive_one(); ::MQE2E_ERR_INVALID_ARG (s or rx
 *         NULL: nothing committed).
 */
MQE2E_API int mqe2e_session_receive_rx(mqe2e_session *s, mqe2e_session_rx *rx, const char *topic,
                                       size_t topic_len, const uint8_t *payload, size_t len,
                                       unsigned meta);

/**
 * @brief Tell the session how many publishes the caller still holds for its
 *        transport (taken as PUBLISH actions, not yet sent). The session
 *        bounds its own output with it: CHANNEL step 1 answers are refused
 *        while 16 frames wait, and no more than 4096 publishes are queued.
 * @param s         the session.
 * @param publishes the caller's count (0 when it sends every PUBLISH at once).
 */
MQE2E_API void mqe2e_session_set_backlog(mqe2e_session *s, size_t publishes);

/**
 * @brief Whether the authority was heard within the freshness bound and the
 *        revocation list held was heard within its validity (next_update -
 *        issued_at, docs/PROTOCOL.md 9.3).
 * @return 1 fresh, 0 not (yet), ::MQE2E_ERR_POLICY when the authority
 *         refused this client (revoked or unknown).
 */
MQE2E_API int mqe2e_session_fresh(const mqe2e_session *s, mqe2e_session_time now);

/** @brief Channel messages still waiting for their handshake (0 = none). */
MQE2E_API size_t mqe2e_session_channel_waiting(const mqe2e_session *s);

/** @brief Copy out the control-plane counters (all zero without a control plane). */
MQE2E_API void mqe2e_session_get_counters(const mqe2e_session *s, mqe2e_session_counters *out);

/** @brief The session's protector (owned by the session): for its counters,
 *  checkpoints and the drop counts of the transport's own failures. */
MQE2E_API mqe2e_protector *mqe2e_session_protector(mqe2e_session *s);

/** @brief The policy in use (the caller's, or the session's own). */
MQE2E_API const mqe2e_policy *mqe2e_session_policy(const mqe2e_session *s);

#ifdef __cplusplus
}
#endif
#endif
