/* Hello: Noise_IK from an enrolled client to the authority, on every connect
 * (docs/PROTOCOL.md, "Control plane"). */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "internal_control.h"
#include "internal_cred.h"
#include "mqe2e/error.h"
#include "proto/control.pb-c.h"

struct mqe2e_hello_client {
    mqe2e_noise_handshake *hs;
    int done;
    uint8_t session[MQE2E_CONTROL_SESSION_BYTES];
    char authority_id[MQE2E_ID_MAX + 1];
};

struct mqe2e_hello_authority {
    mqe2e_noise_handshake *hs;
    int state; /* 1 read, 2 written, -1 dead */
    mqe2e_hello_request req;
};

int mqe2e_hello_begin(mqe2e_hello_client **st, uint8_t *out, size_t out_cap, size_t *out_len,
                      const char *prefix, const char *client_id, const char *authority_id,
                      const uint8_t client_dh_secret[32], const uint8_t authority_dh_public[32],
                      uint64_t credential_serial)
{
    Mqe2e__V1__Hello m;
    mqe2e_hello_client *c = NULL;
    uint8_t *payload = NULL;
    size_t plen = 0;
    int rc;

    mqe2e__v1__hello__init(&m);
    if (st == NULL) return MQE2E_ERR_INVALID_ARG;
    *st = NULL;
    if (out == NULL || out_len == NULL || !mqe2e_control_prefix_valid(prefix) ||
        !mqe2e_client_id_valid(client_id) || !mqe2e_client_id_valid(authority_id) ||
        client_dh_secret == NULL || authority_dh_public == NULL)
        return MQE2E_ERR_INVALID_ARG;
    if (!mqe2e__cred_x25519_public_ok(authority_dh_public)) return MQE2E_ERR_AUTH;
    if (mqe2e_init() != MQE2E_OK) return MQE2E_ERR_CRYPTO;

    c = sodium_malloc(sizeof *c);
    if (c == NULL) return MQE2E_ERR_NOMEM;
    memset(c, 0, sizeof *c);
    randombytes_buf(c->session, sizeof c->session);
    memcpy(c->authority_id, authority_id, strlen(authority_id) + 1U);
    rc = mqe2e__control_handshake(&c->hs, MQE2E_CONTROL_HELLO, MQE2E_NOISE_INITIATOR, prefix,
                                  c->session);
    if (rc == MQE2E_OK) rc = mqe2e_noise_handshake_set_local_static(c->hs, client_dh_secret);
    if (rc == MQE2E_OK) rc = mqe2e_noise_handshake_set_remote_static(c->hs, authority_dh_public);
    if (rc != MQE2E_OK) goto out;

    m.client_id = (char *)(uintptr_t)client_id;
    m.credential_serial = credential_serial;
    plen = mqe2e__v1__hello__get_packed_size(&m);
    payload = malloc(plen + 1U);
    if (payload == NULL) {
        rc = MQE2E_ERR_NOMEM;
        goto out;
    }
    mqe2e__v1__hello__pack(&m, payload);
    rc = mqe2e__control_write(out, out_cap, out_len, c->hs, MQE2E_CONTROL_HELLO, client_id,
                              c->session, 1, payload, plen);
out:
    mqe2e__control_free_wiped(payload, plen);
    if (rc != MQE2E_OK) {
        mqe2e_hello_client_free(c);
        return rc;
    }
    *st = c;
    return MQE2E_OK;
}

int mqe2e_hello_finish(mqe2e_hello_client *st, mqe2e_control_update *reply, const uint8_t *frame,
                       size_t len)
{
    mqe2e_control_frame f;
    uint8_t *payload = NULL;
    size_t cap = 0, plen = 0;
    int rc;

    if (reply != NULL) memset(reply, 0, sizeof *reply);
    if (st == NULL || reply == NULL || (frame == NULL && len != 0)) return MQE2E_ERR_INVALID_ARG;
    if (st->done) return MQE2E_ERR_STATE;
    rc = mqe2e_control_frame_decode(&f, frame, len);
    if (rc != MQE2E_OK) return rc;
    if (!mqe2e__control_frame_for(&f, MQE2E_CONTROL_HELLO, 2, st->session, st->authority_id))
        return MQE2E_ERR_STATE;
    st->done = 1;
    rc = mqe2e__control_read(&payload, &cap, &plen, st->hs, &f);
    if (rc != MQE2E_OK) {
        rc = MQE2E_ERR_AUTH;
        goto out;
    }
    rc = mqe2e__control_unpack_update(reply, MQE2E__PAYLOAD_HELLO_REPLY, payload, plen);
    if (rc != MQE2E_OK) {
        rc = rc == MQE2E_ERR_NOMEM ? rc : MQE2E_ERR_AUTH;
        goto out;
    }
    if (reply->status != MQE2E_STATUS_OK) {
        int32_t status = reply->status;
        mqe2e_control_update_wipe(reply);
        reply->status = status;
        rc = MQE2E_ERR_POLICY;
    }
out:
    mqe2e__control_free_wiped(payload, cap);
    mqe2e_noise_handshake_free(st->hs);
    st->hs = NULL;
    return rc;
}

