/* HKDF-SHA256 against RFC 5869 appendix A, then argument checks. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "mqe2e/error.h"
#include "mqe2e/hkdf.h"
#include "mqe2e/version.h"
#include "testutil.h"

static uint8_t *hex_field(const cJSON *v, const char *name, size_t *len)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(v, name);
    cr_assert(cJSON_IsString(f), "vector lacks %s", name);
    uint8_t *b = tu_hex_decode(f->valuestring, len);
    cr_assert_not_null(b, "bad hex in %s", name);
    return b;
}

Test(hkdf, rfc5869_vectors)
{
    cJSON *root = tu_load_vectors("hkdf-sha256-rfc5869.json");
    const cJSON *vectors = cJSON_GetObjectItemCaseSensitive(root, "vectors");
    const cJSON *v;
    int n = 0;

    cr_assert(cJSON_IsArray(vectors));
    cr_assert_eq(mqe2e_init(), MQE2E_OK);
    cJSON_ArrayForEach(v, vectors)
    {
        size_t ikm_len, salt_len, info_len, prk_len, okm_len;
        uint8_t *ikm = hex_field(v, "ikm", &ikm_len);
        uint8_t *salt = hex_field(v, "salt", &salt_len);
        uint8_t *info = hex_field(v, "info", &info_len);
        uint8_t *prk_exp = hex_field(v, "prk", &prk_len);
        uint8_t *okm_exp = hex_field(v, "okm", &okm_len);
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(v, "L");
        uint8_t prk[MQE2E_HKDF_PRK_BYTES];
        uint8_t okm[255];

        cr_assert(cJSON_IsNumber(l));
        cr_assert_eq((size_t)l->valueint, okm_len);
        cr_assert_eq(prk_len, sizeof prk);
        cr_assert_leq(okm_len, sizeof okm);

        cr_assert_eq(mqe2e_hkdf_extract(prk, salt_len ? salt : NULL, salt_len, ikm, ikm_len),
                     MQE2E_OK);
        cr_assert_eq(memcmp(prk, prk_exp, sizeof prk), 0, "PRK of vector %d", n + 1);

        memset(okm, 0xAA, sizeof okm);
        cr_assert_eq(mqe2e_hkdf_expand(okm, okm_len, prk, info_len ? info : NULL, info_len),
                     MQE2E_OK);
        cr_assert_eq(memcmp(okm, okm_exp, okm_len), 0, "OKM of vector %d", n + 1);
        cr_assert_eq(okm[okm_len], 0xAA, "expand wrote past out_len");

        /* The one-shot call must agree. */
        memset(okm, 0, sizeof okm);
        cr_assert_eq(mqe2e_hkdf(okm, okm_len, salt, salt_len, ikm, ikm_len, info, info_len),
                     MQE2E_OK);
        cr_assert_eq(memcmp(okm, okm_exp, okm_len), 0, "one-shot OKM of vector %d", n + 1);

        /* A prefix of the output is the shorter output (T blocks are chained). */
        uint8_t short_okm[5];
        cr_assert_eq(mqe2e_hkdf_expand(short_okm, sizeof short_okm, prk, info, info_len), MQE2E_OK);
        cr_assert_eq(memcmp(short_okm, okm_exp, sizeof short_okm), 0);

        free(ikm);
        free(salt);
        free(info);
        free(prk_exp);
        free(okm_exp);
        n++;
    }
    cr_log_info("checked %d HKDF vectors", n);
    printf("checked %d HKDF vectors\n", n);
    cr_assert_eq(n, 3);
    cJSON_Delete(root);
}

Test(hkdf, empty_salt_is_zero_salt)
{
    static const uint8_t zeros[32] = {0};
    static const uint8_t ikm[] = "input keying material";
    uint8_t a[32], b[32];

    cr_assert_eq(mqe2e_hkdf_extract(a, NULL, 0, ikm, sizeof ikm), MQE2E_OK);
    cr_assert_eq(mqe2e_hkdf_extract(b, zeros, sizeof zeros, ikm, sizeof ikm), MQE2E_OK);
    cr_assert_eq(memcmp(a, b, sizeof a), 0);
}

Test(hkdf, max_length_output)
{
    static const uint8_t prk[MQE2E_HKDF_PRK_BYTES] = {1, 2, 3};
    uint8_t *out = malloc(MQE2E_HKDF_MAX_OUTPUT_BYTES);
    uint8_t first[64];

    cr_assert_not_null(out);
    cr_assert_eq(mqe2e_hkdf_expand(out, MQE2E_HKDF_MAX_OUTPUT_BYTES, prk, NULL, 0), MQE2E_OK);
    cr_assert_eq(mqe2e_hkdf_expand(first, sizeof first, prk, NULL, 0), MQE2E_OK);
    cr_assert_eq(memcmp(out, first, sizeof first), 0);
    /* Block 255 differs from block 1 (the counter byte did not wrap early). */
    cr_assert_neq(memcmp(out, out + 254 * 32, 32), 0);
    free(out);
}

Test(hkdf, bad_lengths_refused)
{
    static const uint8_t prk[MQE2E_HKDF_PRK_BYTES] = {0};
    static const uint8_t ikm[4] = {1, 2, 3, 4};
    uint8_t out[64];
    uint8_t *big = malloc(MQE2E_HKDF_MAX_OUTPUT_BYTES + 1U);

    cr_assert_not_null(big);
    cr_assert_eq(mqe2e_hkdf_expand(out, 0, prk, NULL, 0), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_hkdf_expand(big, MQE2E_HKDF_MAX_OUTPUT_BYTES + 1U, prk, NULL, 0),
                 MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_hkdf(out, 0, NULL, 0, ikm, sizeof ikm, NULL, 0), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(
        mqe2e_hkdf(big, MQE2E_HKDF_MAX_OUTPUT_BYTES + 1U, NULL, 0, ikm, sizeof ikm, NULL, 0),
        MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_hkdf_expand(NULL, 32, prk, NULL, 0), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_hkdf_expand(out, 32, NULL, NULL, 0), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_hkdf_expand(out, 32, prk, NULL, 3), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_hkdf_extract(out, NULL, 5, ikm, sizeof ikm), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_hkdf_extract(out, NULL, 0, NULL, 4), MQE2E_ERR_INVALID_ARG);
    free(big);
}

Test(error, strings)
{
    for (int c = MQE2E_ERR_MIN; c <= 0; c++) {
        cr_assert_not_null(mqe2e_strerror(c));
        cr_assert_str_neq(mqe2e_strerror(c), "unknown error", "code %d has no text", c);
        cr_assert_str_neq(mqe2e_error_name(c), "unknown", "code %d has no name", c);
    }
    cr_assert_str_eq(mqe2e_error_name(MQE2E_ERR_AUTH), "auth");
    cr_assert_str_eq(mqe2e_error_name(MQE2E_ERR_REPLAY), "replay");
    cr_assert_str_eq(mqe2e_error_name(MQE2E_OK), "ok");
    cr_assert_str_eq(mqe2e_strerror(1), "unknown error");
    cr_assert_str_eq(mqe2e_strerror(MQE2E_ERR_MIN - 1), "unknown error");
    cr_assert_str_eq(mqe2e_error_name(-1000), "unknown");
    cr_assert_eq(mqe2e_init(), MQE2E_OK);
    cr_assert_eq(mqe2e_init(), MQE2E_OK);
}

Test(version, string)
{
    cr_assert_str_eq(mqe2e_version(), MQE2E_VERSION_STRING);
    cr_assert_eq(MQE2E_FORMAT_VERSION, 1);
}
