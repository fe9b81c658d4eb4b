/* Topic policy: ordered MQTT filter rules, first match wins (MQTT 3.1.1 section 4.7). */
#include "mqe2e/policy.h"

#include <stdlib.h>
#include <string.h>

#include "internal_bind.h"
#include "internal_policy.h"
#include "mqe2e/envelope.h"
#include "mqe2e/error.h"
#include "mqe2e/keystore.h"

struct policy_rule {
    char *filter;
    char *target; /* NULL for plaintext */
    mqe2e_policy_kind kind;
    unsigned flags; /* MQE2E_POLICY_FLAG_* */
    mqe2e__bind *bind; /* NULL: nothing bound (section 2.5.1) */
};

struct mqe2e_policy {
    struct policy_rule *rules;
    size_t count;
    size_t cap;
    /* Bumped by every change of the rules (never 0): lookup caches built on
     * an older generation are stale (mqe2e__policy_generation). */
    uint64_t gen;
};

/* strlen bounded by max; SIZE_MAX when longer. */
static size_t bounded_len(const char *s, size_t max)
{
    size_t n = 0;
    while (s[n] != '\0') {
        if (n == max) {
            return SIZE_MAX;
        }
        n++;
    }
    return n;
}

bool mqe2e_topic_name_valid(const char *topic)
{
    /* strcspn stops at the first wildcard or at the end, in one vectorised
     * pass: the topic is checked on every message. */
    if (topic == NULL || topic[0] == '\0') {
        return false;
    }
    size_t n = strcspn(topic, "+#");
    return n <= MQE2E_TOPIC_MAX_BYTES && topic[n] == '\0';
}

bool mqe2e_topic_filter_valid(const char *filter)
{
    size_t n;
    if (filter == NULL) {
        return false;
    }
    n = bounded_len(filter, MQE2E_TOPIC_MAX_BYTES);
    if (n == 0 || n == SIZE_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        const bool starts_level = i == 0 || filter[i - 1] == '/';
        const bool ends_level = i + 1 == n || filter[i + 1] == '/';
        if (filter[i] == '+' && (!starts_level || !ends_level)) {
            return false;
        }
        /* '#' must be a whole level and the last one. */
        if (filter[i] == '#' && (!starts_level || i + 1 != n)) {
            return false;
        }
    }
    return true;
}

/* Match a valid filter against a valid topic name (both checked by the caller). */
static bool match_valid(const char *filter, const char *topic)
{
    const char *f = filter, *t = topic;

    /* MQTT 4.7.2: '$' topics are not reached through a leading wildcard. */
    if (topic[0] == '$' && (filter[0] == '+' || filter[0] == '#')) {
        return false;
    }
    for (;;) {
        /* Here f and t both point at the start of a level. */
        if (f[0] == '#') {
            return true; /* matches this level and all below, including none */
        }
        if (f[0] == '+') {
            f++;
            while (*t != '\0' && *t != '/') {
                t++;
            }
        } else {
            while (*f != '\0' && *f != '/' && *f == *t) {
                f++;
                t++;
            }
            if ((*f != '\0' && *f != '/') || (*t != '\0' && *t != '/')) {
                return false;
            }
        }
        /* Both at the end of a level. */
        if (*f == '\0' && *t == '\0') {
            return true;
        }
        if (*f == '\0') {
            return false; /* topic is deeper than the filter */
        }
        if (*t == '\0') {
            /* "a/#" also matches the parent level "a". */
            return f[0] == '/' && f[1] == '#';
        }
        f++;
        t++;
    }
}

bool mqe2e_topic_matches(const char *filter, const char *topic)
{
    if (!mqe2e_topic_filter_valid(filter) || !mqe2e_topic_name_valid(topic)) {
        return false;
    }
    return match_valid(filter, topic);
}

int mqe2e_policy_new(mqe2e_policy **out)
{
    mqe2e_policy *p;
    if (out == NULL) {
        return MQE2E_ERR_INVALID_ARG;
    }
    p = calloc(1, sizeof *p);
    if (p == NULL) {
        return MQE2E_ERR_NOMEM;
    }
    p->gen = 1;
    *out = p;
    return MQE2E_OK;
}

void mqe2e_policy_free(mqe2e_policy *p)
{
    if (p == NULL) {
        return;
    }
    for (size_t i = 0; i < p->count; i++) {
        free(p->rules[i].filter);
        free(p->rules[i].target);
        mqe2e__bind_free(p->rules[i].bind);
    }
    free(p->rules);
    free(p);
}

