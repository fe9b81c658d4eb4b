/* Keystore: sender ids, create/open round trips, groups and epochs,
 * crash-safe sequence reservations, replay checkpoints, export/import. */
#include <criterion/criterion.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal_keystore.h"
#include "mqe2e/error.h"
#include "mqe2e/keystore.h"
#include "proto/keystore.pb-c.h"
#include "testutil.h"

static char *dir;
static char *path;
static uint8_t file_key[32];

static void setup(void)
{
    cr_assert_eq(mqe2e_init(), MQE2E_OK);
    dir = tu_tempdir();
    path = malloc(strlen(dir) + 8);
    sprintf(path, "%s/ks", dir);
    randombytes_buf(file_key, sizeof file_key);
}

static void teardown(void)
{
    tu_rmtree(dir);
    free(dir);
    free(path);
}

TestSuite(keystore, .init = setup, .fini = teardown);

static mqe2e_storage file_storage(void)
{
    mqe2e_storage s;
    cr_assert_eq(mqe2e_storage_file_key(&s, path, file_key), MQE2E_OK);
    return s;
}

static mqe2e_keystore *create_ks(const char *client_id)
{
    mqe2e_keystore *ks = NULL;
    cr_assert_eq(mqe2e_keystore_create(&ks, file_storage(), client_id, 0), MQE2E_OK);
    return ks;
}

static mqe2e_keystore *open_ks(void)
{
    mqe2e_keystore *ks = NULL;
    cr_assert_eq(mqe2e_keystore_open(&ks, file_storage()), MQE2E_OK);
    return ks;
}

/* A test backend the test keeps: it survives the keystore and can fail. */
typedef struct shared_store {
    uint8_t *blob;
    size_t len;
    int fail;
    int stores;
} shared_store;

static int shared_load(void *ctx, uint8_t **data, size_t *len)
{
    shared_store *s = ctx;
    if (s->blob == NULL) return MQE2E_ERR_NOT_FOUND;
    *data = malloc(s->len + 1);
    memcpy(*data, s->blob, s->len);
    *len = s->len;
    return MQE2E_OK;
}

static int shared_store_fn(void *ctx, const uint8_t *data, size_t len)
{
    shared_store *s = ctx;
    if (s->fail) return MQE2E_ERR_IO;
    free(s->blob);
    s->blob = malloc(len + 1);
    memcpy(s->blob, data, len);
    s->len = len;
    s->stores++;
    return MQE2E_OK;
}

static mqe2e_storage shared(shared_store *s)
{
    mqe2e_storage st = {shared_load, shared_store_fn, NULL, s};
    return st;
}

Test(keystore, sender_id_from_client_id)
{
    uint32_t a = mqe2e_sender_id_from_client_id("device-1");
    cr_assert_eq(a, mqe2e_sender_id_from_client_id("device-1"));
    cr_assert_neq(a, 0);
    cr_assert_lt(a, 1U << 24);
    /* Recompute from the documented definition. */
    uint8_t h[32];
    crypto_generichash(h, 32, (const uint8_t *)"device-1", 8, (const uint8_t *)"mqe2e/v1/sender-id",
                       18);
    uint32_t want = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16;
    cr_assert_eq(a, want != 0 ? want : 1U);
    int distinct = 0;
    char id[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof id, "client-%d", i);
        uint32_t s = mqe2e_sender_id_from_client_id(id);
        cr_assert_neq(s, 0);
        cr_assert_lt(s, 1U << 24);
        distinct += s != a;
    }
    cr_assert_gt(distinct, 990);
}

Test(keystore, create_open_round_trip)
{
    mqe2e_keystore *ks = create_ks("sensor-7");
    cr_assert_str_eq(mqe2e_keystore_client_id(ks), "sensor-7");
    cr_assert_eq(mqe2e_keystore_sender_id(ks), mqe2e_sender_id_from_client_id("sensor-7"));
    uint8_t spk[32], dpk[32], spk2[32], dpk2[32];
    cr_assert_eq(mqe2e_keystore_identity_public(ks, spk, dpk), MQE2E_OK);
    uint8_t s1[32], s2[32], s3[32], got[32];
    randombytes_buf(s1, 32);
    randombytes_buf(s2, 32);
    randombytes_buf(s3, 32);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, "telemetry", "fleet/+/hr", 4, s1, 100),
                 MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, "telemetry", NULL, 5, s2, 200), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, "alarms", "fleet/#", 1, s3, 300), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_set_sender_id(ks, "alarms", 0xabcdef), MQE2E_OK);
    mqe2e_keystore_close(ks);

    ks = open_ks();
    cr_assert_str_eq(mqe2e_keystore_client_id(ks), "sensor-7");
    cr_assert_eq(mqe2e_keystore_sender_id(ks), mqe2e_sender_id_from_client_id("sensor-7"));
    cr_assert_eq(mqe2e_keystore_identity_public(ks, spk2, dpk2), MQE2E_OK);
    cr_assert_eq(memcmp(spk, spk2, 32), 0);
    cr_assert_eq(memcmp(dpk, dpk2, 32), 0);
    cr_assert_eq(mqe2e_keystore_group_count(ks), 2);
    cr_assert_str_eq(mqe2e_keystore_group_name(ks, 0), "alarms");
    cr_assert_str_eq(mqe2e_keystore_group_name(ks, 1), "telemetry");
    cr_assert_null(mqe2e_keystore_group_name(ks, 2));
    cr_assert_str_eq(mqe2e_keystore_group_filter(ks, "telemetry"), "fleet/+/hr");
    cr_assert_str_eq(mqe2e_keystore_group_filter(ks, "alarms"), "fleet/#");
    uint32_t e = 0, sid = 0;
    cr_assert_eq(mqe2e_keystore_group_current_epoch(ks, "telemetry", &e), MQE2E_OK);
    cr_assert_eq(e, 5);
    uint64_t retired = 0;
    cr_assert_eq(mqe2e_keystore_group_secret(ks, "telemetry", 4, got, &retired), MQE2E_OK);
    cr_assert_eq(memcmp(got, s1, 32), 0);
    cr_assert_eq(retired, 200);
    cr_assert_eq(mqe2e_keystore_group_secret(ks, "telemetry", 5, got, &retired), MQE2E_OK);
    cr_assert_eq(memcmp(got, s2, 32), 0);
    cr_assert_eq(retired, 0);
    cr_assert_eq(mqe2e_keystore_group_secret(ks, "alarms", 1, got, NULL), MQE2E_OK);
    cr_assert_eq(memcmp(got, s3, 32), 0);
    cr_assert_eq(mqe2e_keystore_group_sender_id(ks, "alarms", &sid), MQE2E_OK);
    cr_assert_eq(sid, 0xabcdef);
    cr_assert_eq(mqe2e_keystore_group_sender_id(ks, "telemetry", &sid), MQE2E_OK);
    cr_assert_eq(sid, mqe2e_keystore_sender_id(ks));

    /* The identity signs with the secret key that matches the public one. */
    uint8_t sig[64];
    cr_assert_eq(mqe2e__keystore_sign(ks, sig, (const uint8_t *)"m", 1), MQE2E_OK);
    cr_assert_eq(crypto_sign_verify_detached(sig, (const uint8_t *)"m", 1, spk), 0);
    uint8_t dsk[32], dpk3[32];
    cr_assert_eq(mqe2e__keystore_dh_secret(ks, dsk), MQE2E_OK);
    crypto_scalarmult_base(dpk3, dsk);
    cr_assert_eq(memcmp(dpk3, dpk, 32), 0);
    mqe2e_keystore_close(ks);
}

