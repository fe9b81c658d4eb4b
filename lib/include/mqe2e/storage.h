/**
 * @file storage.h
 * @brief Where a keystore keeps its serialized state: a small backend interface
 *        plus the two built-in backends (encrypted file, memory).
 *
 * The keystore hands a backend its whole state as one serialized blob, which
 * contains secrets. A backend must (a) keep it confidential at rest,
 * (b) replace the previous blob atomically and durably before store() returns:
 * after a crash, load() returns either the old or the new blob, never a mix,
 * and (c) serve one keystore handle at a time: while a backend object lives,
 * no other backend object (in this or any process) may load or store the same
 * state. The built-in file backend enforces (c) with a lock and refuses a
 * second one with ::MQE2E_ERR_LOCKED; a user-supplied backend must do the
 * same (or be the only path to its state). Nonces stay unique even where (c)
 * fails (each open draws a fresh sender instance, docs/PROTOCOL.md 2.4), but
 * two writers overwrite each other's sequence reservations and replay
 * checkpoints, and receivers then drop messages as replays.
 * A secure element or HSM backend implements the same three calls.
 */
#ifndef MQE2E_STORAGE_H
#define MQE2E_STORAGE_H

#include <stddef.h>
#include <stdint.h>

#include "mqe2e/export.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MQE2E_STORAGE_KEY_BYTES 32U /**< raw key for the file backend */
/** Appended to the keystore file's real path to name its lock file. */
#define MQE2E_STORAGE_LOCK_SUFFIX ".lock"

/** A storage backend (a small vtable). */
typedef struct mqe2e_storage {
    /**
     * Load the last stored blob. On success *data is a buffer allocated with
     * malloc() that the caller wipes and free()s.
     * @return MQE2E_OK, MQE2E_ERR_NOT_FOUND (nothing stored yet), MQE2E_ERR_AUTH
     *         (wrong key or tampered), MQE2E_ERR_IO, MQE2E_ERR_DECODE.
     */
    int (*load)(void *ctx, uint8_t **data, size_t *len);
    /** Atomically and durably replace the stored blob. Only reads @p data. */
    int (*store)(void *ctx, const uint8_t *data, size_t len);
    /** Release ctx, wiping any key material. May be NULL. */
    void (*destroy)(void *ctx);
    void *ctx; /**< backend state passed to every callback; owned by the backend */
} mqe2e_storage;

/**
 * @brief Encrypted-file backend keyed by a passphrase.
 *
 * The file key is Argon2id(passphrase, per-file salt) (libsodium
 * crypto_pwhash; a new file gets 2 passes and 64 MiB unless
 * mqe2e_storage_file_set_kdf() chose otherwise, an existing file the limits in
 * its header); the blob is sealed with
 * XChaCha20-Poly1305 under a fresh nonce on each write, and replaced by
 * write-to-temp, fsync, rename, fsync(directory).
 *
 * **One open at a time.** The path is resolved first (every symlink, so the
 * file itself is rewritten, never the link) and the backend then holds an
 * exclusive flock() on "<real path>.lock" until the keystore that owns it is
 * closed (or the backend is destroyed). A second backend on the same file,
 * through any path, from this or another process, fails here with
 * ::MQE2E_ERR_LOCKED; mqe2e_storage_file_lock_holder() tells who holds it.
 * The lock dies with its process (no stale locks after a crash). flock() is
 * not reliable on every network file system: keep keystores on local disks.
 * @param out        filled; pass it to mqe2e_keystore_create/open, which own it.
 * @param path       file path (it need not exist yet; its directory must); copied.
 * @param passphrase only read; the caller wipes it. Must not be empty.
 * @param passphrase_len length of @p passphrase.
 * @return ::MQE2E_OK, ::MQE2E_ERR_INVALID_ARG, ::MQE2E_ERR_NOMEM,
 *         ::MQE2E_ERR_LOCKED (open elsewhere), ::MQE2E_ERR_IO (the directory
 *         does not exist, a dangling symlink, not a regular file, or the lock
 *         file cannot be created).
 */
MQE2E_API int mqe2e_storage_file_passphrase(mqe2e_storage *out, const char *path,
                                            const char *passphrase, size_t passphrase_len);

/** Argon2id passes of a new passphrase keystore file by default (libsodium INTERACTIVE). */
#define MQE2E_KDF_OPSLIMIT_DEFAULT 2U
/** Argon2id memory of a new passphrase keystore file by default: 64 MiB (libsodium INTERACTIVE). */
#define MQE2E_KDF_MEMLIMIT_DEFAULT (64U << 20)
/** The documented choice for small devices: 8 MiB, 5 passes (docs/KEYSTORE.md). */
#define MQE2E_KDF_OPSLIMIT_SMALL 5U
/** Memory of the small-device choice: 8 MiB. */
#define MQE2E_KDF_MEMLIMIT_SMALL (8U << 20)
/** Floor: never less memory than this (8 MiB)... */
#define MQE2E_KDF_MEMLIMIT_FLOOR (8U << 20)
/** ...and passes x memory at least this (40 MiB-passes; docs/KEYSTORE.md). */
#define MQE2E_KDF_COST_FLOOR (40ULL << 20)
/** Ceiling on passes a keystore file may ask for (a hostile file must not choose our cost). */
#define MQE2E_KDF_OPSLIMIT_MAX 16U
/** Ceiling on memory a keystore file may ask for: 1 GiB. */
#define MQE2E_KDF_MEMLIMIT_MAX (1U << 30)

