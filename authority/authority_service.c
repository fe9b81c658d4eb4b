/* The authority service: the core (authority_core.h) over the synchronous
 * Paho client. One thread, no callbacks (MQTTClient_receive with a short
 * timeout); this file owns the broker connection, the clock and the log. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <MQTTClient.h>
#include <sodium.h>

#include "authority_service.h"
#include "store.h"
#include "mqe2e/tcp.h"
#include "mqe2e/control.h"
#include "mqe2e/error.h"

#define RECEIVE_TIMEOUT_MS 200UL
#define PUBLISH_WAIT_MS 10000UL
/* Longest gap between two requests of one enrollment batch. */
#define ENROLL_GAP_MS 2UL

typedef struct service {
    const authority_config *cfg;
    MQTTClient mqtt;
    MQTTClient_deliveryToken *pending;
    size_t n_pending, cap_pending;
    const char *request_topic;
    char subscription[MQE2E_CONTROL_PREFIX_MAX + 160]; /* "$share/G/P/authority" or P/authority */
    char client_id[MQE2E_ID_MAX + 16];
    int v5; /* a replica: MQTT v5, the *5 calls of Paho */
} service;

static uint64_t now_s(void)
{
    time_t t = time(NULL);
    return t > 0 ? (uint64_t)t : 0;
}

static uint64_t mono_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000U + (uint64_t)t.tv_nsec / 1000U;
}

static uint64_t mono_ms(void)
{
    return mono_us() / 1000U;
}

static void log_line(const char *text)
{
    char ts[32];
    time_t t = time(NULL);
    struct tm tm;
    if (gmtime_r(&t, &tm) != NULL)
        strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    else
        ts[0] = '\0';
    /* One write per line: stderr is unbuffered and lines from a busy
     * authority must neither cost three system calls nor interleave. */
    char line[1100];
    int n = snprintf(line, sizeof line, "%s authority: %s", ts, text);
    if (n < 0) return;
    if ((size_t)n >= sizeof line - 1U) n = (int)sizeof line - 2;
    line[n] = '\n';
    (void)fwrite(line, 1, (size_t)n + 1U, stderr);
}

static void slog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void slog(const char *fmt, ...)
{
    char line[1000];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n >= 0) log_line(line);
}

/* ------------------------------------------------------------ the core's io */

/* Subscribe @p filter with the client's MQTT version. A v5 SUBACK reason
 * code above 2 is a refusal (e.g. 0x9E: shared subscriptions not supported). */
static int subscribe(service *s, const char *filter, int qos)
{
    if (!s->v5) return MQTTClient_subscribe(s->mqtt, filter, qos);
    MQTTSubscribe_options so = MQTTSubscribe_options_initializer;
    MQTTResponse r = MQTTClient_subscribe5(s->mqtt, filter, qos, &so, NULL);
    int code = (int)r.reasonCode; /* Paho's own failures are negative */
    int rc = code < 0 ? code : code > 2 ? MQTTCLIENT_FAILURE : MQTTCLIENT_SUCCESS;
    if (code > 2) slog("the broker refused the subscription %s (reason %d)", filter, code);
    MQTTResponse_free(r);
    return rc;
}

static int io_publish(void *ctx, const char *topic, const uint8_t *p, size_t n, int retained)
{
    service *s = ctx;
    MQTTClient_deliveryToken tok = 0;
    int rc;
    if (n > (size_t)INT32_MAX) return -1;
    if (s->v5) {
        MQTTResponse r = MQTTClient_publish5(s->mqtt, topic, (int)n, p, 1, retained, NULL, &tok);
        rc = (int)r.reasonCode < 0 ? (int)r.reasonCode : MQTTCLIENT_SUCCESS;
        MQTTResponse_free(r);
    } else {
        rc = MQTTClient_publish(s->mqtt, topic, (int)n, p, 1, retained, &tok);
    }
    if (rc != MQTTCLIENT_SUCCESS) {
        slog("publish to %s failed (%d)", topic, rc);
        return -1;
    }
    if (s->n_pending == s->cap_pending) {
        size_t cap = s->cap_pending ? s->cap_pending * 2U : 256U;
        MQTTClient_deliveryToken *t = realloc(s->pending, cap * sizeof *t);
        if (t == NULL) return 0; /* handed over; only its completion is not awaited */
        s->pending = t;
        s->cap_pending = cap;
    }
    s->pending[s->n_pending++] = tok;
    return 0;
}

static void io_flush(void *ctx)
{
    service *s = ctx;
    for (size_t i = 0; i < s->n_pending; i++)
        (void)MQTTClient_waitForCompletion(s->mqtt, s->pending[i], PUBLISH_WAIT_MS);
    s->n_pending = 0;
}

static void io_subscribe(void *ctx, const char *filter)
{
    service *s = ctx;
    if (s->mqtt == NULL || !MQTTClient_isConnected(s->mqtt)) return; /* on (re)connect */
    int rc = subscribe(s, filter, 0);
    if (rc != MQTTCLIENT_SUCCESS) slog("cannot subscribe to %s (%d)", filter, rc);
}

