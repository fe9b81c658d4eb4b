/*
 * An adversary with broker access against an encrypted subscriber.
 *
 * A raw Paho client (it never calls the library's seal) captures genuine
 * envelopes from '#', then replays them, flips every byte, moves them to other
 * topics, rewrites their epoch, sender and sequence fields (re-encoding the
 * protobuf header of docs/PROTOCOL.md section 2.1), downgrades the suite,
 * adds unknown fields, truncates them at every length, sends oversized,
 * deeply nested and random garbage, and publishes on topics that have no
 * policy. For every case: the application receives nothing, the drop counters
 * grow by exactly the number injected, onDropped is called that many times,
 * and a legitimate message sent afterwards is still delivered. Each test
 * prints a table: case, injected, delivered, dropped by reason.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker.h"
#include "mqe2e/MQTTClient.h"
#include "spy.h"
#include "testutil.h"

#define WAIT_MS 15000L
#define GROUP "sensors"
#define FILTER "sensors/#"
#define N_SEEN 4
#define N_HIDDEN 8
#define CAP_BYTES 512
/* The subscriber's plaintext limit; "oversized" means above it. */
#define SUB_MAX_PAYLOAD 1024U
#define MAX_ROWS 16

/* What one client received, copied out of the callbacks. */
typedef struct inbox {
    pthread_mutex_t m;
    int encrypted;
    int n; /* messages handed to the application */
    char last_topic[128];
    uint8_t last_payload[CAP_BYTES];
    int last_len;
    /* raw capture: the first CAP_MSGS messages, kept whole */
    struct {
        char topic[128];
        uint8_t payload[CAP_BYTES];
        int len;
    } cap[N_SEEN + N_HIDDEN + 4];
    int dropped; /* onDropped calls */
} inbox;

static void inbox_init(inbox *ib, int encrypted)
{
    memset(ib, 0, sizeof *ib);
    pthread_mutex_init(&ib->m, NULL);
    ib->encrypted = encrypted;
}

static int on_message(void *ctx, char *topic, int topicLen, MQTTClient_message *msg)
{
    inbox *ib = ctx;
    (void)topicLen;
    pthread_mutex_lock(&ib->m);
    int k = ib->n;
    if (k < (int)(sizeof ib->cap / sizeof ib->cap[0]) && msg->payloadlen <= CAP_BYTES) {
        snprintf(ib->cap[k].topic, sizeof ib->cap[k].topic, "%s", topic);
        if (msg->payloadlen > 0) memcpy(ib->cap[k].payload, msg->payload, (size_t)msg->payloadlen);
        ib->cap[k].len = msg->payloadlen;
    }
    snprintf(ib->last_topic, sizeof ib->last_topic, "%s", topic);
    ib->last_len = msg->payloadlen;
    if (msg->payloadlen > 0 && msg->payloadlen <= CAP_BYTES)
        memcpy(ib->last_payload, msg->payload, (size_t)msg->payloadlen);
    ib->n++;
    pthread_mutex_unlock(&ib->m);
    ts_free_message(ib->encrypted, &msg, topic);
    return 1;
}

static void on_dropped(void *ctx, const char *topic, int code)
{
    inbox *ib = ctx;
    (void)topic;
    (void)code;
    pthread_mutex_lock(&ib->m);
    ib->dropped++;
    pthread_mutex_unlock(&ib->m);
}

/* Every log line the subscriber emits is checked for plaintext and key bytes. */
static pthread_mutex_t log_m = PTHREAD_MUTEX_INITIALIZER;
static int log_lines, log_leaks;
static char secret_hex[2][2 * MQE2E_GROUP_SECRET_BYTES + 1];

static void on_log(void *ctx, mqe2e_log_level level, const char *message)
{
    (void)ctx;
    (void)level;
    pthread_mutex_lock(&log_m);
    log_lines++;
    if (strstr(message, "reading") != NULL || strstr(message, "legitimate") != NULL ||
        strstr(message, secret_hex[0]) != NULL || strstr(message, secret_hex[1]) != NULL)
        log_leaks++;
    pthread_mutex_unlock(&log_m);
}

static int inbox_count(inbox *ib)
{
    pthread_mutex_lock(&ib->m);
    int n = ib->n;
    pthread_mutex_unlock(&ib->m);
    return n;
}

static int inbox_dropped(inbox *ib)
{
    pthread_mutex_lock(&ib->m);
    int n = ib->dropped;
    pthread_mutex_unlock(&ib->m);
    return n;
}

static uint64_t drops_total(const mqe2e_counters *k)
{
    uint64_t t = 0;
    for (int i = 0; i < MQE2E_DROP_REASON_COUNT; i++)
        t += k->dropped[i];
    return t;
}

/* ---------- protobuf re-encoding (docs/PROTOCOL.md section 2.1) ---------- */

typedef struct buf {
    uint8_t *p;
    size_t len, cap;
} buf;

static void b_reserve(buf *b, size_t more)
{
    if (b->len + more <= b->cap) return;
    size_t ncap = b->cap == 0 ? 256 : b->cap;
    while (ncap < b->len + more)
        ncap *= 2;
    uint8_t *np = realloc(b->p, ncap);
    cr_assert_not_null(np);
    b->p = np;
    b->cap = ncap;
}

