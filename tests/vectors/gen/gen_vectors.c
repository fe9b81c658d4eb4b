/* Generator of the shared vectors tests/vectors/{key-schedule,envelope,control,channel}-v1.json.
 *
 * Run by hand when the wire format changes (tests/vectors/README.md):
 *     build/tests/mqe2e_gen_vectors tests/vectors
 * Key schedule, envelope and channel vectors are deterministic (fixed secrets, fixed
 * instance, deterministic Ed25519); control frames carry fresh Noise
 * ephemerals, so regenerating them changes their bytes but not what a
 * receiver reads from them. tests/unit/test_vectors.c and
 * python/tests/test_vectors.py check the committed files against the core. */
#include <cjson/cJSON.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal_control.h"
#include "internal_bind.h"
#include "internal_envelope_codec.h"
#include "internal_envelope_ext.h"
#include "mqe2e/control.h"
#include "mqe2e/credential.h"
#include "mqe2e/envelope.h"
#include "mqe2e/error.h"
#include "mqe2e/hkdf.h"
#include "mqe2e/noise.h"
#include "proto/control.pb-c.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        int rc_ = (x);                                                                             \
        if (rc_ != MQE2E_OK) {                                                                     \
            fprintf(stderr, "%s:%d: %s -> %s\n", __FILE__, __LINE__, #x, mqe2e_error_name(rc_));   \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static void add_hex(cJSON *o, const char *name, const uint8_t *b, size_t n)
{
    char *hex = malloc(n * 2 + 1);
    if (hex == NULL) exit(1);
    sodium_bin2hex(hex, n * 2 + 1, b, n);
    cJSON_AddStringToObject(o, name, hex);
    free(hex);
}

static void fill(uint8_t *b, size_t n, uint8_t start)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(start + i);
}

static void write_json(const char *dir, const char *name, cJSON *root)
{
    char path[1024];
    char *text = cJSON_Print(root);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f == NULL || text == NULL) exit(1);
    fputs(text, f);
    fputc('\n', f);
    fclose(f);
    free(text);
    cJSON_Delete(root);
}

/* ---- key schedule ---------------------------------------------------- */

static void ks_vector(cJSON *arr, const char *note, const uint8_t secret[32], const char *group,
                      uint32_t epoch, uint32_t sender)
{
    static const char salt[] = "mqe2e/v1/group";
    uint8_t prk[MQE2E_HKDF_PRK_BYTES];
    mqe2e_sender_key k;
    cJSON *v = cJSON_CreateObject();
    CHECK(mqe2e_hkdf_extract(prk, (const uint8_t *)salt, strlen(salt), secret, 32));
    CHECK(mqe2e_sender_key_derive(&k, secret, group, epoch, sender));
    cJSON_AddStringToObject(v, "note", note);
    add_hex(v, "group_secret", secret, 32);
    cJSON_AddStringToObject(v, "group_id", group);
    cJSON_AddNumberToObject(v, "epoch", epoch);
    cJSON_AddNumberToObject(v, "sender_id", sender);
    add_hex(v, "prk", prk, sizeof prk);
    add_hex(v, "key", k.key, sizeof k.key);
    add_hex(v, "iv", k.iv, sizeof k.iv);
    cJSON_AddItemToArray(arr, v);
    mqe2e_sender_key_wipe(&k);
}

static void gen_key_schedule(const char *dir)
{
    uint8_t secret[32], secret2[32], k[32];
    char long_group[256];
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_CreateArray(), *rk = cJSON_CreateArray();
    mqe2e_noise_cipher *cs = NULL;

    fill(secret, 32, 0);
    memset(secret2, 0xa5, 32);
    memset(long_group, 'g', 255);
    long_group[255] = '\0';
    cJSON_AddStringToObject(root, "source",
                            "docs/PROTOCOL.md 2.3 (sender key and IV), 8.7 (channel generations)");
    ks_vector(arr, "worked example of docs/PROTOCOL.md 2.8", secret, "hr-monitors", 7, 0xC0FFEE);
    ks_vector(arr, "epoch 0, sender 0, one-byte group id", secret2, "g", 0, 0);
    ks_vector(arr, "largest values: 255-byte group id, epoch and sender 2^32-1", secret2,
              long_group, 0xFFFFFFFFu, 0xFFFFFFFFu);
    cJSON_AddItemToObject(root, "sender_keys", arr);

    /* Channel generations: k_{g+1} = Rekey(k_g) (Noise 11.3). */
    fill(k, 32, 0x40);
    CHECK(mqe2e_noise_cipher_new(&cs, k));
    add_hex(root, "channel_k0", k, 32);
    for (int g = 1; g <= 3; g++) {
        CHECK(mqe2e_noise_cipher_rekey(cs));
        CHECK(mqe2e_noise_cipher_export_key(cs, k));
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "generation", g);
        add_hex(o, "key", k, 32);
        cJSON_AddItemToArray(rk, o);
    }
    cJSON_AddItemToObject(root, "channel_generations", rk);
    mqe2e_noise_cipher_free(cs);
    write_json(dir, "key-schedule-v1.json", root);
}

/* ---- envelopes ------------------------------------------------------- */

static int sign_cb(void *ctx, uint8_t sig[MQE2E_SIGNATURE_BYTES], const uint8_t *msg,
                   size_t msg_len)
{
    return crypto_sign_detached(sig, NULL, msg, msg_len, (const uint8_t *)ctx) == 0
               ? MQE2E_OK
               : MQE2E_ERR_CRYPTO;
}

