/* Group keys for manual provisioning: create or rotate on one keystore,
 * carry the passphrase-sealed export to the others, import there. Signed
 * groups also carry a signer directory (sender id -> Ed25519 key). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cli.h"

#define GROUP_FILE_MAX_BYTES (16U * 1024U * 1024U)

static const char usage[] =
    "usage: mqe2e group create -K KEYSTORE --group NAME --topic FILTER --out FILE [--signed]\n"
    "       mqe2e group rotate -K KEYSTORE --group NAME --out FILE\n"
    "       mqe2e group export -K KEYSTORE --group NAME --out FILE\n"
    "       mqe2e group import -K KEYSTORE FILE [--signed]\n"
    "       mqe2e group list   -K KEYSTORE\n"
    "       mqe2e group signer-add    -K KEYSTORE --group NAME --sender ID --key HEX [--client ID]\n"
    "       mqe2e group signer-remove -K KEYSTORE --group NAME --sender ID\n"
    "       mqe2e group signer-list   -K KEYSTORE --group NAME\n"
    "\n"
    "  create  make a group with a random secret (epoch 1) for the topic filter\n"
    "          and write it, sealed with the export passphrase, to FILE (mode 0600)\n"
    "  rotate  move the group to a new random secret (next epoch) and export it\n"
    "  export  write the group (every epoch held, signer directory) to FILE again\n"
    "  import  add the group (or its new epochs and signers) from FILE to this keystore\n"
    "  list    one line per group: name, topic filter, current epoch, sender id\n"
    "          (and 'signed' for signed groups)\n"
    "  signer-add     trust KEY (Ed25519, 64 hex digits) as the signer of sender ID\n"
    "  signer-remove  forget the signer of sender ID\n"
    "  signer-list    one line per signer: sender id, key, client id\n"
    "\n"
    "  -K, --keystore FILE            keystore\n"
    "      --group NAME               group name\n"
    "      --topic FILTER             MQTT topic filter the group protects (create)\n"
    "      --out FILE                 group file to write\n"
    "      --signed                   signed group: every message carries the sender's\n"
    "                                 Ed25519 signature; this keystore's own key is added\n"
    "                                 to the signer directory (create, import)\n"
    "      --sender ID                sender id in the group (signer-add, signer-remove)\n"
    "      --key HEX                  the member's signing key (signer-add; 'mqe2e status')\n"
    "      --client ID                the member's client id, for logs (signer-add)\n"
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

enum {
    OPT_GROUP = 1,
    OPT_TOPIC,
    OPT_OUT,
    OPT_EXPORT_PASSPHRASE_FILE,
    OPT_SIGNED,
    OPT_SENDER,
    OPT_KEY,
    OPT_CLIENT
};

static const cli_opt opts[] = {
    {'K', "keystore", 1, OPT_KEYSTORE},
    {0, "passphrase-file", 1, OPT_PASSPHRASE_FILE},
    {0, "key-file", 1, OPT_KEY_FILE},
    {0, "group", 1, OPT_GROUP},
    {0, "topic", 1, OPT_TOPIC},
    {0, "out", 1, OPT_OUT},
    {0, "export-passphrase-file", 1, OPT_EXPORT_PASSPHRASE_FILE},
    {0, "signed", 0, OPT_SIGNED},
    {0, "sender", 1, OPT_SENDER},
    {0, "key", 1, OPT_KEY},
    {0, "client", 1, OPT_CLIENT},
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
    int signed_mode;
    const char *sender;
    const char *key;
    const char *client;
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
        int is_signed = mqe2e_keystore_group_is_signed(ks, name);
        if (labelled && is_signed)
            printf("  group %s: topic %s, epoch %lu, sender id %lu, signed (%zu signers)\n", name,
                   filter != NULL ? filter : "?", (unsigned long)epoch, (unsigned long)sender,
                   mqe2e_keystore_signer_count(ks, name));
        else if (labelled)
            printf("  group %s: topic %s, epoch %lu, sender id %lu\n", name,
                   filter != NULL ? filter : "?", (unsigned long)epoch, (unsigned long)sender);
        else
            /* Unsigned lines keep their four columns for scripts written before. */
            printf("%s\t%s\t%lu\t%lu%s\n", name, filter != NULL ? filter : "?",
                   (unsigned long)epoch, (unsigned long)sender, is_signed ? "\tsigned" : "");
    }
}

