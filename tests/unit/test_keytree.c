/*
 * The key tree (lib/src/keytree.c, PROTOCOL.md §10): joins and removals
 * followed by every member; the revoked member cannot derive the new epoch
 * (checked with an independent implementation of §10's formulas, trying every
 * wrap under every key it held); forged, replayed, reordered, truncated and
 * re-targeted messages are refused; offline members catch up; 100,000
 * members in-process.
 */
#include <criterion/criterion.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "mqe2e/error.h"
#include "mqe2e/keytree.h"
#include "mqe2e/mqe2e.h"

static uint8_t auth_pk[32], auth_sk[64];

static void setup(void)
{
    cr_assert_eq(mqe2e_init(), MQE2E_OK);
    crypto_sign_keypair(auth_pk, auth_sk);
}

TestSuite(keytree, .init = setup);

#define UPD_CAP MQE2E_KEYTREE_UPDATE_MAX(MQE2E_KEYTREE_MAX_DEPTH)
#define PATH_CAP MQE2E_KEYTREE_PATH_BYTES(MQE2E_KEYTREE_MAX_DEPTH)

typedef struct msg {
    uint8_t b[UPD_CAP];
    size_t n;
} msg;

/* ------------------------------------------- an independent reading of §10 */

static uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* §10.4: wrap key and AEAD of one wrap, from the spec's formulas alone. */
static int spec_unwrap(uint8_t out[32], const uint8_t *update, const uint8_t *w,
                       const uint8_t key[32])
{
    static const char label[] = "mqe2e tree wrap v1";
    uint8_t ad[49 + 8], kw[32], nonce[12] = {0};
    memcpy(ad, update, 49);
    memcpy(ad + 49, w, 8);
    crypto_generichash_state st;
    crypto_generichash_init(&st, key, 32, 32);
    crypto_generichash_update(&st, (const uint8_t *)label, sizeof label - 1U);
    crypto_generichash_update(&st, ad, sizeof ad);
    crypto_generichash_final(&st, kw, 32);
    unsigned long long n = 0;
    return crypto_aead_chacha20poly1305_ietf_decrypt(out, &n, NULL, w + 8, 48, ad, sizeof ad,
                                                     nonce, kw);
}

/* §10.5: the d path keys of a TreePath. */
static int spec_open_path(uint8_t *keys, const uint8_t *path, size_t len, const uint8_t leaf[32])
{
    unsigned long long n = 0;
    return crypto_aead_xchacha20poly1305_ietf_decrypt(keys, &n, NULL, path + 51, len - 51, path,
                                                      51, path + 27, leaf);
}

/* §10.3: epoch secret from the root key. */
static void spec_epoch(uint8_t out[32], const uint8_t root[32], const uint8_t id[16],
                       uint32_t epoch)
{
    static const char label[] = "mqe2e tree epoch v1";
    uint8_t e[4] = {(uint8_t)(epoch >> 24), (uint8_t)(epoch >> 16), (uint8_t)(epoch >> 8),
                    (uint8_t)epoch};
    crypto_generichash_state st;
    crypto_generichash_init(&st, root, 32, 32);
    crypto_generichash_update(&st, (const uint8_t *)label, sizeof label - 1U);
    crypto_generichash_update(&st, id, 16);
    crypto_generichash_update(&st, e, 4);
    crypto_generichash_final(&st, out, 32);
}

/* §10.2: re-sign a (modified) update body with the authority key. */
static void spec_sign(uint8_t *m, size_t body_len)
{
    static const char label[] = "mqe2e tree update v1";
    uint8_t *in = malloc(sizeof label - 1U + body_len);
    cr_assert_not_null(in);
    memcpy(in, label, sizeof label - 1U);
    memcpy(in + sizeof label - 1U, m, body_len);
    crypto_sign_detached(m + body_len, NULL, in, sizeof label - 1U + body_len, auth_sk);
    free(in);
}

/* ------------------------------------------------------------------ helpers */

typedef struct member {
    mqe2e_keytree_member *m;
    uint8_t leaf_key[32];
    uint32_t leaf;
    int gone;
} member;

static void expect_secret(const mqe2e_keytree *t, const mqe2e_keytree_member *m)
{
    uint8_t a[32], b[32];
    cr_assert_eq(mqe2e_keytree_epoch_secret(t, a), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_member_epoch_secret(m, b), MQE2E_OK);
    cr_assert_eq(memcmp(a, b, 32), 0, "member at leaf %u derived another epoch secret",
                 mqe2e_keytree_member_leaf(m));
    cr_assert_eq(mqe2e_keytree_member_epoch(m), mqe2e_keytree_epoch(t));
}

