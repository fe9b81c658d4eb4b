/* Credentials: wire format, issue/verify round trips, tampering, time window,
 * grants and renewal. */
#include <criterion/criterion.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "mqe2e/credential.h"
#include "mqe2e/error.h"
#include "proto/credential.pb-c.h"

#define NOW 1700000000u

static uint8_t auth_pk[32], auth_sk[64];
static uint8_t other_pk[32], other_sk[64];
static uint8_t dev_sign_pk[32], dev_sign_sk[64];
static uint8_t dev_dh_pk[32];

static void keys(void)
{
    uint8_t seed[32];
    cr_assert_eq(mqe2e_init(), MQE2E_OK);
    memset(seed, 0x11, sizeof seed);
    crypto_sign_seed_keypair(auth_pk, auth_sk, seed);
    memset(seed, 0x22, sizeof seed);
    crypto_sign_seed_keypair(other_pk, other_sk, seed);
    memset(seed, 0x33, sizeof seed);
    crypto_sign_seed_keypair(dev_sign_pk, dev_sign_sk, seed);
    memset(seed, 0x44, sizeof seed);
    crypto_scalarmult_base(dev_dh_pk, seed);
}

TestSuite(credential, .init = keys);

static const mqe2e_grant default_grants[] = {
    {"sensors/dev-1/#", MQE2E_RIGHT_PUBLISH},
    {"cmd/dev-1", MQE2E_RIGHT_SUBSCRIBE},
    {"fleet/+/status", MQE2E_RIGHT_PUBLISH | MQE2E_RIGHT_SUBSCRIBE},
};

static mqe2e_credential_request default_req(void)
{
    mqe2e_credential_request r;
    memset(&r, 0, sizeof r);
    r.client_id = "dev-1";
    r.role = "device";
    memcpy(r.sign_public, dev_sign_pk, 32);
    memcpy(r.dh_public, dev_dh_pk, 32);
    r.grants = default_grants;
    r.n_grants = sizeof default_grants / sizeof default_grants[0];
    r.issued_at = NOW - 100;
    r.expires_at = NOW + 3000;
    r.serial = 42;
    return r;
}

static uint8_t *issue_default(size_t *len)
{
    mqe2e_credential_request r = default_req();
    uint8_t *out = NULL;
    cr_assert_eq(mqe2e_credential_issue(&out, len, auth_sk, &r), MQE2E_OK);
    return out;
}

/* Sign arbitrary body bytes as a Credential, with the given key. */
static uint8_t *wrap(const uint8_t *body, size_t body_len, const uint8_t sk[64], size_t *len)
{
    size_t dl = strlen(MQE2E_CREDENTIAL_DOMAIN);
    uint8_t *m = malloc(dl + body_len + 1);
    uint8_t sig[64];
    memcpy(m, MQE2E_CREDENTIAL_DOMAIN, dl);
    memcpy(m + dl, body, body_len);
    crypto_sign_detached(sig, NULL, m, dl + body_len, sk);
    free(m);
    Mqe2e__V1__Credential c;
    mqe2e__v1__credential__init(&c);
    c.body.data = (uint8_t *)body;
    c.body.len = body_len;
    c.signature.data = sig;
    c.signature.len = 64;
    *len = mqe2e__v1__credential__get_packed_size(&c);
    uint8_t *out = malloc(*len);
    mqe2e__v1__credential__pack(&c, out);
    return out;
}

/* A body built field by field, for content the issuer itself refuses to sign. */
typedef struct body_spec {
    uint32_t format;
    const char *client_id;
    const char *role;
    const uint8_t *sign_pk;
    const uint8_t *dh_pk;
    const uint8_t *auth_pk;
    size_t auth_len;
    const char *filter;
    uint32_t rights;
    uint64_t issued, expires, serial;
} body_spec;

static body_spec default_spec(void)
{
    body_spec s = {1,  "dev-1", "device", dev_sign_pk, dev_dh_pk, auth_pk,
                   32, "a/#",   1,        NOW - 10,    NOW + 10,  7};
    return s;
}

static uint8_t *craft(const body_spec *s, const uint8_t sk[64], size_t *len)
{
    Mqe2e__V1__CredentialBody b;
    Mqe2e__V1__TopicGrant g;
    Mqe2e__V1__TopicGrant *gp = &g;
    mqe2e__v1__credential_body__init(&b);
    mqe2e__v1__topic_grant__init(&g);
    b.format = s->format;
    b.client_id = (char *)s->client_id;
    b.role = (char *)s->role;
    b.sign_public.data = (uint8_t *)s->sign_pk;
    b.sign_public.len = 32;
    b.dh_public.data = (uint8_t *)s->dh_pk;
    b.dh_public.len = 32;
    b.authority_public.data = (uint8_t *)s->auth_pk;
    b.authority_public.len = s->auth_len;
    g.filter = (char *)s->filter;
    g.rights = s->rights;
    b.grants = &gp;
    b.n_grants = 1;
    b.issued_at = s->issued;
    b.expires_at = s->expires;
    b.serial = s->serial;
    size_t bl = mqe2e__v1__credential_body__get_packed_size(&b);
    uint8_t *body = malloc(bl);
    mqe2e__v1__credential_body__pack(&b, body);
    uint8_t *out = wrap(body, bl, sk, len);
    free(body);
    return out;
}

