/*
 * Rekey after a revocation: how long until every remaining member of a large
 * group holds the new epoch, through the real authority process and a real
 * Mosquitto.
 *
 * usage: bench_rekey [--members N] [--rounds R] [--window W] [--cli PATH] [--json FILE] [--smoke]
 *                    [--store URI] [--replicas N]   (bench_authority.h: store and replicas)
 *
 * N simulated devices (default 1000; --smoke: 50) enroll into group `big`
 * (topic `big/#`) with tickets from `mqe2e token create`, over one Paho
 * connection subscribed to P/client/# (replies and pushes are told apart by
 * topic). Then R times (default 3; --smoke: 1) the operator runs
 * `mqe2e revoke --id m-K` for one member. The clock starts just before the
 * CLI is started (its start-up, keystore open and operator round trip are
 * included) and stops when the push of the last remaining member has been
 * received and opened with that member's own key (Noise_K push from the
 * pinned authority) and shows the next epoch of `big`. Pushes are opened as
 * they arrive, on the single receiving thread, so the figure includes the
 * devices' decryption work done one after the other.
 *
 * Also reported: time to the first such push, the CLI's own run time, and the
 * authority's time to rotate and push ("group big rotated to epoch E, members
 * pushed in X ms" in its log). Every revoked member must receive no push that
 * carries a new epoch of `big`.
 *
 * Prints a human summary on stderr and one JSON line on stdout (also written
 * to FILE with --json). Exit status 0 when every remaining member received
 * every new epoch and no revoked member did, whatever the times: timings are
 * reported, not asserted.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <MQTTClient.h>
#include <sodium.h>

#include "bench_authority.h"
#include "mqe2e/control.h"
#include "mqe2e/credential.h"
#include "mqe2e/error.h"
#include "mqe2e/operator.h"

#ifndef MQE2E_BENCH_CLI
#define MQE2E_BENCH_CLI "mqe2e"
#endif

#define PREFIX "mqe2e"
#define AUTH_ID "authority-bench"
#define GROUP "big"
#define TARGET_MS 2000.0
#define MAX_ROUNDS 100
/* A round that takes longer than this is a functional failure, not a slow one. */
#define ROUND_LIMIT_S 60.0

typedef struct dev {
    ba_device b; /* keys and enrollment request (bench_authority.h) */
    int enrolled;
    int revoked;
    uint64_t last_push;
    uint32_t epoch;     /* highest epoch of GROUP held */
    long bad_pushes;    /* pushes that did not open */
    long leaked_pushes; /* new epochs received after revocation */
} dev;

/* Device i's enrollment record, for ba_enroll_requests(). */
static ba_device *dev_slot(void *ctx, long i)
{
    return &((dev *)ctx)[i].b;
}

/* Index of m-K from "P/client/m-K" (K from 1), or -1. */
static long dev_index(const char *topic, long n)
{
    return ba_client_index(topic, PREFIX "/client/m-", n);
}

static uint32_t bundle_epoch(const mqe2e_control_update *u)
{
    uint32_t e = 0;
    for (size_t i = 0; i < u->n_bundles; i++)
        if (strcmp(u->bundles[i].group, GROUP) == 0 && u->bundles[i].epoch > e)
            e = u->bundles[i].epoch;
    return e;
}

/* Open a push to d; returns 1 when it carried a newer epoch of GROUP. */
static int push_take(dev *d, const uint8_t *frame, size_t len)
{
    mqe2e_control_update u;
    int rc = mqe2e_push_open(&u, d->b.dh_sk, ba.pin.dh_public, PREFIX, AUTH_ID, frame, len,
                             d->last_push);
    if (rc != MQE2E_OK) {
        d->bad_pushes++;
        return 0;
    }
    d->last_push = u.push_seq;
    uint32_t e = bundle_epoch(&u);
    mqe2e_control_update_wipe(&u);
    if (e <= d->epoch) return 0;
    d->epoch = e;
    if (d->revoked) d->leaked_pushes++;
    return 1;
}

/* One message from the shared connection, handed to the device it is for.
 * Returns 1 when it was a push raising a device's epoch to `want`. */
