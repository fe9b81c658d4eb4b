/* Copies of a message's property view (internal_msgmeta.h). */
#include "internal_msgmeta.h"

#include <stdlib.h>
#include <string.h>

#include "mqe2e/error.h"

static void put32(uint8_t *p, size_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static size_t get32(const uint8_t *p)
{
    return ((size_t)p[0] << 24) | ((size_t)p[1] << 16) | ((size_t)p[2] << 8) | (size_t)p[3];
}

int mqe2e__props_pack(const mqe2e_msg_property *props, size_t n, uint8_t **blob, size_t *len)
{
    size_t total = 4;

    if (blob == NULL || len == NULL || (props == NULL && n > 0)) return MQE2E_ERR_INVALID_ARG;
    *blob = NULL;
    *len = 0;
    if (n == 0) return MQE2E_OK;
    if (n > UINT32_MAX) return MQE2E_ERR_TOO_LARGE;
    for (size_t i = 0; i < n; i++) {
        const mqe2e_msg_property *p = &props[i];
        if (p->name_len > UINT32_MAX || p->value_len > UINT32_MAX ||
            (p->name == NULL && p->name_len > 0) || (p->value == NULL && p->value_len > 0))
            return MQE2E_ERR_INVALID_ARG;
        size_t item = 9U + p->name_len + p->value_len;
        if (item < p->name_len || total > SIZE_MAX - item) return MQE2E_ERR_TOO_LARGE;
        total += item;
    }
    uint8_t *b = malloc(total);
    if (b == NULL) return MQE2E_ERR_NOMEM;
    uint8_t *w = b;
    put32(w, n);
    w += 4;
    for (size_t i = 0; i < n; i++) {
        const mqe2e_msg_property *p = &props[i];
        *w++ = p->id;
        put32(w, p->name_len);
        w += 4;
        if (p->name_len > 0) memcpy(w, p->name, p->name_len);
        w += p->name_len;
        put32(w, p->value_len);
        w += 4;
        if (p->value_len > 0) memcpy(w, p->value, p->value_len);
        w += p->value_len;
    }
    *blob = b;
    *len = total;
    return MQE2E_OK;
}

int mqe2e__props_unpack(const uint8_t *blob, size_t len, mqe2e_msg_property **arr, size_t *n)
{
    if (arr == NULL || n == NULL || (blob == NULL && len > 0)) return MQE2E_ERR_INVALID_ARG;
    *arr = NULL;
    *n = 0;
    if (len == 0) return MQE2E_OK;
    if (len < 4) return MQE2E_ERR_DECODE;
    size_t count = get32(blob);
    /* Each property takes at least 9 bytes: bounds the array before allocating. */
    if (count == 0 || count > (len - 4U) / 9U) return MQE2E_ERR_DECODE;
    size_t head = count * sizeof(mqe2e_msg_property);
    mqe2e_msg_property *a = malloc(head + len);
    if (a == NULL) return MQE2E_ERR_NOMEM;
    uint8_t *bytes = (uint8_t *)a + head;
    memcpy(bytes, blob, len);
    size_t pos = 4;
    for (size_t i = 0; i < count; i++) {
        if (len - pos < 5U) goto bad;
        a[i].id = bytes[pos];
        a[i].name_len = get32(bytes + pos + 1U);
        pos += 5U;
        if (a[i].name_len > len - pos) goto bad;
        a[i].name = a[i].name_len > 0 ? bytes + pos : NULL;
        pos += a[i].name_len;
        if (len - pos < 4U) goto bad;
        a[i].value_len = get32(bytes + pos);
        pos += 4U;
        if (a[i].value_len > len - pos) goto bad;
        a[i].value = a[i].value_len > 0 ? bytes + pos : NULL;
        pos += a[i].value_len;
    }
    if (pos != len) goto bad;
    *arr = a;
    *n = count;
    return MQE2E_OK;
bad:
    free(a);
    return MQE2E_ERR_DECODE;
}
