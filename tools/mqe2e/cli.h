/**
 * @file cli.h
 * @brief Shared pieces of the `mqe2e` command: exit codes, argument parsing,
 *        secrets and keystore access, broker connection.
 *
 * Each subcommand is `int cmd_xxx(int argc, char **argv)` with argv[0] the
 * subcommand name; it returns a process exit code and has already printed the
 * one-line "mqe2e: <reason>" on failure.
 */
#ifndef MQE2E_CLI_H
#define MQE2E_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "mqe2e/MQTTClient.h"
#include "mqe2e/tcp.h"
#include "mqe2e/mqe2e.h"

/** Process exit codes (documented in docs/CLI.md). */
enum cli_exit {
    CLI_EXIT_OK = 0,      /**< success */
    CLI_EXIT_USAGE = 1,   /**< bad command line */
    CLI_EXIT_KEY = 2,     /**< keystore, secret, group or policy error */
    CLI_EXIT_BROKER = 3,  /**< connection or broker error */
    CLI_EXIT_TIMEOUT = 4, /**< -W expired before -C messages arrived */
    CLI_EXIT_LOGIN = 5,   /**< the broker refused the login (user name, password, client id) */
    CLI_EXIT_TLS = 6,     /**< TLS handshake failed (certificate did not verify, not TLS) */
};

/* ---- argument parsing (args.c) ---- */

/** One accepted option: "-x" and/or "--long", with or without a value. */
typedef struct cli_opt {
    char short_name;       /**< 0 when there is no short form */
    const char *long_name; /**< NULL when there is no long form */
    int has_arg;           /**< 1 if the option takes a value */
    int id;                /**< returned to the caller */
} cli_opt;

/** Parser state over argv[1..argc-1]. */
typedef struct cli_parser {
    int argc;
    char **argv;
    int index;
    int only_positional; /**< set after "--" */
    const char *command; /**< e.g. "group create", for messages */
} cli_parser;

/** Option ids shared by every subcommand. */
enum cli_common_opt {
    OPT_HELP = 1000,
    OPT_KEYSTORE,
    OPT_PASSPHRASE_FILE,
    OPT_KEY_FILE,
};

/** The keystore options of every keystore command (-K; -k is the keep-alive, CHANGELOG). */
#define CLI_KEYSTORE_OPTS                                                                      \
    {'K', "keystore", 1, OPT_KEYSTORE}, {0, "passphrase-file", 1, OPT_PASSPHRASE_FILE},         \
        {0, "key-file", 1, OPT_KEY_FILE}

/** 1 when argv holds --help (answered before the options file is read). */
int cli_wants_help(int argc, char **argv);

#define CLI_NEXT_END 0        /**< no more arguments */
#define CLI_NEXT_OPTION 1     /**< *id and (maybe) *value set */
#define CLI_NEXT_POSITIONAL 2 /**< *value set */
#define CLI_NEXT_ERROR (-1)   /**< message printed */

/** Start parsing after argv[0]; @p command names the subcommand in messages. */
void cli_parser_init(cli_parser *p, int argc, char **argv, const char *command);

/** Next option or positional argument; prints the reason on CLI_NEXT_ERROR. */
int cli_next(cli_parser *p, const cli_opt *opts, int *id, const char **value);

/** Parse a decimal integer in [min, max]; prints the reason on failure. */
int cli_parse_long(long *out, const char *text, long min, long max, const char *what);

/* ---- output (util.c) ---- */

/** --quiet: cli_error() prints nothing from now on. */
void cli_set_quiet(int quiet);

/** Print "mqe2e: <message>" and a newline on stderr (nothing after cli_set_quiet(1)). */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/** Print "<label><hex>\n" on stdout. */
void cli_print_hex(const char *label, const uint8_t *data, size_t len);

/** Read a whole file into a malloc()ed buffer. @return 0 or -1 (reason printed). */
int cli_read_file(uint8_t **out, size_t *out_len, const char *path, size_t max_len);

/** Write a file readable by its owner only (mode 0600), replacing it atomically. */
int cli_write_private_file(const char *path, const uint8_t *data, size_t len);

