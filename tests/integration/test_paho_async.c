/*
 * The encrypted asynchronous front (and the synchronous front's MQTT v5
 * calls) against a real Mosquitto and real Paho: round trips at every QoS
 * with onSuccess callbacks, the no-plaintext-fallback rule, hostile
 * injections, redelivery, automatic reconnect with messages sent while
 * disconnected (sealed once, never re-sealed), and v5 user properties.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker.h"
#include "paho_inbox.h"
#include "mqe2e/MQTTAsync.h"
#include "mqe2e/MQTTClient.h"
#include "spy.h"
#include "testutil.h"

#define MAXMSG 64
#define WAIT_MS 10000L
#define GROUP "sensors"
#define FILTER "sensors/#"

/* ---------- what one client saw ---------- */

/* What one client saw (support/paho_inbox.h). */
typedef pinbox inbox;

static int on_async_message(void *ctx, char *topic, int topicLen, MQTTAsync_message *msg)
{
    inbox *ib = ctx;
    (void)topicLen;
    pthread_mutex_lock(&ib->m);
    ib->calls++;
    if (ib->reject_first > 0) {
        ib->reject_first--;
        pthread_mutex_unlock(&ib->m);
        return 0;
    }
    pinbox_record(ib, topic, msg->payload, msg->payloadlen, msg->qos, &msg->properties);
    pthread_mutex_unlock(&ib->m);
    if (ib->encrypted) {
        mqe2e_MQTTAsync_freeMessage(&msg);
        mqe2e_MQTTAsync_free(topic);
    } else {
        MQTTAsync_freeMessage(&msg);
        MQTTAsync_free(topic);
    }
    return 1;
}

static int on_sync_message(void *ctx, char *topic, int topicLen, MQTTClient_message *msg)
{
    inbox *ib = ctx;
    (void)topicLen;
    pthread_mutex_lock(&ib->m);
    ib->calls++;
    pinbox_record(ib, topic, msg->payload, msg->payloadlen, msg->qos, &msg->properties);
    pthread_mutex_unlock(&ib->m);
    ts_free_message(ib->encrypted, &msg, topic);
    return 1;
}

static void on_log(void *ctx, mqe2e_log_level level, const char *message)
{
    (void)ctx;
    printf("  log[%d] %s\n", (int)level, message);
}

static void on_success(void *ctx, MQTTAsync_successData *d)
{
    inbox *ib = ctx;
    (void)d;
    pthread_mutex_lock(&ib->m);
    ib->ok++;
    pthread_mutex_unlock(&ib->m);
}

static void on_failure(void *ctx, MQTTAsync_failureData *d)
{
    inbox *ib = ctx;
    printf("  request failed: %d\n", d != NULL ? d->code : 0);
    pthread_mutex_lock(&ib->m);
    ib->failed++;
    pthread_mutex_unlock(&ib->m);
}

static void on_success5(void *ctx, MQTTAsync_successData5 *d)
{
    on_success(ctx, NULL);
    (void)d;
}

static void on_failure5(void *ctx, MQTTAsync_failureData5 *d)
{
    inbox *ib = ctx;
    printf("  request failed (v5): %d reason %d\n", d != NULL ? d->code : 0,
           d != NULL ? (int)d->reasonCode : 0);
    pthread_mutex_lock(&ib->m);
    ib->failed++;
    pthread_mutex_unlock(&ib->m);
}

static void on_connected(void *ctx, char *cause)
{
    inbox *ib = ctx;
    (void)cause;
    pthread_mutex_lock(&ib->m);
    ib->connected++;
    pthread_mutex_unlock(&ib->m);
}

/* Wait for one more onSuccess than @p before; fail on onFailure. */
static void wait_ok(inbox *ib, int before, const char *what)
{
    cr_assert(pinbox_wait_field(ib, &ib->ok, before + 1, WAIT_MS), "%s: no onSuccess", what);
    cr_assert_eq(pinbox_get(ib, &ib->failed), 0, "%s: onFailure called", what);
}

static uint64_t drops_total(const mqe2e_counters *k)
{
    uint64_t t = 0;
    for (int i = 0; i < MQE2E_DROP_REASON_COUNT; i++)
        t += k->dropped[i];
    return t;
}

/* ---------- keystores and clients ---------- */

static uint8_t group_secret[MQE2E_GROUP_SECRET_BYTES];
static tb_broker broker;

static mqe2e_keystore *make_keystore(const char *client_id)
{
    mqe2e_storage st;
    mqe2e_keystore *ks = NULL;
    cr_assert_eq(mqe2e_storage_memory(&st), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_create(&ks, st, client_id, 0), MQE2E_OK);
    cr_assert_eq(
        mqe2e_keystore_group_add_epoch(ks, GROUP, FILTER, 1, group_secret, (uint64_t)time(NULL)),
        MQE2E_OK);
    return ks;
}

typedef struct async_cfg {
    int mqtt5;
    int persistent_session; /* cleansession 0 + automatic reconnect */
    int send_while_disconnected;
} async_cfg;

/* An encrypted async client, connected (waits for onSuccess). @p ib gets
 * messages, drops, and every onSuccess/onFailure. */
