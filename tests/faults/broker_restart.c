/*
 * A broker restart in the middle of an encrypted QoS 1 stream.
 *
 * An encrypted publisher streams numbered QoS 1 messages to an encrypted
 * subscriber; both use persistent sessions (cleansession 0, fixed client ids)
 * on a Mosquitto with persistence on. Half-way, while a batch is in flight,
 * Mosquitto is stopped (SIGTERM, or SIGKILL for a crash) and started again on
 * the same port; the clients reconnect and Paho resends what was in flight.
 * Checks: every message the publisher saw acknowledged reaches the
 * subscriber's application exactly once (the broker's and Paho's
 * redeliveries are suppressed by the replay window and counted as replay
 * drops), nothing is delivered twice, and a raw subscriber on '#' never sees
 * plaintext.
 */
#define _GNU_SOURCE /* memmem */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker.h"
#include "mqe2e/MQTTClient.h"
#include "spy.h"
#include "testutil.h"

#define N_MSGS 400
#define BATCH 20
#define RESTART_AT 210 /* mid-batch: messages 200..209 are in flight */
#define MARK "restart-secret-"
#define GROUP "plant"
#define FILTER "plant/#"
#define TOPIC "plant/line-1/count"
#define DEADLINE_MS 30000L

typedef struct tally {
    pthread_mutex_t m;
    int encrypted;
    int delivered[N_MSGS]; /* times each number reached the application */
    int total;
    int foreign; /* messages that are not ours */
    int plaintext_seen;
    int dropped;
    int lost; /* connectionLost calls */
} tally;

static void tally_init(tally *t, int encrypted)
{
    memset(t, 0, sizeof *t);
    pthread_mutex_init(&t->m, NULL);
    t->encrypted = encrypted;
}

static int on_message(void *ctx, char *topic, int topicLen, MQTTClient_message *msg)
{
    tally *t = ctx;
    (void)topicLen;
    pthread_mutex_lock(&t->m);
    t->total++;
    if (msg->payloadlen > 0 &&
        memmem(msg->payload, (size_t)msg->payloadlen, MARK, strlen(MARK)) != NULL)
        t->plaintext_seen++;
    if (t->encrypted) {
        char text[64];
        int n = -1;
        size_t len = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;
        if (len < sizeof text) {
            memcpy(text, msg->payload, len);
            text[len] = '\0';
            if (sscanf(text, MARK "%d", &n) != 1) n = -1;
        }
        if (n >= 0 && n < N_MSGS)
            t->delivered[n]++;
        else
            t->foreign++;
    }
    pthread_mutex_unlock(&t->m);
    ts_free_message(t->encrypted, &msg, topic);
    return 1;
}

static void on_lost(void *ctx, char *cause)
{
    tally *t = ctx;
    (void)cause;
    pthread_mutex_lock(&t->m);
    t->lost++;
    pthread_mutex_unlock(&t->m);
}

static void on_dropped(void *ctx, const char *topic, int code)
{
    tally *t = ctx;
    (void)topic;
    (void)code;
    pthread_mutex_lock(&t->m);
    t->dropped++;
    pthread_mutex_unlock(&t->m);
}

/* ---------- world ---------- */

static tb_broker broker;
static uint8_t secret[MQE2E_GROUP_SECRET_BYTES];
static tally sub_t, spy_t;
static mqe2e_keystore *ks_pub, *ks_sub;
static mqe2e_MQTTClient pub, sub;
static MQTTClient spy;
static int reconnects;

static mqe2e_keystore *make_keystore(const char *id)
{
    mqe2e_storage st;
    mqe2e_keystore *ks = NULL;
    cr_assert_eq(mqe2e_storage_memory(&st), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_create(&ks, st, id, 0), MQE2E_OK);
    cr_assert_eq(
        mqe2e_keystore_group_add_epoch(ks, GROUP, FILTER, 1, secret, (uint64_t)time(NULL)),
        MQE2E_OK);
    return ks;
}

static void persistent_opts(MQTTClient_connectOptions *o)
{
    MQTTClient_connectOptions init = MQTTClient_connectOptions_initializer;
    *o = init;
    o->keepAliveInterval = 5;
    o->cleansession = 0;
    o->connectTimeout = 2;
    o->retryInterval = 1;
}

static int enc_connect(mqe2e_MQTTClient c)
{
    MQTTClient_connectOptions co;
    persistent_opts(&co);
    return mqe2e_MQTTClient_connect(c, &co);
}

static mqe2e_MQTTClient enc_client(const char *id, mqe2e_keystore *ks, tally *t)
{
    mqe2e_MQTTClient c = NULL;
    mqe2e_MQTTClient_securityOptions so = mqe2e_MQTTClient_securityOptions_initializer;
    cr_assert_eq(
        mqe2e_MQTTClient_create(&c, tb_broker_uri(&broker), id, MQTTCLIENT_PERSISTENCE_NONE, NULL),
        MQTTCLIENT_SUCCESS);
    so.keystore = ks;
    so.onDropped = t != NULL ? on_dropped : NULL;
    so.context = t;
    cr_assert_eq(mqe2e_MQTTClient_setSecurity(c, &so), MQTTCLIENT_SUCCESS);
    if (t != NULL)
        cr_assert_eq(mqe2e_MQTTClient_setCallbacks(c, t, on_lost, on_message, NULL),
                     MQTTCLIENT_SUCCESS);
    int rc = enc_connect(c);
    cr_assert_eq(rc, MQTTCLIENT_SUCCESS, "connect %s: %d %s", id, rc,
                 mqe2e_MQTTClient_strerror(rc));
    return c;
}

