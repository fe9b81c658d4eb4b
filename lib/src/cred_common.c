#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "internal_cred.h"
#include "mqe2e/credential.h"
#include "mqe2e/error.h"

/* The block size is kept in front of each block so free() can wipe it. The
 * header is as large as max_align_t so the returned pointer stays aligned. */
typedef union {
    max_align_t align;
    size_t size;
} wipe_hdr;

static void *wipe_alloc(void *data, size_t size)
{
    (void)data;
    if (size > SIZE_MAX - sizeof(wipe_hdr)) return NULL;
    wipe_hdr *h = malloc(sizeof(wipe_hdr) + size);
    if (h == NULL) return NULL;
    h->size = size;
    return h + 1;
}

static void wipe_free(void *data, void *p)
{
    (void)data;
    if (p == NULL) return;
    wipe_hdr *h = (wipe_hdr *)p - 1;
    sodium_memzero(p, h->size);
    free(h);
}

ProtobufCAllocator mqe2e__cred_allocator = {wipe_alloc, wipe_free, NULL};

/* No unknown field anywhere in the message tree. protobuf-c keeps unknown
 * fields and packs them again, so the re-encoding check alone lets them
 * through: a field the decoder does not understand must be refused, not
 * carried (docs/PROTOCOL.md 1). */
/* Room for one more message on the walk's stack. */
static bool stack_push(const ProtobufCMessage ***st, size_t *n, size_t *cap,
                       const ProtobufCMessage *m)
{
    if (m == NULL) return true;
    if (*n == *cap) {
        size_t c = *cap * 2U;
        const ProtobufCMessage **v = realloc((void *)*st, c * sizeof *v);
        if (v == NULL) return false;
        *st = v;
        *cap = c;
    }
    (*st)[(*n)++] = m;
    return true;
}

static bool no_unknown_fields(const ProtobufCMessage *root)
{
    size_t n = 0, cap = 16;
    const ProtobufCMessage **st = malloc(cap * sizeof *st);
    bool ok = st != NULL && stack_push(&st, &n, &cap, root);
    while (ok && n > 0) {
        const ProtobufCMessage *m = st[--n];
        if (m->n_unknown_fields != 0) {
            ok = false;
            break;
        }
        const ProtobufCMessageDescriptor *d = m->descriptor;
        const char *base = (const char *)m;
        for (unsigned i = 0; ok && i < d->n_fields; i++) {
            const ProtobufCFieldDescriptor *f = &d->fields[i];
            if (f->type != PROTOBUF_C_TYPE_MESSAGE) continue;
            if (f->label == PROTOBUF_C_LABEL_REPEATED) {
                size_t k = 0;
                ProtobufCMessage *const *v = NULL;
                memcpy(&k, base + f->quantifier_offset, sizeof k);
                memcpy(&v, base + f->offset, sizeof v);
                for (size_t j = 0; ok && j < k && v != NULL; j++)
                    ok = stack_push(&st, &n, &cap, v[j]);
                continue;
            }
            if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0) {
                uint32_t which = 0;
                memcpy(&which, base + f->quantifier_offset, sizeof which);
                if (which != f->id) continue;
            }
            const ProtobufCMessage *sub = NULL;
            memcpy(&sub, base + f->offset, sizeof sub);
            ok = stack_push(&st, &n, &cap, sub);
        }
    }
    free((void *)st);
    return ok;
}

bool mqe2e__cred_canonical(const ProtobufCMessage *m, const uint8_t *in, size_t len)
{
    if (!no_unknown_fields(m)) return false;
    size_t n = protobuf_c_message_get_packed_size(m);
    if (n != len) return false;
    if (n == 0) return true;
    uint8_t *buf = malloc(n);
    if (buf == NULL) return false;
    bool ok = protobuf_c_message_pack(m, buf) == n && memcmp(buf, in, n) == 0;
    sodium_memzero(buf, n);
    free(buf);
    return ok;
}

/* Public keys that already passed a check, per thread. Each check is a pure
 * function of the 32 key bytes, so remembering a pass is the same check done
 * once: an enrollment meets the same device keys in the request and again in
 * the credential issued for it (a batch of up to 32 on the authority), and a
 * signer's public key on every credential. Only passes are kept, only public
 * bytes; a miss runs the full check. */
#define KEY_MEMO_SLOTS 64U

enum { KEY_ED25519 = 1, KEY_X25519 = 2 };

typedef struct key_memo {
    uint8_t kind[KEY_MEMO_SLOTS];
    uint8_t pk[KEY_MEMO_SLOTS][32];
    unsigned next;
} key_memo;

