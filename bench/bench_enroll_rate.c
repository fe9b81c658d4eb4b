/*
 * Enrollment rate of the real authority process through a real Mosquitto.
 *
 * usage: bench_enroll_rate [--devices N] [--window W] [--cli PATH] [--json FILE] [--smoke]
 *                          [--store URI] [--replicas N]   (bench_authority.h)
 *
 * N simulated devices (default 2000; --smoke: 50) each hold one ticket from
 * `mqe2e token create --count N --group fleet`. Their ENROLL step-1 frames are
 * built before the clock starts (the device side of the handshake is not what
 * is measured), then published over one Paho connection, at most W (default
 * 512) unanswered at a time, and every reply is collected on P/client/#.
 * devices/s = N / (last reply - first publish). After the clock stops every
 * reply is finished with mqe2e_enroll_finish(): a device counts as enrolled
 * only when its credential verifies against the authority ba.pin.
 *
 * Prints a human summary on stderr and one JSON line on stdout (also written
 * to FILE with --json). Exit status 0 when every device enrolled, whatever
 * the rate: timings are reported, not asserted.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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
#define TARGET_PER_S 1000.0

typedef struct dev {
    ba_device b; /* keys and enrollment request (bench_authority.h) */
    uint8_t *reply;
    size_t reply_len;
} dev;

/* Device i's enrollment record, for ba_enroll_requests(). */
static ba_device *dev_slot(void *ctx, long i)
{
    return &((dev *)ctx)[i].b;
}

/* Index of dev-K from "P/client/dev-K" (K from 1), or -1. */
static long dev_index(const char *topic, long n)
{
    return ba_client_index(topic, PREFIX "/client/dev-", n);
}

/* Number of devices, for the reply callback. */
static long n_devices;

/* Keep the first reply of each device. */
static int take_reply(void *ctx, const char *topic, const void *payload, size_t len)
{
    dev *d = ctx;
    long i = dev_index(topic, n_devices);
    if (i < 0 || d[i].reply != NULL) return 0;
    if ((d[i].reply = malloc(len)) == NULL) ba_die("out of memory");
    memcpy(d[i].reply, payload, len);
    d[i].reply_len = len;
    return 1;
}

/* User + system CPU seconds of a child so far (/proc/PID/stat). */
static double cpu_s(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1U, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmHWM: %ld", &kb) == 1) break;
    if (f != NULL) fclose(f);
    return kb;
}

/* CPU seconds of every authority process (replicas summed). */
static double authority_cpu_s(void)
{
    double sum = 0;
    for (int i = 0; i < ba_authority_count(); i++)
        sum += cpu_s(ba_authority_pid_of(i));
    return sum;
}