/* Add a member: everyone already in applies the join; the joiner starts from its path. */
static void join(mqe2e_keytree *t, member *all, int n_all, member *me)
{
    msg u;
    uint8_t id[16], path[PATH_CAP];
    size_t plen = 0;
    cr_assert_eq(mqe2e_keytree_add(t, &me->leaf, me->leaf_key, u.b, sizeof u.b, &u.n, auth_sk),
                 MQE2E_OK);
    cr_assert_eq(u.n, 49U + 64U);
    mqe2e_keytree_update v;
    cr_assert_eq(mqe2e_keytree_update_open(&v, u.b, u.n, auth_pk), MQE2E_OK);
    for (int i = 0; i < n_all; i++) {
        if (all[i].gone || all[i].m == NULL) continue;
        cr_assert_eq(mqe2e_keytree_member_apply(all[i].m, &v, NULL), MQE2E_OK);
    }
    cr_assert_eq(mqe2e_keytree_id(t, id), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_path(t, me->leaf, path, sizeof path, &plen), MQE2E_OK);
    cr_assert_eq(plen, MQE2E_KEYTREE_PATH_BYTES(mqe2e_keytree_depth(t)));
    cr_assert_eq(mqe2e_keytree_member_new(&me->m, id, me->leaf_key, path, plen), MQE2E_OK);
    me->gone = 0;
}

static void free_all(member *all, int n)
{
    for (int i = 0; i < n; i++) mqe2e_keytree_member_free(all[i].m);
}

/* ------------------------------------------------------------------- tests */

Test(keytree, joins_and_removals_followed_by_everyone)
{
    enum { N = 8 };
    mqe2e_keytree *t = NULL;
    member all[N] = {0};
    cr_assert_eq(mqe2e_keytree_new(&t, 3), MQE2E_OK);
    uint8_t s0[32];
    cr_assert_eq(mqe2e_keytree_epoch_secret(t, s0), MQE2E_ERR_STATE);
    uint8_t prev[32] = {0};
    for (int i = 0; i < N; i++) {
        join(t, all, i, &all[i]);
        for (int k = 0; k <= i; k++) expect_secret(t, all[k].m);
        uint8_t cur[32];
        cr_assert_eq(mqe2e_keytree_epoch_secret(t, cur), MQE2E_OK);
        cr_assert_neq(memcmp(cur, prev, 32), 0, "a join must change the epoch secret");
        memcpy(prev, cur, 32);
    }
    msg u;
    cr_assert_eq(mqe2e_keytree_add(t, &all[0].leaf, all[0].leaf_key, u.b, sizeof u.b, &u.n,
                                   auth_sk),
                 MQE2E_ERR_EXHAUSTED);
    /* Remove three members one after the other; the rest follow each. */
    const int out[3] = {5, 0, 6};
    for (int r = 0; r < 3; r++) {
        member *x = &all[out[r]];
        cr_assert_eq(mqe2e_keytree_remove(t, x->leaf, u.b, sizeof u.b, &u.n, auth_sk), MQE2E_OK);
        cr_assert_leq(u.n, 49U + 5U * 56U + 64U);
        mqe2e_keytree_update v;
        cr_assert_eq(mqe2e_keytree_update_open(&v, u.b, u.n, auth_pk), MQE2E_OK);
        for (int i = 0; i < N; i++) {
            if (all[i].gone) continue;
            unsigned unwraps = 99;
            int rc = mqe2e_keytree_member_apply(all[i].m, &v, &unwraps);
            if (&all[i] == x) {
                cr_assert_eq(rc, MQE2E_ERR_TREE_REVOKED);
                uint8_t s[32];
                cr_assert_eq(mqe2e_keytree_member_epoch_secret(x->m, s), MQE2E_ERR_STATE);
                cr_assert_eq(mqe2e_keytree_member_apply(x->m, &v, NULL), MQE2E_ERR_STATE);
                continue;
            }
            cr_assert_eq(rc, MQE2E_OK, "leaf %u: %d", all[i].leaf, rc);
            cr_assert_leq(unwraps, 3U);
            cr_assert_geq(unwraps, 1U);
            expect_secret(t, all[i].m);
        }
        x->gone = 1;
        cr_assert_eq(mqe2e_keytree_remove(t, x->leaf, u.b, sizeof u.b, &u.n, auth_sk),
                     MQE2E_ERR_NOT_FOUND);
    }
    /* A new member takes the lowest free leaf (0) and joins everyone else. */
    member fresh = {0};
    join(t, all, N, &fresh);
    cr_assert_eq(fresh.leaf, 0U);
    expect_secret(t, fresh.m);
    for (int i = 0; i < N; i++)
        if (!all[i].gone) expect_secret(t, all[i].m);
    mqe2e_keytree_member_free(fresh.m);
    free_all(all, N);
    mqe2e_keytree_free(t);
}

/* The revoked member, holding every key of its old path, opens no wrap of
 * the removal (every wrap tried under every key, independent code) and its
 * old epoch secret is not the new one. A remaining member, with the same
 * independent code, follows the wraps to the same new epoch secret as the
 * library: the spec is complete for this message. */
