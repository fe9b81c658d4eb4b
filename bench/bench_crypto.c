/*
 * Crypto cost of mqe2e relative to the bare AEAD it is built on.
 *
 * For each payload size, three cases run interleaved in the same process on
 * the same payload, so machine noise hits them alike and the ratios hold:
 *   (a) raw:  crypto_aead_chacha20poly1305_ietf_encrypt + decrypt with a fixed
 *             key and nonce and a 60-byte AD (the size of an envelope's AD);
 *   (b) low:  mqe2e_envelope_seal + _parse + _open with a pre-derived sender key;
 *   (c) full: mqe2e_protect + mqe2e_unprotect between two protectors over
 *             in-memory keystores sharing a group (policy lookup, key cache,
 *             sequence reservation, replay window, checkpoints included);
 *   (d) signed: mqe2e_envelope_seal_signed + _parse + _open_signed (signed
 *             group mode: (b) plus one Ed25519 signature and one verification).
 * It also prints the bytes each envelope mode adds to a payload (group,
 * channel, signed group) for the same header values.
 * Each figure is the median over repetitions of ns per message; one
 * repetition runs for at least --min-ms milliseconds.
 *
 * Usage: bench_crypto [--json FILE] [--reps N] [--min-ms MS] [--smoke] [--strict]
 *   --smoke   tiny fixed iteration counts (CI: checks everything runs, no timing)
 *   --strict  exit 3 when seal+open is over 2x the raw AEAD at 256 bytes
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "bench_common.h"
#include "bench_keystore.h"
#include "bench_protect.h"
#include "mqe2e/envelope.h"
#include "mqe2e/error.h"
#include "mqe2e/keystore.h"
#include "mqe2e/policy.h"
#include "mqe2e/protect.h"
#include "mqe2e/storage.h"
#include "mqe2e/version.h"

#define NSIZES 4
#define NCASES 4
#define MAX_REPS 101
#define TARGET_SIZE 256U
#define TARGET_RATIO 2.0
/* The sender reserves sequence numbers in blocks this large (rarely). */
#define SEQ_BLOCK 65536U

static const size_t SIZES[NSIZES] = {16U, 256U, 1024U, 16384U};
static const char *const CASE_NAMES[NCASES] = {"raw_aead", "seal_open", "protect_unprotect",
                                               "signed_seal_open"};

typedef struct fixture {
    size_t len;
    uint8_t *pt;  /* payload */
    uint8_t *buf; /* ciphertext / envelope */
    uint8_t *dec; /* decrypted payload */
    size_t cap;
    uint8_t ad[BENCH_AD_BYTES];
    mqe2e_sender_key skey;
    uint32_t sender_id;
    uint64_t seq; /* (b)'s sequence number; (c) takes its own from the keystore */
    uint64_t sseq; /* (d)'s */
    uint8_t sign_pk[crypto_sign_PUBLICKEYBYTES];
    uint8_t sign_sk[crypto_sign_SECRETKEYBYTES];
    bench_peer tx, rx;
} fixture;

typedef struct result {
    double median[NCASES];
    double min[NCASES];
    uint64_t iters[NCASES];
    size_t overhead_first; /* envelope - payload, first message of the full path */
    size_t overhead_seq32; /* envelope - payload at seq 2^32 (long-lived sender) */
    /* Per mode, same header values (epoch/generation 1, the sender's id, seq 1). */
    size_t overhead_group, overhead_channel, overhead_signed;
} result;

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_crypto: %s failed: %d (%s)\n", what, rc,
            rc < 0 ? mqe2e_strerror(rc) : "libsodium");
    exit(2);
}

static int run_raw(fixture *f, uint64_t n)
{
    unsigned long long clen, mlen;
    for (uint64_t i = 0; i < n; i++) {
        crypto_aead_chacha20poly1305_ietf_encrypt(f->buf, &clen, f->pt, f->len, f->ad,
                                                  sizeof f->ad, NULL, BENCH_RAW_NONCE,
                                                  BENCH_RAW_KEY);
        if (crypto_aead_chacha20poly1305_ietf_decrypt(f->dec, &mlen, NULL, f->buf, clen, f->ad,
                                                      sizeof f->ad, BENCH_RAW_NONCE,
                                                      BENCH_RAW_KEY) != 0 ||
            mlen != f->len) {
            return -1;
        }
    }
    return 0;
}