Test(keystore, explicit_sender_id_and_memory_storage)
{
    mqe2e_storage s;
    cr_assert_eq(mqe2e_storage_memory(&s), MQE2E_OK);
    mqe2e_keystore *ks = NULL;
    cr_assert_eq(mqe2e_keystore_create(&ks, s, "backend", 42), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_sender_id(ks), 42);
    uint32_t e = 0;
    cr_assert_eq(mqe2e_keystore_group_generate(ks, "g", "a/b", 10, &e), MQE2E_OK);
    uint32_t sid = 0;
    cr_assert_eq(mqe2e_keystore_group_sender_id(ks, "g", &sid), MQE2E_OK);
    cr_assert_eq(sid, 42);
    mqe2e_keystore_close(ks);
}

Test(keystore, create_refuses_existing_and_bad_args)
{
    mqe2e_keystore *ks = create_ks("a");
    mqe2e_keystore_close(ks);
    cr_assert_eq(mqe2e_keystore_create(&ks, file_storage(), "a", 0), MQE2E_ERR_EXISTS);
    cr_assert_null(ks);
    /* Unreadable with our key still means "something is there". */
    mqe2e_storage other;
    uint8_t k2[32] = {9};
    cr_assert_eq(mqe2e_storage_file_key(&other, path, k2), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_create(&ks, other, "a", 0), MQE2E_ERR_EXISTS);
    cr_assert_eq(mqe2e_storage_file_key(&other, path, k2), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_open(&ks, other), MQE2E_ERR_AUTH);

    mqe2e_storage m;
    cr_assert_eq(mqe2e_storage_memory(&m), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_create(&ks, m, "", 0), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_storage_memory(&m), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_create(&ks, m, "tab\there", 0), MQE2E_ERR_INVALID_ARG);
    char longid[300];
    memset(longid, 'x', 256);
    longid[256] = '\0';
    cr_assert_eq(mqe2e_storage_memory(&m), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_create(&ks, m, longid, 0), MQE2E_ERR_INVALID_ARG);
    longid[255] = '\0';
    cr_assert_eq(mqe2e_storage_memory(&m), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_create(&ks, m, longid, 0), MQE2E_OK);
    mqe2e_keystore_close(ks);

    cr_assert_eq(mqe2e_storage_memory(&m), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_open(&ks, m), MQE2E_ERR_NOT_FOUND);
}

Test(keystore, open_tampered_file_fails)
{
    mqe2e_keystore *ks = create_ks("a");
    mqe2e_keystore_close(ks);
    size_t len = 0;
    char *raw = tu_read_file(path, &len);
    raw[len / 2] ^= 0x40;
    FILE *f = fopen(path, "wb");
    fwrite(raw, 1, len, f);
    fclose(f);
    free(raw);
    cr_assert_eq(mqe2e_keystore_open(&ks, file_storage()), MQE2E_ERR_AUTH);
}

Test(keystore, open_rejects_inconsistent_state)
{
    /* A state authenticated by the backend but not self-consistent (public
     * key not matching the secret one) is refused. */
    shared_store ss = {0};
    mqe2e_keystore *ks = NULL;
    cr_assert_eq(mqe2e_keystore_create(&ks, shared(&ss), "a", 0), MQE2E_OK);
    mqe2e__keystore_abandon(ks);
    Mqe2e__V1__KeystoreState *st = mqe2e__v1__keystore_state__unpack(NULL, ss.len, ss.blob);
    cr_assert_not_null(st);
    st->dh_public.data[0] ^= 1;
    uint8_t buf[4096];
    size_t n = mqe2e__v1__keystore_state__pack(st, buf);
    mqe2e__v1__keystore_state__free_unpacked(st, NULL);
    shared_store bad = {0};
    cr_assert_eq(shared_store_fn(&bad, buf, n), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_open(&ks, shared(&bad)), MQE2E_ERR_DECODE);
    cr_assert_eq(shared_store_fn(&bad, (const uint8_t *)"\xff\xff", 2), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_open(&ks, shared(&bad)), MQE2E_ERR_DECODE);
    free(bad.blob);
    free(ss.blob);
}

Test(keystore, generate_rotate_prune)
{
    mqe2e_keystore *ks = create_ks("a");
    uint32_t e = 0;
    cr_assert_eq(mqe2e_keystore_group_generate(ks, "g", NULL, 10, &e), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_keystore_group_generate(ks, "g", "bad/#/filter", 10, &e),
                 MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_keystore_group_generate(ks, "g", "t/+", 10, &e), MQE2E_OK);
    cr_assert_eq(e, 1);
    cr_assert_eq(mqe2e_keystore_group_generate(ks, "g", NULL, 20, &e), MQE2E_OK);
    cr_assert_eq(e, 2);
    cr_assert_eq(mqe2e_keystore_group_generate(ks, "g", NULL, 30, &e), MQE2E_OK);
    cr_assert_eq(e, 3);
    uint8_t a[32], b[32], c[32];
    uint64_t r1, r2, r3;
    cr_assert_eq(mqe2e_keystore_group_secret(ks, "g", 1, a, &r1), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_secret(ks, "g", 2, b, &r2), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_secret(ks, "g", 3, c, &r3), MQE2E_OK);
    cr_assert_eq(r1, 20);
    cr_assert_eq(r2, 30);
    cr_assert_eq(r3, 0);
    cr_assert_neq(memcmp(a, b, 32), 0);
    cr_assert_neq(memcmp(b, c, 32), 0);
    cr_assert_eq(mqe2e_keystore_group_current_epoch(ks, "g", &e), MQE2E_OK);
    cr_assert_eq(e, 3);

    cr_assert_eq(mqe2e_keystore_group_prune(ks, "g", 20), 0);
    cr_assert_eq(mqe2e_keystore_group_prune(ks, "g", 21), 1);
    cr_assert_eq(mqe2e_keystore_group_secret(ks, "g", 1, a, NULL), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_keystore_group_prune(ks, "g", UINT64_MAX), 1);
    cr_assert_eq(mqe2e_keystore_group_secret(ks, "g", 2, a, NULL), MQE2E_ERR_NOT_FOUND);
    /* The current epoch is never pruned. */
    cr_assert_eq(mqe2e_keystore_group_secret(ks, "g", 3, a, NULL), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_prune(ks, "nope", 1), MQE2E_ERR_NOT_FOUND);
    mqe2e_keystore_close(ks);

    ks = open_ks();
    cr_assert_eq(mqe2e_keystore_group_secret(ks, "g", 2, a, NULL), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_keystore_group_secret(ks, "g", 3, a, NULL), MQE2E_OK);
    cr_assert_eq(memcmp(a, c, 32), 0);
    cr_assert_eq(mqe2e_keystore_group_remove(ks, "g"), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_remove(ks, "g"), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_keystore_group_count(ks), 0);
    mqe2e_keystore_close(ks);
    ks = open_ks();
    cr_assert_eq(mqe2e_keystore_group_count(ks), 0);
    cr_assert_eq(mqe2e_keystore_group_current_epoch(ks, "g", &e), MQE2E_ERR_NOT_FOUND);
    mqe2e_keystore_close(ks);
}

