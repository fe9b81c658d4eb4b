/*
 * Memory figures and the many-senders receive path.
 *
 *   bench_memory [--json FILE] [--senders N] [--smoke]
 *       bytes per group (keystore, protector cache), per sender (receive-side
 *       cache entry + replay state), per established peer channel, and
 *       ns/message on a receiver fed by N senders of one group (default 10,000)
 *   bench_memory --rss-of PROG [ARGS...]
 *       run PROG, print "maxrss_kb=N" (ru_maxrss of the child from wait4(),
 *       i.e. its VmHWM at exit) and "rss_kb=N" (its VmRSS, sampled every
 *       50 ms, last sample before exit) and exit with PROG's status
 *   bench_memory --plain-device URI COUNT | --plain-backend URI COUNT TIMEOUT_S
 *       plain Paho twins of examples/hr_device and hr_backend (same topic,
 *       QoS, message shape and pacing), the RSS baseline of the examples
 *
 * Method. Heap bytes are the change of mallinfo2() (uordblks + hblkhd)
 * across the step. Guarded allocations are counted by interposing
 * sodium_malloc()/sodium_free(): libmqe2e.so calls them through its PLT, and
 * a definition in the executable comes first in symbol lookup. libsodium
 * 1.0.18 maps each such allocation as the request + 16-byte canary rounded up
 * to whole pages, plus three more pages (a header page and two guard pages);
 * "guarded mapped" below is that figure, "guarded requested" the sum of the
 * requested sizes. Opaque types have no sizeof: every figure is a delta over
 * many objects divided by their number.
 */
#define _GNU_SOURCE /* RTLD_NEXT */
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <MQTTClient.h>
#include <sodium.h>

#include "mqe2e/control.h"
#include "mqe2e/credential.h"
#include "mqe2e/envelope.h"
#include "mqe2e/error.h"
#include "mqe2e/keystore.h"
#include "mqe2e/mqe2e.h"
#include "mqe2e/policy.h"
#include "mqe2e/protect.h"
#include "mqe2e/replay.h"
#include "mqe2e/storage.h"
#include "mqe2e/version.h"

#define NOW 1800000000ULL
#define PAYLOAD 256U

/* ------------------------------------------------ guarded allocation counter */

typedef void *sodium_malloc_fn(size_t);
typedef void sodium_free_fn(void *);

#define TRACK_SLOTS (1U << 18)
static struct {
    void *p;
    size_t n;
} track[TRACK_SLOTS];
static size_t guarded_requested, guarded_mapped, guarded_live;
static size_t page_size;

static size_t mapped_of(size_t n)
{
    size_t u = (n + 16U + page_size - 1U) / page_size * page_size;
    return u + 3U * page_size;
}

static size_t slot_of(const void *p)
{
    return (size_t)(((uintptr_t)p >> 12) * 0x9E3779B97F4A7C15ULL >> 40) & (TRACK_SLOTS - 1U);
}

void *sodium_malloc(size_t size)
{
    static sodium_malloc_fn *real;
    if (real == NULL) {
        union {
            void *obj;
            sodium_malloc_fn *fn;
        } u;
        u.obj = dlsym(RTLD_NEXT, "sodium_malloc");
        real = u.fn;
    }
    void *p = real(size);
    if (p != NULL && page_size > 0) {
        size_t i = slot_of(p);
        while (track[i].p != NULL) i = (i + 1U) & (TRACK_SLOTS - 1U);
        track[i].p = p;
        track[i].n = size;
        guarded_requested += size;
        guarded_mapped += mapped_of(size);
        guarded_live++;
    }
    return p;
}

void sodium_free(void *ptr)
{
    static sodium_free_fn *real;
    if (real == NULL) {
        union {
            void *obj;
            sodium_free_fn *fn;
        } u;
        u.obj = dlsym(RTLD_NEXT, "sodium_free");
        real = u.fn;
    }
    if (ptr != NULL && page_size > 0) {
        size_t i = slot_of(ptr);
        for (size_t k = 0; k < TRACK_SLOTS && track[i].p != NULL; k++) {
            if (track[i].p == ptr) {
                guarded_requested -= track[i].n;
                guarded_mapped -= mapped_of(track[i].n);
                guarded_live--;
                /* Backward-shift deletion keeps the probe chains intact. */
                size_t j = i;
                for (;;) {
                    j = (j + 1U) & (TRACK_SLOTS - 1U);
                    if (track[j].p == NULL) break;
                    size_t h = slot_of(track[j].p);
                    if ((j > i && (h <= i || h > j)) || (j < i && (h <= i && h > j))) {
                        track[i] = track[j];
                        i = j;
                    }
                }
                track[i].p = NULL;
                break;
            }
            i = (i + 1U) & (TRACK_SLOTS - 1U);
        }
    }
    real(ptr);
}

typedef struct snap {
    size_t heap, g_req, g_map, g_live;
} snap;

static snap take(void)
{
    struct mallinfo2 mi = mallinfo2();
    snap s = {mi.uordblks + mi.hblkhd, guarded_requested, guarded_mapped, guarded_live};
    return s;
}

typedef struct per {
    double heap, g_req, g_map, g_count;
} per;