static mqe2e_MQTTAsync enc_async(const char *id, mqe2e_keystore *ks, const mqe2e_policy *policy,
                                 inbox *ib, const async_cfg *cfg)
{
    mqe2e_MQTTAsync c = NULL;
    MQTTAsync_createOptions cro = MQTTAsync_createOptions_initializer;
    mqe2e_MQTTAsync_securityOptions so = mqe2e_MQTTAsync_securityOptions_initializer;
    MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
    MQTTAsync_connectOptions co5 = MQTTAsync_connectOptions_initializer5;
    async_cfg none = {0, 0, 0};

    if (cfg == NULL) cfg = &none;
    if (cfg->mqtt5) {
        co = co5;
        cro.MQTTVersion = MQTTVERSION_5;
    }
    cro.sendWhileDisconnected = cfg->send_while_disconnected;
    cr_assert_eq(mqe2e_MQTTAsync_createWithOptions(&c, tb_broker_uri(&broker), id,
                                                   MQTTCLIENT_PERSISTENCE_NONE, NULL, &cro),
                 MQTTASYNC_SUCCESS);
    so.keystore = ks;
    so.policy = policy;
    so.onDropped = pinbox_on_dropped;
    so.onLog = on_log;
    so.context = ib;
    cr_assert_eq(mqe2e_MQTTAsync_setSecurity(c, &so), MQTTASYNC_SUCCESS);
    cr_assert_eq(mqe2e_MQTTAsync_setCallbacks(c, ib, NULL, on_async_message, NULL),
                 MQTTASYNC_SUCCESS);
    cr_assert_eq(mqe2e_MQTTAsync_setConnected(c, ib, on_connected), MQTTASYNC_SUCCESS);
    co.keepAliveInterval = 20;
    co.context = ib;
    if (cfg->mqtt5) {
        co.onSuccess5 = on_success5;
        co.onFailure5 = on_failure5;
        co.cleanstart = 1;
    } else {
        co.onSuccess = on_success;
        co.onFailure = on_failure;
        co.cleansession = cfg->persistent_session ? 0 : 1;
    }
    if (cfg->persistent_session) {
        co.automaticReconnect = 1;
        co.minRetryInterval = 1;
        co.maxRetryInterval = 2;
    }
    int before = pinbox_get(ib, &ib->ok);
    int rc = mqe2e_MQTTAsync_connect(c, &co);
    cr_assert_eq(rc, MQTTASYNC_SUCCESS, "connect %s: %d %s", id, rc, mqe2e_MQTTAsync_strerror(rc));
    wait_ok(ib, before, "connect");
    cr_assert(mqe2e_MQTTAsync_isConnected(c));
    return c;
}

static void enc_async_subscribe(mqe2e_MQTTAsync c, inbox *ib, const char *filter, int qos)
{
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.context = ib;
    ro.onSuccess = on_success;
    ro.onFailure = on_failure;
    int before = pinbox_get(ib, &ib->ok);
    cr_assert_eq(mqe2e_MQTTAsync_subscribe(c, filter, qos, &ro), MQTTASYNC_SUCCESS);
    wait_ok(ib, before, "subscribe");
}

static void enc_async_close(mqe2e_MQTTAsync *c)
{
    if (*c != NULL && mqe2e_MQTTAsync_isConnected(*c)) {
        MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
        d.timeout = 1000;
        (void)mqe2e_MQTTAsync_disconnect(*c, &d);
        for (int i = 0; i < 200 && mqe2e_MQTTAsync_isConnected(*c); i++)
            tu_sleep_ms(10);
    }
    mqe2e_MQTTAsync_destroy(c);
    cr_assert_null(*c);
}

/* Raw (unencrypted) Paho sync client: the sniffer and the injector. */
static MQTTClient raw_client(const char *id, inbox *ib)
{
    MQTTClient c = NULL;
    MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer;
    cr_assert_eq(
        MQTTClient_create(&c, tb_broker_uri(&broker), id, MQTTCLIENT_PERSISTENCE_NONE, NULL),
        MQTTCLIENT_SUCCESS);
    if (ib != NULL)
        cr_assert_eq(MQTTClient_setCallbacks(c, ib, NULL, on_sync_message, NULL),
                     MQTTCLIENT_SUCCESS);
    cr_assert_eq(MQTTClient_connect(c, &co), MQTTCLIENT_SUCCESS);
    return c;
}

static void raw_pub(MQTTClient c, const char *topic, const void *p, int len)
{
    MQTTClient_deliveryToken dt = 0;
    cr_assert_eq(MQTTClient_publish(c, topic, len, p, 1, 0, &dt), MQTTCLIENT_SUCCESS);
    cr_assert_eq(MQTTClient_waitForCompletion(c, dt, 5000), MQTTCLIENT_SUCCESS);
}

static void raw_close(MQTTClient *c)
{
    if (*c != NULL && MQTTClient_isConnected(*c)) MQTTClient_disconnect(*c, 1000);
    MQTTClient_destroy(c);
}

/* ---------- fixture ---------- */

static void setup(void)
{
    cr_assert_eq(mqe2e_init(), MQE2E_OK);
    randombytes_buf(group_secret, sizeof group_secret);
    memset(&broker, 0, sizeof broker);
    broker.persistent = 1;
    cr_assert_eq(tb_broker_start(&broker), 0, "mosquitto did not start");
}

