/**
 * @file envelope.h
 * @brief Wire-level seal/open of one data envelope (group mode, signed group mode).
 *
 * An envelope is the protobuf message `mqe2e.v1.Envelope` (proto/envelope.proto):
 * a header of epoch, sender id, sender instance and sequence number, and the
 * AEAD ciphertext with its 16-byte tag. The nonce is derived (sender base IV
 * XOR (instance || sequence number)), never carried. The associated data is
 * rebuilt by the receiver from format version, suite, mode, topic, group id,
 * epoch, sender id, instance and sequence
 * (docs/PROTOCOL.md gives every byte), so an envelope moved to another topic,
 * group, epoch or sender fails authentication.
 *
 * Signed group mode (::MQE2E_MODE_SIGNED_GROUP) is group mode plus a detached
 * Ed25519 signature by the sender's identity key over
 * "mqe2e/v1/signed" || AD || ciphertext || tag, carried in field 7; the
 * receiver checks it before decrypting, so group members cannot impersonate
 * each other.
 *
 * These calls are stateless: replay windows, epochs and key caches live in
 * protect.h. All buffers are the caller's.
 */
#ifndef MQE2E_ENVELOPE_H
#define MQE2E_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "mqe2e/export.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MQE2E_GROUP_SECRET_BYTES 32U  /**< group secret per epoch */
#define MQE2E_SENDER_KEY_BYTES 32U    /**< ChaCha20-Poly1305-IETF key */
#define MQE2E_SENDER_IV_BYTES 12U     /**< per-sender base IV */
#define MQE2E_TAG_BYTES 16U           /**< Poly1305 tag */
/**
 * Largest envelope header of any mode: a group or signed envelope with every
 * field at its maximum (epoch, sender 1 + 5 each, instance 8, seq 1 + 7, body
 * key and length 1 + 5). A channel envelope's is at most 29.
 */
#define MQE2E_ENVELOPE_MAX_HEADER_BYTES 34U
/** Sender instance carried by group and signed envelopes (docs/PROTOCOL.md §2.4). */
#define MQE2E_INSTANCE_BYTES 6U
/** Largest sender instance (48 bits). */
#define MQE2E_INSTANCE_MAX ((UINT64_C(1) << 48) - 1U)
/** Largest sequence number of a group or signed envelope (48 bits). */
#define MQE2E_SEQ_MAX ((UINT64_C(1) << 48) - 1U)
/** Default largest plaintext accepted by seal and open (1 MiB). */
#define MQE2E_ENVELOPE_DEFAULT_MAX_PAYLOAD (1U << 20)
/** Hard ceiling on plaintext size (MQTT's own maximum packet is 256 MiB). */
#define MQE2E_ENVELOPE_MAX_PAYLOAD (256U << 20)
/** Longest topic name accepted (MQTT's UTF-8 string limit). */
#define MQE2E_TOPIC_MAX_BYTES 65535U
/** Longest group id. */
#define MQE2E_GROUP_ID_MAX_BYTES 255U

/** Ed25519 detached signature. */
#define MQE2E_SIGNATURE_BYTES 64U
/** Ed25519 public key of a signer. */
#define MQE2E_SIGNER_PUBLIC_BYTES 32U
/** Bytes the signature field adds to a signed envelope (key 0x3a, length 0x40, 64 bytes). */
#define MQE2E_SIGNATURE_FIELD_BYTES 66U

/** Envelope modes; the protobuf field number of the sealed body. */
typedef enum mqe2e_envelope_mode {
    MQE2E_MODE_GROUP = 1,        /**< group key, unsigned */
    MQE2E_MODE_CHANNEL = 2,      /**< pairwise channel key */
    MQE2E_MODE_SIGNED_GROUP = 3, /**< group key plus Ed25519 sender signature */
} mqe2e_envelope_mode;

/** One sender's traffic key for one (group, epoch). Wipe with mqe2e_sender_key_wipe(). */
typedef struct mqe2e_sender_key {
    uint8_t key[MQE2E_SENDER_KEY_BYTES]; /**< AEAD key (secret) */
    uint8_t iv[MQE2E_SENDER_IV_BYTES];   /**< base IV, combined with seq to form the nonce */
} mqe2e_sender_key;

/** The cleartext header of an envelope. */
typedef struct mqe2e_envelope_header {
    mqe2e_envelope_mode mode; /**< selects the body and the key kind */
    uint32_t epoch;           /**< group epoch (channel generation in mode 2) */
    uint32_t sender_id;       /**< sender within the group */
    uint64_t seq;             /**< per-sender message counter (nonce and replay);
                                   at most ::MQE2E_SEQ_MAX in group and signed modes */
    /** Random 48-bit value of the sending keystore handle, fresh on every
     *  open (group and signed modes; ignored in channel mode). Part of the
     *  nonce: a restored or copied keystore never repeats one. Last, so
     *  positional initialisers of the first four fields leave it 0. */
    uint64_t instance;
} mqe2e_envelope_header;

