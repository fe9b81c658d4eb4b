/**
 * @file credential.h
 * @brief Authority-signed credentials, enrollment tickets and revocation lists.
 *
 * The authority binds a client id, its two public keys, a role and its topic
 * grants into a **credential** signed with the authority's Ed25519 key. Peers
 * verify credentials against the authority key they pinned at enrollment.
 * A **ticket** is the text a device is given out of band to enroll (it holds
 * the one-time token). A **revocation list** is a signed, versioned list of
 * revoked client ids / credential serials.
 *
 * Everything here is transport-agnostic: the clock is the @p now argument,
 * in seconds since the Unix epoch. Byte formats and rules: docs/CREDENTIALS.md.
 *
 * Ownership: handles returned by these calls are the caller's and are freed
 * with their `_free` call; strings and keys read through accessors are borrowed
 * from the handle and live as long as it. Encoded credentials and revocation
 * lists are public data in malloc() memory the caller free()s. Ticket text and
 * ::mqe2e_ticket hold a secret and have their own wiping calls.
 */
#ifndef MQE2E_CREDENTIAL_H
#define MQE2E_CREDENTIAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mqe2e/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Format version written into and required from every body. */
#define MQE2E_CREDENTIAL_FORMAT 1u
/** Ed25519 / X25519 public key size. */
#define MQE2E_CREDENTIAL_PUBLIC_BYTES 32u
/** Ed25519 secret key size (libsodium layout: seed || public key). */
#define MQE2E_CREDENTIAL_SECRET_BYTES 64u
/** Ed25519 signature size. */
#define MQE2E_CREDENTIAL_SIGNATURE_BYTES 64u
/** Largest encoded credential accepted or produced. */
#define MQE2E_CREDENTIAL_MAX_BYTES 16384u
/** Longest client id, role or authority id, in bytes. */
#define MQE2E_ID_MAX 255u
/** Tolerated clock skew: a credential issued up to this far in the future is accepted. */
#define MQE2E_CREDENTIAL_CLOCK_SKEW 300u
/** Suggested renewal point: renew once 2/3 of the lifetime has passed. */
#define MQE2E_CREDENTIAL_RENEW_NUM 2u
/** Denominator of the suggested renewal point. */
#define MQE2E_CREDENTIAL_RENEW_DEN 3u

/** Grant right: may publish on matching topics. */
#define MQE2E_RIGHT_PUBLISH 1u
/** Grant right: may subscribe to matching topics. */
#define MQE2E_RIGHT_SUBSCRIBE 2u
/** Every defined right bit. */
#define MQE2E_RIGHT_ALL (MQE2E_RIGHT_PUBLISH | MQE2E_RIGHT_SUBSCRIBE)

/** Signature domain of credentials (prefixed to the body before signing). */
#define MQE2E_CREDENTIAL_DOMAIN "mqe2e/v1/credential"
/** Signature domain of revocation lists. */
#define MQE2E_REVOCATION_DOMAIN "mqe2e/v1/revocations"

/** Opaque verified credential. */
typedef struct mqe2e_credential mqe2e_credential;

/** One topic grant of a credential request. */
typedef struct mqe2e_grant {
    const char *filter; /**< valid MQTT topic filter */
    unsigned rights;    /**< non-zero subset of ::MQE2E_RIGHT_ALL */
} mqe2e_grant;

/** What the authority signs into a credential. All pointers are borrowed for the call. */
typedef struct mqe2e_credential_request {
    const char *client_id;     /**< see mqe2e_client_id_valid() */
    const char *role;          /**< "device", "service" or "operator" */
    uint8_t sign_public[32];   /**< holder's Ed25519 public key */
    uint8_t dh_public[32];     /**< holder's X25519 static public key */
    const mqe2e_grant *grants; /**< n_grants entries (NULL if n_grants is 0) */
    size_t n_grants;           /**< number of grants */
    uint64_t issued_at;        /**< seconds since the Unix epoch */
    uint64_t expires_at;       /**< seconds since the Unix epoch, > issued_at */
    uint64_t serial;           /**< unique per authority, never 0 */
} mqe2e_credential_request;

