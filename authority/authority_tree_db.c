/* The key trees' store: schema step 7 and its statements (authority_tree_db.h). */
#include "authority_tree_db.h"

#include <sodium.h>
#include <sqlite3.h>
#include <string.h>

#include "authority_rules.h"
#include "mqe2e/error.h"

#define KB MQE2E_KEYTREE_KEY_BYTES

_Static_assert(MQE2E_ADB_SEALED_BYTES == AUTHORITY_SEALED_BYTES, "sealed size");
_Static_assert(MQE2E_KEYTREE_KEY_BYTES == MQE2E_ADB_SECRET_BYTES, "node keys are sealed secrets");

static const char SCHEMA_V7[] =
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
    "PRAGMA user_version = 7;";

static int rc_of(int rc)
{
    switch (rc) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return MQE2E_OK;
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_UNIQUE:
        return MQE2E_ERR_EXISTS;
    case SQLITE_CONSTRAINT_FOREIGNKEY:
        return MQE2E_ERR_NOT_FOUND;
    case SQLITE_NOMEM:
        return MQE2E_ERR_NOMEM;
    default:
        return MQE2E_ERR_IO;
    }
}

static int prep(mqe2e_adb *db, sqlite3_stmt **st, const char *sql)
{
    *st = NULL;
    return rc_of(sqlite3_prepare_v2(mqe2e_adb_sqlite(db), sql, -1, st, NULL));
}

/* Run a prepared statement that returns no row, then finalize it. */
static int run(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    rc = rc == SQLITE_DONE ? MQE2E_OK : rc == SQLITE_ROW ? MQE2E_ERR_IO : rc_of(sqlite3_extended_errcode(sqlite3_db_handle(st)));
    sqlite3_finalize(st);
    return rc;
}

static int bind_text(sqlite3_stmt *st, int i, const char *s)
{
    return rc_of(sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC));
}

int authority_tree_db_migrate(mqe2e_adb *db)
{
    int rc = rc_of(sqlite3_exec(mqe2e_adb_sqlite(db), SCHEMA_V7, NULL, NULL, NULL));
    return rc == MQE2E_OK ? MQE2E_OK : MQE2E_ERR_IO;
}

static int write_epoch(mqe2e_adb *db, const char *group, uint32_t epoch)
{
    sqlite3_stmt *st = NULL;
    int rc = prep(db, &st, "UPDATE group_trees SET epoch = ?2 WHERE group_name = ?1");
    if (rc != MQE2E_OK) return rc;
    rc = bind_text(st, 1, group);
    if (rc == MQE2E_OK) rc = rc_of(sqlite3_bind_int64(st, 2, epoch));
    if (rc != MQE2E_OK) {
        sqlite3_finalize(st);
        return rc;
    }
    rc = run(st);
    if (rc == MQE2E_OK && sqlite3_changes(mqe2e_adb_sqlite(db)) != 1) rc = MQE2E_ERR_NOT_FOUND;
    return rc;
}

/* The row of one node: its sealed key while a member is below it, none otherwise. */
static int write_node(mqe2e_adb *db, const char *group, const mqe2e_keytree *t,
                      const uint8_t id[MQE2E_KEYTREE_ID_BYTES], uint32_t node)
{
    sqlite3_stmt *st = NULL;
    int rc;
    if (mqe2e_keytree_node_members(t, node) == 0U) {
        rc = prep(db, &st, "DELETE FROM tree_nodes WHERE group_name = ?1 AND node = ?2");
        if (rc != MQE2E_OK) return rc;
        rc = bind_text(st, 1, group);
        if (rc == MQE2E_OK) rc = rc_of(sqlite3_bind_int64(st, 2, node));
        if (rc != MQE2E_OK) {
            sqlite3_finalize(st);
            return rc;
        }
        return run(st);
    }
    uint8_t key[KB], sealed[MQE2E_ADB_SEALED_BYTES], ad[AUTHORITY_AD_MAX];
    rc = mqe2e_keytree_node_key(t, node, key);
    if (rc != MQE2E_OK) return rc;
    mqe2e_adb_seal(db, sealed, key, ad, authority_ad_tree_node(ad, group, id, node));
    sodium_memzero(key, sizeof key);
    rc = prep(db, &st,
              "INSERT INTO tree_nodes(group_name, node, key) VALUES (?1, ?2, ?3)"
              " ON CONFLICT(group_name, node) DO UPDATE SET key = excluded.key");
    if (rc != MQE2E_OK) return rc;
    rc = bind_text(st, 1, group);
    if (rc == MQE2E_OK) rc = rc_of(sqlite3_bind_int64(st, 2, node));
    if (rc == MQE2E_OK) rc = rc_of(sqlite3_bind_blob(st, 3, sealed, sizeof sealed, SQLITE_STATIC));
    if (rc != MQE2E_OK) {
        sqlite3_finalize(st);
        return rc;
    }
    return run(st);
}

