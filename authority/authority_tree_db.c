/* The key trees' store: schema step 7 and its statements (authority_tree_db.h). */
#include "authority_tree_db.h"

#include <sodium.h>
#include <string.h>

#include "authority_rules.h"
#include "mqe2e/error.h"
#include "store.h"

#define KB MQE2E_KEYTREE_KEY_BYTES

_Static_assert(MQE2E_ADB_SEALED_BYTES == AUTHORITY_SEALED_BYTES, "sealed size");
_Static_assert(MQE2E_KEYTREE_KEY_BYTES == MQE2E_ADB_SECRET_BYTES, "node keys are sealed secrets");

/* Step 7, SQLite: the tables, recorded in schema_migrations like step 6. */
static const char SCHEMA_V7_SQLITE[] =
    "CREATE TABLE group_trees("
    " group_name TEXT PRIMARY KEY REFERENCES \"groups\"(name) ON DELETE CASCADE,"
    " tree_id BLOB NOT NULL CHECK(length(tree_id) = 16),"
    " depth INTEGER NOT NULL CHECK(depth BETWEEN 1 AND 20),"
    " epoch INTEGER NOT NULL CHECK(epoch BETWEEN 0 AND 4294967295),"
    " epoch_base INTEGER NOT NULL CHECK(epoch_base BETWEEN 0 AND 4294967295)) STRICT;"
    "CREATE TABLE tree_leaves("
    " group_name TEXT NOT NULL REFERENCES group_trees(group_name) ON DELETE CASCADE,"
    " client_id TEXT NOT NULL,"
    " leaf INTEGER NOT NULL CHECK(leaf >= 0),"
    " PRIMARY KEY(group_name, client_id),"
    " UNIQUE(group_name, leaf)) STRICT;"
    "CREATE TABLE tree_nodes("
    " group_name TEXT NOT NULL REFERENCES group_trees(group_name) ON DELETE CASCADE,"
    " node INTEGER NOT NULL CHECK(node >= 1),"
    " key BLOB NOT NULL,"
    " PRIMARY KEY(group_name, node)) STRICT, WITHOUT ROWID;"
    "INSERT INTO schema_migrations(version, name) VALUES (7, 'key_trees');"
    "PRAGMA user_version = 7;";

/* Step 7, PostgreSQL: the same tables and names, BYTEA and BIGINT. */
static const char SCHEMA_V7_PG[] =
    "CREATE TABLE group_trees("
    " group_name TEXT PRIMARY KEY REFERENCES \"groups\"(name) ON DELETE CASCADE,"
    " tree_id BYTEA NOT NULL CHECK(length(tree_id) = 16),"
    " depth BIGINT NOT NULL CHECK(depth BETWEEN 1 AND 20),"
    " epoch BIGINT NOT NULL CHECK(epoch BETWEEN 0 AND 4294967295),"
    " epoch_base BIGINT NOT NULL CHECK(epoch_base BETWEEN 0 AND 4294967295));"
    "CREATE TABLE tree_leaves("
    " group_name TEXT NOT NULL REFERENCES group_trees(group_name) ON DELETE CASCADE,"
    " client_id TEXT NOT NULL,"
    " leaf BIGINT NOT NULL CHECK(leaf >= 0),"
    " PRIMARY KEY(group_name, client_id),"
    " UNIQUE(group_name, leaf));"
    "CREATE TABLE tree_nodes("
    " group_name TEXT NOT NULL REFERENCES group_trees(group_name) ON DELETE CASCADE,"
    " node BIGINT NOT NULL CHECK(node >= 1),"
    " key BYTEA NOT NULL,"
    " PRIMARY KEY(group_name, node));"
    "INSERT INTO schema_migrations(version, name) VALUES (7, 'key_trees');";

/* Every statement from prep() goes back through store_finish() (the driver
 * keeps it prepared, keyed by the literal's address and text). */
static int prep(mqe2e_adb *db, store_stmt **st, const char *sql)
{
    *st = NULL;
    return store_prepare(mqe2e_adb_store(db), st, sql);
}

