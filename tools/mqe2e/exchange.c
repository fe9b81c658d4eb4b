/* One request/response exchange with the authority (exchange.h). */
#include "exchange.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <MQTTClient.h>

/* MQTTClient_receive() slice: how late a deadline is noticed. */
#define EXCHANGE_SLICE_MS 200UL
/* How long a request's PUBACK may take. */
#define EXCHANGE_PUBACK_MS 10000UL

double cli_exchange_clock(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

void cli_exchange_close(cli_exchange *x)
{
    if (x->mqtt != NULL) {
        if (x->connected) (void)MQTTClient_disconnect(x->mqtt, 1000);
        MQTTClient_destroy(&x->mqtt);
    }
    x->connected = 0;
    cli_broker_conn_free(&x->conn);
}

int cli_exchange_open(cli_exchange *x, const cli_broker_args *b, const char *client_id,
                      const char *control_prefix, int connect_timeout_s)
{
    memset(x, 0, sizeof *x);
    (void)snprintf(x->inbox, sizeof x->inbox, "%s/client/%s", control_prefix, client_id);
    (void)snprintf(x->authority_topic, sizeof x->authority_topic, "%s/authority", control_prefix);
    int rc = cli_broker_prepare(&x->conn, b, 30);
    if (rc != CLI_EXIT_OK) {
        cli_exchange_close(x);
        return rc;
    }
    /* The MQTT client id is the keystore's: broker ACLs tie the inbox to it. */
    int prc =
        MQTTClient_create(&x->mqtt, x->conn.uri, client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL);
    if (prc != MQTTCLIENT_SUCCESS) {
        cli_error("cannot create an MQTT client for %s: %s", x->conn.uri, MQTTClient_strerror(prc));
        x->mqtt = NULL;
        cli_exchange_close(x);
        return CLI_EXIT_BROKER;
    }
    x->conn.co.cleansession = 1;
    if (connect_timeout_s > 0) x->conn.co.connectTimeout = connect_timeout_s;
    prc = MQTTClient_connect(x->mqtt, &x->conn.co);
    if (prc != MQTTCLIENT_SUCCESS) {
        rc = cli_broker_connect_failed(&x->conn, prc, NULL);
        cli_exchange_close(x);
        return rc;
    }
    x->connected = 1;
    (void)mqe2e_tcp_nodelay_uri(x->conn.uri); /* docs/PAHO.md, "TCP_NODELAY" */
    prc = MQTTClient_subscribe(x->mqtt, x->inbox, 1);
    if (prc != MQTTCLIENT_SUCCESS) {
        cli_error("cannot subscribe to %s: %s (does the broker ACL give this client id its "
                  "inbox?)",
                  x->inbox, MQTTClient_strerror(prc));
        cli_exchange_close(x);
        return CLI_EXIT_BROKER;
    }
    return CLI_EXIT_OK;
}

int cli_exchange_send(cli_exchange *x, const uint8_t *frame, size_t len)
{
    MQTTClient_deliveryToken dt = 0;
    int prc = MQTTClient_publish(x->mqtt, x->authority_topic, (int)len, (void *)(uintptr_t)frame, 1,
                                 0, &dt);
    if (prc == MQTTCLIENT_SUCCESS)
        prc = MQTTClient_waitForCompletion(x->mqtt, dt, EXCHANGE_PUBACK_MS);
    if (prc != MQTTCLIENT_SUCCESS) {
        cli_error("cannot publish to %s: %s", x->authority_topic, MQTTClient_strerror(prc));
        return CLI_EXIT_BROKER;
    }
    return CLI_EXIT_OK;
}

int cli_exchange_wait(cli_exchange *x, double deadline, cli_exchange_reply_fn fn, void *ctx)
{
    while (cli_exchange_clock() < deadline) {
        char *topic = NULL;
        int topic_len = 0;
        MQTTClient_message *m = NULL;
        int prc = MQTTClient_receive(x->mqtt, &topic, &topic_len, &m, EXCHANGE_SLICE_MS);
        if (prc != MQTTCLIENT_SUCCESS && prc != MQTTCLIENT_TOPICNAME_TRUNCATED) {
            if (m != NULL) MQTTClient_freeMessage(&m);
            if (topic != NULL) MQTTClient_free(topic);
            if (!MQTTClient_isConnected(x->mqtt)) {
                cli_error("connection lost: %s", MQTTClient_strerror(prc));
                return CLI_EXIT_BROKER;
            }
            continue;
        }
        int rc = CLI_EXCHANGE_NOT_MINE;
        if (m != NULL && topic != NULL && strcmp(topic, x->inbox) == 0 && m->payloadlen > 0)
            rc = fn(ctx, m->payload, (size_t)m->payloadlen);
        if (m != NULL) MQTTClient_freeMessage(&m);
        if (topic != NULL) MQTTClient_free(topic);
        if (rc != CLI_EXCHANGE_NOT_MINE) return rc;
    }
    return CLI_EXIT_TIMEOUT;
}