static void teardown(void)
{
    tb_broker_stop(&broker);
    sodium_memzero(group_secret, sizeof group_secret);
}

TestSuite(paho_async, .init = setup, .fini = teardown, .timeout = 120);

/* ---------- tests ---------- */

Test(paho_async, round_trip_every_qos_with_on_success)
{
    inbox sub_in, pub_in;
    pinbox_init(&sub_in, 1);
    pinbox_init(&pub_in, 1);
    mqe2e_keystore *ks_pub = make_keystore("apub"), *ks_sub = make_keystore("asub");
    mqe2e_MQTTAsync sub = enc_async("asub", ks_sub, NULL, &sub_in, NULL);
    mqe2e_MQTTAsync pub = enc_async("apub", ks_pub, NULL, &pub_in, NULL);
    enc_async_subscribe(sub, &sub_in, FILTER, 2);

    static const uint8_t binary[] = {0x00, 0xff, 0x00, 0x80};
    for (int qos = 0; qos <= 2; qos++) {
        char t[64];
        MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
        ro.context = &pub_in;
        ro.onSuccess = on_success;
        ro.onFailure = on_failure;
        snprintf(t, sizeof t, "sensors/q%d", qos);
        int before = pinbox_get(&pub_in, &pub_in.ok);
        cr_assert_eq(mqe2e_MQTTAsync_send(pub, t, (int)sizeof binary, binary, qos, 0, &ro),
                     MQTTASYNC_SUCCESS);
        wait_ok(&pub_in, before, "send");
        cr_assert(pinbox_wait_found(&sub_in, t, WAIT_MS), "nothing arrived on %s", t);
        int i = pinbox_find(&sub_in, t);
        cr_assert_eq(sub_in.msg[i].len, (int)sizeof binary);
        cr_assert_arr_eq(sub_in.msg[i].payload, binary, sizeof binary);
        cr_assert_eq(sub_in.msg[i].qos, qos);

        /* sendMessage + waitForCompletion */
        MQTTAsync_message m = MQTTAsync_message_initializer;
        MQTTAsync_responseOptions ro2 = MQTTAsync_responseOptions_initializer;
        m.payload = (void *)"text";
        m.payloadlen = 4;
        m.qos = qos;
        snprintf(t, sizeof t, "sensors/m%d", qos);
        cr_assert_eq(mqe2e_MQTTAsync_sendMessage(pub, t, &m, &ro2), MQTTASYNC_SUCCESS);
        cr_assert_eq(mqe2e_MQTTAsync_waitForCompletion(pub, ro2.token, 5000), MQTTASYNC_SUCCESS);
        cr_assert(pinbox_wait_found(&sub_in, t, WAIT_MS));
        i = pinbox_find(&sub_in, t);
        cr_assert_eq(sub_in.msg[i].len, 4);
        cr_assert_arr_eq(sub_in.msg[i].payload, "text", 4);
    }
    mqe2e_counters k;
    cr_assert_eq(mqe2e_MQTTAsync_getCounters(pub, &k), MQTTASYNC_SUCCESS);
    cr_assert_eq(k.sealed, 6);
    cr_assert_eq(mqe2e_MQTTAsync_getCounters(sub, &k), MQTTASYNC_SUCCESS);
    cr_assert_eq(k.opened, 6);
    cr_assert_eq(drops_total(&k), 0);
    cr_assert_eq(pinbox_get(&sub_in, &sub_in.dropped), 0);
    cr_assert_geq(pinbox_get(&sub_in, &sub_in.connected), 1, "connected callback not forwarded");

    enc_async_close(&pub);
    enc_async_close(&sub);
    mqe2e_keystore_close(ks_pub);
    mqe2e_keystore_close(ks_sub);
}

