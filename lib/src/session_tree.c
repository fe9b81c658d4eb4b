/*
 * The device session's key-tree groups (docs/PROTOCOL.md §10.8-10.9): the
 * member state built from the leaf key and TreePath of a HELLO/PUSH bundle,
 * the subscription to P/tree/<group> of each group it is a member of (made
 * at connect, or when a bundle makes it a member; dropped when it leaves),
 * and each TreeUpdate received
 * turned into the group's next epoch, installed through the same update
 * apply as every bundle (update_apply.c). Refusals are counted by reason.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal_session.h"
#include "mqe2e/keytree.h"

struct ctl_tree {
    char group[MQE2E_GROUP_ID_MAX_BYTES + 1];
    char filter[MQE2E_BUNDLE_FILTER_MAX + 1];
    char topic[MQE2E_KS_PREFIX_MAX_BYTES + 8 + MQE2E_GROUP_ID_MAX_BYTES];
    uint32_t base;      /* group epoch = tree epoch + base */
    uint32_t sender_id; /* the member's, from its bundle */
    uint32_t grace;     /* s the epoch a removal retires stays readable (bundle's) */
    mqe2e_keytree_member *m;
    int revoked;
    int subscribed; /* a SUBSCRIBE for topic was queued on this connection */
    ctl_tree *next;
};

static uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static ctl_tree *tree_find(mqe2e_session *c, const char *group)
{
    for (ctl_tree *t = c->trees; t != NULL; t = t->next)
        if (strcmp(t->group, group) == 0) return t;
    return NULL;
}

/* Subscriptions (docs/PROTOCOL.md §10.9): only while connected and a member;
 * the caller performs them outside any receive callback (session.h). */
static void tree_subscribe(mqe2e_session *c, ctl_tree *t)
{
    if (!c->connected || t->subscribed || t->m == NULL || t->revoked) return;
    if (mqe2e__sess_subscription(c, MQE2E_SESSION_SUBSCRIBE, t->topic) == MQE2E_OK)
        t->subscribed = 1;
}

static void tree_unsubscribe(mqe2e_session *c, ctl_tree *t)
{
    if (!t->subscribed) return;
    t->subscribed = 0;
    if (c->connected) (void)mqe2e__sess_subscription(c, MQE2E_SESSION_UNSUBSCRIBE, t->topic);
}

void mqe2e__sess_tree_connected(mqe2e_session *c)
{
    for (ctl_tree *t = c->trees; t != NULL; t = t->next) {
        t->subscribed = 0;
        tree_subscribe(c, t);
    }
}

void mqe2e__sess_tree_disconnected(mqe2e_session *c)
{
    for (ctl_tree *t = c->trees; t != NULL; t = t->next)
        t->subscribed = 0;
}

static void tree_drop(mqe2e_session *c, ctl_tree **pp)
{
    ctl_tree *t = *pp;
    *pp = t->next;
    tree_unsubscribe(c, t);
    mqe2e_keytree_member_free(t->m);
    sodium_memzero(t, sizeof *t);
    free(t);
}

void mqe2e__sess_tree_leave(mqe2e_session *c, const char *group)
{
    for (ctl_tree **pp = &c->trees; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->group, group) != 0) continue;
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_INFO, "group '%s': left, its key tree unsubscribed",
                        group);
        tree_drop(c, pp);
        return;
    }
}

void mqe2e__sess_tree_leave_all(mqe2e_session *c)
{
    while (c->trees != NULL)
        tree_drop(c, &c->trees);
}

void mqe2e__sess_tree_free(mqe2e_session *c)
{
    while (c->trees != NULL) {
        ctl_tree *t = c->trees;
        c->trees = t->next;
        mqe2e_keytree_member_free(t->m);
        sodium_memzero(t, sizeof *t);
        free(t);
    }
}


/* The state is the one the bundle's TreePath gives, unless the member is
 * already there or past it in the same tree (keys never go backward). */
