/*
 * Noise handshake reader: mqe2e_noise_read_message as a responder of
 * Noise_XX_25519_ChaChaPoly_SHA256 and Noise_IKpsk2_25519_ChaChaPoly_SHA256,
 * with fixed static, ephemeral and psk keys (deterministic runs).
 *
 * First byte: bit 0 picks the pattern (0 XX, 1 IKpsk2); bit 1 the mode.
 *   raw (bit 1 clear): the rest is  u16be len | message 1 | message 3.
 *     The responder reads message 1; when it is accepted it writes message
 *     2, and for XX reads the remainder as message 3.
 *   honest (bit 1 set): the harness plays the initiator too. The rest is
 *     p1 p2 p3 (payload lengths, one byte each) | which (message to
 *     corrupt) | off (u16be) | xor | payload bytes. Messages flow both
 *     ways; message `which` (1-based, 0 = none) gets byte off % len xored.
 *     Invariants: uncorrupted handshakes complete on both sides with equal
 *     handshake hashes, the payloads arrive intact, the responder learns the
 *     initiator's static key, and split keys carry one transport message;
 *     a corrupted handshake never completes on both sides with equal hashes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "mqe2e/error.h"
#include "mqe2e/noise.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define BUF 1024U

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    FUZZ_ASSERT(mqe2e_init() == MQE2E_OK);
    return 0;
}

static mqe2e_noise_handshake *make(int ik, int role)
{
    mqe2e_noise_handshake *hs = NULL;
    uint8_t k[32];
    const uint8_t *prologue = (const uint8_t *)FUZZ_NOISE_PROLOGUE;
    FUZZ_ASSERT(mqe2e_noise_handshake_new(&hs, ik ? FUZZ_NOISE_IKPSK2 : FUZZ_NOISE_XX, role,
                                          prologue, strlen(FUZZ_NOISE_PROLOGUE)) == MQE2E_OK);
    int resp = role == MQE2E_NOISE_RESPONDER;
    fuzz_dh_secret(k, resp ? 1 : 2);
    FUZZ_ASSERT(mqe2e_noise_handshake_set_local_static(hs, k) == MQE2E_OK);
    fuzz_dh_secret(k, resp ? 3 : 4);
    FUZZ_ASSERT(mqe2e_noise_handshake_set_ephemeral(hs, k) == MQE2E_OK);
    if (ik) {
        if (!resp) {
            fuzz_dh_public(k, 1);
            FUZZ_ASSERT(mqe2e_noise_handshake_set_remote_static(hs, k) == MQE2E_OK);
        }
        fuzz_psk(k);
        FUZZ_ASSERT(mqe2e_noise_handshake_set_psk(hs, k) == MQE2E_OK);
    }
    sodium_memzero(k, sizeof k);
    return hs;
}

static void raw_mode(int ik, const uint8_t *d, size_t n)
{
    static uint8_t payload[65536], out[BUF];
    size_t plen = 0, olen = 0;
    if (n < 2) return;
    size_t l1 = ((size_t)d[0] << 8) | d[1];
    d += 2;
    n -= 2;
    if (l1 > n) l1 = n;
    mqe2e_noise_handshake *hs = make(ik, MQE2E_NOISE_RESPONDER);
    int rc = mqe2e_noise_read_message(hs, payload, sizeof payload, &plen, d, l1);
    if (rc != MQE2E_OK) {
        FUZZ_ASSERT(mqe2e_noise_handshake_is_complete(hs) == 0);
        goto out;
    }
    FUZZ_ASSERT(plen <= l1);
    FUZZ_ASSERT(mqe2e_noise_handshake_action(hs) == MQE2E_NOISE_ACTION_WRITE);
    rc = mqe2e_noise_write_message(hs, out, sizeof out, &olen, NULL, 0);
    if (rc != MQE2E_OK) goto out; /* e.g. a small-order ephemeral in message 1 */
    if (!ik) {
        rc = mqe2e_noise_read_message(hs, payload, sizeof payload, &plen, d + l1, n - l1);
        if (rc == MQE2E_OK) FUZZ_ASSERT(mqe2e_noise_handshake_is_complete(hs) == 1);
        else FUZZ_ASSERT(mqe2e_noise_handshake_action(hs) != MQE2E_NOISE_ACTION_SPLIT);
    } else {
        FUZZ_ASSERT(mqe2e_noise_handshake_is_complete(hs) == 1);
    }
out:
    mqe2e_noise_handshake_free(hs);
}

