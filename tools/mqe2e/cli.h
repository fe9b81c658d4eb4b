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
#include "mqe2e/mqe2e.h"

/** Process exit codes (documented in docs/CLI.md). */
enum cli_exit {
    CLI_EXIT_OK = 0,      /**< success */
    CLI_EXIT_USAGE = 1,   /**< bad command line */
    CLI_EXIT_KEY = 2,     /**< keystore, secret, group or policy error */
    CLI_EXIT_BROKER = 3,  /**< connection or broker error */
    CLI_EXIT_TIMEOUT = 4, /**< -W expired before -C messages arrived */
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

/** Print "mqe2e: <message>" and a newline on stderr. */
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

/** Wipe and free a secret string from cli_export_passphrase(). NULL is a no-op. */
void cli_secret_free(char *secret);

/* ---- broker connection (connect.c) ---- */

/** Connection and policy options shared by pub and sub. */
typedef struct cli_conn_args {
    const char *host;      /**< -h, default "localhost" */
    long port;             /**< -p, default 1883 */
    const char *client_id; /**< -i, default "<keystore client id>-<pid>" */
    const char **rules;    /**< --policy, in order */
    size_t rule_count;
    int debug; /**< -d */
} cli_conn_args;

/** Option ids of cli_conn_args. */
enum cli_conn_opt {
    OPT_HOST = 1100,
    OPT_PORT,
    OPT_ID,
    OPT_POLICY,
    OPT_DEBUG,
};

/** Apply a connection option. @return 1 if @p id was one, 0 if not, -1 on a bad value. */
int cli_conn_arg(cli_conn_args *c, int id, const char *value);

void cli_conn_args_free(cli_conn_args *c);

/** A connected encrypted client and what it borrows. */
typedef struct cli_session {
    cli_keystore keystore;
    mqe2e_policy *policy;
    mqe2e_MQTTClient client;
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
