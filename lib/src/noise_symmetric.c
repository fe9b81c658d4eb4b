/* Noise CipherState and SymmetricState for 25519_ChaChaPoly_SHA256, and the
 * public transport cipher calls built on them. */
#include <sodium.h>
#include <string.h>

#include "internal_noise.h"
#include "mqe2e/error.h"
#include "mqe2e/noise.h"

/* Noise reserves 2^64-1: it is never a message nonce, only the rekey nonce. */
#define NONCE_MAX UINT64_MAX

struct mqe2e_noise_cipher {
    mqe2e__noise_cs cs;
};

/* ChaChaPoly nonce (Noise 12.3): 32 bits of zeros, then n little-endian. */
static void make_nonce(uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES], uint64_t n)
{
    memset(nonce, 0, 4);
    for (size_t i = 0; i < 8; i++) nonce[4 + i] = (uint8_t)(n >> (8 * i));
}

void mqe2e__noise_aead_encrypt(uint8_t *out, const uint8_t k[MQE2E_NOISE_KEY_BYTES], uint64_t n,
                               const uint8_t *ad, size_t ad_len, const uint8_t *pt, size_t pt_len)
{
    uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];
    make_nonce(nonce, n);
    (void)crypto_aead_chacha20poly1305_ietf_encrypt(out, NULL, pt, pt_len, ad, ad_len, NULL, nonce, k);
}

int mqe2e__noise_aead_decrypt(uint8_t *out, const uint8_t k[MQE2E_NOISE_KEY_BYTES], uint64_t n,
                              const uint8_t *ad, size_t ad_len, const uint8_t *ct, size_t ct_len)
{
    uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];
    make_nonce(nonce, n);
    if (ct_len < MQE2E_NOISE_TAG_BYTES ||
        crypto_aead_chacha20poly1305_ietf_decrypt(out, NULL, NULL, ct, ct_len, ad, ad_len, nonce, k) != 0) {
        if (ct_len > MQE2E_NOISE_TAG_BYTES) sodium_memzero(out, ct_len - MQE2E_NOISE_TAG_BYTES);
        return MQE2E_ERR_AUTH;
    }
    return MQE2E_OK;
}

void mqe2e__noise_hkdf(const uint8_t ck[MQE2E_NOISE_HASH_BYTES], const uint8_t *ikm, size_t ikm_len,
                       uint8_t out1[MQE2E_NOISE_HASH_BYTES], uint8_t out2[MQE2E_NOISE_HASH_BYTES],
                       uint8_t *out3)
{
    uint8_t temp_key[crypto_auth_hmacsha256_BYTES];
    uint8_t t1[crypto_auth_hmacsha256_BYTES], t2[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    const uint8_t one = 0x01, two = 0x02, three = 0x03;

    crypto_auth_hmacsha256(temp_key, ikm, ikm_len, ck);
    crypto_auth_hmacsha256(t1, &one, 1, temp_key);
    crypto_auth_hmacsha256_init(&st, temp_key, sizeof temp_key);
    crypto_auth_hmacsha256_update(&st, t1, sizeof t1);
    crypto_auth_hmacsha256_update(&st, &two, 1);
    crypto_auth_hmacsha256_final(&st, t2);
    if (out3 != NULL) {
        crypto_auth_hmacsha256_init(&st, temp_key, sizeof temp_key);
        crypto_auth_hmacsha256_update(&st, t2, sizeof t2);
        crypto_auth_hmacsha256_update(&st, &three, 1);
        crypto_auth_hmacsha256_final(&st, out3);
    }
    /* Copied last so that out1/out2 may alias ck. */
    memcpy(out1, t1, sizeof t1);
    memcpy(out2, t2, sizeof t2);
    sodium_memzero(temp_key, sizeof temp_key);
    sodium_memzero(t1, sizeof t1);
    sodium_memzero(t2, sizeof t2);
    sodium_memzero(&st, sizeof st);
}

void mqe2e__noise_ss_init(mqe2e__noise_ss *ss, const char *protocol_name)
{
    size_t len = strlen(protocol_name);
    memset(ss, 0, sizeof *ss);
    if (len <= MQE2E_NOISE_HASH_BYTES) {
        memcpy(ss->h, protocol_name, len);
    } else {
        crypto_hash_sha256(ss->h, (const unsigned char *)protocol_name, len);
    }
    memcpy(ss->ck, ss->h, sizeof ss->ck);
}

void mqe2e__noise_ss_mix_hash(mqe2e__noise_ss *ss, const uint8_t *data, size_t len)
{
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, ss->h, sizeof ss->h);
    crypto_hash_sha256_update(&st, data, len);
    crypto_hash_sha256_final(&st, ss->h);
    sodium_memzero(&st, sizeof st);
}

void mqe2e__noise_ss_mix_key(mqe2e__noise_ss *ss, const uint8_t *ikm, size_t len)
{
    uint8_t temp_k[MQE2E_NOISE_HASH_BYTES];
    mqe2e__noise_hkdf(ss->ck, ikm, len, ss->ck, temp_k, NULL);
    memcpy(ss->cs.k, temp_k, MQE2E_NOISE_KEY_BYTES);
    ss->cs.n = 0;
    ss->cs.has_k = 1;
    sodium_memzero(temp_k, sizeof temp_k);
}