Test(paho_async, no_policy_send_is_refused_and_nothing_reaches_the_broker)
{
    inbox raw_in, pub_in;
    pinbox_init(&raw_in, 0);
    pinbox_init(&pub_in, 1);
    mqe2e_keystore *ks_pub = make_keystore("apub");
    MQTTClient raw = raw_client("sniffer", &raw_in);
    cr_assert_eq(MQTTClient_subscribe(raw, "#", 1), MQTTCLIENT_SUCCESS);
    mqe2e_MQTTAsync pub = enc_async("apub", ks_pub, NULL, &pub_in, NULL);

    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.context = &pub_in;
    ro.onSuccess = on_success;
    ro.onFailure = on_failure;
    int rc = mqe2e_MQTTAsync_send(pub, "other/topic", 6, "secret", 1, 0, &ro);
    cr_assert_eq(rc, MQE2E_MQTTASYNC_NO_POLICY, "got %d", rc);
    cr_assert_eq(rc, MQE2E_MQTTCLIENT_NO_POLICY);
    cr_assert_not_null(strstr(mqe2e_MQTTAsync_strerror(rc), "mqe2e"));
    MQTTAsync_message m = MQTTAsync_message_initializer;
    m.payload = (void *)"secret";
    m.payloadlen = 6;
    cr_assert_eq(mqe2e_MQTTAsync_sendMessage(pub, "other/topic", &m, NULL),
                 MQE2E_MQTTASYNC_NO_POLICY);

    /* A marker proves the sniffer was listening. */
    cr_assert_eq(mqe2e_MQTTAsync_send(pub, "sensors/marker", 1, "x", 1, 0, &ro), MQTTASYNC_SUCCESS);
    cr_assert(pinbox_wait_found(&raw_in, "sensors/marker", WAIT_MS));
    tu_sleep_ms(200);
    cr_assert_eq(pinbox_get(&raw_in, &raw_in.n), 1, "sniffer saw %d messages", pinbox_get(&raw_in, &raw_in.n));
    cr_assert_lt(pinbox_find(&raw_in, "other/topic"), 0);
    cr_assert_eq(pinbox_get(&pub_in, &pub_in.failed), 0);

    /* Unconfigured client: refused before anything is sent. */
    mqe2e_MQTTAsync bare = NULL;
    cr_assert_eq(mqe2e_MQTTAsync_create(&bare, tb_broker_uri(&broker), "bare",
                                        MQTTCLIENT_PERSISTENCE_NONE, NULL),
                 MQTTASYNC_SUCCESS);
    cr_assert_eq(mqe2e_MQTTAsync_send(bare, "sensors/x", 1, "x", 0, 0, NULL),
                 MQE2E_MQTTASYNC_NOT_CONFIGURED);
    MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
    cr_assert_eq(mqe2e_MQTTAsync_connect(bare, &co), MQE2E_MQTTASYNC_NOT_CONFIGURED);
    mqe2e_counters k;
    cr_assert_eq(mqe2e_MQTTAsync_getCounters(bare, &k), MQE2E_MQTTASYNC_NOT_CONFIGURED);
    mqe2e_MQTTAsync_destroy(&bare);

    enc_async_close(&pub);
    raw_close(&raw);
    mqe2e_keystore_close(ks_pub);
}

Test(paho_async, injected_garbage_replay_and_retopic_are_dropped_and_counted)
{
    inbox sub_in, pub_in, raw_in;
    pinbox_init(&sub_in, 1);
    pinbox_init(&pub_in, 1);
    pinbox_init(&raw_in, 0);
    mqe2e_keystore *ks_pub = make_keystore("apub"), *ks_sub = make_keystore("asub");
    MQTTClient raw = raw_client("raw", &raw_in);
    cr_assert_eq(MQTTClient_subscribe(raw, FILTER, 1), MQTTCLIENT_SUCCESS);
    mqe2e_MQTTAsync pub = enc_async("apub", ks_pub, NULL, &pub_in, NULL);

    cr_assert_eq(mqe2e_MQTTAsync_send(pub, "sensors/hidden/b", 2, "bb", 1, 0, NULL),
                 MQTTASYNC_SUCCESS);
    int len_b;
    uint8_t *env_b = pinbox_captured(&raw_in, "sensors/hidden/b", &len_b, WAIT_MS);

    mqe2e_MQTTAsync sub = enc_async("asub", ks_sub, NULL, &sub_in, NULL);
    enc_async_subscribe(sub, &sub_in, "sensors/live/#", 1);
    cr_assert_eq(mqe2e_MQTTAsync_send(pub, "sensors/live/a", 2, "aa", 1, 0, NULL),
                 MQTTASYNC_SUCCESS);
    cr_assert(pinbox_wait_found(&sub_in, "sensors/live/a", WAIT_MS));
    int len_a;
    uint8_t *env_a = pinbox_captured(&raw_in, "sensors/live/a", &len_a, WAIT_MS);

    static const uint8_t garbage[] = {0x07, 0x07, 'g', 'a', 'r', 'b', 'a', 'g', 'e'};
    raw_pub(raw, "sensors/live/garbage", garbage, (int)sizeof garbage);
    raw_pub(raw, "sensors/live/a", env_a, len_a); /* replay */
    raw_pub(raw, "sensors/live/b", env_b, len_b); /* re-topic */
    env_a[len_a - 1] ^= 0x01;
    raw_pub(raw, "sensors/live/a", env_a, len_a); /* tampered */
    /* A good message after them: once it arrives, the bad ones were handled. */
    cr_assert_eq(mqe2e_MQTTAsync_send(pub, "sensors/live/end", 1, "z", 1, 0, NULL),
                 MQTTASYNC_SUCCESS);
    cr_assert(pinbox_wait_found(&sub_in, "sensors/live/end", WAIT_MS));
    cr_assert(pinbox_wait_field(&sub_in, &sub_in.dropped, 4, WAIT_MS), "dropped %d", pinbox_get(&sub_in, &sub_in.dropped));

    pthread_mutex_lock(&sub_in.m);
    cr_assert_eq(sub_in.n, 2, "delivered %d", sub_in.n);
    cr_assert_str_eq(sub_in.msg[0].topic, "sensors/live/a");
    cr_assert_str_eq(sub_in.msg[1].topic, "sensors/live/end");
    pthread_mutex_unlock(&sub_in.m);
    mqe2e_counters k;
    cr_assert_eq(mqe2e_MQTTAsync_getCounters(sub, &k), MQTTASYNC_SUCCESS);
    printf("async injection: decode=%llu replay=%llu auth=%llu total=%llu\n",
           (unsigned long long)k.dropped[MQE2E_DROP_DECODE],
           (unsigned long long)k.dropped[MQE2E_DROP_REPLAY],
           (unsigned long long)k.dropped[MQE2E_DROP_AUTH], (unsigned long long)drops_total(&k));
    cr_assert_eq(drops_total(&k), 4);
    /* The tampered copy reuses a recorded sequence number: refused as a
     * replay before any key is used. The re-topiced one fails authentication. */
    cr_assert_eq(k.dropped[MQE2E_DROP_DECODE], 1);
    cr_assert_eq(k.dropped[MQE2E_DROP_REPLAY], 2);
    cr_assert_eq(k.dropped[MQE2E_DROP_AUTH], 1);
    cr_assert_eq(k.opened, 2);

    free(env_a);
    free(env_b);
    enc_async_close(&pub);
    enc_async_close(&sub);
    raw_close(&raw);
    mqe2e_keystore_close(ks_pub);
    mqe2e_keystore_close(ks_sub);
}