static void b_byte(buf *b, uint8_t v)
{
    b_reserve(b, 1);
    b->p[b->len++] = v;
}

static void b_varint(buf *b, uint64_t v)
{
    while (v >= 0x80) {
        b_byte(b, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    b_byte(b, (uint8_t)v);
}

static void b_bytes(buf *b, const uint8_t *p, size_t n)
{
    b_reserve(b, n);
    if (n > 0) memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void b_key(buf *b, uint32_t field, uint32_t wire_type)
{
    b_varint(b, (uint64_t)field << 3 | wire_type);
}

static void b_len_field(buf *b, uint32_t field, const uint8_t *p, size_t n)
{
    b_key(b, field, 2);
    b_varint(b, n);
    b_bytes(b, p, n);
}

static void b_instance(buf *b, uint64_t instance)
{
    uint8_t v[MQE2E_INSTANCE_BYTES];
    for (unsigned i = 0; i < MQE2E_INSTANCE_BYTES; i++)
        v[i] = (uint8_t)(instance >> (8U * (MQE2E_INSTANCE_BYTES - 1U - i)));
    b_len_field(b, 8, v, sizeof v);
}

/* The library encoder's layout: non-zero header fields, the instance (group
 * bodies), then the body. */
static void b_envelope(buf *b, uint32_t body_field, uint32_t epoch, uint32_t sender,
                       uint64_t instance, uint64_t seq, const uint8_t *body, size_t body_len)
{
    if (epoch != 0) {
        b_key(b, 4, 0);
        b_varint(b, epoch);
    }
    if (sender != 0) {
        b_key(b, 5, 0);
        b_varint(b, sender);
    }
    if (body_field != 2) b_instance(b, instance);
    if (seq != 0) {
        b_key(b, 6, 0);
        b_varint(b, seq);
    }
    b_len_field(b, body_field, body, body_len);
}

static void b_free(buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---------- the world: broker, subscriber, publisher, attacker ---------- */

typedef struct envelope_copy {
    char topic[128];
    uint8_t bytes[CAP_BYTES];
    int len;
    mqe2e_envelope_view view; /* points into bytes */
} envelope_copy;

typedef struct row {
    char name[48];
    int injected;
    int delivered;
    uint64_t dropped[MQE2E_DROP_REASON_COUNT];
} row;

/* QoS 1 publications not yet confirmed; waiting once per batch keeps the
 * attack fast (Paho's sync wait polls). */
#define PENDING_MAX 64
static MQTTClient_deliveryToken pending[PENDING_MAX];
static int n_pending;

static tb_broker broker;
static uint8_t secret1[MQE2E_GROUP_SECRET_BYTES], secret2[MQE2E_GROUP_SECRET_BYTES];
static inbox app;
static mqe2e_keystore *ks_pub, *ks_sub;
static mqe2e_MQTTClient pub, sub;
static MQTTClient attacker;
static envelope_copy seen[N_SEEN];     /* delivered to the subscriber before the attacks */
static envelope_copy hidden[N_HIDDEN]; /* genuine, never seen by the subscriber */
static int legit_sent;
static row rows[MAX_ROWS];
static int n_rows;

/* Case in progress. */
static struct {
    row *r;
    mqe2e_counters before;
    int app_before;
    int dropped_before;
} cur;

static mqe2e_keystore *make_keystore(const char *client_id)
{
    mqe2e_storage st;
    mqe2e_keystore *ks = NULL;
    uint64_t now = (uint64_t)time(NULL);
    cr_assert_eq(mqe2e_storage_memory(&st), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_create(&ks, st, client_id, 0), MQE2E_OK);
    /* Epoch 1 retired but inside its grace period, epoch 2 current: a
     * rewritten epoch then reaches the AEAD instead of stopping at no_key. */
    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, GROUP, FILTER, 1, secret1, now - 60),
                 MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, GROUP, FILTER, 2, secret2, now), MQE2E_OK);
    return ks;
}

static void connect_opts(MQTTClient_connectOptions *o)
{
    MQTTClient_connectOptions init = MQTTClient_connectOptions_initializer;
    *o = init;
    o->keepAliveInterval = 20;
    o->cleansession = 1;
}

static mqe2e_MQTTClient enc_client(const char *id, mqe2e_keystore *ks, inbox *ib,
                                   const mqe2e_protector_options *popts)
{
    mqe2e_MQTTClient c = NULL;
    mqe2e_MQTTClient_securityOptions so = mqe2e_MQTTClient_securityOptions_initializer;
    MQTTClient_connectOptions co;
    cr_assert_eq(mqe2e_MQTTClient_create(&c, tb_broker_uri(&broker), id,
                                         MQTTCLIENT_PERSISTENCE_NONE, NULL),
                 MQTTCLIENT_SUCCESS);
    so.keystore = ks;
    so.protector = popts;
    so.onDropped = ib != NULL ? on_dropped : NULL;
    so.onLog = on_log;
    so.logLevel = MQE2E_LOG_DEBUG;
    so.context = ib;
    int rc = mqe2e_MQTTClient_setSecurity(c, &so);
    cr_assert_eq(rc, MQTTCLIENT_SUCCESS, "setSecurity: %d %s", rc, mqe2e_MQTTClient_strerror(rc));
    if (ib != NULL) {
        cr_assert_eq(mqe2e_MQTTClient_setCallbacks(c, ib, NULL, on_message, NULL),
                     MQTTCLIENT_SUCCESS);
    }
    connect_opts(&co);
    rc = mqe2e_MQTTClient_connect(c, &co);
    cr_assert_eq(rc, MQTTCLIENT_SUCCESS, "connect %s: %d %s", id, rc,
                 mqe2e_MQTTClient_strerror(rc));
    return c;
}

static MQTTClient raw_client(const char *id, inbox *ib)
{
    MQTTClient c = NULL;
    MQTTClient_connectOptions co;
    cr_assert_eq(MQTTClient_create(&c, tb_broker_uri(&broker), id, MQTTCLIENT_PERSISTENCE_NONE,
                                   NULL),
                 MQTTCLIENT_SUCCESS);
    if (ib != NULL) {
        cr_assert_eq(MQTTClient_setCallbacks(c, ib, NULL, on_message, NULL), MQTTCLIENT_SUCCESS);
    }
    connect_opts(&co);
    cr_assert_eq(MQTTClient_connect(c, &co), MQTTCLIENT_SUCCESS);
    return c;
}

static void enc_pub(const char *topic, const char *text)
{
    MQTTClient_deliveryToken dt = 0;
    int rc = mqe2e_MQTTClient_publish(pub, topic, (int)strlen(text), text, 1, 0, &dt);
    cr_assert_eq(rc, MQTTCLIENT_SUCCESS, "publish %s: %d %s", topic, rc,
                 mqe2e_MQTTClient_strerror(rc));
    cr_assert_eq(mqe2e_MQTTClient_waitForCompletion(pub, dt, 5000), MQTTCLIENT_SUCCESS);
}

static void copy_capture(envelope_copy *dst, const inbox *spy, const char *topic)
{
    for (int i = 0; i < spy->n && i < (int)(sizeof spy->cap / sizeof spy->cap[0]); i++) {
        if (strcmp(spy->cap[i].topic, topic) == 0) {
            snprintf(dst->topic, sizeof dst->topic, "%s", topic);
            memcpy(dst->bytes, spy->cap[i].payload, (size_t)spy->cap[i].len);
            dst->len = spy->cap[i].len;
            cr_assert_eq(mqe2e_envelope_parse(&dst->view, dst->bytes, (size_t)dst->len), MQE2E_OK,
                         "captured payload on %s is not an envelope", topic);
            cr_assert_eq(dst->view.header.epoch, 2);
            return;
        }
    }
    cr_assert_fail("nothing captured on %s", topic);
}

static void setup(void)
{
    n_pending = 0;
    cr_assert_eq(mqe2e_init(), MQE2E_OK);
    randombytes_buf(secret1, sizeof secret1);
    randombytes_buf(secret2, sizeof secret2);
    /* Only the first 8 bytes of each secret, in hex: what a careless log
     * line would hold. */
    sodium_bin2hex(secret_hex[0], 17, secret1, 8);
    sodium_bin2hex(secret_hex[1], 17, secret2, 8);
    log_lines = log_leaks = 0;
    memset(&broker, 0, sizeof broker);
    cr_assert_eq(tb_broker_start(&broker), 0, "mosquitto did not start");
    memset(rows, 0, sizeof rows);
    n_rows = 0;
    legit_sent = 0;

    inbox_init(&app, 1);
    ks_pub = make_keystore("adv-pub");
    ks_sub = make_keystore("adv-sub");
    mqe2e_protector_options popts = MQE2E_PROTECTOR_OPTIONS_INIT;
    popts.max_payload = SUB_MAX_PAYLOAD;
    sub = enc_client("adv-sub", ks_sub, &app, &popts);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(sub, "sensors/live/#", 1), MQTTCLIENT_SUCCESS);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(sub, "nopolicy/#", 1), MQTTCLIENT_SUCCESS);
    pub = enc_client("adv-pub", ks_pub, NULL, NULL);

    /* Capture: a raw spy on '#' records genuine envelopes. */
    static inbox spy;
    inbox_init(&spy, 0);
    MQTTClient spy_c = raw_client("adv-spy", &spy);
    cr_assert_eq(MQTTClient_subscribe(spy_c, "#", 1), MQTTCLIENT_SUCCESS);
    char topic[64], text[64];
    for (int i = 0; i < N_SEEN; i++) {
        snprintf(topic, sizeof topic, "sensors/live/seen/%d", i);
        snprintf(text, sizeof text, "seen reading %d", i);
        enc_pub(topic, text);
    }
    for (int i = 0; i < N_HIDDEN; i++) {
        snprintf(topic, sizeof topic, "sensors/stash/%d", i);
        snprintf(text, sizeof text, "hidden reading %d", i);
        enc_pub(topic, text);
    }
    long deadline = tu_now_ms() + WAIT_MS;
    while ((inbox_count(&spy) < N_SEEN + N_HIDDEN || inbox_count(&app) < N_SEEN) &&
           tu_now_ms() < deadline)
        tu_sleep_ms(10);
    cr_assert_eq(inbox_count(&spy), N_SEEN + N_HIDDEN, "spy captured %d", inbox_count(&spy));
    cr_assert_eq(inbox_count(&app), N_SEEN, "subscriber got %d", inbox_count(&app));
    for (int i = 0; i < N_SEEN; i++) {
        snprintf(topic, sizeof topic, "sensors/live/seen/%d", i);
        copy_capture(&seen[i], &spy, topic);
    }
    for (int i = 0; i < N_HIDDEN; i++) {
        snprintf(topic, sizeof topic, "sensors/stash/%d", i);
        copy_capture(&hidden[i], &spy, topic);
    }
    MQTTClient_disconnect(spy_c, 1000);
    MQTTClient_destroy(&spy_c);

    /* From now on the subscriber also listens where the hidden envelopes
     * were published, so each one would be accepted if left untouched. */
    cr_assert_eq(mqe2e_MQTTClient_subscribe(sub, "sensors/stash/#", 1), MQTTCLIENT_SUCCESS);
    /* With callbacks Paho reads acknowledgements on its own thread, so
     * publishing does not stall on them. The attacker subscribes to nothing. */
    static inbox attacker_in;
    inbox_init(&attacker_in, 0);
    attacker = raw_client("adv-attacker", &attacker_in);
    mqe2e_counters k;
    cr_assert_eq(mqe2e_MQTTClient_getCounters(sub, &k), MQTTCLIENT_SUCCESS);
    cr_assert_eq(drops_total(&k), 0);
    cr_assert_eq(k.opened, N_SEEN);
}

