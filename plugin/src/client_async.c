/*
 * The encrypted drop-in front over Paho's asynchronous MQTTAsync.
 *
 * Same rules as client_sync.c: every protector and keystore call is made
 * under `lock`, Paho is never called with `lock` held, and `cb_lock` is held
 * while one of our message callbacks runs (so held messages released by the
 * control worker and Paho's deliveries never interleave, and destroy can
 * wait for a running callback).
 *
 * Sending seals the payload once, at send() time, and gives Paho the
 * envelope: Paho copies it into its command queue, where it waits while
 * disconnected (sendWhileDisconnected) and from where QoS 1/2 retries
 * resend the same bytes. Nothing here re-seals, so no buffered or retried
 * message can ever carry a new sequence number or reuse one.
 *
 * Paho's own callbacks (connection lost, message arrived, delivery
 * complete, connected) are always ours: the control plane needs to see its
 * frames and every (re)connect even when the application registered none.
 * The application's are called from ours.
 */
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal_plugin.h"
#include "mqe2e/MQTTAsync.h"
#include "mqe2e/holdq.h"

struct mqe2e_async {
    MQTTAsync paho;
    /* Locks, session, keystore, log and drop callbacks (front_common.c). */
    mqe2e__front f;
    /* The application's callbacks, each with its own context as in Paho. */
    void *cl_context, *ma_context, *dc_context, *co_context, *dis_context;
    MQTTAsync_connectionLost *app_cl;
    MQTTAsync_messageArrived *app_ma;
    MQTTAsync_deliveryComplete *app_dc;
    MQTTAsync_connected *app_co;
    MQTTAsync_disconnected *app_dis;
};

/* Where the application's messageArrived runs, for disconnect(): on Paho's
 * receive thread no handshake reply can arrive meanwhile; on the control
 * worker (a released held message) not even the outbox can drain. */
#define ASYNC_IN_PAHO_CALLBACK 1
#define ASYNC_IN_WORKER_CALLBACK 2
static _Thread_local int async_callback_thread;

/* front_common.c returns the synchronous front's codes for both fronts.
 * NOLINTBEGIN(misc-redundant-expression): equal today is what is asserted */
_Static_assert(MQTTASYNC_SUCCESS == MQTTCLIENT_SUCCESS && MQTTASYNC_FAILURE == MQTTCLIENT_FAILURE &&
                   MQTTASYNC_NULL_PARAMETER == MQTTCLIENT_NULL_PARAMETER &&
                   MQTTASYNC_BAD_STRUCTURE == MQTTCLIENT_BAD_STRUCTURE &&
                   MQTTASYNC_BAD_UTF8_STRING == MQTTCLIENT_BAD_UTF8_STRING &&
                   MQTTASYNC_BAD_QOS == MQTTCLIENT_BAD_QOS &&
                   MQE2E_MQTTASYNC_NOT_CONFIGURED == MQE2E_MQTTCLIENT_NOT_CONFIGURED,
               "Paho's sync and async codes differ");
/* NOLINTEND(misc-redundant-expression) */

/* Handed to the core for empty payloads, which Paho may give as NULL. */
static const uint8_t async_empty[1] = {0};

static int async_map_error(int code)
{
    return code == MQE2E_OK ? MQTTASYNC_SUCCESS : MQE2E_MQTTASYNC_ERR(code);
}

static void async_message_wipe_free(MQTTAsync_message *m)
{
    if (m != NULL)
        mqe2e__front_message_wipe_free(m, sizeof *m, m->payload, m->payloadlen, &m->properties);
}

/*
 * The session's DELIVER action as a message of ours (struct and payload in
 * one block) with the flags, packet id and v5 properties of @p in_ (Paho's
 * message; NULL for a released one). Called with `lock` held.
 */
static void *async_wrap(void *ctx, const void *in_, const mqe2e_session_action *a, char **topic)
{
    const MQTTAsync_message *in = in_;
    MQTTAsync_message init = MQTTAsync_message_initializer;
    void *payload;
    MQTTAsync_message *m = mqe2e__wrap_block(sizeof *m, a, topic, &payload);

    (void)ctx;
    if (m == NULL) return NULL;
    *m = init;
    MQE2E__WRAP_FILL(m, in, a, payload);
    return m;
}