static char *dup_str(const char *s, size_t n)
{
    char *d = malloc(n + 1U);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Shared by add and add_text: the target is given as (pointer, length). */
static int policy_add_n(mqe2e_policy *p, const char *filter, size_t filter_len,
                        mqe2e_policy_kind kind, const char *target, size_t target_len,
                        unsigned flags)
{
    struct policy_rule r = {NULL, NULL, kind, flags, NULL};

    if ((flags & ~MQE2E_POLICY_FLAG_SIGNED) != 0 ||
        (flags != 0 && kind != MQE2E_POLICY_GROUP)) {
        return MQE2E_ERR_INVALID_ARG;
    }

    switch (kind) {
    case MQE2E_POLICY_PLAINTEXT:
        if (target != NULL) {
            return MQE2E_ERR_INVALID_ARG;
        }
        break;
    /* NOLINTNEXTLINE(bugprone-branch-clone): the two limits only happen to be equal */
    case MQE2E_POLICY_GROUP:
        if (target == NULL || target_len == 0 || target_len > MQE2E_GROUP_ID_MAX_BYTES ||
            memchr(target, '\0', target_len) != NULL) {
            return MQE2E_ERR_INVALID_ARG;
        }
        break;
    case MQE2E_POLICY_CHANNEL:
        if (target == NULL || target_len == 0 || target_len > MQE2E_CLIENT_ID_MAX_BYTES ||
            memchr(target, '\0', target_len) != NULL) {
            return MQE2E_ERR_INVALID_ARG;
        }
        break;
    default:
        return MQE2E_ERR_INVALID_ARG;
    }
    if (p->count == p->cap) {
        size_t ncap = p->cap == 0 ? 8U : p->cap * 2U;
        struct policy_rule *nr;
        if (ncap > SIZE_MAX / sizeof *nr) {
            return MQE2E_ERR_NOMEM;
        }
        nr = realloc(p->rules, ncap * sizeof *nr);
        if (nr == NULL) {
            return MQE2E_ERR_NOMEM;
        }
        p->rules = nr;
        p->cap = ncap;
    }
    r.filter = dup_str(filter, filter_len);
    if (target != NULL) {
        r.target = dup_str(target, target_len);
    }
    if (r.filter == NULL || (target != NULL && r.target == NULL)) {
        free(r.filter);
        free(r.target);
        return MQE2E_ERR_NOMEM;
    }
    p->rules[p->count++] = r;
    p->gen++;
    return MQE2E_OK;
}

int mqe2e_policy_add(mqe2e_policy *p, const char *filter, mqe2e_policy_kind kind,
                     const char *target)
{
    if (p == NULL || !mqe2e_topic_filter_valid(filter)) {
        return MQE2E_ERR_INVALID_ARG;
    }
    return policy_add_n(p, filter, strlen(filter), kind, target,
                        target != NULL ? strlen(target) : 0, 0);
}

int mqe2e_policy_add_flags(mqe2e_policy *p, const char *filter, mqe2e_policy_kind kind,
                          const char *target, unsigned flags)
{
    if (p == NULL || !mqe2e_topic_filter_valid(filter)) {
        return MQE2E_ERR_INVALID_ARG;
    }
    return policy_add_n(p, filter, strlen(filter), kind, target,
                        target != NULL ? strlen(target) : 0, flags);
}

/* Takes @p b (freed on failure): only group rules bind (channel mode does not). */
static int attach_bind(mqe2e_policy *p, struct policy_rule *r, mqe2e__bind *b)
{
    p->gen++;
    if (r->kind != MQE2E_POLICY_GROUP) {
        mqe2e__bind_free(b);
        return MQE2E_ERR_POLICY;
    }
    mqe2e__bind_free(r->bind);
    r->bind = b;
    return MQE2E_OK;
}

int mqe2e_policy_bind_last(mqe2e_policy *p, const char *list)
{
    mqe2e__bind *b = NULL;
    int rc;

    if (p == NULL || list == NULL || p->count == 0) return MQE2E_ERR_INVALID_ARG;
    rc = mqe2e__bind_parse(list, strlen(list), &b);
    if (rc != MQE2E_OK) return rc;
    return attach_bind(p, &p->rules[p->count - 1U], b);
}

static const char bind_sep[] = ";bind";

/* True if @p a starts like one of the actions of a rule. */
static bool is_action(const char *a)
{
    return strcmp(a, "plaintext") == 0 || strncmp(a, "group:", 6) == 0 ||
           strncmp(a, "signed-group:", 13) == 0 || strncmp(a, "channel:", 8) == 0;
}

/* Parse `FILTER=ACTION` (NUL-terminated) and append it; @p b (may be NULL)
 * is taken: attached to the new rule, or freed on any failure. */
static int add_text_rule(mqe2e_policy *p, const char *rule, mqe2e__bind *b)
{
    static const char group_prefix[] = "group:";
    static const char channel_prefix[] = "channel:";
    static const char signed_prefix[] = "signed-group:";
    const char *eq, *action;
    size_t filter_len;
    char *filter;
    int rc;

    /* Split at the LAST '=': a topic filter may contain '=', a target may not. */
    eq = strrchr(rule, '=');
    if (eq == NULL || eq == rule) {
        mqe2e__bind_free(b);
        return MQE2E_ERR_DECODE;
    }
    filter_len = (size_t)(eq - rule);
    action = eq + 1;
    filter = dup_str(rule, filter_len);
    if (filter == NULL) {
        mqe2e__bind_free(b);
        return MQE2E_ERR_NOMEM;
    }
    const size_t before = p->count;
    if (!mqe2e_topic_filter_valid(filter)) {
        rc = MQE2E_ERR_INVALID_ARG;
    } else if (strcmp(action, "plaintext") == 0) {
        rc = policy_add_n(p, filter, filter_len, MQE2E_POLICY_PLAINTEXT, NULL, 0, 0);
    } else if (strncmp(action, group_prefix, sizeof group_prefix - 1U) == 0) {
        const char *t = action + sizeof group_prefix - 1U;
        rc = *t == '\0' ? MQE2E_ERR_DECODE
                        : policy_add_n(p, filter, filter_len, MQE2E_POLICY_GROUP, t, strlen(t), 0);
    } else if (strncmp(action, signed_prefix, sizeof signed_prefix - 1U) == 0) {
        const char *t = action + sizeof signed_prefix - 1U;
        rc = *t == '\0' ? MQE2E_ERR_DECODE
                        : policy_add_n(p, filter, filter_len, MQE2E_POLICY_GROUP, t, strlen(t),
                                       MQE2E_POLICY_FLAG_SIGNED);
    } else if (strncmp(action, channel_prefix, sizeof channel_prefix - 1U) == 0) {
        const char *t = action + sizeof channel_prefix - 1U;
        rc = *t == '\0' ? MQE2E_ERR_DECODE
                        : policy_add_n(p, filter, filter_len, MQE2E_POLICY_CHANNEL, t, strlen(t), 0);
    } else {
        rc = MQE2E_ERR_DECODE;
    }
    free(filter);
    if (rc != MQE2E_OK || b == NULL || p->count != before + 1U) {
        mqe2e__bind_free(b);
        return rc;
    }
    rc = attach_bind(p, &p->rules[p->count - 1U], b);
    if (rc != MQE2E_OK) {
        /* Not added half: the rule goes again. */
        p->count--;
        p->gen++;
        free(p->rules[p->count].filter);
        free(p->rules[p->count].target);
    }
    return rc;
}

int mqe2e_policy_add_text(mqe2e_policy *p, const char *rule)
{
    const size_t sep = sizeof bind_sep - 1U;
    const char *eq;

    if (p == NULL || rule == NULL) {
        return MQE2E_ERR_INVALID_ARG;
    }
    eq = strrchr(rule, '=');
    if (eq != NULL && !is_action(eq + 1) && (size_t)(eq - rule) > sep &&
        memcmp(eq - sep, bind_sep, sep) == 0) {
        /* FILTER=ACTION;bind=LIST: no valid action starts like a bind item,
         * so no rule valid without the suffix changes meaning. */
        mqe2e__bind *b = NULL;
        int rc = mqe2e__bind_parse(eq + 1, strlen(eq + 1), &b);
        if (rc != MQE2E_OK) return rc;
        char *head = dup_str(rule, (size_t)(eq - rule) - sep);
        if (head == NULL) {
            mqe2e__bind_free(b);
            return MQE2E_ERR_NOMEM;
        }
        rc = add_text_rule(p, head, b);
        free(head);
        return rc;
    }
    return add_text_rule(p, rule, NULL);
}

int mqe2e__policy_lookup_bind(const mqe2e_policy *p, const char *topic, mqe2e_policy_kind *kind,
                              const char **target, unsigned *flags,
                              const struct mqe2e__bind **bind)
{
    if (p == NULL || kind == NULL || target == NULL || flags == NULL ||
        !mqe2e_topic_name_valid(topic)) {
        return MQE2E_ERR_INVALID_ARG;
    }
    /* Stored filters were validated when added, the topic just above. */
    for (size_t i = 0; i < p->count; i++) {
        if (match_valid(p->rules[i].filter, topic)) {
            *kind = p->rules[i].kind;
            *target = p->rules[i].target;
            *flags = p->rules[i].flags;
            if (bind != NULL) *bind = p->rules[i].bind;
            return MQE2E_OK;
        }
    }
    return MQE2E_ERR_NO_POLICY;
}

uint64_t mqe2e__policy_generation(const mqe2e_policy *p)
{
    return p != NULL ? p->gen : 0;
}

int mqe2e_policy_lookup_flags(const mqe2e_policy *p, const char *topic, mqe2e_policy_kind *kind,
                              const char **target, unsigned *flags)
{
    return mqe2e__policy_lookup_bind(p, topic, kind, target, flags, NULL);
}

int mqe2e_policy_lookup(const mqe2e_policy *p, const char *topic, mqe2e_policy_kind *kind,
                        const char **target)
{
    unsigned flags;
    return mqe2e_policy_lookup_flags(p, topic, kind, target, &flags);
}

size_t mqe2e_policy_count(const mqe2e_policy *p)
{
    return p != NULL ? p->count : 0;
}
