/*
 * The authority's store above the drivers: the domain rules (sender ids that
 * never recycle, epoch numbering, sealed secret columns, token states) and
 * the SQL, written once in the portable subset of SQLite 3.40 and
 * PostgreSQL 15 (store.h). Prepared statements only, one transaction per
 * multi-step change, secrets sealed column-wise with XChaCha20-Poly1305.
 */
#include "authority_db.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "authority_rules.h"
#include "authority_tree_db.h"
#include "mqe2e/error.h"
#include "store.h"

/* Sealed columns and their associated data: authority_rules.h. */
#define SEALED_BYTES AUTHORITY_SEALED_BYTES
#define AD_MAX AUTHORITY_AD_MAX
_Static_assert(MQE2E_ADB_SECRET_BYTES == AUTHORITY_SECRET_BYTES, "one secret size");
_Static_assert(AUTHORITY_AD_MAX >= 16U + MQE2E_ADB_NAME_MAX + 1U + 4U, "AD of the longest name");

struct mqe2e_adb {
    store *store;
    uint8_t *key; /* sodium_malloc, read-only while open */
    int user_tx;
};

/* ------------------------------------------------------------------ schema */

/* Version 1. Tables are STRICT (type-checked) except meta, whose value column
 * holds integers or blobs. "groups" is quoted: GROUPS is an SQLite keyword. */
static const char SCHEMA_V1[] =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value BLOB);"
    "CREATE TABLE clients("
    " client_id TEXT PRIMARY KEY,"
    " sign_public BLOB NOT NULL CHECK(length(sign_public) = 32),"
    " dh_public BLOB NOT NULL CHECK(length(dh_public) = 32),"
    " role TEXT NOT NULL,"
    " status TEXT NOT NULL CHECK(status IN ('active', 'revoked')),"
    " enrolled_at INTEGER NOT NULL,"
    " revoked_at INTEGER,"
    " credential_serial INTEGER NOT NULL,"
    " credential_expires INTEGER NOT NULL) STRICT;"
    "CREATE TABLE tokens("
    " token_id BLOB PRIMARY KEY CHECK(length(token_id) = 16),"
    " token_secret BLOB NOT NULL,"
    " client_id TEXT NOT NULL,"
    " role TEXT NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " expires_at INTEGER NOT NULL,"
    " used_at INTEGER,"
    " used_by_sign_public BLOB CHECK(used_by_sign_public IS NULL"
    "                                OR length(used_by_sign_public) = 32),"
    " CHECK((used_at IS NULL) = (used_by_sign_public IS NULL))) STRICT;"
    "CREATE INDEX tokens_by_client ON tokens(client_id);"
    "CREATE TABLE token_grants("
    " token_id BLOB NOT NULL REFERENCES tokens(token_id) ON DELETE CASCADE,"
    " filter TEXT NOT NULL,"
    " rights INTEGER NOT NULL CHECK(rights BETWEEN 1 AND 3),"
    " PRIMARY KEY(token_id, filter)) STRICT;"
    "CREATE TABLE client_grants("
    " client_id TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,"
    " filter TEXT NOT NULL,"
    " rights INTEGER NOT NULL CHECK(rights BETWEEN 1 AND 3),"
    " PRIMARY KEY(client_id, filter)) STRICT;"
    "CREATE TABLE \"groups\"("
    " name TEXT PRIMARY KEY,"
    " topic_filter TEXT NOT NULL,"
    " current_epoch INTEGER NOT NULL CHECK(current_epoch >= 1),"
    " rotate_every_seconds INTEGER NOT NULL CHECK(rotate_every_seconds >= 0),"
    " rotate_every_messages INTEGER NOT NULL CHECK(rotate_every_messages >= 0),"
    " last_rotated_at INTEGER NOT NULL,"
    " signed INTEGER NOT NULL CHECK(signed IN (0, 1))) STRICT;"
    "CREATE TABLE group_epochs("
    " group_name TEXT NOT NULL REFERENCES \"groups\"(name) ON DELETE CASCADE,"
    " epoch INTEGER NOT NULL CHECK(epoch >= 1),"
    " secret BLOB NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " retired_at INTEGER,"
    " PRIMARY KEY(group_name, epoch)) STRICT;"
    "CREATE TABLE group_members("
    " group_name TEXT NOT NULL REFERENCES \"groups\"(name) ON DELETE CASCADE,"
    " client_id TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,"
    " sender_id INTEGER NOT NULL CHECK(sender_id >= 1),"
    " added_at INTEGER NOT NULL,"
    " PRIMARY KEY(group_name, client_id),"
    " UNIQUE(group_name, sender_id)) STRICT;"
    "CREATE INDEX group_members_by_client ON group_members(client_id);"
    "CREATE TABLE revocations("
    " client_id TEXT NOT NULL REFERENCES clients(client_id),"
    " serial INTEGER NOT NULL,"
    " revoked_at INTEGER NOT NULL,"
    " PRIMARY KEY(client_id, serial)) STRICT;"
    "CREATE TABLE operators("
    " name TEXT PRIMARY KEY,"
    " sign_public BLOB NOT NULL CHECK(length(sign_public) = 32),"
    " added_at INTEGER NOT NULL) STRICT;"
    "CREATE TABLE op_nonces(nonce BLOB PRIMARY KEY, seen_at INTEGER NOT NULL) STRICT;"
    "CREATE INDEX op_nonces_by_time ON op_nonces(seen_at);"
    "CREATE TABLE audit("
    " id INTEGER PRIMARY KEY,"
    " at INTEGER NOT NULL,"
    " actor TEXT NOT NULL,"
    " action TEXT NOT NULL,"
    " subject TEXT) STRICT;"
    "INSERT INTO meta(key, value) VALUES ('revocation_version', 0), ('credential_serial', 0);"
    "PRAGMA user_version = 1;";

/* Version 2: a per-client push counter (Push.push_seq must grow across
 * restarts) and the groups a token joins its client to at enrollment. */
static const char SCHEMA_V2[] =
    "ALTER TABLE clients ADD COLUMN push_seq INTEGER NOT NULL DEFAULT 0 CHECK(push_seq >= 0);"
    "CREATE TABLE token_groups("
    " token_id BLOB NOT NULL REFERENCES tokens(token_id) ON DELETE CASCADE,"
    " group_name TEXT NOT NULL REFERENCES \"groups\"(name) ON DELETE CASCADE,"
    " PRIMARY KEY(token_id, group_name)) STRICT;"
    "PRAGMA user_version = 2;";

/* Version 3: revocation is final. A used token remembers both device keys
 * (a retry must come from the X25519 key the handshake proved, not only the
 * public Ed25519 one); a token may replace an active client's device; every
 * revoked client is listed with serial 0 (all its credentials) and its tokens,
 * used or not, are void. */
static const char SCHEMA_V3[] =
    "ALTER TABLE tokens ADD COLUMN used_by_dh_public BLOB CHECK(used_by_dh_public IS NULL"
    " OR length(used_by_dh_public) = 32);"
    "ALTER TABLE tokens ADD COLUMN replaces INTEGER NOT NULL DEFAULT 0 CHECK(replaces IN (0, 1));"
    "ALTER TABLE group_epochs ADD COLUMN grace_seconds INTEGER NOT NULL DEFAULT 0"
    " CHECK(grace_seconds >= 0);"
    "INSERT OR IGNORE INTO revocations(client_id, serial, revoked_at)"
    " SELECT client_id, 0, COALESCE(revoked_at, 0) FROM clients WHERE status = 'revoked';"
    "DELETE FROM tokens WHERE client_id IN (SELECT client_id FROM clients"
    " WHERE status = 'revoked');"
    "PRAGMA user_version = 3;";

/* Version 4: sender ids are never handed out twice within a group's life
 * (docs/AUTHORITY.md, "Sender ids"): each group counts its next id. A group
 * migrated from version 3 starts above its highest current member; ids of
 * members removed before the migration are not known any more. */
static const char SCHEMA_V4[] =
    "ALTER TABLE \"groups\" ADD COLUMN next_sender_id INTEGER NOT NULL DEFAULT 1"
    " CHECK(next_sender_id >= 1);"
    "UPDATE \"groups\" SET next_sender_id = 1 + COALESCE("
    " (SELECT MAX(sender_id) FROM group_members WHERE group_name = \"groups\".name), 0);"
    "PRAGMA user_version = 4;";

/* Version 5: the sender ids a revoked or replaced device held, per group, go
 * on the revocation list (receivers drop them in every epoch,
 * docs/CREDENTIALS.md). Ids of devices revoked before the migration are not
 * known any more. Memberships also record the epoch they began in. */
static const char SCHEMA_V5[] =
    "CREATE TABLE retired_senders("
    " group_name TEXT NOT NULL REFERENCES \"groups\"(name) ON DELETE CASCADE,"
    " sender_id INTEGER NOT NULL CHECK(sender_id >= 1),"
    " client_id TEXT NOT NULL,"
    " retired_at INTEGER NOT NULL,"
    " PRIMARY KEY(group_name, sender_id)) STRICT;"
    /* The epoch current when the member joined (0: not known, a membership
     * from before schema 5 or one backdated with --history): which retired
     * epochs were the member's is decided by epoch number, not by second. */
    "ALTER TABLE group_members ADD COLUMN joined_epoch INTEGER NOT NULL DEFAULT 0"
    " CHECK(joined_epoch >= 0);"
    "PRAGMA user_version = 5;";

static const char KEY_CHECK_NAME[] = "db_key_check";

/* ----------------------------------------------------------------- helpers */

/* Statements are kept prepared by the driver, keyed by their literal text:
 * every statement from prep() goes back through store_finish(). */
static int prep(mqe2e_adb *db, store_stmt **st, const char *sql)
{
    return store_prepare(db->store, st, sql);
}

/* Step a statement that returns no row. */
static int step_done(store_stmt *st)
{
    int rc = store_step(st);
    return rc == 0 ? MQE2E_OK : (rc == 1 ? MQE2E_ERR_IO : rc);
}

static int exec_const(mqe2e_adb *db, const char *sql)
{
    return store_exec(db->store, sql);
}

/* Transaction control on the enrollment path (a few per call, several calls
 * per enrollment): kept prepared like any statement. One statement per text. */
static int tx_exec(mqe2e_adb *db, const char *sql)
{
    store_stmt *st = NULL;
    int rc = prep(db, &st, sql);
    if (rc == MQE2E_OK) rc = step_done(st);
    store_finish(db->store, st);
    return rc;
}

static int check_str(const char *s, size_t cap)
{
    if (s == NULL || s[0] == '\0') return MQE2E_ERR_INVALID_ARG;
    if (strnlen(s, cap) >= cap) return MQE2E_ERR_TOO_LARGE;
    return MQE2E_OK;
}

/* Both stores keep signed 64-bit integers: larger times cannot be stored. */
static int check_u64(uint64_t v)
{
    return v > (uint64_t)INT64_MAX ? MQE2E_ERR_INVALID_ARG : MQE2E_OK;
}

static int check_grants(const mqe2e_adb_grant *g, size_t n, size_t max)
{
    if (n > max) return MQE2E_ERR_TOO_LARGE;
    if (n > 0 && g == NULL) return MQE2E_ERR_INVALID_ARG;
    for (size_t i = 0; i < n; i++) {
        int rc = check_str(g[i].filter, sizeof g[i].filter);
        if (rc != MQE2E_OK) return rc;
        if (g[i].rights == 0 ||
            (g[i].rights & ~(MQE2E_ADB_RIGHT_PUBLISH | MQE2E_ADB_RIGHT_SUBSCRIBE)) != 0)
            return MQE2E_ERR_INVALID_ARG;
    }
    return MQE2E_OK;
}

static int bind_text(store_stmt *st, int i, const char *s)
{
    return store_bind_text(st, i, s);
}

static int bind_blob(store_stmt *st, int i, const void *p, size_t n)
{
    return store_bind_blob(st, i, p, n);
}

static int bind_u64(store_stmt *st, int i, uint64_t v)
{
    return v > (uint64_t)INT64_MAX ? MQE2E_ERR_INVALID_ARG : store_bind_i64(st, i, (int64_t)v);
}

static uint64_t col_u64(store_stmt *st, int i)
{
    int64_t v = store_col_i64(st, i);
    return v < 0 ? 0 : (uint64_t)v;
}

/* Copy a text column; a value longer than the API allows means a database
 * written by something else, reported as an I/O fault rather than truncated. */
static int col_text(char *dst, size_t cap, store_stmt *st, int i)
{
    size_t n = 0;
    const char *s = store_col_text(st, i, &n);
    if (s == NULL) {
        dst[0] = '\0';
        return MQE2E_OK;
    }
    if (n >= cap) return MQE2E_ERR_IO;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return MQE2E_OK;
}

static int col_blob(uint8_t *dst, size_t len, store_stmt *st, int i)
{
    size_t n = 0;
    const uint8_t *p = store_col_blob(st, i, &n);
    if (p == NULL || n != len) return MQE2E_ERR_IO;
    memcpy(dst, p, len);
    return MQE2E_OK;
}

/* ------------------------------------------------------------ transactions */

