/*
 * Helpers shared by the plugin's fronts (not installed, not exported).
 */
#ifndef MQE2E_PLUGIN_INTERNAL_PLUGIN_H
#define MQE2E_PLUGIN_INTERNAL_PLUGIN_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <MQTTProperties.h>

#include "mqe2e/MQTTClient.h"
#include "mqe2e/mqe2e.h"

/* Wall-clock seconds handed to the protector (epoch grace is wall-clock based);
 * read from the coarse clock (one kernel tick of resolution: cheap per message). */
uint64_t mqe2e__plugin_now(void);

/* Monotonic milliseconds, for timeouts that must not jump with the wall clock;
 * coarse as well (1-4 ms steps), the only monotonic clock the session sees. */
uint64_t mqe2e__plugin_monotonic_ms(void);

/* ------------------------------------------------------------------ */
/* The session of one encrypted client (session_glue.c): the receive    */
/* core both fronts share, over lib/'s sans-I/O mqe2e_session.          */

typedef struct mqe2e__ctl mqe2e__ctl;
struct mqe2e_control_counters;

/* What the glue borrows from its front. */
typedef struct mqe2e__ctl_host {
    /* Transport: the front's Paho client (sync or async), called without
     * `lock`. publish and subscribe return 0 or the front's Paho code. */
    int (*publish)(void *ctx, const char *topic, const uint8_t *data, size_t len, int qos,
                   int retained);
    int (*subscribe)(void *ctx, int count, char *const *topics, int *qos);
    int (*is_connected)(void *ctx);
    const char *(*strerror)(int code);
    pthread_mutex_t *lock;    /* serialises the session (keystore, protector, policy) */
    pthread_mutex_t *cb_lock; /* held while the application's callbacks run */
    void *ctx;
    /* Log a line (no secrets) of a level up to log_level. */
    void (*log)(void *ctx, int level, const char *msg);
    int log_level;
    /* Report a drop to the application (the session counted it already). */
    void (*dropped)(void *ctx, const char *topic, int code);
    /* The front's message for a DELIVER action (lock held): a copy of the
     * plaintext with the flags of @p in (the transport's message; NULL for a
     * released one), and in *topic a malloc()ed copy of the topic. NULL when
     * out of memory. */
    void *(*wrap)(void *ctx, const void *in, const mqe2e_session_action *a, char **topic);
    /* Wipe and free a wrapped message (and its topic) nobody took. */
    void (*unwrap)(void *msg, char *topic);
    /* Hand a released held message to the application (cb_lock held, lock
     * not): 1 when it took the message and topic. */
    int (*hand)(void *ctx, void *msg, char *topic);
    /* Transport, as subscribe: drop a subscription (a key-tree group left). */
    int (*unsubscribe)(void *ctx, const char *topic);
} mqe2e__ctl_host;

/* Hand the current message to its consumer: 1 when it took msg and topic. */
typedef int mqe2e__ctl_hand_fn(void *hand_ctx, void *msg, char *topic);

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


/* The session options of securityOptions: hold limits (struct_version 1)
 * and the freshness bound (struct_version 3); zero keeps the defaults. */
void mqe2e__session_options_from(mqe2e_session_options *o, int struct_version, size_t max_count,
                                 size_t max_bytes, unsigned max_seconds, unsigned fresh_max);

/* Both fronts' setSecurity once the options passed their checks (its
 * options type is shared): open the keystore when only a path is given,
 * then the session and its glue over @p host (the front's transport and
 * callbacks; log_level is set here from the options). On success *ks is the
 * keystore and *owns_ks whether it was opened here; on failure nothing is
 * held. Called with the front's lock held. */
struct mqe2e_MQTTClient_securityOptions;
int mqe2e__ctl_setup(mqe2e__ctl **out, mqe2e__ctl_host *host,
                     const struct mqe2e_MQTTClient_securityOptions *o, mqe2e_keystore **ks,
                     int *owns_ks);

/* The common part of a front's wrap: one malloc()ed block of @p struct_size
 * bytes followed by a copy of the action's plaintext (*payload points at
 * it), and in *topic a malloc()ed copy of its topic. NULL (nothing held)
 * when out of memory or too long for Paho's int lengths. */
void *mqe2e__wrap_block(size_t struct_size, const mqe2e_session_action *a, char **topic,
                        void **payload);

/* A front's message (Paho's sync or async type, same field names) filled
 * for a DELIVER action @p a: flags from the action, packet id and v5
 * properties from the transport's message @p in (NULL for a released one). */
#define MQE2E__WRAP_FILL(m, in, a, data)                                                   \
    do {                                                                                   \
        (m)->payload = (data);                                                             \
        (m)->payloadlen = (int)(a)->len;                                                   \
        (m)->qos = (a)->qos;                                                               \
        (m)->retained = (a)->retained;                                                     \
        (m)->dup = (a)->dup;                                                               \
        if ((in) != NULL) {                                                                \
            (m)->msgid = (in)->msgid;                                                      \
            /* v5 properties travel outside the envelope: handed on as they came. */      \
            if ((in)->struct_version >= 1 && (in)->properties.count > 0)                   \
                (m)->properties = MQTTProperties_copy(&(in)->properties);                  \
        } else if ((a)->nprops > 0) {                                                      \
            /* Released from the hold queue: the properties it arrived with. */           \
            (m)->properties = mqe2e__props_to_paho((a)->props, (a)->nprops);               \
        }                                                                                  \
    } while (0)

