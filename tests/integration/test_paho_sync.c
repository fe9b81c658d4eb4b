/*
 * The encrypted synchronous front against a real Mosquitto and real Paho:
 * round trips at every QoS, retained messages, receive() mode, the
 * no-plaintext-fallback rule, hostile injections (garbage, replay, re-topic,
 * flipped byte), redelivery, plaintext topics and missing keys.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker.h"
#include "paho_inbox.h"
#include "mqe2e/MQTTClient.h"
#include "spy.h"
#include "testutil.h"

#define MAXMSG 64
#define WAIT_MS 10000L
#define GROUP "sensors"
#define FILTER "sensors/#"

/* What one client saw (support/paho_inbox.h). */
typedef pinbox inbox;

static void on_log(void *ctx, mqe2e_log_level level, const char *message)
{
    (void)ctx;
    printf("  log[%d] %s\n", (int)level, message);
}

static int inbox_count(inbox *ib)
{
    pthread_mutex_lock(&ib->m);
    int n = ib->n;
    pthread_mutex_unlock(&ib->m);
    return n;
}

static int inbox_dropped(inbox *ib)
{
    pthread_mutex_lock(&ib->m);
    int n = ib->dropped;
    pthread_mutex_unlock(&ib->m);
    return n;
}

static int wait_count(inbox *ib, int n)
{
    long deadline = tu_now_ms() + WAIT_MS;
    while (inbox_count(ib) < n) {
        if (tu_now_ms() > deadline) return 0;
        tu_sleep_ms(10);
    }
    return 1;
}

static uint64_t drops_total(const mqe2e_counters *k)
{
    uint64_t t = 0;
    for (int i = 0; i < MQE2E_DROP_REASON_COUNT; i++)
        t += k->dropped[i];
    return t;
}

static int wait_drops(mqe2e_MQTTClient c, uint64_t n)
{
    long deadline = tu_now_ms() + WAIT_MS;
    mqe2e_counters k;
    for (;;) {
        cr_assert_eq(mqe2e_MQTTClient_getCounters(c, &k), MQTTCLIENT_SUCCESS);
        if (drops_total(&k) >= n) return 1;
        if (tu_now_ms() > deadline) return 0;
        tu_sleep_ms(10);
    }
}

/* ---------- keystores and clients ---------- */

static uint8_t group_secret[MQE2E_GROUP_SECRET_BYTES];

static mqe2e_keystore *make_keystore(const char *client_id, int with_group)
{
    mqe2e_storage st;
    mqe2e_keystore *ks = NULL;
    cr_assert_eq(mqe2e_storage_memory(&st), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_create(&ks, st, client_id, 0), MQE2E_OK);
    if (with_group) {
        cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, GROUP, FILTER, 1, group_secret,
                                                    (uint64_t)time(NULL)),
                     MQE2E_OK);
    }
    return ks;
}

static void connect_opts(MQTTClient_connectOptions *o)
{
    MQTTClient_connectOptions init = MQTTClient_connectOptions_initializer;
    *o = init;
    o->keepAliveInterval = 20;
    o->cleansession = 1;
}

/* An encrypted client; @p ib may be NULL (no callbacks: receive() mode or publisher). */
static mqe2e_MQTTClient enc_client(const tb_broker *b, const char *id, mqe2e_keystore *ks,
                                   const mqe2e_policy *policy, inbox *ib)
{
    mqe2e_MQTTClient c = NULL;
    mqe2e_MQTTClient_securityOptions so = mqe2e_MQTTClient_securityOptions_initializer;
    MQTTClient_connectOptions co;

    cr_assert_eq(
        mqe2e_MQTTClient_create(&c, tb_broker_uri(b), id, MQTTCLIENT_PERSISTENCE_NONE, NULL),
        MQTTCLIENT_SUCCESS);
    so.keystore = ks;
    so.policy = policy;
    so.onDropped = ib != NULL ? pinbox_on_dropped : NULL;
    so.onLog = on_log;
    so.logLevel = MQE2E_LOG_WARNING;
    so.context = ib;
    cr_assert_eq(mqe2e_MQTTClient_setSecurity(c, &so), MQTTCLIENT_SUCCESS);
    if (ib != NULL) {
        cr_assert_eq(mqe2e_MQTTClient_setCallbacks(c, ib, NULL, pinbox_on_message, NULL),
                     MQTTCLIENT_SUCCESS);
    }
    connect_opts(&co);
    int rc = mqe2e_MQTTClient_connect(c, &co);
    cr_assert_eq(rc, MQTTCLIENT_SUCCESS, "connect %s: %d %s", id, rc,
                 mqe2e_MQTTClient_strerror(rc));
    return c;
}

