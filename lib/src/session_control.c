/*
 * The device session's control plane: HELLO, PUSH, the updates they carry,
 * revocation lists, signer grants, pruning of retired epochs
 * (docs/PROTOCOL.md, "Client behaviour"). No I/O: frames to send become
 * PUBLISH actions (mqe2e__sess_enqueue), the time is the caller's (c->t).
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal_session.h"

/* ------------------------------------------------------------------ */
/* Revocations                                                          */

/* The list in c->rl was just heard from the authority: its validity
 * (docs/PROTOCOL.md 9.3) runs from now, on the caller's monotonic clock. */
static void ctl_list_heard(mqe2e_session *c)
{
    uint64_t now = c->t.mono_ms;
    uint64_t next = mqe2e_revocation_list_next_update(c->rl);
    uint64_t issued = mqe2e_revocation_list_issued_at(c->rl);
    c->rl_heard_ms = now > 0 ? now : 1U;
    c->rl_valid_ms = next > issued ? (next - issued) * 1000U : 0;
    c->stale_reported = 0;
}

/* Adopt a revocation list if it verifies and is newer; tear down channels
 * to peers it revokes; hand its retired sender ids to the protector. */
void mqe2e__sess_adopt_revocations(mqe2e_session *c, const uint8_t *list, size_t len, int live)
{
    mqe2e_revocation_list *rl = NULL;
    int rc;

    if (list == NULL || len == 0) return;
    rc = mqe2e_revocation_list_verify(&rl, list, len, c->pin.sign_public);
    if (rc != MQE2E_OK) {
        c->k.control_ignored++;
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_WARNING, "revocation list refused: %s", mqe2e_error_name(rc));
        return;
    }
    if (c->rl != NULL &&
        mqe2e_revocation_list_version(rl) <= mqe2e_revocation_list_version(c->rl)) {
        /* The same version comes back as the retained copy on every connect;
         * an older one is a rollback attempt (a replayed genuine list). The
         * same version signed later (the authority re-signs it every half
         * validity) or vouched for live renews the list's freshness; a
         * replayed copy does not. */
        if (mqe2e_revocation_list_version(rl) == mqe2e_revocation_list_version(c->rl)) {
            if (mqe2e_revocation_list_issued_at(rl) > mqe2e_revocation_list_issued_at(c->rl)) {
                mqe2e_revocation_list_free(c->rl);
                c->rl = rl;
                ctl_list_heard(c);
                (void)mqe2e_protector_set_revocations(c->prot, c->rl);
                return;
            }
            if (live &&
                mqe2e_revocation_list_issued_at(rl) == mqe2e_revocation_list_issued_at(c->rl))
                ctl_list_heard(c);
        }
        if (mqe2e_revocation_list_version(rl) < mqe2e_revocation_list_version(c->rl)) {
            c->k.control_ignored++;
            mqe2e__sess_log(c, MQE2E_SESSION_LOG_WARNING, "revocation list refused: version %llu older than %llu",
                    (unsigned long long)mqe2e_revocation_list_version(rl),
                    (unsigned long long)mqe2e_revocation_list_version(c->rl));
        }
        mqe2e_revocation_list_free(rl);
        return;
    }
    rc = mqe2e_keystore_set_revocation_list(c->ks, list, len,
                                            mqe2e_revocation_list_version(rl));
    if (rc != MQE2E_OK && rc != MQE2E_ERR_REPLAY) {
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_ERROR, "cannot store revocation list: %s", mqe2e_error_name(rc));
    }
    mqe2e_revocation_list_free(c->rl);
    c->rl = rl;
    ctl_list_heard(c);
    /* Receivers drop the revoked devices' sender ids from now on, in every
     * epoch (docs/CREDENTIALS.md, "Retired sender ids"). */
    rc = mqe2e_protector_set_revocations(c->prot, c->rl);
    if (rc != MQE2E_OK)
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_ERROR, "cannot adopt the retired sender ids: %s",
                        mqe2e_error_name(rc));
    if (mqe2e_revocation_list_is_revoked(c->rl, c->id, 0)) {
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_ERROR,
                "this client ('%s') is revoked by the authority (revocation list version %llu): "
                "it gets no new keys; enroll a new identity with a new ticket",
                c->id, (unsigned long long)mqe2e_revocation_list_version(c->rl));
    }
    for (ctl_peer *p = c->peers; p != NULL; p = p->next) {
        if (p->ch != NULL && mqe2e__sess_peer_revoked(c, p->id)) {
            mqe2e__sess_log(c, MQE2E_SESSION_LOG_WARNING, "channel to '%s' closed: peer revoked", p->id);
            mqe2e__sess_peer_reset(p);
            mqe2e__sess_peer_drop_pending(p);
        }
    }
}
/* ------------------------------------------------------------------ */
/* Updates from HELLO replies and PUSH (lock held)                     */