static void print_table(void)
{
    printf("\n%-28s %9s %9s %8s  %s\n", "case", "injected", "delivered", "dropped", "by reason");
    for (int i = 0; i < n_rows; i++) {
        const row *r = &rows[i];
        char reasons[256] = "";
        size_t off = 0;
        uint64_t total = 0;
        for (int j = 0; j < MQE2E_DROP_REASON_COUNT; j++) {
            if (r->dropped[j] == 0) continue;
            total += r->dropped[j];
            int w = snprintf(reasons + off, sizeof reasons - off, "%s%s=%llu", off ? " " : "",
                             mqe2e_drop_reason_name((mqe2e_drop_reason)j),
                             (unsigned long long)r->dropped[j]);
            if (w > 0 && (size_t)w < sizeof reasons - off) off += (size_t)w;
        }
        printf("%-28s %9d %9d %8llu  %s\n", r->name, r->injected, r->delivered,
               (unsigned long long)total, reasons);
    }
    fflush(stdout);
}

static void teardown(void)
{
    print_table();
    printf("log lines checked: %d, holding plaintext or key bytes: %d\n", log_lines, log_leaks);
    if (attacker != NULL) {
        if (MQTTClient_isConnected(attacker)) MQTTClient_disconnect(attacker, 1000);
        MQTTClient_destroy(&attacker);
    }
    if (pub != NULL) {
        if (mqe2e_MQTTClient_isConnected(pub)) mqe2e_MQTTClient_disconnect(pub, 1000);
        mqe2e_MQTTClient_destroy(&pub);
    }
    if (sub != NULL) {
        if (mqe2e_MQTTClient_isConnected(sub)) mqe2e_MQTTClient_disconnect(sub, 1000);
        mqe2e_MQTTClient_destroy(&sub);
    }
    mqe2e_keystore_close(ks_pub);
    mqe2e_keystore_close(ks_sub);
    ks_pub = ks_sub = NULL;
    tb_broker_stop(&broker);
    sodium_memzero(secret1, sizeof secret1);
    sodium_memzero(secret2, sizeof secret2);
}

