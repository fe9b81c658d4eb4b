/*
 * The sealed-blob format (docs/KEYSTORE.md) and passphrase sealing of
 * arbitrary blobs (exported group bundles). The encrypted file backend writes
 * the same format.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "internal_keystore.h"
#include "mqe2e/error.h"
#include "mqe2e/storage.h"

static void put_u64be(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)(v & 0xffU);
        v >>= 8;
    }
}

static uint64_t get_u64be(const uint8_t *p)
{
    uint64_t v = 0;
    for (size_t i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

static size_t header_len_for(unsigned kdf)
{
    size_t n = MQE2E__SEAL_MAGIC_BYTES + 1U;
    if (kdf == MQE2E__SEAL_KDF_PASSPHRASE) n += MQE2E__SEAL_SALT_BYTES + 8U + 8U;
    return n + MQE2E__SEAL_NONCE_BYTES;
}

int mqe2e__seal_derive(uint8_t key[MQE2E__SEAL_KEY_BYTES], const char *passphrase,
                       size_t passphrase_len, const uint8_t salt[MQE2E__SEAL_SALT_BYTES],
                       uint64_t opslimit, uint64_t memlimit)
{
    if (opslimit < crypto_pwhash_OPSLIMIT_MIN || opslimit > MQE2E__SEAL_MAX_OPSLIMIT ||
        memlimit < crypto_pwhash_MEMLIMIT_MIN || memlimit > MQE2E__SEAL_MAX_MEMLIMIT)
        return MQE2E_ERR_DECODE;
    if (crypto_pwhash(key, MQE2E__SEAL_KEY_BYTES, passphrase, (unsigned long long)passphrase_len,
                      salt, (unsigned long long)opslimit, (size_t)memlimit,
                      crypto_pwhash_ALG_ARGON2ID13) != 0) {
        sodium_memzero(key, MQE2E__SEAL_KEY_BYTES);
        return MQE2E_ERR_NOMEM;
    }
    return MQE2E_OK;
}

int mqe2e__seal_parse(mqe2e__seal_header *h, const uint8_t *sealed, size_t sealed_len)
{
    if (h == NULL || sealed == NULL) return MQE2E_ERR_INVALID_ARG;
    memset(h, 0, sizeof *h);
    if (sealed_len < MQE2E__SEAL_MAGIC_BYTES + 1U ||
        memcmp(sealed, MQE2E__SEAL_MAGIC, MQE2E__SEAL_MAGIC_BYTES) != 0)
        return MQE2E_ERR_DECODE;
    unsigned kdf = sealed[MQE2E__SEAL_MAGIC_BYTES];
    if (kdf != MQE2E__SEAL_KDF_PASSPHRASE && kdf != MQE2E__SEAL_KDF_RAW) return MQE2E_ERR_DECODE;
    size_t hl = header_len_for(kdf);
    if (sealed_len < hl + MQE2E__SEAL_TAG_BYTES) return MQE2E_ERR_DECODE;
    h->kdf = kdf;
    h->header_len = hl;
    if (kdf == MQE2E__SEAL_KDF_PASSPHRASE) {
        const uint8_t *p = sealed + MQE2E__SEAL_MAGIC_BYTES + 1U;
        memcpy(h->salt, p, MQE2E__SEAL_SALT_BYTES);
        h->opslimit = get_u64be(p + MQE2E__SEAL_SALT_BYTES);
        h->memlimit = get_u64be(p + MQE2E__SEAL_SALT_BYTES + 8U);
        /* A hostile file must not choose our KDF cost. */
        if (h->opslimit < crypto_pwhash_OPSLIMIT_MIN || h->opslimit > MQE2E__SEAL_MAX_OPSLIMIT ||
            h->memlimit < crypto_pwhash_MEMLIMIT_MIN || h->memlimit > MQE2E__SEAL_MAX_MEMLIMIT)
            return MQE2E_ERR_DECODE;
    }
    return MQE2E_OK;
}

