/* Authority database, the parts the enrollment batch and the flood checks
 * use: pre-handshake lookups, savepoints inside a caller transaction, sender
 * ids found without counting the group, and statements kept prepared
 * (authority/authority_db.h). */
#include <criterion/criterion.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authority_db.h"
#include "authority_tree_db.h"
#include "mqe2e/error.h"
#include "mqe2e/keytree.h"
#include "pgtest.h"
#include "store.h"
#include "testutil.h"

static char *dir;
static char path[4096];
static uint8_t key[MQE2E_ADB_KEY_BYTES];
static mqe2e_adb *db;

static void setup(void)
{
    cr_assert(sodium_init() >= 0);
    dir = tu_tempdir();
    snprintf(path, sizeof path, "%s/authority.db", dir);
    /* Under tests/support/pgcluster.sh (test_authority_db_batch_pg): PostgreSQL. */
    (void)pgtest_fresh_uri(path, sizeof path, "batch");
    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (uint8_t)(0x21 + i);
    cr_assert_eq(mqe2e_adb_open(&db, path, key), MQE2E_OK);
}

static void teardown(void)
{
    mqe2e_adb_close(db);
    db = NULL;
    tu_rmtree(dir);
    free(dir);
}

TestSuite(authority_db_batch, .init = setup, .fini = teardown);

static void token(const char *client_id, uint8_t id_byte)
{
    uint8_t tid[MQE2E_ADB_TOKEN_ID_BYTES], sec[MQE2E_ADB_SECRET_BYTES];
    memset(tid, id_byte, sizeof tid);
    memset(sec, (uint8_t)(id_byte ^ 0x5A), sizeof sec);
    cr_assert_eq(mqe2e_adb_token_create(db, tid, sec, client_id, "device", NULL, 0, 100, 10000),
                 MQE2E_OK);
}

static void enroll(const char *client_id, uint8_t key_byte)
{
    uint8_t sp[32], dh[32];
    memset(sp, key_byte, sizeof sp);
    memset(dh, (uint8_t)(key_byte ^ 0xFF), sizeof dh);
    cr_assert_eq(mqe2e_adb_client_upsert_enrolled(NULL, db, client_id, "device", sp, dh, NULL, 0,
                                                  100, 100000),
                 MQE2E_OK);
}

static uint32_t add(const char *group, const char *client_id)
{
    uint32_t sid = 0;
    cr_assert_eq(mqe2e_adb_member_add(&sid, db, group, client_id, 200), MQE2E_OK, "%s", client_id);
    return sid;
}

Test(authority_db_batch, token_known_client)
{
    cr_assert_eq(mqe2e_adb_token_known_client(db, "dev-1"), MQE2E_ERR_NOT_FOUND);
    token("dev-1", 1);
    cr_assert_eq(mqe2e_adb_token_known_client(db, "dev-1"), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_token_known_client(db, "dev-2"), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_adb_token_known_client(db, "dev-"), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_adb_token_known_client(db, ""), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_adb_token_known_client(db, NULL), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_adb_token_known_client(NULL, "dev-1"), MQE2E_ERR_INVALID_ARG);
    /* A used token still names its id (a retry is answered TOKEN_USED). */
    uint8_t tid[MQE2E_ADB_TOKEN_ID_BYTES], sec[MQE2E_ADB_SECRET_BYTES], sp[32];
    memset(tid, 1, sizeof tid);
    memset(sp, 7, sizeof sp);
    cr_assert_eq(mqe2e_adb_token_consume(sec, NULL, db, tid, sp, sp, 150), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_token_known_client(db, "dev-1"), MQE2E_OK);
    /* Until pruned after expiry. */
    cr_assert_eq(mqe2e_adb_token_prune(NULL, db, 20000), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_token_known_client(db, "dev-1"), MQE2E_ERR_NOT_FOUND);
}

