/* Helpers shared by the tests of the authority store (test_authority_db.c on
 * SQLite, tests/store/ on every driver). Header-only: each test program
 * includes it once. */
#ifndef MQE2E_TEST_ADB_TESTUTIL_H
#define MQE2E_TEST_ADB_TESTUTIL_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "authority_db.h"
#include "mqe2e/error.h"

/* Record client_id as enrolled with keys derived from key_byte (Ed25519 key
 * all key_byte, X25519 key all key_byte ^ 0xFF), enrolled at 100. */
static inline void adb_test_enroll(mqe2e_adb *db, const char *client_id, uint8_t key_byte)
{
    uint8_t sp[MQE2E_ADB_PUBLIC_BYTES], dh[MQE2E_ADB_PUBLIC_BYTES];
    memset(sp, key_byte, sizeof sp);
    memset(dh, (uint8_t)(key_byte ^ 0xFF), sizeof dh);
    cr_assert_eq(mqe2e_adb_client_upsert_enrolled(NULL, db, client_id, "device", sp, dh, NULL, 0,
                                                  100, 100000),
                 MQE2E_OK, "enroll %s", client_id);
}

#endif
