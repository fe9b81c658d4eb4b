/*
 * Writes small valid inputs for every fuzz target under <dir>/<target>/,
 * made with the same fixed keys the harnesses use (fuzz_common.h), so the
 * fuzzers start past the signature, AEAD and handshake checks.
 * Usage: make_seeds <corpus dir>
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_common.h"
#include "internal_keystore.h"
#include "mqe2e/control.h"
#include "mqe2e/credential.h"
#include "mqe2e/envelope.h"
#include "mqe2e/error.h"
#include "mqe2e/keystore.h"
#include "mqe2e/noise.h"
#include "mqe2e/storage.h"
#include "proto/credential.pb-c.h"

static const char *root;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "make_seeds: %s failed (%s:%d)\n", #cond, __FILE__, __LINE__); \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

/* Write [mode byte if mode >= 0] || data to root/target/name. */
static void seed(const char *target, const char *name, int mode, const void *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, target);
    CHECK(mkdir(path, 0755) == 0 || errno == EEXIST);
    snprintf(path, sizeof path, "%s/%s/%s", root, target, name);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (mode >= 0) CHECK(fputc(mode, f) != EOF);
    if (len > 0) CHECK(fwrite(data, 1, len, f) == len);
    CHECK(fclose(f) == 0);
}

static int sign_fixed(void *ctx, uint8_t sig[MQE2E_SIGNATURE_BYTES], const uint8_t *msg,
                      size_t msg_len)
{
    uint8_t pk[32], sk[64];
    (void)ctx;
    fuzz_signer_keys(pk, sk);
    int rc = crypto_sign_detached(sig, NULL, msg, msg_len, sk);
    sodium_memzero(sk, sizeof sk);
    return rc == 0 ? 0 : -1;
}

static void envelope_seeds(void)
{
    uint8_t secret[32], out[512], pt[200];
    const struct {
        uint32_t epoch, sender;
        uint64_t seq;
        size_t len;
        uint64_t instance;
    } v[] = {{1, 7, 1, 5, 0x123456789abcU},
             {1, 7, 2, 0, 0},
             {2, 9, 300, 200, 1},
             {0xffffffffu, 0xffffffffu, MQE2E_SEQ_MAX, 16, MQE2E_INSTANCE_MAX}};
    fuzz_group_secret(secret);
    for (size_t i = 0; i < sizeof pt; i++) pt[i] = (uint8_t)i;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        mqe2e_sender_key key;
        mqe2e_envelope_header h = {MQE2E_MODE_GROUP, v[i].epoch, v[i].sender, v[i].seq,
                                   v[i].instance};
        size_t len = 0;
        char name[32];
        CHECK(mqe2e_sender_key_derive(&key, secret, FUZZ_GROUP, v[i].epoch, v[i].sender) == 0);
        CHECK(mqe2e_envelope_seal(out, sizeof out, &len, &key, FUZZ_TOPIC, FUZZ_GROUP, &h, pt,
                                  v[i].len) == 0);
        snprintf(name, sizeof name, "sealed-%zu", i);
        seed("envelope", name, -1, out, len);
        /* The same message in signed group mode, signed by the fixed signer. */
        h.mode = MQE2E_MODE_SIGNED_GROUP;
        CHECK(mqe2e_envelope_seal_signed(out, sizeof out, &len, &key, FUZZ_TOPIC, FUZZ_GROUP, &h,
                                         pt, v[i].len, sign_fixed, NULL) == 0);
        snprintf(name, sizeof name, "signed-%zu", i);
        seed("envelope", name, -1, out, len);
        mqe2e_sender_key_wipe(&key);
    }
}

