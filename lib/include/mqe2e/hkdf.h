/**
 * @file hkdf.h
 * @brief HKDF-SHA256 (RFC 5869) built on libsodium's HMAC-SHA256.
 *
 * All buffers are the caller's. The functions wipe their own temporaries; the
 * caller wipes its outputs when done.
 */
#ifndef MQE2E_HKDF_H
#define MQE2E_HKDF_H

#include <stddef.h>
#include <stdint.h>

#include "mqe2e/export.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MQE2E_HKDF_PRK_BYTES 32U              /**< size of a pseudorandom key */
#define MQE2E_HKDF_MAX_OUTPUT_BYTES 8160U /**< RFC 5869 limit for SHA-256: 255 blocks of 32 bytes */

/**
 * @brief HKDF-Extract: prk = HMAC-SHA256(salt, ikm).
 * @param prk  out, 32 bytes, caller-owned (wipe it).
 * @param salt may be NULL when salt_len is 0 (then 32 zero bytes are used).
 * @param salt_len length of @p salt.
 * @param ikm  input keying material; only read (may be NULL when ikm_len is 0).
 * @param ikm_len length of @p ikm.
 * @return ::MQE2E_OK, or ::MQE2E_ERR_INVALID_ARG.
 */
MQE2E_API int mqe2e_hkdf_extract(uint8_t prk[MQE2E_HKDF_PRK_BYTES], const uint8_t *salt,
                                 size_t salt_len, const uint8_t *ikm, size_t ikm_len);

/**
 * @brief HKDF-Expand: out = T(1) | T(2) | ... truncated to out_len.
 * @param out     out_len bytes, caller-owned.
 * @param out_len 1..::MQE2E_HKDF_MAX_OUTPUT_BYTES.
 * @param prk     pseudorandom key from mqe2e_hkdf_extract(); only read.
 * @param info    may be NULL when info_len is 0.
 * @param info_len length of @p info.
 * @return ::MQE2E_OK, or ::MQE2E_ERR_INVALID_ARG (bad length).
 */
MQE2E_API int mqe2e_hkdf_expand(uint8_t *out, size_t out_len,
                                const uint8_t prk[MQE2E_HKDF_PRK_BYTES],
                                const uint8_t *info, size_t info_len);

/**
 * @brief Extract then expand in one call; the intermediate PRK is wiped.
 * @return as ::mqe2e_hkdf_expand.
 */
MQE2E_API int mqe2e_hkdf(uint8_t *out, size_t out_len, const uint8_t *salt, size_t salt_len,
                         const uint8_t *ikm, size_t ikm_len, const uint8_t *info,
                         size_t info_len);

#ifdef __cplusplus
}
#endif
#endif
