/* What pub and sub share: broker address, client id, policy, the encrypted
 * client's life cycle, and how its return codes become exit codes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int cli_conn_arg(cli_conn_args *c, int id, const char *value)
{
    switch (id) {
    case OPT_HOST:
        c->host = value;
        return 1;
    case OPT_PORT:
        return cli_parse_long(&c->port, value, 1, 65535, "-p") == 0 ? 1 : -1;
    case OPT_ID:
        c->client_id = value;
        return 1;
    case OPT_DEBUG:
        c->debug = 1;
        return 1;
    case OPT_POLICY: {
        const char **n = realloc(c->rules, (c->rule_count + 1) * sizeof *n);
        if (n == NULL) {
            cli_error("out of memory");
            return -1;
        }
        c->rules = n;
        c->rules[c->rule_count++] = value;
        return 1;
    }
    default:
        return 0;
    }
}

void cli_conn_args_free(cli_conn_args *c)
{
    free(c->rules);
    c->rules = NULL;
    c->rule_count = 0;
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
        if (lrc != MQE2E_OK) {
            cli_error("bad --policy rule '%s': %s (want FILTER=group:NAME, "
                      "FILTER=channel:PEER or FILTER=plaintext)",
                      c->rules[i], mqe2e_strerror(lrc));
            return CLI_EXIT_USAGE;
        }
    }
    lrc = mqe2e_policy_add_keystore_groups(s->policy, s->keystore.ks);
    if (lrc != MQE2E_OK) {
        cli_error("cannot build policy from keystore groups: %s", mqe2e_strerror(lrc));
        return CLI_EXIT_KEY;
    }

    char uri[512];
    int n = snprintf(uri, sizeof uri, "tcp://%s:%ld", c->host, c->port);
    if (n < 0 || (size_t)n >= sizeof uri) {
        cli_error("host name too long");
        return CLI_EXIT_USAGE;
    }
    /* The pid suffix lets several commands of one identity share a broker:
     * MQTT disconnects the older session when a client id is reused. */
    char client_id[MQE2E_CLIENT_ID_MAX_BYTES + 32];
    mqe2e_authority_pin pin;
    if (c->client_id != NULL)
        n = snprintf(client_id, sizeof client_id, "%s", c->client_id);
    else if (mqe2e_keystore_authority(s->keystore.ks, &pin) == MQE2E_OK)
        /* An enrolled client's control inbox is named after its client id, and
         * the broker ACL (docs/mosquitto-acl.conf) ties it to the MQTT id. */
        n = snprintf(client_id, sizeof client_id, "%s", mqe2e_keystore_client_id(s->keystore.ks));
    else
        n = snprintf(client_id, sizeof client_id, "%s-%ld",
                     mqe2e_keystore_client_id(s->keystore.ks), (long)getpid());
    if (n < 0 || (size_t)n >= sizeof client_id) {
        cli_error("client id too long");
        return CLI_EXIT_USAGE;
    }
    int prc =
        mqe2e_MQTTClient_create(&s->client, uri, client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL);
    if (prc != MQTTCLIENT_SUCCESS) {
        s->client = NULL;
        cli_error("cannot create client for %s: %s", uri, mqe2e_MQTTClient_strerror(prc));
        return prc == MQTTCLIENT_BAD_PROTOCOL ? CLI_EXIT_USAGE : CLI_EXIT_BROKER;
    }
    mqe2e_MQTTClient_securityOptions sec = mqe2e_MQTTClient_securityOptions_initializer;
    sec.keystore = s->keystore.ks;
    sec.policy = s->policy;
    sec.onDropped = on_dropped;
    if (c->debug) {
        sec.onLog = on_log;
        sec.logLevel = MQE2E_LOG_DEBUG;
    }
    prc = mqe2e_MQTTClient_setSecurity(s->client, &sec);
    if (prc != MQTTCLIENT_SUCCESS) {
        cli_error("cannot attach keystore and policy: %s", mqe2e_MQTTClient_strerror(prc));
        return CLI_EXIT_KEY;
    }
    return CLI_EXIT_OK;
}

int cli_session_connect(cli_session *s, const cli_conn_args *c)
{
    MQTTClient_connectOptions opts = MQTTClient_connectOptions_initializer;
    opts.keepAliveInterval = 60;
    opts.cleansession = 1;
    opts.connectTimeout = 10;
    int rc = mqe2e_MQTTClient_connect(s->client, &opts);
    if (rc != MQTTCLIENT_SUCCESS) {
        cli_error("cannot connect to %s:%ld: %s", c->host, c->port, mqe2e_MQTTClient_strerror(rc));
        return cli_exit_for_client(rc) == CLI_EXIT_KEY ? CLI_EXIT_KEY : CLI_EXIT_BROKER;
    }
    s->connected = 1;
    if (c->debug) cli_error("connected to %s:%ld", c->host, c->port);
    return CLI_EXIT_OK;
}

void cli_session_close(cli_session *s)
{
    if (s->client != NULL) {
        /* Counters live in the client: record them before it goes. */
        (void)cli_stats_write(s, 1);
        if (s->connected && mqe2e_MQTTClient_isConnected(s->client))
            (void)mqe2e_MQTTClient_disconnect(s->client, 5000);
        mqe2e_MQTTClient_destroy(&s->client);
    }
    s->connected = 0;
    /* The client borrows policy and keystore: they go after it. */
    mqe2e_policy_free(s->policy);
    s->policy = NULL;
    cli_keystore_close(&s->keystore);
}