int authority_tree_db_create(mqe2e_adb *db, const char *group, const mqe2e_keytree *t,
                             uint32_t epoch_base)
{
    if (db == NULL || group == NULL || t == NULL) return MQE2E_ERR_INVALID_ARG;
    uint8_t id[MQE2E_KEYTREE_ID_BYTES];
    int rc = mqe2e_keytree_id(t, id);
    sqlite3_stmt *st = NULL;
    if (rc == MQE2E_OK)
        rc = prep(db, &st,
                  "INSERT INTO group_trees(group_name, tree_id, depth, epoch, epoch_base)"
                  " VALUES (?1, ?2, ?3, ?4, ?5)");
    if (rc != MQE2E_OK) return rc;
    rc = bind_text(st, 1, group);
    if (rc == MQE2E_OK) rc = rc_of(sqlite3_bind_blob(st, 2, id, sizeof id, SQLITE_STATIC));
    if (rc == MQE2E_OK) rc = rc_of(sqlite3_bind_int64(st, 3, mqe2e_keytree_depth(t)));
    if (rc == MQE2E_OK) rc = rc_of(sqlite3_bind_int64(st, 4, mqe2e_keytree_epoch(t)));
    if (rc == MQE2E_OK) rc = rc_of(sqlite3_bind_int64(st, 5, epoch_base));
    if (rc != MQE2E_OK) {
        sqlite3_finalize(st);
        return rc;
    }
    return run(st);
}

