/* Control frames: canonical encoding (checked against protobuf-c), strict
 * decoding, truncation, bit flips and garbage never crash; update payloads. */
#include <criterion/criterion.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "internal_control.h"
#include "mqe2e/control.h"
#include "mqe2e/error.h"
#include "proto/control.pb-c.h"

static const uint8_t noise_bytes[48] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};

static mqe2e_control_frame sample(void)
{
    mqe2e_control_frame f;
    memset(&f, 0, sizeof f);
    f.kind = MQE2E_CONTROL_CHANNEL;
    strcpy(f.from, "dev-1");
    for (unsigned i = 0; i < 16; i++)
        f.session[i] = (uint8_t)(0xA0 + i);
    f.step = 3;
    f.noise = noise_bytes;
    f.noise_len = sizeof noise_bytes;
    return f;
}

static size_t encode_sample(uint8_t *buf, size_t cap)
{
    mqe2e_control_frame f = sample();
    size_t n = 0;
    cr_assert_eq(mqe2e_control_frame_encode(buf, cap, &n, &f), MQE2E_OK);
    cr_assert_eq(n, mqe2e_control_frame_encoded_len(&f));
    return n;
}

/* Pack with the generated protobuf-c code, the reference encoder. */
static size_t pb_pack(uint8_t *buf, uint32_t format, uint32_t kind, const char *from,
                      const uint8_t *session, size_t session_len, uint32_t step,
                      const uint8_t *noise, size_t noise_len)
{
    Mqe2e__V1__ControlFrame m;
    mqe2e__v1__control_frame__init(&m);
    m.format = format;
    m.kind = kind;
    m.from = (char *)(uintptr_t)from;
    m.session.data = (uint8_t *)(uintptr_t)session;
    m.session.len = session_len;
    m.step = step;
    m.noise.data = (uint8_t *)(uintptr_t)noise;
    m.noise.len = noise_len;
    return mqe2e__v1__control_frame__pack(&m, buf);
}

Test(control_frame, encoding_matches_protobuf_c)
{
    uint8_t a[256], b[256];
    mqe2e_control_frame f = sample();
    size_t n = encode_sample(a, sizeof a);
    size_t m = pb_pack(b, 1, f.kind, f.from, f.session, 16, f.step, f.noise, f.noise_len);
    cr_assert_eq(n, m);
    cr_assert_arr_eq(a, b, n);
}

Test(control_frame, round_trip_borrows_input)
{
    uint8_t buf[256];
    size_t n = encode_sample(buf, sizeof buf);
    mqe2e_control_frame g;
    cr_assert_eq(mqe2e_control_frame_decode(&g, buf, n), MQE2E_OK);
    cr_assert_eq(g.kind, MQE2E_CONTROL_CHANNEL);
    cr_assert_str_eq(g.from, "dev-1");
    cr_assert_eq(g.step, 3);
    cr_assert_eq(g.noise_len, sizeof noise_bytes);
    cr_assert(g.noise >= buf && g.noise < buf + n);
    cr_assert_arr_eq(g.noise, noise_bytes, sizeof noise_bytes);
}

