/**
 * @file authority_service.h
 * @brief The mqe2e authority as a running MQTT client: the core
 *        (authority_core.h) over the synchronous Paho client.
 *
 * One thread, the synchronous Paho client, no callbacks: the loop calls
 * MQTTClient_receive() with a 200 ms timeout and hands each message, with the
 * time, to the core; the core's publishes go out as QoS 1 without waiting,
 * and their delivery tokens are collected when idle. Every piece of state that matters lives in the store
 * (authority_db.h); what is in memory (counters, message counts of groups
 * rotated by count, the signed revocation list cache, handshake rate
 * limits) is rebuilt on start and is per replica (docs/SCALING.md).
 */
#ifndef MQE2E_AUTHORITY_SERVICE_H
#define MQE2E_AUTHORITY_SERVICE_H

#include <signal.h>
#include <stdint.h>

#include <MQTTClient.h>

#include "authority_core.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Settings of a running authority. Strings are borrowed for the call. */
typedef struct authority_config {
    authority_core_config core; /**< protocol settings (prefix, lifetimes, limits) */
    const char *uri;            /**< broker, "tcp://host:port" */
    const char *db_path;        /**< store URI (store.h: sqlite:PATH, a path, postgresql://...) */
    const char *username; /**< broker user name, or NULL (ACLs key the authority's rights on it) */
    const char *password; /**< broker password, or NULL */
    volatile sig_atomic_t *stop; /**< set non-zero (e.g. by a signal handler) to stop */
    /** Paho TLS options (ssl:// URIs), or NULL; borrowed, passed to Paho unchanged. */
    const MQTTClient_SSLOptions *ssl;
    int keepalive; /**< MQTT keep-alive in seconds (0: 30) */
    /**
     * Replica group, or NULL for a single authority. When set, the service
     * connects with MQTT v5 and a clean start, subscribes
     * `$share/<replica_group>/P/authority` (the broker hands each request to
     * one replica of the group) and uses @c replica_id as its client id.
     * Every replica of a group serves one fleet from one store
     * (docs/SCALING.md).
     */
    const char *replica_group;
    /** MQTT client id of this replica (NULL: "<authority id>-<8 random hex>"). */
    const char *replica_id;
} authority_config;

/**
 * @brief Run the service until *cfg->stop is set.
 *
 * Connects with a fixed client id (the authority id) and a persistent session
 * so that queued QoS 1 control messages survive restarts, republishes the
 * retained revocation list, then loops. Reconnects by itself after a broker
 * outage. As a replica (@c cfg->replica_group set) it connects with MQTT v5,
 * a clean start and its own client id, and receives requests through the
 * group's shared subscription: a request in flight to a replica that dies
 * is lost with it, and its device retries (another replica answers).
 * @param ks the authority keystore (identity of the authority), kept open by the caller.
 * @return 0 after a requested stop; a negative mqe2e_error when the database
 *         cannot be opened or the first connection fails.
 */
int authority_run(mqe2e_keystore *ks, const authority_config *cfg);

#ifdef __cplusplus
}
#endif
#endif