TestSuite(adversary, .init = setup, .fini = teardown, .timeout = 240);

/* ---------- one attack case ---------- */

static void case_begin(const char *name)
{
    cr_assert_lt(n_rows, MAX_ROWS);
    cur.r = &rows[n_rows++];
    snprintf(cur.r->name, sizeof cur.r->name, "%s", name);
    cr_assert_eq(mqe2e_MQTTClient_getCounters(sub, &cur.before), MQTTCLIENT_SUCCESS);
    cur.app_before = inbox_count(&app);
    cur.dropped_before = inbox_dropped(&app);
}

static void flush_pending(void)
{
    for (int i = 0; i < n_pending; i++)
        cr_assert_eq(MQTTClient_waitForCompletion(attacker, pending[i], 10000), MQTTCLIENT_SUCCESS,
                     "broker did not acknowledge an injected message");
    n_pending = 0;
}

/* Publish raw bytes as the attacker; @p counted: part of the case's tally. */
static void raw_send(const char *topic, const void *p, size_t len, int counted)
{
    MQTTClient_deliveryToken dt = 0;
    cr_assert_leq(len, (size_t)0x7fffffff);
    if (n_pending == PENDING_MAX) flush_pending();
    int rc = MQTTClient_publish(attacker, topic, (int)len, p, 1, 0, &dt);
    if (rc == MQTTCLIENT_MAX_MESSAGES_INFLIGHT) {
        flush_pending();
        rc = MQTTClient_publish(attacker, topic, (int)len, p, 1, 0, &dt);
    }
    cr_assert_eq(rc, MQTTCLIENT_SUCCESS, "raw publish on %s: %d", topic, rc);
    pending[n_pending++] = dt;
    if (counted) cur.r->injected++;
}