/* Run a prepared statement that returns no row, then give it back. */
static int run(mqe2e_adb *db, store_stmt *st)
{
    int rc = store_step(st);
    rc = rc == 0 ? MQE2E_OK : (rc == 1 ? MQE2E_ERR_IO : rc);
    store_finish(mqe2e_adb_store(db), st);
    return rc;
}

static int bind_u32(store_stmt *st, int i, uint32_t v)
{
    return store_bind_i64(st, i, (int64_t)v);
}

int authority_tree_db_migrate(mqe2e_adb *db)
{
    store *s = mqe2e_adb_store(db);
    int rc = store_exec(s, store_get_dialect(s) == STORE_SQLITE ? SCHEMA_V7_SQLITE : SCHEMA_V7_PG);
    return rc == MQE2E_OK ? MQE2E_OK : MQE2E_ERR_IO;
}

static int write_epoch(mqe2e_adb *db, const char *group, uint32_t epoch)
{
    store_stmt *st = NULL;
    int rc = prep(db, &st, "UPDATE group_trees SET epoch = ?2 WHERE group_name = ?1");
    if (rc == MQE2E_OK) rc = store_bind_text(st, 1, group);
    if (rc == MQE2E_OK) rc = bind_u32(st, 2, epoch);
    if (rc == MQE2E_OK) {
        rc = store_step(st);
        rc = rc == 0 ? MQE2E_OK : (rc == 1 ? MQE2E_ERR_IO : rc);
    }
    if (rc == MQE2E_OK && store_changes(st) != 1) rc = MQE2E_ERR_NOT_FOUND;
    store_finish(mqe2e_adb_store(db), st);
    return rc;
}

/* The row of one node: its sealed key while a member is below it, none otherwise. */
static int write_node(mqe2e_adb *db, const char *group, const mqe2e_keytree *t,
                      const uint8_t id[MQE2E_KEYTREE_ID_BYTES], uint32_t node)
{
    store_stmt *st = NULL;
    int rc;
    if (mqe2e_keytree_node_members(t, node) == 0U) {
        rc = prep(db, &st, "DELETE FROM tree_nodes WHERE group_name = ?1 AND node = ?2");
        if (rc == MQE2E_OK) rc = store_bind_text(st, 1, group);
        if (rc == MQE2E_OK) rc = bind_u32(st, 2, node);
        if (rc != MQE2E_OK) {
            store_finish(mqe2e_adb_store(db), st);
            return rc;
        }
        return run(db, st);
    }
    uint8_t key[KB], sealed[MQE2E_ADB_SEALED_BYTES], ad[AUTHORITY_AD_MAX];
    rc = mqe2e_keytree_node_key(t, node, key);
    if (rc != MQE2E_OK) return rc;
    mqe2e_adb_seal(db, sealed, key, ad, authority_ad_tree_node(ad, group, id, node));
    sodium_memzero(key, sizeof key);
    rc = prep(db, &st,
              "INSERT INTO tree_nodes(group_name, node, key) VALUES (?1, ?2, ?3)"
              " ON CONFLICT(group_name, node) DO UPDATE SET key = excluded.key");
    if (rc == MQE2E_OK) rc = store_bind_text(st, 1, group);
    if (rc == MQE2E_OK) rc = bind_u32(st, 2, node);
    if (rc == MQE2E_OK) rc = store_bind_blob(st, 3, sealed, sizeof sealed);
    if (rc != MQE2E_OK) {
        store_finish(mqe2e_adb_store(db), st);
        return rc;
    }
    return run(db, st);
}

