/*
 * Envelope: the documented golden vector (docs/PROTOCOL.md), round trips,
 * then every way a received envelope can be wrong.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal_envelope_codec.h"
#include "mqe2e/envelope.h"
#include "mqe2e/error.h"
#include "proto/envelope.pb-c.h"
#include "testutil.h"

/* ---- the worked example of docs/PROTOCOL.md ("Worked example") ---- */
#define EX_GROUP "hr-monitors"
#define EX_TOPIC "fleet/device-42/hr"
#define EX_EPOCH 7U
#define EX_SENDER 0xC0FFEEU
#define EX_SEQ 1000U
#define EX_INSTANCE UINT64_C(0x5eed1234abcd)
#define EX_PAYLOAD "{\"bpm\":72}"
#define EX_KEY "01d18f6d14c623466f942d6ed9471719361406b04d8a2e04cfd0b61b8449fa5f"
#define EX_IV "925cb03b1766ee5d22cfc772"
#define EX_NONCE "ccb1a20fbcabee5d22cfc49a"
#define EX_ENVELOPE                                                                               \
    "200728eeff830642065eed1234abcd30e8070a1aa3e507f7342f6cf10c17ae8181dfecb0156bc7fca857c7ec09ff"

static void ex_secret(uint8_t s[MQE2E_GROUP_SECRET_BYTES])
{
    for (unsigned i = 0; i < MQE2E_GROUP_SECRET_BYTES; i++) {
        s[i] = (uint8_t)i;
    }
}

static mqe2e_sender_key ex_key(void)
{
    uint8_t secret[MQE2E_GROUP_SECRET_BYTES];
    mqe2e_sender_key k;
    ex_secret(secret);
    cr_assert_eq(mqe2e_sender_key_derive(&k, secret, EX_GROUP, EX_EPOCH, EX_SENDER), MQE2E_OK);
    return k;
}

static mqe2e_envelope_header ex_header(void)
{
    mqe2e_envelope_header h = {MQE2E_MODE_GROUP, EX_EPOCH, EX_SENDER, EX_SEQ, EX_INSTANCE};
    return h;
}

/* Seals the example into buf; returns its length. */
static size_t ex_seal(uint8_t *buf, size_t cap)
{
    mqe2e_sender_key k = ex_key();
    mqe2e_envelope_header h = ex_header();
    size_t n = 0;
    cr_assert_eq(mqe2e_envelope_seal(buf, cap, &n, &k, EX_TOPIC, EX_GROUP, &h,
                                     (const uint8_t *)EX_PAYLOAD, strlen(EX_PAYLOAD)),
                 MQE2E_OK);
    return n;
}

static void assert_hex(const uint8_t *got, size_t got_len, const char *hex, const char *what)
{
    size_t len;
    uint8_t *exp = tu_hex_decode(hex, &len);
    cr_assert_not_null(exp);
    cr_assert_eq(got_len, len, "%s: length %zu, expected %zu", what, got_len, len);
    cr_assert_eq(memcmp(got, exp, len), 0, "%s differs from the documented value", what);
    free(exp);
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0) {
            return false;
        }
    }
    return true;
}

/* parse + open with the example key/topic/group; pt is pre-filled with 0xCC. */
static int ex_receive(const uint8_t *env, size_t env_len, uint8_t *pt, size_t pt_cap,
                      size_t *pt_len)
{
    mqe2e_sender_key k = ex_key();
    mqe2e_envelope_view v;
    memset(pt, 0xCC, pt_cap);
    int rc = mqe2e_envelope_parse(&v, env, env_len);
    if (rc != MQE2E_OK) {
        return rc;
    }
    rc = mqe2e_envelope_open(pt, pt_cap, pt_len, &k, EX_TOPIC, EX_GROUP, &v);
    if (rc != MQE2E_OK) {
        cr_assert(all_zero(pt, pt_cap), "output not wiped after a failed open");
    }
    return rc;
}

static void init(void)
{
    cr_assert_eq(mqe2e_init(), MQE2E_OK);
}

TestSuite(envelope, .init = init);

Test(envelope, golden_vector)
{
    mqe2e_sender_key k = ex_key();
    uint8_t nonce[MQE2E_SENDER_IV_BYTES];
    uint8_t env[128];
    uint8_t pt[64];
    size_t n, pt_len = 0;
    mqe2e_envelope_view v;

    assert_hex(k.key, sizeof k.key, EX_KEY, "sender key");
    assert_hex(k.iv, sizeof k.iv, EX_IV, "sender iv");
    mqe2e__envelope_nonce(nonce, k.iv, EX_INSTANCE, EX_SEQ);
    assert_hex(nonce, sizeof nonce, EX_NONCE, "nonce");

    n = ex_seal(env, sizeof env);
    assert_hex(env, n, EX_ENVELOPE, "envelope");

    cr_assert_eq(mqe2e_envelope_parse(&v, env, n), MQE2E_OK);
    cr_assert_eq(v.header.mode, MQE2E_MODE_GROUP);
    cr_assert_eq(v.header.epoch, EX_EPOCH);
    cr_assert_eq(v.header.sender_id, EX_SENDER);
    cr_assert_eq(v.header.seq, EX_SEQ);
    cr_assert_eq(v.header.instance, EX_INSTANCE);
    cr_assert_eq(v.ciphertext_len, strlen(EX_PAYLOAD) + MQE2E_TAG_BYTES);
    cr_assert_null(v.signature);
    cr_assert_eq(mqe2e_envelope_open(pt, sizeof pt, &pt_len, &k, EX_TOPIC, EX_GROUP, &v), MQE2E_OK);
    cr_assert_eq(pt_len, strlen(EX_PAYLOAD));
    cr_assert_eq(memcmp(pt, EX_PAYLOAD, pt_len), 0);
    mqe2e_sender_key_wipe(&k);
    cr_assert(all_zero((const uint8_t *)&k, sizeof k));
    mqe2e_sender_key_wipe(NULL);
}

static void round_trip_inst(size_t len, uint32_t epoch, uint32_t sender, uint64_t seq,
                            uint64_t instance, const char *topic)
{
    uint8_t secret[MQE2E_GROUP_SECRET_BYTES];
    mqe2e_sender_key k;
    mqe2e_envelope_header h = {MQE2E_MODE_GROUP, epoch, sender, seq, instance};
    mqe2e_envelope_view v;
    uint8_t *pt = malloc(len + 1), *out = malloc(len + 1);
    size_t cap = mqe2e_envelope_sealed_bound(len);
    uint8_t *env = malloc(cap);
    size_t n, out_len = 0;

    cr_assert(pt && out && env);
    randombytes_buf(secret, sizeof secret);
    randombytes_buf(pt, len);
    cr_assert_eq(mqe2e_sender_key_derive(&k, secret, "g", epoch, sender), MQE2E_OK);
    cr_assert_eq(mqe2e_envelope_seal(env, cap, &n, &k, topic, "g", &h, len ? pt : NULL, len),
                 MQE2E_OK);
    cr_assert_leq(n, cap);
    cr_assert_eq(n, mqe2e__envelope_header_len(&h, len + 16) + len + 16);
    cr_assert_eq(mqe2e_envelope_parse(&v, env, n), MQE2E_OK);
    cr_assert_eq(v.header.epoch, epoch);
    cr_assert_eq(v.header.sender_id, sender);
    cr_assert_eq(v.header.seq, seq);
    cr_assert_eq(v.header.instance, instance);
    cr_assert_eq(mqe2e_envelope_open(out, len, &out_len, &k, topic, "g", &v), MQE2E_OK,
                 "open of %zu bytes", len);
    cr_assert_eq(out_len, len);
    cr_assert_eq(memcmp(out, pt, len), 0);
    mqe2e_sender_key_wipe(&k);
    free(pt);
    free(out);
    free(env);
}

