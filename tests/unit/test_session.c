/* Unit tests of the sans-I/O device session (session.h), in-process: no
 * broker, no thread, no clock. Frames from the authority are built with the
 * library's own encoders (mqe2e_push_seal) under a test authority's keys. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "mqe2e/keytree.h"
#include "mqe2e/mqe2e.h"

#define T0 1000000ULL
#define PREFIX "mqe2e"
#define AUTH_ID "authority"

static const uint8_t SECRET_1[MQE2E_GROUP_SECRET_BYTES] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
static const uint8_t SECRET_2[MQE2E_GROUP_SECRET_BYTES] = {42, 42, 42, 42, 42, 42, 42, 1};
static const uint8_t SECRET_F[MQE2E_GROUP_SECRET_BYTES] = {99, 98, 97};

/* The test authority's keys. */
static uint8_t auth_sign_pk[crypto_sign_PUBLICKEYBYTES], auth_sign_sk[crypto_sign_SECRETKEYBYTES];
static uint8_t auth_dh_pk[32], auth_dh_sk[32];

/* The receiving device (its session) and a sending device (its protector). */
static mqe2e_keystore *ks_a, *ks_b;
static mqe2e_policy *pol_b;
static mqe2e_protector *pr_b;
static mqe2e_session *sess;

static mqe2e_session_time at(uint64_t wall_s, uint64_t mono_ms)
{
    mqe2e_session_time t = {wall_s, mono_ms};
    return t;
}

static mqe2e_keystore *make_ks(const char *client, uint32_t sender)
{
    mqe2e_storage st;
    mqe2e_keystore *ks = NULL;
    cr_assert_eq(mqe2e_storage_memory(&st), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_create(&ks, st, client, sender), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, "g1", "a/#", 1, SECRET_1, T0), MQE2E_OK);
    return ks;
}

/* Receiver dev-a (with an authority pin when @p control), sender dev-b. */
static void setup_fleet(int control, const mqe2e_session_options *opts)
{
    cr_assert_geq(sodium_init(), 0);
    crypto_sign_keypair(auth_sign_pk, auth_sign_sk);
    randombytes_buf(auth_dh_sk, sizeof auth_dh_sk);
    crypto_scalarmult_base(auth_dh_pk, auth_dh_sk);
    ks_a = make_ks("dev-a", 1);
    ks_b = make_ks("dev-b", 2);
    if (control) {
        mqe2e_authority_pin pin;
        memset(&pin, 0, sizeof pin);
        (void)snprintf(pin.authority_id, sizeof pin.authority_id, "%s", AUTH_ID);
        (void)snprintf(pin.control_prefix, sizeof pin.control_prefix, "%s", PREFIX);
        memcpy(pin.sign_public, auth_sign_pk, sizeof pin.sign_public);
        memcpy(pin.dh_public, auth_dh_pk, sizeof pin.dh_public);
        cr_assert_eq(mqe2e_keystore_set_authority(ks_a, &pin), MQE2E_OK);
    }
    cr_assert_eq(mqe2e_policy_new(&pol_b), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add_keystore_groups(pol_b, ks_b), MQE2E_OK);
    cr_assert_eq(mqe2e_protector_new(&pr_b, ks_b, pol_b, NULL), MQE2E_OK);
    cr_assert_eq(mqe2e_session_new(&sess, ks_a, NULL, opts), MQE2E_OK);
    cr_assert_eq(mqe2e_session_has_control(sess), control);
}

static void teardown_fleet(void)
{
    mqe2e_session_free(sess);
    mqe2e_protector_free(pr_b);
    mqe2e_policy_free(pol_b);
    mqe2e_keystore_close(ks_a);
    mqe2e_keystore_close(ks_b);
    sess = NULL;
}

static void setup_plain(void)
{
    setup_fleet(0, NULL);
}

static void setup_control(void)
{
    setup_fleet(1, NULL);
}

typedef struct msg {
    uint8_t buf[1024];
    size_t len;
} msg;

static void seal_b(const char *topic, const char *text, msg *m)
{
    cr_assert_eq(mqe2e_protect(pr_b, topic, (const uint8_t *)text, strlen(text), T0, m->buf,
                               sizeof m->buf, &m->len),
                 MQE2E_OK);
}

/* Sender dev-b rotates to @p epoch (its protector re-reads the group). */
static void rotate_b(uint32_t epoch, const uint8_t *secret)
{
    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks_b, "g1", NULL, epoch, secret, T0), MQE2E_OK);
    mqe2e_protector_invalidate(pr_b, "g1");
}

static void receive(const char *topic, const msg *m, unsigned flags, mqe2e_session_time t)
{
    cr_assert_eq(mqe2e_session_message_received(sess, topic, strlen(topic), m->buf, m->len, 1, 0,
                                                0, flags, t),
                 MQE2E_OK);
}

/* Take the next action; it must be of @p kind. */
static mqe2e_session_action expect(mqe2e_session_action_kind kind)
{
    mqe2e_session_action a;
    cr_assert_eq(mqe2e_session_next(sess, &a), 1, "an action of kind %d was expected", (int)kind);
    cr_assert_eq(a.kind, kind, "action kind %d, expected %d", (int)a.kind, (int)kind);
    return a;
}

static void expect_none(void)
{
    mqe2e_session_action a;
    cr_assert_eq(mqe2e_session_next(sess, &a), 0, "unexpected action of kind %d", (int)a.kind);
    cr_assert_eq(a.kind, MQE2E_SESSION_NONE);
}

/* Every action until none is left; none of them may be a DELIVER. */
static size_t drain_no_deliver(void)
{
    mqe2e_session_action a;
    size_t n = 0;
    while (mqe2e_session_next(sess, &a)) {
        cr_assert_neq(a.kind, MQE2E_SESSION_DELIVER, "nothing may be delivered");
        n++;
    }
    return n;
}

static uint64_t drops(mqe2e_drop_reason r)
{
    mqe2e_counters k;
    mqe2e_protector_counters(mqe2e_session_protector(sess), &k);
    return k.dropped[r];
}

static mqe2e_session_counters ctl_counters(void)
{
    mqe2e_session_counters k;
    mqe2e_session_get_counters(sess, &k);
    return k;
}

/* A PUSH from the test authority to dev-a carrying @p bundle. */
static void push_frame(msg *m, uint64_t seq, const mqe2e_key_bundle *bundle, const uint8_t *dh_sk)
{
    mqe2e_control_update u;
    mqe2e_key_bundle b = *bundle;
    uint8_t a_dh_pk[32];
    memset(&u, 0, sizeof u);
    u.push_seq = seq;
    u.bundles = &b;
    u.n_bundles = 1;
    cr_assert_eq(mqe2e_keystore_identity_public(ks_a, NULL, a_dh_pk), MQE2E_OK);
    cr_assert_eq(mqe2e_push_seal(m->buf, sizeof m->buf, &m->len, dh_sk, a_dh_pk, PREFIX, AUTH_ID,
                                 &u),
                 MQE2E_OK);
}

static mqe2e_key_bundle bundle_g1(uint32_t epoch, const uint8_t *secret)
{
    mqe2e_key_bundle b;
    memset(&b, 0, sizeof b);
    (void)snprintf(b.group, sizeof b.group, "g1");
    (void)snprintf(b.topic_filter, sizeof b.topic_filter, "a/#");
    b.epoch = epoch;
    memcpy(b.secret, secret, MQE2E_GROUP_SECRET_BYTES);
    b.created_at = T0;
    b.sender_id = 1;
    return b;
}

/* ------------------------------------------------------------------ */
/* Receive path without a control plane                                */

TestSuite(session_plain, .init = setup_plain, .fini = teardown_fleet);

Test(session_plain, deliver_then_commit_then_replay_dropped)
{
    msg m;
    seal_b("a/x", "hello a", &m);
    receive("a/x", &m, 0, at(T0, 1));
    mqe2e_session_action a = expect(MQE2E_SESSION_DELIVER);
    cr_assert_str_eq(a.topic, "a/x");
    cr_assert_eq(a.len, strlen("hello a"));
    cr_assert_eq(memcmp(a.data, "hello a", a.len), 0);
    cr_assert_eq(a.current, 1);
    cr_assert_eq(a.qos, 1);
    cr_assert(a.receipt.active);
    mqe2e_receipt r = a.receipt;
    expect_none();
    /* Not committed yet: the same message may come again (redelivery). */
    receive("a/x", &m, 0, at(T0, 2));
    a = expect(MQE2E_SESSION_DELIVER);
    cr_assert_eq(mqe2e_session_commit(sess, &r), MQE2E_OK);
    /* The second copy's receipt names the same message: a replay now. */
    cr_assert_eq(mqe2e_session_commit(sess, &a.receipt), MQE2E_ERR_REPLAY);
    receive("a/x", &m, 0, at(T0, 3));
    a = expect(MQE2E_SESSION_DROP);
    cr_assert_eq(a.code, MQE2E_ERR_REPLAY);
    cr_assert_eq(a.current, 1);
    cr_assert_geq(drops(MQE2E_DROP_REPLAY), 1);
}

/* The one-call fast path: same outcome as message_received + next, and the
 * receipt still waits for the caller's commit. */
Test(session_plain, receive_one_delivers_and_commits_only_when_asked)
{
    msg m;
    mqe2e_session_action a;
    seal_b("a/x", "hello a", &m);
    cr_assert_eq(mqe2e_session_receive_one(sess, "a/x", 3, m.buf, m.len, 1, 0, 0, 0, at(T0, 1),
                                           &a),
                 1);
    cr_assert_eq(a.kind, MQE2E_SESSION_DELIVER);
    cr_assert_eq(a.current, 1);
    cr_assert_str_eq(a.topic, "a/x");
    cr_assert_eq(a.len, strlen("hello a"));
    cr_assert_eq(memcmp(a.data, "hello a", a.len), 0);
    cr_assert(a.receipt.active);
    expect_none();
    /* Not committed: it comes again; committed: a replay, counted. */
    cr_assert_eq(mqe2e_session_receive_one(sess, "a/x", 3, m.buf, m.len, 1, 0, 0, 0, at(T0, 2),
                                           &a),
                 1);
    cr_assert_eq(a.kind, MQE2E_SESSION_DELIVER);
    cr_assert_eq(mqe2e_session_commit(sess, &a.receipt), MQE2E_OK);
    cr_assert_eq(mqe2e_session_receive_one(sess, "a/x", 3, m.buf, m.len, 1, 0, 0, 0, at(T0, 3),
                                           &a),
                 1);
    cr_assert_eq(a.kind, MQE2E_SESSION_DROP);
    cr_assert_eq(a.code, MQE2E_ERR_REPLAY);
    cr_assert_geq(drops(MQE2E_DROP_REPLAY), 1);
    /* A fresh message, tampered: a drop with its reason, never a delivery. */
    seal_b("a/x", "second", &m);
    m.buf[m.len - 1] ^= 1;
    cr_assert_eq(mqe2e_session_receive_one(sess, "a/x", 3, m.buf, m.len, 1, 0, 0, 0, at(T0, 4),
                                           &a),
                 1);
    cr_assert_eq(a.kind, MQE2E_SESSION_DROP);
    cr_assert_eq(a.code, MQE2E_ERR_AUTH);
    cr_assert_null(a.data);
    cr_assert_eq(mqe2e_session_receive_one(NULL, "a/x", 3, m.buf, m.len, 1, 0, 0, 0, at(T0, 5),
                                           &a),
                 MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_session_receive_one(sess, "a/x", 3, m.buf, m.len, 1, 0, 0, 0, at(T0, 5),
                                           NULL),
                 MQE2E_ERR_INVALID_ARG);
}

/* The deferred commit of bindings: the receipt of the message accepted
 * before is committed first, so a duplicate of it meets the updated window;
 * the caller's copy is wiped; a second commit of it is reported, not lost. */
Test(session_plain, commit_receive_one_commits_the_accepted_receipt_first)
{
    msg m, m2;
    mqe2e_session_action a;
    mqe2e_receipt kept;
    int crc = 12345;
    seal_b("a/x", "first", &m);
    seal_b("a/x", "second", &m2);
    cr_assert_eq(mqe2e_session_commit_receive_one(sess, NULL, NULL, "a/x", 3, m.buf, m.len, 1, 0,
                                                  0, 0, at(T0, 1), &a),
                 1);
    cr_assert_eq(a.kind, MQE2E_SESSION_DELIVER);
    cr_assert(a.receipt.active);
    kept = a.receipt;
    /* Not handed back (the application refused it): it comes again. */
    cr_assert_eq(mqe2e_session_commit_receive_one(sess, NULL, &crc, "a/x", 3, m.buf, m.len, 1, 0,
                                                  0, 0, at(T0, 2), &a),
                 1);
    cr_assert_eq(a.kind, MQE2E_SESSION_DELIVER);
    cr_assert_eq(crc, MQE2E_OK, "nothing to commit: MQE2E_OK");
    kept = a.receipt;
    /* Handed back with the same message again: committed first, a replay. */
    cr_assert_eq(mqe2e_session_commit_receive_one(sess, &kept, &crc, "a/x", 3, m.buf, m.len, 1, 0,
                                                  0, 0, at(T0, 3), &a),
                 1);
    cr_assert_eq(crc, MQE2E_OK);
    cr_assert_eq(a.kind, MQE2E_SESSION_DROP);
    cr_assert_eq(a.code, MQE2E_ERR_REPLAY);
    cr_assert_eq(kept.active, 0, "the caller's copy is wiped");
    for (size_t i = 0; i < sizeof kept; i++) cr_assert_eq(((const uint8_t *)&kept)[i], 0);
    /* A new message; its receipt kept, then the same receipt twice. */
    cr_assert_eq(mqe2e_session_commit_receive_one(sess, NULL, NULL, "a/x", 3, m2.buf, m2.len, 1,
                                                  0, 0, 0, at(T0, 4), &a),
                 1);
    cr_assert_eq(a.kind, MQE2E_SESSION_DELIVER);
    mqe2e_receipt twice = a.receipt;
    kept = a.receipt;
    cr_assert_eq(mqe2e_session_commit(sess, &twice), MQE2E_OK);
    cr_assert_eq(mqe2e_session_commit_receive_one(sess, &kept, &crc, "a/x", 3, m2.buf, m2.len, 1,
                                                  0, 0, 0, at(T0, 5), &a),
                 1);
    cr_assert_eq(crc, MQE2E_ERR_REPLAY);
    cr_assert_eq(a.kind, MQE2E_SESSION_DROP);
    cr_assert_eq(mqe2e_session_commit_receive_one(sess, &kept, NULL, "a/x", 3, m2.buf, m2.len, 1,
                                                  0, 0, 0, at(T0, 6), &a),
                 MQE2E_ERR_INVALID_ARG);
}