static _Thread_local key_memo memo;

static bool memo_has(uint8_t kind, const uint8_t pk[32])
{
    for (unsigned i = 0; i < KEY_MEMO_SLOTS; i++)
        if (memo.kind[i] == kind && memcmp(memo.pk[i], pk, 32) == 0) return true;
    return false;
}

static void memo_add(uint8_t kind, const uint8_t pk[32])
{
    if (memo_has(kind, pk)) return;
    unsigned i = memo.next;
    memo.next = (i + 1U) % KEY_MEMO_SLOTS;
    memo.kind[i] = kind;
    memcpy(memo.pk[i], pk, 32);
}

bool mqe2e__cred_ed25519_public_ok(const uint8_t pk[32])
{
    if (memo_has(KEY_ED25519, pk)) return true;
    /* Canonical encoding, on the curve, not of small order, in the
     * prime-order subgroup: what crypto_sign_ed25519_pk_to_curve25519()
     * checked before converting, without the conversion's field inversion
     * (and it refuses non-canonical encodings outright). */
    bool ok = crypto_core_ed25519_is_valid_point(pk) == 1;
    if (ok) memo_add(KEY_ED25519, pk);
    return ok;
}

bool mqe2e__cred_x25519_public_ok(const uint8_t pk[32])
{
    if (memo_has(KEY_X25519, pk)) return true;
    /* Any clamped scalar maps every small-order point to the all-zero output,
     * which crypto_scalarmult() reports as failure. */
    static const uint8_t scalar[crypto_scalarmult_SCALARBYTES] = {
        0x40, 0x61, 0x6c, 0x67, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x20, 0x63,
        0x68, 0x65, 0x63, 0x6b, 0x21, 0x6d, 0x71, 0x65, 0x32, 0x65, 0x2f,
        0x76, 0x31, 0x2f, 0x6b, 0x65, 0x79, 0x2d, 0x63, 0x68, 0x6b};
    uint8_t q[crypto_scalarmult_BYTES];
    bool ok = crypto_scalarmult(q, scalar, pk) == 0;
    sodium_memzero(q, sizeof q);
    if (ok) memo_add(KEY_X25519, pk);
    return ok;
}

void mqe2e__cred_x25519_public_passed(const uint8_t pk[32])
{
    memo_add(KEY_X25519, pk);
}

int mqe2e__cred_secret_public(uint8_t pk[32], const uint8_t sk[64])
{
    uint8_t seed[crypto_sign_SEEDBYTES];
    uint8_t sk2[crypto_sign_SECRETKEYBYTES];
    uint8_t pk2[crypto_sign_PUBLICKEYBYTES];
    int rc = MQE2E_OK;

    if (crypto_sign_ed25519_sk_to_seed(seed, sk) != 0 ||
        crypto_sign_seed_keypair(pk2, sk2, seed) != 0) {
        rc = MQE2E_ERR_CRYPTO;
        goto out;
    }
    /* A secret whose stored public half disagrees with its seed would sign
     * credentials nobody can verify. */
    if (sodium_memcmp(pk2, sk + crypto_sign_SEEDBYTES, sizeof pk2) != 0) {
        rc = MQE2E_ERR_INVALID_ARG;
        goto out;
    }
    memcpy(pk, pk2, sizeof pk2);
out:
    sodium_memzero(seed, sizeof seed);
    sodium_memzero(sk2, sizeof sk2);
    sodium_memzero(pk2, sizeof pk2);
    return rc;
}

static uint8_t *domain_message(const char *domain, const uint8_t *body, size_t len, size_t *mlen)
{
    size_t dlen = strlen(domain);
    if (len > SIZE_MAX - dlen) return NULL;
    uint8_t *m = malloc(dlen + len + 1);
    if (m == NULL) return NULL;
    /* NOLINTNEXTLINE(bugprone-not-null-terminated-result): binary message, length in *mlen */
    memcpy(m, domain, dlen);
    if (len > 0) memcpy(m + dlen, body, len);
    *mlen = dlen + len;
    return m;
}

int mqe2e__cred_sign(uint8_t sig[64], const char *domain, const uint8_t *body, size_t len,
                     const uint8_t sk[64])
{
    size_t mlen = 0;
    uint8_t *m = domain_message(domain, body, len, &mlen);
    if (m == NULL) return MQE2E_ERR_NOMEM;
    int rc = crypto_sign_detached(sig, NULL, m, mlen, sk) == 0 ? MQE2E_OK : MQE2E_ERR_CRYPTO;
    free(m);
    return rc;
}

