/*
 * Internal to the core: the sealed-blob format shared by the encrypted file
 * backend and mqe2e_passphrase_seal/open, and test hooks of the keystore.
 * docs/KEYSTORE.md describes every byte.
 */
#ifndef MQE2E_INTERNAL_KEYSTORE_H
#define MQE2E_INTERNAL_KEYSTORE_H

#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#include "mqe2e/keystore.h"

#define MQE2E__SEAL_MAGIC "MQE2EKS1"
#define MQE2E__SEAL_MAGIC_BYTES 8U
#define MQE2E__SEAL_KDF_PASSPHRASE 1U
#define MQE2E__SEAL_KDF_RAW 2U
#define MQE2E__SEAL_SALT_BYTES crypto_pwhash_SALTBYTES
#define MQE2E__SEAL_NONCE_BYTES crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define MQE2E__SEAL_TAG_BYTES crypto_aead_xchacha20poly1305_ietf_ABYTES
#define MQE2E__SEAL_KEY_BYTES crypto_aead_xchacha20poly1305_ietf_KEYBYTES
/* Bounds a file's KDF cost must stay under: a hostile file must not make us
 * spend minutes or gigabytes deriving a key. */
#define MQE2E__SEAL_MAX_OPSLIMIT MQE2E_KDF_OPSLIMIT_MAX
#define MQE2E__SEAL_MAX_MEMLIMIT MQE2E_KDF_MEMLIMIT_MAX

/* Parsed header of a sealed blob; points into the blob. */
typedef struct mqe2e__seal_header {
    unsigned kdf;                                /* MQE2E__SEAL_KDF_* */
    uint8_t salt[MQE2E__SEAL_SALT_BYTES];        /* kdf 1 only */
    uint64_t opslimit, memlimit;                 /* kdf 1 only */
    size_t header_len;                           /* bytes before the ciphertext, nonce included */
} mqe2e__seal_header;

/* Argon2id(passphrase, salt) -> key. MQE2E_ERR_NOMEM when libsodium fails
 * (it only fails for lack of memory once the limits are in range). */
int mqe2e__seal_derive(uint8_t key[MQE2E__SEAL_KEY_BYTES], const char *passphrase,
                       size_t passphrase_len, const uint8_t salt[MQE2E__SEAL_SALT_BYTES],
                       uint64_t opslimit, uint64_t memlimit);

/* Parse and bound-check a header. MQE2E_ERR_DECODE on bad magic, unknown kdf,
 * out-of-range limits or a blob too short for header + tag. */
int mqe2e__seal_parse(mqe2e__seal_header *h, const uint8_t *sealed, size_t sealed_len);

/* Seal data under key with a fresh nonce. salt/opslimit/memlimit are written
 * only for kdf 1. *out is malloc()ed (no clear secret in it). */
int mqe2e__seal(uint8_t **out, size_t *out_len, unsigned kdf,
                const uint8_t salt[MQE2E__SEAL_SALT_BYTES], uint64_t opslimit, uint64_t memlimit,
                const uint8_t key[MQE2E__SEAL_KEY_BYTES], const uint8_t *data, size_t len);

/* Authenticate and decrypt a parsed blob. *out is malloc()ed and holds the
 * clear blob: the caller wipes and frees it. MQE2E_ERR_AUTH on any failure. */
int mqe2e__unseal(uint8_t **out, size_t *out_len, const mqe2e__seal_header *h,
                  const uint8_t key[MQE2E__SEAL_KEY_BYTES], const uint8_t *sealed,
                  size_t sealed_len);

/* Test hook: free a keystore WITHOUT writing anything, as a crash would
 * (the storage backend is destroyed, its file is left as it is). */
void mqe2e__keystore_abandon(mqe2e_keystore *ks);

/* Nonzero when the in-memory state (e.g. replay checkpoints saved since)
 * is newer than the stored one. */
int mqe2e__keystore_dirty(const mqe2e_keystore *ks);

/* mqe2e_keystore_next_seq() with the caller's clock (seconds; 0 = none), also
 * giving the group's instance (may be NULL):
 * a group whose block is used up within a minute of its previous clocked
 * reservation gets twice the block (up to 65,536, never below the base set
 * with mqe2e_keystore_set_seq_block()); a slower one gets the base block. */
int mqe2e__keystore_next_seq_at(mqe2e_keystore *ks, const char *group_id, uint64_t now,
                                uint64_t *seq, uint64_t *instance);

/* Copy out the X25519 static secret key (for handshakes in the core).
 * The caller wipes dh_sk. */
int mqe2e__keystore_dh_secret(const mqe2e_keystore *ks, uint8_t dh_sk[32]);

/* Ed25519-sign msg with the identity key (detached, 64-byte signature). */
int mqe2e__keystore_sign(const mqe2e_keystore *ks, uint8_t sig[64], const uint8_t *msg,
                         size_t msg_len);

#endif