Test(paho_async, refused_message_is_redelivered_then_accepted_once)
{
    inbox sub_in, pub_in;
    pinbox_init(&sub_in, 1);
    pinbox_init(&pub_in, 1);
    sub_in.reject_first = 1;
    mqe2e_keystore *ks_pub = make_keystore("apub"), *ks_sub = make_keystore("asub");
    mqe2e_MQTTAsync sub = enc_async("asub", ks_sub, NULL, &sub_in, NULL);
    mqe2e_MQTTAsync pub = enc_async("apub", ks_pub, NULL, &pub_in, NULL);
    enc_async_subscribe(sub, &sub_in, FILTER, 1);

    cr_assert_eq(mqe2e_MQTTAsync_send(pub, "sensors/retry", 4, "once", 1, 0, NULL),
                 MQTTASYNC_SUCCESS);
    cr_assert(pinbox_wait_field(&sub_in, &sub_in.calls, 1, WAIT_MS), "never offered");
    /* Later traffic moves Paho's retry along. */
    for (int i = 0; i < 3 && pinbox_get(&sub_in, &sub_in.n) < 1; i++) {
        cr_assert_eq(mqe2e_MQTTAsync_send(pub, "sensors/after", 4, "next", 1, 0, NULL),
                     MQTTASYNC_SUCCESS);
        tu_sleep_ms(300);
    }
    cr_assert(pinbox_wait_field(&sub_in, &sub_in.n, 1, WAIT_MS), "refused message never redelivered");
    cr_assert(pinbox_wait_found(&sub_in, "sensors/retry", WAIT_MS));
    pthread_mutex_lock(&sub_in.m);
    cr_assert_str_eq(sub_in.msg[0].topic, "sensors/retry");
    cr_assert_arr_eq(sub_in.msg[0].payload, "once", 4);
    int retry_seen = 0;
    for (int i = 0; i < sub_in.n && i < MAXMSG; i++)
        retry_seen += strcmp(sub_in.msg[i].topic, "sensors/retry") == 0;
    cr_assert_eq(retry_seen, 1, "accepted %d times", retry_seen);
    pthread_mutex_unlock(&sub_in.m);
    mqe2e_counters k;
    cr_assert_eq(mqe2e_MQTTAsync_getCounters(sub, &k), MQTTASYNC_SUCCESS);
    /* The refusal did not burn the replay window: nothing dropped. */
    cr_assert_eq(drops_total(&k), 0);

    enc_async_close(&pub);
    enc_async_close(&sub);
    mqe2e_keystore_close(ks_pub);
    mqe2e_keystore_close(ks_sub);
}

/* Raw async sniffer that survives a broker restart (persistent session). */
static int sniff_message(void *ctx, char *topic, int topicLen, MQTTAsync_message *msg)
{
    return on_async_message(ctx, topic, topicLen, msg);
}

