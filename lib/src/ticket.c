#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "internal_cred.h"
#include "mqe2e/credential.h"
#include "mqe2e/error.h"
#include "proto/credential.pb-c.h"

#define TICKET_FORMAT 1u
#define PREFIX_LEN (sizeof MQE2E_TICKET_PREFIX - 1)
/* Largest protobuf a text of MQE2E_TICKET_TEXT_MAX characters can carry. */
#define TICKET_BIN_MAX ((MQE2E_TICKET_TEXT_MAX / 4u) * 3u + 3u)

static bool terminated(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

void mqe2e_ticket_wipe(mqe2e_ticket *t)
{
    if (t != NULL) sodium_memzero(t, sizeof *t);
}

void mqe2e_ticket_text_free(char *text)
{
    if (text == NULL) return;
    sodium_memzero(text, strlen(text));
    free(text);
}

int mqe2e_ticket_encode(char **out, const mqe2e_ticket *t)
{
    Mqe2e__V1__Ticket m;
    uint8_t *bin = NULL;
    char *text = NULL;
    size_t bin_len = 0;
    size_t text_cap = 0;
    int rc;

    mqe2e__v1__ticket__init(&m);
    if (out == NULL || t == NULL) return MQE2E_ERR_INVALID_ARG;
    if ((rc = mqe2e_init()) != MQE2E_OK) return rc;
    if (!terminated(t->authority_id, sizeof t->authority_id) ||
        !terminated(t->client_id, sizeof t->client_id) ||
        !terminated(t->control_prefix, sizeof t->control_prefix) ||
        !mqe2e_client_id_valid(t->authority_id) || !mqe2e_client_id_valid(t->client_id) ||
        !mqe2e_control_prefix_valid(t->control_prefix) || t->expires_at == 0 ||
        !mqe2e__cred_ed25519_public_ok(t->authority_sign_public) ||
        !mqe2e__cred_x25519_public_ok(t->authority_dh_public))
        return MQE2E_ERR_INVALID_ARG;

    /* protobuf-c only reads through these pointers while packing. */
    m.format = TICKET_FORMAT;
    m.authority_sign_public.data = (uint8_t *)(uintptr_t)t->authority_sign_public;
    m.authority_sign_public.len = sizeof t->authority_sign_public;
    m.authority_dh_public.data = (uint8_t *)(uintptr_t)t->authority_dh_public;
    m.authority_dh_public.len = sizeof t->authority_dh_public;
    m.authority_id = (char *)(uintptr_t)t->authority_id;
    m.control_prefix = (char *)(uintptr_t)t->control_prefix;
    m.token_id.data = (uint8_t *)(uintptr_t)t->token_id;
    m.token_id.len = sizeof t->token_id;
    m.token.data = (uint8_t *)(uintptr_t)t->token;
    m.token.len = sizeof t->token;
    m.client_id = (char *)(uintptr_t)t->client_id;
    m.expires_at = t->expires_at;

    bin_len = mqe2e__v1__ticket__get_packed_size(&m);
    if ((bin = malloc(bin_len)) == NULL) {
        rc = MQE2E_ERR_NOMEM;
        goto out;
    }
    mqe2e__v1__ticket__pack(&m, bin);
    text_cap =
        PREFIX_LEN + sodium_base64_encoded_len(bin_len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    if ((text = malloc(text_cap)) == NULL) {
        rc = MQE2E_ERR_NOMEM;
        goto out;
    }
    memcpy(text, MQE2E_TICKET_PREFIX, PREFIX_LEN);
    sodium_bin2base64(text + PREFIX_LEN, text_cap - PREFIX_LEN, bin, bin_len,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    *out = text;
    text = NULL;
    rc = MQE2E_OK;
out:
    if (bin != NULL) {
        sodium_memzero(bin, bin_len);
        free(bin);
    }
    if (text != NULL) {
        sodium_memzero(text, text_cap);
        free(text);
    }
    return rc;
}

static bool b64url_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

static int copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap);
    if (n >= cap) return MQE2E_ERR_DECODE;
    memcpy(dst, src, n + 1);
    return MQE2E_OK;
}

int mqe2e_ticket_decode(mqe2e_ticket *out, const char *text)
{
    uint8_t bin[TICKET_BIN_MAX];
    size_t bin_len = 0;
    Mqe2e__V1__Ticket *m = NULL;
    int rc;

    if (out == NULL) return MQE2E_ERR_INVALID_ARG;
    sodium_memzero(out, sizeof *out);
    if (text == NULL) return MQE2E_ERR_INVALID_ARG;
    if ((rc = mqe2e_init()) != MQE2E_OK) return rc;
    size_t n = strnlen(text, MQE2E_TICKET_TEXT_MAX + 1);
    if (n > MQE2E_TICKET_TEXT_MAX) return MQE2E_ERR_TOO_LARGE;
    if (n <= PREFIX_LEN || memcmp(text, MQE2E_TICKET_PREFIX, PREFIX_LEN) != 0)
        return MQE2E_ERR_DECODE;

    /* libsodium 1.0.18 maps bytes >= 0x80 to digits instead of refusing
     * them, so the alphabet is checked here first. */
    for (size_t i = PREFIX_LEN; i < n; i++) {
        if (!b64url_char(text[i])) return MQE2E_ERR_DECODE;
    }
    /* No ignore set and no end pointer: libsodium then also refuses
     * non-canonical trailing bits and impossible lengths. */
    if (sodium_base642bin(bin, sizeof bin, text + PREFIX_LEN, n - PREFIX_LEN, NULL, &bin_len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0) {
        rc = MQE2E_ERR_DECODE;
        goto out;
    }
    m = mqe2e__v1__ticket__unpack(&mqe2e__cred_allocator, bin_len, bin);
    if (m == NULL || m->base.n_unknown_fields != 0 ||
        !mqe2e__cred_canonical(&m->base, bin, bin_len)) {
        rc = MQE2E_ERR_DECODE;
        goto out;
    }
    if (m->format != TICKET_FORMAT) {
        rc = MQE2E_ERR_SUITE;
        goto out;
    }
    if (m->authority_sign_public.len != 32 || m->authority_dh_public.len != 32 ||
        m->token_id.len != 16 || m->token.len != 32 || m->expires_at == 0 ||
        !mqe2e_client_id_valid(m->authority_id) || !mqe2e_client_id_valid(m->client_id) ||
        !mqe2e_control_prefix_valid(m->control_prefix) ||
        !mqe2e__cred_ed25519_public_ok(m->authority_sign_public.data) ||
        !mqe2e__cred_x25519_public_ok(m->authority_dh_public.data)) {
        rc = MQE2E_ERR_DECODE;
        goto out;
    }
    memcpy(out->authority_sign_public, m->authority_sign_public.data, 32);
    memcpy(out->authority_dh_public, m->authority_dh_public.data, 32);
    memcpy(out->token_id, m->token_id.data, 16);
    memcpy(out->token, m->token.data, 32);
    out->expires_at = m->expires_at;
    if ((rc = copy_str(out->authority_id, sizeof out->authority_id, m->authority_id)) != 0 ||
        (rc = copy_str(out->client_id, sizeof out->client_id, m->client_id)) != 0 ||
        (rc = copy_str(out->control_prefix, sizeof out->control_prefix, m->control_prefix)) != 0)
        goto out;
    rc = MQE2E_OK;
out:
    if (m != NULL) mqe2e__v1__ticket__free_unpacked(m, &mqe2e__cred_allocator);
    sodium_memzero(bin, sizeof bin);
    if (rc != MQE2E_OK) sodium_memzero(out, sizeof *out);
    return rc;
}
