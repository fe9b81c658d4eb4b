/* Enrollment: one round trip of Noise_IKpsk2 over the control topics
 * (docs/PROTOCOL.md, "Control plane"). */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "internal_control.h"
#include "internal_cred.h"
#include "internal_noise.h"
#include "mqe2e/error.h"
#include "proto/control.pb-c.h"

#define MAC_DOMAIN "mqe2e/v1/enroll-mac"

/* Both enrollment states below live for one round trip (one batch on the
 * authority) and are allocated with plain malloc: sodium_malloc's guard
 * pages cost an mmap, two mprotect, an mlock and a munmap per state, more
 * than the enrollment's crypto on a busy authority. What they hold is
 * ephemeral (session, token MAC, keys of this handshake) or a short-lived
 * copy of the authority's static DH secret inside the handshake, whose
 * long-lived copy stays in the caller's sodium_malloc memory; every path wipes the state with
 * sodium_memzero before free(). */
struct mqe2e_enroll_device {
    mqe2e_noise_handshake *hs;
    int done;
    uint8_t session[MQE2E_CONTROL_SESSION_BYTES];
    uint8_t authority_sign_public[32];
    char authority_id[MQE2E_ID_MAX + 1];
    char client_id[MQE2E_ID_MAX + 1];
    uint8_t dh_public[32];
    uint8_t sign_public[32];
};

struct mqe2e_enroll_authority {
    mqe2e_noise_handshake *hs; /* step 1 read; its psk is the token once the MAC checked out */
    int state;                 /* 1 read, 2 MAC verified, 3 written, -1 dead */
    uint8_t e_pub[32];
    uint8_t token_mac[32];
    mqe2e_enroll_request req;
};

/* HMAC-SHA256(token, domain || session || e || dh || sign || client_id). */
static void token_mac(uint8_t mac[32], const uint8_t token[32], const uint8_t session[16],
                      const uint8_t e_pub[32], const uint8_t dh_public[32],
                      const uint8_t sign_public[32], const char *client_id)
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, token, 32);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)MAC_DOMAIN, sizeof MAC_DOMAIN - 1U);
    crypto_auth_hmacsha256_update(&st, session, MQE2E_CONTROL_SESSION_BYTES);
    crypto_auth_hmacsha256_update(&st, e_pub, 32);
    crypto_auth_hmacsha256_update(&st, dh_public, 32);
    crypto_auth_hmacsha256_update(&st, sign_public, 32);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)client_id, strlen(client_id));
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(&st, sizeof st);
}

static int ticket_ok(const mqe2e_ticket *t)
{
    return memchr(t->client_id, '\0', sizeof t->client_id) != NULL &&
           memchr(t->authority_id, '\0', sizeof t->authority_id) != NULL &&
           memchr(t->control_prefix, '\0', sizeof t->control_prefix) != NULL &&
           mqe2e_client_id_valid(t->client_id) && mqe2e_client_id_valid(t->authority_id) &&
           mqe2e_control_prefix_valid(t->control_prefix);
}