void mqe2e__noise_ss_mix_key_and_hash(mqe2e__noise_ss *ss, const uint8_t *ikm, size_t len)
{
    uint8_t temp_h[MQE2E_NOISE_HASH_BYTES], temp_k[MQE2E_NOISE_HASH_BYTES];
    mqe2e__noise_hkdf(ss->ck, ikm, len, ss->ck, temp_h, temp_k);
    mqe2e__noise_ss_mix_hash(ss, temp_h, sizeof temp_h);
    memcpy(ss->cs.k, temp_k, MQE2E_NOISE_KEY_BYTES);
    ss->cs.n = 0;
    ss->cs.has_k = 1;
    sodium_memzero(temp_h, sizeof temp_h);
    sodium_memzero(temp_k, sizeof temp_k);
}

int mqe2e__noise_ss_encrypt_and_hash(mqe2e__noise_ss *ss, uint8_t *out, const uint8_t *pt, size_t len)
{
    size_t out_len = len;
    if (ss->cs.has_k) {
        /* A handshake never sends 2^64-1 messages; checked for completeness. */
        if (ss->cs.n == NONCE_MAX) return MQE2E_ERR_EXHAUSTED;
        mqe2e__noise_aead_encrypt(out, ss->cs.k, ss->cs.n, ss->h, sizeof ss->h, pt, len);
        ss->cs.n++;
        out_len += MQE2E_NOISE_TAG_BYTES;
    } else if (len > 0 && out != pt) {
        memmove(out, pt, len);
    }
    mqe2e__noise_ss_mix_hash(ss, out, out_len);
    return MQE2E_OK;
}

int mqe2e__noise_ss_decrypt_and_hash(mqe2e__noise_ss *ss, uint8_t *out, const uint8_t *ct, size_t len)
{
    if (ss->cs.has_k) {
        if (ss->cs.n == NONCE_MAX) return MQE2E_ERR_EXHAUSTED;
        int rc = mqe2e__noise_aead_decrypt(out, ss->cs.k, ss->cs.n, ss->h, sizeof ss->h, ct, len);
        if (rc != MQE2E_OK) return rc;
        ss->cs.n++;
    } else if (len > 0) {
        memmove(out, ct, len);
    }
    /* h covers the ciphertext, which the caller still holds in ct. */
    mqe2e__noise_ss_mix_hash(ss, ct, len);
    return MQE2E_OK;
}

void mqe2e__noise_ss_split(const mqe2e__noise_ss *ss, uint8_t k1[MQE2E_NOISE_KEY_BYTES],
                           uint8_t k2[MQE2E_NOISE_KEY_BYTES])
{
    mqe2e__noise_hkdf(ss->ck, NULL, 0, k1, k2, NULL);
}

/* ---- public transport cipher states ---------------------------------- */

int mqe2e_noise_cipher_new(mqe2e_noise_cipher **cs, const uint8_t key[MQE2E_NOISE_KEY_BYTES])
{
    if (cs == NULL) return MQE2E_ERR_INVALID_ARG;
    *cs = NULL;
    if (key == NULL) return MQE2E_ERR_INVALID_ARG;
    if (sodium_init() < 0) return MQE2E_ERR_CRYPTO;
    mqe2e_noise_cipher *c = sodium_malloc(sizeof *c);
    if (c == NULL) return MQE2E_ERR_NOMEM;
    memcpy(c->cs.k, key, MQE2E_NOISE_KEY_BYTES);
    c->cs.n = 0;
    c->cs.has_k = 1;
    *cs = c;
    return MQE2E_OK;
}

void mqe2e_noise_cipher_free(mqe2e_noise_cipher *cs)
{
    if (cs == NULL) return;
    sodium_memzero(cs, sizeof *cs);
    sodium_free(cs);
}

int mqe2e_noise_cipher_export_key(const mqe2e_noise_cipher *cs, uint8_t out[MQE2E_NOISE_KEY_BYTES])
{
    if (cs == NULL || out == NULL) return MQE2E_ERR_INVALID_ARG;
    memcpy(out, cs->cs.k, MQE2E_NOISE_KEY_BYTES);
    return MQE2E_OK;
}

uint64_t mqe2e_noise_cipher_nonce(const mqe2e_noise_cipher *cs)
{
    return cs == NULL ? 0 : cs->cs.n;
}

int mqe2e_noise_cipher_set_nonce(mqe2e_noise_cipher *cs, uint64_t n)
{
    if (cs == NULL || n == NONCE_MAX) return MQE2E_ERR_INVALID_ARG;
    cs->cs.n = n;
    return MQE2E_OK;
}

