/*
 * What the sync and async fronts hold and do alike (internal_plugin.h,
 * "What both fronts hold and do alike"): their shared state, logging and
 * drop reports, message wiping, setSecurity, checkpoint, counters and the
 * second half of destroy. Each front keeps only its Paho glue.
 *
 * Return codes are the synchronous front's Paho codes; the asynchronous
 * front's have the same values (checked in client_async.c).
 */
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal_plugin.h"

int mqe2e__front_init(mqe2e__front *f, const char *server_uri)
{
    if (pthread_mutex_init(&f->lock, NULL) != 0) {
        return -1;
    }
    if (pthread_mutex_init(&f->cb_lock, NULL) != 0) {
        (void)pthread_mutex_destroy(&f->lock);
        return -1;
    }
    f->log_level = MQE2E_LOG_WARNING;
    if (mqe2e__nodelay_init(&f->nodelay, server_uri) != 0) {
        (void)pthread_mutex_destroy(&f->cb_lock);
        (void)pthread_mutex_destroy(&f->lock);
        return -1;
    }
    return 0;
}

void mqe2e__front_fini(mqe2e__front *f)
{
    mqe2e__nodelay_free(&f->nodelay);
    (void)pthread_mutex_destroy(&f->cb_lock);
    (void)pthread_mutex_destroy(&f->lock);
}

void mqe2e__front_log(const mqe2e__front *f, mqe2e_log_level level, const char *fmt, ...)
{
    char line[512];
    va_list ap;

    if (f->on_log == NULL || level > f->log_level) {
        return;
    }
    va_start(ap, fmt);
    /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): va_start is just above */
    (void)vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    f->on_log(f->sec_context, level, line);
}

void mqe2e__front_report_drop(const mqe2e__front *f, const char *topic, int code)
{
    const char *shown = topic != NULL ? topic : "";

    mqe2e__front_log(f, MQE2E_LOG_WARNING, "dropped message on '%s': %s", shown,
                     mqe2e_error_name(code));
    if (f->on_dropped != NULL) {
        f->on_dropped(f->sec_context, shown, code);
    }
}

void mqe2e__front_message_wipe_free(void *m, size_t size, void *payload, int payload_len,
                                    MQTTProperties *props)
{
    if (m == NULL) {
        return;
    }
    if (payload != NULL && payload_len > 0) {
        sodium_memzero(payload, (size_t)payload_len);
    }
    /* Paho's call costs as much as the rest of this function even when there
     * is nothing to free (v3 messages, v5 ones without properties). */
    if (props->array != NULL) {
        MQTTProperties_free(props);
    }
    sodium_memzero(m, size);
    free(m);
}

int mqe2e__front_set_security(mqe2e__front *f, mqe2e__ctl_host *host,
                              const mqe2e_MQTTClient_securityOptions *options)
{
    int rc;

    if (f == NULL || options == NULL) {
        return MQTTCLIENT_NULL_PARAMETER;
    }
    if (memcmp(options->struct_id, "MQES", 4) != 0 || options->struct_version < 0 ||
        options->struct_version > 4) {
        return MQTTCLIENT_BAD_STRUCTURE;
    }
    if (options->keystore == NULL &&
        (options->struct_version < 2 || options->keystorePath == NULL)) {
        return MQTTCLIENT_NULL_PARAMETER;
    }
    (void)pthread_mutex_lock(&f->lock);
    if (f->protector != NULL) {
        (void)pthread_mutex_unlock(&f->lock);
        return MQE2E_MQTTCLIENT_ERR(MQE2E_ERR_STATE);
    }
    /* The session logs through the front from its first call on. */
    f->on_log = options->onLog;
    f->log_level = options->logLevel;
    f->sec_context = options->context;
    rc = mqe2e__ctl_setup(&f->ctl, host, options, &f->keystore, &f->owns_keystore);
    if (rc == MQE2E_OK) {
        f->on_dropped = options->onDropped;
        f->protector = mqe2e__ctl_protector(f->ctl);
    } else {
        f->on_log = NULL;
    }
    (void)pthread_mutex_unlock(&f->lock);
    return rc == MQE2E_OK ? MQTTCLIENT_SUCCESS : MQE2E_MQTTCLIENT_ERR(rc);
}

int mqe2e__front_checkpoint(mqe2e__front *f)
{
    int rc;

    (void)pthread_mutex_lock(&f->lock);
    rc = f->protector != NULL ? mqe2e_protector_checkpoint(f->protector) : MQE2E_OK;
    (void)pthread_mutex_unlock(&f->lock);
    if (rc != MQE2E_OK) {
        mqe2e__front_log(f, MQE2E_LOG_ERROR, "replay checkpoint failed: %s", mqe2e_error_name(rc));
    }
    return rc;
}

