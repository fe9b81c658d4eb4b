/*
 * Deterministic workload for the session's receive path under callgrind:
 * N group envelopes of 256 bytes sealed beforehand by a sender's protector,
 * then received by a session (mqe2e_session_receive_one + mqe2e_session_commit,
 * what the Python binding does per message; the Paho fronts do
 * message_received + next + commit). Only the receive loop is collected
 * (--toggle-collect='cg_session_recv_loop*'), so the figure is the session's
 * instructions per message, unprotect included; compare with cg_open_loop of
 * callgrind_seal_open for the envelope's own share.
 *
 * Usage: callgrind_session_recv [N]    (default 1000)
 *        valgrind --tool=callgrind --toggle-collect='cg_session_recv_loop*' \
 *            build/bench/callgrind_session_recv 1000
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "bench_common.h"
#include "bench_keystore.h"
#include "mqe2e/error.h"
#include "mqe2e/keystore.h"
#include "mqe2e/policy.h"
#include "mqe2e/protect.h"
#include "mqe2e/session.h"

#define PAYLOAD 256U
#define NOINLINE __attribute__((noinline))

typedef struct workload {
    size_t n;
    size_t cap;
    uint8_t *envs; /* n envelopes of cap bytes each */
    size_t *env_lens;
    mqe2e_session *s;
} workload;

int cg_session_recv_loop(workload *w, uint64_t mono);

static void die(const char *what, int rc)
{
    fprintf(stderr, "callgrind_session_recv: %s: %d\n", what, rc);
    exit(2);
}

static mqe2e_keystore *ks_new(const char *client)
{
    return bench_memory_keystore("callgrind_session_recv", client, 65536U, BENCH_GROUP,
                                 BENCH_TOPIC_FILTER, BENCH_GROUP_SECRET, BENCH_NOW);
}

NOINLINE int cg_session_recv_loop(workload *w, uint64_t mono)
{
    mqe2e_session_action a;
    for (size_t i = 0; i < w->n; i++) {
        mqe2e_session_time now = {BENCH_NOW, mono + i};
        int rc =
            mqe2e_session_receive_one(w->s, BENCH_TOPIC, sizeof BENCH_TOPIC - 1U,
                                      w->envs + i * w->cap, w->env_lens[i], 0, 0, 0, 0U, now, &a);
        if (rc != 1 || a.kind != MQE2E_SESSION_DELIVER || a.len != PAYLOAD) return -1;
        if (mqe2e_session_commit(w->s, &a.receipt) != MQE2E_OK) return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    workload w;
    uint8_t pt[PAYLOAD];
    mqe2e_policy *pol = NULL;
    mqe2e_protector *tx = NULL;
    int rc;

    memset(&w, 0, sizeof w);
    w.n = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 1000U;
    if (w.n == 0) die("N", -1);
    if (sodium_init() < 0) die("sodium_init", -1);
    bench_fill(pt, sizeof pt, 7);

    mqe2e_keystore *sks = ks_new(BENCH_SENDER_CLIENT);
    mqe2e_keystore *rks = ks_new(BENCH_RECEIVER_CLIENT);
    if ((rc = mqe2e_policy_new(&pol)) != MQE2E_OK) die("policy_new", rc);
    if ((rc = mqe2e_policy_add_keystore_groups(pol, sks)) != MQE2E_OK) die("policy", rc);
    if ((rc = mqe2e_protector_new(&tx, sks, pol, NULL)) != MQE2E_OK) die("protector", rc);

    w.cap = mqe2e_protect_bound(PAYLOAD);
    w.envs = malloc((w.n + 1U) * w.cap);
    w.env_lens = malloc((w.n + 1U) * sizeof *w.env_lens);
    if (w.envs == NULL || w.env_lens == NULL) die("malloc", -1);
    for (size_t i = 0; i <= w.n; i++) {
        rc = mqe2e_protect(tx, BENCH_TOPIC, pt, PAYLOAD, BENCH_NOW, w.envs + i * w.cap, w.cap,
                           &w.env_lens[i]);
        if (rc != MQE2E_OK) die("protect", rc);
    }

    mqe2e_session_options o = MQE2E_SESSION_OPTIONS_INIT;
    if ((rc = mqe2e_session_new(&w.s, rks, NULL, &o)) != MQE2E_OK) die("session_new", rc);

    /* Warm-up outside the collected loop: the first envelope, first use of
     * every primitive (lazy binding, CPU dispatch, the sender's replay state). */
    workload warm = w;
    warm.n = 1;
    if (cg_session_recv_loop(&warm, 1) != 0) die("warm-up", -1);
    w.envs += w.cap;
    w.env_lens++;
    if ((rc = cg_session_recv_loop(&w, 2)) != 0) die("receive loop", rc);
    w.envs -= w.cap;
    w.env_lens--;

    printf("received %zu messages\n", w.n);
    mqe2e_session_free(w.s);
    mqe2e_protector_free(tx);
    mqe2e_policy_free(pol);
    mqe2e_keystore_close(sks);
    mqe2e_keystore_close(rks);
    free(w.envs);
    free(w.env_lens);
    return 0;
}
