/**
 * @file control.h
 * @brief Control plane: control frames, enrollment (Noise IKpsk2), hello
 *        (Noise IK), push (Noise K) and peer channels (Noise XX) with their
 *        mode-2 channel envelopes.
 *
 * Everything here is bytes in / bytes out: no MQTT, no I/O, the clock is the
 * @p now argument (seconds since the Unix epoch), randomness comes from
 * libsodium. The caller moves frames over the control topics under one prefix
 * P (`P/authority`, `P/client/<id>`); docs/PROTOCOL.md, section "Control plane",
 * gives every byte.
 *
 * Ownership: state handles (enroll, hello, channel) live in sodium_malloc()
 * memory owned by the library and are wiped by their `_free` call. Output
 * frame buffers are the caller's; frames hold no secret in clear. Key
 * parameters are only read; the caller keeps and wipes its copies. Decoded
 * payloads (::mqe2e_control_update) hold group secrets: release them with
 * ::mqe2e_control_update_wipe.
 *
 * Failure model: facts known before authentication have their own codes
 * (::MQE2E_ERR_DECODE for a malformed frame, ::MQE2E_ERR_STATE for a frame of
 * another kind, session or step, ::MQE2E_ERR_REPLAY, ::MQE2E_ERR_EXPIRED);
 * every authentication failure is ::MQE2E_ERR_AUTH. A handshake state that
 * returned ::MQE2E_ERR_AUTH is dead: free it and start again.
 */
#ifndef MQE2E_CONTROL_H
#define MQE2E_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#include "mqe2e/credential.h"
#include "mqe2e/envelope.h"
#include "mqe2e/export.h"
#include "mqe2e/keystore.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Format written into and required from every control frame. */
#define MQE2E_CONTROL_FORMAT 1u
/** Largest encoded control frame accepted or produced (64 KiB). */
#define MQE2E_CONTROL_MAX_FRAME_BYTES 65536u
/** Session id size. */
#define MQE2E_CONTROL_SESSION_BYTES 16u
/** X25519 key size used by every handshake. */
#define MQE2E_CONTROL_DH_BYTES 32u
/** Enrollment token id size. */
#define MQE2E_CONTROL_TOKEN_ID_BYTES 16u
/** Enrollment token (psk) size. */
#define MQE2E_CONTROL_TOKEN_BYTES 32u
/** Longest topic filter of a key bundle, in bytes. */
#define MQE2E_BUNDLE_FILTER_MAX 1023u
/** Most key bundles / removed groups carried by one reply or push. */
#define MQE2E_CONTROL_MAX_BUNDLES 256u

/** Frame kinds (ControlFrame.kind). */
typedef enum mqe2e_control_kind {
    MQE2E_CONTROL_ENROLL = 1,  /**< Noise_IKpsk2, steps 1-2 */
    MQE2E_CONTROL_HELLO = 2,   /**< Noise_IK, steps 1-2 */
    MQE2E_CONTROL_PUSH = 3,    /**< Noise_K, step 1 */
    MQE2E_CONTROL_CHANNEL = 4, /**< Noise_XX, steps 1-3 */
} mqe2e_control_kind;

/** Status carried by EnrollReply and HelloReply. */
typedef enum mqe2e_control_status {
    MQE2E_STATUS_OK = 0,             /**< accepted */
    MQE2E_STATUS_REFUSED = 1,        /**< refused, no reason given */
    MQE2E_STATUS_UNKNOWN_CLIENT = 2, /**< the authority does not know this client */
    MQE2E_STATUS_REVOKED = 3,        /**< the client is revoked */
    MQE2E_STATUS_TOKEN_USED = 4,     /**< the token was consumed by another device */
    MQE2E_STATUS_TOKEN_EXPIRED = 5,  /**< the token expired */
    MQE2E_STATUS_ID_ACTIVE = 6,      /**< the client id is enrolled on another device: replacing
                                          it takes a ticket made with `token create --replace` */
} mqe2e_control_status;

/* ------------------------------------------------------------------------ */
/* Frames                                                                    */
/* ------------------------------------------------------------------------ */

/** A control frame. After decoding, @p noise borrows the input buffer. */
typedef struct mqe2e_control_frame {
    uint32_t kind;                                /**< ::mqe2e_control_kind */
    char from[MQE2E_ID_MAX + 1];                  /**< sender id, NUL-terminated */
    uint8_t session[MQE2E_CONTROL_SESSION_BYTES]; /**< handshake name */
    uint32_t step;                                /**< 1-based message index */
    const uint8_t *noise;                         /**< Noise message */
    size_t noise_len;                             /**< its length, >= 1 */
} mqe2e_control_frame;

/**
 * @brief Encoded size of @p f (0 if @p f is NULL or its fields invalid).
 */
MQE2E_API size_t mqe2e_control_frame_encoded_len(const mqe2e_control_frame *f);

/**
 * @brief Encode a frame (canonical protobuf mqe2e.v1.ControlFrame, format 1).
 * @param out     caller buffer; only written on success.
 * @param out_cap size of @p out in bytes.
 * @param out_len receives the length.
 * @param f       read only; must satisfy every rule of ::mqe2e_control_frame_decode.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG (NULL, unknown kind, step out
 *         of the pattern, invalid from, empty noise); ::MQE2E_ERR_TOO_LARGE
 *         (over ::MQE2E_CONTROL_MAX_FRAME_BYTES); ::MQE2E_ERR_BUFFER_TOO_SMALL.
 */