void mqe2e__sess_grant_set_free(ctl_grant_set *s)
{
    if (s == NULL) return;
    for (size_t i = 0; s->g != NULL && i < s->n; i++) {
        for (size_t f = 0; f < s->g[i].n_pub_filters; f++)
            free(s->g[i].pub_filters[f]);
        free(s->g[i].pub_filters);
    }
    free(s->g);
    free(s->sids);
    free(s);
}

/* Keep a copy of a directory's grants, replacing the group's previous set
 * (lock held). On failure the group's set is removed: messages are then
 * held until the next directory, never let through unchecked. */
static void ctl_grants_store(mqe2e_session *c, const mqe2e_group_directory *d)
{
    ctl_grant_set **pp = &c->grant_sets;
    while (*pp != NULL && strcmp((*pp)->group, d->group) != 0)
        pp = &(*pp)->next;
    if (*pp != NULL) {
        ctl_grant_set *old = *pp;
        *pp = old->next;
        mqe2e__sess_grant_set_free(old);
    }
    ctl_grant_set *s = calloc(1, sizeof *s);
    if (s == NULL) return;
    (void)snprintf(s->group, sizeof s->group, "%s", d->group);
    s->listed = d->has_grants && d->grants != NULL;
    if (s->listed && d->n_signers > 0) {
        if ((s->sids = calloc(d->n_signers, sizeof *s->sids)) == NULL ||
            (s->g = calloc(d->n_signers, sizeof *s->g)) == NULL) {
            mqe2e__sess_grant_set_free(s);
            return;
        }
        for (size_t i = 0; i < d->n_signers; i++) {
            const mqe2e_signer_grants *src = &d->grants[i];
            s->sids[i] = d->signers[i].sender_id;
            s->n = i + 1U;
            if (src->n_pub_filters == 0) continue;
            if ((s->g[i].pub_filters = calloc(src->n_pub_filters, sizeof(char *))) == NULL) {
                mqe2e__sess_grant_set_free(s);
                return;
            }
            for (size_t f = 0; f < src->n_pub_filters; f++) {
                if ((s->g[i].pub_filters[f] = strdup(src->pub_filters[f])) == NULL) {
                    mqe2e__sess_grant_set_free(s);
                    return;
                }
                s->g[i].n_pub_filters = f + 1U;
            }
        }
    }
    s->next = c->grant_sets;
    c->grant_sets = s;
}

/* Grant check of a signed group's envelope (lock held): MQE2E_OK (granted,
 * or a sender id not in the directory: the signature check refuses it),
 * MQE2E_ERR_GRANT, MQE2E_ERR_NO_KEY (no directory seen yet this session). */
int mqe2e__sess_grant_check(const mqe2e_session *c, const char *group, const char *topic,
                           uint32_t sender_id)
{
    const ctl_grant_set *s = c->grant_sets;
    while (s != NULL && strcmp(s->group, group) != 0)
        s = s->next;
    if (s == NULL) return MQE2E_ERR_NO_KEY;
    if (!s->listed) return MQE2E_OK;
    for (size_t i = 0; i < s->n; i++) {
        if (s->sids[i] != sender_id) continue;
        for (size_t f = 0; f < s->g[i].n_pub_filters; f++)
            if (mqe2e_topic_matches(s->g[i].pub_filters[f], topic)) return MQE2E_OK;
        return MQE2E_ERR_GRANT;
    }
    return MQE2E_OK;
}

