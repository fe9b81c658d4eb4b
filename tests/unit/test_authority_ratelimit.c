/* Handshake admission limiter of the authority (authority/ratelimit.h). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "mqe2e/error.h"
#include "ratelimit.h"

static authority_rl *make(uint32_t rate, uint32_t burst, uint32_t key_per_min, uint32_t key_burst,
                          uint32_t keys)
{
    authority_rl_config c = {rate, burst, key_per_min, key_burst, keys};
    authority_rl *rl = NULL;
    cr_assert_eq(authority_rl_new(&rl, &c), MQE2E_OK);
    return rl;
}

static authority_rl_verdict admit(authority_rl *rl, const char *key, uint64_t ms)
{
    return authority_rl_admit(rl, key, strlen(key), ms);
}

Test(authority_ratelimit, bad_config_refused)
{
    authority_rl *rl = (authority_rl *)1;
    authority_rl_config c;
    authority_rl_defaults(&c);
    cr_assert_eq(authority_rl_new(NULL, &c), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(authority_rl_new(&rl, NULL), MQE2E_ERR_INVALID_ARG);
    cr_assert_null(rl);
    c.keys = 3;
    cr_assert_eq(authority_rl_new(&rl, &c), MQE2E_ERR_INVALID_ARG);
    c.keys = (1U << 24) + 1U;
    cr_assert_eq(authority_rl_new(&rl, &c), MQE2E_ERR_INVALID_ARG);
    authority_rl_free(NULL);
    cr_assert_eq(authority_rl_admit(NULL, "a", 1, 0), AUTHORITY_RL_GLOBAL);
}

Test(authority_ratelimit, defaults_documented)
{
    authority_rl_config c;
    authority_rl_defaults(&c);
    cr_assert_eq(c.rate, 2000U);
    cr_assert_eq(c.burst, 4000U);
    cr_assert_eq(c.key_per_min, 20U);
    cr_assert_eq(c.key_burst, 10U);
    cr_assert_eq(c.keys, 16384U);
}

Test(authority_ratelimit, global_burst_then_rate)
{
    authority_rl *rl = make(10, 5, 0, 0, 4);
    uint64_t t = 1000000;
    for (int i = 0; i < 5; i++)
        cr_assert_eq(admit(rl, "k", t), AUTHORITY_RL_ADMIT, "burst %d", i);
    cr_assert_eq(admit(rl, "k", t), AUTHORITY_RL_GLOBAL);
    /* 10/s: one token every 100 ms, not before. */
    cr_assert_eq(admit(rl, "k", t + 99), AUTHORITY_RL_GLOBAL);
    cr_assert_eq(admit(rl, "k", t + 100), AUTHORITY_RL_ADMIT);
    cr_assert_eq(admit(rl, "k", t + 150), AUTHORITY_RL_GLOBAL);
    /* Over 10 s exactly rate * 10 admitted (plus nothing saved past the burst). */
    int n = 0;
    for (uint64_t ms = t + 200; ms < t + 10200; ms++)
        n += admit(rl, "k", ms) == AUTHORITY_RL_ADMIT;
    cr_assert_eq(n, 100);
    /* A long idle time refills to the burst, never beyond. */
    n = 0;
    for (int i = 0; i < 20; i++)
        n += admit(rl, "k", t + 1000000000ULL) == AUTHORITY_RL_ADMIT;
    cr_assert_eq(n, 5);
    authority_rl_free(rl);
}

Test(authority_ratelimit, per_key_bucket_and_independence)
{
    authority_rl *rl = make(0, 0, 6, 3, 64); /* 6/min: one token every 10 s */
    uint64_t t = 5000;
    for (int i = 0; i < 3; i++)
        cr_assert_eq(admit(rl, "dev-1", t), AUTHORITY_RL_ADMIT);
    cr_assert_eq(admit(rl, "dev-1", t), AUTHORITY_RL_KEY);
    /* Another key is not affected. */
    cr_assert_eq(admit(rl, "dev-2", t), AUTHORITY_RL_ADMIT);
    cr_assert_eq(admit(rl, "dev-1", t + 9999), AUTHORITY_RL_KEY);
    cr_assert_eq(admit(rl, "dev-1", t + 10000), AUTHORITY_RL_ADMIT);
    cr_assert_eq(admit(rl, "dev-1", t + 10000), AUTHORITY_RL_KEY);
    /* Time going backwards refills nothing. */
    cr_assert_eq(admit(rl, "dev-1", t), AUTHORITY_RL_KEY);
    cr_assert_eq(authority_rl_keys_used(rl), 2);
    authority_rl_free(rl);
}

Test(authority_ratelimit, key_refusal_spends_no_global_token)
{
    authority_rl *rl = make(1, 3, 60, 1, 64);
    uint64_t t = 1;
    cr_assert_eq(admit(rl, "flood", t), AUTHORITY_RL_ADMIT);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(admit(rl, "flood", t), AUTHORITY_RL_KEY);
    /* The global bucket still holds two tokens for others. */
    cr_assert_eq(admit(rl, "a", t), AUTHORITY_RL_ADMIT);
    cr_assert_eq(admit(rl, "b", t), AUTHORITY_RL_ADMIT);
    cr_assert_eq(admit(rl, "c", t), AUTHORITY_RL_GLOBAL);
    /* A global refusal spends no key token either: "c" has its one token later. */
    cr_assert_eq(admit(rl, "c", t + 1000), AUTHORITY_RL_ADMIT);
    authority_rl_free(rl);
}

Test(authority_ratelimit, table_bounded_lru_per_set)
{
    /* 8 entries: 2 sets of 4 ways. */
    authority_rl *rl = make(0, 0, 1, 1, 8);
    char k[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(k, sizeof k, "spoof-%d", i);
        cr_assert_eq(admit(rl, k, 1), AUTHORITY_RL_ADMIT);
        cr_assert_leq(authority_rl_keys_used(rl), 8);
    }
    cr_assert_eq(authority_rl_keys_used(rl), 8);
    /* A key touched on every round stays (it is never the least recently used). */
    authority_rl_free(rl);
    rl = make(0, 0, 1, 1, 8);
    cr_assert_eq(admit(rl, "victim", 1), AUTHORITY_RL_ADMIT);
    for (int i = 0; i < 10000; i++) {
        snprintf(k, sizeof k, "spoof-%d", i);
        (void)admit(rl, k, 1);
        cr_assert_eq(admit(rl, "victim", 1), AUTHORITY_RL_KEY, "round %d", i);
    }
    authority_rl_free(rl);
}

Test(authority_ratelimit, off_when_rates_zero)
{
    authority_rl *rl = make(0, 0, 0, 0, 4);
    for (int i = 0; i < 100000; i++)
        cr_assert_eq(admit(rl, "x", 0), AUTHORITY_RL_ADMIT);
    cr_assert_eq(authority_rl_keys_used(rl), 0);
    authority_rl_free(rl);
}

Test(authority_ratelimit, empty_key_is_a_key)
{
    authority_rl *rl = make(0, 0, 1, 1, 4);
    cr_assert_eq(authority_rl_admit(rl, NULL, 0, 7), AUTHORITY_RL_ADMIT);
    cr_assert_eq(authority_rl_admit(rl, NULL, 0, 7), AUTHORITY_RL_KEY);
    cr_assert_eq(authority_rl_admit(rl, NULL, 5, 7), AUTHORITY_RL_GLOBAL);
    authority_rl_free(rl);
}
