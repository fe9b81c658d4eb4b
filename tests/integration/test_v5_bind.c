/*
 * Bound MQTT v5 properties and retain flag (docs/PROTOCOL.md 2.5.1) end to
 * end: a real Mosquitto, two encrypted v5 clients of the synchronous front
 * whose policy binds content type, the user property "site" and retain, and
 * a raw Paho v5 client that captures envelopes and re-publishes them with
 * changed, removed or added properties, and as retained. Nothing tampered is
 * delivered; every attempt is counted as `auth`; the untouched envelope
 * re-published afterwards is delivered (so the drops were the properties').
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker.h"
#include "mqe2e/MQTTAsync.h"
#include "mqe2e/MQTTClient.h"
#include "spy.h"
#include "testutil.h"

#define MAXMSG 32
#define WAIT_MS 15000L
#define GROUP "sensors"
#define RULE "sensors/#=group:sensors;bind=content-type,user:site,retain"

static tb_broker broker;
static uint8_t secret[MQE2E_GROUP_SECRET_BYTES];

/* What one client saw. */
typedef struct seen {
    pthread_mutex_t m;
    int encrypted;
    int n;
    struct {
        char topic[64];
        uint8_t payload[512];
        int len;
        int retained;
        MQTTProperties props; /* a copy */
    } msg[MAXMSG];
    int dropped;
    int drop_code[MAXMSG];
} seen;

static void seen_init(seen *s, int encrypted)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->m, NULL);
    s->encrypted = encrypted;
}

static void seen_free(seen *s)
{
    for (int i = 0; i < s->n && i < MAXMSG; i++)
        MQTTProperties_free(&s->msg[i].props);
}

static int on_message(void *ctx, char *topic, int topic_len, MQTTClient_message *msg)
{
    seen *s = ctx;
    (void)topic_len;
    pthread_mutex_lock(&s->m);
    if (s->n < MAXMSG) {
        int k = s->n;
        snprintf(s->msg[k].topic, sizeof s->msg[k].topic, "%s", topic);
        s->msg[k].len = msg->payloadlen;
        if (msg->payloadlen > 0 && msg->payloadlen <= (int)sizeof s->msg[k].payload)
            memcpy(s->msg[k].payload, msg->payload, (size_t)msg->payloadlen);
        s->msg[k].retained = msg->retained;
        s->msg[k].props = MQTTProperties_copy(&msg->properties);
    }
    s->n++;
    pthread_mutex_unlock(&s->m);
    ts_free_message(s->encrypted, &msg, topic);
    return 1;
}

static void on_dropped(void *ctx, const char *topic, int code)
{
    seen *s = ctx;
    (void)topic;
    pthread_mutex_lock(&s->m);
    if (s->dropped < MAXMSG) s->drop_code[s->dropped] = code;
    s->dropped++;
    pthread_mutex_unlock(&s->m);
}

static int get(seen *s, const int *field)
{
    pthread_mutex_lock(&s->m);
    int v = *field;
    pthread_mutex_unlock(&s->m);
    return v;
}

/* Poll until @p done holds (or WAIT_MS passed): 1 when it did. */
static int wait_for(seen *s, int (*done)(seen *, const void *), const void *arg)
{
    long deadline = tu_now_ms() + WAIT_MS;
    while (!done(s, arg)) {
        if (tu_now_ms() > deadline) return 0;
        tu_sleep_ms(10);
    }
    return 1;
}

static int drops_reached(seen *s, const void *n)
{
    return get(s, &s->dropped) >= *(const int *)n;
}

static int wait_drops(seen *s, int n)
{
    return wait_for(s, drops_reached, &n);
}

static int find(seen *s, const char *topic)
{
    int found = -1;
    pthread_mutex_lock(&s->m);
    for (int i = 0; i < s->n && i < MAXMSG && found < 0; i++)
        if (strcmp(s->msg[i].topic, topic) == 0) found = i;
    pthread_mutex_unlock(&s->m);
    return found;
}

static int topic_seen(seen *s, const void *topic)
{
    return find(s, topic) >= 0;
}

