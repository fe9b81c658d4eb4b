/*
 * Error strings of the plugin fronts and the clocks they share.
 */
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include "internal_plugin.h"
#include "mqe2e/MQTTClient.h"

/* Room for "mqe2e: " and the longest core message. */
#define PLUGIN_MSG_BYTES 128U
#define PLUGIN_CODE_COUNT ((unsigned)(-(MQE2E_ERR_MIN)))

/* Built once: the returned pointers must stay valid forever, like Paho's. */
static char plugin_messages[PLUGIN_CODE_COUNT][PLUGIN_MSG_BYTES];
static pthread_once_t plugin_messages_once = PTHREAD_ONCE_INIT;

static void plugin_messages_build(void)
{
    for (unsigned i = 0; i < PLUGIN_CODE_COUNT; i++) {
        int code = -(int)(i + 1U);
        (void)snprintf(plugin_messages[i], PLUGIN_MSG_BYTES, "mqe2e: %s", mqe2e_strerror(code));
    }
}

/* MQTT 3.1.1 CONNACK return codes, which connect returns as they are and
 * Paho's strerror calls "Unknown error code N". */
static const char *const connack_messages[] = {
    NULL,
    "Connection refused: unacceptable protocol version",
    "Connection refused: client identifier rejected",
    "Connection refused: server unavailable",
    "Connection refused: bad user name or password",
    "Connection refused: not authorized",
};

const char *mqe2e_MQTTClient_strerror(int code)
{
    int lib_code = code - MQE2E_MQTTCLIENT_ERROR_BASE;

    if (code >= 1 && code <= 5) {
        return connack_messages[code];
    }

    if (lib_code < 0 && lib_code >= MQE2E_ERR_MIN) {
        (void)pthread_once(&plugin_messages_once, plugin_messages_build);
        return plugin_messages[(unsigned)(-lib_code) - 1U];
    }
    return MQTTClient_strerror(code);
}

/*
 * Both clocks are read on every publish and every received message. The
 * coarse clocks (updated each kernel tick, 1-4 ms) are served from the vDSO
 * without reading a hardware counter: on the benchmark VM ~3 ns of CPU per
 * call instead of ~19 ns. Every consumer counts in seconds or in timeouts of
 * tens of milliseconds and more, and the session sees one clock throughout,
 * so its monotonic time never steps back between calls.
 */
uint64_t mqe2e__plugin_now(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_REALTIME_COARSE, &ts) != 0 || ts.tv_sec < 0) {
        return 0;
    }
    return (uint64_t)ts.tv_sec;
}

uint64_t mqe2e__plugin_monotonic_ms(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) != 0 || ts.tv_sec < 0) {
        return 0;
    }
    return (uint64_t)ts.tv_sec * 1000U + (uint64_t)ts.tv_nsec / 1000000U;
}
