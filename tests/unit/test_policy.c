/* Topic policy: MQTT wildcard matching, rule order, text rules, validation. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqe2e/envelope.h"
#include "mqe2e/error.h"
#include "mqe2e/policy.h"

struct match_case {
    const char *filter;
    const char *topic;
    bool match;
};

Test(policy, wildcard_table)
{
    static const struct match_case cases[] = {
        {"a/b/c", "a/b/c", true},
        {"a/b/c", "a/b", false},
        {"a/b", "a/b/c", false},
        {"a/b/c", "a/b/cd", false},
        {"a/b/cd", "a/b/c", false},
        {"A/b", "a/b", false},
        {"#", "a", true},
        {"#", "a/b/c", true},
        {"#", "/", true},
        {"a/#", "a", true}, /* '#' also matches the parent level */
        {"a/#", "a/", true},
        {"a/#", "a/b", true},
        {"a/#", "a/b/c", true},
        {"a/#", "ab", false},
        {"a/#", "b/a", false},
        {"a/b/#", "a", false},
        {"+", "a", true},
        {"+", "a/b", false},
        {"+", "/", false},
        {"+/+", "/", true}, /* two empty levels */
        {"/+", "/", true},
        {"+/", "a/", true},
        {"a/+", "a/", true}, /* '+' matches an empty level */
        {"a/+", "a", false},
        {"a/+/c", "a//c", true},
        {"a/+/c", "a/b/c", true},
        {"a/+/c", "a/b/d", false},
        {"a/+/c", "a/b/x/c", false},
        {"+/b/#", "a/b", true},
        {"+/b/#", "x/b/c/d", true},
        {"+/+/+", "a/b/c", true},
        {"+/+/+", "a/b", false},
        {"/#", "/a", true},
        {"/#", "a", false},
        {"sport/tennis/+", "sport/tennis/player1", true},
        {"sport/tennis/+", "sport/tennis/player1/ranking", false},
        {"sport/#", "sport", true},
        /* '$' topics are not reached through a leading wildcard (MQTT 4.7.2). */
        {"#", "$SYS/broker/load", false},
        {"+/broker/load", "$SYS/broker/load", false},
        {"+", "$SYS", false},
        {"$SYS/#", "$SYS/broker/load", true},
        {"$SYS/+/load", "$SYS/broker/load", true},
        {"$SYS", "$SYS", true},
        {"a/#", "a/$SYS", true},
        {"a/+", "a/$x", true},
        /* Invalid filters or topic names never match. */
        {"a/#/b", "a/x/b", false},
        {"a#", "a#", false},
        {"a+", "a+", false},
        {"a/+", "a/+", false},
        {"#", "", false},
        {"", "", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(mqe2e_topic_matches(cases[i].filter, cases[i].topic), cases[i].match,
                     "filter '%s' topic '%s' should %smatch", cases[i].filter, cases[i].topic,
                     cases[i].match ? "" : "not ");
    }
    cr_assert_eq(mqe2e_topic_matches(NULL, "a"), false);
    cr_assert_eq(mqe2e_topic_matches("a", NULL), false);
}