static int verify_spec(const body_spec *s)
{
    size_t len;
    uint8_t *buf = craft(s, auth_sk, &len);
    mqe2e_credential *c = NULL;
    int rc = mqe2e_credential_verify(&c, buf, len, auth_pk, NOW);
    if (rc == MQE2E_OK)
        cr_assert_not_null(c);
    else
        cr_assert_null(c);
    mqe2e_credential_free(c);
    free(buf);
    return rc;
}

/* ---- wire format ------------------------------------------------------- */

Test(credential, wire_format_matches_hand_encoding)
{
    static const mqe2e_grant g[] = {{"t/#", MQE2E_RIGHT_SUBSCRIBE}};
    mqe2e_credential_request r = default_req();
    r.client_id = "d";
    r.role = "service";
    r.grants = g;
    r.n_grants = 1;
    r.issued_at = 1;
    r.expires_at = 300;
    r.serial = 5;
    uint8_t *out = NULL;
    size_t len = 0;
    cr_assert_eq(mqe2e_credential_issue(&out, &len, auth_sk, &r), MQE2E_OK);

    /* CredentialBody, fields in number order, proto3 defaults omitted. */
    uint8_t body[256];
    size_t n = 0;
    body[n++] = 0x08;
    body[n++] = 0x01; /* format = 1 */
    body[n++] = 0x12;
    body[n++] = 0x01;
    body[n++] = 'd'; /* client_id */
    body[n++] = 0x1a;
    body[n++] = 0x20;
    memcpy(body + n, dev_sign_pk, 32);
    n += 32;
    body[n++] = 0x22;
    body[n++] = 0x20;
    memcpy(body + n, dev_dh_pk, 32);
    n += 32;
    body[n++] = 0x2a;
    body[n++] = 0x07; /* grant */
    body[n++] = 0x0a;
    body[n++] = 0x03;
    memcpy(body + n, "t/#", 3);
    n += 3;
    body[n++] = 0x10;
    body[n++] = 0x02;
    body[n++] = 0x30;
    body[n++] = 0x01; /* issued_at */
    body[n++] = 0x38;
    body[n++] = 0xac;
    body[n++] = 0x02; /* expires_at = 300 */
    body[n++] = 0x42;
    body[n++] = 0x20;
    memcpy(body + n, auth_pk, 32);
    n += 32;
    body[n++] = 0x48;
    body[n++] = 0x05; /* serial */
    body[n++] = 0x52;
    body[n++] = 0x07;
    memcpy(body + n, "service", 7);
    n += 7;

    /* Credential = 0x0a varint(len(body)) body 0x12 0x40 signature */
    cr_assert(n >= 128u && n < 16384u);
    cr_assert_eq(len, 3 + n + 2 + 64);
    cr_assert_eq(out[0], 0x0a);
    cr_assert_eq(out[1], (n & 0x7f) | 0x80);
    cr_assert_eq(out[2], n >> 7);
    cr_assert_eq(memcmp(out + 3, body, n), 0);
    cr_assert_eq(out[3 + n], 0x12);
    cr_assert_eq(out[4 + n], 0x40);

    /* Signature: plain Ed25519 over the domain string then the body. */
    uint8_t msg[300];
    size_t dl = strlen("mqe2e/v1/credential");
    memcpy(msg, "mqe2e/v1/credential", dl);
    memcpy(msg + dl, body, n);
    cr_assert_eq(crypto_sign_verify_detached(out + 5 + n, msg, dl + n, auth_pk), 0);
    /* Without the domain the same signature must not verify. */
    cr_assert_neq(crypto_sign_verify_detached(out + 5 + n, body, n, auth_pk), 0);
    free(out);
}

/* ---- round trip -------------------------------------------------------- */

