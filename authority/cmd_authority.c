/* `mqe2e-authority` (also reached as `mqe2e authority`): create an authority
 * (keystore + database), register operators locally, print the pin, run the
 * service. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "authority_cli.h"
#include "authority_db.h"
#include "authority_service.h"
#include "cli.h"
#include "store.h"

static const char usage[] =
    "usage: mqe2e authority init -K AUTH_KEYSTORE --db DB --id AUTHORITY_ID [--prefix P]\n"
    "       mqe2e authority operator-add -K AUTH_KEYSTORE --db DB --name NAME --sign-public HEX\n"
    "       mqe2e authority pin -K AUTH_KEYSTORE [--prefix P]\n"
    "       mqe2e authority run [--config FILE] [-h HOST] [-p PORT] [-u USER --password-file F]\n"
    "                           [--cafile F] [--db DB | --store URI] [-K AUTH_KEYSTORE]\n"
    "                           [--prefix P] [--credential-ttl SECONDS] [--grace SECONDS]\n"
    "                           [--revoke-grace SECONDS] [--list-validity SECONDS] [-v]\n"
    "                           [--tree-threshold MEMBERS]\n"
    "                           [--handshake-limits RATE,BURST,PER_ID_PER_MIN,PER_ID_BURST[,IDS]]\n"
    "                           [--replica-group NAME [--replica-id CLIENT_ID]]\n"
    "\n"
    "  init          create the authority keystore (its identity) and the database,\n"
    "                and print the AUTHORITY PIN (public: give it to operators)\n"
    "  operator-add  register an operator's Ed25519 key (run on the authority host,\n"
    "                before or between runs: the keystore is locked while running)\n"
    "  pin           print the authority pin again\n"
    "  run           serve P/authority on the broker until SIGINT/SIGTERM\n"
    "\n"
    "  -K, --keystore FILE      authority keystore\n"
    "      --db FILE            authority database (SQLite file; same as --store sqlite:FILE)\n"
    "      --store URI          authority store: sqlite:PATH (default driver) or\n"
    "                           postgresql://... (libpq URI; docs/OPERATIONS.md); without\n"
    "                           --db/--store/'store ='/'db =' the MQE2E_AUTHORITY_STORE\n"
    "                           environment variable is used\n"
    "      --id AUTHORITY_ID    authority client id (also its MQTT client id)\n"
    "      --prefix P           control topic prefix (init: default mqe2e, remembered in\n"
    "                           the keystore; pin/run: the remembered one)\n"
    "      --name NAME          operator name (its keystore client id by default)\n"
    "      --sign-public HEX    operator Ed25519 public key (64 hex digits, from\n"
    "                           'mqe2e status -K OPERATOR_KEYSTORE')\n"
    "      --config FILE        'key = value' lines: host, port, db, store, keystore, prefix,\n"
    "                           credential_ttl, grace, revoke_grace, list_validity,\n"
    "                           tree_threshold,\n"
    "                           passphrase_file, key_file,\n"
    "                           username, password_file, cafile, capath, certfile,\n"
    "                           keyfile, tls_version, insecure, tls_use_os_certs,\n"
    "                           keepalive, verbose, handshake_limits, replica_group,\n"
    "                           replica_id\n"
    "      --credential-ttl S   credential lifetime (default 2592000 = 30 days)\n"
    "      --grace S            retired epochs handed out for S seconds (default 3600)\n"
    "      --revoke-grace S     after a revocation, removal or device replacement, the\n"
    "                           group's retired epochs stay readable S seconds (default 30)\n"
    "      --list-validity S    revocation lists are valid S seconds (next_update), signed\n"
    "                           afresh every S/2; members stop sealing on a list older\n"
    "                           than S (default 3600)\n"
    "  -v, --verbose            log every handled message\n"
    "      --handshake-limits L ENROLL/HELLO handshakes admitted after the cheap checks:\n"
    "                           RATE per second (BURST) in all, PER_ID_PER_MIN per claimed\n"
    "                           client id (PER_ID_BURST), IDS ids tracked; 0 turns a\n"
    "                           bucket off (default 2000,4000,20,10,16384; docs/AUTHORITY.md)\n"
    "      --replica-group NAME one of several replicas serving one fleet from one store:\n"
    "                           MQTT v5, clean start, requests through the shared\n"
    "                           subscription $share/NAME/P/authority (docs/SCALING.md)\n"
    "      --replica-id ID      this replica's MQTT client id (default AUTHORITY_ID-<random>)\n"
    "      --passphrase-file F  keystore passphrase from F's first line\n"
    "      --key-file F         keystore raw key from F\n"
    "\n";

/* Second half of the usage text (ISO C bounds one string literal's length). */
static const char usage_broker[] =
    "Key trees of run:\n"
    "      --tree-threshold N   a push group that reaches N members by a grant or an\n"
    "                           enrollment becomes a key-tree group (docs/AUTHORITY.md;\n"
    "                           default 0: never)\n"
    "\n"
    "Broker options of run (the ACL grants the authority's rights to the user\n"
    "mqe2e-authority):\n" CLI_BROKER_HELP
    "Flags override the config file, which overrides the options file. The keystore\n"
    "passphrase otherwise comes from MQE2E_PASSPHRASE.\n"
    "Exit codes: 0 ok, 1 usage, 2 keystore/database, 3 broker, 5 login refused, 6 TLS.\n";

