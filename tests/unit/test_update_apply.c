/* mqe2e_control_update_apply: the one device-side "apply an update" of the
 * session and `mqe2e enroll` (docs/PROTOCOL.md 9.1-9.5). In memory: a
 * keystore, an authority's keys, updates built by hand. */
#include <criterion/criterion.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "mqe2e/control.h"
#include "mqe2e/credential.h"
#include "mqe2e/error.h"
#include "mqe2e/keystore.h"
#include "mqe2e/storage.h"

#define NOW 1700000000u

static uint8_t auth_pk[32], auth_sk[64];
static mqe2e_keystore *ks;

typedef struct seen {
    int n[8];
    int last_rc[8];
    int new_group;
    uint64_t version, held;
} seen;

static void observe(void *ctx, const mqe2e_update_event *ev)
{
    seen *s = ctx;
    cr_assert(ev->kind >= 1 && ev->kind <= 6);
    cr_assert_not_null(ev->update);
    s->n[ev->kind]++;
    s->last_rc[ev->kind] = ev->rc;
    if (ev->kind == MQE2E_UPDATE_BUNDLE && ev->new_group) s->new_group++;
    if (ev->kind == MQE2E_UPDATE_REVOCATIONS) {
        s->version = ev->version;
        s->held = ev->held_version;
    }
}

static void setup(void)
{
    mqe2e_storage st;
    cr_assert_eq(mqe2e_init(), MQE2E_OK);
    crypto_sign_keypair(auth_pk, auth_sk);
    cr_assert_eq(mqe2e_storage_memory(&st), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_create(&ks, st, "dev-1", 0), MQE2E_OK);
}

static void teardown(void)
{
    mqe2e_keystore_close(ks);
    sodium_memzero(auth_sk, sizeof auth_sk);
}

TestSuite(update_apply, .init = setup, .fini = teardown);

static mqe2e_key_bundle bundle(const char *group, uint32_t epoch, uint64_t retired_at,
                               uint32_t grace)
{
    mqe2e_key_bundle b;
    memset(&b, 0, sizeof b);
    snprintf(b.group, sizeof b.group, "%s", group);
    snprintf(b.topic_filter, sizeof b.topic_filter, "%s/#", group);
    b.epoch = epoch;
    memset(b.secret, (int)epoch, sizeof b.secret);
    b.created_at = NOW - 1000U;
    b.retired_at = retired_at;
    b.grace_seconds = grace;
    b.sender_id = 7;
    return b;
}

static uint8_t *revocations(size_t *len, uint64_t version)
{
    mqe2e_revocation_entry e = {"ghost", 0, NOW};
    uint8_t *out = NULL;
    cr_assert_eq(mqe2e_revocation_list_sign(&out, len, auth_sk, version, NOW, &e, 1), MQE2E_OK);
    return out;
}

static uint64_t held_version(void)
{
    const uint8_t *l;
    size_t n;
    uint64_t v = 0;
    if (mqe2e_keystore_revocation_list(ks, &l, &n, &v) != MQE2E_OK) return 0;
    return v;
}

Test(update_apply, bundles_then_removal)
{
    mqe2e_key_bundle b[2] = {bundle("a", 1, 0, 0), bundle("b", 3, 0, 0)};
    mqe2e_control_update u;
    seen s;
    uint32_t e = 0;
    memset(&u, 0, sizeof u);
    memset(&s, 0, sizeof s);
    u.bundles = b;
    u.n_bundles = 2;
    cr_assert_eq(mqe2e_control_update_apply(ks, &u, auth_pk, NOW, 0, observe, &s), MQE2E_OK);
    cr_assert_eq(s.n[MQE2E_UPDATE_BUNDLE], 2);
    cr_assert_eq(s.new_group, 2);
    cr_assert_eq(mqe2e_keystore_group_current_epoch(ks, "b", &e), MQE2E_OK);
    cr_assert_eq(e, 3);

    mqe2e_group_name gone[2];
    snprintf(gone[0].name, sizeof gone[0].name, "a");
    snprintf(gone[1].name, sizeof gone[1].name, "never-held");
    memset(&u, 0, sizeof u);
    memset(&s, 0, sizeof s);
    u.removed_groups = gone;
    u.n_removed_groups = 2;
    u.push_seq = 5;
    cr_assert_eq(
        mqe2e_control_update_apply(ks, &u, auth_pk, NOW, MQE2E_UPDATE_FROM_PUSH, observe, &s),
        MQE2E_OK, "a group not held is no failure");
    cr_assert_eq(s.n[MQE2E_UPDATE_GROUP_REMOVED], 2);
    cr_assert_null(mqe2e_keystore_group_filter(ks, "a"), "left");
    cr_assert_not_null(mqe2e_keystore_group_filter(ks, "b"));
    cr_assert_eq(mqe2e_keystore_push_seq(ks), 0, "a push's push_seq is the caller's to store");
    u.n_removed_groups = 0;
    cr_assert_eq(mqe2e_control_update_apply(ks, &u, auth_pk, NOW, 0, NULL, NULL), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_push_seq(ks), 5, "a reply's push_seq is stored");
    memset(b, 0, sizeof b);
}

