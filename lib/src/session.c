/*
 * The sans-I/O device session (mqe2e/session.h): actions, the receive path,
 * publish, timers and lifecycle. The control-plane handlers are in
 * session_control.c, session_channel.c and session_hold.c.
 *
 * The receive path is the one the Paho fronts share: control frames are
 * consumed, channel envelopes opened by their channel, group envelopes of an
 * unknown newer epoch held, and everything else goes through the protector
 * (mqe2e_unprotect_begin), whose receipt the caller commits once the
 * application accepted the plaintext.
 */
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal_msgmeta.h"
#include "internal_protect.h"
#include "internal_session.h"

/* Handed to the protector for empty payloads (a NULL pointer with length 0). */
static const uint8_t sess_empty[1] = {0};

void mqe2e__sess_log(mqe2e_session *c, int level, const char *fmt, ...)
{
    char line[512];
    va_list ap;

    if (c->log == NULL || level > c->log_level) return;
    va_start(ap, fmt);
    /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): va_start is just above */
    (void)vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    c->log(c->log_ctx, level, line);
}

/* ------------------------------------------------------------------ */
/* Actions                                                              */

/* Largest data buffer a recycled action keeps (a bigger one is freed):
 * the spare never pins more than this after one large message. */
#define SESS_SPARE_DATA_MAX 65536U

static void act_free(sess_action *a)
{
    if (a == NULL) return;
    if (a->data != NULL) sodium_memzero(a->data, a->used);
    free(a->data);
    free(a->topic);
    free(a->props);
    sodium_memzero(&a->a.receipt, sizeof a->a.receipt);
    free(a);
}

/* A released action becomes the spare: what may hold plaintext wiped, its
 * properties and receipt gone, the buffers kept for the next action. */
static void act_recycle(mqe2e_session *c, sess_action *a)
{
    if (a == NULL) return;
    if (c->spare != NULL) {
        act_free(a);
        return;
    }
    if (a->data != NULL) sodium_memzero(a->data, a->used);
    a->used = 0;
    if (a->cap > SESS_SPARE_DATA_MAX) {
        free(a->data);
        a->data = NULL;
        a->cap = 0;
    }
    free(a->props);
    a->props = NULL;
    sodium_memzero(&a->a, sizeof a->a);
    a->has_data = 0;
    a->spool_id = 0;
    a->next = NULL;
    c->spare = a;
}

/* The action last handed out is the caller's until its next call. */
static void sess_release_taken(mqe2e_session *c)
{
    if (c->taken == NULL) return;
    /* A spooled message's DELIVER was taken and the caller came back: the
     * application handled it, so it leaves the spool now (not before). */
    if (c->taken->spool_id != 0 && c->spool != NULL)
        (void)c->spool->remove(c->spool->ctx, c->taken->spool_id);
    act_recycle(c, c->taken);
    c->taken = NULL;
}

/* An action not yet queued (the spare, or a new one) holding a copy of
 * @p topic and, when @p need > 0, a data buffer of at least @p need bytes
 * (its content undefined; the caller sets used/has_data). */
static sess_action *act_get(mqe2e_session *c, const char *topic, size_t need)
{
    sess_action *a = c->spare;
    if (topic == NULL) topic = "";
    size_t tlen = strlen(topic) + 1U;
    if (a != NULL) {
        c->spare = NULL;
    } else if ((a = calloc(1, sizeof *a)) == NULL) {
        return NULL;
    }
    if (a->tcap < tlen) {
        char *t = realloc(a->topic, tlen);
        if (t == NULL) {
            act_free(a);
            return NULL;
        }
        a->topic = t;
        a->tcap = tlen;
    }
    memcpy(a->topic, topic, tlen);
    if (need > a->cap) {
        /* The old buffer holds nothing (wiped when it was released). */
        free(a->data);
        a->cap = 0;
        if ((a->data = malloc(need)) == NULL) {
            act_free(a);
            return NULL;
        }
        a->cap = need;
    }
    return a;
}

static void act_link(mqe2e_session *c, sess_action *a, mqe2e_session_action_kind kind)
{
    a->a.kind = kind;
    a->next = NULL;
    if (c->act_tail != NULL)
        c->act_tail->next = a;
    else
        c->act_head = a;
    c->act_tail = a;
    c->n_actions++;
    if (kind == MQE2E_SESSION_PUBLISH) c->n_publish++;
}

static sess_action *act_push(mqe2e_session *c, mqe2e_session_action_kind kind, const char *topic,
                             const uint8_t *data, size_t len)
{
    sess_action *a = act_get(c, topic, data != NULL ? (len > 0 ? len : 1U) : 0U);
    if (a == NULL) return NULL;
    if (data != NULL) {
        if (len > 0) memcpy(a->data, data, len);
        a->used = len;
        a->has_data = 1;
    }
    a->a.len = len;
    act_link(c, a, kind);
    return a;
}

int mqe2e__sess_subscription(mqe2e_session *c, mqe2e_session_action_kind kind, const char *filter)
{
    sess_action *a = act_push(c, kind, filter, NULL, 0);
    if (a == NULL) return MQE2E_ERR_NOMEM;
    a->a.qos = kind == MQE2E_SESSION_SUBSCRIBE ? 1 : 0;
    return MQE2E_OK;
}

sess_action *mqe2e__sess_last_action(mqe2e_session *c)
{
    return c->act_tail;
}

int mqe2e__sess_enqueue(mqe2e_session *c, const char *topic, const uint8_t *data, size_t len,
                        int qos, int retained)
{
    if (c->n_publish + c->backlog >= CTL_OUTBOX_MAX) return MQE2E_ERR_EXHAUSTED;
    sess_action *a = act_push(c, MQE2E_SESSION_PUBLISH, topic, data, len);
    if (a == NULL) return MQE2E_ERR_NOMEM;
    a->a.qos = qos;
    a->a.retained = retained;
    return MQE2E_OK;
}

