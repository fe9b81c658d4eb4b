/* Authority pins, OPERATOR frames (kind 5) and the signing-callback variants
 * of credential issue / revocation list signing. */
#include <criterion/criterion.h>
#include <sodium.h>
#include <string.h>

#include "mqe2e/credential.h"
#include "mqe2e/error.h"
#include "mqe2e/operator.h"

static uint8_t auth_sign_pk[32], auth_sign_sk[64], auth_dh_pk[32], auth_dh_sk[32];
static uint8_t op_sign_pk[32], op_sign_sk[64], op_dh_pk[32], op_dh_sk[32];
static mqe2e_authority_pin pin;

static void setup(void)
{
    cr_assert_geq(sodium_init(), 0);
    crypto_sign_keypair(auth_sign_pk, auth_sign_sk);
    crypto_box_keypair(auth_dh_pk, auth_dh_sk);
    crypto_sign_keypair(op_sign_pk, op_sign_sk);
    crypto_box_keypair(op_dh_pk, op_dh_sk);
    memset(&pin, 0, sizeof pin);
    memcpy(pin.sign_public, auth_sign_pk, 32);
    memcpy(pin.dh_public, auth_dh_pk, 32);
    strcpy(pin.authority_id, "auth");
    strcpy(pin.control_prefix, "site/mqe2e");
}

TestSuite(operator, .init = setup);

static int sign_with(void *ctx, uint8_t sig[64], const uint8_t *msg, size_t len)
{
    return crypto_sign_detached(sig, NULL, msg, len, (const uint8_t *)ctx);
}

/* ------------------------------------------------------------------ pin */

Test(operator, pin_round_trip)
{
    char *text = NULL;
    mqe2e_authority_pin back;
    cr_assert_eq(mqe2e_authority_pin_encode(&text, &pin), MQE2E_OK);
    cr_assert_eq(strncmp(text, MQE2E_AUTHORITY_PIN_PREFIX, strlen(MQE2E_AUTHORITY_PIN_PREFIX)), 0);
    cr_assert_eq(mqe2e_authority_pin_decode(&back, text), MQE2E_OK);
    cr_assert_eq(memcmp(back.sign_public, pin.sign_public, 32), 0);
    cr_assert_eq(memcmp(back.dh_public, pin.dh_public, 32), 0);
    cr_assert_str_eq(back.authority_id, "auth");
    cr_assert_str_eq(back.control_prefix, "site/mqe2e");
    free(text);
}

Test(operator, pin_refuses_tampering)
{
    char *text = NULL;
    mqe2e_authority_pin back;
    cr_assert_eq(mqe2e_authority_pin_encode(&text, &pin), MQE2E_OK);
    size_t n = strlen(text);
    /* Every single-character change is refused or decodes to other facts. */
    for (size_t i = 0; i < n; i++) {
        char saved = text[i];
        text[i] = saved == 'A' ? 'B' : 'A';
        int rc = mqe2e_authority_pin_decode(&back, text);
        if (rc == MQE2E_OK)
            cr_assert(memcmp(back.sign_public, pin.sign_public, 32) != 0 ||
                      memcmp(back.dh_public, pin.dh_public, 32) != 0 ||
                      strcmp(back.authority_id, pin.authority_id) != 0 ||
                      strcmp(back.control_prefix, pin.control_prefix) != 0);
        else
            cr_assert_eq(back.authority_id[0], '\0', "zeroed on failure");
        text[i] = saved;
    }
    /* Truncation, padding, wrong prefix, garbage. */
    text[n - 1] = '\0';
    cr_assert_neq(mqe2e_authority_pin_decode(&back, text), MQE2E_OK);
    cr_assert_eq(mqe2e_authority_pin_decode(&back, "mqe2e1-AAAA"), MQE2E_ERR_DECODE);
    cr_assert_eq(mqe2e_authority_pin_decode(&back, "mqe2e-authority1-"), MQE2E_ERR_DECODE);
    cr_assert_eq(mqe2e_authority_pin_decode(&back, "mqe2e-authority1-AA=="), MQE2E_ERR_DECODE);
    cr_assert_eq(mqe2e_authority_pin_decode(NULL, "x"), MQE2E_ERR_INVALID_ARG);
    free(text);
    /* Invalid facts are never encoded. */
    mqe2e_authority_pin bad = pin;
    strcpy(bad.authority_id, "a/b");
    cr_assert_eq(mqe2e_authority_pin_encode(&text, &bad), MQE2E_ERR_INVALID_ARG);
    bad = pin;
    strcpy(bad.control_prefix, "p/#");
    cr_assert_eq(mqe2e_authority_pin_encode(&text, &bad), MQE2E_ERR_INVALID_ARG);
    bad = pin;
    memset(bad.dh_public, 0, 32);
    cr_assert_eq(mqe2e_authority_pin_encode(&text, &bad), MQE2E_ERR_INVALID_ARG);
}