Test(control_frame, refuses_bad_fields)
{
    uint8_t buf[512];
    uint8_t s16[16] = {0}, s15[15] = {0};
    mqe2e_control_frame g;
    size_t n;

    n = pb_pack(buf, 2, 1, "a", s16, 16, 1, noise_bytes, 4);
    cr_assert_eq(mqe2e_control_frame_decode(&g, buf, n), MQE2E_ERR_SUITE);
    n = pb_pack(buf, 1, 9, "a", s16, 16, 1, noise_bytes, 4);
    cr_assert_eq(mqe2e_control_frame_decode(&g, buf, n), MQE2E_ERR_SUITE);
    n = pb_pack(buf, 0, 1, "a", s16, 16, 1, noise_bytes, 4);
    cr_assert_eq(mqe2e_control_frame_decode(&g, buf, n), MQE2E_ERR_DECODE);
    n = pb_pack(buf, 1, 1, "a", s15, 15, 1, noise_bytes, 4);
    cr_assert_eq(mqe2e_control_frame_decode(&g, buf, n), MQE2E_ERR_DECODE);
    n = pb_pack(buf, 1, MQE2E_CONTROL_PUSH, "a", s16, 16, 2, noise_bytes, 4);
    cr_assert_eq(mqe2e_control_frame_decode(&g, buf, n), MQE2E_ERR_DECODE);
    n = pb_pack(buf, 1, MQE2E_CONTROL_CHANNEL, "a", s16, 16, 4, noise_bytes, 4);
    cr_assert_eq(mqe2e_control_frame_decode(&g, buf, n), MQE2E_ERR_DECODE);
    n = pb_pack(buf, 1, 1, "a", s16, 16, 0, noise_bytes, 4);
    cr_assert_eq(mqe2e_control_frame_decode(&g, buf, n), MQE2E_ERR_DECODE);
    n = pb_pack(buf, 1, 1, "a/b", s16, 16, 1, noise_bytes, 4);
    cr_assert_eq(mqe2e_control_frame_decode(&g, buf, n), MQE2E_ERR_DECODE);
    {
        /* Hand-built: protobuf-c would stop at the NUL inside the id. */
        uint8_t raw[32] = {0x08, 1, 0x10, 1, 0x1a, 3, 'a', 0, 'b', 0x22, 16};
        raw[27] = 0x28;
        raw[28] = 1;
        raw[29] = 0x32;
        raw[30] = 1;
        raw[31] = 7;
        cr_assert_eq(mqe2e_control_frame_decode(&g, raw, 32), MQE2E_ERR_DECODE);
        raw[7] = 'x'; /* the same frame with a valid id decodes */
        cr_assert_eq(mqe2e_control_frame_decode(&g, raw, 32), MQE2E_OK);
    }
    n = pb_pack(buf, 1, 1, "", s16, 16, 1, noise_bytes, 4);
    cr_assert_eq(mqe2e_control_frame_decode(&g, buf, n), MQE2E_ERR_DECODE);
    n = pb_pack(buf, 1, 1, "a", s16, 16, 1, noise_bytes, 0);
    cr_assert_eq(mqe2e_control_frame_decode(&g, buf, n), MQE2E_ERR_DECODE);
    /* A valid frame decodes: the cases above fail for their own reason. */
    n = pb_pack(buf, 1, 1, "a", s16, 16, 1, noise_bytes, 4);
    cr_assert_eq(mqe2e_control_frame_decode(&g, buf, n), MQE2E_OK);
}

Test(control_frame, refuses_non_canonical)
{
    uint8_t buf[256], alt[300];
    size_t n = encode_sample(buf, sizeof buf);
    mqe2e_control_frame g;

    /* Trailing unknown field. */
    memcpy(alt, buf, n);
    alt[n] = 0x38;
    alt[n + 1] = 0x01;
    cr_assert_eq(mqe2e_control_frame_decode(&g, alt, n + 2), MQE2E_ERR_DECODE);
    /* Repeated last field. */
    memcpy(alt, buf, n);
    alt[n] = 0x32;
    alt[n + 1] = 0x01;
    alt[n + 2] = 0x00;
    cr_assert_eq(mqe2e_control_frame_decode(&g, alt, n + 3), MQE2E_ERR_DECODE);
    /* Non-minimal varint for format: 0x81 0x00. */
    alt[0] = 0x08;
    alt[1] = 0x81;
    alt[2] = 0x00;
    memcpy(alt + 3, buf + 2, n - 2);
    cr_assert_eq(mqe2e_control_frame_decode(&g, alt, n + 1), MQE2E_ERR_DECODE);
    /* Fields swapped (kind before format). */
    memcpy(alt, buf + 2, 2);
    memcpy(alt + 2, buf, 2);
    memcpy(alt + 4, buf + 4, n - 4);
    cr_assert_eq(mqe2e_control_frame_decode(&g, alt, n), MQE2E_ERR_DECODE);
}

