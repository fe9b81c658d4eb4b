/* mqe2e enroll: one ENROLL round trip with the authority over the broker,
 * then the pin, the credential, the group keys and the revocation list go
 * into the keystore.
 *
 * The round trip goes through the CLI's one request/response exchange with
 * the authority (exchange.c): the encrypted front needs what enrollment
 * produces. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"
#include "exchange.h"

static const char usage[] =
    "usage: mqe2e enroll -K KEYSTORE [--ticket-file FILE | --ticket TICKET]\n"
    "                    [-h HOST] [-p PORT] [-u USER] [--cafile FILE] [-W SECONDS] [-d]\n"
    "                    [--passphrase-file FILE | --key-file FILE] [--kdf LIMITS]\n"
    "\n"
    "Enroll this device with the authority named in the ticket: one round trip\n"
    "over the broker (Noise IKpsk2, the ticket's token as the pre-shared key).\n"
    "Stores the authority pin, the issued credential, the group keys and the\n"
    "revocation list in the keystore, then prints a one-line summary.\n"
    "\n"
    "  -K, --keystore FILE      keystore; created with the ticket's client id if\n"
    "                           it does not exist yet\n"
    "      --ticket-file FILE   read the ticket from FILE (first line)\n"
    "      --ticket TICKET      the ticket itself (visible to other local users\n"
    "                           through ps: prefer MQE2E_TICKET or --ticket-file)\n"
    "  -W, --timeout SECONDS    give up after SECONDS (default 30)\n"
    "      --passphrase-file F  read the keystore passphrase from F's first line\n"
    "      --key-file F         use a raw 32-byte key (or 64 hex digits) from F\n"
    CLI_KDF_HELP
    "      --help               this text\n"
    "\n"
    "\n" CLI_BROKER_HELP
    "(-d also prints handshake sizes and retries.)\n"
    "Without a ticket option the ticket comes from MQE2E_TICKET.\n"
    "Exit codes: 0 enrolled, 1 usage, 2 key/ticket error or refused by the\n"
    "authority, 3 broker, 4 no answer before -W, 5 broker login refused, 6 TLS failed.\n";

enum { OPT_TICKET = 1, OPT_TICKET_FILE, OPT_TIMEOUT, OPT_KDF };

static const cli_opt opts[] = {
    CLI_KEYSTORE_OPTS,
    CLI_BROKER_OPTS,
    {0, "ticket", 1, OPT_TICKET},
    {0, "ticket-file", 1, OPT_TICKET_FILE},
    {'W', "timeout", 1, OPT_TIMEOUT},
    {0, "kdf", 1, OPT_KDF},
    {0, "help", 0, OPT_HELP},
    {0, NULL, 0, 0},
};

/* Seconds between fresh ENROLL attempts while no reply arrives. */
#define ENROLL_RETRY_S 4.0

/* Ticket text from --ticket-file, MQE2E_TICKET or --ticket (in that order),
 * into sodium_malloc() memory with surrounding whitespace removed. */
static int read_ticket_text(char **out, const char *file, const char *arg)
{
    uint8_t *raw = NULL;
    size_t raw_len = 0;
    const char *src;
    size_t len;

    *out = NULL;
    if (file != NULL) {
        if (cli_read_file(&raw, &raw_len, file, MQE2E_TICKET_TEXT_MAX + 2U) != 0)
            return CLI_EXIT_KEY;
        src = (const char *)raw;
        len = raw_len;
    } else if (getenv("MQE2E_TICKET") != NULL) {
        src = getenv("MQE2E_TICKET");
        len = strlen(src);
    } else if (arg != NULL) {
        src = arg;
        len = strlen(src);
    } else {
        cli_error("no ticket: set MQE2E_TICKET or give --ticket-file FILE (or --ticket TICKET)");
        return CLI_EXIT_USAGE;
    }
    while (len > 0 && (src[len - 1] == '\n' || src[len - 1] == '\r' || src[len - 1] == ' '))
        len--;
    while (len > 0 && (*src == ' ' || *src == '\t')) {
        src++;
        len--;
    }
    char *t = sodium_malloc(len + 1U);
    if (t == NULL) {
        if (raw != NULL) sodium_memzero(raw, raw_len);
        free(raw);
        cli_error("out of memory");
        return CLI_EXIT_KEY;
    }
    memcpy(t, src, len);
    t[len] = '\0';
    if (raw != NULL) sodium_memzero(raw, raw_len);
    free(raw);
    *out = t;
    return CLI_EXIT_OK;
}