void mqe2e__sess_drop(mqe2e_session *c, const char *topic, int code, int current)
{
    /* Reported by the caller (the DROP action), not logged twice here. */
    mqe2e_protector_count_drop(c->prot, code);
    sess_action *a = act_push(c, MQE2E_SESSION_DROP, topic, NULL, 0);
    if (a == NULL) return; /* counted; only the report is lost */
    a->a.code = code;
    a->a.current = current;
}

/* A DELIVER action holding @p pt (taken over: wiped and freed with it). */
static int sess_deliver(mqe2e_session *c, const char *topic, uint8_t *pt, size_t pt_len,
                        size_t cap, int qos, int retained, int dup, int current,
                        const mqe2e_receipt *receipt, mqe2e_msg_property *give, size_t ngive)
{
    sess_action *a = act_push(c, MQE2E_SESSION_DELIVER, topic, NULL, 0);
    if (a == NULL) {
        sodium_memzero(pt, cap);
        free(pt);
        free(give);
        return MQE2E_ERR_NOMEM;
    }
    a->props = give;
    a->a.props = give;
    a->a.nprops = give != NULL ? ngive : 0U;
    free(a->data); /* a recycled buffer (wiped): @p pt takes its place */
    a->data = pt;
    a->cap = cap;
    a->used = cap;
    a->has_data = 1;
    a->a.len = pt_len;
    a->a.qos = qos;
    a->a.retained = retained;
    a->a.dup = dup;
    a->a.current = current;
    if (receipt != NULL) a->a.receipt = *receipt;
    return MQE2E_OK;
}

void mqe2e__sess_open(mqe2e_session *c, const char *topic, const uint8_t *data, size_t len,
                      int qos, int retained, int dup, int current,
                      const mqe2e_msg_property *props, size_t nprops, mqe2e_msg_property *give)
{
    size_t cap = len > 0 ? len : 1U;
    size_t pt_len = 0;
    /* Opened straight into the action's (recycled) buffer: the plaintext is
     * never longer than what arrived. */
    sess_action *a = act_get(c, topic, cap);
    const mqe2e_msg_meta meta = {props, nprops, retained ? 1 : 0};
    int rc;

    if (a == NULL) {
        free(give);
        mqe2e__sess_drop(c, topic, MQE2E_ERR_NOMEM, current);
        return;
    }
    a->used = cap; /* whatever the protector wrote is wiped with the action */
    rc = mqe2e_unprotect_begin_meta(c->prot, topic, &meta, len > 0 ? data : sess_empty, len,
                                    c->t.wall_s, a->data, cap, &pt_len, &a->a.receipt);
    if (rc == MQE2E_OK && pt_len > (size_t)INT_MAX) {
        /* Bindings hand lengths to int APIs (Paho): refused, never truncated. */
        sodium_memzero(a->data, cap);
        sodium_memzero(&a->a.receipt, sizeof a->a.receipt);
        mqe2e_protector_count_drop(c->prot, MQE2E_ERR_TOO_LARGE);
        rc = MQE2E_ERR_TOO_LARGE;
    }
    if (rc != MQE2E_OK) {
        /* The protector counted its own failures already: report only. */
        free(give);
        sodium_memzero(&a->a.receipt, sizeof a->a.receipt);
        a->a.code = rc;
        a->a.current = current;
        act_link(c, a, MQE2E_SESSION_DROP);
        return;
    }
    a->has_data = 1;
    a->props = give;
    a->a.props = give;
    a->a.nprops = give != NULL ? nprops : 0U;
    a->a.len = pt_len;
    a->a.qos = qos;
    a->a.retained = retained;
    a->a.dup = dup;
    a->a.current = current;
    act_link(c, a, MQE2E_SESSION_DELIVER);
}

int mqe2e_session_next(mqe2e_session *s, mqe2e_session_action *out)
{
    if (s == NULL || out == NULL) return 0;
    sess_release_taken(s);
    sess_action *a = s->act_head;
    if (a == NULL) {
        memset(out, 0, sizeof *out);
        return 0;
    }
    s->act_head = a->next;
    if (s->act_head == NULL) s->act_tail = NULL;
    s->n_actions--;
    if (a->a.kind == MQE2E_SESSION_PUBLISH) s->n_publish--;
    a->next = NULL;
    s->taken = a;
    *out = a->a;
    out->topic = a->topic;
    out->data = a->has_data ? a->data : NULL;
    return 1;
}

size_t mqe2e_session_pending(const mqe2e_session *s)
{
    return s != NULL ? s->n_actions : 0U;
}

int mqe2e_session_receive_one(mqe2e_session *s, const char *topic, size_t topic_len,
                              const uint8_t *payload, size_t len, int qos, int retained,
                              int dup, unsigned flags, mqe2e_session_time now,
                              mqe2e_session_action *out)
{
    if (s == NULL || out == NULL) return MQE2E_ERR_INVALID_ARG;
    int rc = mqe2e_session_message_received_props(s, topic, topic_len, payload, len, qos,
                                                  retained, dup, flags, NULL, 0, now);
    if (rc == MQE2E_OK && s->n_actions == 1U) return mqe2e_session_next(s, out);
    memset(out, 0, sizeof *out);
    return rc != MQE2E_OK ? rc : 0; /* none, or several: mqe2e_session_next() */
}

