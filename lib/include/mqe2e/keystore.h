/**
 * @file keystore.h
 * @brief A client's persistent keys and counters: identity, groups with their
 *        epochs, signer directories, sequence reservations and replay checkpoints.
 *
 * Long-lived secrets are held in sodium_malloc() memory and wiped on close.
 * Every change that must survive a crash is written through the storage
 * backend before the call returns. Sequence numbers are reserved ahead in
 * blocks: the reservation is durable before any number from it is handed out,
 * and a reopened keystore starts after the last reservation, so a crash can
 * skip numbers but never reuse one.
 *
 * Not thread-safe: callers serialise access (the Paho plugin does).
 */
#ifndef MQE2E_KEYSTORE_H
#define MQE2E_KEYSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "mqe2e/envelope.h"
#include "mqe2e/export.h"
#include "mqe2e/replay.h"
#include "mqe2e/storage.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Opaque keystore handle; secrets live in sodium_malloc() memory it owns. */
typedef struct mqe2e_keystore mqe2e_keystore;

#define MQE2E_CLIENT_ID_MAX_BYTES 255U   /**< longest client id */
#define MQE2E_SIGN_PUBLIC_BYTES 32U      /**< Ed25519 public key */
#define MQE2E_DH_PUBLIC_BYTES 32U        /**< X25519 public key */
#define MQE2E_SEQ_DEFAULT_BLOCK 1024U    /**< default sequence reservation block */

/**
 * @brief Create a new keystore with a fresh identity and store it.
 * @param out       new handle; close with mqe2e_keystore_close().
 * @param storage   taken over by the keystore (destroyed on close or on failure).
 * @param client_id 1..::MQE2E_CLIENT_ID_MAX_BYTES bytes, printable ASCII.
 * @param sender_id this client's default sender id in groups; 0 means derive
 *                  it from the client id (24-bit hash, see docs/PROTOCOL.md).
 * @return ::MQE2E_OK, ::MQE2E_ERR_EXISTS (storage already holds a keystore),
 *         ::MQE2E_ERR_INVALID_ARG, ::MQE2E_ERR_IO, ::MQE2E_ERR_NOMEM.
 */
MQE2E_API int mqe2e_keystore_create(mqe2e_keystore **out, mqe2e_storage storage,
                                    const char *client_id, uint32_t sender_id);

/**
 * @brief Open an existing keystore.
 * @param out     new handle; close with mqe2e_keystore_close(). NULL on failure.
 * @param storage taken over (destroyed on close or on failure).
 *
 * One open at a time: the file backends lock the file when the storage is
 * made (a second one fails there with ::MQE2E_ERR_LOCKED, storage.h) and
 * release it when the keystore is closed. Each open draws a fresh random
 * sender instance per group (mqe2e_keystore_group_instance()), so even a
 * restored backup or a copy of the file never repeats a nonce.
 * @return ::MQE2E_OK, ::MQE2E_ERR_NOT_FOUND, ::MQE2E_ERR_AUTH (wrong key or
 *         tampered file), ::MQE2E_ERR_DECODE, ::MQE2E_ERR_IO, ::MQE2E_ERR_NOMEM.
 */
MQE2E_API int mqe2e_keystore_open(mqe2e_keystore **out, mqe2e_storage storage);

/** @brief Write state if changed, wipe every secret, release the storage
 *         (and with it the file lock), free. NULL is a no-op. */
MQE2E_API void mqe2e_keystore_close(mqe2e_keystore *ks);

/** @brief Write the current state now (atomic, durable). */
MQE2E_API int mqe2e_keystore_flush(mqe2e_keystore *ks);

/**
 * @brief Default sender id of a client id: the first 3 bytes (little-endian)
 *        of BLAKE2b-256("mqe2e/v1/sender-id" key, client id), or 1 if that is 0.
 *        Unique ids are the operator's job in manual provisioning (an id can be
 *        given explicitly); the authority assigns unique ones.
 */
MQE2E_API uint32_t mqe2e_sender_id_from_client_id(const char *client_id);

/** @brief The client id; borrowed, valid until close. */
MQE2E_API const char *mqe2e_keystore_client_id(const mqe2e_keystore *ks);

/** @brief This client's default sender id. */
MQE2E_API uint32_t mqe2e_keystore_sender_id(const mqe2e_keystore *ks);

