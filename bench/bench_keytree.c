/*
 * Key-tree revocation cost (lib/src/keytree.c, PROTOCOL.md §10) at 1,000,
 * 10,000 and 100,000 members, in-process, no broker:
 *
 *   bench_keytree [--json FILE] [--rounds R] [--smoke] [--sizes N,N,...] [--convert]
 *
 * --sizes: other member counts (at most 16); --convert: the depth a
 * conversion of a push group picks (smallest d with 2^d >= 2n, at least 3;
 * docs/AUTHORITY.md, `group tree`) instead of ceil(log2 n): the crossover
 * with the per-member push for small groups (docs/OPERATIONS.md section 3).
 *
 * For each size n (depth = ceil(log2 n)): n joins; R revocations of random
 * members: bytes of each remove TreeUpdate and the authority's time to make
 * it; for the first revocation every one of the n members (state built from
 * its TreePath taken before) applies the update: unwraps per member (max,
 * mean), member apply time (mean), and the one signature check. Beside it
 * the anchor: today's linear rekey sends one PUSH per remaining member
 * (226 B each as observed in PROTOCOL.md 9.8).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "mqe2e/error.h"
#include "mqe2e/keytree.h"
#include "mqe2e/mqe2e.h"

#define LINEAR_PUSH_BYTES 226U

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void check(const char *what, int rc)
{
    if (rc != MQE2E_OK) {
        fprintf(stderr, "bench_keytree: %s: %s\n", what, mqe2e_strerror(rc));
        exit(2);
    }
}

typedef struct result {
    unsigned members, depth, rounds;
    size_t bytes_min, bytes_max, path_bytes;
    double remove_us;      /* authority, mean per revocation */
    unsigned unwraps_max;
    double unwraps_mean;
    double apply_us;       /* member, mean (symmetric part only) */
    double verify_us;      /* one signature check + decode */
    size_t linear_bytes;
} result;

static void run(result *r, unsigned n, unsigned rounds, int convert)
{
    unsigned d = convert ? 3U : 1U;
    while ((1U << d) < (convert ? 2U * n : n)) d++;
    if (rounds >= n) rounds = n - 1U; /* a revocation needs a member left after it */
    uint8_t pk[32], sk[64];
    crypto_sign_keypair(pk, sk);
    mqe2e_keytree *t = NULL;
    check("keytree_new", mqe2e_keytree_new(&t, d));
    size_t cap = MQE2E_KEYTREE_UPDATE_MAX(MQE2E_KEYTREE_MAX_DEPTH);
    uint8_t *u = malloc(cap);
    size_t plen = MQE2E_KEYTREE_PATH_BYTES(d), ulen = 0;
    uint8_t *keys = malloc((size_t)n * 32U), *paths = malloc((size_t)n * plen);
    if (u == NULL || keys == NULL || paths == NULL) exit(2);
    for (unsigned i = 0; i < n; i++) {
        uint32_t leaf;
        check("add", mqe2e_keytree_add(t, &leaf, keys + (size_t)i * 32U, u, cap, &ulen, sk));
    }
    for (unsigned i = 0; i < n; i++) {
        size_t got;
        check("path", mqe2e_keytree_path(t, i, paths + (size_t)i * plen, plen, &got));
    }
    uint8_t id[16];
    check("id", mqe2e_keytree_id(t, id));
    memset(r, 0, sizeof *r);
    r->members = n;
    r->depth = d;
    r->rounds = rounds;
    r->path_bytes = plen;
    r->bytes_min = SIZE_MAX;
    r->linear_bytes = (size_t)(n - 1U) * LINEAR_PUSH_BYTES;
    double t_remove = 0;
    uint8_t *first = malloc(cap);
    size_t first_len = 0;
    if (first == NULL) exit(2);
    for (unsigned k = 0; k < rounds; k++) {
        uint32_t victim;
        do {
            victim = randombytes_uniform(n);
        } while (mqe2e_keytree_path(t, victim, paths + 0, 0, &ulen) == MQE2E_ERR_NOT_FOUND);
        double t0 = now_us();
        check("remove", mqe2e_keytree_remove(t, victim, u, cap, &ulen, sk));
        t_remove += now_us() - t0;
        if (ulen < r->bytes_min) r->bytes_min = ulen;
        if (ulen > r->bytes_max) r->bytes_max = ulen;
        if (k == 0) {
            memcpy(first, u, ulen);
            first_len = ulen;
        }
    }
    r->remove_us = t_remove / rounds;
    /* Every member at the first revocation's epoch applies it. */
    mqe2e_keytree_update v;
    double t0 = now_us();
    check("update_open", mqe2e_keytree_update_open(&v, first, first_len, pk));
    r->verify_us = now_us() - t0;
    double t_apply = 0, sum = 0;
    unsigned applied = 0;
    for (unsigned i = 0; i < n; i++) {
        mqe2e_keytree_member *m = NULL;
        check("member_new",
              mqe2e_keytree_member_new(&m, id, keys + (size_t)i * 32U, paths + (size_t)i * plen,
                                       plen));
        unsigned uw = 0;
        double a0 = now_us();
        int rc = mqe2e_keytree_member_apply(m, &v, &uw);
        double a1 = now_us();
        mqe2e_keytree_member_free(m);
        if (rc == MQE2E_ERR_TREE_REVOKED) continue;
        check("apply", rc);
        t_apply += a1 - a0;
        sum += uw;
        applied++;
        if (uw > r->unwraps_max) r->unwraps_max = uw;
    }
    r->unwraps_mean = sum / applied;
    r->apply_us = t_apply / applied;
    sodium_memzero(keys, (size_t)n * 32U);
    free(keys);
    free(paths);
    free(first);
    free(u);
    sodium_memzero(sk, sizeof sk);
    mqe2e_keytree_free(t);
}