Test(paho_async, send_while_disconnected_across_broker_restart_is_sealed_once)
{
    enum { BEFORE = 2, OFFLINE = 5 };
    inbox sub_in, pub_in, sniff_in;
    pinbox_init(&sub_in, 1);
    pinbox_init(&pub_in, 1);
    pinbox_init(&sniff_in, 0);
    mqe2e_keystore *ks_pub = make_keystore("apub"), *ks_sub = make_keystore("asub");
    async_cfg pcfg = {0, 1, 1};

    /* Sniffer: plain Paho async, persistent session, reconnecting. */
    MQTTAsync sniff = NULL;
    MQTTAsync_connectOptions sco = MQTTAsync_connectOptions_initializer;
    cr_assert_eq(MQTTAsync_create(&sniff, tb_broker_uri(&broker), "sniffer",
                                  MQTTCLIENT_PERSISTENCE_NONE, NULL),
                 MQTTASYNC_SUCCESS);
    cr_assert_eq(MQTTAsync_setCallbacks(sniff, &sniff_in, NULL, sniff_message, NULL),
                 MQTTASYNC_SUCCESS);
    sco.cleansession = 0;
    sco.automaticReconnect = 1;
    sco.minRetryInterval = 1;
    sco.maxRetryInterval = 2;
    sco.context = &sniff_in;
    sco.onSuccess = on_success;
    sco.onFailure = on_failure;
    cr_assert_eq(MQTTAsync_connect(sniff, &sco), MQTTASYNC_SUCCESS);
    wait_ok(&sniff_in, 0, "sniffer connect");
    MQTTAsync_responseOptions sro = MQTTAsync_responseOptions_initializer;
    sro.context = &sniff_in;
    sro.onSuccess = on_success;
    sro.onFailure = on_failure;
    cr_assert_eq(MQTTAsync_subscribe(sniff, FILTER, 1, &sro), MQTTASYNC_SUCCESS);
    wait_ok(&sniff_in, 1, "sniffer subscribe");

    mqe2e_MQTTAsync sub = enc_async("asub", ks_sub, NULL, &sub_in, &pcfg);
    enc_async_subscribe(sub, &sub_in, FILTER, 1);
    mqe2e_MQTTAsync pub = enc_async("apub", ks_pub, NULL, &pub_in, &pcfg);

    char t[64], p[32];
    for (int i = 0; i < BEFORE; i++) {
        snprintf(t, sizeof t, "sensors/m%d", i);
        snprintf(p, sizeof p, "value-%d", i);
        cr_assert_eq(mqe2e_MQTTAsync_send(pub, t, (int)strlen(p), p, 1, 0, NULL),
                     MQTTASYNC_SUCCESS);
    }
    cr_assert(pinbox_wait_field(&sub_in, &sub_in.n, BEFORE, WAIT_MS));
    cr_assert(pinbox_wait_field(&sniff_in, &sniff_in.n, BEFORE, WAIT_MS));

    /* Broker down (it saves sessions on SIGTERM): the publisher notices. */
    cr_assert_eq(kill(broker.pid, SIGTERM), 0);
    long deadline = tu_now_ms() + WAIT_MS;
    while (mqe2e_MQTTAsync_isConnected(pub)) {
        cr_assert_lt(tu_now_ms(), deadline, "publisher never noticed the broker going away");
        tu_sleep_ms(10);
    }
    for (int i = BEFORE; i < BEFORE + OFFLINE; i++) {
        snprintf(t, sizeof t, "sensors/m%d", i);
        snprintf(p, sizeof p, "value-%d", i);
        int rc = mqe2e_MQTTAsync_send(pub, t, (int)strlen(p), p, 1, 0, NULL);
        cr_assert_eq(rc, MQTTASYNC_SUCCESS, "send while disconnected: %d %s", rc,
                     mqe2e_MQTTAsync_strerror(rc));
    }
    mqe2e_counters k;
    cr_assert_eq(mqe2e_MQTTAsync_getCounters(pub, &k), MQTTASYNC_SUCCESS);
    cr_assert_eq(k.sealed, BEFORE + OFFLINE, "sealed at send time, once each");
    /* Reaps the stopped broker, starts it again on the same port. */
    cr_assert_eq(tb_broker_restart(&broker, SIGTERM), 0);

    cr_assert(pinbox_wait_field(&sub_in, &sub_in.n, BEFORE + OFFLINE, WAIT_MS), "delivered %d of %d",
              pinbox_get(&sub_in, &sub_in.n), BEFORE + OFFLINE);
    cr_assert(pinbox_wait_field(&sniff_in, &sniff_in.n, BEFORE + OFFLINE, WAIT_MS), "sniffed %d",
              pinbox_get(&sniff_in, &sniff_in.n));
    tu_sleep_ms(500); /* room for any duplicate to show up */

    pthread_mutex_lock(&sub_in.m);
    cr_assert_eq(sub_in.n, BEFORE + OFFLINE, "delivered %d times", sub_in.n);
    for (int i = 0; i < BEFORE + OFFLINE; i++) {
        int seen = 0;
        snprintf(t, sizeof t, "sensors/m%d", i);
        snprintf(p, sizeof p, "value-%d", i);
        for (int j = 0; j < sub_in.n && j < MAXMSG; j++) {
            if (strcmp(sub_in.msg[j].topic, t) == 0) {
                seen++;
                cr_assert_eq(sub_in.msg[j].len, (int)strlen(p));
                cr_assert_arr_eq(sub_in.msg[j].payload, p, strlen(p));
            }
        }
        cr_assert_eq(seen, 1, "%s delivered %d times", t, seen);
    }
    pthread_mutex_unlock(&sub_in.m);

    /* On the wire: one envelope per message; a (sender, seq) never names
     * two different envelopes (a re-seal would). */
    pthread_mutex_lock(&sniff_in.m);
    int distinct = 0;
    for (int i = 0; i < sniff_in.n && i < MAXMSG; i++) {
        mqe2e_envelope_view vi;
        cr_assert_eq(
            mqe2e_envelope_parse(&vi, sniff_in.msg[i].payload, (size_t)sniff_in.msg[i].len),
            MQE2E_OK);
        int first = 1;
        for (int j = 0; j < i; j++) {
            mqe2e_envelope_view vj;
            cr_assert_eq(
                mqe2e_envelope_parse(&vj, sniff_in.msg[j].payload, (size_t)sniff_in.msg[j].len),
                MQE2E_OK);
            if (vi.header.sender_id == vj.header.sender_id && vi.header.seq == vj.header.seq) {
                cr_assert_eq(sniff_in.msg[i].len, sniff_in.msg[j].len,
                             "(sender, seq) reused by a different envelope");
                cr_assert_arr_eq(sniff_in.msg[i].payload, sniff_in.msg[j].payload,
                                 (size_t)sniff_in.msg[i].len,
                                 "(sender, seq) reused by a different envelope");
                first = 0;
            }
        }
        distinct += first;
    }
    printf("reconnect: %d envelopes sniffed, %d distinct, %d delivered\n", sniff_in.n, distinct,
           sub_in.n);
    cr_assert_eq(distinct, BEFORE + OFFLINE);
    pthread_mutex_unlock(&sniff_in.m);
    cr_assert_eq(mqe2e_MQTTAsync_getCounters(pub, &k), MQTTASYNC_SUCCESS);
    cr_assert_eq(k.sealed, BEFORE + OFFLINE, "a buffered message was sealed again");

    enc_async_close(&pub);
    enc_async_close(&sub);
    MQTTAsync_destroy(&sniff);
    mqe2e_keystore_close(ks_pub);
    mqe2e_keystore_close(ks_sub);
}