void mqe2e__sess_tree_from_bundle(mqe2e_session *c, const mqe2e_key_bundle *b)
{
    const uint8_t *p = b->tree_path;
    if (b->tree_path_len < MQE2E_KEYTREE_PATH_HEADER) return;
    uint32_t e = be32(p + 19), leaf = be32(p + 23);
    if (strpbrk(b->group, "+#") != NULL) {
        /* P/tree/<group> would be a filter, not a topic: never subscribed. */
        c->k.tree_refused++;
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_WARNING,
                        "group '%s': a wildcard in a key-tree group's name: refused", b->group);
        return;
    }
    if (e > b->epoch) {
        c->k.tree_refused++;
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_WARNING,
                        "group '%s': tree path at epoch %lu above its group epoch %lu: refused",
                        b->group, (unsigned long)e, (unsigned long)b->epoch);
        return;
    }
    ctl_tree *t = tree_find(c, b->group);
    int fresh = t == NULL;
    if (fresh) {
        if ((t = calloc(1, sizeof *t)) == NULL) return;
        (void)snprintf(t->group, sizeof t->group, "%s", b->group);
        (void)snprintf(t->topic, sizeof t->topic, "%s/tree/%s", c->pin.control_prefix, b->group);
    }
    int rc = MQE2E_OK;
    if (t->m != NULL && !t->revoked && mqe2e_keytree_member_leaf(t->m) == leaf) {
        if (e > mqe2e_keytree_member_epoch(t->m))
            rc = mqe2e_keytree_member_catch_up(t->m, p, b->tree_path_len);
        /* AUTH here: another tree or leaf key (the group was re-created): start over. */
        if (rc == MQE2E_ERR_AUTH) {
            mqe2e_keytree_member_free(t->m);
            t->m = NULL;
        }
    } else {
        mqe2e_keytree_member_free(t->m);
        t->m = NULL;
    }
    if (t->m == NULL)
        rc = mqe2e_keytree_member_new(&t->m, p + 2, b->tree_leaf_key, p, b->tree_path_len);
    if (rc != MQE2E_OK || t->m == NULL) {
        c->k.tree_refused++;
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_WARNING, "group '%s': tree path refused: %s",
                        b->group, mqe2e_error_name(rc));
        if (fresh) free(t);
        return;
    }
    t->revoked = 0;
    (void)snprintf(t->filter, sizeof t->filter, "%s", b->topic_filter);
    t->sender_id = b->sender_id;
    /* The authority's cut grace for this group (§10.9): from the latest bundle. */
    t->grace = b->tree_grace_seconds != 0 ? b->tree_grace_seconds : MQE2E_BUNDLE_TREE_GRACE_DEFAULT;
    t->base = b->epoch - e;
    if (fresh) {
        t->next = c->trees;
        c->trees = t;
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_INFO, "group '%s': key tree member at leaf %lu",
                        b->group, (unsigned long)leaf);
    }
    /* Updates published before this subscription takes effect are not
     * received: the member catches up by the gap rule at the next update,
     * by 9.4 at the first message under a newer epoch, or by the periodic
     * HELLO (docs/PROTOCOL.md §10.9). */
    tree_subscribe(c, t);
}

static void bundle_of(mqe2e_key_bundle *nb, const ctl_tree *t, uint32_t epoch, uint64_t now)
{
    memset(nb, 0, sizeof *nb);
    (void)snprintf(nb->group, sizeof nb->group, "%s", t->group);
    (void)snprintf(nb->topic_filter, sizeof nb->topic_filter, "%s", t->filter);
    nb->epoch = epoch;
    nb->created_at = now;
    nb->sender_id = t->sender_id;
}

/* Apply one verified update to the member and install the epoch it reaches
 * (the previous one retired) through the shared update apply. */
