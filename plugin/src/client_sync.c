/*
 * The encrypted drop-in front over Paho's synchronous MQTTClient.
 *
 * Threads: Paho delivers messages, delivery notices and connection loss on
 * its own threads while the application publishes on others. The protector
 * and the keystore are not thread-safe, so every call into them is made under
 * `lock`. Paho is never called with `lock` held, so a Paho call that waits
 * for its background thread cannot deadlock against our callback taking it.
 *
 * Received messages: the envelope is authenticated and decrypted into a copy
 * owned by the application, and the replay window is only advanced (commit)
 * once the application accepted the message. An application that returns 0
 * gets the same message again from Paho, which then authenticates again
 * because nothing was recorded. A message that fails any check is consumed
 * (returned as handled to Paho), otherwise Paho would redeliver it forever.
 *
 * Subscriptions are passed through unchanged: a filter that overlaps topics
 * without a policy is allowed, and what arrives on such topics is dropped and
 * counted on receipt (MQE2E_DROP_NO_POLICY), never delivered.
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
#include "mqe2e/MQTTClient.h"
#include "mqe2e/holdq.h"

struct mqe2e_client {
    MQTTClient paho;
    /* Locks, session, keystore, log and drop callbacks (front_common.c). */
    mqe2e__front f;
    void *app_context;
    MQTTClient_connectionLost *app_cl;
    MQTTClient_messageArrived *app_ma;
    MQTTClient_deliveryComplete *app_dc;
    /* Created for MQTT v5: Paho then only accepts its *5 calls. */
    int mqtt5;
};

/* Handed to the core for empty payloads, which Paho may give as NULL. */
static const uint8_t client_empty[1] = {0};

static int client_map_error(int code)
{
    return code == MQE2E_OK ? MQTTCLIENT_SUCCESS : MQE2E_MQTTCLIENT_ERR(code);
}

/* Wipe the decrypted payload of one of our messages, then free the block. */
static void client_message_wipe_free(MQTTClient_message *m)
{
    if (m != NULL)
        mqe2e__front_message_wipe_free(m, sizeof *m, m->payload, m->payloadlen, &m->properties);
}

/*
 * The session's DELIVER action as a message of ours (struct and payload in
 * one block, wiped by mqe2e_MQTTClient_freeMessage) with the flags, packet id
 * and v5 properties of @p in_ (Paho's message; NULL for a released one).
 * Called with `lock` held.
 */
static void *client_wrap(void *ctx, const void *in_, const mqe2e_session_action *a, char **topic)
{
    const MQTTClient_message *in = in_;
    MQTTClient_message init = MQTTClient_message_initializer;
    void *payload;
    MQTTClient_message *m = mqe2e__wrap_block(sizeof *m, a, topic, &payload);

    (void)ctx;
    if (m == NULL) return NULL;
    *m = init;
    if (in != NULL) {
        memcpy(m->struct_id, in->struct_id, sizeof m->struct_id);
        m->struct_version = in->struct_version;
    }
    MQE2E__WRAP_FILL(m, in, a, payload);
    return m;
}

static void client_unwrap(void *msg, char *topic)
{
    client_message_wipe_free(msg);
    free(topic);
}

/* The application's messageArrived (cb_lock held): 1 when it took the message. */
static int client_hand(void *ctx, void *msg, char *topic)
{
    struct mqe2e_client *c = ctx;
    /* Our copy never holds a NUL inside the topic, so strlen() is exact. */
    return c->app_ma != NULL && c->app_ma(c->app_context, topic, 0, msg);
}

/* One code out of a v5 response: Paho's negative code, MQTTCLIENT_FAILURE
 * when the broker refused (a reason code >= 0x80), else success. The
 * response's allocations are freed. */
static int client_response_rc(MQTTResponse r)
{
    int rc = (int)r.reasonCode;

    for (int i = 0; rc >= 0 && r.reasonCodes != NULL && i < r.reasonCodeCount; i++) {
        if ((int)r.reasonCodes[i] >= MQTTREASONCODE_UNSPECIFIED_ERROR) rc = MQTTCLIENT_FAILURE;
    }
    MQTTResponse_free(r);
    if (rc >= MQTTREASONCODE_UNSPECIFIED_ERROR) return MQTTCLIENT_FAILURE;
    return rc < 0 ? rc : MQTTCLIENT_SUCCESS;
}

