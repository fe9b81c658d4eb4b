#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "internal_cred.h"
#include "mqe2e/credential.h"
#include "mqe2e/envelope.h"
#include "mqe2e/error.h"
#include "proto/credential.pb-c.h"

#define REVOCATION_FORMAT 1u

typedef struct rev_sender {
    char *group_id;
    uint32_t sender_id;
} rev_sender;

typedef struct rev_entry {
    char *client_id;
    uint64_t serial;
    uint64_t revoked_at;
} rev_entry;

struct mqe2e_revocation_list {
    uint64_t version;
    uint64_t issued_at;
    uint64_t next_update;
    uint8_t authority_public[32];
    rev_entry *entries; /* sorted by client id, then serial */
    size_t n;
    rev_sender *retired; /* sorted by sender id, then group id; no duplicates */
    size_t n_retired;
};

/* 1..MQE2E_GROUP_ID_MAX_BYTES printable ASCII bytes, as keystore group names. */
static bool group_id_valid(const char *s)
{
    size_t n = 0;
    if (s == NULL) return false;
    for (; s[n] != '\0'; n++) {
        if (n >= MQE2E_GROUP_ID_MAX_BYTES) return false;
        if ((unsigned char)s[n] < 0x20U || (unsigned char)s[n] > 0x7eU) return false;
    }
    return n > 0;
}

static int list_sign(uint8_t **out, size_t *out_len, const mqe2e__cred_signer *signer,
                     const mqe2e_revocation_contents *c)
{
    const mqe2e_revocation_entry *entries = c->entries;
    size_t n = c->n_entries;
    uint64_t version = c->version;
    Mqe2e__V1__RetiredSender *rs = NULL;
    Mqe2e__V1__RetiredSender **rp = NULL;
    Mqe2e__V1__RevocationListBody body;
    Mqe2e__V1__RevocationList list;
    Mqe2e__V1__RevocationEntry *es = NULL;
    Mqe2e__V1__RevocationEntry **ep = NULL;
    uint8_t authority_public[32];
    uint8_t sig[64];
    uint8_t *body_buf = NULL;
    uint8_t *list_buf = NULL;
    size_t body_len = 0;
    size_t list_len = 0;
    int rc;

    mqe2e__v1__revocation_list_body__init(&body);
    mqe2e__v1__revocation_list__init(&list);
    if (out == NULL || out_len == NULL || version == 0 || (n > 0 && entries == NULL) ||
        (c->n_retired > 0 && c->retired == NULL) ||
        (c->next_update != 0 && c->next_update <= c->issued_at))
        return MQE2E_ERR_INVALID_ARG;
    if ((rc = mqe2e_init()) != MQE2E_OK) return rc;
    /* Each entry costs at least four bytes on the wire. */
    if (n > MQE2E_REVOCATION_MAX_BYTES / 4) return MQE2E_ERR_TOO_LARGE;
    if (c->n_retired > MQE2E_REVOCATION_MAX_BYTES / 4) return MQE2E_ERR_TOO_LARGE;
    for (size_t i = 0; i < n; i++) {
        if (!mqe2e_client_id_valid(entries[i].client_id)) return MQE2E_ERR_INVALID_ARG;
    }
    for (size_t i = 0; i < c->n_retired; i++) {
        if (!group_id_valid(c->retired[i].group_id) || c->retired[i].sender_id == 0)
            return MQE2E_ERR_INVALID_ARG;
    }
    if ((rc = mqe2e__cred_signer_public(authority_public, signer)) != MQE2E_OK) goto out;
    if (n > 0) {
        es = calloc(n, sizeof *es);
        ep = calloc(n, sizeof *ep);
        if (es == NULL || ep == NULL) {
            rc = MQE2E_ERR_NOMEM;
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            mqe2e__v1__revocation_entry__init(&es[i]);
            /* protobuf-c only reads through this pointer while packing. */
            es[i].client_id = (char *)(uintptr_t)entries[i].client_id;
            es[i].serial = entries[i].serial;
            es[i].revoked_at = entries[i].revoked_at;
            ep[i] = &es[i];
        }
    }
    if (c->n_retired > 0) {
        rs = calloc(c->n_retired, sizeof *rs);
        rp = calloc(c->n_retired, sizeof *rp);
        if (rs == NULL || rp == NULL) {
            rc = MQE2E_ERR_NOMEM;
            goto out;
        }
        for (size_t i = 0; i < c->n_retired; i++) {
            mqe2e__v1__retired_sender__init(&rs[i]);
            rs[i].group_id = (char *)(uintptr_t)c->retired[i].group_id;
            rs[i].sender_id = c->retired[i].sender_id;
            rp[i] = &rs[i];
        }
    }
    body.format = REVOCATION_FORMAT;
    body.version = version;
    body.issued_at = c->issued_at;
    body.next_update = c->next_update;
    body.n_retired_senders = c->n_retired;
    body.retired_senders = rp;
    body.n_entries = n;
    body.entries = ep;
    body.authority_public.data = authority_public;
    body.authority_public.len = sizeof authority_public;

    body_len = mqe2e__v1__revocation_list_body__get_packed_size(&body);
    if (body_len > MQE2E_REVOCATION_MAX_BYTES) {
        rc = MQE2E_ERR_TOO_LARGE;
        goto out;
    }
    if ((body_buf = malloc(body_len)) == NULL) {
        rc = MQE2E_ERR_NOMEM;
        goto out;
    }
    mqe2e__v1__revocation_list_body__pack(&body, body_buf);
    if ((rc = mqe2e__cred_sign_by(sig, MQE2E_REVOCATION_DOMAIN, body_buf, body_len, signer)) !=
        MQE2E_OK)
        goto out;
    list.body.data = body_buf;
    list.body.len = body_len;
    list.signature.data = sig;
    list.signature.len = sizeof sig;
    list_len = mqe2e__v1__revocation_list__get_packed_size(&list);
    if (list_len > MQE2E_REVOCATION_MAX_BYTES) {
        rc = MQE2E_ERR_TOO_LARGE;
        goto out;
    }
    if ((list_buf = malloc(list_len)) == NULL) {
        rc = MQE2E_ERR_NOMEM;
        goto out;
    }
    mqe2e__v1__revocation_list__pack(&list, list_buf);
    *out = list_buf;
    *out_len = list_len;
    list_buf = NULL;
    rc = MQE2E_OK;
out:
    free(list_buf);
    free(body_buf);
    free(es);
    free(ep);
    free(rs);
    free(rp);
    return rc;
}

