#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "internal_cred.h"
#include "mqe2e/credential.h"
#include "mqe2e/error.h"

/* The block size is kept in front of each block so free() can wipe it. The
 * header is as large as max_align_t so the returned pointer stays aligned. */
typedef union {
    max_align_t align;
    size_t size;
} wipe_hdr;

static void *wipe_alloc(void *data, size_t size)
{
    (void)data;
    if (size > SIZE_MAX - sizeof(wipe_hdr)) return NULL;
    wipe_hdr *h = malloc(sizeof(wipe_hdr) + size);
    if (h == NULL) return NULL;
    h->size = size;
    return h + 1;
}

static void wipe_free(void *data, void *p)
{
    (void)data;
    if (p == NULL) return;
    wipe_hdr *h = (wipe_hdr *)p - 1;
    sodium_memzero(p, h->size);
    free(h);
}

ProtobufCAllocator mqe2e__cred_allocator = {wipe_alloc, wipe_free, NULL};

bool mqe2e__cred_canonical(const ProtobufCMessage *m, const uint8_t *in, size_t len)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    if (n != len) return false;
    if (n == 0) return true;
    uint8_t *buf = malloc(n);
    if (buf == NULL) return false;
    bool ok = protobuf_c_message_pack(m, buf) == n && memcmp(buf, in, n) == 0;
    sodium_memzero(buf, n);
    free(buf);
    return ok;
}

bool mqe2e__cred_ed25519_public_ok(const uint8_t pk[32])
{
    uint8_t x[crypto_scalarmult_curve25519_BYTES];
    /* The conversion refuses non-canonical and small-order points. */
    bool ok = crypto_sign_ed25519_pk_to_curve25519(x, pk) == 0;
    sodium_memzero(x, sizeof x);
    return ok;
}

bool mqe2e__cred_x25519_public_ok(const uint8_t pk[32])
{
    /* Any clamped scalar maps every small-order point to the all-zero output,
     * which crypto_scalarmult() reports as failure. */
    static const uint8_t scalar[crypto_scalarmult_SCALARBYTES] = {
        0x40, 0x61, 0x6c, 0x67, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x20, 0x63,
        0x68, 0x65, 0x63, 0x6b, 0x21, 0x6d, 0x71, 0x65, 0x32, 0x65, 0x2f,
        0x76, 0x31, 0x2f, 0x6b, 0x65, 0x79, 0x2d, 0x63, 0x68, 0x6b};
    uint8_t q[crypto_scalarmult_BYTES];
    bool ok = crypto_scalarmult(q, scalar, pk) == 0;
    sodium_memzero(q, sizeof q);
    return ok;
}

int mqe2e__cred_secret_public(uint8_t pk[32], const uint8_t sk[64])
{
    uint8_t seed[crypto_sign_SEEDBYTES];
    uint8_t sk2[crypto_sign_SECRETKEYBYTES];
    uint8_t pk2[crypto_sign_PUBLICKEYBYTES];
    int rc = MQE2E_OK;

    if (crypto_sign_ed25519_sk_to_seed(seed, sk) != 0 ||
        crypto_sign_seed_keypair(pk2, sk2, seed) != 0) {
        rc = MQE2E_ERR_CRYPTO;
        goto out;
    }
    /* A secret whose stored public half disagrees with its seed would sign
     * credentials nobody can verify. */
    if (sodium_memcmp(pk2, sk + crypto_sign_SEEDBYTES, sizeof pk2) != 0) {
        rc = MQE2E_ERR_INVALID_ARG;
        goto out;
    }
    memcpy(pk, pk2, sizeof pk2);
out:
    sodium_memzero(seed, sizeof seed);
    sodium_memzero(sk2, sizeof sk2);
    sodium_memzero(pk2, sizeof pk2);
    return rc;
}

static uint8_t *domain_message(const char *domain, const uint8_t *body, size_t len, size_t *mlen)
{
    size_t dlen = strlen(domain);
    if (len > SIZE_MAX - dlen) return NULL;
    uint8_t *m = malloc(dlen + len + 1);
    if (m == NULL) return NULL;
    /* NOLINTNEXTLINE(bugprone-not-null-terminated-result): binary message, length in *mlen */
    memcpy(m, domain, dlen);
    if (len > 0) memcpy(m + dlen, body, len);
    *mlen = dlen + len;
    return m;
}

int mqe2e__cred_sign(uint8_t sig[64], const char *domain, const uint8_t *body, size_t len,
                     const uint8_t sk[64])
{
    size_t mlen = 0;
    uint8_t *m = domain_message(domain, body, len, &mlen);
    if (m == NULL) return MQE2E_ERR_NOMEM;
    int rc = crypto_sign_detached(sig, NULL, m, mlen, sk) == 0 ? MQE2E_OK : MQE2E_ERR_CRYPTO;
    free(m);
    return rc;
}

int mqe2e__cred_verify(const uint8_t sig[64], const char *domain, const uint8_t *body, size_t len,
                       const uint8_t pk[32])
{
    size_t mlen = 0;
    uint8_t *m = domain_message(domain, body, len, &mlen);
    if (m == NULL) return MQE2E_ERR_NOMEM;
    int rc = crypto_sign_verify_detached(sig, m, mlen, pk) == 0 ? MQE2E_OK : MQE2E_ERR_AUTH;
    free(m);
    return rc;
}

bool mqe2e_client_id_valid(const char *id)
{
    if (id == NULL) return false;
    size_t n = strnlen(id, MQE2E_ID_MAX + 1);
    if (n == 0 || n > MQE2E_ID_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (c < 0x21 || c > 0x7e || c == '/' || c == '+' || c == '#') return false;
    }
    return true;
}

bool mqe2e_control_prefix_valid(const char *prefix)
{
    if (prefix == NULL) return false;
    size_t n = strnlen(prefix, MQE2E_CONTROL_PREFIX_MAX + 1);
    if (n == 0 || n > MQE2E_CONTROL_PREFIX_MAX) return false;
    if (prefix[0] == '/' || prefix[n - 1] == '/') return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)prefix[i];
        if (c < 0x21 || c > 0x7e || c == '+' || c == '#') return false;
        if (c == '/' && prefix[i + 1] == '/') return false;
    }
    return true;
}

int mqe2e__cred_signer_public(uint8_t pk[32], const mqe2e__cred_signer *s)
{
    if (s->sk != NULL) return mqe2e__cred_secret_public(pk, s->sk);
    if (s->pk == NULL || s->fn == NULL || !mqe2e__cred_ed25519_public_ok(s->pk))
        return MQE2E_ERR_INVALID_ARG;
    memcpy(pk, s->pk, 32);
    return MQE2E_OK;
}

int mqe2e__cred_sign_by(uint8_t sig[64], const char *domain, const uint8_t *body, size_t len,
                        const mqe2e__cred_signer *s)
{
    if (s->sk != NULL) return mqe2e__cred_sign(sig, domain, body, len, s->sk);
    size_t mlen = 0;
    uint8_t *m = domain_message(domain, body, len, &mlen);
    if (m == NULL) return MQE2E_ERR_NOMEM;
    int rc = MQE2E_OK;
    if (s->fn(s->ctx, sig, m, mlen) != 0)
        rc = MQE2E_ERR_CRYPTO;
    else if (crypto_sign_verify_detached(sig, m, mlen, s->pk) != 0)
        /* The callback holds another key than the one written into the body. */
        rc = MQE2E_ERR_INVALID_ARG;
    free(m);
    return rc;
}
