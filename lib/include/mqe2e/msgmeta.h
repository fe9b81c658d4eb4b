/**
 * @file msgmeta.h
 * @brief A transport-neutral view of an MQTT v5 message's properties and its
 *        retain flag, for binding chosen ones into the envelope's associated
 *        data (docs/PROTOCOL.md section 2.5.1).
 *
 * The core never includes MQTT: a front (the Paho wrappers) converts its
 * transport's properties into an array of ::mqe2e_msg_property, in the order
 * they appear in the packet. Which of them are bound is decided by the
 * receiver's and the sender's own topic policy (a rule's `bind=` list,
 * docs/PROTOCOL.md section 6), never by the message.
 */
#ifndef MQE2E_MSGMETA_H
#define MQE2E_MSGMETA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** MQTT v5 property id: payload format indicator (one byte, 0 or 1). */
#define MQE2E_PROP_PAYLOAD_FORMAT 0x01U
/** MQTT v5 property id: content type (UTF-8 string). */
#define MQE2E_PROP_CONTENT_TYPE 0x03U
/** MQTT v5 property id: response topic (UTF-8 string). */
#define MQE2E_PROP_RESPONSE_TOPIC 0x08U
/** MQTT v5 property id: correlation data (binary). */
#define MQE2E_PROP_CORRELATION_DATA 0x09U
/** MQTT v5 property id: user property (name and value, UTF-8 strings). */
#define MQE2E_PROP_USER 0x26U

/** Longest name or value a bound property may have (an MQTT string or binary). */
#define MQE2E_PROP_MAX_BYTES 65535U

/**
 * One property of a message, borrowed by the call it is passed to.
 * For ::MQE2E_PROP_PAYLOAD_FORMAT the value is the one byte of the property
 * (value_len 1); for strings and binary data it is their bytes, without the
 * MQTT length prefix; @c name is used by ::MQE2E_PROP_USER only (NULL and 0
 * otherwise). Properties of other ids may be present: they are never bound,
 * so they are ignored.
 */
typedef struct mqe2e_msg_property {
    uint8_t id;           /**< MQTT v5 property identifier (MQE2E_PROP_*) */
    const uint8_t *name;  /**< user property name (::MQE2E_PROP_USER), else NULL */
    size_t name_len;      /**< its length in bytes (at most ::MQE2E_PROP_MAX_BYTES) */
    const uint8_t *value; /**< the value's bytes (NULL when value_len is 0) */
    size_t value_len;     /**< its length in bytes (at most ::MQE2E_PROP_MAX_BYTES) */
} mqe2e_msg_property;

/**
 * A message's properties and retain flag as the transport carries them.
 * Everything is borrowed for the duration of the call; nothing is secret.
 */
typedef struct mqe2e_msg_meta {
    const mqe2e_msg_property *props; /**< @c count properties in packet order (NULL when 0) */
    size_t count;                    /**< number of properties */
    int retain;                      /**< the PUBLISH packet's retain flag (0 or 1) */
} mqe2e_msg_meta;

#ifdef __cplusplus
}
#endif
#endif
