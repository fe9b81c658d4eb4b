/*
 * Fixtures shared by the timing benchmark and the callgrind program, so both
 * measure the same topic, group, associated-data size and keys.
 */
#ifndef MQE2E_BENCH_COMMON_H
#define MQE2E_BENCH_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Topic and group of every benchmarked envelope. The envelope's associated
 * data is 22 fixed bytes + topic + group = 22 + 31 + 7 = 60 bytes. */
#define BENCH_TOPIC "plant/berlin/line-3/sensor/temp"
#define BENCH_TOPIC_FILTER "plant/#"
#define BENCH_GROUP "sensors"
#define BENCH_AD_BYTES (22U + sizeof BENCH_TOPIC - 1U + sizeof BENCH_GROUP - 1U)

/* Client ids of the two ends of the full path; (b) uses the sender's id too. */
#define BENCH_SENDER_CLIENT "bench-sender"
#define BENCH_RECEIVER_CLIENT "bench-receiver"

/* A fixed clock: the group epoch is added at this time and never retired. */
#define BENCH_NOW 1800000000ULL

_Static_assert(BENCH_AD_BYTES == 60U, "the raw AEAD is given the same AD length as an envelope");

/* Fixed, public benchmark keys: nothing here protects anything. */
static const uint8_t BENCH_GROUP_SECRET[32] = {
    0x62, 0x65, 0x6e, 0x63, 0x68, 0x2d, 0x67, 0x72, 0x6f, 0x75, 0x70, 0x2d, 0x73, 0x65, 0x63, 0x72,
    0x65, 0x74, 0x2d, 0x6e, 0x6f, 0x74, 0x2d, 0x61, 0x2d, 0x73, 0x65, 0x63, 0x72, 0x65, 0x74, 0x21};
static const uint8_t BENCH_RAW_KEY[32] = {
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f};
static const uint8_t BENCH_RAW_NONCE[12] = {0x07, 0x00, 0x00, 0x00, 0x40, 0x41,
                                            0x42, 0x43, 0x44, 0x45, 0x46, 0x47};

/* Deterministic filler (payloads, the raw AD). */
static inline void bench_fill(uint8_t *p, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = (uint8_t)(seed + (uint8_t)(i * 31U));
    }
}

#endif
