/* Unit tests of signed group mode: the mode-3 envelope (seal, parse, verify,
 * open), the keystore's signer directory, the policy flag, and the protector's
 * checks on signed topics (docs/PROTOCOL.md, "Signed group mode"). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "internal_envelope_codec.h"
#include "mqe2e/envelope.h"
#include "mqe2e/error.h"
#include "mqe2e/keystore.h"
#include "mqe2e/policy.h"
#include "mqe2e/protect.h"
#include "mqe2e/storage.h"
#include "proto/envelope.pb-c.h"
#include "proto/keystore.pb-c.h"
#include "testutil.h"

#define T0 1000000ULL
#define GROUP "g1"
#define TOPIC "a/b"

static const uint8_t SECRET[MQE2E_GROUP_SECRET_BYTES] = {
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b,
    0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16,
    0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20};

/* ------------------------------------------------------------------ */
/* Envelope level: a raw Ed25519 key signs through the callback. */

typedef struct test_signer {
    uint8_t pk[crypto_sign_PUBLICKEYBYTES];
    uint8_t sk[crypto_sign_SECRETKEYBYTES];
    int calls;
    int fail;
} test_signer;

static int sign_cb(void *ctx, uint8_t sig[MQE2E_SIGNATURE_BYTES], const uint8_t *msg,
                   size_t msg_len)
{
    test_signer *s = ctx;
    s->calls++;
    if (s->fail) return MQE2E_ERR_STATE;
    crypto_sign_detached(sig, NULL, msg, (unsigned long long)msg_len, s->sk);
    return MQE2E_OK;
}

static void signer_seeded(test_signer *s, uint8_t seed_byte)
{
    uint8_t seed[crypto_sign_SEEDBYTES];
    memset(seed, seed_byte, sizeof seed);
    memset(s, 0, sizeof *s);
    cr_assert_eq(sodium_init() >= 0, 1);
    crypto_sign_seed_keypair(s->pk, s->sk, seed);
}

static size_t seal_signed(uint8_t *env, size_t cap, const test_signer *key_owner, test_signer *s,
                          const char *topic, uint32_t epoch, uint32_t sender, uint64_t seq,
                          const char *text)
{
    mqe2e_sender_key k;
    mqe2e_envelope_header h = {MQE2E_MODE_SIGNED_GROUP, epoch, sender, seq, 0U};
    size_t n = 0;
    (void)key_owner;
    cr_assert_eq(mqe2e_sender_key_derive(&k, SECRET, GROUP, epoch, sender), MQE2E_OK);
    cr_assert_eq(mqe2e_envelope_seal_signed(env, cap, &n, &k, topic, GROUP, &h,
                                            (const uint8_t *)text, strlen(text), sign_cb, s),
                 MQE2E_OK);
    mqe2e_sender_key_wipe(&k);
    return n;
}

/* Parse, then verify-and-open with the sender key of the header. */
static int open_signed(const uint8_t *env, size_t n, const uint8_t pk[32], const char *topic,
                       char *text_out)
{
    mqe2e_envelope_view v;
    mqe2e_sender_key k;
    uint8_t pt[512];
    size_t pt_len = 0;
    int rc = mqe2e_envelope_parse(&v, env, n);
    if (rc != MQE2E_OK) return rc;
    cr_assert_eq(mqe2e_sender_key_derive(&k, SECRET, GROUP, v.header.epoch, v.header.sender_id),
                 MQE2E_OK);
    rc = mqe2e_envelope_open_signed(pt, sizeof pt, &pt_len, &k, pk, topic, GROUP, &v);
    mqe2e_sender_key_wipe(&k);
    if (rc == MQE2E_OK && text_out != NULL) {
        memcpy(text_out, pt, pt_len);
        text_out[pt_len] = '\0';
    }
    if (rc != MQE2E_OK) {
        for (size_t i = 0; i < sizeof pt; i++) cr_assert_eq(pt[i], 0, "plaintext left on failure");
    }
    return rc;
}

Test(signed_envelope, round_trip_and_layout)
{
    test_signer alice;
    signer_seeded(&alice, 0xA1);
    uint8_t env[512];
    char text[128];
    size_t n = seal_signed(env, sizeof env, &alice, &alice, TOPIC, 1, 0xABCDEF, 1000, "hello");
    cr_assert_eq(alice.calls, 1);
    cr_assert_eq(open_signed(env, n, alice.pk, TOPIC, text), MQE2E_OK);
    cr_assert_str_eq(text, "hello");

    /* The signature field closes the envelope: key 0x3a, length 64. */
    cr_assert_eq(env[n - 66], 0x3a);
    cr_assert_eq(env[n - 65], 0x40);
    mqe2e_envelope_view v;
    cr_assert_eq(mqe2e_envelope_parse(&v, env, n), MQE2E_OK);
    cr_assert_eq(v.header.mode, MQE2E_MODE_SIGNED_GROUP);
    cr_assert_eq(v.signature_len, 64U);
    cr_assert_eq(v.signature, env + n - 64);
    cr_assert_eq(v.ciphertext_len, strlen("hello") + MQE2E_TAG_BYTES);

    /* protobuf-c reads it as the signed body plus a signature. */
    Mqe2e__V1__Envelope *m = mqe2e__v1__envelope__unpack(NULL, n, env);
    cr_assert_not_null(m);
    cr_assert_eq(m->sealed_case, MQE2E__V1__ENVELOPE__SEALED_SIGNED_GROUP_V1_CHACHA20POLY1305);
    cr_assert_eq(m->signature.len, 64U);
    cr_assert_eq(m->sender, 0xABCDEFU);
    cr_assert_eq(m->seq, 1000U);
    mqe2e__v1__envelope__free_unpacked(m, NULL);

    /* The signature is over domain || AD || body, checked on its own. */
    cr_assert_eq(mqe2e_envelope_verify(alice.pk, TOPIC, GROUP, &v), MQE2E_OK);
    cr_assert_eq(mqe2e_envelope_verify(alice.pk, "a/c", GROUP, &v), MQE2E_ERR_AUTH);
    cr_assert_eq(mqe2e_envelope_verify(alice.pk, TOPIC, "g2", &v), MQE2E_ERR_AUTH);
    /* Group-mode calls refuse it, and vice versa. */
    mqe2e_sender_key k;
    uint8_t pt[64];
    size_t pt_len;
    cr_assert_eq(mqe2e_sender_key_derive(&k, SECRET, GROUP, 1, 0xABCDEF), MQE2E_OK);
    cr_assert_eq(mqe2e_envelope_open(pt, sizeof pt, &pt_len, &k, TOPIC, GROUP, &v),
                 MQE2E_ERR_SUITE);
    mqe2e_sender_key_wipe(&k);
}

