/* Group envelope: key schedule, nonce, associated data, AEAD and the signed
 * group mode's sender signature (docs/PROTOCOL.md). */
#include "mqe2e/envelope.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "internal_envelope_codec.h"
#include "internal_envelope_ext.h"
#include "mqe2e/error.h"
#include "mqe2e/hkdf.h"
#include "mqe2e/version.h"

#define SALT_GROUP "mqe2e/v1/group"
#define LABEL_KEY "mqe2e/v1/sender-key"
#define LABEL_IV "mqe2e/v1/sender-iv"
#define SUITE_CHACHA20POLY1305_IETF 1U
/* Domain of the sender signature in signed group mode. */
#define SIGNED_DOMAIN "mqe2e/v1/signed"
/* Signed strings of small messages stay on the stack; larger ones go to the heap. */
#define SIG_STACK_BYTES 1536U

/* AD = ver|mode|suite (3) + u16 topic len (2) + u8 group len (1) + epoch, sender (8)
 * + instance (6) + seq (8). */
#define AD_FIXED_BYTES 28U
/* AD of topics up to ~512 bytes stays on the stack; longer ones go to the heap. */
#define AD_STACK_BYTES 800U

_Static_assert(crypto_aead_chacha20poly1305_ietf_KEYBYTES == MQE2E_SENDER_KEY_BYTES, "key size");
_Static_assert(crypto_aead_chacha20poly1305_ietf_NPUBBYTES == MQE2E_SENDER_IV_BYTES, "nonce size");
_Static_assert(crypto_aead_chacha20poly1305_ietf_ABYTES == MQE2E_TAG_BYTES, "tag size");
_Static_assert(crypto_sign_BYTES == MQE2E_SIGNATURE_BYTES, "signature size");
_Static_assert(crypto_sign_PUBLICKEYBYTES == MQE2E_SIGNER_PUBLIC_BYTES, "signer key size");
/* Signature field: key (7 << 3 | 2 = 0x3a), length 0x40, signature. */
_Static_assert(MQE2E_SIGNATURE_FIELD_BYTES == 2U + MQE2E_SIGNATURE_BYTES, "signature field");
/* Largest header: epoch 1+5, sender 1+5, instance 1+1+6, seq below 2^48 1+7,
 * body key 1 + length of a body of MQE2E_ENVELOPE_MAX_PAYLOAD + 16 bytes
 * (2^28 + 16: 5 varint bytes). A channel header (no instance, seq 1+10) is 29. */
_Static_assert(MQE2E_ENVELOPE_MAX_HEADER_BYTES == 6U + 6U + 8U + 8U + 1U + 5U, "max header");
_Static_assert(MQE2E_ENVELOPE_MAX_HEADER_BYTES >= 6U + 6U + 11U + 1U + 5U, "channel header");

static void put_u32be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put_u64be(uint8_t *p, uint64_t v)
{
    put_u32be(p, (uint32_t)(v >> 32));
    put_u32be(p + 4, (uint32_t)v);
}

/* Length of a NUL-terminated string, or SIZE_MAX if longer than max. */
static size_t bounded_len(const char *s, size_t max)
{
    size_t n = 0;
    while (s[n] != '\0') {
        if (n == max) {
            return SIZE_MAX;
        }
        n++;
    }
    return n;
}

static int check_names(const char *topic, const char *group_id, size_t *topic_len,
                       size_t *group_len)
{
    if (topic == NULL || group_id == NULL) {
        return MQE2E_ERR_INVALID_ARG;
    }
    *topic_len = bounded_len(topic, MQE2E_TOPIC_MAX_BYTES);
    *group_len = bounded_len(group_id, MQE2E_GROUP_ID_MAX_BYTES);
    if (*topic_len == 0 || *topic_len == SIZE_MAX || *group_len == 0 || *group_len == SIZE_MAX) {
        return MQE2E_ERR_INVALID_ARG;
    }
    return MQE2E_OK;
}