Test(keytree, revoked_member_cannot_derive_spec_reading)
{
    enum { N = 16, D = 4, VICTIM = 9, OTHER = 8 };
    mqe2e_keytree *t = NULL;
    member all[N] = {0};
    cr_assert_eq(mqe2e_keytree_new(&t, D), MQE2E_OK);
    for (int i = 0; i < N; i++) join(t, all, i, &all[i]);
    uint8_t id[16], vpath[PATH_CAP], opath[PATH_CAP];
    size_t vlen = 0, olen = 0;
    cr_assert_eq(mqe2e_keytree_id(t, id), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_path(t, VICTIM, vpath, sizeof vpath, &vlen), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_path(t, OTHER, opath, sizeof opath, &olen), MQE2E_OK);
    uint8_t vkeys[(D + 1) * 32], okeys[(D + 1) * 32];
    memcpy(vkeys, all[VICTIM].leaf_key, 32);
    memcpy(okeys, all[OTHER].leaf_key, 32);
    cr_assert_eq(spec_open_path(vkeys + 32, vpath, vlen, vkeys), 0);
    cr_assert_eq(spec_open_path(okeys + 32, opath, olen, okeys), 0);
    uint8_t old_secret[32];
    cr_assert_eq(mqe2e_keytree_epoch_secret(t, old_secret), MQE2E_OK);
    uint8_t spec_old[32];
    spec_epoch(spec_old, vkeys + D * 32, id, mqe2e_keytree_epoch(t));
    cr_assert_eq(memcmp(spec_old, old_secret, 32), 0, "§10.3 epoch secret");

    msg u;
    cr_assert_eq(mqe2e_keytree_remove(t, VICTIM, u.b, sizeof u.b, &u.n, auth_sk), MQE2E_OK);
    uint32_t nw = ((uint32_t)u.b[47] << 8) | u.b[48];
    cr_assert_eq(nw, 2U * D - 1U);
    cr_assert_eq(u.n, 49U + nw * 56U + 64U);
    uint8_t k[32];
    for (uint32_t i = 0; i < nw; i++)
        for (int h = 0; h <= D; h++)
            cr_assert_neq(spec_unwrap(k, u.b, u.b + 49 + i * 56, vkeys + h * 32), 0,
                          "the revoked member opened wrap %u with its key of height %d", i, h);
    uint8_t new_secret[32];
    cr_assert_eq(mqe2e_keytree_epoch_secret(t, new_secret), MQE2E_OK);
    for (int h = 0; h <= D; h++) {
        uint8_t guess[32];
        spec_epoch(guess, vkeys + h * 32, id, mqe2e_keytree_epoch(t));
        cr_assert_neq(memcmp(guess, new_secret, 32), 0);
    }
    /* OTHER (leaf 8) is the victim's sibling: it unwraps its parent under
     * its own leaf key, then each ancestor under the new child key. */
    uint32_t L = (1U << D) + OTHER;
    for (uint32_t i = 0; i < nw; i++) {
        const uint8_t *w = u.b + 49 + i * 56;
        uint32_t node = be32(w), under = be32(w + 4);
        int h = 0;
        while (h < D && (L >> h) != under) h++;
        if (h == D || (L >> (h + 1)) != node) continue;
        cr_assert_eq(spec_unwrap(okeys + (h + 1) * 32, u.b, w, okeys + h * 32), 0);
    }
    uint8_t spec_new[32];
    spec_epoch(spec_new, okeys + D * 32, id, mqe2e_keytree_epoch(t));
    cr_assert_eq(memcmp(spec_new, new_secret, 32), 0, "§10.4 unwrap chain");
    sodium_memzero(vkeys, sizeof vkeys);
    free_all(all, N);
    mqe2e_keytree_free(t);
}

/* Forged, truncated, extended, re-signed-with-another-key, wrong-tree,
 * replayed and reordered updates. */