Test(signed_envelope, seal_argument_checks)
{
    test_signer s;
    signer_seeded(&s, 0x11);
    mqe2e_sender_key k;
    mqe2e_envelope_header h = {MQE2E_MODE_SIGNED_GROUP, 1, 7, 1, 0U};
    uint8_t env[256];
    size_t n = 0;
    cr_assert_eq(mqe2e_sender_key_derive(&k, SECRET, GROUP, 1, 7), MQE2E_OK);
    /* No signer: refused, never an unsigned envelope. */
    cr_assert_eq(mqe2e_envelope_seal_signed(env, sizeof env, &n, &k, TOPIC, GROUP, &h,
                                            (const uint8_t *)"x", 1, NULL, NULL),
                 MQE2E_ERR_INVALID_ARG);
    /* Only mode 3 here; mode 3 not through the group-mode call. */
    h.mode = MQE2E_MODE_GROUP;
    cr_assert_eq(mqe2e_envelope_seal_signed(env, sizeof env, &n, &k, TOPIC, GROUP, &h,
                                            (const uint8_t *)"x", 1, sign_cb, &s),
                 MQE2E_ERR_INVALID_ARG);
    h.mode = MQE2E_MODE_SIGNED_GROUP;
    cr_assert_eq(mqe2e_envelope_seal(env, sizeof env, &n, &k, TOPIC, GROUP, &h,
                                     (const uint8_t *)"x", 1),
                 MQE2E_ERR_SUITE);
    /* The bound is exact enough: one byte less is too small. */
    size_t bound = mqe2e_envelope_signed_sealed_bound(1);
    cr_assert_eq(bound, mqe2e_envelope_sealed_bound(1) + MQE2E_SIGNATURE_FIELD_BYTES);
    cr_assert_eq(mqe2e_envelope_seal_signed(env, bound, &n, &k, TOPIC, GROUP, &h,
                                            (const uint8_t *)"x", 1, sign_cb, &s),
                 MQE2E_OK);
    size_t exact = n;
    cr_assert_eq(mqe2e_envelope_seal_signed(env, exact - 1, &n, &k, TOPIC, GROUP, &h,
                                            (const uint8_t *)"x", 1, sign_cb, &s),
                 MQE2E_ERR_BUFFER_TOO_SMALL);
    /* A signer that fails leaves nothing behind. */
    s.fail = 1;
    memset(env, 0xEE, sizeof env);
    cr_assert_eq(mqe2e_envelope_seal_signed(env, sizeof env, &n, &k, TOPIC, GROUP, &h,
                                            (const uint8_t *)"x", 1, sign_cb, &s),
                 MQE2E_ERR_STATE);
    for (size_t i = 0; i < sizeof env; i++) cr_assert_eq(env[i], 0, "byte %zu left", i);
    cr_assert_eq(mqe2e_envelope_signed_sealed_bound(SIZE_MAX - 3U), SIZE_MAX);
    mqe2e_sender_key_wipe(&k);
}

Test(signed_envelope, tamper_every_byte)
{
    test_signer alice;
    signer_seeded(&alice, 0xA1);
    uint8_t env[512];
    size_t n = seal_signed(env, sizeof env, &alice, &alice, TOPIC, 3, 0x1234, 77, "tamper me");
    for (size_t i = 0; i < n; i++) {
        for (unsigned bit = 0; bit < 8; bit++) {
            env[i] ^= (uint8_t)(1U << bit);
            int rc = open_signed(env, n, alice.pk, TOPIC, NULL);
            cr_assert(rc == MQE2E_ERR_AUTH || rc == MQE2E_ERR_DECODE || rc == MQE2E_ERR_SUITE,
                      "byte %zu bit %u: %d", i, bit, rc);
            env[i] ^= (uint8_t)(1U << bit);
        }
        /* Every truncation too. */
        cr_assert_neq(open_signed(env, i, alice.pk, TOPIC, NULL), MQE2E_OK, "prefix %zu", i);
    }
    cr_assert_eq(open_signed(env, n, alice.pk, TOPIC, NULL), MQE2E_OK);
}

Test(signed_envelope, stripped_and_relabelled)
{
    test_signer alice;
    signer_seeded(&alice, 0xA1);
    uint8_t env[512], alt[512];
    size_t n = seal_signed(env, sizeof env, &alice, &alice, TOPIC, 1, 5, 9, "payload");
    mqe2e_envelope_view v;

    /* Signature stripped: a signed body alone is malformed. */
    cr_assert_eq(mqe2e_envelope_parse(&v, env, n - MQE2E_SIGNATURE_FIELD_BYTES), MQE2E_ERR_DECODE);
    /* A short or long signature is malformed. */
    memcpy(alt, env, n);
    alt[n - 65] = 0x3f;
    cr_assert_eq(mqe2e_envelope_parse(&v, alt, n - 1), MQE2E_ERR_DECODE);
    /* A second signature field is malformed. */
    memcpy(alt, env, n);
    memcpy(alt + n, env + n - 66, 66);
    cr_assert_eq(mqe2e_envelope_parse(&v, alt, n + 66), MQE2E_ERR_DECODE);

    /* Find the body key (0x1a) and relabel it as a group body (0x0a). */
    size_t body_at = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        if (env[i] == 0x1a && env[i + 1] == (uint8_t)(strlen("payload") + 16U)) {
            body_at = i;
            break;
        }
    }
    cr_assert_neq(body_at, SIZE_MAX);
    memcpy(alt, env, n);
    alt[body_at] = 0x0a;
    /* With the signature still there: not a group envelope. */
    cr_assert_eq(mqe2e_envelope_parse(&v, alt, n), MQE2E_ERR_DECODE);
    /* Without it: parses as group mode, but the AD bound mode 3, so the AEAD fails. */
    cr_assert_eq(mqe2e_envelope_parse(&v, alt, n - 66), MQE2E_OK);
    cr_assert_eq(v.header.mode, MQE2E_MODE_GROUP);
    mqe2e_sender_key k;
    uint8_t pt[64];
    size_t pt_len;
    cr_assert_eq(mqe2e_sender_key_derive(&k, SECRET, GROUP, 1, 5), MQE2E_OK);
    cr_assert_eq(mqe2e_envelope_open(pt, sizeof pt, &pt_len, &k, TOPIC, GROUP, &v),
                 MQE2E_ERR_AUTH);
    mqe2e_sender_key_wipe(&k);
}

Test(signed_envelope, member_cannot_forge_another)
{
    test_signer alice, mallory;
    signer_seeded(&alice, 0xA1);
    signer_seeded(&mallory, 0x66);
    uint8_t env[512];
    /* Mallory holds the group secret, derives Alice's sender key and signs as
     * herself under Alice's sender id: checked against Alice's key, refused. */
    size_t n = seal_signed(env, sizeof env, &mallory, &mallory, TOPIC, 1, 0xA11CE, 5, "open the door");
    cr_assert_eq(open_signed(env, n, alice.pk, TOPIC, NULL), MQE2E_ERR_AUTH);
    /* Splicing Alice's signature from another message onto it fails too. */
    uint8_t real[512];
    size_t rn = seal_signed(real, sizeof real, &alice, &alice, TOPIC, 1, 0xA11CE, 4, "hi");
    memcpy(env + n - 64, real + rn - 64, 64);
    cr_assert_eq(open_signed(env, n, alice.pk, TOPIC, NULL), MQE2E_ERR_AUTH);
    /* A small-order public key is refused, not trusted. */
    uint8_t zero_pk[32] = {1};
    cr_assert_eq(open_signed(real, rn, zero_pk, TOPIC, NULL), MQE2E_ERR_AUTH);
}

/* Bytes a signed envelope adds to a payload of pt_len bytes. */
static size_t signed_overhead(size_t pt_len, uint32_t epoch, uint32_t sender, uint64_t seq)
{
    test_signer s;
    signer_seeded(&s, 0x42);
    uint8_t *pt = calloc(1, pt_len + 1);
    size_t cap = mqe2e_envelope_signed_sealed_bound(pt_len);
    uint8_t *env = malloc(cap);
    mqe2e_sender_key k;
    mqe2e_envelope_header h = {MQE2E_MODE_SIGNED_GROUP, epoch, sender, seq, 0U};
    size_t n = 0;
    cr_assert(pt && env);
    cr_assert_eq(mqe2e_sender_key_derive(&k, SECRET, "g", epoch, sender), MQE2E_OK);
    cr_assert_eq(mqe2e_envelope_seal_signed(env, cap, &n, &k, "sensors/temp", "g", &h, pt, pt_len,
                                            sign_cb, &s),
                 MQE2E_OK);
    mqe2e_sender_key_wipe(&k);
    free(pt);
    free(env);
    return n - pt_len;
}

