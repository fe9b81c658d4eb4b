/*
 * The device session's hold queue: envelopes of an epoch newer than the
 * keystore's (or of a signed group whose grants are not known yet) wait for
 * the HELLO they trigger, then go through the normal receive path.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal_msgmeta.h"
#include "internal_session.h"

/* ------------------------------------------------------------------ */
/* Hold queue                                                           */

/* The verdict on a group envelope (CTL_EPOCH_*). A group the keystore does
 * not hold at all is not waited for: it may have been left or never joined,
 * and holding would make every message on it cost a HELLO. */
int mqe2e__sess_epoch_verdict(mqe2e_session *c, const char *group, const char *topic,
                              const uint8_t *data, size_t len, uint32_t *ahead)
{
    mqe2e_envelope_view v;
    uint32_t cur;
    *ahead = 0;
    if (mqe2e_envelope_parse(&v, data, len) != MQE2E_OK) return CTL_EPOCH_KNOWN;
    if (v.header.mode == MQE2E_MODE_CHANNEL) return CTL_EPOCH_KNOWN;
    if (mqe2e_keystore_group_current_epoch(c->ks, group, &cur) != MQE2E_OK)
        return CTL_EPOCH_KNOWN;
    if (v.header.epoch > cur) {
        *ahead = v.header.epoch - cur;
        return *ahead > CTL_HOLD_EPOCHS_AHEAD ? CTL_EPOCH_REFUSE : CTL_EPOCH_HOLD;
    }
    /* Signed groups: the signer must be granted `pub` on this topic
     * (credentials bind grants). Until this session's first directory the
     * grants are unknown: held like an unknown epoch, not let through. */
    if (mqe2e_keystore_group_is_signed(c->ks, group) == 1) {
        int g = mqe2e__sess_grant_check(c, group, topic, v.header.sender_id);
        if (g == MQE2E_ERR_GRANT) return CTL_EPOCH_NOT_GRANTED;
        if (g == MQE2E_ERR_NO_KEY) return CTL_EPOCH_HOLD;
    }
    return CTL_EPOCH_KNOWN;
}

/* Quotas of one held message (lock held): a single message at most 1/8 of
 * the byte bound, one topic at most 1/8 of the count and 1/4 of the bytes,
 * so that one client publishing forgeries cannot fill the queue for all. */
int mqe2e__sess_hold_quota_ok(const mqe2e_session *c, const char *topic, size_t len)
{
    size_t n = 0, b = 0;
    size_t cost = len + strlen(topic);
    size_t max_count = c->hold_count / 8U > 0 ? c->hold_count / 8U : 1U;
    if (cost > c->hold_bytes / 8U) return 0;
    mqe2e_holdq_topic_usage(c->holdq, topic, &n, &b);
    return n < max_count && b + cost <= c->hold_bytes / 4U;
}

/* Make room for a message `ahead` epochs ahead: while its topic is over
 * its quota or the queue is full, evict the held message furthest ahead (on
 * the topic, then anywhere) if it is further ahead than this one. A genuine
 * rotation is one epoch ahead; a forger naming epochs further out cannot
 * push it out. An evicted QoS >= 1 message goes to the spool; the others
 * are counted (hold_dropped, no_key) and reported as DROP actions. Returns
 * how many were evicted. */
size_t mqe2e__sess_hold_make_room(mqe2e_session *c, const char *topic, size_t len,
                                  uint32_t ahead)
{
    size_t evicted = 0;
    mqe2e_held *h = NULL;
    while (!mqe2e__sess_hold_quota_ok(c, topic, len) &&
           mqe2e_holdq_evict_take(c->holdq, topic, ahead, &h) == MQE2E_OK) {
        mqe2e__sess_overflow(c, h, 0);
        mqe2e_held_free(h);
        evicted++;
    }
    while ((mqe2e_holdq_count(c->holdq) >= c->hold_count ||
            len + strlen(topic) > c->hold_bytes - mqe2e_holdq_bytes(c->holdq)) &&
           mqe2e_holdq_evict_take(c->holdq, NULL, ahead, &h) == MQE2E_OK) {
        mqe2e__sess_overflow(c, h, 0);
        mqe2e_held_free(h);
        evicted++;
    }
    return evicted;
}

/* ------------------------------------------------------------------ */
/* Spool (docs/PROTOCOL.md 9.4): held QoS >= 1 messages with no room     */