/** Seconds since the epoch, for keystore calls that take the caller's clock. */
uint64_t cli_now(void);

/** Map a library error from a keystore/group/policy call to an exit code (always 2). */
int cli_exit_for_lib(int code);

/* ---- secrets and keystore access (secrets.c) ---- */

/** Where the keystore and its key come from. */
typedef struct cli_keystore_args {
    const char *path;            /**< -k */
    const char *passphrase_file; /**< --passphrase-file */
    const char *key_file;        /**< --key-file */
} cli_keystore_args;

/** An open keystore and the lock that keeps other processes out of it. */
typedef struct cli_keystore {
    mqe2e_keystore *ks;
    int lock_fd;
} cli_keystore;

/**
 * Handle the options common to every keystore command (-k, --passphrase-file,
 * --key-file). @return 1 if @p id was one of them, 0 otherwise.
 */
int cli_keystore_arg(cli_keystore_args *k, int id, const char *value);

/** Check that -k was given; prints the usage reason. @return exit code. */
int cli_keystore_args_check(const cli_keystore_args *k);

/** Open an existing keystore (exclusive lock held until cli_keystore_close). @return exit code. */
int cli_keystore_open(cli_keystore *out, const cli_keystore_args *k);

/** Create a keystore; refuses an existing file. @return exit code. */
int cli_keystore_create(cli_keystore *out, const cli_keystore_args *k, const char *client_id,
                        uint32_t sender_id);

/** Argon2id limits for a new passphrase keystore (--kdf); 0, 0 = the defaults. */
typedef struct cli_kdf {
    uint64_t opslimit;
    uint64_t memlimit;
} cli_kdf;

/** The --kdf help line shared by the commands that create keystores. */
#define CLI_KDF_HELP                                                                     \
    "      --kdf LIMITS         Argon2id cost of a new passphrase keystore: 'default'\n" \
    "                           (64 MiB, 2 passes), 'small' (8 MiB, 5 passes) or\n"     \
    "                           MIB:PASSES (floor: 8 MiB and MIB x PASSES >= 40)\n"

/** Parse --kdf: "default", "small" or "MIB:PASSES"; prints the reason. @return 0 or -1. */
int cli_parse_kdf(cli_kdf *out, const char *v);

/** cli_keystore_create() with the Argon2id limits of a new passphrase file
 *  (@p kdf NULL or 0, 0: the defaults). @return exit code. */
int cli_keystore_create_kdf(cli_keystore *out, const cli_keystore_args *k, const char *client_id,
                            uint32_t sender_id, const cli_kdf *kdf);

/** Close (writes state, wipes secrets) and release the lock. */
void cli_keystore_close(cli_keystore *c);

/**
 * Read the export passphrase for group files: MQE2E_EXPORT_PASSPHRASE, or the
 * first line of @p file when given. *out is sodium_malloc()ed: release with
 * cli_secret_free(). @return exit code.
 */
int cli_export_passphrase(char **out, size_t *out_len, const char *file, const char *command);

/** Move MQE2E_PASSPHRASE and MQE2E_EXPORT_PASSPHRASE out of the environment
 *  into guarded memory (the variables are wiped and unset). Call once, first. */
void cli_secrets_from_env(void);

/**
 * Start-up of a program that holds keys (`mqe2e`, `mqe2e-authority`):
 * initialise libsodium, forbid core files and ptrace / /proc/PID/mem access by
 * other processes of the same user, then take the secrets of the environment
 * (cli_secrets_from_env()). @return CLI_EXIT_OK, or CLI_EXIT_KEY (printed).
 */
int cli_process_start(void);

/** Wipe and free a secret string from cli_export_passphrase(). NULL is a no-op. */
void cli_secret_free(char *secret);

/* ---- broker options (broker.c) ---- */