MQE2E_API int mqe2e_control_frame_encode(uint8_t *out, size_t out_cap, size_t *out_len,
                                         const mqe2e_control_frame *f);

/**
 * @brief Strictly decode a frame.
 *
 * Refuses: over ::MQE2E_CONTROL_MAX_FRAME_BYTES, non-canonical encoding
 * (fields out of order or repeated, non-minimal varints, explicit zero
 * values), unknown fields or wire types, format other than 1, unknown kind,
 * session not exactly 16 bytes, step outside the kind's pattern, from not a
 * valid id (mqe2e_client_id_valid()), empty noise.
 * @param f   receives the frame; f->noise points into @p in. Zeroed on failure.
 * @param in  encoded frame; borrowed by @p f, so it must outlive f->noise.
 * @param len length of @p in.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG (NULL); ::MQE2E_ERR_TOO_LARGE;
 *         ::MQE2E_ERR_DECODE; ::MQE2E_ERR_SUITE (format other than 1 or unknown kind).
 */
MQE2E_API int mqe2e_control_frame_decode(mqe2e_control_frame *f, const uint8_t *in, size_t len);

/* ------------------------------------------------------------------------ */
/* Payloads                                                                  */
/* ------------------------------------------------------------------------ */

/** Leaf key size of a key-tree bundle (= MQE2E_KEYTREE_KEY_BYTES). */
#define MQE2E_BUNDLE_TREE_KEY_BYTES 32u
/** Longest TreePath a bundle carries (= MQE2E_KEYTREE_PATH_BYTES(MQE2E_KEYTREE_MAX_DEPTH)). */
#define MQE2E_BUNDLE_TREE_PATH_MAX 707u

/** Grace (s) of the epoch a tree removal retires when the bundle gives none. */
#define MQE2E_BUNDLE_TREE_GRACE_DEFAULT 30u
/** Largest tree_grace_seconds a decoder takes (the authority's --revoke-grace range). */
#define MQE2E_BUNDLE_TREE_GRACE_MAX 0x7FFFFFFFu

/** One epoch of one group key. @p secret is secret. */
typedef struct mqe2e_key_bundle {
    char group[MQE2E_GROUP_ID_MAX_BYTES + 1];       /**< group id, NUL-terminated */
    char topic_filter[MQE2E_BUNDLE_FILTER_MAX + 1]; /**< MQTT topic filter, NUL-terminated */
    uint32_t epoch;                                 /**< group epoch */
    uint8_t secret[MQE2E_GROUP_SECRET_BYTES];       /**< the epoch's group secret */
    uint64_t created_at;                            /**< seconds since the Unix epoch */
    uint32_t sender_id;                             /**< the member's sender id */
    uint64_t retired_at;                            /**< 0 while current */
    /** Retired epochs: readable for this many seconds after retired_at, set by
     *  the authority after a revocation or removal; 0 = the receiver's own
     *  grace period (docs/PROTOCOL.md 9.5). Appended last. */
    uint32_t grace_seconds;
    /** Key-tree groups (docs/PROTOCOL.md §10.8), current epoch only: the
     *  member's leaf key (secret) and its TreePath; tree_path_len 0 for any
     *  other bundle. Appended last. */
    uint8_t tree_leaf_key[MQE2E_BUNDLE_TREE_KEY_BYTES];
    uint32_t tree_path_len;                        /**< 0, or the TreePath's length */
    uint8_t tree_path[MQE2E_BUNDLE_TREE_PATH_MAX]; /**< the TreePath (public but authenticated) */
    /** Key-tree groups (docs/PROTOCOL.md §10.9), only with tree_path_len > 0:
     *  seconds the epoch a TreeUpdate removal retires stays readable (the
     *  authority's cut grace); 0 = ::MQE2E_BUNDLE_TREE_GRACE_DEFAULT; at most
     *  ::MQE2E_BUNDLE_TREE_GRACE_MAX. Appended last. */
    uint32_t tree_grace_seconds;
} mqe2e_key_bundle;

/** Most signer entries one update carries, all directories together. */
#define MQE2E_CONTROL_MAX_SIGNERS 1024u

/** Most `pub` topic filters listed for one signer. */
#define MQE2E_CONTROL_MAX_PUB_FILTERS 16u

/** The `pub` grants of one signer of a signed group (public data). */
typedef struct mqe2e_signer_grants {
    char **pub_filters;   /**< n_pub_filters NUL-terminated topic filters, or NULL */
    size_t n_pub_filters; /**< at most ::MQE2E_CONTROL_MAX_PUB_FILTERS; 0 grants nothing */
} mqe2e_signer_grants;

/**
 * The signer directory of one signed group (public data), sent with the
 * group's bundles: its presence marks the group signed for the member.
 */
typedef struct mqe2e_group_directory {
    char group[MQE2E_GROUP_ID_MAX_BYTES + 1]; /**< group id, NUL-terminated */
    mqe2e_signer *signers;                    /**< n_signers entries or NULL */
    size_t n_signers;                         /**< may be 0 */
    /**
     * With @p has_grants: for each signer (same index), the topic filters
     * its credential grants `pub` on (at most ::MQE2E_CONTROL_MAX_PUB_FILTERS
     * each; none: it may publish nothing). Receivers drop its messages on
     * other topics. NULL without @p has_grants. Appended last.
     */
    mqe2e_signer_grants *grants;
    int has_grants; /**< 1: grants lists every signer's pub filters */
} mqe2e_group_directory;