static void print_usage(FILE *f)
{
    fputs(usage, f);
    fputs(usage_broker, f);
}

enum {
    OPT_DB = 1,
    OPT_STORE,
    OPT_AID,
    OPT_PREFIX,
    OPT_NAME,
    OPT_SIGN_PUBLIC,
    OPT_CONFIG,
    OPT_TTL,
    OPT_GRACE,
    OPT_REVOKE_GRACE,
    OPT_LIST_VALIDITY,
    OPT_TREE_THRESHOLD,
    OPT_VERBOSE,
    OPT_HS_LIMITS,
    OPT_REPLICA_GROUP,
    OPT_REPLICA_ID,
};

static const cli_opt opts[] = {
    CLI_KEYSTORE_OPTS,
    CLI_BROKER_OPTS,
    {0, "db", 1, OPT_DB},
    {0, "store", 1, OPT_STORE},
    {0, "id", 1, OPT_AID},
    {0, "prefix", 1, OPT_PREFIX},
    {0, "name", 1, OPT_NAME},
    {0, "sign-public", 1, OPT_SIGN_PUBLIC},
    {0, "config", 1, OPT_CONFIG},
    {0, "credential-ttl", 1, OPT_TTL},
    {0, "grace", 1, OPT_GRACE},
    {0, "revoke-grace", 1, OPT_REVOKE_GRACE},
    {0, "list-validity", 1, OPT_LIST_VALIDITY},
    {0, "tree-threshold", 1, OPT_TREE_THRESHOLD},
    {'v', "verbose", 0, OPT_VERBOSE},
    {0, "handshake-limits", 1, OPT_HS_LIMITS},
    {0, "replica-group", 1, OPT_REPLICA_GROUP},
    {0, "replica-id", 1, OPT_REPLICA_ID},
    {0, "help", 0, OPT_HELP},
    {0, NULL, 0, 0},
};

typedef struct auth_args {
    cli_keystore_args k;
    const char *db;
    const char *id;
    const char *prefix;
    const char *name;
    const char *sign_public;
    const char *config;
    cli_broker_args b;
    long ttl;
    long grace;
    long revoke_grace;
    long list_validity;
    long tree_threshold; /* 0: push groups are never converted on their own */
    int verbose;
    const char *hs_limits; /* "RATE,BURST,PER_ID_PER_MIN,PER_ID_BURST[,IDS]" */
    const char *replica_group;
    const char *replica_id;
} auth_args;