Test(authority_db_batch, client_known)
{
    cr_assert_eq(mqe2e_adb_client_known(db, "dev-1"), MQE2E_ERR_NOT_FOUND);
    enroll("dev-1", 0x11);
    cr_assert_eq(mqe2e_adb_client_known(db, "dev-1"), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_client_known(db, "dev-2"), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_adb_client_revoke(db, "dev-1", 300, NULL, NULL), MQE2E_OK);
    /* Revoked clients are still known: their HELLO is answered REVOKED. */
    cr_assert_eq(mqe2e_adb_client_known(db, "dev-1"), MQE2E_OK);
}

Test(authority_db_batch, savepoint_undoes_one_unit_only)
{
    uint8_t tid[MQE2E_ADB_TOKEN_ID_BYTES], sec[MQE2E_ADB_SECRET_BYTES], sp[32];
    mqe2e_adb_token_info info;
    token("a", 0xA0);
    token("b", 0xB0);
    memset(sp, 9, sizeof sp);
    cr_assert_eq(mqe2e_adb_tx_savepoint(db), MQE2E_ERR_STATE);
    cr_assert_eq(mqe2e_adb_tx_savepoint_end(db, 1), MQE2E_ERR_STATE);
    cr_assert_eq(mqe2e_adb_tx_begin(db), MQE2E_OK);
    /* Unit a: kept. */
    cr_assert_eq(mqe2e_adb_tx_savepoint(db), MQE2E_OK);
    memset(tid, 0xA0, sizeof tid);
    cr_assert_eq(mqe2e_adb_token_consume(sec, NULL, db, tid, sp, sp, 150), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_tx_savepoint_end(db, 1), MQE2E_OK);
    /* Unit b: undone. */
    cr_assert_eq(mqe2e_adb_tx_savepoint(db), MQE2E_OK);
    memset(tid, 0xB0, sizeof tid);
    cr_assert_eq(mqe2e_adb_token_consume(sec, NULL, db, tid, sp, sp, 150), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_tx_savepoint_end(db, 0), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_tx_commit(db), MQE2E_OK);
    /* Durable across a reopen: a used, b not. */
    mqe2e_adb_close(db);
    cr_assert_eq(mqe2e_adb_open(&db, path, key), MQE2E_OK);
    memset(tid, 0xA0, sizeof tid);
    cr_assert_eq(mqe2e_adb_token_peek(sec, &info, db, tid), MQE2E_OK);
    cr_assert_eq(info.used, 1);
    memset(tid, 0xB0, sizeof tid);
    cr_assert_eq(mqe2e_adb_token_peek(sec, &info, db, tid), MQE2E_OK);
    cr_assert_eq(info.used, 0);
}

Test(authority_db_batch, sender_ids_only_grow)
{
    const uint8_t gsec[MQE2E_ADB_SECRET_BYTES] = {1};
    char id[32];
    cr_assert_eq(mqe2e_adb_group_create(db, "g", "t/#", NULL, 1, gsec), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_group_create(db, "h", "u/#", NULL, 1, gsec), MQE2E_OK);
    for (int i = 1; i <= 30; i++) {
        snprintf(id, sizeof id, "c%d", i);
        enroll(id, (uint8_t)i);
        cr_assert_eq(add("g", id), (uint32_t)i);
    }
    /* Another group in between does not confuse the remembered one. */
    cr_assert_eq(add("h", "c5"), 1);
    uint32_t sid = 0;
    cr_assert_eq(mqe2e_adb_member_add(&sid, db, "g", "c5", 200), MQE2E_ERR_EXISTS);
    cr_assert_eq(sid, 5, "already a member keeps its id");
    /* A gap is never filled: departed members' ids stay retired. */
    cr_assert_eq(mqe2e_adb_member_remove(db, "g", "c7"), MQE2E_OK);
    enroll("n1", 101);
    enroll("n2", 102);
    enroll("n3", 103);
    cr_assert_eq(add("g", "n1"), 31);
    cr_assert_eq(add("g", "n2"), 32);
    /* An insert undone by a rollback does not advance the next id (nobody
     * ever held it). */
    cr_assert_eq(mqe2e_adb_tx_begin(db), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_tx_savepoint(db), MQE2E_OK);
    cr_assert_eq(add("g", "n3"), 33);
    cr_assert_eq(mqe2e_adb_tx_savepoint_end(db, 0), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_tx_commit(db), MQE2E_OK);
    cr_assert_eq(add("g", "n3"), 33);
    /* Removing the highest id: it is not handed out again either. */
    cr_assert_eq(mqe2e_adb_member_remove(db, "g", "n3"), MQE2E_OK);
    enroll("n4", 104);
    cr_assert_eq(add("g", "n4"), 34);
}

