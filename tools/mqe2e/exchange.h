/* One request/response exchange with the authority over the broker, for
 * the commands that talk to it before (or without) an encrypted session:
 * `mqe2e enroll` and the operator commands (token, revoke, list, status,
 * group). A raw Paho client: connect as the keystore's client id (broker
 * ACLs give that id its inbox P/client/<id>) with the broker options of
 * broker.c (TLS, login), TCP_NODELAY, subscribe the inbox; publish a frame
 * to P/authority; wait for the reply that the caller's matcher accepts.
 * No callbacks: one thread drives MQTTClient_receive(). */
#ifndef MQE2E_CLI_EXCHANGE_H
#define MQE2E_CLI_EXCHANGE_H

#include <stddef.h>
#include <stdint.h>

#include "cli.h"

/** A connection to the authority through the broker. */
typedef struct cli_exchange {
    MQTTClient mqtt;
    cli_broker_conn conn;
    int connected;
    char inbox[MQE2E_CONTROL_PREFIX_MAX + MQE2E_ID_MAX + 16]; /**< P/client/<id> */
    char authority_topic[MQE2E_CONTROL_PREFIX_MAX + 16];      /**< P/authority */
} cli_exchange;

/** Matcher answers besides an exit code (>= 0, which ends the wait). */
enum {
    CLI_EXCHANGE_NOT_MINE = -1, /**< not the reply (another request's, not decodable): wait on */
    CLI_EXCHANGE_AGAIN = -2     /**< the exchange is dead (forged reply): the caller starts over */
};

/** Called with each non-empty message on the inbox. @return exit code or CLI_EXCHANGE_*. */
typedef int (*cli_exchange_reply_fn)(void *ctx, const uint8_t *payload, size_t len);

/**
 * Connect as @p client_id with the broker options @p b, set TCP_NODELAY and
 * subscribe the inbox under @p control_prefix. @p connect_timeout_s > 0
 * bounds the connect (0: Paho's default). @return CLI_EXIT_OK, or the exit
 * code after printing why (broker 3, login 5, TLS 6); on failure nothing is
 * left open.
 */
int cli_exchange_open(cli_exchange *x, const cli_broker_args *b, const char *client_id,
                      const char *control_prefix, int connect_timeout_s);

/** Disconnect and free (also after a failed open; a zeroed one is a no-op). */
void cli_exchange_close(cli_exchange *x);

/** Publish @p frame to P/authority (QoS 1, acknowledged). @return CLI_EXIT_OK or CLI_EXIT_BROKER
 * (printed). */
int cli_exchange_send(cli_exchange *x, const uint8_t *frame, size_t len);

/** Monotonic seconds (the clock of cli_exchange_wait()'s deadline). */
double cli_exchange_clock(void);

/**
 * Wait until @p fn accepts a reply on the inbox or @p deadline
 * (cli_exchange_clock()) passes. @return what @p fn returned (an exit code
 * or CLI_EXCHANGE_AGAIN), CLI_EXIT_TIMEOUT (nothing printed: the caller
 * says what it waited for), CLI_EXIT_BROKER when the connection is lost
 * (printed).
 */
int cli_exchange_wait(cli_exchange *x, double deadline, cli_exchange_reply_fn fn, void *ctx);

#endif
