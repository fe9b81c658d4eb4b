/* Push: one-way Noise_K from the authority to one client (key rotation,
 * revocation). Stateless on both sides; replay is refused by push_seq. */
#include <sodium.h>
#include <string.h>

#include "internal_control.h"
#include "internal_cred.h"
#include "mqe2e/error.h"

int mqe2e_push_seal(uint8_t *out, size_t out_cap, size_t *out_len,
                    const uint8_t authority_dh_secret[32], const uint8_t client_dh_public[32],
                    const char *prefix, const char *authority_id, const mqe2e_control_update *push)
{
    mqe2e_noise_handshake *hs = NULL;
    uint8_t session[MQE2E_CONTROL_SESSION_BYTES];
    uint8_t *payload = NULL;
    size_t plen = 0;
    int rc;

    if (out == NULL || out_len == NULL || authority_dh_secret == NULL || client_dh_public == NULL ||
        !mqe2e_control_prefix_valid(prefix) || !mqe2e_client_id_valid(authority_id) || push == NULL)
        return MQE2E_ERR_INVALID_ARG;
    if (mqe2e_init() != MQE2E_OK) return MQE2E_ERR_CRYPTO;
    if (!mqe2e__cred_x25519_public_ok(client_dh_public)) return MQE2E_ERR_AUTH;
    rc = mqe2e__control_pack_update(&payload, &plen, MQE2E__PAYLOAD_PUSH, push);
    if (rc != MQE2E_OK) return rc;
    randombytes_buf(session, sizeof session);
    rc = mqe2e__control_handshake(&hs, MQE2E_CONTROL_PUSH, MQE2E_NOISE_INITIATOR, prefix, session);
    if (rc == MQE2E_OK) rc = mqe2e_noise_handshake_set_local_static(hs, authority_dh_secret);
    if (rc == MQE2E_OK) rc = mqe2e_noise_handshake_set_remote_static(hs, client_dh_public);
    if (rc == MQE2E_OK)
        rc = mqe2e__control_write(out, out_cap, out_len, hs, MQE2E_CONTROL_PUSH, authority_id,
                                  session, 1, payload, plen);
    mqe2e_noise_handshake_free(hs);
    mqe2e__control_free_wiped(payload, plen);
    return rc;
}

int mqe2e_push_open(mqe2e_control_update *push, const uint8_t client_dh_secret[32],
                    const uint8_t authority_dh_public[32], const char *prefix,
                    const char *authority_id, const uint8_t *frame, size_t len,
                    uint64_t last_push_seq)
{
    mqe2e_noise_handshake *hs = NULL;
    mqe2e_control_frame f;
    uint8_t *payload = NULL;
    size_t cap = 0, plen = 0;
    int rc;

    if (push != NULL) memset(push, 0, sizeof *push);
    if (push == NULL || client_dh_secret == NULL || authority_dh_public == NULL ||
        !mqe2e_control_prefix_valid(prefix) || !mqe2e_client_id_valid(authority_id) ||
        (frame == NULL && len != 0))
        return MQE2E_ERR_INVALID_ARG;
    rc = mqe2e_control_frame_decode(&f, frame, len);
    if (rc != MQE2E_OK) return rc;
    if (f.kind != MQE2E_CONTROL_PUSH || f.step != 1 || strcmp(f.from, authority_id) != 0)
        return MQE2E_ERR_STATE;
    if (mqe2e_init() != MQE2E_OK) return MQE2E_ERR_CRYPTO;
    rc =
        mqe2e__control_handshake(&hs, MQE2E_CONTROL_PUSH, MQE2E_NOISE_RESPONDER, prefix, f.session);
    if (rc == MQE2E_OK) rc = mqe2e_noise_handshake_set_local_static(hs, client_dh_secret);
    if (rc == MQE2E_OK) rc = mqe2e_noise_handshake_set_remote_static(hs, authority_dh_public);
    if (rc != MQE2E_OK) goto out;
    rc = mqe2e__control_read(&payload, &cap, &plen, hs, &f);
    if (rc != MQE2E_OK) {
        if (rc != MQE2E_ERR_NOMEM && rc != MQE2E_ERR_DECODE && rc != MQE2E_ERR_TOO_LARGE)
            rc = MQE2E_ERR_AUTH;
        goto out;
    }
    rc = mqe2e__control_unpack_update(push, MQE2E__PAYLOAD_PUSH, payload, plen);
    if (rc != MQE2E_OK) {
        rc = rc == MQE2E_ERR_NOMEM ? rc : MQE2E_ERR_AUTH;
        goto out;
    }
    /* Checked after authentication: only the authority can name a push_seq. */
    if (push->push_seq <= last_push_seq) {
        mqe2e_control_update_wipe(push);
        rc = MQE2E_ERR_REPLAY;
    }
out:
    mqe2e__control_free_wiped(payload, cap);
    mqe2e_noise_handshake_free(hs);
    return rc;
}
