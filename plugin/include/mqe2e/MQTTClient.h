/**
 * @file mqe2e/MQTTClient.h
 * @brief Encrypted drop-in front over Eclipse Paho's synchronous MQTTClient.
 *
 * Migration is a rename: `MQTTClient` becomes `mqe2e_MQTTClient` and every
 * `MQTTClient_xxx(...)` call becomes `mqe2e_MQTTClient_xxx(...)` with the same
 * arguments, the same callback signatures and the same return-code
 * conventions. Paho's option and message structs (MQTTClient_connectOptions,
 * MQTTClient_message, their initializers) are used unchanged. One extra call,
 * mqe2e_MQTTClient_setSecurity(), attaches the keystore and the topic policy.
 *
 * Guarantees: a topic without a policy is never published (the call fails
 * with ::MQE2E_MQTTCLIENT_NO_POLICY); the application's messageArrived
 * callback (or receive()) only ever sees authenticated plaintext; every
 * dropped message is counted by reason and reported to the optional error
 * callback. As with Paho, never call this client from inside its callbacks.
 *
 * Control plane: when the keystore was enrolled (it holds an authority pin,
 * see `mqe2e enroll`), the client also subscribes `P/client/<id>` and
 * P/revocations on every connect, sends a HELLO to fetch current keys, applies
 * rotation pushes, holds messages of a not-yet-known epoch until their key
 * arrives, and runs peer channels for `channel:<peer>` policy rules. Control
 * topics never reach the application. Details: docs/PROTOCOL.md, section 9.
 */
#ifndef MQE2E_PLUGIN_MQTTCLIENT_H
#define MQE2E_PLUGIN_MQTTCLIENT_H

#include <MQTTClient.h>

#include "mqe2e/mqe2e.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Opaque handle (Paho's is `void *`; ours is typed). */
typedef struct mqe2e_client *mqe2e_MQTTClient;

/** Return codes the front adds to Paho's (Paho's are -1..-20). */
#define MQE2E_MQTTCLIENT_ERROR_BASE (-100)
/** Map an ::mqe2e_error to the plugin's return-code space. */
#define MQE2E_MQTTCLIENT_ERR(e) (MQE2E_MQTTCLIENT_ERROR_BASE + (e))
/** Publishing on a topic that no policy rule covers. */
#define MQE2E_MQTTCLIENT_NO_POLICY MQE2E_MQTTCLIENT_ERR(MQE2E_ERR_NO_POLICY)
/** setSecurity() was not called before connect/publish/subscribe. */
#define MQE2E_MQTTCLIENT_NOT_CONFIGURED MQE2E_MQTTCLIENT_ERR(MQE2E_ERR_STATE)

/**
 * Called for every received message that is dropped.
 * @param context the context given to setSecurity().
 * @param topic   the topic it arrived on (borrowed for the call).
 * @param code    the ::mqe2e_error reason.
 */
typedef void mqe2e_MQTTClient_dropped(void *context, const char *topic, int code);

/** Log levels for the log callback. */
typedef enum mqe2e_log_level {
    MQE2E_LOG_ERROR = 1,
    MQE2E_LOG_WARNING = 2,
    MQE2E_LOG_INFO = 3,
    MQE2E_LOG_DEBUG = 4,
} mqe2e_log_level;

/** Log sink; messages never hold keys or plaintext. */
typedef void mqe2e_MQTTClient_log(void *context, mqe2e_log_level level, const char *message);