/* ------------------------------------------------------------- requests */

static char *args3[] = {"id=dev-1", "grant=a/#:pub", "group=g"};

static void make_request(mqe2e_operator_request *req, uint64_t at)
{
    memset(req, 0, sizeof *req);
    strcpy(req->operator_name, "alice");
    strcpy(req->command, "token-create");
    randombytes_buf(req->nonce, sizeof req->nonce);
    req->issued_at = at;
    req->args = args3;
    req->n_args = 3;
}

static size_t begin(mqe2e_operator_client **st, uint8_t *frame, const mqe2e_operator_request *req,
                    mqe2e_sign_fn fn, void *ctx)
{
    size_t len = 0;
    cr_assert_eq(mqe2e_operator_begin(st, frame, MQE2E_CONTROL_MAX_FRAME_BYTES, &len, &pin,
                                      "op-client", op_dh_sk, req, fn, ctx),
                 MQE2E_OK);
    return len;
}

Test(operator, round_trip)
{
    static uint8_t f1[MQE2E_CONTROL_MAX_FRAME_BYTES], f2[MQE2E_CONTROL_MAX_FRAME_BYTES];
    mqe2e_operator_client *cl = NULL;
    mqe2e_operator_authority *au = NULL;
    mqe2e_operator_request req, got;
    mqe2e_operator_reply reply, back;
    size_t l2 = 0;

    make_request(&req, 1000);
    size_t l1 = begin(&cl, f1, &req, sign_with, op_sign_sk);
    cr_assert_eq(mqe2e_operator_accept_read(&au, &got, auth_dh_sk, "site/mqe2e", f1, l1), MQE2E_OK);
    cr_assert_str_eq(got.operator_name, "alice");
    cr_assert_str_eq(got.command, "token-create");
    cr_assert_eq(got.n_args, 3);
    cr_assert_str_eq(got.args[1], "grant=a/#:pub");
    cr_assert_eq(memcmp(got.nonce, req.nonce, 16), 0);
    cr_assert_str_eq(mqe2e_operator_accept_from(au), "op-client");
    /* No reply before the signature verified. */
    memset(&reply, 0, sizeof reply);
    reply.message = "ok";
    reply.output = "mqe2e1-secret\n";
    cr_assert_eq(mqe2e_operator_accept_write(au, f2, sizeof f2, &l2, "auth", &reply),
                 MQE2E_ERR_STATE);
    cr_assert_eq(mqe2e_operator_accept_verify(au, op_sign_pk, 1000 + MQE2E_OPERATOR_MAX_SKEW),
                 MQE2E_OK);
    cr_assert_eq(mqe2e_operator_accept_verify(au, op_sign_pk, 1000), MQE2E_ERR_STATE);
    cr_assert_eq(mqe2e_operator_accept_write(au, f2, sizeof f2, &l2, "auth", &reply), MQE2E_OK);
    cr_assert_eq(mqe2e_operator_accept_write(au, f2, sizeof f2, &l2, "auth", &reply),
                 MQE2E_ERR_STATE);
    cr_assert_eq(mqe2e_operator_finish(cl, &back, f2, l2), MQE2E_OK);
    cr_assert_eq(back.status, 0);
    cr_assert_str_eq(back.output, "mqe2e1-secret\n");
    cr_assert_str_eq(back.message, "ok");
    /* Finished: the same reply again is refused. */
    mqe2e_operator_reply again;
    cr_assert_eq(mqe2e_operator_finish(cl, &again, f2, l2), MQE2E_ERR_STATE);
    mqe2e_operator_reply_clear(&back);
    mqe2e_operator_request_clear(&got);
    mqe2e_operator_authority_free(au);
    mqe2e_operator_client_free(cl);
}

