/*
 * In-memory storage backend: the blob lives in sodium_malloc() memory
 * (guarded, locked, wiped when replaced or destroyed).
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "mqe2e/error.h"
#include "mqe2e/storage.h"

typedef struct memory_ctx {
    uint8_t *blob; /* sodium_malloc()ed; NULL until the first store */
    size_t len;
} memory_ctx;

static int memory_load(void *vctx, uint8_t **data, size_t *len)
{
    memory_ctx *ctx = vctx;
    if (ctx == NULL || data == NULL || len == NULL) return MQE2E_ERR_INVALID_ARG;
    if (ctx->blob == NULL) return MQE2E_ERR_NOT_FOUND;
    uint8_t *copy = malloc(ctx->len > 0 ? ctx->len : 1U);
    if (copy == NULL) return MQE2E_ERR_NOMEM;
    if (ctx->len > 0) memcpy(copy, ctx->blob, ctx->len);
    *data = copy;
    *len = ctx->len;
    return MQE2E_OK;
}

static int memory_store(void *vctx, const uint8_t *data, size_t len)
{
    memory_ctx *ctx = vctx;
    if (ctx == NULL || (data == NULL && len != 0)) return MQE2E_ERR_INVALID_ARG;
    uint8_t *blob = sodium_malloc(len > 0 ? len : 1U);
    if (blob == NULL) return MQE2E_ERR_NOMEM;
    if (len > 0) memcpy(blob, data, len);
    /* sodium_free() wipes the old blob. */
    sodium_free(ctx->blob);
    ctx->blob = blob;
    ctx->len = len;
    return MQE2E_OK;
}

static void memory_destroy(void *vctx)
{
    memory_ctx *ctx = vctx;
    if (ctx == NULL) return;
    sodium_free(ctx->blob);
    free(ctx);
}

int mqe2e_storage_memory(mqe2e_storage *out)
{
    if (out == NULL) return MQE2E_ERR_INVALID_ARG;
    if (mqe2e_init() != MQE2E_OK) return MQE2E_ERR_CRYPTO;
    memory_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL) return MQE2E_ERR_NOMEM;
    out->load = memory_load;
    out->store = memory_store;
    out->destroy = memory_destroy;
    out->ctx = ctx;
    return MQE2E_OK;
}
