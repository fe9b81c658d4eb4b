/* One Paho connection standing in for many devices (mailbox.h). */
#include "mailbox.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "authority_fixture.h"

void mb_open(mailbox *b, const char *uri, const char *id, const char *filter)
{
    memset(b, 0, sizeof *b);
    MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer;
    co.cleansession = 1;
    co.maxInflightMessages = 65535;
    cr_assert_eq(MQTTClient_create(&b->c, uri, id, MQTTCLIENT_PERSISTENCE_NONE, NULL),
                 MQTTCLIENT_SUCCESS);
    cr_assert_eq(MQTTClient_connect(b->c, &co), MQTTCLIENT_SUCCESS);
    cr_assert_eq(MQTTClient_subscribe(b->c, filter, 1), MQTTCLIENT_SUCCESS);
}

void mail_free(mail *m)
{
    free(m->topic);
    free(m->data);
    memset(m, 0, sizeof *m);
}

void mb_clear(mailbox *b)
{
    for (size_t i = 0; i < b->n; i++)
        mail_free(&b->v[i]);
    b->n = 0;
}

void mb_close(mailbox *b)
{
    if (b->c != NULL) {
        MQTTClient_disconnect(b->c, 500);
        MQTTClient_destroy(&b->c);
    }
    mb_clear(b);
    free(b->v);
    b->v = NULL;
    b->cap = 0;
}

void mb_pump(mailbox *b, int ms)
{
    char *topic = NULL;
    int tl = 0;
    MQTTClient_message *m = NULL;
    if (MQTTClient_receive(b->c, &topic, &tl, &m, (unsigned long)ms) == MQTTCLIENT_SUCCESS &&
        m != NULL && topic != NULL) {
        if (b->n == b->cap) {
            b->cap = b->cap ? b->cap * 2U : 512U;
            b->v = realloc(b->v, b->cap * sizeof *b->v);
            cr_assert_not_null(b->v);
        }
        mail *x = &b->v[b->n++];
        x->topic = strdup(topic);
        x->len = (size_t)m->payloadlen;
        x->data = malloc(x->len + 1U);
        cr_assert(x->topic != NULL && x->data != NULL);
        memcpy(x->data, m->payload, x->len);
    }
    if (m != NULL) MQTTClient_freeMessage(&m);
    if (topic != NULL) MQTTClient_free(topic);
}

int mb_take(mailbox *b, mail *out, const char *topic, long timeout_ms)
{
    double end = af_mono() + (double)timeout_ms / 1000.0;
    for (;;) {
        for (size_t i = 0; i < b->n; i++) {
            if (strcmp(b->v[i].topic, topic) == 0) {
                *out = b->v[i];
                memmove(&b->v[i], &b->v[i + 1], (b->n - i - 1U) * sizeof *b->v);
                b->n--;
                return 1;
            }
        }
        if (timeout_ms <= 0 || af_mono() >= end) return 0;
        mb_pump(b, 50);
    }
}

void mb_publish(mailbox *b, const char *topic, const uint8_t *p, size_t n)
{
    MQTTClient_deliveryToken tok;
    cr_assert_eq(MQTTClient_publish(b->c, topic, (int)n, p, 1, 0, &tok), MQTTCLIENT_SUCCESS);
}
