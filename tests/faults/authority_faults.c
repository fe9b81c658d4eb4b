/*
 * Authority and device faults against a real Mosquitto, the real
 * `mqe2e authority run` process and real Paho:
 *
 *   kill9_mid_rotation   a 300-member group is rotated and the authority is
 *                        stopped (SIGSTOP, then SIGKILL) after the k-th push
 *                        reached the wire, for five values of k; it is
 *                        restarted on the same database. The epoch in the
 *                        database is the one being pushed, every member ends
 *                        up holding it (pushed, or fetched with HELLO after
 *                        the restart), no member ever holds two secrets for
 *                        one epoch, and the next rotation's pushes are
 *                        accepted by every member (push_seq never goes back).
 *                        Members are simulated with the core's control calls
 *                        over one raw Paho connection.
 *   offline_two_rotations_within_grace / _past_grace
 *                        an enrolled device (encrypted Paho front, persistent
 *                        session, QoS 1) is offline while its group is
 *                        rotated twice and a member publishes in each epoch.
 *                        Within the authority's grace it gets every message,
 *                        in order, once; with `--grace 2` and the first
 *                        rotation older than that, the epoch-2 messages are
 *                        held, then dropped as no_key (never delivered) and
 *                        the epoch-3 ones delivered in order.
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

#include <MQTTClient.h>
#include <cjson/cJSON.h>

#include "authority_fixture.h"
#include "broker.h"
#include "inbox.h"
#include "mailbox.h"
#include "mqe2e/MQTTClient.h"
#include "mqe2e/control.h"
#include "mqe2e/credential.h"
#include "testutil.h"

#define PREFIX "mqe2e"
#define AUTH_ID "authority-faults"
#define OUT_MAX (1024U * 1024U)

/* ------------------------------------------------------------- fixture */

static af_fixture fx;
static const char *auth_grace = NULL; /* --grace for authority runs, NULL = default */

static int op(char *out, size_t cap, const char *const *args)
{
    return af_op(&fx, out, cap, args);
}

static void authority_start(void)
{
    const char *grace[] = {"--grace", auth_grace, NULL};
    af_authority_start(&fx, auth_grace != NULL ? grace : NULL);
}

static void authority_kill(int sig)
{
    af_authority_kill(&fx, sig);
}

static void fixture_start(void)
{
    memset(&fx, 0, sizeof fx);
    fx.broker.persistent = 1; /* the offline device's session and queue */
    af_setup(&fx, AUTH_ID);
}

static void fixture_stop(void)
{
    if (getenv("FAULTS_DEBUG")) {
        char cmd[700];
        snprintf(cmd, sizeof cmd, "tail -n 40 '%s'", fx.log);
        (void)system(cmd);
    }
    af_teardown(&fx);
}

static cJSON *status_json(void)
{
    static char out[OUT_MAX];
    const char *a[] = {"status", "--json", NULL};
    cr_assert_eq(op(out, sizeof out, a), 0);
    cJSON *j = cJSON_Parse(out);
    cr_assert_not_null(j, "status output: %s", out);
    return j;
}

static int group_epoch(const char *name)
{
    cJSON *j = status_json();
    cJSON *groups = cJSON_GetObjectItem(j, "groups"), *g = NULL;
    int e = -1;
    cJSON_ArrayForEach(g, groups)
    {
        cJSON *n = cJSON_GetObjectItem(g, "group");
        if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0)
            e = cJSON_GetObjectItem(g, "epoch")->valueint;
    }
    cJSON_Delete(j);
    return e;
}

TestSuite(authority_faults, .init = fixture_start, .fini = fixture_stop, .timeout = 240);

/* ======================================================================
 * kill -9 in the middle of a rotation
 * ====================================================================== */

#define N_MEMBERS 300
#define MAX_EPOCH 16

typedef struct member {
    char id[32];
    uint8_t dh_sk[32], dh_pk[32], sign_pk[32], sign_sk[64];
    uint64_t serial, last_push;
    mqe2e_enroll_device *est;
    mqe2e_hello_client *hst;
    uint8_t secret[MAX_EPOCH + 1][32]; /* per epoch, as received */
    int has[MAX_EPOCH + 1];
} member;

