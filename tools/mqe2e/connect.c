/* What pub and sub share: broker address, client id, policy, the encrypted
 * client's life cycle, and how its return codes become exit codes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int cli_conn_arg(cli_conn_args *c, int id, const char *value)
{
    if (id == OPT_POLICY) {
        const char **n = realloc(c->rules, (c->rule_count + 1) * sizeof *n);
        if (n == NULL) {
            cli_error("out of memory");
            return -1;
        }
        c->rules = n;
        c->rules[c->rule_count++] = value;
        return 1;
    }
    return cli_broker_arg(&c->b, id, value);
}

void cli_conn_args_free(cli_conn_args *c)
{
    free(c->rules);
    c->rules = NULL;
    c->rule_count = 0;
    cli_broker_args_free(&c->b);
}

int cli_exit_for_client(int rc)
{
    /* Library failures surface as MQE2E_MQTTCLIENT_ERR(code) (below -100):
     * those are key, keystore or policy problems; Paho's own codes are not. */
    if (rc <= MQE2E_MQTTCLIENT_ERROR_BASE + MQE2E_ERR_INVALID_ARG &&
        rc >= MQE2E_MQTTCLIENT_ERROR_BASE + MQE2E_ERR_MIN)
        return CLI_EXIT_KEY;
    return CLI_EXIT_BROKER;
}

static void on_log(void *context, mqe2e_log_level level, const char *message)
{
    (void)context;
    (void)level;
    cli_error("%s", message);
}

/* Reported from whichever thread the client drops in; only the topic and the
 * reason are printed, never payload bytes. */
static void on_dropped(void *context, const char *topic, int code)
{
    (void)context;
    cli_error("dropped message on %s: %s", topic != NULL ? topic : "?", mqe2e_strerror(code));
}

int cli_session_prepare(cli_session *s, const cli_keystore_args *k, const cli_conn_args *c)
{
    memset(s, 0, sizeof *s);
    s->keystore.lock_fd = -1;
    s->keystore_path = k->path;
    int rc = cli_keystore_open(&s->keystore, k);
    if (rc != CLI_EXIT_OK) return rc;
    int lrc = mqe2e_policy_new(&s->policy);
    if (lrc != MQE2E_OK) {
        cli_error("cannot create policy: %s", mqe2e_strerror(lrc));
        return CLI_EXIT_KEY;
    }
    /* First match wins, so explicit rules override the keystore's groups. */
    for (size_t i = 0; i < c->rule_count; i++) {
        lrc = mqe2e_policy_add_text(s->policy, c->rules[i]);
        if (lrc == MQE2E_ERR_POLICY && strstr(c->rules[i], ";bind=") != NULL) {
            cli_error("bad --policy rule '%s': only group rules bind, and message-expiry, "
                      "topic-alias and subscription-id cannot be bound (brokers change them)",
                      c->rules[i]);
            return CLI_EXIT_USAGE;
        }
        if (lrc != MQE2E_OK) {
            cli_error("bad --policy rule '%s': %s (want FILTER=group:NAME, "
                      "FILTER=channel:PEER or FILTER=plaintext, a group rule optionally "
                      "ending in ;bind=ITEM,...)",
                      c->rules[i], mqe2e_strerror(lrc));
            return CLI_EXIT_USAGE;
        }
    }
    lrc = mqe2e_policy_add_keystore_groups(s->policy, s->keystore.ks);
    if (lrc != MQE2E_OK) {
        cli_error("cannot build policy from keystore groups: %s", mqe2e_strerror(lrc));
        return CLI_EXIT_KEY;
    }

    /* The pid suffix lets several commands of one identity share a broker:
     * MQTT disconnects the older session when a client id is reused. An
     * enrolled client's control inbox is named after its client id, and the
     * broker ACL (docs/mosquitto-acl.conf) ties it to the MQTT id. */
    char client_id[MQE2E_CLIENT_ID_MAX_BYTES + 32];
    mqe2e_authority_pin pin;
    int enrolled = mqe2e_keystore_authority(s->keystore.ks, &pin) == MQE2E_OK;
    if (cli_broker_client_id(client_id, sizeof client_id, &c->b,
                             mqe2e_keystore_client_id(s->keystore.ks), !enrolled) != 0)
        return CLI_EXIT_USAGE;
    int rc2 = cli_broker_prepare(&s->conn, &c->b, 60);
    if (rc2 != CLI_EXIT_OK) return rc2;
    s->mqtt5 = c->b.version == MQTTVERSION_5;
    MQTTClient_createOptions cro = MQTTClient_createOptions_initializer;
    if (s->mqtt5) cro.MQTTVersion = MQTTVERSION_5;
    int prc = mqe2e_MQTTClient_createWithOptions(&s->client, s->conn.uri, client_id,
                                                 MQTTCLIENT_PERSISTENCE_NONE, NULL, &cro);
    if (prc != MQTTCLIENT_SUCCESS) {
        s->client = NULL;
        cli_error("cannot create client for %s: %s", s->conn.uri, mqe2e_MQTTClient_strerror(prc));
        return prc == MQTTCLIENT_BAD_PROTOCOL ? CLI_EXIT_USAGE : CLI_EXIT_BROKER;
    }
    mqe2e_MQTTClient_securityOptions sec = mqe2e_MQTTClient_securityOptions_initializer;
    sec.keystore = s->keystore.ks;
    mqe2e_protector_options popts = MQE2E_PROTECTOR_OPTIONS_INIT;
    if (c->max_payload > 0) {
        popts.max_payload = c->max_payload;
        sec.protector = &popts;
    }
    sec.policy = s->policy;
    sec.onDropped = on_dropped;
    /* Errors (e.g. "this client is revoked") are always shown; -d shows everything. */
    sec.onLog = on_log;
    sec.logLevel = c->b.debug ? MQE2E_LOG_DEBUG : MQE2E_LOG_ERROR;
    prc = mqe2e_MQTTClient_setSecurity(s->client, &sec);
    if (prc != MQTTCLIENT_SUCCESS) {
        cli_error("cannot attach keystore and policy: %s", mqe2e_MQTTClient_strerror(prc));
        return CLI_EXIT_KEY;
    }
    return CLI_EXIT_OK;
}

