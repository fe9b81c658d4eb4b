/*
 * Shared fixtures of the libFuzzer harnesses and the seed generator: fixed
 * keys (so every run is reproducible and AEAD / signature paths are reached
 * with inputs the generator made), the clock, and a cheap invariant check
 * that survives -DNDEBUG.
 */
#ifndef MQE2E_FUZZ_COMMON_H
#define MQE2E_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

/* 2026-11-23T00:00:00Z: the harnesses never read the wall clock. */
#define FUZZ_NOW 1795392000ULL

#define FUZZ_GROUP "g1"
#define FUZZ_TOPIC "sensors/t1"
#define FUZZ_PASSPHRASE "correct horse battery staple"
/* The smallest Argon2id cost the sealed format accepts: the seeds use it so
 * one execution stays in the tens of microseconds. */
#define FUZZ_SEAL_OPSLIMIT 1U
#define FUZZ_SEAL_MEMLIMIT 8192U
/* Inputs asking for more are parsed but not derived (a hostile file may ask
 * for up to 16 passes over 1 GiB, which would stall the fuzzer). */
#define FUZZ_MAX_OPSLIMIT 2U
#define FUZZ_MAX_MEMLIMIT (64U * 1024U)

#define FUZZ_NOISE_XX "Noise_XX_25519_ChaChaPoly_SHA256"
#define FUZZ_NOISE_IKPSK2 "Noise_IKpsk2_25519_ChaChaPoly_SHA256"
#define FUZZ_NOISE_PROLOGUE "mqe2e/v1/fuzz"

/* Checked even under -DNDEBUG; abort() is what libFuzzer reports as a crash. */
#define FUZZ_ASSERT(cond)                                                          \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "invariant failed: %s (%s:%d)\n", #cond, __FILE__,     \
                    __LINE__);                                                     \
            abort();                                                               \
        }                                                                          \
    } while (0)

static inline void fuzz_fill(uint8_t *out, size_t n, uint8_t v)
{
    memset(out, v, n);
}

/* Authority Ed25519 key pair from a fixed seed. */
static inline void fuzz_authority_keys(uint8_t pk[32], uint8_t sk[64])
{
    uint8_t seed[32];
    fuzz_fill(seed, sizeof seed, 0xA5);
    crypto_sign_seed_keypair(pk, sk, seed);
    sodium_memzero(seed, sizeof seed);
}

/* Signer (group member) Ed25519 key pair of signed-mode envelopes. */
static inline void fuzz_signer_keys(uint8_t pk[32], uint8_t sk[64])
{
    uint8_t seed[32];
    fuzz_fill(seed, sizeof seed, 0x5A);
    crypto_sign_seed_keypair(pk, sk, seed);
    sodium_memzero(seed, sizeof seed);
}

/* The epoch group secret every envelope is sealed under. */
static inline void fuzz_group_secret(uint8_t secret[32])
{
    fuzz_fill(secret, 32, 0x11);
}

/* The raw storage key of the encrypted file backend. */
static inline void fuzz_storage_key(uint8_t key[32])
{
    fuzz_fill(key, 32, 0x22);
}

/* Fixed X25519 secrets: 1 = responder static, 2 = initiator static,
 * 3 = responder ephemeral, 4 = initiator ephemeral. */
static inline void fuzz_dh_secret(uint8_t sk[32], uint8_t which)
{
    fuzz_fill(sk, 32, (uint8_t)(0x30 + which));
}

static inline void fuzz_dh_public(uint8_t pk[32], uint8_t which)
{
    uint8_t sk[32];
    fuzz_dh_secret(sk, which);
    crypto_scalarmult_base(pk, sk);
    sodium_memzero(sk, sizeof sk);
}

static inline void fuzz_psk(uint8_t psk[32])
{
    fuzz_fill(psk, 32, 0x44);
}

/* Encode Credential / RevocationList {1: body, 2: signature} exactly as
 * protobuf-c packs it (empty body omitted). *out is malloc()ed. */
static inline int fuzz_wrap_signed(uint8_t **out, size_t *out_len, const char *domain,
                                   const uint8_t *body, size_t body_len, const uint8_t sk[64])
{
    size_t dlen = strlen(domain);
    uint8_t *msg = malloc(dlen + body_len + 1U);
    uint8_t *buf = malloc(body_len + 16U + 2U + 64U);
    uint8_t sig[64];
    size_t n = 0;
    if (msg == NULL || buf == NULL) {
        free(msg);
        free(buf);
        return -1;
    }
    memcpy(msg, domain, dlen);
    if (body_len > 0) memcpy(msg + dlen, body, body_len);
    crypto_sign_detached(sig, NULL, msg, (unsigned long long)(dlen + body_len), sk);
    free(msg);
    if (body_len > 0) {
        size_t v = body_len;
        buf[n++] = 0x0a;
        while (v >= 0x80) {
            buf[n++] = (uint8_t)(v | 0x80);
            v >>= 7;
        }
        buf[n++] = (uint8_t)v;
        memcpy(buf + n, body, body_len);
        n += body_len;
    }
    buf[n++] = 0x12;
    buf[n++] = 64;
    memcpy(buf + n, sig, 64);
    n += 64;
    *out = buf;
    *out_len = n;
    return 0;
}

/* The key-tree fixture (fuzz_keytree, make_seeds): a member at leaf 2 of a
 * depth-3 tree at epoch 5, whose TreePath is built from PROTOCOL.md 10.5
 * with fixed keys: tree id 16 × 0x7E, leaf key 32 × 0x3C, node key at
 * height h 32 × (0x40 + h), nonce 24 × 0x11. */
#define FUZZ_TREE_DEPTH 3U
#define FUZZ_TREE_LEAF 2U
#define FUZZ_TREE_EPOCH 5U

static inline void fuzz_tree_fixture(uint8_t id[16], uint8_t leaf_key[32],
                                     uint8_t path[51 + FUZZ_TREE_DEPTH * 32 + 16])
{
    uint8_t keys[FUZZ_TREE_DEPTH * 32];
    fuzz_fill(id, 16, 0x7E);
    fuzz_fill(leaf_key, 32, 0x3C);
    for (unsigned h = 1; h <= FUZZ_TREE_DEPTH; h++) fuzz_fill(keys + (h - 1) * 32, 32, (uint8_t)(0x40 + h));
    path[0] = 1;
    path[1] = 3;
    memcpy(path + 2, id, 16);
    path[18] = FUZZ_TREE_DEPTH;
    path[19] = 0;
    path[20] = 0;
    path[21] = 0;
    path[22] = FUZZ_TREE_EPOCH;
    path[23] = 0;
    path[24] = 0;
    path[25] = 0;
    path[26] = FUZZ_TREE_LEAF;
    fuzz_fill(path + 27, 24, 0x11);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(path + 51, &clen, keys, sizeof keys, path, 51, NULL,
                                               path + 27, leaf_key);
    sodium_memzero(keys, sizeof keys);
}

#endif
