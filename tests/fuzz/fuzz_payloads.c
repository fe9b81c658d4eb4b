/*
 * The protobuf payloads carried inside the control plane's Noise messages,
 * decoded directly (the harness does not need to complete a handshake to
 * reach them): the same strict decoders the handshakes call.
 *
 * First byte % 6 picks the decoder; the rest is the payload:
 *   0: EnrollReply, 1: HelloReply, 2: Push (mqe2e__control_unpack_update).
 *      Invariant: a decoded update packs again to exactly the input (the
 *      decoders accept only the canonical encoding, no unknown field).
 *   3: ChannelHello without a credential (step 1), from "peer-1";
 *   4: ChannelHello with a credential (steps 2 and 3), from "peer-1";
 *   5: OperatorRequest (mqe2e__operator_request_check).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "internal_control.h"
#include "mqe2e/control.h"
#include "mqe2e/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    FUZZ_ASSERT(mqe2e_init() == MQE2E_OK);
    return 0;
}

static void update(int which, const uint8_t *d, size_t n)
{
    mqe2e_control_update u;
    uint8_t *again = NULL;
    size_t again_len = 0;
    if (mqe2e__control_unpack_update(&u, which, d, n) != MQE2E_OK) return;
    FUZZ_ASSERT(u.n_bundles <= MQE2E_CONTROL_MAX_BUNDLES);
    if (mqe2e__control_pack_update(&again, &again_len, which, &u) == MQE2E_OK) {
        FUZZ_ASSERT(again_len == n && memcmp(again, d, n) == 0);
        mqe2e__control_free_wiped(again, again_len);
    }
    mqe2e_control_update_wipe(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const uint8_t *d = data + 1;
    size_t n = size - 1;
    switch (data[0] % 6U) {
    case 0:
        update(MQE2E__PAYLOAD_ENROLL_REPLY, d, n);
        break;
    case 1:
        update(MQE2E__PAYLOAD_HELLO_REPLY, d, n);
        break;
    case 2:
        update(MQE2E__PAYLOAD_PUSH, d, n);
        break;
    case 3:
    case 4: {
        int rc = mqe2e__channel_hello_check(d, n, "peer-1", data[0] % 6U == 4U);
        FUZZ_ASSERT(rc == MQE2E_OK || rc == MQE2E_ERR_AUTH);
        break;
    }
    default: {
        int rc = mqe2e__operator_request_check(d, n);
        FUZZ_ASSERT(rc == MQE2E_OK || rc == MQE2E_ERR_AUTH);
        break;
    }
    }
    return 0;
}
