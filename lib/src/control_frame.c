/* Control frames, handshake prologues and the update payloads shared by
 * enrollment, hello and push (docs/PROTOCOL.md, "Control plane"). */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "internal_control.h"
#include "internal_cred.h"
#include "internal_envelope_codec.h"
#include "mqe2e/error.h"
#include "mqe2e/policy.h"
#include "proto/control.pb-c.h"

/* Canonical frames carry all six fields, in order: the keys are fixed bytes. */
#define KEY_FORMAT 0x08U
#define KEY_KIND 0x10U
#define KEY_FROM 0x1AU
#define KEY_SESSION 0x22U
#define KEY_STEP 0x28U
#define KEY_NOISE 0x32U

static const char *kind_name(uint32_t kind)
{
    switch (kind) {
    case MQE2E_CONTROL_ENROLL:
        return "enroll";
    case MQE2E_CONTROL_HELLO:
        return "hello";
    case MQE2E_CONTROL_PUSH:
        return "push";
    case MQE2E_CONTROL_CHANNEL:
        return "channel";
    default:
        return NULL;
    }
}

const char *mqe2e__control_protocol_name(uint32_t kind)
{
    switch (kind) {
    case MQE2E_CONTROL_ENROLL:
        return "Noise_IKpsk2_25519_ChaChaPoly_SHA256";
    case MQE2E_CONTROL_HELLO:
        return "Noise_IK_25519_ChaChaPoly_SHA256";
    case MQE2E_CONTROL_PUSH:
        return "Noise_K_25519_ChaChaPoly_SHA256";
    case MQE2E_CONTROL_CHANNEL:
        return "Noise_XX_25519_ChaChaPoly_SHA256";
    default:
        return NULL;
    }
}

uint32_t mqe2e__control_max_step(uint32_t kind)
{
    switch (kind) {
    case MQE2E_CONTROL_ENROLL:
    case MQE2E_CONTROL_HELLO:
        return 2;
    case MQE2E_CONTROL_PUSH:
        return 1;
    case MQE2E_CONTROL_CHANNEL:
        return 3;
    default:
        return 0;
    }
}

void mqe2e__control_free_wiped(void *p, size_t len)
{
    if (p == NULL) return;
    sodium_memzero(p, len);
    free(p);
}