static void async_unwrap(void *msg, char *topic)
{
    async_message_wipe_free(msg);
    free(topic);
}

static void async_app_ma(struct mqe2e_async *c, MQTTAsync_messageArrived **ma, void **ctx)
{
    (void)pthread_mutex_lock(&c->f.lock);
    *ma = c->app_ma;
    *ctx = c->ma_context;
    (void)pthread_mutex_unlock(&c->f.lock);
}

/* ---------- control-plane host ---------- */

static int async_ctl_publish(void *ctx, const char *topic, const uint8_t *data, size_t len, int qos,
                             int retained)
{
    struct mqe2e_async *c = ctx;

    if (len > (size_t)INT_MAX) return MQTTASYNC_FAILURE;
    return MQTTAsync_send(c->paho, topic, (int)len, data, qos, retained, NULL);
}

/* Queued, not confirmed: MQTT keeps one connection's packets in order, so
 * the HELLO the worker sends next reaches the broker after the SUBSCRIBE. */
static int async_ctl_subscribe(void *ctx, int count, char *const *topics, int *qos)
{
    struct mqe2e_async *c = ctx;
    return MQTTAsync_subscribeMany(c->paho, count, topics, qos, NULL);
}

static int async_ctl_unsubscribe(void *ctx, const char *topic)
{
    struct mqe2e_async *c = ctx;
    return MQTTAsync_unsubscribe(c->paho, topic, NULL);
}

static int async_ctl_is_connected(void *ctx)
{
    struct mqe2e_async *c = ctx;
    return MQTTAsync_isConnected(c->paho);
}

/* The session dropped (and counted) a message: tell the application. */
static void async_ctl_dropped(void *ctx, const char *topic, int code)
{
    struct mqe2e_async *c = ctx;

    mqe2e__front_report_drop(&c->f, topic, code);
}

static void async_ctl_log(void *ctx, int level, const char *msg)
{
    struct mqe2e_async *c = ctx;

    mqe2e__front_log(&c->f, (mqe2e_log_level)level, "%s", msg);
}

/* The application's messageArrived for the message Paho just gave (cb_lock held). */
static int async_hand_current(void *ctx, void *msg, char *topic)
{
    struct mqe2e_async *c = ctx;
    MQTTAsync_messageArrived *ma;
    void *ma_ctx;

    async_app_ma(c, &ma, &ma_ctx);
    return ma != NULL && ma(ma_ctx, topic, 0, msg);
}

/* A held message whose key arrived (cb_lock held): on the worker's thread
 * when its timers released it, else on Paho's. */
static int async_hand_released(void *ctx, void *msg, char *topic)
{
    int prev = async_callback_thread;
    if (prev == 0) async_callback_thread = ASYNC_IN_WORKER_CALLBACK;
    int taken = async_hand_current(ctx, msg, topic);
    async_callback_thread = prev;
    return taken;
}

/* ---------- Paho's callbacks ---------- */

static int async_message_arrived(void *context, char *topicName, int topicLen,
                                 MQTTAsync_message *message)
{
    struct mqe2e_async *c = context;
    MQTTAsync_messageArrived *ma;
    void *ma_ctx;
    int rc = 1;

    (void)pthread_mutex_lock(&c->f.cb_lock);
    async_callback_thread = ASYNC_IN_PAHO_CALLBACK;
    async_app_ma(c, &ma, &ma_ctx);
    /* Paho would not deliver without messageArrived either. */
    if (ma != NULL && c->f.ctl != NULL && message != NULL)
        rc = mqe2e__ctl_receive(c->f.ctl, topicName, topicLen, message->payload,
                                message->payloadlen, message->qos, message->retained, message->dup,
                                0, message->struct_version >= 1 ? &message->properties : NULL,
                                message, async_hand_current, c);
    if (rc) {
        MQTTAsync_freeMessage(&message);
        MQTTAsync_free(topicName);
    }
    async_callback_thread = 0;
    (void)pthread_mutex_unlock(&c->f.cb_lock);
    return rc;
}

