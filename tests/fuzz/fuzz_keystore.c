/*
 * Keystore decoders.
 *
 * First byte even: the rest is the clear keystore state blob, preloaded into
 * an mqe2e_storage_memory backend and opened with mqe2e_keystore_open (the
 * blob the encrypted file backend yields after unsealing). On success the
 * accessors run over every group and the store is closed (which may store
 * it back into memory).
 * First byte odd: the rest is a passphrase-sealed group bundle, imported
 * with mqe2e_keystore_group_import into a keystore opened from a fixed
 * state (built once at start-up), under the same Argon2id cost cap as the
 * sealed-blob target.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "internal_keystore.h"
#include "mqe2e/error.h"
#include "mqe2e/keystore.h"
#include "mqe2e/policy.h"
#include "mqe2e/storage.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static uint8_t *base_state;
static size_t base_state_len;

static void release_base(void)
{
    free(base_state);
    base_state = NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    mqe2e_storage st;
    mqe2e_keystore *ks = NULL;
    uint8_t secret[32];

    FUZZ_ASSERT(mqe2e_init() == MQE2E_OK);
    FUZZ_ASSERT(mqe2e_storage_memory(&st) == MQE2E_OK);
    mqe2e_storage view = st;
    FUZZ_ASSERT(mqe2e_keystore_create(&ks, st, "fuzz-device", 7) == MQE2E_OK);
    fuzz_group_secret(secret);
    FUZZ_ASSERT(mqe2e_keystore_group_add_epoch(ks, FUZZ_GROUP, "sensors/#", 1, secret,
                                               FUZZ_NOW) == MQE2E_OK);
    sodium_memzero(secret, sizeof secret);
    FUZZ_ASSERT(mqe2e_keystore_flush(ks) == MQE2E_OK);
    FUZZ_ASSERT(view.load(view.ctx, &base_state, &base_state_len) == MQE2E_OK);
    mqe2e_keystore_close(ks);
    atexit(release_base);
    return 0;
}

static int open_from(mqe2e_keystore **ks, const uint8_t *blob, size_t len)
{
    mqe2e_storage st;
    FUZZ_ASSERT(mqe2e_storage_memory(&st) == MQE2E_OK);
    FUZZ_ASSERT(st.store(st.ctx, blob, len) == MQE2E_OK);
    return mqe2e_keystore_open(ks, st);
}

static void exercise(mqe2e_keystore *ks)
{
    uint8_t sign_pk[32], dh_pk[32], secret[32];
    const char *id = mqe2e_keystore_client_id(ks);
    FUZZ_ASSERT(id != NULL);
    FUZZ_ASSERT(mqe2e_keystore_sender_id(ks) != 0);
    FUZZ_ASSERT(mqe2e_keystore_identity_public(ks, sign_pk, dh_pk) == MQE2E_OK);
    size_t n = mqe2e_keystore_group_count(ks);
    for (size_t i = 0; i < n; i++) {
        const char *g = mqe2e_keystore_group_name(ks, i);
        FUZZ_ASSERT(g != NULL);
        const char *f = mqe2e_keystore_group_filter(ks, g);
        FUZZ_ASSERT(f != NULL && mqe2e_topic_filter_valid(f));
        uint32_t epoch = 0, sender = 0;
        uint64_t retired = 0;
        if (mqe2e_keystore_group_current_epoch(ks, g, &epoch) == MQE2E_OK)
            FUZZ_ASSERT(mqe2e_keystore_group_secret(ks, g, epoch, secret, &retired) == MQE2E_OK);
        (void)mqe2e_keystore_group_sender_id(ks, g, &sender);
        mqe2e_replay_window w;
        (void)mqe2e_keystore_replay_load(ks, g, epoch, sender, &w);
    }
    FUZZ_ASSERT(mqe2e_keystore_group_name(ks, n) == NULL);
    sodium_memzero(secret, sizeof secret);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mqe2e_keystore *ks = NULL;
    int rc;

    if (size < 1) return 0;
    if ((data[0] & 1U) == 0) {
        rc = open_from(&ks, data + 1, size - 1);
        if (rc == MQE2E_OK) {
            FUZZ_ASSERT(ks != NULL);
            exercise(ks);
            mqe2e_keystore_close(ks);
        } else {
            FUZZ_ASSERT(ks == NULL);
            FUZZ_ASSERT(rc == MQE2E_ERR_DECODE || rc == MQE2E_ERR_SUITE || rc == MQE2E_ERR_EXISTS);
        }
        return 0;
    }

    mqe2e__seal_header h;
    if (mqe2e__seal_parse(&h, data + 1, size - 1) == MQE2E_OK &&
        h.kdf == MQE2E__SEAL_KDF_PASSPHRASE &&
        (h.opslimit > FUZZ_MAX_OPSLIMIT || h.memlimit > FUZZ_MAX_MEMLIMIT))
        return 0;
    FUZZ_ASSERT(open_from(&ks, base_state, base_state_len) == MQE2E_OK);
    char group[MQE2E_GROUP_ID_MAX_BYTES + 1];
    size_t before = mqe2e_keystore_group_count(ks);
    rc = mqe2e_keystore_group_import(ks, data + 1, size - 1, FUZZ_PASSPHRASE,
                                     strlen(FUZZ_PASSPHRASE), FUZZ_NOW, group, sizeof group);
    if (rc == MQE2E_OK) {
        FUZZ_ASSERT(mqe2e_keystore_group_filter(ks, group) != NULL);
        exercise(ks);
    } else {
        FUZZ_ASSERT(mqe2e_keystore_group_count(ks) == before);
    }
    mqe2e_keystore_close(ks);
    return 0;
}
