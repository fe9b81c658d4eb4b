#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "internal_cred.h"
#include "mqe2e/credential.h"
#include "mqe2e/error.h"
#include "mqe2e/policy.h"
#include "proto/credential.pb-c.h"

typedef struct cred_grant {
    char *filter;
    unsigned rights;
} cred_grant;

struct mqe2e_credential {
    char *client_id;
    char *role;
    uint8_t sign_public[32];
    uint8_t dh_public[32];
    uint8_t authority_public[32];
    uint64_t serial;
    uint64_t issued_at;
    uint64_t expires_at;
    cred_grant *grants;
    size_t n_grants;
};

static bool role_valid(const char *role)
{
    return role != NULL && (strcmp(role, "device") == 0 || strcmp(role, "service") == 0 ||
                            strcmp(role, "operator") == 0);
}

static bool rights_valid(uint32_t rights)
{
    return rights != 0 && (rights & ~(uint32_t)MQE2E_RIGHT_ALL) == 0;
}

static int issue(uint8_t **out, size_t *out_len, const mqe2e__cred_signer *signer,
                 const mqe2e_credential_request *req)
{
    Mqe2e__V1__CredentialBody body;
    Mqe2e__V1__Credential cred;
    Mqe2e__V1__TopicGrant *gs = NULL;
    Mqe2e__V1__TopicGrant **gp = NULL;
    uint8_t authority_public[32];
    uint8_t sig[64];
    uint8_t *body_buf = NULL;
    uint8_t *cred_buf = NULL;
    size_t body_len = 0;
    size_t cred_len = 0;
    int rc;

    mqe2e__v1__credential_body__init(&body);
    mqe2e__v1__credential__init(&cred);
    if (out == NULL || out_len == NULL || req == NULL) return MQE2E_ERR_INVALID_ARG;
    if ((rc = mqe2e_init()) != MQE2E_OK) return rc;
    if (!mqe2e_client_id_valid(req->client_id) || !role_valid(req->role) || req->serial == 0 ||
        req->expires_at <= req->issued_at || (req->n_grants > 0 && req->grants == NULL) ||
        !mqe2e__cred_ed25519_public_ok(req->sign_public) ||
        !mqe2e__cred_x25519_public_ok(req->dh_public))
        return MQE2E_ERR_INVALID_ARG;
    /* Anything larger could never be verified anyway. */
    if (req->n_grants > MQE2E_CREDENTIAL_MAX_BYTES / 4) return MQE2E_ERR_TOO_LARGE;
    for (size_t i = 0; i < req->n_grants; i++) {
        if (req->grants[i].filter == NULL || !mqe2e_topic_filter_valid(req->grants[i].filter) ||
            !rights_valid(req->grants[i].rights))
            return MQE2E_ERR_INVALID_ARG;
    }
    if ((rc = mqe2e__cred_signer_public(authority_public, signer)) != MQE2E_OK) goto out;

    if (req->n_grants > 0) {
        gs = calloc(req->n_grants, sizeof *gs);
        gp = calloc(req->n_grants, sizeof *gp);
        if (gs == NULL || gp == NULL) {
            rc = MQE2E_ERR_NOMEM;
            goto out;
        }
        for (size_t i = 0; i < req->n_grants; i++) {
            mqe2e__v1__topic_grant__init(&gs[i]);
            /* protobuf-c only reads through these pointers while packing. */
            gs[i].filter = (char *)(uintptr_t)req->grants[i].filter;
            gs[i].rights = req->grants[i].rights;
            gp[i] = &gs[i];
        }
    }
    body.format = MQE2E_CREDENTIAL_FORMAT;
    body.client_id = (char *)(uintptr_t)req->client_id;
    body.role = (char *)(uintptr_t)req->role;
    body.sign_public.data = (uint8_t *)(uintptr_t)req->sign_public;
    body.sign_public.len = 32;
    body.dh_public.data = (uint8_t *)(uintptr_t)req->dh_public;
    body.dh_public.len = 32;
    body.authority_public.data = authority_public;
    body.authority_public.len = sizeof authority_public;
    body.n_grants = req->n_grants;
    body.grants = gp;
    body.issued_at = req->issued_at;
    body.expires_at = req->expires_at;
    body.serial = req->serial;

    body_len = mqe2e__v1__credential_body__get_packed_size(&body);
    if (body_len > MQE2E_CREDENTIAL_MAX_BYTES) {
        rc = MQE2E_ERR_TOO_LARGE;
        goto out;
    }
    if ((body_buf = malloc(body_len)) == NULL) {
        rc = MQE2E_ERR_NOMEM;
        goto out;
    }
    mqe2e__v1__credential_body__pack(&body, body_buf);
    if ((rc = mqe2e__cred_sign_by(sig, MQE2E_CREDENTIAL_DOMAIN, body_buf, body_len, signer)) !=
        MQE2E_OK)
        goto out;

    cred.body.data = body_buf;
    cred.body.len = body_len;
    cred.signature.data = sig;
    cred.signature.len = sizeof sig;
    cred_len = mqe2e__v1__credential__get_packed_size(&cred);
    if (cred_len > MQE2E_CREDENTIAL_MAX_BYTES) {
        rc = MQE2E_ERR_TOO_LARGE;
        goto out;
    }
    if ((cred_buf = malloc(cred_len)) == NULL) {
        rc = MQE2E_ERR_NOMEM;
        goto out;
    }
    mqe2e__v1__credential__pack(&cred, cred_buf);
    *out = cred_buf;
    *out_len = cred_len;
    cred_buf = NULL;
    rc = MQE2E_OK;
out:
    free(cred_buf);
    free(body_buf);
    free(gs);
    free(gp);
    return rc;
}