Test(operator, refuses_bad_signature_and_stale_time)
{
    static uint8_t f1[MQE2E_CONTROL_MAX_FRAME_BYTES];
    mqe2e_operator_client *cl = NULL;
    mqe2e_operator_authority *au = NULL;
    mqe2e_operator_request req, got;
    uint8_t other_pk[32], other_sk[64];
    crypto_sign_keypair(other_pk, other_sk);

    make_request(&req, 5000);
    size_t l1 = begin(&cl, f1, &req, sign_with, other_sk);
    cr_assert_eq(mqe2e_operator_accept_read(&au, &got, auth_dh_sk, "site/mqe2e", f1, l1), MQE2E_OK);
    cr_assert_eq(mqe2e_operator_accept_verify(au, op_sign_pk, 5000), MQE2E_ERR_AUTH);
    mqe2e_operator_request_clear(&got);
    mqe2e_operator_authority_free(au);
    mqe2e_operator_client_free(cl);

    make_request(&req, 5000);
    l1 = begin(&cl, f1, &req, sign_with, op_sign_sk);
    cr_assert_eq(mqe2e_operator_accept_read(&au, &got, auth_dh_sk, "site/mqe2e", f1, l1), MQE2E_OK);
    cr_assert_eq(mqe2e_operator_accept_verify(au, op_sign_pk, 5000 + MQE2E_OPERATOR_MAX_SKEW + 1),
                 MQE2E_ERR_EXPIRED);
    mqe2e_operator_request_clear(&got);
    mqe2e_operator_authority_free(au);
    cr_assert_eq(mqe2e_operator_accept_read(&au, &got, auth_dh_sk, "site/mqe2e", f1, l1), MQE2E_OK);
    cr_assert_eq(mqe2e_operator_accept_verify(au, op_sign_pk, 5000 - MQE2E_OPERATOR_MAX_SKEW - 1),
                 MQE2E_ERR_EXPIRED);
    mqe2e_operator_request_clear(&got);
    mqe2e_operator_authority_free(au);
    mqe2e_operator_client_free(cl);
}

Test(operator, refuses_other_prefix_key_and_tampering)
{
    static uint8_t f1[MQE2E_CONTROL_MAX_FRAME_BYTES];
    mqe2e_operator_client *cl = NULL;
    mqe2e_operator_authority *au = NULL;
    mqe2e_operator_request req, got;
    uint8_t wrong_dh_pk[32], wrong_dh_sk[32];
    crypto_box_keypair(wrong_dh_pk, wrong_dh_sk);

    make_request(&req, 1);
    size_t l1 = begin(&cl, f1, &req, sign_with, op_sign_sk);
    /* Another prefix (prologue) or another authority key: the handshake fails. */
    cr_assert_eq(mqe2e_operator_accept_read(&au, &got, auth_dh_sk, "other", f1, l1),
                 MQE2E_ERR_AUTH);
    cr_assert_null(au);
    cr_assert_eq(mqe2e_operator_accept_read(&au, &got, wrong_dh_sk, "site/mqe2e", f1, l1),
                 MQE2E_ERR_AUTH);
    /* Every flipped byte is refused. */
    for (size_t i = 0; i < l1; i++) {
        f1[i] ^= 0x01;
        int rc = mqe2e_operator_accept_read(&au, &got, auth_dh_sk, "site/mqe2e", f1, l1);
        if (rc == MQE2E_OK) {
            /* Only the routing claim "from" is outside the handshake: a changed
             * one sends the (still sealed) reply elsewhere, nothing more. */
            cr_assert_str_neq(mqe2e_operator_accept_from(au), "op-client", "byte %zu", i);
            mqe2e_operator_request_clear(&got);
            mqe2e_operator_authority_free(au);
            au = NULL;
        }
        cr_assert_null(au);
        f1[i] ^= 0x01;
    }
    /* Truncated, empty, oversized. */
    for (size_t n = 0; n < l1; n += 7)
        cr_assert_neq(mqe2e_operator_accept_read(&au, &got, auth_dh_sk, "site/mqe2e", f1, n),
                      MQE2E_OK);
    cr_assert_eq(mqe2e_operator_accept_read(&au, &got, auth_dh_sk, "site/mqe2e", f1,
                                            MQE2E_CONTROL_MAX_FRAME_BYTES + 1),
                 MQE2E_ERR_TOO_LARGE);
    mqe2e_operator_client_free(cl);
}