/* Every multi-step call runs between op_begin and op_end. Outside a caller
 * transaction it is its own write transaction, which excludes every other
 * writer on the database from its start (store.h), so read-modify-write steps
 * cannot interleave with another process's; inside one it is a savepoint, so
 * a failed call undoes only itself. */
static int op_begin(mqe2e_adb *db)
{
    return db->user_tx ? tx_exec(db, "SAVEPOINT adb_op") : store_begin(db->store, STORE_TX_WRITE);
}

/* Read-only snapshot for calls that read several tables. */
static int read_begin(mqe2e_adb *db)
{
    return db->user_tx ? tx_exec(db, "SAVEPOINT adb_op") : store_begin(db->store, STORE_TX_READ);
}

static void op_abort(mqe2e_adb *db)
{
    if (db->user_tx) {
        (void)tx_exec(db, "ROLLBACK TO SAVEPOINT adb_op");
        (void)tx_exec(db, "RELEASE SAVEPOINT adb_op");
    } else if (store_in_tx(db->store)) {
        (void)tx_exec(db, "ROLLBACK");
    }
}

static int op_end(mqe2e_adb *db, int rc)
{
    if (rc == MQE2E_OK) {
        rc = tx_exec(db, db->user_tx ? "RELEASE SAVEPOINT adb_op" : "COMMIT");
        if (rc == MQE2E_OK) return MQE2E_OK;
        rc = MQE2E_ERR_IO;
    }
    op_abort(db);
    return rc;
}

/* ----------------------------------------------------------------- sealing */

/* The rules (sealing, associated data) are authority_rules.c's. */
static void seal(const mqe2e_adb *db, uint8_t out[SEALED_BYTES],
                 const uint8_t secret[MQE2E_ADB_SECRET_BYTES], const uint8_t *ad, size_t ad_len)
{
    authority_seal(out, db->key, secret, ad, ad_len);
}

/* Open the sealed blob in column i. Any mismatch (length, tag, AD) is AUTH. */
static int unseal_col(const mqe2e_adb *db, uint8_t out[MQE2E_ADB_SECRET_BYTES], store_stmt *st,
                      int i, const uint8_t *ad, size_t ad_len)
{
    size_t n = 0;
    const uint8_t *blob = store_col_blob(st, i, &n);
    return authority_unseal(out, db->key, blob, n, ad, ad_len);
}

/* For the store's companion files (authority_tree_db.c). */
store *mqe2e_adb_store(mqe2e_adb *db)
{
    return db->store;
}

void mqe2e_adb_seal(const mqe2e_adb *db, uint8_t out[MQE2E_ADB_SEALED_BYTES],
                    const uint8_t secret[MQE2E_ADB_SECRET_BYTES], const uint8_t *ad, size_t ad_len)
{
    seal(db, out, secret, ad, ad_len);
}

int mqe2e_adb_unseal(const mqe2e_adb *db, uint8_t out[MQE2E_ADB_SECRET_BYTES], const uint8_t *blob,
                     size_t blob_len, const uint8_t *ad, size_t ad_len)
{
    return authority_unseal(out, db->key, blob, blob_len, ad, ad_len);
}

/* ------------------------------------------------------------------- meta */
/* Version 6: the counters (revocation-list version, credential serial) move
 * out of meta into a typed table both dialects share (meta keeps the key
 * check blob), and applied migrations are listed in schema_migrations. */
static const char SCHEMA_V6_SQLITE[] =
    "CREATE TABLE counters(name TEXT PRIMARY KEY,"
    " value INTEGER NOT NULL CHECK(value >= 0)) STRICT;"
    "INSERT INTO counters(name, value) SELECT key, value FROM meta"
    " WHERE typeof(value) = 'integer';"
    "DELETE FROM meta WHERE typeof(value) = 'integer';"
    "CREATE TABLE schema_migrations(version INTEGER PRIMARY KEY, name TEXT NOT NULL) STRICT;"
    "INSERT INTO schema_migrations(version, name) VALUES (1, 'base'), (2, 'push_seq'),"
    " (3, 'final_revocation'), (4, 'sender_ids'), (5, 'retired_senders'), (6, 'store');"
    "PRAGMA user_version = 6;";

/* PostgreSQL starts at version 6: the tables of versions 1-6 in one step
 * (BYTEA for BLOB, BIGINT for INTEGER, an identity column for audit ids).
 * Table, column and constraint names are the SQLite ones, so the statements
 * of this file run unchanged. */
static const char SCHEMA_V6_PG[] =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value BYTEA);"
    "CREATE TABLE counters(name TEXT PRIMARY KEY, value BIGINT NOT NULL CHECK(value >= 0));"
    "CREATE TABLE clients("
    " client_id TEXT PRIMARY KEY,"
    " sign_public BYTEA NOT NULL CHECK(length(sign_public) = 32),"
    " dh_public BYTEA NOT NULL CHECK(length(dh_public) = 32),"
    " role TEXT NOT NULL,"
    " status TEXT NOT NULL CHECK(status IN ('active', 'revoked')),"
    " enrolled_at BIGINT NOT NULL,"
    " revoked_at BIGINT,"
    " credential_serial BIGINT NOT NULL,"
    " credential_expires BIGINT NOT NULL,"
    " push_seq BIGINT NOT NULL DEFAULT 0 CHECK(push_seq >= 0));"
    "CREATE TABLE tokens("
    " token_id BYTEA PRIMARY KEY CHECK(length(token_id) = 16),"
    " token_secret BYTEA NOT NULL,"
    " client_id TEXT NOT NULL,"
    " role TEXT NOT NULL,"
    " created_at BIGINT NOT NULL,"
    " expires_at BIGINT NOT NULL,"
    " used_at BIGINT,"
    " used_by_sign_public BYTEA CHECK(used_by_sign_public IS NULL"
    "                                 OR length(used_by_sign_public) = 32),"
    " used_by_dh_public BYTEA CHECK(used_by_dh_public IS NULL OR length(used_by_dh_public) = 32),"
    " replaces BIGINT NOT NULL DEFAULT 0 CHECK(replaces IN (0, 1)),"
    " CHECK((used_at IS NULL) = (used_by_sign_public IS NULL)));"
    "CREATE INDEX tokens_by_client ON tokens(client_id);"
    "CREATE TABLE token_grants("
    " token_id BYTEA NOT NULL REFERENCES tokens(token_id) ON DELETE CASCADE,"
    " filter TEXT NOT NULL,"
    " rights BIGINT NOT NULL CHECK(rights BETWEEN 1 AND 3),"
    " PRIMARY KEY(token_id, filter));"
    "CREATE TABLE client_grants("
    " client_id TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,"
    " filter TEXT NOT NULL,"
    " rights BIGINT NOT NULL CHECK(rights BETWEEN 1 AND 3),"
    " PRIMARY KEY(client_id, filter));"
    "CREATE TABLE \"groups\"("
    " name TEXT PRIMARY KEY,"
    " topic_filter TEXT NOT NULL,"
    " current_epoch BIGINT NOT NULL CHECK(current_epoch >= 1),"
    " rotate_every_seconds BIGINT NOT NULL CHECK(rotate_every_seconds >= 0),"
    " rotate_every_messages BIGINT NOT NULL CHECK(rotate_every_messages >= 0),"
    " last_rotated_at BIGINT NOT NULL,"
    " signed BIGINT NOT NULL CHECK(signed IN (0, 1)),"
    " next_sender_id BIGINT NOT NULL DEFAULT 1 CHECK(next_sender_id >= 1));"
    "CREATE TABLE group_epochs("
    " group_name TEXT NOT NULL REFERENCES \"groups\"(name) ON DELETE CASCADE,"
    " epoch BIGINT NOT NULL CHECK(epoch >= 1),"
    " secret BYTEA NOT NULL,"
    " created_at BIGINT NOT NULL,"
    " retired_at BIGINT,"
    " grace_seconds BIGINT NOT NULL DEFAULT 0 CHECK(grace_seconds >= 0),"
    " PRIMARY KEY(group_name, epoch));"
    "CREATE TABLE group_members("
    " group_name TEXT NOT NULL REFERENCES \"groups\"(name) ON DELETE CASCADE,"
    " client_id TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,"
    " sender_id BIGINT NOT NULL CHECK(sender_id >= 1),"
    " added_at BIGINT NOT NULL,"
    " joined_epoch BIGINT NOT NULL DEFAULT 0 CHECK(joined_epoch >= 0),"
    " PRIMARY KEY(group_name, client_id),"
    " UNIQUE(group_name, sender_id));"
    "CREATE INDEX group_members_by_client ON group_members(client_id);"
    "CREATE TABLE token_groups("
    " token_id BYTEA NOT NULL REFERENCES tokens(token_id) ON DELETE CASCADE,"
    " group_name TEXT NOT NULL REFERENCES \"groups\"(name) ON DELETE CASCADE,"
    " PRIMARY KEY(token_id, group_name));"
    "CREATE TABLE revocations("
    " client_id TEXT NOT NULL REFERENCES clients(client_id),"
    " serial BIGINT NOT NULL,"
    " revoked_at BIGINT NOT NULL,"
    " PRIMARY KEY(client_id, serial));"
    "CREATE TABLE retired_senders("
    " group_name TEXT NOT NULL REFERENCES \"groups\"(name) ON DELETE CASCADE,"
    " sender_id BIGINT NOT NULL CHECK(sender_id >= 1),"
    " client_id TEXT NOT NULL,"
    " retired_at BIGINT NOT NULL,"
    " PRIMARY KEY(group_name, sender_id));"
    "CREATE TABLE operators("
    " name TEXT PRIMARY KEY,"
    " sign_public BYTEA NOT NULL CHECK(length(sign_public) = 32),"
    " added_at BIGINT NOT NULL);"
    "CREATE TABLE op_nonces(nonce BYTEA PRIMARY KEY, seen_at BIGINT NOT NULL);"
    "CREATE INDEX op_nonces_by_time ON op_nonces(seen_at);"
    "CREATE TABLE audit("
    " id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    " at BIGINT NOT NULL,"
    " actor TEXT NOT NULL,"
    " action TEXT NOT NULL,"
    " subject TEXT);"
    "INSERT INTO counters(name, value) VALUES ('revocation_version', 0), ('credential_serial', 0);"
    "INSERT INTO schema_migrations(version, name) VALUES (6, 'store');";

/* PostgreSQL: created (if missing) before the version is read, inside the
 * migration's write transaction. */
static const char MIGRATIONS_PG[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations(version BIGINT PRIMARY KEY, name TEXT NOT NULL)";

/* ------------------------------------------------------------------ counters */

static int meta_get_u64(uint64_t *out, mqe2e_adb *db, const char *key)
{
    store_stmt *st = NULL;
    int rc = prep(db, &st, "SELECT value FROM counters WHERE name = ?1");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, key);
    if (rc == MQE2E_OK) {
        rc = store_step(st);
        if (rc == 1) {
            *out = col_u64(st, 0);
            rc = MQE2E_OK;
        } else if (rc == 0) {
            rc = MQE2E_ERR_IO; /* written at creation: missing means a damaged store */
        }
    }
    store_finish(db->store, st);
    return rc;
}

/* Increment a counter and return its new value. */
static int meta_bump(uint64_t *out, mqe2e_adb *db, const char *key)
{
    /* UPDATE then SELECT, both inside the caller's transaction (every caller
     * holds one), rather than UPDATE ... RETURNING: SQLite stages RETURNING
     * rows in an ephemeral table, a temporary b-tree opened and closed per
     * call, which cost more than the update itself on every enrollment. */
    store_stmt *st = NULL;
    int rc = prep(db, &st,
                  "UPDATE counters SET value = value + 1 WHERE name = ?1"
                  " AND value >= 0 AND value < 9223372036854775807");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, key);
    if (rc == MQE2E_OK) rc = step_done(st);
    if (rc == MQE2E_OK && store_changes(st) != 1) rc = MQE2E_ERR_EXHAUSTED;
    store_finish(db->store, st);
    return rc == MQE2E_OK ? meta_get_u64(out, db, key) : rc;
}

/* ---------------------------------------------------------------- open */

/* One integer from a query without parameters (0 when it returns no row). */
static int query_int(int64_t *out, mqe2e_adb *db, const char *sql)
{
    store_stmt *st = NULL;
    *out = 0;
    int rc = prep(db, &st, sql);
    if (rc == MQE2E_OK) {
        rc = store_step(st);
        if (rc == 1) *out = store_col_i64(st, 0);
        if (rc >= 0) rc = MQE2E_OK;
    }
    store_finish(db->store, st);
    return rc;
}

static int schema_version(int64_t *out, mqe2e_adb *db)
{
    if (store_get_dialect(db->store) == STORE_SQLITE)
        return query_int(out, db, "PRAGMA user_version");
    int rc = exec_const(db, MIGRATIONS_PG);
    return rc == MQE2E_OK
               ? query_int(out, db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
               : rc;
}

static int key_check_store(mqe2e_adb *db)
{
    uint8_t zero[MQE2E_ADB_SECRET_BYTES] = {0};
    uint8_t sealed[SEALED_BYTES];
    uint8_t ad[AD_MAX];
    size_t ad_len = authority_ad_meta(ad, KEY_CHECK_NAME);
    store_stmt *st = NULL;
    seal(db, sealed, zero, ad, ad_len);
    int rc = prep(db, &st, "INSERT INTO meta(key, value) VALUES (?1, ?2)");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, KEY_CHECK_NAME);
    if (rc == MQE2E_OK) rc = bind_blob(st, 2, sealed, sizeof sealed);
    if (rc == MQE2E_OK) rc = step_done(st);
    store_finish(db->store, st);
    return rc;
}

