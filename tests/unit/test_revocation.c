/* Revocation lists: wire format, sign/verify, tampering, versions, lookups. */
#include <criterion/criterion.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqe2e/credential.h"
#include "mqe2e/error.h"
#include "proto/credential.pb-c.h"

static uint8_t auth_pk[32], auth_sk[64];
static uint8_t other_pk[32], other_sk[64];

static void keys(void)
{
    uint8_t seed[32];
    cr_assert_eq(mqe2e_init(), MQE2E_OK);
    memset(seed, 0x11, sizeof seed);
    crypto_sign_seed_keypair(auth_pk, auth_sk, seed);
    memset(seed, 0x22, sizeof seed);
    crypto_sign_seed_keypair(other_pk, other_sk, seed);
}

TestSuite(revocation, .init = keys);

static const mqe2e_revocation_entry sample[] = {
    {"dev-9", 3, 1000},
    {"dev-1", 7, 1001},
    {"stolen", 0, 1002},
    {"dev-1", 4, 1003},
};
#define N_SAMPLE (sizeof sample / sizeof sample[0])

static uint8_t *sign_sample(uint64_t version, size_t *len)
{
    uint8_t *out = NULL;
    cr_assert_eq(mqe2e_revocation_list_sign(&out, len, auth_sk, version, 500, sample, N_SAMPLE),
                 MQE2E_OK);
    return out;
}

static uint8_t *wrap(const uint8_t *body, size_t bl, const uint8_t sk[64], size_t *len)
{
    size_t dl = strlen(MQE2E_REVOCATION_DOMAIN);
    uint8_t *m = malloc(dl + bl + 1);
    uint8_t sig[64];
    memcpy(m, MQE2E_REVOCATION_DOMAIN, dl);
    memcpy(m + dl, body, bl);
    crypto_sign_detached(sig, NULL, m, dl + bl, sk);
    free(m);
    Mqe2e__V1__RevocationList l;
    mqe2e__v1__revocation_list__init(&l);
    l.body.data = (uint8_t *)body;
    l.body.len = bl;
    l.signature.data = sig;
    l.signature.len = 64;
    *len = mqe2e__v1__revocation_list__get_packed_size(&l);
    uint8_t *out = malloc(*len);
    mqe2e__v1__revocation_list__pack(&l, out);
    return out;
}

static int verify_body(uint32_t format, uint64_t version, const uint8_t *apk, const char *cid)
{
    Mqe2e__V1__RevocationListBody b;
    Mqe2e__V1__RevocationEntry e;
    Mqe2e__V1__RevocationEntry *ep = &e;
    mqe2e__v1__revocation_list_body__init(&b);
    mqe2e__v1__revocation_entry__init(&e);
    e.client_id = (char *)cid;
    e.serial = 1;
    b.format = format;
    b.version = version;
    b.entries = &ep;
    b.n_entries = 1;
    b.authority_public.data = (uint8_t *)apk;
    b.authority_public.len = 32;
    size_t bl = mqe2e__v1__revocation_list_body__get_packed_size(&b);
    uint8_t *body = malloc(bl);
    mqe2e__v1__revocation_list_body__pack(&b, body);
    size_t len;
    uint8_t *buf = wrap(body, bl, auth_sk, &len);
    mqe2e_revocation_list *l = NULL;
    int rc = mqe2e_revocation_list_verify(&l, buf, len, auth_pk);
    cr_assert(rc == MQE2E_OK ? l != NULL : l == NULL);
    mqe2e_revocation_list_free(l);
    free(body);
    free(buf);
    return rc;
}