/** Option ids of the broker options; OPT_HOST..OPT_BROKER_END-1 may appear in the options file. */
enum cli_broker_opt {
    OPT_HOST = 1100,
    OPT_PORT,
    OPT_URL,
    OPT_USERNAME,
    OPT_PASSWORD,
    OPT_PASSWORD_FILE,
    OPT_CAFILE,
    OPT_CAPATH,
    OPT_CERT,
    OPT_TLS_KEY,
    OPT_INSECURE,
    OPT_TLS_VERSION,
    OPT_TLS_OS_CERTS,
    OPT_CIPHERS,
    OPT_KEEPALIVE,
    OPT_ID,
    OPT_ID_PREFIX,
    OPT_PROTOCOL,
    OPT_NO_CLEAN,
    OPT_SESSION_EXPIRY,
    OPT_WILL_TOPIC,
    OPT_WILL_PAYLOAD,
    OPT_WILL_QOS,
    OPT_WILL_RETAIN,
    OPT_DEBUG,
    OPT_QUIET,
    OPT_BROKER_END,
    OPT_POLICY,
};

/** Broker options of every command that connects (mosquitto_pub's names). */
#define CLI_BROKER_OPTS                                                                        \
    {'h', "host", 1, OPT_HOST}, {'p', "port", 1, OPT_PORT}, {'u', "username", 1, OPT_USERNAME}, \
        {'P', "pw", 1, OPT_PASSWORD}, {0, "password-file", 1, OPT_PASSWORD_FILE},               \
        {0, "cafile", 1, OPT_CAFILE}, {0, "capath", 1, OPT_CAPATH}, {0, "cert", 1, OPT_CERT},   \
        {0, "key", 1, OPT_TLS_KEY}, {0, "insecure", 0, OPT_INSECURE},                               \
        {0, "tls-version", 1, OPT_TLS_VERSION}, {0, "tls-use-os-certs", 0, OPT_TLS_OS_CERTS},   \
        {0, "ciphers", 1, OPT_CIPHERS}, {'k', "keepalive", 1, OPT_KEEPALIVE},                   \
        {'d', "debug", 0, OPT_DEBUG}, {0, "quiet", 0, OPT_QUIET}

/** Session options of pub and sub (the other commands' client ids are fixed by the ACL). */
#define CLI_SESSION_OPTS                                                                       \
    {'L', "url", 1, OPT_URL}, {'i', "id", 1, OPT_ID}, {'I', "id-prefix", 1, OPT_ID_PREFIX},     \
        {'V', "protocol-version", 1, OPT_PROTOCOL}, {'c', "disable-clean-session", 0, OPT_NO_CLEAN}, \
        {'x', "session-expiry-interval", 1, OPT_SESSION_EXPIRY},                                \
        {0, "will-topic", 1, OPT_WILL_TOPIC}, {0, "will-payload", 1, OPT_WILL_PAYLOAD},         \
        {0, "will-qos", 1, OPT_WILL_QOS}, {0, "will-retain", 0, OPT_WILL_RETAIN}

/** Help lines of ::CLI_BROKER_OPTS. */
#define CLI_BROKER_HELP                                                                        \
    "  -h, --host HOST       broker host (default localhost)\n"                                  \
    "  -p, --port PORT       broker port (default 1883, 8883 with TLS)\n"                        \
    "  -u, --username USER   broker user name\n"                                                 \
    "      --password-file F broker password from F's first line (mode 0600); else\n"           \
    "                        MQE2E_BROKER_PASSWORD; -P/--pw PASS works but shows in ps\n"        \
    "      --cafile FILE     TLS: CA certificates (PEM) that sign the broker's certificate\n"   \
    "      --capath DIR      TLS: directory of CA certificates (c_rehash'ed)\n"                 \
    "      --tls-use-os-certs TLS with the system's CA certificates\n"                          \
    "      --cert FILE, --key FILE  TLS client certificate and its private key (PEM)\n"        \
    "      --insecure        TLS: do not check the host name in the broker's certificate\n"     \
    "      --tls-version V   tlsv1.3, tlsv1.2, tlsv1.1 or tlsv1 (lowest accepted)\n"           \
    "      --ciphers LIST    TLS cipher list (OpenSSL syntax)\n"                                 \
    "  -k, --keepalive S     MQTT keep-alive in seconds (the keystore is -K)\n" \
    "  -d, --debug           connection progress on stderr\n"                                    \
    "      --quiet           no error or warning lines on stderr (exit codes stay)\n"           \
    "Defaults for these come from the options file ~/.config/mqe2e (see docs/CLI.md).\n"

