/* Internal to the authority core (authority_core.c, operator_proto.c): its
 * state, counters and the functions its files share. No MQTT. Not installed. */
#ifndef MQE2E_AUTHORITY_INTERNAL_H
#define MQE2E_AUTHORITY_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "authority_core.h"
#include "authority_db.h"
#include "mqe2e/control.h"
#include "mqe2e/keytree.h"
#include "mqe2e/operator.h"
#include "ratelimit.h"

/* Counters of handled and refused messages (reported by `status`). */
enum authority_counter {
    AUTH_C_ENROLL_OK,
    AUTH_C_ENROLL_BAD_FRAME,
    AUTH_C_ENROLL_UNKNOWN_TOKEN,
    AUTH_C_ENROLL_BAD_MAC,
    AUTH_C_ENROLL_TOKEN_USED,
    AUTH_C_ENROLL_TOKEN_EXPIRED,
    AUTH_C_ENROLL_WRONG_CLIENT,
    AUTH_C_ENROLL_FAILED,
    AUTH_C_HELLO_OK,
    AUTH_C_HELLO_BAD_FRAME,
    AUTH_C_HELLO_UNKNOWN_CLIENT,
    AUTH_C_HELLO_BAD_STATIC,
    AUTH_C_HELLO_REVOKED,
    AUTH_C_HELLO_FAILED,
    AUTH_C_OP_OK,
    AUTH_C_OP_BAD_FRAME,
    AUTH_C_OP_UNKNOWN,
    AUTH_C_OP_BAD_SIGNATURE,
    AUTH_C_OP_STALE,
    AUTH_C_OP_REPLAY,
    AUTH_C_FRAME_UNKNOWN,
    AUTH_C_PUSH_SENT,
    AUTH_C_PUSH_FAILED,
    AUTH_C_ROTATIONS,
    AUTH_C_ENVELOPES,
    AUTH_C_ENROLL_RATE_LIMITED, /* admitted by the cheap checks, refused by the limiter */
    AUTH_C_HELLO_RATE_LIMITED,
    AUTH_C_ENROLL_COMMITS,   /* durable group commits of queued enrollments */
    AUTH_C_LOG_SUPPRESSED,   /* refusal log lines not written (over the per-second budget) */
    AUTH_C_ENROLL_REVOKED,   /* a ticket or retry for a revoked client id */
    AUTH_C_ENROLL_ID_ACTIVE, /* a new device for an active id without a --replace ticket */
    AUTH_C_ENROLL_RETRIES,   /* lost-reply retries served (same keys, same serial) */
    AUTH_C_REPLACEMENTS,     /* devices replaced under an active id (--replace tickets) */
    AUTH_C_TREE_UPDATES,     /* TreeUpdates broadcast on P/tree/<group> (authority_tree.c) */
    AUTH_C_TREE_CONVERSIONS, /* push groups converted to key trees (group-tree, tree_threshold) */
    AUTH_C_COUNT
};

/* One admitted ENROLL frame, from its arrival to its reply (enroll_commit()). */
typedef struct enroll_job {
    uint8_t *frame; /* copy of the request */
    size_t frame_len;
    mqe2e_enroll_authority *st;
    mqe2e_enroll_request req;
    mqe2e_adb_token_info info;
    uint8_t token[MQE2E_ADB_SECRET_BYTES]; /* from the lookup to the MAC check only */
    int rc;                                /* result of the last step */
    int step;                              /* last step passed: ENROLL_STEP_* */
    uint64_t serial;
    int32_t status;            /* reply status */
    int counted;               /* its outcome is already counted */
    mqe2e_key_bundle *bundles; /* for the reply */
    size_t n_bundles;
    uint8_t *out; /* sealed reply: the slot's part of job_out */
    size_t out_len;
    uint64_t issued_at, expires_at; /* of the credential in the reply */
    char **rotated;                 /* groups of a replaced device, rotated in the batch */
    struct authority *a;            /* for the rotation callback (key-tree groups) */
    int replaced;                   /* a --replace enrollment: the revocation list changed */
    mqe2e_adb *db;                  /* for the rotation callback */
    uint64_t now;
    uint32_t revoke_grace;
    size_t n_rotated;
} enroll_job;

/* A group rotated by message count: envelopes of its current epoch seen. */
typedef struct count_group {
    char name[MQE2E_ADB_NAME_MAX];
    char filter[MQE2E_ADB_FILTER_MAX];
    uint32_t epoch;
    uint64_t threshold;
    uint64_t count;
    int seen;
} count_group;