static void credential_seeds(const uint8_t auth_sk[64])
{
    uint8_t sign_pk[32], sign_sk[64], *enc = NULL;
    size_t enc_len = 0;
    mqe2e_grant grants[] = {{"sensors/#", MQE2E_RIGHT_PUBLISH},
                            {"cmd/fuzz-device/+", MQE2E_RIGHT_SUBSCRIBE},
                            {"$SYS/x", MQE2E_RIGHT_ALL}};
    mqe2e_credential_request req;
    memset(&req, 0, sizeof req);
    crypto_sign_keypair(sign_pk, sign_sk);
    req.client_id = "fuzz-device";
    req.role = "device";
    memcpy(req.sign_public, sign_pk, 32);
    fuzz_dh_public(req.dh_public, 2);
    req.grants = grants;
    req.n_grants = 3;
    req.issued_at = FUZZ_NOW - 3600;
    req.expires_at = FUZZ_NOW + 86400 * 30;
    req.serial = 42;
    for (size_t n = 0; n <= 3; n += 3) {
        req.n_grants = n;
        CHECK(mqe2e_credential_issue(&enc, &enc_len, auth_sk, &req) == 0);
        Mqe2e__V1__Credential *c = mqe2e__v1__credential__unpack(NULL, enc_len, enc);
        CHECK(c != NULL);
        seed("credential", n ? "signed-3-grants" : "signed-0-grants", 0, enc, enc_len);
        seed("credential", n ? "body-3-grants" : "body-0-grants", 1, c->body.data, c->body.len);
        mqe2e__v1__credential__free_unpacked(c, NULL);
        free(enc);
    }
    sodium_memzero(sign_sk, sizeof sign_sk);
}

static void revocation_seeds(const uint8_t auth_sk[64])
{
    mqe2e_revocation_entry e[] = {{"fuzz-device", 42, FUZZ_NOW - 10},
                                  {"alpha", 0, FUZZ_NOW - 20},
                                  {"fuzz-device", 7, FUZZ_NOW - 30}};
    uint8_t *enc = NULL;
    size_t enc_len = 0;
    for (size_t n = 0; n <= 3; n += 3) {
        CHECK(mqe2e_revocation_list_sign(&enc, &enc_len, auth_sk, 3, FUZZ_NOW, n ? e : NULL, n) ==
              0);
        Mqe2e__V1__RevocationList *l = mqe2e__v1__revocation_list__unpack(NULL, enc_len, enc);
        CHECK(l != NULL);
        seed("revocation", n ? "signed-3" : "signed-0", 0, enc, enc_len);
        seed("revocation", n ? "body-3" : "body-0", 1, l->body.data, l->body.len);
        mqe2e__v1__revocation_list__free_unpacked(l, NULL);
        free(enc);
    }
    /* With retired sender ids and a next update (issue 11). */
    mqe2e_retired_sender r[] = {{"fleet", 7}, {"ward", 3}};
    mqe2e_revocation_contents c = {4, FUZZ_NOW, FUZZ_NOW + 3600, e, 3, r, 2};
    CHECK(mqe2e_revocation_list_sign_contents(&enc, &enc_len, auth_sk, &c) == 0);
    Mqe2e__V1__RevocationList *l = mqe2e__v1__revocation_list__unpack(NULL, enc_len, enc);
    CHECK(l != NULL);
    seed("revocation", "signed-retired", 0, enc, enc_len);
    seed("revocation", "body-retired", 1, l->body.data, l->body.len);
    mqe2e__v1__revocation_list__free_unpacked(l, NULL);
    free(enc);
}

static void ticket_seeds(const uint8_t auth_pk[32])
{
    mqe2e_ticket t;
    char *text = NULL;
    memset(&t, 0, sizeof t);
    memcpy(t.authority_sign_public, auth_pk, 32);
    fuzz_dh_public(t.authority_dh_public, 1);
    strcpy(t.authority_id, "authority");
    strcpy(t.control_prefix, "mqe2e");
    fuzz_fill(t.token_id, sizeof t.token_id, 0x01);
    fuzz_psk(t.token);
    strcpy(t.client_id, "fuzz-device");
    t.expires_at = FUZZ_NOW + 86400;
    CHECK(mqe2e_ticket_encode(&text, &t) == 0);
    seed("ticket", "ticket-1", -1, text, strlen(text));
    mqe2e_ticket_text_free(text);
    strcpy(t.control_prefix, "site/a/mqe2e");
    t.expires_at = UINT64_MAX;
    CHECK(mqe2e_ticket_encode(&text, &t) == 0);
    seed("ticket", "ticket-2", -1, text, strlen(text));
    mqe2e_ticket_text_free(text);
    mqe2e_ticket_wipe(&t);
}

