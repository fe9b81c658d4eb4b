/* Operator commands: signed requests to a running authority over the broker
 * (OPERATOR frames, docs/AUTHORITY.md "Operator protocol"). The operator's
 * keystore gives the Noise static key and the Ed25519 request signing key;
 * the authority pin (--authority or MQE2E_AUTHORITY) gives the authority. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"
#include "cli_authority.h"
#include "exchange.h"
#include "mqe2e/operator.h"

#define TOKEN_BATCH 100L
#define ARGS_MAX MQE2E_OPERATOR_MAX_ARGS

enum {
    OPT_AUTHORITY = 1,
    OPT_WAIT,
    OPT_JSON,
    OPT_OPERATOR,
    OPT_CID,
    OPT_ROLE,
    OPT_GRANT,
    OPT_GROUPNAME,
    OPT_TTL,
    OPT_COUNT,
    OPT_TOPIC,
    OPT_ROTATE_EVERY,
    OPT_ROTATE_MESSAGES,
    OPT_TREE,
    OPT_DEPTH,
    OPT_SIGNED,
    OPT_REMOTE,
    OPT_REPLACE,
    OPT_HISTORY,
};

static const cli_opt opts[] = {
    CLI_KEYSTORE_OPTS,
    CLI_BROKER_OPTS,
    {0, "authority", 1, OPT_AUTHORITY},
    {'W', "timeout", 1, OPT_WAIT},
    {0, "json", 0, OPT_JSON},
    {0, "operator", 1, OPT_OPERATOR},
    {0, "id", 1, OPT_CID},
    {0, "role", 1, OPT_ROLE},
    {0, "grant", 1, OPT_GRANT},
    {0, "group", 1, OPT_GROUPNAME},
    {0, "ttl", 1, OPT_TTL},
    {0, "count", 1, OPT_COUNT},
    {0, "topic", 1, OPT_TOPIC},
    {0, "rotate-every", 1, OPT_ROTATE_EVERY},
    {0, "rotate-messages", 1, OPT_ROTATE_MESSAGES},
    {0, "tree", 1, OPT_TREE},
    {0, "depth", 1, OPT_DEPTH},
    {0, "signed", 0, OPT_SIGNED},
    {0, "remote", 0, OPT_REMOTE},
    {0, "replace", 0, OPT_REPLACE},
    {0, "history", 0, OPT_HISTORY},
    {0, "help", 0, OPT_HELP},
    {0, NULL, 0, 0},
};

static const char common_help[] =
    "\n"
    "  -K, --keystore FILE        operator keystore (its identity signs the request)\n"
    "      --authority PIN        authority pin (default: $MQE2E_AUTHORITY)\n"
    "  -W, --timeout SECONDS      wait this long for the reply (default 10)\n"
    "      --operator NAME        registered operator name (default: keystore client id)\n"
    "      --json                 structured output (status, list)\n"
    "      --passphrase-file F    keystore passphrase from F's first line\n"
    "      --key-file F           keystore raw key from F\n"
    "Keystore passphrase otherwise from MQE2E_PASSPHRASE.\n"
    "\n" CLI_BROKER_HELP
    "Exit codes: 0 ok, 1 usage or request refused as invalid, 2 refused or failed,\n"
    "3 broker, 4 no reply in time, 5 broker login refused, 6 TLS failed.\n";

typedef struct op_args {
    cli_keystore_args k;
    const char *pin_text;
    cli_broker_args b;
    long wait_s;
    int json;
    const char *operator_name;
    /* command options */
    const char *id;
    const char *role;
    const char *grants[16];
    size_t n_grants;
    const char *groups[16];
    size_t n_groups;
    long ttl;
    long count;
    const char *topic;
    long rotate_every;
    long rotate_messages;
    long tree;  /* key-tree depth of a new group, 0: none */
    long depth; /* `group tree --depth`: 0, the authority's rule */
    int signed_group;
    int replace;
    int history;
    const char *positional;
} op_args;

