/* Unit tests of the two-call API (protect.h): policy, keys, replay, epochs,
 * drop counters, persistence of replay windows, large sender populations. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "internal_keystore.h"
#include "internal_protect.h"
#include "mqe2e/credential.h"
#include "mqe2e/envelope.h"
#include "mqe2e/error.h"
#include "mqe2e/keystore.h"
#include "mqe2e/policy.h"
#include "mqe2e/protect.h"
#include "mqe2e/storage.h"
#include "testutil.h"

#define T0 1000000ULL
#define GRACE 600ULL

static const uint8_t SECRET_A[MQE2E_GROUP_SECRET_BYTES] = {
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b,
    0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16,
    0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20};
static const uint8_t SECRET_A2[MQE2E_GROUP_SECRET_BYTES] = {
    0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab,
    0xac, 0xad, 0xae, 0xaf, 0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6,
    0xb7, 0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf, 0xc0};
static const uint8_t SECRET_B[MQE2E_GROUP_SECRET_BYTES] = {
    0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55,
    0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55,
    0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x56};

/* One client: keystore, policy, protector. */
typedef struct peer {
    mqe2e_keystore *ks;
    mqe2e_policy *pol;
    mqe2e_protector *pr;
} peer;

static mqe2e_protector_options default_opts(void)
{
    mqe2e_protector_options o = MQE2E_PROTECTOR_OPTIONS_INIT;
    o.epoch_grace_seconds = GRACE;
    return o;
}

/* Policy: keystore groups first, then pub/# in clear, chan/# as a channel. */
static void peer_policy(peer *pe, const mqe2e_protector_options *o)
{
    cr_assert_eq(mqe2e_policy_new(&pe->pol), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add_keystore_groups(pe->pol, pe->ks), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add(pe->pol, "pub/#", MQE2E_POLICY_PLAINTEXT, NULL), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add(pe->pol, "chan/#", MQE2E_POLICY_CHANNEL, "peer"), MQE2E_OK);
    cr_assert_eq(mqe2e_protector_new(&pe->pr, pe->ks, pe->pol, o), MQE2E_OK);
}

static void peer_init_full(peer *pe, const char *client, uint32_t sender, const char *group,
                           const uint8_t *secret, const mqe2e_protector_options *o)
{
    mqe2e_storage st;
    memset(pe, 0, sizeof *pe);
    cr_assert_eq(mqe2e_storage_memory(&st), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_create(&pe->ks, st, client, sender), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(pe->ks, group, "a/#", 1, secret, T0), MQE2E_OK);
    peer_policy(pe, o);
}

static void peer_init(peer *pe, const char *client, uint32_t sender)
{
    mqe2e_protector_options o = default_opts();
    peer_init_full(pe, client, sender, "g1", SECRET_A, &o);
}

static void peer_free(peer *pe)
{
    mqe2e_protector_free(pe->pr);
    mqe2e_policy_free(pe->pol);
    mqe2e_keystore_close(pe->ks);
    memset(pe, 0, sizeof *pe);
}

/* A protected message kept for later delivery. */
typedef struct msg {
    uint8_t buf[2048];
    size_t len;
} msg;

static void seal(peer *pe, const char *topic, const char *text, msg *m)
{
    size_t n = strlen(text);
    cr_assert_leq(mqe2e_protect_bound(n), sizeof m->buf);
    cr_assert_eq(mqe2e_protect(pe->pr, topic, (const uint8_t *)text, n, T0, m->buf,
                               sizeof m->buf, &m->len),
                 MQE2E_OK);
}

static int deliver_at(peer *pe, const char *topic, const msg *m, uint64_t now, char *text_out)
{
    uint8_t out[2048];
    size_t out_len = 12345;
    int rc = mqe2e_unprotect(pe->pr, topic, m->buf, m->len, now, out, sizeof out, &out_len);
    if (rc != MQE2E_OK) {
        cr_assert_eq(out_len, 0);
        return rc;
    }
    if (text_out != NULL) {
        memcpy(text_out, out, out_len);
        text_out[out_len] = '\0';
    }
    return rc;
}

static int deliver(peer *pe, const char *topic, const msg *m)
{
    return deliver_at(pe, topic, m, T0, NULL);
}

static const void *contains(const uint8_t *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; k <= n && i <= n - k; i++) {
        if (memcmp(hay + i, needle, k) == 0) return hay + i;
    }
    return NULL;
}

static mqe2e_counters counters(const peer *pe)
{
    mqe2e_counters c;
    mqe2e_protector_counters(pe->pr, &c);
    return c;
}

static uint64_t dropped_total(const mqe2e_counters *c)
{
    uint64_t t = 0;
    for (int i = 0; i < MQE2E_DROP_REASON_COUNT; i++) t += c->dropped[i];
    return t;
}

/* Seal an envelope directly, as sender `sender` would for (g1, epoch). */
static void forge(msg *m, const uint8_t *secret, const char *group, uint32_t epoch,
                  uint32_t sender, uint64_t seq, const char *topic, const char *text)
{
    mqe2e_sender_key key;
    mqe2e_envelope_header h = {MQE2E_MODE_GROUP, epoch, sender, seq, 0U};
    cr_assert_eq(mqe2e_sender_key_derive(&key, secret, group, epoch, sender), MQE2E_OK);
    cr_assert_eq(mqe2e_envelope_seal(m->buf, sizeof m->buf, &m->len, &key, topic, group, &h,
                                     (const uint8_t *)text, strlen(text)),
                 MQE2E_OK);
    mqe2e_sender_key_wipe(&key);
}

/* ------------------------------------------------------------------ reasons */