static void print_time(char *buf, size_t cap, uint64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm) == NULL || strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        (void)snprintf(buf, cap, "%llu", (unsigned long long)t);
}

/* What the shared apply reports that an operator should see. */
static void on_update_event(void *ctx, const mqe2e_update_event *ev)
{
    (void)ctx;
    if (ev->kind == MQE2E_UPDATE_REVOCATIONS && ev->rc == MQE2E_ERR_REPLAY) {
        cli_error("ignoring a revocation list older than the keystore's (version %llu < %llu)",
                  (unsigned long long)ev->version, (unsigned long long)ev->held_version);
    } else if (ev->kind == MQE2E_UPDATE_REVOCATIONS && ev->rc != MQE2E_OK) {
        /* The credential and keys are authenticated; only the list is bad. */
        cli_error("ignoring a revocation list that does not verify: %s", mqe2e_strerror(ev->rc));
    } else if (ev->kind == MQE2E_UPDATE_BUNDLE && ev->rc != MQE2E_OK) {
        cli_error("cannot apply epoch %lu of group '%s': %s", (unsigned long)ev->bundle->epoch,
                  ev->group, mqe2e_strerror(ev->rc));
    }
}

/* Store the pin, then everything the reply brought, the way the device
 * session applies a HELLO reply (mqe2e_control_update_apply). @return exit code. */
static int store_reply(mqe2e_keystore *ks, const mqe2e_ticket *t, const mqe2e_control_update *r)
{
    mqe2e_authority_pin pin;
    int rc;

    memset(&pin, 0, sizeof pin);
    memcpy(pin.authority_id, t->authority_id, strlen(t->authority_id) + 1U);
    memcpy(pin.control_prefix, t->control_prefix, strlen(t->control_prefix) + 1U);
    memcpy(pin.sign_public, t->authority_sign_public, sizeof pin.sign_public);
    memcpy(pin.dh_public, t->authority_dh_public, sizeof pin.dh_public);
    rc = mqe2e_keystore_set_authority(ks, &pin);
    if (rc == MQE2E_ERR_EXISTS) {
        cli_error("keystore is already enrolled with another authority");
        return CLI_EXIT_KEY;
    }
    if (rc == MQE2E_OK)
        rc = mqe2e_control_update_apply(ks, r, t->authority_sign_public, cli_now(), 0u,
                                        on_update_event, NULL);
    if (rc != MQE2E_OK) {
        cli_error("cannot store the enrollment: %s", mqe2e_strerror(rc));
        return CLI_EXIT_KEY;
    }
    return CLI_EXIT_OK;
}

static const char *status_text(int32_t s)
{
    switch (s) {
    case MQE2E_STATUS_UNKNOWN_CLIENT:
        return "unknown client";
    case MQE2E_STATUS_REVOKED:
        return "this client is revoked (a revoked identity cannot enroll again: use a new "
               "client id and ticket)";
    case MQE2E_STATUS_TOKEN_USED:
        return "token already used (only the device that used it may retry, within 120 s)";
    case MQE2E_STATUS_ID_ACTIVE:
        return "this client id is enrolled on another device; replacing it takes a ticket made "
               "with `mqe2e token create --replace`";
    case MQE2E_STATUS_TOKEN_EXPIRED:
        return "token expired";
    default:
        return "refused";
    }
}

typedef struct enroll_run {
    const mqe2e_ticket *ticket;
    mqe2e_keystore *ks;
    cli_exchange x;
    mqe2e_enroll_device *st; /* the handshake in flight */
    uint8_t *frame;          /* MQE2E_CONTROL_MAX_FRAME_BYTES */
    long timeout_s;
    int debug;
} enroll_run;

/* Publish a fresh step 1 (a new handshake replaces e->st). @return exit code. */
static int send_step1(enroll_run *e)
{
    uint8_t dh_sk[32];
    uint8_t sign_pk[32];
    size_t len = 0;
    int rc;

    mqe2e_enroll_device_free(e->st);
    e->st = NULL;
    (void)mqe2e_keystore_identity_public(e->ks, sign_pk, NULL);
    rc = mqe2e_keystore_dh_secret(e->ks, dh_sk);
    if (rc == MQE2E_OK)
        rc = mqe2e_enroll_begin(&e->st, e->frame, MQE2E_CONTROL_MAX_FRAME_BYTES, &len, e->ticket,
                                dh_sk, sign_pk, cli_now());
    sodium_memzero(dh_sk, sizeof dh_sk);
    if (rc != MQE2E_OK) {
        cli_error("cannot start enrollment: %s",
                  rc == MQE2E_ERR_EXPIRED ? "the ticket expired" : mqe2e_strerror(rc));
        return CLI_EXIT_KEY;
    }
    if (e->debug) fprintf(stderr, "mqe2e: ENROLL step 1: %zu bytes\n", len);
    return cli_exchange_send(&e->x, e->frame, len);
}

