/*
 * The key tree (LKH): authority side and member side, PROTOCOL.md §10.
 *
 * Nodes are numbered as in a binary heap: the root is 1, node n has the
 * children 2n and 2n + 1, leaf l of a tree of depth d is node 2^d + l, and
 * the ancestor at height h of node x is x >> h. Every message layout and
 * derivation below is the one §10 specifies.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "mqe2e/control.h"
#include "mqe2e/error.h"
#include "mqe2e/keytree.h"

#define KB MQE2E_KEYTREE_KEY_BYTES
#define VERSION 1U
#define KIND_PATH 3U
#define HDR MQE2E_KEYTREE_UPDATE_HEADER
#define WRAP MQE2E_KEYTREE_WRAP_BYTES
#define SIG MQE2E_KEYTREE_SIG_BYTES
#define PHDR MQE2E_KEYTREE_PATH_HEADER
#define AEAD_TAG 16U
#define PATH_NONCE 24U

_Static_assert(MQE2E_BUNDLE_TREE_PATH_MAX == MQE2E_KEYTREE_PATH_BYTES(MQE2E_KEYTREE_MAX_DEPTH),
               "a bundle holds the longest TreePath");
_Static_assert(MQE2E_BUNDLE_TREE_KEY_BYTES == MQE2E_KEYTREE_KEY_BYTES, "leaf key size");

static const char WRAP_LABEL[] = "mqe2e tree wrap v1";
static const char ADVANCE_LABEL[] = "mqe2e tree advance v1";
static const char EPOCH_LABEL[] = "mqe2e tree epoch v1";
static const char SIGN_LABEL[] = "mqe2e tree update v1";

struct mqe2e_keytree {
    uint8_t id[MQE2E_KEYTREE_ID_BYTES];
    unsigned depth;
    uint32_t epoch;
    uint32_t members;
    uint32_t free_hint; /* no free leaf below it */
    uint8_t *keys;      /* sodium_malloc: (2^(d+1)) × 32, node 0 unused */
    uint32_t *count;    /* members below each node */
};

struct mqe2e_keytree_member {
    uint8_t id[MQE2E_KEYTREE_ID_BYTES];
    unsigned depth;
    uint32_t leaf;
    uint32_t epoch;
    int revoked;
    uint8_t *keys; /* sodium_malloc: (d + 1) × 32, keys[h] = path node at height h */
};

/* ---------------------------------------------------------------- helpers */

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Height of node x in a tree of depth d (x in 1 .. 2^(d+1) - 1). */
static unsigned height_of(uint32_t x, unsigned d)
{
    unsigned bits = 0;
    while (x > 1U) {
        x >>= 1;
        bits++;
    }
    return d - bits;
}

/* BLAKE2b-256 keyed by key over label || parts (PROTOCOL.md §10.3). */
static void kdf(uint8_t out[KB], const uint8_t key[KB], const char *label, const uint8_t *a,
                size_t alen, const uint8_t *b, size_t blen)
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, key, KB, KB);
    crypto_generichash_update(&st, (const uint8_t *)label, strlen(label));
    if (alen > 0) crypto_generichash_update(&st, a, alen);
    if (blen > 0) crypto_generichash_update(&st, b, blen);
    crypto_generichash_final(&st, out, KB);
    sodium_memzero(&st, sizeof st);
}

static void advance_key(uint8_t key[KB], const uint8_t id[MQE2E_KEYTREE_ID_BYTES],
                        uint32_t to_epoch, uint32_t node)
{
    uint8_t tail[8];
    put32(tail, to_epoch);
    put32(tail + 4, node);
    uint8_t out[KB];
    kdf(out, key, ADVANCE_LABEL, id, MQE2E_KEYTREE_ID_BYTES, tail, sizeof tail);
    memcpy(key, out, KB);
    sodium_memzero(out, sizeof out);
}

static void epoch_secret(uint8_t out[KB], const uint8_t root[KB],
                         const uint8_t id[MQE2E_KEYTREE_ID_BYTES], uint32_t epoch)
{
    uint8_t e[4];
    put32(e, epoch);
    kdf(out, root, EPOCH_LABEL, id, MQE2E_KEYTREE_ID_BYTES, e, sizeof e);
}

/* The AD of one wrap: the 49 header bytes, node, under. */
static void wrap_ad(uint8_t ad[HDR + 8], const uint8_t *header, uint32_t node, uint32_t under)
{
    memcpy(ad, header, HDR);
    put32(ad + HDR, node);
    put32(ad + HDR + 4, under);
}

