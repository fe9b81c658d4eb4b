/*
 * The two-call API over envelope, replay, policy and keystore.
 *
 * Per-message work is kept to hash lookups: the protector caches, per group,
 * its current epoch and our sender id, and per (group, epoch, sender) the
 * derived sender key (in sodium_malloc() slabs) and the replay window. HKDF
 * runs once per cache miss, never per message, and nothing is allocated on the
 * hot path once the cache has grown to its working size.
 *
 * Receive-side entries are created only after an envelope authenticated, so a
 * flood of forged sender ids or epochs can neither fill the cache nor push
 * genuine senders out of it. Evicted entries save their replay window into the
 * keystore first; a later message from the same sender reloads it.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "internal_bind.h"
#include "internal_envelope_ext.h"
#include "internal_keystore.h"
#include "internal_policy.h"
#include "internal_protect.h"
#include "mqe2e/credential.h"
#include "mqe2e/error.h"
#include "mqe2e/protect.h"
#include "mqe2e/replay.h"

#define NIL UINT32_MAX
/* Sender keys live in sodium_malloc() slabs: one guarded allocation per key
 * would cost several pages and an mmap each. The cache starts at FIRST_SLAB
 * keys and doubles: slab 0 holds FIRST_SLAB keys, slab k >= 1 holds
 * FIRST_SLAB << (k - 1) keys, slots [FIRST_SLAB << (k - 1), FIRST_SLAB << k).
 * A client with one group and a handful of peers so pays for a handful of
 * keys, not for a fixed block sized for a busy receiver. */
#define FIRST_SLAB 8U
#define FIRST_SLAB_SHIFT 3
#define MAX_SLABS 30U /* FIRST_SLAB << 29 > UINT32_MAX */

typedef struct pgroup {
    char id[MQE2E_GROUP_ID_MAX_BYTES + 1];
    size_t len;
    uint64_t hash;
    bool info_valid; /* cur_epoch and my_sender below are current */
    uint32_t cur_epoch;
    uint32_t my_sender;
    bool signed_valid; /* ks_signed below is current */
    bool ks_signed;    /* the keystore marks the group signed */
} pgroup;

typedef struct pentry {
    uint64_t hash;
    uint64_t retired_at; /* of the epoch, when the key was derived (0 = current) */
    uint32_t group;      /* index into groups */
    uint32_t epoch;
    uint32_t sender;
    uint32_t hnext;      /* bucket chain */
    uint32_t prev, next; /* LRU list while in use, free list otherwise */
    uint32_t dirty_pos;  /* index in the dirty list, NIL when clean */
    bool in_use;
    bool key_valid;
    bool win_loaded;
    mqe2e_replay_window win;
} pentry;

/* The policy's answer for one topic, as of policy generation `gen` (0: an
 * empty slot). Topics of LOOKUP_TOPIC_MAX bytes or more are not remembered. */
#define LOOKUP_SLOTS 4U
#define LOOKUP_TOPIC_MAX 128U
typedef struct plookup {
    uint64_t gen;
    size_t len;
    int rc; /* MQE2E_OK or MQE2E_ERR_NO_POLICY */
    mqe2e_policy_kind kind;
    const char *target;
    unsigned flags;
    const mqe2e__bind *bind;
    char topic[LOOKUP_TOPIC_MAX];
} plookup;

typedef struct pretired {
    uint32_t sender;
    char *group;
} pretired;

struct mqe2e_protector {
    mqe2e_keystore *ks;
    const mqe2e_policy *policy;
    uint32_t replay_width;
    uint64_t grace;
    size_t max_payload;
    uint32_t checkpoint_every;
    uint32_t checkpoint_seconds;
    uint32_t since_checkpoint;
    bool clock_seen;        /* now and last_checkpoint_at below are set */
    uint64_t now;           /* latest clock given to unprotect_begin */
    uint64_t last_checkpoint_at;
    mqe2e_counters counters;

    uint8_t hkey[crypto_shorthash_KEYBYTES]; /* keys the hashes: no chosen collisions */
    uint64_t seed;

    pgroup *groups;
    uint32_t ngroups, groups_cap;
    uint32_t *gindex; /* open addressing over groups */
    uint32_t gindex_cap;
    uint32_t last_group; /* most recently interned or found, NIL at first */
    /* The policy's target strings are immutable and live as long as the
     * policy: the last one seen maps to its group by pointer alone. */
    const char *last_target;
    uint32_t last_target_group;

    /* The last few topics' policy answers (a publisher or a subscriber uses
     * a handful of topics): a compare instead of matching every rule. */
    plookup lookups[LOOKUP_SLOTS];
    uint32_t lookup_next; /* the slot to replace next (round robin) */

    pentry *ents;
    uint32_t cap, used, limit;
    uint32_t *buckets;
    uint32_t nbuckets; /* power of two */
    uint32_t lru_head, lru_tail, free_head;
    uint32_t *dirty;
    uint32_t ndirty;
    mqe2e_sender_key **slabs;
    uint32_t nslabs;

    mqe2e_sender_key *scratch_key; /* sodium_malloc(): key derived before it may be cached */
    mqe2e_replay_window scratch_win;

    /* Sender ids the revocation list retires, sorted by sender, then group. */
    pretired *retired;
    size_t n_retired;
};

/* ---------------------------------------------------------------- drop reasons */

mqe2e_drop_reason mqe2e_drop_reason_of(int code)
{
    switch (code) {
    case MQE2E_ERR_DECODE: return MQE2E_DROP_DECODE;
    case MQE2E_ERR_TOO_LARGE: return MQE2E_DROP_TOO_LARGE;
    case MQE2E_ERR_SUITE: return MQE2E_DROP_SUITE;
    case MQE2E_ERR_NO_POLICY: return MQE2E_DROP_NO_POLICY;
    case MQE2E_ERR_POLICY: return MQE2E_DROP_POLICY;
    case MQE2E_ERR_NO_KEY: return MQE2E_DROP_NO_KEY;
    case MQE2E_ERR_EXPIRED: return MQE2E_DROP_EXPIRED;
    case MQE2E_ERR_REPLAY: return MQE2E_DROP_REPLAY;
    case MQE2E_ERR_AUTH: return MQE2E_DROP_AUTH;
    case MQE2E_ERR_UNKNOWN_SIGNER: return MQE2E_DROP_UNKNOWN_SIGNER;
    case MQE2E_ERR_GRANT: return MQE2E_DROP_GRANT;
    case MQE2E_ERR_REVOKED:
        return MQE2E_DROP_REVOKED;
    default: return MQE2E_DROP_OTHER;
    }
}

