/*
 * Child processes and loopback ports for the benchmarks that start a
 * broker and an authority (bench_authority.c, bench_handshake.c). Header
 * only.
 */
#ifndef MQE2E_BENCH_PROC_H
#define MQE2E_BENCH_PROC_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Sleep @p ms milliseconds, resumed after signals. */
static inline void bp_sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

/* SIGTERM the child *pid (nothing when *pid <= 0), wait up to 100 polls of
 * @p poll_ms for it, then SIGKILL and reap it; *pid becomes @p none. */
static inline void bp_stop_child(pid_t *pid, long poll_ms, pid_t none)
{
    if (*pid <= 0) return;
    kill(*pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        if (waitpid(*pid, NULL, WNOHANG) == *pid) {
            *pid = none;
            return;
        }
        bp_sleep_ms(poll_ms);
    }
    kill(*pid, SIGKILL);
    waitpid(*pid, NULL, 0);
    *pid = none;
}

/* A TCP port on 127.0.0.1 free a moment ago, or -1. */
static inline int bp_free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
    if (fd < 0) return -1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* 1 when something accepts connections on 127.0.0.1:@p port. */
static inline int bp_port_open(int port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;
    if (fd < 0) return 0;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

#endif
