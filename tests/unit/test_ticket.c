/* Enrollment tickets: text format, round trip, strict decoding, tampering. */
#include <criterion/criterion.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "mqe2e/credential.h"
#include "mqe2e/error.h"
#include "proto/credential.pb-c.h"

static mqe2e_ticket base;

static void setup(void)
{
    uint8_t seed[32], sk[64];
    cr_assert_eq(mqe2e_init(), MQE2E_OK);
    memset(&base, 0, sizeof base);
    memset(seed, 0x11, sizeof seed);
    crypto_sign_seed_keypair(base.authority_sign_public, sk, seed);
    memset(seed, 0x55, sizeof seed);
    crypto_scalarmult_base(base.authority_dh_public, seed);
    strcpy(base.authority_id, "authority");
    strcpy(base.control_prefix, "mqe2e/ctl");
    for (int i = 0; i < 16; i++)
        base.token_id[i] = (uint8_t)(0xa0 + i);
    for (int i = 0; i < 32; i++)
        base.token[i] = (uint8_t)(0x10 + i);
    strcpy(base.client_id, "dev-1");
    base.expires_at = 1700003600u;
    sodium_memzero(sk, sizeof sk);
}

TestSuite(ticket, .init = setup);

static bool all_zero(const void *p, size_t n)
{
    return sodium_is_zero(p, n) == 1;
}

