/*
 * The client side of the control plane (docs/PROTOCOL.md, "Client behaviour").
 *
 * Threads. Paho forbids calling the sync client from its callbacks, so every
 * frame this side must publish goes into `outbox`, which a worker thread
 * drains; the worker also runs the timers (HELLO retries and renewal,
 * channel handshake retries, hold expiry). Received control frames are
 * processed where they arrive (Paho's callback thread) under the client's
 * `lock`: this keeps them ordered with the data messages around them (a
 * channel's last handshake message is processed before the first envelope
 * sent on it; keys fetched by HELLO are in place before the messages held
 * for them are released).
 *
 * Every control-plane state change happens under host->lock; Paho is only
 * called without it.
 */
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal_plugin.h"
#include "mqe2e/MQTTClient.h"
#include "mqe2e/holdq.h"

/* Most frames/messages waiting for the worker to publish. */
#define CTL_OUTBOX_MAX 4096U
/* Most plaintexts waiting for one peer's channel. */
#define CTL_PENDING_MAX 64U
/* Retry an unanswered HELLO or channel handshake after this many seconds. */
#define CTL_RETRY_SECONDS 3U
/* Give up on a channel's pending messages after this many seconds. */
#define CTL_PENDING_SECONDS 30U
/* At most one HELLO triggered by unknown epochs per this many seconds. */
#define CTL_TRIGGER_SECONDS 2U
/* Held envelopes may name at most this many epochs past the current one: a
 * device offline across a few rotations sees a few; 0xFFFFFFFF is a forgery. */
#define CTL_HOLD_EPOCHS_AHEAD 16U
/* Groups with a scheduled drop of retired epochs (more are dropped at once). */
#define CTL_PRUNES_MAX 16U
/* Worker tick. */
#define CTL_TICK_MS 100L
/*
 * CHANNEL step 1 (Noise_XX message 1) carries no identity, so anyone who can
 * publish to our inbox can make us do DH work and hold handshake state. The
 * responder therefore keeps at most this many half-open handshakes (the
 * oldest is dropped; established channels are never touched) ...
 */
#define CTL_HALF_OPEN_MAX 64U
/* ... answers at most this many step 1 frames per second overall ... */
#define CTL_STEP1_RATE 50U
/* ... with bursts of up to this many ... */
#define CTL_STEP1_BURST 100U
/* ... and replaces the half-open handshake of one claimed peer id only when it
 * is older than this (ms): a forger cannot churn a legitimate peer's attempt. */
#define CTL_STEP1_PEER_MS 1000U
/* ... and not at all while this many frames already wait in the outbox: each
 * QoS 1 control publish takes a broker round trip, so answers beyond that only
 * queue up in front of a legitimate peer's. */
#define CTL_STEP1_BACKLOG 16U

typedef struct ctl_out {
    struct ctl_out *next;
    char *topic;
    uint8_t *data;
    size_t len;
    int qos;
    int retained;
} ctl_out;

typedef struct ctl_pending {
    struct ctl_pending *next;
    char *topic;
    uint8_t *pt; /* plaintext: wiped before free */
    size_t len;
    int qos;
    int retained;
} ctl_pending;

typedef struct ctl_peer {
    struct ctl_peer *next;
    char id[MQE2E_ID_MAX + 1];
    mqe2e_channel *ch;
    /* A responder handshake started while ch is established: ch stays in
     * service until this one completes, so a forged step 1 cannot tear a
     * working channel down. Non-NULL only while ch is established. */
    mqe2e_channel *hs;
    int initiator;
    uint64_t started; /* when the current handshake began */
    uint64_t resp_ms; /* monotonic ms when the half-open responder handshake began */
    ctl_pending *pending, *pending_tail;
    size_t n_pending;
    uint64_t pending_since;
} ctl_peer;

/* The `pub` grants of a signed group's signers, from the last directory the
 * authority sent in this session (docs/PROTOCOL.md 2.9). */
typedef struct ctl_grant_set {
    struct ctl_grant_set *next;
    char group[MQE2E_GROUP_ID_MAX_BYTES + 1];
    int listed; /* 0: the authority listed no grants (older authority): not checked */
    size_t n;
    uint32_t *sids;
    mqe2e_signer_grants *g;
} ctl_grant_set;

struct mqe2e__ctl {
    mqe2e__ctl_host h;
    mqe2e_authority_pin pin;
    char id[MQE2E_ID_MAX + 1];
    char inbox[MQE2E_KS_PREFIX_MAX_BYTES + MQE2E_ID_MAX + 16];
    char revocations_topic[MQE2E_KS_PREFIX_MAX_BYTES + 16];
    char authority_topic[MQE2E_KS_PREFIX_MAX_BYTES + 16];
    mqe2e_revocation_list *rl;
    mqe2e_hello_client *hello;
    uint64_t hello_started;
    uint64_t hello_answered_sent; /* hello_started of the last HELLO answered (wall s) */
    uint64_t last_trigger;
    uint64_t last_renewal_check;
    int hello_done; /* a HELLO succeeded since the last connect */
    /* Freshness (docs/PROTOCOL.md 9.3): monotonic ms of the last
     * authenticated answer of the authority (HELLO reply, PUSH); 0 = none
     * since this client was created. Group messages are sealed only while it
     * is at most fresh_max_ms old. */
    uint64_t fresh_ms;
    uint64_t fresh_max_ms;
    /* Revocation list freshness (PROTOCOL.md 9.3): monotonic ms when the list
     * in rl was last heard from the authority (an authenticated HELLO reply
     * or PUSH carrying it, or a copy signed later than the one held); 0 =
     * not since this client was created. rl_valid_ms is the list's
     * next_update - issued_at (0: the list gives none). */
    uint64_t rl_heard_ms;
    uint64_t rl_valid_ms;
    int stale_reported; /* the refusal was logged since the last answer */
    /* Retired epochs whose grace the authority cut (a member left): dropped
     * from the keystore at `at` (wall seconds, the authority's clock), every
     * epoch of the group retired before `cutoff`. One entry per group. */
    struct {
        char group[MQE2E_GROUP_ID_MAX_BYTES + 1];
        uint64_t cutoff, at;
    } prunes[CTL_PRUNES_MAX];
    size_t n_prunes;
    ctl_grant_set *grant_sets;
    int refused;        /* the authority refused this client (revoked, unknown) */
    int session_up; /* control topics subscribed on the current connection */
    mqe2e_holdq *holdq;
    ctl_peer *peers;
    ctl_out *out_head, *out_tail;
    size_t n_out;
    mqe2e_control_counters k;
    uint64_t step1_tokens; /* CHANNEL step 1 budget, in thousandths of a frame */
    uint64_t step1_ms;     /* monotonic ms of the last refill (0 = never) */
    pthread_t worker;
    pthread_cond_t cond;
    pthread_cond_t drained; /* signalled when the worker finished a publish */
    int publishing;         /* the worker holds a frame taken off the outbox */
    int worker_started;
    int stop;
};

__attribute__((format(printf, 3, 4))) static void ctl_log(mqe2e__ctl *c, int level, const char *fmt,
                                                          ...)
{
    char line[512];
    va_list ap;

    if (c->h.log == NULL || (c->h.log_wants != NULL && !c->h.log_wants(c->h.ctx, level))) return;
    va_start(ap, fmt);
    /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): va_start is just above */
    (void)vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    c->h.log(c->h.ctx, level, line);
}

static uint64_t ctl_now(void)
{
    return mqe2e__plugin_now();
}

/* The held revocation list is within its validity (lock held). */
static int ctl_list_fresh(const mqe2e__ctl *c, uint64_t now)
{
    if (c->rl == NULL || c->rl_valid_ms == 0) return 1;
    return c->rl_heard_ms != 0 && now >= c->rl_heard_ms && now - c->rl_heard_ms <= c->rl_valid_ms;
}

/* lock held */
static int ctl_fresh(const mqe2e__ctl *c)
{
    uint64_t now = mqe2e__plugin_monotonic_ms();
    return c->fresh_ms != 0 && now >= c->fresh_ms && now - c->fresh_ms <= c->fresh_max_ms &&
           ctl_list_fresh(c, now);
}

/* The list in c->rl was just heard from the authority (lock held). */
static void ctl_list_heard(mqe2e__ctl *c)
{
    uint64_t now = mqe2e__plugin_monotonic_ms();
    uint64_t next = mqe2e_revocation_list_next_update(c->rl);
    uint64_t issued = mqe2e_revocation_list_issued_at(c->rl);
    c->rl_heard_ms = now > 0 ? now : 1U;
    c->rl_valid_ms = next > issued ? (next - issued) * 1000U : 0;
    c->stale_reported = 0;
    (void)pthread_cond_broadcast(&c->drained);
}