Test(protect, drop_reason_mapping)
{
    static const struct {
        int code;
        mqe2e_drop_reason r;
        const char *name;
    } t[] = {
        {MQE2E_ERR_DECODE, MQE2E_DROP_DECODE, "decode"},
        {MQE2E_ERR_TOO_LARGE, MQE2E_DROP_TOO_LARGE, "too_large"},
        {MQE2E_ERR_SUITE, MQE2E_DROP_SUITE, "suite"},
        {MQE2E_ERR_NO_POLICY, MQE2E_DROP_NO_POLICY, "no_policy"},
        {MQE2E_ERR_POLICY, MQE2E_DROP_POLICY, "policy"},
        {MQE2E_ERR_NO_KEY, MQE2E_DROP_NO_KEY, "no_key"},
        {MQE2E_ERR_EXPIRED, MQE2E_DROP_EXPIRED, "expired"},
        {MQE2E_ERR_REPLAY, MQE2E_DROP_REPLAY, "replay"},
        {MQE2E_ERR_AUTH, MQE2E_DROP_AUTH, "auth"},
        {MQE2E_ERR_IO, MQE2E_DROP_OTHER, "other"},
        {MQE2E_ERR_NOMEM, MQE2E_DROP_OTHER, "other"},
        {-1000, MQE2E_DROP_OTHER, "other"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        cr_assert_eq(mqe2e_drop_reason_of(t[i].code), t[i].r, "code %d", t[i].code);
        cr_assert_str_eq(mqe2e_drop_reason_name(t[i].r), t[i].name);
    }
    cr_assert_str_eq(mqe2e_drop_reason_name(MQE2E_DROP_REASON_COUNT), "other");
}

/* ------------------------------------------------------------------ basics */

Test(protect, round_trip)
{
    peer alice, bob;
    peer_init(&alice, "alice", 1);
    peer_init(&bob, "bob", 2);
    msg m;
    char text[2048];
    seal(&alice, "a/b", "heart rate 72", &m);
    cr_assert_leq(m.len, strlen("heart rate 72") + 32U, "overhead must stay within 32 bytes");
    cr_assert_null(contains(m.buf, m.len, "heart"), "plaintext visible on the wire");
    cr_assert_eq(deliver_at(&bob, "a/b", &m, T0, text), MQE2E_OK);
    cr_assert_str_eq(text, "heart rate 72");

    /* Empty and long payloads. */
    seal(&alice, "a/b", "", &m);
    cr_assert_eq(deliver_at(&bob, "a/b", &m, T0, text), MQE2E_OK);
    cr_assert_str_eq(text, "");
    char big[1500];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    seal(&alice, "a/deep/topic", big, &m);
    cr_assert_eq(deliver_at(&bob, "a/deep/topic", &m, T0, text), MQE2E_OK);
    cr_assert_str_eq(text, big);

    mqe2e_counters ca = counters(&alice), cb = counters(&bob);
    cr_assert_eq(ca.sealed, 3);
    cr_assert_eq(cb.opened, 3);
    cr_assert_eq(dropped_total(&cb), 0);
    peer_free(&alice);
    peer_free(&bob);
}

Test(protect, sequence_numbers_increase_and_sender_id_is_ours)
{
    peer alice;
    peer_init(&alice, "alice", 77);
    uint64_t last = 0;
    for (int i = 0; i < 5; i++) {
        msg m;
        mqe2e_envelope_view v;
        seal(&alice, "a/b", "x", &m);
        cr_assert_eq(mqe2e_envelope_parse(&v, m.buf, m.len), MQE2E_OK);
        cr_assert_eq(v.header.sender_id, 77);
        cr_assert_eq(v.header.epoch, 1);
        if (i > 0) cr_assert_gt(v.header.seq, last);
        last = v.header.seq;
    }
    peer_free(&alice);
}

Test(protect, own_publications_echoed_back_are_accepted_once)
{
    peer alice;
    peer_init(&alice, "alice", 1);
    msg m;
    seal(&alice, "a/b", "echo", &m);
    cr_assert_eq(deliver(&alice, "a/b", &m), MQE2E_OK);
    cr_assert_eq(deliver(&alice, "a/b", &m), MQE2E_ERR_REPLAY);
    peer_free(&alice);
}

Test(protect, plaintext_policy_passes_through)
{
    peer alice, bob;
    peer_init(&alice, "alice", 1);
    peer_init(&bob, "bob", 2);
    msg m;
    char text[2048];
    seal(&alice, "pub/status", "online", &m);
    cr_assert_eq(m.len, 6);
    cr_assert_eq(memcmp(m.buf, "online", 6), 0);
    cr_assert_eq(deliver_at(&bob, "pub/status", &m, T0, text), MQE2E_OK);
    cr_assert_str_eq(text, "online");
    /* Plaintext topics have no replay protection: that is what plaintext means. */
    cr_assert_eq(deliver(&bob, "pub/status", &m), MQE2E_OK);
    mqe2e_counters ca = counters(&alice), cb = counters(&bob);
    cr_assert_eq(ca.plaintext_out, 1);
    cr_assert_eq(ca.sealed, 0);
    cr_assert_eq(cb.plaintext_in, 2);
    cr_assert_eq(cb.opened, 0);
    /* An envelope arriving on a plaintext topic is handed over as it is. */
    seal(&alice, "a/b", "secret", &m);
    uint8_t out[2048];
    size_t out_len;
    mqe2e_receipt r;
    cr_assert_eq(mqe2e_unprotect_begin(bob.pr, "pub/x", m.buf, m.len, T0, out, sizeof out,
                                       &out_len, &r),
                 MQE2E_OK);
    cr_assert_eq(r.active, 0);
    cr_assert_eq(out_len, m.len);
    cr_assert_eq(mqe2e_unprotect_commit(bob.pr, &r), MQE2E_OK);
    peer_free(&alice);
    peer_free(&bob);
}

Test(protect, no_policy_refuses_on_both_sides)
{
    peer alice, bob;
    peer_init(&alice, "alice", 1);
    peer_init(&bob, "bob", 2);
    uint8_t out[256];
    size_t out_len = 99;
    memset(out, 0xAA, sizeof out);
    cr_assert_eq(mqe2e_protect(alice.pr, "z/top", (const uint8_t *)"hi", 2, T0, out, sizeof out,
                               &out_len),
                 MQE2E_ERR_NO_POLICY);
    cr_assert_eq(out_len, 0);
    for (size_t i = 0; i < sizeof out; i++) cr_assert_eq(out[i], 0xAA, "byte %zu written", i);

    msg m;
    seal(&alice, "a/b", "hello", &m);
    out_len = 99;
    memset(out, 0xAA, sizeof out);
    cr_assert_eq(mqe2e_unprotect(bob.pr, "z/top", m.buf, m.len, T0, out, sizeof out, &out_len),
                 MQE2E_ERR_NO_POLICY);
    cr_assert_eq(out_len, 0);
    cr_assert_null(contains(out, sizeof out, "hello"));
    mqe2e_counters cb = counters(&bob);
    cr_assert_eq(cb.dropped[MQE2E_DROP_NO_POLICY], 1);
    cr_assert_eq(dropped_total(&cb), 1);
    cr_assert_eq(cb.opened, 0);
    cr_assert_eq(counters(&alice).sealed, 1);
    peer_free(&alice);
    peer_free(&bob);
}

Test(protect, channel_topics_refused_until_channels_exist)
{
    peer alice;
    peer_init(&alice, "alice", 1);
    uint8_t out[256];
    size_t out_len;
    cr_assert_eq(mqe2e_protect(alice.pr, "chan/1", (const uint8_t *)"hi", 2, T0, out, sizeof out,
                               &out_len),
                 MQE2E_ERR_POLICY);
    cr_assert_eq(mqe2e_unprotect(alice.pr, "chan/1", (const uint8_t *)"hi", 2, T0, out,
                                 sizeof out, &out_len),
                 MQE2E_ERR_POLICY);
    cr_assert_eq(counters(&alice).dropped[MQE2E_DROP_POLICY], 1);
    peer_free(&alice);
}

Test(protect, size_limits_and_buffers)
{
    peer alice, bob;
    mqe2e_protector_options small = default_opts();
    small.max_payload = 100;
    peer_init(&alice, "alice", 1);
    peer_init_full(&bob, "bob", 2, "g1", SECRET_A, &small);
    uint8_t pt[200] = {0}, out[512];
    size_t out_len;

    /* Sender-side limit and short output buffer. */
    mqe2e_protector_free(alice.pr);
    cr_assert_eq(mqe2e_protector_new(&alice.pr, alice.ks, alice.pol, &small), MQE2E_OK);
    cr_assert_eq(mqe2e_protect(alice.pr, "a/b", pt, 101, T0, out, sizeof out, &out_len),
                 MQE2E_ERR_TOO_LARGE);
    cr_assert_eq(mqe2e_protect(alice.pr, "a/b", pt, 50, T0, out, mqe2e_protect_bound(50) - 1,
                               &out_len),
                 MQE2E_ERR_BUFFER_TOO_SMALL);
    cr_assert_eq(mqe2e_protect(alice.pr, "a/b", pt, 100, T0, out, sizeof out, &out_len),
                 MQE2E_OK);
    cr_assert_eq(counters(&alice).sealed, 1);

    /* Receiver-side: a genuine envelope over the receiver's limit. */
    msg m;
    mqe2e_protector_free(alice.pr);
    cr_assert_eq(mqe2e_protector_new(&alice.pr, alice.ks, alice.pol, NULL), MQE2E_OK);
    cr_assert_eq(mqe2e_protect(alice.pr, "a/b", pt, 150, T0, m.buf, sizeof m.buf, &m.len),
                 MQE2E_OK);
    cr_assert_eq(deliver(&bob, "a/b", &m), MQE2E_ERR_TOO_LARGE);
    uint8_t huge[4096] = {0};
    cr_assert_eq(mqe2e_unprotect(bob.pr, "a/b", huge, sizeof huge, T0, out, sizeof out, &out_len),
                 MQE2E_ERR_TOO_LARGE);
    cr_assert_eq(counters(&bob).dropped[MQE2E_DROP_TOO_LARGE], 2);

    /* Receiver output buffer too small: refused, counted as "other". */
    cr_assert_eq(mqe2e_protect(alice.pr, "a/b", pt, 50, T0, m.buf, sizeof m.buf, &m.len),
                 MQE2E_OK);
    cr_assert_eq(mqe2e_unprotect(bob.pr, "a/b", m.buf, m.len, T0, out, 49, &out_len),
                 MQE2E_ERR_BUFFER_TOO_SMALL);
    cr_assert_eq(counters(&bob).dropped[MQE2E_DROP_OTHER], 1);
    /* ...and did not burn the sequence number. */
    cr_assert_eq(deliver(&bob, "a/b", &m), MQE2E_OK);
    peer_free(&alice);
    peer_free(&bob);
}

Test(protect, invalid_arguments)
{
    peer alice;
    peer_init(&alice, "alice", 1);
    uint8_t out[64];
    size_t out_len;
    mqe2e_receipt r;
    mqe2e_protector *pr = NULL;
    cr_assert_eq(mqe2e_protector_new(&pr, NULL, alice.pol, NULL), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_protector_new(&pr, alice.ks, NULL, NULL), MQE2E_ERR_INVALID_ARG);
    mqe2e_protector_options bad = MQE2E_PROTECTOR_OPTIONS_INIT;
    bad.replay_width = MQE2E_REPLAY_MAX_WIDTH + 1U;
    cr_assert_eq(mqe2e_protector_new(&pr, alice.ks, alice.pol, &bad), MQE2E_ERR_INVALID_ARG);
    cr_assert_null(pr);
    cr_assert_eq(mqe2e_protect(NULL, "a/b", out, 1, T0, out, sizeof out, &out_len),
                 MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_protect(alice.pr, NULL, out, 1, T0, out, sizeof out, &out_len),
                 MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_protect(alice.pr, "a/b", NULL, 1, T0, out, sizeof out, &out_len),
                 MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_unprotect_begin(alice.pr, "a/b", out, 1, T0, out, sizeof out, &out_len,
                                       NULL),
                 MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_unprotect_begin(NULL, "a/b", out, 1, T0, out, sizeof out, &out_len, &r),
                 MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_unprotect_commit(alice.pr, NULL), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_protector_checkpoint(NULL), MQE2E_ERR_INVALID_ARG);
    mqe2e_protector_free(NULL);
    mqe2e_protector_invalidate(NULL, "g1");
    mqe2e_protector_count_drop(NULL, MQE2E_ERR_AUTH);
    peer_free(&alice);
}

/* ------------------------------------------------------------------ replay */

Test(protect, replay_refused_and_counted)
{
    peer alice, bob;
    peer_init(&alice, "alice", 1);
    peer_init(&bob, "bob", 2);
    msg m1, m2;
    seal(&alice, "a/b", "one", &m1);
    seal(&alice, "a/b", "two", &m2);
    /* Out of order is fine, the same message twice is not. */
    cr_assert_eq(deliver(&bob, "a/b", &m2), MQE2E_OK);
    cr_assert_eq(deliver(&bob, "a/b", &m1), MQE2E_OK);
    cr_assert_eq(deliver(&bob, "a/b", &m1), MQE2E_ERR_REPLAY);
    cr_assert_eq(deliver(&bob, "a/b", &m2), MQE2E_ERR_REPLAY);
    mqe2e_counters cb = counters(&bob);
    cr_assert_eq(cb.opened, 2);
    cr_assert_eq(cb.dropped[MQE2E_DROP_REPLAY], 2);
    cr_assert_eq(dropped_total(&cb), 2);
    peer_free(&alice);
    peer_free(&bob);
}

Test(protect, begin_without_commit_allows_redelivery)
{
    peer alice, bob;
    peer_init(&alice, "alice", 1);
    peer_init(&bob, "bob", 2);
    msg m;
    seal(&alice, "a/b", "redeliver me", &m);
    uint8_t out[256];
    size_t out_len;
    mqe2e_receipt r1, r2;
    cr_assert_eq(mqe2e_unprotect_begin(bob.pr, "a/b", m.buf, m.len, T0, out, sizeof out,
                                       &out_len, &r1),
                 MQE2E_OK);
    cr_assert_eq(r1.active, 1);
    cr_assert_str_eq(r1.group_id, "g1");
    cr_assert_eq(r1.sender_id, 1);
    cr_assert_eq(r1.epoch, 1);
    /* The application asked for redelivery: the same message passes again. */
    cr_assert_eq(mqe2e_unprotect_begin(bob.pr, "a/b", m.buf, m.len, T0, out, sizeof out,
                                       &out_len, &r2),
                 MQE2E_OK);
    cr_assert_eq(out_len, strlen("redeliver me"));
    cr_assert_eq(memcmp(out, "redeliver me", out_len), 0);
    cr_assert_eq(counters(&bob).opened, 0);
    cr_assert_eq(mqe2e_unprotect_commit(bob.pr, &r2), MQE2E_OK);
    cr_assert_eq(mqe2e_unprotect_commit(bob.pr, &r1), MQE2E_ERR_REPLAY);
    cr_assert_eq(mqe2e_unprotect_begin(bob.pr, "a/b", m.buf, m.len, T0, out, sizeof out,
                                       &out_len, &r1),
                 MQE2E_ERR_REPLAY);
    cr_assert_eq(r1.active, 0);
    mqe2e_counters cb = counters(&bob);
    cr_assert_eq(cb.opened, 1);
    cr_assert_eq(cb.dropped[MQE2E_DROP_REPLAY], 2);
    peer_free(&alice);
    peer_free(&bob);
}

Test(protect, commit_after_eviction_still_records)
{
    peer alice, bob;
    peer_init(&alice, "alice", 1);
    peer_init(&bob, "bob", 2);
    cr_assert_eq(mqe2e__protector_set_cache_limit(bob.pr, 1), MQE2E_OK);
    msg m, other;
    seal(&alice, "a/b", "pending", &m);
    forge(&other, SECRET_A, "g1", 1, 900, 1, "a/b", "other sender");
    uint8_t out[256];
    size_t out_len;
    mqe2e_receipt r;
    cr_assert_eq(mqe2e_unprotect_begin(bob.pr, "a/b", m.buf, m.len, T0, out, sizeof out,
                                       &out_len, &r),
                 MQE2E_OK);
    /* Another sender pushes alice's entry out before the commit. */
    cr_assert_eq(deliver(&bob, "a/b", &other), MQE2E_OK);
    cr_assert_eq(mqe2e_unprotect_commit(bob.pr, &r), MQE2E_OK);
    cr_assert_eq(deliver(&bob, "a/b", &other), MQE2E_ERR_REPLAY);
    cr_assert_eq(deliver(&bob, "a/b", &m), MQE2E_ERR_REPLAY);
    cr_assert_leq(mqe2e__protector_cache_size(bob.pr), 1);
    peer_free(&alice);
    peer_free(&bob);
}

/* ------------------------------------------------------------------ binding */

Test(protect, retopic_fails_auth)
{
    peer alice, bob;
    peer_init(&alice, "alice", 1);
    peer_init(&bob, "bob", 2);
    msg m;
    seal(&alice, "a/b", "open the door", &m);
    /* a/c maps to the same group: only the topic binding can catch it. */
    cr_assert_eq(deliver(&bob, "a/c", &m), MQE2E_ERR_AUTH);
    cr_assert_eq(deliver(&bob, "a/b/", &m), MQE2E_ERR_AUTH);
    /* The forged attempts did not move the window. */
    cr_assert_eq(deliver(&bob, "a/b", &m), MQE2E_OK);
    mqe2e_counters cb = counters(&bob);
    cr_assert_eq(cb.dropped[MQE2E_DROP_AUTH], 2);
    cr_assert_eq(cb.opened, 1);
    peer_free(&alice);
    peer_free(&bob);
}

Test(protect, wrong_group_fails_auth)
{
    peer bob, mallory, eve;
    mqe2e_protector_options o = default_opts();
    peer_init(&bob, "bob", 2);
    /* Another group with another secret, on the same topics. */
    peer_init_full(&mallory, "mallory", 3, "g2", SECRET_B, &o);
    /* Same group name, wrong secret. */
    peer_init_full(&eve, "eve", 4, "g1", SECRET_B, &o);
    msg m;
    seal(&mallory, "a/b", "forged", &m);
    cr_assert_eq(deliver(&bob, "a/b", &m), MQE2E_ERR_AUTH);
    seal(&eve, "a/b", "forged", &m);
    cr_assert_eq(deliver(&bob, "a/b", &m), MQE2E_ERR_AUTH);
    /* The right key with another group id in the AD. */
    forge(&m, SECRET_A, "g2", 1, 5, 1, "a/b", "forged");
    cr_assert_eq(deliver(&bob, "a/b", &m), MQE2E_ERR_AUTH);
    mqe2e_counters cb = counters(&bob);
    cr_assert_eq(cb.dropped[MQE2E_DROP_AUTH], 3);
    cr_assert_eq(cb.opened, 0);
    /* Forged senders never entered the cache. */
    cr_assert_eq(mqe2e__protector_cache_size(bob.pr), 0);
    peer_free(&bob);
    peer_free(&mallory);
    peer_free(&eve);
}

Test(protect, sender_id_binding)
{
    peer alice, bob;
    peer_init(&alice, "alice", 1);
    peer_init(&bob, "bob", 2);
    msg m;
    seal(&alice, "a/b", "who am i", &m);
    mqe2e_envelope_view v;
    cr_assert_eq(mqe2e_envelope_parse(&v, m.buf, m.len), MQE2E_OK);
    /* Sender 1's key under a header claiming sender 2: a member posing as
     * another must fail. */
    mqe2e_sender_key k1;
    mqe2e_envelope_header h = {MQE2E_MODE_GROUP, 1, 2, v.header.seq, 0U};
    cr_assert_eq(mqe2e_sender_key_derive(&k1, SECRET_A, "g1", 1, 1), MQE2E_OK);
    msg f;
    cr_assert_eq(mqe2e_envelope_seal(f.buf, sizeof f.buf, &f.len, &k1, "a/b", "g1", &h,
                                     (const uint8_t *)"x", 1),
                 MQE2E_OK);
    mqe2e_sender_key_wipe(&k1);
    cr_assert_eq(deliver(&bob, "a/b", &f), MQE2E_ERR_AUTH);
    cr_assert_eq(deliver(&bob, "a/b", &m), MQE2E_OK);
    peer_free(&alice);
    peer_free(&bob);
}

/* ------------------------------------------------------------------ epochs */

Test(protect, epoch_rotation_grace_then_expired)
{
    peer alice, bob;
    peer_init(&alice, "alice", 1);
    peer_init(&bob, "bob", 2);
    msg old0, old1, old2, old3, fresh;
    seal(&alice, "a/b", "old0", &old0);
    seal(&alice, "a/b", "old1", &old1);
    seal(&alice, "a/b", "old2", &old2);
    seal(&alice, "a/b", "old3", &old3);
    /* Bob caches the epoch-1 key while it is current. */
    cr_assert_eq(deliver_at(&bob, "a/b", &old0, T0, NULL), MQE2E_OK);

    uint64_t t1 = T0 + 100;
    cr_assert_eq(mqe2e_keystore_group_add_epoch(alice.ks, "g1", NULL, 2, SECRET_A2, t1), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(bob.ks, "g1", NULL, 2, SECRET_A2, t1), MQE2E_OK);
    mqe2e_protector_invalidate(alice.pr, "g1");
    mqe2e_protector_invalidate(bob.pr, "g1");

    seal(&alice, "a/b", "new", &fresh);
    mqe2e_envelope_view v;
    cr_assert_eq(mqe2e_envelope_parse(&v, fresh.buf, fresh.len), MQE2E_OK);
    cr_assert_eq(v.header.epoch, 2);
    char text[64];
    cr_assert_eq(deliver_at(&bob, "a/b", &fresh, t1 + 10, text), MQE2E_OK);
    cr_assert_str_eq(text, "new");
    /* Late epoch-1 messages within grace: readable (key re-derived, then cached). */
    cr_assert_eq(deliver_at(&bob, "a/b", &old1, t1 + GRACE - 1, text), MQE2E_OK);
    cr_assert_str_eq(text, "old1");
    cr_assert_eq(deliver_at(&bob, "a/b", &old2, t1 + GRACE, NULL), MQE2E_OK);
    /* Past grace: expired, from the cached key... */
    cr_assert_eq(deliver_at(&bob, "a/b", &old3, t1 + GRACE + 1, NULL), MQE2E_ERR_EXPIRED);
    /* ...and from a freshly derived one. */
    mqe2e_protector_invalidate(bob.pr, NULL);
    cr_assert_eq(deliver_at(&bob, "a/b", &old3, t1 + GRACE + 1000, NULL), MQE2E_ERR_EXPIRED);
    /* The current epoch does not expire. */
    seal(&alice, "a/b", "new2", &fresh);
    cr_assert_eq(deliver_at(&bob, "a/b", &fresh, t1 + 100 * GRACE, NULL), MQE2E_OK);
    mqe2e_counters cb = counters(&bob);
    cr_assert_eq(cb.dropped[MQE2E_DROP_EXPIRED], 2);
    cr_assert_eq(dropped_total(&cb), 2);
    cr_assert_eq(cb.opened, 5);
    peer_free(&alice);
    peer_free(&bob);
}

Test(protect, unknown_newer_epoch_is_no_key)
{
    peer alice, bob;
    peer_init(&alice, "alice", 1);
    peer_init(&bob, "bob", 2);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(alice.ks, "g1", NULL, 2, SECRET_A2, T0 + 1),
                 MQE2E_OK);
    mqe2e_protector_invalidate(alice.pr, "g1");
    msg m;
    seal(&alice, "a/b", "too new", &m);
    cr_assert_eq(deliver(&bob, "a/b", &m), MQE2E_ERR_NO_KEY);
    cr_assert_eq(counters(&bob).dropped[MQE2E_DROP_NO_KEY], 1);
    /* Once bob learns the epoch (and is told so), the message reads. */
    cr_assert_eq(mqe2e_keystore_group_add_epoch(bob.ks, "g1", NULL, 2, SECRET_A2, T0 + 2),
                 MQE2E_OK);
    mqe2e_protector_invalidate(bob.pr, "g1");
    cr_assert_eq(deliver(&bob, "a/b", &m), MQE2E_OK);
    peer_free(&alice);
    peer_free(&bob);
}

