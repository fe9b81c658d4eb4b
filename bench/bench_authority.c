/* The shared authority set-up of the benchmarks (bench_authority.h). */
#include "bench_authority.h"
#include "bench_proc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "mqe2e/credential.h"
#include "mqe2e/error.h"
#include "mqe2e/operator.h"

ba_env ba;

double ba_mono(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

void ba_sleep_ms(long ms)
{
    bp_sleep_ms(ms);
}

static void stop_child(pid_t *pid)
{
    bp_stop_child(pid, 50, 0);
}

void ba_cleanup(void)
{
    for (int i = 0; i < BA_REPLICAS_MAX; i++)
        stop_child(&ba.replica_pids[i]);
    if (ba.replicas > 0) ba.authority_pid = 0; /* replica 0, stopped above */
    stop_child(&ba.authority_pid);
    stop_child(&ba.broker_pid);
    if (ba.dir[0] != '\0') {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", ba.dir);
        if (system(cmd) != 0) fprintf(stderr, "%s: cannot remove %s\n", ba.name, ba.dir);
        ba.dir[0] = '\0';
    }
}

void ba_die(const char *what)
{
    fprintf(stderr, "%s: %s\n", ba.name, what);
    ba_cleanup();
    exit(2);
}

static int free_port(void)
{
    int p = bp_free_port();
    if (p < 0) ba_die("no free port");
    return p;
}

pid_t ba_cli_start(int *fd, const char *const *args)
{
    int fds[2];
    if (pipe(fds) != 0) ba_die("pipe");
    pid_t pid = fork();
    if (pid < 0) ba_die("fork");
    if (pid == 0) {
        const char *argv[64];
        size_t n = 0;
        argv[n++] = ba.cli;
        for (; args[n - 1] != NULL && n < 63; n++)
            argv[n] = args[n - 1];
        argv[n] = NULL;
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv(ba.cli, (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    close(fds[1]);
    *fd = fds[0];
    return pid;
}

char *ba_cli_output(int fd)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    if (buf == NULL) ba_die("out of memory");
    for (;;) {
        if (len + 4096 > cap) {
            cap *= 2;
            char *n = realloc(buf, cap);
            if (n == NULL) ba_die("out of memory");
            buf = n;
        }
        ssize_t r = read(fd, buf + len, 4096);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    return buf;
}

int ba_run_cli(char **out, const char *const *args)
{
    int fd = -1;
    pid_t pid = ba_cli_start(&fd, args);
    char *buf = ba_cli_output(fd);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (out != NULL)
        *out = buf;
    else
        free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void start_broker(int port, const char *extra)
{
    char conf[700], log[700];
    snprintf(conf, sizeof conf, "%s/mosquitto.conf", ba.dir);
    snprintf(log, sizeof log, "%s/mosquitto.log", ba.dir);
    FILE *f = fopen(conf, "w");
    if (f == NULL) ba_die("cannot write mosquitto.conf");
    fprintf(f, "listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n", port);
    /* The authority's session may hold a whole window of requests. */
    fprintf(f, "max_queued_messages 0\n");
    if (extra != NULL) fprintf(f, "%s\n", extra);
    /* Replicas speak MQTT v5: the broker's Receive Maximum (Mosquitto's
     * max_inflight_messages, default 20) bounds their QoS 1 replies in
     * flight, and a burst would wait for PUBACKs (docs/SCALING.md). */
    if (ba.replicas > 0 && (extra == NULL || strstr(extra, "max_inflight_messages") == NULL))
        fprintf(f, "max_inflight_messages 0\n");
    fprintf(f, "log_dest file %s\nlog_type error\nlog_type warning\n", log);
    if (geteuid() == 0) fprintf(f, "user root\n");
    fclose(f);
    ba.broker_pid = fork();
    if (ba.broker_pid < 0) ba_die("fork");
    if (ba.broker_pid == 0) {
        execl("/usr/sbin/mosquitto", "mosquitto", "-c", conf, (char *)NULL);
        execlp("mosquitto", "mosquitto", "-c", conf, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100; i++) {
        if (bp_port_open(port)) return;
        ba_sleep_ms(50);
    }
    ba_die("mosquitto did not start");
}

/* `authority run -K ks` logging to @p log with extra arguments; waits for "serving". */
static pid_t spawn_authority(const char *ks, const char *log, const char *group, const char *rid)
{
    pid_t pid = fork();
    if (pid < 0) ba_die("fork");
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
        }
        if (group != NULL)
            execl(ba.cli, ba.cli, "authority", "run", "-K", ks, "--key-file", ba.key, "--db", ba.db,
                  "-h", "127.0.0.1", "-p", ba.port, "--replica-group", group, "--replica-id", rid,
                  (char *)NULL);
        else
            execl(ba.cli, ba.cli, "authority", "run", "-K", ks, "--key-file", ba.key, "--db", ba.db,
                  "-h", "127.0.0.1", "-p", ba.port, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        FILE *f = fopen(log, "r");
        char line[1024];
        int ready = 0;
        while (f != NULL && fgets(line, sizeof line, f) != NULL)
            if (strstr(line, "serving") != NULL) ready = 1;
        if (f != NULL) fclose(f);
        if (ready) return pid;
        ba_sleep_ms(50);
    }
    ba_die("the authority did not start");
}

/* A copy of the authority keystore for replica @p i (a keystore is locked
 * by the process that opens it). */
static void copy_keystore(const char *to)
{
    char cmd[1400];
    int n = snprintf(cmd, sizeof cmd, "cp '%s' '%s' && chmod 600 '%s'", ba.auth_ks, to, to);
    if (n < 0 || (size_t)n >= sizeof cmd) ba_die("keystore path too long");
    if (system(cmd) != 0) ba_die("cannot copy the authority keystore");
}

static void start_authority(void)
{
    if (ba.replicas == 0) {
        ba.authority_pid = spawn_authority(ba.auth_ks, ba.log, NULL, NULL);
        return;
    }
    for (int i = 0; i < ba.replicas; i++) {
        char ks[700], rid[32];
        snprintf(ks, sizeof ks, "%s/auth-r%d.ks", ba.dir, i);
        snprintf(ba.logs[i], sizeof ba.logs[i], "%s/replica-%d.log", ba.dir, i);
        snprintf(rid, sizeof rid, "bench-auth-r%d", i);
        copy_keystore(ks);
        ba.replica_pids[i] = spawn_authority(ks, ba.logs[i], "bench", rid);
    }
    ba.authority_pid = ba.replica_pids[0];
}

int ba_store_arg(int argc, char **argv, int *i)
{
    if (strcmp(argv[*i], "--store") == 0 && *i + 1 < argc) {
        const char *v = argv[++*i];
        if (strlen(v) >= sizeof ba.store) ba_die("--store: too long");
        snprintf(ba.store, sizeof ba.store, "%s", v);
        return 1;
    }
    if (strcmp(argv[*i], "--replicas") == 0 && *i + 1 < argc) {
        long n = strtol(argv[++*i], NULL, 10);
        if (n < 0 || n > BA_REPLICAS_MAX) ba_die("--replicas: 0 to 4");
        ba.replicas = (int)n;
        return 1;
    }
    return 0;
}

const char *ba_store_kind(void)
{
    return strncmp(ba.store, "postgres", 8) == 0 ? "postgresql" : "sqlite";
}

int ba_authority_count(void)
{
    return ba.replicas > 0 ? ba.replicas : 1;
}

const char *ba_authority_log(int i)
{
    return ba.replicas > 0 ? ba.logs[i] : ba.log;
}

pid_t ba_authority_pid_of(int i)
{
    return ba.replicas > 0 ? ba.replica_pids[i] : ba.authority_pid;
}

void ba_setup(const char *tmpl, const char *auth_id, const char *broker_extra)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(ba.dir, sizeof ba.dir, "%s/%s.XXXXXX", tmp != NULL ? tmp : "/tmp", tmpl);
    if (mkdtemp(ba.dir) == NULL) {
        ba.dir[0] = '\0';
        ba_die("mkdtemp");
    }
    snprintf(ba.auth_ks, sizeof ba.auth_ks, "%s/auth.ks", ba.dir);
    snprintf(ba.op_ks, sizeof ba.op_ks, "%s/op.ks", ba.dir);
    if (ba.store[0] != '\0')
        snprintf(ba.db, sizeof ba.db, "%s", ba.store);
    else
        snprintf(ba.db, sizeof ba.db, "%s/auth.db", ba.dir);
    snprintf(ba.key, sizeof ba.key, "%s/key", ba.dir);
    snprintf(ba.log, sizeof ba.log, "%s/authority.log", ba.dir);
    int p = free_port();
    snprintf(ba.port, sizeof ba.port, "%d", p);
    FILE *kf = fopen(ba.key, "w");
    if (kf == NULL) ba_die("cannot write the key file");
    fputs("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", kf);
    fclose(kf);
    chmod(ba.key, 0600);
    start_broker(p, broker_extra);

    char *out = NULL;
    const char *init[] = {"authority", "init", "-K",   ba.auth_ks, "--key-file", ba.key,
                          "--db",      ba.db,  "--id", auth_id,    NULL};
    if (ba_run_cli(&out, init) != 0) ba_die("authority init failed");
    out[strcspn(out, "\n")] = '\0';
    snprintf(ba.pin_text, sizeof ba.pin_text, "%s", out);
    free(out);
    if (mqe2e_authority_pin_decode(&ba.pin, ba.pin_text) != MQE2E_OK) ba_die("bad pin");
    const char *keygen[] = {"keygen", "-K", ba.op_ks, "--key-file", ba.key, "--id", "op1", NULL};
    if (ba_run_cli(&out, keygen) != 0) ba_die("keygen failed");
    char *sp = strstr(out, "signing public key: ");
    if (sp == NULL) ba_die("keygen printed no public key");
    char hex[65];
    memcpy(hex, sp + strlen("signing public key: "), 64);
    hex[64] = '\0';
    free(out);
    const char *add[] = {"authority", "operator-add", "-K",     ba.auth_ks, "--key-file",    ba.key,
                         "--db",      ba.db,          "--name", "op1",      "--sign-public", hex,
                         NULL};
    if (ba_run_cli(NULL, add) != 0) ba_die("operator-add failed");
    if (ba.prepare != NULL) ba.prepare();
    start_authority();
}

void ba_enroll_requests(char *tickets, const char *id_prefix, long n, ba_device_slot *slot,
                        void *ctx)
{
    uint8_t frame[MQE2E_CONTROL_MAX_FRAME_BYTES];
    char *save = NULL;
    long got = 0;
    for (char *l = strtok_r(tickets, "\n", &save); l != NULL && got < n;
         l = strtok_r(NULL, "\n", &save)) {
        mqe2e_ticket t;
        if (mqe2e_ticket_decode(&t, l) != MQE2E_OK) continue;
        char want[64];
        snprintf(want, sizeof want, "%s%ld", id_prefix, got + 1);
        if (strcmp(t.client_id, want) != 0) ba_die("tickets out of order");
        ba_device *x = slot(ctx, got);
        crypto_box_keypair(x->dh_pk, x->dh_sk);
        crypto_sign_keypair(x->sign_pk, x->sign_sk);
        size_t len = 0;
        if (mqe2e_enroll_begin(&x->st, frame, sizeof frame, &len, &t, x->dh_sk, x->sign_pk,
                               (uint64_t)time(NULL)) != MQE2E_OK)
            ba_die("enroll_begin failed");
        mqe2e_ticket_wipe(&t);
        if ((x->req = malloc(len)) == NULL) ba_die("out of memory");
        memcpy(x->req, frame, len);
        x->req_len = len;
        got++;
    }
    if (got != n) ba_die("fewer tickets than devices");
}

void ba_device_wipe(ba_device *x)
{
    mqe2e_enroll_device_free(x->st);
    x->st = NULL;
    sodium_memzero(x->dh_sk, sizeof x->dh_sk);
    sodium_memzero(x->sign_sk, sizeof x->sign_sk);
    free(x->req);
    x->req = NULL;
}

long ba_client_index(const char *topic, const char *prefix, long n)
{
    size_t pl = strlen(prefix);
    if (strncmp(topic, prefix, pl) != 0) return -1;
    char *end = NULL;
    long k = strtol(topic + pl, &end, 10);
    if (end == NULL || *end != '\0' || k < 1 || k > n) return -1;
    return k - 1;
}

MQTTClient ba_devices_connect(const char *id, const char *prefix, const char *what)
{
    char uri[64], filter[128];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%s", ba.port);
    snprintf(filter, sizeof filter, "%s/client/#", prefix);
    MQTTClient c;
    MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer;
    co.cleansession = 1;
    co.maxInflightMessages = 65535;
    if (MQTTClient_create(&c, uri, id, MQTTCLIENT_PERSISTENCE_NONE, NULL) != MQTTCLIENT_SUCCESS ||
        MQTTClient_connect(c, &co) != MQTTCLIENT_SUCCESS ||
        MQTTClient_subscribe(c, filter, 1) != MQTTCLIENT_SUCCESS)
        ba_die(what);
    return c;
}

long ba_enroll_window(MQTTClient c, const char *request_topic, long n, long window,
                      ba_device_slot *slot, void *ctx, ba_reply_fn *on_reply, double *t0,
                      double *t_last)
{
    long sent = 0, done = 0;
    double limit = 60.0 + (double)n / 50.0;
    *t0 = ba_mono();
    *t_last = *t0;
    while (done < n && ba_mono() - *t0 < limit) {
        while (sent < n && sent - done < window) {
            MQTTClient_deliveryToken tok;
            ba_device *x = slot(ctx, sent);
            if (MQTTClient_publish(c, request_topic, (int)x->req_len, x->req, 1, 0, &tok) !=
                MQTTCLIENT_SUCCESS)
                ba_die("publish failed");
            sent++;
        }
        char *topic = NULL;
        int tl = 0;
        MQTTClient_message *m = NULL;
        if (MQTTClient_receive(c, &topic, &tl, &m, 100) == MQTTCLIENT_SUCCESS && m != NULL &&
            topic != NULL && m->payloadlen > 0 &&
            on_reply(ctx, topic, m->payload, (size_t)m->payloadlen)) {
            done++;
            *t_last = ba_mono();
        }
        if (m != NULL) MQTTClient_freeMessage(&m);
        if (topic != NULL) MQTTClient_free(topic);
    }
    return done;
}
