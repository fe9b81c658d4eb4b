/* Error strings and library initialisation. */
#include "mqe2e/error.h"

#include <sodium.h>

struct err_entry {
    const char *name;
    const char *text;
};

/* Indexed by -code; the order is the ABI order of the enum. */
static const struct err_entry err_table[] = {
    {"ok", "success"},
    {"invalid_arg", "invalid argument"},
    {"nomem", "out of memory"},
    {"decode", "malformed or truncated input"},
    {"too_large", "input or output over a configured limit"},
    {"buffer_too_small", "output buffer too small"},
    {"suite", "unknown format version, mode or cipher suite"},
    {"no_key", "no key for this group, epoch or sender"},
    {"expired", "epoch past its grace period, or item expired"},
    {"replay", "sequence number already seen or too old"},
    {"auth", "authentication failed"},
    {"no_policy", "topic has no protection policy"},
    {"io", "storage input/output failed"},
    {"exists", "item already exists"},
    {"not_found", "item not found"},
    {"exhausted", "sequence space or counter exhausted"},
    {"crypto", "cryptographic library failure"},
    {"state", "call not valid in the current state"},
    {"policy", "forbidden by the topic policy"},
    {"unknown_signer", "sender not in the group's signer directory"},
    {"locked", "keystore already open in another handle or process"},
    {"grant", "sender not granted to publish on this topic"},
    {"revoked", "sender id retired by the authority's revocation list"},
    {"tree_gap", "key-tree update does not follow this member's epoch: catch up"},
    {"tree_revoked", "the key-tree update removes this member"},
};

_Static_assert(sizeof err_table / sizeof err_table[0] == (size_t)(-MQE2E_ERR_MIN) + 1U,
               "error table out of step with the enum");

static const struct err_entry *err_lookup(int code)
{
    if (code > 0 || code < MQE2E_ERR_MIN) {
        return NULL;
    }
    return &err_table[(size_t)(-code)];
}

const char *mqe2e_strerror(int code)
{
    const struct err_entry *e = err_lookup(code);
    return e != NULL ? e->text : "unknown error";
}

const char *mqe2e_error_name(int code)
{
    const struct err_entry *e = err_lookup(code);
    return e != NULL ? e->name : "unknown";
}

int mqe2e_init(void)
{
    /* sodium_init() returns 1 when already initialised: that is success too. */
    return sodium_init() < 0 ? MQE2E_ERR_CRYPTO : MQE2E_OK;
}
