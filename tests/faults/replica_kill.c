/*
 * Two authority replicas on one store, one killed (SIGKILL) in the middle of
 * an enrollment burst and a group rotation (issue 13, docs/SCALING.md).
 *
 * A real Mosquitto, two real `mqe2e authority run --replica-group` processes
 * (MQTT v5 shared subscription $share/fleet-auth/P/authority) on one store —
 * a SQLite file in WAL mode, or PostgreSQL on a throwaway cluster
 * (tests/support/pgcluster.sh sets MQE2E_TEST_PG_URI; ctest replica_kill_pg,
 * label pg) — and real `mqe2e enroll`, `mqe2e pub`/`sub` and operator CLI
 * processes:
 *
 *   - three members enroll in group "fleet"; member m-1 subscribes to fleet/#
 *     for the whole test;
 *   - N_DEV devices enroll at once with tickets into "fleet" (`mqe2e enroll`
 *     retries with a new handshake every 4 s while no reply comes: a request
 *     that died with the killed replica goes to the survivor, and a retry of
 *     a ticket the dead replica had already committed returns the same
 *     serial);
 *   - once replica 0 has answered some enrollments it is frozen (SIGSTOP:
 *     the broker still hands it its share of the burst), the operator
 *     starts a rotation of "fleet", and once the broker has dispatched it
 *     (to either replica) replica 0 is killed (SIGKILL) with the requests it
 *     held; the operator retries the rotation while it gets no answer, as a
 *     person would.
 *
 * Then, read from the store itself: every device enrolled exactly once (one
 * "enroll" audit row, its keys and the serial `mqe2e enroll` printed), every
 * ticket used once by its own device, no sender id of "fleet" held twice,
 * the epochs numbered 1..E without a gap or a repeat, each with its own
 * secret; and member m-1 holds epoch E with the store's secret and decrypts
 * what member m-2 sealed after the rotation.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "authority_core.h"
#include "authority_db.h"
#include "authority_fixture.h"
#include "mailbox.h"
#include "mqe2e/control.h"
#include "mqe2e/error.h"
#include "mqe2e/keystore.h"
#include "mqe2e/mqe2e.h"
#include "testutil.h"

#define AUTH_ID "auth-rep"
#define SHARE "fleet-auth"
#define N_DEV 32
#define N_MEMBERS 3
#define OUT_MAX (256U * 1024U)

static af_fixture fx;

static void replica_log_count(int i, const char *needle, size_t *count)
{
    char path[600];
    size_t len = 0;
    af_replica_log(&fx, i, path, sizeof path);
    char *log = tu_read_file(path, &len);
    *count = 0;
    for (const char *p = log; p != NULL && (p = strstr(p, needle)) != NULL; p++)
        (*count)++;
    free(log);
}

/* A child running `mqe2e enroll` of @p id with @p ticket; its exit code is
 * the CLI's. */
static pid_t enroll_async(const char *id, const char *ticket)
{
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) _exit(af_enroll(&fx, id, ticket));
    return pid;
}

/* A child rotating "fleet" as an operator would: again while no answer
 * comes (-W 6). Exit code: the attempts it took (1..10), 100 when none
 * succeeded. */
static pid_t rotate_async(void)
{
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        fx.op_wait = "6";
        for (int attempt = 1; attempt <= 10; attempt++)
            if (af_op_sh(&fx, NULL, 0, "group rotate --group fleet") == 0) _exit(attempt);
        _exit(100);
    }
    return pid;
}