int mqe2e__control_copy_id(char *dst, const char *src, size_t max)
{
    if (src == NULL) return 0;
    size_t n = strnlen(src, max + 1);
    if (n == 0 || n > max) return 0;
    memcpy(dst, src, n);
    dst[n] = '\0';
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Frame codec                                                               */
/* ------------------------------------------------------------------------ */

static int frame_fields_ok(const mqe2e_control_frame *f)
{
    if (kind_name(f->kind) == NULL) return 0;
    if (f->step == 0 || f->step > mqe2e__control_max_step(f->kind)) return 0;
    if (memchr(f->from, '\0', sizeof f->from) == NULL || !mqe2e_client_id_valid(f->from)) return 0;
    return 1;
}

/* Bytes of everything before the noise bytes. */
static size_t frame_header_len(const mqe2e_control_frame *f, size_t noise_len)
{
    size_t from_len = strlen(f->from);
    return 2U + 1U + mqe2e__varint_len(f->kind) + 1U + mqe2e__varint_len(from_len) + from_len + 2U +
           MQE2E_CONTROL_SESSION_BYTES + 1U + mqe2e__varint_len(f->step) + 1U +
           mqe2e__varint_len(noise_len);
}

static size_t frame_header_put(uint8_t *out, const mqe2e_control_frame *f, size_t noise_len)
{
    size_t from_len = strlen(f->from);
    size_t n = 0;
    out[n++] = KEY_FORMAT;
    out[n++] = (uint8_t)MQE2E_CONTROL_FORMAT;
    out[n++] = KEY_KIND;
    n += mqe2e__varint_put(out + n, f->kind);
    out[n++] = KEY_FROM;
    n += mqe2e__varint_put(out + n, from_len);
    memcpy(out + n, f->from, from_len);
    n += from_len;
    out[n++] = KEY_SESSION;
    out[n++] = (uint8_t)MQE2E_CONTROL_SESSION_BYTES;
    memcpy(out + n, f->session, MQE2E_CONTROL_SESSION_BYTES);
    n += MQE2E_CONTROL_SESSION_BYTES;
    out[n++] = KEY_STEP;
    n += mqe2e__varint_put(out + n, f->step);
    out[n++] = KEY_NOISE;
    n += mqe2e__varint_put(out + n, noise_len);
    return n;
}

size_t mqe2e_control_frame_encoded_len(const mqe2e_control_frame *f)
{
    if (f == NULL || !frame_fields_ok(f) || f->noise_len == 0) return 0;
    size_t h = frame_header_len(f, f->noise_len);
    if (f->noise_len > SIZE_MAX - h) return 0;
    return h + f->noise_len;
}

int mqe2e_control_frame_encode(uint8_t *out, size_t out_cap, size_t *out_len,
                               const mqe2e_control_frame *f)
{
    if (out == NULL || out_len == NULL || f == NULL || f->noise == NULL || f->noise_len == 0 ||
        !frame_fields_ok(f))
        return MQE2E_ERR_INVALID_ARG;
    if (f->noise_len > MQE2E_CONTROL_MAX_FRAME_BYTES) return MQE2E_ERR_TOO_LARGE;
    size_t h = frame_header_len(f, f->noise_len);
    if (h + f->noise_len > MQE2E_CONTROL_MAX_FRAME_BYTES) return MQE2E_ERR_TOO_LARGE;
    if (out_cap < h + f->noise_len) return MQE2E_ERR_BUFFER_TOO_SMALL;
    frame_header_put(out, f, f->noise_len);
    memmove(out + h, f->noise, f->noise_len);
    *out_len = h + f->noise_len;
    return MQE2E_OK;
}

/* Read one expected key and a varint value; 0 on any mismatch. */
static int get_varint_field(uint64_t *v, uint8_t key, const uint8_t *in, size_t len, size_t *pos)
{
    if (*pos >= len || in[*pos] != key) return 0;
    (*pos)++;
    size_t n = mqe2e__varint_get(v, in + *pos, len - *pos);
    if (n == 0) return 0;
    *pos += n;
    return 1;
}

/* Read one expected key and a length-delimited value; 0 on any mismatch. */
static int get_bytes_field(const uint8_t **p, size_t *plen, uint8_t key, const uint8_t *in,
                           size_t len, size_t *pos)
{
    uint64_t l;
    if (!get_varint_field(&l, key, in, len, pos)) return 0;
    if (l > (uint64_t)(len - *pos)) return 0;
    *p = in + *pos;
    *plen = (size_t)l;
    *pos += (size_t)l;
    return 1;
}

int mqe2e_control_frame_decode(mqe2e_control_frame *f, const uint8_t *in, size_t len)
{
    mqe2e_control_frame v;
    uint64_t format, kind, step;
    const uint8_t *from, *session, *noise;
    size_t from_len, session_len, noise_len, pos = 0;

    if (f == NULL) return MQE2E_ERR_INVALID_ARG;
    memset(f, 0, sizeof *f);
    if (in == NULL && len != 0) return MQE2E_ERR_INVALID_ARG;
    if (len > MQE2E_CONTROL_MAX_FRAME_BYTES) return MQE2E_ERR_TOO_LARGE;
    memset(&v, 0, sizeof v);

    /* Canonical proto3 with every field non-zero: exactly this sequence. Zero
     * values are omitted by canonical writers, and each is invalid here, so a
     * missing key is a decode error too. */
    if (!get_varint_field(&format, KEY_FORMAT, in, len, &pos)) return MQE2E_ERR_DECODE;
    if (format != MQE2E_CONTROL_FORMAT) return format == 0 ? MQE2E_ERR_DECODE : MQE2E_ERR_SUITE;
    if (!get_varint_field(&kind, KEY_KIND, in, len, &pos) || kind == 0 || kind > UINT32_MAX)
        return MQE2E_ERR_DECODE;
    if (kind_name((uint32_t)kind) == NULL) return MQE2E_ERR_SUITE;
    if (!get_bytes_field(&from, &from_len, KEY_FROM, in, len, &pos) || from_len == 0 ||
        from_len > MQE2E_ID_MAX)
        return MQE2E_ERR_DECODE;
    if (!get_bytes_field(&session, &session_len, KEY_SESSION, in, len, &pos) ||
        session_len != MQE2E_CONTROL_SESSION_BYTES)
        return MQE2E_ERR_DECODE;
    if (!get_varint_field(&step, KEY_STEP, in, len, &pos) || step == 0 ||
        step > mqe2e__control_max_step((uint32_t)kind))
        return MQE2E_ERR_DECODE;
    if (!get_bytes_field(&noise, &noise_len, KEY_NOISE, in, len, &pos) || noise_len == 0 ||
        noise_len > MQE2E_NOISE_MAX_MESSAGE_BYTES || pos != len)
        return MQE2E_ERR_DECODE;

    if (memchr(from, '\0', from_len) != NULL) return MQE2E_ERR_DECODE;
    memcpy(v.from, from, from_len);
    v.from[from_len] = '\0';
    if (!mqe2e_client_id_valid(v.from)) return MQE2E_ERR_DECODE;
    v.kind = (uint32_t)kind;
    v.step = (uint32_t)step;
    memcpy(v.session, session, MQE2E_CONTROL_SESSION_BYTES);
    v.noise = noise;
    v.noise_len = noise_len;
    *f = v;
    return MQE2E_OK;
}

int mqe2e__control_frame_for(const mqe2e_control_frame *f, uint32_t kind, uint32_t step,
                             const uint8_t session[MQE2E_CONTROL_SESSION_BYTES], const char *from)
{
    return f->kind == kind && f->step == step &&
           sodium_memcmp(f->session, session, MQE2E_CONTROL_SESSION_BYTES) == 0 &&
           (from == NULL || strcmp(f->from, from) == 0);
}

/* ------------------------------------------------------------------------ */
/* Handshakes wrapped in frames                                              */
/* ------------------------------------------------------------------------ */

int mqe2e__control_handshake(mqe2e_noise_handshake **hs, uint32_t kind, int role,
                             const char *prefix, const uint8_t session[MQE2E_CONTROL_SESSION_BYTES])
{
    /* "mqe2e/v1/" (9) + longest kind name (7) + 0 + prefix + 0 + session */
    uint8_t prologue[9U + 7U + 1U + MQE2E_CONTROL_PREFIX_MAX + 1U + MQE2E_CONTROL_SESSION_BYTES];
    const char *name = kind_name(kind);
    size_t n = 0;

    *hs = NULL;
    if (name == NULL || !mqe2e_control_prefix_valid(prefix)) return MQE2E_ERR_INVALID_ARG;
    size_t name_len = strlen(name), prefix_len = strlen(prefix);
    memcpy(prologue, "mqe2e/v1/", 9);
    n = 9;
    memcpy(prologue + n, name, name_len);
    n += name_len;
    prologue[n++] = 0;
    memcpy(prologue + n, prefix, prefix_len);
    n += prefix_len;
    prologue[n++] = 0;
    memcpy(prologue + n, session, MQE2E_CONTROL_SESSION_BYTES);
    n += MQE2E_CONTROL_SESSION_BYTES;
    return mqe2e_noise_handshake_new(hs, mqe2e__control_protocol_name(kind), role, prologue, n);
}

int mqe2e__control_write(uint8_t *out, size_t out_cap, size_t *out_len, mqe2e_noise_handshake *hs,
                         uint32_t kind, const char *from,
                         const uint8_t session[MQE2E_CONTROL_SESSION_BYTES], uint32_t step,
                         const uint8_t *payload, size_t payload_len)
{
    mqe2e_control_frame f;
    size_t noise_len = 0, written = 0, h;
    int rc;

    if (out == NULL || out_len == NULL) return MQE2E_ERR_INVALID_ARG;
    memset(&f, 0, sizeof f);
    f.kind = kind;
    f.step = step;
    if (!mqe2e__control_copy_id(f.from, from, MQE2E_ID_MAX) || !frame_fields_ok(&f))
        return MQE2E_ERR_INVALID_ARG;
    memcpy(f.session, session, MQE2E_CONTROL_SESSION_BYTES);
    rc = mqe2e_noise_handshake_message_len(hs, payload_len, &noise_len);
    if (rc != MQE2E_OK) return rc;
    h = frame_header_len(&f, noise_len);
    if (h + noise_len > MQE2E_CONTROL_MAX_FRAME_BYTES) return MQE2E_ERR_TOO_LARGE;
    if (out_cap < h + noise_len) return MQE2E_ERR_BUFFER_TOO_SMALL;
    /* The Noise message is the last field: write it in place after the header. */
    rc = mqe2e_noise_write_message(hs, out + h, out_cap - h, &written, payload, payload_len);
    if (rc != MQE2E_OK) return rc;
    if (written != noise_len) return MQE2E_ERR_CRYPTO;
    frame_header_put(out, &f, noise_len);
    *out_len = h + noise_len;
    return MQE2E_OK;
}

int mqe2e__control_read(uint8_t **payload, size_t *payload_cap, size_t *payload_len,
                        mqe2e_noise_handshake *hs, const mqe2e_control_frame *f)
{
    size_t cap = f->noise_len;
    uint8_t *p = malloc(cap);
    int rc;

    *payload = NULL;
    *payload_cap = 0;
    *payload_len = 0;
    if (p == NULL) return MQE2E_ERR_NOMEM;
    rc = mqe2e_noise_read_message(hs, p, cap, payload_len, f->noise, f->noise_len);
    if (rc != MQE2E_OK) {
        mqe2e__control_free_wiped(p, cap);
        return rc;
    }
    *payload = p;
    *payload_cap = cap;
    return MQE2E_OK;
}

/* ------------------------------------------------------------------------ */
/* Update payloads: EnrollReply, HelloReply, Push                            */
/* ------------------------------------------------------------------------ */

static int bundle_in_ok(const mqe2e_key_bundle *b)
{
    size_t g = strnlen(b->group, sizeof b->group),
           t = strnlen(b->topic_filter, sizeof b->topic_filter);
    return g > 0 && g < sizeof b->group && t > 0 && t < sizeof b->topic_filter &&
           b->tree_path_len <= sizeof b->tree_path &&
           (b->tree_path_len == 0 || b->retired_at == 0) &&
           (b->tree_grace_seconds == 0 || b->tree_path_len > 0) &&
           b->tree_grace_seconds <= MQE2E_BUNDLE_TREE_GRACE_MAX;
}

static int group_name_ok(const mqe2e_group_name *g)
{
    size_t n = strnlen(g->name, sizeof g->name);
    return n > 0 && n < sizeof g->name;
}

/* Signer directories of an update, as protobuf messages pointing into it. */
typedef struct pb_dirs {
    Mqe2e__V1__GroupDirectory *d, **dp;
    Mqe2e__V1__GroupSigner *s, **sp;
    size_t n;
} pb_dirs;

static void pb_dirs_free(pb_dirs *p)
{
    free(p->d);
    free(p->dp);
    free(p->s);
    free(p->sp);
}

static int grants_valid(const mqe2e_signer_grants *g)
{
    if (g->n_pub_filters > MQE2E_CONTROL_MAX_PUB_FILTERS) return 0;
    if (g->n_pub_filters > 0 && g->pub_filters == NULL) return 0;
    for (size_t i = 0; i < g->n_pub_filters; i++)
        if (g->pub_filters[i] == NULL || strlen(g->pub_filters[i]) > MQE2E_BUNDLE_FILTER_MAX ||
            !mqe2e_topic_filter_valid(g->pub_filters[i]))
            return 0;
    return 1;
}

static int dirs_to_pb(pb_dirs *p, const mqe2e_control_update *u)
{
    size_t total = 0, k = 0;
    memset(p, 0, sizeof *p);
    if (u->n_directories == 0) return MQE2E_OK;
    if (u->n_directories > MQE2E_CONTROL_MAX_BUNDLES || u->directories == NULL)
        return MQE2E_ERR_INVALID_ARG;
    for (size_t i = 0; i < u->n_directories; i++) {
        const mqe2e_group_directory *d = &u->directories[i];
        size_t g = strnlen(d->group, sizeof d->group);
        if (g == 0 || g == sizeof d->group || (d->n_signers > 0 && d->signers == NULL) ||
            d->n_signers > MQE2E_CONTROL_MAX_SIGNERS - total ||
            (d->has_grants && d->n_signers > 0 && d->grants == NULL))
            return MQE2E_ERR_INVALID_ARG;
        for (size_t j = 0; d->has_grants && j < d->n_signers; j++)
            if (!grants_valid(&d->grants[j])) return MQE2E_ERR_INVALID_ARG;
        total += d->n_signers;
    }
    p->d = calloc(u->n_directories, sizeof *p->d);
    p->dp = calloc(u->n_directories, sizeof *p->dp);
    p->s = calloc(total + 1U, sizeof *p->s);
    p->sp = calloc(total + 1U, sizeof *p->sp);
    if (p->d == NULL || p->dp == NULL || p->s == NULL || p->sp == NULL) return MQE2E_ERR_NOMEM;
    for (size_t i = 0; i < u->n_directories; i++) {
        const mqe2e_group_directory *d = &u->directories[i];
        mqe2e__v1__group_directory__init(&p->d[i]);
        p->d[i].group = (char *)(uintptr_t)d->group;
        p->d[i].grants = d->has_grants ? 1 : 0;
        p->d[i].n_signers = d->n_signers;
        p->d[i].signers = &p->sp[k];
        for (size_t j = 0; j < d->n_signers; j++, k++) {
            const mqe2e_signer *s = &d->signers[j];
            size_t c = strnlen(s->client_id, sizeof s->client_id);
            if (s->sender_id == 0 || c == sizeof s->client_id) return MQE2E_ERR_INVALID_ARG;
            mqe2e__v1__group_signer__init(&p->s[k]);
            p->s[k].sender_id = s->sender_id;
            p->s[k].sign_public.data = (uint8_t *)(uintptr_t)s->sign_public;
            p->s[k].sign_public.len = sizeof s->sign_public;
            p->s[k].client_id = (char *)(uintptr_t)s->client_id;
            if (d->has_grants) {
                p->s[k].n_pub_filters = d->grants[j].n_pub_filters;
                p->s[k].pub_filters = d->grants[j].pub_filters;
            }
            p->sp[k] = &p->s[k];
        }
        p->dp[i] = &p->d[i];
    }
    p->n = u->n_directories;
    return MQE2E_OK;
}

/* Client ids end up in logs: printable ASCII only. */
static int printable_id(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20U || (unsigned char)*s > 0x7eU) return 0;
    return 1;
}