static void io_log(void *ctx, const char *line)
{
    (void)ctx;
    log_line(line);
}

static uint64_t io_stopwatch(void *ctx)
{
    (void)ctx;
    return mono_us();
}

/* ------------------------------------------------------------------ the loop */

static int connect_broker(service *s)
{
    MQTTClient_connectOptions o = MQTTClient_connectOptions_initializer;
    MQTTClient_connectOptions o5 = MQTTClient_connectOptions_initializer5;
    if (s->v5) o = o5;
    o.keepAliveInterval = s->cfg->keepalive > 0 ? s->cfg->keepalive : 30;
    /* TLS options pass through to Paho unchanged (Paho only reads them). */
    o.ssl = (MQTTClient_SSLOptions *)(uintptr_t)s->cfg->ssl;
    /* A single authority: a persistent session keeps P/authority queued
     * while it restarts. A replica: a clean start with no session left
     * behind, so the broker never hands a request of the shared
     * subscription to a replica that died (the others serve). */
    if (s->v5)
        o.cleanstart = 1;
    else
        o.cleansession = 0;
    o.maxInflightMessages = 65535;
    o.reliable = 0;
    o.username = s->cfg->username;
    o.password = s->cfg->password;
    int rc;
    if (s->v5) {
        MQTTResponse r = MQTTClient_connect5(s->mqtt, &o, NULL, NULL);
        int code = (int)r.reasonCode;
        if (code == 0 && r.properties != NULL &&
            MQTTProperties_hasProperty(r.properties, MQTTPROPERTY_CODE_RECEIVE_MAXIMUM)) {
            int most = MQTTProperties_getNumericValue(r.properties,
                                                      MQTTPROPERTY_CODE_RECEIVE_MAXIMUM);
            /* Paho then holds every reply past that many until a PUBACK:
             * a burst of enrollments crawls (docs/SCALING.md). */
            if (most >= 0 && most < 1000)
                slog("the broker lets this replica have only %d QoS 1 publishes in flight "
                     "(Receive Maximum): replies past that wait for PUBACKs; raise it "
                     "(Mosquitto: max_inflight_messages 0) for bursts",
                     most);
        }
        rc = code == 0      ? MQTTCLIENT_SUCCESS
             : code == 0x86 ? 4 /* bad user name or password */
             : code == 0x87 ? 5 /* not authorized */
             : code < 0     ? code
                            : MQTTCLIENT_FAILURE;
        MQTTResponse_free(r);
    } else {
        rc = MQTTClient_connect(s->mqtt, &o);
    }
    if (rc != MQTTCLIENT_SUCCESS) return rc;
    /* Replies leave at once, not 40 ms later behind a PUBACK (docs/PAHO.md). */
    (void)mqe2e_tcp_nodelay_uri(s->cfg->uri);
    return subscribe(s, s->subscription, 1);
}

/* The replica's MQTT client id and request subscription. @return 0 or -1. */
static int replica_names(service *s, const char *authority_id)
{
    const char *g = s->cfg->replica_group;
    if (g == NULL) {
        snprintf(s->subscription, sizeof s->subscription, "%s", s->request_topic);
        snprintf(s->client_id, sizeof s->client_id, "%s", authority_id);
        return 0;
    }
    /* A share name is one topic level without wildcards (MQTT 5.0 4.8.2). */
    if (g[0] == '\0' || strlen(g) > 64U || strpbrk(g, "/+#") != NULL) return -1;
    s->v5 = 1;
    snprintf(s->subscription, sizeof s->subscription, "$share/%s/%s", g, s->request_topic);
    if (s->cfg->replica_id != NULL) {
        if (s->cfg->replica_id[0] == '\0' || strlen(s->cfg->replica_id) >= sizeof s->client_id)
            return -1;
        snprintf(s->client_id, sizeof s->client_id, "%s", s->cfg->replica_id);
    } else {
        uint8_t r[4];
        randombytes_buf(r, sizeof r);
        snprintf(s->client_id, sizeof s->client_id, "%.*s-%02x%02x%02x%02x", (int)MQE2E_ID_MAX,
                 authority_id, r[0], r[1], r[2], r[3]);
    }
    return 0;
}