/* mqe2e_session_receive_rx(): the same order as commit_receive_one (the
 * accepted receipt first, so its duplicate is a replay), the commit only
 * when rx.commit is 1 (an active receipt left in rx.accepted with commit 0
 * is never committed: the application refused it), and meta's bits reach
 * the delivery. */
Test(session_plain, receive_rx_commits_only_what_was_accepted_first)
{
    msg m, m2;
    mqe2e_session_rx rx;
    memset(&rx, 0, sizeof rx);
    seal_b("a/x", "first", &m);
    seal_b("a/x", "second", &m2);
    rx.now = at(T0, 1);
    cr_assert_eq(mqe2e_session_receive_rx(sess, &rx, "a/x", 3, m.buf, m.len,
                                          1U | MQE2E_SESSION_RX_RETAINED | MQE2E_SESSION_RX_DUP),
                 1);
    cr_assert_eq(rx.out.kind, MQE2E_SESSION_DELIVER);
    cr_assert_eq(rx.out.qos, 1);
    cr_assert(rx.out.retained && rx.out.dup);
    cr_assert(rx.out.receipt.active);
    /* Refused by the application: kept in rx.accepted but commit 0. */
    rx.accepted = rx.out.receipt;
    rx.now = at(T0, 2);
    cr_assert_eq(mqe2e_session_receive_rx(sess, &rx, "a/x", 3, m.buf, m.len, 0), 1);
    cr_assert_eq(rx.out.kind, MQE2E_SESSION_DELIVER, "not committed: it comes again");
    cr_assert_eq(rx.out.qos, 0);
    cr_assert(!rx.out.retained && !rx.out.dup);
    cr_assert_eq(rx.commit_rc, MQE2E_OK);
    /* Accepted this time: committed first, so the same message is a replay. */
    rx.accepted = rx.out.receipt;
    rx.commit = 1;
    rx.commit_rc = 12345;
    rx.now = at(T0, 3);
    cr_assert_eq(mqe2e_session_receive_rx(sess, &rx, "a/x", 3, m.buf, m.len, 1), 1);
    cr_assert_eq(rx.commit_rc, MQE2E_OK);
    cr_assert_eq(rx.commit, 0, "reset by the call");
    cr_assert_eq(rx.out.kind, MQE2E_SESSION_DROP);
    cr_assert_eq(rx.out.code, MQE2E_ERR_REPLAY);
    for (size_t i = 0; i < sizeof rx.accepted; i++)
        cr_assert_eq(((const uint8_t *)&rx.accepted)[i], 0, "the accepted receipt is wiped");
    /* A receipt committed in between: the deferred commit reports a replay. */
    rx.now = at(T0, 4);
    cr_assert_eq(mqe2e_session_receive_rx(sess, &rx, "a/x", 3, m2.buf, m2.len, 1), 1);
    cr_assert_eq(rx.out.kind, MQE2E_SESSION_DELIVER);
    mqe2e_receipt twice = rx.out.receipt;
    rx.accepted = rx.out.receipt;
    cr_assert_eq(mqe2e_session_commit(sess, &twice), MQE2E_OK);
    rx.commit = 1;
    rx.now = at(T0, 5);
    cr_assert_eq(mqe2e_session_receive_rx(sess, &rx, "a/x", 3, m2.buf, m2.len, 1), 1);
    cr_assert_eq(rx.commit_rc, MQE2E_ERR_REPLAY);
    cr_assert_eq(rx.out.kind, MQE2E_SESSION_DROP);
    cr_assert_eq(mqe2e_session_receive_rx(NULL, &rx, "a/x", 3, m2.buf, m2.len, 1),
                 MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_session_receive_rx(sess, NULL, "a/x", 3, m2.buf, m2.len, 1),
                 MQE2E_ERR_INVALID_ARG);
}

/* The session recycles a released action's buffers (no allocation per
 * message): the plaintext of a DELIVER is wiped when the caller's next call
 * releases it, a DROP reusing the buffer hands out no data, and a longer
 * message or topic after a shorter one comes out whole. (White-box: the
 * first buffer is large enough to be reused, so it is still the session's
 * memory when read here; a session that only freed it would fail under the
 * sanitizers, one that did not wipe it fails the zero check.) */
Test(session_plain, recycled_action_buffers_are_wiped_and_reused_whole)
{
    static const char first[] = "the first plaintext, longer than the second";
    static const char third[] = "a third plaintext, longer than either of the two before it, "
                                "so the recycled buffer has to grow";
    static const uint8_t zeros[sizeof first] = {0};
    msg m;
    mqe2e_session_action a;
    seal_b("a/x", first, &m);
    cr_assert_eq(mqe2e_session_receive_one(sess, "a/x", 3, m.buf, m.len, 1, 0, 0, 0, at(T0, 1),
                                           &a),
                 1);
    cr_assert_eq(a.kind, MQE2E_SESSION_DELIVER);
    cr_assert_eq(a.len, strlen(first));
    const uint8_t *kept = a.data;
    cr_assert_eq(memcmp(kept, first, a.len), 0);
    cr_assert_eq(mqe2e_session_commit(sess, &a.receipt), MQE2E_OK);

    seal_b("a/longer/topic/name", "x", &m);
    m.buf[m.len - 1] ^= 1;
    cr_assert_eq(mqe2e_session_receive_one(sess, "a/longer/topic/name", 19, m.buf, m.len, 1, 0,
                                           0, 0, at(T0, 2), &a),
                 1);
    cr_assert_eq(a.kind, MQE2E_SESSION_DROP);
    cr_assert_eq(a.code, MQE2E_ERR_AUTH);
    cr_assert_null(a.data);
    cr_assert_str_eq(a.topic, "a/longer/topic/name");
    cr_assert_eq(memcmp(kept, zeros, strlen(first)), 0, "a released plaintext was not wiped");

    seal_b("a/y", third, &m);
    cr_assert_eq(mqe2e_session_receive_one(sess, "a/y", 3, m.buf, m.len, 1, 0, 0, 0, at(T0, 3),
                                           &a),
                 1);
    cr_assert_eq(a.kind, MQE2E_SESSION_DELIVER);
    cr_assert_str_eq(a.topic, "a/y");
    cr_assert_eq(a.len, strlen(third));
    cr_assert_eq(memcmp(a.data, third, a.len), 0);
    cr_assert_eq(mqe2e_session_commit(sess, &a.receipt), MQE2E_OK);
    expect_none();
}

Test(session_plain, every_drop_reason_is_counted_and_never_delivered)
{
    msg m, t;
    seal_b("a/x", "secret", &m);

    /* A topic without a policy. */
    receive("b/x", &m, 0, at(T0, 1));
    cr_assert_eq(expect(MQE2E_SESSION_DROP).code, MQE2E_ERR_NO_POLICY);
    /* Moved to another topic of the group: the topic is authenticated. */
    receive("a/y", &m, 0, at(T0, 1));
    cr_assert_eq(expect(MQE2E_SESSION_DROP).code, MQE2E_ERR_AUTH);
    /* Every byte flipped in turn. */
    for (size_t i = 0; i < m.len; i++) {
        t = m;
        t.buf[i] ^= 0x40;
        receive("a/x", &t, 0, at(T0, 1));
        mqe2e_session_action a = expect(MQE2E_SESSION_DROP);
        cr_assert_lt(a.code, 0);
    }
    /* Truncated, empty. */
    t = m;
    t.len = 3;
    receive("a/x", &t, 0, at(T0, 1));
    cr_assert_eq(expect(MQE2E_SESSION_DROP).code, MQE2E_ERR_DECODE);
    cr_assert_eq(mqe2e_session_message_received(sess, "a/x", 3, NULL, 0, 0, 0, 0, 0, at(T0, 1)),
                 MQE2E_OK);
    cr_assert_eq(expect(MQE2E_SESSION_DROP).code, MQE2E_ERR_DECODE);
    /* NULL payload with a length, a NUL inside the topic, no topic at all. */
    cr_assert_eq(mqe2e_session_message_received(sess, "a/x", 3, NULL, 5, 0, 0, 0, 0, at(T0, 1)),
                 MQE2E_OK);
    cr_assert_eq(expect(MQE2E_SESSION_DROP).code, MQE2E_ERR_DECODE);
    cr_assert_eq(mqe2e_session_message_received(sess, "a/x\0b", 5, m.buf, m.len, 0, 0, 0, 0,
                                                at(T0, 1)),
                 MQE2E_OK);
    cr_assert_eq(expect(MQE2E_SESSION_DROP).code, MQE2E_ERR_DECODE);
    cr_assert_eq(mqe2e_session_message_received(sess, NULL, 0, m.buf, m.len, 0, 0, 0, 0,
                                                at(T0, 1)),
                 MQE2E_OK);
    cr_assert_eq(expect(MQE2E_SESSION_DROP).code, MQE2E_ERR_DECODE);
    /* An epoch this keystore never had (no control plane: nothing is held). */
    rotate_b(2, SECRET_2);
    seal_b("a/x", "later", &t);
    receive("a/x", &t, 0, at(T0, 1));
    cr_assert_eq(expect(MQE2E_SESSION_DROP).code, MQE2E_ERR_NO_KEY);
    expect_none();
    cr_assert_eq(drops(MQE2E_DROP_NO_POLICY), 1);
    cr_assert_geq(drops(MQE2E_DROP_AUTH), 1);
    cr_assert_geq(drops(MQE2E_DROP_DECODE), 5);
    cr_assert_geq(drops(MQE2E_DROP_NO_KEY), 1);
    /* The genuine message still opens: nothing above advanced the window. */
    receive("a/x", &m, 0, at(T0, 2));
    cr_assert_eq(memcmp(expect(MQE2E_SESSION_DELIVER).data, "secret", 6), 0);
}

Test(session_plain, publish_seals_and_refuses_no_policy)
{
    uint8_t out[512];
    size_t out_len = 0;
    const char *text = "up";
    cr_assert_leq(mqe2e_session_publish_bound(2), sizeof out);
    cr_assert_eq(mqe2e_session_publish(sess, "a/x", (const uint8_t *)text, 2, 1, 0, at(T0, 1), out,
                                       sizeof out, &out_len),
                 MQE2E_OK);
    cr_assert_gt(out_len, 2);
    /* dev-b opens what dev-a's session sealed. */
    uint8_t pt[512];
    size_t pt_len = 0;
    cr_assert_eq(mqe2e_unprotect(pr_b, "a/x", out, out_len, T0, pt, sizeof pt, &pt_len), MQE2E_OK);
    cr_assert_eq(pt_len, 2);
    /* Never a clear-text fallback. */
    cr_assert_eq(mqe2e_session_publish(sess, "b/x", (const uint8_t *)text, 2, 1, 0, at(T0, 1), out,
                                       sizeof out, &out_len),
                 MQE2E_ERR_NO_POLICY);
    cr_assert_eq(out_len, 0);
    /* Without a control plane: no subscriptions, no HELLO, no timer. */
    cr_assert_eq(mqe2e_session_connected(sess, at(T0, 1)), MQE2E_OK);
    expect_none();
    cr_assert_eq(mqe2e_session_next_timer(sess, at(T0, 1)), UINT64_MAX);
}

/* ------------------------------------------------------------------ */
/* Control plane                                                        */

TestSuite(session_control, .init = setup_control, .fini = teardown_fleet);

Test(session_control, connect_subscribes_then_hellos_and_retries)
{
    cr_assert_eq(mqe2e_session_connected(sess, at(T0, 1000)), MQE2E_OK);
    mqe2e_session_action a = expect(MQE2E_SESSION_SUBSCRIBE);
    cr_assert_str_eq(a.topic, PREFIX "/client/dev-a");
    cr_assert_eq(a.qos, 1);
    a = expect(MQE2E_SESSION_SUBSCRIBE);
    cr_assert_str_eq(a.topic, PREFIX "/revocations");
    /* No key-tree topic: this session is a member of no tree group yet
     * (PROTOCOL.md §10.9; key_tree_subscriptions_* below). */
    a = expect(MQE2E_SESSION_PUBLISH);
    cr_assert_str_eq(a.topic, PREFIX "/authority");
    cr_assert_eq(a.qos, 1);
    cr_assert_eq(a.retained, 0);
    mqe2e_control_frame f;
    cr_assert_eq(mqe2e_control_frame_decode(&f, a.data, a.len), MQE2E_OK);
    cr_assert_eq(f.kind, MQE2E_CONTROL_HELLO);
    cr_assert_str_eq(f.from, "dev-a");
    expect_none();
    cr_assert_eq(ctl_counters().hellos_sent, 1);
    /* The credential renewal check is due at once, then the retry 3 s later. */
    cr_assert_eq(mqe2e_session_next_timer(sess, at(T0, 1000)), 1000);
    cr_assert_eq(mqe2e_session_tick(sess, 1, at(T0, 1000)), MQE2E_OK);
    expect_none();
    cr_assert_eq(mqe2e_session_next_timer(sess, at(T0, 1000)), 4000);
    cr_assert_eq(mqe2e_session_tick(sess, 1, at(T0 + 1, 2000)), MQE2E_OK);
    expect_none();
    /* Disconnected: no retry goes out. */
    cr_assert_eq(mqe2e_session_tick(sess, 0, at(T0 + 3, 4000)), MQE2E_OK);
    expect_none();
    cr_assert_eq(mqe2e_session_tick(sess, 1, at(T0 + 3, 4000)), MQE2E_OK);
    cr_assert_str_eq(expect(MQE2E_SESSION_PUBLISH).topic, PREFIX "/authority");
    cr_assert_eq(ctl_counters().hellos_sent, 2);
}