Test(signed_envelope, overhead)
{
    const uint32_t w_epoch = (1U << 14) - 1U, w_sender = 0xFFFFFFU;
    const uint64_t w_seq = (1ULL << 28) - 1U;
    /* The same conditions as the group-mode figure (37 B typical, 40 B worst):
     * group mode plus the 66-byte signature field. */
    size_t typical = signed_overhead(256, 1, 0xABCDEF, 1000);
    size_t worst = signed_overhead(256, w_epoch, w_sender, w_seq);
    printf("signed envelope overhead, 256-byte payload: typical %zu B, worst within bound "
           "conditions %zu B\n",
           typical, worst);
    fflush(stdout);
    /* The 8-byte instance field (restore-proof nonces, docs/PROTOCOL.md 2.4)
     * takes the signed mode past the 100-byte design figure it met before
     * (95/98 B); docs/BENCHMARKS.md records the trade. */
    cr_assert_eq(typical, 103U);
    cr_assert_eq(worst, 106U);
    static const size_t sizes[] = {0, 1, 100, 256, 1000, 16367};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        cr_assert_leq(signed_overhead(sizes[i], w_epoch, w_sender, w_seq), 106U, "payload %zu",
                      sizes[i]);
}

/* ------------------------------------------------------------------ */
/* Keystore: signed flag and signer directory */

static mqe2e_keystore *mem_ks(const char *client, uint32_t sender)
{
    mqe2e_storage st;
    mqe2e_keystore *ks = NULL;
    cr_assert_eq(mqe2e_storage_memory(&st), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_create(&ks, st, client, sender), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, GROUP, "a/#", 1, SECRET, T0), MQE2E_OK);
    return ks;
}

static mqe2e_signer signer_of(mqe2e_keystore *ks, const char *client, uint32_t sender)
{
    mqe2e_signer s;
    memset(&s, 0, sizeof s);
    s.sender_id = sender;
    cr_assert_eq(mqe2e_keystore_identity_public(ks, s.sign_public, NULL), MQE2E_OK);
    snprintf(s.client_id, sizeof s.client_id, "%s", client);
    return s;
}

Test(signed_keystore, directory_api)
{
    mqe2e_keystore *ks = mem_ks("alice", 10);
    mqe2e_keystore *other = mem_ks("bob", 20);
    mqe2e_signer a = signer_of(ks, "alice", 10), b = signer_of(other, "bob", 20), got;
    uint8_t pk[32];
    const char *cid = NULL;

    cr_assert_eq(mqe2e_keystore_group_is_signed(ks, GROUP), 0);
    cr_assert_eq(mqe2e_keystore_group_set_signed(ks, GROUP, 1), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_is_signed(ks, GROUP), 1);
    cr_assert_eq(mqe2e_keystore_group_set_signed(ks, "nope", 1), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_keystore_group_is_signed(ks, "nope"), 0);

    cr_assert_eq(mqe2e_keystore_signer_count(ks, GROUP), 0U);
    cr_assert_eq(mqe2e_keystore_signer_add(ks, GROUP, &b), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_signer_add(ks, GROUP, &a), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_signer_add(ks, GROUP, &a), MQE2E_OK, "same entry: no-op");
    cr_assert_eq(mqe2e_keystore_signer_add(ks, "nope", &a), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_keystore_signer_count(ks, GROUP), 2U);
    /* Ordered by sender id. */
    cr_assert_eq(mqe2e_keystore_signer_get(ks, GROUP, 0, &got), MQE2E_OK);
    cr_assert_eq(got.sender_id, 10U);
    cr_assert_str_eq(got.client_id, "alice");
    cr_assert_eq(memcmp(got.sign_public, a.sign_public, 32), 0);
    cr_assert_eq(mqe2e_keystore_signer_get(ks, GROUP, 2, &got), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_keystore_signer_lookup(ks, GROUP, 20, pk, &cid), MQE2E_OK);
    cr_assert_eq(memcmp(pk, b.sign_public, 32), 0);
    cr_assert_str_eq(cid, "bob");
    cr_assert_eq(mqe2e_keystore_signer_lookup(ks, GROUP, 30, pk, NULL), MQE2E_ERR_NOT_FOUND);

    /* Another key for a known sender id is never a silent replacement. */
    mqe2e_signer evil = b;
    evil.sign_public[0] ^= 1;
    evil.sign_public[0] ^= 1;
    cr_assert_eq(mqe2e_keystore_identity_public(ks, evil.sign_public, NULL), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_signer_add(ks, GROUP, &evil), MQE2E_ERR_EXISTS);
    cr_assert_eq(mqe2e_keystore_signer_lookup(ks, GROUP, 20, pk, NULL), MQE2E_OK);
    cr_assert_eq(memcmp(pk, b.sign_public, 32), 0);

    /* Invalid entries. */
    mqe2e_signer bad = a;
    bad.sender_id = 0;
    cr_assert_eq(mqe2e_keystore_signer_add(ks, GROUP, &bad), MQE2E_ERR_INVALID_ARG);
    bad = a;
    memset(bad.sign_public, 0, 32);
    cr_assert_eq(mqe2e_keystore_signer_add(ks, GROUP, &bad), MQE2E_ERR_INVALID_ARG, "small order");
    bad = a;
    bad.sender_id = 99;
    bad.client_id[0] = '\n';
    cr_assert_eq(mqe2e_keystore_signer_add(ks, GROUP, &bad), MQE2E_ERR_INVALID_ARG);
    bad = a;
    bad.sender_id = 99;
    bad.client_id[0] = '\0';
    cr_assert_eq(mqe2e_keystore_signer_add(ks, GROUP, &bad), MQE2E_OK, "client id optional");

    cr_assert_eq(mqe2e_keystore_signer_remove(ks, GROUP, 99), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_signer_remove(ks, GROUP, 99), MQE2E_ERR_NOT_FOUND);

    /* Replace: all or nothing. */
    mqe2e_signer two[2] = {a, a};
    cr_assert_eq(mqe2e_keystore_signers_replace(ks, GROUP, two, 2), MQE2E_ERR_INVALID_ARG,
                 "duplicate sender id");
    cr_assert_eq(mqe2e_keystore_signer_count(ks, GROUP), 2U);
    two[1] = evil;
    two[1].sender_id = 20;
    cr_assert_eq(mqe2e_keystore_signers_replace(ks, GROUP, two, 2), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_signer_lookup(ks, GROUP, 20, pk, NULL), MQE2E_OK);
    cr_assert_eq(memcmp(pk, evil.sign_public, 32), 0, "the authority's view wins");
    cr_assert_eq(mqe2e_keystore_signers_replace(ks, GROUP, NULL, 0), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_signer_count(ks, GROUP), 0U);
    mqe2e_keystore_close(ks);
    mqe2e_keystore_close(other);
}

Test(signed_keystore, directory_survives_reopen_and_export)
{
    char *dir = tu_tempdir();
    char path[512];
    uint8_t fkey[MQE2E_STORAGE_KEY_BYTES];
    randombytes_buf(fkey, sizeof fkey);
    snprintf(path, sizeof path, "%s/ks", dir);
    mqe2e_storage st;
    mqe2e_keystore *ks = NULL;
    cr_assert_eq(mqe2e_storage_file_key(&st, path, fkey), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_create(&ks, st, "alice", 10), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, GROUP, "a/#", 1, SECRET, T0), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, "plain", "p/#", 1, SECRET, T0), MQE2E_OK);
    mqe2e_signer a = signer_of(ks, "alice", 10);
    cr_assert_eq(mqe2e_keystore_group_set_signed(ks, GROUP, 1), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_signer_add(ks, GROUP, &a), MQE2E_OK);
    uint8_t *blob = NULL;
    size_t blob_len = 0;
    cr_assert_eq(mqe2e_keystore_group_export(ks, GROUP, "pass", 4, &blob, &blob_len), MQE2E_OK);
    mqe2e_keystore_close(ks);

    cr_assert_eq(mqe2e_storage_file_key(&st, path, fkey), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_open(&ks, st), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_is_signed(ks, GROUP), 1);
    cr_assert_eq(mqe2e_keystore_group_is_signed(ks, "plain"), 0);
    cr_assert_eq(mqe2e_keystore_signer_count(ks, GROUP), 1U);
    mqe2e_signer got;
    cr_assert_eq(mqe2e_keystore_signer_get(ks, GROUP, 0, &got), MQE2E_OK);
    cr_assert_eq(got.sender_id, 10U);
    cr_assert_str_eq(got.client_id, "alice");
    cr_assert_eq(memcmp(got.sign_public, a.sign_public, 32), 0);
    mqe2e_keystore_close(ks);

    /* The passphrase bundle carries flag and directory to another member. */
    mqe2e_keystore *bob = NULL;
    cr_assert_eq(mqe2e_storage_memory(&st), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_create(&bob, st, "bob", 20), MQE2E_OK);
    char name[64];
    cr_assert_eq(mqe2e_keystore_group_import(bob, blob, blob_len, "pass", 4, T0, name, sizeof name),
                 MQE2E_OK);
    cr_assert_str_eq(name, GROUP);
    cr_assert_eq(mqe2e_keystore_group_is_signed(bob, GROUP), 1);
    uint8_t pk[32];
    cr_assert_eq(mqe2e_keystore_signer_lookup(bob, GROUP, 10, pk, NULL), MQE2E_OK);
    cr_assert_eq(memcmp(pk, a.sign_public, 32), 0);
    mqe2e_keystore_close(bob);
    free(blob);
    tu_rmtree(dir);
    free(dir);
}

