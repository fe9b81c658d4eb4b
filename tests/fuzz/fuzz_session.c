/*
 * The device session's receive path (mqe2e_session_message_received) on
 * hostile input. Byte 0 picks the topic (the control inbox, the revocations
 * topic, a group topic, a channel topic), byte 1 the flags (bit 0: never
 * hold; bit 1: connect first; bit 2: tick after; bit 3: the group rule
 * binds content type, user property "site" and retain, PROTOCOL.md 2.5.1;
 * bit 4: the message carries such properties, cut from the payload's first
 * bytes; bit 5: it arrived retained), the rest is the payload.
 * The session holds group g1 (epoch 1, the fixed secret of the envelope
 * seeds, filter sensors/#) and pins the fixed authority, so valid seeds reach
 * the AEAD, the hold queue and the control handlers. Whatever comes in: no
 * crash or leak, every DELIVER is no longer than the input and commits at
 * most once, every DROP carries an error code.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "mqe2e/mqe2e.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static mqe2e_keystore *ks;
static mqe2e_policy *pol, *pol_bind;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    mqe2e_storage st;
    mqe2e_authority_pin pin;
    uint8_t sk[64], secret[32];

    (void)argc;
    (void)argv;
    FUZZ_ASSERT(mqe2e_init() == MQE2E_OK);
    FUZZ_ASSERT(mqe2e_storage_memory(&st) == MQE2E_OK);
    FUZZ_ASSERT(mqe2e_keystore_create(&ks, st, "dev-a", 3) == MQE2E_OK);
    fuzz_group_secret(secret);
    FUZZ_ASSERT(mqe2e_keystore_group_add_epoch(ks, FUZZ_GROUP, "sensors/#", 1, secret,
                                               FUZZ_NOW) == MQE2E_OK);
    memset(&pin, 0, sizeof pin);
    strcpy(pin.authority_id, "authority");
    strcpy(pin.control_prefix, "mqe2e");
    fuzz_authority_keys(pin.sign_public, sk);
    sodium_memzero(sk, sizeof sk);
    fuzz_dh_public(pin.dh_public, 1);
    FUZZ_ASSERT(mqe2e_keystore_set_authority(ks, &pin) == MQE2E_OK);
    FUZZ_ASSERT(mqe2e_policy_new(&pol) == MQE2E_OK);
    FUZZ_ASSERT(mqe2e_policy_add_keystore_groups(pol, ks) == MQE2E_OK);
    FUZZ_ASSERT(mqe2e_policy_add(pol, "chan/#", MQE2E_POLICY_CHANNEL, "dev-b") == MQE2E_OK);
    FUZZ_ASSERT(mqe2e_policy_new(&pol_bind) == MQE2E_OK);
    FUZZ_ASSERT(mqe2e_policy_add_text(pol_bind, "sensors/#=group:" FUZZ_GROUP
                                                ";bind=content-type,user:site,retain") == MQE2E_OK);
    FUZZ_ASSERT(mqe2e_policy_add(pol_bind, "chan/#", MQE2E_POLICY_CHANNEL, "dev-b") == MQE2E_OK);
    return 0;
}

static void drain(mqe2e_session *s, size_t in_len)
{
    mqe2e_session_action a;
    while (mqe2e_session_next(s, &a)) {
        FUZZ_ASSERT(a.topic != NULL);
        if (a.kind == MQE2E_SESSION_DROP) FUZZ_ASSERT(a.code < 0);
        if (a.kind != MQE2E_SESSION_DELIVER) continue;
        FUZZ_ASSERT(a.len <= in_len);
        FUZZ_ASSERT(a.current == 0 || a.props == NULL);
        for (size_t i = 0; i < a.nprops; i++)
            FUZZ_ASSERT(a.props[i].value != NULL || a.props[i].value_len == 0);
        mqe2e_receipt r = a.receipt;
        if (r.active) {
            int rc = mqe2e_session_commit(s, &r);
            FUZZ_ASSERT(rc == MQE2E_OK || rc == MQE2E_ERR_REPLAY);
            FUZZ_ASSERT(mqe2e_session_commit(s, &r) == MQE2E_ERR_REPLAY);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const topics[] = {"mqe2e/client/dev-a", "mqe2e/revocations",
                                         FUZZ_TOPIC, "chan/x"};
    mqe2e_session_time t = {FUZZ_NOW, 1000};
    mqe2e_session *s = NULL;

    if (size < 2) return 0;
    const char *topic = topics[data[0] & 3U];
    unsigned flags = data[1];
    FUZZ_ASSERT(mqe2e_session_new(&s, ks, (flags & 8U) ? pol_bind : pol, NULL) == MQE2E_OK);
    mqe2e_msg_property props[3];
    size_t nprops = 0;
    if ((flags & 16U) && size > 2) {
        /* Values cut from the payload: a content type, "site" twice. */
        size_t cut = (size - 2) < 6U ? size - 2 : 6U;
        const uint8_t *v = data + 2;
        props[0] = (mqe2e_msg_property){MQE2E_PROP_CONTENT_TYPE, NULL, 0, v, cut / 2U};
        props[1] = (mqe2e_msg_property){MQE2E_PROP_USER, (const uint8_t *)"site", 4, v, cut};
        props[2] = (mqe2e_msg_property){MQE2E_PROP_USER, (const uint8_t *)"site", 4, NULL, 0};
        nprops = 3;
    }
    if (flags & 2U) {
        FUZZ_ASSERT(mqe2e_session_connected(s, t) == MQE2E_OK);
        drain(s, 0);
    }
    FUZZ_ASSERT(mqe2e_session_message_received_props(s, topic, strlen(topic), data + 2, size - 2,
                                                     1, (flags & 32U) != 0, 0,
                                                     flags & MQE2E_SESSION_NO_HOLD, props, nprops,
                                                     t) == MQE2E_OK);
    drain(s, size - 2);
    if (flags & 4U) {
        t.wall_s += 3600U;
        t.mono_ms += 3600000U;
        FUZZ_ASSERT(mqe2e_session_tick(s, (flags & 2U) != 0, t) == MQE2E_OK);
        drain(s, size - 2);
    }
    mqe2e_session_free(s);
    return 0;
}
