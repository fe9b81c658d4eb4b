/*
 * Revocation list decoder: mqe2e_revocation_list_verify against the fixed
 * authority key. First byte even: the rest is an encoded RevocationList;
 * odd: the rest is a RevocationListBody that the harness signs and wraps,
 * so the checks behind the signature are reached.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "mqe2e/credential.h"
#include "mqe2e/error.h"

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

static void exercise(const mqe2e_revocation_list *l)
{
    FUZZ_ASSERT(mqe2e_revocation_list_version(l) >= 1);
    (void)mqe2e_revocation_list_issued_at(l);
    size_t n = mqe2e_revocation_list_count(l);
    mqe2e_revocation_entry prev = {0}, e;
    for (size_t i = 0; i < n; i++) {
        FUZZ_ASSERT(mqe2e_revocation_list_entry(l, i, &e) == MQE2E_OK);
        FUZZ_ASSERT(e.client_id != NULL && mqe2e_client_id_valid(e.client_id));
        /* Entries are documented as sorted by client id, then serial. */
        if (i > 0) {
            int c = strcmp(prev.client_id, e.client_id);
            FUZZ_ASSERT(c < 0 || (c == 0 && prev.serial <= e.serial));
        }
        FUZZ_ASSERT(mqe2e_revocation_list_is_revoked(l, e.client_id, e.serial));
        FUZZ_ASSERT(mqe2e_revocation_list_is_revoked(l, e.client_id, 0));
        prev = e;
    }
    FUZZ_ASSERT(mqe2e_revocation_list_entry(l, n, &e) == MQE2E_ERR_INVALID_ARG);
    (void)mqe2e_revocation_list_is_revoked(l, "device-1", 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mqe2e_revocation_list *l = NULL;
    uint8_t *wrapped = NULL;
    size_t wrapped_len = 0;
    int rc;

    if (size < 1) return 0;
    if ((data[0] & 1U) == 0) {
        rc = mqe2e_revocation_list_verify(&l, data + 1, size - 1, auth_pk);
    } else {
        FUZZ_ASSERT(fuzz_wrap_signed(&wrapped, &wrapped_len, MQE2E_REVOCATION_DOMAIN, data + 1,
                                     size - 1, auth_sk) == 0);
        rc = mqe2e_revocation_list_verify(&l, wrapped, wrapped_len, auth_pk);
    }
    if (rc == MQE2E_OK) {
        FUZZ_ASSERT(l != NULL);
        exercise(l);
    } else {
        FUZZ_ASSERT(l == NULL);
        FUZZ_ASSERT(rc == MQE2E_ERR_DECODE || rc == MQE2E_ERR_AUTH || rc == MQE2E_ERR_SUITE ||
                    rc == MQE2E_ERR_TOO_LARGE);
    }
    mqe2e_revocation_list_free(l);
    free(wrapped);
    return 0;
}