/**
 * @brief Choose the Argon2id limits a passphrase file backend uses when it
 *        creates its file.
 *
 * Call it after mqe2e_storage_file_passphrase() and before the storage is
 * handed to mqe2e_keystore_create(). The limits are written into the file's
 * header (docs/KEYSTORE.md, "File format"), so every later open derives the
 * key with them; an existing file always keeps the limits in its own header
 * (files created before this call existed keep 2 passes, 64 MiB). Limits
 * below the floor are refused: memlimit < ::MQE2E_KDF_MEMLIMIT_FLOOR, or
 * opslimit x memlimit < ::MQE2E_KDF_COST_FLOOR, or above the ceilings.
 * @param st       a backend from mqe2e_storage_file_passphrase(), not yet used.
 * @param opslimit Argon2id passes (1..::MQE2E_KDF_OPSLIMIT_MAX).
 * @param memlimit Argon2id memory in bytes (floor..::MQE2E_KDF_MEMLIMIT_MAX).
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG for a NULL or other kind of
 *         backend, or limits outside the floor and ceilings.
 */
MQE2E_API int mqe2e_storage_file_set_kdf(mqe2e_storage *st, uint64_t opslimit, uint64_t memlimit);

/**
 * @brief Encrypted-file backend keyed by a 32-byte raw key (e.g. from a key file).
 *
 * Resolves and locks the path exactly as mqe2e_storage_file_passphrase().
 * @param out  filled; pass it to mqe2e_keystore_create/open, which own it.
 * @param path file path; copied.
 * @param key only read; copied into guarded memory; the caller wipes its copy.
 * @return as mqe2e_storage_file_passphrase().
 */
MQE2E_API int mqe2e_storage_file_key(mqe2e_storage *out, const char *path,
                                     const uint8_t key[MQE2E_STORAGE_KEY_BYTES]);

/**
 * @brief Who holds the lock of a keystore file (for error messages).
 *
 * Reads what the holder wrote into the lock file: its process id and the path
 * it opened the keystore through. The answer may be stale (the holder may
 * have exited since); it is meant for telling the user, never for deciding.
 * @param path      keystore path, resolved as by the file backends.
 * @param pid       out: the holder's process id.
 * @param opened_as out, caller buffer of @p cap bytes: the holder's path
 *                  (truncated, NUL-terminated); may be NULL when cap is 0.
 * @param cap       size of @p opened_as.
 * @return ::MQE2E_OK, ::MQE2E_ERR_NOT_FOUND (no lock file, or nothing
 *         written in it), ::MQE2E_ERR_IO, ::MQE2E_ERR_INVALID_ARG.
 */
MQE2E_API int mqe2e_storage_file_lock_holder(const char *path, long *pid, char *opened_as,
                                             size_t cap);

/**
 * @brief Read a key file: exactly 32 raw bytes, or 64 hex digits (optional
 *        trailing newline). Refuses files readable by group or others.
 * @param key  out, caller-owned (wipe it).
 * @param path key file path.
 * @return ::MQE2E_OK, ::MQE2E_ERR_IO, ::MQE2E_ERR_DECODE, ::MQE2E_ERR_POLICY (permissions).
 */
MQE2E_API int mqe2e_storage_read_key_file(uint8_t key[MQE2E_STORAGE_KEY_BYTES], const char *path);

/** @brief In-memory backend (tests, ephemeral clients); the blob lives in sodium_malloc memory. */
MQE2E_API int mqe2e_storage_memory(mqe2e_storage *out);

/**
 * @brief Seal a blob with a passphrase into a self-describing buffer
 *        (same format as the file backend). Used for exported group bundles.
 * @param out  *out is malloc()ed; the caller free()s it (it holds no secret in clear).
 * @param out_len receives the length of *out.
 * @param data the blob to seal; only read.
 * @param len  length of @p data.
 * @param passphrase only read; the caller wipes it. Must not be empty.
 * @param passphrase_len length of @p passphrase.
 */
MQE2E_API int mqe2e_passphrase_seal(uint8_t **out, size_t *out_len, const uint8_t *data,
                                    size_t len, const char *passphrase, size_t passphrase_len);

/**
 * @brief Open what mqe2e_passphrase_seal() made.
 * @param out *out is malloc()ed and holds secrets: the caller wipes and free()s it.
 * @param out_len receives the length of *out.
 * @param sealed bytes from mqe2e_passphrase_seal() (untrusted).
 * @param sealed_len length of @p sealed.
 * @param passphrase only read; the caller wipes it.
 * @param passphrase_len length of @p passphrase.
 * @return ::MQE2E_OK, ::MQE2E_ERR_DECODE, ::MQE2E_ERR_AUTH (wrong passphrase or tampered).
 */
MQE2E_API int mqe2e_passphrase_open(uint8_t **out, size_t *out_len, const uint8_t *sealed,
                                    size_t sealed_len, const char *passphrase,
                                    size_t passphrase_len);

#ifdef __cplusplus
}
#endif
#endif