void mqe2e_hello_client_free(mqe2e_hello_client *st)
{
    if (st == NULL) return;
    mqe2e_noise_handshake_free(st->hs);
    sodium_memzero(st, sizeof *st);
    sodium_free(st);
}

int mqe2e_hello_accept_read(mqe2e_hello_authority **st, mqe2e_hello_request *req,
                            const uint8_t authority_dh_secret[32], const char *prefix,
                            const uint8_t *frame, size_t len)
{
    mqe2e_hello_authority *a = NULL;
    Mqe2e__V1__Hello *m = NULL;
    mqe2e_control_frame f;
    uint8_t *payload = NULL;
    size_t cap = 0, plen = 0;
    int rc;

    if (st != NULL) *st = NULL;
    if (req != NULL) memset(req, 0, sizeof *req);
    if (st == NULL || req == NULL || authority_dh_secret == NULL ||
        !mqe2e_control_prefix_valid(prefix) || (frame == NULL && len != 0))
        return MQE2E_ERR_INVALID_ARG;
    rc = mqe2e_control_frame_decode(&f, frame, len);
    if (rc != MQE2E_OK) return rc;
    if (f.kind != MQE2E_CONTROL_HELLO || f.step != 1) return MQE2E_ERR_STATE;
    if (mqe2e_init() != MQE2E_OK) return MQE2E_ERR_CRYPTO;

    a = sodium_malloc(sizeof *a);
    if (a == NULL) return MQE2E_ERR_NOMEM;
    memset(a, 0, sizeof *a);
    rc = mqe2e__control_handshake(&a->hs, MQE2E_CONTROL_HELLO, MQE2E_NOISE_RESPONDER, prefix,
                                  f.session);
    if (rc == MQE2E_OK) rc = mqe2e_noise_handshake_set_local_static(a->hs, authority_dh_secret);
    if (rc != MQE2E_OK) goto out;
    rc = mqe2e__control_read(&payload, &cap, &plen, a->hs, &f);
    if (rc != MQE2E_OK) {
        if (rc != MQE2E_ERR_NOMEM && rc != MQE2E_ERR_DECODE && rc != MQE2E_ERR_TOO_LARGE)
            rc = MQE2E_ERR_AUTH;
        goto out;
    }
    rc = mqe2e_noise_handshake_remote_static(a->hs, a->req.dh_public);
    if (rc != MQE2E_OK) goto out;
    rc = MQE2E_ERR_AUTH;
    m = mqe2e__v1__hello__unpack(&mqe2e__cred_allocator, plen, payload);
    if (m == NULL || !mqe2e__cred_canonical(&m->base, payload, plen) || m->client_id == NULL ||
        strcmp(m->client_id, f.from) != 0)
        goto out;
    memcpy(a->req.client_id, f.from, sizeof a->req.client_id);
    a->req.credential_serial = m->credential_serial;
    memcpy(a->req.session, f.session, sizeof a->req.session);
    a->state = 1;
    rc = MQE2E_OK;
out:
    if (m != NULL) mqe2e__v1__hello__free_unpacked(m, &mqe2e__cred_allocator);
    mqe2e__control_free_wiped(payload, cap);
    if (rc != MQE2E_OK) {
        mqe2e_hello_authority_free(a);
        return rc;
    }
    *req = a->req;
    *st = a;
    return MQE2E_OK;
}

int mqe2e_hello_accept_check_static(mqe2e_hello_authority *st, const uint8_t enrolled_dh_public[32])
{
    if (st == NULL || enrolled_dh_public == NULL) return MQE2E_ERR_INVALID_ARG;
    if (st->state != 1 || sodium_memcmp(st->req.dh_public, enrolled_dh_public, 32) != 0) {
        st->state = -1;
        return MQE2E_ERR_AUTH;
    }
    return MQE2E_OK;
}

int mqe2e_hello_accept_write(mqe2e_hello_authority *st, uint8_t *out, size_t out_cap,
                             size_t *out_len, const char *authority_id,
                             const mqe2e_control_update *reply)
{
    uint8_t *payload = NULL;
    size_t plen = 0;
    int rc;

    if (st == NULL || out == NULL || out_len == NULL || reply == NULL ||
        !mqe2e_client_id_valid(authority_id))
        return MQE2E_ERR_INVALID_ARG;
    if (st->state != 1) return MQE2E_ERR_STATE;
    rc = mqe2e__control_pack_update(&payload, &plen, MQE2E__PAYLOAD_HELLO_REPLY, reply);
    if (rc != MQE2E_OK) return rc;
    rc = mqe2e__control_write(out, out_cap, out_len, st->hs, MQE2E_CONTROL_HELLO, authority_id,
                              st->req.session, 2, payload, plen);
    mqe2e__control_free_wiped(payload, plen);
    if (rc == MQE2E_OK) st->state = 2;
    return rc;
}

void mqe2e_hello_authority_free(mqe2e_hello_authority *st)
{
    if (st == NULL) return;
    mqe2e_noise_handshake_free(st->hs);
    sodium_memzero(st, sizeof *st);
    sodium_free(st);
}
