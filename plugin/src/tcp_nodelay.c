/*
 * TCP_NODELAY on Paho's sockets, found by scanning the process's descriptors
 * (plugin/include/mqe2e/tcp.h says why; docs/PAHO.md, "TCP_NODELAY").
 */
/* NOLINTNEXTLINE(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp): glibc feature macro */
#define _DEFAULT_SOURCE /* strncasecmp, dirfd */
#include <arpa/inet.h>
#include <dirent.h>
#include <pthread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "internal_plugin.h"
#include "mqe2e/tcp.h"

/* The broker as the URI names it: its port, and its address when numeric. */
typedef struct broker_addr {
    int port;
    int family; /* AF_INET, AF_INET6, or AF_UNSPEC for a host name */
    struct in_addr a4;
    struct in6_addr a6;
} broker_addr;

static int default_port(const char *scheme, size_t len)
{
    static const struct {
        const char *name;
        int port;
    } known[] = {{"tcp", 1883}, {"mqtt", 1883}, {"ssl", 8883}, {"mqtts", 8883},
                 {"ws", 80},    {"wss", 443}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strlen(known[i].name) == len && strncasecmp(scheme, known[i].name, len) == 0)
            return known[i].port;
    }
    return -1;
}

static int parse_uri(broker_addr *b, const char *uri)
{
    char host[256];
    memset(b, 0, sizeof *b);
    b->family = AF_UNSPEC;
    if (uri == NULL) return -1;
    const char *p = strstr(uri, "://");
    b->port = p == NULL ? 1883 : default_port(uri, (size_t)(p - uri));
    if (b->port < 0) return -1;
    p = p == NULL ? uri : p + 3;
    const char *host_end;
    const char *rest;
    if (*p == '[') {
        host_end = strchr(p, ']');
        if (host_end == NULL) return -1;
        p++;
        rest = host_end + 1;
    } else {
        host_end = p + strcspn(p, ":/");
        rest = host_end;
    }
    size_t hl = (size_t)(host_end - p);
    if (hl == 0 || hl >= sizeof host) return -1;
    memcpy(host, p, hl);
    host[hl] = '\0';
    if (*rest == ':') {
        char *end = NULL;
        long port = strtol(rest + 1, &end, 10);
        if (end == rest + 1 || port < 1 || port > 65535 || (*end != '\0' && *end != '/'))
            return -1;
        b->port = (int)port;
    } else if (*rest != '\0' && *rest != '/') {
        return -1;
    }
    if (inet_pton(AF_INET, host, &b->a4) == 1) b->family = AF_INET;
    else if (inet_pton(AF_INET6, host, &b->a6) == 1) b->family = AF_INET6;
    return 0;
}

int mqe2e_tcp_uri_port(const char *uri)
{
    broker_addr b;
    return parse_uri(&b, uri) == 0 ? b.port : -1;
}

static bool peer_matches(const broker_addr *b, const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        if (ntohs(in->sin_port) != b->port) return false;
        return b->family == AF_UNSPEC ||
               (b->family == AF_INET && in->sin_addr.s_addr == b->a4.s_addr);
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        if (ntohs(in6->sin6_port) != b->port) return false;
        if (b->family == AF_UNSPEC) return true;
        if (b->family == AF_INET6) return memcmp(&in6->sin6_addr, &b->a6, sizeof b->a6) == 0;
        /* An IPv4 broker reached through a dual-stack socket. */
        static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        return memcmp(in6->sin6_addr.s6_addr, v4mapped, 12) == 0 &&
               memcmp(in6->sin6_addr.s6_addr + 12, &b->a4, 4) == 0;
    }
    return false;
}

/* 1 if TCP_NODELAY was set now, 0 if the descriptor is not one of ours.
 * Cheapest test first: a gateway with many sessions scans many sockets that
 * already have the option (two system calls each). */