static per delta(snap a, snap b, size_t n)
{
    per p;
    p.heap = ((double)b.heap - (double)a.heap) / (double)n;
    p.g_req = ((double)b.g_req - (double)a.g_req) / (double)n;
    p.g_map = ((double)b.g_map - (double)a.g_map) / (double)n;
    p.g_count = ((double)b.g_live - (double)a.g_live) / (double)n;
    return p;
}

static void add(per *acc, per d)
{
    acc->heap += d.heap;
    acc->g_req += d.g_req;
    acc->g_map += d.g_map;
    acc->g_count += d.g_count;
}

/* -------------------------------------------------------------------- utils */

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_memory: %s failed: %d (%s)\n", what, rc,
            rc < 0 ? mqe2e_strerror(rc) : "-");
    exit(2);
}

static void check(const char *what, int rc)
{
    if (rc != MQE2E_OK) die(what, rc);
}

static mqe2e_keystore *new_keystore(const char *client)
{
    mqe2e_storage st;
    mqe2e_keystore *ks = NULL;
    check("storage_memory", mqe2e_storage_memory(&st));
    check("keystore_create", mqe2e_keystore_create(&ks, st, client, 0U));
    check("seq_block", mqe2e_keystore_set_seq_block(ks, 1U << 16));
    return ks;
}

/* ------------------------------------------------------------------ groups */

typedef struct group_result {
    size_t groups;
    per keystore, protector;
} group_result;

static void measure_groups(group_result *r, size_t n)
{
    uint8_t secret[MQE2E_GROUP_SECRET_BYTES];
    char gid[32], filter[48], topic[48];
    uint8_t pt[PAYLOAD], out[PAYLOAD + 256]; /* mqe2e_protect_bound(): room for signed mode */
    size_t olen;
    mqe2e_keystore *ks = new_keystore("mem-groups");
    mqe2e_policy *pol = NULL;
    mqe2e_protector *pr = NULL;

    r->groups = n;
    memset(pt, 0x42, sizeof pt);
    snap s0 = take();
    for (size_t i = 0; i < n; i++) {
        snprintf(gid, sizeof gid, "group-%05zu", i);
        snprintf(filter, sizeof filter, "fleet/g%05zu/#", i);
        randombytes_buf(secret, sizeof secret);
        check("group_add_epoch",
              mqe2e_keystore_group_add_epoch(ks, gid, filter, 1U, secret, NOW));
    }
    sodium_memzero(secret, sizeof secret);
    snap s1 = take();
    r->keystore = delta(s0, s1, n);

    check("policy_new", mqe2e_policy_new(&pol));
    check("policy groups", mqe2e_policy_add_keystore_groups(pol, ks));
    check("protector_new", mqe2e_protector_new(&pr, ks, pol, NULL));
    /* One message on one topic of every group warm its cache entries. */
    snprintf(topic, sizeof topic, "fleet/g%05zu/x", (size_t)0);
    check("protect", mqe2e_protect(pr, topic, pt, sizeof pt, NOW, out, sizeof out, &olen));
    snap s2 = take();
    for (size_t i = 1; i < n; i++) {
        snprintf(topic, sizeof topic, "fleet/g%05zu/x", i);
        check("protect", mqe2e_protect(pr, topic, pt, sizeof pt, NOW, out, sizeof out, &olen));
    }
    snap s3 = take();
    r->protector = delta(s2, s3, n - 1U);
    mqe2e_protector_free(pr);
    mqe2e_policy_free(pol);
    mqe2e_keystore_close(ks);
}

/* ------------------------------------------------------ many senders, one group */

typedef struct senders_result {
    size_t senders, rounds;
    double cold_ns;     /* first message of each sender: key derivation + new entry */
    double warm_ns;     /* later messages, round robin over all senders */
    double warm_nockpt_ns; /* warm, with replay checkpoints off (checkpoint_every = 2^32-1) */
    double single_ns;   /* the same number of messages from one sender */
    per with_checkpoints;    /* receiver growth per sender, default options */
    per without_checkpoints; /* checkpoints off: protector cache alone */
} senders_result;

static const uint8_t GROUP_SECRET[32] = {
    0x6d, 0x61, 0x6e, 0x79, 0x2d, 0x73, 0x65, 0x6e, 0x64, 0x65, 0x72, 0x73, 0x2d, 0x62, 0x65, 0x6e,
    0x63, 0x68, 0x2d, 0x6e, 0x6f, 0x74, 0x2d, 0x61, 0x2d, 0x73, 0x65, 0x63, 0x72, 0x65, 0x74, 0x21};
#define MS_GROUP "telemetry"
#define MS_FILTER "tele/#"
#define MS_TOPIC "tele/site-1/values"

typedef struct envelopes {
    uint8_t *buf;
    size_t stride, n;
    size_t *len;
} envelopes;