Test(control_frame, size_cap)
{
    size_t big = MQE2E_CONTROL_MAX_FRAME_BYTES + 1U;
    uint8_t *buf = calloc(1, big);
    mqe2e_control_frame g;
    cr_assert_eq(mqe2e_control_frame_decode(&g, buf, big), MQE2E_ERR_TOO_LARGE);
    /* Encoding refuses a frame that would exceed the cap. */
    mqe2e_control_frame f = sample();
    f.noise = buf;
    f.noise_len = 65535;
    size_t n;
    cr_assert_eq(mqe2e_control_frame_encode(buf, big, &n, &f), MQE2E_ERR_TOO_LARGE);
    free(buf);
}

Test(control_frame, encode_refuses_invalid)
{
    uint8_t buf[256];
    size_t n;
    mqe2e_control_frame f = sample();
    f.step = 4;
    cr_assert_eq(mqe2e_control_frame_encode(buf, sizeof buf, &n, &f), MQE2E_ERR_INVALID_ARG);
    f = sample();
    f.kind = 7;
    cr_assert_eq(mqe2e_control_frame_encode(buf, sizeof buf, &n, &f), MQE2E_ERR_INVALID_ARG);
    f = sample();
    strcpy(f.from, "a#");
    cr_assert_eq(mqe2e_control_frame_encode(buf, sizeof buf, &n, &f), MQE2E_ERR_INVALID_ARG);
    f = sample();
    cr_assert_eq(mqe2e_control_frame_encode(buf, 10, &n, &f), MQE2E_ERR_BUFFER_TOO_SMALL);
}

Test(control_frame, every_truncation_and_flip_is_safe)
{
    uint8_t buf[256], t[256];
    size_t n = encode_sample(buf, sizeof buf);
    mqe2e_control_frame g;

    for (size_t k = 0; k < n; k++)
        cr_assert_neq(mqe2e_control_frame_decode(&g, buf, k), MQE2E_OK, "prefix %zu", k);
    for (size_t i = 0; i < n; i++) {
        for (unsigned bit = 0; bit < 8; bit++) {
            memcpy(t, buf, n);
            t[i] ^= (uint8_t)(1U << bit);
            int rc = mqe2e_control_frame_decode(&g, t, n);
            /* Flips inside the session or noise bytes keep a valid frame. */
            if (rc == MQE2E_OK) {
                cr_assert(mqe2e_control_frame_encoded_len(&g) == n);
            }
        }
    }
}

Test(control_frame, garbage_never_crashes)
{
    uint8_t buf[512];
    mqe2e_control_frame g;
    int ok = 0;
    for (unsigned i = 0; i < 20000; i++) {
        size_t n = randombytes_uniform(sizeof buf);
        randombytes_buf(buf, n);
        if (mqe2e_control_frame_decode(&g, buf, n) == MQE2E_OK) ok++;
    }
    cr_assert_eq(ok, 0);
    cr_assert_eq(mqe2e_control_frame_decode(NULL, buf, 1), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_control_frame_decode(&g, NULL, 0), MQE2E_ERR_DECODE);
}