static member *mem;
static mailbox box; /* subscribed to P/client/#: every member's frames */

static member *member_of_topic(const char *topic)
{
    const char *p = PREFIX "/client/m-";
    if (strncmp(topic, p, strlen(p)) != 0) return NULL;
    int i = atoi(topic + strlen(p));
    return i >= 1 && i <= N_MEMBERS ? &mem[i - 1] : NULL;
}

/* Record what a member received for an epoch: two different secrets for
 * one epoch fail the test. */
static void member_hold(member *m, const mqe2e_key_bundle *b)
{
    cr_assert_leq(b->epoch, MAX_EPOCH);
    cr_assert_str_eq(b->group, "big");
    if (m->has[b->epoch])
        cr_assert_eq(sodium_memcmp(m->secret[b->epoch], b->secret, 32), 0,
                     "%s holds two secrets for epoch %u", m->id, b->epoch);
    memcpy(m->secret[b->epoch], b->secret, 32);
    m->has[b->epoch] = 1;
}

static void publish_raw(const char *topic, const uint8_t *p, size_t n)
{
    mb_publish(&box, topic, p, n);
}

static size_t stale_pushes;

/* Every box message that is a frame for a member: open it as a push. Returns
 * the number of pushes applied; others (hello replies) left in the box. With
 * allow_stale, a genuine push of a killed authority that arrives late, after
 * the member already learnt a push_seq at least as high by HELLO, is refused
 * as a replay, as it must be, and counted in stale_pushes; the member then
 * counts as not pushed and gets the epoch by HELLO. */
static size_t apply_pushes(uint32_t want_epoch, int *got, int allow_stale)
{
    size_t applied = 0, keep = 0;
    for (size_t i = 0; i < box.n; i++) {
        member *m = member_of_topic(box.v[i].topic);
        mqe2e_control_frame f;
        if (m == NULL || mqe2e_control_frame_decode(&f, box.v[i].data, box.v[i].len) != MQE2E_OK ||
            f.kind != MQE2E_CONTROL_PUSH) {
            box.v[keep++] = box.v[i];
            continue;
        }
        mqe2e_control_update u;
        int rc = mqe2e_push_open(&u, m->dh_sk, fx.pin.dh_public, PREFIX, AUTH_ID, box.v[i].data,
                                 box.v[i].len, m->last_push);
        if (rc == MQE2E_ERR_REPLAY && allow_stale) {
            stale_pushes++;
            free(box.v[i].topic);
            free(box.v[i].data);
            continue;
        }
        cr_assert_eq(rc, MQE2E_OK, "push to %s refused: %s", m->id, mqe2e_strerror(rc));
        m->last_push = u.push_seq;
        cr_assert_eq(u.n_bundles, 1);
        cr_assert_eq(u.bundles[0].epoch, want_epoch, "push of epoch %u", u.bundles[0].epoch);
        member_hold(m, &u.bundles[0]);
        got[m - mem] = 1;
        mqe2e_control_update_wipe(&u);
        applied++;
        free(box.v[i].topic);
        free(box.v[i].data);
    }
    box.n = keep;
    return applied;
}

static size_t count_pushes_in_box(void)
{
    size_t n = 0;
    for (size_t i = 0; i < box.n; i++)
        if (member_of_topic(box.v[i].topic) != NULL) n++;
    return n;
}