/* Copy received directories out; keys are checked for length here and as
 * Ed25519 points when applied. */
static int dirs_from_pb(mqe2e_control_update *u, Mqe2e__V1__GroupDirectory *const *d, size_t n)
{
    size_t total = 0;
    if (n == 0) return MQE2E_OK;
    if (n > MQE2E_CONTROL_MAX_BUNDLES) return MQE2E_ERR_DECODE;
    u->directories = calloc(n, sizeof *u->directories);
    if (u->directories == NULL) return MQE2E_ERR_NOMEM;
    u->n_directories = n;
    for (size_t i = 0; i < n; i++) {
        mqe2e_group_directory *o = &u->directories[i];
        if (d[i]->group == NULL ||
            !mqe2e__control_copy_id(o->group, d[i]->group, MQE2E_GROUP_ID_MAX_BYTES) ||
            d[i]->n_signers > MQE2E_CONTROL_MAX_SIGNERS - total)
            return MQE2E_ERR_DECODE;
        total += d[i]->n_signers;
        o->has_grants = d[i]->grants ? 1 : 0;
        if (d[i]->n_signers == 0) continue;
        o->signers = calloc(d[i]->n_signers, sizeof *o->signers);
        if (o->signers == NULL) return MQE2E_ERR_NOMEM;
        if (o->has_grants && (o->grants = calloc(d[i]->n_signers, sizeof *o->grants)) == NULL)
            return MQE2E_ERR_NOMEM;
        o->n_signers = d[i]->n_signers;
        for (size_t j = 0; j < d[i]->n_signers; j++) {
            const Mqe2e__V1__GroupSigner *s = d[i]->signers[j];
            mqe2e_signer *t = &o->signers[j];
            if (s->sender_id == 0 || s->sign_public.len != MQE2E_SIGN_PUBLIC_BYTES ||
                s->client_id == NULL || !printable_id(s->client_id) ||
                (s->client_id[0] != '\0' &&
                 !mqe2e__control_copy_id(t->client_id, s->client_id, MQE2E_CLIENT_ID_MAX_BYTES)))
                return MQE2E_ERR_DECODE;
            t->sender_id = s->sender_id;
            memcpy(t->sign_public, s->sign_public.data, MQE2E_SIGN_PUBLIC_BYTES);
            /* Filters only where the directory says it lists them. */
            if (s->n_pub_filters > 0 && !o->has_grants) return MQE2E_ERR_DECODE;
            if (!o->has_grants || s->n_pub_filters == 0) continue;
            if (s->n_pub_filters > MQE2E_CONTROL_MAX_PUB_FILTERS) return MQE2E_ERR_DECODE;
            mqe2e_signer_grants *gr = &o->grants[j];
            if ((gr->pub_filters = calloc(s->n_pub_filters, sizeof *gr->pub_filters)) == NULL)
                return MQE2E_ERR_NOMEM;
            for (size_t f = 0; f < s->n_pub_filters; f++) {
                const char *src = s->pub_filters[f];
                size_t len = src != NULL ? strlen(src) : 0;
                if (src == NULL || len > MQE2E_BUNDLE_FILTER_MAX || !mqe2e_topic_filter_valid(src))
                    return MQE2E_ERR_DECODE;
                if ((gr->pub_filters[f] = malloc(len + 1U)) == NULL) return MQE2E_ERR_NOMEM;
                memcpy(gr->pub_filters[f], src, len + 1U);
                gr->n_pub_filters = f + 1U;
            }
        }
    }
    return MQE2E_OK;
}

