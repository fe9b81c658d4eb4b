/* Authority pins and signed operator requests in OPERATOR frames (kind 5).
 * The frame codec of control_frame.c knows kinds 1-4 only, so OPERATOR
 * frames are encoded here with the same canonical rules (re-encoding must
 * give the input back). */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "internal_control.h"
#include "internal_cred.h"
#include "mqe2e/error.h"
#include "mqe2e/noise.h"
#include "mqe2e/operator.h"
#include "proto/control.pb-c.h"
#include "proto/operator.pb-c.h"

#define PROTOCOL "Noise_IK_25519_ChaChaPoly_SHA256"
#define DOMAIN_LEN (sizeof MQE2E_OPERATOR_DOMAIN - 1U)
#define PIN_PREFIX_LEN (sizeof MQE2E_AUTHORITY_PIN_PREFIX - 1U)

struct mqe2e_operator_client {
    mqe2e_noise_handshake *hs;
    uint8_t session[MQE2E_CONTROL_SESSION_BYTES];
    char authority_id[MQE2E_ID_MAX + 1];
    int done;
};

struct mqe2e_operator_authority {
    mqe2e_noise_handshake *hs;
    uint8_t session[MQE2E_CONTROL_SESSION_BYTES];
    char from[MQE2E_ID_MAX + 1];
    uint8_t e_pub[32];
    uint8_t signature[64];
    uint8_t *body; /* canonical request with the signature field empty */
    size_t body_len;
    uint64_t issued_at;
    int verified; /* 1 once the signature verified */
    int written;
};