Test(credential, issue_verify_round_trip)
{
    size_t len;
    uint8_t *buf = issue_default(&len);
    mqe2e_credential *c = NULL;
    cr_assert_eq(mqe2e_credential_verify(&c, buf, len, auth_pk, NOW), MQE2E_OK);
    cr_assert_str_eq(mqe2e_credential_client_id(c), "dev-1");
    cr_assert_str_eq(mqe2e_credential_role(c), "device");
    cr_assert_eq(memcmp(mqe2e_credential_sign_public(c), dev_sign_pk, 32), 0);
    cr_assert_eq(memcmp(mqe2e_credential_dh_public(c), dev_dh_pk, 32), 0);
    cr_assert_eq(memcmp(mqe2e_credential_authority_public(c), auth_pk, 32), 0);
    cr_assert_eq(mqe2e_credential_serial(c), 42);
    cr_assert_eq(mqe2e_credential_issued_at(c), NOW - 100);
    cr_assert_eq(mqe2e_credential_expires_at(c), NOW + 3000);
    cr_assert_eq(mqe2e_credential_grant_count(c), 3);
    cr_assert_str_eq(mqe2e_credential_grant_filter(c, 0), "sensors/dev-1/#");
    cr_assert_eq(mqe2e_credential_grant_rights(c, 0), MQE2E_RIGHT_PUBLISH);
    cr_assert_str_eq(mqe2e_credential_grant_filter(c, 2), "fleet/+/status");
    cr_assert_eq(mqe2e_credential_grant_rights(c, 2), 3);
    cr_assert_null(mqe2e_credential_grant_filter(c, 3));
    cr_assert_eq(mqe2e_credential_grant_rights(c, 3), 0);
    mqe2e_credential_free(c);
    free(buf);
}

Test(credential, no_grants_round_trip)
{
    mqe2e_credential_request r = default_req();
    r.grants = NULL;
    r.n_grants = 0;
    r.role = "operator";
    uint8_t *buf = NULL;
    size_t len;
    cr_assert_eq(mqe2e_credential_issue(&buf, &len, auth_sk, &r), MQE2E_OK);
    mqe2e_credential *c = NULL;
    cr_assert_eq(mqe2e_credential_verify(&c, buf, len, auth_pk, NOW), MQE2E_OK);
    cr_assert_eq(mqe2e_credential_grant_count(c), 0);
    cr_assert_not(mqe2e_credential_allows(c, "a", MQE2E_RIGHT_PUBLISH));
    mqe2e_credential_free(c);
    free(buf);
}

Test(credential, issue_is_deterministic)
{
    size_t l1, l2;
    uint8_t *a = issue_default(&l1);
    uint8_t *b = issue_default(&l2);
    cr_assert_eq(l1, l2);
    cr_assert_eq(memcmp(a, b, l1), 0);
    free(a);
    free(b);
}

/* ---- issuance refuses bad requests ------------------------------------- */

