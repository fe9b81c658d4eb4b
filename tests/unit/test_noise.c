/* Noise handshakes: published vectors, then round trips, then tampering,
 * truncation, replay, turn errors, wrong keys and the transport calls. */
#include <criterion/criterion.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqe2e/error.h"
#include "mqe2e/noise.h"
#include "testutil.h"

#define XX "Noise_XX_25519_ChaChaPoly_SHA256"
#define IK "Noise_IK_25519_ChaChaPoly_SHA256"
#define IKPSK2 "Noise_IKpsk2_25519_ChaChaPoly_SHA256"
#define BUF 512

/* ---- vector runner ----------------------------------------------------- */

static uint8_t *hex_field(const cJSON *obj, const char *key, size_t *len)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(f)) return NULL;
    uint8_t *b = tu_hex_decode(f->valuestring, len);
    cr_assert_not_null(b, "bad hex in %s", key);
    return b;
}

/* Builds one side of a vector; asserts on any setter failure. */
static mqe2e_noise_handshake *vector_side(const cJSON *v, const char *name, int initiator)
{
    const char *pfx = initiator ? "init_" : "resp_";
    char key[64];
    size_t len = 0;
    mqe2e_noise_handshake *hs = NULL;

    snprintf(key, sizeof key, "%sprologue", pfx);
    uint8_t *prologue = hex_field(v, key, &len);
    cr_assert_eq(mqe2e_noise_handshake_new(&hs, name,
                                           initiator ? MQE2E_NOISE_INITIATOR : MQE2E_NOISE_RESPONDER,
                                           prologue, prologue ? len : 0),
                 MQE2E_OK, "%s: new", name);
    free(prologue);

    static const char *fields[] = {"static", "remote_static", "ephemeral"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(key, sizeof key, "%s%s", pfx, fields[i]);
        uint8_t *k = hex_field(v, key, &len);
        if (k == NULL) continue;
        cr_assert_eq(len, 32U);
        int rc = i == 0   ? mqe2e_noise_handshake_set_local_static(hs, k)
                 : i == 1 ? mqe2e_noise_handshake_set_remote_static(hs, k)
                          : mqe2e_noise_handshake_set_ephemeral(hs, k);
        cr_assert_eq(rc, MQE2E_OK, "%s: set %s", name, key);
        free(k);
    }
    snprintf(key, sizeof key, "%spsks", pfx);
    const cJSON *psks = cJSON_GetObjectItemCaseSensitive(v, key);
    const cJSON *p;
    cJSON_ArrayForEach(p, psks)
    {
        uint8_t *k = tu_hex_decode(p->valuestring, &len);
        cr_assert(k != NULL && len == 32U);
        cr_assert_eq(mqe2e_noise_handshake_set_psk(hs, k), MQE2E_OK, "%s: set psk", name);
        free(k);
    }
    return hs;
}

/* One-way patterns have a one-letter base name: "Noise_N_...", "Noise_Xpsk1_...". */
static int is_one_way(const char *name)
{
    const char *b = name + strlen("Noise_");
    return b[0] != '\0' && (b[1] == '_' || (b[1] >= 'a' && b[1] <= 'z'));
}

/* Runs one vector; returns 1 when every byte matched. */
static int run_vector(const cJSON *v)
{
    const char *name = cJSON_GetObjectItemCaseSensitive(v, "protocol_name")->valuestring;
    mqe2e_noise_handshake *ini = vector_side(v, name, 1), *res = vector_side(v, name, 0);
    mqe2e_noise_cipher *ini_tx = NULL, *ini_rx = NULL, *res_tx = NULL, *res_rx = NULL;
    int ok = 1, i = 0;
    size_t hh_len = 0;
    uint8_t *hh = hex_field(v, "handshake_hash", &hh_len);
    const cJSON *m;

    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(v, "messages"))
    {
        size_t pl_len, ct_len, out_len = 0, got_len = 0;
        uint8_t *pl = hex_field(m, "payload", &pl_len);
        uint8_t *ct = hex_field(m, "ciphertext", &ct_len);
        uint8_t out[BUF], got[BUF];
        int rc_w, rc_r;
        if (!mqe2e_noise_handshake_is_complete(ini)) {
            int from_ini = i % 2 == 0;
            mqe2e_noise_handshake *tx = from_ini ? ini : res, *rx = from_ini ? res : ini;
            rc_w = mqe2e_noise_write_message(tx, out, sizeof out, &out_len, pl, pl_len);
            rc_r = mqe2e_noise_read_message(rx, got, sizeof got, &got_len, out, out_len);
        } else {
            if (ini_tx == NULL) {
                uint8_t h1[32], h2[32];
                cr_expect_eq(mqe2e_noise_handshake_is_complete(res), 1, "%s: responder not complete", name);
                cr_assert_eq(mqe2e_noise_handshake_hash(ini, h1), MQE2E_OK);
                cr_assert_eq(mqe2e_noise_handshake_hash(res, h2), MQE2E_OK);
                if (hh == NULL || hh_len != 32 || memcmp(h1, hh, 32) != 0 || memcmp(h2, hh, 32) != 0) {
                    cr_log_error("%s: handshake hash mismatch", name);
                    ok = 0;
                }
                cr_assert_eq(mqe2e_noise_split(ini, &ini_tx, &ini_rx), MQE2E_OK);
                cr_assert_eq(mqe2e_noise_split(res, &res_tx, &res_rx), MQE2E_OK);
            }
            int from_ini = is_one_way(name) || i % 2 == 0;
            mqe2e_noise_cipher *tx = from_ini ? ini_tx : res_tx, *rx = from_ini ? res_rx : ini_rx;
            rc_w = mqe2e_noise_cipher_encrypt(tx, out, sizeof out, &out_len, NULL, 0, pl, pl_len);
            rc_r = mqe2e_noise_cipher_decrypt(rx, got, sizeof got, &got_len, NULL, 0, out, out_len);
        }
        if (rc_w != MQE2E_OK || rc_r != MQE2E_OK || out_len != ct_len || memcmp(out, ct, ct_len) != 0 ||
            got_len != pl_len || memcmp(got, pl, pl_len) != 0) {
            cr_log_error("%s: message %d mismatch (write %d, read %d)", name, i, rc_w, rc_r);
            ok = 0;
        }
        free(pl);
        free(ct);
        i++;
    }
    if (ini_tx == NULL) ok = 0; /* the vector never reached transport */
    free(hh);
    mqe2e_noise_cipher_free(ini_tx);
    mqe2e_noise_cipher_free(ini_rx);
    mqe2e_noise_cipher_free(res_tx);
    mqe2e_noise_cipher_free(res_rx);
    mqe2e_noise_handshake_free(ini);
    mqe2e_noise_handshake_free(res);
    return ok;
}