static int key_check_verify(mqe2e_adb *db)
{
    uint8_t plain[MQE2E_ADB_SECRET_BYTES];
    uint8_t ad[AD_MAX];
    size_t ad_len = authority_ad_meta(ad, KEY_CHECK_NAME);
    store_stmt *st = NULL;
    int rc = prep(db, &st, "SELECT value FROM meta WHERE key = ?1");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, KEY_CHECK_NAME);
    if (rc == MQE2E_OK) {
        rc = store_step(st);
        if (rc == 1)
            rc = unseal_col(db, plain, st, 0, ad, ad_len);
        else if (rc == 0)
            rc = MQE2E_ERR_IO;
    }
    store_finish(db->store, st);
    sodium_memzero(plain, sizeof plain);
    return rc;
}

static int migrate_sqlite(mqe2e_adb *db, int64_t v)
{
    static const char *const steps[] = {SCHEMA_V1, SCHEMA_V2, SCHEMA_V3,
                                        SCHEMA_V4, SCHEMA_V5, SCHEMA_V6_SQLITE};
    int rc = MQE2E_OK;
    /* Steps 1-6 here; step 7 (the key trees) in authority_tree_db.c. */
    for (int64_t k = v; rc == MQE2E_OK && k < 6; k++) {
        rc = exec_const(db, steps[k]);
        if (rc == MQE2E_OK && k == 0) rc = key_check_store(db);
    }
    return rc;
}

static int migrate_pg(mqe2e_adb *db, int64_t v)
{
    if (v >= 6) return MQE2E_OK;
    /* A database at another version than 0, 6 or 7 was not written by this code. */
    if (v != 0) return MQE2E_ERR_IO;
    int rc = exec_const(db, SCHEMA_V6_PG);
    return rc == MQE2E_OK ? key_check_store(db) : rc;
}

/* Bring the schema to MQE2E_ADB_SCHEMA_VERSION. Each step runs in the same
 * write transaction as the version check, so two processes opening a new
 * store cannot both create it, and a crash leaves the previous version. */
static int migrate(mqe2e_adb *db)
{
    int64_t v = 0;
    int rc = store_begin(db->store, STORE_TX_WRITE);
    if (rc != MQE2E_OK) return MQE2E_ERR_IO;
    rc = schema_version(&v, db);
    if (rc == MQE2E_OK && v > MQE2E_ADB_SCHEMA_VERSION) rc = MQE2E_ERR_SUITE;
    if (rc == MQE2E_OK && v < 0) rc = MQE2E_ERR_IO;
    if (rc == MQE2E_OK) {
        rc = store_get_dialect(db->store) == STORE_SQLITE ? migrate_sqlite(db, v)
                                                          : migrate_pg(db, v);
        if (rc != MQE2E_OK) rc = MQE2E_ERR_IO;
    }
    /* Step 7, both dialects: the key trees (authority_tree_db.c). */
    if (rc == MQE2E_OK && v < 7) rc = authority_tree_db_migrate(db);
    if (rc == MQE2E_OK) rc = key_check_verify(db);
    return op_end(db, rc);
}

int mqe2e_adb_open(mqe2e_adb **out, const char *path, const uint8_t db_key[MQE2E_ADB_KEY_BYTES])
{
    if (out == NULL) return MQE2E_ERR_INVALID_ARG;
    *out = NULL;
    if (path == NULL || path[0] == '\0' || db_key == NULL) return MQE2E_ERR_INVALID_ARG;
    if (sodium_init() < 0) return MQE2E_ERR_CRYPTO;

    mqe2e_adb *db = calloc(1, sizeof *db);
    if (db == NULL) return MQE2E_ERR_NOMEM;
    int rc = MQE2E_OK;
    db->key = sodium_malloc(MQE2E_ADB_KEY_BYTES);
    if (db->key == NULL) {
        rc = MQE2E_ERR_NOMEM;
        goto out;
    }
    memcpy(db->key, db_key, MQE2E_ADB_KEY_BYTES);
    (void)sodium_mprotect_readonly(db->key);

    rc = store_open(&db->store, path);
    if (rc == MQE2E_OK) rc = migrate(db);

out:
    if (rc != MQE2E_OK) {
        mqe2e_adb_close(db);
        return rc;
    }
    *out = db;
    return MQE2E_OK;
}

void mqe2e_adb_close(mqe2e_adb *db)
{
    if (db == NULL) return;
    store_close(db->store);                    /* rolls an open transaction back */
    if (db->key != NULL) sodium_free(db->key); /* sodium_free wipes */
    free(db);
}

int mqe2e_adb_tx_begin(mqe2e_adb *db)
{
    if (db == NULL) return MQE2E_ERR_INVALID_ARG;
    if (db->user_tx) return MQE2E_ERR_STATE;
    int rc = store_begin(db->store, STORE_TX_WRITE);
    if (rc != MQE2E_OK) return MQE2E_ERR_IO;
    db->user_tx = 1;
    return MQE2E_OK;
}

int mqe2e_adb_tx_commit(mqe2e_adb *db)
{
    if (db == NULL) return MQE2E_ERR_INVALID_ARG;
    if (!db->user_tx) return MQE2E_ERR_STATE;
    db->user_tx = 0;
    if (tx_exec(db, "COMMIT") != MQE2E_OK) {
        if (store_in_tx(db->store)) (void)tx_exec(db, "ROLLBACK");
        return MQE2E_ERR_IO;
    }
    return MQE2E_OK;
}

int mqe2e_adb_tx_rollback(mqe2e_adb *db)
{
    if (db == NULL) return MQE2E_ERR_INVALID_ARG;
    if (!db->user_tx) return MQE2E_ERR_STATE;
    db->user_tx = 0;
    if (!store_in_tx(db->store)) return MQE2E_OK;
    return tx_exec(db, "ROLLBACK") == MQE2E_OK ? MQE2E_OK : MQE2E_ERR_IO;
}

/* ------------------------------------------------------------------ tokens */

int mqe2e_adb_token_create(mqe2e_adb *db, const uint8_t token_id[MQE2E_ADB_TOKEN_ID_BYTES],
                           const uint8_t secret[MQE2E_ADB_SECRET_BYTES], const char *client_id,
                           const char *role, const mqe2e_adb_grant *grants, size_t n,
                           uint64_t created_at, uint64_t expires_at)
{
    return mqe2e_adb_token_create_flags(db, token_id, secret, client_id, role, grants, n,
                                        created_at, expires_at, 0);
}

/* The status of a client id for a new token: 0 unknown, 1 active, 2 revoked. */
static int client_state(int *out, mqe2e_adb *db, const char *client_id)
{
    store_stmt *st = NULL;
    *out = 0;
    int rc = prep(db, &st, "SELECT status FROM clients WHERE client_id = ?1");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, client_id);
    if (rc == MQE2E_OK) {
        rc = store_step(st);
        if (rc == 1) {
            const char *s = store_col_text(st, 0, NULL);
            *out = (s != NULL && strcmp(s, "active") == 0) ? 1 : 2;
            rc = MQE2E_OK;
        }
    }
    store_finish(db->store, st);
    return rc;
}