static void honest_mode(int ik, const uint8_t *d, size_t n)
{
    static uint8_t msg[BUF], got[BUF], pl[3][256];
    size_t plen[3];
    if (n < 7) return;
    for (size_t i = 0; i < 3; i++) plen[i] = d[i];
    unsigned which = d[3];
    size_t off = ((size_t)d[4] << 8) | d[5];
    uint8_t x = d[6];
    d += 7;
    n -= 7;
    /* Payload bytes cycle through the rest of the input (zeros if none). */
    size_t k = 0;
    for (size_t i = 0; i < 3; i++)
        for (size_t j = 0; j < plen[i]; j++) pl[i][j] = n > 0 ? d[k++ % n] : 0;

    size_t nmsgs = ik ? 2U : 3U;
    int corrupt = x != 0 && which >= 1 && which <= nmsgs;
    mqe2e_noise_handshake *ini = make(ik, MQE2E_NOISE_INITIATOR);
    mqe2e_noise_handshake *res = make(ik, MQE2E_NOISE_RESPONDER);
    int ok = 1;
    for (size_t m = 0; m < nmsgs && ok; m++) {
        mqe2e_noise_handshake *tx = (m % 2 == 0) ? ini : res;
        mqe2e_noise_handshake *rx = (m % 2 == 0) ? res : ini;
        size_t mlen = 0, glen = 0;
        int rc = mqe2e_noise_write_message(tx, msg, sizeof msg, &mlen, pl[m], plen[m]);
        if (rc != MQE2E_OK) {
            /* Only a corrupted earlier message can make a write fail. */
            FUZZ_ASSERT(corrupt);
            ok = 0;
            break;
        }
        if (corrupt && which == m + 1) msg[off % mlen] ^= x;
        rc = mqe2e_noise_read_message(rx, got, sizeof got, &glen, msg, mlen);
        if (rc != MQE2E_OK) {
            FUZZ_ASSERT(corrupt);
            ok = 0;
            break;
        }
        if (!corrupt) FUZZ_ASSERT(glen == plen[m] && memcmp(got, pl[m], glen) == 0);
    }
    if (ok) {
        uint8_t h1[32], h2[32], rs[32], want[32];
        FUZZ_ASSERT(mqe2e_noise_handshake_is_complete(ini) == 1);
        FUZZ_ASSERT(mqe2e_noise_handshake_is_complete(res) == 1);
        FUZZ_ASSERT(mqe2e_noise_handshake_hash(ini, h1) == MQE2E_OK);
        FUZZ_ASSERT(mqe2e_noise_handshake_hash(res, h2) == MQE2E_OK);
        /* A flipped bit anywhere must be caught by the end of the handshake. */
        FUZZ_ASSERT(!corrupt);
        FUZZ_ASSERT(memcmp(h1, h2, 32) == 0);
        FUZZ_ASSERT(mqe2e_noise_handshake_remote_static(res, rs) == MQE2E_OK);
        fuzz_dh_public(want, 2);
        FUZZ_ASSERT(memcmp(rs, want, 32) == 0);

        mqe2e_noise_cipher *is = NULL, *ir = NULL, *rs_ = NULL, *rr = NULL;
        FUZZ_ASSERT(mqe2e_noise_split(ini, &is, &ir) == MQE2E_OK);
        FUZZ_ASSERT(mqe2e_noise_split(res, &rs_, &rr) == MQE2E_OK);
        size_t clen = 0, dlen = 0;
        FUZZ_ASSERT(mqe2e_noise_cipher_encrypt(is, msg, sizeof msg, &clen, NULL, 0, pl[0],
                                               plen[0]) == MQE2E_OK);
        FUZZ_ASSERT(mqe2e_noise_cipher_decrypt(rr, got, sizeof got, &dlen, NULL, 0, msg, clen) ==
                    MQE2E_OK);
        FUZZ_ASSERT(dlen == plen[0] && memcmp(got, pl[0], dlen) == 0);
        mqe2e_noise_cipher_free(is);
        mqe2e_noise_cipher_free(ir);
        mqe2e_noise_cipher_free(rs_);
        mqe2e_noise_cipher_free(rr);
    }
    mqe2e_noise_handshake_free(ini);
    mqe2e_noise_handshake_free(res);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int ik = data[0] & 1;
    if (data[0] & 2) honest_mode(ik, data + 1, size - 1);
    else raw_mode(ik, data + 1, size - 1);
    return 0;
}