/* A passphrase blob at the cheapest accepted Argon2id cost. */
static void cheap_passphrase_seal(uint8_t **out, size_t *out_len, const uint8_t *d, size_t n)
{
    uint8_t salt[MQE2E__SEAL_SALT_BYTES], key[MQE2E__SEAL_KEY_BYTES];
    fuzz_fill(salt, sizeof salt, 0x55);
    CHECK(mqe2e__seal_derive(key, FUZZ_PASSPHRASE, strlen(FUZZ_PASSPHRASE), salt,
                             FUZZ_SEAL_OPSLIMIT, FUZZ_SEAL_MEMLIMIT) == 0);
    CHECK(mqe2e__seal(out, out_len, MQE2E__SEAL_KDF_PASSPHRASE, salt, FUZZ_SEAL_OPSLIMIT,
                      FUZZ_SEAL_MEMLIMIT, key, d, n) == 0);
    sodium_memzero(key, sizeof key);
}

static void sealed_and_keystore_seeds(void)
{
    mqe2e_storage st;
    mqe2e_keystore *ks = NULL;
    uint8_t secret[32], *state = NULL, *blob = NULL, *bundle = NULL, *bundle_pt = NULL;
    size_t state_len = 0, blob_len = 0, bundle_len = 0, bundle_pt_len = 0;
    uint64_t seq = 0;
    mqe2e_replay_window w;

    CHECK(mqe2e_storage_memory(&st) == 0);
    mqe2e_storage view = st;
    CHECK(mqe2e_keystore_create(&ks, st, "fuzz-device", 7) == 0);
    fuzz_group_secret(secret);
    CHECK(mqe2e_keystore_group_add_epoch(ks, FUZZ_GROUP, "sensors/#", 1, secret, FUZZ_NOW) == 0);
    secret[0] ^= 1;
    CHECK(mqe2e_keystore_group_add_epoch(ks, FUZZ_GROUP, "sensors/#", 2, secret, FUZZ_NOW) == 0);
    CHECK(mqe2e_keystore_group_add_epoch(ks, "g2", "cmd/+/x", 5, secret, FUZZ_NOW) == 0);
    CHECK(mqe2e_keystore_next_seq(ks, FUZZ_GROUP, &seq) == 0);
    CHECK(mqe2e_replay_init(&w, 64) == 0);
    CHECK(mqe2e_replay_check(&w, 5) == 0 && mqe2e_replay_update(&w, 5) == 0);
    CHECK(mqe2e_keystore_replay_save(ks, FUZZ_GROUP, 1, 9, &w) == 0);
    CHECK(mqe2e_keystore_flush(ks) == 0);
    CHECK(view.load(view.ctx, &state, &state_len) == 0);
    seed("keystore", "state", 0, state, state_len);

    /* Group bundle: export (interactive cost), open, re-seal cheaply. */
    CHECK(mqe2e_keystore_group_export(ks, FUZZ_GROUP, FUZZ_PASSPHRASE, strlen(FUZZ_PASSPHRASE),
                                      &bundle, &bundle_len) == 0);
    CHECK(mqe2e_passphrase_open(&bundle_pt, &bundle_pt_len, bundle, bundle_len, FUZZ_PASSPHRASE,
                                strlen(FUZZ_PASSPHRASE)) == 0);
    cheap_passphrase_seal(&blob, &blob_len, bundle_pt, bundle_pt_len);
    seed("keystore", "bundle", 1, blob, blob_len);
    free(blob);
    mqe2e_keystore_close(ks);

    /* Sealed blobs: the state under a passphrase and under the raw key. */
    cheap_passphrase_seal(&blob, &blob_len, state, state_len);
    seed("sealed", "passphrase-state", -1, blob, blob_len);
    free(blob);
    cheap_passphrase_seal(&blob, &blob_len, NULL, 0);
    seed("sealed", "passphrase-empty", -1, blob, blob_len);
    free(blob);
    uint8_t key[MQE2E__SEAL_KEY_BYTES];
    fuzz_storage_key(key);
    CHECK(mqe2e__seal(&blob, &blob_len, MQE2E__SEAL_KDF_RAW, NULL, 0, 0, key, state, state_len) ==
          0);
    seed("sealed", "rawkey-state", -1, blob, blob_len);
    free(blob);
    sodium_memzero(key, sizeof key);

    sodium_memzero(state, state_len);
    free(state);
    sodium_memzero(bundle_pt, bundle_pt_len);
    free(bundle_pt);
    free(bundle);
    sodium_memzero(secret, sizeof secret);
}

