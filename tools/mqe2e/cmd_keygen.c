#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "cli.h"

static const char usage[] =
    "usage: mqe2e keygen -K KEYSTORE --id CLIENT_ID [--sender-id N]\n"
    "                    [--passphrase-file FILE | --key-file FILE] [--kdf LIMITS]\n"
    "\n"
    "Create a keystore holding a new identity (Ed25519 signing key, X25519 key)\n"
    "and print its client id, sender id and public keys. Never overwrites a file.\n"
    "\n"
    "  -K, --keystore FILE      keystore to create\n"
    "      --id CLIENT_ID       client id (1-255 printable ASCII characters)\n"
    "      --sender-id N        sender id in groups (1-16777215; default: derived\n"
    "                           from the client id)\n"
    "      --passphrase-file F  read the keystore passphrase from F's first line\n"
    "      --key-file F         use a raw 32-byte key (or 64 hex digits) from F\n"
    CLI_KDF_HELP
    "      --help               this text\n"
    "\n"
    "Without a file option the passphrase comes from MQE2E_PASSPHRASE.\n";

enum { OPT_CLIENT_ID = 1, OPT_SENDER_ID, OPT_KDF };

static const cli_opt opts[] = {
    {'K', "keystore", 1, OPT_KEYSTORE},
    {0, "passphrase-file", 1, OPT_PASSPHRASE_FILE},
    {0, "key-file", 1, OPT_KEY_FILE},
    {0, "id", 1, OPT_CLIENT_ID},
    {0, "sender-id", 1, OPT_SENDER_ID},
    {0, "kdf", 1, OPT_KDF},
    {0, "help", 0, OPT_HELP},
    {0, NULL, 0, 0},
};

void cli_print_identity(const mqe2e_keystore *ks)
{
    uint8_t sign_pk[MQE2E_SIGN_PUBLIC_BYTES];
    uint8_t dh_pk[MQE2E_DH_PUBLIC_BYTES];
    printf("client id:          %s\n", mqe2e_keystore_client_id(ks));
    printf("sender id:          %lu\n", (unsigned long)mqe2e_keystore_sender_id(ks));
    if (mqe2e_keystore_identity_public(ks, sign_pk, dh_pk) == MQE2E_OK) {
        cli_print_hex("signing public key: ", sign_pk, sizeof sign_pk);
        cli_print_hex("x25519 public key:  ", dh_pk, sizeof dh_pk);
    }
}

int cmd_keygen(int argc, char **argv)
{
    cli_keystore_args k = {NULL, NULL, NULL};
    const char *client_id = NULL;
    long sender_id = 0;
    cli_kdf kdf = {0, 0};
    cli_parser p;
    cli_parser_init(&p, argc, argv, "keygen");
    int id = 0, r;
    const char *v;
    while ((r = cli_next(&p, opts, &id, &v)) != CLI_NEXT_END) {
        if (r == CLI_NEXT_ERROR) return CLI_EXIT_USAGE;
        if (r == CLI_NEXT_POSITIONAL) {
            cli_error("unexpected argument '%s' (see 'mqe2e keygen --help')", v);
            return CLI_EXIT_USAGE;
        }
        if (cli_keystore_arg(&k, id, v)) continue;
        switch (id) {
        case OPT_HELP:
            fputs(usage, stdout);
            return CLI_EXIT_OK;
        case OPT_CLIENT_ID:
            client_id = v;
            break;
        case OPT_SENDER_ID:
            if (cli_parse_long(&sender_id, v, 1, 0xFFFFFFL, "--sender-id") != 0)
                return CLI_EXIT_USAGE;
            break;
        case OPT_KDF:
            if (cli_parse_kdf(&kdf, v) != 0) return CLI_EXIT_USAGE;
            break;
        default:
            break;
        }
    }
    if (client_id == NULL || client_id[0] == '\0') {
        cli_error("no client id given (--id CLIENT_ID)");
        return CLI_EXIT_USAGE;
    }
    cli_keystore c;
    int rc = cli_keystore_create_kdf(&c, &k, client_id, (uint32_t)sender_id, &kdf);
    if (rc != CLI_EXIT_OK) return rc;
    int frc = mqe2e_keystore_flush(c.ks);
    if (frc != MQE2E_OK) {
        cli_error("cannot write keystore %s: %s", k.path, mqe2e_strerror(frc));
        cli_keystore_close(&c);
        return CLI_EXIT_KEY;
    }
    printf("keystore:           %s\n", k.path);
    cli_print_identity(c.ks);
    cli_keystore_close(&c);
    return CLI_EXIT_OK;
}
