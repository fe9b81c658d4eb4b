/**
 * @file authority_db.h
 * @brief Persistent store of the mqe2e authority (SQLite or PostgreSQL, store.h).
 *
 * The authority keeps every piece of state it needs to survive a restart here:
 * enrollment tokens, enrolled clients and their grants, groups with their
 * epoch secrets and members, revocations, operators and the nonces of their
 * signed commands, and an audit trail. The store knows nothing about MQTT and
 * never reads the clock: every call that needs the time takes `now` (seconds).
 *
 * Secrets at rest (token secrets, group epoch secrets) are sealed column-wise
 * with XChaCha20-Poly1305 under the 32-byte database key passed to
 * mqe2e_adb_open(); the associated data binds each ciphertext to its table and
 * primary key, so a ciphertext copied into another row fails with
 * ::MQE2E_ERR_AUTH.
 *
 * Error conventions, used the same way by every call:
 * - ::MQE2E_ERR_NOT_FOUND: the named row (token, client, group, epoch,
 *   operator, membership) does not exist;
 * - ::MQE2E_ERR_EXISTS: the row to create already exists (and a replayed
 *   operator nonce);
 * - ::MQE2E_ERR_EXPIRED: a token past its expiry;
 * - ::MQE2E_ERR_STATE: the row exists but its state forbids the call (token
 *   already used by another device, client already revoked or not active);
 * - ::MQE2E_ERR_AUTH: a sealed secret failed to open (wrong key, moved row);
 * - ::MQE2E_ERR_IO: SQLite failed (disk full, locked, corrupt file);
 * - ::MQE2E_ERR_INVALID_ARG / ::MQE2E_ERR_TOO_LARGE: bad or over-long input.
 *
 * A handle is not thread-safe; use one per thread or serialise calls. List
 * callbacks run while the query is open and must not call back into the same
 * handle, except where a call says otherwise (mqe2e_adb_client_revoke(),
 * mqe2e_adb_groups_due_for_rotation() collect their rows first).
 */
#ifndef MQE2E_AUTHORITY_DB_H
#define MQE2E_AUTHORITY_DB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MQE2E_ADB_KEY_BYTES 32U      /**< database key (from the authority keystore) */
#define MQE2E_ADB_TOKEN_ID_BYTES 16U /**< enrollment token identifier */
#define MQE2E_ADB_SECRET_BYTES 32U   /**< token secret (enrollment psk) and group epoch secret */
#define MQE2E_ADB_PUBLIC_BYTES 32U   /**< Ed25519 / X25519 public key */
#define MQE2E_ADB_NAME_MAX 256U      /**< client id, role, group, operator name: bytes incl. NUL */
#define MQE2E_ADB_FILTER_MAX 512U    /**< MQTT topic filter: bytes incl. NUL */
#define MQE2E_ADB_TEXT_MAX 1024U     /**< audit actor/action/subject: bytes incl. NUL */
#define MQE2E_ADB_GRANTS_MAX 16U     /**< grants carried by one token */
#define MQE2E_ADB_NONCE_MIN 16U      /**< shortest accepted operator command nonce */
#define MQE2E_ADB_NONCE_MAX 64U      /**< longest accepted operator command nonce */
#define MQE2E_ADB_SCHEMA_VERSION 7   /**< schema version written by this code (both stores) */
#define MQE2E_ADB_SEALED_BYTES 72U   /**< a sealed secret column: nonce, ciphertext, tag */

/** How long after its first use a token still serves an enrollment retry (the
 *  device lost the reply), and only for the same keys: seconds. */
#define MQE2E_ADB_ENROLL_RETRY_SECONDS 120U

/** Token flag: the token replaces the device of an active client id
 *  (`token create --replace`); without it such a token does not enroll. */
#define MQE2E_ADB_TOKEN_REPLACE 1U

#define MQE2E_ADB_RIGHT_PUBLISH 1U   /**< grant right: publish under the filter */
#define MQE2E_ADB_RIGHT_SUBSCRIBE 2U /**< grant right: subscribe to the filter */

/** Opaque database handle. */
typedef struct mqe2e_adb mqe2e_adb;

/** One access grant: a topic filter and a mask of MQE2E_ADB_RIGHT_* bits. */
typedef struct mqe2e_adb_grant {
    char filter[MQE2E_ADB_FILTER_MAX];
    uint32_t rights;
} mqe2e_adb_grant;

