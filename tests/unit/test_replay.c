/* Replay window: order, duplicates, age limit, jumps, widths, edge values. */
#include <criterion/criterion.h>
#include <sodium.h>
#include <string.h>

#include "mqe2e/error.h"
#include "mqe2e/replay.h"

static mqe2e_replay_window make(uint32_t width)
{
    mqe2e_replay_window w;
    cr_assert_eq(mqe2e_replay_init(&w, width), MQE2E_OK);
    return w;
}

/* check then update, as the receive path does after authentication. */
static int accept_seq(mqe2e_replay_window *w, uint64_t seq)
{
    int rc = mqe2e_replay_check(w, seq);
    int rc2 = mqe2e_replay_update(w, seq);
    cr_assert_eq(rc, rc2, "check and update disagree on %llu", (unsigned long long)seq);
    return rc2;
}

Test(replay, init_widths)
{
    mqe2e_replay_window w;
    cr_assert_eq(mqe2e_replay_init(&w, 0), MQE2E_OK);
    cr_assert_eq(w.width, MQE2E_REPLAY_DEFAULT_WIDTH);
    cr_assert_eq(w.any, false);
    cr_assert_eq(mqe2e_replay_init(&w, 1), MQE2E_OK);
    cr_assert_eq(w.width, 64U);
    cr_assert_eq(mqe2e_replay_init(&w, 64), MQE2E_OK);
    cr_assert_eq(w.width, 64U);
    cr_assert_eq(mqe2e_replay_init(&w, 65), MQE2E_OK);
    cr_assert_eq(w.width, 128U);
    cr_assert_eq(mqe2e_replay_init(&w, 1000), MQE2E_OK);
    cr_assert_eq(w.width, 1024U);
    cr_assert_eq(mqe2e_replay_init(&w, MQE2E_REPLAY_MAX_WIDTH), MQE2E_OK);
    cr_assert_eq(w.width, MQE2E_REPLAY_MAX_WIDTH);
    cr_assert_eq(mqe2e_replay_init(&w, MQE2E_REPLAY_MAX_WIDTH + 1U), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_replay_init(&w, UINT32_MAX), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_replay_init(NULL, 64), MQE2E_ERR_INVALID_ARG);
}

Test(replay, uninitialised_window_refuses)
{
    mqe2e_replay_window w;
    memset(&w, 0, sizeof w);
    cr_assert_neq(mqe2e_replay_check(&w, 1), MQE2E_OK);
    cr_assert_neq(mqe2e_replay_update(&w, 1), MQE2E_OK);
    cr_assert_neq(mqe2e_replay_check(NULL, 1), MQE2E_OK);
    cr_assert_neq(mqe2e_replay_update(NULL, 1), MQE2E_OK);
}

Test(replay, in_order_and_duplicates)
{
    mqe2e_replay_window w = make(128);
    for (uint64_t s = 0; s < 1000; s++) {
        cr_assert_eq(accept_seq(&w, s), MQE2E_OK, "seq %llu", (unsigned long long)s);
        cr_assert_eq(accept_seq(&w, s), MQE2E_ERR_REPLAY, "duplicate %llu", (unsigned long long)s);
    }
    cr_assert_eq(w.top, 999U);
    /* Everything inside the window is a duplicate, everything below is too old. */
    for (uint64_t s = 0; s < 1000; s++) {
        cr_assert_eq(mqe2e_replay_check(&w, s), MQE2E_ERR_REPLAY);
    }
    cr_assert_eq(mqe2e_replay_check(&w, 1000), MQE2E_OK);
}

