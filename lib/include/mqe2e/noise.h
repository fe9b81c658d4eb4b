/**
 * @file noise.h
 * @brief Noise Protocol Framework (revision 34) handshakes and transport
 *        cipher states, suite 25519_ChaChaPoly_SHA256 only.
 *
 * The calls only fill and read caller byte buffers: no I/O, no clock, no
 * threads. A handshake is named by its full protocol name, e.g.
 * "Noise_XX_25519_ChaChaPoly_SHA256" or "Noise_IKpsk2_25519_ChaChaPoly_SHA256".
 * Every fundamental pattern (N, K, X, NN ... IX), every deferred pattern
 * (NK1 ... I1X1) and any combination of psk0..psk9 modifiers is accepted.
 * docs/NOISE.md says which names the project uses and for what.
 *
 * Ownership: handshake and cipher handles live in sodium_malloc() memory owned
 * by the library and are wiped when freed. Key buffers passed to setters are
 * copied; the caller keeps (and wipes) its own copies. Output buffers are the
 * caller's. A handle must not be used from two threads at once.
 *
 * Failure model: argument, size and turn errors (::MQE2E_ERR_INVALID_ARG,
 * ::MQE2E_ERR_BUFFER_TOO_SMALL, ::MQE2E_ERR_TOO_LARGE, ::MQE2E_ERR_DECODE,
 * ::MQE2E_ERR_STATE) are detected before any state changes and leave the
 * handshake usable. Any failure after processing has begun (failed
 * decryption, all-zero DH output, failed randomness) is
 * ::MQE2E_ERR_AUTH or ::MQE2E_ERR_CRYPTO and leaves the handshake dead: every
 * later call on it returns ::MQE2E_ERR_STATE. Free it and start again.
 */
#ifndef MQE2E_NOISE_H
#define MQE2E_NOISE_H

#include <stddef.h>
#include <stdint.h>

#include "mqe2e/export.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MQE2E_NOISE_DH_BYTES 32U          /**< X25519 public key, secret key, DH output */
#define MQE2E_NOISE_KEY_BYTES 32U         /**< cipher key */
#define MQE2E_NOISE_HASH_BYTES 32U        /**< SHA-256 output / handshake hash */
#define MQE2E_NOISE_PSK_BYTES 32U         /**< pre-shared key */
#define MQE2E_NOISE_TAG_BYTES 16U         /**< Poly1305 tag */
#define MQE2E_NOISE_MAX_MESSAGE_BYTES 65535U /**< Noise's limit on any message */
#define MQE2E_NOISE_MAX_PSKS 4U           /**< psk tokens per pattern we accept */
#define MQE2E_NOISE_MAX_NAME_BYTES 255U   /**< longest protocol name accepted */
/** Largest plaintext of one transport message. */
#define MQE2E_NOISE_MAX_PLAINTEXT_BYTES (MQE2E_NOISE_MAX_MESSAGE_BYTES - MQE2E_NOISE_TAG_BYTES)

/** Which side of the handshake the local party plays. */
typedef enum mqe2e_noise_role {
    MQE2E_NOISE_RESPONDER = 0, /**< reads the first message */
    MQE2E_NOISE_INITIATOR = 1, /**< writes the first message */
} mqe2e_noise_role;

/** What the handshake expects next (see ::mqe2e_noise_handshake_action). */
typedef enum mqe2e_noise_action {
    MQE2E_NOISE_ACTION_WRITE = 1,  /**< call ::mqe2e_noise_write_message */
    MQE2E_NOISE_ACTION_READ = 2,   /**< call ::mqe2e_noise_read_message */
    MQE2E_NOISE_ACTION_SPLIT = 3,  /**< complete: call ::mqe2e_noise_split */
    MQE2E_NOISE_ACTION_DONE = 4,   /**< already split */
    MQE2E_NOISE_ACTION_FAILED = 5, /**< dead after an authentication or crypto failure */
} mqe2e_noise_action;

/** Opaque handshake state (Noise HandshakeState + SymmetricState). */
typedef struct mqe2e_noise_handshake mqe2e_noise_handshake;
/** Opaque transport cipher state (Noise CipherState: key and nonce counter). */
typedef struct mqe2e_noise_cipher mqe2e_noise_cipher;