int main(int argc, char **argv)
{
    ba.name = "bench_enroll_rate";
    ba.cli = MQE2E_BENCH_CLI;
    long n = 2000, window = 512;
    int smoke = 0;
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--devices") == 0 && i + 1 < argc) {
            n = strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--window") == 0 && i + 1 < argc) {
            window = strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--cli") == 0 && i + 1 < argc) {
            ba.cli = argv[++i];
        } else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
            json = argv[++i];
        } else if (strcmp(argv[i], "--smoke") == 0) {
            smoke = 1;
            n = 50;
        } else if (ba_store_arg(argc, argv, &i)) {
            continue;
        } else {
            fprintf(stderr, "usage: bench_enroll_rate [--devices N] [--window W] [--cli PATH] "
                            "[--json FILE] [--smoke] [--store URI] [--replicas N]\n");
            return 2;
        }
    }
    if (n < 1 || n > 1000000 || window < 1) ba_die("--devices and --window must be positive");
    if (sodium_init() < 0) ba_die("sodium_init");
    signal(SIGPIPE, SIG_IGN);

    ba_setup("mqe2e-enroll-bench", AUTH_ID, NULL);

    char *out = NULL;

    const char *gc[] = {"group",       "create",    "--group",    "fleet", "--topic", "fleet/#",
                        "-K",          ba.op_ks,    "--key-file", ba.key,  "-p",      ba.port,
                        "--authority", ba.pin_text, "-W",         "60",    NULL};
    if (ba_run_cli(NULL, gc) != 0) ba_die("group create failed");
    char count[32];
    snprintf(count, sizeof count, "%ld", n);
    const char *tc[] = {
        "token", "create",  "--id",           "dev",       "--count", count,        "--group",
        "fleet", "--grant", "fleet/#:pubsub", "-K",        ba.op_ks,  "--key-file", ba.key,
        "-p",    ba.port,   "--authority",    ba.pin_text, "-W",      "120",        NULL};
    if (ba_run_cli(&out, tc) != 0) ba_die("token create failed");

    dev *d = calloc((size_t)n, sizeof *d);
    if (d == NULL) ba_die("out of memory");
    double c0 = ba_mono();
    ba_enroll_requests(out, "dev-", n, dev_slot, d);
    sodium_memzero(out, strlen(out));
    free(out);
    double device_s = ba_mono() - c0;

    MQTTClient c =
        ba_devices_connect("bench-devices", PREFIX, "cannot connect the devices' connection");

    double cpu0 = authority_cpu_s();
    double t0, t_last;
    n_devices = n;
    long replies =
        ba_enroll_window(c, PREFIX "/authority", n, window, dev_slot, d, take_reply, &t0, &t_last);
    double elapsed = t_last - t0;
    double auth_cpu = authority_cpu_s() - cpu0;
    long auth_hwm = 0; /* the largest replica's */
    for (int i = 0; i < ba_authority_count(); i++) {
        long kb = rss_kb(ba_authority_pid_of(i));
        if (kb > auth_hwm) auth_hwm = kb;
    }

    long ok = 0;
    for (long i = 0; i < n; i++) {
        mqe2e_control_update r;
        mqe2e_credential *cred = NULL;
        if (d[i].reply != NULL &&
            mqe2e_enroll_finish(d[i].b.st, &r, &cred, d[i].reply, d[i].reply_len,
                                (uint64_t)time(NULL)) == MQE2E_OK) {
            mqe2e_credential *v = NULL;
            if (mqe2e_credential_verify(&v, r.credential, r.credential_len, ba.pin.sign_public,
                                        (uint64_t)time(NULL)) == MQE2E_OK &&
                r.n_bundles >= 1)
                ok++;
            mqe2e_credential_free(v);
            mqe2e_control_update_wipe(&r);
        }
        mqe2e_credential_free(cred);
        ba_device_wipe(&d[i].b);
        free(d[i].reply);
    }
    free(d);
    MQTTClient_disconnect(c, 500);
    MQTTClient_destroy(&c);
    ba_cleanup();

    double rate = elapsed > 0 ? (double)replies / elapsed : 0;
    char replica_text[32];
    if (ba.replicas > 0)
        snprintf(replica_text, sizeof replica_text, "%d replicas", ba.replicas);
    else
        snprintf(replica_text, sizeof replica_text, "one authority");
    fprintf(stderr,
            "enrollment (%s, %s): %ld devices, %ld replies, %ld enrolled (credential verified) in "
            "%.3f s: "
            "%.0f devices/s (target >= %.0f/s); device-side step 1 built in %.2f s beforehand; "
            "window %ld; authority CPU %.3f s (%.0f us per device); authority peak RSS %ld kB\n",
            ba_store_kind(), replica_text, n, replies, ok, elapsed, rate, TARGET_PER_S, device_s,
            window, auth_cpu, replies > 0 ? auth_cpu * 1e6 / (double)replies : 0.0, auth_hwm);
    char line[1200];
    snprintf(line, sizeof line,
             "{\"benchmark\": \"enroll_rate\", \"store\": \"%s\", \"replicas\": %d, "
             "\"smoke\": %s, \"devices\": %ld, \"window\": %ld, "
             "\"replies\": %ld, \"enrolled\": %ld, \"seconds\": %.3f, \"devices_per_s\": %.0f, "
             "\"authority_cpu_s\": %.3f, \"authority_peak_rss_kb\": %ld, "
             "\"statistic\": \"devices / (last reply - first publish); device step 1 built "
             "before the clock\", \"target\": {\"min_devices_per_s\": %.0f, \"met\": %s}}",
             ba_store_kind(), ba.replicas, smoke ? "true" : "false", n, window, replies, ok,
             elapsed, rate, auth_cpu, auth_hwm, TARGET_PER_S,
             rate >= TARGET_PER_S && ok == n ? "true" : "false");
    printf("%s\n", line);
    if (json != NULL) {
        FILE *f = fopen(json, "w");
        if (f == NULL || fprintf(f, "%s\n", line) < 0 || fclose(f) != 0) {
            fprintf(stderr, "bench_enroll_rate: cannot write %s\n", json);
            return 2;
        }
    }
    return ok == n ? 0 : 1;
}
