/*
 * Envelope decoder: mqe2e_envelope_parse on raw bytes, then
 * mqe2e_envelope_open with the sender key derived from the fixed group
 * secret for whatever header was parsed, so inputs made by seal (the seeds)
 * reach the AEAD path and mutations of them exercise every tamper branch.
 *
 * Signed-mode envelopes (mode 3) are verified against the fixed signer key
 * and opened with mqe2e_envelope_open_signed(); the same envelope must never
 * verify under another signer key.
 *
 * Invariants: a parsed view stays inside the input; an envelope that opens
 * re-seals (seal is deterministic) to an envelope with the same header and
 * the same ciphertext and tag, and never opens under another topic. The
 * bytes themselves may differ: protobuf fields may come in any order and
 * parse accepts that (every header value is bound by the AD, not the order).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "mqe2e/envelope.h"
#include "mqe2e/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    FUZZ_ASSERT(mqe2e_init() == MQE2E_OK);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mqe2e_envelope_view view;
    mqe2e_sender_key key;
    uint8_t secret[32];
    uint8_t *pt = NULL, *again = NULL;
    size_t pt_len = 0, again_len = 0;

    int rc = mqe2e_envelope_parse(&view, data, size);
    if (rc != MQE2E_OK) return 0;

    FUZZ_ASSERT(view.ciphertext != NULL && view.ciphertext_len >= MQE2E_TAG_BYTES);
    FUZZ_ASSERT(view.ciphertext >= data && view.ciphertext + view.ciphertext_len <= data + size);
    if (view.signature != NULL)
        FUZZ_ASSERT(view.signature >= data && view.signature + view.signature_len <= data + size);

    fuzz_group_secret(secret);
    rc = mqe2e_sender_key_derive(&key, secret, FUZZ_GROUP, view.header.epoch,
                                 view.header.sender_id);
    FUZZ_ASSERT(rc == MQE2E_OK);

    size_t cap = view.ciphertext_len - MQE2E_TAG_BYTES;
    pt = malloc(cap > 0 ? cap : 1U);
    FUZZ_ASSERT(pt != NULL);
    const int is_signed = view.header.mode == MQE2E_MODE_SIGNED_GROUP;
    uint8_t signer_pk[32], signer_sk[64];
    fuzz_signer_keys(signer_pk, signer_sk);
    sodium_memzero(signer_sk, sizeof signer_sk);
    if (is_signed) {
        rc = mqe2e_envelope_open_signed(pt, cap, &pt_len, &key, signer_pk, FUZZ_TOPIC, FUZZ_GROUP,
                                        &view);
        if (rc == MQE2E_OK) {
            /* Verified and opened: a different signer key never verifies it. */
            uint8_t other_pk[32], other_sk[64];
            crypto_sign_keypair(other_pk, other_sk);
            sodium_memzero(other_sk, sizeof other_sk);
            FUZZ_ASSERT(mqe2e_envelope_verify(other_pk, FUZZ_TOPIC, FUZZ_GROUP, &view) ==
                        MQE2E_ERR_AUTH);
            FUZZ_ASSERT(mqe2e_envelope_verify(signer_pk, "sensors/t2", FUZZ_GROUP, &view) ==
                        MQE2E_ERR_AUTH);
            FUZZ_ASSERT(pt_len == cap);
        } else {
            FUZZ_ASSERT(rc == MQE2E_ERR_AUTH || rc == MQE2E_ERR_SUITE ||
                        rc == MQE2E_ERR_TOO_LARGE || rc == MQE2E_ERR_INVALID_ARG);
        }
        goto out;
    }
    rc = mqe2e_envelope_open(pt, cap, &pt_len, &key, FUZZ_TOPIC, FUZZ_GROUP, &view);
    if (rc == MQE2E_OK) {
        FUZZ_ASSERT(pt_len == cap);
        size_t bound = mqe2e_envelope_sealed_bound(pt_len);
        again = malloc(bound);
        FUZZ_ASSERT(again != NULL);
        rc = mqe2e_envelope_seal(again, bound, &again_len, &key, FUZZ_TOPIC, FUZZ_GROUP,
                                 &view.header, pt, pt_len);
        FUZZ_ASSERT(rc == MQE2E_OK);
        mqe2e_envelope_view v2;
        FUZZ_ASSERT(mqe2e_envelope_parse(&v2, again, again_len) == MQE2E_OK);
        FUZZ_ASSERT(again_len == size);
        FUZZ_ASSERT(v2.header.mode == view.header.mode && v2.header.epoch == view.header.epoch &&
                    v2.header.sender_id == view.header.sender_id &&
                    v2.header.seq == view.header.seq);
        FUZZ_ASSERT(v2.ciphertext_len == view.ciphertext_len &&
                    memcmp(v2.ciphertext, view.ciphertext, view.ciphertext_len) == 0);
    } else {
        FUZZ_ASSERT(rc == MQE2E_ERR_AUTH || rc == MQE2E_ERR_SUITE || rc == MQE2E_ERR_TOO_LARGE);
    }
    /* The same envelope on another topic must never open. */
    if (rc == MQE2E_OK) {
        size_t other_len = 0;
        FUZZ_ASSERT(mqe2e_envelope_open(pt, cap, &other_len, &key, "sensors/t2", FUZZ_GROUP,
                                        &view) == MQE2E_ERR_AUTH);
    }

out:
    mqe2e_sender_key_wipe(&key);
    sodium_memzero(secret, sizeof secret);
    if (pt != NULL) sodium_memzero(pt, cap > 0 ? cap : 1U);
    free(pt);
    free(again);
    return 0;
}
