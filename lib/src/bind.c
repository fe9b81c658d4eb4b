/* A policy rule's `bind=` list and the AD suffix it asks for
 * (docs/PROTOCOL.md section 2.5.1). No secret passes through here. */
#include "internal_bind.h"

#include <stdlib.h>
#include <string.h>

#include "mqe2e/error.h"

void mqe2e__bind_free(mqe2e__bind *b)
{
    if (b == NULL) return;
    for (size_t i = 0; i < b->nusers; i++)
        free(b->users[i]);
    free(b->users);
    free(b->users_len);
    free(b);
}

/* Canonical order of user property names: bytewise, a prefix first. */
static int name_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n > 0 ? memcmp(a, b, n) : 0;
    if (c != 0) return c;
    return alen < blen ? -1 : (alen > blen ? 1 : 0);
}

static int add_user(mqe2e__bind *b, const char *name, size_t len)
{
    size_t at = 0;
    if (len > MQE2E_PROP_MAX_BYTES) return MQE2E_ERR_DECODE;
    while (at < b->nusers) {
        int c = name_cmp(b->users[at], b->users_len[at], (const uint8_t *)name, len);
        if (c == 0) return MQE2E_OK; /* listed twice: bound once */
        if (c > 0) break;
        at++;
    }
    uint8_t **nu = realloc(b->users, (b->nusers + 1U) * sizeof *nu);
    if (nu == NULL) return MQE2E_ERR_NOMEM;
    b->users = nu;
    size_t *nl = realloc(b->users_len, (b->nusers + 1U) * sizeof *nl);
    if (nl == NULL) return MQE2E_ERR_NOMEM;
    b->users_len = nl;
    uint8_t *copy = malloc(len > 0 ? len : 1U);
    if (copy == NULL) return MQE2E_ERR_NOMEM;
    if (len > 0) memcpy(copy, name, len);
    memmove(b->users + at + 1, b->users + at, (b->nusers - at) * sizeof *b->users);
    memmove(b->users_len + at + 1, b->users_len + at, (b->nusers - at) * sizeof *b->users_len);
    b->users[at] = copy;
    b->users_len[at] = len;
    b->nusers++;
    return MQE2E_OK;
}

static int item_is(const char *item, size_t len, const char *word)
{
    return strlen(word) == len && memcmp(item, word, len) == 0;
}

static int parse_item(mqe2e__bind *b, const char *item, size_t len)
{
    static const char user_prefix[] = "user:";
    const size_t up = sizeof user_prefix - 1U;

    if (len == 0) return MQE2E_ERR_DECODE;
    if (item_is(item, len, "payload-format")) {
        b->items |= MQE2E__BIND_PAYLOAD_FORMAT;
    } else if (item_is(item, len, "content-type")) {
        b->items |= MQE2E__BIND_CONTENT_TYPE;
    } else if (item_is(item, len, "response-topic")) {
        b->items |= MQE2E__BIND_RESPONSE_TOPIC;
    } else if (item_is(item, len, "correlation-data")) {
        b->items |= MQE2E__BIND_CORRELATION_DATA;
    } else if (item_is(item, len, "retain")) {
        b->items |= MQE2E__BIND_RETAIN;
    } else if (len >= up && memcmp(item, user_prefix, up) == 0) {
        return add_user(b, item + up, len - up);
    } else if (item_is(item, len, "message-expiry") || item_is(item, len, "topic-alias") ||
               item_is(item, len, "subscription-id")) {
        /* Brokers change these on the way (MQTT 5 sections 3.3.2.3.3,
         * 3.3.2.3.4, 3.3.2.3.8): bound, every message would fail. */
        return MQE2E_ERR_POLICY;
    } else {
        return MQE2E_ERR_DECODE;
    }
    return MQE2E_OK;
}

int mqe2e__bind_parse(const char *list, size_t len, mqe2e__bind **out)
{
    if (list == NULL || out == NULL) return MQE2E_ERR_INVALID_ARG;
    *out = NULL;
    if (len == 0) return MQE2E_ERR_DECODE;
    mqe2e__bind *b = calloc(1, sizeof *b);
    if (b == NULL) return MQE2E_ERR_NOMEM;
    size_t start = 0;
    int rc = MQE2E_OK;
    for (size_t i = 0; i <= len && rc == MQE2E_OK; i++) {
        if (i == len || list[i] == ',') {
            rc = parse_item(b, list + start, i - start);
            start = i + 1U;
        }
    }
    if (rc != MQE2E_OK) {
        mqe2e__bind_free(b);
        return rc;
    }
    *out = b;
    return MQE2E_OK;
}

/* ------------------------------------------------------------ AD suffix */

/* A growing byte buffer; pos counts even when the buffer is not written
 * (first pass, buf NULL) so one function both measures and writes. */
typedef struct wbuf {
    uint8_t *buf;
    size_t pos;
} wbuf;