Test(noise_vectors, all_published_vectors)
{
    static const char *required[] = {XX, IK, "Noise_KK_25519_ChaChaPoly_SHA256",
                                     "Noise_NK_25519_ChaChaPoly_SHA256", IKPSK2};
    int found[5] = {0};
    cJSON *root = tu_load_vectors("noise-25519-chachapoly-sha256.json");
    const cJSON *vectors = cJSON_GetObjectItemCaseSensitive(root, "vectors");
    int total = cJSON_GetArraySize(vectors), passed = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, vectors)
    {
        const char *name = cJSON_GetObjectItemCaseSensitive(v, "protocol_name")->valuestring;
        int ok = run_vector(v);
        printf("noise vector %s: %s\n", name, ok ? "ok" : "FAILED");
        if (!ok) continue;
        passed++;
        for (size_t i = 0; i < 5; i++)
            if (strcmp(name, required[i]) == 0) found[i] = 1;
    }
    printf("noise vectors checked: %d of %d\n", passed, total);
    fflush(stdout);
    for (size_t i = 0; i < 5; i++) cr_expect(found[i], "required vector %s not checked", required[i]);
    cr_expect_eq(total, 59);
    cr_expect_eq(passed, total, "%d of %d vectors passed", passed, total);
    cJSON_Delete(root);
}

/* ---- fixtures for the behavioural tests --------------------------------- */

static const uint8_t PSK[32] = "an enrollment token of 32 bytes";

static void fixed_key(uint8_t sk[32], uint8_t seed)
{
    for (size_t i = 0; i < 32; i++) sk[i] = (uint8_t)(seed + i * 7);
}

static void public_of(uint8_t pk[32], uint8_t seed)
{
    uint8_t sk[32];
    fixed_key(sk, seed);
    cr_assert_eq(crypto_scalarmult_base(pk, sk), 0);
}

enum { SEED_I_S = 1, SEED_R_S = 2, SEED_I_E = 3, SEED_R_E = 4, SEED_OTHER = 5 };

/* Deterministic pair for XX, IK, IKpsk2 and KK (ephemerals fixed so a test
 * can replay exactly the same run and change one byte). */
static void make_pair(const char *name, mqe2e_noise_handshake **ini, mqe2e_noise_handshake **res)
{
    uint8_t sk[32], pk[32];
    static const uint8_t prologue[] = "mqe2e test";
    int pre_r = strstr(name, "_IK") != NULL || strstr(name, "_KK") != NULL;
    int pre_i = strstr(name, "_KK") != NULL;
    cr_assert_eq(mqe2e_noise_handshake_new(ini, name, MQE2E_NOISE_INITIATOR, prologue, sizeof prologue), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_handshake_new(res, name, MQE2E_NOISE_RESPONDER, prologue, sizeof prologue), MQE2E_OK);
    fixed_key(sk, SEED_I_S);
    cr_assert_eq(mqe2e_noise_handshake_set_local_static(*ini, sk), MQE2E_OK);
    fixed_key(sk, SEED_R_S);
    cr_assert_eq(mqe2e_noise_handshake_set_local_static(*res, sk), MQE2E_OK);
    fixed_key(sk, SEED_I_E);
    cr_assert_eq(mqe2e_noise_handshake_set_ephemeral(*ini, sk), MQE2E_OK);
    fixed_key(sk, SEED_R_E);
    cr_assert_eq(mqe2e_noise_handshake_set_ephemeral(*res, sk), MQE2E_OK);
    if (pre_r) {
        public_of(pk, SEED_R_S);
        cr_assert_eq(mqe2e_noise_handshake_set_remote_static(*ini, pk), MQE2E_OK);
    }
    if (pre_i) {
        public_of(pk, SEED_I_S);
        cr_assert_eq(mqe2e_noise_handshake_set_remote_static(*res, pk), MQE2E_OK);
    }
    if (strstr(name, "psk") != NULL) {
        cr_assert_eq(mqe2e_noise_handshake_set_psk(*ini, PSK), MQE2E_OK);
        cr_assert_eq(mqe2e_noise_handshake_set_psk(*res, PSK), MQE2E_OK);
    }
}

/* Honest step: the side whose turn it is writes, the other reads. */
static void step(mqe2e_noise_handshake *tx, mqe2e_noise_handshake *rx, uint8_t *msg, size_t *msg_len,
                 const char *payload)
{
    uint8_t got[BUF];
    size_t got_len = 0, pl = payload ? strlen(payload) : 0;
    cr_assert_eq(mqe2e_noise_write_message(tx, msg, BUF, msg_len, (const uint8_t *)payload, pl), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_read_message(rx, got, sizeof got, &got_len, msg, *msg_len), MQE2E_OK);
    cr_assert_eq(got_len, pl);
    cr_assert(pl == 0 || memcmp(got, payload, pl) == 0);
}

static void free_pair(mqe2e_noise_handshake *a, mqe2e_noise_handshake *b)
{
    mqe2e_noise_handshake_free(a);
    mqe2e_noise_handshake_free(b);
}

/* Runs a pattern's handshake to message `upto` (exclusive) and returns the
 * side that writes message `upto` in *tx and the reader in *rx. */
static void run_until(const char *name, size_t upto, mqe2e_noise_handshake **ini,
                      mqe2e_noise_handshake **res, mqe2e_noise_handshake **tx, mqe2e_noise_handshake **rx)
{
    uint8_t msg[BUF];
    size_t len;
    make_pair(name, ini, res);
    for (size_t i = 0; i < upto; i++) {
        if (i % 2 == 0) step(*ini, *res, msg, &len, "hello");
        else step(*res, *ini, msg, &len, "hello");
    }
    *tx = upto % 2 == 0 ? *ini : *res;
    *rx = upto % 2 == 0 ? *res : *ini;
}

static void assert_dead(mqe2e_noise_handshake *hs)
{
    uint8_t buf[BUF], h[32];
    size_t len;
    cr_assert_eq(mqe2e_noise_handshake_action(hs), MQE2E_NOISE_ACTION_FAILED);
    cr_assert_eq(mqe2e_noise_write_message(hs, buf, sizeof buf, &len, NULL, 0), MQE2E_ERR_STATE);
    cr_assert_eq(mqe2e_noise_read_message(hs, buf, sizeof buf, &len, buf, 100), MQE2E_ERR_STATE);
    cr_assert_eq(mqe2e_noise_handshake_hash(hs, h), MQE2E_ERR_STATE);
    cr_assert_eq(mqe2e_noise_handshake_remote_static(hs, h), MQE2E_ERR_STATE);
    cr_assert_eq(mqe2e_noise_handshake_is_complete(hs), 0);
}

/* ---- round trips and sizes ---------------------------------------------- */

