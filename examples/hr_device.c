/*
 * hr_device: a heart-rate monitor publishing encrypted readings.
 *
 *   hr_device [COUNT]            (default 10 readings, one every ~200 ms)
 *
 * Environment:
 *   MQE2E_KEYSTORE     keystore file (default device.ks), made with `mqe2e keygen`
 *                      and holding a group whose filter covers health/hr-1/heartrate
 *   MQE2E_PASSPHRASE   the keystore passphrase
 *   MQE2E_BROKER_HOST  broker host (default 127.0.0.1)
 *   MQE2E_BROKER_PORT  broker port (default 1883)
 *   MQE2E_BROKER_USERNAME, MQE2E_BROKER_PASSWORD  broker login (optional)
 *   MQE2E_BROKER_CAFILE  CA certificates (PEM): connect with TLS (ssl://)
 *
 * Compared with a plain Paho program, only the names change (mqe2e_ prefix)
 * and one call is added: mqe2e_MQTTClient_setSecurity().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mqe2e/MQTTClient.h"

#define TOPIC "health/hr-1/heartrate"

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : fallback;
}

static mqe2e_keystore *open_keystore(const char *path)
{
    const char *pass = getenv("MQE2E_PASSPHRASE");
    if (pass == NULL || pass[0] == '\0') {
        fprintf(stderr, "hr_device: set MQE2E_PASSPHRASE\n");
        return NULL;
    }
    mqe2e_storage storage;
    mqe2e_keystore *ks = NULL;
    int rc = mqe2e_storage_file_passphrase(&storage, path, pass, strlen(pass));
    if (rc == MQE2E_OK)
        rc = mqe2e_keystore_open(&ks, storage); /* takes over storage, even on failure */
    if (rc != MQE2E_OK) {
        fprintf(stderr, "hr_device: cannot open keystore %s: %s\n", path, mqe2e_strerror(rc));
        return NULL;
    }
    return ks;
}

/* A publisher subscribes to nothing, but the control plane (key pushes, HELLO
 * replies) arrives as messages: Paho delivers them only to a client with a
 * messageArrived callback (or one that calls receive()). */
static int on_message(void *context, char *topic, int topic_len, MQTTClient_message *msg)
{
    (void)context;
    (void)topic_len;
    mqe2e_MQTTClient_freeMessage(&msg);
    mqe2e_MQTTClient_free(topic);
    return 1;
}

int main(int argc, char **argv)
{
    int count = argc > 1 ? atoi(argv[1]) : 10;
    if (count <= 0) count = 10;
    char uri[256];
    /* TLS when a CA file is given: ssl:// and Paho's SSL options, unchanged. */
    const char *cafile = getenv("MQE2E_BROKER_CAFILE");
    snprintf(uri, sizeof uri, "%s://%s:%s", cafile != NULL ? "ssl" : "tcp",
             env_or("MQE2E_BROKER_HOST", "127.0.0.1"),
             env_or("MQE2E_BROKER_PORT", "1883"));

    mqe2e_keystore *ks = open_keystore(env_or("MQE2E_KEYSTORE", "device.ks"));
    if (ks == NULL) return 1;

    int exit_code = 1;
    mqe2e_MQTTClient client = NULL;
    int rc = mqe2e_MQTTClient_create(&client, uri, mqe2e_keystore_client_id(ks),
                                     MQTTCLIENT_PERSISTENCE_NONE, NULL);
    if (rc != MQTTCLIENT_SUCCESS) {
        fprintf(stderr, "hr_device: create: %s\n", mqe2e_MQTTClient_strerror(rc));
        goto out;
    }

    /* The one added call. policy = NULL: protect every topic covered by one of
     * the keystore's groups; anything else is refused, never sent in clear. */
    mqe2e_MQTTClient_securityOptions sec = mqe2e_MQTTClient_securityOptions_initializer;
    sec.keystore = ks;
    rc = mqe2e_MQTTClient_setSecurity(client, &sec);
    if (rc == MQTTCLIENT_SUCCESS)
        rc = mqe2e_MQTTClient_setCallbacks(client, NULL, NULL, on_message, NULL);
    if (rc != MQTTCLIENT_SUCCESS) {
        fprintf(stderr, "hr_device: setSecurity: %s\n", mqe2e_MQTTClient_strerror(rc));
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
    if (rc != MQTTCLIENT_SUCCESS) {
        fprintf(stderr, "hr_device: connect to %s: %s\n", uri, mqe2e_MQTTClient_strerror(rc));
        goto out;
    }

    for (int seq = 1; seq <= count; seq++) {
        char reading[96];
        int bpm = 68 + (seq * 7) % 15;
        int len = snprintf(reading, sizeof reading, "{\"device\":\"hr-1\",\"bpm\":%d,\"seq\":%d}",
                           bpm, seq);
        MQTTClient_deliveryToken token;
        rc = mqe2e_MQTTClient_publish(client, TOPIC, len, reading, 1, 0, &token);
        if (rc == MQTTCLIENT_SUCCESS)
            rc = mqe2e_MQTTClient_waitForCompletion(client, token, 5000UL);
        if (rc != MQTTCLIENT_SUCCESS) {
            fprintf(stderr, "hr_device: publish: %s\n", mqe2e_MQTTClient_strerror(rc));
            goto out;
        }
        printf("device published reading %d on %s\n", seq, TOPIC);
        fflush(stdout);
        struct timespec pause = {0, 200L * 1000L * 1000L};
        nanosleep(&pause, NULL);
    }
    exit_code = 0;
    mqe2e_MQTTClient_disconnect(client, 5000);
out:
    mqe2e_MQTTClient_destroy(&client);
    mqe2e_keystore_close(ks); /* writes state, wipes keys */
    return exit_code;
}