int mqe2e_session_commit_receive_one(mqe2e_session *s, mqe2e_receipt *accepted, int *commit_rc,
                                     const char *topic, size_t topic_len,
                                     const uint8_t *payload, size_t len, int qos, int retained,
                                     int dup, unsigned flags, mqe2e_session_time now,
                                     mqe2e_session_action *out)
{
    if (s == NULL || out == NULL || (accepted != NULL && commit_rc == NULL))
        return MQE2E_ERR_INVALID_ARG;
    if (commit_rc != NULL) *commit_rc = MQE2E_OK;
    if (accepted != NULL) {
        /* Before this message is checked: a duplicate of the accepted one
         * must meet the updated window. */
        *commit_rc = mqe2e_session_commit(s, accepted);
        sodium_memzero(accepted, sizeof *accepted);
    }
    return mqe2e_session_receive_one(s, topic, topic_len, payload, len, qos, retained, dup, flags,
                                     now, out);
}

int mqe2e_session_receive_rx(mqe2e_session *s, mqe2e_session_rx *rx, const char *topic,
                             size_t topic_len, const uint8_t *payload, size_t len, unsigned meta)
{
    if (s == NULL || rx == NULL) return MQE2E_ERR_INVALID_ARG;
    rx->commit_rc = MQE2E_OK;
    if (rx->commit) {
        /* Before this message is checked: a duplicate of the accepted one
         * must meet the updated window. */
        rx->commit = 0;
        rx->commit_rc = mqe2e_session_commit(s, &rx->accepted);
        sodium_memzero(&rx->accepted, sizeof rx->accepted);
    }
    return mqe2e_session_receive_one(
        s, topic, topic_len, payload, len, (int)(meta & MQE2E_SESSION_RX_QOS_MASK),
        (meta & MQE2E_SESSION_RX_RETAINED) != 0, (meta & MQE2E_SESSION_RX_DUP) != 0,
        (meta & MQE2E_SESSION_RX_NO_HOLD) != 0 ? MQE2E_SESSION_NO_HOLD : 0U, rx->now, &rx->out);
}

void mqe2e_session_set_backlog(mqe2e_session *s, size_t publishes)
{
    if (s != NULL) s->backlog = publishes;
}

/* ------------------------------------------------------------------ */
/* Freshness                                                            */

int mqe2e__sess_list_fresh(const mqe2e_session *c, uint64_t now)
{
    if (c->rl == NULL || c->rl_valid_ms == 0) return 1;
    return c->rl_heard_ms != 0 && now >= c->rl_heard_ms && now - c->rl_heard_ms <= c->rl_valid_ms;
}

int mqe2e__sess_fresh_at(const mqe2e_session *c, uint64_t now)
{
    return c->fresh_ms != 0 && now >= c->fresh_ms && now - c->fresh_ms <= c->fresh_max_ms &&
           mqe2e__sess_list_fresh(c, now);
}

int mqe2e__sess_fresh(const mqe2e_session *c)
{
    return mqe2e__sess_fresh_at(c, c->t.mono_ms);
}

/* An authenticated answer of the authority arrived. */
void mqe2e__sess_heard(mqe2e_session *c)
{
    uint64_t now = c->t.mono_ms;
    c->fresh_ms = now > 0 ? now : 1U;
    c->stale_reported = 0;
    c->refused = 0;
}

int mqe2e_session_fresh(const mqe2e_session *s, mqe2e_session_time now)
{
    if (s == NULL) return 0;
    if (!s->control) return 1;
    if (s->refused) return MQE2E_ERR_POLICY;
    return mqe2e__sess_fresh_at(s, now.mono_ms);
}

void mqe2e__sess_inbox(char *out, size_t cap, const mqe2e_session *c, const char *id)
{
    (void)snprintf(out, cap, "%s/client/%s", c->pin.control_prefix, id);
}

/* ------------------------------------------------------------------ */
/* Lifecycle                                                            */

static int sess_control_init(mqe2e_session *c)
{
    const uint8_t *rl;
    size_t rl_len;
    int rc = mqe2e_keystore_authority(c->ks, &c->pin);

    if (rc == MQE2E_ERR_NOT_FOUND) return MQE2E_OK; /* no control plane */
    if (rc != MQE2E_OK) return rc;
    const char *id = mqe2e_keystore_client_id(c->ks);
    if (!mqe2e_client_id_valid(id) || !mqe2e_control_prefix_valid(c->pin.control_prefix))
        return MQE2E_ERR_INVALID_ARG;
    memcpy(c->id, id, strlen(id) + 1U);
    mqe2e__sess_inbox(c->inbox, sizeof c->inbox, c, c->id);
    (void)snprintf(c->revocations_topic, sizeof c->revocations_topic, "%s/revocations",
                   c->pin.control_prefix);
    (void)snprintf(c->authority_topic, sizeof c->authority_topic, "%s/authority",
                   c->pin.control_prefix);
    if (mqe2e_keystore_revocation_list(c->ks, &rl, &rl_len, NULL) == MQE2E_OK)
        (void)mqe2e_revocation_list_verify(&c->rl, rl, rl_len, c->pin.sign_public);
    /* Retired sender ids are dropped from the start (docs/CREDENTIALS.md);
     * the list's freshness starts when the authority next sends it. */
    if (c->rl != NULL) (void)mqe2e_protector_set_revocations(c->prot, c->rl);
    c->control = 1;
    /* Until connected(), no HELLO is due. */
    c->hello_done = 1;
    return MQE2E_OK;
}