static void inject(const char *topic, const void *p, size_t len)
{
    raw_send(topic, p, len, 1);
}

/* A genuine, untouched envelope relayed by the attacker must be accepted. */
static void relay_genuine(const envelope_copy *e, const char *expect)
{
    int before = inbox_count(&app);
    raw_send(e->topic, e->bytes, (size_t)e->len, 0);
    flush_pending();
    long deadline = tu_now_ms() + WAIT_MS;
    while (inbox_count(&app) == before && tu_now_ms() < deadline)
        tu_sleep_ms(5);
    cr_assert_eq(inbox_count(&app), before + 1, "untouched genuine envelope on %s not delivered",
                 e->topic);
    pthread_mutex_lock(&app.m);
    cr_assert_str_eq(app.last_topic, e->topic);
    cr_assert_eq(app.last_len, (int)strlen(expect));
    cr_assert_arr_eq(app.last_payload, expect, strlen(expect));
    pthread_mutex_unlock(&app.m);
}

static void inject_buf(const char *topic, buf *b)
{
    inject(topic, b->p, b->len);
    b_free(b);
}

/*
 * Close the case: a legitimate message must still arrive, and by then every
 * injected message has been processed (one connection, in order). Checks
 * delivered == 0 and drops == injected, both in the counters and in
 * onDropped; @p allowed is a bit mask of acceptable drop reasons.
 */
static void case_end(unsigned allowed)
{
    char topic[64], text[64];
    snprintf(topic, sizeof topic, "sensors/live/alive/%d", legit_sent);
    snprintf(text, sizeof text, "legitimate %d after %s", legit_sent, cur.r->name);
    legit_sent++;
    flush_pending();
    enc_pub(topic, text);

    long deadline = tu_now_ms() + WAIT_MS;
    int got = 0;
    while (tu_now_ms() < deadline) {
        pthread_mutex_lock(&app.m);
        got = app.n > cur.app_before && strcmp(app.last_topic, topic) == 0;
        pthread_mutex_unlock(&app.m);
        if (got) break;
        tu_sleep_ms(5);
    }
    mqe2e_counters after;
    uint64_t want = (uint64_t)cur.r->injected;
    deadline = tu_now_ms() + WAIT_MS;
    for (;;) {
        cr_assert_eq(mqe2e_MQTTClient_getCounters(sub, &after), MQTTCLIENT_SUCCESS);
        if ((drops_total(&after) - drops_total(&cur.before) >= want &&
             (uint64_t)(inbox_dropped(&app) - cur.dropped_before) >= want) ||
            tu_now_ms() > deadline)
            break;
        tu_sleep_ms(5);
    }
    for (int j = 0; j < MQE2E_DROP_REASON_COUNT; j++)
        cur.r->dropped[j] = after.dropped[j] - cur.before.dropped[j];
    cur.r->delivered = inbox_count(&app) - cur.app_before - (got ? 1 : 0);

    cr_assert(got, "%s: the legitimate message after the case was not delivered", cur.r->name);
    pthread_mutex_lock(&app.m);
    cr_assert_eq(app.last_len, (int)strlen(text));
    cr_assert_arr_eq(app.last_payload, text, strlen(text));
    pthread_mutex_unlock(&app.m);
    cr_assert_eq(cur.r->delivered, 0, "%s: %d injected messages delivered", cur.r->name,
                 cur.r->delivered);
    cr_assert_eq(after.opened - cur.before.opened, 1, "%s: opened grew by %llu", cur.r->name,
                 (unsigned long long)(after.opened - cur.before.opened));
    cr_assert_eq(drops_total(&after) - drops_total(&cur.before), want,
                 "%s: %llu drops counted for %llu injected", cur.r->name,
                 (unsigned long long)(drops_total(&after) - drops_total(&cur.before)),
                 (unsigned long long)want);
    cr_assert_eq(inbox_dropped(&app) - cur.dropped_before, cur.r->injected,
                 "%s: onDropped called %d times for %d injected", cur.r->name,
                 inbox_dropped(&app) - cur.dropped_before, cur.r->injected);
    pthread_mutex_lock(&log_m);
    int leaks = log_leaks;
    pthread_mutex_unlock(&log_m);
    cr_assert_eq(leaks, 0, "%s: a log line held plaintext or key bytes", cur.r->name);
    for (int j = 0; j < MQE2E_DROP_REASON_COUNT; j++) {
        if (cur.r->dropped[j] != 0) {
            cr_assert(allowed & (1u << j), "%s: %llu drops under unexpected reason %s",
                      cur.r->name, (unsigned long long)cur.r->dropped[j],
                      mqe2e_drop_reason_name((mqe2e_drop_reason)j));
        }
    }
}

#define R(x) (1u << (MQE2E_DROP_##x))
/* Any reason a hostile envelope may be dropped for; never OTHER (I/O,
 * memory) and never NO_POLICY (these topics all have one). */
