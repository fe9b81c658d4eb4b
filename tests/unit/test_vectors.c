/* The shared vectors of tests/vectors/ (README there) checked against the core:
 * key schedule, envelopes of the three modes, negative envelopes, and control
 * frames read by their receivers. python/tests/test_vectors.py reads the same
 * files through the Python binding. */
#include <criterion/criterion.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "internal_control.h"
#include "internal_envelope_codec.h"
#include "internal_envelope_ext.h"
#include "mqe2e/control.h"
#include "mqe2e/credential.h"
#include "mqe2e/envelope.h"
#include "mqe2e/error.h"
#include "mqe2e/hkdf.h"
#include "mqe2e/noise.h"
#include "testutil.h"

static uint8_t *hexf(const cJSON *v, const char *name, size_t *len)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(v, name);
    size_t dummy;
    cr_assert(cJSON_IsString(f), "vector lacks %s", name);
    uint8_t *b = tu_hex_decode(f->valuestring, len != NULL ? len : &dummy);
    cr_assert_not_null(b, "bad hex in %s", name);
    return b;
}

static const char *strf(const cJSON *v, const char *name)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(v, name);
    cr_assert(cJSON_IsString(f), "vector lacks %s", name);
    return f->valuestring;
}

static uint64_t numf(const cJSON *v, const char *name)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(v, name);
    cr_assert(cJSON_IsNumber(f), "vector lacks %s", name);
    return (uint64_t)f->valuedouble;
}

static void expect_hex(const cJSON *v, const char *name, const uint8_t *got, size_t n)
{
    size_t len;
    uint8_t *exp = hexf(v, name, &len);
    cr_assert_eq(len, n, "%s: length %zu, expected %zu", name, n, len);
    cr_assert_eq(memcmp(exp, got, n), 0, "%s differs (%s)", name, strf(v, "note"));
    free(exp);
}

static uint64_t u48(const uint8_t b[6])
{
    uint64_t x = 0;
    for (int i = 0; i < 6; i++)
        x = (x << 8) | b[i];
    return x;
}

static cJSON *load(const char *name)
{
    cr_assert_eq(mqe2e_init(), MQE2E_OK);
    cJSON *root = tu_load_vectors(name);
    cr_assert_not_null(root, "cannot load %s", name);
    return root;
}

Test(vectors, key_schedule)
{
    cJSON *root = load("key-schedule-v1.json");
    const cJSON *v;
    int n = 0;
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(root, "sender_keys"))
    {
        uint8_t *secret = hexf(v, "group_secret", NULL);
        uint8_t prk[MQE2E_HKDF_PRK_BYTES];
        mqe2e_sender_key k;
        cr_assert_eq(mqe2e_hkdf_extract(prk, (const uint8_t *)"mqe2e/v1/group", 14, secret, 32),
                     MQE2E_OK);
        expect_hex(v, "prk", prk, sizeof prk);
        cr_assert_eq(mqe2e_sender_key_derive(&k, secret, strf(v, "group_id"),
                                             (uint32_t)numf(v, "epoch"),
                                             (uint32_t)numf(v, "sender_id")),
                     MQE2E_OK);
        expect_hex(v, "key", k.key, sizeof k.key);
        expect_hex(v, "iv", k.iv, sizeof k.iv);
        mqe2e_sender_key_wipe(&k);
        free(secret);
        n++;
    }
    cr_assert_eq(n, 3);

    uint8_t *k0 = hexf(root, "channel_k0", NULL), k[32];
    mqe2e_noise_cipher *cs = NULL;
    cr_assert_eq(mqe2e_noise_cipher_new(&cs, k0), MQE2E_OK);
    n = 0;
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(root, "channel_generations"))
    {
        cr_assert_eq(numf(v, "generation"), (uint64_t)++n);
        cr_assert_eq(mqe2e_noise_cipher_rekey(cs), MQE2E_OK);
        cr_assert_eq(mqe2e_noise_cipher_export_key(cs, k), MQE2E_OK);
        uint8_t *want = hexf(v, "key", NULL);
        cr_assert_eq(memcmp(k, want, 32), 0, "generation %d", n);
        free(want);
    }
    cr_assert_eq(n, 3);
    mqe2e_noise_cipher_free(cs);
    free(k0);
    cJSON_Delete(root);
}

/* Open one group or signed vector with the core; returns the error code. */
static int open_vector(const cJSON *v, const char *topic, const uint8_t *env, size_t env_len,
                       uint8_t *pt, size_t *pt_len)
{
    uint8_t *secret = hexf(v, "group_secret", NULL);
    const char *group = strf(v, "group_id");
    mqe2e_envelope_view view;
    mqe2e_sender_key k;
    int rc = mqe2e_envelope_parse(&view, env, env_len);
    if (rc != MQE2E_OK) goto out;
    rc = mqe2e_sender_key_derive(&k, secret, group, view.header.epoch, view.header.sender_id);
    cr_assert_eq(rc, MQE2E_OK);
    if (view.header.mode == MQE2E_MODE_SIGNED_GROUP) {
        uint8_t *pk = hexf(v, "signer_public", NULL);
        rc = mqe2e_envelope_open_signed(pt, 1024, pt_len, &k, pk, topic, group, &view);
        free(pk);
    } else {
        rc = mqe2e_envelope_open(pt, 1024, pt_len, &k, topic, group, &view);
    }
    mqe2e_sender_key_wipe(&k);
out:
    free(secret);
    return rc;
}

/* ---- bound properties: an encoder written from PROTOCOL.md 2.5.1 alone ---- */

typedef struct sbuf {
    uint8_t b[4096];
    size_t n;
} sbuf;

static void sput(sbuf *o, const void *p, size_t n)
{
    cr_assert_leq(o->n + n, sizeof o->b);
    if (n > 0) memcpy(o->b + o->n, p, n);
    o->n += n;
}

static void sput_be(sbuf *o, uint32_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--) {
        uint8_t c = (uint8_t)(v >> (8 * i));
        sput(o, &c, 1);
    }
}

/* Values of property @p id (and user name @p name) in @p props, in order. */
static void put_item(sbuf *o, const cJSON *props, unsigned id, const uint8_t *name,
                     size_t name_len)
{
    sbuf vals = {.n = 0};
    uint32_t count = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, props)
    {
        if (numf(p, "id") != id) continue;
        size_t nl = 0, vl = 0;
        uint8_t *pn = id == 0x26U ? hexf(p, "name", &nl) : NULL;
        uint8_t *pv = hexf(p, "value", &vl);
        if (id != 0x26U || (nl == name_len && memcmp(pn, name, nl) == 0)) {
            sput_be(&vals, (uint32_t)vl, 2);
            sput(&vals, pv, vl);
            count++;
        }
        free(pn);
        free(pv);
    }
    sput_be(o, id, 1);
    if (id == 0x26U) {
        sput_be(o, (uint32_t)name_len, 2);
        sput(o, name, name_len);
    }
    sput_be(o, count, 4);
    sput(o, vals.b, vals.n);
}

