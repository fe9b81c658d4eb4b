/*
 * An in-memory keystore with one group, for the benchmarks that need a
 * configured client without an authority (callgrind_publish,
 * callgrind_session_recv). Header only.
 */
#ifndef MQE2E_BENCH_KEYSTORE_H
#define MQE2E_BENCH_KEYSTORE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "mqe2e/error.h"
#include "mqe2e/keystore.h"
#include "mqe2e/storage.h"

/*
 * A keystore in memory for @p client with a sequence block of @p seq_block
 * and group @p group on @p filter at epoch 1 with @p secret (32 bytes, added
 * at @p now). On failure prints "<prog>: <step>: <code>" and exits 2.
 * The caller closes it (mqe2e_keystore_close).
 */
static inline mqe2e_keystore *bench_memory_keystore(const char *prog, const char *client,
                                                    uint32_t seq_block, const char *group,
                                                    const char *filter, const uint8_t *secret,
                                                    uint64_t now)
{
    mqe2e_storage st;
    mqe2e_keystore *ks = NULL;
    const char *step = NULL;
    int rc;
    if ((rc = mqe2e_storage_memory(&st)) != MQE2E_OK)
        step = "storage_memory";
    else if ((rc = mqe2e_keystore_create(&ks, st, client, 0U)) != MQE2E_OK)
        step = "keystore";
    else if ((rc = mqe2e_keystore_set_seq_block(ks, seq_block)) != MQE2E_OK)
        step = "seq_block";
    else if ((rc = mqe2e_keystore_group_add_epoch(ks, group, filter, 1U, secret, now)) != MQE2E_OK)
        step = "group_add_epoch";
    if (step != NULL) {
        fprintf(stderr, "%s: %s: %d\n", prog, step, rc);
        exit(2);
    }
    return ks;
}

#endif