/* Paho's properties as the core's view (props_paho.c): *out is one malloc'd
 * block pointing into @p in (valid while @p in is), NULL when there are none;
 * free(*out). Returns 0, or -1 when out of memory. */
int mqe2e__props_from_paho(const MQTTProperties *in, mqe2e_msg_property **out, size_t *n);

/* The reverse, as a new Paho list (the caller frees with MQTTProperties_free). */
MQTTProperties mqe2e__props_to_paho(const mqe2e_msg_property *props, size_t n);

/* A session over @p ks (@p policy NULL: the keystore's groups) with its
 * glue; the worker thread runs only when the keystore holds an authority
 * pin. opts->spool, when set, is malloc'd and owned from here on (destroyed
 * and freed by mqe2e__ctl_free(), after the session). On failure nothing is
 * left allocated. */
int mqe2e__ctl_new(mqe2e__ctl **out, const mqe2e__ctl_host *host, mqe2e_keystore *ks,
                   const mqe2e_policy *policy, const mqe2e_session_options *opts);

/* Whether the control plane is on (an authority pin). */
int mqe2e__ctl_has_control(const mqe2e__ctl *c);

/* The session's protector and policy (owned by the session). */
mqe2e_protector *mqe2e__ctl_protector(mqe2e__ctl *c);
const mqe2e_policy *mqe2e__ctl_policy(const mqe2e__ctl *c);

/* Wait until the authority was heard within the freshness bound.
 * MQE2E_OK (also without a control plane), MQE2E_ERR_EXPIRED (timeout),
 * MQE2E_ERR_POLICY (the authority refused this client). */
int mqe2e__ctl_wait_fresh(mqe2e__ctl *ctl, uint64_t timeout_ms);

/* Stop the worker thread (before the Paho handle goes). NULL is a no-op. */
void mqe2e__ctl_stop(mqe2e__ctl *ctl);

/* Stop the worker, free the session (its protector writes its replay
 * checkpoints), wipe and free. NULL is a no-op. */
void mqe2e__ctl_free(mqe2e__ctl *ctl);

/* After a successful connect (application thread): subscribe the control
 * topics, then send a HELLO. */
int mqe2e__ctl_connected(mqe2e__ctl *ctl);

/* The connection went down or came up by itself (async front's callbacks):
 * the worker subscribes the control topics and sends a HELLO once connected. */
void mqe2e__ctl_session_lost(mqe2e__ctl *ctl);

/* mqe2e__ctl_receive() flag: the caller's thread may call Paho (the sync
 * front's receive(), no callback thread): the (un)subscriptions this message
 * causes are made here, before the call returns, not by the worker (which
 * would race the caller's receive() for the SUBACK). Not passed to the session. */
#define MQE2E__CTL_RX_CALLER_THREAD 0x100U

/* The one receive path of both fronts (Paho's callback or receive() thread,
 * cb_lock held unless @p flags has MQE2E_SESSION_NO_HOLD): the session opens,
 * holds or drops the message; plaintext for it goes to @p hand (with its
 * context), released held messages to host->hand, drops to host->dropped.
 * @p in is the transport's message (for wrap). Returns 0 when the
 * application refused the message and it may come again (Paho redelivers),
 * else 1 (consumed). */
int mqe2e__ctl_receive(mqe2e__ctl *ctl, const char *topic, int topic_len, const void *payload,
                       int payload_len, int qos, int retained, int dup, unsigned flags,
                       const MQTTProperties *props, const void *in, mqe2e__ctl_hand_fn *hand,
                       void *hand_ctx);

/* The fronts seal envelopes up to this size into a buffer on the publish
 * call's stack (payloads up to ~1.4 KiB), larger ones into a malloc()ed one;
 * both are wiped before the call returns. */
#define MQE2E__PUBLISH_STACK_BYTES 1536U

/* Protect @p pt for @p topic into @p out (mqe2e_session_publish_bound(pt_len)
 * bytes): MQE2E_OK (publish *out_len bytes of it), MQE2E_SESSION_QUEUED (a
 * channel topic: the worker sends it), or the reason it was refused. */
int mqe2e__ctl_publish(mqe2e__ctl *ctl, const char *topic, const uint8_t *pt, size_t pt_len,
                       int qos, int retained, const MQTTProperties *props, uint8_t *out,
                       size_t out_cap, size_t *out_len);

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

/* ---- What both fronts hold and do alike (front_common.c) ---- */

/* The state the sync and async fronts share, embedded in each front's
 * handle as `f`. Every protector and keystore call is made under lock;
 * cb_lock is held while one of the front's message callbacks runs. */
