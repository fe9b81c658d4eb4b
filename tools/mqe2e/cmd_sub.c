#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static const char usage[] =
    "usage: mqe2e sub -K KEYSTORE -t FILTER [-t FILTER]... [-h HOST] [-p PORT]\n"
    "                 [-C COUNT] [-W SECONDS] [-v] [-q QOS] [-i CLIENT_ID] [-u USER]\n"
    "                 [--cafile FILE] [--policy RULE]... [-d] [--passphrase-file F | --key-file F]\n"
    "\n"
    "Subscribe through the encrypted client and print each authenticated,\n"
    "decrypted payload on its own line. Messages that fail any check are never\n"
    "printed; each is reported on stderr as\n"
    "  mqe2e: dropped message on TOPIC: REASON\n"
    "\n"
    "  -K, --keystore FILE   keystore\n"
    "  -t, --topic FILTER    topic filter to subscribe to (repeatable)\n"
    "  -T, --filter-out F    do not print messages on topics matching F (repeatable)\n"
    "  -U, --unsubscribe F   unsubscribe from F first (with -c: end a kept subscription)\n"
    "  -C, --count N         exit after N messages\n"
    "  -W, --timeout SECONDS exit with code 4 after SECONDS (unless -C was reached)\n"
    "  -E                    exit once the subscriptions are acknowledged\n"
    "  -R, --no-retained     do not print retained (stale) messages\n"
    "      --retained-only   print only retained messages; exit at the first live one\n"
    "      --remove-retained clear each retained message received (needs write access)\n"
    "  -v, --verbose         print 'TOPIC PAYLOAD' instead of 'PAYLOAD'\n"
    "  -N                    no newline after the payload\n"
    "  -F, --format FMT      output format: %t topic, %p payload, %x/%X hex payload,\n"
    "                        %l length, %q QoS, %r retained, %m message id, %U Unix time,\n"
    "                        %I ISO 8601 time, %% a percent sign; \\n \\t \\\\\n"
    "  -q, --qos QOS         subscription QoS 0, 1 or 2 (default 0)\n"
    "      --max-payload N   largest message in bytes (default 1048576, at most 268435456)\n"
    "      --policy RULE     extra rule tried before the keystore's groups:\n"
    "                        FILTER=group:NAME, FILTER=channel:PEER, FILTER=plaintext\n"
    "      --passphrase-file F, --key-file F   keystore key source (see mqe2e --help)\n"
    "      --help            this text\n"
    "\n" CLI_BROKER_HELP CLI_SESSION_HELP;

enum {
    OPT_TOPIC = 1,
    OPT_COUNT,
    OPT_TIMEOUT,
    OPT_VERBOSE,
    OPT_QOS,
    OPT_FILTER_OUT,
    OPT_UNSUB,
    OPT_EXIT_AFTER_SUB,
    OPT_NO_RETAINED,
    OPT_RETAINED_ONLY,
    OPT_REMOVE_RETAINED,
    OPT_NO_EOL,
    OPT_FORMAT,
    OPT_MAX_PAYLOAD,
};

static const cli_opt opts[] = {
    CLI_KEYSTORE_OPTS,
    CLI_BROKER_OPTS,
    CLI_SESSION_OPTS,
    {0, "policy", 1, OPT_POLICY},
    {'t', "topic", 1, OPT_TOPIC},
    {'T', "filter-out", 1, OPT_FILTER_OUT},
    {'U', "unsubscribe", 1, OPT_UNSUB},
    {'C', "count", 1, OPT_COUNT},
    {'W', "timeout", 1, OPT_TIMEOUT},
    {'E', NULL, 0, OPT_EXIT_AFTER_SUB},
    {'R', "no-retained", 0, OPT_NO_RETAINED},
    {0, "retained-only", 0, OPT_RETAINED_ONLY},
    {0, "remove-retained", 0, OPT_REMOVE_RETAINED},
    {'v', "verbose", 0, OPT_VERBOSE},
    {'N', NULL, 0, OPT_NO_EOL},
    {'F', "format", 1, OPT_FORMAT},
    {'q', "qos", 1, OPT_QOS},
    {0, "max-payload", 1, OPT_MAX_PAYLOAD},
    {0, "help", 0, OPT_HELP},
    {0, NULL, 0, 0},
};

/* What to print and which messages to act on. */
typedef struct sub_output {
    int verbose, no_eol, no_retained, retained_only, remove_retained;
    const char *format;
    char **filter_out;
    int n_filter_out;
} sub_output;

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

static void print_hex(const MQTTClient_message *m, const char *digits)
{
    const unsigned char *p = m->payload;
    for (int i = 0; i < m->payloadlen; i++) {
        fputc(digits[p[i] >> 4], stdout);
        fputc(digits[p[i] & 15], stdout);
    }
}

