/*
 * Encrypted-file storage backend and key file reader.
 *
 * The blob is sealed in the format of docs/KEYSTORE.md and replaced by
 * write-to-temp, fsync, rename, fsync(directory): after a crash the path
 * names either the old or the new file, never a mix.
 *
 * Single writer: the backend resolves the path (symlinks included) and holds
 * an exclusive flock() on "<real path>.lock" from creation to destroy, so a
 * second backend on the same file fails with MQE2E_ERR_LOCKED, whichever
 * path, handle or process it comes from.
 */
/* flock() is BSD/Linux, outside strict POSIX. */
/* NOLINTNEXTLINE(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp): glibc feature macro */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <limits.h>
#include <sys/file.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <sodium.h>

#include "internal_keystore.h"
#include "mqe2e/error.h"
#include "mqe2e/storage.h"

/* A keystore is a few KiB; anything this large is not ours. */
#define FILE_MAX_BYTES (64U << 20)
#define KEY_FILE_MAX_BYTES 128U

/* Key material of one file backend; lives in sodium_malloc() memory. */
typedef struct file_secret {
    uint8_t key[MQE2E__SEAL_KEY_BYTES];
    size_t pass_len;
    char pass[]; /* passphrase, kept to re-derive if the file's salt changes */
} file_secret;

typedef struct file_ctx {
    char *path;        /* the resolved real path: reads and writes go here */
    int lock_fd;       /* holds the exclusive flock on path + ".lock" */
    unsigned kdf;      /* MQE2E__SEAL_KDF_* */
    int have_key;      /* key derived (always set for raw keys) */
    uint8_t salt[MQE2E__SEAL_SALT_BYTES];
    uint64_t opslimit, memlimit;
    uint64_t new_opslimit, new_memlimit; /* for the file this backend creates */
    file_secret *secret;
} file_ctx;

static void file_destroy(void *vctx)
{
    file_ctx *ctx = vctx;
    if (ctx == NULL) return;
    if (ctx->lock_fd >= 0) close(ctx->lock_fd); /* releases the lock */
    sodium_free(ctx->secret); /* wipes */
    free(ctx->path);
    free(ctx);
}

/* Read a whole file. MQE2E_ERR_NOT_FOUND when it does not exist. */
static int read_all(const char *path, uint8_t **data, size_t *len, size_t max, mode_t *mode)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? MQE2E_ERR_NOT_FOUND : MQE2E_ERR_IO;
    int rc = MQE2E_ERR_IO;
    uint8_t *buf = NULL;
    size_t size = 0;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) goto out;
    if (mode != NULL) *mode = st.st_mode;
    if (st.st_size < 0 || (uintmax_t)st.st_size > (uintmax_t)max) {
        rc = MQE2E_ERR_DECODE;
        goto out;
    }
    size = (size_t)st.st_size;
    buf = malloc(size > 0 ? size : 1U);
    if (buf == NULL) {
        rc = MQE2E_ERR_NOMEM;
        goto out;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) goto out; /* error, or the file shrank under us */
        got += (size_t)n;
    }
    *data = buf;
    *len = size;
    buf = NULL;
    rc = MQE2E_OK;
out:
    if (buf != NULL) {
        sodium_memzero(buf, size > 0 ? size : 1U);
        free(buf);
    }
    close(fd);
    return rc;
}

static int file_load(void *vctx, uint8_t **data, size_t *len)
{
    file_ctx *ctx = vctx;
    if (ctx == NULL || data == NULL || len == NULL) return MQE2E_ERR_INVALID_ARG;
    uint8_t *sealed = NULL;
    size_t sealed_len = 0;
    int rc = read_all(ctx->path, &sealed, &sealed_len, FILE_MAX_BYTES, NULL);
    if (rc != MQE2E_OK) return rc;
    mqe2e__seal_header h;
    rc = mqe2e__seal_parse(&h, sealed, sealed_len);
    if (rc != MQE2E_OK) goto out;
    /* A file sealed for the other kind of key cannot be opened with ours. */
    if (h.kdf != ctx->kdf) {
        rc = MQE2E_ERR_AUTH;
        goto out;
    }
    if (h.kdf == MQE2E__SEAL_KDF_PASSPHRASE &&
        (!ctx->have_key || sodium_memcmp(h.salt, ctx->salt, sizeof h.salt) != 0 ||
         h.opslimit != ctx->opslimit || h.memlimit != ctx->memlimit)) {
        ctx->have_key = 0;
        rc = mqe2e__seal_derive(ctx->secret->key, ctx->secret->pass, ctx->secret->pass_len,
                                h.salt, h.opslimit, h.memlimit);
        if (rc != MQE2E_OK) goto out;
        memcpy(ctx->salt, h.salt, sizeof ctx->salt);
        ctx->opslimit = h.opslimit;
        ctx->memlimit = h.memlimit;
        ctx->have_key = 1;
    }
    rc = mqe2e__unseal(data, len, &h, ctx->secret->key, sealed, sealed_len);
out:
    free(sealed); /* ciphertext only */
    return rc;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int fsync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    if (slash == NULL) {
        dir = strdup(".");
    } else if (slash == path) {
        dir = strdup("/");
    } else {
        size_t n = (size_t)(slash - path);
        dir = malloc(n + 1);
        if (dir != NULL) {
            memcpy(dir, path, n);
            dir[n] = '\0';
        }
    }
    if (dir == NULL) return MQE2E_ERR_NOMEM;
    int rc = MQE2E_ERR_IO;
    int fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (fsync(fd) == 0) rc = MQE2E_OK;
        close(fd);
    }
    free(dir);
    return rc;
}