/* Parse argv after the subcommand words (argv[skip..]). @return exit code or -1 to go on. */
static int parse(op_args *o, int argc, char **argv, const char *command, const char *usage)
{
    cli_parser p;
    int id = 0, r;
    const char *v;
    long x;
    memset(o, 0, sizeof *o);
    cli_broker_args_init(&o->b);
    o->wait_s = 10;
    o->count = 1;
    if (cli_wants_help(argc, argv)) {
        fputs(usage, stdout);
        fputs(common_help, stdout);
        return CLI_EXIT_OK;
    }
    int orc = cli_broker_load_options(&o->b, opts);
    if (orc != CLI_EXIT_OK) return orc;
    cli_parser_init(&p, argc, argv, command);
    while ((r = cli_next(&p, opts, &id, &v)) != CLI_NEXT_END) {
        if (r == CLI_NEXT_ERROR) return CLI_EXIT_USAGE;
        if (r == CLI_NEXT_POSITIONAL) {
            if (o->positional != NULL) {
                cli_error("unexpected argument '%s' (see 'mqe2e %s --help')", v, command);
                return CLI_EXIT_USAGE;
            }
            o->positional = v;
            continue;
        }
        if (cli_keystore_arg(&o->k, id, v)) continue;
        int br = cli_broker_arg(&o->b, id, v);
        if (br < 0) return CLI_EXIT_USAGE;
        if (br > 0) continue;
        switch (id) {
        case OPT_HELP:
            fputs(usage, stdout);
            fputs(common_help, stdout);
            return CLI_EXIT_OK;
        case OPT_AUTHORITY:
            o->pin_text = v;
            break;
        case OPT_WAIT:
            if (cli_parse_long(&o->wait_s, v, 1, 86400, "-W") != 0) return CLI_EXIT_USAGE;
            break;
        case OPT_JSON:
            o->json = 1;
            break;
        case OPT_OPERATOR:
            o->operator_name = v;
            break;
        case OPT_CID:
            o->id = v;
            break;
        case OPT_ROLE:
            o->role = v;
            break;
        case OPT_GRANT:
            if (o->n_grants == 16) {
                cli_error("at most 16 --grant options");
                return CLI_EXIT_USAGE;
            }
            o->grants[o->n_grants++] = v;
            break;
        case OPT_GROUPNAME:
            if (o->n_groups == 16) {
                cli_error("at most 16 --group options");
                return CLI_EXIT_USAGE;
            }
            o->groups[o->n_groups++] = v;
            break;
        case OPT_TTL:
            if (cli_parse_long(&o->ttl, v, 1, 315360000L, "--ttl") != 0) return CLI_EXIT_USAGE;
            break;
        case OPT_COUNT:
            if (cli_parse_long(&o->count, v, 1, 1000000L, "--count") != 0) return CLI_EXIT_USAGE;
            break;
        case OPT_TOPIC:
            o->topic = v;
            break;
        case OPT_ROTATE_EVERY:
            if (cli_parse_long(&x, v, 0, 0x7FFFFFFFL, "--rotate-every") != 0) return CLI_EXIT_USAGE;
            o->rotate_every = x;
            break;
        case OPT_ROTATE_MESSAGES:
            if (cli_parse_long(&x, v, 0, 0x7FFFFFFFL, "--rotate-messages") != 0)
                return CLI_EXIT_USAGE;
            o->rotate_messages = x;
            break;
        case OPT_TREE:
            if (cli_parse_long(&x, v, 1, 20, "--tree") != 0) return CLI_EXIT_USAGE;
            o->tree = x;
            break;
        case OPT_DEPTH:
            if (cli_parse_long(&x, v, 1, 20, "--depth") != 0) return CLI_EXIT_USAGE;
            o->depth = x;
            break;
        case OPT_SIGNED:
            o->signed_group = 1;
            break;
        case OPT_REPLACE:
            o->replace = 1;
            break;
        case OPT_HISTORY:
            o->history = 1;
            break;
        default:
            break;
        }
    }
    cli_set_quiet(o->b.quiet);
    if (o->pin_text == NULL) o->pin_text = getenv("MQE2E_AUTHORITY");
    if (o->pin_text == NULL || o->pin_text[0] == '\0') {
        cli_error("no authority pin (--authority PIN or MQE2E_AUTHORITY)");
        return CLI_EXIT_USAGE;
    }
    int rc = cli_keystore_args_check(&o->k);
    return rc != CLI_EXIT_OK ? rc : -1;
}

/* ------------------------------------------------------------- a session */

typedef struct op_session {
    cli_keystore ks;
    mqe2e_authority_pin pin;
    cli_exchange x;
    const op_args *o;
} op_session;

