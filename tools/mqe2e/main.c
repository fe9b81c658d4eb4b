/* mqe2e: end-to-end encrypted MQTT from the command line. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cli_authority.h"

static const char usage[] =
    "usage: mqe2e COMMAND [OPTIONS]\n"
    "\n"
    "End-to-end encrypted MQTT in the style of mosquitto_pub/mosquitto_sub.\n"
    "\n"
    "commands:\n"
    "  keygen   create a keystore with a new identity\n"
    "  group    create, rotate, export, import or list group keys\n"
    "  pub      publish an encrypted message\n"
    "  sub      subscribe and print decrypted messages\n"
    "  status   show a keystore's identity and groups (never secrets)\n"
    "  enroll   enroll with the authority using a ticket\n"
    "  authority  create (init), run or administer the authority (operator-add, pin)\n"
    "  token    ask the authority for enrollment tickets (operator)\n"
    "  revoke   revoke a client (operator)\n"
    "  list     list the authority's clients, groups or tokens (operator)\n"
    "  (group create/grant/ungrant/rotate talk to the authority when --authority PIN\n"
    "   or MQE2E_AUTHORITY is given; status only with --remote or --authority PIN)\n"
    "\n"
    "'mqe2e COMMAND --help' describes each command.\n"
    "Keystore key: MQE2E_PASSPHRASE, --passphrase-file FILE or --key-file FILE.\n"
    "Broker options (pub, sub, enroll, authority run, operator commands): -h -p -u\n"
    "--password-file --cafile --capath --cert --key --insecure -k ..., defaults from\n"
    "~/.config/mqe2e. The keystore is -K (-k is the keep-alive). man mqe2e.\n"
    "Exit codes: 0 ok, 1 usage, 2 keystore/key/policy, 3 connection/broker, 4 timeout,\n"
    "5 broker login refused, 6 TLS handshake failed.\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("mqe2e %s\n", mqe2e_version());
        return CLI_EXIT_OK;
    }
    /* The authority is its own binary; it reads the secrets of the
     * environment itself, so the launcher runs before they are taken. */
    if (strcmp(cmd, "authority") == 0) return cmd_authority(argc - 1, argv + 1);
    int src = cli_process_start();
    if (src != CLI_EXIT_OK) return src;
    /* Keep partial lines from a crashed run out of pipes: stdout is flushed
     * explicitly after each message by `sub`. */
    int sub_argc = argc - 1;
    char **sub_argv = argv + 1;
    if (strcmp(cmd, "keygen") == 0) return cmd_keygen(sub_argc, sub_argv);
    if (strcmp(cmd, "group") == 0 && cli_operator_form(sub_argc, sub_argv))
        return cmd_operator_group(sub_argc, sub_argv);
    if (strcmp(cmd, "status") == 0 && cli_operator_form(sub_argc, sub_argv))
        return cmd_operator_status(sub_argc, sub_argv);
    if (strcmp(cmd, "token") == 0) return cmd_token(sub_argc, sub_argv);
    if (strcmp(cmd, "revoke") == 0) return cmd_revoke(sub_argc, sub_argv);
    if (strcmp(cmd, "list") == 0) return cmd_list(sub_argc, sub_argv);
    if (strcmp(cmd, "group") == 0) return cmd_group(sub_argc, sub_argv);
    if (strcmp(cmd, "pub") == 0) return cmd_pub(sub_argc, sub_argv);
    if (strcmp(cmd, "sub") == 0) return cmd_sub(sub_argc, sub_argv);
    if (strcmp(cmd, "status") == 0) return cmd_status(sub_argc, sub_argv);
    if (strcmp(cmd, "enroll") == 0) return cmd_enroll(sub_argc, sub_argv);
    cli_error("unknown command '%s' (see 'mqe2e --help')", cmd);
    return CLI_EXIT_USAGE;
}