static int file_store(void *vctx, const uint8_t *data, size_t len)
{
    file_ctx *ctx = vctx;
    if (ctx == NULL || (data == NULL && len != 0)) return MQE2E_ERR_INVALID_ARG;
    int rc;
    if (!ctx->have_key) {
        /* First write of a new file: one derivation, reused for every rewrite. */
        randombytes_buf(ctx->salt, sizeof ctx->salt);
        ctx->opslimit = ctx->new_opslimit;
        ctx->memlimit = ctx->new_memlimit;
        rc = mqe2e__seal_derive(ctx->secret->key, ctx->secret->pass, ctx->secret->pass_len,
                                ctx->salt, ctx->opslimit, ctx->memlimit);
        if (rc != MQE2E_OK) return rc;
        ctx->have_key = 1;
    }
    uint8_t *sealed = NULL;
    size_t sealed_len = 0;
    rc = mqe2e__seal(&sealed, &sealed_len, ctx->kdf, ctx->salt, ctx->opslimit, ctx->memlimit,
                     ctx->secret->key, data, len);
    if (rc != MQE2E_OK) return rc;

    char *tmp = NULL;
    int fd = -1;
    int n = snprintf(NULL, 0, "%s.tmp.%ld", ctx->path, (long)getpid());
    rc = MQE2E_ERR_NOMEM;
    if (n < 0 || (tmp = malloc((size_t)n + 1)) == NULL) goto out;
    (void)snprintf(tmp, (size_t)n + 1, "%s.tmp.%ld", ctx->path, (long)getpid());
    rc = MQE2E_ERR_IO;
    /* The name is ours alone (our pid); a leftover from a dead process that
     * had the same pid would otherwise block every write. */
    (void)unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) goto out;
    if (write_all(fd, sealed, sealed_len) != 0 || fsync(fd) != 0) goto fail;
    int cfd = fd;
    fd = -1;
    if (close(cfd) != 0) goto fail;
    if (rename(tmp, ctx->path) != 0) goto fail;
    /* The rename is durable only once the directory entry is. */
    rc = fsync_parent_dir(ctx->path);
    goto out;
fail:
    if (fd >= 0) close(fd);
    (void)unlink(tmp);
out:
    free(tmp);
    free(sealed); /* ciphertext only */
    return rc;
}

/* a || sep || b in a new malloc()ed string, or NULL. */
static char *concat3(const char *a, const char *sep, const char *b)
{
    size_t n = strlen(a) + strlen(sep) + strlen(b) + 1U;
    char *p = malloc(n);
    if (p != NULL) (void)snprintf(p, n, "%s%s%s", a, sep, b);
    return p;
}

/*
 * The file the path names, with every symlink resolved: an existing file by
 * realpath(); a file still to be created by its real directory and its own
 * name. A dangling symlink, a directory or a name ending in '/' is refused.
 */