int mqe2e_enroll_begin(mqe2e_enroll_device **st, uint8_t *out, size_t out_cap, size_t *out_len,
                       const mqe2e_ticket *ticket, const uint8_t dh_secret[32],
                       const uint8_t sign_public[32], uint64_t now)
{
    Mqe2e__V1__EnrollRequest req;
    mqe2e_enroll_device *d = NULL;
    uint8_t e_sk[32], e_pk[32], mac[32];
    uint8_t *payload = NULL;
    size_t payload_len = 0;
    int rc;

    mqe2e__v1__enroll_request__init(&req);
    if (st == NULL) return MQE2E_ERR_INVALID_ARG;
    *st = NULL;
    if (out == NULL || out_len == NULL || ticket == NULL || dh_secret == NULL ||
        sign_public == NULL || !ticket_ok(ticket))
        return MQE2E_ERR_INVALID_ARG;
    if (now >= ticket->expires_at) return MQE2E_ERR_EXPIRED;
    if (mqe2e_init() != MQE2E_OK) return MQE2E_ERR_CRYPTO;

    /* Per-handshake state: plain malloc, wiped before free (see above). */
    d = malloc(sizeof *d);
    if (d == NULL) return MQE2E_ERR_NOMEM;
    memset(d, 0, sizeof *d);
    randombytes_buf(d->session, sizeof d->session);
    memcpy(d->authority_sign_public, ticket->authority_sign_public, 32);
    memcpy(d->authority_id, ticket->authority_id, sizeof d->authority_id);
    memcpy(d->client_id, ticket->client_id, sizeof d->client_id);
    memcpy(d->sign_public, sign_public, 32);
    if (crypto_scalarmult_base(d->dh_public, dh_secret) != 0) {
        rc = MQE2E_ERR_CRYPTO;
        goto out;
    }

    /* token_mac covers the ephemeral key, so it is drawn here and handed to
     * the handshake rather than drawn inside it. */
    randombytes_buf(e_sk, sizeof e_sk);
    if (crypto_scalarmult_base(e_pk, e_sk) != 0) {
        rc = MQE2E_ERR_CRYPTO;
        goto out;
    }
    rc = mqe2e__control_handshake(&d->hs, MQE2E_CONTROL_ENROLL, MQE2E_NOISE_INITIATOR,
                                  ticket->control_prefix, d->session);
    if (rc == MQE2E_OK) rc = mqe2e_noise_handshake_set_local_static(d->hs, dh_secret);
    if (rc == MQE2E_OK)
        rc = mqe2e_noise_handshake_set_remote_static(d->hs, ticket->authority_dh_public);
    if (rc == MQE2E_OK) rc = mqe2e_noise_handshake_set_psk(d->hs, ticket->token);
    if (rc == MQE2E_OK) rc = mqe2e_noise_handshake_set_ephemeral(d->hs, e_sk);
    if (rc != MQE2E_OK) goto out;

    token_mac(mac, ticket->token, d->session, e_pk, d->dh_public, sign_public, ticket->client_id);
    req.token_id.data = (uint8_t *)(uintptr_t)ticket->token_id;
    req.token_id.len = sizeof ticket->token_id;
    req.client_id = d->client_id;
    req.sign_public.data = d->sign_public;
    req.sign_public.len = 32;
    req.token_mac.data = mac;
    req.token_mac.len = sizeof mac;
    payload_len = mqe2e__v1__enroll_request__get_packed_size(&req);
    payload = malloc(payload_len);
    if (payload == NULL) {
        rc = MQE2E_ERR_NOMEM;
        goto out;
    }
    mqe2e__v1__enroll_request__pack(&req, payload);
    rc = mqe2e__control_write(out, out_cap, out_len, d->hs, MQE2E_CONTROL_ENROLL, d->client_id,
                              d->session, 1, payload, payload_len);
out:
    sodium_memzero(e_sk, sizeof e_sk);
    sodium_memzero(mac, sizeof mac);
    mqe2e__control_free_wiped(payload, payload_len);
    if (rc != MQE2E_OK) {
        mqe2e_enroll_device_free(d);
        return rc;
    }
    *st = d;
    return MQE2E_OK;
}

int mqe2e_enroll_finish(mqe2e_enroll_device *st, mqe2e_control_update *reply,
                        mqe2e_credential **verified, const uint8_t *frame, size_t len, uint64_t now)
{
    mqe2e_control_frame f;
    mqe2e_credential *cred = NULL;
    uint8_t *payload = NULL;
    size_t cap = 0, plen = 0;
    int rc;

    if (verified != NULL) *verified = NULL;
    if (reply != NULL) memset(reply, 0, sizeof *reply);
    if (st == NULL || reply == NULL || (frame == NULL && len != 0)) return MQE2E_ERR_INVALID_ARG;
    if (st->done) return MQE2E_ERR_STATE;
    rc = mqe2e_control_frame_decode(&f, frame, len);
    if (rc != MQE2E_OK) return rc;
    if (!mqe2e__control_frame_for(&f, MQE2E_CONTROL_ENROLL, 2, st->session, st->authority_id))
        return MQE2E_ERR_STATE;

    st->done = 1; /* a failed read kills the handshake: no second try */
    rc = mqe2e__control_read(&payload, &cap, &plen, st->hs, &f);
    if (rc != MQE2E_OK) {
        rc = MQE2E_ERR_AUTH;
        goto out;
    }
    rc = mqe2e__control_unpack_update(reply, MQE2E__PAYLOAD_ENROLL_REPLY, payload, plen);
    if (rc != MQE2E_OK) {
        /* Authenticated yet malformed: the authority is broken; same outcome. */
        rc = rc == MQE2E_ERR_NOMEM ? rc : MQE2E_ERR_AUTH;
        goto out;
    }
    if (reply->status != MQE2E_STATUS_OK) {
        int32_t status = reply->status;
        mqe2e_control_update_wipe(reply);
        reply->status = status;
        rc = MQE2E_ERR_POLICY;
        goto out;
    }
    if (reply->credential == NULL) {
        rc = MQE2E_ERR_AUTH;
        goto out;
    }
    rc = mqe2e_credential_verify(&cred, reply->credential, reply->credential_len,
                                 st->authority_sign_public, now);
    if (rc != MQE2E_OK) {
        if (rc != MQE2E_ERR_EXPIRED && rc != MQE2E_ERR_NOMEM) rc = MQE2E_ERR_AUTH;
        goto out;
    }
    if (strcmp(mqe2e_credential_client_id(cred), st->client_id) != 0 ||
        sodium_memcmp(mqe2e_credential_dh_public(cred), st->dh_public, 32) != 0 ||
        sodium_memcmp(mqe2e_credential_sign_public(cred), st->sign_public, 32) != 0) {
        rc = MQE2E_ERR_AUTH;
        goto out;
    }
    if (verified != NULL) {
        *verified = cred;
        cred = NULL;
    }
out:
    mqe2e__control_free_wiped(payload, cap);
    mqe2e_credential_free(cred);
    if (rc != MQE2E_OK && rc != MQE2E_ERR_POLICY) mqe2e_control_update_wipe(reply);
    mqe2e_noise_handshake_free(st->hs);
    st->hs = NULL;
    return rc;
}