/** @brief Copy out the public identity keys (either pointer may be NULL). */
MQE2E_API int mqe2e_keystore_identity_public(const mqe2e_keystore *ks,
                                             uint8_t sign_pk[MQE2E_SIGN_PUBLIC_BYTES],
                                             uint8_t dh_pk[MQE2E_DH_PUBLIC_BYTES]);

/**
 * @brief Add a group (with its first epoch) or add a newer epoch to a known group.
 *
 * Adding epoch e marks every older epoch retired at @p now (still readable for
 * the receiver's grace period). Adding an epoch that exists with the same
 * secret is a no-op; with a different secret it is ::MQE2E_ERR_EXISTS.
 * @param ks     the keystore.
 * @param group_id NUL-terminated group id.
 * @param topic_filter the group's topic filter (required for a new group; may
 *                     be NULL when adding an epoch).
 * @param epoch  the epoch to add.
 * @param secret only read; the caller wipes its copy.
 * @param now    caller's clock, seconds.
 */
MQE2E_API int mqe2e_keystore_group_add_epoch(mqe2e_keystore *ks, const char *group_id,
                                             const char *topic_filter, uint32_t epoch,
                                             const uint8_t secret[MQE2E_GROUP_SECRET_BYTES],
                                             uint64_t now);

/**
 * @brief Create a group with a random secret at epoch 1, or if it exists,
 *        rotate it to a random secret at current epoch + 1.
 * @param ks        the keystore.
 * @param group_id  NUL-terminated group id.
 * @param topic_filter the group's topic filter (required for a new group).
 * @param now       caller's clock, seconds (retires the previous epoch).
 * @param epoch_out receives the new epoch; may be NULL.
 */
MQE2E_API int mqe2e_keystore_group_generate(mqe2e_keystore *ks, const char *group_id,
                                            const char *topic_filter, uint64_t now,
                                            uint32_t *epoch_out);

/** @brief Remove a group and all its epochs (wiped). Its sequence position is
 *         kept as a floor, so adding the group again (same name) continues its
 *         numbers instead of restarting them (docs/KEYSTORE.md). */
MQE2E_API int mqe2e_keystore_group_remove(mqe2e_keystore *ks, const char *group_id);

/** @brief Number of groups. */
MQE2E_API size_t mqe2e_keystore_group_count(const mqe2e_keystore *ks);

/** @brief Name of group @p index (0-based); borrowed; NULL when out of range. */
MQE2E_API const char *mqe2e_keystore_group_name(const mqe2e_keystore *ks, size_t index);

/** @brief Topic filter of a group; borrowed; NULL if unknown. */
MQE2E_API const char *mqe2e_keystore_group_filter(const mqe2e_keystore *ks, const char *group_id);

/** @brief Current (newest) epoch of a group. @return ::MQE2E_OK or ::MQE2E_ERR_NOT_FOUND. */
MQE2E_API int mqe2e_keystore_group_current_epoch(const mqe2e_keystore *ks, const char *group_id,
                                                 uint32_t *epoch);

/** @brief This client's sender id in a group. */
MQE2E_API int mqe2e_keystore_group_sender_id(const mqe2e_keystore *ks, const char *group_id,
                                             uint32_t *sender_id);

/** @brief Set this client's sender id in a group (the authority assigns it). */
MQE2E_API int mqe2e_keystore_group_set_sender_id(mqe2e_keystore *ks, const char *group_id,
                                                 uint32_t sender_id);

/**
 * @brief Copy out the secret of one epoch.
 * @param ks         the keystore.
 * @param group_id   NUL-terminated group id.
 * @param epoch      the epoch wanted.
 * @param secret     caller-owned; wipe it.
 * @param retired_at out (0 while current), may be NULL.
 * @return ::MQE2E_OK, ::MQE2E_ERR_NOT_FOUND (no such group or epoch).
 */
MQE2E_API int mqe2e_keystore_group_secret(const mqe2e_keystore *ks, const char *group_id,
                                          uint32_t epoch,
                                          uint8_t secret[MQE2E_GROUP_SECRET_BYTES],
                                          uint64_t *retired_at);

/**
 * @brief Drop epochs retired before @p cutoff (wiped). @return number removed (>= 0) or error.
 */