/** A group id, as carried in Push.removed_groups. */
typedef struct mqe2e_group_name {
    char name[MQE2E_GROUP_ID_MAX_BYTES + 1]; /**< NUL-terminated */
} mqe2e_group_name;

/**
 * Content of an EnrollReply, HelloReply or Push (fields a message does not
 * carry are ignored when writing and zero when reading).
 *
 * As an input (authority side) every pointer is the caller's and only read.
 * As an output (client side) the arrays are malloc()ed by the library and
 * released, wiped, by ::mqe2e_control_update_wipe; the credential and the
 * revocation list are public, the bundles hold secrets.
 */
typedef struct mqe2e_control_update {
    int32_t status;                   /**< ::mqe2e_control_status (replies only) */
    uint64_t push_seq;                /**< Push and HelloReply */
    uint8_t *credential;              /**< encoded Credential or NULL (replies only) */
    size_t credential_len;            /**< its length */
    mqe2e_key_bundle *bundles;        /**< n_bundles entries or NULL */
    size_t n_bundles;                 /**< at most ::MQE2E_CONTROL_MAX_BUNDLES */
    uint8_t *revocation_list;         /**< encoded RevocationList or NULL */
    size_t revocation_list_len;       /**< its length */
    mqe2e_group_name *removed_groups; /**< Push only */
    size_t n_removed_groups;          /**< at most ::MQE2E_CONTROL_MAX_BUNDLES */
    mqe2e_group_directory *directories; /**< signer directories of signed groups, or NULL */
    size_t n_directories;             /**< at most ::MQE2E_CONTROL_MAX_BUNDLES; their signers
                                           together at most ::MQE2E_CONTROL_MAX_SIGNERS */
} mqe2e_control_update;

/**
 * @brief Wipe and free what the library allocated into an update it filled,
 *        then zero the struct. NULL is a no-op. Never call it on an update
 *        whose arrays belong to the caller.
 */
MQE2E_API void mqe2e_control_update_wipe(mqe2e_control_update *u);

/**
 * @brief Apply the signer directories of an update to a keystore (after its
 *        bundles were applied): each listed group that the keystore holds is
 *        marked signed and its directory replaced by the one received
 *        (mqe2e_keystore_signers_replace()). Groups the keystore does not hold
 *        are skipped. The update was authenticated by its handshake.
 * @param ks the keystore.
 * @param u  a decoded update; only read.
 * @return ::MQE2E_OK, or the first error of a keystore call (the remaining
 *         directories are still applied).
 */
MQE2E_API int mqe2e_control_update_apply_directories(mqe2e_keystore *ks,
                                                     const mqe2e_control_update *u);

/** What ::mqe2e_control_update_apply did, one event at a time (for callers
 *  that keep state of their own: caches, timers, logs). */
typedef enum mqe2e_update_event_kind {
    MQE2E_UPDATE_GROUP_REMOVED = 1, /**< a removed group (rc: the keystore's answer,
                                         ::MQE2E_ERR_NOT_FOUND if it was not held) */
    MQE2E_UPDATE_BUNDLE = 2,        /**< a key bundle applied (rc ::MQE2E_OK) or refused */
    MQE2E_UPDATE_EPOCHS_PRUNED = 3, /**< retired epochs whose cut grace had ended were
                                         dropped at once (pruned > 0) */
    MQE2E_UPDATE_DIRECTORIES = 4,   /**< the signer directories (rc of
                                         ::mqe2e_control_update_apply_directories) */
    MQE2E_UPDATE_CREDENTIAL = 5,    /**< a renewed credential stored (rc ::MQE2E_OK) or
                                         refused (does not verify, names another client
                                         id or X25519 key) */
    MQE2E_UPDATE_REVOCATIONS = 6    /**< the revocation list: rc ::MQE2E_OK stored (newer)
                                         or already held (same version), ::MQE2E_ERR_REPLAY
                                         older than the one held (refused), or why it does
                                         not verify (refused) */
} mqe2e_update_event_kind;

/** One event of ::mqe2e_control_update_apply; every pointer is valid only
 *  during the callback and points into the update or the library. */
typedef struct mqe2e_update_event {
    mqe2e_update_event_kind kind; /**< what happened */
    int rc;                       /**< ::MQE2E_OK or why it was refused */
    const mqe2e_control_update *update; /**< the update being applied */
    const char *group;            /**< GROUP_REMOVED, BUNDLE, EPOCHS_PRUNED: the group */
    const mqe2e_key_bundle *bundle; /**< BUNDLE: the bundle (holds a secret: never log it) */
    int new_group;                /**< BUNDLE: the keystore did not hold the group before */
    int pruned;                   /**< EPOCHS_PRUNED: epochs dropped */
    uint64_t version;             /**< REVOCATIONS: the received list's version (0 if it
                                       does not verify) */
    uint64_t held_version;        /**< REVOCATIONS: the keystore's version before */
} mqe2e_update_event;

/** Observer of ::mqe2e_control_update_apply (may be NULL). */
typedef void (*mqe2e_update_observer)(void *ctx, const mqe2e_update_event *ev);