/** The one configuration call's options; use ::mqe2e_MQTTClient_securityOptions_initializer. */
typedef struct mqe2e_MQTTClient_securityOptions {
    char struct_id[4];   /**< "MQES" */
    int struct_version;  /**< 0, 1 (adds the hold limits), 2 (adds keystorePath...), 3
                              (adds freshMaxSeconds) or 4 (adds the spool options) */
    /**
     * Keystore (borrowed; must outlive the client). Required, unless
     * keystorePath is given (struct_version 2).
     */
    mqe2e_keystore *keystore;
    /**
     * Topic policy (borrowed; must outlive the client). NULL: one group rule
     * per keystore group, on that group's topic filter.
     */
    const mqe2e_policy *policy;
    /** Protector options; NULL for defaults. Copied. */
    const mqe2e_protector_options *protector;
    mqe2e_MQTTClient_dropped *onDropped; /**< optional */
    mqe2e_MQTTClient_log *onLog;         /**< optional */
    mqe2e_log_level logLevel;            /**< most verbose level passed to onLog */
    void *context;                       /**< given to onDropped and onLog */
    /* struct_version 1 */
    /**
     * Control plane (keystores enrolled with an authority): most messages
     * held while waiting for a newer epoch's key (0 = 256).
     */
    size_t holdMaxCount;
    size_t holdMaxBytes;     /**< most bytes held (0 = 1 MiB) */
    unsigned holdMaxSeconds; /**< longest a message is held (0 = 30 s) */
    /* struct_version 2: the one-call form */
    /**
     * With keystore NULL: the keystore file setSecurity opens and owns; the
     * library locks it against every other open (any process, handle or
     * path: MQE2E_ERR_LOCKED); destroy writes it back, wipes it and
     * releases the lock.
     */
    const char *keystorePath;
    /** Name of the environment variable that holds the passphrase (e.g. "MQE2E_PASSPHRASE"). */
    const char *passphraseEnv;
    /**
     * File whose first line is the passphrase (must not be accessible by
     * group or others); tried before passphraseEnv. The passphrase is
     * copied into guarded memory and wiped once the keystore is open.
     */
    const char *passphraseFile;
    /* struct_version 3 */
    /**
     * Freshness bound (control plane): a group message is sealed only while
     * the last authenticated answer from the authority (HELLO reply or PUSH)
     * is at most this old, measured on the monotonic clock; otherwise the
     * publish is refused (MQE2E_ERR_EXPIRED, counted as stale_refused). A HELLO
     * is sent every third of it. 0 = 900 s. docs/PROTOCOL.md 9.3.
     */
    unsigned freshMaxSeconds;
    /* struct_version 4 */
    /**
     * The spool (docs/PROTOCOL.md 9.4, docs/PAHO.md): a held QoS 1 or 2
     * message that finds no room in the hold queue is written to
     * "<real keystore path>.spool/" (0700; one 0600 file per message) and
     * delivered from there once its key arrives, also after a crash or
     * restart; Paho acknowledged it already, so dropping it would lose it.
     * On by default in the one-call form (keystorePath); with a caller's
     * keystore only when spoolKeystorePath names its file. Most entries
     * (0 = 4096).
     */
    size_t spoolMaxCount;
    size_t spoolMaxBytes; /**< most bytes of entry files (0 = 16 MiB) */
    int spoolDisable;     /**< 1: no spool (such messages are dropped, counted no_key) */
    /**
     * With a caller's keystore (keystore set): the path of its file, opened
     * with the file backend (whose lock makes this client the spool's only
     * user); its spool is used. NULL: no spool. Ignored in the one-call form.
     */
    const char *spoolKeystorePath;
} mqe2e_MQTTClient_securityOptions;

/** Initializer for ::mqe2e_MQTTClient_securityOptions (struct_version 4, defaults). */
#define mqe2e_MQTTClient_securityOptions_initializer                                               \
    {                                                                                              \
        {'M', 'Q', 'E', 'S'}, 4, NULL, NULL, NULL, NULL, NULL, MQE2E_LOG_WARNING, NULL, 0, 0, 0,   \
            NULL, NULL, NULL, 0, 0, 0, 0, NULL                                                     \
    }

/**
 * Control-plane counters (all zero for a keystore without an authority pin).
 * A plain snapshot copied out by mqe2e_MQTTClient_getControlCounters().
 */
