/*
 * Signed group mode end to end with the real authority process (`mqe2e
 * authority run`) and a real Mosquitto: the operator creates a signed group,
 * two devices and a backend enroll with tickets granting it, the enrollment
 * replies carry the signer directory (each member's sender id and identity
 * key), devices publish signed telemetry through the Paho front and the
 * backend receives it; a member that forges the other's sender id (signed
 * with its own key, or unsigned with the group key) is dropped, counted and
 * never delivered (docs/PROTOCOL.md 2.9). A member online while others join
 * learns their keys by push, without reconnecting; one that leaves (ungrant,
 * revocation) is gone from the directory the others are pushed.
 */
#include <criterion/criterion.h>
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
#include "inbox.h"
#include "mqe2e/MQTTClient.h"
#include "spy.h"
#include "testutil.h"

#define WAIT_MS 15000L
#define GROUP "ward"

static af_fixture fx;

static void sleep_ms(long ms)
{
    af_sleep_ms(ms);
}

static long now_ms(void)
{
    return (long)(af_mono() * 1000.0);
}

static int op(char *out, size_t cap, const char *args)
{
    return af_op_sh(&fx, out, cap, args);
}

static void setup(void)
{
    memset(&fx, 0, sizeof fx);
    af_setup(&fx, "authority");
    af_authority_start(&fx, NULL);
}

static void teardown(void)
{
    af_authority_kill(&fx, SIGTERM);
    if (getenv("SIGNED_DEBUG")) {
        char *log = tu_read_file(fx.log, NULL);
        if (log != NULL) printf("%s\n", log);
        free(log);
    }
    af_teardown(&fx);
}

TestSuite(signed_authority, .init = setup, .fini = teardown, .timeout = 180);

/* Ticket for the signed group with @p grant, then `mqe2e enroll`. */
static void enroll_grant(const char *id, const char *grant)
{
    af_enroll_in(&fx, id, GROUP, grant);
}

static void enroll(const char *id)
{
    enroll_grant(id, "ward/#:pubsub");
}

static mqe2e_keystore *open_ks(const char *id)
{
    return af_open_ks(&fx, id);
}

static int wait_for(inbox *ib, int dropped, int n)
{
    return inbox_wait(ib, dropped, n, WAIT_MS);
}

static void on_log(void *ctx, mqe2e_log_level level, const char *message)
{
    (void)ctx;
    if (getenv("SIGNED_DEBUG")) printf("  log[%d] %s\n", (int)level, message);
}

/* Publishers subscribe to nothing, but their control plane (the HELLO reply
 * that lets them seal, docs/PROTOCOL.md 9.3) arrives as messages, which Paho
 * only hands to a client with a messageArrived callback. */
static int on_discard(void *ctx, char *topic, int topic_len, MQTTClient_message *msg)
{
    (void)ctx;
    (void)topic_len;
    mqe2e_MQTTClient_freeMessage(&msg);
    mqe2e_MQTTClient_free(topic);
    return 1;
}

static mqe2e_MQTTClient enc_client_policy(const char *mqtt_id, mqe2e_keystore *ks, inbox *ib,
                                          const mqe2e_policy *policy);

static mqe2e_MQTTClient enc_client(const char *mqtt_id, mqe2e_keystore *ks, inbox *ib)
{
    return enc_client_policy(mqtt_id, ks, ib, NULL);
}

static mqe2e_MQTTClient enc_client_policy(const char *mqtt_id, mqe2e_keystore *ks, inbox *ib,
                                          const mqe2e_policy *policy)
{
    mqe2e_MQTTClient_securityOptions so = mqe2e_MQTTClient_securityOptions_initializer;
    so.keystore = ks;
    so.policy = policy;
    so.onDropped = ib != NULL ? inbox_on_dropped : NULL;
    so.onLog = on_log;
    so.logLevel = getenv("SIGNED_DEBUG") ? MQE2E_LOG_DEBUG : MQE2E_LOG_WARNING;
    so.context = ib;
    return inbox_client_open(&fx.broker, mqtt_id, &so, ib != NULL ? inbox_on_message : on_discard,
                          20, 1);
}