static void dirs_free(mqe2e_group_directory *d, size_t n)
{
    if (d == NULL) return;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; d[i].grants != NULL && j < d[i].n_signers; j++) {
            for (size_t f = 0; f < d[i].grants[j].n_pub_filters; f++)
                free(d[i].grants[j].pub_filters[f]);
            free(d[i].grants[j].pub_filters);
        }
        free(d[i].grants);
        free(d[i].signers);
    }
    free(d);
}

int mqe2e__control_pack_update(uint8_t **out, size_t *out_len, int which,
                               const mqe2e_control_update *u)
{
    Mqe2e__V1__EnrollReply er;
    Mqe2e__V1__HelloReply hr;
    Mqe2e__V1__Push pu;
    Mqe2e__V1__KeyBundle *kb = NULL, **kbp = NULL;
    char **removed = NULL;
    pb_dirs dirs;
    ProtobufCMessage *m;
    ProtobufCBinaryData cred = {0, NULL}, rl = {0, NULL};
    uint8_t *buf = NULL;
    size_t n, i;
    int rc = MQE2E_OK;

    mqe2e__v1__push__init(&pu);
    mqe2e__v1__hello_reply__init(&hr);
    mqe2e__v1__enroll_reply__init(&er);
    *out = NULL;
    *out_len = 0;
    if (u->n_bundles > MQE2E_CONTROL_MAX_BUNDLES || (u->n_bundles > 0 && u->bundles == NULL) ||
        u->n_removed_groups > MQE2E_CONTROL_MAX_BUNDLES ||
        (u->n_removed_groups > 0 && u->removed_groups == NULL) ||
        (u->credential_len > 0 && u->credential == NULL) ||
        u->credential_len > MQE2E_CREDENTIAL_MAX_BYTES ||
        (u->revocation_list_len > 0 && u->revocation_list == NULL) ||
        u->revocation_list_len > MQE2E_CONTROL_MAX_FRAME_BYTES)
        return MQE2E_ERR_INVALID_ARG;
    if (which == MQE2E__PAYLOAD_PUSH && u->push_seq == 0) return MQE2E_ERR_INVALID_ARG;

    rc = dirs_to_pb(&dirs, u);
    if (rc != MQE2E_OK) goto out;
    if (u->n_bundles > 0) {
        kb = calloc(u->n_bundles, sizeof *kb);
        kbp = calloc(u->n_bundles, sizeof *kbp);
        if (kb == NULL || kbp == NULL) {
            rc = MQE2E_ERR_NOMEM;
            goto out;
        }
    }
    for (i = 0; i < u->n_bundles; i++) {
        const mqe2e_key_bundle *b = &u->bundles[i];
        if (!bundle_in_ok(b)) {
            rc = MQE2E_ERR_INVALID_ARG;
            goto out;
        }
        mqe2e__v1__key_bundle__init(&kb[i]);
        /* protobuf-c only reads through these pointers while packing. */
        kb[i].group = (char *)(uintptr_t)b->group;
        kb[i].topic_filter = (char *)(uintptr_t)b->topic_filter;
        kb[i].epoch = b->epoch;
        kb[i].secret.data = (uint8_t *)(uintptr_t)b->secret;
        kb[i].secret.len = sizeof b->secret;
        kb[i].created_at = b->created_at;
        kb[i].sender_id = b->sender_id;
        kb[i].retired_at = b->retired_at;
        kb[i].grace_seconds = b->grace_seconds;
        if (b->tree_path_len > 0) {
            kb[i].tree_leaf_key.data = (uint8_t *)(uintptr_t)b->tree_leaf_key;
            kb[i].tree_leaf_key.len = sizeof b->tree_leaf_key;
            kb[i].tree_path.data = (uint8_t *)(uintptr_t)b->tree_path;
            kb[i].tree_path.len = b->tree_path_len;
            kb[i].tree_grace_seconds = b->tree_grace_seconds;
        }
        kbp[i] = &kb[i];
    }
    cred.data = u->credential;
    cred.len = u->credential_len;
    rl.data = u->revocation_list;
    rl.len = u->revocation_list_len;

    switch (which) {
    case MQE2E__PAYLOAD_ENROLL_REPLY:
        er.status = u->status;
        er.credential = cred;
        er.n_bundles = u->n_bundles;
        er.bundles = kbp;
        er.revocation_list = rl;
        er.n_directories = dirs.n;
        er.directories = dirs.dp;
        m = &er.base;
        break;
    case MQE2E__PAYLOAD_HELLO_REPLY:
        hr.status = u->status;
        hr.credential = cred;
        hr.n_bundles = u->n_bundles;
        hr.bundles = kbp;
        hr.revocation_list = rl;
        hr.push_seq = u->push_seq;
        hr.n_directories = dirs.n;
        hr.directories = dirs.dp;
        m = &hr.base;
        break;
    case MQE2E__PAYLOAD_PUSH:
        if (u->n_removed_groups > 0) {
            removed = calloc(u->n_removed_groups, sizeof *removed);
            if (removed == NULL) {
                rc = MQE2E_ERR_NOMEM;
                goto out;
            }
            for (i = 0; i < u->n_removed_groups; i++) {
                if (!group_name_ok(&u->removed_groups[i])) {
                    rc = MQE2E_ERR_INVALID_ARG;
                    goto out;
                }
                removed[i] = (char *)(uintptr_t)u->removed_groups[i].name;
            }
        }
        pu.push_seq = u->push_seq;
        pu.n_bundles = u->n_bundles;
        pu.bundles = kbp;
        pu.revocation_list = rl;
        pu.n_removed_groups = u->n_removed_groups;
        pu.removed_groups = removed;
        pu.n_directories = dirs.n;
        pu.directories = dirs.dp;
        m = &pu.base;
        break;
    default:
        rc = MQE2E_ERR_INVALID_ARG;
        goto out;
    }
    n = protobuf_c_message_get_packed_size(m);
    if (n > MQE2E_NOISE_MAX_PLAINTEXT_BYTES) {
        rc = MQE2E_ERR_TOO_LARGE;
        goto out;
    }
    /* One spare byte so an empty message still gets a non-NULL buffer. */
    buf = malloc(n + 1U);
    if (buf == NULL) {
        rc = MQE2E_ERR_NOMEM;
        goto out;
    }
    protobuf_c_message_pack(m, buf);
    *out = buf;
    *out_len = n;
out:
    if (kb != NULL) sodium_memzero(kb, u->n_bundles * sizeof *kb);
    free(kb);
    free(kbp);
    free(removed);
    pb_dirs_free(&dirs);
    return rc;
}