Test(protect, group_missing_from_keystore)
{
    peer alice;
    peer_init(&alice, "alice", 1);
    cr_assert_eq(mqe2e_policy_add(alice.pol, "x/#", MQE2E_POLICY_GROUP, "nowhere"), MQE2E_OK);
    uint8_t out[256];
    size_t out_len;
    cr_assert_eq(mqe2e_protect(alice.pr, "x/1", (const uint8_t *)"a", 1, T0, out, sizeof out,
                               &out_len),
                 MQE2E_ERR_NO_KEY);
    msg m;
    forge(&m, SECRET_A, "nowhere", 1, 5, 1, "x/1", "a");
    cr_assert_eq(deliver(&alice, "x/1", &m), MQE2E_ERR_NO_KEY);
    peer_free(&alice);
}

Test(protect, group_removed_does_not_block_checkpoints)
{
    peer alice, bob;
    peer_init(&alice, "alice", 1);
    peer_init(&bob, "bob", 2);
    msg m;
    seal(&alice, "a/b", "x", &m);
    cr_assert_eq(deliver(&bob, "a/b", &m), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_remove(bob.ks, "g1"), MQE2E_OK);
    mqe2e_protector_invalidate(bob.pr, "g1");
    cr_assert_eq(mqe2e_protector_checkpoint(bob.pr), MQE2E_OK);
    seal(&alice, "a/b", "y", &m);
    cr_assert_eq(deliver(&bob, "a/b", &m), MQE2E_ERR_NO_KEY);
    peer_free(&alice);
    peer_free(&bob);
}

