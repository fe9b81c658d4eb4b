/* Authority database: persistence, single-use tokens, sealed secrets, sender
 * ids, revocation, operator nonces, audit, crash and restart behaviour. */
#include <criterion/criterion.h>
#include <signal.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "authority_db.h"
#include "authority_tree_db.h"
#include "mqe2e/error.h"
#include "adb_testutil.h"
#include "testutil.h"

static char *dir;
static char path[4096];
static uint8_t key[MQE2E_ADB_KEY_BYTES];
static uint8_t dev_a[MQE2E_ADB_PUBLIC_BYTES];
static uint8_t dev_b[MQE2E_ADB_PUBLIC_BYTES];

static void setup(void)
{
    cr_assert(sodium_init() >= 0);
    dir = tu_tempdir();
    snprintf(path, sizeof path, "%s/authority.db", dir);
    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (uint8_t)(0x40 + i);
    memset(dev_a, 0xA1, sizeof dev_a);
    memset(dev_b, 0xB2, sizeof dev_b);
}

static void teardown(void)
{
    tu_rmtree(dir);
    free(dir);
}

TestSuite(authority_db, .init = setup, .fini = teardown);

static mqe2e_adb *open_db(void)
{
    mqe2e_adb *db = NULL;
    cr_assert_eq(mqe2e_adb_open(&db, path, key), MQE2E_OK);
    cr_assert_not_null(db);
    return db;
}

static void fill(uint8_t *b, size_t n, uint8_t v)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(v + i);
}

static mqe2e_adb_grant grant(const char *filter, uint32_t rights)
{
    mqe2e_adb_grant g;
    memset(&g, 0, sizeof g);
    snprintf(g.filter, sizeof g.filter, "%s", filter);
    g.rights = rights;
    return g;
}

/* Raw SQL on the closed database file, as an attacker with file access would. */
static void raw_exec(const char *sql)
{
    sqlite3 *s = NULL;
    cr_assert_eq(sqlite3_open(path, &s), SQLITE_OK);
    char *err = NULL;
    int rc = sqlite3_exec(s, sql, NULL, NULL, &err);
    cr_assert_eq(rc, SQLITE_OK, "raw sql failed: %s", err ? err : "?");
    cr_assert_gt(sqlite3_changes(s), 0, "raw sql changed nothing: %s", sql);
    sqlite3_close(s);
}

/* Flip one byte of a stored sealed epoch secret. */
static void raw_flip_epoch_byte(const char *group, int epoch, int offset)
{
    sqlite3 *s = NULL;
    sqlite3_stmt *st = NULL;
    uint8_t blob[128];
    cr_assert_eq(sqlite3_open(path, &s), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(s,
                                    "SELECT secret FROM group_epochs WHERE group_name = ?1"
                                    " AND epoch = ?2",
                                    -1, &st, NULL),
                 SQLITE_OK);
    sqlite3_bind_text(st, 1, group, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, epoch);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_bytes(st, 0);
    cr_assert(n > offset && n <= (int)sizeof blob);
    memcpy(blob, sqlite3_column_blob(st, 0), (size_t)n);
    sqlite3_finalize(st);
    blob[offset] ^= 0x01;
    cr_assert_eq(sqlite3_prepare_v2(s,
                                    "UPDATE group_epochs SET secret = ?3 WHERE group_name = ?1"
                                    " AND epoch = ?2",
                                    -1, &st, NULL),
                 SQLITE_OK);
    sqlite3_bind_text(st, 1, group, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, epoch);
    sqlite3_bind_blob(st, 3, blob, n, SQLITE_STATIC);
    cr_assert_eq(sqlite3_step(st), SQLITE_DONE);
    cr_assert_eq(sqlite3_changes(s), 1);
    sqlite3_finalize(st);
    sqlite3_close(s);
}

