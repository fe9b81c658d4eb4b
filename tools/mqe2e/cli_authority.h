/**
 * @file cli_authority.h
 * @brief `mqe2e authority ...` (authority_launcher.c, which runs the
 *        `mqe2e-authority` binary) and the operator commands
 *        that talk to a running authority (cmd_operator.c).
 */
#ifndef MQE2E_CLI_AUTHORITY_H
#define MQE2E_CLI_AUTHORITY_H

/** `mqe2e authority init|operator-add|pin|run`: a launcher that executes
 *  `mqe2e-authority` (the authority's own binary, authority/) with the same
 *  arguments; it looks next to the running `mqe2e` first, then in the install
 *  prefix's bin folder, then on PATH. */
int cmd_authority(int argc, char **argv);

/** `mqe2e token create`. */
int cmd_token(int argc, char **argv);

/** `mqe2e revoke --id CLIENT_ID`. */
int cmd_revoke(int argc, char **argv);

/** `mqe2e list clients|groups|tokens`. */
int cmd_list(int argc, char **argv);

/** Operator forms of `mqe2e group create|grant|ungrant|rotate`. */
int cmd_operator_group(int argc, char **argv);

/** Operator form of `mqe2e status`. */
int cmd_operator_status(int argc, char **argv);

/**
 * Should `mqe2e group ...` / `mqe2e status ...` (argv[0] the command) go to
 * the authority? Yes when an authority pin is given (--authority, or
 * MQE2E_AUTHORITY set) and the manual form's --out is not, and for group
 * grant/ungrant always.
 */
int cli_operator_form(int argc, char **argv);

#endif