typedef struct mqe2e_control_counters {
    uint64_t handshakes_ok;      /**< HELLO replies and channels completed */
    uint64_t handshakes_failed;  /**< HELLO/CHANNEL frames that failed authentication or checks */
    uint64_t hellos_sent;        /**< HELLO step 1 published */
    uint64_t pushes_applied;     /**< PUSH frames authenticated and applied */
    uint64_t pushes_refused;     /**< PUSH frames refused (forged, replayed, malformed) */
    uint64_t held;               /**< messages held waiting for a newer epoch */
    uint64_t released;           /**< held messages handed to the normal receive path */
    uint64_t hold_dropped;       /**< held messages dropped (age, count, bytes): also counted no_key */
    uint64_t revoked_refused;    /**< channel handshakes or messages refused: peer revoked */
    uint64_t channel_sent;       /**< channel envelopes published */
    uint64_t channel_opened;     /**< channel envelopes authenticated and delivered */
    uint64_t control_ignored;    /**< control frames ignored (malformed, unexpected, stale) */
    /**
     * CHANNEL step 1 frames refused before any DH work: the global budget
     * (50 per second, bursts of 100) was spent, 16 control frames already
     * waited to be published, or the claimed peer already had a half-open
     * handshake less than 1 s old. Appended last: the order
     * of the fields above is part of the ABI.
     */
    uint64_t channel_rate_limited;
    /**
     * Group publishes refused because nothing was heard from the authority
     * within the freshness bound (freshMaxSeconds): the sender might seal
     * under an epoch a revoked member still holds. Appended last.
     */
    uint64_t stale_refused;
    /**
     * Held QoS >= 1 messages written to the spool next to the keystore
     * because the hold queue had no room (docs/PROTOCOL.md 9.4). Appended last.
     */
    uint64_t spooled;
    /** Key-tree groups (docs/PROTOCOL.md §10.9), appended last: TreeUpdates
     *  applied, refused (malformed, bad signature, a wrap that does not open),
     *  not newer than the member (replayed, reordered), after a missed one
     *  (a HELLO catches up), and those that removed this member. */
    uint64_t tree_applied;
    uint64_t tree_refused;  /**< see tree_applied */
    uint64_t tree_replayed; /**< see tree_applied */
    uint64_t tree_gaps;     /**< see tree_applied */
    uint64_t tree_revoked;  /**< see tree_applied */
} mqe2e_control_counters;

/**
 * @brief Wait until the control plane has heard from the authority within
 *        the freshness bound (a HELLO reply after connect), so that group
 *        messages can be sealed.
 *
 * Needs the callback mode (mqe2e_MQTTClient_setCallbacks() with a
 * messageArrived), where control frames are processed as they arrive.
 * mqe2e_MQTTClient_connect() already waits up to 10 s (bounded by the
 * connect timeout) in that mode; a one-shot publisher calls this to turn a
 * silent authority into a clear error.
 * @return MQTTCLIENT_SUCCESS (also without a control plane);
 *         MQE2E_MQTTCLIENT_ERR(MQE2E_ERR_EXPIRED) when nothing came in time;
 *         MQE2E_MQTTCLIENT_ERR(MQE2E_ERR_POLICY) when the authority refused
 *         this client (revoked, unknown); MQTTCLIENT_FAILURE for NULL.
 */
MQE2E_API int mqe2e_MQTTClient_waitForAuthority(mqe2e_MQTTClient handle, unsigned long timeout_ms);

/** @brief As MQTTClient_create(). */
MQE2E_API int mqe2e_MQTTClient_create(mqe2e_MQTTClient *handle, const char *serverURI,
                                      const char *clientId, int persistence_type,
                                      void *persistence_context);

/** @brief As MQTTClient_createWithOptions(). */
MQE2E_API int mqe2e_MQTTClient_createWithOptions(mqe2e_MQTTClient *handle, const char *serverURI,
                                                 const char *clientId, int persistence_type,
                                                 void *persistence_context,
                                                 MQTTClient_createOptions *options);

