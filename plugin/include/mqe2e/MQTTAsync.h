/**
 * @file mqe2e/MQTTAsync.h
 * @brief Encrypted drop-in front over Eclipse Paho's asynchronous MQTTAsync.
 *
 * Migration is a rename: `MQTTAsync` becomes `mqe2e_MQTTAsync` and every
 * `MQTTAsync_xxx(...)` call becomes `mqe2e_MQTTAsync_xxx(...)` with the same
 * arguments, the same callback signatures and the same return codes. Paho's
 * option, response and message structs (MQTTAsync_connectOptions,
 * MQTTAsync_responseOptions, MQTTAsync_message, ...) are used unchanged; the
 * onSuccess/onFailure (and onSuccess5/onFailure5) callbacks and their
 * contexts are handed to Paho as given. One extra call,
 * mqe2e_MQTTAsync_setSecurity(), attaches the keystore and the topic policy
 * (same options as the synchronous front).
 *
 * Guarantees (as mqe2e/MQTTClient.h): a topic without a policy is never sent
 * (::MQE2E_MQTTASYNC_NO_POLICY); messageArrived only sees authenticated
 * plaintext; dropped messages are counted by reason and reported to
 * onDropped; an application that returns 0 from messageArrived gets the
 * message again without it being recorded in the replay window.
 *
 * Offline buffering: a message is sealed exactly once, when send() is
 * called; what Paho buffers (sendWhileDisconnected, automatic reconnect,
 * QoS 1/2 retries) is the sealed envelope, so a buffered message is never
 * re-sealed and never reuses a sequence number.
 *
 * Threads: unlike the synchronous front, this client may be called from its
 * own callbacks (as Paho's asynchronous client allows), except destroy().
 * Control plane: as the synchronous front (see mqe2e/MQTTClient.h), re-armed
 * after every automatic reconnect.
 */
#ifndef MQE2E_PLUGIN_MQTTASYNC_H
#define MQE2E_PLUGIN_MQTTASYNC_H

#include <MQTTAsync.h>

#include "mqe2e/MQTTClient.h"
#include "mqe2e/mqe2e.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Opaque handle (Paho's is `void *`; ours is typed). */
typedef struct mqe2e_async *mqe2e_MQTTAsync;

/** Return codes the front adds to Paho's: the same values as the synchronous front's. */
#define MQE2E_MQTTASYNC_ERROR_BASE MQE2E_MQTTCLIENT_ERROR_BASE
/** Map an ::mqe2e_error to the async return-code space. */
#define MQE2E_MQTTASYNC_ERR(e) MQE2E_MQTTCLIENT_ERR(e)
/** Sending on a topic that no policy rule covers. */
#define MQE2E_MQTTASYNC_NO_POLICY MQE2E_MQTTCLIENT_NO_POLICY
/** setSecurity() was not called before connect/send/subscribe. */
#define MQE2E_MQTTASYNC_NOT_CONFIGURED MQE2E_MQTTCLIENT_NOT_CONFIGURED

/** Same options as the synchronous front (struct_id "MQES"). */
typedef mqe2e_MQTTClient_securityOptions mqe2e_MQTTAsync_securityOptions;
/** Initializer for ::mqe2e_MQTTAsync_securityOptions (same as the sync front's). */
#define mqe2e_MQTTAsync_securityOptions_initializer mqe2e_MQTTClient_securityOptions_initializer

/** @brief As MQTTAsync_create(). */
MQE2E_API int mqe2e_MQTTAsync_create(mqe2e_MQTTAsync *handle, const char *serverURI,
                                     const char *clientId, int persistence_type,
                                     void *persistence_context);

/**
 * @brief As MQTTAsync_createWithOptions() (sendWhileDisconnected,
 *        maxBufferedMessages, MQTTVersion, ... are Paho's, unchanged).
 */
MQE2E_API int mqe2e_MQTTAsync_createWithOptions(mqe2e_MQTTAsync *handle, const char *serverURI,
                                                const char *clientId, int persistence_type,
                                                void *persistence_context,
                                                MQTTAsync_createOptions *options);

