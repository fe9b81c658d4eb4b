/*
 * Internal to the core: a policy rule's `bind=` list (which MQTT v5
 * properties and whether the retain flag are bound into the AD) and the
 * canonical AD suffix built from it (docs/PROTOCOL.md section 2.5.1).
 */
#ifndef MQE2E_INTERNAL_BIND_H
#define MQE2E_INTERNAL_BIND_H

#include <stddef.h>
#include <stdint.h>

#include "mqe2e/msgmeta.h"

/* Tag byte that opens the AD suffix. */
#define MQE2E__BIND_AD_TAG 0xB1U
/* Item id of the retain flag in the suffix (no MQTT property has it). */
#define MQE2E__BIND_RETAIN_ID 0xFFU

/* Bits of mqe2e__bind.items. */
#define MQE2E__BIND_PAYLOAD_FORMAT 0x01U
#define MQE2E__BIND_CONTENT_TYPE 0x02U
#define MQE2E__BIND_RESPONSE_TOPIC 0x04U
#define MQE2E__BIND_CORRELATION_DATA 0x08U
#define MQE2E__BIND_RETAIN 0x10U

typedef struct mqe2e__bind {
    unsigned items;  /* MQE2E__BIND_* */
    size_t nusers;   /* bound user property names */
    uint8_t **users; /* each names[i] of users_len[i] bytes, in canonical order, unique */
    size_t *users_len;
} mqe2e__bind;

/* Parse a comma-separated list (`content-type,user:site,retain`) of @p len
 * bytes. MQE2E_ERR_DECODE: empty list, empty or unknown item;
 * MQE2E_ERR_POLICY: a property brokers may change (message-expiry,
 * topic-alias, subscription-id); MQE2E_ERR_NOMEM. *out is the caller's. */
int mqe2e__bind_parse(const char *list, size_t len, mqe2e__bind **out);

void mqe2e__bind_free(mqe2e__bind *b);

/* Build the AD suffix of section 2.5.1 for @p meta (NULL: no properties,
 * retain 0) with the retain flag @p retain, into a malloc'd *out (the
 * caller frees; it holds no secret). MQE2E_ERR_INVALID_ARG when a bound
 * name or value is over MQE2E_PROP_MAX_BYTES or a property is malformed,
 * MQE2E_ERR_TOO_LARGE past 2^32 - 1 bytes, MQE2E_ERR_NOMEM. */
int mqe2e__bind_ad(const mqe2e__bind *b, const mqe2e_msg_meta *meta, int retain, uint8_t **out,
                   size_t *out_len);

#endif
