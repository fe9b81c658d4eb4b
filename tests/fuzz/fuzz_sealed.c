/*
 * Sealed-blob decoder (docs/KEYSTORE.md): the format written by the
 * encrypted file backend and by mqe2e_passphrase_seal().
 *
 * Every input goes through mqe2e__seal_parse. Then:
 *   kdf 1 (passphrase): mqe2e_passphrase_open with the fixed passphrase,
 *         unless the header asks for an Argon2id cost above the fuzzing cap
 *         (the library accepts up to 16 passes over 1 GiB; deriving that per
 *         input would stall the run, and the bound checks are covered by
 *         the parse alone);
 *   kdf 2 (raw key): mqe2e__unseal with the fixed storage key, the calls
 *         the file backend's load makes.
 * Invariants: opening succeeds only after the header parsed, and the
 * plaintext is exactly the blob minus header and tag.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "internal_keystore.h"
#include "mqe2e/error.h"
#include "mqe2e/storage.h"

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
    mqe2e__seal_header h;
    uint8_t *pt = NULL;
    size_t pt_len = 0;
    int rc;

    /* NULL is refused; libFuzzer may hand an empty input with a non-NULL pointer. */
    int prc = mqe2e__seal_parse(&h, data, size);
    if (prc != MQE2E_OK) {
        FUZZ_ASSERT(prc == MQE2E_ERR_DECODE);
        rc = mqe2e_passphrase_open(&pt, &pt_len, data, size, FUZZ_PASSPHRASE,
                                   strlen(FUZZ_PASSPHRASE));
        FUZZ_ASSERT(rc == MQE2E_ERR_DECODE && pt == NULL);
        return 0;
    }
    FUZZ_ASSERT(h.header_len + MQE2E__SEAL_TAG_BYTES <= size);

    if (h.kdf == MQE2E__SEAL_KDF_PASSPHRASE) {
        if (h.opslimit > FUZZ_MAX_OPSLIMIT || h.memlimit > FUZZ_MAX_MEMLIMIT) return 0;
        rc = mqe2e_passphrase_open(&pt, &pt_len, data, size, FUZZ_PASSPHRASE,
                                   strlen(FUZZ_PASSPHRASE));
    } else {
        uint8_t key[MQE2E__SEAL_KEY_BYTES];
        fuzz_storage_key(key);
        rc = mqe2e__unseal(&pt, &pt_len, &h, key, data, size);
        sodium_memzero(key, sizeof key);
        /* A raw-key blob is never a passphrase blob. */
        uint8_t *other = NULL;
        size_t other_len = 0;
        FUZZ_ASSERT(mqe2e_passphrase_open(&other, &other_len, data, size, FUZZ_PASSPHRASE,
                                          strlen(FUZZ_PASSPHRASE)) == MQE2E_ERR_AUTH);
        FUZZ_ASSERT(other == NULL);
    }
    if (rc == MQE2E_OK) {
        FUZZ_ASSERT(pt != NULL);
        FUZZ_ASSERT(pt_len == size - h.header_len - MQE2E__SEAL_TAG_BYTES);
        sodium_memzero(pt, pt_len);
        free(pt);
    } else {
        FUZZ_ASSERT(rc == MQE2E_ERR_AUTH);
    }
    return 0;
}