static void close_client(mqe2e_MQTTClient *c)
{
    mqe2e_MQTTClient_disconnect(*c, 1000);
    mqe2e_MQTTClient_destroy(c);
}

static void publish_text(mqe2e_MQTTClient c, const char *topic, const char *text)
{
    MQTTClient_deliveryToken dt = 0;
    cr_assert_eq(mqe2e_MQTTClient_publish(c, topic, (int)strlen(text), text, 1, 0, &dt),
                 MQTTCLIENT_SUCCESS);
    cr_assert_eq(mqe2e_MQTTClient_waitForCompletion(c, dt, 5000), MQTTCLIENT_SUCCESS);
}

/* A raw Paho client: the wire observer and the forger's own connection. */
static MQTTClient raw_client(const char *id, rawbox *rb)
{
    return ts_raw_client(tb_broker_uri(&fx.broker), id, rb);
}

static void raw_publish(MQTTClient r, const char *topic, const void *data, size_t len)
{
    MQTTClient_deliveryToken dt = 0;
    cr_assert_eq(MQTTClient_publish(r, topic, (int)len, data, 1, 0, &dt), MQTTCLIENT_SUCCESS);
    cr_assert_eq(MQTTClient_waitForCompletion(r, dt, 5000), MQTTCLIENT_SUCCESS);
}

static uint64_t drops_of(mqe2e_MQTTClient c, mqe2e_drop_reason r)
{
    mqe2e_counters k;
    cr_assert_eq(mqe2e_MQTTClient_getCounters(c, &k), MQTTCLIENT_SUCCESS);
    return k.dropped[r];
}

/* The forger signs with its own identity key, held in its keystore. */
static int sign_as_b(void *ctx, uint8_t sig[MQE2E_SIGNATURE_BYTES], const uint8_t *msg,
                     size_t msg_len)
{
    return mqe2e_keystore_sign(ctx, sig, msg, msg_len);
}

/* The directory entry of @p id in @p ks matches @p member's own identity. */
static void assert_signer(mqe2e_keystore *ks, mqe2e_keystore *member, const char *id)
{
    uint32_t sid = 0;
    uint8_t want[32], got[32];
    const char *cid = NULL;
    cr_assert_eq(mqe2e_keystore_group_sender_id(member, GROUP, &sid), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_identity_public(member, want, NULL), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_signer_lookup(ks, GROUP, sid, got, &cid), MQE2E_OK,
                 "%s (sender %lu) not in the directory", id, (unsigned long)sid);
    cr_assert_eq(memcmp(want, got, 32), 0, "%s: directory key is not its identity key", id);
    cr_assert_str_eq(cid, id);
}