static void wrap_one(uint8_t out[WRAP], const uint8_t *header, uint32_t node, uint32_t under,
                     const uint8_t under_key[KB], const uint8_t new_key[KB])
{
    uint8_t ad[HDR + 8], kw[KB];
    static const uint8_t zero_nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES] = {0};
    wrap_ad(ad, header, node, under);
    kdf(kw, under_key, WRAP_LABEL, ad, sizeof ad, NULL, 0);
    put32(out, node);
    put32(out + 4, under);
    unsigned long long clen = 0;
    crypto_aead_chacha20poly1305_ietf_encrypt(out + 8, &clen, new_key, KB, ad, sizeof ad, NULL,
                                              zero_nonce, kw);
    sodium_memzero(kw, sizeof kw);
}

static int unwrap_one(uint8_t new_key[KB], const uint8_t *header, const uint8_t w[WRAP],
                      const uint8_t under_key[KB])
{
    uint8_t ad[HDR + 8], kw[KB];
    static const uint8_t zero_nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES] = {0};
    wrap_ad(ad, header, get32(w), get32(w + 4));
    kdf(kw, under_key, WRAP_LABEL, ad, sizeof ad, NULL, 0);
    unsigned long long plen = 0;
    int rc = crypto_aead_chacha20poly1305_ietf_decrypt(new_key, &plen, NULL, w + 8, KB + AEAD_TAG,
                                                       ad, sizeof ad, zero_nonce, kw);
    sodium_memzero(kw, sizeof kw);
    if (rc != 0) {
        sodium_memzero(new_key, KB);
        return MQE2E_ERR_AUTH;
    }
    return MQE2E_OK;
}

/* The signed input: SIGN_LABEL || body (the message without its signature). */
#define SIGN_MAX (sizeof SIGN_LABEL - 1U + HDR + ((size_t)2U * MQE2E_KEYTREE_MAX_DEPTH - 1U) * WRAP)

static size_t sign_input(uint8_t buf[SIGN_MAX], const uint8_t *body, size_t body_len)
{
    size_t l = sizeof SIGN_LABEL - 1U;
    memcpy(buf, SIGN_LABEL, l);
    memcpy(buf + l, body, body_len);
    return l + body_len;
}

static void write_header(uint8_t *h, const mqe2e_keytree *t, unsigned kind, uint32_t from,
                         uint32_t leaf, uint16_t n_wraps)
{
    h[0] = VERSION;
    h[1] = (uint8_t)kind;
    memcpy(h + 2, t->id, MQE2E_KEYTREE_ID_BYTES);
    h[18] = (uint8_t)t->depth;
    put32(h + 19, from);
    put32(h + 23, from + 1U);
    put32(h + 27, leaf);
    randombytes_buf(h + 31, 16); /* salt: wrap keys never repeat, even for a re-issued epoch */
    h[47] = (uint8_t)(n_wraps >> 8);
    h[48] = (uint8_t)n_wraps;
}

static int sign_update(uint8_t *msg, size_t body_len, mqe2e_keytree_sign_fn sign, void *ctx)
{
    uint8_t in[SIGN_MAX];
    size_t in_len = sign_input(in, msg, body_len);
    return sign(ctx, msg + body_len, in, in_len) == 0 ? MQE2E_OK : MQE2E_ERR_CRYPTO;
}

/* -------------------------------------------------------------- authority */

static uint8_t *node_key(const mqe2e_keytree *t, uint32_t n)
{
    return t->keys + (size_t)n * KB;
}

int mqe2e_keytree_new(mqe2e_keytree **out, unsigned depth)
{
    if (out == NULL || depth < 1U || depth > MQE2E_KEYTREE_MAX_DEPTH) return MQE2E_ERR_INVALID_ARG;
    *out = NULL;
    if (sodium_init() < 0) return MQE2E_ERR_CRYPTO;
    mqe2e_keytree *t = calloc(1, sizeof *t);
    if (t == NULL) return MQE2E_ERR_NOMEM;
    size_t nodes = (size_t)2U << depth;
    t->depth = depth;
    t->keys = sodium_malloc(nodes * KB);
    t->count = calloc(nodes, sizeof *t->count);
    if (t->keys == NULL || t->count == NULL) {
        mqe2e_keytree_free(t);
        return MQE2E_ERR_NOMEM;
    }
    randombytes_buf(t->keys, nodes * KB);
    randombytes_buf(t->id, sizeof t->id);
    *out = t;
    return MQE2E_OK;
}

void mqe2e_keytree_free(mqe2e_keytree *t)
{
    if (t == NULL) return;
    if (t->keys != NULL) {
        sodium_memzero(t->keys, ((size_t)2U << t->depth) * KB);
        sodium_free(t->keys);
    }
    free(t->count);
    sodium_memzero(t, sizeof *t);
    free(t);
}