Test(keystore, add_epoch_rules)
{
    mqe2e_keystore *ks = create_ks("a");
    uint8_t s1[32], s2[32], s3[32], got[32];
    randombytes_buf(s1, 32);
    randombytes_buf(s2, 32);
    randombytes_buf(s3, 32);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, "g", NULL, 5, s1, 1), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, "", "t", 5, s1, 1), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, "g\n", "t", 5, s1, 1),
                 MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, "g", "t/#/x", 5, s1, 1),
                 MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, "g", "t", 5, s1, 1), MQE2E_OK);
    /* Same secret: no-op; different secret: refused and unchanged. */
    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, "g", NULL, 5, s1, 2), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, "g", NULL, 5, s2, 2), MQE2E_ERR_EXISTS);
    cr_assert_eq(mqe2e_keystore_group_secret(ks, "g", 5, got, NULL), MQE2E_OK);
    cr_assert_eq(memcmp(got, s1, 32), 0);
    /* An older epoch arriving late is stored already retired; current stays. */
    uint64_t r = 0;
    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, "g", NULL, 3, s2, 7), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_secret(ks, "g", 3, got, &r), MQE2E_OK);
    cr_assert_eq(r, 7);
    uint32_t e = 0;
    cr_assert_eq(mqe2e_keystore_group_current_epoch(ks, "g", &e), MQE2E_OK);
    cr_assert_eq(e, 5);
    /* A zero clock still marks retirement (never reads as current). */
    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, "g", NULL, 9, s3, 0), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_secret(ks, "g", 5, got, &r), MQE2E_OK);
    cr_assert_neq(r, 0);
    cr_assert_eq(mqe2e_keystore_group_current_epoch(ks, "g", &e), MQE2E_OK);
    cr_assert_eq(e, 9);
    cr_assert_eq(mqe2e_keystore_group_set_sender_id(ks, "g", 0), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_keystore_group_set_sender_id(ks, "h", 3), MQE2E_ERR_NOT_FOUND);
    mqe2e_keystore_close(ks);
}

/* Hand out numbers across many open/close and open/crash cycles: every
 * number is strictly greater than every number handed out before. */
static void seq_cycles(uint32_t block)
{
    mqe2e_keystore *ks = create_ks("seq");
    cr_assert_eq(mqe2e_keystore_group_generate(ks, "g", "t", 1, NULL), MQE2E_OK);
    mqe2e_keystore_close(ks);
    uint64_t last = 0;
    unsigned rnd = 12345;
    for (int cycle = 0; cycle < 40; cycle++) {
        ks = open_ks();
        cr_assert_eq(mqe2e_keystore_set_seq_block(ks, block), MQE2E_OK);
        rnd = rnd * 1103515245U + 12345U;
        unsigned n = (rnd >> 16) % (block * 2U + 3U);
        for (unsigned i = 0; i < n; i++) {
            uint64_t s = 0;
            cr_assert_eq(mqe2e_keystore_next_seq(ks, "g", &s), MQE2E_OK);
            cr_assert_gt(s, last, "block %u cycle %d: %llu after %llu", block, cycle,
                         (unsigned long long)s, (unsigned long long)last);
            if (last == 0) cr_assert_eq(s, 1);
            last = s;
        }
        if (cycle % 2 == 0)
            mqe2e__keystore_abandon(ks);
        else
            mqe2e_keystore_close(ks);
    }
    cr_assert_gt(last, 0);
}

Test(keystore, next_seq_block_1) { seq_cycles(1); }
Test(keystore, next_seq_block_3) { seq_cycles(3); }
Test(keystore, next_seq_block_1024) { seq_cycles(1024); }

Test(keystore, next_seq_reservation_is_durable_first)
{
    shared_store ss = {0};
    mqe2e_keystore *ks = NULL;
    cr_assert_eq(mqe2e_keystore_create(&ks, shared(&ss), "a", 0), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_generate(ks, "g", "t", 1, NULL), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_set_seq_block(ks, 0), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_keystore_set_seq_block(ks, (1U << 20) + 1U), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_keystore_set_seq_block(ks, 3), MQE2E_OK);
    uint64_t s = 0;
    int stores = ss.stores;
    for (uint64_t want = 1; want <= 3; want++) {
        cr_assert_eq(mqe2e_keystore_next_seq(ks, "g", &s), MQE2E_OK);
        cr_assert_eq(s, want);
    }
    cr_assert_eq(ss.stores, stores + 1, "one write per block");
    /* The next block cannot be written: nothing is handed out. */
    ss.fail = 1;
    s = 99;
    cr_assert_eq(mqe2e_keystore_next_seq(ks, "g", &s), MQE2E_ERR_IO);
    cr_assert_eq(mqe2e_keystore_next_seq(ks, "g", &s), MQE2E_ERR_IO);
    cr_assert_eq(s, 99);
    ss.fail = 0;
    cr_assert_eq(mqe2e_keystore_next_seq(ks, "g", &s), MQE2E_OK);
    cr_assert_eq(s, 4);
    cr_assert_eq(mqe2e_keystore_next_seq(ks, "nope", &s), MQE2E_ERR_NOT_FOUND);
    mqe2e__keystore_abandon(ks);
    /* After a crash the rest of the block (5, 6) is skipped. */
    cr_assert_eq(mqe2e_keystore_open(&ks, shared(&ss)), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_next_seq(ks, "g", &s), MQE2E_OK);
    cr_assert_eq(s, 7);
    mqe2e__keystore_abandon(ks);
    free(ss.blob);
}

Test(keystore, next_seq_exhausted)
{
    shared_store ss = {0};
    mqe2e_keystore *ks = NULL;
    cr_assert_eq(mqe2e_keystore_create(&ks, shared(&ss), "a", 0), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_generate(ks, "g", "t", 1, NULL), MQE2E_OK);
    mqe2e__keystore_abandon(ks);
    Mqe2e__V1__KeystoreState *st = mqe2e__v1__keystore_state__unpack(NULL, ss.len, ss.blob);
    cr_assert_not_null(st);
    /* Envelopes carry 48-bit sequence numbers: the last one is MQE2E_SEQ_MAX. */
    st->groups[0]->seq_reserved = MQE2E_SEQ_MAX - 1U;
    uint8_t buf[4096];
    size_t n = mqe2e__v1__keystore_state__pack(st, buf);
    mqe2e__v1__keystore_state__free_unpacked(st, NULL);
    cr_assert_eq(shared_store_fn(&ss, buf, n), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_open(&ks, shared(&ss)), MQE2E_OK);
    uint64_t s = 0;
    cr_assert_eq(mqe2e_keystore_next_seq(ks, "g", &s), MQE2E_OK);
    cr_assert_eq(s, MQE2E_SEQ_MAX - 1U);
    cr_assert_eq(mqe2e_keystore_next_seq(ks, "g", &s), MQE2E_OK);
    cr_assert_eq(s, MQE2E_SEQ_MAX);
    cr_assert_eq(mqe2e_keystore_next_seq(ks, "g", &s), MQE2E_ERR_EXHAUSTED);
    cr_assert_eq(mqe2e_keystore_next_seq(ks, "g", &s), MQE2E_ERR_EXHAUSTED);
    mqe2e_keystore_close(ks);
    free(ss.blob);
}