Test(session_control, group_publish_refused_until_the_authority_is_heard)
{
    uint8_t out[512];
    size_t out_len = 0;
    msg p;
    mqe2e_key_bundle b = bundle_g1(1, SECRET_1);

    cr_assert_eq(mqe2e_session_publish(sess, "a/x", (const uint8_t *)"v", 1, 1, 0, at(T0, 10), out,
                                       sizeof out, &out_len),
                 MQE2E_ERR_EXPIRED);
    cr_assert_eq(ctl_counters().stale_refused, 1);
    cr_assert_eq(mqe2e_session_fresh(sess, at(T0, 10)), 0);
    /* An authenticated PUSH is an answer of the authority. */
    push_frame(&p, 1, &b, auth_dh_sk);
    receive(PREFIX "/client/dev-a", &p, 0, at(T0, 20));
    drain_no_deliver();
    cr_assert_eq(ctl_counters().pushes_applied, 1);
    cr_assert_eq(mqe2e_session_fresh(sess, at(T0, 20)), 1);
    cr_assert_eq(mqe2e_session_publish(sess, "a/x", (const uint8_t *)"v", 1, 1, 0, at(T0, 30), out,
                                       sizeof out, &out_len),
                 MQE2E_OK);
    /* Past the freshness bound (900 s by default): refused again. */
    cr_assert_eq(mqe2e_session_fresh(sess, at(T0, 20 + 900001)), 0);
    cr_assert_eq(mqe2e_session_publish(sess, "a/x", (const uint8_t *)"v", 1, 1, 0,
                                       at(T0 + 901, 20 + 900001), out, sizeof out, &out_len),
                 MQE2E_ERR_EXPIRED);
}

Test(session_control, forged_or_replayed_push_is_refused)
{
    msg p, bad;
    uint8_t other_sk[32];
    mqe2e_key_bundle b = bundle_g1(2, SECRET_2);

    /* Sealed by someone who is not the pinned authority. */
    randombytes_buf(other_sk, sizeof other_sk);
    push_frame(&bad, 1, &b, other_sk);
    receive(PREFIX "/client/dev-a", &bad, 0, at(T0, 1));
    drain_no_deliver();
    cr_assert_eq(ctl_counters().pushes_refused, 1);
    cr_assert_eq(ctl_counters().pushes_applied, 0);
    uint32_t cur = 0;
    cr_assert_eq(mqe2e_keystore_group_current_epoch(ks_a, "g1", &cur), MQE2E_OK);
    cr_assert_eq(cur, 1);
    /* The genuine one applies once; its replay is refused. */
    push_frame(&p, 5, &b, auth_dh_sk);
    receive(PREFIX "/client/dev-a", &p, 0, at(T0, 2));
    receive(PREFIX "/client/dev-a", &p, 0, at(T0, 3));
    drain_no_deliver();
    cr_assert_eq(ctl_counters().pushes_applied, 1);
    cr_assert_eq(ctl_counters().pushes_refused, 2);
    cr_assert_eq(mqe2e_keystore_group_current_epoch(ks_a, "g1", &cur), MQE2E_OK);
    cr_assert_eq(cur, 2);
    /* Garbage on the inbox is ignored, never delivered. */
    bad.len = 7;
    receive(PREFIX "/client/dev-a", &bad, 0, at(T0, 4));
    drain_no_deliver();
    cr_assert_geq(ctl_counters().control_ignored, 1);
}

Test(session_control, newer_epoch_is_held_then_released_when_its_key_arrives)
{
    msg m, p;
    mqe2e_key_bundle b = bundle_g1(2, SECRET_2);

    cr_assert_eq(mqe2e_session_connected(sess, at(T0, 100)), MQE2E_OK);
    cr_assert_eq(drain_no_deliver(), 3); /* inbox, revocations, HELLO */
    rotate_b(2, SECRET_2);
    seal_b("a/x", "after rotation", &m);
    receive("a/x", &m, 0, at(T0, 200));
    /* Held: nothing delivered or dropped; a HELLO is under way already. */
    expect_none();
    cr_assert_eq(ctl_counters().held, 1);
    cr_assert_neq(mqe2e_session_next_timer(sess, at(T0, 200)), UINT64_MAX);
    /* The key arrives by PUSH: the held message is delivered from the queue. */
    push_frame(&p, 1, &b, auth_dh_sk);
    receive(PREFIX "/client/dev-a", &p, 0, at(T0 + 1, 1200));
    mqe2e_session_action a = expect(MQE2E_SESSION_DELIVER);
    cr_assert_str_eq(a.topic, "a/x");
    cr_assert_eq(a.current, 0);
    cr_assert_eq(a.len, strlen("after rotation"));
    cr_assert_eq(memcmp(a.data, "after rotation", a.len), 0);
    cr_assert(a.receipt.active);
    cr_assert_eq(mqe2e_session_commit(sess, &a.receipt), MQE2E_OK);
    expect_none();
    cr_assert_eq(ctl_counters().released, 1);
    /* Known now: the next one of that epoch is delivered at once. */
    seal_b("a/x", "next", &m);
    receive("a/x", &m, 0, at(T0 + 1, 1300));
    cr_assert_eq(expect(MQE2E_SESSION_DELIVER).current, 1);
}

/* Several actions waiting: receive_one takes none of them; the delivery
 * comes from mqe2e_session_next() after the earlier actions. */
Test(session_control, receive_one_leaves_several_actions_to_next)
{
    msg m;
    mqe2e_session_action a;
    cr_assert_eq(mqe2e_session_connected(sess, at(T0, 100)), MQE2E_OK);
    size_t before = mqe2e_session_pending(sess);
    cr_assert_geq(before, 1);
    seal_b("a/x", "queued behind", &m);
    cr_assert_eq(mqe2e_session_receive_one(sess, "a/x", 3, m.buf, m.len, 1, 0, 0, 0,
                                           at(T0, 200), &a),
                 0);
    cr_assert_eq(a.kind, MQE2E_SESSION_NONE);
    cr_assert_eq(mqe2e_session_pending(sess), before + 1);
    for (size_t i = 0; i < before; i++) {
        cr_assert_eq(mqe2e_session_next(sess, &a), 1);
        cr_assert_neq(a.kind, MQE2E_SESSION_DELIVER);
    }
    a = expect(MQE2E_SESSION_DELIVER);
    cr_assert_eq(a.len, strlen("queued behind"));
    cr_assert_eq(a.current, 1);
    expect_none();
}

Test(session_control, held_messages_expire_as_no_key)
{
    msg m;
    rotate_b(2, SECRET_2);
    seal_b("a/x", "never keyed", &m);
    receive("a/x", &m, 0, at(T0, 100));
    /* Not connected: the HELLO it triggers goes out anyway as an action. */
    drain_no_deliver();
    cr_assert_eq(ctl_counters().held, 1);
    cr_assert_eq(mqe2e_session_tick(sess, 0, at(T0 + 5, 5100)), MQE2E_OK);
    expect_none();
    cr_assert_eq(mqe2e_session_tick(sess, 0, at(T0 + MQE2E_HOLDQ_DEFAULT_AGE + 1, 40000)),
                 MQE2E_OK);
    mqe2e_session_action a = expect(MQE2E_SESSION_DROP);
    cr_assert_eq(a.code, MQE2E_ERR_NO_KEY);
    cr_assert_eq(a.current, 0);
    expect_none();
    cr_assert_eq(ctl_counters().hold_dropped, 1);
    cr_assert_eq(drops(MQE2E_DROP_NO_KEY), 1);
}

Test(session_control, far_future_epoch_and_no_hold_are_dropped_at_once)
{
    msg m;
    /* More than 16 epochs ahead is a forgery, never held. */
    rotate_b(18, SECRET_F);
    seal_b("a/x", "far", &m);
    receive("a/x", &m, 0, at(T0, 100));
    mqe2e_session_action a = expect(MQE2E_SESSION_DROP);
    cr_assert_eq(a.code, MQE2E_ERR_NO_KEY);
    cr_assert_eq(a.current, 1);
    expect_none();
    cr_assert_eq(ctl_counters().held, 0);
    /* A caller that cannot take released messages later: not held either. */
    rotate_b(19, SECRET_2);
    seal_b("a/x", "no hold", &m);
    receive("a/x", &m, MQE2E_SESSION_NO_HOLD, at(T0, 200));
    drain_no_deliver();
    cr_assert_eq(ctl_counters().held, 0);
    cr_assert_geq(drops(MQE2E_DROP_NO_KEY), 2);
}

Test(session_control, hold_queue_bounds_one_topic)
{
    mqe2e_session_options o = MQE2E_SESSION_OPTIONS_INIT;
    msg m;
    mqe2e_session_free(sess);
    o.hold_count = 16; /* one topic may take 1/8: 2 messages */
    cr_assert_eq(mqe2e_session_new(&sess, ks_a, NULL, &o), MQE2E_OK);
    rotate_b(2, SECRET_2);
    for (int i = 0; i < 5; i++) {
        seal_b("a/flood", "x", &m);
        receive("a/flood", &m, 0, at(T0, (uint64_t)(100 + i)));
    }
    size_t dropped = 0;
    mqe2e_session_action a;
    while (mqe2e_session_next(sess, &a)) {
        cr_assert_neq(a.kind, MQE2E_SESSION_DELIVER);
        if (a.kind == MQE2E_SESSION_DROP) {
            cr_assert_eq(a.code, MQE2E_ERR_NO_KEY);
            dropped++;
        }
    }
    cr_assert_eq(ctl_counters().held, 2);
    cr_assert_eq(dropped, 3);
    cr_assert_eq(ctl_counters().hold_dropped, 3);
}

Test(session_control, actions_stay_valid_until_the_next_call)
{
    msg m;
    cr_assert_eq(mqe2e_session_connected(sess, at(T0, 1)), MQE2E_OK);
    cr_assert_eq(mqe2e_session_pending(sess), 3);
    mqe2e_session_action a = expect(MQE2E_SESSION_SUBSCRIBE);
    char copy[128];
    (void)snprintf(copy, sizeof copy, "%s", a.topic);
    cr_assert_str_eq(a.topic, copy);
    cr_assert_eq(mqe2e_session_pending(sess), 2);
    /* Freeing a session with untaken actions (and a taken one) leaks nothing
     * (checked by the sanitizer build). */
    seal_b("a/x", "left behind", &m);
    receive("a/x", &m, 0, at(T0, 2));
    cr_assert_eq(mqe2e_session_pending(sess), 3);
}

/* ------------------------------------------------------------------ */
/* Channels: two sessions, frames carried by hand                       */

static mqe2e_session *sess_b;
static mqe2e_policy *pol_for_b;

/* The test authority issues @p ks its credential. */
static void give_credential(mqe2e_keystore *ks, const char *id, uint64_t serial)
{
    static const mqe2e_grant g[] = {{"chan/#", MQE2E_RIGHT_ALL}};
    mqe2e_credential_request r;
    uint8_t *cred = NULL;
    size_t len = 0;
    memset(&r, 0, sizeof r);
    r.client_id = id;
    r.role = "device";
    cr_assert_eq(mqe2e_keystore_identity_public(ks, r.sign_public, r.dh_public), MQE2E_OK);
    r.grants = g;
    r.n_grants = 1;
    r.issued_at = T0 - 10;
    r.expires_at = T0 + 86400;
    r.serial = serial;
    cr_assert_eq(mqe2e_credential_issue(&cred, &len, auth_sign_sk, &r), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_set_credential(ks, cred, len), MQE2E_OK);
    free(cred);
}

/* dev-a and dev-b, both enrolled, each with a channel rule to the other. */
static void setup_channel(void)
{
    mqe2e_authority_pin pin;
    setup_fleet(1, NULL);
    cr_assert_eq(mqe2e_keystore_authority(ks_a, &pin), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_set_authority(ks_b, &pin), MQE2E_OK);
    give_credential(ks_a, "dev-a", 1);
    give_credential(ks_b, "dev-b", 2);
    mqe2e_session_free(sess);
    mqe2e_policy_free(pol_b);
    mqe2e_protector_free(pr_b);
    pr_b = NULL;
    cr_assert_eq(mqe2e_policy_new(&pol_b), MQE2E_OK);
    /* pol_b is dev-a's policy here; dev-b's session gets its own below. */
    cr_assert_eq(mqe2e_policy_add(pol_b, "chan/ab/#", MQE2E_POLICY_CHANNEL, "dev-b"), MQE2E_OK);
    cr_assert_eq(mqe2e_protector_new(&pr_b, ks_b, pol_b, NULL), MQE2E_OK);
    cr_assert_eq(mqe2e_session_new(&sess, ks_a, pol_b, NULL), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_new(&pol_for_b), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add(pol_for_b, "chan/ab/#", MQE2E_POLICY_CHANNEL, "dev-a"), MQE2E_OK);
    cr_assert_eq(mqe2e_session_new(&sess_b, ks_b, pol_for_b, NULL), MQE2E_OK);
}

static void teardown_channel(void)
{
    mqe2e_session_free(sess_b);
    sess_b = NULL;
    mqe2e_policy_free(pol_for_b);
    pol_for_b = NULL;
    teardown_fleet();
}

/* Carry every PUBLISH of @p from to @p to (as the broker would), until
 * neither has anything left; DELIVERs land in @p got (text). */
static void carry(mqe2e_session *from, mqe2e_session *to, uint64_t mono, char *got, size_t cap)
{
    for (int round = 0; round < 8; round++) {
        int moved = 0;
        mqe2e_session *src = (round % 2 == 0) ? from : to;
        mqe2e_session *dst = (round % 2 == 0) ? to : from;
        mqe2e_session_action a;
        /* Copy first: actions are only valid until the next call on src. */
        struct {
            char topic[256];
            uint8_t data[1024];
            size_t len;
        } q[8];
        size_t nq = 0;
        while (mqe2e_session_next(src, &a)) {
            if (a.kind == MQE2E_SESSION_DELIVER && got != NULL) {
                cr_assert_lt(a.len, cap);
                memcpy(got, a.data, a.len);
                got[a.len] = '\0';
            }
            cr_assert_neq(a.kind, MQE2E_SESSION_DROP, "dropped: %d", a.code);
            if (a.kind != MQE2E_SESSION_PUBLISH) continue;
            cr_assert_lt(nq, 8);
            cr_assert_leq(a.len, sizeof q[0].data);
            (void)snprintf(q[nq].topic, sizeof q[nq].topic, "%s", a.topic);
            memcpy(q[nq].data, a.data, a.len);
            q[nq].len = a.len;
            nq++;
        }
        for (size_t i = 0; i < nq; i++) {
            cr_assert_eq(mqe2e_session_message_received(dst, q[i].topic, 0, q[i].data, q[i].len, 1,
                                                        0, 0, 0, at(T0, mono)),
                         MQE2E_OK);
            moved = 1;
        }
        if (!moved && round > 0) {
            /* Drain what the last receiver produced (deliveries). */
            while (mqe2e_session_next(dst, &a))
                if (a.kind == MQE2E_SESSION_DELIVER && got != NULL) {
                    memcpy(got, a.data, a.len);
                    got[a.len] = '\0';
                }
            return;
        }
    }
}