Test(policy, filter_and_name_validation)
{
    static const char *good_filters[] = {"a",  "#",     "+",      "a/#",     "+/+", "/",
                                         "//", "a/+/b", "$SYS/#", "a b/c=d", "+/#", "/+/"};
    static const char *bad_filters[] = {"",     "a#",   "#a", "a/#/b", "a/b#", "++",
                                        "a+/b", "a/+b", "##", "#/",    "a/#/"};
    for (size_t i = 0; i < sizeof good_filters / sizeof good_filters[0]; i++) {
        cr_assert(mqe2e_topic_filter_valid(good_filters[i]), "'%s'", good_filters[i]);
    }
    for (size_t i = 0; i < sizeof bad_filters / sizeof bad_filters[0]; i++) {
        cr_assert_not(mqe2e_topic_filter_valid(bad_filters[i]), "'%s'", bad_filters[i]);
    }
    cr_assert_not(mqe2e_topic_filter_valid(NULL));

    cr_assert(mqe2e_topic_name_valid("a"));
    cr_assert(mqe2e_topic_name_valid("/"));
    cr_assert(mqe2e_topic_name_valid("$SYS/x"));
    cr_assert_not(mqe2e_topic_name_valid(""));
    cr_assert_not(mqe2e_topic_name_valid("a/+"));
    cr_assert_not(mqe2e_topic_name_valid("a/#"));
    cr_assert_not(mqe2e_topic_name_valid("a+b"));
    cr_assert_not(mqe2e_topic_name_valid(NULL));

    /* Length limit: 65535 bytes is the most a topic can have. */
    char *t = malloc(65537);
    cr_assert_not_null(t);
    memset(t, 'x', 65536);
    t[65535] = '\0';
    cr_assert(mqe2e_topic_name_valid(t));
    cr_assert(mqe2e_topic_filter_valid(t));
    t[65535] = 'x';
    t[65536] = '\0';
    cr_assert_not(mqe2e_topic_name_valid(t));
    cr_assert_not(mqe2e_topic_filter_valid(t));
    free(t);
}

Test(policy, no_policy_and_first_match_wins)
{
    mqe2e_policy *p = NULL;
    mqe2e_policy_kind kind;
    const char *target = "unset";

    cr_assert_eq(mqe2e_policy_new(&p), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_count(p), 0U);
    cr_assert_eq(mqe2e_policy_lookup(p, "a/b", &kind, &target), MQE2E_ERR_NO_POLICY);

    cr_assert_eq(mqe2e_policy_add(p, "home/public/#", MQE2E_POLICY_PLAINTEXT, NULL), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add(p, "home/+/cmd", MQE2E_POLICY_CHANNEL, "switch-1"), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add(p, "home/#", MQE2E_POLICY_GROUP, "home"), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add(p, "home/kitchen/cmd", MQE2E_POLICY_GROUP, "never"), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_count(p), 4U);

    cr_assert_eq(mqe2e_policy_lookup(p, "home/public/weather", &kind, &target), MQE2E_OK);
    cr_assert_eq(kind, MQE2E_POLICY_PLAINTEXT);
    cr_assert_null(target);
    cr_assert_eq(mqe2e_policy_lookup(p, "home/public/cmd", &kind, &target), MQE2E_OK);
    cr_assert_eq(kind, MQE2E_POLICY_PLAINTEXT, "earlier rule wins over a later, narrower one");
    cr_assert_eq(mqe2e_policy_lookup(p, "home/kitchen/cmd", &kind, &target), MQE2E_OK);
    cr_assert_eq(kind, MQE2E_POLICY_CHANNEL);
    cr_assert_str_eq(target, "switch-1");
    cr_assert_eq(mqe2e_policy_lookup(p, "home/kitchen/temp", &kind, &target), MQE2E_OK);
    cr_assert_eq(kind, MQE2E_POLICY_GROUP);
    cr_assert_str_eq(target, "home");
    cr_assert_eq(mqe2e_policy_lookup(p, "home", &kind, &target), MQE2E_OK);
    cr_assert_str_eq(target, "home");
    cr_assert_eq(mqe2e_policy_lookup(p, "office/x", &kind, &target), MQE2E_ERR_NO_POLICY);
    cr_assert_eq(mqe2e_policy_lookup(p, "homes", &kind, &target), MQE2E_ERR_NO_POLICY);

    /* Bad topic names are an argument error, not a missing policy. */
    cr_assert_eq(mqe2e_policy_lookup(p, "home/#", &kind, &target), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_policy_lookup(p, "", &kind, &target), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_policy_lookup(p, NULL, &kind, &target), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_policy_lookup(NULL, "a", &kind, &target), MQE2E_ERR_INVALID_ARG);
    mqe2e_policy_free(p);
    mqe2e_policy_free(NULL);
}

