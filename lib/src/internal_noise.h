/* Internal to the Noise module (noise_*.c); not part of the public API. */
#ifndef MQE2E_INTERNAL_NOISE_H
#define MQE2E_INTERNAL_NOISE_H

#include <stddef.h>
#include <stdint.h>

#include "mqe2e/noise.h"

/* Deferred patterns have 4 messages; psk modifiers may name one past the end. */
#define MQE2E__NOISE_MAX_MSGS 4U
/* Longest base message (IK: e, es, s, ss) plus every psk token. */
#define MQE2E__NOISE_MAX_TOKENS (6U + MQE2E_NOISE_MAX_PSKS)

enum mqe2e__noise_token {
    MQE2E__TOK_E = 1,
    MQE2E__TOK_S,
    MQE2E__TOK_EE,
    MQE2E__TOK_ES,
    MQE2E__TOK_SE,
    MQE2E__TOK_SS,
    MQE2E__TOK_PSK,
};

/* A parsed handshake pattern with its psk modifiers applied. */
typedef struct mqe2e__noise_pattern {
    uint8_t pre_s_initiator; /* initiator's static key is a pre-message */
    uint8_t pre_s_responder; /* responder's static key is a pre-message */
    uint8_t one_way;
    uint8_t n_msgs;
    uint8_t n_psks;
    uint8_t n_tokens[MQE2E__NOISE_MAX_MSGS];
    uint8_t tokens[MQE2E__NOISE_MAX_MSGS][MQE2E__NOISE_MAX_TOKENS];
} mqe2e__noise_pattern;

/* Parse a full protocol name of suite 25519_ChaChaPoly_SHA256.
 * Returns MQE2E_OK or MQE2E_ERR_SUITE. */
int mqe2e__noise_pattern_parse(mqe2e__noise_pattern *out, const char *protocol_name);

/* CipherState (Noise section 5.1). */
typedef struct mqe2e__noise_cs {
    uint8_t k[MQE2E_NOISE_KEY_BYTES];
    uint64_t n;
    int has_k;
} mqe2e__noise_cs;

/* SymmetricState (Noise section 5.2). */
typedef struct mqe2e__noise_ss {
    mqe2e__noise_cs cs;
    uint8_t ck[MQE2E_NOISE_HASH_BYTES];
    uint8_t h[MQE2E_NOISE_HASH_BYTES];
} mqe2e__noise_ss;

/* ENCRYPT/DECRYPT of the suite with the Noise nonce layout. n < 2^64-1 is
 * the caller's check except for rekey. Return 0 / MQE2E_ERR_AUTH. */
void mqe2e__noise_aead_encrypt(uint8_t *out, const uint8_t k[MQE2E_NOISE_KEY_BYTES], uint64_t n,
                               const uint8_t *ad, size_t ad_len, const uint8_t *pt, size_t pt_len);
int mqe2e__noise_aead_decrypt(uint8_t *out, const uint8_t k[MQE2E_NOISE_KEY_BYTES], uint64_t n,
                              const uint8_t *ad, size_t ad_len, const uint8_t *ct, size_t ct_len);

/* HKDF as Noise section 4.3 defines it (2 or 3 outputs; out3 may be NULL). */
void mqe2e__noise_hkdf(const uint8_t ck[MQE2E_NOISE_HASH_BYTES], const uint8_t *ikm, size_t ikm_len,
                       uint8_t out1[MQE2E_NOISE_HASH_BYTES], uint8_t out2[MQE2E_NOISE_HASH_BYTES],
                       uint8_t *out3);

void mqe2e__noise_ss_init(mqe2e__noise_ss *ss, const char *protocol_name);
void mqe2e__noise_ss_mix_hash(mqe2e__noise_ss *ss, const uint8_t *data, size_t len);
void mqe2e__noise_ss_mix_key(mqe2e__noise_ss *ss, const uint8_t *ikm, size_t len);
void mqe2e__noise_ss_mix_key_and_hash(mqe2e__noise_ss *ss, const uint8_t *ikm, size_t len);
/* out receives len (+16 when a key is set) bytes; out may equal pt. */
int mqe2e__noise_ss_encrypt_and_hash(mqe2e__noise_ss *ss, uint8_t *out, const uint8_t *pt, size_t len);
/* out receives len (-16 when a key is set) bytes; must not overlap ct. */
int mqe2e__noise_ss_decrypt_and_hash(mqe2e__noise_ss *ss, uint8_t *out, const uint8_t *ct, size_t len);
void mqe2e__noise_ss_split(const mqe2e__noise_ss *ss, uint8_t k1[MQE2E_NOISE_KEY_BYTES],
                           uint8_t k2[MQE2E_NOISE_KEY_BYTES]);

/* Replace the psk in slot @p index of a live handshake, before the psk token
 * that mixes it was processed (mqe2e_noise_handshake_set_psk() only works
 * before the first message). For a responder that learns which psk to use
 * from the first message's payload, when that message mixes no psk (IKpsk2):
 * the state after it does not depend on the psk. Returns 0 or
 * MQE2E_ERR_STATE / MQE2E_ERR_INVALID_ARG. */
int mqe2e__noise_handshake_replace_psk(mqe2e_noise_handshake *hs, size_t index,
                                       const uint8_t psk[MQE2E_NOISE_PSK_BYTES]);

#endif