static int name_order(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    return strcmp(x, y); /* the vectors' names are ASCII without NUL: bytewise, prefix first */
}

static void spec_suffix(sbuf *out, const char *bind, const cJSON *props, int retain)
{
    static const struct {
        const char *item;
        unsigned id;
    } fixed[] = {{"payload-format", 0x01}, {"content-type", 0x03}, {"response-topic", 0x08},
                 {"correlation-data", 0x09}};
    char list[256];
    const char *users[16];
    size_t nusers = 0;
    int bind_retain = 0, bound[4] = {0, 0, 0, 0};
    sbuf pl = {.n = 0};

    cr_assert_lt(strlen(bind), sizeof list);
    strcpy(list, bind);
    for (char *it = strtok(list, ","); it != NULL; it = strtok(NULL, ",")) {
        if (strcmp(it, "retain") == 0) bind_retain = 1;
        if (strncmp(it, "user:", 5) == 0 && nusers < 16) users[nusers++] = it + 5;
        for (int i = 0; i < 4; i++)
            if (strcmp(it, fixed[i].item) == 0) bound[i] = 1;
    }
    qsort(users, nusers, sizeof users[0], name_order);
    for (int i = 0; i < 4; i++)
        if (bound[i]) put_item(&pl, props, fixed[i].id, NULL, 0);
    for (size_t u = 0; u < nusers; u++)
        put_item(&pl, props, 0x26U, (const uint8_t *)users[u], strlen(users[u]));
    if (bind_retain) {
        sput_be(&pl, 0xFF, 1);
        sput_be(&pl, 1, 4);
        sput_be(&pl, 1, 2);
        sput_be(&pl, retain ? 1U : 0U, 1);
    }
    out->n = 0;
    sput_be(out, 0xB1, 1);
    sput_be(out, (uint32_t)pl.n, 4);
    sput(out, pl.b, pl.n);
}

/* Open a bound vector as received with @p props and @p retain, following
 * the receiver's retain rule (retain 0: try 0, then 1). */
static int open_bound_as(const cJSON *v, const cJSON *props, int retain)
{
    uint8_t *secret = hexf(v, "group_secret", NULL);
    size_t env_len, pt_len;
    uint8_t *env = hexf(v, "envelope", &env_len);
    const char *group = strf(v, "group_id"), *topic = strf(v, "topic");
    const int binds_retain = strstr(strf(v, "bind"), "retain") != NULL;
    mqe2e_envelope_view view;
    mqe2e_sender_key k;
    uint8_t pt[1024];
    sbuf suf;
    int rc = MQE2E_ERR_AUTH;

    cr_assert_eq(mqe2e_envelope_parse(&view, env, env_len), MQE2E_OK);
    cr_assert_eq(mqe2e_sender_key_derive(&k, secret, group, view.header.epoch,
                                         view.header.sender_id),
                 MQE2E_OK);
    for (int t = 0; t < (binds_retain && !retain ? 2 : 1) && rc == MQE2E_ERR_AUTH; t++) {
        spec_suffix(&suf, strf(v, "bind"), props, t == 0 ? retain : 1);
        mqe2e__ad_ext ext = {suf.b, suf.n};
        if (view.header.mode == MQE2E_MODE_SIGNED_GROUP) {
            uint8_t *pk = hexf(v, "signer_public", NULL);
            rc = mqe2e__envelope_open_signed_ext(pt, sizeof pt, &pt_len, &k, pk, topic, group,
                                                 &view, &ext);
            free(pk);
        } else {
            rc = mqe2e__envelope_open_ext(pt, sizeof pt, &pt_len, &k, topic, group, &view, &ext);
        }
    }
    if (rc == MQE2E_OK) expect_hex(v, "plaintext", pt, pt_len);
    mqe2e_sender_key_wipe(&k);
    free(secret);
    free(env);
    return rc;
}

Test(vectors, bound_envelopes)
{
    cJSON *root = load("envelope-v1.json");
    const cJSON *v, *o;
    int n = 0, refused = 0, accepted = 0;
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(root, "bound_envelopes"))
    {
        const cJSON *props = cJSON_GetObjectItemCaseSensitive(v, "properties");
        const int retain = (int)numf(v, "retain");
        sbuf suf;
        /* The suffix from the spec's rules matches the file byte for byte. */
        spec_suffix(&suf, strf(v, "bind"), props, retain);
        expect_hex(v, "ad_suffix", suf.b, suf.n);
        cr_assert_eq(open_bound_as(v, props, retain), MQE2E_OK, "%s", strf(v, "note"));
        /* Without the suffix (a receiver that binds nothing) it fails. */
        size_t env_len, pt_len;
        uint8_t *env = hexf(v, "envelope", &env_len);
        uint8_t pt[1024];
        cr_assert_neq(open_vector(v, strf(v, "topic"), env, env_len, pt, &pt_len), MQE2E_OK);
        free(env);
        cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(v, "refused"))
        {
            cr_assert_eq(open_bound_as(v, cJSON_GetObjectItemCaseSensitive(o, "properties"),
                                       (int)numf(o, "retain")),
                         MQE2E_ERR_AUTH, "%s: %s", strf(v, "note"), strf(o, "note"));
            refused++;
        }
        cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(v, "accepted"))
        {
            cr_assert_eq(open_bound_as(v, cJSON_GetObjectItemCaseSensitive(o, "properties"),
                                       (int)numf(o, "retain")),
                         MQE2E_OK, "%s: %s", strf(v, "note"), strf(o, "note"));
            accepted++;
        }
        n++;
    }
    cr_assert_eq(n, 3);
    cr_assert_eq(refused, 5);
    cr_assert_eq(accepted, 2);
    cJSON_Delete(root);
}

static int sign_with(void *ctx, uint8_t sig[64], const uint8_t *msg, size_t len)
{
    (void)ctx;
    (void)sig;
    (void)msg;
    (void)len;
    return MQE2E_ERR_CRYPTO; /* the vectors' signing key is not published */
}