Test(keytree, adversarial_updates)
{
    enum { N = 8 };
    mqe2e_keytree *t = NULL;
    member all[N] = {0};
    cr_assert_eq(mqe2e_keytree_new(&t, 3), MQE2E_OK);
    for (int i = 0; i < N; i++) join(t, all, i, &all[i]);
    msg u1, u2;
    cr_assert_eq(mqe2e_keytree_remove(t, 3, u1.b, sizeof u1.b, &u1.n, auth_sk), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_remove(t, 6, u2.b, sizeof u2.b, &u2.n, auth_sk), MQE2E_OK);
    mqe2e_keytree_update v;

    /* Every byte flipped: never opens. */
    for (size_t i = 0; i < u1.n; i++) {
        msg f = u1;
        f.b[i] ^= 0x01;
        int rc = mqe2e_keytree_update_open(&v, f.b, f.n, auth_pk);
        cr_assert(rc == MQE2E_ERR_AUTH || rc == MQE2E_ERR_DECODE || rc == MQE2E_ERR_SUITE,
                  "byte %zu flipped: %d", i, rc);
        cr_assert_null(v.header);
    }
    for (size_t n = 0; n < u1.n; n++)
        cr_assert_neq(mqe2e_keytree_update_open(&v, u1.b, n, auth_pk), MQE2E_OK);
    msg longer = u1;
    longer.b[longer.n] = 0;
    cr_assert_eq(mqe2e_keytree_update_open(&v, longer.b, longer.n + 1U, auth_pk),
                 MQE2E_ERR_DECODE);
    uint8_t other_pk[32], other_sk[64];
    crypto_sign_keypair(other_pk, other_sk);
    cr_assert_eq(mqe2e_keytree_update_open(&v, u1.b, u1.n, other_pk), MQE2E_ERR_AUTH);

    /* Signed by the authority but not canonical: the decoder refuses a wrap
     * under the removed leaf, a wrap off the leaf's path, a swapped order,
     * a join with wraps and a to_epoch that skips. */
    msg bad = u1;
    uint32_t L = 8U + 3U;
    bad.b[49 + 4] = (uint8_t)(L >> 24);
    bad.b[49 + 5] = (uint8_t)(L >> 16);
    bad.b[49 + 6] = (uint8_t)(L >> 8);
    bad.b[49 + 7] = (uint8_t)L;
    spec_sign(bad.b, bad.n - 64U);
    cr_assert_eq(mqe2e_keytree_update_open(&v, bad.b, bad.n, auth_pk), MQE2E_ERR_DECODE);
    bad = u1;
    bad.b[49 + 3] = 6; /* node 6 is not an ancestor of leaf node 11 */
    spec_sign(bad.b, bad.n - 64U);
    cr_assert_eq(mqe2e_keytree_update_open(&v, bad.b, bad.n, auth_pk), MQE2E_ERR_DECODE);
    bad = u1;
    memcpy(bad.b + 49, u1.b + 49 + 56, 56);
    memcpy(bad.b + 49 + 56, u1.b + 49, 56);
    spec_sign(bad.b, bad.n - 64U);
    cr_assert_eq(mqe2e_keytree_update_open(&v, bad.b, bad.n, auth_pk), MQE2E_ERR_DECODE);
    bad = u1;
    bad.b[1] = MQE2E_KEYTREE_JOIN;
    spec_sign(bad.b, bad.n - 64U);
    cr_assert_eq(mqe2e_keytree_update_open(&v, bad.b, bad.n, auth_pk), MQE2E_ERR_DECODE);
    bad = u1;
    bad.b[26] ^= 0x02;
    spec_sign(bad.b, bad.n - 64U);
    cr_assert_eq(mqe2e_keytree_update_open(&v, bad.b, bad.n, auth_pk), MQE2E_ERR_DECODE);

    /* A wrap whose ciphertext the authority's key signed but that does not
     * open (an inconsistent update): the member stays where it was. */
    bad = u1;
    bad.b[49 + 8] ^= 0x80; /* first wrap: for leaf 2, the victim's sibling */
    spec_sign(bad.b, bad.n - 64U);
    cr_assert_eq(mqe2e_keytree_update_open(&v, bad.b, bad.n, auth_pk), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_member_apply(all[2].m, &v, NULL), MQE2E_ERR_AUTH);
    cr_assert_eq(mqe2e_keytree_member_epoch(all[2].m), mqe2e_keytree_epoch(t) - 2U);

    /* Reordered: the second removal first is a gap; in order both apply; then
     * each one again is a replay. */
    mqe2e_keytree_update v1, v2;
    cr_assert_eq(mqe2e_keytree_update_open(&v1, u1.b, u1.n, auth_pk), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_update_open(&v2, u2.b, u2.n, auth_pk), MQE2E_OK);
    for (int i = 0; i < N; i++) {
        if (i == 3) continue;
        cr_assert_eq(mqe2e_keytree_member_apply(all[i].m, &v2, NULL),
                     MQE2E_ERR_TREE_GAP);
        cr_assert_eq(mqe2e_keytree_member_apply(all[i].m, &v1, NULL), MQE2E_OK);
        cr_assert_eq(mqe2e_keytree_member_apply(all[i].m, &v1, NULL), MQE2E_ERR_REPLAY);
        if (i == 6) {
            cr_assert_eq(mqe2e_keytree_member_apply(all[i].m, &v2, NULL), MQE2E_ERR_TREE_REVOKED);
            continue;
        }
        cr_assert_eq(mqe2e_keytree_member_apply(all[i].m, &v2, NULL), MQE2E_OK);
        cr_assert_eq(mqe2e_keytree_member_apply(all[i].m, &v2, NULL), MQE2E_ERR_REPLAY);
        cr_assert_eq(mqe2e_keytree_member_apply(all[i].m, &v1, NULL), MQE2E_ERR_REPLAY);
        expect_secret(t, all[i].m);
    }

    /* Another tree's update: not for this member. */
    mqe2e_keytree *t2 = NULL;
    member x = {0};
    cr_assert_eq(mqe2e_keytree_new(&t2, 3), MQE2E_OK);
    join(t2, NULL, 0, &x);
    msg u3;
    uint32_t l2 = 0;
    uint8_t lk[32];
    cr_assert_eq(mqe2e_keytree_add(t2, &l2, lk, u3.b, sizeof u3.b, &u3.n, auth_sk), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_update_open(&v, u3.b, u3.n, auth_pk), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_member_apply(all[0].m, &v, NULL), MQE2E_ERR_NOT_FOUND);
    mqe2e_keytree_member_free(x.m);
    mqe2e_keytree_free(t2);
    free_all(all, N);
    mqe2e_keytree_free(t);
}