/* Control plane transport: Paho's v3 or v5 calls, as the client was created. */
static int client_ctl_publish(void *ctx, const char *topic, const uint8_t *data, size_t len,
                              int qos, int retained)
{
    struct mqe2e_client *c = ctx;

    if (len > (size_t)INT_MAX) return MQTTCLIENT_FAILURE;
    if (c->mqtt5) {
        return client_response_rc(
            MQTTClient_publish5(c->paho, topic, (int)len, data, qos, retained, NULL, NULL));
    }
    return MQTTClient_publish(c->paho, topic, (int)len, data, qos, retained, NULL);
}

static int client_ctl_subscribe(void *ctx, int count, char *const *topics, int *qos)
{
    struct mqe2e_client *c = ctx;

    if (c->mqtt5) {
        return client_response_rc(
            MQTTClient_subscribeMany5(c->paho, count, topics, qos, NULL, NULL));
    }
    return MQTTClient_subscribeMany(c->paho, count, topics, qos);
}

static int client_ctl_unsubscribe(void *ctx, const char *topic)
{
    struct mqe2e_client *c = ctx;

    if (c->mqtt5) return client_response_rc(MQTTClient_unsubscribe5(c->paho, topic, NULL));
    return MQTTClient_unsubscribe(c->paho, topic);
}

static int client_ctl_is_connected(void *ctx)
{
    struct mqe2e_client *c = ctx;
    return MQTTClient_isConnected(c->paho);
}

/* The session dropped (and counted) a message: tell the application. */
static void client_ctl_dropped(void *ctx, const char *topic, int code)
{
    struct mqe2e_client *c = ctx;

    mqe2e__front_report_drop(&c->f, topic, code);
}

static void client_ctl_log(void *ctx, int level, const char *msg)
{
    struct mqe2e_client *c = ctx;

    mqe2e__front_log(&c->f, (mqe2e_log_level)level, "%s", msg);
}

static int client_message_arrived(void *context, char *topicName, int topicLen,
                                  MQTTClient_message *message)
{
    struct mqe2e_client *c = context;
    int rc = 1;

    (void)pthread_mutex_lock(&c->f.cb_lock);
    /* Registered only when the application gave messageArrived; checked anyway. */
    if (c->app_ma != NULL && c->f.ctl != NULL && message != NULL)
        rc = mqe2e__ctl_receive(c->f.ctl, topicName, topicLen, message->payload,
                                message->payloadlen, message->qos, message->retained, message->dup,
                                0, message->struct_version >= 1 ? &message->properties : NULL,
                                message, client_hand, c);
    else
        mqe2e__front_report_drop(&c->f, topicName, MQE2E_ERR_STATE);
    if (rc) {
        MQTTClient_freeMessage(&message);
        MQTTClient_free(topicName);
    }
    (void)pthread_mutex_unlock(&c->f.cb_lock);
    return rc;
}

static void client_connection_lost(void *context, char *cause)
{
    struct mqe2e_client *c = context;

    (void)pthread_mutex_lock(&c->f.cb_lock);
    mqe2e__front_log(&c->f, MQE2E_LOG_INFO, "connection lost");
    if (c->app_cl != NULL) {
        c->app_cl(c->app_context, cause);
    }
    (void)pthread_mutex_unlock(&c->f.cb_lock);
}

static void client_delivery_complete(void *context, MQTTClient_deliveryToken dt)
{
    struct mqe2e_client *c = context;

    (void)pthread_mutex_lock(&c->f.cb_lock);
    if (c->app_dc != NULL) {
        c->app_dc(c->app_context, dt);
    }
    (void)pthread_mutex_unlock(&c->f.cb_lock);
}

int mqe2e_MQTTClient_createWithOptions(mqe2e_MQTTClient *handle, const char *serverURI,
                                       const char *clientId, int persistence_type,
                                       void *persistence_context, MQTTClient_createOptions *options)
{
    struct mqe2e_client *c;
    int rc;

    if (handle == NULL) {
        return MQTTCLIENT_NULL_PARAMETER;
    }
    *handle = NULL;
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        return MQTTCLIENT_FAILURE;
    }
    c->mqtt5 = options != NULL && options->MQTTVersion >= MQTTVERSION_5;
    if (mqe2e__front_init(&c->f, serverURI) != 0) {
        free(c);
        return MQTTCLIENT_FAILURE;
    }
    if (options != NULL) {
        rc = MQTTClient_createWithOptions(&c->paho, serverURI, clientId, persistence_type,
                                          persistence_context, options);
    } else {
        rc =
            MQTTClient_create(&c->paho, serverURI, clientId, persistence_type, persistence_context);
    }
    if (rc != MQTTCLIENT_SUCCESS) {
        mqe2e__front_fini(&c->f);
        free(c);
        return rc;
    }
    *handle = c;
    return MQTTCLIENT_SUCCESS;
}

