/*
 * A flood of CHANNEL step 1 frames (Noise_XX message 1) at one client's inbox.
 * Step 1 carries no identity, so anyone with broker access can send it, and
 * each one answered costs the responder DH work and handshake state. Real
 * Mosquitto (unlimited queues), the real `mqe2e authority run` process, two
 * clients enrolled with `mqe2e enroll` on the encrypted Paho front, and an
 * attacker that is a plain Paho client: it publishes valid-looking step 1
 * frames (fresh ephemeral keys, thousands of distinct claimed ids, some
 * claiming the legitimate peer) as fast as it can while the legitimate peer
 * opens a channel and sends commands.
 *
 * Checked: every command is delivered; the victim stays connected; its RSS
 * stays bounded; and every step 1 frame the victim received is accounted for
 * exactly: answered (a step 2 seen on the wire) + channel_rate_limited +
 * handshakes_failed (the broker runs with unlimited queues, so this is an
 * equality). Prints "channel flood: injected N ... limited L refused F
 * answered A delivered D ...".
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "authority_fixture.h"
#include "broker.h"
#include "fleet_fixture.h"
#include "inbox.h"
#include "mqe2e/MQTTClient.h"
#include "mqe2e/control.h"
#include "mqe2e/credential.h"
#include "spy.h"
#include "testutil.h"

#define PREFIX "mqe2e"
#define AUTH_ID "authority"
#define WAIT_MS 15000L
#define MAXMSG 64

/* ------------------------------------------------------------ fixture */

static af_fixture fx;

static MQTTClient raw_connect(const char *id, void *ctx, MQTTClient_messageArrived *ma)
{
    return ts_raw_connect(tb_broker_uri(&fx.broker), id, ctx, ma);
}

static void setup(void)
{
    memset(&fx, 0, sizeof fx);
    /* Unlimited queues: every frame the attacker publishes reaches the victim,
     * which makes the accounting below an equality. */
    fx.broker.extra_conf = "max_queued_messages 0";
    af_fleet_setup(&fx, AUTH_ID);
}

static void teardown(void)
{
    af_fleet_teardown(&fx);
}

TestSuite(channel_flood, .init = setup, .fini = teardown, .timeout = 180);

/* ------------------------------------------------------------ clients */

static void on_log(void *ctx, mqe2e_log_level level, const char *message)
{
    (void)ctx;
    if (getenv("FLOOD_DEBUG"))
        printf("  %ld log[%d] %s\n", af_now_ms() % 100000L, (int)level, message);
}

#define WAIT_CTL(c, field, n) AF_WAIT_CTL(c, field, n, WAIT_MS)

static mqe2e_MQTTClient enc_client(const char *id, mqe2e_keystore *ks, const mqe2e_policy *policy,
                                   inbox *ib)
{
    return af_fleet_client(&fx, id, ks, policy, ib, on_log);
}

/* ------------------------------------------------------------ flood */

#define VICTIM "switch-1"
#define PEER "backend"
#define INJECT 5000
#define COMMANDS 20
#define RSS_SLACK_KIB (16L * 1024L)

static long rss_kib(void)
{
    char line[256];
    long v = -1;
    FILE *f = fopen("/proc/self/status", "r");
    cr_assert_not_null(f);
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0) v = strtol(line + 6, NULL, 10);
    fclose(f);
    cr_assert_gt(v, 0);
    return v;
}

static mqe2e_policy *channel_policy(const char *filter, const char *peer)
{
    mqe2e_policy *p = NULL;
    cr_assert_eq(mqe2e_policy_new(&p), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add(p, filter, MQE2E_POLICY_CHANNEL, peer), MQE2E_OK);
    return p;
}

/* Spy frames from index `from` on: step 1 on the victim's inbox (anyone) and
 * step 2 sent by the victim (to any inbox). */
static void spy_channel_frames(size_t from, size_t *step1, size_t *step2)
{
    const char *inbox_topic = PREFIX "/client/" VICTIM;
    const char *inboxes = PREFIX "/client/";
    size_t end = ts_spy_count();
    *step1 = *step2 = 0;
    for (size_t i = from; i < end; i++) {
        spy_msg s = ts_spy_get(i);
        mqe2e_control_frame f;
        if (strncmp(s.topic, inboxes, strlen(inboxes)) == 0 &&
            mqe2e_control_frame_decode(&f, s.data, s.len) == MQE2E_OK &&
            f.kind == MQE2E_CONTROL_CHANNEL) {
            if (f.step == 1 && strcmp(s.topic, inbox_topic) == 0) (*step1)++;
            if (f.step == 2 && strcmp(f.from, VICTIM) == 0) (*step2)++;
        }
        free(s.data);
    }
}