static int resolve_path(char **out, const char *path)
{
    struct stat st;
    *out = NULL;
    if (lstat(path, &st) == 0) {
        char *r = realpath(path, NULL);
        if (r == NULL) return errno == ENOMEM ? MQE2E_ERR_NOMEM : MQE2E_ERR_IO;
        if (stat(r, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(r);
            return MQE2E_ERR_IO;
        }
        *out = r;
        return MQE2E_OK;
    }
    if (errno != ENOENT) return MQE2E_ERR_IO;
    const char *slash = strrchr(path, '/');
    const char *base = slash != NULL ? slash + 1 : path;
    if (base[0] == '\0' || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
        return MQE2E_ERR_INVALID_ARG;
    char *dir;
    if (slash == NULL) {
        dir = strdup(".");
    } else if (slash == path) {
        dir = strdup("/");
    } else {
        dir = strndup(path, (size_t)(slash - path));
    }
    if (dir == NULL) return MQE2E_ERR_NOMEM;
    char *rdir = realpath(dir, NULL);
    free(dir);
    if (rdir == NULL) return errno == ENOMEM ? MQE2E_ERR_NOMEM : MQE2E_ERR_IO;
    *out = concat3(strcmp(rdir, "/") == 0 ? "" : rdir, "/", base);
    free(rdir);
    return *out != NULL ? MQE2E_OK : MQE2E_ERR_NOMEM;
}

/* Take the exclusive lock of a resolved path and note who holds it. */
static int take_lock(int *fd_out, const char *real_path, const char *opened_as)
{
    char *lock_path = concat3(real_path, "", MQE2E_STORAGE_LOCK_SUFFIX);
    if (lock_path == NULL) return MQE2E_ERR_NOMEM;
    int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    free(lock_path);
    if (fd < 0) return MQE2E_ERR_IO;
    /* flock() locks belong to the open file description: a second open in
     * this very process conflicts too, unlike fcntl() record locks. */
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EINTR) continue;
        int e = errno;
        close(fd);
        return e == EWOULDBLOCK ? MQE2E_ERR_LOCKED : MQE2E_ERR_IO;
    }
    /* "pid path\n": what mqe2e_storage_file_lock_holder() reports. Best effort. */
    char line[64];
    int n = snprintf(line, sizeof line, "%ld ", (long)getpid());
    if (n > 0 && ftruncate(fd, 0) == 0) {
        (void)write_all(fd, (const uint8_t *)line, (size_t)n);
        (void)write_all(fd, (const uint8_t *)opened_as, strlen(opened_as));
        (void)write_all(fd, (const uint8_t *)"\n", 1);
    }
    *fd_out = fd;
    return MQE2E_OK;
}

static int file_new(mqe2e_storage *out, const char *path, unsigned kdf, const char *pass,
                    size_t pass_len)
{
    if (mqe2e_init() != MQE2E_OK) return MQE2E_ERR_CRYPTO;
    file_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL) return MQE2E_ERR_NOMEM;
    ctx->kdf = kdf;
    ctx->lock_fd = -1;
    ctx->new_opslimit = MQE2E_KDF_OPSLIMIT_DEFAULT;
    ctx->new_memlimit = MQE2E_KDF_MEMLIMIT_DEFAULT;
    int rc = resolve_path(&ctx->path, path);
    if (rc == MQE2E_OK) rc = take_lock(&ctx->lock_fd, ctx->path, path);
    if (rc != MQE2E_OK) {
        file_destroy(ctx);
        return rc;
    }
    /* sodium_malloc() places the block against a guard page, so it is only
     * as aligned as its size: round the size up to keep size_t aligned. */
    size_t size = sizeof(file_secret) + pass_len + 1U;
    size = (size + sizeof(max_align_t) - 1U) / sizeof(max_align_t) * sizeof(max_align_t);
    ctx->secret = sodium_malloc(size);
    if (ctx->secret == NULL) {
        file_destroy(ctx);
        return MQE2E_ERR_NOMEM;
    }
    sodium_memzero(ctx->secret, size);
    ctx->secret->pass_len = pass_len;
    if (pass_len > 0) memcpy(ctx->secret->pass, pass, pass_len);
    out->load = file_load;
    out->store = file_store;
    out->destroy = file_destroy;
    out->ctx = ctx;
    return MQE2E_OK;
}

int mqe2e_storage_file_passphrase(mqe2e_storage *out, const char *path, const char *passphrase,
                                  size_t passphrase_len)
{
    if (out == NULL || path == NULL || path[0] == '\0' || passphrase == NULL ||
        passphrase_len == 0 || passphrase_len > SIZE_MAX / 2)
        return MQE2E_ERR_INVALID_ARG;
    return file_new(out, path, MQE2E__SEAL_KDF_PASSPHRASE, passphrase, passphrase_len);
}

int mqe2e_storage_file_key(mqe2e_storage *out, const char *path,
                           const uint8_t key[MQE2E_STORAGE_KEY_BYTES])
{
    if (out == NULL || path == NULL || path[0] == '\0' || key == NULL)
        return MQE2E_ERR_INVALID_ARG;
    int rc = file_new(out, path, MQE2E__SEAL_KDF_RAW, NULL, 0);
    if (rc != MQE2E_OK) return rc;
    file_ctx *ctx = out->ctx;
    memcpy(ctx->secret->key, key, MQE2E_STORAGE_KEY_BYTES);
    ctx->have_key = 1;
    return MQE2E_OK;
}