Test(revocation, wire_format_and_domain)
{
    mqe2e_revocation_entry e = {"d", 2, 3};
    uint8_t *out = NULL;
    size_t len = 0;
    cr_assert_eq(mqe2e_revocation_list_sign(&out, &len, auth_sk, 9, 4, &e, 1), MQE2E_OK);
    uint8_t body[128];
    size_t n = 0;
    body[n++] = 0x08;
    body[n++] = 0x01; /* format */
    body[n++] = 0x10;
    body[n++] = 0x09; /* version */
    body[n++] = 0x18;
    body[n++] = 0x04; /* issued_at */
    body[n++] = 0x22;
    body[n++] = 0x07; /* entry */
    body[n++] = 0x0a;
    body[n++] = 0x01;
    body[n++] = 'd';
    body[n++] = 0x10;
    body[n++] = 0x02;
    body[n++] = 0x18;
    body[n++] = 0x03;
    body[n++] = 0x2a;
    body[n++] = 0x20;
    memcpy(body + n, auth_pk, 32);
    n += 32;
    cr_assert_eq(len, 2 + n + 2 + 64);
    cr_assert_eq(out[0], 0x0a);
    cr_assert_eq(out[1], n);
    cr_assert_eq(memcmp(out + 2, body, n), 0);
    cr_assert_eq(out[2 + n], 0x12);
    cr_assert_eq(out[3 + n], 0x40);
    uint8_t msg[200];
    size_t dl = strlen("mqe2e/v1/revocations");
    memcpy(msg, "mqe2e/v1/revocations", dl);
    memcpy(msg + dl, body, n);
    cr_assert_eq(crypto_sign_verify_detached(out + 4 + n, msg, dl + n, auth_pk), 0);
    free(out);
}

Test(revocation, sign_verify_lookup)
{
    size_t len;
    uint8_t *buf = sign_sample(3, &len);
    mqe2e_revocation_list *l = NULL;
    cr_assert_eq(mqe2e_revocation_list_verify(&l, buf, len, auth_pk), MQE2E_OK);
    cr_assert_eq(mqe2e_revocation_list_version(l), 3);
    cr_assert_eq(mqe2e_revocation_list_issued_at(l), 500);
    cr_assert_eq(mqe2e_revocation_list_count(l), N_SAMPLE);

    cr_assert(mqe2e_revocation_list_is_revoked(l, "dev-1", 7));
    cr_assert(mqe2e_revocation_list_is_revoked(l, "dev-1", 4));
    /* An entry with serial s revokes every serial up to s (a replaced
     * device's renewed credentials), none above it (the new device's). */
    cr_assert(mqe2e_revocation_list_is_revoked(l, "dev-1", 5));
    cr_assert(mqe2e_revocation_list_is_revoked(l, "dev-1", 1));
    cr_assert_not(mqe2e_revocation_list_is_revoked(l, "dev-1", 8));
    cr_assert_not(mqe2e_revocation_list_client_revoked(l, "dev-1"));
    cr_assert(mqe2e_revocation_list_client_revoked(l, "stolen"));
    cr_assert_not(mqe2e_revocation_list_client_revoked(l, "dev-2"));
    cr_assert_not(mqe2e_revocation_list_client_revoked(NULL, "stolen"));
    cr_assert(mqe2e_revocation_list_is_revoked(l, "dev-1", 0));
    cr_assert(mqe2e_revocation_list_is_revoked(l, "dev-9", 3));
    cr_assert_not(mqe2e_revocation_list_is_revoked(l, "dev-9", 4));
    cr_assert(mqe2e_revocation_list_is_revoked(l, "stolen", 1));
    cr_assert(mqe2e_revocation_list_is_revoked(l, "stolen", 99999));
    cr_assert(mqe2e_revocation_list_is_revoked(l, "stolen", 0));
    cr_assert_not(mqe2e_revocation_list_is_revoked(l, "dev-2", 0));
    cr_assert_not(mqe2e_revocation_list_is_revoked(l, "dev-", 7));
    cr_assert_not(mqe2e_revocation_list_is_revoked(l, "dev-10", 3));
    cr_assert_not(mqe2e_revocation_list_is_revoked(l, "", 0));
    cr_assert_not(mqe2e_revocation_list_is_revoked(l, NULL, 0));
    cr_assert_not(mqe2e_revocation_list_is_revoked(NULL, "dev-1", 7));

    /* Entries come back sorted by client id, then serial. */
    mqe2e_revocation_entry e;
    const char *ids[] = {"dev-1", "dev-1", "dev-9", "stolen"};
    const uint64_t serials[] = {4, 7, 3, 0};
    const uint64_t at[] = {1003, 1001, 1000, 1002};
    for (size_t i = 0; i < N_SAMPLE; i++) {
        cr_assert_eq(mqe2e_revocation_list_entry(l, i, &e), MQE2E_OK);
        cr_assert_str_eq(e.client_id, ids[i]);
        cr_assert_eq(e.serial, serials[i]);
        cr_assert_eq(e.revoked_at, at[i]);
    }
    cr_assert_eq(mqe2e_revocation_list_entry(l, N_SAMPLE, &e), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_revocation_list_entry(l, 0, NULL), MQE2E_ERR_INVALID_ARG);
    mqe2e_revocation_list_free(l);
    mqe2e_revocation_list_free(NULL);
    cr_assert_eq(mqe2e_revocation_list_version(NULL), 0);
    cr_assert_eq(mqe2e_revocation_list_count(NULL), 0);
    free(buf);
}