Test(keystore, replay_checkpoints_survive_flush_and_close)
{
    mqe2e_keystore *ks = create_ks("a");
    cr_assert_eq(mqe2e_keystore_group_generate(ks, "g", "t", 1, NULL), MQE2E_OK);
    mqe2e_replay_window w, got;
    memset(&w, 0, sizeof w);
    w.width = 256;
    w.any = true;
    w.top = 1000;
    w.bits[0] = 0x8000000000000001ULL;
    w.bits[3] = 0x0102030405060708ULL;
    mqe2e_replay_window bad = w;
    bad.width = 100;
    cr_assert_eq(mqe2e_keystore_replay_save(ks, "g", 1, 77, &bad), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_keystore_replay_save(ks, "nope", 1, 77, &w), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_keystore_replay_load(ks, "g", 1, 77, &got), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_keystore_replay_save(ks, "g", 1, 77, &w), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_flush(ks), MQE2E_OK);
    mqe2e__keystore_abandon(ks);

    ks = open_ks();
    memset(&got, 0xee, sizeof got);
    cr_assert_eq(mqe2e_keystore_replay_load(ks, "g", 1, 77, &got), MQE2E_OK);
    cr_assert_eq(got.top, 1000);
    cr_assert_eq(got.width, 256);
    cr_assert(got.any);
    cr_assert_eq(got.bits[0], w.bits[0]);
    cr_assert_eq(got.bits[1], 0);
    cr_assert_eq(got.bits[3], w.bits[3]);
    cr_assert_eq(mqe2e_keystore_replay_load(ks, "g", 2, 77, &got), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_keystore_replay_load(ks, "g", 1, 78, &got), MQE2E_ERR_NOT_FOUND);

    /* Saved without flush: written by close, lost by a crash. */
    w.top = 2000;
    cr_assert_eq(mqe2e_keystore_replay_save(ks, "g", 1, 77, &w), MQE2E_OK);
    mqe2e_replay_window empty;
    memset(&empty, 0, sizeof empty);
    empty.width = 64;
    cr_assert_eq(mqe2e_keystore_replay_save(ks, "g", 1, 5, &empty), MQE2E_OK);
    mqe2e_keystore_close(ks);
    ks = open_ks();
    cr_assert_eq(mqe2e_keystore_replay_load(ks, "g", 1, 77, &got), MQE2E_OK);
    cr_assert_eq(got.top, 2000);
    cr_assert_eq(mqe2e_keystore_replay_load(ks, "g", 1, 5, &got), MQE2E_OK);
    cr_assert(!got.any);
    cr_assert_eq(got.width, 64);
    w.top = 3000;
    cr_assert_eq(mqe2e_keystore_replay_save(ks, "g", 1, 77, &w), MQE2E_OK);
    mqe2e__keystore_abandon(ks);
    ks = open_ks();
    cr_assert_eq(mqe2e_keystore_replay_load(ks, "g", 1, 77, &got), MQE2E_OK);
    cr_assert_eq(got.top, 2000);
    mqe2e_keystore_close(ks);
}

Test(keystore, export_import)
{
    shared_store sa = {0}, sb = {0};
    mqe2e_keystore *a = NULL, *b = NULL;
    cr_assert_eq(mqe2e_keystore_create(&a, shared(&sa), "authority", 0), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_create(&b, shared(&sb), "device", 0), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_generate(a, "hr", "fleet/+/hr", 10, NULL), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_generate(a, "hr", NULL, 20, NULL), MQE2E_OK);
    uint8_t *bundle = NULL;
    size_t blen = 0;
    cr_assert_eq(mqe2e_keystore_group_export(a, "nope", "pw", 2, &bundle, &blen),
                 MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_keystore_group_export(a, "hr", "pw", 2, &bundle, &blen), MQE2E_OK);

    char name[64];
    cr_assert_eq(mqe2e_keystore_group_import(b, bundle, blen, "pX", 2, 30, name, sizeof name),
                 MQE2E_ERR_AUTH);
    uint8_t *t = malloc(blen);
    memcpy(t, bundle, blen);
    t[blen - 5] ^= 1;
    cr_assert_eq(mqe2e_keystore_group_import(b, t, blen, "pw", 2, 30, name, sizeof name),
                 MQE2E_ERR_AUTH);
    int rc = mqe2e_keystore_group_import(b, bundle, 20, "pw", 2, 30, name, sizeof name);
    cr_assert(rc == MQE2E_ERR_DECODE || rc == MQE2E_ERR_AUTH);
    free(t);
    cr_assert_eq(mqe2e_keystore_group_count(b), 0);
    cr_assert_eq(mqe2e_keystore_group_import(b, bundle, blen, "pw", 2, 30, name, 2),
                 MQE2E_ERR_BUFFER_TOO_SMALL);
    cr_assert_eq(mqe2e_keystore_group_count(b), 0);

    cr_assert_eq(mqe2e_keystore_group_import(b, bundle, blen, "pw", 2, 30, name, sizeof name),
                 MQE2E_OK);
    cr_assert_str_eq(name, "hr");
    cr_assert_str_eq(mqe2e_keystore_group_filter(b, "hr"), "fleet/+/hr");
    uint32_t e = 0;
    cr_assert_eq(mqe2e_keystore_group_current_epoch(b, "hr", &e), MQE2E_OK);
    cr_assert_eq(e, 2);
    for (uint32_t ep = 1; ep <= 2; ep++) {
        uint8_t x[32], y[32];
        uint64_t r = 0;
        cr_assert_eq(mqe2e_keystore_group_secret(a, "hr", ep, x, NULL), MQE2E_OK);
        cr_assert_eq(mqe2e_keystore_group_secret(b, "hr", ep, y, &r), MQE2E_OK);
        cr_assert_eq(memcmp(x, y, 32), 0);
        cr_assert_eq(r, ep == 1 ? 30U : 0U);
    }
    /* The receiving side keeps its own sender id. */
    uint32_t sid = 0;
    cr_assert_eq(mqe2e_keystore_group_sender_id(b, "hr", &sid), MQE2E_OK);
    cr_assert_eq(sid, mqe2e_keystore_sender_id(b));
    /* Importing the same bundle again changes nothing. */
    cr_assert_eq(mqe2e_keystore_group_import(b, bundle, blen, "pw", 2, 40, NULL, 0), MQE2E_OK);
    free(bundle);

    /* A conflicting epoch secret refuses the whole bundle. */
    cr_assert_eq(mqe2e_keystore_group_generate(a, "hr", NULL, 50, NULL), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_export(a, "hr", "pw", 2, &bundle, &blen), MQE2E_OK);
    mqe2e_keystore *c = NULL;
    shared_store sc = {0};
    uint8_t other[32] = {1, 2, 3};
    cr_assert_eq(mqe2e_keystore_create(&c, shared(&sc), "c", 0), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(c, "hr", "x/y", 1, other, 5), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_import(c, bundle, blen, "pw", 2, 60, NULL, 0),
                 MQE2E_ERR_EXISTS);
    cr_assert_eq(mqe2e_keystore_group_current_epoch(c, "hr", &e), MQE2E_OK);
    cr_assert_eq(e, 1);
    /* B already has 1 and 2 (same secrets): it gains 3, persisted. */
    cr_assert_eq(mqe2e_keystore_group_import(b, bundle, blen, "pw", 2, 60, NULL, 0), MQE2E_OK);
    mqe2e__keystore_abandon(b);
    cr_assert_eq(mqe2e_keystore_open(&b, shared(&sb)), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_current_epoch(b, "hr", &e), MQE2E_OK);
    cr_assert_eq(e, 3);
    free(bundle);
    mqe2e_keystore_close(a);
    mqe2e_keystore_close(b);
    mqe2e_keystore_close(c);
    free(sa.blob);
    free(sb.blob);
    free(sc.blob);
}

