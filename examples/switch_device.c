/*
 * switch_device: a switch that obeys on/off commands from one controller only.
 *
 *   switch_device CONTROLLER_ID [COUNT [TIMEOUT_SECONDS]]
 *
 * Listens on cmd/<device-id> (the device id is the keystore's client id).
 * The policy rule `cmd/<device-id>=channel:<CONTROLLER_ID>` means: a command
 * is only accepted when it was sealed over the pairwise Noise channel with
 * that controller. Anything else on the topic -- a forged or tampered
 * envelope, a replayed copy of a genuine command, a plain "on" from someone
 * with broker access, a command from another (or a revoked) client -- is
 * refused: never delivered to on_message, printed as "refused" instead.
 *
 * With COUNT > 0 it exits after COUNT accepted commands or TIMEOUT_SECONDS
 * (default 60); with COUNT 0 (the default) it runs until SIGINT/SIGTERM. It
 * prints the client's counters on the way out. Exit code 0 when COUNT
 * commands were accepted (or on a signal), 1 on timeout or error.
 *
 * Channels need credentials: the keystore must be enrolled with an authority
 * (`mqe2e enroll`, see docs/CLI.md), like the controller's.
 *
 * Environment: MQE2E_KEYSTORE (default switch.ks), MQE2E_PASSPHRASE,
 * MQE2E_BROKER_HOST (default 127.0.0.1), MQE2E_BROKER_PORT (default 1883),
 * MQE2E_DEBUG (set: print the client's log on stderr).
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mqe2e/MQTTClient.h"

static atomic_int accepted;
static atomic_int switched_on;
static volatile sig_atomic_t stop;
static const char *device_id;

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : fallback;
}

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000L * 1000L};
    nanosleep(&t, NULL);
}

/* Only commands that came through the controller's channel get here. */
static int on_message(void *context, char *topic, int topic_len, MQTTClient_message *msg)
{
    (void)context;
    (void)topic_len;
    char cmd[16] = "";
    if (msg->payloadlen > 0 && (size_t)msg->payloadlen < sizeof cmd)
        memcpy(cmd, msg->payload, (size_t)msg->payloadlen);
    if (strcmp(cmd, "on") == 0) {
        atomic_store(&switched_on, 1);
    } else if (strcmp(cmd, "off") == 0) {
        atomic_store(&switched_on, 0);
    } else if (strcmp(cmd, "toggle") == 0) {
        atomic_fetch_xor(&switched_on, 1);
    } else {
        /* Authentic but meaningless: the controller's bug, not an attack. */
        printf("switch %s: ignored unknown command from the controller\n", device_id);
        fflush(stdout);
        goto done;
    }
    printf("switch %s: accepted \"%s\" -> %s\n", device_id, cmd,
           atomic_load(&switched_on) ? "ON" : "OFF");
    fflush(stdout);
    atomic_fetch_add(&accepted, 1);
done:
    mqe2e_MQTTClient_freeMessage(&msg);
    mqe2e_MQTTClient_free(topic);
    return 1;
}

/* Every refused message lands here with its reason (never its payload). */
/* MQE2E_DEBUG=1: the client's log (handshakes, control frames; never keys). */
static void on_log(void *context, mqe2e_log_level level, const char *message)
{
    (void)context;
    (void)level;
    fprintf(stderr, "%s: %s\n", "switch_device", message);
}

static void on_dropped(void *context, const char *topic, int code)
{
    (void)context;
    printf("switch %s: refused a message on %s: %s\n", device_id, topic, mqe2e_strerror(code));
    fflush(stdout);
}

static void on_connection_lost(void *context, char *cause)
{
    (void)context;
    fprintf(stderr, "switch %s: connection lost: %s\n", device_id,
            cause != NULL ? cause : "unknown");
}

