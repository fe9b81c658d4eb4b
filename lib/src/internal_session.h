/*
 * The device session's state and the functions its files share (not
 * installed). session.c: actions, receive path, publish, timers, lifecycle;
 * session_control.c: HELLO, PUSH, updates, revocations, grants, pruning;
 * session_channel.c: pairwise channels; session_hold.c: the hold queue.
 * Nothing here takes a lock or reads a clock: the caller's clocks are in
 * s->t for the duration of each public call.
 */
#ifndef MQE2E_INTERNAL_SESSION_H
#define MQE2E_INTERNAL_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "internal_control.h"
#include "mqe2e/mqe2e.h"

/* Most PUBLISH actions waiting (in the session plus the caller's backlog). */
#define CTL_OUTBOX_MAX 4096U
/* Most plaintexts waiting for one peer's channel. */
#define CTL_PENDING_MAX 64U
/* Retry an unanswered HELLO or channel handshake after this many seconds. */
#define CTL_RETRY_SECONDS 3U
/* Give up on a channel's pending messages after this many seconds. */
#define CTL_PENDING_SECONDS 30U
/* At most one HELLO triggered by unknown epochs per this many seconds. */
#define CTL_TRIGGER_SECONDS 2U
/* Held envelopes may name at most this many epochs past the current one: a
 * device offline across a few rotations sees a few; 0xFFFFFFFF is a forgery. */
#define CTL_HOLD_EPOCHS_AHEAD 16U
/* Groups with a scheduled drop of retired epochs (more are dropped at once). */
#define CTL_PRUNES_MAX 16U
/* Credential renewal is checked this often (seconds). */
#define CTL_RENEWAL_CHECK_SECONDS 60U
/*
 * CHANNEL step 1 (Noise_XX message 1) carries no identity, so anyone who can
 * publish to our inbox can make us do DH work and hold handshake state. The
 * responder therefore keeps at most this many half-open handshakes (the
 * oldest is dropped; established channels are never touched) ...
 */
#define CTL_HALF_OPEN_MAX 64U
/* ... answers at most this many step 1 frames per second overall ... */
#define CTL_STEP1_RATE 50U
/* ... with bursts of up to this many ... */
#define CTL_STEP1_BURST 100U
/* ... and replaces the half-open handshake of one claimed peer id only when it
 * is older than this (ms): a forger cannot churn a legitimate peer's attempt. */
#define CTL_STEP1_PEER_MS 1000U
/* ... and not at all while this many frames already wait to be published:
 * each QoS 1 control publish takes a broker round trip, so answers beyond
 * that only queue up in front of a legitimate peer's. */
#define CTL_STEP1_BACKLOG 16U

/* One queued action; topic and data are owned (data wiped before free).
 * A released action is recycled as the session's spare (session.c): its
 * topic and data buffers are reused by the next action, the data wiped
 * first, so a message received costs no allocation in the steady state. */
typedef struct sess_action {
    struct sess_action *next;
    mqe2e_session_action a;
    char *topic;
    size_t tcap;   /* bytes allocated at topic */
    uint8_t *data; /* handed out only when has_data */
    size_t cap;    /* bytes allocated at data */
    size_t used;   /* bytes of data that may hold plaintext: wiped on release */
    int has_data;
    mqe2e_msg_property *props; /* DELIVER of a held message: its properties (one block) */
    uint64_t spool_id;         /* DELIVER of a spooled entry: removed from the spool once taken */
} sess_action;

typedef struct ctl_pending {
    struct ctl_pending *next;
    char *topic;
    uint8_t *pt; /* plaintext: wiped before free */
    size_t len;
    int qos;
    int retained;
} ctl_pending;

typedef struct ctl_peer {
    struct ctl_peer *next;
    char id[MQE2E_ID_MAX + 1];
    mqe2e_channel *ch;
    /* A responder handshake started while ch is established: ch stays in
     * service until this one completes, so a forged step 1 cannot tear a
     * working channel down. Non-NULL only while ch is established. */
    mqe2e_channel *hs;
    int initiator;
    uint64_t started; /* when the current handshake began (wall s) */
    uint64_t resp_ms; /* monotonic ms when the half-open responder handshake began */
    ctl_pending *pending, *pending_tail;
    size_t n_pending;
    uint64_t pending_since;
} ctl_peer;