int mqe2e_keytree_id(const mqe2e_keytree *t, uint8_t id[MQE2E_KEYTREE_ID_BYTES])
{
    if (t == NULL || id == NULL) return MQE2E_ERR_INVALID_ARG;
    memcpy(id, t->id, MQE2E_KEYTREE_ID_BYTES);
    return MQE2E_OK;
}

uint32_t mqe2e_keytree_epoch(const mqe2e_keytree *t)
{
    return t == NULL ? 0U : t->epoch;
}

uint32_t mqe2e_keytree_members(const mqe2e_keytree *t)
{
    return t == NULL ? 0U : t->members;
}

unsigned mqe2e_keytree_depth(const mqe2e_keytree *t)
{
    return t == NULL ? 0U : t->depth;
}

/* Signs with a raw secret key (the sign_sk variants). */
struct sk_signer {
    const uint8_t *sk;
};

static int sign_with_sk(void *ctx, uint8_t sig[64], const uint8_t *msg, size_t msg_len)
{
    const struct sk_signer *s = ctx;
    return crypto_sign_detached(sig, NULL, msg, msg_len, s->sk) == 0 ? 0 : -1;
}

int mqe2e_keytree_add(mqe2e_keytree *t, uint32_t *leaf, uint8_t leaf_key[KB], uint8_t *update,
                      size_t update_cap, size_t *update_len, const uint8_t sign_sk[64])
{
    if (sign_sk == NULL) return MQE2E_ERR_INVALID_ARG;
    struct sk_signer sk = {sign_sk};
    return mqe2e_keytree_add_cb(t, leaf, leaf_key, update, update_cap, update_len, sign_with_sk,
                                &sk);
}

int mqe2e_keytree_add_cb(mqe2e_keytree *t, uint32_t *leaf, uint8_t leaf_key[KB], uint8_t *update,
                         size_t update_cap, size_t *update_len, mqe2e_keytree_sign_fn sign,
                         void *sign_ctx)
{
    if (t == NULL || leaf == NULL || leaf_key == NULL || update == NULL || update_len == NULL ||
        sign == NULL)
        return MQE2E_ERR_INVALID_ARG;
    uint32_t cap = 1U << t->depth;
    if (t->members >= cap || t->epoch == UINT32_MAX) return MQE2E_ERR_EXHAUSTED;
    if (update_cap < HDR + SIG) return MQE2E_ERR_BUFFER_TOO_SMALL;
    uint32_t l = t->free_hint;
    while (t->count[cap + l] != 0U) l++; /* members < cap: a free leaf exists at or above the hint */
    uint32_t node = cap + l;
    uint32_t from = t->epoch;
    write_header(update, t, MQE2E_KEYTREE_JOIN, from, l, 0);
    if (sign_update(update, HDR, sign, sign_ctx) != MQE2E_OK) return MQE2E_ERR_CRYPTO;
    randombytes_buf(node_key(t, node), KB);
    memcpy(leaf_key, node_key(t, node), KB);
    t->epoch = from + 1U;
    for (unsigned h = 0; h <= t->depth; h++) t->count[node >> h]++;
    for (unsigned h = 1; h <= t->depth; h++)
        advance_key(node_key(t, node >> h), t->id, t->epoch, node >> h);
    t->members++;
    t->free_hint = l + 1U;
    *update_len = HDR + SIG;
    *leaf = l;
    return MQE2E_OK;
}

/* Wraps a removal of leaf node L needs, with the counts already lowered. */
static uint32_t remove_wraps(const mqe2e_keytree *t, uint32_t L)
{
    uint32_t n = 0;
    for (unsigned h = 1; h <= t->depth; h++) {
        uint32_t p = L >> h;
        n += (t->count[(size_t)2U * p] != 0U ? 1U : 0U) +
             (t->count[(size_t)2U * p + 1U] != 0U ? 1U : 0U);
    }
    return n;
}

int mqe2e_keytree_remove(mqe2e_keytree *t, uint32_t leaf, uint8_t *update, size_t update_cap,
                         size_t *update_len, const uint8_t sign_sk[64])
{
    if (sign_sk == NULL) return MQE2E_ERR_INVALID_ARG;
    struct sk_signer sk = {sign_sk};
    return mqe2e_keytree_remove_cb(t, leaf, update, update_cap, update_len, sign_with_sk, &sk);
}