static void round_trip(size_t len, uint32_t epoch, uint32_t sender, uint64_t seq, const char *topic)
{
    round_trip_inst(len, epoch, sender, seq, 0x0A0B0C0D0E0FU, topic);
}

/* The worked example printed in docs/PROTOCOL.md is the one tested above. */
Test(envelope, golden_vector_is_documented)
{
    static const char *const values[] = {EX_KEY, EX_IV, EX_NONCE, EX_ENVELOPE};
    char *doc = tu_read_file(MQE2E_SOURCE_DIR "/docs/PROTOCOL.md", NULL);
    cr_assert_not_null(doc, "docs/PROTOCOL.md is missing");
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        cr_assert_not_null(strstr(doc, values[i]), "docs/PROTOCOL.md lacks %s", values[i]);
    }
    cr_assert_not_null(strstr(doc, "`" EX_GROUP "`"));
    cr_assert_not_null(strstr(doc, "`" EX_TOPIC "`"));
    free(doc);
}

Test(envelope, round_trips)
{
    static const size_t sizes[] = {0, 1, 255, 256, 16384};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        round_trip(sizes[i], 1, 0x123456, 1000, "a/b");
    }
    /* Zero scalars are omitted on the wire and still round-trip. */
    round_trip(10, 0, 0, 0, "a/b");
    round_trip(10, UINT32_MAX, UINT32_MAX, MQE2E_SEQ_MAX, "a/b");
    round_trip(1, 1, 1, 1, "x");
    /* Instances at both ends of their 48 bits. */
    round_trip_inst(10, 1, 1, 1, 0, "x");
    round_trip_inst(10, 1, 1, 1, MQE2E_INSTANCE_MAX, "x");
}

Test(envelope, long_topics_use_heap_ad)
{
    char *topic = malloc(MQE2E_TOPIC_MAX_BYTES + 2U);
    cr_assert_not_null(topic);
    memset(topic, 't', MQE2E_TOPIC_MAX_BYTES + 1U);
    topic[MQE2E_TOPIC_MAX_BYTES] = '\0';
    round_trip(33, 2, 3, 4, topic);
    topic[600] = '\0';
    round_trip(33, 2, 3, 4, topic);
    topic[600] = 't';

    /* One byte over the MQTT limit is refused. */
    mqe2e_sender_key k = ex_key();
    mqe2e_envelope_header h = ex_header();
    uint8_t env[64];
    size_t n;
    topic[MQE2E_TOPIC_MAX_BYTES] = 't';
    topic[MQE2E_TOPIC_MAX_BYTES + 1U] = '\0';
    cr_assert_eq(mqe2e_envelope_seal(env, sizeof env, &n, &k, topic, EX_GROUP, &h, NULL, 0),
                 MQE2E_ERR_INVALID_ARG);
    free(topic);
}

Test(envelope, argument_checks)
{
    mqe2e_sender_key k = ex_key();
    mqe2e_envelope_header h = ex_header();
    uint8_t env[128], pt[64];
    size_t n, pt_len;
    mqe2e_envelope_view v;
    char group[MQE2E_GROUP_ID_MAX_BYTES + 2U];
    uint8_t secret[MQE2E_GROUP_SECRET_BYTES] = {0};

    size_t full = ex_seal(env, sizeof env);
    cr_assert_eq(mqe2e_envelope_seal(env, full - 1, &n, &k, EX_TOPIC, EX_GROUP, &h,
                                     (const uint8_t *)EX_PAYLOAD, strlen(EX_PAYLOAD)),
                 MQE2E_ERR_BUFFER_TOO_SMALL);
    cr_assert_eq(mqe2e_envelope_seal(env, full, &n, &k, EX_TOPIC, EX_GROUP, &h,
                                     (const uint8_t *)EX_PAYLOAD, strlen(EX_PAYLOAD)),
                 MQE2E_OK);
    cr_assert_eq(n, full);
    cr_assert_eq(mqe2e_envelope_seal(env, sizeof env, &n, &k, "", EX_GROUP, &h, NULL, 0),
                 MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_envelope_seal(env, sizeof env, &n, &k, EX_TOPIC, "", &h, NULL, 0),
                 MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_envelope_seal(env, sizeof env, &n, &k, EX_TOPIC, EX_GROUP, &h, NULL, 3),
                 MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_envelope_seal(env, sizeof env, &n, &k, EX_TOPIC, EX_GROUP, &h, pt,
                                     (size_t)MQE2E_ENVELOPE_MAX_PAYLOAD + 1U),
                 MQE2E_ERR_TOO_LARGE);
    h.mode = MQE2E_MODE_CHANNEL;
    cr_assert_eq(mqe2e_envelope_seal(env, sizeof env, &n, &k, EX_TOPIC, EX_GROUP, &h, NULL, 0),
                 MQE2E_ERR_SUITE);
    h.mode = MQE2E_MODE_SIGNED_GROUP;
    cr_assert_eq(mqe2e_envelope_seal(env, sizeof env, &n, &k, EX_TOPIC, EX_GROUP, &h, NULL, 0),
                 MQE2E_ERR_SUITE);
    h.mode = (mqe2e_envelope_mode)9;
    cr_assert_eq(mqe2e_envelope_seal(env, sizeof env, &n, &k, EX_TOPIC, EX_GROUP, &h, NULL, 0),
                 MQE2E_ERR_INVALID_ARG);

    /* Open: the output must hold the plaintext, and is wiped when it cannot. */
    full = ex_seal(env, sizeof env);
    cr_assert_eq(mqe2e_envelope_parse(&v, env, full), MQE2E_OK);
    memset(pt, 0xCC, sizeof pt);
    cr_assert_eq(
        mqe2e_envelope_open(pt, strlen(EX_PAYLOAD) - 1, &pt_len, &k, EX_TOPIC, EX_GROUP, &v),
        MQE2E_ERR_BUFFER_TOO_SMALL);
    cr_assert(all_zero(pt, strlen(EX_PAYLOAD) - 1));
    cr_assert_eq(mqe2e_envelope_open(pt, strlen(EX_PAYLOAD), &pt_len, &k, EX_TOPIC, EX_GROUP, &v),
                 MQE2E_OK);
    cr_assert_eq(mqe2e_envelope_parse(NULL, env, full), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_envelope_parse(&v, NULL, 3), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_envelope_parse(&v, NULL, 0), MQE2E_ERR_DECODE);

    /* Group id length limits of the key schedule. */
    memset(group, 'g', sizeof group);
    group[MQE2E_GROUP_ID_MAX_BYTES] = '\0';
    cr_assert_eq(mqe2e_sender_key_derive(&k, secret, group, 1, 1), MQE2E_OK);
    group[MQE2E_GROUP_ID_MAX_BYTES] = 'g';
    group[MQE2E_GROUP_ID_MAX_BYTES + 1U] = '\0';
    cr_assert_eq(mqe2e_sender_key_derive(&k, secret, group, 1, 1), MQE2E_ERR_INVALID_ARG);
    cr_assert(all_zero((const uint8_t *)&k, sizeof k), "failed derive leaves no key");
    cr_assert_eq(mqe2e_sender_key_derive(&k, secret, "", 1, 1), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_sender_key_derive(&k, NULL, "g", 1, 1), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_sender_key_derive(NULL, secret, "g", 1, 1), MQE2E_ERR_INVALID_ARG);

    cr_assert_eq(mqe2e_envelope_sealed_bound(0), 16U + MQE2E_ENVELOPE_MAX_HEADER_BYTES);
    cr_assert_eq(mqe2e_envelope_sealed_bound(SIZE_MAX - 3U), SIZE_MAX);
}

