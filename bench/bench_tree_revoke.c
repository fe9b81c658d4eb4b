/*
 * Revocation in a key-tree group of 100,000 members (docs/PROTOCOL.md §10.8),
 * through a real Mosquitto and the real authority process.
 *
 * usage: bench_tree_revoke [--members N] [--conns C] [--rounds R] [--json FILE] [--smoke]
 *                          [--store URI]   (bench_authority.h: SQLite file or PostgreSQL)
 *
 * Set-up (not timed): after `mqe2e authority init`, before `authority run`,
 * the store is prepared in bulk with the authority's own store code: N
 * enrolled clients t-1..t-N (random keys), a group `huge` (topic `huge/#`)
 * with all of them as members, and its key tree (depth 17 for 100,000; tree
 * epoch 1, group epoch 2 = the tree's epoch secret) written by
 * authority_tree_db_save_all(). Enrolling 100,000 devices one by one through
 * the authority would take longer than the whole measurement and is measured
 * elsewhere (bench_enroll_rate). Each simulated member gets what a HELLO
 * reply would carry for it: its leaf key and TreePath (the joiner cost, in
 * bytes). One real HELLO (member t-1) checks that the authority hands out the
 * same epoch and path, and loads the tree into the authority's cache.
 *
 * The members are multiplexed over C Paho connections (default 4), each with
 * a pool (mqe2e_keytree_pool) of N/C members and one subscription to
 * P/tree/huge, each on its own thread. Then R times (default 3; --smoke: 1)
 * the operator runs `mqe2e revoke --id t-K`. The clock starts just before
 * the CLI is started (its start-up, keystore open and operator round trip
 * included) and stops when every connection has received the TreeUpdate,
 * verified its signature once, applied it to each of its members and derived
 * each member's new epoch secret. Reported: that time, the bytes the
 * authority published for the revocation (the TreeUpdate; the re-signed
 * revocation list on P/revocations, measured too, is the same for any group
 * size), the unwraps per member (max, mean), the joiner cost, and checks:
 * every remaining member derives one and the same new secret, equal to the
 * one the authority then hands out by HELLO; the revoked member gets
 * TREE_REVOKED and its HELLO is refused.
 *
 * Prints a human summary on stderr and one JSON line on stdout (also written
 * to FILE with --json). Exit status 0 when every check held; timings are
 * reported, never asserted.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <MQTTClient.h>
#include <sodium.h>

#include "authority_core.h"
#include "authority_tree_db.h"
#include "bench_authority.h"
#include "mqe2e/control.h"
#include "mqe2e/error.h"
#include "mqe2e/keytree.h"
#include "mqe2e/storage.h"

#ifndef MQE2E_BENCH_CLI
#define MQE2E_BENCH_CLI "mqe2e"
#endif

#define PREFIX "mqe2e"
#define AUTH_ID "authority-tree"
#define GROUP "huge"
#define TOPIC PREFIX "/tree/" GROUP
#define MAX_CONNS 16
#define MAX_ROUNDS 20
#define ROUND_LIMIT_S 60.0

static long n_members = 100000;
static unsigned depth;
static mqe2e_keytree *tree;         /* the bench's copy, as written to the store */
static uint8_t (*dh_sk)[32];        /* member i's X25519 secret (HELLO) */
static uint8_t (*dh_pk)[32];
static size_t path_bytes;
static size_t rl_bytes; /* the last revocation list seen on P/revocations */

static const char *owner_of(uint32_t leaf, void *user)
{
    static char id[32];
    (void)user;
    snprintf(id, sizeof id, "t-%lu", (unsigned long)leaf + 1U);
    return id;
}

static void check(int rc, const char *what)
{
    if (rc != MQE2E_OK) {
        fprintf(stderr, "bench_tree_revoke: %s: %s\n", what, mqe2e_strerror(rc));
        ba_die("set-up failed");
    }
}