/**
 * @brief Attach keystore and policy. Call once, after create and before connect.
 *
 * The one-call form (struct_version 2): leave `keystore` NULL and set
 * `keystorePath` and `passphraseEnv` (or `passphraseFile`): the client opens,
 * locks and owns the keystore, and mqe2e_MQTTClient_destroy() closes and
 * wipes it.
 * @return MQTTCLIENT_SUCCESS, MQTTCLIENT_NULL_PARAMETER, MQTTCLIENT_BAD_STRUCTURE,
 *         or MQE2E_MQTTCLIENT_ERR(code) for a library failure: with keystorePath,
 *         MQE2E_MQTTCLIENT_ERR(MQE2E_ERR_NOT_FOUND) (no passphrase, or no such
 *         passphrase file), ..._ERR(MQE2E_ERR_POLICY) (passphrase file readable by
 *         others), ..._ERR(MQE2E_ERR_STATE) (keystore in use by another process),
 *         ..._ERR(MQE2E_ERR_AUTH) (wrong passphrase or damaged file),
 *         ..._ERR(MQE2E_ERR_IO) (cannot read the keystore).
 */
MQE2E_API int mqe2e_MQTTClient_setSecurity(mqe2e_MQTTClient handle,
                                           const mqe2e_MQTTClient_securityOptions *options);

/** @brief As MQTTClient_setCallbacks(); the callbacks receive decrypted messages. */
MQE2E_API int mqe2e_MQTTClient_setCallbacks(mqe2e_MQTTClient handle, void *context,
                                            MQTTClient_connectionLost *cl,
                                            MQTTClient_messageArrived *ma,
                                            MQTTClient_deliveryComplete *dc);

/** @brief As MQTTClient_connect(). */
MQE2E_API int mqe2e_MQTTClient_connect(mqe2e_MQTTClient handle,
                                       MQTTClient_connectOptions *options);

/**
 * @brief As MQTTClient_disconnect(); first sends what the control plane still
 *        has queued (channel messages, handshake frames), within @p timeout
 *        milliseconds in total, then checkpoints replay state.
 */
MQE2E_API int mqe2e_MQTTClient_disconnect(mqe2e_MQTTClient handle, int timeout);

/** @brief As MQTTClient_isConnected(). */
MQE2E_API int mqe2e_MQTTClient_isConnected(mqe2e_MQTTClient handle);

/**
 * @brief As MQTTClient_subscribe(). The filter is passed to the broker as is;
 *        messages that arrive on topics no policy rule covers are dropped
 *        (counted as `no_policy`), never delivered.
 */
MQE2E_API int mqe2e_MQTTClient_subscribe(mqe2e_MQTTClient handle, const char *topic, int qos);

/** @brief As MQTTClient_subscribeMany(). */
MQE2E_API int mqe2e_MQTTClient_subscribeMany(mqe2e_MQTTClient handle, int count,
                                             char *const *topic, int *qos);

/** @brief As MQTTClient_unsubscribe(). */
MQE2E_API int mqe2e_MQTTClient_unsubscribe(mqe2e_MQTTClient handle, const char *topic);

/** @brief As MQTTClient_unsubscribeMany(). */
MQE2E_API int mqe2e_MQTTClient_unsubscribeMany(mqe2e_MQTTClient handle, int count,
                                               char *const *topic);

/**
 * @brief As MQTTClient_publish(): the payload is protected per the topic's
 *        policy first. @return Paho's codes, or ::MQE2E_MQTTCLIENT_NO_POLICY,
 *        MQE2E_MQTTCLIENT_ERR(code).
 */
MQE2E_API int mqe2e_MQTTClient_publish(mqe2e_MQTTClient handle, const char *topicName,
                                       int payloadlen, const void *payload, int qos,
                                       int retained, MQTTClient_deliveryToken *dt);

/** @brief As MQTTClient_publishMessage(); @p msg is only read. */
MQE2E_API int mqe2e_MQTTClient_publishMessage(mqe2e_MQTTClient handle, const char *topicName,
                                              MQTTClient_message *msg,
                                              MQTTClient_deliveryToken *dt);

