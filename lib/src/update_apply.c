/*
 * The device side of "apply an update" (docs/PROTOCOL.md 9.1-9.5): one
 * function for every authenticated update a device receives (ENROLL reply,
 * HELLO reply, PUSH), used by the device session and by `mqe2e enroll`, so
 * that both refuse the same things. Keystore writes only; what a caller
 * keeps beside the keystore (protector caches, timers, logs) it does from
 * the events.
 */
#include <sodium.h>
#include <string.h>

#include "mqe2e/control.h"
#include "mqe2e/credential.h"
#include "mqe2e/error.h"
#include "mqe2e/keystore.h"

typedef struct apply_ctx {
    mqe2e_keystore *ks;
    const mqe2e_control_update *u;
    mqe2e_update_observer obs;
    void *user;
    int first; /* first failure that counts (see the header) */
} apply_ctx;

static void emit(apply_ctx *a, mqe2e_update_event *ev)
{
    ev->update = a->u;
    if (a->obs != NULL) a->obs(a->user, ev);
}

static void fail(apply_ctx *a, int rc)
{
    if (rc != MQE2E_OK && a->first == MQE2E_OK) a->first = rc;
}

static void apply_removed(apply_ctx *a)
{
    for (size_t i = 0; i < a->u->n_removed_groups; i++) {
        mqe2e_update_event ev;
        memset(&ev, 0, sizeof ev);
        ev.kind = MQE2E_UPDATE_GROUP_REMOVED;
        ev.group = a->u->removed_groups[i].name;
        ev.rc = mqe2e_keystore_group_remove(a->ks, ev.group);
        /* A group this keystore never held (or already left) is no failure. */
        if (ev.rc != MQE2E_ERR_NOT_FOUND) fail(a, ev.rc);
        emit(a, &ev);
    }
}

static void apply_bundles(apply_ctx *a, uint64_t now)
{
    for (size_t i = 0; i < a->u->n_bundles; i++) {
        const mqe2e_key_bundle *b = &a->u->bundles[i];
        mqe2e_update_event ev;
        memset(&ev, 0, sizeof ev);
        ev.kind = MQE2E_UPDATE_BUNDLE;
        ev.group = b->group;
        ev.bundle = b;
        ev.new_group = mqe2e_keystore_group_filter(a->ks, b->group) == NULL;
        ev.rc = mqe2e_keystore_group_apply(a->ks, b->group, b->topic_filter, b->epoch, b->secret,
                                           b->sender_id, b->retired_at, now);
        fail(a, ev.rc);
        emit(a, &ev);
    }
}

/* A retired epoch whose cut grace has ended is dropped at once, with every
 * epoch of the group retired before it (9.3, "after a member left"). After
 * every bundle: a keystore that learns the epoch and its successor from the
 * same update held it as current when it was applied, and marked it retired
 * when the successor came, so every retired bundle with a cut grace is
 * applied once more (a no-op but for the authority's `retired_at`, now
 * taken). Without that, an epoch whose grace is still running would keep the
 * later local time and the caller's timer (cutoff `retired_at` + 1) would
 * not drop it when the grace ends. */
static void prune_due(apply_ctx *a, uint64_t now)
{
    for (size_t i = 0; i < a->u->n_bundles; i++) {
        const mqe2e_key_bundle *b = &a->u->bundles[i];
        if (b->retired_at == 0 || b->grace_seconds == 0) continue;
        if (mqe2e_keystore_group_apply(a->ks, b->group, b->topic_filter, b->epoch, b->secret,
                                       b->sender_id, b->retired_at, now) != MQE2E_OK)
            continue; /* refused above, and reported there */
        if (now < b->retired_at + b->grace_seconds) continue; /* the caller's timer */
        int n = mqe2e_keystore_group_prune(a->ks, b->group, b->retired_at + 1U);
        if (n < 0) {
            fail(a, n);
            continue;
        }
        if (n == 0) continue;
        mqe2e_update_event ev;
        memset(&ev, 0, sizeof ev);
        ev.kind = MQE2E_UPDATE_EPOCHS_PRUNED;
        ev.group = b->group;
        ev.pruned = n;
        emit(a, &ev);
    }
}