int mqe2e_MQTTClient_create(mqe2e_MQTTClient *handle, const char *serverURI, const char *clientId,
                            int persistence_type, void *persistence_context)
{
    return mqe2e_MQTTClient_createWithOptions(handle, serverURI, clientId, persistence_type,
                                              persistence_context, NULL);
}

int mqe2e_MQTTClient_setSecurity(mqe2e_MQTTClient handle,
                                 const mqe2e_MQTTClient_securityOptions *options)
{
    struct mqe2e_client *c = handle;

    if (c == NULL) {
        return MQTTCLIENT_NULL_PARAMETER;
    }
    mqe2e__front *f = &c->f;
    mqe2e__ctl_host host = {client_ctl_publish,
                            client_ctl_subscribe,
                            client_ctl_is_connected,
                            MQTTClient_strerror,
                            &f->lock,
                            &f->cb_lock,
                            c,
                            client_ctl_log,
                            0,
                            client_ctl_dropped,
                            client_wrap,
                            client_unwrap,
                            client_hand,
                            client_ctl_unsubscribe};
    return mqe2e__front_set_security(f, &host, options);
}

int mqe2e_MQTTClient_setCallbacks(mqe2e_MQTTClient handle, void *context,
                                  MQTTClient_connectionLost *cl, MQTTClient_messageArrived *ma,
                                  MQTTClient_deliveryComplete *dc)
{
    struct mqe2e_client *c = handle;
    int rc;

    if (c == NULL) {
        return MQTTCLIENT_FAILURE;
    }
    /* Same NULL pattern as the application's, so Paho accepts or refuses alike. */
    rc = MQTTClient_setCallbacks(c->paho, c, cl != NULL ? client_connection_lost : NULL,
                                 ma != NULL ? client_message_arrived : NULL,
                                 dc != NULL ? client_delivery_complete : NULL);
    if (rc != MQTTCLIENT_SUCCESS) {
        return rc;
    }
    /* Paho only accepts this while disconnected: no callback is running. */
    (void)pthread_mutex_lock(&c->f.cb_lock);
    c->app_context = context;
    c->app_cl = cl;
    c->app_ma = ma;
    c->app_dc = dc;
    (void)pthread_mutex_unlock(&c->f.cb_lock);
    return MQTTCLIENT_SUCCESS;
}

/*
 * A last will is published by the broker on the client's behalf, so it is
 * sealed here, at connect, like any publish: a will on a protected topic
 * never reaches the broker in clear, and one on a topic without a policy
 * refuses the connect. *copy and *will_copy are filled when a will was
 * sealed; *buf (wipe and free) holds its envelope.
 */
static int client_seal_will(struct mqe2e_client *c, const MQTTClient_connectOptions *in,
                            MQTTClient_connectOptions *copy, MQTTClient_willOptions *will_copy,
                            uint8_t **buf, size_t *buf_cap)
{
    const MQTTClient_willOptions *w;
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
        will_copy->struct_version = 1; /* the binary payload field */
    }
    will_copy->payload.data = *buf;
    will_copy->payload.len = (int)out_len;
    *copy = *in;
    copy->will = will_copy;
    return MQE2E_OK;
}

/* In callback mode the HELLO reply is processed on Paho's thread: wait for
 * it (bounded), so that a program that publishes right after connecting
 * seals under the authority's current epochs. Without it, group publishes
 * are refused until the reply (docs/PROTOCOL.md 9.3). */
static void client_wait_fresh(struct mqe2e_client *c, const MQTTClient_connectOptions *options)
{
    (void)pthread_mutex_lock(&c->f.cb_lock);
    int callbacks = c->app_ma != NULL;
    (void)pthread_mutex_unlock(&c->f.cb_lock);
    if (!callbacks) return;
    uint64_t wait_ms = 10000U;
    if (options != NULL && options->connectTimeout > 0 &&
        (uint64_t)options->connectTimeout * 1000U < wait_ms)
        wait_ms = (uint64_t)options->connectTimeout * 1000U;
    if (mqe2e__ctl_wait_fresh(c->f.ctl, wait_ms) != MQE2E_OK)
        mqe2e__front_log(
            &c->f, MQE2E_LOG_WARNING,
            "connected, but no HELLO reply from the authority yet: group publishes are "
            "refused until it answers");
}