Test(vectors, envelopes)
{
    cJSON *root = load("envelope-v1.json");
    const cJSON *v;
    int n = 0;
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(root, "envelopes"))
    {
        size_t env_len, pt_len = 0, exp_len;
        uint8_t *env = hexf(v, "envelope", &env_len);
        uint8_t *exp_pt = hexf(v, "plaintext", &exp_len);
        uint8_t *inst = hexf(v, "instance", NULL);
        uint8_t pt[1024], nonce[12];
        mqe2e_envelope_view view;
        mqe2e_sender_key k;
        const char *mode = strf(v, "mode");

        cr_assert_eq(mqe2e_envelope_parse(&view, env, env_len), MQE2E_OK);
        cr_assert_eq(view.header.mode,
                     strcmp(mode, "signed") == 0 ? MQE2E_MODE_SIGNED_GROUP : MQE2E_MODE_GROUP);
        cr_assert_eq(view.header.epoch, numf(v, "epoch"));
        cr_assert_eq(view.header.sender_id, numf(v, "sender_id"));
        cr_assert_eq(view.header.seq, numf(v, "seq"));
        cr_assert_eq(view.header.instance, u48(inst));
        uint8_t *secret = hexf(v, "group_secret", NULL);
        cr_assert_eq(mqe2e_sender_key_derive(&k, secret, strf(v, "group_id"), view.header.epoch,
                                             view.header.sender_id),
                     MQE2E_OK);
        expect_hex(v, "key", k.key, 32);
        expect_hex(v, "iv", k.iv, 12);
        mqe2e__envelope_nonce(nonce, k.iv, view.header.instance, view.header.seq);
        expect_hex(v, "nonce", nonce, 12);

        cr_assert_eq(open_vector(v, strf(v, "topic"), env, env_len, pt, &pt_len), MQE2E_OK, "%s",
                     strf(v, "note"));
        cr_assert_eq(pt_len, exp_len);
        cr_assert_eq(memcmp(pt, exp_pt, pt_len), 0);

        /* Group mode is deterministic: sealing the inputs gives the same bytes. */
        uint8_t again[1024];
        size_t again_len = 0;
        if (view.header.mode == MQE2E_MODE_GROUP) {
            cr_assert_eq(mqe2e_envelope_seal(again, sizeof again, &again_len, &k, strf(v, "topic"),
                                             strf(v, "group_id"), &view.header, exp_pt, exp_len),
                         MQE2E_OK);
            cr_assert_eq(again_len, env_len);
            cr_assert_eq(memcmp(again, env, env_len), 0, "re-seal differs: %s", strf(v, "note"));
        } else {
            /* The signer key is not in the file: a seal must get it from its callback. */
            cr_assert_eq(mqe2e_envelope_seal_signed(again, sizeof again, &again_len, &k,
                                                    strf(v, "topic"), strf(v, "group_id"),
                                                    &view.header, exp_pt, exp_len, sign_with, NULL),
                         MQE2E_ERR_CRYPTO);
        }
        mqe2e_sender_key_wipe(&k);
        free(secret);
        free(env);
        free(exp_pt);
        free(inst);
        n++;
    }
    cr_assert_eq(n, 3);
    cJSON_Delete(root);
}

Test(vectors, bad_envelopes)
{
    cJSON *root = load("envelope-v1.json");
    const cJSON *envs = cJSON_GetObjectItemCaseSensitive(root, "envelopes");
    const cJSON *b;
    int n = 0;
    cJSON_ArrayForEach(b, cJSON_GetObjectItemCaseSensitive(root, "bad_envelopes"))
    {
        const char *of = strf(b, "of");
        const cJSON *v;
        const cJSON *topic = cJSON_GetObjectItemCaseSensitive(b, "topic");
        size_t len, pt_len = 0;
        uint8_t pt[1024];
        uint8_t *env = hexf(b, "envelope", &len);
        cr_assert_eq(strncmp(of, "group:", 6), 0);
        v = cJSON_GetArrayItem(envs, atoi(of + 6));
        cr_assert_not_null(v);
        memset(pt, 0x5a, sizeof pt);
        int rc = open_vector(v, cJSON_IsString(topic) ? topic->valuestring : strf(v, "topic"), env,
                             len, pt, &pt_len);
        cr_assert_str_eq(mqe2e_error_name(rc), strf(b, "error"), "%s", strf(b, "note"));
        for (size_t i = 0; i < len; i++)
            cr_assert(pt[i] == 0x5a || pt[i] == 0, "plaintext leaked: %s", strf(b, "note"));
        free(env);
        n++;
    }
    cr_assert_geq(n, 8);
    cJSON_Delete(root);
}

/* The channel AD as docs/PROTOCOL.md 8.7 states it, written out here
 * independently of the core; @p out holds at least 37 + @p tl bytes. */
static size_t spec_channel_ad(uint8_t *out, const char *topic, size_t tl, const uint8_t session[16],
                              const mqe2e_envelope_header *hd)
{
    size_t r = 0;
    out[r++] = 1;
    out[r++] = 2;
    out[r++] = 1;
    out[r++] = (uint8_t)(tl >> 8);
    out[r++] = (uint8_t)tl;
    memcpy(out + r, topic, tl);
    r += tl;
    memcpy(out + r, session, 16);
    r += 16;
    for (int i = 3; i >= 0; i--)
        out[r++] = (uint8_t)(hd->epoch >> (8 * i));
    for (int i = 3; i >= 0; i--)
        out[r++] = (uint8_t)(hd->sender_id >> (8 * i));
    for (int i = 7; i >= 0; i--)
        out[r++] = (uint8_t)(hd->seq >> (8 * i));
    return r;
}

Test(vectors, channel_envelopes)
{
    cJSON *root = load("envelope-v1.json");
    const cJSON *v;
    int n = 0;
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(root, "channel_envelopes"))
    {
        size_t env_len, ad_len, exp_len, pt_len = 0;
        uint8_t *env = hexf(v, "envelope", &env_len);
        uint8_t *ad = hexf(v, "ad", &ad_len);
        uint8_t *exp_pt = hexf(v, "plaintext", &exp_len);
        uint8_t *k0 = hexf(v, "channel_k0", NULL);
        uint8_t *session = hexf(v, "session", NULL);
        const char *topic = strf(v, "topic");
        uint8_t pt[1024], key[32], rebuilt[512];
        size_t tl = strlen(topic), r = 0;
        mqe2e_envelope_view view;
        mqe2e_noise_cipher *cs = NULL;

        /* The group decoder refuses a channel body; the channel decoder reads it. */
        cr_assert_eq(mqe2e_envelope_parse(&view, env, env_len), MQE2E_ERR_SUITE);
        cr_assert_eq(mqe2e__envelope_decode_channel(&view, env, env_len), MQE2E_OK);
        cr_assert_eq(view.header.mode, MQE2E_MODE_CHANNEL);
        cr_assert_eq(view.header.epoch, numf(v, "generation"));
        cr_assert_eq(view.header.sender_id, numf(v, "direction"));
        cr_assert_eq(view.header.seq, numf(v, "seq"));

        cr_assert_eq(mqe2e_noise_cipher_new(&cs, k0), MQE2E_OK);
        for (uint32_t g = 0; g < view.header.epoch; g++)
            cr_assert_eq(mqe2e_noise_cipher_rekey(cs), MQE2E_OK);
        cr_assert_eq(mqe2e_noise_cipher_export_key(cs, key), MQE2E_OK);
        expect_hex(v, "key", key, 32);

        r = spec_channel_ad(rebuilt, topic, tl, session, &view.header);
        cr_assert_eq(r, ad_len);
        cr_assert_eq(memcmp(rebuilt, ad, r), 0);

        cr_assert_eq(mqe2e_noise_cipher_decrypt_n(cs, view.header.seq, pt, sizeof pt, &pt_len, ad,
                                                  ad_len, view.ciphertext, view.ciphertext_len),
                     MQE2E_OK);
        cr_assert_eq(pt_len, exp_len);
        cr_assert_eq(memcmp(pt, exp_pt, pt_len), 0);
        /* Another seq (nonce) or another AD byte fails. */
        cr_assert_eq(mqe2e_noise_cipher_decrypt_n(cs, view.header.seq + 1, pt, sizeof pt, &pt_len,
                                                  ad, ad_len, view.ciphertext, view.ciphertext_len),
                     MQE2E_ERR_AUTH);
        ad[5] ^= 1;
        cr_assert_eq(mqe2e_noise_cipher_decrypt_n(cs, view.header.seq, pt, sizeof pt, &pt_len, ad,
                                                  ad_len, view.ciphertext, view.ciphertext_len),
                     MQE2E_ERR_AUTH);
        mqe2e_noise_cipher_free(cs);
        free(env);
        free(ad);
        free(exp_pt);
        free(k0);
        free(session);
        n++;
    }
    cr_assert_eq(n, 2);
    cJSON_Delete(root);
}