int mqe2e_adb_token_create_flags(mqe2e_adb *db, const uint8_t token_id[MQE2E_ADB_TOKEN_ID_BYTES],
                                 const uint8_t secret[MQE2E_ADB_SECRET_BYTES],
                                 const char *client_id, const char *role,
                                 const mqe2e_adb_grant *grants, size_t n, uint64_t created_at,
                                 uint64_t expires_at, unsigned flags)
{
    if (db == NULL || token_id == NULL || secret == NULL) return MQE2E_ERR_INVALID_ARG;
    if ((flags & ~MQE2E_ADB_TOKEN_REPLACE) != 0) return MQE2E_ERR_INVALID_ARG;
    int rc = check_str(client_id, MQE2E_ADB_NAME_MAX);
    if (rc == MQE2E_OK) rc = check_str(role, MQE2E_ADB_NAME_MAX);
    if (rc == MQE2E_OK) rc = check_grants(grants, n, MQE2E_ADB_GRANTS_MAX);
    if (rc == MQE2E_OK) rc = check_u64(expires_at);
    if (rc != MQE2E_OK) return rc;
    if (expires_at <= created_at) return MQE2E_ERR_INVALID_ARG;

    uint8_t sealed[SEALED_BYTES];
    uint8_t ad[AD_MAX];
    seal(db, sealed, secret, ad, authority_ad_token(ad, token_id));

    store_stmt *st = NULL;
    int state = 0;
    rc = op_begin(db);
    if (rc != MQE2E_OK) return MQE2E_ERR_IO;
    rc = client_state(&state, db, client_id);
    /* Revocation is final; an active id changes device only on purpose. */
    if (rc == MQE2E_OK && state == 2) rc = MQE2E_ERR_STATE;
    if (rc == MQE2E_OK && state == 1 && !(flags & MQE2E_ADB_TOKEN_REPLACE)) rc = MQE2E_ERR_EXISTS;
    if (rc == MQE2E_OK && state == 0 && (flags & MQE2E_ADB_TOKEN_REPLACE)) rc = MQE2E_ERR_NOT_FOUND;
    if (rc == MQE2E_OK)
        rc = prep(db, &st,
                  "INSERT INTO tokens(token_id, token_secret, client_id, role, created_at,"
                  " expires_at, replaces) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    if (rc == MQE2E_OK) rc = bind_blob(st, 1, token_id, MQE2E_ADB_TOKEN_ID_BYTES);
    if (rc == MQE2E_OK) rc = bind_blob(st, 2, sealed, sizeof sealed);
    if (rc == MQE2E_OK) rc = bind_text(st, 3, client_id);
    if (rc == MQE2E_OK) rc = bind_text(st, 4, role);
    if (rc == MQE2E_OK) rc = bind_u64(st, 5, created_at);
    if (rc == MQE2E_OK) rc = bind_u64(st, 6, expires_at);
    if (rc == MQE2E_OK) rc = bind_u64(st, 7, (flags & MQE2E_ADB_TOKEN_REPLACE) ? 1U : 0U);
    if (rc == MQE2E_OK) rc = step_done(st);
    store_finish(db->store, st);
    st = NULL;
    if (rc == MQE2E_OK)
        rc = prep(db, &st,
                  "INSERT INTO token_grants(token_id, filter, rights) VALUES (?1, ?2, ?3)"
                  " ON CONFLICT(token_id, filter) DO UPDATE SET rights = token_grants.rights | "
                  "excluded.rights");
    for (size_t i = 0; rc == MQE2E_OK && i < n; i++) {
        (void)store_reset(st);
        rc = bind_blob(st, 1, token_id, MQE2E_ADB_TOKEN_ID_BYTES);
        if (rc == MQE2E_OK) rc = bind_text(st, 2, grants[i].filter);
        if (rc == MQE2E_OK) rc = bind_u64(st, 3, grants[i].rights);
        if (rc == MQE2E_OK) rc = step_done(st);
    }
    store_finish(db->store, st);
    return op_end(db, rc);
}

/* Load a token's row and grants; the sealed secret is copied out unopened so
 * that state checks come first. */
static int token_load(uint8_t sealed[SEALED_BYTES], mqe2e_adb_token_info *info, mqe2e_adb *db,
                      const uint8_t token_id[MQE2E_ADB_TOKEN_ID_BYTES])
{
    store_stmt *st = NULL;
    memset(info, 0, sizeof *info);
    int rc = prep(db, &st,
                  "SELECT token_secret, client_id, role, created_at, expires_at, used_at,"
                  " used_by_sign_public, used_by_dh_public, replaces FROM tokens"
                  " WHERE token_id = ?1");
    if (rc == MQE2E_OK) rc = bind_blob(st, 1, token_id, MQE2E_ADB_TOKEN_ID_BYTES);
    if (store_one_row(&rc, st)) {
        size_t blen = 0;
        const uint8_t *b = store_col_blob(st, 0, &blen);
        if (b != NULL && blen == SEALED_BYTES)
            memcpy(sealed, b, SEALED_BYTES);
        else
            memset(sealed, 0, SEALED_BYTES); /* fails to open: AUTH later */
        rc = col_text(info->client_id, sizeof info->client_id, st, 1);
        if (rc == MQE2E_OK) rc = col_text(info->role, sizeof info->role, st, 2);
        info->created_at = col_u64(st, 3);
        info->expires_at = col_u64(st, 4);
        if (rc == MQE2E_OK && store_col_type(st, 5) != STORE_COL_NULL) {
            info->used = 1;
            info->used_at = col_u64(st, 5);
            rc = col_blob(info->used_by_sign_public, MQE2E_ADB_PUBLIC_BYTES, st, 6);
            /* NULL for a token used before schema 3: no retry matches it. */
            if (rc == MQE2E_OK && store_col_type(st, 7) != STORE_COL_NULL)
                rc = col_blob(info->used_by_dh_public, MQE2E_ADB_PUBLIC_BYTES, st, 7);
        }
        info->replaces = col_u64(st, 8) != 0;
    }
    store_finish(db->store, st);
    st = NULL;
    if (rc == MQE2E_OK)
        rc = prep(db, &st,
                  "SELECT filter, rights FROM token_grants WHERE token_id = ?1 ORDER BY filter");
    if (rc == MQE2E_OK) rc = bind_blob(st, 1, token_id, MQE2E_ADB_TOKEN_ID_BYTES);
    while (store_next_row(&rc, st)) {
        if (info->n_grants >= MQE2E_ADB_GRANTS_MAX) {
            rc = MQE2E_ERR_IO;
            break;
        }
        mqe2e_adb_grant *g = &info->grants[info->n_grants++];
        rc = col_text(g->filter, sizeof g->filter, st, 0);
        g->rights = (uint32_t)col_u64(st, 1);
    }
    store_finish(db->store, st);
    return rc;
}

static int token_unseal(const mqe2e_adb *db, uint8_t out[MQE2E_ADB_SECRET_BYTES],
                        const uint8_t sealed[SEALED_BYTES],
                        const uint8_t token_id[MQE2E_ADB_TOKEN_ID_BYTES])
{
    uint8_t ad[AD_MAX];
    size_t ad_len = authority_ad_token(ad, token_id);
    return authority_unseal(out, db->key, sealed, SEALED_BYTES, ad, ad_len);
}

int mqe2e_adb_token_peek(uint8_t out_secret[MQE2E_ADB_SECRET_BYTES], mqe2e_adb_token_info *out_info,
                         mqe2e_adb *db, const uint8_t token_id[MQE2E_ADB_TOKEN_ID_BYTES])
{
    if (out_secret == NULL) return MQE2E_ERR_INVALID_ARG;
    sodium_memzero(out_secret, MQE2E_ADB_SECRET_BYTES);
    if (db == NULL || token_id == NULL) return MQE2E_ERR_INVALID_ARG;
    mqe2e_adb_token_info local;
    mqe2e_adb_token_info *info = out_info != NULL ? out_info : &local;
    uint8_t sealed[SEALED_BYTES];
    int rc = read_begin(db);
    if (rc != MQE2E_OK) return MQE2E_ERR_IO;
    rc = token_load(sealed, info, db, token_id);
    if (rc == MQE2E_OK) rc = token_unseal(db, out_secret, sealed, token_id);
    rc = op_end(db, rc);
    if (rc != MQE2E_OK) sodium_memzero(out_secret, MQE2E_ADB_SECRET_BYTES);
    return rc;
}

int mqe2e_adb_token_consume(uint8_t out_secret[MQE2E_ADB_SECRET_BYTES],
                            mqe2e_adb_token_info *out_info, mqe2e_adb *db,
                            const uint8_t token_id[MQE2E_ADB_TOKEN_ID_BYTES],
                            const uint8_t device_sign_public[MQE2E_ADB_PUBLIC_BYTES],
                            const uint8_t device_dh_public[MQE2E_ADB_PUBLIC_BYTES], uint64_t now)
{
    if (out_secret == NULL) return MQE2E_ERR_INVALID_ARG;
    sodium_memzero(out_secret, MQE2E_ADB_SECRET_BYTES);
    if (db == NULL || token_id == NULL || device_sign_public == NULL || device_dh_public == NULL)
        return MQE2E_ERR_INVALID_ARG;
    int rc = check_u64(now);
    if (rc != MQE2E_OK) return rc;
    mqe2e_adb_token_info local;
    mqe2e_adb_token_info *info = out_info != NULL ? out_info : &local;
    uint8_t sealed[SEALED_BYTES];
    store_stmt *st = NULL;

    /* Check and mark in one IMMEDIATE transaction: two concurrent consumers
     * of the same token serialise, and the second one sees it used. */
    rc = op_begin(db);
    if (rc != MQE2E_OK) return MQE2E_ERR_IO;
    rc = token_load(sealed, info, db, token_id);
    /* Expiry holds for retries too: a ticket is worth nothing after it. */
    if (rc == MQE2E_OK && now >= info->expires_at) rc = MQE2E_ERR_EXPIRED;
    if (rc == MQE2E_OK && info->used) {
        /* A retry after a lost reply: the same X25519 key the handshake proved
         * (and the same Ed25519 key), shortly after the first use. The
         * Ed25519 key alone is public and proves nothing. */
        int same_sign = sodium_memcmp(info->used_by_sign_public, device_sign_public,
                                      MQE2E_ADB_PUBLIC_BYTES) == 0;
        int same_dh =
            sodium_memcmp(info->used_by_dh_public, device_dh_public, MQE2E_ADB_PUBLIC_BYTES) == 0;
        int same = same_sign && same_dh;
        if (!same || now < info->used_at || now - info->used_at > MQE2E_ADB_ENROLL_RETRY_SECONDS)
            rc = MQE2E_ERR_STATE;
        else
            info->retry = 1;
    }
    /* Open before marking: a secret that does not open leaves the token unused. */
    if (rc == MQE2E_OK) rc = token_unseal(db, out_secret, sealed, token_id);
    if (rc == MQE2E_OK && !info->used) {
        rc = prep(db, &st,
                  "UPDATE tokens SET used_at = ?2, used_by_sign_public = ?3, used_by_dh_public = ?4"
                  " WHERE token_id = ?1 AND used_at IS NULL");
        if (rc == MQE2E_OK) rc = bind_blob(st, 1, token_id, MQE2E_ADB_TOKEN_ID_BYTES);
        if (rc == MQE2E_OK) rc = bind_u64(st, 2, now);
        if (rc == MQE2E_OK) rc = bind_blob(st, 3, device_sign_public, MQE2E_ADB_PUBLIC_BYTES);
        if (rc == MQE2E_OK) rc = bind_blob(st, 4, device_dh_public, MQE2E_ADB_PUBLIC_BYTES);
        if (rc == MQE2E_OK) rc = step_done(st);
        if (rc == MQE2E_OK && store_changes(st) != 1) rc = MQE2E_ERR_STATE;
        store_finish(db->store, st);
        if (rc == MQE2E_OK) {
            info->used = 1;
            info->used_at = now;
            memcpy(info->used_by_sign_public, device_sign_public, MQE2E_ADB_PUBLIC_BYTES);
            memcpy(info->used_by_dh_public, device_dh_public, MQE2E_ADB_PUBLIC_BYTES);
        }
    }
    rc = op_end(db, rc);
    if (rc != MQE2E_OK) sodium_memzero(out_secret, MQE2E_ADB_SECRET_BYTES);
    return rc;
}

int mqe2e_adb_token_prune(uint64_t *out_deleted, mqe2e_adb *db, uint64_t now)
{
    if (out_deleted != NULL) *out_deleted = 0;
    if (db == NULL) return MQE2E_ERR_INVALID_ARG;
    if (check_u64(now) != MQE2E_OK) return MQE2E_ERR_INVALID_ARG;
    store_stmt *st = NULL;
    int rc = prep(db, &st, "DELETE FROM tokens WHERE expires_at <= ?1");
    if (rc == MQE2E_OK) rc = bind_u64(st, 1, now);
    if (rc == MQE2E_OK) rc = step_done(st);
    if (rc == MQE2E_OK && out_deleted != NULL) *out_deleted = (uint64_t)store_changes(st);
    store_finish(db->store, st);
    return rc;
}

/* ----------------------------------------------------------------- clients */

static int client_grants_insert(mqe2e_adb *db, const char *client_id, const char *filter,
                                uint32_t rights)
{
    store_stmt *st = NULL;
    int rc = prep(db, &st,
                  "INSERT INTO client_grants(client_id, filter, rights) VALUES (?1, ?2, ?3)"
                  " ON CONFLICT(client_id, filter) DO UPDATE SET rights = client_grants.rights | "
                  "excluded.rights");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, client_id);
    if (rc == MQE2E_OK) rc = bind_text(st, 2, filter);
    if (rc == MQE2E_OK) rc = bind_u64(st, 3, rights);
    if (rc == MQE2E_OK) rc = step_done(st);
    store_finish(db->store, st);
    return rc;
}

int mqe2e_adb_client_upsert_enrolled(uint64_t *out_serial, mqe2e_adb *db, const char *client_id,
                                     const char *role,
                                     const uint8_t sign_public[MQE2E_ADB_PUBLIC_BYTES],
                                     const uint8_t dh_public[MQE2E_ADB_PUBLIC_BYTES],
                                     const mqe2e_adb_grant *grants, size_t n, uint64_t now,
                                     uint64_t credential_expires)
{
    if (out_serial != NULL) *out_serial = 0;
    if (db == NULL || sign_public == NULL || dh_public == NULL) return MQE2E_ERR_INVALID_ARG;
    int rc = check_str(client_id, MQE2E_ADB_NAME_MAX);
    if (rc == MQE2E_OK) rc = check_str(role, MQE2E_ADB_NAME_MAX);
    /* Client grants are not bounded by a token's capacity, only by sanity. */
    if (rc == MQE2E_OK) rc = check_grants(grants, n, 4096);
    if (rc == MQE2E_OK) rc = check_u64(now);
    if (rc == MQE2E_OK) rc = check_u64(credential_expires);
    if (rc != MQE2E_OK) return rc;

    uint64_t serial = 0;
    store_stmt *st = NULL;
    rc = op_begin(db);
    if (rc != MQE2E_OK) return MQE2E_ERR_IO;
    /* Revocation is final; an active client changes keys only through
     * mqe2e_adb_client_replace(). */
    rc = prep(db, &st, "SELECT status, sign_public, dh_public FROM clients WHERE client_id = ?1");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, client_id);
    if (rc == MQE2E_OK) {
        rc = store_step(st);
        if (rc == 1) {
            const char *s = store_col_text(st, 0, NULL);
            uint8_t sp[MQE2E_ADB_PUBLIC_BYTES], dp[MQE2E_ADB_PUBLIC_BYTES];
            int keys = col_blob(sp, sizeof sp, st, 1) == MQE2E_OK &&
                       col_blob(dp, sizeof dp, st, 2) == MQE2E_OK;
            if (s == NULL || strcmp(s, "active") != 0)
                rc = MQE2E_ERR_STATE;
            else if (!keys || sodium_memcmp(sp, sign_public, MQE2E_ADB_PUBLIC_BYTES) != 0 ||
                     sodium_memcmp(dp, dh_public, MQE2E_ADB_PUBLIC_BYTES) != 0)
                rc = MQE2E_ERR_EXISTS;
            else
                rc = MQE2E_OK;
        }
    }
    store_finish(db->store, st);
    st = NULL;
    if (rc == MQE2E_OK) rc = meta_bump(&serial, db, "credential_serial");
    if (rc == MQE2E_OK)
        rc = prep(db, &st,
                  "INSERT INTO clients(client_id, sign_public, dh_public, role, status,"
                  " enrolled_at, revoked_at, credential_serial, credential_expires)"
                  " VALUES (?1, ?2, ?3, ?4, 'active', ?5, NULL, ?6, ?7)"
                  " ON CONFLICT(client_id) DO UPDATE SET role = excluded.role,"
                  " enrolled_at = excluded.enrolled_at,"
                  " credential_serial = excluded.credential_serial,"
                  " credential_expires = excluded.credential_expires"
                  " WHERE clients.status = 'active'");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, client_id);
    if (rc == MQE2E_OK) rc = bind_blob(st, 2, sign_public, MQE2E_ADB_PUBLIC_BYTES);
    if (rc == MQE2E_OK) rc = bind_blob(st, 3, dh_public, MQE2E_ADB_PUBLIC_BYTES);
    if (rc == MQE2E_OK) rc = bind_text(st, 4, role);
    if (rc == MQE2E_OK) rc = bind_u64(st, 5, now);
    if (rc == MQE2E_OK) rc = bind_u64(st, 6, serial);
    if (rc == MQE2E_OK) rc = bind_u64(st, 7, credential_expires);
    if (rc == MQE2E_OK) rc = step_done(st);
    store_finish(db->store, st);
    st = NULL;
    if (rc == MQE2E_OK) rc = prep(db, &st, "DELETE FROM client_grants WHERE client_id = ?1");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, client_id);
    if (rc == MQE2E_OK) rc = step_done(st);
    store_finish(db->store, st);
    for (size_t i = 0; rc == MQE2E_OK && i < n; i++)
        rc = client_grants_insert(db, client_id, grants[i].filter, grants[i].rights);
    rc = op_end(db, rc);
    if (rc == MQE2E_OK && out_serial != NULL) *out_serial = serial;
    return rc;
}

#define CLIENT_SELECT                                                                              \
    "SELECT client_id, sign_public, dh_public, role, status, enrolled_at, revoked_at,"             \
    " credential_serial, credential_expires FROM clients"