const char *mqe2e_drop_reason_name(mqe2e_drop_reason r)
{
    switch (r) {
    case MQE2E_DROP_DECODE: return "decode";
    case MQE2E_DROP_TOO_LARGE: return "too_large";
    case MQE2E_DROP_SUITE: return "suite";
    case MQE2E_DROP_NO_POLICY: return "no_policy";
    case MQE2E_DROP_POLICY: return "policy";
    case MQE2E_DROP_NO_KEY: return "no_key";
    case MQE2E_DROP_EXPIRED: return "expired";
    case MQE2E_DROP_REPLAY: return "replay";
    case MQE2E_DROP_AUTH: return "auth";
    case MQE2E_DROP_UNKNOWN_SIGNER: return "unknown_signer";
    case MQE2E_DROP_GRANT: return "grant";
    case MQE2E_DROP_REVOKED:
        return "revoked";
    case MQE2E_DROP_OTHER:
    case MQE2E_DROP_REASON_COUNT:
    default: return "other";
    }
}

void mqe2e_protector_count_drop(mqe2e_protector *p, int code)
{
    if (p == NULL || code == MQE2E_OK) return;
    p->counters.dropped[mqe2e_drop_reason_of(code)]++;
}

void mqe2e_protector_counters(const mqe2e_protector *p, mqe2e_counters *out)
{
    if (out == NULL) return;
    if (p == NULL) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = p->counters;
}

/* ---------------------------------------------------------------- groups */

static uint64_t group_hash(const mqe2e_protector *p, const char *id, size_t len)
{
    uint8_t h[crypto_shorthash_BYTES];
    uint64_t v = 0;
    crypto_shorthash(h, (const unsigned char *)id, (unsigned long long)len, p->hkey);
    for (size_t i = 0; i < sizeof h; i++) v |= (uint64_t)h[i] << (8U * i);
    return v;
}

static uint32_t group_find(const mqe2e_protector *p, const char *id, size_t len, uint64_t h)
{
    if (p->gindex_cap == 0) return NIL;
    uint32_t mask = p->gindex_cap - 1U;
    for (uint32_t i = (uint32_t)h & mask;; i = (i + 1U) & mask) {
        uint32_t gi = p->gindex[i];
        if (gi == NIL) return NIL;
        const pgroup *g = &p->groups[gi];
        if (g->hash == h && g->len == len && memcmp(g->id, id, len) == 0) return gi;
    }
}

static int group_index_rebuild(mqe2e_protector *p, uint32_t cap)
{
    uint32_t *idx = malloc((size_t)cap * sizeof *idx);
    if (idx == NULL) return MQE2E_ERR_NOMEM;
    for (uint32_t i = 0; i < cap; i++) idx[i] = NIL;
    for (uint32_t gi = 0; gi < p->ngroups; gi++) {
        uint32_t j = (uint32_t)p->groups[gi].hash & (cap - 1U);
        while (idx[j] != NIL) j = (j + 1U) & (cap - 1U);
        idx[j] = gi;
    }
    free(p->gindex);
    p->gindex = idx;
    p->gindex_cap = cap;
    return MQE2E_OK;
}

/* Find or add a group by id. Groups come from policy targets only, so their
 * number is bounded by the policy; they are never removed. */
static int group_intern(mqe2e_protector *p, const char *id, uint32_t *gi_out)
{
    if (id == NULL) return MQE2E_ERR_INVALID_ARG;
    if (id == p->last_target) {
        *gi_out = p->last_target_group;
        return MQE2E_OK;
    }
    size_t len = strnlen(id, MQE2E_GROUP_ID_MAX_BYTES + 1U);
    if (len == 0 || len > MQE2E_GROUP_ID_MAX_BYTES) return MQE2E_ERR_INVALID_ARG;
    /* Most traffic is on one group at a time: skip the hash for a repeat. */
    if (p->last_group != NIL && p->groups[p->last_group].len == len &&
        memcmp(p->groups[p->last_group].id, id, len) == 0) {
        *gi_out = p->last_group;
        return MQE2E_OK;
    }
    uint64_t h = group_hash(p, id, len);
    uint32_t gi = group_find(p, id, len, h);
    if (gi != NIL) {
        p->last_group = gi;
        *gi_out = gi;
        return MQE2E_OK;
    }
    if (p->ngroups >= UINT32_MAX / 4U) return MQE2E_ERR_NOMEM;
    if (p->ngroups == p->groups_cap) {
        uint32_t ncap = p->groups_cap == 0 ? 8U : p->groups_cap * 2U;
        pgroup *ng = realloc(p->groups, (size_t)ncap * sizeof *ng);
        if (ng == NULL) return MQE2E_ERR_NOMEM;
        p->groups = ng;
        p->groups_cap = ncap;
    }
    /* Keep the index at most half full so probes stay short. */
    if ((p->ngroups + 1U) * 2U > p->gindex_cap) {
        uint32_t ncap = p->gindex_cap == 0 ? 16U : p->gindex_cap * 2U;
        int rc = group_index_rebuild(p, ncap);
        if (rc != MQE2E_OK) return rc;
    }
    gi = p->ngroups++;
    pgroup *g = &p->groups[gi];
    memset(g, 0, sizeof *g);
    memcpy(g->id, id, len);
    g->len = len;
    g->hash = h;
    uint32_t mask = p->gindex_cap - 1U;
    uint32_t j = (uint32_t)h & mask;
    while (p->gindex[j] != NIL) j = (j + 1U) & mask;
    p->gindex[j] = gi;
    p->last_group = gi;
    *gi_out = gi;
    return MQE2E_OK;
}

/* group_intern() for a policy target, remembering the pointer for the next
 * call: the usual case, one group per topic, costs a pointer compare. */
static int intern_target(mqe2e_protector *p, const char *target, uint32_t *gi_out)
{
    int rc = group_intern(p, target, gi_out);
    if (rc == MQE2E_OK) {
        p->last_target = target;
        p->last_target_group = *gi_out;
    }
    return rc;
}

/* ---------------------------------------------------------------- entry cache */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint64_t entry_hash(const mqe2e_protector *p, uint32_t gi, uint32_t epoch, uint32_t sender)
{
    return mix64(p->seed ^ (((uint64_t)epoch << 32) | sender)) ^ mix64(p->seed + gi + 1U);
}

/* Slab holding slot idx: 0 below FIRST_SLAB, else 1 + floor(log2(idx / FIRST_SLAB)). */
static uint32_t slab_of(uint32_t idx)
{
    uint32_t q = idx >> FIRST_SLAB_SHIFT;
    return q == 0 ? 0U : 32U - (uint32_t)__builtin_clz(q);
}

static uint32_t slab_start(uint32_t k)
{
    return k == 0 ? 0U : FIRST_SLAB << (k - 1U);
}

