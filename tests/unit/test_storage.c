/* Storage backends: memory, encrypted file (raw key and passphrase), key
 * files, passphrase sealing. Round trips, then tamper, truncation, missing
 * files, permissions and atomic replacement. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal_keystore.h"
#include "mqe2e/error.h"
#include "mqe2e/storage.h"
#include "testutil.h"

static char *dir;

static void setup(void)
{
    cr_assert_eq(mqe2e_init(), MQE2E_OK);
    dir = tu_tempdir();
}

static void teardown(void)
{
    tu_rmtree(dir);
    free(dir);
}

TestSuite(storage, .init = setup, .fini = teardown);

static char *path_in(const char *name)
{
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    cr_assert_not_null(p);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, data, len), (ssize_t)len);
    cr_assert_eq(fchmod(fd, mode), 0);
    close(fd);
}

static void expect_load(mqe2e_storage *s, const void *want, size_t want_len)
{
    uint8_t *got = NULL;
    size_t got_len = 0;
    cr_assert_eq(s->load(s->ctx, &got, &got_len), MQE2E_OK);
    cr_assert_eq(got_len, want_len);
    cr_assert_eq(memcmp(got, want, want_len), 0);
    free(got);
}

static int load_rc(mqe2e_storage *s)
{
    uint8_t *got = NULL;
    size_t got_len = 0;
    int rc = s->load(s->ctx, &got, &got_len);
    if (rc == MQE2E_OK) free(got);
    return rc;
}

static const uint8_t blob1[] = "first keystore state";
static const uint8_t blob2[] = "second, longer keystore state blob";

Test(storage, memory_round_trip)
{
    mqe2e_storage s;
    cr_assert_eq(mqe2e_storage_memory(&s), MQE2E_OK);
    cr_assert_eq(load_rc(&s), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(s.store(s.ctx, blob1, sizeof blob1), MQE2E_OK);
    expect_load(&s, blob1, sizeof blob1);
    cr_assert_eq(s.store(s.ctx, blob2, sizeof blob2), MQE2E_OK);
    expect_load(&s, blob2, sizeof blob2);
    cr_assert_eq(s.store(s.ctx, NULL, 0), MQE2E_OK);
    expect_load(&s, "", 0);
    s.destroy(s.ctx);
    cr_assert_eq(mqe2e_storage_memory(NULL), MQE2E_ERR_INVALID_ARG);
}

Test(storage, file_key_round_trip_and_permissions)
{
    char *p = path_in("ks");
    uint8_t key[32], other[32];
    randombytes_buf(key, sizeof key);
    randombytes_buf(other, sizeof other);
    mqe2e_storage s;
    cr_assert_eq(mqe2e_storage_file_key(&s, p, key), MQE2E_OK);
    cr_assert_eq(load_rc(&s), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(s.store(s.ctx, blob1, sizeof blob1), MQE2E_OK);
    expect_load(&s, blob1, sizeof blob1);
    struct stat st;
    cr_assert_eq(stat(p, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    cr_assert_eq(s.store(s.ctx, blob2, sizeof blob2), MQE2E_OK);
    s.destroy(s.ctx);

    /* A fresh backend with the same key reads it; another key cannot. */
    cr_assert_eq(mqe2e_storage_file_key(&s, p, key), MQE2E_OK);
    expect_load(&s, blob2, sizeof blob2);
    s.destroy(s.ctx);
    cr_assert_eq(mqe2e_storage_file_key(&s, p, other), MQE2E_OK);
    cr_assert_eq(load_rc(&s), MQE2E_ERR_AUTH);
    s.destroy(s.ctx);

    /* The file is ciphertext: the blob does not appear in it. */
    size_t flen = 0;
    char *raw = tu_read_file(p, &flen);
    cr_assert_not_null(raw);
    cr_assert_eq(memcmp(raw, "MQE2EKS1\x02", 9), 0);
    cr_assert_eq(flen, 9 + 24 + sizeof blob2 + 16);
    for (size_t i = 0; i + 8 <= flen; i++) cr_assert_neq(memcmp(raw + i, "keystore", 8), 0);
    free(raw);
    free(p);
}