/* ------------------------------------------------------------------ counters */

Test(protect, counters_match_injected_faults_exactly)
{
    peer alice, bob;
    mqe2e_protector_options o = default_opts();
    o.max_payload = 1024;
    peer_init(&alice, "alice", 1);
    peer_init_full(&bob, "bob", 2, "g1", SECRET_A, &o);
    uint8_t out[4096];
    size_t out_len;
    msg good, m;
    seal(&alice, "a/b", "good", &good);

    /* 3 x decode */
    static const uint8_t junk1[] = {0xff};
    static const uint8_t junk2[] = {0x08};
    cr_assert_eq(mqe2e_unprotect(bob.pr, "a/b", junk1, sizeof junk1, T0, out, sizeof out, &out_len),
                 MQE2E_ERR_DECODE);
    cr_assert_eq(mqe2e_unprotect(bob.pr, "a/b", junk2, sizeof junk2, T0, out, sizeof out, &out_len),
                 MQE2E_ERR_DECODE);
    cr_assert_eq(mqe2e_unprotect(bob.pr, "a/b", junk1, 0, T0, out, sizeof out, &out_len),
                 MQE2E_ERR_DECODE);
    /* 2 x too large */
    static uint8_t huge[2000];
    cr_assert_eq(mqe2e_unprotect(bob.pr, "a/b", huge, sizeof huge, T0, out, sizeof out, &out_len),
                 MQE2E_ERR_TOO_LARGE);
    char big[1100];
    memset(big, 'b', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    seal(&alice, "a/b", big, &m);
    cr_assert_eq(deliver(&bob, "a/b", &m), MQE2E_ERR_TOO_LARGE);
    /* 1 x suite: a channel-mode body */
    uint8_t suite[18] = {0x12, 0x10};
    cr_assert_eq(mqe2e_unprotect(bob.pr, "a/b", suite, sizeof suite, T0, out, sizeof out, &out_len),
                 MQE2E_ERR_SUITE);
    /* 2 x no policy */
    cr_assert_eq(deliver(&bob, "zz/top", &good), MQE2E_ERR_NO_POLICY);
    cr_assert_eq(deliver(&bob, "other", &good), MQE2E_ERR_NO_POLICY);
    /* 1 x policy */
    cr_assert_eq(deliver(&bob, "chan/9", &good), MQE2E_ERR_POLICY);
    /* 1 x no key */
    forge(&m, SECRET_A, "g1", 9, 77, 1, "a/b", "epoch 9");
    cr_assert_eq(deliver(&bob, "a/b", &m), MQE2E_ERR_NO_KEY);
    /* 4 x auth: tampered, re-topic, wrong secret, wrong sender key */
    m = good;
    m.buf[m.len - 1] ^= 1U;
    cr_assert_eq(deliver(&bob, "a/b", &m), MQE2E_ERR_AUTH);
    cr_assert_eq(deliver(&bob, "a/x", &good), MQE2E_ERR_AUTH);
    forge(&m, SECRET_B, "g1", 1, 1, 1000, "a/b", "wrong");
    cr_assert_eq(deliver(&bob, "a/b", &m), MQE2E_ERR_AUTH);
    forge(&m, SECRET_A, "g1", 1, 1, 1001, "a/b", "ok");
    msg genuine2 = m;
    /* 1 + 1 good, then 3 x replay */
    cr_assert_eq(deliver(&bob, "a/b", &good), MQE2E_OK);
    cr_assert_eq(deliver(&bob, "a/b", &genuine2), MQE2E_OK);
    cr_assert_eq(deliver(&bob, "a/b", &good), MQE2E_ERR_REPLAY);
    cr_assert_eq(deliver(&bob, "a/b", &good), MQE2E_ERR_REPLAY);
    cr_assert_eq(deliver(&bob, "a/b", &genuine2), MQE2E_ERR_REPLAY);
    /* 1 x auth: a forged envelope claiming a fresh sequence number */
    forge(&m, SECRET_B, "g1", 1, 1, 5000, "a/b", "forged");
    cr_assert_eq(deliver(&bob, "a/b", &m), MQE2E_ERR_AUTH);
    /* 1 x other, counted from outside */
    mqe2e_protector_count_drop(bob.pr, MQE2E_ERR_IO);
    mqe2e_protector_count_drop(bob.pr, MQE2E_OK);

    mqe2e_counters c = counters(&bob);
    cr_assert_eq(c.dropped[MQE2E_DROP_DECODE], 3);
    cr_assert_eq(c.dropped[MQE2E_DROP_TOO_LARGE], 2);
    cr_assert_eq(c.dropped[MQE2E_DROP_SUITE], 1);
    cr_assert_eq(c.dropped[MQE2E_DROP_NO_POLICY], 2);
    cr_assert_eq(c.dropped[MQE2E_DROP_POLICY], 1);
    cr_assert_eq(c.dropped[MQE2E_DROP_NO_KEY], 1);
    cr_assert_eq(c.dropped[MQE2E_DROP_EXPIRED], 0);
    cr_assert_eq(c.dropped[MQE2E_DROP_REPLAY], 3);
    cr_assert_eq(c.dropped[MQE2E_DROP_AUTH], 4);
    cr_assert_eq(c.dropped[MQE2E_DROP_OTHER], 1);
    cr_assert_eq(c.opened, 2);
    cr_assert_eq(c.sealed, 0);
    cr_assert_eq(c.plaintext_in, 0);
    peer_free(&alice);
    peer_free(&bob);
}

/* ------------------------------------------------------------------ tamper */

Test(protect, tamper_every_byte_never_delivers)
{
    peer alice, bob;
    peer_init(&alice, "alice", 1);
    peer_init(&bob, "bob", 2);
    msg m;
    seal(&alice, "a/b", "switch: on, level 7", &m);
    static const uint8_t masks[] = {0x01, 0x80, 0xff};
    uint64_t attempts = 0;
    for (size_t i = 0; i < m.len; i++) {
        for (size_t k = 0; k < sizeof masks; k++) {
            msg t = m;
            t.buf[i] ^= masks[k];
            cr_assert_neq(deliver(&bob, "a/b", &t), MQE2E_OK, "byte %zu mask %02x delivered", i,
                          masks[k]);
            attempts++;
        }
    }
    for (size_t n = 0; n < m.len; n++) {
        msg t = m;
        t.len = n;
        cr_assert_neq(deliver(&bob, "a/b", &t), MQE2E_OK, "truncated to %zu delivered", n);
        attempts++;
    }
    msg t = m;
    t.buf[t.len++] = 0;
    cr_assert_neq(deliver(&bob, "a/b", &t), MQE2E_OK, "extended message delivered");
    attempts++;
    mqe2e_counters c = counters(&bob);
    cr_assert_eq(dropped_total(&c), attempts);
    cr_assert_eq(c.opened, 0);
    /* None of it moved the window: the genuine message still reads, once. */
    cr_assert_eq(deliver(&bob, "a/b", &m), MQE2E_OK);
    cr_assert_eq(deliver(&bob, "a/b", &m), MQE2E_ERR_REPLAY);
    peer_free(&alice);
    peer_free(&bob);
}

/* ------------------------------------------------------------------ persistence */

static void file_peer(peer *pe, const char *path, const uint8_t key[32], int create)
{
    mqe2e_storage st;
    memset(pe, 0, sizeof *pe);
    cr_assert_eq(mqe2e_storage_file_key(&st, path, key), MQE2E_OK);
    if (create) {
        cr_assert_eq(mqe2e_keystore_create(&pe->ks, st, "bob", 2), MQE2E_OK);
        cr_assert_eq(mqe2e_keystore_group_add_epoch(pe->ks, "g1", "a/#", 1, SECRET_A, T0),
                     MQE2E_OK);
    } else {
        cr_assert_eq(mqe2e_keystore_open(&pe->ks, st), MQE2E_OK);
    }
    mqe2e_protector_options o = default_opts();
    peer_policy(pe, &o);
}

/* A second reader of what is on disk now. The keystore file is locked while
 * bob has it open (one open at a time), so the probe reads a copy. */
static void probe_peer(peer *pe, const char *path, const uint8_t key[32])
{
    char copy[4300];
    size_t len = 0;
    snprintf(copy, sizeof copy, "%s.probe", path);
    char *data = tu_read_file(path, &len);
    cr_assert_not_null(data);
    FILE *f = fopen(copy, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(data, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
    free(data);
    file_peer(pe, copy, key, 0);
}

Test(protect, replay_windows_survive_restart)
{
    char *dir = tu_tempdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/bob.keystore", dir);
    uint8_t key[32];
    memset(key, 0x42, sizeof key);

    peer alice, bob;
    peer_init(&alice, "alice", 1);
    file_peer(&bob, path, key, 1);
    msg m[4], other;
    for (int i = 0; i < 4; i++) seal(&alice, "a/b", "msg", &m[i]);
    forge(&other, SECRET_A, "g1", 1, 500, 42, "a/b", "other sender");
    cr_assert_eq(deliver(&bob, "a/b", &m[0]), MQE2E_OK);
    cr_assert_eq(deliver(&bob, "a/b", &m[1]), MQE2E_OK);
    cr_assert_eq(deliver(&bob, "a/b", &other), MQE2E_OK);
    /* Restart: protector checkpoint, keystore written and closed, reopened. */
    peer_free(&bob);
    file_peer(&bob, path, key, 0);
    cr_assert_eq(deliver(&bob, "a/b", &m[0]), MQE2E_ERR_REPLAY);
    cr_assert_eq(deliver(&bob, "a/b", &m[1]), MQE2E_ERR_REPLAY);
    cr_assert_eq(deliver(&bob, "a/b", &other), MQE2E_ERR_REPLAY);
    cr_assert_eq(deliver(&bob, "a/b", &m[3]), MQE2E_OK);
    cr_assert_eq(deliver(&bob, "a/b", &m[2]), MQE2E_OK);

    /* Explicit checkpoint then a second restart. */
    cr_assert_eq(mqe2e_protector_checkpoint(bob.pr), MQE2E_OK);
    peer_free(&bob);
    file_peer(&bob, path, key, 0);
    for (int i = 0; i < 4; i++) cr_assert_eq(deliver(&bob, "a/b", &m[i]), MQE2E_ERR_REPLAY);
    cr_assert_eq(counters(&bob).dropped[MQE2E_DROP_REPLAY], 4);
    peer_free(&bob);
    peer_free(&alice);
    tu_rmtree(dir);
    free(dir);
}

Test(protect, periodic_checkpoints_reach_storage)
{
    char *dir = tu_tempdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/bob.keystore", dir);
    uint8_t key[32];
    memset(key, 0x17, sizeof key);
    peer alice, bob;
    peer_init(&alice, "alice", 1);
    mqe2e_storage st;
    cr_assert_eq(mqe2e_storage_file_key(&st, path, key), MQE2E_OK);
    memset(&bob, 0, sizeof bob);
    cr_assert_eq(mqe2e_keystore_create(&bob.ks, st, "bob", 2), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(bob.ks, "g1", "a/#", 1, SECRET_A, T0), MQE2E_OK);
    mqe2e_protector_options o = default_opts();
    o.checkpoint_every = 2;
    peer_policy(&bob, &o);
    msg m[3];
    for (int i = 0; i < 3; i++) seal(&alice, "a/b", "m", &m[i]);
    for (int i = 0; i < 3; i++) cr_assert_eq(deliver(&bob, "a/b", &m[i]), MQE2E_OK);
    /* A second reader of the same file sees the checkpoint of the first two. */
    peer probe;
    probe_peer(&probe, path, key);
    cr_assert_eq(deliver(&probe, "a/b", &m[0]), MQE2E_ERR_REPLAY);
    cr_assert_eq(deliver(&probe, "a/b", &m[1]), MQE2E_ERR_REPLAY);
    mqe2e_protector_free(probe.pr);
    mqe2e_policy_free(probe.pol);
    mqe2e_keystore_close(probe.ks);
    peer_free(&bob);
    peer_free(&alice);
    tu_rmtree(dir);
    free(dir);
}

/* A reader of bob's file: is m already recorded in the checkpoint on disk? */
static int replayed_on_disk(const char *path, const uint8_t key[32], const msg *m)
{
    peer probe;
    probe_peer(&probe, path, key);
    uint8_t out[2048];
    size_t out_len = 0;
    mqe2e_receipt r;
    /* Begin only: the probe records nothing, so freeing it writes nothing. */
    int rc = mqe2e_unprotect_begin(probe.pr, "a/b", m->buf, m->len, T0, out, sizeof out,
                                   &out_len, &r);
    mqe2e_protector_free(probe.pr);
    mqe2e_policy_free(probe.pol);
    mqe2e__keystore_abandon(probe.ks);
    return rc;
}

Test(protect, checkpoints_by_time_reach_storage)
{
    char *dir = tu_tempdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/bob.keystore", dir);
    uint8_t key[32];
    memset(key, 0x18, sizeof key);
    peer alice, bob;
    peer_init(&alice, "alice", 1);
    mqe2e_storage st;
    cr_assert_eq(mqe2e_storage_file_key(&st, path, key), MQE2E_OK);
    memset(&bob, 0, sizeof bob);
    cr_assert_eq(mqe2e_keystore_create(&bob.ks, st, "bob", 2), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(bob.ks, "g1", "a/#", 1, SECRET_A, T0), MQE2E_OK);
    mqe2e_protector_options o = default_opts();
    o.checkpoint_every = UINT32_MAX; /* by time only */
    o.checkpoint_seconds = 5;
    peer_policy(&bob, &o);
    msg m[4];
    for (int i = 0; i < 4; i++) seal(&alice, "a/b", "m", &m[i]);
    cr_assert_eq(deliver_at(&bob, "a/b", &m[0], T0, NULL), MQE2E_OK);
    cr_assert_eq(deliver_at(&bob, "a/b", &m[1], T0 + 4, NULL), MQE2E_OK);
    /* Under 5 s: nothing written yet, a restored reader would accept m[0]. */
    cr_assert_eq(replayed_on_disk(path, key, &m[0]), MQE2E_OK);
    cr_assert_eq(deliver_at(&bob, "a/b", &m[2], T0 + 5, NULL), MQE2E_OK);
    /* 5 s after the first clock: checkpointed with m[0..2]. */
    cr_assert_eq(replayed_on_disk(path, key, &m[0]), MQE2E_ERR_REPLAY);
    cr_assert_eq(replayed_on_disk(path, key, &m[2]), MQE2E_ERR_REPLAY);
    /* A clock that goes back neither checkpoints nor stalls later ones. */
    cr_assert_eq(deliver_at(&bob, "a/b", &m[3], T0 + 1, NULL), MQE2E_OK);
    cr_assert_eq(replayed_on_disk(path, key, &m[3]), MQE2E_OK);
    peer_free(&bob);
    /* Freeing the protector checkpoints what is left. */
    cr_assert_eq(replayed_on_disk(path, key, &m[3]), MQE2E_ERR_REPLAY);
    peer_free(&alice);
    tu_rmtree(dir);
    free(dir);
}

Test(protect, checkpoint_defaults_and_version_1_options)
{
    char *dir = tu_tempdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/bob.keystore", dir);
    uint8_t key[32];
    memset(key, 0x19, sizeof key);
    peer alice, bob;
    peer_init(&alice, "alice", 1);
    mqe2e_storage st;
    cr_assert_eq(mqe2e_storage_file_key(&st, path, key), MQE2E_OK);
    memset(&bob, 0, sizeof bob);
    cr_assert_eq(mqe2e_keystore_create(&bob.ks, st, "bob", 2), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(bob.ks, "g1", "a/#", 1, SECRET_A, T0), MQE2E_OK);
    /* Version 1 never reads checkpoint_seconds: garbage there is ignored and
     * the defaults (4096 messages, 5 s) apply. */
    mqe2e_protector_options o = default_opts();
    o.struct_version = 1;
    o.checkpoint_seconds = 1;
    peer_policy(&bob, &o);
    msg m[3];
    for (int i = 0; i < 3; i++) seal(&alice, "a/b", "m", &m[i]);
    cr_assert_eq(deliver_at(&bob, "a/b", &m[0], T0, NULL), MQE2E_OK);
    cr_assert_eq(deliver_at(&bob, "a/b", &m[1], T0 + 4, NULL), MQE2E_OK);
    cr_assert_eq(replayed_on_disk(path, key, &m[0]), MQE2E_OK, "1 s was not the interval");
    cr_assert_eq(deliver_at(&bob, "a/b", &m[2], T0 + 5, NULL), MQE2E_OK);
    cr_assert_eq(replayed_on_disk(path, key, &m[1]), MQE2E_ERR_REPLAY, "default 5 s applies");
    peer_free(&bob);
    peer_free(&alice);
    tu_rmtree(dir);
    free(dir);
}

/* Many groups: the first message of each after open does not rewrite the
 * keystore every time (one durable reservation covers them all). */
static int count_store(void *ctx, const uint8_t *data, size_t len)
{
    (void)data;
    (void)len;
    (*(int *)ctx)++;
    return MQE2E_OK;
}

static int count_load(void *ctx, uint8_t **data, size_t *len)
{
    (void)ctx;
    (void)data;
    (void)len;
    return MQE2E_ERR_NOT_FOUND;
}

Test(protect, first_message_of_many_groups_writes_once)
{
    int stores = 0;
    mqe2e_storage st = {count_load, count_store, NULL, &stores};
    peer pe;
    memset(&pe, 0, sizeof pe);
    cr_assert_eq(mqe2e_keystore_create(&pe.ks, st, "many", 7), MQE2E_OK);
    char gid[32], filter[48], topic[48];
    for (int i = 0; i < 200; i++) {
        snprintf(gid, sizeof gid, "g%03d", i);
        snprintf(filter, sizeof filter, "f/%03d/#", i);
        cr_assert_eq(mqe2e_keystore_group_add_epoch(pe.ks, gid, filter, 1, SECRET_A, T0),
                     MQE2E_OK);
    }
    mqe2e_protector_options o = default_opts();
    peer_policy(&pe, &o);
    int before = stores;
    msg m;
    for (int i = 0; i < 200; i++) {
        snprintf(topic, sizeof topic, "f/%03d/x", i);
        cr_assert_eq(mqe2e_protect(pe.pr, topic, (const uint8_t *)"v", 1, T0, m.buf,
                                   sizeof m.buf, &m.len),
                     MQE2E_OK);
    }
    cr_assert_eq(stores, before + 1, "%d writes for 200 first messages", stores - before);
    peer_free(&pe);
}

/* ------------------------------------------------------------------ scale */

#define N_SENDERS 10000U

Test(protect, ten_thousand_senders)
{
    peer bob;
    peer_init(&bob, "bob", 2);
    msg *ms = malloc(N_SENDERS * sizeof *ms);
    cr_assert_not_null(ms);
    for (uint32_t s = 0; s < N_SENDERS; s++) {
        forge(&ms[s], SECRET_A, "g1", 1, 10000U + s, 1U + (s % 7U), "a/fleet", "reading");
    }
    for (uint32_t s = 0; s < N_SENDERS; s++) {
        cr_assert_eq(deliver(&bob, "a/fleet", &ms[s]), MQE2E_OK, "sender %u", s);
    }
    for (uint32_t s = 0; s < N_SENDERS; s++) {
        cr_assert_eq(deliver(&bob, "a/fleet", &ms[s]), MQE2E_ERR_REPLAY, "sender %u", s);
    }
    mqe2e_counters c = counters(&bob);
    cr_assert_eq(c.opened, N_SENDERS);
    cr_assert_eq(c.dropped[MQE2E_DROP_REPLAY], N_SENDERS);
    cr_assert_eq(dropped_total(&c), N_SENDERS);
    cr_assert_eq(mqe2e__protector_cache_size(bob.pr), N_SENDERS);
    free(ms);
    peer_free(&bob);
}

/* The cache starts small and grows on demand: one sender costs a handful of
 * slots, not a block sized for a busy receiver; keys cached in every slab of
 * the grown cache still open later messages (a wrong slot would fail the AEAD). */
Test(protect, cache_grows_on_demand)
{
    peer bob;
    peer_init(&bob, "bob", 2);
    cr_assert_eq(mqe2e__protector_cache_capacity(bob.pr), 0);
    enum { N = 1000 };
    msg *ms = malloc(N * sizeof *ms);
    cr_assert_not_null(ms);
    forge(&ms[0], SECRET_A, "g1", 1, 30000U, 1, "a/x", "r");
    cr_assert_eq(deliver(&bob, "a/x", &ms[0]), MQE2E_OK);
    cr_assert_leq(mqe2e__protector_cache_capacity(bob.pr), 8);
    for (uint32_t s = 1; s < N; s++) forge(&ms[s], SECRET_A, "g1", 1, 30000U + s, 1, "a/x", "r");
    for (uint32_t s = 1; s < N; s++) cr_assert_eq(deliver(&bob, "a/x", &ms[s]), MQE2E_OK);
    cr_assert_eq(mqe2e__protector_cache_size(bob.pr), N);
    cr_assert_leq(mqe2e__protector_cache_capacity(bob.pr), 2 * N);
    for (uint32_t s = 0; s < N; s++) forge(&ms[s], SECRET_A, "g1", 1, 30000U + s, 2, "a/x", "r");
    for (uint32_t s = 0; s < N; s++) {
        cr_assert_eq(deliver(&bob, "a/x", &ms[s]), MQE2E_OK, "sender %u", s);
    }
    /* A limit that is not a power of two caps the capacity exactly. */
    peer carol;
    peer_init(&carol, "carol", 2);
    cr_assert_eq(mqe2e__protector_set_cache_limit(carol.pr, 100), MQE2E_OK);
    for (uint32_t s = 0; s < N; s++) forge(&ms[s], SECRET_A, "g1", 1, 30000U + s, 1, "a/x", "r");
    for (uint32_t s = 0; s < N; s++) cr_assert_eq(deliver(&carol, "a/x", &ms[s]), MQE2E_OK);
    cr_assert_eq(mqe2e__protector_cache_capacity(carol.pr), 100);
    free(ms);
    peer_free(&carol);
    peer_free(&bob);
}

Test(protect, eviction_keeps_replay_windows)
{
    peer bob;
    peer_init(&bob, "bob", 2);
    cr_assert_eq(mqe2e__protector_set_cache_limit(bob.pr, 64), MQE2E_OK);
    enum { N = 1000 };
    msg *ms = malloc(N * sizeof *ms);
    cr_assert_not_null(ms);
    for (uint32_t s = 0; s < N; s++) forge(&ms[s], SECRET_A, "g1", 1, 20000U + s, 5, "a/x", "r");
    for (uint32_t s = 0; s < N; s++) cr_assert_eq(deliver(&bob, "a/x", &ms[s]), MQE2E_OK);
    cr_assert_leq(mqe2e__protector_cache_size(bob.pr), 64);
    for (uint32_t s = 0; s < N; s++) {
        cr_assert_eq(deliver(&bob, "a/x", &ms[s]), MQE2E_ERR_REPLAY, "sender %u", s);
    }
    /* Older but inside the window still passes, once. */
    for (uint32_t s = 0; s < N; s++) forge(&ms[s], SECRET_A, "g1", 1, 20000U + s, 4, "a/x", "r");
    for (uint32_t s = 0; s < N; s++) cr_assert_eq(deliver(&bob, "a/x", &ms[s]), MQE2E_OK);
    for (uint32_t s = 0; s < N; s++) cr_assert_eq(deliver(&bob, "a/x", &ms[s]), MQE2E_ERR_REPLAY);
    cr_assert_leq(mqe2e__protector_cache_size(bob.pr), 64);
    mqe2e_counters c = counters(&bob);
    cr_assert_eq(c.opened, 2 * N);
    cr_assert_eq(c.dropped[MQE2E_DROP_REPLAY], 2 * N);
    free(ms);
    peer_free(&bob);
}

/* ------------------------------------------------------------------ policy helper */

Test(protect, policy_from_keystore_groups)
{
    mqe2e_storage st;
    mqe2e_keystore *ks;
    mqe2e_policy *pol;
    cr_assert_eq(mqe2e_storage_memory(&st), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_create(&ks, st, "c", 1), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, "hr", "hr/+/bpm", 1, SECRET_A, T0), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, "all", "#", 1, SECRET_B, T0), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_new(&pol), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add_keystore_groups(pol, ks), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_count(pol), 2);
    mqe2e_policy_kind kind;
    const char *target;
    cr_assert_eq(mqe2e_policy_lookup(pol, "hr/dev1/bpm", &kind, &target), MQE2E_OK);
    cr_assert_eq(kind, MQE2E_POLICY_GROUP);
    cr_assert_str_eq(target, mqe2e_keystore_group_name(ks, 0));
    cr_assert_eq(mqe2e_policy_lookup(pol, "x/y", &kind, &target), MQE2E_OK);
    cr_assert_str_eq(target, "all");
    cr_assert_eq(mqe2e_policy_add_keystore_groups(NULL, ks), MQE2E_ERR_INVALID_ARG);
    mqe2e_policy_free(pol);
    mqe2e_keystore_close(ks);
}

/* ------------------------------------------------------------------ */
/* Bound MQTT v5 properties and retain flag (PROTOCOL.md section 2.5.1). */

#include "internal_bind.h"
#include "mqe2e/msgmeta.h"

#define BIND_RULE "a/#=group:g1;bind=content-type,response-topic,correlation-data," \
                  "payload-format,user:site,retain"

/* A peer whose first rule binds @p rule's list (then the keystore groups). */
static void bpeer_init(peer *pe, const char *client, uint32_t sender, const char *rule)
{
    mqe2e_storage st;
    mqe2e_protector_options o = default_opts();
    memset(pe, 0, sizeof *pe);
    cr_assert_eq(mqe2e_storage_memory(&st), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_create(&pe->ks, st, client, sender), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(pe->ks, "g1", "a/#", 1, SECRET_A, T0), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_new(&pe->pol), MQE2E_OK);
    if (rule != NULL) cr_assert_eq(mqe2e_policy_add_text(pe->pol, rule), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add_keystore_groups(pe->pol, pe->ks), MQE2E_OK);
    cr_assert_eq(mqe2e_protector_new(&pe->pr, pe->ks, pe->pol, &o), MQE2E_OK);
}

#define PROP_S(i, s) {(i), NULL, 0, (const uint8_t *)(s), sizeof(s) - 1U}
#define PROP_U(n, v) {MQE2E_PROP_USER, (const uint8_t *)(n), sizeof(n) - 1U, \
                      (const uint8_t *)(v), sizeof(v) - 1U}

