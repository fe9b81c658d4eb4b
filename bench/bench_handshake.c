/*
 * Handshake latency over a real Mosquitto with the real authority process
 * (`mqe2e authority run`), p50 and p99:
 *
 * (a) channel: enrolled mqe2e_MQTTClient clients (keystores from
 *     `mqe2e enroll`) with `channel:<peer>` policies: one responder
 *     subscribed to bench/cmd/#, and 16 initiators, initiator i on
 *     bench/cmd/<i>, taking turns (the authority admits about 20 HELLOs a
 *     minute per client id). For each sample the initiator is created
 *     afresh, so it holds no channel: connect, wait for its HELLO to
 *     complete, then time the first publish on the channel topic until the
 *     responder's messageArrived (Noise XX over the broker: three CHANNEL
 *     frames, then the envelope), then a second message on the now
 *     established channel (the same path without the handshake). The
 *     connect-to-HELLO time is reported too, beside its anchor (a plain
 *     MQTTClient with callbacks: connect + subscribe of two topics).
 *     In the same turn, the async front: a plain MQTTAsync connect +
 *     subscribe of two topics (onSuccess of each; the anchor), then an
 *     enrolled mqe2e_MQTTAsync (identities asy-i, so that the authority's
 *     HELLO rate per client id is not shared) connects with onSuccess and
 *     the clock stops when mqe2e_MQTTAsync_waitForAuthority() returns: the
 *     HELLO reply has been applied and group sends are accepted. For both
 *     fronts "HELLO exchange alone" runs from the session's "HELLO sent"
 *     debug line to the moment the front reports the session fresh, with
 *     its "HELLO reply" line -> fresh part (the verified reply's keys
 *     applied, the waiting caller woken) beside it. One unmeasured plain MQTTAsync connect first:
 *     Paho's async library starts its threads on the first one.
 *     BENCH_DEBUG=1 prints each sample and the clients' debug log.
 * (b) enrollment: one ENROLL round trip (ticket -> credential + key bundle)
 *     against the authority: tickets from `mqe2e token create --count N`;
 *     timed from mqe2e_enroll_begin() to a verified mqe2e_enroll_finish(),
 *     the device's keys made beforehand, frames carried by a raw Paho client.
 *
 * Bytes per handshake message are the control frames as published (MQTT
 * payload), taken from the wire by a raw subscriber (channel) or the calls
 * themselves (enrollment).
 *
 * Usage: bench_handshake [--channel N] [--enroll N] [--json FILE] [--smoke]
 *   --channel N  channel samples (default 200)
 *   --enroll N   enrollment samples (default 100)
 *   --smoke      10 of each: proves it runs, timings meaningless
 * Starts its own Mosquitto on a free loopback port and its own authority in
 * a temporary directory; both are stopped at exit.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <MQTTAsync.h>
#include <MQTTClient.h>
#include <sodium.h>

#include "bench_proc.h"
#include "mqe2e/MQTTAsync.h"
#include "mqe2e/MQTTClient.h"
#include "mqe2e/control.h"
#include "mqe2e/credential.h"
#include "mqe2e/mqe2e.h"
#include "mqe2e/tcp.h"

#ifndef MQE2E_BENCH_CLI
#error "MQE2E_BENCH_CLI (path of the mqe2e CLI) must be defined by the build"
#endif

#define PREFIX "mqe2e"
#define AUTH_ID "bench-authority"
#define GROUP "bench"
#define CMD_TOPIC "bench/cmd" /* initiator i sends on bench/cmd/<i> */
#define WAIT_MS 20000L
#define MAX_SAMPLES 100000
/* Initiator identities used in turn for the channel samples. */
#define INITIATOR_POOL 16

static const char *cli = MQE2E_BENCH_CLI;
static char dir[128];
static char uri[64], port_s[16];
static char key_path[256], auth_ks[256], op_ks[256], db_path[256], auth_log[256];
static char pin_text[1024];
static pid_t broker_pid = -1, authority_pid = -1;

/* ------------------------------------------------------------------ helpers */

static double mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void sleep_ms(long ms)
{
    bp_sleep_ms(ms);
}

static void stop_child(pid_t *pid)
{
    bp_stop_child(pid, 20, -1);
}

static void rm_tree(const char *path)
{
    char cmd[300];
    if (path[0] == '\0') return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "bench_handshake: could not remove %s\n", path);
}

static void cleanup(void)
{
    stop_child(&authority_pid);
    stop_child(&broker_pid);
    if (getenv("BENCH_KEEP") == NULL) rm_tree(dir);
}

/* SIGINT/SIGTERM: stop the broker and the authority (kill() is
 * async-signal-safe); the temporary directory stays behind. */
static void on_signal(int sig)
{
    if (authority_pid > 0) kill(authority_pid, SIGTERM);
    if (broker_pid > 0) kill(broker_pid, SIGTERM);
    _exit(128 + sig);
}

static void die(const char *what)
{
    fprintf(stderr, "bench_handshake: %s\n", what);
    if (authority_pid > 0) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "tail -5 '%s' >&2", auth_log);
        (void)system(cmd);
    }
    cleanup();
    exit(2);
}

/* Run the CLI (args NULL-terminated, without the program name); stdout into
 * *out (malloc, caller frees) when out is not NULL. Returns the exit code. */