Test(credential, issue_refuses_bad_requests)
{
    uint8_t *out = NULL;
    size_t len = 0;
    mqe2e_credential_request r;
    static const mqe2e_grant bad_filter[] = {{"a/#/b", 1}};
    static const mqe2e_grant bad_rights[] = {{"a", 4}};
    static const mqe2e_grant zero_rights[] = {{"a", 0}};
    static const mqe2e_grant null_filter[] = {{NULL, 1}};

#define REFUSE(mutation)                                                                           \
    do {                                                                                           \
        r = default_req();                                                                         \
        mutation;                                                                                  \
        cr_assert_eq(mqe2e_credential_issue(&out, &len, auth_sk, &r), MQE2E_ERR_INVALID_ARG,       \
                     #mutation);                                                                   \
        cr_assert_null(out);                                                                       \
    } while (0)

    REFUSE(r.client_id = NULL);
    REFUSE(r.client_id = "");
    REFUSE(r.client_id = "a/b");
    REFUSE(r.client_id = "a b");
    REFUSE(r.client_id = "a+");
    REFUSE(r.client_id = "#");
    REFUSE(r.role = "admin");
    REFUSE(r.role = NULL);
    REFUSE(r.serial = 0);
    REFUSE(r.expires_at = r.issued_at);
    REFUSE(r.grants = bad_filter; r.n_grants = 1);
    REFUSE(r.grants = bad_rights; r.n_grants = 1);
    REFUSE(r.grants = zero_rights; r.n_grants = 1);
    REFUSE(r.grants = null_filter; r.n_grants = 1);
    REFUSE(r.grants = NULL; r.n_grants = 1);
    REFUSE(memset(r.sign_public, 0, 32));
    REFUSE(memset(r.dh_public, 0, 32));
    REFUSE(memset(r.dh_public, 0, 32); r.dh_public[0] = 1);
#undef REFUSE

    char long_id[300];
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    r = default_req();
    r.client_id = long_id;
    cr_assert_eq(mqe2e_credential_issue(&out, &len, auth_sk, &r), MQE2E_ERR_INVALID_ARG);
    long_id[255] = '\0';
    cr_assert_eq(mqe2e_credential_issue(&out, &len, auth_sk, &r), MQE2E_OK);
    free(out);
    out = NULL;

    /* A secret whose public half is not its own. */
    uint8_t sk[64];
    memcpy(sk, auth_sk, 64);
    sk[40] ^= 1;
    r = default_req();
    cr_assert_eq(mqe2e_credential_issue(&out, &len, sk, &r), MQE2E_ERR_INVALID_ARG);
    cr_assert_null(out);

    cr_assert_eq(mqe2e_credential_issue(NULL, &len, auth_sk, &r), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_credential_issue(&out, NULL, auth_sk, &r), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_credential_issue(&out, &len, NULL, &r), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_credential_issue(&out, &len, auth_sk, NULL), MQE2E_ERR_INVALID_ARG);
}

Test(credential, issue_refuses_oversized)
{
    static mqe2e_grant many[200];
    char filter[100];
    memset(filter, 'f', sizeof filter - 1);
    filter[sizeof filter - 1] = '\0';
    for (size_t i = 0; i < 200; i++) {
        many[i].filter = filter;
        many[i].rights = 1;
    }
    mqe2e_credential_request r = default_req();
    r.grants = many;
    r.n_grants = 200;
    uint8_t *out = NULL;
    size_t len;
    cr_assert_eq(mqe2e_credential_issue(&out, &len, auth_sk, &r), MQE2E_ERR_TOO_LARGE);
    cr_assert_null(out);
    r.n_grants = 100;
    cr_assert_eq(mqe2e_credential_issue(&out, &len, auth_sk, &r), MQE2E_OK);
    mqe2e_credential *c = NULL;
    cr_assert_eq(mqe2e_credential_verify(&c, out, len, auth_pk, NOW), MQE2E_OK);
    cr_assert_eq(mqe2e_credential_grant_count(c), 100);
    mqe2e_credential_free(c);
    free(out);
}

/* ---- authentication ---------------------------------------------------- */

Test(credential, other_authority_key_is_auth)
{
    size_t len;
    uint8_t *buf = issue_default(&len);
    mqe2e_credential *c = (mqe2e_credential *)1;
    cr_assert_eq(mqe2e_credential_verify(&c, buf, len, other_pk, NOW), MQE2E_ERR_AUTH);
    cr_assert_null(c);
    free(buf);
}

Test(credential, signed_by_other_key_is_auth)
{
    mqe2e_credential_request r = default_req();
    uint8_t *buf = NULL;
    size_t len;
    cr_assert_eq(mqe2e_credential_issue(&buf, &len, other_sk, &r), MQE2E_OK);
    mqe2e_credential *c = NULL;
    cr_assert_eq(mqe2e_credential_verify(&c, buf, len, auth_pk, NOW), MQE2E_ERR_AUTH);
    cr_assert_eq(mqe2e_credential_verify(&c, buf, len, other_pk, NOW), MQE2E_OK);
    mqe2e_credential_free(c);
    free(buf);
}

Test(credential, authority_field_mismatch_is_auth)
{
    /* Validly signed by the pinned key, but naming another authority. */
    body_spec s = default_spec();
    s.auth_pk = other_pk;
    cr_assert_eq(verify_spec(&s), MQE2E_ERR_AUTH);
    /* Field missing altogether. */
    s.auth_len = 0;
    cr_assert_eq(verify_spec(&s), MQE2E_ERR_AUTH);
    /* Signed by the other key and naming it, checked against the pinned key. */
    s = default_spec();
    s.auth_pk = other_pk;
    size_t len;
    uint8_t *buf = craft(&s, other_sk, &len);
    mqe2e_credential *c = NULL;
    cr_assert_eq(mqe2e_credential_verify(&c, buf, len, auth_pk, NOW), MQE2E_ERR_AUTH);
    free(buf);
    /* The baseline crafted body is accepted, so the cases above test one thing. */
    s = default_spec();
    cr_assert_eq(verify_spec(&s), MQE2E_OK);
}

Test(credential, signature_domain_is_bound)
{
    /* A body signed under the revocation-list domain is not a credential. */
    size_t len;
    uint8_t *good = issue_default(&len);
    Mqe2e__V1__Credential *c = mqe2e__v1__credential__unpack(NULL, len, good);
    cr_assert_not_null(c);
    size_t dl = strlen(MQE2E_REVOCATION_DOMAIN);
    uint8_t *m = malloc(dl + c->body.len);
    memcpy(m, MQE2E_REVOCATION_DOMAIN, dl);
    memcpy(m + dl, c->body.data, c->body.len);
    crypto_sign_detached(c->signature.data, NULL, m, dl + c->body.len, auth_sk);
    free(m);
    size_t l2 = mqe2e__v1__credential__get_packed_size(c);
    uint8_t *bad = malloc(l2);
    mqe2e__v1__credential__pack(c, bad);
    mqe2e_credential *h = NULL;
    cr_assert_eq(mqe2e_credential_verify(&h, bad, l2, auth_pk, NOW), MQE2E_ERR_AUTH);
    mqe2e__v1__credential__free_unpacked(c, NULL);
    free(bad);
    free(good);
}

Test(credential, every_byte_flipped_is_refused)
{
    size_t len;
    uint8_t *buf = issue_default(&len);
    for (size_t i = 0; i < len; i++) {
        for (unsigned bit = 0; bit < 8; bit++) {
            buf[i] ^= (uint8_t)(1u << bit);
            mqe2e_credential *c = NULL;
            int rc = mqe2e_credential_verify(&c, buf, len, auth_pk, NOW);
            cr_assert(rc == MQE2E_ERR_AUTH || rc == MQE2E_ERR_DECODE || rc == MQE2E_ERR_SUITE,
                      "byte %zu bit %u: rc %d", i, bit, rc);
            cr_assert_null(c);
            buf[i] ^= (uint8_t)(1u << bit);
        }
    }
    mqe2e_credential *c = NULL;
    cr_assert_eq(mqe2e_credential_verify(&c, buf, len, auth_pk, NOW), MQE2E_OK);
    mqe2e_credential_free(c);
    free(buf);
}

Test(credential, truncated_and_extended_are_refused)
{
    size_t len;
    uint8_t *buf = issue_default(&len);
    for (size_t n = 0; n < len; n++) {
        mqe2e_credential *c = NULL;
        int rc = mqe2e_credential_verify(&c, buf, n, auth_pk, NOW);
        cr_assert(rc == MQE2E_ERR_DECODE || rc == MQE2E_ERR_AUTH, "len %zu rc %d", n, rc);
        cr_assert_null(c);
    }
    /* Appended bytes: an unknown field, a duplicate field, a stray byte. */
    static const uint8_t tails[][3] = {{0x18, 0x01, 0}, {0x12, 0x00, 0}, {0x00, 0, 0}};
    static const size_t tail_len[] = {2, 2, 1};
    uint8_t *ext = malloc(len + 3);
    memcpy(ext, buf, len);
    for (size_t t = 0; t < 3; t++) {
        memcpy(ext + len, tails[t], tail_len[t]);
        mqe2e_credential *c = NULL;
        cr_assert_eq(mqe2e_credential_verify(&c, ext, len + tail_len[t], auth_pk, NOW),
                     MQE2E_ERR_DECODE, "tail %zu", t);
        cr_assert_null(c);
    }
    free(ext);
    free(buf);
}

Test(credential, oversized_is_too_large)
{
    size_t n = MQE2E_CREDENTIAL_MAX_BYTES + 1;
    uint8_t *buf = calloc(1, n);
    mqe2e_credential *c = NULL;
    cr_assert_eq(mqe2e_credential_verify(&c, buf, n, auth_pk, NOW), MQE2E_ERR_TOO_LARGE);
    cr_assert_null(c);
    free(buf);
}

Test(credential, garbage_never_crashes)
{
    uint8_t buf[512];
    uint32_t seed = 12345;
    for (int round = 0; round < 3000; round++) {
        size_t n = (size_t)(round % (int)sizeof buf);
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            buf[i] = (uint8_t)(seed >> 16);
        }
        /* Bias some inputs toward a plausible outer shape. */
        if (round % 2 == 0 && n > 4) {
            buf[0] = 0x0a;
            buf[1] = (uint8_t)((n - 2) & 0x7f);
        }
        mqe2e_credential *c = NULL;
        int rc = mqe2e_credential_verify(&c, buf, n, auth_pk, NOW);
        cr_assert_neq(rc, MQE2E_OK);
        cr_assert_null(c);
    }
    mqe2e_credential *c = NULL;
    cr_assert_eq(mqe2e_credential_verify(&c, NULL, 0, auth_pk, NOW), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_credential_verify(&c, buf, 0, NULL, NOW), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_credential_verify(NULL, buf, 0, auth_pk, NOW), MQE2E_ERR_INVALID_ARG);
}