/* Reconnect whatever is down; bounded. Never called from a callback. */
static void keep_connected(void)
{
    long deadline = tu_now_ms() + DEADLINE_MS;
    for (;;) {
        int ok = 1;
        if (!mqe2e_MQTTClient_isConnected(sub)) {
            ok &= enc_connect(sub) == MQTTCLIENT_SUCCESS;
            if (ok) reconnects++;
        }
        if (!mqe2e_MQTTClient_isConnected(pub)) {
            int r = enc_connect(pub) == MQTTCLIENT_SUCCESS;
            ok &= r;
            if (r) reconnects++;
        }
        if (!MQTTClient_isConnected(spy)) {
            MQTTClient_connectOptions co;
            persistent_opts(&co);
            int r = MQTTClient_connect(spy, &co) == MQTTCLIENT_SUCCESS;
            ok &= r;
            if (r) reconnects++;
        }
        if (ok) return;
        cr_assert_lt(tu_now_ms(), deadline, "clients could not reconnect");
        tu_sleep_ms(100);
    }
}

static void setup(void)
{
    cr_assert_eq(mqe2e_init(), MQE2E_OK);
    randombytes_buf(secret, sizeof secret);
    memset(&broker, 0, sizeof broker);
    broker.persistent = 1;
    /* Save after every change, so even a SIGKILL loses at most the last
     * moment (SIGTERM saves everything on the way out anyway). */
    broker.extra_conf = "autosave_on_changes true\nautosave_interval 1";
    cr_assert_eq(tb_broker_start(&broker), 0, "mosquitto did not start");
    tally_init(&sub_t, 1);
    tally_init(&spy_t, 0);
    reconnects = 0;
    ks_pub = make_keystore("restart-pub");
    ks_sub = make_keystore("restart-sub");
    sub = enc_client("restart-sub", ks_sub, &sub_t);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(sub, FILTER, 1), MQTTCLIENT_SUCCESS);
    /* The publisher reads its acknowledgements on Paho's thread too. */
    static tally pub_t;
    tally_init(&pub_t, 1);
    pub = enc_client("restart-pub", ks_pub, &pub_t);

    MQTTClient_connectOptions co;
    persistent_opts(&co);
    cr_assert_eq(
        MQTTClient_create(&spy, tb_broker_uri(&broker), "restart-spy", MQTTCLIENT_PERSISTENCE_NONE,
                          NULL),
        MQTTCLIENT_SUCCESS);
    cr_assert_eq(MQTTClient_setCallbacks(spy, &spy_t, on_lost, on_message, NULL),
                 MQTTCLIENT_SUCCESS);
    cr_assert_eq(MQTTClient_connect(spy, &co), MQTTCLIENT_SUCCESS);
    cr_assert_eq(MQTTClient_subscribe(spy, "#", 1), MQTTCLIENT_SUCCESS);
}

static void teardown(void)
{
    if (spy != NULL) {
        if (MQTTClient_isConnected(spy)) MQTTClient_disconnect(spy, 1000);
        MQTTClient_destroy(&spy);
    }
    if (pub != NULL) {
        if (mqe2e_MQTTClient_isConnected(pub)) mqe2e_MQTTClient_disconnect(pub, 1000);
        mqe2e_MQTTClient_destroy(&pub);
    }
    if (sub != NULL) {
        if (mqe2e_MQTTClient_isConnected(sub)) mqe2e_MQTTClient_disconnect(sub, 1000);
        mqe2e_MQTTClient_destroy(&sub);
    }
    mqe2e_keystore_close(ks_pub);
    mqe2e_keystore_close(ks_sub);
    ks_pub = ks_sub = NULL;
    tb_broker_stop(&broker);
    sodium_memzero(secret, sizeof secret);
}

TestSuite(broker_restart, .init = setup, .fini = teardown, .timeout = 300);

/* Publish number @p i, reconnecting and retrying while the broker is away.
 * A failed publish() was never handed to Paho, so retrying cannot duplicate. */
static MQTTClient_deliveryToken publish_number(int i)
{
    char text[64];
    int len = snprintf(text, sizeof text, MARK "%05d", i);
    long deadline = tu_now_ms() + DEADLINE_MS;
    for (;;) {
        MQTTClient_deliveryToken dt = 0;
        int rc = mqe2e_MQTTClient_publish(pub, TOPIC, len, text, 1, 0, &dt);
        if (rc == MQTTCLIENT_SUCCESS) return dt;
        cr_assert_lt(tu_now_ms(), deadline, "publish %d kept failing: %d %s", i, rc,
                     mqe2e_MQTTClient_strerror(rc));
        tu_sleep_ms(50);
        keep_connected();
    }
}