Test(envelope, max_header_is_reachable)
{
    /* Every header field at its widest plus the longest body length. */
    mqe2e_envelope_header h = {MQE2E_MODE_GROUP, UINT32_MAX, UINT32_MAX, MQE2E_SEQ_MAX,
                               MQE2E_INSTANCE_MAX};
    cr_assert_eq(mqe2e__envelope_header_len(&h, (size_t)MQE2E_ENVELOPE_MAX_PAYLOAD + 16U),
                 MQE2E_ENVELOPE_MAX_HEADER_BYTES);
    /* A channel header (no instance, 64-bit seq) stays within it. */
    mqe2e_envelope_header c = {MQE2E_MODE_CHANNEL, UINT32_MAX, UINT32_MAX, UINT64_MAX, 0U};
    cr_assert_leq(mqe2e__envelope_header_len(&c, (size_t)MQE2E_ENVELOPE_MAX_PAYLOAD + 16U),
                  MQE2E_ENVELOPE_MAX_HEADER_BYTES);
}

Test(envelope, tamper_every_byte_and_bit)
{
    uint8_t env[128], bad[128], pt[64];
    size_t n = ex_seal(env, sizeof env), pt_len;
    int counts[3] = {0, 0, 0};

    for (size_t i = 0; i < n; i++) {
        memcpy(bad, env, n);
        bad[i] ^= 0x01;
        int rc = ex_receive(bad, n, pt, sizeof pt, &pt_len);
        cr_assert(rc == MQE2E_ERR_AUTH || rc == MQE2E_ERR_DECODE || rc == MQE2E_ERR_SUITE,
                  "byte %zu flipped: %s", i, mqe2e_error_name(rc));
        counts[rc == MQE2E_ERR_AUTH ? 0 : rc == MQE2E_ERR_DECODE ? 1 : 2]++;
    }
    /* Header and body bytes, first and last of the tag. */
    static const size_t bytes[] = {0, 1, 2, 5, 8, 10, 11, 12, 20, 37};
    for (size_t j = 0; j < sizeof bytes / sizeof bytes[0]; j++) {
        for (unsigned b = 0; b < 8; b++) {
            memcpy(bad, env, n);
            bad[bytes[j]] ^= (uint8_t)(1U << b);
            int rc = ex_receive(bad, n, pt, sizeof pt, &pt_len);
            cr_assert(rc == MQE2E_ERR_AUTH || rc == MQE2E_ERR_DECODE || rc == MQE2E_ERR_SUITE,
                      "byte %zu bit %u flipped: %s", bytes[j], b, mqe2e_error_name(rc));
        }
    }
    /* The untouched envelope still opens (the loop above did not test nothing). */
    cr_assert_eq(ex_receive(env, n, pt, sizeof pt, &pt_len), MQE2E_OK);
    cr_assert_gt(counts[0], 26, "every body byte must fail authentication");
}

Test(envelope, moved_to_other_topic_or_group)
{
    uint8_t env[128], pt[64];
    size_t n = ex_seal(env, sizeof env), pt_len;
    mqe2e_sender_key k = ex_key();
    mqe2e_envelope_view v;

    cr_assert_eq(mqe2e_envelope_parse(&v, env, n), MQE2E_OK);
    memset(pt, 0xCC, sizeof pt);
    cr_assert_eq(
        mqe2e_envelope_open(pt, sizeof pt, &pt_len, &k, "fleet/device-43/hr", EX_GROUP, &v),
        MQE2E_ERR_AUTH);
    cr_assert(all_zero(pt, sizeof pt));
    cr_assert_eq(
        mqe2e_envelope_open(pt, sizeof pt, &pt_len, &k, "fleet/device-42/hr/", EX_GROUP, &v),
        MQE2E_ERR_AUTH);
    /* Same key, other group id in the AD. */
    cr_assert_eq(mqe2e_envelope_open(pt, sizeof pt, &pt_len, &k, EX_TOPIC, "hr-monitorz", &v),
                 MQE2E_ERR_AUTH);
    /* The key of the same secret under another group id. */
    uint8_t secret[MQE2E_GROUP_SECRET_BYTES];
    mqe2e_sender_key k2;
    ex_secret(secret);
    cr_assert_eq(mqe2e_sender_key_derive(&k2, secret, "other", EX_EPOCH, EX_SENDER), MQE2E_OK);
    cr_assert_eq(mqe2e_envelope_open(pt, sizeof pt, &pt_len, &k2, EX_TOPIC, "other", &v),
                 MQE2E_ERR_AUTH);
    cr_assert(all_zero(pt, sizeof pt));
    cr_assert_eq(mqe2e_envelope_open(pt, sizeof pt, &pt_len, &k, EX_TOPIC, EX_GROUP, &v), MQE2E_OK);
}

/* Re-encodes the example's body under header h (as an attacker would). */
static size_t rewrap(uint8_t *out, const mqe2e_envelope_header *h)
{
    uint8_t env[128];
    size_t n = ex_seal(env, sizeof env);
    mqe2e_envelope_view v;
    cr_assert_eq(mqe2e_envelope_parse(&v, env, n), MQE2E_OK);
    size_t hl = mqe2e__envelope_header_put(out, h, v.ciphertext_len);
    memcpy(out + hl, v.ciphertext, v.ciphertext_len);
    return hl + v.ciphertext_len;
}

static void expect_auth_with_header(const mqe2e_envelope_header *h)
{
    uint8_t env[128], pt[64], secret[MQE2E_GROUP_SECRET_BYTES];
    size_t n = rewrap(env, h), pt_len;
    mqe2e_envelope_view v;
    mqe2e_sender_key k;

    cr_assert_eq(ex_receive(env, n, pt, sizeof pt, &pt_len), MQE2E_ERR_AUTH);
    /* A receiver derives the key named by the (forged) header: still refused. */
    ex_secret(secret);
    cr_assert_eq(mqe2e_sender_key_derive(&k, secret, EX_GROUP, h->epoch, h->sender_id), MQE2E_OK);
    cr_assert_eq(mqe2e_envelope_parse(&v, env, n), MQE2E_OK);
    cr_assert_eq(mqe2e_envelope_open(pt, sizeof pt, &pt_len, &k, EX_TOPIC, EX_GROUP, &v),
                 MQE2E_ERR_AUTH);
}

Test(envelope, header_rewritten)
{
    mqe2e_envelope_header h = ex_header();
    uint8_t env[128], pt[64];
    size_t pt_len;

    /* The unchanged re-encoding is byte-identical and opens. */
    size_t n = rewrap(env, &h);
    assert_hex(env, n, EX_ENVELOPE, "re-encoded envelope");
    cr_assert_eq(ex_receive(env, n, pt, sizeof pt, &pt_len), MQE2E_OK);

    h = ex_header();
    h.epoch = EX_EPOCH + 1U;
    expect_auth_with_header(&h);
    h = ex_header();
    h.epoch = 0;
    expect_auth_with_header(&h);
    h = ex_header();
    h.sender_id = EX_SENDER + 1U;
    expect_auth_with_header(&h);
    h = ex_header();
    h.sender_id = 0;
    expect_auth_with_header(&h);
    h = ex_header();
    h.seq = EX_SEQ + 1U;
    expect_auth_with_header(&h);
    h = ex_header();
    h.seq = EX_SEQ | (1ULL << 40);
    expect_auth_with_header(&h);
    /* The instance is half of the nonce and part of the AD. */
    h = ex_header();
    h.instance = EX_INSTANCE ^ 1U;
    expect_auth_with_header(&h);
    h = ex_header();
    h.instance = 0;
    expect_auth_with_header(&h);
    h = ex_header();
    h.instance = EX_INSTANCE ^ (UINT64_C(1) << 47);
    expect_auth_with_header(&h);
}

