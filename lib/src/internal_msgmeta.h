/*
 * Internal to the core: copies of a message's property view that outlive
 * the call that lent it (held messages keep theirs until released).
 */
#ifndef MQE2E_INTERNAL_MSGMETA_H
#define MQE2E_INTERNAL_MSGMETA_H

#include <stddef.h>
#include <stdint.h>

#include "mqe2e/msgmeta.h"

/* Serialise @p n properties into a malloc'd, pointer-free *blob (the caller
 * frees; nothing secret): u32 n, then per property u8 id, u32 len(name),
 * name, u32 len(value), value. n 0: *blob NULL, *len 0. */
int mqe2e__props_pack(const mqe2e_msg_property *props, size_t n, uint8_t **blob, size_t *len);

/* The reverse: one malloc'd block holding the array and the bytes it points
 * to (free(*arr) frees all). len 0: *arr NULL, *n 0. MQE2E_ERR_DECODE on a
 * malformed blob, MQE2E_ERR_NOMEM. */
int mqe2e__props_unpack(const uint8_t *blob, size_t len, mqe2e_msg_property **arr, size_t *n);

#endif