static int wait_exit(pid_t pid)
{
    int st = 0;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ------------------------------------------------------- reading the store */

typedef struct audit_count {
    char id[N_DEV + N_MEMBERS][32];
    int n[N_DEV + N_MEMBERS];
    size_t ids;
} audit_count;

static int audit_cb(int64_t id, uint64_t at, const char *actor, const char *action,
                    const char *subject, void *user)
{
    audit_count *c = user;
    (void)id;
    (void)at;
    (void)subject;
    if (strncmp(action, "enroll", 6) != 0) return 0;
    for (size_t i = 0; i < c->ids; i++)
        if (strcmp(c->id[i], actor) == 0) c->n[i]++;
    return 0;
}

typedef struct sid_seen {
    uint32_t sid[N_DEV + N_MEMBERS + 8];
    size_t n;
} sid_seen;

static int member_cb(const char *client, uint32_t sender_id, uint64_t added_at, void *user)
{
    sid_seen *s = user;
    (void)client;
    (void)added_at;
    for (size_t i = 0; i < s->n; i++)
        cr_assert_neq(s->sid[i], sender_id, "sender id %u held twice in fleet", sender_id);
    cr_assert_lt(s->n, sizeof s->sid / sizeof s->sid[0]);
    s->sid[s->n++] = sender_id;
    return 0;
}

typedef struct token_check {
    int used;
    int unused;
} token_check;

static int token_cb(const uint8_t token_id[MQE2E_ADB_TOKEN_ID_BYTES],
                    const mqe2e_adb_token_info *info, void *user)
{
    token_check *t = user;
    (void)token_id;
    if (strncmp(info->client_id, "d-", 2) != 0) return 0;
    if (!info->used) {
        t->unused++;
        return 0;
    }
    t->used++;
    /* Used by its own device: the keys in the device's keystore. */
    mqe2e_keystore *ks = af_open_ks(&fx, info->client_id);
    uint8_t sp[32], dp[32];
    cr_assert_eq(mqe2e_keystore_identity_public(ks, sp, dp), MQE2E_OK);
    mqe2e_keystore_close(ks);
    /* (The list does not read used_by_dh_public; the client row's is checked.) */
    cr_assert_eq(memcmp(info->used_by_sign_public, sp, 32), 0, "%s's ticket used by other keys",
                 info->client_id);
    return 0;
}

typedef struct epochs_seen {
    uint32_t e[64];
    size_t n;
} epochs_seen;

static int epoch_cb(uint32_t epoch, uint64_t created_at, uint64_t retired_at, void *user)
{
    epochs_seen *s = user;
    (void)created_at;
    (void)retired_at;
    cr_assert_lt(s->n, 64U);
    s->e[s->n++] = epoch;
    return 0;
}

static mqe2e_adb *store_open(void)
{
    mqe2e_keystore *ks = af_open_ks(&fx, "auth");
    uint8_t key[MQE2E_ADB_KEY_BYTES];
    cr_assert_eq(authority_db_key(key, ks), MQE2E_OK);
    mqe2e_keystore_close(ks);
    mqe2e_adb *db = NULL;
    int rc = mqe2e_adb_open(&db, fx.db, key);
    sodium_memzero(key, sizeof key);
    cr_assert_eq(rc, MQE2E_OK, "open the store %s: %s", fx.db, mqe2e_strerror(rc));
    return db;
}

/* The serial `mqe2e enroll` printed for @p id ("credential serial N"). */
static uint64_t printed_serial(const char *id)
{
    char path[700];
    size_t len = 0;
    snprintf(path, sizeof path, "%s/%s.enroll.out", fx.dir, id);
    char *out = tu_read_file(path, &len);
    cr_assert_not_null(out);
    const char *p = strstr(out, "credential serial ");
    cr_assert_not_null(p, "%s: %s", id, out);
    uint64_t s = strtoull(p + strlen("credential serial "), NULL, 10);
    free(out);
    return s;
}

/* ------------------------------------------------------------------ the test */

static void kill_one_replica(void)
{
    static char out[OUT_MAX];
    char *tickets[N_DEV];

    cr_assert_eq(af_op_sh(&fx, out, sizeof out, "group create --group fleet --topic 'fleet/#'"),
                 0, "%s", out);
    for (int i = 1; i <= N_MEMBERS; i++) {
        char id[16];
        snprintf(id, sizeof id, "m-%d", i);
        af_enroll_in(&fx, id, "fleet", "fleet/#:pubsub");
    }
    /* m-1 listens for the whole test: it must end up reading the epoch
     * the survivor rotated to. */
    char sub_cmd[4096], m1[600], m2[600];
    af_ks_path(&fx, m1, sizeof m1, "m-1");
    af_ks_path(&fx, m2, sizeof m2, "m-2");
    snprintf(sub_cmd, sizeof sub_cmd,
             "exec '%s' sub -K '%s' --key-file '%s' -h 127.0.0.1 -p %s -t 'fleet/#' -C 1 "
             "-W 150 >'%s/m-1.sub' 2>'%s/m-1.sub.err'",
             fx.cli, m1, fx.keyfile, fx.port, fx.dir, fx.dir);
    pid_t sub = fork();
    cr_assert(sub >= 0);
    if (sub == 0) {
        execl("/bin/sh", "sh", "-c", sub_cmd, (char *)NULL);
        _exit(127);
    }

    char words[256];
    snprintf(words, sizeof words, "token create --id d --count %d --group fleet --grant 'fleet/#:pubsub'",
             N_DEV);
    cr_assert_eq(af_op_sh(&fx, out, sizeof out, words), 0, "%s", out);
    size_t n = 0;
    for (char *save = NULL, *l = strtok_r(out, "\n", &save); l != NULL && n < N_DEV;
         l = strtok_r(NULL, "\n", &save))
        tickets[n++] = l;
    cr_assert_eq(n, N_DEV);

    /* The burst, with a spy on the request topic. */
    mailbox spy;
    memset(&spy, 0, sizeof spy);
    mb_open(&spy, tb_broker_uri(&fx.broker), "spy", AF_PREFIX "/authority");
    pid_t dev[N_DEV];
    for (int i = 0; i < N_DEV; i++) {
        char id[16];
        snprintf(id, sizeof id, "d-%d", i + 1);
        dev[i] = enroll_async(id, tickets[i]);
    }
    /* Replica 0 is in the middle of it once it answered a few: it freezes
     * (SIGSTOP; the broker keeps handing it its share of the requests),
     * the rotation goes out, and once the broker has dispatched it (the
     * spy on P/authority saw it) replica 0 dies with whatever it held. */
    double end = af_mono() + 90.0;
    size_t served0 = 0;
    while (replica_log_count(0, "enrolled d-", &served0), served0 < 3) {
        cr_assert_lt(af_mono(), end, "replica 0 never served the burst");
        af_sleep_ms(5);
    }
    kill(fx.replica_pid[0], SIGSTOP);
    pid_t rot = rotate_async();
    for (int seen = 0; !seen;) {
        cr_assert_lt(af_mono(), end, "the rotation request never reached the broker");
        mb_pump(&spy, 50);
        for (size_t i = 0; i < spy.n && !seen; i++)
            seen = spy.v[i].len > 4U && spy.v[i].data[0] == 0x08 && spy.v[i].data[2] == 0x10 &&
                   spy.v[i].data[3] == MQE2E_CONTROL_OPERATOR;
        mb_clear(&spy);
    }
    kill(fx.replica_pid[0], SIGKILL);
    af_replica_kill(&fx, 0, SIGKILL); /* reaped */
    mb_close(&spy);
    size_t rot0 = 0;
    replica_log_count(0, "operator op1: group-rotate", &rot0);
    size_t served1_at_kill = 0;
    replica_log_count(1, "enrolled d-", &served1_at_kill);

    for (int i = 0; i < N_DEV; i++) {
        int rc = wait_exit(dev[i]);
        cr_assert_eq(rc, 0, "d-%d: mqe2e enroll exit %d", i + 1, rc);
    }
    int attempts = wait_exit(rot);
    cr_assert(attempts >= 1 && attempts <= 10, "the rotation never got an answer (%d)", attempts);
    size_t served1 = 0;
    replica_log_count(1, "enrolled d-", &served1);
    int retried = 0;
    for (int i = 0; i < N_DEV; i++) {
        char path[700], id[16];
        size_t len = 0;
        snprintf(id, sizeof id, "d-%d", i + 1);
        snprintf(path, sizeof path, "%s/%s.enroll.err", fx.dir, id);
        char *err = tu_read_file(path, &len);
        retried += err != NULL && strstr(err, "no reply yet, retrying") != NULL;
        free(err);
    }
    printf("replica_kill (%s): replica 0 killed after %zu enrollments (replica 1: %zu then) "
           "(rotation seen by replica 0: %zu); replica 1 served %zu in all; %d devices retried; "
           "rotation answered at attempt %d\n",
           strncmp(fx.db, "postgres", 8) == 0 ? "postgresql" : "sqlite", served0,
           served1_at_kill, rot0, served1, retried, attempts);

    /* What the store says. */
    mqe2e_adb *db = store_open();
    audit_count ac;
    memset(&ac, 0, sizeof ac);
    for (int i = 0; i < N_DEV; i++)
        snprintf(ac.id[ac.ids++], sizeof ac.id[0], "d-%d", i + 1);
    cr_assert_eq(mqe2e_adb_audit_list(db, 0, audit_cb, &ac), MQE2E_OK);
    uint64_t serials[N_DEV];
    for (int i = 0; i < N_DEV; i++) {
        cr_assert_eq(ac.n[i], 1, "%s enrolled %d times", ac.id[i], ac.n[i]);
        mqe2e_adb_client c;
        cr_assert_eq(mqe2e_adb_client_get(&c, db, ac.id[i]), MQE2E_OK);
        cr_assert_eq(c.status, MQE2E_ADB_CLIENT_ACTIVE);
        mqe2e_keystore *dks = af_open_ks(&fx, ac.id[i]);
        uint8_t sp[32], dp[32];
        cr_assert_eq(mqe2e_keystore_identity_public(dks, sp, dp), MQE2E_OK);
        mqe2e_keystore_close(dks);
        cr_assert(memcmp(c.sign_public, sp, 32) == 0 && memcmp(c.dh_public, dp, 32) == 0,
                  "%s: the store holds the device's own keys", ac.id[i]);
        serials[i] = printed_serial(ac.id[i]);
        cr_assert_eq(serials[i], c.credential_serial, "%s: the serial printed is the store's",
                     ac.id[i]);
        for (int k = 0; k < i; k++)
            cr_assert_neq(serials[k], serials[i], "one serial for two devices");
    }
    token_check tc = {0, 0};
    cr_assert_eq(mqe2e_adb_token_list(db, token_cb, &tc), MQE2E_OK);
    cr_assert_eq(tc.used, N_DEV, "every ticket used once (used %d, unused %d)", tc.used,
                 tc.unused);
    sid_seen ss;
    memset(&ss, 0, sizeof ss);
    cr_assert_eq(mqe2e_adb_members_list(db, "fleet", member_cb, &ss), MQE2E_OK);
    cr_assert_eq(ss.n, (size_t)(N_DEV + N_MEMBERS));
    epochs_seen es;
    memset(&es, 0, sizeof es);
    cr_assert_eq(mqe2e_adb_group_epochs_list(db, "fleet", epoch_cb, &es), MQE2E_OK);
    cr_assert_geq(es.n, 2U, "the rotation happened");
    cr_assert_leq(es.n, 1U + (size_t)attempts, "one epoch per rotation at most");
    uint8_t secrets[64][MQE2E_ADB_SECRET_BYTES];
    for (size_t i = 0; i < es.n; i++) {
        cr_assert_eq(es.e[i], (uint32_t)(i + 1U), "epochs 1..E, no gap or repeat");
        cr_assert_eq(mqe2e_adb_group_epoch_secret(secrets[i], db, "fleet", es.e[i]), MQE2E_OK);
        for (size_t k = 0; k < i; k++)
            cr_assert_neq(memcmp(secrets[k], secrets[i], 32), 0, "two epochs, one secret");
    }
    uint32_t top = es.e[es.n - 1];
    mqe2e_adb_close(db);

    /* m-2 seals under the newest epoch (its HELLO at connect); m-1, which
     * listened all along, must read it. */
    int got = 0;
    end = af_mono() + 60.0;
    for (int k = 0; !got; k++) {
        cr_assert_lt(af_mono(), end, "m-1 never read what m-2 sealed after the rotation");
        char pub[4096];
        snprintf(pub, sizeof pub,
                 "'%s' pub -K '%s' --key-file '%s' -h 127.0.0.1 -p %s -t fleet/m-2 -m after-%d "
                 ">/dev/null 2>&1",
                 fx.cli, m2, fx.keyfile, fx.port, k);
        cr_assert_eq(af_sh(NULL, 0, pub), 0, "mqe2e pub");
        int st = 0;
        pid_t w = waitpid(sub, &st, WNOHANG);
        if (w == sub) {
            cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "m-1's sub failed");
            got = 1;
        } else {
            af_sleep_ms(200);
        }
    }
    mqe2e_keystore *ks = af_open_ks(&fx, "m-1");
    uint32_t e1 = 0;
    uint8_t s1[32];
    cr_assert_eq(mqe2e_keystore_group_current_epoch(ks, "fleet", &e1), MQE2E_OK);
    cr_assert_eq(e1, top, "m-1 holds epoch %u, the store %u", e1, top);
    cr_assert_eq(mqe2e_keystore_group_secret(ks, "fleet", top, s1, NULL), MQE2E_OK);
    cr_assert_eq(memcmp(s1, secrets[es.n - 1], 32), 0, "m-1 holds the store's secret");
    mqe2e_keystore_close(ks);
    sodium_memzero(s1, sizeof s1);
    sodium_memzero(secrets, sizeof secrets);
}

