/*
 * switch_controller: sends on/off commands to one switch over a pairwise channel.
 *
 *   switch_controller DEVICE_ID COMMAND...      (COMMAND: on, off or toggle)
 *
 * Publishes each COMMAND on cmd/<DEVICE_ID> with the policy rule
 * `cmd/<DEVICE_ID>=channel:<DEVICE_ID>`: the first publish starts a Noise XX
 * handshake with the device (over the control topics, through the same
 * broker), and the commands are queued until the channel is up, then sealed
 * with the channel key -- so only that device can read them and it knows they
 * came from this controller. The broker sees ciphertext; a copy replayed later
 * is refused by the device.
 *
 * Exits 0 once every command went out on the channel, 1 if the device did not
 * answer the handshake within 20 s (it must be running: see switch_device).
 * Both keystores must be enrolled with the same authority (`mqe2e enroll`).
 *
 * Environment: MQE2E_KEYSTORE (default controller.ks), MQE2E_PASSPHRASE,
 * MQE2E_BROKER_HOST (default 127.0.0.1), MQE2E_BROKER_PORT (default 1883),
 * MQE2E_DEBUG (set: print the client's log on stderr).
 */
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

/* MQE2E_DEBUG=1: the client's log (handshakes, control frames; never keys). */
static void on_log(void *context, mqe2e_log_level level, const char *message)
{
    (void)context;
    (void)level;
    fprintf(stderr, "%s: %s\n", "switch_controller", message);
}

/* Nothing is expected back; callbacks are set anyway because without them the
 * client works in receive() mode and processes control frames (the channel
 * handshake replies) only inside mqe2e_MQTTClient_receive(). */
static int on_message(void *context, char *topic, int topic_len, MQTTClient_message *msg)
{
    (void)context;
    (void)topic_len;
    mqe2e_MQTTClient_freeMessage(&msg);
    mqe2e_MQTTClient_free(topic);
    return 1;
}

static void on_dropped(void *context, const char *topic, int code)
{
    (void)context;
    fprintf(stderr, "switch_controller: dropped a message on %s: %s\n", topic,
            mqe2e_strerror(code));
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: switch_controller DEVICE_ID on|off|toggle...\n");
        return 1;
    }
    const char *device = argv[1];
    char uri[256];
    snprintf(uri, sizeof uri, "tcp://%s:%s", env_or("MQE2E_BROKER_HOST", "127.0.0.1"),
             env_or("MQE2E_BROKER_PORT", "1883"));

    const char *path = env_or("MQE2E_KEYSTORE", "controller.ks");
    const char *pass = env_or("MQE2E_PASSPHRASE", "");
    mqe2e_storage storage;
    mqe2e_keystore *ks = NULL;
    int rc = mqe2e_storage_file_passphrase(&storage, path, pass, strlen(pass));
    if (rc == MQE2E_OK) rc = mqe2e_keystore_open(&ks, storage);
    if (rc != MQE2E_OK) {
        fprintf(stderr, "switch_controller: keystore %s: %s\n", path, mqe2e_strerror(rc));
        return 1;
    }

    /* Commands for this device go over the channel with this device. */
    char topic[300], rule[600];
    snprintf(topic, sizeof topic, "cmd/%s", device);
    snprintf(rule, sizeof rule, "%s=channel:%s", topic, device);
    mqe2e_policy *policy = NULL;
    rc = mqe2e_policy_new(&policy);
    if (rc == MQE2E_OK) rc = mqe2e_policy_add_text(policy, rule);
    if (rc != MQE2E_OK) {
        fprintf(stderr, "switch_controller: policy %s: %s\n", rule, mqe2e_strerror(rc));
        mqe2e_policy_free(policy);
        mqe2e_keystore_close(ks);
        return 1;
    }

    int exit_code = 1;
    mqe2e_MQTTClient client = NULL;
    rc = mqe2e_MQTTClient_create(&client, uri, mqe2e_keystore_client_id(ks),
                                 MQTTCLIENT_PERSISTENCE_NONE, NULL);
    if (rc == MQTTCLIENT_SUCCESS) {
        mqe2e_MQTTClient_securityOptions sec = mqe2e_MQTTClient_securityOptions_initializer;
        sec.keystore = ks;
        sec.policy = policy;
        sec.onDropped = on_dropped;
        if (getenv("MQE2E_DEBUG") != NULL) {
            sec.onLog = on_log;
            sec.logLevel = MQE2E_LOG_DEBUG;
        }
        rc = mqe2e_MQTTClient_setSecurity(client, &sec);
    }
    if (rc == MQTTCLIENT_SUCCESS)
        rc = mqe2e_MQTTClient_setCallbacks(client, NULL, NULL, on_message, NULL);
    MQTTClient_connectOptions conn = MQTTClient_connectOptions_initializer;
    conn.keepAliveInterval = 20;
    conn.cleansession = 1;
    if (rc == MQTTCLIENT_SUCCESS) rc = mqe2e_MQTTClient_connect(client, &conn);
    if (rc != MQTTCLIENT_SUCCESS) {
        fprintf(stderr, "switch_controller: %s: %s\n", uri, mqe2e_MQTTClient_strerror(rc));
        goto out;
    }

    int sent = 0;
    for (int i = 2; i < argc; i++) {
        const char *cmd = argv[i];
        /* Before the channel is up the command is queued (token 0) and sent
         * by the client's worker thread once the handshake completes. */
        rc = mqe2e_MQTTClient_publish(client, topic, (int)strlen(cmd), cmd, 1, 0, NULL);
        if (rc != MQTTCLIENT_SUCCESS) {
            fprintf(stderr, "switch_controller: publish \"%s\": %s\n", cmd,
                    mqe2e_MQTTClient_strerror(rc));
            goto out;
        }
        sent++;
    }

    /* Wait until every command has left on the channel (at most 20 s). */
    mqe2e_control_counters k;
    memset(&k, 0, sizeof k);
    for (int waited_ms = 0; waited_ms < 20000; waited_ms += 50) {
        if (mqe2e_MQTTClient_getControlCounters(client, &k) == MQTTCLIENT_SUCCESS &&
            k.channel_sent >= (uint64_t)sent)
            break;
        struct timespec pause = {0, 50L * 1000L * 1000L};
        nanosleep(&pause, NULL);
    }
    if (k.channel_sent >= (uint64_t)sent) {
        printf("controller %s: sent %d command(s) to %s over the channel\n",
               mqe2e_keystore_client_id(ks), sent, device);
        exit_code = 0;
    } else {
        fprintf(stderr, "switch_controller: %s did not complete the channel handshake\n", device);
    }
    /* Within its timeout, disconnect() first lets the worker thread publish
     * the envelopes it still holds, then lets the QoS 1 deliveries finish. */
    mqe2e_MQTTClient_disconnect(client, 5000);
out:
    mqe2e_MQTTClient_destroy(&client);
    mqe2e_policy_free(policy);
    mqe2e_keystore_close(ks);
    return exit_code;
}
