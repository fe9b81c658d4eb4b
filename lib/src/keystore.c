/*
 * The keystore: identity keys, groups with their epochs, sequence
 * reservations and replay checkpoints, persisted as the protobuf
 * mqe2e.v1.KeystoreState through a storage backend (docs/KEYSTORE.md).
 *
 * Secrets (identity secret keys, epoch secrets) live in sodium_malloc()
 * memory. Serialized state is packed into sodium_malloc() memory, and
 * unpacked with an allocator that wipes every block it frees, so no secret
 * lingers in freed heap memory.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "internal_keystore.h"
#include "mqe2e/error.h"
#include "mqe2e/keystore.h"
#include "mqe2e/policy.h"
#include "mqe2e/storage.h"
#include "proto/keystore.pb-c.h"

#define KS_FORMAT 1U
#define KS_SIGN_SECRET_BYTES crypto_sign_SECRETKEYBYTES
#define KS_DH_SECRET_BYTES crypto_box_SECRETKEYBYTES
#define KS_SEQ_BLOCK_MAX (1U << 20)
#define KS_SENDER_ID_KEY "mqe2e/v1/sender-id"
/* Adaptive reservation: a block used up within KS_SEQ_FAST_SECONDS of the
 * previous reservation doubles the next one, up to KS_SEQ_ADAPTIVE_MAX, so a
 * fast publisher rarely writes; a slow one falls back to the base block,
 * which keeps sequence numbers (and their varints) small across restarts. */
#define KS_SEQ_ADAPTIVE_MAX 65536U
#define KS_SEQ_FAST_SECONDS 60U
/* Epoch secrets share sodium_malloc() slabs: one guarded allocation per
 * 32-byte secret would map 16 KiB and lock a page each. 127 slots of 32
 * bytes plus libsodium's 16-byte canary fill exactly one 4 KiB page. */
#define KS_SLAB_SLOTS 127U
#define KS_NIL UINT32_MAX

typedef struct ks_secret {
    uint8_t b[MQE2E_GROUP_SECRET_BYTES];
} ks_secret;

typedef struct ks_slab {
    ks_secret *mem;   /* sodium_malloc(), KS_SLAB_SLOTS secrets */
    uint64_t used[2]; /* bit i: slot i holds a live secret */
    uint32_t n_used;
} ks_slab;

typedef struct ks_epoch {
    uint32_t epoch;
    uint64_t created_at;
    uint64_t retired_at; /* 0 while current */
    ks_secret *secret;   /* a slot of a ks_slab */
} ks_epoch;

typedef struct ks_checkpoint {
    uint32_t epoch;
    uint32_t sender;
    mqe2e_replay_window w;
} ks_checkpoint;

typedef struct ks_signer {
    uint32_t sender;
    uint8_t pk[MQE2E_SIGN_PUBLIC_BYTES];
    char *client_id; /* "" when unknown, never NULL */
} ks_signer;

typedef struct ks_group {
    char *name;
    char *filter;
    uint32_t sender;
    int signed_mode;       /* topics of the group require signed envelopes */
    ks_signer *signers;    /* sorted by sender, unique */
    size_t n_signers;
    ks_epoch *epochs; /* sorted by epoch, ascending, never empty */
    size_t n_epochs;
    uint64_t seq_reserved; /* durable: every number handed out is below it */
    uint64_t next;         /* next number to hand out; <= seq_reserved */
    uint32_t seq_adapt;    /* adaptive block of this session, 0 = the base block */
    uint64_t seq_last_at;  /* clock of the last clocked reservation, 0 = none */
    uint64_t instance;     /* random, 48 bits, fresh for each in-memory life of the group */
    ks_checkpoint *cps;    /* unordered */
    size_t n_cps, cap_cps;
    uint32_t *cp_index;    /* open addressing over cps by (epoch, sender); KS_NIL = empty */
    size_t cp_index_cap;   /* power of two, at least twice n_cps; 0 = no index yet */
} ks_group;

/* What a removed group's sequence had reached; see group_remove(). */
typedef struct ks_floor {
    char *name;
    uint64_t seq_reserved;
} ks_floor;

typedef struct ks_identity {
    uint8_t sign_sk[KS_SIGN_SECRET_BYTES];
    uint8_t dh_sk[KS_DH_SECRET_BYTES];
} ks_identity;

struct mqe2e_keystore {
    mqe2e_storage storage;
    char *client_id;
    uint32_t sender;
    uint8_t sign_pk[MQE2E_SIGN_PUBLIC_BYTES];
    uint8_t dh_pk[MQE2E_DH_PUBLIC_BYTES];
    ks_identity *id; /* sodium_malloc() */
    ks_group **groups; /* sorted by name */
    size_t n_groups;
    ks_slab *slabs;
    size_t n_slabs, cap_slabs;
    uint64_t hash_seed; /* random: checkpoint index probes cannot be steered */
    uint32_t seq_block;
    int dirty; /* in-memory state newer than the stored one */
    /* Control plane; all public data. */
    int has_pin;
    mqe2e_authority_pin pin;
    uint8_t *credential;
    size_t credential_len;
    uint8_t *revocations;
    size_t revocations_len;
    uint64_t revocation_version;
    uint64_t push_seq;
    ks_floor *floors; /* sequence floors of removed groups, unordered */
    size_t n_floors;
};

/* ------------------------------------------------------------------ */
/* Wiping allocator for protobuf-c unpack: every block is wiped before it is
 * freed, so secrets from unpacked messages do not linger in the heap. */

#define WIPE_HDR sizeof(max_align_t)

static void *wipe_alloc(void *data, size_t size)
{
    (void)data;
    if (size > SIZE_MAX - WIPE_HDR) return NULL;
    unsigned char *p = malloc(size + WIPE_HDR);
    if (p == NULL) return NULL;
    memcpy(p, &size, sizeof size);
    return p + WIPE_HDR;
}

static void wipe_free(void *data, void *ptr)
{
    (void)data;
    if (ptr == NULL) return;
    unsigned char *p = (unsigned char *)ptr - WIPE_HDR;
    size_t size;
    memcpy(&size, p, sizeof size);
    sodium_memzero(p, size + WIPE_HDR);
    free(p);
}

static ProtobufCAllocator wipe_allocator = {wipe_alloc, wipe_free, NULL};

/* ------------------------------------------------------------------ */

static int printable(const char *s, size_t max)
{
    if (s == NULL) return 0;
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        if (n >= max) return 0;
        if ((unsigned char)s[n] < 0x20U || (unsigned char)s[n] > 0x7eU) return 0;
    }
    return n > 0;
}

static int valid_group_name(const char *s) { return printable(s, MQE2E_GROUP_ID_MAX_BYTES); }

static int valid_filter(const char *s) { return s != NULL && mqe2e_topic_filter_valid(s); }

/* A retirement time of 0 would read as "current": clamp a zero clock. */
static uint64_t stamp(uint64_t now) { return now != 0 ? now : 1U; }

/* ------------------------------------------------------------------ */
/* Secret slabs */

static ks_secret *secret_alloc(mqe2e_keystore *ks)
{
    size_t si = 0;
    while (si < ks->n_slabs && ks->slabs[si].n_used == KS_SLAB_SLOTS) si++;
    if (si == ks->n_slabs) {
        if (ks->n_slabs == ks->cap_slabs) {
            size_t ncap = ks->cap_slabs == 0 ? 4U : ks->cap_slabs * 2U;
            ks_slab *n = realloc(ks->slabs, ncap * sizeof *n);
            if (n == NULL) return NULL;
            ks->slabs = n;
            ks->cap_slabs = ncap;
        }
        ks_secret *mem = sodium_malloc(KS_SLAB_SLOTS * sizeof *mem);
        if (mem == NULL) return NULL;
        sodium_memzero(mem, KS_SLAB_SLOTS * sizeof *mem);
        ks->slabs[si].mem = mem;
        ks->slabs[si].used[0] = ks->slabs[si].used[1] = 0;
        ks->slabs[si].n_used = 0;
        ks->n_slabs++;
    }
    ks_slab *sl = &ks->slabs[si];
    uint32_t slot = 0;
    while (sl->used[slot / 64U] >> (slot % 64U) & 1U) slot++;
    sl->used[slot / 64U] |= (uint64_t)1U << (slot % 64U);
    sl->n_used++;
    return &sl->mem[slot];
}

/* Wipe a secret's slot and give it back; an emptied slab is unmapped. */
static void secret_free(mqe2e_keystore *ks, ks_secret *s)
{
    if (s == NULL) return;
    uintptr_t a = (uintptr_t)s;
    for (size_t si = 0; si < ks->n_slabs; si++) {
        ks_slab *sl = &ks->slabs[si];
        uintptr_t base = (uintptr_t)sl->mem;
        if (a < base || a >= base + KS_SLAB_SLOTS * sizeof(ks_secret)) continue;
        size_t slot = (a - base) / sizeof(ks_secret);
        sodium_memzero(s, sizeof *s);
        sl->used[slot / 64U] &= ~((uint64_t)1U << (slot % 64U));
        if (--sl->n_used == 0) {
            sodium_free(sl->mem);
            ks->slabs[si] = ks->slabs[--ks->n_slabs];
        }
        return;
    }
}

static void slabs_free(mqe2e_keystore *ks)
{
    for (size_t si = 0; si < ks->n_slabs; si++) {
        sodium_memzero(ks->slabs[si].mem, KS_SLAB_SLOTS * sizeof(ks_secret));
        sodium_free(ks->slabs[si].mem);
    }
    free(ks->slabs);
    ks->slabs = NULL;
    ks->n_slabs = ks->cap_slabs = 0;
}

/* ------------------------------------------------------------------ */
/* Replay checkpoint index */