/* ---- content checks after authentication -------------------------------- */

Test(credential, signed_but_invalid_content)
{
    static const uint8_t zero[32];
    body_spec s;

    s = default_spec();
    s.format = 2;
    cr_assert_eq(verify_spec(&s), MQE2E_ERR_SUITE);
    s = default_spec();
    s.format = 0;
    cr_assert_eq(verify_spec(&s), MQE2E_ERR_SUITE);
    s = default_spec();
    s.role = "root";
    cr_assert_eq(verify_spec(&s), MQE2E_ERR_DECODE);
    s = default_spec();
    s.client_id = "";
    cr_assert_eq(verify_spec(&s), MQE2E_ERR_DECODE);
    s = default_spec();
    s.client_id = "a/b";
    cr_assert_eq(verify_spec(&s), MQE2E_ERR_DECODE);
    s = default_spec();
    s.client_id = "caf\xc3\xa9";
    cr_assert_eq(verify_spec(&s), MQE2E_ERR_DECODE);
    s = default_spec();
    s.filter = "a/#/b";
    cr_assert_eq(verify_spec(&s), MQE2E_ERR_DECODE);
    s = default_spec();
    s.filter = "";
    cr_assert_eq(verify_spec(&s), MQE2E_ERR_DECODE);
    s = default_spec();
    s.rights = 0;
    cr_assert_eq(verify_spec(&s), MQE2E_ERR_DECODE);
    s = default_spec();
    s.rights = 4;
    cr_assert_eq(verify_spec(&s), MQE2E_ERR_DECODE);
    s = default_spec();
    s.serial = 0;
    cr_assert_eq(verify_spec(&s), MQE2E_ERR_DECODE);
    s = default_spec();
    s.expires = s.issued;
    cr_assert_eq(verify_spec(&s), MQE2E_ERR_DECODE);
    s = default_spec();
    s.sign_pk = zero;
    cr_assert_eq(verify_spec(&s), MQE2E_ERR_DECODE);
    s = default_spec();
    s.dh_pk = zero;
    cr_assert_eq(verify_spec(&s), MQE2E_ERR_DECODE);
    s = default_spec();
    cr_assert_eq(verify_spec(&s), MQE2E_OK);
}