TestSuite(session_channel, .init = setup_channel, .fini = teardown_channel);

Test(session_channel, handshake_then_delivery_then_revocation_closes_it)
{
    uint8_t out[1024];
    size_t out_len = 99;
    char got[128] = "";

    /* Queued until the channel is up; step 1 goes to dev-b's inbox. */
    cr_assert_eq(mqe2e_session_publish(sess, "chan/ab/x", (const uint8_t *)"hi b", 4, 1, 0,
                                       at(T0, 10), out, sizeof out, &out_len),
                 MQE2E_SESSION_QUEUED);
    cr_assert_eq(out_len, 0);
    cr_assert_eq(mqe2e_session_channel_waiting(sess), 1);
    carry(sess, sess_b, 20, got, sizeof got);
    cr_assert_str_eq(got, "hi b");
    cr_assert_eq(mqe2e_session_channel_waiting(sess), 0);
    mqe2e_session_counters ka, kb;
    mqe2e_session_get_counters(sess, &ka);
    mqe2e_session_get_counters(sess_b, &kb);
    cr_assert_eq(ka.handshakes_ok, 1);
    cr_assert_eq(kb.handshakes_ok, 1);
    cr_assert_eq(ka.channel_sent, 1);
    cr_assert_eq(kb.channel_opened, 1);

    /* Established: the next one goes out at once. */
    cr_assert_eq(mqe2e_session_publish(sess, "chan/ab/x", (const uint8_t *)"again", 5, 1, 0,
                                       at(T0, 30), out, sizeof out, &out_len),
                 MQE2E_SESSION_QUEUED);
    mqe2e_session_action a = {0};
    cr_assert_eq(mqe2e_session_next(sess, &a), 1);
    cr_assert_eq(a.kind, MQE2E_SESSION_PUBLISH);
    cr_assert_str_eq(a.topic, "chan/ab/x");
    msg env;
    memcpy(env.buf, a.data, a.len);
    env.len = a.len;
    mqe2e_session *keep = sess;
    sess = sess_b;
    receive("chan/ab/x", &env, 0, at(T0, 40));
    a = expect(MQE2E_SESSION_DELIVER);
    cr_assert_eq(a.len, 5);
    cr_assert_eq(a.receipt.active, 0, "channel envelopes are recorded as they are opened");
    /* The same envelope again: refused, never delivered twice. */
    receive("chan/ab/x", &env, 0, at(T0, 41));
    cr_assert_lt(expect(MQE2E_SESSION_DROP).code, 0);

    /* The authority revokes dev-a: dev-b closes the channel and refuses it. */
    mqe2e_revocation_entry e = {"dev-a", 0, T0 + 1};
    uint8_t *rl = NULL;
    size_t rl_len = 0;
    cr_assert_eq(mqe2e_revocation_list_sign(&rl, &rl_len, auth_sign_sk, 1, T0 + 1, &e, 1),
                 MQE2E_OK);
    cr_assert_lt(rl_len, sizeof env.buf);
    msg rm;
    memcpy(rm.buf, rl, rl_len);
    rm.len = rl_len;
    free(rl);
    receive(PREFIX "/revocations", &rm, 0, at(T0 + 1, 50));
    expect_none();
    receive("chan/ab/x", &env, 0, at(T0 + 1, 60));
    cr_assert_eq(expect(MQE2E_SESSION_DROP).code, MQE2E_ERR_AUTH);
    mqe2e_session_get_counters(sess_b, &kb);
    cr_assert_geq(kb.revoked_refused, 1);
    /* And dev-b will not send to a revoked peer either. */
    cr_assert_eq(mqe2e_session_publish(sess_b, "chan/ab/y", (const uint8_t *)"no", 2, 1, 0,
                                       at(T0 + 1, 70), out, sizeof out, &out_len),
                 MQE2E_ERR_AUTH);
    sess = keep;
}

Test(session_channel, forged_step1_flood_is_rate_limited)
{
    /* dev-a's genuine step 1, replayed many times with other claimed ids,
     * costs dev-b at most the burst, never more. */
    uint8_t out[1024];
    size_t out_len = 0;
    cr_assert_eq(mqe2e_session_publish(sess, "chan/ab/x", (const uint8_t *)"x", 1, 1, 0,
                                       at(T0, 10), out, sizeof out, &out_len),
                 MQE2E_SESSION_QUEUED);
    mqe2e_session_action a;
    cr_assert_eq(mqe2e_session_next(sess, &a), 1);
    cr_assert_eq(a.kind, MQE2E_SESSION_PUBLISH);
    msg step1;
    memcpy(step1.buf, a.data, a.len);
    step1.len = a.len;
    for (int i = 0; i < 300; i++) {
        cr_assert_eq(mqe2e_session_message_received(sess_b, PREFIX "/client/dev-b", 0, step1.buf,
                                                    step1.len, 1, 0, 0, 0, at(T0, 11)),
                     MQE2E_OK);
        while (mqe2e_session_next(sess_b, &a))
            cr_assert_neq(a.kind, MQE2E_SESSION_DELIVER);
    }
    mqe2e_session_counters kb;
    mqe2e_session_get_counters(sess_b, &kb);
    /* One claimed peer: one half-open handshake, the rest refused before DH. */
    cr_assert_geq(kb.channel_rate_limited, 290);
}

/* ------------------------------------------------------------------ */
/* Signed groups: grants come with the session's first directory       */

Test(session_control, signed_group_holds_until_the_directory_then_checks_grants)
{
    msg m, p;
    mqe2e_key_bundle b = bundle_g1(1, SECRET_1);
    mqe2e_signer signer;
    mqe2e_group_directory d;
    mqe2e_signer_grants g;
    char *filters[] = {"a/x"};
    mqe2e_control_update u;
    uint8_t a_dh_pk[32];

    cr_assert_eq(mqe2e_keystore_group_set_signed(ks_a, "g1", 1), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_set_signed(ks_b, "g1", 1), MQE2E_OK);
    mqe2e_protector_invalidate(pr_b, "g1");
    mqe2e_session_free(sess);
    cr_assert_eq(mqe2e_session_new(&sess, ks_a, NULL, NULL), MQE2E_OK);
    seal_b("a/x", "signed hello", &m);
    /* No directory seen in this session: the grants are unknown, so held. */
    receive("a/x", &m, 0, at(T0, 10));
    drain_no_deliver();
    cr_assert_eq(ctl_counters().held, 1);

    /* The directory: dev-b (sender 2) may publish on a/x only. */
    memset(&signer, 0, sizeof signer);
    signer.sender_id = 2;
    cr_assert_eq(mqe2e_keystore_identity_public(ks_b, signer.sign_public, NULL), MQE2E_OK);
    (void)snprintf(signer.client_id, sizeof signer.client_id, "dev-b");
    g.pub_filters = filters;
    g.n_pub_filters = 1;
    memset(&d, 0, sizeof d);
    (void)snprintf(d.group, sizeof d.group, "g1");
    d.signers = &signer;
    d.n_signers = 1;
    d.grants = &g;
    d.has_grants = 1;
    memset(&u, 0, sizeof u);
    u.push_seq = 1;
    u.bundles = &b;
    u.n_bundles = 1;
    u.directories = &d;
    u.n_directories = 1;
    cr_assert_eq(mqe2e_keystore_identity_public(ks_a, NULL, a_dh_pk), MQE2E_OK);
    cr_assert_eq(mqe2e_push_seal(p.buf, sizeof p.buf, &p.len, auth_dh_sk, a_dh_pk, PREFIX, AUTH_ID,
                                 &u),
                 MQE2E_OK);
    receive(PREFIX "/client/dev-a", &p, 0, at(T0, 20));
    mqe2e_session_action a = expect(MQE2E_SESSION_DELIVER);
    cr_assert_eq(a.current, 0);
    cr_assert_eq(memcmp(a.data, "signed hello", a.len), 0);
    expect_none();

    /* A topic its credential does not grant: dropped, never delivered. */
    seal_b("a/y", "not mine", &m);
    receive("a/y", &m, 0, at(T0, 30));
    cr_assert_eq(expect(MQE2E_SESSION_DROP).code, MQE2E_ERR_GRANT);
    cr_assert_eq(drops(MQE2E_DROP_GRANT), 1);
}

/* ------------------------------------------------------------------ */
/* Issue 11 follow-ups: retired sender ids, list validity, forged holds */

/* A revocation list signed by the test authority (version @p version,
 * issued at @p issued, valid until @p next_update or 0), retiring @p n
 * sender ids of g1. */
static void rl_frame(msg *m, uint64_t version, uint64_t issued, uint64_t next_update,
                     const uint32_t *retired, size_t n)
{
    mqe2e_retired_sender r[4];
    mqe2e_revocation_contents c;
    uint8_t *rl = NULL;
    size_t rl_len = 0;
    cr_assert_leq(n, 4);
    for (size_t i = 0; i < n; i++) {
        r[i].group_id = "g1";
        r[i].sender_id = retired[i];
    }
    memset(&c, 0, sizeof c);
    c.version = version;
    c.issued_at = issued;
    c.next_update = next_update;
    c.retired = n > 0 ? r : NULL;
    c.n_retired = n;
    cr_assert_eq(mqe2e_revocation_list_sign_contents(&rl, &rl_len, auth_sign_sk, &c), MQE2E_OK);
    cr_assert_leq(rl_len, sizeof m->buf);
    memcpy(m->buf, rl, rl_len);
    m->len = rl_len;
    free(rl);
}

/* Answer the HELLO in the PUBLISH action @p hello as the test authority
 * would, with @p reply; the answer arrives on dev-a's inbox at @p t. */
static void answer_hello(const msg *hello, const mqe2e_control_update *reply,
                         mqe2e_session_time t)
{
    mqe2e_hello_authority *st = NULL;
    mqe2e_hello_request req;
    uint8_t a_dh_pk[32];
    msg out;
    cr_assert_eq(mqe2e_hello_accept_read(&st, &req, auth_dh_sk, PREFIX, hello->buf, hello->len),
                 MQE2E_OK);
    cr_assert_str_eq(req.client_id, "dev-a");
    cr_assert_eq(mqe2e_keystore_identity_public(ks_a, NULL, a_dh_pk), MQE2E_OK);
    cr_assert_eq(mqe2e_hello_accept_check_static(st, a_dh_pk), MQE2E_OK);
    cr_assert_eq(mqe2e_hello_accept_write(st, out.buf, sizeof out.buf, &out.len, AUTH_ID, reply),
                 MQE2E_OK);
    mqe2e_hello_authority_free(st);
    receive(PREFIX "/client/dev-a", &out, 0, t);
}

/* Take actions until a PUBLISH to the authority (a HELLO); copy it to @p m.
 * Nothing may be delivered on the way. */
static void take_hello(msg *m)
{
    mqe2e_session_action a;
    while (mqe2e_session_next(sess, &a)) {
        cr_assert_neq(a.kind, MQE2E_SESSION_DELIVER);
        if (a.kind != MQE2E_SESSION_PUBLISH || strcmp(a.topic, PREFIX "/authority") != 0) continue;
        cr_assert_leq(a.len, sizeof m->buf);
        memcpy(m->buf, a.data, a.len);
        m->len = a.len;
        return;
    }
    cr_assert_fail("no HELLO was queued");
}

static int publish_a(mqe2e_session_time t)
{
    uint8_t out[512];
    size_t out_len = 0;
    return mqe2e_session_publish(sess, "a/x", (const uint8_t *)"v", 1, 1, 0, t, out, sizeof out,
                                 &out_len);
}

Test(session_control, retired_sender_is_dropped_as_revoked_in_every_epoch)
{
    msg m, rl;
    const uint32_t retired[] = {2}; /* dev-b's sender id in g1 */

    seal_b("a/x", "before the list", &m);
    receive("a/x", &m, 0, at(T0, 10));
    cr_assert_eq(memcmp(expect(MQE2E_SESSION_DELIVER).data, "before", 6), 0);
    expect_none();
    /* The list names dev-b's sender id: its envelopes are dropped from now
     * on, under a key the receiver still holds (the grace of epoch 1). */
    rl_frame(&rl, 1, T0, 0, retired, 1);
    receive(PREFIX "/revocations", &rl, 0, at(T0, 20));
    expect_none();
    seal_b("a/x", "after the list", &m);
    receive("a/x", &m, 0, at(T0, 30));
    mqe2e_session_action a = expect(MQE2E_SESSION_DROP);
    cr_assert_eq(a.code, MQE2E_ERR_REVOKED);
    cr_assert_eq(a.current, 1);
    expect_none();
    cr_assert_eq(drops(MQE2E_DROP_REVOKED), 1);

    /* A later epoch too: the id is retired, not one key. */
    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks_a, "g1", NULL, 2, SECRET_2, T0), MQE2E_OK);
    rotate_b(2, SECRET_2);
    seal_b("a/x", "new epoch", &m);
    receive("a/x", &m, 0, at(T0, 40));
    cr_assert_eq(expect(MQE2E_SESSION_DROP).code, MQE2E_ERR_REVOKED);

    /* A new session over the same keystore knows the stored list at once. */
    mqe2e_session_free(sess);
    cr_assert_eq(mqe2e_session_new(&sess, ks_a, NULL, NULL), MQE2E_OK);
    seal_b("a/x", "after a restart", &m);
    receive("a/x", &m, 0, at(T0, 50));
    cr_assert_eq(expect(MQE2E_SESSION_DROP).code, MQE2E_ERR_REVOKED);
    expect_none();
    cr_assert_eq(drops(MQE2E_DROP_REVOKED), 1);
}

