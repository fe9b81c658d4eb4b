/* Unit tests of the spools (spool.h): memory and file backends. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mqe2e/mqe2e.h"

static char dir[64];

static void setup(void)
{
    cr_assert_eq(mqe2e_init(), MQE2E_OK);
    (void)snprintf(dir, sizeof dir, "/tmp/mqe2e-spoolu-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    (void)snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(spool, .init = setup, .fini = teardown);

static mqe2e_held entry(const char *topic, const char *data, uint32_t tag)
{
    static uint8_t meta[3] = {1, 2, 3};
    mqe2e_held h = {(char *)(uintptr_t)topic,
                    (uint8_t *)(uintptr_t)data,
                    strlen(data),
                    tag,
                    1234,
                    meta,
                    sizeof meta};
    return h;
}

/* Put three, read them back in order with every field, remove the middle. */
static void round_trip(mqe2e_spool *s)
{
    uint64_t ids[3], id = 0;
    mqe2e_held e0 = entry("a/x", "one", 1), e1 = entry("a/y", "two", 2 | 4),
               e2 = entry("a/z", "three", 1);
    cr_assert_eq(s->put(s->ctx, &e0, &ids[0]), MQE2E_OK);
    cr_assert_eq(s->put(s->ctx, &e1, &ids[1]), MQE2E_OK);
    cr_assert_eq(s->put(s->ctx, &e2, &ids[2]), MQE2E_OK);
    cr_assert(ids[0] < ids[1] && ids[1] < ids[2]);
    cr_assert_eq(s->count(s->ctx), 3);
    mqe2e_held *h = NULL;
    cr_assert_eq(s->next(s->ctx, ids[0], &id, &h), MQE2E_OK);
    cr_assert_eq(id, ids[1]);
    cr_assert_str_eq(h->topic, "a/y");
    cr_assert_eq(h->len, 3);
    cr_assert_eq(memcmp(h->data, "two", 3), 0);
    cr_assert_eq(h->tag, 6);
    cr_assert_eq(h->arrived_at, 1234);
    cr_assert_eq(h->meta_len, 3);
    cr_assert_eq(h->meta[2], 3);
    mqe2e_held_free(h);
    cr_assert_eq(s->remove(s->ctx, ids[1]), MQE2E_OK);
    cr_assert_eq(s->remove(s->ctx, ids[1]), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(s->next(s->ctx, ids[0], &id, &h), MQE2E_OK);
    cr_assert_eq(id, ids[2]);
    mqe2e_held_free(h);
    cr_assert_eq(s->next(s->ctx, ids[2], &id, &h), MQE2E_ERR_NOT_FOUND);
    cr_assert_eq(s->count(s->ctx), 2);
}

Test(spool, memory_round_trip_and_quota)
{
    mqe2e_spool s;
    uint64_t id;
    cr_assert_eq(mqe2e_spool_memory(&s, 3, 0), MQE2E_OK);
    round_trip(&s);
    mqe2e_held e = entry("a/x", "x", 1);
    cr_assert_eq(s.put(s.ctx, &e, &id), MQE2E_OK);
    cr_assert_eq(s.put(s.ctx, &e, &id), MQE2E_ERR_EXHAUSTED, "3 entries at most");
    mqe2e_spool_destroy(&s);
    cr_assert_eq(mqe2e_spool_memory(&s, 0, 10), MQE2E_OK);
    mqe2e_held big = entry("a/x", "0123456789", 1);
    cr_assert_eq(s.put(s.ctx, &big, &id), MQE2E_ERR_TOO_LARGE);
    mqe2e_spool_destroy(&s);
}

Test(spool, file_round_trip_survives_reopen_with_private_modes)
{
    mqe2e_spool s;
    char sub[128], path[256];
    struct stat st;
    (void)snprintf(sub, sizeof sub, "%s/ks.spool", dir);
    cr_assert_eq(mqe2e_spool_file(&s, sub, 0, 0), MQE2E_OK);
    cr_assert_neq(stat(sub, &st), 0, "made by the first entry only");
    round_trip(&s);
    cr_assert_eq(stat(sub, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0700);
    mqe2e_spool_destroy(&s);
    /* Every entry file is 0600; a leftover temp file (a crash mid-write) is
     * deleted at the next open; a damaged entry reads as DECODE. */
    DIR *d = opendir(sub);
    cr_assert_not_null(d);
    struct dirent *de;
    int files = 0;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        (void)snprintf(path, sizeof path, "%s/%s", sub, de->d_name);
        cr_assert_eq(stat(path, &st), 0);
        cr_assert_eq(st.st_mode & 0777, 0600, "%s", de->d_name);
        files++;
    }
    (void)closedir(d);
    cr_assert_eq(files, 2);
    (void)snprintf(path, sizeof path, "%s/00000000000000ff.tmp", sub);
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "half", 4), 4);
    (void)close(fd);
    (void)snprintf(path, sizeof path, "%s/0000000000000003.msg", sub);
    fd = open(path, O_WRONLY);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pwrite(fd, "X", 1, 30), 1);
    (void)close(fd);

    cr_assert_eq(mqe2e_spool_file(&s, sub, 0, 0), MQE2E_OK);
    (void)snprintf(path, sizeof path, "%s/00000000000000ff.tmp", sub);
    cr_assert_neq(access(path, F_OK), 0, "the temp file is gone");
    cr_assert_eq(s.count(s.ctx), 2);
    uint64_t id = 0;
    mqe2e_held *h = NULL;
    cr_assert_eq(s.next(s.ctx, 0, &id, &h), MQE2E_OK);
    cr_assert_eq(id, 1);
    cr_assert_str_eq(h->topic, "a/x");
    mqe2e_held_free(h);
    cr_assert_eq(s.next(s.ctx, 1, &id, &h), MQE2E_ERR_DECODE);
    cr_assert_eq(id, 3);
    cr_assert_null(h);
    /* New ids continue after the old ones. */
    mqe2e_held e = entry("a/q", "new", 1);
    cr_assert_eq(s.put(s.ctx, &e, &id), MQE2E_OK);
    cr_assert_eq(id, 4);
    mqe2e_spool_destroy(&s);
}