static void async_connection_lost(void *context, char *cause)
{
    struct mqe2e_async *c = context;
    MQTTAsync_connectionLost *cl;
    void *ctx;

    mqe2e__front_log(&c->f, MQE2E_LOG_INFO, "connection lost");
    mqe2e__ctl_session_lost(c->f.ctl);
    (void)pthread_mutex_lock(&c->f.lock);
    cl = c->app_cl;
    ctx = c->cl_context;
    (void)pthread_mutex_unlock(&c->f.lock);
    if (cl != NULL) {
        cl(ctx, cause);
    }
}

static void async_delivery_complete(void *context, MQTTAsync_token token)
{
    struct mqe2e_async *c = context;
    MQTTAsync_deliveryComplete *dc;
    void *ctx;

    (void)pthread_mutex_lock(&c->f.lock);
    dc = c->app_dc;
    ctx = c->dc_context;
    (void)pthread_mutex_unlock(&c->f.lock);
    if (dc != NULL) {
        dc(ctx, token);
    }
}

static void async_connected(void *context, char *cause)
{
    struct mqe2e_async *c = context;
    MQTTAsync_connected *co;
    void *ctx;

    /* TCP_NODELAY on the new connection (docs/PAHO.md, "TCP_NODELAY"). */
    (void)pthread_mutex_lock(&c->f.lock);
    mqe2e__nodelay_apply(&c->f.nodelay);
    (void)pthread_mutex_unlock(&c->f.lock);
    /* A new session (automatic reconnects too): the control worker
     * resubscribes its topics and asks for keys rotated meanwhile. */
    mqe2e__ctl_session_lost(c->f.ctl);
    (void)pthread_mutex_lock(&c->f.lock);
    co = c->app_co;
    ctx = c->co_context;
    (void)pthread_mutex_unlock(&c->f.lock);
    if (co != NULL) {
        co(ctx, cause);
    }
}

static void async_disconnected(void *context, MQTTProperties *properties,
                               enum MQTTReasonCodes reasonCode)
{
    struct mqe2e_async *c = context;
    MQTTAsync_disconnected *dis;
    void *ctx;

    mqe2e__ctl_session_lost(c->f.ctl);
    (void)pthread_mutex_lock(&c->f.lock);
    dis = c->app_dis;
    ctx = c->dis_context;
    (void)pthread_mutex_unlock(&c->f.lock);
    if (dis != NULL) {
        dis(ctx, properties, reasonCode);
    }
}

/* ---------- lifecycle ---------- */

int mqe2e_MQTTAsync_createWithOptions(mqe2e_MQTTAsync *handle, const char *serverURI,
                                      const char *clientId, int persistence_type,
                                      void *persistence_context, MQTTAsync_createOptions *options)
{
    struct mqe2e_async *c;
    int rc;

    if (handle == NULL) {
        return MQTTASYNC_NULL_PARAMETER;
    }
    *handle = NULL;
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        return MQTTASYNC_FAILURE;
    }
    if (mqe2e__front_init(&c->f, serverURI) != 0) {
        free(c);
        return MQTTASYNC_FAILURE;
    }
    if (options != NULL) {
        rc = MQTTAsync_createWithOptions(&c->paho, serverURI, clientId, persistence_type,
                                         persistence_context, options);
    } else {
        rc = MQTTAsync_create(&c->paho, serverURI, clientId, persistence_type, persistence_context);
    }
    if (rc == MQTTASYNC_SUCCESS) {
        rc = MQTTAsync_setCallbacks(c->paho, c, async_connection_lost, async_message_arrived,
                                    async_delivery_complete);
    }
    if (rc == MQTTASYNC_SUCCESS) {
        rc = MQTTAsync_setConnected(c->paho, c, async_connected);
    }
    if (rc == MQTTASYNC_SUCCESS) {
        rc = MQTTAsync_setDisconnected(c->paho, c, async_disconnected);
    }
    if (rc != MQTTASYNC_SUCCESS) {
        if (c->paho != NULL) {
            MQTTAsync_destroy(&c->paho);
        }
        mqe2e__front_fini(&c->f);
        free(c);
        return rc;
    }
    *handle = c;
    return MQTTASYNC_SUCCESS;
}

int mqe2e_MQTTAsync_create(mqe2e_MQTTAsync *handle, const char *serverURI, const char *clientId,
                           int persistence_type, void *persistence_context)
{
    return mqe2e_MQTTAsync_createWithOptions(handle, serverURI, clientId, persistence_type,
                                             persistence_context, NULL);
}

