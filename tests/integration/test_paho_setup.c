/*
 * The one-call migration (setSecurity with a keystore path and a passphrase
 * source), the lock it holds until destroy, the refusals with their
 * strerror text, the sealed last will and clearRetained's argument checks.
 * None of these needs a broker: setSecurity and the will check happen before
 * Paho connects.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mqe2e/MQTTAsync.h"
#include "mqe2e/MQTTClient.h"
#include "testutil.h"

static char *dir;
static char ks_path[512];

static void make_keystore(const char *pass)
{
    mqe2e_storage st;
    mqe2e_keystore *ks = NULL;
    cr_assert_eq(mqe2e_storage_file_passphrase(&st, ks_path, pass, strlen(pass)), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_create(&ks, st, "setup-test", 0), MQE2E_OK);
    uint8_t secret[32];
    memset(secret, 7, sizeof secret);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(ks, "demo", "demo/#", 1, secret, 0), MQE2E_OK);
    mqe2e_keystore_close(ks);
}

static void setup(void)
{
    cr_assert_eq(mqe2e_init(), MQE2E_OK);
    dir = tu_tempdir();
    cr_assert_not_null(dir);
    snprintf(ks_path, sizeof ks_path, "%s/client.ks", dir);
    make_keystore("right passphrase");
    setenv("MQE2E_TEST_PASS", "right passphrase", 1);
}

static void teardown(void)
{
    unsetenv("MQE2E_TEST_PASS");
    tu_rmtree(dir);
    free(dir);
}

static mqe2e_MQTTClient new_client(void)
{
    mqe2e_MQTTClient c = NULL;
    cr_assert_eq(mqe2e_MQTTClient_create(&c, "tcp://127.0.0.1:1", "setup-test",
                                         MQTTCLIENT_PERSISTENCE_NONE, NULL),
                 MQTTCLIENT_SUCCESS);
    return c;
}

static int one_call(mqe2e_MQTTClient c, const char *env, const char *file)
{
    mqe2e_MQTTClient_securityOptions so = mqe2e_MQTTClient_securityOptions_initializer;
    so.keystorePath = ks_path;
    so.passphraseEnv = env;
    so.passphraseFile = file;
    return mqe2e_MQTTClient_setSecurity(c, &so);
}

TestSuite(paho_setup, .init = setup, .fini = teardown);

Test(paho_setup, one_call_opens_locks_and_destroy_releases)
{
    mqe2e_MQTTClient a = new_client(), b = new_client();
    cr_assert_eq(one_call(a, "MQE2E_TEST_PASS", NULL), MQTTCLIENT_SUCCESS);
    /* The keystore is locked while a lives: a second client is refused. */
    int rc = one_call(b, "MQE2E_TEST_PASS", NULL);
    cr_assert_eq(rc, MQE2E_MQTTCLIENT_ERR(MQE2E_ERR_STATE));
    cr_assert_not_null(strstr(mqe2e_MQTTClient_strerror(rc), "mqe2e: "));
    /* The policy made from the keystore's groups covers demo/#, nothing else. */
    MQTTClient_deliveryToken dt = 0;
    cr_assert_eq(mqe2e_MQTTClient_publish(a, "other/topic", 1, "x", 0, 0, &dt),
                 MQE2E_MQTTCLIENT_NO_POLICY);
    mqe2e_MQTTClient_destroy(&a);
    /* destroy closed the keystore and released the lock. */
    cr_assert_eq(one_call(b, "MQE2E_TEST_PASS", NULL), MQTTCLIENT_SUCCESS);
    mqe2e_MQTTClient_destroy(&b);
}

Test(paho_setup, one_call_async)
{
    mqe2e_MQTTAsync a = NULL;
    cr_assert_eq(mqe2e_MQTTAsync_create(&a, "tcp://127.0.0.1:1", "setup-test",
                                        MQTTCLIENT_PERSISTENCE_NONE, NULL),
                 MQTTASYNC_SUCCESS);
    mqe2e_MQTTAsync_securityOptions so = mqe2e_MQTTAsync_securityOptions_initializer;
    so.keystorePath = ks_path;
    so.passphraseEnv = "MQE2E_TEST_PASS";
    cr_assert_eq(mqe2e_MQTTAsync_setSecurity(a, &so), MQTTASYNC_SUCCESS);
    mqe2e_MQTTAsync_destroy(&a);
    mqe2e_MQTTClient b = new_client();
    cr_assert_eq(one_call(b, "MQE2E_TEST_PASS", NULL), MQTTCLIENT_SUCCESS);
    mqe2e_MQTTClient_destroy(&b);
}