Test(storage, file_passphrase_round_trip_keeps_salt)
{
    char *p = path_in("ks-pw");
    mqe2e_storage s;
    cr_assert_eq(mqe2e_storage_file_passphrase(&s, p, "correct horse", 13), MQE2E_OK);
    cr_assert_eq(s.store(s.ctx, blob1, sizeof blob1), MQE2E_OK);
    size_t l1 = 0, l2 = 0;
    char *f1 = tu_read_file(p, &l1);
    cr_assert_eq(s.store(s.ctx, blob1, sizeof blob1), MQE2E_OK);
    char *f2 = tu_read_file(p, &l2);
    cr_assert_eq(l1, l2);
    cr_assert_eq(l1, 9 + 16 + 8 + 8 + 24 + sizeof blob1 + 16);
    cr_assert_eq(memcmp(f1, "MQE2EKS1\x01", 9), 0);
    /* Same salt and limits, fresh nonce on every write. */
    cr_assert_eq(memcmp(f1, f2, 9 + 16 + 16), 0);
    cr_assert_neq(memcmp(f1 + 41, f2 + 41, 24), 0);
    free(f1);
    free(f2);
    s.destroy(s.ctx);

    cr_assert_eq(mqe2e_storage_file_passphrase(&s, p, "correct horse", 13), MQE2E_OK);
    expect_load(&s, blob1, sizeof blob1);
    cr_assert_eq(s.store(s.ctx, blob2, sizeof blob2), MQE2E_OK);
    expect_load(&s, blob2, sizeof blob2);
    s.destroy(s.ctx);

    cr_assert_eq(mqe2e_storage_file_passphrase(&s, p, "correct horsf", 13), MQE2E_OK);
    cr_assert_eq(load_rc(&s), MQE2E_ERR_AUTH);
    s.destroy(s.ctx);

    /* A raw-key backend cannot read a passphrase file, nor the reverse. */
    uint8_t key[32] = {0};
    cr_assert_eq(mqe2e_storage_file_key(&s, p, key), MQE2E_OK);
    cr_assert_eq(load_rc(&s), MQE2E_ERR_AUTH);
    s.destroy(s.ctx);
    free(p);
}

static uint64_t header_u64(const char *f, size_t off)
{
    uint64_t v = 0;
    for (size_t i = 0; i < 8; i++) v = (v << 8) | (uint8_t)f[off + i];
    return v;
}

/* A new file records the chosen Argon2id limits in its header; a file made
 * with default limits (every file written before the limits were
 * configurable) records 2 passes, 64 MiB; either reopens through a backend
 * that asked for other limits, because the file's own header wins. */
Test(storage, kdf_limits_per_file)
{
    char *small = path_in("ks-small");
    char *dflt = path_in("ks-default");
    mqe2e_storage s;
    cr_assert_eq(mqe2e_storage_file_passphrase(&s, small, "pw", 2), MQE2E_OK);
    cr_assert_eq(mqe2e_storage_file_set_kdf(&s, MQE2E_KDF_OPSLIMIT_SMALL, MQE2E_KDF_MEMLIMIT_SMALL),
                 MQE2E_OK);
    cr_assert_eq(s.store(s.ctx, blob1, sizeof blob1), MQE2E_OK);
    /* Once the key is derived the limits are fixed. */
    cr_assert_eq(mqe2e_storage_file_set_kdf(&s, 3, 64U << 20), MQE2E_ERR_INVALID_ARG);
    s.destroy(s.ctx);
    cr_assert_eq(mqe2e_storage_file_passphrase(&s, dflt, "pw", 2), MQE2E_OK);
    cr_assert_eq(s.store(s.ctx, blob2, sizeof blob2), MQE2E_OK);
    s.destroy(s.ctx);

    size_t l = 0;
    char *f = tu_read_file(small, &l);
    cr_assert_eq(header_u64(f, 9 + 16), MQE2E_KDF_OPSLIMIT_SMALL);
    cr_assert_eq(header_u64(f, 9 + 16 + 8), MQE2E_KDF_MEMLIMIT_SMALL);
    free(f);
    f = tu_read_file(dflt, &l);
    cr_assert_eq(header_u64(f, 9 + 16), 2U);
    cr_assert_eq(header_u64(f, 9 + 16 + 8), 64U << 20);
    free(f);

    cr_assert_eq(mqe2e_storage_file_passphrase(&s, small, "pw", 2), MQE2E_OK);
    cr_assert_eq(mqe2e_storage_file_set_kdf(&s, 4, 16U << 20), MQE2E_OK);
    expect_load(&s, blob1, sizeof blob1);
    cr_assert_eq(s.store(s.ctx, blob2, sizeof blob2), MQE2E_OK);
    s.destroy(s.ctx);
    f = tu_read_file(small, &l);
    cr_assert_eq(header_u64(f, 9 + 16 + 8), MQE2E_KDF_MEMLIMIT_SMALL, "rewrite kept the file's limits");
    free(f);
    cr_assert_eq(mqe2e_storage_file_passphrase(&s, dflt, "pw", 2), MQE2E_OK);
    cr_assert_eq(mqe2e_storage_file_set_kdf(&s, MQE2E_KDF_OPSLIMIT_SMALL, MQE2E_KDF_MEMLIMIT_SMALL),
                 MQE2E_OK);
    expect_load(&s, blob2, sizeof blob2);
    s.destroy(s.ctx);
    free(small);
    free(dflt);
}