/** What a token says about the client it enrolls (secret excluded). */
typedef struct mqe2e_adb_token_info {
    char client_id[MQE2E_ADB_NAME_MAX];
    char role[MQE2E_ADB_NAME_MAX];
    uint64_t created_at;
    uint64_t expires_at;
    uint64_t used_at;                                    /**< 0 while unused */
    int used;                                            /**< 1 once consumed */
    uint8_t used_by_sign_public[MQE2E_ADB_PUBLIC_BYTES]; /**< zero while unused */
    uint8_t used_by_dh_public[MQE2E_ADB_PUBLIC_BYTES];   /**< zero while unused */
    int replaces; /**< 1: made with ::MQE2E_ADB_TOKEN_REPLACE */
    int retry;    /**< set by mqe2e_adb_token_consume(): this call was a retry */
    size_t n_grants;
    mqe2e_adb_grant grants[MQE2E_ADB_GRANTS_MAX];
} mqe2e_adb_token_info;

/** Client status. */
typedef enum mqe2e_adb_client_status {
    MQE2E_ADB_CLIENT_ACTIVE = 0,
    MQE2E_ADB_CLIENT_REVOKED = 1,
} mqe2e_adb_client_status;

/** An enrolled client. */
typedef struct mqe2e_adb_client {
    char client_id[MQE2E_ADB_NAME_MAX];
    uint8_t sign_public[MQE2E_ADB_PUBLIC_BYTES];
    uint8_t dh_public[MQE2E_ADB_PUBLIC_BYTES];
    char role[MQE2E_ADB_NAME_MAX];
    mqe2e_adb_client_status status;
    uint64_t enrolled_at;
    uint64_t revoked_at;         /**< 0 unless revoked */
    uint64_t credential_serial;  /**< serial of the last credential issued */
    uint64_t credential_expires; /**< expiry of that credential */
} mqe2e_adb_client;

/** A key group (one protected topic filter). */
typedef struct mqe2e_adb_group {
    char name[MQE2E_ADB_NAME_MAX];
    char topic_filter[MQE2E_ADB_FILTER_MAX];
    uint32_t current_epoch;         /**< starts at 1 */
    uint64_t rotate_every_seconds;  /**< 0: no time-based rotation */
    uint64_t rotate_every_messages; /**< 0: no count-based rotation (enforced by members) */
    uint64_t last_rotated_at;       /**< creation time until the first rotation */
    int is_signed;                  /**< 1: members sign (MQE2E_MODE_SIGNED_GROUP) */
} mqe2e_adb_group;

/** Rotation and signing settings of a group, given at creation. */
typedef struct mqe2e_adb_group_settings {
    uint64_t rotate_every_seconds;
    uint64_t rotate_every_messages;
    int is_signed;
} mqe2e_adb_group_settings;

/** Counters for the `status` command. */
typedef struct mqe2e_adb_status {
    uint64_t clients_active;
    uint64_t clients_revoked;
    uint64_t tokens_unused; /**< unused and not yet expired at `now` */
    uint64_t groups;
    uint64_t revocation_version;
} mqe2e_adb_status;

/**
 * List callbacks: return 0 to go on, anything else to stop; the list call then
 * returns that value. String arguments are valid only during the call.
 */
typedef int (*mqe2e_adb_client_cb)(const mqe2e_adb_client *client, void *user);
typedef int (*mqe2e_adb_grant_cb)(const mqe2e_adb_grant *grant, void *user);
typedef int (*mqe2e_adb_group_cb)(const mqe2e_adb_group *group, void *user);
typedef int (*mqe2e_adb_name_cb)(const char *name, void *user);
typedef int (*mqe2e_adb_epoch_cb)(uint32_t epoch, uint64_t created_at, uint64_t retired_at,
                                  void *user);
typedef int (*mqe2e_adb_member_cb)(const char *group_or_client, uint32_t sender_id,
                                   uint64_t added_at, void *user);
typedef int (*mqe2e_adb_membership_cb)(const char *group_or_client, uint32_t sender_id,
                                       uint64_t added_at, uint32_t joined_epoch, void *user);
typedef int (*mqe2e_adb_revocation_cb)(const char *client_id, uint64_t serial, uint64_t revoked_at,
                                       void *user);
typedef int (*mqe2e_adb_token_cb)(const uint8_t token_id[MQE2E_ADB_TOKEN_ID_BYTES],
                                  const mqe2e_adb_token_info *info, void *user);
typedef int (*mqe2e_adb_audit_cb)(int64_t id, uint64_t at, const char *actor, const char *action,
                                  const char *subject, void *user);

/* ---------------------------------------------------------------- lifecycle */

/**
 * @brief Open (creating if needed) the authority database and migrate it to
 *        ::MQE2E_ADB_SCHEMA_VERSION.
 *
 * Sets WAL journaling, synchronous=FULL, foreign keys, secure_delete and a busy
 * timeout. A new file is created with mode 0600. The first open stores a key
 * check value; later opens with another key are refused.
 *
 * @param out    receives the handle; close with mqe2e_adb_close().
 * @param path   file name of the database.
 * @param db_key 32-byte database key; copied into guarded memory, the caller
 *               keeps and wipes its own buffer.
 * @return ::MQE2E_OK; ::MQE2E_ERR_AUTH if db_key is not the key the database
 *         was created with; ::MQE2E_ERR_SUITE if the file has a newer schema;
 *         ::MQE2E_ERR_IO if SQLite cannot open or migrate the file;
 *         ::MQE2E_ERR_NOMEM; ::MQE2E_ERR_CRYPTO; ::MQE2E_ERR_INVALID_ARG.
 */
