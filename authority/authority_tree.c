/*
 * Key-tree groups in the authority's core (docs/PROTOCOL.md §10.8): a group
 * created with a tree keeps an LKH tree (lib keytree.h); a join or a removal
 * changes the tree, rotates the group to the tree's next epoch secret and
 * broadcasts ONE signed TreeUpdate on P/tree/<group> instead of one push per
 * member. Trees are cached in memory after their first use and persisted by
 * authority_tree_db.c in the caller's transaction; a rolled-back transaction
 * drops the changed trees from the cache (reloaded from the store).
 *
 * The signed updates wait in one list, in the order they were made (several
 * per group when one transaction joins or removes several members, e.g. an
 * enrollment batch), and are broadcast in that order after the commit. A
 * savepoint undone inside a transaction (one refused enrollment of a batch)
 * drops the updates made since its mark and the changed trees, which are
 * then reloaded from the store as the transaction sees them.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authority_internal.h"
#include "authority_tree_db.h"
#include "mqe2e/error.h"

#define UPDATE_CAP MQE2E_KEYTREE_UPDATE_MAX(MQE2E_KEYTREE_MAX_DEPTH)

typedef struct tree_group {
    char name[MQE2E_ADB_NAME_MAX];
    mqe2e_keytree *t;
    uint32_t base; /* group epoch = tree epoch + base */
    int dirty;     /* changed in memory (or read inside a transaction), not committed yet */
} tree_group;

/* A signed TreeUpdate waiting for the commit of its transaction. */
typedef struct tree_pending {
    char name[MQE2E_ADB_NAME_MAX];
    uint8_t *p;
    size_t n;
} tree_pending;

struct authority_trees {
    tree_group *v;
    size_t n;
    tree_pending *pend; /* in the order they were made: epoch order per group */
    size_t n_pend, cap_pend;
    int load_dirty; /* a savepoint was undone: trees loaded now hold uncommitted rows */
};

static void tg_clear(tree_group *g)
{
    mqe2e_keytree_free(g->t);
    memset(g, 0, sizeof *g);
}

/* Drop the pending updates from index @p from on. */
static void pending_drop(struct authority_trees *ts, size_t from)
{
    for (size_t i = from; i < ts->n_pend; i++)
        free(ts->pend[i].p);
    if (from < ts->n_pend) ts->n_pend = from;
}

void authority_trees_free(authority *a)
{
    if (a->trees == NULL) return;
    for (size_t i = 0; i < a->trees->n; i++) tg_clear(&a->trees->v[i]);
    pending_drop(a->trees, 0);
    free(a->trees->pend);
    free(a->trees->v);
    free(a->trees);
    a->trees = NULL;
}

static tree_group *find(authority *a, const char *group)
{
    if (a->trees == NULL) return NULL;
    for (size_t i = 0; i < a->trees->n; i++)
        if (strcmp(a->trees->v[i].name, group) == 0) return &a->trees->v[i];
    return NULL;
}

static int cache_add(authority *a, const char *group, mqe2e_keytree *t, uint32_t base,
                     tree_group **out)
{
    if (a->trees == NULL && (a->trees = calloc(1, sizeof *a->trees)) == NULL)
        return MQE2E_ERR_NOMEM;
    tree_group *v = realloc(a->trees->v, (a->trees->n + 1U) * sizeof *v);
    if (v == NULL) return MQE2E_ERR_NOMEM;
    a->trees->v = v;
    tree_group *g = &v[a->trees->n++];
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", group);
    g->t = t;
    g->base = base;
    *out = g;
    return MQE2E_OK;
}

/* The tree of a group: cached, or loaded. MQE2E_ERR_NOT_FOUND: not a tree group. */
static int tree_get(authority *a, const char *group, tree_group **out)
{
    *out = find(a, group);
    if (*out != NULL) return MQE2E_OK;
    mqe2e_keytree *t = NULL;
    uint32_t base = 0;
    int rc = authority_tree_db_load(&t, &base, a->db, group);
    if (rc != MQE2E_OK) {
        if (rc != MQE2E_ERR_NOT_FOUND)
            authority_log(a, "cannot load the key tree of %s: %s", group, mqe2e_strerror(rc));
        return rc;
    }
    rc = cache_add(a, group, t, base, out);
    if (rc != MQE2E_OK) mqe2e_keytree_free(t);
    /* Read after an undone savepoint: it holds the transaction's rows, which
     * a later rollback must drop again. */
    if (rc == MQE2E_OK && a->trees->load_dirty) (*out)->dirty = 1;
    return rc;
}