int mqe2e_revocation_list_sign(uint8_t **out, size_t *out_len,
                               const uint8_t authority_sign_secret[64], uint64_t version,
                               uint64_t issued_at, const mqe2e_revocation_entry *entries, size_t n)
{
    mqe2e_revocation_contents c = {version, issued_at, 0, entries, n, NULL, 0};
    return mqe2e_revocation_list_sign_contents(out, out_len, authority_sign_secret, &c);
}

int mqe2e_revocation_list_sign_contents(uint8_t **out, size_t *out_len,
                                        const uint8_t authority_sign_secret[64],
                                        const mqe2e_revocation_contents *c)
{
    mqe2e__cred_signer s = {authority_sign_secret, NULL, NULL, NULL};
    if (authority_sign_secret == NULL || c == NULL) return MQE2E_ERR_INVALID_ARG;
    return list_sign(out, out_len, &s, c);
}

int mqe2e_revocation_list_sign_with(uint8_t **out, size_t *out_len,
                                    const uint8_t authority_sign_public[32], mqe2e_sign_fn sign,
                                    void *sign_ctx, uint64_t version, uint64_t issued_at,
                                    const mqe2e_revocation_entry *entries, size_t n)
{
    mqe2e_revocation_contents c = {version, issued_at, 0, entries, n, NULL, 0};
    return mqe2e_revocation_list_sign_ex(out, out_len, authority_sign_public, sign, sign_ctx, &c);
}

int mqe2e_revocation_list_sign_ex(uint8_t **out, size_t *out_len,
                                  const uint8_t authority_sign_public[32], mqe2e_sign_fn sign,
                                  void *sign_ctx, const mqe2e_revocation_contents *c)
{
    mqe2e__cred_signer s = {NULL, authority_sign_public, sign, sign_ctx};
    if (authority_sign_public == NULL || sign == NULL || c == NULL) return MQE2E_ERR_INVALID_ARG;
    return list_sign(out, out_len, &s, c);
}

static int sender_cmp(const void *a, const void *b)
{
    const rev_sender *x = a;
    const rev_sender *y = b;
    if (x->sender_id != y->sender_id) return (x->sender_id > y->sender_id) ? 1 : -1;
    return strcmp(x->group_id, y->group_id);
}

static int entry_cmp(const void *a, const void *b)
{
    const rev_entry *x = a;
    const rev_entry *y = b;
    int c = strcmp(x->client_id, y->client_id);
    if (c != 0) return c;
    return (x->serial > y->serial) - (x->serial < y->serial);
}

