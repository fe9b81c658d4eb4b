/* mqe2e-authority: the enrollment and key-distribution service of mqe2e. */
#include <stdio.h>
#include <string.h>

#include "authority_cli.h"
#include "cli.h"

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0)) {
        printf("mqe2e-authority %s\n", mqe2e_version());
        return CLI_EXIT_OK;
    }
    int rc = cli_process_start();
    if (rc != CLI_EXIT_OK) return rc;
    return authority_cli(argc, argv);
}