Test(signed_authority, members_sign_backend_verifies_forgery_dropped)
{
    char out[8192];
    cr_assert_eq(op(out, sizeof out, "group create --group " GROUP " --topic 'ward/#' --signed"), 0,
                 "%s", out);
    cr_assert_not_null(strstr(out, "signed"), "%s", out);
    /* The backend enrolls last: its ENROLL reply alone holds the full
     * directory (a member online while others join learns them by push, below). */
    enroll("dev-a");
    enroll("dev-b");
    enroll("backend");
    mqe2e_keystore *ka = open_ks("dev-a"), *kb = open_ks("dev-b"), *kbe = open_ks("backend");
    cr_assert_eq(mqe2e_keystore_group_is_signed(kbe, GROUP), 1, "the bundle marks it signed");
    cr_assert_eq(mqe2e_keystore_signer_count(kbe, GROUP), 3U);
    assert_signer(kbe, ka, "dev-a");
    assert_signer(kbe, kb, "dev-b");
    assert_signer(kbe, kbe, "backend");
    cr_assert_eq(mqe2e_keystore_group_is_signed(ka, GROUP), 1);
    uint32_t sid_a = 0, sid_b = 0;
    cr_assert_eq(mqe2e_keystore_group_sender_id(ka, GROUP, &sid_a), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_sender_id(kb, GROUP, &sid_b), MQE2E_OK);
    cr_assert_neq(sid_a, sid_b);

    inbox ibe;
    memset(&ibe, 0, sizeof ibe);
    pthread_mutex_init(&ibe.m, NULL);
    rawbox spy;
    MQTTClient wire = raw_client("sg-spy", &spy);
    cr_assert_eq(MQTTClient_subscribe(wire, "ward/#", 1), MQTTCLIENT_SUCCESS);
    mqe2e_MQTTClient be = enc_client("sg-backend", kbe, &ibe);
    mqe2e_MQTTClient a = enc_client("sg-dev-a", ka, NULL);
    mqe2e_MQTTClient b = enc_client("sg-dev-b", kb, NULL);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(be, "ward/#", 1), MQTTCLIENT_SUCCESS);

    publish_text(a, "ward/a/hr", "a-72");
    publish_text(b, "ward/b/hr", "b-64");
    cr_assert(wait_for(&ibe, 0, 2), "backend received %d of 2", inbox_count(&ibe));
    cr_assert_str_eq(ibe.payload[0], "a-72");
    cr_assert_str_eq(ibe.payload[1], "b-64");
    cr_assert_eq(inbox_drops(&ibe), 0, "nothing dropped");

    /* On the wire: signed envelopes, 94-95 bytes over the payload. */
    long deadline = now_ms() + WAIT_MS;
    for (;;) {
        pthread_mutex_lock(&spy.m);
        int seen = spy.n;
        pthread_mutex_unlock(&spy.m);
        if (seen >= 2) break;
        cr_assert_lt(now_ms(), deadline, "spy saw %d", seen);
        sleep_ms(10);
    }
    for (int i = 0; i < 2; i++) {
        mqe2e_envelope_view v;
        cr_assert_eq(mqe2e_envelope_parse(&v, spy.data[i], spy.len[i]), MQE2E_OK);
        cr_assert_eq(v.header.mode, MQE2E_MODE_SIGNED_GROUP);
        cr_assert_eq(v.signature_len, 64U);
        size_t overhead = spy.len[i] - 4U;
        cr_assert_leq(overhead, 100U, "signed overhead %zu B", overhead);
        printf("signed envelope on the wire: %zu B for a 4-byte payload (overhead %zu B)\n",
               spy.len[i], overhead);
    }

    /* dev-b turns forger: it holds the group secret and its own identity key. */
    close_client(&b);
    uint8_t secret[MQE2E_GROUP_SECRET_BYTES];
    uint32_t epoch = 0;
    cr_assert_eq(mqe2e_keystore_group_current_epoch(kb, GROUP, &epoch), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_secret(kb, GROUP, epoch, secret, NULL), MQE2E_OK);
    mqe2e_sender_key victim;
    cr_assert_eq(mqe2e_sender_key_derive(&victim, secret, GROUP, epoch, sid_a), MQE2E_OK);
    sodium_memzero(secret, sizeof secret);
    MQTTClient forger = raw_client("sg-forger", NULL);
    uint8_t env[512];
    size_t n = 0;
    const char *text = "a-open-door";

    /* (1) Unsigned group mode under dev-a's sender id: valid AEAD, no signature. */
    mqe2e_envelope_header h = {MQE2E_MODE_GROUP, epoch, sid_a, 900000, 0U};
    cr_assert_eq(mqe2e_envelope_seal(env, sizeof env, &n, &victim, "ward/a/cmd", GROUP, &h,
                                     (const uint8_t *)text, strlen(text)),
                 MQE2E_OK);
    raw_publish(forger, "ward/a/cmd", env, n);
    cr_assert(wait_for(&ibe, 1, 1), "unsigned forgery not counted");
    cr_assert_eq(drops_of(be, MQE2E_DROP_POLICY), 1U);

    /* (2) Signed, by dev-b's own identity key (through its keystore), as dev-a. */
    h.mode = MQE2E_MODE_SIGNED_GROUP;
    h.seq = 900001;
    cr_assert_eq(mqe2e_envelope_seal_signed(env, sizeof env, &n, &victim, "ward/a/cmd", GROUP, &h,
                                            (const uint8_t *)text, strlen(text), sign_as_b, kb),
                 MQE2E_OK);
    raw_publish(forger, "ward/a/cmd", env, n);
    cr_assert(wait_for(&ibe, 1, 2), "signed forgery not counted");
    cr_assert_eq(drops_of(be, MQE2E_DROP_AUTH), 1U);

    /* (3) Through its own protector with dev-a's sender id configured. */
    cr_assert_eq(mqe2e_keystore_group_set_sender_id(kb, GROUP, sid_a), MQE2E_OK);
    mqe2e_policy *pol = NULL;
    mqe2e_protector *pr = NULL;
    cr_assert_eq(mqe2e_policy_new(&pol), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add_keystore_groups(pol, kb), MQE2E_OK);
    cr_assert_eq(mqe2e_protector_new(&pr, kb, pol, NULL), MQE2E_OK);
    cr_assert_eq(mqe2e_protect(pr, "ward/a/cmd", (const uint8_t *)text, strlen(text),
                               (uint64_t)time(NULL), env, sizeof env, &n),
                 MQE2E_OK);
    raw_publish(forger, "ward/a/cmd", env, n);
    cr_assert(wait_for(&ibe, 1, 3), "protector forgery not counted");
    cr_assert_eq(drops_of(be, MQE2E_DROP_AUTH), 2U);
    mqe2e_protector_free(pr);
    mqe2e_policy_free(pol);
    mqe2e_sender_key_wipe(&victim);

    /* None was delivered; dev-a itself still gets through. */
    publish_text(a, "ward/a/hr", "a-73");
    cr_assert(wait_for(&ibe, 0, 3));
    sleep_ms(300);
    cr_assert_eq(inbox_count(&ibe), 3, "a forgery was delivered");
    cr_assert_str_eq(ibe.payload[2], "a-73");
    for (int i = 0; i < 3; i++)
        cr_assert_neq(strcmp(ibe.payload[i], text), 0, "forged text delivered");

    MQTTClient_disconnect(forger, 1000);
    MQTTClient_destroy(&forger);
    MQTTClient_disconnect(wire, 1000);
    MQTTClient_destroy(&wire);
    close_client(&a);
    close_client(&be);
    mqe2e_keystore_close(ka);
    mqe2e_keystore_close(kb);
    mqe2e_keystore_close(kbe);
}