/* A message on the inbox: the reply to the handshake in flight, stored. */
static int enroll_reply(void *ctx, const uint8_t *payload, size_t len)
{
    enroll_run *e = ctx;
    mqe2e_control_update reply;
    mqe2e_credential *cred = NULL;
    int rc;

    memset(&reply, 0, sizeof reply);
    if (e->debug) fprintf(stderr, "mqe2e: reply: %zu bytes\n", len);
    int frc = mqe2e_enroll_finish(e->st, &reply, &cred, payload, len, cli_now());
    if (frc == MQE2E_ERR_STATE || frc == MQE2E_ERR_DECODE) {
        /* Someone else's frame, or a stale reply to an earlier attempt. */
        rc = CLI_EXCHANGE_NOT_MINE;
    } else if (frc == MQE2E_ERR_POLICY) {
        cli_error("enrollment refused by the authority: %s", status_text(reply.status));
        rc = CLI_EXIT_KEY;
    } else if (frc == MQE2E_ERR_AUTH) {
        /* Forged or corrupted: this handshake is dead, start a new one. */
        if (e->debug) fprintf(stderr, "mqe2e: reply failed authentication; retrying\n");
        rc = CLI_EXCHANGE_AGAIN;
    } else if (frc != MQE2E_OK) {
        cli_error("enrollment failed: %s", mqe2e_strerror(frc));
        rc = CLI_EXIT_KEY;
    } else {
        rc = store_reply(e->ks, e->ticket, &reply);
        if (rc == CLI_EXIT_OK) {
            char exp[32];
            print_time(exp, sizeof exp, mqe2e_credential_expires_at(cred));
            printf("enrolled %s with %s: credential serial %llu expires %s; groups (%zu):",
                   mqe2e_credential_client_id(cred), e->ticket->authority_id,
                   (unsigned long long)mqe2e_credential_serial(cred), exp,
                   mqe2e_keystore_group_count(e->ks));
            for (size_t i = 0; i < mqe2e_keystore_group_count(e->ks); i++)
                printf(" %s", mqe2e_keystore_group_name(e->ks, i));
            printf("\n");
        }
    }
    mqe2e_credential_free(cred);
    mqe2e_control_update_wipe(&reply);
    return rc;
}

/* The round trip, with a fresh handshake every ENROLL_RETRY_S while no
 * reply comes and after a forged one. @return exit code. */
static int enroll_exchange(enroll_run *e)
{
    if ((e->frame = malloc(MQE2E_CONTROL_MAX_FRAME_BYTES)) == NULL) {
        cli_error("out of memory");
        return CLI_EXIT_KEY;
    }
    double deadline = cli_exchange_clock() + (double)e->timeout_s;
    int rc = send_step1(e);
    while (rc == CLI_EXIT_OK) {
        double retry_at = cli_exchange_clock() + ENROLL_RETRY_S;
        rc = cli_exchange_wait(&e->x, retry_at < deadline ? retry_at : deadline, enroll_reply, e);
        if (rc == CLI_EXCHANGE_AGAIN ||
            (rc == CLI_EXIT_TIMEOUT && cli_exchange_clock() < deadline)) {
            if (rc == CLI_EXIT_TIMEOUT && e->debug)
                fprintf(stderr, "mqe2e: no reply yet, retrying with a new handshake\n");
            rc = send_step1(e);
            continue;
        }
        if (rc == CLI_EXIT_TIMEOUT)
            cli_error("no answer from the authority within %ld s", e->timeout_s);
        break;
    }
    mqe2e_enroll_device_free(e->st);
    e->st = NULL;
    free(e->frame);
    e->frame = NULL;
    return rc;
}

