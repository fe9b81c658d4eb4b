/**
 * @file authority_tree_db.h
 * @brief The store of the groups' key trees (docs/PROTOCOL.md §10): schema
 *        step 7 of the authority database, a small function set over it.
 *
 * A tree group has one row in group_trees (tree id, depth, tree epoch and
 * the group epoch of tree epoch 0: group epoch = tree epoch + epoch_base),
 * one row per occupied leaf in tree_leaves (which client holds it), and one
 * row per node with a member below it in tree_nodes, its key sealed under
 * the database key like every secret column (AD authority_ad_tree_node()).
 * Keys of empty subtrees are not stored: they were never handed out, and a
 * restored tree draws them afresh (mqe2e_keytree_restore()).
 *
 * Writers run inside the caller's transaction (mqe2e_adb_tx_begin()), so a
 * tree change commits with the group rotation it causes.
 */
#ifndef MQE2E_AUTHORITY_TREE_DB_H
#define MQE2E_AUTHORITY_TREE_DB_H

#include <stdint.h>

#include "authority_db.h"
#include "mqe2e/keytree.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @brief Schema step 7 (called by the store's migration, inside its transaction). */
int authority_tree_db_migrate(mqe2e_adb *db);

/**
 * @brief Record a new, empty tree for @p group (an existing group).
 * @param epoch_base the group epoch that tree epoch 0 maps to.
 * @return ::MQE2E_OK; ::MQE2E_ERR_EXISTS (already a tree group);
 *         ::MQE2E_ERR_NOT_FOUND (no such group); ::MQE2E_ERR_IO.
 */
int authority_tree_db_create(mqe2e_adb *db, const char *group, const mqe2e_keytree *t,
                             uint32_t epoch_base);

/**
 * @brief Load the tree of @p group.
 * @param out receives the tree (free with mqe2e_keytree_free()).
 * @param epoch_base out: group epoch = tree epoch + *epoch_base.
 * @return ::MQE2E_OK; ::MQE2E_ERR_NOT_FOUND (not a tree group);
 *         ::MQE2E_ERR_AUTH (a node key does not open: wrong key or tampered
 *         row); ::MQE2E_ERR_IO; ::MQE2E_ERR_NOMEM.
 */
int authority_tree_db_load(mqe2e_keytree **out, uint32_t *epoch_base, mqe2e_adb *db,
                           const char *group);

/**
 * @brief Write what an add or a remove of @p leaf changed: the tree epoch,
 *        the keys of the leaf's path (rows of nodes left empty deleted) and
 *        the leaf row (inserted for @p client_id, or deleted when
 *        @p client_id is NULL: a removal).
 * @return ::MQE2E_OK; ::MQE2E_ERR_EXISTS (client already holds a leaf); ::MQE2E_ERR_IO.
 */
int authority_tree_db_save(mqe2e_adb *db, const char *group, const mqe2e_keytree *t, uint32_t leaf,
                           const char *client_id);

/** Client id of the member at @p leaf (for authority_tree_db_save_all()). */
typedef const char *(*authority_tree_leaf_owner)(uint32_t leaf, void *user);

/**
 * @brief Write a whole tree at once (a store prepared in bulk, e.g. by a
 *        benchmark or an import): its epoch, every non-empty node's key and
 *        one leaf row per occupied leaf, its client from @p owner.
 * @return ::MQE2E_OK; ::MQE2E_ERR_EXISTS; ::MQE2E_ERR_NOT_FOUND (not a tree group); ::MQE2E_ERR_IO.
 */
int authority_tree_db_save_all(mqe2e_adb *db, const char *group, const mqe2e_keytree *t,
                               authority_tree_leaf_owner owner, void *user);

/**
 * @brief The leaf of @p client_id in the tree of @p group.
 * @return ::MQE2E_OK; ::MQE2E_ERR_NOT_FOUND; ::MQE2E_ERR_IO.
 */
int authority_tree_db_leaf(uint32_t *leaf, mqe2e_adb *db, const char *group,
                           const char *client_id);

/**
 * @brief A leaf of @p group whose client is no longer a member of it (just
 *        removed or revoked, in the caller's transaction).
 * @return ::MQE2E_OK; ::MQE2E_ERR_NOT_FOUND (none); ::MQE2E_ERR_IO.
 */
int authority_tree_db_orphan(uint32_t *leaf, mqe2e_adb *db, const char *group);

/** @brief 1 when @p group has a key tree, 0 when not (or on a read error). */
int authority_tree_db_is_tree(mqe2e_adb *db, const char *group);

/**
 * @brief Call @p cb for every tree group, by name.
 * @return ::MQE2E_OK, the callback's non-zero value, ::MQE2E_ERR_IO.
 */
int authority_tree_db_list(mqe2e_adb *db, mqe2e_adb_name_cb cb, void *user);

/**
 * @brief Members of @p group (its rows in group_members, tree or not).
 * @return ::MQE2E_OK; ::MQE2E_ERR_IO.
 */
int authority_tree_db_member_count(uint32_t *n, mqe2e_adb *db, const char *group);

#ifdef __cplusplus
}
#endif
#endif
