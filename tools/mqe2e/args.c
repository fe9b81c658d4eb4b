/* Small option parser: "-x VALUE", "-xVALUE", "--long VALUE", "--long=VALUE",
 * positionals anywhere, "--" ends options. getopt_long is a GNU extension and
 * the project builds as strict C11 + POSIX, so this stays self-contained. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void cli_parser_init(cli_parser *p, int argc, char **argv, const char *command)
{
    p->argc = argc;
    p->argv = argv;
    p->index = 1;
    p->only_positional = 0;
    p->command = command;
}

static const cli_opt *find_long(const cli_opt *opts, const char *name, size_t name_len)
{
    for (; opts->id != 0; opts++) {
        if (opts->long_name != NULL && strlen(opts->long_name) == name_len &&
            strncmp(opts->long_name, name, name_len) == 0)
            return opts;
    }
    return NULL;
}

static const cli_opt *find_short(const cli_opt *opts, char c)
{
    for (; opts->id != 0; opts++) {
        if (opts->short_name == c) return opts;
    }
    return NULL;
}

static int take_value(cli_parser *p, const char *shown, const char **value)
{
    if (p->index >= p->argc) {
        cli_error("option %s needs a value (see 'mqe2e %s --help')", shown, p->command);
        return CLI_NEXT_ERROR;
    }
    *value = p->argv[p->index++];
    return CLI_NEXT_OPTION;
}

int cli_next(cli_parser *p, const cli_opt *opts, int *id, const char **value)
{
    *value = NULL;
    while (p->index < p->argc) {
        const char *arg = p->argv[p->index++];
        if (p->only_positional || arg[0] != '-' || arg[1] == '\0') {
            *value = arg;
            return CLI_NEXT_POSITIONAL;
        }
        if (strcmp(arg, "--") == 0) {
            p->only_positional = 1;
            continue;
        }
        if (arg[1] == '-') {
            const char *name = arg + 2;
            const char *eq = strchr(name, '=');
            size_t name_len = eq != NULL ? (size_t)(eq - name) : strlen(name);
            const cli_opt *o = find_long(opts, name, name_len);
            if (o == NULL) {
                cli_error("unknown option '%.*s' (see 'mqe2e %s --help')", (int)(name_len + 2), arg,
                          p->command);
                return CLI_NEXT_ERROR;
            }
            *id = o->id;
            if (!o->has_arg) {
                if (eq != NULL) {
                    cli_error("option --%s takes no value", o->long_name);
                    return CLI_NEXT_ERROR;
                }
                return CLI_NEXT_OPTION;
            }
            if (eq != NULL) {
                *value = eq + 1;
                return CLI_NEXT_OPTION;
            }
            return take_value(p, arg, value);
        }
        const cli_opt *o = find_short(opts, arg[1]);
        if (o == NULL && arg[1] == 'k') {
            cli_error("unknown option '-k': the keystore is -K or --keystore (-k is the "
                      "keep-alive of the commands that connect, as in mosquitto_pub)");
            return CLI_NEXT_ERROR;
        }
        if (o == NULL) {
            cli_error("unknown option '-%c' (see 'mqe2e %s --help')", arg[1], p->command);
            return CLI_NEXT_ERROR;
        }
        *id = o->id;
        if (!o->has_arg) {
            if (arg[2] != '\0') {
                cli_error("option -%c takes no value", arg[1]);
                return CLI_NEXT_ERROR;
            }
            return CLI_NEXT_OPTION;
        }
        if (arg[2] != '\0') {
            *value = arg + 2;
            return CLI_NEXT_OPTION;
        }
        return take_value(p, arg, value);
    }
    return CLI_NEXT_END;
}

int cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) return 0;
        if (strcmp(argv[i], "--help") == 0) return 1;
    }
    return 0;
}

int cli_parse_long(long *out, const char *text, long min, long max, const char *what)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max) {
        cli_error("%s must be a whole number from %ld to %ld, not '%s'", what, min, max, text);
        return -1;
    }
    *out = v;
    return 0;
}
