/**
 * @file keytree.h
 * @brief Logical key hierarchy (LKH) for large groups: O(log n) revocation.
 *
 * A pure, I/O-free module (docs/PROTOCOL.md §10 is the normative
 * specification, byte by byte). The authority keeps a complete binary tree
 * of 32-byte node keys of depth d (up to 2^d members); every member holds
 * the d + 1 keys on the path from its leaf to the root, and the group's
 * epoch secret is derived from the root key.
 *
 * - **Revocation** of one member is one TreeUpdate (kind remove): fresh
 *   random keys for every node on the member's path, each wrapped under the
 *   keys of that node's non-empty children (at most 2d - 1 wraps of 56
 *   bytes), signed once by the authority's Ed25519 key. A remaining member
 *   unwraps at most d keys (17 for 100,000 members); the revoked member
 *   holds none of the wrapping keys.
 * - **Join** is one TreeUpdate (kind join, no wraps): the keys on the new
 *   leaf's path are advanced by a one-way hash, so the joiner cannot read
 *   earlier epochs; the joiner gets its path in a TreePath sealed under its
 *   leaf key (611 bytes at d = 17).
 * - **Catch-up**: a member that missed updates gets one TreePath (the same
 *   message as a join) and continues from there.
 *
 * Secrets: node keys live in sodium_malloc() memory and are wiped on free;
 * every temporary is wiped. Messages are caller-owned byte buffers.
 */
#ifndef MQE2E_KEYTREE_H
#define MQE2E_KEYTREE_H

#include <stddef.h>
#include <stdint.h>

#include "mqe2e/export.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MQE2E_KEYTREE_KEY_BYTES 32U       /**< node, leaf and epoch key size */
#define MQE2E_KEYTREE_ID_BYTES 16U        /**< tree id size */
#define MQE2E_KEYTREE_MAX_DEPTH 20U       /**< at most 2^20 leaves */
#define MQE2E_KEYTREE_UPDATE_HEADER 49U   /**< TreeUpdate bytes before the wraps */
#define MQE2E_KEYTREE_WRAP_BYTES 56U      /**< one wrap: node, under, 32-byte key, 16-byte tag */
#define MQE2E_KEYTREE_SIG_BYTES 64U       /**< Ed25519 signature closing a TreeUpdate */
#define MQE2E_KEYTREE_PATH_HEADER 51U     /**< TreePath bytes before its ciphertext */

/** Largest TreeUpdate of a tree of depth @p d (a remove with 2d - 1 wraps). */
#define MQE2E_KEYTREE_UPDATE_MAX(d) \
    (MQE2E_KEYTREE_UPDATE_HEADER + (2U * (d)) * MQE2E_KEYTREE_WRAP_BYTES + MQE2E_KEYTREE_SIG_BYTES)
/** Size of the TreePath of a tree of depth @p d: header, d keys, tag. */
#define MQE2E_KEYTREE_PATH_BYTES(d) \
    (MQE2E_KEYTREE_PATH_HEADER + (d) * MQE2E_KEYTREE_KEY_BYTES + 16U)

/** TreeUpdate kinds (byte 1). */
typedef enum mqe2e_keytree_kind {
    MQE2E_KEYTREE_REMOVE = 1, /**< a member left: new path keys, wrapped */
    MQE2E_KEYTREE_JOIN = 2,   /**< a member joined: path keys advanced by hash */
} mqe2e_keytree_kind;

/** The authority's tree (opaque). */
typedef struct mqe2e_keytree mqe2e_keytree;
/** One member's state: its path keys (opaque). */
typedef struct mqe2e_keytree_member mqe2e_keytree_member;

/**
 * @brief A TreeUpdate whose signature verified: a view into the caller's
 *        buffer (valid while it is). Filled by mqe2e_keytree_update_open().
 */
typedef struct mqe2e_keytree_update {
    uint8_t tree_id[MQE2E_KEYTREE_ID_BYTES]; /**< which tree */
    uint8_t depth;                           /**< tree depth d */
    uint8_t kind;                            /**< ::mqe2e_keytree_kind */
    uint32_t from_epoch;                     /**< epoch the update applies to */
    uint32_t to_epoch;                       /**< from_epoch + 1 */
    uint32_t leaf;                           /**< the leaf removed or joined */
    uint32_t n_wraps;                        /**< wraps (0 for a join) */
    const uint8_t *header;                   /**< the 49 header bytes (in the AD of every wrap) */
    const uint8_t *wraps;                    /**< n_wraps × 56 bytes */
} mqe2e_keytree_update;

