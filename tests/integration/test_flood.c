/*
 * A flood of handshake initiations against the real authority process through
 * a real Mosquitto: garbage, ENROLL step 1 for unknown ids and for ids that
 * hold tokens the attacker does not have, HELLO step 1 for unknown ids and
 * spoofing enrolled ids, 20,000 frames as fast as one Paho connection sends
 * them, while legitimate devices enroll and complete HELLO.
 *
 * Asserted: every legitimate device enrolls and completes HELLO within 30 s
 * of the flood's start (a liveness bound, not a timing benchmark); the
 * attacker gets no success; the authority keeps running and its peak RSS
 * stays bounded; and every frame is counted exactly once. The broker runs
 * with no queue limit (max_queued_messages 0), so it drops nothing and the
 * accounting is an equality:
 *
 *   sum of the authority's frame counters (after - before)
 *     = frames the attacker got PUBACKs for + legitimate frames + status requests
 *
 * With a queue limit the broker would drop what overflows the authority's
 * session and the equality would become "sum >= injected - dropped" (the
 * broker's $SYS/broker/publish/messages/dropped).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <MQTTClient.h>
#include <cjson/cJSON.h>
#include <sodium.h>

#include "authority_fixture.h"
#include "broker.h"
#include "mailbox.h"
#include "mqe2e/control.h"
#include "mqe2e/credential.h"
#include "mqe2e/error.h"
#include "mqe2e/operator.h"
#include "testutil.h"

#define PREFIX "mqe2e"
#define AUTH_ID "authority-flood"
#define OUT_MAX (1024U * 1024U)

#define N_LEGIT 5
#define N_DECOY_TOKENS 50  /* ids holding tokens the attacker does not know */
#define N_DECOY_CLIENTS 20 /* enrolled ids whose HELLO the attacker spoofs */
#define INJECT 20000
#define LIVENESS_S 30.0
#define RETRY_S 3.0
/* The global bucket is set low so that the flood reaches it too. */
#define LIMITS "300,300,20,10,4096"

static af_fixture fx;
static mailbox box; /* subscribed to P/client/#: the devices' shared transport */
static unsigned status_reads;

static double mono(void)
{
    return af_mono();
}

static void sleep_ms(long ms)
{
    af_sleep_ms(ms);
}

static int op(char *out, size_t cap, const char *const *args)
{
    return af_op(&fx, out, cap, args);
}

static long proc_kb(const char *field)
{
    char path[64], line[256];
    long kb = -1;
    size_t fl = strlen(field);
    snprintf(path, sizeof path, "/proc/%d/status", (int)fx.auth_pid);
    FILE *f = fopen(path, "r");
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, field, fl) == 0 && sscanf(line + fl, ": %ld", &kb) == 1) break;
    if (f != NULL) fclose(f);
    return kb;
}

static void setup(void)
{
    memset(&fx, 0, sizeof fx);
    /* No queue limit: the broker drops nothing, the accounting is exact. */
    fx.broker.extra_conf = "max_queued_messages 0";
    fx.op_wait = "60";
    af_setup(&fx, AUTH_ID);
    const char *limits[] = {"--handshake-limits", LIMITS, NULL};
    af_authority_start(&fx, limits);

    mb_open(&box, tb_broker_uri(&fx.broker), "tester", PREFIX "/client/#");
}

static void teardown(void)
{
    mb_close(&box);
    af_teardown(&fx);
}

/* ----------------------------------------------------------- counters */

/* Counters of frames on P/authority: each such frame ends in exactly one. */
static const char *const frame_counters[] = {"enroll_ok",
                                             "enroll_bad_frame",
                                             "enroll_unknown_token",
                                             "enroll_bad_mac",
                                             "enroll_token_used",
                                             "enroll_token_expired",
                                             "enroll_wrong_client",
                                             "enroll_failed",
                                             "enroll_rate_limited",
                                             "hello_ok",
                                             "hello_bad_frame",
                                             "hello_unknown_client",
                                             "hello_bad_static",
                                             "hello_revoked",
                                             "hello_failed",
                                             "hello_rate_limited",
                                             "operator_ok",
                                             "operator_bad_frame",
                                             "operator_unknown",
                                             "operator_bad_signature",
                                             "operator_stale",
                                             "operator_replay",
                                             "frame_unknown",
                                             NULL};

static cJSON *status_json(void)
{
    static char out[OUT_MAX];
    const char *a[] = {"status", "--json", NULL};
    cr_assert_eq(op(out, sizeof out, a), 0);
    status_reads++;
    cJSON *j = cJSON_Parse(out);
    cr_assert_not_null(j, "status output: %s", out);
    return j;
}

