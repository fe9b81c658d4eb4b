/**
 * @file authority_rules.h
 * @brief The authority's storage rules that do not depend on a database:
 *        sealing of secret columns and the numbering of epochs and sender
 *        ids. No SQL, no MQTT, no clock.
 *
 * Every store implementation (authority_db.c for SQLite) applies these, so a
 * second store does not re-implement what nonce uniqueness and the secrecy
 * of stored keys depend on:
 *
 * - **Sealing.** A secret column (token, group epoch secret, key check) holds
 *   nonce(24) || XChaCha20-Poly1305(db key, secret, AD) || tag(16), 72 bytes.
 *   The associated data names the row: table name, NUL, then the row's key
 *   (token id; group name, NUL, epoch big-endian; meta key, NUL), so a sealed
 *   value copied to another row or table does not open.
 * - **Epochs** of a group count up from 1 by one per rotation and are never
 *   reused; after 2^32 - 1 the group is exhausted.
 * - **Sender ids** of a group are taken from a counter that only grows
 *   (from 1), never from the ids of present members, and fit 32 bits.
 */
#ifndef MQE2E_AUTHORITY_RULES_H
#define MQE2E_AUTHORITY_RULES_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Secret and key sizes of the store. */
#define AUTHORITY_SECRET_BYTES 32U
/** Size of a sealed column value: nonce || ciphertext || tag. */
#define AUTHORITY_SEALED_BYTES (24U + AUTHORITY_SECRET_BYTES + 16U)
/** Longest associated data of a sealed column ("tree_nodes" NUL name NUL tree id node). */
#define AUTHORITY_AD_MAX (16U + 256U + 1U + 16U + 4U)

/**
 * @brief Seal @p secret under @p key, bound to @p ad (a fresh random nonce).
 * @param out AUTHORITY_SEALED_BYTES, caller-owned (not secret once sealed).
 * @param key the database key, 32 bytes, only read.
 * @param secret AUTHORITY_SECRET_BYTES, only read; the caller wipes it.
 */
void authority_seal(uint8_t out[AUTHORITY_SEALED_BYTES], const uint8_t key[32],
                    const uint8_t secret[AUTHORITY_SECRET_BYTES], const uint8_t *ad, size_t ad_len);

/**
 * @brief Open a sealed column value.
 * @param out AUTHORITY_SECRET_BYTES, caller-owned; the caller wipes it.
 *        Zeroed on failure.
 * @param sealed the stored value (untrusted), @p sealed_len bytes.
 * @return MQE2E_OK; MQE2E_ERR_AUTH (wrong length, key, row or table, or tampered).
 */
int authority_unseal(uint8_t out[AUTHORITY_SECRET_BYTES], const uint8_t key[32],
                     const uint8_t *sealed, size_t sealed_len, const uint8_t *ad, size_t ad_len);

/** @brief AD of a token's secret: "tokens" NUL token_id(16). @return its length. */
size_t authority_ad_token(uint8_t ad[AUTHORITY_AD_MAX], const uint8_t token_id[16]);

/**
 * @brief AD of a group epoch's secret: "group_epochs" NUL group NUL epoch(4, big-endian).
 * @param group at most 255 bytes (the stores' name limit); longer names are cut.
 * @return its length.
 */
size_t authority_ad_epoch(uint8_t ad[AUTHORITY_AD_MAX], const char *group, uint32_t epoch);

/**
 * @brief AD of a key-tree node key: "tree_nodes" NUL group NUL tree_id(16) node(4, big-endian).
 * @return its length.
 */
size_t authority_ad_tree_node(uint8_t ad[AUTHORITY_AD_MAX], const char *group,
                              const uint8_t tree_id[16], uint32_t node);

/** @brief AD of a sealed meta value: "meta" NUL key NUL (key at most 255 bytes). @return its
 * length. */
size_t authority_ad_meta(uint8_t ad[AUTHORITY_AD_MAX], const char *key);

/**
 * @brief The epoch after @p current.
 * @return MQE2E_OK with *next = current + 1; MQE2E_ERR_EXHAUSTED when no
 *         32-bit epoch is left; MQE2E_ERR_INVALID_ARG for current 0 (a group
 *         starts at epoch 1).
 */
int authority_next_epoch(uint32_t *next, uint64_t current);

/**
 * @brief Check a sender id taken from a group's counter.
 * @return MQE2E_OK; MQE2E_ERR_EXHAUSTED above 2^32 - 1; MQE2E_ERR_IO for 0
 *         (the counter starts at 1: a 0 means a damaged store).
 */
int authority_sender_id_check(uint64_t taken);

#ifdef __cplusplus
}
#endif
#endif
