/*
 * Helpers shared by the plugin's fronts (not installed, not exported).
 */
#ifndef MQE2E_PLUGIN_INTERNAL_PLUGIN_H
#define MQE2E_PLUGIN_INTERNAL_PLUGIN_H

#include <stdint.h>

/* Wall-clock seconds handed to the protector (epoch grace is wall-clock based). */
uint64_t mqe2e__plugin_now(void);

/* Monotonic milliseconds, for timeouts that must not jump with the wall clock. */
uint64_t mqe2e__plugin_monotonic_ms(void);

#endif
