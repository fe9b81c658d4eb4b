/* Noise HandshakeState (revision 34, section 5.3) for 25519_ChaChaPoly_SHA256. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "internal_noise.h"
#include "mqe2e/error.h"
#include "mqe2e/noise.h"

#define DHLEN MQE2E_NOISE_DH_BYTES
#define TAGLEN MQE2E_NOISE_TAG_BYTES

struct mqe2e_noise_handshake {
    mqe2e__noise_ss ss;
    mqe2e__noise_pattern pat;
    int initiator;
    int started;
    int failed;
    int split_done;
    size_t msg_index;
    uint8_t s_sk[DHLEN], s_pk[DHLEN];
    uint8_t e_sk[DHLEN], e_pk[DHLEN];
    uint8_t rs[DHLEN], re[DHLEN];
    int has_s, has_rs, has_re;
    int has_e;  /* e key pair present (injected or generated) */
    int e_sent; /* the e token was processed: e is fixed from now on */
    uint8_t psks[MQE2E_NOISE_MAX_PSKS][MQE2E_NOISE_PSK_BYTES];
    size_t n_psks, psk_used;
};

/* Does the message with this index go from the local side? */
static int is_local_msg(const mqe2e_noise_handshake *hs, size_t msg)
{
    return (msg % 2 == 0) == (hs->initiator != 0);
}

static int local_sends_token(const mqe2e_noise_handshake *hs, int tok)
{
    for (size_t m = 0; m < hs->pat.n_msgs; m++) {
        if (!is_local_msg(hs, m)) continue;
        for (size_t t = 0; t < hs->pat.n_tokens[m]; t++)
            if (hs->pat.tokens[m][t] == tok) return 1;
    }
    return 0;
}

static int local_pre_s(const mqe2e_noise_handshake *hs)
{
    return hs->initiator ? hs->pat.pre_s_initiator : hs->pat.pre_s_responder;
}

static int remote_pre_s(const mqe2e_noise_handshake *hs)
{
    return hs->initiator ? hs->pat.pre_s_responder : hs->pat.pre_s_initiator;
}

static int needs_local_s(const mqe2e_noise_handshake *hs)
{
    return local_pre_s(hs) || local_sends_token(hs, MQE2E__TOK_S);
}

/* Kill the handshake: nothing secret survives a failure. */
static int fail(mqe2e_noise_handshake *hs, int rc)
{
    int initiator = hs->initiator;
    sodium_memzero(hs, sizeof *hs);
    hs->initiator = initiator;
    hs->failed = 1;
    return rc;
}

int mqe2e_noise_handshake_new(mqe2e_noise_handshake **hs, const char *protocol_name, int role,
                              const uint8_t *prologue, size_t prologue_len)
{
    if (hs == NULL) return MQE2E_ERR_INVALID_ARG;
    *hs = NULL;
    if (protocol_name == NULL || (prologue == NULL && prologue_len > 0) ||
        (role != MQE2E_NOISE_INITIATOR && role != MQE2E_NOISE_RESPONDER))
        return MQE2E_ERR_INVALID_ARG;
    if (sodium_init() < 0) return MQE2E_ERR_CRYPTO;

    mqe2e__noise_pattern pat;
    int rc = mqe2e__noise_pattern_parse(&pat, protocol_name);
    if (rc != MQE2E_OK) return rc;

    /* Plain malloc, not sodium_malloc: a handshake lives for one round trip,
     * and sodium_malloc's guard pages (mmap + mprotect + mlock per state)
     * cost more than the handshake's own DHs on a busy authority. The keys
     * in it are ephemeral or copies of a static key the caller keeps in
     * sodium_malloc memory; every exit wipes the state (fail() and
     * mqe2e_noise_handshake_free() call sodium_memzero before free). */
    mqe2e_noise_handshake *h = malloc(sizeof *h);
    if (h == NULL) return MQE2E_ERR_NOMEM;
    memset(h, 0, sizeof *h);
    h->pat = pat;
    h->initiator = role == MQE2E_NOISE_INITIATOR;
    mqe2e__noise_ss_init(&h->ss, protocol_name);
    mqe2e__noise_ss_mix_hash(&h->ss, prologue, prologue_len);
    *hs = h;
    return MQE2E_OK;
}

