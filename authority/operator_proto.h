/* Internal to the authority core: the operator commands it executes
 * (operator_proto.c). Not installed. */
#ifndef MQE2E_AUTHORITY_OPERATOR_PROTO_H
#define MQE2E_AUTHORITY_OPERATOR_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "authority_internal.h"

/* Result of one operator command; message is static, output malloc()ed. */
typedef struct op_result {
    int32_t status;
    const char *message;
    char *output;
    size_t output_len, output_cap;
} op_result;

void op_result_free(op_result *r);

/* Execute a verified, fresh, first-seen operator request. */
void operator_execute(authority *a, op_result *res, const mqe2e_operator_request *req,
                      uint64_t now);

#endif