Test(update_apply, a_refused_bundle_does_not_stop_the_others)
{
    mqe2e_key_bundle b[2] = {bundle("a", 1, 0, 0), bundle("b", 1, 0, 0)};
    mqe2e_control_update u;
    seen s;
    b[0].sender_id = 0; /* refused by the keystore */
    memset(&u, 0, sizeof u);
    memset(&s, 0, sizeof s);
    u.bundles = b;
    u.n_bundles = 2;
    cr_assert_eq(mqe2e_control_update_apply(ks, &u, auth_pk, NOW, 0, observe, &s),
                 MQE2E_ERR_INVALID_ARG);
    cr_assert_null(mqe2e_keystore_group_filter(ks, "a"));
    cr_assert_not_null(mqe2e_keystore_group_filter(ks, "b"), "the next bundle still applied");
    memset(b, 0, sizeof b);
}

Test(update_apply, an_ended_cut_grace_drops_the_retired_epoch)
{
    /* Epoch 1 retired 100 s ago with its grace cut to 10 s; epoch 2 retired
     * 5 s ago with 10 s (not ended yet: the caller's timer); epoch 3 current. */
    mqe2e_key_bundle b[3] = {bundle("g", 1, NOW - 100U, 10), bundle("g", 2, NOW - 5U, 10),
                             bundle("g", 3, 0, 0)};
    mqe2e_control_update u;
    seen s;
    uint8_t secret[32];
    memset(&u, 0, sizeof u);
    memset(&s, 0, sizeof s);
    u.bundles = b;
    u.n_bundles = 3;
    cr_assert_eq(mqe2e_control_update_apply(ks, &u, auth_pk, NOW, 0, observe, &s), MQE2E_OK);
    cr_assert_eq(s.n[MQE2E_UPDATE_EPOCHS_PRUNED], 1);
    cr_assert_eq(mqe2e_keystore_group_secret(ks, "g", 1, secret, NULL), MQE2E_ERR_NOT_FOUND,
                 "dropped although it was applied as current by the same update");
    cr_assert_eq(mqe2e_keystore_group_secret(ks, "g", 2, secret, NULL), MQE2E_OK,
                 "its grace has not ended");
    cr_assert_eq(mqe2e_keystore_group_secret(ks, "g", 3, secret, NULL), MQE2E_OK);
    sodium_memzero(secret, sizeof secret);
    memset(b, 0, sizeof b);
}

/* A retired epoch whose cut grace has not ended yet, learnt with its
 * successor from one update (a member that enrolled while it was current and
 * sends its first HELLO after the revocation): the keystore must record the
 * authority's retirement time, not the time the successor arrived, so that
 * the caller's timer (cutoff retired_at + 1 when the grace ends) drops it.
 * Before: the keystore kept "retired when epoch 2 came" (3 s later here) and
 * the prune at the end of the grace dropped nothing. */
Test(update_apply, a_running_cut_grace_keeps_the_authority_retirement_time)
{
    mqe2e_key_bundle b[2] = {bundle("g", 1, NOW - 3U, 10), bundle("g", 2, 0, 0)};
    mqe2e_control_update u;
    seen s;
    uint8_t secret[32];
    memset(&u, 0, sizeof u);
    memset(&s, 0, sizeof s);
    u.bundles = b;
    u.n_bundles = 2;
    cr_assert_eq(mqe2e_control_update_apply(ks, &u, auth_pk, NOW, 0, observe, &s), MQE2E_OK);
    cr_assert_eq(s.n[MQE2E_UPDATE_EPOCHS_PRUNED], 0, "its grace has not ended");
    cr_assert_eq(mqe2e_keystore_group_secret(ks, "g", 1, secret, NULL), MQE2E_OK);
    /* What the session's prune timer does when the grace ends. */
    cr_assert_eq(mqe2e_keystore_group_prune(ks, "g", NOW - 3U + 1U), 1,
                 "the epoch kept a later retirement time than the authority's");
    cr_assert_eq(mqe2e_keystore_group_secret(ks, "g", 1, secret, NULL), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_keystore_group_secret(ks, "g", 2, secret, NULL), MQE2E_OK);
    sodium_memzero(secret, sizeof secret);
    memset(b, 0, sizeof b);
}