/* HELLO for the members in `which` (all when NULL), pipelined. */
static void hello_all(const int *which, uint32_t want_epoch)
{
    uint8_t frame[MQE2E_CONTROL_MAX_FRAME_BYTES];
    size_t sent = 0;
    for (int i = 0; i < N_MEMBERS; i++) {
        if (which != NULL && !which[i]) continue;
        size_t len = 0;
        cr_assert_eq(mqe2e_hello_begin(&mem[i].hst, frame, sizeof frame, &len, PREFIX, mem[i].id,
                                       AUTH_ID, mem[i].dh_sk, fx.pin.dh_public, mem[i].serial),
                     MQE2E_OK);
        publish_raw(PREFIX "/authority", frame, len);
        sent++;
    }
    size_t done = 0;
    double end = af_mono() + 60.0;
    while (done < sent) {
        cr_assert_lt(af_mono(), end, "%zu of %zu HELLOs answered", done, sent);
        mb_pump(&box, 50);
        size_t keep = 0;
        for (size_t k = 0; k < box.n; k++) {
            member *m = member_of_topic(box.v[k].topic);
            if (m == NULL || m->hst == NULL) {
                box.v[keep++] = box.v[k];
                continue;
            }
            mqe2e_control_update u;
            int rc = mqe2e_hello_finish(m->hst, &u, box.v[k].data, box.v[k].len);
            if (rc == MQE2E_ERR_STATE || rc == MQE2E_ERR_DECODE) {
                box.v[keep++] = box.v[k]; /* a late push: not this handshake */
                continue;
            }
            cr_assert_eq(rc, MQE2E_OK, "hello of %s: %s", m->id, mqe2e_strerror(rc));
            uint32_t top = 0;
            for (size_t b = 0; b < u.n_bundles; b++) {
                member_hold(m, &u.bundles[b]);
                if (u.bundles[b].epoch > top) top = u.bundles[b].epoch;
            }
            cr_assert_eq(top, want_epoch, "%s: HELLO hands out epoch %u", m->id, top);
            if (u.push_seq > m->last_push) m->last_push = u.push_seq;
            mqe2e_control_update_wipe(&u);
            mqe2e_hello_client_free(m->hst);
            m->hst = NULL;
            done++;
            free(box.v[k].topic);
            free(box.v[k].data);
        }
        box.n = keep;
    }
}

static pid_t rotate_async(void)
{
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        const char *rot[] = {"group", "rotate", "--group", "big", NULL};
        const char *all[] = {fx.cli,      rot[0],       rot[1],     rot[2], rot[3],  "-K",
                             fx.op_ks,    "--key-file", fx.keyfile, "-p",   fx.port, "--authority",
                             fx.pin_text, "-W",         "3",        NULL};
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execv(fx.cli, (char *const *)(uintptr_t)all);
        _exit(127);
    }
    return pid;
}