void mqe2e_revocation_list_free(mqe2e_revocation_list *l)
{
    if (l == NULL) return;
    for (size_t i = 0; i < l->n; i++)
        free(l->entries[i].client_id);
    free(l->entries);
    for (size_t i = 0; i < l->n_retired; i++)
        free(l->retired[i].group_id);
    free(l->retired);
    sodium_memzero(l, sizeof *l);
    free(l);
}

int mqe2e_revocation_list_verify(mqe2e_revocation_list **out, const uint8_t *in, size_t len,
                                 const uint8_t authority_sign_public[32])
{
    Mqe2e__V1__RevocationList *list = NULL;
    Mqe2e__V1__RevocationListBody *b = NULL;
    mqe2e_revocation_list *l = NULL;
    int rc;

    if (out == NULL) return MQE2E_ERR_INVALID_ARG;
    *out = NULL;
    if (in == NULL || authority_sign_public == NULL) return MQE2E_ERR_INVALID_ARG;
    if ((rc = mqe2e_init()) != MQE2E_OK) return rc;
    if (len > MQE2E_REVOCATION_MAX_BYTES) return MQE2E_ERR_TOO_LARGE;

    list = mqe2e__v1__revocation_list__unpack(&mqe2e__cred_allocator, len, in);
    if (list == NULL || list->base.n_unknown_fields != 0 ||
        list->signature.len != MQE2E_CREDENTIAL_SIGNATURE_BYTES ||
        !mqe2e__cred_canonical(&list->base, in, len)) {
        rc = MQE2E_ERR_DECODE;
        goto out;
    }
    if ((rc = mqe2e__cred_verify(list->signature.data, MQE2E_REVOCATION_DOMAIN, list->body.data,
                                 list->body.len, authority_sign_public)) != MQE2E_OK)
        goto out;
    b = mqe2e__v1__revocation_list_body__unpack(&mqe2e__cred_allocator, list->body.len,
                                                list->body.data);
    if (b == NULL || b->base.n_unknown_fields != 0 ||
        !mqe2e__cred_canonical(&b->base, list->body.data, list->body.len)) {
        rc = MQE2E_ERR_DECODE;
        goto out;
    }
    if (b->authority_public.len != 32 ||
        sodium_memcmp(b->authority_public.data, authority_sign_public, 32) != 0) {
        rc = MQE2E_ERR_AUTH;
        goto out;
    }
    if (b->format != REVOCATION_FORMAT) {
        rc = MQE2E_ERR_SUITE;
        goto out;
    }
    if (b->version == 0 || (b->next_update != 0 && b->next_update <= b->issued_at)) {
        rc = MQE2E_ERR_DECODE;
        goto out;
    }
    for (size_t i = 0; i < b->n_entries; i++) {
        if (b->entries[i]->base.n_unknown_fields != 0 ||
            !mqe2e_client_id_valid(b->entries[i]->client_id)) {
            rc = MQE2E_ERR_DECODE;
            goto out;
        }
    }
    for (size_t i = 0; i < b->n_retired_senders; i++) {
        if (b->retired_senders[i]->base.n_unknown_fields != 0 ||
            !group_id_valid(b->retired_senders[i]->group_id) ||
            b->retired_senders[i]->sender_id == 0) {
            rc = MQE2E_ERR_DECODE;
            goto out;
        }
    }

    if ((l = calloc(1, sizeof *l)) == NULL) {
        rc = MQE2E_ERR_NOMEM;
        goto out;
    }
    l->version = b->version;
    l->issued_at = b->issued_at;
    l->next_update = b->next_update;
    memcpy(l->authority_public, b->authority_public.data, 32);
    if (b->n_entries > 0) {
        if ((l->entries = calloc(b->n_entries, sizeof *l->entries)) == NULL) {
            rc = MQE2E_ERR_NOMEM;
            goto out;
        }
        for (size_t i = 0; i < b->n_entries; i++) {
            l->entries[i].client_id = strdup(b->entries[i]->client_id);
            l->entries[i].serial = b->entries[i]->serial;
            l->entries[i].revoked_at = b->entries[i]->revoked_at;
            l->n = i + 1;
            if (l->entries[i].client_id == NULL) {
                rc = MQE2E_ERR_NOMEM;
                goto out;
            }
        }
        qsort(l->entries, l->n, sizeof *l->entries, entry_cmp);
    }
    if (b->n_retired_senders > 0) {
        if ((l->retired = calloc(b->n_retired_senders, sizeof *l->retired)) == NULL) {
            rc = MQE2E_ERR_NOMEM;
            goto out;
        }
        for (size_t i = 0; i < b->n_retired_senders; i++) {
            l->retired[i].group_id = strdup(b->retired_senders[i]->group_id);
            l->retired[i].sender_id = b->retired_senders[i]->sender_id;
            l->n_retired = i + 1;
            if (l->retired[i].group_id == NULL) {
                rc = MQE2E_ERR_NOMEM;
                goto out;
            }
        }
        qsort(l->retired, l->n_retired, sizeof *l->retired, sender_cmp);
        /* A repeated pair is harmless: keep one. */
        size_t w = 1;
        for (size_t i = 1; i < l->n_retired; i++) {
            if (sender_cmp(&l->retired[i], &l->retired[w - 1]) == 0) {
                free(l->retired[i].group_id);
                continue;
            }
            l->retired[w++] = l->retired[i];
        }
        l->n_retired = w;
    }
    *out = l;
    l = NULL;
    rc = MQE2E_OK;
out:
    mqe2e_revocation_list_free(l);
    if (b != NULL) mqe2e__v1__revocation_list_body__free_unpacked(b, &mqe2e__cred_allocator);
    if (list != NULL) mqe2e__v1__revocation_list__free_unpacked(list, &mqe2e__cred_allocator);
    return rc;
}