static void session_close(op_session *s)
{
    cli_exchange_close(&s->x);
    cli_keystore_close(&s->ks);
}

static int session_open(op_session *s, const op_args *o)
{
    memset(s, 0, sizeof *s);
    s->ks.lock_fd = -1;
    s->o = o;
    int lrc = mqe2e_authority_pin_decode(&s->pin, o->pin_text);
    if (lrc != MQE2E_OK) {
        cli_error("invalid authority pin: %s", mqe2e_strerror(lrc));
        return CLI_EXIT_USAGE;
    }
    int rc = cli_keystore_open(&s->ks, &o->k);
    if (rc != CLI_EXIT_OK) return rc;
    rc = cli_exchange_open(&s->x, &o->b, mqe2e_keystore_client_id(s->ks.ks),
                           s->pin.control_prefix, 0);
    if (rc != CLI_EXIT_OK) session_close(s);
    return rc;
}

static int keystore_sign(void *ctx, uint8_t sig[64], const uint8_t *msg, size_t msg_len)
{
    return mqe2e_keystore_sign((const mqe2e_keystore *)ctx, sig, msg, msg_len) == MQE2E_OK ? 0 : -1;
}

typedef struct op_wait {
    mqe2e_operator_client *st;
    mqe2e_operator_reply *reply;
} op_wait;

/* A message on the inbox: the reply to this request, or not ours. */
static int op_reply(void *ctx, const uint8_t *payload, size_t len)
{
    op_wait *w = ctx;
    if (getenv("MQE2E_DEBUG_SIZES") != NULL)
        fprintf(stderr, "operator reply frame: %zu bytes\n", len);
    int lrc = mqe2e_operator_finish(w->st, w->reply, payload, len);
    if (lrc == MQE2E_OK) return CLI_EXIT_OK;
    if (lrc == MQE2E_ERR_STATE || lrc == MQE2E_ERR_DECODE || lrc == MQE2E_ERR_SUITE)
        return CLI_EXCHANGE_NOT_MINE;
    cli_error("authority reply refused: %s", mqe2e_strerror(lrc));
    return CLI_EXIT_KEY;
}

/* One request / reply. @return exit code; *reply filled on CLI_EXIT_OK. */
static int session_call(op_session *s, const char *command, char **args, size_t n_args,
                        mqe2e_operator_reply *reply)
{
    mqe2e_operator_request req;
    mqe2e_operator_client *st = NULL;
    uint8_t dh[32];
    uint8_t *frame = NULL;
    size_t frame_len = 0;
    int rc = CLI_EXIT_KEY;

    memset(reply, 0, sizeof *reply);
    memset(&req, 0, sizeof req);
    const char *name =
        s->o->operator_name != NULL ? s->o->operator_name : mqe2e_keystore_client_id(s->ks.ks);
    if (strlen(name) > MQE2E_ID_MAX || strlen(command) > MQE2E_OPERATOR_COMMAND_MAX) {
        cli_error("operator name or command too long");
        return CLI_EXIT_USAGE;
    }
    memcpy(req.operator_name, name, strlen(name) + 1U);
    memcpy(req.command, command, strlen(command) + 1U);
    randombytes_buf(req.nonce, sizeof req.nonce);
    req.issued_at = cli_now();
    req.args = args;
    req.n_args = n_args;
    if ((frame = malloc(MQE2E_CONTROL_MAX_FRAME_BYTES)) == NULL) {
        cli_error("out of memory");
        return CLI_EXIT_KEY;
    }
    int lrc = mqe2e_keystore_dh_secret(s->ks.ks, dh);
    if (lrc == MQE2E_OK)
        lrc = mqe2e_operator_begin(&st, frame, MQE2E_CONTROL_MAX_FRAME_BYTES, &frame_len, &s->pin,
                                   mqe2e_keystore_client_id(s->ks.ks), dh, &req, keystore_sign,
                                   s->ks.ks);
    sodium_memzero(dh, sizeof dh);
    if (lrc != MQE2E_OK) {
        cli_error("cannot build the request: %s", mqe2e_strerror(lrc));
        goto out;
    }
    if (getenv("MQE2E_DEBUG_SIZES") != NULL)
        fprintf(stderr, "operator request frame: %zu bytes\n", frame_len);
    rc = cli_exchange_send(&s->x, frame, frame_len);
    if (rc != CLI_EXIT_OK) goto out;
    op_wait w = {st, reply};
    rc = cli_exchange_wait(&s->x, cli_exchange_clock() + (double)s->o->wait_s, op_reply, &w);
    if (rc == CLI_EXIT_TIMEOUT)
        cli_error("no reply from the authority within %ld s (is it running, and is this "
                  "operator registered?)",
                  s->o->wait_s);
out:
    mqe2e_operator_client_free(st);
    free(frame);
    return rc;
}

