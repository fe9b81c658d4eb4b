/*
 * Internal to the core: the group and signed-group envelope calls with an
 * extension of the associated data (the bound-property suffix of
 * docs/PROTOCOL.md section 2.5.1), appended after u64be(seq). The public
 * calls of envelope.h are these with no extension.
 */
#ifndef MQE2E_INTERNAL_ENVELOPE_EXT_H
#define MQE2E_INTERNAL_ENVELOPE_EXT_H

#include <stddef.h>
#include <stdint.h>

#include "mqe2e/envelope.h"

/* Bytes appended to the AD; NULL or len 0: none. Borrowed. */
typedef struct mqe2e__ad_ext {
    const uint8_t *bytes;
    size_t len;
} mqe2e__ad_ext;

int mqe2e__envelope_seal_ext(uint8_t *out, size_t out_cap, size_t *out_len,
                             const mqe2e_sender_key *key, const char *topic, const char *group_id,
                             const mqe2e_envelope_header *header, const uint8_t *pt, size_t pt_len,
                             const mqe2e__ad_ext *ext);

int mqe2e__envelope_open_ext(uint8_t *pt, size_t pt_cap, size_t *pt_len,
                             const mqe2e_sender_key *key, const char *topic, const char *group_id,
                             const mqe2e_envelope_view *view, const mqe2e__ad_ext *ext);

int mqe2e__envelope_seal_signed_ext(uint8_t *out, size_t out_cap, size_t *out_len,
                                    const mqe2e_sender_key *key, const char *topic,
                                    const char *group_id, const mqe2e_envelope_header *header,
                                    const uint8_t *pt, size_t pt_len, mqe2e_envelope_sign_fn sign,
                                    void *sign_ctx, const mqe2e__ad_ext *ext);

int mqe2e__envelope_verify_ext(const uint8_t signer_pk[MQE2E_SIGNER_PUBLIC_BYTES],
                               const char *topic, const char *group_id,
                               const mqe2e_envelope_view *view, const mqe2e__ad_ext *ext);

int mqe2e__envelope_open_signed_ext(uint8_t *pt, size_t pt_cap, size_t *pt_len,
                                    const mqe2e_sender_key *key,
                                    const uint8_t signer_pk[MQE2E_SIGNER_PUBLIC_BYTES],
                                    const char *topic, const char *group_id,
                                    const mqe2e_envelope_view *view, const mqe2e__ad_ext *ext);

#endif