/** A parsed, not yet authenticated envelope; pointers borrow the input buffer. */
typedef struct mqe2e_envelope_view {
    mqe2e_envelope_header header; /**< cleartext header, not yet authenticated */
    const uint8_t *ciphertext; /**< ciphertext followed by the 16-byte tag */
    size_t ciphertext_len;     /**< >= MQE2E_TAG_BYTES */
    const uint8_t *signature;  /**< NULL unless signed mode */
    size_t signature_len;      /**< 0 unless signed mode */
} mqe2e_envelope_view;

/**
 * @brief Derive one sender's key and base IV from a group secret.
 *
 * key = HKDF-SHA256(salt="mqe2e/v1/group", ikm=secret, info=label|group|epoch|sender).
 * @param out    caller-owned; wipe with mqe2e_sender_key_wipe().
 * @param secret the epoch's group secret; only read.
 * @param group_id NUL-terminated, 1..::MQE2E_GROUP_ID_MAX_BYTES bytes.
 * @param epoch  group epoch the secret belongs to.
 * @param sender_id the sender whose key is derived.
 * @return ::MQE2E_OK or ::MQE2E_ERR_INVALID_ARG.
 */
MQE2E_API int mqe2e_sender_key_derive(mqe2e_sender_key *out,
                                      const uint8_t secret[MQE2E_GROUP_SECRET_BYTES],
                                      const char *group_id, uint32_t epoch,
                                      uint32_t sender_id);

/** @brief Wipe a sender key (sodium_memzero). NULL is a no-op. */
MQE2E_API void mqe2e_sender_key_wipe(mqe2e_sender_key *key);

/** @brief Upper bound of the sealed size of a plaintext of pt_len bytes. */
MQE2E_API size_t mqe2e_envelope_sealed_bound(size_t pt_len);

/**
 * @brief Seal one plaintext into an envelope.
 * @param out      caller buffer of out_cap bytes (mqe2e_envelope_sealed_bound()).
 * @param out_cap  size of @p out in bytes.
 * @param out_len  set to the envelope length on success.
 * @param key      the sender's key for (group, header->epoch, header->sender_id).
 * @param topic    NUL-terminated MQTT topic name the envelope is published on.
 * @param group_id NUL-terminated group id.
 * @param header   mode must be ::MQE2E_MODE_GROUP in this version.
 * @param pt       plaintext (may be NULL when pt_len is 0); only read.
 * @param pt_len   length of @p pt.
 * @return ::MQE2E_OK, ::MQE2E_ERR_INVALID_ARG (also an instance or seq above
 *         48 bits), ::MQE2E_ERR_TOO_LARGE,
 *         ::MQE2E_ERR_BUFFER_TOO_SMALL, ::MQE2E_ERR_SUITE (mode not supported),
 *         ::MQE2E_ERR_NOMEM (topics over ~520 bytes build the AD on the heap).
 */
MQE2E_API int mqe2e_envelope_seal(uint8_t *out, size_t out_cap, size_t *out_len,
                                  const mqe2e_sender_key *key, const char *topic,
                                  const char *group_id, const mqe2e_envelope_header *header,
                                  const uint8_t *pt, size_t pt_len);

/**
 * @brief Parse an envelope without authenticating it.
 *
 * Strict: unknown fields, repeated fields, a missing or second body, a body
 * shorter than the tag, non-minimal varints, a signature that is not exactly
 * 64 bytes, a signature next to a group body and a signed body without one,
 * a missing instance or one that is not exactly 6 bytes, and a seq above
 * ::MQE2E_SEQ_MAX are all ::MQE2E_ERR_DECODE; a
 * body field number this version does not know is ::MQE2E_ERR_SUITE.
 * @param view   filled on success; borrows @p in, which must outlive it.
 * @param in     received envelope bytes (untrusted).
 * @param in_len length of @p in.
 * @return ::MQE2E_OK, ::MQE2E_ERR_DECODE, ::MQE2E_ERR_SUITE, ::MQE2E_ERR_TOO_LARGE.
 */
MQE2E_API int mqe2e_envelope_parse(mqe2e_envelope_view *view, const uint8_t *in, size_t in_len);

/**
 * @brief Authenticate and decrypt a parsed envelope.
 * @param pt      caller buffer of at least view->ciphertext_len - 16 bytes;
 *                on failure its first pt_cap bytes are wiped.
 * @param pt_cap  size of @p pt in bytes.
 * @param pt_len  set on success.
 * @param key     the sender key for the header's (group, epoch, sender_id).
 * @param topic   NUL-terminated MQTT topic the envelope arrived on.
 * @param group_id NUL-terminated group id the key belongs to.
 * @param view    from mqe2e_envelope_parse(); its buffer still alive.
 * @return ::MQE2E_OK, ::MQE2E_ERR_AUTH (any authentication failure),
 *         ::MQE2E_ERR_BUFFER_TOO_SMALL, ::MQE2E_ERR_INVALID_ARG, ::MQE2E_ERR_SUITE
 *         (also for a signed envelope: those go through mqe2e_envelope_open_signed()).
 */
MQE2E_API int mqe2e_envelope_open(uint8_t *pt, size_t pt_cap, size_t *pt_len,
                                  const mqe2e_sender_key *key, const char *topic,
                                  const char *group_id, const mqe2e_envelope_view *view);