int mqe2e_session_new(mqe2e_session **out, mqe2e_keystore *ks, const mqe2e_policy *policy,
                      const mqe2e_session_options *opts)
{
    const mqe2e_session_options defaults = MQE2E_SESSION_OPTIONS_INIT;
    mqe2e_session *c;
    int rc;

    if (out == NULL) return MQE2E_ERR_INVALID_ARG;
    *out = NULL;
    if (ks == NULL) return MQE2E_ERR_INVALID_ARG;
    if (opts == NULL) opts = &defaults;
    if (opts->struct_version != 1U && opts->struct_version != 2U) return MQE2E_ERR_INVALID_ARG;
    mqe2e_spool *spool = opts->struct_version >= 2U ? opts->spool : NULL;
    if (spool != NULL && (spool->put == NULL || spool->next == NULL || spool->remove == NULL ||
                          spool->count == NULL))
        return MQE2E_ERR_INVALID_ARG;
    c = calloc(1, sizeof *c);
    if (c == NULL) return MQE2E_ERR_NOMEM;
    c->ks = ks;
    c->spool = spool;
    /* What a previous session left in the spool is looked at once keys are known. */
    c->spool_due = 1;
    c->log = opts->log;
    c->log_ctx = opts->log_ctx;
    c->log_level = opts->log_level > 0 ? opts->log_level : MQE2E_SESSION_LOG_WARNING;
    c->hold_count = opts->hold_count > 0 ? opts->hold_count : MQE2E_HOLDQ_DEFAULT_COUNT;
    c->hold_bytes = opts->hold_bytes > 0 ? opts->hold_bytes : MQE2E_HOLDQ_DEFAULT_BYTES;
    c->hold_age = opts->hold_seconds > 0 ? opts->hold_seconds : MQE2E_HOLDQ_DEFAULT_AGE;
    c->fresh_max_ms =
        (opts->fresh_max_seconds > 0 ? opts->fresh_max_seconds : MQE2E_SESSION_FRESH_MAX_DEFAULT) *
        1000U;
    c->policy = policy;
    rc = MQE2E_OK;
    if (policy == NULL) {
        rc = mqe2e_policy_new(&c->owned_policy);
        if (rc == MQE2E_OK) rc = mqe2e_policy_add_keystore_groups(c->owned_policy, ks);
        c->policy = c->owned_policy;
    }
    if (rc == MQE2E_OK) rc = mqe2e_protector_new(&c->prot, ks, c->policy, opts->protector);
    if (rc == MQE2E_OK) rc = sess_control_init(c);
    if (rc == MQE2E_OK) rc = mqe2e_holdq_new(&c->holdq, c->hold_count, c->hold_bytes, c->hold_age);
    if (rc != MQE2E_OK) {
        mqe2e_session_free(c);
        return rc;
    }
    *out = c;
    return MQE2E_OK;
}

void mqe2e_session_free(mqe2e_session *c)
{
    if (c == NULL) return;
    sess_release_taken(c);
    act_free(c->spare);
    c->spare = NULL;
    while (c->act_head != NULL) {
        sess_action *a = c->act_head;
        c->act_head = a->next;
        act_free(a);
    }
    while (c->peers != NULL) {
        ctl_peer *p = c->peers;
        c->peers = p->next;
        mqe2e__sess_peer_reset(p);
        mqe2e__sess_peer_drop_pending(p);
        free(p);
    }
    mqe2e_hello_client_free(c->hello);
    mqe2e_holdq_free(c->holdq);
    mqe2e_revocation_list_free(c->rl);
    mqe2e__sess_tree_free(c);
    while (c->grant_sets != NULL) {
        ctl_grant_set *g = c->grant_sets;
        c->grant_sets = g->next;
        mqe2e__sess_grant_set_free(g);
    }
    mqe2e_protector_free(c->prot);
    mqe2e_policy_free(c->owned_policy);
    sodium_memzero(c, sizeof *c);
    free(c);
}

int mqe2e_session_has_control(const mqe2e_session *s)
{
    return s != NULL && s->control;
}

mqe2e_protector *mqe2e_session_protector(mqe2e_session *s)
{
    return s != NULL ? s->prot : NULL;
}

const mqe2e_policy *mqe2e_session_policy(const mqe2e_session *s)
{
    return s != NULL ? s->policy : NULL;
}

void mqe2e_session_get_counters(const mqe2e_session *s, mqe2e_session_counters *out)
{
    if (out == NULL) return;
    if (s == NULL) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = s->k;
}

size_t mqe2e_session_channel_waiting(const mqe2e_session *s)
{
    size_t n = 0;
    if (s == NULL) return 0;
    for (const ctl_peer *p = s->peers; p != NULL; p = p->next)
        n += p->n_pending;
    return n;
}

/* ------------------------------------------------------------------ */
/* Connection                                                           */

int mqe2e_session_connected(mqe2e_session *c, mqe2e_session_time now)
{
    if (c == NULL) return MQE2E_ERR_INVALID_ARG;
    sess_release_taken(c);
    c->t = now;
    c->connected = 1;
    if (!c->control) return MQE2E_OK;
    sess_action *a = act_push(c, MQE2E_SESSION_SUBSCRIBE, c->inbox, NULL, 0);
    if (a != NULL) a->a.qos = 1;
    a = act_push(c, MQE2E_SESSION_SUBSCRIBE, c->revocations_topic, NULL, 0);
    if (a != NULL) a->a.qos = 1;
    /* Key-tree updates (PROTOCOL.md §10.9): P/tree/<group> of each tree
     * group this session is a member of already (a reconnect), with the other
     * control topics and before the HELLO; groups it joins later are
     * subscribed when their bundle arrives. */
    mqe2e__sess_tree_connected(c);
    c->hello_done = 0;
    mqe2e__sess_hello_start(c);
    return MQE2E_OK;
}



void mqe2e_session_disconnected(mqe2e_session *c)
{
    if (c == NULL) return;
    sess_release_taken(c);
    c->connected = 0;
    mqe2e__sess_tree_disconnected(c);
}

/* ------------------------------------------------------------------ */
/* Receive path                                                         */

