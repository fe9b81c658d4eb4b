/*
 * Topic policy parser and matcher, checked against an independent reference
 * matcher written here from MQTT 3.1.1 section 4.7.
 *
 * The input is split at '\n': line 1 is a topic filter, line 2 a topic name,
 * every further line a rule for mqe2e_policy_add_text ("filter=action", a
 * group rule possibly ending in ";bind=LIST").
 * Invariants: mqe2e_topic_filter_valid / mqe2e_topic_name_valid /
 * mqe2e_topic_matches agree with the reference; a valid name matches itself
 * and "#" matches every valid name not starting with '$'; and
 * mqe2e_policy_lookup returns the target of the first accepted rule whose
 * filter matches.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "mqe2e/envelope.h"
#include "mqe2e/error.h"
#include "mqe2e/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_RULES 64U

/* Length of the level starting at s. */
static size_t level(const char *s)
{
    size_t n = 0;
    while (s[n] != '\0' && s[n] != '/') n++;
    return n;
}

static bool ref_is_action(const char *a)
{
    return strcmp(a, "plaintext") == 0 || strncmp(a, "group:", 6) == 0 ||
           strncmp(a, "signed-group:", 13) == 0 || strncmp(a, "channel:", 8) == 0;
}

static bool ref_name_valid(const char *t)
{
    size_t n = strlen(t);
    return n > 0 && n <= MQE2E_TOPIC_MAX_BYTES && strchr(t, '+') == NULL &&
           strchr(t, '#') == NULL;
}

static bool ref_filter_valid(const char *f)
{
    size_t n = strlen(f);
    if (n == 0 || n > MQE2E_TOPIC_MAX_BYTES) return false;
    for (const char *p = f;; p++) {
        size_t l = level(p);
        bool wild = memchr(p, '+', l) != NULL || memchr(p, '#', l) != NULL;
        if (wild) {
            if (l != 1) return false;
            if (p[0] == '#' && p[1] != '\0') return false;
        }
        p += l;
        if (*p == '\0') return true;
    }
}

static bool ref_matches(const char *f, const char *t)
{
    if (!ref_filter_valid(f) || !ref_name_valid(t)) return false;
    if (t[0] == '$' && (f[0] == '+' || f[0] == '#')) return false;
    const char *fp = f, *tp = t;
    bool t_done = false;
    for (;;) {
        size_t fl = level(fp);
        if (fl == 1 && fp[0] == '#') return true;
        if (t_done) return false;
        size_t tl = level(tp);
        if (!(fl == 1 && fp[0] == '+') && (fl != tl || memcmp(fp, tp, fl) != 0)) return false;
        fp += fl;
        tp += tl;
        if (*tp == '\0') t_done = true;
        else tp++;
        if (*fp == '\0') return t_done;
        fp++;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1U);
    char *lines[2 + MAX_RULES];
    size_t nl = 0;
    FUZZ_ASSERT(buf != NULL);
    if (size > 0) memcpy(buf, data, size);
    buf[size] = '\0';
    /* An embedded NUL ends the input as C sees it. */
    for (char *p = buf; nl < 2 + MAX_RULES;) {
        lines[nl++] = p;
        char *e = strchr(p, '\n');
        if (e == NULL) break;
        *e = '\0';
        p = e + 1;
    }
    const char *filter = lines[0];
    const char *topic = nl > 1 ? lines[1] : "a/b";

    bool fv = mqe2e_topic_filter_valid(filter);
    bool tv = mqe2e_topic_name_valid(topic);
    FUZZ_ASSERT(fv == ref_filter_valid(filter));
    FUZZ_ASSERT(tv == ref_name_valid(topic));
    FUZZ_ASSERT(mqe2e_topic_matches(filter, topic) == ref_matches(filter, topic));
    FUZZ_ASSERT(mqe2e_topic_name_valid(filter) == ref_name_valid(filter));
    if (tv) {
        FUZZ_ASSERT(mqe2e_topic_matches(topic, topic));
        FUZZ_ASSERT(mqe2e_topic_matches("#", topic) == (topic[0] != '$'));
    }

    mqe2e_policy *p = NULL;
    const char *accepted[MAX_RULES];
    size_t na = 0;
    FUZZ_ASSERT(mqe2e_policy_new(&p) == MQE2E_OK);
    for (size_t i = 2; i < nl; i++) {
        int rc = mqe2e_policy_add_text(p, lines[i]);
        if (rc == MQE2E_OK) {
            /* The rule without a ";bind=LIST" suffix (PROTOCOL.md section 6):
             * recognised when the text after the last '=' is not an action
             * and the text before that '=' ends in ";bind". */
            char *eq = strrchr(lines[i], '=');
            if (eq != NULL && !ref_is_action(eq + 1) && eq - lines[i] > 5 &&
                memcmp(eq - 5, ";bind", 5) == 0)
                eq[-5] = '\0';
            accepted[na++] = lines[i];
        } else {
            /* POLICY: a bind list on a non-group rule or naming an unbindable property. */
            FUZZ_ASSERT(rc == MQE2E_ERR_DECODE || rc == MQE2E_ERR_INVALID_ARG ||
                        rc == MQE2E_ERR_TOO_LARGE || rc == MQE2E_ERR_POLICY);
        }
    }
    FUZZ_ASSERT(mqe2e_policy_count(p) == na);

    mqe2e_policy_kind kind;
    const char *target = NULL;
    unsigned flags = 0;
    int rc = mqe2e_policy_lookup_flags(p, topic, &kind, &target, &flags);
    if (!tv) {
        FUZZ_ASSERT(rc == MQE2E_ERR_INVALID_ARG);
    } else {
        /* Reference: the first accepted rule whose filter (text before the
         * last '=') matches. */
        size_t hit = na;
        for (size_t i = 0; i < na && hit == na; i++) {
            const char *eq = strrchr(accepted[i], '=');
            size_t fl = (size_t)(eq - accepted[i]);
            char *f = malloc(fl + 1U);
            FUZZ_ASSERT(f != NULL);
            memcpy(f, accepted[i], fl);
            f[fl] = '\0';
            if (ref_matches(f, topic)) hit = i;
            free(f);
        }
        if (hit == na) {
            FUZZ_ASSERT(rc == MQE2E_ERR_NO_POLICY);
        } else {
            FUZZ_ASSERT(rc == MQE2E_OK);
            const char *action = strrchr(accepted[hit], '=') + 1;
            if (strcmp(action, "plaintext") == 0) {
                FUZZ_ASSERT(kind == MQE2E_POLICY_PLAINTEXT);
                FUZZ_ASSERT(flags == 0);
            } else {
                /* group:NAME, signed-group:NAME (group kind, signed flag) or channel:PEER */
                const char *colon = strchr(action, ':');
                const int is_signed = strncmp(action, "signed-group:", 13) == 0;
                FUZZ_ASSERT(colon != NULL && target != NULL && strcmp(target, colon + 1) == 0);
                FUZZ_ASSERT(kind == (action[0] == 'g' || is_signed ? MQE2E_POLICY_GROUP
                                                                   : MQE2E_POLICY_CHANNEL));
                FUZZ_ASSERT(((flags & MQE2E_POLICY_FLAG_SIGNED) != 0) == is_signed);
            }
        }
    }
    mqe2e_policy_free(p);
    free(buf);
    return 0;
}