/* The store, in bulk, with the authority's own code (ba.prepare). */
static void prepare_store(void)
{
    double t0 = ba_mono();
    uint8_t key[MQE2E_STORAGE_KEY_BYTES], dbkey[MQE2E_ADB_KEY_BYTES];
    mqe2e_storage st;
    mqe2e_keystore *ks = NULL;
    mqe2e_adb *db = NULL;
    check(mqe2e_storage_read_key_file(key, ba.key), "key file");
    check(mqe2e_storage_file_key(&st, ba.auth_ks, key), "keystore storage");
    sodium_memzero(key, sizeof key);
    check(mqe2e_keystore_open(&ks, st), "authority keystore");
    check(authority_db_key(dbkey, ks), "database key");
    check(mqe2e_adb_open(&db, ba.db, dbkey), "database");
    sodium_memzero(dbkey, sizeof dbkey);

    uint8_t secret[32], id[16];
    randombytes_buf(secret, sizeof secret);
    check(mqe2e_adb_tx_begin(db), "begin");
    check(mqe2e_adb_group_create(db, GROUP, GROUP "/#", NULL, (uint64_t)time(NULL), secret),
          "group");
    uint64_t now = (uint64_t)time(NULL);
    for (long i = 0; i < n_members; i++) {
        uint8_t sign_pk[32], sign_sk[64];
        crypto_sign_keypair(sign_pk, sign_sk);
        crypto_box_keypair(dh_pk[i], dh_sk[i]);
        uint64_t serial = 0;
        uint32_t sid = 0;
        const char *cid = owner_of((uint32_t)i, NULL);
        check(mqe2e_adb_client_upsert_enrolled(&serial, db, cid, "device", sign_pk, dh_pk[i], NULL,
                                               0, now, now + 86400U),
              "client");
        check(mqe2e_adb_member_add(&sid, db, GROUP, cid, now), "member");
        sodium_memzero(sign_sk, sizeof sign_sk);
    }
    /* The tree at epoch 1 with every leaf 0..N-1 occupied; group epoch 2. */
    randombytes_buf(id, sizeof id);
    check(mqe2e_keytree_restore(&tree, id, depth, 1), "tree");
    for (long i = 0; i < n_members; i++)
        check(mqe2e_keytree_restore_leaf(tree, (uint32_t)i), "leaf");
    check(authority_tree_db_create(db, GROUP, tree, 1), "tree row");
    check(authority_tree_db_save_all(db, GROUP, tree, owner_of, NULL), "tree rows");
    uint32_t e = 0;
    check(mqe2e_keytree_epoch_secret(tree, secret), "epoch secret");
    check(mqe2e_adb_group_rotate(&e, db, GROUP, secret, now), "rotate");
    sodium_memzero(secret, sizeof secret);
    if (e != 2) ba_die("group epoch is not 2");
    check(mqe2e_adb_tx_commit(db), "commit");
    mqe2e_adb_close(db);
    mqe2e_keystore_close(ks);
    fprintf(stderr, "bench_tree_revoke: store prepared: %ld members, depth %u, in %.1f s\n",
            n_members, depth, ba_mono() - t0);
}

/* ------------------------------------------------------------ connections */

typedef struct conn {
    int index;
    MQTTClient c;
    mqe2e_keytree_pool *pool;
    long first; /* member index of pool slot 0 */
    long n;
    uint32_t want_to; /* tree epoch to reach this round */
    /* results of the round */
    double done_at;
    long applied, revoked, failed;
    unsigned max_unwraps;
    double sum_unwraps;
    size_t update_bytes;
    uint8_t secret[32]; /* the new epoch secret all its members derived */
    int secrets_differ;
} conn;

static conn conns[MAX_CONNS];
static int n_conns = 4;

