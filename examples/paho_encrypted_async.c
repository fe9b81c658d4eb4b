/*
 * A Paho MQTT C asynchronous program and its encrypted twin.
 *
 *   examples/paho_plain_async.c      plain Eclipse Paho (MQTTAsync_*)
 *   examples/paho_encrypted_async.c  the same program through mqe2e
 *
 * Both connect, subscribe to examples/greeting, send COUNT greetings there
 * at QoS 1, print each one they receive back and exit 0 once all came back
 * (1 on timeout). Every request completes in a callback (onSuccess or
 * onFailure) that only sets a flag; the main thread waits on the flags.
 * Run `diff` on the two files: the twin differs only in
 *   - the include line (mqe2e/MQTTAsync.h instead of MQTTAsync.h),
 *   - the names: the handle type MQTTAsync and every MQTTAsync_xxx( call
 *     gain the prefix "mqe2e_",
 *   - the block between the "mqe2e: begin" and "mqe2e: end" comments: the
 *     one added call (setSecurity, which opens the keystore; destroy closes
 *     it).
 * Paho's structs, initializers and callback types (MQTTAsync_connectOptions,
 * MQTTAsync_responseOptions, MQTTAsync_successData, MQTTAsync_message, ...)
 * are used unchanged.
 *
 *   paho_plain_async [COUNT]      paho_encrypted_async [COUNT]     (COUNT default 3)
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

#include "mqe2e/MQTTAsync.h"

#define TOPIC "examples/greeting"

/* The outcome of one request: 0 while pending, 1 done, -1 failed. */
typedef struct request {
    atomic_int state;
    atomic_int code; /* Paho's code on failure */
} request;

static atomic_int received;

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : fallback;
}

/* Callbacks run on Paho's threads: they only record what happened. */
static void on_success(void *context, MQTTAsync_successData *response)
{
    (void)response;
    atomic_store(&((request *)context)->state, 1);
}

static void on_failure(void *context, MQTTAsync_failureData *response)
{
    request *req = context;
    atomic_store(&req->code, response != NULL ? response->code : MQTTASYNC_FAILURE);
    atomic_store(&req->state, -1);
}

static int on_message(void *context, char *topic, int topic_len, MQTTAsync_message *msg)
{
    (void)context;
    (void)topic_len;
    printf("received on %s: %.*s\n", topic, msg->payloadlen, (const char *)msg->payload);
    fflush(stdout);
    atomic_fetch_add(&received, 1);
    mqe2e_MQTTAsync_freeMessage(&msg);
    mqe2e_MQTTAsync_free(topic);
    return 1; /* 1: the message is handled */
}

static void on_connection_lost(void *context, char *cause)
{
    (void)context;
    fprintf(stderr, "connection lost: %s\n", cause != NULL ? cause : "unknown");
}

/* Wait (at most timeout_ms) for a request to complete: MQTTASYNC_SUCCESS or Paho's code. */
static int wait_for(request *req, int timeout_ms)
{
    for (int waited_ms = 0; atomic_load(&req->state) == 0 && waited_ms < timeout_ms;
         waited_ms += 10) {
        struct timespec pause = {0, 10L * 1000L * 1000L};
        nanosleep(&pause, NULL);
    }
    int state = atomic_load(&req->state);
    if (state == 0) return MQTTASYNC_OPERATION_INCOMPLETE;
    return state == 1 ? MQTTASYNC_SUCCESS : atomic_load(&req->code);
}