static void tree_apply(mqe2e_session *c, ctl_tree *t, const mqe2e_keytree_update *u)
{
    mqe2e_key_bundle nb[2];
    uint64_t now = c->t.wall_s;
    uint32_t from = mqe2e_keytree_member_epoch(t->m);
    bundle_of(&nb[0], t, from + t->base, now);
    int rc = mqe2e_keytree_member_epoch_secret(t->m, nb[0].secret);
    if (rc == MQE2E_OK) rc = mqe2e_keytree_member_apply(t->m, u, NULL);
    switch (rc) {
    case MQE2E_OK:
        break;
    case MQE2E_ERR_REPLAY:
        c->k.tree_replayed++;
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_DEBUG,
                        "group '%s': tree update %lu -> %lu not newer than %lu: dropped", t->group,
                        (unsigned long)u->from_epoch, (unsigned long)u->to_epoch,
                        (unsigned long)from);
        break;
    case MQE2E_ERR_TREE_GAP:
        c->k.tree_gaps++;
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_INFO,
                        "group '%s': tree update from epoch %lu, member at %lu: catching up by HELLO",
                        t->group, (unsigned long)u->from_epoch, (unsigned long)from);
        mqe2e__sess_maybe_trigger_hello(c);
        break;
    case MQE2E_ERR_TREE_REVOKED:
        c->k.tree_revoked++;
        t->revoked = 1;
        tree_unsubscribe(c, t);
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_WARNING,
                        "group '%s': removed from the key tree: no new epoch", t->group);
        break;
    default:
        c->k.tree_refused++;
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_WARNING, "group '%s': tree update refused: %s",
                        t->group, mqe2e_error_name(rc));
        break;
    }
    if (rc != MQE2E_OK) {
        sodium_memzero(nb, sizeof nb);
        return;
    }
    nb[0].retired_at = now > 0 ? now : 1U;
    if (u->kind == MQE2E_KEYTREE_REMOVE) nb[0].grace_seconds = t->grace;
    bundle_of(&nb[1], t, u->to_epoch + t->base, now);
    (void)mqe2e_keytree_member_epoch_secret(t->m, nb[1].secret);
    mqe2e_control_update cu;
    memset(&cu, 0, sizeof cu);
    cu.bundles = nb;
    cu.n_bundles = 2;
    mqe2e__sess_apply_update(c, &cu, 1);
    sodium_memzero(nb, sizeof nb);
    c->k.tree_applied++;
    uint32_t epoch = u->to_epoch + t->base;
    mqe2e__sess_log(c, MQE2E_SESSION_LOG_INFO, "group '%s': key tree update applied: epoch %lu",
                    t->group, (unsigned long)epoch);
}

int mqe2e__sess_tree_route(mqe2e_session *c, const char *topic, const uint8_t *data, size_t len)
{
    size_t pl = strlen(c->pin.control_prefix);
    if (strncmp(topic, c->pin.control_prefix, pl) != 0 || strncmp(topic + pl, "/tree/", 6) != 0)
        return 0;
    ctl_tree *t = c->trees;
    while (t != NULL && strcmp(t->topic, topic) != 0)
        t = t->next;
    if (t == NULL) {
        /* Not a tree group of this session's (a subscription it dropped, or
         * one another program made for the same client id). */
        c->k.control_ignored++;
        return 1;
    }
    if (t->m == NULL || t->revoked) {
        c->k.tree_revoked += t->revoked ? 1U : 0U;
        return 1;
    }
    mqe2e_keytree_update u;
    int rc = mqe2e_keytree_update_open(&u, data, len, c->pin.sign_public);
    if (rc != MQE2E_OK) {
        c->k.tree_refused++;
        mqe2e__sess_log(c, MQE2E_SESSION_LOG_WARNING, "group '%s': tree update refused: %s",
                        t->group, mqe2e_error_name(rc));
        return 1;
    }
    tree_apply(c, t, &u);
    return 1;
}

int mqe2e__sess_tree_member_epoch(const mqe2e_session *c, const char *group, uint32_t *epoch)
{
    for (const ctl_tree *t = c->trees; t != NULL; t = t->next) {
        if (strcmp(t->group, group) != 0) continue;
        if (t->m == NULL || t->revoked) return MQE2E_ERR_TREE_REVOKED;
        *epoch = mqe2e_keytree_member_epoch(t->m) + t->base;
        return MQE2E_OK;
    }
    return MQE2E_ERR_NOT_FOUND;
}
