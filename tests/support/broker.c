#include "broker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static void tb_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Bind port 0 and read what the kernel picked; the tiny race with other
 * processes grabbing it before mosquitto does is acceptable in tests. */
static int tb_free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port = -1;

    if (fd < 0) return -1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0) {
        port = ntohs(a.sin_port);
    }
    close(fd);
    return port;
}

static int tb_can_connect(int port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int ok;

    if (fd < 0) return 0;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static void tb_dump_log(const tb_broker *b)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/mosquitto.log", b->dir);
    char *log = tu_read_file(path, NULL);
    if (log != NULL) {
        fprintf(stderr, "--- mosquitto log ---\n%s--- end ---\n", log);
        free(log);
    }
}

/* Fork and exec mosquitto on the config in b->dir, wait until it accepts. */
static int tb_spawn(tb_broker *b, int append_log)
{
    char conf[4200];
    char logp[4200];

    snprintf(conf, sizeof conf, "%s/mosquitto.conf", b->dir);
    snprintf(logp, sizeof logp, "%s/mosquitto.log", b->dir);
    fflush(NULL);
    b->pid = fork();
    if (b->pid < 0) {
        fprintf(stderr, "broker: fork failed\n");
        return -1;
    }
    if (b->pid == 0) {
        int fd = open(logp, O_WRONLY | O_CREAT | (append_log ? O_APPEND : O_TRUNC), 0600);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        execl(TB_MOSQUITTO_PATH, "mosquitto", "-c", conf, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100; i++) {
        int status;
        if (waitpid(b->pid, &status, WNOHANG) == b->pid) {
            fprintf(stderr, "broker: mosquitto exited early (status %d)\n", status);
            b->pid = -1;
            tb_dump_log(b);
            return -1;
        }
        if (tb_can_connect(b->port)) {
            printf("broker: mosquitto pid %d on %s\n", (int)b->pid, b->uri);
            fflush(stdout);
            return 0;
        }
        tb_sleep_ms(50);
    }
    fprintf(stderr, "broker: mosquitto did not accept connections within 5 s\n");
    tb_dump_log(b);
    return -1;
}

int tb_broker_start(tb_broker *b)
{
    char conf[4200];
    FILE *f;

    b->pid = -1;
    b->dir = tu_tempdir();
    b->port = tb_free_port();
    if (b->port <= 0) {
        fprintf(stderr, "broker: no free port\n");
        return -1;
    }
    snprintf(b->uri, sizeof b->uri, "tcp://127.0.0.1:%d", b->port);
    snprintf(conf, sizeof conf, "%s/mosquitto.conf", b->dir);
    f = fopen(conf, "w");
    if (f == NULL) {
        fprintf(stderr, "broker: cannot write %s\n", conf);
        return -1;
    }
    fprintf(f, "listener %d 127.0.0.1\nallow_anonymous true\n", b->port);
    if (b->persistent) {
        /* Run as root, mosquitto would switch to its own user and could not
         * write into this private temp dir: keep the current user. */
        if (geteuid() == 0) fprintf(f, "user root\n");
        fprintf(f, "persistence true\npersistence_location %s/\npersistence_file mosquitto.db\n",
                b->dir);
    } else {
        fprintf(f, "persistence false\n");
    }
    fprintf(f, "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n");
    if (b->extra_conf != NULL) fprintf(f, "%s\n", b->extra_conf);
    fclose(f);
    return tb_spawn(b, 0);
}

/* Wait up to ~3 s for the broker to exit, then SIGKILL it. */
static void tb_reap(tb_broker *b)
{
    int status;
    int done = 0;
    for (int i = 0; i < 100 && !done; i++) {
        if (waitpid(b->pid, &status, WNOHANG) == b->pid) {
            done = 1;
        } else {
            tb_sleep_ms(30);
        }
    }
    if (!done) {
        kill(b->pid, SIGKILL);
        waitpid(b->pid, &status, 0);
    }
    b->pid = -1;
}

int tb_broker_restart(tb_broker *b, int sig)
{
    if (b->pid <= 0 || b->dir == NULL) {
        fprintf(stderr, "broker: restart of a broker that is not running\n");
        return -1;
    }
    kill(b->pid, sig);
    tb_reap(b);
    printf("broker: mosquitto stopped with signal %d, restarting on port %d\n", sig, b->port);
    fflush(stdout);
    /* The kernel may take a moment to release the listening port. */
    for (int i = 0; i < 40; i++) {
        if (tb_spawn(b, 1) == 0) return 0;
        tb_sleep_ms(100);
    }
    return -1;
}

void tb_broker_stop(tb_broker *b)
{
    if (b->pid > 0) {
        kill(b->pid, SIGTERM);
        tb_reap(b);
    }
    if (b->dir != NULL) {
        tu_rmtree(b->dir);
        free(b->dir);
        b->dir = NULL;
    }
}

const char *tb_broker_uri(const tb_broker *b)
{
    return b->uri;
}
