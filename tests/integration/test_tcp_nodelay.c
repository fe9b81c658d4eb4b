/*
 * TCP_NODELAY on Paho's sockets (plugin/include/mqe2e/tcp.h, docs/PAHO.md):
 * a plain Paho connection to a real Mosquitto does not have it (the cause of
 * the ~40 ms handshake stalls); the encrypted fronts set it after connect,
 * the async front again after an automatic reconnect; MQE2E_TCP_NODELAY=0
 * turns it off; URIs are parsed as Paho does.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "broker.h"
#include "mqe2e/MQTTAsync.h"
#include "mqe2e/MQTTClient.h"
#include "mqe2e/tcp.h"
#include "testutil.h"

#define WAIT_MS 10000L

/* Sockets of this process connected to 127.0.0.1:port: how many, and how
 * many of them have TCP_NODELAY. */
static void scan(int port, int *total, int *nodelay)
{
    *total = *nodelay = 0;
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        struct stat st;
        if (e->d_name[0] == '.' || fd == dirfd(d) || fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode))
            continue;
        struct sockaddr_in in;
        socklen_t len = sizeof in;
        if (getpeername(fd, (struct sockaddr *)&in, &len) != 0 || in.sin_family != AF_INET ||
            ntohs(in.sin_port) != port)
            continue;
        int on = 0;
        len = sizeof on;
        cr_assert_eq(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &len), 0);
        (*total)++;
        if (on) (*nodelay)++;
    }
    closedir(d);
}

static mqe2e_keystore *make_keystore(const char *id)
{
    mqe2e_storage st;
    mqe2e_keystore *ks = NULL;
    cr_assert_eq(mqe2e_storage_memory(&st), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_create(&ks, st, id, 0), MQE2E_OK);
    return ks;
}

static mqe2e_MQTTClient sync_client(const tb_broker *b, const char *id, mqe2e_keystore *ks,
                                    mqe2e_policy *pol)
{
    mqe2e_MQTTClient c = NULL;
    mqe2e_MQTTClient_securityOptions so = mqe2e_MQTTClient_securityOptions_initializer;
    cr_assert_eq(mqe2e_MQTTClient_create(&c, b->uri, id, MQTTCLIENT_PERSISTENCE_NONE, NULL),
                 MQTTCLIENT_SUCCESS);
    so.keystore = ks;
    so.policy = pol;
    cr_assert_eq(mqe2e_MQTTClient_setSecurity(c, &so), MQTTCLIENT_SUCCESS);
    MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer;
    co.cleansession = 1;
    cr_assert_eq(mqe2e_MQTTClient_connect(c, &co), MQTTCLIENT_SUCCESS);
    return c;
}

Test(tcp_nodelay, uri_ports)
{
    cr_assert_eq(mqe2e_tcp_uri_port("tcp://127.0.0.1:1884"), 1884);
    cr_assert_eq(mqe2e_tcp_uri_port("tcp://broker.example"), 1883);
    cr_assert_eq(mqe2e_tcp_uri_port("mqtt://h"), 1883);
    cr_assert_eq(mqe2e_tcp_uri_port("ssl://h"), 8883);
    cr_assert_eq(mqe2e_tcp_uri_port("MQTTS://h:9000"), 9000);
    cr_assert_eq(mqe2e_tcp_uri_port("ws://h/mqtt"), 80);
    cr_assert_eq(mqe2e_tcp_uri_port("wss://h:8443/mqtt"), 8443);
    cr_assert_eq(mqe2e_tcp_uri_port("[::1]:1885"), 1885);
    cr_assert_eq(mqe2e_tcp_uri_port("tcp://[::1]"), 1883);
    cr_assert_eq(mqe2e_tcp_uri_port("h:7"), 7);
    cr_assert_eq(mqe2e_tcp_uri_port(NULL), -1);
    cr_assert_eq(mqe2e_tcp_uri_port("gopher://h"), -1);
    cr_assert_eq(mqe2e_tcp_uri_port("tcp://h:0"), -1);
    cr_assert_eq(mqe2e_tcp_uri_port("tcp://h:65536"), -1);
    cr_assert_eq(mqe2e_tcp_uri_port("tcp://h:12x"), -1);
    cr_assert_eq(mqe2e_tcp_uri_port("tcp://:1883"), -1);
    cr_assert_eq(mqe2e_tcp_uri_port("tcp://[::1"), -1);
    cr_assert_eq(mqe2e_tcp_nodelay_uri("gopher://h"), -1);
}

/* Plain Paho leaves Nagle on (the stall's cause); the sync front's connect
 * turns it off on its own socket. */