/* The `pub` grants of a signed group's signers, from the last directory the
 * authority sent in this session (docs/PROTOCOL.md 2.9). */
typedef struct ctl_grant_set {
    struct ctl_grant_set *next;
    char group[MQE2E_GROUP_ID_MAX_BYTES + 1];
    int listed; /* 0: the authority listed no grants (older authority): not checked */
    size_t n;
    uint32_t *sids;
    mqe2e_signer_grants *g;
} ctl_grant_set;

typedef struct ctl_tree ctl_tree;

struct mqe2e_session {
    mqe2e_keystore *ks;
    mqe2e_protector *prot;
    const mqe2e_policy *policy;
    mqe2e_policy *owned_policy; /* grows with new groups; NULL when the caller's */
    size_t hold_count, hold_bytes;
    uint64_t hold_age;
    mqe2e_session_log_fn *log;
    void *log_ctx;
    int log_level;
    mqe2e_session_time t; /* the caller's clocks during the current call */
    /* Actions: queued, and the one last taken (freed at the next call). */
    /* The message of the mqe2e_session_message_received*() call under way:
     * its MQTT v5 properties (borrowed for that call only). */
    const mqe2e_msg_property *cur_props;
    size_t cur_nprops;
    sess_action *act_head, *act_tail, *taken;
    sess_action *spare; /* the last released action, its buffers wiped, for reuse */
    size_t n_actions;
    size_t n_publish; /* PUBLISH actions queued */
    size_t backlog;   /* publishes the caller reported still waiting */
    int control;      /* an authority pin: the control plane is on */
    mqe2e_authority_pin pin;
    char id[MQE2E_ID_MAX + 1];
    char inbox[MQE2E_KS_PREFIX_MAX_BYTES + MQE2E_ID_MAX + 16];
    char revocations_topic[MQE2E_KS_PREFIX_MAX_BYTES + 16];
    char authority_topic[MQE2E_KS_PREFIX_MAX_BYTES + 16];
    mqe2e_revocation_list *rl;
    mqe2e_hello_client *hello;
    uint64_t hello_started;
    uint64_t hello_answered_sent; /* hello_started of the last HELLO answered (wall s) */
    uint64_t last_trigger;
    uint64_t last_renewal_check;
    int hello_done; /* a HELLO succeeded since the last connect */
    int connected;  /* between connected() and disconnected() */
    /* Freshness (docs/PROTOCOL.md 9.3): monotonic ms of the last
     * authenticated answer of the authority (HELLO reply, PUSH); 0 = none
     * since this session was created. Group messages are sealed only while it
     * is at most fresh_max_ms old. */
    uint64_t fresh_ms;
    uint64_t fresh_max_ms;
    /* Revocation list freshness (docs/PROTOCOL.md 9.3): monotonic ms when the
     * list in rl was last heard from the authority (an authenticated HELLO
     * reply or PUSH carrying it, or a copy signed later than the one held);
     * 0 = not since this session was created. rl_valid_ms is the list's
     * next_update - issued_at (0: the list gives none). */
    uint64_t rl_heard_ms;
    uint64_t rl_valid_ms;
    int stale_reported; /* the refusal was logged since the last answer */
    /* Retired epochs whose grace the authority cut (a member left): dropped
     * from the keystore at `at` (wall seconds, the authority's clock), every
     * epoch of the group retired before `cutoff`. One entry per group. */
    struct {
        char group[MQE2E_GROUP_ID_MAX_BYTES + 1];
        uint64_t cutoff, at;
    } prunes[CTL_PRUNES_MAX];
    size_t n_prunes;
    ctl_grant_set *grant_sets;
    int refused; /* the authority refused this client (revoked, unknown) */
    mqe2e_holdq *holdq;
    mqe2e_spool *spool; /* borrowed; NULL: overflowing held messages are dropped */
    /* The spool's entries are looked at by the next release: set at start
     * (entries a previous session left) and when keys may have arrived
     * (HELLO reply, PUSH); the spool is not re-read every second. */
    int spool_due;
    ctl_peer *peers;
    ctl_tree *trees; /* key-tree groups (session_tree.c) */
    mqe2e_session_counters k;
    uint64_t step1_tokens; /* CHANNEL step 1 budget, in thousandths of a frame */
    uint64_t step1_ms;     /* monotonic ms of the last refill (0 = never) */
};