int mqe2e_keytree_remove_cb(mqe2e_keytree *t, uint32_t leaf, uint8_t *update, size_t update_cap,
                            size_t *update_len, mqe2e_keytree_sign_fn sign, void *sign_ctx)
{
    if (t == NULL || update == NULL || update_len == NULL || sign == NULL)
        return MQE2E_ERR_INVALID_ARG;
    uint32_t cap = 1U << t->depth;
    if (leaf >= cap) return MQE2E_ERR_INVALID_ARG;
    uint32_t L = cap + leaf;
    if (t->count[L] == 0U) return MQE2E_ERR_NOT_FOUND;
    if (t->epoch == UINT32_MAX) return MQE2E_ERR_EXHAUSTED;
    for (unsigned h = 0; h <= t->depth; h++) t->count[L >> h]--;
    uint32_t nw = remove_wraps(t, L);
    size_t need = HDR + (size_t)nw * WRAP + SIG;
    if (update_cap < need) {
        for (unsigned h = 0; h <= t->depth; h++) t->count[L >> h]++;
        return MQE2E_ERR_BUFFER_TOO_SMALL;
    }
    uint32_t from = t->epoch;
    write_header(update, t, MQE2E_KEYTREE_REMOVE, from, leaf, (uint16_t)nw);
    /* Every key the leaf knew is replaced bottom-up, each new key wrapped
     * under the key of each non-empty child (an on-path child's new key from
     * one step earlier). The new keys are staged and committed only once the
     * message is signed: on failure the tree is unchanged. */
    uint8_t fresh[(MQE2E_KEYTREE_MAX_DEPTH + 1U) * KB];
    uint8_t *w = update + HDR;
    for (unsigned h = 1; h <= t->depth; h++) {
        uint32_t p = L >> h;
        uint8_t *k = fresh + (size_t)h * KB;
        randombytes_buf(k, KB);
        for (uint32_t c = 2U * p; c <= 2U * p + 1U; c++) {
            if (t->count[c] == 0U) continue;
            const uint8_t *under = (c == (L >> (h - 1U))) ? fresh + (size_t)(h - 1U) * KB
                                                          : node_key(t, c);
            wrap_one(w, update, p, c, under, k);
            w += WRAP;
        }
    }
    if (sign_update(update, HDR + (size_t)nw * WRAP, sign, sign_ctx) != MQE2E_OK) {
        sodium_memzero(fresh, sizeof fresh);
        for (unsigned h = 0; h <= t->depth; h++) t->count[L >> h]++;
        return MQE2E_ERR_CRYPTO;
    }
    randombytes_buf(node_key(t, L), KB); /* the leaf's key goes */
    for (unsigned h = 1; h <= t->depth; h++)
        memcpy(node_key(t, L >> h), fresh + (size_t)h * KB, KB);
    sodium_memzero(fresh, sizeof fresh);
    t->epoch = from + 1U;
    t->members--;
    if (leaf < t->free_hint) t->free_hint = leaf;
    *update_len = need;
    return MQE2E_OK;
}

int mqe2e_keytree_path(const mqe2e_keytree *t, uint32_t leaf, uint8_t *out, size_t out_cap,
                       size_t *out_len)
{
    if (t == NULL || out == NULL || out_len == NULL) return MQE2E_ERR_INVALID_ARG;
    uint32_t cap = 1U << t->depth;
    if (leaf >= cap) return MQE2E_ERR_INVALID_ARG;
    uint32_t L = cap + leaf;
    if (t->count[L] == 0U) return MQE2E_ERR_NOT_FOUND;
    size_t need = MQE2E_KEYTREE_PATH_BYTES(t->depth);
    if (out_cap < need) return MQE2E_ERR_BUFFER_TOO_SMALL;
    out[0] = VERSION;
    out[1] = KIND_PATH;
    memcpy(out + 2, t->id, MQE2E_KEYTREE_ID_BYTES);
    out[18] = (uint8_t)t->depth;
    put32(out + 19, t->epoch);
    put32(out + 23, leaf);
    randombytes_buf(out + 27, PATH_NONCE);
    uint8_t *pt = sodium_malloc((size_t)t->depth * KB);
    if (pt == NULL) return MQE2E_ERR_NOMEM;
    for (unsigned h = 1; h <= t->depth; h++)
        memcpy(pt + (size_t)(h - 1U) * KB, node_key(t, L >> h), KB);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + PHDR, &clen, pt, (size_t)t->depth * KB, out,
                                               PHDR, NULL, out + 27, node_key(t, L));
    sodium_free(pt); /* wipes */
    *out_len = need;
    return MQE2E_OK;
}

int mqe2e_keytree_epoch_secret(const mqe2e_keytree *t, uint8_t out[KB])
{
    if (t == NULL || out == NULL) return MQE2E_ERR_INVALID_ARG;
    if (t->epoch == 0U) return MQE2E_ERR_STATE;
    epoch_secret(out, node_key(t, 1), t->id, t->epoch);
    return MQE2E_OK;
}

