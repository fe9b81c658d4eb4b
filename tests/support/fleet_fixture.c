/* The fleet fixture (fleet_fixture.h). */
#include "fleet_fixture.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "spy.h"

void af_fleet_setup(af_fixture *f, const char *auth_id)
{
    char out[4096];

    af_setup(f, auth_id);
    /* The spy is on '#' before anything happens. */
    ts_spy_start(tb_broker_uri(&f->broker));
    af_authority_start(f, NULL);
    cr_assert_eq(af_op_sh(f, out, sizeof out, "group create --group fleet --topic 'fleet/#'"), 0,
                 "%s", out);
}

void af_fleet_teardown(af_fixture *f)
{
    af_authority_kill(f, SIGTERM);
    ts_spy_stop();
    af_teardown(f);
}

void af_fleet_ticket(af_fixture *f, char *ticket, size_t cap, const char *id, const char *extra)
{
    char args[512];

    snprintf(args, sizeof args, "--id %s --group fleet --grant 'fleet/#:pubsub' %s", id,
             extra != NULL ? extra : "");
    af_ticket(f, ticket, cap, args);
}

void af_fleet_enroll(af_fixture *f, const char *id)
{
    af_enroll_in(f, id, "fleet", "fleet/#:pubsub");
}

mqe2e_control_counters af_ctl_counters(mqe2e_MQTTClient c)
{
    mqe2e_control_counters k;
    cr_assert_eq(mqe2e_MQTTClient_getControlCounters(c, &k), MQTTCLIENT_SUCCESS);
    return k;
}

mqe2e_MQTTClient af_fleet_client(af_fixture *f, const char *id, mqe2e_keystore *ks,
                                 const mqe2e_policy *policy, inbox *ib,
                                 mqe2e_MQTTClient_log *on_log)
{
    mqe2e_MQTTClient c = NULL;
    mqe2e_MQTTClient_securityOptions so = mqe2e_MQTTClient_securityOptions_initializer;
    MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer;
    cr_assert_eq(mqe2e_MQTTClient_create(&c, tb_broker_uri(&f->broker), id,
                                         MQTTCLIENT_PERSISTENCE_NONE, NULL),
                 MQTTCLIENT_SUCCESS);
    so.keystore = ks;
    so.policy = policy;
    so.onLog = on_log;
    so.logLevel = MQE2E_LOG_DEBUG;
    memset(ib, 0, sizeof *ib);
    pthread_mutex_init(&ib->m, NULL);
    cr_assert_eq(mqe2e_MQTTClient_setSecurity(c, &so), MQTTCLIENT_SUCCESS);
    cr_assert_eq(mqe2e_MQTTClient_setCallbacks(c, ib, NULL, inbox_on_message, NULL),
                 MQTTCLIENT_SUCCESS);
    co.keepAliveInterval = 20;
    co.cleansession = 1;
    cr_assert_eq(mqe2e_MQTTClient_connect(c, &co), MQTTCLIENT_SUCCESS);
    return c;
}

void af_publish_text(mqe2e_MQTTClient c, const char *topic, const char *text)
{
    MQTTClient_deliveryToken dt = 0;
    cr_assert_eq(mqe2e_MQTTClient_publish(c, topic, (int)strlen(text), text, 1, 0, &dt),
                 MQTTCLIENT_SUCCESS);
    if (dt != 0) cr_assert_eq(mqe2e_MQTTClient_waitForCompletion(c, dt, 5000), MQTTCLIENT_SUCCESS);
}