/**
 * @brief Attach keystore and policy. Call once, after create and before connect.
 * @param handle  the client from mqe2e_MQTTAsync_create().
 * @param options only read; the keystore and policy it names are borrowed
 *        and must outlive the client.
 * @return MQTTASYNC_SUCCESS, MQTTASYNC_NULL_PARAMETER, MQTTASYNC_BAD_STRUCTURE,
 *         or MQE2E_MQTTASYNC_ERR(code) for a library failure.
 */
MQE2E_API int mqe2e_MQTTAsync_setSecurity(mqe2e_MQTTAsync handle,
                                          const mqe2e_MQTTAsync_securityOptions *options);

/**
 * @brief As MQTTAsync_setCallbacks(); messageArrived receives decrypted
 *        messages, to be freed with mqe2e_MQTTAsync_freeMessage() and
 *        mqe2e_MQTTAsync_free().
 */
MQE2E_API int mqe2e_MQTTAsync_setCallbacks(mqe2e_MQTTAsync handle, void *context,
                                           MQTTAsync_connectionLost *cl,
                                           MQTTAsync_messageArrived *ma,
                                           MQTTAsync_deliveryComplete *dc);

/** @brief As MQTTAsync_setConnectionLostCallback(). */
MQE2E_API int mqe2e_MQTTAsync_setConnectionLostCallback(mqe2e_MQTTAsync handle, void *context,
                                                        MQTTAsync_connectionLost *cl);

/** @brief As MQTTAsync_setMessageArrivedCallback(). */
MQE2E_API int mqe2e_MQTTAsync_setMessageArrivedCallback(mqe2e_MQTTAsync handle, void *context,
                                                        MQTTAsync_messageArrived *ma);

/** @brief As MQTTAsync_setDeliveryCompleteCallback(). */
MQE2E_API int mqe2e_MQTTAsync_setDeliveryCompleteCallback(mqe2e_MQTTAsync handle, void *context,
                                                          MQTTAsync_deliveryComplete *dc);

/** @brief As MQTTAsync_setConnected() (called on every connect, automatic reconnects too). */
MQE2E_API int mqe2e_MQTTAsync_setConnected(mqe2e_MQTTAsync handle, void *context,
                                           MQTTAsync_connected *co);

/** @brief As MQTTAsync_setDisconnected() (MQTT v5 DISCONNECT from the server). */
MQE2E_API int mqe2e_MQTTAsync_setDisconnected(mqe2e_MQTTAsync handle, void *context,
                                              MQTTAsync_disconnected *co);

/**
 * @brief As MQTTAsync_connect(); @p options (onSuccess/onFailure,
 *        onSuccess5/onFailure5, automaticReconnect, MQTTVersion,
 *        connectProperties, ...) go to Paho unchanged.
 * @return Paho's codes, or ::MQE2E_MQTTASYNC_NOT_CONFIGURED.
 */
MQE2E_API int mqe2e_MQTTAsync_connect(mqe2e_MQTTAsync handle,
                                      const MQTTAsync_connectOptions *options);

/** @brief As MQTTAsync_reconnect(). */
MQE2E_API int mqe2e_MQTTAsync_reconnect(mqe2e_MQTTAsync handle);

/**
 * @brief As MQTTAsync_disconnect(); with a non-zero options->timeout it first
 *        waits (up to that timeout) until the control plane's queued frames are
 *        sent, so unlike Paho's call it may block; then checkpoints replay state.
 */
MQE2E_API int mqe2e_MQTTAsync_disconnect(mqe2e_MQTTAsync handle,
                                         const MQTTAsync_disconnectOptions *options);

/** @brief As MQTTAsync_isConnected(). */
MQE2E_API int mqe2e_MQTTAsync_isConnected(mqe2e_MQTTAsync handle);

/**
 * @brief As MQTTAsync_subscribe(). Filters go to the broker as given; what
 *        arrives on topics no policy covers is dropped (counted `no_policy`).
 */