static int exit_for_status(const mqe2e_operator_reply *r)
{
    switch (r->status) {
    case MQE2E_OPSTATUS_OK:
        return CLI_EXIT_OK;
    case MQE2E_OPSTATUS_BAD_REQUEST:
        return CLI_EXIT_USAGE;
    default:
        return CLI_EXIT_KEY;
    }
}

/* Print a reply; @return exit code. */
static int show(const mqe2e_operator_reply *r)
{
    if (r->output != NULL && r->output[0] != '\0') {
        fputs(r->output, stdout);
        fflush(stdout);
    }
    if (r->status != MQE2E_OPSTATUS_OK) cli_error("authority: %s", r->message);
    return exit_for_status(r);
}

/* Build "key=value" into a malloc()ed string. */
static char *kv(const char *key, const char *value)
{
    size_t n = strlen(key) + strlen(value) + 2U;
    char *s = malloc(n);
    if (s != NULL) snprintf(s, n, "%s=%s", key, value);
    return s;
}

static char *kvl(const char *key, long value)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", value);
    return kv(key, buf);
}

typedef struct argv_list {
    char *v[ARGS_MAX];
    size_t n;
    int failed;
} argv_list;

static void add(argv_list *l, char *s)
{
    if (s == NULL || l->n == ARGS_MAX) {
        free(s);
        l->failed = 1;
        return;
    }
    l->v[l->n++] = s;
}

static void argv_free(argv_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    l->n = 0;
}

/* One request with the given args, printed. */
static int simple(const op_args *o, const char *command, argv_list *l)
{
    op_session s;
    mqe2e_operator_reply reply;
    if (o->json) add(l, kv("json", "1"));
    if (l->failed) {
        cli_error("out of memory or too many arguments");
        argv_free(l);
        return CLI_EXIT_USAGE;
    }
    int rc = session_open(&s, o);
    if (rc == CLI_EXIT_OK) {
        rc = session_call(&s, command, l->v, l->n, &reply);
        if (rc == CLI_EXIT_OK) rc = show(&reply);
        mqe2e_operator_reply_clear(&reply);
        session_close(&s);
    }
    argv_free(l);
    return rc;
}

/* ------------------------------------------------------------- commands */

static const char token_usage[] =
    "usage: mqe2e token create -K OPERATOR_KEYSTORE --id CLIENT_ID [--role device|service]\n"
    "                          [--grant FILTER:pub|sub|pubsub]... [--group NAME]...\n"
    "                          [--ttl SECONDS] [--count N] [--replace] [--authority PIN]\n"
    "\n"
    "Ask the authority for one-time enrollment tickets. Prints one ticket per line\n"
    "(\"mqe2e1-...\": give each to one device, it is a secret). --group joins the\n"
    "device to the group when it enrolls. --ttl: ticket lifetime (default 7 days).\n"
    "--count N > 1 issues N tickets for the ids CLIENT_ID-1 .. CLIENT_ID-N.\n"
    "A ticket for an enrolled (active) id is refused unless --replace is given: the\n"
    "new device then takes the id over, the old one's credentials are revoked and\n"
    "its groups rotate. A revoked id never enrolls again.\n";

