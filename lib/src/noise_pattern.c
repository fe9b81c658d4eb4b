/* Noise handshake pattern table (revision 34, sections 7.4-7.7) and the
 * protocol-name parser with psk modifiers (section 9). */
#include <string.h>

#include "internal_noise.h"
#include "mqe2e/error.h"

#define NAME_PREFIX "Noise_"
#define NAME_SUFFIX "_25519_ChaChaPoly_SHA256"

/* Messages are separated by '|', tokens by ','. Even-numbered messages
 * (0, 2, ...) go initiator -> responder. Pre-messages only ever hold "s"
 * in the patterns we accept (fallback patterns are not supported). */
typedef struct pattern_row {
    const char *name;
    uint8_t pre_s_initiator;
    uint8_t pre_s_responder;
    const char *messages;
} pattern_row;

static const pattern_row PATTERNS[] = {
    /* one-way (7.4) */
    {"N", 0, 1, "e,es"},
    {"K", 1, 1, "e,es,ss"},
    {"X", 0, 1, "e,es,s,ss"},
    /* interactive fundamental (7.5) */
    {"NN", 0, 0, "e|e,ee"},
    {"NK", 0, 1, "e,es|e,ee"},
    {"NX", 0, 0, "e|e,ee,s,es"},
    {"KN", 1, 0, "e|e,ee,se"},
    {"KK", 1, 1, "e,es,ss|e,ee,se"},
    {"KX", 1, 0, "e|e,ee,se,s,es"},
    {"XN", 0, 0, "e|e,ee|s,se"},
    {"XK", 0, 1, "e,es|e,ee|s,se"},
    {"XX", 0, 0, "e|e,ee,s,es|s,se"},
    {"IN", 0, 0, "e,s|e,ee,se"},
    {"IK", 0, 1, "e,es,s,ss|e,ee,se"},
    {"IX", 0, 0, "e,s|e,ee,se,s,es"},
    /* deferred (7.6) */
    {"NK1", 0, 1, "e|e,ee,es"},
    {"NX1", 0, 0, "e|e,ee,s|es"},
    {"X1N", 0, 0, "e|e,ee|s|se"},
    {"X1K", 0, 1, "e,es|e,ee|s|se"},
    {"XK1", 0, 1, "e|e,ee,es|s,se"},
    {"X1K1", 0, 1, "e|e,ee,es|s|se"},
    {"X1X", 0, 0, "e|e,ee,s,es|s|se"},
    {"XX1", 0, 0, "e|e,ee,s|es,s,se"},
    {"X1X1", 0, 0, "e|e,ee,s|es,s|se"},
    {"K1N", 1, 0, "e|e,ee|se"},
    {"K1K", 1, 1, "e,es|e,ee|se"},
    {"KK1", 1, 1, "e|e,ee,se,es"},
    {"K1K1", 1, 1, "e|e,ee,es|se"},
    {"K1X", 1, 0, "e|e,ee,s,es|se"},
    {"KX1", 1, 0, "e|e,ee,se,s|es"},
    {"K1X1", 1, 0, "e|e,ee,s|se,es"},
    {"I1N", 0, 0, "e,s|e,ee|se"},
    {"I1K", 0, 1, "e,es,s|e,ee|se"},
    {"IK1", 0, 1, "e,s|e,ee,se,es"},
    {"I1K1", 0, 1, "e,s|e,ee,es|se"},
    {"I1X", 0, 0, "e,s|e,ee,s,es|se"},
    {"IX1", 0, 0, "e,s|e,ee,se,s|es"},
    {"I1X1", 0, 0, "e,s|e,ee,s|se,es"},
};

static int token_from(const char *t, size_t len)
{
    if (len == 1 && t[0] == 'e') return MQE2E__TOK_E;
    if (len == 1 && t[0] == 's') return MQE2E__TOK_S;
    if (len == 2 && memcmp(t, "ee", 2) == 0) return MQE2E__TOK_EE;
    if (len == 2 && memcmp(t, "es", 2) == 0) return MQE2E__TOK_ES;
    if (len == 2 && memcmp(t, "se", 2) == 0) return MQE2E__TOK_SE;
    if (len == 2 && memcmp(t, "ss", 2) == 0) return MQE2E__TOK_SS;
    return 0;
}