static uint32_t slab_keys(uint32_t k)
{
    return k == 0 ? FIRST_SLAB : FIRST_SLAB << (k - 1U);
}

static mqe2e_sender_key *key_of(const mqe2e_protector *p, uint32_t idx)
{
    uint32_t k = slab_of(idx);
    return &p->slabs[k][idx - slab_start(k)];
}

static void lru_unlink(mqe2e_protector *p, uint32_t idx)
{
    pentry *e = &p->ents[idx];
    if (e->prev != NIL) p->ents[e->prev].next = e->next;
    else p->lru_head = e->next;
    if (e->next != NIL) p->ents[e->next].prev = e->prev;
    else p->lru_tail = e->prev;
    e->prev = e->next = NIL;
}

static void lru_push_front(mqe2e_protector *p, uint32_t idx)
{
    pentry *e = &p->ents[idx];
    e->prev = NIL;
    e->next = p->lru_head;
    if (p->lru_head != NIL) p->ents[p->lru_head].prev = idx;
    p->lru_head = idx;
    if (p->lru_tail == NIL) p->lru_tail = idx;
}

static uint32_t entry_find(mqe2e_protector *p, uint32_t gi, uint32_t epoch, uint32_t sender,
                           uint64_t h)
{
    if (p->nbuckets == 0) return NIL;
    for (uint32_t i = p->buckets[h & (p->nbuckets - 1U)]; i != NIL; i = p->ents[i].hnext) {
        const pentry *e = &p->ents[i];
        if (e->hash == h && e->group == gi && e->epoch == epoch && e->sender == sender) {
            if (p->lru_head != i) {
                lru_unlink(p, i);
                lru_push_front(p, i);
            }
            return i;
        }
    }
    return NIL;
}

static void dirty_mark(mqe2e_protector *p, uint32_t idx)
{
    pentry *e = &p->ents[idx];
    if (e->dirty_pos != NIL) return;
    e->dirty_pos = p->ndirty;
    p->dirty[p->ndirty++] = idx;
}

static void dirty_clear(mqe2e_protector *p, uint32_t idx)
{
    pentry *e = &p->ents[idx];
    uint32_t pos = e->dirty_pos;
    if (pos == NIL) return;
    uint32_t last = p->dirty[--p->ndirty];
    p->dirty[pos] = last;
    p->ents[last].dirty_pos = pos;
    e->dirty_pos = NIL;
}

static int save_window(mqe2e_protector *p, uint32_t idx)
{
    const pentry *e = &p->ents[idx];
    int rc = mqe2e_keystore_replay_save(p->ks, p->groups[e->group].id, e->epoch, e->sender,
                                        &e->win);
    /* The group left the keystore (removed, or we were revoked): with its
     * secrets gone no message of it can authenticate, and keeping the window
     * dirty would block every later checkpoint. */
    return rc == MQE2E_ERR_NOT_FOUND ? MQE2E_OK : rc;
}

static void entry_wipe_key(mqe2e_protector *p, uint32_t idx)
{
    sodium_memzero(key_of(p, idx), sizeof(mqe2e_sender_key));
    p->ents[idx].key_valid = false;
}

/* Remove an entry, saving its replay window first; if that fails the entry
 * stays, because forgetting a window would let its messages be replayed. */
static int entry_evict(mqe2e_protector *p, uint32_t idx)
{
    pentry *e = &p->ents[idx];
    if (e->dirty_pos != NIL) {
        int rc = save_window(p, idx);
        if (rc != MQE2E_OK) return rc;
        dirty_clear(p, idx);
    }
    entry_wipe_key(p, idx);
    uint32_t *link = &p->buckets[e->hash & (p->nbuckets - 1U)];
    while (*link != idx) link = &p->ents[*link].hnext;
    *link = e->hnext;
    lru_unlink(p, idx);
    e->in_use = false;
    e->win_loaded = false;
    e->next = p->free_head;
    p->free_head = idx;
    p->used--;
    return MQE2E_OK;
}

static int cache_grow(mqe2e_protector *p)
{
    /* Capacity doubles from FIRST_SLAB and never passes the limit. */
    uint32_t ncap = p->cap == 0 ? FIRST_SLAB : (p->cap > UINT32_MAX / 2U ? UINT32_MAX : p->cap * 2U);
    if (ncap > p->limit) ncap = p->limit > p->cap ? p->limit : p->cap;
    if (ncap <= p->cap) return MQE2E_ERR_EXHAUSTED;

    /* Every step below leaves the cache consistent at its old capacity if a
     * later one fails: arrays only get bigger, cap changes last. */
    pentry *ne = realloc(p->ents, (size_t)ncap * sizeof *ne);
    if (ne == NULL) return MQE2E_ERR_NOMEM;
    p->ents = ne;
    uint32_t *nd = realloc(p->dirty, (size_t)ncap * sizeof *nd);
    if (nd == NULL) return MQE2E_ERR_NOMEM;
    p->dirty = nd;
    uint32_t nslabs = slab_of(ncap - 1U) + 1U;
    if (nslabs > MAX_SLABS) return MQE2E_ERR_EXHAUSTED;
    mqe2e_sender_key **ns = realloc(p->slabs, (size_t)nslabs * sizeof *ns);
    if (ns == NULL) return MQE2E_ERR_NOMEM;
    p->slabs = ns;
    while (p->nslabs < nslabs) {
        size_t bytes = (size_t)slab_keys(p->nslabs) * sizeof(mqe2e_sender_key);
        mqe2e_sender_key *slab = sodium_malloc(bytes);
        if (slab == NULL) return MQE2E_ERR_NOMEM;
        sodium_memzero(slab, bytes);
        p->slabs[p->nslabs++] = slab;
    }
    uint32_t nb = 16U;
    while (nb < ncap) nb *= 2U;
    uint32_t *buckets = malloc((size_t)nb * sizeof *buckets);
    if (buckets == NULL) return MQE2E_ERR_NOMEM;
    for (uint32_t i = 0; i < nb; i++) buckets[i] = NIL;
    for (uint32_t i = 0; i < p->cap; i++) {
        pentry *e = &p->ents[i];
        if (!e->in_use) continue;
        uint32_t b = (uint32_t)(e->hash & (nb - 1U));
        e->hnext = buckets[b];
        buckets[b] = i;
    }
    free(p->buckets);
    p->buckets = buckets;
    p->nbuckets = nb;
    /* New slots go on the free list in ascending order. */
    for (uint32_t i = ncap; i-- > p->cap;) {
        pentry *e = &p->ents[i];
        memset(e, 0, sizeof *e);
        e->prev = NIL;
        e->hnext = NIL;
        e->dirty_pos = NIL;
        e->next = p->free_head;
        p->free_head = i;
    }
    p->cap = ncap;
    return MQE2E_OK;
}