/* Wait for a publication's acknowledgement across reconnects; Paho resends
 * in-flight QoS 1 messages of a persistent session when it reconnects. */
static int wait_acked(MQTTClient_deliveryToken dt)
{
    long deadline = tu_now_ms() + DEADLINE_MS;
    for (;;) {
        int rc = mqe2e_MQTTClient_waitForCompletion(pub, dt, 1000);
        if (rc == MQTTCLIENT_SUCCESS) return 1;
        if (tu_now_ms() > deadline) return 0;
        keep_connected();
    }
}

static void stream_with_restart(int sig)
{
    static MQTTClient_deliveryToken tok[N_MSGS];
    static int acked[N_MSGS];
    int n_acked = 0;
    pid_t first_pid = broker.pid;

    memset(acked, 0, sizeof acked);
    for (int i = 0; i < N_MSGS; i++) {
        if (i == RESTART_AT) cr_assert_eq(tb_broker_restart(&broker, sig), 0);
        tok[i] = publish_number(i);
        if ((i + 1) % BATCH == 0 || i == N_MSGS - 1) {
            for (int j = i + 1 - ((i % BATCH) + 1); j <= i; j++) {
                acked[j] = wait_acked(tok[j]);
                n_acked += acked[j];
            }
        }
    }
    cr_assert_neq(broker.pid, first_pid, "the broker was not restarted");

    /* Wait (bounded) until every acknowledged number arrived. */
    long deadline = tu_now_ms() + DEADLINE_MS;
    int missing = 0;
    for (;;) {
        missing = 0;
        pthread_mutex_lock(&sub_t.m);
        for (int i = 0; i < N_MSGS; i++)
            if (acked[i] && sub_t.delivered[i] == 0) missing++;
        pthread_mutex_unlock(&sub_t.m);
        if (missing == 0 || tu_now_ms() > deadline) break;
        keep_connected();
        tu_sleep_ms(50);
    }
    /* Give late redeliveries a moment to show up as duplicates if they would. */
    tu_sleep_ms(1500);

    int duplicates = 0, unacked_delivered = 0, delivered = 0;
    pthread_mutex_lock(&sub_t.m);
    for (int i = 0; i < N_MSGS; i++) {
        if (sub_t.delivered[i] > 1) duplicates += sub_t.delivered[i] - 1;
        if (sub_t.delivered[i] > 0) delivered++;
        if (!acked[i] && sub_t.delivered[i] > 0) unacked_delivered++;
    }
    int foreign = sub_t.foreign, sub_lost = sub_t.lost, sub_dropped = sub_t.dropped;
    pthread_mutex_unlock(&sub_t.m);
    mqe2e_counters k;
    cr_assert_eq(mqe2e_MQTTClient_getCounters(sub, &k), MQTTCLIENT_SUCCESS);
    pthread_mutex_lock(&spy_t.m);
    int spy_total = spy_t.total, spy_plain = spy_t.plaintext_seen;
    pthread_mutex_unlock(&spy_t.m);

    printf("broker_restart (signal %d): published %d, acknowledged %d, delivered %d, "
           "missing %d, duplicates %d, delivered without ack %d\n",
           sig, N_MSGS, n_acked, delivered, missing, duplicates, unacked_delivered);
    printf("broker_restart (signal %d): reconnects %d, subscriber connection losses %d, "
           "replay drops %llu, other drops %llu, raw spy saw %d envelopes, plaintext %d\n",
           sig, reconnects, sub_lost, (unsigned long long)k.dropped[MQE2E_DROP_REPLAY],
           (unsigned long long)(sub_dropped - (int)k.dropped[MQE2E_DROP_REPLAY]), spy_total,
           spy_plain);
    fflush(stdout);

    cr_assert_gt(reconnects, 0, "no client noticed the restart");
    cr_assert_eq(n_acked, N_MSGS, "only %d of %d publications acknowledged", n_acked, N_MSGS);
    cr_assert_eq(missing, 0, "%d acknowledged messages never delivered", missing);
    cr_assert_eq(duplicates, 0, "%d duplicate deliveries", duplicates);
    cr_assert_eq(foreign, 0);
    cr_assert_eq(k.opened, (uint64_t)delivered);
    /* Redelivered copies may only ever be dropped as replays. */
    cr_assert_eq((uint64_t)sub_dropped, k.dropped[MQE2E_DROP_REPLAY],
                 "drops other than replay: %d total, %llu replay", sub_dropped,
                 (unsigned long long)k.dropped[MQE2E_DROP_REPLAY]);
    cr_assert_eq(spy_plain, 0, "the raw subscriber saw plaintext");
    cr_assert_geq(spy_total, N_MSGS, "raw spy saw only %d messages", spy_total);
}

Test(broker_restart, sigterm_mid_stream_exactly_once)
{
    stream_with_restart(SIGTERM);
}

Test(broker_restart, sigkill_mid_stream_exactly_once)
{
    stream_with_restart(SIGKILL);
}