Test(vectors, ticket)
{
    cJSON *root = load("control-v1.json");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "ticket");
    mqe2e_ticket d;
    cr_assert_eq(mqe2e_ticket_decode(&d, strf(t, "text")), MQE2E_OK);
    expect_hex(t, "authority_sign_public", d.authority_sign_public, 32);
    expect_hex(t, "authority_dh_public", d.authority_dh_public, 32);
    expect_hex(t, "token_id", d.token_id, 16);
    expect_hex(t, "token", d.token, 32);
    cr_assert_str_eq(d.authority_id, strf(t, "authority_id"));
    cr_assert_str_eq(d.control_prefix, strf(t, "control_prefix"));
    cr_assert_str_eq(d.client_id, strf(t, "client_id"));
    cr_assert_eq(d.expires_at, numf(t, "expires_at"));
    mqe2e_ticket_wipe(&d);
    cJSON_Delete(root);
}

static void check_frame(const cJSON *o, const uint8_t *frame, size_t len)
{
    mqe2e_control_frame f;
    cr_assert_eq(mqe2e_control_frame_decode(&f, frame, len), MQE2E_OK);
    cr_assert_eq(f.kind, numf(o, "kind"));
    cr_assert_eq(f.step, numf(o, "step"));
    cr_assert_str_eq(f.from, strf(o, "from"));
}

Test(vectors, enroll_step1)
{
    cJSON *root = load("control-v1.json");
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "enroll_step1");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "ticket");
    size_t len;
    uint8_t *frame = hexf(o, "frame", &len);
    uint8_t *auth_sk = hexf(root, "authority_dh_secret", NULL);
    uint8_t *token = hexf(t, "token", NULL);
    mqe2e_enroll_authority *st = NULL;
    mqe2e_enroll_request req;

    check_frame(o, frame, len);
    cr_assert_eq(mqe2e_enroll_accept_read(&st, &req, auth_sk, "mqe2e", frame, len), MQE2E_OK);
    cr_assert_str_eq(req.client_id, strf(t, "client_id"));
    expect_hex(t, "token_id", req.token_id, 16);
    expect_hex(root, "device_dh_public", req.dh_public, 32);
    expect_hex(root, "device_sign_public", req.sign_public, 32);
    token[0] ^= 1; /* a wrong token fails the MAC: nobody who saw only the id burns it */
    cr_assert_eq(mqe2e_enroll_accept_verify_mac(st, token), MQE2E_ERR_AUTH);
    mqe2e_enroll_authority_free(st);
    st = NULL;
    token[0] ^= 1;
    cr_assert_eq(mqe2e_enroll_accept_read(&st, &req, auth_sk, "mqe2e", frame, len), MQE2E_OK);
    cr_assert_eq(mqe2e_enroll_accept_verify_mac(st, token), MQE2E_OK);
    mqe2e_enroll_authority_free(st);
    st = NULL;
    /* Another prefix is another prologue. */
    cr_assert_eq(mqe2e_enroll_accept_read(&st, &req, auth_sk, "other", frame, len), MQE2E_ERR_AUTH);
    free(frame);
    free(auth_sk);
    sodium_memzero(token, 32);
    free(token);
    cJSON_Delete(root);
}

Test(vectors, hello_step1)
{
    cJSON *root = load("control-v1.json");
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "hello_step1");
    size_t len;
    uint8_t *frame = hexf(o, "frame", &len);
    uint8_t *auth_sk = hexf(root, "authority_dh_secret", NULL);
    uint8_t *dev_pk = hexf(root, "device_dh_public", NULL);
    mqe2e_hello_authority *st = NULL;
    mqe2e_hello_request req;

    check_frame(o, frame, len);
    cr_assert_eq(mqe2e_hello_accept_read(&st, &req, auth_sk, "mqe2e", frame, len), MQE2E_OK);
    cr_assert_str_eq(req.client_id, strf(o, "from"));
    cr_assert_eq(req.credential_serial, numf(o, "credential_serial"));
    cr_assert_eq(memcmp(req.dh_public, dev_pk, 32), 0);
    cr_assert_eq(mqe2e_hello_accept_check_static(st, dev_pk), MQE2E_OK);
    mqe2e_hello_authority_free(st);
    st = NULL;
    auth_sk[5] ^= 1; /* another authority key cannot read it (byte 0 bits 0-2 are clamped) */
    int rc = mqe2e_hello_accept_read(&st, &req, auth_sk, "mqe2e", frame, len);
    cr_assert_eq(rc, MQE2E_ERR_AUTH, "got %s", mqe2e_error_name(rc));
    free(frame);
    free(auth_sk);
    free(dev_pk);
    cJSON_Delete(root);
}

Test(vectors, push)
{
    cJSON *root = load("control-v1.json");
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "push");
    const cJSON *b;
    size_t len, i = 0;
    uint8_t *frame = hexf(o, "frame", &len);
    uint8_t *dev_sk = hexf(root, "device_dh_secret", NULL);
    uint8_t *auth_pk = hexf(root, "authority_dh_public", NULL);
    const char *aid = strf(root, "authority_id");
    mqe2e_control_update u;

    check_frame(o, frame, len);
    cr_assert_eq(mqe2e_push_open(&u, dev_sk, auth_pk, "mqe2e", aid, frame, len, 0), MQE2E_OK);
    cr_assert_eq(u.push_seq, numf(o, "push_seq"));
    cr_assert_eq(u.n_bundles,
                 (size_t)cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(o, "bundles")));
    cJSON_ArrayForEach(b, cJSON_GetObjectItemCaseSensitive(o, "bundles"))
    {
        const mqe2e_key_bundle *k = &u.bundles[i++];
        cr_assert_str_eq(k->group, strf(b, "group"));
        cr_assert_str_eq(k->topic_filter, strf(b, "topic_filter"));
        cr_assert_eq(k->epoch, numf(b, "epoch"));
        cr_assert_eq(k->sender_id, numf(b, "sender_id"));
        cr_assert_eq(k->created_at, numf(b, "created_at"));
        cr_assert_eq(k->retired_at, numf(b, "retired_at"));
        cr_assert_eq(k->grace_seconds, numf(b, "grace_seconds"));
        uint8_t *want = hexf(b, "secret", NULL);
        cr_assert_eq(memcmp(k->secret, want, 32), 0);
        free(want);
    }
    cr_assert_eq(u.n_removed_groups, 1);
    cr_assert_str_eq(u.removed_groups[0].name, "old-group");
    mqe2e_control_update_wipe(&u);
    /* Replayed: refused after authentication. */
    cr_assert_eq(
        mqe2e_push_open(&u, dev_sk, auth_pk, "mqe2e", aid, frame, len, numf(o, "push_seq")),
        MQE2E_ERR_REPLAY);
    /* From someone else, or under another prefix. */
    cr_assert_eq(mqe2e_push_open(&u, dev_sk, auth_pk, "mqe2e", "mallory", frame, len, 0),
                 MQE2E_ERR_STATE);
    cr_assert_eq(mqe2e_push_open(&u, dev_sk, auth_pk, "other", aid, frame, len, 0), MQE2E_ERR_AUTH);
    frame[len - 1] ^= 1;
    cr_assert_eq(mqe2e_push_open(&u, dev_sk, auth_pk, "mqe2e", aid, frame, len, 0), MQE2E_ERR_AUTH);
    free(frame);
    free(dev_sk);
    free(auth_pk);
    cJSON_Delete(root);
}