/* Add an entry (key and window not yet valid), evicting LRU entries when the
 * cache is at its limit. */
static int entry_insert(mqe2e_protector *p, uint32_t gi, uint32_t epoch, uint32_t sender,
                        uint64_t h, uint32_t *idx_out)
{
    if (p->free_head == NIL && p->used < p->limit) {
        /* On failure, fall back to evicting below. */
        (void)cache_grow(p);
    }
    while (p->free_head == NIL || p->used >= p->limit) {
        if (p->lru_tail == NIL) return MQE2E_ERR_NOMEM;
        int rc = entry_evict(p, p->lru_tail);
        if (rc != MQE2E_OK) return rc;
    }
    uint32_t idx = p->free_head;
    pentry *e = &p->ents[idx];
    p->free_head = e->next;
    e->hash = h;
    e->retired_at = 0;
    e->group = gi;
    e->epoch = epoch;
    e->sender = sender;
    e->dirty_pos = NIL;
    e->in_use = true;
    e->key_valid = false;
    e->win_loaded = false;
    uint32_t b = (uint32_t)(h & (p->nbuckets - 1U));
    e->hnext = p->buckets[b];
    p->buckets[b] = idx;
    lru_push_front(p, idx);
    p->used++;
    *idx_out = idx;
    return MQE2E_OK;
}

int mqe2e__protector_set_cache_limit(mqe2e_protector *p, uint32_t limit)
{
    if (p == NULL || limit == 0) return MQE2E_ERR_INVALID_ARG;
    p->limit = limit;
    return MQE2E_OK;
}

size_t mqe2e__protector_cache_size(const mqe2e_protector *p)
{
    return p == NULL ? 0U : p->used;
}

size_t mqe2e__protector_cache_capacity(const mqe2e_protector *p)
{
    return p == NULL ? 0U : p->cap;
}

/* ---------------------------------------------------------------- keys and windows */

static bool epoch_expired(const mqe2e_protector *p, uint64_t retired_at, uint64_t now)
{
    /* Written to avoid overflowing retired_at + grace. */
    return retired_at != 0 && now > retired_at && now - retired_at > p->grace;
}

/* Derive the sender key of (group, epoch, sender) from the keystore's secret. */
static int key_derive(mqe2e_protector *p, uint32_t gi, uint32_t epoch, uint32_t sender,
                      mqe2e_sender_key *key, uint64_t *retired_at)
{
    uint8_t secret[MQE2E_GROUP_SECRET_BYTES];
    const char *id = p->groups[gi].id;
    int rc = mqe2e_keystore_group_secret(p->ks, id, epoch, secret, retired_at);
    if (rc == MQE2E_ERR_NOT_FOUND) rc = MQE2E_ERR_NO_KEY;
    if (rc != MQE2E_OK) goto out;
    rc = mqe2e_sender_key_derive(key, secret, id, epoch, sender);
out:
    sodium_memzero(secret, sizeof secret);
    return rc;
}

static int window_load(mqe2e_protector *p, uint32_t gi, uint32_t epoch, uint32_t sender,
                       mqe2e_replay_window *w)
{
    int rc = mqe2e_keystore_replay_load(p->ks, p->groups[gi].id, epoch, sender, w);
    if (rc == MQE2E_ERR_NOT_FOUND) rc = mqe2e_replay_init(w, p->replay_width);
    return rc;
}

/* ---------------------------------------------------------------- lifecycle */

int mqe2e_protector_new(mqe2e_protector **out, mqe2e_keystore *ks, const mqe2e_policy *policy,
                        const mqe2e_protector_options *opts)
{
    if (out == NULL) return MQE2E_ERR_INVALID_ARG;
    *out = NULL;
    if (ks == NULL || policy == NULL) return MQE2E_ERR_INVALID_ARG;
    int rc = mqe2e_init();
    if (rc != MQE2E_OK) return rc;
    mqe2e_protector_options o = MQE2E_PROTECTOR_OPTIONS_INIT;
    if (opts != NULL) {
        if (opts->struct_version < 1U) return MQE2E_ERR_INVALID_ARG;
        /* A version 1 caller's struct ends before checkpoint_seconds. */
        o.replay_width = opts->replay_width;
        o.epoch_grace_seconds = opts->epoch_grace_seconds;
        o.max_payload = opts->max_payload;
        o.checkpoint_every = opts->checkpoint_every;
        if (opts->struct_version >= 2U) o.checkpoint_seconds = opts->checkpoint_seconds;
    }
    mqe2e_replay_window probe;
    if (mqe2e_replay_init(&probe, o.replay_width) != MQE2E_OK) return MQE2E_ERR_INVALID_ARG;
    if (o.max_payload == 0) o.max_payload = MQE2E_ENVELOPE_DEFAULT_MAX_PAYLOAD;
    if (o.max_payload > MQE2E_ENVELOPE_MAX_PAYLOAD) return MQE2E_ERR_INVALID_ARG;
    if (o.checkpoint_every == 0) o.checkpoint_every = MQE2E_CHECKPOINT_DEFAULT_EVERY;
    if (o.checkpoint_seconds == 0) o.checkpoint_seconds = MQE2E_CHECKPOINT_DEFAULT_SECONDS;

    mqe2e_protector *p = calloc(1, sizeof *p);
    if (p == NULL) return MQE2E_ERR_NOMEM;
    p->scratch_key = sodium_malloc(sizeof *p->scratch_key);
    if (p->scratch_key == NULL) {
        free(p);
        return MQE2E_ERR_NOMEM;
    }
    sodium_memzero(p->scratch_key, sizeof *p->scratch_key);
    p->ks = ks;
    p->policy = policy;
    p->replay_width = o.replay_width;
    p->grace = o.epoch_grace_seconds;
    p->max_payload = o.max_payload;
    p->checkpoint_every = o.checkpoint_every;
    p->checkpoint_seconds = o.checkpoint_seconds;
    crypto_shorthash_keygen(p->hkey);
    randombytes_buf(&p->seed, sizeof p->seed);
    p->limit = MQE2E__PROTECT_CACHE_DEFAULT_LIMIT;
    p->lru_head = p->lru_tail = p->free_head = p->last_group = NIL;
    *out = p;
    return MQE2E_OK;
}