static int client_from_row(mqe2e_adb_client *c, store_stmt *st)
{
    memset(c, 0, sizeof *c);
    int rc = col_text(c->client_id, sizeof c->client_id, st, 0);
    if (rc == MQE2E_OK) rc = col_blob(c->sign_public, sizeof c->sign_public, st, 1);
    if (rc == MQE2E_OK) rc = col_blob(c->dh_public, sizeof c->dh_public, st, 2);
    if (rc == MQE2E_OK) rc = col_text(c->role, sizeof c->role, st, 3);
    const char *status = store_col_text(st, 4, NULL);
    c->status = (status != NULL && strcmp((const char *)status, "revoked") == 0)
                    ? MQE2E_ADB_CLIENT_REVOKED
                    : MQE2E_ADB_CLIENT_ACTIVE;
    c->enrolled_at = col_u64(st, 5);
    c->revoked_at = col_u64(st, 6);
    c->credential_serial = col_u64(st, 7);
    c->credential_expires = col_u64(st, 8);
    return rc;
}

int mqe2e_adb_client_get(mqe2e_adb_client *out, mqe2e_adb *db, const char *client_id)
{
    if (out == NULL || db == NULL) return MQE2E_ERR_INVALID_ARG;
    int rc = check_str(client_id, MQE2E_ADB_NAME_MAX);
    if (rc != MQE2E_OK) return rc;
    store_stmt *st = NULL;
    rc = prep(db, &st, CLIENT_SELECT " WHERE client_id = ?1");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, client_id);
    if (store_one_row(&rc, st)) rc = client_from_row(out, st);
    store_finish(db->store, st);
    return rc;
}

int mqe2e_adb_client_list(mqe2e_adb *db, mqe2e_adb_client_cb cb, void *user)
{
    if (db == NULL || cb == NULL) return MQE2E_ERR_INVALID_ARG;
    store_stmt *st = NULL;
    int rc = prep(db, &st, CLIENT_SELECT " ORDER BY client_id");
    while (store_next_row(&rc, st)) {
        mqe2e_adb_client c;
        rc = client_from_row(&c, st);
        if (rc == MQE2E_OK) rc = cb(&c, user);
    }
    store_finish(db->store, st);
    return rc;
}

/* A growable list of names, for calls that must finish their query (and
 * their transaction) before handing rows to a callback. */
typedef struct namelist {
    char **v;
    size_t n, cap;
} namelist;

static int namelist_push(namelist *l, const char *s)
{
    if (s == NULL) return MQE2E_ERR_IO;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        char **v = realloc(l->v, cap * sizeof *v);
        if (v == NULL) return MQE2E_ERR_NOMEM;
        l->v = v;
        l->cap = cap;
    }
    size_t len = strlen(s);
    char *c = malloc(len + 1);
    if (c == NULL) return MQE2E_ERR_NOMEM;
    memcpy(c, s, len + 1);
    l->v[l->n++] = c;
    return MQE2E_OK;
}

static void namelist_free(namelist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

static int namelist_collect(namelist *l, store_stmt *st)
{
    int rc = MQE2E_OK;
    while (rc == MQE2E_OK) {
        int r = store_step(st);
        if (r <= 0) return r;
        rc = namelist_push(l, store_col_text(st, 0, NULL));
    }
    return rc;
}

static int exec_client_stmt(mqe2e_adb *db, const char *sql, const char *client_id, int has_now,
                            uint64_t now)
{
    store_stmt *st = NULL;
    int rc = prep(db, &st, sql);
    if (rc == MQE2E_OK) rc = bind_text(st, 1, client_id);
    if (rc == MQE2E_OK && has_now) rc = bind_u64(st, 2, now);
    if (rc == MQE2E_OK) rc = step_done(st);
    store_finish(db->store, st);
    return rc;
}

/* An active client's current credential serial and its groups (sorted).
 * MQE2E_ERR_NOT_FOUND for an unknown client, MQE2E_ERR_STATE for a revoked one.
 * Runs inside the caller's transaction. */
static int active_client_groups(uint64_t *serial, namelist *groups, mqe2e_adb *db,
                                const char *client_id)
{
    store_stmt *st = NULL;
    int rc = prep(db, &st, "SELECT status, credential_serial FROM clients WHERE client_id = ?1");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, client_id);
    if (store_one_row(&rc, st)) {
        const char *s = store_col_text(st, 0, NULL);
        rc = (s != NULL && strcmp(s, "active") == 0) ? MQE2E_OK : MQE2E_ERR_STATE;
        *serial = col_u64(st, 1);
    }
    store_finish(db->store, st);
    st = NULL;
    if (rc == MQE2E_OK)
        rc = prep(db, &st,
                  "SELECT group_name FROM group_members WHERE client_id = ?1 ORDER BY group_name");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, client_id);
    if (rc == MQE2E_OK) rc = namelist_collect(groups, st);
    store_finish(db->store, st);
    return rc;
}

/* Retire the sender ids the client holds in its groups (before its
 * memberships go): they go on the revocation list. */
static int senders_retire(mqe2e_adb *db, const char *client_id, uint64_t now)
{
    return exec_client_stmt(db,
                            "INSERT INTO retired_senders(group_name, sender_id,"
                            " client_id, retired_at) SELECT group_name, sender_id, client_id, ?2"
                            " FROM group_members WHERE client_id = ?1"
                            " ON CONFLICT(group_name, sender_id) DO NOTHING",
                            client_id, 1, now);
}

/* Put (client, serial) on the revocation list; an entry already there stays. */
static int revocation_insert(mqe2e_adb *db, const char *client_id, uint64_t serial, uint64_t now)
{
    store_stmt *st = NULL;
    int rc = prep(db, &st,
                  "INSERT INTO revocations(client_id, serial, revoked_at) VALUES (?1, ?2, ?3)"
                  " ON CONFLICT(client_id, serial) DO NOTHING");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, client_id);
    if (rc == MQE2E_OK) rc = bind_u64(st, 2, serial);
    if (rc == MQE2E_OK) rc = bind_u64(st, 3, now);
    if (rc == MQE2E_OK) rc = step_done(st);
    store_finish(db->store, st);
    return rc;
}

int mqe2e_adb_client_revoke(mqe2e_adb *db, const char *client_id, uint64_t now,
                            mqe2e_adb_name_cb cb, void *user)
{
    if (db == NULL) return MQE2E_ERR_INVALID_ARG;
    int rc = check_str(client_id, MQE2E_ADB_NAME_MAX);
    if (rc == MQE2E_OK) rc = check_u64(now);
    if (rc != MQE2E_OK) return rc;
    namelist groups = {0};
    uint64_t serial = 0, version = 0;

    rc = op_begin(db);
    if (rc != MQE2E_OK) return MQE2E_ERR_IO;
    rc = active_client_groups(&serial, &groups, db, client_id);
    if (rc == MQE2E_OK)
        rc = exec_client_stmt(db,
                              "UPDATE clients SET status = 'revoked', revoked_at = ?2"
                              " WHERE client_id = ?1",
                              client_id, 1, now);
    /* Serial 0: every credential the client ever held (retries and renewals
     * minted several), not only the current one. */
    if (rc == MQE2E_OK) rc = revocation_insert(db, client_id, 0, now);
    if (rc == MQE2E_OK) rc = senders_retire(db, client_id, now);
    if (rc == MQE2E_OK)
        rc =
            exec_client_stmt(db, "DELETE FROM group_members WHERE client_id = ?1", client_id, 0, 0);
    /* No token issued before the revocation, used or not, brings it back. */
    if (rc == MQE2E_OK)
        rc = exec_client_stmt(db, "DELETE FROM tokens WHERE client_id = ?1", client_id, 0, 0);
    if (rc == MQE2E_OK) rc = meta_bump(&version, db, "revocation_version");
    rc = op_end(db, rc);
    for (size_t i = 0; rc == MQE2E_OK && cb != NULL && i < groups.n; i++)
        rc = cb(groups.v[i], user);
    namelist_free(&groups);
    return rc;
}

int mqe2e_adb_client_replace(mqe2e_adb *db, const char *client_id,
                             const uint8_t sign_public[MQE2E_ADB_PUBLIC_BYTES],
                             const uint8_t dh_public[MQE2E_ADB_PUBLIC_BYTES], uint64_t now,
                             mqe2e_adb_name_cb cb, void *user)
{
    if (db == NULL || sign_public == NULL || dh_public == NULL) return MQE2E_ERR_INVALID_ARG;
    int rc = check_str(client_id, MQE2E_ADB_NAME_MAX);
    if (rc == MQE2E_OK) rc = check_u64(now);
    if (rc != MQE2E_OK) return rc;
    namelist groups = {0};
    uint64_t serial = 0, version = 0;
    store_stmt *st = NULL;

    rc = op_begin(db);
    if (rc != MQE2E_OK) return MQE2E_ERR_IO;
    rc = active_client_groups(&serial, &groups, db, client_id);
    /* Serials grow across the store: the entry covers every credential the
     * old device held, none the new one will get. */
    if (rc == MQE2E_OK) rc = revocation_insert(db, client_id, serial, now);
    if (rc == MQE2E_OK) rc = senders_retire(db, client_id, now);
    if (rc == MQE2E_OK)
        rc =
            exec_client_stmt(db, "DELETE FROM group_members WHERE client_id = ?1", client_id, 0, 0);
    if (rc == MQE2E_OK)
        rc = prep(db, &st,
                  "UPDATE clients SET sign_public = ?2, dh_public = ?3 WHERE client_id = ?1");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, client_id);
    if (rc == MQE2E_OK) rc = bind_blob(st, 2, sign_public, MQE2E_ADB_PUBLIC_BYTES);
    if (rc == MQE2E_OK) rc = bind_blob(st, 3, dh_public, MQE2E_ADB_PUBLIC_BYTES);
    if (rc == MQE2E_OK) rc = step_done(st);
    store_finish(db->store, st);
    if (rc == MQE2E_OK) rc = meta_bump(&version, db, "revocation_version");
    for (size_t i = 0; rc == MQE2E_OK && cb != NULL && i < groups.n; i++)
        rc = cb(groups.v[i], user);
    rc = op_end(db, rc);
    namelist_free(&groups);
    return rc;
}

/* ------------------------------------------------------------------ grants */

int mqe2e_adb_grant_add(mqe2e_adb *db, const char *client_id, const char *filter, uint32_t rights)
{
    if (db == NULL) return MQE2E_ERR_INVALID_ARG;
    mqe2e_adb_grant g;
    int rc = check_str(client_id, MQE2E_ADB_NAME_MAX);
    if (rc == MQE2E_OK) rc = check_str(filter, MQE2E_ADB_FILTER_MAX);
    if (rc != MQE2E_OK) return rc;
    memcpy(g.filter, filter, strlen(filter) + 1);
    g.rights = rights;
    rc = check_grants(&g, 1, 1);
    if (rc != MQE2E_OK) return rc;
    /* The foreign key turns an unknown client into NOT_FOUND. */
    return client_grants_insert(db, client_id, filter, rights);
}

int mqe2e_adb_grant_remove(mqe2e_adb *db, const char *client_id, const char *filter)
{
    if (db == NULL) return MQE2E_ERR_INVALID_ARG;
    int rc = check_str(client_id, MQE2E_ADB_NAME_MAX);
    if (rc == MQE2E_OK) rc = check_str(filter, MQE2E_ADB_FILTER_MAX);
    if (rc != MQE2E_OK) return rc;
    store_stmt *st = NULL;
    rc = prep(db, &st, "DELETE FROM client_grants WHERE client_id = ?1 AND filter = ?2");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, client_id);
    if (rc == MQE2E_OK) rc = bind_text(st, 2, filter);
    if (rc == MQE2E_OK) rc = step_done(st);
    if (rc == MQE2E_OK && store_changes(st) == 0) rc = MQE2E_ERR_NOT_FOUND;
    store_finish(db->store, st);
    return rc;
}

int mqe2e_adb_grant_list(mqe2e_adb *db, const char *client_id, mqe2e_adb_grant_cb cb, void *user)
{
    if (db == NULL || cb == NULL) return MQE2E_ERR_INVALID_ARG;
    int rc = check_str(client_id, MQE2E_ADB_NAME_MAX);
    if (rc != MQE2E_OK) return rc;
    store_stmt *st = NULL;
    rc = prep(db, &st,
              "SELECT filter, rights FROM client_grants WHERE client_id = ?1 ORDER BY filter");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, client_id);
    while (store_next_row(&rc, st)) {
        mqe2e_adb_grant g;
        rc = col_text(g.filter, sizeof g.filter, st, 0);
        g.rights = (uint32_t)col_u64(st, 1);
        if (rc == MQE2E_OK) rc = cb(&g, user);
    }
    store_finish(db->store, st);
    return rc;
}

/* ------------------------------------------------------------------ groups */

static int epoch_insert(mqe2e_adb *db, const char *name, uint32_t epoch,
                        const uint8_t secret[MQE2E_ADB_SECRET_BYTES], uint64_t now)
{
    uint8_t sealed[SEALED_BYTES];
    uint8_t ad[AD_MAX];
    seal(db, sealed, secret, ad, authority_ad_epoch(ad, name, epoch));
    store_stmt *st = NULL;
    int rc = prep(db, &st,
                  "INSERT INTO group_epochs(group_name, epoch, secret, created_at, retired_at)"
                  " VALUES (?1, ?2, ?3, ?4, NULL)");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, name);
    if (rc == MQE2E_OK) rc = bind_u64(st, 2, epoch);
    if (rc == MQE2E_OK) rc = bind_blob(st, 3, sealed, sizeof sealed);
    if (rc == MQE2E_OK) rc = bind_u64(st, 4, now);
    if (rc == MQE2E_OK) rc = step_done(st);
    store_finish(db->store, st);
    return rc;
}