static volatile sig_atomic_t stop_flag = 0;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

/* ------------------------------------------------------------ config file */

/* Config strings live as long as the process (the file is small). */
static char *dup_trim(const char *s, size_t n)
{
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        n--;
    char *d = malloc(n + 1U);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Fill unset fields of @p a from FILE. @return exit code. */
static int load_config(auth_args *a)
{
    FILE *f = fopen(a->config, "r");
    if (f == NULL) {
        cli_error("cannot open config %s: %s", a->config, strerror(errno));
        return CLI_EXIT_USAGE;
    }
    char line[4096];
    int lineno = 0, rc = CLI_EXIT_OK;
    while (fgets(line, sizeof line, f) != NULL) {
        lineno++;
        line[strcspn(line, "\n")] = '\0';
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '#' || *p == '\0') continue;
        char *eq = strchr(p, '=');
        if (eq == NULL) {
            cli_error("%s:%d: expected 'key = value'", a->config, lineno);
            rc = CLI_EXIT_USAGE;
            break;
        }
        char *key = dup_trim(p, (size_t)(eq - p));
        char *val = dup_trim(eq + 1, strlen(eq + 1));
        if (key == NULL || val == NULL) {
            free(key);
            free(val);
            rc = CLI_EXIT_USAGE;
            break;
        }
        long x = 0;
        int used_val = 1;
        static const struct {
            const char *key;
            int id;
        } broker_keys[] = {
            {"host", OPT_HOST},
            {"port", OPT_PORT},
            {"username", OPT_USERNAME},
            {"password_file", OPT_PASSWORD_FILE},
            {"cafile", OPT_CAFILE},
            {"capath", OPT_CAPATH},
            {"certfile", OPT_CERT},
            {"keyfile", OPT_TLS_KEY},
            {"tls_version", OPT_TLS_VERSION},
            {"keepalive", OPT_KEEPALIVE},
            {"insecure", OPT_INSECURE},
            {"tls_use_os_certs", OPT_TLS_OS_CERTS},
        };
        int broker_id = 0;
        for (size_t i = 0; i < sizeof broker_keys / sizeof broker_keys[0]; i++)
            if (strcmp(key, broker_keys[i].key) == 0) broker_id = broker_keys[i].id;
        if (broker_id == OPT_INSECURE || broker_id == OPT_TLS_OS_CERTS) {
            used_val = 0;
            if (strcmp(val, "1") == 0 || strcmp(val, "yes") == 0 || strcmp(val, "true") == 0)
                (void)cli_broker_arg(&a->b, broker_id, NULL);
        } else if (broker_id != 0) {
            if (cli_broker_arg(&a->b, broker_id, val) < 0) {
                cli_error("%s:%d: bad value for '%s'", a->config, lineno, key);
                rc = CLI_EXIT_USAGE;
            }
        } else if (strcmp(key, "db") == 0 || strcmp(key, "store") == 0) {
            a->db = val;
        } else if (strcmp(key, "keystore") == 0) {
            a->k.path = val;
        } else if (strcmp(key, "prefix") == 0) {
            a->prefix = val;
        } else if (strcmp(key, "passphrase_file") == 0) {
            a->k.passphrase_file = val;
        } else if (strcmp(key, "key_file") == 0) {
            a->k.key_file = val;
        } else if (strcmp(key, "credential_ttl") == 0) {
            used_val = 0;
            if (cli_parse_long(&x, val, 60, 0x7FFFFFFFL, "credential_ttl") != 0)
                rc = CLI_EXIT_USAGE;
            else
                a->ttl = x;
        } else if (strcmp(key, "grace") == 0) {
            used_val = 0;
            if (cli_parse_long(&x, val, 0, 0x7FFFFFFFL, "grace") != 0)
                rc = CLI_EXIT_USAGE;
            else
                a->grace = x;
        } else if (strcmp(key, "revoke_grace") == 0) {
            used_val = 0;
            if (cli_parse_long(&x, val, 1, 0x7FFFFFFFL, "revoke_grace") != 0)
                rc = CLI_EXIT_USAGE;
            else
                a->revoke_grace = x;
        } else if (strcmp(key, "list_validity") == 0) {
            used_val = 0;
            if (cli_parse_long(&x, val, 2, 0x7FFFFFFFL, "list_validity") != 0)
                rc = CLI_EXIT_USAGE;
            else
                a->list_validity = x;
        } else if (strcmp(key, "tree_threshold") == 0) {
            used_val = 0;
            if (cli_parse_long(&x, val, 0, 1L << 20, "tree_threshold") != 0)
                rc = CLI_EXIT_USAGE;
            else
                a->tree_threshold = x;
        } else if (strcmp(key, "handshake_limits") == 0) {
            a->hs_limits = val;
        } else if (strcmp(key, "replica_group") == 0) {
            a->replica_group = val;
        } else if (strcmp(key, "replica_id") == 0) {
            a->replica_id = val;
        } else if (strcmp(key, "verbose") == 0) {
            used_val = 0;
            if (strcmp(val, "1") == 0 || strcmp(val, "yes") == 0 || strcmp(val, "true") == 0)
                a->verbose = 1;
        } else {
            cli_error("%s:%d: unknown key '%s'", a->config, lineno, key);
            rc = CLI_EXIT_USAGE;
            used_val = 0;
        }
        free(key);
        if (!used_val) free(val);
        if (rc != CLI_EXIT_OK) break;
    }
    fclose(f);
    return rc;
}