/* A storage holding a blob the test wrote: an older keystore file. */
typedef struct raw_store {
    uint8_t *blob;
    size_t len;
} raw_store;

static int raw_load(void *ctx, uint8_t **data, size_t *len)
{
    raw_store *r = ctx;
    *data = malloc(r->len);
    memcpy(*data, r->blob, r->len);
    *len = r->len;
    return MQE2E_OK;
}

static int raw_store_fn(void *ctx, const uint8_t *data, size_t len)
{
    raw_store *r = ctx;
    free(r->blob);
    r->blob = malloc(len);
    memcpy(r->blob, data, len);
    r->len = len;
    return MQE2E_OK;
}

Test(signed_keystore, old_keystore_without_directory_loads)
{
    /* A state as written before signed mode existed: no fields 7/8 in groups. */
    uint8_t sign_pk[32], sign_sk[64], dh_pk[32], dh_sk[32];
    cr_assert(sodium_init() >= 0);
    crypto_sign_keypair(sign_pk, sign_sk);
    crypto_box_keypair(dh_pk, dh_sk);
    Mqe2e__V1__KeystoreEpoch ep = MQE2E__V1__KEYSTORE_EPOCH__INIT;
    Mqe2e__V1__KeystoreEpoch *eps[] = {&ep};
    ep.epoch = 1;
    ep.secret.data = (uint8_t *)SECRET;
    ep.secret.len = 32;
    ep.created_at = T0;
    Mqe2e__V1__KeystoreGroup g = MQE2E__V1__KEYSTORE_GROUP__INIT;
    Mqe2e__V1__KeystoreGroup *gs[] = {&g};
    g.name = (char *)GROUP;
    g.topic_filter = (char *)"a/#";
    g.n_epochs = 1;
    g.epochs = eps;
    g.seq_reserved = 1;
    g.sender = 10;
    Mqe2e__V1__KeystoreState st = MQE2E__V1__KEYSTORE_STATE__INIT;
    st.format = 1;
    st.client_id = (char *)"old";
    st.sign_secret.data = sign_sk;
    st.sign_secret.len = 64;
    st.sign_public.data = sign_pk;
    st.sign_public.len = 32;
    st.dh_secret.data = dh_sk;
    st.dh_secret.len = 32;
    st.dh_public.data = dh_pk;
    st.dh_public.len = 32;
    st.sender = 10;
    st.n_groups = 1;
    st.groups = gs;
    raw_store r = {NULL, 0};
    r.len = mqe2e__v1__keystore_state__get_packed_size(&st);
    r.blob = malloc(r.len);
    mqe2e__v1__keystore_state__pack(&st, r.blob);
    /* Not one byte of a new field in it. */
    Mqe2e__V1__KeystoreState *back = mqe2e__v1__keystore_state__unpack(NULL, r.len, r.blob);
    cr_assert_not_null(back);
    cr_assert_eq(back->groups[0]->n_signers, 0U);
    cr_assert_eq(back->groups[0]->signed_mode, 0);
    mqe2e__v1__keystore_state__free_unpacked(back, NULL);

    mqe2e_storage s = {raw_load, raw_store_fn, NULL, &r};
    mqe2e_keystore *ks = NULL;
    cr_assert_eq(mqe2e_keystore_open(&ks, s), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_is_signed(ks, GROUP), 0);
    cr_assert_eq(mqe2e_keystore_signer_count(ks, GROUP), 0U);
    /* And it can be upgraded in place. */
    mqe2e_signer a;
    memset(&a, 0, sizeof a);
    a.sender_id = 10;
    memcpy(a.sign_public, sign_pk, 32);
    cr_assert_eq(mqe2e_keystore_signer_add(ks, GROUP, &a), MQE2E_OK);
    mqe2e_keystore_close(ks);
    mqe2e_storage s2 = {raw_load, raw_store_fn, NULL, &r};
    cr_assert_eq(mqe2e_keystore_open(&ks, s2), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_signer_count(ks, GROUP), 1U);
    mqe2e_keystore_close(ks);
    free(r.blob);
    sodium_memzero(sign_sk, sizeof sign_sk);
    sodium_memzero(dh_sk, sizeof dh_sk);
}

Test(signed_keystore, corrupt_directory_refused)
{
    /* A stored directory entry with a short key is a decode error, not a trusted key. */
    uint8_t sign_pk[32], sign_sk[64], dh_pk[32], dh_sk[32];
    cr_assert(sodium_init() >= 0);
    crypto_sign_keypair(sign_pk, sign_sk);
    crypto_box_keypair(dh_pk, dh_sk);
    Mqe2e__V1__KeystoreEpoch ep = MQE2E__V1__KEYSTORE_EPOCH__INIT;
    Mqe2e__V1__KeystoreEpoch *eps[] = {&ep};
    ep.epoch = 1;
    ep.secret.data = (uint8_t *)SECRET;
    ep.secret.len = 32;
    Mqe2e__V1__KeystoreSigner sg[2] = {MQE2E__V1__KEYSTORE_SIGNER__INIT,
                                       MQE2E__V1__KEYSTORE_SIGNER__INIT};
    Mqe2e__V1__KeystoreSigner *sgs[] = {&sg[0], &sg[1]};
    sg[0].sender = 5;
    sg[0].sign_public.data = sign_pk;
    sg[0].sign_public.len = 31;
    sg[0].client_id = (char *)"x";
    sg[1] = sg[0];
    Mqe2e__V1__KeystoreGroup g = MQE2E__V1__KEYSTORE_GROUP__INIT;
    Mqe2e__V1__KeystoreGroup *gs[] = {&g};
    g.name = (char *)GROUP;
    g.topic_filter = (char *)"a/#";
    g.n_epochs = 1;
    g.epochs = eps;
    g.signed_mode = 1;
    g.n_signers = 1;
    g.signers = sgs;
    Mqe2e__V1__KeystoreState st = MQE2E__V1__KEYSTORE_STATE__INIT;
    st.format = 1;
    st.client_id = (char *)"old";
    st.sign_secret.data = sign_sk;
    st.sign_secret.len = 64;
    st.sign_public.data = sign_pk;
    st.sign_public.len = 32;
    st.dh_secret.data = dh_sk;
    st.dh_secret.len = 32;
    st.dh_public.data = dh_pk;
    st.dh_public.len = 32;
    st.n_groups = 1;
    st.groups = gs;
    raw_store r = {NULL, 0};
    for (int round = 0; round < 2; round++) {
        if (round == 1) {
            /* Valid keys, but the same sender id twice. */
            sg[0].sign_public.len = 32;
            sg[1] = sg[0];
            g.n_signers = 2;
        }
        free(r.blob);
        r.len = mqe2e__v1__keystore_state__get_packed_size(&st);
        r.blob = malloc(r.len);
        mqe2e__v1__keystore_state__pack(&st, r.blob);
        mqe2e_storage s = {raw_load, raw_store_fn, NULL, &r};
        mqe2e_keystore *ks = NULL;
        cr_assert_eq(mqe2e_keystore_open(&ks, s), MQE2E_ERR_DECODE, "round %d", round);
        cr_assert_null(ks);
    }
    free(r.blob);
    sodium_memzero(sign_sk, sizeof sign_sk);
    sodium_memzero(dh_sk, sizeof dh_sk);
}

