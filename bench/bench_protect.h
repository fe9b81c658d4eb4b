/*
 * The full protect + unprotect path between two protectors over keystores
 * sharing a group: bench_crypto's case (c), and the anchor bench_throughput
 * measures at start-up for its client CPU target. Header only.
 */
#ifndef MQE2E_BENCH_PROTECT_H
#define MQE2E_BENCH_PROTECT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "mqe2e/error.h"
#include "mqe2e/keystore.h"
#include "mqe2e/policy.h"
#include "mqe2e/protect.h"

/* One end: a keystore, the policy of its groups and a protector over both. */
typedef struct bench_peer {
    mqe2e_keystore *ks;
    mqe2e_policy *pol;
    mqe2e_protector *pr;
} bench_peer;

/*
 * Give @p pe a policy of the groups of @p ks and a protector over both, with
 * default options. @p pe takes @p ks (bench_peer_free closes it). On failure
 * prints "<prog>: <step>: <code>" and exits 2.
 */
static inline void bench_peer_init(bench_peer *pe, const char *prog, mqe2e_keystore *ks)
{
    const char *step = NULL;
    int rc;
    pe->ks = ks;
    pe->pol = NULL;
    pe->pr = NULL;
    if ((rc = mqe2e_policy_new(&pe->pol)) != MQE2E_OK)
        step = "policy_new";
    else if ((rc = mqe2e_policy_add_keystore_groups(pe->pol, pe->ks)) != MQE2E_OK)
        step = "policy";
    else if ((rc = mqe2e_protector_new(&pe->pr, pe->ks, pe->pol, NULL)) != MQE2E_OK)
        step = "protector_new";
    if (step != NULL) {
        fprintf(stderr, "%s: %s: %d\n", prog, step, rc);
        exit(2);
    }
}

/* Free the protector, the policy and the keystore of @p pe. */
static inline void bench_peer_free(bench_peer *pe)
{
    mqe2e_protector_free(pe->pr);
    mqe2e_policy_free(pe->pol);
    mqe2e_keystore_close(pe->ks);
    pe->pr = NULL;
    pe->pol = NULL;
    pe->ks = NULL;
}

/*
 * @p n times: @p tx protects the @p len bytes of @p pt on @p topic into
 * @p buf (capacity @p cap, at least mqe2e_protect_bound(len)) and @p rx
 * unprotects it into @p dec (capacity @p cap), at time @p now. The envelope
 * length of the first message goes to *first_len when that is not NULL.
 * Returns 0, an MQE2E_ERR_* code, or -1 when a decrypted length differs.
 */
static inline int bench_protect_unprotect(bench_peer *tx, bench_peer *rx, const char *topic,
                                          const uint8_t *pt, size_t len, uint64_t now, uint8_t *buf,
                                          uint8_t *dec, size_t cap, uint64_t n, size_t *first_len)
{
    size_t elen, plen = 0;
    int rc;
    for (uint64_t i = 0; i < n; i++) {
        rc = mqe2e_protect(tx->pr, topic, pt, len, now, buf, cap, &elen);
        if (rc == MQE2E_OK) {
            if (first_len != NULL && i == 0) *first_len = elen;
            rc = mqe2e_unprotect(rx->pr, topic, buf, elen, now, dec, cap, &plen);
        }
        if (rc != MQE2E_OK || plen != len) return rc != MQE2E_OK ? rc : -1;
    }
    return 0;
}

#endif