/**
 * @brief Start a handshake: parse the protocol name, InitializeSymmetric and
 *        MixHash(prologue).
 *
 * Pre-message keys are hashed at the first write/read, so the key setters may
 * be called in any order until then.
 * @param hs            out: new handle, free with ::mqe2e_noise_handshake_free.
 *                      Set to NULL on failure.
 * @param protocol_name full NUL-terminated name, e.g. "Noise_XX_25519_ChaChaPoly_SHA256".
 * @param role          ::MQE2E_NOISE_INITIATOR or ::MQE2E_NOISE_RESPONDER.
 * @param prologue      may be NULL when prologue_len is 0; only read.
 * @param prologue_len  length of @p prologue.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG (NULL, bad role);
 *         ::MQE2E_ERR_SUITE (unknown pattern, modifier, DH, cipher or hash);
 *         ::MQE2E_ERR_NOMEM; ::MQE2E_ERR_CRYPTO (libsodium failed to start).
 */
MQE2E_API int mqe2e_noise_handshake_new(mqe2e_noise_handshake **hs, const char *protocol_name,
                                        int role, const uint8_t *prologue, size_t prologue_len);

/**
 * @brief Wipe and free a handshake. NULL is a no-op.
 */
MQE2E_API void mqe2e_noise_handshake_free(mqe2e_noise_handshake *hs);

/**
 * @brief Set the local static key pair from its X25519 secret key.
 *
 * The public key is derived. Required when the pattern sends or pre-shares the
 * local static key. Only before the first write/read.
 * @param hs the handshake.
 * @param secret_key 32 bytes, copied; the caller wipes its copy.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_STATE (handshake
 *         already started, or the pattern has no local static key);
 *         ::MQE2E_ERR_CRYPTO (the key gives the all-zero public key).
 */
MQE2E_API int mqe2e_noise_handshake_set_local_static(mqe2e_noise_handshake *hs,
                                                     const uint8_t secret_key[MQE2E_NOISE_DH_BYTES]);

/**
 * @brief Set the peer's static public key when the pattern pre-shares it
 *        (the responder key of NK, IK, KK, X, ...; the initiator key of K*, for the responder).
 * @param hs the handshake.
 * @param public_key 32 bytes, copied. A small-order key is not refused here;
 *        the DH that uses it fails with ::MQE2E_ERR_AUTH.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_STATE (already
 *         started, or the pattern transmits that key instead of pre-sharing it).
 */
MQE2E_API int mqe2e_noise_handshake_set_remote_static(mqe2e_noise_handshake *hs,
                                                      const uint8_t public_key[MQE2E_NOISE_DH_BYTES]);

/**
 * @brief Add the next pre-shared key, in the order the psk tokens occur.
 *
 * A pattern with k psk modifiers needs exactly k calls before it starts.
 * @param hs the handshake.
 * @param psk 32 bytes, copied; the caller wipes its copy.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_STATE (already
 *         started, pattern has no psk, or more psks than psk tokens).
 */
MQE2E_API int mqe2e_noise_handshake_set_psk(mqe2e_noise_handshake *hs,
                                            const uint8_t psk[MQE2E_NOISE_PSK_BYTES]);

/**
 * @brief Inject the local ephemeral secret key instead of drawing it from
 *        randombytes. For deterministic test vectors only: reusing an
 *        ephemeral key across handshakes destroys their security.
 * @param hs the handshake.
 * @param secret_key 32 bytes, copied.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_STATE (the
 *         ephemeral key was already sent); ::MQE2E_ERR_CRYPTO.
 */
MQE2E_API int mqe2e_noise_handshake_set_ephemeral(mqe2e_noise_handshake *hs,
                                                  const uint8_t secret_key[MQE2E_NOISE_DH_BYTES]);

/**
 * @brief What the handshake expects next; never fails (NULL gives FAILED).
 * @return an ::mqe2e_noise_action value.
 */
MQE2E_API int mqe2e_noise_handshake_action(const mqe2e_noise_handshake *hs);

/**
 * @brief Exact size of the next message this side writes with a payload of
 *        @p payload_len bytes.
 * @param hs the handshake.
 * @param payload_len payload size in bytes.
 * @param out_len out: message size in bytes.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_STATE (not our
 *         turn to write); ::MQE2E_ERR_TOO_LARGE (over 65535 bytes).
 */
MQE2E_API int mqe2e_noise_handshake_message_len(const mqe2e_noise_handshake *hs,
                                                size_t payload_len, size_t *out_len);

