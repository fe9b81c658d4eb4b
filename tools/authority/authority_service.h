/**
 * @file authority_service.h
 * @brief The mqe2e authority as a running MQTT client: enrollment, hello,
 *        pushes after rotation and revocation, operator requests, schedules.
 *
 * One thread, the synchronous Paho client, no callbacks: the loop calls
 * MQTTClient_receive() with a 200 ms timeout and handles one message at a
 * time. Every piece of state that matters lives in the SQLite store
 * (authority_db.h); what is in memory (counters, message counts of groups
 * rotated by count, the signed revocation list cache) is rebuilt on start.
 */
#ifndef MQE2E_AUTHORITY_SERVICE_H
#define MQE2E_AUTHORITY_SERVICE_H

#include <signal.h>
#include <stdint.h>

#include <MQTTClient.h>

#include "authority_db.h"
#include "mqe2e/keystore.h"
#include "ratelimit.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Default control prefix. */
#define AUTHORITY_DEFAULT_PREFIX "mqe2e"
/** Default credential lifetime: 30 days. */
#define AUTHORITY_DEFAULT_CREDENTIAL_TTL (30ULL * 24U * 3600U)
/** Default grace of retired epochs handed out by HELLO: 1 hour. */
#define AUTHORITY_DEFAULT_GRACE 3600ULL
/** Grace of a group's retired epochs after a member left it (revoked,
 *  replaced, ungranted): they held those epochs. */
#define AUTHORITY_DEFAULT_REVOKE_GRACE 30ULL
/** Default validity of a signed revocation list (next_update - issued_at): 1 hour. */
#define AUTHORITY_DEFAULT_LIST_VALIDITY 3600ULL
/** Most ENROLL requests made durable by one database commit (group commit). */
#define AUTHORITY_ENROLL_BATCH 32U
/** Refusal log lines written per second at most; the rest are only counted. */
#define AUTHORITY_REFUSAL_LOG_PER_S 20U

/** HKDF salt of the database key. */
#define AUTHORITY_DB_KEY_SALT "mqe2e/v1/authority-db"

/** Settings of a running authority. Strings are borrowed for the call. */
typedef struct authority_config {
    const char *uri;         /**< broker, "tcp://host:port" */
    const char *db_path;     /**< SQLite file (created by `authority init`) */
    const char *prefix;      /**< control prefix P */
    uint64_t credential_ttl; /**< seconds */
    uint64_t grace;          /**< seconds a retired epoch is still handed out */
    uint64_t revoke_grace;   /**< retired epochs' grace after a member left (0 = default) */
    int verbose;             /**< 1: log every handled message */
    const char *username; /**< broker user name, or NULL (ACLs key the authority's rights on it) */
    const char *password; /**< broker password, or NULL */
    volatile sig_atomic_t *stop; /**< set non-zero (e.g. by a signal handler) to stop */
    /** Admission of handshake work (ratelimit.h), or NULL for authority_rl_defaults(). */
    const authority_rl_config *limits;
    /** Paho TLS options (ssl:// URIs), or NULL; borrowed, passed to Paho unchanged. */
    const MQTTClient_SSLOptions *ssl;
    int keepalive; /**< MQTT keep-alive in seconds (0: 30) */
    /** Revocation list validity (next_update - issued_at), seconds; the list is
     *  signed afresh when half of it passed (0: AUTHORITY_DEFAULT_LIST_VALIDITY). */
    uint64_t list_validity;
} authority_config;

/**
 * @brief Database key: HKDF-SHA256(salt "mqe2e/v1/authority-db", ikm = the
 *        authority's X25519 secret, info = authority id).
 * @param key 32 bytes, caller-owned; the caller wipes it.
 * @return MQE2E_OK or a negative mqe2e_error.
 */
int authority_db_key(uint8_t key[MQE2E_ADB_KEY_BYTES], const mqe2e_keystore *ks);

/**
 * @brief The authority pin text of @p ks with control prefix @p prefix.
 * @param out malloc()ed text (public); the caller free()s it.
 * @return MQE2E_OK or a negative mqe2e_error.
 */
int authority_pin_text(char **out, const mqe2e_keystore *ks, const char *prefix);

/** Signing callback over mqe2e_keystore_sign() (ctx is the keystore). */
int authority_keystore_sign(void *ctx, uint8_t sig[64], const uint8_t *msg, size_t msg_len);

/**
 * @brief Run the service until *cfg->stop is set.
 *
 * Connects with a fixed client id (the authority id) and a persistent session
 * so that queued QoS 1 control messages survive restarts, republishes the
 * retained revocation list, then loops. Reconnects by itself after a broker
 * outage.
 * @param ks the authority keystore (identity of the authority), kept open by the caller.
 * @return 0 after a requested stop; a negative mqe2e_error when the database
 *         cannot be opened or the first connection fails.
 */
int authority_run(mqe2e_keystore *ks, const authority_config *cfg);

#ifdef __cplusplus
}
#endif
#endif
