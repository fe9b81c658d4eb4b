#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static const char usage[] =
    "usage: mqe2e sub -k KEYSTORE -t FILTER [-t FILTER]... [-h HOST] [-p PORT]\n"
    "                 [-C COUNT] [-W SECONDS] [-v] [-q QOS] [-i CLIENT_ID]\n"
    "                 [--policy RULE]... [-d] [--passphrase-file F | --key-file F]\n"
    "\n"
    "Subscribe through the encrypted client and print each authenticated,\n"
    "decrypted payload on its own line. Messages that fail any check are never\n"
    "printed; each is reported on stderr as\n"
    "  mqe2e: dropped message on TOPIC: REASON\n"
    "\n"
    "  -k, --keystore FILE   keystore\n"
    "  -h, --host HOST       broker host (default localhost)\n"
    "  -p, --port PORT       broker port (default 1883)\n"
    "  -t, --topic FILTER    topic filter to subscribe to (repeatable)\n"
    "  -C, --count N         exit after N messages\n"
    "  -W, --timeout SECONDS exit with code 4 after SECONDS (unless -C was reached)\n"
    "  -v, --verbose         print 'TOPIC PAYLOAD' instead of 'PAYLOAD'\n"
    "  -q, --qos QOS         subscription QoS 0, 1 or 2 (default 0)\n"
    "  -i, --id ID           MQTT client id (default: the keystore's client id when it is enrolled, else it + '-' + pid)\n"
    "      --policy RULE     extra rule tried before the keystore's groups:\n"
    "                        FILTER=group:NAME, FILTER=channel:PEER, FILTER=plaintext\n"
    "  -d, --debug           print connection progress on stderr\n"
    "      --passphrase-file F, --key-file F   keystore key source (see mqe2e --help)\n"
    "      --help            this text\n";

enum { OPT_TOPIC = 1, OPT_COUNT, OPT_TIMEOUT, OPT_VERBOSE, OPT_QOS };

