/*
 * retained_last_value: an encrypted retained "last value" that a subscriber
 * arriving later can still read -- across a key rotation, within the grace
 * period.
 *
 *   retained_last_value publish TOPIC VALUE
 *   retained_last_value read TOPIC [TIMEOUT_SECONDS [GRACE_SECONDS]]
 *
 * publish: seals VALUE with the current epoch of the keystore group whose
 *   filter covers TOPIC and publishes it retained (QoS 1). The broker keeps
 *   the envelope -- ciphertext -- and hands it to every later subscriber.
 * read: prints the group's epochs as this keystore holds them, subscribes to
 *   TOPIC and prints the retained value (exit 0), or the reason it was
 *   refused (exit 1; also 1 when nothing arrives before TIMEOUT_SECONDS,
 *   default 5).
 *
 * Why it matters: a retained message outlives key rotations. After the group
 * is rotated (`mqe2e group rotate`, or by the authority) the envelope still
 * names the old epoch. Receivers keep a retired epoch readable for a grace
 * period (default 3600 s, GRACE_SECONDS overrides it here), so the last value
 * stays readable until the publisher republishes it under the new epoch;
 * after the grace period it is refused as expired, never shown.
 *
 * Environment: MQE2E_KEYSTORE (default lastvalue.ks), MQE2E_PASSPHRASE,
 * MQE2E_BROKER_HOST (default 127.0.0.1), MQE2E_BROKER_PORT (default 1883).
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mqe2e/MQTTClient.h"

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : fallback;
}

static void on_dropped(void *context, const char *topic, int code)
{
    (void)context;
    printf("refused the message on %s: %s\n", topic, mqe2e_strerror(code));
    fflush(stdout);
}

/* The group protecting @p topic (the default policy: first matching group). */
static const char *group_for(const mqe2e_keystore *ks, const char *topic)
{
    for (size_t i = 0; i < mqe2e_keystore_group_count(ks); i++) {
        const char *g = mqe2e_keystore_group_name(ks, i);
        if (mqe2e_topic_matches(mqe2e_keystore_group_filter(ks, g), topic)) return g;
    }
    return NULL;
}

/* Which epochs this keystore can read, and until when. */
static void print_epochs(const mqe2e_keystore *ks, const char *group, uint64_t grace)
{
    uint32_t current = 0;
    if (mqe2e_keystore_group_current_epoch(ks, group, &current) != MQE2E_OK) return;
    uint64_t now = (uint64_t)time(NULL);
    printf("group %s: current epoch %u\n", group, current);
    for (uint32_t e = current; e-- > 1;) {
        uint8_t secret[MQE2E_GROUP_SECRET_BYTES];
        uint64_t retired_at = 0;
        int rc = mqe2e_keystore_group_secret(ks, group, e, secret, &retired_at);
        sodium_memzero(secret, sizeof secret); /* only the retirement time is wanted */
        if (rc != MQE2E_OK) continue;
        if (now <= retired_at + grace)
            printf("group %s: epoch %u retired, readable for %llu more s\n", group, e,
                   (unsigned long long)(retired_at + grace - now));
        else
            printf("group %s: epoch %u retired, past its grace period\n", group, e);
    }
    fflush(stdout);
}

static int publish(mqe2e_MQTTClient client, const mqe2e_keystore *ks, const char *topic,
                   const char *value)
{
    MQTTClient_deliveryToken token;
    int rc = mqe2e_MQTTClient_publish(client, topic, (int)strlen(value), value, 1, 1, &token);
    if (rc == MQTTCLIENT_SUCCESS) rc = mqe2e_MQTTClient_waitForCompletion(client, token, 5000UL);
    if (rc != MQTTCLIENT_SUCCESS) {
        fprintf(stderr, "retained_last_value: publish: %s\n", mqe2e_MQTTClient_strerror(rc));
        return 1;
    }
    uint32_t epoch = 0;
    const char *group = group_for(ks, topic);
    (void)mqe2e_keystore_group_current_epoch(ks, group, &epoch);
    printf("published retained value on %s (group %s, epoch %u)\n", topic, group, epoch);
    return 0;
}