static int group_exists(const mqe2e_keystore *ks, const char *group)
{
    uint32_t epoch;
    return mqe2e_keystore_group_current_epoch(ks, group, &epoch) == MQE2E_OK;
}

/* Mark a group signed and trust this keystore's own key for its own sender
 * id: a member always speaks for itself. @return exit code. */
static int make_signed(mqe2e_keystore *ks, const char *group)
{
    mqe2e_signer self;
    memset(&self, 0, sizeof self);
    int lrc = mqe2e_keystore_group_set_signed(ks, group, 1);
    if (lrc == MQE2E_OK) lrc = mqe2e_keystore_group_sender_id(ks, group, &self.sender_id);
    if (lrc == MQE2E_OK) lrc = mqe2e_keystore_identity_public(ks, self.sign_public, NULL);
    if (lrc == MQE2E_OK) {
        snprintf(self.client_id, sizeof self.client_id, "%s", mqe2e_keystore_client_id(ks));
        lrc = mqe2e_keystore_signer_add(ks, group, &self);
    }
    if (lrc == MQE2E_ERR_EXISTS) {
        cli_error("group %s: sender id %lu is already in the signer directory with another key",
                  group, (unsigned long)self.sender_id);
        return CLI_EXIT_KEY;
    }
    if (lrc != MQE2E_OK) {
        cli_error("cannot mark group %s signed: %s", group, mqe2e_strerror(lrc));
        return cli_exit_for_lib(lrc);
    }
    return CLI_EXIT_OK;
}