/* TCP_NODELAY on the new connection before the control plane's first frames
 * (docs/PAHO.md, "TCP_NODELAY"). */
static void client_nodelay(struct mqe2e_client *c, const MQTTClient_connectOptions *o, int ok)
{
    if (!ok) return;
    if (o != NULL && o->struct_version >= 2 && o->serverURIcount > 0)
        (void)mqe2e__nodelay_set_uris(&c->f.nodelay, o->serverURIs, o->serverURIcount);
    else
        (void)mqe2e__nodelay_set_uris(&c->f.nodelay, NULL, 0);
    mqe2e__nodelay_apply(&c->f.nodelay);
}

int mqe2e_MQTTClient_connect(mqe2e_MQTTClient handle, MQTTClient_connectOptions *options)
{
    struct mqe2e_client *c = handle;

    if (c == NULL) {
        return MQTTCLIENT_FAILURE;
    }
    if (c->f.protector == NULL) {
        return MQE2E_MQTTCLIENT_NOT_CONFIGURED;
    }
    MQTTClient_connectOptions copy;
    MQTTClient_willOptions will;
    uint8_t *will_buf = NULL;
    size_t will_cap = 0;
    int rc = client_seal_will(c, options, &copy, &will, &will_buf, &will_cap);
    if (rc != MQE2E_OK) {
        mqe2e__will_free(will_buf, will_cap);
        return client_map_error(rc);
    }
    rc = MQTTClient_connect(c->paho, will_buf != NULL ? &copy : options);
    mqe2e__will_free(will_buf, will_cap);
    client_nodelay(c, options, rc == MQTTCLIENT_SUCCESS);
    if (rc == MQTTCLIENT_SUCCESS && mqe2e__ctl_has_control(c->f.ctl)) {
        /* Pull on (re)connect: keys rotated while offline arrive now. */
        (void)mqe2e__ctl_connected(c->f.ctl);
        client_wait_fresh(c, options);
    }
    return rc;
}

int mqe2e_MQTTClient_waitForAuthority(mqe2e_MQTTClient handle, unsigned long timeout_ms)
{
    struct mqe2e_client *c = handle;
    if (c == NULL) return MQTTCLIENT_FAILURE;
    if (!mqe2e__ctl_has_control(c->f.ctl)) return MQTTCLIENT_SUCCESS;
    int rc = mqe2e__ctl_wait_fresh(c->f.ctl, timeout_ms);
    return rc == MQE2E_OK ? MQTTCLIENT_SUCCESS : client_map_error(rc);
}

/*
 * Channel envelopes and handshake frames go out through the control worker:
 * let it hand them to Paho before the connection goes, within the caller's
 * timeout. Returns what is left of that timeout for Paho's own disconnect.
 */
static int client_flush(struct mqe2e_client *c, int timeout)
{
    uint64_t start;
    uint64_t spent;
    int rc;

    if (!mqe2e__ctl_has_control(c->f.ctl) || timeout <= 0) {
        return timeout;
    }
    start = mqe2e__plugin_monotonic_ms();
    rc = mqe2e__ctl_flush(c->f.ctl, (uint64_t)timeout, 1);
    if (rc == MQE2E_ERR_STATE) {
        mqe2e__front_log(&c->f, MQE2E_LOG_WARNING,
                         "disconnect: control frames still queued after %d ms", timeout);
    }
    spent = mqe2e__plugin_monotonic_ms() - start;
    return spent >= (uint64_t)timeout ? 0 : timeout - (int)spent;
}

int mqe2e_MQTTClient_disconnect(mqe2e_MQTTClient handle, int timeout)
{
    struct mqe2e_client *c = handle;
    int rc;
    int crc;

    if (c == NULL) {
        return MQTTCLIENT_FAILURE;
    }
    timeout = client_flush(c, timeout);
    /* Disconnect first so the checkpoint covers everything delivered. */
    rc = MQTTClient_disconnect(c->paho, timeout);
    crc = mqe2e__front_checkpoint(&c->f);
    if (rc == MQTTCLIENT_SUCCESS && crc != MQE2E_OK) {
        rc = MQE2E_MQTTCLIENT_ERR(crc);
    }
    return rc;
}

int mqe2e_MQTTClient_isConnected(mqe2e_MQTTClient handle)
{
    if (handle == NULL) {
        return 0;
    }
    return MQTTClient_isConnected(handle->paho);
}