Test(authority_faults, kill9_mid_rotation)
{
    static char out[OUT_MAX];
    static char *lines[N_MEMBERS + 1];
    mem = calloc(N_MEMBERS, sizeof *mem);
    cr_assert_not_null(mem);
    authority_start();
    mb_open(&box, tb_broker_uri(&fx.broker), "members", PREFIX "/client/#");

    const char *gc[] = {"group", "create", "--group", "big", "--topic", "big/#", NULL};
    cr_assert_eq(op(out, sizeof out, gc), 0);
    char count[16];
    snprintf(count, sizeof count, "%d", N_MEMBERS);
    const char *tc[] = {"token", "create", "--id", "m", "--count", count, "--group", "big", NULL};
    cr_assert_eq(op(out, sizeof out, tc), 0);
    size_t nl = 0;
    for (char *save = NULL, *l = strtok_r(out, "\n", &save); l != NULL && nl <= N_MEMBERS;
         l = strtok_r(NULL, "\n", &save))
        lines[nl++] = l;
    cr_assert_eq(nl, N_MEMBERS);
    uint8_t frame[MQE2E_CONTROL_MAX_FRAME_BYTES];
    for (int i = 0; i < N_MEMBERS; i++) {
        member *m = &mem[i];
        snprintf(m->id, sizeof m->id, "m-%d", i + 1);
        crypto_box_keypair(m->dh_pk, m->dh_sk);
        crypto_sign_keypair(m->sign_pk, m->sign_sk);
        mqe2e_ticket t;
        size_t len = 0;
        cr_assert_eq(mqe2e_ticket_decode(&t, lines[i]), MQE2E_OK);
        cr_assert_str_eq(t.client_id, m->id);
        cr_assert_eq(mqe2e_enroll_begin(&m->est, frame, sizeof frame, &len, &t, m->dh_sk,
                                        m->sign_pk, af_now_s()),
                     MQE2E_OK);
        mqe2e_ticket_wipe(&t);
        publish_raw(PREFIX "/authority", frame, len);
    }
    size_t enrolled = 0;
    double end = af_mono() + 60.0;
    while (enrolled < N_MEMBERS) {
        cr_assert_lt(af_mono(), end, "%zu of %d enrolled", enrolled, N_MEMBERS);
        mb_pump(&box, 50);
        for (size_t k = 0; k < box.n; k++) {
            member *m = member_of_topic(box.v[k].topic);
            if (m == NULL || m->est == NULL) continue;
            mqe2e_control_update u;
            mqe2e_credential *cred = NULL;
            cr_assert_eq(
                mqe2e_enroll_finish(m->est, &u, &cred, box.v[k].data, box.v[k].len, af_now_s()),
                MQE2E_OK);
            m->serial = mqe2e_credential_serial(cred);
            mqe2e_credential_free(cred);
            cr_assert_eq(u.n_bundles, 1);
            member_hold(m, &u.bundles[0]);
            mqe2e_control_update_wipe(&u);
            mqe2e_enroll_device_free(m->est);
            m->est = NULL;
            enrolled++;
        }
        mb_clear(&box);
    }

    /* Kill points: SIGSTOP as soon as k pushes of the rotation are on the
     * wire (the authority freezes mid-loop), then SIGKILL. */
    static const size_t kill_after[] = {1, 40, 120, 200, 280};
    int got[N_MEMBERS];
    uint32_t epoch = 1;
    for (size_t round = 0; round < sizeof kill_after / sizeof kill_after[0]; round++) {
        memset(got, 0, sizeof got);
        epoch++;
        pid_t rot = rotate_async();
        end = af_mono() + 20.0;
        while (count_pushes_in_box() < kill_after[round]) {
            cr_assert_lt(af_mono(), end, "rotation %u: no pushes", epoch);
            mb_pump(&box, 5);
        }
        kill(fx.auth_pid, SIGSTOP);
        /* Drain what the broker already has from it. */
        double quiet = af_mono() + 0.5;
        while (af_mono() < quiet)
            mb_pump(&box, 20);
        authority_kill(SIGKILL);
        waitpid(rot, NULL, 0);
        size_t pushed = apply_pushes(epoch, got, 1);
        printf("kill9_mid_rotation: rotation to epoch %u, SIGKILL after %zu pushes seen "
               "(%zu of %d members pushed before the kill)\n",
               epoch, kill_after[round], pushed, N_MEMBERS);
        fflush(stdout);
        cr_assert_geq(pushed, kill_after[round]);

        authority_start();
        cr_assert_eq(group_epoch("big"), (int)epoch, "the database lost or repeated a rotation");
        /* Members that missed the push fetch the epoch with HELLO; so do a
         * few that got it, to compare secrets. */
        int ask[N_MEMBERS];
        size_t missing = 0;
        for (int i = 0; i < N_MEMBERS; i++) {
            ask[i] = !got[i] || i % 25 == 0;
            if (!got[i]) missing++;
        }
        hello_all(ask, epoch);
        /* Anything the restarted authority pushed on its own is applied too. */
        quiet = af_mono() + 0.3;
        while (af_mono() < quiet)
            mb_pump(&box, 20);
        size_t repushed = apply_pushes(epoch, got, 1);
        printf("kill9_mid_rotation: after restart %zu members fetched epoch %u by HELLO, "
               "%zu pushes applied late, %zu stale pushes refused as replays\n",
               missing, epoch, repushed, stale_pushes);
        /* Every member holds the epoch, all with one secret. */
        for (int i = 0; i < N_MEMBERS; i++) {
            cr_assert(mem[i].has[epoch], "%s never got epoch %u", mem[i].id, epoch);
            cr_assert_eq(sodium_memcmp(mem[i].secret[epoch], mem[0].secret[epoch], 32), 0,
                         "%s holds another secret for epoch %u", mem[i].id, epoch);
        }
        cr_assert_neq(sodium_memcmp(mem[0].secret[epoch], mem[0].secret[epoch - 1], 32), 0);
    }
    /* Whatever the killed authorities still had in flight. */
    double quiet = af_mono() + 1.0;
    while (af_mono() < quiet)
        mb_pump(&box, 20);
    (void)apply_pushes(epoch, got, 1);
    /* A clean rotation after all this: every member accepts its push
     * (push_seq above all it saw), same secret everywhere. */
    memset(got, 0, sizeof got);
    epoch++;
    const char *rot[] = {"group", "rotate", "--group", "big", NULL};
    cr_assert_eq(op(out, sizeof out, rot), 0);
    size_t applied = 0;
    end = af_mono() + 30.0;
    while (applied < N_MEMBERS) {
        cr_assert_lt(af_mono(), end, "%zu of %d pushes after the kills", applied, N_MEMBERS);
        mb_pump(&box, 20);
        applied += apply_pushes(epoch, got, 0);
    }
    for (int i = 0; i < N_MEMBERS; i++)
        cr_assert_eq(sodium_memcmp(mem[i].secret[epoch], mem[0].secret[epoch], 32), 0);
    cr_assert_eq(group_epoch("big"), (int)epoch);
    printf("kill9_mid_rotation: 5 kills survived, final rotation to epoch %u pushed to all %d\n",
           epoch, N_MEMBERS);
    mb_close(&box);
    sodium_memzero(mem, N_MEMBERS * sizeof *mem);
    free(mem);
}

