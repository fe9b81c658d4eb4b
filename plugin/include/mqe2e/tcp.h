/**
 * @file tcp.h
 * @brief TCP_NODELAY on Paho's sockets (docs/PAHO.md, "TCP_NODELAY").
 *
 * Eclipse Paho MQTT C (1.3.12, Debian 12) never sets TCP_NODELAY and exposes
 * no socket or socket-option hook. A client that writes two small MQTT
 * packets back to back (a PUBACK, then a control frame) then has the second
 * held by Nagle's algorithm until the first is acknowledged, and the
 * broker's delayed ACK makes that ~40 ms on Linux: the stalls of the channel,
 * HELLO and enrollment round trips (docs/BENCHMARKS.md, "Where the
 * milliseconds go").
 *
 * The encrypted fronts call mqe2e_tcp_nodelay_uri() after every successful
 * connect (automatic reconnects too); the CLI and the authority call it on
 * their own Paho connections. It finds the process's connected TCP sockets
 * by scanning its open descriptors (Linux: /proc/self/fd, through one
 * directory handle kept open while any encrypted front exists) and sets
 * TCP_NODELAY on those whose peer is the broker's port (and address, when the
 * URI names a numeric address). A plain Paho connection of the same process
 * to the same broker port gets the option too; that only makes its small
 * writes leave at once.
 */
#ifndef MQE2E_TCP_H
#define MQE2E_TCP_H

#include "mqe2e/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * @brief TCP port of a Paho server URI.
 *
 * Accepts the schemes Paho does: tcp://, mqtt://, ssl://, mqtts://, ws://,
 * wss:// (and no scheme, as tcp://); an IPv6 host is in brackets. Without an
 * explicit port: 1883 (tcp, mqtt), 8883 (ssl, mqtts), 80 (ws), 443 (wss).
 * @param uri only read.
 * @return the port (1..65535), or -1 for NULL or a URI it cannot parse.
 */
MQE2E_API int mqe2e_tcp_uri_port(const char *uri);

/**
 * @brief Set TCP_NODELAY on this process's connected TCP sockets to the
 *        broker that @p uri names.
 *
 * Sockets that already have it are left alone. Safe to call from any thread,
 * Paho's callbacks included (it takes no lock and makes no Paho call). With
 * the environment variable MQE2E_TCP_NODELAY set to "0" it does nothing
 * (for comparisons, and for a network where Nagle's batching matters more
 * than latency).
 * @param uri a Paho server URI (see mqe2e_tcp_uri_port()); only read.
 * @return the number of sockets changed (0 when none matched, e.g. on a
 *         system without /proc/self/fd), or -1 for a URI it cannot parse.
 */
MQE2E_API int mqe2e_tcp_nodelay_uri(const char *uri);

#ifdef __cplusplus
}
#endif

#endif