MQE2E_API int mqe2e_keystore_group_prune(mqe2e_keystore *ks, const char *group_id,
                                         uint64_t cutoff);

/**
 * @brief Hand out the next sequence number for sending in a group.
 *
 * When the reserved block is used up a new block is reserved and written
 * durably first. Numbers continue across epochs, restarts and a removal and
 * re-adding of the group (the keystore keeps a floor for removed groups);
 * they stop at ::MQE2E_SEQ_MAX (rotate the group's epoch before). They are
 * not unique across copies of the file (a restored backup hands out numbers
 * again): the nonce's other half, the group's instance
 * (mqe2e_keystore_group_instance()), is what keeps those apart.
 * @return ::MQE2E_OK, ::MQE2E_ERR_NOT_FOUND, ::MQE2E_ERR_IO, ::MQE2E_ERR_EXHAUSTED.
 */
MQE2E_API int mqe2e_keystore_next_seq(mqe2e_keystore *ks, const char *group_id, uint64_t *seq);

/**
 * @brief The sender instance this handle seals the group's envelopes under.
 *
 * 48 random bits drawn when the group enters memory (every open of the
 * keystore, every add of a removed group), never stored: two opens of the
 * same file, or of two copies of it, send under different instances, so
 * their (key, nonce) pairs differ even when their sequence numbers repeat
 * (docs/PROTOCOL.md, section 2.4).
 * @param ks       an open keystore; only read.
 * @param group_id NUL-terminated group id.
 * @param instance out: the instance, at most ::MQE2E_INSTANCE_MAX.
 * @return ::MQE2E_OK, ::MQE2E_ERR_INVALID_ARG, ::MQE2E_ERR_NOT_FOUND.
 */
MQE2E_API int mqe2e_keystore_group_instance(const mqe2e_keystore *ks, const char *group_id,
                                            uint64_t *instance);

/** @brief Set the reservation block size (1..2^20) for later reservations. */
MQE2E_API int mqe2e_keystore_set_seq_block(mqe2e_keystore *ks, uint32_t block);

/**
 * @brief Store a replay checkpoint for (group, epoch, sender) in memory; it is
 *        written with the next flush/close.
 */
MQE2E_API int mqe2e_keystore_replay_save(mqe2e_keystore *ks, const char *group_id,
                                         uint32_t epoch, uint32_t sender_id,
                                         const mqe2e_replay_window *w);

/** @brief Load a replay checkpoint. @return ::MQE2E_OK or ::MQE2E_ERR_NOT_FOUND. */
MQE2E_API int mqe2e_keystore_replay_load(const mqe2e_keystore *ks, const char *group_id,
                                         uint32_t epoch, uint32_t sender_id,
                                         mqe2e_replay_window *w);

/**
 * @brief Export a group (all its epochs, its signed flag and signer directory)
 *        sealed with a passphrase, for manual provisioning.
 * @param ks         the keystore.
 * @param group_id   NUL-terminated group id.
 * @param passphrase only read; the caller wipes its copy.
 * @param passphrase_len length of @p passphrase.
 * @param out        malloc()ed, caller free()s (no clear secret inside).
 * @param out_len    receives the length of @p out.
 */
MQE2E_API int mqe2e_keystore_group_export(const mqe2e_keystore *ks, const char *group_id,
                                          const char *passphrase, size_t passphrase_len,
                                          uint8_t **out, size_t *out_len);

/**
 * @brief Import a group exported by mqe2e_keystore_group_export().
 *
 * A signed bundle marks the group signed (an unsigned one never clears the
 * flag) and its directory entries are merged in, replacing entries of the
 * same sender id.
 * @param ks           the keystore.
 * @param sealed       bytes from mqe2e_keystore_group_export() (untrusted).
 * @param sealed_len   length of @p sealed.
 * @param passphrase   only read; the caller wipes its copy.
 * @param passphrase_len length of @p passphrase.
 * @param now          caller's clock, seconds.
 * @param group_id_out optional buffer receiving the group id (NUL-terminated).
 * @param group_id_cap size of @p group_id_out in bytes.
 * @return ::MQE2E_OK, ::MQE2E_ERR_AUTH (wrong passphrase or tampered),
 *         ::MQE2E_ERR_DECODE, ::MQE2E_ERR_EXISTS (conflicting epoch secret), ::MQE2E_ERR_IO.
 */