Test(credential, signed_body_with_unknown_field_or_garbage)
{
    size_t len;
    uint8_t *good = issue_default(&len);
    Mqe2e__V1__Credential *c = mqe2e__v1__credential__unpack(NULL, len, good);
    cr_assert_not_null(c);
    /* Signed body + unknown field 15 (varint 1). */
    uint8_t *body = malloc(c->body.len + 2);
    memcpy(body, c->body.data, c->body.len);
    body[c->body.len] = 0x78;
    body[c->body.len + 1] = 0x01;
    size_t l2;
    uint8_t *bad = wrap(body, c->body.len + 2, auth_sk, &l2);
    mqe2e_credential *h = NULL;
    cr_assert_eq(mqe2e_credential_verify(&h, bad, l2, auth_pk, NOW), MQE2E_ERR_DECODE);
    free(bad);
    /* Signed garbage body. */
    static const uint8_t junk[] = {0xff, 0xff, 0xff};
    bad = wrap(junk, sizeof junk, auth_sk, &l2);
    cr_assert_eq(mqe2e_credential_verify(&h, bad, l2, auth_pk, NOW), MQE2E_ERR_DECODE);
    free(bad);
    /* Signed empty body: format 0 and no authority key. */
    bad = wrap(junk, 0, auth_sk, &l2);
    cr_assert_eq(mqe2e_credential_verify(&h, bad, l2, auth_pk, NOW), MQE2E_ERR_AUTH);
    free(bad);
    cr_assert_null(h);
    free(body);
    mqe2e__v1__credential__free_unpacked(c, NULL);
    free(good);
}

/* ---- time window -------------------------------------------------------- */

Test(credential, expired_and_not_yet_valid)
{
    size_t len;
    uint8_t *buf = issue_default(&len); /* valid [NOW-100, NOW+3000) */
    mqe2e_credential *c = NULL;
    cr_assert_eq(mqe2e_credential_verify(&c, buf, len, auth_pk, NOW + 3000), MQE2E_ERR_EXPIRED);
    cr_assert_null(c);
    cr_assert_eq(mqe2e_credential_verify(&c, buf, len, auth_pk, NOW + 2999), MQE2E_OK);
    mqe2e_credential_free(c);
    /* Issued 100 s before NOW: accepted down to NOW-100-300, refused below. */
    cr_assert_eq(mqe2e_credential_verify(&c, buf, len, auth_pk, NOW - 400), MQE2E_OK);
    cr_assert_eq(mqe2e_credential_check_time(c, NOW - 401), MQE2E_ERR_EXPIRED);
    cr_assert_eq(mqe2e_credential_check_time(c, NOW), MQE2E_OK);
    cr_assert_eq(mqe2e_credential_check_time(c, NOW + 3000), MQE2E_ERR_EXPIRED);
    mqe2e_credential_free(c);
    c = NULL;
    cr_assert_eq(mqe2e_credential_verify(&c, buf, len, auth_pk, NOW - 401), MQE2E_ERR_EXPIRED);
    cr_assert_null(c);
    cr_assert_eq(mqe2e_credential_verify(&c, buf, len, auth_pk, 0), MQE2E_ERR_EXPIRED);
    cr_assert_eq(mqe2e_credential_verify(&c, buf, len, auth_pk, UINT64_MAX), MQE2E_ERR_EXPIRED);
    cr_assert_eq(mqe2e_credential_check_time(NULL, NOW), MQE2E_ERR_INVALID_ARG);
    free(buf);
}