static void sess_on_inbox(mqe2e_session *c, const uint8_t *data, size_t len, unsigned flags)
{
    mqe2e_control_frame f;
    int released = 0;

    if (mqe2e_control_frame_decode(&f, data, len) != MQE2E_OK) {
        c->k.control_ignored++;
        return;
    }
    switch (f.kind) {
    case MQE2E_CONTROL_HELLO:
        mqe2e__sess_on_hello(c, data, len);
        released = 1;
        break;
    case MQE2E_CONTROL_PUSH:
        mqe2e__sess_on_push(c, data, len);
        released = 1;
        break;
    case MQE2E_CONTROL_CHANNEL:
        mqe2e__sess_on_channel(c, &f, data, len);
        break;
    default:
        c->k.control_ignored++;
        break;
    }
    /* Keys fetched by HELLO or PUSH are in place: what waited for them goes now. */
    if (released) c->spool_due = 1;
    if (released && !(flags & MQE2E_SESSION_NO_HOLD)) mqe2e__sess_release(c);
}

/* A channel envelope: opened by the peer's established channel (recorded as
 * it is opened: no receipt to commit). */
static void sess_on_channel_msg(mqe2e_session *c, const char *peer, const char *topic,
                                const uint8_t *data, size_t len, int qos, int retained, int dup)
{
    ctl_peer *p = mqe2e__sess_peer_find(c, peer, 0);
    uint8_t *buf = NULL;
    size_t cap = len > 0 ? len : 1U;
    size_t out_len = 0;
    int rc;

    if (mqe2e__sess_peer_revoked(c, peer)) {
        c->k.revoked_refused++;
        rc = MQE2E_ERR_AUTH;
    } else if (p == NULL || p->ch == NULL || !mqe2e_channel_is_established(p->ch)) {
        rc = MQE2E_ERR_NO_KEY;
    } else if ((buf = malloc(cap)) == NULL) {
        rc = MQE2E_ERR_NOMEM;
    } else {
        rc = mqe2e_channel_open(p->ch, buf, cap, &out_len, topic, data, len, c->t.wall_s);
    }
    if (rc != MQE2E_OK) {
        if (buf != NULL) sodium_memzero(buf, cap);
        free(buf);
        mqe2e__sess_drop(c, topic, rc, 1);
        return;
    }
    c->k.channel_opened++;
    (void)sess_deliver(c, topic, buf, out_len, cap, qos, retained, dup, 1, NULL, NULL, 0);
}

/* Group envelopes: hold an unknown newer epoch, refuse an ungranted signer.
 * A held QoS >= 1 message that finds no room goes to the spool. Returns 1
 * when the message was consumed here. */
static int sess_on_group_msg(mqe2e_session *c, const char *group, const char *topic,
                             const uint8_t *data, size_t len, uint32_t tag, unsigned flags)
{
    uint32_t ahead = 0;
    int verdict = mqe2e__sess_epoch_verdict(c, group, topic, data, len, &ahead);
    int can_hold = !(flags & MQE2E_SESSION_NO_HOLD);
    int rc;

    if (verdict == CTL_EPOCH_NOT_GRANTED) {
        mqe2e__sess_drop(c, topic, MQE2E_ERR_GRANT, 1);
        return 1;
    }
    /* A message of a known epoch is never held, even behind held ones: a
     * forger's invented epoch must not delay genuine traffic. (Order is kept
     * per sender: a sender never goes back to an older epoch.) */
    if (verdict == CTL_EPOCH_KNOWN || (!can_hold && verdict == CTL_EPOCH_HOLD)) {
        if (verdict == CTL_EPOCH_HOLD) mqe2e__sess_maybe_trigger_hello(c);
        return 0;
    }
    /* Make room from what waited too long before judging the bounds. */
    mqe2e__sess_expire(c);
    if (verdict == CTL_EPOCH_REFUSE) {
        /* Too far ahead to be a rotation: not held, not spooled. */
        c->k.hold_dropped++;
        mqe2e__sess_drop(c, topic, MQE2E_ERR_NO_KEY, 1);
        return 1;
    }
    /* The message is kept with its MQTT v5 properties (serialised), so a
     * rule that binds them can check them when it is released and the
     * application gets them with it; they count towards every bound and
     * quota like the envelope (a forger cannot fill the queue through them). */
    mqe2e_held cur = {(char *)(uintptr_t)topic,
                      (uint8_t *)(uintptr_t)(len > 0 ? data : sess_empty),
                      len,
                      tag,
                      c->t.wall_s,
                      NULL,
                      0};
    rc = mqe2e__props_pack(c->cur_props, c->cur_nprops, &cur.meta, &cur.meta_len);
    /* (No packet is that large; keeps the quota arithmetic from wrapping.) */
    if (rc == MQE2E_OK && (len > SIZE_MAX / 4U || cur.meta_len > SIZE_MAX / 4U))
        rc = MQE2E_ERR_TOO_LARGE;
    if (rc != MQE2E_OK) {
        free(cur.meta);
        c->k.hold_dropped++;
        mqe2e__sess_drop(c, topic, MQE2E_ERR_NO_KEY, 1);
        return 1;
    }
    const size_t cost = len + cur.meta_len;
    if (mqe2e__sess_spool_first(c, MQE2E__SESS_TAG_QOS(tag))) {
        /* Older QoS >= 1 messages wait in the spool: this one goes after them. */
        rc = MQE2E_ERR_EXHAUSTED;
    } else {
        /* Evict what names epochs further ahead than this one (a forger's
         * guesses) so that a genuine rotation's messages keep their place. */
        (void)mqe2e__sess_hold_make_room(c, topic, cost, ahead);
        if (!mqe2e__sess_hold_quota_ok(c, topic, cost))
            rc = MQE2E_ERR_EXHAUSTED;
        else
            rc = mqe2e_holdq_push_meta(c->holdq, topic, cur.data, len, cur.meta, cur.meta_len, tag,
                                       c->t.wall_s, ahead);
        if (rc == MQE2E_OK) c->k.held++;
    }
    if (rc != MQE2E_OK) mqe2e__sess_overflow(c, &cur, 1); /* spooled, or dropped and counted */
    free(cur.meta);
    mqe2e__sess_maybe_trigger_hello(c);
    return 1;
}

