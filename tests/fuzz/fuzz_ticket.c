/*
 * Ticket decoder: mqe2e_ticket_decode on the input as text.
 *
 * Invariants: a failed decode leaves the ticket all zero (documented); a
 * successful one re-encodes to exactly the input (the decoder is strict:
 * canonical base64url and canonical protobuf only).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "mqe2e/credential.h"
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const mqe2e_ticket zero;
    mqe2e_ticket t;
    char *text = malloc(size + 1U);
    char *again = NULL;

    FUZZ_ASSERT(text != NULL);
    if (size > 0) memcpy(text, data, size);
    text[size] = '\0';
    memset(&t, 0xEE, sizeof t);

    int rc = mqe2e_ticket_decode(&t, text);
    if (rc == MQE2E_OK) {
        FUZZ_ASSERT(mqe2e_client_id_valid(t.client_id));
        FUZZ_ASSERT(mqe2e_client_id_valid(t.authority_id));
        FUZZ_ASSERT(mqe2e_control_prefix_valid(t.control_prefix));
        FUZZ_ASSERT(t.expires_at != 0);
        FUZZ_ASSERT(mqe2e_ticket_encode(&again, &t) == MQE2E_OK);
        FUZZ_ASSERT(strcmp(again, text) == 0);
    } else {
        FUZZ_ASSERT(rc == MQE2E_ERR_DECODE || rc == MQE2E_ERR_SUITE || rc == MQE2E_ERR_TOO_LARGE);
        FUZZ_ASSERT(memcmp(&t, &zero, sizeof t) == 0);
    }
    mqe2e_ticket_wipe(&t);
    mqe2e_ticket_text_free(again);
    sodium_memzero(text, size + 1U);
    free(text);
    return 0;
}