Test(session_control, stale_revocation_list_stops_sealing_until_renewed)
{
    msg hello, rl;
    mqe2e_control_update reply;

    cr_assert_eq(mqe2e_session_connected(sess, at(T0, 1000)), MQE2E_OK);
    take_hello(&hello);
    /* The reply carries a list valid for 60 s (next_update - issued_at). */
    rl_frame(&rl, 1, T0, T0 + 60, NULL, 0);
    memset(&reply, 0, sizeof reply);
    reply.revocation_list = rl.buf;
    reply.revocation_list_len = rl.len;
    answer_hello(&hello, &reply, at(T0 + 1, 2000));
    drain_no_deliver();
    cr_assert_eq(ctl_counters().handshakes_ok, 1);
    cr_assert_eq(mqe2e_session_fresh(sess, at(T0 + 1, 2000)), 1);
    cr_assert_eq(publish_a(at(T0 + 1, 2000)), MQE2E_OK);
    /* The periodic HELLO is due at a third of the list's validity, well
     * before the 900 s freshness bound would ask for it. */
    cr_assert_eq(mqe2e_session_tick(sess, 1, at(T0 + 1, 2000)), MQE2E_OK);
    drain_no_deliver();
    cr_assert_eq(mqe2e_session_next_timer(sess, at(T0 + 1, 2000)), 2000 + 20000);
    cr_assert_eq(mqe2e_session_tick(sess, 1, at(T0 + 21, 22000)), MQE2E_OK);
    take_hello(&hello);
    /* Its reply never comes (a broker dropping it): at the end of the
     * validity it still seals, a millisecond later it refuses, although the
     * authority was heard well within the freshness bound. */
    cr_assert_eq(publish_a(at(T0 + 61, 62000)), MQE2E_OK);
    cr_assert_eq(mqe2e_session_fresh(sess, at(T0 + 61, 62001)), 0);
    uint64_t stale = ctl_counters().stale_refused;
    cr_assert_eq(publish_a(at(T0 + 61, 62001)), MQE2E_ERR_EXPIRED);
    cr_assert_eq(ctl_counters().stale_refused, stale + 1);
    /* The retained copy of the same list (anyone can replay it) renews nothing. */
    receive(PREFIX "/revocations", &rl, 0, at(T0 + 62, 62500));
    drain_no_deliver();
    cr_assert_eq(publish_a(at(T0 + 62, 62600)), MQE2E_ERR_EXPIRED);
    /* The same version re-signed later (the authority's renewal) does. */
    rl_frame(&rl, 1, T0 + 30, T0 + 90, NULL, 0);
    receive(PREFIX "/revocations", &rl, 0, at(T0 + 62, 63000));
    drain_no_deliver();
    cr_assert_eq(mqe2e_session_fresh(sess, at(T0 + 62, 63000)), 1);
    cr_assert_eq(publish_a(at(T0 + 62, 63000)), MQE2E_OK);
    cr_assert_eq(publish_a(at(T0 + 122, 63000 + 60001)), MQE2E_ERR_EXPIRED);
}

Test(session_control, held_forgeries_are_purged_after_an_answered_hello)
{
    msg hello, forged, genuine;
    mqe2e_control_update reply;
    mqe2e_key_bundle b2 = bundle_g1(2, SECRET_2);

    /* dev-b's genuine message of epoch 2, and a forgery naming epoch 3 under
     * a key nobody was given. */
    rotate_b(2, SECRET_2);
    seal_b("a/x", "genuine", &genuine);
    rotate_b(3, SECRET_F);
    seal_b("a/x", "forged", &forged);

    cr_assert_eq(mqe2e_session_connected(sess, at(T0, 1000)), MQE2E_OK);
    take_hello(&hello);
    drain_no_deliver();
    /* The forgery arrives first: two epochs ahead, held as a genuine one might be. */
    receive("a/x", &forged, 0, at(T0 + 5, 6000));
    drain_no_deliver();
    cr_assert_eq(ctl_counters().held, 1);
    /* The unanswered HELLO is retried: this one goes out after the forgery arrived. */
    cr_assert_eq(mqe2e_session_tick(sess, 1, at(T0 + 9, 10000)), MQE2E_OK);
    take_hello(&hello);
    drain_no_deliver();
    /* The genuine message arrives after that HELLO was sent. */
    receive("a/x", &genuine, 0, at(T0 + 10, 11000));
    drain_no_deliver();
    cr_assert_eq(ctl_counters().held, 2);
    /* The authority answers (it has not told this member about epoch 2
     * yet): the forgery, older than the answered HELLO and still unknown,
     * is dropped now; the genuine message, younger, stays held. */
    memset(&reply, 0, sizeof reply);
    answer_hello(&hello, &reply, at(T0 + 10, 11500));
    mqe2e_session_action a = expect(MQE2E_SESSION_DROP);
    cr_assert_eq(a.code, MQE2E_ERR_NO_KEY);
    cr_assert_eq(a.current, 0);
    cr_assert_str_eq(a.topic, "a/x");
    expect_none();
    cr_assert_eq(ctl_counters().hold_dropped, 1);
    cr_assert_eq(drops(MQE2E_DROP_NO_KEY), 1);
    /* While anything is held the session asks again (paced), without
     * waiting for the held message's age limit. */
    cr_assert_eq(mqe2e_session_tick(sess, 1, at(T0 + 13, 14000)), MQE2E_OK);
    take_hello(&hello);
    drain_no_deliver();
    reply.bundles = &b2;
    reply.n_bundles = 1;
    answer_hello(&hello, &reply, at(T0 + 13, 14500));
    a = expect(MQE2E_SESSION_DELIVER);
    cr_assert_eq(a.current, 0);
    cr_assert_eq(a.len, strlen("genuine"));
    cr_assert_eq(memcmp(a.data, "genuine", a.len), 0);
    expect_none();
    cr_assert_eq(ctl_counters().released, 1);
    cr_assert_eq(ctl_counters().hold_dropped, 1);
}

Test(session_control, nearer_epoch_evicts_a_further_one_from_a_full_topic)
{
    mqe2e_session_options o = MQE2E_SESSION_OPTIONS_INIT;
    msg genuine, far1, far2;

    mqe2e_session_free(sess);
    o.hold_count = 16; /* one topic may take 1/8: 2 messages */
    cr_assert_eq(mqe2e_session_new(&sess, ks_a, NULL, &o), MQE2E_OK);
    rotate_b(2, SECRET_2);
    seal_b("a/x", "genuine", &genuine);
    rotate_b(9, SECRET_F);
    seal_b("a/x", "far 1", &far1);
    seal_b("a/x", "far 2", &far2);
    /* Forgeries eight epochs ahead fill the topic's share. */
    receive("a/x", &far1, 0, at(T0, 100));
    receive("a/x", &far2, 0, at(T0, 101));
    drain_no_deliver();
    cr_assert_eq(ctl_counters().held, 2);
    /* A rotation's message (one ahead) takes the place of one of them. */
    receive("a/x", &genuine, 0, at(T0, 102));
    mqe2e_session_action a;
    size_t dropped = 0;
    while (mqe2e_session_next(sess, &a)) {
        cr_assert_neq(a.kind, MQE2E_SESSION_DELIVER);
        if (a.kind != MQE2E_SESSION_DROP) continue;
        cr_assert_eq(a.code, MQE2E_ERR_NO_KEY);
        cr_assert_eq(a.current, 0, "the evicted message is reported, not the new one");
        dropped++;
    }
    cr_assert_eq(dropped, 1);
    cr_assert_eq(ctl_counters().held, 3);
    cr_assert_eq(ctl_counters().hold_dropped, 1);
    /* A further forgery cannot push the nearer message out again. */
    receive("a/x", &far1, 0, at(T0, 103));
    a = expect(MQE2E_SESSION_DROP);
    cr_assert_eq(a.current, 1);
    while (mqe2e_session_next(sess, &a))
        cr_assert_neq(a.kind, MQE2E_SESSION_DELIVER);
    /* Its key arrives: the genuine message is the one still held. */
    msg p;
    mqe2e_key_bundle b = bundle_g1(2, SECRET_2);
    push_frame(&p, 1, &b, auth_dh_sk);
    receive(PREFIX "/client/dev-a", &p, 0, at(T0 + 1, 1000));
    int delivered = 0;
    while (mqe2e_session_next(sess, &a)) {
        if (a.kind != MQE2E_SESSION_DELIVER) continue;
        cr_assert_eq(memcmp(a.data, "genuine", a.len), 0);
        delivered++;
    }
    cr_assert_eq(delivered, 1);
}

/* ------------------------------------------------------------------ */
/* Bound MQTT v5 properties (PROTOCOL.md 2.5.1) through the session      */

#define BIND_RULE "a/#=group:g1;bind=content-type,user:site,retain"

static const mqe2e_msg_property BOUND_PROPS[] = {
    {MQE2E_PROP_CONTENT_TYPE, NULL, 0, (const uint8_t *)"text/plain", 10},
    {MQE2E_PROP_USER, (const uint8_t *)"site", 4, (const uint8_t *)"berlin", 6},
    {MQE2E_PROP_USER, (const uint8_t *)"trace", 5, (const uint8_t *)"t-1", 3},
};
static const mqe2e_msg_property CHANGED_PROPS[] = {
    {MQE2E_PROP_CONTENT_TYPE, NULL, 0, (const uint8_t *)"text/html", 9},
    {MQE2E_PROP_USER, (const uint8_t *)"site", 4, (const uint8_t *)"berlin", 6},
};

/* The receiving session and the sending protector both bind BIND_RULE. */
static mqe2e_policy *bind_pol_a, *bind_pol_b;
static mqe2e_protector *bind_pr_b;

static void bind_setup(void)
{
    mqe2e_session_free(sess);
    cr_assert_eq(mqe2e_policy_new(&bind_pol_a), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add_text(bind_pol_a, BIND_RULE), MQE2E_OK);
    cr_assert_eq(mqe2e_session_new(&sess, ks_a, bind_pol_a, NULL), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_new(&bind_pol_b), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add_text(bind_pol_b, BIND_RULE), MQE2E_OK);
    cr_assert_eq(mqe2e_protector_new(&bind_pr_b, ks_b, bind_pol_b, NULL), MQE2E_OK);
}

static void bind_teardown(void)
{
    mqe2e_session_free(sess);
    sess = NULL;
    mqe2e_protector_free(bind_pr_b);
    mqe2e_policy_free(bind_pol_a);
    mqe2e_policy_free(bind_pol_b);
}

static void bind_seal(const char *text, int retain, msg *m)
{
    mqe2e_msg_meta meta = {BOUND_PROPS, 3, retain};
    cr_assert_eq(mqe2e_protect_meta(bind_pr_b, "a/x", &meta, (const uint8_t *)text, strlen(text),
                                    T0, m->buf, sizeof m->buf, &m->len),
                 MQE2E_OK);
}

static void bind_receive(const msg *m, int retain, const mqe2e_msg_property *props, size_t n,
                         mqe2e_session_time t)
{
    cr_assert_eq(mqe2e_session_message_received_props(sess, "a/x", 3, m->buf, m->len, 1, retain,
                                                      0, 0, props, n, t),
                 MQE2E_OK);
}

Test(session_control, bound_properties_checked_live_and_after_hold_and_delivered_with_it)
{
    msg m, bad, p;
    mqe2e_key_bundle b = bundle_g1(2, SECRET_2);

    bind_setup();
    cr_assert_eq(mqe2e_session_connected(sess, at(T0, 100)), MQE2E_OK);
    cr_assert_eq(drain_no_deliver(), 3); /* inbox, revocations, HELLO */
    /* Live: as sent is delivered; changed, removed or made retained is auth. */
    bind_seal("live", 0, &m);
    bind_receive(&m, 0, CHANGED_PROPS, 2, at(T0, 110));
    cr_assert_eq(expect(MQE2E_SESSION_DROP).code, MQE2E_ERR_AUTH);
    bind_receive(&m, 0, NULL, 0, at(T0, 111));
    cr_assert_eq(expect(MQE2E_SESSION_DROP).code, MQE2E_ERR_AUTH);
    bind_receive(&m, 1, BOUND_PROPS, 3, at(T0, 112));
    cr_assert_eq(expect(MQE2E_SESSION_DROP).code, MQE2E_ERR_AUTH);
    cr_assert_eq(drops(MQE2E_DROP_AUTH), 3);
    bind_receive(&m, 0, BOUND_PROPS, 3, at(T0, 113));
    mqe2e_session_action a = expect(MQE2E_SESSION_DELIVER);
    cr_assert_eq(a.current, 1);
    cr_assert_eq(a.props, NULL, "a current message's properties are the transport's");
    cr_assert_eq(mqe2e_session_commit(sess, &a.receipt), MQE2E_OK);

    /* Held for an unknown epoch: one as sent, one with a changed property. */
    rotate_b(2, SECRET_2);
    mqe2e_protector_invalidate(bind_pr_b, "g1");
    bind_seal("held", 1, &m);
    bind_seal("held, tampered", 0, &bad);
    bind_receive(&m, 0, BOUND_PROPS, 3, at(T0, 200)); /* retained, delivered live */
    bind_receive(&bad, 0, CHANGED_PROPS, 2, at(T0, 201));
    expect_none();
    cr_assert_eq(ctl_counters().held, 2);
    push_frame(&p, 1, &b, auth_dh_sk);
    receive(PREFIX "/client/dev-a", &p, 0, at(T0 + 1, 1200));
    a = expect(MQE2E_SESSION_DELIVER);
    cr_assert_eq(a.current, 0);
    cr_assert_eq(memcmp(a.data, "held", a.len), 0);
    /* Delivered with the properties it arrived with, in their order. */
    cr_assert_eq(a.nprops, 3);
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(a.props[i].id, BOUND_PROPS[i].id);
        cr_assert_eq(a.props[i].name_len, BOUND_PROPS[i].name_len);
        cr_assert_eq(a.props[i].value_len, BOUND_PROPS[i].value_len);
        cr_assert_eq(memcmp(a.props[i].value, BOUND_PROPS[i].value, a.props[i].value_len), 0);
        if (a.props[i].name_len > 0)
            cr_assert_eq(memcmp(a.props[i].name, BOUND_PROPS[i].name, a.props[i].name_len), 0);
    }
    cr_assert_eq(mqe2e_session_commit(sess, &a.receipt), MQE2E_OK);
    a = expect(MQE2E_SESSION_DROP);
    cr_assert_eq(a.code, MQE2E_ERR_AUTH, "the tampered one fails when released");
    cr_assert_eq(a.current, 0);
    expect_none();
    cr_assert_eq(drops(MQE2E_DROP_AUTH), 4);
    bind_teardown();
}

