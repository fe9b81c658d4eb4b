/* Group keys for manual provisioning: create or rotate on one keystore,
 * carry the passphrase-sealed export to the others, import there. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cli.h"

#define GROUP_FILE_MAX_BYTES (16U * 1024U * 1024U)

static const char usage[] =
    "usage: mqe2e group create -k KEYSTORE --group NAME --topic FILTER --out FILE\n"
    "       mqe2e group rotate -k KEYSTORE --group NAME --out FILE\n"
    "       mqe2e group export -k KEYSTORE --group NAME --out FILE\n"
    "       mqe2e group import -k KEYSTORE FILE\n"
    "       mqe2e group list   -k KEYSTORE\n"
    "\n"
    "  create  make a group with a random secret (epoch 1) for the topic filter\n"
    "          and write it, sealed with the export passphrase, to FILE (mode 0600)\n"
    "  rotate  move the group to a new random secret (next epoch) and export it\n"
    "  export  write the group (every epoch held) to FILE again\n"
    "  import  add the group (or its new epochs) from FILE to this keystore\n"
    "  list    one line per group: name, topic filter, current epoch, sender id\n"
    "\n"
    "  -k, --keystore FILE            keystore\n"
    "      --group NAME               group name\n"
    "      --topic FILTER             MQTT topic filter the group protects (create)\n"
    "      --out FILE                 group file to write\n"
    "      --export-passphrase-file F read the group file passphrase from F\n"
    "      --passphrase-file F        keystore passphrase from F's first line\n"
    "      --key-file F               keystore raw key from F\n"
    "      --help                     this text\n"
    "\n"
    "The group file passphrase comes from MQE2E_EXPORT_PASSPHRASE unless\n"
    "--export-passphrase-file is given; the keystore passphrase from\n"
    "MQE2E_PASSPHRASE. Group files hold the group secret sealed with that\n"
    "passphrase (Argon2id + XChaCha20-Poly1305): treat them as secrets and\n"
    "delete them after import.\n";

enum { OPT_GROUP = 1, OPT_TOPIC, OPT_OUT, OPT_EXPORT_PASSPHRASE_FILE };

static const cli_opt opts[] = {
    {'k', "keystore", 1, OPT_KEYSTORE},
    {0, "passphrase-file", 1, OPT_PASSPHRASE_FILE},
    {0, "key-file", 1, OPT_KEY_FILE},
    {0, "group", 1, OPT_GROUP},
    {0, "topic", 1, OPT_TOPIC},
    {0, "out", 1, OPT_OUT},
    {0, "export-passphrase-file", 1, OPT_EXPORT_PASSPHRASE_FILE},
    {0, "help", 0, OPT_HELP},
    {0, NULL, 0, 0},
};

typedef struct group_args {
    cli_keystore_args k;
    const char *group;
    const char *topic;
    const char *out;
    const char *export_file;
    const char *in;
} group_args;

void cli_print_groups(const mqe2e_keystore *ks, int labelled)
{
    size_t n = mqe2e_keystore_group_count(ks);
    for (size_t i = 0; i < n; i++) {
        const char *name = mqe2e_keystore_group_name(ks, i);
        if (name == NULL) continue;
        const char *filter = mqe2e_keystore_group_filter(ks, name);
        uint32_t epoch = 0, sender = 0;
        (void)mqe2e_keystore_group_current_epoch(ks, name, &epoch);
        (void)mqe2e_keystore_group_sender_id(ks, name, &sender);
        if (labelled)
            printf("  group %s: topic %s, epoch %lu, sender id %lu\n", name,
                   filter != NULL ? filter : "?", (unsigned long)epoch, (unsigned long)sender);
        else
            printf("%s\t%s\t%lu\t%lu\n", name, filter != NULL ? filter : "?", (unsigned long)epoch,
                   (unsigned long)sender);
    }
}

static int group_exists(const mqe2e_keystore *ks, const char *group)
{
    uint32_t epoch;
    return mqe2e_keystore_group_current_epoch(ks, group, &epoch) == MQE2E_OK;
}

/* Seal the group with the export passphrase and write FILE. @return exit code. */
static int export_to_file(const mqe2e_keystore *ks, const char *group, const char *path,
                          const char *pass, size_t pass_len)
{
    uint8_t *sealed = NULL;
    size_t sealed_len = 0;
    int lrc = mqe2e_keystore_group_export(ks, group, pass, pass_len, &sealed, &sealed_len);
    if (lrc != MQE2E_OK) {
        cli_error("cannot export group %s: %s", group, mqe2e_strerror(lrc));
        return CLI_EXIT_KEY;
    }
    int rc = cli_write_private_file(path, sealed, sealed_len) == 0 ? CLI_EXIT_OK : CLI_EXIT_KEY;
    free(sealed);
    return rc;
}