MQE2E_API int mqe2e_keystore_group_import(mqe2e_keystore *ks, const uint8_t *sealed,
                                          size_t sealed_len, const char *passphrase,
                                          size_t passphrase_len, uint64_t now,
                                          char *group_id_out, size_t group_id_cap);

/* ------------------------------------------------------------------------ */
/* Signed group mode: per-group flag and signer directory                     */
/* ------------------------------------------------------------------------ */

/** Most signers one group's directory holds. */
#define MQE2E_SIGNERS_MAX 65536U

/**
 * One entry of a group's signer directory: who may sign as a sender id.
 * Public data, passed by value; the keystore copies what it is given.
 */
typedef struct mqe2e_signer {
    uint32_t sender_id;                           /**< sender id in the group (not 0) */
    uint8_t sign_public[MQE2E_SIGN_PUBLIC_BYTES]; /**< the member's Ed25519 identity key */
    char client_id[MQE2E_CLIENT_ID_MAX_BYTES + 1]; /**< NUL-terminated, for logs; may be "" */
} mqe2e_signer;

/**
 * @brief Mark a group as signed (its topics then require signed envelopes, in
 *        both directions) or unsigned. Written durably before returning.
 * @param ks          the keystore.
 * @param group_id    NUL-terminated id of a known group.
 * @param signed_mode nonzero for signed.
 * @return ::MQE2E_OK, ::MQE2E_ERR_NOT_FOUND, ::MQE2E_ERR_INVALID_ARG, ::MQE2E_ERR_IO.
 */
MQE2E_API int mqe2e_keystore_group_set_signed(mqe2e_keystore *ks, const char *group_id,
                                              int signed_mode);

/** @brief 1 if the group is marked signed, 0 if not or unknown (or NULL arguments). */
MQE2E_API int mqe2e_keystore_group_is_signed(const mqe2e_keystore *ks, const char *group_id);

/**
 * @brief Add one signer to a group's directory (written durably).
 *
 * Adding an entry that is already there (same sender id and key) is a no-op
 * that may update the client id; the same sender id with another key is
 * ::MQE2E_ERR_EXISTS: remove it first, so a key is never replaced by accident.
 * @param ks       the keystore.
 * @param group_id NUL-terminated id of a known group.
 * @param signer   copied; its key must be a valid Ed25519 point, its sender id not 0,
 *                 its client id printable ASCII or empty.
 * @return ::MQE2E_OK, ::MQE2E_ERR_NOT_FOUND (group), ::MQE2E_ERR_EXISTS,
 *         ::MQE2E_ERR_INVALID_ARG, ::MQE2E_ERR_TOO_LARGE (over ::MQE2E_SIGNERS_MAX),
 *         ::MQE2E_ERR_IO, ::MQE2E_ERR_NOMEM.
 */
MQE2E_API int mqe2e_keystore_signer_add(mqe2e_keystore *ks, const char *group_id,
                                        const mqe2e_signer *signer);

/**
 * @brief Remove the signer of @p sender_id from a group's directory (written durably).
 * @return ::MQE2E_OK, ::MQE2E_ERR_NOT_FOUND (group or signer), ::MQE2E_ERR_INVALID_ARG,
 *         ::MQE2E_ERR_IO.
 */
MQE2E_API int mqe2e_keystore_signer_remove(mqe2e_keystore *ks, const char *group_id,
                                           uint32_t sender_id);

/**
 * @brief Replace a group's whole directory (e.g. with the one an authority
 *        sent) and written durably. Entries are validated as by
 *        mqe2e_keystore_signer_add(); on any invalid entry or a sender id given
 *        twice nothing changes.
 * @param ks       the keystore.
 * @param group_id NUL-terminated id of a known group.
 * @param signers  @p n entries, only read (may be NULL when n is 0).
 * @param n        number of entries (0 empties the directory).
 * @return ::MQE2E_OK, ::MQE2E_ERR_NOT_FOUND, ::MQE2E_ERR_INVALID_ARG,
 *         ::MQE2E_ERR_TOO_LARGE, ::MQE2E_ERR_IO, ::MQE2E_ERR_NOMEM.
 */
MQE2E_API int mqe2e_keystore_signers_replace(mqe2e_keystore *ks, const char *group_id,
                                             const mqe2e_signer *signers, size_t n);