static void apply_directories(apply_ctx *a)
{
    if (a->u->n_directories == 0) return;
    mqe2e_update_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = MQE2E_UPDATE_DIRECTORIES;
    ev.rc = mqe2e_control_update_apply_directories(a->ks, a->u);
    fail(a, ev.rc);
    emit(a, &ev);
}

/* A credential must verify and name this keystore's client id and X25519 key. */
static int credential_check(const mqe2e_keystore *ks, const uint8_t *cred_bytes, size_t len,
                            const uint8_t sign_pk[32], uint64_t now)
{
    mqe2e_credential *cred = NULL;
    uint8_t dh_pk[32];
    int rc = mqe2e_keystore_identity_public(ks, NULL, dh_pk);
    if (rc == MQE2E_OK) rc = mqe2e_credential_verify(&cred, cred_bytes, len, sign_pk, now);
    if (rc == MQE2E_OK &&
        (strcmp(mqe2e_credential_client_id(cred), mqe2e_keystore_client_id(ks)) != 0 ||
         sodium_memcmp(mqe2e_credential_dh_public(cred), dh_pk, sizeof dh_pk) != 0))
        rc = MQE2E_ERR_AUTH;
    mqe2e_credential_free(cred);
    return rc;
}

static void apply_credential(apply_ctx *a, const uint8_t sign_pk[32], uint64_t now)
{
    if (a->u->credential == NULL || a->u->credential_len == 0) return;
    mqe2e_update_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = MQE2E_UPDATE_CREDENTIAL;
    ev.rc = credential_check(a->ks, a->u->credential, a->u->credential_len, sign_pk, now);
    if (ev.rc == MQE2E_OK)
        ev.rc = mqe2e_keystore_set_credential(a->ks, a->u->credential, a->u->credential_len);
    fail(a, ev.rc);
    emit(a, &ev);
}

/* Verified and not older than the one held (the keystore refuses a lower
 * version itself); never a failure of the update: the rest is authenticated. */
static void apply_revocations(apply_ctx *a, const uint8_t sign_pk[32])
{
    const mqe2e_control_update *u = a->u;
    const uint8_t *held;
    size_t held_len;
    mqe2e_revocation_list *rl = NULL;
    mqe2e_update_event ev;

    if (u->revocation_list == NULL || u->revocation_list_len == 0) return;
    memset(&ev, 0, sizeof ev);
    ev.kind = MQE2E_UPDATE_REVOCATIONS;
    (void)mqe2e_keystore_revocation_list(a->ks, &held, &held_len, &ev.held_version);
    ev.rc = mqe2e_revocation_list_verify(&rl, u->revocation_list, u->revocation_list_len, sign_pk);
    if (ev.rc == MQE2E_OK) {
        ev.version = mqe2e_revocation_list_version(rl);
        ev.rc = mqe2e_keystore_set_revocation_list(a->ks, u->revocation_list,
                                                   u->revocation_list_len, ev.version);
    }
    mqe2e_revocation_list_free(rl);
    emit(a, &ev);
}

int mqe2e_control_update_apply(mqe2e_keystore *ks, const mqe2e_control_update *u,
                               const uint8_t authority_sign_public[32], uint64_t now,
                               unsigned flags, mqe2e_update_observer obs, void *ctx)
{
    if (ks == NULL || u == NULL || authority_sign_public == NULL ||
        (u->n_bundles > 0 && u->bundles == NULL) ||
        (u->n_removed_groups > 0 && u->removed_groups == NULL) ||
        (u->n_directories > 0 && u->directories == NULL))
        return MQE2E_ERR_INVALID_ARG;
    apply_ctx a = {ks, u, obs, ctx, MQE2E_OK};
    apply_removed(&a);
    apply_bundles(&a, now);
    prune_due(&a, now);
    apply_directories(&a);
    apply_credential(&a, authority_sign_public, now);
    apply_revocations(&a, authority_sign_public);
    if ((flags & MQE2E_UPDATE_FROM_PUSH) == 0 && u->push_seq > mqe2e_keystore_push_seq(ks)) {
        /* A reply is the state as of that push: older pushes add nothing. */
        fail(&a, mqe2e_keystore_set_push_seq(ks, u->push_seq));
    }
    fail(&a, mqe2e_keystore_flush(ks));
    return a.first;
}
