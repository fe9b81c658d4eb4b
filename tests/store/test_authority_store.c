#define _GNU_SOURCE /* memmem */
/* The authority store on each driver: the same domain calls against SQLite
 * (no environment) and against PostgreSQL (MQE2E_TEST_PG_URI, set by
 * tests/support/pgcluster.sh: a throwaway cluster; each test gets a fresh
 * database). Includes races of several processes, each with its own
 * connection: sender ids, epochs and a one-time token. */
#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "adb_testutil.h"
#include "authority_db.h"
#include "mqe2e/error.h"
#include "store.h"
#include "pgtest.h"
#include "testutil.h"

static char *dir;
static char uri[4096];
static uint8_t key[MQE2E_ADB_KEY_BYTES];

static void setup(void)
{
    cr_assert(sodium_init() >= 0);
    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (uint8_t)(0x40 + i);
    dir = tu_tempdir();
    /* PostgreSQL under tests/support/pgcluster.sh: a database per test. */
    if (!pgtest_fresh_uri(uri, sizeof uri, "t"))
        snprintf(uri, sizeof uri, "sqlite:%s/authority.db", dir);
}

static void teardown(void)
{
    tu_rmtree(dir);
    free(dir);
}

TestSuite(store, .init = setup, .fini = teardown, .timeout = 120);

static int is_pg(void)
{
    return strncmp(uri, "postgresql://", 13) == 0;
}

static mqe2e_adb *open_db(void)
{
    mqe2e_adb *db = NULL;
    cr_assert_eq(mqe2e_adb_open(&db, uri, key), MQE2E_OK, "open %s", uri);
    return db;
}

/* ------------------------------------------------------------------ basics */

/* What an administrator of the database reads (a second connection): the
 * secret is sealed (nonce, ciphertext, tag), nowhere in clear. */
static void assert_sealed_at_rest(const uint8_t secret[32], const char *sql)
{
    store *s = NULL;
    store_stmt *st = NULL;
    cr_assert_eq(store_open(&s, uri), MQE2E_OK);
    cr_assert_eq(store_prepare(s, &st, sql), MQE2E_OK);
    cr_assert_eq(store_step(st), 1, "%s: a row", sql);
    size_t n = 0;
    const uint8_t *b = store_col_blob(st, 0, &n);
    cr_assert_not_null(b);
    cr_assert_gt(n, 32U, "sealed: longer than the secret");
    cr_assert_null(memmem(b, n, secret, 32), "the secret in clear in the database");
    cr_assert_null(memmem(b, n, secret, 8), "part of the secret in clear");
    store_finish(s, st);
    store_close(s);
}

Test(store, opens_migrates_and_refuses_another_key)
{
    mqe2e_adb *db = open_db();
    mqe2e_adb_close(db);
    db = open_db(); /* a second open finds version 6 and does nothing */
    mqe2e_adb_close(db);
    uint8_t other[MQE2E_ADB_KEY_BYTES];
    memset(other, 0x77, sizeof other);
    cr_assert_eq(mqe2e_adb_open(&db, uri, other), MQE2E_ERR_AUTH);
    cr_assert_null(db);
}

