/*
 * File spool (spool.h): one file per entry in a 0700 directory, written
 * atomically (temp, fsync, rename, fsync(directory)). An index of ids and
 * sizes is kept in memory; entries are read back one at a time.
 *
 * Entry file (little-endian): "MQS1", u32 tag, u64 arrived_at, u32 topic
 * length, u32 meta length, u32 envelope length, topic, meta, envelope, then
 * a 16-byte BLAKE2b checksum of all that (catches a damaged file; entries
 * are not secret and an envelope authenticates itself when opened).
 */
/* NOLINTNEXTLINE(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp): glibc feature macro */
#define _DEFAULT_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mqe2e/error.h"
#include "mqe2e/spool.h"

#define SPOOL_MAGIC "MQS1"
#define SPOOL_HDR 28U
#define SPOOL_SUM 16U
#define SPOOL_NAME_LEN 20U /* 16 hex digits + ".msg" */
#define SPOOL_READ_MAX (512U << 20)

typedef struct file_ent {
    uint64_t id;
    size_t cost; /* the file's size */
} file_ent;

typedef struct file_spool {
    char *dir;
    int dir_fd;
    file_ent *ents; /* sorted by id */
    size_t n, cap;
    size_t bytes, max_count, max_bytes;
    uint64_t next_id;
} file_spool;

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void entry_name(char out[SPOOL_NAME_LEN + 1], uint64_t id, const char *suffix)
{
    (void)snprintf(out, SPOOL_NAME_LEN + 1, "%016" PRIx64 "%s", id, suffix);
}