Test(signed_authority, group_list_shows_signed_and_unsigned_groups_unchanged)
{
    char out[8192];
    cr_assert_eq(op(out, sizeof out, "group create --group plain --topic 'plain/#'"), 0, "%s", out);
    cr_assert_eq(op(out, sizeof out, "group create --group " GROUP " --topic 'ward/#' --signed"), 0,
                 "%s", out);
    cr_assert_eq(op(out, sizeof out, "list groups"), 0, "%s", out);
    char *p = strstr(out, "plain\t"), *w = strstr(out, GROUP "\t");
    cr_assert(p != NULL && w != NULL, "%s", out);
    cr_assert_eq(strncmp(strchr(w, '\n') - 6, "signed", 6), 0, "%s", out);
    cr_assert_neq(strncmp(strchr(p, '\n') - 6, "signed", 6), 0, "%s", out);
    /* An enrolled member of the unsigned group gets no directory and stays unsigned. */
    char ticket[8192];
    af_ticket(&fx, ticket, sizeof ticket, "--id dev-p --group plain --grant 'plain/#:pubsub'");
    cr_assert_eq(af_enroll(&fx, "dev-p", ticket), 0);
    mqe2e_keystore *kp = open_ks("dev-p");
    cr_assert_eq(mqe2e_keystore_group_is_signed(kp, "plain"), 0);
    cr_assert_eq(mqe2e_keystore_signer_count(kp, "plain"), 0U);
    mqe2e_keystore_close(kp);
}

