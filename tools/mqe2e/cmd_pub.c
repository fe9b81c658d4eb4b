#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"

/* MQTT's largest payload (remaining length limit minus the headers). */
#define PUB_MAX_BYTES MQE2E_ENVELOPE_MAX_PAYLOAD

static const char usage[] =
    "usage: mqe2e pub -K KEYSTORE -t TOPIC (-m MESSAGE | -f FILE | -l | -s | -n)\n"
    "                 [-h HOST] [-p PORT] [-q QOS] [-r] [-i CLIENT_ID] [-u USER]\n"
    "                 [--cafile FILE] [--policy RULE]... [-d] [--passphrase-file F | --key-file F]\n"
    "\n"
    "Publish through the encrypted client: the payload is sealed for the topic's\n"
    "group before it leaves the process. A topic that no policy rule covers is\n"
    "refused (exit 2); nothing is ever sent in clear unless a rule says so.\n"
    "\n"
    "  -K, --keystore FILE   keystore\n"
    "  -t, --topic TOPIC     topic to publish on\n"
    "  -m, --message MSG     send MSG (-m '' sends an encrypted empty message)\n"
    "  -f, --file FILE       send the contents of FILE as one message\n"
    "  -l, --stdin-line      send each line of stdin as a message (blank lines skipped)\n"
    "  -s, --stdin-file      send all of stdin as one message\n"
    "  -n, --null-message    send a zero-length message in clear; with -r it clears the\n"
    "                        topic's retained message (receivers never deliver it)\n"
    "  -r, --retain          set the retain flag\n"
    "      --repeat N        publish the message N times\n"
    "      --repeat-delay S  wait S seconds between repeats\n"
    "  -q, --qos QOS         0, 1 or 2 (default 0)\n"
    "      --max-payload N   largest message in bytes (default 1048576, at most 268435456)\n"
    "      --policy RULE     extra rule tried before the keystore's groups:\n"
    "                        FILTER=group:NAME, FILTER=channel:PEER, FILTER=plaintext\n"
    "      --passphrase-file F, --key-file F   keystore key source (see mqe2e --help)\n"
    "      --help            this text\n"
    "\n" CLI_BROKER_HELP CLI_SESSION_HELP;

enum {
    OPT_TOPIC = 1,
    OPT_MESSAGE,
    OPT_FILE,
    OPT_LINES,
    OPT_STDIN,
    OPT_QOS,
    OPT_RETAIN,
    OPT_NULL,
    OPT_REPEAT,
    OPT_REPEAT_DELAY,
    OPT_MAX_PAYLOAD,
};

static const cli_opt opts[] = {
    CLI_KEYSTORE_OPTS,
    CLI_BROKER_OPTS,
    CLI_SESSION_OPTS,
    {0, "policy", 1, OPT_POLICY},
    {'t', "topic", 1, OPT_TOPIC},
    {'m', "message", 1, OPT_MESSAGE},
    {'f', "file", 1, OPT_FILE},
    {'l', "stdin-line", 0, OPT_LINES},
    {'s', "stdin-file", 0, OPT_STDIN},
    {'n', "null-message", 0, OPT_NULL},
    {'q', "qos", 1, OPT_QOS},
    {'r', "retain", 0, OPT_RETAIN},
    {0, "repeat", 1, OPT_REPEAT},
    {0, "repeat-delay", 1, OPT_REPEAT_DELAY},
    {0, "max-payload", 1, OPT_MAX_PAYLOAD},
    {0, "help", 0, OPT_HELP},
    {0, NULL, 0, 0},
};

static size_t max_payload = MQE2E_ENVELOPE_DEFAULT_MAX_PAYLOAD;

static int publish_one(cli_session *s, const char *topic, const uint8_t *data, size_t len, int qos,
                       int retain)
{
    if (len > (size_t)INT_MAX || len > max_payload) {
        cli_error("message too large (%zu bytes; the limit is %zu, raise it with --max-payload)",
                  len, max_payload);
        return CLI_EXIT_USAGE;
    }
    MQTTClient_deliveryToken dt = 0;
    int rc = cli_session_publish(s, topic, data, (int)len, qos, retain, &dt);
    if (rc == MQE2E_MQTTCLIENT_NO_POLICY) {
        cli_error("no policy covers topic %s: refusing to publish", topic);
        return CLI_EXIT_KEY;
    }
    if (rc != MQTTCLIENT_SUCCESS) {
        cli_error("cannot publish on %s: %s", topic, mqe2e_MQTTClient_strerror(rc));
        return cli_exit_for_client(rc);
    }
    if (qos > 0) {
        rc = mqe2e_MQTTClient_waitForCompletion(s->client, dt, 10000UL);
        if (rc != MQTTCLIENT_SUCCESS) {
            cli_error("delivery on %s not confirmed by the broker: %s", topic,
                      mqe2e_MQTTClient_strerror(rc));
            return CLI_EXIT_BROKER;
        }
    }
    return CLI_EXIT_OK;
}