/* Group envelopes without their instance, with one of another size, or with
 * a seq beyond 48 bits are malformed; channel envelopes must not carry one. */
Test(envelope, instance_and_seq_range)
{
    uint8_t env[128], bad[160], pt[64];
    size_t n = ex_seal(env, sizeof env), pt_len;
    mqe2e_envelope_view v;

    /* The instance field is bytes 7..14 of the example: 42 06 + 6 bytes. */
    cr_assert_eq(env[7], 0x42);
    cr_assert_eq(env[8], 0x06);
    memcpy(bad, env, 7);
    memcpy(bad + 7, env + 15, n - 15);
    cr_assert_eq(ex_receive(bad, n - 8, pt, sizeof pt, &pt_len), MQE2E_ERR_DECODE);
    /* Five or seven bytes. */
    memcpy(bad, env, 9);
    bad[8] = 0x05;
    memcpy(bad + 9, env + 10, n - 10);
    cr_assert_eq(ex_receive(bad, n - 1, pt, sizeof pt, &pt_len), MQE2E_ERR_DECODE);
    memcpy(bad, env, 15);
    bad[8] = 0x07;
    bad[15] = 0x00;
    memcpy(bad + 16, env + 15, n - 15);
    cr_assert_eq(ex_receive(bad, n + 1, pt, sizeof pt, &pt_len), MQE2E_ERR_DECODE);
    /* Twice. */
    memcpy(bad, env, 15);
    memcpy(bad + 15, env + 7, 8);
    memcpy(bad + 23, env + 15, n - 15);
    cr_assert_eq(ex_receive(bad, n + 8, pt, sizeof pt, &pt_len), MQE2E_ERR_DECODE);
    /* As a varint. */
    memcpy(bad, env, n);
    bad[7] = 0x40;
    cr_assert_eq(ex_receive(bad, n, pt, sizeof pt, &pt_len), MQE2E_ERR_DECODE);

    /* seq 2^48 does not parse; 2^48 - 1 does (and fails only the AEAD). */
    mqe2e_envelope_header h = ex_header();
    h.seq = MQE2E_SEQ_MAX + 1U;
    size_t m = rewrap(bad, &h);
    cr_assert_eq(mqe2e_envelope_parse(&v, bad, m), MQE2E_ERR_DECODE);
    h.seq = MQE2E_SEQ_MAX;
    m = rewrap(bad, &h);
    cr_assert_eq(mqe2e_envelope_parse(&v, bad, m), MQE2E_OK);
    cr_assert_eq(v.header.seq, MQE2E_SEQ_MAX);

    /* The sealer refuses values it could not put in the nonce. */
    mqe2e_sender_key k = ex_key();
    h = ex_header();
    h.seq = MQE2E_SEQ_MAX + 1U;
    cr_assert_eq(mqe2e_envelope_seal(bad, sizeof bad, &m, &k, EX_TOPIC, EX_GROUP, &h, NULL, 0),
                 MQE2E_ERR_INVALID_ARG);
    h = ex_header();
    h.instance = MQE2E_INSTANCE_MAX + 1U;
    cr_assert_eq(mqe2e_envelope_seal(bad, sizeof bad, &m, &k, EX_TOPIC, EX_GROUP, &h, NULL, 0),
                 MQE2E_ERR_INVALID_ARG);

    /* A channel envelope carrying an instance is malformed. */
    cr_assert_eq(mqe2e__envelope_decode_channel(&v, env, n), MQE2E_ERR_DECODE);
    mqe2e_envelope_header ch = {MQE2E_MODE_CHANNEL, 1, 0, 5, 0U};
    m = mqe2e__envelope_header_put(bad, &ch, 16);
    memset(bad + m, 0, 16);
    cr_assert_eq(mqe2e__envelope_decode_channel(&v, bad, m + 16), MQE2E_OK);
}

Test(envelope, truncated_and_extended)
{
    uint8_t env[128], pt[64];
    size_t n = ex_seal(env, sizeof env), pt_len;

    for (size_t len = 0; len < n; len++) {
        int rc = ex_receive(env, len, pt, sizeof pt, &pt_len);
        cr_assert_neq(rc, MQE2E_OK, "truncated to %zu bytes accepted", len);
    }
    /* One trailing byte: field 0 is not a field. */
    env[n] = 0x00;
    cr_assert_eq(ex_receive(env, n + 1, pt, sizeof pt, &pt_len), MQE2E_ERR_DECODE);
    for (unsigned b = 0; b < 256; b++) {
        env[n] = (uint8_t)b;
        cr_assert_neq(ex_receive(env, n + 1, pt, sizeof pt, &pt_len), MQE2E_OK,
                      "trailing 0x%02x accepted", b);
    }
}

static const uint8_t F_INSTANCE[] = {0x42, 0x06, 0x5e, 0xed, 0x12, 0x34, 0xab, 0xcd};

/* Appends the example's instance and ciphertext after a hand-made prefix. */
static size_t craft(uint8_t *out, const uint8_t *prefix, size_t prefix_len, bool with_body)
{
    uint8_t env[128];
    size_t n = ex_seal(env, sizeof env);
    mqe2e_envelope_view v;
    cr_assert_eq(mqe2e_envelope_parse(&v, env, n), MQE2E_OK);
    memcpy(out, prefix, prefix_len);
    if (!with_body) {
        return prefix_len;
    }
    /* The example's instance, then its body. */
    memcpy(out + prefix_len, F_INSTANCE, sizeof F_INSTANCE);
    prefix_len += sizeof F_INSTANCE;
    out[prefix_len] = 0x0a;
    out[prefix_len + 1] = (uint8_t)v.ciphertext_len;
    memcpy(out + prefix_len + 2, v.ciphertext, v.ciphertext_len);
    return prefix_len + 2 + v.ciphertext_len;
}

static int parse_crafted(const uint8_t *prefix, size_t prefix_len, bool with_body)
{
    uint8_t buf[256];
    mqe2e_envelope_view v;
    size_t n = craft(buf, prefix, prefix_len, with_body);
    return mqe2e_envelope_parse(&v, buf, n);
}

/* Example header fields, each written alone. */
static const uint8_t F_EPOCH[] = {0x20, 0x07};
static const uint8_t F_SENDER[] = {0x28, 0xee, 0xff, 0x83, 0x06};
static const uint8_t F_SEQ[] = {0x30, 0xe8, 0x07};

