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
    mqe2e__nodelay nodelay; /* TCP_NODELAY after each connect (tcp_nodelay.c) */
    /* Serialises every protector and keystore call. */
    pthread_mutex_t lock;
    /* Held while one of our Paho callbacks runs, so destroy can wait for it. */
    pthread_mutex_t cb_lock;
    mqe2e_keystore *keystore;
    mqe2e_protector *protector;
    mqe2e_policy *owned_policy;
    mqe2e_MQTTClient_dropped *on_dropped;
    mqe2e_MQTTClient_log *on_log;
    mqe2e_log_level log_level;
    void *sec_context;
    void *app_context;
    MQTTClient_connectionLost *app_cl;
    MQTTClient_messageArrived *app_ma;
    MQTTClient_deliveryComplete *app_dc;
    /* Control plane; NULL when the keystore holds no authority pin. */
    mqe2e__ctl *ctl;
    /* Created for MQTT v5: Paho then only accepts its *5 calls. */
    int mqtt5;
    /* setSecurity opened the keystore (keystorePath): destroy closes it. */
    int owns_keystore;
};

/* Handed to the core for empty payloads, which Paho may give as NULL. */
static const uint8_t client_empty[1] = {0};

__attribute__((format(printf, 3, 4))) static void
client_log(const struct mqe2e_client *c, mqe2e_log_level level, const char *fmt, ...)
{
    char line[512];
    va_list ap;

    if (c->on_log == NULL || level > c->log_level) {
        return;
    }
    va_start(ap, fmt);
    /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): va_start is just above */
    (void)vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    c->on_log(c->sec_context, level, line);
}

static int client_map_error(int code)
{
    return code == MQE2E_OK ? MQTTCLIENT_SUCCESS : MQE2E_MQTTCLIENT_ERR(code);
}

static void client_count_drop(struct mqe2e_client *c, int code)
{
    if (c->protector == NULL) {
        return;
    }
    (void)pthread_mutex_lock(&c->lock);
    mqe2e_protector_count_drop(c->protector, code);
    (void)pthread_mutex_unlock(&c->lock);
}

/* Tell the application a message was dropped: topic and reason only. */
static void client_report_drop(struct mqe2e_client *c, const char *topic, int code)
{
    const char *shown = topic != NULL ? topic : "";

    client_log(c, MQE2E_LOG_WARNING, "dropped message on '%s': %s", shown, mqe2e_error_name(code));
    if (c->on_dropped != NULL) {
        c->on_dropped(c->sec_context, shown, code);
    }
}

/* Wipe the decrypted payload of one of our messages, then free the block. */
static void client_message_wipe_free(MQTTClient_message *m)
{
    if (m == NULL) {
        return;
    }
    if (m->payload != NULL && m->payloadlen > 0) {
        sodium_memzero(m->payload, (size_t)m->payloadlen);
    }
    /* Paho's call costs as much as the rest of this function even when there
     * is nothing to free (v3 messages, v5 ones without properties). */
    if (m->properties.array != NULL) {
        MQTTProperties_free(&m->properties);
    }
    sodium_memzero(m, sizeof *m);
    free(m);
}

/*
 * Authenticate and decrypt one message handed over by Paho.
 * On success *out_msg (struct and payload in one block, wiped by
 * mqe2e_MQTTClient_freeMessage) and *out_topic are new, and *receipt must be
 * committed once the application accepted the message. Paho's message is
 * left untouched in every case.
 */
