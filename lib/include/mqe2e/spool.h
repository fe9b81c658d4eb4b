/**
 * @file spool.h
 * @brief A bounded, durable store for held QoS >= 1 messages that did not fit
 *        in the device session's in-memory hold queue (docs/PROTOCOL.md 9.4).
 *
 * MQTT has already acknowledged a QoS 1 or 2 message when the session sees
 * it (Paho sends the PUBACK before messageArrived runs), so a held message
 * that is evicted or refused for lack of room would be lost for good. The
 * session writes such a message to its spool instead and re-examines the
 * spooled entries whenever keys arrive, exactly like held ones: delivered in
 * arrival order once their key is known, or dropped with their reason.
 *
 * A spool is a small vtable (like ::mqe2e_storage) so that bindings and tests
 * can bring their own; two built-in ones: a directory of files (one per
 * entry, written atomically: temp file, fsync, rename, fsync of the
 * directory) and memory. Entries hold envelopes (ciphertext), topics, flags
 * and MQTT v5 properties: nothing secret, nothing wiped.
 *
 * Ownership: the caller creates a spool, hands a pointer to it in
 * ::mqe2e_session_options (borrowed: it must outlive the session) and frees
 * it with mqe2e_spool_destroy() afterwards. One spool serves one session at
 * a time (the file spool of a keystore sits next to it and is protected by
 * the keystore's lock). Not thread-safe.
 */
#ifndef MQE2E_SPOOL_H
#define MQE2E_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "mqe2e/export.h"
#include "mqe2e/holdq.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Default most entries of a spool (used by the Paho fronts). */
#define MQE2E_SPOOL_DEFAULT_COUNT 4096U
/** Default most bytes of a spool, envelope plus topic plus properties: 16 MiB. */
#define MQE2E_SPOOL_DEFAULT_BYTES (16U << 20)
/** Appended to the keystore file's real path to name its spool directory. */
#define MQE2E_SPOOL_SUFFIX ".spool"

/**
 * A spool backend. Entries are ::mqe2e_held items (topic, envelope, tag with
 * QoS/retain/dup, arrival time, serialised properties in meta); each gets an
 * id, increasing in the order they were put (ids start at 1 and are never
 * reused while entries remain).
 */
typedef struct mqe2e_spool {
    /**
     * Store a copy of @p e durably before returning.
     * @return MQE2E_OK (*id set), MQE2E_ERR_EXHAUSTED (count or byte quota
     *         reached), MQE2E_ERR_TOO_LARGE (alone over the byte quota),
     *         MQE2E_ERR_IO, MQE2E_ERR_NOMEM, MQE2E_ERR_INVALID_ARG.
     */
    int (*put)(void *ctx, const mqe2e_held *e, uint64_t *id);
    /**
     * The oldest entry with an id greater than @p after.
     * @return MQE2E_OK (*id and *out set; the caller frees *out with
     *         mqe2e_held_free()), MQE2E_ERR_NOT_FOUND (none),
     *         MQE2E_ERR_DECODE (the entry *id is unreadable: *out NULL; the
     *         caller removes it), MQE2E_ERR_IO, MQE2E_ERR_NOMEM.
     */
    int (*next)(void *ctx, uint64_t after, uint64_t *id, mqe2e_held **out);
    /** Remove entry @p id (durably gone after a crash is not required: an
     *  entry seen again is delivered again, as MQTT QoS 1 may).
     *  @return MQE2E_OK, MQE2E_ERR_NOT_FOUND, MQE2E_ERR_IO. */
    int (*remove)(void *ctx, uint64_t id);
    /** Number of entries stored. */
    size_t (*count)(void *ctx);
    /** Release ctx (entries stay stored for a file spool). May be NULL. */
    void (*destroy)(void *ctx);
    void *ctx; /**< backend state passed to every callback; owned by the backend */
} mqe2e_spool;

/**
 * @brief An in-memory spool (tests, bindings without a disk). It survives
 *        the session that used it (not the process): a new session given the
 *        same spool loads its entries.
 * @param out       filled; free with mqe2e_spool_destroy().
 * @param max_count most entries (0 = ::MQE2E_SPOOL_DEFAULT_COUNT).
 * @param max_bytes most bytes (0 = ::MQE2E_SPOOL_DEFAULT_BYTES).
 * @return ::MQE2E_OK, ::MQE2E_ERR_INVALID_ARG, ::MQE2E_ERR_NOMEM.
 */
MQE2E_API int mqe2e_spool_memory(mqe2e_spool *out, size_t max_count, size_t max_bytes);

/**
 * @brief A spool in directory @p dir: created 0700 by the first entry if
 *        missing (an existing one must be a directory owned by this user;
 *        its mode is set to 0700), one file per entry ("<16 hex digits of the id>.msg", 0600),
 *        each written to a temporary file, fsync'd, renamed into place and
 *        the directory fsync'd; removed once handled. Entries already there
 *        (a process that stopped or crashed) are loaded in id order;
 *        leftover temporary files are deleted. Not locked by itself: use
 *        one directory per keystore (mqe2e_spool_file_for_keystore()), whose
 *        lock serialises its users.
 * @param out       filled; free with mqe2e_spool_destroy() (files stay).
 * @param dir       directory path; copied.
 * @param max_count most entries (0 = ::MQE2E_SPOOL_DEFAULT_COUNT).
 * @param max_bytes most bytes of entries (0 = ::MQE2E_SPOOL_DEFAULT_BYTES).
 * @return ::MQE2E_OK, ::MQE2E_ERR_INVALID_ARG, ::MQE2E_ERR_NOMEM,
 *         ::MQE2E_ERR_IO (cannot create or read the directory, not a
 *         directory, or owned by another user).
 */
MQE2E_API int mqe2e_spool_file(mqe2e_spool *out, const char *dir, size_t max_count,
                               size_t max_bytes);

/**
 * @brief mqe2e_spool_file() on "<real path of @p keystore_path>.spool": the
 *        spool of a file keystore, next to its ".lock" file (the keystore
 *        must be open, holding that lock, while the spool is used).
 * @param out           filled; free with mqe2e_spool_destroy().
 * @param keystore_path the keystore file's path (symlinks resolved).
 * @param max_count     as mqe2e_spool_file().
 * @param max_bytes     as mqe2e_spool_file().
 * @return as mqe2e_spool_file(); ::MQE2E_ERR_IO also when the keystore file
 *         does not exist.
 */
MQE2E_API int mqe2e_spool_file_for_keystore(mqe2e_spool *out, const char *keystore_path,
                                            size_t max_count, size_t max_bytes);

/** @brief Free a spool's state (files stay). NULL or an empty spool is a no-op. */
MQE2E_API void mqe2e_spool_destroy(mqe2e_spool *s);

#ifdef __cplusplus
}
#endif
#endif