int mqe2e_MQTTClient_subscribe(mqe2e_MQTTClient handle, const char *topic, int qos)
{
    if (handle == NULL) {
        return MQTTCLIENT_FAILURE;
    }
    if (handle->f.protector == NULL) {
        return MQE2E_MQTTCLIENT_NOT_CONFIGURED;
    }
    return MQTTClient_subscribe(handle->paho, topic, qos);
}

int mqe2e_MQTTClient_subscribeMany(mqe2e_MQTTClient handle, int count, char *const *topic, int *qos)
{
    if (handle == NULL) {
        return MQTTCLIENT_FAILURE;
    }
    if (handle->f.protector == NULL) {
        return MQE2E_MQTTCLIENT_NOT_CONFIGURED;
    }
    return MQTTClient_subscribeMany(handle->paho, count, topic, qos);
}

int mqe2e_MQTTClient_unsubscribe(mqe2e_MQTTClient handle, const char *topic)
{
    if (handle == NULL) {
        return MQTTCLIENT_FAILURE;
    }
    return MQTTClient_unsubscribe(handle->paho, topic);
}

int mqe2e_MQTTClient_unsubscribeMany(mqe2e_MQTTClient handle, int count, char *const *topic)
{
    if (handle == NULL) {
        return MQTTCLIENT_FAILURE;
    }
    return MQTTClient_unsubscribeMany(handle->paho, count, topic);
}

/*
 * Protect @p msg's payload for @p topic and publish a copy of @p msg carrying
 * the envelope. The envelope buffer is wiped too: on a plaintext topic it
 * holds the application's payload.
 */
static int client_publish(struct mqe2e_client *c, const char *topic, const MQTTClient_message *msg,
                          MQTTClient_deliveryToken *dt, MQTTResponse *resp)
{
    MQTTClient_message out_msg;
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
    if (rc != MQTTCLIENT_SUCCESS) {
        return rc;
    }
    /* Only the v5 calls send properties: those are what a rule can bind. */
    rc = mqe2e__ctl_publish(c->f.ctl, topic, pt, pt_len, msg->qos, msg->retained,
                            resp != NULL && msg->struct_version >= 1 ? &msg->properties : NULL, buf,
                            cap, &out_len);
    if (rc == MQE2E_SESSION_QUEUED) {
        /* A channel topic: sent by the worker (after the handshake if needed), no token. */
        if (dt != NULL) *dt = 0;
        rc = MQTTCLIENT_SUCCESS;
        goto out;
    }
    if (rc != MQE2E_OK) {
        if (rc == MQE2E_ERR_NO_POLICY) {
            mqe2e__front_log(&c->f, MQE2E_LOG_WARNING, "refused to publish on '%s': no policy",
                             topic);
        } else {
            mqe2e__front_log(&c->f, MQE2E_LOG_WARNING, "refused to publish on '%s': %s", topic,
                             mqe2e_error_name(rc));
        }
        rc = client_map_error(rc);
        goto out;
    }
    out_msg = *msg;
    out_msg.payload = buf;
    out_msg.payloadlen = (int)out_len;
    if (resp != NULL) {
        /* v5: the message's properties go to Paho unchanged (in clear). */
        *resp = MQTTClient_publishMessage5(c->paho, topic, &out_msg, dt);
        rc = (int)resp->reasonCode;
    } else {
        /* What publishMessage does for a v3 client, without its extra layers
         * of Paho's call tracing (~1,000 instructions per message). */
        rc = MQTTClient_publish(c->paho, topic, out_msg.payloadlen, buf, out_msg.qos,
                                out_msg.retained, dt);
    }
    sodium_memzero(&out_msg, sizeof out_msg);
out:
    sodium_memzero(buf, cap > 0 ? cap : 1U);
    if (buf != stack_buf) free(buf);
    return rc;
}

int mqe2e_MQTTClient_publish(mqe2e_MQTTClient handle, const char *topicName, int payloadlen,
                             const void *payload, int qos, int retained,
                             MQTTClient_deliveryToken *dt)
{
    MQTTClient_message msg = MQTTClient_message_initializer;

    msg.payload = (void *)(uintptr_t)payload; /* only read: client_publish takes it as const */
    msg.payloadlen = payloadlen;
    msg.qos = qos;
    msg.retained = retained;
    return client_publish(handle, topicName, &msg, dt, NULL);
}

int mqe2e_MQTTClient_publishMessage(mqe2e_MQTTClient handle, const char *topicName,
                                    MQTTClient_message *msg, MQTTClient_deliveryToken *dt)
{
    return client_publish(handle, topicName, msg, dt, NULL);
}