int mqe2e_credential_issue(uint8_t **out, size_t *out_len, const uint8_t authority_sign_secret[64],
                           const mqe2e_credential_request *req)
{
    mqe2e__cred_signer s = {authority_sign_secret, NULL, NULL, NULL};
    if (authority_sign_secret == NULL) return MQE2E_ERR_INVALID_ARG;
    return issue(out, out_len, &s, req);
}

int mqe2e_credential_issue_with(uint8_t **out, size_t *out_len,
                                const uint8_t authority_sign_public[32], mqe2e_sign_fn sign,
                                void *sign_ctx, const mqe2e_credential_request *req)
{
    mqe2e__cred_signer s = {NULL, authority_sign_public, sign, sign_ctx};
    if (authority_sign_public == NULL || sign == NULL) return MQE2E_ERR_INVALID_ARG;
    return issue(out, out_len, &s, req);
}

void mqe2e_credential_free(mqe2e_credential *c)
{
    if (c == NULL) return;
    for (size_t i = 0; i < c->n_grants; i++)
        free(c->grants[i].filter);
    free(c->grants);
    free(c->client_id);
    free(c->role);
    sodium_memzero(c, sizeof *c);
    free(c);
}

static bool time_ok(uint64_t issued_at, uint64_t expires_at, uint64_t now)
{
    if (now >= expires_at) return false;
    /* Tolerate a clock that lags the authority's by up to the skew. */
    if (now <= UINT64_MAX - MQE2E_CREDENTIAL_CLOCK_SKEW &&
        issued_at > now + MQE2E_CREDENTIAL_CLOCK_SKEW)
        return false;
    return true;
}

/* Copy a checked body into a handle that owns plain malloc() memory. */
static int build_handle(mqe2e_credential **out, const Mqe2e__V1__CredentialBody *b)
{
    mqe2e_credential *c = calloc(1, sizeof *c);
    if (c == NULL) return MQE2E_ERR_NOMEM;
    c->client_id = strdup(b->client_id);
    c->role = strdup(b->role);
    if (c->client_id == NULL || c->role == NULL) goto nomem;
    if (b->n_grants > 0) {
        c->grants = calloc(b->n_grants, sizeof *c->grants);
        if (c->grants == NULL) goto nomem;
        for (size_t i = 0; i < b->n_grants; i++) {
            c->grants[i].filter = strdup(b->grants[i]->filter);
            c->grants[i].rights = b->grants[i]->rights;
            c->n_grants = i + 1;
            if (c->grants[i].filter == NULL) goto nomem;
        }
    }
    memcpy(c->sign_public, b->sign_public.data, 32);
    memcpy(c->dh_public, b->dh_public.data, 32);
    memcpy(c->authority_public, b->authority_public.data, 32);
    c->serial = b->serial;
    c->issued_at = b->issued_at;
    c->expires_at = b->expires_at;
    *out = c;
    return MQE2E_OK;
nomem:
    mqe2e_credential_free(c);
    return MQE2E_ERR_NOMEM;
}