int mqe2e_keytree_restore(mqe2e_keytree **out, const uint8_t id[MQE2E_KEYTREE_ID_BYTES],
                          unsigned depth, uint32_t epoch)
{
    if (id == NULL) return MQE2E_ERR_INVALID_ARG;
    int rc = mqe2e_keytree_new(out, depth);
    if (rc != MQE2E_OK) return rc;
    memcpy((*out)->id, id, MQE2E_KEYTREE_ID_BYTES);
    (*out)->epoch = epoch;
    return MQE2E_OK;
}

int mqe2e_keytree_restore_leaf(mqe2e_keytree *t, uint32_t leaf)
{
    if (t == NULL || leaf >= (1U << t->depth)) return MQE2E_ERR_INVALID_ARG;
    uint32_t L = (1U << t->depth) + leaf;
    if (t->count[L] != 0U) return MQE2E_ERR_EXISTS;
    for (unsigned h = 0; h <= t->depth; h++) t->count[L >> h]++;
    t->members++;
    return MQE2E_OK;
}

uint32_t mqe2e_keytree_node_members(const mqe2e_keytree *t, uint32_t node)
{
    if (t == NULL || node < 1U || node >= (2U << t->depth)) return 0U;
    return t->count[node];
}

int mqe2e_keytree_node_key(const mqe2e_keytree *t, uint32_t node, uint8_t out[KB])
{
    if (t == NULL || out == NULL || node < 1U || node >= (2U << t->depth))
        return MQE2E_ERR_INVALID_ARG;
    memcpy(out, node_key(t, node), KB);
    return MQE2E_OK;
}

int mqe2e_keytree_set_node_key(mqe2e_keytree *t, uint32_t node, const uint8_t key[KB])
{
    if (t == NULL || key == NULL || node < 1U || node >= (2U << t->depth))
        return MQE2E_ERR_INVALID_ARG;
    memcpy(node_key(t, node), key, KB);
    return MQE2E_OK;
}

/* ----------------------------------------------------------------- decoders */

/* Strict checks of a remove's wraps: each names an ancestor of the removed
 * leaf and one of its children, never the removed leaf itself, bottom-up,
 * each node's children in ascending order, no repeats. */
static int check_wraps(const mqe2e_keytree_update *u)
{
    uint32_t L = (1U << u->depth) + u->leaf;
    uint32_t prev_node = 0, prev_under = 0;
    unsigned prev_h = 0;
    for (uint32_t i = 0; i < u->n_wraps; i++) {
        const uint8_t *w = u->wraps + (size_t)i * WRAP;
        uint32_t node = get32(w), under = get32(w + 4);
        if (node < 1U || node >= (1U << u->depth)) return MQE2E_ERR_DECODE;
        unsigned h = height_of(node, u->depth);
        if ((L >> h) != node) return MQE2E_ERR_DECODE;
        if (under != 2U * node && under != 2U * node + 1U) return MQE2E_ERR_DECODE;
        if (under == L) return MQE2E_ERR_DECODE;
        if (i > 0 && (h < prev_h || (h == prev_h && (node != prev_node || under <= prev_under))))
            return MQE2E_ERR_DECODE;
        prev_h = h;
        prev_node = node;
        prev_under = under;
    }
    return MQE2E_OK;
}

int mqe2e_keytree_update_open(mqe2e_keytree_update *u, const uint8_t *msg, size_t len,
                              const uint8_t authority_sign_pk[32])
{
    if (u == NULL || msg == NULL || authority_sign_pk == NULL) return MQE2E_ERR_INVALID_ARG;
    memset(u, 0, sizeof *u);
    if (len < HDR + SIG) return MQE2E_ERR_DECODE;
    if (msg[0] != VERSION) return MQE2E_ERR_SUITE;
    if (msg[1] != MQE2E_KEYTREE_REMOVE && msg[1] != MQE2E_KEYTREE_JOIN) return MQE2E_ERR_SUITE;
    unsigned d = msg[18];
    if (d < 1U || d > MQE2E_KEYTREE_MAX_DEPTH) return MQE2E_ERR_DECODE;
    uint32_t from = get32(msg + 19), to = get32(msg + 23), leaf = get32(msg + 27);
    uint32_t nw = ((uint32_t)msg[47] << 8) | msg[48];
    if (from == UINT32_MAX || to != from + 1U || leaf >= (1U << d)) return MQE2E_ERR_DECODE;
    if (msg[1] == MQE2E_KEYTREE_JOIN ? nw != 0U : (nw == 0U || nw > 2U * d - 1U))
        return MQE2E_ERR_DECODE;
    if (len != HDR + (size_t)nw * WRAP + SIG) return MQE2E_ERR_DECODE;
    memcpy(u->tree_id, msg + 2, MQE2E_KEYTREE_ID_BYTES);
    u->depth = (uint8_t)d;
    u->kind = msg[1];
    u->from_epoch = from;
    u->to_epoch = to;
    u->leaf = leaf;
    u->n_wraps = nw;
    u->header = msg;
    u->wraps = msg + HDR;
    int rc = check_wraps(u);
    if (rc == MQE2E_OK) {
        uint8_t in[SIGN_MAX];
        size_t in_len = sign_input(in, msg, len - SIG);
        if (crypto_sign_verify_detached(msg + len - SIG, in, in_len, authority_sign_pk) != 0)
            rc = MQE2E_ERR_AUTH;
    }
    if (rc != MQE2E_OK) memset(u, 0, sizeof *u);
    return rc;
}