int main(int argc, char **argv)
{
    int count = argc > 1 ? atoi(argv[1]) : 3;
    if (count <= 0) count = 3;
    char uri[256];
    snprintf(uri, sizeof uri, "tcp://%s:%s", env_or("MQE2E_BROKER_HOST", "127.0.0.1"),
             env_or("MQE2E_BROKER_PORT", "1883"));

    mqe2e_MQTTAsync client = NULL;
    const char *client_id = env_or("MQE2E_CLIENT_ID", "paho-example");
    int rc = mqe2e_MQTTAsync_create(&client, uri, client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL);
    if (rc != MQTTASYNC_SUCCESS) {
        fprintf(stderr, "create: %s\n", mqe2e_MQTTAsync_strerror(rc));
        return 1;
    }

    /* mqe2e: begin configuration */
    /* The one added call: open and lock the keystore made with `mqe2e keygen`
     * (group "demo" imported with `mqe2e group import`), its passphrase from
     * MQE2E_PASSPHRASE. Each group of the keystore protects its topic filter;
     * a topic no group covers is refused, never sent in clear. destroy()
     * writes the keystore back and wipes it. */
    mqe2e_MQTTAsync_securityOptions sec = mqe2e_MQTTAsync_securityOptions_initializer;
    sec.keystorePath = env_or("MQE2E_KEYSTORE", "example.ks");
    sec.passphraseEnv = "MQE2E_PASSPHRASE";
    rc = mqe2e_MQTTAsync_setSecurity(client, &sec);
    if (rc != MQTTASYNC_SUCCESS) {
        fprintf(stderr, "setSecurity: %s\n", mqe2e_MQTTAsync_strerror(rc));
        mqe2e_MQTTAsync_destroy(&client);
        return 1;
    }
    /* mqe2e: end configuration */

    int exit_code = 1;
    request connected = {0, 0}, subscribed = {0, 0}, disconnected = {0, 0};
    rc = mqe2e_MQTTAsync_setCallbacks(client, NULL, on_connection_lost, on_message, NULL);
    MQTTAsync_connectOptions conn = MQTTAsync_connectOptions_initializer;
    conn.keepAliveInterval = 20;
    conn.cleansession = 1;
    conn.onSuccess = on_success;
    conn.onFailure = on_failure;
    conn.context = &connected;
    if (rc == MQTTASYNC_SUCCESS) rc = mqe2e_MQTTAsync_connect(client, &conn);
    if (rc == MQTTASYNC_SUCCESS) rc = wait_for(&connected, 10000);
    MQTTAsync_responseOptions sub = MQTTAsync_responseOptions_initializer;
    sub.onSuccess = on_success;
    sub.onFailure = on_failure;
    sub.context = &subscribed;
    if (rc == MQTTASYNC_SUCCESS) rc = mqe2e_MQTTAsync_subscribe(client, TOPIC, 1, &sub);
    if (rc == MQTTASYNC_SUCCESS) rc = wait_for(&subscribed, 10000);
    if (rc != MQTTASYNC_SUCCESS) {
        fprintf(stderr, "connect/subscribe %s: %s\n", uri, mqe2e_MQTTAsync_strerror(rc));
        goto out;
    }

    for (int i = 1; i <= count; i++) {
        char text[64];
        int len = snprintf(text, sizeof text, "hello from the example, message %d", i);
        MQTTAsync_message msg = MQTTAsync_message_initializer;
        msg.payload = text;
        msg.payloadlen = len;
        msg.qos = 1;
        MQTTAsync_responseOptions send = MQTTAsync_responseOptions_initializer;
        rc = mqe2e_MQTTAsync_sendMessage(client, TOPIC, &msg, &send);
        if (rc == MQTTASYNC_SUCCESS)
            rc = mqe2e_MQTTAsync_waitForCompletion(client, send.token, 5000UL);
        if (rc != MQTTASYNC_SUCCESS) {
            fprintf(stderr, "send: %s\n", mqe2e_MQTTAsync_strerror(rc));
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
    MQTTAsync_disconnectOptions dis = MQTTAsync_disconnectOptions_initializer;
    dis.timeout = 5000;
    dis.onSuccess = on_success;
    dis.onFailure = on_failure;
    dis.context = &disconnected;
    if (mqe2e_MQTTAsync_disconnect(client, &dis) == MQTTASYNC_SUCCESS)
        (void)wait_for(&disconnected, 6000);
out:
    mqe2e_MQTTAsync_destroy(&client);
    return exit_code;
}