/* ------------------------------------------------------------ authority side */

/**
 * @brief Signing callback: write the Ed25519 detached signature of @p msg
 *        (@p msg_len bytes, borrowed for the call) into @p sig. Returns 0 on
 *        success, anything else on failure. Same shape as the authority's
 *        keystore signer (mqe2e_keystore_sign()).
 */
typedef int (*mqe2e_keytree_sign_fn)(void *ctx, uint8_t sig[64], const uint8_t *msg,
                                     size_t msg_len);

/**
 * @brief Create an empty tree of depth @p depth (capacity 2^depth members)
 *        at epoch 0, with a random tree id.
 * @param out   receives the tree; free with mqe2e_keytree_free().
 * @param depth 1..::MQE2E_KEYTREE_MAX_DEPTH (17 holds 131,072 members).
 * @return ::MQE2E_OK, ::MQE2E_ERR_INVALID_ARG, ::MQE2E_ERR_NOMEM.
 */
MQE2E_API int mqe2e_keytree_new(mqe2e_keytree **out, unsigned depth);

/** @brief Wipe and free a tree; NULL is a no-op. */
MQE2E_API void mqe2e_keytree_free(mqe2e_keytree *t);

/** @brief The tree's id. @return ::MQE2E_OK or ::MQE2E_ERR_INVALID_ARG. */
MQE2E_API int mqe2e_keytree_id(const mqe2e_keytree *t, uint8_t id[MQE2E_KEYTREE_ID_BYTES]);

/** @brief Current epoch (0 before the first join). */
MQE2E_API uint32_t mqe2e_keytree_epoch(const mqe2e_keytree *t);

/** @brief Members in the tree. */
MQE2E_API uint32_t mqe2e_keytree_members(const mqe2e_keytree *t);

/** @brief Depth d of the tree. */
MQE2E_API unsigned mqe2e_keytree_depth(const mqe2e_keytree *t);

/**
 * @brief Add a member at the lowest free leaf; the epoch advances by one.
 *
 * @param t        the tree.
 * @param leaf     out: the member's leaf (0..2^d - 1).
 * @param leaf_key out, caller buffer: the member's new random leaf key. The
 *                 caller delivers it to the member over a confidential
 *                 channel (e.g. the enrollment reply) and wipes its copy.
 * @param update   out, caller buffer: the signed join TreeUpdate for the
 *                 members already in the tree.
 * @param update_cap size of @p update (at least ::MQE2E_KEYTREE_UPDATE_HEADER + 64).
 * @param update_len out: its length.
 * @param sign_sk  the authority's Ed25519 secret key (64 bytes); only read.
 * @return ::MQE2E_OK, ::MQE2E_ERR_INVALID_ARG, ::MQE2E_ERR_EXHAUSTED (tree
 *         full, or the epoch counter would wrap), ::MQE2E_ERR_BUFFER_TOO_SMALL.
 *         On failure the tree is unchanged.
 */
MQE2E_API int mqe2e_keytree_add(mqe2e_keytree *t, uint32_t *leaf,
                                uint8_t leaf_key[MQE2E_KEYTREE_KEY_BYTES], uint8_t *update,
                                size_t update_cap, size_t *update_len, const uint8_t sign_sk[64]);

/**
 * @brief Remove the member at @p leaf; the epoch advances by one.
 *
 * Every key the member held is replaced by a fresh random key; the signed
 * remove TreeUpdate carries each new key wrapped under the keys of the
 * node's non-empty children.
 * @param t          the tree.
 * @param leaf       the member's leaf.
 * @param update     out, caller buffer: the signed remove TreeUpdate.
 * @param update_cap its size (::MQE2E_KEYTREE_UPDATE_MAX(depth) always suffices).
 * @param update_len out: its length.
 * @param sign_sk    the authority's Ed25519 secret key; only read.
 * @return ::MQE2E_OK, ::MQE2E_ERR_INVALID_ARG, ::MQE2E_ERR_NOT_FOUND (leaf
 *         empty), ::MQE2E_ERR_EXHAUSTED (epoch counter), ::MQE2E_ERR_BUFFER_TOO_SMALL.
 *         On failure the tree is unchanged.
 */
MQE2E_API int mqe2e_keytree_remove(mqe2e_keytree *t, uint32_t leaf, uint8_t *update,
                                   size_t update_cap, size_t *update_len,
                                   const uint8_t sign_sk[64]);