static void full_round_trip(const char *name, int inject, uint8_t hash_out[32])
{
    mqe2e_noise_handshake *ini = NULL, *res = NULL;
    uint8_t msg[BUF], h1[32], h2[32], rs[32], pk[32];
    size_t len;
    if (inject) {
        make_pair(name, &ini, &res);
    } else {
        uint8_t sk[32];
        cr_assert_eq(mqe2e_noise_handshake_new(&ini, name, MQE2E_NOISE_INITIATOR, NULL, 0), MQE2E_OK);
        cr_assert_eq(mqe2e_noise_handshake_new(&res, name, MQE2E_NOISE_RESPONDER, NULL, 0), MQE2E_OK);
        fixed_key(sk, SEED_I_S);
        cr_assert_eq(mqe2e_noise_handshake_set_local_static(ini, sk), MQE2E_OK);
        fixed_key(sk, SEED_R_S);
        cr_assert_eq(mqe2e_noise_handshake_set_local_static(res, sk), MQE2E_OK);
        if (strstr(name, "_IK") != NULL) {
            public_of(pk, SEED_R_S);
            cr_assert_eq(mqe2e_noise_handshake_set_remote_static(ini, pk), MQE2E_OK);
        }
        if (strstr(name, "psk") != NULL) {
            cr_assert_eq(mqe2e_noise_handshake_set_psk(ini, PSK), MQE2E_OK);
            cr_assert_eq(mqe2e_noise_handshake_set_psk(res, PSK), MQE2E_OK);
        }
    }
    for (int guard = 0; guard < 8 && !mqe2e_noise_handshake_is_complete(ini); guard++) {
        if (mqe2e_noise_handshake_action(ini) == MQE2E_NOISE_ACTION_WRITE) step(ini, res, msg, &len, "payload");
        else step(res, ini, msg, &len, "payload");
    }
    cr_assert_eq(mqe2e_noise_handshake_is_complete(ini), 1);
    cr_assert_eq(mqe2e_noise_handshake_is_complete(res), 1);
    cr_assert_eq(mqe2e_noise_handshake_action(ini), MQE2E_NOISE_ACTION_SPLIT);
    cr_assert_eq(mqe2e_noise_handshake_hash(ini, h1), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_handshake_hash(res, h2), MQE2E_OK);
    cr_assert_eq(memcmp(h1, h2, 32), 0);
    /* Both sides learnt the other's static key. */
    cr_assert_eq(mqe2e_noise_handshake_remote_static(ini, rs), MQE2E_OK);
    public_of(pk, SEED_R_S);
    cr_assert_eq(memcmp(rs, pk, 32), 0);
    cr_assert_eq(mqe2e_noise_handshake_remote_static(res, rs), MQE2E_OK);
    public_of(pk, SEED_I_S);
    cr_assert_eq(memcmp(rs, pk, 32), 0);
    memcpy(hash_out, h1, 32);
    free_pair(ini, res);
}

Test(noise_round_trip, random_ephemerals_xx_ik_ikpsk2)
{
    const char *names[] = {XX, IK, IKPSK2};
    for (size_t i = 0; i < 3; i++) {
        uint8_t a[32], b[32];
        full_round_trip(names[i], 0, a);
        full_round_trip(names[i], 0, b);
        /* Fresh ephemerals: two runs must never give the same transcript. */
        cr_assert_neq(memcmp(a, b, 32), 0, "%s: repeated handshake hash", names[i]);
        full_round_trip(names[i], 1, a);
        full_round_trip(names[i], 1, b);
        cr_assert_eq(memcmp(a, b, 32), 0, "%s: injected ephemerals must be deterministic", names[i]);
    }
}

static void check_sizes(const char *name, const size_t *expect, size_t n)
{
    mqe2e_noise_handshake *ini = NULL, *res = NULL;
    uint8_t msg[BUF], got[BUF];
    size_t len, glen, want;
    make_pair(name, &ini, &res);
    for (size_t i = 0; i < n; i++) {
        mqe2e_noise_handshake *tx = i % 2 == 0 ? ini : res, *rx = i % 2 == 0 ? res : ini;
        cr_assert_eq(mqe2e_noise_handshake_message_len(tx, 0, &want), MQE2E_OK);
        cr_assert_eq(want, expect[i], "%s msg %zu: predicted %zu", name, i + 1, want);
        cr_assert_eq(mqe2e_noise_write_message(tx, msg, sizeof msg, &len, NULL, 0), MQE2E_OK);
        cr_assert_eq(len, expect[i], "%s msg %zu: %zu bytes", name, i + 1, len);
        cr_assert_eq(mqe2e_noise_read_message(rx, got, sizeof got, &glen, msg, len), MQE2E_OK);
        cr_assert_eq(glen, 0U);
    }
    cr_assert_eq(mqe2e_noise_handshake_is_complete(ini), 1);
    free_pair(ini, res);
}

Test(noise_round_trip, message_sizes_with_empty_payloads)
{
    static const size_t xx[] = {32, 96, 64};
    static const size_t ikpsk2[] = {96, 48};
    static const size_t ik[] = {96, 48};
    static const size_t kk[] = {48, 48};
    check_sizes(XX, xx, 3);
    check_sizes("Noise_KK_25519_ChaChaPoly_SHA256", kk, 2);
    check_sizes(IKPSK2, ikpsk2, 2);
    check_sizes(IK, ik, 2);
}

/* ---- tampering ------------------------------------------------------------ */

/* Flip every byte of handshake message k and check where it is caught. */
static void flip_every_byte(const char *name, size_t k, size_t n_msgs)
{
    mqe2e_noise_handshake *ini = NULL, *res = NULL, *tx = NULL, *rx = NULL;
    uint8_t msg[BUF], got[BUF];
    size_t len, glen;
    run_until(name, k, &ini, &res, &tx, &rx);
    cr_assert_eq(mqe2e_noise_write_message(tx, msg, sizeof msg, &len, (const uint8_t *)"hello", 5), MQE2E_OK);
    free_pair(ini, res);

    for (size_t j = 0; j < len; j++) {
        uint8_t bad[BUF];
        memcpy(bad, msg, len);
        bad[j] ^= 0x01;
        run_until(name, k, &ini, &res, &tx, &rx);
        /* The writer must produce the very same message as before. */
        uint8_t again[BUF];
        size_t alen;
        cr_assert_eq(mqe2e_noise_write_message(tx, again, sizeof again, &alen, (const uint8_t *)"hello", 5), MQE2E_OK);
        cr_assert(alen == len && memcmp(again, msg, len) == 0);
        int rc = mqe2e_noise_read_message(rx, got, sizeof got, &glen, bad, len);
        if (strcmp(name, XX) == 0 && k == 0) {
            /* XX message 1 is e and a clear payload: nothing to authenticate
             * yet, so the read succeeds, but the flipped byte is in h and is
             * caught when the initiator reads message 2. */
            cr_assert_eq(rc, MQE2E_OK, "XX msg1 byte %zu: %d", j, rc);
            uint8_t m2[BUF];
            size_t m2len;
            rc = mqe2e_noise_write_message(res, m2, sizeof m2, &m2len, NULL, 0);
            if (rc == MQE2E_OK) {
                rc = mqe2e_noise_read_message(ini, got, sizeof got, &glen, m2, m2len);
                cr_assert_eq(rc, MQE2E_ERR_AUTH, "XX msg1 byte %zu: msg2 read gave %d", j, rc);
                assert_dead(ini);
            } else {
                /* Only possible if the flip made e a small-order point. */
                cr_assert_eq(rc, MQE2E_ERR_AUTH);
            }
        } else {
            cr_assert_eq(rc, MQE2E_ERR_AUTH, "%s msg%zu byte %zu: read gave %d", name, k + 1, j, rc);
            assert_dead(rx);
            /* The payload buffer holds no partial plaintext. */
            for (size_t b = 0; b < 5; b++) cr_assert_eq(got[b], 0);
        }
        free_pair(ini, res);
    }
    (void)n_msgs;
}