Test(operator, client_ignores_other_sessions_and_checks_sender)
{
    static uint8_t f1[MQE2E_CONTROL_MAX_FRAME_BYTES], g1[MQE2E_CONTROL_MAX_FRAME_BYTES];
    static uint8_t f2[MQE2E_CONTROL_MAX_FRAME_BYTES];
    mqe2e_operator_client *c1 = NULL, *c2 = NULL;
    mqe2e_operator_authority *au = NULL;
    mqe2e_operator_request req, got;
    mqe2e_operator_reply reply, back;
    size_t l2 = 0;
    make_request(&req, 1);
    size_t l1 = begin(&c1, f1, &req, sign_with, op_sign_sk);
    make_request(&req, 1);
    (void)begin(&c2, g1, &req, sign_with, op_sign_sk);
    cr_assert_eq(mqe2e_operator_accept_read(&au, &got, auth_dh_sk, "site/mqe2e", f1, l1), MQE2E_OK);
    cr_assert_eq(mqe2e_operator_accept_verify(au, op_sign_pk, 1), MQE2E_OK);
    memset(&reply, 0, sizeof reply);
    cr_assert_eq(mqe2e_operator_accept_write(au, f2, sizeof f2, &l2, "auth", &reply), MQE2E_OK);
    /* The reply to c1's session means nothing to c2, which stays usable. */
    cr_assert_eq(mqe2e_operator_finish(c2, &back, f2, l2), MQE2E_ERR_STATE);
    cr_assert_eq(mqe2e_operator_finish(c1, &back, f2, l2), MQE2E_OK);
    cr_assert_str_eq(back.output, "");
    mqe2e_operator_reply_clear(&back);
    mqe2e_operator_request_clear(&got);
    mqe2e_operator_authority_free(au);
    /* A reply claiming another sender is not for us. */
    cr_assert_eq(mqe2e_operator_accept_read(&au, &got, auth_dh_sk, "site/mqe2e", g1, l1), MQE2E_OK);
    cr_assert_eq(mqe2e_operator_accept_verify(au, op_sign_pk, 1), MQE2E_OK);
    cr_assert_eq(mqe2e_operator_accept_write(au, f2, sizeof f2, &l2, "impostor", &reply), MQE2E_OK);
    cr_assert_eq(mqe2e_operator_finish(c2, &back, f2, l2), MQE2E_ERR_STATE);
    mqe2e_operator_request_clear(&got);
    mqe2e_operator_authority_free(au);
    mqe2e_operator_client_free(c1);
    mqe2e_operator_client_free(c2);
}