/* The client side of a published exchange (HELLO, or ENROLL with @p psk),
 * rebuilt with the public Noise API over @p prologue with ephemeral @p e_sk;
 * writes message 1 into @p msg. */
static mqe2e_noise_handshake *replay_initiator(const cJSON *root, const cJSON *o,
                                               const uint8_t *prologue, size_t pr,
                                               const uint8_t e_sk[32], const uint8_t *psk,
                                               uint8_t *msg, size_t cap, size_t *len)
{
    size_t rl;
    uint8_t *req = hexf(o, "request_payload", &rl);
    uint8_t *dev_sk = hexf(root, "device_dh_secret", NULL);
    uint8_t *auth_pk = hexf(root, "authority_dh_public", NULL);
    mqe2e_noise_handshake *hs = NULL;
    cr_assert_eq(
        mqe2e_noise_handshake_new(&hs, strf(o, "protocol"), MQE2E_NOISE_INITIATOR, prologue, pr),
        MQE2E_OK);
    cr_assert_eq(mqe2e_noise_handshake_set_local_static(hs, dev_sk), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_handshake_set_remote_static(hs, auth_pk), MQE2E_OK);
    if (psk != NULL) cr_assert_eq(mqe2e_noise_handshake_set_psk(hs, psk), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_handshake_set_ephemeral(hs, e_sk), MQE2E_OK);
    cr_assert_eq(mqe2e_noise_write_message(hs, msg, cap, len, req, rl), MQE2E_OK);
    free(req);
    free(dev_sk);
    free(auth_pk);
    return hs;
}

/* The HELLO exchange with a published client ephemeral: replayed with the
 * public Noise API from the spec's prologue, step 1 must come out byte for
 * byte, and step 2 (the authority's reply) must open to the published payload. */
Test(vectors, hello_exchange)
{
    cJSON *root = load("control-v1.json");
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "hello_exchange");
    size_t n1, n2, pl, len = 0, plen = 0, pr = 0;
    uint8_t *f1 = hexf(o, "step1_frame", &n1), *f2 = hexf(o, "step2_frame", &n2);
    uint8_t *exp = hexf(o, "reply_payload", &pl);
    uint8_t *session = hexf(o, "session", NULL), *e_sk = hexf(o, "client_ephemeral_secret", NULL);
    uint8_t *auth_sk = hexf(root, "authority_dh_secret", NULL);
    uint8_t prologue[64], msg[1024], payload[4096];
    mqe2e_noise_handshake *hs;
    mqe2e_control_frame fr;

    /* "mqe2e/v1/" || "hello" || 0x00 || P || 0x00 || session (PROTOCOL.md 8.1) */
    memcpy(prologue, "mqe2e/v1/hello", 14);
    pr = 14;
    prologue[pr++] = 0;
    memcpy(prologue + pr, "mqe2e", 5);
    pr += 5;
    prologue[pr++] = 0;
    memcpy(prologue + pr, session, 16);
    pr += 16;
    expect_hex(o, "prologue", prologue, pr);

    hs = replay_initiator(root, o, prologue, pr, e_sk, NULL, msg, sizeof msg, &len);
    cr_assert_eq(mqe2e_control_frame_decode(&fr, f1, n1), MQE2E_OK);
    cr_assert_eq(memcmp(fr.session, session, 16), 0);
    cr_assert_eq(fr.noise_len, len);
    cr_assert_eq(memcmp(fr.noise, msg, len), 0, "step 1 does not replay byte for byte");

    cr_assert_eq(mqe2e_control_frame_decode(&fr, f2, n2), MQE2E_OK);
    cr_assert_eq(fr.kind, MQE2E_CONTROL_HELLO);
    cr_assert_eq(fr.step, 2);
    cr_assert_str_eq(fr.from, strf(root, "authority_id"));
    cr_assert_eq(
        mqe2e_noise_read_message(hs, payload, sizeof payload, &plen, fr.noise, fr.noise_len),
        MQE2E_OK);
    cr_assert_eq(plen, pl);
    cr_assert_eq(memcmp(payload, exp, pl), 0);
    mqe2e_noise_handshake_free(hs);

    /* The authority side reads step 1 and learns the client's proven key. */
    mqe2e_hello_authority *as = NULL;
    mqe2e_hello_request hr;
    cr_assert_eq(mqe2e_hello_accept_read(&as, &hr, auth_sk, "mqe2e", f1, n1), MQE2E_OK);
    expect_hex(root, "device_dh_public", hr.dh_public, 32);
    mqe2e_hello_authority_free(as);

    /* A reader with another ephemeral (any live client) cannot open step 2. */
    e_sk[7] ^= 1;
    hs = replay_initiator(root, o, prologue, pr, e_sk, NULL, msg, sizeof msg, &len);
    cr_assert_eq(
        mqe2e_noise_read_message(hs, payload, sizeof payload, &plen, fr.noise, fr.noise_len),
        MQE2E_ERR_AUTH);
    mqe2e_noise_handshake_free(hs);
    free(f1);
    free(f2);
    free(exp);
    free(session);
    free(e_sk);
    free(auth_sk);
    cJSON_Delete(root);
}

/* The reply payload is a HelloReply carrying the published push_seq and bundle. */
Test(vectors, hello_reply_payload)
{
    cJSON *root = load("control-v1.json");
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "hello_exchange");
    size_t pl;
    uint8_t *p = hexf(o, "reply_payload", &pl);
    mqe2e_control_update u;
    cr_assert_eq(mqe2e__control_unpack_update(&u, MQE2E__PAYLOAD_HELLO_REPLY, p, pl), MQE2E_OK);
    cr_assert_eq(u.status, 0);
    cr_assert_eq(u.push_seq, numf(o, "push_seq"));
    cr_assert_eq(u.n_bundles, 1);
    cr_assert_str_eq(u.bundles[0].group, strf(o, "bundle_group"));
    cr_assert_eq(u.bundles[0].epoch, numf(o, "bundle_epoch"));
    expect_hex(o, "bundle_secret", u.bundles[0].secret, 32);
    mqe2e_control_update_wipe(&u);
    free(p);
    cJSON_Delete(root);
}