/** Flag of ::mqe2e_control_update_apply: the update is a PUSH (its push_seq is
 *  the caller's to store after mqe2e_push_open(); a reply's push_seq is stored
 *  here). */
#define MQE2E_UPDATE_FROM_PUSH 1u

/**
 * @brief Apply an authenticated update (ENROLL reply, HELLO reply, PUSH) to a
 *        keystore: the one device-side "apply an update" of docs/PROTOCOL.md
 *        9.1-9.5, used by the device session and by `mqe2e enroll`.
 *
 * In this order: removed groups are removed; every bundle is applied with
 * mqe2e_keystore_group_apply() (a refused bundle does not stop the others),
 * and a retired epoch whose cut grace (`grace_seconds`) has already ended at
 * @p now is dropped with every older retired epoch of its group
 * (mqe2e_keystore_group_prune()); signer directories
 * (mqe2e_control_update_apply_directories()); a credential is stored only if
 * it verifies against @p authority_sign_public at @p now and names this
 * keystore's client id and X25519 key; a revocation list is stored only if it
 * verifies and its version is not below the one held (an older one is
 * refused, ::MQE2E_ERR_REPLAY in its event); a reply's `push_seq` above the
 * stored one is stored (not with ::MQE2E_UPDATE_FROM_PUSH); then the keystore
 * is flushed. A grace that has not ended yet is the caller's to time (the
 * session drops the epoch when it ends).
 *
 * @param ks                    the keystore (holds the pin the update was
 *                              authenticated against).
 * @param u                     the update; only read, the caller wipes it.
 * @param authority_sign_public the pinned authority's Ed25519 key.
 * @param now                   wall-clock seconds (credential validity, grace).
 * @param flags                 0 or ::MQE2E_UPDATE_FROM_PUSH.
 * @param obs                   called once per event (may be NULL).
 * @param ctx                   passed to @p obs.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; otherwise the first failure of
 *         a bundle, the directories, the credential, `push_seq` or the flush
 *         (everything else is still applied). A refused revocation list or a
 *         removed group the keystore did not hold is not a failure: it is
 *         reported through @p obs only.
 */
MQE2E_API int mqe2e_control_update_apply(mqe2e_keystore *ks, const mqe2e_control_update *u,
                                         const uint8_t authority_sign_public[32], uint64_t now,
                                         unsigned flags, mqe2e_update_observer obs, void *ctx);

/* ------------------------------------------------------------------------ */
/* Enrollment (Noise_IKpsk2_25519_ChaChaPoly_SHA256)                          */
/* ------------------------------------------------------------------------ */

/** Device side of an enrollment. */
typedef struct mqe2e_enroll_device mqe2e_enroll_device;
/** Authority side of an enrollment. */
typedef struct mqe2e_enroll_authority mqe2e_enroll_authority;

/**
 * @brief Device: write ENROLL step 1 (to P/authority).
 *
 * Pins the ticket's authority static key, uses the ticket token as the psk
 * and proves knowledge of the token with token_mac.
 * @param st          out: new state (caller frees with ::mqe2e_enroll_device_free); NULL on
 * failure.
 * @param out         caller buffer for the frame; ::MQE2E_CONTROL_MAX_FRAME_BYTES always suffices.
 * @param out_cap     size of @p out in bytes.
 * @param out_len     receives the frame length.
 * @param ticket      decoded ticket; copied (the token too) into wiped state; the caller wipes its
 * copy.
 * @param dh_secret   device X25519 static secret; copied; the caller wipes its copy.
 * @param sign_public device Ed25519 public key (goes into the credential).
 * @param now         current time.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG (NULL, invalid ids or prefix in
 *         the ticket); ::MQE2E_ERR_EXPIRED (now >= ticket->expires_at);
 *         ::MQE2E_ERR_BUFFER_TOO_SMALL; ::MQE2E_ERR_NOMEM; ::MQE2E_ERR_CRYPTO.
 */
MQE2E_API int mqe2e_enroll_begin(mqe2e_enroll_device **st, uint8_t *out, size_t out_cap,
                                 size_t *out_len, const mqe2e_ticket *ticket,
                                 const uint8_t dh_secret[32], const uint8_t sign_public[32],
                                 uint64_t now);

/**
 * @brief Device: read ENROLL step 2 and verify the issued credential.
 *
 * The credential must verify against the ticket's authority sign key at
 * @p now and name this device's client id, X25519 and Ed25519 public keys.
 * @param st       state from ::mqe2e_enroll_begin; still owned by the caller.
 * @param reply    out: the reply (credential, bundles, revocation list); wipe
 *                 with ::mqe2e_control_update_wipe. Zeroed on failure, except
 *                 for ::MQE2E_ERR_POLICY where only @p reply->status is set.
 *                 The caller verifies and version-checks the revocation list.
 * @param verified out, may be NULL: the verified credential (caller frees
 *                 with mqe2e_credential_free()).
 * @param frame    the received control frame (read only).
 * @param len      length of @p frame.
 * @param now      current time, against which the credential is checked.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_DECODE (frame);
 *         ::MQE2E_ERR_STATE (another kind, session, step or sender; the state
 *         stays usable; or already finished); ::MQE2E_ERR_AUTH (Noise failed,
 *         malformed payload, credential not from the pinned authority or
 *         naming other keys or id); ::MQE2E_ERR_POLICY (authenticated refusal:
 *         reply->status non-zero); ::MQE2E_ERR_EXPIRED (credential not valid
 *         at @p now); ::MQE2E_ERR_NOMEM.
 */