int authority_tree_is_tree(authority *a, const char *group)
{
    tree_group *g = NULL;
    return tree_get(a, group, &g) == MQE2E_OK;
}

void authority_tree_topic(const authority *a, char *out, size_t cap, const char *group)
{
    snprintf(out, cap, "%s/tree/%s", a->cfg->prefix, group);
}

int authority_tree_create_db(authority *a, const char *group, unsigned depth)
{
    mqe2e_adb_group grp;
    mqe2e_keytree *t = NULL;
    tree_group *g = NULL;
    int rc = mqe2e_adb_group_get(&grp, a->db, group);
    if (rc == MQE2E_OK) rc = mqe2e_keytree_new(&t, depth);
    if (rc == MQE2E_OK) rc = authority_tree_db_create(a->db, group, t, grp.current_epoch);
    if (rc == MQE2E_OK) rc = cache_add(a, group, t, grp.current_epoch, &g);
    if (rc != MQE2E_OK) {
        mqe2e_keytree_free(t);
        return rc;
    }
    g->dirty = 1;
    return MQE2E_OK;
}

/* Rotate the group to the tree's current epoch secret; the group epoch must
 * follow the tree epoch (nothing else rotates a tree group). */
static int rotate_to_tree(authority *a, tree_group *g, uint32_t *group_epoch)
{
    uint8_t s[MQE2E_KEYTREE_KEY_BYTES];
    uint32_t e = 0;
    int rc = mqe2e_keytree_epoch_secret(g->t, s);
    if (rc == MQE2E_OK) rc = mqe2e_adb_group_rotate(&e, a->db, g->name, s, a->now);
    sodium_memzero(s, sizeof s);
    if (rc == MQE2E_OK && e != mqe2e_keytree_epoch(g->t) + g->base) rc = MQE2E_ERR_STATE;
    if (rc == MQE2E_OK) *group_epoch = e;
    return rc;
}

static int keep_pending(authority *a, const tree_group *g, const uint8_t *u, size_t n)
{
    struct authority_trees *ts = a->trees;
    if (ts->n_pend == ts->cap_pend) {
        size_t cap = ts->cap_pend ? ts->cap_pend * 2U : 4U;
        tree_pending *v = realloc(ts->pend, cap * sizeof *v);
        if (v == NULL) return MQE2E_ERR_NOMEM;
        ts->pend = v;
        ts->cap_pend = cap;
    }
    uint8_t *p = malloc(n);
    if (p == NULL) return MQE2E_ERR_NOMEM;
    memcpy(p, u, n);
    tree_pending *e = &ts->pend[ts->n_pend++];
    snprintf(e->name, sizeof e->name, "%s", g->name);
    e->p = p;
    e->n = n;
    return MQE2E_OK;
}

int authority_tree_join_db(authority *a, const char *group, const char *client_id,
                           uint32_t *group_epoch)
{
    tree_group *g = NULL;
    int rc = tree_get(a, group, &g);
    if (rc != MQE2E_OK) return rc;
    uint8_t u[MQE2E_KEYTREE_UPDATE_HEADER + MQE2E_KEYTREE_SIG_BYTES];
    uint8_t leaf_key[MQE2E_KEYTREE_KEY_BYTES];
    size_t n = 0;
    uint32_t leaf = 0;
    g->dirty = 1;
    rc = mqe2e_keytree_add_cb(g->t, &leaf, leaf_key, u, sizeof u, &n, authority_keystore_sign,
                              a->ks);
    sodium_memzero(leaf_key, sizeof leaf_key); /* handed out from the tree with each HELLO */
    if (rc == MQE2E_OK) rc = rotate_to_tree(a, g, group_epoch);
    if (rc == MQE2E_OK) rc = authority_tree_db_save(a->db, group, g->t, leaf, client_id);
    if (rc == MQE2E_OK) rc = keep_pending(a, g, u, n);
    if (rc != MQE2E_OK)
        authority_log(a, "key tree of %s: join of %s failed: %s", group, client_id,
                      mqe2e_strerror(rc));
    return rc;
}

