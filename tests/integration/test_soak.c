/*
 * Soak: many encrypted publishing sessions through one real Mosquitto for a
 * bounded time, legitimate traffic only.
 *
 * 1,000 mqe2e_MQTTAsync clients (one TCP connection, one keystore and one
 * sender id each) in 4 groups publish at a paced aggregate rate (QoS 0, and
 * every 4th message of each sender at QoS 1) to 4 encrypted subscribers, one
 * per group filter, for MQE2E_SOAK_SECONDS (default 60). Every ~5 s the test
 * samples its own and the broker's RSS, open file descriptors and threads.
 *
 * What must hold (none of it is a timing assertion: the pacing only shapes
 * the load, every wait has a generous deadline):
 *  - no message is dropped by a subscriber, for any reason (auth, replay,
 *    decode, ...), and nothing unexpected reaches the application;
 *  - every QoS 1 message whose PUBACK arrived is delivered, and no message
 *    reaches the application twice;
 *  - no connection is lost, no send is refused;
 *  - file descriptors (test process and broker) do not change at all
 *    between "all sessions connected" and the end of the run, and return to
 *    the baseline once everything is disconnected and destroyed;
 *  - resident memory is flat after a warm-up (see RSS_GROWTH_* below).
 *
 * Knobs (environment): MQE2E_SOAK_SECONDS, MQE2E_SOAK_SESSIONS (>= 4),
 * MQE2E_SOAK_RATE (messages per second, all sessions together). Defaults:
 * 60 s, 1,000 sessions, 2,000 msg/s; in an AddressSanitizer build 20 s and
 * 300 msg/s (see DEFAULT_RATE).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "mqe2e/MQTTAsync.h"
#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define SOAK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SOAK_ASAN 1
#endif
#endif
#ifndef SOAK_ASAN
#define SOAK_ASAN 0
#endif

#define GROUPS 4
#define DEFAULT_SESSIONS 1000
#if SOAK_ASAN
/* Under the sanitizer job's options (fast_unwind_on_malloc=0) every malloc,
 * Paho's included, costs a full unwind: the same 1,000 sessions, at a rate
 * the instrumented receive path keeps up with, for a shorter time. */
#define DEFAULT_SECONDS 20
#define DEFAULT_RATE 300
#else
#define DEFAULT_SECONDS 60
#define DEFAULT_RATE 2000
#endif
#define SAMPLE_MS 5000L
#define WARMUP_SECONDS 15
#define PAYLOAD_BYTES 64
#define WAIT_MS 30000L
#define MAGIC 0x4b414f53U /* "SOAK" */

/*
 * "Flat": from the first sample after the warm-up to the last one, the test
 * process's RSS may grow by less than 4 MiB and less than 10 % of that
 * first sample. The warm-up covers what every session allocates once (its
 * first send sizes its key cache; Paho's buffers and glibc's per-thread
 * arenas settle). A steady per-message leak is what this guards against: at
 * the default load 90,000 messages pass after the warm-up, so a leak of
 * 48 bytes or more per message (a message struct, a topic copy, an envelope
 * buffer) crosses the bound, while the growth measured in clean runs stays
 * under 0.5 MiB. The broker (about 10 MiB) gets 8 MiB: its RSS also keeps
 * the high-water mark of messages momentarily queued for a subscriber that
 * fell behind, which is load, not a leak.
 */
#define RSS_GROWTH_MAX_KIB (4L * 1024L)
#define BROKER_RSS_GROWTH_MAX_KIB (8L * 1024L)
#define RSS_GROWTH_MAX_PERCENT 10L

static long env_long(const char *name, long def, long min)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0') return def;
    char *end = NULL;
    long x = strtol(v, &end, 10);
    cr_assert(end != NULL && *end == '\0' && x >= min, "%s=%s: expected an integer >= %ld", name, v,
              min);
    return x;
}

/* ---------- /proc probes ---------- */