typedef struct flood {
    pthread_t t;
    MQTTClient r;
    int published; /* frames handed to Paho so far */
    int failed;
    long done_ms; /* when the broker had acknowledged them all */
} flood;

static uint8_t frames[INJECT][512];
static size_t lens[INJECT];

/* A genuine Noise_XX message 1 claiming `from`: built with the core's own
 * initiator over throwaway keys (step 1 sends no credential). */
static size_t forged_step1(uint8_t *out, size_t cap, const char *from)
{
    uint8_t dh[32], auth_pub[32], cred[8];
    mqe2e_channel_config cfg;
    mqe2e_channel *ch = NULL;
    size_t len = 0;
    randombytes_buf(dh, sizeof dh);
    randombytes_buf(auth_pub, sizeof auth_pub);
    randombytes_buf(cred, sizeof cred);
    memset(&cfg, 0, sizeof cfg);
    cfg.prefix = PREFIX;
    cfg.local_id = from;
    cfg.local_dh_secret = dh;
    cfg.local_credential = cred;
    cfg.local_credential_len = sizeof cred;
    cfg.authority_sign_public = auth_pub;
    cfg.peer_id = VICTIM;
    if (mqe2e_channel_initiate(&ch, out, cap, &len, &cfg, 0) != MQE2E_OK) len = 0;
    mqe2e_channel_free(ch);
    return len;
}

/* Frames and connection made before the RSS baseline: only the victim's
 * growth is measured (the attacker is in the same process). */
static void flood_prepare(flood *fl)
{
    for (int i = 0; i < INJECT; i++) {
        char from[32];
        /* One in ten claims the legitimate peer; the rest are all distinct. */
        if (i % 10 == 0)
            snprintf(from, sizeof from, "%s", PEER);
        else
            snprintf(from, sizeof from, "ghost-%d", i);
        lens[i] = forged_step1(frames[i], sizeof frames[i], from);
        cr_assert_gt(lens[i], 0);
    }
    MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer;
    cr_assert_eq(MQTTClient_create(&fl->r, tb_broker_uri(&fx.broker), "attacker",
                                   MQTTCLIENT_PERSISTENCE_NONE, NULL),
                 MQTTCLIENT_SUCCESS);
    co.cleansession = 1;
    co.maxInflightMessages = 65535;
    cr_assert_eq(MQTTClient_connect(fl->r, &co), MQTTCLIENT_SUCCESS);
}

static void *flood_run(void *arg)
{
    flood *fl = arg;
    MQTTClient r = fl->r;
    MQTTClient_deliveryToken dt = 0;
    for (int i = 0; i < INJECT; i++) {
        int rc;
        while ((rc = MQTTClient_publish(r, PREFIX "/client/" VICTIM, (int)lens[i], frames[i], 1, 0,
                                        &dt)) == MQTTCLIENT_MAX_MESSAGES_INFLIGHT)
            af_sleep_ms(1);
        if (rc != MQTTCLIENT_SUCCESS) fl->failed++;
        __atomic_store_n(&fl->published, i + 1, __ATOMIC_SEQ_CST);
    }
    if (MQTTClient_waitForCompletion(r, dt, 60000) != MQTTCLIENT_SUCCESS) fl->failed++;
    fl->done_ms = af_now_ms();
    return NULL;
}