/* An authenticated answer of the authority arrived (lock held). */
static void ctl_heard(mqe2e__ctl *c)
{
    uint64_t now = mqe2e__plugin_monotonic_ms();
    c->fresh_ms = now > 0 ? now : 1U;
    c->stale_reported = 0;
    c->refused = 0;
    (void)pthread_cond_broadcast(&c->drained);
}

/* ------------------------------------------------------------------ */
/* Outbox (lock held)                                                   */

static void out_free(ctl_out *o)
{
    if (o == NULL) return;
    if (o->data != NULL) sodium_memzero(o->data, o->len);
    free(o->data);
    free(o->topic);
    free(o);
}

static int ctl_enqueue(mqe2e__ctl *c, const char *topic, const uint8_t *data, size_t len, int qos,
                       int retained)
{
    if (c->n_out >= CTL_OUTBOX_MAX) return MQE2E_ERR_EXHAUSTED;
    ctl_out *o = calloc(1, sizeof *o);
    if (o == NULL) return MQE2E_ERR_NOMEM;
    o->topic = strdup(topic);
    o->data = malloc(len > 0 ? len : 1U);
    if (o->topic == NULL || o->data == NULL) {
        out_free(o);
        return MQE2E_ERR_NOMEM;
    }
    if (len > 0) memcpy(o->data, data, len);
    o->len = len;
    o->qos = qos;
    o->retained = retained;
    if (c->out_tail != NULL)
        c->out_tail->next = o;
    else
        c->out_head = o;
    c->out_tail = o;
    c->n_out++;
    (void)pthread_cond_signal(&c->cond);
    return MQE2E_OK;
}

static void client_inbox(char *out, size_t cap, const mqe2e__ctl *c, const char *id)
{
    (void)snprintf(out, cap, "%s/client/%s", c->pin.control_prefix, id);
}

/* ------------------------------------------------------------------ */
/* Revocations (lock held)                                              */

static int peer_revoked(const mqe2e__ctl *c, const char *peer)
{
    /* The id itself, not a replaced device's old serials (those are refused
     * by serial when a channel checks the peer's credential). */
    return c->rl != NULL && mqe2e_revocation_list_client_revoked(c->rl, peer);
}

static void peer_drop_pending(ctl_peer *p)
{
    ctl_pending *q = p->pending;
    while (q != NULL) {
        ctl_pending *n = q->next;
        if (q->pt != NULL) sodium_memzero(q->pt, q->len);
        free(q->pt);
        free(q->topic);
        free(q);
        q = n;
    }
    p->pending = p->pending_tail = NULL;
    p->n_pending = 0;
}

static void peer_reset(ctl_peer *p)
{
    mqe2e_channel_free(p->hs);
    p->hs = NULL;
    mqe2e_channel_free(p->ch);
    p->ch = NULL;
    p->initiator = 0;
    p->started = 0;
}

/* Adopt a revocation list if it verifies and is newer; tear down channels
 * to peers it revokes. live: it came in an authenticated HELLO reply or PUSH
 * (which cannot be replayed), so the authority vouches for it now. */
static void ctl_adopt_revocations(mqe2e__ctl *c, const uint8_t *list, size_t len, int live)
{
    mqe2e_revocation_list *rl = NULL;
    int rc;

    if (list == NULL || len == 0) return;
    rc = mqe2e_revocation_list_verify(&rl, list, len, c->pin.sign_public);
    if (rc != MQE2E_OK) {
        c->k.control_ignored++;
        ctl_log(c, MQE2E_LOG_WARNING, "revocation list refused: %s", mqe2e_error_name(rc));
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
                (void)mqe2e_protector_set_revocations(c->h.protector, c->rl);
                return;
            }
            if (live && mqe2e_revocation_list_issued_at(rl) ==
                            mqe2e_revocation_list_issued_at(c->rl))
                ctl_list_heard(c);
        }
        if (mqe2e_revocation_list_version(rl) < mqe2e_revocation_list_version(c->rl)) {
            c->k.control_ignored++;
            ctl_log(c, MQE2E_LOG_WARNING, "revocation list refused: version %llu older than %llu",
                    (unsigned long long)mqe2e_revocation_list_version(rl),
                    (unsigned long long)mqe2e_revocation_list_version(c->rl));
        }
        mqe2e_revocation_list_free(rl);
        return;
    }
    rc = mqe2e_keystore_set_revocation_list(c->h.keystore, list, len,
                                            mqe2e_revocation_list_version(rl));
    if (rc != MQE2E_OK && rc != MQE2E_ERR_REPLAY) {
        ctl_log(c, MQE2E_LOG_ERROR, "cannot store revocation list: %s", mqe2e_error_name(rc));
    }
    mqe2e_revocation_list_free(c->rl);
    c->rl = rl;
    ctl_list_heard(c);
    /* Receivers drop the revoked devices' sender ids from now on, in every
     * epoch (docs/CREDENTIALS.md, "Retired sender ids"). */
    rc = mqe2e_protector_set_revocations(c->h.protector, c->rl);
    if (rc != MQE2E_OK)
        ctl_log(c, MQE2E_LOG_ERROR, "cannot adopt the retired sender ids: %s",
                mqe2e_error_name(rc));
    if (mqe2e_revocation_list_is_revoked(c->rl, c->id, 0)) {
        ctl_log(c, MQE2E_LOG_ERROR,
                "this client ('%s') is revoked by the authority (revocation list version %llu): "
                "it gets no new keys; enroll a new identity with a new ticket",
                c->id, (unsigned long long)mqe2e_revocation_list_version(c->rl));
    }
    for (ctl_peer *p = c->peers; p != NULL; p = p->next) {
        if (p->ch != NULL && peer_revoked(c, p->id)) {
            ctl_log(c, MQE2E_LOG_WARNING, "channel to '%s' closed: peer revoked", p->id);
            peer_reset(p);
            peer_drop_pending(p);
        }
    }
}

/* ------------------------------------------------------------------ */
/* Updates from HELLO replies and PUSH (lock held)                     */