Test(control_payload, update_round_trip_and_strictness)
{
    mqe2e_key_bundle b[2];
    mqe2e_group_name rm[1];
    uint8_t cred[5] = {1, 2, 3, 4, 5};
    mqe2e_control_update in, out;
    uint8_t *p = NULL;
    size_t n = 0;

    memset(b, 0, sizeof b);
    memset(rm, 0, sizeof rm);
    strcpy(b[0].group, "g1");
    strcpy(b[0].topic_filter, "a/#");
    b[0].epoch = 3;
    memset(b[0].secret, 0x5A, 32);
    b[0].sender_id = 7;
    strcpy(b[1].group, "g2");
    strcpy(b[1].topic_filter, "b/+");
    b[1].retired_at = 99;
    strcpy(rm[0].name, "old");
    memset(&in, 0, sizeof in);
    in.push_seq = 5;
    in.bundles = b;
    in.n_bundles = 2;
    in.credential = cred;
    in.credential_len = sizeof cred;
    in.removed_groups = rm;
    in.n_removed_groups = 1;

    cr_assert_eq(mqe2e__control_pack_update(&p, &n, MQE2E__PAYLOAD_PUSH, &in), MQE2E_OK);
    cr_assert_eq(mqe2e__control_unpack_update(&out, MQE2E__PAYLOAD_PUSH, p, n), MQE2E_OK);
    cr_assert_eq(out.push_seq, 5);
    cr_assert_eq(out.n_bundles, 2);
    cr_assert_str_eq(out.bundles[0].topic_filter, "a/#");
    cr_assert_arr_eq(out.bundles[0].secret, b[0].secret, 32);
    cr_assert_eq(out.bundles[1].retired_at, 99);
    cr_assert_eq(out.n_removed_groups, 1);
    cr_assert_str_eq(out.removed_groups[0].name, "old");
    cr_assert_null(out.credential); /* Push carries no credential */
    mqe2e_control_update_wipe(&out);
    cr_assert_null(out.bundles);

    /* Trailing junk, and a secret of the wrong size, are refused. */
    uint8_t *q = malloc(n + 2);
    memcpy(q, p, n);
    q[n] = 0x08;
    q[n + 1] = 0x01; /* a second push_seq */
    cr_assert_eq(mqe2e__control_unpack_update(&out, MQE2E__PAYLOAD_PUSH, q, n + 2),
                 MQE2E_ERR_DECODE);
    for (size_t i = 0; i < n; i++) {
        memcpy(q, p, n);
        q[i] ^= 0x80;
        if (mqe2e__control_unpack_update(&out, MQE2E__PAYLOAD_PUSH, q, n) == MQE2E_OK)
            mqe2e_control_update_wipe(&out);
    }
    free(q);
    mqe2e__control_free_wiped(p, n);

    in.push_seq = 0;
    cr_assert_eq(mqe2e__control_pack_update(&p, &n, MQE2E__PAYLOAD_PUSH, &in),
                 MQE2E_ERR_INVALID_ARG);
    in.push_seq = 1;
    b[0].group[0] = '\0';
    cr_assert_eq(mqe2e__control_pack_update(&p, &n, MQE2E__PAYLOAD_PUSH, &in),
                 MQE2E_ERR_INVALID_ARG);
}

/* Issue 11, item 10: unknown fields, at the top or inside a nested message,
 * are refused by every control payload decoder (protobuf-c keeps them and
 * packs them again, so re-encoding alone let them through). */