Test(noise_tamper, xx_every_byte_of_every_message)
{
    for (size_t k = 0; k < 3; k++) flip_every_byte(XX, k, 3);
}

Test(noise_tamper, ikpsk2_every_byte_of_every_message)
{
    for (size_t k = 0; k < 2; k++) flip_every_byte(IKPSK2, k, 2);
}

Test(noise_tamper, truncated_messages)
{
    mqe2e_noise_handshake *ini = NULL, *res = NULL, *tx, *rx;
    uint8_t msg[BUF], got[BUF];
    size_t len, glen;

    /* XX message 2 with an empty payload: every shorter length is missing
     * keys or tags, refused as DECODE before any state changes. */
    run_until(XX, 1, &ini, &res, &tx, &rx);
    cr_assert_eq(mqe2e_noise_write_message(tx, msg, sizeof msg, &len, NULL, 0), MQE2E_OK);
    cr_assert_eq(len, 96U);
    for (size_t cut = 0; cut < len; cut++)
        cr_assert_eq(mqe2e_noise_read_message(rx, got, sizeof got, &glen, msg, cut), MQE2E_ERR_DECODE, "cut %zu", cut);
    /* Still usable: the intact message goes through. */
    cr_assert_eq(mqe2e_noise_read_message(rx, got, sizeof got, &glen, msg, len), MQE2E_OK);
    free_pair(ini, res);

    /* IKpsk2 message 1 with a payload: cutting into the payload leaves a
     * well-formed but unauthentic message (AUTH); cutting into keys is DECODE. */
    for (size_t cut = 0; cut < 96 + 5; cut++) {
        run_until(IKPSK2, 0, &ini, &res, &tx, &rx);
        cr_assert_eq(mqe2e_noise_write_message(tx, msg, sizeof msg, &len, (const uint8_t *)"hello", 5), MQE2E_OK);
        cr_assert_eq(len, 101U);
        int rc = mqe2e_noise_read_message(rx, got, sizeof got, &glen, msg, cut);
        cr_assert_eq(rc, cut < 96 ? MQE2E_ERR_DECODE : MQE2E_ERR_AUTH, "cut %zu gave %d", cut, rc);
        free_pair(ini, res);
    }
}

Test(noise_tamper, oversized_and_small_buffers)
{
    mqe2e_noise_handshake *ini = NULL, *res = NULL, *tx, *rx;
    uint8_t *big = calloc(70000, 1);
    uint8_t got[BUF];
    size_t len, glen;
    cr_assert_not_null(big);
    run_until(XX, 0, &ini, &res, &tx, &rx);
    /* XX msg1 adds 32 bytes: 65503 is the largest payload. */
    cr_assert_eq(mqe2e_noise_write_message(ini, big, 70000, &len, big, 65504), MQE2E_ERR_TOO_LARGE);
    cr_assert_eq(mqe2e_noise_handshake_message_len(ini, 65504, &len), MQE2E_ERR_TOO_LARGE);
    cr_assert_eq(mqe2e_noise_handshake_message_len(ini, 65503, &len), MQE2E_OK);
    cr_assert_eq(len, 65535U);
    cr_assert_eq(mqe2e_noise_read_message(res, big, 70000, &glen, big, 65536), MQE2E_ERR_TOO_LARGE);
    /* Non-fatal: the handshake goes on. */
    cr_assert_eq(mqe2e_noise_write_message(ini, big, 31, &len, NULL, 0), MQE2E_ERR_BUFFER_TOO_SMALL);
    cr_assert_eq(mqe2e_noise_write_message(ini, big, 70000, &len, (const uint8_t *)"abc", 3), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_read_message(res, got, 2, &glen, big, len), MQE2E_ERR_BUFFER_TOO_SMALL);
    cr_assert_eq(mqe2e_noise_read_message(res, got, 3, &glen, big, len), MQE2E_OK);
    cr_assert_eq(glen, 3U);
    free_pair(ini, res);
    free(big);
}

/* ---- replay and turn errors --------------------------------------------- */

Test(noise_state, replayed_message_is_refused)
{
    mqe2e_noise_handshake *ini = NULL, *res = NULL;
    uint8_t m1[BUF], m2[BUF], m3[BUF], got[BUF];
    size_t l1, l2, l3, glen;
    make_pair(XX, &ini, &res);
    step(ini, res, m1, &l1, "a");
    cr_assert_eq(mqe2e_noise_read_message(res, got, sizeof got, &glen, m1, l1), MQE2E_ERR_STATE);
    step(res, ini, m2, &l2, "b");
    cr_assert_eq(mqe2e_noise_read_message(ini, got, sizeof got, &glen, m2, l2), MQE2E_ERR_STATE);
    step(ini, res, m3, &l3, "c");
    cr_assert_eq(mqe2e_noise_read_message(res, got, sizeof got, &glen, m3, l3), MQE2E_ERR_STATE);
    cr_assert_eq(mqe2e_noise_read_message(res, got, sizeof got, &glen, m1, l1), MQE2E_ERR_STATE);
    /* Replays are turn errors, not failures: both sides still split. */
    cr_assert_eq(mqe2e_noise_handshake_is_complete(res), 1);
    cr_assert_eq(mqe2e_noise_handshake_is_complete(ini), 1);
    free_pair(ini, res);

    /* A message of one run replayed into a fresh responder's run (same
     * static key, new ephemeral) is accepted as message 1, but the stale
     * message 3 of the old run does not authenticate. */
    mqe2e_noise_handshake *r2 = NULL;
    uint8_t sk[32], out[BUF];
    size_t olen;
    cr_assert_eq(mqe2e_noise_handshake_new(&r2, XX, MQE2E_NOISE_RESPONDER, (const uint8_t *)"mqe2e test", 11), MQE2E_OK);
    fixed_key(sk, SEED_R_S);
    cr_assert_eq(mqe2e_noise_handshake_set_local_static(r2, sk), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_read_message(r2, got, sizeof got, &glen, m1, l1), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_write_message(r2, out, sizeof out, &olen, NULL, 0), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_read_message(r2, got, sizeof got, &glen, m3, l3), MQE2E_ERR_AUTH);
    assert_dead(r2);
    mqe2e_noise_handshake_free(r2);
}

