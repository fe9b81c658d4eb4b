/* The raw `#` subscriber of the tests (spy.h). */
#include "spy.h"

#include "mqe2e/MQTTClient.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t spy_m = PTHREAD_MUTEX_INITIALIZER;
static spy_msg *spy;
static size_t spy_n, spy_cap;
static MQTTClient spy_client;

static int spy_on_message(void *ctx, char *topic, int tl, MQTTClient_message *m)
{
    (void)ctx;
    (void)tl;
    pthread_mutex_lock(&spy_m);
    if (spy_n == spy_cap) {
        spy_cap = spy_cap ? spy_cap * 2U : 256U;
        spy = realloc(spy, spy_cap * sizeof *spy);
    }
    spy_msg *s = &spy[spy_n++];
    snprintf(s->topic, sizeof s->topic, "%s", topic);
    s->len = (size_t)m->payloadlen;
    s->data = malloc(s->len + 1U);
    memcpy(s->data, m->payload, s->len);
    s->retained = m->retained;
    pthread_mutex_unlock(&spy_m);
    MQTTClient_freeMessage(&m);
    MQTTClient_free(topic);
    return 1;
}

MQTTClient ts_raw_connect(const char *uri, const char *id, void *ctx, MQTTClient_messageArrived *ma)
{
    MQTTClient r = NULL;
    MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer;
    cr_assert_eq(MQTTClient_create(&r, uri, id, MQTTCLIENT_PERSISTENCE_NONE, NULL),
                 MQTTCLIENT_SUCCESS);
    if (ma != NULL)
        cr_assert_eq(MQTTClient_setCallbacks(r, ctx, NULL, ma, NULL), MQTTCLIENT_SUCCESS);
    co.cleansession = 1;
    co.maxInflightMessages = 1000;
    cr_assert_eq(MQTTClient_connect(r, &co), MQTTCLIENT_SUCCESS);
    return r;
}

void ts_spy_start(const char *uri)
{
    spy_n = 0;
    spy_client = ts_raw_connect(uri, "spy", NULL, spy_on_message);
    cr_assert_eq(MQTTClient_subscribe(spy_client, "#", 1), MQTTCLIENT_SUCCESS);
}

void ts_spy_stop(void)
{
    if (spy_client != NULL) {
        MQTTClient_disconnect(spy_client, 500);
        MQTTClient_destroy(&spy_client);
    }
    for (size_t i = 0; i < spy_n; i++)
        free(spy[i].data);
    free(spy);
    spy = NULL;
    spy_n = spy_cap = 0;
}

size_t ts_spy_count(void)
{
    pthread_mutex_lock(&spy_m);
    size_t n = spy_n;
    pthread_mutex_unlock(&spy_m);
    return n;
}

spy_msg ts_spy_get(size_t i)
{
    pthread_mutex_lock(&spy_m);
    spy_msg s = spy[i];
    s.data = malloc(s.len + 1U);
    memcpy(s.data, spy[i].data, s.len);
    pthread_mutex_unlock(&spy_m);
    return s;
}

static int rawbox_on_message(void *ctx, char *topic, int tl, MQTTClient_message *m)
{
    rawbox *rb = ctx;
    (void)tl;
    pthread_mutex_lock(&rb->m);
    if (rb->n < TS_RAWBOX_MAX) {
        snprintf(rb->topic[rb->n], sizeof rb->topic[rb->n], "%s", topic);
        size_t len =
            (size_t)m->payloadlen < sizeof rb->data[0] ? (size_t)m->payloadlen : sizeof rb->data[0];
        memcpy(rb->data[rb->n], m->payload, len);
        rb->len[rb->n] = len;
        rb->n++;
    }
    pthread_mutex_unlock(&rb->m);
    MQTTClient_freeMessage(&m);
    MQTTClient_free(topic);
    return 1;
}

MQTTClient ts_raw_client(const char *uri, const char *id, rawbox *rb)
{
    MQTTClient r = NULL;
    MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer;
    cr_assert_eq(MQTTClient_create(&r, uri, id, MQTTCLIENT_PERSISTENCE_NONE, NULL),
                 MQTTCLIENT_SUCCESS);
    if (rb != NULL) {
        memset(rb, 0, sizeof *rb);
        pthread_mutex_init(&rb->m, NULL);
        cr_assert_eq(MQTTClient_setCallbacks(r, rb, NULL, rawbox_on_message, NULL),
                     MQTTCLIENT_SUCCESS);
    }
    co.cleansession = 1;
    cr_assert_eq(MQTTClient_connect(r, &co), MQTTCLIENT_SUCCESS);
    return r;
}

void ts_free_message(int encrypted, MQTTClient_message **msg, char *topic)
{
    if (encrypted) {
        mqe2e_MQTTClient_freeMessage(msg);
        mqe2e_MQTTClient_free(topic);
    } else {
        MQTTClient_freeMessage(msg);
        MQTTClient_free(topic);
    }
}