MQE2E_API int mqe2e_enroll_finish(mqe2e_enroll_device *st, mqe2e_control_update *reply,
                                  mqe2e_credential **verified, const uint8_t *frame, size_t len,
                                  uint64_t now);

/** @brief Wipe and free a device enrollment state. NULL is a no-op. */
MQE2E_API void mqe2e_enroll_device_free(mqe2e_enroll_device *st);

/** What the authority learns from ENROLL step 1 (claims until the MAC and step 2). */
typedef struct mqe2e_enroll_request {
    uint8_t token_id[MQE2E_CONTROL_TOKEN_ID_BYTES]; /**< names the token to look up */
    char client_id[MQE2E_ID_MAX + 1];               /**< claimed id (equal to the frame's from) */
    uint8_t dh_public[32];                        /**< device X25519 static (Noise remote static) */
    uint8_t sign_public[32];                      /**< device Ed25519 public key */
    uint8_t session[MQE2E_CONTROL_SESSION_BYTES]; /**< session of the frame */
} mqe2e_enroll_request;

/**
 * @brief Authority: read ENROLL step 1.
 *
 * Nothing is proven yet about the token: look it up by @p req->token_id, then
 * call ::mqe2e_enroll_accept_verify_mac with it BEFORE consuming it.
 * @param st        out: new state (free with ::mqe2e_enroll_authority_free); NULL on failure.
 * @param req       out: the request; zeroed on failure.
 * @param authority_dh_secret authority X25519 static secret; only read (the
 *                  handshake state after step 1 does not depend on the psk, so
 *                  it is kept and the token is bound to it later).
 * @param prefix    control prefix (mqe2e_control_prefix_valid()).
 * @param frame     the received control frame (read only).
 * @param len       length of @p frame.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_DECODE (frame);
 *         ::MQE2E_ERR_TOO_LARGE; ::MQE2E_ERR_SUITE; ::MQE2E_ERR_STATE (not
 *         ENROLL step 1); ::MQE2E_ERR_AUTH (Noise failed, malformed payload,
 *         client id differing from the frame's from, unusable key);
 *         ::MQE2E_ERR_NOMEM; ::MQE2E_ERR_CRYPTO.
 */
MQE2E_API int mqe2e_enroll_accept_read(mqe2e_enroll_authority **st, mqe2e_enroll_request *req,
                                       const uint8_t authority_dh_secret[32], const char *prefix,
                                       const uint8_t *frame, size_t len);

/**
 * @brief Authority: check token_mac with the looked-up token (constant time)
 *        and bind the token to the state as the psk of step 2.
 * @param st    state from ::mqe2e_enroll_accept_read.
 * @param token the 32-byte token; copied; the caller wipes its copy.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_AUTH (wrong token:
 *         do not consume it); ::MQE2E_ERR_STATE (called twice or after a
 *         failure); ::MQE2E_ERR_NOMEM; ::MQE2E_ERR_CRYPTO.
 */
MQE2E_API int mqe2e_enroll_accept_verify_mac(mqe2e_enroll_authority *st, const uint8_t token[32]);

/**
 * @brief Authority: write ENROLL step 2 (to `P/client/<client_id>`).
 * @param st      state whose MAC was verified by ::mqe2e_enroll_accept_verify_mac.
 * @param out     caller buffer for the frame; only written on success.
 * @param out_cap size of @p out in bytes.
 * @param out_len receives the frame length.
 * @param authority_id the authority's id (frame's from).
 * @param reply   status, credential, bundles, revocation list; only read.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG (NULL, invalid id or bundle);
 *         ::MQE2E_ERR_STATE (MAC not verified, or already written);
 *         ::MQE2E_ERR_TOO_LARGE (frame over 64 KiB); ::MQE2E_ERR_BUFFER_TOO_SMALL;
 *         ::MQE2E_ERR_NOMEM; ::MQE2E_ERR_AUTH; ::MQE2E_ERR_CRYPTO.
 */
MQE2E_API int mqe2e_enroll_accept_write(mqe2e_enroll_authority *st, uint8_t *out, size_t out_cap,
                                        size_t *out_len, const char *authority_id,
                                        const mqe2e_control_update *reply);

/** @brief Wipe and free an authority enrollment state. NULL is a no-op. */
MQE2E_API void mqe2e_enroll_authority_free(mqe2e_enroll_authority *st);

/* ------------------------------------------------------------------------ */
/* Hello (Noise_IK_25519_ChaChaPoly_SHA256)                                  */
/* ------------------------------------------------------------------------ */

/** Client side of a hello. */
typedef struct mqe2e_hello_client mqe2e_hello_client;
/** Authority side of a hello. */
typedef struct mqe2e_hello_authority mqe2e_hello_authority;

/**
 * @brief Client: write HELLO step 1 (to P/authority).
 * @param st        out: new state (free with ::mqe2e_hello_client_free).
 * @param out       caller buffer for the frame; ::MQE2E_CONTROL_MAX_FRAME_BYTES always suffices.
 * @param out_cap   size of @p out in bytes.
 * @param out_len   receives the frame length.
 * @param prefix    control prefix.
 * @param client_id this client's id.
 * @param authority_id expected sender of the reply.
 * @param client_dh_secret copied; the caller wipes its copy.
 * @param authority_dh_public pinned authority X25519 static key.
 * @param credential_serial serial of the credential held (0 if none).
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_BUFFER_TOO_SMALL;
 *         ::MQE2E_ERR_NOMEM; ::MQE2E_ERR_AUTH (unusable authority key); ::MQE2E_ERR_CRYPTO.
 */