/* All of stdin as one message; the caller wipes and frees *out. */
static int read_stdin(uint8_t **out, size_t *out_len)
{
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            size_t ncap = cap == 0 ? 4096 : cap * 2;
            if (ncap > max_payload + 1) ncap = max_payload + 1;
            if (ncap <= cap) {
                cli_error("stdin holds more than %zu bytes (raise the limit with --max-payload)",
                          max_payload);
                goto fail;
            }
            /* Grow by copy, not realloc, so no unwiped copy of the message is left behind. */
            uint8_t *nbuf = malloc(ncap);
            if (nbuf == NULL) {
                cli_error("out of memory");
                goto fail;
            }
            if (buf != NULL) {
                memcpy(nbuf, buf, len);
                sodium_memzero(buf, cap);
                free(buf);
            }
            buf = nbuf;
            cap = ncap;
        }
        size_t n = fread(buf + len, 1, cap - len, stdin);
        len += n;
        if (n == 0) {
            if (ferror(stdin)) {
                cli_error("cannot read stdin");
                goto fail;
            }
            break;
        }
    }
    *out = buf;
    *out_len = len;
    return 0;
fail:
    if (buf != NULL) {
        sodium_memzero(buf, cap);
        free(buf);
    }
    return -1;
}

static int publish_lines(cli_session *s, const char *topic, int qos, int retain)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = CLI_EXIT_OK;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        size_t len = (size_t)n;
        if (len > 0 && line[len - 1] == '\n') len--;
        if (len > 0 && line[len - 1] == '\r') len--;
        if (len == 0) continue;
        rc = publish_one(s, topic, (const uint8_t *)line, len, qos, retain);
        if (rc != CLI_EXIT_OK) break;
    }
    if (line != NULL) {
        sodium_memzero(line, cap);
        free(line);
    }
    return rc;
}

/* Data never arrives (pub subscribes to nothing); control frames are consumed
 * by the front before this is called. */
static int discard_message(void *context, char *topic, int topic_len, MQTTClient_message *msg)
{
    (void)context;
    (void)topic_len;
    mqe2e_MQTTClient_freeMessage(&msg);
    mqe2e_MQTTClient_free(topic);
    return 1;
}

/* -n: a zero-length message. On an encrypted topic it exists only to clear
 * the retained value (the broker deletes it on an empty retained publish),
 * which carries no data; receivers never deliver it. */
static int publish_null(cli_session *s, const char *topic, int qos, int retain,
                        mqe2e_policy_kind kind)
{
    if (kind == MQE2E_POLICY_PLAINTEXT) return publish_one(s, topic, (const uint8_t *)"", 0, qos, retain);
    MQTTClient_deliveryToken dt = 0;
    int rc = mqe2e_MQTTClient_clearRetained(s->client, topic, qos, &dt);
    if (rc != MQTTCLIENT_SUCCESS) {
        cli_error("cannot clear the retained message of %s: %s", topic,
                  mqe2e_MQTTClient_strerror(rc));
        return cli_exit_for_client(rc);
    }
    if (qos > 0 && (rc = mqe2e_MQTTClient_waitForCompletion(s->client, dt, 10000UL)) !=
                       MQTTCLIENT_SUCCESS) {
        cli_error("clearing %s not confirmed by the broker: %s", topic,
                  mqe2e_MQTTClient_strerror(rc));
        return CLI_EXIT_BROKER;
    }
    return CLI_EXIT_OK;
}