int mqe2e_sender_key_derive(mqe2e_sender_key *out, const uint8_t secret[MQE2E_GROUP_SECRET_BYTES],
                            const char *group_id, uint32_t epoch, uint32_t sender_id)
{
    /* label (<= 19) | u8 len | group id | u32be epoch | u32be sender */
    uint8_t info[sizeof LABEL_KEY - 1U + 1U + MQE2E_GROUP_ID_MAX_BYTES + 8U];
    uint8_t prk[MQE2E_HKDF_PRK_BYTES];
    size_t group_len, suffix, label_len;
    int rc;

    if (out == NULL) {
        return MQE2E_ERR_INVALID_ARG;
    }
    if (secret == NULL || group_id == NULL) {
        rc = MQE2E_ERR_INVALID_ARG;
        goto out;
    }
    group_len = bounded_len(group_id, MQE2E_GROUP_ID_MAX_BYTES);
    if (group_len == 0 || group_len == SIZE_MAX) {
        rc = MQE2E_ERR_INVALID_ARG;
        goto out;
    }
    rc = mqe2e_hkdf_extract(prk, (const uint8_t *)SALT_GROUP, sizeof SALT_GROUP - 1U, secret,
                            MQE2E_GROUP_SECRET_BYTES);
    if (rc != MQE2E_OK) {
        goto out;
    }

    /* The suffix is written once, after the longer label; the shorter label
     * is then slid in front of it for the IV. */
    label_len = sizeof LABEL_KEY - 1U;
    info[label_len] = (uint8_t)group_len;
    memcpy(info + label_len + 1U, group_id, group_len);
    put_u32be(info + label_len + 1U + group_len, epoch);
    put_u32be(info + label_len + 1U + group_len + 4U, sender_id);
    suffix = 1U + group_len + 8U;
    memcpy(info, LABEL_KEY, label_len);
    rc = mqe2e_hkdf_expand(out->key, sizeof out->key, prk, info, label_len + suffix);
    if (rc != MQE2E_OK) {
        goto out;
    }
    memcpy(info + 1, LABEL_IV, sizeof LABEL_IV - 1U);
    rc = mqe2e_hkdf_expand(out->iv, sizeof out->iv, prk, info + 1, label_len - 1U + suffix);

out:
    sodium_memzero(prk, sizeof prk);
    if (rc != MQE2E_OK) {
        sodium_memzero(out, sizeof *out);
    }
    return rc;
}

void mqe2e_sender_key_wipe(mqe2e_sender_key *key)
{
    if (key != NULL) {
        sodium_memzero(key, sizeof *key);
    }
}

size_t mqe2e_envelope_sealed_bound(size_t pt_len)
{
    const size_t extra = MQE2E_TAG_BYTES + MQE2E_ENVELOPE_MAX_HEADER_BYTES;
    return pt_len > SIZE_MAX - extra ? SIZE_MAX : pt_len + extra;
}

static void put_u48be(uint8_t *p, uint64_t v)
{
    for (unsigned i = 0; i < 6U; i++) {
        p[i] = (uint8_t)(v >> (8U * (5U - i)));
    }
}

void mqe2e__envelope_nonce(uint8_t nonce[MQE2E_SENDER_IV_BYTES],
                           const uint8_t iv[MQE2E_SENDER_IV_BYTES], uint64_t instance,
                           uint64_t seq)
{
    uint8_t s[MQE2E_SENDER_IV_BYTES];
    put_u48be(s, instance);
    put_u48be(s + 6, seq);
    for (size_t i = 0; i < MQE2E_SENDER_IV_BYTES; i++) {
        nonce[i] = (uint8_t)(iv[i] ^ s[i]);
    }
}

/* Group and signed modes: instance and seq must fit their 48 bits. */
static int header_in_range(const mqe2e_envelope_header *h)
{
    return h->instance <= MQE2E_INSTANCE_MAX && h->seq <= MQE2E_SEQ_MAX;
}

/*
 * Builds the associated data into stack_buf when it fits, else into a heap
 * buffer returned in *heap (caller frees). The AD holds no secret.
 */