/* Whether a signed keystore group's filter covers @p topic (lock held): a
 * `plaintext` rule matching such a topic is refused both ways
 * (docs/PROTOCOL.md 6). */
int mqe2e__sess_signed_covers(const mqe2e_session *c, const char *topic)
{
    size_t n = mqe2e_keystore_group_count(c->ks);
    for (size_t i = 0; i < n; i++) {
        const char *g = mqe2e_keystore_group_name(c->ks, i);
        const char *f = g != NULL ? mqe2e_keystore_group_filter(c->ks, g) : NULL;
        if (f != NULL && mqe2e_keystore_group_is_signed(c->ks, g) == 1 &&
            mqe2e_topic_matches(f, topic))
            return 1;
    }
    return 0;
}

/* Drop every epoch of @p group retired before @p cutoff (lock held). */
static void ctl_prune_now(mqe2e_session *c, const char *group, uint64_t cutoff)
{
    int n = mqe2e_keystore_group_prune(c->ks, group, cutoff);
    mqe2e_protector_invalidate(c->prot, group);
    if (n > 0)
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_INFO,
                "group '%s': %d retired epoch(s) dropped (grace set by the "
                "authority after a member left)",
                group, n);
}

/* A retired epoch whose grace the authority cut: drop it (and older ones)
 * when that grace ends, at once if it already did (lock held). */
static void ctl_schedule_prune(mqe2e_session *c, const mqe2e_key_bundle *b, uint64_t now)
{
    uint64_t cutoff = b->retired_at + 1U;
    uint64_t at = b->retired_at + b->grace_seconds;
    if (now >= at) {
        ctl_prune_now(c, b->group, cutoff);
        return;
    }
    for (size_t i = 0; i < c->n_prunes; i++) {
        if (strcmp(c->prunes[i].group, b->group) != 0) continue;
        /* Merged: the larger cutoff at the earlier time drops no less. */
        if (cutoff > c->prunes[i].cutoff) c->prunes[i].cutoff = cutoff;
        if (at < c->prunes[i].at) c->prunes[i].at = at;
        return;
    }
    if (c->n_prunes == CTL_PRUNES_MAX) {
        ctl_prune_now(c, b->group, cutoff);
        return;
    }
    (void)snprintf(c->prunes[c->n_prunes].group, sizeof c->prunes[0].group, "%s", b->group);
    c->prunes[c->n_prunes].cutoff = cutoff;
    c->prunes[c->n_prunes].at = at;
    c->n_prunes++;
}

void mqe2e__sess_prune_due(mqe2e_session *c, uint64_t now)
{
    for (size_t i = 0; i < c->n_prunes;) {
        if (now < c->prunes[i].at) {
            i++;
            continue;
        }
        ctl_prune_now(c, c->prunes[i].group, c->prunes[i].cutoff);
        c->prunes[i] = c->prunes[--c->n_prunes];
    }
}

/* What the session keeps beside the keystore, from the events of the shared
 * apply (lib/src/update_apply.c): protector caches, prune timers, the
 * default policy, signer grants, the in-memory revocation list, logs. */