/* -F: mosquitto_sub's format characters (the ones that make sense here). */
static void print_formatted(const char *fmt, const char *topic, const MQTTClient_message *m)
{
    for (const char *f = fmt; *f != '\0'; f++) {
        if (*f == '\\' && f[1] != '\0') {
            f++;
            fputc(*f == 'n' ? '\n' : *f == 't' ? '\t' : *f == '0' ? '\0' : *f, stdout);
            continue;
        }
        if (*f != '%' || f[1] == '\0') {
            fputc(*f, stdout);
            continue;
        }
        f++;
        switch (*f) {
        case 't':
            fputs(topic, stdout);
            break;
        case 'p':
            if (m->payloadlen > 0) fwrite(m->payload, 1, (size_t)m->payloadlen, stdout);
            break;
        case 'x':
            print_hex(m, "0123456789abcdef");
            break;
        case 'X':
            print_hex(m, "0123456789ABCDEF");
            break;
        case 'l':
            printf("%d", m->payloadlen);
            break;
        case 'q':
            printf("%d", m->qos);
            break;
        case 'r':
            printf("%d", m->retained ? 1 : 0);
            break;
        case 'm':
            printf("%d", m->msgid);
            break;
        case 'U': {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            printf("%lld.%09ld", (long long)ts.tv_sec, (long)ts.tv_nsec);
            break;
        }
        case 'I': {
            char buf[32];
            time_t now = time(NULL);
            struct tm tm;
            if (gmtime_r(&now, &tm) != NULL && strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm))
                fputs(buf, stdout);
            break;
        }
        case '%':
            fputc('%', stdout);
            break;
        default:
            fputc('%', stdout);
            fputc(*f, stdout);
            break;
        }
    }
}

static void print_message(const char *topic, const MQTTClient_message *m, const sub_output *o)
{
    if (o->format != NULL) {
        print_formatted(o->format, topic, m);
    } else {
        if (o->verbose) {
            fputs(topic, stdout);
            fputc(' ', stdout);
        }
        if (m->payloadlen > 0) fwrite(m->payload, 1, (size_t)m->payloadlen, stdout);
    }
    if (!o->no_eol) fputc('\n', stdout);
    fflush(stdout);
}

static int filtered_out(const sub_output *o, const char *topic)
{
    for (int i = 0; i < o->n_filter_out; i++)
        if (mqe2e_topic_matches(o->filter_out[i], topic)) return 1;
    return 0;
}

/* Receive until COUNT messages, the -W deadline, a signal or a lost connection. */
static int receive_loop(cli_session *s, long count, long timeout_s, const sub_output *o)
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
        int done = 0;
        if (m != NULL) {
            if (o->retained_only && !m->retained) {
                done = 1; /* as mosquitto_sub: the first live message ends it */
            } else if (!(o->no_retained && m->retained) && !filtered_out(o, topic)) {
                print_message(topic, m, o);
                received++;
            }
            if (!done && o->remove_retained && m->retained) {
                MQTTClient_deliveryToken dt = 0;
                int crc = mqe2e_MQTTClient_clearRetained(s->client, topic, 1, &dt);
                if (crc == MQTTCLIENT_SUCCESS)
                    crc = mqe2e_MQTTClient_waitForCompletion(s->client, dt, 10000UL);
                if (crc != MQTTCLIENT_SUCCESS)
                    cli_error("cannot clear the retained message of %s: %s", topic,
                              mqe2e_MQTTClient_strerror(crc));
            }
            mqe2e_MQTTClient_freeMessage(&m);
        }
        if (topic != NULL) mqe2e_MQTTClient_free(topic);
        cli_stats_tick(s);
        if (done) break;
        if (rc != MQTTCLIENT_SUCCESS && rc != MQTTCLIENT_TOPICNAME_TRUNCATED) {
            if (!mqe2e_MQTTClient_isConnected(s->client)) {
                cli_error("connection to the broker lost");
                return CLI_EXIT_BROKER;
            }
        }
    }
    return CLI_EXIT_OK;
}

static int add_filter(char ***list, int *n, const char *v)
{
    if (!mqe2e_topic_filter_valid(v)) {
        cli_error("'%s' is not a valid MQTT topic filter", v);
        return -1;
    }
    char **nf = realloc(*list, (size_t)(*n + 1) * sizeof *nf);
    if (nf == NULL) {
        cli_error("out of memory");
        return -1;
    }
    *list = nf;
    /* A copy: Paho's subscribeMany takes char *const *. */
    if ((nf[*n] = strdup(v)) == NULL) {
        cli_error("out of memory");
        return -1;
    }
    (*n)++;
    return 0;
}