Test(session_control, held_message_on_an_unbound_topic_keeps_its_properties)
{
    msg m, p;
    mqe2e_key_bundle b = bundle_g1(2, SECRET_2);

    cr_assert_eq(mqe2e_session_connected(sess, at(T0, 100)), MQE2E_OK);
    cr_assert_eq(drain_no_deliver(), 3); /* inbox, revocations, HELLO */
    rotate_b(2, SECRET_2);
    seal_b("a/x", "held", &m);
    cr_assert_eq(mqe2e_session_message_received_props(sess, "a/x", 3, m.buf, m.len, 1, 0, 0, 0,
                                                      BOUND_PROPS, 3, at(T0, 200)),
                 MQE2E_OK);
    expect_none();
    push_frame(&p, 1, &b, auth_dh_sk);
    receive(PREFIX "/client/dev-a", &p, 0, at(T0 + 1, 1200));
    mqe2e_session_action a = expect(MQE2E_SESSION_DELIVER);
    cr_assert_eq(a.nprops, 3);
    cr_assert_eq(memcmp(a.props[1].name, "site", 4), 0);
    cr_assert_eq(memcmp(a.props[1].value, "berlin", 6), 0);
}

/* The properties of a held message count towards the hold bounds: one
 * message cannot fill the queue through a huge user property. */
Test(session_control, held_properties_count_towards_the_hold_quota)
{
    msg m;
    static uint8_t big[200U * 1024U]; /* over an eighth of the default 1 MiB */
    const mqe2e_msg_property huge[] = {
        {MQE2E_PROP_USER, (const uint8_t *)"pad", 3, big, sizeof big}};

    cr_assert_eq(mqe2e_session_connected(sess, at(T0, 100)), MQE2E_OK);
    cr_assert_eq(drain_no_deliver(), 3); /* inbox, revocations, HELLO */
    rotate_b(2, SECRET_2);
    seal_b("a/x", "held?", &m);
    cr_assert_eq(mqe2e_session_message_received_props(sess, "a/x", 3, m.buf, m.len, 1, 0, 0, 0,
                                                      huge, 1, at(T0, 200)),
                 MQE2E_OK);
    mqe2e_session_action a = expect(MQE2E_SESSION_DROP);
    cr_assert_eq(a.code, MQE2E_ERR_NO_KEY);
    cr_assert_eq(ctl_counters().held, 0);
    cr_assert_eq(ctl_counters().hold_dropped, 1);
    /* The same message with small properties is held. */
    cr_assert_eq(mqe2e_session_message_received_props(sess, "a/x", 3, m.buf, m.len, 1, 0, 0, 0,
                                                      BOUND_PROPS, 3, at(T0, 201)),
                 MQE2E_OK);
    cr_assert_eq(ctl_counters().held, 1);
}

/* ------------------------------------------------------------------ */
/* The spool (docs/PROTOCOL.md 9.4): held QoS >= 1 messages with no room  */

static mqe2e_spool spool;
static char spool_dir[64];

/* dev-a's session again with a hold queue of 16 (2 per topic) and @p sp. */
static void spool_session(mqe2e_spool *sp)
{
    mqe2e_session_options o = MQE2E_SESSION_OPTIONS_INIT;
    mqe2e_session_free(sess);
    o.hold_count = 16;
    o.spool = sp;
    cr_assert_eq(mqe2e_session_new(&sess, ks_a, NULL, &o), MQE2E_OK);
}

/* A forger naming exactly the next epoch (2) floods a/x with @p n forgeries
 * (QoS 1, sealed under a key of its own), then dev-b's @p ngen genuine
 * epoch-2 messages "g<i>" arrive with QoS @p qos_genuine; all after the
 * connect's HELLO (copied to @p hello) was sent. */
static void flood_then_genuine(msg *hello, int n, int ngen, int qos_genuine)
{
    mqe2e_keystore *ks_f = make_ks("dev-f", 9);
    mqe2e_policy *pol_f = NULL;
    mqe2e_protector *pr_f = NULL;
    msg m;

    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks_f, "g1", NULL, 2, SECRET_F, T0), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_new(&pol_f), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add_keystore_groups(pol_f, ks_f), MQE2E_OK);
    cr_assert_eq(mqe2e_protector_new(&pr_f, ks_f, pol_f, NULL), MQE2E_OK);
    cr_assert_eq(mqe2e_session_connected(sess, at(T0, 1000)), MQE2E_OK);
    take_hello(hello);
    drain_no_deliver();
    for (int i = 0; i < n; i++) {
        cr_assert_eq(mqe2e_protect(pr_f, "a/x", (const uint8_t *)"forged", 6, T0, m.buf,
                                   sizeof m.buf, &m.len),
                     MQE2E_OK);
        receive("a/x", &m, 0, at(T0 + 1, 2000 + (uint64_t)i));
    }
    drain_no_deliver();
    rotate_b(2, SECRET_2);
    for (int i = 0; i < ngen; i++) {
        char text[16];
        (void)snprintf(text, sizeof text, "g%d", i);
        seal_b("a/x", text, &m);
        cr_assert_eq(mqe2e_session_message_received(sess, "a/x", 3, m.buf, m.len, qos_genuine, 0, 0,
                                                    0, at(T0 + 1, 3000 + (uint64_t)i)),
                     MQE2E_OK);
    }
    drain_no_deliver();
    mqe2e_protector_free(pr_f);
    mqe2e_policy_free(pol_f);
    mqe2e_keystore_close(ks_f);
}

/* The authority answers @p hello with epoch 2: every genuine message
 * "g0".."g<ngen-1>" must come out in order, exactly once, and each
 * forgery as a DROP (no_key or auth). Returns the drops seen. */
static size_t answer_and_expect_genuine(const msg *hello, int ngen, mqe2e_session_time t)
{
    mqe2e_control_update reply;
    mqe2e_key_bundle b2 = bundle_g1(2, SECRET_2);
    mqe2e_session_action a;
    int next = 0;
    size_t dropped = 0;

    memset(&reply, 0, sizeof reply);
    reply.bundles = &b2;
    reply.n_bundles = 1;
    answer_hello(hello, &reply, t);
    while (mqe2e_session_next(sess, &a)) {
        if (a.kind == MQE2E_SESSION_DROP) {
            dropped++;
            continue;
        }
        if (a.kind != MQE2E_SESSION_DELIVER) continue;
        char text[16];
        int len = snprintf(text, sizeof text, "g%d", next);
        cr_assert_eq(a.len, (size_t)len, "delivered out of order or a forgery");
        cr_assert_eq(memcmp(a.data, text, a.len), 0, "expected %s", text);
        cr_assert_eq(a.current, 0);
        cr_assert_eq(mqe2e_session_commit(sess, &a.receipt), MQE2E_OK);
        next++;
    }
    cr_assert_eq(next, ngen, "%d of %d genuine messages delivered", next, ngen);
    return dropped;
}

static void spool_teardown(void)
{
    mqe2e_session_free(sess);
    sess = NULL;
    mqe2e_spool_destroy(&spool);
    if (spool_dir[0] != '\0') {
        char cmd[128];
        (void)snprintf(cmd, sizeof cmd, "rm -rf '%s'", spool_dir);
        cr_assert_eq(system(cmd), 0);
        spool_dir[0] = '\0';
    }
    teardown_fleet();
}

static void setup_spool_memory(void)
{
    setup_fleet(1, NULL);
    cr_assert_eq(mqe2e_spool_memory(&spool, 0, 0), MQE2E_OK);
    spool_session(&spool);
}

static void setup_spool_file(void)
{
    setup_fleet(1, NULL);
    (void)snprintf(spool_dir, sizeof spool_dir, "/tmp/mqe2e-spool-XXXXXX");
    cr_assert_not_null(mkdtemp(spool_dir));
    cr_assert_eq(mqe2e_spool_file(&spool, spool_dir, 0, 0), MQE2E_OK);
    spool_session(&spool);
}

TestSuite(session_spool_memory, .init = setup_spool_memory, .fini = spool_teardown);
TestSuite(session_spool_file, .init = setup_spool_file, .fini = spool_teardown);

/* Without a spool the flood of exact next-epoch forgeries loses genuine
 * QoS 1 messages (the hole the spool closes): the control case. */
Test(session_control, without_a_spool_an_exact_epoch_flood_loses_genuine_messages)
{
    msg hello;
    spool_session(NULL);
    flood_then_genuine(&hello, 4, 3, 1);
    cr_assert_eq(ctl_counters().hold_dropped, 5,
                 "2 forgeries and the 3 genuine messages found no room");
    mqe2e_control_update reply;
    mqe2e_key_bundle b2 = bundle_g1(2, SECRET_2);
    memset(&reply, 0, sizeof reply);
    reply.bundles = &b2;
    reply.n_bundles = 1;
    answer_hello(&hello, &reply, at(T0 + 2, 4000));
    mqe2e_session_action a;
    while (mqe2e_session_next(sess, &a))
        cr_assert_neq(a.kind, MQE2E_SESSION_DELIVER, "nothing genuine was left to deliver");
}

static void overflow_goes_to_the_spool_and_is_released_in_order(void)
{
    msg hello;
    flood_then_genuine(&hello, 40, 5, 1);
    mqe2e_session_counters k = ctl_counters();
    cr_assert_eq(k.held, 2, "the topic's 2 slots");
    cr_assert_eq(k.spooled, 43, "38 forgeries and 5 genuine messages");
    cr_assert_eq(k.hold_dropped, 0);
    cr_assert_eq(spool.count(spool.ctx), 43);
    size_t dropped = answer_and_expect_genuine(&hello, 5, at(T0 + 2, 4000));
    cr_assert_eq(dropped, 40, "every forgery dropped (auth)");
    cr_assert_eq(drops(MQE2E_DROP_AUTH), 40);
    /* Delivered ones leave the spool once taken and the caller came back. */
    cr_assert_eq(mqe2e_session_tick(sess, 1, at(T0 + 2, 4100)), MQE2E_OK);
    cr_assert_eq(spool.count(spool.ctx), 0);
}

Test(session_spool_memory, overflow_goes_to_the_spool_and_is_released_in_order)
{
    overflow_goes_to_the_spool_and_is_released_in_order();
}

Test(session_spool_file, overflow_goes_to_the_spool_and_is_released_in_order)
{
    overflow_goes_to_the_spool_and_is_released_in_order();
}

/* QoS 0 is never spooled: MQTT already allows its loss. */
Test(session_spool_memory, qos0_is_not_spooled)
{
    msg hello;
    flood_then_genuine(&hello, 2, 3, 0);
    cr_assert_eq(ctl_counters().spooled, 0);
    cr_assert_eq(ctl_counters().hold_dropped, 3);
    cr_assert_eq(spool.count(spool.ctx), 0);
}

/* Forgeries of an epoch the answered HELLO did not give are purged from the
 * spool as from the hold queue. */
static void spooled_forgeries_are_purged(void)
{
    msg hello, m;
    mqe2e_control_update reply;
    cr_assert_eq(mqe2e_session_connected(sess, at(T0, 1000)), MQE2E_OK);
    take_hello(&hello);
    drain_no_deliver();
    rotate_b(3, SECRET_F);
    for (int i = 0; i < 6; i++) {
        seal_b("a/x", "forged", &m);
        receive("a/x", &m, 0, at(T0 + 1, 2000 + (uint64_t)i));
    }
    drain_no_deliver();
    cr_assert_eq(ctl_counters().spooled, 4);
    /* A later HELLO, sent after they arrived, is answered without epoch 3. */
    cr_assert_eq(mqe2e_session_tick(sess, 1, at(T0 + 5, 6000)), MQE2E_OK);
    take_hello(&hello);
    drain_no_deliver();
    memset(&reply, 0, sizeof reply);
    answer_hello(&hello, &reply, at(T0 + 5, 6500));
    size_t n = 0;
    mqe2e_session_action a;
    while (mqe2e_session_next(sess, &a)) {
        cr_assert_eq(a.kind, MQE2E_SESSION_DROP);
        cr_assert_eq(a.code, MQE2E_ERR_NO_KEY);
        n++;
    }
    cr_assert_eq(n, 6);
    cr_assert_eq(spool.count(spool.ctx), 0);
    cr_assert_eq(ctl_counters().hold_dropped, 6);
}

Test(session_spool_memory, spooled_forgeries_are_purged_after_an_answered_hello)
{
    spooled_forgeries_are_purged();
}

Test(session_spool_file, spooled_forgeries_are_purged_after_an_answered_hello)
{
    spooled_forgeries_are_purged();
}

/* The spool's own quota: beyond it, dropped and counted (no_key). */
Test(session_spool_memory, a_full_spool_drops_and_counts)
{
    msg hello;
    mqe2e_spool_destroy(&spool);
    cr_assert_eq(mqe2e_spool_memory(&spool, 10, 0), MQE2E_OK);
    spool_session(&spool);
    flood_then_genuine(&hello, 12, 0, 1);
    cr_assert_eq(ctl_counters().held, 2);
    cr_assert_eq(ctl_counters().spooled, 10);
    cr_assert_eq(ctl_counters().hold_dropped, 0 + 12 - 2 - 10);
    cr_assert_eq(spool.count(spool.ctx), 10);
    msg m;
    seal_b("a/x", "lost", &m); /* dev-b is at epoch 2 already */
    receive("a/x", &m, 0, at(T0 + 1, 5001));
    mqe2e_session_action a = expect(MQE2E_SESSION_DROP);
    cr_assert_eq(a.code, MQE2E_ERR_NO_KEY);
    cr_assert_eq(a.current, 1);
    cr_assert_eq(ctl_counters().hold_dropped, 1);
    cr_assert_eq(drops(MQE2E_DROP_NO_KEY), 1);
}

/* A crash while messages are spooled: the session is freed without
 * handling them; a new one on the same keystore and spool (for the file
 * spool: a new spool object on the same directory) delivers them once the
 * key arrives, in order. Taken but not yet handled counts as not handled. */
static void reload_after_a_crash(int file)
{
    msg hello;
    flood_then_genuine(&hello, 4, 3, 2);
    cr_assert_eq(ctl_counters().spooled, 5);
    /* "Crash": no key ever arrived in this session. */
    mqe2e_session_free(sess);
    sess = NULL;
    if (file) {
        mqe2e_spool_destroy(&spool);
        cr_assert_eq(mqe2e_spool_file(&spool, spool_dir, 0, 0), MQE2E_OK);
    }
    cr_assert_eq(spool.count(spool.ctx), 5);
    spool_session(&spool);
    cr_assert_eq(mqe2e_session_connected(sess, at(T0 + 60, 1000)), MQE2E_OK);
    take_hello(&hello);
    drain_no_deliver();
    /* The 2 forgeries held in memory died with the process; the spooled
     * ones are dropped (auth) and the genuine ones delivered in order. */
    (void)answer_and_expect_genuine(&hello, 3, at(T0 + 60, 1500));
    cr_assert_eq(mqe2e_session_tick(sess, 1, at(T0 + 60, 1600)), MQE2E_OK);
    cr_assert_eq(spool.count(spool.ctx), 0);
}