int mqe2e_adb_group_create(mqe2e_adb *db, const char *name, const char *topic_filter,
                           const mqe2e_adb_group_settings *settings, uint64_t now,
                           const uint8_t initial_secret[MQE2E_ADB_SECRET_BYTES])
{
    if (db == NULL || initial_secret == NULL) return MQE2E_ERR_INVALID_ARG;
    mqe2e_adb_group_settings s = {0, 0, 0};
    if (settings != NULL) s = *settings;
    int rc = check_str(name, MQE2E_ADB_NAME_MAX);
    if (rc == MQE2E_OK) rc = check_str(topic_filter, MQE2E_ADB_FILTER_MAX);
    if (rc == MQE2E_OK) rc = check_u64(now);
    if (rc == MQE2E_OK) rc = check_u64(s.rotate_every_seconds);
    if (rc == MQE2E_OK) rc = check_u64(s.rotate_every_messages);
    if (rc != MQE2E_OK) return rc;

    store_stmt *st = NULL;
    rc = op_begin(db);
    if (rc != MQE2E_OK) return MQE2E_ERR_IO;
    rc =
        prep(db, &st,
             "INSERT INTO \"groups\"(name, topic_filter, current_epoch, rotate_every_seconds,"
             " rotate_every_messages, last_rotated_at, signed) VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6)");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, name);
    if (rc == MQE2E_OK) rc = bind_text(st, 2, topic_filter);
    if (rc == MQE2E_OK) rc = bind_u64(st, 3, s.rotate_every_seconds);
    if (rc == MQE2E_OK) rc = bind_u64(st, 4, s.rotate_every_messages);
    if (rc == MQE2E_OK) rc = bind_u64(st, 5, now);
    if (rc == MQE2E_OK) rc = bind_u64(st, 6, s.is_signed ? 1U : 0U);
    if (rc == MQE2E_OK) rc = step_done(st);
    store_finish(db->store, st);
    if (rc == MQE2E_OK) rc = epoch_insert(db, name, 1, initial_secret, now);
    return op_end(db, rc);
}

int mqe2e_adb_group_rotate(uint32_t *out_epoch, mqe2e_adb *db, const char *name,
                           const uint8_t new_secret[MQE2E_ADB_SECRET_BYTES], uint64_t now)
{
    if (out_epoch != NULL) *out_epoch = 0;
    if (db == NULL || new_secret == NULL) return MQE2E_ERR_INVALID_ARG;
    int rc = check_str(name, MQE2E_ADB_NAME_MAX);
    if (rc == MQE2E_OK) rc = check_u64(now);
    if (rc != MQE2E_OK) return rc;
    uint64_t cur = 0;
    store_stmt *st = NULL;

    rc = op_begin(db);
    if (rc != MQE2E_OK) return MQE2E_ERR_IO;
    rc = prep(db, &st, "SELECT current_epoch FROM \"groups\" WHERE name = ?1");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, name);
    if (store_one_row(&rc, st)) {
        cur = col_u64(st, 0);
    }
    store_finish(db->store, st);
    st = NULL;
    uint32_t next = 0;
    if (rc == MQE2E_OK) rc = authority_next_epoch(&next, cur);
    if (rc == MQE2E_OK)
        rc = prep(db, &st,
                  "UPDATE group_epochs SET retired_at = ?2"
                  " WHERE group_name = ?1 AND retired_at IS NULL");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, name);
    if (rc == MQE2E_OK) rc = bind_u64(st, 2, now);
    if (rc == MQE2E_OK) rc = step_done(st);
    store_finish(db->store, st);
    st = NULL;
    if (rc == MQE2E_OK) rc = epoch_insert(db, name, next, new_secret, now);
    if (rc == MQE2E_OK)
        rc = prep(db, &st,
                  "UPDATE \"groups\" SET current_epoch = ?2, last_rotated_at = ?3 WHERE name = ?1");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, name);
    if (rc == MQE2E_OK) rc = bind_u64(st, 2, next);
    if (rc == MQE2E_OK) rc = bind_u64(st, 3, now);
    if (rc == MQE2E_OK) rc = step_done(st);
    store_finish(db->store, st);
    rc = op_end(db, rc);
    if (rc == MQE2E_OK && out_epoch != NULL) *out_epoch = next;
    return rc;
}

int mqe2e_adb_group_limit_grace(mqe2e_adb *db, const char *name, uint32_t grace_seconds)
{
    if (db == NULL || grace_seconds == 0) return MQE2E_ERR_INVALID_ARG;
    int rc = check_str(name, MQE2E_ADB_NAME_MAX);
    if (rc != MQE2E_OK) return rc;
    store_stmt *st = NULL;
    rc = prep(db, &st,
              "UPDATE group_epochs SET grace_seconds = ?2 WHERE group_name = ?1"
              " AND retired_at IS NOT NULL AND (grace_seconds = 0 OR grace_seconds > ?2)");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, name);
    if (rc == MQE2E_OK) rc = bind_u64(st, 2, grace_seconds);
    if (rc == MQE2E_OK) rc = step_done(st);
    store_finish(db->store, st);
    return rc;
}

int mqe2e_adb_group_epoch_grace(uint32_t *out, mqe2e_adb *db, const char *name, uint32_t epoch)
{
    if (out == NULL) return MQE2E_ERR_INVALID_ARG;
    *out = 0;
    if (db == NULL) return MQE2E_ERR_INVALID_ARG;
    int rc = check_str(name, MQE2E_ADB_NAME_MAX);
    if (rc != MQE2E_OK) return rc;
    store_stmt *st = NULL;
    rc = prep(db, &st,
              "SELECT grace_seconds FROM group_epochs WHERE group_name = ?1 AND epoch = ?2");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, name);
    if (rc == MQE2E_OK) rc = bind_u64(st, 2, epoch);
    if (store_one_row(&rc, st)) {
        uint64_t g = col_u64(st, 0);
        *out = g > UINT32_MAX ? UINT32_MAX : (uint32_t)g;
    }
    store_finish(db->store, st);
    return rc;
}

#define GROUP_SELECT                                                                               \
    "SELECT name, topic_filter, current_epoch, rotate_every_seconds, rotate_every_messages,"       \
    " last_rotated_at, signed FROM \"groups\""

static int group_from_row(mqe2e_adb_group *g, store_stmt *st)
{
    memset(g, 0, sizeof *g);
    int rc = col_text(g->name, sizeof g->name, st, 0);
    if (rc == MQE2E_OK) rc = col_text(g->topic_filter, sizeof g->topic_filter, st, 1);
    uint64_t e = col_u64(st, 2);
    if (e > UINT32_MAX) rc = MQE2E_ERR_IO;
    g->current_epoch = (uint32_t)e;
    g->rotate_every_seconds = col_u64(st, 3);
    g->rotate_every_messages = col_u64(st, 4);
    g->last_rotated_at = col_u64(st, 5);
    g->is_signed = (int)store_col_i64(st, 6) != 0;
    return rc;
}

int mqe2e_adb_group_get(mqe2e_adb_group *out, mqe2e_adb *db, const char *name)
{
    if (out == NULL || db == NULL) return MQE2E_ERR_INVALID_ARG;
    int rc = check_str(name, MQE2E_ADB_NAME_MAX);
    if (rc != MQE2E_OK) return rc;
    store_stmt *st = NULL;
    rc = prep(db, &st, GROUP_SELECT " WHERE name = ?1");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, name);
    if (store_one_row(&rc, st)) rc = group_from_row(out, st);
    store_finish(db->store, st);
    return rc;
}

int mqe2e_adb_group_list(mqe2e_adb *db, mqe2e_adb_group_cb cb, void *user)
{
    if (db == NULL || cb == NULL) return MQE2E_ERR_INVALID_ARG;
    store_stmt *st = NULL;
    int rc = prep(db, &st, GROUP_SELECT " ORDER BY name");
    while (store_next_row(&rc, st)) {
        mqe2e_adb_group g;
        rc = group_from_row(&g, st);
        if (rc == MQE2E_OK) rc = cb(&g, user);
    }
    store_finish(db->store, st);
    return rc;
}

int mqe2e_adb_group_epoch_secret(uint8_t out_secret[MQE2E_ADB_SECRET_BYTES], mqe2e_adb *db,
                                 const char *name, uint32_t epoch)
{
    if (out_secret == NULL) return MQE2E_ERR_INVALID_ARG;
    sodium_memzero(out_secret, MQE2E_ADB_SECRET_BYTES);
    if (db == NULL) return MQE2E_ERR_INVALID_ARG;
    int rc = check_str(name, MQE2E_ADB_NAME_MAX);
    if (rc != MQE2E_OK) return rc;
    uint8_t ad[AD_MAX];
    size_t ad_len = authority_ad_epoch(ad, name, epoch);
    store_stmt *st = NULL;
    rc = prep(db, &st, "SELECT secret FROM group_epochs WHERE group_name = ?1 AND epoch = ?2");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, name);
    if (rc == MQE2E_OK) rc = bind_u64(st, 2, epoch);
    if (store_one_row(&rc, st)) rc = unseal_col(db, out_secret, st, 0, ad, ad_len);
    store_finish(db->store, st);
    if (rc != MQE2E_OK) sodium_memzero(out_secret, MQE2E_ADB_SECRET_BYTES);
    return rc;
}

static int group_exists(mqe2e_adb *db, const char *name)
{
    store_stmt *st = NULL;
    int rc = prep(db, &st, "SELECT 1 FROM \"groups\" WHERE name = ?1");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, name);
    (void)store_one_row(&rc, st);
    store_finish(db->store, st);
    return rc;
}

int mqe2e_adb_group_epochs_list(mqe2e_adb *db, const char *name, mqe2e_adb_epoch_cb cb, void *user)
{
    if (db == NULL || cb == NULL) return MQE2E_ERR_INVALID_ARG;
    int rc = check_str(name, MQE2E_ADB_NAME_MAX);
    if (rc == MQE2E_OK) rc = group_exists(db, name);
    if (rc != MQE2E_OK) return rc;
    store_stmt *st = NULL;
    rc = prep(db, &st,
              "SELECT epoch, created_at, retired_at FROM group_epochs WHERE group_name = ?1"
              " ORDER BY epoch");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, name);
    while (store_next_row(&rc, st)) {
        rc = cb((uint32_t)col_u64(st, 0), col_u64(st, 1), col_u64(st, 2), user);
    }
    store_finish(db->store, st);
    return rc;
}

int mqe2e_adb_groups_due_for_rotation(mqe2e_adb *db, uint64_t now, mqe2e_adb_name_cb cb, void *user)
{
    if (db == NULL || cb == NULL) return MQE2E_ERR_INVALID_ARG;
    if (check_u64(now) != MQE2E_OK) return MQE2E_ERR_INVALID_ARG;
    namelist names = {0};
    store_stmt *st = NULL;
    /* Written as a difference so huge intervals cannot overflow, and a clock
     * that went backwards (last_rotated_at > now) is not "due". */
    int rc = prep(db, &st,
                  "SELECT name FROM \"groups\" WHERE rotate_every_seconds > 0"
                  " AND last_rotated_at <= ?1 AND rotate_every_seconds <= ?1 - last_rotated_at"
                  " ORDER BY name");
    if (rc == MQE2E_OK) rc = bind_u64(st, 1, now);
    if (rc == MQE2E_OK) rc = namelist_collect(&names, st);
    store_finish(db->store, st);
    for (size_t i = 0; rc == MQE2E_OK && i < names.n; i++)
        rc = cb(names.v[i], user);
    namelist_free(&names);
    return rc;
}

/* ----------------------------------------------------------------- members */

static int client_status(int *out_active, mqe2e_adb *db, const char *client_id)
{
    store_stmt *st = NULL;
    int rc = prep(db, &st, "SELECT status FROM clients WHERE client_id = ?1");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, client_id);
    if (store_one_row(&rc, st)) {
        const char *s = store_col_text(st, 0, NULL);
        *out_active = s != NULL && strcmp(s, "active") == 0;
    }
    store_finish(db->store, st);
    return rc;
}

/* The group's next sender id, taken: ids only grow, so no id is handed out
 * twice within the group's life, whoever left the group since (a departed
 * member's id would let a newcomer seal under its key and nonces: docs/PROTOCOL.md
 * section 3). Runs inside the caller's transaction. */
static int take_sender_id(uint64_t *out, mqe2e_adb *db, const char *group)
{
    store_stmt *st = NULL;
    int rc = prep(db, &st,
                  "UPDATE \"groups\" SET next_sender_id = next_sender_id + 1 WHERE name = ?1"
                  " RETURNING next_sender_id - 1");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, group);
    if (rc == MQE2E_OK) {
        rc = store_step(st);
        if (rc == 1) {
            *out = col_u64(st, 0);
            rc = authority_sender_id_check(*out);
        } else if (rc == 0) {
            rc = MQE2E_ERR_NOT_FOUND;
        }
    }
    /* RETURNING rows are produced before the statement completes: finish it. */
    if (rc == MQE2E_OK && store_step(st) != 0) rc = MQE2E_ERR_IO;
    store_finish(db->store, st);
    return rc;
}