static mqe2e_noise_handshake *noise_make(int ik, int role)
{
    mqe2e_noise_handshake *hs = NULL;
    uint8_t k[32];
    int resp = role == MQE2E_NOISE_RESPONDER;
    CHECK(mqe2e_noise_handshake_new(&hs, ik ? FUZZ_NOISE_IKPSK2 : FUZZ_NOISE_XX, role,
                                    (const uint8_t *)FUZZ_NOISE_PROLOGUE,
                                    strlen(FUZZ_NOISE_PROLOGUE)) == 0);
    fuzz_dh_secret(k, resp ? 1 : 2);
    CHECK(mqe2e_noise_handshake_set_local_static(hs, k) == 0);
    fuzz_dh_secret(k, resp ? 3 : 4);
    CHECK(mqe2e_noise_handshake_set_ephemeral(hs, k) == 0);
    if (ik) {
        if (!resp) {
            fuzz_dh_public(k, 1);
            CHECK(mqe2e_noise_handshake_set_remote_static(hs, k) == 0);
        }
        fuzz_psk(k);
        CHECK(mqe2e_noise_handshake_set_psk(hs, k) == 0);
    }
    return hs;
}

static void noise_seeds(void)
{
    for (int ik = 0; ik <= 1; ik++) {
        /* Raw mode: u16be len | message 1 | message 3, from an honest run. */
        mqe2e_noise_handshake *ini = noise_make(ik, MQE2E_NOISE_INITIATOR);
        mqe2e_noise_handshake *res = noise_make(ik, MQE2E_NOISE_RESPONDER);
        uint8_t m[3][512], got[512], raw[1100];
        size_t ml[3] = {0, 0, 0}, gl = 0;
        const uint8_t pl[] = "hello";
        CHECK(mqe2e_noise_write_message(ini, m[0], sizeof m[0], &ml[0], pl, 5) == 0);
        CHECK(mqe2e_noise_read_message(res, got, sizeof got, &gl, m[0], ml[0]) == 0);
        CHECK(mqe2e_noise_write_message(res, m[1], sizeof m[1], &ml[1], NULL, 0) == 0);
        CHECK(mqe2e_noise_read_message(ini, got, sizeof got, &gl, m[1], ml[1]) == 0);
        if (!ik) {
            CHECK(mqe2e_noise_write_message(ini, m[2], sizeof m[2], &ml[2], pl, 5) == 0);
            CHECK(mqe2e_noise_read_message(res, got, sizeof got, &gl, m[2], ml[2]) == 0);
        }
        raw[0] = (uint8_t)(ml[0] >> 8);
        raw[1] = (uint8_t)ml[0];
        memcpy(raw + 2, m[0], ml[0]);
        memcpy(raw + 2 + ml[0], m[2], ml[2]);
        seed("noise", ik ? "raw-ikpsk2" : "raw-xx", ik, raw, 2 + ml[0] + ml[2]);
        mqe2e_noise_handshake_free(ini);
        mqe2e_noise_handshake_free(res);

        /* Honest mode: p1 p2 p3 | which | off(2) | xor | payload bytes. */
        const uint8_t clean[] = {5, 0, 7, 0, 0, 0, 0, 'p', 'a', 'y', 'l', 'o', 'a', 'd'};
        const uint8_t flipped[] = {5, 0, 7, 2, 0, 40, 1, 'p', 'a', 'y', 'l', 'o', 'a', 'd'};
        seed("noise", ik ? "honest-ikpsk2" : "honest-xx", 2 | ik, clean, sizeof clean);
        seed("noise", ik ? "corrupt-ikpsk2" : "corrupt-xx", 2 | ik, flipped, sizeof flipped);
    }
}

static void policy_seeds(void)
{
    static const char *const s[] = {
        "sensors/+\nsensors/t1\nsensors/#=group:g1\n$SYS/#=plaintext\na/+/c=channel:peer",
        "#\n$SYS/broker/load\n+/+=plaintext\n#=group:all",
        "a/#\na\na/#=channel:x=y\n=plaintext\na=group:",
        "+/b/+\n/b/\n+/b/+=group:g\nsport/tennis/+=plaintext",
    };
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
        char name[16];
        snprintf(name, sizeof name, "rules-%zu", i);
        seed("policy", name, -1, s[i], strlen(s[i]));
    }
}

