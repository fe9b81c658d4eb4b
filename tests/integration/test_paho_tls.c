/*
 * Both fronts over TLS with broker login: a real Mosquitto whose only
 * listener is TLS (a throwaway CA and server certificate made here with
 * openssl), allow_anonymous false and a mosquitto_passwd file. Paho's SSL
 * options and user name/password pass through the fronts unchanged; a wrong
 * password and a wrong CA fail the way Paho reports them.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker.h"
#include "mqe2e/MQTTAsync.h"
#include "mqe2e/MQTTClient.h"
#include "testutil.h"

static char *dir;
static char ks_path[512], ca[512], other_ca[512], uri[128];
static char conf[4096];
static tb_broker broker;

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    cr_assert_eq(system(cmd), 0, "failed: %s", cmd);
}

static void setup(void)
{
    cr_assert_eq(mqe2e_init(), MQE2E_OK);
    dir = tu_tempdir();
    cr_assert_not_null(dir);
    const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    sh("cd %s && openssl req -x509 %s -days 2 -subj '/CN=test CA' -keyout ca.key -out ca.pem "
       ">/dev/null 2>&1",
       dir, ec);
    sh("cd %s && openssl req -x509 %s -days 2 -subj '/CN=other CA' -keyout o.key -out other.pem "
       ">/dev/null 2>&1",
       dir, ec);
    sh("cd %s && openssl req %s -subj '/CN=localhost' -keyout server.key -out server.csr "
       ">/dev/null 2>&1 && printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' >ext && "
       "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
       "-extfile ext -out server.pem >/dev/null 2>&1 && chmod 644 server.key server.pem ca.pem",
       dir, ec);
    sh("cd %s && : >passwd && mosquitto_passwd -b passwd device 'device secret' && chmod 644 passwd",
       dir);
    sh("chmod 755 %s", dir);
    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    snprintf(other_ca, sizeof other_ca, "%s/other.pem", dir);
    snprintf(conf, sizeof conf,
             "allow_anonymous false\npassword_file %s/passwd\ncafile %s/ca.pem\n"
             "certfile %s/server.pem\nkeyfile %s/server.key\n",
             dir, dir, dir, dir);
    memset(&broker, 0, sizeof broker);
    broker.extra_conf = conf;
    cr_assert_eq(tb_broker_start(&broker), 0, "mosquitto did not start");
    snprintf(uri, sizeof uri, "ssl://localhost:%d", broker.port);

    snprintf(ks_path, sizeof ks_path, "%s/client.ks", dir);
    mqe2e_storage st;
    mqe2e_keystore *ks = NULL;
    cr_assert_eq(mqe2e_storage_file_passphrase(&st, ks_path, "pass", 4), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_create(&ks, st, "tls-test", 0), MQE2E_OK);
    uint8_t secret[32];
    memset(secret, 9, sizeof secret);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, "demo", "demo/#", 1, secret, 0), MQE2E_OK);
    mqe2e_keystore_close(ks);
    setenv("MQE2E_TLS_TEST_PASS", "pass", 1);
}

static void teardown(void)
{
    tb_broker_stop(&broker);
    tu_rmtree(dir);
    free(dir);
}

TestSuite(paho_tls, .init = setup, .fini = teardown, .timeout = 60);

static mqe2e_MQTTClient sync_client(void)
{
    mqe2e_MQTTClient c = NULL;
    cr_assert_eq(mqe2e_MQTTClient_create(&c, uri, "tls-test", MQTTCLIENT_PERSISTENCE_NONE, NULL),
                 MQTTCLIENT_SUCCESS);
    mqe2e_MQTTClient_securityOptions so = mqe2e_MQTTClient_securityOptions_initializer;
    so.keystorePath = ks_path;
    so.passphraseEnv = "MQE2E_TLS_TEST_PASS";
    cr_assert_eq(mqe2e_MQTTClient_setSecurity(c, &so), MQTTCLIENT_SUCCESS);
    return c;
}

static int sync_connect(mqe2e_MQTTClient c, const char *cafile, const char *password)
{
    MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer;
    MQTTClient_SSLOptions ssl = MQTTClient_SSLOptions_initializer;
    ssl.trustStore = cafile;
    co.ssl = &ssl;
    co.username = "device";
    co.password = password;
    co.cleansession = 1;
    co.connectTimeout = 10;
    return mqe2e_MQTTClient_connect(c, &co);
}

Test(paho_tls, sync_round_trip_over_tls_with_login)
{
    mqe2e_MQTTClient c = sync_client();
    cr_assert_eq(sync_connect(c, ca, "device secret"), MQTTCLIENT_SUCCESS);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(c, "demo/#", 1), MQTTCLIENT_SUCCESS);
    MQTTClient_deliveryToken dt = 0;
    cr_assert_eq(mqe2e_MQTTClient_publish(c, "demo/t", 5, "hello", 1, 0, &dt), MQTTCLIENT_SUCCESS);
    cr_assert_eq(mqe2e_MQTTClient_waitForCompletion(c, dt, 10000), MQTTCLIENT_SUCCESS);
    char *topic = NULL;
    int topic_len = 0;
    MQTTClient_message *m = NULL;
    for (int i = 0; i < 100 && m == NULL; i++)
        (void)mqe2e_MQTTClient_receive(c, &topic, &topic_len, &m, 100);
    cr_assert_not_null(m, "nothing came back over TLS");
    cr_assert_eq(m->payloadlen, 5);
    cr_assert(memcmp(m->payload, "hello", 5) == 0);
    mqe2e_MQTTClient_freeMessage(&m);
    mqe2e_MQTTClient_free(topic);
    cr_assert_eq(mqe2e_MQTTClient_disconnect(c, 1000), MQTTCLIENT_SUCCESS);
    mqe2e_MQTTClient_destroy(&c);
}

Test(paho_tls, wrong_password_and_wrong_ca)
{
    mqe2e_MQTTClient c = sync_client();
    int rc = sync_connect(c, ca, "not the password");
    /* Mosquitto answers a bad login with CONNACK 5 (not authorized). */
    cr_assert(rc == 4 || rc == 5, "rc %d", rc);
    cr_assert_not_null(strstr(mqe2e_MQTTClient_strerror(rc), "Connection refused"));
    cr_assert_eq(sync_connect(c, other_ca, "device secret"), MQTTCLIENT_FAILURE);
    cr_assert_eq(mqe2e_MQTTClient_isConnected(c), 0);
    mqe2e_MQTTClient_destroy(&c);
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int async_result; /* 0 pending, 1 ok, -1 failed */