static void put(wbuf *w, const void *p, size_t n)
{
    if (w->buf != NULL && n > 0) memcpy(w->buf + w->pos, p, n);
    w->pos += n;
}

static void put_u8(wbuf *w, unsigned v)
{
    uint8_t b = (uint8_t)v;
    put(w, &b, 1);
}

static void put_u16(wbuf *w, size_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    put(w, b, 2);
}

static void put_u32(wbuf *w, size_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(w, b, 4);
}

static int prop_ok(const mqe2e_msg_property *pr)
{
    return pr->value_len <= MQE2E_PROP_MAX_BYTES && pr->name_len <= MQE2E_PROP_MAX_BYTES &&
           (pr->value != NULL || pr->value_len == 0) && (pr->name != NULL || pr->name_len == 0);
}

/* One item: u8 id || [u16be len(name) || name] || u32be count || values. */
static int put_item(wbuf *w, const mqe2e_msg_meta *m, uint8_t id, const uint8_t *name,
                    size_t name_len)
{
    size_t count = 0;
    const size_t n = m != NULL ? m->count : 0U;

    for (size_t i = 0; i < n; i++) {
        const mqe2e_msg_property *pr = &m->props[i];
        if (pr->id != id) continue;
        if (id == MQE2E_PROP_USER && name_cmp(pr->name, pr->name_len, name, name_len) != 0)
            continue;
        if (!prop_ok(pr)) return MQE2E_ERR_INVALID_ARG;
        count++;
    }
    if (count > UINT32_MAX) return MQE2E_ERR_TOO_LARGE;
    put_u8(w, id);
    if (id == MQE2E_PROP_USER) {
        put_u16(w, name_len);
        put(w, name, name_len);
    }
    put_u32(w, count);
    for (size_t i = 0; i < n; i++) {
        const mqe2e_msg_property *pr = &m->props[i];
        if (pr->id != id) continue;
        if (id == MQE2E_PROP_USER && name_cmp(pr->name, pr->name_len, name, name_len) != 0)
            continue;
        put_u16(w, pr->value_len);
        put(w, pr->value, pr->value_len);
    }
    return MQE2E_OK;
}

/* P of section 2.5.1: the bound items in ascending id order, user
 * properties by name, the retain flag last. */
static int put_items(wbuf *w, const mqe2e__bind *b, const mqe2e_msg_meta *m, int retain)
{
    static const struct {
        unsigned bit;
        uint8_t id;
    } fixed[] = {{MQE2E__BIND_PAYLOAD_FORMAT, MQE2E_PROP_PAYLOAD_FORMAT},
                 {MQE2E__BIND_CONTENT_TYPE, MQE2E_PROP_CONTENT_TYPE},
                 {MQE2E__BIND_RESPONSE_TOPIC, MQE2E_PROP_RESPONSE_TOPIC},
                 {MQE2E__BIND_CORRELATION_DATA, MQE2E_PROP_CORRELATION_DATA}};
    int rc;

    if (m != NULL && m->count > 0 && m->props == NULL) return MQE2E_ERR_INVALID_ARG;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        if ((b->items & fixed[i].bit) == 0) continue;
        rc = put_item(w, m, fixed[i].id, NULL, 0);
        if (rc != MQE2E_OK) return rc;
    }
    for (size_t u = 0; u < b->nusers; u++) {
        rc = put_item(w, m, MQE2E_PROP_USER, b->users[u], b->users_len[u]);
        if (rc != MQE2E_OK) return rc;
    }
    if ((b->items & MQE2E__BIND_RETAIN) != 0) {
        const uint8_t r = retain ? 1U : 0U;
        put_u8(w, MQE2E__BIND_RETAIN_ID);
        put_u32(w, 1);
        put_u16(w, 1);
        put(w, &r, 1);
    }
    return MQE2E_OK;
}

int mqe2e__bind_ad(const mqe2e__bind *b, const mqe2e_msg_meta *meta, int retain, uint8_t **out,
                   size_t *out_len)
{
    wbuf w = {NULL, 0};
    int rc;

    if (b == NULL || out == NULL || out_len == NULL) return MQE2E_ERR_INVALID_ARG;
    *out = NULL;
    *out_len = 0;
    rc = put_items(&w, b, meta, retain); /* measure */
    if (rc != MQE2E_OK) return rc;
    const size_t plen = w.pos;
    if (plen > UINT32_MAX) return MQE2E_ERR_TOO_LARGE;
    w.buf = malloc(5U + plen);
    if (w.buf == NULL) return MQE2E_ERR_NOMEM;
    w.pos = 0;
    put_u8(&w, MQE2E__BIND_AD_TAG);
    put_u32(&w, plen);
    (void)put_items(&w, b, meta, retain); /* same input: cannot fail now */
    *out = w.buf;
    *out_len = w.pos;
    return MQE2E_OK;
}