Test(paho_setup, one_call_refusals)
{
    mqe2e_MQTTClient c = new_client();
    setenv("MQE2E_TEST_WRONG", "wrong passphrase", 1);
    cr_assert_eq(one_call(c, "MQE2E_TEST_WRONG", NULL), MQE2E_MQTTCLIENT_ERR(MQE2E_ERR_AUTH));
    unsetenv("MQE2E_TEST_UNSET");
    cr_assert_eq(one_call(c, "MQE2E_TEST_UNSET", NULL), MQE2E_MQTTCLIENT_ERR(MQE2E_ERR_NOT_FOUND));
    char pass_file[600];
    snprintf(pass_file, sizeof pass_file, "%s/pass", dir);
    FILE *f = fopen(pass_file, "w");
    cr_assert_not_null(f);
    fputs("right passphrase\n", f);
    fclose(f);
    chmod(pass_file, 0644);
    cr_assert_eq(one_call(c, NULL, pass_file), MQE2E_MQTTCLIENT_ERR(MQE2E_ERR_POLICY));
    chmod(pass_file, 0600);
    /* A failed attempt holds nothing: the file form now works. */
    cr_assert_eq(one_call(c, NULL, pass_file), MQTTCLIENT_SUCCESS);
    mqe2e_MQTTClient_destroy(&c);
    /* Without a keystore and without a path: Paho's NULL parameter. */
    c = new_client();
    mqe2e_MQTTClient_securityOptions so = mqe2e_MQTTClient_securityOptions_initializer;
    cr_assert_eq(mqe2e_MQTTClient_setSecurity(c, &so), MQTTCLIENT_NULL_PARAMETER);
    mqe2e_MQTTClient_destroy(&c);
    unsetenv("MQE2E_TEST_WRONG");
}

Test(paho_setup, will_without_policy_refuses_connect)
{
    mqe2e_MQTTClient c = new_client();
    cr_assert_eq(one_call(c, "MQE2E_TEST_PASS", NULL), MQTTCLIENT_SUCCESS);
    MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer;
    MQTTClient_willOptions w = MQTTClient_willOptions_initializer;
    w.topicName = "elsewhere/status";
    w.message = "offline";
    co.will = &w;
    /* Refused before any network I/O: the will would go out in clear. */
    cr_assert_eq(mqe2e_MQTTClient_connect(c, &co), MQE2E_MQTTCLIENT_NO_POLICY);
    mqe2e_MQTTClient_destroy(&c);
}

Test(paho_setup, clear_retained_checks)
{
    mqe2e_MQTTClient c = new_client();
    MQTTClient_deliveryToken dt = 0;
    cr_assert_eq(mqe2e_MQTTClient_clearRetained(c, "demo/x", 0, &dt),
                 MQE2E_MQTTCLIENT_NOT_CONFIGURED);
    cr_assert_eq(one_call(c, "MQE2E_TEST_PASS", NULL), MQTTCLIENT_SUCCESS);
    cr_assert_eq(mqe2e_MQTTClient_clearRetained(c, "demo/#", 0, &dt), MQTTCLIENT_BAD_UTF8_STRING);
    cr_assert_eq(mqe2e_MQTTClient_clearRetained(c, NULL, 0, &dt), MQTTCLIENT_NULL_PARAMETER);
    mqe2e_MQTTClient_destroy(&c);
}

Test(paho_setup, every_mqe2e_code_has_strerror_text)
{
    for (int e = -1; e >= MQE2E_ERR_MIN; e--) {
        const char *t = mqe2e_MQTTClient_strerror(MQE2E_MQTTCLIENT_ERR(e));
        cr_assert_not_null(t);
        cr_assert(strncmp(t, "mqe2e: ", 7) == 0, "code %d: '%s'", MQE2E_MQTTCLIENT_ERR(e), t);
        cr_assert_str_eq(mqe2e_MQTTAsync_strerror(MQE2E_MQTTASYNC_ERR(e)), t);
    }
    /* MQTT 3.1.1 CONNACK codes, which Paho's strerror calls "Unknown error code N". */
    cr_assert_str_eq(mqe2e_MQTTClient_strerror(4), "Connection refused: bad user name or password");
    cr_assert_str_eq(mqe2e_MQTTClient_strerror(5), "Connection refused: not authorized");
    cr_assert_str_eq(mqe2e_MQTTAsync_strerror(5), "Connection refused: not authorized");
}