static void grant_set_free(ctl_grant_set *s)
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
static void ctl_grants_store(mqe2e__ctl *c, const mqe2e_group_directory *d)
{
    ctl_grant_set **pp = &c->grant_sets;
    while (*pp != NULL && strcmp((*pp)->group, d->group) != 0)
        pp = &(*pp)->next;
    if (*pp != NULL) {
        ctl_grant_set *old = *pp;
        *pp = old->next;
        grant_set_free(old);
    }
    ctl_grant_set *s = calloc(1, sizeof *s);
    if (s == NULL) return;
    (void)snprintf(s->group, sizeof s->group, "%s", d->group);
    s->listed = d->has_grants && d->grants != NULL;
    if (s->listed && d->n_signers > 0) {
        if ((s->sids = calloc(d->n_signers, sizeof *s->sids)) == NULL ||
            (s->g = calloc(d->n_signers, sizeof *s->g)) == NULL) {
            grant_set_free(s);
            return;
        }
        for (size_t i = 0; i < d->n_signers; i++) {
            const mqe2e_signer_grants *src = &d->grants[i];
            s->sids[i] = d->signers[i].sender_id;
            s->n = i + 1U;
            if (src->n_pub_filters == 0) continue;
            if ((s->g[i].pub_filters = calloc(src->n_pub_filters, sizeof(char *))) == NULL) {
                grant_set_free(s);
                return;
            }
            for (size_t f = 0; f < src->n_pub_filters; f++) {
                if ((s->g[i].pub_filters[f] = strdup(src->pub_filters[f])) == NULL) {
                    grant_set_free(s);
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
static int ctl_grant_check(const mqe2e__ctl *c, const char *group, const char *topic,
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
static int ctl_signed_covers(const mqe2e__ctl *c, const char *topic)
{
    size_t n = mqe2e_keystore_group_count(c->h.keystore);
    for (size_t i = 0; i < n; i++) {
        const char *g = mqe2e_keystore_group_name(c->h.keystore, i);
        const char *f = g != NULL ? mqe2e_keystore_group_filter(c->h.keystore, g) : NULL;
        if (f != NULL && mqe2e_keystore_group_is_signed(c->h.keystore, g) == 1 &&
            mqe2e_topic_matches(f, topic))
            return 1;
    }
    return 0;
}

/* Drop every epoch of @p group retired before @p cutoff (lock held). */
static void ctl_prune_now(mqe2e__ctl *c, const char *group, uint64_t cutoff)
{
    int n = mqe2e_keystore_group_prune(c->h.keystore, group, cutoff);
    mqe2e_protector_invalidate(c->h.protector, group);
    if (n > 0)
        ctl_log(c, MQE2E_LOG_INFO,
                "group '%s': %d retired epoch(s) dropped (grace set by the "
                "authority after a member left)",
                group, n);
}

/* A retired epoch whose grace the authority cut: drop it (and older ones)
 * when that grace ends, at once if it already did (lock held). */
static void ctl_schedule_prune(mqe2e__ctl *c, const mqe2e_key_bundle *b, uint64_t now)
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

static void ctl_prune_due(mqe2e__ctl *c, uint64_t now)
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

static void ctl_apply_update(mqe2e__ctl *c, const mqe2e_control_update *u, int from_push)
{
    uint64_t now = ctl_now();
    int rc;

    for (size_t i = 0; i < u->n_removed_groups; i++) {
        rc = mqe2e_keystore_group_remove(c->h.keystore, u->removed_groups[i].name);
        mqe2e_protector_invalidate(c->h.protector, u->removed_groups[i].name);
        if (rc == MQE2E_OK)
            ctl_log(c, MQE2E_LOG_INFO, "left group '%s'", u->removed_groups[i].name);
    }
    for (size_t i = 0; i < u->n_bundles; i++) {
        const mqe2e_key_bundle *b = &u->bundles[i];
        int known = mqe2e_keystore_group_filter(c->h.keystore, b->group) != NULL;
        rc = mqe2e_keystore_group_apply(c->h.keystore, b->group, b->topic_filter, b->epoch,
                                        b->secret, b->sender_id, b->retired_at, now);
        if (rc != MQE2E_OK) {
            ctl_log(c, MQE2E_LOG_ERROR, "cannot apply epoch %lu of group '%s': %s",
                    (unsigned long)b->epoch, b->group, mqe2e_error_name(rc));
            continue;
        }
        mqe2e_protector_invalidate(c->h.protector, b->group);
        /* Applied first, so the keystore holds the authority's retirement
         * time, then dropped when the authority's grace for it ends. */
        if (b->retired_at != 0 && b->grace_seconds != 0) ctl_schedule_prune(c, b, now);
        if (!known && c->h.owned_policy != NULL) {
            /* The default policy follows the keystore's groups. */
            rc = mqe2e_policy_add(c->h.owned_policy, b->topic_filter, MQE2E_POLICY_GROUP, b->group);
            if (rc != MQE2E_OK)
                ctl_log(c, MQE2E_LOG_WARNING, "no policy rule for new group '%s': %s", b->group,
                        mqe2e_error_name(rc));
        }
    }
    if (u->n_directories > 0) {
        /* Signed groups: who may sign under which sender id. A group that
         * turns signed changes what its protector accepts, so it re-reads. */
        rc = mqe2e_control_update_apply_directories(c->h.keystore, u);
        if (rc != MQE2E_OK)
            ctl_log(c, MQE2E_LOG_ERROR, "cannot apply signer directories: %s",
                    mqe2e_error_name(rc));
        for (size_t i = 0; i < u->n_directories; i++)
            ctl_grants_store(c, &u->directories[i]);
        for (size_t i = 0; i < u->n_directories; i++)
            mqe2e_protector_invalidate(c->h.protector, u->directories[i].group);
    }
    if (u->credential != NULL && u->credential_len > 0) {
        mqe2e_credential *cred = NULL;
        uint8_t dh_pk[32];
        (void)mqe2e_keystore_identity_public(c->h.keystore, NULL, dh_pk);
        rc = mqe2e_credential_verify(&cred, u->credential, u->credential_len, c->pin.sign_public,
                                     now);
        if (rc == MQE2E_OK && (strcmp(mqe2e_credential_client_id(cred), c->id) != 0 ||
                               sodium_memcmp(mqe2e_credential_dh_public(cred), dh_pk, 32) != 0))
            rc = MQE2E_ERR_AUTH;
        if (rc == MQE2E_OK)
            rc = mqe2e_keystore_set_credential(c->h.keystore, u->credential, u->credential_len);
        if (rc != MQE2E_OK)
            ctl_log(c, MQE2E_LOG_WARNING, "renewed credential refused: %s", mqe2e_error_name(rc));
        mqe2e_credential_free(cred);
    }
    ctl_adopt_revocations(c, u->revocation_list, u->revocation_list_len, 1);
    if (!from_push && u->push_seq > mqe2e_keystore_push_seq(c->h.keystore)) {
        /* The reply is the state as of that push: older pushes add nothing. */
        (void)mqe2e_keystore_set_push_seq(c->h.keystore, u->push_seq);
    }
    (void)mqe2e_keystore_flush(c->h.keystore);
}

/* ------------------------------------------------------------------ */
/* HELLO (lock held)                                                   */

static void ctl_hello_start(mqe2e__ctl *c)
{
    uint8_t *frame = malloc(MQE2E_CONTROL_MAX_FRAME_BYTES);
    uint8_t dh_sk[32];
    size_t len = 0;
    uint64_t serial = 0;
    const uint8_t *cb;
    size_t cl;
    int rc;

    if (frame == NULL) return;
    if (mqe2e_keystore_credential(c->h.keystore, &cb, &cl) == MQE2E_OK) {
        mqe2e_credential *cred = NULL;
        /* Expired credentials still name a serial worth reporting. */
        if (mqe2e_credential_verify(&cred, cb, cl, c->pin.sign_public, ctl_now()) == MQE2E_OK)
            serial = mqe2e_credential_serial(cred);
        mqe2e_credential_free(cred);
    }
    mqe2e_hello_client_free(c->hello);
    c->hello = NULL;
    rc = mqe2e_keystore_dh_secret(c->h.keystore, dh_sk);
    if (rc == MQE2E_OK)
        rc = mqe2e_hello_begin(&c->hello, frame, MQE2E_CONTROL_MAX_FRAME_BYTES, &len,
                               c->pin.control_prefix, c->id, c->pin.authority_id, dh_sk,
                               c->pin.dh_public, serial);
    sodium_memzero(dh_sk, sizeof dh_sk);
    if (rc == MQE2E_OK) rc = ctl_enqueue(c, c->authority_topic, frame, len, 1, 0);
    if (rc == MQE2E_OK) {
        c->hello_started = ctl_now();
        c->k.hellos_sent++;
        ctl_log(c, MQE2E_LOG_DEBUG, "HELLO sent (%zu bytes)", len);
    } else {
        mqe2e_hello_client_free(c->hello);
        c->hello = NULL;
        ctl_log(c, MQE2E_LOG_ERROR, "cannot start HELLO: %s", mqe2e_error_name(rc));
    }
    free(frame);
}

static void ctl_on_hello(mqe2e__ctl *c, const uint8_t *data, size_t len)
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
        (void)pthread_cond_broadcast(&c->drained);
        ctl_log(c, MQE2E_LOG_ERROR, "HELLO refused by the authority: %s",
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
        ctl_log(c, MQE2E_LOG_WARNING, "HELLO reply refused: %s", mqe2e_error_name(rc));
        return;
    }
    c->k.handshakes_ok++;
    c->hello_done = 1;
    c->hello_answered_sent = c->hello_started;
    ctl_log(c, MQE2E_LOG_INFO, "HELLO reply (%zu bytes): %zu key bundles", len, u.n_bundles);
    ctl_apply_update(c, &u, 0);
    ctl_heard(c);
    mqe2e_control_update_wipe(&u);
}

static void ctl_on_push(mqe2e__ctl *c, const uint8_t *data, size_t len)
{
    mqe2e_control_update u;
    uint8_t dh_sk[32];
    int rc;

    memset(&u, 0, sizeof u);
    rc = mqe2e_keystore_dh_secret(c->h.keystore, dh_sk);
    if (rc == MQE2E_OK)
        rc =
            mqe2e_push_open(&u, dh_sk, c->pin.dh_public, c->pin.control_prefix, c->pin.authority_id,
                            data, len, mqe2e_keystore_push_seq(c->h.keystore));
    sodium_memzero(dh_sk, sizeof dh_sk);
    if (rc != MQE2E_OK) {
        c->k.pushes_refused++;
        ctl_log(c, MQE2E_LOG_WARNING, "PUSH refused: %s", mqe2e_error_name(rc));
        return;
    }
    ctl_apply_update(c, &u, 1);
    rc = mqe2e_keystore_set_push_seq(c->h.keystore, u.push_seq);
    if (rc != MQE2E_OK)
        ctl_log(c, MQE2E_LOG_ERROR, "cannot record push %llu: %s", (unsigned long long)u.push_seq,
                mqe2e_error_name(rc));
    c->k.pushes_applied++;
    ctl_heard(c);
    ctl_log(c, MQE2E_LOG_INFO, "PUSH %llu applied: %zu bundles, %zu groups removed",
            (unsigned long long)u.push_seq, u.n_bundles, u.n_removed_groups);
    mqe2e_control_update_wipe(&u);
}

/* ------------------------------------------------------------------ */
/* Channels (lock held)                                                 */

static ctl_peer *peer_find(mqe2e__ctl *c, const char *id, int create)
{
    for (ctl_peer *p = c->peers; p != NULL; p = p->next)
        if (strcmp(p->id, id) == 0) return p;
    if (!create || strlen(id) > MQE2E_ID_MAX) return NULL;
    ctl_peer *p = calloc(1, sizeof *p);
    if (p == NULL) return NULL;
    memcpy(p->id, id, strlen(id) + 1U);
    p->next = c->peers;
    c->peers = p;
    return p;
}

static int ctl_channel_config(mqe2e__ctl *c, mqe2e_channel_config *cfg, uint8_t dh_sk[32],
                              const char *peer)
{
    const uint8_t *cred;
    size_t cred_len;
    int rc = mqe2e_keystore_credential(c->h.keystore, &cred, &cred_len);
    if (rc != MQE2E_OK) return MQE2E_ERR_NO_KEY;
    rc = mqe2e_keystore_dh_secret(c->h.keystore, dh_sk);
    if (rc != MQE2E_OK) return rc;
    cfg->prefix = c->pin.control_prefix;
    cfg->local_id = c->id;
    cfg->local_dh_secret = dh_sk;
    cfg->local_credential = cred;
    cfg->local_credential_len = cred_len;
    cfg->authority_sign_public = c->pin.sign_public;
    cfg->peer_id = peer;
    return MQE2E_OK;
}

static int ctl_channel_initiate(mqe2e__ctl *c, ctl_peer *p)
{
    mqe2e_channel_config cfg;
    uint8_t dh_sk[32];
    uint8_t frame[4096];
    char topic[sizeof c->inbox];
    size_t len = 0;
    int rc;

    peer_reset(p);
    p->started = ctl_now();
    rc = ctl_channel_config(c, &cfg, dh_sk, p->id);
    if (rc == MQE2E_OK)
        rc = mqe2e_channel_initiate(&p->ch, frame, sizeof frame, &len, &cfg, ctl_now());
    sodium_memzero(dh_sk, sizeof dh_sk);
    if (rc != MQE2E_OK) return rc;
    p->initiator = 1;
    client_inbox(topic, sizeof topic, c, p->id);
    ctl_log(c, MQE2E_LOG_DEBUG, "CHANNEL step 1 to '%s' (%zu bytes)", p->id, len);
    return ctl_enqueue(c, topic, frame, len, 1, 0);
}

static int ctl_channel_send(mqe2e__ctl *c, ctl_peer *p, const char *topic, const uint8_t *pt,
                            size_t pt_len, int qos, int retained)
{
    size_t cap = mqe2e_envelope_sealed_bound(pt_len);
    uint8_t *buf = malloc(cap > 0 ? cap : 1U);
    size_t len = 0;
    int rc;

    if (buf == NULL) return MQE2E_ERR_NOMEM;
    rc = mqe2e_channel_seal(p->ch, buf, cap, &len, topic, pt, pt_len, ctl_now());
    if (rc == MQE2E_OK) rc = ctl_enqueue(c, topic, buf, len, qos, retained);
    if (rc == MQE2E_OK) c->k.channel_sent++;
    free(buf);
    return rc;
}

static void ctl_channel_flush(mqe2e__ctl *c, ctl_peer *p)
{
    ctl_pending *q = p->pending;
    while (q != NULL) {
        int rc = ctl_channel_send(c, p, q->topic, q->pt, q->len, q->qos, q->retained);
        if (rc != MQE2E_OK)
            ctl_log(c, MQE2E_LOG_WARNING, "queued message to '%s' lost: %s", p->id,
                    mqe2e_error_name(rc));
        q = q->next;
    }
    peer_drop_pending(p);
}

/* 1 when @p p holds a responder handshake still waiting for step 3. */
static int peer_half_open(const ctl_peer *p)
{
    return p->hs != NULL ||
           (p->ch != NULL && !p->initiator && !mqe2e_channel_is_established(p->ch));
}

/* Take one step 1 from the global token bucket; 0 when it is empty. */
static int ctl_step1_take(mqe2e__ctl *c, uint64_t ms)
{
    const uint64_t cap = (uint64_t)CTL_STEP1_BURST * 1000U;
    if (c->step1_ms == 0) {
        c->step1_tokens = cap;
    } else if (ms > c->step1_ms) {
        uint64_t add = (ms - c->step1_ms) * CTL_STEP1_RATE;
        c->step1_tokens = (add >= cap || cap - add < c->step1_tokens) ? cap : c->step1_tokens + add;
    }
    if (ms > c->step1_ms || c->step1_ms == 0) c->step1_ms = ms;
    if (c->step1_tokens < 1000U) return 0;
    c->step1_tokens -= 1000U;
    return 1;
}

/* Make room for one more half-open responder handshake by dropping the
 * oldest one (never @p keep, never an established channel). */
static void ctl_half_open_make_room(mqe2e__ctl *c, const ctl_peer *keep)
{
    size_t n = 0;
    ctl_peer **victim = NULL;
    for (ctl_peer **pp = &c->peers; *pp != NULL; pp = &(*pp)->next) {
        if (!peer_half_open(*pp)) continue;
        n++;
        if (*pp != keep && (victim == NULL || (*pp)->resp_ms < (*victim)->resp_ms)) victim = pp;
    }
    if (n < CTL_HALF_OPEN_MAX || victim == NULL) return;
    ctl_peer *v = *victim;
    ctl_log(c, MQE2E_LOG_DEBUG, "half-open CHANNEL from '%s' dropped: too many", v->id);
    if (v->hs != NULL) {
        mqe2e_channel_free(v->hs);
        v->hs = NULL;
        return;
    }
    peer_reset(v);
    if (v->pending == NULL) {
        *victim = v->next;
        free(v);
    }
}

static void ctl_on_channel_step1(mqe2e__ctl *c, const mqe2e_control_frame *f, const uint8_t *data,
                                 size_t len)
{
    uint8_t out[4096];
    size_t out_len = 0;
    char topic[sizeof c->inbox];
    mqe2e_channel_config cfg;
    uint8_t dh_sk[32];
    mqe2e_channel *ch = NULL;
    uint64_t ms = mqe2e__plugin_monotonic_ms();
    int rc;

    ctl_peer *p = peer_find(c, f->from, 0);
    /* Both sides started at once: the smaller id stays the initiator. */
    if (p != NULL && p->initiator && p->ch != NULL && !mqe2e_channel_is_established(p->ch) &&
        strcmp(c->id, f->from) < 0) {
        c->k.control_ignored++;
        return;
    }
    /* Refused before any DH work or allocation. */
    if (p != NULL && peer_half_open(p) && ms - p->resp_ms < CTL_STEP1_PEER_MS) {
        c->k.channel_rate_limited++;
        return;
    }
    if (c->n_out >= CTL_STEP1_BACKLOG || !ctl_step1_take(c, ms)) {
        c->k.channel_rate_limited++;
        return;
    }
    rc = ctl_channel_config(c, &cfg, dh_sk, f->from);
    if (rc == MQE2E_OK)
        rc = mqe2e_channel_accept(&ch, out, sizeof out, &out_len, &cfg, data, len, ctl_now());
    sodium_memzero(dh_sk, sizeof dh_sk);
    if (rc != MQE2E_OK) {
        c->k.handshakes_failed++;
        ctl_log(c, MQE2E_LOG_WARNING, "CHANNEL step 1 from '%s' refused: %s", f->from,
                mqe2e_error_name(rc));
        return;
    }
    if (p == NULL || !peer_half_open(p)) ctl_half_open_make_room(c, p);
    if (p == NULL) p = peer_find(c, f->from, 1);
    if (p == NULL) {
        mqe2e_channel_free(ch);
        return;
    }
    if (p->ch != NULL && mqe2e_channel_is_established(p->ch)) {
        /* Maybe the peer restarted, maybe a forgery: step 3 decides. */
        mqe2e_channel_free(p->hs);
        p->hs = ch;
    } else {
        peer_reset(p);
        p->ch = ch;
        p->initiator = 0;
        p->started = ctl_now();
    }
    p->resp_ms = ms;
    client_inbox(topic, sizeof topic, c, f->from);
    (void)ctl_enqueue(c, topic, out, out_len, 1, 0);
}

/* Step 3 for a handshake that replaces an established channel. */
static void ctl_on_channel_replacement(mqe2e__ctl *c, ctl_peer *p, const char *topic,
                                       const uint8_t *data, size_t len)
{
    uint8_t out[4096];
    size_t out_len = 0;
    int rc = mqe2e_channel_handle(p->hs, out, sizeof out, &out_len, data, len, c->rl, ctl_now());
    if (rc == MQE2E_ERR_STATE || rc == MQE2E_ERR_DECODE) {
        c->k.control_ignored++;
        return;
    }
    if (rc != MQE2E_OK) {
        c->k.handshakes_failed++;
        if (peer_revoked(c, p->id)) c->k.revoked_refused++;
        ctl_log(c, MQE2E_LOG_WARNING, "CHANNEL with '%s' failed: %s", p->id, mqe2e_error_name(rc));
        /* The established channel stays. */
        mqe2e_channel_free(p->hs);
        p->hs = NULL;
        return;
    }
    if (out_len > 0) (void)ctl_enqueue(c, topic, out, out_len, 1, 0);
    if (mqe2e_channel_is_established(p->hs)) {
        mqe2e_channel_free(p->ch);
        p->ch = p->hs;
        p->hs = NULL;
        p->initiator = 0;
        c->k.handshakes_ok++;
        ctl_log(c, MQE2E_LOG_INFO, "channel with '%s' established", p->id);
        ctl_channel_flush(c, p);
    }
}

static void ctl_on_channel(mqe2e__ctl *c, const mqe2e_control_frame *f, const uint8_t *data,
                           size_t len)
{
    uint8_t out[4096];
    size_t out_len = 0;
    char topic[sizeof c->inbox];
    int rc;

    if (peer_revoked(c, f->from)) {
        c->k.revoked_refused++;
        ctl_log(c, MQE2E_LOG_WARNING, "channel from revoked '%s' refused", f->from);
        return;
    }
    if (strcmp(f->from, c->id) == 0) {
        c->k.control_ignored++;
        return;
    }
    if (f->step == 1) {
        ctl_on_channel_step1(c, f, data, len);
        return;
    }
    ctl_peer *p = peer_find(c, f->from, 0);
    if (p == NULL) {
        c->k.control_ignored++;
        return;
    }
    client_inbox(topic, sizeof topic, c, f->from);
    if (p->hs != NULL) {
        ctl_on_channel_replacement(c, p, topic, data, len);
        return;
    }
    if (p->ch == NULL) {
        c->k.control_ignored++;
        return;
    }
    rc = mqe2e_channel_handle(p->ch, out, sizeof out, &out_len, data, len, c->rl, ctl_now());
    if (rc == MQE2E_ERR_STATE || rc == MQE2E_ERR_DECODE) {
        c->k.control_ignored++;
        return;
    }
    if (rc != MQE2E_OK) {
        c->k.handshakes_failed++;
        if (peer_revoked(c, f->from)) c->k.revoked_refused++;
        ctl_log(c, MQE2E_LOG_WARNING, "CHANNEL with '%s' failed: %s", f->from,
                mqe2e_error_name(rc));
        peer_reset(p);
        return;
    }
    if (out_len > 0) (void)ctl_enqueue(c, topic, out, out_len, 1, 0);
    if (mqe2e_channel_is_established(p->ch)) {
        c->k.handshakes_ok++;
        ctl_log(c, MQE2E_LOG_INFO, "channel with '%s' established", p->id);
        ctl_channel_flush(c, p);
    }
}

/* ------------------------------------------------------------------ */
/* Hold queue                                                           */

/* 1 when the envelope on a group topic names an epoch newer than the
 * keystore's current one for that group. A group the keystore does not hold
 * at all is not waited for: it may have been left or never joined, and
 * holding would make every message on it cost a HELLO. Lock held. */
/* What to do with a group envelope (lock held): CTL_EPOCH_KNOWN (the normal
 * path opens or drops it), CTL_EPOCH_HOLD (a newer epoch within reach:
 * hold it and ask), CTL_EPOCH_REFUSE (an epoch too far ahead to be a real
 * rotation: dropped as no_key at once, never held). */
enum { CTL_EPOCH_KNOWN, CTL_EPOCH_HOLD, CTL_EPOCH_REFUSE, CTL_EPOCH_NOT_GRANTED };

static int ctl_epoch_verdict(mqe2e__ctl *c, const char *group, const char *topic,
                             const uint8_t *data, size_t len, uint32_t *ahead)
{
    mqe2e_envelope_view v;
    uint32_t cur;
    *ahead = 0;
    if (mqe2e_envelope_parse(&v, data, len) != MQE2E_OK) return CTL_EPOCH_KNOWN;
    if (v.header.mode == MQE2E_MODE_CHANNEL) return CTL_EPOCH_KNOWN;
    if (mqe2e_keystore_group_current_epoch(c->h.keystore, group, &cur) != MQE2E_OK)
        return CTL_EPOCH_KNOWN;
    if (v.header.epoch > cur) {
        *ahead = v.header.epoch - cur;
        return *ahead > CTL_HOLD_EPOCHS_AHEAD ? CTL_EPOCH_REFUSE : CTL_EPOCH_HOLD;
    }
    /* Signed groups: the signer must be granted `pub` on this topic
     * (credentials bind grants). Until this session's first directory the
     * grants are unknown: held like an unknown epoch, not let through. */
    if (mqe2e_keystore_group_is_signed(c->h.keystore, group) == 1) {
        int g = ctl_grant_check(c, group, topic, v.header.sender_id);
        if (g == MQE2E_ERR_GRANT) return CTL_EPOCH_NOT_GRANTED;
        if (g == MQE2E_ERR_NO_KEY) return CTL_EPOCH_HOLD;
    }
    return CTL_EPOCH_KNOWN;
}

/* Quotas of one held message (lock held): a single message at most 1/8 of
 * the byte bound, one topic at most 1/8 of the count and 1/4 of the bytes,
 * so that one client publishing forgeries cannot fill the queue for all. */
static int ctl_hold_quota_ok(const mqe2e__ctl *c, const char *topic, size_t len)
{
    size_t n = 0, b = 0;
    size_t cost = len + strlen(topic);
    size_t max_count = c->h.hold_count / 8U > 0 ? c->h.hold_count / 8U : 1U;
    if (cost > c->h.hold_bytes / 8U) return 0;
    mqe2e_holdq_topic_usage(c->holdq, topic, &n, &b);
    return n < max_count && b + cost <= c->h.hold_bytes / 4U;
}

/* Make room for a message `ahead` epochs ahead (lock held): while its topic
 * is over its quota or the queue is full, evict the held message furthest
 * ahead (on the topic, then anywhere) if it is further ahead than this one.
 * A genuine rotation is one epoch ahead; a forger naming epochs further out
 * cannot push it out. Returns how many were evicted (the caller counts them
 * as no_key). */
static size_t ctl_hold_make_room(mqe2e__ctl *c, const char *topic, size_t len, uint32_t ahead)
{
    size_t evicted = 0;
    while (!ctl_hold_quota_ok(c, topic, len) &&
           mqe2e_holdq_evict_worst(c->holdq, topic, ahead) == MQE2E_OK)
        evicted++;
    while ((mqe2e_holdq_count(c->holdq) >= c->h.hold_count ||
            len + strlen(topic) > c->h.hold_bytes - mqe2e_holdq_bytes(c->holdq)) &&
           mqe2e_holdq_evict_worst(c->holdq, NULL, ahead) == MQE2E_OK)
        evicted++;
    return evicted;
}

static void ctl_maybe_trigger_hello(mqe2e__ctl *c)
{
    uint64_t now = ctl_now();
    if (c->hello != NULL && now - c->hello_started < CTL_RETRY_SECONDS) return;
    if (c->last_trigger != 0 && now - c->last_trigger < CTL_TRIGGER_SECONDS) return;
    c->last_trigger = now;
    ctl_hello_start(c);
}

/*
 * Hand every held message whose key is now known to the normal receive path,
 * in arrival order; the others go back to the tail keeping their arrival
 * time, so their relative order is kept too. cb_lock held, lock NOT held.
 */
static void ctl_release(mqe2e__ctl *c)
{
    (void)pthread_mutex_lock(c->h.lock);
    size_t n = mqe2e_holdq_count(c->holdq);
    (void)pthread_mutex_unlock(c->h.lock);
    for (size_t i = 0; i < n; i++) {
        mqe2e_held *h = NULL;
        mqe2e_policy_kind kind;
        const char *target = NULL;
        int ready = 0, denied = 0, forged = 0, v = CTL_EPOCH_KNOWN;
        uint32_t ahead = 0;

        (void)pthread_mutex_lock(c->h.lock);
        if (mqe2e_holdq_pop(c->holdq, &h) != MQE2E_OK) {
            (void)pthread_mutex_unlock(c->h.lock);
            break;
        }
        if (mqe2e_policy_lookup(c->h.policy, h->topic, &kind, &target) == MQE2E_OK &&
            kind == MQE2E_POLICY_GROUP && target != NULL)
            v = ctl_epoch_verdict(c, target, h->topic, h->data, h->len, &ahead);
        if (v == CTL_EPOCH_NOT_GRANTED) {
            denied = 1;
            c->k.hold_dropped++;
            /* NOLINTNEXTLINE(bugprone-branch-clone): same outcome, another reason */
        } else if (v != CTL_EPOCH_HOLD) {
            ready = 1;
        } else if (ahead > 0 && h->arrived_at < c->hello_answered_sent) {
            /* It arrived before we sent a HELLO the authority has answered:
             * a genuine sender had its epoch from the authority before that,
             * so the reply would have carried it. Forged: drop it now rather
             * than let it hold room until it ages out. */
            forged = 1;
            c->k.hold_dropped++;
        } else if (mqe2e_holdq_push_ranked(c->holdq, h->topic, h->data, h->len, h->tag,
                                           h->arrived_at, ahead) != MQE2E_OK) {
            ready = 1; /* cannot happen (it fitted before); the normal path counts it */
        }
        if (ready) c->k.released++;
        (void)pthread_mutex_unlock(c->h.lock);
        if (denied) c->h.dropped(c->h.ctx, h->topic, MQE2E_ERR_GRANT);
        if (forged) c->h.dropped(c->h.ctx, h->topic, MQE2E_ERR_NO_KEY);
        if (ready && c->h.deliver != NULL)
            (void)c->h.deliver(c->h.ctx, h->topic, h->data, h->len, h->tag);
        mqe2e_held_free(h);
    }
}

/* Drop what waited too long (counted as no_key). Lock NOT held. */
static void ctl_expire(mqe2e__ctl *c)
{
    size_t n;
    (void)pthread_mutex_lock(c->h.lock);
    n = mqe2e_holdq_expire(c->holdq, ctl_now());
    c->k.hold_dropped += n;
    (void)pthread_mutex_unlock(c->h.lock);
    for (size_t i = 0; i < n; i++)
        c->h.dropped(c->h.ctx, "(held)", MQE2E_ERR_NO_KEY);
}

/* ------------------------------------------------------------------ */
/* Routing                                                              */

int mqe2e__ctl_route(mqe2e__ctl *c, const char *topic, const uint8_t *data, size_t len,
                     uint32_t tag, int can_hold, uint8_t **pt, size_t *pt_len)
{
    mqe2e_policy_kind kind;
    const char *target = NULL;
    int released = 0;
    int rc;

    *pt = NULL;
    *pt_len = 0;
    if (c == NULL || topic == NULL) return MQE2E__ROUTE_PASS;
    if (strcmp(topic, c->inbox) == 0) {
        mqe2e_control_frame f;
        (void)pthread_mutex_lock(c->h.lock);
        rc = mqe2e_control_frame_decode(&f, data, len);
        if (rc != MQE2E_OK) {
            c->k.control_ignored++;
        } else {
            switch (f.kind) {
            case MQE2E_CONTROL_HELLO:
                ctl_on_hello(c, data, len);
                released = 1;
                break;
            case MQE2E_CONTROL_PUSH:
                ctl_on_push(c, data, len);
                released = 1;
                break;
            case MQE2E_CONTROL_CHANNEL:
                ctl_on_channel(c, &f, data, len);
                break;
            default:
                c->k.control_ignored++;
                break;
            }
        }
        (void)pthread_mutex_unlock(c->h.lock);
        if (released && can_hold) ctl_release(c);
        return MQE2E__ROUTE_CONSUMED;
    }
    if (strcmp(topic, c->revocations_topic) == 0) {
        (void)pthread_mutex_lock(c->h.lock);
        ctl_adopt_revocations(c, data, len, 0);
        (void)pthread_mutex_unlock(c->h.lock);
        return MQE2E__ROUTE_CONSUMED;
    }
    (void)pthread_mutex_lock(c->h.lock);
    rc = mqe2e_policy_lookup(c->h.policy, topic, &kind, &target);
    if (rc == MQE2E_OK && kind == MQE2E_POLICY_PLAINTEXT && ctl_signed_covers(c, topic)) {
        (void)pthread_mutex_unlock(c->h.lock);
        c->h.dropped(c->h.ctx, topic, MQE2E_ERR_POLICY);
        return MQE2E__ROUTE_CONSUMED;
    }
    if (rc != MQE2E_OK || target == NULL) {
        (void)pthread_mutex_unlock(c->h.lock);
        return MQE2E__ROUTE_PASS;
    }
    if (kind == MQE2E_POLICY_CHANNEL) {
        ctl_peer *p = peer_find(c, target, 0);
        uint8_t *buf = NULL;
        size_t out_len = 0;
        if (peer_revoked(c, target)) {
            c->k.revoked_refused++;
            rc = MQE2E_ERR_AUTH;
        } else if (p == NULL || p->ch == NULL || !mqe2e_channel_is_established(p->ch)) {
            rc = MQE2E_ERR_NO_KEY;
        } else if ((buf = malloc(len > 0 ? len : 1U)) == NULL) {
            rc = MQE2E_ERR_NOMEM;
        } else {
            rc = mqe2e_channel_open(p->ch, buf, len, &out_len, topic, data, len, ctl_now());
        }
        if (rc == MQE2E_OK) c->k.channel_opened++;
        (void)pthread_mutex_unlock(c->h.lock);
        if (rc != MQE2E_OK) {
            free(buf);
            c->h.dropped(c->h.ctx, topic, rc);
            return MQE2E__ROUTE_CONSUMED;
        }
        *pt = buf;
        *pt_len = out_len;
        return MQE2E__ROUTE_PLAINTEXT;
    }
    if (kind != MQE2E_POLICY_GROUP) {
        (void)pthread_mutex_unlock(c->h.lock);
        return MQE2E__ROUTE_PASS;
    }
    uint32_t ahead = 0;
    int verdict = ctl_epoch_verdict(c, target, topic, data, len, &ahead);
    if (verdict == CTL_EPOCH_NOT_GRANTED) {
        (void)pthread_mutex_unlock(c->h.lock);
        c->h.dropped(c->h.ctx, topic, MQE2E_ERR_GRANT);
        return MQE2E__ROUTE_CONSUMED;
    }
    /* A message of a known epoch is never held, even behind held ones: a
     * forger's invented epoch must not delay genuine traffic. (Order is kept
     * per sender: a sender never goes back to an older epoch.) */
    if (verdict == CTL_EPOCH_KNOWN || (!can_hold && verdict == CTL_EPOCH_HOLD)) {
        if (verdict == CTL_EPOCH_HOLD) ctl_maybe_trigger_hello(c);
        (void)pthread_mutex_unlock(c->h.lock);
        return MQE2E__ROUTE_PASS;
    }
    /* Make room from what waited too long before judging the bounds. */
    size_t expired = mqe2e_holdq_expire(c->holdq, ctl_now());
    c->k.hold_dropped += expired;
    if (verdict != CTL_EPOCH_REFUSE) {
        size_t evicted = ctl_hold_make_room(c, topic, len, ahead);
        c->k.hold_dropped += evicted;
        expired += evicted; /* counted as no_key below, like the expired ones */
    }
    if (verdict == CTL_EPOCH_REFUSE || !ctl_hold_quota_ok(c, topic, len))
        rc = MQE2E_ERR_EXHAUSTED;
    else
        rc = mqe2e_holdq_push_ranked(c->holdq, topic, data, len, tag, ctl_now(), ahead);
    if (rc == MQE2E_OK) {
        c->k.held++;
        ctl_maybe_trigger_hello(c);
    } else {
        c->k.hold_dropped++;
    }
    (void)pthread_mutex_unlock(c->h.lock);
    for (size_t i = 0; i < expired; i++)
        c->h.dropped(c->h.ctx, "(held)", MQE2E_ERR_NO_KEY);
    if (rc != MQE2E_OK) c->h.dropped(c->h.ctx, topic, MQE2E_ERR_NO_KEY);
    return MQE2E__ROUTE_CONSUMED;
}

int mqe2e__ctl_publish(mqe2e__ctl *c, const char *topic, const uint8_t *pt, size_t pt_len, int qos,
                       int retained, int *handled)
{
    mqe2e_policy_kind kind;
    const char *target = NULL;
    int rc;

    *handled = 0;
    if (c == NULL) return MQE2E_OK;
    (void)pthread_mutex_lock(c->h.lock);
    rc = mqe2e_policy_lookup(c->h.policy, topic, &kind, &target);
    if (rc == MQE2E_OK && kind == MQE2E_POLICY_PLAINTEXT && ctl_signed_covers(c, topic)) {
        /* A plaintext rule cannot lift a signed group's protection. */
        *handled = 1;
        ctl_log(c, MQE2E_LOG_ERROR,
                "refused to publish '%s' in clear: a signed group covers it (a plaintext rule "
                "cannot remove signing)",
                topic);
        rc = MQE2E_ERR_POLICY;
        goto out;
    }
    if (rc == MQE2E_OK && kind == MQE2E_POLICY_GROUP && !ctl_fresh(c)) {
        /* Not heard from the authority within the bound: the group may have
         * rotated away from a revoked member behind a broker that drops our
         * pushes and replies. Refuse rather than seal under a stale epoch. */
        *handled = 1;
        c->k.stale_refused++;
        if (!c->stale_reported) {
            c->stale_reported = 1;
            if (!c->refused && c->fresh_ms != 0 &&
                !ctl_list_fresh(c, mqe2e__plugin_monotonic_ms()))
                ctl_log(c, MQE2E_LOG_ERROR,
                        "revocation list version %llu not renewed within its validity of %llu s: "
                        "not sealing on groups until the authority sends a newer one",
                        (unsigned long long)mqe2e_revocation_list_version(c->rl),
                        (unsigned long long)(c->rl_valid_ms / 1000U));
            else
                ctl_log(c, MQE2E_LOG_ERROR,
                        c->refused ? "the authority refused this client: not sealing on groups"
                        : c->fresh_ms == 0
                            ? "no answer from the authority yet: not sealing on groups until "
                              "its HELLO reply"
                            : "nothing heard from the authority for over %llu s: not sealing on "
                              "groups until it answers",
                        (unsigned long long)(c->fresh_max_ms / 1000U));
        }
        rc = MQE2E_ERR_EXPIRED;
        goto out;
    }
    if (rc != MQE2E_OK || kind != MQE2E_POLICY_CHANNEL) {
        (void)pthread_mutex_unlock(c->h.lock);
        return MQE2E_OK;
    }
    *handled = 1;
    if (target == NULL || !mqe2e_client_id_valid(target)) {
        rc = MQE2E_ERR_POLICY;
        goto out;
    }
    if (pt_len > MQE2E_CHANNEL_MAX_PLAINTEXT) {
        rc = MQE2E_ERR_TOO_LARGE;
        goto out;
    }
    if (peer_revoked(c, target)) {
        c->k.revoked_refused++;
        rc = MQE2E_ERR_AUTH;
        goto out;
    }
    ctl_peer *p = peer_find(c, target, 1);
    if (p == NULL) {
        rc = MQE2E_ERR_NOMEM;
        goto out;
    }
    if (p->ch != NULL && mqe2e_channel_is_established(p->ch)) {
        rc = ctl_channel_send(c, p, topic, pt, pt_len, qos, retained);
        goto out;
    }
    if (p->n_pending >= CTL_PENDING_MAX) {
        rc = MQE2E_ERR_EXHAUSTED;
        goto out;
    }
    ctl_pending *q = calloc(1, sizeof *q);
    if (q == NULL || (q->topic = strdup(topic)) == NULL ||
        (q->pt = malloc(pt_len > 0 ? pt_len : 1U)) == NULL) {
        if (q != NULL) free(q->topic);
        free(q);
        rc = MQE2E_ERR_NOMEM;
        goto out;
    }
    if (pt_len > 0) memcpy(q->pt, pt, pt_len);
    q->len = pt_len;
    q->qos = qos;
    q->retained = retained;
    if (p->pending_tail != NULL)
        p->pending_tail->next = q;
    else {
        p->pending = q;
        p->pending_since = ctl_now();
    }
    p->pending_tail = q;
    p->n_pending++;
    rc = MQE2E_OK;
    if (p->ch == NULL) {
        rc = ctl_channel_initiate(c, p);
        if (rc != MQE2E_OK) {
            /* Reported as failed, so it must not go out later either. */
            peer_reset(p);
            peer_drop_pending(p);
        }
    }
out:
    (void)pthread_mutex_unlock(c->h.lock);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Worker                                                               */

/* Timers; lock held. */
static void ctl_timers(mqe2e__ctl *c, int connected)
{
    uint64_t now = ctl_now();
    ctl_prune_due(c, now);
    if (!connected) return;
    /* Unanswered or failed: try again, a fresh handshake each time. */
    if (!c->hello_done && now - c->hello_started >= CTL_RETRY_SECONDS) {
        ctl_log(c, MQE2E_LOG_DEBUG, "no HELLO reply yet, retrying");
        ctl_hello_start(c);
    }
    /* Periodic HELLO: every third of the freshness bound, so that one lost
     * reply does not stop sealing. */
    uint64_t mono = mqe2e__plugin_monotonic_ms();
    if (c->hello_done && !c->refused && c->hello == NULL && c->fresh_ms != 0 &&
        (mono - c->fresh_ms >= c->fresh_max_ms / 3U ||
         (c->rl != NULL && c->rl_valid_ms != 0 && c->rl_heard_ms != 0 &&
          mono - c->rl_heard_ms >= c->rl_valid_ms / 3U))) {
        ctl_log(c, MQE2E_LOG_DEBUG, "periodic HELLO");
        c->hello_done = 0;
        ctl_hello_start(c);
    }
    if (now - c->last_renewal_check >= 60U) {
        const uint8_t *cb;
        size_t cl;
        c->last_renewal_check = now;
        if (c->hello == NULL && mqe2e_keystore_credential(c->h.keystore, &cb, &cl) == MQE2E_OK) {
            mqe2e_credential *cred = NULL;
            int rc = mqe2e_credential_verify(&cred, cb, cl, c->pin.sign_public, now);
            if (rc == MQE2E_ERR_EXPIRED ||
                (rc == MQE2E_OK &&
                 mqe2e_credential_needs_renewal(cred, now, MQE2E_CREDENTIAL_RENEW_NUM,
                                                MQE2E_CREDENTIAL_RENEW_DEN))) {
                ctl_log(c, MQE2E_LOG_INFO, "credential due for renewal: HELLO");
                ctl_hello_start(c);
            }
            mqe2e_credential_free(cred);
        }
    }
    for (ctl_peer *p = c->peers; p != NULL; p = p->next) {
        if (p->pending != NULL && now - p->pending_since >= CTL_PENDING_SECONDS) {
            ctl_log(c, MQE2E_LOG_WARNING, "no channel with '%s': %zu queued messages dropped",
                    p->id, p->n_pending);
            peer_drop_pending(p);
            if (p->ch != NULL && !mqe2e_channel_is_established(p->ch)) peer_reset(p);
            continue;
        }
        /* Unanswered, failed or never started: a fresh handshake, paced. */
        if (p->pending != NULL && (p->ch == NULL || !mqe2e_channel_is_established(p->ch)) &&
            now - p->started >= CTL_RETRY_SECONDS)
            (void)ctl_channel_initiate(c, p);
    }
}

static void *ctl_worker(void *arg)
{
    mqe2e__ctl *c = arg;

    (void)pthread_mutex_lock(c->h.lock);
    while (!c->stop) {
        while (c->out_head != NULL && !c->stop) {
            ctl_out *o = c->out_head;
            c->out_head = o->next;
            if (c->out_head == NULL) c->out_tail = NULL;
            c->n_out--;
            c->publishing = 1;
            (void)pthread_mutex_unlock(c->h.lock);
            if (o->len <= (size_t)INT_MAX) {
                int rc = c->h.publish(c->h.ctx, o->topic, o->data, o->len, o->qos, o->retained);
                /* Lost frames are not resent: every handshake retries by itself. */
                /* -3 is "disconnected" in both of Paho's code spaces. */
                if (rc != 0)
                    ctl_log(c, rc == MQTTCLIENT_DISCONNECTED ? MQE2E_LOG_INFO : MQE2E_LOG_WARNING,
                            "control publish to '%s' failed: %s", o->topic, c->h.strerror(rc));
                else
                    ctl_log(c, MQE2E_LOG_DEBUG, "published %zu bytes to '%s'", o->len, o->topic);
            }
            out_free(o);
            (void)pthread_mutex_lock(c->h.lock);
            c->publishing = 0;
            (void)pthread_cond_broadcast(&c->drained);
        }
        if (c->stop) break;
        struct timespec ts;
        (void)clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += CTL_TICK_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        (void)pthread_cond_timedwait(&c->cond, c->h.lock, &ts);
        if (c->stop) break;
        if (c->out_head != NULL) continue;
        int session_up = c->session_up;
        (void)pthread_mutex_unlock(c->h.lock);
        /* A reconnect Paho made by itself: do what connect() does. */
        int connected = c->h.is_connected(c->h.ctx);
        if (connected && !session_up) (void)mqe2e__ctl_connected(c);
        (void)pthread_mutex_lock(c->h.lock);
        if (!connected) c->session_up = 0;
        ctl_timers(c, connected);
        size_t held = mqe2e_holdq_count(c->holdq);
        (void)pthread_mutex_unlock(c->h.lock);
        if (held > 0) {
            /* The application's callbacks are serialised by cb_lock. */
            (void)pthread_mutex_lock(c->h.cb_lock);
            ctl_expire(c);
            ctl_release(c);
            (void)pthread_mutex_unlock(c->h.cb_lock);
            /* What is still held arrived after the last answered HELLO was
             * sent (older unknown epochs were dropped as forged): ask again
             * (paced), so a message whose own trigger was paced away does
             * not wait for its age limit. */
            (void)pthread_mutex_lock(c->h.lock);
            if (connected && c->hello_done && mqe2e_holdq_count(c->holdq) > 0)
                ctl_maybe_trigger_hello(c);
            (void)pthread_mutex_unlock(c->h.lock);
        }
        (void)pthread_mutex_lock(c->h.lock);
    }
    (void)pthread_mutex_unlock(c->h.lock);
    return NULL;
}

/* ------------------------------------------------------------------ */

int mqe2e__ctl_new(mqe2e__ctl **out, const mqe2e__ctl_host *host)
{
    mqe2e__ctl *c;
    const uint8_t *rl;
    size_t rl_len;
    int rc;

    *out = NULL;
    c = calloc(1, sizeof *c);
    if (c == NULL) return MQE2E_ERR_NOMEM;
    c->h = *host;
    c->fresh_max_ms = (host->fresh_max > 0 ? host->fresh_max : MQE2E__FRESH_MAX_DEFAULT) * 1000U;
    rc = mqe2e_keystore_authority(host->keystore, &c->pin);
    if (rc != MQE2E_OK) {
        free(c);
        return rc;
    }
    const char *id = mqe2e_keystore_client_id(host->keystore);
    if (!mqe2e_client_id_valid(id) || !mqe2e_control_prefix_valid(c->pin.control_prefix)) {
        free(c);
        return MQE2E_ERR_INVALID_ARG;
    }
    memcpy(c->id, id, strlen(id) + 1U);
    client_inbox(c->inbox, sizeof c->inbox, c, c->id);
    (void)snprintf(c->revocations_topic, sizeof c->revocations_topic, "%s/revocations",
                   c->pin.control_prefix);
    (void)snprintf(c->authority_topic, sizeof c->authority_topic, "%s/authority",
                   c->pin.control_prefix);
    if (mqe2e_keystore_revocation_list(host->keystore, &rl, &rl_len, NULL) == MQE2E_OK)
        (void)mqe2e_revocation_list_verify(&c->rl, rl, rl_len, c->pin.sign_public);
    if (c->rl != NULL) (void)mqe2e_protector_set_revocations(host->protector, c->rl);
    rc = mqe2e_holdq_new(&c->holdq, host->hold_count, host->hold_bytes, host->hold_age);
    if (rc != MQE2E_OK) {
        mqe2e_revocation_list_free(c->rl);
        free(c);
        return rc;
    }
    if (pthread_cond_init(&c->cond, NULL) != 0) {
        mqe2e_holdq_free(c->holdq);
        mqe2e_revocation_list_free(c->rl);
        free(c);
        return MQE2E_ERR_NOMEM;
    }
    if (pthread_cond_init(&c->drained, NULL) != 0) {
        (void)pthread_cond_destroy(&c->cond);
        mqe2e_holdq_free(c->holdq);
        mqe2e_revocation_list_free(c->rl);
        free(c);
        return MQE2E_ERR_NOMEM;
    }
    /* Until connect(), the worker only waits. */
    c->session_up = 1;
    c->hello_done = 1;
    if (pthread_create(&c->worker, NULL, ctl_worker, c) != 0) {
        (void)pthread_cond_destroy(&c->drained);
        (void)pthread_cond_destroy(&c->cond);
        mqe2e_holdq_free(c->holdq);
        mqe2e_revocation_list_free(c->rl);
        free(c);
        return MQE2E_ERR_NOMEM;
    }
    c->worker_started = 1;
    *out = c;
    return MQE2E_OK;
}

void mqe2e__ctl_stop(mqe2e__ctl *c)
{
    if (c == NULL || !c->worker_started) return;
    (void)pthread_mutex_lock(c->h.lock);
    c->stop = 1;
    (void)pthread_cond_signal(&c->cond);
    (void)pthread_mutex_unlock(c->h.lock);
    (void)pthread_join(c->worker, NULL);
    c->worker_started = 0;
}

/* Nothing left for the worker to hand to Paho. Lock held. */
static int ctl_drained(const mqe2e__ctl *c, int wait_pending)
{
    if (c->out_head != NULL || c->publishing) return 0;
    if (wait_pending)
        for (const ctl_peer *p = c->peers; p != NULL; p = p->next)
            if (p->pending != NULL) return 0;
    return 1;
}

int mqe2e__ctl_flush(mqe2e__ctl *c, uint64_t timeout_ms, int wait_pending)
{
    uint64_t deadline = mqe2e__plugin_monotonic_ms() + timeout_ms;

    if (c == NULL) return MQE2E_OK;
    for (;;) {
        (void)pthread_mutex_lock(c->h.lock);
        int done = ctl_drained(c, wait_pending);
        int running = c->worker_started && !c->stop;
        (void)pthread_mutex_unlock(c->h.lock);
        if (done) return MQE2E_OK;
        if (!running) return MQE2E_ERR_STATE;
        /* Offline, the worker's publishes fail and handshakes cannot finish. */
        if (!c->h.is_connected(c->h.ctx)) return MQE2E_ERR_IO;
        uint64_t now = mqe2e__plugin_monotonic_ms();
        if (now >= deadline) return MQE2E_ERR_STATE;
        /* Short waits: handshake progress (pending -> outbox) is not signalled. */
        long wait_ms = deadline - now < 20U ? (long)(deadline - now) : 20L;
        struct timespec ts;
        (void)clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += wait_ms * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        (void)pthread_mutex_lock(c->h.lock);
        if (!ctl_drained(c, wait_pending))
            (void)pthread_cond_timedwait(&c->drained, c->h.lock, &ts);
        (void)pthread_mutex_unlock(c->h.lock);
    }
}

void mqe2e__ctl_free(mqe2e__ctl *c)
{
    if (c == NULL) return;
    mqe2e__ctl_stop(c);
    while (c->out_head != NULL) {
        ctl_out *o = c->out_head;
        c->out_head = o->next;
        out_free(o);
    }
    while (c->peers != NULL) {
        ctl_peer *p = c->peers;
        c->peers = p->next;
        peer_reset(p);
        peer_drop_pending(p);
        free(p);
    }
    mqe2e_hello_client_free(c->hello);
    mqe2e_holdq_free(c->holdq);
    mqe2e_revocation_list_free(c->rl);
    while (c->grant_sets != NULL) {
        ctl_grant_set *s = c->grant_sets;
        c->grant_sets = s->next;
        grant_set_free(s);
    }
    (void)pthread_cond_destroy(&c->drained);
    (void)pthread_cond_destroy(&c->cond);
    sodium_memzero(c, sizeof *c);
    free(c);
}

int mqe2e__ctl_connected(mqe2e__ctl *c)
{
    char *topics[2];
    int qos[2] = {1, 1};
    int rc;

    if (c == NULL) return MQE2E_OK;
    topics[0] = c->inbox;
    topics[1] = c->revocations_topic;
    rc = c->h.subscribe(c->h.ctx, 2, topics, qos);
    (void)pthread_mutex_lock(c->h.lock);
    if (rc == 0) {
        c->session_up = 1;
        c->hello_done = 0;
        ctl_hello_start(c);
    } else {
        ctl_log(c, MQE2E_LOG_ERROR, "cannot subscribe to the control topics: %s",
                c->h.strerror(rc));
    }
    (void)pthread_mutex_unlock(c->h.lock);
    return rc == 0 ? MQE2E_OK : MQE2E_ERR_IO;
}

void mqe2e__ctl_session_lost(mqe2e__ctl *c)
{
    if (c == NULL) return;
    (void)pthread_mutex_lock(c->h.lock);
    c->session_up = 0;
    (void)pthread_cond_signal(&c->cond);
    (void)pthread_mutex_unlock(c->h.lock);
}

void mqe2e__ctl_counters(mqe2e__ctl *c, mqe2e_control_counters *out)
{
    if (c == NULL) {
        memset(out, 0, sizeof *out);
        return;
    }
    (void)pthread_mutex_lock(c->h.lock);
    *out = c->k;
    (void)pthread_mutex_unlock(c->h.lock);
}

int mqe2e__ctl_wait_fresh(mqe2e__ctl *c, uint64_t timeout_ms)
{
    uint64_t deadline = mqe2e__plugin_monotonic_ms() + timeout_ms;
    int rc = MQE2E_ERR_EXPIRED;

    if (c == NULL) return MQE2E_OK;
    (void)pthread_mutex_lock(c->h.lock);
    for (;;) {
        if (ctl_fresh(c)) {
            rc = MQE2E_OK;
            break;
        }
        if (c->refused) {
            rc = MQE2E_ERR_POLICY;
            break;
        }
        uint64_t now = mqe2e__plugin_monotonic_ms();
        if (now >= deadline) break;
        /* Signalled by ctl_heard(); short waits in case a signal is missed. */
        long wait_ms = deadline - now < 50U ? (long)(deadline - now) : 50L;
        struct timespec ts;
        (void)clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += wait_ms * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        (void)pthread_cond_timedwait(&c->drained, c->h.lock, &ts);
    }
    (void)pthread_mutex_unlock(c->h.lock);
    return rc;
}