static int wait_found(seen *s, const char *topic)
{
    return wait_for(s, topic_seen, topic);
}

static void on_log(void *ctx, mqe2e_log_level level, const char *message)
{
    (void)ctx;
    printf("  log[%d] %s\n", (int)level, message);
}

/* ---------- properties ---------- */

static void add_str(MQTTProperties *p, enum MQTTPropertyCodes id, const char *v)
{
    MQTTProperty q;
    memset(&q, 0, sizeof q);
    q.identifier = id;
    q.value.data.data = (char *)(uintptr_t)v;
    q.value.data.len = (int)strlen(v);
    cr_assert_eq(MQTTProperties_add(p, &q), 0);
}

static void add_user(MQTTProperties *p, const char *k, const char *v)
{
    MQTTProperty q;
    memset(&q, 0, sizeof q);
    q.identifier = MQTTPROPERTY_CODE_USER_PROPERTY;
    q.value.data.data = (char *)(uintptr_t)k;
    q.value.data.len = (int)strlen(k);
    q.value.value.data = (char *)(uintptr_t)v;
    q.value.value.len = (int)strlen(v);
    cr_assert_eq(MQTTProperties_add(p, &q), 0);
}

/* content-type @p ct (NULL: none) and site=@p site (NULL: none), plus an
 * unbound user property the broker may see changed freely. */
static MQTTProperties props_of(const char *ct, const char *site, const char *trace)
{
    MQTTProperties p = MQTTProperties_initializer;
    if (ct != NULL) add_str(&p, MQTTPROPERTY_CODE_CONTENT_TYPE, ct);
    if (site != NULL) add_user(&p, "site", site);
    if (trace != NULL) add_user(&p, "trace", trace);
    return p;
}

static const char *content_type(MQTTProperties *p)
{
    static char buf[64];
    MQTTProperty *q = MQTTProperties_getProperty(p, MQTTPROPERTY_CODE_CONTENT_TYPE);
    if (q == NULL) return NULL;
    snprintf(buf, sizeof buf, "%.*s", q->value.data.len, q->value.data.data);
    return buf;
}

/* ---------- clients ---------- */

static mqe2e_keystore *make_keystore(const char *id)
{
    mqe2e_storage st;
    mqe2e_keystore *ks = NULL;
    cr_assert_eq(mqe2e_storage_memory(&st), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_create(&ks, st, id, 0), MQE2E_OK);
    cr_assert_eq(
        mqe2e_keystore_group_add_epoch(ks, GROUP, "sensors/#", 1, secret, (uint64_t)time(NULL)),
        MQE2E_OK);
    return ks;
}

static mqe2e_MQTTClient enc5(const char *id, mqe2e_keystore *ks, const mqe2e_policy *pol, seen *s)
{
    mqe2e_MQTTClient c = NULL;
    MQTTClient_createOptions cro = MQTTClient_createOptions_initializer;
    mqe2e_MQTTClient_securityOptions so = mqe2e_MQTTClient_securityOptions_initializer;
    MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer5;

    cro.MQTTVersion = MQTTVERSION_5;
    cr_assert_eq(mqe2e_MQTTClient_createWithOptions(&c, tb_broker_uri(&broker), id,
                                                    MQTTCLIENT_PERSISTENCE_NONE, NULL, &cro),
                 MQTTCLIENT_SUCCESS);
    so.keystore = ks;
    so.policy = pol;
    so.onDropped = s != NULL ? on_dropped : NULL;
    so.onLog = on_log;
    so.logLevel = MQE2E_LOG_WARNING;
    so.context = s;
    cr_assert_eq(mqe2e_MQTTClient_setSecurity(c, &so), MQTTCLIENT_SUCCESS);
    if (s != NULL)
        cr_assert_eq(mqe2e_MQTTClient_setCallbacks(c, s, NULL, on_message, NULL),
                     MQTTCLIENT_SUCCESS);
    co.cleanstart = 1;
    MQTTResponse r = mqe2e_MQTTClient_connect5(c, &co, NULL, NULL);
    cr_assert_eq(r.reasonCode, MQTTREASONCODE_SUCCESS, "connect5 %s: %d", id, (int)r.reasonCode);
    MQTTResponse_free(r);
    return c;
}