Test(noise_state, out_of_order_calls)
{
    mqe2e_noise_handshake *ini = NULL, *res = NULL;
    mqe2e_noise_cipher *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    uint8_t msg[BUF], got[BUF], h[32];
    size_t len, glen;
    make_pair(XX, &ini, &res);
    cr_assert_eq(mqe2e_noise_handshake_action(ini), MQE2E_NOISE_ACTION_WRITE);
    cr_assert_eq(mqe2e_noise_handshake_action(res), MQE2E_NOISE_ACTION_READ);
    cr_assert_eq(mqe2e_noise_write_message(res, msg, sizeof msg, &len, NULL, 0), MQE2E_ERR_STATE);
    cr_assert_eq(mqe2e_noise_read_message(ini, got, sizeof got, &glen, msg, 32), MQE2E_ERR_STATE);
    cr_assert_eq(mqe2e_noise_handshake_hash(ini, h), MQE2E_ERR_STATE);
    cr_assert_eq(mqe2e_noise_handshake_remote_static(ini, h), MQE2E_ERR_STATE);
    cr_assert_eq(mqe2e_noise_split(ini, &a, &b), MQE2E_ERR_STATE);
    cr_assert_null(a);
    step(ini, res, msg, &len, NULL);
    /* Writing twice in a row is refused too. */
    cr_assert_eq(mqe2e_noise_write_message(ini, msg, sizeof msg, &len, NULL, 0), MQE2E_ERR_STATE);
    /* Keys cannot change once started. */
    cr_assert_eq(mqe2e_noise_handshake_set_local_static(ini, h), MQE2E_ERR_STATE);
    cr_assert_eq(mqe2e_noise_handshake_set_ephemeral(ini, h), MQE2E_ERR_STATE);
    step(res, ini, msg, &len, NULL);
    step(ini, res, msg, &len, NULL);
    cr_assert_eq(mqe2e_noise_write_message(ini, msg, sizeof msg, &len, NULL, 0), MQE2E_ERR_STATE);
    cr_assert_eq(mqe2e_noise_write_message(res, msg, sizeof msg, &len, NULL, 0), MQE2E_ERR_STATE);
    cr_assert_eq(mqe2e_noise_split(ini, &a, &b), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_split(ini, &c, &d), MQE2E_ERR_STATE, "split twice would reuse keys");
    cr_assert_eq(mqe2e_noise_handshake_action(ini), MQE2E_NOISE_ACTION_DONE);
    cr_assert_eq(mqe2e_noise_handshake_hash(ini, h), MQE2E_OK);
    mqe2e_noise_cipher_free(a);
    mqe2e_noise_cipher_free(b);
    free_pair(ini, res);
    /* NULL everywhere. */
    mqe2e_noise_handshake_free(NULL);
    mqe2e_noise_cipher_free(NULL);
    cr_assert_eq(mqe2e_noise_handshake_action(NULL), MQE2E_NOISE_ACTION_FAILED);
    cr_assert_eq(mqe2e_noise_write_message(NULL, msg, sizeof msg, &len, NULL, 0), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_noise_read_message(NULL, got, sizeof got, &glen, msg, 1), MQE2E_ERR_INVALID_ARG);
}

Test(noise_state, protocol_names)
{
    static const char *bad[] = {
        "", "Noise_", "Noise_XX", "Noise_XX_25519_AESGCM_SHA256", "Noise_XX_448_ChaChaPoly_SHA256",
        "Noise_XX_25519_ChaChaPoly_BLAKE2s", "Noise_ZZ_25519_ChaChaPoly_SHA256",
        "Noise_XXfallback_25519_ChaChaPoly_SHA256", "Noise_XXpsk_25519_ChaChaPoly_SHA256",
        "Noise_XXpsk4_25519_ChaChaPoly_SHA256", "Noise_NNpsk3_25519_ChaChaPoly_SHA256",
        "Noise_XXpsk0+psk0_25519_ChaChaPoly_SHA256", "Noise_XXpsk10_25519_ChaChaPoly_SHA256",
        "Noise_XXpsk0+_25519_ChaChaPoly_SHA256", "Noise_xx_25519_ChaChaPoly_SHA256",
        "Noise_XX_25519_ChaChaPoly_SHA256 ", "NoisePSK_XX_25519_ChaChaPoly_SHA256",
        "Noise_XXhfs_25519+Kyber1024_ChaChaPoly_SHA256",
    };
    mqe2e_noise_handshake *hs = (mqe2e_noise_handshake *)1;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(mqe2e_noise_handshake_new(&hs, bad[i], MQE2E_NOISE_INITIATOR, NULL, 0), MQE2E_ERR_SUITE,
                     "accepted %s", bad[i]);
        cr_assert_null(hs);
    }
    cr_assert_eq(mqe2e_noise_handshake_new(&hs, XX, 2, NULL, 0), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_noise_handshake_new(&hs, NULL, 0, NULL, 0), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_noise_handshake_new(&hs, XX, 0, NULL, 3), MQE2E_ERR_INVALID_ARG);
    /* Two psks, as the spec writes multi-psk names. */
    cr_assert_eq(mqe2e_noise_handshake_new(&hs, "Noise_XXpsk0+psk3_25519_ChaChaPoly_SHA256", 0, NULL, 0), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_handshake_set_psk(hs, PSK), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_handshake_set_psk(hs, PSK), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_handshake_set_psk(hs, PSK), MQE2E_ERR_STATE);
    mqe2e_noise_handshake_free(hs);
}