int authority_tree_remove_db(authority *a, const char *group, uint32_t *group_epoch)
{
    tree_group *g = NULL;
    int rc = tree_get(a, group, &g);
    if (rc != MQE2E_OK) return rc;
    uint32_t leaf = 0;
    rc = authority_tree_db_orphan(&leaf, a->db, group);
    if (rc == MQE2E_ERR_NOT_FOUND) {
        /* A member left that holds no leaf: not one this code made. */
        authority_log(a, "key tree of %s: the member who left holds no leaf", group);
        return MQE2E_ERR_STATE;
    }
    if (rc != MQE2E_OK) return rc;
    uint8_t *u = malloc(UPDATE_CAP);
    if (u == NULL) return MQE2E_ERR_NOMEM;
    size_t n = 0;
    g->dirty = 1;
    rc = mqe2e_keytree_remove_cb(g->t, leaf, u, UPDATE_CAP, &n, authority_keystore_sign, a->ks);
    if (rc == MQE2E_OK) rc = rotate_to_tree(a, g, group_epoch);
    if (rc == MQE2E_OK) rc = authority_tree_db_save(a->db, group, g->t, leaf, NULL);
    if (rc == MQE2E_OK) rc = keep_pending(a, g, u, n);
    free(u);
    if (rc != MQE2E_OK)
        authority_log(a, "key tree of %s: removal of leaf %lu failed: %s", group,
                      (unsigned long)leaf, mqe2e_strerror(rc));
    return rc;
}

/* Drop the trees changed since the last commit from the cache. */
static void drop_dirty(authority *a)
{
    size_t k = 0;
    for (size_t i = 0; i < a->trees->n; i++) {
        if (a->trees->v[i].dirty)
            tg_clear(&a->trees->v[i]);
        else
            a->trees->v[k++] = a->trees->v[i];
    }
    a->trees->n = k;
}

void authority_tree_rollback(authority *a)
{
    if (a->trees == NULL) return;
    drop_dirty(a);
    pending_drop(a->trees, 0);
    a->trees->load_dirty = 0;
}

size_t authority_tree_mark(const authority *a)
{
    return a->trees != NULL ? a->trees->n_pend : 0U;
}

void authority_tree_undo(authority *a, size_t mark)
{
    if (a->trees == NULL) return;
    drop_dirty(a);
    pending_drop(a->trees, mark);
    a->trees->load_dirty = 1;
}

int authority_tree_pending(authority *a, const char *group)
{
    if (a->trees == NULL) return 0;
    for (size_t i = 0; i < a->trees->n_pend; i++)
        if (strcmp(a->trees->pend[i].name, group) == 0) return 1;
    return 0;
}

static int publish_one(authority *a, const tree_pending *e)
{
    char topic[MQE2E_CONTROL_PREFIX_MAX + 8U + MQE2E_ADB_NAME_MAX];
    authority_tree_topic(a, topic, sizeof topic, e->name);
    int rc = a->io.publish(a->io.ctx, topic, e->p, e->n, 0) == 0 ? MQE2E_OK : MQE2E_ERR_IO;
    a->counters[rc == MQE2E_OK ? AUTH_C_TREE_UPDATES : AUTH_C_PUSH_FAILED]++;
    a->last_push_bytes = e->n;
    a->last_tree_update_bytes = e->n;
    /* Header bytes 23..26: the tree epoch the update leads to (§10.4). */
    uint32_t to = e->n >= MQE2E_KEYTREE_UPDATE_HEADER
                      ? (uint32_t)e->p[23] << 24 | (uint32_t)e->p[24] << 16 |
                            (uint32_t)e->p[25] << 8 | (uint32_t)e->p[26]
                      : 0U;
    authority_log(a, "group %s: key tree at tree epoch %lu, one update of %lu bytes broadcast%s",
                  e->name, (unsigned long)to, (unsigned long)e->n,
                  rc == MQE2E_OK ? "" : " FAILED (members catch up by HELLO)");
    return rc;
}

/* Publish the pending updates of @p group (every group when NULL), in order. */
static int publish_pending(authority *a, const char *group)
{
    struct authority_trees *ts = a->trees;
    int rc = MQE2E_OK;
    size_t k = 0;
    for (size_t i = 0; i < ts->n_pend; i++) {
        tree_pending *e = &ts->pend[i];
        if (group != NULL && strcmp(e->name, group) != 0) {
            ts->pend[k++] = *e;
            continue;
        }
        int prc = publish_one(a, e);
        if (prc != MQE2E_OK) rc = prc;
        free(e->p);
    }
    ts->n_pend = k;
    return rc;
}

int authority_tree_publish(authority *a, const char *group)
{
    tree_group *g = find(a, group);
    if (g == NULL && !authority_tree_pending(a, group)) return MQE2E_ERR_NOT_FOUND;
    if (g != NULL) g->dirty = 0;
    return publish_pending(a, group);
}