int mqe2e_protector_checkpoint(mqe2e_protector *p)
{
    if (p == NULL) return MQE2E_ERR_INVALID_ARG;
    /* A window stays dirty until it was handed to the keystore, so a failed
     * checkpoint is simply retried by the next one. */
    while (p->ndirty > 0) {
        uint32_t idx = p->dirty[p->ndirty - 1U];
        int rc = save_window(p, idx);
        if (rc != MQE2E_OK) return rc;
        dirty_clear(p, idx);
    }
    p->since_checkpoint = 0;
    p->last_checkpoint_at = p->now;
    /* Nothing new to write (no window moved): skip rewriting the keystore. */
    if (!mqe2e__keystore_dirty(p->ks)) return MQE2E_OK;
    return mqe2e_keystore_flush(p->ks);
}

void mqe2e_protector_free(mqe2e_protector *p)
{
    if (p == NULL) return;
    (void)mqe2e_protector_checkpoint(p);
    for (uint32_t i = 0; i < p->nslabs; i++) {
        sodium_memzero(p->slabs[i], (size_t)slab_keys(i) * sizeof(mqe2e_sender_key));
        sodium_free(p->slabs[i]);
    }
    sodium_memzero(p->scratch_key, sizeof *p->scratch_key);
    sodium_free(p->scratch_key);
    free(p->slabs);
    free(p->ents);
    free(p->dirty);
    free(p->buckets);
    free(p->groups);
    free(p->gindex);
    (void)mqe2e_protector_set_revocations(p, NULL);
    sodium_memzero(p, sizeof *p);
    free(p);
}

static int retired_cmp(const void *a, const void *b)
{
    const pretired *x = a;
    const pretired *y = b;
    if (x->sender != y->sender) return x->sender > y->sender ? 1 : -1;
    return strcmp(x->group, y->group);
}

static void retired_free(pretired *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(r[i].group);
    free(r);
}

int mqe2e_protector_set_revocations(mqe2e_protector *p, const struct mqe2e_revocation_list *rl)
{
    if (p == NULL) return MQE2E_ERR_INVALID_ARG;
    size_t n = mqe2e_revocation_list_retired_count(rl);
    pretired *r = NULL;
    if (n > 0) {
        if ((r = calloc(n, sizeof *r)) == NULL) return MQE2E_ERR_NOMEM;
        for (size_t i = 0; i < n; i++) {
            mqe2e_retired_sender s;
            if (mqe2e_revocation_list_retired(rl, i, &s) != MQE2E_OK ||
                (r[i].group = strdup(s.group_id)) == NULL) {
                retired_free(r, i);
                return MQE2E_ERR_NOMEM;
            }
            r[i].sender = s.sender_id;
        }
        qsort(r, n, sizeof *r, retired_cmp);
    }
    retired_free(p->retired, p->n_retired);
    p->retired = r;
    p->n_retired = n;
    return MQE2E_OK;
}

static bool sender_retired(const mqe2e_protector *p, const char *group, uint32_t sender)
{
    if (p->n_retired == 0) return false;
    pretired key = {sender, (char *)(uintptr_t)group};
    return bsearch(&key, p->retired, p->n_retired, sizeof *p->retired, retired_cmp) != NULL;
}

void mqe2e_protector_invalidate(mqe2e_protector *p, const char *group_id)
{
    if (p == NULL) return;
    uint32_t gi = NIL;
    if (group_id != NULL) {
        size_t len = strnlen(group_id, MQE2E_GROUP_ID_MAX_BYTES + 1U);
        if (len == 0 || len > MQE2E_GROUP_ID_MAX_BYTES) return;
        gi = group_find(p, group_id, len, group_hash(p, group_id, len));
        if (gi == NIL) return; /* nothing cached for it */
        p->groups[gi].info_valid = false;
        p->groups[gi].signed_valid = false;
    } else {
        for (uint32_t g = 0; g < p->ngroups; g++) {
            p->groups[g].info_valid = false;
            p->groups[g].signed_valid = false;
        }
    }
    /* Windows stay: they are about sequence numbers already seen, which a
     * change of keys does not undo. */
    for (uint32_t i = 0; i < p->cap; i++) {
        if (p->ents[i].in_use && (gi == NIL || p->ents[i].group == gi)) entry_wipe_key(p, i);
    }
}

size_t mqe2e_protect_bound(size_t pt_len)
{
    size_t b = mqe2e_envelope_signed_sealed_bound(pt_len);
    return b < pt_len ? pt_len : b;
}

/* Signed mode on a group topic: the rule asks for it, or the keystore marks
 * the group signed (e.g. the authority did), whichever policy the caller built. */
static bool group_signed(mqe2e_protector *p, uint32_t gi, unsigned rule_flags)
{
    pgroup *g = &p->groups[gi];
    if ((rule_flags & MQE2E_POLICY_FLAG_SIGNED) != 0) return true;
    if (!g->signed_valid) {
        g->ks_signed = mqe2e_keystore_group_is_signed(p->ks, g->id) != 0;
        g->signed_valid = true;
    }
    return g->ks_signed;
}

/* The identity key never leaves the keystore: sign through it. */
static int sign_with_keystore(void *ctx, uint8_t sig[MQE2E_SIGNATURE_BYTES], const uint8_t *msg,
                              size_t msg_len)
{
    const mqe2e_keystore *ks = ctx;
    return mqe2e_keystore_sign(ks, sig, msg, msg_len) == MQE2E_OK ? MQE2E_OK : MQE2E_ERR_STATE;
}

/* ---------------------------------------------------------------- policy */

/* mqe2e__policy_lookup_bind() through the protector's small cache. An entry
 * counts only under the policy generation it was made in, so a rule added
 * (a grant from the authority) or a bind list replaced is seen at the next
 * message. Invalid topics are never remembered: they are refused each time. */
static int policy_lookup(mqe2e_protector *p, const char *topic, mqe2e_policy_kind *kind,
                         const char **target, unsigned *flags, const mqe2e__bind **bind)
{
    const uint64_t gen = mqe2e__policy_generation(p->policy);
    const size_t len = topic != NULL ? strnlen(topic, LOOKUP_TOPIC_MAX) : LOOKUP_TOPIC_MAX;

    if (len < LOOKUP_TOPIC_MAX) {
        for (uint32_t i = 0; i < LOOKUP_SLOTS; i++) {
            const plookup *e = &p->lookups[i];
            if (e->gen == gen && e->len == len && memcmp(e->topic, topic, len) == 0) {
                *kind = e->kind;
                *target = e->target;
                *flags = e->flags;
                *bind = e->bind;
                return e->rc;
            }
        }
    }
    int rc = mqe2e__policy_lookup_bind(p->policy, topic, kind, target, flags, bind);
    if (len < LOOKUP_TOPIC_MAX && (rc == MQE2E_OK || rc == MQE2E_ERR_NO_POLICY)) {
        plookup *e = &p->lookups[p->lookup_next];
        p->lookup_next = (p->lookup_next + 1U) % LOOKUP_SLOTS;
        e->gen = gen;
        e->len = len;
        memcpy(e->topic, topic, len);
        e->rc = rc;
        e->kind = rc == MQE2E_OK ? *kind : MQE2E_POLICY_PLAINTEXT;
        e->target = rc == MQE2E_OK ? *target : NULL;
        e->flags = rc == MQE2E_OK ? *flags : 0U;
        e->bind = rc == MQE2E_OK ? *bind : NULL;
    }
    return rc;
}