static cJSON *env_vector(const char *note, const uint8_t secret[32], const char *group,
                         const char *topic, const mqe2e_envelope_header *h, const char *pt,
                         const uint8_t *sign_sk, uint8_t *env, size_t *env_len)
{
    mqe2e_sender_key k;
    uint8_t nonce[12];
    cJSON *v = cJSON_CreateObject();
    size_t cap = mqe2e_envelope_signed_sealed_bound(strlen(pt));

    CHECK(mqe2e_sender_key_derive(&k, secret, group, h->epoch, h->sender_id));
    if (h->mode == MQE2E_MODE_SIGNED_GROUP)
        CHECK(mqe2e_envelope_seal_signed(env, cap, env_len, &k, topic, group, h,
                                         (const uint8_t *)pt, strlen(pt), sign_cb,
                                         (void *)(uintptr_t)sign_sk));
    else
        CHECK(mqe2e_envelope_seal(env, cap, env_len, &k, topic, group, h, (const uint8_t *)pt,
                                  strlen(pt)));
    mqe2e__envelope_nonce(nonce, k.iv, h->instance, h->seq);
    cJSON_AddStringToObject(v, "note", note);
    cJSON_AddStringToObject(v, "mode", h->mode == MQE2E_MODE_GROUP ? "group" : "signed");
    add_hex(v, "group_secret", secret, 32);
    cJSON_AddStringToObject(v, "group_id", group);
    cJSON_AddStringToObject(v, "topic", topic);
    cJSON_AddNumberToObject(v, "epoch", h->epoch);
    cJSON_AddNumberToObject(v, "sender_id", h->sender_id);
    {
        uint8_t inst[6];
        for (int i = 0; i < 6; i++)
            inst[i] = (uint8_t)(h->instance >> (8 * (5 - i)));
        add_hex(v, "instance", inst, 6);
    }
    cJSON_AddNumberToObject(v, "seq", (double)h->seq);
    add_hex(v, "plaintext", (const uint8_t *)pt, strlen(pt));
    add_hex(v, "key", k.key, 32);
    add_hex(v, "iv", k.iv, 12);
    add_hex(v, "nonce", nonce, 12);
    if (sign_sk != NULL) add_hex(v, "signer_public", sign_sk + 32, 32);
    add_hex(v, "envelope", env, *env_len);
    mqe2e_sender_key_wipe(&k);
    return v;
}

static void add_bad(cJSON *arr, const char *note, const char *of, const char *topic,
                    const uint8_t *env, size_t n, const char *expect)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "note", note);
    cJSON_AddStringToObject(b, "of", of);
    if (topic != NULL) cJSON_AddStringToObject(b, "topic", topic);
    add_hex(b, "envelope", env, n);
    cJSON_AddStringToObject(b, "error", expect);
    cJSON_AddItemToArray(arr, b);
}

/* Seal a channel envelope (docs/PROTOCOL.md 8.7) with @p cs: the AD is written
 * out here as the spec gives it and returned in @p ad / @p adl. */
static size_t seal_channel(mqe2e_noise_cipher *cs, uint8_t *env, size_t env_cap, uint8_t *ad,
                           size_t *adl_out, uint32_t gen, uint32_t dir, uint64_t seq,
                           const char *topic, const uint8_t session[16], const char *pt)
{
    size_t tlen = strlen(topic), adl = 0, hl, ctl = 0;
    mqe2e_envelope_header h = {MQE2E_MODE_CHANNEL, gen, dir, seq, 0};

    ad[adl++] = 1;
    ad[adl++] = 2;
    ad[adl++] = 1;
    ad[adl++] = (uint8_t)(tlen >> 8);
    ad[adl++] = (uint8_t)tlen;
    memcpy(ad + adl, topic, tlen);
    adl += tlen;
    memcpy(ad + adl, session, 16);
    adl += 16;
    for (int i = 3; i >= 0; i--)
        ad[adl++] = (uint8_t)(gen >> (8 * i));
    for (int i = 3; i >= 0; i--)
        ad[adl++] = (uint8_t)(dir >> (8 * i));
    for (int i = 7; i >= 0; i--)
        ad[adl++] = (uint8_t)(seq >> (8 * i));
    hl = mqe2e__envelope_header_len(&h, strlen(pt) + 16);
    CHECK(mqe2e_noise_cipher_encrypt_n(cs, seq, env + hl, env_cap - hl, &ctl, ad, adl,
                                       (const uint8_t *)pt, strlen(pt)));
    mqe2e__envelope_header_put(env, &h, ctl);
    *adl_out = adl;
    return hl + ctl;
}

static void channel_vector(cJSON *arr, const char *note, uint32_t gen, uint32_t dir, uint64_t seq,
                           const char *topic, const char *pt)
{
    uint8_t k[32], session[16], ad[512], env[512];
    size_t adl = 0, envl;
    mqe2e_noise_cipher *cs = NULL;
    cJSON *v = cJSON_CreateObject();

    fill(k, 32, 0x40);
    fill(session, 16, 0xe0);
    CHECK(mqe2e_noise_cipher_new(&cs, k));
    for (uint32_t g = 0; g < gen; g++)
        CHECK(mqe2e_noise_cipher_rekey(cs));
    envl = seal_channel(cs, env, sizeof env, ad, &adl, gen, dir, seq, topic, session, pt);
    cJSON_AddStringToObject(v, "note", note);
    cJSON_AddStringToObject(v, "mode", "channel");
    add_hex(v, "channel_k0", k, 32);
    CHECK(mqe2e_noise_cipher_export_key(cs, k));
    add_hex(v, "key", k, 32);
    add_hex(v, "session", session, 16);
    cJSON_AddStringToObject(v, "topic", topic);
    cJSON_AddNumberToObject(v, "generation", gen);
    cJSON_AddNumberToObject(v, "direction", dir);
    cJSON_AddNumberToObject(v, "seq", (double)seq);
    add_hex(v, "plaintext", (const uint8_t *)pt, strlen(pt));
    add_hex(v, "ad", ad, adl);
    add_hex(v, "envelope", env, envl);
    cJSON_AddItemToArray(arr, v);
    mqe2e_noise_cipher_free(cs);
}

/* ---- bound properties (2.5.1) ------------------------------------------ */

static cJSON *props_json(const mqe2e_msg_property *p, size_t n)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", p[i].id);
        if (p[i].id == MQE2E_PROP_USER) add_hex(o, "name", p[i].name, p[i].name_len);
        add_hex(o, "value", p[i].value, p[i].value_len);
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

/* A received variant that must be refused (auth) by a receiver binding @p bind. */
static void add_refused(cJSON *arr, const char *note, const mqe2e_msg_property *p, size_t n,
                        int retain)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "note", note);
    cJSON_AddItemToObject(o, "properties", props_json(p, n));
    cJSON_AddNumberToObject(o, "retain", retain);
    cJSON_AddItemToArray(arr, o);
}