/* Below the floor (or above the ceilings), and on the wrong kind of backend,
 * the limits are refused. */
Test(storage, kdf_limits_floor_refused)
{
    char *p = path_in("ks-weak");
    mqe2e_storage s;
    cr_assert_eq(mqe2e_storage_file_passphrase(&s, p, "pw", 2), MQE2E_OK);
    cr_assert_eq(mqe2e_storage_file_set_kdf(&s, 16, 4U << 20), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_storage_file_set_kdf(&s, 1, 8U << 20), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_storage_file_set_kdf(&s, 4, 8U << 20), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_storage_file_set_kdf(&s, 0, 64U << 20), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_storage_file_set_kdf(&s, 17, 64U << 20), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_storage_file_set_kdf(&s, 1, (1ULL << 30) + 1U), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_storage_file_set_kdf(&s, 1, 40U << 20), MQE2E_OK);
    cr_assert_eq(mqe2e_storage_file_set_kdf(&s, 5, 8U << 20), MQE2E_OK);
    cr_assert_eq(mqe2e_storage_file_set_kdf(NULL, 5, 8U << 20), MQE2E_ERR_INVALID_ARG);
    s.destroy(s.ctx);
    uint8_t key[32] = {0};
    cr_assert_eq(mqe2e_storage_file_key(&s, p, key), MQE2E_OK);
    cr_assert_eq(mqe2e_storage_file_set_kdf(&s, 5, 8U << 20), MQE2E_ERR_INVALID_ARG);
    s.destroy(s.ctx);
    mqe2e_storage m;
    cr_assert_eq(mqe2e_storage_memory(&m), MQE2E_OK);
    cr_assert_eq(mqe2e_storage_file_set_kdf(&m, 5, 8U << 20), MQE2E_ERR_INVALID_ARG);
    m.destroy(m.ctx);
    free(p);
}

Test(storage, file_bad_args)
{
    mqe2e_storage s;
    uint8_t key[32] = {0};
    cr_assert_eq(mqe2e_storage_file_passphrase(&s, "x", "", 0), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_storage_file_passphrase(&s, "x", NULL, 3), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_storage_file_passphrase(&s, "", "pw", 2), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_storage_file_key(&s, NULL, key), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_storage_file_key(NULL, "x", key), MQE2E_ERR_INVALID_ARG);
}

Test(storage, file_missing_is_not_found)
{
    char *p = path_in("ks-not-yet");
    uint8_t key[32] = {1};
    mqe2e_storage s;
    cr_assert_eq(mqe2e_storage_file_key(&s, p, key), MQE2E_OK);
    cr_assert_eq(load_rc(&s), MQE2E_ERR_NOT_FOUND);
    s.destroy(s.ctx);
    free(p);
    /* The directory must exist: the lock file lives next to the keystore. */
    p = path_in("nope/ks");
    cr_assert_eq(mqe2e_storage_file_key(&s, p, key), MQE2E_ERR_IO);
    free(p);
}

