/* mqe2e-authority: the enrollment and key-distribution service of mqe2e. */
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include "authority_cli.h"
#include "cli.h"

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0)) {
        printf("mqe2e-authority %s\n", mqe2e_version());
        return CLI_EXIT_OK;
    }
    if (mqe2e_init() != MQE2E_OK) {
        cli_error("cannot initialise libsodium");
        return CLI_EXIT_KEY;
    }
    /* The authority's keys live in this process: no core file, and no
     * ptrace or /proc/PID/mem access by other processes of the same user. */
    struct rlimit no_core = {0, 0};
    (void)setrlimit(RLIMIT_CORE, &no_core);
    (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    cli_secrets_from_env();
    return authority_cli(argc, argv);
}