static int nested_count;

static int inner_cb(const mqe2e_adb_group *g, void *user)
{
    (void)g;
    (*(int *)user)++;
    return 0;
}

/* The same statement asked for again while it is stepping gets a fresh one. */
static int outer_cb(const mqe2e_adb_group *g, void *user)
{
    (void)g;
    (void)user;
    int inner = 0;
    cr_assert_eq(mqe2e_adb_group_list(db, inner_cb, &inner), MQE2E_OK);
    cr_assert_eq(inner, 3);
    nested_count++;
    return 0;
}

Test(authority_db_batch, statements_reused_and_reentrant)
{
    const uint8_t gsec[MQE2E_ADB_SECRET_BYTES] = {2};
    cr_assert_eq(mqe2e_adb_group_create(db, "a", "a/#", NULL, 1, gsec), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_group_create(db, "b", "b/#", NULL, 1, gsec), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_group_create(db, "c", "c/#", NULL, 1, gsec), MQE2E_OK);
    for (int round = 0; round < 3; round++) {
        nested_count = 0;
        cr_assert_eq(mqe2e_adb_group_list(db, outer_cb, NULL), MQE2E_OK);
        cr_assert_eq(nested_count, 3);
    }
    /* One statement run many times with alternating bindings. */
    for (int i = 0; i < 1000; i++) {
        mqe2e_adb_group g;
        cr_assert_eq(mqe2e_adb_group_get(&g, db, i % 2 ? "a" : "c"), MQE2E_OK);
        cr_assert_str_eq(g.name, i % 2 ? "a" : "c");
    }
    mqe2e_adb_group g;
    cr_assert_eq(mqe2e_adb_group_get(&g, db, "zz"), MQE2E_ERR_NOT_FOUND);
}

/* ------------------------------------------------------------ key trees */

static int tree_sign(void *ctx, uint8_t sig[64], const uint8_t *m, size_t n)
{
    return crypto_sign_detached(sig, NULL, m, n, ctx);
}

static int collect_tree(const char *name, void *user)
{
    char *out = user;
    strncat(out, name, 63 - strlen(out));
    strncat(out, ",", 63 - strlen(out));
    return MQE2E_OK;
}

/* One integer from the open store (either dialect). */
static int64_t store_int(const char *sql)
{
    store *s = mqe2e_adb_store(db);
    store_stmt *st = NULL;
    cr_assert_eq(store_prepare(s, &st, sql), MQE2E_OK, "%s", sql);
    cr_assert_eq(store_step(st), 1, "%s", sql);
    int64_t v = store_col_i64(st, 0);
    store_finish(s, st);
    return v;
}

/* Key trees (schema 7) through the store interface, on whichever store the
 * suite runs (SQLite here, PostgreSQL in test_authority_db_batch_pg): the
 * step is recorded, rows round-trip, a rolled-back save leaves nothing, an
 * orphaned leaf is found, a node key moved to another node does not open
 * (sealed, bound to group, tree id and node) and a missing node row is
 * refused. */