void mqe2e_noise_handshake_free(mqe2e_noise_handshake *hs)
{
    if (hs == NULL) return;
    sodium_memzero(hs, sizeof *hs);
    free(hs);
}

int mqe2e_noise_handshake_set_local_static(mqe2e_noise_handshake *hs,
                                           const uint8_t secret_key[MQE2E_NOISE_DH_BYTES])
{
    if (hs == NULL || secret_key == NULL) return MQE2E_ERR_INVALID_ARG;
    if (hs->failed || hs->started || !needs_local_s(hs)) return MQE2E_ERR_STATE;
    memcpy(hs->s_sk, secret_key, DHLEN);
    if (crypto_scalarmult_base(hs->s_pk, hs->s_sk) != 0) {
        sodium_memzero(hs->s_sk, DHLEN);
        hs->has_s = 0;
        return MQE2E_ERR_CRYPTO;
    }
    hs->has_s = 1;
    return MQE2E_OK;
}

int mqe2e_noise_handshake_set_remote_static(mqe2e_noise_handshake *hs,
                                            const uint8_t public_key[MQE2E_NOISE_DH_BYTES])
{
    if (hs == NULL || public_key == NULL) return MQE2E_ERR_INVALID_ARG;
    if (hs->failed || hs->started || !remote_pre_s(hs)) return MQE2E_ERR_STATE;
    memcpy(hs->rs, public_key, DHLEN);
    hs->has_rs = 1;
    return MQE2E_OK;
}

int mqe2e_noise_handshake_set_psk(mqe2e_noise_handshake *hs, const uint8_t psk[MQE2E_NOISE_PSK_BYTES])
{
    if (hs == NULL || psk == NULL) return MQE2E_ERR_INVALID_ARG;
    if (hs->failed || hs->started || hs->n_psks >= hs->pat.n_psks) return MQE2E_ERR_STATE;
    memcpy(hs->psks[hs->n_psks++], psk, MQE2E_NOISE_PSK_BYTES);
    return MQE2E_OK;
}

int mqe2e__noise_handshake_replace_psk(mqe2e_noise_handshake *hs, size_t index,
                                       const uint8_t psk[MQE2E_NOISE_PSK_BYTES])
{
    if (hs == NULL || psk == NULL) return MQE2E_ERR_INVALID_ARG;
    /* A psk already mixed cannot change: both sides' keys derive from it. */
    if (hs->failed || hs->split_done || index >= hs->n_psks || index < hs->psk_used)
        return MQE2E_ERR_STATE;
    memcpy(hs->psks[index], psk, MQE2E_NOISE_PSK_BYTES);
    return MQE2E_OK;
}

int mqe2e_noise_handshake_set_ephemeral(mqe2e_noise_handshake *hs,
                                        const uint8_t secret_key[MQE2E_NOISE_DH_BYTES])
{
    if (hs == NULL || secret_key == NULL) return MQE2E_ERR_INVALID_ARG;
    /* Once sent, replacing e would desynchronise the DHs already done. */
    if (hs->failed || hs->split_done || hs->e_sent) return MQE2E_ERR_STATE;
    memcpy(hs->e_sk, secret_key, DHLEN);
    if (crypto_scalarmult_base(hs->e_pk, hs->e_sk) != 0) {
        sodium_memzero(hs->e_sk, DHLEN);
        hs->has_e = 0;
        return MQE2E_ERR_CRYPTO;
    }
    hs->has_e = 1;
    return MQE2E_OK;
}

int mqe2e_noise_handshake_action(const mqe2e_noise_handshake *hs)
{
    if (hs == NULL || hs->failed) return MQE2E_NOISE_ACTION_FAILED;
    if (hs->split_done) return MQE2E_NOISE_ACTION_DONE;
    if (hs->msg_index >= hs->pat.n_msgs) return MQE2E_NOISE_ACTION_SPLIT;
    return is_local_msg(hs, hs->msg_index) ? MQE2E_NOISE_ACTION_WRITE : MQE2E_NOISE_ACTION_READ;
}

/* Keys and tags the current message adds to its payload, found by replaying
 * the token list against whether a cipher key will be set at each point. */