static cJSON *bound_vector(const char *note, const uint8_t secret[32], const char *group,
                           const char *topic, const mqe2e_envelope_header *h, const char *pt,
                           const char *bind, const mqe2e_msg_property *props, size_t nprops,
                           int retain, const uint8_t *sign_sk)
{
    mqe2e_sender_key k;
    mqe2e__bind *b = NULL;
    uint8_t env[1024], *suffix = NULL;
    size_t env_len = 0, suffix_len = 0;
    const mqe2e_msg_meta meta = {props, nprops, retain};
    cJSON *v = cJSON_CreateObject();

    CHECK(mqe2e__bind_parse(bind, strlen(bind), &b));
    CHECK(mqe2e__bind_ad(b, &meta, retain, &suffix, &suffix_len));
    mqe2e__ad_ext ext = {suffix, suffix_len};
    CHECK(mqe2e_sender_key_derive(&k, secret, group, h->epoch, h->sender_id));
    if (h->mode == MQE2E_MODE_SIGNED_GROUP)
        CHECK(mqe2e__envelope_seal_signed_ext(env, sizeof env, &env_len, &k, topic, group, h,
                                              (const uint8_t *)pt, strlen(pt), sign_cb,
                                              (void *)(uintptr_t)sign_sk, &ext));
    else
        CHECK(mqe2e__envelope_seal_ext(env, sizeof env, &env_len, &k, topic, group, h,
                                       (const uint8_t *)pt, strlen(pt), &ext));
    cJSON_AddStringToObject(v, "note", note);
    cJSON_AddStringToObject(v, "mode", h->mode == MQE2E_MODE_GROUP ? "group" : "signed");
    add_hex(v, "group_secret", secret, 32);
    cJSON_AddStringToObject(v, "group_id", group);
    cJSON_AddStringToObject(v, "topic", topic);
    cJSON_AddStringToObject(v, "bind", bind);
    cJSON_AddItemToObject(v, "properties", props_json(props, nprops));
    cJSON_AddNumberToObject(v, "retain", retain);
    add_hex(v, "plaintext", (const uint8_t *)pt, strlen(pt));
    add_hex(v, "ad_suffix", suffix, suffix_len);
    if (sign_sk != NULL) add_hex(v, "signer_public", sign_sk + 32, 32);
    add_hex(v, "envelope", env, env_len);
    mqe2e_sender_key_wipe(&k);
    mqe2e__bind_free(b);
    free(suffix);
    return v;
}

#define UP(n, v) {MQE2E_PROP_USER, (const uint8_t *)(n), sizeof(n) - 1U, \
                  (const uint8_t *)(v), sizeof(v) - 1U}
#define SP(i, v) {(i), NULL, 0, (const uint8_t *)(v), sizeof(v) - 1U}

static cJSON *gen_bound(const uint8_t *secret, const uint8_t *sk)
{
    static const uint8_t pf1 = 1;
    const mqe2e_msg_property sent[] = {
        {MQE2E_PROP_PAYLOAD_FORMAT, NULL, 0, &pf1, 1},
        SP(MQE2E_PROP_CONTENT_TYPE, "application/json"),
        UP("site", "berlin"),
        UP("trace", "t-1"), /* not bound */
        SP(MQE2E_PROP_RESPONSE_TOPIC, "fleet/device-42/reply"),
        UP("site", "b2"),
    };
    const mqe2e_msg_property ct_changed[] = {
        {MQE2E_PROP_PAYLOAD_FORMAT, NULL, 0, &pf1, 1},
        SP(MQE2E_PROP_CONTENT_TYPE, "text/plain"),
        UP("site", "berlin"),
        UP("trace", "t-1"),
        SP(MQE2E_PROP_RESPONSE_TOPIC, "fleet/device-42/reply"),
        UP("site", "b2"),
    };
    const mqe2e_msg_property site_swapped[] = {
        {MQE2E_PROP_PAYLOAD_FORMAT, NULL, 0, &pf1, 1},
        SP(MQE2E_PROP_CONTENT_TYPE, "application/json"),
        UP("site", "b2"),
        UP("trace", "t-1"),
        SP(MQE2E_PROP_RESPONSE_TOPIC, "fleet/device-42/reply"),
        UP("site", "berlin"),
    };
    const mqe2e_msg_property reordered_unbound_changed[] = {
        UP("trace", "t-2"),
        SP(MQE2E_PROP_RESPONSE_TOPIC, "fleet/device-42/reply"),
        UP("site", "berlin"),
        {MQE2E_PROP_PAYLOAD_FORMAT, NULL, 0, &pf1, 1},
        UP("site", "b2"),
        SP(MQE2E_PROP_CONTENT_TYPE, "application/json"),
    };
    const mqe2e_msg_property ct_only[] = {SP(MQE2E_PROP_CONTENT_TYPE, "")};
    cJSON *arr = cJSON_CreateArray(), *v, *refused, *accepted;
    mqe2e_envelope_header h = {MQE2E_MODE_GROUP, 7, 0xC0FFEE, 1001, UINT64_C(0x5eed1234abcd)};
    mqe2e_envelope_header sg = {MQE2E_MODE_SIGNED_GROUP, 3, 0x00abcdef, 43,
                                UINT64_C(0x010203040506)};
    const char *bind = "retain,user:site,content-type,payload-format,response-topic";

    v = bound_vector("group mode, sent with retain 0", secret, "hr-monitors", "fleet/device-42/hr",
                     &h, "{\"bpm\":72}", bind, sent, 6, 0, NULL);
    refused = cJSON_CreateArray();
    add_refused(refused, "content type changed", ct_changed, 6, 0);
    add_refused(refused, "the two site values swapped (order of one name counts)", site_swapped,
                6, 0);
    add_refused(refused, "bound properties removed", sent + 3, 1, 0);
    add_refused(refused, "received retained (a live message stored as current state)", sent, 6,
                1);
    cJSON_AddItemToObject(v, "refused", refused);
    accepted = cJSON_CreateArray();
    add_refused(accepted, "other properties reordered, an unbound one changed",
                reordered_unbound_changed, 6, 0);
    cJSON_AddItemToObject(v, "accepted", accepted);
    cJSON_AddItemToArray(arr, v);

    h.seq = 1002;
    v = bound_vector("group mode, sent with retain 1: accepted as received with 1 (stored) or 0 "
                     "(live delivery, second try)",
                     secret, "hr-monitors", "fleet/device-42/hr", &h, "{\"bpm\":73}", "retain",
                     NULL, 0, 1, NULL);
    accepted = cJSON_CreateArray();
    add_refused(accepted, "received with retain 0", NULL, 0, 0);
    cJSON_AddItemToObject(v, "accepted", accepted);
    cJSON_AddItemToArray(arr, v);

    v = bound_vector("signed group mode: an empty content type is bound (count 1), not absent",
                     secret, "plant-a", "plant/a/valve/3", &sg, "open 40%", "content-type",
                     ct_only, 1, 0, sk);
    refused = cJSON_CreateArray();
    add_refused(refused, "content type removed (absent is not empty)", NULL, 0, 0);
    cJSON_AddItemToObject(v, "refused", refused);
    cJSON_AddItemToArray(arr, v);
    return arr;
}