static int check_encrypt_args(size_t out_cap, const uint8_t *out, const uint8_t *ad, size_t ad_len,
                              const uint8_t *pt, size_t pt_len, const size_t *out_len)
{
    if (out == NULL || out_len == NULL || (ad == NULL && ad_len > 0) || (pt == NULL && pt_len > 0))
        return MQE2E_ERR_INVALID_ARG;
    if (pt_len > MQE2E_NOISE_MAX_PLAINTEXT_BYTES) return MQE2E_ERR_TOO_LARGE;
    if (out_cap < pt_len + MQE2E_NOISE_TAG_BYTES) return MQE2E_ERR_BUFFER_TOO_SMALL;
    return MQE2E_OK;
}

static int check_decrypt_args(size_t out_cap, const uint8_t *out, const uint8_t *ad, size_t ad_len,
                              const uint8_t *ct, size_t ct_len, const size_t *out_len)
{
    if (out == NULL || out_len == NULL || ct == NULL || (ad == NULL && ad_len > 0))
        return MQE2E_ERR_INVALID_ARG;
    if (ct_len > MQE2E_NOISE_MAX_MESSAGE_BYTES) return MQE2E_ERR_TOO_LARGE;
    if (ct_len < MQE2E_NOISE_TAG_BYTES) return MQE2E_ERR_DECODE;
    if (out_cap < ct_len - MQE2E_NOISE_TAG_BYTES) return MQE2E_ERR_BUFFER_TOO_SMALL;
    return MQE2E_OK;
}

int mqe2e_noise_cipher_encrypt_n(const mqe2e_noise_cipher *cs, uint64_t n, uint8_t *out,
                                 size_t out_cap, size_t *out_len, const uint8_t *ad, size_t ad_len,
                                 const uint8_t *plaintext, size_t plaintext_len)
{
    if (cs == NULL || n == NONCE_MAX) return MQE2E_ERR_INVALID_ARG;
    int rc = check_encrypt_args(out_cap, out, ad, ad_len, plaintext, plaintext_len, out_len);
    if (rc != MQE2E_OK) return rc;
    mqe2e__noise_aead_encrypt(out, cs->cs.k, n, ad, ad_len, plaintext, plaintext_len);
    *out_len = plaintext_len + MQE2E_NOISE_TAG_BYTES;
    return MQE2E_OK;
}

int mqe2e_noise_cipher_decrypt_n(const mqe2e_noise_cipher *cs, uint64_t n, uint8_t *out,
                                 size_t out_cap, size_t *out_len, const uint8_t *ad, size_t ad_len,
                                 const uint8_t *ciphertext, size_t ciphertext_len)
{
    if (cs == NULL || n == NONCE_MAX) return MQE2E_ERR_INVALID_ARG;
    int rc = check_decrypt_args(out_cap, out, ad, ad_len, ciphertext, ciphertext_len, out_len);
    if (rc != MQE2E_OK) return rc;
    rc = mqe2e__noise_aead_decrypt(out, cs->cs.k, n, ad, ad_len, ciphertext, ciphertext_len);
    if (rc != MQE2E_OK) return rc;
    *out_len = ciphertext_len - MQE2E_NOISE_TAG_BYTES;
    return MQE2E_OK;
}

int mqe2e_noise_cipher_encrypt(mqe2e_noise_cipher *cs, uint8_t *out, size_t out_cap,
                               size_t *out_len, const uint8_t *ad, size_t ad_len,
                               const uint8_t *plaintext, size_t plaintext_len)
{
    if (cs == NULL) return MQE2E_ERR_INVALID_ARG;
    if (cs->cs.n == NONCE_MAX) return MQE2E_ERR_EXHAUSTED;
    int rc = mqe2e_noise_cipher_encrypt_n(cs, cs->cs.n, out, out_cap, out_len, ad, ad_len,
                                          plaintext, plaintext_len);
    if (rc == MQE2E_OK) cs->cs.n++;
    return rc;
}

int mqe2e_noise_cipher_decrypt(mqe2e_noise_cipher *cs, uint8_t *out, size_t out_cap,
                               size_t *out_len, const uint8_t *ad, size_t ad_len,
                               const uint8_t *ciphertext, size_t ciphertext_len)
{
    if (cs == NULL) return MQE2E_ERR_INVALID_ARG;
    if (cs->cs.n == NONCE_MAX) return MQE2E_ERR_EXHAUSTED;
    int rc = mqe2e_noise_cipher_decrypt_n(cs, cs->cs.n, out, out_cap, out_len, ad, ad_len,
                                          ciphertext, ciphertext_len);
    /* Noise 5.1: a failed decryption does not consume the nonce. */
    if (rc == MQE2E_OK) cs->cs.n++;
    return rc;
}

int mqe2e_noise_cipher_rekey(mqe2e_noise_cipher *cs)
{
    uint8_t zeros[MQE2E_NOISE_KEY_BYTES] = {0};
    uint8_t tmp[MQE2E_NOISE_KEY_BYTES + MQE2E_NOISE_TAG_BYTES];
    if (cs == NULL) return MQE2E_ERR_INVALID_ARG;
    mqe2e__noise_aead_encrypt(tmp, cs->cs.k, NONCE_MAX, NULL, 0, zeros, sizeof zeros);
    memcpy(cs->cs.k, tmp, MQE2E_NOISE_KEY_BYTES);
    sodium_memzero(tmp, sizeof tmp);
    return MQE2E_OK;
}