typedef struct mqe2e__front {
    pthread_mutex_t lock;
    pthread_mutex_t cb_lock;
    mqe2e__nodelay nodelay; /* TCP_NODELAY after each connect (tcp_nodelay.c) */
    mqe2e_keystore *keystore;
    mqe2e_protector *protector; /* the session's; NULL until setSecurity */
    mqe2e_MQTTClient_dropped *on_dropped;
    mqe2e_MQTTClient_log *on_log;
    mqe2e_log_level log_level;
    void *sec_context;
    mqe2e__ctl *ctl;   /* the session (control plane) */
    int owns_keystore; /* setSecurity opened the keystore: release closes it */
} mqe2e__front;

/* Both mutexes, the log level (warnings) and the create URI for TCP_NODELAY.
 * 0, or -1 with nothing held. @p f is zeroed by the caller. */
int mqe2e__front_init(mqe2e__front *f, const char *server_uri);

/* Undo mqe2e__front_init(): free the URIs, destroy both mutexes. */
void mqe2e__front_fini(mqe2e__front *f);

/* Log a line (no secrets) through the application's onLog, when it gave one
 * and @p level is within its log level. Lines over 511 bytes are cut. */
void mqe2e__front_log(const mqe2e__front *f, mqe2e_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Tell the application a message was dropped: topic ("" for NULL) and
 * reason only, logged as a warning and passed to onDropped. */
void mqe2e__front_report_drop(const mqe2e__front *f, const char *topic, int code);

/* Wipe one of the front's messages (@p size bytes at @p m, its decrypted
 * @p payload of @p payload_len bytes, its v5 @p props) and free the block;
 * m NULL is a no-op. Both fronts' message structs have these fields. */
void mqe2e__front_message_wipe_free(void *m, size_t size, void *payload, int payload_len,
                                    MQTTProperties *props);

/* setSecurity for both fronts: checks @p options (version 0..4, a keystore
 * or, from version 2, a keystorePath), then under lock refuses a second call
 * and sets the session up over @p host. Paho's code (the sync and async
 * fronts share the values), or an MQE2E_MQTTCLIENT_ERR() one. On failure no
 * log callback is kept. */
int mqe2e__front_set_security(mqe2e__front *f, mqe2e__ctl_host *host,
                              const mqe2e_MQTTClient_securityOptions *options);

/* Persist the replay windows under lock; a failure is logged and returned
 * (MQE2E_OK without a protector). */
int mqe2e__front_checkpoint(mqe2e__front *f);

/* destroy's second half, once Paho's handle is gone: wait for a running
 * callback, checkpoint, free the session (protector and its policy), close
 * the keystore if setSecurity opened it, then mqe2e__front_fini(). */
void mqe2e__front_release(mqe2e__front *f);

/* getCounters / getControlCounters of both fronts (f NULL: the handle was):
 * Paho's code, MQE2E_MQTTCLIENT_NOT_CONFIGURED before setSecurity. */
int mqe2e__front_counters(mqe2e__front *f, mqe2e_counters *out);
int mqe2e__front_control_counters(mqe2e__front *f, struct mqe2e_control_counters *out);

/* publish/send's checks and envelope buffer for both fronts: the handle (@p f
 * NULL: there was none), @p topic and the message's fields. On success
 * *pt and *pt_len are the plaintext (never NULL, also when empty) and *buf an
 * envelope buffer of *cap bytes: @p stack_buf when it fits in @p stack_cap,
 * else malloc()ed (the caller wipes it, and frees it when it is not
 * stack_buf). Paho's code, MQTTCLIENT_SUCCESS when the caller may seal. */
int mqe2e__front_publish_prepare(const mqe2e__front *f, const char *topic, const void *msg,
                                 const char *struct_id, int struct_version, int qos,
                                 const void *payload, int payloadlen, uint8_t *stack_buf,
                                 size_t stack_cap, const uint8_t **pt, size_t *pt_len,
                                 uint8_t **buf, size_t *cap);

/* mqe2e__front_publish_prepare() on a front's message @p msg (sync or async
 * Paho message, may be NULL: the same field names) into the caller's locals. */
#define MQE2E__FRONT_PUBLISH_PREPARE(f, topic, msg, stack_buf, pt, pt_len, buf, cap)             \
    mqe2e__front_publish_prepare(                                                                \
        (f), (topic), (msg), (msg) == NULL ? "MQTM" : (msg)->struct_id,                          \
        (msg) == NULL ? 0 : (msg)->struct_version, (msg) == NULL ? 0 : (msg)->qos,               \
        (msg) == NULL ? NULL : (msg)->payload, (msg) == NULL ? 0 : (msg)->payloadlen,            \
        (stack_buf), sizeof(stack_buf), (pt), (pt_len), (buf), (cap))

/* clearRetained's checks: Paho's code, MQTTCLIENT_SUCCESS when the empty
 * retained publish may go out. */
int mqe2e__front_clear_check(const mqe2e__front *f, const char *topic);

#endif
