/*
 * A raw `#` subscriber (plain Paho, no encryption): what crossed the broker,
 * in arrival order, for tests that inspect or replay wire bytes. One spy a
 * test process. Also the plain Paho connection an attacker uses.
 */
#ifndef MQE2E_TEST_SPY_H
#define MQE2E_TEST_SPY_H

#include <stddef.h>
#include <stdint.h>

#include <MQTTClient.h>

typedef struct spy_msg {
    char topic[128];
    uint8_t *data;
    size_t len;
    int retained;
} spy_msg;

/* A clean-session plain Paho client of @p uri (callbacks set when @p ma is not NULL). */
MQTTClient ts_raw_connect(const char *uri, const char *id, void *ctx,
                          MQTTClient_messageArrived *ma);
/* Connect the spy to @p uri and subscribe it to `#` (QoS 1). */
void ts_spy_start(const char *uri);
/* Disconnect it and free what it saw. Safe to repeat. */
void ts_spy_stop(void);
/* Messages seen so far. */
size_t ts_spy_count(void);
/* Copy of message @p i (the caller free()s data). */
spy_msg ts_spy_get(size_t i);

#endif