Test(keystore, passphrase_file_round_trip)
{
    mqe2e_storage s;
    cr_assert_eq(mqe2e_storage_file_passphrase(&s, path, "secret words", 12), MQE2E_OK);
    mqe2e_keystore *ks = NULL;
    cr_assert_eq(mqe2e_keystore_create(&ks, s, "pw-client", 0), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_generate(ks, "g", "t/#", 1, NULL), MQE2E_OK);
    mqe2e_keystore_close(ks);
    cr_assert_eq(mqe2e_storage_file_passphrase(&s, path, "wrong words!", 12), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_open(&ks, s), MQE2E_ERR_AUTH);
    cr_assert_eq(mqe2e_storage_file_passphrase(&s, path, "secret words", 12), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_open(&ks, s), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_count(ks), 1);
    mqe2e_keystore_close(ks);
}

Test(keystore, null_is_harmless)
{
    mqe2e_keystore_close(NULL);
    mqe2e__keystore_abandon(NULL);
    cr_assert_eq(mqe2e_keystore_group_count(NULL), 0);
    cr_assert_null(mqe2e_keystore_client_id(NULL));
    cr_assert_eq(mqe2e_keystore_flush(NULL), MQE2E_ERR_INVALID_ARG);
    cr_assert_neq(mqe2e_sender_id_from_client_id(NULL), 0);
}

/* ---- control plane: authority pin, credential, revocation list, push_seq ---- */

static mqe2e_authority_pin test_pin(uint8_t fill)
{
    mqe2e_authority_pin pin;
    memset(&pin, 0, sizeof pin);
    strcpy(pin.authority_id, "authority");
    strcpy(pin.control_prefix, "mqe2e");
    memset(pin.sign_public, fill, sizeof pin.sign_public);
    memset(pin.dh_public, (uint8_t)(fill + 1U), sizeof pin.dh_public);
    return pin;
}

Test(keystore, control_state_round_trip)
{
    mqe2e_keystore *ks = create_ks("dev-1");
    mqe2e_authority_pin pin = test_pin(7), got;
    const uint8_t *b;
    size_t len;
    uint64_t ver;

    cr_assert_eq(mqe2e_keystore_authority(ks, &got), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_keystore_credential(ks, &b, &len), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_keystore_revocation_list(ks, &b, &len, &ver), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_keystore_push_seq(ks), 0);

    cr_assert_eq(mqe2e_keystore_set_authority(ks, &pin), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_set_authority(ks, &pin), MQE2E_OK, "same pin is a no-op");
    cr_assert_eq(mqe2e_keystore_set_credential(ks, (const uint8_t *)"cred-bytes", 10), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_set_revocation_list(ks, (const uint8_t *)"rl-v2", 5, 2), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_set_push_seq(ks, 5), MQE2E_OK);
    mqe2e__keystore_abandon(ks); /* every set is durable on its own: no close needed */

    ks = open_ks();
    cr_assert_eq(mqe2e_keystore_authority(ks, &got), MQE2E_OK);
    cr_assert_str_eq(got.authority_id, "authority");
    cr_assert_str_eq(got.control_prefix, "mqe2e");
    cr_assert_arr_eq(got.sign_public, pin.sign_public, 32);
    cr_assert_arr_eq(got.dh_public, pin.dh_public, 32);
    cr_assert_eq(mqe2e_keystore_credential(ks, &b, &len), MQE2E_OK);
    cr_assert_eq(len, 10);
    cr_assert_arr_eq(b, "cred-bytes", 10);
    cr_assert_eq(mqe2e_keystore_revocation_list(ks, &b, &len, &ver), MQE2E_OK);
    cr_assert_eq(ver, 2);
    cr_assert_arr_eq(b, "rl-v2", 5);
    cr_assert_eq(mqe2e_keystore_push_seq(ks), 5);
    mqe2e_keystore_close(ks);
}

Test(keystore, control_state_never_goes_back)
{
    mqe2e_keystore *ks = create_ks("dev-1");
    mqe2e_authority_pin pin = test_pin(7), other = test_pin(9), got;
    const uint8_t *b;
    size_t len;
    uint64_t ver;

    cr_assert_eq(mqe2e_keystore_set_authority(ks, &pin), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_set_authority(ks, &other), MQE2E_ERR_EXISTS);
    other = pin;
    strcpy(other.control_prefix, "other");
    cr_assert_eq(mqe2e_keystore_set_authority(ks, &other), MQE2E_ERR_EXISTS);
    cr_assert_eq(mqe2e_keystore_authority(ks, &got), MQE2E_OK);
    cr_assert_str_eq(got.control_prefix, "mqe2e");

    cr_assert_eq(mqe2e_keystore_set_revocation_list(ks, (const uint8_t *)"v3", 2, 3), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_set_revocation_list(ks, (const uint8_t *)"v2", 2, 2),
                 MQE2E_ERR_REPLAY);
    cr_assert_eq(mqe2e_keystore_set_revocation_list(ks, (const uint8_t *)"xx", 2, 3), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_revocation_list(ks, &b, &len, &ver), MQE2E_OK);
    cr_assert_eq(ver, 3);
    cr_assert_arr_eq(b, "v3", 2, "an equal version keeps the stored list");
    cr_assert_eq(mqe2e_keystore_set_revocation_list(ks, (const uint8_t *)"v4", 2, 0),
                 MQE2E_ERR_INVALID_ARG);

    cr_assert_eq(mqe2e_keystore_set_push_seq(ks, 10), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_set_push_seq(ks, 9), MQE2E_ERR_REPLAY);
    cr_assert_eq(mqe2e_keystore_set_push_seq(ks, 10), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_push_seq(ks), 10);

    uint8_t big[MQE2E_KS_CREDENTIAL_MAX_BYTES + 1];
    memset(big, 1, sizeof big);
    cr_assert_eq(mqe2e_keystore_set_credential(ks, big, sizeof big), MQE2E_ERR_TOO_LARGE);
    cr_assert_eq(mqe2e_keystore_set_credential(ks, big, 0), MQE2E_ERR_INVALID_ARG);
    mqe2e_authority_pin bad = pin;
    bad.authority_id[0] = '\0';
    cr_assert_eq(mqe2e_keystore_set_authority(ks, &bad), MQE2E_ERR_INVALID_ARG);
    mqe2e_keystore_close(ks);
}

Test(keystore, control_state_durable_only_on_success)
{
    shared_store s = {NULL, 0, 0, 0};
    mqe2e_keystore *ks = NULL;
    mqe2e_authority_pin pin = test_pin(3), got;
    cr_assert_eq(mqe2e_keystore_create(&ks, shared(&s), "dev-2", 0), MQE2E_OK);
    s.fail = 1;
    cr_assert_eq(mqe2e_keystore_set_authority(ks, &pin), MQE2E_ERR_IO);
    cr_assert_eq(mqe2e_keystore_authority(ks, &got), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_keystore_set_push_seq(ks, 4), MQE2E_ERR_IO);
    cr_assert_eq(mqe2e_keystore_push_seq(ks), 0);
    s.fail = 0;
    cr_assert_eq(mqe2e_keystore_set_push_seq(ks, 4), MQE2E_OK);
    mqe2e_keystore_close(ks);
    free(s.blob);
}