/* "<16 hex>.msg" -> id; 0 when the name is not an entry's. */
static uint64_t parse_name(const char *name, const char *suffix)
{
    uint64_t id = 0;
    if (strlen(name) != SPOOL_NAME_LEN || strcmp(name + 16, suffix) != 0) return 0;
    for (int i = 0; i < 16; i++) {
        char ch = name[i];
        unsigned d;
        if (ch >= '0' && ch <= '9')
            d = (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            d = (unsigned)(ch - 'a' + 10);
        else
            return 0;
        id = (id << 4) | d;
    }
    return id;
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

static int file_open_dir(file_spool *s, int create);

static int ent_add(file_spool *s, uint64_t id, size_t cost)
{
    if (s->n == s->cap) {
        size_t cap = s->cap > 0 ? s->cap * 2U : 64U;
        file_ent *e = realloc(s->ents, cap * sizeof *e);
        if (e == NULL) return MQE2E_ERR_NOMEM;
        s->ents = e;
        s->cap = cap;
    }
    s->ents[s->n].id = id;
    s->ents[s->n].cost = cost;
    s->n++;
    s->bytes += cost;
    return MQE2E_OK;
}

static int file_put(void *vctx, const mqe2e_held *e, uint64_t *id)
{
    file_spool *s = vctx;
    char name[SPOOL_NAME_LEN + 1], tmp[SPOOL_NAME_LEN + 1];
    if (s == NULL || e == NULL || e->topic == NULL || id == NULL || (e->data == NULL && e->len) ||
        (e->meta == NULL && e->meta_len))
        return MQE2E_ERR_INVALID_ARG;
    size_t tlen = strlen(e->topic);
    if (tlen > UINT32_MAX || e->meta_len > UINT32_MAX || e->len > UINT32_MAX ||
        e->len > s->max_bytes || tlen > s->max_bytes - e->len ||
        e->meta_len > s->max_bytes - e->len - tlen ||
        SPOOL_HDR + SPOOL_SUM > s->max_bytes - e->len - tlen - e->meta_len)
        return MQE2E_ERR_TOO_LARGE;
    size_t body = SPOOL_HDR + tlen + e->meta_len + e->len;
    size_t cost = body + SPOOL_SUM;
    if (s->dir_fd < 0) {
        int orc = file_open_dir(s, 1);
        if (orc != MQE2E_OK) return orc == MQE2E_ERR_NOT_FOUND ? MQE2E_ERR_IO : orc;
    }
    /* (A reopened spool may hold more than a smaller quota allows.) */
    if (s->n >= s->max_count || s->bytes > s->max_bytes || cost > s->max_bytes - s->bytes)
        return MQE2E_ERR_EXHAUSTED;
    uint8_t *buf = malloc(cost);
    if (buf == NULL) return MQE2E_ERR_NOMEM;
    memcpy(buf, SPOOL_MAGIC, 4);
    put32(buf + 4, e->tag);
    put64(buf + 8, e->arrived_at);
    put32(buf + 16, (uint32_t)tlen);
    put32(buf + 20, (uint32_t)e->meta_len);
    put32(buf + 24, (uint32_t)e->len);
    memcpy(buf + SPOOL_HDR, e->topic, tlen);
    if (e->meta_len > 0) memcpy(buf + SPOOL_HDR + tlen, e->meta, e->meta_len);
    if (e->len > 0) memcpy(buf + SPOOL_HDR + tlen + e->meta_len, e->data, e->len);
    crypto_generichash(buf + body, SPOOL_SUM, buf, body, NULL, 0);

    uint64_t nid = s->next_id;
    entry_name(name, nid, ".msg");
    entry_name(tmp, nid, ".tmp");
    int rc = MQE2E_ERR_IO;
    int fd = openat(s->dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0) {
        int ok = write_all(fd, buf, cost) == 0 && fsync(fd) == 0;
        ok = close(fd) == 0 && ok;
        /* The rename is durable only once the directory entry is. */
        if (ok && renameat(s->dir_fd, tmp, s->dir_fd, name) == 0 && fsync(s->dir_fd) == 0)
            rc = MQE2E_OK;
        else
            (void)unlinkat(s->dir_fd, tmp, 0);
    }
    free(buf);
    if (rc != MQE2E_OK) return rc;
    rc = ent_add(s, nid, cost);
    if (rc != MQE2E_OK) {
        (void)unlinkat(s->dir_fd, name, 0);
        return rc;
    }
    s->next_id++;
    *id = nid;
    return MQE2E_OK;
}

static int read_entry(file_spool *s, uint64_t id, mqe2e_held **out)
{
    char name[SPOOL_NAME_LEN + 1];
    struct stat st;
    uint8_t sum[SPOOL_SUM];
    entry_name(name, id, ".msg");
    int fd = openat(s->dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return errno == ENOENT ? MQE2E_ERR_DECODE : MQE2E_ERR_IO;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        (void)close(fd);
        return MQE2E_ERR_DECODE;
    }
    size_t size = (size_t)st.st_size;
    /* Bounded by the quota, or what a larger quota of an earlier open may
     * have written (an entry is never dropped for a smaller quota). */
    if (size < SPOOL_HDR + SPOOL_SUM ||
        size > (s->max_bytes > SPOOL_READ_MAX ? s->max_bytes : SPOOL_READ_MAX)) {
        (void)close(fd);
        return MQE2E_ERR_DECODE;
    }
    uint8_t *buf = malloc(size);
    if (buf == NULL) {
        (void)close(fd);
        return MQE2E_ERR_NOMEM;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    (void)close(fd);
    int rc = MQE2E_ERR_DECODE;
    size_t body = size - SPOOL_SUM;
    if (got != size) {
        free(buf);
        return rc;
    }
    crypto_generichash(sum, SPOOL_SUM, buf, body, NULL, 0);
    uint32_t tlen = get32(buf + 16), mlen = get32(buf + 20), dlen = get32(buf + 24);
    if (memcmp(buf, SPOOL_MAGIC, 4) == 0 && sodium_memcmp(sum, buf + body, SPOOL_SUM) == 0 &&
        (uint64_t)tlen + mlen + dlen + SPOOL_HDR == body &&
        memchr(buf + SPOOL_HDR, 0, tlen) == NULL) {
        mqe2e_held *h = calloc(1, sizeof *h);
        rc = MQE2E_ERR_NOMEM;
        if (h != NULL) {
            h->topic = malloc((size_t)tlen + 1U);
            h->data = malloc(dlen > 0 ? dlen : 1U);
            if (mlen > 0) h->meta = malloc(mlen);
        }
        if (h != NULL && h->topic != NULL && h->data != NULL && (mlen == 0 || h->meta != NULL)) {
            memcpy(h->topic, buf + SPOOL_HDR, tlen);
            h->topic[tlen] = '\0';
            if (mlen > 0) memcpy(h->meta, buf + SPOOL_HDR + tlen, mlen);
            if (dlen > 0) memcpy(h->data, buf + SPOOL_HDR + tlen + mlen, dlen);
            h->meta_len = mlen;
            h->len = dlen;
            h->tag = get32(buf + 4);
            h->arrived_at = get64(buf + 8);
            *out = h;
            rc = MQE2E_OK;
        } else {
            mqe2e_held_free(h);
        }
    }
    free(buf);
    return rc;
}

static int file_next(void *vctx, uint64_t after, uint64_t *id, mqe2e_held **out)
{
    file_spool *s = vctx;
    if (s == NULL || id == NULL || out == NULL) return MQE2E_ERR_INVALID_ARG;
    *out = NULL;
    for (size_t i = 0; i < s->n; i++) {
        if (s->ents[i].id <= after) continue;
        *id = s->ents[i].id;
        return read_entry(s, s->ents[i].id, out);
    }
    return MQE2E_ERR_NOT_FOUND;
}

static int file_remove(void *vctx, uint64_t id)
{
    file_spool *s = vctx;
    char name[SPOOL_NAME_LEN + 1];
    if (s == NULL) return MQE2E_ERR_INVALID_ARG;
    for (size_t i = 0; i < s->n; i++) {
        if (s->ents[i].id != id) continue;
        entry_name(name, id, ".msg");
        if (unlinkat(s->dir_fd, name, 0) != 0 && errno != ENOENT) return MQE2E_ERR_IO;
        s->bytes -= s->ents[i].cost;
        memmove(&s->ents[i], &s->ents[i + 1], (s->n - i - 1U) * sizeof s->ents[0]);
        s->n--;
        return MQE2E_OK;
    }
    return MQE2E_ERR_NOT_FOUND;
}

static size_t file_count(void *vctx)
{
    const file_spool *s = vctx;
    return s != NULL ? s->n : 0;
}

static void file_destroy(void *vctx)
{
    file_spool *s = vctx;
    if (s == NULL) return;
    if (s->dir_fd >= 0) (void)close(s->dir_fd);
    free(s->ents);
    free(s->dir);
    free(s);
}

static int ent_cmp(const void *a, const void *b)
{
    uint64_t x = ((const file_ent *)a)->id, y = ((const file_ent *)b)->id;
    return x < y ? -1 : x > y;
}

/* Index what a previous process left; delete its unfinished temp files. */
static int file_scan(file_spool *s)
{
    int fd = dup(s->dir_fd);
    if (fd < 0) return MQE2E_ERR_IO;
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        (void)close(fd);
        return MQE2E_ERR_IO;
    }
    int rc = MQE2E_OK;
    struct dirent *de;
    /* readdir is safe here: this DIR stream is local to the call (readdir_r
     * is deprecated in glibc). */
    // cppcheck-suppress readdirCalled
    while (rc == MQE2E_OK && (de = readdir(d)) != NULL) {
        struct stat st;
        uint64_t id = parse_name(de->d_name, ".msg");
        if (id == 0) {
            if (parse_name(de->d_name, ".tmp") != 0) (void)unlinkat(s->dir_fd, de->d_name, 0);
            continue;
        }
        if (fstatat(s->dir_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        rc = ent_add(s, id, (size_t)st.st_size);
        if (id >= s->next_id) s->next_id = id + 1U;
    }
    (void)closedir(d);
    if (s->n > 1) qsort(s->ents, s->n, sizeof s->ents[0], ent_cmp);
    return rc;
}

/* Open (with @p create: make) the directory; it must be ours; mode 0700.
 * ENOENT without create: MQE2E_ERR_NOT_FOUND. */
static int file_open_dir(file_spool *s, int create)
{
    struct stat st;
    if (create && mkdir(s->dir, 0700) != 0 && errno != EEXIST) return MQE2E_ERR_IO;
    s->dir_fd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (s->dir_fd < 0) return errno == ENOENT ? MQE2E_ERR_NOT_FOUND : MQE2E_ERR_IO;
    if (fstat(s->dir_fd, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
        fchmod(s->dir_fd, 0700) != 0) {
        (void)close(s->dir_fd);
        s->dir_fd = -1;
        return MQE2E_ERR_IO;
    }
    return MQE2E_OK;
}

int mqe2e_spool_file(mqe2e_spool *out, const char *dir, size_t max_count, size_t max_bytes)
{
    if (out == NULL || dir == NULL || dir[0] == '\0') return MQE2E_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    if (mqe2e_init() != MQE2E_OK) return MQE2E_ERR_CRYPTO;
    file_spool *s = calloc(1, sizeof *s);
    if (s == NULL) return MQE2E_ERR_NOMEM;
    s->dir_fd = -1;
    s->max_count = max_count > 0 ? max_count : MQE2E_SPOOL_DEFAULT_COUNT;
    s->max_bytes = max_bytes > 0 ? max_bytes : MQE2E_SPOOL_DEFAULT_BYTES;
    s->next_id = 1;
    s->dir = strdup(dir);
    /* A missing directory is made by the first put (a client that never
     * spools leaves nothing behind). */
    int rc = s->dir == NULL ? MQE2E_ERR_NOMEM : file_open_dir(s, 0);
    if (rc == MQE2E_OK) rc = file_scan(s);
    if (rc == MQE2E_ERR_NOT_FOUND) rc = MQE2E_OK;
    if (rc != MQE2E_OK) {
        file_destroy(s);
        return rc;
    }
    out->put = file_put;
    out->next = file_next;
    out->remove = file_remove;
    out->count = file_count;
    out->destroy = file_destroy;
    out->ctx = s;
    return MQE2E_OK;
}

int mqe2e_spool_file_for_keystore(mqe2e_spool *out, const char *keystore_path, size_t max_count,
                                  size_t max_bytes)
{
    if (out == NULL || keystore_path == NULL) return MQE2E_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    char *real = realpath(keystore_path, NULL);
    if (real == NULL) return errno == ENOMEM ? MQE2E_ERR_NOMEM : MQE2E_ERR_IO;
    size_t n = strlen(real);
    char *dir = malloc(n + sizeof MQE2E_SPOOL_SUFFIX);
    if (dir == NULL) {
        free(real);
        return MQE2E_ERR_NOMEM;
    }
    (void)snprintf(dir, n + sizeof MQE2E_SPOOL_SUFFIX, "%s%s", real, MQE2E_SPOOL_SUFFIX);
    free(real);
    int rc = mqe2e_spool_file(out, dir, max_count, max_bytes);
    free(dir);
    return rc;
}