Test(spool, file_quota_counts_and_bytes)
{
    mqe2e_spool s;
    uint64_t id;
    mqe2e_held e = entry("a/x", "payload", 1);
    cr_assert_eq(mqe2e_spool_file(&s, dir, 2, 0), MQE2E_OK);
    cr_assert_eq(s.put(s.ctx, &e, &id), MQE2E_OK);
    cr_assert_eq(s.put(s.ctx, &e, &id), MQE2E_OK);
    cr_assert_eq(s.put(s.ctx, &e, &id), MQE2E_ERR_EXHAUSTED);
    mqe2e_spool_destroy(&s);
    /* Reopened with a smaller byte quota: the entries stay, no room for more ... */
    cr_assert_eq(mqe2e_spool_file(&s, dir, 0, 100), MQE2E_OK);
    cr_assert_eq(s.put(s.ctx, &e, &id), MQE2E_ERR_EXHAUSTED, "114 bytes held, 100 allowed");
    mqe2e_spool_destroy(&s);
    cr_assert_eq(mqe2e_spool_file(&s, dir, 0, 40), MQE2E_OK);
    cr_assert_eq(s.count(s.ctx), 2);
    cr_assert_eq(s.put(s.ctx, &e, &id), MQE2E_ERR_TOO_LARGE);
    /* ... and each is still read (larger than the new quota), not dropped. */
    mqe2e_held *h = NULL;
    cr_assert_eq(s.next(s.ctx, 0, &id, &h), MQE2E_OK);
    cr_assert_str_eq(h->topic, "a/x");
    mqe2e_held_free(h);
    mqe2e_spool_destroy(&s);
}

Test(spool, file_for_keystore_names_the_dir_after_the_real_path)
{
    mqe2e_spool s;
    char ks[128], link[128], sp[160];
    struct stat st;
    (void)snprintf(ks, sizeof ks, "%s/dev.ks", dir);
    (void)snprintf(link, sizeof link, "%s/link.ks", dir);
    int fd = open(ks, O_CREAT | O_WRONLY, 0600);
    cr_assert_geq(fd, 0);
    (void)close(fd);
    cr_assert_eq(symlink(ks, link), 0);
    cr_assert_eq(mqe2e_spool_file_for_keystore(&s, link, 0, 0), MQE2E_OK);
    uint64_t id;
    mqe2e_held e = entry("a/x", "x", 1);
    cr_assert_eq(s.put(s.ctx, &e, &id), MQE2E_OK);
    mqe2e_spool_destroy(&s);
    (void)snprintf(sp, sizeof sp, "%s/dev.ks" MQE2E_SPOOL_SUFFIX, dir);
    cr_assert_eq(stat(sp, &st), 0);
    cr_assert(S_ISDIR(st.st_mode));
    (void)snprintf(sp, sizeof sp, "%s/nope.ks", dir);
    cr_assert_eq(mqe2e_spool_file_for_keystore(&s, sp, 0, 0), MQE2E_ERR_IO);
}