static int build_ad(const uint8_t **ad, size_t *ad_len, uint8_t *stack_buf, size_t stack_cap,
                    uint8_t **heap, const char *topic, size_t topic_len, const char *group_id,
                    size_t group_len, const mqe2e_envelope_header *h, const mqe2e__ad_ext *ext)
{
    const size_t ext_len = ext != NULL ? ext->len : 0U;
    size_t n = AD_FIXED_BYTES + topic_len + group_len;

    if (ext_len > SIZE_MAX - n) return MQE2E_ERR_TOO_LARGE;
    n += ext_len;
    uint8_t *p = stack_buf;

    *heap = NULL;
    if (n > stack_cap) {
        *heap = malloc(n);
        if (*heap == NULL) {
            return MQE2E_ERR_NOMEM;
        }
        p = *heap;
    }
    p[0] = (uint8_t)MQE2E_FORMAT_VERSION;
    p[1] = (uint8_t)h->mode;
    p[2] = (uint8_t)SUITE_CHACHA20POLY1305_IETF;
    p[3] = (uint8_t)(topic_len >> 8);
    p[4] = (uint8_t)topic_len;
    memcpy(p + 5, topic, topic_len);
    p[5 + topic_len] = (uint8_t)group_len;
    memcpy(p + 6 + topic_len, group_id, group_len);
    put_u32be(p + 6 + topic_len + group_len, h->epoch);
    put_u32be(p + 10 + topic_len + group_len, h->sender_id);
    put_u48be(p + 14 + topic_len + group_len, h->instance);
    put_u64be(p + 20 + topic_len + group_len, h->seq);
    if (ext_len > 0) memcpy(p + AD_FIXED_BYTES + topic_len + group_len, ext->bytes, ext_len);
    *ad = p;
    *ad_len = n;
    return MQE2E_OK;
}

int mqe2e__envelope_seal_ext(uint8_t *out, size_t out_cap, size_t *out_len,
                             const mqe2e_sender_key *key, const char *topic, const char *group_id,
                             const mqe2e_envelope_header *header, const uint8_t *pt,
                             size_t pt_len, const mqe2e__ad_ext *ext)
{
    uint8_t ad_stack[AD_STACK_BYTES];
    uint8_t *ad_heap = NULL;
    const uint8_t *ad;
    size_t ad_len, topic_len, group_len, hlen, body_len;
    uint8_t nonce[MQE2E_SENDER_IV_BYTES];
    int rc;

    if (out == NULL || out_len == NULL || key == NULL || header == NULL ||
        (pt == NULL && pt_len != 0)) {
        return MQE2E_ERR_INVALID_ARG;
    }
    rc = check_names(topic, group_id, &topic_len, &group_len);
    if (rc != MQE2E_OK) {
        return rc;
    }
    if (header->mode != MQE2E_MODE_GROUP) {
        return header->mode == MQE2E_MODE_CHANNEL || header->mode == MQE2E_MODE_SIGNED_GROUP
                   ? MQE2E_ERR_SUITE
                   : MQE2E_ERR_INVALID_ARG;
    }
    if (!header_in_range(header)) {
        return MQE2E_ERR_INVALID_ARG;
    }
    if (pt_len > MQE2E_ENVELOPE_MAX_PAYLOAD) {
        return MQE2E_ERR_TOO_LARGE;
    }
    body_len = pt_len + MQE2E_TAG_BYTES;
    hlen = mqe2e__envelope_header_len(header, body_len);
    if (out_cap < hlen || out_cap - hlen < body_len) {
        return MQE2E_ERR_BUFFER_TOO_SMALL;
    }
    rc = build_ad(&ad, &ad_len, ad_stack, sizeof ad_stack, &ad_heap, topic, topic_len, group_id,
                  group_len, header, ext);
    if (rc != MQE2E_OK) {
        return rc;
    }
    mqe2e__envelope_header_put(out, header, body_len);
    mqe2e__envelope_nonce(nonce, key->iv, header->instance, header->seq);
    /* Detached so the tag lands right after the ciphertext: body = ct || tag. */
    crypto_aead_chacha20poly1305_ietf_encrypt_detached(
        out + hlen, out + hlen + pt_len, NULL, pt, (unsigned long long)pt_len, ad,
        (unsigned long long)ad_len, NULL, nonce, key->key);
    *out_len = hlen + body_len;
    sodium_memzero(nonce, sizeof nonce);
    free(ad_heap);
    return MQE2E_OK;
}

int mqe2e_envelope_parse(mqe2e_envelope_view *view, const uint8_t *in, size_t in_len)
{
    if (view == NULL || (in == NULL && in_len != 0)) {
        return MQE2E_ERR_INVALID_ARG;
    }
    return mqe2e__envelope_decode(view, in, in_len);
}