int mqe2e_adb_member_add(uint32_t *out_sender_id, mqe2e_adb *db, const char *group,
                         const char *client_id, uint64_t now)
{
    if (out_sender_id != NULL) *out_sender_id = 0;
    if (db == NULL) return MQE2E_ERR_INVALID_ARG;
    int rc = check_str(group, MQE2E_ADB_NAME_MAX);
    if (rc == MQE2E_OK) rc = check_str(client_id, MQE2E_ADB_NAME_MAX);
    if (rc == MQE2E_OK) rc = check_u64(now);
    if (rc != MQE2E_OK) return rc;
    int active = 0;
    uint64_t id = 0;
    store_stmt *st = NULL;

    rc = op_begin(db);
    if (rc != MQE2E_OK) return MQE2E_ERR_IO;
    rc = group_exists(db, group);
    if (rc == MQE2E_OK) rc = client_status(&active, db, client_id);
    if (rc == MQE2E_OK && !active) rc = MQE2E_ERR_STATE;
    if (rc == MQE2E_OK)
        rc = prep(db, &st,
                  "SELECT sender_id FROM group_members WHERE group_name = ?1 AND client_id = ?2");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, group);
    if (rc == MQE2E_OK) rc = bind_text(st, 2, client_id);
    if (rc == MQE2E_OK) {
        rc = store_step(st);
        if (rc == 1) {
            id = col_u64(st, 0);
            rc = MQE2E_ERR_EXISTS;
        }
    }
    store_finish(db->store, st);
    st = NULL;
    if (rc == MQE2E_OK) rc = take_sender_id(&id, db, group);

    /* now 0 backdates the membership (every epoch in grace is its): no
     * joined epoch then. */
    if (rc == MQE2E_OK)
        rc = prep(db, &st,
                  "INSERT INTO group_members(group_name, client_id, sender_id, added_at,"
                  " joined_epoch) VALUES (?1, ?2, ?3, ?4, CASE WHEN ?4 = 0 THEN 0 ELSE"
                  " (SELECT current_epoch FROM \"groups\" WHERE name = ?1) END)");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, group);
    if (rc == MQE2E_OK) rc = bind_text(st, 2, client_id);
    if (rc == MQE2E_OK) rc = bind_u64(st, 3, id);
    if (rc == MQE2E_OK) rc = bind_u64(st, 4, now);
    if (rc == MQE2E_OK) rc = step_done(st);
    store_finish(db->store, st);
    rc = op_end(db, rc);
    if ((rc == MQE2E_OK || rc == MQE2E_ERR_EXISTS) && out_sender_id != NULL && id <= UINT32_MAX)
        *out_sender_id = (uint32_t)id;
    return rc;
}

int mqe2e_adb_member_remove(mqe2e_adb *db, const char *group, const char *client_id)
{
    if (db == NULL) return MQE2E_ERR_INVALID_ARG;
    int rc = check_str(group, MQE2E_ADB_NAME_MAX);
    if (rc == MQE2E_OK) rc = check_str(client_id, MQE2E_ADB_NAME_MAX);
    if (rc != MQE2E_OK) return rc;
    store_stmt *st = NULL;
    rc = prep(db, &st, "DELETE FROM group_members WHERE group_name = ?1 AND client_id = ?2");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, group);
    if (rc == MQE2E_OK) rc = bind_text(st, 2, client_id);
    if (rc == MQE2E_OK) rc = step_done(st);
    if (rc == MQE2E_OK && store_changes(st) == 0) rc = MQE2E_ERR_NOT_FOUND;
    store_finish(db->store, st);
    return rc;
}

/* Rows (name, sender_id, added_at, joined_epoch) to cb or, if NULL, to ecb. */
static int member_rows(store_stmt *st, mqe2e_adb_member_cb cb, mqe2e_adb_membership_cb ecb,
                       void *user)
{
    int rc = MQE2E_OK;
    while (rc == MQE2E_OK) {
        int r = store_step(st);
        if (r <= 0) return r;
        const char *s = store_col_text(st, 0, NULL);
        if (s == NULL) return MQE2E_ERR_IO;
        uint64_t joined = col_u64(st, 3);
        if (cb != NULL)
            rc = cb(s, (uint32_t)col_u64(st, 1), col_u64(st, 2), user);
        else
            rc = ecb(s, (uint32_t)col_u64(st, 1), col_u64(st, 2),
                     joined <= UINT32_MAX ? (uint32_t)joined : 0U, user);
    }
    return rc;
}

int mqe2e_adb_epoch_was_members(uint32_t epoch, uint64_t retired_at, uint64_t added_at,
                                uint32_t joined_epoch)
{
    if (retired_at == 0) return 1;
    if (joined_epoch != 0) return epoch >= joined_epoch;
    return retired_at > added_at;
}

static int members_list(mqe2e_adb *db, const char *group, mqe2e_adb_member_cb cb,
                        mqe2e_adb_membership_cb ecb, void *user)
{
    if (db == NULL || (cb == NULL && ecb == NULL)) return MQE2E_ERR_INVALID_ARG;
    int rc = check_str(group, MQE2E_ADB_NAME_MAX);
    if (rc == MQE2E_OK) rc = group_exists(db, group);
    if (rc != MQE2E_OK) return rc;
    store_stmt *st = NULL;
    rc = prep(db, &st,
              "SELECT client_id, sender_id, added_at, joined_epoch FROM group_members"
              " WHERE group_name = ?1 ORDER BY sender_id");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, group);
    if (rc == MQE2E_OK) rc = member_rows(st, cb, ecb, user);
    store_finish(db->store, st);
    return rc;
}

static int groups_of_client(mqe2e_adb *db, const char *client_id, mqe2e_adb_member_cb cb,
                            mqe2e_adb_membership_cb ecb, void *user)
{
    if (db == NULL || (cb == NULL && ecb == NULL)) return MQE2E_ERR_INVALID_ARG;
    int rc = check_str(client_id, MQE2E_ADB_NAME_MAX);
    if (rc != MQE2E_OK) return rc;
    store_stmt *st = NULL;
    rc = prep(db, &st,
              "SELECT group_name, sender_id, added_at, joined_epoch FROM group_members"
              " WHERE client_id = ?1 ORDER BY group_name");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, client_id);
    if (rc == MQE2E_OK) rc = member_rows(st, cb, ecb, user);
    store_finish(db->store, st);
    return rc;
}

int mqe2e_adb_members_list(mqe2e_adb *db, const char *group, mqe2e_adb_member_cb cb, void *user)
{
    return cb != NULL ? members_list(db, group, cb, NULL, user) : MQE2E_ERR_INVALID_ARG;
}

int mqe2e_adb_members_list_ex(mqe2e_adb *db, const char *group, mqe2e_adb_membership_cb cb,
                              void *user)
{
    return cb != NULL ? members_list(db, group, NULL, cb, user) : MQE2E_ERR_INVALID_ARG;
}

int mqe2e_adb_groups_of_client(mqe2e_adb *db, const char *client_id, mqe2e_adb_member_cb cb,
                               void *user)
{
    return cb != NULL ? groups_of_client(db, client_id, cb, NULL, user) : MQE2E_ERR_INVALID_ARG;
}

int mqe2e_adb_groups_of_client_ex(mqe2e_adb *db, const char *client_id, mqe2e_adb_membership_cb cb,
                                  void *user)
{
    return cb != NULL ? groups_of_client(db, client_id, NULL, cb, user) : MQE2E_ERR_INVALID_ARG;
}

/* ------------------------------------------------------------- revocations */

int mqe2e_adb_revocation_version(uint64_t *out_version, mqe2e_adb *db)
{
    if (out_version == NULL || db == NULL) return MQE2E_ERR_INVALID_ARG;
    *out_version = 0;
    return meta_get_u64(out_version, db, "revocation_version");
}

int mqe2e_adb_revocations_list(uint64_t *out_version, mqe2e_adb *db, mqe2e_adb_revocation_cb cb,
                               void *user)
{
    if (out_version != NULL) *out_version = 0;
    if (db == NULL || cb == NULL) return MQE2E_ERR_INVALID_ARG;
    uint64_t version = 0;
    store_stmt *st = NULL;
    int rc = read_begin(db);
    if (rc != MQE2E_OK) return MQE2E_ERR_IO;
    rc = meta_get_u64(&version, db, "revocation_version");
    if (rc == MQE2E_OK)
        rc = prep(db, &st,
                  "SELECT client_id, serial, revoked_at FROM revocations"
                  " ORDER BY revoked_at, client_id, serial");
    while (store_next_row(&rc, st)) {
        const char *s = store_col_text(st, 0, NULL);
        if (s == NULL) {
            rc = MQE2E_ERR_IO;
            break;
        }
        rc = cb(s, col_u64(st, 1), col_u64(st, 2), user);
    }
    store_finish(db->store, st);
    /* A callback's stop value is not a failure of the read: keep its code. */
    int end = op_end(db, rc < 0 ? rc : MQE2E_OK);
    if (end != MQE2E_OK) return end;
    if (out_version != NULL) *out_version = version;
    return rc;
}

/* --------------------------------------------------------------- operators */

int mqe2e_adb_operator_add(mqe2e_adb *db, const char *name,
                           const uint8_t sign_public[MQE2E_ADB_PUBLIC_BYTES], uint64_t now)
{
    if (db == NULL || sign_public == NULL) return MQE2E_ERR_INVALID_ARG;
    int rc = check_str(name, MQE2E_ADB_NAME_MAX);
    if (rc == MQE2E_OK) rc = check_u64(now);
    if (rc != MQE2E_OK) return rc;
    store_stmt *st = NULL;
    rc = prep(db, &st, "INSERT INTO operators(name, sign_public, added_at) VALUES (?1, ?2, ?3)");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, name);
    if (rc == MQE2E_OK) rc = bind_blob(st, 2, sign_public, MQE2E_ADB_PUBLIC_BYTES);
    if (rc == MQE2E_OK) rc = bind_u64(st, 3, now);
    if (rc == MQE2E_OK) rc = step_done(st);
    store_finish(db->store, st);
    return rc;
}

int mqe2e_adb_operator_get(uint8_t out_sign_public[MQE2E_ADB_PUBLIC_BYTES], uint64_t *out_added_at,
                           mqe2e_adb *db, const char *name)
{
    if (out_sign_public == NULL || db == NULL) return MQE2E_ERR_INVALID_ARG;
    if (out_added_at != NULL) *out_added_at = 0;
    int rc = check_str(name, MQE2E_ADB_NAME_MAX);
    if (rc != MQE2E_OK) return rc;
    store_stmt *st = NULL;
    rc = prep(db, &st, "SELECT sign_public, added_at FROM operators WHERE name = ?1");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, name);
    if (store_one_row(&rc, st)) {
        rc = col_blob(out_sign_public, MQE2E_ADB_PUBLIC_BYTES, st, 0);
        if (out_added_at != NULL) *out_added_at = col_u64(st, 1);
    }
    store_finish(db->store, st);
    return rc;
}

int mqe2e_adb_operator_remove(mqe2e_adb *db, const char *name)
{
    if (db == NULL) return MQE2E_ERR_INVALID_ARG;
    int rc = check_str(name, MQE2E_ADB_NAME_MAX);
    if (rc != MQE2E_OK) return rc;
    store_stmt *st = NULL;
    rc = prep(db, &st, "DELETE FROM operators WHERE name = ?1");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, name);
    if (rc == MQE2E_OK) rc = step_done(st);
    if (rc == MQE2E_OK && store_changes(st) == 0) rc = MQE2E_ERR_NOT_FOUND;
    store_finish(db->store, st);
    return rc;
}

int mqe2e_adb_op_nonce_check_and_store(mqe2e_adb *db, const uint8_t *nonce, size_t nonce_len,
                                       uint64_t now)
{
    if (db == NULL || nonce == NULL || nonce_len < MQE2E_ADB_NONCE_MIN ||
        nonce_len > MQE2E_ADB_NONCE_MAX || check_u64(now) != MQE2E_OK)
        return MQE2E_ERR_INVALID_ARG;
    store_stmt *st = NULL;
    /* One INSERT: the primary key makes check-and-store a single atomic step. */
    int rc = prep(db, &st, "INSERT INTO op_nonces(nonce, seen_at) VALUES (?1, ?2)");
    if (rc == MQE2E_OK) rc = bind_blob(st, 1, nonce, nonce_len);
    if (rc == MQE2E_OK) rc = bind_u64(st, 2, now);
    if (rc == MQE2E_OK) rc = step_done(st);
    store_finish(db->store, st);
    return rc;
}

int mqe2e_adb_op_nonce_prune(uint64_t *out_deleted, mqe2e_adb *db, uint64_t older_than)
{
    if (out_deleted != NULL) *out_deleted = 0;
    if (db == NULL || check_u64(older_than) != MQE2E_OK) return MQE2E_ERR_INVALID_ARG;
    store_stmt *st = NULL;
    int rc = prep(db, &st, "DELETE FROM op_nonces WHERE seen_at < ?1");
    if (rc == MQE2E_OK) rc = bind_u64(st, 1, older_than);
    if (rc == MQE2E_OK) rc = step_done(st);
    if (rc == MQE2E_OK && out_deleted != NULL) *out_deleted = (uint64_t)store_changes(st);
    store_finish(db->store, st);
    return rc;
}