Test(noise_state, missing_or_unexpected_keys)
{
    mqe2e_noise_handshake *hs = NULL;
    uint8_t sk[32], pk[32], msg[BUF], got[BUF];
    size_t len, glen;
    fixed_key(sk, SEED_I_S);
    public_of(pk, SEED_R_S);

    /* IK initiator without the responder's static key. */
    cr_assert_eq(mqe2e_noise_handshake_new(&hs, IK, MQE2E_NOISE_INITIATOR, NULL, 0), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_handshake_set_local_static(hs, sk), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_write_message(hs, msg, sizeof msg, &len, NULL, 0), MQE2E_ERR_STATE);
    /* Non-fatal: supplying it lets the handshake start. */
    cr_assert_eq(mqe2e_noise_handshake_set_remote_static(hs, pk), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_write_message(hs, msg, sizeof msg, &len, NULL, 0), MQE2E_OK);
    mqe2e_noise_handshake_free(hs);

    /* IK initiator without its own static key. */
    cr_assert_eq(mqe2e_noise_handshake_new(&hs, IK, MQE2E_NOISE_INITIATOR, NULL, 0), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_handshake_set_remote_static(hs, pk), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_write_message(hs, msg, sizeof msg, &len, NULL, 0), MQE2E_ERR_STATE);
    mqe2e_noise_handshake_free(hs);

    /* IKpsk2 responder without the psk refuses to read. */
    cr_assert_eq(mqe2e_noise_handshake_new(&hs, IKPSK2, MQE2E_NOISE_RESPONDER, NULL, 0), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_handshake_set_local_static(hs, sk), MQE2E_OK);
    memset(msg, 0x42, 96);
    cr_assert_eq(mqe2e_noise_read_message(hs, got, sizeof got, &glen, msg, 96), MQE2E_ERR_STATE);
    /* The responder of IK learns the initiator's key from message 1. */
    cr_assert_eq(mqe2e_noise_handshake_set_remote_static(hs, pk), MQE2E_ERR_STATE);
    mqe2e_noise_handshake_free(hs);

    /* XX has neither pre-shared keys nor a psk; NN has no static key at all. */
    cr_assert_eq(mqe2e_noise_handshake_new(&hs, XX, MQE2E_NOISE_INITIATOR, NULL, 0), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_handshake_set_remote_static(hs, pk), MQE2E_ERR_STATE);
    cr_assert_eq(mqe2e_noise_handshake_set_psk(hs, PSK), MQE2E_ERR_STATE);
    /* XX initiator writes message 1 without s (s is only needed in
     * message 3), but the check is made up front. */
    cr_assert_eq(mqe2e_noise_write_message(hs, msg, sizeof msg, &len, NULL, 0), MQE2E_ERR_STATE);
    mqe2e_noise_handshake_free(hs);
    cr_assert_eq(mqe2e_noise_handshake_new(&hs, "Noise_NN_25519_ChaChaPoly_SHA256", 1, NULL, 0), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_handshake_set_local_static(hs, sk), MQE2E_ERR_STATE);
    mqe2e_noise_handshake_free(hs);
}

/* ---- wrong keys ------------------------------------------------------------ */

Test(noise_keys, wrong_psk_is_auth)
{
    mqe2e_noise_handshake *ini = NULL, *res = NULL;
    uint8_t msg[BUF], got[BUF], sk[32], pk[32], other[32];
    size_t len, glen;
    memcpy(other, PSK, 32);
    other[31] ^= 0x80;
    cr_assert_eq(mqe2e_noise_handshake_new(&ini, IKPSK2, MQE2E_NOISE_INITIATOR, NULL, 0), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_handshake_new(&res, IKPSK2, MQE2E_NOISE_RESPONDER, NULL, 0), MQE2E_OK);
    fixed_key(sk, SEED_I_S);
    cr_assert_eq(mqe2e_noise_handshake_set_local_static(ini, sk), MQE2E_OK);
    fixed_key(sk, SEED_R_S);
    cr_assert_eq(mqe2e_noise_handshake_set_local_static(res, sk), MQE2E_OK);
    public_of(pk, SEED_R_S);
    cr_assert_eq(mqe2e_noise_handshake_set_remote_static(ini, pk), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_handshake_set_psk(ini, other), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_handshake_set_psk(res, PSK), MQE2E_OK);
    /* psk2 enters after message 1, so message 1 still authenticates ... */
    step(ini, res, msg, &len, "enroll me");
    /* ... and the mismatch surfaces on message 2. */
    cr_assert_eq(mqe2e_noise_write_message(res, msg, sizeof msg, &len, (const uint8_t *)"ok", 2), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_read_message(ini, got, sizeof got, &glen, msg, len), MQE2E_ERR_AUTH);
    assert_dead(ini);
    free_pair(ini, res);

    /* With psk0 the very first message fails. */
    cr_assert_eq(mqe2e_noise_handshake_new(&ini, "Noise_NNpsk0_25519_ChaChaPoly_SHA256", 1, NULL, 0), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_handshake_new(&res, "Noise_NNpsk0_25519_ChaChaPoly_SHA256", 0, NULL, 0), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_handshake_set_psk(ini, other), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_handshake_set_psk(res, PSK), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_write_message(ini, msg, sizeof msg, &len, NULL, 0), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_read_message(res, got, sizeof got, &glen, msg, len), MQE2E_ERR_AUTH);
    assert_dead(res);
    free_pair(ini, res);
}

Test(noise_keys, wrong_responder_static_in_ik_is_auth)
{
    const char *names[] = {IK, IKPSK2};
    for (size_t i = 0; i < 2; i++) {
        mqe2e_noise_handshake *ini = NULL, *res = NULL;
        uint8_t msg[BUF], got[BUF], sk[32], pk[32];
        size_t len, glen;
        cr_assert_eq(mqe2e_noise_handshake_new(&ini, names[i], MQE2E_NOISE_INITIATOR, NULL, 0), MQE2E_OK);
        cr_assert_eq(mqe2e_noise_handshake_new(&res, names[i], MQE2E_NOISE_RESPONDER, NULL, 0), MQE2E_OK);
        fixed_key(sk, SEED_I_S);
        cr_assert_eq(mqe2e_noise_handshake_set_local_static(ini, sk), MQE2E_OK);
        fixed_key(sk, SEED_R_S);
        cr_assert_eq(mqe2e_noise_handshake_set_local_static(res, sk), MQE2E_OK);
        public_of(pk, SEED_OTHER); /* the device pinned another authority key */
        cr_assert_eq(mqe2e_noise_handshake_set_remote_static(ini, pk), MQE2E_OK);
        if (i == 1) {
            cr_assert_eq(mqe2e_noise_handshake_set_psk(ini, PSK), MQE2E_OK);
            cr_assert_eq(mqe2e_noise_handshake_set_psk(res, PSK), MQE2E_OK);
        }
        cr_assert_eq(mqe2e_noise_write_message(ini, msg, sizeof msg, &len, NULL, 0), MQE2E_OK);
        cr_assert_eq(mqe2e_noise_read_message(res, got, sizeof got, &glen, msg, len), MQE2E_ERR_AUTH);
        assert_dead(res);
        free_pair(ini, res);
    }
}

/* Points whose X25519 output is all zeros for every scalar. */
static const char *SMALL_ORDER[] = {
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
};