static double cval(const cJSON *j, const char *name)
{
    cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "counters"), name);
    return cJSON_IsNumber(c) ? c->valuedouble : 0;
}

static double frames_total(const cJSON *j)
{
    double t = 0;
    for (size_t i = 0; frame_counters[i] != NULL; i++)
        t += cval(j, frame_counters[i]);
    return t;
}

/* ------------------------------------------------------------ mailbox */

/* Remove and return the first message for client_id (1), or 0. */
static int take(mail *out, const char *client_id)
{
    char topic[512];
    snprintf(topic, sizeof topic, PREFIX "/client/%s", client_id);
    return mb_take(&box, out, topic, 0);
}

static void publish_tester(const uint8_t *p, size_t n)
{
    mb_publish(&box, PREFIX "/authority", p, n);
}

/* ------------------------------------------------------------ devices */

typedef struct device {
    char id[64];
    char ticket[2048];
    uint8_t dh_sk[32], dh_pk[32], sign_pk[32], sign_sk[64];
    uint64_t serial;
    mqe2e_enroll_device *est;
    mqe2e_hello_client *hst;
    double sent_at;
    int enrolled, helloed;
} device;

static unsigned legit_sent;

static void device_init(device *d, const char *ticket)
{
    mqe2e_ticket t;
    memset(d, 0, sizeof *d);
    snprintf(d->ticket, sizeof d->ticket, "%s", ticket);
    cr_assert_eq(mqe2e_ticket_decode(&t, ticket), MQE2E_OK);
    snprintf(d->id, sizeof d->id, "%s", t.client_id);
    mqe2e_ticket_wipe(&t);
    crypto_box_keypair(d->dh_pk, d->dh_sk);
    crypto_sign_keypair(d->sign_pk, d->sign_sk);
}

static void enroll_send(device *d)
{
    mqe2e_ticket t;
    uint8_t frame[MQE2E_CONTROL_MAX_FRAME_BYTES];
    size_t len = 0;
    cr_assert_eq(mqe2e_ticket_decode(&t, d->ticket), MQE2E_OK);
    mqe2e_enroll_device_free(d->est);
    cr_assert_eq(mqe2e_enroll_begin(&d->est, frame, sizeof frame, &len, &t, d->dh_sk, d->sign_pk,
                                    (uint64_t)time(NULL)),
                 MQE2E_OK);
    mqe2e_ticket_wipe(&t);
    publish_tester(frame, len);
    d->sent_at = mono();
    legit_sent++;
}

static void hello_send(device *d)
{
    uint8_t frame[MQE2E_CONTROL_MAX_FRAME_BYTES];
    size_t len = 0;
    mqe2e_hello_client_free(d->hst);
    cr_assert_eq(mqe2e_hello_begin(&d->hst, frame, sizeof frame, &len, PREFIX, d->id, AUTH_ID,
                                   d->dh_sk, fx.pin.dh_public, d->serial),
                 MQE2E_OK);
    publish_tester(frame, len);
    d->sent_at = mono();
    legit_sent++;
}

/* Drive every device through ENROLL then HELLO (resending unanswered steps
 * every RETRY_S, as the plugin does) until all are done or the deadline. */
static int run_devices(device *d, size_t n, double deadline)
{
    for (size_t i = 0; i < n; i++)
        enroll_send(&d[i]);
    size_t done = 0;
    while (done < n && mono() < deadline) {
        mb_pump(&box, 20);
        for (size_t i = 0; i < n; i++) {
            device *x = &d[i];
            mail m;
            if (x->helloed) continue;
            while (take(&m, x->id)) {
                mqe2e_control_update r;
                if (!x->enrolled) {
                    mqe2e_credential *cred = NULL;
                    int rc =
                        mqe2e_enroll_finish(x->est, &r, &cred, m.data, m.len, (uint64_t)time(NULL));
                    if (rc == MQE2E_OK) {
                        x->serial = mqe2e_credential_serial(cred);
                        x->enrolled = 1;
                        mqe2e_control_update_wipe(&r);
                        hello_send(x);
                    } else {
                        /* Only a late reply to an earlier attempt is acceptable here. */
                        cr_assert_eq(rc, MQE2E_ERR_STATE, "enroll of %s: %s", x->id,
                                     mqe2e_strerror(rc));
                    }
                    mqe2e_credential_free(cred);
                } else {
                    int rc = mqe2e_hello_finish(x->hst, &r, m.data, m.len);
                    if (rc == MQE2E_OK) {
                        cr_assert_eq(r.status, MQE2E_STATUS_OK);
                        cr_assert_geq(r.n_bundles, 1);
                        mqe2e_control_update_wipe(&r);
                        x->helloed = 1;
                        done++;
                    } else {
                        cr_assert_eq(rc, MQE2E_ERR_STATE, "hello of %s: %s", x->id,
                                     mqe2e_strerror(rc));
                    }
                }
                mail_free(&m);
                if (x->helloed) break;
            }
            if (!x->helloed && mono() - x->sent_at >= RETRY_S) {
                if (!x->enrolled)
                    enroll_send(x);
                else
                    hello_send(x);
            }
        }
    }
    return done == n;
}