/* Tag bits of held messages. */
#define MQE2E__SESS_TAG_QOS(t) ((int)((t) & 3U))
#define MQE2E__SESS_TAG_RETAINED 4U
#define MQE2E__SESS_TAG_DUP 8U

/* What to do with a group envelope: KNOWN (the normal path opens or drops
 * it), HOLD (a newer epoch within reach, or a signed group's grants not yet
 * known: hold it and ask), REFUSE (an epoch too far ahead to be a real
 * rotation: dropped as no_key at once), NOT_GRANTED (signer not granted). */
enum { CTL_EPOCH_KNOWN, CTL_EPOCH_HOLD, CTL_EPOCH_REFUSE, CTL_EPOCH_NOT_GRANTED };

/* session.c */
/* Queue a SUBSCRIBE (QoS 1) or UNSUBSCRIBE action for @p filter. */
int mqe2e__sess_subscription(mqe2e_session *c, mqe2e_session_action_kind kind, const char *filter);
/* The action last queued (NULL when none). */
sess_action *mqe2e__sess_last_action(mqe2e_session *c);
__attribute__((format(printf, 3, 4))) void mqe2e__sess_log(mqe2e_session *c, int level,
                                                           const char *fmt, ...);
int mqe2e__sess_enqueue(mqe2e_session *c, const char *topic, const uint8_t *data, size_t len,
                        int qos, int retained);
/* Count a drop under its reason and queue a DROP action. */
void mqe2e__sess_drop(mqe2e_session *c, const char *topic, int code, int current);
/* Open an envelope through the protector into a DELIVER action (or a DROP).
 * Open (unprotect_begin) and queue DELIVER or DROP. @p props (@p nprops)
 * are the message's MQTT v5 properties, checked when its rule binds them;
 * @p give, when not NULL, is the malloc'd block holding them, handed to the
 * DELIVER action (or freed). */
void mqe2e__sess_open(mqe2e_session *c, const char *topic, const uint8_t *data, size_t len,
                      int qos, int retained, int dup, int current,
                      const mqe2e_msg_property *props, size_t nprops, mqe2e_msg_property *give);
void mqe2e__sess_inbox(char *out, size_t cap, const mqe2e_session *c, const char *id);
/* Fresh at mono_ms @p now: the authority heard within the bound and the
 * held revocation list within its validity. */
int mqe2e__sess_fresh_at(const mqe2e_session *c, uint64_t now);
int mqe2e__sess_fresh(const mqe2e_session *c);
/* The held revocation list is within its validity at mono_ms @p now. */
int mqe2e__sess_list_fresh(const mqe2e_session *c, uint64_t now);
void mqe2e__sess_heard(mqe2e_session *c);

/* session_control.c */
/* live: it came in an authenticated HELLO reply or PUSH (which cannot be
 * replayed), so the authority vouches for it now. */
void mqe2e__sess_adopt_revocations(mqe2e_session *c, const uint8_t *list, size_t len, int live);
void mqe2e__sess_grant_set_free(ctl_grant_set *s);
int mqe2e__sess_grant_check(const mqe2e_session *c, const char *group, const char *topic,
                            uint32_t sender_id);