static int pump(MQTTClient c, dev *d, long n, uint32_t want, long timeout_ms)
{
    char *topic = NULL;
    int tl = 0, hit = 0;
    MQTTClient_message *m = NULL;
    if (MQTTClient_receive(c, &topic, &tl, &m, (unsigned long)timeout_ms) == MQTTCLIENT_SUCCESS &&
        m != NULL && topic != NULL && m->payloadlen > 0) {
        long i = dev_index(topic, n);
        if (i >= 0 && d[i].enrolled &&
            push_take(&d[i], (const uint8_t *)m->payload, (size_t)m->payloadlen) && !d[i].revoked &&
            d[i].epoch == want)
            hit = 1;
    }
    if (m != NULL) MQTTClient_freeMessage(&m);
    if (topic != NULL) MQTTClient_free(topic);
    return hit;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median (mean of the two middle values for an even count) and maximum. */
static void stats(const double *v, int n, double *p50, double *max)
{
    double s[MAX_ROUNDS];
    memcpy(s, v, (size_t)n * sizeof *v);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    *p50 = n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2.0;
    *max = s[n - 1];
}

/* The authority's "members pushed in X ms" for the rotation of GROUP to
 * epoch e, from whichever replica's log has it, or -1. */
static double authority_ms(uint32_t e)
{
    char want[128], line[1024];
    double ms = -1;
    snprintf(want, sizeof want, "group " GROUP " rotated to epoch %lu, members pushed in ",
             (unsigned long)e);
    for (int i = 0; i < ba_authority_count(); i++) {
        FILE *f = fopen(ba_authority_log(i), "r");
        while (f != NULL && fgets(line, sizeof line, f) != NULL) {
            char *p = strstr(line, want);
            if (p != NULL) ms = strtod(p + strlen(want), NULL);
        }
        if (f != NULL) fclose(f);
    }
    return ms;
}

/* Number of devices, for the reply callback. */
static long n_members;

/* Finish the enrollment of the device a reply is for (once). */
static int finish_reply(void *ctx, const char *topic, const void *payload, size_t len)
{
    dev *d = ctx;
    long i = dev_index(topic, n_members);
    if (i < 0 || d[i].b.st == NULL) return 0;
    mqe2e_control_update r;
    mqe2e_credential *cred = NULL;
    if (mqe2e_enroll_finish(d[i].b.st, &r, &cred, payload, len, (uint64_t)time(NULL)) == MQE2E_OK) {
        d[i].enrolled = 1;
        d[i].epoch = bundle_epoch(&r);
        mqe2e_control_update_wipe(&r);
    }
    mqe2e_credential_free(cred);
    mqe2e_enroll_device_free(d[i].b.st);
    d[i].b.st = NULL;
    return 1;
}

/* Enroll every device (windowed, like bench_enroll_rate) and finish each reply. */
static void enroll_all(MQTTClient c, dev *d, long n, long window, char *tickets)
{
    ba_enroll_requests(tickets, "m-", n, dev_slot, d);

    double t0, t_last;
    n_members = n;
    (void)ba_enroll_window(c, PREFIX "/authority", n, window, dev_slot, d, finish_reply, &t0,
                           &t_last);
    for (long i = 0; i < n; i++) {
        if (!d[i].enrolled || d[i].epoch == 0) ba_die("a member did not enroll");
        free(d[i].b.req);
        d[i].b.req = NULL;
    }
    fprintf(stderr, "bench_rekey: %ld members enrolled in %.2f s\n", n, ba_mono() - t0);
}

int main(int argc, char **argv)
{
    ba.name = "bench_rekey";
    ba.cli = MQE2E_BENCH_CLI;
    long n = 1000, window = 512;
    int rounds = 3, smoke = 0;
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--members") == 0 && i + 1 < argc) {
            n = strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            rounds = (int)strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--window") == 0 && i + 1 < argc) {
            window = strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--cli") == 0 && i + 1 < argc) {
            ba.cli = argv[++i];
        } else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
            json = argv[++i];
        } else if (strcmp(argv[i], "--smoke") == 0) {
            smoke = 1;
            n = 50;
            rounds = 1;
        } else if (ba_store_arg(argc, argv, &i)) {
            continue;
        } else {
            fprintf(stderr, "usage: bench_rekey [--members N] [--rounds R] [--window W] "
                            "[--cli PATH] [--json FILE] [--smoke] [--store URI] [--replicas N]\n");
            return 2;
        }
    }
    if (rounds < 1 || rounds > MAX_ROUNDS || n < rounds + 1 || n > 100000 || window < 1)
        ba_die("need 1 <= rounds <= 100, rounds < members <= 100000, window >= 1");
    if (sodium_init() < 0) ba_die("sodium_init");
    signal(SIGPIPE, SIG_IGN);

    /* Every simulated device shares one connection: without unlimited
     * in-flight messages the broker's per-connection limit (20 QoS 1 in
     * flight) would pace the pushes of all members as if they were one slow
     * client. */
    ba_setup("mqe2e-rekey-bench", AUTH_ID, "max_inflight_messages 0");

    char *out = NULL;

    const char *gc[] = {"group",       "create",    "--group",    GROUP,  "--topic", GROUP "/#",
                        "-K",          ba.op_ks,    "--key-file", ba.key, "-p",      ba.port,
                        "--authority", ba.pin_text, "-W",         "60",   NULL};
    if (ba_run_cli(NULL, gc) != 0) ba_die("group create failed");
    char count[32];
    snprintf(count, sizeof count, "%ld", n);
    const char *tc[] = {"token", "create",      "--id",       "m",       "--count",
                        count,   "--group",     GROUP,        "--grant", GROUP "/#:pubsub",
                        "-K",    ba.op_ks,      "--key-file", ba.key,    "-p",
                        ba.port, "--authority", ba.pin_text,  "-W",      "120",
                        NULL};
    if (ba_run_cli(&out, tc) != 0) ba_die("token create failed");

    dev *d = calloc((size_t)n, sizeof *d);
    if (d == NULL) ba_die("out of memory");
    MQTTClient c =
        ba_devices_connect("bench-members", PREFIX, "cannot connect the members' connection");
    enroll_all(c, d, n, window, out);
    sodium_memzero(out, strlen(out));
    free(out);

    double total_ms[MAX_ROUNDS], first_ms[MAX_ROUNDS], cmd_ms[MAX_ROUNDS], auth_ms[MAX_ROUNDS];
    int auth_n = 0, failed = 0;
    long missing_total = 0;
    uint32_t epoch = d[0].epoch;
    for (int r = 0; r < rounds; r++) {
        /* Revoke members spread over the group, never the same one twice. */
        long victim = (long)r * (n / rounds);
        char id[32];
        snprintf(id, sizeof id, "m-%ld", victim + 1);
        const char *rv[] = {"revoke",     "--id", id,   "-K",    ba.op_ks,
                            "--key-file", ba.key, "-p", ba.port, "--authority",
                            ba.pin_text,  "-W",   "60", NULL};
        uint32_t want = epoch + 1U;
        long remaining = 0, have = 0;
        for (long i = 0; i < n; i++)
            if (!d[i].revoked && i != victim) remaining++;
        d[victim].revoked = 1;

        int fd = -1, st = 0, cli_done = 0;
        double t0 = ba_mono(), t_first = -1, t_last = -1, t_cli = -1;
        pid_t pid = ba_cli_start(&fd, rv);
        /* Receive while the CLI runs: pushes may arrive before it exits. */
        while ((have < remaining || !cli_done) && ba_mono() - t0 < ROUND_LIMIT_S) {
            if (have < remaining && pump(c, d, n, want, cli_done ? 100 : 5)) {
                double now = ba_mono();
                if (t_first < 0) t_first = now;
                if (++have == remaining) t_last = now;
            } else if (have == remaining) {
                ba_sleep_ms(5);
            }
            if (!cli_done) {
                pid_t w = waitpid(pid, &st, WNOHANG);
                if (w == pid) {
                    cli_done = 1;
                    t_cli = ba_mono();
                }
            }
        }
        if (!cli_done) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            t_cli = ba_mono();
        }
        char *rout = ba_cli_output(fd);
        if ((WIFEXITED(st) ? WEXITSTATUS(st) : -1) != 0) {
            fprintf(stderr, "bench_rekey: `mqe2e revoke --id %s` failed (exit %d)\n", id,
                    (WIFEXITED(st) ? WEXITSTATUS(st) : -1));
            failed = 1;
        }
        free(rout);
        /* Late pushes (to the revoked member above all) land before the next round. */
        double drain = ba_mono();
        while (ba_mono() - drain < 0.3)
            (void)pump(c, d, n, want, 50);

        if (t_last < 0) {
            fprintf(stderr, "bench_rekey: round %d: %ld of %ld members got epoch %lu\n", r + 1,
                    have, remaining, (unsigned long)want);
            missing_total += remaining - have;
            failed = 1;
            t_last = ba_mono();
        }
        total_ms[r] = (t_last - t0) * 1e3;
        first_ms[r] = t_first >= 0 ? (t_first - t0) * 1e3 : -1;
        cmd_ms[r] = (t_cli - t0) * 1e3;
        double a = authority_ms(want);
        if (a >= 0) auth_ms[auth_n++] = a;
        fprintf(stderr,
                "round %d: revoked %s, epoch %lu: %ld members, first push %.1f ms, last push "
                "opened %.1f ms, CLI exited %.1f ms, authority rotate+push %.1f ms\n",
                r + 1, id, (unsigned long)want, remaining, first_ms[r], total_ms[r], cmd_ms[r], a);
        epoch = want;
    }

    long leaked = 0, bad = 0;
    for (long i = 0; i < n; i++) {
        leaked += d[i].leaked_pushes;
        bad += d[i].bad_pushes;
        if (!d[i].revoked && d[i].epoch != epoch) failed = 1;
        ba_device_wipe(&d[i].b);
    }
    free(d);
    if (leaked != 0) {
        fprintf(stderr, "bench_rekey: %ld new epochs reached revoked members\n", leaked);
        failed = 1;
    }
    MQTTClient_disconnect(c, 500);
    MQTTClient_destroy(&c);
    ba_cleanup();

    double t50, tmax, f50, fmax, c50, cmax, a50 = -1, amax = -1;
    stats(total_ms, rounds, &t50, &tmax);
    stats(first_ms, rounds, &f50, &fmax);
    stats(cmd_ms, rounds, &c50, &cmax);
    if (auth_n > 0) stats(auth_ms, auth_n, &a50, &amax);
    char rlist[MAX_ROUNDS * 16] = "";
    for (int r = 0; r < rounds; r++) {
        size_t l = strlen(rlist);
        snprintf(rlist + l, sizeof rlist - l, "%s%.1f", r > 0 ? ", " : "", total_ms[r]);
    }
    char auth_json[128];
    if (auth_n > 0)
        snprintf(auth_json, sizeof auth_json, "{\"p50\": %.1f, \"max\": %.1f}", a50, amax);
    else
        snprintf(auth_json, sizeof auth_json, "null");
    int met = !failed && tmax <= TARGET_MS;
    fprintf(stderr,
            "rekey (%s, %d replicas): %ld members, %d revocations: all remaining members hold the "
            "new epoch "
            "p50 %.1f ms, max %.1f ms (target <= %.0f ms: %s); first push p50 %.1f ms; "
            "CLI run p50 %.1f ms; authority rotate+push p50 %.1f ms; pushes that failed to open "
            "%ld; new epochs to revoked members %ld\n",
            ba_store_kind(), ba.replicas, n, rounds, t50, tmax, TARGET_MS, met ? "met" : "not met",
            f50, c50, a50, bad, leaked);
    char line[8192];
    snprintf(line, sizeof line,
             "{\"benchmark\": \"rekey\", \"store\": \"%s\", \"replicas\": %d, "
             "\"smoke\": %s, \"members\": %ld, \"rounds\": %d, "
             "\"revocation_to_all_members_ms\": {\"p50\": %.1f, \"max\": %.1f, \"each\": [%s]}, "
             "\"first_push_ms\": {\"p50\": %.1f, \"max\": %.1f}, "
             "\"command_ms\": {\"p50\": %.1f, \"max\": %.1f}, \"authority_push_ms\": %s, "
             "\"missing\": %ld, \"revoked_new_epoch_pushes\": %ld, \"unopened_pushes\": %ld, "
             "\"statistic\": \"from the start of `mqe2e revoke` to the last remaining member's "
             "push opened showing the new epoch\", "
             "\"target\": {\"max_ms\": %.0f, \"met\": %s}}",
             ba_store_kind(), ba.replicas, smoke ? "true" : "false", n, rounds, t50, tmax, rlist,
             f50, fmax, c50, cmax, auth_json, missing_total, leaked, bad, TARGET_MS,
             met ? "true" : "false");
    printf("%s\n", line);
    if (json != NULL) {
        FILE *f = fopen(json, "w");
        if (f == NULL || fprintf(f, "%s\n", line) < 0 || fclose(f) != 0) {
            fprintf(stderr, "bench_rekey: cannot write %s\n", json);
            return 2;
        }
    }
    return failed ? 1 : 0;
}