Test(storage, file_every_byte_flipped_fails)
{
    char *p = path_in("ks");
    uint8_t key[32];
    randombytes_buf(key, sizeof key);
    mqe2e_storage s;
    cr_assert_eq(mqe2e_storage_file_key(&s, p, key), MQE2E_OK);
    cr_assert_eq(s.store(s.ctx, blob1, sizeof blob1), MQE2E_OK);
    size_t len = 0;
    char *orig = tu_read_file(p, &len);
    cr_assert_not_null(orig);
    for (size_t i = 0; i < len; i++) {
        for (unsigned bit = 0; bit < 8; bit += 7) {
            char *m = malloc(len);
            memcpy(m, orig, len);
            m[i] = (char)(m[i] ^ (1 << bit));
            write_file(p, m, len, 0600);
            int rc = load_rc(&s);
            cr_assert(rc == MQE2E_ERR_AUTH || rc == MQE2E_ERR_DECODE,
                      "byte %zu bit %u: rc %d", i, bit, rc);
            free(m);
        }
    }
    write_file(p, orig, len, 0600);
    expect_load(&s, blob1, sizeof blob1);
    /* Appended garbage is tampering too. */
    char *longer = malloc(len + 1);
    memcpy(longer, orig, len);
    longer[len] = 0;
    write_file(p, longer, len + 1, 0600);
    cr_assert_eq(load_rc(&s), MQE2E_ERR_AUTH);
    free(longer);
    free(orig);
    s.destroy(s.ctx);
    free(p);
}

Test(storage, file_truncated_fails)
{
    char *p = path_in("ks");
    uint8_t key[32];
    randombytes_buf(key, sizeof key);
    mqe2e_storage s;
    cr_assert_eq(mqe2e_storage_file_key(&s, p, key), MQE2E_OK);
    cr_assert_eq(s.store(s.ctx, blob1, sizeof blob1), MQE2E_OK);
    size_t len = 0;
    char *orig = tu_read_file(p, &len);
    for (size_t n = 0; n < len; n++) {
        write_file(p, orig, n, 0600);
        int rc = load_rc(&s);
        if (n < 9 + 24 + 16)
            cr_assert_eq(rc, MQE2E_ERR_DECODE, "length %zu: rc %d", n, rc);
        else
            cr_assert_eq(rc, MQE2E_ERR_AUTH, "length %zu: rc %d", n, rc);
    }
    free(orig);
    s.destroy(s.ctx);
    free(p);
}

static void put_u64be(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}

Test(storage, hostile_kdf_limits_refused)
{
    uint8_t *sealed = NULL;
    size_t len = 0;
    cr_assert_eq(mqe2e_passphrase_seal(&sealed, &len, blob1, sizeof blob1, "pw", 2), MQE2E_OK);
    uint8_t *out = NULL;
    size_t out_len = 0;
    /* memlimit of 2 GiB, then opslimit of 2^40, then zero limits. */
    uint8_t *m = malloc(len);
    memcpy(m, sealed, len);
    put_u64be(m + 9 + 16 + 8, 2ULL * 1024 * 1024 * 1024);
    cr_assert_eq(mqe2e_passphrase_open(&out, &out_len, m, len, "pw", 2), MQE2E_ERR_DECODE);
    memcpy(m, sealed, len);
    put_u64be(m + 9 + 16, 1ULL << 40);
    cr_assert_eq(mqe2e_passphrase_open(&out, &out_len, m, len, "pw", 2), MQE2E_ERR_DECODE);
    memcpy(m, sealed, len);
    put_u64be(m + 9 + 16, 0);
    cr_assert_eq(mqe2e_passphrase_open(&out, &out_len, m, len, "pw", 2), MQE2E_ERR_DECODE);
    memcpy(m, sealed, len);
    m[8] = 3; /* unknown kdf */
    cr_assert_eq(mqe2e_passphrase_open(&out, &out_len, m, len, "pw", 2), MQE2E_ERR_DECODE);
    memcpy(m, sealed, len);
    m[0] = 'X';
    cr_assert_eq(mqe2e_passphrase_open(&out, &out_len, m, len, "pw", 2), MQE2E_ERR_DECODE);
    free(m);
    free(sealed);
}

