/*
 * Deterministic workload for instruction counting under callgrind
 * (bench/callgrind.sh): N seals, N parse+opens of 256-byte payloads, and N raw
 * AEAD encrypts and decrypts of the same payload with a 60-byte AD.
 *
 * Each loop is its own function so callgrind can collect exactly one of them
 * (--toggle-collect='cg_seal_loop*'); setup and a warm-up call of every
 * primitive (lazy symbol binding, libsodium's CPU dispatch) stay outside.
 *
 * Usage: callgrind_seal_open [N]    (default 1000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "bench_common.h"
#include "mqe2e/envelope.h"
#include "mqe2e/error.h"
#include "mqe2e/keystore.h"

#define PAYLOAD 256U
#define ENV_CAP (PAYLOAD + MQE2E_TAG_BYTES + MQE2E_ENVELOPE_MAX_HEADER_BYTES)

#define NOINLINE __attribute__((noinline))

typedef struct workload {
    size_t n;
    uint8_t pt[PAYLOAD];
    uint8_t ad[BENCH_AD_BYTES];
    uint8_t raw_ct[PAYLOAD + MQE2E_TAG_BYTES];
    uint8_t dec[ENV_CAP];
    uint8_t *envs; /* n envelopes of ENV_CAP bytes each */
    size_t *env_lens;
    mqe2e_sender_key key;
    uint32_t sender_id;
} workload;

/* Extern with prototypes so the symbols keep their names in the binary. */
int cg_seal_loop(workload *w, uint64_t first_seq);
int cg_open_loop(workload *w);
int cg_raw_encrypt_loop(workload *w);
int cg_raw_decrypt_loop(workload *w);

NOINLINE int cg_seal_loop(workload *w, uint64_t first_seq)
{
    mqe2e_envelope_header h = {MQE2E_MODE_GROUP, 1U, w->sender_id, 0U, 0U};
    for (size_t i = 0; i < w->n; i++) {
        h.seq = first_seq + i;
        int rc = mqe2e_envelope_seal(w->envs + i * ENV_CAP, ENV_CAP, &w->env_lens[i], &w->key,
                                     BENCH_TOPIC, BENCH_GROUP, &h, w->pt, PAYLOAD);
        if (rc != MQE2E_OK) return rc;
    }
    return 0;
}

NOINLINE int cg_open_loop(workload *w)
{
    mqe2e_envelope_view v;
    size_t plen;
    for (size_t i = 0; i < w->n; i++) {
        int rc = mqe2e_envelope_parse(&v, w->envs + i * ENV_CAP, w->env_lens[i]);
        if (rc == MQE2E_OK) {
            rc = mqe2e_envelope_open(w->dec, sizeof w->dec, &plen, &w->key, BENCH_TOPIC,
                                     BENCH_GROUP, &v);
        }
        if (rc != MQE2E_OK) return rc;
        if (plen != PAYLOAD) return -1;
    }
    return 0;
}

NOINLINE int cg_raw_encrypt_loop(workload *w)
{
    unsigned long long clen;
    for (size_t i = 0; i < w->n; i++) {
        crypto_aead_chacha20poly1305_ietf_encrypt(w->raw_ct, &clen, w->pt, PAYLOAD, w->ad,
                                                  sizeof w->ad, NULL, BENCH_RAW_NONCE,
                                                  BENCH_RAW_KEY);
    }
    return 0;
}

NOINLINE int cg_raw_decrypt_loop(workload *w)
{
    unsigned long long mlen;
    for (size_t i = 0; i < w->n; i++) {
        if (crypto_aead_chacha20poly1305_ietf_decrypt(w->dec, &mlen, NULL, w->raw_ct,
                                                      sizeof w->raw_ct, w->ad, sizeof w->ad,
                                                      BENCH_RAW_NONCE, BENCH_RAW_KEY) != 0) {
            return -1;
        }
    }
    return 0;
}

static int check(const char *what, int rc)
{
    if (rc != 0) fprintf(stderr, "callgrind_seal_open: %s failed: %d\n", what, rc);
    return rc;
}

int main(int argc, char **argv)
{
    workload w;
    int rc = 1;

    memset(&w, 0, sizeof w);
    w.n = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 1000U;
    if (w.n == 0 || w.n > 1000000U || sodium_init() < 0) return 2;
    bench_fill(w.pt, sizeof w.pt, 0x5a);
    bench_fill(w.ad, sizeof w.ad, 0xa5);
    w.sender_id = mqe2e_sender_id_from_client_id(BENCH_SENDER_CLIENT);
    w.envs = malloc(w.n * ENV_CAP);
    w.env_lens = calloc(w.n, sizeof *w.env_lens);
    if (w.envs == NULL || w.env_lens == NULL) goto out;
    if (check("derive", mqe2e_sender_key_derive(&w.key, BENCH_GROUP_SECRET, BENCH_GROUP, 1U,
                                                w.sender_id)) != 0) {
        goto out;
    }

    /* Warm-up: the first call of each pays for symbol binding. Sequence
     * numbers start at 1000 (a 2-byte varint) in the measured loop. */
    {
        size_t n = w.n;
        w.n = 1;
        if (check("warm-up seal", cg_seal_loop(&w, 1U)) != 0 ||
            check("warm-up open", cg_open_loop(&w)) != 0 ||
            check("warm-up raw encrypt", cg_raw_encrypt_loop(&w)) != 0 ||
            check("warm-up raw decrypt", cg_raw_decrypt_loop(&w)) != 0) {
            goto out;
        }
        w.n = n;
    }
    if (check("seal", cg_seal_loop(&w, 1000U)) != 0 || check("open", cg_open_loop(&w)) != 0 ||
        check("raw encrypt", cg_raw_encrypt_loop(&w)) != 0 ||
        check("raw decrypt", cg_raw_decrypt_loop(&w)) != 0) {
        goto out;
    }
    if (sodium_memcmp(w.dec, w.pt, PAYLOAD) != 0) {
        fprintf(stderr, "callgrind_seal_open: round trip mismatch\n");
        goto out;
    }
    printf("n=%zu envelope=%zu bytes ok\n", w.n, w.env_lens[0]);
    rc = 0;
out:
    mqe2e_sender_key_wipe(&w.key);
    free(w.envs);
    free(w.env_lens);
    return rc;
}