static const uint8_t PF1 = 1;
/* What the sender publishes with: every bindable kind, one unbound user
 * property ("trace") and an unbindable one (message expiry, 0x02). */
static const mqe2e_msg_property SENT[] = {
    {MQE2E_PROP_PAYLOAD_FORMAT, NULL, 0, &PF1, 1},
    PROP_S(MQE2E_PROP_CONTENT_TYPE, "application/json"),
    PROP_S(MQE2E_PROP_RESPONSE_TOPIC, "a/reply"),
    PROP_S(MQE2E_PROP_CORRELATION_DATA, "\x01\x02"),
    PROP_U("site", "berlin"),
    PROP_U("trace", "t-1"),
    PROP_S(0x02, "\x00\x00\x00\x3c"),
};
#define NSENT (sizeof SENT / sizeof SENT[0])

static void seal_meta(peer *pe, const char *text, const mqe2e_msg_property *props, size_t n,
                      int retain, msg *m)
{
    mqe2e_msg_meta meta = {props, n, retain};
    size_t len = strlen(text);
    cr_assert_eq(mqe2e_protect_meta(pe->pr, "a/b", &meta, (const uint8_t *)text, len, T0, m->buf,
                                    sizeof m->buf, &m->len),
                 MQE2E_OK);
}

static int open_meta(peer *pe, const msg *m, const mqe2e_msg_property *props, size_t n,
                     int retain)
{
    mqe2e_msg_meta meta = {props, n, retain};
    mqe2e_receipt r;
    uint8_t out[2048];
    size_t out_len = 99;
    int rc = mqe2e_unprotect_begin_meta(pe->pr, "a/b", &meta, m->buf, m->len, T0, out,
                                        sizeof out, &out_len, &r);
    if (rc != MQE2E_OK) {
        cr_assert_eq(out_len, 0U);
        return rc;
    }
    /* Not committed: the same envelope can be tried again with other properties. */
    return rc;
}