/* ------------------------------------------------------------ subcommands */

/* The prefix chosen at init, remembered in the authority keystore's own pin. */
static const char *choose_prefix(const char *flag, const mqe2e_keystore *ks,
                                 mqe2e_authority_pin *own)
{
    if (flag != NULL) return flag;
    if (ks != NULL && mqe2e_keystore_authority(ks, own) == MQE2E_OK) return own->control_prefix;
    return AUTHORITY_DEFAULT_PREFIX;
}

static int print_pin(const mqe2e_keystore *ks, const char *prefix)
{
    char *pin = NULL;
    int lrc = authority_pin_text(&pin, ks, prefix);
    if (lrc != MQE2E_OK) {
        cli_error("cannot build the authority pin: %s", mqe2e_strerror(lrc));
        return CLI_EXIT_KEY;
    }
    printf("%s\n", pin);
    fflush(stdout);
    free(pin);
    return CLI_EXIT_OK;
}

static int open_db(mqe2e_adb **db, const mqe2e_keystore *ks, const char *path)
{
    uint8_t key[MQE2E_ADB_KEY_BYTES];
    int lrc = authority_db_key(key, ks);
    if (lrc == MQE2E_OK) lrc = mqe2e_adb_open(db, path, key);
    sodium_memzero(key, sizeof key);
    if (lrc != MQE2E_OK) {
        cli_error("cannot open database %s: %s", store_uri_shown(path),
                  lrc == MQE2E_ERR_AUTH ? "it belongs to another authority keystore"
                                        : mqe2e_strerror(lrc));
        return CLI_EXIT_KEY;
    }
    return CLI_EXIT_OK;
}

