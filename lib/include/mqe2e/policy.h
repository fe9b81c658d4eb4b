/**
 * @file policy.h
 * @brief Topic policy: which topics are protected, and with which key.
 *
 * Rules map MQTT topic filters (with `+` and `#`) to a group, a pairwise
 * channel or explicit plaintext. Rules are tried in the order added; the first
 * whose filter matches the topic wins. A topic that no rule matches has no
 * policy: publishing on it is refused and messages received on it are dropped.
 */
#ifndef MQE2E_POLICY_H
#define MQE2E_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "mqe2e/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Opaque rule list. */
typedef struct mqe2e_policy mqe2e_policy;

/** What a rule does with matching topics. */
typedef enum mqe2e_policy_kind {
    MQE2E_POLICY_PLAINTEXT = 1, /**< explicitly unprotected */
    MQE2E_POLICY_GROUP = 2,     /**< sealed with a group key; target = group id */
    MQE2E_POLICY_CHANNEL = 3,   /**< sealed with a pairwise channel; target = peer id */
} mqe2e_policy_kind;

/**
 * Rule flag: the group's envelopes must be signed (signed group mode). Only
 * valid with ::MQE2E_POLICY_GROUP. Publishing seals in mode 3; receiving
 * accepts mode 3 only, from senders in the group's signer directory.
 */
#define MQE2E_POLICY_FLAG_SIGNED 0x1U

/** @brief New empty policy. *out is the caller's; free with mqe2e_policy_free(). */
MQE2E_API int mqe2e_policy_new(mqe2e_policy **out);

/** @brief Free a policy. NULL is a no-op. */
MQE2E_API void mqe2e_policy_free(mqe2e_policy *p);

/**
 * @brief Append a rule. Strings are copied.
 * @param p      the policy.
 * @param filter valid MQTT topic filter.
 * @param kind   what the rule does with matching topics.
 * @param target group id or peer id; NULL for ::MQE2E_POLICY_PLAINTEXT.
 * @return ::MQE2E_OK, ::MQE2E_ERR_INVALID_ARG (bad filter/kind/target), ::MQE2E_ERR_NOMEM.
 */
MQE2E_API int mqe2e_policy_add(mqe2e_policy *p, const char *filter, mqe2e_policy_kind kind,
                               const char *target);

/**
 * @brief Append a rule with flags (::MQE2E_POLICY_FLAG_SIGNED). Strings are copied.
 * @param p      the policy.
 * @param filter valid MQTT topic filter.
 * @param kind   what the rule does with matching topics.
 * @param target group id or peer id; NULL for ::MQE2E_POLICY_PLAINTEXT.
 * @param flags  0, or ::MQE2E_POLICY_FLAG_SIGNED with ::MQE2E_POLICY_GROUP.
 * @return as mqe2e_policy_add(); ::MQE2E_ERR_INVALID_ARG for unknown flags or
 *         a flag the kind does not take.
 */
MQE2E_API int mqe2e_policy_add_flags(mqe2e_policy *p, const char *filter, mqe2e_policy_kind kind,
                                     const char *target, unsigned flags);

/**
 * @brief Parse and append one rule written as text: `FILTER=group:NAME`,
 *        `FILTER=signed-group:NAME` (a group rule with ::MQE2E_POLICY_FLAG_SIGNED),
 *        `FILTER=channel:PEER` or `FILTER=plaintext`; a group rule may end in
 *        `;bind=LIST` (see mqe2e_policy_bind_last()).
 * @return as mqe2e_policy_add(), ::MQE2E_ERR_DECODE for bad syntax,
 *         ::MQE2E_ERR_POLICY for a bind list on a non-group rule or naming a
 *         property brokers change.
 */
MQE2E_API int mqe2e_policy_add_text(mqe2e_policy *p, const char *rule);

/**
 * @brief Bind MQTT v5 properties and the retain flag into the associated
 *        data of the last rule's envelopes (docs/PROTOCOL.md section 2.5.1).
 * Sender and receivers must bind the same list for the topic: a message whose
 * bound properties or retain flag differ from what was sealed fails
 * authentication (::MQE2E_ERR_AUTH). Only group rules (signed or not) bind;
 * channel mode does not.
 * @param p    the policy; its last rule gets the list (replacing any).
 * @param list comma-separated items, copied: `payload-format`,
 *             `content-type`, `response-topic`, `correlation-data`,
 *             `user:NAME` (user properties of that name; NAME taken
 *             verbatim, no comma) and `retain`.
 * @return ::MQE2E_OK; ::MQE2E_ERR_INVALID_ARG (no rule yet, NULL);
 *         ::MQE2E_ERR_DECODE (empty list or item, unknown item);
 *         ::MQE2E_ERR_POLICY (`message-expiry`, `topic-alias` or
 *         `subscription-id`, which brokers change; or the last rule is not a
 *         group rule); ::MQE2E_ERR_NOMEM.
 */
MQE2E_API int mqe2e_policy_bind_last(mqe2e_policy *p, const char *list);

/**
 * @brief Find the rule for a topic name.
 * @param p      the policy.
 * @param topic  NUL-terminated topic name (no wildcards).
 * @param kind   out: the matching rule's kind.
 * @param target out: borrowed from the policy (NULL for plaintext).
 * @return ::MQE2E_OK, ::MQE2E_ERR_NO_POLICY, ::MQE2E_ERR_INVALID_ARG (bad topic name).
 */
MQE2E_API int mqe2e_policy_lookup(const mqe2e_policy *p, const char *topic,
                                  mqe2e_policy_kind *kind, const char **target);

/**
 * @brief mqe2e_policy_lookup() that also returns the matching rule's flags.
 * @param p      the policy.
 * @param topic  NUL-terminated topic name (no wildcards).
 * @param kind   out: the matching rule's kind.
 * @param target out: borrowed from the policy (NULL for plaintext).
 * @param flags  out: the rule's MQE2E_POLICY_FLAG_* bits.
 * @return as mqe2e_policy_lookup().
 */
MQE2E_API int mqe2e_policy_lookup_flags(const mqe2e_policy *p, const char *topic,
                                        mqe2e_policy_kind *kind, const char **target,
                                        unsigned *flags);

/** @brief Number of rules. */
MQE2E_API size_t mqe2e_policy_count(const mqe2e_policy *p);

/** @brief True if @p topic (a name, no wildcards) matches @p filter per MQTT 3.1.1 §4.7. */
MQE2E_API bool mqe2e_topic_matches(const char *filter, const char *topic);

/** @brief True if @p filter is a valid MQTT topic filter. */
MQE2E_API bool mqe2e_topic_filter_valid(const char *filter);

/** @brief True if @p topic is a valid topic name (non-empty, no wildcards, no NUL). */
MQE2E_API bool mqe2e_topic_name_valid(const char *topic);

#ifdef __cplusplus
}
#endif
#endif