Test(envelope, crafted_headers)
{
    uint8_t pre[64], pt[64];
    size_t pt_len;

    /* Reference: the example header written by hand parses and opens. */
    memcpy(pre, F_EPOCH, 2);
    memcpy(pre + 2, F_SENDER, 5);
    memcpy(pre + 7, F_SEQ, 3);
    cr_assert_eq(parse_crafted(pre, 10, true), MQE2E_OK);
    {
        uint8_t buf[256];
        size_t n = craft(buf, pre, 10, true);
        cr_assert_eq(ex_receive(buf, n, pt, sizeof pt, &pt_len), MQE2E_OK);
    }
    /* Any field order is accepted (the header is authenticated by value). */
    memcpy(pre, F_SEQ, 3);
    memcpy(pre + 3, F_SENDER, 5);
    memcpy(pre + 8, F_EPOCH, 2);
    {
        uint8_t buf[256];
        size_t n = craft(buf, pre, 10, true);
        cr_assert_eq(ex_receive(buf, n, pt, sizeof pt, &pt_len), MQE2E_OK);
        /* Body first, header after. */
        uint8_t buf2[256];
        memcpy(buf2, buf + 10, n - 10);
        memcpy(buf2 + n - 10, pre, 10);
        cr_assert_eq(ex_receive(buf2, n, pt, sizeof pt, &pt_len), MQE2E_OK);
    }

    /* Duplicates. */
    memcpy(pre, F_EPOCH, 2);
    memcpy(pre + 2, F_EPOCH, 2);
    cr_assert_eq(parse_crafted(pre, 4, true), MQE2E_ERR_DECODE);
    memcpy(pre, F_SENDER, 5);
    memcpy(pre + 5, F_SENDER, 5);
    cr_assert_eq(parse_crafted(pre, 10, true), MQE2E_ERR_DECODE);
    memcpy(pre, F_SEQ, 3);
    memcpy(pre + 3, F_SEQ, 3);
    cr_assert_eq(parse_crafted(pre, 6, true), MQE2E_ERR_DECODE);
    {
        static const uint8_t body16[] = {0x0a, 0x10, 0, 0, 0, 0, 0, 0, 0,
                                         0,    0,    0, 0, 0, 0, 0, 0, 0};
        cr_assert_eq(parse_crafted(body16, sizeof body16, true), MQE2E_ERR_DECODE, "second body");
        cr_assert_eq(parse_crafted(body16, sizeof body16, false), MQE2E_ERR_DECODE,
                     "a body without its instance");
        uint8_t with_inst[sizeof body16 + sizeof F_INSTANCE];
        memcpy(with_inst, F_INSTANCE, sizeof F_INSTANCE);
        memcpy(with_inst + sizeof F_INSTANCE, body16, sizeof body16);
        cr_assert_eq(parse_crafted(with_inst, sizeof with_inst, false), MQE2E_OK,
                     "an instance and a 16-byte body alone are well formed");
        uint8_t short_body[17];
        memcpy(short_body, body16, 17);
        short_body[1] = 0x0f;
        cr_assert_eq(parse_crafted(short_body, 17, false), MQE2E_ERR_DECODE, "15-byte body");
        short_body[1] = 0x00;
        cr_assert_eq(parse_crafted(short_body, 2, false), MQE2E_ERR_DECODE, "empty body");
    }

    /* A channel body is not a group envelope; a signed body needs its signature. */
    {
        static const uint8_t b2[] = {0x12, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
        static const uint8_t b3[] = {0x1a, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
        cr_assert_eq(parse_crafted(b2, sizeof b2, false), MQE2E_ERR_SUITE);
        cr_assert_eq(parse_crafted(b3, sizeof b3, false), MQE2E_ERR_DECODE);
        /* Written by the encoder as a real sender of those modes would. */
        mqe2e_envelope_header h = ex_header();
        uint8_t buf[128];
        h.mode = MQE2E_MODE_CHANNEL;
        size_t n = rewrap(buf, &h);
        cr_assert_eq(ex_receive(buf, n, pt, sizeof pt, &pt_len), MQE2E_ERR_SUITE);
        h.mode = MQE2E_MODE_SIGNED_GROUP;
        n = rewrap(buf, &h);
        cr_assert_eq(ex_receive(buf, n, pt, sizeof pt, &pt_len), MQE2E_ERR_DECODE);
    }

    /* Unknown fields, including the signature outside the signed mode. */
    {
        static const uint8_t f8[] = {0x40, 0x01};
        static const uint8_t f7[] = {0x3a, 0x01, 0x00};
        static const uint8_t f15[] = {0x78, 0x01};
        static const uint8_t f16[] = {0x80, 0x01, 0x01};
        static const uint8_t f0[] = {0x00, 0x01};
        static const uint8_t big_key[] = {0xff, 0xff, 0xff, 0xff, 0x7f, 0x01};
        cr_assert_eq(parse_crafted(f8, sizeof f8, true), MQE2E_ERR_DECODE);
        cr_assert_eq(parse_crafted(f7, sizeof f7, true), MQE2E_ERR_DECODE);
        cr_assert_eq(parse_crafted(f15, sizeof f15, true), MQE2E_ERR_DECODE);
        cr_assert_eq(parse_crafted(f16, sizeof f16, true), MQE2E_ERR_DECODE);
        cr_assert_eq(parse_crafted(f0, sizeof f0, true), MQE2E_ERR_DECODE);
        cr_assert_eq(parse_crafted(big_key, sizeof big_key, true), MQE2E_ERR_DECODE);
    }

    /* Wrong wire types. */
    {
        static const uint8_t epoch_len[] = {0x22, 0x01, 0x07};
        static const uint8_t seq_fixed64[] = {0x31, 1, 2, 3, 4, 5, 6, 7, 8};
        static const uint8_t sender_fixed32[] = {0x2d, 1, 2, 3, 4};
        static const uint8_t body_varint[] = {0x08, 0x05};
        cr_assert_eq(parse_crafted(epoch_len, sizeof epoch_len, true), MQE2E_ERR_DECODE);
        cr_assert_eq(parse_crafted(seq_fixed64, sizeof seq_fixed64, true), MQE2E_ERR_DECODE);
        cr_assert_eq(parse_crafted(sender_fixed32, sizeof sender_fixed32, true), MQE2E_ERR_DECODE);
        cr_assert_eq(parse_crafted(body_varint, sizeof body_varint, true), MQE2E_ERR_DECODE);
    }

    /* Non-minimal and overlong varints. */
    {
        static const uint8_t epoch_nm[] = {0x20, 0x87, 0x00};
        static const uint8_t seq_nm[] = {0x30, 0xe8, 0x87, 0x80, 0x00};
        static const uint8_t key_nm[] = {0xa0, 0x00, 0x07};
        static const uint8_t len_nm[] = {0x0a, 0x90, 0x00, 0, 0, 0, 0, 0, 0, 0,
                                         0,    0,    0,    0, 0, 0, 0, 0, 0};
        static const uint8_t seq_11[] = {0x30, 0x80, 0x80, 0x80, 0x80, 0x80,
                                         0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
        static const uint8_t seq_10_overflow[] = {0x30, 0xff, 0xff, 0xff, 0xff, 0xff,
                                                  0xff, 0xff, 0xff, 0xff, 0x02};
        static const uint8_t seq_max[] = {0x30, 0xff, 0xff, 0xff, 0xff, 0xff,
                                          0xff, 0xff, 0xff, 0xff, 0x01};
        static const uint8_t seq_48[] = {0x30, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f};
        static const uint8_t seq_2_48[] = {0x30, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40};
        static const uint8_t epoch_2_32[] = {0x20, 0x80, 0x80, 0x80, 0x80, 0x10};
        static const uint8_t epoch_max[] = {0x20, 0xff, 0xff, 0xff, 0xff, 0x0f};
        static const uint8_t sender_2_32[] = {0x28, 0x80, 0x80, 0x80, 0x80, 0x10};
        static const uint8_t sender_6_bytes[] = {0x28, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00};
        static const uint8_t epoch_trunc[] = {0x20, 0x87};
        cr_assert_eq(parse_crafted(epoch_nm, sizeof epoch_nm, true), MQE2E_ERR_DECODE);
        cr_assert_eq(parse_crafted(seq_nm, sizeof seq_nm, true), MQE2E_ERR_DECODE);
        cr_assert_eq(parse_crafted(key_nm, sizeof key_nm, true), MQE2E_ERR_DECODE);
        cr_assert_eq(parse_crafted(len_nm, sizeof len_nm, false), MQE2E_ERR_DECODE);
        cr_assert_eq(parse_crafted(seq_11, sizeof seq_11, true), MQE2E_ERR_DECODE);
        cr_assert_eq(parse_crafted(seq_10_overflow, sizeof seq_10_overflow, true),
                     MQE2E_ERR_DECODE);
        /* Group envelopes carry 48-bit sequence numbers. */
        cr_assert_eq(parse_crafted(seq_max, sizeof seq_max, true), MQE2E_ERR_DECODE);
        cr_assert_eq(parse_crafted(seq_48, sizeof seq_48, true), MQE2E_OK);
        cr_assert_eq(parse_crafted(seq_2_48, sizeof seq_2_48, true), MQE2E_ERR_DECODE);
        cr_assert_eq(parse_crafted(epoch_2_32, sizeof epoch_2_32, true), MQE2E_ERR_DECODE);
        cr_assert_eq(parse_crafted(epoch_max, sizeof epoch_max, true), MQE2E_OK);
        cr_assert_eq(parse_crafted(sender_2_32, sizeof sender_2_32, true), MQE2E_ERR_DECODE);
        cr_assert_eq(parse_crafted(sender_6_bytes, sizeof sender_6_bytes, true), MQE2E_ERR_DECODE);
        cr_assert_eq(parse_crafted(epoch_trunc, sizeof epoch_trunc, false), MQE2E_ERR_DECODE);
    }

    /* An explicit zero is what protobuf parsers accept; it decodes to 0. */
    {
        static const uint8_t epoch0[] = {0x20, 0x00};
        cr_assert_eq(parse_crafted(epoch0, sizeof epoch0, true), MQE2E_OK);
    }
}

Test(envelope, oversized_length_fields)
{
    uint8_t env[128], pt[64], buf[160];
    size_t n = ex_seal(env, sizeof env), pt_len;
    mqe2e_envelope_view v;
    cr_assert_eq(mqe2e_envelope_parse(&v, env, n), MQE2E_OK);
    size_t body_off = (size_t)(v.ciphertext - env);

    /* Body length one more than what is there. */
    cr_assert_eq(env[body_off - 1], v.ciphertext_len);
    memcpy(buf, env, n);
    buf[body_off - 1] = (uint8_t)(v.ciphertext_len + 1U);
    cr_assert_eq(ex_receive(buf, n, pt, sizeof pt, &pt_len), MQE2E_ERR_DECODE);

    /* Body lengths of 2^31, 2^63 and UINT64_MAX. */
    static const uint8_t l31[] = {0x80, 0x80, 0x80, 0x80, 0x08};
    static const uint8_t l63[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
    static const uint8_t lmax[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    const uint8_t *lens[] = {l31, l63, lmax};
    const size_t lens_n[] = {sizeof l31, sizeof l63, sizeof lmax};
    for (size_t i = 0; i < 3; i++) {
        size_t k = 0;
        memcpy(buf, env, body_off - 1);
        k = body_off - 1;
        memcpy(buf + k, lens[i], lens_n[i]);
        k += lens_n[i];
        memcpy(buf + k, v.ciphertext, v.ciphertext_len);
        k += v.ciphertext_len;
        cr_assert_eq(ex_receive(buf, k, pt, sizeof pt, &pt_len), MQE2E_ERR_DECODE);
    }
}

Test(envelope, body_over_hard_ceiling_too_large)
{
    size_t body = (size_t)MQE2E_ENVELOPE_MAX_PAYLOAD + MQE2E_TAG_BYTES + 1U;
    uint8_t *buf = calloc(1, body + 8);
    mqe2e_envelope_view v;
    cr_assert_not_null(buf);
    mqe2e_envelope_header h = {MQE2E_MODE_GROUP, 0, 0, 0, 0U};
    size_t hl = mqe2e__envelope_header_put(buf, &h, body);
    cr_assert_eq(mqe2e_envelope_parse(&v, buf, hl + body), MQE2E_ERR_TOO_LARGE);
    hl = mqe2e__envelope_header_put(buf, &h, body - 1U);
    cr_assert_eq(mqe2e_envelope_parse(&v, buf, hl + body - 1U), MQE2E_OK);
    free(buf);
}

Test(envelope, random_garbage)
{
    uint8_t buf[300], pt[300];
    size_t pt_len;
    unsigned parsed = 0;

    for (unsigned i = 0; i < 20000; i++) {
        size_t len = randombytes_uniform(sizeof buf);
        randombytes_buf(buf, len);
        /* Half the time start with a plausible header so the parser goes deeper. */
        if (i % 2 == 0 && len > 2) {
            static const uint8_t starts[] = {0x0a, 0x20, 0x28, 0x30, 0x42};
            buf[0] = starts[randombytes_uniform(sizeof starts)];
            if (buf[0] == 0x0a) {
                buf[1] = (uint8_t)(len - 2 < 0x80 ? len - 2 : buf[1]);
            } else if (buf[0] == 0x42 && len > 10) {
                /* An instance, then a body running to the end. */
                buf[1] = 0x06;
                buf[8] = 0x0a;
                buf[9] = (uint8_t)(len - 10 < 0x80 ? len - 10 : buf[9]);
            }
        }
        int rc = ex_receive(buf, len, pt, sizeof pt, &pt_len);
        cr_assert_neq(rc, MQE2E_OK, "random buffer %u accepted", i);
        parsed += rc == MQE2E_ERR_AUTH;
    }
    cr_log_info("random garbage: %u of 20000 parsed and failed authentication", parsed);
    cr_assert_gt(parsed, 0, "no random buffer reached the AEAD: the test is too shallow");
}

static size_t overhead_of(size_t pt_len, uint32_t epoch, uint32_t sender, uint64_t seq)
{
    uint8_t secret[MQE2E_GROUP_SECRET_BYTES] = {9};
    mqe2e_sender_key k;
    mqe2e_envelope_header h = {MQE2E_MODE_GROUP, epoch, sender, seq, 0U};
    uint8_t *pt = calloc(1, pt_len + 1), *env = malloc(mqe2e_envelope_sealed_bound(pt_len));
    size_t n;
    cr_assert(pt && env);
    cr_assert_eq(mqe2e_sender_key_derive(&k, secret, "g", epoch, sender), MQE2E_OK);
    cr_assert_eq(mqe2e_envelope_seal(env, mqe2e_envelope_sealed_bound(pt_len), &n, &k,
                                     "sensors/temp", "g", &h, pt, pt_len),
                 MQE2E_OK);
    mqe2e_sender_key_wipe(&k);
    free(pt);
    free(env);
    return n - pt_len;
}

Test(envelope, overhead_bound)
{
    const uint32_t w_epoch = (1U << 14) - 1U, w_sender = 0xFFFFFFU;
    const uint64_t w_seq = (1ULL << 28) - 1U;
    size_t typical = overhead_of(256, 1, 0xABCDEF, 1000);
    size_t worst = overhead_of(256, w_epoch, w_sender, w_seq);

    printf("envelope overhead, 256-byte payload: typical (epoch 1, 24-bit sender, seq 1000) "
           "%zu B, worst within bound conditions %zu B\n",
           typical, worst);
    fflush(stdout);
    cr_log_info("overhead typical %zu B, worst %zu B", typical, worst);
    /* 8 bytes of them are the instance field (docs/PROTOCOL.md 2.4, 2.7). */
    cr_assert_eq(typical, 37U);
    cr_assert_eq(worst, 40U);
    cr_assert_eq(overhead_of(256, w_epoch, (1U << 28) - 1U, w_seq), 40U);
    /* The documented conditions: body (payload + 16) below 2^14 bytes. */
    static const size_t sizes[] = {0, 1, 100, 256, 1000, 16367};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        cr_assert_leq(overhead_of(sizes[i], w_epoch, w_sender, w_seq), 40U, "payload %zu",
                      sizes[i]);
    }
    /* Past the documented conditions the bound is one byte looser, and no more. */
    cr_assert_eq(overhead_of(16368, w_epoch, w_sender, w_seq), 41U);
    cr_assert_eq(overhead_of(256, 1U << 14, w_sender, w_seq), 41U);
}

Test(envelope, protobuf_c_cross_check)
{
    uint8_t env[128];
    size_t n = ex_seal(env, sizeof env);
    mqe2e_envelope_view v;

    /* Ours -> protobuf-c. */
    Mqe2e__V1__Envelope *m = mqe2e__v1__envelope__unpack(NULL, n, env);
    cr_assert_not_null(m, "protobuf-c refuses our envelope");
    cr_assert_eq(mqe2e_envelope_parse(&v, env, n), MQE2E_OK);
    cr_assert_eq(m->sealed_case, MQE2E__V1__ENVELOPE__SEALED_GROUP_V1_CHACHA20POLY1305);
    cr_assert_eq(m->epoch, EX_EPOCH);
    cr_assert_eq(m->sender, EX_SENDER);
    cr_assert_eq(m->seq, EX_SEQ);
    cr_assert_eq(m->instance.len, MQE2E_INSTANCE_BYTES);
    cr_assert_eq(memcmp(m->instance.data, F_INSTANCE + 2, MQE2E_INSTANCE_BYTES), 0);
    cr_assert_eq(m->group_v1_chacha20poly1305.len, v.ciphertext_len);
    cr_assert_eq(memcmp(m->group_v1_chacha20poly1305.data, v.ciphertext, v.ciphertext_len), 0);
    cr_assert_eq(m->signature.len, 0U);
    /* Same size as protobuf-c would write. */
    cr_assert_eq(mqe2e__v1__envelope__get_packed_size(m), n);
    mqe2e__v1__envelope__free_unpacked(m, NULL);

    /* protobuf-c -> ours, over a spread of header values (zeros are omitted). */
    static const uint64_t vals[] = {0, 1, 127, 128, 16383, 16384, 0xFFFFFF, UINT32_MAX};
    uint8_t body[40];
    randombytes_buf(body, sizeof body);
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        for (size_t j = 0; j < sizeof vals / sizeof vals[0]; j++) {
            Mqe2e__V1__Envelope e;
            uint8_t packed[128], ours[128];
            mqe2e__v1__envelope__init(&e);
            e.epoch = (uint32_t)vals[i];
            e.sender = (uint32_t)vals[j];
            e.seq = (vals[(i + j) % 8] * (j == 7 ? 0xFFFFFFFFULL : 1U) + (i == 7 ? 0 : vals[j])) &
                    MQE2E_SEQ_MAX;
            uint8_t inst[MQE2E_INSTANCE_BYTES] = {(uint8_t)i, 0, 0, 0, (uint8_t)j, 0xff};
            e.instance.data = inst;
            e.instance.len = sizeof inst;
            e.sealed_case = MQE2E__V1__ENVELOPE__SEALED_GROUP_V1_CHACHA20POLY1305;
            e.group_v1_chacha20poly1305.data = body;
            e.group_v1_chacha20poly1305.len = 16U + i + j;
            size_t pn = mqe2e__v1__envelope__pack(&e, packed);
            cr_assert_eq(mqe2e_envelope_parse(&v, packed, pn), MQE2E_OK);
            cr_assert_eq(v.header.mode, MQE2E_MODE_GROUP);
            cr_assert_eq(v.header.epoch, e.epoch);
            cr_assert_eq(v.header.sender_id, e.sender);
            cr_assert_eq(v.header.seq, e.seq);
            cr_assert_eq(v.header.instance, ((uint64_t)i << 40) | ((uint64_t)j << 8) | 0xffU);
            cr_assert_eq(v.ciphertext_len, e.group_v1_chacha20poly1305.len);
            cr_assert_eq(memcmp(v.ciphertext, body, v.ciphertext_len), 0);
            /* Our encoding has the same length (field order differs). */
            mqe2e_envelope_header h = v.header;
            size_t hl = mqe2e__envelope_header_put(ours, &h, v.ciphertext_len);
            cr_assert_eq(hl + v.ciphertext_len, pn);
            memcpy(ours + hl, body, v.ciphertext_len);
            Mqe2e__V1__Envelope *back = mqe2e__v1__envelope__unpack(NULL, pn, ours);
            cr_assert_not_null(back);
            cr_assert_eq(back->epoch, e.epoch);
            cr_assert_eq(back->sender, e.sender);
            cr_assert_eq(back->seq, e.seq);
            mqe2e__v1__envelope__free_unpacked(back, NULL);
        }
    }
    /* protobuf-c's other modes are SUITE for us. */
    Mqe2e__V1__Envelope e;
    uint8_t packed[128];
    mqe2e__v1__envelope__init(&e);
    e.sealed_case = MQE2E__V1__ENVELOPE__SEALED_CHANNEL_V1_CHACHA20POLY1305;
    e.channel_v1_chacha20poly1305.data = body;
    e.channel_v1_chacha20poly1305.len = 20;
    e.epoch = 3;
    size_t pn = mqe2e__v1__envelope__pack(&e, packed);
    cr_assert_eq(mqe2e_envelope_parse(&v, packed, pn), MQE2E_ERR_SUITE);
    /* A signature next to a group body is not this mode. */
    e.sealed_case = MQE2E__V1__ENVELOPE__SEALED_GROUP_V1_CHACHA20POLY1305;
    e.group_v1_chacha20poly1305.data = body;
    e.group_v1_chacha20poly1305.len = 20;
    e.signature.data = body;
    e.signature.len = 8;
    pn = mqe2e__v1__envelope__pack(&e, packed);
    cr_assert_eq(mqe2e_envelope_parse(&v, packed, pn), MQE2E_ERR_DECODE);
}

Test(envelope, sender_key_sensitivity)
{
    uint8_t secret[MQE2E_GROUP_SECRET_BYTES], secret2[MQE2E_GROUP_SECRET_BYTES];
    mqe2e_sender_key base, k;
    ex_secret(secret);
    memcpy(secret2, secret, sizeof secret);
    secret2[31] ^= 0x80;

    cr_assert_eq(mqe2e_sender_key_derive(&base, secret, "g1", 5, 77), MQE2E_OK);
    cr_assert_eq(mqe2e_sender_key_derive(&k, secret, "g1", 5, 77), MQE2E_OK);
    cr_assert_eq(memcmp(&k, &base, sizeof k), 0, "derivation is deterministic");

    struct {
        const uint8_t *s;
        const char *g;
        uint32_t e, snd;
    } cases[] = {
        {secret2, "g1", 5, 77}, {secret, "g2", 5, 77},
        {secret, "g1x", 5, 77}, {secret, "g1", 6, 77},
        {secret, "g1", 5, 78},  {secret, "g1", 77, 5},
        {secret, "g1", 0, 77},  {secret, "g1", 5, 0},
        {secret, "g", 5, 77},   {secret, "g1", 5, 77 | (1U << 31)},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(mqe2e_sender_key_derive(&k, cases[i].s, cases[i].g, cases[i].e, cases[i].snd),
                     MQE2E_OK);
        cr_assert_neq(sodium_memcmp(k.key, base.key, sizeof k.key), 0, "key, case %zu", i);
        cr_assert_neq(sodium_memcmp(k.iv, base.iv, sizeof k.iv), 0, "iv, case %zu", i);
    }
    /* Key and IV come from different labels: the IV is not a key prefix. */
    cr_assert_neq(memcmp(base.key, base.iv, sizeof base.iv), 0);
}

static int cmp12(const void *a, const void *b)
{
    return memcmp(a, b, MQE2E_SENDER_IV_BYTES);
}

Test(envelope, nonces_distinct_across_seqs)
{
    mqe2e_sender_key k = ex_key();
    enum { N = 4096 };
    uint8_t(*nonces)[MQE2E_SENDER_IV_BYTES] = malloc(N * sizeof *nonces);
    cr_assert_not_null(nonces);

    mqe2e__envelope_nonce(nonces[0], k.iv, 0, 0);
    cr_assert_eq(memcmp(nonces[0], k.iv, sizeof k.iv), 0, "instance 0, seq 0 use the base IV");
    /* Small seqs under two instances, then single-bit patterns of each half. */
    for (uint64_t s = 0; s < (N - 96) / 2; s++) {
        mqe2e__envelope_nonce(nonces[2 * s], k.iv, 0, s);
        mqe2e__envelope_nonce(nonces[2 * s + 1], k.iv, 1, s);
    }
    for (unsigned b = 0; b < 48; b++) {
        mqe2e__envelope_nonce(nonces[N - 96 + b], k.iv, 1ULL << b, 3ULL << 30);
        mqe2e__envelope_nonce(nonces[N - 48 + b], k.iv, 3ULL << 30, 1ULL << b);
    }
    qsort(nonces, N, sizeof *nonces, cmp12);
    for (size_t i = 1; i < N; i++) {
        cr_assert_neq(memcmp(nonces[i - 1], nonces[i], sizeof *nonces), 0, "nonce repeats");
    }
    /* Instance in the first six bytes, seq in the last six. */
    uint8_t n1[12];
    mqe2e__envelope_nonce(n1, k.iv, 0, MQE2E_SEQ_MAX);
    cr_assert_eq(memcmp(n1, k.iv, 6), 0);
    mqe2e__envelope_nonce(n1, k.iv, MQE2E_INSTANCE_MAX, 0);
    cr_assert_eq(memcmp(n1 + 6, k.iv + 6, 6), 0);
    free(nonces);
}

Test(envelope, varint_codec)
{
    static const uint64_t vals[] = {
        0,       1,         127,       128,        16383,        16384,        2097151,
        2097152, 268435455, 268435456, UINT32_MAX, (1ULL << 35), (1ULL << 63), UINT64_MAX};
    uint8_t buf[12];
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        uint64_t back = 42;
        size_t n = mqe2e__varint_put(buf, vals[i]);
        cr_assert_eq(n, mqe2e__varint_len(vals[i]));
        cr_assert_eq(mqe2e__varint_get(&back, buf, n), n);
        cr_assert_eq(back, vals[i]);
        /* Every strict prefix is truncated. */
        for (size_t j = 0; j < n; j++) {
            cr_assert_eq(mqe2e__varint_get(&back, buf, j), 0U);
        }
    }
    cr_assert_eq(mqe2e__varint_len(UINT64_MAX), 10U);
}

/* The decoder's fast path (canonical layout) against the general decoder:
 * the same code for every input, the same view whenever it decodes, and the
 * fast path really taken for what sealers write. Inputs: headers with zero,
 * one-byte and multi-byte fields, group and signed bodies, then every
 * truncation, every byte of the header set to every value, every byte
 * flipped, a byte appended. */
static size_t canon_envelope(uint8_t *out, const mqe2e_envelope_header *h, size_t body_len)
{
    size_t n = mqe2e__envelope_header_put(out, h, body_len);
    for (size_t i = 0; i < body_len; i++)
        out[n + i] = (uint8_t)(i * 7U + 1U);
    n += body_len;
    if (h->mode == MQE2E_MODE_SIGNED_GROUP) {
        uint8_t sig[MQE2E_SIGNATURE_BYTES];
        memset(sig, 0x5A, sizeof sig);
        n += mqe2e__envelope_signature_put(out + n, sig);
    }
    return n;
}

static void views_agree(const uint8_t *in, size_t len, const char *what, size_t at)
{
    mqe2e_envelope_view a, b, f;
    memset(&a, 0xEE, sizeof a);
    memset(&b, 0xEE, sizeof b);
    int rd = mqe2e__envelope_decode(&a, in, len);
    int rg = mqe2e__envelope_decode_general(&b, in, len);
    cr_assert_eq(rd, rg, "%s at %zu: decode %s, general decoder %s", what, at, mqe2e_error_name(rd),
                 mqe2e_error_name(rg));
    if (mqe2e__envelope_decode_fast(&f, in, len)) {
        cr_assert_eq(rg, MQE2E_OK, "%s at %zu: fast path accepted what the general refused", what,
                     at);
        a = f;
    }
    if (rd != MQE2E_OK) return;
    cr_assert_eq(a.header.mode, b.header.mode, "%s at %zu: mode", what, at);
    cr_assert_eq(a.header.epoch, b.header.epoch, "%s at %zu: epoch", what, at);
    cr_assert_eq(a.header.sender_id, b.header.sender_id, "%s at %zu: sender", what, at);
    cr_assert_eq(a.header.seq, b.header.seq, "%s at %zu: seq", what, at);
    cr_assert_eq(a.header.instance, b.header.instance, "%s at %zu: instance", what, at);
    cr_assert_eq(a.ciphertext, b.ciphertext, "%s at %zu: ciphertext", what, at);
    cr_assert_eq(a.ciphertext_len, b.ciphertext_len, "%s at %zu: ciphertext_len", what, at);
    cr_assert_eq(a.signature, b.signature, "%s at %zu: signature", what, at);
    cr_assert_eq(a.signature_len, b.signature_len, "%s at %zu: signature_len", what, at);
}

Test(envelope, fast_path_agrees_with_the_general_decoder)
{
    static const uint32_t epochs[] = {0, 1, 127, 128, UINT32_MAX};
    static const uint32_t senders[] = {0, 5, 0xC0FFEEU};
    static const uint64_t seqs[] = {0, 1, 1000, MQE2E_SEQ_MAX};
    static const size_t bodies[] = {MQE2E_TAG_BYTES, 42, 272};
    uint8_t env[600], bad[601];
    unsigned fast = 0;

    for (size_t e = 0; e < sizeof epochs / sizeof epochs[0]; e++)
        for (size_t s = 0; s < sizeof senders / sizeof senders[0]; s++)
            for (size_t q = 0; q < sizeof seqs / sizeof seqs[0]; q++)
                for (size_t b = 0; b < sizeof bodies / sizeof bodies[0]; b++)
                    for (int sg = 0; sg < 2; sg++) {
                        mqe2e_envelope_header h = {sg ? MQE2E_MODE_SIGNED_GROUP : MQE2E_MODE_GROUP,
                                                   epochs[e], senders[s], seqs[q],
                                                   UINT64_C(0x5eed1234abcd)};
                        size_t n = canon_envelope(env, &h, bodies[b]);
                        mqe2e_envelope_view v;
                        cr_assert(mqe2e__envelope_decode_fast(&v, env, n),
                                  "a sealer's layout must take the fast path");
                        fast++;
                        views_agree(env, n, "canonical", 0);
                        for (size_t i = 0; i < n; i++)
                            views_agree(env, i, "truncated", i);
                        memcpy(bad, env, n);
                        bad[n] = 0;
                        views_agree(bad, n + 1U, "appended", n);
                        for (size_t i = 0; i < n; i++) {
                            static const uint8_t flips[] = {0x01, 0x02, 0x08, 0x40, 0x80, 0xFF};
                            for (size_t f = 0; f < sizeof flips; f++) {
                                memcpy(bad, env, n);
                                bad[i] ^= flips[f];
                                views_agree(bad, n, "flipped", i);
                            }
                        }
                        /* Every value of every header byte (the body's first too). */
                        size_t hdr = mqe2e__envelope_header_len(&h, bodies[b]) + 1U;
                        for (size_t i = 0; i < hdr; i++)
                            for (unsigned val = 0; val < 256; val++) {
                                memcpy(bad, env, n);
                                bad[i] = (uint8_t)val;
                                views_agree(bad, n, "set", i);
                            }
                    }
    cr_assert_eq(fast, 5U * 3U * 4U * 3U * 2U);
}