/* The table is trusted; a malformed row is a programming error reported as SUITE. */
static int load_row(mqe2e__noise_pattern *p, const pattern_row *row)
{
    memset(p, 0, sizeof *p);
    p->pre_s_initiator = row->pre_s_initiator;
    p->pre_s_responder = row->pre_s_responder;
    p->one_way = strlen(row->name) == 1;
    const char *c = row->messages;
    size_t msg = 0;
    while (*c != '\0') {
        size_t len = strcspn(c, ",|");
        int tok = token_from(c, len);
        if (tok == 0 || msg >= MQE2E__NOISE_MAX_MSGS || p->n_tokens[msg] >= MQE2E__NOISE_MAX_TOKENS)
            return MQE2E_ERR_SUITE;
        p->tokens[msg][p->n_tokens[msg]++] = (uint8_t)tok;
        c += len;
        if (*c == '|') msg++;
        if (*c != '\0') c++;
    }
    p->n_msgs = (uint8_t)(msg + 1);
    return MQE2E_OK;
}

/* psk0 goes first in message 1; pskN (N >= 1) goes last in message N. */
static int apply_psk(mqe2e__noise_pattern *p, unsigned n)
{
    size_t msg = n == 0 ? 0 : n - 1;
    if (msg >= p->n_msgs || p->n_psks >= MQE2E_NOISE_MAX_PSKS ||
        p->n_tokens[msg] >= MQE2E__NOISE_MAX_TOKENS)
        return MQE2E_ERR_SUITE;
    uint8_t *t = p->tokens[msg];
    if (n == 0) {
        memmove(t + 1, t, p->n_tokens[msg]);
        t[0] = MQE2E__TOK_PSK;
    } else {
        t[p->n_tokens[msg]] = MQE2E__TOK_PSK;
    }
    p->n_tokens[msg]++;
    p->n_psks++;
    return MQE2E_OK;
}

int mqe2e__noise_pattern_parse(mqe2e__noise_pattern *out, const char *protocol_name)
{
    size_t name_len = strlen(protocol_name);
    const size_t pre = sizeof NAME_PREFIX - 1, suf = sizeof NAME_SUFFIX - 1;
    if (name_len > MQE2E_NOISE_MAX_NAME_BYTES || name_len <= pre + suf ||
        memcmp(protocol_name, NAME_PREFIX, pre) != 0 ||
        memcmp(protocol_name + name_len - suf, NAME_SUFFIX, suf) != 0)
        return MQE2E_ERR_SUITE;

    const char *pat = protocol_name + pre;
    size_t pat_len = name_len - pre - suf;
    /* Base pattern names are upper-case letters and '1'; modifiers start lower-case. */
    size_t base_len = 0;
    while (base_len < pat_len && ((pat[base_len] >= 'A' && pat[base_len] <= 'Z') || pat[base_len] == '1'))
        base_len++;

    const pattern_row *row = NULL;
    for (size_t i = 0; i < sizeof PATTERNS / sizeof PATTERNS[0]; i++) {
        if (strlen(PATTERNS[i].name) == base_len && memcmp(PATTERNS[i].name, pat, base_len) == 0) {
            row = &PATTERNS[i];
            break;
        }
    }
    if (row == NULL) return MQE2E_ERR_SUITE;
    int rc = load_row(out, row);
    if (rc != MQE2E_OK) return rc;

    /* Modifiers: "pskN" joined by '+'; each N at most once, in any order the
     * name gives (the spec writes them ascending, e.g. psk0+psk2). */
    unsigned seen = 0;
    size_t i = base_len;
    while (i < pat_len) {
        if (i != base_len) {
            if (pat[i] != '+') return MQE2E_ERR_SUITE;
            i++;
        }
        if (pat_len - i < 4 || memcmp(pat + i, "psk", 3) != 0 || pat[i + 3] < '0' || pat[i + 3] > '9')
            return MQE2E_ERR_SUITE;
        unsigned n = (unsigned)(pat[i + 3] - '0');
        i += 4;
        if (i < pat_len && pat[i] >= '0' && pat[i] <= '9') return MQE2E_ERR_SUITE;
        if (seen & (1U << n)) return MQE2E_ERR_SUITE;
        seen |= 1U << n;
        rc = apply_psk(out, n);
        if (rc != MQE2E_OK) return rc;
    }
    return MQE2E_OK;
}
