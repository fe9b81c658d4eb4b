/*
 * The device session's pairwise channels (docs/PROTOCOL.md, CHANNEL): the
 * initiator and responder sides of the handshake, the step 1 limits, queued
 * plaintexts waiting for a handshake, and sending on an established channel.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal_session.h"

int mqe2e__sess_peer_revoked(const mqe2e_session *c, const char *peer)
{
    /* The id itself, not a replaced device's old serials (those are refused
     * by serial when a channel checks the peer's credential). */
    return c->rl != NULL && mqe2e_revocation_list_client_revoked(c->rl, peer);
}

void mqe2e__sess_peer_drop_pending(ctl_peer *p)
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

void mqe2e__sess_peer_reset(ctl_peer *p)
{
    mqe2e_channel_free(p->hs);
    p->hs = NULL;
    mqe2e_channel_free(p->ch);
    p->ch = NULL;
    p->initiator = 0;
    p->started = 0;
}

/* ------------------------------------------------------------------ */
/* Channels (lock held)                                                 */

ctl_peer *mqe2e__sess_peer_find(mqe2e_session *c, const char *id, int create)
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

static int ctl_channel_config(mqe2e_session *c, mqe2e_channel_config *cfg, uint8_t dh_sk[32],
                              const char *peer)
{
    const uint8_t *cred;
    size_t cred_len;
    int rc = mqe2e_keystore_credential(c->ks, &cred, &cred_len);
    if (rc != MQE2E_OK) return MQE2E_ERR_NO_KEY;
    rc = mqe2e_keystore_dh_secret(c->ks, dh_sk);
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

int mqe2e__sess_channel_initiate(mqe2e_session *c, ctl_peer *p)
{
    mqe2e_channel_config cfg;
    uint8_t dh_sk[32];
    uint8_t frame[4096];
    char topic[sizeof c->inbox];
    size_t len = 0;
    int rc;

    mqe2e__sess_peer_reset(p);
    p->started = c->t.wall_s;
    rc = ctl_channel_config(c, &cfg, dh_sk, p->id);
    if (rc == MQE2E_OK)
        rc = mqe2e_channel_initiate(&p->ch, frame, sizeof frame, &len, &cfg, c->t.wall_s);
    sodium_memzero(dh_sk, sizeof dh_sk);
    if (rc != MQE2E_OK) return rc;
    p->initiator = 1;
    mqe2e__sess_inbox(topic, sizeof topic, c, p->id);
    mqe2e__sess_log(c, MQE2E_SESSION_LOG_DEBUG, "CHANNEL step 1 to '%s' (%zu bytes)", p->id, len);
    return mqe2e__sess_enqueue(c, topic, frame, len, 1, 0);
}

int mqe2e__sess_channel_send(mqe2e_session *c, ctl_peer *p, const char *topic, const uint8_t *pt,
                            size_t pt_len, int qos, int retained)
{
    size_t cap = mqe2e_envelope_sealed_bound(pt_len);
    uint8_t *buf = malloc(cap > 0 ? cap : 1U);
    size_t len = 0;
    int rc;

    if (buf == NULL) return MQE2E_ERR_NOMEM;
    rc = mqe2e_channel_seal(p->ch, buf, cap, &len, topic, pt, pt_len, c->t.wall_s);
    if (rc == MQE2E_OK) rc = mqe2e__sess_enqueue(c, topic, buf, len, qos, retained);
    if (rc == MQE2E_OK) c->k.channel_sent++;
    free(buf);
    return rc;
}

static void ctl_channel_flush(mqe2e_session *c, ctl_peer *p)
{
    ctl_pending *q = p->pending;
    while (q != NULL) {
        int rc = mqe2e__sess_channel_send(c, p, q->topic, q->pt, q->len, q->qos, q->retained);
        if (rc != MQE2E_OK)
            mqe2e__sess_log(c, MQE2E_SESSION_LOG_WARNING, "queued message to '%s' lost: %s", p->id,
                    mqe2e_error_name(rc));
        q = q->next;
    }
    mqe2e__sess_peer_drop_pending(p);
}

/* 1 when @p p holds a responder handshake still waiting for step 3. */
static int peer_half_open(const ctl_peer *p)
{
    return p->hs != NULL ||
           (p->ch != NULL && !p->initiator && !mqe2e_channel_is_established(p->ch));
}

/* Take one step 1 from the global token bucket; 0 when it is empty. */
static int ctl_step1_take(mqe2e_session *c, uint64_t ms)
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
static void ctl_half_open_make_room(mqe2e_session *c, const ctl_peer *keep)
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
    mqe2e__sess_log(c, MQE2E_SESSION_LOG_DEBUG, "half-open CHANNEL from '%s' dropped: too many", v->id);
    if (v->hs != NULL) {
        mqe2e_channel_free(v->hs);
        v->hs = NULL;
        return;
    }
    mqe2e__sess_peer_reset(v);
    if (v->pending == NULL) {
        *victim = v->next;
        free(v);
    }
}