Test(paho_async, v5_user_property_passes_through)
{
    inbox sub_in, pub_in, raw_in;
    pinbox_init(&sub_in, 1);
    pinbox_init(&pub_in, 1);
    pinbox_init(&raw_in, 0);
    async_cfg v5 = {1, 0, 0};
    mqe2e_keystore *ks_pub = make_keystore("apub"), *ks_sub = make_keystore("asub");
    mqe2e_MQTTAsync sub = enc_async("asub", ks_sub, NULL, &sub_in, &v5);
    mqe2e_MQTTAsync pub = enc_async("apub", ks_pub, NULL, &pub_in, &v5);

    MQTTAsync_responseOptions so = MQTTAsync_responseOptions_initializer;
    so.context = &sub_in;
    so.onSuccess5 = on_success5;
    so.onFailure5 = on_failure5;
    int before = pinbox_get(&sub_in, &sub_in.ok);
    cr_assert_eq(mqe2e_MQTTAsync_subscribe(sub, FILTER, 1, &so), MQTTASYNC_SUCCESS);
    wait_ok(&sub_in, before, "v5 subscribe");

    MQTTProperty prop;
    memset(&prop, 0, sizeof prop);
    prop.identifier = MQTTPROPERTY_CODE_USER_PROPERTY;
    prop.value.data.data = (char *)"unit";
    prop.value.data.len = 4;
    prop.value.value.data = (char *)"bpm";
    prop.value.value.len = 3;
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    cr_assert_eq(MQTTProperties_add(&ro.properties, &prop), 0);
    ro.context = &pub_in;
    ro.onSuccess5 = on_success5;
    ro.onFailure5 = on_failure5;
    before = pinbox_get(&pub_in, &pub_in.ok);
    cr_assert_eq(mqe2e_MQTTAsync_send(pub, "sensors/hr", 2, "72", 1, 0, &ro), MQTTASYNC_SUCCESS);
    wait_ok(&pub_in, before, "v5 send");
    MQTTProperties_free(&ro.properties);

    cr_assert(pinbox_wait_found(&sub_in, "sensors/hr", WAIT_MS));
    int i = pinbox_find(&sub_in, "sensors/hr");
    cr_assert_arr_eq(sub_in.msg[i].payload, "72", 2);
    cr_assert_str_eq(sub_in.msg[i].user_key, "unit");
    cr_assert_str_eq(sub_in.msg[i].user_val, "bpm");

    /* Refused before Paho: same code in v5. */
    cr_assert_eq(mqe2e_MQTTAsync_send(pub, "other/x", 1, "x", 1, 0, NULL),
                 MQE2E_MQTTASYNC_NO_POLICY);

    enc_async_close(&pub);
    enc_async_close(&sub);
    mqe2e_keystore_close(ks_pub);
    mqe2e_keystore_close(ks_sub);
}

/* ---------- the synchronous front's v5 calls ---------- */

static mqe2e_MQTTClient enc_sync5(const char *id, mqe2e_keystore *ks, inbox *ib)
{
    mqe2e_MQTTClient c = NULL;
    MQTTClient_createOptions cro = MQTTClient_createOptions_initializer;
    mqe2e_MQTTClient_securityOptions so = mqe2e_MQTTClient_securityOptions_initializer;
    MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer5;

    cro.MQTTVersion = MQTTVERSION_5;
    cr_assert_eq(mqe2e_MQTTClient_createWithOptions(&c, tb_broker_uri(&broker), id,
                                                    MQTTCLIENT_PERSISTENCE_NONE, NULL, &cro),
                 MQTTCLIENT_SUCCESS);
    so.keystore = ks;
    so.onDropped = pinbox_on_dropped;
    so.onLog = on_log;
    so.context = ib;
    cr_assert_eq(mqe2e_MQTTClient_setSecurity(c, &so), MQTTCLIENT_SUCCESS);
    if (ib != NULL)
        cr_assert_eq(mqe2e_MQTTClient_setCallbacks(c, ib, NULL, on_sync_message, NULL),
                     MQTTCLIENT_SUCCESS);
    /* The v3 call is refused on a v5 client, as with Paho. */
    cr_assert_eq(mqe2e_MQTTClient_connect(c, &co), MQTTCLIENT_WRONG_MQTT_VERSION);
    MQTTResponse r = mqe2e_MQTTClient_connect5(c, &co, NULL, NULL);
    cr_assert_eq(r.reasonCode, MQTTREASONCODE_SUCCESS, "connect5: %d", (int)r.reasonCode);
    MQTTResponse_free(r);
    return c;
}