size_t mqe2e__sess_spool_count(const mqe2e_session *c)
{
    return c->spool != NULL && c->spool->count != NULL ? c->spool->count(c->spool->ctx) : 0U;
}

int mqe2e__sess_spool_first(const mqe2e_session *c, int qos)
{
    return qos >= 1 && mqe2e__sess_spool_count(c) > 0;
}

void mqe2e__sess_overflow(mqe2e_session *c, const mqe2e_held *h, int current)
{
    uint64_t id = 0;
    int rc = MQE2E_ERR_EXHAUSTED;
    /* QoS 0 may be lost (MQTT allows it): never written to disk. */
    if (c->spool != NULL && MQE2E__SESS_TAG_QOS(h->tag) >= 1)
        rc = c->spool->put(c->spool->ctx, h, &id);
    if (rc == MQE2E_OK) {
        c->k.spooled++;
        return;
    }
    if (c->spool != NULL && MQE2E__SESS_TAG_QOS(h->tag) >= 1)
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_WARNING,
                        "spool refused a held QoS %d message on '%s' (%s): dropped",
                        MQE2E__SESS_TAG_QOS(h->tag), h->topic, mqe2e_strerror(rc));
    c->k.hold_dropped++;
    mqe2e__sess_drop(c, h->topic, MQE2E_ERR_NO_KEY, current);
}

void mqe2e__sess_maybe_trigger_hello(mqe2e_session *c)
{
    uint64_t now = c->t.wall_s;
    if (c->hello != NULL && now - c->hello_started < CTL_RETRY_SECONDS) return;
    if (c->last_trigger != 0 && now - c->last_trigger < CTL_TRIGGER_SECONDS) return;
    c->last_trigger = now;
    mqe2e__sess_hello_start(c);
}

/* What to do with a held or spooled message now. */
enum { HELD_WAIT, HELD_READY, HELD_DENIED, HELD_FORGED };

static int sess_held_judge(mqe2e_session *c, const mqe2e_held *h, uint32_t *ahead)
{
    mqe2e_policy_kind kind;
    const char *target = NULL;
    int v = CTL_EPOCH_KNOWN;
    *ahead = 0;
    if (mqe2e_policy_lookup(c->policy, h->topic, &kind, &target) == MQE2E_OK &&
        kind == MQE2E_POLICY_GROUP && target != NULL)
        v = mqe2e__sess_epoch_verdict(c, target, h->topic, h->data, h->len, ahead);
    if (v == CTL_EPOCH_NOT_GRANTED) return HELD_DENIED;
    if (v != CTL_EPOCH_HOLD) return HELD_READY;
    /* It arrived before we sent a HELLO the authority has answered: a
     * genuine sender had its epoch from the authority before that, so the
     * reply would have carried it. Forged: drop it now rather than let it
     * hold room until it ages out (docs/PROTOCOL.md 9.4). */
    if (*ahead > 0 && h->arrived_at < c->hello_answered_sent) return HELD_FORGED;
    return HELD_WAIT;
}

/* Judged ready, denied or forged: counted and turned into actions. Returns
 * the action queued for it (NULL when none could be). */
