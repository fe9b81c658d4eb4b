/* HKDF-SHA256 (RFC 5869) on libsodium's HMAC-SHA256 (1.0.18 has no crypto_kdf_hkdf). */
#include "mqe2e/hkdf.h"

#include <sodium.h>
#include <string.h>

#include "mqe2e/error.h"

int mqe2e_hkdf_extract(uint8_t prk[MQE2E_HKDF_PRK_BYTES], const uint8_t *salt, size_t salt_len,
                       const uint8_t *ikm, size_t ikm_len)
{
    static const uint8_t zero_salt[MQE2E_HKDF_PRK_BYTES] = {0};
    crypto_auth_hmacsha256_state st;

    if (prk == NULL || (salt == NULL && salt_len != 0) || (ikm == NULL && ikm_len != 0)) {
        return MQE2E_ERR_INVALID_ARG;
    }
    /* RFC 5869 2.2: an absent salt is HashLen zero bytes. */
    if (salt_len == 0) {
        salt = zero_salt;
        salt_len = sizeof zero_salt;
    }
    crypto_auth_hmacsha256_init(&st, salt, salt_len);
    if (ikm_len != 0) {
        crypto_auth_hmacsha256_update(&st, ikm, ikm_len);
    }
    crypto_auth_hmacsha256_final(&st, prk);
    sodium_memzero(&st, sizeof st);
    return MQE2E_OK;
}

int mqe2e_hkdf_expand(uint8_t *out, size_t out_len, const uint8_t prk[MQE2E_HKDF_PRK_BYTES],
                      const uint8_t *info, size_t info_len)
{
    crypto_auth_hmacsha256_state st;
    uint8_t t[crypto_auth_hmacsha256_BYTES];
    size_t done = 0;
    uint8_t counter = 1;

    if (out == NULL || prk == NULL || (info == NULL && info_len != 0) || out_len == 0 ||
        out_len > MQE2E_HKDF_MAX_OUTPUT_BYTES) {
        return MQE2E_ERR_INVALID_ARG;
    }
    while (done < out_len) {
        size_t n = out_len - done;
        if (n > sizeof t) {
            n = sizeof t;
        }
        crypto_auth_hmacsha256_init(&st, prk, MQE2E_HKDF_PRK_BYTES);
        /* T(0) is empty; afterwards chain the previous block. */
        if (counter > 1) {
            crypto_auth_hmacsha256_update(&st, t, sizeof t);
        }
        if (info_len != 0) {
            crypto_auth_hmacsha256_update(&st, info, info_len);
        }
        crypto_auth_hmacsha256_update(&st, &counter, 1);
        crypto_auth_hmacsha256_final(&st, t);
        memcpy(out + done, t, n);
        done += n;
        counter++; /* at most 255 blocks thanks to the length check */
    }
    sodium_memzero(&st, sizeof st);
    sodium_memzero(t, sizeof t);
    return MQE2E_OK;
}

int mqe2e_hkdf(uint8_t *out, size_t out_len, const uint8_t *salt, size_t salt_len,
               const uint8_t *ikm, size_t ikm_len, const uint8_t *info, size_t info_len)
{
    uint8_t prk[MQE2E_HKDF_PRK_BYTES];
    int rc;

    if (out == NULL || out_len == 0 || out_len > MQE2E_HKDF_MAX_OUTPUT_BYTES) {
        return MQE2E_ERR_INVALID_ARG;
    }
    rc = mqe2e_hkdf_extract(prk, salt, salt_len, ikm, ikm_len);
    if (rc == MQE2E_OK) {
        rc = mqe2e_hkdf_expand(out, out_len, prk, info, info_len);
    }
    sodium_memzero(prk, sizeof prk);
    return rc;
}