int mqe2e_MQTTAsync_setSecurity(mqe2e_MQTTAsync handle,
                                const mqe2e_MQTTAsync_securityOptions *options)
{
    struct mqe2e_async *c = handle;

    if (c == NULL) {
        return MQTTASYNC_NULL_PARAMETER;
    }
    mqe2e__front *f = &c->f;
    mqe2e__ctl_host host = {async_ctl_publish,
                            async_ctl_subscribe,
                            async_ctl_is_connected,
                            MQTTAsync_strerror,
                            &f->lock,
                            &f->cb_lock,
                            c,
                            async_ctl_log,
                            0,
                            async_ctl_dropped,
                            async_wrap,
                            async_unwrap,
                            async_hand_released,
                            async_ctl_unsubscribe};
    return mqe2e__front_set_security(f, &host, options);
}

int mqe2e_MQTTAsync_setCallbacks(mqe2e_MQTTAsync handle, void *context,
                                 MQTTAsync_connectionLost *cl, MQTTAsync_messageArrived *ma,
                                 MQTTAsync_deliveryComplete *dc)
{
    struct mqe2e_async *c = handle;
    int rc;

    if (c == NULL) {
        return MQTTASYNC_FAILURE;
    }
    /* Paho's checks (disconnected, ma given) decide; ours stay registered. */
    rc = MQTTAsync_setCallbacks(c->paho, c, async_connection_lost,
                                ma != NULL ? async_message_arrived : NULL, async_delivery_complete);
    if (rc != MQTTASYNC_SUCCESS) {
        if (ma == NULL) {
            (void)MQTTAsync_setCallbacks(c->paho, c, async_connection_lost, async_message_arrived,
                                         async_delivery_complete);
        }
        return rc;
    }
    (void)pthread_mutex_lock(&c->f.lock);
    c->cl_context = c->ma_context = c->dc_context = context;
    c->app_cl = cl;
    c->app_ma = ma;
    c->app_dc = dc;
    (void)pthread_mutex_unlock(&c->f.lock);
    return MQTTASYNC_SUCCESS;
}

int mqe2e_MQTTAsync_setConnectionLostCallback(mqe2e_MQTTAsync handle, void *context,
                                              MQTTAsync_connectionLost *cl)
{
    struct mqe2e_async *c = handle;
    int rc;

    if (c == NULL) {
        return MQTTASYNC_FAILURE;
    }
    rc = MQTTAsync_setConnectionLostCallback(c->paho, c, async_connection_lost);
    if (rc == MQTTASYNC_SUCCESS) {
        (void)pthread_mutex_lock(&c->f.lock);
        c->cl_context = context;
        c->app_cl = cl;
        (void)pthread_mutex_unlock(&c->f.lock);
    }
    return rc;
}

int mqe2e_MQTTAsync_setMessageArrivedCallback(mqe2e_MQTTAsync handle, void *context,
                                              MQTTAsync_messageArrived *ma)
{
    struct mqe2e_async *c = handle;
    int rc;

    if (c == NULL) {
        return MQTTASYNC_FAILURE;
    }
    rc = MQTTAsync_setMessageArrivedCallback(c->paho, c, async_message_arrived);
    if (rc == MQTTASYNC_SUCCESS) {
        (void)pthread_mutex_lock(&c->f.lock);
        c->ma_context = context;
        c->app_ma = ma;
        (void)pthread_mutex_unlock(&c->f.lock);
    }
    return rc;
}

int mqe2e_MQTTAsync_setDeliveryCompleteCallback(mqe2e_MQTTAsync handle, void *context,
                                                MQTTAsync_deliveryComplete *dc)
{
    struct mqe2e_async *c = handle;
    int rc;

    if (c == NULL) {
        return MQTTASYNC_FAILURE;
    }
    rc = MQTTAsync_setDeliveryCompleteCallback(c->paho, c, async_delivery_complete);
    if (rc == MQTTASYNC_SUCCESS) {
        (void)pthread_mutex_lock(&c->f.lock);
        c->dc_context = context;
        c->app_dc = dc;
        (void)pthread_mutex_unlock(&c->f.lock);
    }
    return rc;
}