int mqe2e_adb_open(mqe2e_adb **out, const char *path, const uint8_t db_key[MQE2E_ADB_KEY_BYTES]);

/**
 * @brief Close the database and wipe the key copy. NULL is a no-op. An open
 *        mqe2e_adb_tx_begin() transaction is rolled back.
 */
void mqe2e_adb_close(mqe2e_adb *db);

/**
 * @brief Start a caller transaction grouping many calls into one commit (bulk
 *        member additions, an audit row written with the change it records).
 *        Calls made inside it become savepoints; none is durable until
 *        mqe2e_adb_tx_commit().
 * @return ::MQE2E_OK; ::MQE2E_ERR_STATE if one is already open; ::MQE2E_ERR_IO.
 */
int mqe2e_adb_tx_begin(mqe2e_adb *db);

/** @brief Commit the caller transaction. @return ::MQE2E_OK, ::MQE2E_ERR_STATE if none,
 * ::MQE2E_ERR_IO. */
int mqe2e_adb_tx_commit(mqe2e_adb *db);

/** @brief Roll the caller transaction back. @return ::MQE2E_OK, ::MQE2E_ERR_STATE if none,
 * ::MQE2E_ERR_IO. */
int mqe2e_adb_tx_rollback(mqe2e_adb *db);

/* ------------------------------------------------------------------- tokens */

/**
 * @brief Store a new one-time enrollment token with its grants.
 * @param token_id  16-byte identifier (random, chosen by the caller).
 * @param secret    32-byte token secret; sealed before storage; only read.
 * @param client_id client id the token enrolls.
 * @param role      role recorded for the client.
 * @param grants    n grants (n <= ::MQE2E_ADB_GRANTS_MAX); may be NULL when n is 0.
 * @return ::MQE2E_OK; ::MQE2E_ERR_EXISTS if token_id is taken;
 *         ::MQE2E_ERR_INVALID_ARG (expires_at <= created_at, bad rights, ...);
 *         ::MQE2E_ERR_TOO_LARGE; ::MQE2E_ERR_IO.
 */
int mqe2e_adb_token_create(mqe2e_adb *db, const uint8_t token_id[MQE2E_ADB_TOKEN_ID_BYTES],
                           const uint8_t secret[MQE2E_ADB_SECRET_BYTES], const char *client_id,
                           const char *role, const mqe2e_adb_grant *grants, size_t n,
                           uint64_t created_at, uint64_t expires_at);

/**
 * @brief mqe2e_adb_token_create() with flags (::MQE2E_ADB_TOKEN_REPLACE).
 *
 * Refuses a token for a revoked client id (::MQE2E_ERR_STATE: revocation is
 * final) and, without ::MQE2E_ADB_TOKEN_REPLACE, for an active one
 * (::MQE2E_ERR_EXISTS); with the flag the client id must be active
 * (::MQE2E_ERR_NOT_FOUND otherwise).
 */
int mqe2e_adb_token_create_flags(mqe2e_adb *db, const uint8_t token_id[MQE2E_ADB_TOKEN_ID_BYTES],
                                 const uint8_t secret[MQE2E_ADB_SECRET_BYTES],
                                 const char *client_id, const char *role,
                                 const mqe2e_adb_grant *grants, size_t n, uint64_t created_at,
                                 uint64_t expires_at, unsigned flags);

/**
 * @brief Read a token without consuming it: the enrollment handshake needs the
 *        secret (its psk) before the device key is proven.
 * @param out_secret 32 bytes, caller-owned; the caller wipes it. Zeroed on error.
 * @param out_info   receives the token's record (may be NULL).
 * @return ::MQE2E_OK (whatever the token's state: check out_info);
 *         ::MQE2E_ERR_NOT_FOUND; ::MQE2E_ERR_AUTH; ::MQE2E_ERR_IO.
 */
int mqe2e_adb_token_peek(uint8_t out_secret[MQE2E_ADB_SECRET_BYTES], mqe2e_adb_token_info *out_info,
                         mqe2e_adb *db, const uint8_t token_id[MQE2E_ADB_TOKEN_ID_BYTES]);