#define ANY_ENVELOPE_REASON                                                                    \
    (R(DECODE) | R(TOO_LARGE) | R(SUITE) | R(POLICY) | R(NO_KEY) | R(EXPIRED) | R(REPLAY) |    \
     R(AUTH))

/* ---------- tests ---------- */

Test(adversary, replayed_envelopes)
{
    case_begin("replay (seen envelopes x3)");
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < N_SEEN; i++)
            inject(seen[i].topic, seen[i].bytes, (size_t)seen[i].len);
    case_end(R(REPLAY));
    cr_assert_eq(cur.r->dropped[MQE2E_DROP_REPLAY], 3 * N_SEEN);

    /* A genuine envelope the subscriber never saw is accepted once (the
     * control that shows the attacker's path works), then is a replay. */
    relay_genuine(&hidden[7], "hidden reading 7");
    case_begin("replay (relayed hidden x5)");
    for (int i = 0; i < 5; i++)
        inject(hidden[7].topic, hidden[7].bytes, (size_t)hidden[7].len);
    case_end(R(REPLAY));
    cr_assert_eq(cur.r->dropped[MQE2E_DROP_REPLAY], 5);
}

Test(adversary, every_byte_flipped)
{
    const envelope_copy *e = &hidden[0];
    case_begin("bit flip at every byte");
    for (int pos = 0; pos < e->len; pos++) {
        uint8_t b[CAP_BYTES];
        memcpy(b, e->bytes, (size_t)e->len);
        b[pos] ^= (uint8_t)(1u << (pos % 8));
        inject(e->topic, b, (size_t)e->len);
    }
    case_end(ANY_ENVELOPE_REASON);
    cr_assert_gt(cur.r->dropped[MQE2E_DROP_AUTH], 0);

    case_begin("byte inverted at every byte");
    for (int pos = 0; pos < e->len; pos++) {
        uint8_t b[CAP_BYTES];
        memcpy(b, e->bytes, (size_t)e->len);
        b[pos] ^= 0xff;
        inject(e->topic, b, (size_t)e->len);
    }
    case_end(ANY_ENVELOPE_REASON);

    /* Control: the untouched envelope is still accepted, so the flips (and
     * nothing else) caused every drop above. */
    relay_genuine(e, "hidden reading 0");
}

Test(adversary, rebound_topic_epoch_sender_seq)
{
    const mqe2e_envelope_header *h;
    buf b = {0};

    case_begin("re-topic (same group)");
    inject("sensors/stash/elsewhere", hidden[1].bytes, (size_t)hidden[1].len);
    inject("sensors/live/elsewhere", hidden[1].bytes, (size_t)hidden[1].len);
    inject(hidden[2].topic, hidden[1].bytes, (size_t)hidden[1].len);
    case_end(R(AUTH));
    cr_assert_eq(cur.r->dropped[MQE2E_DROP_AUTH], 3);

    h = &hidden[2].view.header;
    case_begin("epoch rewritten");
    /* 2 -> 1: the subscriber holds epoch 1 (grace), so only the AEAD can refuse. */
    b_envelope(&b, 1, 1, h->sender_id, h->instance, h->seq, hidden[2].view.ciphertext,
               hidden[2].view.ciphertext_len);
    inject_buf(hidden[2].topic, &b);
    b_envelope(&b, 1, 3, h->sender_id, h->instance, h->seq, hidden[2].view.ciphertext,
               hidden[2].view.ciphertext_len);
    inject_buf(hidden[2].topic, &b);
    b_envelope(&b, 1, 0, h->sender_id, h->instance, h->seq, hidden[2].view.ciphertext,
               hidden[2].view.ciphertext_len);
    inject_buf(hidden[2].topic, &b);
    case_end(R(AUTH) | R(NO_KEY));
    cr_assert_eq(cur.r->dropped[MQE2E_DROP_AUTH], 1);
    cr_assert_eq(cur.r->dropped[MQE2E_DROP_NO_KEY], 2);

    h = &hidden[3].view.header;
    case_begin("sender rewritten");
    const uint32_t senders[] = {h->sender_id + 1, h->sender_id ^ 0x800000u, 0, 0xffffffffu,
                                mqe2e_keystore_sender_id(ks_sub)};
    for (size_t i = 0; i < sizeof senders / sizeof senders[0]; i++) {
        b_envelope(&b, 1, h->epoch, senders[i], h->instance, h->seq, hidden[3].view.ciphertext,
                   hidden[3].view.ciphertext_len);
        inject_buf(hidden[3].topic, &b);
    }
    case_end(R(AUTH));
    cr_assert_eq(cur.r->dropped[MQE2E_DROP_AUTH], 5);

    h = &hidden[4].view.header;
    case_begin("seq rewritten");
    /* Within 48 bits only the AEAD can refuse; beyond, the decoder does. */
    const uint64_t seqs[] = {h->seq + 1, h->seq + 100000, MQE2E_SEQ_MAX, MQE2E_SEQ_MAX + 1U,
                             (uint64_t)1 << 63, UINT64_MAX};
    for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
        b_envelope(&b, 1, h->epoch, h->sender_id, h->instance, seqs[i], hidden[4].view.ciphertext,
                   hidden[4].view.ciphertext_len);
        inject_buf(hidden[4].topic, &b);
    }
    case_end(R(AUTH) | R(DECODE));
    cr_assert_eq(cur.r->dropped[MQE2E_DROP_AUTH], 3);
    cr_assert_eq(cur.r->dropped[MQE2E_DROP_DECODE], 3);

    /* The instance is half of the nonce: any other value fails the AEAD. */
    case_begin("instance rewritten");
    const uint64_t insts[] = {h->instance ^ 1U, h->instance ^ (UINT64_C(1) << 47), 0,
                              MQE2E_INSTANCE_MAX};
    for (size_t i = 0; i < sizeof insts / sizeof insts[0]; i++) {
        if (insts[i] == h->instance) continue;
        b_envelope(&b, 1, h->epoch, h->sender_id, insts[i], h->seq, hidden[4].view.ciphertext,
                   hidden[4].view.ciphertext_len);
        inject_buf(hidden[4].topic, &b);
    }
    case_end(R(AUTH));
    cr_assert_geq(cur.r->dropped[MQE2E_DROP_AUTH], 3);

    /* The same values re-encoded (body first, as protobuf-c writes it) are
     * still the genuine message: accepted once. Proves the rewrites above
     * failed because of the values they changed, not the encoding. */
    h = &hidden[5].view.header;
    b_len_field(&b, 1, hidden[5].view.ciphertext, hidden[5].view.ciphertext_len);
    b_key(&b, 6, 0);
    b_varint(&b, h->seq);
    b_instance(&b, h->instance);
    b_key(&b, 5, 0);
    b_varint(&b, h->sender_id);
    b_key(&b, 4, 0);
    b_varint(&b, h->epoch);
    envelope_copy re;
    memset(&re, 0, sizeof re);
    snprintf(re.topic, sizeof re.topic, "%s", hidden[5].topic);
    cr_assert_leq(b.len, sizeof re.bytes);
    memcpy(re.bytes, b.p, b.len);
    re.len = (int)b.len;
    b_free(&b);
    relay_genuine(&re, "hidden reading 5");
}

