/**
 * @file replay.h
 * @brief Sliding replay window over 64-bit sequence numbers.
 *
 * One window per (group, epoch, sender). Check before decrypting, update only
 * after authentication, so a forged envelope can never move a window.
 */
#ifndef MQE2E_REPLAY_H
#define MQE2E_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mqe2e/export.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MQE2E_REPLAY_DEFAULT_WIDTH 128U /**< default window width in sequence numbers */
#define MQE2E_REPLAY_MAX_WIDTH 1024U    /**< widest window supported */

/** A window; plain value type, no heap. */
typedef struct mqe2e_replay_window {
    uint64_t top;   /**< highest accepted sequence number (valid when any) */
    uint32_t width; /**< multiple of 64, 64..MQE2E_REPLAY_MAX_WIDTH */
    bool any;       /**< false until the first accept */
    uint64_t bits[MQE2E_REPLAY_MAX_WIDTH / 64]; /**< bit i: top - i was accepted */
} mqe2e_replay_window;

/**
 * @brief Initialise an empty window.
 * @param w     the window to initialise (caller-owned).
 * @param width rounded up to a multiple of 64; 0 means the default.
 * @return ::MQE2E_OK, or ::MQE2E_ERR_INVALID_ARG when width > ::MQE2E_REPLAY_MAX_WIDTH.
 */
MQE2E_API int mqe2e_replay_init(mqe2e_replay_window *w, uint32_t width);

/**
 * @brief Would @p seq be accepted? Does not change the window.
 * @return ::MQE2E_OK, or ::MQE2E_ERR_REPLAY (seen, or older than the window).
 */
MQE2E_API int mqe2e_replay_check(const mqe2e_replay_window *w, uint64_t seq);

/**
 * @brief Record an authenticated @p seq (slides the window forward if needed).
 * @return ::MQE2E_OK, or ::MQE2E_ERR_REPLAY if it was already recorded/too old.
 */
MQE2E_API int mqe2e_replay_update(mqe2e_replay_window *w, uint64_t seq);

#ifdef __cplusplus
}
#endif
#endif