int authority_tree_db_create(mqe2e_adb *db, const char *group, const mqe2e_keytree *t,
                             uint32_t epoch_base)
{
    if (db == NULL || group == NULL || t == NULL) return MQE2E_ERR_INVALID_ARG;
    uint8_t id[MQE2E_KEYTREE_ID_BYTES];
    int rc = mqe2e_keytree_id(t, id);
    store_stmt *st = NULL;
    if (rc == MQE2E_OK)
        rc = prep(db, &st,
                  "INSERT INTO group_trees(group_name, tree_id, depth, epoch, epoch_base)"
                  " VALUES (?1, ?2, ?3, ?4, ?5)");
    if (rc == MQE2E_OK) rc = store_bind_text(st, 1, group);
    if (rc == MQE2E_OK) rc = store_bind_blob(st, 2, id, sizeof id);
    if (rc == MQE2E_OK) rc = bind_u32(st, 3, mqe2e_keytree_depth(t));
    if (rc == MQE2E_OK) rc = bind_u32(st, 4, mqe2e_keytree_epoch(t));
    if (rc == MQE2E_OK) rc = bind_u32(st, 5, epoch_base);
    if (rc != MQE2E_OK) {
        store_finish(mqe2e_adb_store(db), st);
        return rc;
    }
    return run(db, st);
}

/* Occupancy from tree_leaves; a leaf out of range or listed twice is a
 * damaged store (MQE2E_ERR_IO). */
static int load_leaves(mqe2e_keytree *t, mqe2e_adb *db, const char *group)
{
    store_stmt *st = NULL;
    int rc = prep(db, &st, "SELECT leaf FROM tree_leaves WHERE group_name = ?1");
    if (rc == MQE2E_OK) rc = store_bind_text(st, 1, group);
    while (store_next_row(&rc, st)) {
        int64_t leaf = store_col_i64(st, 0);
        rc = leaf < 0 || leaf > UINT32_MAX ? MQE2E_ERR_IO
                                           : mqe2e_keytree_restore_leaf(t, (uint32_t)leaf);
        if (rc != MQE2E_OK) rc = MQE2E_ERR_IO;
    }
    store_finish(mqe2e_adb_store(db), st);
    return rc;
}

/* The sealed keys of the nodes with a member below; counts them in *n_nodes. */
static int load_nodes(uint32_t *n_nodes, mqe2e_keytree *t, mqe2e_adb *db, const char *group,
                      const uint8_t id[MQE2E_KEYTREE_ID_BYTES])
{
    store_stmt *st = NULL;
    uint8_t key[KB], ad[AUTHORITY_AD_MAX];
    int rc = prep(db, &st, "SELECT node, key FROM tree_nodes WHERE group_name = ?1");
    if (rc == MQE2E_OK) rc = store_bind_text(st, 1, group);
    while (store_next_row(&rc, st)) {
        int64_t node = store_col_i64(st, 0);
        if (node < 1 || node > UINT32_MAX ||
            mqe2e_keytree_node_members(t, (uint32_t)node) == 0U) {
            rc = MQE2E_ERR_IO; /* a node without a member below: not written by this code */
            break;
        }
        size_t n = 0;
        const uint8_t *blob = store_col_blob(st, 1, &n);
        rc = mqe2e_adb_unseal(db, key, blob, n, ad,
                              authority_ad_tree_node(ad, group, id, (uint32_t)node));
        if (rc == MQE2E_OK) rc = mqe2e_keytree_set_node_key(t, (uint32_t)node, key);
        (*n_nodes)++;
    }
    sodium_memzero(key, sizeof key);
    store_finish(mqe2e_adb_store(db), st);
    return rc;
}