/**
 * @brief True if @p id is a valid client id, role or authority id: 1..255
 *        bytes of printable ASCII (0x21..0x7E) without `/`, `+` or `#`,
 *        because ids are spliced into control topic names as one level.
 */
MQE2E_API bool mqe2e_client_id_valid(const char *id);

/**
 * @brief Issue (sign) a credential.
 *
 * The authority public key written into the body is the one inside
 * @p authority_sign_secret; a secret whose two halves disagree is refused.
 * @param out      receives a malloc()ed encoded Credential (public data); the
 *                 caller free()s it. Untouched on failure.
 * @param out_len  receives its length.
 * @param authority_sign_secret the authority's Ed25519 secret key. Read only;
 *                 every temporary derived from it is wiped. Still the caller's.
 * @param req      the content to sign.
 * @return ::MQE2E_OK;
 *         ::MQE2E_ERR_INVALID_ARG (NULL pointer, invalid client id or role,
 *         unknown or zero rights, invalid grant filter, serial 0,
 *         expires_at <= issued_at, a public key of small order or not on the
 *         curve, inconsistent secret key);
 *         ::MQE2E_ERR_TOO_LARGE (encoding over ::MQE2E_CREDENTIAL_MAX_BYTES);
 *         ::MQE2E_ERR_NOMEM; ::MQE2E_ERR_CRYPTO (libsodium init or signing failed).
 */
MQE2E_API int mqe2e_credential_issue(uint8_t **out, size_t *out_len,
                                     const uint8_t authority_sign_secret[64],
                                     const mqe2e_credential_request *req);

/**
 * Signing callback for keys that never leave their store (e.g.
 * mqe2e_keystore_sign()): write the Ed25519 detached signature of @p msg
 * into @p sig. Return 0 on success, anything else on failure.
 */
typedef int (*mqe2e_sign_fn)(void *ctx, uint8_t sig[64], const uint8_t *msg, size_t msg_len);

/**
 * @brief Issue a credential like mqe2e_credential_issue(), signing through
 *        @p sign instead of reading the secret key.
 *
 * The signature is checked against @p authority_sign_public before the
 * credential is returned, so a callback using another key is caught.
 * @param out      as in mqe2e_credential_issue().
 * @param out_len  receives its length.
 * @param authority_sign_public the authority Ed25519 public key written into the body.
 * @param sign     signing callback; @p sign_ctx is passed through.
 * @param sign_ctx opaque context handed to @p sign, untouched by the library.
 * @param req      the content to sign.
 * @return as mqe2e_credential_issue(); ::MQE2E_ERR_INVALID_ARG also when the
 *         callback's signature does not verify under @p authority_sign_public;
 *         ::MQE2E_ERR_CRYPTO when the callback fails.
 */
MQE2E_API int mqe2e_credential_issue_with(uint8_t **out, size_t *out_len,
                                          const uint8_t authority_sign_public[32],
                                          mqe2e_sign_fn sign, void *sign_ctx,
                                          const mqe2e_credential_request *req);

