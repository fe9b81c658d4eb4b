/* What an encrypted client delivered and dropped (inbox.h). */
#include "inbox.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "authority_fixture.h"

void inbox_init(inbox *ib)
{
    memset(ib, 0, sizeof *ib);
    pthread_mutex_init(&ib->m, NULL);
}

int inbox_on_message(void *ctx, char *topic, int topic_len, MQTTClient_message *msg)
{
    inbox *ib = ctx;
    (void)topic_len;
    pthread_mutex_lock(&ib->m);
    if (ib->n < INBOX_MAX) {
        snprintf(ib->topic[ib->n], sizeof ib->topic[0], "%s", topic);
        int len = msg->payloadlen < 63 ? msg->payloadlen : 63;
        memcpy(ib->payload[ib->n], msg->payload, (size_t)len);
        ib->payload[ib->n][len] = '\0';
    }
    ib->n++;
    pthread_mutex_unlock(&ib->m);
    mqe2e_MQTTClient_freeMessage(&msg);
    mqe2e_MQTTClient_free(topic);
    return 1;
}

void inbox_on_dropped(void *ctx, const char *topic, int code)
{
    inbox *ib = ctx;
    (void)topic;
    pthread_mutex_lock(&ib->m);
    if (ib->dropped < INBOX_MAX) ib->drop_code[ib->dropped] = code;
    ib->dropped++;
    pthread_mutex_unlock(&ib->m);
}

int inbox_count(inbox *ib)
{
    pthread_mutex_lock(&ib->m);
    int n = ib->n;
    pthread_mutex_unlock(&ib->m);
    return n;
}

int inbox_drops(inbox *ib)
{
    pthread_mutex_lock(&ib->m);
    int n = ib->dropped;
    pthread_mutex_unlock(&ib->m);
    return n;
}

int inbox_wait(inbox *ib, int dropped, int n, long timeout_ms)
{
    double end = af_mono() + (double)timeout_ms / 1000.0;
    while ((dropped ? inbox_drops(ib) : inbox_count(ib)) < n) {
        if (af_mono() > end) return 0;
        af_sleep_ms(10);
    }
    return 1;
}

mqe2e_MQTTClient inbox_client_open(const tb_broker *b, const char *mqtt_id,
                                   const mqe2e_MQTTClient_securityOptions *so,
                                   MQTTClient_messageArrived *on_message, int keepalive, int clean)
{
    mqe2e_MQTTClient c = NULL;
    MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer;
    cr_assert_eq(mqe2e_MQTTClient_create(&c, tb_broker_uri(b), mqtt_id,
                                         MQTTCLIENT_PERSISTENCE_NONE, NULL),
                 MQTTCLIENT_SUCCESS);
    cr_assert_eq(mqe2e_MQTTClient_setSecurity(c, so), MQTTCLIENT_SUCCESS);
    if (on_message != NULL)
        cr_assert_eq(mqe2e_MQTTClient_setCallbacks(c, so->context, NULL, on_message, NULL),
                     MQTTCLIENT_SUCCESS);
    if (keepalive >= 0)
        co.keepAliveInterval = keepalive;
    co.cleansession = clean;
    cr_assert_eq(mqe2e_MQTTClient_connect(c, &co), MQTTCLIENT_SUCCESS);
    return c;
}