static int do_init(const auth_args *a)
{
    struct stat st;
    if (a->db == NULL || a->id == NULL) {
        cli_error("authority init needs --db DB (or --store URI) and --id AUTHORITY_ID");
        return CLI_EXIT_USAGE;
    }
    const char *prefix = a->prefix != NULL ? a->prefix : AUTHORITY_DEFAULT_PREFIX;
    if (!mqe2e_control_prefix_valid(prefix)) {
        cli_error("invalid control prefix '%s'", prefix);
        return CLI_EXIT_USAGE;
    }
    if (!mqe2e_client_id_valid(a->id)) {
        cli_error("invalid authority id '%s' (1-255 printable characters, no / + #)", a->id);
        return CLI_EXIT_USAGE;
    }
    /* A file store must not exist yet; a PostgreSQL store may (an empty
     * database): one holding another authority refuses the new key. */
    const char *file = strncmp(a->db, "sqlite:", 7) == 0 ? a->db + 7 : a->db;
    if (!store_uri_is_server(a->db) && (stat(file, &st) == 0 || errno != ENOENT)) {
        cli_error("database %s already exists; refusing to overwrite it", a->db);
        return CLI_EXIT_KEY;
    }
    if (!store_uri_valid(a->db)) {
        /* The scheme only: the rest of a mistyped server URI may hold a password. */
        const char *sep = strstr(a->db, "://");
        cli_error("unknown store scheme '%.*s://' (sqlite:PATH, a path, or postgresql://...)",
                  sep != NULL ? (int)(sep - a->db) : 0, a->db);
        return CLI_EXIT_USAGE;
    }
    cli_keystore c;
    int rc = cli_keystore_create(&c, &a->k, a->id, 0);
    if (rc != CLI_EXIT_OK) return rc;
    int lrc = mqe2e_keystore_flush(c.ks);
    if (lrc != MQE2E_OK) {
        cli_error("cannot write keystore %s: %s", a->k.path, mqe2e_strerror(lrc));
        cli_keystore_close(&c);
        return CLI_EXIT_KEY;
    }
    mqe2e_authority_pin own;
    memset(&own, 0, sizeof own);
    snprintf(own.authority_id, sizeof own.authority_id, "%s", a->id);
    snprintf(own.control_prefix, sizeof own.control_prefix, "%s", prefix);
    lrc = mqe2e_keystore_identity_public(c.ks, own.sign_public, own.dh_public);
    if (lrc == MQE2E_OK) lrc = mqe2e_keystore_set_authority(c.ks, &own);
    if (lrc != MQE2E_OK) {
        cli_error("cannot record the authority settings in %s: %s", a->k.path, mqe2e_strerror(lrc));
        cli_keystore_close(&c);
        return CLI_EXIT_KEY;
    }
    mqe2e_adb *db = NULL;
    rc = open_db(&db, c.ks, a->db);
    if (rc == CLI_EXIT_OK) {
        (void)mqe2e_adb_audit_append(db, cli_now(), "local", "init", a->id);
        mqe2e_adb_close(db);
        fprintf(stderr, "authority %s created: keystore %s, database %s, prefix %s\n", a->id,
                a->k.path, store_uri_shown(a->db), prefix);
        fprintf(stderr, "authority pin (public; operators use it as --authority):\n");
        rc = print_pin(c.ks, prefix);
    }
    cli_keystore_close(&c);
    return rc;
}

static int do_operator_add(const auth_args *a)
{
    uint8_t pk[32];
    size_t pk_len = 0;
    if (a->db == NULL || a->name == NULL || a->sign_public == NULL) {
        cli_error("operator-add needs --db DB (or --store URI), --name NAME and --sign-public HEX");
        return CLI_EXIT_USAGE;
    }
    if (!mqe2e_client_id_valid(a->name)) {
        cli_error("invalid operator name '%s'", a->name);
        return CLI_EXIT_USAGE;
    }
    if (sodium_hex2bin(pk, sizeof pk, a->sign_public, strlen(a->sign_public), NULL, &pk_len,
                       NULL) != 0 ||
        pk_len != sizeof pk || strlen(a->sign_public) != 64U) {
        cli_error("--sign-public must be 64 hex digits (an Ed25519 public key)");
        return CLI_EXIT_USAGE;
    }
    cli_keystore c;
    int rc = cli_keystore_open(&c, &a->k);
    if (rc != CLI_EXIT_OK) return rc;
    mqe2e_adb *db = NULL;
    rc = open_db(&db, c.ks, a->db);
    if (rc == CLI_EXIT_OK) {
        int lrc = mqe2e_adb_operator_add(db, a->name, pk, cli_now());
        if (lrc == MQE2E_OK) {
            (void)mqe2e_adb_audit_append(db, cli_now(), "local", "operator-add", a->name);
            fprintf(stderr, "operator %s registered\n", a->name);
        } else {
            cli_error("cannot register operator %s: %s", a->name,
                      lrc == MQE2E_ERR_EXISTS ? "already registered" : mqe2e_strerror(lrc));
            rc = CLI_EXIT_KEY;
        }
        mqe2e_adb_close(db);
    }
    cli_keystore_close(&c);
    return rc;
}

