/*
 * A plain Paho client standing in for many devices at once: subscribed to
 * `P/client/#`, it keeps what arrives (pumped with MQTTClient_receive, no
 * callbacks) so a test can take each device's frames by topic, and publishes
 * the devices' requests. One connection, so a test can play hundreds of
 * devices without hundreds of clients.
 */
#ifndef MQE2E_TEST_MAILBOX_H
#define MQE2E_TEST_MAILBOX_H

#include <stddef.h>
#include <stdint.h>

#include <MQTTClient.h>

typedef struct mail {
    char *topic;
    uint8_t *data;
    size_t len;
} mail;

typedef struct mailbox {
    MQTTClient c;
    mail *v; /* what arrived and was not taken yet, in arrival order */
    size_t n, cap;
} mailbox;

/* Connect as @p id to @p uri (clean session) and subscribe @p filter at QoS 1. */
void mb_open(mailbox *b, const char *uri, const char *id, const char *filter);
/* Disconnect and free what is left. Safe on a zeroed mailbox. */
void mb_close(mailbox *b);
/* Receive at most one message, waiting up to @p ms. */
void mb_pump(mailbox *b, int ms);
/* The first mail on @p topic, removed from the box (pumping up to @p timeout_ms
 * while there is none). 1 when found; the caller mail_free()s it. */
int mb_take(mailbox *b, mail *out, const char *topic, long timeout_ms);
/* Free every mail. */
void mb_clear(mailbox *b);
/* QoS 1 publish (not waited for). */
void mb_publish(mailbox *b, const char *topic, const uint8_t *p, size_t n);
void mail_free(mail *m);

#endif