/**
 * @brief Consume a one-time token for the device whose keys are given,
 *        atomically.
 *
 * Succeeds if the token is unused and unexpired (now < expires_at), marking it
 * used by both keys, or, as a retry after a lost reply (out_info->retry set),
 * if it was used by exactly the same Ed25519 *and* X25519 keys less than
 * ::MQE2E_ADB_ENROLL_RETRY_SECONDS ago and has not expired. The X25519 key is
 * the one the enrollment handshake proved; the Ed25519 key alone is public and
 * proves nothing. A used token is otherwise worthless; mqe2e_adb_client_revoke()
 * deletes it.
 *
 * @param out_secret 32 bytes, caller-owned; the caller wipes it. Zeroed on error.
 * @param out_info   receives client id, role, grants, flags (may be NULL).
 * @return ::MQE2E_OK; ::MQE2E_ERR_NOT_FOUND (unknown token);
 *         ::MQE2E_ERR_EXPIRED (past expires_at, used or not); ::MQE2E_ERR_STATE
 *         (used by other keys, or past the retry window); ::MQE2E_ERR_AUTH
 *         (sealed secret does not open: the token is left unused); ::MQE2E_ERR_IO.
 */
int mqe2e_adb_token_consume(uint8_t out_secret[MQE2E_ADB_SECRET_BYTES],
                            mqe2e_adb_token_info *out_info, mqe2e_adb *db,
                            const uint8_t token_id[MQE2E_ADB_TOKEN_ID_BYTES],
                            const uint8_t device_sign_public[MQE2E_ADB_PUBLIC_BYTES],
                            const uint8_t device_dh_public[MQE2E_ADB_PUBLIC_BYTES], uint64_t now);

/**
 * @brief Delete tokens that expired unused before `now`, and used tokens whose
 *        expiry is older than `now` (their idempotent-retry window is over).
 * @param out_deleted number of tokens removed (may be NULL).
 * @return ::MQE2E_OK or ::MQE2E_ERR_IO.
 */
int mqe2e_adb_token_prune(uint64_t *out_deleted, mqe2e_adb *db, uint64_t now);

/**
 * @brief Join the token's client to @p group when the token is consumed
 *        (the authority adds the membership at enrollment).
 * @return ::MQE2E_OK; ::MQE2E_ERR_NOT_FOUND (no such token or group);
 *         ::MQE2E_ERR_EXISTS (already listed); ::MQE2E_ERR_INVALID_ARG;
 *         ::MQE2E_ERR_TOO_LARGE; ::MQE2E_ERR_IO.
 */
int mqe2e_adb_token_group_add(mqe2e_adb *db, const uint8_t token_id[MQE2E_ADB_TOKEN_ID_BYTES],
                              const char *group);

/**
 * @brief Call cb with every group a token joins its client to, by name.
 * @return ::MQE2E_OK (also for none), the callback's value, ::MQE2E_ERR_IO.
 */
int mqe2e_adb_token_groups_list(mqe2e_adb *db, const uint8_t token_id[MQE2E_ADB_TOKEN_ID_BYTES],
                                mqe2e_adb_name_cb cb, void *user);

/**
 * @brief Call cb for every stored token (secret excluded; info->n_grants is
 *        0: grants are not read), oldest first.
 * @return ::MQE2E_OK, the callback's value, ::MQE2E_ERR_IO.
 */
int mqe2e_adb_token_list(mqe2e_adb *db, mqe2e_adb_token_cb cb, void *user);

/* ------------------------------------------------------------------ clients */

/**
 * @brief Record a client as enrolled (insert, or replace the keys of an
 *        existing one) and issue the next credential serial, replacing its
 *        grants with the given ones, in one transaction.
 *
 * Revocation is final: a revoked client id is refused (::MQE2E_ERR_STATE) and
 * never becomes active again. An active client is only re-keyed through
 * mqe2e_adb_client_replace(); called with keys other than its enrolled ones it
 * is refused (::MQE2E_ERR_EXISTS). Same keys: a renewal (new serial).
 *
 * @param out_serial        the new credential serial (>= 1).
 * @param client_id, role   as in the token.
 * @param sign_public       device Ed25519 public key (32 bytes).
 * @param dh_public         device X25519 public key (32 bytes).
 * @param grants, n         the client's grants from now on (n may be 0).
 * @param now               enrollment time.
 * @param credential_expires expiry written into the credential.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_TOO_LARGE;
 *         ::MQE2E_ERR_STATE (revoked); ::MQE2E_ERR_EXISTS (active, other keys);
 *         ::MQE2E_ERR_EXHAUSTED (serial counter); ::MQE2E_ERR_IO.
 */
int mqe2e_adb_client_upsert_enrolled(uint64_t *out_serial, mqe2e_adb *db, const char *client_id,
                                     const char *role,
                                     const uint8_t sign_public[MQE2E_ADB_PUBLIC_BYTES],
                                     const uint8_t dh_public[MQE2E_ADB_PUBLIC_BYTES],
                                     const mqe2e_adb_grant *grants, size_t n, uint64_t now,
                                     uint64_t credential_expires);