Test(revocation, empty_list)
{
    uint8_t *out = NULL;
    size_t len;
    cr_assert_eq(mqe2e_revocation_list_sign(&out, &len, auth_sk, 1, 0, NULL, 0), MQE2E_OK);
    mqe2e_revocation_list *l = NULL;
    cr_assert_eq(mqe2e_revocation_list_verify(&l, out, len, auth_pk), MQE2E_OK);
    cr_assert_eq(mqe2e_revocation_list_count(l), 0);
    cr_assert_not(mqe2e_revocation_list_is_revoked(l, "dev-1", 0));
    mqe2e_revocation_list_free(l);
    free(out);
}

Test(revocation, large_list_lookup)
{
    enum { N = 2000 };
    mqe2e_revocation_entry *e = calloc(N, sizeof *e);
    char(*ids)[16] = calloc(N, sizeof *ids);
    for (size_t i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "dev-%zu", (i * 7919) % N);
        e[i].client_id = ids[i];
        e[i].serial = i % 3 == 0 ? 0 : i + 1;
        e[i].revoked_at = i;
    }
    uint8_t *out = NULL;
    size_t len;
    cr_assert_eq(mqe2e_revocation_list_sign(&out, &len, auth_sk, 77, 1, e, N), MQE2E_OK);
    mqe2e_revocation_list *l = NULL;
    cr_assert_eq(mqe2e_revocation_list_verify(&l, out, len, auth_pk), MQE2E_OK);
    for (size_t i = 0; i < N; i++) {
        cr_assert(mqe2e_revocation_list_is_revoked(l, ids[i], e[i].serial == 0 ? 12345 : i + 1));
        cr_assert(mqe2e_revocation_list_is_revoked(l, ids[i], 0));
        if (e[i].serial != 0) cr_assert_not(mqe2e_revocation_list_is_revoked(l, ids[i], i + 2));
    }
    cr_assert_not(mqe2e_revocation_list_is_revoked(l, "dev-2000", 0));
    mqe2e_revocation_list_free(l);
    free(out);
    free(ids);
    free(e);
}

Test(revocation, wrong_key_is_auth)
{
    size_t len;
    uint8_t *buf = sign_sample(1, &len);
    mqe2e_revocation_list *l = (mqe2e_revocation_list *)1;
    cr_assert_eq(mqe2e_revocation_list_verify(&l, buf, len, other_pk), MQE2E_ERR_AUTH);
    cr_assert_null(l);
    free(buf);
    uint8_t *o = NULL;
    cr_assert_eq(mqe2e_revocation_list_sign(&o, &len, other_sk, 1, 0, sample, N_SAMPLE), MQE2E_OK);
    cr_assert_eq(mqe2e_revocation_list_verify(&l, o, len, auth_pk), MQE2E_ERR_AUTH);
    free(o);
}

Test(revocation, credential_signature_is_not_a_list)
{
    /* Same key, same bytes, other domain: refused. */
    size_t len;
    uint8_t *buf = sign_sample(1, &len);
    Mqe2e__V1__RevocationList *rl = mqe2e__v1__revocation_list__unpack(NULL, len, buf);
    cr_assert_not_null(rl);
    size_t dl = strlen(MQE2E_CREDENTIAL_DOMAIN);
    uint8_t *m = malloc(dl + rl->body.len);
    memcpy(m, MQE2E_CREDENTIAL_DOMAIN, dl);
    memcpy(m + dl, rl->body.data, rl->body.len);
    crypto_sign_detached(rl->signature.data, NULL, m, dl + rl->body.len, auth_sk);
    mqe2e__v1__revocation_list__pack(rl, buf);
    mqe2e_revocation_list *l = NULL;
    cr_assert_eq(mqe2e_revocation_list_verify(&l, buf, len, auth_pk), MQE2E_ERR_AUTH);
    mqe2e__v1__revocation_list__free_unpacked(rl, NULL);
    free(m);
    free(buf);
}