int mqe2e_MQTTAsync_setConnected(mqe2e_MQTTAsync handle, void *context, MQTTAsync_connected *co)
{
    struct mqe2e_async *c = handle;

    if (c == NULL) {
        return MQTTASYNC_FAILURE;
    }
    (void)pthread_mutex_lock(&c->f.lock);
    c->co_context = context;
    c->app_co = co;
    (void)pthread_mutex_unlock(&c->f.lock);
    return MQTTASYNC_SUCCESS;
}

int mqe2e_MQTTAsync_setDisconnected(mqe2e_MQTTAsync handle, void *context,
                                    MQTTAsync_disconnected *co)
{
    struct mqe2e_async *c = handle;

    if (c == NULL) {
        return MQTTASYNC_FAILURE;
    }
    (void)pthread_mutex_lock(&c->f.lock);
    c->dis_context = context;
    c->app_dis = co;
    (void)pthread_mutex_unlock(&c->f.lock);
    return MQTTASYNC_SUCCESS;
}

/* The will is sealed at connect like any send (see client_sync.c); Paho
 * copies it, so the envelope is wiped right after the call. */
static int async_seal_will(struct mqe2e_async *c, const MQTTAsync_connectOptions *in,
                           MQTTAsync_connectOptions *copy, MQTTAsync_willOptions *will_copy,
                           uint8_t **buf, size_t *buf_cap)
{
    const MQTTAsync_willOptions *w;
    size_t out_len = 0;
    int rc;

    *buf = NULL;
    *buf_cap = 0;
    if (in == NULL || in->will == NULL) {
        return MQE2E_OK;
    }
    w = in->will;
    if (w->topicName == NULL) {
        return MQE2E_ERR_INVALID_ARG;
    }
    rc = mqe2e__will_seal(c->f.protector, &c->f.lock, w->topicName, w->message, w->payload.data,
                          w->payload.len, buf, buf_cap, &out_len);
    if (rc != MQE2E_OK) {
        mqe2e__front_log(&c->f, MQE2E_LOG_WARNING, "refused the will on '%s': %s", w->topicName,
                         mqe2e_error_name(rc));
        return rc;
    }
    *will_copy = *w;
    will_copy->message = NULL;
    if (will_copy->struct_version < 1) {
        will_copy->struct_version = 1;
    }
    will_copy->payload.data = *buf;
    will_copy->payload.len = (int)out_len;
    *copy = *in;
    copy->will = will_copy;
    return MQE2E_OK;
}

int mqe2e_MQTTAsync_connect(mqe2e_MQTTAsync handle, const MQTTAsync_connectOptions *options)
{
    struct mqe2e_async *c = handle;

    if (c == NULL) {
        return MQTTASYNC_FAILURE;
    }
    if (c->f.protector == NULL) {
        return MQE2E_MQTTASYNC_NOT_CONFIGURED;
    }
    MQTTAsync_connectOptions copy;
    MQTTAsync_willOptions will;
    uint8_t *will_buf = NULL;
    size_t will_cap = 0;
    int rc = async_seal_will(c, options, &copy, &will, &will_buf, &will_cap);
    if (rc != MQE2E_OK) {
        mqe2e__will_free(will_buf, will_cap);
        return async_map_error(rc);
    }
    (void)pthread_mutex_lock(&c->f.lock);
    if (options != NULL && options->struct_version >= 2 && options->serverURIcount > 0)
        (void)mqe2e__nodelay_set_uris(&c->f.nodelay, options->serverURIs, options->serverURIcount);
    else
        (void)mqe2e__nodelay_set_uris(&c->f.nodelay, NULL, 0);
    (void)pthread_mutex_unlock(&c->f.lock);
    rc = MQTTAsync_connect(c->paho, will_buf != NULL ? &copy : options);
    mqe2e__will_free(will_buf, will_cap);
    if (rc == MQTTASYNC_SUCCESS) {
        /* The control worker subscribes and sends a HELLO once connected. */
        mqe2e__ctl_session_lost(c->f.ctl);
    }
    return rc;
}

int mqe2e_MQTTAsync_reconnect(mqe2e_MQTTAsync handle)
{
    if (handle == NULL) {
        return MQTTASYNC_FAILURE;
    }
    return MQTTAsync_reconnect(handle->paho);
}