MQE2E_API int mqe2e_MQTTAsync_subscribe(mqe2e_MQTTAsync handle, const char *topic, int qos,
                                        MQTTAsync_responseOptions *response);

/** @brief As MQTTAsync_subscribeMany(). */
MQE2E_API int mqe2e_MQTTAsync_subscribeMany(mqe2e_MQTTAsync handle, int count, char *const *topic,
                                            const int *qos, MQTTAsync_responseOptions *response);

/** @brief As MQTTAsync_unsubscribe(). */
MQE2E_API int mqe2e_MQTTAsync_unsubscribe(mqe2e_MQTTAsync handle, const char *topic,
                                          MQTTAsync_responseOptions *response);

/** @brief As MQTTAsync_unsubscribeMany(). */
MQE2E_API int mqe2e_MQTTAsync_unsubscribeMany(mqe2e_MQTTAsync handle, int count, char *const *topic,
                                              MQTTAsync_responseOptions *response);

/**
 * @brief As MQTTAsync_send(): the payload is sealed per the topic's policy
 *        now, once; Paho sends (or buffers) the envelope. @p response
 *        (callbacks, v5 properties) goes to Paho unchanged; properties are
 *        not encrypted. On a channel topic the envelope is sent by the
 *        control plane: response->token is set to 0 and no onSuccess follows.
 * @return Paho's codes, ::MQE2E_MQTTASYNC_NO_POLICY, ::MQE2E_MQTTASYNC_NOT_CONFIGURED
 *         or MQE2E_MQTTASYNC_ERR(code).
 */
MQE2E_API int mqe2e_MQTTAsync_send(mqe2e_MQTTAsync handle, const char *destinationName,
                                   int payloadlen, const void *payload, int qos, int retained,
                                   MQTTAsync_responseOptions *response);

/** @brief As MQTTAsync_sendMessage(); @p msg (and its properties) only read. */
MQE2E_API int mqe2e_MQTTAsync_sendMessage(mqe2e_MQTTAsync handle, const char *destinationName,
                                          const MQTTAsync_message *msg,
                                          MQTTAsync_responseOptions *response);

/** @brief As MQTTAsync_isComplete(). */
MQE2E_API int mqe2e_MQTTAsync_isComplete(mqe2e_MQTTAsync handle, MQTTAsync_token token);

/** @brief As MQTTAsync_waitForCompletion(). */
MQE2E_API int mqe2e_MQTTAsync_waitForCompletion(mqe2e_MQTTAsync handle, MQTTAsync_token token,
                                                unsigned long timeout);

/** @brief As MQTTAsync_freeMessage(): wipes the decrypted payload, frees it and its properties. */
MQE2E_API void mqe2e_MQTTAsync_freeMessage(MQTTAsync_message **msg);

/** @brief As MQTTAsync_free() (for topic names given to the application). */
MQE2E_API void mqe2e_MQTTAsync_free(void *ptr);

/**
 * @brief As MQTTAsync_destroy(); stops the control plane, checkpoints replay
 *        state, wipes; *handle set to NULL. Never from a callback.
 */
MQE2E_API void mqe2e_MQTTAsync_destroy(mqe2e_MQTTAsync *handle);

/** @brief As MQTTAsync_strerror(), also for the MQE2E_MQTTASYNC_* codes. */
MQE2E_API const char *mqe2e_MQTTAsync_strerror(int code);

/** @brief Copy out this client's counters (sealed, opened, dropped by reason). */
MQE2E_API int mqe2e_MQTTAsync_getCounters(mqe2e_MQTTAsync handle, mqe2e_counters *out);

/** @brief Copy out this client's control-plane counters (zero when not enrolled). */
MQE2E_API int mqe2e_MQTTAsync_getControlCounters(mqe2e_MQTTAsync handle,
                                                 mqe2e_control_counters *out);