/* Parse a TreePath's header. */
static int path_header(const uint8_t *p, size_t len, unsigned *d, uint32_t *epoch, uint32_t *leaf)
{
    if (len < PHDR + AEAD_TAG) return MQE2E_ERR_DECODE;
    if (p[0] != VERSION || p[1] != KIND_PATH) return MQE2E_ERR_SUITE;
    *d = p[18];
    if (*d < 1U || *d > MQE2E_KEYTREE_MAX_DEPTH) return MQE2E_ERR_DECODE;
    if (len != MQE2E_KEYTREE_PATH_BYTES(*d)) return MQE2E_ERR_DECODE;
    *epoch = get32(p + 19);
    *leaf = get32(p + 23);
    if (*leaf >= (1U << *d) || *epoch == 0U) return MQE2E_ERR_DECODE;
    return MQE2E_OK;
}

/* Open a TreePath into keys[1 .. d] (keys[0], the leaf key, is the caller's). */
static int path_open(uint8_t *keys, const uint8_t *p, size_t len, unsigned d)
{
    unsigned long long plen = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(keys + KB, &plen, NULL, p + PHDR, len - PHDR, p,
                                                   PHDR, p + 27, keys) != 0) {
        sodium_memzero(keys + KB, (size_t)d * KB);
        return MQE2E_ERR_AUTH;
    }
    return MQE2E_OK;
}

/* ------------------------------------------------------------------ member */

int mqe2e_keytree_member_new(mqe2e_keytree_member **out,
                             const uint8_t tree_id[MQE2E_KEYTREE_ID_BYTES],
                             const uint8_t leaf_key[KB], const uint8_t *path, size_t path_len)
{
    if (out == NULL || tree_id == NULL || leaf_key == NULL || path == NULL)
        return MQE2E_ERR_INVALID_ARG;
    *out = NULL;
    if (sodium_init() < 0) return MQE2E_ERR_CRYPTO;
    unsigned d = 0;
    uint32_t epoch = 0, leaf = 0;
    int rc = path_header(path, path_len, &d, &epoch, &leaf);
    if (rc != MQE2E_OK) return rc;
    if (sodium_memcmp(path + 2, tree_id, MQE2E_KEYTREE_ID_BYTES) != 0) return MQE2E_ERR_AUTH;
    mqe2e_keytree_member *m = calloc(1, sizeof *m);
    if (m == NULL) return MQE2E_ERR_NOMEM;
    m->keys = sodium_malloc(((size_t)d + 1U) * KB);
    if (m->keys == NULL) {
        free(m);
        return MQE2E_ERR_NOMEM;
    }
    memcpy(m->keys, leaf_key, KB);
    rc = path_open(m->keys, path, path_len, d);
    if (rc != MQE2E_OK) {
        sodium_free(m->keys);
        free(m);
        return rc;
    }
    memcpy(m->id, tree_id, MQE2E_KEYTREE_ID_BYTES);
    m->depth = d;
    m->leaf = leaf;
    m->epoch = epoch;
    *out = m;
    return MQE2E_OK;
}

void mqe2e_keytree_member_free(mqe2e_keytree_member *m)
{
    if (m == NULL) return;
    sodium_free(m->keys); /* wipes; NULL-safe */
    sodium_memzero(m, sizeof *m);
    free(m);
}

static void member_revoke(mqe2e_keytree_member *m)
{
    sodium_memzero(m->keys, ((size_t)m->depth + 1U) * KB);
    m->revoked = 1;
}

/* A remove: unwrap bottom-up into fresh[h]; commit only if every node the
 * member shares with the removed leaf's path got its new key. */