Test(control_payload, unknown_fields_refused_top_and_nested)
{
    static const int kinds[] = {MQE2E__PAYLOAD_ENROLL_REPLY, MQE2E__PAYLOAD_HELLO_REPLY,
                                MQE2E__PAYLOAD_PUSH};
    mqe2e_key_bundle b;
    mqe2e_control_update in, out;
    uint8_t *p = NULL, q[512];
    size_t n = 0;

    memset(&b, 0, sizeof b);
    strcpy(b.group, "g1");
    strcpy(b.topic_filter, "a/#");
    b.epoch = 3;
    b.sender_id = 7;
    memset(b.secret, 0x5A, 32);
    memset(&in, 0, sizeof in);
    in.push_seq = 5;
    in.bundles = &b;
    in.n_bundles = 1;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        cr_assert_eq(mqe2e__control_pack_update(&p, &n, kinds[k], &in), MQE2E_OK);
        cr_assert_lt(n + 4U, sizeof q);
        cr_assert_eq(mqe2e__control_unpack_update(&out, kinds[k], p, n), MQE2E_OK);
        mqe2e_control_update_wipe(&out);
        /* Field 15 (varint 1) at the end: canonical order, unknown number. */
        memcpy(q, p, n);
        q[n] = 0x78;
        q[n + 1] = 0x01;
        cr_assert_eq(mqe2e__control_unpack_update(&out, kinds[k], q, n + 2), MQE2E_ERR_DECODE,
                     "payload kind %d took an unknown field", kinds[k]);
        mqe2e__control_free_wiped(p, n);
    }

    /* Inside the bundle: a Push whose only bundle carries field 15. */
    Mqe2e__V1__KeyBundle kb = MQE2E__V1__KEY_BUNDLE__INIT;
    kb.group = b.group;
    kb.topic_filter = b.topic_filter;
    kb.epoch = 3;
    kb.secret.data = b.secret;
    kb.secret.len = 32;
    kb.sender_id = 7;
    uint8_t inner[256];
    size_t il = mqe2e__v1__key_bundle__pack(&kb, inner);
    inner[il++] = 0x78;
    inner[il++] = 0x01;
    size_t m = 0;
    q[m++] = 0x08; /* push_seq = 5 */
    q[m++] = 0x05;
    q[m++] = 0x12; /* bundles, length-delimited */
    q[m++] = (uint8_t)il;
    memcpy(q + m, inner, il);
    m += il;
    cr_assert_eq(mqe2e__control_unpack_update(&out, MQE2E__PAYLOAD_PUSH, q, m), MQE2E_ERR_DECODE,
                 "a nested unknown field was accepted");
    /* The same bytes without it decode. */
    q[3] = (uint8_t)(il - 2U);
    cr_assert_eq(mqe2e__control_unpack_update(&out, MQE2E__PAYLOAD_PUSH, q, m - 2U), MQE2E_OK);
    mqe2e_control_update_wipe(&out);
    sodium_memzero(inner, sizeof inner);
    sodium_memzero(q, sizeof q);
}

/* Issue 11, item 5: a retired epoch's authority-set grace travels in the
 * bundle; a grace on a current epoch (retired_at 0) is malformed. */
Test(control_payload, bundle_grace_round_trip)
{
    mqe2e_key_bundle b[2];
    mqe2e_control_update in, out;
    uint8_t *p = NULL;
    size_t n = 0;
    memset(b, 0, sizeof b);
    memset(&in, 0, sizeof in);
    strcpy(b[0].group, "g");
    strcpy(b[0].topic_filter, "a/#");
    b[0].epoch = 2;
    b[0].sender_id = 1;
    strcpy(b[1].group, "g");
    strcpy(b[1].topic_filter, "a/#");
    b[1].epoch = 1;
    b[1].sender_id = 1;
    b[1].retired_at = 1000;
    b[1].grace_seconds = 30;
    in.push_seq = 1;
    in.bundles = b;
    in.n_bundles = 2;
    cr_assert_eq(mqe2e__control_pack_update(&p, &n, MQE2E__PAYLOAD_PUSH, &in), MQE2E_OK);
    cr_assert_eq(mqe2e__control_unpack_update(&out, MQE2E__PAYLOAD_PUSH, p, n), MQE2E_OK);
    cr_assert_eq(out.bundles[0].grace_seconds, 0);
    cr_assert_eq(out.bundles[1].grace_seconds, 30);
    cr_assert_eq(out.bundles[1].retired_at, 1000);
    mqe2e_control_update_wipe(&out);
    mqe2e__control_free_wiped(p, n);
    b[0].grace_seconds = 5; /* on the current epoch */
    cr_assert_eq(mqe2e__control_pack_update(&p, &n, MQE2E__PAYLOAD_PUSH, &in), MQE2E_OK);
    cr_assert_eq(mqe2e__control_unpack_update(&out, MQE2E__PAYLOAD_PUSH, p, n), MQE2E_ERR_DECODE);
    mqe2e__control_free_wiped(p, n);
}