void mqe2e_enroll_device_free(mqe2e_enroll_device *st)
{
    if (st == NULL) return;
    mqe2e_noise_handshake_free(st->hs);
    sodium_memzero(st, sizeof *st);
    free(st);
}

/* ------------------------------------------------------------------------ */
/* Authority                                                                 */
/* ------------------------------------------------------------------------ */

/* Process step 1 with a stand-in psk: IKpsk2 mixes the psk only in step 2,
 * so step 1 reads the same without it, and the token (named inside step 1's
 * payload) replaces the stand-in once its MAC checked out. */
static int authority_read1(mqe2e_noise_handshake **hs, uint8_t **payload, size_t *cap, size_t *plen,
                           const uint8_t authority_dh_secret[32], const char *prefix,
                           const mqe2e_control_frame *f, const uint8_t psk[32])
{
    int rc = mqe2e__control_handshake(hs, MQE2E_CONTROL_ENROLL, MQE2E_NOISE_RESPONDER, prefix,
                                      f->session);
    if (rc == MQE2E_OK) rc = mqe2e_noise_handshake_set_local_static(*hs, authority_dh_secret);
    if (rc == MQE2E_OK) rc = mqe2e_noise_handshake_set_psk(*hs, psk);
    if (rc == MQE2E_OK) rc = mqe2e__control_read(payload, cap, plen, *hs, f);
    if (rc != MQE2E_OK) {
        mqe2e_noise_handshake_free(*hs);
        *hs = NULL;
    }
    return rc;
}