/**
 * @brief mqe2e_keytree_add() with a signing callback instead of a raw key
 *        (an authority whose key stays in its keystore). The message is
 *        signed before the tree changes: a failed signature
 *        (::MQE2E_ERR_CRYPTO) leaves the tree unchanged.
 * @param t, leaf, leaf_key, update, update_cap, update_len as mqe2e_keytree_add().
 * @param sign     the signer; required.
 * @param sign_ctx passed back to @p sign.
 * @return as mqe2e_keytree_add(), plus ::MQE2E_ERR_CRYPTO.
 */
MQE2E_API int mqe2e_keytree_add_cb(mqe2e_keytree *t, uint32_t *leaf,
                                   uint8_t leaf_key[MQE2E_KEYTREE_KEY_BYTES], uint8_t *update,
                                   size_t update_cap, size_t *update_len,
                                   mqe2e_keytree_sign_fn sign, void *sign_ctx);

/**
 * @brief mqe2e_keytree_remove() with a signing callback; the new keys are
 *        staged and committed only after the signature: on failure
 *        (::MQE2E_ERR_CRYPTO) the tree is unchanged.
 * @param t, leaf, update, update_cap, update_len as mqe2e_keytree_remove().
 * @param sign     the signer; required.
 * @param sign_ctx passed back to @p sign.
 * @return as mqe2e_keytree_remove(), plus ::MQE2E_ERR_CRYPTO.
 */
MQE2E_API int mqe2e_keytree_remove_cb(mqe2e_keytree *t, uint32_t leaf, uint8_t *update,
                                      size_t update_cap, size_t *update_len,
                                      mqe2e_keytree_sign_fn sign, void *sign_ctx);

/* Persistence (the authority's store): a tree is its id, depth, epoch, the
 * occupied leaves and the keys of the nodes with a member below them. Keys
 * of empty subtrees were never handed out; a restored tree draws them
 * afresh. After an add or remove of leaf l, the nodes whose key or
 * occupancy changed are exactly (2^d + l) >> h for h = 0 .. d. */

/**
 * @brief An empty tree with a given id, depth and epoch (restoring a stored
 *        tree): every node key random, no member.
 * @param out   receives the tree; free with mqe2e_keytree_free().
 * @param id    the stored tree id; copied.
 * @param depth the stored depth (1..::MQE2E_KEYTREE_MAX_DEPTH).
 * @param epoch the stored epoch.
 * @return ::MQE2E_OK, ::MQE2E_ERR_INVALID_ARG, ::MQE2E_ERR_NOMEM, ::MQE2E_ERR_CRYPTO.
 */
MQE2E_API int mqe2e_keytree_restore(mqe2e_keytree **out,
                                    const uint8_t id[MQE2E_KEYTREE_ID_BYTES], unsigned depth,
                                    uint32_t epoch);

/**
 * @brief Restoring: mark @p leaf occupied.
 * @return ::MQE2E_OK, ::MQE2E_ERR_INVALID_ARG (out of range), ::MQE2E_ERR_EXISTS.
 */
MQE2E_API int mqe2e_keytree_restore_leaf(mqe2e_keytree *t, uint32_t leaf);

/** @brief Members below node @p node (0 for an empty subtree or a node out of range). */
MQE2E_API uint32_t mqe2e_keytree_node_members(const mqe2e_keytree *t, uint32_t node);

/**
 * @brief Copy the key of node @p node (1 .. 2^(d+1) - 1) into @p out
 *        (caller buffer; the caller wipes it).
 * @return ::MQE2E_OK or ::MQE2E_ERR_INVALID_ARG.
 */
MQE2E_API int mqe2e_keytree_node_key(const mqe2e_keytree *t, uint32_t node,
                                     uint8_t out[MQE2E_KEYTREE_KEY_BYTES]);

/**
 * @brief Restoring: set the key of node @p node from @p key (only read; the
 *        caller wipes its copy).
 * @return ::MQE2E_OK or ::MQE2E_ERR_INVALID_ARG.
 */
MQE2E_API int mqe2e_keytree_set_node_key(mqe2e_keytree *t, uint32_t node,
                                         const uint8_t key[MQE2E_KEYTREE_KEY_BYTES]);