static void gen_envelopes(const char *dir)
{
    uint8_t secret[32], secret2[32], seed[32], pk[32], sk[64];
    uint8_t env[1024], bad[1024];
    size_t n = 0;
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_CreateArray(), *bads = cJSON_CreateArray();
    mqe2e_envelope_header ex = {MQE2E_MODE_GROUP, 7, 0xC0FFEE, 1000, UINT64_C(0x5eed1234abcd)};
    mqe2e_envelope_header zero = {MQE2E_MODE_GROUP, 0, 0, 0, 0};
    mqe2e_envelope_header sg = {MQE2E_MODE_SIGNED_GROUP, 3, 0x00abcdef, 42,
                                UINT64_C(0x010203040506)};

    fill(secret, 32, 0);
    memset(secret2, 0xa5, 32);
    fill(seed, 32, 0x20);
    crypto_sign_seed_keypair(pk, sk, seed);
    cJSON_AddStringToObject(root, "source",
                            "docs/PROTOCOL.md 2 (group), 2.9 (signed), 8.7 (channel)");

    cJSON_AddItemToArray(arr,
                         env_vector("worked example of docs/PROTOCOL.md 2.8", secret, "hr-monitors",
                                    "fleet/device-42/hr", &ex, "{\"bpm\":72}", NULL, env, &n));
    /* Negative vectors derived from the worked example. */
    memcpy(bad, env, n);
    bad[n - 1] ^= 0x01;
    add_bad(bads, "last tag byte flipped", "group:0", NULL, bad, n, "auth");
    add_bad(bads, "moved to another topic", "group:0", "fleet/device-43/hr", env, n, "auth");
    memcpy(bad, env, n);
    bad[n] = 0x00;
    add_bad(bads, "one trailing byte (field 0)", "group:0", NULL, bad, n + 1, "decode");
    memcpy(bad, env, n);
    bad[3] ^= 0x01; /* sender 0xC0FFEE -> 0xC0FFEF: another sender's key */
    add_bad(bads, "sender id changed", "group:0", NULL, bad, n, "auth");
    /* Drop the instance field (bytes 7..14): refused before any key work. */
    memcpy(bad, env, 7);
    memcpy(bad + 7, env + 15, n - 15);
    add_bad(bads, "instance field removed", "group:0", NULL, bad, n - 8, "decode");
    memcpy(bad, env, n);
    bad[18] = 0x12; /* body key 0x0a (field 1) -> 0x12 (field 2, channel) */
    add_bad(bads, "body relabelled as a channel body", "group:0", NULL, bad, n, "suite");
    memcpy(bad, env, n);
    bad[18] = 0x1a; /* group body relabelled as signed, no signature */
    add_bad(bads, "group body relabelled as signed, no signature", "group:0", NULL, bad, n,
            "decode");

    cJSON_AddItemToArray(arr, env_vector("zero epoch, sender and seq are omitted; instance 0 is "
                                         "still written; empty plaintext",
                                         secret2, "g", "t", &zero, "", NULL, env, &n));
    cJSON_AddItemToArray(arr, env_vector("signed group mode", secret, "plant-a", "plant/a/valve/3",
                                         &sg, "open 40%", sk, env, &n));
    memcpy(bad, env, n);
    bad[n - 1] ^= 0x80;
    add_bad(bads, "signature byte flipped", "group:2", NULL, bad, n, "auth");
    cJSON_AddItemToObject(root, "envelopes", arr);

    arr = cJSON_CreateArray();
    channel_vector(arr, "channel, generation 0, initiator to responder, first message", 0, 0, 0,
                   "mqe2e/client/pump-7", "stop");
    channel_vector(arr, "channel, generation 2, responder to initiator, n = 300", 2, 1, 300,
                   "mqe2e/client/backend-1", "{\"cmd\":\"reboot\"}");
    cJSON_AddItemToObject(root, "channel_envelopes", arr);
    cJSON_AddItemToObject(root, "bad_envelopes", bads);
    cJSON_AddItemToObject(root, "bound_envelopes", gen_bound(secret, sk));
    sodium_memzero(sk, sizeof sk);
    write_json(dir, "envelope-v1.json", root);
}

/* ---- control frames -------------------------------------------------- */

static void add_keypair(cJSON *o, const char *pfx, const uint8_t sk[32])
{
    char name[64];
    uint8_t pk[32];
    crypto_scalarmult_base(pk, sk);
    snprintf(name, sizeof name, "%s_dh_secret", pfx);
    add_hex(o, name, sk, 32);
    snprintf(name, sizeof name, "%s_dh_public", pfx);
    add_hex(o, name, pk, 32);
}

/* A whole HELLO exchange whose client side is deterministic: the client's
 * ephemeral secret and session are published, so a checker can replay step 1
 * byte for byte and read the authority's step 2 (written by the library's
 * authority side, with its own random ephemeral). */