/* ======================================================================
 * A device offline across two rotations
 * ====================================================================== */

#define MAXMSG 64

static void enroll_cli(const char *id)
{
    af_enroll_in(&fx, id, "fleet", "fleet/#:pubsub");
}

static mqe2e_keystore *open_ks(const char *id)
{
    return af_open_ks(&fx, id);
}

static mqe2e_MQTTClient enc_client(const char *id, mqe2e_keystore *ks, inbox *ib, int clean)
{
    mqe2e_MQTTClient_securityOptions so = mqe2e_MQTTClient_securityOptions_initializer;
    so.keystore = ks;
    so.onDropped = inbox_on_dropped;
    so.context = ib;
    return inbox_client_open(&fx.broker, id, &so, inbox_on_message, 20, clean);
}

static void close_client(mqe2e_MQTTClient *c)
{
    mqe2e_MQTTClient_disconnect(*c, 1000);
    mqe2e_MQTTClient_destroy(c);
}

static mqe2e_control_counters ctl(mqe2e_MQTTClient c)
{
    mqe2e_control_counters k;
    cr_assert_eq(mqe2e_MQTTClient_getControlCounters(c, &k), MQTTCLIENT_SUCCESS);
    return k;
}

static mqe2e_counters counters(mqe2e_MQTTClient c)
{
    mqe2e_counters k;
    cr_assert_eq(mqe2e_MQTTClient_getCounters(c, &k), MQTTCLIENT_SUCCESS);
    return k;
}