/* A "Key:   N kB" (or plain N) field of /proc/<pid>/status; -1 if absent. */
static long proc_status_field(pid_t pid, const char *key)
{
    char path[64], line[256];
    size_t klen = strlen(key);
    long v = -1;

    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) return -1;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            v = strtol(line + klen + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

/* Open descriptors of @p pid, not counting the one this count itself uses. */
static int fd_count(pid_t pid)
{
    char path[64];
    int n = 0;

    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL) return -1;
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
        if (e->d_name[0] != '.') n++;
    }
    closedir(d);
    return pid == getpid() ? n - 1 : n;
}

typedef struct sample {
    long t_ms; /* since the publishing started */
    long rss_kib, broker_rss_kib;
    int fds, broker_fds;
    long threads;
    uint64_t sent, received;
} sample;

/* ---------- sessions ---------- */

typedef struct sender {
    mqe2e_MQTTAsync c;
    mqe2e_keystore *ks;
    int group;
    uint32_t next; /* application-level message number */
    char id[32];
    char topic[48];
} sender;

typedef struct subscriber {
    mqe2e_MQTTAsync c;
    mqe2e_keystore *ks;
    int group;
    pthread_mutex_t m;
    uint64_t received, received_q1, duplicates, unexpected, dropped;
    int first_drop_code;
    char id[32];
    char filter[32];
} subscriber;

static tb_broker broker;
static long n_sessions, seconds, rate;
static uint32_t cap; /* messages per sender at most */
static sender *senders;
static subscriber subs[GROUPS];
static mqe2e_policy *policies[GROUPS];
static uint8_t secrets[GROUPS][MQE2E_GROUP_SECRET_BYTES];

/* Per (sender, message number): the QoS it was sent with (+1, 0 = not sent),
 * PUBACK seen, times delivered to the application. */
static uint8_t *sent_qos;
static _Atomic uint8_t *acked;
static uint8_t *seen;

static atomic_long connects_ok, connects_failed, subs_ok, subs_failed;
static atomic_long acks, send_failures, lost, disconnects_ok;

static size_t slot(long s, uint32_t k)
{
    return (size_t)s * cap + k;
}

static void on_connect_ok(void *ctx, MQTTAsync_successData *d)
{
    (void)ctx;
    (void)d;
    atomic_fetch_add(&connects_ok, 1);
}

static void on_connect_failed(void *ctx, MQTTAsync_failureData *d)
{
    const char *id = ctx;
    printf("  connect %s failed: %d %s\n", id, d != NULL ? d->code : 0,
           d != NULL && d->message != NULL ? d->message : "");
    atomic_fetch_add(&connects_failed, 1);
}

static void on_sub_ok(void *ctx, MQTTAsync_successData *d)
{
    (void)ctx;
    (void)d;
    atomic_fetch_add(&subs_ok, 1);
}

static void on_sub_failed(void *ctx, MQTTAsync_failureData *d)
{
    (void)ctx;
    (void)d;
    atomic_fetch_add(&subs_failed, 1);
}

/* QoS 1 PUBACK: the context is the (sender, message) slot of `acked`. */
static void on_send_ok(void *ctx, MQTTAsync_successData *d)
{
    (void)d;
    atomic_store((_Atomic uint8_t *)ctx, 1);
    atomic_fetch_add(&acks, 1);
}

static void on_send_failed(void *ctx, MQTTAsync_failureData *d)
{
    (void)ctx;
    printf("  send failed: %d\n", d != NULL ? d->code : 0);
    atomic_fetch_add(&send_failures, 1);
}

static void on_lost(void *ctx, char *cause)
{
    const char *id = ctx;
    printf("  connection lost: %s (%s)\n", id, cause != NULL ? cause : "");
    atomic_fetch_add(&lost, 1);
}

static void on_disc_ok(void *ctx, MQTTAsync_successData *d)
{
    (void)ctx;
    (void)d;
    atomic_fetch_add(&disconnects_ok, 1);
}

