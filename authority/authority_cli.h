/**
 * @file authority_cli.h
 * @brief The command line of `mqe2e-authority` (cmd_authority.c): init,
 *        operator-add, pin, run. `mqe2e authority ...` executes the same binary.
 */
#ifndef MQE2E_AUTHORITY_CLI_H
#define MQE2E_AUTHORITY_CLI_H

/**
 * @brief Run one `mqe2e-authority` command.
 * @param argc, argv argv[1] is the command (init, operator-add, pin, run),
 *        the rest its options; argv[0] is not read. Borrowed.
 * @return a process exit code (docs/CLI.md); the reason is already printed.
 */
int authority_cli(int argc, char **argv);

#endif