int mqe2e__protector_policy_lookup(mqe2e_protector *p, const char *topic, mqe2e_policy_kind *kind,
                                   const char **target)
{
    unsigned flags = 0;
    const mqe2e__bind *bind = NULL;

    if (p == NULL || kind == NULL || target == NULL) return MQE2E_ERR_INVALID_ARG;
    return policy_lookup(p, topic, kind, target, &flags, &bind);
}

/* ---------------------------------------------------------------- protect */

static int protect_group(mqe2e_protector *p, const char *target, unsigned flags,
                         const char *topic, const uint8_t *pt, size_t pt_len, uint64_t now,
                         uint8_t *out, size_t out_cap, size_t *out_len, const mqe2e__ad_ext *ext)
{
    uint32_t gi;
    int rc = intern_target(p, target, &gi);
    if (rc != MQE2E_OK) return rc;
    /* Checked before a sequence number is taken, so a short buffer burns none. */
    if (out_cap < mqe2e_protect_bound(pt_len)) return MQE2E_ERR_BUFFER_TOO_SMALL;
    pgroup *g = &p->groups[gi];
    if (!g->info_valid) {
        rc = mqe2e_keystore_group_current_epoch(p->ks, g->id, &g->cur_epoch);
        if (rc == MQE2E_OK) rc = mqe2e_keystore_group_sender_id(p->ks, g->id, &g->my_sender);
        if (rc == MQE2E_ERR_NOT_FOUND) rc = MQE2E_ERR_NO_KEY;
        if (rc != MQE2E_OK) return rc;
        g->info_valid = true;
    }
    uint32_t epoch = g->cur_epoch, sender = g->my_sender;
    uint64_t h = entry_hash(p, gi, epoch, sender);
    uint32_t idx = entry_find(p, gi, epoch, sender, h);
    if (idx == NIL) {
        rc = entry_insert(p, gi, epoch, sender, h, &idx);
        if (rc != MQE2E_OK) return rc;
    }
    if (!p->ents[idx].key_valid) {
        uint64_t retired_at = 0;
        rc = key_derive(p, gi, epoch, sender, key_of(p, idx), &retired_at);
        if (rc != MQE2E_OK) {
            entry_wipe_key(p, idx);
            return rc;
        }
        p->ents[idx].key_valid = true;
        p->ents[idx].retired_at = retired_at;
    }
    bool sign = group_signed(p, gi, flags);
    mqe2e_envelope_header hdr = {.mode = sign ? MQE2E_MODE_SIGNED_GROUP : MQE2E_MODE_GROUP,
                                 .epoch = epoch, .sender_id = sender};
    rc = mqe2e__keystore_next_seq_at(p->ks, g->id, now, &hdr.seq, &hdr.instance);
    if (rc == MQE2E_ERR_NOT_FOUND) rc = MQE2E_ERR_NO_KEY;
    if (rc != MQE2E_OK) return rc;
    if (sign) {
        rc = mqe2e__envelope_seal_signed_ext(out, out_cap, out_len, key_of(p, idx), topic, g->id,
                                             &hdr, pt, pt_len, sign_with_keystore, p->ks, ext);
    } else {
        rc = mqe2e__envelope_seal_ext(out, out_cap, out_len, key_of(p, idx), topic, g->id, &hdr,
                                      pt, pt_len, ext);
    }
    if (rc != MQE2E_OK) return rc;
    p->counters.sealed++;
    return MQE2E_OK;
}

int mqe2e_protect(mqe2e_protector *p, const char *topic, const uint8_t *pt, size_t pt_len,
                  uint64_t now, uint8_t *out, size_t out_cap, size_t *out_len)
{
    return mqe2e_protect_meta(p, topic, NULL, pt, pt_len, now, out, out_cap, out_len);
}

int mqe2e_protect_meta(mqe2e_protector *p, const char *topic, const mqe2e_msg_meta *meta,
                       const uint8_t *pt, size_t pt_len, uint64_t now, uint8_t *out,
                       size_t out_cap, size_t *out_len)
{
    /* The current epoch is whatever the keystore says is newest; the clock
     * only sizes sequence reservations. */
    if (out_len != NULL) *out_len = 0;
    if (p == NULL || topic == NULL || out_len == NULL || (pt == NULL && pt_len != 0) ||
        out == NULL) {
        return MQE2E_ERR_INVALID_ARG;
    }
    mqe2e_policy_kind kind;
    const char *target = NULL;
    unsigned flags = 0;
    const mqe2e__bind *bind = NULL;
    int rc = policy_lookup(p, topic, &kind, &target, &flags, &bind);
    if (rc != MQE2E_OK) return rc;
    if (pt_len > p->max_payload) return MQE2E_ERR_TOO_LARGE;
    switch (kind) {
    case MQE2E_POLICY_PLAINTEXT:
        if (pt_len > out_cap) return MQE2E_ERR_BUFFER_TOO_SMALL;
        if (pt_len > 0) memmove(out, pt, pt_len);
        *out_len = pt_len;
        p->counters.plaintext_out++;
        return MQE2E_OK;
    case MQE2E_POLICY_GROUP:
        if (target == NULL) return MQE2E_ERR_POLICY;
        if (bind == NULL)
            return protect_group(p, target, flags, topic, pt, pt_len, now, out, out_cap, out_len,
                                 NULL);
        /* Built before a sequence number is taken: a bad property burns none. */
        uint8_t *suffix = NULL;
        mqe2e__ad_ext ext = {NULL, 0};
        rc = mqe2e__bind_ad(bind, meta, meta != NULL && meta->retain, &suffix, &ext.len);
        if (rc != MQE2E_OK) return rc;
        ext.bytes = suffix;
        rc = protect_group(p, target, flags, topic, pt, pt_len, now, out, out_cap, out_len, &ext);
        free(suffix);
        return rc;
    case MQE2E_POLICY_CHANNEL:
    default:
        /* Pairwise channels are not served here: refusing beats any fallback. */
        return MQE2E_ERR_POLICY;
    }
}

/* ---------------------------------------------------------------- unprotect */