Test(revocation, every_byte_flipped_is_refused)
{
    size_t len;
    uint8_t *buf = sign_sample(5, &len);
    for (size_t i = 0; i < len; i++) {
        for (unsigned bit = 0; bit < 8; bit++) {
            buf[i] ^= (uint8_t)(1u << bit);
            mqe2e_revocation_list *l = NULL;
            int rc = mqe2e_revocation_list_verify(&l, buf, len, auth_pk);
            cr_assert(rc == MQE2E_ERR_AUTH || rc == MQE2E_ERR_DECODE, "byte %zu rc %d", i, rc);
            cr_assert_null(l);
            buf[i] ^= (uint8_t)(1u << bit);
        }
    }
    for (size_t n = 0; n < len; n++) {
        mqe2e_revocation_list *l = NULL;
        int rc = mqe2e_revocation_list_verify(&l, buf, n, auth_pk);
        cr_assert(rc == MQE2E_ERR_AUTH || rc == MQE2E_ERR_DECODE, "len %zu rc %d", n, rc);
    }
    free(buf);
}

Test(revocation, versions_are_carried_for_the_receiver_to_compare)
{
    size_t l1, l2;
    uint8_t *v1 = sign_sample(1, &l1);
    uint8_t *v2 = sign_sample(2, &l2);
    mqe2e_revocation_list *a = NULL, *b = NULL;
    cr_assert_eq(mqe2e_revocation_list_verify(&a, v1, l1, auth_pk), MQE2E_OK);
    cr_assert_eq(mqe2e_revocation_list_verify(&b, v2, l2, auth_pk), MQE2E_OK);
    /* The receiver keeps the higher one; an older replayed list compares lower. */
    cr_assert_gt(mqe2e_revocation_list_version(b), mqe2e_revocation_list_version(a));
    mqe2e_revocation_list_free(a);
    mqe2e_revocation_list_free(b);
    free(v1);
    free(v2);
    uint8_t *o = NULL;
    cr_assert_eq(mqe2e_revocation_list_sign(&o, &l1, auth_sk, 0, 0, NULL, 0),
                 MQE2E_ERR_INVALID_ARG);
    cr_assert_null(o);
}

Test(revocation, signed_but_invalid_content)
{
    cr_assert_eq(verify_body(1, 1, auth_pk, "ok"), MQE2E_OK);
    cr_assert_eq(verify_body(2, 1, auth_pk, "ok"), MQE2E_ERR_SUITE);
    cr_assert_eq(verify_body(1, 0, auth_pk, "ok"), MQE2E_ERR_DECODE);
    cr_assert_eq(verify_body(1, 1, auth_pk, ""), MQE2E_ERR_DECODE);
    cr_assert_eq(verify_body(1, 1, auth_pk, "a/b"), MQE2E_ERR_DECODE);
    /* Signed by the pinned key but naming another authority. */
    cr_assert_eq(verify_body(1, 1, other_pk, "ok"), MQE2E_ERR_AUTH);
}

Test(revocation, sign_refuses_bad_input)
{
    uint8_t *out = NULL;
    size_t len;
    mqe2e_revocation_entry bad[] = {{"a/b", 1, 1}};
    mqe2e_revocation_entry nul[] = {{NULL, 1, 1}};
    cr_assert_eq(mqe2e_revocation_list_sign(&out, &len, auth_sk, 1, 0, bad, 1),
                 MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_revocation_list_sign(&out, &len, auth_sk, 1, 0, nul, 1),
                 MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_revocation_list_sign(&out, &len, auth_sk, 1, 0, NULL, 1),
                 MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_revocation_list_sign(NULL, &len, auth_sk, 1, 0, NULL, 0),
                 MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_revocation_list_sign(&out, &len, NULL, 1, 0, NULL, 0),
                 MQE2E_ERR_INVALID_ARG);
    uint8_t sk[64];
    memcpy(sk, auth_sk, 64);
    sk[63] ^= 0x80;
    cr_assert_eq(mqe2e_revocation_list_sign(&out, &len, sk, 1, 0, NULL, 0), MQE2E_ERR_INVALID_ARG);
    cr_assert_null(out);
}