MQE2E_API int mqe2e_hello_begin(mqe2e_hello_client **st, uint8_t *out, size_t out_cap,
                                size_t *out_len, const char *prefix, const char *client_id,
                                const char *authority_id, const uint8_t client_dh_secret[32],
                                const uint8_t authority_dh_public[32], uint64_t credential_serial);

/**
 * @brief Client: read HELLO step 2.
 * @param st    state from ::mqe2e_hello_begin.
 * @param reply out: wipe with ::mqe2e_control_update_wipe. For
 *              ::MQE2E_ERR_POLICY only reply->status is set. The caller
 *              verifies a renewed credential and the revocation list.
 * @param frame the received control frame (read only).
 * @param len   length of @p frame.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_DECODE;
 *         ::MQE2E_ERR_STATE (another kind, session, step or sender, or
 *         finished); ::MQE2E_ERR_AUTH; ::MQE2E_ERR_POLICY (status non-zero);
 *         ::MQE2E_ERR_NOMEM.
 */
MQE2E_API int mqe2e_hello_finish(mqe2e_hello_client *st, mqe2e_control_update *reply,
                                 const uint8_t *frame, size_t len);

/** @brief Wipe and free a client hello state. NULL is a no-op. */
MQE2E_API void mqe2e_hello_client_free(mqe2e_hello_client *st);

/** What the authority learns from HELLO step 1. */
typedef struct mqe2e_hello_request {
    char client_id[MQE2E_ID_MAX + 1];             /**< claimed id (equal to the frame's from) */
    uint64_t credential_serial;                   /**< serial the client holds */
    uint8_t dh_public[32];                        /**< the static key the client proved */
    uint8_t session[MQE2E_CONTROL_SESSION_BYTES]; /**< session of the frame */
} mqe2e_hello_request;

/**
 * @brief Authority: read HELLO step 1. The caller then checks that
 *        @p req->dh_public is the enrolled key of @p req->client_id
 *        (::mqe2e_hello_accept_check_static) and that it is not revoked.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_DECODE;
 *         ::MQE2E_ERR_TOO_LARGE; ::MQE2E_ERR_SUITE; ::MQE2E_ERR_STATE (not
 *         HELLO step 1); ::MQE2E_ERR_AUTH; ::MQE2E_ERR_NOMEM; ::MQE2E_ERR_CRYPTO.
 */
MQE2E_API int mqe2e_hello_accept_read(mqe2e_hello_authority **st, mqe2e_hello_request *req,
                                      const uint8_t authority_dh_secret[32], const char *prefix,
                                      const uint8_t *frame, size_t len);

/**
 * @brief Authority: constant-time check that the client proved
 *        @p enrolled_dh_public. A failed check kills the state.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_AUTH (mismatch).
 */
MQE2E_API int mqe2e_hello_accept_check_static(mqe2e_hello_authority *st,
                                              const uint8_t enrolled_dh_public[32]);

/**
 * @brief Authority: write HELLO step 2 (to `P/client/<client_id>`).
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_STATE (already
 *         written, or the static check failed); ::MQE2E_ERR_TOO_LARGE;
 *         ::MQE2E_ERR_BUFFER_TOO_SMALL; ::MQE2E_ERR_NOMEM; ::MQE2E_ERR_CRYPTO.
 */
MQE2E_API int mqe2e_hello_accept_write(mqe2e_hello_authority *st, uint8_t *out, size_t out_cap,
                                       size_t *out_len, const char *authority_id,
                                       const mqe2e_control_update *reply);

/** @brief Wipe and free an authority hello state. NULL is a no-op. */
MQE2E_API void mqe2e_hello_authority_free(mqe2e_hello_authority *st);

/* ------------------------------------------------------------------------ */
/* Push (Noise_K_25519_ChaChaPoly_SHA256, one-way)                           */
/* ------------------------------------------------------------------------ */

/**
 * @brief Authority: seal a Push (push_seq, bundles, revocation list, removed
 *        groups of @p push) for one client. Stateless.
 * @param out     caller buffer for the frame; only written on success.
 * @param out_cap size of @p out in bytes.
 * @param out_len receives the frame length.
 * @param authority_dh_secret authority X25519 static secret; only read.
 * @param client_dh_public the client's enrolled X25519 static key.
 * @param prefix  control prefix.
 * @param authority_id the authority's id (frame's from).
 * @param push    read only; push->push_seq must be >= 1.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_TOO_LARGE;
 *         ::MQE2E_ERR_BUFFER_TOO_SMALL; ::MQE2E_ERR_NOMEM; ::MQE2E_ERR_AUTH
 *         (unusable client key); ::MQE2E_ERR_CRYPTO.
 */
MQE2E_API int mqe2e_push_seal(uint8_t *out, size_t out_cap, size_t *out_len,
                              const uint8_t authority_dh_secret[32],
                              const uint8_t client_dh_public[32], const char *prefix,
                              const char *authority_id, const mqe2e_control_update *push);