int authority_tree_publish_all(authority *a)
{
    if (a->trees == NULL) return MQE2E_OK;
    for (size_t i = 0; i < a->trees->n; i++)
        a->trees->v[i].dirty = 0;
    a->trees->load_dirty = 0;
    return publish_pending(a, NULL);
}

int authority_tree_bundle(authority *a, mqe2e_key_bundle *b, const char *client_id)
{
    if (b->retired_at != 0) return MQE2E_OK;
    tree_group *g = NULL;
    int rc = tree_get(a, b->group, &g);
    if (rc == MQE2E_ERR_NOT_FOUND) return MQE2E_OK;
    if (rc != MQE2E_OK) return rc;
    uint32_t leaf = 0;
    rc = authority_tree_db_leaf(&leaf, a->db, b->group, client_id);
    if (rc == MQE2E_ERR_NOT_FOUND) return MQE2E_OK; /* a member without a leaf: no tree fields */
    if (rc != MQE2E_OK) return rc;
    if (b->epoch != mqe2e_keytree_epoch(g->t) + g->base) return MQE2E_OK;
    size_t n = 0;
    unsigned d = mqe2e_keytree_depth(g->t);
    rc = mqe2e_keytree_node_key(g->t, (1U << d) + leaf, b->tree_leaf_key);
    if (rc == MQE2E_OK) rc = mqe2e_keytree_path(g->t, leaf, b->tree_path, sizeof b->tree_path, &n);
    if (rc != MQE2E_OK) {
        sodium_memzero(b->tree_leaf_key, sizeof b->tree_leaf_key);
        return rc;
    }
    b->tree_path_len = (uint32_t)n;
    /* The cut grace a removal gives the retired epoch (§10.9): the TreeUpdate
     * cannot carry it, so the member learns it here. */
    uint64_t grace =
        a->cfg->revoke_grace > 0 ? a->cfg->revoke_grace : AUTHORITY_DEFAULT_REVOKE_GRACE;
    b->tree_grace_seconds =
        grace > MQE2E_BUNDLE_TREE_GRACE_MAX ? MQE2E_BUNDLE_TREE_GRACE_MAX : (uint32_t)grace;
    return MQE2E_OK;
}

uint32_t authority_tree_members(authority *a, const char *group)
{
    tree_group *g = NULL;
    return tree_get(a, group, &g) == MQE2E_OK ? mqe2e_keytree_members(g->t) : 0U;
}

/* ------------------------------------------------ converting a push group */

unsigned authority_tree_depth_for(uint64_t members)
{
    unsigned d = 3;
    while (d < MQE2E_KEYTREE_MAX_DEPTH && (1ULL << d) < 2ULL * members)
        d++;
    return d;
}

typedef struct conv_members {
    char **ids;
    size_t n, cap;
} conv_members;

static int conv_member_cb(const char *client_id, uint32_t sender_id, uint64_t added_at, void *user)
{
    (void)sender_id;
    (void)added_at;
    conv_members *m = user;
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2U : 64U;
        char **v = realloc(m->ids, cap * sizeof *v);
        if (v == NULL) return MQE2E_ERR_NOMEM;
        m->ids = v;
        m->cap = cap;
    }
    if ((m->ids[m->n] = strdup(client_id)) == NULL) return MQE2E_ERR_NOMEM;
    m->n++;
    return 0;
}

static const char *conv_owner(uint32_t leaf, void *user)
{
    const conv_members *m = user;
    return leaf < m->n ? m->ids[leaf] : NULL;
}

static void conv_members_free(conv_members *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->ids[i]);
    free(m->ids);
    memset(m, 0, sizeof *m);
}

/* Why a push group cannot become a key-tree group now (MQE2E_OK: it can).
 * Read-only: nothing is written before every check passed. */
static int convert_check(authority *a, const mqe2e_adb_group *grp, uint32_t members, unsigned depth)
{
    if (authority_tree_is_tree(a, grp->name)) return MQE2E_ERR_EXISTS;
    if (grp->rotate_every_seconds != 0 || grp->rotate_every_messages != 0) return MQE2E_ERR_STATE;
    if (depth < 1U || depth > MQE2E_KEYTREE_MAX_DEPTH) return MQE2E_ERR_INVALID_ARG;
    if ((uint64_t)members > (1ULL << depth)) return MQE2E_ERR_TOO_LARGE;
    /* A ticket made while it was a push group still enrolls: once the group
     * is a tree, that enrollment joins it at a leaf like any token naming a
     * tree group (PROTOCOL.md §10.8), so no ticket holds the conversion back. */
    return MQE2E_OK;
}