Test(credential, extreme_times)
{
    body_spec s = default_spec();
    s.issued = 0;
    s.expires = UINT64_MAX;
    cr_assert_eq(verify_spec(&s), MQE2E_OK);
    s.issued = UINT64_MAX - 1;
    cr_assert_eq(verify_spec(&s), MQE2E_ERR_EXPIRED);
}

/* ---- grants ------------------------------------------------------------- */

Test(credential, allows_table)
{
    size_t len;
    uint8_t *buf = issue_default(&len);
    mqe2e_credential *c = NULL;
    cr_assert_eq(mqe2e_credential_verify(&c, buf, len, auth_pk, NOW), MQE2E_OK);
    const unsigned P = MQE2E_RIGHT_PUBLISH, S = MQE2E_RIGHT_SUBSCRIBE;
    static const struct {
        const char *topic;
        unsigned rights;
        bool expect;
    } t[] = {
        {"sensors/dev-1", 1, true}, /* '#' matches the parent level */
        {"sensors/dev-1/hr", 1, true},  {"sensors/dev-1/a/b/c", 1, true},
        {"sensors/dev-1/hr", 2, false}, {"sensors/dev-1/hr", 3, false},
        {"sensors/dev-2/hr", 1, false}, {"sensors", 1, false},
        {"cmd/dev-1", 2, true},         {"cmd/dev-1", 1, false},
        {"cmd/dev-1/x", 2, false},      {"fleet/x/status", 3, true},
        {"fleet/x/status", 1, true},    {"fleet/x/y/status", 1, false},
        {"fleet//status", 2, true},     {"sensors/+/hr", 1, false}, /* not a topic name */
        {"sensors/dev-1/#", 1, false},  {"", 1, false},
        {"sensors/dev-1/hr", 0, false}, {"sensors/dev-1/hr", 5, false},
    };
    (void)P;
    (void)S;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        cr_assert_eq(mqe2e_credential_allows(c, t[i].topic, t[i].rights), t[i].expect,
                     "%s rights %u", t[i].topic, t[i].rights);
    cr_assert_not(mqe2e_credential_allows(NULL, "cmd/dev-1", 2));
    cr_assert_not(mqe2e_credential_allows(c, NULL, 2));
    mqe2e_credential_free(c);
    free(buf);
}

Test(credential, rights_combine_across_grants)
{
    static const mqe2e_grant g[] = {{"a/+", MQE2E_RIGHT_PUBLISH}, {"a/b", MQE2E_RIGHT_SUBSCRIBE}};
    mqe2e_credential_request r = default_req();
    r.grants = g;
    r.n_grants = 2;
    uint8_t *buf = NULL;
    size_t len;
    cr_assert_eq(mqe2e_credential_issue(&buf, &len, auth_sk, &r), MQE2E_OK);
    mqe2e_credential *c = NULL;
    cr_assert_eq(mqe2e_credential_verify(&c, buf, len, auth_pk, NOW), MQE2E_OK);
    cr_assert(mqe2e_credential_allows(c, "a/b", 3));
    cr_assert_not(mqe2e_credential_allows(c, "a/c", 3));
    cr_assert(mqe2e_credential_filter_allowed(c, "a/b", 3));
    cr_assert_not(mqe2e_credential_filter_allowed(c, "a/+", 3));
    cr_assert(mqe2e_credential_filter_allowed(c, "a/+", 1));
    mqe2e_credential_free(c);
    free(buf);
}