static int copy_str(char *dst, const char *src, size_t max)
{
    if (src == NULL) return 0;
    size_t n = strnlen(src, max + 1);
    if (n == 0 || n > max) return 0;
    memcpy(dst, src, n);
    dst[n] = '\0';
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Authority pin                                                             */
/* ------------------------------------------------------------------------ */

static int pin_fields_ok(const mqe2e_authority_pin *p)
{
    return memchr(p->authority_id, '\0', sizeof p->authority_id) != NULL &&
           memchr(p->control_prefix, '\0', sizeof p->control_prefix) != NULL &&
           mqe2e_client_id_valid(p->authority_id) &&
           mqe2e_control_prefix_valid(p->control_prefix) &&
           mqe2e__cred_ed25519_public_ok(p->sign_public) &&
           mqe2e__cred_x25519_public_ok(p->dh_public);
}

int mqe2e_authority_pin_encode(char **out, const mqe2e_authority_pin *pin)
{
    Mqe2e__V1__AuthorityPin m;
    uint8_t *buf = NULL;
    char *text = NULL;

    if (out == NULL || pin == NULL) return MQE2E_ERR_INVALID_ARG;
    if (mqe2e_init() != MQE2E_OK) return MQE2E_ERR_CRYPTO;
    if (!pin_fields_ok(pin)) return MQE2E_ERR_INVALID_ARG;
    mqe2e__v1__authority_pin__init(&m);
    /* protobuf-c only reads through these pointers while packing. */
    m.sign_public.data = (uint8_t *)(uintptr_t)pin->sign_public;
    m.sign_public.len = 32;
    m.dh_public.data = (uint8_t *)(uintptr_t)pin->dh_public;
    m.dh_public.len = 32;
    m.authority_id = (char *)(uintptr_t)pin->authority_id;
    m.control_prefix = (char *)(uintptr_t)pin->control_prefix;
    size_t len = mqe2e__v1__authority_pin__get_packed_size(&m);
    size_t b64 = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    buf = malloc(len);
    text = malloc(PIN_PREFIX_LEN + b64);
    if (buf == NULL || text == NULL) {
        free(buf);
        free(text);
        return MQE2E_ERR_NOMEM;
    }
    mqe2e__v1__authority_pin__pack(&m, buf);
    memcpy(text, MQE2E_AUTHORITY_PIN_PREFIX, PIN_PREFIX_LEN);
    sodium_bin2base64(text + PIN_PREFIX_LEN, b64, buf, len,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    free(buf);
    *out = text;
    return MQE2E_OK;
}

int mqe2e_authority_pin_decode(mqe2e_authority_pin *out, const char *text)
{
    Mqe2e__V1__AuthorityPin *m = NULL;
    uint8_t bin[MQE2E_AUTHORITY_PIN_TEXT_MAX];
    size_t bin_len = 0, tlen;
    const char *end = NULL;
    int rc = MQE2E_ERR_DECODE;

    if (out == NULL) return MQE2E_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    if (text == NULL) return MQE2E_ERR_INVALID_ARG;
    if (mqe2e_init() != MQE2E_OK) return MQE2E_ERR_CRYPTO;
    tlen = strnlen(text, MQE2E_AUTHORITY_PIN_TEXT_MAX + 1);
    if (tlen > MQE2E_AUTHORITY_PIN_TEXT_MAX) return MQE2E_ERR_TOO_LARGE;
    if (tlen <= PIN_PREFIX_LEN || memcmp(text, MQE2E_AUTHORITY_PIN_PREFIX, PIN_PREFIX_LEN) != 0)
        return MQE2E_ERR_DECODE;
    const char *b64 = text + PIN_PREFIX_LEN;
    size_t b64_len = tlen - PIN_PREFIX_LEN;
    if (sodium_base642bin(bin, sizeof bin, b64, b64_len, NULL, &bin_len, &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        end != b64 + b64_len || bin_len == 0)
        return MQE2E_ERR_DECODE;
    /* Canonical base64: unused trailing bits must be zero (re-encoding matches). */
    {
        char again[MQE2E_AUTHORITY_PIN_TEXT_MAX + 1];
        size_t need = sodium_base64_ENCODED_LEN(bin_len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        if (need > sizeof again) return MQE2E_ERR_DECODE;
        sodium_bin2base64(again, need, bin, bin_len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        if (strlen(again) != b64_len || memcmp(again, b64, b64_len) != 0) return MQE2E_ERR_DECODE;
    }
    m = mqe2e__v1__authority_pin__unpack(&mqe2e__cred_allocator, bin_len, bin);
    if (m == NULL) return MQE2E_ERR_DECODE;
    if (!mqe2e__cred_canonical(&m->base, bin, bin_len) || m->base.n_unknown_fields != 0 ||
        m->sign_public.len != 32 || m->dh_public.len != 32 ||
        !copy_str(out->authority_id, m->authority_id, MQE2E_ID_MAX) ||
        !copy_str(out->control_prefix, m->control_prefix, MQE2E_CONTROL_PREFIX_MAX))
        goto out;
    memcpy(out->sign_public, m->sign_public.data, 32);
    memcpy(out->dh_public, m->dh_public.data, 32);
    if (!pin_fields_ok(out)) goto out;
    rc = MQE2E_OK;
out:
    mqe2e__v1__authority_pin__free_unpacked(m, &mqe2e__cred_allocator);
    if (rc != MQE2E_OK) memset(out, 0, sizeof *out);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Frames                                                                    */
/* ------------------------------------------------------------------------ */

static int handshake_new(mqe2e_noise_handshake **hs, int role, const char *prefix,
                         const uint8_t session[MQE2E_CONTROL_SESSION_BYTES])
{
    uint8_t prologue[DOMAIN_LEN + 1U + MQE2E_CONTROL_PREFIX_MAX + 1U + MQE2E_CONTROL_SESSION_BYTES];
    size_t n = 0, plen;

    *hs = NULL;
    if (!mqe2e_control_prefix_valid(prefix)) return MQE2E_ERR_INVALID_ARG;
    plen = strlen(prefix);
    memcpy(prologue, MQE2E_OPERATOR_DOMAIN, DOMAIN_LEN);
    n = DOMAIN_LEN;
    prologue[n++] = 0;
    memcpy(prologue + n, prefix, plen);
    n += plen;
    prologue[n++] = 0;
    memcpy(prologue + n, session, MQE2E_CONTROL_SESSION_BYTES);
    n += MQE2E_CONTROL_SESSION_BYTES;
    return mqe2e_noise_handshake_new(hs, PROTOCOL, role, prologue, n);
}

/* Write the next Noise message carrying @p payload, wrapped in a frame. */
static int frame_write(uint8_t *out, size_t out_cap, size_t *out_len, mqe2e_noise_handshake *hs,
                       const char *from, const uint8_t session[MQE2E_CONTROL_SESSION_BYTES],
                       uint32_t step, const uint8_t *payload, size_t payload_len,
                       uint8_t e_pub_out[32])
{
    Mqe2e__V1__ControlFrame f;
    uint8_t *noise = NULL;
    size_t noise_len = 0, written = 0;
    int rc;

    if (!mqe2e_client_id_valid(from)) return MQE2E_ERR_INVALID_ARG;
    if ((rc = mqe2e_noise_handshake_message_len(hs, payload_len, &noise_len)) != MQE2E_OK)
        return rc;
    if (noise_len > MQE2E_CONTROL_MAX_FRAME_BYTES) return MQE2E_ERR_TOO_LARGE;
    if ((noise = malloc(noise_len)) == NULL) return MQE2E_ERR_NOMEM;
    rc = mqe2e_noise_write_message(hs, noise, noise_len, &written, payload, payload_len);
    if (rc != MQE2E_OK) goto out;
    if (e_pub_out != NULL) memcpy(e_pub_out, noise, 32);
    mqe2e__v1__control_frame__init(&f);
    f.format = MQE2E_CONTROL_FORMAT;
    f.kind = MQE2E_CONTROL_OPERATOR;
    f.from = (char *)(uintptr_t)from;
    f.session.data = (uint8_t *)(uintptr_t)session;
    f.session.len = MQE2E_CONTROL_SESSION_BYTES;
    f.step = step;
    f.noise.data = noise;
    f.noise.len = written;
    size_t n = mqe2e__v1__control_frame__get_packed_size(&f);
    if (n > MQE2E_CONTROL_MAX_FRAME_BYTES) {
        rc = MQE2E_ERR_TOO_LARGE;
        goto out;
    }
    if (n > out_cap) {
        rc = MQE2E_ERR_BUFFER_TOO_SMALL;
        goto out;
    }
    mqe2e__v1__control_frame__pack(&f, out);
    *out_len = n;
    rc = MQE2E_OK;
out:
    free(noise);
    return rc;
}

/* Strictly decode an OPERATOR frame; *fp borrows nothing from the input. */
static int frame_decode(Mqe2e__V1__ControlFrame **fp, const uint8_t *in, size_t len)
{
    Mqe2e__V1__ControlFrame *f;

    *fp = NULL;
    if (in == NULL) return MQE2E_ERR_INVALID_ARG;
    if (len > MQE2E_CONTROL_MAX_FRAME_BYTES) return MQE2E_ERR_TOO_LARGE;
    f = mqe2e__v1__control_frame__unpack(&mqe2e__cred_allocator, len, in);
    if (f == NULL) return MQE2E_ERR_DECODE;
    int ok = mqe2e__cred_canonical(&f->base, in, len) && f->base.n_unknown_fields == 0 &&
             f->session.len == MQE2E_CONTROL_SESSION_BYTES && f->noise.len > 0 && f->from != NULL &&
             mqe2e_client_id_valid(f->from);
    if (!ok) {
        mqe2e__v1__control_frame__free_unpacked(f, &mqe2e__cred_allocator);
        return MQE2E_ERR_DECODE;
    }
    if (f->format != MQE2E_CONTROL_FORMAT || f->kind != MQE2E_CONTROL_OPERATOR) {
        int rc = f->format != MQE2E_CONTROL_FORMAT ? MQE2E_ERR_SUITE : MQE2E_ERR_STATE;
        mqe2e__v1__control_frame__free_unpacked(f, &mqe2e__cred_allocator);
        return rc;
    }
    if (f->step < 1 || f->step > 2) {
        mqe2e__v1__control_frame__free_unpacked(f, &mqe2e__cred_allocator);
        return MQE2E_ERR_DECODE;
    }
    *fp = f;
    return MQE2E_OK;
}

static int noise_read(uint8_t **payload, size_t *payload_len, mqe2e_noise_handshake *hs,
                      const Mqe2e__V1__ControlFrame *f)
{
    size_t cap = f->noise.len;
    uint8_t *p = malloc(cap);
    *payload = NULL;
    *payload_len = 0;
    if (p == NULL) return MQE2E_ERR_NOMEM;
    int rc = mqe2e_noise_read_message(hs, p, cap, payload_len, f->noise.data, f->noise.len);
    if (rc != MQE2E_OK) {
        sodium_memzero(p, cap);
        free(p);
        return rc == MQE2E_ERR_DECODE ? MQE2E_ERR_AUTH : rc;
    }
    *payload = p;
    return MQE2E_OK;
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                  */
/* ------------------------------------------------------------------------ */

void mqe2e_operator_request_clear(mqe2e_operator_request *req)
{
    if (req == NULL) return;
    if (req->args != NULL) {
        for (size_t i = 0; i < req->n_args; i++)
            free(req->args[i]);
        free(req->args);
    }
    sodium_memzero(req, sizeof *req);
}

void mqe2e_operator_reply_clear(mqe2e_operator_reply *reply)
{
    if (reply == NULL) return;
    if (reply->message != NULL) {
        sodium_memzero(reply->message, strlen(reply->message));
        free(reply->message);
    }
    if (reply->output != NULL) {
        sodium_memzero(reply->output, strlen(reply->output));
        free(reply->output);
    }
    sodium_memzero(reply, sizeof *reply);
}

static int request_fields_ok(const char *op, const char *command, char *const *args, size_t n)
{
    size_t cl;
    if (op == NULL || !mqe2e_client_id_valid(op) || command == NULL) return 0;
    cl = strnlen(command, MQE2E_OPERATOR_COMMAND_MAX + 1);
    if (cl == 0 || cl > MQE2E_OPERATOR_COMMAND_MAX) return 0;
    if (n > MQE2E_OPERATOR_MAX_ARGS || (n > 0 && args == NULL)) return 0;
    for (size_t i = 0; i < n; i++) {
        if (args[i] == NULL ||
            strnlen(args[i], MQE2E_OPERATOR_ARG_MAX + 1) > MQE2E_OPERATOR_ARG_MAX)
            return 0;
    }
    return 1;
}

/* domain || e_pub || body, malloc()ed. */
static uint8_t *signed_message(const uint8_t e_pub[32], const uint8_t *body, size_t body_len,
                               size_t *mlen)
{
    uint8_t *m = malloc(DOMAIN_LEN + 32U + body_len + 1U);
    if (m == NULL) return NULL;
    memcpy(m, MQE2E_OPERATOR_DOMAIN, DOMAIN_LEN);
    memcpy(m + DOMAIN_LEN, e_pub, 32);
    if (body_len > 0) memcpy(m + DOMAIN_LEN + 32U, body, body_len);
    *mlen = DOMAIN_LEN + 32U + body_len;
    return m;
}

int mqe2e_operator_begin(mqe2e_operator_client **st, uint8_t *out, size_t out_cap, size_t *out_len,
                         const mqe2e_authority_pin *pin, const char *from,
                         const uint8_t operator_dh_secret[32], const mqe2e_operator_request *req,
                         mqe2e_sign_fn sign, void *sign_ctx)
{
    Mqe2e__V1__OperatorRequest m;
    mqe2e_operator_client *s = NULL;
    uint8_t e_sk[32], e_pub[32], sig[64];
    uint8_t *body = NULL, *msg = NULL, *payload = NULL;
    size_t body_len = 0, msg_len = 0, payload_len = 0;
    int rc;

    if (st != NULL) *st = NULL;
    if (st == NULL || out == NULL || out_len == NULL || pin == NULL || from == NULL ||
        operator_dh_secret == NULL || req == NULL || sign == NULL)
        return MQE2E_ERR_INVALID_ARG;
    if (mqe2e_init() != MQE2E_OK) return MQE2E_ERR_CRYPTO;
    if (!pin_fields_ok(pin) || !mqe2e_client_id_valid(from) ||
        memchr(req->operator_name, '\0', sizeof req->operator_name) == NULL ||
        memchr(req->command, '\0', sizeof req->command) == NULL ||
        !request_fields_ok(req->operator_name, req->command, req->args, req->n_args))
        return MQE2E_ERR_INVALID_ARG;
    if ((s = sodium_malloc(sizeof *s)) == NULL) return MQE2E_ERR_NOMEM;
    memset(s, 0, sizeof *s);
    memcpy(s->authority_id, pin->authority_id, sizeof s->authority_id);
    randombytes_buf(s->session, sizeof s->session);
    if ((rc = handshake_new(&s->hs, MQE2E_NOISE_INITIATOR, pin->control_prefix, s->session)) !=
            MQE2E_OK ||
        (rc = mqe2e_noise_handshake_set_local_static(s->hs, operator_dh_secret)) != MQE2E_OK ||
        (rc = mqe2e_noise_handshake_set_remote_static(s->hs, pin->dh_public)) != MQE2E_OK)
        goto out;
    /* The signature covers e_pub, so the ephemeral key is drawn here, before
     * the message that carries it is written. */
    randombytes_buf(e_sk, sizeof e_sk);
    if (crypto_scalarmult_base(e_pub, e_sk) != 0) {
        rc = MQE2E_ERR_CRYPTO;
        goto out;
    }
    if ((rc = mqe2e_noise_handshake_set_ephemeral(s->hs, e_sk)) != MQE2E_OK) goto out;

    mqe2e__v1__operator_request__init(&m);
    m.operator_ = (char *)(uintptr_t)req->operator_name;
    m.nonce.data = (uint8_t *)(uintptr_t)req->nonce;
    m.nonce.len = MQE2E_OPERATOR_NONCE_BYTES;
    m.issued_at = req->issued_at;
    m.command = (char *)(uintptr_t)req->command;
    m.n_args = req->n_args;
    m.args = req->args;
    body_len = mqe2e__v1__operator_request__get_packed_size(&m);
    if (body_len > MQE2E_CONTROL_MAX_FRAME_BYTES) {
        rc = MQE2E_ERR_TOO_LARGE;
        goto out;
    }
    if ((body = malloc(body_len)) == NULL) {
        rc = MQE2E_ERR_NOMEM;
        goto out;
    }
    mqe2e__v1__operator_request__pack(&m, body);
    if ((msg = signed_message(e_pub, body, body_len, &msg_len)) == NULL) {
        rc = MQE2E_ERR_NOMEM;
        goto out;
    }
    if (sign(sign_ctx, sig, msg, msg_len) != 0) {
        rc = MQE2E_ERR_AUTH;
        goto out;
    }
    m.signature.data = sig;
    m.signature.len = sizeof sig;
    payload_len = mqe2e__v1__operator_request__get_packed_size(&m);
    if ((payload = malloc(payload_len)) == NULL) {
        rc = MQE2E_ERR_NOMEM;
        goto out;
    }
    mqe2e__v1__operator_request__pack(&m, payload);
    rc = frame_write(out, out_cap, out_len, s->hs, from, s->session, 1, payload, payload_len, NULL);
out:
    sodium_memzero(e_sk, sizeof e_sk);
    free(body);
    free(msg);
    free(payload);
    if (rc != MQE2E_OK) {
        mqe2e_operator_client_free(s);
        return rc;
    }
    *st = s;
    return MQE2E_OK;
}

static char *dup_or_empty(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    char *d = malloc(n + 1);
    if (d == NULL) return NULL;
    if (n > 0) memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

int mqe2e_operator_finish(mqe2e_operator_client *st, mqe2e_operator_reply *reply,
                          const uint8_t *frame, size_t len)
{
    Mqe2e__V1__ControlFrame *f = NULL;
    Mqe2e__V1__OperatorReply *r = NULL;
    uint8_t *payload = NULL;
    size_t payload_len = 0;
    int rc;

    if (reply != NULL) memset(reply, 0, sizeof *reply);
    if (st == NULL || reply == NULL || frame == NULL) return MQE2E_ERR_INVALID_ARG;
    if (st->done) return MQE2E_ERR_STATE;
    if ((rc = frame_decode(&f, frame, len)) != MQE2E_OK) return rc;
    if (f->step != 2 || sodium_memcmp(f->session.data, st->session, sizeof st->session) != 0 ||
        strcmp(f->from, st->authority_id) != 0) {
        rc = MQE2E_ERR_STATE;
        goto out;
    }
    if ((rc = noise_read(&payload, &payload_len, st->hs, f)) != MQE2E_OK) {
        st->done = 1;
        goto out;
    }
    st->done = 1;
    r = mqe2e__v1__operator_reply__unpack(&mqe2e__cred_allocator, payload_len, payload);
    if (r == NULL || !mqe2e__cred_canonical(&r->base, payload, payload_len) ||
        r->base.n_unknown_fields != 0) {
        rc = MQE2E_ERR_AUTH;
        goto out;
    }
    reply->status = r->status;
    reply->message = dup_or_empty(r->message);
    reply->output = dup_or_empty(r->output);
    if (reply->message == NULL || reply->output == NULL) {
        mqe2e_operator_reply_clear(reply);
        rc = MQE2E_ERR_NOMEM;
        goto out;
    }
    rc = MQE2E_OK;
out:
    if (r != NULL) mqe2e__v1__operator_reply__free_unpacked(r, &mqe2e__cred_allocator);
    if (payload != NULL) {
        sodium_memzero(payload, payload_len);
        free(payload);
    }
    mqe2e__v1__control_frame__free_unpacked(f, &mqe2e__cred_allocator);
    return rc;
}

void mqe2e_operator_client_free(mqe2e_operator_client *st)
{
    if (st == NULL) return;
    mqe2e_noise_handshake_free(st->hs);
    sodium_free(st);
}

/* ------------------------------------------------------------------------ */
/* Authority side                                                            */
/* ------------------------------------------------------------------------ */

/* Strict OperatorRequest: canonical, no unknown field at any depth, a
 * 16-byte nonce, a 64-byte signature, valid names and arguments. */
static int request_unpack(Mqe2e__V1__OperatorRequest **out, const uint8_t *payload, size_t len)
{
    Mqe2e__V1__OperatorRequest *m =
        mqe2e__v1__operator_request__unpack(&mqe2e__cred_allocator, len, payload);
    *out = NULL;
    if (m == NULL || !mqe2e__cred_canonical(&m->base, payload, len) ||
        m->nonce.len != MQE2E_OPERATOR_NONCE_BYTES || m->signature.len != 64 ||
        !request_fields_ok(m->operator_, m->command, m->args, m->n_args)) {
        if (m != NULL) mqe2e__v1__operator_request__free_unpacked(m, &mqe2e__cred_allocator);
        return MQE2E_ERR_AUTH;
    }
    *out = m;
    return MQE2E_OK;
}

int mqe2e__operator_request_check(const uint8_t *payload, size_t len)
{
    Mqe2e__V1__OperatorRequest *m = NULL;
    int rc = request_unpack(&m, payload, len);
    if (m != NULL) mqe2e__v1__operator_request__free_unpacked(m, &mqe2e__cred_allocator);
    return rc;
}

int mqe2e_operator_accept_read(mqe2e_operator_authority **st, mqe2e_operator_request *req,
                               const uint8_t authority_dh_secret[32], const char *prefix,
                               const uint8_t *frame, size_t len)
{
    Mqe2e__V1__ControlFrame *f = NULL;
    Mqe2e__V1__OperatorRequest *m = NULL;
    mqe2e_operator_authority *s = NULL;
    uint8_t *payload = NULL;
    size_t payload_len = 0;
    int rc;

    if (st != NULL) *st = NULL;
    if (req != NULL) memset(req, 0, sizeof *req);
    if (st == NULL || req == NULL || authority_dh_secret == NULL || prefix == NULL || frame == NULL)
        return MQE2E_ERR_INVALID_ARG;
    if (mqe2e_init() != MQE2E_OK) return MQE2E_ERR_CRYPTO;
    if ((rc = frame_decode(&f, frame, len)) != MQE2E_OK) return rc;
    if (f->step != 1) {
        rc = MQE2E_ERR_STATE;
        goto out;
    }
    if ((s = sodium_malloc(sizeof *s)) == NULL) {
        rc = MQE2E_ERR_NOMEM;
        goto out;
    }
    memset(s, 0, sizeof *s);
    memcpy(s->session, f->session.data, sizeof s->session);
    if (!copy_str(s->from, f->from, MQE2E_ID_MAX)) {
        rc = MQE2E_ERR_DECODE;
        goto out;
    }
    if ((rc = handshake_new(&s->hs, MQE2E_NOISE_RESPONDER, prefix, s->session)) != MQE2E_OK ||
        (rc = mqe2e_noise_handshake_set_local_static(s->hs, authority_dh_secret)) != MQE2E_OK)
        goto out;
    if (f->noise.len < 32) {
        rc = MQE2E_ERR_AUTH;
        goto out;
    }
    memcpy(s->e_pub, f->noise.data, 32);
    if ((rc = noise_read(&payload, &payload_len, s->hs, f)) != MQE2E_OK) goto out;
    if ((rc = request_unpack(&m, payload, payload_len)) != MQE2E_OK) goto out;
    memcpy(s->signature, m->signature.data, 64);
    s->issued_at = m->issued_at;
    /* The signed body is the same request with the signature field empty. */
    {
        ProtobufCBinaryData keep = m->signature;
        m->signature.data = NULL;
        m->signature.len = 0;
        s->body_len = mqe2e__v1__operator_request__get_packed_size(m);
        s->body = malloc(s->body_len + 1U);
        if (s->body != NULL) mqe2e__v1__operator_request__pack(m, s->body);
        m->signature = keep;
        if (s->body == NULL) {
            rc = MQE2E_ERR_NOMEM;
            goto out;
        }
    }
    (void)copy_str(req->operator_name, m->operator_, MQE2E_ID_MAX);
    (void)copy_str(req->command, m->command, MQE2E_OPERATOR_COMMAND_MAX);
    memcpy(req->nonce, m->nonce.data, MQE2E_OPERATOR_NONCE_BYTES);
    req->issued_at = m->issued_at;
    if (m->n_args > 0) {
        req->args = calloc(m->n_args, sizeof *req->args);
        if (req->args == NULL) {
            rc = MQE2E_ERR_NOMEM;
            goto out;
        }
        req->n_args = m->n_args;
        for (size_t i = 0; i < m->n_args; i++) {
            if ((req->args[i] = dup_or_empty(m->args[i])) == NULL) {
                rc = MQE2E_ERR_NOMEM;
                goto out;
            }
        }
    }
    rc = MQE2E_OK;
out:
    if (m != NULL) mqe2e__v1__operator_request__free_unpacked(m, &mqe2e__cred_allocator);
    if (payload != NULL) {
        sodium_memzero(payload, payload_len);
        free(payload);
    }
    mqe2e__v1__control_frame__free_unpacked(f, &mqe2e__cred_allocator);
    if (rc != MQE2E_OK) {
        mqe2e_operator_authority_free(s);
        mqe2e_operator_request_clear(req);
        return rc;
    }
    *st = s;
    return MQE2E_OK;
}

int mqe2e_operator_accept_verify(mqe2e_operator_authority *st,
                                 const uint8_t operator_sign_public[32], uint64_t now)
{
    uint8_t *msg;
    size_t msg_len = 0;

    if (st == NULL || operator_sign_public == NULL) return MQE2E_ERR_INVALID_ARG;
    if (st->verified || st->written || st->body == NULL) return MQE2E_ERR_STATE;
    if ((msg = signed_message(st->e_pub, st->body, st->body_len, &msg_len)) == NULL)
        return MQE2E_ERR_NOMEM;
    int ok = crypto_sign_verify_detached(st->signature, msg, msg_len, operator_sign_public) == 0;
    free(msg);
    if (!ok) return MQE2E_ERR_AUTH;
    st->verified = 1;
    uint64_t skew = st->issued_at > now ? st->issued_at - now : now - st->issued_at;
    return skew > MQE2E_OPERATOR_MAX_SKEW ? MQE2E_ERR_EXPIRED : MQE2E_OK;
}

const char *mqe2e_operator_accept_from(const mqe2e_operator_authority *st)
{
    return st != NULL ? st->from : "";
}

int mqe2e_operator_accept_write(mqe2e_operator_authority *st, uint8_t *out, size_t out_cap,
                                size_t *out_len, const char *authority_id,
                                const mqe2e_operator_reply *reply)
{
    Mqe2e__V1__OperatorReply r;
    uint8_t *payload = NULL;
    size_t payload_len;
    int rc;

    if (st == NULL || out == NULL || out_len == NULL || authority_id == NULL || reply == NULL)
        return MQE2E_ERR_INVALID_ARG;
    if (!st->verified || st->written) return MQE2E_ERR_STATE;
    mqe2e__v1__operator_reply__init(&r);
    r.status = reply->status;
    /* protobuf-c only reads through these pointers while packing. */
    r.message = (char *)(uintptr_t)(reply->message != NULL ? reply->message : "");
    r.output = (char *)(uintptr_t)(reply->output != NULL ? reply->output : "");
    payload_len = mqe2e__v1__operator_reply__get_packed_size(&r);
    if (payload_len > MQE2E_NOISE_MAX_PLAINTEXT_BYTES - 64U) return MQE2E_ERR_TOO_LARGE;
    if ((payload = malloc(payload_len + 1U)) == NULL) return MQE2E_ERR_NOMEM;
    mqe2e__v1__operator_reply__pack(&r, payload);
    rc = frame_write(out, out_cap, out_len, st->hs, authority_id, st->session, 2, payload,
                     payload_len, NULL);
    sodium_memzero(payload, payload_len);
    free(payload);
    if (rc == MQE2E_OK) st->written = 1;
    return rc;
}

void mqe2e_operator_authority_free(mqe2e_operator_authority *st)
{
    if (st == NULL) return;
    mqe2e_noise_handshake_free(st->hs);
    free(st->body);
    sodium_free(st);
}
