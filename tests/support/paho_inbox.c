/* What a client of the Paho-front suites saw (paho_inbox.h). */
#include "paho_inbox.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spy.h"
#include "testutil.h"

void pinbox_init(pinbox *ib, int encrypted)
{
    memset(ib, 0, sizeof *ib);
    pthread_mutex_init(&ib->m, NULL);
    ib->encrypted = encrypted;
}

int pinbox_get(pinbox *ib, const int *field)
{
    pthread_mutex_lock(&ib->m);
    int v = *field;
    pthread_mutex_unlock(&ib->m);
    return v;
}

int pinbox_wait_field(pinbox *ib, const int *field, int n, long timeout_ms)
{
    long deadline = tu_now_ms() + timeout_ms;
    while (pinbox_get(ib, field) < n) {
        if (tu_now_ms() > deadline) return 0;
        tu_sleep_ms(10);
    }
    return 1;
}

void pinbox_record(pinbox *ib, const char *topic, const void *payload, int len, int qos,
                   const MQTTProperties *props)
{
    int k = ib->n;
    if (k < PINBOX_MAX) {
        snprintf(ib->msg[k].topic, sizeof ib->msg[k].topic, "%s", topic);
        ib->msg[k].len = len;
        if (len > 0 && len <= (int)sizeof ib->msg[k].payload)
            memcpy(ib->msg[k].payload, payload, (size_t)len);
        ib->msg[k].qos = qos;
        for (int i = 0; props != NULL && i < props->count; i++) {
            if (props->array[i].identifier == MQTTPROPERTY_CODE_USER_PROPERTY) {
                snprintf(ib->msg[k].user_key, sizeof ib->msg[k].user_key, "%.*s",
                         props->array[i].value.data.len, props->array[i].value.data.data);
                snprintf(ib->msg[k].user_val, sizeof ib->msg[k].user_val, "%.*s",
                         props->array[i].value.value.len, props->array[i].value.value.data);
                break;
            }
        }
    }
    ib->n++;
}

int pinbox_on_message(void *ctx, char *topic, int topic_len, MQTTClient_message *msg)
{
    pinbox *ib = ctx;
    (void)topic_len;
    pthread_mutex_lock(&ib->m);
    ib->calls++;
    if (ib->reject_first > 0) {
        ib->reject_first--;
        pthread_mutex_unlock(&ib->m);
        return 0;
    }
    if (ib->n < PINBOX_MAX) ib->msg[ib->n].retained = msg->retained;
    pinbox_record(ib, topic, msg->payload, msg->payloadlen, msg->qos, &msg->properties);
    pthread_mutex_unlock(&ib->m);
    ts_free_message(ib->encrypted, &msg, topic);
    return 1;
}

void pinbox_on_dropped(void *ctx, const char *topic, int code)
{
    pinbox *ib = ctx;
    pthread_mutex_lock(&ib->m);
    if (ib->dropped < PINBOX_MAX) {
        ib->drop_code[ib->dropped] = code;
        snprintf(ib->drop_topic[ib->dropped], sizeof ib->drop_topic[0], "%s", topic);
    }
    ib->dropped++;
    pthread_mutex_unlock(&ib->m);
}

int pinbox_find(pinbox *ib, const char *topic)
{
    int found = -1;
    pthread_mutex_lock(&ib->m);
    for (int i = 0; i < ib->n && i < PINBOX_MAX; i++) {
        if (strcmp(ib->msg[i].topic, topic) == 0) {
            found = i;
            break;
        }
    }
    pthread_mutex_unlock(&ib->m);
    return found;
}

int pinbox_wait_found(pinbox *ib, const char *topic, long timeout_ms)
{
    long deadline = tu_now_ms() + timeout_ms;
    while (pinbox_find(ib, topic) < 0) {
        if (tu_now_ms() > deadline) return 0;
        tu_sleep_ms(10);
    }
    return 1;
}

uint8_t *pinbox_captured(pinbox *ib, const char *topic, int *len, long timeout_ms)
{
    cr_assert(pinbox_wait_found(ib, topic, timeout_ms), "nothing captured on %s", topic);
    int i = pinbox_find(ib, topic);
    uint8_t *p = malloc((size_t)ib->msg[i].len);
    memcpy(p, ib->msg[i].payload, (size_t)ib->msg[i].len);
    *len = ib->msg[i].len;
    return p;
}