Test(replay, out_of_order_within_window)
{
    mqe2e_replay_window w = make(64);
    cr_assert_eq(accept_seq(&w, 100), MQE2E_OK);
    /* 63 older sequence numbers fit (top - 63 .. top - 1), in any order. */
    for (uint64_t s = 37; s < 100; s += 2) {
        cr_assert_eq(accept_seq(&w, s), MQE2E_OK, "seq %llu", (unsigned long long)s);
    }
    for (uint64_t s = 38; s < 100; s += 2) {
        cr_assert_eq(accept_seq(&w, s), MQE2E_OK, "seq %llu", (unsigned long long)s);
    }
    for (uint64_t s = 37; s <= 100; s++) {
        cr_assert_eq(accept_seq(&w, s), MQE2E_ERR_REPLAY, "seq %llu again", (unsigned long long)s);
    }
    cr_assert_eq(mqe2e_replay_check(&w, 36), MQE2E_ERR_REPLAY, "older than the window");
    cr_assert_eq(mqe2e_replay_check(&w, 0), MQE2E_ERR_REPLAY);
}

Test(replay, too_old_edge)
{
    static const uint32_t widths[] = {64, 128, 1024};
    for (size_t i = 0; i < 3; i++) {
        uint32_t wd = widths[i];
        mqe2e_replay_window w = make(wd);
        uint64_t top = 5000;
        cr_assert_eq(accept_seq(&w, top), MQE2E_OK);
        cr_assert_eq(mqe2e_replay_check(&w, top - wd), MQE2E_ERR_REPLAY, "width %u", wd);
        cr_assert_eq(mqe2e_replay_check(&w, top - (wd - 1U)), MQE2E_OK, "width %u", wd);
        cr_assert_eq(accept_seq(&w, top - (wd - 1U)), MQE2E_OK);
        cr_assert_eq(accept_seq(&w, top - (wd - 1U)), MQE2E_ERR_REPLAY);
        /* One step forward pushes the oldest entry out of the window. */
        cr_assert_eq(accept_seq(&w, top + 1), MQE2E_OK);
        cr_assert_eq(mqe2e_replay_check(&w, top - (wd - 1U)), MQE2E_ERR_REPLAY);
        cr_assert_eq(mqe2e_replay_check(&w, top - (wd - 2U)), MQE2E_OK);
    }
}

Test(replay, bits_cross_word_boundaries)
{
    mqe2e_replay_window w = make(1024);
    /* Accept every third number, then slide by amounts that are not multiples of 64. */
    for (uint64_t s = 0; s < 3000; s += 3) {
        cr_assert_eq(accept_seq(&w, s), MQE2E_OK);
    }
    uint64_t top = w.top; /* 2997 */
    for (uint64_t s = top - 1023; s <= top; s++) {
        int exp = (s % 3 == 0) ? MQE2E_ERR_REPLAY : MQE2E_OK;
        cr_assert_eq(mqe2e_replay_check(&w, s), exp, "seq %llu", (unsigned long long)s);
    }
    cr_assert_eq(accept_seq(&w, top + 70), MQE2E_OK);
    for (uint64_t s = top + 70 - 1023; s <= top; s++) {
        int exp = (s % 3 == 0) ? MQE2E_ERR_REPLAY : MQE2E_OK;
        cr_assert_eq(mqe2e_replay_check(&w, s), exp, "after slide, seq %llu",
                     (unsigned long long)s);
    }
    for (uint64_t s = top + 1; s < top + 70; s++) {
        cr_assert_eq(mqe2e_replay_check(&w, s), MQE2E_OK);
    }
}

Test(replay, big_jumps_reset)
{
    static const uint32_t widths[] = {64, 128, 1024};
    for (size_t i = 0; i < 3; i++) {
        mqe2e_replay_window w = make(widths[i]);
        for (uint64_t s = 1; s <= 10; s++) {
            cr_assert_eq(accept_seq(&w, s), MQE2E_OK);
        }
        /* Jump of exactly the width, then of far more. */
        uint64_t t = 10 + widths[i];
        cr_assert_eq(accept_seq(&w, t), MQE2E_OK);
        cr_assert_eq(mqe2e_replay_check(&w, 10), MQE2E_ERR_REPLAY, "left the window");
        for (uint64_t s = 11; s < t; s++) {
            cr_assert_eq(mqe2e_replay_check(&w, s), MQE2E_OK, "gap seq %llu",
                         (unsigned long long)s);
        }
        t += 1000000;
        cr_assert_eq(accept_seq(&w, t), MQE2E_OK);
        cr_assert_eq(mqe2e_replay_check(&w, t - 1), MQE2E_OK);
        cr_assert_eq(mqe2e_replay_check(&w, t), MQE2E_ERR_REPLAY);
        cr_assert_eq(mqe2e_replay_check(&w, t - widths[i]), MQE2E_ERR_REPLAY);
        for (unsigned b = 0; b < MQE2E_REPLAY_MAX_WIDTH / 64; b++) {
            if (b == 0) {
                cr_assert_eq(w.bits[0], 1U, "only the new top is marked");
            } else {
                cr_assert_eq(w.bits[b], 0U);
            }
        }
    }
}