/**
 * @name MQTT v5 variants
 * For a client created with MQTTClient_createOptions.MQTTVersion =
 * MQTTVERSION_5 (Paho then refuses the v3 calls with
 * MQTTCLIENT_WRONG_MQTT_VERSION). Same arguments and MQTTResponse results as
 * Paho's; free responses with Paho's MQTTResponse_free(). Properties
 * (user properties included) are passed to the broker unchanged and are NOT
 * encrypted: the broker and every subscriber can read them. Received
 * messages carry the properties they arrived with. A call refused before
 * Paho is reached returns a response whose reasonCode is the negative code
 * (e.g. ::MQE2E_MQTTCLIENT_NO_POLICY) and that holds nothing to free.
 * @{
 */

/** @brief As MQTTClient_connect5(); also starts the control plane on success. */
MQE2E_API MQTTResponse mqe2e_MQTTClient_connect5(mqe2e_MQTTClient handle,
                                                 MQTTClient_connectOptions *options,
                                                 MQTTProperties *connectProperties,
                                                 MQTTProperties *willProperties);

/** @brief As MQTTClient_disconnect5(); flushes the control plane like mqe2e_MQTTClient_disconnect(). */
MQE2E_API int mqe2e_MQTTClient_disconnect5(mqe2e_MQTTClient handle, int timeout,
                                           enum MQTTReasonCodes reason, MQTTProperties *props);

/** @brief As MQTTClient_publish5(): payload protected, @p properties sent in clear. */
MQE2E_API MQTTResponse mqe2e_MQTTClient_publish5(mqe2e_MQTTClient handle, const char *topicName,
                                                 int payloadlen, const void *payload, int qos,
                                                 int retained, MQTTProperties *properties,
                                                 MQTTClient_deliveryToken *dt);

/** @brief As MQTTClient_publishMessage5(); @p msg (and its properties) only read. */
MQE2E_API MQTTResponse mqe2e_MQTTClient_publishMessage5(mqe2e_MQTTClient handle,
                                                        const char *topicName,
                                                        MQTTClient_message *msg,
                                                        MQTTClient_deliveryToken *dt);

/** @brief As MQTTClient_subscribe5(). */
MQE2E_API MQTTResponse mqe2e_MQTTClient_subscribe5(mqe2e_MQTTClient handle, const char *topic,
                                                   int qos, MQTTSubscribe_options *opts,
                                                   MQTTProperties *props);

/** @brief As MQTTClient_subscribeMany5(). */
MQE2E_API MQTTResponse mqe2e_MQTTClient_subscribeMany5(mqe2e_MQTTClient handle, int count,
                                                       char *const *topic, int *qos,
                                                       MQTTSubscribe_options *opts,
                                                       MQTTProperties *props);

/** @brief As MQTTClient_unsubscribe5(). */
MQE2E_API MQTTResponse mqe2e_MQTTClient_unsubscribe5(mqe2e_MQTTClient handle, const char *topic,
                                                     MQTTProperties *props);

/** @brief As MQTTClient_unsubscribeMany5(). */
MQE2E_API MQTTResponse mqe2e_MQTTClient_unsubscribeMany5(mqe2e_MQTTClient handle, int count,
                                                         char *const *topic,
                                                         MQTTProperties *props);
/** @} */

/** @brief As MQTTClient_waitForCompletion(). */
MQE2E_API int mqe2e_MQTTClient_waitForCompletion(mqe2e_MQTTClient handle,
                                                 MQTTClient_deliveryToken dt,
                                                 unsigned long timeout);

/**
 * @brief As MQTTClient_receive() (single-threaded use without callbacks):
 *        returns the next authenticated message, silently dropping (and
 *        counting) bad ones; *message is NULL on timeout.
 */
MQE2E_API int mqe2e_MQTTClient_receive(mqe2e_MQTTClient handle, char **topicName,
                                       int *topicLen, MQTTClient_message **message,
                                       unsigned long timeout);

/** @brief As MQTTClient_yield(). */
MQE2E_API void mqe2e_MQTTClient_yield(void);

/** @brief As MQTTClient_freeMessage(): wipes the decrypted payload, frees it and its v5 properties. */
MQE2E_API void mqe2e_MQTTClient_freeMessage(MQTTClient_message **msg);

/** @brief As MQTTClient_free() (for topic names given to the application). */
MQE2E_API void mqe2e_MQTTClient_free(void *ptr);