Test(tcp_nodelay, sync_front_sets_it)
{
    tb_broker b = {0};
    cr_assert_eq(tb_broker_start(&b), 0);
    int total, nodelay;

    MQTTClient plain = NULL;
    MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer;
    cr_assert_eq(MQTTClient_create(&plain, b.uri, "plain", MQTTCLIENT_PERSISTENCE_NONE, NULL),
                 MQTTCLIENT_SUCCESS);
    cr_assert_eq(MQTTClient_connect(plain, &co), MQTTCLIENT_SUCCESS);
    scan(b.port, &total, &nodelay);
    cr_assert_eq(total, 1);
    cr_assert_eq(nodelay, 0, "Paho itself sets TCP_NODELAY now: docs/PAHO.md is stale");
    MQTTClient_disconnect(plain, 0);
    MQTTClient_destroy(&plain);

    mqe2e_keystore *ks = make_keystore("nd-sync");
    mqe2e_policy *pol = NULL;
    cr_assert_eq(mqe2e_policy_new(&pol), MQE2E_OK);
    mqe2e_MQTTClient c = sync_client(&b, "nd-sync", ks, pol);
    scan(b.port, &total, &nodelay);
    cr_assert_eq(total, 1);
    cr_assert_eq(nodelay, 1);
    mqe2e_MQTTClient_disconnect(c, 0);
    mqe2e_MQTTClient_destroy(&c);
    mqe2e_policy_free(pol);
    mqe2e_keystore_close(ks);
    tb_broker_stop(&b);
}

Test(tcp_nodelay, env_turns_it_off)
{
    tb_broker b = {0};
    cr_assert_eq(tb_broker_start(&b), 0);
    cr_assert_eq(setenv("MQE2E_TCP_NODELAY", "0", 1), 0);
    mqe2e_keystore *ks = make_keystore("nd-off");
    mqe2e_policy *pol = NULL;
    cr_assert_eq(mqe2e_policy_new(&pol), MQE2E_OK);
    mqe2e_MQTTClient c = sync_client(&b, "nd-off", ks, pol);
    int total, nodelay;
    scan(b.port, &total, &nodelay);
    cr_assert_eq(total, 1);
    cr_assert_eq(nodelay, 0);
    cr_assert_eq(mqe2e_tcp_nodelay_uri(b.uri), 0);
    cr_assert_eq(unsetenv("MQE2E_TCP_NODELAY"), 0);
    cr_assert_eq(mqe2e_tcp_nodelay_uri(b.uri), 1);
    scan(b.port, &total, &nodelay);
    cr_assert_eq(nodelay, 1);
    mqe2e_MQTTClient_disconnect(c, 0);
    mqe2e_MQTTClient_destroy(&c);
    mqe2e_policy_free(pol);
    mqe2e_keystore_close(ks);
    tb_broker_stop(&b);
}

static atomic_int async_connects;

static void on_connected(void *ctx, char *cause)
{
    (void)ctx;
    (void)cause;
    atomic_fetch_add(&async_connects, 1);
}

/* Wait until the async front has connected n times and its socket has the
 * option (the front sets it in its connected callback, which runs before
 * the application's). */
static int wait_async(const tb_broker *b, int n)
{
    long deadline = tu_now_ms() + WAIT_MS;
    while (tu_now_ms() < deadline) {
        int total, nodelay;
        if (atomic_load(&async_connects) >= n) {
            scan(b->port, &total, &nodelay);
            if (total == 1 && nodelay == 1) return 1;
        }
        struct timespec ts = {0, 5L * 1000L * 1000L};
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* The async front sets it on every new connection, automatic reconnects too. */
Test(tcp_nodelay, async_front_sets_it_after_reconnect)
{
    tb_broker b = {0};
    cr_assert_eq(tb_broker_start(&b), 0);
    mqe2e_keystore *ks = make_keystore("nd-async");
    mqe2e_policy *pol = NULL;
    cr_assert_eq(mqe2e_policy_new(&pol), MQE2E_OK);
    mqe2e_MQTTAsync c = NULL;
    cr_assert_eq(mqe2e_MQTTAsync_create(&c, b.uri, "nd-async", MQTTCLIENT_PERSISTENCE_NONE, NULL),
                 MQTTASYNC_SUCCESS);
    mqe2e_MQTTAsync_securityOptions so = mqe2e_MQTTAsync_securityOptions_initializer;
    so.keystore = ks;
    so.policy = pol;
    cr_assert_eq(mqe2e_MQTTAsync_setSecurity(c, &so), MQTTASYNC_SUCCESS);
    cr_assert_eq(mqe2e_MQTTAsync_setConnected(c, NULL, on_connected), MQTTASYNC_SUCCESS);
    MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
    co.cleansession = 1;
    co.automaticReconnect = 1;
    co.minRetryInterval = 1;
    co.maxRetryInterval = 1;
    cr_assert_eq(mqe2e_MQTTAsync_connect(c, &co), MQTTASYNC_SUCCESS);
    cr_assert(wait_async(&b, 1), "first connection without TCP_NODELAY");
    cr_assert_eq(tb_broker_restart(&b, SIGKILL), 0);
    cr_assert(wait_async(&b, 2), "reconnected socket without TCP_NODELAY");
    mqe2e_MQTTAsync_destroy(&c);
    mqe2e_policy_free(pol);
    mqe2e_keystore_close(ks);
    tb_broker_stop(&b);
}