static mqe2e_control_counters ctl_of(mqe2e_MQTTClient c)
{
    mqe2e_control_counters k;
    cr_assert_eq(mqe2e_MQTTClient_getControlCounters(c, &k), MQTTCLIENT_SUCCESS);
    return k;
}

/* Wait until @p c applied more than @p seen pushes; the new count. The
 * keystore is read only after this, when the client is done writing it. */
static uint64_t wait_push(mqe2e_MQTTClient c, uint64_t seen)
{
    long deadline = now_ms() + WAIT_MS;
    for (;;) {
        uint64_t n = ctl_of(c).pushes_applied;
        if (n > seen) return n;
        cr_assert_lt(now_ms(), deadline, "no push applied (still %lu)", (unsigned long)seen);
        sleep_ms(10);
    }
}

static int log_has(const char *needle)
{
    char *log = tu_read_file(fx.log, NULL);
    int has = log != NULL && strstr(log, needle) != NULL;
    free(log);
    return has;
}

Test(signed_authority, newcomer_key_pushed_to_members_leaver_dropped)
{
    char out[8192];
    cr_assert_eq(op(out, sizeof out, "group create --group " GROUP " --topic 'ward/#' --signed"), 0,
                 "%s", out);
    /* The backend enrolls first and is online before anyone else joins. */
    enroll("backend");
    mqe2e_keystore *kbe = open_ks("backend");
    cr_assert_eq(mqe2e_keystore_signer_count(kbe, GROUP), 1U);
    inbox ibe;
    memset(&ibe, 0, sizeof ibe);
    pthread_mutex_init(&ibe.m, NULL);
    mqe2e_MQTTClient be = enc_client("sg-backend", kbe, &ibe);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(be, "ward/#", 1), MQTTCLIENT_SUCCESS);
    long deadline = now_ms() + WAIT_MS;
    while (ctl_of(be).handshakes_ok < 1) {
        cr_assert_lt(now_ms(), deadline, "backend HELLO not answered");
        sleep_ms(10);
    }
    uint64_t hellos = ctl_of(be).hellos_sent, pushes = ctl_of(be).pushes_applied;

    /* dev-a joins: its key reaches the connected backend by push, no reconnect. */
    enroll("dev-a");
    pushes = wait_push(be, pushes);
    mqe2e_keystore *ka = open_ks("dev-a");
    cr_assert_eq(mqe2e_keystore_signer_count(kbe, GROUP), 2U);
    assert_signer(kbe, ka, "dev-a");
    assert_signer(kbe, kbe, "backend");
    cr_assert(log_has("group " GROUP ": directory pushed to 1 members after enrollment"),
              "one push, to the backend only");
    mqe2e_MQTTClient a = enc_client("sg-dev-a", ka, NULL);
    publish_text(a, "ward/a/hr", "a-70");
    publish_text(a, "ward/a/hr", "a-71");
    cr_assert(wait_for(&ibe, 0, 2), "backend received %d of 2", inbox_count(&ibe));
    cr_assert_str_eq(ibe.payload[0], "a-70");
    cr_assert_str_eq(ibe.payload[1], "a-71");
    cr_assert_eq(drops_of(be, MQE2E_DROP_UNKNOWN_SIGNER), 0U);
    cr_assert_eq(inbox_drops(&ibe), 0, "nothing dropped");
    cr_assert_eq(ctl_of(be).hellos_sent, hellos, "the backend did not reconnect");

    /* dev-b joins: both online members get one push each. */
    enroll("dev-b");
    pushes = wait_push(be, pushes);
    mqe2e_keystore *kb = open_ks("dev-b");
    cr_assert_eq(mqe2e_keystore_signer_count(kbe, GROUP), 3U);
    assert_signer(kbe, kb, "dev-b");
    cr_assert(log_has("group " GROUP ": directory pushed to 2 members after enrollment"));
    uint32_t sid_a = 0, sid_b = 0;
    cr_assert_eq(mqe2e_keystore_group_sender_id(ka, GROUP, &sid_a), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_sender_id(kb, GROUP, &sid_b), MQE2E_OK);
    mqe2e_keystore_close(kb);
    uint8_t pk[32];
    uint32_t e0 = 0, e1 = 0, e2 = 0;
    cr_assert_eq(mqe2e_keystore_group_current_epoch(kbe, GROUP, &e0), MQE2E_OK);

    /* dev-b is ungranted: the rotation push carries a directory without it. */
    cr_assert_eq(op(out, sizeof out, "group ungrant --group " GROUP " --id dev-b"), 0, "%s", out);
    pushes = wait_push(be, pushes);
    cr_assert_eq(mqe2e_keystore_group_current_epoch(kbe, GROUP, &e1), MQE2E_OK);
    cr_assert_gt(e1, e0);
    cr_assert_eq(mqe2e_keystore_signer_count(kbe, GROUP), 2U);
    cr_assert_eq(mqe2e_keystore_signer_lookup(kbe, GROUP, sid_b, pk, NULL), MQE2E_ERR_NOT_FOUND);
    assert_signer(kbe, ka, "dev-a");

    /* dev-a is revoked: the same, and only the backend is left. */
    close_client(&a);
    cr_assert_eq(op(out, sizeof out, "revoke --id dev-a"), 0, "%s", out);
    pushes = wait_push(be, pushes);
    cr_assert_eq(mqe2e_keystore_group_current_epoch(kbe, GROUP, &e2), MQE2E_OK);
    cr_assert_gt(e2, e1);
    cr_assert_eq(mqe2e_keystore_signer_count(kbe, GROUP), 1U);
    cr_assert_eq(mqe2e_keystore_signer_lookup(kbe, GROUP, sid_a, pk, NULL), MQE2E_ERR_NOT_FOUND);
    assert_signer(kbe, kbe, "backend");
    cr_assert_eq(ctl_of(be).hellos_sent, hellos, "the backend did not reconnect");

    close_client(&be);
    mqe2e_keystore_close(ka);
    mqe2e_keystore_close(kbe);
}

