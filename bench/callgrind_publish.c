/*
 * Deterministic workload for the fronts' publish path under callgrind: N
 * publishes of 256 bytes on a group topic through mqe2e_MQTTClient_publish
 * (sync front) and mqe2e_MQTTAsync_send (async front), each front's client
 * set up as bench_throughput sets it up (memory keystore, group "bench" on
 * "bench/enc/#", sequence block 2^20, default options) but never connected:
 * the front does all of its work (checks, envelope buffer, session, policy,
 * sequence number, seal) and hands the envelope to Paho, which refuses it at
 * once (MQTTCLIENT_DISCONNECTED / MQTTASYNC_DISCONNECTED): no socket, no
 * broker, no thread of Paho's involved. The same N calls of plain Paho on
 * unconnected clients give Paho's own share of that refusal, and a loop of
 * mqe2e_protect on the same keystore setup gives the protector's share, so
 *
 *   front's own work = front loop - Paho's refusal - protect loop.
 *
 * Each loop is a separate function counted alone with --toggle-collect; the
 * per-message figure is (count(2N) - count(N)) / N (one-time costs cancel),
 * which bench/callgrind_publish.sh computes. Not a test and not timed.
 *
 * Usage: callgrind_publish [N]    (default 1000)
 *        valgrind --tool=callgrind --toggle-collect='cg_sync_publish_loop*' \
 *            build/bench/callgrind_publish 1000
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <MQTTAsync.h>
#include <MQTTClient.h>
#include <sodium.h>

#include "bench_keystore.h"
#include "mqe2e/MQTTAsync.h"
#include "mqe2e/MQTTClient.h"
#include "mqe2e/mqe2e.h"

#define PAYLOAD 256U
#define NOINLINE __attribute__((noinline))
#define URI "tcp://127.0.0.1:1" /* never connected */
#define GROUP "bench"
#define GROUP_FILTER "bench/enc/#"
#define TOPIC "bench/enc/t"

/* Fixed, public benchmark group secret: protects nothing. */
static const uint8_t GROUP_SECRET[32] = {
    0x74, 0x68, 0x72, 0x6f, 0x75, 0x67, 0x68, 0x70, 0x75, 0x74, 0x2d, 0x62, 0x65, 0x6e, 0x63, 0x68,
    0x2d, 0x67, 0x72, 0x6f, 0x75, 0x70, 0x2d, 0x6b, 0x65, 0x79, 0x2d, 0x6e, 0x6f, 0x74, 0x2d, 0x21};

typedef struct workload {
    size_t n;
    uint8_t pt[PAYLOAD];
    mqe2e_MQTTClient sync;
    mqe2e_MQTTAsync async;
    MQTTClient plain_sync;
    MQTTAsync plain_async;
    mqe2e_protector *prot;
    uint8_t env[1024];
} workload;

int cg_sync_publish_loop(workload *w);
int cg_async_publish_loop(workload *w);
int cg_paho_sync_publish_loop(workload *w);
int cg_paho_async_publish_loop(workload *w);
int cg_protect_loop(workload *w);

static void die(const char *what, int rc)
{
    fprintf(stderr, "callgrind_publish: %s: %d\n", what, rc);
    exit(2);
}

static mqe2e_keystore *ks_new(const char *client)
{
    return bench_memory_keystore("callgrind_publish", client, 1U << 20, GROUP, GROUP_FILTER,
                                 GROUP_SECRET, (uint64_t)time(NULL));
}

/* Every call must reach Paho and be refused there as disconnected: a front
 * that refused earlier (no policy, a bad argument) would count nothing. */
NOINLINE int cg_sync_publish_loop(workload *w)
{
    for (size_t i = 0; i < w->n; i++) {
        int rc = mqe2e_MQTTClient_publish(w->sync, TOPIC, (int)PAYLOAD, w->pt, 0, 0, NULL);
        if (rc != MQTTCLIENT_DISCONNECTED) return rc;
    }
    return 0;
}

NOINLINE int cg_async_publish_loop(workload *w)
{
    for (size_t i = 0; i < w->n; i++) {
        int rc = mqe2e_MQTTAsync_send(w->async, TOPIC, (int)PAYLOAD, w->pt, 0, 0, NULL);
        if (rc != MQTTASYNC_DISCONNECTED) return rc;
    }
    return 0;
}

NOINLINE int cg_paho_sync_publish_loop(workload *w)
{
    for (size_t i = 0; i < w->n; i++) {
        int rc = MQTTClient_publish(w->plain_sync, TOPIC, (int)PAYLOAD, w->pt, 0, 0, NULL);
        if (rc != MQTTCLIENT_DISCONNECTED) return rc;
    }
    return 0;
}