static MQTTClient raw5(const char *id, seen *s)
{
    MQTTClient c = NULL;
    MQTTClient_createOptions cro = MQTTClient_createOptions_initializer;
    MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer5;
    cro.MQTTVersion = MQTTVERSION_5;
    cr_assert_eq(MQTTClient_createWithOptions(&c, tb_broker_uri(&broker), id,
                                              MQTTCLIENT_PERSISTENCE_NONE, NULL, &cro),
                 MQTTCLIENT_SUCCESS);
    if (s != NULL)
        cr_assert_eq(MQTTClient_setCallbacks(c, s, NULL, on_message, NULL), MQTTCLIENT_SUCCESS);
    co.cleanstart = 1;
    MQTTResponse r = MQTTClient_connect5(c, &co, NULL, NULL);
    cr_assert_eq(r.reasonCode, MQTTREASONCODE_SUCCESS);
    MQTTResponse_free(r);
    return c;
}

static void enc_publish(mqe2e_MQTTClient c, const char *topic, const char *text,
                        MQTTProperties *props, int retained)
{
    MQTTClient_message m = MQTTClient_message_initializer;
    MQTTClient_deliveryToken dt = 0;
    m.payload = (void *)(uintptr_t)text;
    m.payloadlen = (int)strlen(text);
    m.qos = 1;
    m.retained = retained;
    m.properties = *props;
    MQTTResponse r = mqe2e_MQTTClient_publishMessage5(c, topic, &m, &dt);
    cr_assert_eq((int)r.reasonCode, 0, "publishMessage5 %s: %d", topic, (int)r.reasonCode);
    MQTTResponse_free(r);
    cr_assert_eq(mqe2e_MQTTClient_waitForCompletion(c, dt, 5000), MQTTCLIENT_SUCCESS);
}

static void raw_publish(MQTTClient c, const char *topic, const uint8_t *env, int len,
                        MQTTProperties *props, int retained)
{
    MQTTClient_deliveryToken dt = 0;
    MQTTResponse r =
        MQTTClient_publish5(c, topic, len, (void *)(uintptr_t)env, 1, retained, props, &dt);
    cr_assert_eq((int)r.reasonCode, 0);
    MQTTResponse_free(r);
    cr_assert_eq(MQTTClient_waitForCompletion(c, dt, 5000), MQTTCLIENT_SUCCESS);
}

static void subscribe(mqe2e_MQTTClient c)
{
    MQTTResponse r = mqe2e_MQTTClient_subscribe5(c, "sensors/#", 1, NULL, NULL);
    cr_assert_eq((int)r.reasonCode, 1);
    MQTTResponse_free(r);
}

static void setup(void)
{
    cr_assert_eq(mqe2e_init(), MQE2E_OK);
    randombytes_buf(secret, sizeof secret);
    memset(&broker, 0, sizeof broker);
    cr_assert_eq(tb_broker_start(&broker), 0, "mosquitto did not start");
}

static void teardown(void)
{
    tb_broker_stop(&broker);
}

TestSuite(v5_bind, .init = setup, .fini = teardown, .timeout = 120);

/* Captured envelopes, copied out of the raw subscriber. */
typedef struct env {
    uint8_t b[512];
    int len;
} env;

static env capture(seen *raw, const char *topic)
{
    env e;
    cr_assert(wait_found(raw, topic), "nothing captured on %s", topic);
    int i = find(raw, topic);
    pthread_mutex_lock(&raw->m);
    e.len = raw->msg[i].len;
    memcpy(e.b, raw->msg[i].payload, (size_t)e.len);
    pthread_mutex_unlock(&raw->m);
    return e;
}