/**
 * @brief Signing callback of mqe2e_envelope_seal_signed(): write the detached
 *        Ed25519 signature of @p msg (msg_len bytes) into @p sig.
 *
 * The secret key stays with the callback (e.g. inside a keystore). @p msg
 * holds no secret; it is valid only for the duration of the call.
 * @return ::MQE2E_OK or a negative ::mqe2e_error, passed back to the caller.
 */
typedef int (*mqe2e_envelope_sign_fn)(void *ctx, uint8_t sig[MQE2E_SIGNATURE_BYTES],
                                      const uint8_t *msg, size_t msg_len);

/** @brief Upper bound of the signed-mode sealed size of a plaintext of pt_len bytes. */
MQE2E_API size_t mqe2e_envelope_signed_sealed_bound(size_t pt_len);

/**
 * @brief Seal one plaintext in signed group mode.
 *
 * The body is sealed exactly as in group mode (the AD carries mode 3), then
 * the signature over "mqe2e/v1/signed" || AD || body is appended as field 7.
 * @param out      caller buffer of out_cap bytes (mqe2e_envelope_signed_sealed_bound()).
 * @param out_cap  size of @p out in bytes.
 * @param out_len  set to the envelope length on success.
 * @param key      the sender's key for (group, header->epoch, header->sender_id).
 * @param topic    NUL-terminated MQTT topic name the envelope is published on.
 * @param group_id NUL-terminated group id.
 * @param header   mode must be ::MQE2E_MODE_SIGNED_GROUP.
 * @param pt       plaintext (may be NULL when pt_len is 0); only read.
 * @param pt_len   length of @p pt.
 * @param sign     signs with the sender's identity key; must not be NULL.
 * @param sign_ctx passed to @p sign unchanged.
 * @return ::MQE2E_OK, ::MQE2E_ERR_INVALID_ARG (also a mode other than 3),
 *         ::MQE2E_ERR_TOO_LARGE, ::MQE2E_ERR_BUFFER_TOO_SMALL, ::MQE2E_ERR_NOMEM,
 *         or the callback's error. On failure nothing usable is left in @p out
 *         (its first out_cap bytes are wiped).
 */
MQE2E_API int mqe2e_envelope_seal_signed(uint8_t *out, size_t out_cap, size_t *out_len,
                                         const mqe2e_sender_key *key, const char *topic,
                                         const char *group_id,
                                         const mqe2e_envelope_header *header, const uint8_t *pt,
                                         size_t pt_len, mqe2e_envelope_sign_fn sign,
                                         void *sign_ctx);

/**
 * @brief Check the sender signature of a parsed signed envelope (no decryption).
 * @param signer_pk the Ed25519 public key the directory holds for the header's
 *                  (group, sender id); only read.
 * @param topic    NUL-terminated MQTT topic the envelope arrived on.
 * @param group_id NUL-terminated group id.
 * @param view     from mqe2e_envelope_parse(), mode ::MQE2E_MODE_SIGNED_GROUP.
 * @return ::MQE2E_OK, ::MQE2E_ERR_AUTH (bad signature, or a key libsodium refuses),
 *         ::MQE2E_ERR_SUITE (not a signed envelope), ::MQE2E_ERR_INVALID_ARG,
 *         ::MQE2E_ERR_NOMEM.
 */
MQE2E_API int mqe2e_envelope_verify(const uint8_t signer_pk[MQE2E_SIGNER_PUBLIC_BYTES],
                                    const char *topic, const char *group_id,
                                    const mqe2e_envelope_view *view);

/**
 * @brief Verify the signature, then authenticate and decrypt a signed envelope.
 *
 * Nothing is decrypted unless the signature verifies.
 * @param pt       caller buffer (as mqe2e_envelope_open()); wiped on failure.
 * @param pt_cap   size of @p pt in bytes.
 * @param pt_len   set on success.
 * @param key      the sender key for the header's (group, epoch, sender_id).
 * @param signer_pk the sender's Ed25519 public key from the signer directory.
 * @param topic    NUL-terminated MQTT topic the envelope arrived on.
 * @param group_id NUL-terminated group id the key belongs to.
 * @param view     from mqe2e_envelope_parse(), mode ::MQE2E_MODE_SIGNED_GROUP.
 * @return ::MQE2E_OK, ::MQE2E_ERR_AUTH (signature or AEAD), ::MQE2E_ERR_SUITE,
 *         ::MQE2E_ERR_BUFFER_TOO_SMALL, ::MQE2E_ERR_INVALID_ARG, ::MQE2E_ERR_NOMEM.
 */
MQE2E_API int mqe2e_envelope_open_signed(uint8_t *pt, size_t pt_cap, size_t *pt_len,
                                         const mqe2e_sender_key *key,
                                         const uint8_t signer_pk[MQE2E_SIGNER_PUBLIC_BYTES],
                                         const char *topic, const char *group_id,
                                         const mqe2e_envelope_view *view);

#ifdef __cplusplus
}
#endif
#endif