/* TreePath: bound to the leaf key and the tree; every byte authenticated;
 * never moves a member backward. */
Test(keytree, adversarial_paths)
{
    enum { N = 4 };
    mqe2e_keytree *t = NULL;
    member all[N] = {0};
    cr_assert_eq(mqe2e_keytree_new(&t, 2), MQE2E_OK);
    for (int i = 0; i < N; i++) join(t, all, i, &all[i]);
    uint8_t id[16], p[PATH_CAP];
    size_t plen = 0;
    cr_assert_eq(mqe2e_keytree_id(t, id), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_path(t, 1, p, sizeof p, &plen), MQE2E_OK);
    mqe2e_keytree_member *m = NULL;
    for (size_t i = 0; i < plen; i++) {
        uint8_t f[PATH_CAP];
        memcpy(f, p, plen);
        f[i] ^= 0x04;
        int rc = mqe2e_keytree_member_new(&m, id, all[1].leaf_key, f, plen);
        cr_assert(rc == MQE2E_ERR_AUTH || rc == MQE2E_ERR_DECODE || rc == MQE2E_ERR_SUITE,
                  "byte %zu: %d", i, rc);
        cr_assert_null(m);
    }
    cr_assert_eq(mqe2e_keytree_member_new(&m, id, all[2].leaf_key, p, plen), MQE2E_ERR_AUTH);
    uint8_t id2[16];
    memcpy(id2, id, 16);
    id2[0] ^= 1;
    cr_assert_eq(mqe2e_keytree_member_new(&m, id2, all[1].leaf_key, p, plen), MQE2E_ERR_AUTH);
    cr_assert_eq(mqe2e_keytree_member_new(&m, id, all[1].leaf_key, p, plen - 1U),
                 MQE2E_ERR_DECODE);
    /* The same path again, or one for another leaf: refused as catch-up. */
    cr_assert_eq(mqe2e_keytree_member_catch_up(all[1].m, p, plen), MQE2E_ERR_REPLAY);
    uint8_t p0[PATH_CAP];
    size_t p0len = 0;
    cr_assert_eq(mqe2e_keytree_path(t, 0, p0, sizeof p0, &p0len), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_member_catch_up(all[1].m, p0, p0len), MQE2E_ERR_AUTH);
    cr_assert_eq(mqe2e_keytree_path(t, 3, p, sizeof p, &plen), MQE2E_OK);
    msg u;
    cr_assert_eq(mqe2e_keytree_remove(t, 3, u.b, sizeof u.b, &u.n, auth_sk), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_path(t, 3, p, sizeof p, &plen), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_keytree_path(t, 3, p, 10, &plen), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_keytree_path(t, 0, p, 10, &plen), MQE2E_ERR_BUFFER_TOO_SMALL);
    cr_assert_eq(mqe2e_keytree_remove(t, 0, u.b, 100, &u.n, auth_sk), MQE2E_ERR_BUFFER_TOO_SMALL);
    cr_assert_eq(mqe2e_keytree_members(t), 3U);
    free_all(all, N);
    mqe2e_keytree_free(t);
}

/* A member offline during three removals and a join: the next update is a
 * gap; one TreePath brings it to the current epoch; it then follows again. */