/* ------------------------------------------------------------------- audit */

int mqe2e_adb_audit_append(mqe2e_adb *db, uint64_t at, const char *actor, const char *action,
                           const char *subject)
{
    if (db == NULL) return MQE2E_ERR_INVALID_ARG;
    int rc = check_str(actor, MQE2E_ADB_TEXT_MAX);
    if (rc == MQE2E_OK) rc = check_str(action, MQE2E_ADB_TEXT_MAX);
    if (rc == MQE2E_OK && subject != NULL &&
        strnlen(subject, MQE2E_ADB_TEXT_MAX) >= MQE2E_ADB_TEXT_MAX)
        rc = MQE2E_ERR_TOO_LARGE;
    if (rc == MQE2E_OK) rc = check_u64(at);
    if (rc != MQE2E_OK) return rc;
    store_stmt *st = NULL;
    rc = prep(db, &st, "INSERT INTO audit(at, actor, action, subject) VALUES (?1, ?2, ?3, ?4)");
    if (rc == MQE2E_OK) rc = bind_u64(st, 1, at);
    if (rc == MQE2E_OK) rc = bind_text(st, 2, actor);
    if (rc == MQE2E_OK) rc = bind_text(st, 3, action);
    if (rc == MQE2E_OK) rc = subject != NULL ? bind_text(st, 4, subject) : store_bind_null(st, 4);
    if (rc == MQE2E_OK) rc = step_done(st);
    store_finish(db->store, st);
    return rc;
}

int mqe2e_adb_audit_list(mqe2e_adb *db, int64_t after_id, mqe2e_adb_audit_cb cb, void *user)
{
    if (db == NULL || cb == NULL) return MQE2E_ERR_INVALID_ARG;
    store_stmt *st = NULL;
    int rc =
        prep(db, &st, "SELECT id, at, actor, action, subject FROM audit WHERE id > ?1 ORDER BY id");
    if (rc == MQE2E_OK) rc = store_bind_i64(st, 1, after_id);
    while (store_next_row(&rc, st)) {
        const char *actor = store_col_text(st, 2, NULL);
        const char *action = store_col_text(st, 3, NULL);
        const char *subject = store_col_text(st, 4, NULL);
        if (actor == NULL || action == NULL) {
            rc = MQE2E_ERR_IO;
            break;
        }
        rc = cb(store_col_i64(st, 0), col_u64(st, 1), (const char *)actor, (const char *)action,
                (const char *)subject, user);
    }
    store_finish(db->store, st);
    return rc;
}

/* ------------------------------------------------------------------ status */

static int count_query(uint64_t *out, mqe2e_adb *db, const char *sql, int bind_now, uint64_t now)
{
    store_stmt *st = NULL;
    int rc = prep(db, &st, sql);
    if (rc == MQE2E_OK && bind_now) rc = bind_u64(st, 1, now);
    if (rc == MQE2E_OK) {
        rc = store_step(st);
        if (rc == 1) {
            *out = col_u64(st, 0);
            rc = MQE2E_OK;
        } else if (rc == 0) {
            rc = MQE2E_ERR_IO;
        }
    }
    store_finish(db->store, st);
    return rc;
}

int mqe2e_adb_status_get(mqe2e_adb_status *out, mqe2e_adb *db, uint64_t now)
{
    if (out == NULL || db == NULL || check_u64(now) != MQE2E_OK) return MQE2E_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    int rc = read_begin(db);
    if (rc != MQE2E_OK) return MQE2E_ERR_IO;
    rc = count_query(&out->clients_active, db,
                     "SELECT COUNT(*) FROM clients WHERE status = 'active'", 0, 0);
    if (rc == MQE2E_OK)
        rc = count_query(&out->clients_revoked, db,
                         "SELECT COUNT(*) FROM clients WHERE status = 'revoked'", 0, 0);
    if (rc == MQE2E_OK)
        rc = count_query(&out->tokens_unused, db,
                         "SELECT COUNT(*) FROM tokens WHERE used_at IS NULL AND expires_at > ?1", 1,
                         now);
    if (rc == MQE2E_OK) rc = count_query(&out->groups, db, "SELECT COUNT(*) FROM \"groups\"", 0, 0);
    if (rc == MQE2E_OK) rc = meta_get_u64(&out->revocation_version, db, "revocation_version");
    rc = op_end(db, rc);
    if (rc != MQE2E_OK) memset(out, 0, sizeof *out);
    return rc;
}

/* ---------------------------------------------------------- push counters */

int mqe2e_adb_client_push_seq_next(uint64_t *out, mqe2e_adb *db, const char *client_id)
{
    if (out == NULL || db == NULL) return MQE2E_ERR_INVALID_ARG;
    *out = 0;
    int rc = check_str(client_id, MQE2E_ADB_NAME_MAX);
    if (rc != MQE2E_OK) return rc;
    store_stmt *st = NULL;
    if (op_begin(db) != MQE2E_OK) return MQE2E_ERR_IO;
    rc = prep(db, &st,
              "UPDATE clients SET push_seq = push_seq + 1 WHERE client_id = ?1"
              " AND push_seq < 9223372036854775807 RETURNING push_seq");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, client_id);
    if (rc == MQE2E_OK) {
        rc = store_step(st);
        if (rc == 0)
            rc = mqe2e_adb_client_push_seq(out, db, client_id) == MQE2E_OK ? MQE2E_ERR_EXHAUSTED
                                                                           : MQE2E_ERR_NOT_FOUND;
        if (rc == 1) {
            *out = col_u64(st, 0);
            rc = store_step(st) == 0 ? MQE2E_OK : MQE2E_ERR_IO;
        }
    }
    store_finish(db->store, st);
    rc = op_end(db, rc);
    if (rc != MQE2E_OK) *out = 0;
    return rc;
}

int mqe2e_adb_client_push_seq(uint64_t *out, mqe2e_adb *db, const char *client_id)
{
    if (out == NULL || db == NULL) return MQE2E_ERR_INVALID_ARG;
    *out = 0;
    int rc = check_str(client_id, MQE2E_ADB_NAME_MAX);
    if (rc != MQE2E_OK) return rc;
    store_stmt *st = NULL;
    rc = prep(db, &st, "SELECT push_seq FROM clients WHERE client_id = ?1");
    if (rc == MQE2E_OK) rc = bind_text(st, 1, client_id);
    if (store_one_row(&rc, st)) {
        *out = col_u64(st, 0);
    }
    store_finish(db->store, st);
    return rc;
}

/* ------------------------------------------------------------ token groups */

int mqe2e_adb_token_group_add(mqe2e_adb *db, const uint8_t token_id[MQE2E_ADB_TOKEN_ID_BYTES],
                              const char *group)
{
    if (db == NULL || token_id == NULL) return MQE2E_ERR_INVALID_ARG;
    int rc = check_str(group, MQE2E_ADB_NAME_MAX);
    if (rc != MQE2E_OK) return rc;
    store_stmt *st = NULL;
    if (op_begin(db) != MQE2E_OK) return MQE2E_ERR_IO;
    rc = prep(db, &st, "INSERT INTO token_groups(token_id, group_name) VALUES (?1, ?2)");
    if (rc == MQE2E_OK) rc = bind_blob(st, 1, token_id, MQE2E_ADB_TOKEN_ID_BYTES);
    if (rc == MQE2E_OK) rc = bind_text(st, 2, group);
    if (rc == MQE2E_OK) rc = step_done(st);
    store_finish(db->store, st);
    return op_end(db, rc);
}

int mqe2e_adb_token_groups_list(mqe2e_adb *db, const uint8_t token_id[MQE2E_ADB_TOKEN_ID_BYTES],
                                mqe2e_adb_name_cb cb, void *user)
{
    if (db == NULL || token_id == NULL || cb == NULL) return MQE2E_ERR_INVALID_ARG;
    store_stmt *st = NULL;
    int rc = prep(db, &st,
                  "SELECT group_name FROM token_groups WHERE token_id = ?1 ORDER BY group_name");
    if (rc == MQE2E_OK) rc = bind_blob(st, 1, token_id, MQE2E_ADB_TOKEN_ID_BYTES);
    while (store_next_row(&rc, st)) {
        char name[MQE2E_ADB_NAME_MAX];
        rc = col_text(name, sizeof name, st, 0);
        if (rc == MQE2E_OK) rc = cb(name, user);
    }
    store_finish(db->store, st);
    return rc;
}

int mqe2e_adb_token_list(mqe2e_adb *db, mqe2e_adb_token_cb cb, void *user)
{
    if (db == NULL || cb == NULL) return MQE2E_ERR_INVALID_ARG;
    store_stmt *st = NULL;
    int rc = prep(db, &st,
                  "SELECT token_id, client_id, role, created_at, expires_at, used_at,"
                  " used_by_sign_public FROM tokens ORDER BY created_at, client_id, token_id");
    while (store_next_row(&rc, st)) {
        uint8_t token_id[MQE2E_ADB_TOKEN_ID_BYTES];
        mqe2e_adb_token_info info;
        memset(&info, 0, sizeof info);
        rc = col_blob(token_id, sizeof token_id, st, 0);
        if (rc == MQE2E_OK) rc = col_text(info.client_id, sizeof info.client_id, st, 1);
        if (rc == MQE2E_OK) rc = col_text(info.role, sizeof info.role, st, 2);
        info.created_at = col_u64(st, 3);
        info.expires_at = col_u64(st, 4);
        if (rc == MQE2E_OK && store_col_type(st, 5) != STORE_COL_NULL) {
            info.used = 1;
            info.used_at = col_u64(st, 5);
            rc = col_blob(info.used_by_sign_public, MQE2E_ADB_PUBLIC_BYTES, st, 6);
        }
        if (rc == MQE2E_OK) rc = cb(token_id, &info, user);
    }
    store_finish(db->store, st);
    return rc;
}

/* ------------------------------------------------------ pre-handshake checks */

/* One row or none from a statement bound to one text (kept prepared by prep()). */
static int known(mqe2e_adb *db, const char *sql, const char *text)
{
    store_stmt *st = NULL;
    if (db == NULL || text == NULL) return MQE2E_ERR_INVALID_ARG;
    if (check_str(text, MQE2E_ADB_NAME_MAX) != MQE2E_OK) return MQE2E_ERR_NOT_FOUND;
    int rc = prep(db, &st, sql);
    if (rc == MQE2E_OK) rc = bind_text(st, 1, text);
    if (rc == MQE2E_OK) {
        rc = store_step(st);
        rc = rc == 1 ? MQE2E_OK : (rc == 0 ? MQE2E_ERR_NOT_FOUND : rc);
    }
    store_finish(db->store, st);
    return rc;
}

int mqe2e_adb_token_known_client(mqe2e_adb *db, const char *client_id)
{
    return known(db, "SELECT 1 FROM tokens WHERE client_id = ?1 LIMIT 1", client_id);
}

int mqe2e_adb_client_known(mqe2e_adb *db, const char *client_id)
{
    return known(db, "SELECT 1 FROM clients WHERE client_id = ?1", client_id);
}

int mqe2e_adb_tx_savepoint(mqe2e_adb *db)
{
    if (db == NULL) return MQE2E_ERR_INVALID_ARG;
    if (!db->user_tx) return MQE2E_ERR_STATE;
    return tx_exec(db, "SAVEPOINT adb_unit") == MQE2E_OK ? MQE2E_OK : MQE2E_ERR_IO;
}

int mqe2e_adb_tx_savepoint_end(mqe2e_adb *db, int keep)
{
    if (db == NULL) return MQE2E_ERR_INVALID_ARG;
    if (!db->user_tx) return MQE2E_ERR_STATE;
    int rc = MQE2E_OK;
    if (!keep && tx_exec(db, "ROLLBACK TO SAVEPOINT adb_unit") != MQE2E_OK) rc = MQE2E_ERR_IO;
    if (tx_exec(db, "RELEASE SAVEPOINT adb_unit") != MQE2E_OK) rc = MQE2E_ERR_IO;
    return rc;
}

int mqe2e_adb_retired_senders_list(mqe2e_adb *db, mqe2e_adb_member_cb cb, void *user)
{
    if (db == NULL || cb == NULL) return MQE2E_ERR_INVALID_ARG;
    store_stmt *st = NULL;
    int rc = read_begin(db);
    if (rc != MQE2E_OK) return MQE2E_ERR_IO;
    rc = prep(db, &st,
              "SELECT group_name, sender_id, retired_at FROM retired_senders"
              " ORDER BY group_name, sender_id");
    while (store_next_row(&rc, st)) {
        const char *g = store_col_text(st, 0, NULL);
        uint64_t id = col_u64(st, 1);
        if (g == NULL || id == 0 || id > UINT32_MAX) {
            rc = MQE2E_ERR_IO;
            break;
        }
        rc = cb((const char *)g, (uint32_t)id, col_u64(st, 2), user);
    }
    store_finish(db->store, st);
    int end = op_end(db, rc < 0 ? rc : MQE2E_OK);
    if (end != MQE2E_OK) return end;
    return rc;
}