/* A response carrying only a return code (the v5 calls' failures before Paho). */
static MQTTResponse client_response(int rc)
{
    MQTTResponse r = MQTTResponse_initializer;
    r.reasonCode = (enum MQTTReasonCodes)rc;
    return r;
}

MQTTResponse mqe2e_MQTTClient_publish5(mqe2e_MQTTClient handle, const char *topicName,
                                       int payloadlen, const void *payload, int qos, int retained,
                                       MQTTProperties *properties, MQTTClient_deliveryToken *dt)
{
    MQTTClient_message msg = MQTTClient_message_initializer;
    MQTTResponse r = MQTTResponse_initializer;
    int rc;

    msg.payload = (void *)(uintptr_t)payload; /* only read */
    msg.payloadlen = payloadlen;
    msg.qos = qos;
    msg.retained = retained;
    if (properties != NULL) {
        msg.properties = *properties; /* borrowed: Paho only reads it */
    }
    rc = client_publish(handle, topicName, &msg, dt, &r);
    if (rc != (int)r.reasonCode) {
        /* Refused before Paho was called. */
        MQTTResponse_free(r);
        return client_response(rc);
    }
    return r;
}

MQTTResponse mqe2e_MQTTClient_publishMessage5(mqe2e_MQTTClient handle, const char *topicName,
                                              MQTTClient_message *msg, MQTTClient_deliveryToken *dt)
{
    MQTTResponse r = MQTTResponse_initializer;
    int rc = client_publish(handle, topicName, msg, dt, &r);

    if (rc != (int)r.reasonCode) {
        MQTTResponse_free(r);
        return client_response(rc);
    }
    return r;
}

MQTTResponse mqe2e_MQTTClient_connect5(mqe2e_MQTTClient handle, MQTTClient_connectOptions *options,
                                       MQTTProperties *connectProperties,
                                       MQTTProperties *willProperties)
{
    struct mqe2e_client *c = handle;
    MQTTResponse r;

    if (c == NULL) {
        return client_response(MQTTCLIENT_FAILURE);
    }
    if (c->f.protector == NULL) {
        return client_response(MQE2E_MQTTCLIENT_NOT_CONFIGURED);
    }
    MQTTClient_connectOptions copy;
    MQTTClient_willOptions will;
    uint8_t *will_buf = NULL;
    size_t will_cap = 0;
    int rc = client_seal_will(c, options, &copy, &will, &will_buf, &will_cap);
    if (rc != MQE2E_OK) {
        mqe2e__will_free(will_buf, will_cap);
        return client_response(client_map_error(rc));
    }
    r = MQTTClient_connect5(c->paho, will_buf != NULL ? &copy : options, connectProperties,
                            willProperties);
    mqe2e__will_free(will_buf, will_cap);
    client_nodelay(c, options, r.reasonCode == MQTTREASONCODE_SUCCESS);
    if (r.reasonCode == MQTTREASONCODE_SUCCESS && mqe2e__ctl_has_control(c->f.ctl)) {
        (void)mqe2e__ctl_connected(c->f.ctl);
        client_wait_fresh(c, options);
    }
    return r;
}

int mqe2e_MQTTClient_disconnect5(mqe2e_MQTTClient handle, int timeout, enum MQTTReasonCodes reason,
                                 MQTTProperties *props)
{
    struct mqe2e_client *c = handle;
    int rc;
    int crc;

    if (c == NULL) {
        return MQTTCLIENT_FAILURE;
    }
    timeout = client_flush(c, timeout);
    rc = MQTTClient_disconnect5(c->paho, timeout, reason, props);
    crc = mqe2e__front_checkpoint(&c->f);
    if (rc == MQTTCLIENT_SUCCESS && crc != MQE2E_OK) {
        rc = MQE2E_MQTTCLIENT_ERR(crc);
    }
    return rc;
}

MQTTResponse mqe2e_MQTTClient_subscribe5(mqe2e_MQTTClient handle, const char *topic, int qos,
                                         MQTTSubscribe_options *opts, MQTTProperties *props)
{
    if (handle == NULL) {
        return client_response(MQTTCLIENT_FAILURE);
    }
    if (handle->f.protector == NULL) {
        return client_response(MQE2E_MQTTCLIENT_NOT_CONFIGURED);
    }
    return MQTTClient_subscribe5(handle->paho, topic, qos, opts, props);
}