static int bundle_from_pb(mqe2e_key_bundle *b, const Mqe2e__V1__KeyBundle *k)
{
    if (k->secret.len != MQE2E_GROUP_SECRET_BYTES || k->group == NULL || k->topic_filter == NULL ||
        !mqe2e__control_copy_id(b->group, k->group, MQE2E_GROUP_ID_MAX_BYTES) ||
        !mqe2e__control_copy_id(b->topic_filter, k->topic_filter, MQE2E_BUNDLE_FILTER_MAX))
        return MQE2E_ERR_DECODE;
    b->epoch = k->epoch;
    memcpy(b->secret, k->secret.data, MQE2E_GROUP_SECRET_BYTES);
    b->created_at = k->created_at;
    b->sender_id = k->sender_id;
    b->retired_at = k->retired_at;
    b->grace_seconds = k->grace_seconds;
    /* A grace only means something for a retired epoch. */
    if (b->grace_seconds != 0 && b->retired_at == 0) return MQE2E_ERR_DECODE;
    /* Tree fields: both or neither, on a current epoch only (the TreePath's
     * own layout is checked by the keytree module when it is used). */
    if (k->tree_leaf_key.len != 0 || k->tree_path.len != 0) {
        if (k->tree_leaf_key.len != MQE2E_BUNDLE_TREE_KEY_BYTES || k->tree_path.len == 0 ||
            k->tree_path.len > MQE2E_BUNDLE_TREE_PATH_MAX || b->retired_at != 0)
            return MQE2E_ERR_DECODE;
        memcpy(b->tree_leaf_key, k->tree_leaf_key.data, MQE2E_BUNDLE_TREE_KEY_BYTES);
        memcpy(b->tree_path, k->tree_path.data, k->tree_path.len);
        b->tree_path_len = (uint32_t)k->tree_path.len;
    }
    /* The removal grace of a tree group: with the tree fields only, bounded. */
    if (k->tree_grace_seconds != 0 &&
        (b->tree_path_len == 0 || k->tree_grace_seconds > MQE2E_BUNDLE_TREE_GRACE_MAX))
        return MQE2E_ERR_DECODE;
    b->tree_grace_seconds = k->tree_grace_seconds;
    return MQE2E_OK;
}