int authority_run(mqe2e_keystore *ks, const authority_config *cfg)
{
    service s;
    authority_core *core = NULL;
    mqe2e_adb *db = NULL;
    uint8_t key[MQE2E_ADB_KEY_BYTES];
    int rc;

    memset(&s, 0, sizeof s);
    s.cfg = cfg;
    const char *id = mqe2e_keystore_client_id(ks);
    if (id == NULL || !mqe2e_control_prefix_valid(cfg->core.prefix)) return MQE2E_ERR_INVALID_ARG;
    rc = authority_db_key(key, ks);
    if (rc == MQE2E_OK) rc = mqe2e_adb_open(&db, cfg->db_path, key);
    sodium_memzero(key, sizeof key);
    if (rc != MQE2E_OK) {
        /* A server URI may carry a password: name the file only. */
        slog("cannot open the database %s: %s", store_uri_shown(cfg->db_path), mqe2e_strerror(rc));
        return rc;
    }
    authority_io io = {&s, io_publish, io_flush, io_subscribe, io_log, io_stopwatch};
    if ((rc = authority_core_new(&core, ks, db, &cfg->core, &io, now_s())) != MQE2E_OK) goto out;
    s.request_topic = authority_core_request_topic(core);
    if (replica_names(&s, id) != 0) {
        slog("invalid replica group or replica id (one topic level, no '/', '+' or '#')");
        rc = MQE2E_ERR_INVALID_ARG;
        goto out;
    }

    MQTTClient_createOptions co = MQTTClient_createOptions_initializer;
    if (s.v5) co.MQTTVersion = MQTTVERSION_5;
    if (MQTTClient_createWithOptions(&s.mqtt, cfg->uri, s.client_id, MQTTCLIENT_PERSISTENCE_NONE,
                                     NULL, &co) != MQTTCLIENT_SUCCESS) {
        s.mqtt = NULL;
        rc = MQE2E_ERR_INVALID_ARG;
        goto out;
    }
    if ((rc = connect_broker(&s)) != MQTTCLIENT_SUCCESS) {
        /* MQTT 3.1.1 CONNACK codes 4 and 5: the login, not the network. */
        slog("cannot connect to %s: %s", cfg->uri,
             rc == 4   ? "the broker refused the login: bad user name or password"
             : rc == 5 ? "the broker refused the login: not authorized (user name and password?)"
             : rc == MQTTCLIENT_FAILURE && cfg->ssl != NULL
                 ? "connection refused or TLS handshake failed (check the CA file and host name)"
                 : MQTTClient_strerror(rc));
        rc = rc == 4 || rc == 5 ? MQE2E_ERR_AUTH : MQE2E_ERR_IO;
        goto out;
    }
    authority_rl_config limits;
    if (cfg->core.limits != NULL)
        limits = *cfg->core.limits;
    else
        authority_rl_defaults(&limits);
    slog("%s serving %s on %s as %s (handshakes: %u/s burst %u, per id %u/min burst %u, "
         "%u ids tracked)",
         id, s.subscription, cfg->uri, s.client_id, limits.rate, limits.burst,
         limits.key_per_min, limits.key_burst, limits.keys);
    authority_core_connected(core, now_s());

    while (cfg->stop == NULL || !*cfg->stop) {
        char *topic = NULL;
        int topic_len = 0;
        MQTTClient_message *m = NULL;
        /* With enrollments queued the loop waits ENROLL_GAP_MS at most for
         * the next message: the batch is committed when none came, when it is
         * full, or AUTHORITY_ENROLL_BATCH_WAIT_MS after its first request.
         * (The broker sends a QoS 1 session only a window of messages ahead
         * of their PUBACKs, so "nothing queued right now" comes often
         * mid-burst.) */
        int batching = authority_core_batching(core);
        int r = MQTTClient_receive(s.mqtt, &topic, &topic_len, &m,
                                   batching ? ENROLL_GAP_MS : RECEIVE_TIMEOUT_MS);
        authority_core_tick(core, now_s(), mono_ms(), m == NULL);
        /* Replies are QoS 1 without waiting: their tokens are collected when
         * idle (a whole receive timeout without a message), not in the short
         * gaps of a burst, where waiting for PUBACKs would stall the burst. */
        if (s.n_pending > 0 && ((m == NULL && !batching) || s.n_pending >= 1024U)) io_flush(&s);
        if (r != MQTTCLIENT_SUCCESS && r != MQTTCLIENT_TOPICNAME_TRUNCATED) {
            if (m != NULL) MQTTClient_freeMessage(&m);
            if (topic != NULL) MQTTClient_free(topic);
            if (!MQTTClient_isConnected(s.mqtt)) {
                slog("connection lost; reconnecting");
                while ((cfg->stop == NULL || !*cfg->stop) &&
                       connect_broker(&s) != MQTTCLIENT_SUCCESS)
                    sleep(1);
                if (MQTTClient_isConnected(s.mqtt)) {
                    slog("reconnected");
                    authority_core_connected(core, now_s());
                }
            }
            continue;
        }
        if (m != NULL && topic != NULL && m->payloadlen >= 0)
            authority_core_message(core, topic, m->payload, (size_t)m->payloadlen, now_s(),
                                   mono_ms());
        if (m != NULL) MQTTClient_freeMessage(&m);
        if (topic != NULL) MQTTClient_free(topic);
    }
    /* The queued enrollments are answered before the connection closes. */
    authority_core_free(core, now_s(), mono_ms());
    core = NULL;
    slog("stopping");
    rc = MQE2E_OK;
out:
    authority_core_free(core, now_s(), mono_ms());
    if (s.mqtt != NULL) {
        io_flush(&s);
        if (MQTTClient_isConnected(s.mqtt)) MQTTClient_disconnect(s.mqtt, 1000);
        MQTTClient_destroy(&s.mqtt);
    }
    mqe2e_adb_close(db);
    free(s.pending);
    return rc;
}