uint64_t mqe2e_revocation_list_version(const mqe2e_revocation_list *l)
{
    return l != NULL ? l->version : 0;
}

uint64_t mqe2e_revocation_list_issued_at(const mqe2e_revocation_list *l)
{
    return l != NULL ? l->issued_at : 0;
}

uint64_t mqe2e_revocation_list_next_update(const mqe2e_revocation_list *l)
{
    return l != NULL ? l->next_update : 0;
}

size_t mqe2e_revocation_list_count(const mqe2e_revocation_list *l)
{
    return l != NULL ? l->n : 0;
}

int mqe2e_revocation_list_entry(const mqe2e_revocation_list *l, size_t i, mqe2e_revocation_entry *e)
{
    if (l == NULL || e == NULL || i >= l->n) return MQE2E_ERR_INVALID_ARG;
    e->client_id = l->entries[i].client_id;
    e->serial = l->entries[i].serial;
    e->revoked_at = l->entries[i].revoked_at;
    return MQE2E_OK;
}

/* Index of the first entry naming client_id (entries are sorted). */
static size_t lower_bound(const mqe2e_revocation_list *l, const char *client_id)
{
    size_t lo = 0;
    size_t hi = l->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(l->entries[mid].client_id, client_id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

bool mqe2e_revocation_list_is_revoked(const mqe2e_revocation_list *l, const char *client_id,
                                      uint64_t serial)
{
    if (l == NULL || client_id == NULL) return false;
    for (size_t i = lower_bound(l, client_id);
         i < l->n && strcmp(l->entries[i].client_id, client_id) == 0; i++) {
        if (serial == 0 || l->entries[i].serial == 0 || serial <= l->entries[i].serial) return true;
    }
    return false;
}

bool mqe2e_revocation_list_client_revoked(const mqe2e_revocation_list *l, const char *client_id)
{
    if (l == NULL || client_id == NULL) return false;
    for (size_t i = lower_bound(l, client_id);
         i < l->n && strcmp(l->entries[i].client_id, client_id) == 0; i++) {
        if (l->entries[i].serial == 0) return true;
    }
    return false;
}

bool mqe2e_revocation_list_sender_retired(const mqe2e_revocation_list *l, const char *group_id,
                                          uint32_t sender_id)
{
    if (l == NULL || group_id == NULL || l->n_retired == 0) return false;
    rev_sender key = {(char *)(uintptr_t)group_id, sender_id};
    return bsearch(&key, l->retired, l->n_retired, sizeof *l->retired, sender_cmp) != NULL;
}

size_t mqe2e_revocation_list_retired_count(const mqe2e_revocation_list *l)
{
    return l != NULL ? l->n_retired : 0;
}

int mqe2e_revocation_list_retired(const mqe2e_revocation_list *l, size_t i,
                                  mqe2e_retired_sender *r)
{
    if (l == NULL || r == NULL || i >= l->n_retired) return MQE2E_ERR_INVALID_ARG;
    r->group_id = l->retired[i].group_id;
    r->sender_id = l->retired[i].sender_id;
    return MQE2E_OK;
}