/* The ENROLL exchange with a published device ephemeral (PROTOCOL.md 8.3):
 * token_mac recomputed from the spec, step 1 replayed byte for byte with the
 * token as psk, step 2 opened to the published EnrollReply, whose credential
 * verifies under the ticket's authority key and names the device's keys. */
Test(vectors, enroll_exchange)
{
    cJSON *root = load("control-v1.json");
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "enroll_exchange");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "ticket");
    size_t n1, n2, pl, len = 0, plen = 0, pr = 0;
    uint8_t *f1 = hexf(o, "step1_frame", &n1), *f2 = hexf(o, "step2_frame", &n2);
    uint8_t *exp = hexf(o, "reply_payload", &pl), *session = hexf(o, "session", NULL);
    uint8_t *e_sk = hexf(o, "device_ephemeral_secret", NULL), *token = hexf(t, "token", NULL);
    uint8_t *auth_sk = hexf(root, "authority_dh_secret", NULL);
    uint8_t *a_sign = hexf(t, "authority_sign_public", NULL);
    uint8_t *dev_pk = hexf(root, "device_dh_public", NULL);
    uint8_t *sign_pk = hexf(root, "device_sign_public", NULL);
    uint8_t prologue[64], msg[1024], payload[4096], e_pk[32], mac[32];
    const char *prefix = strf(t, "control_prefix"), *cid = strf(t, "client_id");
    crypto_auth_hmacsha256_state st;
    mqe2e_noise_handshake *hs;
    mqe2e_control_frame fr;
    mqe2e_control_update u;
    mqe2e_credential *cred = NULL;

    memcpy(prologue, "mqe2e/v1/enroll", 15);
    pr = 15;
    prologue[pr++] = 0;
    memcpy(prologue + pr, prefix, strlen(prefix));
    pr += strlen(prefix);
    prologue[pr++] = 0;
    memcpy(prologue + pr, session, 16);
    pr += 16;
    expect_hex(o, "prologue", prologue, pr);

    crypto_scalarmult_base(e_pk, e_sk);
    expect_hex(o, "device_ephemeral_public", e_pk, 32);
    crypto_auth_hmacsha256_init(&st, token, 32);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)"mqe2e/v1/enroll-mac", 19);
    crypto_auth_hmacsha256_update(&st, session, 16);
    crypto_auth_hmacsha256_update(&st, e_pk, 32);
    crypto_auth_hmacsha256_update(&st, dev_pk, 32);
    crypto_auth_hmacsha256_update(&st, sign_pk, 32);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)cid, strlen(cid));
    crypto_auth_hmacsha256_final(&st, mac);
    expect_hex(o, "token_mac", mac, 32);

    hs = replay_initiator(root, o, prologue, pr, e_sk, token, msg, sizeof msg, &len);
    cr_assert_eq(mqe2e_control_frame_decode(&fr, f1, n1), MQE2E_OK);
    cr_assert_eq(fr.kind, MQE2E_CONTROL_ENROLL);
    cr_assert_eq(fr.noise_len, len);
    cr_assert_eq(memcmp(fr.noise, msg, len), 0, "step 1 does not replay byte for byte");
    cr_assert_eq(mqe2e_control_frame_decode(&fr, f2, n2), MQE2E_OK);
    cr_assert_eq(fr.step, 2);
    cr_assert_eq(
        mqe2e_noise_read_message(hs, payload, sizeof payload, &plen, fr.noise, fr.noise_len),
        MQE2E_OK);
    cr_assert_eq(plen, pl);
    cr_assert_eq(memcmp(payload, exp, pl), 0);
    mqe2e_noise_handshake_free(hs);

    cr_assert_eq(mqe2e__control_unpack_update(&u, MQE2E__PAYLOAD_ENROLL_REPLY, payload, plen),
                 MQE2E_OK);
    expect_hex(o, "credential", u.credential, u.credential_len);
    cr_assert_eq(mqe2e_credential_verify(&cred, u.credential, u.credential_len, a_sign, 1700000001),
                 MQE2E_OK);
    cr_assert_str_eq(mqe2e_credential_client_id(cred), cid);
    cr_assert_eq(mqe2e_credential_serial(cred), numf(o, "credential_serial"));
    cr_assert_eq(memcmp(mqe2e_credential_dh_public(cred), dev_pk, 32), 0);
    cr_assert_eq(memcmp(mqe2e_credential_sign_public(cred), sign_pk, 32), 0);
    mqe2e_credential_free(cred);
    cr_assert_eq(u.n_bundles, 1);
    cr_assert_str_eq(u.bundles[0].group, strf(o, "bundle_group"));
    mqe2e_control_update_wipe(&u);

    /* The authority reads step 1 and the MAC verifies with the token. */
    mqe2e_enroll_authority *as = NULL;
    mqe2e_enroll_request er;
    cr_assert_eq(mqe2e_enroll_accept_read(&as, &er, auth_sk, prefix, f1, n1), MQE2E_OK);
    cr_assert_eq(mqe2e_enroll_accept_verify_mac(as, token), MQE2E_OK);
    mqe2e_enroll_authority_free(as);

    /* Without the token (another psk) step 2 does not open. */
    token[3] ^= 1;
    hs = replay_initiator(root, o, prologue, pr, e_sk, token, msg, sizeof msg, &len);
    cr_assert_eq(
        mqe2e_noise_read_message(hs, payload, sizeof payload, &plen, fr.noise, fr.noise_len),
        MQE2E_ERR_AUTH);
    mqe2e_noise_handshake_free(hs);
    free(f1);
    free(f2);
    free(exp);
    free(session);
    free(e_sk);
    sodium_memzero(token, 32);
    free(token);
    free(auth_sk);
    free(a_sign);
    free(dev_pk);
    free(sign_pk);
    cJSON_Delete(root);
}

/* ---- channel-v1.json: the CHANNEL handshake (8.6) and its first envelopes (8.7) ---- */

/* Hex field @p name of @p v, or NULL (the check then fails, it does not abort). */
static uint8_t *hexq(const cJSON *v, const char *name, size_t *len)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(v, name);
    size_t dummy;
    return cJSON_IsString(f) ? tu_hex_decode(f->valuestring, len != NULL ? len : &dummy) : NULL;
}

static int same_hex(const cJSON *v, const char *name, const uint8_t *got, size_t n)
{
    size_t len = 0;
    uint8_t *exp = hexq(v, name, &len);
    int ok = exp != NULL && len == n && memcmp(exp, got, n) == 0;
    free(exp);
    return ok;
}