Test(v5_bind, tampered_properties_and_forged_retain_never_delivered)
{
    mqe2e_policy *pol;
    cr_assert_eq(mqe2e_policy_new(&pol), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add_text(pol, RULE), MQE2E_OK);
    mqe2e_keystore *ks_a = make_keystore("alice"), *ks_b = make_keystore("bob");
    seen raw_in, bob_in;
    seen_init(&raw_in, 0);
    seen_init(&bob_in, 1);

    /* The attacker listens first; bob is not connected yet, so he never
     * accepts these envelopes (a replay would be dropped as `replay`). */
    MQTTClient raw = raw5("raw", &raw_in);
    MQTTResponse r = MQTTClient_subscribe5(raw, "sensors/#", 1, NULL, NULL);
    MQTTResponse_free(r);
    mqe2e_MQTTClient alice = enc5("alice", ks_a, pol, NULL);
    MQTTProperties good = props_of("text/plain", "berlin", "t-1");
    enc_publish(alice, "sensors/live", "21.5", &good, 0);
    enc_publish(alice, "sensors/state", "door=closed", &good, 0);
    env live = capture(&raw_in, "sensors/live");
    env state = capture(&raw_in, "sensors/state");
    /* The raw subscriber sees the properties in clear, next to the envelope. */
    cr_assert_str_eq(content_type(&raw_in.msg[find(&raw_in, "sensors/live")].props), "text/plain");

    /* A live message stored as the topic's retained "current state". */
    raw_publish(raw, "sensors/state", state.b, state.len, &good, 1);
    /* A genuine retained publish, stored before bob subscribes. */
    enc_publish(alice, "sensors/kept", "mode=eco", &good, 1);

    mqe2e_MQTTClient bob = enc5("bob", ks_b, pol, &bob_in);
    subscribe(bob);
    /* Stored messages come with retain 1: the genuine one opens, the forged
     * state does not (it was sealed with retain 0). */
    cr_assert(wait_found(&bob_in, "sensors/kept"));
    cr_assert(wait_drops(&bob_in, 1));
    cr_assert_eq(find(&bob_in, "sensors/state"), -1, "forged retained state delivered");
    int i = find(&bob_in, "sensors/kept");
    cr_assert_eq(bob_in.msg[i].retained, 1);
    cr_assert_arr_eq(bob_in.msg[i].payload, "mode=eco", 8);

    /* The captured live envelope with each bound property changed, removed or added. */
    MQTTProperties ct_changed = props_of("text/html", "berlin", "t-1");
    MQTTProperties site_changed = props_of("text/plain", "paris", "t-1");
    MQTTProperties site_removed = props_of("text/plain", NULL, "t-1");
    MQTTProperties none = MQTTProperties_initializer;
    MQTTProperties site_added = props_of("text/plain", "berlin", "t-1");
    add_user(&site_added, "site", "berlin");
    raw_publish(raw, "sensors/live", live.b, live.len, &ct_changed, 0);
    raw_publish(raw, "sensors/live", live.b, live.len, &site_changed, 0);
    raw_publish(raw, "sensors/live", live.b, live.len, &site_removed, 0);
    raw_publish(raw, "sensors/live", live.b, live.len, &none, 0);
    raw_publish(raw, "sensors/live", live.b, live.len, &site_added, 0);
    cr_assert(wait_drops(&bob_in, 6), "dropped %d of 6", get(&bob_in, &bob_in.dropped));
    cr_assert_eq(find(&bob_in, "sensors/live"), -1, "a tampered message was delivered");

    /* Untouched (an unbound property may change): delivered, with its properties. */
    MQTTProperties trace_changed = props_of("text/plain", "berlin", "t-2");
    raw_publish(raw, "sensors/live", live.b, live.len, &trace_changed, 0);
    cr_assert(wait_found(&bob_in, "sensors/live"));
    i = find(&bob_in, "sensors/live");
    cr_assert_arr_eq(bob_in.msg[i].payload, "21.5", 4);
    cr_assert_str_eq(content_type(&bob_in.msg[i].props), "text/plain");

    /* A genuine retained publish while bob is connected arrives with retain
     * cleared (live delivery): still accepted. */
    enc_publish(alice, "sensors/kept2", "mode=away", &good, 1);
    cr_assert(wait_found(&bob_in, "sensors/kept2"));

    /* Every drop is `auth`, and the counters say so. */
    pthread_mutex_lock(&bob_in.m);
    int dropped = bob_in.dropped;
    for (int k = 0; k < dropped && k < MAXMSG; k++)
        cr_assert_eq(bob_in.drop_code[k], MQE2E_ERR_AUTH, "drop %d: %d", k, bob_in.drop_code[k]);
    pthread_mutex_unlock(&bob_in.m);
    cr_assert_eq(dropped, 6);
    mqe2e_counters k;
    cr_assert_eq(mqe2e_MQTTClient_getCounters(bob, &k), MQTTCLIENT_SUCCESS);
    cr_assert_eq(k.dropped[MQE2E_DROP_AUTH], 6);
    cr_assert_eq(k.opened, 3);
    printf("v5 bind: 6 tampered (1 forged retained state, 5 property edits) dropped as auth, "
           "3 genuine delivered\n");

    MQTTProperties_free(&good);
    MQTTProperties_free(&ct_changed);
    MQTTProperties_free(&site_changed);
    MQTTProperties_free(&site_removed);
    MQTTProperties_free(&site_added);
    MQTTProperties_free(&trace_changed);
    mqe2e_MQTTClient_disconnect5(alice, 1000, MQTTREASONCODE_SUCCESS, NULL);
    mqe2e_MQTTClient_disconnect5(bob, 1000, MQTTREASONCODE_SUCCESS, NULL);
    mqe2e_MQTTClient_destroy(&alice);
    mqe2e_MQTTClient_destroy(&bob);
    MQTTClient_disconnect5(raw, 1000, MQTTREASONCODE_SUCCESS, NULL);
    MQTTClient_destroy(&raw);
    seen_free(&raw_in);
    seen_free(&bob_in);
    mqe2e_keystore_close(ks_a);
    mqe2e_keystore_close(ks_b);
    mqe2e_policy_free(pol);
}

