/*
 * Setup shared by the benchmarks that run the real authority process
 * (bench_enroll_rate, bench_rekey): a private Mosquitto on a free port, a
 * temporary folder with a raw key file, `mqe2e authority init`, an operator
 * "op1" registered with `authority operator-add`, and `mqe2e authority run`.
 * Failures print "<program>: <reason>", clean up and exit 2.
 */
#ifndef MQE2E_BENCH_AUTHORITY_H
#define MQE2E_BENCH_AUTHORITY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <MQTTClient.h>

#include "mqe2e/control.h"
#include "mqe2e/keystore.h"

#define BA_REPLICAS_MAX 4

/* One benchmark's authority set-up; paths inside dir. */
typedef struct ba_env {
    const char *name; /* program name, for messages */
    const char *cli;  /* the `mqe2e` command */
    char dir[512];
    char auth_ks[600], op_ks[600], db[600], key[600], log[600], port[16];
    char pin_text[1024];
    mqe2e_authority_pin pin;
    pid_t broker_pid, authority_pid; /* authority_pid: the first replica with replicas */
    /* Store: "" for a SQLite file in dir, or a URI (postgresql://...) set by
     * ba_store_arg() before ba_setup(). */
    char store[600];
    /* 0: one authority (persistent session on P/authority); N >= 1: N
     * replicas sharing $share/bench/P/authority (MQTT v5), each with its own
     * copy of the authority keystore and its own log (logs[i]). */
    int replicas;
    pid_t replica_pids[BA_REPLICAS_MAX];
    char logs[BA_REPLICAS_MAX][600];
    /* Optional: called by ba_setup() after `authority init` and operator-add,
     * before `authority run` (the store is free: prepare it in bulk). */
    void (*prepare)(void);
} ba_env;

/* The environment of this process (one a program). */
extern ba_env ba;

double ba_mono(void);
void ba_sleep_ms(long ms);
/* Stop the authority and the broker, remove the folder. Safe to repeat. */
void ba_cleanup(void);
/* Print "<name>: <what>", clean up, exit 2. */
void ba_die(const char *what) __attribute__((noreturn));

/* Start `cli ARGS...` (args NULL-terminated, without the program) with stdout
 * on a pipe: the child, the read end in *fd. */
pid_t ba_cli_start(int *fd, const char *const *args);
/* Read the child's stdout to the end into a malloc()ed string; close fd. */
char *ba_cli_output(int fd);
/* Run the CLI to completion; stdout into *out (malloc()ed) or dropped. Exit code. */
int ba_run_cli(char **out, const char *const *args);

/* --store URI (default: a SQLite file in the folder) and --replicas N
 * (0: one authority; 1..BA_REPLICAS_MAX replicas in one replica group) at
 * argv[*i]: 1 when consumed (with its value, *i moved on), 0 when not one of
 * them; a bad value exits 2. */
int ba_store_arg(int argc, char **argv, int *i);
/* "sqlite" or "postgresql": the store kind, for reports. */
const char *ba_store_kind(void);
/* Number of authority processes and their logs (1 and ba.log without replicas). */
int ba_authority_count(void);
const char *ba_authority_log(int i);
pid_t ba_authority_pid_of(int i);

/*
 * Folder (TMPDIR/<tmpl>.XXXXXX), key file, Mosquitto (max_queued_messages 0,
 * plus @p broker_extra lines, may be NULL; with replicas also
 * max_inflight_messages 0, the deployment docs/SCALING.md recommends), `authority init` with @p
 * auth_id (pin decoded into ba.pin), operator op1, `authority run` (or ba.replicas replicas).
 * ba.name and ba.cli are set by the caller first.
 */
void ba_setup(const char *tmpl, const char *auth_id, const char *broker_extra);

/* One simulated device's enrollment: its state, its fresh key pairs and
 * the request frame it sends (req, malloc()ed). Each benchmark's device
 * record holds one. */
typedef struct ba_device {
    mqe2e_enroll_device *st;
    uint8_t dh_sk[32], dh_pk[32], sign_pk[32], sign_sk[64];
    uint8_t *req;
    size_t req_len;
} ba_device;

/* The device record of index i (from 0) in the caller's array at ctx. */
typedef ba_device *ba_device_slot(void *ctx, long i);

/*
 * Walk the ticket lines of `token create` in @p tickets (split in place by
 * strtok_r; lines that are no ticket are skipped): ticket K must be for the
 * client id "<id_prefix>K". For each of the first @p n, fresh key pairs and an
 * enrollment request into slot(ctx, K-1); each ticket is wiped once used.
 * Exits through ba_die() when the tickets are out of order or fewer than n.
 */
void ba_enroll_requests(char *tickets, const char *id_prefix, long n, ba_device_slot *slot,
                        void *ctx);

/* Index K-1 of client "<prefix>K" from topic "<prefix>K" (K from 1 to n), or -1. */
long ba_client_index(const char *topic, const char *prefix, long n);

/* The devices' shared plain Paho connection as @p id (clean session, up to
 * 65535 in flight), subscribed to "<prefix>/client/#" at QoS 1; ba_die()
 * with @p what when that fails. */
MQTTClient ba_devices_connect(const char *id, const char *prefix, const char *what);

/* A reply on @p topic (payload borrowed for the call): 1 when it finished
 * one more device, 0 when ignored. */
typedef int ba_reply_fn(void *ctx, const char *topic, const void *payload, size_t len);

/*
 * Publish device i's request (slot(ctx, i), i from 0 to n-1) to @p
 * request_topic at QoS 1 with at most @p window unfinished, and hand every
 * non-empty message c receives to on_reply, until n are finished or 60 s +
 * n/50 s passed. The number finished; *t0 the start and *t_last the time of
 * the last finishing reply (ba_mono(); *t0 when none).
 */
long ba_enroll_window(MQTTClient c, const char *request_topic, long n, long window,
                      ba_device_slot *slot, void *ctx, ba_reply_fn *on_reply, double *t0,
                      double *t_last);

/* Free the enrollment state, wipe the secret keys, free the request. */
void ba_device_wipe(ba_device *x);

#endif
