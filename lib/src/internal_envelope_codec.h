/*
 * Hand-rolled protobuf codec of mqe2e.v1.Envelope (the per-message hot path)
 * and the nonce rule, shared by envelope.c, protect.c and the unit tests.
 * The generated protobuf-c code is the reference it is tested against.
 */
#ifndef MQE2E_INTERNAL_ENVELOPE_CODEC_H
#define MQE2E_INTERNAL_ENVELOPE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "mqe2e/envelope.h"

/* Protobuf field numbers of mqe2e.v1.Envelope. */
#define MQE2E__FIELD_BODY_GROUP 1U
#define MQE2E__FIELD_BODY_CHANNEL 2U
#define MQE2E__FIELD_BODY_SIGNED_GROUP 3U
#define MQE2E__FIELD_EPOCH 4U
#define MQE2E__FIELD_SENDER 5U
#define MQE2E__FIELD_SEQ 6U
#define MQE2E__FIELD_SIGNATURE 7U
#define MQE2E__FIELD_INSTANCE 8U

#define MQE2E__WIRE_VARINT 0U
#define MQE2E__WIRE_LEN 2U

/** Longest varint of a uint64. */
#define MQE2E__VARINT_MAX_BYTES 10U

/** Bytes of the minimal varint encoding of @p v (1..10). */
size_t mqe2e__varint_len(uint64_t v);

/** Write the minimal varint of @p v to @p out (room for 10 bytes); returns its length. */
size_t mqe2e__varint_put(uint8_t *out, uint64_t v);

/**
 * Read one varint strictly: truncated, longer than 10 bytes, overflowing 64
 * bits or non-minimal (a final 0x00 byte after a continuation) is refused.
 * @return bytes consumed (1..10), or 0 on any error.
 */
size_t mqe2e__varint_get(uint64_t *v, const uint8_t *in, size_t in_len);

/**
 * Bytes of the envelope header (epoch, sender, instance, seq, body key and
 * body length) that precedes a body of @p body_len bytes; zero-valued scalars
 * are omitted, the instance (6 bytes) is always written except in channel mode.
 */
size_t mqe2e__envelope_header_len(const mqe2e_envelope_header *h, size_t body_len);

/**
 * Write that header. The body key uses h->mode as its field number. @p out
 * must hold mqe2e__envelope_header_len() bytes. @return bytes written.
 */
size_t mqe2e__envelope_header_put(uint8_t *out, const mqe2e_envelope_header *h, size_t body_len);

/**
 * Write the signature field (key, length 64, signature): ::MQE2E_SIGNATURE_FIELD_BYTES
 * bytes. @return bytes written.
 */
size_t mqe2e__envelope_signature_put(uint8_t *out, const uint8_t sig[MQE2E_SIGNATURE_BYTES]);

/** Strict decoder behind mqe2e_envelope_parse() (same return codes); group and signed group bodies. */
int mqe2e__envelope_decode(mqe2e_envelope_view *view, const uint8_t *in, size_t in_len);

/**
 * The fast path of mqe2e__envelope_decode(): only the layout every sealer
 * writes (mqe2e__envelope_header_put(): [epoch] [sender] instance [seq]
 * group-or-signed body [signature], each field at most once, nothing after,
 * every length and range check of the general decoder passed).
 * @return 1 with @p view filled exactly as the general decoder fills it;
 *         0 (view untouched) for anything else, valid or not, which
 *         mqe2e__envelope_decode() then hands to the general decoder, so
 *         every refusal keeps its code and the order of its checks.
 */
int mqe2e__envelope_decode_fast(mqe2e_envelope_view *view, const uint8_t *in, size_t in_len);

/** The general decoder alone (any field order), for tests comparing it with the fast path. */
int mqe2e__envelope_decode_general(mqe2e_envelope_view *view, const uint8_t *in, size_t in_len);

/**
 * Same strict decoder, also accepting a channel body (field 2, mode
 * ::MQE2E_MODE_CHANNEL) but never a signed one (::MQE2E_ERR_SUITE) nor a
 * signature; used by the channel envelopes of channel.c.
 */
int mqe2e__envelope_decode_channel(mqe2e_envelope_view *view, const uint8_t *in, size_t in_len);

/** nonce = iv XOR (u48be(instance) || u48be(seq)); both below 2^48. Defined in envelope.c. */
void mqe2e__envelope_nonce(uint8_t nonce[MQE2E_SENDER_IV_BYTES],
                           const uint8_t iv[MQE2E_SENDER_IV_BYTES], uint64_t instance,
                           uint64_t seq);

#endif