static int contains(const uint8_t *hay, size_t hl, const uint8_t *needle, size_t nl)
{
    for (size_t i = 0; nl <= hl && i <= hl - nl; i++)
        if (memcmp(hay + i, needle, nl) == 0) return 1;
    return 0;
}

static mqe2e_noise_handshake *channel_side(const cJSON *o, const cJSON *ex, int role,
                                           const uint8_t *prologue, size_t pr)
{
    mqe2e_noise_handshake *hs = NULL;
    uint8_t *s = hexq(o, "dh_secret", NULL), *e = hexq(o, "ephemeral_secret", NULL);
    const cJSON *proto = cJSON_GetObjectItemCaseSensitive(ex, "protocol");
    if (s == NULL || e == NULL || !cJSON_IsString(proto) ||
        mqe2e_noise_handshake_new(&hs, proto->valuestring, role, prologue, pr) != MQE2E_OK ||
        mqe2e_noise_handshake_set_local_static(hs, s) != MQE2E_OK ||
        mqe2e_noise_handshake_set_ephemeral(hs, e) != MQE2E_OK) {
        mqe2e_noise_handshake_free(hs);
        hs = NULL;
    }
    free(s);
    free(e);
    return hs;
}

/* Step @p step: @p w writes the published payload, it must equal the Noise
 * field of the published frame byte for byte; @p r reads the frame back to the
 * same payload, a ChannelHello from @p w's id (credential from step 2 on). */
static int channel_replay_step(const cJSON *ex, const char *name, uint32_t step,
                               mqe2e_noise_handshake *w, mqe2e_noise_handshake *r,
                               const cJSON *wo, const uint8_t session[16])
{
    char key[32];
    size_t fl = 0, pl = 0, ml = 0, gl = 0;
    uint8_t *frame, *payload, msg[2048], got[2048];
    mqe2e_control_frame f;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(wo, "client_id");
    int ok;

    snprintf(key, sizeof key, "%s_frame", name);
    frame = hexq(ex, key, &fl);
    snprintf(key, sizeof key, "%s_payload", name);
    payload = hexq(ex, key, &pl);
    ok = frame != NULL && payload != NULL && cJSON_IsString(id) &&
         mqe2e_noise_write_message(w, msg, sizeof msg, &ml, payload, pl) == MQE2E_OK &&
         mqe2e_control_frame_decode(&f, frame, fl) == MQE2E_OK &&
         f.kind == MQE2E_CONTROL_CHANNEL && f.step == step && strcmp(f.from, id->valuestring) == 0 &&
         memcmp(f.session, session, 16) == 0 && f.noise_len == ml &&
         memcmp(f.noise, msg, ml) == 0 &&
         mqe2e_noise_read_message(r, got, sizeof got, &gl, f.noise, f.noise_len) == MQE2E_OK &&
         gl == pl && memcmp(got, payload, pl) == 0 &&
         mqe2e__channel_hello_check(got, gl, id->valuestring, step > 1) == MQE2E_OK;
    free(frame);
    free(payload);
    return ok;
}

/* The peer's credential as published: verifies under the pinned authority,
 * names the peer, binds the static key the handshake proved, and is the one
 * its ChannelHello carried. */
static int channel_peer_ok(const cJSON *root, const cJSON *po, const cJSON *ex, const char *step,
                           const mqe2e_noise_handshake *hs)
{
    size_t cl = 0, pl = 0;
    uint8_t *cred = hexq(po, "credential", &cl), *apk = hexq(root, "authority_sign_public", NULL);
    uint8_t rs[32];
    char key[32];
    uint8_t *payload;
    const cJSON *now = cJSON_GetObjectItemCaseSensitive(root, "now");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(po, "client_id");
    mqe2e_credential *c = NULL;
    int ok;

    snprintf(key, sizeof key, "%s_payload", step);
    payload = hexq(ex, key, &pl);
    ok = cred != NULL && apk != NULL && payload != NULL && cJSON_IsNumber(now) &&
         cJSON_IsString(id) &&
         mqe2e_credential_verify(&c, cred, cl, apk, (uint64_t)now->valuedouble) == MQE2E_OK &&
         strcmp(mqe2e_credential_client_id(c), id->valuestring) == 0 &&
         mqe2e_noise_handshake_remote_static(hs, rs) == MQE2E_OK &&
         memcmp(mqe2e_credential_dh_public(c), rs, 32) == 0 && same_hex(po, "dh_public", rs, 32) &&
         mqe2e_credential_serial(c) == (uint64_t)cJSON_GetObjectItemCaseSensitive(
                                          po, "credential_serial")->valuedouble &&
         contains(payload, pl, cred, cl);
    mqe2e_credential_free(c);
    free(cred);
    free(apk);
    free(payload);
    return ok;
}

/* A first message: header of 8.7, AD rebuilt from the spec, opened with the
 * receiver's split cipher. */
static int channel_first_ok(const cJSON *m, const mqe2e_noise_cipher *recv,
                            const uint8_t session[16])
{
    size_t el = 0, xl = 0, pl = 0, r = 0;
    uint8_t *env = hexq(m, "envelope", &el), *exp = hexq(m, "plaintext", &xl);
    uint8_t ad[600], pt[1024];
    const cJSON *topic = cJSON_GetObjectItemCaseSensitive(m, "topic");
    mqe2e_envelope_view view;
    int ok = env != NULL && exp != NULL && cJSON_IsString(topic) &&
             strlen(topic->valuestring) < 256 &&
             mqe2e__envelope_decode_channel(&view, env, el) == MQE2E_OK &&
             view.header.mode == MQE2E_MODE_CHANNEL &&
             view.header.epoch == numf(m, "generation") &&
             view.header.sender_id == numf(m, "direction") && view.header.seq == numf(m, "seq");
    if (ok) {
        r = spec_channel_ad(ad, topic->valuestring, strlen(topic->valuestring), session,
                            &view.header);
        ok = same_hex(m, "ad", ad, r) &&
             mqe2e_noise_cipher_decrypt_n(recv, view.header.seq, pt, sizeof pt, &pl, ad, r,
                                          view.ciphertext, view.ciphertext_len) == MQE2E_OK &&
             pl == xl && memcmp(pt, exp, xl) == 0;
    }
    free(env);
    free(exp);
    return ok;
}

/* The whole of channel-v1.json; 0 when every check holds, else the number of
 * the first check that failed (so a mutated copy can be shown to fail). */