int cmd_token(int argc, char **argv)
{
    op_args o;
    if (argc < 2 || strcmp(argv[1], "create") != 0) {
        if (argc >= 2 && strcmp(argv[1], "--help") == 0) {
            fputs(token_usage, stdout);
            fputs(common_help, stdout);
            return CLI_EXIT_OK;
        }
        fputs(token_usage, stderr);
        return CLI_EXIT_USAGE;
    }
    int rc = parse(&o, argc - 1, argv + 1, "token create", token_usage);
    if (rc >= 0) return rc;
    if (o.id == NULL) {
        cli_error("no client id given (--id CLIENT_ID)");
        return CLI_EXIT_USAGE;
    }
    op_session s;
    if ((rc = session_open(&s, &o)) != CLI_EXIT_OK) return rc;
    for (long first = 1; first <= o.count && rc == CLI_EXIT_OK; first += TOKEN_BATCH) {
        long n = o.count - first + 1 < TOKEN_BATCH ? o.count - first + 1 : TOKEN_BATCH;
        argv_list l;
        memset(&l, 0, sizeof l);
        add(&l, kv("id", o.id));
        if (o.role != NULL) add(&l, kv("role", o.role));
        for (size_t i = 0; i < o.n_grants; i++)
            add(&l, kv("grant", o.grants[i]));
        for (size_t i = 0; i < o.n_groups; i++)
            add(&l, kv("group", o.groups[i]));
        if (o.ttl > 0) add(&l, kvl("ttl", o.ttl));
        if (o.replace) add(&l, kv("replace", "1"));
        add(&l, kvl("count", n));
        if (o.count > 1) {
            add(&l, kvl("first", first));
            add(&l, kv("numbered", "1"));
        }
        if (l.failed) {
            cli_error("out of memory or too many arguments");
            argv_free(&l);
            rc = CLI_EXIT_USAGE;
            break;
        }
        mqe2e_operator_reply reply;
        rc = session_call(&s, "token-create", l.v, l.n, &reply);
        if (rc == CLI_EXIT_OK) rc = show(&reply);
        mqe2e_operator_reply_clear(&reply);
        argv_free(&l);
        if (o.count > 1 && rc == CLI_EXIT_OK)
            fprintf(stderr, "tokens: %ld/%ld\n", first + n - 1, o.count);
    }
    session_close(&s);
    return rc;
}

static const char revoke_usage[] =
    "usage: mqe2e revoke -K OPERATOR_KEYSTORE --id CLIENT_ID [--authority PIN]\n"
    "\n"
    "Revoke a client: it is put on the signed revocation list (retained on\n"
    "P/revocations), removed from all its groups, and every one of those groups\n"
    "moves to a new epoch pushed to the remaining members only.\n";

int cmd_revoke(int argc, char **argv)
{
    op_args o;
    int rc = parse(&o, argc, argv, "revoke", revoke_usage);
    if (rc >= 0) return rc;
    if (o.id == NULL) {
        cli_error("no client id given (--id CLIENT_ID)");
        return CLI_EXIT_USAGE;
    }
    argv_list l;
    memset(&l, 0, sizeof l);
    add(&l, kv("id", o.id));
    return simple(&o, "revoke", &l);
}

static const char list_usage[] =
    "usage: mqe2e list clients|groups|tokens -K OPERATOR_KEYSTORE [--json] [--authority PIN]\n"
    "\n"
    "List what the authority knows. Text output is tab-separated:\n"
    "  clients: client id, role, active|revoked, credential serial\n"
    "  groups:  name, topic filter, epoch, member count\n"
    "  tokens:  token id, client id, role, unused|used|expired, expiry\n";

/* Rows per `list` request: a page of clients in JSON (~300 B a row) stays
 * well inside one reply frame. */
#define LIST_PAGE 100L

/* The lines of a text page (one per row). */
static long count_lines(const char *t)
{
    long n = 0;
    for (; t != NULL && *t != '\0'; t++)
        if (*t == '\n') n++;
    return n;
}

/* Print a JSON page's elements ("[a,b]\n" -> "a,b"), with a comma before
 * them unless they are the first. @return the number of elements seen. */
static long print_json_page(const char *t, int *first)
{
    const char *open = t != NULL ? strchr(t, '[') : NULL;
    const char *close = t != NULL ? strrchr(t, ']') : NULL;
    long n = 0;
    int depth = 0, in_str = 0;
    if (open == NULL || close == NULL || close <= open + 1) return 0;
    for (const char *p = open + 1; p < close; p++) {
        if (in_str) {
            if (*p == '\\' && p + 1 < close)
                p++;
            else if (*p == '"')
                in_str = 0;
        } else if (*p == '"') {
            in_str = 1;
        } else if (*p == '{' || *p == '[') {
            if (depth++ == 0) n++;
        } else if (*p == '}' || *p == ']') {
            depth--;
        }
    }
    if (!*first) fputc(',', stdout);
    fwrite(open + 1, 1, (size_t)(close - open - 1), stdout);
    *first = 0;
    return n;
}