/**
 * @brief Read one client.
 * @return ::MQE2E_OK; ::MQE2E_ERR_NOT_FOUND; ::MQE2E_ERR_IO.
 */
int mqe2e_adb_client_get(mqe2e_adb_client *out, mqe2e_adb *db, const char *client_id);

/**
 * @brief Call cb for every client, ordered by client id.
 * @return ::MQE2E_OK, the callback's non-zero value, or ::MQE2E_ERR_IO.
 */
int mqe2e_adb_client_list(mqe2e_adb *db, mqe2e_adb_client_cb cb, void *user);

/**
 * @brief Replace the device of an active client id (an operator's
 *        `--replace` ticket), in one transaction: every credential issued so
 *        far goes on the revocation list (entry with the current serial: it
 *        covers every serial up to it), the revocation-list version is bumped,
 *        every membership is removed (the new device gets fresh sender ids) and
 *        the enrolled keys become the new device's. cb is called, inside the
 *        transaction, once per group the old device was in (the caller rotates
 *        each before the new device reads its bundles).
 * @return ::MQE2E_OK (or the callback's non-zero value); ::MQE2E_ERR_NOT_FOUND;
 *         ::MQE2E_ERR_STATE (revoked); ::MQE2E_ERR_NOMEM; ::MQE2E_ERR_IO.
 */
int mqe2e_adb_client_replace(mqe2e_adb *db, const char *client_id,
                             const uint8_t sign_public[MQE2E_ADB_PUBLIC_BYTES],
                             const uint8_t dh_public[MQE2E_ADB_PUBLIC_BYTES], uint64_t now,
                             mqe2e_adb_name_cb cb, void *user);

/**
 * @brief Revoke a client in one transaction: mark it revoked, put it on the
 *        revocation list with serial 0 (every credential it ever held), bump
 *        the revocation-list version, remove all its group memberships and
 *        delete all its tokens, used or not. After the commit, cb is called once per group it was
 * in, so the caller can rotate each one (cb may call into db).
 * @param cb may be NULL.
 * @return ::MQE2E_OK (or the callback's non-zero value); ::MQE2E_ERR_NOT_FOUND;
 *         ::MQE2E_ERR_STATE (already revoked); ::MQE2E_ERR_NOMEM; ::MQE2E_ERR_IO.
 */
int mqe2e_adb_client_revoke(mqe2e_adb *db, const char *client_id, uint64_t now,
                            mqe2e_adb_name_cb cb, void *user);

/**
 * @brief Add a grant to a client (or widen the rights of an existing filter).
 * @return ::MQE2E_OK; ::MQE2E_ERR_NOT_FOUND (no such client);
 *         ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_TOO_LARGE; ::MQE2E_ERR_IO.
 */
int mqe2e_adb_grant_add(mqe2e_adb *db, const char *client_id, const char *filter, uint32_t rights);

/**
 * @brief Remove a client's grant on a filter.
 * @return ::MQE2E_OK; ::MQE2E_ERR_NOT_FOUND; ::MQE2E_ERR_IO.
 */
int mqe2e_adb_grant_remove(mqe2e_adb *db, const char *client_id, const char *filter);

/**
 * @brief Call cb for every grant of a client, ordered by filter.
 * @return ::MQE2E_OK (also for a client without grants), the callback's value,
 *         ::MQE2E_ERR_IO.
 */
int mqe2e_adb_grant_list(mqe2e_adb *db, const char *client_id, mqe2e_adb_grant_cb cb, void *user);

/**
 * @brief Increment and return a client's push counter (Push.push_seq), durably:
 *        the value is never handed out twice, across restarts. Inside a
 *        mqe2e_adb_tx_begin() transaction it becomes durable at the commit.
 * @param out the new value (>= 1); 0 on error.
 * @return ::MQE2E_OK; ::MQE2E_ERR_NOT_FOUND; ::MQE2E_ERR_EXHAUSTED;
 *         ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_IO.
 */
int mqe2e_adb_client_push_seq_next(uint64_t *out, mqe2e_adb *db, const char *client_id);

/**
 * @brief Read a client's push counter (0 before the first push).
 * @return ::MQE2E_OK; ::MQE2E_ERR_NOT_FOUND; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_IO.
 */
int mqe2e_adb_client_push_seq(uint64_t *out, mqe2e_adb *db, const char *client_id);

/* ------------------------------------------------------------------- groups */

/**
 * @brief Create a group at epoch 1 with its first secret.
 * @param settings rotation and signing settings; NULL for none.
 * @param initial_secret 32 bytes; sealed before storage; only read.
 * @return ::MQE2E_OK; ::MQE2E_ERR_EXISTS; ::MQE2E_ERR_INVALID_ARG;
 *         ::MQE2E_ERR_TOO_LARGE; ::MQE2E_ERR_IO.
 */