struct authority {
    const authority_core_config *cfg;
    authority_io io;
    uint64_t now;    /* wall seconds of the call being handled */
    uint64_t now_ms; /* monotonic milliseconds of the call being handled */
    mqe2e_keystore *ks;
    mqe2e_adb *db;
    uint8_t *dh_secret; /* sodium_malloc()ed copy of the X25519 static secret */
    uint8_t sign_public[32];
    uint8_t dh_public[32];
    const char *id;
    char topic_authority[MQE2E_CONTROL_PREFIX_MAX + 16];
    char topic_revocations[MQE2E_CONTROL_PREFIX_MAX + 16];
    uint8_t *frame; /* MQE2E_CONTROL_MAX_FRAME_BYTES scratch for outgoing frames */
    uint8_t *rl;    /* signed revocation list (public), NULL before the first revocation */
    size_t rl_len;
    uint64_t rl_version;
    uint64_t rl_issued_at; /* of the list in rl, seconds */
    uint64_t counters[AUTH_C_COUNT];
    count_group *cg;
    size_t n_cg;
    uint64_t last_schedule;
    uint64_t last_prune;
    uint64_t started_at;
    size_t last_enroll_request_bytes, last_enroll_reply_bytes;
    size_t last_hello_request_bytes, last_hello_reply_bytes;
    size_t last_operator_request_bytes, last_operator_reply_bytes;
    size_t last_push_bytes;
    authority_rl *limiter; /* admission of handshake work (ENROLL, HELLO) */
    enroll_job *jobs;      /* AUTHORITY_ENROLL_BATCH slots */
    uint8_t *job_out;      /* one FRAME_CAP reply buffer per slot (pages touched as used) */
    size_t n_jobs;
    uint64_t jobs_first_ms; /* monotonic ms when the oldest queued job arrived */
    uint64_t log_second;    /* refusal log budget: the second it counts */
    uint32_t log_lines;     /* refusal lines written in that second */
    struct authority_trees *trees;  /* key-tree groups in use (authority_tree.c) */
    size_t last_tree_update_bytes;  /* the last TreeUpdate broadcast */
};
typedef struct authority authority;

/* Shared by the core's files (authority_core.c, operator_proto.c). */
const char *authority_counter_name(int i);
void authority_flush(authority *a);
int authority_revocations_refresh(authority *a, int publish_retained);
int authority_rotate_group(authority *a, const char *group, int with_rl, uint32_t *new_epoch);
/* The database half of authority_rotate_group(): a new epoch with a fresh
 * secret, written in the caller's transaction if one is open (nothing is
 * pushed). Push with authority_push_group() after the commit. */
int authority_rotate_group_db(authority *a, const char *group, uint32_t *new_epoch);
/* Push a group just rotated to @p epoch to its members and log the time taken. */
int authority_push_rotated(authority *a, const char *group, int with_rl, uint32_t epoch);
int authority_rotate_after_removal(authority *a, const char *group, uint32_t *new_epoch);
/* authority_rotate_after_removal() in two halves: the database part in the
 * caller's transaction, the push after its commit. */
int authority_rotate_after_removal_db(authority *a, const char *group, uint32_t *new_epoch);
int authority_push_after_removal(authority *a, const char *group, uint32_t epoch);
int authority_push_group(authority *a, const char *group, int with_rl);
int authority_push_client(authority *a, const char *client_id, const char *group, int removed);
void authority_count_refresh(authority *a);

/* Key-tree groups (authority_tree.c, docs/PROTOCOL.md §10.8). The *_db
 * calls run in the caller's transaction; after its commit publish the
 * update (authority_tree_publish), after a rollback call authority_tree_rollback. */
int authority_tree_is_tree(authority *a, const char *group);
void authority_tree_topic(const authority *a, char *out, size_t cap, const char *group);
int authority_tree_create_db(authority *a, const char *group, unsigned depth);
int authority_tree_join_db(authority *a, const char *group, const char *client_id,
                           uint32_t *group_epoch);
int authority_tree_remove_db(authority *a, const char *group, uint32_t *group_epoch);
void authority_tree_rollback(authority *a);
/* Savepoints inside a transaction: the mark before, the undo when the
 * savepoint was rolled back (updates since the mark dropped, changed trees
 * reloaded from the store). */
size_t authority_tree_mark(const authority *a);
void authority_tree_undo(authority *a, size_t mark);
int authority_tree_pending(authority *a, const char *group);
/* Broadcast the group's pending updates in the order they were made. */
int authority_tree_publish(authority *a, const char *group);
/* Every pending update of every group, in the order they were made. */
int authority_tree_publish_all(authority *a);
int authority_tree_bundle(authority *a, mqe2e_key_bundle *b, const char *client_id);
uint32_t authority_tree_members(authority *a, const char *group);
void authority_trees_free(authority *a);
/* Converting a push group to a key tree (docs/PROTOCOL.md §10.8): depth for
 * n members (smallest d with 2^d >= 2n, 3..20); the store part in the
 * caller's transaction (*depth 0: that rule; refusals: EXISTS already a
 * tree, STATE rotation settings, TOO_LARGE more members than 2^depth,
 * POLICY unused tokens name the group; nothing written then); the whole
 * conversion in its own transaction, then one push per member; and the
 * tree_threshold check after a grant (1: converted, *depth set). */
unsigned authority_tree_depth_for(uint64_t members);
int authority_tree_convert_db(authority *a, const char *group, unsigned *depth,
                              uint32_t *members, uint32_t *group_epoch);
int authority_tree_convert(authority *a, const char *group, unsigned *depth, uint32_t *members,
                           uint32_t *group_epoch);
int authority_tree_threshold_check(authority *a, const char *group, unsigned *depth);

/* A log line through the io (printf-style). */
void authority_log(authority *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