int mqe2e_MQTTAsync_disconnect(mqe2e_MQTTAsync handle, const MQTTAsync_disconnectOptions *options)
{
    struct mqe2e_async *c = handle;
    int rc;
    int crc;

    if (c == NULL) {
        return MQTTASYNC_FAILURE;
    }
    /* Channel envelopes and handshake frames go out through the control
     * worker: let it hand them to Paho first, within the caller's timeout
     * (Paho then lets in-flight transfers finish within it as well). */
    if (mqe2e__ctl_has_control(c->f.ctl) && options != NULL && options->timeout > 0 &&
        async_callback_thread != ASYNC_IN_WORKER_CALLBACK) {
        int frc = mqe2e__ctl_flush(c->f.ctl, (uint64_t)options->timeout,
                                   async_callback_thread != ASYNC_IN_PAHO_CALLBACK);
        if (frc == MQE2E_ERR_STATE)
            mqe2e__front_log(&c->f, MQE2E_LOG_WARNING,
                             "disconnect: control frames still queued after %d ms",
                             options->timeout);
    }
    rc = MQTTAsync_disconnect(c->paho, options);
    /* Messages delivered after this are checkpointed again by destroy(). */
    crc = mqe2e__front_checkpoint(&c->f);
    if (rc == MQTTASYNC_SUCCESS && crc != MQE2E_OK) {
        rc = MQE2E_MQTTASYNC_ERR(crc);
    }
    return rc;
}

int mqe2e_MQTTAsync_isConnected(mqe2e_MQTTAsync handle)
{
    return handle != NULL ? MQTTAsync_isConnected(handle->paho) : 0;
}

int mqe2e_MQTTAsync_subscribe(mqe2e_MQTTAsync handle, const char *topic, int qos,
                              MQTTAsync_responseOptions *response)
{
    if (handle == NULL) {
        return MQTTASYNC_FAILURE;
    }
    if (handle->f.protector == NULL) {
        return MQE2E_MQTTASYNC_NOT_CONFIGURED;
    }
    return MQTTAsync_subscribe(handle->paho, topic, qos, response);
}

int mqe2e_MQTTAsync_subscribeMany(mqe2e_MQTTAsync handle, int count, char *const *topic,
                                  const int *qos, MQTTAsync_responseOptions *response)
{
    if (handle == NULL) {
        return MQTTASYNC_FAILURE;
    }
    if (handle->f.protector == NULL) {
        return MQE2E_MQTTASYNC_NOT_CONFIGURED;
    }
    return MQTTAsync_subscribeMany(handle->paho, count, topic, qos, response);
}

int mqe2e_MQTTAsync_unsubscribe(mqe2e_MQTTAsync handle, const char *topic,
                                MQTTAsync_responseOptions *response)
{
    if (handle == NULL) {
        return MQTTASYNC_FAILURE;
    }
    return MQTTAsync_unsubscribe(handle->paho, topic, response);
}

int mqe2e_MQTTAsync_unsubscribeMany(mqe2e_MQTTAsync handle, int count, char *const *topic,
                                    MQTTAsync_responseOptions *response)
{
    if (handle == NULL) {
        return MQTTASYNC_FAILURE;
    }
    return MQTTAsync_unsubscribeMany(handle->paho, count, topic, response);
}

/* ---------- sending ---------- */

/*
 * Seal @p msg's payload for @p topic and hand Paho a copy of @p msg carrying
 * the envelope. Paho copies the envelope; ours is wiped (on a plaintext
 * topic it holds the application's payload).
 */