/* ---------- the asynchronous front ---------- */

static int on_async_message(void *ctx, char *topic, int topic_len, MQTTAsync_message *msg)
{
    seen *s = ctx;
    (void)topic_len;
    pthread_mutex_lock(&s->m);
    if (s->n < MAXMSG) {
        int k = s->n;
        snprintf(s->msg[k].topic, sizeof s->msg[k].topic, "%s", topic);
        s->msg[k].len = msg->payloadlen;
        if (msg->payloadlen > 0 && msg->payloadlen <= (int)sizeof s->msg[k].payload)
            memcpy(s->msg[k].payload, msg->payload, (size_t)msg->payloadlen);
        s->msg[k].retained = msg->retained;
        s->msg[k].props = MQTTProperties_copy(&msg->properties);
    }
    s->n++;
    pthread_mutex_unlock(&s->m);
    mqe2e_MQTTAsync_freeMessage(&msg);
    mqe2e_MQTTAsync_free(topic);
    return 1;
}

/* Completed onSuccess5 calls (connect, subscribe, send), counted in seen.n of a side box. */
static void on_ok5(void *ctx, MQTTAsync_successData5 *d)
{
    seen *s = ctx;
    (void)d;
    pthread_mutex_lock(&s->m);
    s->n++;
    pthread_mutex_unlock(&s->m);
}

static int ok_reached(seen *s, const void *n)
{
    return get(s, &s->n) >= *(const int *)n;
}

static void wait_ok(seen *ok, int n)
{
    cr_assert(wait_for(ok, ok_reached, &n), "async call %d did not complete", n);
}

static mqe2e_MQTTAsync enc_async5(const char *id, mqe2e_keystore *ks, const mqe2e_policy *pol,
                                  seen *s, seen *ok)
{
    mqe2e_MQTTAsync c = NULL;
    MQTTAsync_createOptions cro = MQTTAsync_createOptions_initializer;
    mqe2e_MQTTAsync_securityOptions so = mqe2e_MQTTAsync_securityOptions_initializer;
    MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer5;

    cro.MQTTVersion = MQTTVERSION_5;
    cr_assert_eq(mqe2e_MQTTAsync_createWithOptions(&c, tb_broker_uri(&broker), id,
                                                   MQTTCLIENT_PERSISTENCE_NONE, NULL, &cro),
                 MQTTASYNC_SUCCESS);
    so.keystore = ks;
    so.policy = pol;
    so.onDropped = on_dropped;
    so.onLog = on_log;
    so.context = s;
    cr_assert_eq(mqe2e_MQTTAsync_setSecurity(c, &so), MQTTASYNC_SUCCESS);
    cr_assert_eq(mqe2e_MQTTAsync_setCallbacks(c, s, NULL, on_async_message, NULL),
                 MQTTASYNC_SUCCESS);
    co.cleanstart = 1;
    co.context = ok;
    co.onSuccess5 = on_ok5;
    int before = get(ok, &ok->n);
    cr_assert_eq(mqe2e_MQTTAsync_connect(c, &co), MQTTASYNC_SUCCESS);
    wait_ok(ok, before + 1);
    return c;
}