/** @brief As MQTTClient_destroy(); checkpoints replay state; *handle set to NULL. */
MQE2E_API void mqe2e_MQTTClient_destroy(mqe2e_MQTTClient *handle);

/** @brief As MQTTClient_strerror(), also for the MQE2E_MQTTCLIENT_* codes. */
MQE2E_API const char *mqe2e_MQTTClient_strerror(int code);

/** @brief Copy out this client's counters (sealed, opened, dropped by reason). */
MQE2E_API int mqe2e_MQTTClient_getCounters(mqe2e_MQTTClient handle, mqe2e_counters *out);

/**
 * @brief Copy out this client's control-plane counters (handshakes, pushes,
 *        held and released messages). Zero when the keystore is not enrolled.
 * @return MQTTCLIENT_SUCCESS, MQTTCLIENT_NULL_PARAMETER, ::MQE2E_MQTTCLIENT_NOT_CONFIGURED.
 */
MQE2E_API int mqe2e_MQTTClient_getControlCounters(mqe2e_MQTTClient handle,
                                                  mqe2e_control_counters *out);

/**
 * @brief Clear the retained message of @p topicName: publishes a zero-length
 *        message with the retain flag, which the broker takes as "delete the
 *        retained message". No data leaves the process, so it is allowed on
 *        any topic (protected or not). The broker also forwards it to current
 *        subscribers; mqe2e receivers never deliver it (it is dropped and
 *        counted as `decode`). Who may clear is the broker ACL's decision
 *        (write access to the topic): see docs/PAHO.md, "Retained messages".
 * @return Paho's codes, ::MQE2E_MQTTCLIENT_NOT_CONFIGURED.
 */
MQE2E_API int mqe2e_MQTTClient_clearRetained(mqe2e_MQTTClient handle, const char *topicName,
                                             int qos, MQTTClient_deliveryToken *dt);

/** @name Paho calls with nothing to encrypt, forwarded unchanged */
/**@{*/
/** @brief As MQTTClient_global_init(). */
MQE2E_API void mqe2e_MQTTClient_global_init(MQTTClient_init_options *inits);
/** @brief As MQTTClient_setDisconnected() (MQTT v5 server disconnects). */
MQE2E_API int mqe2e_MQTTClient_setDisconnected(mqe2e_MQTTClient handle, void *context,
                                               MQTTClient_disconnected *co);
/** @brief As MQTTClient_setPublished() (v5 acknowledgements of the sealed messages). */
MQE2E_API int mqe2e_MQTTClient_setPublished(mqe2e_MQTTClient handle, void *context,
                                            MQTTClient_published *co);
/** @brief As MQTTClient_getVersionInfo() (Paho's version, not mqe2e's: see mqe2e_version()). */
MQE2E_API MQTTClient_nameValue *mqe2e_MQTTClient_getVersionInfo(void);
/** @brief As MQTTResponse_free(). */
MQE2E_API void mqe2e_MQTTResponse_free(MQTTResponse response);
/** @brief As MQTTClient_getPendingDeliveryTokens(); free the array with mqe2e_MQTTClient_free(). */
MQE2E_API int mqe2e_MQTTClient_getPendingDeliveryTokens(mqe2e_MQTTClient handle,
                                                        MQTTClient_deliveryToken **tokens);
/** @brief As MQTTClient_setTraceLevel() (Paho's own trace: topics and sizes, never keys). */
MQE2E_API void mqe2e_MQTTClient_setTraceLevel(enum MQTTCLIENT_TRACE_LEVELS level);
/** @brief As MQTTClient_setTraceCallback(). */
MQE2E_API void mqe2e_MQTTClient_setTraceCallback(MQTTClient_traceCallback *callback);
/** @brief As MQTTClient_setCommandTimeout(). */
MQE2E_API int mqe2e_MQTTClient_setCommandTimeout(mqe2e_MQTTClient handle,
                                                 unsigned long milliSeconds);
/**@}*/

#ifdef __cplusplus
}
#endif
#endif