/**
 * @brief Client: open a Push from the pinned authority.
 * @param push out: wipe with ::mqe2e_control_update_wipe; zeroed on failure.
 * @param client_dh_secret this client's X25519 static secret; only read.
 * @param authority_dh_public pinned authority X25519 static key.
 * @param prefix control prefix.
 * @param authority_id the pinned authority's id: the frame's from must equal it.
 * @param frame the received control frame (read only).
 * @param len   length of @p frame.
 * @param last_push_seq highest push_seq already applied (0 if none); the
 *        caller stores push->push_seq once it has applied the push.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_DECODE;
 *         ::MQE2E_ERR_TOO_LARGE; ::MQE2E_ERR_SUITE; ::MQE2E_ERR_STATE (not a
 *         PUSH frame, or from another sender); ::MQE2E_ERR_AUTH; ::MQE2E_ERR_REPLAY (push_seq <=
 *         @p last_push_seq, after authentication); ::MQE2E_ERR_NOMEM.
 */
MQE2E_API int mqe2e_push_open(mqe2e_control_update *push, const uint8_t client_dh_secret[32],
                              const uint8_t authority_dh_public[32], const char *prefix,
                              const char *authority_id, const uint8_t *frame, size_t len,
                              uint64_t last_push_seq);

/* ------------------------------------------------------------------------ */
/* Channels (Noise_XX_25519_ChaChaPoly_SHA256 between credential holders)    */
/* ------------------------------------------------------------------------ */

/** Messages per channel key generation before the sender rekeys (2^16). */
#define MQE2E_CHANNEL_REKEY_MESSAGES 65536u
/** Seconds per generation before the sender rekeys (1 hour). */
#define MQE2E_CHANNEL_REKEY_SECONDS 3600u
/** Seconds a receiver keeps the previous generation after moving on. */
#define MQE2E_CHANNEL_GRACE_SECONDS 600u
/** Most generations a receiver skips forward in one step. */
#define MQE2E_CHANNEL_MAX_GENERATION_SKIP 16u
/** Largest channel envelope plaintext (one Noise transport message). */
#define MQE2E_CHANNEL_MAX_PLAINTEXT 65519u

/** A peer channel: handshake, then two directions of envelopes. */
typedef struct mqe2e_channel mqe2e_channel;

/** Local identity and expectations of one side of a channel; all borrowed for the call. */
typedef struct mqe2e_channel_config {
    const char *prefix;                   /**< control prefix */
    const char *local_id;                 /**< this side's client id */
    const uint8_t *local_dh_secret;       /**< 32 bytes; copied */
    const uint8_t *local_credential;      /**< this side's encoded credential */
    size_t local_credential_len;          /**< its length */
    const uint8_t *authority_sign_public; /**< 32 bytes; the pinned authority key */
    const char *peer_id;                  /**< expected peer; NULL only on the responder (any id) */
} mqe2e_channel_config;

/**
 * @brief Initiator: write CHANNEL step 1 (to `P/client/<peer_id>`).
 * @param ch  out: new channel (free with ::mqe2e_channel_free).
 * @param out caller buffer for the frame; ::MQE2E_CONTROL_MAX_FRAME_BYTES always suffices.
 * @param out_cap size of @p out in bytes.
 * @param out_len receives the frame length.
 * @param cfg cfg->peer_id is required here.
 * @param now current time (the peer credential is checked at step 2).
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_BUFFER_TOO_SMALL;
 *         ::MQE2E_ERR_NOMEM; ::MQE2E_ERR_CRYPTO.
 */
MQE2E_API int mqe2e_channel_initiate(mqe2e_channel **ch, uint8_t *out, size_t out_cap,
                                     size_t *out_len, const mqe2e_channel_config *cfg,
                                     uint64_t now);

/**
 * @brief Responder: read CHANNEL step 1 and write step 2 (to
 *        `P/client/<frame's from>`).
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_DECODE;
 *         ::MQE2E_ERR_TOO_LARGE; ::MQE2E_ERR_SUITE; ::MQE2E_ERR_STATE (not
 *         CHANNEL step 1); ::MQE2E_ERR_AUTH (payload id differs from the
 *         frame's from or from cfg->peer_id); ::MQE2E_ERR_BUFFER_TOO_SMALL;
 *         ::MQE2E_ERR_NOMEM; ::MQE2E_ERR_CRYPTO.
 */
MQE2E_API int mqe2e_channel_accept(mqe2e_channel **ch, uint8_t *out, size_t out_cap,
                                   size_t *out_len, const mqe2e_channel_config *cfg,
                                   const uint8_t *frame, size_t len, uint64_t now);

/**
 * @brief Read the next handshake frame: the initiator reads step 2 and
 *        writes step 3 (*out_len > 0); the responder reads step 3 (*out_len = 0).
 *        Both are established on success.
 *
 * The peer credential must verify against the pinned key at @p now, not be
 * revoked in @p revocations (may be NULL), name the Noise remote static key
 * and the expected peer id.
 * @param ch      channel from ::mqe2e_channel_initiate or ::mqe2e_channel_accept.
 * @param out     the initiator's buffer for step 3 (::MQE2E_CONTROL_MAX_FRAME_BYTES
 *                always suffices; a buffer too small kills the handshake); may be
 *                NULL on the responder.
 * @param out_cap size of @p out in bytes (0 when @p out is NULL).
 * @param out_len receives the step 3 length, or 0 on the responder.
 * @param frame   the received control frame (read only).
 * @param len     length of @p frame.
 * @param revocations verified revocation list to check the peer against; may be NULL.
 * @param now     current time, against which the peer credential is checked.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_DECODE;
 *         ::MQE2E_ERR_STATE (another kind, session, step or sender: ignored,
 *         state usable; or already established); ::MQE2E_ERR_AUTH (Noise
 *         failed; credential refused or revoked; the channel is dead);
 *         ::MQE2E_ERR_EXPIRED (peer credential out of its validity: dead);
 *         ::MQE2E_ERR_BUFFER_TOO_SMALL; ::MQE2E_ERR_NOMEM.
 */