/* Issue 11, item 7: hr-2, granted only `ward/hr-2/#:pub`, publishes on
 * hr-1's topic in a signed group (it holds the group key and signs as
 * itself). Before: the backend delivered it as an hr-1 reading. Now: the
 * directory carries each signer's pub grants and the backend drops it as
 * `grant`; hr-2's message on its own topic is delivered. */
Test(signed_authority, receiver_enforces_pub_grants)
{
    char out[8192];
    cr_assert_eq(op(out, sizeof out, "group create --group " GROUP " --topic 'ward/#' --signed"), 0,
                 "%s", out);
    enroll_grant("hr-1", "ward/hr-1/#:pub");
    enroll_grant("hr-2", "ward/hr-2/#:pub");
    enroll("backend");
    mqe2e_keystore *k2 = open_ks("hr-2"), *kbe = open_ks("backend");
    inbox ibe;
    memset(&ibe, 0, sizeof ibe);
    pthread_mutex_init(&ibe.m, NULL);
    mqe2e_MQTTClient be = enc_client("sg-backend", kbe, &ibe);
    mqe2e_MQTTClient h2 = enc_client("sg-hr-2", k2, NULL);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(be, "ward/#", 1), MQTTCLIENT_SUCCESS);

    publish_text(h2, "ward/hr-1/heartrate", "hr-1 says 190");
    publish_text(h2, "ward/hr-2/heartrate", "hr-2 says 64");
    cr_assert(wait_for(&ibe, 0, 1), "backend received %d", inbox_count(&ibe));
    cr_assert(wait_for(&ibe, 1, 1), "the forged reading was neither delivered nor dropped");
    cr_assert_eq(inbox_count(&ibe), 1, "the reading on hr-1's topic was delivered");
    cr_assert_str_eq(ibe.payload[0], "hr-2 says 64");
    cr_assert_eq(inbox_drops(&ibe), 1);
    cr_assert_eq(ibe.drop_code[0], MQE2E_ERR_GRANT, "dropped as %d, not grant", ibe.drop_code[0]);
    mqe2e_counters c;
    cr_assert_eq(mqe2e_MQTTClient_getCounters(be, &c), MQTTCLIENT_SUCCESS);
    cr_assert_eq(c.dropped[MQE2E_DROP_GRANT], 1);
    close_client(&h2);
    close_client(&be);
    mqe2e_keystore_close(k2);
    mqe2e_keystore_close(kbe);
}