/* The control plane's verdict: 1 when it consumed the message. */
static int sess_route(mqe2e_session *c, const char *topic, const uint8_t *data, size_t len,
                      int qos, int retained, int dup, unsigned flags)
{
    mqe2e_policy_kind kind;
    const char *target = NULL;
    uint32_t tag = (uint32_t)(qos & 3) | (retained ? MQE2E__SESS_TAG_RETAINED : 0U) |
                   (dup ? MQE2E__SESS_TAG_DUP : 0U);

    if (strcmp(topic, c->inbox) == 0) {
        sess_on_inbox(c, data, len, flags);
        return 1;
    }
    if (strcmp(topic, c->revocations_topic) == 0) {
        /* The retained copy: anyone may replay it, so it does not renew freshness. */
        mqe2e__sess_adopt_revocations(c, data, len, 0);
        return 1;
    }
    if (c->control && mqe2e__sess_tree_route(c, topic, data, len)) return 1;
    /* Through the protector's answer cache: unprotect asks it again. */
    int rc = mqe2e__protector_policy_lookup(c->prot, topic, &kind, &target);
    if (rc == MQE2E_OK && kind == MQE2E_POLICY_PLAINTEXT && mqe2e__sess_signed_covers(c, topic)) {
        mqe2e__sess_drop(c, topic, MQE2E_ERR_POLICY, 1);
        return 1;
    }
    if (rc != MQE2E_OK || target == NULL) return 0;
    if (kind == MQE2E_POLICY_CHANNEL) {
        sess_on_channel_msg(c, target, topic, data, len, qos, retained, dup);
        return 1;
    }
    if (kind != MQE2E_POLICY_GROUP) return 0;
    return sess_on_group_msg(c, target, topic, data, len, tag, flags);
}

int mqe2e_session_message_received(mqe2e_session *c, const char *topic, size_t topic_len,
                                   const uint8_t *payload, size_t len, int qos, int retained,
                                   int dup, unsigned flags, mqe2e_session_time now)
{
    return mqe2e_session_message_received_props(c, topic, topic_len, payload, len, qos, retained,
                                                dup, flags, NULL, 0, now);
}

static void sess_received(mqe2e_session *c, const char *topic, size_t topic_len,
                          const uint8_t *payload, size_t len, int qos, int retained, int dup,
                          unsigned flags);

int mqe2e_session_message_received_props(mqe2e_session *c, const char *topic, size_t topic_len,
                                         const uint8_t *payload, size_t len, int qos,
                                         int retained, int dup, unsigned flags,
                                         const mqe2e_msg_property *props, size_t nprops,
                                         mqe2e_session_time now)
{
    if (c == NULL) return MQE2E_ERR_INVALID_ARG;
    sess_release_taken(c);
    c->t = now;
    if (props == NULL && nprops > 0) {
        mqe2e__sess_drop(c, topic, MQE2E_ERR_DECODE, 1);
        return MQE2E_OK;
    }
    c->cur_props = props;
    c->cur_nprops = nprops;
    sess_received(c, topic, topic_len, payload, len, qos, retained, dup, flags);
    c->cur_props = NULL;
    c->cur_nprops = 0;
    return MQE2E_OK;
}

static void sess_received(mqe2e_session *c, const char *topic, size_t topic_len,
                          const uint8_t *payload, size_t len, int qos, int retained, int dup,
                          unsigned flags)
{
    if (topic == NULL || (payload == NULL && len > 0)) {
        mqe2e__sess_drop(c, topic, MQE2E_ERR_DECODE, 1);
        return;
    }
    /* MQTT forbids NUL in topic names; such a topic can match no policy. */
    if (topic_len > 0 && topic_len != strlen(topic)) {
        mqe2e__sess_drop(c, topic, MQE2E_ERR_DECODE, 1);
        return;
    }
    if (payload == NULL) payload = sess_empty;
    /* Control frames and held messages never reach the application. */
    if (c->control && sess_route(c, topic, payload, len, qos, retained, dup, flags)) return;
    mqe2e__sess_open(c, topic, payload, len, qos, retained, dup, 1, c->cur_props, c->cur_nprops,
                     NULL);
}

int mqe2e_session_commit(mqe2e_session *s, const mqe2e_receipt *receipt)
{
    if (s == NULL || receipt == NULL) return MQE2E_ERR_INVALID_ARG;
    if (!receipt->active) return MQE2E_OK;
    return mqe2e_unprotect_commit(s->prot, receipt);
}

/* ------------------------------------------------------------------ */
/* Publish                                                              */

size_t mqe2e_session_publish_bound(size_t pt_len)
{
    return mqe2e_protect_bound(pt_len);
}