static uint64_t dropped(peer *pe, mqe2e_drop_reason r)
{
    mqe2e_counters c;
    mqe2e_protector_counters(pe->pr, &c);
    return c.dropped[r];
}

Test(protect_bind, rule_text_and_refusals)
{
    mqe2e_policy *p;
    cr_assert_eq(mqe2e_policy_new(&p), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add_text(p, BIND_RULE), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add_text(p, "s/#=signed-group:g1;bind=retain"), MQE2E_OK);
    /* Brokers change these: refused with their own code. */
    cr_assert_eq(mqe2e_policy_add_text(p, "x/#=group:g1;bind=message-expiry"), MQE2E_ERR_POLICY);
    cr_assert_eq(mqe2e_policy_add_text(p, "x/#=group:g1;bind=retain,topic-alias"),
                 MQE2E_ERR_POLICY);
    cr_assert_eq(mqe2e_policy_add_text(p, "x/#=group:g1;bind=subscription-id"), MQE2E_ERR_POLICY);
    cr_assert_eq(mqe2e_policy_add_text(p, "x/#=group:g1;bind=colour"), MQE2E_ERR_DECODE);
    cr_assert_eq(mqe2e_policy_add_text(p, "x/#=group:g1;bind="), MQE2E_ERR_DECODE);
    cr_assert_eq(mqe2e_policy_add_text(p, "x/#=group:g1;bind=retain,,content-type"),
                 MQE2E_ERR_DECODE);
    /* Channel mode and plaintext bind nothing. */
    cr_assert_eq(mqe2e_policy_add_text(p, "x/#=channel:peer;bind=retain"), MQE2E_ERR_POLICY);
    cr_assert_eq(mqe2e_policy_add_text(p, "x/#=plaintext;bind=retain"), MQE2E_ERR_POLICY);
    cr_assert_eq(mqe2e_policy_count(p), 2U, "nothing refused was added");
    /* Rules valid before keep their meaning: ";bind" inside a filter. */
    cr_assert_eq(mqe2e_policy_add_text(p, "y;bind=plaintext"), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_bind_last(p, "retain"), MQE2E_ERR_POLICY, "a plaintext rule");
    cr_assert_eq(mqe2e_policy_add_text(p, "z=group:g;bind"), MQE2E_OK);
    mqe2e_policy_kind kind;
    const char *target;
    cr_assert_eq(mqe2e_policy_lookup(p, "y;bind", &kind, &target), MQE2E_OK);
    cr_assert_eq(kind, MQE2E_POLICY_PLAINTEXT);
    cr_assert_eq(mqe2e_policy_lookup(p, "z", &kind, &target), MQE2E_OK);
    cr_assert_str_eq(target, "g;bind");
    /* The call form. */
    cr_assert_eq(mqe2e_policy_add(p, "w/#", MQE2E_POLICY_GROUP, "g1"), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_bind_last(p, "user:a,user:a,retain"), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_bind_last(p, "topic-alias"), MQE2E_ERR_POLICY);
    mqe2e_policy_free(p);
}