/* Issue 15, item 3: a key-tree bundle carries the group's removal grace
 * (KeyBundle field 11, docs/PROTOCOL.md §10.9): it round-trips with the tree
 * fields; without them, or above 2^31 - 1, the payload is malformed. */
static int push_with_bundle(const Mqe2e__V1__KeyBundle *kb)
{
    uint8_t inner[1024], q[1100];
    size_t il = mqe2e__v1__key_bundle__pack(kb, inner);
    size_t m = 0;
    cr_assert_lt(il, 16384U);
    q[m++] = 0x08; /* push_seq = 5 */
    q[m++] = 0x05;
    q[m++] = 0x12; /* bundles, length-delimited (a two-byte varint) */
    q[m++] = (uint8_t)(0x80U | (il & 0x7FU));
    q[m++] = (uint8_t)(il >> 7);
    memcpy(q + m, inner, il);
    m += il;
    mqe2e_control_update out;
    int rc = mqe2e__control_unpack_update(&out, MQE2E__PAYLOAD_PUSH, q, m);
    if (rc == MQE2E_OK) {
        cr_assert_eq(out.n_bundles, 1U);
        rc = out.bundles[0].tree_grace_seconds == kb->tree_grace_seconds ? MQE2E_OK : -999;
        mqe2e_control_update_wipe(&out);
    }
    sodium_memzero(inner, sizeof inner);
    sodium_memzero(q, sizeof q);
    return rc;
}

Test(control_payload, tree_grace_only_with_tree_fields_and_bounded)
{
    uint8_t secret[32], leaf[32], path[611];
    memset(secret, 0x5A, sizeof secret);
    memset(leaf, 0x11, sizeof leaf);
    memset(path, 0x22, sizeof path);
    Mqe2e__V1__KeyBundle kb = MQE2E__V1__KEY_BUNDLE__INIT;
    kb.group = "g1";
    kb.topic_filter = "a/#";
    kb.epoch = 3;
    kb.secret.data = secret;
    kb.secret.len = sizeof secret;
    kb.sender_id = 7;
    kb.tree_grace_seconds = 120;
    cr_assert_eq(push_with_bundle(&kb), MQE2E_ERR_DECODE, "a grace without tree fields");
    kb.tree_leaf_key.data = leaf;
    kb.tree_leaf_key.len = sizeof leaf;
    kb.tree_path.data = path;
    kb.tree_path.len = sizeof path;
    cr_assert_eq(push_with_bundle(&kb), MQE2E_OK);
    kb.tree_grace_seconds = 0; /* absent: the default applies on the device */
    cr_assert_eq(push_with_bundle(&kb), MQE2E_OK);
    kb.tree_grace_seconds = MQE2E_BUNDLE_TREE_GRACE_MAX;
    cr_assert_eq(push_with_bundle(&kb), MQE2E_OK);
    kb.tree_grace_seconds = MQE2E_BUNDLE_TREE_GRACE_MAX + 1U;
    cr_assert_eq(push_with_bundle(&kb), MQE2E_ERR_DECODE, "above 2^31 - 1");

    /* The encoder refuses what the decoder would. */
    mqe2e_key_bundle b;
    mqe2e_control_update in;
    uint8_t *p = NULL;
    size_t n = 0;
    memset(&b, 0, sizeof b);
    memset(&in, 0, sizeof in);
    strcpy(b.group, "g1");
    strcpy(b.topic_filter, "a/#");
    b.epoch = 3;
    b.tree_grace_seconds = 120;
    in.push_seq = 1;
    in.bundles = &b;
    in.n_bundles = 1;
    cr_assert_eq(mqe2e__control_pack_update(&p, &n, MQE2E__PAYLOAD_PUSH, &in),
                 MQE2E_ERR_INVALID_ARG);
}