static int run(const char *sub, const group_args *a)
{
    char *pass = NULL;
    size_t pass_len = 0;
    cli_keystore c = {NULL, -1};
    int rc;
    char command[32];
    snprintf(command, sizeof command, "group %s", sub);

    int needs_export = strcmp(sub, "list") != 0;
    /* Ask for every secret before touching the keystore, so a missing
     * passphrase never leaves a half-done change behind. */
    if (needs_export) {
        rc = cli_export_passphrase(&pass, &pass_len, a->export_file, command);
        if (rc != CLI_EXIT_OK) return rc;
    }
    rc = cli_keystore_open(&c, &a->k);
    if (rc != CLI_EXIT_OK) goto out;

    if (strcmp(sub, "list") == 0) {
        cli_print_groups(c.ks, 0);
    } else if (strcmp(sub, "create") == 0 || strcmp(sub, "rotate") == 0) {
        int create = strcmp(sub, "create") == 0;
        if (create && group_exists(c.ks, a->group)) {
            cli_error("group %s already exists in %s (use 'mqe2e group rotate')", a->group,
                      a->k.path);
            rc = CLI_EXIT_KEY;
            goto out;
        }
        if (!create && !group_exists(c.ks, a->group)) {
            cli_error("no group %s in %s", a->group, a->k.path);
            rc = CLI_EXIT_KEY;
            goto out;
        }
        uint32_t epoch = 0;
        int lrc = mqe2e_keystore_group_generate(c.ks, a->group, create ? a->topic : NULL, cli_now(),
                                                &epoch);
        if (lrc == MQE2E_OK) lrc = mqe2e_keystore_flush(c.ks);
        if (lrc != MQE2E_OK) {
            cli_error("cannot %s group %s: %s", sub, a->group, mqe2e_strerror(lrc));
            rc = cli_exit_for_lib(lrc);
            goto out;
        }
        rc = export_to_file(c.ks, a->group, a->out, pass, pass_len);
        if (rc != CLI_EXIT_OK) {
            if (create) {
                /* Without its file nobody else can join; undo so create can be rerun. */
                (void)mqe2e_keystore_group_remove(c.ks, a->group);
            } else {
                cli_error("group %s is rotated to epoch %lu here; write its file again with "
                          "'mqe2e group export'",
                          a->group, (unsigned long)epoch);
            }
            goto out;
        }
        printf("group %s: topic %s, epoch %lu, written to %s\n", a->group,
               mqe2e_keystore_group_filter(c.ks, a->group), (unsigned long)epoch, a->out);
    } else if (strcmp(sub, "export") == 0) {
        if (!group_exists(c.ks, a->group)) {
            cli_error("no group %s in %s", a->group, a->k.path);
            rc = CLI_EXIT_KEY;
            goto out;
        }
        rc = export_to_file(c.ks, a->group, a->out, pass, pass_len);
        if (rc == CLI_EXIT_OK) printf("group %s written to %s\n", a->group, a->out);
    } else { /* import */
        uint8_t *sealed = NULL;
        size_t sealed_len = 0;
        if (cli_read_file(&sealed, &sealed_len, a->in, GROUP_FILE_MAX_BYTES) != 0) {
            rc = CLI_EXIT_KEY;
            goto out;
        }
        char group[MQE2E_GROUP_ID_MAX_BYTES + 1];
        int lrc = mqe2e_keystore_group_import(c.ks, sealed, sealed_len, pass, pass_len, cli_now(),
                                              group, sizeof group);
        free(sealed);
        if (lrc == MQE2E_OK) lrc = mqe2e_keystore_flush(c.ks);
        if (lrc != MQE2E_OK) {
            if (lrc == MQE2E_ERR_AUTH)
                cli_error("cannot import %s: wrong export passphrase or the file was modified",
                          a->in);
            else if (lrc == MQE2E_ERR_EXISTS)
                cli_error("cannot import %s: it conflicts with a group epoch already held", a->in);
            else
                cli_error("cannot import %s: %s", a->in, mqe2e_strerror(lrc));
            rc = cli_exit_for_lib(lrc);
            goto out;
        }
        uint32_t epoch = 0;
        (void)mqe2e_keystore_group_current_epoch(c.ks, group, &epoch);
        const char *filter = mqe2e_keystore_group_filter(c.ks, group);
        printf("imported group %s: topic %s, epoch %lu\n", group, filter != NULL ? filter : "?",
               (unsigned long)epoch);
    }
out:
    cli_keystore_close(&c);
    cli_secret_free(pass);
    return rc;
}