int mqe2e__sess_signed_covers(const mqe2e_session *c, const char *topic);
void mqe2e__sess_prune_due(mqe2e_session *c, uint64_t now);
void mqe2e__sess_hello_start(mqe2e_session *c);
void mqe2e__sess_on_hello(mqe2e_session *c, const uint8_t *data, size_t len);
void mqe2e__sess_on_push(mqe2e_session *c, const uint8_t *data, size_t len);
/* The shared apply of an authenticated update (update_apply.c) with the
 * session's event handling; from_push: a PUSH (or a TreeUpdate), not a reply. */
void mqe2e__sess_apply_update(mqe2e_session *c, const mqe2e_control_update *u, int from_push);

/* session_tree.c: key-tree groups (docs/PROTOCOL.md §10.8-10.9). */
void mqe2e__sess_tree_from_bundle(mqe2e_session *c, const mqe2e_key_bundle *b);
/* 1 when @p topic is a tree topic of this session (the message is consumed). */
int mqe2e__sess_tree_route(mqe2e_session *c, const char *topic, const uint8_t *data, size_t len);
void mqe2e__sess_tree_free(mqe2e_session *c);
/* connected(): SUBSCRIBE P/tree/<group> for every tree group it is a member of. */
void mqe2e__sess_tree_connected(mqe2e_session *c);
/* disconnected(): no subscription survives (connected() makes them again). */
void mqe2e__sess_tree_disconnected(mqe2e_session *c);
/* The member left @p group (removed from the keystore): its state is wiped
 * and P/tree/<group> unsubscribed. */
void mqe2e__sess_tree_leave(mqe2e_session *c, const char *group);
/* The authority refused this client (HELLO: revoked, unknown): every tree
 * state is wiped and unsubscribed. */
void mqe2e__sess_tree_leave_all(mqe2e_session *c);
/* The group epoch the member's tree state is at: MQE2E_OK, MQE2E_ERR_NOT_FOUND
 * (not a tree group here), MQE2E_ERR_TREE_REVOKED. */
int mqe2e__sess_tree_member_epoch(const mqe2e_session *c, const char *group, uint32_t *epoch);

/* session_channel.c */
int mqe2e__sess_peer_revoked(const mqe2e_session *c, const char *peer);
void mqe2e__sess_peer_drop_pending(ctl_peer *p);
void mqe2e__sess_peer_reset(ctl_peer *p);
ctl_peer *mqe2e__sess_peer_find(mqe2e_session *c, const char *id, int create);
int mqe2e__sess_channel_initiate(mqe2e_session *c, ctl_peer *p);
int mqe2e__sess_channel_send(mqe2e_session *c, ctl_peer *p, const char *topic, const uint8_t *pt,
                             size_t pt_len, int qos, int retained);
void mqe2e__sess_on_channel(mqe2e_session *c, const mqe2e_control_frame *f, const uint8_t *data,
                            size_t len);

/* session_hold.c */
/* *ahead receives how many epochs past the keystore's current one the
 * envelope names (0 when not ahead). */
int mqe2e__sess_epoch_verdict(mqe2e_session *c, const char *group, const char *topic,
                              const uint8_t *data, size_t len, uint32_t *ahead);
int mqe2e__sess_hold_quota_ok(const mqe2e_session *c, const char *topic, size_t len);
size_t mqe2e__sess_hold_make_room(mqe2e_session *c, const char *topic, size_t len,
                                  uint32_t ahead);
void mqe2e__sess_maybe_trigger_hello(mqe2e_session *c);
void mqe2e__sess_release(mqe2e_session *c);
void mqe2e__sess_expire(mqe2e_session *c);
/* Entries in the spool (0 without one). */
size_t mqe2e__sess_spool_count(const mqe2e_session *c);
/* A held message that found no room in the hold queue: QoS >= 1 goes to
 * the spool (counted spooled); otherwise, or when the spool refuses it, it
 * is dropped (hold_dropped, no_key; a DROP action with @p current). */
void mqe2e__sess_overflow(mqe2e_session *c, const mqe2e_held *h, int current);
/* Whether a held message of QoS @p qos goes straight to the spool: it holds
 * entries already, so arrival order is kept by putting newer ones after. */
int mqe2e__sess_spool_first(const mqe2e_session *c, int qos);

#endif