Test(revocation, oversized_and_garbage)
{
    size_t n = MQE2E_REVOCATION_MAX_BYTES + 1;
    uint8_t *big = calloc(1, n);
    mqe2e_revocation_list *l = NULL;
    cr_assert_eq(mqe2e_revocation_list_verify(&l, big, n, auth_pk), MQE2E_ERR_TOO_LARGE);
    free(big);
    uint8_t buf[300];
    uint32_t seed = 7;
    for (int round = 0; round < 3000; round++) {
        size_t len = (size_t)round % sizeof buf;
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            buf[i] = (uint8_t)(seed >> 16);
        }
        if (round % 2 == 0 && len > 4) {
            buf[0] = 0x0a;
            buf[1] = (uint8_t)((len - 2) & 0x7f);
        }
        cr_assert_neq(mqe2e_revocation_list_verify(&l, buf, len, auth_pk), MQE2E_OK);
        cr_assert_null(l);
    }
    cr_assert_eq(mqe2e_revocation_list_verify(NULL, buf, 1, auth_pk), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_revocation_list_verify(&l, NULL, 1, auth_pk), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_revocation_list_verify(&l, buf, 1, NULL), MQE2E_ERR_INVALID_ARG);
}

/* Sign a body with one retired sender, as a (possibly misbehaving) authority would. */
static int verify_retired(const char *group, uint32_t sender)
{
    Mqe2e__V1__RevocationListBody b;
    Mqe2e__V1__RetiredSender r;
    Mqe2e__V1__RetiredSender *rp = &r;
    mqe2e__v1__revocation_list_body__init(&b);
    mqe2e__v1__retired_sender__init(&r);
    r.group_id = (char *)group;
    r.sender_id = sender;
    b.format = 1;
    b.version = 1;
    b.retired_senders = &rp;
    b.n_retired_senders = 1;
    b.authority_public.data = auth_pk;
    b.authority_public.len = 32;
    size_t bl = mqe2e__v1__revocation_list_body__get_packed_size(&b);
    uint8_t *body = malloc(bl);
    mqe2e__v1__revocation_list_body__pack(&b, body);
    size_t len;
    uint8_t *buf = wrap(body, bl, auth_sk, &len);
    mqe2e_revocation_list *l = NULL;
    int rc = mqe2e_revocation_list_verify(&l, buf, len, auth_pk);
    if (rc == MQE2E_OK) cr_assert(mqe2e_revocation_list_sender_retired(l, group, sender));
    mqe2e_revocation_list_free(l);
    free(body);
    free(buf);
    return rc;
}

/* Issue 11: the list names the sender ids revoked devices held, per group;
 * a lookup answers for exactly those (group, sender) pairs. */