Test(keystore, group_apply_bundles)
{
    mqe2e_keystore *ks = create_ks("dev-1");
    uint8_t s1[32], s2[32], out[32];
    uint32_t e, sid;
    uint64_t retired;
    memset(s1, 1, 32);
    memset(s2, 2, 32);

    cr_assert_eq(mqe2e_keystore_group_apply(ks, "g", "t/#", 1, s1, 42, 0, 1000), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_apply(ks, "g", "t/#", 1, s1, 42, 0, 1001), MQE2E_OK,
                 "idempotent");
    cr_assert_eq(mqe2e_keystore_group_sender_id(ks, "g", &sid), MQE2E_OK);
    cr_assert_eq(sid, 42);
    cr_assert_eq(mqe2e_keystore_group_apply(ks, "g", "t/#", 1, s2, 42, 0, 1001), MQE2E_ERR_EXISTS);
    cr_assert_eq(mqe2e_keystore_group_apply(ks, "g", "t/#", 2, s2, 43, 0, 2000), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_current_epoch(ks, "g", &e), MQE2E_OK);
    cr_assert_eq(e, 2);
    cr_assert_eq(mqe2e_keystore_group_sender_id(ks, "g", &sid), MQE2E_OK);
    cr_assert_eq(sid, 43);
    /* The authority's earlier retirement time wins over the local one. */
    cr_assert_eq(mqe2e_keystore_group_apply(ks, "g", NULL, 1, s1, 43, 1500, 2001), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_secret(ks, "g", 1, out, &retired), MQE2E_OK);
    cr_assert_eq(retired, 1500);
    /* Never for the current epoch. */
    cr_assert_eq(mqe2e_keystore_group_apply(ks, "g", NULL, 2, s2, 43, 1700, 2002), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_secret(ks, "g", 2, out, &retired), MQE2E_OK);
    cr_assert_eq(retired, 0);
    cr_assert_eq(mqe2e_keystore_group_apply(ks, "g", NULL, 3, s2, 0, 0, 2002),
                 MQE2E_ERR_INVALID_ARG);
    sodium_memzero(out, sizeof out);
    mqe2e_keystore_close(ks);
}

/* ------------------------------------------------------------------ scale */

static void window_of(mqe2e_replay_window *w, uint64_t top)
{
    cr_assert_eq(mqe2e_replay_init(w, 128), MQE2E_OK);
    cr_assert_eq(mqe2e_replay_update(w, top), MQE2E_OK);
    cr_assert_eq(mqe2e_replay_update(w, top > 3 ? top - 3 : top), MQE2E_OK);
}

/* Thousands of checkpoints over two epochs: each is found again by
 * (epoch, sender), after updates, a reopen and a prune of one epoch. */
Test(keystore, many_replay_checkpoints_indexed)
{
    shared_store ss = {0};
    mqe2e_keystore *ks = NULL;
    cr_assert_eq(mqe2e_keystore_create(&ks, shared(&ss), "a", 0), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_generate(ks, "g", "t/#", 10, NULL), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_generate(ks, "g", NULL, 20, NULL), MQE2E_OK);
    mqe2e_replay_window w, got;
    const uint32_t n = 3000;
    for (uint32_t s = 1; s <= n; s++)
        for (uint32_t e = 1; e <= 2; e++) {
            window_of(&w, 100U + s * e);
            cr_assert_eq(mqe2e_keystore_replay_save(ks, "g", e, s * 7919U % 16777216U, &w),
                         MQE2E_OK);
        }
    /* Update every third one in place. */
    for (uint32_t s = 3; s <= n; s += 3) {
        window_of(&w, 900000U + s);
        cr_assert_eq(mqe2e_keystore_replay_save(ks, "g", 2, s * 7919U % 16777216U, &w), MQE2E_OK);
    }
    cr_assert_eq(mqe2e_keystore_flush(ks), MQE2E_OK);
    mqe2e__keystore_abandon(ks);
    cr_assert_eq(mqe2e_keystore_open(&ks, shared(&ss)), MQE2E_OK);
    for (uint32_t s = 1; s <= n; s++)
        for (uint32_t e = 1; e <= 2; e++) {
            uint64_t want = e == 2 && s % 3 == 0 ? 900000U + s : 100U + s * e;
            cr_assert_eq(mqe2e_keystore_replay_load(ks, "g", e, s * 7919U % 16777216U, &got),
                         MQE2E_OK);
            cr_assert_eq(got.top, want, "sender %u epoch %u", s, e);
        }
    cr_assert_eq(mqe2e_keystore_replay_load(ks, "g", 3, 7919U, &got), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_keystore_replay_load(ks, "g", 1, 7918U, &got), MQE2E_ERR_NOT_FOUND);
    /* Epoch 1 retired at 20: pruning it drops its checkpoints only. */
    cr_assert_eq(mqe2e_keystore_group_prune(ks, "g", 21), 1);
    for (uint32_t s = 1; s <= n; s++) {
        cr_assert_eq(mqe2e_keystore_replay_load(ks, "g", 1, s * 7919U % 16777216U, &got),
                     MQE2E_ERR_NOT_FOUND);
        cr_assert_eq(mqe2e_keystore_replay_load(ks, "g", 2, s * 7919U % 16777216U, &got),
                     MQE2E_OK);
    }
    /* New checkpoints still go in after the prune. */
    window_of(&w, 5);
    cr_assert_eq(mqe2e_keystore_replay_save(ks, "g", 2, 1, &w), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_replay_load(ks, "g", 2, 1, &got), MQE2E_OK);
    cr_assert_eq(got.top, 5);
    mqe2e_keystore_close(ks);
    free(ss.blob);
}

Test(keystore, unchanged_checkpoint_writes_nothing)
{
    shared_store ss = {0};
    mqe2e_keystore *ks = NULL;
    cr_assert_eq(mqe2e_keystore_create(&ks, shared(&ss), "a", 0), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_generate(ks, "g", "t", 1, NULL), MQE2E_OK);
    mqe2e_replay_window w;
    window_of(&w, 50);
    cr_assert_eq(mqe2e_keystore_replay_save(ks, "g", 1, 9, &w), MQE2E_OK);
    cr_assert_eq(mqe2e__keystore_dirty(ks), 1);
    cr_assert_eq(mqe2e_keystore_flush(ks), MQE2E_OK);
    cr_assert_eq(mqe2e__keystore_dirty(ks), 0);
    cr_assert_eq(mqe2e_keystore_replay_save(ks, "g", 1, 9, &w), MQE2E_OK);
    cr_assert_eq(mqe2e__keystore_dirty(ks), 0, "same window again is not a change");
    int stores = ss.stores;
    mqe2e_keystore_close(ks);
    cr_assert_eq(ss.stores, stores);
    free(ss.blob);
}

/* More groups than one secret slab holds; removing and re-adding groups
 * reuses slots; every secret stays intact across slabs and a reopen. */