int mqe2e_credential_verify(mqe2e_credential **out, const uint8_t *in, size_t len,
                            const uint8_t authority_sign_public[32], uint64_t now)
{
    Mqe2e__V1__Credential *cred = NULL;
    Mqe2e__V1__CredentialBody *b = NULL;
    int rc;

    if (out == NULL) return MQE2E_ERR_INVALID_ARG;
    *out = NULL;
    if (in == NULL || authority_sign_public == NULL) return MQE2E_ERR_INVALID_ARG;
    if ((rc = mqe2e_init()) != MQE2E_OK) return rc;
    if (len > MQE2E_CREDENTIAL_MAX_BYTES) return MQE2E_ERR_TOO_LARGE;

    cred = mqe2e__v1__credential__unpack(&mqe2e__cred_allocator, len, in);
    if (cred == NULL || cred->base.n_unknown_fields != 0 ||
        cred->signature.len != MQE2E_CREDENTIAL_SIGNATURE_BYTES ||
        !mqe2e__cred_canonical(&cred->base, in, len)) {
        rc = MQE2E_ERR_DECODE;
        goto out;
    }
    if ((rc = mqe2e__cred_verify(cred->signature.data, MQE2E_CREDENTIAL_DOMAIN, cred->body.data,
                                 cred->body.len, authority_sign_public)) != MQE2E_OK)
        goto out;

    /* Authenticated from here on: the remaining checks guard against an
     * authority bug or a key used across deployments, not against forgery. */
    b = mqe2e__v1__credential_body__unpack(&mqe2e__cred_allocator, cred->body.len, cred->body.data);
    if (b == NULL || b->base.n_unknown_fields != 0 ||
        !mqe2e__cred_canonical(&b->base, cred->body.data, cred->body.len)) {
        rc = MQE2E_ERR_DECODE;
        goto out;
    }
    /* The same key must not be trusted for a body naming another issuer. */
    if (b->authority_public.len != 32 ||
        sodium_memcmp(b->authority_public.data, authority_sign_public, 32) != 0) {
        rc = MQE2E_ERR_AUTH;
        goto out;
    }
    if (b->format != MQE2E_CREDENTIAL_FORMAT) {
        rc = MQE2E_ERR_SUITE;
        goto out;
    }
    if (b->sign_public.len != 32 || b->dh_public.len != 32 ||
        !mqe2e_client_id_valid(b->client_id) || !role_valid(b->role) || b->serial == 0 ||
        b->expires_at <= b->issued_at || !mqe2e__cred_ed25519_public_ok(b->sign_public.data) ||
        !mqe2e__cred_x25519_public_ok(b->dh_public.data)) {
        rc = MQE2E_ERR_DECODE;
        goto out;
    }
    for (size_t i = 0; i < b->n_grants; i++) {
        const Mqe2e__V1__TopicGrant *g = b->grants[i];
        if (g->base.n_unknown_fields != 0 || !mqe2e_topic_filter_valid(g->filter) ||
            !rights_valid(g->rights)) {
            rc = MQE2E_ERR_DECODE;
            goto out;
        }
    }
    if (!time_ok(b->issued_at, b->expires_at, now)) {
        rc = MQE2E_ERR_EXPIRED;
        goto out;
    }
    rc = build_handle(out, b);
out:
    if (b != NULL) mqe2e__v1__credential_body__free_unpacked(b, &mqe2e__cred_allocator);
    if (cred != NULL) mqe2e__v1__credential__free_unpacked(cred, &mqe2e__cred_allocator);
    return rc;
}

int mqe2e_credential_check_time(const mqe2e_credential *c, uint64_t now)
{
    if (c == NULL) return MQE2E_ERR_INVALID_ARG;
    return time_ok(c->issued_at, c->expires_at, now) ? MQE2E_OK : MQE2E_ERR_EXPIRED;
}

const char *mqe2e_credential_client_id(const mqe2e_credential *c)
{
    return c != NULL ? c->client_id : NULL;
}