static int do_pin(const auth_args *a)
{
    mqe2e_authority_pin own;
    cli_keystore c;
    int rc = cli_keystore_open(&c, &a->k);
    if (rc != CLI_EXIT_OK) return rc;
    const char *prefix = choose_prefix(a->prefix, c.ks, &own);
    if (a->id != NULL && strcmp(a->id, mqe2e_keystore_client_id(c.ks)) != 0) {
        cli_error("keystore %s belongs to authority %s, not %s", a->k.path,
                  mqe2e_keystore_client_id(c.ks), a->id);
        rc = CLI_EXIT_KEY;
    } else {
        rc = print_pin(c.ks, prefix);
    }
    cli_keystore_close(&c);
    return rc;
}

/* "RATE,BURST,PER_ID_PER_MIN,PER_ID_BURST[,IDS]" over the defaults. @return 0 or -1. */
static int parse_limits(authority_rl_config *c, const char *text)
{
    uint32_t *field[] = {&c->rate, &c->burst, &c->key_per_min, &c->key_burst, &c->keys};
    const char *p = text;
    authority_rl_defaults(c);
    for (size_t i = 0; i < sizeof field / sizeof field[0]; i++) {
        char *end = NULL;
        errno = 0;
        unsigned long v = strtoul(p, &end, 10);
        if (end == p || errno != 0 || v > 16777216UL || (*end != ',' && *end != '\0') || *p == '-')
            return -1;
        *field[i] = (uint32_t)v;
        if (*end == '\0') return i >= 3 && c->keys >= 4 ? 0 : -1;
        p = end + 1;
    }
    return -1;
}

