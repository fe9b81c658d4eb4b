/* Strict protobuf codec of mqe2e.v1.Envelope; see docs/PROTOCOL.md. */
#include "internal_envelope_codec.h"

#include <string.h>

#include "mqe2e/error.h"

size_t mqe2e__varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80U) {
        v >>= 7;
        n++;
    }
    return n;
}

size_t mqe2e__varint_put(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80U) {
        out[n++] = (uint8_t)((v & 0x7FU) | 0x80U);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

size_t mqe2e__varint_get(uint64_t *v, const uint8_t *in, size_t in_len)
{
    uint64_t acc = 0;
    size_t i;

    for (i = 0; i < in_len && i < MQE2E__VARINT_MAX_BYTES; i++) {
        uint8_t b = in[i];
        /* The 10th byte may carry only the 64th bit. */
        if (i == MQE2E__VARINT_MAX_BYTES - 1U && b > 1U) {
            return 0;
        }
        acc |= (uint64_t)(b & 0x7FU) << (7U * i);
        if ((b & 0x80U) == 0) {
            /* A zero final byte after a continuation adds nothing: non-minimal. */
            if (i > 0 && b == 0) {
                return 0;
            }
            *v = acc;
            return i + 1;
        }
    }
    return 0; /* truncated or longer than 10 bytes */
}

static size_t key_len(uint32_t field)
{
    return mqe2e__varint_len((uint64_t)field << 3);
}

size_t mqe2e__envelope_header_len(const mqe2e_envelope_header *h, size_t body_len)
{
    size_t n = 0;
    if (h->epoch != 0) {
        n += key_len(MQE2E__FIELD_EPOCH) + mqe2e__varint_len(h->epoch);
    }
    if (h->sender_id != 0) {
        n += key_len(MQE2E__FIELD_SENDER) + mqe2e__varint_len(h->sender_id);
    }
    if (h->mode != MQE2E_MODE_CHANNEL) {
        n += key_len(MQE2E__FIELD_INSTANCE) + 1U + MQE2E_INSTANCE_BYTES;
    }
    if (h->seq != 0) {
        n += key_len(MQE2E__FIELD_SEQ) + mqe2e__varint_len(h->seq);
    }
    n += key_len((uint32_t)h->mode) + mqe2e__varint_len((uint64_t)body_len);
    return n;
}

static size_t put_key(uint8_t *out, uint32_t field, uint32_t wire)
{
    return mqe2e__varint_put(out, ((uint64_t)field << 3) | wire);
}

size_t mqe2e__envelope_header_put(uint8_t *out, const mqe2e_envelope_header *h, size_t body_len)
{
    size_t n = 0;
    /* proto3: zero-valued scalars are not written at all. */
    if (h->epoch != 0) {
        n += put_key(out + n, MQE2E__FIELD_EPOCH, MQE2E__WIRE_VARINT);
        n += mqe2e__varint_put(out + n, h->epoch);
    }
    if (h->sender_id != 0) {
        n += put_key(out + n, MQE2E__FIELD_SENDER, MQE2E__WIRE_VARINT);
        n += mqe2e__varint_put(out + n, h->sender_id);
    }
    /* Group and signed modes always carry the 6-byte instance (its value
     * may be zero: it is random). */
    if (h->mode != MQE2E_MODE_CHANNEL) {
        n += put_key(out + n, MQE2E__FIELD_INSTANCE, MQE2E__WIRE_LEN);
        out[n++] = (uint8_t)MQE2E_INSTANCE_BYTES;
        for (unsigned i = 0; i < MQE2E_INSTANCE_BYTES; i++) {
            out[n++] = (uint8_t)(h->instance >> (8U * (MQE2E_INSTANCE_BYTES - 1U - i)));
        }
    }
    if (h->seq != 0) {
        n += put_key(out + n, MQE2E__FIELD_SEQ, MQE2E__WIRE_VARINT);
        n += mqe2e__varint_put(out + n, h->seq);
    }
    n += put_key(out + n, (uint32_t)h->mode, MQE2E__WIRE_LEN);
    n += mqe2e__varint_put(out + n, (uint64_t)body_len);
    return n;
}

size_t mqe2e__envelope_signature_put(uint8_t *out, const uint8_t sig[MQE2E_SIGNATURE_BYTES])
{
    size_t n = put_key(out, MQE2E__FIELD_SIGNATURE, MQE2E__WIRE_LEN);
    n += mqe2e__varint_put(out + n, MQE2E_SIGNATURE_BYTES);
    memcpy(out + n, sig, MQE2E_SIGNATURE_BYTES);
    return n + MQE2E_SIGNATURE_BYTES;
}

/* @p channel: accept a mode-2 (channel) body instead of the group and signed ones. */
static int decode_modes(mqe2e_envelope_view *view, const uint8_t *in, size_t in_len, int channel)
{
    enum { SEEN_EPOCH = 1, SEEN_SENDER = 2, SEEN_SEQ = 4, SEEN_BODY = 8, SEEN_SIG = 16,
           SEEN_INSTANCE = 32 };
    unsigned seen = 0;
    size_t pos = 0;
    mqe2e_envelope_view v;

    memset(&v, 0, sizeof v);
    while (pos < in_len) {
        uint64_t key, val;
        uint64_t field;
        uint32_t wire;
        size_t n = mqe2e__varint_get(&key, in + pos, in_len - pos);
        unsigned bit;
        int body_channel, body_signed;

        if (n == 0 || key > UINT32_MAX) {
            return MQE2E_ERR_DECODE;
        }
        pos += n;
        field = key >> 3;
        wire = (uint32_t)(key & 7U);
        /* A channel body has the group body's layout; only its mode differs. */
        body_channel = channel && field == MQE2E__FIELD_BODY_CHANNEL;
        if (body_channel) {
            field = MQE2E__FIELD_BODY_GROUP;
        }

        /* The signed body has the group body's layout too; channel envelopes
         * never carry one. */
        body_signed = !channel && field == MQE2E__FIELD_BODY_SIGNED_GROUP;
        if (body_signed) {
            field = MQE2E__FIELD_BODY_GROUP;
        }

        switch (field) {
        case MQE2E__FIELD_BODY_CHANNEL:
        case MQE2E__FIELD_BODY_SIGNED_GROUP:
            /* A body of a mode this decoder does not serve. */
            return MQE2E_ERR_SUITE;
        case MQE2E__FIELD_SIGNATURE:
            if (channel || wire != MQE2E__WIRE_LEN || (seen & SEEN_SIG) != 0) {
                return MQE2E_ERR_DECODE;
            }
            n = mqe2e__varint_get(&val, in + pos, in_len - pos);
            /* Exactly one Ed25519 signature: anything else is malformed. */
            if (n == 0 || val != MQE2E_SIGNATURE_BYTES || val > (uint64_t)(in_len - pos - n)) {
                return MQE2E_ERR_DECODE;
            }
            pos += n;
            v.signature = in + pos;
            v.signature_len = MQE2E_SIGNATURE_BYTES;
            pos += MQE2E_SIGNATURE_BYTES;
            seen |= SEEN_SIG;
            break;
        case MQE2E__FIELD_INSTANCE:
            /* Exactly 6 bytes, big-endian; channel envelopes never carry one. */
            if (channel || wire != MQE2E__WIRE_LEN || (seen & SEEN_INSTANCE) != 0) {
                return MQE2E_ERR_DECODE;
            }
            n = mqe2e__varint_get(&val, in + pos, in_len - pos);
            if (n == 0 || val != MQE2E_INSTANCE_BYTES || val > (uint64_t)(in_len - pos - n)) {
                return MQE2E_ERR_DECODE;
            }
            pos += n;
            v.header.instance = 0;
            for (unsigned i = 0; i < MQE2E_INSTANCE_BYTES; i++) {
                v.header.instance = (v.header.instance << 8) | in[pos + i];
            }
            pos += MQE2E_INSTANCE_BYTES;
            seen |= SEEN_INSTANCE;
            break;
        case MQE2E__FIELD_BODY_GROUP:
            if (wire != MQE2E__WIRE_LEN || (seen & SEEN_BODY) != 0) {
                return MQE2E_ERR_DECODE;
            }
            n = mqe2e__varint_get(&val, in + pos, in_len - pos);
            if (n == 0) {
                return MQE2E_ERR_DECODE;
            }
            pos += n;
            if (val > (uint64_t)(in_len - pos)) {
                return MQE2E_ERR_DECODE;
            }
            v.header.mode = body_channel  ? MQE2E_MODE_CHANNEL
                            : body_signed ? MQE2E_MODE_SIGNED_GROUP
                                          : MQE2E_MODE_GROUP;
            v.ciphertext = in + pos;
            v.ciphertext_len = (size_t)val;
            pos += (size_t)val;
            seen |= SEEN_BODY;
            break;
        case MQE2E__FIELD_EPOCH:
        case MQE2E__FIELD_SENDER:
        case MQE2E__FIELD_SEQ:
            bit = field == MQE2E__FIELD_EPOCH    ? SEEN_EPOCH
                  : field == MQE2E__FIELD_SENDER ? SEEN_SENDER
                                                 : SEEN_SEQ;
            if (wire != MQE2E__WIRE_VARINT || (seen & bit) != 0) {
                return MQE2E_ERR_DECODE;
            }
            n = mqe2e__varint_get(&val, in + pos, in_len - pos);
            if (n == 0) {
                return MQE2E_ERR_DECODE;
            }
            pos += n;
            if (field == MQE2E__FIELD_SEQ) {
                v.header.seq = val;
            } else if (val > UINT32_MAX) {
                return MQE2E_ERR_DECODE;
            } else if (field == MQE2E__FIELD_EPOCH) {
                v.header.epoch = (uint32_t)val;
            } else {
                v.header.sender_id = (uint32_t)val;
            }
            seen |= bit;
            break;
        default:
            return MQE2E_ERR_DECODE;
        }
    }
    if ((seen & SEEN_BODY) == 0 || v.ciphertext_len < MQE2E_TAG_BYTES) {
        return MQE2E_ERR_DECODE;
    }
    /* Group and signed envelopes carry an instance and a 48-bit seq (the
     * nonce is iv XOR (instance || seq)); channel envelopes carry neither
     * limit (their seq is the Noise nonce). */
    if (!channel && ((seen & SEEN_INSTANCE) == 0 || v.header.seq > MQE2E_SEQ_MAX)) {
        return MQE2E_ERR_DECODE;
    }
    /* A signature belongs to the signed mode and the signed mode to a signature. */
    if (((seen & SEEN_SIG) != 0) != (v.header.mode == MQE2E_MODE_SIGNED_GROUP)) {
        return MQE2E_ERR_DECODE;
    }
    if (v.ciphertext_len - MQE2E_TAG_BYTES > MQE2E_ENVELOPE_MAX_PAYLOAD) {
        return MQE2E_ERR_TOO_LARGE;
    }
    *view = v;
    return MQE2E_OK;
}

/* One varint of the fast path: single-byte values inline, the rest through
 * the general reader. 0 when it is not there or not minimal. */
static inline size_t fast_varint(uint64_t *v, const uint8_t *in, size_t pos, size_t in_len)
{
    if (pos < in_len && in[pos] < 0x80U) {
        *v = in[pos];
        return 1;
    }
    return pos < in_len ? mqe2e__varint_get(v, in + pos, in_len - pos) : 0;
}

/* Declared in internal_envelope_codec.h. Hot path: a plain loop over the
 * fixed layout instead of the general field dispatch (decode_modes() was
 * ~570 instructions per 256 B message). */
int mqe2e__envelope_decode_fast(mqe2e_envelope_view *view, const uint8_t *in, size_t in_len)
{
    mqe2e_envelope_view v;
    uint64_t val = 0;
    size_t pos = 0, n;

    v.header.epoch = 0;
    v.header.sender_id = 0;
    v.header.seq = 0;
    v.signature = NULL;
    v.signature_len = 0;
    if (pos < in_len && in[pos] == ((MQE2E__FIELD_EPOCH << 3) | MQE2E__WIRE_VARINT)) {
        if ((n = fast_varint(&val, in, pos + 1U, in_len)) == 0 || val > UINT32_MAX) return 0;
        v.header.epoch = (uint32_t)val;
        pos += 1U + n;
    }
    if (pos < in_len && in[pos] == ((MQE2E__FIELD_SENDER << 3) | MQE2E__WIRE_VARINT)) {
        if ((n = fast_varint(&val, in, pos + 1U, in_len)) == 0 || val > UINT32_MAX) return 0;
        v.header.sender_id = (uint32_t)val;
        pos += 1U + n;
    }
    if (in_len - pos < 2U + MQE2E_INSTANCE_BYTES ||
        in[pos] != ((MQE2E__FIELD_INSTANCE << 3) | MQE2E__WIRE_LEN) ||
        in[pos + 1U] != MQE2E_INSTANCE_BYTES)
        return 0;
    pos += 2U;
    v.header.instance = 0;
    for (unsigned i = 0; i < MQE2E_INSTANCE_BYTES; i++)
        v.header.instance = (v.header.instance << 8) | in[pos + i];
    pos += MQE2E_INSTANCE_BYTES;
    if (pos < in_len && in[pos] == ((MQE2E__FIELD_SEQ << 3) | MQE2E__WIRE_VARINT)) {
        if ((n = fast_varint(&val, in, pos + 1U, in_len)) == 0 || val > MQE2E_SEQ_MAX) return 0;
        v.header.seq = val;
        pos += 1U + n;
    }
    if (pos >= in_len) return 0;
    if (in[pos] == ((MQE2E__FIELD_BODY_GROUP << 3) | MQE2E__WIRE_LEN))
        v.header.mode = MQE2E_MODE_GROUP;
    else if (in[pos] == ((MQE2E__FIELD_BODY_SIGNED_GROUP << 3) | MQE2E__WIRE_LEN))
        v.header.mode = MQE2E_MODE_SIGNED_GROUP;
    else
        return 0;
    if ((n = fast_varint(&val, in, pos + 1U, in_len)) == 0) return 0;
    pos += 1U + n;
    if (val > (uint64_t)(in_len - pos) || val < MQE2E_TAG_BYTES ||
        val - MQE2E_TAG_BYTES > MQE2E_ENVELOPE_MAX_PAYLOAD)
        return 0;
    v.ciphertext = in + pos;
    v.ciphertext_len = (size_t)val;
    pos += (size_t)val;
    if (v.header.mode == MQE2E_MODE_SIGNED_GROUP) {
        if (in_len - pos != 2U + MQE2E_SIGNATURE_BYTES ||
            in[pos] != ((MQE2E__FIELD_SIGNATURE << 3) | MQE2E__WIRE_LEN) ||
            in[pos + 1U] != MQE2E_SIGNATURE_BYTES)
            return 0;
        v.signature = in + pos + 2U;
        v.signature_len = MQE2E_SIGNATURE_BYTES;
    } else if (pos != in_len) {
        return 0;
    }
    *view = v;
    return 1;
}

int mqe2e__envelope_decode(mqe2e_envelope_view *view, const uint8_t *in, size_t in_len)
{
    if (mqe2e__envelope_decode_fast(view, in, in_len)) return MQE2E_OK;
    return decode_modes(view, in, in_len, 0);
}

int mqe2e__envelope_decode_general(mqe2e_envelope_view *view, const uint8_t *in, size_t in_len)
{
    return decode_modes(view, in, in_len, 0);
}

int mqe2e__envelope_decode_channel(mqe2e_envelope_view *view, const uint8_t *in, size_t in_len)
{
    return decode_modes(view, in, in_len, 1);
}