static int64_t raw_int(const char *sql)
{
    sqlite3 *s = NULL;
    sqlite3_stmt *st = NULL;
    cr_assert_eq(sqlite3_open(path, &s), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(s, sql, -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(s);
    return v;
}

static int contains(const uint8_t *hay, size_t n, const uint8_t *needle, size_t m)
{
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(hay + i, needle, m) == 0) return 1;
    return 0;
}

/* Does the database file or its WAL contain these bytes anywhere? */
static int file_contains(const uint8_t *needle, size_t m)
{
    static const char *suffix[] = {"", "-wal"};
    for (size_t k = 0; k < 2; k++) {
        char p[4200];
        snprintf(p, sizeof p, "%s%s", path, suffix[k]);
        size_t n = 0;
        char *data = tu_read_file(p, &n);
        if (data == NULL) continue;
        int hit = contains((const uint8_t *)data, n, needle, m);
        free(data);
        if (hit) return 1;
    }
    return 0;
}

/* ------------------------------------------------------------- callbacks */

typedef struct names {
    char v[1100][64];
    uint32_t ids[1100];
    size_t n;
} names;

static int collect_name(const char *name, void *user)
{
    names *l = user;
    cr_assert_lt(l->n, 1100);
    snprintf(l->v[l->n++], sizeof l->v[0], "%s", name);
    return 0;
}

static int collect_member(const char *name, uint32_t sender_id, uint64_t added_at, void *user)
{
    (void)added_at;
    names *l = user;
    cr_assert_lt(l->n, 1100);
    l->ids[l->n] = sender_id;
    snprintf(l->v[l->n++], sizeof l->v[0], "%s", name);
    return 0;
}

typedef struct epochs {
    uint32_t epoch[8];
    uint64_t created[8], retired[8];
    size_t n;
} epochs;

static int collect_epoch(uint32_t epoch, uint64_t created_at, uint64_t retired_at, void *user)
{
    epochs *e = user;
    cr_assert_lt(e->n, 8);
    e->epoch[e->n] = epoch;
    e->created[e->n] = created_at;
    e->retired[e->n++] = retired_at;
    return 0;
}

typedef struct grants {
    mqe2e_adb_grant g[8];
    size_t n;
} grants;

static int collect_grant(const mqe2e_adb_grant *g, void *user)
{
    grants *l = user;
    cr_assert_lt(l->n, 8);
    l->g[l->n++] = *g;
    return 0;
}

typedef struct revs {
    char id[8][64];
    uint64_t serial[8];
    size_t n;
} revs;

static int collect_rev(const char *client_id, uint64_t serial, uint64_t at, void *user)
{
    (void)at;
    revs *r = user;
    cr_assert_lt(r->n, 8);
    r->serial[r->n] = serial;
    snprintf(r->id[r->n++], sizeof r->id[0], "%s", client_id);
    return 0;
}

typedef struct audit_scan {
    const uint8_t *secret;
    size_t rows;
    int leaked;
} audit_scan;

static int scan_audit(int64_t id, uint64_t at, const char *actor, const char *action,
                      const char *subject, void *user)
{
    (void)id;
    (void)at;
    audit_scan *a = user;
    const char *f[3] = {actor, action, subject};
    for (size_t i = 0; i < 3; i++)
        if (f[i] != NULL &&
            contains((const uint8_t *)f[i], strlen(f[i]), a->secret, MQE2E_ADB_SECRET_BYTES))
            a->leaked = 1;
    a->rows++;
    return 0;
}

static int count_clients(const mqe2e_adb_client *c, void *user)
{
    (void)c;
    (*(size_t *)user)++;
    return 0;
}

static int count_groups(const mqe2e_adb_group *g, void *user)
{
    (void)g;
    (*(size_t *)user)++;
    return 0;
}

static int stop_at_first(const mqe2e_adb_client *c, void *user)
{
    (void)c;
    (void)user;
    return 7;
}

/* ------------------------------------------------------------------ tests */

Test(authority_db, schema_created_and_state_survives_reopen)
{
    uint8_t tid[16], sec[32], gsec[32], op[32], got[32];
    fill(tid, sizeof tid, 1);
    fill(sec, sizeof sec, 0x11);
    fill(gsec, sizeof gsec, 0x22);
    fill(op, sizeof op, 0x33);
    mqe2e_adb_grant g[2] = {grant("sensors/+/temp", MQE2E_ADB_RIGHT_PUBLISH),
                            grant("cmd/dev1", MQE2E_ADB_RIGHT_SUBSCRIBE)};

    mqe2e_adb *db = open_db();
    cr_assert_eq(mqe2e_adb_token_create(db, tid, sec, "dev1", "sensor", g, 2, 10, 1000), MQE2E_OK);
    adb_test_enroll(db, "dev9", 0x09);
    mqe2e_adb_group_settings gs = {3600, 1000000, 1};
    cr_assert_eq(mqe2e_adb_group_create(db, "temps", "sensors/+/temp", &gs, 50, gsec), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_member_add(NULL, db, "temps", "dev9", 60), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_operator_add(db, "alice", op, 70), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_audit_append(db, 80, "alice", "token.create", "dev1"), MQE2E_OK);
    mqe2e_adb_close(db);

    cr_assert_eq(raw_int("PRAGMA user_version"), MQE2E_ADB_SCHEMA_VERSION);

    db = open_db();
    mqe2e_adb_token_info info;
    cr_assert_eq(mqe2e_adb_token_peek(got, &info, db, tid), MQE2E_OK);
    cr_assert_arr_eq(got, sec, 32);
    cr_assert_str_eq(info.client_id, "dev1");
    cr_assert_str_eq(info.role, "sensor");
    cr_assert_eq(info.used, 0);
    cr_assert_eq(info.n_grants, 2);
    cr_assert_str_eq(info.grants[0].filter, "cmd/dev1"); /* ordered by filter */
    cr_assert_eq(info.grants[0].rights, MQE2E_ADB_RIGHT_SUBSCRIBE);
    cr_assert_eq(info.expires_at, 1000);

    mqe2e_adb_client c;
    cr_assert_eq(mqe2e_adb_client_get(&c, db, "dev9"), MQE2E_OK);
    cr_assert_eq(c.status, MQE2E_ADB_CLIENT_ACTIVE);
    cr_assert_eq(c.credential_serial, 1);
    cr_assert_eq(c.sign_public[0], 0x09);

    mqe2e_adb_group grp;
    cr_assert_eq(mqe2e_adb_group_get(&grp, db, "temps"), MQE2E_OK);
    cr_assert_str_eq(grp.topic_filter, "sensors/+/temp");
    cr_assert_eq(grp.current_epoch, 1);
    cr_assert_eq(grp.rotate_every_seconds, 3600);
    cr_assert_eq(grp.rotate_every_messages, 1000000);
    cr_assert_eq(grp.is_signed, 1);
    cr_assert_eq(mqe2e_adb_group_epoch_secret(got, db, "temps", 1), MQE2E_OK);
    cr_assert_arr_eq(got, gsec, 32);

    names m = {0};
    cr_assert_eq(mqe2e_adb_members_list(db, "temps", collect_member, &m), MQE2E_OK);
    cr_assert_eq(m.n, 1);
    cr_assert_str_eq(m.v[0], "dev9");
    cr_assert_eq(m.ids[0], 1);

    uint8_t opk[32];
    uint64_t added = 0;
    cr_assert_eq(mqe2e_adb_operator_get(opk, &added, db, "alice"), MQE2E_OK);
    cr_assert_arr_eq(opk, op, 32);
    cr_assert_eq(added, 70);

    audit_scan a = {sec, 0, 0};
    cr_assert_eq(mqe2e_adb_audit_list(db, 0, scan_audit, &a), MQE2E_OK);
    cr_assert_eq(a.rows, 1);
    mqe2e_adb_close(db);
    sodium_memzero(got, sizeof got);
}

Test(authority_db, journal_is_wal_and_file_is_private)
{
    mqe2e_adb *db = open_db();
    mqe2e_adb_close(db);
    sqlite3 *s = NULL;
    sqlite3_stmt *st = NULL;
    cr_assert_eq(sqlite3_open(path, &s), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(s, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(s);
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_eq(sb.st_mode & 077, 0, "database readable by group/others");
}

Test(authority_db, token_is_single_use_with_idempotent_retry)
{
    uint8_t tid[16], sec[32], got[32];
    fill(tid, sizeof tid, 2);
    fill(sec, sizeof sec, 0x55);
    mqe2e_adb_grant g = grant("a/#", MQE2E_ADB_RIGHT_PUBLISH | MQE2E_ADB_RIGHT_SUBSCRIBE);
    mqe2e_adb *db = open_db();
    cr_assert_eq(mqe2e_adb_token_create(db, tid, sec, "dev1", "sensor", &g, 1, 10, 100), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_token_create(db, tid, sec, "dev1", "sensor", &g, 1, 10, 100),
                 MQE2E_ERR_EXISTS);

    mqe2e_adb_token_info info;
    cr_assert_eq(mqe2e_adb_token_consume(got, &info, db, tid, dev_a, dev_a, 20), MQE2E_OK);
    cr_assert_arr_eq(got, sec, 32);
    cr_assert_str_eq(info.client_id, "dev1");
    cr_assert_eq(info.n_grants, 1);
    cr_assert_eq(info.grants[0].rights, 3);
    cr_assert_eq(info.used, 1);

    /* Another device: refused, nothing returned. */
    cr_assert_eq(mqe2e_adb_token_consume(got, NULL, db, tid, dev_b, dev_b, 21), MQE2E_ERR_STATE);
    uint8_t zero[32] = {0};
    cr_assert_arr_eq(got, zero, 32);

    /* The same keys retrying shortly after (and after a restart): same answer. */
    mqe2e_adb_close(db);
    db = open_db();
    cr_assert_eq(mqe2e_adb_token_consume(got, &info, db, tid, dev_a, dev_a, 50), MQE2E_OK);
    cr_assert_arr_eq(got, sec, 32);
    cr_assert_eq(info.used_at, 20);
    cr_assert_eq(info.retry, 1);
    cr_assert_arr_eq(info.used_by_sign_public, dev_a, 32);
    cr_assert_arr_eq(info.used_by_dh_public, dev_a, 32);
    cr_assert_eq(mqe2e_adb_token_consume(got, NULL, db, tid, dev_b, dev_b, 22), MQE2E_ERR_STATE);
    /* The device's Ed25519 key is public: with another X25519 key it is a
     * hijack, refused (issue 11, item 2). */
    cr_assert_eq(mqe2e_adb_token_consume(got, NULL, db, tid, dev_a, dev_b, 23), MQE2E_ERR_STATE);
    cr_assert_arr_eq(got, zero, 32);
    /* Past expiry even the same keys get nothing. */
    cr_assert_eq(mqe2e_adb_token_consume(got, NULL, db, tid, dev_a, dev_a, 500), MQE2E_ERR_EXPIRED);

    mqe2e_adb_status s;
    cr_assert_eq(mqe2e_adb_status_get(&s, db, 30), MQE2E_OK);
    cr_assert_eq(s.tokens_unused, 0);
    mqe2e_adb_close(db);
    sodium_memzero(got, sizeof got);
}

Test(authority_db, used_token_retry_window_is_short)
{
    uint8_t tid[16], sec[32], got[32];
    fill(tid, sizeof tid, 0x21);
    fill(sec, sizeof sec, 0x22);
    mqe2e_adb *db = open_db();
    cr_assert_eq(mqe2e_adb_token_create(db, tid, sec, "dev1", "r", NULL, 0, 10, 100000), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_token_consume(got, NULL, db, tid, dev_a, dev_b, 20), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_token_consume(got, NULL, db, tid, dev_a, dev_b,
                                         20 + MQE2E_ADB_ENROLL_RETRY_SECONDS),
                 MQE2E_OK);
    cr_assert_eq(mqe2e_adb_token_consume(got, NULL, db, tid, dev_a, dev_b,
                                         21 + MQE2E_ADB_ENROLL_RETRY_SECONDS),
                 MQE2E_ERR_STATE);
    /* A clock that went back does not reopen it either. */
    cr_assert_eq(mqe2e_adb_token_consume(got, NULL, db, tid, dev_a, dev_b, 19), MQE2E_ERR_STATE);
    mqe2e_adb_close(db);
    sodium_memzero(got, sizeof got);
}

Test(authority_db, tokens_for_active_and_revoked_ids)
{
    uint8_t tid[16], sec[32], sp[32], dh[32], sp2[32], dh2[32];
    fill(tid, sizeof tid, 0x31);
    fill(sec, sizeof sec, 0x32);
    memset(sp, 1, sizeof sp);
    memset(dh, 0xFE, sizeof dh);
    memset(sp2, 3, sizeof sp2);
    memset(dh2, 0xFC, sizeof dh2);
    mqe2e_adb *db = open_db();
    /* --replace needs an active id. */
    cr_assert_eq(mqe2e_adb_token_create_flags(db, tid, sec, "c", "r", NULL, 0, 1, 9999,
                                              MQE2E_ADB_TOKEN_REPLACE),
                 MQE2E_ERR_NOT_FOUND);
    adb_test_enroll(db, "c", 1);
    /* An active id: a plain token is refused, a --replace one is made. */
    cr_assert_eq(mqe2e_adb_token_create(db, tid, sec, "c", "r", NULL, 0, 1, 9999),
                 MQE2E_ERR_EXISTS);
    cr_assert_eq(mqe2e_adb_token_create_flags(db, tid, sec, "c", "r", NULL, 0, 1, 9999,
                                              MQE2E_ADB_TOKEN_REPLACE),
                 MQE2E_OK);
    mqe2e_adb_token_info info;
    uint8_t got[32];
    cr_assert_eq(mqe2e_adb_token_peek(got, &info, db, tid), MQE2E_OK);
    cr_assert_eq(info.replaces, 1);
    /* Other keys for an active id only through client_replace. */
    cr_assert_eq(mqe2e_adb_client_upsert_enrolled(NULL, db, "c", "r", sp2, dh2, NULL, 0, 5, 99),
                 MQE2E_ERR_EXISTS);
    cr_assert_eq(mqe2e_adb_group_create(db, "g", "a/#", NULL, 1, sec), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_member_add(NULL, db, "g", "c", 2), MQE2E_OK);
    mqe2e_adb_client before, after;
    cr_assert_eq(mqe2e_adb_client_get(&before, db, "c"), MQE2E_OK);
    static names affected;
    memset(&affected, 0, sizeof affected);
    cr_assert_eq(mqe2e_adb_client_replace(db, "c", sp2, dh2, 10, collect_name, &affected),
                 MQE2E_OK);
    cr_assert_eq(affected.n, 1);
    cr_assert_str_eq(affected.v[0], "g");
    uint64_t serial = 0;
    cr_assert_eq(mqe2e_adb_client_upsert_enrolled(&serial, db, "c", "r", sp2, dh2, NULL, 0, 10, 99),
                 MQE2E_OK);
    cr_assert_gt(serial, before.credential_serial);
    cr_assert_eq(mqe2e_adb_client_get(&after, db, "c"), MQE2E_OK);
    cr_assert_eq(after.status, MQE2E_ADB_CLIENT_ACTIVE);
    cr_assert_arr_eq(after.dh_public, dh2, 32);
    static names of;
    memset(&of, 0, sizeof of);
    cr_assert_eq(mqe2e_adb_groups_of_client(db, "c", collect_member, &of), MQE2E_OK);
    cr_assert_eq(of.n, 0);
    /* The old credentials are listed by the serial they reached. */
    static revs r;
    memset(&r, 0, sizeof r);
    uint64_t v = 0;
    cr_assert_eq(mqe2e_adb_revocations_list(&v, db, collect_rev, &r), MQE2E_OK);
    cr_assert_eq(v, 1);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(r.serial[0], before.credential_serial);

    /* Revoked: final. No token of any kind, no re-enrollment. */
    cr_assert_eq(mqe2e_adb_client_revoke(db, "c", 20, NULL, NULL), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_token_peek(got, NULL, db, tid), MQE2E_ERR_NOT_FOUND);
    uint8_t tid2[16];
    fill(tid2, sizeof tid2, 0x41);
    cr_assert_eq(mqe2e_adb_token_create(db, tid2, sec, "c", "r", NULL, 0, 1, 9999),
                 MQE2E_ERR_STATE);
    cr_assert_eq(mqe2e_adb_token_create_flags(db, tid2, sec, "c", "r", NULL, 0, 1, 9999,
                                              MQE2E_ADB_TOKEN_REPLACE),
                 MQE2E_ERR_STATE);
    cr_assert_eq(mqe2e_adb_client_upsert_enrolled(NULL, db, "c", "r", sp2, dh2, NULL, 0, 30, 99),
                 MQE2E_ERR_STATE);
    cr_assert_eq(mqe2e_adb_client_replace(db, "c", sp, dh, 30, NULL, NULL), MQE2E_ERR_STATE);
    cr_assert_eq(mqe2e_adb_client_get(&after, db, "c"), MQE2E_OK);
    cr_assert_eq(after.status, MQE2E_ADB_CLIENT_REVOKED);
    mqe2e_adb_close(db);
    sodium_memzero(got, sizeof got);
}

Test(authority_db, expired_and_unknown_tokens_refused)
{
    uint8_t tid[16], other[16], sec[32], got[32];
    fill(tid, sizeof tid, 3);
    fill(other, sizeof other, 4);
    fill(sec, sizeof sec, 0x66);
    mqe2e_adb *db = open_db();
    cr_assert_eq(mqe2e_adb_token_create(db, tid, sec, "dev1", "r", NULL, 0, 10, 100), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_token_consume(got, NULL, db, tid, dev_a, dev_a, 100), MQE2E_ERR_EXPIRED);
    cr_assert_eq(mqe2e_adb_token_consume(got, NULL, db, tid, dev_a, dev_a, 5000),
                 MQE2E_ERR_EXPIRED);
    cr_assert_eq(mqe2e_adb_token_consume(got, NULL, db, other, dev_a, dev_a, 20),
                 MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_adb_token_peek(got, NULL, db, other), MQE2E_ERR_NOT_FOUND);

    /* The refusal did not consume it: one second earlier it still works. */
    mqe2e_adb_token_info info;
    cr_assert_eq(mqe2e_adb_token_peek(got, &info, db, tid), MQE2E_OK);
    cr_assert_eq(info.used, 0);
    cr_assert_eq(mqe2e_adb_token_consume(got, NULL, db, tid, dev_a, dev_a, 99), MQE2E_OK);

    /* Bad arguments. */
    cr_assert_eq(mqe2e_adb_token_create(db, other, sec, "dev1", "r", NULL, 0, 100, 100),
                 MQE2E_ERR_INVALID_ARG);
    mqe2e_adb_grant bad = grant("x", 4);
    cr_assert_eq(mqe2e_adb_token_create(db, other, sec, "dev1", "r", &bad, 1, 1, 100),
                 MQE2E_ERR_INVALID_ARG);
    mqe2e_adb_grant many[MQE2E_ADB_GRANTS_MAX + 1];
    for (size_t i = 0; i < MQE2E_ADB_GRANTS_MAX + 1; i++)
        many[i] = grant("x", 1);
    cr_assert_eq(
        mqe2e_adb_token_create(db, other, sec, "dev1", "r", many, MQE2E_ADB_GRANTS_MAX + 1, 1, 100),
        MQE2E_ERR_TOO_LARGE);
    char longname[MQE2E_ADB_NAME_MAX + 1];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    cr_assert_eq(mqe2e_adb_token_create(db, other, sec, longname, "r", NULL, 0, 1, 100),
                 MQE2E_ERR_TOO_LARGE);
    cr_assert_eq(mqe2e_adb_token_create(db, other, sec, "", "r", NULL, 0, 1, 100),
                 MQE2E_ERR_INVALID_ARG);

    uint64_t pruned = 0;
    cr_assert_eq(mqe2e_adb_token_prune(&pruned, db, 100), MQE2E_OK);
    cr_assert_eq(pruned, 1);
    cr_assert_eq(mqe2e_adb_token_peek(got, NULL, db, tid), MQE2E_ERR_NOT_FOUND);
    mqe2e_adb_close(db);
}

Test(authority_db, secrets_are_sealed_and_bound_to_the_key)
{
    uint8_t tid[16], sec[32], gsec[32];
    fill(tid, sizeof tid, 5);
    fill(sec, sizeof sec, 0x77);
    fill(gsec, sizeof gsec, 0x88);
    mqe2e_adb *db = open_db();
    cr_assert_eq(mqe2e_adb_token_create(db, tid, sec, "dev1", "r", NULL, 0, 1, 100), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_group_create(db, "g", "t/#", NULL, 1, gsec), MQE2E_OK);
    cr_assert_not(file_contains(sec, sizeof sec), "token secret stored in clear");
    cr_assert_not(file_contains(gsec, sizeof gsec), "group secret stored in clear");
    mqe2e_adb_close(db);
    cr_assert_not(file_contains(sec, sizeof sec));
    cr_assert_not(file_contains(gsec, sizeof gsec));

    uint8_t wrong[32];
    memcpy(wrong, key, sizeof wrong);
    wrong[31] ^= 1;
    mqe2e_adb *bad = NULL;
    cr_assert_eq(mqe2e_adb_open(&bad, path, wrong), MQE2E_ERR_AUTH);
    cr_assert_null(bad);

    /* The right key still opens everything. */
    uint8_t got[32];
    db = open_db();
    cr_assert_eq(mqe2e_adb_token_peek(got, NULL, db, tid), MQE2E_OK);
    cr_assert_arr_eq(got, sec, 32);
    mqe2e_adb_close(db);
}

Test(authority_db, ciphertext_moved_between_rows_fails)
{
    uint8_t t1[16], t2[16], s1[32], s2[32], g1[32], g2[32], got[32], zero[32] = {0};
    fill(t1, sizeof t1, 0x10);
    fill(t2, sizeof t2, 0x20);
    fill(s1, sizeof s1, 0x30);
    fill(s2, sizeof s2, 0x40);
    fill(g1, sizeof g1, 0x50);
    fill(g2, sizeof g2, 0x60);
    mqe2e_adb *db = open_db();
    cr_assert_eq(mqe2e_adb_token_create(db, t1, s1, "dev1", "r", NULL, 0, 1, 100), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_token_create(db, t2, s2, "dev2", "r", NULL, 0, 1, 100), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_group_create(db, "ga", "a/#", NULL, 1, g1), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_group_create(db, "gb", "b/#", NULL, 1, g2), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_group_rotate(NULL, db, "ga", g2, 2), MQE2E_OK);
    mqe2e_adb_close(db);

    /* token t2's sealed secret copied into t1's row */
    raw_exec("UPDATE tokens SET token_secret = (SELECT token_secret FROM tokens"
             " WHERE token_id = x'202122232425262728292a2b2c2d2e2f')"
             " WHERE token_id = x'101112131415161718191a1b1c1d1e1f'");
    /* ga epoch 2 sealed secret copied over ga epoch 1 (another epoch) */
    raw_exec("UPDATE group_epochs SET secret = (SELECT secret FROM group_epochs"
             " WHERE group_name = 'ga' AND epoch = 2) WHERE group_name = 'ga' AND epoch = 1");
    /* ga epoch 2 copied over gb epoch 1 (another group) */
    raw_exec("UPDATE group_epochs SET secret = (SELECT secret FROM group_epochs"
             " WHERE group_name = 'ga' AND epoch = 2) WHERE group_name = 'gb' AND epoch = 1");

    db = open_db();
    memset(got, 0xEE, sizeof got);
    cr_assert_eq(mqe2e_adb_token_consume(got, NULL, db, t1, dev_a, dev_a, 10), MQE2E_ERR_AUTH);
    cr_assert_arr_eq(got, zero, 32);
    cr_assert_eq(mqe2e_adb_token_peek(got, NULL, db, t1), MQE2E_ERR_AUTH);
    mqe2e_adb_token_info info;
    cr_assert_eq(mqe2e_adb_token_peek(got, &info, db, t2), MQE2E_OK);
    cr_assert_arr_eq(got, s2, 32);
    cr_assert_eq(mqe2e_adb_group_epoch_secret(got, db, "ga", 1), MQE2E_ERR_AUTH);
    cr_assert_arr_eq(got, zero, 32);
    cr_assert_eq(mqe2e_adb_group_epoch_secret(got, db, "gb", 1), MQE2E_ERR_AUTH);
    cr_assert_eq(mqe2e_adb_group_epoch_secret(got, db, "ga", 2), MQE2E_OK);
    cr_assert_arr_eq(got, g2, 32);
    mqe2e_adb_close(db);

    /* A failed consume left the token unused. */
    cr_assert_eq(raw_int("SELECT COUNT(*) FROM tokens WHERE used_at IS NULL"), 2);

    /* One flipped ciphertext byte. */
    raw_flip_epoch_byte("ga", 2, 40);
    db = open_db();
    cr_assert_eq(mqe2e_adb_group_epoch_secret(got, db, "ga", 2), MQE2E_ERR_AUTH);
    mqe2e_adb_close(db);
}

Test(authority_db, group_create_rotate_and_epochs)
{
    uint8_t s1[32], s2[32], s3[32], got[32];
    fill(s1, sizeof s1, 1);
    fill(s2, sizeof s2, 2);
    fill(s3, sizeof s3, 3);
    mqe2e_adb *db = open_db();
    mqe2e_adb_group_settings gs = {100, 0, 0};
    cr_assert_eq(mqe2e_adb_group_create(db, "g", "t/#", &gs, 1000, s1), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_group_create(db, "g", "t/#", &gs, 1000, s1), MQE2E_ERR_EXISTS);
    cr_assert_eq(mqe2e_adb_group_create(db, "never", "n/#", NULL, 1000, s1), MQE2E_OK);

    names due = {0};
    cr_assert_eq(mqe2e_adb_groups_due_for_rotation(db, 1099, collect_name, &due), MQE2E_OK);
    cr_assert_eq(due.n, 0);
    cr_assert_eq(mqe2e_adb_groups_due_for_rotation(db, 1100, collect_name, &due), MQE2E_OK);
    cr_assert_eq(due.n, 1);
    cr_assert_str_eq(due.v[0], "g");
    /* A clock that went backwards is not a reason to rotate. */
    due.n = 0;
    cr_assert_eq(mqe2e_adb_groups_due_for_rotation(db, 10, collect_name, &due), MQE2E_OK);
    cr_assert_eq(due.n, 0);

    uint32_t e = 0;
    cr_assert_eq(mqe2e_adb_group_rotate(&e, db, "g", s2, 1100), MQE2E_OK);
    cr_assert_eq(e, 2);
    due.n = 0;
    cr_assert_eq(mqe2e_adb_groups_due_for_rotation(db, 1150, collect_name, &due), MQE2E_OK);
    cr_assert_eq(due.n, 0);
    cr_assert_eq(mqe2e_adb_group_rotate(&e, db, "g", s3, 1200), MQE2E_OK);
    cr_assert_eq(e, 3);
    cr_assert_eq(mqe2e_adb_group_rotate(&e, db, "nope", s3, 1200), MQE2E_ERR_NOT_FOUND);

    mqe2e_adb_group g;
    cr_assert_eq(mqe2e_adb_group_get(&g, db, "g"), MQE2E_OK);
    cr_assert_eq(g.current_epoch, 3);
    cr_assert_eq(g.last_rotated_at, 1200);

    epochs ep = {0};
    cr_assert_eq(mqe2e_adb_group_epochs_list(db, "g", collect_epoch, &ep), MQE2E_OK);
    cr_assert_eq(ep.n, 3);
    cr_assert_eq(ep.epoch[0], 1);
    cr_assert_eq(ep.retired[0], 1100);
    cr_assert_eq(ep.epoch[1], 2);
    cr_assert_eq(ep.created[1], 1100);
    cr_assert_eq(ep.retired[1], 1200);
    cr_assert_eq(ep.epoch[2], 3);
    cr_assert_eq(ep.retired[2], 0);
    cr_assert_eq(mqe2e_adb_group_epochs_list(db, "nope", collect_epoch, &ep), MQE2E_ERR_NOT_FOUND);

    const uint8_t *want[3] = {s1, s2, s3};
    for (uint32_t i = 1; i <= 3; i++) {
        cr_assert_eq(mqe2e_adb_group_epoch_secret(got, db, "g", i), MQE2E_OK);
        cr_assert_arr_eq(got, want[i - 1], 32);
    }
    cr_assert_eq(mqe2e_adb_group_epoch_secret(got, db, "g", 4), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_adb_group_epoch_secret(got, db, "nope", 1), MQE2E_ERR_NOT_FOUND);

    size_t ngroups = 0;
    cr_assert_eq(mqe2e_adb_group_list(db, count_groups, &ngroups), MQE2E_OK);
    cr_assert_eq(ngroups, 2);
    mqe2e_adb_close(db);
    sodium_memzero(got, sizeof got);
}

Test(authority_db, sender_ids_unique_and_never_reused)
{
    uint8_t s[32];
    fill(s, sizeof s, 9);
    mqe2e_adb *db = open_db();
    cr_assert_eq(mqe2e_adb_group_create(db, "g", "t/#", NULL, 1, s), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_group_create(db, "h", "u/#", NULL, 1, s), MQE2E_OK);
    char id[16];
    for (int i = 1; i <= 6; i++) {
        snprintf(id, sizeof id, "c%d", i);
        adb_test_enroll(db, id, (uint8_t)i);
    }
    uint32_t sid = 0;
    for (uint32_t i = 1; i <= 5; i++) {
        snprintf(id, sizeof id, "c%u", i);
        cr_assert_eq(mqe2e_adb_member_add(&sid, db, "g", id, 10), MQE2E_OK);
        cr_assert_eq(sid, i);
    }
    /* Ids are per group. */
    cr_assert_eq(mqe2e_adb_member_add(&sid, db, "h", "c5", 10), MQE2E_OK);
    cr_assert_eq(sid, 1);

    cr_assert_eq(mqe2e_adb_member_add(&sid, db, "g", "c3", 10), MQE2E_ERR_EXISTS);
    cr_assert_eq(sid, 3);
    cr_assert_eq(mqe2e_adb_member_add(&sid, db, "g", "ghost", 10), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_adb_member_add(&sid, db, "nope", "c1", 10), MQE2E_ERR_NOT_FOUND);

    cr_assert_eq(mqe2e_adb_member_remove(db, "g", "c4"), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_member_remove(db, "g", "c2"), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_member_remove(db, "g", "c2"), MQE2E_ERR_NOT_FOUND);
    /* Ids of departed members are never handed out again (docs/PROTOCOL.md
     * section 3): a newcomer under an old id would seal under its key. */
    cr_assert_eq(mqe2e_adb_member_add(&sid, db, "g", "c6", 10), MQE2E_OK);
    cr_assert_eq(sid, 6);
    cr_assert_eq(mqe2e_adb_member_add(&sid, db, "g", "c2", 10), MQE2E_OK);
    cr_assert_eq(sid, 7, "a member that comes back gets a new id");
    cr_assert_eq(mqe2e_adb_member_add(&sid, db, "g", "c4", 10), MQE2E_OK);
    cr_assert_eq(sid, 8);
    cr_assert_eq(mqe2e_adb_member_remove(db, "g", "c1"), MQE2E_OK);
    mqe2e_adb_close(db);
    db = open_db(); /* the counter is persisted state */
    cr_assert_eq(mqe2e_adb_member_add(&sid, db, "g", "c1", 10), MQE2E_OK);
    cr_assert_eq(sid, 9);

    names m = {0};
    cr_assert_eq(mqe2e_adb_members_list(db, "g", collect_member, &m), MQE2E_OK);
    cr_assert_eq(m.n, 6);
    static const uint32_t want[] = {3, 5, 6, 7, 8, 9};
    for (size_t i = 0; i < m.n; i++)
        cr_assert_eq(m.ids[i], want[i]); /* ordered, unique, none reused */

    names of = {0};
    cr_assert_eq(mqe2e_adb_groups_of_client(db, "c5", collect_member, &of), MQE2E_OK);
    cr_assert_eq(of.n, 2);
    cr_assert_str_eq(of.v[0], "g");
    cr_assert_eq(of.ids[0], 5);
    cr_assert_str_eq(of.v[1], "h");
    cr_assert_eq(of.ids[1], 1);
    mqe2e_adb_close(db);
}

/* Ids only grow, whatever deletes run in between: grant rewrites at
 * re-enrollment, member removals, a removal of the highest id. */
Test(authority_db, sender_ids_never_reused_across_deletes)
{
    uint8_t s[32], sp[32] = {1}, dh[32] = {2};
    fill(s, sizeof s, 7);
    mqe2e_adb *db = open_db();
    cr_assert_eq(mqe2e_adb_group_create(db, "g", "t/#", NULL, 1, s), MQE2E_OK);
    char id[16];
    uint32_t sid = 0;
    for (uint32_t i = 1; i <= 6; i++) {
        snprintf(id, sizeof id, "c%u", i);
        adb_test_enroll(db, id, (uint8_t)i);
    }
    for (uint32_t i = 1; i <= 4; i++) {
        snprintf(id, sizeof id, "c%u", i);
        cr_assert_eq(mqe2e_adb_member_add(&sid, db, "g", id, 10), MQE2E_OK);
        cr_assert_eq(sid, i);
    }
    /* Re-enrolling c1 (a renewal with its keys) deletes and rewrites its
     * grants: ids stay dense. */
    memset(sp, 1, sizeof sp);
    memset(dh, 1 ^ 0xFF, sizeof dh);
    mqe2e_adb_grant g = grant("t/#", MQE2E_ADB_RIGHT_PUBLISH);
    uint64_t serial = 0;
    cr_assert_eq(mqe2e_adb_client_upsert_enrolled(&serial, db, "c1", "r", sp, dh, &g, 1, 2, 99),
                 MQE2E_OK);
    cr_assert_eq(mqe2e_adb_member_add(&sid, db, "g", "c5", 10), MQE2E_OK);
    cr_assert_eq(sid, 5);
    /* A removed member leaves a gap that stays empty. */
    cr_assert_eq(mqe2e_adb_member_remove(db, "g", "c2"), MQE2E_OK);
    memset(sp, 3, sizeof sp);
    memset(dh, 3 ^ 0xFF, sizeof dh);
    cr_assert_eq(mqe2e_adb_client_upsert_enrolled(&serial, db, "c3", "r", sp, dh, &g, 1, 3, 99),
                 MQE2E_OK);
    cr_assert_eq(mqe2e_adb_member_add(&sid, db, "g", "c6", 10), MQE2E_OK);
    cr_assert_eq(sid, 6);
    cr_assert_eq(mqe2e_adb_member_add(&sid, db, "g", "c2", 10), MQE2E_OK);
    cr_assert_eq(sid, 7);
    /* Nor is the highest id reused once its member left. */
    cr_assert_eq(mqe2e_adb_member_remove(db, "g", "c2"), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_member_add(&sid, db, "g", "c2", 10), MQE2E_OK);
    cr_assert_eq(sid, 8);
    names m = {0};
    cr_assert_eq(mqe2e_adb_members_list(db, "g", collect_member, &m), MQE2E_OK);
    cr_assert_eq(m.n, 6);
    static const uint32_t want[] = {1, 3, 4, 5, 6, 8};
    for (size_t i = 0; i < m.n; i++) cr_assert_eq(m.ids[i], want[i]);
    mqe2e_adb_close(db);
}

Test(authority_db, revoke_removes_memberships_and_is_recorded)
{
    uint8_t s[32], tid[16], sec[32], got[32];
    fill(s, sizeof s, 9);
    fill(tid, sizeof tid, 0x70);
    fill(sec, sizeof sec, 0x71);
    mqe2e_adb *db = open_db();
    adb_test_enroll(db, "bad", 1);
    adb_test_enroll(db, "good", 2);
    cr_assert_eq(mqe2e_adb_group_create(db, "g2", "b/#", NULL, 1, s), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_group_create(db, "g1", "a/#", NULL, 1, s), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_group_create(db, "g3", "c/#", NULL, 1, s), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_member_add(NULL, db, "g1", "bad", 5), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_member_add(NULL, db, "g2", "bad", 5), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_member_add(NULL, db, "g1", "good", 5), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_member_add(NULL, db, "g3", "good", 5), MQE2E_OK);
    /* A pending token for the client would let it re-enroll. */
    cr_assert_eq(mqe2e_adb_token_create_flags(db, tid, sec, "bad", "r", NULL, 0, 1, 10000,
                                              MQE2E_ADB_TOKEN_REPLACE),
                 MQE2E_OK);

    uint64_t v = 99;
    cr_assert_eq(mqe2e_adb_revocation_version(&v, db), MQE2E_OK);
    cr_assert_eq(v, 0);
    mqe2e_adb_client before;
    cr_assert_eq(mqe2e_adb_client_get(&before, db, "bad"), MQE2E_OK);

    names affected = {0};
    cr_assert_eq(mqe2e_adb_client_revoke(db, "bad", 500, collect_name, &affected), MQE2E_OK);
    cr_assert_eq(affected.n, 2);
    cr_assert_str_eq(affected.v[0], "g1");
    cr_assert_str_eq(affected.v[1], "g2");

    mqe2e_adb_close(db);
    db = open_db();
    mqe2e_adb_client c;
    cr_assert_eq(mqe2e_adb_client_get(&c, db, "bad"), MQE2E_OK);
    cr_assert_eq(c.status, MQE2E_ADB_CLIENT_REVOKED);
    cr_assert_eq(c.revoked_at, 500);
    names of = {0};
    cr_assert_eq(mqe2e_adb_groups_of_client(db, "bad", collect_member, &of), MQE2E_OK);
    cr_assert_eq(of.n, 0);
    names m = {0};
    cr_assert_eq(mqe2e_adb_members_list(db, "g1", collect_member, &m), MQE2E_OK);
    cr_assert_eq(m.n, 1);
    cr_assert_str_eq(m.v[0], "good");

    revs r = {0};
    cr_assert_eq(mqe2e_adb_revocations_list(&v, db, collect_rev, &r), MQE2E_OK);
    cr_assert_eq(v, 1);
    cr_assert_eq(r.n, 1);
    cr_assert_str_eq(r.id[0], "bad");
    cr_assert_eq(r.serial[0], 0); /* every credential it ever held */
    (void)before;
    cr_assert_eq(mqe2e_adb_token_peek(got, NULL, db, tid), MQE2E_ERR_NOT_FOUND);

    cr_assert_eq(mqe2e_adb_client_revoke(db, "bad", 600, NULL, NULL), MQE2E_ERR_STATE);
    cr_assert_eq(mqe2e_adb_client_revoke(db, "ghost", 600, NULL, NULL), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_adb_member_add(NULL, db, "g3", "bad", 700), MQE2E_ERR_STATE);
    cr_assert_eq(mqe2e_adb_revocation_version(&v, db), MQE2E_OK);
    cr_assert_eq(v, 1);

    mqe2e_adb_status st;
    cr_assert_eq(mqe2e_adb_status_get(&st, db, 700), MQE2E_OK);
    cr_assert_eq(st.clients_active, 1);
    cr_assert_eq(st.clients_revoked, 1);
    cr_assert_eq(st.groups, 3);
    cr_assert_eq(st.revocation_version, 1);

    /* Revocation is final: the client never becomes active again. */
    uint64_t serial = 0;
    uint8_t sp[32], dh[32];
    memset(sp, 0x0F, sizeof sp);
    memset(dh, 0xF0, sizeof dh);
    cr_assert_eq(
        mqe2e_adb_client_upsert_enrolled(&serial, db, "bad", "device", sp, dh, NULL, 0, 800, 9000),
        MQE2E_ERR_STATE);
    cr_assert_eq(mqe2e_adb_client_get(&c, db, "bad"), MQE2E_OK);
    cr_assert_eq(c.status, MQE2E_ADB_CLIENT_REVOKED);
    r.n = 0;
    cr_assert_eq(mqe2e_adb_revocations_list(NULL, db, collect_rev, &r), MQE2E_OK);
    cr_assert_eq(r.n, 1);
    mqe2e_adb_close(db);
}

/* Issue 11: the sender ids a revoked or replaced device held go on the
 * revocation list, per group; those of active members do not. */
Test(authority_db, revoked_and_replaced_sender_ids_are_retired)
{
    uint8_t s[32];
    fill(s, sizeof s, 9);
    mqe2e_adb *db = open_db();
    adb_test_enroll(db, "bad", 1);
    adb_test_enroll(db, "good", 2);
    adb_test_enroll(db, "old", 3);
    cr_assert_eq(mqe2e_adb_group_create(db, "g1", "a/#", NULL, 1, s), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_group_create(db, "g2", "b/#", NULL, 1, s), MQE2E_OK);
    uint32_t bad1 = 0, bad2 = 0, good1 = 0, old1 = 0;
    cr_assert_eq(mqe2e_adb_member_add(&good1, db, "g1", "good", 5), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_member_add(&bad1, db, "g1", "bad", 5), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_member_add(&bad2, db, "g2", "bad", 5), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_member_add(&old1, db, "g1", "old", 5), MQE2E_OK);
    names none = {0};
    cr_assert_eq(mqe2e_adb_retired_senders_list(db, collect_member, &none), MQE2E_OK);
    cr_assert_eq(none.n, 0);

    cr_assert_eq(mqe2e_adb_client_revoke(db, "bad", 500, NULL, NULL), MQE2E_OK);
    uint8_t sp[32], dh[32];
    memset(sp, 0x0F, sizeof sp);
    memset(dh, 0xF0, sizeof dh);
    cr_assert_eq(mqe2e_adb_client_replace(db, "old", sp, dh, 600, NULL, NULL), MQE2E_OK);
    mqe2e_adb_close(db);
    db = open_db();
    names r = {0};
    cr_assert_eq(mqe2e_adb_retired_senders_list(db, collect_member, &r), MQE2E_OK);
    cr_assert_eq(r.n, 3);
    cr_assert_str_eq(r.v[0], "g1");
    cr_assert_str_eq(r.v[1], "g1");
    cr_assert_str_eq(r.v[2], "g2");
    cr_assert_eq(r.ids[0], bad1 < old1 ? bad1 : old1);
    cr_assert_eq(r.ids[1], bad1 < old1 ? old1 : bad1);
    cr_assert_eq(r.ids[2], bad2);
    cr_assert_neq(r.ids[0], good1);
    cr_assert_neq(r.ids[1], good1);
    /* The replaced device's successor gets a fresh id, never a retired one. */
    uint32_t again = 0;
    cr_assert_eq(mqe2e_adb_member_add(&again, db, "g1", "old", 700), MQE2E_OK);
    cr_assert_gt(again, old1);
    cr_assert_gt(again, bad1);
    mqe2e_adb_close(db);
}

typedef struct joins {
    char v[8][64];
    uint32_t joined[8];
    size_t n;
} joins;

static int collect_join(const char *name, uint32_t sender_id, uint64_t added_at,
                        uint32_t joined_epoch, void *user)
{
    (void)sender_id;
    (void)added_at;
    joins *j = user;
    cr_assert_lt(j->n, 8);
    j->joined[j->n] = joined_epoch;
    snprintf(j->v[j->n++], sizeof j->v[0], "%s", name);
    return 0;
}

/* Issue 11 (second-granularity edge): a membership records the epoch current
 * when it began, and which retired epochs were the member's is decided by
 * epoch number: an epoch retired in the very second the member joined is
 * its when it was current at the join. */
Test(authority_db, joined_epoch_orders_join_and_retirement)
{
    uint8_t s[32], s2[32];
    fill(s, sizeof s, 9);
    fill(s2, sizeof s2, 10);
    mqe2e_adb *db = open_db();
    adb_test_enroll(db, "early", 1);
    adb_test_enroll(db, "same-second", 2);
    adb_test_enroll(db, "history", 3);
    cr_assert_eq(mqe2e_adb_group_create(db, "g", "a/#", NULL, 100, s), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_member_add(NULL, db, "g", "early", 100), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_member_add(NULL, db, "g", "same-second", 500), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_member_add(NULL, db, "g", "history", 0), MQE2E_OK);
    uint32_t e = 0;
    cr_assert_eq(mqe2e_adb_group_rotate(&e, db, "g", s2, 500), MQE2E_OK);
    cr_assert_eq(e, 2);
    joins j = {0};
    cr_assert_eq(mqe2e_adb_members_list_ex(db, "g", collect_join, &j), MQE2E_OK);
    cr_assert_eq(j.n, 3);
    cr_assert_str_eq(j.v[0], "early");
    cr_assert_eq(j.joined[0], 1);
    cr_assert_str_eq(j.v[1], "same-second");
    cr_assert_eq(j.joined[1], 1);
    cr_assert_str_eq(j.v[2], "history");
    cr_assert_eq(j.joined[2], 0);
    joins g = {0};
    cr_assert_eq(mqe2e_adb_groups_of_client_ex(db, "same-second", collect_join, &g), MQE2E_OK);
    cr_assert_eq(g.n, 1);
    cr_assert_eq(g.joined[0], 1);
    /* Epoch 1, retired at 500: the same-second member's (it was current at
     * the join), which the second alone could not tell. */
    cr_assert(mqe2e_adb_epoch_was_members(1, 500, 500, 1));
    cr_assert_not(mqe2e_adb_epoch_was_members(1, 500, 500, 0));
    /* A member that joined at epoch 2 never had epoch 1. */
    cr_assert_not(mqe2e_adb_epoch_was_members(1, 500, 500, 2));
    cr_assert_not(mqe2e_adb_epoch_was_members(1, 500, 501, 2));
    /* The current epoch is everyone's; unknown joins fall back to seconds. */
    cr_assert(mqe2e_adb_epoch_was_members(2, 0, 500, 2));
    cr_assert(mqe2e_adb_epoch_was_members(1, 500, 0, 0));
    cr_assert(mqe2e_adb_epoch_was_members(1, 501, 500, 0));
    /* A member added after the rotation joins at epoch 2. */
    adb_test_enroll(db, "late", 4);
    cr_assert_eq(mqe2e_adb_member_add(NULL, db, "g", "late", 500), MQE2E_OK);
    joins l = {0};
    cr_assert_eq(mqe2e_adb_groups_of_client_ex(db, "late", collect_join, &l), MQE2E_OK);
    cr_assert_eq(l.joined[0], 2);
    mqe2e_adb_close(db);
}

Test(authority_db, client_grants_and_listing)
{
    mqe2e_adb *db = open_db();
    mqe2e_adb_grant g[2] = {grant("b/#", MQE2E_ADB_RIGHT_PUBLISH),
                            grant("a/+", MQE2E_ADB_RIGHT_SUBSCRIBE)};
    uint8_t sp[32] = {1}, dh[32] = {2};
    uint64_t s1 = 0, s2 = 0;
    cr_assert_eq(mqe2e_adb_client_upsert_enrolled(&s1, db, "c", "r", sp, dh, g, 2, 1, 99),
                 MQE2E_OK);
    grants l = {0};
    cr_assert_eq(mqe2e_adb_grant_list(db, "c", collect_grant, &l), MQE2E_OK);
    cr_assert_eq(l.n, 2);
    cr_assert_str_eq(l.g[0].filter, "a/+");

    cr_assert_eq(mqe2e_adb_grant_add(db, "c", "a/+", MQE2E_ADB_RIGHT_PUBLISH), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_grant_add(db, "ghost", "a/+", 1), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_adb_grant_add(db, "c", "a/+", 0), MQE2E_ERR_INVALID_ARG);
    l.n = 0;
    cr_assert_eq(mqe2e_adb_grant_list(db, "c", collect_grant, &l), MQE2E_OK);
    cr_assert_eq(l.g[0].rights, 3); /* rights widened, not duplicated */
    cr_assert_eq(mqe2e_adb_grant_remove(db, "c", "b/#"), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_grant_remove(db, "c", "b/#"), MQE2E_ERR_NOT_FOUND);

    /* Re-enrollment replaces grants and issues a fresh serial. */
    cr_assert_eq(mqe2e_adb_client_upsert_enrolled(&s2, db, "c", "r2", sp, dh, &g[0], 1, 2, 99),
                 MQE2E_OK);
    cr_assert_eq(s2, s1 + 1);
    l.n = 0;
    cr_assert_eq(mqe2e_adb_grant_list(db, "c", collect_grant, &l), MQE2E_OK);
    cr_assert_eq(l.n, 1);
    cr_assert_str_eq(l.g[0].filter, "b/#");

    adb_test_enroll(db, "d", 4);
    size_t n = 0;
    cr_assert_eq(mqe2e_adb_client_list(db, count_clients, &n), MQE2E_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(mqe2e_adb_client_list(db, stop_at_first, NULL), 7);
    mqe2e_adb_client c;
    cr_assert_eq(mqe2e_adb_client_get(&c, db, "ghost"), MQE2E_ERR_NOT_FOUND);
    mqe2e_adb_close(db);
}

Test(authority_db, operator_nonce_replay_refused)
{
    uint8_t op[32], nonce[24], other[24];
    fill(op, sizeof op, 3);
    fill(nonce, sizeof nonce, 0x90);
    fill(other, sizeof other, 0xA0);
    mqe2e_adb *db = open_db();
    cr_assert_eq(mqe2e_adb_operator_add(db, "alice", op, 1), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_operator_add(db, "alice", op, 1), MQE2E_ERR_EXISTS);
    uint8_t got[32];
    cr_assert_eq(mqe2e_adb_operator_get(got, NULL, db, "bob"), MQE2E_ERR_NOT_FOUND);

    cr_assert_eq(mqe2e_adb_op_nonce_check_and_store(db, nonce, sizeof nonce, 100), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_op_nonce_check_and_store(db, nonce, sizeof nonce, 101),
                 MQE2E_ERR_EXISTS);
    cr_assert_eq(mqe2e_adb_op_nonce_check_and_store(db, other, sizeof other, 200), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_op_nonce_check_and_store(db, nonce, 8, 100), MQE2E_ERR_INVALID_ARG);
    mqe2e_adb_close(db);

    db = open_db(); /* replay protection survives a restart */
    cr_assert_eq(mqe2e_adb_op_nonce_check_and_store(db, nonce, sizeof nonce, 150),
                 MQE2E_ERR_EXISTS);
    uint64_t pruned = 0;
    cr_assert_eq(mqe2e_adb_op_nonce_prune(&pruned, db, 150), MQE2E_OK);
    cr_assert_eq(pruned, 1);
    cr_assert_eq(mqe2e_adb_op_nonce_check_and_store(db, other, sizeof other, 300),
                 MQE2E_ERR_EXISTS);
    cr_assert_eq(mqe2e_adb_operator_remove(db, "alice"), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_operator_remove(db, "alice"), MQE2E_ERR_NOT_FOUND);
    mqe2e_adb_close(db);
}

Test(authority_db, audit_rows_hold_no_secret_bytes)
{
    uint8_t tid[16], sec[32], gsec[32], got[32];
    fill(tid, sizeof tid, 0x31);
    fill(sec, sizeof sec, 0x41); /* printable bytes: a leak through text would match */
    fill(gsec, sizeof gsec, 0x61);
    mqe2e_adb *db = open_db();
    cr_assert_eq(mqe2e_adb_tx_begin(db), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_token_create(db, tid, sec, "dev1", "r", NULL, 0, 1, 100), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_audit_append(db, 1, "alice", "token.create", "dev1"), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_tx_commit(db), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_group_create(db, "g", "t/#", NULL, 2, gsec), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_audit_append(db, 2, "alice", "group.create", "g"), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_token_consume(got, NULL, db, tid, dev_a, dev_a, 3), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_audit_append(db, 3, "authority", "enroll", NULL), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_audit_append(db, 3, "", "x", NULL), MQE2E_ERR_INVALID_ARG);

    audit_scan a = {sec, 0, 0};
    cr_assert_eq(mqe2e_adb_audit_list(db, 0, scan_audit, &a), MQE2E_OK);
    cr_assert_eq(a.rows, 3);
    cr_assert_not(a.leaked);
    audit_scan b = {gsec, 0, 0};
    cr_assert_eq(mqe2e_adb_audit_list(db, 0, scan_audit, &b), MQE2E_OK);
    cr_assert_not(b.leaked);
    audit_scan c = {sec, 0, 0};
    cr_assert_eq(mqe2e_adb_audit_list(db, 2, scan_audit, &c), MQE2E_OK);
    cr_assert_eq(c.rows, 1);
    mqe2e_adb_close(db);
    /* Raw scan of the whole table, as stored bytes. */
    cr_assert_eq(raw_int("SELECT COUNT(*) FROM audit WHERE instr(CAST(actor || action ||"
                         " coalesce(subject, '') AS BLOB), x'4142434445464748') > 0"),
                 0);
    cr_assert_not(file_contains(sec, sizeof sec));
    sodium_memzero(got, sizeof got);
}

Test(authority_db, caller_transaction_commit_rollback_and_savepoints)
{
    uint8_t s[32];
    fill(s, sizeof s, 1);
    mqe2e_adb *db = open_db();
    cr_assert_eq(mqe2e_adb_tx_commit(db), MQE2E_ERR_STATE);
    cr_assert_eq(mqe2e_adb_tx_begin(db), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_tx_begin(db), MQE2E_ERR_STATE);
    cr_assert_eq(mqe2e_adb_group_create(db, "g", "t/#", NULL, 1, s), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_tx_rollback(db), MQE2E_OK);
    mqe2e_adb_group g;
    cr_assert_eq(mqe2e_adb_group_get(&g, db, "g"), MQE2E_ERR_NOT_FOUND);

    /* A failing call inside the transaction undoes only itself. */
    cr_assert_eq(mqe2e_adb_tx_begin(db), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_group_create(db, "g", "t/#", NULL, 1, s), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_group_create(db, "g", "t/#", NULL, 1, s), MQE2E_ERR_EXISTS);
    cr_assert_eq(mqe2e_adb_member_add(NULL, db, "g", "ghost", 1), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_adb_tx_commit(db), MQE2E_OK);
    mqe2e_adb_close(db);
    db = open_db();
    cr_assert_eq(mqe2e_adb_group_get(&g, db, "g"), MQE2E_OK);

    /* Close with an open transaction: rolled back. */
    cr_assert_eq(mqe2e_adb_tx_begin(db), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_group_create(db, "h", "u/#", NULL, 1, s), MQE2E_OK);
    mqe2e_adb_close(db);
    db = open_db();
    cr_assert_eq(mqe2e_adb_group_get(&g, db, "h"), MQE2E_ERR_NOT_FOUND);
    mqe2e_adb_close(db);
}

Test(authority_db, killed_mid_transaction_keeps_old_state)
{
    uint8_t s1[32], s2[32], got[32];
    fill(s1, sizeof s1, 1);
    fill(s2, sizeof s2, 2);
    mqe2e_adb *db = open_db();
    adb_test_enroll(db, "a", 1);
    cr_assert_eq(mqe2e_adb_group_create(db, "g", "t/#", NULL, 1, s1), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_member_add(NULL, db, "g", "a", 1), MQE2E_OK);
    mqe2e_adb_close(db);

    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        mqe2e_adb *child = NULL;
        if (mqe2e_adb_open(&child, path, key) != MQE2E_OK) _exit(2);
        if (mqe2e_adb_tx_begin(child) != MQE2E_OK) _exit(3);
        if (mqe2e_adb_group_rotate(NULL, child, "g", s2, 5) != MQE2E_OK) _exit(4);
        if (mqe2e_adb_client_revoke(child, "a", 5, NULL, NULL) != MQE2E_OK) _exit(5);
        adb_test_enroll(child, "b", 2);
        raise(SIGKILL); /* dies holding the uncommitted transaction */
        _exit(6);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status %d", status);

    db = open_db();
    mqe2e_adb_group g;
    cr_assert_eq(mqe2e_adb_group_get(&g, db, "g"), MQE2E_OK);
    cr_assert_eq(g.current_epoch, 1);
    mqe2e_adb_client c;
    cr_assert_eq(mqe2e_adb_client_get(&c, db, "a"), MQE2E_OK);
    cr_assert_eq(c.status, MQE2E_ADB_CLIENT_ACTIVE);
    cr_assert_eq(mqe2e_adb_client_get(&c, db, "b"), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_adb_group_epoch_secret(got, db, "g", 2), MQE2E_ERR_NOT_FOUND);
    uint64_t v = 9;
    cr_assert_eq(mqe2e_adb_revocation_version(&v, db), MQE2E_OK);
    cr_assert_eq(v, 0);
    /* And the database is writable again. */
    cr_assert_eq(mqe2e_adb_group_rotate(NULL, db, "g", s2, 6), MQE2E_OK);
    mqe2e_adb_close(db);
}

Test(authority_db, reopen_between_every_step_keeps_state)
{
    uint8_t tid[16], sec[32], gs[3][32], got[32];
    fill(tid, sizeof tid, 0x51);
    fill(sec, sizeof sec, 0x52);
    for (int i = 0; i < 3; i++)
        fill(gs[i], 32, (uint8_t)(0x60 + 0x10 * i));
    mqe2e_adb *db = open_db();
    cr_assert_eq(mqe2e_adb_token_create(db, tid, sec, "dev1", "sensor", NULL, 0, 10, 1000),
                 MQE2E_OK);
    mqe2e_adb_close(db);
    db = open_db();
    mqe2e_adb_token_info info;
    cr_assert_eq(mqe2e_adb_token_consume(got, &info, db, tid, dev_a, dev_a, 20), MQE2E_OK);
    mqe2e_adb_close(db);
    db = open_db();
    uint8_t dh[32] = {7};
    cr_assert_eq(mqe2e_adb_client_upsert_enrolled(NULL, db, info.client_id, info.role, dev_a, dh,
                                                  info.grants, info.n_grants, 21, 5000),
                 MQE2E_OK);
    mqe2e_adb_close(db);
    db = open_db();
    cr_assert_eq(mqe2e_adb_group_create(db, "g", "t/#", NULL, 30, gs[0]), MQE2E_OK);
    mqe2e_adb_close(db);
    db = open_db();
    cr_assert_eq(mqe2e_adb_member_add(NULL, db, "g", "dev1", 31), MQE2E_OK);
    mqe2e_adb_close(db);
    db = open_db();
    cr_assert_eq(mqe2e_adb_group_rotate(NULL, db, "g", gs[1], 40), MQE2E_OK);
    mqe2e_adb_close(db);
    db = open_db();
    cr_assert_eq(mqe2e_adb_group_rotate(NULL, db, "g", gs[2], 50), MQE2E_OK);
    mqe2e_adb_close(db);

    db = open_db();
    cr_assert_eq(mqe2e_adb_token_consume(got, NULL, db, tid, dev_b, dev_b, 60), MQE2E_ERR_STATE);
    mqe2e_adb_client c;
    cr_assert_eq(mqe2e_adb_client_get(&c, db, "dev1"), MQE2E_OK);
    cr_assert_arr_eq(c.sign_public, dev_a, 32);
    cr_assert_eq(c.credential_expires, 5000);
    mqe2e_adb_group g;
    cr_assert_eq(mqe2e_adb_group_get(&g, db, "g"), MQE2E_OK);
    cr_assert_eq(g.current_epoch, 3);
    for (uint32_t e = 1; e <= 3; e++) {
        cr_assert_eq(mqe2e_adb_group_epoch_secret(got, db, "g", e), MQE2E_OK);
        cr_assert_arr_eq(got, gs[e - 1], 32);
    }
    names of = {0};
    cr_assert_eq(mqe2e_adb_groups_of_client(db, "dev1", collect_member, &of), MQE2E_OK);
    cr_assert_eq(of.n, 1);
    mqe2e_adb_status st;
    cr_assert_eq(mqe2e_adb_status_get(&st, db, 60), MQE2E_OK);
    cr_assert_eq(st.clients_active, 1);
    cr_assert_eq(st.groups, 1);
    cr_assert_eq(st.tokens_unused, 0);
    mqe2e_adb_close(db);
    sodium_memzero(got, sizeof got);
}

Test(authority_db, thousand_members_in_one_transaction)
{
    uint8_t s[32];
    fill(s, sizeof s, 1);
    mqe2e_adb *db = open_db();
    cr_assert_eq(mqe2e_adb_group_create(db, "big", "big/#", NULL, 1, s), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_tx_begin(db), MQE2E_OK);
    char id[32];
    uint8_t sp[32] = {0}, dh[32] = {0};
    for (uint32_t i = 1; i <= 1000; i++) {
        snprintf(id, sizeof id, "dev-%04u", i);
        memcpy(sp, &i, sizeof i);
        cr_assert_eq(mqe2e_adb_client_upsert_enrolled(NULL, db, id, "d", sp, dh, NULL, 0, 1, 9),
                     MQE2E_OK);
        uint32_t sid = 0;
        cr_assert_eq(mqe2e_adb_member_add(&sid, db, "big", id, 2), MQE2E_OK);
        cr_assert_eq(sid, i);
    }
    cr_assert_eq(mqe2e_adb_tx_commit(db), MQE2E_OK);
    mqe2e_adb_close(db);

    db = open_db();
    static names m;
    m.n = 0;
    cr_assert_eq(mqe2e_adb_members_list(db, "big", collect_member, &m), MQE2E_OK);
    cr_assert_eq(m.n, 1000);
    for (size_t i = 0; i < m.n; i++)
        cr_assert_eq(m.ids[i], i + 1);
    mqe2e_adb_status st;
    cr_assert_eq(mqe2e_adb_status_get(&st, db, 3), MQE2E_OK);
    cr_assert_eq(st.clients_active, 1000);
    mqe2e_adb_close(db);
}

Test(authority_db, newer_schema_refused)
{
    mqe2e_adb *db = open_db();
    mqe2e_adb_close(db);
    sqlite3 *s = NULL;
    cr_assert_eq(sqlite3_open(path, &s), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(s, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(s);
    cr_assert_eq(mqe2e_adb_open(&db, path, key), MQE2E_ERR_SUITE);
    cr_assert_null(db);
    cr_assert_eq(mqe2e_adb_open(&db, NULL, key), MQE2E_ERR_INVALID_ARG);
    mqe2e_adb_close(NULL);
}

/* ------------------------------------------- schema 2: push counters, token groups */

Test(authority_db, push_seq_grows_and_survives_reopen)
{
    mqe2e_adb *db = open_db();
    uint64_t s = 99;
    adb_test_enroll(db, "dev-1", 0x11);
    cr_assert_eq(mqe2e_adb_client_push_seq(&s, db, "dev-1"), MQE2E_OK);
    cr_assert_eq(s, 0);
    for (uint64_t i = 1; i <= 3; i++) {
        cr_assert_eq(mqe2e_adb_client_push_seq_next(&s, db, "dev-1"), MQE2E_OK);
        cr_assert_eq(s, i);
    }
    cr_assert_eq(mqe2e_adb_client_push_seq_next(&s, db, "nobody"), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(s, 0);
    /* Rolled back with the caller transaction: the value is handed out again. */
    cr_assert_eq(mqe2e_adb_tx_begin(db), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_client_push_seq_next(&s, db, "dev-1"), MQE2E_OK);
    cr_assert_eq(s, 4);
    cr_assert_eq(mqe2e_adb_tx_rollback(db), MQE2E_OK);
    /* Re-enrolling (a renewal, same keys) keeps the counter: pushes never go backward. */
    adb_test_enroll(db, "dev-1", 0x11);
    mqe2e_adb_close(db);
    db = open_db();
    cr_assert_eq(mqe2e_adb_client_push_seq_next(&s, db, "dev-1"), MQE2E_OK);
    cr_assert_eq(s, 4);
    mqe2e_adb_close(db);
}

static int collect_names(const char *name, void *user)
{
    char *out = user;
    strcat(out, name);
    strcat(out, ";");
    return 0;
}

static int count_tokens(const uint8_t token_id[MQE2E_ADB_TOKEN_ID_BYTES],
                        const mqe2e_adb_token_info *info, void *user)
{
    (void)token_id;
    cr_assert_eq(info->n_grants, 0);
    if (info->used) (*(int *)user) += 100;
    (*(int *)user)++;
    return 0;
}

Test(authority_db, token_groups_and_list)
{
    mqe2e_adb *db = open_db();
    uint8_t tid[16], tid2[16], secret[32], out[32];
    uint8_t gsec[32];
    fill(tid, sizeof tid, 1);
    fill(tid2, sizeof tid2, 2);
    fill(secret, sizeof secret, 3);
    fill(gsec, sizeof gsec, 4);
    cr_assert_eq(mqe2e_adb_group_create(db, "g1", "a/#", NULL, 10, gsec), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_group_create(db, "g2", "b/#", NULL, 10, gsec), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_token_create(db, tid, secret, "dev-1", "device", NULL, 0, 10, 1000), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_token_create(db, tid2, secret, "dev-2", "device", NULL, 0, 10, 1000), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_token_group_add(db, tid, "g2"), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_token_group_add(db, tid, "g1"), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_token_group_add(db, tid, "g1"), MQE2E_ERR_EXISTS);
    cr_assert_eq(mqe2e_adb_token_group_add(db, tid, "nope"), MQE2E_ERR_NOT_FOUND);
    uint8_t unknown[16];
    fill(unknown, sizeof unknown, 9);
    cr_assert_eq(mqe2e_adb_token_group_add(db, unknown, "g1"), MQE2E_ERR_NOT_FOUND);
    char names[256] = "";
    cr_assert_eq(mqe2e_adb_token_groups_list(db, tid, collect_names, names), MQE2E_OK);
    cr_assert_str_eq(names, "g1;g2;");
    names[0] = '\0';
    cr_assert_eq(mqe2e_adb_token_groups_list(db, tid2, collect_names, names), MQE2E_OK);
    cr_assert_str_eq(names, "");
    cr_assert_eq(mqe2e_adb_token_consume(out, NULL, db, tid, dev_a, dev_a, 20), MQE2E_OK);
    int n = 0;
    cr_assert_eq(mqe2e_adb_token_list(db, count_tokens, &n), MQE2E_OK);
    cr_assert_eq(n, 102, "two tokens, one used");
    /* Pruning the token removes its group list too. */
    uint64_t del = 0;
    cr_assert_eq(mqe2e_adb_token_prune(&del, db, 5000), MQE2E_OK);
    cr_assert_eq(del, 2);
    names[0] = '\0';
    cr_assert_eq(mqe2e_adb_token_groups_list(db, tid, collect_names, names), MQE2E_OK);
    cr_assert_str_eq(names, "");
    mqe2e_adb_close(db);
}

/* What schema 7 changed, undone: a file as schema-6 code wrote it. */
#define SCHEMA_V7_UNDO                                                                             \
    "DROP TABLE tree_nodes; DROP TABLE tree_leaves; DROP TABLE group_trees;"                       \
    " DELETE FROM schema_migrations WHERE version = 7;"

/* What schema 6 changed, undone: a file as schema-5 code wrote it. */
#define SCHEMA_V6_UNDO                                                                             \
    "INSERT INTO meta(key, value) SELECT name, value FROM counters; DROP TABLE counters;"          \
    " DROP TABLE schema_migrations;"

/* A schema-5 file (the last SQLite-only code) opens, keeps its counters and
 * lists its migrations; its counters go on growing from where they were. */
Test(authority_db, migrates_a_version_5_file)
{
    mqe2e_adb *db = open_db();
    adb_test_enroll(db, "dev-1", 0x11);
    adb_test_enroll(db, "dev-2", 0x12);
    cr_assert_eq(mqe2e_adb_client_revoke(db, "dev-1", 20, NULL, NULL), MQE2E_OK);
    mqe2e_adb_client c;
    cr_assert_eq(mqe2e_adb_client_get(&c, db, "dev-2"), MQE2E_OK);
    uint64_t serial_before = c.credential_serial;
    mqe2e_adb_close(db);
    sqlite3 *raw = NULL;
    cr_assert_eq(sqlite3_open(path, &raw), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(raw, SCHEMA_V7_UNDO SCHEMA_V6_UNDO " PRAGMA user_version = 5;", NULL,
                              NULL, NULL),
                 SQLITE_OK, "%s", sqlite3_errmsg(raw));
    sqlite3_close(raw);
    cr_assert_eq(raw_int("SELECT COUNT(*) FROM meta WHERE key = 'revocation_version'"), 1);

    db = open_db();
    cr_assert_eq(raw_int("PRAGMA user_version"), 7);
    cr_assert_eq(raw_int("SELECT COUNT(*) FROM schema_migrations"), 7);
    cr_assert_eq(raw_int("SELECT COUNT(*) FROM meta WHERE typeof(value) = 'integer'"), 0);
    uint64_t v = 0;
    cr_assert_eq(mqe2e_adb_revocation_version(&v, db), MQE2E_OK);
    cr_assert_eq(v, 1, "the revocation-list version survives the migration");
    cr_assert_eq(mqe2e_adb_client_revoke(db, "dev-2", 30, NULL, NULL), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_revocation_version(&v, db), MQE2E_OK);
    cr_assert_eq(v, 2);
    adb_test_enroll(db, "dev-3", 0x13);
    cr_assert_eq(mqe2e_adb_client_get(&c, db, "dev-3"), MQE2E_OK);
    cr_assert_gt(c.credential_serial, serial_before, "serials never repeat across the migration");
    mqe2e_adb_close(db);
}

/* A schema-6 file (the store code before key trees) opens at version 7:
 * step 7 is listed in schema_migrations, its groups, members and epochs are
 * kept, and an existing group can then become a key-tree group. */
Test(authority_db, migrates_a_version_6_file)
{
    uint8_t sec[32];
    fill(sec, sizeof sec, 9);
    mqe2e_adb *db = open_db();
    adb_test_enroll(db, "dev-1", 0x11);
    cr_assert_eq(mqe2e_adb_group_create(db, "g", "t/#", NULL, 1, sec), MQE2E_OK);
    uint32_t sid = 0;
    cr_assert_eq(mqe2e_adb_member_add(&sid, db, "g", "dev-1", 2), MQE2E_OK);
    mqe2e_adb_close(db);
    sqlite3 *raw = NULL;
    cr_assert_eq(sqlite3_open(path, &raw), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(raw, SCHEMA_V7_UNDO " PRAGMA user_version = 6;", NULL, NULL, NULL),
                 SQLITE_OK, "%s", sqlite3_errmsg(raw));
    sqlite3_close(raw);
    cr_assert_eq(raw_int("SELECT COUNT(*) FROM sqlite_master WHERE name = 'group_trees'"), 0);

    db = open_db();
    cr_assert_eq(raw_int("PRAGMA user_version"), 7);
    cr_assert_eq(raw_int("SELECT COUNT(*) FROM schema_migrations WHERE version = 7"
                         " AND name = 'key_trees'"),
                 1);
    cr_assert_eq(raw_int("SELECT COUNT(*) FROM group_members WHERE group_name = 'g'"), 1);
    cr_assert(!authority_tree_db_is_tree(db, "g"));
    mqe2e_keytree *t = NULL;
    cr_assert_eq(mqe2e_keytree_new(&t, 3), MQE2E_OK);
    cr_assert_eq(authority_tree_db_create(db, "g", t, 1), MQE2E_OK);
    cr_assert(authority_tree_db_is_tree(db, "g"));
    mqe2e_keytree_free(t);
    mqe2e_adb_close(db);
}

Test(authority_db, migrates_a_version_1_file)
{
    mqe2e_adb *db = open_db();
    adb_test_enroll(db, "dev-1", 0x11);
    mqe2e_adb_close(db);
    /* Make it look like a file written by schema 1. */
    sqlite3 *raw = NULL;
    cr_assert_eq(sqlite3_open(path, &raw), SQLITE_OK);
    cr_assert_eq(
        sqlite3_exec(
            raw,
            SCHEMA_V7_UNDO SCHEMA_V6_UNDO
            "DROP TABLE retired_senders; ALTER TABLE group_members DROP COLUMN joined_epoch;"
            " DROP TABLE token_groups; ALTER TABLE clients DROP COLUMN push_seq;"
            " ALTER TABLE \"groups\" DROP COLUMN next_sender_id;"
            " ALTER TABLE tokens DROP COLUMN used_by_dh_public;"
            " ALTER TABLE tokens DROP COLUMN replaces;"
            " ALTER TABLE group_epochs DROP COLUMN grace_seconds;"
            " PRAGMA user_version = 1;",
            NULL, NULL, NULL),
        SQLITE_OK, "%s", sqlite3_errmsg(raw));
    sqlite3_close(raw);
    db = open_db();
    uint64_t s = 0;
    cr_assert_eq(mqe2e_adb_client_push_seq_next(&s, db, "dev-1"), MQE2E_OK);
    cr_assert_eq(s, 1);
    mqe2e_adb_close(db);
}

/* Version 2 files: each group's counter starts above its highest member. */
Test(authority_db, migrates_a_version_2_file_above_its_members)
{
    uint8_t sec[32];
    fill(sec, sizeof sec, 3);
    mqe2e_adb *db = open_db();
    cr_assert_eq(mqe2e_adb_group_create(db, "g", "t/#", NULL, 1, sec), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_group_create(db, "empty", "e/#", NULL, 1, sec), MQE2E_OK);
    uint32_t sid = 0;
    for (int i = 1; i <= 4; i++) {
        char id[8];
        snprintf(id, sizeof id, "d%d", i);
        adb_test_enroll(db, id, (uint8_t)(0x20 + i));
        cr_assert_eq(mqe2e_adb_member_add(&sid, db, "g", id, 10), MQE2E_OK);
    }
    cr_assert_eq(mqe2e_adb_member_remove(db, "g", "d2"), MQE2E_OK);
    mqe2e_adb_close(db);
    sqlite3 *raw = NULL;
    cr_assert_eq(sqlite3_open(path, &raw), SQLITE_OK);
    cr_assert_eq(
        sqlite3_exec(
            raw,
            SCHEMA_V7_UNDO SCHEMA_V6_UNDO
            "DROP TABLE retired_senders; ALTER TABLE group_members DROP COLUMN joined_epoch;"
            " ALTER TABLE \"groups\" DROP COLUMN next_sender_id;"
            " ALTER TABLE tokens DROP COLUMN used_by_dh_public;"
            " ALTER TABLE tokens DROP COLUMN replaces;"
            " ALTER TABLE group_epochs DROP COLUMN grace_seconds;"
            " PRAGMA user_version = 2;",
            NULL, NULL, NULL),
        SQLITE_OK, "%s", sqlite3_errmsg(raw));
    sqlite3_close(raw);
    db = open_db();
    cr_assert_eq(raw_int("PRAGMA user_version"), MQE2E_ADB_SCHEMA_VERSION);
    cr_assert_eq(mqe2e_adb_member_add(&sid, db, "g", "d2", 10), MQE2E_OK);
    cr_assert_eq(sid, 5, "above the highest member (4), never the gap (2)");
    cr_assert_eq(mqe2e_adb_member_add(&sid, db, "empty", "d1", 10), MQE2E_OK);
    cr_assert_eq(sid, 1);
    mqe2e_adb_close(db);
}

Test(authority_db, limit_grace_cuts_retired_epochs_only)
{
    uint8_t s[32];
    uint32_t g = 99, e = 0;
    fill(s, sizeof s, 5);
    mqe2e_adb *db = open_db();
    cr_assert_eq(mqe2e_adb_group_create(db, "g", "a/#", NULL, 1, s), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_group_rotate(&e, db, "g", s, 10), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_group_epoch_grace(&g, db, "g", 1), MQE2E_OK);
    cr_assert_eq(g, 0);
    cr_assert_eq(mqe2e_adb_group_limit_grace(db, "g", 30), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_group_epoch_grace(&g, db, "g", 1), MQE2E_OK);
    cr_assert_eq(g, 30);
    cr_assert_eq(mqe2e_adb_group_epoch_grace(&g, db, "g", 2), MQE2E_OK);
    cr_assert_eq(g, 0, "the current epoch keeps its grace");
    /* Never lengthened. */
    cr_assert_eq(mqe2e_adb_group_limit_grace(db, "g", 60), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_group_epoch_grace(&g, db, "g", 1), MQE2E_OK);
    cr_assert_eq(g, 30);
    cr_assert_eq(mqe2e_adb_group_limit_grace(db, "g", 0), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_adb_group_epoch_grace(&g, db, "g", 7), MQE2E_ERR_NOT_FOUND);
    mqe2e_adb_close(db);
}

/* Key-tree rows (schema 7) are tested on both stores in
 * test_authority_db_batch.c (key_tree_rows_on_this_store). */