static int client_open(struct mqe2e_client *c, const char *topic, int topic_len,
                       const MQTTClient_message *in, MQTTClient_message **out_msg, char **out_topic,
                       mqe2e_receipt *receipt)
{
    MQTTClient_message init = MQTTClient_message_initializer;
    MQTTClient_message *m = NULL;
    char *t = NULL;
    const uint8_t *src;
    size_t in_len;
    size_t pt_len = 0;
    size_t topic_bytes;
    int rc;

    *out_msg = NULL;
    *out_topic = NULL;
    if (c->protector == NULL) {
        return MQE2E_ERR_STATE;
    }
    if (topic == NULL || in == NULL || in->payloadlen < 0 ||
        (in->payload == NULL && in->payloadlen > 0)) {
        rc = MQE2E_ERR_DECODE;
        goto count;
    }
    topic_bytes = strlen(topic);
    /* MQTT forbids NUL in topic names; such a topic can match no policy. */
    if (topic_len > 0 && (size_t)topic_len != topic_bytes) {
        rc = MQE2E_ERR_DECODE;
        goto count;
    }
    in_len = (size_t)in->payloadlen;
    src = in_len > 0 ? (const uint8_t *)in->payload : client_empty;

    /* The plaintext is never longer than what arrived. */
    m = malloc(sizeof *m + in_len);
    t = malloc(topic_bytes + 1U);
    if (m == NULL || t == NULL) {
        rc = MQE2E_ERR_NOMEM;
        goto count;
    }
    memcpy(t, topic, topic_bytes + 1U);
    *m = init;
    m->payload = (uint8_t *)(m + 1);

    (void)pthread_mutex_lock(&c->lock);
    rc = mqe2e_unprotect_begin(c->protector, topic, src, in_len, mqe2e__plugin_now(),
                               (uint8_t *)m->payload, in_len, &pt_len, receipt);
    (void)pthread_mutex_unlock(&c->lock);
    if (rc != MQE2E_OK) {
        /* The core counted it already. */
        goto fail;
    }
    if (pt_len > (size_t)INT_MAX) {
        rc = MQE2E_ERR_TOO_LARGE;
        goto count;
    }
    memcpy(m->struct_id, in->struct_id, sizeof m->struct_id);
    m->struct_version = in->struct_version;
    m->payloadlen = (int)pt_len;
    m->qos = in->qos;
    m->retained = in->retained;
    m->dup = in->dup;
    m->msgid = in->msgid;
    /* MQTT v5 properties travel outside the envelope: handed on as they came
     * (none is the initializer's empty set, without Paho's copy call). */
    if (in->struct_version >= 1 && in->properties.count > 0) {
        m->properties = MQTTProperties_copy(&in->properties);
    }
    *out_msg = m;
    *out_topic = t;
    return MQE2E_OK;

count:
    client_count_drop(c, rc);
fail:
    if (m != NULL) {
        /* m->payload may not be set yet: wipe the whole block. */
        sodium_memzero(m, sizeof *m +
                              (in != NULL && in->payloadlen > 0 ? (size_t)in->payloadlen : 0U));
        free(m);
    }
    free(t);
    return rc;
}

/* Record an accepted message; a replay here means it raced a duplicate. */
static void client_commit(struct mqe2e_client *c, const mqe2e_receipt *receipt, const char *topic)
{
    int rc;

    (void)pthread_mutex_lock(&c->lock);
    rc = mqe2e_unprotect_commit(c->protector, receipt);
    (void)pthread_mutex_unlock(&c->lock);
    if (rc == MQE2E_ERR_REPLAY) {
        client_log(c, MQE2E_LOG_DEBUG, "duplicate accepted twice on '%s'", topic);
    } else if (rc != MQE2E_OK) {
        client_log(c, MQE2E_LOG_ERROR, "recording message on '%s' failed: %s", topic,
                   mqe2e_error_name(rc));
    }
}

/* A message of ours carrying already-opened channel plaintext (wiped by freeMessage). */
static int client_wrap(const MQTTClient_message *in, const char *topic, const uint8_t *pt,
                       size_t pt_len, MQTTClient_message **out_msg, char **out_topic)
{
    MQTTClient_message init = MQTTClient_message_initializer;
    MQTTClient_message *m;
    size_t tlen = strlen(topic);

    *out_msg = NULL;
    *out_topic = NULL;
    if (pt_len > (size_t)INT_MAX) return MQE2E_ERR_TOO_LARGE;
    m = malloc(sizeof *m + (pt_len > 0 ? pt_len : 1U));
    *out_topic = malloc(tlen + 1U);
    if (m == NULL || *out_topic == NULL) {
        free(m);
        free(*out_topic);
        *out_topic = NULL;
        return MQE2E_ERR_NOMEM;
    }
    memcpy(*out_topic, topic, tlen + 1U);
    *m = init;
    m->payload = (uint8_t *)(m + 1);
    if (pt_len > 0) memcpy(m->payload, pt, pt_len);
    m->payloadlen = (int)pt_len;
    m->qos = in->qos;
    m->retained = in->retained;
    m->dup = in->dup;
    m->msgid = in->msgid;
    *out_msg = m;
    return MQE2E_OK;
}

