/* `mqe2e authority ...`: run the authority's own binary, `mqe2e-authority`
 * (authority/), with the same arguments. The device CLI does not link the
 * authority; this launcher only finds and executes it. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cli_authority.h"

#ifndef MQE2E_INSTALL_BINDIR
#define MQE2E_INSTALL_BINDIR "/usr/local/bin"
#endif

#define AUTHORITY_BINARY "mqe2e-authority"

/* The folder of the running executable (with its trailing '/'), or "" . */
static void self_dir(char *out, size_t cap)
{
    out[0] = '\0';
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash == NULL) return;
    slash[1] = '\0';
    if (strlen(self) < cap) memcpy(out, self, strlen(self) + 1);
}

int cmd_authority(int argc, char **argv)
{
    /* argv[0] is "authority": the binary gets "mqe2e-authority" in its place. */
    char **args = calloc((size_t)argc + 1, sizeof *args);
    if (args == NULL) {
        cli_error("out of memory");
        return CLI_EXIT_KEY;
    }
    for (int i = 1; i < argc; i++)
        args[i] = argv[i];
    args[argc] = NULL;

    char dir[PATH_MAX], path[PATH_MAX + sizeof AUTHORITY_BINARY];
    self_dir(dir, sizeof dir);
    const char *candidates[2] = {dir, MQE2E_INSTALL_BINDIR "/"};
    for (size_t i = 0; i < 2; i++) {
        if (candidates[i][0] == '\0') continue;
        snprintf(path, sizeof path, "%s%s", candidates[i], AUTHORITY_BINARY);
        if (access(path, X_OK) != 0) continue;
        args[0] = path;
        execv(path, args);
    }
    args[0] = (char *)AUTHORITY_BINARY;
    execvp(AUTHORITY_BINARY, args);
    cli_error("cannot run %s (looked next to mqe2e, in %s and on PATH): %s", AUTHORITY_BINARY,
              MQE2E_INSTALL_BINDIR, strerror(errno));
    free(args);
    return CLI_EXIT_USAGE;
}
