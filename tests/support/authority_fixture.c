/* The shared end-to-end authority fixture (authority_fixture.h). */
#include "authority_fixture.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mqe2e/mqe2e.h"
#include "mqe2e/operator.h"
#include "mqe2e/storage.h"
#include "pgtest.h"
#include "testutil.h"

#define START_WAIT_S 15.0

double af_mono(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

void af_sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

static const char *cli_path(void)
{
    static char path[PATH_MAX];
    const char *bd = getenv("MQE2E_BUILD_DIR");
    snprintf(path, sizeof path, "%s/tools/mqe2e/mqe2e", bd != NULL ? bd : MQE2E_BUILD_DIR);
    return path;
}

int af_run(char *out, size_t cap, const char *const *args)
{
    const char *cli = cli_path();
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        const char *argv[96];
        size_t n = 0;
        argv[n++] = cli;
        for (; args[n - 1] != NULL && n < 95; n++)
            argv[n] = args[n - 1];
        argv[n] = NULL;
        dup2(fds[1], 1);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, 2);
        close(fds[0]);
        close(fds[1]);
        execv(cli, (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    close(fds[1]);
    size_t len = 0;
    for (;;) {
        char buf[4096];
        ssize_t r = read(fds[0], buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        if (out != NULL && len + (size_t)r < cap) {
            memcpy(out + len, buf, (size_t)r);
            len += (size_t)r;
        }
    }
    close(fds[0]);
    if (out != NULL && cap > 0) out[len] = '\0';
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int af_sh(char *out, size_t cap, const char *cmd)
{
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = 0;
    char sink[512];
    for (;;) {
        size_t r = out != NULL ? fread(out + n, 1, cap - 1 - n, p) : fread(sink, 1, sizeof sink, p);
        if (r == 0) break;
        if (out != NULL) n += r;
    }
    if (out != NULL) out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void af_prepare(af_fixture *f)
{
    cr_assert_eq(mqe2e_init(), MQE2E_OK);
    snprintf(f->cli, sizeof f->cli, "%s", cli_path());
    f->dir = tu_tempdir();
    cr_assert_not_null(f->dir);
    cr_assert_eq(tb_broker_start(&f->broker), 0);
    snprintf(f->port, sizeof f->port, "%d", f->broker.port);
    snprintf(f->auth_ks, sizeof f->auth_ks, "%s/auth.ks", f->dir);
    snprintf(f->op_ks, sizeof f->op_ks, "%s/op.ks", f->dir);
    /* A store the test chose (f->db preset) is kept. */
    const char *pg = f->db[0] == '\0' ? getenv("MQE2E_TEST_PG_URI") : NULL;
    if (f->db[0] == '\0') snprintf(f->db, sizeof f->db, "%s/auth.db", f->dir);
    /* Under tests/support/pgcluster.sh the authority keeps its state in a
     * fresh PostgreSQL database of the throwaway cluster instead. */
    if (pg != NULL) (void)pgtest_fresh_uri(f->db, sizeof f->db, "af");
    snprintf(f->keyfile, sizeof f->keyfile, "%s/key", f->dir);
    snprintf(f->log, sizeof f->log, "%s/authority.log", f->dir);
    /* A raw key file keeps the many CLI runs fast (no Argon2 per run). */
    FILE *k = fopen(f->keyfile, "w");
    cr_assert_not_null(k);
    fputs("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", k);
    fclose(k);
    chmod(f->keyfile, 0600);
}

void af_setup(af_fixture *f, const char *auth_id)
{
    af_prepare(f);
    snprintf(f->auth_id, sizeof f->auth_id, "%s", auth_id);
    char out[4096];
    const char *init[] = {"authority", "init", "-K",   f->auth_ks, "--key-file", f->keyfile,
                          "--db",      f->db,  "--id", auth_id,    NULL};
    cr_assert_eq(af_run(out, sizeof out, init), 0, "authority init");
    out[strcspn(out, "\n")] = '\0';
    snprintf(f->pin_text, sizeof f->pin_text, "%s", out);
    cr_assert_eq(mqe2e_authority_pin_decode(&f->pin, f->pin_text), MQE2E_OK, "pin: %s", out);

    const char *keygen[] = {"keygen",   "-K",   f->op_ks,    "--key-file",
                            f->keyfile, "--id", AF_OPERATOR, NULL};
    cr_assert_eq(af_run(out, sizeof out, keygen), 0, "operator keygen");
    char *sp = strstr(out, "signing public key: ");
    cr_assert_not_null(sp);
    char hex[65];
    memcpy(hex, sp + strlen("signing public key: "), 64);
    hex[64] = '\0';
    const char *add[] = {
        "authority", "operator-add", "-K",        f->auth_ks,      "--key-file", f->keyfile, "--db",
        f->db,       "--name",       AF_OPERATOR, "--sign-public", hex,          NULL};
    cr_assert_eq(af_run(out, sizeof out, add), 0, "operator-add");
}

/* `authority run -K ks` with its log appended to @p log; returns its pid once
 * it logged "serving"; *log_seen the log's length before it started. */
static pid_t authority_spawn(af_fixture *f, const char *ks, const char *log_path,
                             const char *const *extra, size_t *log_seen)
{
    size_t before = 0;
    free(tu_read_file(log_path, &before));
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
        }
        const char *argv[64] = {f->cli,       "authority", "run",  "-K",  ks,
                                "--key-file", f->keyfile,  "--db", f->db, "-h",
                                "127.0.0.1",  "-p",        f->port};
        size_t n = 13;
        for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 63; i++)
            argv[n++] = extra[i];
        argv[n] = NULL;
        execv(f->cli, (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    if (log_seen != NULL) *log_seen = before;
    double end = af_mono() + START_WAIT_S;
    for (;;) {
        size_t len = 0;
        char *log = tu_read_file(log_path, &len);
        int ready = log != NULL && len > before && strstr(log + before, "serving") != NULL;
        free(log);
        if (ready) return pid;
        int st;
        cr_assert_eq(waitpid(pid, &st, WNOHANG), 0, "the authority exited at start-up");
        cr_assert_lt(af_mono(), end, "authority did not start");
        af_sleep_ms(20);
    }
}

void af_authority_start(af_fixture *f, const char *const *extra)
{
    f->auth_pid = authority_spawn(f, f->auth_ks, f->log, extra, &f->log_seen);
}

static void stop_pid(pid_t *pid, int sig)
{
    if (*pid <= 0) return;
    kill(*pid, SIGCONT);
    kill(*pid, sig);
    waitpid(*pid, NULL, 0);
    *pid = 0;
}

void af_authority_kill(af_fixture *f, int sig)
{
    stop_pid(&f->auth_pid, sig);
}

void af_replica_log(const af_fixture *f, int i, char *out, size_t cap)
{
    snprintf(out, cap, "%s/replica-%d.log", f->dir, i);
}

void af_replica_start(af_fixture *f, int i, const char *group, const char *const *extra)
{
    cr_assert(i >= 0 && i < AF_REPLICAS_MAX);
    char ks[600], log[600], rid[96];
    snprintf(ks, sizeof ks, "%s/auth-r%d.ks", f->dir, i);
    af_replica_log(f, i, log, sizeof log);
    snprintf(rid, sizeof rid, "%s-r%d", f->auth_id, i);
    size_t len = 0;
    uint8_t *copy = (uint8_t *)tu_read_file(f->auth_ks, &len);
    cr_assert_not_null(copy, "authority keystore %s", f->auth_ks);
    FILE *o = fopen(ks, "wb");
    cr_assert_not_null(o);
    cr_assert_eq(fwrite(copy, 1, len, o), len);
    fclose(o);
    chmod(ks, 0600);
    free(copy);
    const char *argv[40] = {"--replica-group", group, "--replica-id", rid};
    size_t n = 4;
    for (size_t k = 0; extra != NULL && extra[k] != NULL && n < 39; k++)
        argv[n++] = extra[k];
    argv[n] = NULL;
    f->replica_pid[i] = authority_spawn(f, ks, log, argv, NULL);
}

void af_replica_kill(af_fixture *f, int i, int sig)
{
    if (i >= 0 && i < AF_REPLICAS_MAX) stop_pid(&f->replica_pid[i], sig);
}

void af_teardown(af_fixture *f)
{
    for (int i = 0; i < AF_REPLICAS_MAX; i++)
        af_replica_kill(f, i, SIGTERM);
    af_authority_kill(f, SIGTERM);
    tb_broker_stop(&f->broker);
    if (f->dir != NULL) {
        tu_rmtree(f->dir);
        free(f->dir);
        f->dir = NULL;
    }
}

int af_op(af_fixture *f, char *out, size_t cap, const char *const *args)
{
    const char *all[96];
    size_t n = 0;
    for (; args[n] != NULL && n < 80; n++)
        all[n] = args[n];
    const char *common[] = {
        "-K",    f->op_ks,      "--key-file", f->keyfile, "-p",
        f->port, "--authority", f->pin_text,  "-W",       f->op_wait ? f->op_wait : "20",
        NULL};
    for (size_t i = 0; common[i] != NULL; i++)
        all[n++] = common[i];
    all[n] = NULL;
    return af_run(out, cap, all);
}

int af_op_sh(af_fixture *f, char *out, size_t cap, const char *words)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' %s -K '%s' --key-file '%s' -p %s --authority '%s' -W %s",
             f->cli, words, f->op_ks, f->keyfile, f->port, f->pin_text,
             f->op_wait ? f->op_wait : "20");
    return af_sh(out, cap, cmd);
}

void af_ticket(af_fixture *f, char *ticket, size_t cap, const char *words)
{
    char args[2048];
    snprintf(args, sizeof args, "token create %s", words);
    cr_assert_eq(af_op_sh(f, ticket, cap, args), 0, "token create: %s", ticket);
    ticket[strcspn(ticket, "\n")] = '\0';
}

void af_ks_path(const af_fixture *f, char *out, size_t cap, const char *id)
{
    snprintf(out, cap, "%s/%s.ks", f->dir, id);
}

int af_enroll(af_fixture *f, const char *id, const char *ticket)
{
    char ks[512], cmd[4096];
    af_ks_path(f, ks, sizeof ks, id);
    snprintf(cmd, sizeof cmd,
             "'%s' enroll -K '%s' --key-file '%s' -h 127.0.0.1 -p %s -W 30 -d >'%s/%s.enroll.out' "
             "2>'%s/%s.enroll.err'",
             f->cli, ks, f->keyfile, f->port, f->dir, id, f->dir, id);
    setenv("MQE2E_TICKET", ticket, 1);
    int st = system(cmd);
    unsetenv("MQE2E_TICKET");
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void af_enroll_in(af_fixture *f, const char *id, const char *group, const char *grant)
{
    char words[1024], ticket[8192];
    snprintf(words, sizeof words, "--id %s --group %s --grant '%s'", id, group, grant);
    af_ticket(f, ticket, sizeof ticket, words);
    int rc = af_enroll(f, id, ticket);
    cr_assert_eq(rc, 0, "enroll %s: exit %d", id, rc);
}

mqe2e_keystore *af_open_ks(const af_fixture *f, const char *id)
{
    char path[512];
    uint8_t k[32];
    mqe2e_storage st;
    mqe2e_keystore *ks = NULL;
    af_ks_path(f, path, sizeof path, id);
    cr_assert_eq(mqe2e_storage_read_key_file(k, f->keyfile), MQE2E_OK);
    cr_assert_eq(mqe2e_storage_file_key(&st, path, k), MQE2E_OK);
    sodium_memzero(k, sizeof k);
    cr_assert_eq(mqe2e_keystore_open(&ks, st), MQE2E_OK, "open %s", path);
    return ks;
}

long af_now_ms(void)
{
    return (long)(af_mono() * 1000.0);
}

uint64_t af_now_s(void)
{
    return (uint64_t)time(NULL);
}

void af_forge_update(mqe2e_key_bundle *b, mqe2e_control_update *u, const char *group,
                     uint32_t epoch, uint32_t sender_id, uint64_t push_seq)
{
    memset(b, 0, sizeof *b);
    snprintf(b->group, sizeof b->group, "%s", group);
    snprintf(b->topic_filter, sizeof b->topic_filter, "%s/#", group);
    b->epoch = epoch;
    b->sender_id = sender_id;
    randombytes_buf(b->secret, sizeof b->secret);
    memset(u, 0, sizeof *u);
    u->push_seq = push_seq;
    u->bundles = b;
    u->n_bundles = 1;
}

size_t af_forge_push(uint8_t *frame, size_t cap, const uint8_t dh_sk[32],
                     const uint8_t dev_dh[32], const char *prefix, const char *auth_id,
                     const mqe2e_control_update *u)
{
    size_t len = 0;
    cr_assert_eq(mqe2e_push_seal(frame, cap, &len, dh_sk, dev_dh, prefix, auth_id, u), MQE2E_OK);
    return len;
}