/* ------------------------------------------------------------------ */
/* Policy flag */

Test(signed_policy, flag_and_text)
{
    mqe2e_policy *p = NULL;
    mqe2e_policy_kind kind;
    const char *target;
    unsigned flags = 99;
    cr_assert_eq(mqe2e_policy_new(&p), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add_text(p, "s/#=signed-group:g1"), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add_text(p, "u/#=group:g1"), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add_text(p, "x/#=signed-group:"), MQE2E_ERR_DECODE);
    cr_assert_eq(mqe2e_policy_add_flags(p, "c/#", MQE2E_POLICY_CHANNEL, "peer",
                                        MQE2E_POLICY_FLAG_SIGNED),
                 MQE2E_ERR_INVALID_ARG, "only group rules are signed");
    cr_assert_eq(mqe2e_policy_add_flags(p, "c/#", MQE2E_POLICY_PLAINTEXT, NULL,
                                        MQE2E_POLICY_FLAG_SIGNED),
                 MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_policy_add_flags(p, "c/#", MQE2E_POLICY_GROUP, "g", 0x80),
                 MQE2E_ERR_INVALID_ARG, "unknown flag");
    cr_assert_eq(mqe2e_policy_add_flags(p, "v/#", MQE2E_POLICY_GROUP, "g2",
                                        MQE2E_POLICY_FLAG_SIGNED),
                 MQE2E_OK);
    cr_assert_eq(mqe2e_policy_count(p), 3U);
    cr_assert_eq(mqe2e_policy_lookup_flags(p, "s/1", &kind, &target, &flags), MQE2E_OK);
    cr_assert_eq(kind, MQE2E_POLICY_GROUP);
    cr_assert_str_eq(target, "g1");
    cr_assert_eq(flags, MQE2E_POLICY_FLAG_SIGNED);
    cr_assert_eq(mqe2e_policy_lookup_flags(p, "u/1", &kind, &target, &flags), MQE2E_OK);
    cr_assert_eq(flags, 0U);
    cr_assert_eq(mqe2e_policy_lookup_flags(p, "v/1", &kind, &target, &flags), MQE2E_OK);
    cr_assert_eq(flags, MQE2E_POLICY_FLAG_SIGNED);
    cr_assert_str_eq(target, "g2");
    /* The plain lookup still sees a group rule. */
    cr_assert_eq(mqe2e_policy_lookup(p, "s/1", &kind, &target), MQE2E_OK);
    cr_assert_eq(kind, MQE2E_POLICY_GROUP);
    cr_assert_eq(mqe2e_policy_lookup_flags(p, "s/1", &kind, &target, NULL), MQE2E_ERR_INVALID_ARG);
    mqe2e_policy_free(p);
}

/* ------------------------------------------------------------------ */
/* Protector on signed topics: three members of g1 holding the secret. */

typedef struct member {
    mqe2e_keystore *ks;
    mqe2e_policy *pol;
    mqe2e_protector *pr;
} member;

/* @p in_directory: the members whose keys each member's directory holds. */
static void members_init(member *m, size_t n, const char *const *names, const uint32_t *senders,
                         const int *in_directory, int ks_signed, const char *rule)
{
    for (size_t i = 0; i < n; i++) {
        memset(&m[i], 0, sizeof m[i]);
        m[i].ks = mem_ks(names[i], senders[i]);
        if (ks_signed) cr_assert_eq(mqe2e_keystore_group_set_signed(m[i].ks, GROUP, 1), MQE2E_OK);
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++) {
            if (!in_directory[j]) continue;
            mqe2e_signer s = signer_of(m[j].ks, names[j], senders[j]);
            cr_assert_eq(mqe2e_keystore_signer_add(m[i].ks, GROUP, &s), MQE2E_OK);
        }
        cr_assert_eq(mqe2e_policy_new(&m[i].pol), MQE2E_OK);
        if (rule != NULL) cr_assert_eq(mqe2e_policy_add_text(m[i].pol, rule), MQE2E_OK);
        cr_assert_eq(mqe2e_policy_add_keystore_groups(m[i].pol, m[i].ks), MQE2E_OK);
        cr_assert_eq(mqe2e_protector_new(&m[i].pr, m[i].ks, m[i].pol, NULL), MQE2E_OK);
    }
}

static void members_free(member *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        mqe2e_protector_free(m[i].pr);
        mqe2e_policy_free(m[i].pol);
        mqe2e_keystore_close(m[i].ks);
    }
}

typedef struct wire {
    uint8_t buf[1024];
    size_t len;
} wire;

static void publish(member *m, const char *topic, const char *text, wire *w)
{
    cr_assert_eq(mqe2e_protect(m->pr, topic, (const uint8_t *)text, strlen(text), T0, w->buf,
                               sizeof w->buf, &w->len),
                 MQE2E_OK);
}

static int receive(member *m, const char *topic, const uint8_t *in, size_t len, char *text)
{
    uint8_t out[1024];
    size_t out_len = 777;
    int rc = mqe2e_unprotect(m->pr, topic, in, len, T0, out, sizeof out, &out_len);
    if (rc != MQE2E_OK) {
        cr_assert_eq(out_len, 0U);
        return rc;
    }
    if (text != NULL) {
        memcpy(text, out, out_len);
        text[out_len] = '\0';
    }
    return rc;
}

static uint64_t drops(member *m, mqe2e_drop_reason r)
{
    mqe2e_counters c;
    mqe2e_protector_counters(m->pr, &c);
    return c.dropped[r];
}

static uint64_t drops_total(member *m)
{
    mqe2e_counters c;
    uint64_t t = 0;
    mqe2e_protector_counters(m->pr, &c);
    for (int i = 0; i < MQE2E_DROP_REASON_COUNT; i++) t += c.dropped[i];
    return t;
}

static const char *const NAMES[] = {"alice", "bob", "mallory", "carol"};
static const uint32_t SENDERS[] = {0x111, 0x222, 0x333, 0x444};
/* carol holds the group secret but is in nobody's directory. */
static const int IN_DIR[] = {1, 1, 1, 0};

Test(signed_protect, round_trip_replay_retopic)
{
    member m[4];
    members_init(m, 4, NAMES, SENDERS, IN_DIR, 1, NULL);
    wire w;
    char text[256];
    publish(&m[0], TOPIC, "temp=21.5", &w);
    mqe2e_envelope_view v;
    cr_assert_eq(mqe2e_envelope_parse(&v, w.buf, w.len), MQE2E_OK);
    cr_assert_eq(v.header.mode, MQE2E_MODE_SIGNED_GROUP, "a signed group publishes mode 3");
    cr_assert_eq(v.header.sender_id, 0x111U);
    cr_assert_eq(receive(&m[1], TOPIC, w.buf, w.len, text), MQE2E_OK);
    cr_assert_str_eq(text, "temp=21.5");
    /* Carol is not in the directory but may still read (she holds the key). */
    cr_assert_eq(receive(&m[3], TOPIC, w.buf, w.len, text), MQE2E_OK);
    /* Replay. */
    cr_assert_eq(receive(&m[1], TOPIC, w.buf, w.len, NULL), MQE2E_ERR_REPLAY);
    cr_assert_eq(drops(&m[1], MQE2E_DROP_REPLAY), 1U);
    /* Re-topic: the signature and the AEAD both bind the topic. */
    publish(&m[0], TOPIC, "second", &w);
    cr_assert_eq(receive(&m[2], "a/c", w.buf, w.len, NULL), MQE2E_ERR_AUTH);
    cr_assert_eq(drops(&m[2], MQE2E_DROP_AUTH), 1U);
    /* The forgery moved no window: the real message still opens. */
    cr_assert_eq(receive(&m[2], TOPIC, w.buf, w.len, text), MQE2E_OK);
    cr_assert_str_eq(text, "second");
    mqe2e_counters c;
    mqe2e_protector_counters(m[0].pr, &c);
    cr_assert_eq(c.sealed, 2U);
    members_free(m, 4);
}

