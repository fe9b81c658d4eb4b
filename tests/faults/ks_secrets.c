/*
 * Test-only: print every secret an encrypted keystore file holds, one hex
 * value a line, so a test can search a wire capture for them:
 *
 *   ks_secrets KEYSTORE (--key-file F | --passphrase-env VAR)
 *   ks_secrets --ticket-env VAR     (an enrollment ticket in $VAR)
 *
 *   dh_secret HEX          X25519 static secret
 *   sign_secret HEX        Ed25519 secret key (64 bytes: seed || public)
 *   sign_seed HEX          its first 32 bytes
 *   group NAME EPOCH HEX   every group secret held, every epoch
 *   sender_key NAME EPOCH SENDER KEYHEX IVHEX
 *                          the sending key this keystore derives (its own
 *                          sender id) for each epoch
 *   public dh HEX / public sign HEX / client_id ID   (for positive checks)
 *   token HEX / token_id HEX        (--ticket-env: the one-time secret, its public id)
 *
 * Secrets on stdout: for tests on throw-away keystores only.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqe2e/mqe2e.h"
#include "proto/keystore.pb-c.h"

static void hex(const char *label, const uint8_t *b, size_t n)
{
    printf("%s ", label);
    for (size_t i = 0; i < n; i++)
        printf("%02x", b[i]);
    printf("\n");
}

static void hex_inline(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        printf("%02x", b[i]);
}

int main(int argc, char **argv)
{
    mqe2e_storage st;
    uint8_t key[32];
    int rc;

    if (argc == 3 && strcmp(argv[1], "--ticket-env") == 0 && getenv(argv[2]) != NULL &&
        mqe2e_init() == MQE2E_OK) {
        mqe2e_ticket t;
        if (mqe2e_ticket_decode(&t, getenv(argv[2])) != MQE2E_OK) return 1;
        hex("token", t.token, sizeof t.token);
        hex("token_id", t.token_id, sizeof t.token_id);
        mqe2e_ticket_wipe(&t);
        return 0;
    }
    if (argc != 4 || mqe2e_init() != MQE2E_OK) {
        fprintf(stderr, "usage: ks_secrets KEYSTORE (--key-file F | --passphrase-env VAR)\n");
        return 2;
    }
    if (strcmp(argv[2], "--key-file") == 0) {
        if (mqe2e_storage_read_key_file(key, argv[3]) != MQE2E_OK) return 2;
        rc = mqe2e_storage_file_key(&st, argv[1], key);
        sodium_memzero(key, sizeof key);
    } else if (strcmp(argv[2], "--passphrase-env") == 0 && getenv(argv[3]) != NULL) {
        const char *p = getenv(argv[3]);
        rc = mqe2e_storage_file_passphrase(&st, argv[1], p, strlen(p));
    } else {
        return 2;
    }
    if (rc != MQE2E_OK) return 2;
    uint8_t *blob = NULL;
    size_t len = 0;
    rc = st.load(st.ctx, &blob, &len);
    if (st.destroy != NULL) st.destroy(st.ctx);
    if (rc != MQE2E_OK) {
        fprintf(stderr, "ks_secrets: cannot open %s: %s\n", argv[1], mqe2e_strerror(rc));
        return 1;
    }
    Mqe2e__V1__KeystoreState *s = mqe2e__v1__keystore_state__unpack(NULL, len, blob);
    sodium_memzero(blob, len);
    free(blob);
    if (s == NULL) return 1;
    printf("client_id %s\n", s->client_id);
    hex("dh_secret", s->dh_secret.data, s->dh_secret.len);
    hex("sign_secret", s->sign_secret.data, s->sign_secret.len);
    if (s->sign_secret.len >= 32) hex("sign_seed", s->sign_secret.data, 32);
    hex("public dh", s->dh_public.data, s->dh_public.len);
    hex("public sign", s->sign_public.data, s->sign_public.len);
    for (size_t g = 0; g < s->n_groups; g++) {
        const Mqe2e__V1__KeystoreGroup *kg = s->groups[g];
        for (size_t e = 0; e < kg->n_epochs; e++) {
            const Mqe2e__V1__KeystoreEpoch *ke = kg->epochs[e];
            if (ke->secret.len != 32) continue;
            printf("group %s %u ", kg->name, ke->epoch);
            hex_inline(ke->secret.data, 32);
            printf("\n");
            mqe2e_sender_key sk;
            if (mqe2e_sender_key_derive(&sk, ke->secret.data, kg->name, ke->epoch, kg->sender) ==
                MQE2E_OK) {
                printf("sender_key %s %u %u ", kg->name, ke->epoch, kg->sender);
                hex_inline(sk.key, sizeof sk.key);
                printf(" ");
                hex_inline(sk.iv, sizeof sk.iv);
                printf("\n");
                mqe2e_sender_key_wipe(&sk);
            }
        }
    }
    /* Wipe the decoded state before it is released. */
    sodium_memzero(s->dh_secret.data, s->dh_secret.len);
    sodium_memzero(s->sign_secret.data, s->sign_secret.len);
    for (size_t g = 0; g < s->n_groups; g++)
        for (size_t e = 0; e < s->groups[g]->n_epochs; e++)
            sodium_memzero(s->groups[g]->epochs[e]->secret.data,
                           s->groups[g]->epochs[e]->secret.len);
    mqe2e__v1__keystore_state__free_unpacked(s, NULL);
    return 0;
}
