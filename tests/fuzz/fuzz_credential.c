/*
 * Credential decoder: mqe2e_credential_verify against the fixed authority key.
 *
 * The first input byte picks the mode:
 *   even: the rest is an encoded Credential, verified as received (outer
 *         decoder, canonical check, signature check);
 *   odd:  the rest is a CredentialBody; the harness signs it with the fixed
 *         authority key and wraps it, so the body decoder and every field
 *         check behind the signature are reached.
 * On success every accessor and the grant checks run over the handle.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "mqe2e/credential.h"
#include "mqe2e/error.h"
#include "mqe2e/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static uint8_t auth_pk[32];
static uint8_t auth_sk[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    FUZZ_ASSERT(mqe2e_init() == MQE2E_OK);
    fuzz_authority_keys(auth_pk, auth_sk);
    return 0;
}

static void exercise(const mqe2e_credential *c)
{
    const char *id = mqe2e_credential_client_id(c);
    const char *role = mqe2e_credential_role(c);
    FUZZ_ASSERT(id != NULL && mqe2e_client_id_valid(id));
    FUZZ_ASSERT(role != NULL);
    FUZZ_ASSERT(sodium_memcmp(mqe2e_credential_authority_public(c), auth_pk, 32) == 0);
    FUZZ_ASSERT(mqe2e_credential_sign_public(c) != NULL && mqe2e_credential_dh_public(c) != NULL);
    FUZZ_ASSERT(mqe2e_credential_serial(c) != 0);
    FUZZ_ASSERT(mqe2e_credential_expires_at(c) > mqe2e_credential_issued_at(c));
    FUZZ_ASSERT(mqe2e_credential_check_time(c, FUZZ_NOW) == MQE2E_OK);
    (void)mqe2e_credential_needs_renewal(c, FUZZ_NOW, MQE2E_CREDENTIAL_RENEW_NUM,
                                         MQE2E_CREDENTIAL_RENEW_DEN);
    size_t n = mqe2e_credential_grant_count(c);
    for (size_t i = 0; i < n; i++) {
        const char *f = mqe2e_credential_grant_filter(c, i);
        unsigned r = mqe2e_credential_grant_rights(c, i);
        FUZZ_ASSERT(f != NULL && mqe2e_topic_filter_valid(f));
        FUZZ_ASSERT(r != 0 && (r & ~MQE2E_RIGHT_ALL) == 0);
        /* A grant always covers its own filter. */
        FUZZ_ASSERT(mqe2e_credential_filter_allowed(c, f, r));
        /* A filter with no wildcard is also a topic name the grant allows. */
        if (mqe2e_topic_name_valid(f)) FUZZ_ASSERT(mqe2e_credential_allows(c, f, r));
    }
    FUZZ_ASSERT(mqe2e_credential_grant_filter(c, n) == NULL);
    FUZZ_ASSERT(mqe2e_credential_grant_rights(c, n) == 0);
    (void)mqe2e_credential_allows(c, FUZZ_TOPIC, MQE2E_RIGHT_PUBLISH);
    (void)mqe2e_credential_filter_allowed(c, "sensors/#", MQE2E_RIGHT_SUBSCRIBE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mqe2e_credential *c = NULL;
    uint8_t *wrapped = NULL;
    size_t wrapped_len = 0;
    int rc;

    if (size < 1) return 0;
    if ((data[0] & 1U) == 0) {
        rc = mqe2e_credential_verify(&c, data + 1, size - 1, auth_pk, FUZZ_NOW);
    } else {
        FUZZ_ASSERT(fuzz_wrap_signed(&wrapped, &wrapped_len, MQE2E_CREDENTIAL_DOMAIN, data + 1,
                                     size - 1, auth_sk) == 0);
        rc = mqe2e_credential_verify(&c, wrapped, wrapped_len, auth_pk, FUZZ_NOW);
    }
    if (rc == MQE2E_OK) {
        FUZZ_ASSERT(c != NULL);
        exercise(c);
    } else {
        FUZZ_ASSERT(c == NULL);
        FUZZ_ASSERT(rc == MQE2E_ERR_DECODE || rc == MQE2E_ERR_AUTH || rc == MQE2E_ERR_SUITE ||
                    rc == MQE2E_ERR_EXPIRED || rc == MQE2E_ERR_TOO_LARGE);
    }
    mqe2e_credential_free(c);
    free(wrapped);
    return 0;
}