static void ctl_on_update_event(void *ctx, const mqe2e_update_event *ev)
{
    mqe2e_session *c = ctx;
    const mqe2e_control_update *u = ev->update;

    switch (ev->kind) {
    case MQE2E_UPDATE_GROUP_REMOVED:
        mqe2e_protector_invalidate(c->prot, ev->group);
        if (ev->rc == MQE2E_OK) mqe2e__sess_log(c, MQE2E_SESSION_LOG_INFO, "left group '%s'", ev->group);
        mqe2e__sess_tree_leave(c, ev->group);
        break;
    case MQE2E_UPDATE_BUNDLE: {
        const mqe2e_key_bundle *b = ev->bundle;
        if (ev->rc != MQE2E_OK) {
            mqe2e__sess_log(c, MQE2E_SESSION_LOG_ERROR, "cannot apply epoch %lu of group '%s': %s",
                    (unsigned long)b->epoch, b->group, mqe2e_error_name(ev->rc));
            break;
        }
        mqe2e_protector_invalidate(c->prot, b->group);
        /* A key-tree group's current bundle: the member's tree state. */
        if (b->tree_path_len > 0) mqe2e__sess_tree_from_bundle(c, b);
        /* Dropped when the authority's grace for it ends (one that has
         * already ended the shared apply drops after all bundles). */
        if (b->retired_at != 0 && b->grace_seconds != 0) ctl_schedule_prune(c, b, c->t.wall_s);
        if (ev->new_group && c->owned_policy != NULL) {
            /* The default policy follows the keystore's groups. */
            int rc = mqe2e_policy_add(c->owned_policy, b->topic_filter, MQE2E_POLICY_GROUP, b->group);
            if (rc != MQE2E_OK)
                mqe2e__sess_log(c, MQE2E_SESSION_LOG_WARNING, "no policy rule for new group '%s': %s", b->group,
                        mqe2e_error_name(rc));
        }
        break;
    }
    case MQE2E_UPDATE_EPOCHS_PRUNED:
        mqe2e_protector_invalidate(c->prot, ev->group);
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_INFO,
                "group '%s': %d retired epoch(s) dropped (grace set by the "
                "authority after a member left)",
                ev->group, ev->pruned);
        break;
    case MQE2E_UPDATE_DIRECTORIES:
        /* Signed groups: who may sign under which sender id. A group that
         * turns signed changes what its protector accepts, so it re-reads. */
        if (ev->rc != MQE2E_OK)
            mqe2e__sess_log(c, MQE2E_SESSION_LOG_ERROR, "cannot apply signer directories: %s",
                    mqe2e_error_name(ev->rc));
        for (size_t i = 0; i < u->n_directories; i++)
            ctl_grants_store(c, &u->directories[i]);
        for (size_t i = 0; i < u->n_directories; i++)
            mqe2e_protector_invalidate(c->prot, u->directories[i].group);
        break;
    case MQE2E_UPDATE_CREDENTIAL:
        if (ev->rc != MQE2E_OK)
            mqe2e__sess_log(c, MQE2E_SESSION_LOG_WARNING, "renewed credential refused: %s",
                    mqe2e_error_name(ev->rc));
        break;
    case MQE2E_UPDATE_REVOCATIONS:
        /* The keystore took it if newer; the session's copy, its channels
         * and its counters follow (and log a refusal once). */
        mqe2e__sess_adopt_revocations(c, u->revocation_list, u->revocation_list_len, 1);
        break;
    }
}

void mqe2e__sess_apply_update(mqe2e_session *c, const mqe2e_control_update *u, int from_push)
{
    (void)mqe2e_control_update_apply(c->ks, u, c->pin.sign_public, c->t.wall_s,
                                     from_push ? MQE2E_UPDATE_FROM_PUSH : 0U, ctl_on_update_event,
                                     c);
}

/* ------------------------------------------------------------------ */
/* HELLO (lock held)                                                   */

void mqe2e__sess_hello_start(mqe2e_session *c)
{
    uint8_t *frame = malloc(MQE2E_CONTROL_MAX_FRAME_BYTES);
    uint8_t dh_sk[32];
    size_t len = 0;
    uint64_t serial = 0;
    const uint8_t *cb;
    size_t cl;
    int rc;

    if (frame == NULL) return;
    if (mqe2e_keystore_credential(c->ks, &cb, &cl) == MQE2E_OK) {
        mqe2e_credential *cred = NULL;
        /* Expired credentials still name a serial worth reporting. */
        if (mqe2e_credential_verify(&cred, cb, cl, c->pin.sign_public, c->t.wall_s) == MQE2E_OK)
            serial = mqe2e_credential_serial(cred);
        mqe2e_credential_free(cred);
    }
    mqe2e_hello_client_free(c->hello);
    c->hello = NULL;
    rc = mqe2e_keystore_dh_secret(c->ks, dh_sk);
    if (rc == MQE2E_OK)
        rc = mqe2e_hello_begin(&c->hello, frame, MQE2E_CONTROL_MAX_FRAME_BYTES, &len,
                               c->pin.control_prefix, c->id, c->pin.authority_id, dh_sk,
                               c->pin.dh_public, serial);
    sodium_memzero(dh_sk, sizeof dh_sk);
    if (rc == MQE2E_OK) rc = mqe2e__sess_enqueue(c, c->authority_topic, frame, len, 1, 0);
    if (rc == MQE2E_OK) {
        c->hello_started = c->t.wall_s;
        c->k.hellos_sent++;
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_DEBUG, "HELLO sent (%zu bytes)", len);
    } else {
        mqe2e_hello_client_free(c->hello);
        c->hello = NULL;
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_ERROR, "cannot start HELLO: %s", mqe2e_error_name(rc));
    }
    free(frame);
}