static int run_cli(char **out, const char *const *args, const char *ticket_env)
{
    int fds[2];
    if (pipe(fds) != 0) die("pipe");
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        const char *argv[64];
        size_t n = 0;
        argv[n++] = cli;
        for (size_t i = 0; args[i] != NULL && n < 63; i++)
            argv[n++] = args[i];
        argv[n] = NULL;
        dup2(fds[1], 1);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, 2);
        close(fds[0]);
        close(fds[1]);
        if (ticket_env != NULL) setenv("MQE2E_TICKET", ticket_env, 1);
        execv(cli, (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    close(fds[1]);
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    if (buf == NULL) die("malloc");
    for (;;) {
        if (len + 4096 > cap) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (nb == NULL) die("realloc");
            buf = nb;
        }
        ssize_t r = read(fds[0], buf + len, cap - len - 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        len += (size_t)r;
    }
    close(fds[0]);
    buf[len] = '\0';
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (out != NULL) {
        *out = buf;
    } else {
        free(buf);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Operator request to the running authority. */
static int op(char **out, const char *const *args)
{
    const char *all[64];
    size_t n = 0;
    for (; args[n] != NULL; n++)
        all[n] = args[n];
    const char *common[] = {"-K", op_ks, "--key-file", key_path, "-h", "127.0.0.1", "-p", port_s,
                            "--authority", pin_text, "-W", "30", NULL};
    for (size_t i = 0; common[i] != NULL; i++)
        all[n++] = common[i];
    all[n] = NULL;
    return run_cli(out, all, NULL);
}

static void start_broker(void)
{
    char conf[256];
    int port = bp_free_port();
    if (port <= 0) die("no free port");
    snprintf(port_s, sizeof port_s, "%d", port);
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", port);
    snprintf(conf, sizeof conf, "%s/mosquitto.conf", dir);
    FILE *f = fopen(conf, "w");
    if (f == NULL) die("broker config");
    fprintf(f, "listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n"
               "max_queued_messages 0\nset_tcp_nodelay true\nlog_dest none\n",
            port);
    fclose(f);
    fflush(NULL);
    broker_pid = fork();
    if (broker_pid < 0) die("fork");
    if (broker_pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execlp("mosquitto", "mosquitto", "-c", conf, (char *)NULL);
        execl("/usr/sbin/mosquitto", "mosquitto", "-c", conf, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100; i++) {
        if (bp_port_open(port)) return;
        sleep_ms(50);
    }
    die("mosquitto did not start");
}

static void start_authority(void)
{
    fflush(NULL);
    authority_pid = fork();
    if (authority_pid < 0) die("fork");
    if (authority_pid == 0) {
        int fd = open(auth_log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(cli, cli, "authority", "run", "-K", auth_ks, "--key-file", key_path, "--db", db_path,
              "-h", "127.0.0.1", "-p", port_s, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        char line[512];
        int ready = 0;
        FILE *f = fopen(auth_log, "r");
        if (f != NULL) {
            while (fgets(line, sizeof line, f) != NULL)
                if (strstr(line, "serving") != NULL) ready = 1;
            fclose(f);
        }
        if (ready) return;
        if (waitpid(authority_pid, NULL, WNOHANG) == authority_pid) {
            authority_pid = -1;
            die("authority exited");
        }
        sleep_ms(50);
    }
    die("authority did not start");
}

/* Authority, operator, group: the fixture both parts share. */
static void setup(void)
{
    char *out = NULL;
    snprintf(dir, sizeof dir, "/tmp/mqe2e-bench-hs.XXXXXX");
    if (mkdtemp(dir) == NULL) die("mkdtemp");
    snprintf(key_path, sizeof key_path, "%s/key", dir);
    snprintf(auth_ks, sizeof auth_ks, "%s/auth.ks", dir);
    snprintf(op_ks, sizeof op_ks, "%s/op.ks", dir);
    snprintf(db_path, sizeof db_path, "%s/auth.db", dir);
    snprintf(auth_log, sizeof auth_log, "%s/authority.log", dir);
    /* A raw key file: no Argon2id per CLI run or keystore open. */
    uint8_t k[32];
    char hex[65];
    randombytes_buf(k, sizeof k);
    sodium_bin2hex(hex, sizeof hex, k, sizeof k);
    sodium_memzero(k, sizeof k);
    int fd = open(key_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, hex, 64) != 64 || write(fd, "\n", 1) != 1) die("key file");
    close(fd);
    sodium_memzero(hex, sizeof hex);

    start_broker();
    const char *init[] = {"authority", "init", "-K", auth_ks, "--key-file", key_path,
                          "--db", db_path, "--id", AUTH_ID, NULL};
    if (run_cli(&out, init, NULL) != 0) die("authority init failed");
    out[strcspn(out, "\n")] = '\0';
    snprintf(pin_text, sizeof pin_text, "%s", out);
    free(out);
    const char *keygen[] = {"keygen", "-K", op_ks, "--key-file", key_path, "--id", "op1", NULL};
    if (run_cli(&out, keygen, NULL) != 0) die("keygen failed");
    char *sp = strstr(out, "signing public key: ");
    if (sp == NULL) die("keygen printed no signing key");
    char pk[65];
    memcpy(pk, sp + strlen("signing public key: "), 64);
    pk[64] = '\0';
    free(out);
    const char *add[] = {"authority", "operator-add", "-K", auth_ks, "--key-file", key_path,
                         "--db", db_path, "--name", "op1", "--sign-public", pk, NULL};
    if (run_cli(NULL, add, NULL) != 0) die("operator-add failed");
    start_authority();
    const char *gc[] = {"group", "create", "--group", GROUP, "--topic", "bench/#", NULL};
    if (op(NULL, gc) != 0) die("group create failed");
}

/* `token create --count n`: n tickets, one per line (ids base-1 .. base-n). */
static char **tickets(const char *base, int n)
{
    char count[16], *out = NULL;
    snprintf(count, sizeof count, "%d", n);
    const char *tc[] = {"token", "create", "--id", base, "--count", count, "--group", GROUP,
                        "--grant", "bench/#:pubsub", NULL};
    if (op(&out, tc) != 0) die("token create failed");
    char **t = calloc((size_t)n, sizeof *t);
    if (t == NULL) die("calloc");
    int i = 0;
    for (char *save = NULL, *l = strtok_r(out, "\n", &save); l != NULL && i < n;
         l = strtok_r(NULL, "\n", &save)) {
        if (strncmp(l, "mqe2e1-", 7) == 0) t[i++] = strdup(l);
    }
    sodium_memzero(out, strlen(out));
    free(out);
    if (i != n) die("token create printed fewer tickets than asked");
    return t;
}

/* ------------------------------------------------------------------ stats */

typedef struct stats {
    double p50, p99, mean, min, max;
    int n;
} stats;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentiles. */
static stats stats_of(double *v, int n)
{
    stats s = {0, 0, 0, 0, 0, n};
    if (n <= 0) return s;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += v[i];
    int i50 = (int)((50 * n + 99) / 100) - 1, i99 = (int)((99 * n + 99) / 100) - 1;
    s.p50 = v[i50 < 0 ? 0 : i50];
    s.p99 = v[i99 < 0 ? 0 : i99];
    s.mean = sum / n;
    s.min = v[0];
    s.max = v[n - 1];
    return s;
}

static void stats_json(FILE *f, const char *name, stats s, const char *tail)
{
    fprintf(f,
            "    \"%s\": {\"p50\": %.3f, \"p99\": %.3f, \"mean\": %.3f, \"min\": %.3f, "
            "\"max\": %.3f, \"samples\": %d}%s\n",
            name, s.p50, s.p99, s.mean, s.min, s.max, s.n, tail);
}

/* ------------------------------------------------------------------ (b) enrollment */

typedef struct mailbox {
    pthread_mutex_t m;
    pthread_cond_t cv;
    char topic[320];
    uint8_t data[MQE2E_CONTROL_MAX_FRAME_BYTES];
    size_t len;
    int full;
} mailbox;

static int on_mail(void *ctx, char *topic, int topic_len, MQTTClient_message *m)
{
    mailbox *b = ctx;
    (void)topic_len;
    pthread_mutex_lock(&b->m);
    if (!b->full && m->payloadlen >= 0 && (size_t)m->payloadlen <= sizeof b->data) {
        snprintf(b->topic, sizeof b->topic, "%s", topic);
        memcpy(b->data, m->payload, (size_t)m->payloadlen);
        b->len = (size_t)m->payloadlen;
        b->full = 1;
        pthread_cond_signal(&b->cv);
    }
    pthread_mutex_unlock(&b->m);
    MQTTClient_freeMessage(&m);
    MQTTClient_free(topic);
    return 1;
}

static void on_lost(void *ctx, char *cause)
{
    (void)ctx;
    fprintf(stderr, "bench_handshake: connection lost: %s\n", cause != NULL ? cause : "?");
}

static MQTTClient raw_client(const char *id, mailbox *box, const char *filter)
{
    MQTTClient c = NULL;
    MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer;
    co.cleansession = 1;
    co.keepAliveInterval = 30;
    if (MQTTClient_create(&c, uri, id, MQTTCLIENT_PERSISTENCE_NONE, NULL) != MQTTCLIENT_SUCCESS ||
        MQTTClient_setCallbacks(c, box, on_lost, on_mail, NULL) != MQTTCLIENT_SUCCESS ||
        MQTTClient_connect(c, &co) != MQTTCLIENT_SUCCESS ||
        MQTTClient_subscribe(c, filter, 1) != MQTTCLIENT_SUCCESS)
        die("raw client");
    /* As `mqe2e enroll` does on its raw Paho connection (docs/PAHO.md). */
    (void)mqe2e_tcp_nodelay_uri(uri);
    return c;
}

/* Wait for the next frame on topic (others are dropped); 1 when it came. */
static int mail_take(mailbox *b, const char *topic, uint8_t *out, size_t *len)
{
    double end = mono_ms() + WAIT_MS;
    pthread_mutex_lock(&b->m);
    for (;;) {
        if (b->full) {
            int mine = strcmp(b->topic, topic) == 0;
            if (mine) {
                memcpy(out, b->data, b->len);
                *len = b->len;
            }
            b->full = 0;
            if (mine) break;
            continue;
        }
        double left = end - mono_ms();
        if (left <= 0) {
            pthread_mutex_unlock(&b->m);
            return 0;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long add_ns = (long)(left > 50 ? 50 : left) * 1000000L;
        ts.tv_nsec += add_ns;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&b->cv, &b->m, &ts);
    }
    pthread_mutex_unlock(&b->m);
    return 1;
}

typedef struct enroll_result {
    stats ms;
    size_t request_bytes, reply_bytes;
    int failed;
} enroll_result;

static enroll_result bench_enroll(int n)
{
    enroll_result r;
    memset(&r, 0, sizeof r);
    char **tk = tickets("dev", n);
    double *ms = calloc((size_t)n, sizeof *ms);
    mailbox box;
    memset(&box, 0, sizeof box);
    pthread_mutex_init(&box.m, NULL);
    pthread_cond_init(&box.cv, NULL);
    /* One raw connection carries every device's frames: the broker has no ACL
     * here, so its inbox subscription covers all of them. */
    MQTTClient c = raw_client("bench-enroll", &box, PREFIX "/client/#");
    static uint8_t frame[MQE2E_CONTROL_MAX_FRAME_BYTES], reply[MQE2E_CONTROL_MAX_FRAME_BYTES];
    int got = 0;
    if (ms == NULL) die("calloc");
    for (int i = 0; i < n; i++) {
        mqe2e_ticket t;
        uint8_t dh_pk[32], dh_sk[32], sign_pk[32], sign_sk[64];
        mqe2e_enroll_device *st = NULL;
        size_t len = 0, rlen = 0;
        char inbox[320];
        if (mqe2e_ticket_decode(&t, tk[i]) != MQE2E_OK) die("ticket decode");
        snprintf(inbox, sizeof inbox, PREFIX "/client/%s", t.client_id);
        /* The device's keys exist before it enrolls. */
        crypto_box_keypair(dh_pk, dh_sk);
        crypto_sign_keypair(sign_pk, sign_sk);
        double t0 = mono_ms();
        int rc = mqe2e_enroll_begin(&st, frame, sizeof frame, &len, &t, dh_sk, sign_pk,
                                    (uint64_t)time(NULL));
        mqe2e_ticket_wipe(&t);
        if (rc != MQE2E_OK) die("enroll_begin");
        MQTTClient_deliveryToken dt;
        if (MQTTClient_publish(c, PREFIX "/authority", (int)len, frame, 1, 0, &dt) !=
            MQTTCLIENT_SUCCESS)
            die("publish");
        if (!mail_take(&box, inbox, reply, &rlen)) die("no enrollment reply");
        mqe2e_control_update up;
        mqe2e_credential *cred = NULL;
        rc = mqe2e_enroll_finish(st, &up, &cred, reply, rlen, (uint64_t)time(NULL));
        double t1 = mono_ms();
        if (rc == MQE2E_OK && up.n_bundles >= 1) {
            ms[got++] = t1 - t0;
            r.request_bytes = len;
            r.reply_bytes = rlen;
        } else {
            r.failed++;
        }
        mqe2e_control_update_wipe(&up);
        mqe2e_credential_free(cred);
        mqe2e_enroll_device_free(st);
        sodium_memzero(dh_sk, sizeof dh_sk);
        sodium_memzero(sign_sk, sizeof sign_sk);
        sodium_memzero(tk[i], strlen(tk[i]));
        free(tk[i]);
    }
    free(tk);
    MQTTClient_disconnect(c, 500);
    MQTTClient_destroy(&c);
    r.ms = stats_of(ms, got);
    free(ms);
    return r;
}

/* ------------------------------------------------------------------ (a) channel */

typedef struct inbox {
    pthread_mutex_t m;
    pthread_cond_t cv;
    int n;
} inbox;

static int on_cmd(void *ctx, char *topic, int topic_len, MQTTClient_message *m)
{
    inbox *ib = ctx;
    (void)topic_len;
    pthread_mutex_lock(&ib->m);
    ib->n++;
    pthread_cond_signal(&ib->cv);
    pthread_mutex_unlock(&ib->m);
    mqe2e_MQTTClient_freeMessage(&m);
    mqe2e_MQTTClient_free(topic);
    return 1;
}

static int inbox_wait(inbox *ib, int n)
{
    double end = mono_ms() + WAIT_MS;
    pthread_mutex_lock(&ib->m);
    while (ib->n < n) {
        double left = end - mono_ms();
        if (left <= 0) break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)(left > 50 ? 50 : left) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&ib->cv, &ib->m, &ts);
    }
    int ok = ib->n >= n;
    pthread_mutex_unlock(&ib->m);
    return ok;
}

/* Sizes of CHANNEL frames seen on the wire (steps 1..3), from a raw spy. */
static atomic_size_t chan_step_bytes[4];
static atomic_size_t cmd_envelope_bytes;

static int on_spy(void *ctx, char *topic, int topic_len, MQTTClient_message *m)
{
    (void)ctx;
    (void)topic_len;
    if (getenv("BENCH_DEBUG") != NULL)
        fprintf(stderr, "%.3f spy %s %d B\n", mono_ms(), topic, m->payloadlen);
    if (strncmp(topic, PREFIX "/client/", strlen(PREFIX "/client/")) == 0) {
        mqe2e_control_frame f;
        if (mqe2e_control_frame_decode(&f, m->payload, (size_t)m->payloadlen) == MQE2E_OK &&
            f.kind == MQE2E_CONTROL_CHANNEL && f.step >= 1 && f.step <= 3)
            atomic_store(&chan_step_bytes[f.step], (size_t)m->payloadlen);
    } else if (strncmp(topic, CMD_TOPIC "/", strlen(CMD_TOPIC "/")) == 0) {
        atomic_store(&cmd_envelope_bytes, (size_t)m->payloadlen);
    }
    MQTTClient_freeMessage(&m);
    MQTTClient_free(topic);
    return 1;
}

static mqe2e_keystore *enroll_keystore(const char *ticket, const char *name)
{
    char ks_path[256];
    snprintf(ks_path, sizeof ks_path, "%s/%s.ks", dir, name);
    const char *args[] = {"enroll", "-K", ks_path, "--key-file", key_path, "-h", "127.0.0.1",
                          "-p", port_s, "-W", "30", NULL};
    if (run_cli(NULL, args, ticket) != 0) die("mqe2e enroll failed");
    uint8_t k[32];
    mqe2e_storage st;
    mqe2e_keystore *ks = NULL;
    if (mqe2e_storage_read_key_file(k, key_path) != MQE2E_OK ||
        mqe2e_storage_file_key(&st, ks_path, k) != MQE2E_OK ||
        mqe2e_keystore_open(&ks, st) != MQE2E_OK)
        die("keystore open");
    sodium_memzero(k, sizeof k);
    return ks;
}

static void on_log(void *ctx, mqe2e_log_level level, const char *msg)
{
    (void)ctx;
    fprintf(stderr, "%.3f [%d] %s\n", mono_ms(), (int)level, msg);
}

/*
 * "HELLO sent" -> "HELLO reply": the session's own debug lines, stamped as
 * they reach the front's log callback. "HELLO sent" is logged when the
 * session queues the frame for the control worker (right after the inbox
 * SUBSCRIBE was acknowledged), "HELLO reply (n bytes)" when the reply has
 * been opened and verified, just before its keys are applied.
 */
typedef struct hello_clock {
    pthread_mutex_t m;
    double sent, reply;
} hello_clock;

/* The HELLO exchange as the application sees it: "HELLO sent" -> @p done (the
 * front reported the session fresh: the reply's keys applied); *apply gets
 * "HELLO reply" -> @p done. Negative when a line was not seen. */
static double hello_clock_until(hello_clock *hc, double done, double *apply)
{
    pthread_mutex_lock(&hc->m);
    int ok = hc->sent > 0 && hc->reply >= hc->sent && done >= hc->reply;
    double d = ok ? done - hc->sent : -1;
    *apply = ok ? done - hc->reply : -1;
    pthread_mutex_unlock(&hc->m);
    return d;
}

static void hello_clock_reset(hello_clock *hc)
{
    pthread_mutex_lock(&hc->m);
    hc->sent = hc->reply = 0;
    pthread_mutex_unlock(&hc->m);
}

static void on_hello_log(void *ctx, mqe2e_log_level level, const char *msg)
{
    hello_clock *hc = ctx;
    double now = mono_ms();
    pthread_mutex_lock(&hc->m);
    if (hc->sent == 0 && strstr(msg, "HELLO sent") != NULL)
        hc->sent = now;
    else if (hc->reply == 0 && hc->sent > 0 && strstr(msg, "HELLO reply (") != NULL)
        hc->reply = now;
    pthread_mutex_unlock(&hc->m);
    if (getenv("BENCH_DEBUG") != NULL) fprintf(stderr, "%.3f [%d] %s\n", now, (int)level, msg);
}

/* Security options of both fronts: with @p hc the debug log feeds it. */
static void security_options(mqe2e_MQTTClient_securityOptions *so, mqe2e_keystore *ks,
                             const mqe2e_policy *pol, hello_clock *hc)
{
    mqe2e_MQTTClient_securityOptions init = mqe2e_MQTTClient_securityOptions_initializer;
    *so = init;
    so->keystore = ks;
    so->policy = pol;
    if (hc != NULL) {
        so->onLog = on_hello_log;
        so->logLevel = MQE2E_LOG_DEBUG;
        so->context = hc;
    } else if (getenv("BENCH_DEBUG") != NULL) {
        so->onLog = on_log;
        so->logLevel = MQE2E_LOG_DEBUG;
    }
}

static mqe2e_MQTTClient enc_client(const char *id, mqe2e_keystore *ks, const mqe2e_policy *pol,
                                   inbox *ib, hello_clock *hc)
{
    mqe2e_MQTTClient c = NULL;
    mqe2e_MQTTClient_securityOptions so;
    if (mqe2e_MQTTClient_create(&c, uri, id, MQTTCLIENT_PERSISTENCE_NONE, NULL) !=
        MQTTCLIENT_SUCCESS)
        die("mqe2e create");
    security_options(&so, ks, pol, hc);
    if (mqe2e_MQTTClient_setSecurity(c, &so) != MQTTCLIENT_SUCCESS) die("setSecurity");
    if (ib != NULL &&
        mqe2e_MQTTClient_setCallbacks(c, ib, on_lost, on_cmd, NULL) != MQTTCLIENT_SUCCESS)
        die("setCallbacks");
    return c;
}

static int wait_handshakes(mqe2e_MQTTClient c, uint64_t n)
{
    double end = mono_ms() + WAIT_MS;
    for (;;) {
        mqe2e_control_counters k;
        if (mqe2e_MQTTClient_getControlCounters(c, &k) == MQTTCLIENT_SUCCESS &&
            k.handshakes_ok >= n)
            return 1;
        if (mono_ms() > end) return 0;
        struct timespec ts = {0, 100000L};
        nanosleep(&ts, NULL);
    }
}

static int plain_arrived(void *ctx, char *topic, int len, MQTTClient_message *m)
{
    (void)ctx;
    (void)len;
    MQTTClient_freeMessage(&m);
    MQTTClient_free(topic);
    return 1;
}

/* A plain Paho client with callbacks (as the front has): connect, subscribe
 * two topics at QoS 1, disconnect. */
static void plain_connect_subscribe(MQTTClient_connectOptions *co)
{
    MQTTClient c = NULL;
    char *topics[2] = {"bench/plain/a", "bench/plain/b"};
    int qos[2] = {1, 1};
    if (MQTTClient_create(&c, uri, "bench-plain", MQTTCLIENT_PERSISTENCE_NONE, NULL) !=
            MQTTCLIENT_SUCCESS ||
        MQTTClient_setCallbacks(c, NULL, on_lost, plain_arrived, NULL) != MQTTCLIENT_SUCCESS ||
        MQTTClient_connect(c, co) != MQTTCLIENT_SUCCESS ||
        MQTTClient_subscribeMany(c, 2, topics, qos) != MQTTCLIENT_SUCCESS)
        die("plain Paho client");
    MQTTClient_disconnect(c, 0);
    MQTTClient_destroy(&c);
}

/* ------------------------------------------------------------------ async front */

/* One Paho response (onSuccess / onFailure) awaited by the main thread. */
typedef struct async_wait {
    pthread_mutex_t m;
    pthread_cond_t cv;
    int done, ok;
    double t; /* when the response came */
} async_wait;

static void aw_init(async_wait *w)
{
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->m, NULL);
    pthread_cond_init(&w->cv, NULL);
}

static void aw_fini(async_wait *w)
{
    pthread_mutex_destroy(&w->m);
    pthread_cond_destroy(&w->cv);
}

static void aw_reset(async_wait *w)
{
    pthread_mutex_lock(&w->m);
    w->done = w->ok = 0;
    w->t = 0;
    pthread_mutex_unlock(&w->m);
}

static void aw_signal(async_wait *w, int ok)
{
    double now = mono_ms();
    pthread_mutex_lock(&w->m);
    w->done = 1;
    w->ok = ok;
    w->t = now;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->m);
}

static void aw_success(void *ctx, MQTTAsync_successData *d)
{
    (void)d;
    if (getenv("BENCH_DEBUG") != NULL) fprintf(stderr, "%.3f onSuccess\n", mono_ms());
    aw_signal(ctx, 1);
}

static void aw_failure(void *ctx, MQTTAsync_failureData *d)
{
    (void)d;
    aw_signal(ctx, 0);
}

/* 1 when the response came and was a success. */
static int aw_wait(async_wait *w)
{
    double end = mono_ms() + WAIT_MS;
    pthread_mutex_lock(&w->m);
    while (!w->done) {
        double left = end - mono_ms();
        if (left <= 0) break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)(left > 50 ? 50 : left) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&w->cv, &w->m, &ts);
    }
    int ok = w->done && w->ok;
    pthread_mutex_unlock(&w->m);
    return ok;
}

