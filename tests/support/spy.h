/*
 * A raw `#` subscriber (plain Paho, no encryption): what crossed the broker,
 * in arrival order, for tests that inspect or replay wire bytes. One spy a
 * test process. Also the plain Paho connection an attacker uses.
 */
#ifndef MQE2E_TEST_SPY_H
#define MQE2E_TEST_SPY_H

#include <pthread.h>
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

/* What a raw client of ts_raw_client() received: the first TS_RAWBOX_MAX
 * messages, each cut to 2048 bytes (topic to 127), under m. next is the
 * test's own read position. Callbacks, not receive(): Paho refuses receive()
 * in a process where any client runs its callback thread. */
#define TS_RAWBOX_MAX 64
typedef struct rawbox {
    pthread_mutex_t m;
    int n, next;
    char topic[TS_RAWBOX_MAX][128];
    uint8_t data[TS_RAWBOX_MAX][2048];
    size_t len[TS_RAWBOX_MAX];
} rawbox;

/* A raw Paho client of @p uri (the attacker, or an observer of the wire),
 * clean session, Paho's default options otherwise; with @p rb (initialised
 * here; may be NULL for a publisher only) what arrives is kept there. */
MQTTClient ts_raw_client(const char *uri, const char *id, rawbox *rb);

/* Free a received message and its topic the way they were allocated: by
 * the plugin (@p encrypted: mqe2e_MQTTClient_freeMessage/free) or by Paho. */
void ts_free_message(int encrypted, MQTTClient_message **msg, char *topic);

#endif