static void on_disc_failed(void *ctx, MQTTAsync_failureData *d)
{
    const char *id = ctx;
    printf("  disconnect %s failed: %d\n", id, d != NULL ? d->code : 0);
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static int on_message(void *ctx, char *topic, int topicLen, MQTTAsync_message *msg)
{
    subscriber *sb = ctx;
    const uint8_t *p = msg->payload;
    int ok = 0;
    (void)topicLen;

    pthread_mutex_lock(&sb->m);
    sb->received++;
    if (msg->payloadlen == PAYLOAD_BYTES && rd32(p) == MAGIC) {
        uint32_t s = rd32(p + 4), k = rd32(p + 8);
        int qos = p[12];
        if ((long)s < n_sessions && k < cap && senders[s].group == sb->group &&
            strcmp(topic, senders[s].topic) == 0 && qos == msg->qos &&
            sent_qos[slot((long)s, k)] == (uint8_t)(qos + 1)) {
            ok = 1;
            if (seen[slot((long)s, k)]++ != 0) sb->duplicates++;
            if (qos == 1) sb->received_q1++;
        }
    }
    if (!ok) sb->unexpected++;
    pthread_mutex_unlock(&sb->m);
    mqe2e_MQTTAsync_freeMessage(&msg);
    mqe2e_MQTTAsync_free(topic);
    return 1;
}

static void on_dropped(void *ctx, const char *topic, int code)
{
    subscriber *sb = ctx;
    (void)topic;
    pthread_mutex_lock(&sb->m);
    if (sb->dropped++ == 0) sb->first_drop_code = code;
    pthread_mutex_unlock(&sb->m);
}

static mqe2e_keystore *make_keystore(const char *id, uint32_t sender_id, int group)
{
    mqe2e_storage st;
    mqe2e_keystore *ks = NULL;
    char gid[16], filter[32];

    snprintf(gid, sizeof gid, "g%d", group);
    snprintf(filter, sizeof filter, "soak/g%d/#", group);
    cr_assert_eq(mqe2e_storage_memory(&st), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_create(&ks, st, id, sender_id), MQE2E_OK);
    cr_assert_eq(
        mqe2e_keystore_group_add_epoch(ks, gid, filter, 1, secrets[group], (uint64_t)time(NULL)),
        MQE2E_OK);
    return ks;
}

/* Create, secure and start connecting one client (onSuccess counts). */
static mqe2e_MQTTAsync start_client(const char *id, mqe2e_keystore *ks, int group, subscriber *sb)
{
    mqe2e_MQTTAsync c = NULL;
    mqe2e_MQTTAsync_securityOptions so = mqe2e_MQTTAsync_securityOptions_initializer;
    MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;

    cr_assert_eq(
        mqe2e_MQTTAsync_create(&c, tb_broker_uri(&broker), id, MQTTCLIENT_PERSISTENCE_NONE, NULL),
        MQTTASYNC_SUCCESS);
    so.keystore = ks;
    so.policy = policies[group];
    if (sb != NULL) {
        so.onDropped = on_dropped;
        so.context = sb;
    }
    cr_assert_eq(mqe2e_MQTTAsync_setSecurity(c, &so), MQTTASYNC_SUCCESS);
    if (sb != NULL)
        cr_assert_eq(mqe2e_MQTTAsync_setCallbacks(c, sb, NULL, on_message, NULL),
                     MQTTASYNC_SUCCESS);
    cr_assert_eq(mqe2e_MQTTAsync_setConnectionLostCallback(c, (void *)(uintptr_t)id, on_lost),
                 MQTTASYNC_SUCCESS);
    co.keepAliveInterval = 60;
    co.cleansession = 1;
    co.onSuccess = on_connect_ok;
    co.onFailure = on_connect_failed;
    co.context = (void *)(uintptr_t)id;
    int rc = mqe2e_MQTTAsync_connect(c, &co);
    cr_assert_eq(rc, MQTTASYNC_SUCCESS, "connect %s: %s", id, mqe2e_MQTTAsync_strerror(rc));
    return c;
}

static int wait_count(atomic_long *v, long n, const atomic_long *failed)
{
    long deadline = tu_now_ms() + WAIT_MS;
    while (atomic_load(v) < n) {
        if (failed != NULL && atomic_load(failed) > 0) return 0;
        if (tu_now_ms() > deadline) return 0;
        tu_sleep_ms(10);
    }
    return 1;
}

typedef struct totals {
    uint64_t received, received_q1, duplicates, unexpected, dropped;
} totals;

static totals subs_totals(void)
{
    totals t;
    memset(&t, 0, sizeof t);
    for (int g = 0; g < GROUPS; g++) {
        pthread_mutex_lock(&subs[g].m);
        t.received += subs[g].received;
        t.received_q1 += subs[g].received_q1;
        t.duplicates += subs[g].duplicates;
        t.unexpected += subs[g].unexpected;
        t.dropped += subs[g].dropped;
        pthread_mutex_unlock(&subs[g].m);
    }
    return t;
}

static sample take_sample(const char *label, long t0, uint64_t sent)
{
    sample s;
    s.t_ms = tu_now_ms() - t0;
    s.rss_kib = proc_status_field(getpid(), "VmRSS");
    s.threads = proc_status_field(getpid(), "Threads");
    s.fds = fd_count(getpid());
    s.broker_rss_kib = proc_status_field(broker.pid, "VmRSS");
    s.broker_fds = fd_count(broker.pid);
    s.sent = sent;
    s.received = subs_totals().received;
    printf("  %s t=%5.1fs sent=%llu received=%llu rss=%ld KiB broker_rss=%ld KiB fds=%d "
           "broker_fds=%d threads=%ld\n",
           label, (double)s.t_ms / 1000.0, (unsigned long long)s.sent,
           (unsigned long long)s.received, s.rss_kib, s.broker_rss_kib, s.fds, s.broker_fds,
           s.threads);
    fflush(stdout);
    return s;
}

/* ---------- fixture ---------- */

static void setup(void)
{
    struct rlimit rl;

    cr_assert_eq(mqe2e_init(), MQE2E_OK);
    n_sessions = env_long("MQE2E_SOAK_SESSIONS", DEFAULT_SESSIONS, GROUPS);
    seconds = env_long("MQE2E_SOAK_SECONDS", DEFAULT_SECONDS, 1);
    rate = env_long("MQE2E_SOAK_RATE", DEFAULT_RATE, 1);
    /* One socket per session here and one in the broker, which inherits
     * this limit. */
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max != RLIM_INFINITY) {
        rl.rlim_cur = rl.rlim_max;
    } else if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 65536) {
        rl.rlim_cur = 65536;
    }
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    cr_assert(rl.rlim_cur >= (rlim_t)(n_sessions + GROUPS + 256),
              "RLIMIT_NOFILE limit %llu is too low for %ld sessions",
              (unsigned long long)rl.rlim_cur, n_sessions);

    for (int g = 0; g < GROUPS; g++) {
        char filter[32], gid[16];
        randombytes_buf(secrets[g], sizeof secrets[g]);
        snprintf(filter, sizeof filter, "soak/g%d/#", g);
        snprintf(gid, sizeof gid, "g%d", g);
        cr_assert_eq(mqe2e_policy_new(&policies[g]), MQE2E_OK);
        cr_assert_eq(mqe2e_policy_add(policies[g], filter, MQE2E_POLICY_GROUP, gid), MQE2E_OK);
    }
    memset(&broker, 0, sizeof broker);
    /* Subscribers must never lose a QoS 1 message to the broker's default
     * 1,000-message queue limit: what is measured is the client. */
    broker.extra_conf = "max_queued_messages 1000000";
    cr_assert_eq(tb_broker_start(&broker), 0, "mosquitto did not start");
}