static int plain_async_arrived(void *ctx, char *topic, int len, MQTTAsync_message *m)
{
    (void)ctx;
    (void)len;
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1;
}

static int front_async_arrived(void *ctx, char *topic, int len, MQTTAsync_message *m)
{
    (void)ctx;
    (void)len;
    mqe2e_MQTTAsync_freeMessage(&m);
    mqe2e_MQTTAsync_free(topic);
    return 1;
}

/* Connect options of both async clients: as the sync ones (clean session,
 * keepalive 30 s, 64 in flight), onSuccess/onFailure into @p w. */
static MQTTAsync_connectOptions async_connect_options(async_wait *w)
{
    MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
    co.cleansession = 1;
    co.keepAliveInterval = 30;
    co.maxInflight = 64;
    co.onSuccess = aw_success;
    co.onFailure = aw_failure;
    co.context = w;
    return co;
}

/* The async anchor: a plain MQTTAsync client with callbacks connects
 * (onSuccess) and subscribes two topics at QoS 1 (onSuccess), as the front
 * does for its control topics. Returns the time from MQTTAsync_connect() to
 * the SUBACK's onSuccess, ms; < 0 on failure. The disconnect is awaited
 * outside the timing. */
static double plain_async_connect_subscribe(void)
{
    MQTTAsync c = NULL;
    async_wait w;
    char *topics[2] = {"bench/plain/a", "bench/plain/b"};
    int qos[2] = {1, 1};
    double ms = -1;
    aw_init(&w);
    if (MQTTAsync_create(&c, uri, "bench-plain-async", MQTTCLIENT_PERSISTENCE_NONE, NULL) !=
            MQTTASYNC_SUCCESS ||
        MQTTAsync_setCallbacks(c, NULL, on_lost, plain_async_arrived, NULL) != MQTTASYNC_SUCCESS)
        die("plain async client");
    MQTTAsync_connectOptions co = async_connect_options(&w);
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.onSuccess = aw_success;
    ro.onFailure = aw_failure;
    ro.context = &w;
    double t0 = mono_ms();
    if (MQTTAsync_connect(c, &co) == MQTTASYNC_SUCCESS && aw_wait(&w)) {
        aw_reset(&w);
        if (MQTTAsync_subscribeMany(c, 2, topics, qos, &ro) == MQTTASYNC_SUCCESS && aw_wait(&w))
            ms = w.t - t0;
    }
    MQTTAsync_disconnectOptions dop = MQTTAsync_disconnectOptions_initializer;
    dop.onSuccess = aw_success;
    dop.onFailure = aw_failure;
    dop.context = &w;
    aw_reset(&w);
    if (MQTTAsync_disconnect(c, &dop) == MQTTASYNC_SUCCESS) (void)aw_wait(&w);
    MQTTAsync_destroy(&c);
    aw_fini(&w);
    return ms;
}