Test(signed_protect, tamper_every_byte_never_delivered)
{
    member m[2];
    members_init(m, 2, NAMES, SENDERS, IN_DIR, 1, NULL);
    wire w;
    publish(&m[0], TOPIC, "do not touch", &w);
    uint64_t failures = 0;
    for (size_t i = 0; i < w.len; i++) {
        w.buf[i] ^= 0x01;
        int rc = receive(&m[1], TOPIC, w.buf, w.len, NULL);
        cr_assert_neq(rc, MQE2E_OK, "byte %zu delivered", i);
        failures++;
        w.buf[i] ^= 0x01;
    }
    cr_assert_eq(drops_total(&m[1]), failures);
    char text[64];
    cr_assert_eq(receive(&m[1], TOPIC, w.buf, w.len, text), MQE2E_OK);
    cr_assert_str_eq(text, "do not touch");
    members_free(m, 2);
}

Test(signed_protect, unsigned_envelope_on_signed_topic_dropped)
{
    member m[3];
    members_init(m, 3, NAMES, SENDERS, IN_DIR, 1, NULL);
    /* Mallory seals a valid group-mode envelope in Alice's name with the group key. */
    mqe2e_sender_key k;
    mqe2e_envelope_header h = {MQE2E_MODE_GROUP, 1, 0x111, 500, 0U};
    wire w;
    cr_assert_eq(mqe2e_sender_key_derive(&k, SECRET, GROUP, 1, 0x111), MQE2E_OK);
    cr_assert_eq(mqe2e_envelope_seal(w.buf, sizeof w.buf, &w.len, &k, TOPIC, GROUP, &h,
                                     (const uint8_t *)"unlock", 6),
                 MQE2E_OK);
    cr_assert_eq(receive(&m[1], TOPIC, w.buf, w.len, NULL), MQE2E_ERR_POLICY);
    cr_assert_eq(drops(&m[1], MQE2E_DROP_POLICY), 1U);

    /* In signed mode under Alice's id, signed with her own key: the directory says no. */
    test_signer mallory_raw;
    signer_seeded(&mallory_raw, 0x66);
    h.mode = MQE2E_MODE_SIGNED_GROUP;
    h.seq = 501;
    cr_assert_eq(mqe2e_envelope_seal_signed(w.buf, sizeof w.buf, &w.len, &k, TOPIC, GROUP, &h,
                                            (const uint8_t *)"unlock", 6, sign_cb, &mallory_raw),
                 MQE2E_OK);
    cr_assert_eq(receive(&m[1], TOPIC, w.buf, w.len, NULL), MQE2E_ERR_AUTH);
    cr_assert_eq(drops(&m[1], MQE2E_DROP_AUTH), 1U);
    mqe2e_sender_key_wipe(&k);
    /* Nothing of it reached a window: Alice's real seq 1 still opens. */
    publish(&m[0], TOPIC, "real", &w);
    cr_assert_eq(receive(&m[1], TOPIC, w.buf, w.len, NULL), MQE2E_OK);
    members_free(m, 3);
}

Test(signed_protect, member_signing_as_itself_under_victim_id)
{
    member m[3];
    members_init(m, 3, NAMES, SENDERS, IN_DIR, 1, NULL);
    /* Mallory's own keystore signs (a directory member), but the header says Alice. */
    mqe2e_sender_key k;
    mqe2e_envelope_header h = {MQE2E_MODE_SIGNED_GROUP, 1, 0x111, 900, 0U};
    wire w;
    cr_assert_eq(mqe2e_sender_key_derive(&k, SECRET, GROUP, 1, 0x111), MQE2E_OK);
    cr_assert_eq(mqe2e_envelope_seal_signed(w.buf, sizeof w.buf, &w.len, &k, TOPIC, GROUP, &h,
                                            (const uint8_t *)"x", 1,
                                            (mqe2e_envelope_sign_fn)NULL, NULL),
                 MQE2E_ERR_INVALID_ARG);
    mqe2e_sender_key_wipe(&k);
    /* Through the protector: Mallory's keystore claims Alice's sender id. */
    cr_assert_eq(mqe2e_keystore_group_set_sender_id(m[2].ks, GROUP, 0x111), MQE2E_OK);
    mqe2e_protector_invalidate(m[2].pr, GROUP);
    publish(&m[2], TOPIC, "as alice", &w);
    cr_assert_eq(receive(&m[1], TOPIC, w.buf, w.len, NULL), MQE2E_ERR_AUTH);
    cr_assert_eq(receive(&m[0], TOPIC, w.buf, w.len, NULL), MQE2E_ERR_AUTH);
    members_free(m, 3);
}

Test(signed_protect, unknown_signer_refused)
{
    member m[4];
    members_init(m, 4, NAMES, SENDERS, IN_DIR, 1, NULL);
    wire w;
    publish(&m[3], TOPIC, "from carol", &w);
    cr_assert_eq(receive(&m[1], TOPIC, w.buf, w.len, NULL), MQE2E_ERR_UNKNOWN_SIGNER);
    cr_assert_eq(drops(&m[1], MQE2E_DROP_UNKNOWN_SIGNER), 1U);
    cr_assert_eq(mqe2e_drop_reason_of(MQE2E_ERR_UNKNOWN_SIGNER), MQE2E_DROP_UNKNOWN_SIGNER);
    cr_assert_str_eq(mqe2e_drop_reason_name(MQE2E_DROP_UNKNOWN_SIGNER), "unknown_signer");
    cr_assert_str_eq(mqe2e_error_name(MQE2E_ERR_UNKNOWN_SIGNER), "unknown_signer");
    /* Once her key is in Bob's directory, the same message is accepted. */
    mqe2e_signer c = signer_of(m[3].ks, "carol", 0x444);
    cr_assert_eq(mqe2e_keystore_signer_add(m[1].ks, GROUP, &c), MQE2E_OK);
    cr_assert_eq(receive(&m[1], TOPIC, w.buf, w.len, NULL), MQE2E_OK);
    /* Removed again: refused again (a new message, so not a replay). */
    cr_assert_eq(mqe2e_keystore_signer_remove(m[1].ks, GROUP, 0x444), MQE2E_OK);
    publish(&m[3], TOPIC, "again", &w);
    cr_assert_eq(receive(&m[1], TOPIC, w.buf, w.len, NULL), MQE2E_ERR_UNKNOWN_SIGNER);
    members_free(m, 4);
}

Test(signed_protect, rule_flag_alone_makes_topic_signed)
{
    /* The keystore does not mark the group: the policy rule does. */
    member m[2];
    members_init(m, 2, NAMES, SENDERS, IN_DIR, 0, "s/#=signed-group:g1");
    wire w;
    char text[64];
    publish(&m[0], "s/1", "signed by rule", &w);
    mqe2e_envelope_view v;
    cr_assert_eq(mqe2e_envelope_parse(&v, w.buf, w.len), MQE2E_OK);
    cr_assert_eq(v.header.mode, MQE2E_MODE_SIGNED_GROUP);
    cr_assert_eq(receive(&m[1], "s/1", w.buf, w.len, text), MQE2E_OK);
    cr_assert_str_eq(text, "signed by rule");
    /* The same group on an unsigned rule ("a/#" from the keystore) seals mode 1... */
    publish(&m[0], "a/1", "plain group", &w);
    cr_assert_eq(mqe2e_envelope_parse(&v, w.buf, w.len), MQE2E_OK);
    cr_assert_eq(v.header.mode, MQE2E_MODE_GROUP);
    /* ...which the signed rule refuses if moved there (and the AD would too). */
    cr_assert_eq(receive(&m[1], "s/1", w.buf, w.len, NULL), MQE2E_ERR_POLICY);
    members_free(m, 2);
}