static void device_free(device *d)
{
    mqe2e_enroll_device_free(d->est);
    mqe2e_hello_client_free(d->hst);
    sodium_memzero(d, sizeof *d);
}

/* ----------------------------------------------------------- attacker */

typedef struct frame {
    uint8_t *p;
    size_t n;
} frame;

static frame *pool;
static size_t pool_n;
static long injected_ok, injected_sent;
static double flood_seconds;

static void pool_add(const uint8_t *p, size_t n)
{
    pool[pool_n].p = malloc(n);
    cr_assert_not_null(pool[pool_n].p);
    memcpy(pool[pool_n].p, p, n);
    pool[pool_n].n = n;
    pool_n++;
}

static void enroll_forged(const char *client_id)
{
    mqe2e_ticket t;
    mqe2e_enroll_device *st = NULL;
    uint8_t frame_buf[MQE2E_CONTROL_MAX_FRAME_BYTES], sk[32], spk[32], ssk[64];
    size_t len = 0;
    memset(&t, 0, sizeof t);
    memcpy(t.authority_sign_public, fx.pin.sign_public, 32);
    memcpy(t.authority_dh_public, fx.pin.dh_public, 32);
    snprintf(t.authority_id, sizeof t.authority_id, "%s", AUTH_ID);
    snprintf(t.control_prefix, sizeof t.control_prefix, "%s", PREFIX);
    randombytes_buf(t.token_id, sizeof t.token_id);
    randombytes_buf(t.token, sizeof t.token);
    snprintf(t.client_id, sizeof t.client_id, "%s", client_id);
    t.expires_at = (uint64_t)time(NULL) + 3600U;
    randombytes_buf(sk, sizeof sk);
    crypto_sign_keypair(spk, ssk);
    cr_assert_eq(mqe2e_enroll_begin(&st, frame_buf, sizeof frame_buf, &len, &t, sk, spk,
                                    (uint64_t)time(NULL)),
                 MQE2E_OK);
    mqe2e_enroll_device_free(st);
    pool_add(frame_buf, len);
}

static void hello_forged(const char *client_id)
{
    mqe2e_hello_client *st = NULL;
    uint8_t frame_buf[MQE2E_CONTROL_MAX_FRAME_BYTES], sk[32];
    size_t len = 0;
    randombytes_buf(sk, sizeof sk);
    cr_assert_eq(mqe2e_hello_begin(&st, frame_buf, sizeof frame_buf, &len, PREFIX, client_id,
                                   AUTH_ID, sk, fx.pin.dh_public, 1),
                 MQE2E_OK);
    mqe2e_hello_client_free(st);
    pool_add(frame_buf, len);
}

static void build_pool(void)
{
    char id[64];
    pool = calloc(2048, sizeof *pool);
    cr_assert_not_null(pool);
    for (int i = 0; i < 256; i++) { /* garbage */
        uint8_t g[512];
        size_t n = 1U + randombytes_uniform(400);
        randombytes_buf(g, n);
        pool_add(g, n);
    }
    for (int i = 0; i < 300; i++) { /* ENROLL for ids no token names */
        snprintf(id, sizeof id, "bogus-%d", i);
        enroll_forged(id);
    }
    for (int i = 0; i < 250; i++) { /* ENROLL for ids whose token the attacker lacks */
        snprintf(id, sizeof id, "decoy-%d", i % N_DECOY_TOKENS + 1);
        enroll_forged(id);
    }
    for (int i = 0; i < 200; i++) { /* HELLO for ids never enrolled */
        snprintf(id, sizeof id, "ghost-%d", i);
        hello_forged(id);
    }
    for (int i = 0; i < 200; i++) { /* HELLO spoofing enrolled ids, wrong static key */
        snprintf(id, sizeof id, "dh-%d", i % N_DECOY_CLIENTS + 1);
        hello_forged(id);
    }
}