/* AEAD open of a group or signed-group body; @p mode is the one the caller serves. */
static int open_core(uint8_t *pt, size_t pt_cap, size_t *pt_len, const mqe2e_sender_key *key,
                     const char *topic, const char *group_id, const mqe2e_envelope_view *view,
                     mqe2e_envelope_mode mode, const mqe2e__ad_ext *ext)
{
    uint8_t ad_stack[AD_STACK_BYTES];
    uint8_t *ad_heap = NULL;
    const uint8_t *ad;
    size_t ad_len, topic_len, group_len, m_len;
    uint8_t nonce[MQE2E_SENDER_IV_BYTES];
    int rc;

    if ((pt == NULL && pt_cap != 0) || pt_len == NULL || key == NULL || view == NULL ||
        view->ciphertext == NULL || view->ciphertext_len < MQE2E_TAG_BYTES) {
        rc = MQE2E_ERR_INVALID_ARG;
        goto out;
    }
    rc = check_names(topic, group_id, &topic_len, &group_len);
    if (rc != MQE2E_OK) {
        goto out;
    }
    if (view->header.mode != mode) {
        rc = MQE2E_ERR_SUITE;
        goto out;
    }
    if (!header_in_range(&view->header)) {
        rc = MQE2E_ERR_AUTH; /* no sender seals it: nothing can authenticate */
        goto out;
    }
    m_len = view->ciphertext_len - MQE2E_TAG_BYTES;
    if (m_len > MQE2E_ENVELOPE_MAX_PAYLOAD) {
        rc = MQE2E_ERR_TOO_LARGE;
        goto out;
    }
    if (pt_cap < m_len) {
        rc = MQE2E_ERR_BUFFER_TOO_SMALL;
        goto out;
    }
    rc = build_ad(&ad, &ad_len, ad_stack, sizeof ad_stack, &ad_heap, topic, topic_len, group_id,
                  group_len, &view->header, ext);
    if (rc != MQE2E_OK) {
        goto out;
    }
    mqe2e__envelope_nonce(nonce, key->iv, view->header.instance, view->header.seq);
    /* libsodium checks the tag (in constant time) before writing any plaintext. */
    if (crypto_aead_chacha20poly1305_ietf_decrypt_detached(
            pt, NULL, view->ciphertext, (unsigned long long)m_len, view->ciphertext + m_len, ad,
            (unsigned long long)ad_len, nonce, key->key) != 0) {
        rc = MQE2E_ERR_AUTH;
        goto out;
    }
    *pt_len = m_len;

out:
    sodium_memzero(nonce, sizeof nonce);
    free(ad_heap);
    if (rc != MQE2E_OK && pt != NULL && pt_cap != 0) {
        sodium_memzero(pt, pt_cap);
    }
    return rc;
}

int mqe2e_envelope_seal(uint8_t *out, size_t out_cap, size_t *out_len, const mqe2e_sender_key *key,
                        const char *topic, const char *group_id,
                        const mqe2e_envelope_header *header, const uint8_t *pt, size_t pt_len)
{
    return mqe2e__envelope_seal_ext(out, out_cap, out_len, key, topic, group_id, header, pt,
                                    pt_len, NULL);
}

int mqe2e__envelope_open_ext(uint8_t *pt, size_t pt_cap, size_t *pt_len,
                             const mqe2e_sender_key *key, const char *topic, const char *group_id,
                             const mqe2e_envelope_view *view, const mqe2e__ad_ext *ext)
{
    return open_core(pt, pt_cap, pt_len, key, topic, group_id, view, MQE2E_MODE_GROUP, ext);
}

int mqe2e_envelope_open(uint8_t *pt, size_t pt_cap, size_t *pt_len, const mqe2e_sender_key *key,
                        const char *topic, const char *group_id, const mqe2e_envelope_view *view)
{
    return open_core(pt, pt_cap, pt_len, key, topic, group_id, view, MQE2E_MODE_GROUP, NULL);
}

/* ------------------------------------------------------------ signed group mode */

size_t mqe2e_envelope_signed_sealed_bound(size_t pt_len)
{
    size_t b = mqe2e_envelope_sealed_bound(pt_len);
    return b > SIZE_MAX - MQE2E_SIGNATURE_FIELD_BYTES ? SIZE_MAX : b + MQE2E_SIGNATURE_FIELD_BYTES;
}

/*
 * The signed string: domain || AD || body. The AD is length-prefixed field by
 * field and the body comes last, so the concatenation parses one way only.
 * Built in stack_buf when it fits, else in *heap (caller frees); no secret.
 */