const char *mqe2e_credential_role(const mqe2e_credential *c)
{
    return c != NULL ? c->role : NULL;
}

const uint8_t *mqe2e_credential_sign_public(const mqe2e_credential *c)
{
    return c != NULL ? c->sign_public : NULL;
}

const uint8_t *mqe2e_credential_dh_public(const mqe2e_credential *c)
{
    return c != NULL ? c->dh_public : NULL;
}

const uint8_t *mqe2e_credential_authority_public(const mqe2e_credential *c)
{
    return c != NULL ? c->authority_public : NULL;
}

uint64_t mqe2e_credential_serial(const mqe2e_credential *c)
{
    return c != NULL ? c->serial : 0;
}

uint64_t mqe2e_credential_issued_at(const mqe2e_credential *c)
{
    return c != NULL ? c->issued_at : 0;
}

uint64_t mqe2e_credential_expires_at(const mqe2e_credential *c)
{
    return c != NULL ? c->expires_at : 0;
}

size_t mqe2e_credential_grant_count(const mqe2e_credential *c)
{
    return c != NULL ? c->n_grants : 0;
}

const char *mqe2e_credential_grant_filter(const mqe2e_credential *c, size_t i)
{
    return c != NULL && i < c->n_grants ? c->grants[i].filter : NULL;
}

unsigned mqe2e_credential_grant_rights(const mqe2e_credential *c, size_t i)
{
    return c != NULL && i < c->n_grants ? c->grants[i].rights : 0;
}

bool mqe2e_credential_allows(const mqe2e_credential *c, const char *topic, unsigned rights)
{
    if (c == NULL || topic == NULL || rights == 0 || (rights & ~MQE2E_RIGHT_ALL) != 0 ||
        !mqe2e_topic_name_valid(topic))
        return false;
    unsigned have = 0;
    for (size_t i = 0; i < c->n_grants; i++) {
        if (mqe2e_topic_matches(c->grants[i].filter, topic)) have |= c->grants[i].rights;
    }
    return (have & rights) == rights;
}

/* Length of the level starting at s (up to '/' or the end). */
static size_t level_len(const char *s)
{
    size_t n = 0;
    while (s[n] != '\0' && s[n] != '/')
        n++;
    return n;
}

/* Does grant filter g cover requested filter r (both valid filters)? Sound
 * rather than complete: when in doubt, not covered. */
static bool covers(const char *g, const char *r)
{
    bool first = true;
    for (;;) {
        size_t gl = level_len(g);
        size_t rl = level_len(r);
        bool g_hash = gl == 1 && g[0] == '#';
        bool g_plus = gl == 1 && g[0] == '+';
        bool r_hash = rl == 1 && r[0] == '#';

        if (first && (g_hash || g_plus) && r[0] == '$') return false;
        if (g_hash) return true;
        if (r_hash) return false;
        if (!g_plus && (gl != rl || memcmp(g, r, gl) != 0)) return false;
        g += gl;
        r += rl;
        first = false;
        if (*g == '\0' && *r == '\0') return true;
        if (*r == '\0') {
            /* r ended: only a trailing "/#" in g (matching the parent level) covers it. */
            return strcmp(g, "/#") == 0;
        }
        if (*g == '\0') return false;
        g++;
        r++;
    }
}

bool mqe2e_credential_filter_allowed(const mqe2e_credential *c, const char *filter, unsigned rights)
{
    if (c == NULL || filter == NULL || rights == 0 || (rights & ~MQE2E_RIGHT_ALL) != 0 ||
        !mqe2e_topic_filter_valid(filter))
        return false;
    unsigned have = 0;
    for (size_t i = 0; i < c->n_grants; i++) {
        if (covers(c->grants[i].filter, filter)) have |= c->grants[i].rights;
    }
    return (have & rights) == rights;
}

bool mqe2e_credential_needs_renewal(const mqe2e_credential *c, uint64_t now, unsigned num,
                                    unsigned den)
{
    if (c == NULL || den == 0 || num > den) return false;
    uint64_t life = c->expires_at - c->issued_at;
    /* life * num / den without overflowing 64 bits. */
    uint64_t part = (life / den) * num + ((life % den) * num) / den;
    return now >= c->issued_at + part;
}
