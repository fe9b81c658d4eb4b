/* Shared by the control-plane modules (control_frame.c, enroll.c, hello.c,
 * push.c, channel.c); not part of the public API. */
#ifndef MQE2E_INTERNAL_CONTROL_H
#define MQE2E_INTERNAL_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#include "mqe2e/control.h"
#include "mqe2e/noise.h"

/* Payload messages that carry an ::mqe2e_control_update. */
enum mqe2e__control_payload {
    MQE2E__PAYLOAD_ENROLL_REPLY = 1,
    MQE2E__PAYLOAD_HELLO_REPLY = 2,
    MQE2E__PAYLOAD_PUSH = 3,
};

/* The strict decoders of the payloads inside Noise messages, for fuzzing
 * (tests/fuzz/fuzz_payloads.c) and tests: the same code the handshakes use.
 * MQE2E_OK or MQE2E_ERR_AUTH. */
int mqe2e__channel_hello_check(const uint8_t *payload, size_t plen, const char *from,
                               int with_cred);
int mqe2e__operator_request_check(const uint8_t *payload, size_t len);

/* Full Noise protocol name of a frame kind, NULL for an unknown kind. */
const char *mqe2e__control_protocol_name(uint32_t kind);

/* Last step of a kind's pattern (0 for an unknown kind). */
uint32_t mqe2e__control_max_step(uint32_t kind);

/* New handshake of @p kind with the prologue
 * "mqe2e/v1/" || kind name || 0x00 || prefix || 0x00 || session.
 * Returns the mqe2e_noise_handshake_new codes, INVALID_ARG for a bad prefix. */
int mqe2e__control_handshake(mqe2e_noise_handshake **hs, uint32_t kind, int role,
                             const char *prefix,
                             const uint8_t session[MQE2E_CONTROL_SESSION_BYTES]);

/* Write the next Noise message carrying @p payload straight into a frame in
 * @p out. The payload is only read; the caller wipes it. */
int mqe2e__control_write(uint8_t *out, size_t out_cap, size_t *out_len, mqe2e_noise_handshake *hs,
                         uint32_t kind, const char *from,
                         const uint8_t session[MQE2E_CONTROL_SESSION_BYTES], uint32_t step,
                         const uint8_t *payload, size_t payload_len);

/* Read the Noise message of a decoded frame. *payload is malloc()ed (at
 * least one byte); release it with mqe2e__control_free_wiped(*payload,
 * *payload_len... capacity). Returns the mqe2e_noise_read_message codes. */
int mqe2e__control_read(uint8_t **payload, size_t *payload_cap, size_t *payload_len,
                        mqe2e_noise_handshake *hs, const mqe2e_control_frame *f);

/* Wipe @p len bytes and free. NULL is a no-op. */
void mqe2e__control_free_wiped(void *p, size_t len);

/* Pack an update as @p which into a malloc()ed buffer (wipe with
 * mqe2e__control_free_wiped). INVALID_ARG on an invalid field. */
int mqe2e__control_pack_update(uint8_t **out, size_t *out_len, int which,
                               const mqe2e_control_update *u);

/* Strictly unpack (canonical, valid fields) into @p u, zeroed first; on
 * failure @p u is wiped. Returns OK, DECODE or NOMEM. */
int mqe2e__control_unpack_update(mqe2e_control_update *u, int which, const uint8_t *in, size_t len);

/* Copy a NUL-terminated string of 1..max bytes into dst[max + 1]; false if
 * it is empty, longer or not terminated within max + 1 bytes. */
int mqe2e__control_copy_id(char *dst, const char *src, size_t max);

/* Is @p f the given step of the handshake named by @p session (and sent by
 * @p from, unless NULL)? Frames of other handshakes are left to other handlers. */
int mqe2e__control_frame_for(const mqe2e_control_frame *f, uint32_t kind, uint32_t step,
                             const uint8_t session[MQE2E_CONTROL_SESSION_BYTES], const char *from);

#endif