static void gen_hello_exchange(cJSON *root, const uint8_t auth_sk[32], const uint8_t dev_sk[32],
                               const mqe2e_key_bundle *bundle)
{
    uint8_t e_sk[32], session[16], auth_pk[32], dev_pk[32], req[64];
    uint8_t f1[1024], f2[MQE2E_CONTROL_MAX_FRAME_BYTES], prologue[64];
    uint8_t *payload = NULL;
    size_t n1 = 0, n2 = 0, rlen, cap = 0, plen = 0, pl = 0;
    mqe2e_noise_handshake *hs = NULL;
    mqe2e_hello_authority *as = NULL;
    mqe2e_hello_request hr;
    mqe2e_control_update reply, got;
    mqe2e_control_frame f;
    Mqe2e__V1__Hello m;
    cJSON *o = cJSON_CreateObject();

    fill(e_sk, 32, 0xe0);
    fill(session, 16, 0x50);
    crypto_scalarmult_base(auth_pk, auth_sk);
    crypto_scalarmult_base(dev_pk, dev_sk);
    CHECK(mqe2e__control_handshake(&hs, MQE2E_CONTROL_HELLO, MQE2E_NOISE_INITIATOR, "mqe2e",
                                   session));
    CHECK(mqe2e_noise_handshake_set_local_static(hs, dev_sk));
    CHECK(mqe2e_noise_handshake_set_remote_static(hs, auth_pk));
    CHECK(mqe2e_noise_handshake_set_ephemeral(hs, e_sk));
    mqe2e__v1__hello__init(&m);
    m.client_id = (char *)(uintptr_t) "sensor-1";
    m.credential_serial = 17;
    rlen = mqe2e__v1__hello__get_packed_size(&m);
    if (rlen > sizeof req) exit(1);
    mqe2e__v1__hello__pack(&m, req);
    CHECK(mqe2e__control_write(f1, sizeof f1, &n1, hs, MQE2E_CONTROL_HELLO, "sensor-1", session, 1,
                               req, rlen));

    CHECK(mqe2e_hello_accept_read(&as, &hr, auth_sk, "mqe2e", f1, n1));
    CHECK(mqe2e_hello_accept_check_static(as, dev_pk));
    memset(&reply, 0, sizeof reply);
    reply.status = MQE2E_STATUS_OK;
    reply.push_seq = 8;
    reply.bundles = (mqe2e_key_bundle *)(uintptr_t)bundle;
    reply.n_bundles = 1;
    CHECK(mqe2e_hello_accept_write(as, f2, sizeof f2, &n2, "authority", &reply));
    mqe2e_hello_authority_free(as);

    CHECK(mqe2e_control_frame_decode(&f, f2, n2));
    CHECK(mqe2e__control_read(&payload, &cap, &plen, hs, &f));
    CHECK(mqe2e__control_unpack_update(&got, MQE2E__PAYLOAD_HELLO_REPLY, payload, plen));
    if (got.push_seq != 8 || got.n_bundles != 1) exit(1);
    mqe2e_control_update_wipe(&got);

    memcpy(prologue + pl, "mqe2e/v1/hello", 14);
    pl += 14;
    prologue[pl++] = 0;
    memcpy(prologue + pl, "mqe2e", 5);
    pl += 5;
    prologue[pl++] = 0;
    memcpy(prologue + pl, session, 16);
    pl += 16;
    cJSON_AddStringToObject(o, "note", "client side deterministic: ephemeral and session given");
    cJSON_AddStringToObject(o, "protocol", "Noise_IK_25519_ChaChaPoly_SHA256");
    add_hex(o, "session", session, 16);
    add_hex(o, "prologue", prologue, pl);
    add_hex(o, "client_ephemeral_secret", e_sk, 32);
    add_hex(o, "request_payload", req, rlen);
    add_hex(o, "step1_frame", f1, n1);
    add_hex(o, "step2_frame", f2, n2);
    add_hex(o, "reply_payload", payload, plen);
    cJSON_AddNumberToObject(o, "push_seq", 8);
    cJSON_AddStringToObject(o, "bundle_group", bundle->group);
    cJSON_AddNumberToObject(o, "bundle_epoch", bundle->epoch);
    add_hex(o, "bundle_secret", bundle->secret, 32);
    cJSON_AddItemToObject(root, "hello_exchange", o);
    mqe2e__control_free_wiped(payload, cap);
    mqe2e_noise_handshake_free(hs);
    sodium_memzero(e_sk, sizeof e_sk);
}

/* A whole ENROLL exchange whose device side is reproducible (ephemeral and
 * session published): token_mac as PROTOCOL.md 8.3 states it, step 1 written
 * over the Noise state, step 2 by the library's authority side with a real
 * credential signed by the ticket's authority key. */
static void gen_enroll_exchange(cJSON *root, const mqe2e_ticket *t, const uint8_t auth_sk[32],
                                const uint8_t a_sign_sk[64], const uint8_t dev_sk[32],
                                const uint8_t sign_pk[32], const mqe2e_key_bundle *bundle)
{
    static const char domain[] = "mqe2e/v1/enroll-mac";
    uint8_t e_sk[32], e_pk[32], session[16], dev_pk[32], mac[32], req[512];
    uint8_t f1[1024], f2[MQE2E_CONTROL_MAX_FRAME_BYTES], prologue[64];
    uint8_t *payload = NULL, *cred = NULL;
    size_t n1 = 0, n2 = 0, rlen, cap = 0, plen = 0, pl = 0, cred_len = 0;
    mqe2e_noise_handshake *hs = NULL;
    mqe2e_enroll_authority *as = NULL;
    mqe2e_enroll_request er;
    mqe2e_control_update reply, got;
    mqe2e_control_frame f;
    crypto_auth_hmacsha256_state st;
    Mqe2e__V1__EnrollRequest m;
    mqe2e_grant grant = {"sensors/sensor-1/#", MQE2E_RIGHT_PUBLISH};
    mqe2e_credential_request cr;
    cJSON *o = cJSON_CreateObject();

    fill(e_sk, 32, 0xd0);
    fill(session, 16, 0x70);
    crypto_scalarmult_base(e_pk, e_sk);
    crypto_scalarmult_base(dev_pk, dev_sk);
    crypto_auth_hmacsha256_init(&st, t->token, 32);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)domain, sizeof domain - 1U);
    crypto_auth_hmacsha256_update(&st, session, 16);
    crypto_auth_hmacsha256_update(&st, e_pk, 32);
    crypto_auth_hmacsha256_update(&st, dev_pk, 32);
    crypto_auth_hmacsha256_update(&st, sign_pk, 32);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)t->client_id, strlen(t->client_id));
    crypto_auth_hmacsha256_final(&st, mac);

    CHECK(mqe2e__control_handshake(&hs, MQE2E_CONTROL_ENROLL, MQE2E_NOISE_INITIATOR,
                                   t->control_prefix, session));
    CHECK(mqe2e_noise_handshake_set_local_static(hs, dev_sk));
    CHECK(mqe2e_noise_handshake_set_remote_static(hs, t->authority_dh_public));
    CHECK(mqe2e_noise_handshake_set_psk(hs, t->token));
    CHECK(mqe2e_noise_handshake_set_ephemeral(hs, e_sk));
    mqe2e__v1__enroll_request__init(&m);
    m.token_id.data = (uint8_t *)(uintptr_t)t->token_id;
    m.token_id.len = 16;
    m.client_id = (char *)(uintptr_t)t->client_id;
    m.sign_public.data = (uint8_t *)(uintptr_t)sign_pk;
    m.sign_public.len = 32;
    m.token_mac.data = mac;
    m.token_mac.len = 32;
    rlen = mqe2e__v1__enroll_request__get_packed_size(&m);
    if (rlen > sizeof req) exit(1);
    mqe2e__v1__enroll_request__pack(&m, req);
    CHECK(mqe2e__control_write(f1, sizeof f1, &n1, hs, MQE2E_CONTROL_ENROLL, t->client_id, session,
                               1, req, rlen));

    CHECK(mqe2e_enroll_accept_read(&as, &er, auth_sk, t->control_prefix, f1, n1));
    CHECK(mqe2e_enroll_accept_verify_mac(as, t->token));
    memset(&cr, 0, sizeof cr);
    cr.client_id = t->client_id;
    cr.role = "device";
    memcpy(cr.sign_public, sign_pk, 32);
    memcpy(cr.dh_public, dev_pk, 32);
    cr.grants = &grant;
    cr.n_grants = 1;
    cr.issued_at = 1700000000;
    cr.expires_at = 4102444800; /* 2100-01-01 */
    cr.serial = 42;
    CHECK(mqe2e_credential_issue(&cred, &cred_len, a_sign_sk, &cr));
    memset(&reply, 0, sizeof reply);
    reply.status = MQE2E_STATUS_OK;
    reply.credential = cred;
    reply.credential_len = cred_len;
    reply.bundles = (mqe2e_key_bundle *)(uintptr_t)bundle;
    reply.n_bundles = 1;
    CHECK(mqe2e_enroll_accept_write(as, f2, sizeof f2, &n2, t->authority_id, &reply));
    mqe2e_enroll_authority_free(as);

    CHECK(mqe2e_control_frame_decode(&f, f2, n2));
    CHECK(mqe2e__control_read(&payload, &cap, &plen, hs, &f));
    CHECK(mqe2e__control_unpack_update(&got, MQE2E__PAYLOAD_ENROLL_REPLY, payload, plen));
    if (got.credential_len != cred_len || got.n_bundles != 1) exit(1);
    mqe2e_control_update_wipe(&got);

    memcpy(prologue + pl, "mqe2e/v1/enroll", 15);
    pl += 15;
    prologue[pl++] = 0;
    memcpy(prologue + pl, t->control_prefix, strlen(t->control_prefix));
    pl += strlen(t->control_prefix);
    prologue[pl++] = 0;
    memcpy(prologue + pl, session, 16);
    pl += 16;
    cJSON_AddStringToObject(o, "note",
                            "device side deterministic: ephemeral and session given; "
                            "psk = the ticket's token");
    cJSON_AddStringToObject(o, "protocol", "Noise_IKpsk2_25519_ChaChaPoly_SHA256");
    add_hex(o, "session", session, 16);
    add_hex(o, "prologue", prologue, pl);
    add_hex(o, "device_ephemeral_secret", e_sk, 32);
    add_hex(o, "device_ephemeral_public", e_pk, 32);
    add_hex(o, "token_mac", mac, 32);
    add_hex(o, "request_payload", req, rlen);
    add_hex(o, "step1_frame", f1, n1);
    add_hex(o, "step2_frame", f2, n2);
    add_hex(o, "reply_payload", payload, plen);
    add_hex(o, "credential", cred, cred_len);
    cJSON_AddNumberToObject(o, "credential_serial", 42);
    cJSON_AddStringToObject(o, "bundle_group", bundle->group);
    cJSON_AddNumberToObject(o, "bundle_epoch", bundle->epoch);
    cJSON_AddItemToObject(root, "enroll_exchange", o);
    free(cred);
    mqe2e__control_free_wiped(payload, cap);
    mqe2e_noise_handshake_free(hs);
    sodium_memzero(e_sk, sizeof e_sk);
}