/**
 * @brief Decode a credential, check it was issued by the pinned authority and
 *        is valid at @p now.
 *
 * Checks, in order: size; outer decode (strict: canonical encoding, no unknown
 * fields, 64-byte signature); the signature over
 * ::MQE2E_CREDENTIAL_DOMAIN || body with @p authority_sign_public; body decode;
 * the body's authority_public equals the pinned key; format; field validity;
 * time window.
 *
 * @param out  receives a new handle, the caller's, freed with
 *             mqe2e_credential_free(). Set to NULL on failure.
 * @param in   encoded Credential (untrusted).
 * @param len  length of @p in.
 * @param authority_sign_public the pinned authority Ed25519 public key.
 * @param now  current time, seconds since the Unix epoch.
 * @return ::MQE2E_OK;
 *         ::MQE2E_ERR_INVALID_ARG (NULL pointer);
 *         ::MQE2E_ERR_TOO_LARGE (@p len over ::MQE2E_CREDENTIAL_MAX_BYTES);
 *         ::MQE2E_ERR_DECODE (malformed outer message or body, wrong key or
 *         id length, invalid id, role, filter or rights, serial 0,
 *         expires_at <= issued_at, unusable public key);
 *         ::MQE2E_ERR_AUTH (bad signature, or signed for another authority);
 *         ::MQE2E_ERR_SUITE (body format other than 1);
 *         ::MQE2E_ERR_EXPIRED (now >= expires_at, or issued_at more than
 *         ::MQE2E_CREDENTIAL_CLOCK_SKEW seconds after now: not yet valid);
 *         ::MQE2E_ERR_NOMEM; ::MQE2E_ERR_CRYPTO (libsodium init failed).
 */
MQE2E_API int mqe2e_credential_verify(mqe2e_credential **out, const uint8_t *in, size_t len,
                                      const uint8_t authority_sign_public[32], uint64_t now);

/**
 * @brief Re-check the time window of an already verified credential (for
 *        handles kept across time).
 * @return ::MQE2E_OK, ::MQE2E_ERR_EXPIRED (expired or not yet valid, same rule
 *         as mqe2e_credential_verify()), ::MQE2E_ERR_INVALID_ARG (NULL).
 */
MQE2E_API int mqe2e_credential_check_time(const mqe2e_credential *c, uint64_t now);

/** @brief Free a credential handle. NULL is a no-op. */
MQE2E_API void mqe2e_credential_free(mqe2e_credential *c);

/** @brief Client id (borrowed, NUL-terminated, lives as long as @p c). */
MQE2E_API const char *mqe2e_credential_client_id(const mqe2e_credential *c);
/** @brief Role: "device", "service" or "operator" (borrowed). */
MQE2E_API const char *mqe2e_credential_role(const mqe2e_credential *c);
/** @brief Holder's Ed25519 public key, 32 bytes (borrowed). */
MQE2E_API const uint8_t *mqe2e_credential_sign_public(const mqe2e_credential *c);
/** @brief Holder's X25519 static public key, 32 bytes (borrowed). */
MQE2E_API const uint8_t *mqe2e_credential_dh_public(const mqe2e_credential *c);
/** @brief Issuing authority's Ed25519 public key, 32 bytes (borrowed). */
MQE2E_API const uint8_t *mqe2e_credential_authority_public(const mqe2e_credential *c);
/** @brief Serial number (never 0). */
MQE2E_API uint64_t mqe2e_credential_serial(const mqe2e_credential *c);
/** @brief Issue time, seconds since the Unix epoch. */
MQE2E_API uint64_t mqe2e_credential_issued_at(const mqe2e_credential *c);
/** @brief Expiry time, seconds since the Unix epoch. */
MQE2E_API uint64_t mqe2e_credential_expires_at(const mqe2e_credential *c);
/** @brief Number of grants. */
MQE2E_API size_t mqe2e_credential_grant_count(const mqe2e_credential *c);
/** @brief Filter of grant @p i (borrowed), NULL if @p i is out of range. */
MQE2E_API const char *mqe2e_credential_grant_filter(const mqe2e_credential *c, size_t i);
/** @brief Rights of grant @p i, 0 if @p i is out of range. */
MQE2E_API unsigned mqe2e_credential_grant_rights(const mqe2e_credential *c, size_t i);

/**
 * @brief May the holder exercise @p rights on the topic name @p topic?
 *
 * Every bit of @p rights must be granted by some grant whose filter matches
 * @p topic (mqe2e_topic_matches()); different bits may come from different grants.
 * @return false for an invalid topic name, @p rights 0 or with unknown bits.
 */
MQE2E_API bool mqe2e_credential_allows(const mqe2e_credential *c, const char *topic,
                                       unsigned rights);