/* Encode a Ticket protobuf built by hand as ticket text. */
static char *text_of(const Mqe2e__V1__Ticket *m, const uint8_t *extra, size_t extra_len)
{
    size_t n = mqe2e__v1__ticket__get_packed_size(m);
    uint8_t *bin = malloc(n + extra_len + 1);
    mqe2e__v1__ticket__pack(m, bin);
    if (extra_len > 0) memcpy(bin + n, extra, extra_len);
    n += extra_len;
    size_t cap = 7 + sodium_base64_encoded_len(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *t = malloc(cap);
    memcpy(t, "mqe2e1-", 7);
    sodium_bin2base64(t + 7, cap - 7, bin, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    free(bin);
    return t;
}

static void fill(Mqe2e__V1__Ticket *m, const mqe2e_ticket *t)
{
    mqe2e__v1__ticket__init(m);
    m->format = 1;
    m->authority_sign_public.data = (uint8_t *)t->authority_sign_public;
    m->authority_sign_public.len = 32;
    m->authority_dh_public.data = (uint8_t *)t->authority_dh_public;
    m->authority_dh_public.len = 32;
    m->authority_id = (char *)t->authority_id;
    m->control_prefix = (char *)t->control_prefix;
    m->token_id.data = (uint8_t *)t->token_id;
    m->token_id.len = 16;
    m->token.data = (uint8_t *)t->token;
    m->token.len = 32;
    m->client_id = (char *)t->client_id;
    m->expires_at = t->expires_at;
}

Test(ticket, text_format)
{
    char *text = NULL;
    cr_assert_eq(mqe2e_ticket_encode(&text, &base), MQE2E_OK);
    cr_assert_eq(strncmp(text, "mqe2e1-", 7), 0);
    for (const char *p = text + 7; *p; p++)
        cr_assert(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", *p),
                  "char %c", *p);
    /* Body is exactly the canonical protobuf Ticket. */
    Mqe2e__V1__Ticket m;
    fill(&m, &base);
    char *expect = text_of(&m, NULL, 0);
    cr_assert_str_eq(text, expect);
    free(expect);
    /* And its first bytes are format = 1 then field 2 (32 bytes). */
    uint8_t bin[8];
    size_t bl;
    cr_assert_eq(sodium_base642bin(bin, sizeof bin, text + 7, 8, NULL, &bl, NULL,
                                   sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                 0);
    cr_assert_eq(bin[0], 0x08);
    cr_assert_eq(bin[1], 0x01);
    cr_assert_eq(bin[2], 0x12);
    cr_assert_eq(bin[3], 0x20);
    mqe2e_ticket_text_free(text);
}

Test(ticket, round_trip)
{
    char *text = NULL;
    cr_assert_eq(mqe2e_ticket_encode(&text, &base), MQE2E_OK);
    mqe2e_ticket t;
    cr_assert_eq(mqe2e_ticket_decode(&t, text), MQE2E_OK);
    cr_assert_eq(memcmp(&t, &base, sizeof t), 0);
    mqe2e_ticket_wipe(&t);
    cr_assert(all_zero(&t, sizeof t));
    mqe2e_ticket_wipe(NULL);
    mqe2e_ticket_text_free(text);
    mqe2e_ticket_text_free(NULL);
}

Test(ticket, round_trip_longest_fields)
{
    mqe2e_ticket big = base;
    memset(big.authority_id, 'a', MQE2E_ID_MAX);
    big.authority_id[MQE2E_ID_MAX] = '\0';
    memset(big.client_id, 'c', MQE2E_ID_MAX);
    big.client_id[MQE2E_ID_MAX] = '\0';
    memset(big.control_prefix, 'p', MQE2E_CONTROL_PREFIX_MAX);
    big.control_prefix[MQE2E_CONTROL_PREFIX_MAX] = '\0';
    big.control_prefix[10] = '/';
    big.expires_at = UINT64_MAX;
    char *text = NULL;
    cr_assert_eq(mqe2e_ticket_encode(&text, &big), MQE2E_OK);
    cr_assert_leq(strlen(text), MQE2E_TICKET_TEXT_MAX);
    mqe2e_ticket t;
    cr_assert_eq(mqe2e_ticket_decode(&t, text), MQE2E_OK);
    cr_assert_eq(memcmp(&t, &big, sizeof t), 0);
    mqe2e_ticket_text_free(text);
}

Test(ticket, every_character_changed)
{
    static const char subs[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/ .\n\x01\x80";
    char *text = NULL;
    cr_assert_eq(mqe2e_ticket_encode(&text, &base), MQE2E_OK);
    size_t n = strlen(text);
    size_t accepted = 0;
    for (size_t i = 0; i < n; i++) {
        char orig = text[i];
        for (size_t k = 0; k < sizeof subs - 1; k++) {
            if (subs[k] == orig) continue;
            text[i] = subs[k];
            mqe2e_ticket t;
            memset(&t, 0xee, sizeof t);
            int rc = mqe2e_ticket_decode(&t, text);
            if (rc == MQE2E_OK) {
                accepted++;
                cr_assert_neq(memcmp(&t, &base, sizeof t), 0, "pos %zu char %02x decodes equal", i,
                              (unsigned char)subs[k]);
            } else {
                cr_assert(rc == MQE2E_ERR_DECODE || rc == MQE2E_ERR_SUITE, "rc %d", rc);
                cr_assert(all_zero(&t, sizeof t));
            }
        }
        text[i] = orig;
    }
    /* Changes inside the token, for instance, still decode (to another ticket). */
    cr_assert_gt(accepted, 0);
    mqe2e_ticket_text_free(text);
}

Test(ticket, truncated_and_extended)
{
    char *text = NULL;
    cr_assert_eq(mqe2e_ticket_encode(&text, &base), MQE2E_OK);
    size_t n = strlen(text);
    char *copy = malloc(n + 8);
    for (size_t k = 0; k < n; k++) {
        memcpy(copy, text, k);
        copy[k] = '\0';
        mqe2e_ticket t;
        cr_assert_neq(mqe2e_ticket_decode(&t, copy), MQE2E_OK, "len %zu", k);
    }
    static const char *tails[] = {"=", "==", "A", "AA", "AAA", "AAAA", " ", "\n"};
    for (size_t k = 0; k < sizeof tails / sizeof tails[0]; k++) {
        strcpy(copy, text);
        strcat(copy, tails[k]);
        mqe2e_ticket t;
        cr_assert_eq(mqe2e_ticket_decode(&t, copy), MQE2E_ERR_DECODE, "tail '%s'", tails[k]);
    }
    free(copy);
    mqe2e_ticket_text_free(text);
}

Test(ticket, padded_base64_refused)
{
    /* The same bytes with standard '=' padding. */
    Mqe2e__V1__Ticket m;
    fill(&m, &base);
    size_t n = mqe2e__v1__ticket__get_packed_size(&m);
    cr_assert_neq(n % 3, 0); /* otherwise no padding would appear */
    uint8_t *bin = malloc(n);
    mqe2e__v1__ticket__pack(&m, bin);
    size_t cap = 7 + sodium_base64_encoded_len(n, sodium_base64_VARIANT_URLSAFE);
    char *t = malloc(cap);
    memcpy(t, "mqe2e1-", 7);
    sodium_bin2base64(t + 7, cap - 7, bin, n, sodium_base64_VARIANT_URLSAFE);
    cr_assert_not_null(strchr(t, '='));
    mqe2e_ticket out;
    cr_assert_eq(mqe2e_ticket_decode(&out, t), MQE2E_ERR_DECODE);
    /* Without the padding it decodes. */
    *strchr(t, '=') = '\0';
    cr_assert_eq(mqe2e_ticket_decode(&out, t), MQE2E_OK);
    free(t);
    free(bin);
}

Test(ticket, bad_prefix)
{
    char *text = NULL;
    cr_assert_eq(mqe2e_ticket_encode(&text, &base), MQE2E_OK);
    size_t n = strlen(text);
    char *b = malloc(n + 8);
    mqe2e_ticket t;
    static const char *prefixes[] = {"MQE2E1-", "mqe2e2-", "mqe2e1_", "mqe2e1:", "xmqe2e1-", ""};
    for (size_t k = 0; k < sizeof prefixes / sizeof prefixes[0]; k++) {
        strcpy(b, prefixes[k]);
        strcat(b, text + 7);
        cr_assert_eq(mqe2e_ticket_decode(&t, b), MQE2E_ERR_DECODE, "%s", prefixes[k]);
    }
    cr_assert_eq(mqe2e_ticket_decode(&t, "mqe2e1-"), MQE2E_ERR_DECODE);
    cr_assert_eq(mqe2e_ticket_decode(&t, ""), MQE2E_ERR_DECODE);
    cr_assert_eq(mqe2e_ticket_decode(&t, "mqe2e1"), MQE2E_ERR_DECODE);
    cr_assert_eq(mqe2e_ticket_decode(NULL, text), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_ticket_decode(&t, NULL), MQE2E_ERR_INVALID_ARG);
    free(b);
    mqe2e_ticket_text_free(text);
}

Test(ticket, oversized)
{
    char *big = malloc(MQE2E_TICKET_TEXT_MAX + 2);
    memcpy(big, "mqe2e1-", 7);
    memset(big + 7, 'A', MQE2E_TICKET_TEXT_MAX + 1 - 7);
    big[MQE2E_TICKET_TEXT_MAX + 1] = '\0';
    mqe2e_ticket t;
    cr_assert_eq(mqe2e_ticket_decode(&t, big), MQE2E_ERR_TOO_LARGE);
    big[MQE2E_TICKET_TEXT_MAX] = '\0';
    cr_assert_eq(mqe2e_ticket_decode(&t, big), MQE2E_ERR_DECODE);
    free(big);
}

Test(ticket, field_rules_on_decode)
{
    Mqe2e__V1__Ticket m;
    mqe2e_ticket t;
    char *x;
    static const uint8_t zero32[32];
    uint8_t extra[2] = {0x50, 0x01}; /* field 10, varint 1 */

#define EXPECT(rc, mutation)                                                                       \
    do {                                                                                           \
        fill(&m, &base);                                                                           \
        mutation;                                                                                  \
        x = text_of(&m, NULL, 0);                                                                  \
        cr_assert_eq(mqe2e_ticket_decode(&t, x), rc, #mutation);                                   \
        free(x);                                                                                   \
    } while (0)

    EXPECT(MQE2E_OK, (void)0);
    EXPECT(MQE2E_ERR_SUITE, m.format = 2);
    EXPECT(MQE2E_ERR_SUITE, m.format = 0);
    EXPECT(MQE2E_ERR_DECODE, m.authority_sign_public.len = 31);
    EXPECT(MQE2E_ERR_DECODE, m.authority_dh_public.len = 0);
    EXPECT(MQE2E_ERR_DECODE, m.token_id.len = 15);
    EXPECT(MQE2E_ERR_DECODE, m.token.len = 16);
    EXPECT(MQE2E_ERR_DECODE, m.token.len = 0);
    EXPECT(MQE2E_ERR_DECODE, m.expires_at = 0);
    EXPECT(MQE2E_ERR_DECODE, m.client_id = "");
    EXPECT(MQE2E_ERR_DECODE, m.client_id = "a/b");
    EXPECT(MQE2E_ERR_DECODE, m.authority_id = "auth ority");
    EXPECT(MQE2E_ERR_DECODE, m.control_prefix = "");
    EXPECT(MQE2E_ERR_DECODE, m.control_prefix = "a/+/b");
    EXPECT(MQE2E_ERR_DECODE, m.control_prefix = "a/#");
    EXPECT(MQE2E_ERR_DECODE, m.control_prefix = "/a");
    EXPECT(MQE2E_ERR_DECODE, m.control_prefix = "a/");
    EXPECT(MQE2E_ERR_DECODE, m.control_prefix = "a//b");
    EXPECT(MQE2E_ERR_DECODE, m.authority_sign_public.data = (uint8_t *)zero32);
    EXPECT(MQE2E_ERR_DECODE, m.authority_dh_public.data = (uint8_t *)zero32);
#undef EXPECT

    /* Unknown field appended. */
    fill(&m, &base);
    x = text_of(&m, extra, sizeof extra);
    cr_assert_eq(mqe2e_ticket_decode(&t, x), MQE2E_ERR_DECODE);
    free(x);
    /* Duplicate field (non-canonical, last one would win). */
    uint8_t dup[] = {0x48, 0x05}; /* expires_at = 5 again */
    x = text_of(&m, dup, sizeof dup);
    cr_assert_eq(mqe2e_ticket_decode(&t, x), MQE2E_ERR_DECODE);
    free(x);
    /* Explicit default value (format 0 written out) is non-canonical too. */
    uint8_t zero_field[] = {0x08, 0x00};
    x = text_of(&m, zero_field, sizeof zero_field);
    cr_assert_eq(mqe2e_ticket_decode(&t, x), MQE2E_ERR_DECODE);
    free(x);
    /* Embedded NUL in a string. */
    fill(&m, &base);
    uint8_t nul_id[] = {0x42, 0x03, 'a', 0x00, 'b'};
    m.client_id = (char *)"";
    x = text_of(&m, nul_id, sizeof nul_id);
    cr_assert_eq(mqe2e_ticket_decode(&t, x), MQE2E_ERR_DECODE);
    free(x);
}

Test(ticket, encode_refuses_invalid)
{
    char *text = NULL;
    mqe2e_ticket t;
#define REFUSE(mutation)                                                                           \
    do {                                                                                           \
        t = base;                                                                                  \
        mutation;                                                                                  \
        cr_assert_eq(mqe2e_ticket_encode(&text, &t), MQE2E_ERR_INVALID_ARG, #mutation);            \
        cr_assert_null(text);                                                                      \
    } while (0)
    REFUSE(t.client_id[0] = '\0');
    REFUSE(strcpy(t.client_id, "a#"));
    REFUSE(t.authority_id[0] = '\0');
    REFUSE(strcpy(t.control_prefix, "a/+"));
    REFUSE(t.control_prefix[0] = '\0');
    REFUSE(t.expires_at = 0);
    REFUSE(memset(t.authority_sign_public, 0, 32));
    REFUSE(memset(t.authority_dh_public, 0, 32));
    REFUSE(memset(t.client_id, 'c', sizeof t.client_id));
    REFUSE(memset(t.control_prefix, 'c', sizeof t.control_prefix));
#undef REFUSE
    cr_assert_eq(mqe2e_ticket_encode(NULL, &base), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_ticket_encode(&text, NULL), MQE2E_ERR_INVALID_ARG);
}

Test(ticket, garbage_never_crashes)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char buf[1500];
    uint32_t seed = 99;
    memcpy(buf, "mqe2e1-", 7);
    for (int round = 0; round < 3000; round++) {
        size_t n = 7 + (size_t)round % (sizeof buf - 8);
        for (size_t i = 7; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            buf[i] = alphabet[(seed >> 16) % 64];
        }
        buf[n] = '\0';
        mqe2e_ticket t;
        int rc = mqe2e_ticket_decode(&t, buf);
        cr_assert_neq(rc, MQE2E_OK);
        cr_assert(all_zero(&t, sizeof t));
    }
}

Test(ticket, control_prefix_rules)
{
    cr_assert(mqe2e_control_prefix_valid("mqe2e"));
    cr_assert(mqe2e_control_prefix_valid("a/b/c"));
    cr_assert(mqe2e_control_prefix_valid("$mqe2e/ctl"));
    cr_assert_not(mqe2e_control_prefix_valid(NULL));
    cr_assert_not(mqe2e_control_prefix_valid(""));
    cr_assert_not(mqe2e_control_prefix_valid("/"));
    cr_assert_not(mqe2e_control_prefix_valid("a b"));
    cr_assert_not(mqe2e_control_prefix_valid("a/+"));
    cr_assert_not(mqe2e_control_prefix_valid("#"));
    cr_assert_not(mqe2e_control_prefix_valid("a//b"));
}