Test(credential, filter_allowed_table)
{
    static const mqe2e_grant g[] = {
        {"a/#", 2}, {"b/+/c", 2}, {"d", 2}, {"e/+/#", 2}, {"#", 1}, {"+/x", 2},
    };
    mqe2e_credential_request r = default_req();
    r.grants = g;
    r.n_grants = sizeof g / sizeof g[0];
    uint8_t *buf = NULL;
    size_t len;
    cr_assert_eq(mqe2e_credential_issue(&buf, &len, auth_sk, &r), MQE2E_OK);
    mqe2e_credential *c = NULL;
    cr_assert_eq(mqe2e_credential_verify(&c, buf, len, auth_pk, NOW), MQE2E_OK);
    static const struct {
        const char *filter;
        bool expect;
    } t[] = {
        {"a/#", true},     {"a", true},       {"a/b", true},    {"a/+", true},
        {"a/+/c/#", true}, {"a/b/#", true},   {"#", false},     {"+", false},
        {"+/b", false},    {"ab", false},     {"a/", true},     {"b/x/c", true},
        {"b/+/c", true},   {"b/#", false},    {"b/x/#", false}, {"b/x/c/d", false},
        {"b/y", false},    {"b/+/+", false},  {"b/x/+", false}, {"d", true},
        {"d/#", false},    {"d/e", false},    {"+", false},     {"e/x", true},
        {"e/+", true},     {"e/x/y/z", true}, {"e/#", false},   {"e", false},
        {"e/+/+/#", true}, {"q/x", true},     {"+/x", true},    {"#/x", false},
        {"$SYS/x", false}, {"a/#/b", false},  {"", false},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        cr_assert_eq(mqe2e_credential_filter_allowed(c, t[i].filter, MQE2E_RIGHT_SUBSCRIBE),
                     t[i].expect, "%s", t[i].filter);
    /* '#' grants publish on everything, but never '$' topics through a wildcard. */
    cr_assert(mqe2e_credential_filter_allowed(c, "x/y/#", MQE2E_RIGHT_PUBLISH));
    cr_assert(mqe2e_credential_filter_allowed(c, "#", MQE2E_RIGHT_PUBLISH));
    cr_assert_not(mqe2e_credential_filter_allowed(c, "$SYS/#", MQE2E_RIGHT_PUBLISH));
    cr_assert_not(mqe2e_credential_filter_allowed(c, "a/b", 0));
    cr_assert_not(mqe2e_credential_filter_allowed(c, "a/b", 8));
    cr_assert_not(mqe2e_credential_filter_allowed(NULL, "a/b", 2));
    cr_assert_not(mqe2e_credential_filter_allowed(c, NULL, 2));
    mqe2e_credential_free(c);
    free(buf);
}

/* ---- renewal ------------------------------------------------------------ */

Test(credential, renewal_threshold)
{
    mqe2e_credential_request r = default_req();
    r.issued_at = 1000;
    r.expires_at = 1000 + 3000;
    uint8_t *buf = NULL;
    size_t len;
    cr_assert_eq(mqe2e_credential_issue(&buf, &len, auth_sk, &r), MQE2E_OK);
    mqe2e_credential *c = NULL;
    cr_assert_eq(mqe2e_credential_verify(&c, buf, len, auth_pk, 1500), MQE2E_OK);
    const unsigned N = MQE2E_CREDENTIAL_RENEW_NUM, D = MQE2E_CREDENTIAL_RENEW_DEN;
    cr_assert_not(mqe2e_credential_needs_renewal(c, 1000, N, D));
    cr_assert_not(mqe2e_credential_needs_renewal(c, 2999, N, D));
    cr_assert(mqe2e_credential_needs_renewal(c, 3000, N, D));
    cr_assert(mqe2e_credential_needs_renewal(c, 5000, N, D));
    cr_assert_not(mqe2e_credential_needs_renewal(c, 500, N, D));
    cr_assert(mqe2e_credential_needs_renewal(c, 1000, 0, 1));
    cr_assert_not(mqe2e_credential_needs_renewal(c, 3999, 1, 1));
    cr_assert(mqe2e_credential_needs_renewal(c, 4000, 1, 1));
    cr_assert_not(mqe2e_credential_needs_renewal(c, 3000, 2, 0));
    cr_assert_not(mqe2e_credential_needs_renewal(c, 3000, 4, 3));
    cr_assert_not(mqe2e_credential_needs_renewal(NULL, 3000, N, D));
    mqe2e_credential_free(c);
    free(buf);

    /* Lifetimes near 2^64 must not overflow. */
    body_spec s = default_spec();
    s.issued = 0;
    s.expires = UINT64_MAX;
    size_t l2;
    uint8_t *b2 = craft(&s, auth_sk, &l2);
    cr_assert_eq(mqe2e_credential_verify(&c, b2, l2, auth_pk, NOW), MQE2E_OK);
    cr_assert_not(mqe2e_credential_needs_renewal(c, UINT64_MAX / 3 * 2 - 1, 2, 3));
    cr_assert(mqe2e_credential_needs_renewal(c, UINT64_MAX / 3 * 2, 2, 3));
    mqe2e_credential_free(c);
    free(b2);
}

Test(credential, client_id_rules)
{
    cr_assert(mqe2e_client_id_valid("dev-1"));
    cr_assert(mqe2e_client_id_valid("A.b_c~!$"));
    cr_assert_not(mqe2e_client_id_valid(""));
    cr_assert_not(mqe2e_client_id_valid(NULL));
    cr_assert_not(mqe2e_client_id_valid("a b"));
    cr_assert_not(mqe2e_client_id_valid("a\tb"));
    cr_assert_not(mqe2e_client_id_valid("a/b"));
    cr_assert_not(mqe2e_client_id_valid("a+"));
    cr_assert_not(mqe2e_client_id_valid("a#"));
    cr_assert_not(mqe2e_client_id_valid("\x7f"));
    cr_assert_not(mqe2e_client_id_valid("\xc3\xa9"));
}