static sess_action *sess_held_act(mqe2e_session *c, const mqe2e_held *h, int verdict)
{
    sess_action *before = mqe2e__sess_last_action(c), *after;
    if (verdict == HELD_DENIED || verdict == HELD_FORGED) {
        c->k.hold_dropped++;
        mqe2e__sess_drop(c, h->topic, verdict == HELD_DENIED ? MQE2E_ERR_GRANT : MQE2E_ERR_NO_KEY,
                         0);
    } else {
        c->k.released++;
        /* The properties it arrived with: checked if bound, delivered with it. */
        mqe2e_msg_property *props = NULL;
        size_t nprops = 0;
        if (mqe2e__props_unpack(h->meta, h->meta_len, &props, &nprops) != MQE2E_OK) {
            mqe2e__sess_drop(c, h->topic, MQE2E_ERR_NOMEM, 0);
        } else {
            mqe2e__sess_open(c, h->topic, h->data, h->len, MQE2E__SESS_TAG_QOS(h->tag),
                             (h->tag & MQE2E__SESS_TAG_RETAINED) != 0,
                             (h->tag & MQE2E__SESS_TAG_DUP) != 0, 0, props, nprops, props);
        }
    }
    after = mqe2e__sess_last_action(c);
    return after != before ? after : NULL;
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Spooled entries whose DELIVER action is queued but not yet taken: not
 * handed out twice. A sorted malloc'd array (*n entries; NULL when none). */
static uint64_t *sess_spool_inflight(mqe2e_session *c, size_t *n)
{
    size_t k = 0;
    uint64_t *ids;
    *n = 0;
    for (sess_action *a = c->act_head; a != NULL; a = a->next)
        if (a->spool_id != 0) k++;
    if (k == 0 || (ids = malloc(k * sizeof *ids)) == NULL) return NULL;
    for (sess_action *a = c->act_head; a != NULL; a = a->next)
        if (a->spool_id != 0) ids[(*n)++] = a->spool_id;
    qsort(ids, *n, sizeof *ids, u64_cmp);
    return ids;
}

/* The spool's entries, oldest first: a ready one becomes a DELIVER action
 * and leaves the spool once the caller took it (the application handled
 * it); a denied, forged or unreadable one is dropped and removed now; the
 * others stay. */
static void sess_spool_release(mqe2e_session *c)
{
    size_t n_inflight = 0;
    uint64_t *inflight;
    uint64_t after = 0, id = 0;
    mqe2e_held *h = NULL;
    int rc;

    if (!c->spool_due || mqe2e__sess_spool_count(c) == 0) return;
    c->spool_due = 0;
    inflight = sess_spool_inflight(c, &n_inflight);
    while ((rc = c->spool->next(c->spool->ctx, after, &id, &h)) != MQE2E_ERR_NOT_FOUND) {
        uint32_t ahead = 0;
        if (rc == MQE2E_ERR_DECODE) {
            mqe2e__sess_log(c, MQE2E_SESSION_LOG_WARNING, "spool entry %llu unreadable: removed",
                            (unsigned long long)id);
            c->k.hold_dropped++;
            mqe2e__sess_drop(c, "(spool)", MQE2E_ERR_DECODE, 0);
            (void)c->spool->remove(c->spool->ctx, id);
            after = id;
            continue;
        }
        if (rc != MQE2E_OK) {
            mqe2e__sess_log(c, MQE2E_SESSION_LOG_WARNING, "spool unreadable (%s): retried later",
                            mqe2e_strerror(rc));
            break;
        }
        after = id;
        if (n_inflight > 0 && bsearch(&id, inflight, n_inflight, sizeof id, u64_cmp) != NULL) {
            mqe2e_held_free(h);
            continue;
        }
        int verdict = sess_held_judge(c, h, &ahead);
        if (verdict != HELD_WAIT) {
            sess_action *a = sess_held_act(c, h, verdict);
            if (a != NULL && a->a.kind == MQE2E_SESSION_DELIVER)
                a->spool_id = id;
            else
                (void)c->spool->remove(c->spool->ctx, id);
        }
        mqe2e_held_free(h);
    }
    free(inflight);
}

/*
 * Hand every held message whose key is now known to the normal receive path
 * (DELIVER or DROP actions, current = 0), in arrival order; the others go
 * back to the tail keeping their arrival time, so their relative order is
 * kept too. Then the same for the spool's entries (which arrived after the
 * held ones of their topic: while the spool holds anything, held QoS >= 1
 * messages go there directly).
 */
void mqe2e__sess_release(mqe2e_session *c)
{
    size_t n = mqe2e_holdq_count(c->holdq);
    for (size_t i = 0; i < n; i++) {
        mqe2e_held *h = NULL;
        uint32_t ahead = 0;

        if (mqe2e_holdq_pop(c->holdq, &h) != MQE2E_OK) break;
        int verdict = sess_held_judge(c, h, &ahead);
        if (verdict == HELD_WAIT &&
            mqe2e_holdq_push_meta(c->holdq, h->topic, h->data, h->len, h->meta, h->meta_len, h->tag,
                                  h->arrived_at, ahead) != MQE2E_OK)
            verdict = HELD_READY; /* cannot happen (it fitted before); the normal path counts it */
        if (verdict != HELD_WAIT) (void)sess_held_act(c, h, verdict);
        mqe2e_held_free(h);
    }
    sess_spool_release(c);
}

/* Drop what waited too long (counted as no_key). */
void mqe2e__sess_expire(mqe2e_session *c)
{
    size_t n = mqe2e_holdq_expire(c->holdq, c->t.wall_s);
    c->k.hold_dropped += n;
    for (size_t i = 0; i < n; i++)
        mqe2e__sess_drop(c, "(held)", MQE2E_ERR_NO_KEY, 0);
}