NOINLINE int cg_paho_async_publish_loop(workload *w)
{
    for (size_t i = 0; i < w->n; i++) {
        int rc = MQTTAsync_send(w->plain_async, TOPIC, (int)PAYLOAD, w->pt, 0, 0, NULL);
        if (rc != MQTTASYNC_DISCONNECTED) return rc;
    }
    return 0;
}

NOINLINE int cg_protect_loop(workload *w)
{
    size_t len;
    for (size_t i = 0; i < w->n; i++) {
        int rc = mqe2e_protect(w->prot, TOPIC, w->pt, PAYLOAD, (uint64_t)time(NULL), w->env,
                               sizeof w->env, &len);
        if (rc != MQE2E_OK) return rc;
    }
    return 0;
}

typedef int loop_fn(workload *w);

/* One call outside the collected count (lazy binding, first sequence block,
 * the sender key), then the counted loop. */
static void run(workload *w, loop_fn *fn, const char *name)
{
    size_t n = w->n;
    int rc;
    w->n = 1;
    if ((rc = fn(w)) != 0) die(name, rc);
    w->n = n;
    if ((rc = fn(w)) != 0) die(name, rc);
}

int main(int argc, char **argv)
{
    static workload w;
    mqe2e_MQTTClient_securityOptions sec = mqe2e_MQTTClient_securityOptions_initializer;
    mqe2e_MQTTAsync_securityOptions asec = mqe2e_MQTTAsync_securityOptions_initializer;
    mqe2e_policy *pol = NULL;
    int rc;

    w.n = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 1000U;
    if (w.n == 0) die("N", -1);
    if (sodium_init() < 0) die("sodium_init", -1);
    for (size_t i = 0; i < PAYLOAD; i++)
        w.pt[i] = (uint8_t)(i * 31U + 7U);

    mqe2e_keystore *ks_sync = ks_new("cg-pub-sync");
    mqe2e_keystore *ks_async = ks_new("cg-pub-async");
    mqe2e_keystore *ks_prot = ks_new("cg-pub-protect");

    if ((rc = mqe2e_MQTTClient_create(&w.sync, URI, "cg-pub-sync", MQTTCLIENT_PERSISTENCE_NONE,
                                      NULL)) != MQTTCLIENT_SUCCESS)
        die("mqe2e_MQTTClient_create", rc);
    sec.struct_version = 0;
    sec.keystore = ks_sync;
    if ((rc = mqe2e_MQTTClient_setSecurity(w.sync, &sec)) != MQTTCLIENT_SUCCESS)
        die("setSecurity", rc);
    if ((rc = mqe2e_MQTTAsync_create(&w.async, URI, "cg-pub-async", MQTTCLIENT_PERSISTENCE_NONE,
                                     NULL)) != MQTTASYNC_SUCCESS)
        die("mqe2e_MQTTAsync_create", rc);
    asec.struct_version = 0;
    asec.keystore = ks_async;
    if ((rc = mqe2e_MQTTAsync_setSecurity(w.async, &asec)) != MQTTASYNC_SUCCESS)
        die("async setSecurity", rc);
    if ((rc = MQTTClient_create(&w.plain_sync, URI, "cg-pub-plain", MQTTCLIENT_PERSISTENCE_NONE,
                                NULL)) != MQTTCLIENT_SUCCESS)
        die("MQTTClient_create", rc);
    if ((rc = MQTTAsync_create(&w.plain_async, URI, "cg-pub-aplain", MQTTCLIENT_PERSISTENCE_NONE,
                               NULL)) != MQTTASYNC_SUCCESS)
        die("MQTTAsync_create", rc);
    if ((rc = mqe2e_policy_new(&pol)) != MQE2E_OK) die("policy_new", rc);
    if ((rc = mqe2e_policy_add_keystore_groups(pol, ks_prot)) != MQE2E_OK) die("policy", rc);
    if ((rc = mqe2e_protector_new(&w.prot, ks_prot, pol, NULL)) != MQE2E_OK) die("protector", rc);

    run(&w, cg_sync_publish_loop, "sync front");
    run(&w, cg_async_publish_loop, "async front");
    run(&w, cg_paho_sync_publish_loop, "plain MQTTClient_publish");
    run(&w, cg_paho_async_publish_loop, "plain MQTTAsync_send");
    run(&w, cg_protect_loop, "protect");
    printf("published %zu messages per loop (each refused by Paho as disconnected)\n", w.n);

    mqe2e_protector_free(w.prot);
    mqe2e_policy_free(pol);
    MQTTAsync_destroy(&w.plain_async);
    MQTTClient_destroy(&w.plain_sync);
    mqe2e_MQTTAsync_destroy(&w.async);
    mqe2e_MQTTClient_destroy(&w.sync);
    mqe2e_keystore_close(ks_prot);
    mqe2e_keystore_close(ks_async);
    mqe2e_keystore_close(ks_sync);
    return 0;
}