Test(session_spool_memory, spooled_messages_survive_a_crash)
{
    reload_after_a_crash(0);
}

Test(session_spool_file, spooled_messages_survive_a_crash)
{
    reload_after_a_crash(1);
}

/* ------------------------------------------------------------------ */
/* Key-tree groups (docs/PROTOCOL.md §10.8-10.9)                        */

#define TREE_BASE 1U /* group epoch = tree epoch + 1 (g1 starts at epoch 1) */

typedef struct tree_msg {
    uint8_t b[MQE2E_KEYTREE_UPDATE_MAX(3)];
    size_t n;
} tree_msg;

/* The current bundle of g1 for the member at @p leaf: epoch secret, leaf key, path. */
static mqe2e_key_bundle tree_bundle(const mqe2e_keytree *t, uint32_t leaf)
{
    uint8_t s[32];
    cr_assert_eq(mqe2e_keytree_epoch_secret(t, s), MQE2E_OK);
    mqe2e_key_bundle b = bundle_g1(mqe2e_keytree_epoch(t) + TREE_BASE, s);
    unsigned d = mqe2e_keytree_depth(t);
    size_t n = 0;
    cr_assert_eq(mqe2e_keytree_node_key(t, (1U << d) + leaf, b.tree_leaf_key), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_path(t, leaf, b.tree_path, sizeof b.tree_path, &n), MQE2E_OK);
    b.tree_path_len = (uint32_t)n;
    return b;
}

static void tree_receive(const tree_msg *u, uint64_t s)
{
    cr_assert_eq(mqe2e_session_message_received(sess, PREFIX "/tree/g1", strlen(PREFIX "/tree/g1"),
                                                u->b, u->n, 1, 0, 0, 0, at(T0 + s, 1000 * s)),
                 MQE2E_OK);
    drain_no_deliver();
}

static uint32_t g1_epoch(void)
{
    uint32_t cur = 0;
    cr_assert_eq(mqe2e_keystore_group_current_epoch(ks_a, "g1", &cur), MQE2E_OK);
    return cur;
}

/* dev-b seals under @p secret at group epoch @p epoch; dev-a must deliver it. */
static void delivered_at(uint32_t epoch, const mqe2e_keytree *t, uint64_t s)
{
    uint8_t sec[32];
    msg m;
    cr_assert_eq(mqe2e_keytree_epoch_secret(t, sec), MQE2E_OK);
    rotate_b(epoch, sec);
    seal_b("a/x", "tree epoch", &m);
    receive("a/x", &m, 0, at(T0 + s, 1000 * s));
    mqe2e_session_action a = expect(MQE2E_SESSION_DELIVER);
    cr_assert_eq(a.len, strlen("tree epoch"));
    cr_assert_eq(mqe2e_session_commit(sess, &a.receipt), MQE2E_OK);
}

/* Answer the HELLO @p hello with one bundle: g1's current epoch with the
 * TreePath of @p leaf (the catch-up of PROTOCOL.md §10.8). */
static void answer_hello_tree(const msg *hello, const mqe2e_keytree *t, uint32_t leaf,
                              mqe2e_session_time at_t)
{
    mqe2e_key_bundle cur = tree_bundle(t, leaf);
    mqe2e_control_update reply;
    memset(&reply, 0, sizeof reply);
    reply.bundles = &cur;
    reply.n_bundles = 1;
    answer_hello(hello, &reply, at_t);
    sodium_memzero(&cur, sizeof cur);
}

/* A member of a tree group: its state from a PUSH bundle, a subscription to
 * P/tree/g1, then each TreeUpdate installs the next epoch through the
 * shared apply (dev-b's messages under it are delivered). Forged (a changed
 * byte, another signer), replayed and reordered updates change nothing and
 * are counted by reason; a gap triggers a HELLO whose answer (one bundle
 * with the current path) catches the member up over every update missed;
 * the update that removes dev-a leaves it unable to read the next epoch. */
Test(session_control, key_tree_updates_forged_replayed_reordered_gap_and_revocation)
{
    mqe2e_keytree *t = NULL;
    uint32_t leaf_a = 0, leaf_x = 0, leaf_y = 0, leaf_z = 0;
    uint8_t lk[32];
    tree_msg u;
    cr_assert_eq(mqe2e_keytree_new(&t, 3), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_add(t, &leaf_x, lk, u.b, sizeof u.b, &u.n, auth_sign_sk), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_add(t, &leaf_a, lk, u.b, sizeof u.b, &u.n, auth_sign_sk), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_add(t, &leaf_y, lk, u.b, sizeof u.b, &u.n, auth_sign_sk), MQE2E_OK);

    cr_assert_eq(mqe2e_session_connected(sess, at(T0, 100)), MQE2E_OK);
    drain_no_deliver();
    /* Before the member state exists, an update is ignored (counted). */
    uint64_t ignored = ctl_counters().control_ignored;
    tree_receive(&u, 1);
    cr_assert_eq(ctl_counters().control_ignored, ignored + 1);
    cr_assert_eq(ctl_counters().tree_applied, 0);
    msg p;
    mqe2e_key_bundle b = tree_bundle(t, leaf_a);
    push_frame(&p, 1, &b, auth_dh_sk);
    receive(PREFIX "/client/dev-a", &p, 0, at(T0 + 1, 1000));
    drain_no_deliver();
    cr_assert_eq(g1_epoch(), 3U + TREE_BASE);
    delivered_at(3U + TREE_BASE, t, 1);

    /* dev-x removed: one update. */
    cr_assert_eq(mqe2e_keytree_remove(t, leaf_x, u.b, sizeof u.b, &u.n, auth_sign_sk), MQE2E_OK);
    tree_msg forged = u;
    forged.b[u.n - 70] ^= 1; /* a byte of the last wrap */
    tree_receive(&forged, 2);
    cr_assert_eq(ctl_counters().tree_refused, 1);
    uint8_t other_pk[32], other_sk[64];
    crypto_sign_keypair(other_pk, other_sk);
    tree_msg resigned = u;
    {
        uint8_t in[sizeof "mqe2e tree update v1" - 1U + sizeof u.b];
        size_t l = sizeof "mqe2e tree update v1" - 1U;
        memcpy(in, "mqe2e tree update v1", l);
        memcpy(in + l, u.b, u.n - 64U);
        crypto_sign_detached(resigned.b + u.n - 64U, NULL, in, l + u.n - 64U, other_sk);
    }
    tree_receive(&resigned, 2);
    cr_assert_eq(ctl_counters().tree_refused, 2, "signed by another key: refused");
    cr_assert_eq(g1_epoch(), 3U + TREE_BASE, "refused updates change nothing");
    tree_receive(&u, 3);
    cr_assert_eq(ctl_counters().tree_applied, 1);
    cr_assert_eq(g1_epoch(), 4U + TREE_BASE);
    delivered_at(4U + TREE_BASE, t, 3);
    tree_receive(&u, 4);
    cr_assert_eq(ctl_counters().tree_replayed, 1);
    cr_assert_eq(g1_epoch(), 4U + TREE_BASE);

    /* Reordered: dev-z joins (u2), dev-y leaves (u3); u3 first is a gap. */
    tree_msg u2, u3;
    cr_assert_eq(mqe2e_keytree_add(t, &leaf_z, lk, u2.b, sizeof u2.b, &u2.n, auth_sign_sk),
                 MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_remove(t, leaf_y, u3.b, sizeof u3.b, &u3.n, auth_sign_sk),
                 MQE2E_OK);
    tree_receive(&u3, 5);
    cr_assert_eq(ctl_counters().tree_gaps, 1);
    cr_assert_eq(g1_epoch(), 4U + TREE_BASE);
    tree_receive(&u2, 5);
    tree_receive(&u3, 5);
    cr_assert_eq(ctl_counters().tree_applied, 3);
    tree_receive(&u2, 6);
    cr_assert_eq(ctl_counters().tree_replayed, 2, "an older update after a newer one");
    delivered_at(6U + TREE_BASE, t, 6);

    /* Offline during two changes: the next update is a gap, a HELLO goes
     * out, its answer catches the member up in one bundle. */
    uint32_t leaf_w = 0;
    tree_msg u4, u5, u6;
    cr_assert_eq(mqe2e_keytree_add(t, &leaf_w, lk, u4.b, sizeof u4.b, &u4.n, auth_sign_sk),
                 MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_remove(t, leaf_z, u5.b, sizeof u5.b, &u5.n, auth_sign_sk),
                 MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_remove(t, leaf_w, u6.b, sizeof u6.b, &u6.n, auth_sign_sk),
                 MQE2E_OK);
    cr_assert_eq(mqe2e_session_message_received(sess, PREFIX "/tree/g1",
                                                strlen(PREFIX "/tree/g1"), u6.b, u6.n, 1, 0, 0,
                                                0, at(T0 + 60, 60000)),
                 MQE2E_OK);
    cr_assert_eq(ctl_counters().tree_gaps, 2);
    msg hello_m;
    take_hello(&hello_m);
    answer_hello_tree(&hello_m, t, leaf_a, at(T0 + 61, 61000));
    drain_no_deliver();
    cr_assert_eq(g1_epoch(), 9U + TREE_BASE);
    cr_assert_eq(ctl_counters().tree_refused, 2, "the catch-up path is taken");
    delivered_at(9U + TREE_BASE, t, 61);
    tree_receive(&u5, 62);
    cr_assert_eq(ctl_counters().tree_replayed, 3, "a missed update after the catch-up");

    /* dev-a itself removed (dev-v stays: removing the last member makes an
     * update with no wrap, which no decoder takes, §10.4): it keeps nothing new. */
    uint32_t leaf_v = 0;
    cr_assert_eq(mqe2e_keytree_add(t, &leaf_v, lk, u.b, sizeof u.b, &u.n, auth_sign_sk), MQE2E_OK);
    tree_receive(&u, 62);
    uint64_t applied = ctl_counters().tree_applied;
    cr_assert_eq(mqe2e_keytree_remove(t, leaf_a, u.b, sizeof u.b, &u.n, auth_sign_sk), MQE2E_OK);
    tree_receive(&u, 63);
    cr_assert_eq(ctl_counters().tree_revoked, 1, "applied %lu refused %lu replayed %lu gaps %lu", (unsigned long)ctl_counters().tree_applied, (unsigned long)ctl_counters().tree_refused, (unsigned long)ctl_counters().tree_replayed, (unsigned long)ctl_counters().tree_gaps);
    cr_assert_eq(ctl_counters().tree_applied, applied);
    cr_assert_eq(g1_epoch(), 10U + TREE_BASE);
    uint8_t sec[32];
    msg m;
    cr_assert_eq(mqe2e_keytree_epoch_secret(t, sec), MQE2E_OK);
    rotate_b(11U + TREE_BASE, sec);
    seal_b("a/x", "after removal", &m);
    receive("a/x", &m, 0, at(T0 + 64, 64000));
    drain_no_deliver();
    mqe2e_keytree_free(t);
}

/* Issue 15, item 3: the epoch a tree removal retires stays readable for the
 * grace the member's bundle names (KeyBundle.tree_grace_seconds, §10.9; 0:
 * 30 s), counted from when the member applied the removal, on the session's
 * wall clock (no sleep): a message under it is delivered one second before
 * the end and dropped (no_key: the epoch is pruned) one second after. */
static void tree_removal_grace(uint32_t given, uint32_t expected)
{
    mqe2e_keytree *t = NULL;
    uint32_t leaf_a = 0, leaf_x = 0;
    uint8_t lk[32], sec[32];
    tree_msg u;
    msg p, m1, m2;
    cr_assert_eq(mqe2e_keytree_new(&t, 3), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_add(t, &leaf_x, lk, u.b, sizeof u.b, &u.n, auth_sign_sk), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_add(t, &leaf_a, lk, u.b, sizeof u.b, &u.n, auth_sign_sk), MQE2E_OK);
    cr_assert_eq(mqe2e_session_connected(sess, at(T0, 100)), MQE2E_OK);
    drain_no_deliver();
    mqe2e_key_bundle b = tree_bundle(t, leaf_a);
    b.tree_grace_seconds = given;
    push_frame(&p, 1, &b, auth_dh_sk);
    receive(PREFIX "/client/dev-a", &p, 0, at(T0 + 1, 1000));
    drain_no_deliver();
    uint32_t old = 2U + TREE_BASE;
    cr_assert_eq(g1_epoch(), old);
    /* dev-b seals two messages under the epoch the removal will retire. */
    cr_assert_eq(mqe2e_keytree_epoch_secret(t, sec), MQE2E_OK);
    rotate_b(old, sec);
    seal_b("a/x", "before", &m1);
    seal_b("a/x", "after", &m2);

    cr_assert_eq(mqe2e_keytree_remove(t, leaf_x, u.b, sizeof u.b, &u.n, auth_sign_sk), MQE2E_OK);
    tree_receive(&u, 2); /* retired at T0 + 2 */
    cr_assert_eq(ctl_counters().tree_applied, 1);
    cr_assert_eq(g1_epoch(), old + 1U);

    uint64_t end = T0 + 2 + expected;
    cr_assert_eq(mqe2e_session_tick(sess, 1, at(end - 1, (end - 1 - T0) * 1000)), MQE2E_OK);
    (void)drain_no_deliver();
    receive("a/x", &m1, 0, at(end - 1, (end - 1 - T0) * 1000));
    mqe2e_session_action a = expect(MQE2E_SESSION_DELIVER);
    cr_assert_eq(a.len, strlen("before"), "within the grace of %u s", expected);
    cr_assert_eq(mqe2e_session_commit(sess, &a.receipt), MQE2E_OK);

    uint64_t no_key = drops(MQE2E_DROP_NO_KEY);
    cr_assert_eq(mqe2e_session_tick(sess, 1, at(end + 1, (end + 1 - T0) * 1000)), MQE2E_OK);
    (void)drain_no_deliver();
    receive("a/x", &m2, 0, at(end + 1, (end + 1 - T0) * 1000));
    (void)drain_no_deliver();
    cr_assert_eq(drops(MQE2E_DROP_NO_KEY), no_key + 1U, "past the grace of %u s", expected);
    mqe2e_keytree_free(t);
}