Test(signed_protect, signed_envelope_on_unsigned_topic)
{
    /* Documented choice: every topic takes exactly its mode. A signed
     * envelope on an unsigned group topic is a policy drop, even from a known
     * signer with a good signature, and costs no signature check. */
    member m[4];
    members_init(m, 4, NAMES, SENDERS, IN_DIR, 0, "s/#=signed-group:g1");
    wire w;
    publish(&m[0], "s/1", "signed", &w);
    /* Re-topiced onto the unsigned a/# rule. */
    cr_assert_eq(receive(&m[1], "a/1", w.buf, w.len, NULL), MQE2E_ERR_POLICY);
    /* Sealed for a/1 itself by a known signer: still the wrong mode there. */
    test_signer raw;
    signer_seeded(&raw, 0x77);
    mqe2e_signer d;
    memset(&d, 0, sizeof d);
    d.sender_id = 0x555;
    memcpy(d.sign_public, raw.pk, 32);
    cr_assert_eq(mqe2e_keystore_signer_add(m[1].ks, GROUP, &d), MQE2E_OK);
    mqe2e_sender_key k;
    mqe2e_envelope_header h = {MQE2E_MODE_SIGNED_GROUP, 1, 0x555, 1, 0U};
    cr_assert_eq(mqe2e_sender_key_derive(&k, SECRET, GROUP, 1, 0x555), MQE2E_OK);
    cr_assert_eq(mqe2e_envelope_seal_signed(w.buf, sizeof w.buf, &w.len, &k, "a/1", GROUP, &h,
                                            (const uint8_t *)"ok", 2, sign_cb, &raw),
                 MQE2E_OK);
    cr_assert_eq(receive(&m[1], "a/1", w.buf, w.len, NULL), MQE2E_ERR_POLICY);
    cr_assert_eq(drops(&m[1], MQE2E_DROP_POLICY), 2U);
    cr_assert_eq(drops(&m[1], MQE2E_DROP_UNKNOWN_SIGNER), 0U);
    /* The same envelope is fine where the policy says signed (moved to s/1 it
     * fails the topic binding instead, as any re-topiced envelope). */
    cr_assert_eq(receive(&m[1], "s/1", w.buf, w.len, NULL), MQE2E_ERR_AUTH);
    mqe2e_sender_key_wipe(&k);
    members_free(m, 4);
}

Test(signed_protect, keystore_flag_change_after_invalidate)
{
    member m[2];
    members_init(m, 2, NAMES, SENDERS, IN_DIR, 0, "z/#=group:g1");
    wire w;
    publish(&m[0], "z/1", "before", &w);
    mqe2e_envelope_view v;
    cr_assert_eq(mqe2e_envelope_parse(&v, w.buf, w.len), MQE2E_OK);
    cr_assert_eq(v.header.mode, MQE2E_MODE_GROUP);
    /* The authority (or operator) marks the group signed: after invalidation
     * both directions follow, even on a rule that did not ask for it. */
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(mqe2e_keystore_group_set_signed(m[i].ks, GROUP, 1), MQE2E_OK);
        mqe2e_protector_invalidate(m[i].pr, GROUP);
    }
    cr_assert_eq(receive(&m[1], "z/1", w.buf, w.len, NULL), MQE2E_ERR_POLICY);
    publish(&m[0], "z/1", "after", &w);
    cr_assert_eq(mqe2e_envelope_parse(&v, w.buf, w.len), MQE2E_OK);
    cr_assert_eq(v.header.mode, MQE2E_MODE_SIGNED_GROUP);
    cr_assert_eq(receive(&m[1], "z/1", w.buf, w.len, NULL), MQE2E_OK);
    members_free(m, 2);
}

Test(signed_protect, bound_covers_signed_mode)
{
    member m[2];
    members_init(m, 2, NAMES, SENDERS, IN_DIR, 1, NULL);
    uint8_t pt[300] = {0};
    uint8_t out[600];
    size_t n;
    size_t bound = mqe2e_protect_bound(sizeof pt);
    cr_assert_leq(bound, sizeof out);
    cr_assert_eq(mqe2e_protect(m[0].pr, TOPIC, pt, sizeof pt, T0, out, bound, &n), MQE2E_OK);
    cr_assert_leq(n, bound);
    cr_assert_eq(mqe2e_protect(m[0].pr, TOPIC, pt, sizeof pt, T0, out, bound - 1, &n),
                 MQE2E_ERR_BUFFER_TOO_SMALL);
    members_free(m, 2);
}

/* ------------------------------------------------------------------ */
/* Authority bundles: signer directories in EnrollReply / HelloReply / Push */

#include "internal_control.h"
#include "mqe2e/control.h"
#include "proto/control.pb-c.h"

static mqe2e_key_bundle bundle_of(const char *group, uint32_t epoch, uint32_t sender)
{
    mqe2e_key_bundle b;
    memset(&b, 0, sizeof b);
    snprintf(b.group, sizeof b.group, "%s", group);
    snprintf(b.topic_filter, sizeof b.topic_filter, "a/#");
    b.epoch = epoch;
    memcpy(b.secret, SECRET, sizeof b.secret);
    b.sender_id = sender;
    b.created_at = T0;
    return b;
}

Test(signed_control, directories_round_trip_and_apply)
{
    mqe2e_keystore *alice = mem_ks("alice", 10);
    mqe2e_keystore *bob = mem_ks("bob", 20);
    mqe2e_signer sg[2] = {signer_of(alice, "alice", 10), signer_of(bob, "bob", 20)};
    mqe2e_key_bundle kb = bundle_of(GROUP, 1, 20);
    mqe2e_group_directory dir;
    memset(&dir, 0, sizeof dir);
    snprintf(dir.group, sizeof dir.group, "%s", GROUP);
    dir.signers = sg;
    dir.n_signers = 2;
    static const int kinds[] = {MQE2E__PAYLOAD_ENROLL_REPLY, MQE2E__PAYLOAD_HELLO_REPLY,
                                MQE2E__PAYLOAD_PUSH};
    for (size_t k = 0; k < 3; k++) {
        mqe2e_control_update u, back;
        memset(&u, 0, sizeof u);
        u.push_seq = 7;
        u.bundles = &kb;
        u.n_bundles = 1;
        u.directories = &dir;
        u.n_directories = 1;
        uint8_t *buf = NULL;
        size_t len = 0;
        cr_assert_eq(mqe2e__control_pack_update(&buf, &len, kinds[k], &u), MQE2E_OK);
        cr_assert_eq(mqe2e__control_unpack_update(&back, kinds[k], buf, len), MQE2E_OK);
        cr_assert_eq(back.n_directories, 1U, "kind %d", kinds[k]);
        cr_assert_str_eq(back.directories[0].group, GROUP);
        cr_assert_eq(back.directories[0].n_signers, 2U);
        cr_assert_eq(back.directories[0].signers[1].sender_id, 20U);
        cr_assert_str_eq(back.directories[0].signers[1].client_id, "bob");
        cr_assert_eq(memcmp(back.directories[0].signers[0].sign_public, sg[0].sign_public, 32), 0);
        mqe2e_control_update_wipe(&back);
        free(buf);
    }

    /* Bob applies an enrollment reply: bundle, then directory. */
    mqe2e_control_update u;
    memset(&u, 0, sizeof u);
    u.bundles = &kb;
    u.n_bundles = 1;
    u.directories = &dir;
    u.n_directories = 1;
    cr_assert_eq(mqe2e_keystore_group_is_signed(bob, GROUP), 0);
    cr_assert_eq(mqe2e_control_update_apply_directories(bob, &u), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_is_signed(bob, GROUP), 1);
    cr_assert_eq(mqe2e_keystore_signer_count(bob, GROUP), 2U);
    /* A later push without Alice (she left): the directory follows the authority. */
    dir.signers = &sg[1];
    dir.n_signers = 1;
    cr_assert_eq(mqe2e_control_update_apply_directories(bob, &u), MQE2E_OK);
    uint8_t pk[32];
    cr_assert_eq(mqe2e_keystore_signer_lookup(bob, GROUP, 10, pk, NULL), MQE2E_ERR_NOT_FOUND);
    /* A directory for a group not held is skipped; an invalid key refused. */
    snprintf(dir.group, sizeof dir.group, "other");
    cr_assert_eq(mqe2e_control_update_apply_directories(bob, &u), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_is_signed(bob, "other"), 0);
    snprintf(dir.group, sizeof dir.group, "%s", GROUP);
    mqe2e_signer bad = sg[1];
    memset(bad.sign_public, 0, 32);
    dir.signers = &bad;
    cr_assert_eq(mqe2e_control_update_apply_directories(bob, &u), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_keystore_signer_lookup(bob, GROUP, 20, pk, NULL), MQE2E_OK,
                 "nothing changed");
    mqe2e_keystore_close(alice);
    mqe2e_keystore_close(bob);
}