int cmd_pub(int argc, char **argv)
{
    cli_keystore_args k = {NULL, NULL, NULL};
    cli_conn_args c;
    const char *topic = NULL, *message = NULL, *file = NULL;
    int lines = 0, whole_stdin = 0, retain = 0, sources = 0, null_msg = 0;
    long qos = 0, repeat = 1, repeat_delay = 0, maxp = 0;
    int rc = CLI_EXIT_USAGE;
    uint8_t *payload = NULL;
    size_t payload_len = 0;
    cli_session s;
    memset(&s, 0, sizeof s);
    memset(&c, 0, sizeof c);
    s.keystore.lock_fd = -1;
    cli_broker_args_init(&c.b);

    cli_parser p;
    cli_parser_init(&p, argc, argv, "pub");
    if (cli_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return CLI_EXIT_OK;
    }
    if ((rc = cli_broker_load_options(&c.b, opts)) != CLI_EXIT_OK) goto out;
    rc = CLI_EXIT_USAGE;
    int id = 0, r;
    const char *v;
    while ((r = cli_next(&p, opts, &id, &v)) != CLI_NEXT_END) {
        if (r == CLI_NEXT_ERROR) goto out;
        if (r == CLI_NEXT_POSITIONAL) {
            cli_error("unexpected argument '%s' (see 'mqe2e pub --help')", v);
            goto out;
        }
        if (cli_keystore_arg(&k, id, v)) continue;
        int cr = cli_conn_arg(&c, id, v);
        if (cr < 0) goto out;
        if (cr > 0) continue;
        switch (id) {
        case OPT_HELP:
            fputs(usage, stdout);
            rc = CLI_EXIT_OK;
            goto out;
        case OPT_TOPIC:
            topic = v;
            break;
        case OPT_MESSAGE:
            message = v;
            sources++;
            break;
        case OPT_FILE:
            file = v;
            sources++;
            break;
        case OPT_LINES:
            lines = 1;
            sources++;
            break;
        case OPT_STDIN:
            whole_stdin = 1;
            sources++;
            break;
        case OPT_NULL:
            null_msg = 1;
            sources++;
            break;
        case OPT_QOS:
            if (cli_parse_long(&qos, v, 0, 2, "-q") != 0) goto out;
            break;
        case OPT_RETAIN:
            retain = 1;
            break;
        case OPT_REPEAT:
            if (cli_parse_long(&repeat, v, 1, 1000000000L, "--repeat") != 0) goto out;
            break;
        case OPT_REPEAT_DELAY:
            if (cli_parse_long(&repeat_delay, v, 0, 86400L, "--repeat-delay") != 0) goto out;
            break;
        case OPT_MAX_PAYLOAD:
            if (cli_parse_long(&maxp, v, 1, (long)MQE2E_ENVELOPE_MAX_PAYLOAD, "--max-payload") != 0)
                goto out;
            max_payload = (size_t)maxp;
            break;
        default:
            break;
        }
    }
    cli_set_quiet(c.b.quiet);
    if (cli_keystore_args_check(&k) != CLI_EXIT_OK) goto out;
    if (topic == NULL) topic = c.b.url_topic;
    if (topic == NULL) {
        cli_error("no topic given (-t TOPIC)");
        goto out;
    }
    if (!mqe2e_topic_name_valid(topic)) {
        cli_error("'%s' is not a valid topic name to publish on", topic);
        goto out;
    }
    if (sources != 1) {
        cli_error("give exactly one of -m MESSAGE, -f FILE, -l, -s or -n");
        goto out;
    }
    if (lines && repeat > 1) {
        cli_error("--repeat cannot be combined with -l");
        goto out;
    }
    c.max_payload = max_payload;

    rc = cli_session_prepare(&s, &k, &c);
    if (rc != CLI_EXIT_OK) goto out;
    s.command = "pub"; /* from here on, exit records the counters (KEYSTORE.stats) */
    /* Refuse before connecting: an unprotected topic never reaches the broker. */
    mqe2e_policy_kind kind;
    const char *target = NULL;
    int lrc = mqe2e_policy_lookup(s.policy, topic, &kind, &target);
    if (lrc == MQE2E_ERR_NO_POLICY) {
        cli_error("no policy covers topic %s: refusing to publish (create a group for it, or "
                  "add --policy '%s=plaintext' to send it in clear)",
                  topic, topic);
        rc = CLI_EXIT_KEY;
        goto out;
    }
    if (lrc != MQE2E_OK) {
        cli_error("cannot look up the policy of %s: %s", topic, mqe2e_strerror(lrc));
        rc = CLI_EXIT_KEY;
        goto out;
    }
    if (kind == MQE2E_POLICY_PLAINTEXT && c.b.debug)
        cli_error("topic %s is explicitly plaintext: sending in clear", topic);
    if (null_msg && kind != MQE2E_POLICY_PLAINTEXT && !retain) {
        cli_error("-n on the encrypted topic %s only clears its retained message: add -r "
                  "(an encrypted empty message is -m '')",
                  topic);
        rc = CLI_EXIT_USAGE;
        goto out;
    }

    if (file != NULL) {
        if (cli_read_file(&payload, &payload_len, file, max_payload) != 0) {
            rc = CLI_EXIT_USAGE;
            goto out;
        }
    } else if (whole_stdin) {
        if (read_stdin(&payload, &payload_len) != 0) {
            rc = CLI_EXIT_USAGE;
            goto out;
        }
    }

    /* A publisher subscribes to nothing, but an enrolled keystore's control
     * plane (key pushes, HELLO replies) arrives as messages, which Paho only
     * hands to a client with a messageArrived callback. */
    if (mqe2e_MQTTClient_setCallbacks(s.client, NULL, NULL, discard_message, NULL) !=
        MQTTCLIENT_SUCCESS) {
        cli_error("cannot set callbacks");
        rc = CLI_EXIT_BROKER;
        goto out;
    }
    rc = cli_session_connect(&s, &c);
    if (rc != CLI_EXIT_OK) goto out;
    for (long i = 0; i < repeat && rc == CLI_EXIT_OK; i++) {
        if (i > 0 && repeat_delay > 0) sleep((unsigned)repeat_delay);
        if (lines)
            rc = publish_lines(&s, topic, (int)qos, retain);
        else if (null_msg)
            rc = publish_null(&s, topic, (int)qos, retain, kind);
        else if (message != NULL)
            rc = publish_one(&s, topic, (const uint8_t *)message, strlen(message), (int)qos,
                             retain);
        else
            rc = publish_one(&s, topic, payload, payload_len, (int)qos, retain);
    }
out:
    if (payload != NULL) {
        sodium_memzero(payload, payload_len);
        free(payload);
    }
    cli_session_close(&s);
    cli_conn_args_free(&c);
    return rc;
}