static void gen_control(const char *dir)
{
    uint8_t auth_sk[32], auth_pk[32], dev_sk[32], sign_seed[32], sign_pk[32], sign_sk[64];
    uint8_t a_sign_sk[64];
    uint8_t out[MQE2E_CONTROL_MAX_FRAME_BYTES];
    size_t n = 0;
    mqe2e_ticket t;
    char *ticket_text = NULL;
    cJSON *root = cJSON_CreateObject(), *o;
    mqe2e_enroll_device *ed = NULL;
    mqe2e_hello_client *hc = NULL;
    mqe2e_key_bundle b[2];
    mqe2e_group_name rm;
    mqe2e_control_update push;

    fill(auth_sk, 32, 0x80);
    fill(dev_sk, 32, 0xa0);
    fill(sign_seed, 32, 0xc0);
    crypto_scalarmult_base(auth_pk, auth_sk);
    crypto_sign_seed_keypair(sign_pk, sign_sk, sign_seed);
    cJSON_AddStringToObject(
        root, "source",
        "docs/PROTOCOL.md 8.1 (frame), 8.3 (ENROLL), 8.4 (HELLO), 8.5 (PUSH); "
        "Noise ephemerals are random, so the receiving side is what is checked");
    cJSON_AddStringToObject(root, "prefix", "mqe2e");
    cJSON_AddStringToObject(root, "authority_id", "authority");
    add_keypair(root, "authority", auth_sk);
    add_keypair(root, "device", dev_sk);
    add_hex(root, "device_sign_public", sign_pk, 32);

    /* Ticket and ENROLL step 1. */
    memset(&t, 0, sizeof t);
    fill(t.authority_sign_public, 32, 0); /* replaced below by a real key */
    {
        uint8_t a_seed[32];
        fill(a_seed, 32, 0x60);
        crypto_sign_seed_keypair(t.authority_sign_public, a_sign_sk, a_seed);
    }
    memcpy(t.authority_dh_public, auth_pk, 32);
    strcpy(t.authority_id, "authority");
    strcpy(t.control_prefix, "mqe2e");
    fill(t.token_id, 16, 0x10);
    fill(t.token, 32, 0x30);
    strcpy(t.client_id, "sensor-1");
    t.expires_at = UINT64_C(4102444800); /* 2100-01-01 */
    CHECK(mqe2e_ticket_encode(&ticket_text, &t));
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "text", ticket_text);
    add_hex(o, "authority_sign_public", t.authority_sign_public, 32);
    add_hex(o, "authority_dh_public", t.authority_dh_public, 32);
    cJSON_AddStringToObject(o, "authority_id", t.authority_id);
    cJSON_AddStringToObject(o, "control_prefix", t.control_prefix);
    add_hex(o, "token_id", t.token_id, 16);
    add_hex(o, "token", t.token, 32);
    cJSON_AddStringToObject(o, "client_id", t.client_id);
    cJSON_AddNumberToObject(o, "expires_at", (double)t.expires_at);
    cJSON_AddItemToObject(root, "ticket", o);
    mqe2e_ticket_text_free(ticket_text);

    CHECK(mqe2e_enroll_begin(&ed, out, sizeof out, &n, &t, dev_sk, sign_pk, 1700000000));
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "topic", "mqe2e/authority");
    cJSON_AddNumberToObject(o, "kind", 1);
    cJSON_AddNumberToObject(o, "step", 1);
    cJSON_AddStringToObject(o, "from", "sensor-1");
    add_hex(o, "frame", out, n);
    cJSON_AddItemToObject(root, "enroll_step1", o);
    mqe2e_enroll_device_free(ed);

    /* HELLO step 1. */
    CHECK(mqe2e_hello_begin(&hc, out, sizeof out, &n, "mqe2e", "sensor-1", "authority", dev_sk,
                            auth_pk, 17));
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "topic", "mqe2e/authority");
    cJSON_AddNumberToObject(o, "kind", 2);
    cJSON_AddNumberToObject(o, "step", 1);
    cJSON_AddStringToObject(o, "from", "sensor-1");
    cJSON_AddNumberToObject(o, "credential_serial", 17);
    add_hex(o, "frame", out, n);
    cJSON_AddItemToObject(root, "hello_step1", o);
    mqe2e_hello_client_free(hc);

    /* PUSH: two bundles and one removed group. */
    memset(b, 0, sizeof b);
    memset(&push, 0, sizeof push);
    strcpy(b[0].group, "telemetry");
    strcpy(b[0].topic_filter, "fleet/+/telemetry");
    b[0].epoch = 4;
    fill(b[0].secret, 32, 0x55);
    b[0].created_at = 1700000100;
    b[0].sender_id = 1234;
    strcpy(b[1].group, "telemetry");
    strcpy(b[1].topic_filter, "fleet/+/telemetry");
    b[1].epoch = 3;
    fill(b[1].secret, 32, 0x77);
    b[1].created_at = 1699990000;
    b[1].sender_id = 1234;
    b[1].retired_at = 1700000100;
    b[1].grace_seconds = 60;
    strcpy(rm.name, "old-group");
    push.push_seq = 9;
    push.bundles = b;
    push.n_bundles = 2;
    push.removed_groups = &rm;
    push.n_removed_groups = 1;
    {
        uint8_t dev_pk[32];
        crypto_scalarmult_base(dev_pk, dev_sk);
        CHECK(mqe2e_push_seal(out, sizeof out, &n, auth_sk, dev_pk, "mqe2e", "authority", &push));
    }
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "topic", "mqe2e/client/sensor-1");
    cJSON_AddNumberToObject(o, "kind", 3);
    cJSON_AddNumberToObject(o, "step", 1);
    cJSON_AddStringToObject(o, "from", "authority");
    cJSON_AddNumberToObject(o, "push_seq", 9);
    {
        cJSON *ba = cJSON_CreateArray();
        for (int i = 0; i < 2; i++) {
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "group", b[i].group);
            cJSON_AddStringToObject(x, "topic_filter", b[i].topic_filter);
            cJSON_AddNumberToObject(x, "epoch", b[i].epoch);
            add_hex(x, "secret", b[i].secret, 32);
            cJSON_AddNumberToObject(x, "created_at", (double)b[i].created_at);
            cJSON_AddNumberToObject(x, "sender_id", b[i].sender_id);
            cJSON_AddNumberToObject(x, "retired_at", (double)b[i].retired_at);
            cJSON_AddNumberToObject(x, "grace_seconds", b[i].grace_seconds);
            cJSON_AddItemToArray(ba, x);
        }
        cJSON_AddItemToObject(o, "bundles", ba);
        cJSON *ra = cJSON_CreateArray();
        cJSON_AddItemToArray(ra, cJSON_CreateString(rm.name));
        cJSON_AddItemToObject(o, "removed_groups", ra);
    }
    add_hex(o, "frame", out, n);
    cJSON_AddItemToObject(root, "push", o);
    gen_hello_exchange(root, auth_sk, dev_sk, b);
    gen_enroll_exchange(root, &t, auth_sk, a_sign_sk, dev_sk, sign_pk, b);
    sodium_memzero(sign_sk, sizeof sign_sk);
    sodium_memzero(a_sign_sk, sizeof a_sign_sk);
    mqe2e_ticket_wipe(&t);
    write_json(dir, "control-v1.json", root);
}