int mqe2e_adb_group_create(mqe2e_adb *db, const char *name, const char *topic_filter,
                           const mqe2e_adb_group_settings *settings, uint64_t now,
                           const uint8_t initial_secret[MQE2E_ADB_SECRET_BYTES]);

/**
 * @brief Shorten the grace period of every retired epoch of a group to at
 *        most @p grace_seconds (after a member was revoked, replaced or
 *        removed: it held those epochs). Epochs retired later are unaffected.
 *        Bundles carry the value (mqe2e_key_bundle::grace_seconds).
 * @return ::MQE2E_OK (also when nothing changed); ::MQE2E_ERR_INVALID_ARG
 *         (grace 0); ::MQE2E_ERR_IO.
 */
int mqe2e_adb_group_limit_grace(mqe2e_adb *db, const char *name, uint32_t grace_seconds);

/**
 * @brief The authority-set grace of one epoch (0: none, the default applies).
 * @return ::MQE2E_OK; ::MQE2E_ERR_NOT_FOUND; ::MQE2E_ERR_IO.
 */
int mqe2e_adb_group_epoch_grace(uint32_t *out, mqe2e_adb *db, const char *name, uint32_t epoch);

/**
 * @brief Move a group to a new epoch with a new secret, in one transaction:
 *        older epochs still current get retired_at = now.
 * @param out_epoch the new epoch number (may be NULL).
 * @return ::MQE2E_OK; ::MQE2E_ERR_NOT_FOUND; ::MQE2E_ERR_EXHAUSTED (epoch
 *         counter at UINT32_MAX); ::MQE2E_ERR_IO.
 */
int mqe2e_adb_group_rotate(uint32_t *out_epoch, mqe2e_adb *db, const char *name,
                           const uint8_t new_secret[MQE2E_ADB_SECRET_BYTES], uint64_t now);

/** @brief Read one group. @return ::MQE2E_OK, ::MQE2E_ERR_NOT_FOUND, ::MQE2E_ERR_IO. */
int mqe2e_adb_group_get(mqe2e_adb_group *out, mqe2e_adb *db, const char *name);

/** @brief Call cb for every group, by name. @return ::MQE2E_OK, the callback's value,
 * ::MQE2E_ERR_IO. */
int mqe2e_adb_group_list(mqe2e_adb *db, mqe2e_adb_group_cb cb, void *user);

/**
 * @brief Decrypt the secret of one epoch of a group.
 * @param out_secret 32 bytes, caller-owned; the caller wipes it. Zeroed on error.
 * @return ::MQE2E_OK; ::MQE2E_ERR_NOT_FOUND (no such group or epoch);
 *         ::MQE2E_ERR_AUTH; ::MQE2E_ERR_IO.
 */
int mqe2e_adb_group_epoch_secret(uint8_t out_secret[MQE2E_ADB_SECRET_BYTES], mqe2e_adb *db,
                                 const char *name, uint32_t epoch);

/**
 * @brief Call cb for every stored epoch of a group, oldest first (retired_at
 *        is 0 for the current epoch).
 * @return ::MQE2E_OK, the callback's value, ::MQE2E_ERR_NOT_FOUND, ::MQE2E_ERR_IO.
 */
int mqe2e_adb_group_epochs_list(mqe2e_adb *db, const char *name, mqe2e_adb_epoch_cb cb, void *user);

/**
 * @brief Call cb with the name of every group whose time-based rotation is
 *        due (rotate_every_seconds > 0 and last_rotated_at +
 *        rotate_every_seconds <= now). Names are collected first, so cb may
 *        rotate the group through db.
 * @return ::MQE2E_OK, the callback's value, ::MQE2E_ERR_NOMEM, ::MQE2E_ERR_IO.
 */
int mqe2e_adb_groups_due_for_rotation(mqe2e_adb *db, uint64_t now, mqe2e_adb_name_cb cb,
                                      void *user);

/* ------------------------------------------------------------------ members */

/**
 * @brief Add an active client to a group with the group's next sender id:
 *        ids start at 1 and only grow, so no id is ever handed out twice
 *        within the group's life (not even a departed member's).
 * @param out_sender_id the assigned id; on ::MQE2E_ERR_EXISTS, the id the
 *        client already has (may be NULL).
 * @return ::MQE2E_OK; ::MQE2E_ERR_NOT_FOUND (group or client);
 *         ::MQE2E_ERR_STATE (client revoked); ::MQE2E_ERR_EXISTS (already a
 *         member); ::MQE2E_ERR_EXHAUSTED; ::MQE2E_ERR_IO.
 */