Test(store, unknown_scheme_is_refused_not_taken_for_a_file)
{
    mqe2e_adb *db = NULL;
    cr_assert_eq(mqe2e_adb_open(&db, "postgresq://localhost/x", key), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_adb_open(&db, "sqlite:", key), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(access("postgresq:", F_OK), -1);
}

Test(store, tokens_clients_groups_members_revocation)
{
    mqe2e_adb *db = open_db();
    uint8_t tid[16], secret[32], out[32], sp[32], dh[32], sp2[32];
    memset(tid, 1, sizeof tid);
    memset(secret, 0x5A, sizeof secret);
    memset(sp, 0x11, sizeof sp);
    memset(dh, 0x22, sizeof dh);
    memset(sp2, 0x33, sizeof sp2);
    mqe2e_adb_grant g = {.filter = "t/#", .rights = MQE2E_ADB_RIGHT_PUBLISH};
    cr_assert_eq(mqe2e_adb_token_create(db, tid, secret, "dev-1", "sensor", &g, 1, 10, 1000),
                 MQE2E_OK);
    cr_assert_eq(mqe2e_adb_token_create(db, tid, secret, "dev-1", "sensor", &g, 1, 10, 1000),
                 MQE2E_ERR_EXISTS);
    assert_sealed_at_rest(secret, "SELECT token_secret FROM tokens");
    mqe2e_adb_token_info info;
    cr_assert_eq(mqe2e_adb_token_consume(out, &info, db, tid, sp, dh, 20), MQE2E_OK);
    cr_assert_eq(memcmp(out, secret, 32), 0, "sealed secret round trip");
    cr_assert_str_eq(info.client_id, "dev-1");
    cr_assert_eq(info.n_grants, 1);
    cr_assert_str_eq(info.grants[0].filter, "t/#");
    cr_assert_eq(mqe2e_adb_token_consume(out, &info, db, tid, sp, dh, 21), MQE2E_OK);
    cr_assert(info.retry);
    cr_assert_eq(mqe2e_adb_token_consume(out, &info, db, tid, sp2, dh, 22), MQE2E_ERR_STATE);

    adb_test_enroll(db, "dev-1", 0x11);
    adb_test_enroll(db, "dev-2", 0x12);
    adb_test_enroll(db, "dev-3", 0x13);
    cr_assert_eq(mqe2e_adb_group_create(db, "g", "t/#", NULL, 5, secret), MQE2E_OK);
    uint32_t sid = 0, ep = 0;
    cr_assert_eq(mqe2e_adb_member_add(&sid, db, "g", "dev-1", 30), MQE2E_OK);
    cr_assert_eq(sid, 1);
    cr_assert_eq(mqe2e_adb_member_add(&sid, db, "g", "dev-2", 30), MQE2E_OK);
    cr_assert_eq(sid, 2);
    cr_assert_eq(mqe2e_adb_member_add(&sid, db, "g", "dev-2", 30), MQE2E_ERR_EXISTS);
    cr_assert_eq(sid, 2);
    cr_assert_eq(mqe2e_adb_member_remove(db, "g", "dev-2"), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_member_add(&sid, db, "g", "dev-3", 31), MQE2E_OK);
    cr_assert_eq(sid, 3, "a departed member's id is never handed out again");
    memset(secret, 0x5B, sizeof secret);
    cr_assert_eq(mqe2e_adb_group_rotate(&ep, db, "g", secret, 40), MQE2E_OK);
    cr_assert_eq(ep, 2);
    assert_sealed_at_rest(secret, "SELECT secret FROM group_epochs WHERE epoch = 2");
    cr_assert_eq(mqe2e_adb_group_epoch_secret(out, db, "g", 2), MQE2E_OK);
    cr_assert_eq(memcmp(out, secret, 32), 0);

    cr_assert_eq(mqe2e_adb_client_revoke(db, "dev-1", 50, NULL, NULL), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_client_revoke(db, "dev-1", 51, NULL, NULL), MQE2E_ERR_STATE);
    uint64_t v = 0;
    cr_assert_eq(mqe2e_adb_revocation_version(&v, db), MQE2E_OK);
    cr_assert_eq(v, 1);
    mqe2e_adb_status stt;
    cr_assert_eq(mqe2e_adb_status_get(&stt, db, 60), MQE2E_OK);
    cr_assert_eq(stt.clients_active, 2);
    cr_assert_eq(stt.clients_revoked, 1);
    cr_assert_eq(stt.groups, 1);
    cr_assert_eq(mqe2e_adb_audit_append(db, 70, "op", "test", NULL), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_audit_append(db, 71, "op", "test", "subj"), MQE2E_OK);
    uint64_t seq = 0;
    cr_assert_eq(mqe2e_adb_client_push_seq_next(&seq, db, "dev-2"), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_client_push_seq_next(&seq, db, "dev-2"), MQE2E_OK);
    cr_assert_eq(seq, 2);
    mqe2e_adb_close(db);
}

/* A refused statement inside a caller transaction undoes only itself (with
 * PostgreSQL too, where a failed statement would abort the transaction). */
Test(store, a_refused_call_inside_a_transaction_leaves_it_usable)
{
    mqe2e_adb *db = open_db();
    uint8_t pub[32];
    memset(pub, 9, sizeof pub);
    cr_assert_eq(mqe2e_adb_operator_add(db, "alice", pub, 1), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_tx_begin(db), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_operator_add(db, "alice", pub, 2), MQE2E_ERR_EXISTS);
    cr_assert_eq(mqe2e_adb_operator_add(db, "bob", pub, 3), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_tx_commit(db), MQE2E_OK);
    uint64_t at = 0;
    cr_assert_eq(mqe2e_adb_operator_get(pub, &at, db, "bob"), MQE2E_OK);
    cr_assert_eq(at, 3);
    mqe2e_adb_close(db);
}

Test(store, a_newer_schema_is_refused)
{
    mqe2e_adb *db = open_db();
    mqe2e_adb_close(db);
    store *s = NULL;
    cr_assert_eq(store_open(&s, uri), MQE2E_OK);
    cr_assert_eq(store_exec(s, is_pg() ? "INSERT INTO schema_migrations VALUES (99, 'future')"
                                       : "PRAGMA user_version = 99"),
                 MQE2E_OK);
    store_close(s);
    cr_assert_eq(mqe2e_adb_open(&db, uri, key), MQE2E_ERR_SUITE);
}

/* -------------------------------------------------------------- concurrency */

#define RACERS 6
#define PER_RACER 8

struct racer {
    int index;
    int rc;
    uint32_t got[PER_RACER * 2];
    size_t n;
};

static void *take_sender_ids(void *arg)
{
    struct racer *r = arg;
    mqe2e_adb *db = NULL;
    r->rc = mqe2e_adb_open(&db, uri, key);
    for (int i = 0; r->rc == MQE2E_OK && i < PER_RACER; i++) {
        char id[32];
        snprintf(id, sizeof id, "c%d-%d", r->index, i);
        uint32_t sid = 0;
        r->rc = mqe2e_adb_member_add(&sid, db, "g", id, 10);
        if (r->rc == MQE2E_OK) r->got[r->n++] = sid;
    }
    mqe2e_adb_close(db);
    return NULL;
}

/* Each racer is a process of its own with its own connection, as several
 * authority processes on one store are; they start together (all block on
 * one pipe until the parent closes it) and send their results back. */
static void run_racers(void *(*fn)(void *), struct racer *r)
{
    int go[2];
    int back[RACERS][2];
    pid_t pid[RACERS];
    cr_assert_eq(pipe(go), 0);
    for (int i = 0; i < RACERS; i++) {
        cr_assert_eq(pipe(back[i]), 0);
        pid[i] = fork();
        cr_assert_neq(pid[i], -1);
        if (pid[i] == 0) {
            struct racer mine;
            memset(&mine, 0, sizeof mine);
            mine.index = i;
            char c;
            close(go[1]);
            (void)!read(go[0], &c, 1); /* EOF: the start */
            fn(&mine);
            ssize_t w = write(back[i][1], &mine, sizeof mine);
            _exit(w == (ssize_t)sizeof mine ? 0 : 1);
        }
        close(back[i][1]);
    }
    close(go[0]);
    close(go[1]);
    for (int i = 0; i < RACERS; i++) {
        ssize_t n = read(back[i][0], &r[i], sizeof r[i]);
        cr_assert_eq(n, (ssize_t)sizeof r[i], "racer %d sent its result", i);
        close(back[i][0]);
        int status = 0;
        cr_assert_eq(waitpid(pid[i], &status, 0), pid[i]);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "racer %d exited cleanly", i);
    }
}