void mqe2e__front_release(mqe2e__front *f)
{
    /* A callback already running when Paho let go must finish first. */
    (void)pthread_mutex_lock(&f->cb_lock);
    (void)pthread_mutex_unlock(&f->cb_lock);
    (void)mqe2e__front_checkpoint(f);
    (void)pthread_mutex_lock(&f->lock);
    /* The session owns the protector and its own policy. */
    mqe2e__ctl_free(f->ctl);
    f->ctl = NULL;
    f->protector = NULL;
    if (f->owns_keystore) {
        /* Nothing borrows it any more: written back, wiped, unlocked. */
        mqe2e_keystore_close(f->keystore);
    }
    (void)pthread_mutex_unlock(&f->lock);
    mqe2e__front_fini(f);
}

int mqe2e__front_counters(mqe2e__front *f, mqe2e_counters *out)
{
    if (f == NULL || out == NULL) {
        return MQTTCLIENT_NULL_PARAMETER;
    }
    if (f->protector == NULL) {
        return MQE2E_MQTTCLIENT_NOT_CONFIGURED;
    }
    (void)pthread_mutex_lock(&f->lock);
    mqe2e_protector_counters(f->protector, out);
    (void)pthread_mutex_unlock(&f->lock);
    return MQTTCLIENT_SUCCESS;
}

int mqe2e__front_control_counters(mqe2e__front *f, struct mqe2e_control_counters *out)
{
    if (f == NULL || out == NULL) {
        return MQTTCLIENT_NULL_PARAMETER;
    }
    if (f->protector == NULL) {
        return MQE2E_MQTTCLIENT_NOT_CONFIGURED;
    }
    mqe2e__ctl_counters(f->ctl, out);
    return MQTTCLIENT_SUCCESS;
}

int mqe2e__front_clear_check(const mqe2e__front *f, const char *topic)
{
    if (f == NULL) {
        return MQTTCLIENT_FAILURE;
    }
    if (f->protector == NULL) {
        return MQE2E_MQTTCLIENT_NOT_CONFIGURED;
    }
    if (topic == NULL) {
        return MQTTCLIENT_NULL_PARAMETER;
    }
    if (!mqe2e_topic_name_valid(topic)) {
        return MQTTCLIENT_BAD_UTF8_STRING;
    }
    return MQTTCLIENT_SUCCESS;
}

/* Handed to the session for empty payloads, which Paho may give as NULL. */
static const uint8_t front_empty[1] = {0};

int mqe2e__front_publish_prepare(const mqe2e__front *f, const char *topic, const void *msg,
                                 const char *struct_id, int struct_version, int qos,
                                 const void *payload, int payloadlen, uint8_t *stack_buf,
                                 size_t stack_cap, const uint8_t **pt, size_t *pt_len,
                                 uint8_t **buf, size_t *cap)
{
    if (f == NULL) {
        return MQTTCLIENT_FAILURE;
    }
    if (f->protector == NULL) {
        return MQE2E_MQTTCLIENT_NOT_CONFIGURED;
    }
    if (topic == NULL || msg == NULL) {
        return MQTTCLIENT_NULL_PARAMETER;
    }
    if (memcmp(struct_id, "MQTM", 4) != 0 || struct_version < 0 || struct_version > 1) {
        return MQTTCLIENT_BAD_STRUCTURE;
    }
    if (qos < 0 || qos > 2) {
        return MQTTCLIENT_BAD_QOS;
    }
    if (payloadlen < 0 || (payload == NULL && payloadlen > 0)) {
        return MQTTCLIENT_NULL_PARAMETER;
    }
    *pt_len = (size_t)payloadlen;
    *pt = *pt_len > 0 ? (const uint8_t *)payload : front_empty;
    *cap = mqe2e_session_publish_bound(*pt_len);
    if (*cap < *pt_len || *cap > (size_t)INT_MAX) {
        return MQE2E_MQTTCLIENT_ERR(MQE2E_ERR_TOO_LARGE);
    }
    *buf = *cap <= stack_cap ? stack_buf : malloc(*cap);
    if (*buf == NULL) {
        return MQE2E_MQTTCLIENT_ERR(MQE2E_ERR_NOMEM);
    }
    return MQTTCLIENT_SUCCESS;
}