/* Queue @p pt for @p target's channel (initiating the handshake). */
static int sess_publish_channel(mqe2e_session *c, const char *target, const char *topic,
                                const uint8_t *pt, size_t pt_len, int qos, int retained)
{
    int rc;

    if (target == NULL || !mqe2e_client_id_valid(target)) return MQE2E_ERR_POLICY;
    if (pt_len > MQE2E_CHANNEL_MAX_PLAINTEXT) return MQE2E_ERR_TOO_LARGE;
    if (mqe2e__sess_peer_revoked(c, target)) {
        c->k.revoked_refused++;
        return MQE2E_ERR_AUTH;
    }
    ctl_peer *p = mqe2e__sess_peer_find(c, target, 1);
    if (p == NULL) return MQE2E_ERR_NOMEM;
    if (p->ch != NULL && mqe2e_channel_is_established(p->ch)) {
        rc = mqe2e__sess_channel_send(c, p, topic, pt, pt_len, qos, retained);
        return rc == MQE2E_OK ? MQE2E_SESSION_QUEUED : rc;
    }
    if (p->n_pending >= CTL_PENDING_MAX) return MQE2E_ERR_EXHAUSTED;
    ctl_pending *q = calloc(1, sizeof *q);
    if (q == NULL || (q->topic = strdup(topic)) == NULL ||
        (q->pt = malloc(pt_len > 0 ? pt_len : 1U)) == NULL) {
        if (q != NULL) free(q->topic);
        free(q);
        return MQE2E_ERR_NOMEM;
    }
    if (pt_len > 0) memcpy(q->pt, pt, pt_len);
    q->len = pt_len;
    q->qos = qos;
    q->retained = retained;
    if (p->pending_tail != NULL)
        p->pending_tail->next = q;
    else {
        p->pending = q;
        p->pending_since = c->t.wall_s;
    }
    p->pending_tail = q;
    p->n_pending++;
    if (p->ch == NULL) {
        rc = mqe2e__sess_channel_initiate(c, p);
        if (rc != MQE2E_OK) {
            /* Reported as failed, so it must not go out later either. */
            mqe2e__sess_peer_reset(p);
            mqe2e__sess_peer_drop_pending(p);
            return rc;
        }
    }
    return MQE2E_SESSION_QUEUED;
}

/* The control plane's checks before sealing: MQE2E_OK to seal normally. */
static int sess_publish_checks(mqe2e_session *c, const char *topic, const uint8_t *pt,
                               size_t pt_len, int qos, int retained)
{
    mqe2e_policy_kind kind;
    const char *target = NULL;
    int rc = mqe2e_policy_lookup(c->policy, topic, &kind, &target);

    if (rc == MQE2E_OK && kind == MQE2E_POLICY_PLAINTEXT && mqe2e__sess_signed_covers(c, topic)) {
        /* A plaintext rule cannot lift a signed group's protection. */
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_ERROR,
                        "refused to publish '%s' in clear: a signed group covers it (a plaintext "
                        "rule cannot remove signing)",
                        topic);
        return MQE2E_ERR_POLICY;
    }
    if (rc == MQE2E_OK && kind == MQE2E_POLICY_GROUP && !mqe2e__sess_fresh(c)) {
        /* Not heard from the authority within the bound: the group may have
         * rotated away from a revoked member behind a broker that drops our
         * pushes and replies. Refuse rather than seal under a stale epoch. */
        c->k.stale_refused++;
        if (!c->stale_reported) {
            c->stale_reported = 1;
            if (!c->refused && c->fresh_ms != 0 && !mqe2e__sess_list_fresh(c, c->t.mono_ms))
                mqe2e__sess_log(c, MQE2E_SESSION_LOG_ERROR,
                                "revocation list version %llu not renewed within its validity "
                                "of %llu s: not sealing on groups until the authority sends a "
                                "newer one",
                                (unsigned long long)mqe2e_revocation_list_version(c->rl),
                                (unsigned long long)(c->rl_valid_ms / 1000U));
            else
                mqe2e__sess_log(
                    c, MQE2E_SESSION_LOG_ERROR,
                    c->refused ? "the authority refused this client: not sealing on groups"
                    : c->fresh_ms == 0
                        ? "no answer from the authority yet: not sealing on groups until its "
                          "HELLO reply"
                        : "nothing heard from the authority for over %llu s: not sealing on "
                          "groups until it answers",
                    (unsigned long long)(c->fresh_max_ms / 1000U));
        }
        return MQE2E_ERR_EXPIRED;
    }
    if (rc == MQE2E_OK && kind == MQE2E_POLICY_CHANNEL)
        return sess_publish_channel(c, target, topic, pt, pt_len, qos, retained);
    return MQE2E_OK;
}

int mqe2e_session_publish(mqe2e_session *c, const char *topic, const uint8_t *pt, size_t pt_len,
                          int qos, int retained, mqe2e_session_time now, uint8_t *out,
                          size_t out_cap, size_t *out_len)
{
    return mqe2e_session_publish_props(c, topic, pt, pt_len, qos, retained, NULL, 0, now, out,
                                       out_cap, out_len);
}

int mqe2e_session_publish_props(mqe2e_session *c, const char *topic, const uint8_t *pt,
                                size_t pt_len, int qos, int retained,
                                const mqe2e_msg_property *props, size_t nprops,
                                mqe2e_session_time now, uint8_t *out, size_t out_cap,
                                size_t *out_len)
{
    const mqe2e_msg_meta meta = {props, nprops, retained ? 1 : 0};
    int rc;

    if (out_len != NULL) *out_len = 0;
    if (c == NULL || topic == NULL || out_len == NULL || (pt == NULL && pt_len > 0))
        return MQE2E_ERR_INVALID_ARG;
    sess_release_taken(c);
    c->t = now;
    if (pt == NULL) pt = sess_empty;
    if (c->control) {
        rc = sess_publish_checks(c, topic, pt, pt_len, qos, retained);
        if (rc != MQE2E_OK) return rc;
    }
    if (out == NULL || (props == NULL && nprops > 0)) return MQE2E_ERR_INVALID_ARG;
    return mqe2e_protect_meta(c->prot, topic, &meta, pt, pt_len, now.wall_s, out, out_cap,
                              out_len);
}

/* ------------------------------------------------------------------ */
/* Timers                                                               */

/* Monotonic ms the periodic HELLO is due: a third of the freshness bound
 * after the last answer, or a third of the revocation list's validity after
 * it was last heard, whichever is first (fresh_ms != 0). */
static uint64_t sess_periodic_due(const mqe2e_session *c)
{
    uint64_t due = c->fresh_ms + c->fresh_max_ms / 3U;
    if (c->rl != NULL && c->rl_valid_ms != 0 && c->rl_heard_ms != 0 &&
        c->rl_heard_ms + c->rl_valid_ms / 3U < due)
        due = c->rl_heard_ms + c->rl_valid_ms / 3U;
    return due;
}