int mqe2e__seal(uint8_t **out, size_t *out_len, unsigned kdf,
                const uint8_t salt[MQE2E__SEAL_SALT_BYTES], uint64_t opslimit, uint64_t memlimit,
                const uint8_t key[MQE2E__SEAL_KEY_BYTES], const uint8_t *data, size_t len)
{
    if (out == NULL || out_len == NULL || key == NULL || (data == NULL && len != 0))
        return MQE2E_ERR_INVALID_ARG;
    if (kdf != MQE2E__SEAL_KDF_PASSPHRASE && kdf != MQE2E__SEAL_KDF_RAW)
        return MQE2E_ERR_INVALID_ARG;
    size_t hl = header_len_for(kdf);
    if (len > SIZE_MAX - hl - MQE2E__SEAL_TAG_BYTES) return MQE2E_ERR_TOO_LARGE;
    size_t total = hl + len + MQE2E__SEAL_TAG_BYTES;
    uint8_t *buf = malloc(total);
    if (buf == NULL) return MQE2E_ERR_NOMEM;
    uint8_t *p = buf;
    memcpy(p, MQE2E__SEAL_MAGIC, MQE2E__SEAL_MAGIC_BYTES);
    p += MQE2E__SEAL_MAGIC_BYTES;
    *p++ = (uint8_t)kdf;
    if (kdf == MQE2E__SEAL_KDF_PASSPHRASE) {
        memcpy(p, salt, MQE2E__SEAL_SALT_BYTES);
        p += MQE2E__SEAL_SALT_BYTES;
        put_u64be(p, opslimit);
        put_u64be(p + 8, memlimit);
        p += 16;
    }
    /* Random 192-bit nonces never collide in practice, so every rewrite under
     * the same file key is safe. */
    randombytes_buf(p, MQE2E__SEAL_NONCE_BYTES);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(buf + hl, &clen, data, (unsigned long long)len,
                                               buf, (unsigned long long)hl, NULL, p, key);
    *out = buf;
    *out_len = hl + (size_t)clen;
    return MQE2E_OK;
}

int mqe2e__unseal(uint8_t **out, size_t *out_len, const mqe2e__seal_header *h,
                  const uint8_t key[MQE2E__SEAL_KEY_BYTES], const uint8_t *sealed,
                  size_t sealed_len)
{
    if (out == NULL || out_len == NULL || h == NULL || key == NULL || sealed == NULL ||
        sealed_len < h->header_len + MQE2E__SEAL_TAG_BYTES)
        return MQE2E_ERR_INVALID_ARG;
    size_t clen = sealed_len - h->header_len;
    size_t plen = clen - MQE2E__SEAL_TAG_BYTES;
    /* malloc(0) may return NULL: always ask for at least one byte. */
    uint8_t *pt = malloc(plen > 0 ? plen : 1U);
    if (pt == NULL) return MQE2E_ERR_NOMEM;
    unsigned long long got = 0;
    const uint8_t *nonce = sealed + h->header_len - MQE2E__SEAL_NONCE_BYTES;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(pt, &got, NULL, sealed + h->header_len,
                                                   (unsigned long long)clen, sealed,
                                                   (unsigned long long)h->header_len, nonce,
                                                   key) != 0) {
        sodium_memzero(pt, plen > 0 ? plen : 1U);
        free(pt);
        return MQE2E_ERR_AUTH;
    }
    *out = pt;
    *out_len = (size_t)got;
    return MQE2E_OK;
}

int mqe2e_passphrase_seal(uint8_t **out, size_t *out_len, const uint8_t *data, size_t len,
                          const char *passphrase, size_t passphrase_len)
{
    if (out == NULL || out_len == NULL || (data == NULL && len != 0) || passphrase == NULL ||
        passphrase_len == 0)
        return MQE2E_ERR_INVALID_ARG;
    if (mqe2e_init() != MQE2E_OK) return MQE2E_ERR_CRYPTO;
    uint8_t salt[MQE2E__SEAL_SALT_BYTES];
    uint8_t key[MQE2E__SEAL_KEY_BYTES];
    randombytes_buf(salt, sizeof salt);
    int rc = mqe2e__seal_derive(key, passphrase, passphrase_len, salt,
                                crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                crypto_pwhash_MEMLIMIT_INTERACTIVE);
    if (rc != MQE2E_OK) goto out;
    rc = mqe2e__seal(out, out_len, MQE2E__SEAL_KDF_PASSPHRASE, salt,
                     crypto_pwhash_OPSLIMIT_INTERACTIVE, crypto_pwhash_MEMLIMIT_INTERACTIVE, key,
                     data, len);
out:
    sodium_memzero(key, sizeof key);
    return rc;
}

int mqe2e_passphrase_open(uint8_t **out, size_t *out_len, const uint8_t *sealed,
                          size_t sealed_len, const char *passphrase, size_t passphrase_len)
{
    if (out == NULL || out_len == NULL || sealed == NULL || passphrase == NULL ||
        passphrase_len == 0)
        return MQE2E_ERR_INVALID_ARG;
    if (mqe2e_init() != MQE2E_OK) return MQE2E_ERR_CRYPTO;
    mqe2e__seal_header h;
    int rc = mqe2e__seal_parse(&h, sealed, sealed_len);
    if (rc != MQE2E_OK) return rc;
    /* A raw-key blob cannot have come from mqe2e_passphrase_seal(): the kdf
     * byte was changed, which is tampering. */
    if (h.kdf != MQE2E__SEAL_KDF_PASSPHRASE) return MQE2E_ERR_AUTH;
    uint8_t key[MQE2E__SEAL_KEY_BYTES];
    rc = mqe2e__seal_derive(key, passphrase, passphrase_len, h.salt, h.opslimit, h.memlimit);
    if (rc != MQE2E_OK) goto out;
    rc = mqe2e__unseal(out, out_len, &h, key, sealed, sealed_len);
out:
    sodium_memzero(key, sizeof key);
    return rc;
}
