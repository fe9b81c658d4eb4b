/* Helpers shared by credential.c, ticket.c and revocation.c (not public). */
#ifndef MQE2E_INTERNAL_CRED_H
#define MQE2E_INTERNAL_CRED_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* protobuf-c allocator that wipes every block it frees, for messages that
 * carry secrets (tickets) or are built from untrusted input. */
extern ProtobufCAllocator mqe2e__cred_allocator;

/* True if packing @p m gives exactly @p in: the input used the one canonical
 * encoding (no duplicate fields, no explicit defaults, no trailing data). The
 * scratch copy is wiped because tickets carry a secret. */
bool mqe2e__cred_canonical(const ProtobufCMessage *m, const uint8_t *in, size_t len);

/* A usable Ed25519 public key: canonical, on the curve, not of small order.
 * Both key checks remember the keys that passed (per thread), so a key met
 * twice is checked once. */
bool mqe2e__cred_ed25519_public_ok(const uint8_t pk[32]);

/* A usable X25519 public key: not of small order. */
bool mqe2e__cred_x25519_public_ok(const uint8_t pk[32]);

/* Record that @p pk passed an equivalent check elsewhere (a DH with a clamped
 * secret that crypto_scalarmult() did not refuse), so a later
 * mqe2e__cred_x25519_public_ok() on it in this thread skips the X25519. */
void mqe2e__cred_x25519_public_passed(const uint8_t pk[32]);

/* Public half of an Ed25519 secret key, recomputed from its seed and checked
 * against the copy stored in the key. Returns 0, MQE2E_ERR_INVALID_ARG or
 * MQE2E_ERR_CRYPTO; every temporary is wiped. */
int mqe2e__cred_secret_public(uint8_t pk[32], const uint8_t sk[64]);

/* Ed25519 over domain || body. Returns 0, MQE2E_ERR_NOMEM or MQE2E_ERR_CRYPTO. */
int mqe2e__cred_sign(uint8_t sig[64], const char *domain, const uint8_t *body, size_t len,
                     const uint8_t sk[64]);

/* Verify Ed25519 over domain || body. Returns 0, MQE2E_ERR_AUTH or MQE2E_ERR_NOMEM. */
int mqe2e__cred_verify(const uint8_t sig[64], const char *domain, const uint8_t *body, size_t len,
                       const uint8_t pk[32]);

/* Who signs a body: a raw secret key, or a callback whose key is @p pk. */
typedef struct mqe2e__cred_signer {
    const uint8_t *sk;            /* 64-byte secret key, or NULL */
    const uint8_t *pk;            /* public key when sk is NULL */
    int (*fn)(void *ctx, uint8_t sig[64], const uint8_t *msg, size_t msg_len);
    void *ctx;
} mqe2e__cred_signer;

/* Public key of a signer (recomputed and checked for a raw key). Returns 0,
 * MQE2E_ERR_INVALID_ARG or MQE2E_ERR_CRYPTO. */
int mqe2e__cred_signer_public(uint8_t pk[32], const mqe2e__cred_signer *s);

/* Ed25519 over domain || body by a signer; a callback's first signature (per
 * thread, callback, context and public key) is verified against its public
 * key. Returns 0, MQE2E_ERR_NOMEM, MQE2E_ERR_CRYPTO or
 * MQE2E_ERR_INVALID_ARG (callback signed with another key). */
int mqe2e__cred_sign_by(uint8_t sig[64], const char *domain, const uint8_t *body, size_t len,
                        const mqe2e__cred_signer *s);

#endif