/* Every id 1..N handed out exactly once: no duplicate, no gap. */
static void assert_each_once(struct racer *r, uint32_t first)
{
    uint8_t seen[RACERS * PER_RACER * 2 + 2] = {0};
    size_t total = 0;
    for (int i = 0; i < RACERS; i++) {
        cr_assert_eq(r[i].rc, MQE2E_OK, "racer %d: %d", i, r[i].rc);
        for (size_t k = 0; k < r[i].n; k++) {
            uint32_t v = r[i].got[k];
            cr_assert(v >= first && v - first < sizeof seen, "value %u in range", v);
            cr_assert_eq(seen[v - first], 0, "value %u handed out twice", v);
            seen[v - first] = 1;
            total++;
        }
    }
    cr_assert_eq(total, (size_t)RACERS * PER_RACER);
}

Test(store, racing_connections_never_share_a_sender_id)
{
    mqe2e_adb *db = open_db();
    uint8_t secret[32] = {1};
    cr_assert_eq(mqe2e_adb_group_create(db, "g", "t/#", NULL, 5, secret), MQE2E_OK);
    for (int i = 0; i < RACERS; i++)
        for (int k = 0; k < PER_RACER; k++) {
            char id[32];
            snprintf(id, sizeof id, "c%d-%d", i, k);
            adb_test_enroll(db, id, (uint8_t)(i * PER_RACER + k + 1));
        }
    mqe2e_adb_close(db);
    struct racer r[RACERS];
    run_racers(take_sender_ids, r);
    assert_each_once(r, 1);
}