static void control_seeds(const uint8_t auth_pk[32])
{
    static uint8_t out[MQE2E_CONTROL_MAX_FRAME_BYTES];
    uint8_t noise[40], dh_sk[32], sign_pk[32], sign_sk[64];
    size_t len = 0;
    mqe2e_control_frame f;

    memset(&f, 0, sizeof f);
    f.kind = MQE2E_CONTROL_CHANNEL;
    strcpy(f.from, "fuzz-device");
    fuzz_fill(f.session, sizeof f.session, 0x5A);
    f.step = 3;
    fuzz_fill(noise, sizeof noise, 0x77);
    f.noise = noise;
    f.noise_len = sizeof noise;
    CHECK(mqe2e_control_frame_encode(out, sizeof out, &len, &f) == 0);
    seed("control", "frame-channel-3", 0, out, len);

    /* ENROLL step 1 from a device holding the fixed ticket. */
    mqe2e_ticket t;
    mqe2e_enroll_device *ed = NULL;
    memset(&t, 0, sizeof t);
    memcpy(t.authority_sign_public, auth_pk, 32);
    fuzz_dh_public(t.authority_dh_public, 1);
    strcpy(t.authority_id, "authority");
    strcpy(t.control_prefix, "mqe2e");
    fuzz_fill(t.token_id, sizeof t.token_id, 0x01);
    fuzz_psk(t.token);
    strcpy(t.client_id, "fuzz-device");
    t.expires_at = FUZZ_NOW + 86400;
    fuzz_dh_secret(dh_sk, 2);
    crypto_sign_keypair(sign_pk, sign_sk);
    CHECK(mqe2e_enroll_begin(&ed, out, sizeof out, &len, &t, dh_sk, sign_pk, FUZZ_NOW) == 0);
    seed("control", "enroll-1", 1, out, len);
    mqe2e_enroll_device_free(ed);
    mqe2e_ticket_wipe(&t);

    /* A Push with one bundle and one removed group. */
    mqe2e_key_bundle b;
    mqe2e_group_name gone;
    mqe2e_control_update u;
    uint8_t auth_dh_sk[32], client_pk[32];
    memset(&b, 0, sizeof b);
    memset(&gone, 0, sizeof gone);
    memset(&u, 0, sizeof u);
    strcpy(b.group, FUZZ_GROUP);
    strcpy(b.topic_filter, "sensors/#");
    b.epoch = 1;
    fuzz_group_secret(b.secret);
    b.created_at = FUZZ_NOW;
    b.sender_id = 7;
    strcpy(gone.name, "old");
    u.push_seq = 1;
    u.bundles = &b;
    u.n_bundles = 1;
    u.removed_groups = &gone;
    u.n_removed_groups = 1;
    fuzz_dh_secret(auth_dh_sk, 1);
    fuzz_dh_public(client_pk, 2);
    CHECK(mqe2e_push_seal(out, sizeof out, &len, auth_dh_sk, client_pk, "mqe2e", "authority",
                          &u) == 0);
    seed("control", "push-1", 2, out, len);

    /* HELLO step 1 from the fixed client. */
    mqe2e_hello_client *hc = NULL;
    uint8_t auth_dh_pk[32];
    fuzz_dh_public(auth_dh_pk, 1);
    CHECK(mqe2e_hello_begin(&hc, out, sizeof out, &len, "mqe2e", "fuzz-device", "authority",
                            dh_sk, auth_dh_pk, 42) == 0);
    seed("control", "hello-1", 3, out, len);
    mqe2e_hello_client_free(hc);

    sodium_memzero(b.secret, sizeof b.secret);
    sodium_memzero(auth_dh_sk, sizeof auth_dh_sk);
    sodium_memzero(dh_sk, sizeof dh_sk);
    sodium_memzero(sign_sk, sizeof sign_sk);
}

int main(int argc, char **argv)
{
    uint8_t auth_pk[32], auth_sk[64];
    if (argc != 2) {
        fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
        return 2;
    }
    root = argv[1];
    CHECK(mkdir(root, 0755) == 0 || errno == EEXIST);
    CHECK(mqe2e_init() == 0);
    fuzz_authority_keys(auth_pk, auth_sk);
    envelope_seeds();
    credential_seeds(auth_sk);
    revocation_seeds(auth_sk);
    ticket_seeds(auth_pk);
    sealed_and_keystore_seeds();
    noise_seeds();
    policy_seeds();
    control_seeds(auth_pk);
    sodium_memzero(auth_sk, sizeof auth_sk);
    return 0;
}