int authority_tree_db_load(mqe2e_keytree **out, uint32_t *epoch_base, mqe2e_adb *db,
                           const char *group)
{
    if (out == NULL || epoch_base == NULL || db == NULL || group == NULL)
        return MQE2E_ERR_INVALID_ARG;
    *out = NULL;
    store_stmt *st = NULL;
    uint8_t id[MQE2E_KEYTREE_ID_BYTES];
    unsigned depth = 0;
    uint32_t epoch = 0;
    int rc = prep(
        db, &st, "SELECT tree_id, depth, epoch, epoch_base FROM group_trees WHERE group_name = ?1");
    if (rc == MQE2E_OK) rc = store_bind_text(st, 1, group);
    if (rc == MQE2E_OK) {
        int s = store_step(st);
        size_t n = 0;
        const uint8_t *blob = s == 1 ? store_col_blob(st, 0, &n) : NULL;
        if (s == 1 && blob != NULL && n == sizeof id) {
            memcpy(id, blob, sizeof id);
            depth = (unsigned)store_col_i64(st, 1);
            epoch = (uint32_t)store_col_i64(st, 2);
            *epoch_base = (uint32_t)store_col_i64(st, 3);
        } else {
            rc = s == 0 ? MQE2E_ERR_NOT_FOUND : MQE2E_ERR_IO;
        }
    }
    store_finish(mqe2e_adb_store(db), st);
    if (rc != MQE2E_OK) return rc;
    mqe2e_keytree *t = NULL;
    rc = mqe2e_keytree_restore(&t, id, depth, epoch);
    if (rc != MQE2E_OK) return rc;
    /* Leaves first (occupancy), then the keys of the nodes above them. */
    uint32_t n_nodes = 0;
    rc = load_leaves(t, db, group);
    if (rc == MQE2E_OK) rc = load_nodes(&n_nodes, t, db, group, id);
    /* Every node with a member below it must have had its row. */
    uint32_t want = 0;
    for (uint32_t n = 1; rc == MQE2E_OK && n < (2U << depth); n++)
        want += mqe2e_keytree_node_members(t, n) != 0U ? 1U : 0U;
    if (rc == MQE2E_OK && want != n_nodes) rc = MQE2E_ERR_IO;
    if (rc != MQE2E_OK) {
        mqe2e_keytree_free(t);
        return rc;
    }
    *out = t;
    return MQE2E_OK;
}

int authority_tree_db_save(mqe2e_adb *db, const char *group, const mqe2e_keytree *t, uint32_t leaf,
                           const char *client_id)
{
    if (db == NULL || group == NULL || t == NULL) return MQE2E_ERR_INVALID_ARG;
    uint8_t id[MQE2E_KEYTREE_ID_BYTES];
    unsigned d = mqe2e_keytree_depth(t);
    if (leaf >= (1U << d)) return MQE2E_ERR_INVALID_ARG;
    int rc = mqe2e_keytree_id(t, id);
    if (rc == MQE2E_OK) rc = write_epoch(db, group, mqe2e_keytree_epoch(t));
    uint32_t L = (1U << d) + leaf;
    for (unsigned h = 0; rc == MQE2E_OK && h <= d; h++)
        rc = write_node(db, group, t, id, L >> h);
    if (rc != MQE2E_OK) return rc;
    store_stmt *st = NULL;
    if (client_id != NULL) {
        rc = prep(db, &st,
                  "INSERT INTO tree_leaves(group_name, leaf, client_id) VALUES (?1, ?2, ?3)");
        if (rc == MQE2E_OK) rc = store_bind_text(st, 3, client_id);
    } else {
        rc = prep(db, &st, "DELETE FROM tree_leaves WHERE group_name = ?1 AND leaf = ?2");
    }
    if (rc == MQE2E_OK) rc = store_bind_text(st, 1, group);
    if (rc == MQE2E_OK) rc = bind_u32(st, 2, leaf);
    if (rc != MQE2E_OK) {
        store_finish(mqe2e_adb_store(db), st);
        return rc;
    }
    return run(db, st);
}