Test(update_apply, revocation_list_never_goes_back)
{
    size_t l2, l1;
    uint8_t *rl2 = revocations(&l2, 2), *rl1 = revocations(&l1, 1);
    mqe2e_control_update u;
    seen s;
    memset(&u, 0, sizeof u);
    memset(&s, 0, sizeof s);
    u.revocation_list = rl2;
    u.revocation_list_len = l2;
    cr_assert_eq(mqe2e_control_update_apply(ks, &u, auth_pk, NOW, 0, observe, &s), MQE2E_OK);
    cr_assert_eq(held_version(), 2);
    cr_assert_eq(s.last_rc[MQE2E_UPDATE_REVOCATIONS], MQE2E_OK);

    u.revocation_list = rl1;
    u.revocation_list_len = l1;
    cr_assert_eq(mqe2e_control_update_apply(ks, &u, auth_pk, NOW, 0, observe, &s), MQE2E_OK,
                 "the rest of an authenticated update stands");
    cr_assert_eq(s.last_rc[MQE2E_UPDATE_REVOCATIONS], MQE2E_ERR_REPLAY);
    cr_assert_eq(s.version, 1);
    cr_assert_eq(s.held, 2);
    cr_assert_eq(held_version(), 2, "the older list is refused");

    /* Signed by someone else: refused, whatever its version. */
    uint8_t other_pk[32], other_sk[64];
    crypto_sign_keypair(other_pk, other_sk);
    u.revocation_list = rl2;
    cr_assert_eq(mqe2e_control_update_apply(ks, &u, other_pk, NOW, 0, observe, &s), MQE2E_OK);
    cr_assert_neq(s.last_rc[MQE2E_UPDATE_REVOCATIONS], MQE2E_OK);
    sodium_memzero(other_sk, sizeof other_sk);
    free(rl1);
    free(rl2);
}

Test(update_apply, credential_must_name_this_keystore)
{
    mqe2e_credential_request r;
    mqe2e_grant g = {"#", MQE2E_RIGHT_ALL};
    uint8_t sign_pk[32], dh_pk[32];
    uint8_t *mine = NULL, *other = NULL;
    size_t mine_len = 0, other_len = 0;
    const uint8_t *held;
    size_t held_len;
    cr_assert_eq(mqe2e_keystore_identity_public(ks, sign_pk, dh_pk), MQE2E_OK);
    memset(&r, 0, sizeof r);
    r.client_id = "dev-2";
    r.role = "device";
    memcpy(r.sign_public, sign_pk, 32);
    memcpy(r.dh_public, dh_pk, 32);
    r.grants = &g;
    r.n_grants = 1;
    r.issued_at = NOW - 10U;
    r.expires_at = NOW + 3600U;
    r.serial = 1;
    cr_assert_eq(mqe2e_credential_issue(&other, &other_len, auth_sk, &r), MQE2E_OK);
    r.client_id = "dev-1";
    cr_assert_eq(mqe2e_credential_issue(&mine, &mine_len, auth_sk, &r), MQE2E_OK);

    mqe2e_control_update u;
    seen s;
    memset(&u, 0, sizeof u);
    memset(&s, 0, sizeof s);
    u.credential = other;
    u.credential_len = other_len;
    cr_assert_eq(mqe2e_control_update_apply(ks, &u, auth_pk, NOW, 0, observe, &s), MQE2E_ERR_AUTH);
    cr_assert_eq(mqe2e_keystore_credential(ks, &held, &held_len), MQE2E_ERR_NOT_FOUND);
    u.credential = mine;
    u.credential_len = mine_len;
    cr_assert_eq(mqe2e_control_update_apply(ks, &u, auth_pk, NOW, 0, observe, &s), MQE2E_OK);
    cr_assert_eq(s.last_rc[MQE2E_UPDATE_CREDENTIAL], MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_credential(ks, &held, &held_len), MQE2E_OK);
    cr_assert_eq(held_len, mine_len);
    free(mine);
    free(other);
}

Test(update_apply, bad_arguments)
{
    mqe2e_control_update u;
    memset(&u, 0, sizeof u);
    cr_assert_eq(mqe2e_control_update_apply(NULL, &u, auth_pk, NOW, 0, NULL, NULL),
                 MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_control_update_apply(ks, NULL, auth_pk, NOW, 0, NULL, NULL),
                 MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_control_update_apply(ks, &u, NULL, NOW, 0, NULL, NULL),
                 MQE2E_ERR_INVALID_ARG);
    u.n_bundles = 1;
    cr_assert_eq(mqe2e_control_update_apply(ks, &u, auth_pk, NOW, 0, NULL, NULL),
                 MQE2E_ERR_INVALID_ARG);
}