static const cli_opt opts[] = {
    {'k', "keystore", 1, OPT_KEYSTORE},
    {0, "passphrase-file", 1, OPT_PASSPHRASE_FILE},
    {0, "key-file", 1, OPT_KEY_FILE},
    {'h', "host", 1, OPT_HOST},
    {'p', "port", 1, OPT_PORT},
    {'i', "id", 1, OPT_ID},
    {0, "policy", 1, OPT_POLICY},
    {'d', "debug", 0, OPT_DEBUG},
    {'t', "topic", 1, OPT_TOPIC},
    {'C', "count", 1, OPT_COUNT},
    {'W', "timeout", 1, OPT_TIMEOUT},
    {'v', "verbose", 0, OPT_VERBOSE},
    {'q', "qos", 1, OPT_QOS},
    {0, "help", 0, OPT_HELP},
    {0, NULL, 0, 0},
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static long monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void print_message(const char *topic, const MQTTClient_message *m, int verbose)
{
    if (verbose) {
        fputs(topic, stdout);
        fputc(' ', stdout);
    }
    if (m->payloadlen > 0) fwrite(m->payload, 1, (size_t)m->payloadlen, stdout);
    fputc('\n', stdout);
    fflush(stdout);
}

/* Receive until COUNT messages, the -W deadline, a signal or a lost connection. */
static int receive_loop(cli_session *s, long count, long timeout_s, int verbose)
{
    long deadline = timeout_s > 0 ? monotonic_ms() + timeout_s * 1000L : 0;
    long received = 0;
    while (!stop_requested && (count == 0 || received < count)) {
        unsigned long slice = 250UL;
        if (deadline != 0) {
            long left = deadline - monotonic_ms();
            if (left <= 0) {
                if (count > 0)
                    cli_error("timed out after %ld s with %ld of %ld messages", timeout_s, received,
                              count);
                else
                    cli_error("timed out after %ld s (%ld messages)", timeout_s, received);
                return CLI_EXIT_TIMEOUT;
            }
            if ((unsigned long)left < slice) slice = (unsigned long)left;
        }
        char *topic = NULL;
        int topic_len = 0;
        MQTTClient_message *m = NULL;
        int rc = mqe2e_MQTTClient_receive(s->client, &topic, &topic_len, &m, slice);
        if (m != NULL) {
            print_message(topic, m, verbose);
            received++;
            mqe2e_MQTTClient_freeMessage(&m);
        }
        if (topic != NULL) mqe2e_MQTTClient_free(topic);
        cli_stats_tick(s);
        if (rc != MQTTCLIENT_SUCCESS && rc != MQTTCLIENT_TOPICNAME_TRUNCATED) {
            if (!mqe2e_MQTTClient_isConnected(s->client)) {
                cli_error("connection to the broker lost");
                return CLI_EXIT_BROKER;
            }
        }
    }
    return CLI_EXIT_OK;
}

int cmd_sub(int argc, char **argv)
{
    cli_keystore_args k = {NULL, NULL, NULL};
    cli_conn_args c = {"localhost", 1883, NULL, NULL, 0, 0};
    char **filters = NULL;
    int *qoss = NULL;
    int nfilters = 0, verbose = 0;
    long count = 0, timeout_s = 0, qos = 0;
    int rc = CLI_EXIT_USAGE;
    cli_session s;
    memset(&s, 0, sizeof s);
    s.keystore.lock_fd = -1;

    cli_parser p;
    cli_parser_init(&p, argc, argv, "sub");
    int id = 0, r;
    const char *v;
    while ((r = cli_next(&p, opts, &id, &v)) != CLI_NEXT_END) {
        if (r == CLI_NEXT_ERROR) goto out;
        if (r == CLI_NEXT_POSITIONAL) {
            cli_error("unexpected argument '%s' (see 'mqe2e sub --help')", v);
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
        case OPT_TOPIC: {
            if (!mqe2e_topic_filter_valid(v)) {
                cli_error("'%s' is not a valid MQTT topic filter", v);
                goto out;
            }
            char **nf = realloc(filters, (size_t)(nfilters + 1) * sizeof *nf);
            if (nf == NULL) {
                cli_error("out of memory");
                goto out;
            }
            filters = nf;
            /* A copy: Paho's subscribeMany takes char *const *. */
            filters[nfilters] = strdup(v);
            if (filters[nfilters] == NULL) {
                cli_error("out of memory");
                goto out;
            }
            nfilters++;
            break;
        }
        case OPT_COUNT:
            if (cli_parse_long(&count, v, 1, 1000000000L, "-C") != 0) goto out;
            break;
        case OPT_TIMEOUT:
            if (cli_parse_long(&timeout_s, v, 1, 31536000L, "-W") != 0) goto out;
            break;
        case OPT_VERBOSE:
            verbose = 1;
            break;
        case OPT_QOS:
            if (cli_parse_long(&qos, v, 0, 2, "-q") != 0) goto out;
            break;
        default:
            break;
        }
    }
    if (cli_keystore_args_check(&k) != CLI_EXIT_OK) goto out;
    if (nfilters == 0) {
        cli_error("no topic filter given (-t FILTER)");
        goto out;
    }
    qoss = malloc((size_t)nfilters * sizeof *qoss);
    if (qoss == NULL) {
        cli_error("out of memory");
        goto out;
    }
    for (int i = 0; i < nfilters; i++)
        qoss[i] = (int)qos;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    rc = cli_session_prepare(&s, &k, &c);
    if (rc != CLI_EXIT_OK) goto out;
    s.command = "sub"; /* from here on, exit records the counters (KEYSTORE.stats) */
    rc = cli_session_connect(&s, &c);
    if (rc != CLI_EXIT_OK) goto out;
    int prc = mqe2e_MQTTClient_subscribeMany(s.client, nfilters, filters, qoss);
    if (prc == MQE2E_MQTTCLIENT_NO_POLICY) {
        cli_error("no policy covers the topic filter(s): refusing to subscribe");
        rc = CLI_EXIT_KEY;
        goto out;
    }
    if (prc != MQTTCLIENT_SUCCESS) {
        cli_error("cannot subscribe: %s", mqe2e_MQTTClient_strerror(prc));
        rc = cli_exit_for_client(prc);
        goto out;
    }
    for (int i = 0; i < nfilters; i++) {
        /* Paho reports a refused filter as granted QoS 0x80 in place of the QoS. */
        if (qoss[i] == 0x80) {
            cli_error("the broker refused the subscription to %s", filters[i]);
            rc = CLI_EXIT_BROKER;
            goto out;
        }
        if (c.debug) cli_error("subscribed to %s", filters[i]);
    }
    rc = receive_loop(&s, count, timeout_s, verbose);
out:
    cli_session_close(&s);
    cli_conn_args_free(&c);
    for (int i = 0; i < nfilters; i++)
        free(filters[i]);
    free(filters);
    free(qoss);
    return rc;
}