static void *attacker(void *arg)
{
    (void)arg;
    MQTTClient c;
    MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer;
    co.cleansession = 1;
    co.maxInflightMessages = 65535;
    if (MQTTClient_create(&c, tb_broker_uri(&fx.broker), "attacker", MQTTCLIENT_PERSISTENCE_NONE,
                          NULL) != MQTTCLIENT_SUCCESS ||
        MQTTClient_connect(c, &co) != MQTTCLIENT_SUCCESS)
        return NULL;
    double t0 = mono();
    for (long i = 0; i < INJECT; i++) {
        const frame *f = &pool[randombytes_uniform((uint32_t)pool_n)];
        MQTTClient_deliveryToken tok;
        if (MQTTClient_publish(c, PREFIX "/authority", (int)f->n, f->p, 1, 0, &tok) ==
            MQTTCLIENT_SUCCESS)
            injected_sent++;
    }
    flood_seconds = mono() - t0;
    /* Injected = what the broker acknowledged. */
    long pending = 0;
    for (int i = 0; i < 600; i++) {
        MQTTClient_deliveryToken *toks = NULL;
        pending = 0;
        if (MQTTClient_getPendingDeliveryTokens(c, &toks) == MQTTCLIENT_SUCCESS && toks != NULL) {
            while (toks[pending] != -1)
                pending++;
            MQTTClient_free(toks);
        }
        if (pending == 0) break;
        MQTTClient_yield();
        sleep_ms(50);
    }
    injected_ok = injected_sent - pending;
    MQTTClient_disconnect(c, 1000);
    MQTTClient_destroy(&c);
    return NULL;
}

/* -------------------------------------------------------------- test */

TestSuite(flood, .init = setup, .fini = teardown, .timeout = 600);