int authority_tree_convert_db(authority *a, const char *group, unsigned *depth,
                              uint32_t *members, uint32_t *group_epoch)
{
    mqe2e_adb_group grp;
    conv_members m = {NULL, 0, 0};
    mqe2e_keytree *t = NULL;
    tree_group *g = NULL;
    uint8_t id[MQE2E_KEYTREE_ID_BYTES];
    int rc = mqe2e_adb_group_get(&grp, a->db, group);
    if (rc == MQE2E_OK) rc = mqe2e_adb_members_list(a->db, group, conv_member_cb, &m);
    if (rc == MQE2E_OK && m.n > (1UL << MQE2E_KEYTREE_MAX_DEPTH)) rc = MQE2E_ERR_TOO_LARGE;
    if (rc == MQE2E_OK && *depth == 0U) *depth = authority_tree_depth_for(m.n);
    if (rc == MQE2E_OK) rc = convert_check(a, &grp, (uint32_t)m.n, *depth);
    /* The tree at epoch 1 with leaves 0..n-1 held by the members, written in
     * bulk (no join update per member); tree epoch 0 is the group's current
     * epoch (base), so the one rotation below makes group epoch base + 1. */
    randombytes_buf(id, sizeof id);
    if (rc == MQE2E_OK) rc = mqe2e_keytree_restore(&t, id, *depth, 1);
    for (uint32_t i = 0; rc == MQE2E_OK && i < m.n; i++)
        rc = mqe2e_keytree_restore_leaf(t, i);
    if (rc == MQE2E_OK) rc = authority_tree_db_create(a->db, group, t, grp.current_epoch);
    if (rc == MQE2E_OK) rc = authority_tree_db_save_all(a->db, group, t, conv_owner, &m);
    if (rc == MQE2E_OK) rc = cache_add(a, group, t, grp.current_epoch, &g);
    if (rc != MQE2E_OK) {
        mqe2e_keytree_free(t);
        conv_members_free(&m);
        return rc;
    }
    g->dirty = 1;
    rc = rotate_to_tree(a, g, group_epoch);
    if (rc == MQE2E_OK) a->counters[AUTH_C_ROTATIONS]++;
    *members = (uint32_t)m.n;
    conv_members_free(&m);
    return rc;
}

int authority_tree_convert(authority *a, const char *group, unsigned *depth, uint32_t *members,
                           uint32_t *group_epoch)
{
    int rc = mqe2e_adb_tx_begin(a->db);
    if (rc != MQE2E_OK) return rc;
    rc = authority_tree_convert_db(a, group, depth, members, group_epoch);
    if (rc == MQE2E_OK) rc = mqe2e_adb_tx_commit(a->db);
    if (rc != MQE2E_OK) {
        (void)mqe2e_adb_tx_rollback(a->db);
        authority_tree_rollback(a);
        return rc;
    }
    (void)authority_tree_publish(a, group); /* nothing to broadcast: marks it committed */
    a->counters[AUTH_C_TREE_CONVERSIONS]++;
    authority_log(a,
                  "group %s converted to a key tree of depth %u: %lu members, group epoch %lu; "
                  "one push per member carries its leaf key and path",
                  group, *depth, (unsigned long)*members, (unsigned long)*group_epoch);
    /* The one-time linear cost of switching: the rotation's push, whose
     * current bundle carries each member's tree fields (push_group_except). */
    (void)authority_push_rotated(a, group, 0, *group_epoch);
    return MQE2E_OK;
}

int authority_tree_threshold_check(authority *a, const char *group, unsigned *depth)
{
    uint32_t n = 0, members = 0, epoch = 0;
    uint64_t threshold = a->cfg->tree_threshold;
    if (threshold == 0 || authority_tree_is_tree(a, group)) return 0;
    if (authority_tree_db_member_count(&n, a->db, group) != MQE2E_OK || n < threshold) return 0;
    *depth = 0;
    int rc = authority_tree_convert(a, group, depth, &members, &epoch);
    if (rc == MQE2E_OK) return 1;
    authority_log(a, "group %s reached %lu members (tree_threshold %llu) but stays a push group: %s",
                  group, (unsigned long)n, (unsigned long long)threshold,
                  rc == MQE2E_ERR_STATE ? "it has rotation settings" : mqe2e_strerror(rc));
    return 0;
}