int mqe2e__cred_verify(const uint8_t sig[64], const char *domain, const uint8_t *body, size_t len,
                       const uint8_t pk[32])
{
    size_t mlen = 0;
    uint8_t *m = domain_message(domain, body, len, &mlen);
    if (m == NULL) return MQE2E_ERR_NOMEM;
    int rc = crypto_sign_verify_detached(sig, m, mlen, pk) == 0 ? MQE2E_OK : MQE2E_ERR_AUTH;
    free(m);
    return rc;
}

bool mqe2e_client_id_valid(const char *id)
{
    if (id == NULL) return false;
    size_t n = strnlen(id, MQE2E_ID_MAX + 1);
    if (n == 0 || n > MQE2E_ID_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (c < 0x21 || c > 0x7e || c == '/' || c == '+' || c == '#') return false;
    }
    return true;
}

bool mqe2e_control_prefix_valid(const char *prefix)
{
    if (prefix == NULL) return false;
    size_t n = strnlen(prefix, MQE2E_CONTROL_PREFIX_MAX + 1);
    if (n == 0 || n > MQE2E_CONTROL_PREFIX_MAX) return false;
    if (prefix[0] == '/' || prefix[n - 1] == '/') return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)prefix[i];
        if (c < 0x21 || c > 0x7e || c == '+' || c == '#') return false;
        if (c == '/' && prefix[i + 1] == '/') return false;
    }
    return true;
}

int mqe2e__cred_signer_public(uint8_t pk[32], const mqe2e__cred_signer *s)
{
    if (s->sk != NULL) return mqe2e__cred_secret_public(pk, s->sk);
    if (s->pk == NULL || s->fn == NULL || !mqe2e__cred_ed25519_public_ok(s->pk))
        return MQE2E_ERR_INVALID_ARG;
    memcpy(pk, s->pk, 32);
    return MQE2E_OK;
}

/* Callback signers whose first signature verified against their stated
 * public key, per thread. That verification answers whether the callback
 * holds the key written into the bodies; the same callback and context keep
 * the same key, so it is asked once per signer rather than once per
 * signature (an Ed25519 verification costs several signatures; an authority
 * signs one credential per enrollment). Not kept as a per-signature fault
 * check: the deterministic-nonce fault attacks it would stop need the same
 * message signed twice, and every credential and revocation list body is
 * unique (serial, version, times). A context freed and reused for a
 * keystore holding another key under the same stated key would only yield
 * signatures nobody accepts: verifiers check against their own pin. */
#define SIGNER_MEMO_SLOTS 4U

typedef struct signer_memo {
    int (*fn[SIGNER_MEMO_SLOTS])(void *ctx, uint8_t sig[64], const uint8_t *msg, size_t msg_len);
    void *ctx[SIGNER_MEMO_SLOTS];
    uint8_t pk[SIGNER_MEMO_SLOTS][32];
    unsigned next;
} signer_memo;

static _Thread_local signer_memo signers;

static bool signer_seen(const mqe2e__cred_signer *s)
{
    for (unsigned i = 0; i < SIGNER_MEMO_SLOTS; i++)
        if (signers.fn[i] == s->fn && signers.fn[i] != NULL && signers.ctx[i] == s->ctx &&
            memcmp(signers.pk[i], s->pk, 32) == 0)
            return true;
    return false;
}

static void signer_add(const mqe2e__cred_signer *s)
{
    unsigned i = signers.next;
    signers.next = (i + 1U) % SIGNER_MEMO_SLOTS;
    signers.fn[i] = s->fn;
    signers.ctx[i] = s->ctx;
    memcpy(signers.pk[i], s->pk, 32);
}

int mqe2e__cred_sign_by(uint8_t sig[64], const char *domain, const uint8_t *body, size_t len,
                        const mqe2e__cred_signer *s)
{
    if (s->sk != NULL) return mqe2e__cred_sign(sig, domain, body, len, s->sk);
    size_t mlen = 0;
    uint8_t *m = domain_message(domain, body, len, &mlen);
    if (m == NULL) return MQE2E_ERR_NOMEM;
    int rc = MQE2E_OK;
    if (s->fn(s->ctx, sig, m, mlen) != 0)
        rc = MQE2E_ERR_CRYPTO;
    else if (!signer_seen(s)) {
        if (crypto_sign_verify_detached(sig, m, mlen, s->pk) == 0)
            signer_add(s);
        else
            /* The callback holds another key than the one written into the body. */
            rc = MQE2E_ERR_INVALID_ARG;
    }
    free(m);
    return rc;
}
