/*
 * What one client of the Paho-front suites (test_paho_sync, test_paho_async)
 * saw: messages copied out of the callback, drops, and the async requests'
 * onSuccess/onFailure/connected calls. Integration tests only.
 */
#ifndef MQE2E_TESTS_PAHO_INBOX_H
#define MQE2E_TESTS_PAHO_INBOX_H

#include <pthread.h>
#include <stdint.h>

#include "mqe2e/MQTTClient.h"

#define PINBOX_MAX 64

typedef struct pinbox {
    pthread_mutex_t m;
    int encrypted;    /* free with the mqe2e_ calls, else with Paho's */
    int reject_first; /* pinbox_on_message returns 0 (redeliver) for this many calls */
    int calls;        /* messageArrived invocations */
    int n;            /* accepted messages */
    struct {
        char topic[128];
        uint8_t payload[512];
        int len;
        int qos;
        int retained;
        char user_key[64]; /* first v5 user property, if any */
        char user_val[64];
    } msg[PINBOX_MAX];
    /* onDropped */
    int dropped;
    int drop_code[PINBOX_MAX];
    char drop_topic[PINBOX_MAX][128];
    /* onSuccess / onFailure of the requests made with this inbox as context */
    int ok, failed;
    int connected; /* connected callback calls */
} pinbox;

/* Zero it, its mutex ready; @p encrypted: its messages come from the plugin. */
void pinbox_init(pinbox *ib, int encrypted);
/* One of ib's int fields, read under its mutex. */
int pinbox_get(pinbox *ib, const int *field);
/* Wait (10 ms polls, up to @p timeout_ms) until *field >= n: 1, else 0. */
int pinbox_wait_field(pinbox *ib, const int *field, int n, long timeout_ms);
/* Record a message (ib->m held by the caller): topic, payload (cut to 512
 * bytes; len kept whole), qos and the first v5 user property of @p props
 * (may be NULL). Counts it in n even when the table is full. */
void pinbox_record(pinbox *ib, const char *topic, const void *payload, int len, int qos,
                   const MQTTProperties *props);
/* A synchronous-front messageArrived (context: the pinbox): refuses while
 * reject_first > 0, else records the message (with its retained flag) and
 * frees it as it was allocated. */
int pinbox_on_message(void *ctx, char *topic, int topic_len, MQTTClient_message *msg);
/* onDropped (context: the pinbox): counts the drop, keeps code and topic. */
void pinbox_on_dropped(void *ctx, const char *topic, int code);
/* Index of the first message on @p topic, or -1. */
int pinbox_find(pinbox *ib, const char *topic);
/* Wait (up to @p timeout_ms) for a message on @p topic: 1, else 0. */
int pinbox_wait_found(pinbox *ib, const char *topic, long timeout_ms);
/* A malloc()ed copy of the first payload captured on @p topic (asserts one
 * arrives within @p timeout_ms); *len its length. */
uint8_t *pinbox_captured(pinbox *ib, const char *topic, int *len, long timeout_ms);

#endif