static int signer_cmd(const char *sub, mqe2e_keystore *ks, const group_args *a)
{
    if (!group_exists(ks, a->group)) {
        cli_error("no group %s in %s", a->group, a->k.path);
        return CLI_EXIT_KEY;
    }
    if (strcmp(sub, "signer-list") == 0) {
        size_t n = mqe2e_keystore_signer_count(ks, a->group);
        for (size_t i = 0; i < n; i++) {
            mqe2e_signer s;
            char hex[2 * MQE2E_SIGN_PUBLIC_BYTES + 1];
            if (mqe2e_keystore_signer_get(ks, a->group, i, &s) != MQE2E_OK) continue;
            sodium_bin2hex(hex, sizeof hex, s.sign_public, sizeof s.sign_public);
            printf("%lu\t%s\t%s\n", (unsigned long)s.sender_id, hex,
                   s.client_id[0] != '\0' ? s.client_id : "-");
        }
        return CLI_EXIT_OK;
    }
    long sender = 0;
    if (cli_parse_long(&sender, a->sender, 1, (long)UINT32_MAX, "--sender") != 0)
        return CLI_EXIT_USAGE;
    int lrc;
    if (strcmp(sub, "signer-remove") == 0) {
        lrc = mqe2e_keystore_signer_remove(ks, a->group, (uint32_t)sender);
        if (lrc == MQE2E_ERR_NOT_FOUND) {
            cli_error("group %s has no signer for sender id %ld", a->group, sender);
            return CLI_EXIT_KEY;
        }
    } else {
        mqe2e_signer s;
        size_t bin_len = 0;
        memset(&s, 0, sizeof s);
        s.sender_id = (uint32_t)sender;
        if (strlen(a->key) != 2U * MQE2E_SIGN_PUBLIC_BYTES ||
            sodium_hex2bin(s.sign_public, sizeof s.sign_public, a->key, strlen(a->key), NULL,
                           &bin_len, NULL) != 0 ||
            bin_len != MQE2E_SIGN_PUBLIC_BYTES) {
            cli_error("--key must be 64 hex digits (an Ed25519 public key)");
            return CLI_EXIT_USAGE;
        }
        if (a->client != NULL) {
            if (strlen(a->client) > MQE2E_CLIENT_ID_MAX_BYTES) {
                cli_error("client id longer than %u bytes", MQE2E_CLIENT_ID_MAX_BYTES);
                return CLI_EXIT_USAGE;
            }
            snprintf(s.client_id, sizeof s.client_id, "%s", a->client);
        }
        lrc = mqe2e_keystore_signer_add(ks, a->group, &s);
        if (lrc == MQE2E_ERR_EXISTS) {
            cli_error("sender id %ld of group %s already has another key (signer-remove it "
                      "first)",
                      sender, a->group);
            return CLI_EXIT_KEY;
        }
        if (lrc == MQE2E_ERR_INVALID_ARG) {
            cli_error("refused: not a valid Ed25519 public key, or a bad client id");
            return CLI_EXIT_KEY;
        }
    }
    if (lrc == MQE2E_OK) lrc = mqe2e_keystore_flush(ks);
    if (lrc != MQE2E_OK) {
        cli_error("cannot %s: %s", sub, mqe2e_strerror(lrc));
        return cli_exit_for_lib(lrc);
    }
    printf("group %s: %zu signers\n", a->group, mqe2e_keystore_signer_count(ks, a->group));
    return CLI_EXIT_OK;
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

    int needs_export = strcmp(sub, "list") != 0 && strncmp(sub, "signer-", 7) != 0;
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
    } else if (strncmp(sub, "signer-", 7) == 0) {
        rc = signer_cmd(sub, c.ks, a);
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
        rc = create && a->signed_mode ? make_signed(c.ks, a->group) : CLI_EXIT_OK;
        if (rc == CLI_EXIT_OK) rc = export_to_file(c.ks, a->group, a->out, pass, pass_len);
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
        printf("group %s: topic %s, epoch %lu%s, written to %s\n", a->group,
               mqe2e_keystore_group_filter(c.ks, a->group), (unsigned long)epoch,
               mqe2e_keystore_group_is_signed(c.ks, a->group) ? ", signed" : "", a->out);
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
        /* A signed group (from the file or asked for here) trusts our own key. */
        if (a->signed_mode || mqe2e_keystore_group_is_signed(c.ks, group)) {
            rc = make_signed(c.ks, group);
            if (rc != CLI_EXIT_OK) goto out;
        }
        uint32_t epoch = 0;
        (void)mqe2e_keystore_group_current_epoch(c.ks, group, &epoch);
        const char *filter = mqe2e_keystore_group_filter(c.ks, group);
        if (mqe2e_keystore_group_is_signed(c.ks, group))
            printf("imported group %s: topic %s, epoch %lu, signed (%zu signers)\n", group,
                   filter != NULL ? filter : "?", (unsigned long)epoch,
                   mqe2e_keystore_signer_count(c.ks, group));
        else
            printf("imported group %s: topic %s, epoch %lu\n", group,
                   filter != NULL ? filter : "?", (unsigned long)epoch);
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
    static const char *const subs[] = {"create",     "rotate",        "export",     "import",
                                       "list",       "signer-add",    "signer-remove",
                                       "signer-list"};
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
        case OPT_SIGNED:
            a.signed_mode = 1;
            break;
        case OPT_SENDER:
            a.sender = v;
            break;
        case OPT_KEY:
            a.key = v;
            break;
        case OPT_CLIENT:
            a.client = v;
            break;
        default:
            break;
        }
    }
    int rc = cli_keystore_args_check(&a.k);
    if (rc != CLI_EXIT_OK) return rc;
    int needs_group = strcmp(sub, "import") != 0 && strcmp(sub, "list") != 0;
    int signer = strncmp(sub, "signer-", 7) == 0;
    if (needs_group && (a.group == NULL || a.group[0] == '\0')) {
        cli_error("group %s needs --group NAME", sub);
        return CLI_EXIT_USAGE;
    }
    if (a.signed_mode && strcmp(sub, "create") != 0 && strcmp(sub, "import") != 0) {
        cli_error("--signed is only for group create and group import");
        return CLI_EXIT_USAGE;
    }
    if ((a.sender != NULL || a.key != NULL || a.client != NULL) && !signer) {
        cli_error("--sender, --key and --client are only for the signer commands");
        return CLI_EXIT_USAGE;
    }
    if (signer) {
        int add = strcmp(sub, "signer-add") == 0, list = strcmp(sub, "signer-list") == 0;
        if (!list && a.sender == NULL) {
            cli_error("group %s needs --sender ID", sub);
            return CLI_EXIT_USAGE;
        }
        if (add && a.key == NULL) {
            cli_error("group signer-add needs --key HEX");
            return CLI_EXIT_USAGE;
        }
        if ((!add && (a.key != NULL || a.client != NULL)) || (list && a.sender != NULL)) {
            cli_error("group %s takes no --key, --client%s", sub, list ? " or --sender" : "");
            return CLI_EXIT_USAGE;
        }
        if (a.out != NULL) {
            cli_error("--out is not for group %s", sub);
            return CLI_EXIT_USAGE;
        }
    }
    if (needs_group && !signer && (a.out == NULL || a.out[0] == '\0')) {
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