static void *rotate_epochs(void *arg)
{
    struct racer *r = arg;
    mqe2e_adb *db = NULL;
    uint8_t secret[32];
    memset(secret, r->index + 1, sizeof secret);
    r->rc = mqe2e_adb_open(&db, uri, key);
    for (int i = 0; r->rc == MQE2E_OK && i < PER_RACER; i++) {
        uint32_t ep = 0;
        r->rc = mqe2e_adb_group_rotate(&ep, db, "g", secret, 20);
        if (r->rc == MQE2E_OK) r->got[r->n++] = ep;
    }
    mqe2e_adb_close(db);
    return NULL;
}

Test(store, racing_rotations_never_share_an_epoch)
{
    mqe2e_adb *db = open_db();
    uint8_t secret[32] = {1};
    cr_assert_eq(mqe2e_adb_group_create(db, "g", "t/#", NULL, 5, secret), MQE2E_OK);
    mqe2e_adb_close(db);
    struct racer r[RACERS];
    run_racers(rotate_epochs, r);
    assert_each_once(r, 2);
    db = open_db();
    mqe2e_adb_group grp;
    cr_assert_eq(mqe2e_adb_group_get(&grp, db, "g"), MQE2E_OK);
    cr_assert_eq(grp.current_epoch, 1 + RACERS * PER_RACER);
    mqe2e_adb_close(db);
}

static void *consume_token(void *arg)
{
    struct racer *r = arg;
    mqe2e_adb *db = NULL;
    uint8_t tid[16], sp[32], dh[32], out[32];
    memset(tid, 7, sizeof tid);
    memset(sp, 0x40 + r->index, sizeof sp); /* each racer is another device */
    memset(dh, 0x80 + r->index, sizeof dh);
    r->rc = mqe2e_adb_open(&db, uri, key);
    if (r->rc == MQE2E_OK) {
        mqe2e_adb_token_info info;
        int rc = mqe2e_adb_token_consume(out, &info, db, tid, sp, dh, 20);
        r->got[r->n++] = rc == MQE2E_OK ? 1U : (rc == MQE2E_ERR_STATE ? 0U : 99U);
    }
    mqe2e_adb_close(db);
    return NULL;
}

Test(store, racing_devices_consume_a_token_once)
{
    mqe2e_adb *db = open_db();
    uint8_t tid[16], secret[32];
    memset(tid, 7, sizeof tid);
    memset(secret, 3, sizeof secret);
    cr_assert_eq(mqe2e_adb_token_create(db, tid, secret, "dev", "r", NULL, 0, 10, 1000), MQE2E_OK);
    mqe2e_adb_close(db);
    struct racer r[RACERS];
    run_racers(consume_token, r);
    int winners = 0;
    for (int i = 0; i < RACERS; i++) {
        cr_assert_eq(r[i].rc, MQE2E_OK);
        cr_assert_eq(r[i].n, 1);
        cr_assert_neq(r[i].got[0], 99U, "racer %d: neither used nor refused", i);
        winners += (int)r[i].got[0];
    }
    cr_assert_eq(winners, 1, "exactly one device enrolls with a one-time token");
}

/* ---------------------------------------------------------- lost connection */

/* Ends every other session on the test's database, as a server restart or a
 * network cut would. */