static MQTTClient raw_client(const tb_broker *b, const char *id, inbox *ib)
{
    MQTTClient c = NULL;
    MQTTClient_connectOptions co;
    cr_assert_eq(MQTTClient_create(&c, tb_broker_uri(b), id, MQTTCLIENT_PERSISTENCE_NONE, NULL),
                 MQTTCLIENT_SUCCESS);
    if (ib != NULL) {
        cr_assert_eq(MQTTClient_setCallbacks(c, ib, NULL, pinbox_on_message, NULL), MQTTCLIENT_SUCCESS);
    }
    connect_opts(&co);
    cr_assert_eq(MQTTClient_connect(c, &co), MQTTCLIENT_SUCCESS);
    return c;
}

static void enc_pub(mqe2e_MQTTClient c, const char *topic, const void *p, int len, int qos,
                    int retained)
{
    MQTTClient_deliveryToken dt = 0;
    int rc = mqe2e_MQTTClient_publish(c, topic, len, p, qos, retained, &dt);
    cr_assert_eq(rc, MQTTCLIENT_SUCCESS, "publish %s: %d %s", topic, rc,
                 mqe2e_MQTTClient_strerror(rc));
    if (qos > 0) {
        cr_assert_eq(mqe2e_MQTTClient_waitForCompletion(c, dt, 5000), MQTTCLIENT_SUCCESS);
    }
}

static void raw_pub(MQTTClient c, const char *topic, const void *p, int len)
{
    MQTTClient_deliveryToken dt = 0;
    cr_assert_eq(MQTTClient_publish(c, topic, len, p, 1, 0, &dt), MQTTCLIENT_SUCCESS);
    cr_assert_eq(MQTTClient_waitForCompletion(c, dt, 5000), MQTTCLIENT_SUCCESS);
}

static void enc_close(mqe2e_MQTTClient *c)
{
    if (*c != NULL && mqe2e_MQTTClient_isConnected(*c)) {
        mqe2e_MQTTClient_disconnect(*c, 1000);
    }
    mqe2e_MQTTClient_destroy(c);
    cr_assert_null(*c);
}

static void raw_close(MQTTClient *c)
{
    if (*c != NULL && MQTTClient_isConnected(*c)) MQTTClient_disconnect(*c, 1000);
    MQTTClient_destroy(c);
}

/* ---------- fixture: one broker per test ---------- */

static tb_broker broker;

static void setup(void)
{
    cr_assert_eq(mqe2e_init(), MQE2E_OK);
    randombytes_buf(group_secret, sizeof group_secret);
    memset(&broker, 0, sizeof broker);
    cr_assert_eq(tb_broker_start(&broker), 0, "mosquitto did not start");
}

static void teardown(void)
{
    tb_broker_stop(&broker);
    sodium_memzero(group_secret, sizeof group_secret);
}

TestSuite(paho_sync, .init = setup, .fini = teardown, .timeout = 120);

/* ---------- tests ---------- */