/**
 * @brief May the holder exercise @p rights on the topic *filter* @p filter
 *        (e.g. a subscription)?
 *
 * A grant G covers a requested filter R when every topic name R can match is
 * also matched by G. Decided level by level, conservatively:
 * - G level `#` covers that level and everything below (including R's `#`);
 * - G level `+` covers any single R level except `#`;
 * - a literal G level covers only the same literal R level;
 * - without a `#` in G, R must have the same number of levels;
 * - R's `#` is covered only by G's `#` at the same level;
 * - R whose first level starts with `$` is never covered by a wildcard
 *   first level of G (MQTT wildcards do not match `$` topics).
 * So `a/#` covers `a`, `a/b`, `a/+/c` and `a/#`; `a/+` covers `a/b` and `a/+`
 * but not `a/#`. Every bit of @p rights must be granted by covering grants.
 * @return false for an invalid filter, @p rights 0 or with unknown bits.
 */
MQE2E_API bool mqe2e_credential_filter_allowed(const mqe2e_credential *c, const char *filter,
                                               unsigned rights);

/**
 * @brief Should the holder renew now?
 *
 * True when now >= issued_at + (expires_at - issued_at) * num / den (computed
 * without overflow). Clients renew at ::MQE2E_CREDENTIAL_RENEW_NUM /
 * ::MQE2E_CREDENTIAL_RENEW_DEN of the lifetime, well before expiry.
 * @return false for NULL, @p den 0 or @p num > @p den.
 */
MQE2E_API bool mqe2e_credential_needs_renewal(const mqe2e_credential *c, uint64_t now, unsigned num,
                                              unsigned den);

/* ------------------------------------------------------------------------ */
/* Enrollment tickets                                                        */
/* ------------------------------------------------------------------------ */

/** Text prefix of an encoded ticket. */
#define MQE2E_TICKET_PREFIX "mqe2e1-"
/** Longest ticket text accepted (characters, without the NUL). */
#define MQE2E_TICKET_TEXT_MAX 2048u
/** Longest control prefix, in bytes. */
#define MQE2E_CONTROL_PREFIX_MAX 255u

/**
 * A decoded enrollment ticket, by value.
 *
 * @p token is a secret: whoever holds the struct wipes it with
 * mqe2e_ticket_wipe() when done (and should keep it out of swap-able long-lived
 * memory when possible).
 */
typedef struct mqe2e_ticket {
    uint8_t authority_sign_public[32];                 /**< authority Ed25519 key to pin */
    uint8_t authority_dh_public[32];                   /**< authority X25519 static key */
    char authority_id[MQE2E_ID_MAX + 1];               /**< authority client id */
    char control_prefix[MQE2E_CONTROL_PREFIX_MAX + 1]; /**< control topic prefix */
    uint8_t token_id[16];                              /**< names the token (public) */
    uint8_t token[32];                                 /**< one-time secret, the Noise psk */
    char client_id[MQE2E_ID_MAX + 1];                  /**< client id the token is bound to */
    uint64_t expires_at;                               /**< seconds since the Unix epoch, never 0 */
} mqe2e_ticket;

/**
 * @brief True if @p prefix is a valid control prefix: 1..255 bytes of
 *        printable ASCII without `+` or `#`, no empty level (no leading or
 *        trailing `/`, no `//`).
 */
MQE2E_API bool mqe2e_control_prefix_valid(const char *prefix);

/**
 * @brief Encode a ticket as text: "mqe2e1-" || base64url-no-padding(Ticket).
 * @param out receives a malloc()ed NUL-terminated string holding the secret
 *            token; release it with mqe2e_ticket_text_free() (wipes). Untouched
 *            on failure. Every internal temporary is wiped.
 * @param t   the ticket (borrowed; not modified).
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG (NULL, invalid id or prefix,
 *         expires_at 0, unusable public key, strings not NUL-terminated in
 *         their arrays); ::MQE2E_ERR_NOMEM; ::MQE2E_ERR_CRYPTO.
 */