/**
 * @brief The TreePath of the member at @p leaf at the current epoch: its d
 *        path keys above the leaf, sealed under its leaf key (join and
 *        catch-up; no signature needed, see PROTOCOL.md §10.5).
 * @param t       the tree.
 * @param leaf    the member's leaf.
 * @param out     caller buffer.
 * @param out_cap its size (at least ::MQE2E_KEYTREE_PATH_BYTES(depth)).
 * @param out_len out: the length written.
 * @return ::MQE2E_OK, ::MQE2E_ERR_INVALID_ARG, ::MQE2E_ERR_NOT_FOUND,
 *         ::MQE2E_ERR_BUFFER_TOO_SMALL.
 */
MQE2E_API int mqe2e_keytree_path(const mqe2e_keytree *t, uint32_t leaf, uint8_t *out,
                                 size_t out_cap, size_t *out_len);

/**
 * @brief The group's epoch secret at the current epoch (PROTOCOL.md §10.3).
 * @param t   the tree.
 * @param out caller buffer; the caller wipes it.
 * @return ::MQE2E_OK, ::MQE2E_ERR_INVALID_ARG, ::MQE2E_ERR_STATE (no member yet).
 */
MQE2E_API int mqe2e_keytree_epoch_secret(const mqe2e_keytree *t,
                                         uint8_t out[MQE2E_KEYTREE_KEY_BYTES]);

/* --------------------------------------------------------------- member side */

/**
 * @brief Verify and parse a TreeUpdate (strict: canonical layout, sizes,
 *        wrap positions on the leaf's path; then the Ed25519 signature).
 *
 * Verify once and apply to many members (a gateway), or once per device.
 * @param u     out: a view into @p msg.
 * @param msg   the message; only read; must outlive @p u.
 * @param len   its length.
 * @param authority_sign_pk the pinned authority Ed25519 public key.
 * @return ::MQE2E_OK, ::MQE2E_ERR_INVALID_ARG, ::MQE2E_ERR_DECODE (malformed),
 *         ::MQE2E_ERR_SUITE (unknown version or kind), ::MQE2E_ERR_AUTH (bad signature).
 */
MQE2E_API int mqe2e_keytree_update_open(mqe2e_keytree_update *u, const uint8_t *msg, size_t len,
                                        const uint8_t authority_sign_pk[32]);

/**
 * @brief A member's state from a TreePath sealed under its leaf key.
 * @param out      receives the state; free with mqe2e_keytree_member_free().
 * @param tree_id  the tree the member expects (from its enrollment).
 * @param leaf_key its leaf key; copied into guarded memory; the caller wipes its copy.
 * @param path     the TreePath; only read.
 * @param path_len its length.
 * @return ::MQE2E_OK, ::MQE2E_ERR_INVALID_ARG, ::MQE2E_ERR_DECODE,
 *         ::MQE2E_ERR_SUITE, ::MQE2E_ERR_AUTH (other tree, leaf key or any
 *         changed byte), ::MQE2E_ERR_NOMEM.
 */
MQE2E_API int mqe2e_keytree_member_new(mqe2e_keytree_member **out,
                                       const uint8_t tree_id[MQE2E_KEYTREE_ID_BYTES],
                                       const uint8_t leaf_key[MQE2E_KEYTREE_KEY_BYTES],
                                       const uint8_t *path, size_t path_len);

/** @brief Wipe and free a member state; NULL is a no-op. */
MQE2E_API void mqe2e_keytree_member_free(mqe2e_keytree_member *m);

/**
 * @brief Apply a verified TreeUpdate: the member moves to its to_epoch.
 *
 * All or nothing: on any failure the state is unchanged (except for
 * ::MQE2E_ERR_TREE_REVOKED, which wipes it).
 * @param m       the member.
 * @param u       an update from mqe2e_keytree_update_open().
 * @param unwraps out, may be NULL: symmetric unwraps done (≤ depth).
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG; ::MQE2E_ERR_NOT_FOUND (another
 *         tree); ::MQE2E_ERR_REPLAY (to_epoch not above the member's: replayed
 *         or reordered old update); ::MQE2E_ERR_TREE_GAP (from_epoch above the
 *         member's: updates were missed, catch up with a TreePath);
 *         ::MQE2E_ERR_AUTH (a wrap it needs does not open: a forged or
 *         inconsistent update); ::MQE2E_ERR_TREE_REVOKED (the update removes
 *         this member).
 */
MQE2E_API int mqe2e_keytree_member_apply(mqe2e_keytree_member *m, const mqe2e_keytree_update *u,
                                         unsigned *unwraps);

/**
 * @brief Catch up: replace the path keys from a newer TreePath.
 * @return as mqe2e_keytree_member_new(), plus ::MQE2E_ERR_REPLAY when its
 *         epoch is not above the member's (keys never go backward) and
 *         ::MQE2E_ERR_STATE for a revoked member.
 */
