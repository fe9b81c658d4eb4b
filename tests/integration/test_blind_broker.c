/*
 * The broker is blind: a raw Paho subscriber on "#" sees every byte the
 * broker carries while an encrypted publisher sends distinctive plaintexts.
 * None of the plaintext, the group secret or the derived sender key may
 * appear in what it captured, and the encrypted subscriber still gets all.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker.h"
#include "mqe2e/MQTTClient.h"
#include "spy.h"
#include "testutil.h"

#define N_MSG 20
#define MAXCAP 64
#define WAIT_MS 10000L
#define GROUP "vitals"
#define FILTER "vitals/#"
#define MARKER "secret-marker-XYZ"
/* Shortest run of secret bytes that counts as a leak (a random match is ~2^-64). */
#define WINDOW 8

typedef struct capture {
    pthread_mutex_t m;
    int encrypted;
    int n;
    char topic[MAXCAP][64];
    uint8_t *payload[MAXCAP];
    int len[MAXCAP];
} capture;

static int on_message(void *ctx, char *topic, int topicLen, MQTTClient_message *msg)
{
    capture *c = ctx;
    (void)topicLen;
    pthread_mutex_lock(&c->m);
    if (c->n < MAXCAP) {
        int k = c->n;
        snprintf(c->topic[k], sizeof c->topic[k], "%s", topic);
        c->len[k] = msg->payloadlen;
        c->payload[k] = malloc((size_t)msg->payloadlen + 1);
        if (msg->payloadlen > 0) memcpy(c->payload[k], msg->payload, (size_t)msg->payloadlen);
        c->payload[k][msg->payloadlen] = 0;
    }
    c->n++;
    pthread_mutex_unlock(&c->m);
    ts_free_message(c->encrypted, &msg, topic);
    return 1;
}

static int cap_count(capture *c)
{
    pthread_mutex_lock(&c->m);
    int n = c->n;
    pthread_mutex_unlock(&c->m);
    return n;
}

static int wait_count(capture *c, int n)
{
    long deadline = tu_now_ms() + WAIT_MS;
    while (cap_count(c) < n) {
        if (tu_now_ms() > deadline) return 0;
        tu_sleep_ms(10);
    }
    return 1;
}

static void cap_free(capture *c)
{
    for (int i = 0; i < c->n && i < MAXCAP; i++)
        free(c->payload[i]);
}

/* True if any WINDOW-byte run of @p needle occurs in @p hay. */
static int leaks(const uint8_t *hay, size_t hay_len, const uint8_t *needle, size_t needle_len,
                 size_t window)
{
    if (needle_len < window) window = needle_len;
    for (size_t s = 0; s + window <= needle_len; s++) {
        for (size_t i = 0; i + window <= hay_len; i++) {
            if (memcmp(hay + i, needle + s, window) == 0) return 1;
        }
    }
    return 0;
}

static mqe2e_keystore *make_keystore(const char *id, const uint8_t *secret)
{
    mqe2e_storage st;
    mqe2e_keystore *ks = NULL;
    cr_assert_eq(mqe2e_storage_memory(&st), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_create(&ks, st, id, 0), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, GROUP, FILTER, 1, secret, (uint64_t)time(NULL)),
                 MQE2E_OK);
    return ks;
}

static void connect_opts(MQTTClient_connectOptions *o)
{
    MQTTClient_connectOptions init = MQTTClient_connectOptions_initializer;
    *o = init;
    o->keepAliveInterval = 20;
    o->cleansession = 1;
}

static mqe2e_MQTTClient enc_client(const tb_broker *b, const char *id, mqe2e_keystore *ks,
                                   capture *cap)
{
    mqe2e_MQTTClient c = NULL;
    mqe2e_MQTTClient_securityOptions so = mqe2e_MQTTClient_securityOptions_initializer;
    MQTTClient_connectOptions co;
    cr_assert_eq(
        mqe2e_MQTTClient_create(&c, tb_broker_uri(b), id, MQTTCLIENT_PERSISTENCE_NONE, NULL),
        MQTTCLIENT_SUCCESS);
    so.keystore = ks;
    cr_assert_eq(mqe2e_MQTTClient_setSecurity(c, &so), MQTTCLIENT_SUCCESS);
    if (cap != NULL) {
        cr_assert_eq(mqe2e_MQTTClient_setCallbacks(c, cap, NULL, on_message, NULL),
                     MQTTCLIENT_SUCCESS);
    }
    connect_opts(&co);
    cr_assert_eq(mqe2e_MQTTClient_connect(c, &co), MQTTCLIENT_SUCCESS);
    return c;
}

static tb_broker broker;

static void setup(void)
{
    cr_assert_eq(mqe2e_init(), MQE2E_OK);
    memset(&broker, 0, sizeof broker);
    cr_assert_eq(tb_broker_start(&broker), 0, "mosquitto did not start");
}

static void teardown(void)
{
    tb_broker_stop(&broker);
}