int cmd_list(int argc, char **argv)
{
    op_args o;
    int rc = parse(&o, argc, argv, "list", list_usage);
    if (rc >= 0) return rc;
    const char *w = o.positional;
    if (w == NULL ||
        (strcmp(w, "clients") != 0 && strcmp(w, "groups") != 0 && strcmp(w, "tokens") != 0)) {
        cli_error("say what to list: clients, groups or tokens");
        return CLI_EXIT_USAGE;
    }
    char command[32];
    snprintf(command, sizeof command, "list-%s", w);
    op_session s;
    if ((rc = session_open(&s, &o)) != CLI_EXIT_OK) return rc;
    /* Page by page over one session, so the list is complete at any size;
     * any failure ends it with a non-zero exit (never a silently cut list). */
    int first = 1;
    if (o.json) fputc('[', stdout);
    for (long offset = 0;;) {
        argv_list l;
        mqe2e_operator_reply reply;
        memset(&l, 0, sizeof l);
        if (o.json) add(&l, kv("json", "1"));
        add(&l, kvl("offset", offset));
        add(&l, kvl("limit", LIST_PAGE));
        if (l.failed) {
            cli_error("out of memory");
            argv_free(&l);
            rc = CLI_EXIT_USAGE;
            break;
        }
        rc = session_call(&s, command, l.v, l.n, &reply);
        argv_free(&l);
        if (rc != CLI_EXIT_OK) break;
        if (reply.status != MQE2E_OPSTATUS_OK) {
            rc = show(&reply);
            mqe2e_operator_reply_clear(&reply);
            break;
        }
        long rows;
        if (o.json) {
            rows = print_json_page(reply.output, &first);
        } else {
            rows = count_lines(reply.output);
            if (reply.output != NULL) fputs(reply.output, stdout);
        }
        fflush(stdout);
        int more = reply.message != NULL && strcmp(reply.message, "more") == 0;
        mqe2e_operator_reply_clear(&reply);
        if (!more) break;
        if (rows <= 0) {
            cli_error("authority: an empty page with more to come; giving up");
            rc = CLI_EXIT_KEY;
            break;
        }
        offset += rows;
    }
    if (o.json) fputs("]\n", stdout);
    session_close(&s);
    return rc;
}

static const char status_usage[] =
    "usage: mqe2e status -K OPERATOR_KEYSTORE (--authority PIN | --remote) [--json]\n"
    "\n"
    "Authority status: client and token counts, groups with epochs and member\n"
    "counts, refusal counters. --remote takes the pin from MQE2E_AUTHORITY.\n"
    "Without either, `mqe2e status -K KS` shows the local keystore (even with\n"
    "MQE2E_AUTHORITY set).\n";

int cmd_operator_status(int argc, char **argv)
{
    op_args o;
    int rc = parse(&o, argc, argv, "status", status_usage);
    if (rc >= 0) return rc;
    argv_list l;
    memset(&l, 0, sizeof l);
    return simple(&o, "status", &l);
}

static const char group_usage[] =
    "usage: mqe2e group create  -K OPERATOR_KEYSTORE --group NAME --topic FILTER\n"
    "                           [--signed] [--rotate-every SECONDS] [--rotate-messages N]\n"
    "                           [--tree DEPTH]\n"
    "       mqe2e group grant   -K OPERATOR_KEYSTORE --group NAME --id CLIENT_ID [--history]\n"
    "       mqe2e group ungrant -K OPERATOR_KEYSTORE --group NAME --id CLIENT_ID\n"
    "       mqe2e group rotate  -K OPERATOR_KEYSTORE --group NAME\n"
    "       mqe2e group tree    -K OPERATOR_KEYSTORE --group NAME [--depth DEPTH]\n"
    "       (with --authority PIN or MQE2E_AUTHORITY; without them, and with\n"
    "       --out, `group create/rotate` are the manual keystore commands)\n"
    "\n"
    "  create   a group at epoch 1 held by the authority; --rotate-every and\n"
    "           --rotate-messages schedule rotations (0: off); --signed: members\n"
    "           sign every message and get the group's signer directory; --tree D:\n"
    "           a key tree of depth D (up to 2^D members; 17 for 100,000): a join\n"
    "           or removal is one signed broadcast on P/tree/NAME, not a push per\n"
    "           member (large groups; no --rotate-* with it)\n"
    "  grant    add an enrolled client; it gets the group key by push (the current\n"
    "           epoch only; --history: also the retired epochs still in grace)\n"
    "  ungrant  remove a member, then rotate: the others get the new epoch\n"
    "  rotate   move the group to a new epoch, pushed to every member\n"
    "  tree     convert a push group to a key-tree group: every member gets a leaf,\n"
    "           the group rotates once (one push per member, with its leaf); from\n"
    "           then on joins and removals are one broadcast each. --depth D:\n"
    "           up to 2^D members (default: the smallest D with 2^D >= 2 x members,\n"
    "           3..20). Refused for a tree group, a group with --rotate-* settings,\n"
    "           or more than 2^D members\n";