/* Issue 11, item 7: signer directories carry each signer's pub grants. */
Test(control_payload, directory_grants_round_trip_and_strictness)
{
    mqe2e_signer s[2];
    mqe2e_signer_grants g[2];
    char f0[] = "ward/hr-1/#", f1[] = "ward/hr-2/#", bad[] = "ward/#/x";
    char *l0[] = {f0}, *l1[] = {f1}, *lb[] = {bad};
    mqe2e_group_directory d;
    mqe2e_control_update in, out;
    uint8_t *p = NULL;
    size_t n = 0;
    memset(s, 0, sizeof s);
    memset(g, 0, sizeof g);
    memset(&d, 0, sizeof d);
    memset(&in, 0, sizeof in);
    s[0].sender_id = 1;
    s[1].sender_id = 2;
    memset(s[0].sign_public, 1, 32);
    memset(s[1].sign_public, 2, 32);
    strcpy(s[0].client_id, "hr-1");
    strcpy(s[1].client_id, "hr-2");
    g[0].pub_filters = l0;
    g[0].n_pub_filters = 1;
    g[1].pub_filters = l1;
    g[1].n_pub_filters = 1;
    strcpy(d.group, "ward");
    d.signers = s;
    d.n_signers = 2;
    d.grants = g;
    d.has_grants = 1;
    in.push_seq = 1;
    in.directories = &d;
    in.n_directories = 1;
    cr_assert_eq(mqe2e__control_pack_update(&p, &n, MQE2E__PAYLOAD_PUSH, &in), MQE2E_OK);
    cr_assert_eq(mqe2e__control_unpack_update(&out, MQE2E__PAYLOAD_PUSH, p, n), MQE2E_OK);
    cr_assert_eq(out.n_directories, 1);
    cr_assert_eq(out.directories[0].has_grants, 1);
    cr_assert_not_null(out.directories[0].grants);
    cr_assert_eq(out.directories[0].grants[1].n_pub_filters, 1);
    cr_assert_str_eq(out.directories[0].grants[1].pub_filters[0], "ward/hr-2/#");
    mqe2e_control_update_wipe(&out);
    mqe2e__control_free_wiped(p, n);
    /* An invalid filter is refused when writing. */
    g[1].pub_filters = lb;
    cr_assert_eq(mqe2e__control_pack_update(&p, &n, MQE2E__PAYLOAD_PUSH, &in),
                 MQE2E_ERR_INVALID_ARG);
    /* Filters in a directory that does not say it lists grants: malformed. */
    Mqe2e__V1__GroupSigner ps = MQE2E__V1__GROUP_SIGNER__INIT, *psp = &ps;
    Mqe2e__V1__GroupDirectory pd = MQE2E__V1__GROUP_DIRECTORY__INIT, *pdp = &pd;
    Mqe2e__V1__Push pu = MQE2E__V1__PUSH__INIT;
    ps.sender_id = 1;
    ps.sign_public.data = s[0].sign_public;
    ps.sign_public.len = 32;
    ps.client_id = s[0].client_id;
    ps.n_pub_filters = 1;
    ps.pub_filters = l0;
    pd.group = d.group;
    pd.n_signers = 1;
    pd.signers = &psp;
    pu.push_seq = 1;
    pu.n_directories = 1;
    pu.directories = &pdp;
    uint8_t buf[512];
    size_t bl = mqe2e__v1__push__pack(&pu, buf);
    cr_assert_eq(mqe2e__control_unpack_update(&out, MQE2E__PAYLOAD_PUSH, buf, bl),
                 MQE2E_ERR_DECODE);
    pd.grants = 1;
    bl = mqe2e__v1__push__pack(&pu, buf);
    cr_assert_eq(mqe2e__control_unpack_update(&out, MQE2E__PAYLOAD_PUSH, buf, bl), MQE2E_OK);
    mqe2e_control_update_wipe(&out);
}
