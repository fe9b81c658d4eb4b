/*
 * Paho's MQTT v5 properties <-> the core's transport-neutral view
 * (lib/ msgmeta.h), for binding chosen properties into the AD and for
 * handing a released held message its properties back.
 */
#include <stdlib.h>
#include <string.h>

#include "internal_plugin.h"

int mqe2e__props_from_paho(const MQTTProperties *in, mqe2e_msg_property **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (in == NULL || in->count <= 0 || in->array == NULL) return 0;
    const size_t count = (size_t)in->count;
    /* One block: the array, then 4 bytes per property for integer values
     * (big-endian, as on the wire). */
    mqe2e_msg_property *a = calloc(1, count * (sizeof *a + 4U));
    if (a == NULL) return -1;
    uint8_t *ints = (uint8_t *)(a + count);
    for (size_t i = 0; i < count; i++) {
        const MQTTProperty *p = &in->array[i];
        uint8_t *iv = ints + 4U * i;
        a[i].id = (uint8_t)p->identifier;
        switch (MQTTProperty_getType(p->identifier)) {
        case MQTTPROPERTY_TYPE_BYTE:
            a[i].value = &p->value.byte;
            a[i].value_len = 1;
            break;
        case MQTTPROPERTY_TYPE_TWO_BYTE_INTEGER:
            iv[0] = (uint8_t)(p->value.integer2 >> 8);
            iv[1] = (uint8_t)p->value.integer2;
            a[i].value = iv;
            a[i].value_len = 2;
            break;
        case MQTTPROPERTY_TYPE_FOUR_BYTE_INTEGER:
        case MQTTPROPERTY_TYPE_VARIABLE_BYTE_INTEGER:
            iv[0] = (uint8_t)(p->value.integer4 >> 24);
            iv[1] = (uint8_t)(p->value.integer4 >> 16);
            iv[2] = (uint8_t)(p->value.integer4 >> 8);
            iv[3] = (uint8_t)p->value.integer4;
            a[i].value = iv;
            a[i].value_len = 4;
            break;
        case MQTTPROPERTY_TYPE_UTF_8_STRING_PAIR:
            a[i].name = (const uint8_t *)p->value.data.data;
            a[i].name_len = p->value.data.len > 0 ? (size_t)p->value.data.len : 0U;
            a[i].value = (const uint8_t *)p->value.value.data;
            a[i].value_len = p->value.value.len > 0 ? (size_t)p->value.value.len : 0U;
            break;
        case MQTTPROPERTY_TYPE_BINARY_DATA:
        case MQTTPROPERTY_TYPE_UTF_8_ENCODED_STRING:
            a[i].value = (const uint8_t *)p->value.data.data;
            a[i].value_len = p->value.data.len > 0 ? (size_t)p->value.data.len : 0U;
            break;
        default:
            break; /* unknown id: kept as an empty value (never bindable) */
        }
        if (a[i].name_len == 0) a[i].name = NULL;
        if (a[i].value_len == 0) a[i].value = NULL;
    }
    *out = a;
    *n = count;
    return 0;
}

static uint32_t be_value(const mqe2e_msg_property *p)
{
    uint32_t v = 0;
    for (size_t i = 0; i < p->value_len && i < 4U; i++)
        v = (v << 8) | p->value[i];
    return v;
}

MQTTProperties mqe2e__props_to_paho(const mqe2e_msg_property *props, size_t n)
{
    MQTTProperties out = MQTTProperties_initializer;
    for (size_t i = 0; i < n; i++) {
        const mqe2e_msg_property *p = &props[i];
        MQTTProperty q;
        memset(&q, 0, sizeof q);
        q.identifier = (enum MQTTPropertyCodes)p->id;
        switch (MQTTProperty_getType(q.identifier)) {
        case MQTTPROPERTY_TYPE_BYTE:
            q.value.byte = (unsigned char)be_value(p);
            break;
        case MQTTPROPERTY_TYPE_TWO_BYTE_INTEGER:
            q.value.integer2 = (unsigned short)be_value(p);
            break;
        case MQTTPROPERTY_TYPE_FOUR_BYTE_INTEGER:
        case MQTTPROPERTY_TYPE_VARIABLE_BYTE_INTEGER:
            q.value.integer4 = be_value(p);
            break;
        case MQTTPROPERTY_TYPE_UTF_8_STRING_PAIR:
            q.value.data.data = (char *)(uintptr_t)p->name; /* copied by Paho */
            q.value.data.len = (int)p->name_len;
            q.value.value.data = (char *)(uintptr_t)p->value;
            q.value.value.len = (int)p->value_len;
            break;
        case MQTTPROPERTY_TYPE_BINARY_DATA:
        case MQTTPROPERTY_TYPE_UTF_8_ENCODED_STRING:
            q.value.data.data = (char *)(uintptr_t)p->value;
            q.value.data.len = (int)p->value_len;
            break;
        default:
            continue;
        }
        (void)MQTTProperties_add(&out, &q); /* a failure loses that property only */
    }
    return out;
}