static int run_low(fixture *f, uint64_t n)
{
    mqe2e_envelope_header h = {MQE2E_MODE_GROUP, 1U, f->sender_id, 0U, 0U};
    mqe2e_envelope_view v;
    size_t elen, plen;
    int rc;
    for (uint64_t i = 0; i < n; i++) {
        h.seq = ++f->seq;
        rc = mqe2e_envelope_seal(f->buf, f->cap, &elen, &f->skey, BENCH_TOPIC, BENCH_GROUP, &h,
                                 f->pt, f->len);
        if (rc == MQE2E_OK) rc = mqe2e_envelope_parse(&v, f->buf, elen);
        if (rc == MQE2E_OK) {
            rc = mqe2e_envelope_open(f->dec, f->cap, &plen, &f->skey, BENCH_TOPIC, BENCH_GROUP,
                                     &v);
        }
        if (rc != MQE2E_OK || plen != f->len) return rc != MQE2E_OK ? rc : -1;
    }
    return 0;
}

static int bench_sign(void *ctx, uint8_t sig[MQE2E_SIGNATURE_BYTES], const uint8_t *msg,
                      size_t msg_len)
{
    const fixture *f = ctx;
    crypto_sign_detached(sig, NULL, msg, (unsigned long long)msg_len, f->sign_sk);
    return MQE2E_OK;
}

static int run_signed(fixture *f, uint64_t n)
{
    mqe2e_envelope_header h = {MQE2E_MODE_SIGNED_GROUP, 1U, f->sender_id, 0U, 0U};
    mqe2e_envelope_view v;
    size_t elen, plen;
    int rc;

    for (uint64_t i = 0; i < n; i++) {
        h.seq = ++f->sseq;
        rc = mqe2e_envelope_seal_signed(f->buf, f->cap, &elen, &f->skey, BENCH_TOPIC, BENCH_GROUP,
                                        &h, f->pt, f->len, bench_sign, f);
        if (rc == MQE2E_OK) rc = mqe2e_envelope_parse(&v, f->buf, elen);
        if (rc == MQE2E_OK) {
            rc = mqe2e_envelope_open_signed(f->dec, f->cap, &plen, &f->skey, f->sign_pk,
                                            BENCH_TOPIC, BENCH_GROUP, &v);
        }
        if (rc != MQE2E_OK || plen != f->len) return rc != MQE2E_OK ? rc : -1;
    }
    return 0;
}

static int run_full(fixture *f, uint64_t n, size_t *first_len)
{
    return bench_protect_unprotect(&f->tx, &f->rx, BENCH_TOPIC, f->pt, f->len, BENCH_NOW, f->buf,
                                   f->dec, f->cap, n, first_len);
}

static int run_case(fixture *f, int c, uint64_t n)
{
    switch (c) {
    case 0: return run_raw(f, n);
    case 1: return run_low(f, n);
    case 2: return run_full(f, n, NULL);
    default: return run_signed(f, n);
    }
}

static void peer_init(bench_peer *pe, const char *client)
{
    bench_peer_init(pe, "bench_crypto",
                    bench_memory_keystore("bench_crypto", client, SEQ_BLOCK, BENCH_GROUP,
                                          BENCH_TOPIC_FILTER, BENCH_GROUP_SECRET, BENCH_NOW));
}

