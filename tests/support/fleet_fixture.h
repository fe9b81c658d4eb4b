/*
 * The "fleet" world of the end-to-end forgery and channel-flood suites,
 * over authority_fixture: one group "fleet" on fleet/#, a spy on '#', and
 * encrypted clients of the plugin's synchronous front. Integration tests
 * only (links the plugin, spy.c and inbox.c).
 */
#ifndef MQE2E_TESTS_FLEET_FIXTURE_H
#define MQE2E_TESTS_FLEET_FIXTURE_H

#include <stdint.h>

#include "authority_fixture.h"
#include "inbox.h"
#include "mqe2e/MQTTClient.h"

/* The "fleet" world of the forgery and channel-flood suites: af_setup(), a
 * spy on '#' (ts_spy_start) before anything else happens, the authority
 * running and group "fleet" on fleet/#. Set f->broker.extra_conf first if
 * needed. */
void af_fleet_setup(af_fixture *f, const char *auth_id);
/* Undo af_fleet_setup(): authority stopped (SIGTERM), spy stopped, af_teardown(). */
void af_fleet_teardown(af_fixture *f);
/* A ticket (into @p ticket, @p cap bytes) for @p id in group fleet with
 * grant fleet/#:pubsub, plus the token-create words @p extra (may be NULL). */
void af_fleet_ticket(af_fixture *f, char *ticket, size_t cap, const char *id, const char *extra);
/* af_enroll_in() for group fleet with grant fleet/#:pubsub. */
void af_fleet_enroll(af_fixture *f, const char *id);

/* The client's control-plane counters (asserts the call succeeds). */
mqe2e_control_counters af_ctl_counters(mqe2e_MQTTClient c);

/* Wait (polling every 10 ms, at most @p wait_ms) until the control counter
 * @p field of client @p c reaches @p n; a criterion failure otherwise. */
#define AF_WAIT_CTL(c, field, n, wait_ms)                                                          \
    do {                                                                                           \
        long dl_ = af_now_ms() + (wait_ms);                                                        \
        while (af_ctl_counters(c).field < (uint64_t)(n)) {                                         \
            cr_assert_lt(af_now_ms(), dl_, "timeout waiting for %s >= %d (at %d)", #field,         \
                         (int)(n), (int)af_ctl_counters(c).field);                                 \
            af_sleep_ms(10);                                                                       \
        }                                                                                          \
    } while (0)

/* An encrypted client @p id on the fixture's broker over keystore @p ks
 * (borrowed) and @p policy (borrowed), logging everything to @p on_log,
 * delivering into @p ib (initialised here), connected with a clean session. */
mqe2e_MQTTClient af_fleet_client(af_fixture *f, const char *id, mqe2e_keystore *ks,
                                 const mqe2e_policy *policy, inbox *ib,
                                 mqe2e_MQTTClient_log *on_log);

/* Publish @p text at QoS 1 and wait (5 s) for its completion. */
void af_publish_text(mqe2e_MQTTClient c, const char *topic, const char *text);

#endif