Test(paho_sync, round_trip_every_qos_exact_bytes)
{
    static const uint8_t binary[] = {0x00, 0x01, 0x00, 0xff, 0x7f, 0x00, 0x80, 0x00};
    const char *text = "heart-rate=72";
    inbox ib;
    pinbox_init(&ib, 1);
    mqe2e_keystore *ks_pub = make_keystore("pub", 1), *ks_sub = make_keystore("sub", 1);
    mqe2e_MQTTClient sub = enc_client(&broker, "sub", ks_sub, NULL, &ib);
    mqe2e_MQTTClient pub = enc_client(&broker, "pub", ks_pub, NULL, NULL);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(sub, FILTER, 2), MQTTCLIENT_SUCCESS);

    for (int qos = 0; qos <= 2; qos++) {
        char t[64];
        snprintf(t, sizeof t, "sensors/q%d/text", qos);
        enc_pub(pub, t, text, (int)strlen(text), qos, 0);
        snprintf(t, sizeof t, "sensors/q%d/binary", qos);
        enc_pub(pub, t, binary, (int)sizeof binary, qos, 0);
        snprintf(t, sizeof t, "sensors/q%d/empty", qos);
        enc_pub(pub, t, NULL, 0, qos, 0);
    }
    cr_assert(wait_count(&ib, 9), "got %d of 9 messages", inbox_count(&ib));
    printf("round trip: 9 messages at QoS 0/1/2 received\n");

    for (int qos = 0; qos <= 2; qos++) {
        char t[64];
        int i;
        snprintf(t, sizeof t, "sensors/q%d/text", qos);
        cr_assert_geq(i = pinbox_find(&ib, t), 0, "%s missing", t);
        cr_assert_eq(ib.msg[i].len, (int)strlen(text));
        cr_assert_arr_eq(ib.msg[i].payload, text, strlen(text));
        cr_assert_eq(ib.msg[i].qos, qos);
        snprintf(t, sizeof t, "sensors/q%d/binary", qos);
        cr_assert_geq(i = pinbox_find(&ib, t), 0, "%s missing", t);
        cr_assert_eq(ib.msg[i].len, (int)sizeof binary);
        cr_assert_arr_eq(ib.msg[i].payload, binary, sizeof binary);
        cr_assert_eq(ib.msg[i].qos, qos);
        snprintf(t, sizeof t, "sensors/q%d/empty", qos);
        cr_assert_geq(i = pinbox_find(&ib, t), 0, "%s missing", t);
        cr_assert_eq(ib.msg[i].len, 0);
        cr_assert_eq(ib.msg[i].retained, 0);
    }
    mqe2e_counters k;
    cr_assert_eq(mqe2e_MQTTClient_getCounters(pub, &k), MQTTCLIENT_SUCCESS);
    cr_assert_eq(k.sealed, 9);
    cr_assert_eq(mqe2e_MQTTClient_getCounters(sub, &k), MQTTCLIENT_SUCCESS);
    cr_assert_eq(k.opened, 9);
    cr_assert_eq(drops_total(&k), 0);
    cr_assert_eq(inbox_dropped(&ib), 0);

    enc_close(&pub);
    enc_close(&sub);
    mqe2e_keystore_close(ks_pub);
    mqe2e_keystore_close(ks_sub);
}

Test(paho_sync, retained_message_reaches_late_subscriber)
{
    const char *status = "door=closed";
    inbox ib;
    pinbox_init(&ib, 1);
    mqe2e_keystore *ks_pub = make_keystore("pub", 1), *ks_sub = make_keystore("sub", 1);
    mqe2e_MQTTClient pub = enc_client(&broker, "pub", ks_pub, NULL, NULL);
    enc_pub(pub, "sensors/door/status", status, (int)strlen(status), 1, 1);
    printf("retained: published, now subscribing late\n");

    mqe2e_MQTTClient sub = enc_client(&broker, "sub", ks_sub, NULL, &ib);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(sub, "sensors/door/#", 1), MQTTCLIENT_SUCCESS);
    cr_assert(wait_count(&ib, 1));
    cr_assert_str_eq(ib.msg[0].topic, "sensors/door/status");
    cr_assert_eq(ib.msg[0].len, (int)strlen(status));
    cr_assert_arr_eq(ib.msg[0].payload, status, strlen(status));
    cr_assert_eq(ib.msg[0].retained, 1);

    enc_close(&pub);
    enc_close(&sub);
    mqe2e_keystore_close(ks_pub);
    mqe2e_keystore_close(ks_sub);
}