Test(paho_async, sync_v5_variants_round_trip)
{
    inbox sub_in;
    pinbox_init(&sub_in, 1);
    mqe2e_keystore *ks_pub = make_keystore("spub"), *ks_sub = make_keystore("ssub");
    mqe2e_MQTTClient sub = enc_sync5("ssub", ks_sub, &sub_in);
    mqe2e_MQTTClient pub = enc_sync5("spub", ks_pub, NULL);

    MQTTResponse r = mqe2e_MQTTClient_subscribe5(sub, FILTER, 2, NULL, NULL);
    cr_assert_eq((int)r.reasonCode, 2, "granted %d", (int)r.reasonCode);
    MQTTResponse_free(r);
    char *many[2] = {"sensors/a/#", "sensors/b/#"};
    int qos[2] = {1, 1};
    r = mqe2e_MQTTClient_subscribeMany5(sub, 2, many, qos, NULL, NULL);
    cr_assert_geq((int)r.reasonCode, 0);
    MQTTResponse_free(r);

    MQTTProperty prop;
    memset(&prop, 0, sizeof prop);
    prop.identifier = MQTTPROPERTY_CODE_USER_PROPERTY;
    prop.value.data.data = (char *)"site";
    prop.value.data.len = 4;
    prop.value.value.data = (char *)"lab";
    prop.value.value.len = 3;
    MQTTProperties props = MQTTProperties_initializer;
    cr_assert_eq(MQTTProperties_add(&props, &prop), 0);

    MQTTClient_deliveryToken dt = 0;
    r = mqe2e_MQTTClient_publish5(pub, "sensors/v5/p", 5, "hello", 1, 0, &props, &dt);
    cr_assert_eq((int)r.reasonCode, 0, "publish5: %d", (int)r.reasonCode);
    MQTTResponse_free(r);
    cr_assert_eq(mqe2e_MQTTClient_waitForCompletion(pub, dt, 5000), MQTTCLIENT_SUCCESS);

    MQTTClient_message m = MQTTClient_message_initializer;
    m.payload = (void *)"world";
    m.payloadlen = 5;
    m.qos = 2;
    m.properties = props;
    r = mqe2e_MQTTClient_publishMessage5(pub, "sensors/v5/m", &m, &dt);
    cr_assert_eq((int)r.reasonCode, 0);
    MQTTResponse_free(r);
    cr_assert_eq(mqe2e_MQTTClient_waitForCompletion(pub, dt, 5000), MQTTCLIENT_SUCCESS);

    r = mqe2e_MQTTClient_publish5(pub, "other/x", 1, "x", 1, 0, NULL, NULL);
    cr_assert_eq((int)r.reasonCode, MQE2E_MQTTCLIENT_NO_POLICY);
    MQTTResponse_free(r);
    MQTTProperties_free(&props);

    cr_assert(pinbox_wait_found(&sub_in, "sensors/v5/p", WAIT_MS));
    cr_assert(pinbox_wait_found(&sub_in, "sensors/v5/m", WAIT_MS));
    int i = pinbox_find(&sub_in, "sensors/v5/p");
    cr_assert_arr_eq(sub_in.msg[i].payload, "hello", 5);
    cr_assert_str_eq(sub_in.msg[i].user_key, "site");
    cr_assert_str_eq(sub_in.msg[i].user_val, "lab");
    i = pinbox_find(&sub_in, "sensors/v5/m");
    cr_assert_arr_eq(sub_in.msg[i].payload, "world", 5);
    cr_assert_str_eq(sub_in.msg[i].user_val, "lab");
    cr_assert_eq(pinbox_get(&sub_in, &sub_in.dropped), 0);

    r = mqe2e_MQTTClient_unsubscribe5(sub, FILTER, NULL);
    cr_assert_eq((int)r.reasonCode, 0);
    MQTTResponse_free(r);
    r = mqe2e_MQTTClient_unsubscribeMany5(sub, 2, many, NULL);
    cr_assert_geq((int)r.reasonCode, 0);
    MQTTResponse_free(r);

    cr_assert_eq(mqe2e_MQTTClient_disconnect5(pub, 1000, MQTTREASONCODE_SUCCESS, NULL),
                 MQTTCLIENT_SUCCESS);
    cr_assert_eq(mqe2e_MQTTClient_disconnect5(sub, 1000, MQTTREASONCODE_SUCCESS, NULL),
                 MQTTCLIENT_SUCCESS);
    mqe2e_MQTTClient_destroy(&pub);
    mqe2e_MQTTClient_destroy(&sub);
    mqe2e_keystore_close(ks_pub);
    mqe2e_keystore_close(ks_sub);
}