int authority_tree_db_load(mqe2e_keytree **out, uint32_t *epoch_base, mqe2e_adb *db,
                           const char *group)
{
    if (out == NULL || epoch_base == NULL || db == NULL || group == NULL)
        return MQE2E_ERR_INVALID_ARG;
    *out = NULL;
    sqlite3_stmt *st = NULL;
    uint8_t id[MQE2E_KEYTREE_ID_BYTES];
    unsigned depth = 0;
    uint32_t epoch = 0;
    int rc = prep(db, &st,
                  "SELECT tree_id, depth, epoch, epoch_base FROM group_trees WHERE group_name = ?1");
    if (rc != MQE2E_OK) return rc;
    rc = bind_text(st, 1, group);
    if (rc == MQE2E_OK) {
        int s = sqlite3_step(st);
        if (s == SQLITE_ROW && sqlite3_column_bytes(st, 0) == (int)sizeof id) {
            memcpy(id, sqlite3_column_blob(st, 0), sizeof id);
            depth = (unsigned)sqlite3_column_int64(st, 1);
            epoch = (uint32_t)sqlite3_column_int64(st, 2);
            *epoch_base = (uint32_t)sqlite3_column_int64(st, 3);
        } else {
            rc = s == SQLITE_DONE ? MQE2E_ERR_NOT_FOUND : MQE2E_ERR_IO;
        }
    }
    sqlite3_finalize(st);
    if (rc != MQE2E_OK) return rc;
    mqe2e_keytree *t = NULL;
    rc = mqe2e_keytree_restore(&t, id, depth, epoch);
    if (rc != MQE2E_OK) return rc;
    /* Leaves first (occupancy), then the keys of the nodes above them. */
    rc = prep(db, &st, "SELECT leaf FROM tree_leaves WHERE group_name = ?1");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, group);
    while (rc == MQE2E_OK) {
        int s = sqlite3_step(st);
        if (s == SQLITE_DONE) break;
        if (s != SQLITE_ROW) {
            rc = MQE2E_ERR_IO;
            break;
        }
        sqlite3_int64 leaf = sqlite3_column_int64(st, 0);
        rc = leaf < 0 || leaf > UINT32_MAX ? MQE2E_ERR_IO
                                           : mqe2e_keytree_restore_leaf(t, (uint32_t)leaf);
        if (rc != MQE2E_OK) rc = MQE2E_ERR_IO; /* out of range or twice: a damaged store */
    }
    sqlite3_finalize(st);
    st = NULL;
    if (rc == MQE2E_OK) rc = prep(db, &st, "SELECT node, key FROM tree_nodes WHERE group_name = ?1");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, group);
    uint8_t key[KB], ad[AUTHORITY_AD_MAX];
    uint32_t n_nodes = 0;
    while (rc == MQE2E_OK) {
        int s = sqlite3_step(st);
        if (s == SQLITE_DONE) break;
        if (s != SQLITE_ROW) {
            rc = MQE2E_ERR_IO;
            break;
        }
        sqlite3_int64 node = sqlite3_column_int64(st, 0);
        if (node < 1 || node > UINT32_MAX ||
            mqe2e_keytree_node_members(t, (uint32_t)node) == 0U) {
            rc = MQE2E_ERR_IO; /* a node without a member below: not written by this code */
            break;
        }
        const uint8_t *blob = sqlite3_column_blob(st, 1);
        int n = sqlite3_column_bytes(st, 1);
        rc = mqe2e_adb_unseal(db, key, blob, n > 0 ? (size_t)n : 0U, ad,
                              authority_ad_tree_node(ad, group, id, (uint32_t)node));
        if (rc == MQE2E_OK) rc = mqe2e_keytree_set_node_key(t, (uint32_t)node, key);
        n_nodes++;
    }
    sodium_memzero(key, sizeof key);
    sqlite3_finalize(st);
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
    for (unsigned h = 0; rc == MQE2E_OK && h <= d; h++) rc = write_node(db, group, t, id, L >> h);
    sqlite3_stmt *st = NULL;
    if (rc != MQE2E_OK) return rc;
    if (client_id != NULL) {
        rc = prep(db, &st,
                  "INSERT INTO tree_leaves(group_name, client_id, leaf) VALUES (?1, ?2, ?3)");
        if (rc == MQE2E_OK) rc = bind_text(st, 2, client_id);
    } else {
        rc = prep(db, &st, "DELETE FROM tree_leaves WHERE group_name = ?1 AND leaf = ?3");
    }
    if (rc != MQE2E_OK) {
        sqlite3_finalize(st);
        return rc;
    }
    rc = bind_text(st, 1, group);
    if (rc == MQE2E_OK) rc = rc_of(sqlite3_bind_int64(st, 3, leaf));
    if (rc != MQE2E_OK) {
        sqlite3_finalize(st);
        return rc;
    }
    return run(st);
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
    sqlite3_stmt *st = NULL;
    if (rc == MQE2E_OK)
        rc = prep(db, &st,
                  "INSERT INTO tree_leaves(group_name, client_id, leaf) VALUES (?1, ?2, ?3)");
    for (uint32_t l = 0; rc == MQE2E_OK && l < (1U << d); l++) {
        if (mqe2e_keytree_node_members(t, (1U << d) + l) == 0U) continue;
        const char *cid = owner(l, user);
        if (cid == NULL) {
            rc = MQE2E_ERR_INVALID_ARG;
            break;
        }
        rc = bind_text(st, 1, group);
        if (rc == MQE2E_OK) rc = bind_text(st, 2, cid);
        if (rc == MQE2E_OK) rc = rc_of(sqlite3_bind_int64(st, 3, l));
        if (rc == MQE2E_OK) {
            int s = sqlite3_step(st);
            rc = s == SQLITE_DONE ? MQE2E_OK : rc_of(sqlite3_extended_errcode(mqe2e_adb_sqlite(db)));
        }
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    return rc;
}

/* One u32 from a one-column query with a text parameter or two. */
static int query_u32(uint32_t *out, mqe2e_adb *db, const char *sql, const char *p1, const char *p2)
{
    sqlite3_stmt *st = NULL;
    int rc = prep(db, &st, sql);
    if (rc != MQE2E_OK) return rc;
    rc = bind_text(st, 1, p1);
    if (rc == MQE2E_OK && p2 != NULL) rc = bind_text(st, 2, p2);
    if (rc == MQE2E_OK) {
        int s = sqlite3_step(st);
        if (s == SQLITE_ROW)
            *out = (uint32_t)sqlite3_column_int64(st, 0);
        else
            rc = s == SQLITE_DONE ? MQE2E_ERR_NOT_FOUND : MQE2E_ERR_IO;
    }
    sqlite3_finalize(st);
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
    sqlite3_stmt *st = NULL;
    int rc = prep(db, &st, "SELECT group_name FROM group_trees ORDER BY group_name");
    while (rc == MQE2E_OK) {
        int s = sqlite3_step(st);
        if (s == SQLITE_DONE) break;
        if (s != SQLITE_ROW) {
            rc = MQE2E_ERR_IO;
            break;
        }
        rc = cb((const char *)sqlite3_column_text(st, 0), user);
    }
    sqlite3_finalize(st);
    return rc;
}