static void on_ok(void *ctx, MQTTAsync_successData *d)
{
    (void)ctx;
    (void)d;
    pthread_mutex_lock(&mu);
    async_result = 1;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

static void on_fail(void *ctx, MQTTAsync_failureData *d)
{
    (void)ctx;
    (void)d;
    pthread_mutex_lock(&mu);
    async_result = -1;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

static int async_wait(void)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 20;
    pthread_mutex_lock(&mu);
    while (async_result == 0)
        if (pthread_cond_timedwait(&cv, &mu, &until) != 0) break;
    int r = async_result;
    async_result = 0;
    pthread_mutex_unlock(&mu);
    return r;
}

Test(paho_tls, async_connects_over_tls_with_login)
{
    mqe2e_MQTTAsync a = NULL;
    cr_assert_eq(mqe2e_MQTTAsync_create(&a, uri, "tls-async", MQTTCLIENT_PERSISTENCE_NONE, NULL),
                 MQTTASYNC_SUCCESS);
    mqe2e_MQTTAsync_securityOptions so = mqe2e_MQTTAsync_securityOptions_initializer;
    so.keystorePath = ks_path;
    so.passphraseEnv = "MQE2E_TLS_TEST_PASS";
    cr_assert_eq(mqe2e_MQTTAsync_setSecurity(a, &so), MQTTASYNC_SUCCESS);
    MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
    MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
    ssl.trustStore = ca;
    co.ssl = &ssl;
    co.username = "device";
    co.password = "not the password";
    co.onSuccess = on_ok;
    co.onFailure = on_fail;
    co.connectTimeout = 10;
    cr_assert_eq(mqe2e_MQTTAsync_connect(a, &co), MQTTASYNC_SUCCESS);
    cr_assert_eq(async_wait(), -1, "a wrong password must fail");
    co.password = "device secret";
    cr_assert_eq(mqe2e_MQTTAsync_connect(a, &co), MQTTASYNC_SUCCESS);
    cr_assert_eq(async_wait(), 1, "TLS + login connect failed");
    cr_assert_eq(mqe2e_MQTTAsync_isConnected(a), 1);
    mqe2e_MQTTAsync_destroy(&a);
}
