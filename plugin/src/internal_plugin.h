/*
 * Helpers shared by the plugin's fronts (not installed, not exported).
 */
#ifndef MQE2E_PLUGIN_INTERNAL_PLUGIN_H
#define MQE2E_PLUGIN_INTERNAL_PLUGIN_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "mqe2e/mqe2e.h"

/* Wall-clock seconds handed to the protector (epoch grace is wall-clock based). */
uint64_t mqe2e__plugin_now(void);

/* Monotonic milliseconds, for timeouts that must not jump with the wall clock. */
uint64_t mqe2e__plugin_monotonic_ms(void);

/* ------------------------------------------------------------------ */
/* Control plane of one encrypted client (control_plane.c).            */

typedef struct mqe2e__ctl mqe2e__ctl;
struct mqe2e_control_counters;

/* What the control plane borrows from its client. */
typedef struct mqe2e__ctl_host {
    /* Transport: the front's Paho client (sync or async), called without
     * `lock`. publish and subscribe return 0 or the front's Paho code. */
    int (*publish)(void *ctx, const char *topic, const uint8_t *data, size_t len, int qos,
                   int retained);
    int (*subscribe)(void *ctx, int count, char *const *topics, int *qos);
    int (*is_connected)(void *ctx);
    const char *(*strerror)(int code);
    pthread_mutex_t *lock;    /* serialises keystore, protector, policy and control state */
    pthread_mutex_t *cb_lock; /* held while the application's callbacks run */
    mqe2e_keystore *keystore;
    mqe2e_protector *protector;
    const mqe2e_policy *policy;
    mqe2e_policy *owned_policy; /* grows with new groups; NULL when the application's */
    size_t hold_count, hold_bytes;
    uint64_t hold_age;
    uint64_t fresh_max; /* seconds: freshness bound of group sealing */
    void *ctx;
    /* Log a line (no secrets). */
    void (*log)(void *ctx, int level, const char *msg);
    /* Whether a line of this level would be shown; NULL = always format it.
     * Saves formatting lines nobody reads (one per control frame and per
     * channel message sent). */
    int (*log_wants)(void *ctx, int level);
    /* Count and report a drop (takes `lock` itself; called without it). */
    void (*dropped)(void *ctx, const char *topic, int code);
    /* Hand a released envelope to the normal receive path; called with
     * cb_lock held and lock not held. Returns 1 when the application took it. */
    int (*deliver)(void *ctx, const char *topic, const uint8_t *data, size_t len, uint32_t tag);
} mqe2e__ctl_host;

/* Tag bits of held messages. */
#define MQE2E__TAG_QOS(t) ((int)((t) & 3U))
#define MQE2E__TAG_RETAINED 4U
#define MQE2E__TAG_DUP 8U

/* Results of mqe2e__ctl_route(). */
#define MQE2E__ROUTE_PASS 0      /* not for the control plane: normal path */
#define MQE2E__ROUTE_CONSUMED 1  /* control frame, held, or dropped (counted) */
#define MQE2E__ROUTE_PLAINTEXT 2 /* channel message opened into *pt */

/* MQE2E_ERR_NOT_FOUND when the keystore holds no authority pin (no control plane). */
/* Both fronts' setSecurity: a protector over @p ks with @p given as policy,
 * or (given NULL) a policy made from the keystore's groups, returned in
 * *owned for the caller to free. *policy is the one in use. On failure
 * nothing is left allocated. */
int mqe2e__protector_for(const mqe2e_policy *given, mqe2e_keystore *ks,
                         const mqe2e_protector_options *popts, mqe2e_protector **p,
                         mqe2e_policy **owned, const mqe2e_policy **policy);

/* Hold-queue limits from the security options (zero = default). */
void mqe2e__ctl_host_set_hold(mqe2e__ctl_host *host, int struct_version, size_t max_count,
                              size_t max_bytes, unsigned max_seconds);

/* setSecurity's one-call form: read the passphrase (file first, else the
 * environment variable), open the keystore; the file backend locks it until
 * mqe2e_keystore_close() writes it back, wipes it and unlocks it. On
 * failure nothing is held. */
int mqe2e__keystore_open_path(mqe2e_keystore **ks, const char *path, const char *passphrase_env,
                              const char *passphrase_file);