static int copy_blob(uint8_t **dst, size_t *dst_len, const ProtobufCBinaryData *src, size_t max)
{
    *dst = NULL;
    *dst_len = 0;
    if (src->len == 0) return MQE2E_OK;
    if (src->len > max) return MQE2E_ERR_DECODE;
    *dst = malloc(src->len);
    if (*dst == NULL) return MQE2E_ERR_NOMEM;
    memcpy(*dst, src->data, src->len);
    *dst_len = src->len;
    return MQE2E_OK;
}

int mqe2e__control_unpack_update(mqe2e_control_update *u, int which, const uint8_t *in, size_t len)
{
    const ProtobufCMessageDescriptor *d;
    ProtobufCMessage *m = NULL;
    Mqe2e__V1__KeyBundle **kb = NULL;
    Mqe2e__V1__GroupDirectory **dir = NULL;
    size_t n_kb = 0, n_dir = 0, i;
    const ProtobufCBinaryData *cred = NULL, *rl = NULL;
    int rc = MQE2E_ERR_DECODE;

    memset(u, 0, sizeof *u);
    switch (which) {
    case MQE2E__PAYLOAD_ENROLL_REPLY:
        d = &mqe2e__v1__enroll_reply__descriptor;
        break;
    case MQE2E__PAYLOAD_HELLO_REPLY:
        d = &mqe2e__v1__hello_reply__descriptor;
        break;
    case MQE2E__PAYLOAD_PUSH:
        d = &mqe2e__v1__push__descriptor;
        break;
    default:
        return MQE2E_ERR_INVALID_ARG;
    }
    /* Bundles carry group secrets: every block protobuf-c frees is wiped. */
    m = protobuf_c_message_unpack(d, &mqe2e__cred_allocator, len, in);
    if (m == NULL || !mqe2e__cred_canonical(m, in, len)) goto out;

    if (which == MQE2E__PAYLOAD_ENROLL_REPLY) {
        Mqe2e__V1__EnrollReply *r = (Mqe2e__V1__EnrollReply *)m;
        u->status = r->status;
        cred = &r->credential;
        kb = r->bundles;
        n_kb = r->n_bundles;
        rl = &r->revocation_list;
        dir = r->directories;
        n_dir = r->n_directories;
    } else if (which == MQE2E__PAYLOAD_HELLO_REPLY) {
        Mqe2e__V1__HelloReply *r = (Mqe2e__V1__HelloReply *)m;
        u->status = r->status;
        u->push_seq = r->push_seq;
        cred = &r->credential;
        kb = r->bundles;
        n_kb = r->n_bundles;
        rl = &r->revocation_list;
        dir = r->directories;
        n_dir = r->n_directories;
    } else {
        Mqe2e__V1__Push *p = (Mqe2e__V1__Push *)m;
        u->push_seq = p->push_seq;
        kb = p->bundles;
        n_kb = p->n_bundles;
        rl = &p->revocation_list;
        dir = p->directories;
        n_dir = p->n_directories;
        if (p->n_removed_groups > MQE2E_CONTROL_MAX_BUNDLES) goto out;
        if (p->n_removed_groups > 0) {
            u->removed_groups = calloc(p->n_removed_groups, sizeof *u->removed_groups);
            if (u->removed_groups == NULL) {
                rc = MQE2E_ERR_NOMEM;
                goto out;
            }
            u->n_removed_groups = p->n_removed_groups;
            for (i = 0; i < p->n_removed_groups; i++) {
                if (!mqe2e__control_copy_id(u->removed_groups[i].name, p->removed_groups[i],
                                            MQE2E_GROUP_ID_MAX_BYTES))
                    goto out;
            }
        }
    }
    if (n_kb > MQE2E_CONTROL_MAX_BUNDLES) goto out;
    if (n_kb > 0) {
        u->bundles = calloc(n_kb, sizeof *u->bundles);
        if (u->bundles == NULL) {
            rc = MQE2E_ERR_NOMEM;
            goto out;
        }
        u->n_bundles = n_kb;
        for (i = 0; i < n_kb; i++) {
            if (bundle_from_pb(&u->bundles[i], kb[i]) != MQE2E_OK) goto out;
        }
    }
    rc = dirs_from_pb(u, dir, n_dir);
    if (rc != MQE2E_OK) goto out;
    if (cred != NULL) {
        rc = copy_blob(&u->credential, &u->credential_len, cred, MQE2E_CREDENTIAL_MAX_BYTES);
        if (rc != MQE2E_OK) goto out;
    }
    rc = copy_blob(&u->revocation_list, &u->revocation_list_len, rl, MQE2E_CONTROL_MAX_FRAME_BYTES);
out:
    if (m != NULL) protobuf_c_message_free_unpacked(m, &mqe2e__cred_allocator);
    if (rc != MQE2E_OK) mqe2e_control_update_wipe(u);
    return rc;
}

void mqe2e_control_update_wipe(mqe2e_control_update *u)
{
    if (u == NULL) return;
    mqe2e__control_free_wiped(u->bundles, u->n_bundles * sizeof *u->bundles);
    mqe2e__control_free_wiped(u->credential, u->credential_len);
    mqe2e__control_free_wiped(u->revocation_list, u->revocation_list_len);
    mqe2e__control_free_wiped(u->removed_groups, u->n_removed_groups * sizeof *u->removed_groups);
    dirs_free(u->directories, u->n_directories);
    sodium_memzero(u, sizeof *u);
}