static void teardown(void)
{
    tb_broker_stop(&broker);
    for (int g = 0; g < GROUPS; g++) {
        mqe2e_policy_free(policies[g]);
        policies[g] = NULL;
    }
    sodium_memzero(secrets, sizeof secrets);
}

TestSuite(soak, .init = setup, .fini = teardown);

Test(soak, many_sessions_bounded_time_no_drops_flat_memory_no_fd_growth)
{
    long total_target = seconds * rate;
    cap = (uint32_t)(total_target / n_sessions + 8);
    size_t slots = (size_t)n_sessions * cap;
    /* Short runs (the sanitizer job) warm up for a quarter of the time. */
    long warmup_ms =
        seconds * 250L < WARMUP_SECONDS * 1000L ? seconds * 250L : WARMUP_SECONDS * 1000L;
    size_t max_samples = (size_t)(seconds * 1000L / SAMPLE_MS) + 4;
    size_t n_samples = 0;

    printf("soak: %ld sessions in %d groups, %d subscribers, %ld msg/s for %ld s%s\n", n_sessions,
           GROUPS, GROUPS, rate, seconds, SOAK_ASAN ? " (ASan build)" : "");
    senders = calloc((size_t)n_sessions, sizeof *senders);
    sent_qos = calloc(slots, 1);
    acked = calloc(slots, sizeof *acked);
    seen = calloc(slots, 1);
    sample *samples = calloc(max_samples, sizeof *samples);
    cr_assert(senders != NULL && sent_qos != NULL && acked != NULL && seen != NULL &&
              samples != NULL);

    int fds_baseline = fd_count(getpid());
    int broker_fds_baseline = fd_count(broker.pid);
    long threads_baseline = proc_status_field(getpid(), "Threads");
    printf("soak: baseline fds=%d broker_fds=%d threads=%ld\n", fds_baseline, broker_fds_baseline,
           threads_baseline);

    /* Subscribers first, so nothing published is missed. */
    for (int g = 0; g < GROUPS; g++) {
        subscriber *sb = &subs[g];
        memset(sb, 0, sizeof *sb);
        pthread_mutex_init(&sb->m, NULL);
        sb->group = g;
        snprintf(sb->id, sizeof sb->id, "soak-sub%d", g);
        snprintf(sb->filter, sizeof sb->filter, "soak/g%d/#", g);
        sb->ks = make_keystore(sb->id, (uint32_t)(0x800000 + g), g);
        sb->c = start_client(sb->id, sb->ks, g, sb);
    }
    cr_assert(wait_count(&connects_ok, GROUPS, &connects_failed), "subscribers did not connect");
    for (int g = 0; g < GROUPS; g++) {
        MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
        ro.onSuccess = on_sub_ok;
        ro.onFailure = on_sub_failed;
        cr_assert_eq(mqe2e_MQTTAsync_subscribe(subs[g].c, subs[g].filter, 1, &ro),
                     MQTTASYNC_SUCCESS);
    }
    cr_assert(wait_count(&subs_ok, GROUPS, &subs_failed), "subscriptions failed");

    /* Publishers: all connects queued at once. Paho 1.3 serialises them on
     * its send thread and waits up to a second between rounds, so batches
     * would each cost about that much (eclipse-paho/paho.mqtt.c#1430). */
    long t_connect = tu_now_ms();
    for (long i = 0; i < n_sessions; i++) {
        sender *s = &senders[i];
        s->group = (int)(i % GROUPS);
        snprintf(s->id, sizeof s->id, "soak-p%05ld", i);
        snprintf(s->topic, sizeof s->topic, "soak/g%d/p%05ld", s->group, i);
        /* Explicit, distinct sender ids: a derived 24-bit id could collide
         * among a thousand clients. */
        s->ks = make_keystore(s->id, (uint32_t)(i + 1), s->group);
        s->c = start_client(s->id, s->ks, s->group, NULL);
    }
    cr_assert(wait_count(&connects_ok, GROUPS + n_sessions, &connects_failed),
              "publishers did not connect (%ld of %ld)", atomic_load(&connects_ok) - GROUPS,
              n_sessions);
    printf("soak: %ld publishers connected in %.1f s\n", n_sessions,
           (double)(tu_now_ms() - t_connect) / 1000.0);

    /* Everything is connected: from here on no descriptor may appear. */
    long t0 = tu_now_ms();
    samples[n_samples++] = take_sample("connected", t0, 0);
    sample connected = samples[0];

    /* Paced publishing: each pass tops the total up to where the clock says
     * it should be, round-robin over the sessions. */
    long next_sample = t0 + SAMPLE_MS;
    uint64_t sent = 0, sent_q1 = 0, refused = 0;
    long rr = 0;
    uint8_t payload[PAYLOAD_BYTES];
    randombytes_buf(payload, sizeof payload);
    wr32(payload, MAGIC);
    for (;;) {
        long now = tu_now_ms();
        if (now >= next_sample && n_samples < max_samples) {
            samples[n_samples++] = take_sample("sample", t0, sent);
            next_sample += SAMPLE_MS;
        }
        if (now - t0 >= seconds * 1000L) break;
        long target = (now - t0) * rate / 1000L;
        /* A machine too slow for the rate still stops on time. */
        while ((long)sent < target && ((sent & 127U) != 0 || tu_now_ms() - t0 < seconds * 1000L)) {
            sender *s = &senders[rr];
            uint32_t k = s->next++;
            int qos = k % 4 == 3 ? 1 : 0;
            MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
            cr_assert_lt(k, cap, "sender %ld ran past its %u slots", rr, cap);
            wr32(payload + 4, (uint32_t)rr);
            wr32(payload + 8, k);
            payload[12] = (uint8_t)qos;
            sent_qos[slot(rr, k)] = (uint8_t)(qos + 1);
            if (qos == 1) {
                ro.onSuccess = on_send_ok;
                ro.onFailure = on_send_failed;
                ro.context = (void *)&acked[slot(rr, k)];
            }
            int rc = mqe2e_MQTTAsync_send(s->c, s->topic, PAYLOAD_BYTES, payload, qos, 0,
                                          qos == 1 ? &ro : NULL);
            if (rc != MQTTASYNC_SUCCESS) {
                if (refused++ == 0)
                    printf("  send refused: %d %s\n", rc, mqe2e_MQTTAsync_strerror(rc));
                sent_qos[slot(rr, k)] = 0;
            } else if (qos == 1) {
                sent_q1++;
            }
            sent++;
            rr = (rr + 1) % n_sessions;
        }
        tu_sleep_ms(5);
    }
    long t_end = tu_now_ms();
    sent -= refused;

    /* Drain: every QoS 1 acknowledged, then everything that will arrive. */
    long deadline = tu_now_ms() + WAIT_MS;
    while ((uint64_t)atomic_load(&acks) + (uint64_t)atomic_load(&send_failures) < sent_q1 &&
           tu_now_ms() < deadline)
        tu_sleep_ms(20);
    uint64_t last = UINT64_MAX;
    for (int quiet = 0; quiet < 10 && tu_now_ms() < deadline;) {
        uint64_t r = subs_totals().received;
        if (r >= sent) break;
        quiet = r == last ? quiet + 1 : 0;
        last = r;
        tu_sleep_ms(100);
    }
    if (n_samples < max_samples) samples[n_samples++] = take_sample("drained", t0, sent);
    sample end = samples[n_samples - 1];

    /* Delivery checks. */
    totals tot = subs_totals();
    uint64_t received = tot.received, received_q1 = tot.received_q1, dups = tot.duplicates;
    uint64_t unexpected = tot.unexpected, dropped_cb = tot.dropped;
    uint64_t acked_not_received = 0, sealed = 0, opened = 0;
    uint64_t by_reason[MQE2E_DROP_REASON_COUNT] = {0};
    for (long s = 0; s < n_sessions; s++) {
        for (uint32_t k = 0; k < senders[s].next; k++) {
            if (atomic_load(&acked[slot(s, k)]) && seen[slot(s, k)] == 0) acked_not_received++;
        }
        mqe2e_counters kc;
        cr_assert_eq(mqe2e_MQTTAsync_getCounters(senders[s].c, &kc), MQTTASYNC_SUCCESS);
        sealed += kc.sealed;
    }
    for (int g = 0; g < GROUPS; g++) {
        mqe2e_counters kc;
        cr_assert_eq(mqe2e_MQTTAsync_getCounters(subs[g].c, &kc), MQTTASYNC_SUCCESS);
        opened += kc.opened;
        for (int r = 0; r < MQE2E_DROP_REASON_COUNT; r++)
            by_reason[r] += kc.dropped[r];
    }

    /* Memory: first sample at or after the warm-up against the last one. */
    size_t first = 0;
    while (first + 1 < n_samples && samples[first].t_ms < warmup_ms)
        first++;
    long growth = end.rss_kib - samples[first].rss_kib;
    long broker_growth = end.broker_rss_kib - samples[first].broker_rss_kib;

    printf("soak summary: sessions=%ld subscribers=%d seconds=%ld rate=%ld/s "
           "sent=%llu (qos1=%llu acked=%ld refused=%llu) sealed=%llu received=%llu "
           "(qos1=%llu) opened=%llu duplicates=%llu unexpected=%llu acked_not_received=%llu "
           "lost=%ld\n",
           n_sessions, GROUPS, seconds, rate, (unsigned long long)sent, (unsigned long long)sent_q1,
           atomic_load(&acks), (unsigned long long)refused, (unsigned long long)sealed,
           (unsigned long long)received, (unsigned long long)received_q1,
           (unsigned long long)opened, (unsigned long long)dups, (unsigned long long)unexpected,
           (unsigned long long)acked_not_received, atomic_load(&lost));
    printf("soak drops:");
    for (int r = 0; r < MQE2E_DROP_REASON_COUNT; r++)
        printf(" %s=%llu", mqe2e_drop_reason_name((mqe2e_drop_reason)r),
               (unsigned long long)by_reason[r]);
    printf(" (onDropped calls=%llu", (unsigned long long)dropped_cb);
    for (int g = 0; g < GROUPS; g++) {
        pthread_mutex_lock(&subs[g].m);
        if (subs[g].dropped > 0)
            printf("; %s first: %s", subs[g].id, mqe2e_error_name(subs[g].first_drop_code));
        pthread_mutex_unlock(&subs[g].m);
    }
    printf(")\n");
    printf("soak rss KiB (test):");
    for (size_t i = 0; i < n_samples; i++)
        printf(" %ld", samples[i].rss_kib);
    printf("\nsoak rss KiB (broker):");
    for (size_t i = 0; i < n_samples; i++)
        printf(" %ld", samples[i].broker_rss_kib);
    printf("\nsoak rss growth from t=%.1f s to the end: test %+ld KiB, broker %+ld KiB "
           "(bounds: test < %ld KiB and < %ld %%, broker < %ld KiB)%s\n",
           (double)samples[first].t_ms / 1000.0, growth, broker_growth, RSS_GROWTH_MAX_KIB,
           RSS_GROWTH_MAX_PERCENT, BROKER_RSS_GROWTH_MAX_KIB,
           SOAK_ASAN ? " [test process not asserted under ASan]" : "");
    printf("soak fds: baseline=%d connected=%d end=%d; broker baseline=%d connected=%d "
           "end=%d; threads connected=%ld end=%ld; publishing %.1f s\n",
           fds_baseline, connected.fds, end.fds, broker_fds_baseline, connected.broker_fds,
           end.broker_fds, connected.threads, end.threads, (double)(t_end - t0) / 1000.0);
    fflush(stdout);

    cr_expect_eq(refused, 0, "%llu sends refused", (unsigned long long)refused);
    cr_expect_eq(atomic_load(&send_failures), 0, "QoS 1 sends failed");
    cr_expect_eq(atomic_load(&lost), 0, "connections lost");
    cr_expect_eq(sealed, sent, "sealed %llu of %llu", (unsigned long long)sealed,
                 (unsigned long long)sent);
    cr_expect_eq((uint64_t)atomic_load(&acks), sent_q1, "QoS 1 acknowledged %ld of %llu",
                 atomic_load(&acks), (unsigned long long)sent_q1);
    for (int r = 0; r < MQE2E_DROP_REASON_COUNT; r++)
        cr_expect_eq(by_reason[r], 0, "subscribers dropped %llu messages as %s",
                     (unsigned long long)by_reason[r],
                     mqe2e_drop_reason_name((mqe2e_drop_reason)r));
    cr_expect_eq(dropped_cb, 0, "onDropped called %llu times", (unsigned long long)dropped_cb);
    cr_expect_eq(unexpected, 0, "%llu unexpected messages reached the application",
                 (unsigned long long)unexpected);
    cr_expect_eq(dups, 0, "%llu duplicates reached the application", (unsigned long long)dups);
    cr_expect_eq(acked_not_received, 0, "%llu acknowledged QoS 1 messages never arrived",
                 (unsigned long long)acked_not_received);
    cr_expect_eq(opened, received, "opened %llu, delivered %llu", (unsigned long long)opened,
                 (unsigned long long)received);
    cr_expect_geq(received_q1, sent_q1);
    cr_expect_gt(received, 0);
    for (size_t i = 0; i < n_samples; i++) {
        cr_expect_eq(samples[i].fds, connected.fds, "test fds %d at t=%ld ms, %d when connected",
                     samples[i].fds, samples[i].t_ms, connected.fds);
        cr_expect_eq(samples[i].broker_fds, connected.broker_fds,
                     "broker fds %d at t=%ld ms, %d when connected", samples[i].broker_fds,
                     samples[i].t_ms, connected.broker_fds);
    }
    if (!SOAK_ASAN) {
        /* ASan's quarantine holds freed blocks back (256 MiB by default):
         * the test process's RSS only means something without it. */
        cr_expect_lt(growth, RSS_GROWTH_MAX_KIB, "test RSS grew %ld KiB after warm-up", growth);
        cr_expect_lt(growth * 100L, samples[first].rss_kib * RSS_GROWTH_MAX_PERCENT,
                     "test RSS grew %ld KiB of %ld after warm-up", growth, samples[first].rss_kib);
    }
    cr_expect_lt(broker_growth, BROKER_RSS_GROWTH_MAX_KIB, "broker RSS grew %ld KiB after warm-up",
                 broker_growth);

    /* Tear down: everything disconnects, then every handle goes. */
    long t_down = tu_now_ms();
    atomic_store(&disconnects_ok, 0);
    for (long i = 0; i < n_sessions + GROUPS; i++) {
        mqe2e_MQTTAsync c = i < n_sessions ? senders[i].c : subs[i - n_sessions].c;
        MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
        d.timeout = 2000;
        d.onSuccess = on_disc_ok;
        d.onFailure = on_disc_failed;
        d.context = i < n_sessions ? senders[i].id : subs[i - n_sessions].id;
        cr_expect_eq(mqe2e_MQTTAsync_disconnect(c, &d), MQTTASYNC_SUCCESS);
    }
    cr_expect(wait_count(&disconnects_ok, n_sessions + GROUPS, NULL),
              "only %ld of %ld sessions disconnected", atomic_load(&disconnects_ok),
              n_sessions + GROUPS);
    for (long i = 0; i < n_sessions; i++) {
        mqe2e_MQTTAsync_destroy(&senders[i].c);
        mqe2e_keystore_close(senders[i].ks);
    }
    for (int g = 0; g < GROUPS; g++) {
        mqe2e_MQTTAsync_destroy(&subs[g].c);
        mqe2e_keystore_close(subs[g].ks);
        pthread_mutex_destroy(&subs[g].m);
    }
    /* The broker closes its side on its own schedule: wait for it. */
    int broker_fds_after = fd_count(broker.pid);
    for (long dl = tu_now_ms() + WAIT_MS; broker_fds_after != broker_fds_baseline && tu_now_ms() < dl;) {
        tu_sleep_ms(50);
        broker_fds_after = fd_count(broker.pid);
    }
    int fds_after = fd_count(getpid());
    printf("soak teardown: %.1f s; fds after=%d (baseline %d), broker fds after=%d (baseline "
           "%d), threads after=%ld, rss after=%ld KiB\n",
           (double)(tu_now_ms() - t_down) / 1000.0, fds_after, fds_baseline, broker_fds_after,
           broker_fds_baseline, proc_status_field(getpid(), "Threads"),
           proc_status_field(getpid(), "VmRSS"));
    fflush(stdout);
    cr_expect_eq(fds_after, fds_baseline, "test fds %d after teardown, %d before", fds_after,
                 fds_baseline);
    cr_expect_eq(broker_fds_after, broker_fds_baseline, "broker fds %d after teardown, %d before",
                 broker_fds_after, broker_fds_baseline);

    free(samples);
    free(seen);
    free((void *)acked);
    free(sent_qos);
    free(senders);
    senders = NULL;
}