static void sess_renewal_check(mqe2e_session *c)
{
    const uint8_t *cb;
    size_t cl;
    uint64_t now = c->t.wall_s;

    c->last_renewal_check = now;
    if (c->hello != NULL || mqe2e_keystore_credential(c->ks, &cb, &cl) != MQE2E_OK) return;
    mqe2e_credential *cred = NULL;
    int rc = mqe2e_credential_verify(&cred, cb, cl, c->pin.sign_public, now);
    if (rc == MQE2E_ERR_EXPIRED ||
        (rc == MQE2E_OK && mqe2e_credential_needs_renewal(cred, now, MQE2E_CREDENTIAL_RENEW_NUM,
                                                          MQE2E_CREDENTIAL_RENEW_DEN))) {
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_INFO, "credential due for renewal: HELLO");
        mqe2e__sess_hello_start(c);
    }
    mqe2e_credential_free(cred);
}

static void sess_channel_timers(mqe2e_session *c)
{
    uint64_t now = c->t.wall_s;
    for (ctl_peer *p = c->peers; p != NULL; p = p->next) {
        if (p->pending != NULL && now - p->pending_since >= CTL_PENDING_SECONDS) {
            mqe2e__sess_log(c, MQE2E_SESSION_LOG_WARNING,
                            "no channel with '%s': %zu queued messages dropped", p->id,
                            p->n_pending);
            mqe2e__sess_peer_drop_pending(p);
            if (p->ch != NULL && !mqe2e_channel_is_established(p->ch)) mqe2e__sess_peer_reset(p);
            continue;
        }
        /* Unanswered, failed or never started: a fresh handshake, paced. */
        if (p->pending != NULL && (p->ch == NULL || !mqe2e_channel_is_established(p->ch)) &&
            now - p->started >= CTL_RETRY_SECONDS)
            (void)mqe2e__sess_channel_initiate(c, p);
    }
}

int mqe2e_session_tick(mqe2e_session *c, int connected, mqe2e_session_time now)
{
    if (c == NULL) return MQE2E_ERR_INVALID_ARG;
    sess_release_taken(c);
    c->t = now;
    if (c->control) {
        mqe2e__sess_prune_due(c, now.wall_s);
        if (connected) {
            /* Unanswered or failed: try again, a fresh handshake each time. */
            if (!c->hello_done && now.wall_s - c->hello_started >= CTL_RETRY_SECONDS) {
                mqe2e__sess_log(c, MQE2E_SESSION_LOG_DEBUG, "no HELLO reply yet, retrying");
                mqe2e__sess_hello_start(c);
            }
            /* Periodic HELLO: every third of the freshness bound and of the
             * revocation list's validity, so that one lost reply does not
             * stop sealing. */
            if (c->hello_done && !c->refused && c->hello == NULL && c->fresh_ms != 0 &&
                now.mono_ms >= sess_periodic_due(c)) {
                mqe2e__sess_log(c, MQE2E_SESSION_LOG_DEBUG, "periodic HELLO");
                c->hello_done = 0;
                mqe2e__sess_hello_start(c);
            }
            if (now.wall_s - c->last_renewal_check >= CTL_RENEWAL_CHECK_SECONDS)
                sess_renewal_check(c);
            sess_channel_timers(c);
        }
    }
    if (mqe2e_holdq_count(c->holdq) > 0 || mqe2e__sess_spool_count(c) > 0) {
        mqe2e__sess_expire(c);
        mqe2e__sess_release(c);
        /* What is still held arrived after the last answered HELLO was sent
         * (older unknown epochs were dropped as forged): ask again (paced),
         * so a message whose own trigger was paced away does not wait for
         * its age limit. */
        if (c->control && connected && c->hello_done &&
            (mqe2e_holdq_count(c->holdq) > 0 || mqe2e__sess_spool_count(c) > 0))
            mqe2e__sess_maybe_trigger_hello(c);
    }
    return MQE2E_OK;
}

/* Monotonic deadline of a wall-clock instant. */
static uint64_t sess_wall_deadline(mqe2e_session_time now, uint64_t at_wall)
{
    if (at_wall <= now.wall_s) return now.mono_ms;
    return now.mono_ms + (at_wall - now.wall_s) * 1000U;
}

static uint64_t min64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

uint64_t mqe2e_session_next_timer(const mqe2e_session *c, mqe2e_session_time now)
{
    uint64_t t = UINT64_MAX;

    if (c == NULL) return t;
    /* Held messages expire or wait for a key: looked at every second. */
    if (mqe2e_holdq_count(c->holdq) > 0 || mqe2e__sess_spool_count(c) > 0) t = now.mono_ms + 1000U;
    if (!c->control) return t;
    for (size_t i = 0; i < c->n_prunes; i++)
        t = min64(t, sess_wall_deadline(now, c->prunes[i].at));
    if (!c->connected) return t;
    if (!c->hello_done) t = min64(t, sess_wall_deadline(now, c->hello_started + CTL_RETRY_SECONDS));
    if (c->hello_done && !c->refused && c->hello == NULL && c->fresh_ms != 0)
        t = min64(t, sess_periodic_due(c));
    t = min64(t, sess_wall_deadline(now, c->last_renewal_check + CTL_RENEWAL_CHECK_SECONDS));
    for (const ctl_peer *p = c->peers; p != NULL; p = p->next) {
        if (p->pending == NULL) continue;
        t = min64(t, sess_wall_deadline(now, p->pending_since + CTL_PENDING_SECONDS));
        if (p->ch == NULL || !mqe2e_channel_is_established(p->ch))
            t = min64(t, sess_wall_deadline(now, p->started + CTL_RETRY_SECONDS));
    }
    return t;
}