MQE2E_API int mqe2e_ticket_encode(char **out, const mqe2e_ticket *t);

/**
 * @brief Strictly decode ticket text.
 *
 * Refuses: wrong prefix, any character outside the base64url alphabet
 * (padding `=` and whitespace included), non-canonical base64 or protobuf
 * encoding, unknown fields, format other than 1, wrong key/token lengths,
 * invalid ids or prefix, expires_at 0.
 * @param out receives the ticket; on failure it is wiped (all zero).
 * @param text NUL-terminated text (untrusted).
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG (NULL); ::MQE2E_ERR_TOO_LARGE
 *         (over ::MQE2E_TICKET_TEXT_MAX characters); ::MQE2E_ERR_DECODE
 *         (anything malformed); ::MQE2E_ERR_SUITE (format other than 1);
 *         ::MQE2E_ERR_NOMEM; ::MQE2E_ERR_CRYPTO.
 */
MQE2E_API int mqe2e_ticket_decode(mqe2e_ticket *out, const char *text);

/** @brief Wipe a ticket (all bytes zero). NULL is a no-op. */
MQE2E_API void mqe2e_ticket_wipe(mqe2e_ticket *t);

/** @brief Wipe and free ticket text from mqe2e_ticket_encode(). NULL is a no-op. */
MQE2E_API void mqe2e_ticket_text_free(char *text);

/* ------------------------------------------------------------------------ */
/* Revocation lists                                                          */
/* ------------------------------------------------------------------------ */

/** Largest encoded revocation list accepted or produced. */
#define MQE2E_REVOCATION_MAX_BYTES (1U << 20)

/** Opaque verified revocation list. */
typedef struct mqe2e_revocation_list mqe2e_revocation_list;

/** One revocation. */
typedef struct mqe2e_revocation_entry {
    const char *client_id; /**< see mqe2e_client_id_valid() */
    uint64_t serial;       /**< revoked credential serial; 0 = every credential of the client */
    uint64_t revoked_at;   /**< seconds since the Unix epoch */
} mqe2e_revocation_entry;

/**
 * @brief Sign a revocation list.
 * @param out     receives a malloc()ed encoded RevocationList (public data);
 *                the caller free()s it. Untouched on failure.
 * @param out_len receives its length.
 * @param authority_sign_secret authority Ed25519 secret key (read only; every
 *                temporary derived from it is wiped).
 * @param version strictly increasing per authority, >= 1.
 * @param issued_at issue time written into the list, seconds since the Unix epoch.
 * @param entries @p n entries (may be NULL when @p n is 0); strings borrowed.
 * @param n       number of @p entries.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG (NULL, version 0, invalid
 *         client id, inconsistent secret key); ::MQE2E_ERR_TOO_LARGE (over
 *         ::MQE2E_REVOCATION_MAX_BYTES); ::MQE2E_ERR_NOMEM; ::MQE2E_ERR_CRYPTO.
 */
MQE2E_API int mqe2e_revocation_list_sign(uint8_t **out, size_t *out_len,
                                         const uint8_t authority_sign_secret[64], uint64_t version,
                                         uint64_t issued_at, const mqe2e_revocation_entry *entries,
                                         size_t n);

/**
 * @brief Sign a revocation list like mqe2e_revocation_list_sign(), through a
 *        signing callback (see ::mqe2e_sign_fn); the signature is checked
 *        against @p authority_sign_public before the list is returned.
 * @return as mqe2e_revocation_list_sign(); ::MQE2E_ERR_INVALID_ARG also for a
 *         signature that does not verify; ::MQE2E_ERR_CRYPTO when the callback fails.
 */
MQE2E_API int mqe2e_revocation_list_sign_with(uint8_t **out, size_t *out_len,
                                              const uint8_t authority_sign_public[32],
                                              mqe2e_sign_fn sign, void *sign_ctx,
                                              uint64_t version, uint64_t issued_at,
                                              const mqe2e_revocation_entry *entries, size_t n);