/* ---- channel handshake (8.6, 8.7) -------------------------------------- */

typedef struct peer {
    const char *id;
    uint8_t dh_sk[32], dh_pk[32], sign_pk[32], e_sk[32], e_pk[32];
    uint8_t *cred;
    size_t cred_len;
    uint64_t serial;
    mqe2e_noise_handshake *hs;
} peer;

static void peer_make(peer *p, const char *id, uint8_t dh, uint8_t sign, uint8_t eph,
                      uint64_t serial, const uint8_t a_sign_sk[64])
{
    uint8_t seed[32], sk[64];
    mqe2e_grant grant = {"cmd/#", MQE2E_RIGHT_PUBLISH};
    mqe2e_credential_request cr;

    p->id = id;
    p->serial = serial;
    fill(p->dh_sk, 32, dh);
    crypto_scalarmult_base(p->dh_pk, p->dh_sk);
    fill(seed, 32, sign);
    crypto_sign_seed_keypair(p->sign_pk, sk, seed);
    sodium_memzero(sk, sizeof sk);
    fill(p->e_sk, 32, eph);
    crypto_scalarmult_base(p->e_pk, p->e_sk);
    memset(&cr, 0, sizeof cr);
    cr.client_id = id;
    cr.role = "device";
    memcpy(cr.sign_public, p->sign_pk, 32);
    memcpy(cr.dh_public, p->dh_pk, 32);
    cr.grants = &grant;
    cr.n_grants = 1;
    cr.issued_at = 1700000000;
    cr.expires_at = 4102444800; /* 2100-01-01 */
    cr.serial = serial;
    CHECK(mqe2e_credential_issue(&p->cred, &p->cred_len, a_sign_sk, &cr));
}

/* ChannelHello{client_id, credential if @p with_cred} packed into @p buf. */
static size_t channel_hello(uint8_t *buf, size_t cap, const peer *p, int with_cred)
{
    Mqe2e__V1__ChannelHello m;
    size_t n;
    mqe2e__v1__channel_hello__init(&m);
    m.client_id = (char *)(uintptr_t)p->id;
    if (with_cred) {
        m.credential.data = p->cred;
        m.credential.len = p->cred_len;
    }
    n = mqe2e__v1__channel_hello__get_packed_size(&m);
    if (n > cap) exit(1);
    mqe2e__v1__channel_hello__pack(&m, buf);
    return n;
}

/* One step: @p w writes ChannelHello into a frame, @p r reads it back and
 * must get the same payload. */
static void channel_step(cJSON *o, const char *name, peer *w, peer *r, const uint8_t session[16],
                         uint32_t step, int with_cred)
{
    uint8_t payload[1024], frame[MQE2E_CONTROL_MAX_FRAME_BYTES], *got = NULL;
    size_t plen = channel_hello(payload, sizeof payload, w, with_cred), n = 0, cap = 0, glen = 0;
    mqe2e_control_frame f;
    char key[32];

    CHECK(mqe2e__control_write(frame, sizeof frame, &n, w->hs, MQE2E_CONTROL_CHANNEL, w->id,
                               session, step, payload, plen));
    CHECK(mqe2e_control_frame_decode(&f, frame, n));
    CHECK(mqe2e__control_read(&got, &cap, &glen, r->hs, &f));
    if (glen != plen || memcmp(got, payload, plen) != 0) exit(1);
    mqe2e__control_free_wiped(got, cap);
    snprintf(key, sizeof key, "%s_payload", name);
    add_hex(o, key, payload, plen);
    snprintf(key, sizeof key, "%s_frame", name);
    add_hex(o, key, frame, n);
}