Test(keystore, secrets_in_slabs)
{
    shared_store ss = {0};
    mqe2e_keystore *ks = NULL;
    cr_assert_eq(mqe2e_keystore_create(&ks, shared(&ss), "a", 0), MQE2E_OK);
    char gid[32];
    uint8_t sec[MQE2E_GROUP_SECRET_BYTES], got[MQE2E_GROUP_SECRET_BYTES];
    const int n = 300;
    for (int i = 0; i < n; i++) {
        snprintf(gid, sizeof gid, "g%03d", i);
        memset(sec, i & 0xff, sizeof sec);
        sec[0] = (uint8_t)(i >> 8);
        cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, gid, "t/#", 1, sec, 1), MQE2E_OK);
    }
    for (int i = 0; i < n; i += 2) {
        snprintf(gid, sizeof gid, "g%03d", i);
        cr_assert_eq(mqe2e_keystore_group_remove(ks, gid), MQE2E_OK);
    }
    for (int i = 0; i < n; i += 4) {
        snprintf(gid, sizeof gid, "g%03d", i);
        memset(sec, 0xee, sizeof sec);
        sec[1] = (uint8_t)i;
        cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, gid, "t/#", 1, sec, 1), MQE2E_OK);
    }
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n; i++) {
            snprintf(gid, sizeof gid, "g%03d", i);
            int rc = mqe2e_keystore_group_secret(ks, gid, 1, got, NULL);
            if (i % 2 == 0 && i % 4 != 0) {
                cr_assert_eq(rc, MQE2E_ERR_NOT_FOUND);
                continue;
            }
            cr_assert_eq(rc, MQE2E_OK, "%s", gid);
            if (i % 4 == 0) {
                memset(sec, 0xee, sizeof sec);
                sec[1] = (uint8_t)i;
            } else {
                memset(sec, i & 0xff, sizeof sec);
                sec[0] = (uint8_t)(i >> 8);
            }
            cr_assert_arr_eq(got, sec, sizeof sec, "%s pass %d", gid, pass);
        }
        mqe2e_keystore_close(ks);
        cr_assert_eq(mqe2e_keystore_open(&ks, shared(&ss)), MQE2E_OK);
    }
    /* Prune frees slots too. */
    cr_assert_eq(mqe2e_keystore_group_generate(ks, "g001", NULL, 5, NULL), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_prune(ks, "g001", 6), 1);
    cr_assert_eq(mqe2e_keystore_group_secret(ks, "g001", 1, got, NULL), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(mqe2e_keystore_group_secret(ks, "g001", 2, got, NULL), MQE2E_OK);
    mqe2e_keystore_close(ks);
    free(ss.blob);
}

/* One durable reservation tops up every group that has nothing reserved, so
 * the first number of each group after open costs no further write; numbers
 * never repeat across a crash; a failed write hands out nothing anywhere. */
Test(keystore, reservation_covers_every_group)
{
    shared_store ss = {0};
    mqe2e_keystore *ks = NULL;
    cr_assert_eq(mqe2e_keystore_create(&ks, shared(&ss), "a", 0), MQE2E_OK);
    char gid[16];
    for (int i = 0; i < 5; i++) {
        snprintf(gid, sizeof gid, "g%d", i);
        cr_assert_eq(mqe2e_keystore_group_generate(ks, gid, "t", 1, NULL), MQE2E_OK);
    }
    uint64_t last[5] = {0}, s = 0;
    for (int cycle = 0; cycle < 6; cycle++) {
        if (cycle > 0) cr_assert_eq(mqe2e_keystore_open(&ks, shared(&ss)), MQE2E_OK);
        int stores = ss.stores;
        for (int i = 0; i < 5; i++) {
            snprintf(gid, sizeof gid, "g%d", (i + cycle) % 5);
            cr_assert_eq(mqe2e_keystore_next_seq(ks, gid, &s), MQE2E_OK);
            cr_assert_gt(s, last[(i + cycle) % 5], "cycle %d %s", cycle, gid);
            last[(i + cycle) % 5] = s;
        }
        cr_assert_eq(ss.stores, stores + 1, "cycle %d: one write for five groups", cycle);
        if (cycle % 2 == 0)
            mqe2e__keystore_abandon(ks);
        else
            mqe2e_keystore_close(ks);
    }
    /* A reservation that cannot be written hands out nothing, for the group
     * asking and for the ones it would have topped up. */
    cr_assert_eq(mqe2e_keystore_open(&ks, shared(&ss)), MQE2E_OK);
    ss.fail = 1;
    cr_assert_eq(mqe2e_keystore_next_seq(ks, "g0", &s), MQE2E_ERR_IO);
    cr_assert_eq(mqe2e_keystore_next_seq(ks, "g1", &s), MQE2E_ERR_IO);
    ss.fail = 0;
    int stores = ss.stores;
    cr_assert_eq(mqe2e_keystore_next_seq(ks, "g1", &s), MQE2E_OK);
    cr_assert_gt(s, last[1]);
    cr_assert_eq(ss.stores, stores + 1);
    mqe2e__keystore_abandon(ks);
    cr_assert_eq(mqe2e_keystore_open(&ks, shared(&ss)), MQE2E_OK);
    for (int i = 0; i < 5; i++) {
        snprintf(gid, sizeof gid, "g%d", i);
        cr_assert_eq(mqe2e_keystore_next_seq(ks, gid, &s), MQE2E_OK);
        cr_assert_gt(s, last[i]);
    }
    mqe2e_keystore_close(ks);
    free(ss.blob);
}

/* With a clock, a block used up quickly doubles the next one (up to 65,536);
 * a slow publisher keeps the base block. Numbers stay strictly increasing. */
Test(keystore, adaptive_reservation_block)
{
    shared_store ss = {0};
    mqe2e_keystore *ks = NULL;
    cr_assert_eq(mqe2e_keystore_create(&ks, shared(&ss), "a", 0), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_generate(ks, "g", "t", 1, NULL), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_set_seq_block(ks, 4), MQE2E_OK);
    uint64_t s = 0, prev = 0;
    int stores = ss.stores;
    /* 4 + 8 + 16 + 32 = 60 numbers in the same second: 4 writes, not 15. */
    for (int i = 0; i < 60; i++) {
        cr_assert_eq(mqe2e__keystore_next_seq_at(ks, "g", 100, &s, NULL), MQE2E_OK);
        cr_assert_gt(s, prev);
        prev = s;
    }
    cr_assert_eq(ss.stores, stores + 4);
    /* Keep going fast: the block is capped at 65,536. */
    stores = ss.stores;
    for (int i = 0; i < 200000; i++)
        cr_assert_eq(mqe2e__keystore_next_seq_at(ks, "g", 101, &s, NULL), MQE2E_OK);
    /* 64, 128, ..., 65536 covers 131,008; the rest needs one or two more. */
    cr_assert_leq(ss.stores - stores, 13);
    cr_assert_geq(ss.stores - stores, 12);
    /* Slow: one block per two minutes goes back to the base block. */
    mqe2e__keystore_abandon(ks);
    cr_assert_eq(mqe2e_keystore_open(&ks, shared(&ss)), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_set_seq_block(ks, 4), MQE2E_OK);
    cr_assert_eq(mqe2e__keystore_next_seq_at(ks, "g", 1000, &s, NULL), MQE2E_OK);
    cr_assert_gt(s, prev + 200000U - 60U);
    prev = s;
    stores = ss.stores;
    for (int i = 1; i < 40; i++) {
        cr_assert_eq(mqe2e__keystore_next_seq_at(ks, "g", 1000U + (uint64_t)(i / 4) * 120U, &s, NULL),
                     MQE2E_OK);
        cr_assert_eq(s, prev + 1);
        prev = s;
    }
    cr_assert_eq(ss.stores, stores + 9, "base blocks of 4: %d", ss.stores - stores);
    /* Without a clock the block is exactly the base (the public call). */
    stores = ss.stores;
    for (int i = 0; i < 40; i++) cr_assert_eq(mqe2e_keystore_next_seq(ks, "g", &s), MQE2E_OK);
    cr_assert_eq(ss.stores, stores + 10);
    mqe2e_keystore_close(ks);
    free(ss.blob);
}