Test(paho_sync, receive_mode_skips_bad_messages)
{
    mqe2e_keystore *ks_pub = make_keystore("pub", 1), *ks_sub = make_keystore("sub", 1);
    mqe2e_MQTTClient sub = enc_client(&broker, "sub", ks_sub, NULL, NULL);
    mqe2e_MQTTClient pub = enc_client(&broker, "pub", ks_pub, NULL, NULL);
    MQTTClient raw = raw_client(&broker, "raw", NULL);
    char *topic = NULL;
    int topic_len = 0;
    MQTTClient_message *m = NULL;
    int rc;

    cr_assert_eq(mqe2e_MQTTClient_subscribe(sub, FILTER, 1), MQTTCLIENT_SUCCESS);
    /* Nothing yet: a timeout is success with no message. */
    rc = mqe2e_MQTTClient_receive(sub, &topic, &topic_len, &m, 200);
    cr_assert_eq(rc, MQTTCLIENT_SUCCESS);
    cr_assert_null(m);

    raw_pub(raw, "sensors/a", "\x07\x07garbage", 9);
    enc_pub(pub, "sensors/b", "hello", 5, 1, 0);
    rc = mqe2e_MQTTClient_receive(sub, &topic, &topic_len, &m, 5000);
    cr_assert_eq(rc, MQTTCLIENT_SUCCESS);
    cr_assert_not_null(m, "no authenticated message within the timeout");
    cr_assert_str_eq(topic, "sensors/b");
    cr_assert_eq(topic_len, 9);
    cr_assert_eq(m->payloadlen, 5);
    cr_assert_arr_eq(m->payload, "hello", 5);
    mqe2e_MQTTClient_freeMessage(&m);
    cr_assert_null(m);
    mqe2e_MQTTClient_free(topic);
    printf("receive: authenticated message returned, garbage skipped\n");

    mqe2e_counters k;
    cr_assert_eq(mqe2e_MQTTClient_getCounters(sub, &k), MQTTCLIENT_SUCCESS);
    cr_assert_eq(k.opened, 1);
    cr_assert_eq(drops_total(&k), 1);
    cr_assert_eq(k.dropped[MQE2E_DROP_DECODE] + k.dropped[MQE2E_DROP_SUITE], 1);

    /* Only garbage pending: receive() drops it and times out empty-handed. */
    raw_pub(raw, "sensors/c", "junk", 4);
    rc = mqe2e_MQTTClient_receive(sub, &topic, &topic_len, &m, 1000);
    cr_assert_eq(rc, MQTTCLIENT_SUCCESS);
    cr_assert_null(m);
    cr_assert(wait_drops(sub, 2));

    raw_close(&raw);
    enc_close(&pub);
    enc_close(&sub);
    mqe2e_keystore_close(ks_pub);
    mqe2e_keystore_close(ks_sub);
}

Test(paho_sync, no_policy_topic_is_never_sent)
{
    inbox raw_in;
    pinbox_init(&raw_in, 0);
    mqe2e_keystore *ks_pub = make_keystore("pub", 1);
    MQTTClient raw = raw_client(&broker, "raw", &raw_in);
    cr_assert_eq(MQTTClient_subscribe(raw, "#", 1), MQTTCLIENT_SUCCESS);
    mqe2e_MQTTClient pub = enc_client(&broker, "pub", ks_pub, NULL, NULL);

    MQTTClient_deliveryToken dt = 0;
    int rc = mqe2e_MQTTClient_publish(pub, "other/topic", 6, "secret", 1, 0, &dt);
    cr_assert_eq(rc, MQE2E_MQTTCLIENT_NO_POLICY);
    MQTTClient_message msg = MQTTClient_message_initializer;
    msg.payload = (void *)(uintptr_t) "secret";
    msg.payloadlen = 6;
    msg.qos = 0;
    cr_assert_eq(mqe2e_MQTTClient_publishMessage(pub, "other/topic", &msg, &dt),
                 MQE2E_MQTTCLIENT_NO_POLICY);
    /* A marker after the refused ones: once it arrived, the refused ones would have too. */
    enc_pub(pub, "sensors/marker", "m", 1, 1, 0);
    cr_assert(pinbox_wait_found(&raw_in, "sensors/marker", WAIT_MS));
    cr_assert_eq(inbox_count(&raw_in), 1, "raw subscriber saw %d messages", inbox_count(&raw_in));
    cr_assert_lt(pinbox_find(&raw_in, "other/topic"), 0);
    printf("no policy: refused, broker carried only the marker\n");

    raw_close(&raw);
    enc_close(&pub);
    mqe2e_keystore_close(ks_pub);
}