/* Round r holds one envelope of every sender, sequence number r + 1. */
static void make_envelopes(envelopes *e, size_t senders, size_t rounds, int one_sender)
{
    uint8_t pt[PAYLOAD];
    mqe2e_sender_key k;
    e->stride = mqe2e_envelope_sealed_bound(PAYLOAD);
    e->n = senders * rounds;
    e->buf = malloc(e->n * e->stride);
    e->len = malloc(e->n * sizeof *e->len);
    if (e->buf == NULL || e->len == NULL) die("malloc", MQE2E_ERR_NOMEM);
    memset(pt, 0x37, sizeof pt);
    for (size_t s = 0; s < (one_sender ? 1U : senders); s++) {
        uint32_t sid = (uint32_t)(s + 1U);
        check("sender_key_derive", mqe2e_sender_key_derive(&k, GROUP_SECRET, MS_GROUP, 1U, sid));
        for (size_t r = 0; r < (one_sender ? e->n : rounds); r++) {
            size_t i = one_sender ? r : r * senders + s;
            mqe2e_envelope_header h = {MQE2E_MODE_GROUP, 1U, sid, (uint64_t)r + 1U, 0U};
            check("envelope_seal",
                  mqe2e_envelope_seal(e->buf + i * e->stride, e->stride, &e->len[i], &k,
                                      MS_TOPIC, MS_GROUP, &h, pt, sizeof pt));
        }
    }
    mqe2e_sender_key_wipe(&k);
}

typedef struct receiver {
    mqe2e_keystore *ks;
    mqe2e_policy *pol;
    mqe2e_protector *pr;
} receiver;

static void receiver_open(receiver *rx, uint32_t checkpoint_every)
{
    mqe2e_protector_options o = MQE2E_PROTECTOR_OPTIONS_INIT;
    o.checkpoint_every = checkpoint_every;
    rx->ks = new_keystore("many-senders-rx");
    check("group_add_epoch",
          mqe2e_keystore_group_add_epoch(rx->ks, MS_GROUP, MS_FILTER, 1U, GROUP_SECRET, NOW));
    check("policy_new", mqe2e_policy_new(&rx->pol));
    check("policy groups", mqe2e_policy_add_keystore_groups(rx->pol, rx->ks));
    check("protector_new", mqe2e_protector_new(&rx->pr, rx->ks, rx->pol, &o));
}

static void receiver_close(receiver *rx)
{
    mqe2e_protector_free(rx->pr);
    mqe2e_policy_free(rx->pol);
    mqe2e_keystore_close(rx->ks);
}

static double feed(receiver *rx, const envelopes *e, size_t from, size_t to)
{
    uint8_t out[PAYLOAD + 256];
    size_t olen;
    double t0 = now_ns();
    for (size_t i = from; i < to; i++) {
        int rc = mqe2e_unprotect(rx->pr, MS_TOPIC, e->buf + i * e->stride, e->len[i], NOW, out,
                                 sizeof out, &olen);
        if (rc != MQE2E_OK) die("unprotect", rc);
    }
    return (now_ns() - t0) / (double)(to - from);
}

static void measure_senders(senders_result *r, size_t senders, size_t rounds)
{
    envelopes many, one;
    receiver rx;

    r->senders = senders;
    r->rounds = rounds;
    make_envelopes(&many, senders, rounds, 0);
    make_envelopes(&one, senders, rounds, 1);

    /* Memory: protector cache alone (no checkpoint during the run). */
    receiver_open(&rx, UINT32_MAX);
    snap a = take();
    (void)feed(&rx, &many, 0, senders);
    snap b = take();
    r->without_checkpoints = delta(a, b, senders);
    r->warm_nockpt_ns = feed(&rx, &many, senders, many.n);
    receiver_close(&rx);

    /* Default options: replay checkpoints reach the keystore every 256 messages. */
    receiver_open(&rx, 0U);
    a = take();
    r->cold_ns = feed(&rx, &many, 0, senders);
    b = take();
    r->with_checkpoints = delta(a, b, senders);
    r->warm_ns = feed(&rx, &many, senders, many.n);
    receiver_close(&rx);

    receiver_open(&rx, 0U);
    (void)feed(&rx, &one, 0, 1); /* derive the one key outside the timing */
    r->single_ns = feed(&rx, &one, 1, one.n);
    receiver_close(&rx);

    free(many.buf);
    free(many.len);
    free(one.buf);
    free(one.len);
}

/* ------------------------------------------------------------------ channels */

typedef struct channel_result {
    size_t channels;
    per initiator, responder;
} channel_result;

static uint8_t *issue(size_t *len, const uint8_t auth_sk[64], const char *id,
                      const uint8_t sign_pk[32], const uint8_t dh_pk[32], uint64_t serial)
{
    static const mqe2e_grant g[] = {{"cmd/#", MQE2E_RIGHT_ALL}};
    mqe2e_credential_request q;
    uint8_t *out = NULL;
    memset(&q, 0, sizeof q);
    q.client_id = id;
    q.role = "device";
    memcpy(q.sign_public, sign_pk, 32);
    memcpy(q.dh_public, dh_pk, 32);
    q.grants = g;
    q.n_grants = 1;
    q.issued_at = NOW - 10U;
    q.expires_at = NOW + 86400U;
    q.serial = serial;
    check("credential_issue", mqe2e_credential_issue(&out, len, auth_sk, &q));
    return out;
}