/** A sender id a revoked or replaced device held in a group (docs/CREDENTIALS.md). */
typedef struct mqe2e_retired_sender {
    const char *group_id; /**< group name, 1..::MQE2E_GROUP_ID_MAX_BYTES printable bytes */
    uint32_t sender_id;   /**< >= 1 */
} mqe2e_retired_sender;

/** What mqe2e_revocation_list_sign_ex() signs. Every pointer is borrowed. */
typedef struct mqe2e_revocation_contents {
    uint64_t version;                      /**< strictly increasing per authority, >= 1 */
    uint64_t issued_at;                    /**< seconds since the Unix epoch */
    uint64_t next_update;                  /**< newer list due by then (seconds since the
                                                Unix epoch), > issued_at; 0 = none */
    const mqe2e_revocation_entry *entries; /**< may be NULL when n_entries is 0 */
    size_t n_entries;                      /**< number of entries */
    const mqe2e_retired_sender *retired;   /**< may be NULL when n_retired is 0 */
    size_t n_retired;                      /**< number of retired sender ids */
} mqe2e_revocation_contents;

/**
 * @brief Sign a revocation list with retired sender ids, through a signing
 *        callback (see ::mqe2e_sign_fn), like mqe2e_revocation_list_sign_with().
 * @param out     receives a malloc()ed encoded RevocationList (public data);
 *                the caller free()s it. Untouched on failure.
 * @param out_len receives its length.
 * @param authority_sign_public the authority's Ed25519 public key (the
 *                signature is checked against it before the list is returned).
 * @param sign    signing callback; @p sign_ctx is passed to it.
 * @param sign_ctx opaque, borrowed.
 * @param c       what to sign (borrowed, read only).
 * @return as mqe2e_revocation_list_sign(); ::MQE2E_ERR_INVALID_ARG also for
 *         an invalid group id, sender id 0, or a next_update not after issued_at.
 */
MQE2E_API int mqe2e_revocation_list_sign_ex(uint8_t **out, size_t *out_len,
                                            const uint8_t authority_sign_public[32],
                                            mqe2e_sign_fn sign, void *sign_ctx,
                                            const mqe2e_revocation_contents *c);

/**
 * @brief Sign a revocation list with retired sender ids under a secret key
 *        (tests, tools); otherwise as mqe2e_revocation_list_sign_ex().
 * @param out     receives a malloc()ed encoded RevocationList (public data);
 *                the caller free()s it. Untouched on failure.
 * @param out_len receives its length.
 * @param authority_sign_secret authority Ed25519 secret key (read only; every
 *                temporary derived from it is wiped).
 * @param c       what to sign (borrowed, read only).
 * @return as mqe2e_revocation_list_sign_ex().
 */
MQE2E_API int mqe2e_revocation_list_sign_contents(uint8_t **out, size_t *out_len,
                                                  const uint8_t authority_sign_secret[64],
                                                  const mqe2e_revocation_contents *c);

/**
 * @brief Verify a revocation list against the pinned authority key.
 *
 * This does not know which version the receiver already holds: the receiver
 * keeps the highest version it has accepted and must never replace it with a
 * lower or equal one (compare mqe2e_revocation_list_version() before adopting
 * the new list), or an attacker could replay an old list that predates a
 * revocation.
 * @param out receives a new handle (caller's; free with
 *            mqe2e_revocation_list_free()); NULL on failure.
 * @param in  encoded RevocationList (untrusted).
 * @param len length of @p in.
 * @param authority_sign_public the pinned authority Ed25519 public key.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG (NULL); ::MQE2E_ERR_TOO_LARGE;
 *         ::MQE2E_ERR_DECODE (malformed, version 0, invalid client id, invalid
 *         retired sender, next_update set but not after issued_at);
 *         ::MQE2E_ERR_AUTH (bad signature or another authority);
 *         ::MQE2E_ERR_SUITE (format other than 1); ::MQE2E_ERR_NOMEM;
 *         ::MQE2E_ERR_CRYPTO.
 */