#define WAIT_CTL(c, field, n)                                                                      \
    do {                                                                                           \
        double dl_ = af_mono() + 15.0;                                                                \
        while (ctl(c).field < (uint64_t)(n)) {                                                     \
            cr_assert_lt(af_mono(), dl_, "timeout waiting for %s >= %d", #field, (int)(n));           \
            af_sleep_ms(10);                                                                          \
        }                                                                                          \
    } while (0)

static void publish_text(mqe2e_MQTTClient c, const char *text)
{
    MQTTClient_deliveryToken dt = 0;
    cr_assert_eq(mqe2e_MQTTClient_publish(c, "fleet/t", (int)strlen(text), text, 1, 0, &dt),
                 MQTTCLIENT_SUCCESS);
    cr_assert_eq(mqe2e_MQTTClient_waitForCompletion(c, dt, 5000), MQTTCLIENT_SUCCESS);
}

static void rotate_fleet(mqe2e_MQTTClient pub, uint64_t pushes)
{
    char out[4096];
    const char *rot[] = {"group", "rotate", "--group", "fleet", NULL};
    cr_assert_eq(op(out, sizeof out, rot), 0, "%s", out);
    WAIT_CTL(pub, pushes_applied, pushes);
}

/*
 * Shared scenario. The device's persistent session keeps its QoS 1
 * subscriptions while it is offline. With `drop_pushes` its inbox
 * subscription is removed from the session first (what a broker that lost
 * the PUSH frames would do), so the keys can only come from the HELLO on
 * reconnect; otherwise the queued PUSH frames arrive interleaved with the
 * data in publish order. `past_grace` (with the authority run with --grace 2)
 * lets epoch 2 retire longer ago than that, so HELLO no longer hands it out.
 *
 * Expected:
 *   queued pushes          every message, in order, once; nothing held
 *                          (each epoch's key arrives right before its data);
 *   pushes lost, in grace  every message, in order, once: the epoch-2 and
 *                          epoch-3 messages are held until the HELLO reply
 *                          brings epoch 3 and the retired epoch 2;
 *   pushes lost, past grace the epoch-1 message and the three epoch-3
 *                          messages in order; the three epoch-2 messages are
 *                          dropped as no_key (counted once each), never
 *                          delivered.
 */
static void offline_scenario(int drop_pushes, int past_grace)
{
    authority_start();
    char out[4096];
    const char *gc[] = {"group", "create", "--group", "fleet", "--topic", "fleet/#", NULL};
    cr_assert_eq(op(out, sizeof out, gc), 0);
    enroll_cli("dev");
    enroll_cli("pub");
    mqe2e_keystore *kd = open_ks("dev"), *kp = open_ks("pub");
    inbox id, ip;
    memset(&id, 0, sizeof id);
    memset(&ip, 0, sizeof ip);
    pthread_mutex_init(&id.m, NULL);
    pthread_mutex_init(&ip.m, NULL);
    mqe2e_MQTTClient dev = enc_client("dev", kd, &id, 0);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(dev, "fleet/#", 1), MQTTCLIENT_SUCCESS);
    mqe2e_MQTTClient pub = enc_client("pub", kp, &ip, 1);
    WAIT_CTL(dev, handshakes_ok, 1);
    WAIT_CTL(pub, handshakes_ok, 1);

    /* Epoch 1, online. */
    publish_text(pub, "e1-online");
    double end = af_mono() + 10.0;
    while (inbox_count(&id) < 1) {
        cr_assert_lt(af_mono(), end);
        af_sleep_ms(10);
    }
    /* Offline: the broker keeps the session and queues QoS 1 messages. */
    close_client(&dev);
    if (drop_pushes) {
        MQTTClient r = NULL;
        MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer;
        co.cleansession = 0;
        cr_assert_eq(MQTTClient_create(&r, tb_broker_uri(&fx.broker), "dev",
                                       MQTTCLIENT_PERSISTENCE_NONE, NULL),
                     MQTTCLIENT_SUCCESS);
        cr_assert_eq(MQTTClient_connect(r, &co), MQTTCLIENT_SUCCESS);
        cr_assert_eq(MQTTClient_unsubscribe(r, PREFIX "/client/dev"), MQTTCLIENT_SUCCESS);
        MQTTClient_disconnect(r, 500);
        MQTTClient_destroy(&r);
    }
    publish_text(pub, "e1-queued");
    rotate_fleet(pub, 1);
    for (int i = 1; i <= 3; i++) {
        char t[16];
        snprintf(t, sizeof t, "e2-%d", i);
        publish_text(pub, t);
    }
    if (past_grace) af_sleep_ms(3500); /* epoch 2 retired longer than --grace 2 ago */
    rotate_fleet(pub, 2);
    if (past_grace) af_sleep_ms(2500); /* ... and epoch 1 too, at the next HELLO */
    for (int i = 1; i <= 3; i++) {
        char t[16];
        snprintf(t, sizeof t, "e3-%d", i);
        publish_text(pub, t);
    }
    uint32_t e = 0;
    cr_assert_eq(mqe2e_keystore_group_current_epoch(kd, "fleet", &e), MQE2E_OK);
    cr_assert_eq(e, 1, "the offline device learnt a key while offline");

    /* Back online with the same session. */
    memset(&id, 0, sizeof id);
    pthread_mutex_init(&id.m, NULL);
    dev = enc_client("dev", kd, &id, 0);
    WAIT_CTL(dev, handshakes_ok, 1);
    const char *want_in[] = {"e1-queued", "e2-1", "e2-2", "e2-3", "e3-1", "e3-2", "e3-3"};
    const char *want_past[] = {"e1-queued", "e3-1", "e3-2", "e3-3"};
    const char **want = past_grace ? want_past : want_in;
    int n_want = past_grace ? 4 : 7;
    end = af_mono() + 40.0; /* past grace: the held epoch-2 messages age out (30 s) */
    for (;;) {
        mqe2e_control_counters k = ctl(dev);
        int settled = inbox_count(&id) >= n_want && k.held == k.released + k.hold_dropped;
        if (settled && (!past_grace || id.dropped >= 3)) break;
        cr_assert_lt(af_mono(), end, "device got %d of %d, held %lu released %lu hold_dropped %lu",
                     inbox_count(&id), n_want, (unsigned long)k.held, (unsigned long)k.released,
                     (unsigned long)k.hold_dropped);
        af_sleep_ms(20);
    }
    af_sleep_ms(500);
    mqe2e_control_counters k = ctl(dev);
    mqe2e_counters dc = counters(dev);
    uint64_t drops = 0;
    for (int i = 0; i < MQE2E_DROP_REASON_COUNT; i++)
        drops += dc.dropped[i];
    printf("offline_two_rotations_%s: delivered %d, dropped %lu (no_key %lu, expired %lu), "
           "held %lu, released %lu, hold_dropped %lu\n",
           !drop_pushes ? "queued_pushes"
           : past_grace ? "past_grace"
                        : "within_grace",
           inbox_count(&id), (unsigned long)drops, (unsigned long)dc.dropped[MQE2E_DROP_NO_KEY],
           (unsigned long)dc.dropped[MQE2E_DROP_EXPIRED], (unsigned long)k.held,
           (unsigned long)k.released, (unsigned long)k.hold_dropped);
    fflush(stdout);
    /* Exactly the expected messages, in order, once each. */
    cr_assert_eq(inbox_count(&id), n_want);
    for (int i = 0; i < n_want; i++)
        cr_assert_str_eq(id.payload[i], want[i], "message %d", i);
    if (past_grace) {
        cr_assert_eq(drops, 3, "the three epoch-2 messages, counted once each");
        cr_assert_eq(dc.dropped[MQE2E_DROP_NO_KEY] + dc.dropped[MQE2E_DROP_EXPIRED], 3);
        cr_assert_eq(id.dropped, 3);
    } else {
        cr_assert_eq(drops, 0);
        cr_assert_eq(k.hold_dropped, 0);
    }
    if (!drop_pushes) {
        cr_assert_eq(k.pushes_applied, 2, "both queued pushes applied");
        cr_assert_eq(k.held, 0, "keys arrived before their data");
    }
    close_client(&dev);
    close_client(&pub);
    cr_assert_eq(mqe2e_keystore_group_current_epoch(kd, "fleet", &e), MQE2E_OK);
    cr_assert_eq(e, 3);
    uint8_t s[32];
    int has2 = mqe2e_keystore_group_secret(kd, "fleet", 2, s, NULL) == MQE2E_OK;
    sodium_memzero(s, sizeof s);
    cr_assert_eq(has2, !past_grace, "epoch 2 %s", has2 ? "held" : "missing");
    mqe2e_keystore_close(kd);
    mqe2e_keystore_close(kp);
}

Test(authority_faults, offline_two_rotations_queued_pushes)
{
    offline_scenario(0, 0);
}

Test(authority_faults, offline_two_rotations_within_grace)
{
    offline_scenario(1, 0);
}

Test(authority_faults, offline_two_rotations_past_grace)
{
    auth_grace = "2";
    offline_scenario(1, 1);
}
