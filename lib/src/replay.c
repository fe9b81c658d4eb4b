/* Sliding replay window (bit i of the bitmap: top - i was accepted). */
#include "mqe2e/replay.h"

#include <string.h>

#include "mqe2e/error.h"

#define WORD_BITS 64U

int mqe2e_replay_init(mqe2e_replay_window *w, uint32_t width)
{
    if (w == NULL || width > MQE2E_REPLAY_MAX_WIDTH) {
        return MQE2E_ERR_INVALID_ARG;
    }
    if (width == 0) {
        width = MQE2E_REPLAY_DEFAULT_WIDTH;
    }
    memset(w, 0, sizeof *w);
    w->width = (width + WORD_BITS - 1U) / WORD_BITS * WORD_BITS;
    return MQE2E_OK;
}

static bool width_ok(const mqe2e_replay_window *w)
{
    return w->width != 0 && w->width <= MQE2E_REPLAY_MAX_WIDTH && w->width % WORD_BITS == 0;
}

static bool bit_get(const mqe2e_replay_window *w, uint64_t i)
{
    return ((w->bits[i / WORD_BITS] >> (i % WORD_BITS)) & 1U) != 0;
}

int mqe2e_replay_check(const mqe2e_replay_window *w, uint64_t seq)
{
    uint64_t age;

    /* A window that was never initialised must not accept anything. */
    if (w == NULL || !width_ok(w)) {
        return MQE2E_ERR_INVALID_ARG;
    }
    if (!w->any || seq > w->top) {
        return MQE2E_OK;
    }
    age = w->top - seq;
    if (age >= w->width || bit_get(w, age)) {
        return MQE2E_ERR_REPLAY;
    }
    return MQE2E_OK;
}

/* Age every entry by d positions: bit i moves to bit i + d; bits past the width fall off. */
static void shift_window(mqe2e_replay_window *w, uint64_t d)
{
    const size_t words = w->width / WORD_BITS;

    if (d >= w->width) {
        memset(w->bits, 0, sizeof w->bits);
        return;
    }
    const size_t wshift = (size_t)(d / WORD_BITS);
    const unsigned bshift = (unsigned)(d % WORD_BITS);
    for (size_t k = words; k-- > 0;) {
        uint64_t v = 0;
        if (k >= wshift) {
            v = w->bits[k - wshift] << bshift;
            if (bshift != 0 && k > wshift) {
                v |= w->bits[k - wshift - 1U] >> (WORD_BITS - bshift);
            }
        }
        w->bits[k] = v;
    }
}

int mqe2e_replay_update(mqe2e_replay_window *w, uint64_t seq)
{
    int rc = mqe2e_replay_check(w, seq);

    if (rc != MQE2E_OK) {
        return rc;
    }
    if (!w->any) {
        memset(w->bits, 0, sizeof w->bits);
        w->any = true;
        w->top = seq;
    } else if (seq > w->top) {
        shift_window(w, seq - w->top);
        w->top = seq;
    }
    {
        uint64_t age = w->top - seq;
        w->bits[age / WORD_BITS] |= (uint64_t)1U << (age % WORD_BITS);
    }
    return MQE2E_OK;
}
