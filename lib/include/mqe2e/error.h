/**
 * @file error.h
 * @brief The one error enum of mqe2e and its string table.
 *
 * All calls return ::MQE2E_OK (0) on success and a negative ::mqe2e_error on
 * failure. Every authentication failure, whatever its cause (wrong key, flipped
 * byte, moved to another topic, epoch or sender), is ::MQE2E_ERR_AUTH: only
 * facts known before authentication get their own code.
 */
#ifndef MQE2E_ERROR_H
#define MQE2E_ERROR_H

#include "mqe2e/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Return codes. Values are stable and part of the ABI. */
typedef enum mqe2e_error {
    MQE2E_OK = 0,                    /**< success */
    MQE2E_ERR_INVALID_ARG = -1,      /**< a NULL or out-of-range argument */
    MQE2E_ERR_NOMEM = -2,            /**< allocation failed */
    MQE2E_ERR_DECODE = -3,           /**< malformed or truncated input */
    MQE2E_ERR_TOO_LARGE = -4,        /**< input or output over a configured limit */
    MQE2E_ERR_BUFFER_TOO_SMALL = -5, /**< caller's output buffer is too small */
    MQE2E_ERR_SUITE = -6,          /**< unknown format version, mode or suite */
    MQE2E_ERR_NO_KEY = -7,         /**< no key for this group, epoch or sender */
    MQE2E_ERR_EXPIRED = -8,        /**< epoch past its grace period, or expired item */
    MQE2E_ERR_REPLAY = -9,         /**< sequence number already seen or too old */
    MQE2E_ERR_AUTH = -10,          /**< authentication failed (any cause) */
    MQE2E_ERR_NO_POLICY = -11,     /**< the topic has no protection policy */
    MQE2E_ERR_IO = -12,            /**< storage read/write/fsync/rename failed */
    MQE2E_ERR_EXISTS = -13,        /**< the item already exists */
    MQE2E_ERR_NOT_FOUND = -14,     /**< the item does not exist */
    MQE2E_ERR_EXHAUSTED = -15,     /**< sequence space or a counter is used up */
    MQE2E_ERR_CRYPTO = -16,        /**< libsodium failed to initialise or refused a key */
    MQE2E_ERR_STATE = -17,         /**< call not valid in the object's current state */
    MQE2E_ERR_POLICY = -18,        /**< the policy forbids this (e.g. wrong mode for topic) */
    MQE2E_ERR_UNKNOWN_SIGNER = -19, /**< signed envelope from a sender id not in the group's
                                         signer directory */
    MQE2E_ERR_LOCKED = -20,        /**< the keystore is open elsewhere (another handle or
                                        process, through any path); see storage.h */
    MQE2E_ERR_GRANT = -21,         /**< signed envelope on a topic its signer's credential does
                                        not grant it to publish on */
    MQE2E_ERR_REVOKED = -22,       /**< envelope under a sender id the authority's revocation
                                        list retires (a revoked or replaced device's) */
    MQE2E_ERR_TREE_GAP = -23,      /**< a key-tree update does not follow the member's epoch
                                        (updates were missed): catch up with a TreePath */
    MQE2E_ERR_TREE_REVOKED = -24,  /**< the key-tree update removes this member */
} mqe2e_error;

/** Lowest (most negative) defined error code. */
#define MQE2E_ERR_MIN (-24)

/**
 * @brief Human-readable description of a return code.
 * @param code an ::mqe2e_error value (any int is accepted).
 * @return a static string; never NULL, never to be freed.
 */
MQE2E_API const char *mqe2e_strerror(int code);

/**
 * @brief Short stable identifier of a return code ("auth", "replay", ...),
 *        used as the drop-reason label in counters and logs.
 * @return a static string; never NULL.
 */
MQE2E_API const char *mqe2e_error_name(int code);

/**
 * @brief Initialise libsodium. Every constructor calls it; calling it again is
 *        cheap. @return ::MQE2E_OK or ::MQE2E_ERR_CRYPTO.
 */
MQE2E_API int mqe2e_init(void);

#ifdef __cplusplus
}
#endif
#endif