/* The suffix of section 2.5.1, byte for byte (the spec's example). */
Test(protect_bind, ad_suffix_bytes)
{
    mqe2e__bind *b;
    const char list[] = "retain,user:site,content-type";
    cr_assert_eq(mqe2e__bind_parse(list, strlen(list), &b), MQE2E_OK);
    const mqe2e_msg_property props[] = {PROP_U("site", "b"), PROP_S(MQE2E_PROP_CONTENT_TYPE, ""),
                                        PROP_U("site", "c"), PROP_U("other", "x")};
    mqe2e_msg_meta meta = {props, 4, 1};
    uint8_t *ad;
    size_t n;
    cr_assert_eq(mqe2e__bind_ad(b, &meta, 1, &ad, &n), MQE2E_OK);
    static const uint8_t want[] = {
        0xB1, 0, 0, 0, 32,                     /* tag, u32be len(P) */
        0x03, 0, 0, 0, 1, 0, 0,                /* content type: one empty value */
        0x26, 0, 4, 's', 'i', 't', 'e', 0, 0, 0, 2, /* user "site": two values */
        0, 1, 'b', 0, 1, 'c',
        0xFF, 0, 0, 0, 1, 0, 1, 1};            /* retain = 1 */
    cr_assert_eq(n, sizeof want);
    cr_assert_eq(memcmp(ad, want, n), 0);
    free(ad);
    /* Absent, empty and repeated are three different suffixes. */
    uint8_t *a0, *a1, *a2;
    size_t n0, n1, n2;
    mqe2e_msg_meta none = {NULL, 0, 0};
    const mqe2e_msg_property one[] = {PROP_U("site", "")};
    const mqe2e_msg_property two[] = {PROP_U("site", ""), PROP_U("site", "")};
    mqe2e_msg_meta m1 = {one, 1, 0}, m2 = {two, 2, 0};
    cr_assert_eq(mqe2e__bind_ad(b, &none, 0, &a0, &n0), MQE2E_OK);
    cr_assert_eq(mqe2e__bind_ad(b, &m1, 0, &a1, &n1), MQE2E_OK);
    cr_assert_eq(mqe2e__bind_ad(b, &m2, 0, &a2, &n2), MQE2E_OK);
    cr_assert(n0 < n1 && n1 < n2);
    free(a0);
    free(a1);
    free(a2);
    mqe2e__bind_free(b);
}

Test(protect_bind, each_bound_property_changed_removed_added_duplicated_is_auth)
{
    peer a, b;
    bpeer_init(&a, "alice", 0x111, BIND_RULE);
    bpeer_init(&b, "bob", 0x222, BIND_RULE);
    msg m;
    seal_meta(&a, "on", SENT, NSENT, 0, &m);
    cr_assert_eq(open_meta(&b, &m, SENT, NSENT, 0), MQE2E_OK, "as sent");
    uint64_t expect_auth = 0;
    /* Each bound property (indices 0..4): changed, removed, duplicated. */
    for (size_t k = 0; k < 5; k++) {
        mqe2e_msg_property got[NSENT + 1];
        uint8_t changed[64];
        memcpy(got, SENT, sizeof SENT);
        cr_assert_leq(SENT[k].value_len, sizeof changed - 1U);
        memcpy(changed, SENT[k].value, SENT[k].value_len);
        changed[0] ^= 0x01;
        got[k].value = changed;
        cr_assert_eq(open_meta(&b, &m, got, NSENT, 0), MQE2E_ERR_AUTH, "changed %zu", k);
        memcpy(got, SENT, sizeof SENT);
        memmove(&got[k], &got[k + 1], (NSENT - k - 1U) * sizeof got[0]);
        cr_assert_eq(open_meta(&b, &m, got, NSENT - 1U, 0), MQE2E_ERR_AUTH, "removed %zu", k);
        memcpy(got, SENT, sizeof SENT);
        got[NSENT] = SENT[k];
        cr_assert_eq(open_meta(&b, &m, got, NSENT + 1U, 0), MQE2E_ERR_AUTH, "duplicated %zu", k);
        expect_auth += 3;
    }
    /* Added: a message sent without a bound property that arrives with one. */
    msg bare;
    seal_meta(&a, "bare", NULL, 0, 0, &bare);
    const mqe2e_msg_property added[] = {PROP_S(MQE2E_PROP_RESPONSE_TOPIC, "evil/reply")};
    cr_assert_eq(open_meta(&b, &bare, added, 1, 0), MQE2E_ERR_AUTH, "added");
    const mqe2e_msg_property added_user[] = {PROP_U("site", "x")};
    cr_assert_eq(open_meta(&b, &bare, added_user, 1, 0), MQE2E_ERR_AUTH, "added user");
    expect_auth += 2;
    /* Unbound properties may change: the broker's expiry, another user name. */
    mqe2e_msg_property got[NSENT];
    memcpy(got, SENT, sizeof SENT);
    got[5].value = (const uint8_t *)"t-2";
    got[6].value = (const uint8_t *)"\x00\x00\x00\x01";
    cr_assert_eq(open_meta(&b, &m, got, NSENT - 1U, 0), MQE2E_OK, "unbound changed or removed");
    /* The order of different properties does not matter, the order of one
     * name's values does. */
    const mqe2e_msg_property two[] = {PROP_U("site", "1"), PROP_U("site", "2")};
    const mqe2e_msg_property swapped[] = {PROP_U("site", "2"), PROP_U("site", "1")};
    msg m2;
    seal_meta(&a, "two", two, 2, 0, &m2);
    cr_assert_eq(open_meta(&b, &m2, swapped, 2, 0), MQE2E_ERR_AUTH);
    expect_auth++;
    mqe2e_msg_property rev[NSENT];
    for (size_t i = 0; i < NSENT; i++) rev[i] = SENT[NSENT - 1U - i];
    cr_assert_eq(open_meta(&b, &m, rev, NSENT, 0), MQE2E_OK, "other properties reordered");
    cr_assert_eq(dropped(&b, MQE2E_DROP_AUTH), expect_auth);
    peer_free(&a);
    peer_free(&b);
}

Test(protect_bind, retain_zero_to_one_refused_one_to_zero_accepted)
{
    peer a, b;
    bpeer_init(&a, "alice", 0x111, "a/#=group:g1;bind=retain");
    bpeer_init(&b, "bob", 0x222, "a/#=group:g1;bind=retain");
    msg live, kept;
    seal_meta(&a, "live", NULL, 0, 0, &live);
    seal_meta(&a, "kept", NULL, 0, 1, &kept);
    /* A live message replayed by the broker as retained ('current state'). */
    cr_assert_eq(open_meta(&b, &live, NULL, 0, 1), MQE2E_ERR_AUTH);
    cr_assert_eq(dropped(&b, MQE2E_DROP_AUTH), 1U);
    /* A retained publish delivered live (flag cleared) or from the store. */
    cr_assert_eq(open_meta(&b, &kept, NULL, 0, 0), MQE2E_OK);
    cr_assert_eq(open_meta(&b, &kept, NULL, 0, 1), MQE2E_OK);
    cr_assert_eq(open_meta(&b, &live, NULL, 0, 0), MQE2E_OK);
    /* A forgery received with retain 0 costs two opens, still one drop. */
    live.buf[live.len - 1] ^= 0x80;
    cr_assert_eq(open_meta(&b, &live, NULL, 0, 0), MQE2E_ERR_AUTH);
    cr_assert_eq(dropped(&b, MQE2E_DROP_AUTH), 2U);
    peer_free(&a);
    peer_free(&b);
}

