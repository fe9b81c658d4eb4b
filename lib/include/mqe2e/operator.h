/**
 * @file operator.h
 * @brief Operator plane: the authority pin (public text naming an authority)
 *        and signed operator requests carried in OPERATOR control frames
 *        (kind 5, Noise_IK_25519_ChaChaPoly_SHA256).
 *
 * Bytes in / bytes out like control.h: no MQTT, no clock (the caller passes
 * @p now), randomness from libsodium. The operator is the Noise initiator
 * with its own X25519 static key and pins the authority's static key from the
 * pin; the request inside step 1 is signed with the operator's Ed25519 key
 * over "mqe2e/v1/operator" || e_pub || canonical request without signature,
 * so a recorded request cannot be moved into another handshake.
 *
 * Ownership: state handles live in sodium_malloc() memory owned by the
 * library and are wiped by their `_free` call. Frame buffers are the
 * caller's. A decoded ::mqe2e_operator_request owns malloc()ed argument
 * strings released by ::mqe2e_operator_request_clear; a decoded
 * ::mqe2e_operator_reply owns malloc()ed strings released, wiped (the output
 * may carry enrollment tickets), by ::mqe2e_operator_reply_clear.
 *
 * Failure model as control.h: ::MQE2E_ERR_DECODE (malformed frame),
 * ::MQE2E_ERR_STATE (frame of another kind, session, step or sender),
 * every authentication failure ::MQE2E_ERR_AUTH.
 */
#ifndef MQE2E_OPERATOR_H
#define MQE2E_OPERATOR_H

#include <stddef.h>
#include <stdint.h>

#include "mqe2e/control.h"
#include "mqe2e/credential.h"
#include "mqe2e/export.h"
#include "mqe2e/keystore.h"