/* Hardening (issue 11): a `plaintext` rule on a topic a signed group covers.
 * Before: the publisher sent it in clear and the receiver delivered raw
 * bytes published by anyone. Now: both sides refuse (`policy`). */
Test(signed_authority, plaintext_rule_cannot_lift_signing)
{
    char out[8192];
    cr_assert_eq(op(out, sizeof out, "group create --group " GROUP " --topic 'ward/#' --signed"), 0,
                 "%s", out);
    enroll("dev-a");
    enroll("backend");
    mqe2e_keystore *ka = open_ks("dev-a"), *kbe = open_ks("backend");
    mqe2e_policy *pa = NULL, *pb = NULL;
    cr_assert_eq(mqe2e_policy_new(&pa), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add_text(pa, "ward/open=plaintext"), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add_keystore_groups(pa, ka), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_new(&pb), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add_text(pb, "ward/open=plaintext"), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add_keystore_groups(pb, kbe), MQE2E_OK);
    inbox ibe;
    memset(&ibe, 0, sizeof ibe);
    pthread_mutex_init(&ibe.m, NULL);
    rawbox spy;
    MQTTClient wire = raw_client("sg-spy-open", &spy);
    cr_assert_eq(MQTTClient_subscribe(wire, "ward/open", 1), MQTTCLIENT_SUCCESS);
    mqe2e_MQTTClient be = enc_client_policy("sg-backend", kbe, &ibe, pb);
    mqe2e_MQTTClient a = enc_client_policy("sg-dev-a", ka, NULL, pa);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(be, "ward/#", 1), MQTTCLIENT_SUCCESS);

    MQTTClient_deliveryToken dt = 0;
    cr_assert_neq(mqe2e_MQTTClient_publish(a, "ward/open", 4, "open", 1, 0, &dt),
                  MQTTCLIENT_SUCCESS, "published in clear on a signed group's topic");
    /* Someone publishes raw bytes there: the backend must not deliver them. */
    MQTTClient r = raw_client("sg-raw-open", NULL);
    raw_publish(r, "ward/open", "UNLOCK", 6);
    cr_assert(wait_for(&ibe, 1, 1), "the raw message was neither delivered nor dropped");
    cr_assert_eq(inbox_count(&ibe), 0, "a plaintext message was delivered on a signed topic");
    cr_assert_eq(ibe.drop_code[0], MQE2E_ERR_POLICY);
    /* Only the raw publish reached the wire. */
    pthread_mutex_lock(&spy.m);
    int seen = spy.n;
    pthread_mutex_unlock(&spy.m);
    cr_assert_leq(seen, 1);
    MQTTClient_disconnect(r, 500);
    MQTTClient_destroy(&r);
    MQTTClient_disconnect(wire, 500);
    MQTTClient_destroy(&wire);
    close_client(&a);
    close_client(&be);
    mqe2e_policy_free(pa);
    mqe2e_policy_free(pb);
    mqe2e_keystore_close(ka);
    mqe2e_keystore_close(kbe);
}