Test(protect_bind, bound_and_unbound_rules_disagree_is_auth_unbound_unchanged)
{
    peer a, b, c;
    bpeer_init(&a, "alice", 0x111, "a/#=group:g1;bind=content-type");
    bpeer_init(&b, "bob", 0x222, NULL);
    bpeer_init(&c, "carol", 0x333, NULL);
    msg m;
    /* A sender that binds (even nothing present) is not read by one that does not. */
    seal_meta(&a, "x", NULL, 0, 0, &m);
    cr_assert_eq(open_meta(&b, &m, NULL, 0, 0), MQE2E_ERR_AUTH);
    /* Without bind, properties and retain are ignored, as before. */
    seal(&b, "a/b", "plain", &m);
    cr_assert_eq(open_meta(&c, &m, SENT, NSENT, 1), MQE2E_OK);
    mqe2e_msg_meta meta = {SENT, NSENT, 1};
    msg m2;
    cr_assert_eq(mqe2e_protect_meta(b.pr, "a/b", &meta, (const uint8_t *)"p", 1, T0, m2.buf,
                                    sizeof m2.buf, &m2.len),
                 MQE2E_OK);
    cr_assert_eq(deliver(&c, "a/b", &m2), MQE2E_OK, "old call reads it");
    peer_free(&a);
    peer_free(&b);
    peer_free(&c);
}

Test(protect_bind, oversized_bound_value_refused_before_a_sequence_number)
{
    peer a;
    bpeer_init(&a, "alice", 0x111, "a/#=group:g1;bind=content-type");
    static uint8_t big[MQE2E_PROP_MAX_BYTES + 1U];
    const mqe2e_msg_property p[] = {{MQE2E_PROP_CONTENT_TYPE, NULL, 0, big, sizeof big}};
    mqe2e_msg_meta meta = {p, 1, 0};
    msg m;
    cr_assert_eq(mqe2e_protect_meta(a.pr, "a/b", &meta, (const uint8_t *)"p", 1, T0, m.buf,
                                    sizeof m.buf, &m.len),
                 MQE2E_ERR_INVALID_ARG);
    mqe2e_counters c;
    mqe2e_protector_counters(a.pr, &c);
    cr_assert_eq(c.sealed, 0U);
    peer_free(&a);
}

/* Issue 11: a revoked device's sender ids are dropped as `revoked` in every
 * epoch (old, current, even one it could not have had) as soon as the
 * receiver holds a list retiring them; other senders, and the same id in
 * another group, still get through. */
Test(protect, retired_senders_dropped_in_every_epoch)
{
    peer bob;
    peer_init(&bob, "bob", 2);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(bob.ks, "g1", NULL, 2, SECRET_A2, T0 + 1),
                 MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(bob.ks, "g2", "b/#", 1, SECRET_B, T0),
                 MQE2E_OK);
    mqe2e_policy_free(bob.pol);
    mqe2e_protector_free(bob.pr);
    mqe2e_protector_options o = default_opts();
    peer_policy(&bob, &o);

    msg e1, e2, e3, other, g2;
    forge(&e1, SECRET_A, "g1", 1, 7, 1, "a/x", "old epoch");
    forge(&e2, SECRET_A2, "g1", 2, 7, 1, "a/x", "new epoch");
    forge(&e3, SECRET_A2, "g1", 2, 7, 2, "a/x", "before the list");
    forge(&other, SECRET_A2, "g1", 2, 8, 1, "a/x", "another sender");
    forge(&g2, SECRET_B, "g2", 1, 7, 1, "b/x", "same id, other group");
    cr_assert_eq(deliver_at(&bob, "a/x", &e3, T0 + 2, NULL), MQE2E_OK);

    uint8_t pk[32], sk[64];
    crypto_sign_keypair(pk, sk);
    static const mqe2e_revocation_entry ent[] = {{"stolen", 0, T0}};
    static const mqe2e_retired_sender ret[] = {{"g1", 7}};
    mqe2e_revocation_contents c = {1, T0, 0, ent, 1, ret, 1};
    uint8_t *bytes = NULL;
    size_t len = 0;
    mqe2e_revocation_list *rl = NULL;
    cr_assert_eq(mqe2e_revocation_list_sign_contents(&bytes, &len, sk, &c), MQE2E_OK);
    cr_assert_eq(mqe2e_revocation_list_verify(&rl, bytes, len, pk), MQE2E_OK);
    cr_assert_eq(mqe2e_protector_set_revocations(bob.pr, rl), MQE2E_OK);
    mqe2e_revocation_list_free(rl); /* the protector keeps its own copy */
    free(bytes);

    cr_assert_eq(deliver_at(&bob, "a/x", &e1, T0 + 2, NULL), MQE2E_ERR_REVOKED);
    cr_assert_eq(deliver_at(&bob, "a/x", &e2, T0 + 2, NULL), MQE2E_ERR_REVOKED);
    cr_assert_eq(deliver_at(&bob, "a/x", &other, T0 + 2, NULL), MQE2E_OK);
    cr_assert_eq(deliver_at(&bob, "b/x", &g2, T0 + 2, NULL), MQE2E_OK);
    mqe2e_counters k = counters(&bob);
    cr_assert_eq(k.dropped[MQE2E_DROP_REVOKED], 2);
    cr_assert_eq(dropped_total(&k), 2);
    cr_assert_str_eq(mqe2e_drop_reason_name(MQE2E_DROP_REVOKED), "revoked");
    cr_assert_eq(mqe2e_drop_reason_of(MQE2E_ERR_REVOKED), MQE2E_DROP_REVOKED);
    cr_assert_str_eq(mqe2e_error_name(MQE2E_ERR_REVOKED), "revoked");

    /* A list without retired senders clears the set. */
    cr_assert_eq(mqe2e_protector_set_revocations(bob.pr, NULL), MQE2E_OK);
    forge(&e2, SECRET_A2, "g1", 2, 7, 5, "a/x", "cleared");
    cr_assert_eq(deliver_at(&bob, "a/x", &e2, T0 + 2, NULL), MQE2E_OK);
    cr_assert_eq(mqe2e_protector_set_revocations(NULL, NULL), MQE2E_ERR_INVALID_ARG);
    peer_free(&bob);
}

/* The protector remembers the policy's answer for its last few topics; a
 * rule added afterwards (a grant arriving from the authority) must count from
 * the next message on, on both sides. */
Test(protect, a_rule_added_after_a_refusal_counts_at_the_next_message)
{
    peer alice, bob;
    peer_init(&alice, "alice", 1);
    peer_init(&bob, "bob", 2);
    uint8_t out[256];
    size_t out_len = 0;
    for (int i = 0; i < 2; i++)
        cr_assert_eq(mqe2e_protect(alice.pr, "z/top", (const uint8_t *)"hi", 2, T0, out,
                                   sizeof out, &out_len),
                     MQE2E_ERR_NO_POLICY);
    cr_assert_eq(mqe2e_policy_add(alice.pol, "z/#", MQE2E_POLICY_GROUP, "g1"), MQE2E_OK);
    msg m;
    seal(&alice, "z/top", "granted", &m);

    cr_assert_eq(deliver(&bob, "z/top", &m), MQE2E_ERR_NO_POLICY);
    cr_assert_eq(mqe2e_policy_add(bob.pol, "z/#", MQE2E_POLICY_GROUP, "g1"), MQE2E_OK);
    char text[64];
    cr_assert_eq(deliver_at(&bob, "z/top", &m, T0, text), MQE2E_OK);
    cr_assert_str_eq(text, "granted");
    peer_free(&alice);
    peer_free(&bob);
}

/* More topics than the protector remembers, in turn, with a topic too long
 * to remember among them: every answer is the topic's own (group, clear or
 * refused), never a neighbour's. */
Test(protect, remembered_policy_answers_are_never_mixed_between_topics)
{
    peer alice, bob;
    peer_init(&alice, "alice", 1);
    peer_init(&bob, "bob", 2);
    char longt[201];
    memset(longt, 'x', sizeof longt - 1U);
    memcpy(longt, "a/", 2);
    longt[sizeof longt - 1U] = '\0';
    const char *topics[] = {"a/1", "pub/1", "a/2", "pub/2", "z/1", longt, "a/3", "pub/a/1"};
    const int kind[] = {1, 0, 1, 0, -1, 1, 1, 0}; /* 1 group, 0 clear, -1 no policy */
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++) {
            msg m;
            int rc = mqe2e_protect(alice.pr, topics[i], (const uint8_t *)"payload", 7, T0, m.buf,
                                   sizeof m.buf, &m.len);
            if (kind[i] < 0) {
                cr_assert_eq(rc, MQE2E_ERR_NO_POLICY, "%s", topics[i]);
                continue;
            }
            cr_assert_eq(rc, MQE2E_OK, "%s", topics[i]);
            if (kind[i] == 0) {
                cr_assert_eq(m.len, 7U, "%s went out sealed", topics[i]);
                cr_assert_eq(memcmp(m.buf, "payload", 7), 0);
            } else {
                cr_assert_gt(m.len, 7U + 16U, "%s went out in clear", topics[i]);
                cr_assert_null(contains(m.buf, m.len, "payload"));
                char text[16];
                cr_assert_eq(deliver_at(&bob, topics[i], &m, T0, text), MQE2E_OK, "%s",
                             topics[i]);
                cr_assert_str_eq(text, "payload");
                /* Bound to its own topic: refused on another group topic. */
                const char *other = strcmp(topics[i], "a/1") != 0 ? "a/1" : "a/2";
                cr_assert_neq(deliver(&bob, other, &m), MQE2E_OK);
            }
        }
    }
    peer_free(&alice);
    peer_free(&bob);
}