static int async_send(struct mqe2e_async *c, const char *topic, const MQTTAsync_message *msg,
                      MQTTAsync_responseOptions *response)
{
    MQTTAsync_message out_msg;
    /* Envelopes of small messages (the common case) need no allocation. */
    uint8_t stack_buf[MQE2E__PUBLISH_STACK_BYTES];
    const uint8_t *pt;
    uint8_t *buf = NULL;
    size_t pt_len;
    size_t cap;
    size_t out_len = 0;
    int rc;

    rc = MQE2E__FRONT_PUBLISH_PREPARE(c == NULL ? NULL : &c->f, topic, msg, stack_buf, &pt,
                                      &pt_len, &buf, &cap);
    if (rc != MQTTASYNC_SUCCESS) {
        return rc;
    }
    rc = mqe2e__ctl_publish(c->f.ctl, topic, pt, pt_len, msg->qos, msg->retained,
                            msg->struct_version >= 1 ? &msg->properties : NULL, buf, cap, &out_len);
    if (rc == MQE2E_SESSION_QUEUED) {
        /* Sent by the control worker once the channel is up: no token. */
        if (response != NULL) response->token = 0;
        rc = MQTTASYNC_SUCCESS;
        goto out;
    }
    if (rc != MQE2E_OK) {
        mqe2e__front_log(&c->f, MQE2E_LOG_WARNING, "refused to send on '%s': %s", topic,
                         rc == MQE2E_ERR_NO_POLICY ? "no policy" : mqe2e_error_name(rc));
        rc = async_map_error(rc);
        goto out;
    }
    out_msg = *msg; /* flags and v5 properties as the application gave them */
    out_msg.payload = buf;
    out_msg.payloadlen = (int)out_len;
    if (out_msg.properties.count == 0 &&
        (response == NULL || response->struct_version < 1 || response->properties.count == 0)) {
        /* No v5 properties anywhere: what sendMessage does, without its extra
         * layer of Paho's call tracing (~1,000 instructions per message). */
        rc = MQTTAsync_send(c->paho, topic, out_msg.payloadlen, buf, out_msg.qos, out_msg.retained,
                            response);
    } else {
        rc = MQTTAsync_sendMessage(c->paho, topic, &out_msg, response);
    }
    sodium_memzero(&out_msg, sizeof out_msg);
out:
    sodium_memzero(buf, cap > 0 ? cap : 1U);
    if (buf != stack_buf) free(buf);
    return rc;
}

int mqe2e_MQTTAsync_send(mqe2e_MQTTAsync handle, const char *destinationName, int payloadlen,
                         const void *payload, int qos, int retained,
                         MQTTAsync_responseOptions *response)
{
    MQTTAsync_message msg = MQTTAsync_message_initializer;

    msg.payload = (void *)(uintptr_t)payload; /* only read */
    msg.payloadlen = payloadlen;
    msg.qos = qos;
    msg.retained = retained;
    /* Paho's send() takes v5 properties from the response options. */
    if (response != NULL && response->struct_version >= 1) {
        msg.properties = response->properties;
    }
    return async_send(handle, destinationName, &msg, response);
}

int mqe2e_MQTTAsync_sendMessage(mqe2e_MQTTAsync handle, const char *destinationName,
                                const MQTTAsync_message *msg, MQTTAsync_responseOptions *response)
{
    return async_send(handle, destinationName, msg, response);
}

int mqe2e_MQTTAsync_isComplete(mqe2e_MQTTAsync handle, MQTTAsync_token token)
{
    if (handle == NULL) {
        return MQTTASYNC_FAILURE;
    }
    return MQTTAsync_isComplete(handle->paho, token);
}

int mqe2e_MQTTAsync_waitForCompletion(mqe2e_MQTTAsync handle, MQTTAsync_token token,
                                      unsigned long timeout)
{
    if (handle == NULL) {
        return MQTTASYNC_FAILURE;
    }
    return MQTTAsync_waitForCompletion(handle->paho, token, timeout);
}

void mqe2e_MQTTAsync_freeMessage(MQTTAsync_message **msg)
{
    if (msg == NULL || *msg == NULL) {
        return;
    }
    async_message_wipe_free(*msg);
    *msg = NULL;
}

void mqe2e_MQTTAsync_free(void *ptr)
{
    free(ptr);
}

void mqe2e_MQTTAsync_destroy(mqe2e_MQTTAsync *handle)
{
    struct mqe2e_async *c;

    if (handle == NULL || *handle == NULL) {
        return;
    }
    c = *handle;
    /* The control worker uses the Paho handle: it stops first. */
    mqe2e__ctl_stop(c->f.ctl);
    MQTTAsync_destroy(&c->paho);
    mqe2e__front_release(&c->f);
    sodium_memzero(c, sizeof *c);
    free(c);
    *handle = NULL;
}

