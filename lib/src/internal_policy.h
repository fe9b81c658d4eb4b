/* Internal to the core: policy lookup that also returns the rule's bind list. */
#ifndef MQE2E_INTERNAL_POLICY_H
#define MQE2E_INTERNAL_POLICY_H

#include <stdint.h>

#include "mqe2e/policy.h"

struct mqe2e__bind;

/* mqe2e_policy_lookup_flags() plus the matching rule's bind list (*bind
 * NULL when it binds nothing; borrowed from the policy). @p bind may be NULL. */
int mqe2e__policy_lookup_bind(const mqe2e_policy *p, const char *topic, mqe2e_policy_kind *kind,
                              const char **target, unsigned *flags,
                              const struct mqe2e__bind **bind);

/* The policy's generation: changes whenever a rule is added, removed or its
 * bind list replaced; never 0 for a policy (0 for NULL). A lookup result
 * remembered with the generation it was made under is current while the
 * generation is the same. */
uint64_t mqe2e__policy_generation(const mqe2e_policy *p);

#endif