/**
 * @brief Wait until the control plane has heard from the authority within
 *        the freshness bound (the HELLO reply after a connect), as
 *        mqe2e_MQTTClient_waitForAuthority().
 *
 * Until then every send on a group topic is refused at once with
 * MQE2E_MQTTASYNC_ERR(MQE2E_ERR_EXPIRED) (counted `stale_refused`), never
 * queued: the asynchronous front does not wait by itself (docs/PAHO.md,
 * "Waiting for the authority"). Call it from the application's thread after
 * the connect's onSuccess (or after mqe2e_MQTTAsync_connect() returned; the
 * wait covers the connection too), never from a Paho callback: the HELLO
 * reply is processed on Paho's callback thread.
 * @param handle the client.
 * @param timeout_ms longest wait, milliseconds.
 * @return MQTTASYNC_SUCCESS (also without a control plane);
 *         MQE2E_MQTTASYNC_ERR(MQE2E_ERR_EXPIRED) when nothing came in time;
 *         MQE2E_MQTTASYNC_ERR(MQE2E_ERR_POLICY) when the authority refused
 *         this client (revoked, unknown); MQE2E_MQTTASYNC_NOT_CONFIGURED
 *         before setSecurity; MQTTASYNC_FAILURE for NULL.
 */
MQE2E_API int mqe2e_MQTTAsync_waitForAuthority(mqe2e_MQTTAsync handle, unsigned long timeout_ms);

/**
 * @brief Clear the retained message of @p topicName (a zero-length retained
 *        send, no data); as mqe2e_MQTTClient_clearRetained().
 * @return Paho's codes, ::MQE2E_MQTTASYNC_NOT_CONFIGURED.
 */
MQE2E_API int mqe2e_MQTTAsync_clearRetained(mqe2e_MQTTAsync handle, const char *topicName,
                                            int qos, MQTTAsync_responseOptions *response);

/** @name Paho calls with nothing to encrypt, forwarded unchanged */
/**@{*/
/** @brief As MQTTAsync_global_init(). */
MQE2E_API void mqe2e_MQTTAsync_global_init(MQTTAsync_init_options *inits);
/** @brief As MQTTAsync_setUpdateConnectOptions(). */
MQE2E_API int mqe2e_MQTTAsync_setUpdateConnectOptions(mqe2e_MQTTAsync handle, void *context,
                                                      MQTTAsync_updateConnectOptions *co);
/**
 * @brief As MQTTAsync_setBeforePersistenceWrite(). The buffers it sees hold
 *        the sealed envelope, never the plaintext.
 */
MQE2E_API int mqe2e_MQTTAsync_setBeforePersistenceWrite(mqe2e_MQTTAsync handle, void *context,
                                                        MQTTPersistence_beforeWrite *co);
/** @brief As MQTTAsync_setAfterPersistenceRead(). */
MQE2E_API int mqe2e_MQTTAsync_setAfterPersistenceRead(mqe2e_MQTTAsync handle, void *context,
                                                      MQTTPersistence_afterRead *co);
/** @brief As MQTTAsync_getPendingTokens(); free the array with mqe2e_MQTTAsync_free(). */
MQE2E_API int mqe2e_MQTTAsync_getPendingTokens(mqe2e_MQTTAsync handle, MQTTAsync_token **tokens);
/** @brief As MQTTAsync_malloc(). */
MQE2E_API void *mqe2e_MQTTAsync_malloc(size_t size);
/** @brief As MQTTAsync_setTraceLevel() (Paho's own trace: topics and sizes, never keys). */
MQE2E_API void mqe2e_MQTTAsync_setTraceLevel(enum MQTTASYNC_TRACE_LEVELS level);
/** @brief As MQTTAsync_setTraceCallback(). */
MQE2E_API void mqe2e_MQTTAsync_setTraceCallback(MQTTAsync_traceCallback *callback);
/** @brief As MQTTAsync_getVersionInfo() (Paho's version). */
MQE2E_API MQTTAsync_nameValue *mqe2e_MQTTAsync_getVersionInfo(void);
/**@}*/

#ifdef __cplusplus
}
#endif
#endif
