/*
 * The end-to-end fixture of the tests that need a real broker and a real
 * authority process: a private Mosquitto, a temporary folder with a raw key
 * file, `mqe2e authority init` (the pin decoded), an operator "op1"
 * registered with `authority operator-add`, `mqe2e authority run` as a child
 * process, operator commands, tickets, `mqe2e enroll` and opening the
 * enrolled keystores. Every failure is a Criterion assertion.
 *
 * Use: zero an af_fixture, set broker options (f.broker.persistent,
 * f.broker.extra_conf) if needed, af_setup(), af_authority_start(); at the
 * end af_teardown().
 */
#ifndef MQE2E_TEST_AUTHORITY_FIXTURE_H
#define MQE2E_TEST_AUTHORITY_FIXTURE_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "broker.h"
#include "mqe2e/control.h"
#include "mqe2e/keystore.h"

#define AF_PREFIX "mqe2e"
#define AF_OPERATOR "op1"
#define AF_REPLICAS_MAX 4

typedef struct af_fixture {
    tb_broker broker; /* options set by the test before af_setup() */
    char *dir;        /* temporary folder (removed by af_teardown()) */
    char cli[PATH_MAX];
    char auth_id[64];
    char keyfile[512]; /* raw keystore key shared by every keystore of the test */
    char auth_ks[512], op_ks[512], db[512], log[512], port[16];
    char pin_text[2048];
    mqe2e_authority_pin pin;
    pid_t auth_pid;
    size_t log_seen;     /* log length when the running authority started */
    const char *op_wait; /* -W of operator commands, seconds (NULL: "20") */
    pid_t replica_pid[AF_REPLICAS_MAX]; /* af_replica_start() */
} af_fixture;

/* Monotonic seconds. */
double af_mono(void);
/* Sleep, restarted after signals. */
void af_sleep_ms(long ms);
/* af_mono() in whole milliseconds. */
long af_now_ms(void);
/* Wall-clock seconds since the epoch (credential and revocation times). */
uint64_t af_now_s(void);

/* Forged control traffic. A one-bundle update into the caller's b and u
 * (u->bundles = &b): group, filter "<group>/#", epoch, sender id, a random
 * secret, push_seq. Nothing to wipe: the secret is a throwaway. */
void af_forge_update(mqe2e_key_bundle *b, mqe2e_control_update *u, const char *group,
                     uint32_t epoch, uint32_t sender_id, uint64_t push_seq);
/* mqe2e_push_seal() of u into frame (cap bytes) with the DH secret dh_sk to the
 * device's DH public key dev_dh, claiming authority auth_id under prefix;
 * asserts it sealed and returns the frame length. */
size_t af_forge_push(uint8_t *frame, size_t cap, const uint8_t dh_sk[32],
                     const uint8_t dev_dh[32], const char *prefix, const char *auth_id,
                     const mqe2e_control_update *u);

/* Run `mqe2e ARGS...` (args NULL-terminated, without the program): stdout
 * into out (NUL-terminated, may be NULL), stderr discarded. Exit code. */
int af_run(char *out, size_t cap, const char *const *args);
/* Run a shell command line, stdout into out (may be NULL). Exit code. */
int af_sh(char *out, size_t cap, const char *cmd);

/* Broker, folder, key file and paths only (tests that play the authority
 * themselves). A store URI already in f->db (e.g. postgresql://...) is kept;
 * otherwise f->db is dir/auth.db. */
void af_prepare(af_fixture *f);
/* af_prepare(), then `authority init` (pin in pin_text/pin),
 * operator keystore op_ks (id "op1") registered with `operator-add`. */
void af_setup(af_fixture *f, const char *auth_id);
/* Stop the authority (SIGTERM), the broker; remove the folder. */
void af_teardown(af_fixture *f);

/* `mqe2e authority run` (log appended to f->log) with extra arguments
 * (NULL-terminated, or NULL); returns once it logged "serving". */
void af_authority_start(af_fixture *f, const char *const *extra);
/* Stop it with @p sig (SIGCONT first, for a stopped one) and reap it. */
void af_authority_kill(af_fixture *f, int sig);

/* Replica @p i (0..AF_REPLICAS_MAX-1) of `mqe2e authority run
 * --replica-group GROUP --replica-id <auth id>-r<i>` on the same store, with
 * its own copy of the authority keystore (dir/auth-r<i>.ks: a keystore is
 * locked by the process that opens it) and its own log dir/replica-<i>.log;
 * extra arguments as af_authority_start(). Returns once it logged "serving". */
void af_replica_start(af_fixture *f, int i, const char *group, const char *const *extra);
/* Stop replica @p i with @p sig and reap it (a no-op when it is not running). */
void af_replica_kill(af_fixture *f, int i, int sig);
/* dir/replica-<i>.log */
void af_replica_log(const af_fixture *f, int i, char *out, size_t cap);

/* An operator command (args without the common -K/--key-file/-p/--authority/-W). */
int af_op(af_fixture *f, char *out, size_t cap, const char *const *args);
/* The same from shell words, e.g. "group create --group g --topic 'g/#'". */
int af_op_sh(af_fixture *f, char *out, size_t cap, const char *words);
/* `token create WORDS` (shell words): the first ticket into ticket. */
void af_ticket(af_fixture *f, char *ticket, size_t cap, const char *words);

/* dir/<id>.ks */
void af_ks_path(const af_fixture *f, char *out, size_t cap, const char *id);
/* `mqe2e enroll` of <id> with @p ticket (stdout and stderr -d into
 * dir/<id>.enroll.out and .err). Exit code. */
int af_enroll(af_fixture *f, const char *id, const char *ticket);
/* A ticket for <id> in @p group with @p grant ("FILTER:RIGHTS"), then
 * `mqe2e enroll`; asserts both succeed. */
void af_enroll_in(af_fixture *f, const char *id, const char *group, const char *grant);
/* Open dir/<id>.ks with the fixture's key file (close with mqe2e_keystore_close()). */
mqe2e_keystore *af_open_ks(const af_fixture *f, const char *id);

#endif