static void *conn_round(void *arg)
{
    conn *k = arg;
    double end = ba_mono() + ROUND_LIMIT_S;
    k->done_at = -1;
    while (ba_mono() < end) {
        char *topic = NULL;
        int tl = 0;
        MQTTClient_message *m = NULL;
        if (MQTTClient_receive(k->c, &topic, &tl, &m, 200) != MQTTCLIENT_SUCCESS || m == NULL) {
            if (topic != NULL) MQTTClient_free(topic);
            continue;
        }
        mqe2e_keytree_update u;
        int rc = mqe2e_keytree_update_open(&u, m->payload, (size_t)m->payloadlen,
                                           ba.pin.sign_public);
        if (rc == MQE2E_OK && u.to_epoch == k->want_to) {
            k->update_bytes = (size_t)m->payloadlen;
            k->applied = k->revoked = k->failed = 0;
            k->max_unwraps = 0;
            k->sum_unwraps = 0;
            k->secrets_differ = 0;
            for (long i = 0; i < k->n; i++) {
                unsigned uw = 0;
                int r = mqe2e_keytree_pool_apply(k->pool, (uint32_t)i, &u, &uw);
                if (r == MQE2E_ERR_TREE_REVOKED || r == MQE2E_ERR_STATE) {
                    k->revoked++;
                    continue;
                }
                if (r != MQE2E_OK) {
                    k->failed++;
                    continue;
                }
                uint8_t s[32];
                (void)mqe2e_keytree_pool_epoch_secret(k->pool, (uint32_t)i, s);
                if (k->applied == 0)
                    memcpy(k->secret, s, 32);
                else if (sodium_memcmp(s, k->secret, 32) != 0)
                    k->secrets_differ = 1;
                sodium_memzero(s, sizeof s);
                k->applied++;
                k->sum_unwraps += uw;
                if (uw > k->max_unwraps) k->max_unwraps = uw;
            }
            k->done_at = ba_mono();
        }
        MQTTClient_freeMessage(&m);
        MQTTClient_free(topic);
        if (k->done_at > 0) break;
    }
    return NULL;
}

static void conn_open(conn *k, const char *uri)
{
    char cid[64];
    snprintf(cid, sizeof cid, "tree-gw-%d", k->index);
    MQTTClient_connectOptions o = MQTTClient_connectOptions_initializer;
    o.cleansession = 1;
    o.keepAliveInterval = 60;
    if (MQTTClient_create(&k->c, uri, cid, MQTTCLIENT_PERSISTENCE_NONE, NULL) !=
            MQTTCLIENT_SUCCESS ||
        MQTTClient_connect(k->c, &o) != MQTTCLIENT_SUCCESS ||
        MQTTClient_subscribe(k->c, TOPIC, 1) != MQTTCLIENT_SUCCESS)
        ba_die("cannot connect a member connection");
}

/* Each connection's members from what their HELLO replies carry. */
static void pools_fill(void)
{
    uint8_t id[16], path[MQE2E_KEYTREE_PATH_BYTES(MQE2E_KEYTREE_MAX_DEPTH)], lk[32];
    check(mqe2e_keytree_id(tree, id), "tree id");
    long per = (n_members + n_conns - 1) / n_conns, next = 0;
    for (int c = 0; c < n_conns; c++) {
        conn *k = &conns[c];
        k->index = c;
        k->first = next;
        k->n = next + per <= n_members ? per : n_members - next;
        check(mqe2e_keytree_pool_new(&k->pool, id, depth, (uint32_t)k->n), "pool");
        for (long i = 0; i < k->n; i++) {
            uint32_t leaf = (uint32_t)(k->first + i), idx = 0;
            check(mqe2e_keytree_node_key(tree, (1U << depth) + leaf, lk), "leaf key");
            check(mqe2e_keytree_path(tree, leaf, path, sizeof path, &path_bytes), "path");
            check(mqe2e_keytree_pool_add(k->pool, &idx, lk, path, path_bytes), "pool add");
        }
        next += k->n;
    }
    sodium_memzero(lk, sizeof lk);
}

