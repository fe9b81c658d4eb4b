/* Signer directories received from the authority (docs/PROTOCOL.md 2.9). */
#include "mqe2e/control.h"
#include "mqe2e/error.h"
#include "mqe2e/keystore.h"

int mqe2e_control_update_apply_directories(mqe2e_keystore *ks, const mqe2e_control_update *u)
{
    int first = MQE2E_OK;

    if (ks == NULL || u == NULL || (u->n_directories > 0 && u->directories == NULL))
        return MQE2E_ERR_INVALID_ARG;
    for (size_t i = 0; i < u->n_directories; i++) {
        const mqe2e_group_directory *d = &u->directories[i];
        /* A directory for a group we do not hold (no bundle, or it failed to
         * apply) has nothing to protect here. */
        if (mqe2e_keystore_group_filter(ks, d->group) == NULL) continue;
        /* The directory first: once the group is signed, receive depends on it. */
        int rc = mqe2e_keystore_signers_replace(ks, d->group, d->signers, d->n_signers);
        if (rc == MQE2E_OK) rc = mqe2e_keystore_group_set_signed(ks, d->group, 1);
        if (rc != MQE2E_OK && first == MQE2E_OK) first = rc;
    }
    return first;
}