/* n channel pairs alice <-> bob, each established and used once each way. */
static void measure_channels(channel_result *r, size_t n)
{
    uint8_t auth_pk[32], auth_sk[64], a_sign[32], a_ssk[64], b_sign[32], b_ssk[64];
    uint8_t a_dh_pk[32], a_dh_sk[32], b_dh_pk[32], b_dh_sk[32];
    size_t a_len, b_len, n1, n2, n3, none, elen, plen;
    uint8_t *m1 = malloc(MQE2E_CONTROL_MAX_FRAME_BYTES), *m2 = malloc(MQE2E_CONTROL_MAX_FRAME_BYTES),
            *m3 = malloc(MQE2E_CONTROL_MAX_FRAME_BYTES);
    mqe2e_channel **ca = calloc(n, sizeof *ca), **cb = calloc(n, sizeof *cb);
    uint8_t msg[64], env[256], dec[256];

    if (m1 == NULL || m2 == NULL || m3 == NULL || ca == NULL || cb == NULL) die("malloc", -1);
    crypto_sign_keypair(auth_pk, auth_sk);
    crypto_sign_keypair(a_sign, a_ssk);
    crypto_sign_keypair(b_sign, b_ssk);
    crypto_box_keypair(a_dh_pk, a_dh_sk);
    crypto_box_keypair(b_dh_pk, b_dh_sk);
    uint8_t *a_cred = issue(&a_len, auth_sk, "alice", a_sign, a_dh_pk, 1U);
    uint8_t *b_cred = issue(&b_len, auth_sk, "bob", b_sign, b_dh_pk, 2U);
    mqe2e_channel_config cfa = {"mqe2e", "alice", a_dh_sk, a_cred, a_len, auth_pk, "bob"};
    mqe2e_channel_config cfb = {"mqe2e", "bob", b_dh_sk, b_cred, b_len, auth_pk, NULL};
    memset(msg, 0x21, sizeof msg);

    r->channels = n;
    /* Each step's delta goes to the side whose object it grew; the handshake
     * frames must be handled in order, so pairs are completed one by one. */
    per pa = {0, 0, 0, 0}, pb = {0, 0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        snap t0 = take();
        check("channel_initiate",
              mqe2e_channel_initiate(&ca[i], m1, MQE2E_CONTROL_MAX_FRAME_BYTES, &n1, &cfa, NOW));
        snap t1 = take();
        check("channel_accept", mqe2e_channel_accept(&cb[i], m2, MQE2E_CONTROL_MAX_FRAME_BYTES,
                                                     &n2, &cfb, m1, n1, NOW));
        snap t2 = take();
        check("channel_handle a", mqe2e_channel_handle(ca[i], m3, MQE2E_CONTROL_MAX_FRAME_BYTES,
                                                       &n3, m2, n2, NULL, NOW));
        snap t3 = take();
        none = 1;
        check("channel_handle b", mqe2e_channel_handle(cb[i], NULL, 0, &none, m3, n3, NULL, NOW));
        snap t4 = take();
        check("channel_seal", mqe2e_channel_seal(ca[i], env, sizeof env, &elen, "cmd/bob/x", msg,
                                                 sizeof msg, NOW));
        snap t5 = take();
        check("channel_open", mqe2e_channel_open(cb[i], dec, sizeof dec, &plen, "cmd/bob/x", env,
                                                 elen, NOW));
        snap t6 = take();
        check("channel_seal", mqe2e_channel_seal(cb[i], env, sizeof env, &elen, "cmd/alice/x",
                                                 msg, sizeof msg, NOW));
        snap t7 = take();
        check("channel_open", mqe2e_channel_open(ca[i], dec, sizeof dec, &plen, "cmd/alice/x",
                                                 env, elen, NOW));
        snap t8 = take();
        add(&pa, delta(t0, t1, 1));
        add(&pa, delta(t2, t3, 1));
        add(&pa, delta(t4, t5, 1));
        add(&pa, delta(t7, t8, 1));
        add(&pb, delta(t1, t2, 1));
        add(&pb, delta(t3, t4, 1));
        add(&pb, delta(t5, t6, 1));
        add(&pb, delta(t6, t7, 1));
    }
    r->initiator.heap = pa.heap / (double)n;
    r->initiator.g_req = pa.g_req / (double)n;
    r->initiator.g_map = pa.g_map / (double)n;
    r->initiator.g_count = pa.g_count / (double)n;
    r->responder.heap = pb.heap / (double)n;
    r->responder.g_req = pb.g_req / (double)n;
    r->responder.g_map = pb.g_map / (double)n;
    r->responder.g_count = pb.g_count / (double)n;
    for (size_t i = 0; i < n; i++) {
        mqe2e_channel_free(ca[i]);
        mqe2e_channel_free(cb[i]);
    }
    free(ca);
    free(cb);
    free(a_cred);
    free(b_cred);
    free(m1);
    free(m2);
    free(m3);
    sodium_memzero(auth_sk, sizeof auth_sk);
    sodium_memzero(a_ssk, sizeof a_ssk);
    sodium_memzero(b_ssk, sizeof b_ssk);
    sodium_memzero(a_dh_sk, sizeof a_dh_sk);
    sodium_memzero(b_dh_sk, sizeof b_dh_sk);
}

/* ------------------------------------------------------ plain Paho twins, RSS */

/* VmRSS of a process in KiB, 0 if unreadable (it exited). */
static long vmrss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = 0;
    snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) return 0;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) kb = atol(line + 6);
    }
    fclose(f);
    return kb;
}

static long self_rss_kb(void)
{
    return vmrss_kb(getpid());
}

/* Peak RSS from wait4() (the child's VmHWM at exit) and its resident size
 * while running, sampled every 50 ms (the last sample before it exited). */