Test(noise_keys, small_order_keys_are_refused)
{
    for (size_t p = 0; p < sizeof SMALL_ORDER / sizeof SMALL_ORDER[0]; p++) {
        size_t plen;
        uint8_t *bad = tu_hex_decode(SMALL_ORDER[p], &plen);
        mqe2e_noise_handshake *ini = NULL, *res = NULL, *tx, *rx;
        uint8_t msg[BUF], got[BUF], sk[32];
        size_t len, glen;
        cr_assert(bad != NULL && plen == 32);

        /* A pinned responder key of small order: the first DH (es) refuses. */
        cr_assert_eq(mqe2e_noise_handshake_new(&ini, IKPSK2, MQE2E_NOISE_INITIATOR, NULL, 0), MQE2E_OK);
        fixed_key(sk, SEED_I_S);
        cr_assert_eq(mqe2e_noise_handshake_set_local_static(ini, sk), MQE2E_OK);
        cr_assert_eq(mqe2e_noise_handshake_set_remote_static(ini, bad), MQE2E_OK);
        cr_assert_eq(mqe2e_noise_handshake_set_psk(ini, PSK), MQE2E_OK);
        cr_assert_eq(mqe2e_noise_write_message(ini, msg, sizeof msg, &len, NULL, 0), MQE2E_ERR_AUTH);
        assert_dead(ini);
        mqe2e_noise_handshake_free(ini);

        /* A small-order ephemeral in XX message 1: read (no DH yet) succeeds,
         * the responder's ee when writing message 2 refuses. */
        run_until(XX, 0, &ini, &res, &tx, &rx);
        cr_assert_eq(mqe2e_noise_write_message(ini, msg, sizeof msg, &len, NULL, 0), MQE2E_OK);
        memcpy(msg, bad, 32);
        cr_assert_eq(mqe2e_noise_read_message(res, got, sizeof got, &glen, msg, len), MQE2E_OK);
        cr_assert_eq(mqe2e_noise_write_message(res, msg, sizeof msg, &len, NULL, 0), MQE2E_ERR_AUTH);
        assert_dead(res);
        free_pair(ini, res);

        /* A small-order ephemeral in XX message 2: refused while reading. */
        run_until(XX, 1, &ini, &res, &tx, &rx);
        cr_assert_eq(mqe2e_noise_write_message(res, msg, sizeof msg, &len, NULL, 0), MQE2E_OK);
        memcpy(msg, bad, 32);
        cr_assert_eq(mqe2e_noise_read_message(ini, got, sizeof got, &glen, msg, len), MQE2E_ERR_AUTH);
        assert_dead(ini);
        free_pair(ini, res);
        free(bad);
    }
}

/* ---- transport ------------------------------------------------------------- */

static void xx_split(mqe2e_noise_cipher **i_tx, mqe2e_noise_cipher **i_rx, mqe2e_noise_cipher **r_tx,
                     mqe2e_noise_cipher **r_rx)
{
    mqe2e_noise_handshake *ini = NULL, *res = NULL, *tx, *rx;
    run_until(XX, 3, &ini, &res, &tx, &rx);
    cr_assert_eq(mqe2e_noise_split(ini, i_tx, i_rx), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_split(res, r_tx, r_rx), MQE2E_OK);
    free_pair(ini, res);
}

static void free4(mqe2e_noise_cipher *a, mqe2e_noise_cipher *b, mqe2e_noise_cipher *c, mqe2e_noise_cipher *d)
{
    mqe2e_noise_cipher_free(a);
    mqe2e_noise_cipher_free(b);
    mqe2e_noise_cipher_free(c);
    mqe2e_noise_cipher_free(d);
}

Test(noise_transport, explicit_nonce_out_of_order)
{
    mqe2e_noise_cipher *itx, *irx, *rtx, *rrx;
    uint8_t ct[10][64], pt[64];
    size_t ct_len[10], len;
    static const uint8_t ad[] = "channel-7";
    xx_split(&itx, &irx, &rtx, &rrx);
    for (uint64_t n = 0; n < 10; n++) {
        char text[16];
        snprintf(text, sizeof text, "msg %u", (unsigned)n);
        cr_assert_eq(mqe2e_noise_cipher_encrypt_n(itx, n * 3, ct[n], sizeof ct[n], &ct_len[n], ad, sizeof ad,
                                                  (const uint8_t *)text, strlen(text)),
                     MQE2E_OK);
    }
    /* Delivered backwards, as a broker that reorders might. */
    for (int n = 9; n >= 0; n--) {
        char text[16];
        snprintf(text, sizeof text, "msg %u", (unsigned)n);
        cr_assert_eq(mqe2e_noise_cipher_decrypt_n(rrx, (uint64_t)n * 3, pt, sizeof pt, &len, ad, sizeof ad,
                                                  ct[n], ct_len[n]),
                     MQE2E_OK);
        cr_assert(len == strlen(text) && memcmp(pt, text, len) == 0);
    }
    /* The explicit calls never move the implicit counter. */
    cr_assert_eq(mqe2e_noise_cipher_nonce(itx), 0U);
    cr_assert_eq(mqe2e_noise_cipher_nonce(rrx), 0U);
    /* Wrong n, wrong ad, wrong direction, flipped tag: all AUTH. */
    cr_assert_eq(mqe2e_noise_cipher_decrypt_n(rrx, 4, pt, sizeof pt, &len, ad, sizeof ad, ct[1], ct_len[1]), MQE2E_ERR_AUTH);
    cr_assert_eq(mqe2e_noise_cipher_decrypt_n(rrx, 3, pt, sizeof pt, &len, ad, sizeof ad - 1, ct[1], ct_len[1]), MQE2E_ERR_AUTH);
    cr_assert_eq(mqe2e_noise_cipher_decrypt_n(irx, 3, pt, sizeof pt, &len, ad, sizeof ad, ct[1], ct_len[1]), MQE2E_ERR_AUTH);
    ct[1][ct_len[1] - 1] ^= 1;
    cr_assert_eq(mqe2e_noise_cipher_decrypt_n(rrx, 3, pt, sizeof pt, &len, ad, sizeof ad, ct[1], ct_len[1]), MQE2E_ERR_AUTH);
    cr_assert_eq(mqe2e_noise_cipher_decrypt_n(rrx, 3, pt, sizeof pt, &len, ad, sizeof ad, ct[1], 15), MQE2E_ERR_DECODE);
    /* 2^64-1 is reserved for rekey. */
    cr_assert_eq(mqe2e_noise_cipher_encrypt_n(itx, UINT64_MAX, ct[0], sizeof ct[0], &len, NULL, 0, pt, 1), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_noise_cipher_decrypt_n(rrx, UINT64_MAX, pt, sizeof pt, &len, NULL, 0, ct[0], 17), MQE2E_ERR_INVALID_ARG);
    /* Same n through the implicit call gives the same bytes (one nonce layout). */
    uint8_t a[64], b[64];
    size_t al, bl;
    cr_assert_eq(mqe2e_noise_cipher_encrypt_n(rtx, 0, a, sizeof a, &al, NULL, 0, (const uint8_t *)"x", 1), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_cipher_encrypt(rtx, b, sizeof b, &bl, NULL, 0, (const uint8_t *)"x", 1), MQE2E_OK);
    cr_assert(al == bl && memcmp(a, b, al) == 0);
    free4(itx, irx, rtx, rrx);
}