static void ctl_on_channel_step1(mqe2e_session *c, const mqe2e_control_frame *f, const uint8_t *data,
                                 size_t len)
{
    uint8_t out[4096];
    size_t out_len = 0;
    char topic[sizeof c->inbox];
    mqe2e_channel_config cfg;
    uint8_t dh_sk[32];
    mqe2e_channel *ch = NULL;
    uint64_t ms = c->t.mono_ms;
    int rc;

    ctl_peer *p = mqe2e__sess_peer_find(c, f->from, 0);
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
    if (c->n_publish + c->backlog >= CTL_STEP1_BACKLOG || !ctl_step1_take(c, ms)) {
        c->k.channel_rate_limited++;
        return;
    }
    rc = ctl_channel_config(c, &cfg, dh_sk, f->from);
    if (rc == MQE2E_OK)
        rc = mqe2e_channel_accept(&ch, out, sizeof out, &out_len, &cfg, data, len, c->t.wall_s);
    sodium_memzero(dh_sk, sizeof dh_sk);
    if (rc != MQE2E_OK) {
        c->k.handshakes_failed++;
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_WARNING, "CHANNEL step 1 from '%s' refused: %s", f->from,
                mqe2e_error_name(rc));
        return;
    }
    if (p == NULL || !peer_half_open(p)) ctl_half_open_make_room(c, p);
    if (p == NULL) p = mqe2e__sess_peer_find(c, f->from, 1);
    if (p == NULL) {
        mqe2e_channel_free(ch);
        return;
    }
    if (p->ch != NULL && mqe2e_channel_is_established(p->ch)) {
        /* Maybe the peer restarted, maybe a forgery: step 3 decides. */
        mqe2e_channel_free(p->hs);
        p->hs = ch;
    } else {
        mqe2e__sess_peer_reset(p);
        p->ch = ch;
        p->initiator = 0;
        p->started = c->t.wall_s;
    }
    p->resp_ms = ms;
    mqe2e__sess_inbox(topic, sizeof topic, c, f->from);
    (void)mqe2e__sess_enqueue(c, topic, out, out_len, 1, 0);
}

/* Step 3 for a handshake that replaces an established channel. */
static void ctl_on_channel_replacement(mqe2e_session *c, ctl_peer *p, const char *topic,
                                       const uint8_t *data, size_t len)
{
    uint8_t out[4096];
    size_t out_len = 0;
    int rc = mqe2e_channel_handle(p->hs, out, sizeof out, &out_len, data, len, c->rl, c->t.wall_s);
    if (rc == MQE2E_ERR_STATE || rc == MQE2E_ERR_DECODE) {
        c->k.control_ignored++;
        return;
    }
    if (rc != MQE2E_OK) {
        c->k.handshakes_failed++;
        if (mqe2e__sess_peer_revoked(c, p->id)) c->k.revoked_refused++;
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_WARNING, "CHANNEL with '%s' failed: %s", p->id, mqe2e_error_name(rc));
        /* The established channel stays. */
        mqe2e_channel_free(p->hs);
        p->hs = NULL;
        return;
    }
    if (out_len > 0) (void)mqe2e__sess_enqueue(c, topic, out, out_len, 1, 0);
    if (mqe2e_channel_is_established(p->hs)) {
        mqe2e_channel_free(p->ch);
        p->ch = p->hs;
        p->hs = NULL;
        p->initiator = 0;
        c->k.handshakes_ok++;
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_INFO, "channel with '%s' established", p->id);
        ctl_channel_flush(c, p);
    }
}

void mqe2e__sess_on_channel(mqe2e_session *c, const mqe2e_control_frame *f, const uint8_t *data,
                           size_t len)
{
    uint8_t out[4096];
    size_t out_len = 0;
    char topic[sizeof c->inbox];
    int rc;

    if (mqe2e__sess_peer_revoked(c, f->from)) {
        c->k.revoked_refused++;
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_WARNING, "channel from revoked '%s' refused", f->from);
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
    ctl_peer *p = mqe2e__sess_peer_find(c, f->from, 0);
    if (p == NULL) {
        c->k.control_ignored++;
        return;
    }
    mqe2e__sess_inbox(topic, sizeof topic, c, f->from);
    if (p->hs != NULL) {
        ctl_on_channel_replacement(c, p, topic, data, len);
        return;
    }
    if (p->ch == NULL) {
        c->k.control_ignored++;
        return;
    }
    rc = mqe2e_channel_handle(p->ch, out, sizeof out, &out_len, data, len, c->rl, c->t.wall_s);
    if (rc == MQE2E_ERR_STATE || rc == MQE2E_ERR_DECODE) {
        c->k.control_ignored++;
        return;
    }
    if (rc != MQE2E_OK) {
        c->k.handshakes_failed++;
        if (mqe2e__sess_peer_revoked(c, f->from)) c->k.revoked_refused++;
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_WARNING, "CHANNEL with '%s' failed: %s", f->from,
                mqe2e_error_name(rc));
        mqe2e__sess_peer_reset(p);
        return;
    }
    if (out_len > 0) (void)mqe2e__sess_enqueue(c, topic, out, out_len, 1, 0);
    if (mqe2e_channel_is_established(p->ch)) {
        c->k.handshakes_ok++;
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_INFO, "channel with '%s' established", p->id);
        ctl_channel_flush(c, p);
    }
}