static int rss_of(char **argv)
{
    struct rusage ru;
    int status = 0;
    long steady = 0;
    pid_t pid;
    fflush(NULL);
    pid = fork();
    if (pid < 0) return 2;
    if (pid == 0) {
        execvp(argv[0], argv);
        fprintf(stderr, "bench_memory: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    for (;;) {
        pid_t r = wait4(pid, &status, WNOHANG, &ru);
        if (r == pid) break;
        if (r < 0) return 2;
        long kb = vmrss_kb(pid);
        if (kb > 0) steady = kb;
        struct timespec pause = {0, 50L * 1000L * 1000L};
        nanosleep(&pause, NULL);
    }
    printf("maxrss_kb=%ld\nrss_kb=%ld\n", ru.ru_maxrss, steady);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 2;
}

static atomic_int plain_received;

static int plain_on_message(void *ctx, char *topic, int topic_len, MQTTClient_message *m)
{
    (void)ctx;
    (void)topic_len;
    printf("backend received [%s]: %.*s\n", topic, m->payloadlen, (const char *)m->payload);
    fflush(stdout);
    atomic_fetch_add(&plain_received, 1);
    MQTTClient_freeMessage(&m);
    MQTTClient_free(topic);
    return 1;
}

/* Same shape as examples/hr_device: QoS 1 JSON readings every 200 ms. */
static int plain_device(const char *uri, int count)
{
    MQTTClient c;
    MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer;
    int rc = MQTTClient_create(&c, uri, "hr-plain", MQTTCLIENT_PERSISTENCE_NONE, NULL);
    co.keepAliveInterval = 20;
    co.cleansession = 1;
    if (rc == MQTTCLIENT_SUCCESS) rc = MQTTClient_connect(c, &co);
    for (int seq = 1; rc == MQTTCLIENT_SUCCESS && seq <= count; seq++) {
        char reading[96];
        MQTTClient_deliveryToken t;
        int len = snprintf(reading, sizeof reading, "{\"device\":\"hr-1\",\"bpm\":%d,\"seq\":%d}",
                           68 + (seq * 7) % 15, seq);
        rc = MQTTClient_publish(c, "health/hr-1/heartrate", len, reading, 1, 0, &t);
        if (rc == MQTTCLIENT_SUCCESS) rc = MQTTClient_waitForCompletion(c, t, 5000UL);
        printf("device published reading %d\n", seq);
        struct timespec pause = {0, 200L * 1000L * 1000L};
        nanosleep(&pause, NULL);
    }
    if (rc != MQTTCLIENT_SUCCESS) fprintf(stderr, "plain device: %s\n", MQTTClient_strerror(rc));
    MQTTClient_disconnect(c, 5000);
    MQTTClient_destroy(&c);
    return rc == MQTTCLIENT_SUCCESS ? 0 : 1;
}

/* Same shape as examples/hr_backend: callbacks, QoS 1 subscription. */
static int plain_backend(const char *uri, int count, int timeout_s)
{
    MQTTClient c;
    MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer;
    int rc = MQTTClient_create(&c, uri, "backend-plain", MQTTCLIENT_PERSISTENCE_NONE, NULL);
    co.keepAliveInterval = 20;
    co.cleansession = 1;
    if (rc == MQTTCLIENT_SUCCESS) rc = MQTTClient_setCallbacks(c, NULL, NULL, plain_on_message, NULL);
    if (rc == MQTTCLIENT_SUCCESS) rc = MQTTClient_connect(c, &co);
    if (rc == MQTTCLIENT_SUCCESS) rc = MQTTClient_subscribe(c, "health/+/heartrate", 1);
    if (rc != MQTTCLIENT_SUCCESS) {
        fprintf(stderr, "plain backend: %s\n", MQTTClient_strerror(rc));
        MQTTClient_destroy(&c);
        return 1;
    }
    printf("backend subscribed\n");
    fflush(stdout);
    for (int ms = 0; atomic_load(&plain_received) < count && ms < timeout_s * 1000; ms += 100) {
        struct timespec pause = {0, 100L * 1000L * 1000L};
        nanosleep(&pause, NULL);
    }
    MQTTClient_disconnect(c, 5000);
    MQTTClient_destroy(&c);
    return atomic_load(&plain_received) >= count ? 0 : 1;
}

/* ---------------------------------------------------------------------- main */

/* --------------------------------------------------- a gateway's sessions */

/* A gateway holds one session per device it fronts: its keystore (identity,
 * one group), a policy and a protector that has sealed one message. Each
 * session's first send used to size its key cache at 256 keys (~69 KiB); the
 * cache now starts at 8 and doubles on demand. Paho's own per-connection
 * memory is not in this figure (it is the same with or without mqe2e). */
typedef struct session_result {
    size_t sessions;
    per keystore;    /* keystore with identity and one group */
    per first_send;  /* policy + protector + the first message sealed */
    double rss_kb;   /* VmRSS growth of this process per session, KiB */
} session_result;

static long self_rss_kb(void);

static void measure_sessions(session_result *r, size_t n)
{
    uint8_t secret[MQE2E_GROUP_SECRET_BYTES];
    uint8_t pt[PAYLOAD], out[PAYLOAD + 256];
    size_t olen;
    char id[32];
    mqe2e_keystore **ks = calloc(n, sizeof *ks);
    mqe2e_policy **pol = calloc(n, sizeof *pol);
    mqe2e_protector **pr = calloc(n, sizeof *pr);
    if (ks == NULL || pol == NULL || pr == NULL) die("calloc", MQE2E_ERR_NOMEM);
    r->sessions = n;
    memset(pt, 0x5a, sizeof pt);
    randombytes_buf(secret, sizeof secret);
    long rss0 = self_rss_kb();
    snap s0 = take();
    for (size_t i = 0; i < n; i++) {
        snprintf(id, sizeof id, "gw-session-%05zu", i);
        ks[i] = new_keystore(id);
        check("group_add_epoch",
              mqe2e_keystore_group_add_epoch(ks[i], "gw", "gw/#", 1U, secret, NOW));
    }
    snap s1 = take();
    for (size_t i = 0; i < n; i++) {
        check("policy_new", mqe2e_policy_new(&pol[i]));
        check("policy groups", mqe2e_policy_add_keystore_groups(pol[i], ks[i]));
        check("protector_new", mqe2e_protector_new(&pr[i], ks[i], pol[i], NULL));
        check("protect", mqe2e_protect(pr[i], "gw/x", pt, sizeof pt, NOW, out, sizeof out, &olen));
    }
    snap s2 = take();
    r->rss_kb = (double)(self_rss_kb() - rss0) / (double)n;
    sodium_memzero(secret, sizeof secret);
    r->keystore = delta(s0, s1, n);
    r->first_send = delta(s1, s2, n);
    for (size_t i = 0; i < n; i++) {
        mqe2e_protector_free(pr[i]);
        mqe2e_policy_free(pol[i]);
        mqe2e_keystore_close(ks[i]);
    }
    free(pr);
    free(pol);
    free(ks);
}

/* ------------------------------------------------ peak RSS on unlock per KDF */

typedef struct kdf_setting {
    const char *name;
    uint64_t opslimit, memlimit; /* 0, 0: raw key file (no KDF), the baseline */
} kdf_setting;

static const kdf_setting KDF_SETTINGS[] = {
    {"raw key (no KDF)", 0, 0},
    {"small: 8 MiB x 5", MQE2E_KDF_OPSLIMIT_SMALL, MQE2E_KDF_MEMLIMIT_SMALL},
    {"16 MiB x 3", 3, 16U << 20},
    {"32 MiB x 2", 2, 32U << 20},
    {"default: 64 MiB x 2", MQE2E_KDF_OPSLIMIT_DEFAULT, MQE2E_KDF_MEMLIMIT_DEFAULT},
};
#define N_KDF (sizeof KDF_SETTINGS / sizeof KDF_SETTINGS[0])

typedef struct kdf_result {
    long maxrss_kb;
    double unlock_ms;
} kdf_result;

static int storage_for(mqe2e_storage *st, const char *path, const kdf_setting *k)
{
    static const uint8_t raw[MQE2E_STORAGE_KEY_BYTES] = {1};
    if (k->opslimit == 0) return mqe2e_storage_file_key(st, path, raw);
    int rc = mqe2e_storage_file_passphrase(st, path, "bench passphrase", 16);
    if (rc == MQE2E_OK) rc = mqe2e_storage_file_set_kdf(st, k->opslimit, k->memlimit);
    return rc;
}

/* bench_memory --unlock-child PATH OPS MEM create|open: one step in a fresh
 * process (exec'd, so nothing of the parent's heap counts); prints the time. */
static int unlock_child(const char *path, const char *ops, const char *mem, const char *what)
{
    kdf_setting k = {"child", strtoull(ops, NULL, 10), strtoull(mem, NULL, 10)};
    mqe2e_storage st;
    mqe2e_keystore *ks = NULL;
    if (mqe2e_init() != MQE2E_OK || storage_for(&st, path, &k) != MQE2E_OK) return 3;
    double t0 = now_ns();
    int rc = strcmp(what, "create") == 0 ? mqe2e_keystore_create(&ks, st, "unlock-bench", 0U)
                                         : mqe2e_keystore_open(&ks, st);
    if (rc == MQE2E_OK && strcmp(what, "create") == 0) rc = mqe2e_keystore_flush(ks);
    double ms = (now_ns() - t0) / 1e6;
    mqe2e_keystore_close(ks);
    if (rc != MQE2E_OK) return 4;
    printf("%.3f\n", ms);
    return 0;
}

/* Create the keystore in one fresh process, unlock it in another: the second
 * one's ru_maxrss is the peak RSS of a process whose only work is the unlock. */
static void measure_unlock(kdf_result *r, const kdf_setting *k, const char *dir)
{
    char path[512], ops[32], mem[32];
    snprintf(path, sizeof path, "%s/unlock-%u-%u.ks", dir, (unsigned)k->opslimit,
             (unsigned)(k->memlimit >> 20));
    snprintf(ops, sizeof ops, "%llu", (unsigned long long)k->opslimit);
    snprintf(mem, sizeof mem, "%llu", (unsigned long long)k->memlimit);
    unlink(path);
    for (int step = 0; step < 2; step++) {
        int fds[2];
        if (pipe(fds) != 0) die("pipe", -1);
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) die("fork", -1);
        if (pid == 0) {
            dup2(fds[1], 1);
            close(fds[0]);
            close(fds[1]);
            execl("/proc/self/exe", "bench_memory", "--unlock-child", path, ops, mem,
                  step == 0 ? "create" : "open", (char *)NULL);
            _exit(127);
        }
        close(fds[1]);
        char buf[64] = {0};
        ssize_t got = read(fds[0], buf, sizeof buf - 1U);
        close(fds[0]);
        struct rusage ru;
        int status = 0;
        if (wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            die("unlock child", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        if (step == 1) {
            r->maxrss_kb = ru.ru_maxrss;
            r->unlock_ms = got > 0 ? atof(buf) : 0.0;
        }
    }
    unlink(path);
    char lp[560];
    snprintf(lp, sizeof lp, "%s.lock", path);
    unlink(lp);
}

static void print_per(FILE *f, const char *name, const per *p, const char *end)
{
    fprintf(f,
            "    \"%s\": {\"heap_bytes\": %.1f, \"guarded_requested_bytes\": %.1f, "
            "\"guarded_mapped_bytes\": %.1f, \"guarded_allocations\": %.3f}%s\n",
            name, p->heap, p->g_req, p->g_map, p->g_count, end);
}

static void row(const char *what, const per *p)
{
    printf("| %-44s | %10.0f | %10.0f | %10.0f | %8.3f |\n", what, p->heap, p->g_req, p->g_map,
           p->g_count);
}

int main(int argc, char **argv)
{
    const char *json = NULL;
    size_t senders = 10000U, rounds = 10U, groups = 1000U, channels = 100U, sessions = 1000U;
    int smoke = 0;

    if (argc > 2 && strcmp(argv[1], "--rss-of") == 0) return rss_of(argv + 2);
    if (argc == 6 && strcmp(argv[1], "--unlock-child") == 0) {
        return unlock_child(argv[2], argv[3], argv[4], argv[5]);
    }
    if (argc > 3 && strcmp(argv[1], "--plain-device") == 0) {
        return plain_device(argv[2], atoi(argv[3]));
    }
    if (argc > 4 && strcmp(argv[1], "--plain-backend") == 0) {
        return plain_backend(argv[2], atoi(argv[3]), atoi(argv[4]));
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
            json = argv[++i];
        } else if (strcmp(argv[i], "--senders") == 0 && i + 1 < argc) {
            senders = (size_t)atol(argv[++i]);
        } else if (strcmp(argv[i], "--smoke") == 0) {
            smoke = 1;
        } else {
            fprintf(stderr, "usage: bench_memory [--json FILE] [--senders N] [--smoke]\n"
                            "       bench_memory --rss-of PROG [ARGS...]\n"
                            "       bench_memory --plain-device URI COUNT\n"
                            "       bench_memory --plain-backend URI COUNT TIMEOUT_S\n");
            return 2;
        }
    }
    if (smoke) {
        senders = 200U;
        rounds = 3U;
        groups = 50U;
        channels = 5U;
        sessions = 20U;
    }
    if (senders < 2U) senders = 2U;
    if (mqe2e_init() != MQE2E_OK) die("mqe2e_init", -1);
    page_size = (size_t)sysconf(_SC_PAGESIZE);

    /* First, while this process is small: a child's ru_maxrss includes the
     * resident size it had before exec (Linux keeps the old hiwater mark). */
    kdf_result kr[N_KDF];
    char kdir[] = "/tmp/bench_memory_unlock.XXXXXX";
    if (mkdtemp(kdir) == NULL) die("mkdtemp", -1);
    for (size_t i = 0; i < N_KDF; i++) measure_unlock(&kr[i], &KDF_SETTINGS[i], kdir);
    rmdir(kdir);

    group_result gr;
    senders_result sr;
    channel_result cr;
    measure_groups(&gr, groups);
    measure_channels(&cr, channels);
    measure_senders(&sr, senders, rounds);
    session_result gw;
    measure_sessions(&gw, sessions);
    if (guarded_live == 0 && gr.keystore.g_count == 0.0) {
        fprintf(stderr, "bench_memory: warning: sodium_malloc() calls were not observed; "
                        "guarded figures are 0\n");
    }

    printf("mqe2e %s, libsodium %s%s\n", mqe2e_version(), sodium_version_string(),
           smoke ? "; SMOKE: small counts, timings meaningless" : "");
    printf("\nbytes per object (heap = malloc delta; guarded = sodium_malloc, requested and "
           "mapped incl. guard pages)\n");
    printf("| %-44s | %10s | %10s | %10s | %8s |\n", "object", "heap B", "guarded B",
           "mapped B", "allocs");
    printf("|----------------------------------------------|-----------:|-----------:|"
           "-----------:|---------:|\n");
    char label[96];
    snprintf(label, sizeof label, "group in keystore (%zu groups)", gr.groups);
    row(label, &gr.keystore);
    snprintf(label, sizeof label, "group in protector cache, sending (%zu)", gr.groups);
    row(label, &gr.protector);
    snprintf(label, sizeof label, "sender, receive cache only (%zu senders)", sr.senders);
    row(label, &sr.without_checkpoints);
    snprintf(label, sizeof label, "sender, cache + replay checkpoint (%zu)", sr.senders);
    row(label, &sr.with_checkpoints);
    snprintf(label, sizeof label, "channel, initiator side (%zu channels)", cr.channels);
    row(label, &cr.initiator);
    snprintf(label, sizeof label, "channel, responder side (%zu channels)", cr.channels);
    row(label, &cr.responder);
    snprintf(label, sizeof label, "gateway session: keystore + 1 group (%zu)", gw.sessions);
    row(label, &gw.keystore);
    snprintf(label, sizeof label, "gateway session: protector, 1st send (%zu)", gw.sessions);
    row(label, &gw.first_send);
    printf("\ngateway with %zu sessions (keystore, policy, protector, one message sealed "
           "each; Paho not included): %.1f KiB per session, %.2f MiB in all (heap + guarded "
           "mapped)\n",
           gw.sessions,
           (gw.keystore.heap + gw.keystore.g_map + gw.first_send.heap + gw.first_send.g_map) /
               1024.0,
           (gw.keystore.heap + gw.keystore.g_map + gw.first_send.heap + gw.first_send.g_map) *
               (double)gw.sessions / 1048576.0);
    printf("  resident (VmRSS growth; guard pages are mapped, not resident): %.1f KiB per "
           "session, %.2f MiB in all\n",
           gw.rss_kb, gw.rss_kb * (double)gw.sessions / 1024.0);
    printf("\npeak RSS of a process that only unlocks a keystore file (fresh exec; "
           "ru_maxrss):\n");
    printf("| %-22s | %12s | %10s |\n", "Argon2id setting", "peak RSS KiB", "unlock ms");
    printf("|------------------------|-------------:|-----------:|\n");
    for (size_t i = 0; i < N_KDF; i++)
        printf("| %-22s | %12ld | %10.1f |\n", KDF_SETTINGS[i].name, kr[i].maxrss_kb,
               kr[i].unlock_ms);
    printf("\nsizeof(mqe2e_replay_window) = %zu B (fixed: bitmap for up to %u sequence numbers)\n",
           sizeof(mqe2e_replay_window), (unsigned)MQE2E_REPLAY_MAX_WIDTH);
    printf("sizeof(mqe2e_sender_key) = %zu B (cached in sodium_malloc slabs: 8 keys, "
           "then doubling)\n",
           sizeof(mqe2e_sender_key));
    printf("\nreceive path, %zu senders in one group, %u-byte payloads, %zu messages each:\n",
           sr.senders, PAYLOAD, sr.rounds);
    printf("  first message of a sender (derive key, new entry): %8.0f ns/message\n", sr.cold_ns);
    printf("  later messages, round robin over all senders:      %8.0f ns/message\n", sr.warm_ns);
    printf("  the same, replay checkpoints off:                  %8.0f ns/message\n",
           sr.warm_nockpt_ns);
    printf("  same count from a single sender (reference):       %8.0f ns/message\n",
           sr.single_ns);

    if (json != NULL) {
        FILE *f = fopen(json, "w");
        if (f == NULL) die("fopen json", -1);
        fprintf(f, "{\n  \"benchmark\": \"memory\",\n  \"mqe2e_version\": \"%s\",\n",
                mqe2e_version());
        fprintf(f, "  \"smoke\": %s,\n  \"method\": \"mallinfo2 delta + interposed "
                   "sodium_malloc, per object over many objects\",\n",
                smoke ? "true" : "false");
        fprintf(f, "  \"sizeof_replay_window\": %zu,\n  \"sizeof_sender_key\": %zu,\n",
                sizeof(mqe2e_replay_window), sizeof(mqe2e_sender_key));
        fprintf(f, "  \"groups\": %zu,\n  \"senders\": %zu,\n  \"channels\": %zu,\n", gr.groups,
                sr.senders, cr.channels);
        fprintf(f, "  \"per_object\": {\n");
        print_per(f, "group_keystore", &gr.keystore, ",");
        print_per(f, "group_protector_cache", &gr.protector, ",");
        print_per(f, "sender_receive_cache", &sr.without_checkpoints, ",");
        print_per(f, "sender_cache_and_checkpoint", &sr.with_checkpoints, ",");
        print_per(f, "channel_initiator", &cr.initiator, ",");
        print_per(f, "channel_responder", &cr.responder, ",");
        print_per(f, "gateway_session_keystore", &gw.keystore, ",");
        print_per(f, "gateway_session_first_send", &gw.first_send, "");
        fprintf(f, "  },\n  \"gateway_sessions\": %zu,\n  \"gateway_rss_kb_per_session\": %.1f,\n  \"unlock\": [\n",
                gw.sessions, gw.rss_kb);
        for (size_t i = 0; i < N_KDF; i++)
            fprintf(f,
                    "    {\"setting\": \"%s\", \"opslimit\": %llu, \"memlimit\": %llu, "
                    "\"peak_rss_kb\": %ld, \"unlock_ms\": %.1f}%s\n",
                    KDF_SETTINGS[i].name, (unsigned long long)KDF_SETTINGS[i].opslimit,
                    (unsigned long long)KDF_SETTINGS[i].memlimit, kr[i].maxrss_kb,
                    kr[i].unlock_ms, i + 1U < N_KDF ? "," : "");
        fprintf(f, "  ],\n  \"many_senders\": {\"senders\": %zu, \"messages_per_sender\": %zu, "
                   "\"payload_bytes\": %u, \"first_message_ns\": %.1f, \"steady_ns\": %.1f, "
                   "\"steady_no_checkpoints_ns\": %.1f, \"single_sender_ns\": %.1f}\n}\n",
                sr.senders, sr.rounds, PAYLOAD, sr.cold_ns, sr.warm_ns, sr.warm_nockpt_ns,
                sr.single_ns);
        if (fclose(f) != 0) die("write json", -1);
    }
    return 0;
}