Test(policy, add_refuses_bad_rules)
{
    mqe2e_policy *p = NULL;
    char long_id[300];

    cr_assert_eq(mqe2e_policy_new(&p), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add(p, "a/#/b", MQE2E_POLICY_GROUP, "g"), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_policy_add(p, "", MQE2E_POLICY_GROUP, "g"), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_policy_add(p, NULL, MQE2E_POLICY_GROUP, "g"), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_policy_add(p, "a", MQE2E_POLICY_GROUP, NULL), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_policy_add(p, "a", MQE2E_POLICY_GROUP, ""), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_policy_add(p, "a", MQE2E_POLICY_CHANNEL, NULL), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_policy_add(p, "a", MQE2E_POLICY_PLAINTEXT, "x"), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_policy_add(p, "a", (mqe2e_policy_kind)0, "x"), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_policy_add(p, "a", (mqe2e_policy_kind)7, "x"), MQE2E_ERR_INVALID_ARG);
    memset(long_id, 'g', sizeof long_id);
    long_id[256] = '\0';
    cr_assert_eq(mqe2e_policy_add(p, "a", MQE2E_POLICY_GROUP, long_id), MQE2E_ERR_INVALID_ARG);
    long_id[255] = '\0';
    cr_assert_eq(mqe2e_policy_add(p, "a", MQE2E_POLICY_GROUP, long_id), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add(NULL, "a", MQE2E_POLICY_PLAINTEXT, NULL), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_policy_count(p), 1U, "only the valid rule was added");
    cr_assert_eq(mqe2e_policy_new(NULL), MQE2E_ERR_INVALID_ARG);
    mqe2e_policy_free(p);
}

Test(policy, many_rules)
{
    mqe2e_policy *p = NULL;
    char f[32], g[32];
    mqe2e_policy_kind kind;
    const char *target;

    cr_assert_eq(mqe2e_policy_new(&p), MQE2E_OK);
    for (int i = 0; i < 100; i++) {
        snprintf(f, sizeof f, "dev/%d/#", i);
        snprintf(g, sizeof g, "g%d", i);
        cr_assert_eq(mqe2e_policy_add(p, f, MQE2E_POLICY_GROUP, g), MQE2E_OK);
    }
    cr_assert_eq(mqe2e_policy_count(p), 100U);
    cr_assert_eq(mqe2e_policy_lookup(p, "dev/73/temp", &kind, &target), MQE2E_OK);
    cr_assert_str_eq(target, "g73");
    mqe2e_policy_free(p);
}

Test(policy, text_rules)
{
    mqe2e_policy *p = NULL;
    mqe2e_policy_kind kind;
    const char *target;

    cr_assert_eq(mqe2e_policy_new(&p), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add_text(p, "sensors/+/hr=group:hr-monitors"), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add_text(p, "devices/+/cmd=channel:authority"), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add_text(p, "public/#=plaintext"), MQE2E_OK);
    /* Split at the last '=': the filter may contain '='. */
    cr_assert_eq(mqe2e_policy_add_text(p, "k=v/#=group:kv"), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_count(p), 4U);

    cr_assert_eq(mqe2e_policy_lookup(p, "sensors/dev1/hr", &kind, &target), MQE2E_OK);
    cr_assert_eq(kind, MQE2E_POLICY_GROUP);
    cr_assert_str_eq(target, "hr-monitors");
    cr_assert_eq(mqe2e_policy_lookup(p, "devices/x/cmd", &kind, &target), MQE2E_OK);
    cr_assert_eq(kind, MQE2E_POLICY_CHANNEL);
    cr_assert_str_eq(target, "authority");
    cr_assert_eq(mqe2e_policy_lookup(p, "public", &kind, &target), MQE2E_OK);
    cr_assert_eq(kind, MQE2E_POLICY_PLAINTEXT);
    cr_assert_null(target);
    cr_assert_eq(mqe2e_policy_lookup(p, "k=v/1", &kind, &target), MQE2E_OK);
    cr_assert_str_eq(target, "kv");

    /* Syntax errors. */
    static const char *bad_syntax[] = {
        "no-equals", "=group:g",     "a=",        "a=group:",      "a=channel:",    "a=group",
        "a=plain",   "a=plaintext ", "a=Group:g", "a=encrypted:g", "a=plaintext:x",
    };
    for (size_t i = 0; i < sizeof bad_syntax / sizeof bad_syntax[0]; i++) {
        cr_assert_eq(mqe2e_policy_add_text(p, bad_syntax[i]), MQE2E_ERR_DECODE, "'%s'",
                     bad_syntax[i]);
    }
    /* Good syntax, bad filter. */
    cr_assert_eq(mqe2e_policy_add_text(p, "a/#/b=group:g"), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_policy_add_text(p, "a+=plaintext"), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_policy_add_text(NULL, "a=plaintext"), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_policy_add_text(p, NULL), MQE2E_ERR_INVALID_ARG);
    cr_assert_eq(mqe2e_policy_count(p), 4U, "no refused rule was added");
    mqe2e_policy_free(p);
}