int mqe2e_enroll_accept_read(mqe2e_enroll_authority **st, mqe2e_enroll_request *req,
                             const uint8_t authority_dh_secret[32], const char *prefix,
                             const uint8_t *frame, size_t len)
{
    static const uint8_t no_psk[32] = {0};
    mqe2e_enroll_authority *a = NULL;
    mqe2e_noise_handshake *hs = NULL;
    Mqe2e__V1__EnrollRequest *m = NULL;
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
    if (f.kind != MQE2E_CONTROL_ENROLL || f.step != 1) return MQE2E_ERR_STATE;
    if (f.noise_len < 32) return MQE2E_ERR_DECODE;
    if (mqe2e_init() != MQE2E_OK) return MQE2E_ERR_CRYPTO;

    a = malloc(sizeof *a);
    if (a == NULL) return MQE2E_ERR_NOMEM;
    memset(a, 0, sizeof *a);

    rc = authority_read1(&hs, &payload, &cap, &plen, authority_dh_secret, prefix, &f, no_psk);
    if (rc != MQE2E_OK) {
        if (rc != MQE2E_ERR_NOMEM && rc != MQE2E_ERR_DECODE && rc != MQE2E_ERR_TOO_LARGE)
            rc = MQE2E_ERR_AUTH;
        goto out;
    }
    rc = mqe2e_noise_handshake_remote_static(hs, a->req.dh_public);
    if (rc != MQE2E_OK) goto out;

    rc = MQE2E_ERR_AUTH;
    m = mqe2e__v1__enroll_request__unpack(&mqe2e__cred_allocator, plen, payload);
    if (m == NULL || !mqe2e__cred_canonical(&m->base, payload, plen) ||
        m->token_id.len != MQE2E_CONTROL_TOKEN_ID_BYTES || m->sign_public.len != 32 ||
        m->token_mac.len != 32 || m->client_id == NULL || strcmp(m->client_id, f.from) != 0 ||
        !mqe2e__cred_ed25519_public_ok(m->sign_public.data))
        goto out;
    /* The ss token's DH with this key already succeeded, and
     * crypto_scalarmult() refuses the all-zero output every small-order
     * point gives: that is mqe2e__cred_x25519_public_ok(), done once. It is
     * recorded so the credential issued for this key does not redo it. */
    mqe2e__cred_x25519_public_passed(a->req.dh_public);
    memcpy(a->req.token_id, m->token_id.data, MQE2E_CONTROL_TOKEN_ID_BYTES);
    memcpy(a->req.client_id, f.from, sizeof a->req.client_id);
    memcpy(a->req.sign_public, m->sign_public.data, 32);
    memcpy(a->req.session, f.session, MQE2E_CONTROL_SESSION_BYTES);
    memcpy(a->token_mac, m->token_mac.data, 32);
    memcpy(a->e_pub, f.noise, 32);
    /* Kept for step 2: reading step 1 again once the token is known would
     * redo its two DHs for the same state. */
    a->hs = hs;
    hs = NULL;
    a->state = 1;
    rc = MQE2E_OK;
out:
    if (m != NULL) mqe2e__v1__enroll_request__free_unpacked(m, &mqe2e__cred_allocator);
    mqe2e__control_free_wiped(payload, cap);
    mqe2e_noise_handshake_free(hs);
    if (rc != MQE2E_OK) {
        mqe2e_enroll_authority_free(a);
        return rc;
    }
    *req = a->req;
    *st = a;
    return MQE2E_OK;
}

int mqe2e_enroll_accept_verify_mac(mqe2e_enroll_authority *st, const uint8_t token[32])
{
    uint8_t mac[32];
    int rc;

    if (st == NULL || token == NULL) return MQE2E_ERR_INVALID_ARG;
    if (st->state != 1) return MQE2E_ERR_STATE;
    token_mac(mac, token, st->req.session, st->e_pub, st->req.dh_public, st->req.sign_public,
              st->req.client_id);
    if (sodium_memcmp(mac, st->token_mac, sizeof mac) != 0) {
        rc = MQE2E_ERR_AUTH;
        goto out;
    }
    /* The token is step 2's psk (slot 0 of IKpsk2), not yet mixed. */
    rc = mqe2e__noise_handshake_replace_psk(st->hs, 0, token);
    if (rc != MQE2E_OK) rc = MQE2E_ERR_CRYPTO;
out:
    sodium_memzero(mac, sizeof mac);
    if (rc != MQE2E_OK) {
        /* A dead enrollment keeps no handshake keys around. */
        mqe2e_noise_handshake_free(st->hs);
        st->hs = NULL;
    }
    st->state = rc == MQE2E_OK ? 2 : -1;
    return rc;
}

int mqe2e_enroll_accept_write(mqe2e_enroll_authority *st, uint8_t *out, size_t out_cap,
                              size_t *out_len, const char *authority_id,
                              const mqe2e_control_update *reply)
{
    uint8_t *payload = NULL;
    size_t plen = 0;
    int rc;

    if (st == NULL || out == NULL || out_len == NULL || reply == NULL ||
        !mqe2e_client_id_valid(authority_id))
        return MQE2E_ERR_INVALID_ARG;
    if (st->state != 2) return MQE2E_ERR_STATE;
    rc = mqe2e__control_pack_update(&payload, &plen, MQE2E__PAYLOAD_ENROLL_REPLY, reply);
    if (rc != MQE2E_OK) return rc;
    rc = mqe2e__control_write(out, out_cap, out_len, st->hs, MQE2E_CONTROL_ENROLL, authority_id,
                              st->req.session, 2, payload, plen);
    mqe2e__control_free_wiped(payload, plen);
    if (rc == MQE2E_OK) st->state = 3;
    return rc;
}

void mqe2e_enroll_authority_free(mqe2e_enroll_authority *st)
{
    if (st == NULL) return;
    mqe2e_noise_handshake_free(st->hs);
    sodium_memzero(st, sizeof *st);
    free(st);
}