static void add_peer(cJSON *root, const char *role, const peer *p)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "client_id", p->id);
    add_hex(o, "dh_secret", p->dh_sk, 32);
    add_hex(o, "dh_public", p->dh_pk, 32);
    add_hex(o, "sign_public", p->sign_pk, 32);
    add_hex(o, "ephemeral_secret", p->e_sk, 32);
    add_hex(o, "ephemeral_public", p->e_pk, 32);
    add_hex(o, "credential", p->cred, p->cred_len);
    cJSON_AddNumberToObject(o, "credential_serial", (double)p->serial);
    cJSON_AddItemToObject(root, role, o);
}

static void first_message(cJSON *arr, mqe2e_noise_cipher *cs, uint32_t dir,
                          const uint8_t session[16], const char *topic, const char *pt)
{
    uint8_t ad[512], env[512];
    size_t adl = 0, envl = seal_channel(cs, env, sizeof env, ad, &adl, 0, dir, 0, topic,
                                        session, pt);
    cJSON *v = cJSON_CreateObject();
    cJSON_AddNumberToObject(v, "direction", dir);
    cJSON_AddNumberToObject(v, "generation", 0);
    cJSON_AddNumberToObject(v, "seq", 0);
    cJSON_AddStringToObject(v, "topic", topic);
    add_hex(v, "plaintext", (const uint8_t *)pt, strlen(pt));
    add_hex(v, "ad", ad, adl);
    add_hex(v, "envelope", env, envl);
    cJSON_AddItemToArray(arr, v);
}

/* A whole CHANNEL handshake with both sides deterministic (statics,
 * ephemerals, session and credentials fixed), its split keys and the first
 * envelope each way. Byte-identical on every run. */
static void gen_channel(const char *dir)
{
    uint8_t a_seed[32], a_sign_pk[32], a_sign_sk[64], session[16], prologue[64], hh[32];
    uint8_t k[32];
    size_t pl = 0;
    peer ini, res;
    mqe2e_noise_cipher *i_send = NULL, *i_recv = NULL, *r_send = NULL, *r_recv = NULL;
    cJSON *root = cJSON_CreateObject(), *ex = cJSON_CreateObject(), *msgs = cJSON_CreateArray();

    fill(a_seed, 32, 0x60);
    crypto_sign_seed_keypair(a_sign_pk, a_sign_sk, a_seed);
    peer_make(&ini, "sensor-1", 0xa0, 0xc0, 0xe8, 101, a_sign_sk);
    peer_make(&res, "gateway-1", 0xb0, 0xb8, 0xf0, 102, a_sign_sk);
    sodium_memzero(a_sign_sk, sizeof a_sign_sk);
    fill(session, 16, 0x30);
    CHECK(mqe2e__control_handshake(&ini.hs, MQE2E_CONTROL_CHANNEL, MQE2E_NOISE_INITIATOR, "mqe2e",
                                   session));
    CHECK(mqe2e__control_handshake(&res.hs, MQE2E_CONTROL_CHANNEL, MQE2E_NOISE_RESPONDER, "mqe2e",
                                   session));
    CHECK(mqe2e_noise_handshake_set_local_static(ini.hs, ini.dh_sk));
    CHECK(mqe2e_noise_handshake_set_local_static(res.hs, res.dh_sk));
    CHECK(mqe2e_noise_handshake_set_ephemeral(ini.hs, ini.e_sk));
    CHECK(mqe2e_noise_handshake_set_ephemeral(res.hs, res.e_sk));
    memcpy(prologue + pl, "mqe2e/v1/channel", 16);
    pl += 16;
    prologue[pl++] = 0;
    memcpy(prologue + pl, "mqe2e", 5);
    pl += 5;
    prologue[pl++] = 0;
    memcpy(prologue + pl, session, 16);
    pl += 16;

    cJSON_AddStringToObject(root, "source",
                            "docs/PROTOCOL.md 8.1 (frame), 8.6 (channels), 8.7 (channel envelope)");
    cJSON_AddStringToObject(root, "prefix", "mqe2e");
    add_hex(root, "authority_sign_public", a_sign_pk, 32);
    cJSON_AddNumberToObject(root, "now", 1700000001);
    add_peer(root, "initiator", &ini);
    add_peer(root, "responder", &res);
    cJSON_AddStringToObject(ex, "protocol", "Noise_XX_25519_ChaChaPoly_SHA256");
    add_hex(ex, "session", session, 16);
    add_hex(ex, "prologue", prologue, pl);
    channel_step(ex, "step1", &ini, &res, session, 1, 0);
    channel_step(ex, "step2", &res, &ini, session, 2, 1);
    channel_step(ex, "step3", &ini, &res, session, 3, 1);
    CHECK(mqe2e_noise_handshake_hash(ini.hs, hh));
    add_hex(ex, "handshake_hash", hh, 32);
    CHECK(mqe2e_noise_split(ini.hs, &i_send, &i_recv));
    CHECK(mqe2e_noise_split(res.hs, &r_send, &r_recv));
    CHECK(mqe2e_noise_cipher_export_key(i_send, k));
    add_hex(ex, "initiator_to_responder_k0", k, 32);
    CHECK(mqe2e_noise_cipher_export_key(r_send, k));
    add_hex(ex, "responder_to_initiator_k0", k, 32);
    sodium_memzero(k, sizeof k);
    cJSON_AddItemToObject(root, "exchange", ex);
    first_message(msgs, i_send, 0, session, "cmd/gateway-1/hello", "ping from sensor-1");
    first_message(msgs, r_send, 1, session, "cmd/sensor-1/hello", "pong from gateway-1");
    cJSON_AddItemToObject(root, "first_messages", msgs);
    mqe2e_noise_cipher_free(i_send);
    mqe2e_noise_cipher_free(i_recv);
    mqe2e_noise_cipher_free(r_send);
    mqe2e_noise_cipher_free(r_recv);
    mqe2e_noise_handshake_free(ini.hs);
    mqe2e_noise_handshake_free(res.hs);
    free(ini.cred);
    free(res.cred);
    write_json(dir, "channel-v1.json", root);
}

int main(int argc, char **argv)
{
    if (argc != 2 || mqe2e_init() != MQE2E_OK) {
        fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
        return 2;
    }
    gen_key_schedule(argv[1]);
    gen_envelopes(argv[1]);
    gen_control(argv[1]);
    gen_channel(argv[1]);
    return 0;
}
