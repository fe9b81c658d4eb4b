/*
 * Internal to the core: tuning hooks of the protector's key cache, used by the
 * unit tests to exercise eviction without creating 65,536 senders.
 */
#ifndef MQE2E_INTERNAL_PROTECT_H
#define MQE2E_INTERNAL_PROTECT_H

#include <stddef.h>
#include <stdint.h>

#include "mqe2e/policy.h"
#include "mqe2e/protect.h"

/* Default bound on cached (group, epoch, sender) entries. */
#define MQE2E__PROTECT_CACHE_DEFAULT_LIMIT 65536U

/* Set the largest number of cached entries (>= 1). Entries beyond it are
 * evicted least-recently-used first, their replay windows saved into the
 * keystore. Lowering it below the current size evicts at the next insert.
 * MQE2E_ERR_INVALID_ARG for 0 or a NULL protector. */
int mqe2e__protector_set_cache_limit(mqe2e_protector *p, uint32_t limit);

/* Number of entries currently cached. */
size_t mqe2e__protector_cache_size(const mqe2e_protector *p);

/* Number of entries the cache has room for without growing (it starts empty
 * and doubles from 8 on demand, never past its limit). */
size_t mqe2e__protector_cache_capacity(const mqe2e_protector *p);

/* mqe2e_policy_lookup() on the protector's policy through its per-topic
 * answer cache (valid only under the policy generation every rule change
 * bumps): the session's receive path asks it before unprotect, which asks it
 * again for the same topic, so the second answer is a compare. Same return
 * codes and outputs as mqe2e_policy_lookup(); @p target borrows the policy's
 * rule until the policy next changes. */
int mqe2e__protector_policy_lookup(mqe2e_protector *p, const char *topic, mqe2e_policy_kind *kind,
                                   const char **target);

#endif