MQE2E_API int mqe2e_channel_handle(mqe2e_channel *ch, uint8_t *out, size_t out_cap, size_t *out_len,
                                   const uint8_t *frame, size_t len,
                                   const mqe2e_revocation_list *revocations, uint64_t now);

/** @brief 1 once the handshake completed and the keys are split, else 0. */
MQE2E_API int mqe2e_channel_is_established(const mqe2e_channel *ch);

/** @brief Peer's client id (borrowed; "" until step 1 was read or written). */
MQE2E_API const char *mqe2e_channel_peer_id(const mqe2e_channel *ch);

/** @brief Peer's verified credential (borrowed), NULL until established. */
MQE2E_API const mqe2e_credential *mqe2e_channel_peer_credential(const mqe2e_channel *ch);

/**
 * @brief Copy out the session id (16 bytes).
 * @return ::MQE2E_OK or ::MQE2E_ERR_INVALID_ARG.
 */
MQE2E_API int mqe2e_channel_session(const mqe2e_channel *ch,
                                    uint8_t out[MQE2E_CONTROL_SESSION_BYTES]);

/** @brief The generation the next sealed envelope uses (0 before any rekey). */
MQE2E_API uint32_t mqe2e_channel_send_generation(const mqe2e_channel *ch);

/**
 * @brief Force the sending direction to the next generation now.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_STATE (not
 *         established); ::MQE2E_ERR_EXHAUSTED (generation space used up);
 *         ::MQE2E_ERR_NOMEM.
 */
MQE2E_API int mqe2e_channel_rekey(mqe2e_channel *ch, uint64_t now);

/**
 * @brief Seal one message as a channel envelope (mode 2) for @p topic.
 *
 * Rekeys first when the generation holds ::MQE2E_CHANNEL_REKEY_MESSAGES
 * messages or is ::MQE2E_CHANNEL_REKEY_SECONDS old.
 * @param ch      an established channel.
 * @param out     caller buffer of mqe2e_envelope_sealed_bound(pt_len) bytes.
 * @param out_cap size of @p out in bytes.
 * @param out_len receives the envelope length.
 * @param topic   MQTT topic the envelope is bound to.
 * @param pt      plaintext; only read.
 * @param pt_len  length of @p pt.
 * @param now     current time (drives time-based rekeying).
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG (NULL, empty or overlong
 *         topic); ::MQE2E_ERR_STATE (not established); ::MQE2E_ERR_TOO_LARGE
 *         (over ::MQE2E_CHANNEL_MAX_PLAINTEXT); ::MQE2E_ERR_BUFFER_TOO_SMALL;
 *         ::MQE2E_ERR_EXHAUSTED; ::MQE2E_ERR_NOMEM.
 */
MQE2E_API int mqe2e_channel_seal(mqe2e_channel *ch, uint8_t *out, size_t out_cap, size_t *out_len,
                                 const char *topic, const uint8_t *pt, size_t pt_len, uint64_t now);

/**
 * @brief Open a channel envelope received on @p topic.
 *
 * Accepts the current receive generation, the previous one for
 * ::MQE2E_CHANNEL_GRACE_SECONDS after the peer moved on, and up to
 * ::MQE2E_CHANNEL_MAX_GENERATION_SKIP generations ahead; a replay window per
 * generation and direction, updated only after authentication.
 * @param ch     an established channel.
 * @param pt     caller buffer (ciphertext length - 16 bytes suffice); wiped on failure.
 * @param pt_cap size of @p pt in bytes.
 * @param pt_len receives the plaintext length.
 * @param topic  MQTT topic the envelope arrived on; must match the sealed one.
 * @param in     the received envelope; only read.
 * @param in_len length of @p in.
 * @param now    current time (decides the previous generation's grace).
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_STATE (not
 *         established); ::MQE2E_ERR_DECODE; ::MQE2E_ERR_SUITE (not mode 2);
 *         ::MQE2E_ERR_TOO_LARGE; ::MQE2E_ERR_EXPIRED (generation too old or
 *         past its grace); ::MQE2E_ERR_NO_KEY (generation too far ahead);
 *         ::MQE2E_ERR_REPLAY; ::MQE2E_ERR_AUTH; ::MQE2E_ERR_BUFFER_TOO_SMALL;
 *         ::MQE2E_ERR_NOMEM.
 */
MQE2E_API int mqe2e_channel_open(mqe2e_channel *ch, uint8_t *pt, size_t pt_cap, size_t *pt_len,
                                 const char *topic, const uint8_t *in, size_t in_len, uint64_t now);

/** @brief Wipe and free a channel. NULL is a no-op. */
MQE2E_API void mqe2e_channel_free(mqe2e_channel *ch);

#ifdef __cplusplus
}
#endif
#endif
