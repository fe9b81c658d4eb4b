/*
 * A real Mosquitto broker for integration tests: one private instance per
 * test, on a free port of 127.0.0.1, with its config and log in a temp dir.
 */
#ifndef MQE2E_TEST_BROKER_H
#define MQE2E_TEST_BROKER_H

#include <sys/types.h>

#define TB_MOSQUITTO_PATH "/usr/sbin/mosquitto"

typedef struct tb_broker {
    /* Set before tb_broker_start(): extra mosquitto.conf lines, or NULL. */
    const char *extra_conf;
    /* Filled by tb_broker_start(). */
    int port;
    pid_t pid;
    char *dir;    /* temp dir holding mosquitto.conf and mosquitto.log */
    char uri[64]; /* "tcp://127.0.0.1:PORT" */
    /* Set before tb_broker_start(): non-zero keeps sessions and queued
     * messages in a persistence file inside dir, so they survive
     * tb_broker_restart(). */
    int persistent;
} tb_broker;

/*
 * Start the broker and wait (up to ~5 s) until it accepts TCP connections.
 * Returns 0, or -1 with a reason printed to stderr (and the broker log shown).
 */
int tb_broker_start(tb_broker *b);

/* SIGTERM, wait, SIGKILL if it lingers, remove the temp dir. Safe to repeat. */
void tb_broker_stop(tb_broker *b);

/*
 * Stop the running broker with @p sig (SIGTERM: it saves its persistence
 * file; SIGKILL: a crash), then start it again on the same port with the same
 * config and temp dir. Returns 0, or -1 with a reason on stderr.
 */
int tb_broker_restart(tb_broker *b, int sig);

/* "tcp://127.0.0.1:PORT" of a started broker. */
const char *tb_broker_uri(const tb_broker *b);

#endif