Test(adversary, suite_downgrade_and_unknown_fields)
{
    const envelope_copy *e = &hidden[6];
    const mqe2e_envelope_header *h = &e->view.header;
    const uint8_t *ct = e->view.ciphertext;
    size_t ct_len = e->view.ciphertext_len;
    buf b = {0};

    case_begin("suite downgrade (field 2, 3)");
    b_envelope(&b, 2, h->epoch, h->sender_id, h->instance, h->seq, ct, ct_len);
    inject_buf(e->topic, &b);
    b_envelope(&b, 3, h->epoch, h->sender_id, h->instance, h->seq, ct, ct_len);
    inject_buf(e->topic, &b);
    /* Signed-mode body with a signature field attached. */
    b_envelope(&b, 3, h->epoch, h->sender_id, h->instance, h->seq, ct, ct_len);
    uint8_t sig[64];
    memset(sig, 0x5a, sizeof sig);
    b_len_field(&b, 7, sig, sizeof sig);
    inject_buf(e->topic, &b);
    case_end(R(SUITE) | R(POLICY) | R(DECODE));

    case_begin("unknown or extra fields");
    /* Genuine envelope plus an unknown field (each number once). */
    const uint32_t extra[] = {7, 8, 9, 15, 16, 100, 536870911};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
        b_envelope(&b, 1, h->epoch, h->sender_id, h->instance, h->seq, ct, ct_len);
        b_len_field(&b, extra[i], (const uint8_t *)"x", 1);
        inject_buf(e->topic, &b);
    }
    /* Unknown varint field, field 0, a second body, a repeated header field,
     * a header field with the wrong wire type, a non-minimal varint. */
    b_envelope(&b, 1, h->epoch, h->sender_id, h->instance, h->seq, ct, ct_len);
    b_key(&b, 12, 0);
    b_varint(&b, 1);
    inject_buf(e->topic, &b);
    b_byte(&b, 0x00);
    b_byte(&b, 0x00);
    b_envelope(&b, 1, h->epoch, h->sender_id, h->instance, h->seq, ct, ct_len);
    inject_buf(e->topic, &b);
    b_envelope(&b, 1, h->epoch, h->sender_id, h->instance, h->seq, ct, ct_len);
    b_len_field(&b, 1, ct, ct_len);
    inject_buf(e->topic, &b);
    b_key(&b, 4, 0);
    b_varint(&b, h->epoch);
    b_envelope(&b, 1, h->epoch, h->sender_id, h->instance, h->seq, ct, ct_len);
    inject_buf(e->topic, &b);
    b_key(&b, 4, 2);
    b_varint(&b, 1);
    b_byte(&b, (uint8_t)h->epoch);
    b_envelope(&b, 1, 0, h->sender_id, h->instance, h->seq, ct, ct_len);
    inject_buf(e->topic, &b);
    b_key(&b, 4, 0);
    b_byte(&b, (uint8_t)(0x80 | h->epoch));
    b_byte(&b, 0x00);
    b_envelope(&b, 1, 0, h->sender_id, h->instance, h->seq, ct, ct_len);
    inject_buf(e->topic, &b);
    case_end(R(DECODE) | R(SUITE));
    cr_assert_eq(cur.r->dropped[MQE2E_DROP_DECODE], cur.r->injected);
}

