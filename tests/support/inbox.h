/*
 * What an encrypted client (mqe2e_MQTTClient) delivered and dropped, for the
 * integration tests: the first INBOX_MAX messages' topics and payloads (cut
 * to 63 bytes), every drop's code. Set inbox_on_message() and
 * inbox_on_dropped() as the client's callbacks with the inbox as context.
 */
#ifndef MQE2E_TEST_INBOX_H
#define MQE2E_TEST_INBOX_H

#include <pthread.h>

#include "broker.h"
#include "mqe2e/MQTTClient.h"

#define INBOX_MAX 64

typedef struct inbox {
    pthread_mutex_t m;
    int n; /* messages delivered (all of them, also past INBOX_MAX) */
    char topic[INBOX_MAX][64];
    char payload[INBOX_MAX][64];
    int dropped; /* messages dropped (onDropped) */
    int drop_code[INBOX_MAX];
} inbox;

/* Zero @p ib and initialise its mutex. */
void inbox_init(inbox *ib);
/* messageArrived of an encrypted client (frees the message with the mqe2e_ calls). */
int inbox_on_message(void *ctx, char *topic, int topic_len, MQTTClient_message *msg);
/* onDropped of an encrypted client. */
void inbox_on_dropped(void *ctx, const char *topic, int code);
/* Messages delivered so far. */
int inbox_count(inbox *ib);
/* Drops so far. */
int inbox_drops(inbox *ib);
/* Wait until @p n messages (or, with @p dropped, drops) arrived; 0 after @p timeout_ms. */
int inbox_wait(inbox *ib, int dropped, int n, long timeout_ms);

/* An encrypted synchronous (v3) client of broker b: created as mqtt_id, the
 * security options *so set (the caller keeps so and what it points to),
 * callbacks into so->context with on_message when it is not NULL,
 * keepAliveInterval keepalive (< 0: Paho's default), cleansession clean;
 * connected. Asserts every step. */
mqe2e_MQTTClient inbox_client_open(const tb_broker *b, const char *mqtt_id,
                                   const mqe2e_MQTTClient_securityOptions *so,
                                   MQTTClient_messageArrived *on_message, int keepalive, int clean);

#endif