/* A real HELLO of member i: its reply's current bundle of GROUP (epoch, secret, path epoch). */
static int hello(long i, uint32_t *epoch, uint8_t secret[32], uint32_t *path_epoch, MQTTClient c)
{
    char id[32], topic[64];
    snprintf(id, sizeof id, "t-%ld", i + 1);
    snprintf(topic, sizeof topic, PREFIX "/client/%s", id);
    if (MQTTClient_subscribe(c, topic, 1) != MQTTCLIENT_SUCCESS) return -1;
    uint8_t frame[MQE2E_CONTROL_MAX_FRAME_BYTES];
    size_t len = 0;
    mqe2e_hello_client *st = NULL;
    if (mqe2e_hello_begin(&st, frame, sizeof frame, &len, PREFIX, id, AUTH_ID, dh_sk[i],
                          ba.pin.dh_public, 0) != MQE2E_OK)
        return -1;
    MQTTClient_deliveryToken tok = 0;
    MQTTClient_publish(c, PREFIX "/authority", (int)len, frame, 1, 0, &tok);
    MQTTClient_waitForCompletion(c, tok, 5000);
    int rc = 1;
    double end = ba_mono() + 10.0;
    while (rc == 1 && ba_mono() < end) {
        char *t = NULL;
        int tl = 0;
        MQTTClient_message *m = NULL;
        if (MQTTClient_receive(c, &t, &tl, &m, 200) != MQTTCLIENT_SUCCESS || m == NULL) {
            if (t != NULL) MQTTClient_free(t);
            continue;
        }
        if (strcmp(t, PREFIX "/revocations") == 0) rl_bytes = (size_t)m->payloadlen;
        if (strcmp(t, topic) == 0) {
            mqe2e_control_update u;
            memset(&u, 0, sizeof u);
            rc = mqe2e_hello_finish(st, &u, m->payload, (size_t)m->payloadlen);
            for (size_t b = 0; rc == MQE2E_OK && b < u.n_bundles; b++) {
                const mqe2e_key_bundle *k = &u.bundles[b];
                if (strcmp(k->group, GROUP) != 0 || k->retired_at != 0) continue;
                *epoch = k->epoch;
                memcpy(secret, k->secret, 32);
                *path_epoch = k->tree_path_len >= 23U
                                  ? ((uint32_t)k->tree_path[19] << 24) |
                                        ((uint32_t)k->tree_path[20] << 16) |
                                        ((uint32_t)k->tree_path[21] << 8) | k->tree_path[22]
                                  : 0U;
            }
            mqe2e_control_update_wipe(&u);
        }
        MQTTClient_freeMessage(&m);
        MQTTClient_free(t);
    }
    mqe2e_hello_client_free(st);
    MQTTClient_unsubscribe(c, topic);
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int rounds = 3, smoke = 0;
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--members") == 0 && i + 1 < argc)
            n_members = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--conns") == 0 && i + 1 < argc)
            n_conns = (int)strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = (int)strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc)
            json = argv[++i];
        else if (strcmp(argv[i], "--smoke") == 0)
            smoke = 1;
        else if (strcmp(argv[i], "--store") == 0 && ba_store_arg(argc, argv, &i))
            continue;
        else {
            fprintf(stderr, "usage: bench_tree_revoke [--members N] [--conns C] [--rounds R] "
                            "[--json FILE] [--smoke] [--store URI]\n");
            return 2;
        }
    }
    if (smoke) {
        n_members = 1000;
        rounds = 1;
    }
    if (n_members < 4 || n_members > 1000000 || n_conns < 1 || n_conns > MAX_CONNS ||
        rounds < 1 || rounds > MAX_ROUNDS || rounds >= n_members / 2) {
        fprintf(stderr, "bench_tree_revoke: bad arguments\n");
        return 2;
    }
    if (sodium_init() < 0 || mqe2e_init() != MQE2E_OK) return 2;
    depth = 1;
    while ((1L << depth) < n_members) depth++;
    dh_sk = calloc((size_t)n_members, sizeof *dh_sk);
    dh_pk = calloc((size_t)n_members, sizeof *dh_pk);
    if (dh_sk == NULL || dh_pk == NULL) return 2;

    ba.name = "bench_tree_revoke";
    ba.cli = MQE2E_BENCH_CLI;
    ba.prepare = prepare_store;
    ba_setup("mqe2e-bench-tree", AUTH_ID, NULL);
    pools_fill();
    char uri[64];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%s", ba.port);
    for (int c = 0; c < n_conns; c++)
        conn_open(&conns[c], uri);
    MQTTClient probe;
    conn ctl;
    memset(&ctl, 0, sizeof ctl);
    ctl.index = 99;
    conn_open(&ctl, uri);
    probe = ctl.c;
    MQTTClient_unsubscribe(probe, TOPIC);
    if (MQTTClient_subscribe(probe, PREFIX "/revocations", 1) != MQTTCLIENT_SUCCESS)
        ba_die("subscribe revocations");

    /* Warm-up and check: member 1's HELLO carries the tree's epoch and path. */
    uint32_t he = 0, hpe = 0;
    uint8_t hs[32], ts[32];
    double th = ba_mono();
    if (hello(0, &he, hs, &hpe, probe) != MQE2E_OK) ba_die("HELLO of t-1 failed");
    double hello_ms = (ba_mono() - th) * 1e3;
    check(mqe2e_keytree_epoch_secret(tree, ts), "epoch secret");
    if (he != 2 || hpe != 1 || sodium_memcmp(hs, ts, 32) != 0)
        ba_die("the authority's HELLO does not match the prepared tree");
    fprintf(stderr, "bench_tree_revoke: first HELLO (tree loaded by the authority) %.0f ms\n",
            hello_ms);

    int ok = 1;
    double total_ms[MAX_ROUNDS];
    size_t upd_bytes[MAX_ROUNDS];
    unsigned max_uw = 0;
    double mean_uw = 0;
    long victims[MAX_ROUNDS];
    for (int r = 0; r < rounds; r++) {
        long victim = (n_members / (rounds + 1)) * (r + 1) + 7;
        if (victim >= n_members) victim = n_members - 1;
        victims[r] = victim;
        pthread_t th_[MAX_CONNS];
        for (int c = 0; c < n_conns; c++) {
            conns[c].want_to = (uint32_t)(2 + r);
            if (pthread_create(&th_[c], NULL, conn_round, &conns[c]) != 0) ba_die("thread");
        }
        char id[32];
        snprintf(id, sizeof id, "t-%ld", victim + 1);
        const char *args[] = {"revoke",     "--id", id,   "-K",    ba.op_ks,
                              "--key-file", ba.key, "-p", ba.port, "--authority",
                              ba.pin_text,  "-W",   "60", NULL};
        double t0 = ba_mono();
        int st = ba_run_cli(NULL, args);
        for (int c = 0; c < n_conns; c++)
            pthread_join(th_[c], NULL);
        double last = 0;
        long applied = 0, revoked = 0, failed = 0;
        double sum_uw = 0;
        size_t ub = 0;
        for (int c = 0; c < n_conns; c++) {
            conn *k = &conns[c];
            if (k->done_at < 0) {
                fprintf(stderr, "bench_tree_revoke: connection %d got no update\n", c);
                ok = 0;
                continue;
            }
            if (k->done_at > last) last = k->done_at;
            applied += k->applied;
            revoked += k->revoked;
            failed += k->failed;
            sum_uw += k->sum_unwraps;
            if (k->max_unwraps > max_uw) max_uw = k->max_unwraps;
            ub = k->update_bytes;
            if (k->secrets_differ || (c > 0 && sodium_memcmp(k->secret, conns[0].secret, 32) != 0)) {
                fprintf(stderr, "bench_tree_revoke: members derived different secrets\n");
                ok = 0;
            }
        }
        if (st != 0) {
            fprintf(stderr, "bench_tree_revoke: `mqe2e revoke` failed (exit %d)\n", st);
            ok = 0;
        }
        total_ms[r] = (last - t0) * 1e3;
        upd_bytes[r] = ub;
        mean_uw = applied > 0 ? sum_uw / (double)applied : 0;
        if (applied != n_members - (r + 1) || revoked != r + 1 || failed != 0) {
            fprintf(stderr, "bench_tree_revoke: round %d: %ld applied, %ld revoked, %ld failed\n",
                    r + 1, applied, revoked, failed);
            ok = 0;
        }
        /* The authority now hands out the epoch the members derived. */
        uint32_t e2 = 0, pe2 = 0;
        if (hello(0, &e2, hs, &pe2, probe) != MQE2E_OK || e2 != (uint32_t)(3 + r) ||
            sodium_memcmp(hs, conns[0].secret, 32) != 0) {
            fprintf(stderr, "bench_tree_revoke: round %d: HELLO gives epoch %lu, not the derived one\n",
                    r + 1, (unsigned long)e2);
            ok = 0;
        }
        uint8_t dummy[32];
        uint32_t de = 0, dpe = 0;
        if (hello(victim, &de, dummy, &dpe, probe) == MQE2E_OK) {
            fprintf(stderr, "bench_tree_revoke: the revoked member got a HELLO answer\n");
            ok = 0;
        }
        fprintf(stderr,
                "bench_tree_revoke: round %d: revoke t-%ld: %ld members at the new epoch in %.0f ms; "
                "one update of %zu bytes; unwraps per member max %u, mean %.2f\n",
                r + 1, victim + 1, applied, total_ms[r], ub, max_uw, mean_uw);
    }
    /* The revocation list the authority re-signed (retained): its size. */
    {
        char *t = NULL;
        int tl = 0;
        MQTTClient_message *m = NULL;
        double end = ba_mono() + 2.0;
        while (ba_mono() < end) {
            if (MQTTClient_receive(probe, &t, &tl, &m, 200) == MQTTCLIENT_SUCCESS && m != NULL) {
                if (strcmp(t, PREFIX "/revocations") == 0) rl_bytes = (size_t)m->payloadlen;
                MQTTClient_freeMessage(&m);
                MQTTClient_free(t);
                t = NULL;
            }
        }
    }
    double s[MAX_ROUNDS];
    memcpy(s, total_ms, sizeof s);
    qsort(s, (size_t)rounds, sizeof *s, cmp_double);
    double p50 = rounds % 2 ? s[rounds / 2] : (s[rounds / 2 - 1] + s[rounds / 2]) / 2.0;
    double mx = s[rounds - 1];
    size_t ub_max = 0;
    for (int r = 0; r < rounds; r++)
        if (upd_bytes[r] > ub_max) ub_max = upd_bytes[r];
    size_t joiner = path_bytes + 32U;
    fprintf(stderr,
            "bench_tree_revoke: %ld members over %d connections, depth %u: revocation to all "
            "remaining members p50 %.0f ms, max %.0f ms (target <= 2000); TreeUpdate <= %zu bytes "
            "(target <= 4096; revocation list %zu bytes); unwraps per member max %u (target <= 17), "
            "mean %.2f; joiner gets %zu bytes (target <= 1024)%s\n",
            n_members, n_conns, depth, p50, mx, ub_max, rl_bytes, max_uw, mean_uw, joiner,
            ok ? "" : "; CHECKS FAILED");
    char rl[512] = "";
    for (int r = 0; r < rounds; r++) {
        size_t l = strlen(rl);
        snprintf(rl + l, sizeof rl - l, "%s%.1f", r > 0 ? ", " : "", total_ms[r]);
    }
    char line[2048];
    snprintf(line, sizeof line,
             "{\"bench\": \"tree_revoke\", \"smoke\": %s, \"members\": %ld, \"connections\": %d, "
             "\"depth\": %u, \"rounds\": %d, \"revocation_to_all_members_ms\": {\"p50\": %.1f, "
             "\"max\": %.1f, \"rounds\": [%s]}, \"tree_update_bytes\": %zu, "
             "\"revocation_list_bytes\": %zu, \"unwraps_per_member_max\": %u, "
             "\"unwraps_per_member_mean\": %.2f, \"joiner_bytes\": %zu, \"first_hello_ms\": %.1f, "
             "\"checks_ok\": %s}",
             smoke ? "true" : "false", n_members, n_conns, depth, rounds, p50, mx, rl, ub_max,
             rl_bytes, max_uw, mean_uw, joiner, hello_ms, ok ? "true" : "false");
    printf("%s\n", line);
    if (json != NULL) {
        FILE *f = fopen(json, "w");
        if (f == NULL || fprintf(f, "%s\n", line) < 0 || fclose(f) != 0)
            fprintf(stderr, "bench_tree_revoke: cannot write %s\n", json);
    }
    (void)victims;
    for (int c = 0; c < n_conns; c++) {
        MQTTClient_disconnect(conns[c].c, 1000);
        MQTTClient_destroy(&conns[c].c);
        mqe2e_keytree_pool_free(conns[c].pool);
    }
    MQTTClient_disconnect(probe, 1000);
    MQTTClient_destroy(&probe);
    mqe2e_keytree_free(tree);
    sodium_memzero(dh_sk, (size_t)n_members * sizeof *dh_sk);
    free(dh_sk);
    free(dh_pk);
    ba_cleanup();
    return ok ? 0 : 1;
}