static uint32_t client_tag(const MQTTClient_message *m)
{
    return (uint32_t)(m->qos & 3) | (m->retained ? MQE2E__TAG_RETAINED : 0U) |
           (m->dup ? MQE2E__TAG_DUP : 0U);
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

static int client_ctl_is_connected(void *ctx)
{
    struct mqe2e_client *c = ctx;
    return MQTTClient_isConnected(c->paho);
}

/* Control plane: count and report a drop it decided. */
static void client_ctl_dropped(void *ctx, const char *topic, int code)
{
    struct mqe2e_client *c = ctx;
    client_count_drop(c, code);
    client_report_drop(c, topic, code);
}

static int client_ctl_log_wants(void *ctx, int level)
{
    const struct mqe2e_client *c = ctx;
    return c->on_log != NULL && (mqe2e_log_level)level <= c->log_level;
}

static void client_ctl_log(void *ctx, int level, const char *msg)
{
    client_log(ctx, (mqe2e_log_level)level, "%s", msg);
}

/* Control plane: a held message whose key arrived goes through the normal
 * path (authentication, replay window) to the application. cb_lock is held. */
static int client_ctl_deliver(void *ctx, const char *topic, const uint8_t *data, size_t len,
                              uint32_t tag)
{
    struct mqe2e_client *c = ctx;
    MQTTClient_message in = MQTTClient_message_initializer;
    MQTTClient_message *mine = NULL;
    char *t = NULL;
    mqe2e_receipt receipt;
    int rc;

    if (c->app_ma == NULL || len > (size_t)INT_MAX) return 0;
    in.payload = (void *)(uintptr_t)data; /* only read */
    in.payloadlen = (int)len;
    in.qos = MQE2E__TAG_QOS(tag);
    in.retained = (tag & MQE2E__TAG_RETAINED) != 0;
    in.dup = (tag & MQE2E__TAG_DUP) != 0;
    memset(&receipt, 0, sizeof receipt);
    rc = client_open(c, topic, 0, &in, &mine, &t, &receipt);
    if (rc != MQE2E_OK) {
        client_report_drop(c, topic, rc);
        return 0;
    }
    if (c->app_ma(c->app_context, t, 0, mine)) {
        client_commit(c, &receipt, topic);
        rc = 1;
    } else {
        /* Nothing can redeliver a held message: it is dropped, unrecorded. */
        client_log(c, MQE2E_LOG_WARNING, "application refused a released message on '%s'", topic);
        client_message_wipe_free(mine);
        free(t);
        rc = 0;
    }
    sodium_memzero(&receipt, sizeof receipt);
    return rc;
}

/* Give a control-plane verdict on a received message: ROUTE_* result. On
 * ROUTE_PLAINTEXT, *out_msg and *out_topic are the application's message. */
static int client_route(struct mqe2e_client *c, const char *topic, const MQTTClient_message *in,
                        int can_hold, MQTTClient_message **out_msg, char **out_topic)
{
    uint8_t *pt = NULL;
    size_t pt_len = 0;
    int r;

    *out_msg = NULL;
    *out_topic = NULL;
    if (c->ctl == NULL || topic == NULL || in == NULL || in->payloadlen < 0 ||
        (in->payload == NULL && in->payloadlen > 0))
        return MQE2E__ROUTE_PASS;
    r = mqe2e__ctl_route(c->ctl, topic,
                         in->payloadlen > 0 ? (const uint8_t *)in->payload : client_empty,
                         (size_t)in->payloadlen, client_tag(in), can_hold, &pt, &pt_len);
    if (r != MQE2E__ROUTE_PLAINTEXT) return r;
    int rc = client_wrap(in, topic, pt, pt_len, out_msg, out_topic);
    sodium_memzero(pt, pt_len > 0 ? pt_len : 1U);
    free(pt);
    if (rc != MQE2E_OK) {
        client_ctl_dropped(c, topic, rc);
        return MQE2E__ROUTE_CONSUMED;
    }
    return MQE2E__ROUTE_PLAINTEXT;
}

static int client_message_arrived(void *context, char *topicName, int topicLen,
                                  MQTTClient_message *message)
{
    struct mqe2e_client *c = context;
    MQTTClient_message *mine = NULL;
    char *topic = NULL;
    mqe2e_receipt receipt;
    int rc;
    int accepted;

    memset(&receipt, 0, sizeof receipt);
    (void)pthread_mutex_lock(&c->cb_lock);
    if (c->ctl != NULL && c->app_ma != NULL &&
        (topicLen <= 0 || (size_t)topicLen == strlen(topicName))) {
        /* Control frames and held messages never reach the application. */
        int r = client_route(c, topicName, message, 1, &mine, &topic);
        if (r == MQE2E__ROUTE_CONSUMED) {
            MQTTClient_freeMessage(&message);
            MQTTClient_free(topicName);
            (void)pthread_mutex_unlock(&c->cb_lock);
            return 1;
        }
        if (r == MQE2E__ROUTE_PLAINTEXT) {
            /* Channel envelopes are recorded when opened: a refusal here is final. */
            if (!c->app_ma(c->app_context, topic, 0, mine)) {
                client_message_wipe_free(mine);
                free(topic);
            }
            MQTTClient_freeMessage(&message);
            MQTTClient_free(topicName);
            (void)pthread_mutex_unlock(&c->cb_lock);
            return 1;
        }
    }
    /* Registered only when the application gave messageArrived; checked anyway. */
    rc = c->app_ma != NULL ? client_open(c, topicName, topicLen, message, &mine, &topic, &receipt)
                           : MQE2E_ERR_STATE;
    if (rc != MQE2E_OK) {
        client_report_drop(c, topicName, rc);
        MQTTClient_freeMessage(&message);
        MQTTClient_free(topicName);
        (void)pthread_mutex_unlock(&c->cb_lock);
        return 1;
    }
    /* Our copy never holds a NUL inside the topic, so strlen() is exact. */
    accepted = c->app_ma(c->app_context, topic, 0, mine);
    if (accepted) {
        /* The application owns mine and topic now. */
        client_commit(c, &receipt, topicName);
        MQTTClient_freeMessage(&message);
        MQTTClient_free(topicName);
        rc = 1;
    } else {
        client_log(c, MQE2E_LOG_DEBUG, "application asked for redelivery on '%s'", topicName);
        client_message_wipe_free(mine);
        free(topic);
        rc = 0;
    }
    sodium_memzero(&receipt, sizeof receipt);
    (void)pthread_mutex_unlock(&c->cb_lock);
    return rc;
}

static void client_connection_lost(void *context, char *cause)
{
    struct mqe2e_client *c = context;

    (void)pthread_mutex_lock(&c->cb_lock);
    client_log(c, MQE2E_LOG_INFO, "connection lost");
    if (c->app_cl != NULL) {
        c->app_cl(c->app_context, cause);
    }
    (void)pthread_mutex_unlock(&c->cb_lock);
}

static void client_delivery_complete(void *context, MQTTClient_deliveryToken dt)
{
    struct mqe2e_client *c = context;

    (void)pthread_mutex_lock(&c->cb_lock);
    if (c->app_dc != NULL) {
        c->app_dc(c->app_context, dt);
    }
    (void)pthread_mutex_unlock(&c->cb_lock);
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
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        return MQTTCLIENT_FAILURE;
    }
    if (pthread_mutex_init(&c->cb_lock, NULL) != 0) {
        (void)pthread_mutex_destroy(&c->lock);
        free(c);
        return MQTTCLIENT_FAILURE;
    }
    c->log_level = MQE2E_LOG_WARNING;
    c->mqtt5 = options != NULL && options->MQTTVersion >= MQTTVERSION_5;
    if (mqe2e__nodelay_init(&c->nodelay, serverURI) != 0) {
        (void)pthread_mutex_destroy(&c->cb_lock);
        (void)pthread_mutex_destroy(&c->lock);
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
        mqe2e__nodelay_free(&c->nodelay);
        (void)pthread_mutex_destroy(&c->cb_lock);
        (void)pthread_mutex_destroy(&c->lock);
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
    mqe2e_policy *owned = NULL;
    const mqe2e_policy *policy;
    mqe2e_protector *p = NULL;
    int rc;

    mqe2e_keystore *ks;

    if (c == NULL || options == NULL) {
        return MQTTCLIENT_NULL_PARAMETER;
    }
    if (memcmp(options->struct_id, "MQES", 4) != 0 || options->struct_version < 0 ||
        options->struct_version > 3) {
        return MQTTCLIENT_BAD_STRUCTURE;
    }
    if (options->keystore == NULL &&
        (options->struct_version < 2 || options->keystorePath == NULL)) {
        return MQTTCLIENT_NULL_PARAMETER;
    }
    if (c->protector != NULL) {
        return MQE2E_MQTTCLIENT_ERR(MQE2E_ERR_STATE);
    }
    ks = options->keystore;
    if (ks == NULL) {
        rc = mqe2e__keystore_open_path(&ks, options->keystorePath,
                                       options->passphraseEnv, options->passphraseFile);
        if (rc != MQE2E_OK) {
            return client_map_error(rc);
        }
    }
    (void)pthread_mutex_lock(&c->lock);
    rc = mqe2e__protector_for(options->policy, ks, options->protector, &p, &owned, &policy);
    if (rc != MQE2E_OK) {
        if (options->keystore == NULL) {
            mqe2e_keystore_close(ks);
        }
        goto out;
    }
    c->keystore = ks;
    c->owns_keystore = options->keystore == NULL;
    c->owned_policy = owned;
    c->on_dropped = options->onDropped;
    c->on_log = options->onLog;
    c->log_level = options->logLevel;
    c->sec_context = options->context;
    c->protector = p;
    owned = NULL;
out:
    (void)pthread_mutex_unlock(&c->lock);
    mqe2e_policy_free(owned);
    if (rc == MQE2E_OK) {
        mqe2e__ctl_host host;
        memset(&host, 0, sizeof host);
        host.publish = client_ctl_publish;
        host.subscribe = client_ctl_subscribe;
        host.is_connected = client_ctl_is_connected;
        host.strerror = MQTTClient_strerror;
        host.lock = &c->lock;
        host.cb_lock = &c->cb_lock;
        host.keystore = c->keystore;
        host.protector = c->protector;
        host.policy = policy;
        host.owned_policy = c->owned_policy;
        mqe2e__ctl_host_set_hold(&host, options->struct_version, options->holdMaxCount,
                                 options->holdMaxBytes, options->holdMaxSeconds);
        mqe2e__ctl_host_set_fresh(&host, options->struct_version,
                                  options->struct_version >= 3 ? options->freshMaxSeconds : 0U);
        host.ctx = c;
        host.log = client_ctl_log;
        host.log_wants = client_ctl_log_wants;
        host.dropped = client_ctl_dropped;
        host.deliver = client_ctl_deliver;
        int crc = mqe2e__ctl_new(&c->ctl, &host);
        if (crc == MQE2E_OK) {
            client_log(c, MQE2E_LOG_INFO, "control plane enabled");
        } else if (crc != MQE2E_ERR_NOT_FOUND) {
            client_log(c, MQE2E_LOG_ERROR, "control plane not started: %s", mqe2e_error_name(crc));
        }
        client_log(c, MQE2E_LOG_INFO, "security configured for '%s' (%zu policy rules)",
                   mqe2e_keystore_client_id(c->keystore), mqe2e_policy_count(policy));
    }
    return client_map_error(rc);
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
    (void)pthread_mutex_lock(&c->cb_lock);
    c->app_context = context;
    c->app_cl = cl;
    c->app_ma = ma;
    c->app_dc = dc;
    (void)pthread_mutex_unlock(&c->cb_lock);
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
    rc = mqe2e__will_seal(c->protector, &c->lock, w->topicName, w->message, w->payload.data,
                          w->payload.len, buf, buf_cap, &out_len);
    if (rc != MQE2E_OK) {
        client_log(c, MQE2E_LOG_WARNING, "refused the will on '%s': %s", w->topicName,
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
    (void)pthread_mutex_lock(&c->cb_lock);
    int callbacks = c->app_ma != NULL;
    (void)pthread_mutex_unlock(&c->cb_lock);
    if (!callbacks) return;
    uint64_t wait_ms = 10000U;
    if (options != NULL && options->connectTimeout > 0 &&
        (uint64_t)options->connectTimeout * 1000U < wait_ms)
        wait_ms = (uint64_t)options->connectTimeout * 1000U;
    if (mqe2e__ctl_wait_fresh(c->ctl, wait_ms) != MQE2E_OK)
        client_log(c, MQE2E_LOG_WARNING,
                   "connected, but no HELLO reply from the authority yet: group publishes are "
                   "refused until it answers");
}

/* TCP_NODELAY on the new connection before the control plane's first frames
 * (docs/PAHO.md, "TCP_NODELAY"). */
static void client_nodelay(struct mqe2e_client *c, const MQTTClient_connectOptions *o, int ok)
{
    if (!ok) return;
    if (o != NULL && o->struct_version >= 2 && o->serverURIcount > 0)
        (void)mqe2e__nodelay_set_uris(&c->nodelay, o->serverURIs, o->serverURIcount);
    else
        (void)mqe2e__nodelay_set_uris(&c->nodelay, NULL, 0);
    mqe2e__nodelay_apply(&c->nodelay);
}

int mqe2e_MQTTClient_connect(mqe2e_MQTTClient handle, MQTTClient_connectOptions *options)
{
    struct mqe2e_client *c = handle;

    if (c == NULL) {
        return MQTTCLIENT_FAILURE;
    }
    if (c->protector == NULL) {
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
    if (rc == MQTTCLIENT_SUCCESS && c->ctl != NULL) {
        /* Pull on (re)connect: keys rotated while offline arrive now. */
        (void)mqe2e__ctl_connected(c->ctl);
        client_wait_fresh(c, options);
    }
    return rc;
}

int mqe2e_MQTTClient_waitForAuthority(mqe2e_MQTTClient handle, unsigned long timeout_ms)
{
    struct mqe2e_client *c = handle;
    if (c == NULL) return MQTTCLIENT_FAILURE;
    if (c->ctl == NULL) return MQTTCLIENT_SUCCESS;
    int rc = mqe2e__ctl_wait_fresh(c->ctl, timeout_ms);
    return rc == MQE2E_OK ? MQTTCLIENT_SUCCESS : client_map_error(rc);
}

/* Persist replay windows; failures are logged and returned. */
static int client_checkpoint(struct mqe2e_client *c)
{
    int rc;

    if (c->protector == NULL) {
        return MQE2E_OK;
    }
    (void)pthread_mutex_lock(&c->lock);
    rc = mqe2e_protector_checkpoint(c->protector);
    (void)pthread_mutex_unlock(&c->lock);
    if (rc != MQE2E_OK) {
        client_log(c, MQE2E_LOG_ERROR, "replay checkpoint failed: %s", mqe2e_error_name(rc));
    }
    return rc;
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

    if (c->ctl == NULL || timeout <= 0) {
        return timeout;
    }
    start = mqe2e__plugin_monotonic_ms();
    rc = mqe2e__ctl_flush(c->ctl, (uint64_t)timeout, 1);
    if (rc == MQE2E_ERR_STATE) {
        client_log(c, MQE2E_LOG_WARNING, "disconnect: control frames still queued after %d ms",
                   timeout);
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
    crc = client_checkpoint(c);
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
    if (handle->protector == NULL) {
        return MQE2E_MQTTCLIENT_NOT_CONFIGURED;
    }
    return MQTTClient_subscribe(handle->paho, topic, qos);
}

int mqe2e_MQTTClient_subscribeMany(mqe2e_MQTTClient handle, int count, char *const *topic, int *qos)
{
    if (handle == NULL) {
        return MQTTCLIENT_FAILURE;
    }
    if (handle->protector == NULL) {
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
    const uint8_t *pt;
    uint8_t *buf = NULL;
    size_t pt_len;
    size_t cap;
    size_t out_len = 0;
    int rc;

    if (c == NULL) {
        return MQTTCLIENT_FAILURE;
    }
    if (c->protector == NULL) {
        return MQE2E_MQTTCLIENT_NOT_CONFIGURED;
    }
    if (topic == NULL || msg == NULL) {
        return MQTTCLIENT_NULL_PARAMETER;
    }
    if (memcmp(msg->struct_id, "MQTM", 4) != 0 || msg->struct_version < 0 ||
        msg->struct_version > 1) {
        return MQTTCLIENT_BAD_STRUCTURE;
    }
    if (msg->qos < 0 || msg->qos > 2) {
        return MQTTCLIENT_BAD_QOS;
    }
    if (msg->payloadlen < 0 || (msg->payload == NULL && msg->payloadlen > 0)) {
        return MQTTCLIENT_NULL_PARAMETER;
    }
    pt_len = (size_t)msg->payloadlen;
    pt = pt_len > 0 ? (const uint8_t *)msg->payload : client_empty;
    cap = mqe2e_protect_bound(pt_len);
    if (cap < pt_len || cap > (size_t)INT_MAX) {
        return MQE2E_MQTTCLIENT_ERR(MQE2E_ERR_TOO_LARGE);
    }
    if (c->ctl != NULL) {
        int handled = 0;
        rc = mqe2e__ctl_publish(c->ctl, topic, pt, pt_len, msg->qos, msg->retained, &handled);
        if (handled) {
            /* Sent by the control worker (after the handshake if needed): no token. */
            if (dt != NULL) *dt = 0;
            if (rc != MQE2E_OK)
                client_log(c, MQE2E_LOG_WARNING, "refused to publish on '%s': %s", topic,
                           mqe2e_error_name(rc));
            return client_map_error(rc);
        }
    }
    buf = malloc(cap > 0 ? cap : 1U);
    if (buf == NULL) {
        return MQE2E_MQTTCLIENT_ERR(MQE2E_ERR_NOMEM);
    }
    (void)pthread_mutex_lock(&c->lock);
    rc = mqe2e_protect(c->protector, topic, pt, pt_len, mqe2e__plugin_now(), buf, cap, &out_len);
    (void)pthread_mutex_unlock(&c->lock);
    if (rc != MQE2E_OK) {
        if (rc == MQE2E_ERR_NO_POLICY) {
            client_log(c, MQE2E_LOG_WARNING, "refused to publish on '%s': no policy", topic);
        } else {
            client_log(c, MQE2E_LOG_WARNING, "refused to publish on '%s': %s", topic,
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
        rc = MQTTClient_publishMessage(c->paho, topic, &out_msg, dt);
    }
    sodium_memzero(&out_msg, sizeof out_msg);
out:
    sodium_memzero(buf, cap > 0 ? cap : 1U);
    free(buf);
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
                                              MQTTClient_message *msg,
                                              MQTTClient_deliveryToken *dt)
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
    if (c->protector == NULL) {
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
    if (r.reasonCode == MQTTREASONCODE_SUCCESS && c->ctl != NULL) {
        (void)mqe2e__ctl_connected(c->ctl);
        client_wait_fresh(c, options);
    }
    return r;
}

int mqe2e_MQTTClient_disconnect5(mqe2e_MQTTClient handle, int timeout,
                                 enum MQTTReasonCodes reason, MQTTProperties *props)
{
    struct mqe2e_client *c = handle;
    int rc;
    int crc;

    if (c == NULL) {
        return MQTTCLIENT_FAILURE;
    }
    timeout = client_flush(c, timeout);
    rc = MQTTClient_disconnect5(c->paho, timeout, reason, props);
    crc = client_checkpoint(c);
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
    if (handle->protector == NULL) {
        return client_response(MQE2E_MQTTCLIENT_NOT_CONFIGURED);
    }
    return MQTTClient_subscribe5(handle->paho, topic, qos, opts, props);
}

MQTTResponse mqe2e_MQTTClient_subscribeMany5(mqe2e_MQTTClient handle, int count,
                                             char *const *topic, int *qos,
                                             MQTTSubscribe_options *opts, MQTTProperties *props)
{
    if (handle == NULL) {
        return client_response(MQTTCLIENT_FAILURE);
    }
    if (handle->protector == NULL) {
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
    if (c->protector == NULL) {
        return MQE2E_MQTTCLIENT_NOT_CONFIGURED;
    }
    deadline = mqe2e__plugin_monotonic_ms() + timeout;
    for (;;) {
        MQTTClient_message *in = NULL;
        MQTTClient_message *mine = NULL;
        char *in_topic = NULL;
        char *topic = NULL;
        int in_topic_len = 0;
        mqe2e_receipt receipt;
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
        memset(&receipt, 0, sizeof receipt);
        if (c->ctl != NULL && (in_topic_len <= 0 || (size_t)in_topic_len == strlen(in_topic))) {
            int r = client_route(c, in_topic, in, 0, &mine, &topic);
            if (r != MQE2E__ROUTE_PASS) {
                MQTTClient_freeMessage(&in);
                MQTTClient_free(in_topic);
                if (r == MQE2E__ROUTE_PLAINTEXT) {
                    *topicName = topic;
                    *topicLen = (int)strlen(topic);
                    *message = mine;
                    return MQTTCLIENT_SUCCESS;
                }
                if (mqe2e__plugin_monotonic_ms() >= deadline) {
                    return MQTTCLIENT_SUCCESS;
                }
                continue;
            }
        }
        /* Paho's receive gives the full length; a NUL inside makes it differ from strlen. */
        rc = client_open(c, in_topic, in_topic_len, in, &mine, &topic, &receipt);
        if (rc == MQE2E_OK) {
            (void)pthread_mutex_lock(&c->lock);
            rc = mqe2e_unprotect_commit(c->protector, &receipt);
            (void)pthread_mutex_unlock(&c->lock);
            sodium_memzero(&receipt, sizeof receipt);
            if (rc != MQE2E_OK) {
                client_message_wipe_free(mine);
                free(topic);
            }
        }
        if (rc != MQE2E_OK) {
            client_report_drop(c, in_topic, rc);
            MQTTClient_freeMessage(&in);
            MQTTClient_free(in_topic);
            if (mqe2e__plugin_monotonic_ms() >= deadline) {
                return MQTTCLIENT_SUCCESS;
            }
            continue;
        }
        MQTTClient_freeMessage(&in);
        MQTTClient_free(in_topic);
        *topicName = topic;
        *topicLen = (int)strlen(topic);
        *message = mine;
        return MQTTCLIENT_SUCCESS;
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
    mqe2e__ctl_stop(c->ctl);
    MQTTClient_destroy(&c->paho);
    /* A callback that was already running when Paho let go must finish first. */
    (void)pthread_mutex_lock(&c->cb_lock);
    (void)pthread_mutex_unlock(&c->cb_lock);
    mqe2e__ctl_free(c->ctl);
    c->ctl = NULL;
    (void)client_checkpoint(c);
    (void)pthread_mutex_lock(&c->lock);
    mqe2e_protector_free(c->protector);
    mqe2e_policy_free(c->owned_policy);
    if (c->owns_keystore) {
        /* Nothing borrows it any more: written back, wiped, unlocked. */
        mqe2e_keystore_close(c->keystore);
    }
    (void)pthread_mutex_unlock(&c->lock);
    (void)pthread_mutex_destroy(&c->cb_lock);
    (void)pthread_mutex_destroy(&c->lock);
    mqe2e__nodelay_free(&c->nodelay);
    sodium_memzero(c, sizeof *c);
    free(c);
    *handle = NULL;
}

int mqe2e_MQTTClient_getCounters(mqe2e_MQTTClient handle, mqe2e_counters *out)
{
    if (handle == NULL || out == NULL) {
        return MQTTCLIENT_NULL_PARAMETER;
    }
    if (handle->protector == NULL) {
        return MQE2E_MQTTCLIENT_NOT_CONFIGURED;
    }
    (void)pthread_mutex_lock(&handle->lock);
    mqe2e_protector_counters(handle->protector, out);
    (void)pthread_mutex_unlock(&handle->lock);
    return MQTTCLIENT_SUCCESS;
}

int mqe2e_MQTTClient_getControlCounters(mqe2e_MQTTClient handle, mqe2e_control_counters *out)
{
    if (handle == NULL || out == NULL) {
        return MQTTCLIENT_NULL_PARAMETER;
    }
    if (handle->protector == NULL) {
        return MQE2E_MQTTCLIENT_NOT_CONFIGURED;
    }
    mqe2e__ctl_counters(handle->ctl, out);
    return MQTTCLIENT_SUCCESS;
}

int mqe2e_MQTTClient_clearRetained(mqe2e_MQTTClient handle, const char *topicName, int qos,
                                   MQTTClient_deliveryToken *dt)
{
    struct mqe2e_client *c = handle;

    if (c == NULL) {
        return MQTTCLIENT_FAILURE;
    }
    if (c->protector == NULL) {
        return MQE2E_MQTTCLIENT_NOT_CONFIGURED;
    }
    if (topicName == NULL) {
        return MQTTCLIENT_NULL_PARAMETER;
    }
    if (!mqe2e_topic_name_valid(topicName)) {
        return MQTTCLIENT_BAD_UTF8_STRING;
    }
    /* No data leaves: an empty retained publish is the broker's delete. */
    if (c->mqtt5) {
        MQTTResponse r = MQTTClient_publish5(c->paho, topicName, 0, client_empty, qos, 1, NULL, dt);
        int rc = (int)r.reasonCode;
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