static int apply_remove(mqe2e_keytree_member *m, const mqe2e_keytree_update *u, unsigned *unwraps)
{
    unsigned d = m->depth;
    uint32_t cap = 1U << d, M = cap + m->leaf, L = cap + u->leaf;
    uint8_t fresh[(MQE2E_KEYTREE_MAX_DEPTH + 1U) * KB];
    uint8_t have[MQE2E_KEYTREE_MAX_DEPTH + 1U] = {0};
    unsigned n = 0;
    int rc = MQE2E_OK;
    for (uint32_t i = 0; i < u->n_wraps && rc == MQE2E_OK; i++) {
        const uint8_t *w = u->wraps + (size_t)i * WRAP;
        uint32_t node = get32(w), under = get32(w + 4);
        unsigned h = height_of(node, d);
        if ((M >> h) != node || (M >> (h - 1U)) != under || have[h]) continue;
        const uint8_t *k;
        if ((L >> (h - 1U)) == under) {
            if (!have[h - 1U]) continue; /* checked below */
            k = fresh + (size_t)(h - 1U) * KB;
        } else {
            k = m->keys + (size_t)(h - 1U) * KB;
        }
        rc = unwrap_one(fresh + (size_t)h * KB, u->header, w, k);
        n++;
        if (rc == MQE2E_OK) have[h] = 1;
    }
    for (unsigned h = 1; h <= d && rc == MQE2E_OK; h++)
        if ((M >> h) == (L >> h) && !have[h]) rc = MQE2E_ERR_TREE_GAP;
    if (rc == MQE2E_OK) {
        for (unsigned h = 1; h <= d; h++)
            if (have[h]) memcpy(m->keys + (size_t)h * KB, fresh + (size_t)h * KB, KB);
        m->epoch = u->to_epoch;
        if (unwraps != NULL) *unwraps = n;
    }
    sodium_memzero(fresh, sizeof fresh);
    return rc;
}

int mqe2e_keytree_member_apply(mqe2e_keytree_member *m, const mqe2e_keytree_update *u,
                               unsigned *unwraps)
{
    if (m == NULL || u == NULL || u->header == NULL) return MQE2E_ERR_INVALID_ARG;
    if (unwraps != NULL) *unwraps = 0;
    if (m->revoked) return MQE2E_ERR_STATE;
    if (sodium_memcmp(u->tree_id, m->id, MQE2E_KEYTREE_ID_BYTES) != 0 || u->depth != m->depth)
        return MQE2E_ERR_NOT_FOUND;
    if (u->to_epoch <= m->epoch) return MQE2E_ERR_REPLAY;
    if (u->from_epoch != m->epoch) return MQE2E_ERR_TREE_GAP;
    if (u->leaf == m->leaf) {
        /* Removed, or its leaf given to another member: out either way. */
        member_revoke(m);
        return MQE2E_ERR_TREE_REVOKED;
    }
    if (u->kind == MQE2E_KEYTREE_REMOVE) return apply_remove(m, u, unwraps);
    uint32_t cap = 1U << m->depth, M = cap + m->leaf, J = cap + u->leaf;
    for (unsigned h = 1; h <= m->depth; h++)
        if ((M >> h) == (J >> h)) advance_key(m->keys + (size_t)h * KB, m->id, u->to_epoch, M >> h);
    m->epoch = u->to_epoch;
    return MQE2E_OK;
}

int mqe2e_keytree_member_catch_up(mqe2e_keytree_member *m, const uint8_t *path, size_t path_len)
{
    if (m == NULL || path == NULL) return MQE2E_ERR_INVALID_ARG;
    if (m->revoked) return MQE2E_ERR_STATE;
    unsigned d = 0;
    uint32_t epoch = 0, leaf = 0;
    int rc = path_header(path, path_len, &d, &epoch, &leaf);
    if (rc != MQE2E_OK) return rc;
    if (sodium_memcmp(path + 2, m->id, MQE2E_KEYTREE_ID_BYTES) != 0 || d != m->depth ||
        leaf != m->leaf)
        return MQE2E_ERR_AUTH;
    uint8_t *tmp = sodium_malloc(((size_t)d + 1U) * KB);
    if (tmp == NULL) return MQE2E_ERR_NOMEM;
    memcpy(tmp, m->keys, KB);
    rc = path_open(tmp, path, path_len, d);
    /* Checked after authentication: a forged epoch must not read as a replay. */
    if (rc == MQE2E_OK && epoch <= m->epoch) rc = MQE2E_ERR_REPLAY;
    if (rc == MQE2E_OK) {
        memcpy(m->keys + KB, tmp + KB, (size_t)d * KB);
        m->epoch = epoch;
    }
    sodium_free(tmp);
    return rc;
}

uint32_t mqe2e_keytree_member_epoch(const mqe2e_keytree_member *m)
{
    return m == NULL ? 0U : m->epoch;
}

uint32_t mqe2e_keytree_member_leaf(const mqe2e_keytree_member *m)
{
    return m == NULL ? 0U : m->leaf;
}

