/* The authority's storage rules (authority/authority_rules.h): sealing of
 * secret columns bound to their row, and the numbering of epochs and sender
 * ids that nonce uniqueness depends on. Every store applies these. */
#include <criterion/criterion.h>
#include <sodium.h>
#include <string.h>

#include "authority_rules.h"
#include "mqe2e/error.h"

static uint8_t key[32], other_key[32], secret[AUTHORITY_SECRET_BYTES];

static void setup(void)
{
    cr_assert(sodium_init() >= 0);
    memset(key, 0x11, sizeof key);
    memset(other_key, 0x22, sizeof other_key);
    for (size_t i = 0; i < sizeof secret; i++)
        secret[i] = (uint8_t)(0xA0 + i);
}

TestSuite(authority_rules, .init = setup);

Test(authority_rules, associated_data_names_table_and_row)
{
    uint8_t ad[AUTHORITY_AD_MAX];
    static const uint8_t want_epoch[] = {'g', 'r', 'o', 'u', 'p', '_', 'e', 'p', 'o', 'c', 'h',
                                         's', 0,   'f', 'l', 't', 0,   1,   2,   3,   4};
    size_t n = authority_ad_epoch(ad, "flt", 0x01020304U);
    cr_assert_eq(n, sizeof want_epoch);
    cr_assert_arr_eq(ad, want_epoch, n, "stored files depend on these exact bytes");
    uint8_t tid[16];
    memset(tid, 0x5A, sizeof tid);
    n = authority_ad_token(ad, tid);
    cr_assert_eq(n, 7U + 16U);
    cr_assert_arr_eq(ad, "tokens\0", 7);
    cr_assert_arr_eq(ad + 7, tid, 16);
    n = authority_ad_meta(ad, "key_check");
    cr_assert_eq(n, 5U + 10U);
    cr_assert_arr_eq(ad, "meta\0key_check\0", n);
    /* The longest name still fits. */
    char name[256];
    memset(name, 'x', 255);
    name[255] = '\0';
    cr_assert_leq(authority_ad_epoch(ad, name, 1), AUTHORITY_AD_MAX);
}

Test(authority_rules, sealed_value_opens_only_in_its_own_row_with_its_key)
{
    uint8_t ad[AUTHORITY_AD_MAX], ad2[AUTHORITY_AD_MAX];
    uint8_t sealed[AUTHORITY_SEALED_BYTES], again[AUTHORITY_SEALED_BYTES];
    uint8_t out[AUTHORITY_SECRET_BYTES];
    size_t n = authority_ad_epoch(ad, "fleet", 7);
    authority_seal(sealed, key, secret, ad, n);
    cr_assert_eq(authority_unseal(out, key, sealed, sizeof sealed, ad, n), MQE2E_OK);
    cr_assert_arr_eq(out, secret, sizeof secret);
    cr_assert_arr_neq(sealed + 24, secret, sizeof secret, "the column holds no plain secret");
    authority_seal(again, key, secret, ad, n);
    cr_assert_arr_neq(again, sealed, sizeof sealed, "a fresh nonce every time");

    /* Another key, epoch, group, table: no. The output is wiped each time. */
    cr_assert_eq(authority_unseal(out, other_key, sealed, sizeof sealed, ad, n), MQE2E_ERR_AUTH);
    cr_assert(sodium_is_zero(out, sizeof out));
    size_t n2 = authority_ad_epoch(ad2, "fleet", 8);
    cr_assert_eq(authority_unseal(out, key, sealed, sizeof sealed, ad2, n2), MQE2E_ERR_AUTH);
    n2 = authority_ad_epoch(ad2, "fleeT", 7);
    cr_assert_eq(authority_unseal(out, key, sealed, sizeof sealed, ad2, n2), MQE2E_ERR_AUTH);
    n2 = authority_ad_meta(ad2, "fleet");
    cr_assert_eq(authority_unseal(out, key, sealed, sizeof sealed, ad2, n2), MQE2E_ERR_AUTH);
    /* Truncated, extended or flipped. */
    cr_assert_eq(authority_unseal(out, key, sealed, sizeof sealed - 1U, ad, n), MQE2E_ERR_AUTH);
    cr_assert_eq(authority_unseal(out, key, NULL, 0, ad, n), MQE2E_ERR_AUTH);
    for (size_t i = 0; i < sizeof sealed; i++) {
        sealed[i] ^= 0x01;
        cr_assert_eq(authority_unseal(out, key, sealed, sizeof sealed, ad, n), MQE2E_ERR_AUTH,
                     "byte %zu flipped", i);
        sealed[i] ^= 0x01;
    }
    cr_assert(sodium_is_zero(out, sizeof out));
}

Test(authority_rules, epochs_count_up_by_one_and_end)
{
    uint32_t next = 99;
    cr_assert_eq(authority_next_epoch(&next, 1), MQE2E_OK);
    cr_assert_eq(next, 2);
    cr_assert_eq(authority_next_epoch(&next, UINT32_MAX - 1U), MQE2E_OK);
    cr_assert_eq(next, UINT32_MAX);
    cr_assert_eq(authority_next_epoch(&next, UINT32_MAX), MQE2E_ERR_EXHAUSTED,
                 "no epoch wraps to a number already used");
    cr_assert_eq(next, 0);
    cr_assert_eq(authority_next_epoch(&next, (uint64_t)UINT32_MAX + 5U), MQE2E_ERR_EXHAUSTED);
    cr_assert_eq(authority_next_epoch(&next, 0), MQE2E_ERR_INVALID_ARG, "groups start at 1");
}

Test(authority_rules, sender_ids_fit_and_never_zero)
{
    cr_assert_eq(authority_sender_id_check(1), MQE2E_OK);
    cr_assert_eq(authority_sender_id_check(UINT32_MAX), MQE2E_OK);
    cr_assert_eq(authority_sender_id_check((uint64_t)UINT32_MAX + 1U), MQE2E_ERR_EXHAUSTED,
                 "a 33-bit id would be truncated onto an id in use");
    cr_assert_eq(authority_sender_id_check(0), MQE2E_ERR_IO);
}