static size_t message_overhead(const mqe2e_noise_handshake *hs)
{
    size_t m = hs->msg_index, len = 0;
    int has_k = hs->ss.cs.has_k;
    for (size_t t = 0; t < hs->pat.n_tokens[m]; t++) {
        switch (hs->pat.tokens[m][t]) {
        case MQE2E__TOK_E:
            len += DHLEN;
            if (hs->pat.n_psks > 0) has_k = 1;
            break;
        case MQE2E__TOK_S:
            len += DHLEN + (has_k ? TAGLEN : 0U);
            break;
        default: /* every DH and psk token sets a key */
            has_k = 1;
            break;
        }
    }
    return len + (has_k ? TAGLEN : 0U);
}

/* Common preconditions of write/read: our turn (or theirs) and alive. */
static int check_turn(const mqe2e_noise_handshake *hs, int want_local)
{
    if (hs->failed || hs->split_done || hs->msg_index >= hs->pat.n_msgs) return MQE2E_ERR_STATE;
    if (is_local_msg(hs, hs->msg_index) != want_local) return MQE2E_ERR_STATE;
    return MQE2E_OK;
}

int mqe2e_noise_handshake_message_len(const mqe2e_noise_handshake *hs, size_t payload_len,
                                      size_t *out_len)
{
    if (hs == NULL || out_len == NULL) return MQE2E_ERR_INVALID_ARG;
    int rc = check_turn(hs, 1);
    if (rc != MQE2E_OK) return rc;
    size_t overhead = message_overhead(hs);
    if (payload_len > MQE2E_NOISE_MAX_MESSAGE_BYTES - overhead) return MQE2E_ERR_TOO_LARGE;
    *out_len = overhead + payload_len;
    return MQE2E_OK;
}

/* First write/read: every key the pattern needs must be set by now; then the
 * pre-messages are hashed, initiator's first (Noise 5.3 Initialize). */
static int start(mqe2e_noise_handshake *hs)
{
    if (hs->started) return MQE2E_OK;
    if ((needs_local_s(hs) && !hs->has_s) || (remote_pre_s(hs) && !hs->has_rs) ||
        hs->n_psks != hs->pat.n_psks)
        return MQE2E_ERR_STATE;
    if (hs->pat.pre_s_initiator)
        mqe2e__noise_ss_mix_hash(&hs->ss, hs->initiator ? hs->s_pk : hs->rs, DHLEN);
    if (hs->pat.pre_s_responder)
        mqe2e__noise_ss_mix_hash(&hs->ss, hs->initiator ? hs->rs : hs->s_pk, DHLEN);
    hs->started = 1;
    return MQE2E_OK;
}

static int mix_dh(mqe2e_noise_handshake *hs, const uint8_t *sk, int has_sk, const uint8_t *pk,
                  int has_pk)
{
    uint8_t shared[DHLEN];
    /* Unreachable with the table's valid patterns; kept as a guard. */
    if (!has_sk || !has_pk) return MQE2E_ERR_STATE;
    /* libsodium returns -1 for the all-zero output of a small-order point. */
    if (crypto_scalarmult(shared, sk, pk) != 0) {
        sodium_memzero(shared, sizeof shared);
        return MQE2E_ERR_AUTH;
    }
    mqe2e__noise_ss_mix_key(&hs->ss, shared, sizeof shared);
    sodium_memzero(shared, sizeof shared);
    return MQE2E_OK;
}

/* The DH and psk tokens: the same on the write and the read side. */
static int process_key_token(mqe2e_noise_handshake *hs, int tok)
{
    int ini = hs->initiator;
    switch (tok) {
    case MQE2E__TOK_EE:
        return mix_dh(hs, hs->e_sk, hs->e_sent, hs->re, hs->has_re);
    case MQE2E__TOK_ES: /* DH(initiator e, responder s) */
        return ini ? mix_dh(hs, hs->e_sk, hs->e_sent, hs->rs, hs->has_rs)
                   : mix_dh(hs, hs->s_sk, hs->has_s, hs->re, hs->has_re);
    case MQE2E__TOK_SE: /* DH(initiator s, responder e) */
        return ini ? mix_dh(hs, hs->s_sk, hs->has_s, hs->re, hs->has_re)
                   : mix_dh(hs, hs->e_sk, hs->e_sent, hs->rs, hs->has_rs);
    case MQE2E__TOK_SS:
        return mix_dh(hs, hs->s_sk, hs->has_s, hs->rs, hs->has_rs);
    case MQE2E__TOK_PSK:
        if (hs->psk_used >= hs->n_psks) return MQE2E_ERR_STATE;
        mqe2e__noise_ss_mix_key_and_hash(&hs->ss, hs->psks[hs->psk_used], MQE2E_NOISE_PSK_BYTES);
        sodium_memzero(hs->psks[hs->psk_used], MQE2E_NOISE_PSK_BYTES);
        hs->psk_used++;
        return MQE2E_OK;
    default:
        return MQE2E_ERR_STATE;
    }
}

