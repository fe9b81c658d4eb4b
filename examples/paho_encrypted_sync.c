/*
 * A Paho MQTT C program and its encrypted twin.
 *
 *   examples/paho_plain_sync.c      plain Eclipse Paho (MQTTClient_*)
 *   examples/paho_encrypted_sync.c  the same program through mqe2e
 *
 * Both subscribe to examples/greeting, publish COUNT greetings there at QoS 1,
 * print each one they receive back and exit 0 once all came back (1 on
 * timeout). Run `diff` on the two files: the twin differs only in
 *   - the include line (mqe2e/MQTTClient.h instead of MQTTClient.h),
 *   - the names: the handle type MQTTClient and every MQTTClient_xxx( call
 *     gain the prefix "mqe2e_",
 *   - the block between the "mqe2e: begin" and "mqe2e: end" comments: the
 *     one added call (setSecurity, which opens the keystore; destroy closes
 *     it).
 * Paho's structs and initializers (MQTTClient_connectOptions,
 * MQTTClient_message, ...) are used unchanged.
 *
 *   paho_plain_sync [COUNT]       paho_encrypted_sync [COUNT]      (COUNT default 3)
 *
 * Environment: MQE2E_BROKER_HOST (default 127.0.0.1), MQE2E_BROKER_PORT
 * (default 1883), MQE2E_CLIENT_ID (default paho-example); the encrypted twin
 * also MQE2E_KEYSTORE (default example.ks, holding a group "demo" whose
 * filter covers examples/greeting) and MQE2E_PASSPHRASE.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mqe2e/MQTTClient.h"

#define TOPIC "examples/greeting"

static atomic_int received;

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : fallback;
}

/* Runs on Paho's thread: never call the client from here. */
static int on_message(void *context, char *topic, int topic_len, MQTTClient_message *msg)
{
    (void)context;
    (void)topic_len;
    printf("received on %s: %.*s\n", topic, msg->payloadlen, (const char *)msg->payload);
    fflush(stdout);
    atomic_fetch_add(&received, 1);
    mqe2e_MQTTClient_freeMessage(&msg);
    mqe2e_MQTTClient_free(topic);
    return 1; /* 1: the message is handled */
}

static void on_connection_lost(void *context, char *cause)
{
    (void)context;
    fprintf(stderr, "connection lost: %s\n", cause != NULL ? cause : "unknown");
}

int main(int argc, char **argv)
{
    int count = argc > 1 ? atoi(argv[1]) : 3;
    if (count <= 0) count = 3;
    char uri[256];
    snprintf(uri, sizeof uri, "tcp://%s:%s", env_or("MQE2E_BROKER_HOST", "127.0.0.1"),
             env_or("MQE2E_BROKER_PORT", "1883"));

    mqe2e_MQTTClient client = NULL;
    const char *client_id = env_or("MQE2E_CLIENT_ID", "paho-example");
    int rc = mqe2e_MQTTClient_create(&client, uri, client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL);
    if (rc != MQTTCLIENT_SUCCESS) {
        fprintf(stderr, "create: %s\n", mqe2e_MQTTClient_strerror(rc));
        return 1;
    }

    /* mqe2e: begin configuration */
    /* The one added call: open and lock the keystore made with `mqe2e keygen`
     * (group "demo" imported with `mqe2e group import`), its passphrase from
     * MQE2E_PASSPHRASE. Each group of the keystore protects its topic filter;
     * a topic no group covers is refused, never sent in clear. destroy()
     * writes the keystore back and wipes it. */
    mqe2e_MQTTClient_securityOptions sec = mqe2e_MQTTClient_securityOptions_initializer;
    sec.keystorePath = env_or("MQE2E_KEYSTORE", "example.ks");
    sec.passphraseEnv = "MQE2E_PASSPHRASE";
    rc = mqe2e_MQTTClient_setSecurity(client, &sec);
    if (rc != MQTTCLIENT_SUCCESS) {
        fprintf(stderr, "setSecurity: %s\n", mqe2e_MQTTClient_strerror(rc));
        mqe2e_MQTTClient_destroy(&client);
        return 1;
    }
    /* mqe2e: end configuration */

    int exit_code = 1;
    rc = mqe2e_MQTTClient_setCallbacks(client, NULL, on_connection_lost, on_message, NULL);
    MQTTClient_connectOptions conn = MQTTClient_connectOptions_initializer;
    conn.keepAliveInterval = 20;
    conn.cleansession = 1;
    if (rc == MQTTCLIENT_SUCCESS) rc = mqe2e_MQTTClient_connect(client, &conn);
    if (rc == MQTTCLIENT_SUCCESS) rc = mqe2e_MQTTClient_subscribe(client, TOPIC, 1);
    if (rc != MQTTCLIENT_SUCCESS) {
        fprintf(stderr, "connect/subscribe %s: %s\n", uri, mqe2e_MQTTClient_strerror(rc));
        goto out;
    }

    for (int i = 1; i <= count; i++) {
        char text[64];
        int len = snprintf(text, sizeof text, "hello from the example, message %d", i);
        MQTTClient_deliveryToken token;
        rc = mqe2e_MQTTClient_publish(client, TOPIC, len, text, 1, 0, &token);
        if (rc == MQTTCLIENT_SUCCESS)
            rc = mqe2e_MQTTClient_waitForCompletion(client, token, 5000UL);
        if (rc != MQTTCLIENT_SUCCESS) {
            fprintf(stderr, "publish: %s\n", mqe2e_MQTTClient_strerror(rc));
            goto out;
        }
        printf("published message %d on %s\n", i, TOPIC);
        fflush(stdout);
    }

    /* Messages come back on Paho's thread; this one only waits (at most 10 s). */
    for (int waited_ms = 0; atomic_load(&received) < count && waited_ms < 10000; waited_ms += 50) {
        struct timespec pause = {0, 50L * 1000L * 1000L};
        nanosleep(&pause, NULL);
    }
    exit_code = atomic_load(&received) >= count ? 0 : 1;
    printf("received %d of %d\n", atomic_load(&received), count);
    mqe2e_MQTTClient_disconnect(client, 5000);
out:
    mqe2e_MQTTClient_destroy(&client);
    return exit_code;
}