MQE2E_API int mqe2e_keytree_member_catch_up(mqe2e_keytree_member *m, const uint8_t *path,
                                            size_t path_len);

/** @brief The member's epoch. */
MQE2E_API uint32_t mqe2e_keytree_member_epoch(const mqe2e_keytree_member *m);

/** @brief The member's leaf. */
MQE2E_API uint32_t mqe2e_keytree_member_leaf(const mqe2e_keytree_member *m);

/**
 * @brief The epoch secret at the member's epoch (equal to the authority's).
 * @param m   the member.
 * @param out caller buffer; the caller wipes it.
 * @return ::MQE2E_OK, ::MQE2E_ERR_INVALID_ARG, ::MQE2E_ERR_STATE (revoked).
 */
MQE2E_API int mqe2e_keytree_member_epoch_secret(const mqe2e_keytree_member *m,
                                                uint8_t out[MQE2E_KEYTREE_KEY_BYTES]);

/* ------------------------------------------------------- many members at once */

/**
 * A **pool** holds many members of one tree (a gateway, a simulation) in one
 * guarded allocation: mqe2e_keytree_member_new() takes its own
 * sodium_malloc() region per member, whose guard pages and mappings limit a
 * process to some tens of thousands of members. Every pool member behaves
 * exactly as a mqe2e_keytree_member (same checks, same results).
 */
typedef struct mqe2e_keytree_pool mqe2e_keytree_pool;

/**
 * @brief An empty pool for up to @p capacity members of the tree @p tree_id
 *        of depth @p depth (capacity × (depth + 1) × 32 bytes of guarded memory).
 * @param out receives the pool; free with mqe2e_keytree_pool_free().
 * @param tree_id the tree; copied. @param depth its depth. @param capacity members.
 * @return ::MQE2E_OK, ::MQE2E_ERR_INVALID_ARG, ::MQE2E_ERR_NOMEM.
 */
MQE2E_API int mqe2e_keytree_pool_new(mqe2e_keytree_pool **out,
                                     const uint8_t tree_id[MQE2E_KEYTREE_ID_BYTES],
                                     unsigned depth, uint32_t capacity);

/** @brief Wipe and free a pool; NULL is a no-op. */
MQE2E_API void mqe2e_keytree_pool_free(mqe2e_keytree_pool *p);

/**
 * @brief Add a member from its leaf key and TreePath (as mqe2e_keytree_member_new()).
 * @param p the pool. @param index out: the member's index in the pool.
 * @param leaf_key copied into the pool; the caller wipes its copy.
 * @param path the TreePath; only read. @param path_len its length.
 * @return as mqe2e_keytree_member_new(), plus ::MQE2E_ERR_EXHAUSTED (pool full)
 *         and ::MQE2E_ERR_AUTH for a path of another depth.
 */
MQE2E_API int mqe2e_keytree_pool_add(mqe2e_keytree_pool *p, uint32_t *index,
                                     const uint8_t leaf_key[MQE2E_KEYTREE_KEY_BYTES],
                                     const uint8_t *path, size_t path_len);

/**
 * @brief mqe2e_keytree_member_apply() for the pool member @p index.
 * @param p the pool. @param index a member's index. @param u a verified update.
 * @param unwraps out, may be NULL.
 * @return as mqe2e_keytree_member_apply(); ::MQE2E_ERR_INVALID_ARG for an unknown index.
 */
MQE2E_API int mqe2e_keytree_pool_apply(mqe2e_keytree_pool *p, uint32_t index,
                                       const mqe2e_keytree_update *u, unsigned *unwraps);

/**
 * @brief mqe2e_keytree_member_epoch_secret() for the pool member @p index.
 * @param p the pool. @param index a member's index. @param out caller buffer; the caller wipes it.
 * @return as mqe2e_keytree_member_epoch_secret(); ::MQE2E_ERR_INVALID_ARG for an unknown index.
 */
MQE2E_API int mqe2e_keytree_pool_epoch_secret(const mqe2e_keytree_pool *p, uint32_t index,
                                              uint8_t out[MQE2E_KEYTREE_KEY_BYTES]);

/** @brief The epoch of pool member @p index (0 for an unknown index). */
MQE2E_API uint32_t mqe2e_keytree_pool_epoch(const mqe2e_keytree_pool *p, uint32_t index);

#ifdef __cplusplus
}
#endif

#endif