int mqe2e_adb_member_add(uint32_t *out_sender_id, mqe2e_adb *db, const char *group,
                         const char *client_id, uint64_t now);

/** @brief Remove a member; its sender id stays retired (never reassigned).
 * @return ::MQE2E_OK, ::MQE2E_ERR_NOT_FOUND, ::MQE2E_ERR_IO. */
int mqe2e_adb_member_remove(mqe2e_adb *db, const char *group, const char *client_id);

/**
 * @brief Call cb(client_id, sender_id, added_at) for every member of a group,
 *        by sender id.
 * @return ::MQE2E_OK, the callback's value, ::MQE2E_ERR_NOT_FOUND (no group), ::MQE2E_ERR_IO.
 */
int mqe2e_adb_members_list(mqe2e_adb *db, const char *group, mqe2e_adb_member_cb cb, void *user);

/**
 * @brief Call cb(group, sender_id, added_at) for every group a client is in, by name.
 * @return ::MQE2E_OK, the callback's value, ::MQE2E_ERR_IO.
 */
int mqe2e_adb_groups_of_client(mqe2e_adb *db, const char *client_id, mqe2e_adb_member_cb cb,
                               void *user);

/**
 * @brief As mqe2e_adb_members_list(), also passing the epoch that was current
 *        when the member joined (0: not known, or backdated with --history).
 */
int mqe2e_adb_members_list_ex(mqe2e_adb *db, const char *group, mqe2e_adb_membership_cb cb,
                              void *user);

/** @brief As mqe2e_adb_groups_of_client(), with the joined epoch (see _ex above). */
int mqe2e_adb_groups_of_client_ex(mqe2e_adb *db, const char *client_id,
                                  mqe2e_adb_membership_cb cb, void *user);

/**
 * @brief Was epoch @p epoch (retired at @p retired_at, 0 = current) a
 *        member's to read (backward secrecy: only epochs current while it was
 *        a member)? By epoch number when the joined epoch is known (an epoch
 *        retired in the very second the member joined is its when it was
 *        current at the join), else by second (retired after added_at).
 * @return 1 or 0.
 */
int mqe2e_adb_epoch_was_members(uint32_t epoch, uint64_t retired_at, uint64_t added_at,
                                uint32_t joined_epoch);

/* -------------------------------------------------------------- revocations */

/** @brief Current revocation-list version (0 before the first revocation). @return ::MQE2E_OK,
 * ::MQE2E_ERR_IO. */
int mqe2e_adb_revocation_version(uint64_t *out_version, mqe2e_adb *db);

/**
 * @brief Call cb for every revocation, oldest first, and report the list
 *        version read in the same snapshot.
 * @param out_version may be NULL.
 * @return ::MQE2E_OK, the callback's value, ::MQE2E_ERR_IO.
 */
int mqe2e_adb_revocations_list(uint64_t *out_version, mqe2e_adb *db, mqe2e_adb_revocation_cb cb,
                               void *user);

/**
 * @brief Call cb(group, sender_id, retired_at) for every sender id a revoked
 *        or replaced device held (ordered by group, then sender id); they go
 *        on the revocation list (docs/CREDENTIALS.md).
 * @return ::MQE2E_OK, the callback's value, ::MQE2E_ERR_IO.
 */
int mqe2e_adb_retired_senders_list(mqe2e_adb *db, mqe2e_adb_member_cb cb, void *user);

/* ---------------------------------------------------------------- operators */

/** @brief Register an operator's Ed25519 key. @return ::MQE2E_OK, ::MQE2E_ERR_EXISTS,
 * ::MQE2E_ERR_INVALID_ARG, ::MQE2E_ERR_IO. */
int mqe2e_adb_operator_add(mqe2e_adb *db, const char *name,
                           const uint8_t sign_public[MQE2E_ADB_PUBLIC_BYTES], uint64_t now);

/**
 * @brief Read an operator's key.
 * @param out_added_at may be NULL.
 * @return ::MQE2E_OK, ::MQE2E_ERR_NOT_FOUND, ::MQE2E_ERR_IO.
 */
int mqe2e_adb_operator_get(uint8_t out_sign_public[MQE2E_ADB_PUBLIC_BYTES], uint64_t *out_added_at,
                           mqe2e_adb *db, const char *name);

/** @brief Remove an operator. @return ::MQE2E_OK, ::MQE2E_ERR_NOT_FOUND, ::MQE2E_ERR_IO. */
int mqe2e_adb_operator_remove(mqe2e_adb *db, const char *name);

/**
 * @brief Record the nonce of a verified operator command; refuse a replay.
 * @param nonce ::MQE2E_ADB_NONCE_MIN..::MQE2E_ADB_NONCE_MAX bytes.
 * @return ::MQE2E_OK (first sighting, now stored); ::MQE2E_ERR_EXISTS (replay);
 *         ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_IO.
 */