MQTTResponse mqe2e_MQTTClient_subscribeMany5(mqe2e_MQTTClient handle, int count, char *const *topic,
                                             int *qos, MQTTSubscribe_options *opts,
                                             MQTTProperties *props)
{
    if (handle == NULL) {
        return client_response(MQTTCLIENT_FAILURE);
    }
    if (handle->f.protector == NULL) {
        return client_response(MQE2E_MQTTCLIENT_NOT_CONFIGURED);
    }
    return MQTTClient_subscribeMany5(handle->paho, count, topic, qos, opts, props);
}

MQTTResponse mqe2e_MQTTClient_unsubscribe5(mqe2e_MQTTClient handle, const char *topic,
                                           MQTTProperties *props)
{
    if (handle == NULL) {
        return client_response(MQTTCLIENT_FAILURE);
    }
    return MQTTClient_unsubscribe5(handle->paho, topic, props);
}

MQTTResponse mqe2e_MQTTClient_unsubscribeMany5(mqe2e_MQTTClient handle, int count,
                                               char *const *topic, MQTTProperties *props)
{
    if (handle == NULL) {
        return client_response(MQTTCLIENT_FAILURE);
    }
    return MQTTClient_unsubscribeMany5(handle->paho, count, topic, props);
}

int mqe2e_MQTTClient_waitForCompletion(mqe2e_MQTTClient handle, MQTTClient_deliveryToken dt,
                                       unsigned long timeout)
{
    if (handle == NULL) {
        return MQTTCLIENT_FAILURE;
    }
    return MQTTClient_waitForCompletion(handle->paho, dt, timeout);
}

/* receive()'s consumer: the opened message goes back to the caller. */
typedef struct client_taken {
    MQTTClient_message *msg;
    char *topic;
} client_taken;

static int client_take(void *ctx, void *msg, char *topic)
{
    client_taken *t = ctx;
    if (t->msg != NULL) return 0; /* one per call (cannot happen: nothing is held here) */
    t->msg = msg;
    t->topic = topic;
    return 1;
}

int mqe2e_MQTTClient_receive(mqe2e_MQTTClient handle, char **topicName, int *topicLen,
                             MQTTClient_message **message, unsigned long timeout)
{
    struct mqe2e_client *c = handle;
    uint64_t deadline;
    uint64_t now;

    if (c == NULL) {
        return MQTTCLIENT_FAILURE;
    }
    if (topicName == NULL || topicLen == NULL || message == NULL) {
        return MQTTCLIENT_NULL_PARAMETER;
    }
    *topicName = NULL;
    *topicLen = 0;
    *message = NULL;
    if (c->f.protector == NULL) {
        return MQE2E_MQTTCLIENT_NOT_CONFIGURED;
    }
    deadline = mqe2e__plugin_monotonic_ms() + timeout;
    for (;;) {
        MQTTClient_message *in = NULL;
        char *in_topic = NULL;
        int in_topic_len = 0;
        client_taken taken = {NULL, NULL};
        int rc;

        now = mqe2e__plugin_monotonic_ms();
        rc = MQTTClient_receive(c->paho, &in_topic, &in_topic_len, &in,
                                deadline > now ? (unsigned long)(deadline - now) : 0UL);
        if (rc != MQTTCLIENT_SUCCESS && rc != MQTTCLIENT_TOPICNAME_TRUNCATED) {
            return rc;
        }
        if (in == NULL) {
            if (in_topic != NULL) {
                MQTTClient_free(in_topic);
            }
            if (mqe2e__plugin_monotonic_ms() >= deadline) {
                return MQTTCLIENT_SUCCESS;
            }
            continue;
        }
        /* Paho's receive gives the full length; a NUL inside makes it differ
         * from strlen. Nothing is held: no callback could take it later. */
        (void)mqe2e__ctl_receive(
            c->f.ctl, in_topic, in_topic_len, in->payload, in->payloadlen, in->qos, in->retained,
            in->dup, MQE2E_SESSION_NO_HOLD | MQE2E__CTL_RX_CALLER_THREAD,
            in->struct_version >= 1 ? &in->properties : NULL, in, client_take, &taken);
        MQTTClient_freeMessage(&in);
        MQTTClient_free(in_topic);
        if (taken.msg != NULL) {
            *topicName = taken.topic;
            *topicLen = (int)strlen(taken.topic);
            *message = taken.msg;
            return MQTTCLIENT_SUCCESS;
        }
        if (mqe2e__plugin_monotonic_ms() >= deadline) {
            return MQTTCLIENT_SUCCESS;
        }
    }
}