/* ------------------------------------------------------------------ */
/* Nonce uniqueness (docs/PROTOCOL.md 2.4) */

/* Every open draws a fresh 48-bit instance per group; a restored copy of the
 * file hands out the same sequence numbers again, but under another instance. */
Test(keystore, instance_fresh_per_open_and_restore)
{
    shared_store ss = {0};
    mqe2e_keystore *ks = NULL;
    cr_assert_eq(mqe2e_keystore_create(&ks, shared(&ss), "a", 0), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_generate(ks, "g", "t", 1, NULL), MQE2E_OK);
    uint64_t inst[8], s1 = 0, s2 = 0, i1 = 0;
    cr_assert_eq(mqe2e_keystore_group_instance(ks, "g", &inst[0]), MQE2E_OK);
    cr_assert_eq(mqe2e__keystore_next_seq_at(ks, "g", 0, &s1, &i1), MQE2E_OK);
    cr_assert_eq(i1, inst[0], "next_seq hands out the group's instance");
    cr_assert_leq(inst[0], MQE2E_INSTANCE_MAX);
    cr_assert_eq(mqe2e_keystore_group_instance(ks, "nope", &inst[1]), MQE2E_ERR_NOT_FOUND);
    mqe2e_keystore_close(ks);
    /* A backup of the file as it is now. */
    uint8_t *backup = malloc(ss.len);
    size_t backup_len = ss.len;
    memcpy(backup, ss.blob, ss.len);

    for (int i = 1; i < 8; i++) {
        cr_assert_eq(mqe2e_keystore_open(&ks, shared(&ss)), MQE2E_OK);
        cr_assert_eq(mqe2e_keystore_group_instance(ks, "g", &inst[i]), MQE2E_OK);
        mqe2e_keystore_close(ks);
    }
    for (int i = 0; i < 8; i++)
        for (int j = i + 1; j < 8; j++) cr_assert_neq(inst[i], inst[j], "opens %d and %d", i, j);

    /* Restore the backup twice: the same seq comes out both times, under two instances. */
    uint64_t r_inst[2], r_seq[2];
    for (int r = 0; r < 2; r++) {
        free(ss.blob);
        ss.blob = malloc(backup_len);
        memcpy(ss.blob, backup, backup_len);
        ss.len = backup_len;
        cr_assert_eq(mqe2e_keystore_open(&ks, shared(&ss)), MQE2E_OK);
        cr_assert_eq(mqe2e__keystore_next_seq_at(ks, "g", 0, &r_seq[r], &r_inst[r]), MQE2E_OK);
        mqe2e_keystore_close(ks);
    }
    cr_assert_eq(r_seq[0], r_seq[1], "the restored file repeats its sequence numbers");
    cr_assert_neq(r_inst[0], r_inst[1], "but never its instance");
    (void)s2;
    free(backup);
    free(ss.blob);
}

/* Removing a group and adding it again continues its sequence (a floor kept
 * in the keystore, across a close and open), under a new instance. */
Test(keystore, group_readd_never_restarts_seq)
{
    shared_store ss = {0};
    mqe2e_keystore *ks = NULL;
    uint8_t secret[MQE2E_GROUP_SECRET_BYTES];
    randombytes_buf(secret, sizeof secret);
    cr_assert_eq(mqe2e_keystore_create(&ks, shared(&ss), "a", 0), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, "g", "t/#", 3, secret, 1), MQE2E_OK);
    uint64_t seq = 0, last = 0, inst_before = 0, inst_after = 0;
    for (int i = 0; i < 5; i++)
        cr_assert_eq(mqe2e__keystore_next_seq_at(ks, "g", 0, &last, &inst_before), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_remove(ks, "g"), MQE2E_OK);
    mqe2e_keystore_close(ks);
    cr_assert_eq(mqe2e_keystore_open(&ks, shared(&ss)), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_count(ks), 0U);
    /* The same epoch and secret again (an import of the same group file). */
    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, "g", "t/#", 3, secret, 2), MQE2E_OK);
    cr_assert_eq(mqe2e__keystore_next_seq_at(ks, "g", 0, &seq, &inst_after), MQE2E_OK);
    cr_assert_gt(seq, last, "seq %llu after the re-add, %llu before the removal",
                 (unsigned long long)seq, (unsigned long long)last);
    cr_assert_neq(inst_after, inst_before);
    /* The floor was consumed by the re-added group and is not kept twice. */
    cr_assert_eq(mqe2e_keystore_group_remove(ks, "g"), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, "g", "t/#", 3, secret, 3), MQE2E_OK);
    uint64_t seq2 = 0;
    cr_assert_eq(mqe2e_keystore_next_seq(ks, "g", &seq2), MQE2E_OK);
    cr_assert_gt(seq2, seq);
    /* Another group is not affected by g's floor. */
    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, "h", "u/#", 1, secret, 3), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_next_seq(ks, "h", &seq), MQE2E_OK);
    cr_assert_eq(seq, 1U);
    mqe2e_keystore_close(ks);
    free(ss.blob);
}

/* The file backend: one open at a time, whatever the path. */
Test(keystore, second_open_refused_any_path)
{
    mqe2e_keystore *ks = create_ks("a");
    mqe2e_storage s2;
    cr_assert_eq(mqe2e_storage_file_key(&s2, path, file_key), MQE2E_ERR_LOCKED);
    char *dotted = malloc(strlen(dir) + 16);
    sprintf(dotted, "%s/./ks", dir);
    cr_assert_eq(mqe2e_storage_file_key(&s2, dotted, file_key), MQE2E_ERR_LOCKED);
    char *link = malloc(strlen(dir) + 16);
    sprintf(link, "%s/link", dir);
    cr_assert_eq(symlink(path, link), 0);
    cr_assert_eq(mqe2e_storage_file_key(&s2, link, file_key), MQE2E_ERR_LOCKED);
    long pid = 0;
    char holder[256];
    cr_assert_eq(mqe2e_storage_file_lock_holder(link, &pid, holder, sizeof holder), MQE2E_OK);
    cr_assert_eq(pid, (long)getpid());
    cr_assert_str_eq(holder, path);
    cr_assert_str_eq(mqe2e_error_name(MQE2E_ERR_LOCKED), "locked");
    mqe2e_keystore_close(ks);
    /* Closed: it opens again, through the link, and the write keeps the link. */
    cr_assert_eq(mqe2e_storage_file_key(&s2, link, file_key), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_open(&ks, s2), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_generate(ks, "g", "t", 1, NULL), MQE2E_OK);
    mqe2e_keystore_close(ks);
    struct stat st;
    cr_assert_eq(lstat(link, &st), 0);
    cr_assert(S_ISLNK(st.st_mode), "the symlink was replaced by a file");
    ks = open_ks();
    cr_assert_eq(mqe2e_keystore_group_count(ks), 1U, "the write reached the real file");
    mqe2e_keystore_close(ks);
    /* A dangling symlink is refused. */
    char *dangling = malloc(strlen(dir) + 16);
    sprintf(dangling, "%s/dangling", dir);
    cr_assert_eq(symlink("nowhere", dangling), 0);
    cr_assert_eq(mqe2e_storage_file_key(&s2, dangling, file_key), MQE2E_ERR_IO);
    free(dotted);
    free(link);
    free(dangling);
}