static int sig_message(const uint8_t **msg, size_t *msg_len, uint8_t *stack_buf, size_t stack_cap,
                       uint8_t **heap, const uint8_t *ad, size_t ad_len, const uint8_t *body,
                       size_t body_len)
{
    const size_t dom = sizeof SIGNED_DOMAIN - 1U;
    size_t n = dom + ad_len + body_len;
    uint8_t *p = stack_buf;

    *heap = NULL;
    if (n > stack_cap) {
        *heap = malloc(n);
        if (*heap == NULL) {
            return MQE2E_ERR_NOMEM;
        }
        p = *heap;
    }
    memcpy(p, SIGNED_DOMAIN, dom);
    memcpy(p + dom, ad, ad_len);
    memcpy(p + dom + ad_len, body, body_len);
    *msg = p;
    *msg_len = n;
    return MQE2E_OK;
}

int mqe2e_envelope_seal_signed(uint8_t *out, size_t out_cap, size_t *out_len,
                               const mqe2e_sender_key *key, const char *topic,
                               const char *group_id, const mqe2e_envelope_header *header,
                               const uint8_t *pt, size_t pt_len, mqe2e_envelope_sign_fn sign,
                               void *sign_ctx)
{
    return mqe2e__envelope_seal_signed_ext(out, out_cap, out_len, key, topic, group_id, header,
                                           pt, pt_len, sign, sign_ctx, NULL);
}

int mqe2e__envelope_seal_signed_ext(uint8_t *out, size_t out_cap, size_t *out_len,
                                    const mqe2e_sender_key *key, const char *topic,
                                    const char *group_id, const mqe2e_envelope_header *header,
                                    const uint8_t *pt, size_t pt_len, mqe2e_envelope_sign_fn sign,
                                    void *sign_ctx, const mqe2e__ad_ext *ext)
{
    uint8_t ad_stack[AD_STACK_BYTES];
    uint8_t msg_stack[SIG_STACK_BYTES];
    uint8_t sig[MQE2E_SIGNATURE_BYTES];
    uint8_t nonce[MQE2E_SENDER_IV_BYTES];
    uint8_t *ad_heap = NULL, *msg_heap = NULL;
    const uint8_t *ad, *msg;
    size_t ad_len, msg_len, topic_len, group_len, hlen, body_len;
    int rc;

    if (out == NULL || out_len == NULL || key == NULL || header == NULL || sign == NULL ||
        (pt == NULL && pt_len != 0)) {
        return MQE2E_ERR_INVALID_ARG;
    }
    rc = check_names(topic, group_id, &topic_len, &group_len);
    if (rc != MQE2E_OK) {
        return rc;
    }
    if (header->mode != MQE2E_MODE_SIGNED_GROUP || !header_in_range(header)) {
        return MQE2E_ERR_INVALID_ARG;
    }
    if (pt_len > MQE2E_ENVELOPE_MAX_PAYLOAD) {
        return MQE2E_ERR_TOO_LARGE;
    }
    body_len = pt_len + MQE2E_TAG_BYTES;
    hlen = mqe2e__envelope_header_len(header, body_len);
    if (out_cap < hlen || out_cap - hlen < body_len ||
        out_cap - hlen - body_len < MQE2E_SIGNATURE_FIELD_BYTES) {
        return MQE2E_ERR_BUFFER_TOO_SMALL;
    }
    rc = build_ad(&ad, &ad_len, ad_stack, sizeof ad_stack, &ad_heap, topic, topic_len, group_id,
                  group_len, header, ext);
    if (rc != MQE2E_OK) {
        goto out;
    }
    mqe2e__envelope_header_put(out, header, body_len);
    mqe2e__envelope_nonce(nonce, key->iv, header->instance, header->seq);
    crypto_aead_chacha20poly1305_ietf_encrypt_detached(
        out + hlen, out + hlen + pt_len, NULL, pt, (unsigned long long)pt_len, ad,
        (unsigned long long)ad_len, NULL, nonce, key->key);
    rc = sig_message(&msg, &msg_len, msg_stack, sizeof msg_stack, &msg_heap, ad, ad_len,
                     out + hlen, body_len);
    if (rc != MQE2E_OK) {
        goto out;
    }
    rc = sign(sign_ctx, sig, msg, msg_len);
    if (rc != MQE2E_OK) {
        goto out;
    }
    mqe2e__envelope_signature_put(out + hlen + body_len, sig);
    *out_len = hlen + body_len + MQE2E_SIGNATURE_FIELD_BYTES;

out:
    sodium_memzero(nonce, sizeof nonce);
    free(ad_heap);
    free(msg_heap);
    if (rc != MQE2E_OK) {
        /* An unsigned body must not be mistaken for a finished envelope. */
        sodium_memzero(out, out_cap);
    }
    return rc;
}