Test(flood, handshake_flood_is_limited_and_legit_devices_keep_working)
{
    static char out[OUT_MAX];
    char *lines[N_DECOY_CLIENTS + N_LEGIT + 8];
    device legit[N_LEGIT], dh[N_DECOY_CLIENTS];

    const char *gc[] = {"group", "create", "--group", "fleet", "--topic", "fleet/#", NULL};
    cr_assert_eq(op(out, sizeof out, gc), 0);
    const char *td[] = {"token", "create", "--id", "decoy", "--count", "50", NULL};
    cr_assert_eq(op(out, sizeof out, td), 0);
    const char *th[] = {"token", "create", "--id", "dh", "--count", "20", "--group", "fleet", NULL};
    cr_assert_eq(op(out, sizeof out, th), 0);
    size_t nl = 0;
    for (char *save = NULL, *l = strtok_r(out, "\n", &save); l != NULL && nl < N_DECOY_CLIENTS;
         l = strtok_r(NULL, "\n", &save))
        lines[nl++] = l;
    cr_assert_eq(nl, N_DECOY_CLIENTS);
    for (size_t i = 0; i < N_DECOY_CLIENTS; i++)
        device_init(&dh[i], lines[i]);
    /* The spoofed ids are really enrolled (before the flood). */
    cr_assert(run_devices(dh, N_DECOY_CLIENTS, mono() + 60.0), "decoy clients did not enroll");
    const char *tl[] = {"token", "create",  "--id",           "dev", "--count", "5", "--group",
                        "fleet", "--grant", "fleet/#:pubsub", NULL};
    cr_assert_eq(op(out, sizeof out, tl), 0);
    nl = 0;
    for (char *save = NULL, *l = strtok_r(out, "\n", &save); l != NULL && nl < N_LEGIT;
         l = strtok_r(NULL, "\n", &save))
        lines[nl++] = l;
    cr_assert_eq(nl, N_LEGIT);
    for (size_t i = 0; i < N_LEGIT; i++)
        device_init(&legit[i], lines[i]);
    build_pool();

    cJSON *before = status_json();
    double t_before = frames_total(before);
    double ok_enroll0 = cval(before, "enroll_ok"), ok_hello0 = cval(before, "hello_ok");
    cJSON_Delete(before);
    long rss0 = proc_kb("VmRSS");
    legit_sent = 0;

    pthread_t th_att;
    double t0 = mono();
    cr_assert_eq(pthread_create(&th_att, NULL, attacker, NULL), 0);
    sleep_ms(300); /* the flood is under way */
    int live = run_devices(legit, N_LEGIT, t0 + LIVENESS_S);
    double legit_s = mono() - t0;
    pthread_join(th_att, NULL);
    cr_assert(live, "legitimate devices not done within %.0f s of the flood's start", LIVENESS_S);
    cr_assert_eq(injected_sent, INJECT);
    cr_assert_eq(injected_ok, INJECT, "the broker acknowledged %ld of %d", injected_ok, INJECT);

    /* Wait until the authority drained its session: only our own status
     * request moves the total between two reads. */
    cJSON *j = NULL;
    double prev = -1, total = 0;
    for (int i = 0; i < 120; i++) {
        if (j != NULL) cJSON_Delete(j);
        j = status_json();
        total = frames_total(j);
        if (prev >= 0 && total == prev + 1) break;
        prev = total;
        sleep_ms(500);
    }
    long hwm = proc_kb("VmHWM");
    int st = 0;
    cr_assert_eq(waitpid(fx.auth_pid, &st, WNOHANG), 0, "the authority exited");

    double refused = 0;
    for (size_t i = 0; frame_counters[i] != NULL; i++)
        if (strstr(frame_counters[i], "_ok") == NULL) refused += cval(j, frame_counters[i]);
    double rate_limited = cval(j, "enroll_rate_limited") + cval(j, "hello_rate_limited");
    double unknown = cval(j, "enroll_unknown_token") + cval(j, "hello_unknown_client");
    double dh_path = cval(j, "hello_bad_static");
    fprintf(stderr,
            "flood: %d frames injected in %.2f s; legit %d devices enrolled + hello in %.2f s "
            "(%u frames); authority counted %.0f frames: refused %.0f (rate_limited %.0f, "
            "unknown id before any DH %.0f, hello_bad_static %.0f, frame_unknown %.0f, "
            "operator_bad_frame %.0f, enroll_unknown_token %.0f), log lines suppressed %.0f; "
            "RSS %ld kB before, peak %ld kB\n",
            INJECT, flood_seconds, N_LEGIT, legit_s, legit_sent, total - t_before, refused,
            rate_limited, unknown, dh_path, cval(j, "frame_unknown"), cval(j, "operator_bad_frame"),
            cval(j, "enroll_unknown_token"), cval(j, "log_suppressed"), rss0, hwm);

    /* No success for the attacker: successes are at most the legitimate
     * frames (a resent step is served again), so every injected frame was
     * refused; and each device succeeded at least once per step. */
    double ok_enroll = cval(j, "enroll_ok") - ok_enroll0,
           ok_hello = cval(j, "hello_ok") - ok_hello0;
    cr_assert_geq(ok_enroll, N_LEGIT);
    cr_assert_geq(ok_hello, N_LEGIT);
    cr_assert_leq(ok_enroll + ok_hello, legit_sent);
    cr_assert_geq(refused, (double)injected_ok);
    cr_assert_eq(cval(j, "enroll_bad_mac"), 0);
    /* Every frame counted exactly once: the flood, the devices (retries
     * included), and the status requests since (and including) the first read. */
    cr_assert_eq(total - t_before, (double)injected_ok + legit_sent + (status_reads - 1U),
                 "counted %.0f, sent %ld + %u + %u", total - t_before, injected_ok, legit_sent,
                 status_reads - 1U);
    /* The limiter did refuse part of the flood that passed the cheap checks. */
    cr_assert_gt(rate_limited, 0);
    cr_assert_gt(unknown, 0);
    /* Bounded memory: the flood does not pile up inside the authority. */
    if (!TU_ASAN) cr_assert_lt(hwm - rss0, 32 * 1024, "peak RSS grew by %ld kB", hwm - rss0);
    cJSON_Delete(j);

    for (size_t i = 0; i < N_LEGIT; i++)
        device_free(&legit[i]);
    for (size_t i = 0; i < N_DECOY_CLIENTS; i++)
        device_free(&dh[i]);
    for (size_t i = 0; i < pool_n; i++)
        free(pool[i].p);
    free(pool);
    mb_clear(&box);
}

/* The limits flag is checked before anything is opened. */
Test(flood_cli, handshake_limits_flag_refused_when_malformed)
{
    const char *bad[] = {"1,2",         "1,2,3",  "a,2,3,4",        "1,2,3,4,2", "-1,2,3,4",
                         "1,2,3,4,5,6", "1,,3,4", "99999999,1,1,1", "1,2,3,4,",  NULL};
    for (size_t i = 0; bad[i] != NULL; i++) {
        const char *a[] = {"authority",          "run",  "--db", "/nonexistent/db",
                           "--handshake-limits", bad[i], NULL};
        cr_assert_eq(af_run(NULL, 0, a), 1, "'%s' accepted", bad[i]);
    }
}