Test(paho_sync, injected_messages_are_dropped_and_counted)
{
    inbox ib, raw_in;
    pinbox_init(&ib, 1);
    pinbox_init(&raw_in, 0);
    mqe2e_keystore *ks_pub = make_keystore("pub", 1), *ks_sub = make_keystore("sub", 1);
    MQTTClient raw = raw_client(&broker, "raw", &raw_in);
    cr_assert_eq(MQTTClient_subscribe(raw, "sensors/#", 1), MQTTCLIENT_SUCCESS);
    mqe2e_MQTTClient sub = enc_client(&broker, "sub", ks_sub, NULL, &ib);
    mqe2e_MQTTClient pub = enc_client(&broker, "pub", ks_pub, NULL, NULL);

    /* Envelopes the subscriber never saw (it is not subscribed to sensors/hidden). */
    enc_pub(pub, "sensors/hidden/b", "bravo", 5, 1, 0);
    enc_pub(pub, "sensors/live/c", "charlie", 7, 1, 0);
    int len_b, len_c, len_a;
    uint8_t *env_b = pinbox_captured(&raw_in, "sensors/hidden/b", &len_b, WAIT_MS);
    uint8_t *env_c = pinbox_captured(&raw_in, "sensors/live/c", &len_c, WAIT_MS);

    cr_assert_eq(mqe2e_MQTTClient_subscribe(sub, "sensors/live/#", 1), MQTTCLIENT_SUCCESS);
    enc_pub(pub, "sensors/live/a", "alpha", 5, 1, 0);
    cr_assert(wait_count(&ib, 1));
    uint8_t *env_a = pinbox_captured(&raw_in, "sensors/live/a", &len_a, WAIT_MS);
    printf("injection: captured 3 envelopes, subscriber accepted the first\n");

    static const uint8_t garbage[] = {0x07, 0xff, 0x00, 'j', 'u', 'n', 'k'};
    raw_pub(raw, "sensors/live/garbage", garbage, (int)sizeof garbage);
    raw_pub(raw, "sensors/live/a", env_a, len_a); /* replay */
    raw_pub(raw, "sensors/live/b", env_b, len_b); /* re-topic */
    env_c[len_c - 1] ^= 0x01;                     /* flipped tag byte */
    raw_pub(raw, "sensors/live/c", env_c, len_c);
    enc_pub(pub, "sensors/live/end", "omega", 5, 1, 0);

    cr_assert(pinbox_wait_found(&ib, "sensors/live/end", WAIT_MS));
    cr_assert(wait_drops(sub, 4));
    long deadline = tu_now_ms() + WAIT_MS;
    while (inbox_dropped(&ib) < 4 && tu_now_ms() < deadline)
        tu_sleep_ms(10);

    cr_assert_eq(inbox_count(&ib), 2, "app saw %d messages", inbox_count(&ib));
    cr_assert_str_eq(ib.msg[0].topic, "sensors/live/a");
    cr_assert_arr_eq(ib.msg[0].payload, "alpha", 5);
    cr_assert_str_eq(ib.msg[1].topic, "sensors/live/end");
    cr_assert_eq(inbox_dropped(&ib), 4, "onDropped called %d times", inbox_dropped(&ib));

    mqe2e_counters k;
    cr_assert_eq(mqe2e_MQTTClient_getCounters(sub, &k), MQTTCLIENT_SUCCESS);
    printf("injection: drops decode=%llu suite=%llu replay=%llu auth=%llu\n",
           (unsigned long long)k.dropped[MQE2E_DROP_DECODE],
           (unsigned long long)k.dropped[MQE2E_DROP_SUITE],
           (unsigned long long)k.dropped[MQE2E_DROP_REPLAY],
           (unsigned long long)k.dropped[MQE2E_DROP_AUTH]);
    cr_assert_eq(k.opened, 2);
    cr_assert_eq(k.dropped[MQE2E_DROP_DECODE], 1);
    cr_assert_eq(k.dropped[MQE2E_DROP_REPLAY], 1);
    cr_assert_eq(k.dropped[MQE2E_DROP_AUTH], 2);
    cr_assert_eq(drops_total(&k), 4);

    int codes[4] = {0};
    for (int i = 0; i < 4; i++) {
        const char *t = ib.drop_topic[i];
        if (strcmp(t, "sensors/live/garbage") == 0) codes[0] = ib.drop_code[i];
        if (strcmp(t, "sensors/live/a") == 0) codes[1] = ib.drop_code[i];
        if (strcmp(t, "sensors/live/b") == 0) codes[2] = ib.drop_code[i];
        if (strcmp(t, "sensors/live/c") == 0) codes[3] = ib.drop_code[i];
    }
    cr_assert_eq(codes[0], MQE2E_ERR_DECODE);
    cr_assert_eq(codes[1], MQE2E_ERR_REPLAY);
    cr_assert_eq(codes[2], MQE2E_ERR_AUTH);
    cr_assert_eq(codes[3], MQE2E_ERR_AUTH);

    free(env_a);
    free(env_b);
    free(env_c);
    raw_close(&raw);
    enc_close(&pub);
    enc_close(&sub);
    mqe2e_keystore_close(ks_pub);
    mqe2e_keystore_close(ks_sub);
}