static void pg_cut_other_sessions(void)
{
    PGconn *c = PQconnectdb(uri);
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
    PGresult *r = PQexec(c, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE datname = current_database() AND pid <> pg_backend_pid()");
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
    cr_assert_gt(PQntuples(r), 0, "a session to cut");
    PQclear(r);
    PQfinish(c);
}

/* Between transactions the driver reconnects; inside one, nothing of it is
 * replayed on the new connection: the rest fails and the commit reports it. */
Test(store, a_lost_server_connection_loses_no_half_transaction)
{
    if (!is_pg()) cr_skip_test("PostgreSQL only (run under tests/support/pgcluster.sh)");
    mqe2e_adb *db = open_db();
    uint8_t pub[32];
    memset(pub, 9, sizeof pub);
    cr_assert_eq(mqe2e_adb_operator_add(db, "before", pub, 1), MQE2E_OK);

    pg_cut_other_sessions();
    cr_assert_eq(mqe2e_adb_operator_add(db, "after-cut", pub, 2), MQE2E_OK,
                 "a call after the cut reconnects");

    cr_assert_eq(mqe2e_adb_tx_begin(db), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_operator_add(db, "in-lost-tx-1", pub, 3), MQE2E_OK);
    pg_cut_other_sessions();
    cr_assert_eq(mqe2e_adb_operator_add(db, "in-lost-tx-2", pub, 4), MQE2E_ERR_IO);
    cr_assert_eq(mqe2e_adb_tx_commit(db), MQE2E_ERR_IO, "the lost transaction is reported");

    uint64_t at = 0;
    cr_assert_eq(mqe2e_adb_operator_get(pub, &at, db, "in-lost-tx-1"), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_adb_operator_get(pub, &at, db, "in-lost-tx-2"), MQE2E_ERR_NOT_FOUND,
                 "nothing of the lost transaction ran in autocommit");
    cr_assert_eq(mqe2e_adb_operator_get(pub, &at, db, "after-cut"), MQE2E_OK);
    mqe2e_adb_close(db);
}

static int insert_row(store *s, int64_t v)
{
    store_stmt *st = NULL;
    int rc = store_prepare(s, &st, "INSERT INTO lost(v) VALUES (?1)");
    if (rc == MQE2E_OK) rc = store_bind_i64(st, 1, v);
    if (rc == MQE2E_OK) rc = store_step(st);
    store_finish(s, st);
    return rc;
}

/* The same at the driver: once a transaction's connection is gone, no later
 * statement of it runs anywhere, even one the caller sends after the first
 * failure, until the caller ends the transaction. */
Test(store, the_driver_replays_nothing_of_a_lost_transaction)
{
    if (!is_pg()) cr_skip_test("PostgreSQL only (run under tests/support/pgcluster.sh)");
    store *s = NULL;
    cr_assert_eq(store_open(&s, uri), MQE2E_OK);
    cr_assert_eq(store_exec(s, "CREATE TABLE lost(v BIGINT PRIMARY KEY)"), MQE2E_OK);
    cr_assert_eq(store_begin(s, STORE_TX_WRITE), MQE2E_OK);
    cr_assert_eq(insert_row(s, 1), 0);
    pg_cut_other_sessions();
    cr_assert_eq(insert_row(s, 2), MQE2E_ERR_IO, "the cut is noticed");
    cr_assert_eq(insert_row(s, 3), MQE2E_ERR_IO, "and the transaction stays dead");
    cr_assert(store_in_tx(s));
    store_stmt *st = NULL;
    cr_assert_eq(store_prepare(s, &st, "ROLLBACK"), MQE2E_OK);
    cr_assert_eq(store_step(st), 0);
    store_finish(s, st);
    cr_assert_eq(insert_row(s, 4), 0, "a new transaction reconnects");
    cr_assert_eq(store_prepare(s, &st, "SELECT COUNT(*), MIN(v) FROM lost"), MQE2E_OK);
    cr_assert_eq(store_step(st), 1);
    cr_assert_eq(store_col_i64(st, 0), 1, "only the row written after the rollback");
    cr_assert_eq(store_col_i64(st, 1), 4);
    store_finish(s, st);
    store_close(s);
}