/* Seal a last will's payload (@p message as text if not NULL, else @p data
 * of @p data_len bytes) for @p topic under @p lock, into *buf (malloc()ed,
 * *buf_cap bytes; free with mqe2e__will_free(), also on failure); *out_len
 * is the envelope's length. A will on a topic without a policy is refused
 * (MQE2E_ERR_NO_POLICY), so it never reaches the broker in clear. */
int mqe2e__will_seal(mqe2e_protector *protector, pthread_mutex_t *lock, const char *topic,
                     const char *message, const void *data, int data_len, uint8_t **buf,
                     size_t *buf_cap, size_t *out_len);

/* Wipe and free a buffer from mqe2e__will_seal(); NULL is a no-op. */
void mqe2e__will_free(uint8_t *buf, size_t cap);


/* The freshness bound; freshMaxSeconds arrived with struct_version 2. */
void mqe2e__ctl_host_set_fresh(mqe2e__ctl_host *host, int struct_version, unsigned fresh_max);

int mqe2e__ctl_new(mqe2e__ctl **out, const mqe2e__ctl_host *host);

/* Default freshness bound, seconds (securityOptions.freshMaxSeconds = 0). */
#define MQE2E__FRESH_MAX_DEFAULT 900U

/* Wait until the authority was heard within the freshness bound.
 * MQE2E_OK (also for ctl NULL), MQE2E_ERR_EXPIRED (timeout),
 * MQE2E_ERR_POLICY (the authority refused this client). */
int mqe2e__ctl_wait_fresh(mqe2e__ctl *ctl, uint64_t timeout_ms);

/* Stop the worker thread (before the Paho handle goes). NULL is a no-op. */
void mqe2e__ctl_stop(mqe2e__ctl *ctl);

/* Stop the worker, wipe and free. NULL is a no-op. */
void mqe2e__ctl_free(mqe2e__ctl *ctl);

/* After a successful connect (application thread): subscribe the control
 * topics and start a HELLO. */
int mqe2e__ctl_connected(mqe2e__ctl *ctl);

/* The connection went down or came up by itself (async front's callbacks):
 * the worker subscribes the control topics and sends a HELLO once connected. */
void mqe2e__ctl_session_lost(mqe2e__ctl *ctl);

/* Route one received message (Paho's callback or receive() thread, cb_lock
 * held when can_hold). On ROUTE_PLAINTEXT *pt (malloc, wipe+free) holds the
 * channel plaintext. */
int mqe2e__ctl_route(mqe2e__ctl *ctl, const char *topic, const uint8_t *data, size_t len,
                     uint32_t tag, int can_hold, uint8_t **pt, size_t *pt_len);

/* Publish on a topic whose policy is a channel. *handled = 0 when the topic
 * is not a channel topic (normal path). Returns an mqe2e_error. */
int mqe2e__ctl_publish(mqe2e__ctl *ctl, const char *topic, const uint8_t *pt, size_t pt_len,
                       int qos, int retained, int *handled);

/* Before a disconnect (application thread, neither lock held): wait at most
 * timeout_ms until the worker's outbox is empty and its last frame was handed
 * to Paho and, with wait_pending, until no channel message still waits for
 * its handshake. MQE2E_OK when drained; MQE2E_ERR_IO when not connected;
 * MQE2E_ERR_STATE on timeout or a stopped worker (what is left is lost). */
int mqe2e__ctl_flush(mqe2e__ctl *ctl, uint64_t timeout_ms, int wait_pending);

void mqe2e__ctl_counters(mqe2e__ctl *ctl, struct mqe2e_control_counters *out);

/* ---- TCP_NODELAY on the front's Paho socket (tcp_nodelay.c) ---- */

/* The broker URIs of one front: the one given at create, and the connect
 * options' serverURIs when the application gave a list (Paho then uses
 * those). A front applies it after every successful connect. */
typedef struct mqe2e__nodelay {
    char *create_uri;
    char **uris;
    int count;
    int counted; /* holds a reference on the shared /proc/self/fd handle */
} mqe2e__nodelay;

/* Copy the create URI (may be NULL). 0, or -1 out of memory. */
int mqe2e__nodelay_init(mqe2e__nodelay *n, const char *create_uri);

/* Replace the serverURIs list (NULL or count 0: none). 0, or -1 out of memory. */
int mqe2e__nodelay_set_uris(mqe2e__nodelay *n, char *const *uris, int count);

/* mqe2e_tcp_nodelay_uri() on the list, or on the create URI without one. */
void mqe2e__nodelay_apply(const mqe2e__nodelay *n);

void mqe2e__nodelay_free(mqe2e__nodelay *n);

#endif