Test(noise_transport, implicit_nonce_and_failed_decrypt)
{
    mqe2e_noise_cipher *itx, *irx, *rtx, *rrx;
    uint8_t c1[64], c2[64], pt[64];
    size_t l1, l2, len;
    xx_split(&itx, &irx, &rtx, &rrx);
    cr_assert_eq(mqe2e_noise_cipher_encrypt(itx, c1, sizeof c1, &l1, NULL, 0, (const uint8_t *)"one", 3), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_cipher_encrypt(itx, c2, sizeof c2, &l2, NULL, 0, (const uint8_t *)"two", 3), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_cipher_nonce(itx), 2U);
    /* Out of order with implicit nonces fails and does not consume n. */
    cr_assert_eq(mqe2e_noise_cipher_decrypt(rrx, pt, sizeof pt, &len, NULL, 0, c2, l2), MQE2E_ERR_AUTH);
    cr_assert_eq(mqe2e_noise_cipher_nonce(rrx), 0U);
    cr_assert_eq(mqe2e_noise_cipher_decrypt(rrx, pt, sizeof pt, &len, NULL, 0, c1, l1), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_cipher_decrypt(rrx, pt, sizeof pt, &len, NULL, 0, c2, l2), MQE2E_OK);
    cr_assert(len == 3 && memcmp(pt, "two", 3) == 0);
    /* Replay under the implicit counter fails. */
    cr_assert_eq(mqe2e_noise_cipher_decrypt(rrx, pt, sizeof pt, &len, NULL, 0, c2, l2), MQE2E_ERR_AUTH);
    /* Buffer and size limits. */
    cr_assert_eq(mqe2e_noise_cipher_encrypt(itx, c1, 18, &l1, NULL, 0, pt, 3), MQE2E_ERR_BUFFER_TOO_SMALL);
    cr_assert_eq(mqe2e_noise_cipher_encrypt(itx, c1, sizeof c1, &l1, NULL, 0, pt, MQE2E_NOISE_MAX_PLAINTEXT_BYTES + 1),
                 MQE2E_ERR_TOO_LARGE);
    cr_assert_eq(mqe2e_noise_cipher_decrypt(rrx, pt, sizeof pt, &len, NULL, 0, c1, 65536), MQE2E_ERR_TOO_LARGE);
    /* The last nonce is reserved. */
    cr_assert_eq(mqe2e_noise_cipher_set_nonce(itx, UINT64_MAX), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_noise_cipher_set_nonce(itx, UINT64_MAX - 1), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_cipher_encrypt(itx, c1, sizeof c1, &l1, NULL, 0, pt, 1), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_cipher_encrypt(itx, c1, sizeof c1, &l1, NULL, 0, pt, 1), MQE2E_ERR_EXHAUSTED);
    free4(itx, irx, rtx, rrx);
}

Test(noise_transport, rekey_keeps_both_sides_in_sync)
{
    mqe2e_noise_cipher *itx, *irx, *rtx, *rrx;
    uint8_t k_before[32], k_after[32], expect[48], ct[64], pt[64];
    uint8_t zeros[32] = {0}, nonce[12];
    size_t len, plen;
    xx_split(&itx, &irx, &rtx, &rrx);
    cr_assert_eq(mqe2e_noise_cipher_export_key(itx, k_before), MQE2E_OK);
    /* Independent computation of Noise REKEY: ENCRYPT(k, 2^64-1, "", zeros)[0..32). */
    memset(nonce, 0, 4);
    memset(nonce + 4, 0xff, 8);
    crypto_aead_chacha20poly1305_ietf_encrypt(expect, NULL, zeros, 32, NULL, 0, NULL, nonce, k_before);

    for (int round = 0; round < 3; round++) {
        cr_assert_eq(mqe2e_noise_cipher_rekey(itx), MQE2E_OK);
        cr_assert_eq(mqe2e_noise_cipher_rekey(rrx), MQE2E_OK);
        if (round == 0) {
            cr_assert_eq(mqe2e_noise_cipher_export_key(itx, k_after), MQE2E_OK);
            cr_assert_eq(memcmp(k_after, expect, 32), 0);
            cr_assert_neq(memcmp(k_after, k_before, 32), 0);
        }
        cr_assert_eq(mqe2e_noise_cipher_encrypt(itx, ct, sizeof ct, &len, NULL, 0, (const uint8_t *)"after", 5), MQE2E_OK);
        cr_assert_eq(mqe2e_noise_cipher_decrypt(rrx, pt, sizeof pt, &plen, NULL, 0, ct, len), MQE2E_OK);
        cr_assert(plen == 5 && memcmp(pt, "after", 5) == 0);
        cr_assert_eq(mqe2e_noise_cipher_decrypt_n(rrx, 7, pt, sizeof pt, &plen, NULL, 0, ct, len), MQE2E_ERR_AUTH);
    }
    /* Only one side rekeys: the other can no longer read. */
    cr_assert_eq(mqe2e_noise_cipher_rekey(itx), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_cipher_encrypt(itx, ct, sizeof ct, &len, NULL, 0, (const uint8_t *)"x", 1), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_cipher_decrypt(rrx, pt, sizeof pt, &plen, NULL, 0, ct, len), MQE2E_ERR_AUTH);
    /* A cipher restored from an exported key continues the session. */
    mqe2e_noise_cipher *restored = NULL;
    uint8_t k[32];
    cr_assert_eq(mqe2e_noise_cipher_export_key(itx, k), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_cipher_new(&restored, k), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_cipher_set_nonce(restored, mqe2e_noise_cipher_nonce(itx) - 1), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_cipher_decrypt(restored, pt, sizeof pt, &plen, NULL, 0, ct, len), MQE2E_OK);
    sodium_memzero(k, sizeof k);
    mqe2e_noise_cipher_free(restored);
    free4(itx, irx, rtx, rrx);
}

Test(noise_transport, directions_are_distinct)
{
    mqe2e_noise_cipher *itx, *irx, *rtx, *rrx;
    uint8_t a[32], b[32];
    xx_split(&itx, &irx, &rtx, &rrx);
    cr_assert_eq(mqe2e_noise_cipher_export_key(itx, a), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_cipher_export_key(rrx, b), MQE2E_OK);
    cr_assert_eq(memcmp(a, b, 32), 0);
    cr_assert_eq(mqe2e_noise_cipher_export_key(rtx, b), MQE2E_OK);
    cr_assert_neq(memcmp(a, b, 32), 0);
    cr_assert_eq(mqe2e_noise_cipher_export_key(irx, a), MQE2E_OK);
    cr_assert_eq(memcmp(a, b, 32), 0);
    free4(itx, irx, rtx, rrx);
}