static int check_channel_vectors(const cJSON *root)
{
    const cJSON *ini = cJSON_GetObjectItemCaseSensitive(root, "initiator");
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(root, "responder");
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(root, "exchange");
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "first_messages"), *m;
    mqe2e_noise_handshake *hi = NULL, *hr = NULL;
    mqe2e_noise_cipher *is = NULL, *ir = NULL, *rs = NULL, *rr = NULL;
    uint8_t *session = hexq(ex, "session", NULL), prologue[64], hh[32], k[32];
    size_t pr = 0;
    int fail = 0, n = 0;

    if (ini == NULL || res == NULL || ex == NULL || session == NULL) {
        free(session);
        return 1;
    }
    /* "mqe2e/v1/channel" || 0x00 || P || 0x00 || session (PROTOCOL.md 8.1) */
    memcpy(prologue, "mqe2e/v1/channel", 16);
    pr = 16;
    prologue[pr++] = 0;
    memcpy(prologue + pr, "mqe2e", 5);
    pr += 5;
    prologue[pr++] = 0;
    memcpy(prologue + pr, session, 16);
    pr += 16;
    if (!same_hex(ex, "prologue", prologue, pr)) fail = 2;
    if (!fail) {
        hi = channel_side(ini, ex, MQE2E_NOISE_INITIATOR, prologue, pr);
        hr = channel_side(res, ex, MQE2E_NOISE_RESPONDER, prologue, pr);
        if (hi == NULL || hr == NULL) fail = 3;
    }
    if (!fail && !channel_replay_step(ex, "step1", 1, hi, hr, ini, session)) fail = 4;
    if (!fail && !channel_replay_step(ex, "step2", 2, hr, hi, res, session)) fail = 5;
    if (!fail && !channel_peer_ok(root, res, ex, "step2", hi)) fail = 6;
    if (!fail && !channel_replay_step(ex, "step3", 3, hi, hr, ini, session)) fail = 7;
    if (!fail && !channel_peer_ok(root, ini, ex, "step3", hr)) fail = 8;
    if (!fail && (mqe2e_noise_handshake_hash(hi, hh) != MQE2E_OK ||
                  !same_hex(ex, "handshake_hash", hh, 32)))
        fail = 9;
    if (!fail && (mqe2e_noise_split(hi, &is, &ir) != MQE2E_OK ||
                  mqe2e_noise_split(hr, &rs, &rr) != MQE2E_OK))
        fail = 10;
    if (!fail && (mqe2e_noise_cipher_export_key(is, k) != MQE2E_OK ||
                  !same_hex(ex, "initiator_to_responder_k0", k, 32) ||
                  mqe2e_noise_cipher_export_key(rs, k) != MQE2E_OK ||
                  !same_hex(ex, "responder_to_initiator_k0", k, 32)))
        fail = 11;
    cJSON_ArrayForEach(m, msgs)
    {
        if (fail) break;
        /* direction 0 is opened by the responder, 1 by the initiator */
        if (!channel_first_ok(m, numf(m, "direction") == 0 ? rr : ir, session)) fail = 12;
        n++;
    }
    if (!fail && n != 2) fail = 13;
    sodium_memzero(k, sizeof k);
    mqe2e_noise_cipher_free(is);
    mqe2e_noise_cipher_free(ir);
    mqe2e_noise_cipher_free(rs);
    mqe2e_noise_cipher_free(rr);
    mqe2e_noise_handshake_free(hi);
    mqe2e_noise_handshake_free(hr);
    free(session);
    return fail;
}

/* Flip one hex digit of @p field (in @p obj of a deep copy of @p root) at
 * character @p at (negative: from the end); return the check's result. */
static int check_mutated(const cJSON *root, const char *obj, int idx, const char *field, int at)
{
    cJSON *copy = cJSON_Duplicate(root, 1);
    cJSON *o = cJSON_GetObjectItemCaseSensitive(copy, obj);
    if (idx >= 0) o = cJSON_GetArrayItem(o, idx);
    cJSON *f = cJSON_GetObjectItemCaseSensitive(o, field);
    cr_assert(cJSON_IsString(f), "no %s.%s", obj, field);
    size_t len = strlen(f->valuestring);
    char *s = f->valuestring;
    size_t i = at >= 0 ? (size_t)at : len - (size_t)(-at);
    s[i] = s[i] == '0' ? '1' : '0';
    int rc = check_channel_vectors(copy);
    cJSON_Delete(copy);
    return rc;
}

Test(vectors, channel_exchange)
{
    cJSON *root = load("channel-v1.json");
    cr_assert_eq(check_channel_vectors(root), 0, "channel-v1.json fails check %d",
                 check_channel_vectors(root));
    /* The check can fail: one flipped byte anywhere that matters is caught,
     * at the check that reads it. */
    cr_assert_eq(check_mutated(root, "initiator", -1, "ephemeral_secret", 3), 4);
    cr_assert_eq(check_mutated(root, "exchange", -1, "step1_frame", -2), 4);
    cr_assert_eq(check_mutated(root, "exchange", -1, "step2_frame", -2), 5);
    cr_assert_eq(check_mutated(root, "exchange", -1, "step3_frame", -2), 7);
    cr_assert_eq(check_mutated(root, "exchange", -1, "step2_payload", 30), 5);
    cr_assert_eq(check_mutated(root, "responder", -1, "credential", -5), 6);
    cr_assert_eq(check_mutated(root, "exchange", -1, "responder_to_initiator_k0", 0), 11);
    cr_assert_eq(check_mutated(root, "exchange", -1, "handshake_hash", 0), 9);
    cr_assert_eq(check_mutated(root, "first_messages", 0, "envelope", -1), 12);
    cr_assert_eq(check_mutated(root, "first_messages", 1, "plaintext", 1), 12);
    cr_assert_eq(check_mutated(root, "first_messages", 1, "ad", 12), 12);
    cJSON_Delete(root);
}

/* The library's own responder (mqe2e_channel_accept) reads the published
 * step 1 and answers with a step 2 of the same session; a responder that
 * expects another peer refuses it. (Step 1 of XX is not authenticated: the
 * prologue, hence the prefix, is only checked from step 2 on.) */
Test(vectors, channel_step1_read_by_the_library)
{
    cJSON *root = load("channel-v1.json");
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(root, "responder");
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(root, "exchange");
    size_t fl, cl, ol = 0;
    uint8_t *f1 = hexf(ex, "step1_frame", &fl), *cred = hexf(res, "credential", &cl);
    uint8_t *sk = hexf(res, "dh_secret", NULL), *apk = hexf(root, "authority_sign_public", NULL);
    uint8_t out[MQE2E_CONTROL_MAX_FRAME_BYTES];
    mqe2e_channel_config cfg = {"mqe2e", strf(res, "client_id"), sk, cred, cl, apk, NULL};
    mqe2e_channel *ch = NULL;
    mqe2e_control_frame f;

    cr_assert_eq(mqe2e_channel_accept(&ch, out, sizeof out, &ol, &cfg, f1, fl, 1700000001),
                 MQE2E_OK);
    cr_assert_str_eq(mqe2e_channel_peer_id(ch), "sensor-1");
    cr_assert_eq(mqe2e_control_frame_decode(&f, out, ol), MQE2E_OK);
    cr_assert_eq(f.step, 2);
    expect_hex(ex, "session", f.session, 16);
    mqe2e_channel_free(ch);
    cfg.peer_id = "sensor-2";
    cr_assert_eq(mqe2e_channel_accept(&ch, out, sizeof out, &ol, &cfg, f1, fl, 1700000001),
                 MQE2E_ERR_AUTH);
    cr_assert_null(ch);
    free(f1);
    free(cred);
    free(sk);
    free(apk);
    cJSON_Delete(root);
}