int mqe2e_envelope_verify(const uint8_t signer_pk[MQE2E_SIGNER_PUBLIC_BYTES], const char *topic,
                          const char *group_id, const mqe2e_envelope_view *view)
{
    return mqe2e__envelope_verify_ext(signer_pk, topic, group_id, view, NULL);
}

int mqe2e__envelope_verify_ext(const uint8_t signer_pk[MQE2E_SIGNER_PUBLIC_BYTES],
                               const char *topic, const char *group_id,
                               const mqe2e_envelope_view *view, const mqe2e__ad_ext *ext)
{
    uint8_t ad_stack[AD_STACK_BYTES];
    uint8_t msg_stack[SIG_STACK_BYTES];
    uint8_t *ad_heap = NULL, *msg_heap = NULL;
    const uint8_t *ad, *msg;
    size_t ad_len, msg_len, topic_len, group_len;
    int rc;

    if (signer_pk == NULL || view == NULL || view->ciphertext == NULL ||
        view->ciphertext_len < MQE2E_TAG_BYTES) {
        return MQE2E_ERR_INVALID_ARG;
    }
    if (view->header.mode != MQE2E_MODE_SIGNED_GROUP || view->signature == NULL ||
        view->signature_len != MQE2E_SIGNATURE_BYTES) {
        return MQE2E_ERR_SUITE;
    }
    rc = check_names(topic, group_id, &topic_len, &group_len);
    if (rc != MQE2E_OK) {
        return rc;
    }
    rc = build_ad(&ad, &ad_len, ad_stack, sizeof ad_stack, &ad_heap, topic, topic_len, group_id,
                  group_len, &view->header, ext);
    if (rc != MQE2E_OK) {
        goto out;
    }
    rc = sig_message(&msg, &msg_len, msg_stack, sizeof msg_stack, &msg_heap, ad, ad_len,
                     view->ciphertext, view->ciphertext_len);
    if (rc != MQE2E_OK) {
        goto out;
    }
    /* libsodium also refuses small-order and non-canonical keys and signatures. */
    if (crypto_sign_verify_detached(view->signature, msg, (unsigned long long)msg_len,
                                    signer_pk) != 0) {
        rc = MQE2E_ERR_AUTH;
    }

out:
    free(ad_heap);
    free(msg_heap);
    return rc;
}

int mqe2e_envelope_open_signed(uint8_t *pt, size_t pt_cap, size_t *pt_len,
                               const mqe2e_sender_key *key,
                               const uint8_t signer_pk[MQE2E_SIGNER_PUBLIC_BYTES],
                               const char *topic, const char *group_id,
                               const mqe2e_envelope_view *view)
{
    return mqe2e__envelope_open_signed_ext(pt, pt_cap, pt_len, key, signer_pk, topic, group_id,
                                           view, NULL);
}

int mqe2e__envelope_open_signed_ext(uint8_t *pt, size_t pt_cap, size_t *pt_len,
                                    const mqe2e_sender_key *key,
                                    const uint8_t signer_pk[MQE2E_SIGNER_PUBLIC_BYTES],
                                    const char *topic, const char *group_id,
                                    const mqe2e_envelope_view *view, const mqe2e__ad_ext *ext)
{
    int rc;

    if ((pt == NULL && pt_cap != 0) || pt_len == NULL || key == NULL) {
        rc = MQE2E_ERR_INVALID_ARG;
    } else {
        /* The signature first: a forgery costs no decryption and yields nothing. */
        rc = mqe2e__envelope_verify_ext(signer_pk, topic, group_id, view, ext);
    }
    if (rc != MQE2E_OK) {
        if (pt != NULL && pt_cap != 0) {
            sodium_memzero(pt, pt_cap);
        }
        return rc;
    }
    return open_core(pt, pt_cap, pt_len, key, topic, group_id, view, MQE2E_MODE_SIGNED_GROUP, ext);
}