Test(paho_sync, refused_message_is_redelivered_then_accepted_once)
{
    inbox ib;
    pinbox_init(&ib, 1);
    ib.reject_first = 1;
    mqe2e_keystore *ks_pub = make_keystore("pub", 1), *ks_sub = make_keystore("sub", 1);
    mqe2e_MQTTClient sub = enc_client(&broker, "sub", ks_sub, NULL, &ib);
    mqe2e_MQTTClient pub = enc_client(&broker, "pub", ks_pub, NULL, NULL);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(sub, FILTER, 1), MQTTCLIENT_SUCCESS);

    enc_pub(pub, "sensors/retry", "once", 4, 1, 0);
    long deadline = tu_now_ms() + WAIT_MS;
    for (;;) {
        pthread_mutex_lock(&ib.m);
        int calls = ib.calls;
        pthread_mutex_unlock(&ib.m);
        if (calls >= 1) break;
        cr_assert_lt(tu_now_ms(), deadline, "message never offered to the application");
        tu_sleep_ms(10);
    }
    /* Paho hands over one queued message per packet it reads for the
     * client, so a refused message waits for the next packet: each of these
     * publications moves the queue one step. */
    enc_pub(pub, "sensors/after", "next", 4, 1, 0);
    enc_pub(pub, "sensors/after2", "next2", 5, 1, 0);
    cr_assert(wait_count(&ib, 2), "accepted %d after %d calls", inbox_count(&ib), ib.calls);
    printf("redelivery: refused once, accepted once\n");

    pthread_mutex_lock(&ib.m);
    cr_assert_eq(ib.calls, ib.n + 1, "messageArrived called %d times for %d accepted", ib.calls,
                 ib.n);
    cr_assert_str_eq(ib.msg[0].topic, "sensors/retry");
    cr_assert_eq(ib.msg[0].len, 4);
    cr_assert_arr_eq(ib.msg[0].payload, "once", 4);
    cr_assert_str_eq(ib.msg[1].topic, "sensors/after");
    for (int i = 1; i < ib.n && i < MAXMSG; i++) {
        cr_assert_str_neq(ib.msg[i].topic, "sensors/retry", "refused message delivered twice");
    }
    pthread_mutex_unlock(&ib.m);
    cr_assert_eq(inbox_dropped(&ib), 0);
    mqe2e_counters k;
    cr_assert_eq(mqe2e_MQTTClient_getCounters(sub, &k), MQTTCLIENT_SUCCESS);
    cr_assert_eq(drops_total(&k), 0);

    enc_close(&pub);
    enc_close(&sub);
    mqe2e_keystore_close(ks_pub);
    mqe2e_keystore_close(ks_sub);
}