/** @brief Number of signers in a group's directory (0 for an unknown group). */
MQE2E_API size_t mqe2e_keystore_signer_count(const mqe2e_keystore *ks, const char *group_id);

/**
 * @brief Copy out directory entry @p index (0-based, ordered by sender id).
 * @param ks       the keystore.
 * @param group_id NUL-terminated group id.
 * @param index    0 .. mqe2e_keystore_signer_count() - 1.
 * @param out      caller-owned; filled on success.
 * @return ::MQE2E_OK, ::MQE2E_ERR_NOT_FOUND (group or index), ::MQE2E_ERR_INVALID_ARG.
 */
MQE2E_API int mqe2e_keystore_signer_get(const mqe2e_keystore *ks, const char *group_id,
                                        size_t index, mqe2e_signer *out);

/**
 * @brief Look up the key that signs as @p sender_id in a group (hot path of
 *        signed receive: a binary search, no copy of the client id).
 * @param ks        the keystore.
 * @param group_id  NUL-terminated group id.
 * @param sender_id the envelope's sender id.
 * @param sign_public out: the signer's Ed25519 key (caller-owned buffer).
 * @param client_id out, may be NULL: borrowed, valid until the directory changes.
 * @return ::MQE2E_OK, ::MQE2E_ERR_NOT_FOUND (no such group or signer),
 *         ::MQE2E_ERR_INVALID_ARG.
 */
MQE2E_API int mqe2e_keystore_signer_lookup(const mqe2e_keystore *ks, const char *group_id,
                                           uint32_t sender_id,
                                           uint8_t sign_public[MQE2E_SIGN_PUBLIC_BYTES],
                                           const char **client_id);

/**
 * @brief Copy out the identity X25519 secret key (for Noise handshakes).
 * @param ks    the keystore.
 * @param dh_sk caller-owned; the caller wipes it (sodium_memzero) after use.
 * @return ::MQE2E_OK or ::MQE2E_ERR_INVALID_ARG.
 */
MQE2E_API int mqe2e_keystore_dh_secret(const mqe2e_keystore *ks, uint8_t dh_sk[32]);

/**
 * @brief Ed25519-sign @p msg with the identity key (detached 64-byte signature).
 *        The secret key never leaves the keystore.
 * @return ::MQE2E_OK or ::MQE2E_ERR_INVALID_ARG.
 */
MQE2E_API int mqe2e_keystore_sign(const mqe2e_keystore *ks, uint8_t sig[64], const uint8_t *msg,
                                  size_t msg_len);

/* ------------------------------------------------------------------------ */
/* Control plane: authority pin, credential, revocation list, push sequence  */
/* ------------------------------------------------------------------------ */

#define MQE2E_AUTHORITY_ID_MAX_BYTES 255U   /**< longest authority id */
#define MQE2E_KS_PREFIX_MAX_BYTES 255U      /**< longest control prefix */
#define MQE2E_KS_CREDENTIAL_MAX_BYTES 16384U /**< largest stored credential */
#define MQE2E_KS_REVOCATION_MAX_BYTES (1U << 20) /**< largest stored revocation list */

/** The authority a client enrolled with (public data, by value). */
typedef struct mqe2e_authority_pin {
    char authority_id[MQE2E_AUTHORITY_ID_MAX_BYTES + 1];  /**< NUL-terminated */
    char control_prefix[MQE2E_KS_PREFIX_MAX_BYTES + 1];   /**< NUL-terminated */
    uint8_t sign_public[MQE2E_SIGN_PUBLIC_BYTES];         /**< authority Ed25519 key */
    uint8_t dh_public[MQE2E_DH_PUBLIC_BYTES];             /**< authority X25519 static key */
} mqe2e_authority_pin;

/**
 * @brief Pin the authority (written durably before returning).
 *
 * A keystore pins one authority for its whole life: setting the same pin
 * again is a no-op, a different one is refused (re-enrolling with another
 * authority takes a new keystore).
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG (NULL, empty or overlong id or
 *         prefix, strings not NUL-terminated in their arrays);
 *         ::MQE2E_ERR_EXISTS (another pin is stored); ::MQE2E_ERR_IO; ::MQE2E_ERR_NOMEM.
 */
MQE2E_API int mqe2e_keystore_set_authority(mqe2e_keystore *ks, const mqe2e_authority_pin *pin);