static int do_run(auth_args *a)
{
    if (a->db == NULL) {
        cli_error("no database given (--db DB, --store URI, 'store =' in the config or "
                  "MQE2E_AUTHORITY_STORE)");
        return CLI_EXIT_USAGE;
    }
    authority_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cli_broker_conn conn;
    /* The authority's MQTT client id is its keystore's id (the ACL's mqe2e-authority). */
    int brc = cli_broker_prepare(&conn, &a->b, 30);
    if (brc != CLI_EXIT_OK) return brc;
    cfg.uri = conn.uri;
    cfg.ssl = conn.co.ssl;
    cfg.keepalive = conn.co.keepAliveInterval;
    cfg.username = a->b.username;
    cfg.password = conn.password;
    cfg.db_path = a->db;
    cfg.core.prefix = a->prefix != NULL ? a->prefix : AUTHORITY_DEFAULT_PREFIX;
    if (a->prefix != NULL && !mqe2e_control_prefix_valid(a->prefix)) {
        cli_error("invalid control prefix '%s'", a->prefix);
        return CLI_EXIT_USAGE;
    }
    cfg.core.credential_ttl = a->ttl > 0 ? (uint64_t)a->ttl : AUTHORITY_DEFAULT_CREDENTIAL_TTL;
    cfg.core.grace = a->grace >= 0 ? (uint64_t)a->grace : AUTHORITY_DEFAULT_GRACE;
    cfg.core.revoke_grace =
        a->revoke_grace > 0 ? (uint64_t)a->revoke_grace : AUTHORITY_DEFAULT_REVOKE_GRACE;
    cfg.core.list_validity =
        a->list_validity > 0 ? (uint64_t)a->list_validity : AUTHORITY_DEFAULT_LIST_VALIDITY;
    cfg.core.tree_threshold = a->tree_threshold > 0 ? (uint64_t)a->tree_threshold : 0U;
    cfg.core.verbose = a->verbose;
    cfg.stop = &stop_flag;
    if (a->replica_id != NULL && a->replica_group == NULL) {
        cli_error("--replica-id needs --replica-group");
        return CLI_EXIT_USAGE;
    }
    if (a->replica_group != NULL &&
        (a->replica_group[0] == '\0' || strpbrk(a->replica_group, "/+#") != NULL)) {
        cli_error("--replica-group is one topic level: no '/', '+' or '#'");
        return CLI_EXIT_USAGE;
    }
    cfg.replica_group = a->replica_group;
    cfg.replica_id = a->replica_id;
    authority_rl_config limits;
    if (a->hs_limits != NULL) {
        if (parse_limits(&limits, a->hs_limits) != 0) {
            cli_error("--handshake-limits wants RATE,BURST,PER_ID_PER_MIN,PER_ID_BURST[,IDS] "
                      "(numbers, IDS >= 4), not '%s'",
                      a->hs_limits);
            return CLI_EXIT_USAGE;
        }
        cfg.core.limits = &limits;
    }
    cli_keystore c;
    int rc = cli_keystore_open(&c, &a->k);
    if (rc != CLI_EXIT_OK) {
        cli_broker_conn_free(&conn);
        return rc;
    }
    mqe2e_authority_pin own;
    cfg.core.prefix = choose_prefix(a->prefix, c.ks, &own);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int lrc = authority_run(c.ks, &cfg);
    cli_keystore_close(&c);
    cli_broker_conn_free(&conn);
    if (lrc == MQE2E_ERR_AUTH) {
        cli_error("authority stopped: the broker refused the login (see the log above)");
        return CLI_EXIT_LOGIN;
    }
    if (lrc != MQE2E_OK) {
        cli_error("authority stopped: %s",
                  lrc == MQE2E_ERR_IO ? "broker unreachable or database error (see the log above)"
                                      : mqe2e_strerror(lrc));
        return lrc == MQE2E_ERR_IO ? CLI_EXIT_BROKER : CLI_EXIT_KEY;
    }
    return CLI_EXIT_OK;
}

static int authority_main(auth_args *ap, int argc, char **argv, const char *sub);

int authority_cli(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        print_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    const char *sub = argv[1];
    auth_args a;
    memset(&a, 0, sizeof a);
    a.grace = -1;
    cli_broker_args_init(&a.b);
    int rc = authority_main(&a, argc, argv, sub);
    cli_broker_args_free(&a.b);
    return rc;
}

