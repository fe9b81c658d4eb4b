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
 * push it out. Each eviction is counted (hold_dropped, no_key) and reported
 * as a DROP action; returns how many were evicted. */
size_t mqe2e__sess_hold_make_room(mqe2e_session *c, const char *topic, size_t len,
                                  uint32_t ahead)
{
    size_t evicted = 0;
    while (!mqe2e__sess_hold_quota_ok(c, topic, len) &&
           mqe2e_holdq_evict_worst(c->holdq, topic, ahead) == MQE2E_OK)
        evicted++;
    while ((mqe2e_holdq_count(c->holdq) >= c->hold_count ||
            len + strlen(topic) > c->hold_bytes - mqe2e_holdq_bytes(c->holdq)) &&
           mqe2e_holdq_evict_worst(c->holdq, NULL, ahead) == MQE2E_OK)
        evicted++;
    c->k.hold_dropped += evicted;
    for (size_t i = 0; i < evicted; i++)
        mqe2e__sess_drop(c, "(held)", MQE2E_ERR_NO_KEY, 0);
    return evicted;
}

void mqe2e__sess_maybe_trigger_hello(mqe2e_session *c)
{
    uint64_t now = c->t.wall_s;
    if (c->hello != NULL && now - c->hello_started < CTL_RETRY_SECONDS) return;
    if (c->last_trigger != 0 && now - c->last_trigger < CTL_TRIGGER_SECONDS) return;
    c->last_trigger = now;
    mqe2e__sess_hello_start(c);
}

/*
 * Hand every held message whose key is now known to the normal receive path
 * (DELIVER or DROP actions, current = 0), in arrival order; the others go
 * back to the tail keeping their arrival time, so their relative order is
 * kept too.
 */
void mqe2e__sess_release(mqe2e_session *c)
{
    size_t n = mqe2e_holdq_count(c->holdq);
    for (size_t i = 0; i < n; i++) {
        mqe2e_held *h = NULL;
        mqe2e_policy_kind kind;
        const char *target = NULL;
        int ready = 0, denied = 0, forged = 0, v = CTL_EPOCH_KNOWN;
        uint32_t ahead = 0;

        if (mqe2e_holdq_pop(c->holdq, &h) != MQE2E_OK) break;
        if (mqe2e_policy_lookup(c->policy, h->topic, &kind, &target) == MQE2E_OK &&
            kind == MQE2E_POLICY_GROUP && target != NULL)
            v = mqe2e__sess_epoch_verdict(c, target, h->topic, h->data, h->len, &ahead);
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
             * than let it hold room until it ages out (docs/PROTOCOL.md 9.4). */
            forged = 1;
            c->k.hold_dropped++;
        } else if (mqe2e_holdq_push_meta(c->holdq, h->topic, h->data, h->len, h->meta,
                                         h->meta_len, h->tag, h->arrived_at, ahead) != MQE2E_OK) {
            ready = 1; /* cannot happen (it fitted before); the normal path counts it */
        }
        if (ready) c->k.released++;
        if (denied) mqe2e__sess_drop(c, h->topic, MQE2E_ERR_GRANT, 0);
        if (forged) mqe2e__sess_drop(c, h->topic, MQE2E_ERR_NO_KEY, 0);
        if (ready) {
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
        mqe2e_held_free(h);
    }
}

/* Drop what waited too long (counted as no_key). */
void mqe2e__sess_expire(mqe2e_session *c)
{
    size_t n = mqe2e_holdq_expire(c->holdq, c->t.wall_s);
    c->k.hold_dropped += n;
    for (size_t i = 0; i < n; i++)
        mqe2e__sess_drop(c, "(held)", MQE2E_ERR_NO_KEY, 0);
}