#ifdef __cplusplus
extern "C" {
#endif

/** ControlFrame.kind of operator requests (steps 1-2). */
#define MQE2E_CONTROL_OPERATOR 5u
/** Text prefix of an encoded authority pin. */
#define MQE2E_AUTHORITY_PIN_PREFIX "mqe2e-authority1-"
/** Longest authority pin text accepted (characters, without the NUL). */
#define MQE2E_AUTHORITY_PIN_TEXT_MAX 1024u
/** Signature domain of operator requests. */
#define MQE2E_OPERATOR_DOMAIN "mqe2e/v1/operator"
/** Nonce size of an operator request. */
#define MQE2E_OPERATOR_NONCE_BYTES 16u
/** Largest accepted |issued_at - now| of a request, in seconds. */
#define MQE2E_OPERATOR_MAX_SKEW 300u
/** Longest command name, in bytes. */
#define MQE2E_OPERATOR_COMMAND_MAX 64u
/** Most arguments of one request. */
#define MQE2E_OPERATOR_MAX_ARGS 64u
/** Longest argument, in bytes. */
#define MQE2E_OPERATOR_ARG_MAX 1024u

/** OperatorReply.status values. */
typedef enum mqe2e_operator_status {
    MQE2E_OPSTATUS_OK = 0,          /**< done */
    MQE2E_OPSTATUS_FAILED = 1,      /**< the command failed (see message) */
    MQE2E_OPSTATUS_BAD_REQUEST = 2, /**< unknown command or invalid arguments */
    MQE2E_OPSTATUS_NOT_FOUND = 3,   /**< a named client, group or token does not exist */
    MQE2E_OPSTATUS_EXISTS = 4,      /**< the item to create exists */
    MQE2E_OPSTATUS_REFUSED = 5,     /**< signed request refused: stale time or replayed nonce */
} mqe2e_operator_status;

/* ------------------------------------------------------------------------ */
/* Authority pin                                                             */
/* ------------------------------------------------------------------------ */

/* ::mqe2e_authority_pin (authority id, control prefix, Ed25519 and X25519
 * keys) is defined in keystore.h, where clients store it. */

/**
 * @brief Encode a pin as "mqe2e-authority1-" || base64url-no-padding(AuthorityPin).
 * @param out receives malloc()ed NUL-terminated text (public); the caller free()s it.
 * @param pin the pin to encode; only read.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG (NULL, invalid id or prefix,
 *         unusable key); ::MQE2E_ERR_NOMEM.
 */
MQE2E_API int mqe2e_authority_pin_encode(char **out, const mqe2e_authority_pin *pin);

/**
 * @brief Strictly decode pin text (canonical base64url and protobuf, no
 *        unknown fields, 32-byte usable keys, valid id and prefix).
 * @param out  receives the pin; zeroed on failure.
 * @param text NUL-terminated pin text (untrusted).
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG (NULL); ::MQE2E_ERR_TOO_LARGE;
 *         ::MQE2E_ERR_DECODE; ::MQE2E_ERR_NOMEM.
 */
MQE2E_API int mqe2e_authority_pin_decode(mqe2e_authority_pin *out, const char *text);

/* ------------------------------------------------------------------------ */
/* Requests and replies                                                      */
/* ------------------------------------------------------------------------ */

/**
 * An operator request. As an input every pointer is borrowed for the call;
 * as an output (authority side) @p args is malloc()ed and released by
 * ::mqe2e_operator_request_clear.
 */
typedef struct mqe2e_operator_request {
    char operator_name[MQE2E_ID_MAX + 1];         /**< registered operator name */
    uint8_t nonce[MQE2E_OPERATOR_NONCE_BYTES];    /**< random, single use */
    uint64_t issued_at;                           /**< seconds since the Unix epoch */
    char command[MQE2E_OPERATOR_COMMAND_MAX + 1]; /**< command name */
    char **args;                                  /**< n_args NUL-terminated strings */
    size_t n_args;                                /**< at most ::MQE2E_OPERATOR_MAX_ARGS */
} mqe2e_operator_request;

/** @brief Free the arguments of a decoded request and zero it. NULL is a no-op. */
MQE2E_API void mqe2e_operator_request_clear(mqe2e_operator_request *req);

/**
 * An operator reply. As an input the strings are borrowed (NULL = empty); as
 * an output (operator side) they are malloc()ed, never NULL, and released
 * (wiped) by ::mqe2e_operator_reply_clear.
 */
typedef struct mqe2e_operator_reply {
    int32_t status; /**< ::mqe2e_operator_status */
    char *message;  /**< one line for humans */
    char *output;   /**< command output */
} mqe2e_operator_reply;

/** @brief Wipe and free the strings of a decoded reply and zero it. NULL is a no-op. */
MQE2E_API void mqe2e_operator_reply_clear(mqe2e_operator_reply *reply);

/* ------------------------------------------------------------------------ */
/* Operator side                                                             */
/* ------------------------------------------------------------------------ */

/** Operator side of one request. */
typedef struct mqe2e_operator_client mqe2e_operator_client;

/**
 * @brief Operator: sign @p req and write OPERATOR step 1 (to `P/authority`).
 * @param st   out: new state (free with ::mqe2e_operator_client_free); NULL on failure.
 * @param out  caller buffer; ::MQE2E_CONTROL_MAX_FRAME_BYTES always suffices.
 * @param out_cap size of @p out in bytes.
 * @param out_len receives the frame length.
 * @param pin  the pinned authority (its dh_public, id and prefix are used).
 * @param from the operator's client id (replies go to `P/client/<from>`).
 * @param operator_dh_secret X25519 static secret; copied; the caller wipes its copy.
 * @param req  the request; its signature is computed here.
 * @param sign signs with the operator's Ed25519 key (e.g. over mqe2e_keystore_sign).
 * @param sign_ctx opaque context handed to @p sign, untouched by the library.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG (NULL, invalid names, too many
 *         or too long arguments); ::MQE2E_ERR_TOO_LARGE; ::MQE2E_ERR_BUFFER_TOO_SMALL;
 *         ::MQE2E_ERR_NOMEM; ::MQE2E_ERR_AUTH (unusable authority key; the
 *         callback failed); ::MQE2E_ERR_CRYPTO.
 */
MQE2E_API int mqe2e_operator_begin(mqe2e_operator_client **st, uint8_t *out, size_t out_cap,
                                   size_t *out_len, const mqe2e_authority_pin *pin,
                                   const char *from, const uint8_t operator_dh_secret[32],
                                   const mqe2e_operator_request *req, mqe2e_sign_fn sign,
                                   void *sign_ctx);

/**
 * @brief Operator: read OPERATOR step 2.
 * @param st    state from ::mqe2e_operator_begin.
 * @param frame the received control frame (read only).
 * @param len   length of @p frame.
 * @param reply out: release with ::mqe2e_operator_reply_clear; zeroed on failure.
 * @return ::MQE2E_OK (whatever reply->status says); ::MQE2E_ERR_INVALID_ARG;
 *         ::MQE2E_ERR_DECODE; ::MQE2E_ERR_TOO_LARGE; ::MQE2E_ERR_SUITE;
 *         ::MQE2E_ERR_STATE (another kind, session, step or sender: ignore
 *         it, the state stays usable; or finished); ::MQE2E_ERR_AUTH;
 *         ::MQE2E_ERR_NOMEM.
 */
MQE2E_API int mqe2e_operator_finish(mqe2e_operator_client *st, mqe2e_operator_reply *reply,
                                    const uint8_t *frame, size_t len);

/** @brief Wipe and free an operator state. NULL is a no-op. */
MQE2E_API void mqe2e_operator_client_free(mqe2e_operator_client *st);

/* ------------------------------------------------------------------------ */
/* Authority side                                                            */
/* ------------------------------------------------------------------------ */

/** Authority side of one request. */
typedef struct mqe2e_operator_authority mqe2e_operator_authority;

/**
 * @brief Authority: read OPERATOR step 1. Nothing about the operator is
 *        proven yet: look up req->operator_name, then call
 *        ::mqe2e_operator_accept_verify.
 * @param st  out: new state (free with ::mqe2e_operator_authority_free).
 * @param req out: the request (clear with ::mqe2e_operator_request_clear); zeroed on failure.
 * @param authority_dh_secret authority X25519 static secret; only read.
 * @param prefix control prefix.
 * @param frame the received control frame (read only).
 * @param len   length of @p frame.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_DECODE;
 *         ::MQE2E_ERR_TOO_LARGE; ::MQE2E_ERR_SUITE; ::MQE2E_ERR_STATE (not
 *         OPERATOR step 1); ::MQE2E_ERR_AUTH (Noise failed, malformed
 *         payload); ::MQE2E_ERR_NOMEM; ::MQE2E_ERR_CRYPTO.
 */
MQE2E_API int mqe2e_operator_accept_read(mqe2e_operator_authority **st, mqe2e_operator_request *req,
                                         const uint8_t authority_dh_secret[32], const char *prefix,
                                         const uint8_t *frame, size_t len);

/**
 * @brief Authority: verify the request signature with the registered key,
 *        then its freshness. The caller then checks the nonce (single use).
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_AUTH (bad
 *         signature: send no reply); ::MQE2E_ERR_EXPIRED (signature good,
 *         |issued_at - now| over ::MQE2E_OPERATOR_MAX_SKEW: a refusal may be
 *         written); ::MQE2E_ERR_STATE (called twice).
 */
MQE2E_API int mqe2e_operator_accept_verify(mqe2e_operator_authority *st,
                                           const uint8_t operator_sign_public[32], uint64_t now);

/** @brief Operator client id the frame came from (borrowed; replies go to `P/client/<it>`). */
MQE2E_API const char *mqe2e_operator_accept_from(const mqe2e_operator_authority *st);

/**
 * @brief Authority: write OPERATOR step 2 (to `P/client/<from>`). Only after the
 *        signature verified.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_STATE (signature
 *         not verified, or already written); ::MQE2E_ERR_TOO_LARGE;
 *         ::MQE2E_ERR_BUFFER_TOO_SMALL; ::MQE2E_ERR_NOMEM; ::MQE2E_ERR_CRYPTO.
 */
MQE2E_API int mqe2e_operator_accept_write(mqe2e_operator_authority *st, uint8_t *out,
                                          size_t out_cap, size_t *out_len, const char *authority_id,
                                          const mqe2e_operator_reply *reply);

/** @brief Wipe and free an authority operator state. NULL is a no-op. */
MQE2E_API void mqe2e_operator_authority_free(mqe2e_operator_authority *st);

#ifdef __cplusplus
}
#endif
#endif