int cmd_group(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return CLI_EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "help") == 0) {
        fputs(usage, stdout);
        return CLI_EXIT_OK;
    }
    static const char *const subs[] = {"create", "rotate", "export", "import", "list"};
    int known = 0;
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        known |= strcmp(sub, subs[i]) == 0;
    if (!known) {
        cli_error("unknown group command '%s' (see 'mqe2e group --help')", sub);
        return CLI_EXIT_USAGE;
    }

    group_args a;
    memset(&a, 0, sizeof a);
    cli_parser p;
    cli_parser_init(&p, argc - 1, argv + 1, "group");
    int id = 0, r;
    const char *v;
    while ((r = cli_next(&p, opts, &id, &v)) != CLI_NEXT_END) {
        if (r == CLI_NEXT_ERROR) return CLI_EXIT_USAGE;
        if (r == CLI_NEXT_POSITIONAL) {
            if (strcmp(sub, "import") != 0 || a.in != NULL) {
                cli_error("unexpected argument '%s' (see 'mqe2e group --help')", v);
                return CLI_EXIT_USAGE;
            }
            a.in = v;
            continue;
        }
        if (cli_keystore_arg(&a.k, id, v)) continue;
        switch (id) {
        case OPT_HELP:
            fputs(usage, stdout);
            return CLI_EXIT_OK;
        case OPT_GROUP:
            a.group = v;
            break;
        case OPT_TOPIC:
            a.topic = v;
            break;
        case OPT_OUT:
            a.out = v;
            break;
        case OPT_EXPORT_PASSPHRASE_FILE:
            a.export_file = v;
            break;
        default:
            break;
        }
    }
    int rc = cli_keystore_args_check(&a.k);
    if (rc != CLI_EXIT_OK) return rc;
    int needs_group = strcmp(sub, "import") != 0 && strcmp(sub, "list") != 0;
    if (needs_group && (a.group == NULL || a.group[0] == '\0')) {
        cli_error("group %s needs --group NAME", sub);
        return CLI_EXIT_USAGE;
    }
    if (needs_group && (a.out == NULL || a.out[0] == '\0')) {
        cli_error("group %s needs --out FILE", sub);
        return CLI_EXIT_USAGE;
    }
    if (needs_group && strlen(a.group) > MQE2E_GROUP_ID_MAX_BYTES) {
        cli_error("group name longer than %u bytes", MQE2E_GROUP_ID_MAX_BYTES);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(sub, "create") == 0) {
        if (a.topic == NULL) {
            cli_error("group create needs --topic FILTER");
            return CLI_EXIT_USAGE;
        }
        if (!mqe2e_topic_filter_valid(a.topic)) {
            cli_error("'%s' is not a valid MQTT topic filter", a.topic);
            return CLI_EXIT_USAGE;
        }
    } else if (a.topic != NULL) {
        cli_error("--topic is only for group create");
        return CLI_EXIT_USAGE;
    }
    if (strcmp(sub, "import") == 0 && a.in == NULL) {
        cli_error("group import needs the group FILE");
        return CLI_EXIT_USAGE;
    }
    return run(sub, &a);
}