static void free_filters(char **list, int n)
{
    for (int i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

int cmd_sub(int argc, char **argv)
{
    cli_keystore_args k = {NULL, NULL, NULL};
    cli_conn_args c;
    char **filters = NULL, **unsubs = NULL;
    int *qoss = NULL;
    int nfilters = 0, nunsubs = 0, exit_after_sub = 0;
    long count = 0, timeout_s = 0, qos = 0, maxp = 0;
    sub_output o;
    int rc = CLI_EXIT_USAGE;
    cli_session s;
    memset(&s, 0, sizeof s);
    memset(&c, 0, sizeof c);
    memset(&o, 0, sizeof o);
    s.keystore.lock_fd = -1;
    cli_broker_args_init(&c.b);

    if (cli_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return CLI_EXIT_OK;
    }
    if ((rc = cli_broker_load_options(&c.b, opts)) != CLI_EXIT_OK) goto out;
    rc = CLI_EXIT_USAGE;
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
        case OPT_TOPIC:
            if (add_filter(&filters, &nfilters, v) != 0) goto out;
            break;
        case OPT_FILTER_OUT:
            if (add_filter(&o.filter_out, &o.n_filter_out, v) != 0) goto out;
            break;
        case OPT_UNSUB:
            if (add_filter(&unsubs, &nunsubs, v) != 0) goto out;
            break;
        case OPT_COUNT:
            if (cli_parse_long(&count, v, 1, 1000000000L, "-C") != 0) goto out;
            break;
        case OPT_TIMEOUT:
            if (cli_parse_long(&timeout_s, v, 1, 31536000L, "-W") != 0) goto out;
            break;
        case OPT_VERBOSE:
            o.verbose = 1;
            break;
        case OPT_QOS:
            if (cli_parse_long(&qos, v, 0, 2, "-q") != 0) goto out;
            break;
        case OPT_EXIT_AFTER_SUB:
            exit_after_sub = 1;
            break;
        case OPT_NO_RETAINED:
            o.no_retained = 1;
            break;
        case OPT_RETAINED_ONLY:
            o.retained_only = 1;
            break;
        case OPT_REMOVE_RETAINED:
            o.remove_retained = 1;
            break;
        case OPT_NO_EOL:
            o.no_eol = 1;
            break;
        case OPT_FORMAT:
            o.format = v;
            break;
        case OPT_MAX_PAYLOAD:
            if (cli_parse_long(&maxp, v, 1, (long)MQE2E_ENVELOPE_MAX_PAYLOAD, "--max-payload") != 0)
                goto out;
            c.max_payload = (size_t)maxp;
            break;
        default:
            break;
        }
    }
    cli_set_quiet(c.b.quiet);
    if (cli_keystore_args_check(&k) != CLI_EXIT_OK) goto out;
    if (nfilters == 0 && c.b.url_topic != NULL && add_filter(&filters, &nfilters, c.b.url_topic) != 0)
        goto out;
    if (nfilters == 0 && nunsubs == 0) {
        cli_error("no topic filter given (-t FILTER)");
        goto out;
    }
    if (o.no_retained && o.retained_only) {
        cli_error("-R and --retained-only exclude each other");
        goto out;
    }
    qoss = malloc((size_t)(nfilters > 0 ? nfilters : 1) * sizeof *qoss);
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
    if (nunsubs > 0) {
        int urc;
        if (s.mqtt5) {
            MQTTResponse ur = mqe2e_MQTTClient_unsubscribeMany5(s.client, nunsubs, unsubs, NULL);
            urc = (int)ur.reasonCode;
            MQTTResponse_free(ur);
        } else {
            urc = mqe2e_MQTTClient_unsubscribeMany(s.client, nunsubs, unsubs);
        }
        if (urc != MQTTCLIENT_SUCCESS) {
            cli_error("cannot unsubscribe: %s", mqe2e_MQTTClient_strerror(urc));
            rc = cli_exit_for_client(urc);
            goto out;
        }
        if (nfilters == 0) goto out;
    }
    int prc = cli_session_subscribe(&s, nfilters, filters, qoss);
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
            cli_error("the broker refused the subscription to %s (ACL?)", filters[i]);
            rc = CLI_EXIT_BROKER;
            goto out;
        }
        if (c.b.debug) cli_error("subscribed to %s", filters[i]);
    }
    if (exit_after_sub) goto out;
    rc = receive_loop(&s, count, timeout_s, &o);
out:
    cli_session_close(&s);
    cli_conn_args_free(&c);
    free_filters(filters, nfilters);
    free_filters(unsubs, nunsubs);
    free_filters(o.filter_out, o.n_filter_out);
    free(qoss);
    return rc;
}