/** Help lines of ::CLI_SESSION_OPTS. */
#define CLI_SESSION_HELP                                                                       \
    "  -L, --url URL         mqtt(s)://[USER[:PASS]@]HOST[:PORT]/TOPIC in place of -h -p -t\n" \
    "  -i, --id ID           MQTT client id (default: the keystore's client id when it is\n"   \
    "                        enrolled, else it + '-' + pid)\n"                                   \
    "  -I, --id-prefix P     MQTT client id P + pid\n"                                           \
    "  -V, --protocol-version V  mqttv31, mqttv311 (default) or mqttv5\n"                       \
    "  -c, --disable-clean-session  keep the broker session (QoS 1/2 queued while away)\n"     \
    "  -x, --session-expiry-interval S  MQTT v5 session expiry\n"                               \
    "      --will-topic T, --will-payload P, --will-qos Q, --will-retain\n"                     \
    "                        last will; sealed like a publish when T is protected\n"

/** Broker options as parsed; strings are borrowed from argv or owned (options file, -L). */
typedef struct cli_broker_args {
    const char *host;
    long port; /**< 0: 1883, or 8883 with TLS */
    const char *url_topic; /**< topic of -L */
    int tls_from_url;
    const char *username;
    const char *password_arg;
    const char *password_file;
    const char *cafile, *capath, *cert, *key, *ciphers, *tls_version;
    int insecure, os_certs;
    long keepalive; /**< -1: the command's default */
    const char *client_id, *id_prefix;
    int version; /**< 0, MQTTVERSION_3_1, MQTTVERSION_3_1_1, MQTTVERSION_5 */
    int no_clean;
    long session_expiry; /**< -1: none */
    const char *will_topic, *will_payload;
    long will_qos;
    int will_retain;
    int debug, quiet;
} cli_broker_args;

/** Paho options built from ::cli_broker_args; lives while the client connects. */
typedef struct cli_broker_conn {
    char uri[600];
    MQTTClient_connectOptions co;
    MQTTClient_SSLOptions ssl;
    MQTTClient_willOptions will;
    MQTTProperties props;
    int has_props;
    char *password; /**< sodium_malloc()ed */
    char ssl_error[256];
} cli_broker_conn;

void cli_broker_args_init(cli_broker_args *b);
void cli_broker_args_free(cli_broker_args *b);

/** Apply a broker option. @return 1 if @p id was one, 0 if not, -1 on a bad value (printed). */
int cli_broker_arg(cli_broker_args *b, int id, const char *value);

/** Path of the options file (MQE2E_OPTIONS_FILE, $XDG_CONFIG_HOME/mqe2e, ~/.config/mqe2e), or NULL. */
const char *cli_options_file_path(char *buf, size_t cap);

/** Read the options file (before argv, which overrides it); @p opts the command's table. @return exit code. */
int cli_broker_load_options(cli_broker_args *b, const cli_opt *opts);

/** Whether TLS is in use (any TLS option, or -L mqtts://). */
int cli_broker_tls(const cli_broker_args *b);

/** The port in use: -p, else 8883 with TLS, else 1883. */
long cli_broker_port(const cli_broker_args *b);

/** Build URI, connect, SSL and will options and read the password. @return exit code. */
int cli_broker_prepare(cli_broker_conn *c, const cli_broker_args *b, int keepalive_default);

/** Wipe the password and free the properties. */
void cli_broker_conn_free(cli_broker_conn *c);

/** MQTT client id: -i, else -I + pid, else @p fallback (+ '-' pid when @p add_pid). @return 0 or -1. */
int cli_broker_client_id(char *out, size_t cap, const cli_broker_args *b, const char *fallback,
                         int add_pid);

/** Print why a connect failed (login refused, TLS, ...). @return the exit code. */
int cli_broker_connect_failed(const cli_broker_conn *c, int rc, const char *what);