static int nodelay_fd(const broker_addr *b, int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return 0;
    int on = 0;
    socklen_t len = sizeof on;
    /* Fails for anything but a TCP socket. */
    if (getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &len) != 0 || on) return 0;
    int type = 0;
    len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) return 0;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    len = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0 || !peer_matches(b, &ss)) return 0;
    on = 1;
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) == 0 ? 1 : 0;
}

/* One /proc/self/fd handle, opened at the first scan and kept (close-on-exec)
 * while any front exists: a front's scan (from Paho's thread, for the async
 * front) then opens no descriptor of its own, so the process's descriptor
 * count does not flicker while fronts connect. Closed with the last front;
 * without fronts (the CLI, the authority) each call opens and closes it. */
static pthread_mutex_t scan_lock = PTHREAD_MUTEX_INITIALIZER;
static DIR *scan_dir;
static unsigned long fronts;

int mqe2e_tcp_nodelay_uri(const char *uri)
{
    broker_addr b;
    if (parse_uri(&b, uri) != 0) return -1;
    const char *env = getenv("MQE2E_TCP_NODELAY");
    if (env != NULL && strcmp(env, "0") == 0) return 0;
    int changed = 0;
    (void)pthread_mutex_lock(&scan_lock);
    if (scan_dir == NULL) scan_dir = opendir("/proc/self/fd");
    if (scan_dir != NULL) {
        rewinddir(scan_dir);
        int self = dirfd(scan_dir);
        struct dirent *e;
        /* readdir is safe here: scan_dir is used only under scan_lock
         * (readdir_r is deprecated in glibc). */
        // cppcheck-suppress readdirCalled
        while ((e = readdir(scan_dir)) != NULL) {
            char *end = NULL;
            long fd = strtol(e->d_name, &end, 10);
            if (end == e->d_name || *end != '\0' || fd < 0 || fd == self) continue;
            changed += nodelay_fd(&b, (int)fd);
        }
        if (fronts == 0) {
            closedir(scan_dir);
            scan_dir = NULL;
        }
    }
    (void)pthread_mutex_unlock(&scan_lock);
    return changed;
}

/* ------------------------------------------------ the fronts' bookkeeping */

int mqe2e__nodelay_init(mqe2e__nodelay *n, const char *create_uri)
{
    memset(n, 0, sizeof *n);
    if (create_uri != NULL) {
        n->create_uri = strdup(create_uri);
        if (n->create_uri == NULL) return -1;
    }
    (void)pthread_mutex_lock(&scan_lock);
    fronts++;
    (void)pthread_mutex_unlock(&scan_lock);
    n->counted = 1;
    return 0;
}

static void free_list(mqe2e__nodelay *n)
{
    for (int i = 0; i < n->count; i++) free(n->uris[i]);
    free(n->uris);
    n->uris = NULL;
    n->count = 0;
}

int mqe2e__nodelay_set_uris(mqe2e__nodelay *n, char *const *uris, int count)
{
    free_list(n);
    if (uris == NULL || count <= 0) return 0;
    n->uris = calloc((size_t)count, sizeof *n->uris);
    if (n->uris == NULL) return -1;
    for (int i = 0; i < count; i++) {
        if (uris[i] == NULL) continue;
        n->uris[n->count] = strdup(uris[i]);
        if (n->uris[n->count] == NULL) return -1;
        n->count++;
    }
    return 0;
}

void mqe2e__nodelay_apply(const mqe2e__nodelay *n)
{
    if (n->count == 0) {
        (void)mqe2e_tcp_nodelay_uri(n->create_uri);
        return;
    }
    for (int i = 0; i < n->count; i++) (void)mqe2e_tcp_nodelay_uri(n->uris[i]);
}

void mqe2e__nodelay_free(mqe2e__nodelay *n)
{
    free_list(n);
    free(n->create_uri);
    n->create_uri = NULL;
    if (!n->counted) return;
    n->counted = 0;
    (void)pthread_mutex_lock(&scan_lock);
    if (--fronts == 0 && scan_dir != NULL) {
        closedir(scan_dir);
        scan_dir = NULL;
    }
    (void)pthread_mutex_unlock(&scan_lock);
}