Test(keytree, offline_member_catches_up)
{
    enum { N = 16 };
    mqe2e_keytree *t = NULL;
    member all[N] = {0};
    cr_assert_eq(mqe2e_keytree_new(&t, 4), MQE2E_OK);
    for (int i = 0; i < N; i++) join(t, all, i, &all[i]);
    member *off = &all[5];
    msg u;
    mqe2e_keytree_update v;
    const int gone[3] = {4, 12, 1};
    for (int r = 0; r < 3; r++) {
        cr_assert_eq(mqe2e_keytree_remove(t, (uint32_t)gone[r], u.b, sizeof u.b, &u.n, auth_sk),
                     MQE2E_OK);
        all[gone[r]].gone = 1;
    }
    member late = {0};
    join(t, NULL, 0, &late);
    cr_assert_eq(mqe2e_keytree_remove(t, 9, u.b, sizeof u.b, &u.n, auth_sk), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_update_open(&v, u.b, u.n, auth_pk), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_member_apply(off->m, &v, NULL), MQE2E_ERR_TREE_GAP);
    uint8_t p[PATH_CAP];
    size_t plen = 0;
    cr_assert_eq(mqe2e_keytree_path(t, off->leaf, p, sizeof p, &plen), MQE2E_OK);
    cr_assert_leq(plen, 1024U);
    cr_assert_eq(mqe2e_keytree_member_catch_up(off->m, p, plen), MQE2E_OK);
    expect_secret(t, off->m);
    cr_assert_eq(mqe2e_keytree_member_apply(off->m, &v, NULL), MQE2E_ERR_REPLAY);
    cr_assert_eq(mqe2e_keytree_remove(t, 10, u.b, sizeof u.b, &u.n, auth_sk), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_update_open(&v, u.b, u.n, auth_pk), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_member_apply(off->m, &v, NULL), MQE2E_OK);
    expect_secret(t, off->m);
    mqe2e_keytree_member_free(late.m);
    free_all(all, N);
    mqe2e_keytree_free(t);
}

Test(keytree, bad_arguments)
{
    mqe2e_keytree *t = NULL;
    cr_assert_eq(mqe2e_keytree_new(&t, 0), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_keytree_new(&t, MQE2E_KEYTREE_MAX_DEPTH + 1U), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_keytree_new(NULL, 3), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_keytree_new(&t, 2), MQE2E_OK);
    msg u;
    uint32_t leaf;
    uint8_t lk[32];
    cr_assert_eq(mqe2e_keytree_add(t, &leaf, lk, u.b, 112, &u.n, auth_sk),
                 MQE2E_ERR_BUFFER_TOO_SMALL);
    cr_assert_eq(mqe2e_keytree_members(t), 0U);
    cr_assert_eq(mqe2e_keytree_remove(t, 4, u.b, sizeof u.b, &u.n, auth_sk),
                 MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_keytree_remove(t, 0, u.b, sizeof u.b, &u.n, auth_sk), MQE2E_ERR_NOT_FOUND);
    mqe2e_keytree_free(t);
    mqe2e_keytree_free(NULL);
    mqe2e_keytree_member_free(NULL);
}

/* 100,000 members of a depth-17 tree, all in this process: each gets its
 * path, one member is removed, every other member applies the one update
 * (≤ 17 unwraps, the authority's epoch secret), the removed one is out and
 * none of its keys opens a wrap. */
Test(keytree, hundred_thousand_members, .timeout = 280)
{
    enum { N = 100000, D = 17, VICTIM = 4242 };
    mqe2e_keytree *t = NULL;
    cr_assert_eq(mqe2e_keytree_new(&t, D), MQE2E_OK);
    uint8_t *leaf_keys = malloc((size_t)N * 32U);
    size_t plen = MQE2E_KEYTREE_PATH_BYTES(D);
    uint8_t *paths = malloc((size_t)N * plen);
    cr_assert(leaf_keys != NULL && paths != NULL);
    msg u;
    for (uint32_t i = 0; i < N; i++) {
        uint32_t leaf = 0;
        cr_assert_eq(mqe2e_keytree_add(t, &leaf, leaf_keys + (size_t)i * 32U, u.b, sizeof u.b,
                                       &u.n, auth_sk),
                     MQE2E_OK);
        cr_assert_eq(leaf, i);
    }
    for (uint32_t i = 0; i < N; i++) {
        size_t n = 0;
        cr_assert_eq(mqe2e_keytree_path(t, i, paths + (size_t)i * plen, plen, &n), MQE2E_OK);
    }
    uint8_t id[16];
    cr_assert_eq(mqe2e_keytree_id(t, id), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_remove(t, VICTIM, u.b, sizeof u.b, &u.n, auth_sk), MQE2E_OK);
    cr_assert_leq(u.n, 4096U, "%zu bytes per revocation", u.n);
    cr_assert_leq(plen, 1024U, "a join costs the joiner %zu bytes", plen);
    mqe2e_keytree_update v;
    cr_assert_eq(mqe2e_keytree_update_open(&v, u.b, u.n, auth_pk), MQE2E_OK);
    uint8_t want[32], got[32];
    cr_assert_eq(mqe2e_keytree_epoch_secret(t, want), MQE2E_OK);
    unsigned max_unwraps = 0;
    for (uint32_t i = 0; i < N; i++) {
        mqe2e_keytree_member *m = NULL;
        cr_assert_eq(mqe2e_keytree_member_new(&m, id, leaf_keys + (size_t)i * 32U,
                                              paths + (size_t)i * plen, plen),
                     MQE2E_OK);
        unsigned unwraps = 0;
        int rc = mqe2e_keytree_member_apply(m, &v, &unwraps);
        if (i == VICTIM) {
            cr_assert_eq(rc, MQE2E_ERR_TREE_REVOKED);
        } else {
            cr_assert_eq(rc, MQE2E_OK, "member %u: %d", i, rc);
            cr_assert_leq(unwraps, 17U);
            if (unwraps > max_unwraps) max_unwraps = unwraps;
            cr_assert_eq(mqe2e_keytree_member_epoch_secret(m, got), MQE2E_OK);
            cr_assert_eq(memcmp(got, want, 32), 0, "member %u", i);
        }
        mqe2e_keytree_member_free(m);
    }
    cr_assert_eq(max_unwraps, 17U); /* the victim's sibling walks all the way up */
    uint8_t vkeys[(D + 1) * 32];
    memcpy(vkeys, leaf_keys + (size_t)VICTIM * 32U, 32);
    cr_assert_eq(spec_open_path(vkeys + 32, paths + (size_t)VICTIM * plen, plen, vkeys), 0);
    uint32_t nw = ((uint32_t)u.b[47] << 8) | u.b[48];
    uint8_t k[32];
    for (uint32_t i = 0; i < nw; i++)
        for (int h = 0; h <= D; h++)
            cr_assert_neq(spec_unwrap(k, u.b, u.b + 49 + i * 56, vkeys + h * 32), 0);
    sodium_memzero(vkeys, sizeof vkeys);
    sodium_memzero(leaf_keys, (size_t)N * 32U);
    free(leaf_keys);
    free(paths);
    mqe2e_keytree_free(t);
}