Test(channel_flood, step1_flood_during_commands)
{
    af_fleet_enroll(&fx, PEER);
    af_fleet_enroll(&fx, VICTIM);
    mqe2e_keystore *kb = af_open_ks(&fx, PEER), *kv = af_open_ks(&fx, VICTIM);
    mqe2e_policy *pb = channel_policy("cmd/" VICTIM, VICTIM);
    mqe2e_policy *pv = channel_policy("cmd/" VICTIM, PEER);
    inbox ib, iv;
    mqe2e_MQTTClient victim = enc_client(VICTIM, kv, pv, &iv);
    mqe2e_MQTTClient back = enc_client(PEER, kb, pb, &ib);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(victim, "cmd/" VICTIM, 1), MQTTCLIENT_SUCCESS);
    /* HELLO done on both sides: no channel yet. */
    WAIT_CTL(victim, handshakes_ok, 1);
    WAIT_CTL(back, handshakes_ok, 1);

    flood fl;
    memset(&fl, 0, sizeof fl);
    flood_prepare(&fl);
    mqe2e_control_counters k0 = af_ctl_counters(victim);
    size_t s0 = ts_spy_count();
    long rss0 = rss_kib();
    long t0 = af_now_ms();
    cr_assert_eq(pthread_create(&fl.t, NULL, flood_run, &fl), 0);
    long dl = af_now_ms() + WAIT_MS;
    while (__atomic_load_n(&fl.published, __ATOMIC_SEQ_CST) < INJECT / 10) {
        cr_assert_lt(af_now_ms(), dl, "attacker did not start");
        af_sleep_ms(1);
    }
    /* The legitimate peer opens its channel and sends, in the middle of it. */
    for (int i = 0; i < COMMANDS; i++) {
        char cmd[16];
        snprintf(cmd, sizeof cmd, "cmd-%d", i);
        af_publish_text(back, "cmd/" VICTIM, cmd);
        af_sleep_ms(20);
    }
    long deadline = af_now_ms() + 30000L;
    while (inbox_count(&iv) < COMMANDS && af_now_ms() < deadline)
        af_sleep_ms(10);
    long delivered_ms = af_now_ms() - t0;
    cr_assert_eq(pthread_join(fl.t, NULL), 0);
    MQTTClient_disconnect(fl.r, 1000);
    MQTTClient_destroy(&fl.r);
    cr_assert_eq(fl.failed, 0, "attacker: %d failures", fl.failed);
    cr_assert_eq(inbox_count(&iv), COMMANDS, "delivered %d of %d", inbox_count(&iv), COMMANDS);
    for (int i = 0; i < COMMANDS; i++) {
        char cmd[16];
        int hits = 0;
        snprintf(cmd, sizeof cmd, "cmd-%d", i);
        for (int j = 0; j < COMMANDS; j++)
            hits += strcmp(iv.payload[j], cmd) == 0;
        cr_assert_eq(hits, 1, "%s delivered %d times", cmd, hits);
    }
    cr_assert(mqe2e_MQTTClient_isConnected(victim));

    /* Every step 1 the victim got is either answered (its step 2 is on the
     * wire), refused by the rate limit, or refused by the handshake. The
     * spy and the victim see the frames at slightly different times: wait
     * until both sides agree. */
    size_t step1 = 0, step2 = 0;
    uint64_t limited = 0, failed = 0;
    deadline = af_now_ms() + 30000L;
    for (;;) {
        mqe2e_control_counters k = af_ctl_counters(victim);
        limited = k.channel_rate_limited - k0.channel_rate_limited;
        failed = k.handshakes_failed - k0.handshakes_failed;
        spy_channel_frames(s0, &step1, &step2);
        if (step1 >= INJECT && step1 == limited + failed + step2) break;
        if (af_now_ms() > deadline) break;
        af_sleep_ms(50);
    }
    long elapsed = af_now_ms() - t0;
    long rss1 = rss_kib();
    printf("channel flood: injected %d (step 1 on the wire %zu) limited %llu refused %llu "
           "answered %zu delivered %d (flood acknowledged after %ld ms, commands delivered "
           "after %ld ms, accounting closed after %ld ms), RSS %ld -> %ld KiB\n",
           INJECT, step1, (unsigned long long)limited, (unsigned long long)failed, step2,
           inbox_count(&iv), fl.done_ms - t0, delivered_ms, elapsed, rss0, rss1);
    fflush(stdout);
    /* The attacker's frames plus the peer's own step 1 (one or a few retries). */
    cr_assert_geq(step1, (size_t)INJECT + 1U);
    cr_assert_eq(step1, limited + failed + step2,
                 "step 1 %zu != limited %llu + refused %llu + "
                 "answered %zu",
                 step1, (unsigned long long)limited, (unsigned long long)failed, step2);
    /* Every forged frame is a valid message 1: none fails the handshake. */
    cr_assert_eq(failed, 0);
    /* The budget: a burst of 100, then 50 per second, over the whole run. */
    cr_assert_leq(step2, 100U + 50U * (size_t)(elapsed / 1000L + 1L), "answered %zu", step2);
    cr_assert_gt(limited, (uint64_t)(INJECT / 2));
    if (!TU_ASAN) cr_assert_leq(rss1, rss0 + RSS_SLACK_KIB, "RSS %ld -> %ld KiB", rss0, rss1);

    /* The channel still works after the flood. */
    af_publish_text(back, "cmd/" VICTIM, "after");
    cr_assert(inbox_wait(&iv, 0, COMMANDS + 1, WAIT_MS));
    cr_assert(mqe2e_MQTTClient_isConnected(victim));

    mqe2e_MQTTClient_disconnect(back, 1000);
    mqe2e_MQTTClient_destroy(&back);
    mqe2e_MQTTClient_disconnect(victim, 1000);
    mqe2e_MQTTClient_destroy(&victim);
    mqe2e_policy_free(pb);
    mqe2e_policy_free(pv);
    mqe2e_keystore_close(kb);
    mqe2e_keystore_close(kv);
}