static int enroll_main(int argc, char **argv, cli_broker_args *b)
{
    cli_keystore_args k = {NULL, NULL, NULL};
    const char *ticket_arg = NULL, *ticket_file = NULL;
    long timeout_s = 30;
    cli_kdf kdf = {0, 0};
    cli_parser p;
    cli_parser_init(&p, argc, argv, "enroll");
    int id = 0, r;
    const char *v;
    while ((r = cli_next(&p, opts, &id, &v)) != CLI_NEXT_END) {
        if (r == CLI_NEXT_ERROR) return CLI_EXIT_USAGE;
        if (r == CLI_NEXT_POSITIONAL) {
            cli_error("unexpected argument (see 'mqe2e enroll --help')");
            return CLI_EXIT_USAGE;
        }
        if (cli_keystore_arg(&k, id, v)) continue;
        switch (id) {
        case OPT_HELP:
            fputs(usage, stdout);
            return CLI_EXIT_OK;
        case OPT_TICKET:
            ticket_arg = v;
            break;
        case OPT_TICKET_FILE:
            ticket_file = v;
            break;
        case OPT_TIMEOUT:
            if (cli_parse_long(&timeout_s, v, 1, 86400, "-W") != 0) return CLI_EXIT_USAGE;
            break;
        case OPT_KDF:
            if (cli_parse_kdf(&kdf, v) != 0) return CLI_EXIT_USAGE;
            break;
        default:
            if (cli_broker_arg(b, id, v) < 0) return CLI_EXIT_USAGE;
            break;
        }
    }
    cli_set_quiet(b->quiet);
    int rc = cli_keystore_args_check(&k);
    if (rc != CLI_EXIT_OK) return rc;

    char *text = NULL;
    mqe2e_ticket *ticket = NULL;
    cli_keystore ksh = {NULL, -1};

    rc = read_ticket_text(&text, ticket_file, ticket_arg);
    if (rc != CLI_EXIT_OK) goto out;
    ticket = sodium_malloc(sizeof *ticket);
    if (ticket == NULL) {
        cli_error("out of memory");
        rc = CLI_EXIT_KEY;
        goto out;
    }
    int lrc = mqe2e_ticket_decode(ticket, text);
    if (lrc != MQE2E_OK) {
        cli_error("invalid ticket: %s", mqe2e_strerror(lrc));
        rc = CLI_EXIT_KEY;
        goto out;
    }
    if (ticket->expires_at <= cli_now()) {
        cli_error("the ticket expired");
        rc = CLI_EXIT_KEY;
        goto out;
    }
    /* A missing keystore is created with the ticket's client id: the ticket
     * is bound to that id anyway, so there is nothing else to choose. */
    struct stat sb;
    if (stat(k.path, &sb) != 0 && errno == ENOENT)
        rc = cli_keystore_create_kdf(&ksh, &k, ticket->client_id, 0, &kdf);
    else
        rc = cli_keystore_open(&ksh, &k);
    if (rc != CLI_EXIT_OK) goto out;
    if (strcmp(mqe2e_keystore_client_id(ksh.ks), ticket->client_id) != 0) {
        cli_error("the ticket is for client '%s' but the keystore holds '%s'", ticket->client_id,
                  mqe2e_keystore_client_id(ksh.ks));
        rc = CLI_EXIT_KEY;
        goto out;
    }

    enroll_run e;
    memset(&e, 0, sizeof e);
    e.ticket = ticket;
    e.ks = ksh.ks;
    e.timeout_s = timeout_s;
    e.debug = b->debug;
    /* Its own MQTT client id (the ticket's): the broker ACL ties the inbox to it. */
    rc = cli_exchange_open(&e.x, b, ticket->client_id, ticket->control_prefix,
                           (int)(timeout_s < 10 ? timeout_s : 10));
    if (rc != CLI_EXIT_OK) goto out;
    rc = enroll_exchange(&e);
    cli_exchange_close(&e.x);
out:
    if (ksh.ks != NULL) cli_keystore_close(&ksh);
    if (ticket != NULL) {
        mqe2e_ticket_wipe(ticket);
        sodium_free(ticket);
    }
    if (text != NULL) sodium_free(text);
    return rc;
}

int cmd_enroll(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return CLI_EXIT_OK;
    }
    cli_broker_args b;
    cli_broker_args_init(&b);
    int rc = cli_broker_load_options(&b, opts);
    if (rc == CLI_EXIT_OK) rc = enroll_main(argc, argv, &b);
    cli_broker_args_free(&b);
    return rc;
}