/* The AEAD (and signature) with the AD suffix as received; when the rule
 * binds retain and the message arrived with retain 0, once more with retain
 * 1: brokers clear the flag on live delivery of a retained publish
 * (section 2.5.1). Never the other way round. */
static int open_bound(mqe2e_protector *p, bool is_signed, uint32_t gi, const char *topic,
                      const mqe2e_envelope_view *view, const mqe2e_sender_key *key,
                      const uint8_t *signer_pk, uint8_t *out, size_t out_cap, size_t *out_len,
                      const mqe2e__bind *bind, const mqe2e_msg_meta *meta)
{
    const char *gid = p->groups[gi].id;
    const int retain = meta != NULL && meta->retain;
    int tries = bind != NULL && (bind->items & MQE2E__BIND_RETAIN) != 0 && !retain ? 2 : 1;
    int rc = MQE2E_ERR_AUTH;

    if (bind == NULL) {
        return is_signed ? mqe2e_envelope_open_signed(out, out_cap, out_len, key, signer_pk, topic,
                                                      gid, view)
                         : mqe2e_envelope_open(out, out_cap, out_len, key, topic, gid, view);
    }
    for (int t = 0; t < tries; t++) {
        uint8_t *suffix = NULL;
        mqe2e__ad_ext ext = {NULL, 0};
        rc = mqe2e__bind_ad(bind, meta, t == 0 ? retain : 1, &suffix, &ext.len);
        if (rc != MQE2E_OK) return rc;
        ext.bytes = suffix;
        rc = is_signed ? mqe2e__envelope_open_signed_ext(out, out_cap, out_len, key, signer_pk,
                                                         topic, gid, view, &ext)
                       : mqe2e__envelope_open_ext(out, out_cap, out_len, key, topic, gid, view,
                                                  &ext);
        free(suffix);
        if (rc != MQE2E_ERR_AUTH) break;
    }
    return rc;
}

static int unprotect_group(mqe2e_protector *p, const char *target, unsigned flags,
                           const char *topic, const uint8_t *in, size_t in_len, uint64_t now,
                           uint8_t *out, size_t out_cap, size_t *out_len, mqe2e_receipt *receipt,
                           const mqe2e__bind *bind, const mqe2e_msg_meta *meta)
{
    if (in_len > mqe2e_envelope_signed_sealed_bound(p->max_payload)) return MQE2E_ERR_TOO_LARGE;
    uint32_t gi;
    int rc = intern_target(p, target, &gi);
    if (rc != MQE2E_OK) return rc;
    mqe2e_envelope_view view;
    rc = mqe2e_envelope_parse(&view, in, in_len);
    if (rc != MQE2E_OK) return rc;
    /* A revoked device's sender ids are dead in every epoch, grace or not:
     * ids are never handed out again within a group (docs/CREDENTIALS.md,
     * "Retired sender ids"; PROTOCOL.md section 4, step 1a). */
    if (sender_retired(p, p->groups[gi].id, view.header.sender_id)) return MQE2E_ERR_REVOKED;
    /* Each group topic takes exactly its mode: a signed topic signed
     * envelopes only (a member re-sealing in group mode could otherwise speak
     * as anyone), an unsigned one group envelopes only. */
    bool is_signed = group_signed(p, gi, flags);
    if (view.header.mode != (is_signed ? MQE2E_MODE_SIGNED_GROUP : MQE2E_MODE_GROUP))
        return MQE2E_ERR_POLICY;
    uint8_t signer_pk[MQE2E_SIGN_PUBLIC_BYTES];
    if (is_signed) {
        rc = mqe2e_keystore_signer_lookup(p->ks, p->groups[gi].id, view.header.sender_id,
                                          signer_pk, NULL);
        if (rc == MQE2E_ERR_NOT_FOUND) {
            /* A group this keystore does not hold is a missing key, not a stranger. */
            return mqe2e_keystore_group_filter(p->ks, p->groups[gi].id) == NULL
                       ? MQE2E_ERR_NO_KEY
                       : MQE2E_ERR_UNKNOWN_SIGNER;
        }
        if (rc != MQE2E_OK) return rc;
    }
    size_t pt_need = view.ciphertext_len - MQE2E_TAG_BYTES;
    if (pt_need > p->max_payload) return MQE2E_ERR_TOO_LARGE;
    if (pt_need > out_cap) return MQE2E_ERR_BUFFER_TOO_SMALL;

    uint32_t epoch = view.header.epoch, sender = view.header.sender_id;
    uint64_t seq = view.header.seq;
    uint64_t h = entry_hash(p, gi, epoch, sender);
    uint32_t idx = entry_find(p, gi, epoch, sender, h);
    const mqe2e_sender_key *key;
    const mqe2e_replay_window *win;
    bool key_fresh = false, win_fresh = false;
    uint64_t retired_at = 0;

    if (idx != NIL && p->ents[idx].key_valid) {
        if (epoch_expired(p, p->ents[idx].retired_at, now)) return MQE2E_ERR_EXPIRED;
        key = key_of(p, idx);
    } else {
        /* Derived into scratch: it enters the cache only once a message under
         * it authenticated. */
        rc = key_derive(p, gi, epoch, sender, p->scratch_key, &retired_at);
        key_fresh = true;
        if (rc == MQE2E_OK && epoch_expired(p, retired_at, now)) rc = MQE2E_ERR_EXPIRED;
        if (rc != MQE2E_OK) goto out;
        key = p->scratch_key;
    }
    if (idx != NIL && p->ents[idx].win_loaded) {
        win = &p->ents[idx].win;
    } else {
        rc = window_load(p, gi, epoch, sender, &p->scratch_win);
        if (rc != MQE2E_OK) goto out;
        win = &p->scratch_win;
        win_fresh = true;
    }
    rc = mqe2e_replay_check(win, seq);
    if (rc != MQE2E_OK) goto out;
    /* Signature before decryption; nothing is cached or recorded before both passed. */
    rc = open_bound(p, is_signed, gi, topic, &view, key, signer_pk, out, out_cap, out_len, bind,
                    meta);
    if (rc != MQE2E_OK) goto out;

    if (idx == NIL && entry_insert(p, gi, epoch, sender, h, &idx) != MQE2E_OK) {
        /* Not cached: the message is still good, commit reloads the window. */
        idx = NIL;
    }
    if (idx != NIL) {
        pentry *e = &p->ents[idx];
        if (key_fresh) {
            memcpy(key_of(p, idx), p->scratch_key, sizeof *p->scratch_key);
            e->retired_at = retired_at;
            e->key_valid = true;
        }
        if (win_fresh) {
            e->win = p->scratch_win;
            e->win_loaded = true;
        }
    }
    receipt->active = 1;
    receipt->epoch = epoch;
    receipt->sender_id = sender;
    receipt->seq = seq;
    memcpy(receipt->group_id, p->groups[gi].id, p->groups[gi].len + 1U);
out:
    if (key_fresh) sodium_memzero(p->scratch_key, sizeof *p->scratch_key);
    return rc;
}