int cmd_operator_group(int argc, char **argv)
{
    op_args o;
    if (argc < 2) {
        fputs(group_usage, stderr);
        return CLI_EXIT_USAGE;
    }
    const char *sub = argv[1];
    char command[48];
    snprintf(command, sizeof command, "group %s", sub);
    int rc = parse(&o, argc - 1, argv + 1, command, group_usage);
    if (rc >= 0) return rc;
    if (o.groups[0] == NULL || o.n_groups != 1) {
        cli_error("give one group (--group NAME)");
        return CLI_EXIT_USAGE;
    }
    argv_list l;
    memset(&l, 0, sizeof l);
    add(&l, kv("group", o.groups[0]));
    if (strcmp(sub, "create") == 0) {
        if (o.topic == NULL) {
            cli_error("no topic filter given (--topic FILTER)");
            return CLI_EXIT_USAGE;
        }
        add(&l, kv("topic", o.topic));
        if (o.rotate_every > 0) add(&l, kvl("rotate-seconds", o.rotate_every));
        if (o.rotate_messages > 0) add(&l, kvl("rotate-messages", o.rotate_messages));
        if (o.signed_group) add(&l, kvl("signed", 1));
        if (o.tree > 0) add(&l, kvl("tree", o.tree));
        return simple(&o, "group-create", &l);
    }
    if (strcmp(sub, "grant") == 0 || strcmp(sub, "ungrant") == 0) {
        if (o.id == NULL) {
            argv_free(&l);
            cli_error("no client id given (--id CLIENT_ID)");
            return CLI_EXIT_USAGE;
        }
        add(&l, kv("id", o.id));
        if (o.history && strcmp(sub, "grant") == 0) add(&l, kvl("history", 1));
        return simple(&o, strcmp(sub, "grant") == 0 ? "group-grant" : "group-ungrant", &l);
    }
    if (strcmp(sub, "rotate") == 0) return simple(&o, "group-rotate", &l);
    if (strcmp(sub, "tree") == 0) {
        if (o.depth > 0) add(&l, kvl("depth", o.depth));
        return simple(&o, "group-tree", &l);
    }
    argv_free(&l);
    cli_error("unknown group command '%s' (see 'mqe2e group --help')", sub);
    return CLI_EXIT_USAGE;
}

int cli_operator_form(int argc, char **argv)
{
    int env_pin = 0, arg_pin = 0, has_out = 0, remote = 0;
    const char *e = getenv("MQE2E_AUTHORITY");
    if (e != NULL && e[0] != '\0') env_pin = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) break;
        if (strcmp(argv[i], "--authority") == 0 || strncmp(argv[i], "--authority=", 12) == 0)
            arg_pin = 1;
        if (strcmp(argv[i], "--remote") == 0) remote = 1;
        if (strcmp(argv[i], "--out") == 0 || strncmp(argv[i], "--out=", 6) == 0) has_out = 1;
    }
    /* `status -K KEYSTORE` is a local command: an exported MQE2E_AUTHORITY
     * alone must not turn it into a network query. The authority's status
     * is asked for explicitly (--authority PIN, or --remote with the pin
     * from MQE2E_AUTHORITY). */
    if (strcmp(argv[0], "status") == 0) return arg_pin || remote;
    if (strcmp(argv[0], "group") == 0) {
        if (argc < 2) return 0;
        if (strcmp(argv[1], "grant") == 0 || strcmp(argv[1], "ungrant") == 0 ||
            strcmp(argv[1], "tree") == 0)
            return 1;
        if (strcmp(argv[1], "create") != 0 && strcmp(argv[1], "rotate") != 0) return 0;
    }
    return (env_pin || arg_pin) && !has_out;
}