Test(paho_sync, strerror_and_unconfigured_client)
{
    const char *s = mqe2e_MQTTClient_strerror(MQE2E_MQTTCLIENT_NO_POLICY);
    cr_assert_not_null(s);
    cr_assert_eq(strncmp(s, "mqe2e: ", 7), 0);
    cr_assert_str_eq(s + 7, mqe2e_strerror(MQE2E_ERR_NO_POLICY));
    s = mqe2e_MQTTClient_strerror(MQE2E_MQTTCLIENT_ERR(MQE2E_ERR_AUTH));
    cr_assert_str_eq(s + 7, mqe2e_strerror(MQE2E_ERR_AUTH));
    s = mqe2e_MQTTClient_strerror(MQE2E_MQTTCLIENT_NOT_CONFIGURED);
    cr_assert_str_eq(s + 7, mqe2e_strerror(MQE2E_ERR_STATE));
    cr_assert_str_eq(mqe2e_MQTTClient_strerror(MQTTCLIENT_DISCONNECTED),
                     MQTTClient_strerror(MQTTCLIENT_DISCONNECTED));
    cr_assert_str_eq(mqe2e_MQTTClient_strerror(MQTTCLIENT_BAD_QOS),
                     MQTTClient_strerror(MQTTCLIENT_BAD_QOS));

    mqe2e_MQTTClient c = NULL;
    cr_assert_eq(mqe2e_MQTTClient_create(&c, tb_broker_uri(&broker), "lonely",
                                         MQTTCLIENT_PERSISTENCE_NONE, NULL),
                 MQTTCLIENT_SUCCESS);
    MQTTClient_connectOptions co;
    connect_opts(&co);
    cr_assert_eq(mqe2e_MQTTClient_connect(c, &co), MQE2E_MQTTCLIENT_NOT_CONFIGURED);
    cr_assert_eq(mqe2e_MQTTClient_publish(c, "sensors/x", 1, "x", 0, 0, NULL),
                 MQE2E_MQTTCLIENT_NOT_CONFIGURED);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(c, FILTER, 0), MQE2E_MQTTCLIENT_NOT_CONFIGURED);
    mqe2e_counters k;
    cr_assert_eq(mqe2e_MQTTClient_getCounters(c, &k), MQE2E_MQTTCLIENT_NOT_CONFIGURED);

    mqe2e_MQTTClient_securityOptions so = mqe2e_MQTTClient_securityOptions_initializer;
    cr_assert_eq(mqe2e_MQTTClient_setSecurity(c, &so), MQTTCLIENT_NULL_PARAMETER);
    mqe2e_keystore *ks = make_keystore("lonely", 1);
    so.keystore = ks;
    so.struct_id[3] = 'X';
    cr_assert_eq(mqe2e_MQTTClient_setSecurity(c, &so), MQTTCLIENT_BAD_STRUCTURE);
    so.struct_id[3] = 'S';
    cr_assert_eq(mqe2e_MQTTClient_setSecurity(c, &so), MQTTCLIENT_SUCCESS);
    cr_assert_eq(mqe2e_MQTTClient_setSecurity(c, &so), MQE2E_MQTTCLIENT_ERR(MQE2E_ERR_STATE));
    cr_assert_eq(mqe2e_MQTTClient_publish(c, "sensors/x", 1, "x", 0, 0, NULL),
                 MQTTCLIENT_DISCONNECTED);

    mqe2e_MQTTClient_destroy(&c);
    cr_assert_null(c);
    mqe2e_MQTTClient_destroy(&c);
    mqe2e_MQTTClient_destroy(NULL);
    mqe2e_MQTTClient_freeMessage(NULL);
    mqe2e_keystore_close(ks);
}