static int failing_signer(void *ctx, uint8_t sig[64], const uint8_t *m, size_t n)
{
    (void)ctx;
    (void)m;
    (void)n;
    memset(sig, 0, 64);
    return -1;
}

static int sk_signer(void *ctx, uint8_t sig[64], const uint8_t *m, size_t n)
{
    (void)ctx;
    return crypto_sign_detached(sig, NULL, m, n, auth_sk);
}

/* A signer that fails leaves the tree as it was (same epoch, same secret,
 * members still follow the next real update); a tree copied node by node
 * into a restored one (what the authority's store does) continues with the
 * same members: their next removal applies and both trees agree. */
Test(keytree, signer_failure_and_restore)
{
    enum { N = 6 };
    mqe2e_keytree *t = NULL;
    member all[N] = {0};
    cr_assert_eq(mqe2e_keytree_new(&t, 4), MQE2E_OK);
    for (int i = 0; i < N; i++) join(t, all, i, &all[i]);
    uint8_t before[32], after[32];
    cr_assert_eq(mqe2e_keytree_epoch_secret(t, before), MQE2E_OK);
    uint32_t e0 = mqe2e_keytree_epoch(t);
    msg u;
    uint32_t leaf = 0;
    uint8_t lk[32];
    cr_assert_eq(mqe2e_keytree_remove_cb(t, all[2].leaf, u.b, sizeof u.b, &u.n, failing_signer,
                                         NULL),
                 MQE2E_ERR_CRYPTO);
    cr_assert_eq(mqe2e_keytree_add_cb(t, &leaf, lk, u.b, sizeof u.b, &u.n, failing_signer, NULL),
                 MQE2E_ERR_CRYPTO);
    cr_assert_eq(mqe2e_keytree_epoch(t), e0);
    cr_assert_eq(mqe2e_keytree_members(t), (uint32_t)N);
    cr_assert_eq(mqe2e_keytree_epoch_secret(t, after), MQE2E_OK);
    cr_assert_eq(memcmp(before, after, 32), 0);

    /* Copy: id, depth, epoch, occupied leaves, keys of non-empty nodes. */
    uint8_t id[16];
    cr_assert_eq(mqe2e_keytree_id(t, id), MQE2E_OK);
    unsigned d = mqe2e_keytree_depth(t);
    mqe2e_keytree *r = NULL;
    cr_assert_eq(mqe2e_keytree_restore(&r, id, d, e0), MQE2E_OK);
    for (uint32_t n = 1; n < (2U << d); n++) {
        if (mqe2e_keytree_node_members(t, n) == 0U) continue;
        uint8_t k[32];
        cr_assert_eq(mqe2e_keytree_node_key(t, n, k), MQE2E_OK);
        cr_assert_eq(mqe2e_keytree_set_node_key(r, n, k), MQE2E_OK);
        if (n >= (1U << d)) cr_assert_eq(mqe2e_keytree_restore_leaf(r, n - (1U << d)), MQE2E_OK);
    }
    cr_assert_eq(mqe2e_keytree_restore_leaf(r, all[0].leaf), MQE2E_ERR_EXISTS);
    cr_assert_eq(mqe2e_keytree_members(r), (uint32_t)N);
    cr_assert_eq(mqe2e_keytree_epoch_secret(r, after), MQE2E_OK);
    cr_assert_eq(memcmp(before, after, 32), 0);
    mqe2e_keytree_free(t);

    cr_assert_eq(mqe2e_keytree_remove_cb(r, all[2].leaf, u.b, sizeof u.b, &u.n, sk_signer, NULL),
                 MQE2E_OK);
    mqe2e_keytree_update v;
    cr_assert_eq(mqe2e_keytree_update_open(&v, u.b, u.n, auth_pk), MQE2E_OK);
    for (int i = 0; i < N; i++) {
        int rc = mqe2e_keytree_member_apply(all[i].m, &v, NULL);
        if (i == 2) {
            cr_assert_eq(rc, MQE2E_ERR_TREE_REVOKED);
            continue;
        }
        cr_assert_eq(rc, MQE2E_OK);
        expect_secret(r, all[i].m);
    }
    free_all(all, N);
    mqe2e_keytree_free(r);
}