Test(operator, begin_refuses_invalid_requests)
{
    static uint8_t f1[MQE2E_CONTROL_MAX_FRAME_BYTES];
    mqe2e_operator_client *cl = NULL;
    mqe2e_operator_request req;
    size_t len;
    make_request(&req, 1);
    strcpy(req.operator_name, "bad/name");
    cr_assert_eq(mqe2e_operator_begin(&cl, f1, sizeof f1, &len, &pin, "op", op_dh_sk, &req,
                                      sign_with, op_sign_sk),
                 MQE2E_ERR_INVALID_ARG);
    make_request(&req, 1);
    req.command[0] = '\0';
    cr_assert_eq(mqe2e_operator_begin(&cl, f1, sizeof f1, &len, &pin, "op", op_dh_sk, &req,
                                      sign_with, op_sign_sk),
                 MQE2E_ERR_INVALID_ARG);
    make_request(&req, 1);
    req.n_args = MQE2E_OPERATOR_MAX_ARGS + 1;
    cr_assert_eq(mqe2e_operator_begin(&cl, f1, sizeof f1, &len, &pin, "op", op_dh_sk, &req,
                                      sign_with, op_sign_sk),
                 MQE2E_ERR_INVALID_ARG);
    make_request(&req, 1);
    cr_assert_eq(
        mqe2e_operator_begin(&cl, f1, 10, &len, &pin, "op", op_dh_sk, &req, sign_with, op_sign_sk),
        MQE2E_ERR_BUFFER_TOO_SMALL);
    cr_assert_null(cl);
}

/* ------------------------------------------------- signing callbacks */

Test(operator, credential_issue_with_callback)
{
    mqe2e_credential_request r;
    uint8_t *a = NULL, *b = NULL;
    size_t al = 0, bl = 0;
    mqe2e_credential *c = NULL;
    mqe2e_grant g = {"a/#", MQE2E_RIGHT_PUBLISH};
    memset(&r, 0, sizeof r);
    r.client_id = "dev";
    r.role = "device";
    memcpy(r.sign_public, op_sign_pk, 32);
    memcpy(r.dh_public, op_dh_pk, 32);
    r.grants = &g;
    r.n_grants = 1;
    r.issued_at = 100;
    r.expires_at = 200;
    r.serial = 7;
    cr_assert_eq(mqe2e_credential_issue_with(&a, &al, auth_sign_pk, sign_with, auth_sign_sk, &r),
                 MQE2E_OK);
    cr_assert_eq(mqe2e_credential_issue(&b, &bl, auth_sign_sk, &r), MQE2E_OK);
    /* Ed25519 is deterministic: both paths give the same bytes. */
    cr_assert_eq(al, bl);
    cr_assert_eq(memcmp(a, b, al), 0);
    cr_assert_eq(mqe2e_credential_verify(&c, a, al, auth_sign_pk, 150), MQE2E_OK);
    mqe2e_credential_free(c);
    free(a);
    free(b);
    /* A callback holding another key is caught. */
    cr_assert_eq(mqe2e_credential_issue_with(&a, &al, auth_sign_pk, sign_with, op_sign_sk, &r),
                 MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_credential_issue_with(&a, &al, auth_sign_pk, NULL, NULL, &r),
                 MQE2E_ERR_INVALID_ARG);
}

Test(operator, revocation_sign_with_callback)
{
    mqe2e_revocation_entry e = {"dev-3", 0, 99};
    uint8_t *l = NULL;
    size_t ll = 0;
    mqe2e_revocation_list *v = NULL;
    cr_assert_eq(mqe2e_revocation_list_sign_with(&l, &ll, auth_sign_pk, sign_with, auth_sign_sk, 2,
                                                 100, &e, 1),
                 MQE2E_OK);
    cr_assert_eq(mqe2e_revocation_list_verify(&v, l, ll, auth_sign_pk), MQE2E_OK);
    cr_assert(mqe2e_revocation_list_is_revoked(v, "dev-3", 5));
    cr_assert_eq(mqe2e_revocation_list_version(v), 2);
    mqe2e_revocation_list_free(v);
    free(l);
    cr_assert_eq(mqe2e_revocation_list_sign_with(&l, &ll, auth_sign_pk, sign_with, op_sign_sk, 2,
                                                 100, &e, 1),
                 MQE2E_ERR_INVALID_ARG);
}