void mqe2e_MQTTClient_yield(void)
{
    MQTTClient_yield();
}

void mqe2e_MQTTClient_freeMessage(MQTTClient_message **msg)
{
    if (msg == NULL || *msg == NULL) {
        return;
    }
    client_message_wipe_free(*msg);
    *msg = NULL;
}

void mqe2e_MQTTClient_free(void *ptr)
{
    free(ptr);
}

void mqe2e_MQTTClient_destroy(mqe2e_MQTTClient *handle)
{
    struct mqe2e_client *c;

    if (handle == NULL || *handle == NULL) {
        return;
    }
    c = *handle;
    /* The control worker uses the Paho handle: it stops first. */
    mqe2e__ctl_stop(c->f.ctl);
    MQTTClient_destroy(&c->paho);
    mqe2e__front_release(&c->f);
    sodium_memzero(c, sizeof *c);
    free(c);
    *handle = NULL;
}

int mqe2e_MQTTClient_getCounters(mqe2e_MQTTClient handle, mqe2e_counters *out)
{
    return mqe2e__front_counters(handle == NULL ? NULL : &handle->f, out);
}

int mqe2e_MQTTClient_getControlCounters(mqe2e_MQTTClient handle, mqe2e_control_counters *out)
{
    return mqe2e__front_control_counters(handle == NULL ? NULL : &handle->f, out);
}

int mqe2e_MQTTClient_clearRetained(mqe2e_MQTTClient handle, const char *topicName, int qos,
                                   MQTTClient_deliveryToken *dt)
{
    struct mqe2e_client *c = handle;

    if (c == NULL) {
        return MQTTCLIENT_FAILURE;
    }
    int rc = mqe2e__front_clear_check(&c->f, topicName);
    if (rc != MQTTCLIENT_SUCCESS) {
        return rc;
    }
    /* No data leaves: an empty retained publish is the broker's delete. */
    if (c->mqtt5) {
        MQTTResponse r = MQTTClient_publish5(c->paho, topicName, 0, client_empty, qos, 1, NULL, dt);
        rc = (int)r.reasonCode;
        MQTTResponse_free(r);
        return rc == MQTTREASONCODE_NO_MATCHING_SUBSCRIBERS ? MQTTCLIENT_SUCCESS : rc;
    }
    return MQTTClient_publish(c->paho, topicName, 0, client_empty, qos, 1, dt);
}

/* ---- Paho calls with nothing to encrypt: forwarded ---- */

void mqe2e_MQTTClient_global_init(MQTTClient_init_options *inits)
{
    MQTTClient_global_init(inits);
}

int mqe2e_MQTTClient_setDisconnected(mqe2e_MQTTClient handle, void *context,
                                     MQTTClient_disconnected *co)
{
    if (handle == NULL) {
        return MQTTCLIENT_FAILURE;
    }
    return MQTTClient_setDisconnected(handle->paho, context, co);
}

int mqe2e_MQTTClient_setPublished(mqe2e_MQTTClient handle, void *context, MQTTClient_published *co)
{
    if (handle == NULL) {
        return MQTTCLIENT_FAILURE;
    }
    return MQTTClient_setPublished(handle->paho, context, co);
}

MQTTClient_nameValue *mqe2e_MQTTClient_getVersionInfo(void)
{
    return MQTTClient_getVersionInfo();
}

void mqe2e_MQTTResponse_free(MQTTResponse response)
{
    MQTTResponse_free(response);
}

int mqe2e_MQTTClient_getPendingDeliveryTokens(mqe2e_MQTTClient handle,
                                              MQTTClient_deliveryToken **tokens)
{
    if (handle == NULL) {
        return MQTTCLIENT_FAILURE;
    }
    return MQTTClient_getPendingDeliveryTokens(handle->paho, tokens);
}

void mqe2e_MQTTClient_setTraceLevel(enum MQTTCLIENT_TRACE_LEVELS level)
{
    MQTTClient_setTraceLevel(level);
}

void mqe2e_MQTTClient_setTraceCallback(MQTTClient_traceCallback *callback)
{
    MQTTClient_setTraceCallback(callback);
}

int mqe2e_MQTTClient_setCommandTimeout(mqe2e_MQTTClient handle, unsigned long milliSeconds)
{
    if (handle == NULL) {
        return MQTTCLIENT_FAILURE;
    }
    return MQTTClient_setCommandTimeout(handle->paho, milliSeconds);
}