Test(blind_broker, broker_sees_no_plaintext_nor_keys, .init = setup, .fini = teardown,
     .timeout = 120)
{
    uint8_t secret[MQE2E_GROUP_SECRET_BYTES];
    randombytes_buf(secret, sizeof secret);
    mqe2e_keystore *ks_pub = make_keystore("heart-monitor", secret);
    mqe2e_keystore *ks_sub = make_keystore("phone", secret);

    capture raw_cap, sub_cap;
    memset(&raw_cap, 0, sizeof raw_cap);
    memset(&sub_cap, 0, sizeof sub_cap);
    pthread_mutex_init(&raw_cap.m, NULL);
    pthread_mutex_init(&sub_cap.m, NULL);
    sub_cap.encrypted = 1;

    /* The curious broker: sees everything it routes. */
    MQTTClient raw = NULL;
    MQTTClient_connectOptions co;
    cr_assert_eq(MQTTClient_create(&raw, tb_broker_uri(&broker), "broker-eye",
                                   MQTTCLIENT_PERSISTENCE_NONE, NULL),
                 MQTTCLIENT_SUCCESS);
    cr_assert_eq(MQTTClient_setCallbacks(raw, &raw_cap, NULL, on_message, NULL),
                 MQTTCLIENT_SUCCESS);
    connect_opts(&co);
    cr_assert_eq(MQTTClient_connect(raw, &co), MQTTCLIENT_SUCCESS);
    cr_assert_eq(MQTTClient_subscribe(raw, "#", 2), MQTTCLIENT_SUCCESS);

    mqe2e_MQTTClient sub = enc_client(&broker, "phone", ks_sub, &sub_cap);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(sub, FILTER, 1), MQTTCLIENT_SUCCESS);
    mqe2e_MQTTClient pub = enc_client(&broker, "heart-monitor", ks_pub, NULL);

    char plain[N_MSG][96];
    for (int i = 0; i < N_MSG; i++) {
        snprintf(plain[i], sizeof plain[i], "heart-rate=%d " MARKER "-%02d", 60 + i, i);
        MQTTClient_deliveryToken dt = 0;
        int qos = i % 3;
        cr_assert_eq(mqe2e_MQTTClient_publish(pub, i % 2 ? "vitals/hr" : "vitals/ecg",
                                              (int)strlen(plain[i]), plain[i], qos, 0, &dt),
                     MQTTCLIENT_SUCCESS);
        if (qos > 0) cr_assert_eq(mqe2e_MQTTClient_waitForCompletion(pub, dt, 5000), 0);
    }
    cr_assert(wait_count(&sub_cap, N_MSG), "subscriber got %d of %d", cap_count(&sub_cap), N_MSG);
    cr_assert(wait_count(&raw_cap, N_MSG), "broker eye got %d of %d", cap_count(&raw_cap), N_MSG);
    printf("blind broker: %d captured, %d decrypted\n", cap_count(&raw_cap), cap_count(&sub_cap));

    /* The subscriber got every plaintext, exactly. */
    for (int i = 0; i < N_MSG; i++) {
        int found = 0;
        pthread_mutex_lock(&sub_cap.m);
        for (int j = 0; j < sub_cap.n && j < MAXCAP; j++) {
            if (sub_cap.len[j] == (int)strlen(plain[i]) &&
                memcmp(sub_cap.payload[j], plain[i], strlen(plain[i])) == 0)
                found = 1;
        }
        pthread_mutex_unlock(&sub_cap.m);
        cr_assert(found, "subscriber missed message %d", i);
    }

    /* What the broker saw holds none of it. */
    mqe2e_sender_key sk;
    uint32_t sender_id = 0;
    cr_assert_eq(mqe2e_keystore_group_sender_id(ks_pub, GROUP, &sender_id), MQE2E_OK);
    cr_assert_eq(mqe2e_sender_key_derive(&sk, secret, GROUP, 1, sender_id), MQE2E_OK);
    pthread_mutex_lock(&raw_cap.m);
    int captured = raw_cap.n;
    pthread_mutex_unlock(&raw_cap.m);
    cr_assert_eq(captured, N_MSG, "the broker carried %d messages", captured);
    for (int j = 0; j < captured; j++) {
        const uint8_t *p = raw_cap.payload[j];
        size_t len = (size_t)raw_cap.len[j];
        cr_assert_gt(len, 0);
        cr_assert_not(leaks(p, len, (const uint8_t *)MARKER, strlen(MARKER), WINDOW),
                      "captured payload %d holds the marker", j);
        cr_assert_not(leaks(p, len, (const uint8_t *)"heart-rate=", 11, 11),
                      "captured payload %d holds plaintext", j);
        for (int i = 0; i < N_MSG; i++) {
            cr_assert_not(leaks(p, len, (const uint8_t *)plain[i], strlen(plain[i]), WINDOW),
                          "captured payload %d holds plaintext %d", j, i);
        }
        cr_assert_not(leaks(p, len, secret, sizeof secret, WINDOW),
                      "captured payload %d holds the group secret", j);
        cr_assert_not(leaks(p, len, sk.key, sizeof sk.key, WINDOW),
                      "captured payload %d holds the sender key", j);
        cr_assert_not(leaks(p, len, sk.iv, sizeof sk.iv, WINDOW),
                      "captured payload %d holds the sender IV", j);
        cr_assert(strncmp(raw_cap.topic[j], "vitals/", 7) == 0);
    }
    printf("blind broker: no marker, plaintext, secret or sender key in %d payloads\n", captured);

    mqe2e_counters k;
    cr_assert_eq(mqe2e_MQTTClient_getCounters(sub, &k), MQTTCLIENT_SUCCESS);
    cr_assert_eq(k.opened, N_MSG);
    cr_assert_eq(mqe2e_MQTTClient_getCounters(pub, &k), MQTTCLIENT_SUCCESS);
    cr_assert_eq(k.sealed, N_MSG);

    mqe2e_sender_key_wipe(&sk);
    sodium_memzero(secret, sizeof secret);
    mqe2e_MQTTClient_disconnect(pub, 1000);
    mqe2e_MQTTClient_disconnect(sub, 1000);
    mqe2e_MQTTClient_destroy(&pub);
    mqe2e_MQTTClient_destroy(&sub);
    MQTTClient_disconnect(raw, 1000);
    MQTTClient_destroy(&raw);
    cap_free(&raw_cap);
    cap_free(&sub_cap);
    mqe2e_keystore_close(ks_pub);
    mqe2e_keystore_close(ks_sub);
}