/** Secrets from a private file's first line / an environment variable (1: unset). */
int cli_secret_from_file(char **out, size_t *out_len, const char *path, const char *what);
int cli_secret_from_env(char **out, size_t *out_len, const char *name);

/* ---- encrypted session (connect.c) ---- */

/** Connection and policy options shared by pub and sub. */
typedef struct cli_conn_args {
    cli_broker_args b;
    const char **rules; /**< --policy, in order */
    size_t rule_count;
    size_t max_payload; /**< --max-payload; 0: the library default (1 MiB) */
} cli_conn_args;

/** Apply a connection option. @return 1 if @p id was one, 0 if not, -1 on a bad value. */
int cli_conn_arg(cli_conn_args *c, int id, const char *value);

void cli_conn_args_free(cli_conn_args *c);

/** A connected encrypted client and what it borrows. */
typedef struct cli_session {
    cli_keystore keystore;
    mqe2e_policy *policy;
    mqe2e_MQTTClient client;
    cli_broker_conn conn;
    int mqtt5; /**< -V mqttv5: the *5 calls */
    int connected;
    const char *keystore_path; /**< -k, for KEYSTORE.stats (set by cli_session_prepare) */
    const char *command;       /**< "pub" or "sub": set once prepared to record counters */
    long stats_last_ms;        /**< monotonic time of the last periodic counters write */
} cli_session;

/**
 * Build the policy (--policy rules first, then one rule per keystore group),
 * create the encrypted client and attach keystore and policy. Does not connect.
 * @return exit code.
 */
int cli_session_prepare(cli_session *s, const cli_keystore_args *k, const cli_conn_args *c);

/** Connect to the broker. @return exit code. */
int cli_session_connect(cli_session *s, const cli_conn_args *c);

/** Publish (v3 or v5 call as the session was created). @return Paho/mqe2e code. */
int cli_session_publish(cli_session *s, const char *topic, const void *data, int len, int qos,
                        int retain, MQTTClient_deliveryToken *dt);

/** Subscribe (v3 or v5); @p qos gets the granted QoS (0x80: refused). @return Paho/mqe2e code. */
int cli_session_subscribe(cli_session *s, int count, char *const *filters, int *qos);

/** Disconnect (if connected), destroy the client, free the policy, close the keystore. */
void cli_session_close(cli_session *s);

/** Exit code for a failed mqe2e_MQTTClient_* call. */
int cli_exit_for_client(int rc);

/* ---- shared printing (cmd_keygen.c, cmd_group.c) ---- */

/** Print client id, sender id and public keys. */
void cli_print_identity(const mqe2e_keystore *ks);

/** Print one line per group: tab-separated (list) or labelled and indented (status). */
void cli_print_groups(const mqe2e_keystore *ks, int labelled);

/* ---- counters file and status output (stats.c) ---- */

/** Seconds between two counters writes of a running `sub`. */
#define CLI_STATS_PERIOD_MS 5000L

/**
 * Record the session's counters (data and control) in KEYSTORE.stats: JSON,
 * mode 0600, replaced atomically. Holds counts, the time, the pid and the
 * command name only — never a topic, payload, argument or key. Does nothing
 * before the session connected or when s->command is NULL.
 * @param at_exit 1 for the last write of the process, 0 for a periodic one.
 * @return 0, or -1 (one warning line printed).
 */
int cli_stats_write(cli_session *s, int at_exit);

/** Periodic write from a receive loop: at most once every ::CLI_STATS_PERIOD_MS. */
void cli_stats_tick(cli_session *s);

/** Print the counters recorded next to @p keystore_path (text form of `status`). */
void cli_stats_print(const char *keystore_path);

/** Print the authority pin and credential expiry lines of `status` (nothing if not enrolled). */
void cli_status_print_enrollment(const mqe2e_keystore *ks);

/** Print the whole local status as one JSON object on stdout (`status --json`). */
void cli_status_print_json(const mqe2e_keystore *ks, const char *keystore_path);

/* ---- subcommands ---- */
int cmd_keygen(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_group(int argc, char **argv);
int cmd_pub(int argc, char **argv);
int cmd_sub(int argc, char **argv);
int cmd_enroll(int argc, char **argv);

#endif