Test(adversary, truncated_and_oversized)
{
    const envelope_copy *e = &hidden[6];
    const mqe2e_envelope_header *h = &e->view.header;
    buf b = {0};

    case_begin("truncated at every length");
    for (int n = 0; n < e->len; n++)
        inject(e->topic, e->bytes, (size_t)n);
    case_end(R(DECODE));
    cr_assert_eq(cur.r->dropped[MQE2E_DROP_DECODE], e->len);

    case_begin("oversized (> max_payload)");
    const size_t sizes[] = {SUB_MAX_PAYLOAD + MQE2E_TAG_BYTES + 1,
                            SUB_MAX_PAYLOAD + MQE2E_TAG_BYTES + 1000, 64U * 1024U,
                            MQE2E_ENVELOPE_DEFAULT_MAX_PAYLOAD + MQE2E_TAG_BYTES + 1};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint8_t *body = malloc(sizes[i]);
        cr_assert_not_null(body);
        randombytes_buf(body, sizes[i]);
        b_envelope(&b, 1, h->epoch, h->sender_id, h->instance, h->seq + 1 + i, body, sizes[i]);
        inject_buf(e->topic, &b);
        free(body);
    }
    case_end(R(TOO_LARGE));
    cr_assert_eq(cur.r->dropped[MQE2E_DROP_TOO_LARGE], 4);

    /* Lengths that promise far more than is sent. */
    case_begin("length past the end");
    const uint64_t claims[] = {(uint64_t)MQE2E_ENVELOPE_MAX_PAYLOAD + MQE2E_TAG_BYTES + 1,
                               (uint64_t)1 << 40, UINT64_MAX, 1000};
    for (size_t i = 0; i < sizeof claims / sizeof claims[0]; i++) {
        b_key(&b, 4, 0);
        b_varint(&b, h->epoch);
        b_key(&b, 1, 2);
        b_varint(&b, claims[i]);
        b_bytes(&b, e->view.ciphertext, e->view.ciphertext_len);
        inject_buf(e->topic, &b);
    }
    case_end(R(DECODE) | R(TOO_LARGE));
}

Test(adversary, nested_and_random_garbage)
{
    const envelope_copy *e = &hidden[6];
    const mqe2e_envelope_header *h = &e->view.header;
    buf b = {0};

    case_begin("deeply nested protobuf");
    const int depths[] = {16, 1000, 5000};
    const uint32_t fields[] = {1, 2, 3, 7, 8, 9};
    for (size_t d = 0; d < sizeof depths / sizeof depths[0]; d++) {
        for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++) {
            /* Build inside out: each level wraps the previous one as a
             * length-delimited field. */
            buf inner = {0};
            b_bytes(&inner, (const uint8_t *)"\x08\x01", 2);
            for (int lvl = 0; lvl < depths[d]; lvl++) {
                buf outer = {0};
                b_len_field(&outer, fields[f], inner.p, inner.len);
                b_free(&inner);
                inner = outer;
            }
            /* Bare, then behind a genuine header. */
            inject(e->topic, inner.p, inner.len);
            b_key(&b, 4, 0);
            b_varint(&b, h->epoch);
            b_key(&b, 5, 0);
            b_varint(&b, h->sender_id);
            b_key(&b, 6, 0);
            b_varint(&b, h->seq + 7);
            b_bytes(&b, inner.p, inner.len);
            inject_buf(e->topic, &b);
            b_free(&inner);
        }
    }
    case_end(ANY_ENVELOPE_REASON);

    case_begin("random garbage");
    /* Reproducible: a fixed seed, printed lengths 1..600. */
    uint8_t seed[randombytes_SEEDBYTES];
    memset(seed, 0x42, sizeof seed);
    uint8_t *pool = malloc(300 * 600);
    cr_assert_not_null(pool);
    randombytes_buf_deterministic(pool, 300 * 600, seed);
    for (int i = 0; i < 300; i++) {
        size_t len = 1 + (size_t)(pool[i * 600] | pool[i * 600 + 1] << 8) % 600;
        char topic[64];
        snprintf(topic, sizeof topic, "sensors/live/garbage/%d", i % 7);
        inject(topic, pool + i * 600, len);
    }
    free(pool);
    case_end(ANY_ENVELOPE_REASON);
}

Test(adversary, topics_without_policy)
{
    case_begin("no policy for the topic");
    inject("nopolicy/a", seen[0].bytes, (size_t)seen[0].len);
    inject("nopolicy/b", hidden[1].bytes, (size_t)hidden[1].len);
    inject("nopolicy/c", "plain text", 10);
    inject("nopolicy/d", "", 0);
    inject("nopolicy/e/f/g", "\x0a\x10garbage", 9);
    case_end(R(NO_POLICY));
    cr_assert_eq(cur.r->dropped[MQE2E_DROP_NO_POLICY], 5);
}