Test(paho_sync, plaintext_policy_topic_both_ways)
{
    inbox ib, raw_in;
    pinbox_init(&ib, 1);
    pinbox_init(&raw_in, 0);
    mqe2e_policy *pol = NULL;
    cr_assert_eq(mqe2e_policy_new(&pol), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add(pol, FILTER, MQE2E_POLICY_GROUP, GROUP), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add(pol, "public/#", MQE2E_POLICY_PLAINTEXT, NULL), MQE2E_OK);
    mqe2e_keystore *ks = make_keystore("node", 1);
    MQTTClient raw = raw_client(&broker, "raw", &raw_in);
    cr_assert_eq(MQTTClient_subscribe(raw, "public/#", 1), MQTTCLIENT_SUCCESS);
    mqe2e_MQTTClient c = enc_client(&broker, "node", ks, pol, &ib);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(c, "public/in", 1), MQTTCLIENT_SUCCESS);

    enc_pub(c, "public/out", "hello", 5, 1, 0);
    cr_assert(pinbox_wait_found(&raw_in, "public/out", WAIT_MS));
    int i = pinbox_find(&raw_in, "public/out");
    cr_assert_eq(raw_in.msg[i].len, 5);
    cr_assert_arr_eq(raw_in.msg[i].payload, "hello", 5);

    raw_pub(raw, "public/in", "world", 5);
    cr_assert(pinbox_wait_found(&ib, "public/in", WAIT_MS));
    i = pinbox_find(&ib, "public/in");
    cr_assert_eq(ib.msg[i].len, 5);
    cr_assert_arr_eq(ib.msg[i].payload, "world", 5);
    printf("plaintext topic: clear both ways\n");

    mqe2e_counters k;
    cr_assert_eq(mqe2e_MQTTClient_getCounters(c, &k), MQTTCLIENT_SUCCESS);
    cr_assert_eq(k.plaintext_out, 1);
    cr_assert_eq(k.plaintext_in, 1);
    cr_assert_eq(k.sealed, 0);

    raw_close(&raw);
    enc_close(&c);
    mqe2e_keystore_close(ks);
    mqe2e_policy_free(pol);
}

Test(paho_sync, subscriber_without_group_key_drops_no_key)
{
    inbox ib;
    pinbox_init(&ib, 1);
    mqe2e_policy *pol = NULL;
    cr_assert_eq(mqe2e_policy_new(&pol), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add(pol, FILTER, MQE2E_POLICY_GROUP, GROUP), MQE2E_OK);
    mqe2e_keystore *ks_pub = make_keystore("pub", 1), *ks_sub = make_keystore("outsider", 0);
    mqe2e_MQTTClient sub = enc_client(&broker, "outsider", ks_sub, pol, &ib);
    mqe2e_MQTTClient pub = enc_client(&broker, "pub", ks_pub, NULL, NULL);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(sub, FILTER, 1), MQTTCLIENT_SUCCESS);

    enc_pub(pub, "sensors/x", "private", 7, 1, 0);
    cr_assert(wait_drops(sub, 1));
    long deadline = tu_now_ms() + WAIT_MS;
    while (inbox_dropped(&ib) < 1 && tu_now_ms() < deadline)
        tu_sleep_ms(10);
    printf("no key: dropped\n");

    mqe2e_counters k;
    cr_assert_eq(mqe2e_MQTTClient_getCounters(sub, &k), MQTTCLIENT_SUCCESS);
    cr_assert_eq(k.dropped[MQE2E_DROP_NO_KEY], 1);
    cr_assert_eq(k.opened, 0);
    cr_assert_eq(inbox_count(&ib), 0);
    cr_assert_eq(inbox_dropped(&ib), 1);
    cr_assert_eq(ib.drop_code[0], MQE2E_ERR_NO_KEY);
    cr_assert_str_eq(ib.drop_topic[0], "sensors/x");

    enc_close(&pub);
    enc_close(&sub);
    mqe2e_keystore_close(ks_pub);
    mqe2e_keystore_close(ks_sub);
    mqe2e_policy_free(pol);
}