Test(authority_db_batch, key_tree_rows_on_this_store)
{
    cr_assert_eq(store_int("SELECT COUNT(*) FROM schema_migrations WHERE version = 7"), 1);
    cr_assert_eq(store_int("SELECT MAX(version) FROM schema_migrations"), MQE2E_ADB_SCHEMA_VERSION);
    uint8_t sec[32], pk[32], sk[64], upd[4096], a[32], b[32];
    size_t un = 0;
    memset(sec, 5, sizeof sec);
    crypto_sign_keypair(pk, sk);
    cr_assert_eq(mqe2e_adb_group_create(db, "g", "t/#", NULL, 1, sec), MQE2E_OK);
    mqe2e_keytree *t = NULL;
    cr_assert_eq(mqe2e_keytree_new(&t, 4), MQE2E_OK);
    cr_assert_eq(authority_tree_db_create(db, "nope", t, 1), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(authority_tree_db_create(db, "g", t, 1), MQE2E_OK);
    cr_assert_eq(authority_tree_db_create(db, "g", t, 1), MQE2E_ERR_EXISTS);
    cr_assert(authority_tree_db_is_tree(db, "g"));
    cr_assert(!authority_tree_db_is_tree(db, "nope"));
    const char *ids[5] = {"d0", "d1", "d2", "d3", "d4"};
    for (int i = 0; i < 5; i++) {
        enroll(ids[i], (uint8_t)(0x40 + i));
        uint32_t sid = 0, leaf = 0;
        uint8_t lk[32];
        cr_assert_eq(mqe2e_adb_member_add(&sid, db, "g", ids[i], 100), MQE2E_OK);
        cr_assert_eq(mqe2e_keytree_add_cb(t, &leaf, lk, upd, sizeof upd, &un, tree_sign, sk),
                     MQE2E_OK);
        cr_assert_eq(authority_tree_db_save(db, "g", t, leaf, ids[i]), MQE2E_OK);
    }
    /* A second client on a taken leaf: refused by the store (unique leaf). */
    cr_assert_eq(authority_tree_db_save(db, "g", t, 1, "other"), MQE2E_ERR_EXISTS);
    char names[64] = "";
    cr_assert_eq(authority_tree_db_list(db, collect_tree, names), MQE2E_OK);
    cr_assert_str_eq(names, "g,");

    /* A removal saved inside a transaction that is rolled back is not kept. */
    mqe2e_keytree *before = NULL;
    uint32_t base = 0;
    cr_assert_eq(authority_tree_db_load(&before, &base, db, "g"), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_epoch_secret(before, a), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_tx_begin(db), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_remove_cb(before, 3, upd, sizeof upd, &un, tree_sign, sk), MQE2E_OK);
    cr_assert_eq(authority_tree_db_save(db, "g", before, 3, NULL), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_tx_rollback(db), MQE2E_OK);
    mqe2e_keytree_free(before);
    mqe2e_keytree *r = NULL;
    cr_assert_eq(authority_tree_db_load(&r, &base, db, "g"), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_members(r), 5U);
    cr_assert_eq(mqe2e_keytree_epoch_secret(r, b), MQE2E_OK);
    cr_assert_eq(memcmp(a, b, 32), 0, "the rolled-back removal left the tree as it was");
    mqe2e_keytree_free(r);

    /* Removed for real: leaf gone, the tree loads back with the same secret. */
    cr_assert_eq(mqe2e_keytree_remove_cb(t, 2, upd, sizeof upd, &un, tree_sign, sk), MQE2E_OK);
    cr_assert_eq(authority_tree_db_save(db, "g", t, 2, NULL), MQE2E_OK);
    uint32_t leaf = 99;
    cr_assert_eq(authority_tree_db_leaf(&leaf, db, "g", "d3"), MQE2E_OK);
    cr_assert_eq(leaf, 3U);
    cr_assert_eq(authority_tree_db_leaf(&leaf, db, "g", "d2"), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(authority_tree_db_orphan(&leaf, db, "g"), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_adb_member_remove(db, "g", "d4"), MQE2E_OK);
    cr_assert_eq(authority_tree_db_orphan(&leaf, db, "g"), MQE2E_OK);
    cr_assert_eq(leaf, 4U, "d4 left the group but still holds leaf 4");
    cr_assert_eq(authority_tree_db_load(&r, &base, db, "g"), MQE2E_OK);
    cr_assert_eq(base, 1U);
    cr_assert_eq(mqe2e_keytree_members(r), 4U);
    cr_assert_eq(mqe2e_keytree_epoch(r), mqe2e_keytree_epoch(t));
    cr_assert_eq(mqe2e_keytree_epoch_secret(t, a), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_epoch_secret(r, b), MQE2E_OK);
    cr_assert_eq(memcmp(a, b, 32), 0);
    mqe2e_keytree_free(r);
    mqe2e_keytree_free(t);

    /* A missing node row is a damaged store, never a silently fresh key. */
    cr_assert_eq(store_exec(mqe2e_adb_store(db), "DELETE FROM tree_nodes WHERE node = 4"),
                 MQE2E_OK);
    cr_assert_eq(authority_tree_db_load(&r, &base, db, "g"), MQE2E_ERR_IO);
    cr_assert_null(r);
    cr_assert_eq(authority_tree_db_load(&r, &base, db, "nope"), MQE2E_ERR_NOT_FOUND);
    /* The root's sealed key copied onto node 2: bound to its node, refused. */
    cr_assert_eq(store_exec(mqe2e_adb_store(db),
                            "UPDATE tree_nodes SET key = (SELECT key FROM tree_nodes"
                            " WHERE group_name = 'g' AND node = 1)"
                            " WHERE group_name = 'g' AND node = 2"),
                 MQE2E_OK);
    cr_assert_eq(authority_tree_db_load(&r, &base, db, "g"), MQE2E_ERR_AUTH);
    cr_assert_null(r);
    sodium_memzero(sk, sizeof sk);
}

/* A store at schema 6 (the store code before key trees), on either dialect,
 * opens at 7: step 7 recorded once, the group kept, and it can become a tree
 * group. */
Test(authority_db_batch, a_schema_6_store_migrates_to_7)
{
    uint8_t sec[32];
    memset(sec, 7, sizeof sec);
    cr_assert_eq(mqe2e_adb_group_create(db, "g", "t/#", NULL, 1, sec), MQE2E_OK);
    store *s = mqe2e_adb_store(db);
    cr_assert_eq(store_exec(s, "DROP TABLE tree_nodes; DROP TABLE tree_leaves;"
                               " DROP TABLE group_trees;"
                               " DELETE FROM schema_migrations WHERE version = 7"),
                 MQE2E_OK);
    if (store_get_dialect(s) == STORE_SQLITE)
        cr_assert_eq(store_exec(s, "PRAGMA user_version = 6"), MQE2E_OK);
    cr_assert_eq(store_int("SELECT MAX(version) FROM schema_migrations"), 6);
    mqe2e_adb_close(db);
    cr_assert_eq(mqe2e_adb_open(&db, path, key), MQE2E_OK);
    cr_assert_eq(store_int("SELECT MAX(version) FROM schema_migrations"), 7);
    cr_assert_eq(store_int("SELECT COUNT(*) FROM schema_migrations WHERE version = 7"), 1);
    cr_assert(!authority_tree_db_is_tree(db, "g"));
    mqe2e_keytree *t = NULL;
    cr_assert_eq(mqe2e_keytree_new(&t, 3), MQE2E_OK);
    cr_assert_eq(authority_tree_db_create(db, "g", t, 1), MQE2E_OK);
    cr_assert(authority_tree_db_is_tree(db, "g"));
    mqe2e_keytree_free(t);
    /* Opened again: nothing to do, still one row for step 7. */
    mqe2e_adb_close(db);
    cr_assert_eq(mqe2e_adb_open(&db, path, key), MQE2E_OK);
    cr_assert_eq(store_int("SELECT COUNT(*) FROM schema_migrations WHERE version = 7"), 1);
    cr_assert(authority_tree_db_is_tree(db, "g"));
}