const char *mqe2e_MQTTAsync_strerror(int code)
{
    int lib_code = code - MQE2E_MQTTASYNC_ERROR_BASE;

    if ((lib_code < 0 && lib_code >= MQE2E_ERR_MIN) || (code >= 1 && code <= 5)) {
        /* Same code space and strings as the synchronous front. */
        return mqe2e_MQTTClient_strerror(code);
    }
    return MQTTAsync_strerror(code);
}

int mqe2e_MQTTAsync_getCounters(mqe2e_MQTTAsync handle, mqe2e_counters *out)
{
    return mqe2e__front_counters(handle == NULL ? NULL : &handle->f, out);
}

int mqe2e_MQTTAsync_getControlCounters(mqe2e_MQTTAsync handle, mqe2e_control_counters *out)
{
    return mqe2e__front_control_counters(handle == NULL ? NULL : &handle->f, out);
}

int mqe2e_MQTTAsync_waitForAuthority(mqe2e_MQTTAsync handle, unsigned long timeout_ms)
{
    if (handle == NULL) return MQTTASYNC_FAILURE;
    if (handle->f.protector == NULL) return MQE2E_MQTTASYNC_NOT_CONFIGURED;
    if (handle->f.ctl == NULL) return MQTTASYNC_SUCCESS;
    int rc = mqe2e__ctl_wait_fresh(handle->f.ctl, timeout_ms);
    return rc == MQE2E_OK ? MQTTASYNC_SUCCESS : async_map_error(rc);
}

int mqe2e_MQTTAsync_clearRetained(mqe2e_MQTTAsync handle, const char *topicName, int qos,
                                  MQTTAsync_responseOptions *response)
{
    struct mqe2e_async *c = handle;

    if (c == NULL) {
        return MQTTASYNC_FAILURE;
    }
    int rc = mqe2e__front_clear_check(&c->f, topicName);
    if (rc != MQTTASYNC_SUCCESS) {
        return rc;
    }
    /* No data leaves: an empty retained publish is the broker's delete. */
    return MQTTAsync_send(c->paho, topicName, 0, async_empty, qos, 1, response);
}

/* ---- Paho calls with nothing to encrypt: forwarded ---- */

void mqe2e_MQTTAsync_global_init(MQTTAsync_init_options *inits)
{
    MQTTAsync_global_init(inits);
}

int mqe2e_MQTTAsync_setUpdateConnectOptions(mqe2e_MQTTAsync handle, void *context,
                                            MQTTAsync_updateConnectOptions *co)
{
    if (handle == NULL) {
        return MQTTASYNC_FAILURE;
    }
    return MQTTAsync_setUpdateConnectOptions(handle->paho, context, co);
}

int mqe2e_MQTTAsync_setBeforePersistenceWrite(mqe2e_MQTTAsync handle, void *context,
                                              MQTTPersistence_beforeWrite *co)
{
    if (handle == NULL) {
        return MQTTASYNC_FAILURE;
    }
    return MQTTAsync_setBeforePersistenceWrite(handle->paho, context, co);
}

int mqe2e_MQTTAsync_setAfterPersistenceRead(mqe2e_MQTTAsync handle, void *context,
                                            MQTTPersistence_afterRead *co)
{
    if (handle == NULL) {
        return MQTTASYNC_FAILURE;
    }
    return MQTTAsync_setAfterPersistenceRead(handle->paho, context, co);
}

int mqe2e_MQTTAsync_getPendingTokens(mqe2e_MQTTAsync handle, MQTTAsync_token **tokens)
{
    if (handle == NULL) {
        return MQTTASYNC_FAILURE;
    }
    return MQTTAsync_getPendingTokens(handle->paho, tokens);
}

void *mqe2e_MQTTAsync_malloc(size_t size)
{
    return MQTTAsync_malloc(size);
}

void mqe2e_MQTTAsync_setTraceLevel(enum MQTTASYNC_TRACE_LEVELS level)
{
    MQTTAsync_setTraceLevel(level);
}

void mqe2e_MQTTAsync_setTraceCallback(MQTTAsync_traceCallback *callback)
{
    MQTTAsync_setTraceCallback(callback);
}

MQTTAsync_nameValue *mqe2e_MQTTAsync_getVersionInfo(void)
{
    return MQTTAsync_getVersionInfo();
}