int mqe2e_adb_op_nonce_check_and_store(mqe2e_adb *db, const uint8_t *nonce, size_t nonce_len,
                                       uint64_t now);

/**
 * @brief Forget nonces seen before `older_than`. Only safe together with a
 *        command freshness window: commands older than the window must be
 *        refused on their timestamp before their nonce is checked.
 * @param out_deleted may be NULL.
 * @return ::MQE2E_OK, ::MQE2E_ERR_IO.
 */
int mqe2e_adb_op_nonce_prune(uint64_t *out_deleted, mqe2e_adb *db, uint64_t older_than);

/* -------------------------------------------------------------------- audit */

/**
 * @brief Append an audit row. Never pass secrets: the row is stored in clear.
 * @param subject may be NULL.
 * @return ::MQE2E_OK, ::MQE2E_ERR_INVALID_ARG, ::MQE2E_ERR_TOO_LARGE, ::MQE2E_ERR_IO.
 */
int mqe2e_adb_audit_append(mqe2e_adb *db, uint64_t at, const char *actor, const char *action,
                           const char *subject);

/**
 * @brief Call cb for audit rows with id > after_id, oldest first.
 * @return ::MQE2E_OK, the callback's value, ::MQE2E_ERR_IO.
 */
int mqe2e_adb_audit_list(mqe2e_adb *db, int64_t after_id, mqe2e_adb_audit_cb cb, void *user);

/* ------------------------------------------------------------------- status */

/** @brief Fill the status counters, read in one snapshot. @return ::MQE2E_OK, ::MQE2E_ERR_IO. */
int mqe2e_adb_status_get(mqe2e_adb_status *out, mqe2e_adb *db, uint64_t now);

/* ---------------------------------------------------- pre-handshake checks */

/**
 * @brief Whether any token (used, expired or pending, until pruned) names
 *        @p client_id. One indexed read on a kept statement: cheap enough to
 *        run on every ENROLL frame before its handshake.
 * @return ::MQE2E_OK (some token), ::MQE2E_ERR_NOT_FOUND (none, or an invalid
 *         id), ::MQE2E_ERR_INVALID_ARG, ::MQE2E_ERR_IO.
 */
int mqe2e_adb_token_known_client(mqe2e_adb *db, const char *client_id);

/**
 * @brief Whether @p client_id is enrolled (active or revoked); same cost and
 *        codes as mqe2e_adb_token_known_client().
 */
int mqe2e_adb_client_known(mqe2e_adb *db, const char *client_id);

/**
 * @brief Open a savepoint inside a mqe2e_adb_tx_begin() transaction, so that
 *        one unit of several calls (one enrollment of a batch) can be undone
 *        alone.
 * @return ::MQE2E_OK, ::MQE2E_ERR_STATE (no transaction), ::MQE2E_ERR_IO.
 */
int mqe2e_adb_tx_savepoint(mqe2e_adb *db);

/**
 * @brief Close the savepoint of mqe2e_adb_tx_savepoint(): kept when @p keep
 *        is non-zero, undone otherwise. Durable only at mqe2e_adb_tx_commit().
 * @return ::MQE2E_OK, ::MQE2E_ERR_STATE, ::MQE2E_ERR_IO.
 */
int mqe2e_adb_tx_savepoint_end(mqe2e_adb *db, int keep);

/* ------------------------------------------------- for the store's own files */

struct store;

/**
 * @brief The open store (store.h), for the store's companion files
 *        (authority_tree_db.c) only: they run their portable statements
 *        inside the caller's transaction (mqe2e_adb_tx_begin()). Owned by
 *        @p db; valid until mqe2e_adb_close().
 */
struct store *mqe2e_adb_store(mqe2e_adb *db);

/**
 * @brief Seal a 32-byte secret under the database key, bound to @p ad (as
 *        every secret column). @p out is MQE2E_ADB_SEALED_BYTES, caller-owned.
 */
void mqe2e_adb_seal(const mqe2e_adb *db, uint8_t out[MQE2E_ADB_SEALED_BYTES],
                    const uint8_t secret[MQE2E_ADB_SECRET_BYTES], const uint8_t *ad, size_t ad_len);

/**
 * @brief Open a sealed column value into @p out (caller-owned; the caller
 *        wipes it; zeroed on failure).
 * @return ::MQE2E_OK or ::MQE2E_ERR_AUTH (wrong length, key, row or tampered).
 */
int mqe2e_adb_unseal(const mqe2e_adb *db, uint8_t out[MQE2E_ADB_SECRET_BYTES], const uint8_t *blob,
                     size_t blob_len, const uint8_t *ad, size_t ad_len);

#ifdef __cplusplus
}
#endif
#endif