int main(int argc, char **argv)
{
    const char *json = NULL;
    unsigned rounds = 20;
    int smoke = 0, convert = 0;
    unsigned sizes[16] = {1000, 10000, 100000};
    unsigned nsizes = 3;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) json = argv[++i];
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) rounds = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--smoke") == 0) smoke = 1;
        else if (strcmp(argv[i], "--convert") == 0) convert = 1;
        else if (strcmp(argv[i], "--sizes") == 0 && i + 1 < argc) {
            char *p = argv[++i];
            nsizes = 0;
            while (*p != '\0' && nsizes < 16U) {
                char *end = NULL;
                unsigned long v = strtoul(p, &end, 10);
                if (end == p || v < 2UL || v > 1000000UL) {
                    fprintf(stderr, "bench_keytree: --sizes: 2..1000000 each\n");
                    return 2;
                }
                sizes[nsizes++] = (unsigned)v;
                p = *end == ',' ? end + 1 : end;
            }
        } else {
            fprintf(stderr, "usage: bench_keytree [--json FILE] [--rounds R] [--smoke] "
                            "[--sizes N,N,...] [--convert]\n");
            return 2;
        }
    }
    if (rounds < 1) rounds = 1;
    if (mqe2e_init() != MQE2E_OK) return 2;
    if (smoke) nsizes = 1;
    result r[16];
    printf("key tree (PROTOCOL.md 10), one revocation of a random member%s\n",
           smoke ? "; SMOKE: 1,000 members only" : "");
    printf("| members | depth | bytes per revocation (min-max) | authority us | unwraps max / mean "
           "| member apply us | signature check us | join bytes | linear rekey: pushes, bytes |\n");
    printf("|---:|---:|---|---:|---|---:|---:|---:|---|\n");
    for (unsigned i = 0; i < nsizes; i++) {
        run(&r[i], sizes[i], rounds, convert);
        printf("| %u | %u | %zu-%zu | %.1f | %u / %.2f | %.2f | %.1f | %zu | %u, %zu |\n",
               r[i].members, r[i].depth, r[i].bytes_min, r[i].bytes_max, r[i].remove_us,
               r[i].unwraps_max, r[i].unwraps_mean, r[i].apply_us, r[i].verify_us,
               r[i].path_bytes, r[i].members - 1U, r[i].linear_bytes);
        fflush(stdout);
    }
    if (json != NULL) {
        FILE *f = fopen(json, "w");
        if (f == NULL) return 2;
        fprintf(f, "{\n  \"benchmark\": \"keytree\",\n  \"smoke\": %s,\n  \"rounds\": %u,\n"
                   "  \"sizes\": [\n",
                smoke ? "true" : "false", rounds);
        for (unsigned i = 0; i < nsizes; i++)
            fprintf(f,
                    "    {\"members\": %u, \"depth\": %u, \"revocation_bytes_min\": %zu, "
                    "\"revocation_bytes_max\": %zu, \"authority_remove_us\": %.1f, "
                    "\"unwraps_max\": %u, \"unwraps_mean\": %.3f, \"member_apply_us\": %.2f, "
                    "\"signature_check_us\": %.1f, \"join_bytes\": %zu, "
                    "\"linear_pushes\": %u, \"linear_bytes\": %zu}%s\n",
                    r[i].members, r[i].depth, r[i].bytes_min, r[i].bytes_max, r[i].remove_us,
                    r[i].unwraps_max, r[i].unwraps_mean, r[i].apply_us, r[i].verify_us,
                    r[i].path_bytes, r[i].members - 1U, r[i].linear_bytes,
                    i + 1U < nsizes ? "," : "");
        fprintf(f, "  ]\n}\n");
        if (fclose(f) != 0) return 2;
    }
    return 0;
}
