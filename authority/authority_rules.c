/* The authority's storage rules (authority_rules.h). */
#include "authority_rules.h"

#include <sodium.h>
#include <string.h>

#include "mqe2e/error.h"

#define NONCE_BYTES crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define NAME_MAX_BYTES 255U

_Static_assert(AUTHORITY_SEALED_BYTES ==
                   NONCE_BYTES + AUTHORITY_SECRET_BYTES + crypto_aead_xchacha20poly1305_ietf_ABYTES,
               "sealed layout");

void authority_seal(uint8_t out[AUTHORITY_SEALED_BYTES], const uint8_t key[32],
                    const uint8_t secret[AUTHORITY_SECRET_BYTES], const uint8_t *ad, size_t ad_len)
{
    randombytes_buf(out, NONCE_BYTES);
    (void)crypto_aead_xchacha20poly1305_ietf_encrypt(
        out + NONCE_BYTES, NULL, secret, AUTHORITY_SECRET_BYTES, ad, ad_len, NULL, out, key);
}

int authority_unseal(uint8_t out[AUTHORITY_SECRET_BYTES], const uint8_t key[32],
                     const uint8_t *sealed, size_t sealed_len, const uint8_t *ad, size_t ad_len)
{
    if (sealed == NULL || sealed_len != AUTHORITY_SEALED_BYTES ||
        crypto_aead_xchacha20poly1305_ietf_decrypt(out, NULL, NULL, sealed + NONCE_BYTES,
                                                   AUTHORITY_SEALED_BYTES - NONCE_BYTES, ad, ad_len,
                                                   sealed, key) != 0) {
        sodium_memzero(out, AUTHORITY_SECRET_BYTES);
        return MQE2E_ERR_AUTH;
    }
    return MQE2E_OK;
}

/* table NUL, then the row key; the NUL keeps table and key from running together. */
static size_t ad_start(uint8_t ad[AUTHORITY_AD_MAX], const char *table)
{
    size_t n = strlen(table) + 1U;
    memcpy(ad, table, n);
    return n;
}

static size_t ad_name(uint8_t *ad, const char *name)
{
    size_t n = strnlen(name, NAME_MAX_BYTES);
    memcpy(ad, name, n);
    ad[n] = 0;
    return n + 1U;
}

size_t authority_ad_token(uint8_t ad[AUTHORITY_AD_MAX], const uint8_t token_id[16])
{
    size_t n = ad_start(ad, "tokens");
    memcpy(ad + n, token_id, 16);
    return n + 16U;
}

size_t authority_ad_epoch(uint8_t ad[AUTHORITY_AD_MAX], const char *group, uint32_t epoch)
{
    size_t n = ad_start(ad, "group_epochs");
    n += ad_name(ad + n, group);
    ad[n] = (uint8_t)(epoch >> 24);
    ad[n + 1] = (uint8_t)(epoch >> 16);
    ad[n + 2] = (uint8_t)(epoch >> 8);
    ad[n + 3] = (uint8_t)epoch;
    return n + 4U;
}

size_t authority_ad_tree_node(uint8_t ad[AUTHORITY_AD_MAX], const char *group,
                              const uint8_t tree_id[16], uint32_t node)
{
    size_t n = ad_start(ad, "tree_nodes");
    n += ad_name(ad + n, group);
    memcpy(ad + n, tree_id, 16);
    n += 16U;
    ad[n] = (uint8_t)(node >> 24);
    ad[n + 1] = (uint8_t)(node >> 16);
    ad[n + 2] = (uint8_t)(node >> 8);
    ad[n + 3] = (uint8_t)node;
    return n + 4U;
}

size_t authority_ad_meta(uint8_t ad[AUTHORITY_AD_MAX], const char *key)
{
    size_t n = ad_start(ad, "meta");
    return n + ad_name(ad + n, key);
}

int authority_next_epoch(uint32_t *next, uint64_t current)
{
    *next = 0;
    if (current == 0) return MQE2E_ERR_INVALID_ARG;
    if (current >= UINT32_MAX) return MQE2E_ERR_EXHAUSTED;
    *next = (uint32_t)(current + 1U);
    return MQE2E_OK;
}

int authority_sender_id_check(uint64_t taken)
{
    if (taken == 0) return MQE2E_ERR_IO;
    return taken > UINT32_MAX ? MQE2E_ERR_EXHAUSTED : MQE2E_OK;
}