int mqe2e_keytree_member_epoch_secret(const mqe2e_keytree_member *m, uint8_t out[KB])
{
    if (m == NULL || out == NULL) return MQE2E_ERR_INVALID_ARG;
    if (m->revoked) return MQE2E_ERR_STATE;
    epoch_secret(out, m->keys + (size_t)m->depth * KB, m->id, m->epoch);
    return MQE2E_OK;
}

/* ------------------------------------------------------------------- pool */

struct mqe2e_keytree_pool {
    uint8_t id[MQE2E_KEYTREE_ID_BYTES];
    unsigned depth;
    uint32_t cap, n;
    uint8_t *keys;                /* sodium_malloc: cap × (depth + 1) × 32 */
    mqe2e_keytree_member *m;      /* cap views; m[i].keys points into keys */
};

int mqe2e_keytree_pool_new(mqe2e_keytree_pool **out, const uint8_t tree_id[MQE2E_KEYTREE_ID_BYTES],
                           unsigned depth, uint32_t capacity)
{
    if (out == NULL || tree_id == NULL || depth < 1U || depth > MQE2E_KEYTREE_MAX_DEPTH ||
        capacity == 0U)
        return MQE2E_ERR_INVALID_ARG;
    *out = NULL;
    if (sodium_init() < 0) return MQE2E_ERR_CRYPTO;
    mqe2e_keytree_pool *p = calloc(1, sizeof *p);
    if (p == NULL) return MQE2E_ERR_NOMEM;
    p->keys = sodium_malloc((size_t)capacity * ((size_t)depth + 1U) * KB);
    p->m = calloc(capacity, sizeof *p->m);
    if (p->keys == NULL || p->m == NULL) {
        sodium_free(p->keys);
        free(p->m);
        free(p);
        return MQE2E_ERR_NOMEM;
    }
    memcpy(p->id, tree_id, sizeof p->id);
    p->depth = depth;
    p->cap = capacity;
    *out = p;
    return MQE2E_OK;
}

void mqe2e_keytree_pool_free(mqe2e_keytree_pool *p)
{
    if (p == NULL) return;
    sodium_free(p->keys); /* wipes */
    if (p->m != NULL) sodium_memzero(p->m, (size_t)p->cap * sizeof *p->m);
    free(p->m);
    sodium_memzero(p, sizeof *p);
    free(p);
}

int mqe2e_keytree_pool_add(mqe2e_keytree_pool *p, uint32_t *index, const uint8_t leaf_key[KB],
                           const uint8_t *path, size_t path_len)
{
    if (p == NULL || index == NULL || leaf_key == NULL || path == NULL)
        return MQE2E_ERR_INVALID_ARG;
    if (p->n == p->cap) return MQE2E_ERR_EXHAUSTED;
    unsigned d = 0;
    uint32_t epoch = 0, leaf = 0;
    int rc = path_header(path, path_len, &d, &epoch, &leaf);
    if (rc != MQE2E_OK) return rc;
    if (d != p->depth || sodium_memcmp(path + 2, p->id, MQE2E_KEYTREE_ID_BYTES) != 0)
        return MQE2E_ERR_AUTH;
    mqe2e_keytree_member *m = &p->m[p->n];
    m->keys = p->keys + (size_t)p->n * ((size_t)d + 1U) * KB;
    memcpy(m->keys, leaf_key, KB);
    rc = path_open(m->keys, path, path_len, d);
    if (rc != MQE2E_OK) {
        sodium_memzero(m->keys, ((size_t)d + 1U) * KB);
        memset(m, 0, sizeof *m);
        return rc;
    }
    memcpy(m->id, p->id, MQE2E_KEYTREE_ID_BYTES);
    m->depth = d;
    m->leaf = leaf;
    m->epoch = epoch;
    m->revoked = 0;
    *index = p->n++;
    return MQE2E_OK;
}

int mqe2e_keytree_pool_apply(mqe2e_keytree_pool *p, uint32_t index, const mqe2e_keytree_update *u,
                             unsigned *unwraps)
{
    if (p == NULL || index >= p->n) return MQE2E_ERR_INVALID_ARG;
    return mqe2e_keytree_member_apply(&p->m[index], u, unwraps);
}

int mqe2e_keytree_pool_epoch_secret(const mqe2e_keytree_pool *p, uint32_t index, uint8_t out[KB])
{
    if (p == NULL || index >= p->n) return MQE2E_ERR_INVALID_ARG;
    return mqe2e_keytree_member_epoch_secret(&p->m[index], out);
}

uint32_t mqe2e_keytree_pool_epoch(const mqe2e_keytree_pool *p, uint32_t index)
{
    return p == NULL || index >= p->n ? 0U : p->m[index].epoch;
}