/**
 * @brief Copy out the authority pin.
 * @return ::MQE2E_OK; ::MQE2E_ERR_NOT_FOUND (not enrolled); ::MQE2E_ERR_INVALID_ARG.
 */
MQE2E_API int mqe2e_keystore_authority(const mqe2e_keystore *ks, mqe2e_authority_pin *pin);

/**
 * @brief Store this client's encoded credential (copied; written durably).
 *        The caller verified it against the pinned authority first.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG (NULL or empty);
 *         ::MQE2E_ERR_TOO_LARGE (over ::MQE2E_KS_CREDENTIAL_MAX_BYTES);
 *         ::MQE2E_ERR_IO; ::MQE2E_ERR_NOMEM.
 */
MQE2E_API int mqe2e_keystore_set_credential(mqe2e_keystore *ks, const uint8_t *credential,
                                            size_t len);

/**
 * @brief Borrow the stored credential (valid until the next set or close).
 * @return ::MQE2E_OK; ::MQE2E_ERR_NOT_FOUND; ::MQE2E_ERR_INVALID_ARG.
 */
MQE2E_API int mqe2e_keystore_credential(const mqe2e_keystore *ks, const uint8_t **credential,
                                        size_t *len);

/**
 * @brief Store the latest verified revocation list and its version.
 *
 * Versions never go down: a lower version is refused, the same version is a
 * no-op (the stored list is kept), so a replayed old list cannot undo a
 * revocation. The caller verified the list against the pinned authority.
 * @return ::MQE2E_OK; ::MQE2E_ERR_REPLAY (version lower than the stored one);
 *         ::MQE2E_ERR_INVALID_ARG (NULL, empty, version 0);
 *         ::MQE2E_ERR_TOO_LARGE; ::MQE2E_ERR_IO; ::MQE2E_ERR_NOMEM.
 */
MQE2E_API int mqe2e_keystore_set_revocation_list(mqe2e_keystore *ks, const uint8_t *list,
                                                 size_t len, uint64_t version);

/**
 * @brief Borrow the stored revocation list (valid until the next set or close).
 * @param ks      the keystore.
 * @param list    receives a pointer to the stored list (borrowed).
 * @param len     receives its length.
 * @param version out, may be NULL.
 * @return ::MQE2E_OK; ::MQE2E_ERR_NOT_FOUND; ::MQE2E_ERR_INVALID_ARG.
 */
MQE2E_API int mqe2e_keystore_revocation_list(const mqe2e_keystore *ks, const uint8_t **list,
                                             size_t *len, uint64_t *version);

/**
 * @brief Record the highest applied push sequence number (written durably).
 * @return ::MQE2E_OK (also for the stored value again); ::MQE2E_ERR_REPLAY
 *         (lower than the stored one); ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_IO.
 */
MQE2E_API int mqe2e_keystore_set_push_seq(mqe2e_keystore *ks, uint64_t push_seq);

/** @brief Highest applied push sequence number (0 if none or NULL). */
MQE2E_API uint64_t mqe2e_keystore_push_seq(const mqe2e_keystore *ks);

/**
 * @brief Apply one epoch of a key bundle received from the authority:
 *        mqe2e_keystore_group_add_epoch(), then the sender id, then the
 *        bundle's retirement time when it is earlier than the local one.
 *        Idempotent for an epoch already held with the same secret.
 * @param ks         the keystore.
 * @param group_id   NUL-terminated group id.
 * @param topic_filter the group's topic filter.
 * @param epoch      the bundle's epoch.
 * @param secret     the epoch's group secret; only read; the caller wipes its copy.
 * @param sender_id  this client's sender id in the group (not 0).
 * @param retired_at 0 for the group's current epoch.
 * @param now        caller's clock, seconds.
 * @return as mqe2e_keystore_group_add_epoch(); ::MQE2E_ERR_INVALID_ARG for sender id 0.
 */
MQE2E_API int mqe2e_keystore_group_apply(mqe2e_keystore *ks, const char *group_id,
                                         const char *topic_filter, uint32_t epoch,
                                         const uint8_t secret[MQE2E_GROUP_SECRET_BYTES],
                                         uint32_t sender_id, uint64_t retired_at, uint64_t now);

#ifdef __cplusplus
}
#endif
#endif