int mqe2e_storage_file_set_kdf(mqe2e_storage *st, uint64_t opslimit, uint64_t memlimit)
{
    if (st == NULL || st->load != file_load || st->ctx == NULL) return MQE2E_ERR_INVALID_ARG;
    file_ctx *ctx = st->ctx;
    if (ctx->kdf != MQE2E__SEAL_KDF_PASSPHRASE || ctx->have_key) return MQE2E_ERR_INVALID_ARG;
    if (opslimit < 1U || opslimit > MQE2E_KDF_OPSLIMIT_MAX || memlimit < MQE2E_KDF_MEMLIMIT_FLOOR ||
        memlimit > MQE2E_KDF_MEMLIMIT_MAX || opslimit * memlimit < MQE2E_KDF_COST_FLOOR)
        return MQE2E_ERR_INVALID_ARG;
    ctx->new_opslimit = opslimit;
    ctx->new_memlimit = memlimit;
    return MQE2E_OK;
}

int mqe2e_storage_read_key_file(uint8_t key[MQE2E_STORAGE_KEY_BYTES], const char *path)
{
    if (key == NULL || path == NULL) return MQE2E_ERR_INVALID_ARG;
    if (mqe2e_init() != MQE2E_OK) return MQE2E_ERR_CRYPTO;
    uint8_t *buf = NULL;
    size_t len = 0;
    mode_t mode = 0;
    int rc = read_all(path, &buf, &len, KEY_FILE_MAX_BYTES, &mode);
    if (rc == MQE2E_ERR_NOT_FOUND) return MQE2E_ERR_IO;
    if (rc != MQE2E_OK) return rc;
    if ((mode & (S_IRWXG | S_IRWXO)) != 0) {
        rc = MQE2E_ERR_POLICY;
        goto out;
    }
    rc = MQE2E_ERR_DECODE;
    if (len == MQE2E_STORAGE_KEY_BYTES) {
        memcpy(key, buf, MQE2E_STORAGE_KEY_BYTES);
        rc = MQE2E_OK;
    } else if (len == 2 * (size_t)MQE2E_STORAGE_KEY_BYTES ||
               (len == 2 * (size_t)MQE2E_STORAGE_KEY_BYTES + 1U && buf[len - 1] == '\n')) {
        size_t bin_len = 0;
        if (sodium_hex2bin(key, MQE2E_STORAGE_KEY_BYTES, (const char *)buf,
                           2 * (size_t)MQE2E_STORAGE_KEY_BYTES, NULL, &bin_len, NULL) == 0 &&
            bin_len == MQE2E_STORAGE_KEY_BYTES)
            rc = MQE2E_OK;
    }
    if (rc != MQE2E_OK) sodium_memzero(key, MQE2E_STORAGE_KEY_BYTES);
out:
    sodium_memzero(buf, len > 0 ? len : 1U);
    free(buf);
    return rc;
}

int mqe2e_storage_file_lock_holder(const char *path, long *pid, char *opened_as, size_t cap)
{
    if (path == NULL || pid == NULL || (opened_as == NULL && cap != 0))
        return MQE2E_ERR_INVALID_ARG;
    *pid = 0;
    if (cap > 0) opened_as[0] = '\0';
    char *real = NULL;
    int rc = resolve_path(&real, path);
    if (rc != MQE2E_OK) return rc;
    char *lock_path = concat3(real, "", MQE2E_STORAGE_LOCK_SUFFIX);
    free(real);
    if (lock_path == NULL) return MQE2E_ERR_NOMEM;
    uint8_t *buf = NULL;
    size_t len = 0;
    rc = read_all(lock_path, &buf, &len, 4096U + 64U, NULL);
    free(lock_path);
    if (rc != MQE2E_OK) return rc == MQE2E_ERR_NOT_FOUND ? MQE2E_ERR_NOT_FOUND : rc;
    size_t i = 0;
    long v = 0;
    while (i < len && buf[i] >= '0' && buf[i] <= '9' && v < LONG_MAX / 10) {
        v = v * 10 + (long)(buf[i] - '0');
        i++;
    }
    if (i == 0 || i >= len || buf[i] != ' ') {
        free(buf);
        return MQE2E_ERR_NOT_FOUND; /* nobody wrote a holder (an old or foreign lock file) */
    }
    *pid = v;
    i++;
    size_t end = len;
    while (end > i && (buf[end - 1] == '\n')) end--;
    if (cap > 0) {
        size_t n = end - i < cap - 1U ? end - i : cap - 1U;
        memcpy(opened_as, buf + i, n);
        opened_as[n] = '\0';
    }
    free(buf);
    return MQE2E_OK;
}