/* A pool holds many members in one allocation and gives the same results as
 * separate members: the same epoch secret after a removal, TREE_REVOKED for
 * the removed one, REPLAY for the same update again; a path of another tree
 * is refused, a full pool says so. */
Test(keytree, pool_members_behave_as_members)
{
    enum { N = 40, D = 6 };
    mqe2e_keytree *t = NULL, *other = NULL;
    cr_assert_eq(mqe2e_keytree_new(&t, D), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_new(&other, D), MQE2E_OK);
    uint8_t id[16], lk[N][32], path[PATH_CAP];
    cr_assert_eq(mqe2e_keytree_id(t, id), MQE2E_OK);
    msg u;
    uint32_t leaf[N];
    for (int i = 0; i < N; i++)
        cr_assert_eq(mqe2e_keytree_add(t, &leaf[i], lk[i], u.b, sizeof u.b, &u.n, auth_sk),
                     MQE2E_OK);
    mqe2e_keytree_pool *p = NULL;
    cr_assert_eq(mqe2e_keytree_pool_new(&p, id, D, N), MQE2E_OK);
    for (int i = 0; i < N; i++) {
        size_t n = 0;
        uint32_t idx = 99;
        cr_assert_eq(mqe2e_keytree_path(t, leaf[i], path, sizeof path, &n), MQE2E_OK);
        cr_assert_eq(mqe2e_keytree_pool_add(p, &idx, lk[i], path, n), MQE2E_OK);
        cr_assert_eq(idx, (uint32_t)i);
    }
    uint32_t idx = 0;
    size_t n = 0;
    cr_assert_eq(mqe2e_keytree_path(t, leaf[0], path, sizeof path, &n), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_pool_add(p, &idx, lk[0], path, n), MQE2E_ERR_EXHAUSTED);
    mqe2e_keytree_pool *q = NULL;
    cr_assert_eq(mqe2e_keytree_pool_new(&q, id, D, 2), MQE2E_OK);
    uint32_t ol = 0;
    uint8_t olk[32];
    cr_assert_eq(mqe2e_keytree_add(other, &ol, olk, u.b, sizeof u.b, &u.n, auth_sk), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_path(other, ol, path, sizeof path, &n), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_pool_add(q, &idx, olk, path, n), MQE2E_ERR_AUTH);
    mqe2e_keytree_pool_free(q);

    cr_assert_eq(mqe2e_keytree_remove(t, leaf[17], u.b, sizeof u.b, &u.n, auth_sk), MQE2E_OK);
    mqe2e_keytree_update v;
    cr_assert_eq(mqe2e_keytree_update_open(&v, u.b, u.n, auth_pk), MQE2E_OK);
    uint8_t want[32], got[32];
    cr_assert_eq(mqe2e_keytree_epoch_secret(t, want), MQE2E_OK);
    for (uint32_t i = 0; i < N; i++) {
        unsigned uw = 0;
        int rc = mqe2e_keytree_pool_apply(p, i, &v, &uw);
        if (i == 17) {
            cr_assert_eq(rc, MQE2E_ERR_TREE_REVOKED);
            cr_assert_eq(mqe2e_keytree_pool_epoch_secret(p, i, got), MQE2E_ERR_STATE);
            continue;
        }
        cr_assert_eq(rc, MQE2E_OK);
        cr_assert_leq(uw, (unsigned)D);
        cr_assert_eq(mqe2e_keytree_pool_epoch(p, i), mqe2e_keytree_epoch(t));
        cr_assert_eq(mqe2e_keytree_pool_epoch_secret(p, i, got), MQE2E_OK);
        cr_assert_eq(memcmp(got, want, 32), 0);
        cr_assert_eq(mqe2e_keytree_pool_apply(p, i, &v, NULL), MQE2E_ERR_REPLAY);
    }
    cr_assert_eq(mqe2e_keytree_pool_apply(p, N, &v, NULL), MQE2E_ERR_INVALID_ARG);
    mqe2e_keytree_pool_free(p);
    mqe2e_keytree_free(other);
    mqe2e_keytree_free(t);
}