static void start(const char *store)
{
    memset(&fx, 0, sizeof fx);
    if (store != NULL) snprintf(fx.db, sizeof fx.db, "%s", store);
    af_setup(&fx, AUTH_ID); /* the store: fx.db, else the fixture's choice */
    af_replica_start(&fx, 0, SHARE, NULL);
    af_replica_start(&fx, 1, SHARE, NULL);
}

static void stop(void)
{
    if (getenv("FAULTS_DEBUG") != NULL) {
        char cmd[1400];
        snprintf(cmd, sizeof cmd, "tail -n 30 '%s/replica-0.log' '%s/replica-1.log'", fx.dir,
                 fx.dir);
        (void)system(cmd);
    }
    af_teardown(&fx);
}

TestSuite(replica_kill, .fini = stop, .timeout = 400);

/* Two processes on one SQLite file in WAL mode: a replica set on one machine. */
Test(replica_kill, sqlite)
{
    unsetenv("MQE2E_TEST_PG_URI"); /* the fixture would take PostgreSQL */
    start(NULL);
    kill_one_replica();
}

/* On PostgreSQL: only under tests/support/pgcluster.sh (ctest replica_kill_pg). */
Test(replica_kill, postgresql)
{
    const char *uri = getenv("MQE2E_TEST_PG_URI");
    if (uri == NULL) cr_skip_test("no MQE2E_TEST_PG_URI: run through tests/support/pgcluster.sh");
    start(NULL); /* the fixture creates a fresh database in the cluster */
    kill_one_replica();
}