Test(storage, leftover_temp_file_is_ignored)
{
    char *p = path_in("ks");
    uint8_t key[32];
    randombytes_buf(key, sizeof key);
    mqe2e_storage s;
    cr_assert_eq(mqe2e_storage_file_key(&s, p, key), MQE2E_OK);
    cr_assert_eq(s.store(s.ctx, blob1, sizeof blob1), MQE2E_OK);
    /* A crash between creating the temp file and renaming it leaves this. */
    char tmp[4096], ours[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.999999", p);
    write_file(tmp, "half-written garbage", 20, 0600);
    snprintf(ours, sizeof ours, "%s.tmp.%ld", p, (long)getpid());
    write_file(ours, "half-written garbage", 20, 0600);
    expect_load(&s, blob1, sizeof blob1);
    cr_assert_eq(s.store(s.ctx, blob2, sizeof blob2), MQE2E_OK);
    expect_load(&s, blob2, sizeof blob2);
    cr_assert_eq(access(ours, F_OK), -1, "our temp file is consumed by the rename");
    s.destroy(s.ctx);
    free(p);
}

Test(storage, failed_store_keeps_old_content)
{
    char *p = path_in("ks");
    uint8_t key[32];
    randombytes_buf(key, sizeof key);
    mqe2e_storage s;
    cr_assert_eq(mqe2e_storage_file_key(&s, p, key), MQE2E_OK);
    cr_assert_eq(s.store(s.ctx, blob1, sizeof blob1), MQE2E_OK);
    size_t l1 = 0;
    char *before = tu_read_file(p, &l1);
    /* A non-empty directory squatting on our temp name cannot be removed or
     * opened for writing, even by root: the store must fail cleanly. */
    char tmp[4096], inner[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", p, (long)getpid());
    cr_assert_eq(mkdir(tmp, 0700), 0);
    snprintf(inner, sizeof inner, "%s/x", tmp);
    write_file(inner, "x", 1, 0600);
    cr_assert_eq(s.store(s.ctx, blob2, sizeof blob2), MQE2E_ERR_IO);
    size_t l2 = 0;
    char *after = tu_read_file(p, &l2);
    cr_assert_eq(l1, l2);
    cr_assert_eq(memcmp(before, after, l1), 0);
    expect_load(&s, blob1, sizeof blob1);
    free(before);
    free(after);
    s.destroy(s.ctx);
    free(p);
}

Test(storage, store_into_vanished_directory)
{
    char *sub = path_in("sub");
    cr_assert_eq(mkdir(sub, 0700), 0);
    char *p = path_in("sub/ks");
    uint8_t key[32];
    randombytes_buf(key, sizeof key);
    mqe2e_storage s;
    cr_assert_eq(mqe2e_storage_file_key(&s, p, key), MQE2E_OK);
    /* The lock file (held open) is the only entry; take it away with the directory. */
    char *lock = path_in("sub/ks" MQE2E_STORAGE_LOCK_SUFFIX);
    cr_assert_eq(unlink(lock), 0);
    free(lock);
    cr_assert_eq(rmdir(sub), 0);
    cr_assert_eq(s.store(s.ctx, blob1, sizeof blob1), MQE2E_ERR_IO);
    cr_assert_eq(access(sub, F_OK), -1, "nothing was created");
    cr_assert_eq(load_rc(&s), MQE2E_ERR_NOT_FOUND);
    s.destroy(s.ctx);
    free(p);
    free(sub);
}

Test(storage, key_file_formats)
{
    char *p = path_in("key");
    uint8_t want[32], got[32];
    randombytes_buf(want, sizeof want);
    write_file(p, want, 32, 0600);
    cr_assert_eq(mqe2e_storage_read_key_file(got, p), MQE2E_OK);
    cr_assert_eq(memcmp(got, want, 32), 0);

    char hex[66];
    sodium_bin2hex(hex, sizeof hex, want, 32);
    write_file(p, hex, 64, 0600);
    memset(got, 0, sizeof got);
    cr_assert_eq(mqe2e_storage_read_key_file(got, p), MQE2E_OK);
    cr_assert_eq(memcmp(got, want, 32), 0);
    hex[64] = '\n';
    write_file(p, hex, 65, 0400);
    memset(got, 0, sizeof got);
    cr_assert_eq(mqe2e_storage_read_key_file(got, p), MQE2E_OK);
    cr_assert_eq(memcmp(got, want, 32), 0);

    /* Wrong sizes and non-hex text. */
    write_file(p, want, 31, 0600);
    cr_assert_eq(mqe2e_storage_read_key_file(got, p), MQE2E_ERR_DECODE);
    write_file(p, want, 0, 0600);
    cr_assert_eq(mqe2e_storage_read_key_file(got, p), MQE2E_ERR_DECODE);
    hex[64] = '\n';
    hex[65] = '\n';
    write_file(p, hex, 66, 0600);
    cr_assert_eq(mqe2e_storage_read_key_file(got, p), MQE2E_ERR_DECODE);
    hex[10] = 'g';
    write_file(p, hex, 64, 0600);
    cr_assert_eq(mqe2e_storage_read_key_file(got, p), MQE2E_ERR_DECODE);
    free(p);
}

Test(storage, key_file_permissions_and_missing)
{
    char *p = path_in("key");
    uint8_t key[32] = {7}, got[32];
    const mode_t bad[] = {0640, 0604, 0644, 0660, 0602, 0610};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(p, key, 32, bad[i]);
        cr_assert_eq(mqe2e_storage_read_key_file(got, p), MQE2E_ERR_POLICY, "mode %o",
                     (unsigned)bad[i]);
    }
    write_file(p, key, 32, 0600);
    cr_assert_eq(mqe2e_storage_read_key_file(got, p), MQE2E_OK);
    char *missing = path_in("no-key");
    cr_assert_eq(mqe2e_storage_read_key_file(got, missing), MQE2E_ERR_IO);
    free(missing);
    free(p);
}

Test(storage, passphrase_seal_round_trip_and_tamper)
{
    uint8_t *sealed = NULL, *out = NULL;
    size_t len = 0, out_len = 0;
    const uint8_t data[4] = {1, 2, 3, 4};
    cr_assert_eq(mqe2e_passphrase_seal(&sealed, &len, data, sizeof data, "pw", 2), MQE2E_OK);
    cr_assert_eq(len, 9 + 16 + 16 + 24 + sizeof data + 16);
    cr_assert_eq(mqe2e_passphrase_open(&out, &out_len, sealed, len, "pw", 2), MQE2E_OK);
    cr_assert_eq(out_len, sizeof data);
    cr_assert_eq(memcmp(out, data, sizeof data), 0);
    free(out);
    cr_assert_eq(mqe2e_passphrase_open(&out, &out_len, sealed, len, "pW", 2), MQE2E_ERR_AUTH);
    cr_assert_eq(mqe2e_passphrase_open(&out, &out_len, sealed, len, "pw", 0),
                 MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_passphrase_seal(&out, &out_len, data, 4, "", 0), MQE2E_ERR_INVALID_ARG);

    /* Every byte: one derivation per flip outside magic and kdf. */
    uint8_t *m = malloc(len);
    for (size_t i = 0; i < len; i++) {
        memcpy(m, sealed, len);
        m[i] ^= 0x01;
        int rc = mqe2e_passphrase_open(&out, &out_len, m, len, "pw", 2);
        cr_assert(rc == MQE2E_ERR_AUTH || rc == MQE2E_ERR_DECODE, "byte %zu: rc %d", i, rc);
    }
    for (size_t n = 0; n < len; n += 7) {
        int rc = mqe2e_passphrase_open(&out, &out_len, sealed, n, "pw", 2);
        cr_assert(rc == MQE2E_ERR_AUTH || rc == MQE2E_ERR_DECODE, "length %zu: rc %d", n, rc);
    }
    free(m);

    /* An empty blob seals and opens too. */
    uint8_t *e = NULL;
    size_t elen = 0;
    cr_assert_eq(mqe2e_passphrase_seal(&e, &elen, NULL, 0, "pw", 2), MQE2E_OK);
    cr_assert_eq(mqe2e_passphrase_open(&out, &out_len, e, elen, "pw", 2), MQE2E_OK);
    cr_assert_eq(out_len, 0);
    free(out);
    free(e);
    free(sealed);
}