static uint64_t cp_hash(const mqe2e_keystore *ks, uint32_t epoch, uint32_t sender)
{
    /* splitmix64 finaliser over a seeded key: cheap, well mixed, and the
     * random seed keeps a group member from choosing colliding sender ids. */
    uint64_t z = ((uint64_t)epoch << 32 | sender) ^ ks->hash_seed;
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static ks_checkpoint *cp_find(const mqe2e_keystore *ks, const ks_group *g, uint32_t epoch,
                              uint32_t sender)
{
    if (g->cp_index_cap == 0) return NULL;
    size_t mask = g->cp_index_cap - 1U;
    for (size_t i = (size_t)cp_hash(ks, epoch, sender) & mask;; i = (i + 1U) & mask) {
        uint32_t ci = g->cp_index[i];
        if (ci == KS_NIL) return NULL;
        if (g->cps[ci].epoch == epoch && g->cps[ci].sender == sender) return &g->cps[ci];
    }
}

static void cp_index_put(const mqe2e_keystore *ks, ks_group *g, uint32_t ci)
{
    size_t mask = g->cp_index_cap - 1U;
    size_t i = (size_t)cp_hash(ks, g->cps[ci].epoch, g->cps[ci].sender) & mask;
    while (g->cp_index[i] != KS_NIL) i = (i + 1U) & mask;
    g->cp_index[i] = ci;
}

/* Rebuild the index for the current cps in a new table that holds at least
 * `want` checkpoints at a load of one half. */
static int cp_index_rebuild(const mqe2e_keystore *ks, ks_group *g, size_t want)
{
    size_t cap = 16U;
    while (cap / 2U < want) {
        /* NOLINTNEXTLINE(misc-redundant-expression): needed where size_t has 32 bits */
        if (cap > SIZE_MAX / 2U / sizeof(uint32_t) || cap >= (size_t)KS_NIL) return MQE2E_ERR_NOMEM;
        cap *= 2U;
    }
    uint32_t *idx = malloc(cap * sizeof *idx);
    if (idx == NULL) return MQE2E_ERR_NOMEM;
    for (size_t i = 0; i < cap; i++) idx[i] = KS_NIL;
    free(g->cp_index);
    g->cp_index = idx;
    g->cp_index_cap = cap;
    for (size_t ci = 0; ci < g->n_cps; ci++) cp_index_put(ks, g, (uint32_t)ci);
    return MQE2E_OK;
}

/* Re-index every checkpoint in the existing index (after a compaction,
 * which only shrinks n_cps, so it still fits at no more than half load). */
static void cp_reindex(const mqe2e_keystore *ks, ks_group *g)
{
    for (size_t i = 0; i < g->cp_index_cap; i++) g->cp_index[i] = KS_NIL;
    for (size_t ci = 0; ci < g->n_cps; ci++) cp_index_put(ks, g, (uint32_t)ci);
}

/* Append a checkpoint (the caller checked it is new); geometric growth. */
static ks_checkpoint *cp_append(const mqe2e_keystore *ks, ks_group *g, uint32_t epoch,
                                uint32_t sender)
{
    if (g->n_cps == g->cap_cps) {
        size_t ncap = g->cap_cps == 0 ? 8U : g->cap_cps * 2U;
        /* NOLINTNEXTLINE(misc-redundant-expression): needed where size_t has 32 bits */
        if (ncap >= (size_t)KS_NIL || ncap > SIZE_MAX / sizeof(ks_checkpoint)) return NULL;
        ks_checkpoint *n = realloc(g->cps, ncap * sizeof *n);
        if (n == NULL) return NULL;
        g->cps = n;
        g->cap_cps = ncap;
    }
    if ((g->n_cps + 1U) * 2U > g->cp_index_cap &&
        cp_index_rebuild(ks, g, (g->n_cps + 1U) * 2U) != MQE2E_OK)
        return NULL;
    ks_checkpoint *cp = &g->cps[g->n_cps];
    memset(cp, 0, sizeof *cp);
    cp->epoch = epoch;
    cp->sender = sender;
    cp_index_put(ks, g, (uint32_t)g->n_cps++);
    return cp;
}

/* ------------------------------------------------------------------ */

static void signers_free(ks_signer *v, size_t n)
{
    if (v == NULL) return;
    for (size_t i = 0; i < n; i++) free(v[i].client_id);
    free(v);
}

static void group_free(mqe2e_keystore *ks, ks_group *g)
{
    if (g == NULL) return;
    for (size_t i = 0; i < g->n_epochs; i++) secret_free(ks, g->epochs[i].secret);
    free(g->epochs);
    free(g->cps);
    free(g->cp_index);
    signers_free(g->signers, g->n_signers);
    free(g->name);
    free(g->filter);
    free(g);
}

static ks_group *group_new(const char *name, const char *filter, uint32_t sender)
{
    ks_group *g = calloc(1, sizeof *g);
    if (g == NULL) return NULL;
    g->name = strdup(name);
    g->filter = strdup(filter);
    if (g->name == NULL || g->filter == NULL) {
        free(g->name);
        free(g->filter);
        free(g);
        return NULL;
    }
    g->sender = sender;
    g->seq_reserved = 1; /* 0 is never used */
    g->next = 1;
    /* Every in-memory life of a group (each open, each add) sends under a
     * fresh instance: the nonce is iv XOR (instance || seq), so a restored
     * or copied file that hands out the same seq again still never repeats
     * a nonce (docs/PROTOCOL.md, section 2.4). */
    randombytes_buf(&g->instance, sizeof g->instance);
    g->instance &= MQE2E_INSTANCE_MAX;
    return g;
}

static size_t group_pos(const mqe2e_keystore *ks, const char *name, int *found)
{
    size_t lo = 0, hi = ks->n_groups;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(ks->groups[mid]->name, name);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

static ks_group *group_find(const mqe2e_keystore *ks, const char *name)
{
    if (ks == NULL || name == NULL) return NULL;
    int found;
    size_t i = group_pos(ks, name, &found);
    return found ? ks->groups[i] : NULL;
}

/* Insert a group (its name must be new); takes it over on success. */
static int group_insert(mqe2e_keystore *ks, ks_group *g)
{
    int found;
    size_t i = group_pos(ks, g->name, &found);
    if (found) return MQE2E_ERR_EXISTS;
    ks_group **n = realloc(ks->groups, (ks->n_groups + 1) * sizeof *n);
    if (n == NULL) return MQE2E_ERR_NOMEM;
    ks->groups = n;
    memmove(&n[i + 1], &n[i], (ks->n_groups - i) * sizeof *n);
    n[i] = g;
    ks->n_groups++;
    return MQE2E_OK;
}

static ks_floor *floor_find(const mqe2e_keystore *ks, const char *name)
{
    for (size_t i = 0; i < ks->n_floors; i++)
        if (strcmp(ks->floors[i].name, name) == 0) return &ks->floors[i];
    return NULL;
}

static void floors_free(mqe2e_keystore *ks)
{
    for (size_t i = 0; i < ks->n_floors; i++) free(ks->floors[i].name);
    free(ks->floors);
    ks->floors = NULL;
    ks->n_floors = 0;
}

/* Remember (or raise) the floor of a group that is being removed. */
static int floor_put(mqe2e_keystore *ks, const char *name, uint64_t seq_reserved)
{
    ks_floor *f = floor_find(ks, name);
    if (f != NULL) {
        if (seq_reserved > f->seq_reserved) f->seq_reserved = seq_reserved;
        return MQE2E_OK;
    }
    ks_floor *n = realloc(ks->floors, (ks->n_floors + 1) * sizeof *n);
    if (n == NULL) return MQE2E_ERR_NOMEM;
    ks->floors = n;
    n[ks->n_floors].name = strdup(name);
    if (n[ks->n_floors].name == NULL) return MQE2E_ERR_NOMEM;
    n[ks->n_floors].seq_reserved = seq_reserved;
    ks->n_floors++;
    return MQE2E_OK;
}

/* A group that is created again starts above its floor, which it then carries. */
static void floor_take(mqe2e_keystore *ks, ks_group *g)
{
    ks_floor *f = floor_find(ks, g->name);
    if (f == NULL) return;
    if (f->seq_reserved > g->seq_reserved) {
        g->seq_reserved = f->seq_reserved;
        g->next = f->seq_reserved;
    }
    free(f->name);
    *f = ks->floors[--ks->n_floors];
}

static ks_epoch *epoch_find(const ks_group *g, uint32_t epoch)
{
    size_t lo = 0, hi = g->n_epochs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (g->epochs[mid].epoch == epoch) return &g->epochs[mid];
        if (g->epochs[mid].epoch < epoch)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Insert a new epoch (must not exist) keeping the list sorted, and apply the
 * retirement rule: a newer epoch retires every older current one; an epoch
 * older than the newest arrives already retired. */
static int epoch_insert(mqe2e_keystore *ks, ks_group *g, uint32_t epoch, const uint8_t *secret,
                        uint64_t created_at, uint64_t now)
{
    ks_secret *s = secret_alloc(ks);
    if (s == NULL) return MQE2E_ERR_NOMEM;
    ks_epoch *n = realloc(g->epochs, (g->n_epochs + 1) * sizeof *n);
    if (n == NULL) {
        secret_free(ks, s);
        return MQE2E_ERR_NOMEM;
    }
    g->epochs = n;
    memcpy(s->b, secret, sizeof s->b);
    size_t i = 0;
    while (i < g->n_epochs && n[i].epoch < epoch) i++;
    int newest = (i == g->n_epochs);
    memmove(&n[i + 1], &n[i], (g->n_epochs - i) * sizeof *n);
    n[i].epoch = epoch;
    n[i].created_at = created_at;
    n[i].retired_at = newest ? 0 : stamp(now);
    n[i].secret = s;
    g->n_epochs++;
    if (newest)
        for (size_t j = 0; j < i; j++)
            if (n[j].retired_at == 0) n[j].retired_at = stamp(now);
    return MQE2E_OK;
}

/* ------------------------------------------------------------------ */
/* Serialization */

typedef struct pb_epochs {
    Mqe2e__V1__KeystoreEpoch *msgs;
    Mqe2e__V1__KeystoreEpoch **ptrs;
} pb_epochs;

typedef struct pb_checkpoint {
    Mqe2e__V1__ReplayCheckpoint msg;
    uint8_t bitmap[MQE2E_REPLAY_MAX_WIDTH / 8];
} pb_checkpoint;

typedef struct pb_signers {
    Mqe2e__V1__KeystoreSigner *msgs;
    Mqe2e__V1__KeystoreSigner **ptrs;
} pb_signers;

typedef struct pb_group {
    Mqe2e__V1__KeystoreGroup msg;
    pb_epochs ep;
    pb_signers sg;
    pb_checkpoint *cps;
    Mqe2e__V1__ReplayCheckpoint **cp_ptrs;
} pb_group;

/* The messages point at the secrets in place: nothing secret is copied. */
static int epochs_to_pb(pb_epochs *out, const ks_group *g)
{
    out->msgs = calloc(g->n_epochs + 1, sizeof *out->msgs);
    out->ptrs = calloc(g->n_epochs + 1, sizeof *out->ptrs);
    if (out->msgs == NULL || out->ptrs == NULL) return MQE2E_ERR_NOMEM;
    for (size_t i = 0; i < g->n_epochs; i++) {
        mqe2e__v1__keystore_epoch__init(&out->msgs[i]);
        out->msgs[i].epoch = g->epochs[i].epoch;
        out->msgs[i].secret.data = g->epochs[i].secret->b;
        out->msgs[i].secret.len = MQE2E_GROUP_SECRET_BYTES;
        out->msgs[i].created_at = g->epochs[i].created_at;
        out->msgs[i].retired_at = g->epochs[i].retired_at;
        out->ptrs[i] = &out->msgs[i];
    }
    return MQE2E_OK;
}

static void pb_epochs_free(pb_epochs *e)
{
    free(e->msgs);
    free(e->ptrs);
}

/* Public data only; the messages point at the directory in place. */
static int signers_to_pb(pb_signers *out, const ks_group *g)
{
    out->msgs = calloc(g->n_signers + 1, sizeof *out->msgs);
    out->ptrs = calloc(g->n_signers + 1, sizeof *out->ptrs);
    if (out->msgs == NULL || out->ptrs == NULL) return MQE2E_ERR_NOMEM;
    for (size_t i = 0; i < g->n_signers; i++) {
        mqe2e__v1__keystore_signer__init(&out->msgs[i]);
        out->msgs[i].sender = g->signers[i].sender;
        out->msgs[i].sign_public.data = (uint8_t *)g->signers[i].pk;
        out->msgs[i].sign_public.len = MQE2E_SIGN_PUBLIC_BYTES;
        out->msgs[i].client_id = g->signers[i].client_id;
        out->ptrs[i] = &out->msgs[i];
    }
    return MQE2E_OK;
}

static void pb_signers_free(pb_signers *e)
{
    free(e->msgs);
    free(e->ptrs);
}

static void checkpoint_to_pb(pb_checkpoint *out, const ks_checkpoint *cp)
{
    mqe2e__v1__replay_checkpoint__init(&out->msg);
    out->msg.epoch = cp->epoch;
    out->msg.sender = cp->sender;
    out->msg.top = cp->w.any ? cp->w.top : 0;
    out->msg.width = cp->w.width;
    size_t words = cp->w.width / 64U;
    for (size_t i = 0; i < words; i++)
        for (size_t b = 0; b < 8; b++)
            out->bitmap[i * 8 + b] = (uint8_t)(cp->w.bits[i] >> (8 * b));
    out->msg.bitmap.data = out->bitmap;
    out->msg.bitmap.len = words * 8U;
}

static int checkpoint_from_pb(ks_checkpoint *out, const Mqe2e__V1__ReplayCheckpoint *m)
{
    if (m->width < 64U || m->width > MQE2E_REPLAY_MAX_WIDTH || m->width % 64U != 0 ||
        m->bitmap.len != m->width / 8U)
        return MQE2E_ERR_DECODE;
    memset(out, 0, sizeof *out);
    out->epoch = m->epoch;
    out->sender = m->sender;
    out->w.width = m->width;
    out->w.top = m->top;
    int anybit = 0;
    for (size_t i = 0; i < m->width / 64U; i++) {
        uint64_t v = 0;
        for (size_t b = 0; b < 8; b++) v |= (uint64_t)m->bitmap.data[i * 8 + b] << (8 * b);
        out->w.bits[i] = v;
        anybit |= v != 0;
    }
    /* Sequence numbers start at 1, so top 0 with no bit set is an empty window. */
    out->w.any = m->top != 0 || anybit;
    return MQE2E_OK;
}

static void pb_groups_free(pb_group *pg, size_t n)
{
    if (pg == NULL) return;
    for (size_t i = 0; i < n; i++) {
        pb_epochs_free(&pg[i].ep);
        pb_signers_free(&pg[i].sg);
        free(pg[i].cps);
        free(pg[i].cp_ptrs);
    }
    free(pg);
}

/* Pack the whole state into sodium_malloc() memory (*out; sodium_free it). */
static int ks_pack(mqe2e_keystore *ks, uint8_t **out, size_t *out_len)
{
    int rc = MQE2E_ERR_NOMEM;
    Mqe2e__V1__KeystoreState st;
    Mqe2e__V1__SeqFloor *fl = NULL, **fl_ptrs = NULL;
    mqe2e__v1__keystore_state__init(&st);
    pb_group *pg = calloc(ks->n_groups + 1, sizeof *pg);
    Mqe2e__V1__KeystoreGroup **gptrs = calloc(ks->n_groups + 1, sizeof *gptrs);
    if (pg == NULL || gptrs == NULL) goto out;
    for (size_t i = 0; i < ks->n_groups; i++) {
        const ks_group *g = ks->groups[i];
        mqe2e__v1__keystore_group__init(&pg[i].msg);
        pg[i].msg.name = g->name;
        pg[i].msg.topic_filter = g->filter;
        pg[i].msg.seq_reserved = g->seq_reserved;
        pg[i].msg.sender = g->sender;
        if (epochs_to_pb(&pg[i].ep, g) != MQE2E_OK) goto out;
        pg[i].msg.n_epochs = g->n_epochs;
        pg[i].msg.epochs = pg[i].ep.ptrs;
        pg[i].msg.signed_mode = g->signed_mode != 0;
        if (signers_to_pb(&pg[i].sg, g) != MQE2E_OK) goto out;
        pg[i].msg.n_signers = g->n_signers;
        pg[i].msg.signers = pg[i].sg.ptrs;
        pg[i].cps = calloc(g->n_cps + 1, sizeof *pg[i].cps);
        pg[i].cp_ptrs = calloc(g->n_cps + 1, sizeof *pg[i].cp_ptrs);
        if (pg[i].cps == NULL || pg[i].cp_ptrs == NULL) goto out;
        for (size_t j = 0; j < g->n_cps; j++) {
            checkpoint_to_pb(&pg[i].cps[j], &g->cps[j]);
            pg[i].cp_ptrs[j] = &pg[i].cps[j].msg;
        }
        pg[i].msg.n_replay = g->n_cps;
        pg[i].msg.replay = pg[i].cp_ptrs;
        gptrs[i] = &pg[i].msg;
    }
    st.format = KS_FORMAT;
    st.client_id = ks->client_id;
    st.sign_secret.data = ks->id->sign_sk;
    st.sign_secret.len = sizeof ks->id->sign_sk;
    st.sign_public.data = ks->sign_pk;
    st.sign_public.len = sizeof ks->sign_pk;
    st.dh_secret.data = ks->id->dh_sk;
    st.dh_secret.len = sizeof ks->id->dh_sk;
    st.dh_public.data = ks->dh_pk;
    st.dh_public.len = sizeof ks->dh_pk;
    st.sender = ks->sender;
    st.n_groups = ks->n_groups;
    st.groups = gptrs;
    if (ks->has_pin) {
        st.authority_id = ks->pin.authority_id;
        st.control_prefix = ks->pin.control_prefix;
        st.authority_sign_public.data = ks->pin.sign_public;
        st.authority_sign_public.len = sizeof ks->pin.sign_public;
        st.authority_dh_public.data = ks->pin.dh_public;
        st.authority_dh_public.len = sizeof ks->pin.dh_public;
    }
    st.credential.data = ks->credential;
    st.credential.len = ks->credential_len;
    st.revocation_list.data = ks->revocations;
    st.revocation_list.len = ks->revocations_len;
    st.revocation_version = ks->revocation_version;
    st.push_seq = ks->push_seq;
    fl = calloc(ks->n_floors + 1, sizeof *fl);
    fl_ptrs = calloc(ks->n_floors + 1, sizeof *fl_ptrs);
    if (fl == NULL || fl_ptrs == NULL) goto out;
    for (size_t i = 0; i < ks->n_floors; i++) {
        mqe2e__v1__seq_floor__init(&fl[i]);
        fl[i].group = ks->floors[i].name;
        fl[i].seq_reserved = ks->floors[i].seq_reserved;
        fl_ptrs[i] = &fl[i];
    }
    st.n_seq_floors = ks->n_floors;
    st.seq_floors = fl_ptrs;
    size_t len = mqe2e__v1__keystore_state__get_packed_size(&st);
    uint8_t *buf = sodium_malloc(len > 0 ? len : 1U);
    if (buf == NULL) goto out;
    *out_len = mqe2e__v1__keystore_state__pack(&st, buf);
    *out = buf;
    rc = MQE2E_OK;
out:
    pb_groups_free(pg, ks->n_groups);
    free(gptrs);
    free(fl);
    free(fl_ptrs);
    return rc;
}

/* Write the whole state through the backend. On failure the change stays in
 * memory (dirty) and is written by the next successful store. */
static int ks_store(mqe2e_keystore *ks)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = ks_pack(ks, &buf, &len);
    if (rc == MQE2E_OK) rc = ks->storage.store(ks->storage.ctx, buf, len);
    sodium_free(buf);
    ks->dirty = rc != MQE2E_OK;
    return rc;
}

static void ks_free(mqe2e_keystore *ks)
{
    if (ks == NULL) return;
    for (size_t i = 0; i < ks->n_groups; i++) group_free(ks, ks->groups[i]);
    free(ks->groups);
    floors_free(ks);
    slabs_free(ks);
    free(ks->client_id);
    free(ks->credential);
    free(ks->revocations);
    sodium_free(ks->id);
    if (ks->storage.destroy != NULL) ks->storage.destroy(ks->storage.ctx);
    sodium_memzero(ks, sizeof *ks);
    free(ks);
}

static mqe2e_keystore *ks_alloc(mqe2e_storage storage)
{
    mqe2e_keystore *ks = calloc(1, sizeof *ks);
    if (ks == NULL) return NULL;
    ks->storage = storage;
    ks->seq_block = MQE2E_SEQ_DEFAULT_BLOCK;
    randombytes_buf(&ks->hash_seed, sizeof ks->hash_seed);
    ks->id = sodium_malloc(sizeof *ks->id);
    if (ks->id == NULL) {
        ks_free(ks);
        return NULL;
    }
    sodium_memzero(ks->id, sizeof *ks->id);
    return ks;
}

static void storage_release(mqe2e_storage *s)
{
    if (s->destroy != NULL) s->destroy(s->ctx);
}

/* ------------------------------------------------------------------ */

uint32_t mqe2e_sender_id_from_client_id(const char *client_id)
{
    uint8_t h[32];
    uint32_t id = 1;
    if (client_id == NULL || sodium_init() < 0) return id;
    crypto_generichash(h, sizeof h, (const unsigned char *)client_id, strlen(client_id),
                       (const unsigned char *)KS_SENDER_ID_KEY, sizeof KS_SENDER_ID_KEY - 1U);
    id = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16;
    sodium_memzero(h, sizeof h);
    return id != 0 ? id : 1U;
}

int mqe2e_keystore_create(mqe2e_keystore **out, mqe2e_storage storage, const char *client_id,
                          uint32_t sender_id)
{
    if (out == NULL || storage.load == NULL || storage.store == NULL ||
        !printable(client_id, MQE2E_CLIENT_ID_MAX_BYTES)) {
        storage_release(&storage);
        return MQE2E_ERR_INVALID_ARG;
    }
    *out = NULL;
    if (mqe2e_init() != MQE2E_OK) {
        storage_release(&storage);
        return MQE2E_ERR_CRYPTO;
    }
    uint8_t *old = NULL;
    size_t old_len = 0;
    int rc = storage.load(storage.ctx, &old, &old_len);
    if (rc == MQE2E_OK) {
        sodium_memzero(old, old_len);
        free(old);
    }
    /* Something is stored, even if unreadable with this key: never overwrite it. */
    if (rc == MQE2E_OK || rc == MQE2E_ERR_AUTH || rc == MQE2E_ERR_DECODE) rc = MQE2E_ERR_EXISTS;
    if (rc != MQE2E_ERR_NOT_FOUND) {
        storage_release(&storage);
        return rc;
    }
    mqe2e_keystore *ks = ks_alloc(storage);
    if (ks == NULL) {
        storage_release(&storage);
        return MQE2E_ERR_NOMEM;
    }
    ks->client_id = strdup(client_id);
    if (ks->client_id == NULL) {
        ks_free(ks);
        return MQE2E_ERR_NOMEM;
    }
    ks->sender = sender_id != 0 ? sender_id : mqe2e_sender_id_from_client_id(client_id);
    crypto_sign_keypair(ks->sign_pk, ks->id->sign_sk);
    crypto_box_keypair(ks->dh_pk, ks->id->dh_sk);
    rc = ks_store(ks);
    if (rc != MQE2E_OK) {
        ks_free(ks);
        return rc;
    }
    *out = ks;
    return MQE2E_OK;
}

/* ------------------------------------------------------------------ */
/* Signer directory */

static int signer_valid(const mqe2e_signer *s)
{
    size_t n = strnlen(s->client_id, sizeof s->client_id);
    return s->sender_id != 0 && n < sizeof s->client_id &&
           (n == 0 || printable(s->client_id, MQE2E_CLIENT_ID_MAX_BYTES)) &&
           crypto_core_ed25519_is_valid_point(s->sign_public) == 1;
}

static int cmp_signer(const void *a, const void *b)
{
    const ks_signer *x = a, *y = b;
    return x->sender < y->sender ? -1 : x->sender > y->sender;
}

/* Build a sorted directory from entries checked with signer_valid(); a sender
 * id given twice is MQE2E_ERR_INVALID_ARG. */
static int signers_build(ks_signer **out, size_t *n_out, const mqe2e_signer *in, size_t n)
{
    *out = NULL;
    *n_out = 0;
    if (n == 0) return MQE2E_OK;
    if (n > MQE2E_SIGNERS_MAX) return MQE2E_ERR_TOO_LARGE;
    ks_signer *v = calloc(n, sizeof *v);
    if (v == NULL) return MQE2E_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        v[i].sender = in[i].sender_id;
        memcpy(v[i].pk, in[i].sign_public, MQE2E_SIGN_PUBLIC_BYTES);
        v[i].client_id = strdup(in[i].client_id);
        if (v[i].client_id == NULL) {
            signers_free(v, n);
            return MQE2E_ERR_NOMEM;
        }
    }
    qsort(v, n, sizeof *v, cmp_signer);
    for (size_t i = 1; i < n; i++) {
        if (v[i].sender == v[i - 1].sender) {
            signers_free(v, n);
            return MQE2E_ERR_INVALID_ARG;
        }
    }
    *out = v;
    *n_out = n;
    return MQE2E_OK;
}

/* Decode and check stored/imported entries into mqe2e_signer form. */
static int signer_from_pb(mqe2e_signer *out, const Mqe2e__V1__KeystoreSigner *m)
{
    memset(out, 0, sizeof *out);
    if (m->sign_public.len != MQE2E_SIGN_PUBLIC_BYTES || m->client_id == NULL ||
        strlen(m->client_id) > MQE2E_CLIENT_ID_MAX_BYTES)
        return MQE2E_ERR_DECODE;
    out->sender_id = m->sender;
    memcpy(out->sign_public, m->sign_public.data, MQE2E_SIGN_PUBLIC_BYTES);
    memcpy(out->client_id, m->client_id, strlen(m->client_id) + 1U);
    return signer_valid(out) ? MQE2E_OK : MQE2E_ERR_DECODE;
}

static int signers_from_pb(ks_signer **out, size_t *n_out,
                           Mqe2e__V1__KeystoreSigner *const *m, size_t n)
{
    *out = NULL;
    *n_out = 0;
    if (n == 0) return MQE2E_OK;
    if (n > MQE2E_SIGNERS_MAX) return MQE2E_ERR_DECODE;
    mqe2e_signer *tmp = calloc(n, sizeof *tmp);
    if (tmp == NULL) return MQE2E_ERR_NOMEM;
    int rc = MQE2E_OK;
    for (size_t i = 0; i < n && rc == MQE2E_OK; i++) rc = signer_from_pb(&tmp[i], m[i]);
    if (rc == MQE2E_OK) rc = signers_build(out, n_out, tmp, n);
    if (rc == MQE2E_ERR_INVALID_ARG) rc = MQE2E_ERR_DECODE;
    free(tmp);
    return rc;
}

static ks_signer *signer_find(const ks_group *g, uint32_t sender, size_t *pos)
{
    size_t lo = 0, hi = g->n_signers;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (g->signers[mid].sender == sender) {
            if (pos != NULL) *pos = mid;
            return &g->signers[mid];
        }
        if (g->signers[mid].sender < sender)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (pos != NULL) *pos = lo;
    return NULL;
}

static int load_group(mqe2e_keystore *ks, const Mqe2e__V1__KeystoreGroup *m)
{
    if (!valid_group_name(m->name) || !valid_filter(m->topic_filter) || m->n_epochs == 0)
        return MQE2E_ERR_DECODE;
    ks_group *g = group_new(m->name, m->topic_filter, m->sender != 0 ? m->sender : ks->sender);
    if (g == NULL) return MQE2E_ERR_NOMEM;
    int rc = MQE2E_ERR_DECODE;
    for (size_t i = 0; i < m->n_epochs; i++) {
        const Mqe2e__V1__KeystoreEpoch *e = m->epochs[i];
        if (e->secret.len != MQE2E_GROUP_SECRET_BYTES || epoch_find(g, e->epoch) != NULL) {
            rc = MQE2E_ERR_DECODE;
            goto fail;
        }
        rc = epoch_insert(ks, g, e->epoch, e->secret.data, e->created_at, 0);
        if (rc != MQE2E_OK) goto fail;
    }
    /* Stored retirement times win over the ones insertion derived. */
    for (size_t i = 0; i < m->n_epochs; i++)
        epoch_find(g, m->epochs[i]->epoch)->retired_at = m->epochs[i]->retired_at;
    /* Skip whatever was left of the last reserved block: those numbers may
     * have been used before a crash. */
    g->seq_reserved = m->seq_reserved != 0 ? m->seq_reserved : 1U;
    g->next = g->seq_reserved;
    floor_take(ks, g);
    if (m->n_replay > 0) {
        if (m->n_replay >= (size_t)KS_NIL / 2U) {
            rc = MQE2E_ERR_DECODE;
            goto fail;
        }
        g->cps = calloc(m->n_replay, sizeof *g->cps);
        if (g->cps == NULL || cp_index_rebuild(ks, g, m->n_replay * 2U) != MQE2E_OK) {
            rc = MQE2E_ERR_NOMEM;
            goto fail;
        }
        g->cap_cps = m->n_replay;
        for (size_t i = 0; i < m->n_replay; i++) {
            ks_checkpoint cp;
            rc = checkpoint_from_pb(&cp, m->replay[i]);
            if (rc == MQE2E_OK && cp_find(ks, g, cp.epoch, cp.sender) != NULL) rc = MQE2E_ERR_DECODE;
            if (rc != MQE2E_OK) goto fail;
            g->cps[g->n_cps] = cp;
            cp_index_put(ks, g, (uint32_t)g->n_cps++);
        }
    }
    g->signed_mode = m->signed_mode != 0;
    rc = signers_from_pb(&g->signers, &g->n_signers, m->signers, m->n_signers);
    if (rc != MQE2E_OK) goto fail;
    rc = group_insert(ks, g);
    if (rc == MQE2E_ERR_EXISTS) rc = MQE2E_ERR_DECODE;
    if (rc != MQE2E_OK) goto fail;
    return MQE2E_OK;
fail:
    group_free(ks, g);
    return rc;
}

static int dup_bytes(uint8_t **out, size_t *out_len, const uint8_t *in, size_t len)
{
    uint8_t *b = malloc(len > 0 ? len : 1U);
    if (b == NULL) return MQE2E_ERR_NOMEM;
    if (len > 0) memcpy(b, in, len);
    *out = b;
    *out_len = len;
    return MQE2E_OK;
}

static int pin_string_ok(const char *s, size_t max)
{
    return s != NULL && printable(s, max);
}

/* Control-plane fields: all absent (never enrolled) or a consistent pin. */
static int load_control(mqe2e_keystore *ks, const Mqe2e__V1__KeystoreState *st)
{
    int any_pin = (st->authority_id != NULL && st->authority_id[0] != '\0') ||
                  (st->control_prefix != NULL && st->control_prefix[0] != '\0') ||
                  st->authority_sign_public.len != 0 || st->authority_dh_public.len != 0;
    if (any_pin) {
        if (!pin_string_ok(st->authority_id, MQE2E_AUTHORITY_ID_MAX_BYTES) ||
            !pin_string_ok(st->control_prefix, MQE2E_KS_PREFIX_MAX_BYTES) ||
            st->authority_sign_public.len != MQE2E_SIGN_PUBLIC_BYTES ||
            st->authority_dh_public.len != MQE2E_DH_PUBLIC_BYTES)
            return MQE2E_ERR_DECODE;
        memcpy(ks->pin.authority_id, st->authority_id, strlen(st->authority_id) + 1U);
        memcpy(ks->pin.control_prefix, st->control_prefix, strlen(st->control_prefix) + 1U);
        memcpy(ks->pin.sign_public, st->authority_sign_public.data, MQE2E_SIGN_PUBLIC_BYTES);
        memcpy(ks->pin.dh_public, st->authority_dh_public.data, MQE2E_DH_PUBLIC_BYTES);
        ks->has_pin = 1;
    }
    if (st->credential.len > MQE2E_KS_CREDENTIAL_MAX_BYTES ||
        st->revocation_list.len > MQE2E_KS_REVOCATION_MAX_BYTES ||
        (st->revocation_list.len > 0) != (st->revocation_version > 0))
        return MQE2E_ERR_DECODE;
    int rc;
    if (st->credential.len > 0) {
        rc = dup_bytes(&ks->credential, &ks->credential_len, st->credential.data,
                       st->credential.len);
        if (rc != MQE2E_OK) return rc;
    }
    if (st->revocation_list.len > 0) {
        rc = dup_bytes(&ks->revocations, &ks->revocations_len, st->revocation_list.data,
                       st->revocation_list.len);
        if (rc != MQE2E_OK) return rc;
    }
    ks->revocation_version = st->revocation_version;
    ks->push_seq = st->push_seq;
    for (size_t i = 0; i < st->n_seq_floors; i++) {
        const Mqe2e__V1__SeqFloor *f = st->seq_floors[i];
        if (!valid_group_name(f->group) || floor_find(ks, f->group) != NULL)
            return MQE2E_ERR_DECODE;
        rc = floor_put(ks, f->group, f->seq_reserved);
        if (rc != MQE2E_OK) return rc;
    }
    return MQE2E_OK;
}

int mqe2e_keystore_open(mqe2e_keystore **out, mqe2e_storage storage)
{
    if (out == NULL || storage.load == NULL || storage.store == NULL) {
        storage_release(&storage);
        return MQE2E_ERR_INVALID_ARG;
    }
    *out = NULL;
    if (mqe2e_init() != MQE2E_OK) {
        storage_release(&storage);
        return MQE2E_ERR_CRYPTO;
    }
    mqe2e_keystore *ks = ks_alloc(storage);
    if (ks == NULL) {
        storage_release(&storage);
        return MQE2E_ERR_NOMEM;
    }
    uint8_t *blob = NULL;
    size_t blob_len = 0;
    Mqe2e__V1__KeystoreState *st = NULL;
    int rc = storage.load(storage.ctx, &blob, &blob_len);
    if (rc != MQE2E_OK) goto out;
    st = mqe2e__v1__keystore_state__unpack(&wipe_allocator, blob_len, blob);
    rc = MQE2E_ERR_DECODE;
    if (st == NULL || st->format != KS_FORMAT ||
        !printable(st->client_id, MQE2E_CLIENT_ID_MAX_BYTES) ||
        st->sign_secret.len != KS_SIGN_SECRET_BYTES ||
        st->sign_public.len != MQE2E_SIGN_PUBLIC_BYTES ||
        st->dh_secret.len != KS_DH_SECRET_BYTES || st->dh_public.len != MQE2E_DH_PUBLIC_BYTES ||
        st->sender == 0)
        goto out;
    memcpy(ks->id->sign_sk, st->sign_secret.data, KS_SIGN_SECRET_BYTES);
    memcpy(ks->id->dh_sk, st->dh_secret.data, KS_DH_SECRET_BYTES);
    memcpy(ks->sign_pk, st->sign_public.data, MQE2E_SIGN_PUBLIC_BYTES);
    memcpy(ks->dh_pk, st->dh_public.data, MQE2E_DH_PUBLIC_BYTES);
    {
        /* The public keys must belong to the secret ones. */
        uint8_t pk[32];
        int bad = crypto_sign_ed25519_sk_to_pk(pk, ks->id->sign_sk) != 0 ||
                  sodium_memcmp(pk, ks->sign_pk, sizeof pk) != 0 ||
                  crypto_scalarmult_base(pk, ks->id->dh_sk) != 0 ||
                  sodium_memcmp(pk, ks->dh_pk, sizeof pk) != 0;
        sodium_memzero(pk, sizeof pk);
        if (bad) goto out;
    }
    ks->client_id = strdup(st->client_id);
    if (ks->client_id == NULL) {
        rc = MQE2E_ERR_NOMEM;
        goto out;
    }
    ks->sender = st->sender;
    rc = load_control(ks, st);
    if (rc != MQE2E_OK) goto out;
    for (size_t i = 0; i < st->n_groups; i++) {
        rc = load_group(ks, st->groups[i]);
        if (rc != MQE2E_OK) goto out;
    }
    rc = MQE2E_OK;
out:
    if (st != NULL) mqe2e__v1__keystore_state__free_unpacked(st, &wipe_allocator);
    if (blob != NULL) {
        sodium_memzero(blob, blob_len);
        free(blob);
    }
    if (rc != MQE2E_OK) {
        ks_free(ks);
        return rc;
    }
    *out = ks;
    return MQE2E_OK;
}

void mqe2e_keystore_close(mqe2e_keystore *ks)
{
    if (ks == NULL) return;
    /* Nothing to report to: a failed final write leaves the previous state,
     * which is consistent (sequence reservations are always durable). */
    if (ks->dirty) (void)ks_store(ks);
    ks_free(ks);
}

void mqe2e__keystore_abandon(mqe2e_keystore *ks) { ks_free(ks); }

int mqe2e_keystore_flush(mqe2e_keystore *ks)
{
    if (ks == NULL) return MQE2E_ERR_INVALID_ARG;
    return ks_store(ks);
}

const char *mqe2e_keystore_client_id(const mqe2e_keystore *ks)
{
    return ks != NULL ? ks->client_id : NULL;
}

uint32_t mqe2e_keystore_sender_id(const mqe2e_keystore *ks) { return ks != NULL ? ks->sender : 0; }

int mqe2e_keystore_identity_public(const mqe2e_keystore *ks,
                                   uint8_t sign_pk[MQE2E_SIGN_PUBLIC_BYTES],
                                   uint8_t dh_pk[MQE2E_DH_PUBLIC_BYTES])
{
    if (ks == NULL) return MQE2E_ERR_INVALID_ARG;
    if (sign_pk != NULL) memcpy(sign_pk, ks->sign_pk, MQE2E_SIGN_PUBLIC_BYTES);
    if (dh_pk != NULL) memcpy(dh_pk, ks->dh_pk, MQE2E_DH_PUBLIC_BYTES);
    return MQE2E_OK;
}

int mqe2e__keystore_dh_secret(const mqe2e_keystore *ks, uint8_t dh_sk[32])
{
    if (ks == NULL || dh_sk == NULL) return MQE2E_ERR_INVALID_ARG;
    memcpy(dh_sk, ks->id->dh_sk, KS_DH_SECRET_BYTES);
    return MQE2E_OK;
}

int mqe2e__keystore_sign(const mqe2e_keystore *ks, uint8_t sig[64], const uint8_t *msg,
                         size_t msg_len)
{
    if (ks == NULL || sig == NULL || (msg == NULL && msg_len != 0)) return MQE2E_ERR_INVALID_ARG;
    crypto_sign_detached(sig, NULL, msg, (unsigned long long)msg_len, ks->id->sign_sk);
    return MQE2E_OK;
}

/* Replace a group's filter when a new valid one is given. *changed is set. */
static int group_update_filter(ks_group *g, const char *filter, int *changed)
{
    if (filter == NULL || strcmp(filter, g->filter) == 0) return MQE2E_OK;
    char *f = strdup(filter);
    if (f == NULL) return MQE2E_ERR_NOMEM;
    free(g->filter);
    g->filter = f;
    *changed = 1;
    return MQE2E_OK;
}

/* Create a group holding one epoch, or add an epoch to an existing group,
 * in memory only. */
static int add_epoch_mem(mqe2e_keystore *ks, const char *group_id, const char *topic_filter,
                         uint32_t epoch, const uint8_t *secret, uint64_t now, int *changed)
{
    ks_group *g = group_find(ks, group_id);
    if (g == NULL) {
        if (!valid_filter(topic_filter)) return MQE2E_ERR_INVALID_ARG;
        g = group_new(group_id, topic_filter, ks->sender);
        if (g == NULL) return MQE2E_ERR_NOMEM;
        int rc = epoch_insert(ks, g, epoch, secret, now, now);
        if (rc == MQE2E_OK) rc = group_insert(ks, g);
        if (rc != MQE2E_OK) {
            group_free(ks, g);
            return rc;
        }
        /* Removed before: continue above what it had reserved, so no
         * (epoch, sender, seq) of its earlier life is handed out again. */
        floor_take(ks, g);
        *changed = 1;
        return MQE2E_OK;
    }
    if (topic_filter != NULL && !valid_filter(topic_filter)) return MQE2E_ERR_INVALID_ARG;
    ks_epoch *e = epoch_find(g, epoch);
    if (e != NULL) {
        if (sodium_memcmp(e->secret->b, secret, MQE2E_GROUP_SECRET_BYTES) != 0)
            return MQE2E_ERR_EXISTS;
    } else {
        int rc = epoch_insert(ks, g, epoch, secret, now, now);
        if (rc != MQE2E_OK) return rc;
        *changed = 1;
    }
    return group_update_filter(g, topic_filter, changed);
}

int mqe2e_keystore_group_add_epoch(mqe2e_keystore *ks, const char *group_id,
                                   const char *topic_filter, uint32_t epoch,
                                   const uint8_t secret[MQE2E_GROUP_SECRET_BYTES], uint64_t now)
{
    if (ks == NULL || !valid_group_name(group_id) || secret == NULL)
        return MQE2E_ERR_INVALID_ARG;
    int changed = 0;
    int rc = add_epoch_mem(ks, group_id, topic_filter, epoch, secret, now, &changed);
    if (rc != MQE2E_OK) return rc;
    /* A no-op still retries a write that failed before. */
    return changed || ks->dirty ? ks_store(ks) : MQE2E_OK;
}

int mqe2e_keystore_group_generate(mqe2e_keystore *ks, const char *group_id,
                                  const char *topic_filter, uint64_t now, uint32_t *epoch_out)
{
    if (ks == NULL || !valid_group_name(group_id)) return MQE2E_ERR_INVALID_ARG;
    if (topic_filter != NULL && !valid_filter(topic_filter)) return MQE2E_ERR_INVALID_ARG;
    ks_group *g = group_find(ks, group_id);
    uint32_t epoch = 1;
    if (g == NULL) {
        if (topic_filter == NULL) return MQE2E_ERR_INVALID_ARG;
    } else {
        uint32_t cur = g->epochs[g->n_epochs - 1].epoch;
        if (cur == UINT32_MAX) return MQE2E_ERR_EXHAUSTED;
        epoch = cur + 1U;
    }
    uint8_t secret[MQE2E_GROUP_SECRET_BYTES];
    randombytes_buf(secret, sizeof secret);
    int changed = 0;
    int rc = add_epoch_mem(ks, group_id, topic_filter, epoch, secret, now, &changed);
    sodium_memzero(secret, sizeof secret);
    if (rc != MQE2E_OK) return rc;
    rc = ks_store(ks);
    if (rc == MQE2E_OK && epoch_out != NULL) *epoch_out = epoch;
    return rc;
}

int mqe2e_keystore_group_remove(mqe2e_keystore *ks, const char *group_id)
{
    if (ks == NULL || group_id == NULL) return MQE2E_ERR_INVALID_ARG;
    int found;
    size_t i = group_pos(ks, group_id, &found);
    if (!found) return MQE2E_ERR_NOT_FOUND;
    /* The group's sequence position outlives it (a tombstone), so adding it
     * again never restarts its numbers. */
    int rc = floor_put(ks, group_id, ks->groups[i]->seq_reserved);
    if (rc != MQE2E_OK) return rc;
    group_free(ks, ks->groups[i]);
    memmove(&ks->groups[i], &ks->groups[i + 1], (ks->n_groups - i - 1) * sizeof *ks->groups);
    ks->n_groups--;
    return ks_store(ks);
}

size_t mqe2e_keystore_group_count(const mqe2e_keystore *ks)
{
    return ks != NULL ? ks->n_groups : 0;
}

const char *mqe2e_keystore_group_name(const mqe2e_keystore *ks, size_t index)
{
    if (ks == NULL || index >= ks->n_groups) return NULL;
    return ks->groups[index]->name;
}

const char *mqe2e_keystore_group_filter(const mqe2e_keystore *ks, const char *group_id)
{
    const ks_group *g = group_find(ks, group_id);
    return g != NULL ? g->filter : NULL;
}

int mqe2e_keystore_group_current_epoch(const mqe2e_keystore *ks, const char *group_id,
                                       uint32_t *epoch)
{
    if (ks == NULL || group_id == NULL || epoch == NULL) return MQE2E_ERR_INVALID_ARG;
    const ks_group *g = group_find(ks, group_id);
    if (g == NULL) return MQE2E_ERR_NOT_FOUND;
    *epoch = g->epochs[g->n_epochs - 1].epoch;
    return MQE2E_OK;
}

int mqe2e_keystore_group_sender_id(const mqe2e_keystore *ks, const char *group_id,
                                   uint32_t *sender_id)
{
    if (ks == NULL || group_id == NULL || sender_id == NULL) return MQE2E_ERR_INVALID_ARG;
    const ks_group *g = group_find(ks, group_id);
    if (g == NULL) return MQE2E_ERR_NOT_FOUND;
    *sender_id = g->sender;
    return MQE2E_OK;
}

int mqe2e_keystore_group_set_sender_id(mqe2e_keystore *ks, const char *group_id,
                                       uint32_t sender_id)
{
    if (ks == NULL || group_id == NULL || sender_id == 0) return MQE2E_ERR_INVALID_ARG;
    ks_group *g = group_find(ks, group_id);
    if (g == NULL) return MQE2E_ERR_NOT_FOUND;
    if (g->sender == sender_id && !ks->dirty) return MQE2E_OK;
    g->sender = sender_id;
    return ks_store(ks);
}

int mqe2e_keystore_group_secret(const mqe2e_keystore *ks, const char *group_id, uint32_t epoch,
                                uint8_t secret[MQE2E_GROUP_SECRET_BYTES], uint64_t *retired_at)
{
    if (ks == NULL || group_id == NULL || secret == NULL) return MQE2E_ERR_INVALID_ARG;
    const ks_group *g = group_find(ks, group_id);
    const ks_epoch *e = g != NULL ? epoch_find(g, epoch) : NULL;
    if (e == NULL) return MQE2E_ERR_NOT_FOUND;
    memcpy(secret, e->secret->b, MQE2E_GROUP_SECRET_BYTES);
    if (retired_at != NULL) *retired_at = e->retired_at;
    return MQE2E_OK;
}

int mqe2e_keystore_group_prune(mqe2e_keystore *ks, const char *group_id, uint64_t cutoff)
{
    if (ks == NULL || group_id == NULL) return MQE2E_ERR_INVALID_ARG;
    ks_group *g = group_find(ks, group_id);
    if (g == NULL) return MQE2E_ERR_NOT_FOUND;
    size_t kept = 0, removed = 0;
    for (size_t i = 0; i < g->n_epochs; i++) {
        ks_epoch *e = &g->epochs[i];
        if (e->retired_at != 0 && e->retired_at < cutoff) {
            /* The replay windows of a dropped epoch go with it. */
            size_t ck = 0;
            for (size_t j = 0; j < g->n_cps; j++)
                if (g->cps[j].epoch != e->epoch) g->cps[ck++] = g->cps[j];
            g->n_cps = ck;
            secret_free(ks, e->secret);
            removed++;
        } else {
            g->epochs[kept++] = *e;
        }
    }
    g->n_epochs = kept;
    /* Compaction moved checkpoints: re-index them in place. */
    if (removed > 0) cp_reindex(ks, g);
    if (removed == 0 && !ks->dirty) return 0;
    int rc = ks_store(ks);
    if (rc != MQE2E_OK) return rc;
    return removed > (size_t)INT32_MAX ? INT32_MAX : (int)removed;
}

static uint64_t seq_add(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

/* The block of g's next reservation at clock now (0 = no clock). */
static uint32_t seq_next_block(const mqe2e_keystore *ks, ks_group *g, uint64_t now)
{
    if (now != 0 && g->seq_last_at != 0 && now >= g->seq_last_at &&
        now - g->seq_last_at < KS_SEQ_FAST_SECONDS) {
        uint32_t cur = g->seq_adapt > ks->seq_block ? g->seq_adapt : ks->seq_block;
        g->seq_adapt = cur >= KS_SEQ_ADAPTIVE_MAX / 2U ? KS_SEQ_ADAPTIVE_MAX : cur * 2U;
    } else if (now != 0) {
        g->seq_adapt = 0;
    }
    if (now != 0) g->seq_last_at = now;
    return g->seq_adapt > ks->seq_block ? g->seq_adapt : ks->seq_block;
}

int mqe2e__keystore_next_seq_at(mqe2e_keystore *ks, const char *group_id, uint64_t now,
                                uint64_t *seq, uint64_t *instance)
{
    if (ks == NULL || group_id == NULL || seq == NULL) return MQE2E_ERR_INVALID_ARG;
    ks_group *g = group_find(ks, group_id);
    if (g == NULL) return MQE2E_ERR_NOT_FOUND;
    /* Envelopes carry 48-bit sequence numbers (the nonce's other half is the instance). */
    if (g->next > MQE2E_SEQ_MAX) return MQE2E_ERR_EXHAUSTED;
    if (g->next >= g->seq_reserved) {
        if (g->seq_reserved == UINT64_MAX) return MQE2E_ERR_EXHAUSTED;
        uint64_t old = g->seq_reserved;
        g->seq_reserved = seq_add(old, seq_next_block(ks, g, now));
        /* The write is paid for anyway: top up every other group that has
         * nothing reserved (all of them right after open), so the first
         * message of each of them does not rewrite the keystore again. A
         * crash skips at most these base blocks; no number is ever reused. */
        uint64_t *topped = NULL;
        size_t n_topped = 0;
        if (ks->n_groups > 1) topped = malloc(ks->n_groups * sizeof *topped);
        for (size_t i = 0; topped != NULL && i < ks->n_groups; i++) {
            ks_group *o = ks->groups[i];
            if (o == g || o->next < o->seq_reserved || o->seq_reserved == UINT64_MAX) continue;
            topped[n_topped++] = (uint64_t)i;
            o->seq_reserved = seq_add(o->seq_reserved, ks->seq_block);
        }
        /* The reservation must be durable before any number from it is used. */
        int rc = ks_store(ks);
        if (rc != MQE2E_OK) {
            g->seq_reserved = old;
            /* The others' numbers were never handed out: give them back so
             * their first use still writes before it hands any out. */
            for (size_t k = 0; k < n_topped; k++) {
                ks_group *o = ks->groups[topped[k]];
                o->seq_reserved = o->next;
            }
            free(topped);
            return rc;
        }
        free(topped);
    }
    *seq = g->next++;
    if (instance != NULL) *instance = g->instance;
    return MQE2E_OK;
}

int mqe2e_keystore_next_seq(mqe2e_keystore *ks, const char *group_id, uint64_t *seq)
{
    return mqe2e__keystore_next_seq_at(ks, group_id, 0, seq, NULL);
}

int mqe2e_keystore_group_instance(const mqe2e_keystore *ks, const char *group_id,
                                  uint64_t *instance)
{
    if (ks == NULL || group_id == NULL || instance == NULL) return MQE2E_ERR_INVALID_ARG;
    const ks_group *g = group_find(ks, group_id);
    if (g == NULL) return MQE2E_ERR_NOT_FOUND;
    *instance = g->instance;
    return MQE2E_OK;
}

int mqe2e_keystore_set_seq_block(mqe2e_keystore *ks, uint32_t block)
{
    if (ks == NULL || block == 0 || block > KS_SEQ_BLOCK_MAX) return MQE2E_ERR_INVALID_ARG;
    ks->seq_block = block;
    return MQE2E_OK;
}

static int window_valid(const mqe2e_replay_window *w)
{
    return w != NULL && w->width >= 64U && w->width <= MQE2E_REPLAY_MAX_WIDTH &&
           w->width % 64U == 0;
}

int mqe2e_keystore_replay_save(mqe2e_keystore *ks, const char *group_id, uint32_t epoch,
                               uint32_t sender_id, const mqe2e_replay_window *w)
{
    if (ks == NULL || group_id == NULL || !window_valid(w)) return MQE2E_ERR_INVALID_ARG;
    ks_group *g = group_find(ks, group_id);
    if (g == NULL) return MQE2E_ERR_NOT_FOUND;
    ks_checkpoint *cp = cp_find(ks, g, epoch, sender_id);
    if (cp == NULL) {
        cp = cp_append(ks, g, epoch, sender_id);
        if (cp == NULL) return MQE2E_ERR_NOMEM;
    } else if (cp->w.top == w->top && cp->w.width == w->width && cp->w.any == w->any &&
               memcmp(cp->w.bits, w->bits, sizeof w->bits) == 0) {
        /* Member by member: memcmp over the whole struct would read its padding. */
        return MQE2E_OK; /* nothing new to write */
    }
    cp->w = *w;
    ks->dirty = 1;
    return MQE2E_OK;
}

int mqe2e_keystore_replay_load(const mqe2e_keystore *ks, const char *group_id, uint32_t epoch,
                               uint32_t sender_id, mqe2e_replay_window *w)
{
    if (ks == NULL || group_id == NULL || w == NULL) return MQE2E_ERR_INVALID_ARG;
    const ks_group *g = group_find(ks, group_id);
    if (g == NULL) return MQE2E_ERR_NOT_FOUND;
    const ks_checkpoint *cp = cp_find(ks, g, epoch, sender_id);
    if (cp == NULL) return MQE2E_ERR_NOT_FOUND;
    *w = cp->w;
    return MQE2E_OK;
}

int mqe2e__keystore_dirty(const mqe2e_keystore *ks) { return ks != NULL && ks->dirty; }

int mqe2e_keystore_group_export(const mqe2e_keystore *ks, const char *group_id,
                                const char *passphrase, size_t passphrase_len, uint8_t **out,
                                size_t *out_len)
{
    if (ks == NULL || group_id == NULL || passphrase == NULL || passphrase_len == 0 ||
        out == NULL || out_len == NULL)
        return MQE2E_ERR_INVALID_ARG;
    const ks_group *g = group_find(ks, group_id);
    if (g == NULL) return MQE2E_ERR_NOT_FOUND;
    pb_epochs ep = {NULL, NULL};
    pb_signers sg = {NULL, NULL};
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = epochs_to_pb(&ep, g);
    if (rc == MQE2E_OK) rc = signers_to_pb(&sg, g);
    if (rc != MQE2E_OK) goto out;
    Mqe2e__V1__GroupBundle b;
    mqe2e__v1__group_bundle__init(&b);
    b.format = KS_FORMAT;
    b.name = g->name;
    b.topic_filter = g->filter;
    b.n_epochs = g->n_epochs;
    b.epochs = ep.ptrs;
    b.signed_mode = g->signed_mode != 0;
    b.n_signers = g->n_signers;
    b.signers = sg.ptrs;
    len = mqe2e__v1__group_bundle__get_packed_size(&b);
    buf = sodium_malloc(len);
    rc = MQE2E_ERR_NOMEM;
    if (buf == NULL) goto out;
    len = mqe2e__v1__group_bundle__pack(&b, buf);
    rc = mqe2e_passphrase_seal(out, out_len, buf, len, passphrase, passphrase_len);
out:
    sodium_free(buf);
    pb_epochs_free(&ep);
    pb_signers_free(&sg);
    return rc;
}

/* Insert or overwrite one entry (by sender id), keeping the order. */
static int signer_put(ks_group *g, uint32_t sender, const uint8_t pk[MQE2E_SIGN_PUBLIC_BYTES],
                      const char *client_id, int *changed)
{
    size_t pos;
    ks_signer *e = signer_find(g, sender, &pos);
    if (e != NULL) {
        if (sodium_memcmp(e->pk, pk, MQE2E_SIGN_PUBLIC_BYTES) == 0 &&
            strcmp(e->client_id, client_id) == 0)
            return MQE2E_OK;
        char *c = strdup(client_id);
        if (c == NULL) return MQE2E_ERR_NOMEM;
        free(e->client_id);
        e->client_id = c;
        memcpy(e->pk, pk, MQE2E_SIGN_PUBLIC_BYTES);
        *changed = 1;
        return MQE2E_OK;
    }
    if (g->n_signers >= MQE2E_SIGNERS_MAX) return MQE2E_ERR_TOO_LARGE;
    char *c = strdup(client_id);
    if (c == NULL) return MQE2E_ERR_NOMEM;
    ks_signer *v = realloc(g->signers, (g->n_signers + 1) * sizeof *v);
    if (v == NULL) {
        free(c);
        return MQE2E_ERR_NOMEM;
    }
    g->signers = v;
    memmove(&v[pos + 1], &v[pos], (g->n_signers - pos) * sizeof *v);
    v[pos].sender = sender;
    memcpy(v[pos].pk, pk, MQE2E_SIGN_PUBLIC_BYTES);
    v[pos].client_id = c;
    g->n_signers++;
    *changed = 1;
    return MQE2E_OK;
}

static int signers_merge(ks_group *g, const ks_signer *in, size_t n, int *changed)
{
    for (size_t i = 0; i < n; i++) {
        int rc = signer_put(g, in[i].sender, in[i].pk, in[i].client_id, changed);
        if (rc != MQE2E_OK) return rc;
    }
    return MQE2E_OK;
}

static int cmp_epoch_ptr(const void *a, const void *b)
{
    const Mqe2e__V1__KeystoreEpoch *x = *(Mqe2e__V1__KeystoreEpoch *const *)a;
    const Mqe2e__V1__KeystoreEpoch *y = *(Mqe2e__V1__KeystoreEpoch *const *)b;
    return x->epoch < y->epoch ? -1 : x->epoch > y->epoch;
}

int mqe2e_keystore_group_import(mqe2e_keystore *ks, const uint8_t *sealed, size_t sealed_len,
                                const char *passphrase, size_t passphrase_len, uint64_t now,
                                char *group_id_out, size_t group_id_cap)
{
    if (ks == NULL || sealed == NULL || passphrase == NULL || passphrase_len == 0)
        return MQE2E_ERR_INVALID_ARG;
    uint8_t *pt = NULL;
    size_t pt_len = 0;
    Mqe2e__V1__GroupBundle *b = NULL;
    ks_signer *imported = NULL;
    size_t n_imported = 0;
    int rc = mqe2e_passphrase_open(&pt, &pt_len, sealed, sealed_len, passphrase, passphrase_len);
    if (rc != MQE2E_OK) return rc;
    b = mqe2e__v1__group_bundle__unpack(&wipe_allocator, pt_len, pt);
    rc = MQE2E_ERR_DECODE;
    if (b == NULL || b->format != KS_FORMAT || !valid_group_name(b->name) ||
        !valid_filter(b->topic_filter) || b->n_epochs == 0)
        goto out;
    qsort(b->epochs, b->n_epochs, sizeof *b->epochs, cmp_epoch_ptr);
    for (size_t i = 0; i < b->n_epochs; i++) {
        if (b->epochs[i]->secret.len != MQE2E_GROUP_SECRET_BYTES) goto out;
        if (i > 0 && b->epochs[i]->epoch == b->epochs[i - 1]->epoch) goto out;
    }
    /* Check every conflict before changing anything. */
    ks_group *g = group_find(ks, b->name);
    if (g != NULL)
        for (size_t i = 0; i < b->n_epochs; i++) {
            const ks_epoch *e = epoch_find(g, b->epochs[i]->epoch);
            if (e != NULL && sodium_memcmp(e->secret->b, b->epochs[i]->secret.data,
                                           MQE2E_GROUP_SECRET_BYTES) != 0) {
                rc = MQE2E_ERR_EXISTS;
                goto out;
            }
        }
    if (group_id_out != NULL && group_id_cap <= strlen(b->name)) {
        rc = MQE2E_ERR_BUFFER_TOO_SMALL;
        goto out;
    }
    rc = signers_from_pb(&imported, &n_imported, b->signers, b->n_signers);
    if (rc != MQE2E_OK) goto out;
    int changed = 0;
    for (size_t i = 0; i < b->n_epochs; i++) {
        rc = add_epoch_mem(ks, b->name, g == NULL ? b->topic_filter : NULL, b->epochs[i]->epoch,
                           b->epochs[i]->secret.data, now, &changed);
        if (rc != MQE2E_OK) {
            /* Only allocation can fail here; keep what was added and have
             * it written with the next store. */
            ks->dirty = ks->dirty || changed;
            goto out;
        }
    }
    g = group_find(ks, b->name);
    if (b->signed_mode && !g->signed_mode) {
        g->signed_mode = 1;
        changed = 1;
    }
    rc = signers_merge(g, imported, n_imported, &changed);
    if (rc != MQE2E_OK) {
        ks->dirty = ks->dirty || changed;
        goto out;
    }
    rc = changed || ks->dirty ? ks_store(ks) : MQE2E_OK;
    if (rc == MQE2E_OK && group_id_out != NULL) memcpy(group_id_out, b->name, strlen(b->name) + 1);
out:
    signers_free(imported, n_imported);
    if (b != NULL) mqe2e__v1__group_bundle__free_unpacked(b, &wipe_allocator);
    sodium_memzero(pt, pt_len);
    free(pt);
    return rc;
}

int mqe2e_keystore_dh_secret(const mqe2e_keystore *ks, uint8_t dh_sk[32])
{
    return mqe2e__keystore_dh_secret(ks, dh_sk);
}

int mqe2e_keystore_sign(const mqe2e_keystore *ks, uint8_t sig[64], const uint8_t *msg,
                        size_t msg_len)
{
    return mqe2e__keystore_sign(ks, sig, msg, msg_len);
}

/* ------------------------------------------------------------------ */
/* Control plane */

static int pin_array_ok(const char *s, size_t cap, size_t max)
{
    return memchr(s, '\0', cap) != NULL && printable(s, max);
}

int mqe2e_keystore_set_authority(mqe2e_keystore *ks, const mqe2e_authority_pin *pin)
{
    if (ks == NULL || pin == NULL ||
        !pin_array_ok(pin->authority_id, sizeof pin->authority_id, MQE2E_AUTHORITY_ID_MAX_BYTES) ||
        !pin_array_ok(pin->control_prefix, sizeof pin->control_prefix, MQE2E_KS_PREFIX_MAX_BYTES))
        return MQE2E_ERR_INVALID_ARG;
    if (ks->has_pin) {
        int same = strcmp(ks->pin.authority_id, pin->authority_id) == 0 &&
                   strcmp(ks->pin.control_prefix, pin->control_prefix) == 0 &&
                   sodium_memcmp(ks->pin.sign_public, pin->sign_public, MQE2E_SIGN_PUBLIC_BYTES) == 0 &&
                   sodium_memcmp(ks->pin.dh_public, pin->dh_public, MQE2E_DH_PUBLIC_BYTES) == 0;
        if (!same) return MQE2E_ERR_EXISTS;
        return ks->dirty ? ks_store(ks) : MQE2E_OK;
    }
    memset(&ks->pin, 0, sizeof ks->pin);
    memcpy(ks->pin.authority_id, pin->authority_id, strlen(pin->authority_id) + 1U);
    memcpy(ks->pin.control_prefix, pin->control_prefix, strlen(pin->control_prefix) + 1U);
    memcpy(ks->pin.sign_public, pin->sign_public, MQE2E_SIGN_PUBLIC_BYTES);
    memcpy(ks->pin.dh_public, pin->dh_public, MQE2E_DH_PUBLIC_BYTES);
    ks->has_pin = 1;
    int rc = ks_store(ks);
    if (rc != MQE2E_OK) {
        /* Not pinned unless durable: a later retry starts clean. */
        ks->has_pin = 0;
        memset(&ks->pin, 0, sizeof ks->pin);
    }
    return rc;
}

int mqe2e_keystore_authority(const mqe2e_keystore *ks, mqe2e_authority_pin *pin)
{
    if (ks == NULL || pin == NULL) return MQE2E_ERR_INVALID_ARG;
    if (!ks->has_pin) return MQE2E_ERR_NOT_FOUND;
    *pin = ks->pin;
    return MQE2E_OK;
}

int mqe2e_keystore_set_credential(mqe2e_keystore *ks, const uint8_t *credential, size_t len)
{
    if (ks == NULL || credential == NULL || len == 0) return MQE2E_ERR_INVALID_ARG;
    if (len > MQE2E_KS_CREDENTIAL_MAX_BYTES) return MQE2E_ERR_TOO_LARGE;
    if (ks->credential != NULL && ks->credential_len == len &&
        memcmp(ks->credential, credential, len) == 0)
        return ks->dirty ? ks_store(ks) : MQE2E_OK;
    uint8_t *b;
    size_t blen;
    int rc = dup_bytes(&b, &blen, credential, len);
    if (rc != MQE2E_OK) return rc;
    free(ks->credential);
    ks->credential = b;
    ks->credential_len = blen;
    return ks_store(ks);
}

int mqe2e_keystore_credential(const mqe2e_keystore *ks, const uint8_t **credential, size_t *len)
{
    if (ks == NULL || credential == NULL || len == NULL) return MQE2E_ERR_INVALID_ARG;
    if (ks->credential == NULL) return MQE2E_ERR_NOT_FOUND;
    *credential = ks->credential;
    *len = ks->credential_len;
    return MQE2E_OK;
}

int mqe2e_keystore_set_revocation_list(mqe2e_keystore *ks, const uint8_t *list, size_t len,
                                       uint64_t version)
{
    if (ks == NULL || list == NULL || len == 0 || version == 0) return MQE2E_ERR_INVALID_ARG;
    if (len > MQE2E_KS_REVOCATION_MAX_BYTES) return MQE2E_ERR_TOO_LARGE;
    if (version < ks->revocation_version) return MQE2E_ERR_REPLAY;
    if (version == ks->revocation_version) return ks->dirty ? ks_store(ks) : MQE2E_OK;
    uint8_t *b;
    size_t blen;
    int rc = dup_bytes(&b, &blen, list, len);
    if (rc != MQE2E_OK) return rc;
    free(ks->revocations);
    ks->revocations = b;
    ks->revocations_len = blen;
    ks->revocation_version = version;
    return ks_store(ks);
}

int mqe2e_keystore_revocation_list(const mqe2e_keystore *ks, const uint8_t **list, size_t *len,
                                   uint64_t *version)
{
    if (ks == NULL || list == NULL || len == NULL) return MQE2E_ERR_INVALID_ARG;
    if (ks->revocations == NULL) return MQE2E_ERR_NOT_FOUND;
    *list = ks->revocations;
    *len = ks->revocations_len;
    if (version != NULL) *version = ks->revocation_version;
    return MQE2E_OK;
}

int mqe2e_keystore_set_push_seq(mqe2e_keystore *ks, uint64_t push_seq)
{
    if (ks == NULL) return MQE2E_ERR_INVALID_ARG;
    if (push_seq < ks->push_seq) return MQE2E_ERR_REPLAY;
    if (push_seq == ks->push_seq) return ks->dirty ? ks_store(ks) : MQE2E_OK;
    uint64_t old = ks->push_seq;
    ks->push_seq = push_seq;
    int rc = ks_store(ks);
    /* Not recorded unless durable: the push will be applied again (idempotent). */
    if (rc != MQE2E_OK) ks->push_seq = old;
    return rc;
}

uint64_t mqe2e_keystore_push_seq(const mqe2e_keystore *ks) { return ks != NULL ? ks->push_seq : 0; }

int mqe2e_keystore_group_apply(mqe2e_keystore *ks, const char *group_id, const char *topic_filter,
                               uint32_t epoch, const uint8_t secret[MQE2E_GROUP_SECRET_BYTES],
                               uint32_t sender_id, uint64_t retired_at, uint64_t now)
{
    if (ks == NULL || !valid_group_name(group_id) || secret == NULL || sender_id == 0)
        return MQE2E_ERR_INVALID_ARG;
    int changed = 0;
    int rc = add_epoch_mem(ks, group_id, topic_filter, epoch, secret, now, &changed);
    if (rc != MQE2E_OK) return rc;
    ks_group *g = group_find(ks, group_id);
    if (g->sender != sender_id) {
        g->sender = sender_id;
        changed = 1;
    }
    /* The authority's retirement time starts the grace period, not the
     * moment this device happened to hear of it. */
    ks_epoch *e = epoch_find(g, epoch);
    if (retired_at != 0 && e != NULL && (e->retired_at == 0 || retired_at < e->retired_at) &&
        e != &g->epochs[g->n_epochs - 1]) {
        e->retired_at = retired_at;
        changed = 1;
    }
    return changed || ks->dirty ? ks_store(ks) : MQE2E_OK;
}

/* ------------------------------------------------------------------ */
/* Signed group mode */

int mqe2e_keystore_group_set_signed(mqe2e_keystore *ks, const char *group_id, int signed_mode)
{
    if (ks == NULL || group_id == NULL) return MQE2E_ERR_INVALID_ARG;
    ks_group *g = group_find(ks, group_id);
    if (g == NULL) return MQE2E_ERR_NOT_FOUND;
    int want = signed_mode != 0;
    if (g->signed_mode == want && !ks->dirty) return MQE2E_OK;
    g->signed_mode = want;
    return ks_store(ks);
}

int mqe2e_keystore_group_is_signed(const mqe2e_keystore *ks, const char *group_id)
{
    const ks_group *g = group_find(ks, group_id);
    return g != NULL && g->signed_mode;
}

int mqe2e_keystore_signer_add(mqe2e_keystore *ks, const char *group_id, const mqe2e_signer *signer)
{
    if (ks == NULL || group_id == NULL || signer == NULL || !signer_valid(signer))
        return MQE2E_ERR_INVALID_ARG;
    ks_group *g = group_find(ks, group_id);
    if (g == NULL) return MQE2E_ERR_NOT_FOUND;
    const ks_signer *e = signer_find(g, signer->sender_id, NULL);
    if (e != NULL && sodium_memcmp(e->pk, signer->sign_public, MQE2E_SIGN_PUBLIC_BYTES) != 0)
        return MQE2E_ERR_EXISTS;
    int changed = 0;
    int rc = signer_put(g, signer->sender_id, signer->sign_public, signer->client_id, &changed);
    if (rc != MQE2E_OK) return rc;
    return changed || ks->dirty ? ks_store(ks) : MQE2E_OK;
}

int mqe2e_keystore_signer_remove(mqe2e_keystore *ks, const char *group_id, uint32_t sender_id)
{
    if (ks == NULL || group_id == NULL) return MQE2E_ERR_INVALID_ARG;
    ks_group *g = group_find(ks, group_id);
    if (g == NULL) return MQE2E_ERR_NOT_FOUND;
    size_t pos;
    ks_signer *e = signer_find(g, sender_id, &pos);
    if (e == NULL) return MQE2E_ERR_NOT_FOUND;
    free(e->client_id);
    memmove(&g->signers[pos], &g->signers[pos + 1], (g->n_signers - pos - 1) * sizeof *e);
    g->n_signers--;
    return ks_store(ks);
}

int mqe2e_keystore_signers_replace(mqe2e_keystore *ks, const char *group_id,
                                   const mqe2e_signer *signers, size_t n)
{
    if (ks == NULL || group_id == NULL || (signers == NULL && n != 0))
        return MQE2E_ERR_INVALID_ARG;
    ks_group *g = group_find(ks, group_id);
    if (g == NULL) return MQE2E_ERR_NOT_FOUND;
    for (size_t i = 0; i < n; i++)
        if (!signer_valid(&signers[i])) return MQE2E_ERR_INVALID_ARG;
    ks_signer *v = NULL;
    size_t nv = 0;
    int rc = signers_build(&v, &nv, signers, n);
    if (rc != MQE2E_OK) return rc;
    /* Skip the write when the authority sent the directory we already hold. */
    int same = nv == g->n_signers;
    for (size_t i = 0; same && i < nv; i++)
        same = v[i].sender == g->signers[i].sender &&
               sodium_memcmp(v[i].pk, g->signers[i].pk, MQE2E_SIGN_PUBLIC_BYTES) == 0 &&
               strcmp(v[i].client_id, g->signers[i].client_id) == 0;
    if (same) {
        signers_free(v, nv);
        return ks->dirty ? ks_store(ks) : MQE2E_OK;
    }
    signers_free(g->signers, g->n_signers);
    g->signers = v;
    g->n_signers = nv;
    return ks_store(ks);
}

size_t mqe2e_keystore_signer_count(const mqe2e_keystore *ks, const char *group_id)
{
    const ks_group *g = group_find(ks, group_id);
    return g != NULL ? g->n_signers : 0;
}

int mqe2e_keystore_signer_get(const mqe2e_keystore *ks, const char *group_id, size_t index,
                              mqe2e_signer *out)
{
    if (ks == NULL || group_id == NULL || out == NULL) return MQE2E_ERR_INVALID_ARG;
    const ks_group *g = group_find(ks, group_id);
    if (g == NULL || index >= g->n_signers) return MQE2E_ERR_NOT_FOUND;
    const ks_signer *e = &g->signers[index];
    memset(out, 0, sizeof *out);
    out->sender_id = e->sender;
    memcpy(out->sign_public, e->pk, MQE2E_SIGN_PUBLIC_BYTES);
    memcpy(out->client_id, e->client_id, strlen(e->client_id) + 1U);
    return MQE2E_OK;
}

int mqe2e_keystore_signer_lookup(const mqe2e_keystore *ks, const char *group_id,
                                 uint32_t sender_id, uint8_t sign_public[MQE2E_SIGN_PUBLIC_BYTES],
                                 const char **client_id)
{
    if (ks == NULL || group_id == NULL || sign_public == NULL) return MQE2E_ERR_INVALID_ARG;
    const ks_group *g = group_find(ks, group_id);
    const ks_signer *e = g != NULL ? signer_find(g, sender_id, NULL) : NULL;
    if (e == NULL) return MQE2E_ERR_NOT_FOUND;
    memcpy(sign_public, e->pk, MQE2E_SIGN_PUBLIC_BYTES);
    if (client_id != NULL) *client_id = e->client_id;
    return MQE2E_OK;
}