typedef struct async_sample {
    double hello;    /* mqe2e_MQTTAsync_connect() -> waitForAuthority() returned */
    double connack;  /* mqe2e_MQTTAsync_connect() -> the connect's onSuccess */
    double exchange; /* "HELLO sent" -> waitForAuthority() returned */
    double apply;    /* "HELLO reply" -> waitForAuthority() returned */
} async_sample;

/* The async front: connect with onSuccess, then mqe2e_MQTTAsync_waitForAuthority()
 * from this thread, which returns when the HELLO reply was applied (the
 * session is fresh: group sends are accepted from then on; docs/PAHO.md
 * "Waiting for the authority"). 1 on success. */
static int async_front_hello(const char *id, mqe2e_keystore *ks, const mqe2e_policy *pol,
                             hello_clock *hc, async_sample *out)
{
    mqe2e_MQTTAsync a = NULL;
    mqe2e_MQTTAsync_securityOptions so;
    async_wait w;
    int ok = 0;
    aw_init(&w);
    hello_clock_reset(hc);
    security_options(&so, ks, pol, hc);
    if (mqe2e_MQTTAsync_create(&a, uri, id, MQTTCLIENT_PERSISTENCE_NONE, NULL) !=
            MQTTASYNC_SUCCESS ||
        mqe2e_MQTTAsync_setSecurity(a, &so) != MQTTASYNC_SUCCESS ||
        mqe2e_MQTTAsync_setCallbacks(a, NULL, on_lost, front_async_arrived, NULL) !=
            MQTTASYNC_SUCCESS)
        die("mqe2e async client");
    MQTTAsync_connectOptions co = async_connect_options(&w);
    double t0 = mono_ms();
    if (getenv("BENCH_DEBUG") != NULL) fprintf(stderr, "%.3f async connect %s\n", t0, id);
    if (mqe2e_MQTTAsync_connect(a, &co) == MQTTASYNC_SUCCESS &&
        mqe2e_MQTTAsync_waitForAuthority(a, WAIT_MS) == MQTTASYNC_SUCCESS) {
        double t1 = mono_ms();
        ok = aw_wait(&w);
        out->hello = t1 - t0;
        out->connack = w.t - t0;
        out->exchange = hello_clock_until(hc, t1, &out->apply);
        ok = ok && out->exchange >= 0;
    }
    MQTTAsync_disconnectOptions dop = MQTTAsync_disconnectOptions_initializer;
    dop.onSuccess = aw_success;
    dop.onFailure = aw_failure;
    dop.context = &w;
    aw_reset(&w);
    if (mqe2e_MQTTAsync_disconnect(a, &dop) == MQTTASYNC_SUCCESS) (void)aw_wait(&w);
    mqe2e_MQTTAsync_destroy(&a);
    aw_fini(&w);
    return ok;
}