int mqe2e_noise_write_message(mqe2e_noise_handshake *hs, uint8_t *out, size_t out_cap,
                              size_t *out_len, const uint8_t *payload, size_t payload_len)
{
    if (hs == NULL || out == NULL || out_len == NULL || (payload == NULL && payload_len > 0))
        return MQE2E_ERR_INVALID_ARG;
    size_t total;
    int rc = mqe2e_noise_handshake_message_len(hs, payload_len, &total);
    if (rc != MQE2E_OK) return rc;
    if (out_cap < total) return MQE2E_ERR_BUFFER_TOO_SMALL;
    rc = start(hs);
    if (rc != MQE2E_OK) return rc;

    size_t m = hs->msg_index, pos = 0;
    for (size_t t = 0; t < hs->pat.n_tokens[m] && rc == MQE2E_OK; t++) {
        int tok = hs->pat.tokens[m][t];
        if (tok == MQE2E__TOK_E) {
            if (!hs->has_e) {
                randombytes_buf(hs->e_sk, DHLEN);
                if (crypto_scalarmult_base(hs->e_pk, hs->e_sk) != 0) {
                    rc = MQE2E_ERR_CRYPTO;
                    break;
                }
                hs->has_e = 1;
            }
            hs->e_sent = 1;
            memcpy(out + pos, hs->e_pk, DHLEN);
            pos += DHLEN;
            mqe2e__noise_ss_mix_hash(&hs->ss, hs->e_pk, DHLEN);
            /* Noise 9.2: with a psk, e also feeds the key so psk-derived
             * encryption never runs with a nonce tied only to the psk. */
            if (hs->pat.n_psks > 0) mqe2e__noise_ss_mix_key(&hs->ss, hs->e_pk, DHLEN);
        } else if (tok == MQE2E__TOK_S) {
            int had_k = hs->ss.cs.has_k;
            rc = mqe2e__noise_ss_encrypt_and_hash(&hs->ss, out + pos, hs->s_pk, DHLEN);
            pos += DHLEN + (had_k ? TAGLEN : 0U);
        } else {
            rc = process_key_token(hs, tok);
        }
    }
    if (rc == MQE2E_OK) rc = mqe2e__noise_ss_encrypt_and_hash(&hs->ss, out + pos, payload, payload_len);
    if (rc != MQE2E_OK) {
        sodium_memzero(out, total);
        return fail(hs, rc);
    }
    *out_len = total;
    hs->msg_index++;
    return MQE2E_OK;
}

int mqe2e_noise_read_message(mqe2e_noise_handshake *hs, uint8_t *payload_out, size_t payload_cap,
                             size_t *payload_len, const uint8_t *msg, size_t msg_len)
{
    uint8_t rs[DHLEN];
    uint8_t dummy[1];
    if (hs == NULL || payload_len == NULL || msg == NULL || (payload_out == NULL && payload_cap > 0))
        return MQE2E_ERR_INVALID_ARG;
    int rc = check_turn(hs, 0);
    if (rc != MQE2E_OK) return rc;
    if (msg_len > MQE2E_NOISE_MAX_MESSAGE_BYTES) return MQE2E_ERR_TOO_LARGE;
    size_t overhead = message_overhead(hs);
    if (msg_len < overhead) return MQE2E_ERR_DECODE;
    size_t plen = msg_len - overhead;
    if (payload_cap < plen) return MQE2E_ERR_BUFFER_TOO_SMALL;
    rc = start(hs);
    if (rc != MQE2E_OK) return rc;
    if (payload_out == NULL) payload_out = dummy;

    size_t m = hs->msg_index, pos = 0;
    for (size_t t = 0; t < hs->pat.n_tokens[m] && rc == MQE2E_OK; t++) {
        int tok = hs->pat.tokens[m][t];
        if (tok == MQE2E__TOK_E) {
            memcpy(hs->re, msg + pos, DHLEN);
            hs->has_re = 1;
            pos += DHLEN;
            mqe2e__noise_ss_mix_hash(&hs->ss, hs->re, DHLEN);
            if (hs->pat.n_psks > 0) mqe2e__noise_ss_mix_key(&hs->ss, hs->re, DHLEN);
        } else if (tok == MQE2E__TOK_S) {
            size_t len = DHLEN + (hs->ss.cs.has_k ? TAGLEN : 0U);
            rc = mqe2e__noise_ss_decrypt_and_hash(&hs->ss, rs, msg + pos, len);
            if (rc == MQE2E_OK) {
                memcpy(hs->rs, rs, DHLEN);
                hs->has_rs = 1;
            }
            pos += len;
        } else {
            rc = process_key_token(hs, tok);
        }
    }
    if (rc == MQE2E_OK) rc = mqe2e__noise_ss_decrypt_and_hash(&hs->ss, payload_out, msg + pos, msg_len - pos);
    sodium_memzero(rs, sizeof rs);
    if (rc != MQE2E_OK) {
        sodium_memzero(payload_out, plen > 0 ? plen : 1);
        return fail(hs, rc);
    }
    *payload_len = plen;
    hs->msg_index++;
    return MQE2E_OK;
}