/**
 * @brief Write the next handshake message (WriteMessage).
 *
 * @param hs the handshake.
 * @param out      caller buffer receiving the message; on failure its content
 *                 is undefined (wiped when the handshake dies).
 * @param out_cap  size of @p out (see ::mqe2e_noise_handshake_message_len).
 * @param out_len  out: bytes written.
 * @param payload  may be NULL when payload_len is 0; only read. It is
 *                 encrypted unless no key is established yet (e.g. XX message 1).
 * @param payload_len length of @p payload.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_STATE (not our turn,
 *         complete, dead, or a key the pattern needs was not set);
 *         ::MQE2E_ERR_BUFFER_TOO_SMALL; ::MQE2E_ERR_TOO_LARGE (message over
 *         65535 bytes). Fatal (handshake dead): ::MQE2E_ERR_AUTH (a DH gave the
 *         all-zero output: small-order peer key); ::MQE2E_ERR_CRYPTO.
 */
MQE2E_API int mqe2e_noise_write_message(mqe2e_noise_handshake *hs, uint8_t *out, size_t out_cap,
                                        size_t *out_len, const uint8_t *payload,
                                        size_t payload_len);

/**
 * @brief Read the next handshake message (ReadMessage).
 *
 * @param hs the handshake.
 * @param payload_out caller buffer receiving the payload; wiped on failure.
 * @param payload_cap its size (message length minus keys and tags suffices).
 * @param payload_len out: payload bytes.
 * @param msg         the received message; only read; must not overlap payload_out.
 * @param msg_len     length of @p msg.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_STATE (not our turn
 *         — e.g. the same message read twice —, complete, dead, missing key);
 *         ::MQE2E_ERR_DECODE (shorter than the pattern's keys and tags);
 *         ::MQE2E_ERR_TOO_LARGE (over 65535 bytes); ::MQE2E_ERR_BUFFER_TOO_SMALL.
 *         Fatal (handshake dead): ::MQE2E_ERR_AUTH (decryption failed, or a DH
 *         gave the all-zero output).
 */
MQE2E_API int mqe2e_noise_read_message(mqe2e_noise_handshake *hs, uint8_t *payload_out,
                                       size_t payload_cap, size_t *payload_len,
                                       const uint8_t *msg, size_t msg_len);

/**
 * @brief 1 when every handshake message has been written or read (also after
 *        split), else 0 (also for NULL or a dead handshake).
 */
MQE2E_API int mqe2e_noise_handshake_is_complete(const mqe2e_noise_handshake *hs);

/**
 * @brief The handshake hash h, for channel binding. Only once complete.
 * @param hs the handshake.
 * @param out 32 bytes, caller-owned.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_STATE.
 */
MQE2E_API int mqe2e_noise_handshake_hash(const mqe2e_noise_handshake *hs,
                                         uint8_t out[MQE2E_NOISE_HASH_BYTES]);

/**
 * @brief The peer's static public key, once known (pre-shared, or received
 *        and decrypted). It is authenticated only when the handshake is
 *        complete: check ::mqe2e_noise_handshake_is_complete before trusting it.
 * @param hs the handshake.
 * @param out 32 bytes, caller-owned.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_STATE (not known
 *         yet, or the handshake is dead).
 */
MQE2E_API int mqe2e_noise_handshake_remote_static(const mqe2e_noise_handshake *hs,
                                                  uint8_t out[MQE2E_NOISE_DH_BYTES]);

/**
 * @brief Split a complete handshake into two transport cipher states.
 *
 * Allowed once. Afterwards the handshake's chaining key, cipher key and
 * ephemeral secret are wiped; the handshake hash and remote static key stay
 * readable. For one-way patterns only the initiator's send / responder's
 * receive state is meant to be used.
 * @param hs the handshake.
 * @param send out: encrypts what this side sends; free with ::mqe2e_noise_cipher_free.
 * @param recv out: decrypts what this side receives; free with ::mqe2e_noise_cipher_free.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_STATE (not
 *         complete, already split, dead); ::MQE2E_ERR_NOMEM.
 */
MQE2E_API int mqe2e_noise_split(mqe2e_noise_handshake *hs, mqe2e_noise_cipher **send,
                                mqe2e_noise_cipher **recv);

/**
 * @brief Make a cipher state from a stored key with nonce 0 (e.g. a channel
 *        key restored from the keystore).
 * @param cs  out: new cipher state, free with ::mqe2e_noise_cipher_free.
 * @param key 32 bytes, copied; the caller wipes its copy.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_NOMEM.
 */
MQE2E_API int mqe2e_noise_cipher_new(mqe2e_noise_cipher **cs, const uint8_t key[MQE2E_NOISE_KEY_BYTES]);

/** @brief Wipe and free a cipher state. NULL is a no-op. */
MQE2E_API void mqe2e_noise_cipher_free(mqe2e_noise_cipher *cs);

/**
 * @brief Copy out the current key (to persist it). The caller wipes @p out.
 * @return ::MQE2E_OK or ::MQE2E_ERR_INVALID_ARG.
 */
