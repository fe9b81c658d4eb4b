/*
 * hr_backend: a backend service decrypting every device's heart rate.
 *
 *   hr_backend [COUNT [TIMEOUT_SECONDS]]   (defaults 10 messages, 30 s)
 *
 * Subscribes to health/+/heartrate with Paho-style callbacks, prints each
 * decrypted reading, and exits after COUNT messages or the timeout, printing
 * the client's counters (including every drop reason). Exit code 0 when COUNT
 * messages arrived, 1 otherwise.
 *
 * Environment: MQE2E_KEYSTORE (default backend.ks), MQE2E_PASSPHRASE,
 * MQE2E_BROKER_HOST (default 127.0.0.1), MQE2E_BROKER_PORT (default 1883),
 * MQE2E_BROKER_USERNAME and MQE2E_BROKER_PASSWORD (broker login, optional),
 * MQE2E_BROKER_CAFILE (CA certificates: connect with TLS).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mqe2e/MQTTClient.h"

#define FILTER "health/+/heartrate"

static atomic_int received;

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : fallback;
}

/* Same signature as Paho's: only authenticated plaintext ever gets here. */
static int on_message(void *context, char *topic, int topic_len, MQTTClient_message *msg)
{
    (void)context;
    (void)topic_len;
    printf("backend decrypted [%s]: %.*s\n", topic, msg->payloadlen, (const char *)msg->payload);
    fflush(stdout);
    atomic_fetch_add(&received, 1);
    mqe2e_MQTTClient_freeMessage(&msg); /* wipes the plaintext */
    mqe2e_MQTTClient_free(topic);
    return 1;
}

static void on_connection_lost(void *context, char *cause)
{
    (void)context;
    fprintf(stderr, "backend: connection lost: %s\n", cause != NULL ? cause : "unknown");
}

static void on_dropped(void *context, const char *topic, int code)
{
    (void)context;
    fprintf(stderr, "backend dropped a message on %s: %s\n", topic, mqe2e_strerror(code));
}

static void print_counters(mqe2e_MQTTClient client)
{
    mqe2e_counters c;
    if (mqe2e_MQTTClient_getCounters(client, &c) != MQTTCLIENT_SUCCESS) return;
    printf("backend counters: opened %llu, dropped:", (unsigned long long)c.opened);
    for (int r = 0; r < MQE2E_DROP_REASON_COUNT; r++)
        printf(" %s %llu", mqe2e_drop_reason_name((mqe2e_drop_reason)r),
               (unsigned long long)c.dropped[r]);
    printf("\n");
}

int main(int argc, char **argv)
{
    int count = argc > 1 ? atoi(argv[1]) : 10;
    int timeout_s = argc > 2 ? atoi(argv[2]) : 30;
    if (count <= 0) count = 10;
    if (timeout_s <= 0) timeout_s = 30;
    char uri[256];
    /* TLS when a CA file is given: ssl:// and Paho's SSL options, unchanged. */
    const char *cafile = getenv("MQE2E_BROKER_CAFILE");
    snprintf(uri, sizeof uri, "%s://%s:%s", cafile != NULL ? "ssl" : "tcp",
             env_or("MQE2E_BROKER_HOST", "127.0.0.1"),
             env_or("MQE2E_BROKER_PORT", "1883"));
    const char *path = env_or("MQE2E_KEYSTORE", "backend.ks");
    const char *pass = getenv("MQE2E_PASSPHRASE");
    if (pass == NULL || pass[0] == '\0') {
        fprintf(stderr, "hr_backend: set MQE2E_PASSPHRASE\n");
        return 1;
    }

    mqe2e_storage storage;
    mqe2e_keystore *ks = NULL;
    int rc = mqe2e_storage_file_passphrase(&storage, path, pass, strlen(pass));
    if (rc == MQE2E_OK) rc = mqe2e_keystore_open(&ks, storage);
    if (rc != MQE2E_OK) {
        fprintf(stderr, "hr_backend: cannot open keystore %s: %s\n", path, mqe2e_strerror(rc));
        return 1;
    }

    int exit_code = 1;
    mqe2e_MQTTClient client = NULL;
    rc = mqe2e_MQTTClient_create(&client, uri, mqe2e_keystore_client_id(ks),
                                 MQTTCLIENT_PERSISTENCE_NONE, NULL);
    if (rc != MQTTCLIENT_SUCCESS) {
        fprintf(stderr, "hr_backend: create: %s\n", mqe2e_MQTTClient_strerror(rc));
        goto out;
    }
    mqe2e_MQTTClient_securityOptions sec = mqe2e_MQTTClient_securityOptions_initializer;
    sec.keystore = ks;
    sec.onDropped = on_dropped;
    rc = mqe2e_MQTTClient_setSecurity(client, &sec);
    if (rc == MQTTCLIENT_SUCCESS)
        rc = mqe2e_MQTTClient_setCallbacks(client, NULL, on_connection_lost, on_message, NULL);
    if (rc != MQTTCLIENT_SUCCESS) {
        fprintf(stderr, "hr_backend: setup: %s\n", mqe2e_MQTTClient_strerror(rc));
        goto out;
    }
    MQTTClient_connectOptions conn = MQTTClient_connectOptions_initializer;
    conn.keepAliveInterval = 20;
    conn.cleansession = 1;
    /* Broker login (brokers with allow_anonymous false): user name and
     * password from the environment, never from argv. */
    conn.username = getenv("MQE2E_BROKER_USERNAME");
    conn.password = conn.username != NULL ? getenv("MQE2E_BROKER_PASSWORD") : NULL;
    MQTTClient_SSLOptions ssl = MQTTClient_SSLOptions_initializer;
    if (cafile != NULL) {
        ssl.trustStore = cafile;
        conn.ssl = &ssl;
    }
    rc = mqe2e_MQTTClient_connect(client, &conn);
    if (rc == MQTTCLIENT_SUCCESS) rc = mqe2e_MQTTClient_subscribe(client, FILTER, 1);
    if (rc != MQTTCLIENT_SUCCESS) {
        fprintf(stderr, "hr_backend: connect/subscribe %s: %s\n", uri,
                mqe2e_MQTTClient_strerror(rc));
        goto out;
    }
    printf("backend subscribed to %s\n", FILTER);
    fflush(stdout);

    /* Messages arrive on Paho's thread; this one only waits. */
    for (int waited_ms = 0; atomic_load(&received) < count && waited_ms < timeout_s * 1000;
         waited_ms += 100) {
        struct timespec pause = {0, 100L * 1000L * 1000L};
        nanosleep(&pause, NULL);
    }
    exit_code = atomic_load(&received) >= count ? 0 : 1;
    if (exit_code != 0)
        fprintf(stderr, "hr_backend: timed out with %d of %d messages\n", atomic_load(&received),
                count);
    print_counters(client);
    mqe2e_MQTTClient_disconnect(client, 5000); /* also saves replay state */
out:
    mqe2e_MQTTClient_destroy(&client);
    mqe2e_keystore_close(ks);
    return exit_code;
}
