/*
 * Control-plane decoders (lib/include/mqe2e/control.h), with the fixed
 * authority (X25519 secret 1) and client (secret 2) keys, prefix "mqe2e".
 *
 * First byte % 4 picks the reader; the rest is one frame:
 *   0: mqe2e_control_frame_decode. Invariants: a decoded frame stays inside
 *      the input, and re-encodes to exactly the input (the decoder only
 *      accepts the canonical encoding).
 *   1: mqe2e_enroll_accept_read (authority reading ENROLL step 1), then
 *      mqe2e_enroll_accept_verify_mac with the fixed token.
 *   2: mqe2e_push_open (client reading a Push from the authority).
 *   3: mqe2e_hello_accept_read (authority reading HELLO step 1), then
 *      mqe2e_hello_accept_check_static with the fixed client key.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "mqe2e/control.h"
#include "mqe2e/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define PREFIX "mqe2e"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    FUZZ_ASSERT(mqe2e_init() == MQE2E_OK);
    return 0;
}

static void frame(const uint8_t *d, size_t n)
{
    mqe2e_control_frame f;
    if (mqe2e_control_frame_decode(&f, d, n) != MQE2E_OK) return;
    FUZZ_ASSERT(f.noise != NULL && f.noise_len >= 1);
    FUZZ_ASSERT(f.noise >= d && f.noise + f.noise_len <= d + n);
    FUZZ_ASSERT(mqe2e_control_frame_encoded_len(&f) == n);
    uint8_t *again = malloc(n);
    size_t again_len = 0;
    FUZZ_ASSERT(again != NULL);
    FUZZ_ASSERT(mqe2e_control_frame_encode(again, n, &again_len, &f) == MQE2E_OK);
    FUZZ_ASSERT(again_len == n && memcmp(again, d, n) == 0);
    free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t auth_sk[32], client_sk[32], auth_pk[32], client_pk[32], token[32];
    if (size < 1) return 0;
    const uint8_t *d = data + 1;
    size_t n = size - 1;
    fuzz_dh_secret(auth_sk, 1);
    fuzz_dh_secret(client_sk, 2);
    fuzz_dh_public(auth_pk, 1);
    fuzz_dh_public(client_pk, 2);

    switch (data[0] % 4U) {
    case 0:
        frame(d, n);
        break;
    case 1: {
        mqe2e_enroll_authority *st = NULL;
        mqe2e_enroll_request req;
        int rc = mqe2e_enroll_accept_read(&st, &req, auth_sk, PREFIX, d, n);
        if (rc == MQE2E_OK) {
            FUZZ_ASSERT(st != NULL && mqe2e_client_id_valid(req.client_id));
            fuzz_psk(token);
            (void)mqe2e_enroll_accept_verify_mac(st, token);
            sodium_memzero(token, sizeof token);
        } else {
            FUZZ_ASSERT(st == NULL);
        }
        mqe2e_enroll_authority_free(st);
        break;
    }
    case 2: {
        mqe2e_control_update u;
        int rc = mqe2e_push_open(&u, client_sk, auth_pk, PREFIX, "authority", d, n, 0);
        if (rc == MQE2E_OK) {
            FUZZ_ASSERT(u.push_seq >= 1 && u.n_bundles <= MQE2E_CONTROL_MAX_BUNDLES);
            mqe2e_control_update_wipe(&u);
        }
        break;
    }
    default: {
        mqe2e_hello_authority *st = NULL;
        mqe2e_hello_request req;
        int rc = mqe2e_hello_accept_read(&st, &req, auth_sk, PREFIX, d, n);
        if (rc == MQE2E_OK) {
            FUZZ_ASSERT(st != NULL && mqe2e_client_id_valid(req.client_id));
            (void)mqe2e_hello_accept_check_static(st, client_pk);
        } else {
            FUZZ_ASSERT(st == NULL);
        }
        mqe2e_hello_authority_free(st);
        break;
    }
    }
    sodium_memzero(auth_sk, sizeof auth_sk);
    sodium_memzero(client_sk, sizeof client_sk);
    return 0;
}
