/*
 * Key-tree decoders (PROTOCOL.md §10): first byte % 3 picks
 *   0: the rest is a TreeUpdate, opened against the fixed authority key;
 *   1: the rest is a TreeUpdate body the harness signs with the fixed
 *      authority key, to reach the checks behind the signature, and then
 *      applies to a member of the fixed tree;
 *   2: the rest is a TreePath, opened with the fixed tree id and leaf key.
 * Invariants: an opened update is exactly as long as its wrap count says,
 * its epochs follow, its view points into the input; a failed apply leaves
 * the member's epoch and epoch secret unchanged; an opened path has an
 * epoch of at least 1 and a leaf inside the tree.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "mqe2e/error.h"
#include "mqe2e/keytree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static uint8_t auth_pk[32];
static uint8_t auth_sk[64];
static uint8_t tree_id[MQE2E_KEYTREE_ID_BYTES];
static uint8_t leaf_key[MQE2E_KEYTREE_KEY_BYTES];
static uint8_t member_path[MQE2E_KEYTREE_PATH_BYTES(FUZZ_TREE_DEPTH)];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    FUZZ_ASSERT(mqe2e_init() == MQE2E_OK);
    fuzz_authority_keys(auth_pk, auth_sk);
    fuzz_tree_fixture(tree_id, leaf_key, member_path);
    return 0;
}

static void apply_to_member(const mqe2e_keytree_update *u)
{
    mqe2e_keytree_member *m = NULL;
    FUZZ_ASSERT(mqe2e_keytree_member_new(&m, tree_id, leaf_key, member_path,
                                         sizeof member_path) == MQE2E_OK);
    uint8_t before[32], after[32];
    FUZZ_ASSERT(mqe2e_keytree_member_epoch_secret(m, before) == MQE2E_OK);
    uint32_t e = mqe2e_keytree_member_epoch(m);
    unsigned unwraps = 0;
    int rc = mqe2e_keytree_member_apply(m, u, &unwraps);
    FUZZ_ASSERT(unwraps <= FUZZ_TREE_DEPTH);
    if (rc == MQE2E_OK) {
        FUZZ_ASSERT(mqe2e_keytree_member_epoch(m) == e + 1U);
    } else if (rc != MQE2E_ERR_TREE_REVOKED) {
        FUZZ_ASSERT(mqe2e_keytree_member_epoch(m) == e);
        FUZZ_ASSERT(mqe2e_keytree_member_epoch_secret(m, after) == MQE2E_OK);
        FUZZ_ASSERT(memcmp(before, after, 32) == 0);
    }
    mqe2e_keytree_member_free(m);
}

static void check_view(const mqe2e_keytree_update *u, const uint8_t *msg, size_t len)
{
    FUZZ_ASSERT(u->header == msg && u->wraps == msg + MQE2E_KEYTREE_UPDATE_HEADER);
    FUZZ_ASSERT(len == MQE2E_KEYTREE_UPDATE_HEADER + (size_t)u->n_wraps * MQE2E_KEYTREE_WRAP_BYTES +
                           MQE2E_KEYTREE_SIG_BYTES);
    FUZZ_ASSERT(u->to_epoch == u->from_epoch + 1U);
    FUZZ_ASSERT(u->depth >= 1 && u->depth <= MQE2E_KEYTREE_MAX_DEPTH);
    FUZZ_ASSERT(u->leaf < (1U << u->depth));
    FUZZ_ASSERT(u->kind == MQE2E_KEYTREE_JOIN ? u->n_wraps == 0
                                              : u->n_wraps >= 1 && u->n_wraps < 2U * u->depth);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    unsigned mode = data[0] % 3U;
    data++;
    size--;
    mqe2e_keytree_update u;
    if (mode == 0) {
        if (mqe2e_keytree_update_open(&u, data, size, auth_pk) == MQE2E_OK) {
            check_view(&u, data, size);
            apply_to_member(&u);
        } else {
            FUZZ_ASSERT(u.header == NULL);
        }
        return 0;
    }
    if (mode == 1) {
        if (size > MQE2E_KEYTREE_UPDATE_MAX(MQE2E_KEYTREE_MAX_DEPTH)) return 0;
        static const char label[] = "mqe2e tree update v1";
        uint8_t *msg = malloc(size + MQE2E_KEYTREE_SIG_BYTES + 1U);
        uint8_t *in = malloc(sizeof label - 1U + size + 1U);
        FUZZ_ASSERT(msg != NULL && in != NULL);
        if (size > 0) memcpy(msg, data, size);
        memcpy(in, label, sizeof label - 1U);
        if (size > 0) memcpy(in + sizeof label - 1U, data, size);
        crypto_sign_detached(msg + size, NULL, in, sizeof label - 1U + size, auth_sk);
        size_t len = size + MQE2E_KEYTREE_SIG_BYTES;
        if (mqe2e_keytree_update_open(&u, msg, len, auth_pk) == MQE2E_OK) {
            check_view(&u, msg, len);
            apply_to_member(&u);
        }
        free(in);
        free(msg);
        return 0;
    }
    mqe2e_keytree_member *m = NULL;
    if (mqe2e_keytree_member_new(&m, tree_id, leaf_key, data, size) == MQE2E_OK) {
        FUZZ_ASSERT(mqe2e_keytree_member_epoch(m) >= 1U);
        FUZZ_ASSERT(mqe2e_keytree_member_leaf(m) < (1U << MQE2E_KEYTREE_MAX_DEPTH));
        uint8_t s[32];
        FUZZ_ASSERT(mqe2e_keytree_member_epoch_secret(m, s) == MQE2E_OK);
        FUZZ_ASSERT(mqe2e_keytree_member_catch_up(m, data, size) == MQE2E_ERR_REPLAY);
    } else {
        FUZZ_ASSERT(m == NULL);
    }
    mqe2e_keytree_member_free(m);
    return 0;
}
