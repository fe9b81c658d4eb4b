#include <stdio.h>

#include "cli.h"

static const char usage[] =
    "usage: mqe2e status -K KEYSTORE [--json] [--passphrase-file FILE | --key-file FILE]\n"
    "\n"
    "Show the keystore's client id, sender id, public keys and groups (name,\n"
    "topic filter, current epoch, sender id), the authority it is enrolled with\n"
    "and its credential's expiry, and the counters the last pub or sub on this\n"
    "keystore recorded in KEYSTORE.stats. Never prints a secret.\n"
    "\n"
    "      --json            everything as one JSON object\n";

enum { OPT_STATUS_JSON = 1 };

static const cli_opt opts[] = {
    {'K', "keystore", 1, OPT_KEYSTORE},
    {0, "passphrase-file", 1, OPT_PASSPHRASE_FILE},
    {0, "key-file", 1, OPT_KEY_FILE},
    {0, "json", 0, OPT_STATUS_JSON},
    {0, "help", 0, OPT_HELP},
    {0, NULL, 0, 0},
};

int cmd_status(int argc, char **argv)
{
    cli_keystore_args k = {NULL, NULL, NULL};
    cli_parser p;
    cli_parser_init(&p, argc, argv, "status");
    int id = 0, r, json = 0;
    const char *v;
    while ((r = cli_next(&p, opts, &id, &v)) != CLI_NEXT_END) {
        if (r == CLI_NEXT_ERROR) return CLI_EXIT_USAGE;
        if (r == CLI_NEXT_POSITIONAL) {
            cli_error("unexpected argument '%s' (see 'mqe2e status --help')", v);
            return CLI_EXIT_USAGE;
        }
        if (cli_keystore_arg(&k, id, v)) continue;
        if (id == OPT_STATUS_JSON) json = 1;
        if (id == OPT_HELP) {
            fputs(usage, stdout);
            return CLI_EXIT_OK;
        }
    }
    cli_keystore c;
    int rc = cli_keystore_open(&c, &k);
    if (rc != CLI_EXIT_OK) return rc;
    if (json) {
        cli_status_print_json(c.ks, k.path);
        cli_keystore_close(&c);
        return CLI_EXIT_OK;
    }
    printf("keystore:           %s\n", k.path);
    cli_print_identity(c.ks);
    printf("groups:             %zu\n", mqe2e_keystore_group_count(c.ks));
    cli_print_groups(c.ks, 1);
    cli_status_print_enrollment(c.ks);
    cli_stats_print(k.path);
    cli_keystore_close(&c);
    return CLI_EXIT_OK;
}