static void print_counters(mqe2e_MQTTClient client)
{
    mqe2e_counters c;
    mqe2e_control_counters k;
    if (mqe2e_MQTTClient_getCounters(client, &c) != MQTTCLIENT_SUCCESS ||
        mqe2e_MQTTClient_getControlCounters(client, &k) != MQTTCLIENT_SUCCESS)
        return;
    printf("switch %s: channel messages opened %llu, handshakes %llu, refused:", device_id,
           (unsigned long long)k.channel_opened, (unsigned long long)k.handshakes_ok);
    for (int r = 0; r < MQE2E_DROP_REASON_COUNT; r++)
        if (c.dropped[r] != 0)
            printf(" %s %llu", mqe2e_drop_reason_name((mqe2e_drop_reason)r),
                   (unsigned long long)c.dropped[r]);
    printf(" (revoked peers %llu)\n", (unsigned long long)k.revoked_refused);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: switch_device CONTROLLER_ID [COUNT [TIMEOUT_SECONDS]]\n");
        return 1;
    }
    const char *controller = argv[1];
    int count = argc > 2 ? atoi(argv[2]) : 0;
    int timeout_s = argc > 3 ? atoi(argv[3]) : 60;
    if (timeout_s <= 0) timeout_s = 60;
    char uri[256];
    snprintf(uri, sizeof uri, "tcp://%s:%s", env_or("MQE2E_BROKER_HOST", "127.0.0.1"),
             env_or("MQE2E_BROKER_PORT", "1883"));
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    const char *path = env_or("MQE2E_KEYSTORE", "switch.ks");
    const char *pass = env_or("MQE2E_PASSPHRASE", "");
    mqe2e_storage storage;
    mqe2e_keystore *ks = NULL;
    int rc = mqe2e_storage_file_passphrase(&storage, path, pass, strlen(pass));
    if (rc == MQE2E_OK) rc = mqe2e_keystore_open(&ks, storage);
    if (rc != MQE2E_OK) {
        fprintf(stderr, "switch_device: keystore %s: %s\n", path, mqe2e_strerror(rc));
        return 1;
    }
    device_id = mqe2e_keystore_client_id(ks);

    /* The command topic is bound to one peer: the controller's channel. */
    char topic[300], rule[600];
    snprintf(topic, sizeof topic, "cmd/%s", device_id);
    snprintf(rule, sizeof rule, "%s=channel:%s", topic, controller);
    mqe2e_policy *policy = NULL;
    rc = mqe2e_policy_new(&policy);
    if (rc == MQE2E_OK) rc = mqe2e_policy_add_text(policy, rule);
    if (rc != MQE2E_OK) {
        fprintf(stderr, "switch_device: policy %s: %s\n", rule, mqe2e_strerror(rc));
        mqe2e_policy_free(policy);
        mqe2e_keystore_close(ks);
        return 1;
    }

    int exit_code = 1;
    mqe2e_MQTTClient client = NULL;
    rc = mqe2e_MQTTClient_create(&client, uri, device_id, MQTTCLIENT_PERSISTENCE_NONE, NULL);
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
        rc = mqe2e_MQTTClient_setCallbacks(client, NULL, on_connection_lost, on_message, NULL);
    MQTTClient_connectOptions conn = MQTTClient_connectOptions_initializer;
    conn.keepAliveInterval = 20;
    conn.cleansession = 1;
    if (rc == MQTTCLIENT_SUCCESS) rc = mqe2e_MQTTClient_connect(client, &conn);
    if (rc == MQTTCLIENT_SUCCESS) rc = mqe2e_MQTTClient_subscribe(client, topic, 1);
    if (rc != MQTTCLIENT_SUCCESS) {
        fprintf(stderr, "switch_device: %s: %s\n", uri, mqe2e_MQTTClient_strerror(rc));
        goto out;
    }
    /* The HELLO reply brings the current revocation list; wait for it (up to
     * 10 s) so a revoked controller is refused from the first command on. */
    mqe2e_control_counters k;
    for (int i = 0; i < 200 && !stop; i++) {
        if (mqe2e_MQTTClient_getControlCounters(client, &k) == MQTTCLIENT_SUCCESS &&
            k.handshakes_ok > 0)
            break;
        sleep_ms(50);
    }
    printf("switch %s ready: listening on %s, commands only from %s\n", device_id, topic,
           controller);
    fflush(stdout);

    /* Commands arrive on Paho's thread; this one only waits. */
    for (long waited_ms = 0; !stop; waited_ms += 50) {
        if (count > 0 && (atomic_load(&accepted) >= count || waited_ms >= timeout_s * 1000L))
            break;
        sleep_ms(50);
    }
    exit_code = stop || (count > 0 && atomic_load(&accepted) >= count) ? 0 : 1;
    if (exit_code != 0)
        fprintf(stderr, "switch_device: timed out with %d of %d commands\n",
                atomic_load(&accepted), count);
    print_counters(client);
    mqe2e_MQTTClient_disconnect(client, 5000);
out:
    mqe2e_MQTTClient_destroy(&client);
    mqe2e_policy_free(policy);
    mqe2e_keystore_close(ks);
    return exit_code;
}