int mqe2e_unprotect_begin(mqe2e_protector *p, const char *topic, const uint8_t *in, size_t in_len,
                          uint64_t now, uint8_t *out, size_t out_cap, size_t *out_len,
                          mqe2e_receipt *receipt)
{
    return mqe2e_unprotect_begin_meta(p, topic, NULL, in, in_len, now, out, out_cap, out_len,
                                      receipt);
}

int mqe2e_unprotect_begin_meta(mqe2e_protector *p, const char *topic, const mqe2e_msg_meta *meta,
                               const uint8_t *in, size_t in_len, uint64_t now, uint8_t *out,
                               size_t out_cap, size_t *out_len, mqe2e_receipt *receipt)
{
    int rc;
    if (receipt != NULL) receipt->active = 0;
    if (out_len != NULL) *out_len = 0;
    if (p == NULL) return MQE2E_ERR_INVALID_ARG;
    if (!p->clock_seen || now < p->now) {
        /* First clock, or it went backwards: time the next checkpoint from here. */
        p->last_checkpoint_at = now;
        p->clock_seen = true;
    }
    p->now = now;
    if (topic == NULL || out_len == NULL || receipt == NULL || (in == NULL && in_len != 0) ||
        (out == NULL && out_cap != 0)) {
        rc = MQE2E_ERR_INVALID_ARG;
        goto fail;
    }
    mqe2e_policy_kind kind;
    const char *target = NULL;
    unsigned flags = 0;
    const mqe2e__bind *bind = NULL;
    rc = policy_lookup(p, topic, &kind, &target, &flags, &bind);
    if (rc != MQE2E_OK) goto fail;
    switch (kind) {
    case MQE2E_POLICY_PLAINTEXT:
        if (in_len > out_cap) {
            rc = MQE2E_ERR_BUFFER_TOO_SMALL;
            goto fail;
        }
        if (in_len > 0) memmove(out, in, in_len);
        *out_len = in_len;
        p->counters.plaintext_in++;
        return MQE2E_OK;
    case MQE2E_POLICY_GROUP:
        if (target == NULL) {
            rc = MQE2E_ERR_POLICY;
            goto fail;
        }
        rc = unprotect_group(p, target, flags, topic, in, in_len, now, out, out_cap, out_len,
                             receipt, bind, meta);
        if (rc == MQE2E_OK) return MQE2E_OK;
        goto fail;
    case MQE2E_POLICY_CHANNEL:
    default:
        rc = MQE2E_ERR_POLICY;
        goto fail;
    }
fail:
    /* Nothing longer than the input is ever written to out. */
    if (out != NULL && out_cap > 0) sodium_memzero(out, out_cap < in_len ? out_cap : in_len);
    if (out_len != NULL) *out_len = 0;
    if (receipt != NULL) receipt->active = 0;
    mqe2e_protector_count_drop(p, rc);
    return rc;
}

static bool checkpoint_due_by_time(const mqe2e_protector *p)
{
    return p->checkpoint_seconds != UINT32_MAX && p->clock_seen &&
           p->now - p->last_checkpoint_at >= p->checkpoint_seconds;
}

int mqe2e_unprotect_commit(mqe2e_protector *p, const mqe2e_receipt *receipt)
{
    if (p == NULL || receipt == NULL) return MQE2E_ERR_INVALID_ARG;
    if (!receipt->active) return MQE2E_OK;
    uint32_t gi;
    int rc = group_intern(p, receipt->group_id, &gi);
    if (rc != MQE2E_OK) goto fail;
    uint64_t h = entry_hash(p, gi, receipt->epoch, receipt->sender_id);
    uint32_t idx = entry_find(p, gi, receipt->epoch, receipt->sender_id, h);
    if (idx == NIL) {
        rc = entry_insert(p, gi, receipt->epoch, receipt->sender_id, h, &idx);
        if (rc != MQE2E_OK) goto fail;
    }
    pentry *e = &p->ents[idx];
    if (!e->win_loaded) {
        rc = window_load(p, gi, receipt->epoch, receipt->sender_id, &e->win);
        if (rc != MQE2E_OK) goto fail;
        e->win_loaded = true;
    }
    rc = mqe2e_replay_update(&e->win, receipt->seq);
    if (rc != MQE2E_OK) goto fail;
    dirty_mark(p, idx);
    p->counters.opened++;
    p->since_checkpoint++;
    if (p->since_checkpoint >= p->checkpoint_every || checkpoint_due_by_time(p)) {
        /* The message is recorded in memory either way; a failed checkpoint
         * leaves the windows dirty and is retried at the next one. */
        (void)mqe2e_protector_checkpoint(p);
    }
    return MQE2E_OK;
fail:
    mqe2e_protector_count_drop(p, rc);
    return rc;
}

int mqe2e_unprotect(mqe2e_protector *p, const char *topic, const uint8_t *in, size_t in_len,
                    uint64_t now, uint8_t *out, size_t out_cap, size_t *out_len)
{
    mqe2e_receipt receipt;
    int rc = mqe2e_unprotect_begin(p, topic, in, in_len, now, out, out_cap, out_len, &receipt);
    if (rc != MQE2E_OK) return rc;
    rc = mqe2e_unprotect_commit(p, &receipt);
    if (rc != MQE2E_OK) {
        if (out_cap > 0) sodium_memzero(out, out_cap < in_len ? out_cap : in_len);
        *out_len = 0;
    }
    sodium_memzero(&receipt, sizeof receipt);
    return rc;
}

/* ---------------------------------------------------------------- policy helper */

int mqe2e_policy_add_keystore_groups(mqe2e_policy *p, const mqe2e_keystore *ks)
{
    if (p == NULL || ks == NULL) return MQE2E_ERR_INVALID_ARG;
    size_t n = mqe2e_keystore_group_count(ks);
    for (size_t i = 0; i < n; i++) {
        const char *name = mqe2e_keystore_group_name(ks, i);
        const char *filter = name != NULL ? mqe2e_keystore_group_filter(ks, name) : NULL;
        if (filter == NULL) return MQE2E_ERR_NOT_FOUND;
        unsigned flags = mqe2e_keystore_group_is_signed(ks, name) ? MQE2E_POLICY_FLAG_SIGNED : 0U;
        int rc = mqe2e_policy_add_flags(p, filter, MQE2E_POLICY_GROUP, name, flags);
        if (rc != MQE2E_OK) return rc;
    }
    return MQE2E_OK;
}