int cli_session_connect(cli_session *s, const cli_conn_args *c)
{
    int rc;
    if (s->mqtt5) {
        MQTTResponse r = mqe2e_MQTTClient_connect5(s->client, &s->conn.co,
                                                   s->conn.has_props ? &s->conn.props : NULL, NULL);
        rc = r.reasonCode == MQTTREASONCODE_SUCCESS ? MQTTCLIENT_SUCCESS : (int)r.reasonCode;
        MQTTResponse_free(r);
    } else {
        rc = mqe2e_MQTTClient_connect(s->client, &s->conn.co);
    }
    if (rc == MQE2E_MQTTCLIENT_NO_POLICY) {
        cli_error("no policy covers the will topic %s: refusing to connect", c->b.will_topic);
        return CLI_EXIT_KEY;
    }
    if (rc != MQTTCLIENT_SUCCESS) {
        if (cli_exit_for_client(rc) == CLI_EXIT_KEY) {
            cli_error("cannot connect to %s: %s", s->conn.uri, mqe2e_MQTTClient_strerror(rc));
            return CLI_EXIT_KEY;
        }
        return cli_broker_connect_failed(&s->conn, rc, NULL);
    }
    s->connected = 1;
    if (c->b.debug) cli_error("connected to %s", s->conn.uri);
    return CLI_EXIT_OK;
}

int cli_session_publish(cli_session *s, const char *topic, const void *data, int len, int qos,
                        int retain, MQTTClient_deliveryToken *dt)
{
    if (!s->mqtt5) return mqe2e_MQTTClient_publish(s->client, topic, len, data, qos, retain, dt);
    MQTTResponse r = mqe2e_MQTTClient_publish5(s->client, topic, len, data, qos, retain, NULL, dt);
    int rc = (int)r.reasonCode;
    MQTTResponse_free(r);
    /* v5 "no matching subscribers" (16) is a success for a publisher. */
    return rc == 16 ? MQTTCLIENT_SUCCESS : rc;
}

int cli_session_subscribe(cli_session *s, int count, char *const *filters, int *qos)
{
    if (!s->mqtt5) return mqe2e_MQTTClient_subscribeMany(s->client, count, filters, qos);
    MQTTResponse r = mqe2e_MQTTClient_subscribeMany5(s->client, count, filters, qos, NULL, NULL);
    int rc = (int)r.reasonCode;
    if (rc <= 2) {
        /* Granted QoS per filter, as the v3 call reports it. */
        for (int i = 0; i < count; i++) {
            /* Paho fills reasonCodes only for more than one filter. */
            int code =
                r.reasonCodes != NULL && r.reasonCodeCount > i ? (int)r.reasonCodes[i] : rc;
            qos[i] = code <= 2 ? code : 0x80;
        }
        rc = MQTTCLIENT_SUCCESS;
    }
    MQTTResponse_free(r);
    return rc;
}

void cli_session_close(cli_session *s)
{
    if (s->client != NULL) {
        /* Counters live in the client: record them before it goes. */
        (void)cli_stats_write(s, 1);
        if (s->connected && mqe2e_MQTTClient_isConnected(s->client)) {
            if (s->mqtt5)
                (void)mqe2e_MQTTClient_disconnect5(s->client, 5000, MQTTREASONCODE_SUCCESS, NULL);
            else
                (void)mqe2e_MQTTClient_disconnect(s->client, 5000);
        }
        mqe2e_MQTTClient_destroy(&s->client);
    }
    s->connected = 0;
    /* The client borrows policy and keystore: they go after it. */
    mqe2e_policy_free(s->policy);
    s->policy = NULL;
    cli_keystore_close(&s->keystore);
    cli_broker_conn_free(&s->conn);
}