void mqe2e__sess_on_hello(mqe2e_session *c, const uint8_t *data, size_t len)
{
    mqe2e_control_update u;
    int rc;

    if (c->hello == NULL) {
        c->k.control_ignored++;
        return;
    }
    memset(&u, 0, sizeof u);
    rc = mqe2e_hello_finish(c->hello, &u, data, len);
    if (rc == MQE2E_ERR_STATE || rc == MQE2E_ERR_DECODE) {
        /* A reply to an earlier HELLO, or someone else's frame. */
        c->k.control_ignored++;
        return;
    }
    mqe2e_hello_client_free(c->hello);
    c->hello = NULL;
    if (rc == MQE2E_ERR_POLICY) {
        c->hello_done = 1; /* refused: do not hammer the authority */
        /* Revoked or unknown: nothing is sealed on a group from now on. */
        c->fresh_ms = 0;
        c->refused = 1;
        mqe2e__sess_tree_leave_all(c);
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_ERROR, "HELLO refused by the authority: %s",
                u.status == MQE2E_STATUS_REVOKED
                    ? "this client is revoked: it gets no new keys (enroll a new identity with a "
                      "new ticket)"
                : u.status == MQE2E_STATUS_UNKNOWN_CLIENT
                    ? "the authority does not know this client (enroll it first)"
                    : "refused (see the authority's log)");
        mqe2e_control_update_wipe(&u);
        return;
    }
    if (rc != MQE2E_OK) {
        c->k.handshakes_failed++;
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_WARNING, "HELLO reply refused: %s", mqe2e_error_name(rc));
        return;
    }
    c->k.handshakes_ok++;
    c->hello_done = 1;
    c->hello_answered_sent = c->hello_started;
    mqe2e__sess_log(c, MQE2E_SESSION_LOG_INFO, "HELLO reply (%zu bytes): %zu key bundles", len, u.n_bundles);
    mqe2e__sess_apply_update(c, &u, 0);
    mqe2e__sess_heard(c);
    mqe2e_control_update_wipe(&u);
}

void mqe2e__sess_on_push(mqe2e_session *c, const uint8_t *data, size_t len)
{
    mqe2e_control_update u;
    uint8_t dh_sk[32];
    int rc;

    memset(&u, 0, sizeof u);
    rc = mqe2e_keystore_dh_secret(c->ks, dh_sk);
    if (rc == MQE2E_OK)
        rc =
            mqe2e_push_open(&u, dh_sk, c->pin.dh_public, c->pin.control_prefix, c->pin.authority_id,
                            data, len, mqe2e_keystore_push_seq(c->ks));
    sodium_memzero(dh_sk, sizeof dh_sk);
    if (rc != MQE2E_OK) {
        c->k.pushes_refused++;
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_WARNING, "PUSH refused: %s", mqe2e_error_name(rc));
        return;
    }
    mqe2e__sess_apply_update(c, &u, 1);
    rc = mqe2e_keystore_set_push_seq(c->ks, u.push_seq);
    if (rc != MQE2E_OK)
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_ERROR, "cannot record push %llu: %s", (unsigned long long)u.push_seq,
                mqe2e_error_name(rc));
    c->k.pushes_applied++;
    mqe2e__sess_heard(c);
    mqe2e__sess_log(c, MQE2E_SESSION_LOG_INFO, "PUSH %llu applied: %zu bundles, %zu groups removed",
            (unsigned long long)u.push_seq, u.n_bundles, u.n_removed_groups);
    mqe2e_control_update_wipe(&u);
}