MQE2E_API int mqe2e_noise_cipher_export_key(const mqe2e_noise_cipher *cs,
                                            uint8_t out[MQE2E_NOISE_KEY_BYTES]);

/** @brief The next implicit nonce (0 for NULL). */
MQE2E_API uint64_t mqe2e_noise_cipher_nonce(const mqe2e_noise_cipher *cs);

/**
 * @brief SetNonce: set the next implicit nonce.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG (NULL or the reserved 2^64-1).
 */
MQE2E_API int mqe2e_noise_cipher_set_nonce(mqe2e_noise_cipher *cs, uint64_t n);

/**
 * @brief EncryptWithAd with the implicit nonce, then increment it.
 * @param cs      the cipher state.
 * @param out     receives plaintext_len + 16 bytes; may equal @p plaintext (in place).
 * @param out_cap size of @p out in bytes.
 * @param out_len out: ciphertext bytes written.
 * @param ad      may be NULL when ad_len is 0.
 * @param ad_len  length of @p ad.
 * @param plaintext only read; may be NULL when plaintext_len is 0.
 * @param plaintext_len length of @p plaintext.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_BUFFER_TOO_SMALL;
 *         ::MQE2E_ERR_TOO_LARGE (ciphertext over 65535 bytes);
 *         ::MQE2E_ERR_EXHAUSTED (nonce reached 2^64-1: rekey or re-handshake).
 */
MQE2E_API int mqe2e_noise_cipher_encrypt(mqe2e_noise_cipher *cs, uint8_t *out, size_t out_cap,
                                         size_t *out_len, const uint8_t *ad, size_t ad_len,
                                         const uint8_t *plaintext, size_t plaintext_len);

/**
 * @brief DecryptWithAd with the implicit nonce; the nonce is incremented only
 *        on success.
 * @param cs      the cipher state.
 * @param out     receives ciphertext_len - 16 bytes; may equal @p ciphertext; wiped on failure.
 * @param out_cap size of @p out in bytes.
 * @param out_len out: plaintext bytes written.
 * @param ad      must equal the sender's; may be NULL when ad_len is 0.
 * @param ad_len  length of @p ad.
 * @param ciphertext ciphertext followed by its 16-byte tag (untrusted).
 * @param ciphertext_len length of @p ciphertext.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_DECODE (shorter
 *         than a tag); ::MQE2E_ERR_TOO_LARGE; ::MQE2E_ERR_BUFFER_TOO_SMALL;
 *         ::MQE2E_ERR_EXHAUSTED; ::MQE2E_ERR_AUTH.
 */
MQE2E_API int mqe2e_noise_cipher_decrypt(mqe2e_noise_cipher *cs, uint8_t *out, size_t out_cap,
                                         size_t *out_len, const uint8_t *ad, size_t ad_len,
                                         const uint8_t *ciphertext, size_t ciphertext_len);

/**
 * @brief Encrypt with an explicit nonce @p n (the implicit counter is not
 *        touched). The caller sends @p n on the wire and must never use the
 *        same n twice with one key.
 * @return as ::mqe2e_noise_cipher_encrypt, ::MQE2E_ERR_INVALID_ARG for n = 2^64-1.
 */
MQE2E_API int mqe2e_noise_cipher_encrypt_n(const mqe2e_noise_cipher *cs, uint64_t n, uint8_t *out,
                                           size_t out_cap, size_t *out_len, const uint8_t *ad,
                                           size_t ad_len, const uint8_t *plaintext,
                                           size_t plaintext_len);

/**
 * @brief Decrypt with an explicit nonce @p n taken from the wire. Replay
 *        detection is the caller's (a sliding window over n).
 * @return as ::mqe2e_noise_cipher_decrypt, ::MQE2E_ERR_INVALID_ARG for n = 2^64-1.
 */
MQE2E_API int mqe2e_noise_cipher_decrypt_n(const mqe2e_noise_cipher *cs, uint64_t n, uint8_t *out,
                                           size_t out_cap, size_t *out_len, const uint8_t *ad,
                                           size_t ad_len, const uint8_t *ciphertext,
                                           size_t ciphertext_len);

/**
 * @brief Rekey(): k = first 32 bytes of ENCRYPT(k, 2^64-1, empty ad, 32 zero
 *        bytes). The nonce counter is left as is (Noise leaves resetting it
 *        to the application). Both sides must rekey at the same point.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG.
 */
MQE2E_API int mqe2e_noise_cipher_rekey(mqe2e_noise_cipher *cs);

#ifdef __cplusplus
}
#endif
#endif