int mqe2e_noise_handshake_is_complete(const mqe2e_noise_handshake *hs)
{
    return hs != NULL && !hs->failed && hs->msg_index >= hs->pat.n_msgs;
}

int mqe2e_noise_handshake_hash(const mqe2e_noise_handshake *hs, uint8_t out[MQE2E_NOISE_HASH_BYTES])
{
    if (hs == NULL || out == NULL) return MQE2E_ERR_INVALID_ARG;
    if (!mqe2e_noise_handshake_is_complete(hs)) return MQE2E_ERR_STATE;
    memcpy(out, hs->ss.h, MQE2E_NOISE_HASH_BYTES);
    return MQE2E_OK;
}

int mqe2e_noise_handshake_remote_static(const mqe2e_noise_handshake *hs,
                                        uint8_t out[MQE2E_NOISE_DH_BYTES])
{
    if (hs == NULL || out == NULL) return MQE2E_ERR_INVALID_ARG;
    if (hs->failed || !hs->has_rs) return MQE2E_ERR_STATE;
    memcpy(out, hs->rs, DHLEN);
    return MQE2E_OK;
}

int mqe2e_noise_split(mqe2e_noise_handshake *hs, mqe2e_noise_cipher **send, mqe2e_noise_cipher **recv)
{
    uint8_t k1[MQE2E_NOISE_KEY_BYTES], k2[MQE2E_NOISE_KEY_BYTES];
    mqe2e_noise_cipher *c1 = NULL, *c2 = NULL;
    if (send != NULL) *send = NULL;
    if (recv != NULL) *recv = NULL;
    if (hs == NULL || send == NULL || recv == NULL) return MQE2E_ERR_INVALID_ARG;
    if (!mqe2e_noise_handshake_is_complete(hs) || hs->split_done) return MQE2E_ERR_STATE;

    mqe2e__noise_ss_split(&hs->ss, k1, k2);
    int rc = mqe2e_noise_cipher_new(&c1, k1);
    if (rc == MQE2E_OK) rc = mqe2e_noise_cipher_new(&c2, k2);
    sodium_memzero(k1, sizeof k1);
    sodium_memzero(k2, sizeof k2);
    if (rc != MQE2E_OK) {
        mqe2e_noise_cipher_free(c1);
        mqe2e_noise_cipher_free(c2);
        return rc;
    }
    /* c1 carries initiator -> responder traffic. */
    *send = hs->initiator ? c1 : c2;
    *recv = hs->initiator ? c2 : c1;
    /* Only h and rs stay useful; the rest would only help an attacker who
     * later reads this memory. */
    sodium_memzero(hs->ss.ck, sizeof hs->ss.ck);
    sodium_memzero(&hs->ss.cs, sizeof hs->ss.cs);
    sodium_memzero(hs->e_sk, sizeof hs->e_sk);
    sodium_memzero(hs->s_sk, sizeof hs->s_sk);
    sodium_memzero(hs->psks, sizeof hs->psks);
    hs->split_done = 1;
    return MQE2E_OK;
}