typedef struct channel_result {
    stats first, established, hello;
    stats plain_connect; /* anchor: plain Paho connect + subscribe of two topics */
    stats hello_exchange; /* sync front: "HELLO sent" -> connect() returned fresh */
    stats hello_apply;    /* sync front: "HELLO reply" -> connect() returned fresh */
    /* The async front (mqe2e_MQTTAsync) and its anchor (plain MQTTAsync). */
    stats async_hello, async_connack, async_exchange, async_apply, async_plain;
    int async_failed;
    size_t step[4];
    size_t envelope_bytes;
    int failed;
} channel_result;

static channel_result bench_channel(int n)
{
    channel_result r;
    memset(&r, 0, sizeof r);
    /* The authority admits about 20 HELLOs a minute per client id (burst 10):
     * the initiators take turns so that none is throttled. chan-1..chan-POOL
     * initiate; chan-(POOL+1) responds, one channel topic per initiator. */
    int pool = n < INITIATOR_POOL ? n : INITIATOR_POOL;
    char **tk = tickets("chan", pool + 1);
    /* The async front's own identities, so that both fronts' HELLOs stay
     * within the authority's rate per client id. */
    char **tka = tickets("asy", pool < 2 ? 2 : pool); /* --count 1 would name it "asy" */
    mqe2e_keystore *kb[INITIATOR_POOL], *ka[INITIATOR_POOL], *kd;
    mqe2e_policy *pb[INITIATOR_POOL], *pd = NULL;
    char responder[32], name[32], topic[INITIATOR_POOL][48];
    snprintf(responder, sizeof responder, "chan-%d", pool + 1);
    kd = enroll_keystore(tk[pool], responder);
    if (mqe2e_policy_new(&pd) != MQE2E_OK) die("policy");
    for (int i = 0; i < pool; i++) {
        snprintf(name, sizeof name, "chan-%d", i + 1);
        snprintf(topic[i], sizeof topic[i], CMD_TOPIC "/%d", i + 1);
        kb[i] = enroll_keystore(tk[i], name);
        char aname[32];
        snprintf(aname, sizeof aname, "asy-%d", i + 1);
        ka[i] = enroll_keystore(tka[i], aname);
        sodium_memzero(tka[i], strlen(tka[i]));
        free(tka[i]);
        pb[i] = NULL;
        if (mqe2e_policy_new(&pb[i]) != MQE2E_OK ||
            mqe2e_policy_add(pb[i], topic[i], MQE2E_POLICY_CHANNEL, responder) != MQE2E_OK ||
            mqe2e_policy_add(pd, topic[i], MQE2E_POLICY_CHANNEL, name) != MQE2E_OK)
            die("policy");
    }
    for (int i = 0; i <= pool; i++) {
        sodium_memzero(tk[i], strlen(tk[i]));
        free(tk[i]);
    }
    free(tk);
    for (int i = pool; i < 2; i++) {
        sodium_memzero(tka[i], strlen(tka[i]));
        free(tka[i]);
    }
    free(tka);

    MQTTClient spy = NULL;
    {
        MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer;
        char *filters[2] = {PREFIX "/client/#", CMD_TOPIC "/#"};
        int qos[2] = {1, 1};
        if (MQTTClient_create(&spy, uri, "bench-spy", MQTTCLIENT_PERSISTENCE_NONE, NULL) !=
                MQTTCLIENT_SUCCESS ||
            MQTTClient_setCallbacks(spy, NULL, on_lost, on_spy, NULL) != MQTTCLIENT_SUCCESS ||
            MQTTClient_connect(spy, &co) != MQTTCLIENT_SUCCESS ||
            MQTTClient_subscribeMany(spy, 2, filters, qos) != MQTTCLIENT_SUCCESS)
            die("spy");
    }

    inbox ib, ib_back;
    memset(&ib, 0, sizeof ib);
    pthread_mutex_init(&ib.m, NULL);
    pthread_cond_init(&ib.cv, NULL);
    memset(&ib_back, 0, sizeof ib_back);
    pthread_mutex_init(&ib_back.m, NULL);
    pthread_cond_init(&ib_back.cv, NULL);
    MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer;
    co.cleansession = 1;
    co.keepAliveInterval = 30;
    /* With Paho's default (reliable = 1: one QoS 1 message in flight) a QoS 1
     * publish made while the previous one awaits its PUBACK sleeps in
     * MQTTClient_yield() for 100 ms: the channel message queued behind the
     * last handshake frame would measure that sleep. */
    co.reliable = 0;
    co.maxInflightMessages = 64;
    mqe2e_MQTTClient dev = enc_client(responder, kd, pd, &ib, NULL);
    if (mqe2e_MQTTClient_connect(dev, &co) != MQTTCLIENT_SUCCESS) die("responder connect");
    if (mqe2e_MQTTClient_subscribe(dev, CMD_TOPIC "/#", 1) != MQTTCLIENT_SUCCESS)
        die("subscribe");
    if (!wait_handshakes(dev, 1)) die("responder HELLO");

    double *first = calloc((size_t)n, sizeof *first), *est = calloc((size_t)n, sizeof *est),
           *hello = calloc((size_t)n, sizeof *hello), *plain = calloc((size_t)n, sizeof *plain),
           *exch = calloc((size_t)n, sizeof *exch), *a_hello = calloc((size_t)n, sizeof *a_hello),
           *a_connack = calloc((size_t)n, sizeof *a_connack),
           *a_exch = calloc((size_t)n, sizeof *a_exch),
           *a_plain = calloc((size_t)n, sizeof *a_plain), *appl = calloc((size_t)n, sizeof *appl),
           *a_appl = calloc((size_t)n, sizeof *a_appl);
    if (first == NULL || est == NULL || hello == NULL || plain == NULL || exch == NULL ||
        a_hello == NULL || a_connack == NULL || a_exch == NULL || a_plain == NULL || appl == NULL ||
        a_appl == NULL)
        die("calloc");
    hello_clock hc;
    memset(&hc, 0, sizeof hc);
    pthread_mutex_init(&hc.m, NULL);
    /* Paho's asynchronous library starts its threads on its first connect in
     * the process (~100 ms once): one unmeasured connect, so that every
     * sample shows the per-connect cost (docs/BENCHMARKS.md). */
    if (plain_async_connect_subscribe() < 0) die("plain async warm-up");
    int got = 0, a_got = 0;
    for (int i = 0; i < n; i++) {
        int k = i % pool;
        /* A fresh initiator: no channel yet, the responder replaces its old
         * one. messageArrived is set: the front receives control frames
         * through it. */
        snprintf(name, sizeof name, "chan-%d", k + 1);
        /* The anchor: what Paho alone takes for the same connect options plus
         * the front's subscription of its two control topics (QoS 1). */
        double p0 = mono_ms();
        plain_connect_subscribe(&co);
        double p1 = mono_ms();
        hello_clock_reset(&hc);
        mqe2e_MQTTClient back = enc_client(name, kb[k], pb[k], &ib_back, &hc);
        double h0 = mono_ms();
        if (mqe2e_MQTTClient_connect(back, &co) != MQTTCLIENT_SUCCESS) die("initiator connect");
        int ok = wait_handshakes(back, 1);
        double h1 = mono_ms();
        int base = ib.n;
        char text[32];
        snprintf(text, sizeof text, "on %d", i);
        MQTTClient_deliveryToken dt;
        double t0 = mono_ms();
        ok = ok && mqe2e_MQTTClient_publish(back, topic[k], (int)strlen(text), text, 1, 0, &dt) ==
                       MQTTCLIENT_SUCCESS;
        ok = ok && inbox_wait(&ib, base + 1);
        double t1 = mono_ms();
        ok = ok && mqe2e_MQTTClient_publish(back, topic[k], (int)strlen(text), text, 1, 0, &dt) ==
                       MQTTCLIENT_SUCCESS;
        ok = ok && inbox_wait(&ib, base + 2);
        double t2 = mono_ms();
        double ap_ms = -1, ex = hello_clock_until(&hc, h1, &ap_ms);
        ok = ok && ex >= 0;
        if (ok) {
            exch[got] = ex;
            appl[got] = ap_ms;
            hello[got] = h1 - h0;
            plain[got] = p1 - p0;
            first[got] = t1 - t0;
            est[got] = t2 - t1;
            got++;
        } else {
            mqe2e_control_counters kb_c, kd_c;
            (void)mqe2e_MQTTClient_getControlCounters(back, &kb_c);
            (void)mqe2e_MQTTClient_getControlCounters(dev, &kd_c);
            fprintf(stderr,
                    "bench_handshake: channel sample %d failed (initiator: %llu handshakes, %llu "
                    "sent, %llu failed; responder: %llu handshakes, %llu opened, %llu failed; "
                    "delivered %d of 2)\n",
                    i, (unsigned long long)kb_c.handshakes_ok, (unsigned long long)kb_c.channel_sent,
                    (unsigned long long)kb_c.handshakes_failed,
                    (unsigned long long)kd_c.handshakes_ok, (unsigned long long)kd_c.channel_opened,
                    (unsigned long long)kd_c.handshakes_failed, ib.n - base);
            r.failed++;
        }
        /* Both messages arrived (or the sample failed): nothing to wait for. */
        mqe2e_MQTTClient_disconnect(back, 0);
        mqe2e_MQTTClient_destroy(&back);

        /* The async front and its anchor, same broker, same authority. */
        snprintf(name, sizeof name, "asy-%d", k + 1);
        double ap = plain_async_connect_subscribe();
        async_sample as;
        memset(&as, 0, sizeof as);
        if (ap >= 0 && async_front_hello(name, ka[k], pb[k], &hc, &as)) {
            a_plain[a_got] = ap;
            a_hello[a_got] = as.hello;
            a_connack[a_got] = as.connack;
            a_exch[a_got] = as.exchange;
            a_appl[a_got] = as.apply;
            a_got++;
        } else {
            fprintf(stderr, "bench_handshake: async sample %d failed\n", i);
            r.async_failed++;
        }
        if (getenv("BENCH_DEBUG") != NULL)
            fprintf(stderr,
                    "sample %d async: connect->HELLO %.1f ms (onSuccess %.1f ms, HELLO exchange "
                    "%.2f ms; plain MQTTAsync connect+subscribe %.1f ms)\n",
                    i, as.hello, as.connack, as.exchange, ap);
        if (getenv("BENCH_DEBUG") != NULL)
            fprintf(stderr,
                    "sample %d: connect->HELLO %.1f ms (plain Paho connect+subscribe %.1f ms), "
                    "first %.1f ms, second %.2f ms\n",
                    i, h1 - h0, p1 - p0, t1 - t0, t2 - t1);
    }
    for (int s = 1; s <= 3; s++)
        r.step[s] = atomic_load(&chan_step_bytes[s]);
    r.envelope_bytes = atomic_load(&cmd_envelope_bytes);
    mqe2e_MQTTClient_disconnect(dev, 1000);
    mqe2e_MQTTClient_destroy(&dev);
    MQTTClient_disconnect(spy, 500);
    MQTTClient_destroy(&spy);
    for (int i = 0; i < pool; i++) {
        mqe2e_keystore_close(ka[i]);
        mqe2e_keystore_close(kb[i]);
        mqe2e_policy_free(pb[i]);
    }
    mqe2e_keystore_close(kd);
    mqe2e_policy_free(pd);
    r.first = stats_of(first, got);
    r.established = stats_of(est, got);
    r.hello = stats_of(hello, got);
    r.plain_connect = stats_of(plain, got);
    r.hello_exchange = stats_of(exch, got);
    r.async_hello = stats_of(a_hello, a_got);
    r.async_connack = stats_of(a_connack, a_got);
    r.async_exchange = stats_of(a_exch, a_got);
    r.hello_apply = stats_of(appl, got);
    r.async_apply = stats_of(a_appl, a_got);
    free(appl);
    free(a_appl);
    r.async_plain = stats_of(a_plain, a_got);
    pthread_mutex_destroy(&hc.m);
    free(exch);
    free(a_hello);
    free(a_connack);
    free(a_exch);
    free(a_plain);
    free(plain);
    free(first);
    free(est);
    free(hello);
    return r;
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    int n_channel = 200, n_enroll = 100, smoke = 0;
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--channel") == 0 && i + 1 < argc) {
            n_channel = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--enroll") == 0 && i + 1 < argc) {
            n_enroll = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
            json = argv[++i];
        } else if (strcmp(argv[i], "--smoke") == 0) {
            smoke = 1;
        } else {
            fprintf(stderr, "usage: bench_handshake [--channel N] [--enroll N] [--json FILE] "
                            "[--smoke]\n");
            return 2;
        }
    }
    if (smoke) n_channel = n_enroll = 10;
    if (n_channel < 1 || n_enroll < 1 || n_channel > MAX_SAMPLES || n_enroll > MAX_SAMPLES) {
        fprintf(stderr, "bench_handshake: sample counts must be 1..%d\n", MAX_SAMPLES);
        return 2;
    }
    if (mqe2e_init() != MQE2E_OK) die("mqe2e_init");
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    double start = mono_ms();
    setup();
    printf("mqe2e %s; broker %s; authority %s%s\n", mqe2e_version(), uri, AUTH_ID,
           smoke ? "; SMOKE: 10 samples each, timings meaningless" : "");
    fflush(stdout);

    enroll_result e = bench_enroll(n_enroll);
    printf("enrollment (ticket -> credential + bundle, one round trip): %d samples, p50 %.2f ms, "
           "p99 %.2f ms; request %zu B, reply %zu B%s\n",
           e.ms.n, e.ms.p50, e.ms.p99, e.request_bytes, e.reply_bytes,
           e.failed ? " (SOME FAILED)" : "");
    fflush(stdout);
    channel_result c = bench_channel(n_channel);
    printf("channel first message (XX handshake + envelope): %d samples, p50 %.2f ms, p99 %.2f ms\n"
           "channel message once established: p50 %.2f ms, p99 %.2f ms\n"
           "connect -> HELLO done: p50 %.2f ms, p99 %.2f ms (anchor, plain Paho connect + "
           "subscribe: p50 %.2f ms, p99 %.2f ms)\n"
           "channel frames: step 1 %zu B, step 2 %zu B, step 3 %zu B; envelope %zu B (4-6 B "
           "payload)%s\n",
           c.first.n, c.first.p50, c.first.p99, c.established.p50, c.established.p99, c.hello.p50,
           c.hello.p99, c.plain_connect.p50, c.plain_connect.p99, c.step[1], c.step[2], c.step[3], c.envelope_bytes,
           c.failed ? " (SOME FAILED)" : "");
    printf("connect -> HELLO done, both fronts, p50 / p99 ms (%d sync, %d async samples%s):\n"
           "| front | connect -> HELLO done | anchor: plain Paho connect + subscribe 2 topics "
           "| HELLO exchange alone (HELLO sent -> fresh) | of which reply -> fresh |\n"
           "|---|---:|---:|---:|---:|\n"
           "| sync, mqe2e_MQTTClient | %.2f / %.2f | %.2f / %.2f | %.2f / %.2f | %.2f / %.2f |\n"
           "| async, mqe2e_MQTTAsync | %.2f / %.2f | %.2f / %.2f | %.2f / %.2f | %.2f / %.2f |\n"
           "async connect -> onSuccess (CONNACK): p50 %.2f ms, p99 %.2f ms\n",
           c.hello.n, c.async_hello.n, c.async_failed ? "; SOME ASYNC FAILED" : "", c.hello.p50,
           c.hello.p99, c.plain_connect.p50, c.plain_connect.p99, c.hello_exchange.p50,
           c.hello_exchange.p99, c.hello_apply.p50, c.hello_apply.p99, c.async_hello.p50,
           c.async_hello.p99, c.async_plain.p50, c.async_plain.p99, c.async_exchange.p50,
           c.async_exchange.p99, c.async_apply.p50, c.async_apply.p99, c.async_connack.p50,
           c.async_connack.p99);
    double total_s = (mono_ms() - start) / 1e3;
    printf("total %.1f s\n", total_s);

    if (json != NULL) {
        FILE *f = fopen(json, "w");
        if (f == NULL) die("cannot write the JSON file");
        fprintf(f, "{\n  \"benchmark\": \"handshake\",\n  \"mqe2e_version\": \"%s\",\n"
                   "  \"smoke\": %s,\n  \"unit\": \"ms\",\n  \"percentiles\": \"nearest rank\",\n",
                mqe2e_version(), smoke ? "true" : "false");
        fprintf(f, "  \"enroll\": {\n");
        stats_json(f, "round_trip_ms", e.ms, ",");
        fprintf(f, "    \"request_bytes\": %zu, \"reply_bytes\": %zu, \"failed\": %d\n  },\n",
                e.request_bytes, e.reply_bytes, e.failed);
        fprintf(f, "  \"channel\": {\n");
        stats_json(f, "first_message_ms", c.first, ",");
        stats_json(f, "established_message_ms", c.established, ",");
        stats_json(f, "hello_ms", c.hello, ",");
        stats_json(f, "plain_paho_connect_subscribe_ms", c.plain_connect, ",");
        stats_json(f, "hello_exchange_ms", c.hello_exchange, ",");
        stats_json(f, "async_hello_ms", c.async_hello, ",");
        stats_json(f, "async_connack_ms", c.async_connack, ",");
        stats_json(f, "async_hello_exchange_ms", c.async_exchange, ",");
        stats_json(f, "hello_reply_to_fresh_ms", c.hello_apply, ",");
        stats_json(f, "async_hello_reply_to_fresh_ms", c.async_apply, ",");
        stats_json(f, "plain_paho_async_connect_subscribe_ms", c.async_plain, ",");
        fprintf(f, "    \"async_failed\": %d,\n", c.async_failed);
        fprintf(f,
                "    \"step1_bytes\": %zu, \"step2_bytes\": %zu, \"step3_bytes\": %zu, "
                "\"handshake_bytes\": %zu, \"envelope_bytes\": %zu, \"failed\": %d\n  },\n",
                c.step[1], c.step[2], c.step[3], c.step[1] + c.step[2] + c.step[3],
                c.envelope_bytes, c.failed);
        fprintf(f, "  \"seconds\": %.1f\n}\n", total_s);
        if (fclose(f) != 0) die("write JSON");
    }
    int failed = e.failed + c.failed + c.async_failed;
    cleanup();
    return failed ? 1 : 0;
}
