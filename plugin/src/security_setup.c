/* What setSecurity does the same way in both fronts: build the protector (with
 * a policy made from the keystore's groups when the caller gave none) and turn
 * the hold-queue options into control-plane limits. */
#include "internal_plugin.h"

int mqe2e__protector_for(const mqe2e_policy *given, mqe2e_keystore *ks,
                         const mqe2e_protector_options *popts, mqe2e_protector **p,
                         mqe2e_policy **owned, const mqe2e_policy **policy)
{
    mqe2e_policy *made = NULL;
    int rc = MQE2E_OK;

    *p = NULL;
    *owned = NULL;
    *policy = given;
    if (given == NULL) {
        rc = mqe2e_policy_new(&made);
        if (rc == MQE2E_OK) rc = mqe2e_policy_add_keystore_groups(made, ks);
        if (rc != MQE2E_OK) goto out;
        *policy = made;
    }
    rc = mqe2e_protector_new(p, ks, *policy, popts);
    if (rc != MQE2E_OK) goto out;
    *owned = made;
    made = NULL;
out:
    mqe2e_policy_free(made);
    return rc;
}

void mqe2e__ctl_host_set_fresh(mqe2e__ctl_host *host, int struct_version, unsigned fresh_max)
{
    host->fresh_max = MQE2E__FRESH_MAX_DEFAULT;
    if (struct_version >= 2 && fresh_max > 0) host->fresh_max = fresh_max;
}

void mqe2e__ctl_host_set_hold(mqe2e__ctl_host *host, int struct_version, size_t max_count,
                              size_t max_bytes, unsigned max_seconds)
{
    host->hold_count = MQE2E_HOLDQ_DEFAULT_COUNT;
    host->hold_bytes = MQE2E_HOLDQ_DEFAULT_BYTES;
    host->hold_age = MQE2E_HOLDQ_DEFAULT_AGE;
    /* The hold limits arrived with struct_version 1; 0 keeps the defaults. */
    if (struct_version >= 1) {
        if (max_count > 0) host->hold_count = max_count;
        if (max_bytes > 0) host->hold_bytes = max_bytes;
        if (max_seconds > 0) host->hold_age = max_seconds;
    }
}