/* receive() mode: no callbacks, one thread. */
static int read_last(mqe2e_MQTTClient client, const char *topic, int timeout_s)
{
    int rc = mqe2e_MQTTClient_subscribe(client, topic, 1);
    if (rc != MQTTCLIENT_SUCCESS) {
        fprintf(stderr, "retained_last_value: subscribe: %s\n", mqe2e_MQTTClient_strerror(rc));
        return 1;
    }
    time_t deadline = time(NULL) + timeout_s;
    while (time(NULL) < deadline) {
        char *name = NULL;
        int name_len = 0;
        MQTTClient_message *msg = NULL;
        rc = mqe2e_MQTTClient_receive(client, &name, &name_len, &msg, 500UL);
        if (msg == NULL) continue; /* timeout, or a refused message (see on_dropped) */
        printf("read %s value on %s: %.*s\n", msg->retained ? "retained" : "live", name,
               msg->payloadlen, (const char *)msg->payload);
        mqe2e_MQTTClient_freeMessage(&msg); /* wipes the plaintext */
        mqe2e_MQTTClient_free(name);
        return 0;
    }
    printf("no readable value on %s\n", topic);
    return 1;
}

int main(int argc, char **argv)
{
    int reading = argc >= 3 && strcmp(argv[1], "read") == 0;
    if (!reading && !(argc == 4 && strcmp(argv[1], "publish") == 0)) {
        fprintf(stderr, "usage: retained_last_value publish TOPIC VALUE\n"
                        "       retained_last_value read TOPIC [TIMEOUT_SECONDS [GRACE_SECONDS]]\n");
        return 1;
    }
    const char *topic = argv[2];
    int timeout_s = reading && argc > 3 ? atoi(argv[3]) : 5;
    if (timeout_s <= 0) timeout_s = 5;
    mqe2e_protector_options popts = MQE2E_PROTECTOR_OPTIONS_INIT;
    if (reading && argc > 4) popts.epoch_grace_seconds = strtoull(argv[4], NULL, 10);
    char uri[256];
    snprintf(uri, sizeof uri, "tcp://%s:%s", env_or("MQE2E_BROKER_HOST", "127.0.0.1"),
             env_or("MQE2E_BROKER_PORT", "1883"));

    const char *path = env_or("MQE2E_KEYSTORE", "lastvalue.ks");
    const char *pass = env_or("MQE2E_PASSPHRASE", "");
    mqe2e_storage storage;
    mqe2e_keystore *ks = NULL;
    int rc = mqe2e_storage_file_passphrase(&storage, path, pass, strlen(pass));
    if (rc == MQE2E_OK) rc = mqe2e_keystore_open(&ks, storage);
    if (rc != MQE2E_OK) {
        fprintf(stderr, "retained_last_value: keystore %s: %s\n", path, mqe2e_strerror(rc));
        return 1;
    }
    const char *group = group_for(ks, topic);
    if (group == NULL) {
        fprintf(stderr, "retained_last_value: no group of %s covers %s\n", path, topic);
        mqe2e_keystore_close(ks);
        return 1;
    }
    if (reading) print_epochs(ks, group, popts.epoch_grace_seconds);

    int exit_code = 1;
    char client_id[300];
    snprintf(client_id, sizeof client_id, "%s-lastvalue", mqe2e_keystore_client_id(ks));
    mqe2e_MQTTClient client = NULL;
    rc = mqe2e_MQTTClient_create(&client, uri, client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL);
    if (rc == MQTTCLIENT_SUCCESS) {
        /* policy NULL: one rule per keystore group, on the group's filter. */
        mqe2e_MQTTClient_securityOptions sec = mqe2e_MQTTClient_securityOptions_initializer;
        sec.keystore = ks;
        sec.protector = &popts;
        sec.onDropped = on_dropped;
        rc = mqe2e_MQTTClient_setSecurity(client, &sec);
    }
    MQTTClient_connectOptions conn = MQTTClient_connectOptions_initializer;
    conn.keepAliveInterval = 20;
    conn.cleansession = 1;
    if (rc == MQTTCLIENT_SUCCESS) rc = mqe2e_MQTTClient_connect(client, &conn);
    if (rc != MQTTCLIENT_SUCCESS) {
        fprintf(stderr, "retained_last_value: %s: %s\n", uri, mqe2e_MQTTClient_strerror(rc));
        goto out;
    }
    exit_code = reading ? read_last(client, topic, timeout_s) : publish(client, ks, topic, argv[3]);
    mqe2e_MQTTClient_disconnect(client, 5000);
out:
    mqe2e_MQTTClient_destroy(&client);
    mqe2e_keystore_close(ks);
    return exit_code;
}
