/*
 * A receiver in its own process for tests that kill it (test_control_plane
 * ::spooled_messages_survive_kill_9_of_the_receiver): opens a keystore with
 * a raw key file, uses its spool (spoolKeystorePath), subscribes FILTER at
 * QoS 1 in callback mode and prints each delivered payload on its own line
 * (flushed). Exits 0 after COUNT messages (0: never), 4 after TIMEOUT s.
 *
 * usage: spool_receiver URI MQTT_ID KEYSTORE KEYFILE FILTER COUNT TIMEOUT_S
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "mqe2e/MQTTClient.h"
#include "mqe2e/mqe2e.h"

static atomic_int received;

static int on_message(void *ctx, char *topic, int topic_len, MQTTClient_message *msg)
{
    (void)ctx;
    (void)topic_len;
    printf("%.*s\n", msg->payloadlen, (const char *)msg->payload);
    (void)fflush(stdout);
    atomic_fetch_add(&received, 1);
    mqe2e_MQTTClient_freeMessage(&msg);
    mqe2e_MQTTClient_free(topic);
    return 1;
}

int main(int argc, char **argv)
{
    uint8_t key[MQE2E_STORAGE_KEY_BYTES];
    mqe2e_storage st;
    mqe2e_keystore *ks = NULL;
    mqe2e_MQTTClient c = NULL;
    if (argc != 8) {
        fprintf(stderr,
                "usage: spool_receiver URI MQTT_ID KEYSTORE KEYFILE FILTER COUNT TIMEOUT_S\n");
        return 2;
    }
    int count = atoi(argv[6]);
    long timeout_s = atol(argv[7]);
    if (mqe2e_init() != MQE2E_OK || mqe2e_storage_read_key_file(key, argv[4]) != MQE2E_OK ||
        mqe2e_storage_file_key(&st, argv[3], key) != MQE2E_OK ||
        mqe2e_keystore_open(&ks, st) != MQE2E_OK) {
        fprintf(stderr, "spool_receiver: cannot open %s\n", argv[3]);
        return 3;
    }
    sodium_memzero(key, sizeof key);
    mqe2e_MQTTClient_securityOptions so = mqe2e_MQTTClient_securityOptions_initializer;
    MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer;
    so.keystore = ks;
    so.spoolKeystorePath = getenv("CP_NO_SPOOL") != NULL ? NULL : argv[3];
    int rc = mqe2e_MQTTClient_create(&c, argv[1], argv[2], MQTTCLIENT_PERSISTENCE_NONE, NULL);
    if (rc == MQTTCLIENT_SUCCESS) rc = mqe2e_MQTTClient_setSecurity(c, &so);
    if (rc == MQTTCLIENT_SUCCESS)
        rc = mqe2e_MQTTClient_setCallbacks(c, NULL, NULL, on_message, NULL);
    co.keepAliveInterval = 20;
    co.cleansession = 1;
    if (rc == MQTTCLIENT_SUCCESS) rc = mqe2e_MQTTClient_connect(c, &co);
    if (rc == MQTTCLIENT_SUCCESS) rc = mqe2e_MQTTClient_subscribe(c, argv[5], 1);
    if (rc != MQTTCLIENT_SUCCESS) {
        fprintf(stderr, "spool_receiver: %s\n", mqe2e_MQTTClient_strerror(rc));
        return 3;
    }
    fprintf(stderr, "spool_receiver: subscribed\n");
    time_t end = time(NULL) + timeout_s;
    int code = 4;
    while (time(NULL) < end) {
        if (count > 0 && atomic_load(&received) >= count) {
            code = 0;
            break;
        }
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    (void)mqe2e_MQTTClient_disconnect(c, 1000);
    mqe2e_MQTTClient_destroy(&c);
    mqe2e_keystore_close(ks);
    return code;
}