/* Lookups check the topic once and match against filters checked when they
 * were added: the outcome must equal mqe2e_topic_matches() rule by rule. */
Test(policy, lookup_agrees_with_topic_matches)
{
    static const char *filters[] = {"a/+/c", "$SYS/#", "a/#", "+/b", "#", "x/y", "+"};
    static const char *topics[] = {"a/b/c", "$SYS/x", "a", "q/b", "x/y", "z", "$SYS", "a/b/c/d"};
    for (size_t k = 0; k < sizeof filters / sizeof *filters; k++) {
        mqe2e_policy *p = NULL;
        cr_assert_eq(mqe2e_policy_new(&p), MQE2E_OK);
        /* One rule per policy: found iff it matches. */
        cr_assert_eq(mqe2e_policy_add(p, filters[k], MQE2E_POLICY_GROUP, "g"), MQE2E_OK);
        for (size_t t = 0; t < sizeof topics / sizeof *topics; t++) {
            mqe2e_policy_kind kind;
            const char *target = NULL;
            int rc = mqe2e_policy_lookup(p, topics[t], &kind, &target);
            bool m = mqe2e_topic_matches(filters[k], topics[t]);
            cr_assert_eq(rc, m ? MQE2E_OK : MQE2E_ERR_NO_POLICY, "%s vs %s", filters[k],
                         topics[t]);
        }
        mqe2e_policy_kind kind;
        const char *target = NULL;
        cr_assert_eq(mqe2e_policy_lookup(p, "a/+", &kind, &target), MQE2E_ERR_INVALID_ARG);
        cr_assert_eq(mqe2e_policy_lookup(p, "a/#", &kind, &target), MQE2E_ERR_INVALID_ARG);
        cr_assert_eq(mqe2e_policy_lookup(p, "", &kind, &target), MQE2E_ERR_INVALID_ARG);
        mqe2e_policy_free(p);
    }
}

Test(policy, topic_name_length_bound)
{
    char *t = malloc(MQE2E_TOPIC_MAX_BYTES + 2U);
    cr_assert_not_null(t);
    memset(t, 'a', MQE2E_TOPIC_MAX_BYTES);
    t[MQE2E_TOPIC_MAX_BYTES] = '\0';
    cr_assert(mqe2e_topic_name_valid(t));
    t[MQE2E_TOPIC_MAX_BYTES] = 'a';
    t[MQE2E_TOPIC_MAX_BYTES + 1U] = '\0';
    cr_assert_not(mqe2e_topic_name_valid(t));
    t[5] = '#';
    cr_assert_not(mqe2e_topic_name_valid(t));
    free(t);
}