static void fixture_init(fixture *f, size_t len)
{
    int rc;
    memset(f, 0, sizeof *f);
    f->len = len;
    f->cap = mqe2e_protect_bound(len);
    f->pt = malloc(len);
    f->buf = malloc(f->cap);
    f->dec = malloc(f->cap);
    if (f->pt == NULL || f->buf == NULL || f->dec == NULL) die("malloc", MQE2E_ERR_NOMEM);
    bench_fill(f->pt, len, 0x5a);
    bench_fill(f->ad, sizeof f->ad, 0xa5);
    f->sender_id = mqe2e_sender_id_from_client_id(BENCH_SENDER_CLIENT);
    rc = mqe2e_sender_key_derive(&f->skey, BENCH_GROUP_SECRET, BENCH_GROUP, 1U, f->sender_id);
    if (rc != MQE2E_OK) die("sender_key_derive", rc);
    crypto_sign_keypair(f->sign_pk, f->sign_sk);
    peer_init(&f->tx, BENCH_SENDER_CLIENT);
    peer_init(&f->rx, BENCH_RECEIVER_CLIENT);
}

static void fixture_free(fixture *f)
{
    bench_peer_free(&f->tx);
    bench_peer_free(&f->rx);
    mqe2e_sender_key_wipe(&f->skey);
    sodium_memzero(f->sign_sk, sizeof f->sign_sk);
    free(f->pt);
    free(f->buf);
    free(f->dec);
}

/* Bytes an envelope adds at a given sequence number (its varint grows with it). */
static size_t overhead_at(fixture *f, uint64_t seq)
{
    mqe2e_envelope_header h = {MQE2E_MODE_GROUP, 1U, f->sender_id, seq, 0U};
    size_t elen;
    int rc = mqe2e_envelope_seal(f->buf, f->cap, &elen, &f->skey, BENCH_TOPIC, BENCH_GROUP, &h,
                                 f->pt, f->len);
    if (rc != MQE2E_OK) die("envelope_seal", rc);
    return elen - f->len;
}

/*
 * Bytes each mode adds with epoch (channel: generation) 1, the sender's id
 * (channel: direction 1) and seq 1. A channel envelope is encoded exactly as
 * a group one with its body under field 2 (docs/PROTOCOL.md 8.7; the key
 * byte is 0x12 instead of 0x0a) and without the 8-byte instance field, so
 * its size is the group layout's for its own header values less those 8
 * bytes; sealing a real one would take a Noise handshake.
 */
static void overhead_modes(fixture *f, result *r)
{
    mqe2e_envelope_header h = {MQE2E_MODE_GROUP, 1U, f->sender_id, 1U, 0U};
    mqe2e_envelope_header ch = {MQE2E_MODE_GROUP, 1U, 1U, 1U, 0U};
    mqe2e_envelope_header sh = {MQE2E_MODE_SIGNED_GROUP, 1U, f->sender_id, 1U, 0U};
    size_t elen;
    int rc = mqe2e_envelope_seal(f->buf, f->cap, &elen, &f->skey, BENCH_TOPIC, BENCH_GROUP, &h,
                                 f->pt, f->len);
    if (rc != MQE2E_OK) die("envelope_seal", rc);
    r->overhead_group = elen - f->len;
    rc = mqe2e_envelope_seal(f->buf, f->cap, &elen, &f->skey, BENCH_TOPIC, BENCH_GROUP, &ch, f->pt,
                             f->len);
    if (rc != MQE2E_OK) die("envelope_seal", rc);
    r->overhead_channel = elen - f->len - (2U + MQE2E_INSTANCE_BYTES);
    rc = mqe2e_envelope_seal_signed(f->buf, f->cap, &elen, &f->skey, BENCH_TOPIC, BENCH_GROUP, &sh,
                                    f->pt, f->len, bench_sign, f);
    if (rc != MQE2E_OK) die("envelope_seal_signed", rc);
    r->overhead_signed = elen - f->len;
}