Test(revocation, retired_senders_round_trip_and_strictness)
{
    static const mqe2e_retired_sender retired[] = {
        {"fleet", 7}, {"ward", 3}, {"fleet", 2}, {"fleet", 7} /* repeated: kept once */};
    mqe2e_revocation_contents c = {4, 500, 0, sample, N_SAMPLE, retired, 4};
    uint8_t *out = NULL;
    size_t len = 0;
    cr_assert_eq(mqe2e_revocation_list_sign_contents(&out, &len, auth_sk, &c), MQE2E_OK);
    mqe2e_revocation_list *l = NULL;
    cr_assert_eq(mqe2e_revocation_list_verify(&l, out, len, auth_pk), MQE2E_OK);
    cr_assert_eq(mqe2e_revocation_list_count(l), N_SAMPLE);
    cr_assert_eq(mqe2e_revocation_list_retired_count(l), 3);
    cr_assert(mqe2e_revocation_list_sender_retired(l, "fleet", 7));
    cr_assert(mqe2e_revocation_list_sender_retired(l, "fleet", 2));
    cr_assert(mqe2e_revocation_list_sender_retired(l, "ward", 3));
    cr_assert_not(mqe2e_revocation_list_sender_retired(l, "ward", 7));
    cr_assert_not(mqe2e_revocation_list_sender_retired(l, "fleet", 3));
    cr_assert_not(mqe2e_revocation_list_sender_retired(l, "fleet2", 7));
    cr_assert_not(mqe2e_revocation_list_sender_retired(NULL, "fleet", 7));
    mqe2e_retired_sender r;
    cr_assert_eq(mqe2e_revocation_list_retired(l, 0, &r), MQE2E_OK);
    cr_assert_eq(r.sender_id, 2);
    cr_assert_str_eq(r.group_id, "fleet");
    cr_assert_eq(mqe2e_revocation_list_retired(l, 3, &r), MQE2E_ERR_INVALID_ARG);
    mqe2e_revocation_list_free(l);
    free(out);

    /* A list without retired senders (older authority) has none. */
    out = sign_sample(5, &len);
    cr_assert_eq(mqe2e_revocation_list_verify(&l, out, len, auth_pk), MQE2E_OK);
    cr_assert_eq(mqe2e_revocation_list_retired_count(l), 0);
    cr_assert_not(mqe2e_revocation_list_sender_retired(l, "fleet", 7));
    mqe2e_revocation_list_free(l);
    free(out);

    /* Signer and verifier refuse sender 0 and invalid group names. */
    static const mqe2e_retired_sender zero[] = {{"fleet", 0}};
    static const mqe2e_retired_sender empty[] = {{"", 1}};
    static const mqe2e_retired_sender ctrl[] = {{"a\nb", 1}};
    mqe2e_revocation_contents bad = {1, 0, 0, NULL, 0, zero, 1};
    cr_assert_eq(mqe2e_revocation_list_sign_contents(&out, &len, auth_sk, &bad),
                 MQE2E_ERR_INVALID_ARG);
    bad.retired = empty;
    cr_assert_eq(mqe2e_revocation_list_sign_contents(&out, &len, auth_sk, &bad),
                 MQE2E_ERR_INVALID_ARG);
    bad.retired = ctrl;
    cr_assert_eq(mqe2e_revocation_list_sign_contents(&out, &len, auth_sk, &bad),
                 MQE2E_ERR_INVALID_ARG);
    bad.retired = NULL;
    cr_assert_eq(mqe2e_revocation_list_sign_contents(&out, &len, auth_sk, &bad),
                 MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(verify_retired("fleet", 9), MQE2E_OK);
    cr_assert_eq(verify_retired("fleet", 0), MQE2E_ERR_DECODE);
    cr_assert_eq(verify_retired("", 9), MQE2E_ERR_DECODE);
    cr_assert_eq(verify_retired("a\tb", 9), MQE2E_ERR_DECODE);
}

/* Issue 11: lists carry issue time and next update; a next update not after
 * the issue time is refused by signer and verifier. */
Test(revocation, next_update_round_trip_and_order)
{
    mqe2e_revocation_contents c = {2, 1000, 4600, sample, N_SAMPLE, NULL, 0};
    uint8_t *out = NULL;
    size_t len = 0;
    mqe2e_revocation_list *l = NULL;
    cr_assert_eq(mqe2e_revocation_list_sign_contents(&out, &len, auth_sk, &c), MQE2E_OK);
    cr_assert_eq(mqe2e_revocation_list_verify(&l, out, len, auth_pk), MQE2E_OK);
    cr_assert_eq(mqe2e_revocation_list_issued_at(l), 1000);
    cr_assert_eq(mqe2e_revocation_list_next_update(l), 4600);
    mqe2e_revocation_list_free(l);
    free(out);
    cr_assert_eq(mqe2e_revocation_list_next_update(NULL), 0);
    out = sign_sample(3, &len); /* no next update: 0 */
    cr_assert_eq(mqe2e_revocation_list_verify(&l, out, len, auth_pk), MQE2E_OK);
    cr_assert_eq(mqe2e_revocation_list_next_update(l), 0);
    mqe2e_revocation_list_free(l);
    free(out);

    c.next_update = 1000;
    cr_assert_eq(mqe2e_revocation_list_sign_contents(&out, &len, auth_sk, &c),
                 MQE2E_ERR_INVALID_ARG);
    c.next_update = 999;
    cr_assert_eq(mqe2e_revocation_list_sign_contents(&out, &len, auth_sk, &c),
                 MQE2E_ERR_INVALID_ARG);

    /* Signed by the authority, but next_update before issued_at. */
    Mqe2e__V1__RevocationListBody b;
    mqe2e__v1__revocation_list_body__init(&b);
    b.format = 1;
    b.version = 1;
    b.issued_at = 50;
    b.next_update = 40;
    b.authority_public.data = auth_pk;
    b.authority_public.len = 32;
    size_t bl = mqe2e__v1__revocation_list_body__get_packed_size(&b);
    uint8_t *body = malloc(bl);
    mqe2e__v1__revocation_list_body__pack(&b, body);
    uint8_t *buf = wrap(body, bl, auth_sk, &len);
    cr_assert_eq(mqe2e_revocation_list_verify(&l, buf, len, auth_pk), MQE2E_ERR_DECODE);
    cr_assert_null(l);
    free(body);
    free(buf);
}