/* Options file, then --config, then the command line: each overrides the one before. */
static int authority_main(auth_args *ap, int argc, char **argv, const char *sub)
{
    auth_args a = *ap;
    char command[48];
    snprintf(command, sizeof command, "authority %s", sub);
    cli_parser p;
    int id = 0, r;
    const char *v;
    int is_run = strcmp(sub, "run") == 0;
    if (is_run) {
        if (cli_wants_help(argc, argv)) {
            print_usage(stdout);
            return CLI_EXIT_OK;
        }
        int orc = cli_broker_load_options(&a.b, opts);
        ap->b = a.b;
        if (orc != CLI_EXIT_OK) return orc;
        cli_parser_init(&p, argc - 1, argv + 1, command);
        while ((r = cli_next(&p, opts, &id, &v)) != CLI_NEXT_END) {
            if (r == CLI_NEXT_OPTION && id == OPT_CONFIG) a.config = v;
        }
        if (a.config != NULL) {
            orc = load_config(&a);
            ap->b = a.b;
            if (orc != CLI_EXIT_OK) return orc;
        }
    }
    const char *cfg_pass = a.k.passphrase_file, *cfg_key = a.k.key_file;
    int argv_pass = 0, argv_key = 0;
    cli_parser_init(&p, argc - 1, argv + 1, command);
    while ((r = cli_next(&p, opts, &id, &v)) != CLI_NEXT_END) {
        if (r == CLI_NEXT_ERROR) return CLI_EXIT_USAGE;
        if (r == CLI_NEXT_POSITIONAL) {
            cli_error("unexpected argument '%s' (see 'mqe2e authority --help')", v);
            return CLI_EXIT_USAGE;
        }
        if (id == OPT_PASSPHRASE_FILE) argv_pass = 1;
        if (id == OPT_KEY_FILE) argv_key = 1;
        if (cli_keystore_arg(&a.k, id, v)) continue;
        int br = cli_broker_arg(&a.b, id, v);
        ap->b = a.b;
        if (br < 0) return CLI_EXIT_USAGE;
        if (br > 0) continue;
        switch (id) {
        case OPT_HELP:
            print_usage(stdout);
            return CLI_EXIT_OK;
        case OPT_DB:
        case OPT_STORE:
            a.db = v;
            break;
        case OPT_AID:
            a.id = v;
            break;
        case OPT_PREFIX:
            a.prefix = v;
            break;
        case OPT_NAME:
            a.name = v;
            break;
        case OPT_SIGN_PUBLIC:
            a.sign_public = v;
            break;
        case OPT_CONFIG:
            a.config = v;
            break;
        case OPT_TTL:
            if (cli_parse_long(&a.ttl, v, 60, 0x7FFFFFFFL, "--credential-ttl") != 0)
                return CLI_EXIT_USAGE;
            break;
        case OPT_GRACE:
            if (cli_parse_long(&a.grace, v, 0, 0x7FFFFFFFL, "--grace") != 0) return CLI_EXIT_USAGE;
            break;
        case OPT_REVOKE_GRACE:
            if (cli_parse_long(&a.revoke_grace, v, 1, 0x7FFFFFFFL, "--revoke-grace") != 0)
                return CLI_EXIT_USAGE;
            break;
        case OPT_LIST_VALIDITY:
            if (cli_parse_long(&a.list_validity, v, 2, 0x7FFFFFFFL, "--list-validity") != 0)
                return CLI_EXIT_USAGE;
            break;
        case OPT_TREE_THRESHOLD:
            if (cli_parse_long(&a.tree_threshold, v, 0, 1L << 20, "--tree-threshold") != 0)
                return CLI_EXIT_USAGE;
            break;
        case OPT_VERBOSE:
            a.verbose = 1;
            break;
        case OPT_HS_LIMITS:
            a.hs_limits = v;
            break;
        case OPT_REPLICA_GROUP:
            a.replica_group = v;
            break;
        case OPT_REPLICA_ID:
            a.replica_id = v;
            break;
        default:
            break;
        }
    }
    /* A key source on the command line replaces the config file's other one. */
    if (argv_key && !argv_pass && a.k.passphrase_file == cfg_pass) a.k.passphrase_file = NULL;
    if (argv_pass && !argv_key && a.k.key_file == cfg_key) a.k.key_file = NULL;
    cli_set_quiet(a.b.quiet);
    if (a.db == NULL) {
        const char *env = getenv("MQE2E_AUTHORITY_STORE");
        if (env != NULL && env[0] != '\0') a.db = env;
    }
    if (is_run) return do_run(&a);
    int rc = cli_keystore_args_check(&a.k);
    if (rc != CLI_EXIT_OK) return rc;
    if (strcmp(sub, "init") == 0) return do_init(&a);
    if (strcmp(sub, "operator-add") == 0) return do_operator_add(&a);
    if (strcmp(sub, "pin") == 0) return do_pin(&a);
    cli_error("unknown authority command '%s' (see 'mqe2e authority --help')", sub);
    return CLI_EXIT_USAGE;
}