/* Grow the count until one batch lasts min_ns, then size it to ~1.1x that. */
static uint64_t calibrate(fixture *f, int c, double min_ns)
{
    uint64_t n = 8;
    for (;;) {
        double t0 = now_ns();
        int rc = run_case(f, c, n);
        double dt = now_ns() - t0;
        if (rc != 0) die(CASE_NAMES[c], rc);
        if (dt >= min_ns / 4.0 || n >= (UINT64_C(1) << 40)) {
            double want = (double)n * (min_ns * 1.1) / (dt > 1.0 ? dt : 1.0);
            return want < 1.0 ? 1U : (uint64_t)want;
        }
        n *= 2U;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void measure(result *r, size_t len, int reps, double min_ns, int smoke)
{
    static double samples[NCASES][MAX_REPS];
    fixture f;
    int rc;

    fixture_init(&f, len);
    /* First message of the full path: derives and caches both keys. */
    if ((rc = run_full(&f, 1, &r->overhead_first)) != 0) die("protect_unprotect", rc);
    r->overhead_first -= len;
    r->overhead_seq32 = overhead_at(&f, UINT64_C(1) << 32);
    overhead_modes(&f, r);
    for (int c = 0; c < NCASES; c++) {
        r->iters[c] = smoke ? 16U : calibrate(&f, c, min_ns);
    }
    for (int k = 0; k < reps; k++) {
        for (int c = 0; c < NCASES; c++) {
            double t0 = now_ns();
            rc = run_case(&f, c, r->iters[c]);
            double dt = now_ns() - t0;
            if (rc != 0) die(CASE_NAMES[c], rc);
            samples[c][k] = dt / (double)r->iters[c];
        }
    }
    for (int c = 0; c < NCASES; c++) {
        qsort(samples[c], (size_t)reps, sizeof samples[c][0], cmp_double);
        r->median[c] = (reps % 2) ? samples[c][reps / 2]
                                  : (samples[c][reps / 2 - 1] + samples[c][reps / 2]) / 2.0;
        r->min[c] = samples[c][0];
    }
    fixture_free(&f);
}

static int write_json(const char *path, const result *res, int reps, double min_ms, int smoke)
{
    FILE *fp = fopen(path, "w");
    if (fp == NULL) {
        fprintf(stderr, "bench_crypto: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(fp, "{\n  \"benchmark\": \"crypto\",\n  \"mqe2e_version\": \"%s\",\n",
            mqe2e_version());
    fprintf(fp, "  \"libsodium_version\": \"%s\",\n", sodium_version_string());
    fprintf(fp, "  \"smoke\": %s,\n  \"repetitions\": %d,\n  \"min_repetition_ms\": %.0f,\n",
            smoke ? "true" : "false", reps, min_ms);
    fprintf(fp, "  \"statistic\": \"median ns per message (encrypt+decrypt)\",\n");
    fprintf(fp, "  \"ad_bytes\": %u,\n  \"topic\": \"%s\",\n  \"group\": \"%s\",\n",
            (unsigned)BENCH_AD_BYTES, BENCH_TOPIC, BENCH_GROUP);
    fprintf(fp, "  \"results\": [\n");
    for (int s = 0; s < NSIZES; s++) {
        const result *r = &res[s];
        fprintf(fp, "    {\"payload_bytes\": %zu", SIZES[s]);
        for (int c = 0; c < NCASES; c++) {
            fprintf(fp, ", \"%s_ns\": %.1f, \"%s_min_ns\": %.1f, \"%s_iterations\": %llu",
                    CASE_NAMES[c], r->median[c], CASE_NAMES[c], r->min[c], CASE_NAMES[c],
                    (unsigned long long)r->iters[c]);
        }
        fprintf(fp,
                ", \"ratio_seal_open_vs_raw\": %.3f, \"ratio_protect_unprotect_vs_raw\": %.3f"
                ", \"overhead_bytes\": %zu, \"overhead_bytes_seq_2_32\": %zu"
                ", \"ratio_signed_seal_open_vs_raw\": %.3f, \"overhead_group_bytes\": %zu"
                ", \"overhead_channel_bytes\": %zu, \"overhead_signed_group_bytes\": %zu}%s\n",
                r->median[1] / r->median[0], r->median[2] / r->median[0], r->overhead_first,
                r->overhead_seq32, r->median[3] / r->median[0], r->overhead_group,
                r->overhead_channel, r->overhead_signed, s + 1 < NSIZES ? "," : "");
    }
    const result *t = &res[1];
    fprintf(fp,
            "  ],\n  \"target\": {\"payload_bytes\": %u, \"max_ratio_seal_open_vs_raw\": %.1f, "
            "\"ratio\": %.3f, \"met\": %s}\n}\n",
            TARGET_SIZE, TARGET_RATIO, t->median[1] / t->median[0],
            t->median[1] / t->median[0] <= TARGET_RATIO ? "true" : "false");
    if (fclose(fp) != 0) {
        fprintf(stderr, "bench_crypto: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_crypto [--json FILE] [--reps N] [--min-ms MS] [--smoke] "
                    "[--strict]\n");
}

int main(int argc, char **argv)
{
    const char *json = NULL;
    int reps = 7, smoke = 0, strict = 0;
    double min_ms = 200.0;
    result res[NSIZES];

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
            json = argv[++i];
        } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--min-ms") == 0 && i + 1 < argc) {
            min_ms = atof(argv[++i]);
        } else if (strcmp(argv[i], "--smoke") == 0) {
            smoke = 1;
        } else if (strcmp(argv[i], "--strict") == 0) {
            strict = 1;
        } else {
            usage();
            return 2;
        }
    }
    if (smoke) reps = 3;
    if (reps < 1 || reps > MAX_REPS || !(min_ms > 0.0)) {
        usage();
        return 2;
    }
    if (sodium_init() < 0) die("sodium_init", MQE2E_ERR_CRYPTO);

    if (smoke) {
        printf("mqe2e %s, libsodium %s; AD %u bytes; SMOKE: %d x 16 messages, timings "
               "meaningless\n",
               mqe2e_version(), sodium_version_string(), (unsigned)BENCH_AD_BYTES, reps);
    } else {
        printf("mqe2e %s, libsodium %s; AD %u bytes; ns/message, median of %d runs of >= %.0f "
               "ms\n",
               mqe2e_version(), sodium_version_string(), (unsigned)BENCH_AD_BYTES, reps, min_ms);
    }
    for (int s = 0; s < NSIZES; s++) {
        measure(&res[s], SIZES[s], reps, min_ms * 1e6, smoke);
    }

    printf("\n| payload | (a) raw AEAD ns | (b) seal+open ns | (c) protect+unprotect ns "
           "| (b)/(a) | (c)/(a) | overhead B | overhead B @seq 2^32 |\n");
    printf("|--------:|----------------:|-----------------:|-------------------------:"
           "|--------:|--------:|-----------:|---------------------:|\n");
    for (int s = 0; s < NSIZES; s++) {
        const result *r = &res[s];
        printf("| %5zu B | %15.0f | %16.0f | %24.0f | %6.2fx | %6.2fx | %10zu | %20zu |\n",
               SIZES[s], r->median[0], r->median[1], r->median[2], r->median[1] / r->median[0],
               r->median[2] / r->median[0], r->overhead_first, r->overhead_seq32);
    }
    printf("\n| payload | (d) signed seal+open ns | (d)/(a) | overhead B: group | channel "
           "| signed group |\n");
    printf("|--------:|------------------------:|--------:|------------------:|--------:"
           "|-------------:|\n");
    for (int s = 0; s < NSIZES; s++) {
        const result *r = &res[s];
        printf("| %5zu B | %23.0f | %6.2fx | %17zu | %7zu | %12zu |\n", SIZES[s], r->median[3],
               r->median[3] / r->median[0], r->overhead_group, r->overhead_channel,
               r->overhead_signed);
    }
    printf("\nper-mode overhead at epoch (channel: generation) 1, seq 1; signed group "
           "target <= 100 B\n");
    double ratio = res[1].median[1] / res[1].median[0];
    int met = ratio <= TARGET_RATIO;
    printf("\noverhead = envelope bytes - payload bytes (first message of a sender, and at "
           "sequence number 2^32)\n");
    printf("target: seal+open <= %.1fx raw AEAD at %u B: %.2fx -> %s%s\n", TARGET_RATIO,
           TARGET_SIZE, ratio, met ? "met" : "OVER",
           smoke ? " (smoke run: not meaningful)" : "");
    if (json != NULL && write_json(json, res, reps, min_ms, smoke) != 0) return 2;
    return (strict && !smoke && !met) ? 3 : 0;
}