MQE2E_API int mqe2e_revocation_list_verify(mqe2e_revocation_list **out, const uint8_t *in,
                                           size_t len, const uint8_t authority_sign_public[32]);

/** @brief Version of a verified list (0 for NULL). */
MQE2E_API uint64_t mqe2e_revocation_list_version(const mqe2e_revocation_list *l);
/** @brief Issue time of a verified list (0 for NULL). */
MQE2E_API uint64_t mqe2e_revocation_list_issued_at(const mqe2e_revocation_list *l);
/**
 * @brief Next-update time of a verified list (seconds since the Unix epoch;
 *        0 for NULL or a list without one). The list's validity is
 *        next_update - issued_at, which members measure on their monotonic
 *        clock from when they heard the list (docs/PROTOCOL.md 9.3).
 */
MQE2E_API uint64_t mqe2e_revocation_list_next_update(const mqe2e_revocation_list *l);
/** @brief Number of entries (0 for NULL). */
MQE2E_API size_t mqe2e_revocation_list_count(const mqe2e_revocation_list *l);

/**
 * @brief Read entry @p i (entries are sorted by client id, then serial).
 * @param l a verified list.
 * @param i entry index, below mqe2e_revocation_list_count().
 * @param e receives the entry; its client_id is borrowed from @p l.
 * @return ::MQE2E_OK, ::MQE2E_ERR_INVALID_ARG (NULL or @p i out of range).
 */
MQE2E_API int mqe2e_revocation_list_entry(const mqe2e_revocation_list *l, size_t i,
                                          mqe2e_revocation_entry *e);

/**
 * @brief Is this credential revoked?
 *
 * True when an entry names @p client_id and either its serial is 0 (the whole
 * client is revoked), or @p serial is 0 (the question is "is any credential
 * of this client revoked"), or @p serial is at most the entry's serial: an
 * entry with serial s revokes every credential of the client up to s
 * (serials only grow at the authority, so that is every credential the
 * client held when its device was replaced; docs/CREDENTIALS.md).
 * @return false for NULL arguments.
 */
MQE2E_API bool mqe2e_revocation_list_is_revoked(const mqe2e_revocation_list *l,
                                                const char *client_id, uint64_t serial);

/**
 * @brief Is the client id itself revoked (an entry with serial 0), as opposed
 *        to a replaced device's older credentials?
 * @return false for NULL arguments.
 */
MQE2E_API bool mqe2e_revocation_list_client_revoked(const mqe2e_revocation_list *l,
                                                    const char *client_id);

/**
 * @brief Does the list retire sender id @p sender_id of group @p group_id
 *        (a revoked or replaced device's)? Receivers drop such a sender's
 *        envelopes, whatever their epoch (::MQE2E_ERR_REVOKED).
 * @return false for NULL arguments.
 */
MQE2E_API bool mqe2e_revocation_list_sender_retired(const mqe2e_revocation_list *l,
                                                    const char *group_id, uint32_t sender_id);

/** @brief Number of retired sender ids in a verified list (0 for NULL). */
MQE2E_API size_t mqe2e_revocation_list_retired_count(const mqe2e_revocation_list *l);

/**
 * @brief Read retired sender @p i (sorted by sender id, then group id).
 * @param l a verified list.
 * @param i index, below mqe2e_revocation_list_retired_count().
 * @param r receives it; its group_id is borrowed from @p l.
 * @return ::MQE2E_OK, ::MQE2E_ERR_INVALID_ARG (NULL or @p i out of range).
 */
MQE2E_API int mqe2e_revocation_list_retired(const mqe2e_revocation_list *l, size_t i,
                                            mqe2e_retired_sender *r);

/** @brief Free a list handle. NULL is a no-op. */
MQE2E_API void mqe2e_revocation_list_free(mqe2e_revocation_list *l);

#ifdef __cplusplus
}
#endif
#endif