Test(v5_bind, async_front_binds_on_send_and_checks_on_arrival)
{
    mqe2e_policy *pol;
    cr_assert_eq(mqe2e_policy_new(&pol), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add_text(pol, RULE), MQE2E_OK);
    mqe2e_keystore *ks_a = make_keystore("alice"), *ks_b = make_keystore("bob");
    seen raw_in, alice_in, bob_in, ok;
    seen_init(&raw_in, 0);
    seen_init(&alice_in, 1);
    seen_init(&bob_in, 1);
    seen_init(&ok, 0);

    MQTTClient raw = raw5("raw", &raw_in);
    MQTTResponse r = MQTTClient_subscribe5(raw, "sensors/#", 1, NULL, NULL);
    MQTTResponse_free(r);
    mqe2e_MQTTAsync alice = enc_async5("alice", ks_a, pol, &alice_in, &ok);

    /* send(): v5 properties come from the response options, as with Paho. */
    MQTTProperties good = props_of("text/plain", "berlin", NULL);
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.context = &ok;
    ro.onSuccess5 = on_ok5;
    ro.properties = good;
    int before = get(&ok, &ok.n);
    cr_assert_eq(mqe2e_MQTTAsync_send(alice, "sensors/async", 4, "19.0", 1, 0, &ro),
                 MQTTASYNC_SUCCESS);
    wait_ok(&ok, before + 1);
    env e = capture(&raw_in, "sensors/async");

    mqe2e_MQTTAsync bob = enc_async5("bob", ks_b, pol, &bob_in, &ok);
    MQTTAsync_responseOptions so = MQTTAsync_responseOptions_initializer;
    so.context = &ok;
    so.onSuccess5 = on_ok5;
    before = get(&ok, &ok.n);
    cr_assert_eq(mqe2e_MQTTAsync_subscribe(bob, "sensors/#", 1, &so), MQTTASYNC_SUCCESS);
    wait_ok(&ok, before + 1);

    MQTTProperties ct_changed = props_of("application/octet-stream", "berlin", NULL);
    raw_publish(raw, "sensors/async", e.b, e.len, &ct_changed, 0);
    cr_assert(wait_drops(&bob_in, 1));
    cr_assert_eq(find(&bob_in, "sensors/async"), -1, "a tampered message was delivered");
    raw_publish(raw, "sensors/async", e.b, e.len, &good, 0);
    cr_assert(wait_found(&bob_in, "sensors/async"));
    int i = find(&bob_in, "sensors/async");
    cr_assert_arr_eq(bob_in.msg[i].payload, "19.0", 4);
    cr_assert_str_eq(content_type(&bob_in.msg[i].props), "text/plain");
    cr_assert_eq(get(&bob_in, &bob_in.dropped), 1);
    cr_assert_eq(bob_in.drop_code[0], MQE2E_ERR_AUTH);

    MQTTProperties_free(&good);
    MQTTProperties_free(&ct_changed);
    mqe2e_MQTTAsync_destroy(&alice);
    mqe2e_MQTTAsync_destroy(&bob);
    MQTTClient_disconnect5(raw, 1000, MQTTREASONCODE_SUCCESS, NULL);
    MQTTClient_destroy(&raw);
    seen_free(&raw_in);
    seen_free(&bob_in);
    mqe2e_keystore_close(ks_a);
    mqe2e_keystore_close(ks_b);
    mqe2e_policy_free(pol);
}