Test(replay, zero_and_max)
{
    mqe2e_replay_window w = make(64);
    cr_assert_eq(accept_seq(&w, 0), MQE2E_OK);
    cr_assert_eq(accept_seq(&w, 0), MQE2E_ERR_REPLAY, "seq 0 is recorded like any other");
    cr_assert_eq(accept_seq(&w, UINT64_MAX), MQE2E_OK);
    cr_assert_eq(w.top, UINT64_MAX);
    cr_assert_eq(accept_seq(&w, UINT64_MAX), MQE2E_ERR_REPLAY);
    cr_assert_eq(accept_seq(&w, UINT64_MAX - 63), MQE2E_OK);
    cr_assert_eq(mqe2e_replay_check(&w, UINT64_MAX - 64), MQE2E_ERR_REPLAY);
    cr_assert_eq(mqe2e_replay_check(&w, 0), MQE2E_ERR_REPLAY);

    /* A first message may carry any number, UINT64_MAX included. */
    mqe2e_replay_window w2 = make(128);
    cr_assert_eq(accept_seq(&w2, UINT64_MAX), MQE2E_OK);
    cr_assert_eq(accept_seq(&w2, UINT64_MAX - 127), MQE2E_OK);
    cr_assert_eq(accept_seq(&w2, UINT64_MAX - 128), MQE2E_ERR_REPLAY);
}

Test(replay, check_does_not_mutate)
{
    mqe2e_replay_window w = make(128), before;
    for (uint64_t s = 10; s < 200; s += 7) {
        cr_assert_eq(mqe2e_replay_update(&w, s), MQE2E_OK);
    }
    memcpy(&before, &w, sizeof w);
    static const uint64_t probes[] = {0, 10, 11, 150, 199, 200, 201, 100000, UINT64_MAX};
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        (void)mqe2e_replay_check(&w, probes[i]);
        cr_assert_eq(memcmp(&w, &before, sizeof w), 0, "check(%llu) changed the window",
                     (unsigned long long)probes[i]);
    }
    /* A refused update leaves the window as it was too. */
    cr_assert_eq(mqe2e_replay_update(&w, 10), MQE2E_ERR_REPLAY);
    cr_assert_eq(mqe2e_replay_update(&w, 0), MQE2E_ERR_REPLAY);
    cr_assert_eq(memcmp(&w, &before, sizeof w), 0);
}

/* Against a plain model: a set of every accepted number and the top. */
Test(replay, random_model)
{
    enum { SPAN = 3000 };
    static bool seen[SPAN];
    mqe2e_replay_window w = make(128);
    uint64_t top = 0;
    bool any = false;
    for (unsigned i = 0; i < 50000; i++) {
        uint64_t s =
            any && top > 200 ? top - 200 + randombytes_uniform(230) : randombytes_uniform(230);
        if (s >= SPAN) {
            break;
        }
        bool expect_ok = !seen[s] && (!any || s > top || top - s < 128);
        cr_assert_eq(accept_seq(&w, s) == MQE2E_OK, expect_ok, "seq %llu top %llu",
                     (unsigned long long)s, (unsigned long long)top);
        if (expect_ok) {
            seen[s] = true;
            if (!any || s > top) {
                top = s;
            }
            any = true;
        }
    }
    cr_assert_gt(top, 1000U, "the model walk did not get far");
}