Test(session_control, key_tree_removal_grace_comes_from_the_bundle)
{
    tree_removal_grace(120, 120);
}

Test(session_control, key_tree_removal_grace_defaults_to_30_s)
{
    tree_removal_grace(0, MQE2E_BUNDLE_TREE_GRACE_DEFAULT);
}

/* Issue 15, item 3: subscriptions to key-tree updates (PROTOCOL.md §10.9). */

/* Actions until none is left: SUBSCRIBE/UNSUBSCRIBE filters into @p subs /
 * @p unsubs ("" when none, else space-separated), whether a HELLO went out.
 * Nothing may be delivered. */
static int take_subscriptions(char *subs, char *unsubs, size_t cap, msg *hello)
{
    mqe2e_session_action a;
    int hello_seen = 0;
    subs[0] = unsubs[0] = '\0';
    while (mqe2e_session_next(sess, &a)) {
        cr_assert_neq(a.kind, MQE2E_SESSION_DELIVER);
        char *to = a.kind == MQE2E_SESSION_SUBSCRIBE     ? subs
                   : a.kind == MQE2E_SESSION_UNSUBSCRIBE ? unsubs
                                                         : NULL;
        if (to != NULL) {
            if (a.kind == MQE2E_SESSION_SUBSCRIBE) cr_assert_eq(a.qos, 1);
            size_t l = strlen(to);
            (void)snprintf(to + l, cap - l, "%s%s", l > 0 ? " " : "", a.topic);
            cr_assert(!hello_seen, "%s after the HELLO", a.topic);
            continue;
        }
        if (a.kind == MQE2E_SESSION_PUBLISH && strcmp(a.topic, PREFIX "/authority") == 0) {
            hello_seen = 1;
            if (hello != NULL) {
                memcpy(hello->buf, a.data, a.len);
                hello->len = a.len;
            }
        }
    }
    return hello_seen;
}

/* The current bundle of group @p group (filter @p filter) for the member at
 * @p leaf of @p t (which is at group epoch tree epoch + TREE_BASE). */
static mqe2e_key_bundle tree_bundle_of(const mqe2e_keytree *t, uint32_t leaf, const char *group,
                                       const char *filter)
{
    mqe2e_key_bundle b = tree_bundle(t, leaf);
    (void)snprintf(b.group, sizeof b.group, "%s", group);
    (void)snprintf(b.topic_filter, sizeof b.topic_filter, "%s", filter);
    return b;
}

static void tree_receive_on(const char *topic, const tree_msg *u, uint64_t s)
{
    cr_assert_eq(mqe2e_session_message_received(sess, topic, strlen(topic), u->b, u->n, 1, 0, 0, 0,
                                                at(T0 + s, 1000 * s)),
                 MQE2E_OK);
}

/* A session subscribes P/tree/<group> only for the key-tree groups its
 * bundles make it a member of: not at connect before it is one, at once
 * when a HELLO reply (or PUSH) makes it one, again on every reconnect
 * (before its HELLO), and it unsubscribes when the tree removes it, when the
 * group is removed from it, and when the authority refuses it. A push
 * group's bundle subscribes nothing. */
Test(session_control, key_tree_subscriptions_only_for_member_groups)
{
    mqe2e_keytree *t1 = NULL, *t2 = NULL;
    uint32_t a1 = 0, x1 = 0, a2 = 0, x2 = 0;
    uint8_t lk[32];
    tree_msg u;
    char subs[512], unsubs[512];
    msg hello_m, p;
    cr_assert_eq(mqe2e_keytree_new(&t1, 3), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_new(&t2, 3), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_add(t1, &x1, lk, u.b, sizeof u.b, &u.n, auth_sign_sk), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_add(t1, &a1, lk, u.b, sizeof u.b, &u.n, auth_sign_sk), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_add(t2, &x2, lk, u.b, sizeof u.b, &u.n, auth_sign_sk), MQE2E_OK);

    cr_assert_eq(mqe2e_session_connected(sess, at(T0, 100)), MQE2E_OK);
    cr_assert(take_subscriptions(subs, unsubs, sizeof subs, &hello_m));
    cr_assert_str_eq(subs, PREFIX "/client/dev-a " PREFIX "/revocations", "no tree topic yet");
    /* The reply: g1 is a key-tree group of dev-a's, g3 a push group. */
    mqe2e_key_bundle bs[2];
    bs[0] = tree_bundle_of(t1, a1, "g1", "a/#");
    bs[1] = bundle_g1(1, SECRET_2);
    (void)snprintf(bs[1].group, sizeof bs[1].group, "g3");
    (void)snprintf(bs[1].topic_filter, sizeof bs[1].topic_filter, "c/#");
    mqe2e_control_update reply;
    memset(&reply, 0, sizeof reply);
    reply.bundles = bs;
    reply.n_bundles = 2;
    answer_hello(&hello_m, &reply, at(T0 + 1, 1000));
    (void)take_subscriptions(subs, unsubs, sizeof subs, NULL);
    cr_assert_str_eq(subs, PREFIX "/tree/g1", "only the member's tree group");
    cr_assert_str_eq(unsubs, "");
    /* Another tree group's update (if the broker sent it) is consumed and counted. */
    cr_assert_eq(mqe2e_keytree_add(t2, &a2, lk, u.b, sizeof u.b, &u.n, auth_sign_sk), MQE2E_OK);
    uint64_t ignored = ctl_counters().control_ignored;
    tree_receive_on(PREFIX "/tree/g2", &u, 2);
    (void)take_subscriptions(subs, unsubs, sizeof subs, NULL);
    cr_assert_eq(ctl_counters().control_ignored, ignored + 1U);
    cr_assert_str_eq(subs, "");

    /* A reconnect subscribes the tree topic again, before the HELLO. */
    mqe2e_session_disconnected(sess);
    cr_assert_eq(mqe2e_session_connected(sess, at(T0 + 3, 3000)), MQE2E_OK);
    cr_assert(take_subscriptions(subs, unsubs, sizeof subs, &hello_m));
    cr_assert_str_eq(subs, PREFIX "/client/dev-a " PREFIX "/revocations " PREFIX "/tree/g1");

    /* g2 grants dev-a later (a PUSH): subscribed; the same bundle again: not twice. */
    mqe2e_key_bundle b2 = tree_bundle_of(t2, a2, "g2", "b/#");
    push_frame(&p, 1, &b2, auth_dh_sk);
    receive(PREFIX "/client/dev-a", &p, 0, at(T0 + 4, 4000));
    (void)take_subscriptions(subs, unsubs, sizeof subs, NULL);
    cr_assert_str_eq(subs, PREFIX "/tree/g2");
    push_frame(&p, 2, &b2, auth_dh_sk);
    receive(PREFIX "/client/dev-a", &p, 0, at(T0 + 4, 4000));
    (void)take_subscriptions(subs, unsubs, sizeof subs, NULL);
    cr_assert_str_eq(subs, "", "already subscribed");

    /* The tree removes dev-a from g1: unsubscribed. */
    cr_assert_eq(mqe2e_keytree_remove(t1, a1, u.b, sizeof u.b, &u.n, auth_sign_sk), MQE2E_OK);
    tree_receive_on(PREFIX "/tree/g1", &u, 5);
    (void)take_subscriptions(subs, unsubs, sizeof subs, NULL);
    cr_assert_eq(ctl_counters().tree_revoked, 1);
    cr_assert_str_eq(unsubs, PREFIX "/tree/g1");
    cr_assert_str_eq(subs, "");

    /* g2 removed from dev-a (ungranted, a PUSH): unsubscribed. */
    mqe2e_group_name gone;
    (void)snprintf(gone.name, sizeof gone.name, "g2");
    mqe2e_control_update rm;
    uint8_t a_dh_pk[32];
    memset(&rm, 0, sizeof rm);
    rm.push_seq = 3;
    rm.removed_groups = &gone;
    rm.n_removed_groups = 1;
    cr_assert_eq(mqe2e_keystore_identity_public(ks_a, NULL, a_dh_pk), MQE2E_OK);
    cr_assert_eq(
        mqe2e_push_seal(p.buf, sizeof p.buf, &p.len, auth_dh_sk, a_dh_pk, PREFIX, AUTH_ID, &rm),
        MQE2E_OK);
    receive(PREFIX "/client/dev-a", &p, 0, at(T0 + 6, 6000));
    (void)take_subscriptions(subs, unsubs, sizeof subs, NULL);
    cr_assert_str_eq(unsubs, PREFIX "/tree/g2");
    /* Its updates now are another group's: consumed, counted. */
    ignored = ctl_counters().control_ignored;
    cr_assert_eq(mqe2e_keytree_remove(t2, x2, u.b, sizeof u.b, &u.n, auth_sign_sk), MQE2E_OK);
    tree_receive_on(PREFIX "/tree/g2", &u, 7);
    cr_assert_eq(ctl_counters().control_ignored, ignored + 1U);
    cr_assert_eq(ctl_counters().tree_applied, 0);

    /* Re-granted g1 at a new leaf (a PUSH), then the authority refuses
     * dev-a's HELLO (revoked): every tree topic is dropped. */
    uint32_t a1b = 0;
    cr_assert_eq(mqe2e_keytree_add(t1, &a1b, lk, u.b, sizeof u.b, &u.n, auth_sign_sk), MQE2E_OK);
    mqe2e_key_bundle b1 = tree_bundle_of(t1, a1b, "g1", "a/#");
    push_frame(&p, 4, &b1, auth_dh_sk);
    receive(PREFIX "/client/dev-a", &p, 0, at(T0 + 8, 8000));
    (void)take_subscriptions(subs, unsubs, sizeof subs, NULL);
    cr_assert_str_eq(subs, PREFIX "/tree/g1", "a member again");
    mqe2e_session_disconnected(sess);
    cr_assert_eq(mqe2e_session_connected(sess, at(T0 + 9, 9000)), MQE2E_OK);
    cr_assert(take_subscriptions(subs, unsubs, sizeof subs, &hello_m));
    memset(&reply, 0, sizeof reply);
    reply.status = MQE2E_STATUS_REVOKED;
    answer_hello(&hello_m, &reply, at(T0 + 9, 9100));
    (void)take_subscriptions(subs, unsubs, sizeof subs, NULL);
    cr_assert_str_eq(unsubs, PREFIX "/tree/g1");
    mqe2e_keytree_free(t1);
    mqe2e_keytree_free(t2);
}

/* An update the authority publishes between the answer that made dev-a a
 * member and the moment its subscription takes effect (the transport
 * subscribes later, outside the receive callback) never reaches dev-a. It
 * is caught up (PROTOCOL.md §10.9) by the gap rule at the next update
 * (tree_gaps, a HELLO, whose answer carries the current TreePath), or by
 * 9.4 at the first message sealed under the newer epoch (held, a HELLO,
 * released once the answer is applied). */
Test(session_control, key_tree_update_before_the_subscription_is_caught_up)
{
    mqe2e_keytree *t = NULL;
    uint32_t a = 0, x = 0, y = 0, z = 0;
    uint8_t lk[32];
    tree_msg lost, next;
    char subs[512], unsubs[512];
    msg hello_m;
    cr_assert_eq(mqe2e_keytree_new(&t, 3), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_add(t, &x, lk, lost.b, sizeof lost.b, &lost.n, auth_sign_sk),
                 MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_add(t, &a, lk, lost.b, sizeof lost.b, &lost.n, auth_sign_sk),
                 MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_add(t, &y, lk, lost.b, sizeof lost.b, &lost.n, auth_sign_sk),
                 MQE2E_OK);
    cr_assert_eq(mqe2e_session_connected(sess, at(T0, 100)), MQE2E_OK);
    cr_assert(take_subscriptions(subs, unsubs, sizeof subs, &hello_m));
    answer_hello_tree(&hello_m, t, a, at(T0 + 1, 1000));
    (void)take_subscriptions(subs, unsubs, sizeof subs, NULL);
    cr_assert_str_eq(subs, PREFIX "/tree/g1", "subscribed after the answer");
    cr_assert_eq(g1_epoch(), 3U + TREE_BASE);

    /* Published before the SUBACK: dev-a never gets it. */
    cr_assert_eq(mqe2e_keytree_remove(t, x, lost.b, sizeof lost.b, &lost.n, auth_sign_sk),
                 MQE2E_OK);
    /* The next update (from epoch 4) is a gap: a HELLO; its answer catches up. */
    cr_assert_eq(mqe2e_keytree_add(t, &z, lk, next.b, sizeof next.b, &next.n, auth_sign_sk),
                 MQE2E_OK);
    tree_receive_on(PREFIX "/tree/g1", &next, 2);
    cr_assert_eq(ctl_counters().tree_gaps, 1);
    cr_assert_eq(g1_epoch(), 3U + TREE_BASE);
    take_hello(&hello_m);
    answer_hello_tree(&hello_m, t, a, at(T0 + 3, 3000));
    drain_no_deliver();
    cr_assert_eq(g1_epoch(), 5U + TREE_BASE, "caught up over the lost update");
    delivered_at(5U + TREE_BASE, t, 3);

    /* Lost again, and no update follows: dev-b's first message under the
     * newer epoch is held, a HELLO goes out, the answer releases it. */
    cr_assert_eq(mqe2e_keytree_remove(t, y, lost.b, sizeof lost.b, &lost.n, auth_sign_sk),
                 MQE2E_OK);
    uint8_t sec[32];
    msg m;
    cr_assert_eq(mqe2e_keytree_epoch_secret(t, sec), MQE2E_OK);
    rotate_b(6U + TREE_BASE, sec);
    seal_b("a/x", "newer epoch", &m);
    uint64_t held = ctl_counters().held;
    receive("a/x", &m, 0, at(T0 + 10, 10000));
    cr_assert_eq(ctl_counters().held, held + 1U);
    take_hello(&hello_m);
    answer_hello_tree(&hello_m, t, a, at(T0 + 11, 11000));
    mqe2e_session_action act;
    int delivered = 0;
    while (mqe2e_session_next(sess, &act))
        if (act.kind == MQE2E_SESSION_DELIVER) {
            cr_assert_eq(act.len, strlen("newer epoch"));
            delivered++;
        }
    cr_assert_eq(delivered, 1, "the held message is released after the catch-up");
    cr_assert_eq(g1_epoch(), 6U + TREE_BASE);
    mqe2e_keytree_free(t);
}