Test(signed_control, malformed_directories_refused)
{
    uint8_t pk[32] = {0};
    /* Encode with protobuf-c directly: what a forger could put in a payload. */
    Mqe2e__V1__GroupSigner s = MQE2E__V1__GROUP_SIGNER__INIT;
    Mqe2e__V1__GroupSigner *sp[] = {&s};
    Mqe2e__V1__GroupDirectory d = MQE2E__V1__GROUP_DIRECTORY__INIT;
    Mqe2e__V1__GroupDirectory *dp[] = {&d};
    Mqe2e__V1__Push p = MQE2E__V1__PUSH__INIT;
    p.push_seq = 1;
    p.n_directories = 1;
    p.directories = dp;
    d.group = (char *)GROUP;
    d.n_signers = 1;
    d.signers = sp;
    s.client_id = (char *)"x";
    for (int round = 0; round < 4; round++) {
        s.sender_id = 5;
        s.sign_public.data = pk;
        s.sign_public.len = 32;
        d.group = (char *)GROUP;
        if (round == 0) s.sign_public.len = 31; /* short key */
        if (round == 1) s.sender_id = 0;        /* sender id 0 */
        if (round == 2) d.group = (char *)"";   /* no group */
        if (round == 3) s.client_id = (char *)"bad\nid";
        uint8_t buf[512];
        size_t n = mqe2e__v1__push__pack(&p, buf);
        mqe2e_control_update u;
        cr_assert_eq(mqe2e__control_unpack_update(&u, MQE2E__PAYLOAD_PUSH, buf, n),
                     MQE2E_ERR_DECODE, "round %d", round);
        cr_assert_eq(u.n_directories, 0U);
        cr_assert_null(u.directories);
        s.client_id = (char *)"x";
    }
    /* Too many signers in one update, on the way out. */
    mqe2e_signer *many = calloc(MQE2E_CONTROL_MAX_SIGNERS + 1U, sizeof *many);
    for (size_t i = 0; i <= MQE2E_CONTROL_MAX_SIGNERS; i++) many[i].sender_id = (uint32_t)i + 1U;
    mqe2e_group_directory dir;
    memset(&dir, 0, sizeof dir);
    snprintf(dir.group, sizeof dir.group, "%s", GROUP);
    dir.signers = many;
    dir.n_signers = MQE2E_CONTROL_MAX_SIGNERS + 1U;
    mqe2e_control_update u;
    memset(&u, 0, sizeof u);
    u.push_seq = 1;
    u.directories = &dir;
    u.n_directories = 1;
    uint8_t *buf = NULL;
    size_t len = 0;
    cr_assert_eq(mqe2e__control_pack_update(&buf, &len, MQE2E__PAYLOAD_PUSH, &u),
                 MQE2E_ERR_INVALID_ARG);
    free(many);
}

Test(signed_protect, group_not_held_is_no_key)
{
    /* A signed rule for a group the keystore does not hold: no key, not a stranger. */
    member m[2];
    members_init(m, 2, NAMES, SENDERS, IN_DIR, 1, "x/#=signed-group:absent");
    test_signer raw;
    signer_seeded(&raw, 0x31);
    mqe2e_sender_key k;
    mqe2e_envelope_header h = {MQE2E_MODE_SIGNED_GROUP, 1, 0x111, 1, 0U};
    wire w;
    cr_assert_eq(mqe2e_sender_key_derive(&k, SECRET, "absent", 1, 0x111), MQE2E_OK);
    cr_assert_eq(mqe2e_envelope_seal_signed(w.buf, sizeof w.buf, &w.len, &k, "x/1", "absent", &h,
                                            (const uint8_t *)"?", 1, sign_cb, &raw),
                 MQE2E_OK);
    mqe2e_sender_key_wipe(&k);
    cr_assert_eq(receive(&m[1], "x/1", w.buf, w.len, NULL), MQE2E_ERR_NO_KEY);
    /* Publishing there has no key either. */
    cr_assert_eq(mqe2e_protect(m[0].pr, "x/1", (const uint8_t *)"?", 1, T0, w.buf, sizeof w.buf,
                               &w.len),
                 MQE2E_ERR_NO_KEY);
    members_free(m, 2);
}

/* Bound properties in signed mode: the signature covers the AD, so a changed
 * bound property fails the signature before any decryption (PROTOCOL.md 2.5.1). */
static int receive_meta(member *m, const wire *w, const char *ct, int retain)
{
    const mqe2e_msg_property p[] = {
        {MQE2E_PROP_CONTENT_TYPE, NULL, 0, (const uint8_t *)ct, ct != NULL ? strlen(ct) : 0U}};
    mqe2e_msg_meta meta = {p, ct != NULL ? 1U : 0U, retain};
    mqe2e_receipt r;
    uint8_t out[1024];
    size_t out_len;
    return mqe2e_unprotect_begin_meta(m->pr, TOPIC, &meta, w->buf, w->len, T0, out, sizeof out,
                                      &out_len, &r);
}

Test(signed_protect, bound_properties_and_retain)
{
    member m[2];
    members_init(m, 2, NAMES, SENDERS, IN_DIR, 1, "a/#=signed-group:g1;bind=content-type,retain");
    const mqe2e_msg_property p[] = {
        {MQE2E_PROP_CONTENT_TYPE, NULL, 0, (const uint8_t *)"text/plain", 10}};
    mqe2e_msg_meta meta = {p, 1, 0};
    wire w;
    cr_assert_eq(mqe2e_protect_meta(m[0].pr, TOPIC, &meta, (const uint8_t *)"x", 1, T0, w.buf,
                                    sizeof w.buf, &w.len),
                 MQE2E_OK);
    cr_assert_eq(receive_meta(&m[1], &w, "text/html", 0), MQE2E_ERR_AUTH, "changed");
    cr_assert_eq(receive_meta(&m[1], &w, NULL, 0), MQE2E_ERR_AUTH, "removed");
    cr_assert_eq(receive_meta(&m[1], &w, "text/plain", 1), MQE2E_ERR_AUTH, "made retained");
    cr_assert_eq(drops(&m[1], MQE2E_DROP_AUTH), 3U);
    cr_assert_eq(receive_meta(&m[1], &w, "text/plain", 0), MQE2E_OK);
    members_free(m, 2);
}
