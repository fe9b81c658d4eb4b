/* Token buckets for handshake admission (ratelimit.h). */
#include "ratelimit.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "mqe2e/error.h"

#define WAYS 4U
/* One token is UNIT units: per-minute and per-second rates both refill a
 * whole number of units per millisecond. */
#define UNIT 60000ULL
#define KEYS_MAX (1U << 24)

typedef struct rl_entry {
    uint64_t hash;
    uint64_t units;
    uint64_t last_ms;
    uint64_t stamp; /* 0: free; otherwise the limiter's use counter at the last touch */
} rl_entry;

struct authority_rl {
    authority_rl_config cfg;
    uint64_t units, last_ms; /* global bucket */
    size_t n_sets;
    uint64_t stamp;
    size_t used;
    uint8_t hash_key[crypto_shorthash_KEYBYTES];
    rl_entry *e;
};

void authority_rl_defaults(authority_rl_config *cfg)
{
    cfg->rate = AUTHORITY_RL_DEFAULT_RATE;
    cfg->burst = AUTHORITY_RL_DEFAULT_BURST;
    cfg->key_per_min = AUTHORITY_RL_DEFAULT_KEY_PER_MIN;
    cfg->key_burst = AUTHORITY_RL_DEFAULT_KEY_BURST;
    cfg->keys = AUTHORITY_RL_DEFAULT_KEYS;
}

int authority_rl_new(authority_rl **out, const authority_rl_config *cfg)
{
    if (out != NULL) *out = NULL;
    if (out == NULL || cfg == NULL || cfg->keys < WAYS || cfg->keys > KEYS_MAX)
        return MQE2E_ERR_INVALID_ARG;
    if (sodium_init() < 0) return MQE2E_ERR_CRYPTO;
    authority_rl *rl = calloc(1, sizeof *rl);
    if (rl == NULL) return MQE2E_ERR_NOMEM;
    rl->cfg = *cfg;
    if (rl->cfg.rate > 0 && rl->cfg.burst == 0) rl->cfg.burst = 1;
    if (rl->cfg.key_per_min > 0 && rl->cfg.key_burst == 0) rl->cfg.key_burst = 1;
    rl->n_sets = (cfg->keys + WAYS - 1U) / WAYS;
    rl->e = calloc(rl->n_sets * WAYS, sizeof *rl->e);
    if (rl->e == NULL) {
        free(rl);
        return MQE2E_ERR_NOMEM;
    }
    rl->units = (uint64_t)rl->cfg.burst * UNIT;
    randombytes_buf(rl->hash_key, sizeof rl->hash_key);
    *out = rl;
    return MQE2E_OK;
}

void authority_rl_free(authority_rl *rl)
{
    if (rl == NULL) return;
    sodium_memzero(rl->hash_key, sizeof rl->hash_key);
    free(rl->e);
    free(rl);
}

/* Add what @p per_ms refills since *last (capped at cap units); never moves *last back. */
static void refill(uint64_t *units, uint64_t *last, uint64_t now_ms, uint64_t per_ms, uint64_t cap)
{
    if (now_ms > *last) {
        uint64_t dt = now_ms - *last;
        /* Saturate instead of overflowing after a long idle time. */
        uint64_t add = per_ms != 0 && dt > (cap / per_ms) + 1U ? cap : dt * per_ms;
        *units = cap - *units < add ? cap : *units + add;
        *last = now_ms;
    }
}

static rl_entry *lookup(authority_rl *rl, const void *key, size_t key_len, uint64_t now_ms)
{
    uint8_t h[crypto_shorthash_BYTES];
    uint64_t hash;
    crypto_shorthash(h, key, key_len, rl->hash_key);
    memcpy(&hash, h, sizeof hash);
    rl_entry *set = &rl->e[(size_t)(hash % rl->n_sets) * WAYS];
    rl_entry *victim = &set[0];
    for (size_t i = 0; i < WAYS; i++) {
        if (set[i].stamp != 0 && set[i].hash == hash) return &set[i];
        if (set[i].stamp == 0) {
            if (victim->stamp != 0) victim = &set[i];
        } else if (victim->stamp != 0 && set[i].stamp < victim->stamp) {
            victim = &set[i];
        }
    }
    if (victim->stamp == 0) rl->used++;
    victim->hash = hash;
    victim->units = (uint64_t)rl->cfg.key_burst * UNIT;
    victim->last_ms = now_ms;
    victim->stamp = ++rl->stamp;
    return victim;
}

authority_rl_verdict authority_rl_admit(authority_rl *rl, const void *key, size_t key_len,
                                        uint64_t now_ms)
{
    rl_entry *k = NULL;
    if (rl == NULL || (key == NULL && key_len != 0)) return AUTHORITY_RL_GLOBAL;
    if (rl->cfg.key_per_min > 0) {
        k = lookup(rl, key, key_len, now_ms);
        k->stamp = ++rl->stamp;
        refill(&k->units, &k->last_ms, now_ms, rl->cfg.key_per_min,
               (uint64_t)rl->cfg.key_burst * UNIT);
        if (k->units < UNIT) return AUTHORITY_RL_KEY;
    }
    if (rl->cfg.rate > 0) {
        refill(&rl->units, &rl->last_ms, now_ms, (uint64_t)rl->cfg.rate * (UNIT / 1000U),
               (uint64_t)rl->cfg.burst * UNIT);
        if (rl->units < UNIT) return AUTHORITY_RL_GLOBAL;
        rl->units -= UNIT;
    }
    if (k != NULL) k->units -= UNIT;
    return AUTHORITY_RL_ADMIT;
}

size_t authority_rl_keys_used(const authority_rl *rl)
{
    return rl != NULL ? rl->used : 0;
}