int authority_tree_db_save_all(mqe2e_adb *db, const char *group, const mqe2e_keytree *t,
                               authority_tree_leaf_owner owner, void *user)
{
    if (db == NULL || group == NULL || t == NULL || owner == NULL) return MQE2E_ERR_INVALID_ARG;
    uint8_t id[MQE2E_KEYTREE_ID_BYTES];
    unsigned d = mqe2e_keytree_depth(t);
    int rc = mqe2e_keytree_id(t, id);
    if (rc == MQE2E_OK) rc = write_epoch(db, group, mqe2e_keytree_epoch(t));
    for (uint32_t n = 1; rc == MQE2E_OK && n < (2U << d); n++)
        if (mqe2e_keytree_node_members(t, n) != 0U) rc = write_node(db, group, t, id, n);
    store_stmt *st = NULL;
    if (rc == MQE2E_OK)
        rc = prep(db, &st,
                  "INSERT INTO tree_leaves(group_name, leaf, client_id) VALUES (?1, ?2, ?3)");
    for (uint32_t l = 0; rc == MQE2E_OK && l < (1U << d); l++) {
        if (mqe2e_keytree_node_members(t, (1U << d) + l) == 0U) continue;
        const char *cid = owner(l, user);
        if (cid == NULL) {
            rc = MQE2E_ERR_INVALID_ARG;
            break;
        }
        rc = store_bind_text(st, 1, group);
        if (rc == MQE2E_OK) rc = bind_u32(st, 2, l);
        if (rc == MQE2E_OK) rc = store_bind_text(st, 3, cid);
        if (rc == MQE2E_OK) {
            int s = store_step(st);
            rc = s == 0 ? MQE2E_OK : (s == 1 ? MQE2E_ERR_IO : s);
        }
        if (rc == MQE2E_OK) rc = store_reset(st);
    }
    store_finish(mqe2e_adb_store(db), st);
    return rc;
}

/* One u32 from a one-column query with a text parameter or two. */
static int query_u32(uint32_t *out, mqe2e_adb *db, const char *sql, const char *p1, const char *p2)
{
    store_stmt *st = NULL;
    int rc = prep(db, &st, sql);
    if (rc == MQE2E_OK) rc = store_bind_text(st, 1, p1);
    if (rc == MQE2E_OK && p2 != NULL) rc = store_bind_text(st, 2, p2);
    if (rc == MQE2E_OK) {
        int s = store_step(st);
        if (s == 1)
            *out = (uint32_t)store_col_i64(st, 0);
        else
            rc = s == 0 ? MQE2E_ERR_NOT_FOUND : MQE2E_ERR_IO;
    }
    store_finish(mqe2e_adb_store(db), st);
    return rc;
}

int authority_tree_db_leaf(uint32_t *leaf, mqe2e_adb *db, const char *group,
                           const char *client_id)
{
    if (leaf == NULL || db == NULL || group == NULL || client_id == NULL)
        return MQE2E_ERR_INVALID_ARG;
    return query_u32(leaf, db,
                     "SELECT leaf FROM tree_leaves WHERE group_name = ?1 AND client_id = ?2",
                     group, client_id);
}

int authority_tree_db_orphan(uint32_t *leaf, mqe2e_adb *db, const char *group)
{
    if (leaf == NULL || db == NULL || group == NULL) return MQE2E_ERR_INVALID_ARG;
    return query_u32(leaf, db,
                     "SELECT l.leaf FROM tree_leaves l WHERE l.group_name = ?1 AND NOT EXISTS"
                     " (SELECT 1 FROM group_members m WHERE m.group_name = l.group_name"
                     " AND m.client_id = l.client_id) ORDER BY l.leaf LIMIT 1",
                     group, NULL);
}

int authority_tree_db_is_tree(mqe2e_adb *db, const char *group)
{
    uint32_t depth = 0;
    if (db == NULL || group == NULL) return 0;
    return query_u32(&depth, db, "SELECT depth FROM group_trees WHERE group_name = ?1", group,
                     NULL) == MQE2E_OK;
}

int authority_tree_db_list(mqe2e_adb *db, mqe2e_adb_name_cb cb, void *user)
{
    if (db == NULL || cb == NULL) return MQE2E_ERR_INVALID_ARG;
    store_stmt *st = NULL;
    int rc = prep(db, &st, "SELECT group_name FROM group_trees ORDER BY group_name");
    while (store_next_row(&rc, st)) {
        rc = cb(store_col_text(st, 0, NULL), user);
    }
    store_finish(mqe2e_adb_store(db), st);
    return rc;
}

int authority_tree_db_member_count(uint32_t *n, mqe2e_adb *db, const char *group)
{
    if (n == NULL || db == NULL || group == NULL) return MQE2E_ERR_INVALID_ARG;
    return query_u32(n, db, "SELECT count(*) FROM group_members WHERE group_name = ?1", group,
                     NULL);
}
