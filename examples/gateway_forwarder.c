/*
 * gateway_forwarder: a gateway that relays encrypted traffic it cannot read.
 *
 *   gateway_forwarder [-n COUNT] [--retopic PREFIX] [FILTER]      (FILTER default site/#)
 *
 * A plain Paho program -- no mqe2e, no keys. It subscribes FILTER on the site
 * broker and republishes every payload, byte for byte, to the cloud broker on
 * the SAME topic name (same QoS and retain flag). Devices and backends with the
 * group key talk end to end through it; the gateway, like both brokers, only
 * ever holds ciphertext.
 *
 * Keep the topic name. The envelope's authentication covers the topic it was
 * published on (docs/PROTOCOL.md, 2.5), so a message that reappears under
 * another name is refused by the receiver as failing authentication -- that is
 * what stops anyone on the path from moving, say, an "unlock" from
 * cmd/back-door to cmd/front-door. Bridge between two brokers with the same
 * names (this program, or Mosquitto's own bridge with an unchanged topic
 * pattern). --retopic PREFIX forwards to PREFIX + topic instead, only to show
 * that the receiver then refuses every message.
 *
 * Stops after COUNT messages (default: until SIGINT/SIGTERM).
 *
 * Environment: MQE2E_BROKER_HOST / MQE2E_BROKER_PORT (site broker, default
 * 127.0.0.1:1883), MQE2E_CLOUD_HOST / MQE2E_CLOUD_PORT (cloud broker,
 * default 127.0.0.1:1884).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <MQTTClient.h>

static volatile sig_atomic_t stop;

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

static int connect_to(MQTTClient *client, const char *host, const char *port, const char *id)
{
    char uri[256];
    snprintf(uri, sizeof uri, "tcp://%s:%s", host, port);
    int rc = MQTTClient_create(client, uri, id, MQTTCLIENT_PERSISTENCE_NONE, NULL);
    MQTTClient_connectOptions conn = MQTTClient_connectOptions_initializer;
    conn.keepAliveInterval = 20;
    conn.cleansession = 1;
    if (rc == MQTTCLIENT_SUCCESS) rc = MQTTClient_connect(*client, &conn);
    if (rc != MQTTCLIENT_SUCCESS)
        fprintf(stderr, "gateway_forwarder: %s: %s\n", uri, MQTTClient_strerror(rc));
    return rc;
}

int main(int argc, char **argv)
{
    long count = 0;
    const char *prefix = "";
    const char *filter = "site/#";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
            count = atol(argv[++i]);
        } else if (strcmp(argv[i], "--retopic") == 0 && i + 1 < argc) {
            prefix = argv[++i];
        } else if (argv[i][0] != '-') {
            filter = argv[i];
        } else {
            fprintf(stderr, "usage: gateway_forwarder [-n COUNT] [--retopic PREFIX] [FILTER]\n");
            return 1;
        }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int exit_code = 1;
    MQTTClient site = NULL, cloud = NULL;
    if (connect_to(&site, env_or("MQE2E_BROKER_HOST", "127.0.0.1"),
                   env_or("MQE2E_BROKER_PORT", "1883"), "gateway-site") != MQTTCLIENT_SUCCESS ||
        connect_to(&cloud, env_or("MQE2E_CLOUD_HOST", "127.0.0.1"),
                   env_or("MQE2E_CLOUD_PORT", "1884"), "gateway-cloud") != MQTTCLIENT_SUCCESS)
        goto out;
    int rc = MQTTClient_subscribe(site, filter, 1);
    if (rc != MQTTCLIENT_SUCCESS) {
        fprintf(stderr, "gateway_forwarder: subscribe %s: %s\n", filter, MQTTClient_strerror(rc));
        goto out;
    }
    printf("gateway forwarding %s to the cloud broker%s%s\n", filter,
           prefix[0] != '\0' ? " under the prefix " : " under the same topic names",
           prefix);
    fflush(stdout);

    /* One thread, receive() mode: no callbacks, so calling the other client is safe. */
    long forwarded = 0;
    int failed = 0;
    while (!stop && (count == 0 || forwarded < count)) {
        char *topic = NULL;
        int topic_len = 0;
        MQTTClient_message *msg = NULL;
        rc = MQTTClient_receive(site, &topic, &topic_len, &msg, 500UL);
        if (rc != MQTTCLIENT_SUCCESS && rc != MQTTCLIENT_TOPICNAME_TRUNCATED) {
            fprintf(stderr, "gateway_forwarder: site connection: %s\n", MQTTClient_strerror(rc));
            failed = 1;
            break;
        }
        if (msg == NULL) continue; /* timeout */
        char out_topic[1024];
        snprintf(out_topic, sizeof out_topic, "%s%s", prefix, topic);
        /* The payload is opaque here: an envelope goes out exactly as it came in. */
        MQTTClient_deliveryToken token;
        rc = MQTTClient_publish(cloud, out_topic, msg->payloadlen, msg->payload, msg->qos,
                                msg->retained, &token);
        if (rc == MQTTCLIENT_SUCCESS && msg->qos > 0)
            rc = MQTTClient_waitForCompletion(cloud, token, 5000UL);
        if (rc == MQTTCLIENT_SUCCESS) {
            forwarded++;
            printf("forwarded %d bytes %s -> %s\n", msg->payloadlen, topic, out_topic);
            fflush(stdout);
        } else {
            fprintf(stderr, "gateway_forwarder: publish to cloud: %s\n", MQTTClient_strerror(rc));
        }
        MQTTClient_freeMessage(&msg);
        MQTTClient_free(topic);
        if (rc != MQTTCLIENT_SUCCESS) {
            failed = 1;
            break;
        }
    }
    exit_code = !failed && (count == 0 || forwarded >= count) ? 0 : 1;
    MQTTClient_disconnect(site, 2000);
    MQTTClient_disconnect(cloud, 2000);
out:
    if (site != NULL) MQTTClient_destroy(&site);
    if (cloud != NULL) MQTTClient_destroy(&cloud);
    return exit_code;
}
