/* The authority core: control frames and time in, replies, pushes and store
 * operations out (authority_core.h). No MQTT, no clock: the io publishes, the
 * caller passes the time. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "authority_core.h"
#include "authority_internal.h"
#include "authority_tree_db.h"
#include "mqe2e/control.h"
#include "mqe2e/credential.h"
#include "mqe2e/envelope.h"
#include "mqe2e/error.h"
#include "mqe2e/hkdf.h"
#include "mqe2e/operator.h"
#include "mqe2e/policy.h"
#include "operator_proto.h"

#define FRAME_CAP MQE2E_CONTROL_MAX_FRAME_BYTES
#define TOPIC_MAX (MQE2E_CONTROL_PREFIX_MAX + 16U + MQE2E_ID_MAX)
#define SCHEDULE_EVERY_S 1U

static const char *const counter_names[] = {
    "enroll_ok",           "enroll_bad_frame",     "enroll_unknown_token",
    "enroll_bad_mac",      "enroll_token_used",    "enroll_token_expired",
    "enroll_wrong_client", "enroll_failed",        "hello_ok",
    "hello_bad_frame",     "hello_unknown_client", "hello_bad_static",
    "hello_revoked",       "hello_failed",         "operator_ok",
    "operator_bad_frame",  "operator_unknown",     "operator_bad_signature",
    "operator_stale",      "operator_replay",      "frame_unknown",
    "push_sent",           "push_failed",          "rotations",
    "envelopes_counted",   "enroll_rate_limited",  "hello_rate_limited",
    "enroll_commits",      "log_suppressed",       "enroll_revoked",
    "enroll_id_active",    "enroll_retries",       "replacements",
    "tree_updates",        "tree_conversions",
};
_Static_assert(sizeof counter_names / sizeof counter_names[0] == AUTH_C_COUNT,
               "one name per counter");

const char *authority_counter_name(int i)
{
    return i >= 0 && i < AUTH_C_COUNT ? counter_names[i] : "?";
}

/* ------------------------------------------------------------------ helpers */

void authority_log(authority *a, const char *fmt, ...)
{
    if (a->io.log == NULL) return;
    char line[1000];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    a->io.log(a->io.ctx, line);
}

/* Milliseconds of the io's stopwatch since @p t0_us (0.0 without one). */
static double stopwatch_ms(const authority *a, uint64_t t0_us)
{
    if (a->io.stopwatch_us == NULL) return 0.0;
    return (double)(a->io.stopwatch_us(a->io.ctx) - t0_us) / 1e3;
}

static uint64_t stopwatch_start(const authority *a)
{
    return a->io.stopwatch_us != NULL ? a->io.stopwatch_us(a->io.ctx) : 0;
}

int authority_keystore_sign(void *ctx, uint8_t sig[64], const uint8_t *msg, size_t msg_len)
{
    return mqe2e_keystore_sign((const mqe2e_keystore *)ctx, sig, msg, msg_len) == MQE2E_OK ? 0 : -1;
}

int authority_db_key(uint8_t key[MQE2E_ADB_KEY_BYTES], const mqe2e_keystore *ks)
{
    uint8_t dh[32];
    const char *id = mqe2e_keystore_client_id(ks);
    if (id == NULL) return MQE2E_ERR_INVALID_ARG;
    int rc = mqe2e_keystore_dh_secret(ks, dh);
    if (rc == MQE2E_OK)
        rc = mqe2e_hkdf(key, MQE2E_ADB_KEY_BYTES, (const uint8_t *)AUTHORITY_DB_KEY_SALT,
                        sizeof AUTHORITY_DB_KEY_SALT - 1U, dh, sizeof dh, (const uint8_t *)id,
                        strlen(id));
    sodium_memzero(dh, sizeof dh);
    return rc;
}

int authority_pin_text(char **out, const mqe2e_keystore *ks, const char *prefix)
{
    mqe2e_authority_pin pin;
    memset(&pin, 0, sizeof pin);
    const char *id = mqe2e_keystore_client_id(ks);
    if (id == NULL || prefix == NULL || strlen(id) > MQE2E_ID_MAX ||
        strlen(prefix) > MQE2E_CONTROL_PREFIX_MAX)
        return MQE2E_ERR_INVALID_ARG;
    int rc = mqe2e_keystore_identity_public(ks, pin.sign_public, pin.dh_public);
    if (rc != MQE2E_OK) return rc;
    memcpy(pin.authority_id, id, strlen(id) + 1U);
    memcpy(pin.control_prefix, prefix, strlen(prefix) + 1U);
    return mqe2e_authority_pin_encode(out, &pin);
}

static void client_topic(char out[TOPIC_MAX], const char *prefix, const char *client_id)
{
    snprintf(out, TOPIC_MAX, "%s/client/%s", prefix, client_id);
}

/* ---------------------------------------------------------------- publishing */

/* QoS 1 publish through the io, without waiting: authority_flush() waits. */
static int publish(authority *a, const char *topic, const uint8_t *p, size_t n, int retained)
{
    if (n > (size_t)INT32_MAX) return -1;
    return a->io.publish(a->io.ctx, topic, p, n, retained) != 0 ? -1 : 0;
}

void authority_flush(authority *a)
{
    if (a->io.flush != NULL) a->io.flush(a->io.ctx);
}

/* ---------------------------------------------------------- revocation list */

typedef struct rev_collect {
    mqe2e_revocation_entry *e;
    size_t n, cap;
    uint64_t newest; /* latest revoked_at: when the version last moved */
} rev_collect;

static int rev_cb(const char *client_id, uint64_t serial, uint64_t revoked_at, void *user)
{
    rev_collect *c = user;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2U : 16U;
        mqe2e_revocation_entry *n = realloc(c->e, cap * sizeof *n);
        if (n == NULL) return MQE2E_ERR_NOMEM;
        c->e = n;
        c->cap = cap;
    }
    char *id = strdup(client_id);
    if (id == NULL) return MQE2E_ERR_NOMEM;
    c->e[c->n].client_id = id;
    c->e[c->n].serial = serial;
    c->e[c->n].revoked_at = revoked_at;
    c->n++;
    if (revoked_at > c->newest) c->newest = revoked_at;
    return 0;
}

typedef struct retired_collect {
    mqe2e_retired_sender *r;
    size_t n, cap;
} retired_collect;

static int retired_cb(const char *group, uint32_t sender_id, uint64_t retired_at, void *user)
{
    retired_collect *c = user;
    (void)retired_at;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2U : 16U;
        mqe2e_retired_sender *n = realloc(c->r, cap * sizeof *n);
        if (n == NULL) return MQE2E_ERR_NOMEM;
        c->r = n;
        c->cap = cap;
    }
    char *g = strdup(group);
    if (g == NULL) return MQE2E_ERR_NOMEM;
    c->r[c->n].group_id = g;
    c->r[c->n].sender_id = sender_id;
    c->n++;
    return 0;
}

static uint64_t list_validity(const authority *a)
{
    return a->cfg->list_validity > 0 ? a->cfg->list_validity : AUTHORITY_DEFAULT_LIST_VALIDITY;
}

/* Half the cached list's validity passed (or the clock went back past its
 * issue time): time to sign it afresh. */
static int list_half_old(const authority *a)
{
    return a->now < a->rl_issued_at || a->now - a->rl_issued_at >= list_validity(a) / 2U;
}

/* A list is cached and half its validity passed (the core's schedule asks). */
static int list_resign_due(const authority *a)
{
    return a->rl != NULL && list_half_old(a);
}

/* The issue time of a list whose version last moved at @p moved: the last
 * multiple of half the validity after it that is not in the future. It
 * depends only on the store and the clock, so replicas that sign the same
 * version in the same half-period sign the same bytes (Ed25519 is
 * deterministic): two replicas never publish two different lists of one
 * version (docs/SCALING.md). A clock behind @p moved signs at its own time. */
static uint64_t list_issue_time(const authority *a, uint64_t moved)
{
    uint64_t half = list_validity(a) / 2U;
    if (a->now < moved || half == 0) return a->now;
    return moved + (a->now - moved) / half * half;
}

/* Re-sign the list when its version moved or half its validity passed;
 * publish it retained if asked. */
int authority_revocations_refresh(authority *a, int publish_retained)
{
    rev_collect c = {NULL, 0, 0, 0};
    retired_collect r = {NULL, 0, 0};
    uint64_t version = 0;
    int rc = mqe2e_adb_revocations_list(&version, a->db, rev_cb, &c);
    uint64_t validity = list_validity(a);
    uint64_t now = list_issue_time(a, c.newest);
    /* A new version, or half the list's validity passed: sign it afresh, so
     * members hear a list before its next_update (PROTOCOL.md 9.3). */
    int due = version > 0 && (a->rl == NULL || version != a->rl_version || list_half_old(a));
    if (rc == MQE2E_OK && due) rc = mqe2e_adb_retired_senders_list(a->db, retired_cb, &r);
    if (rc == MQE2E_OK && due) {
        uint8_t *rl = NULL;
        size_t rl_len = 0;
        mqe2e_revocation_contents rc_in = {version, now, now + validity, c.e, c.n, r.r, r.n};
        rc = mqe2e_revocation_list_sign_ex(&rl, &rl_len, a->sign_public, authority_keystore_sign,
                                           a->ks, &rc_in);
        if (rc == MQE2E_OK) {
            free(a->rl);
            a->rl = rl;
            a->rl_len = rl_len;
            a->rl_version = version;
            a->rl_issued_at = now;
        }
    }
    for (size_t i = 0; i < c.n; i++)
        free((char *)(uintptr_t)c.e[i].client_id);
    free(c.e);
    for (size_t i = 0; i < r.n; i++)
        free((char *)(uintptr_t)r.r[i].group_id);
    free(r.r);
    if (rc != MQE2E_OK) {
        authority_log(a, "cannot build the revocation list: %s", mqe2e_strerror(rc));
        return rc;
    }
    if (publish_retained && a->rl != NULL)
        (void)publish(a, a->topic_revocations, a->rl, a->rl_len, 1);
    return MQE2E_OK;
}

/* Another replica may have revoked since this one signed its list: a
 * cheap version check before a reply carries the cached copy (re-signed,
 * not published: the replica that revoked published it). */
static void revocations_sync(authority *a)
{
    uint64_t version = 0;
    if (mqe2e_adb_revocation_version(&version, a->db) == MQE2E_OK && version != a->rl_version)
        (void)authority_revocations_refresh(a, 0);
}

/* ------------------------------------------------------------------ bundles */

typedef struct name_sid {
    char **names;
    uint32_t *sids;
    uint64_t *added;  /* membership start (added_at) */
    uint32_t *joined; /* epoch current when it joined (0: not known) */
    size_t n, cap;
} name_sid;

/* Members of a group: client ids and their sender ids (same callback). */
typedef name_sid member_ids;

static void name_sid_free(name_sid *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->names[i]);
    free(l->names);
    free(l->sids);
    free(l->added);
    free(l->joined);
    memset(l, 0, sizeof *l);
}

static int name_sid_cb(const char *name, uint32_t sender_id, uint64_t added_at, void *user);

/* As name_sid_cb, with the joined epoch. */
static int name_sid_ex_cb(const char *name, uint32_t sender_id, uint64_t added_at,
                          uint32_t joined_epoch, void *user)
{
    name_sid *l = user;
    int rc = name_sid_cb(name, sender_id, added_at, user);
    if (rc != 0) return rc;
    if (l->n > 0) {
        uint32_t *nj = realloc(l->joined, l->cap * sizeof *nj);
        if (nj == NULL) return MQE2E_ERR_NOMEM;
        l->joined = nj;
        l->joined[l->n - 1U] = joined_epoch;
    }
    return 0;
}

static int name_sid_cb(const char *name, uint32_t sender_id, uint64_t added_at, void *user)
{
    name_sid *l = user;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2U : 16U;
        char **nn = realloc(l->names, cap * sizeof *nn);
        if (nn == NULL) return MQE2E_ERR_NOMEM;
        l->names = nn;
        uint32_t *ns = realloc(l->sids, cap * sizeof *ns);
        if (ns == NULL) return MQE2E_ERR_NOMEM;
        l->sids = ns;
        uint64_t *na = realloc(l->added, cap * sizeof *na);
        if (na == NULL) return MQE2E_ERR_NOMEM;
        l->added = na;
        l->cap = cap;
    }
    if ((l->names[l->n] = strdup(name)) == NULL) return MQE2E_ERR_NOMEM;
    l->added[l->n] = added_at;
    l->sids[l->n++] = sender_id;
    return 0;
}

typedef struct epoch_row {
    uint32_t epoch;
    uint64_t created_at, retired_at;
} epoch_row;

typedef struct epoch_collect {
    epoch_row rows[MQE2E_CONTROL_MAX_BUNDLES];
    size_t n;
    uint64_t now, grace;
    uint64_t member_since;  /* 0: every epoch in grace */
    uint32_t member_joined; /* epoch current at the join (0: not known) */
} epoch_collect;

static int epoch_cb(uint32_t epoch, uint64_t created_at, uint64_t retired_at, void *user)
{
    epoch_collect *c = user;
    if (retired_at != 0 && retired_at + c->grace <= c->now) return 0;
    /* Backward secrecy: an epoch retired before the client joined was never
     * its to read (decided by epoch number: seconds cannot order a join and
     * a retirement in the same second). */
    if (!mqe2e_adb_epoch_was_members(epoch, retired_at, c->member_since, c->member_joined))
        return 0;
    if (c->n == MQE2E_CONTROL_MAX_BUNDLES) {
        /* Keep the newest: drop the oldest kept row. */
        memmove(&c->rows[0], &c->rows[1], (c->n - 1U) * sizeof c->rows[0]);
        c->n--;
    }
    c->rows[c->n].epoch = epoch;
    c->rows[c->n].created_at = created_at;
    c->rows[c->n].retired_at = retired_at;
    c->n++;
    return 0;
}

static void bundles_free(mqe2e_key_bundle *b, size_t n)
{
    if (b == NULL) return;
    sodium_memzero(b, n * sizeof *b);
    free(b);
}

static int bundle_fill(authority *a, mqe2e_key_bundle *b, const mqe2e_adb_group *g,
                       uint32_t sender_id, const epoch_row *e)
{
    memset(b, 0, sizeof *b);
    snprintf(b->group, sizeof b->group, "%s", g->name);
    snprintf(b->topic_filter, sizeof b->topic_filter, "%s", g->topic_filter);
    b->epoch = e->epoch;
    b->created_at = e->created_at;
    b->retired_at = e->retired_at;
    b->sender_id = sender_id;
    /* A retired epoch whose grace was cut (a member left) says so: members
     * stop reading it then, even past the point HELLO still hands it out
     * (a member that restarted prunes it at once). */
    if (e->retired_at != 0) {
        int rc = mqe2e_adb_group_epoch_grace(&b->grace_seconds, a->db, g->name, e->epoch);
        if (rc != MQE2E_OK) return rc;
    }
    return mqe2e_adb_group_epoch_secret(b->secret, a->db, g->name, e->epoch);
}

/* Every bundle a member gets from HELLO/ENROLL: current epoch of each of its
 * groups plus retired epochs still within the grace period that were current
 * while it was a member (a new member gets only the current epoch). */
/* Room for @p need bundles in *b (capacity *cap). The array grows by copying
 * and wiping the old one (realloc would leave the old secrets behind): a
 * client's array used to be MQE2E_CONTROL_MAX_BUNDLES (~350 kB) from the
 * start, whose fresh pages and full wipe cost more than an enrollment's
 * crypto. Slots past the filled ones stay zero. */
static int bundles_reserve(mqe2e_key_bundle **b, size_t *cap, size_t need)
{
    if (need <= *cap) return MQE2E_OK;
    size_t c = *cap > 0 ? *cap * 2U : 4U;
    if (c < need) c = need;
    if (c > MQE2E_CONTROL_MAX_BUNDLES) c = MQE2E_CONTROL_MAX_BUNDLES;
    if (need > c) return MQE2E_ERR_TOO_LARGE;
    mqe2e_key_bundle *nb = calloc(c, sizeof *nb);
    if (nb == NULL) return MQE2E_ERR_NOMEM;
    if (*b != NULL) {
        memcpy(nb, *b, *cap * sizeof *nb);
        bundles_free(*b, *cap);
    }
    *b = nb;
    *cap = c;
    return MQE2E_OK;
}

/* The client's bundles, *n_out of them, in an array of at least *n_out
 * slots: free it with bundles_free(*out, *n_out) (slots past *n_out are
 * never filled). */
static int bundles_for_client(authority *a, mqe2e_key_bundle **out, size_t *n_out,
                              const char *client_id, uint64_t now)
{
    name_sid groups = {NULL, NULL, NULL, NULL, 0, 0};
    mqe2e_key_bundle *b = NULL;
    size_t n = 0, cap = 0;
    epoch_collect *ec = NULL;
    int rc;

    *out = NULL;
    *n_out = 0;
    rc = mqe2e_adb_groups_of_client_ex(a->db, client_id, name_sid_ex_cb, &groups);
    if (rc != MQE2E_OK || groups.n == 0) goto out;
    if ((ec = calloc(1, sizeof *ec)) == NULL) {
        rc = MQE2E_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < groups.n && rc == MQE2E_OK; i++) {
        mqe2e_adb_group g;
        if ((rc = mqe2e_adb_group_get(&g, a->db, groups.names[i])) != MQE2E_OK) break;
        memset(ec, 0, sizeof *ec);
        ec->now = now;
        ec->grace = a->cfg->grace;
        ec->member_since = groups.added[i];
        ec->member_joined = groups.joined != NULL ? groups.joined[i] : 0U;
        if ((rc = mqe2e_adb_group_epochs_list(a->db, g.name, epoch_cb, ec)) != MQE2E_OK) break;
        for (size_t j = 0; j < ec->n && n < MQE2E_CONTROL_MAX_BUNDLES; j++) {
            if ((rc = bundles_reserve(&b, &cap, n + 1U)) != MQE2E_OK) break;
            if ((rc = bundle_fill(a, &b[n], &g, groups.sids[i], &ec->rows[j])) != MQE2E_OK) break;
            if ((rc = authority_tree_bundle(a, &b[n], client_id)) != MQE2E_OK) break;
            n++;
        }
    }
out:
    name_sid_free(&groups);
    free(ec);
    if (rc != MQE2E_OK) {
        bundles_free(b, cap);
        return rc;
    }
    if (n == 0) {
        free(b);
        b = NULL;
    }
    *out = b;
    *n_out = n;
    return MQE2E_OK;
}

/* ------------------------------------------------------ signer directories */

/* Signed groups (docs/PROTOCOL.md 2.9): with a group's bundles goes its
 * directory, every active member's sender id, identity key (the one its
 * credential certifies) and client id. */

static void directories_free(mqe2e_group_directory *d, size_t n)
{
    if (d == NULL) return;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; d[i].grants != NULL && j < d[i].n_signers; j++) {
            for (size_t f = 0; f < d[i].grants[j].n_pub_filters; f++)
                free(d[i].grants[j].pub_filters[f]);
            free(d[i].grants[j].pub_filters);
        }
        free(d[i].grants);
        free(d[i].signers);
    }
    free(d);
}

/* A signer's `pub` filters, from its grants (receivers enforce them). */
typedef struct pub_collect {
    mqe2e_signer_grants *g;
    int rc;
} pub_collect;

static int pub_filter_cb(const mqe2e_adb_grant *grant, void *user)
{
    pub_collect *c = user;
    if ((grant->rights & MQE2E_ADB_RIGHT_PUBLISH) == 0) return 0;
    if (c->g->n_pub_filters == MQE2E_CONTROL_MAX_PUB_FILTERS) return 0; /* tokens hold <= 16 */
    char **v = realloc(c->g->pub_filters, (c->g->n_pub_filters + 1U) * sizeof *v);
    if (v == NULL) return MQE2E_ERR_NOMEM;
    c->g->pub_filters = v;
    if ((v[c->g->n_pub_filters] = strdup(grant->filter)) == NULL) return MQE2E_ERR_NOMEM;
    c->g->n_pub_filters++;
    return 0;
}

static int directory_fill(authority *a, mqe2e_group_directory *d, const char *group, size_t *budget)
{
    member_ids m = {NULL, NULL, NULL, NULL, 0, 0};
    int rc;

    memset(d, 0, sizeof *d);
    snprintf(d->group, sizeof d->group, "%s", group);
    /* Collected first: no lookups while the member list is being read. */
    rc = mqe2e_adb_members_list(a->db, group, name_sid_cb, &m);
    if (rc == MQE2E_OK && m.n > *budget) rc = MQE2E_ERR_TOO_LARGE;
    if (rc == MQE2E_OK && m.n > 0 &&
        ((d->signers = calloc(m.n, sizeof *d->signers)) == NULL ||
         (d->grants = calloc(m.n, sizeof *d->grants)) == NULL))
        rc = MQE2E_ERR_NOMEM;
    d->has_grants = 1;
    for (size_t i = 0; rc == MQE2E_OK && i < m.n; i++) {
        mqe2e_adb_client c;
        rc = mqe2e_adb_client_get(&c, a->db, m.names[i]);
        if (rc == MQE2E_ERR_NOT_FOUND) {
            rc = MQE2E_OK;
            continue;
        }
        if (rc != MQE2E_OK || c.status != MQE2E_ADB_CLIENT_ACTIVE) continue;
        mqe2e_signer *s = &d->signers[d->n_signers];
        s->sender_id = m.sids[i];
        memcpy(s->sign_public, c.sign_public, sizeof s->sign_public);
        snprintf(s->client_id, sizeof s->client_id, "%s", c.client_id);
        pub_collect pc = {&d->grants[d->n_signers], 0};
        d->n_signers++;
        rc = mqe2e_adb_grant_list(a->db, c.client_id, pub_filter_cb, &pc);
    }
    if (rc == MQE2E_OK) *budget -= d->n_signers;
    name_sid_free(&m);
    return rc;
}

/* Directories of the signed groups among @p groups (duplicates skipped). */
static int directories_for(authority *a, mqe2e_group_directory **out, size_t *n_out,
                           const char *const *groups, size_t n_groups)
{
    mqe2e_group_directory *d = NULL;
    size_t n = 0, budget = MQE2E_CONTROL_MAX_SIGNERS;
    int rc = MQE2E_OK;

    *out = NULL;
    *n_out = 0;
    for (size_t i = 0; rc == MQE2E_OK && i < n_groups; i++) {
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(groups[i], groups[j]) == 0;
        mqe2e_adb_group g;
        if (seen || mqe2e_adb_group_get(&g, a->db, groups[i]) != MQE2E_OK || !g.is_signed) continue;
        if (d == NULL && (d = calloc(n_groups, sizeof *d)) == NULL) {
            rc = MQE2E_ERR_NOMEM;
            break;
        }
        rc = directory_fill(a, &d[n], groups[i], &budget);
        n++;
    }
    if (rc != MQE2E_OK) {
        authority_log(a, "cannot build the signer directories: %s", mqe2e_strerror(rc));
        directories_free(d, n);
        return rc;
    }
    *out = d;
    *n_out = n;
    return MQE2E_OK;
}

/* Attach the directories of the bundles' signed groups to an update. */
static int directories_attach(authority *a, mqe2e_control_update *u)
{
    const char *names[MQE2E_CONTROL_MAX_BUNDLES];
    size_t n = u->n_bundles < MQE2E_CONTROL_MAX_BUNDLES ? u->n_bundles : MQE2E_CONTROL_MAX_BUNDLES;
    for (size_t i = 0; i < n; i++)
        names[i] = u->bundles[i].group;
    return directories_for(a, &u->directories, &u->n_directories, names, n);
}

/* ------------------------------------------------------------- credentials */

typedef struct grant_collect {
    mqe2e_adb_grant *g;
    size_t n, cap;
} grant_collect;

static int grant_cb(const mqe2e_adb_grant *grant, void *user)
{
    grant_collect *c = user;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2U : 8U;
        mqe2e_adb_grant *n = realloc(c->g, cap * sizeof *n);
        if (n == NULL) return MQE2E_ERR_NOMEM;
        c->g = n;
        c->cap = cap;
    }
    c->g[c->n++] = *grant;
    return 0;
}

static int issue_credential(authority *a, uint8_t **cred, size_t *cred_len, const char *client_id,
                            const char *role, const uint8_t sign_public[32],
                            const uint8_t dh_public[32], const mqe2e_adb_grant *grants,
                            size_t n_grants, uint64_t serial, uint64_t now, uint64_t expires)
{
    mqe2e_credential_request req;
    mqe2e_grant *g = NULL;
    int rc;

    memset(&req, 0, sizeof req);
    if (n_grants > 0 && (g = calloc(n_grants, sizeof *g)) == NULL) return MQE2E_ERR_NOMEM;
    for (size_t i = 0; i < n_grants; i++) {
        g[i].filter = grants[i].filter;
        g[i].rights = grants[i].rights;
    }
    req.client_id = client_id;
    req.role = role;
    memcpy(req.sign_public, sign_public, 32);
    memcpy(req.dh_public, dh_public, 32);
    req.grants = g;
    req.n_grants = n_grants;
    req.issued_at = now;
    req.expires_at = expires;
    req.serial = serial;
    rc = mqe2e_credential_issue_with(cred, cred_len, a->sign_public, authority_keystore_sign, a->ks,
                                     &req);
    free(g);
    return rc;
}

/* ------------------------------------------------------------------- pushes */

/* One sealed push to one client (push_seq taken from the store). */
static int push_one(authority *a, const char *client_id, const uint8_t dh_public[32],
                    uint64_t push_seq, const mqe2e_key_bundle *bundles, size_t n_bundles,
                    const mqe2e_group_name *removed, size_t n_removed, int with_rl,
                    const mqe2e_group_directory *dirs, size_t n_dirs)
{
    mqe2e_control_update u;
    char topic[TOPIC_MAX];
    size_t len = 0;
    memset(&u, 0, sizeof u);
    u.push_seq = push_seq;
    u.bundles = (mqe2e_key_bundle *)(uintptr_t)bundles;
    u.n_bundles = n_bundles;
    u.removed_groups = (mqe2e_group_name *)(uintptr_t)removed;
    u.n_removed_groups = n_removed;
    u.directories = (mqe2e_group_directory *)(uintptr_t)dirs;
    u.n_directories = n_dirs;
    if (with_rl && a->rl != NULL) {
        u.revocation_list = a->rl;
        u.revocation_list_len = a->rl_len;
    }
    int rc = mqe2e_push_seal(a->frame, FRAME_CAP, &len, a->dh_secret, dh_public, a->cfg->prefix,
                             a->id, &u);
    if (rc != MQE2E_OK) {
        a->counters[AUTH_C_PUSH_FAILED]++;
        authority_log(a, "cannot seal a push for %s: %s", client_id, mqe2e_strerror(rc));
        return rc;
    }
    client_topic(topic, a->cfg->prefix, client_id);
    if (publish(a, topic, a->frame, len, 0) != 0) {
        a->counters[AUTH_C_PUSH_FAILED]++;
        return MQE2E_ERR_IO;
    }
    a->counters[AUTH_C_PUSH_SENT]++;
    a->last_push_bytes = len;
    return MQE2E_OK;
}

typedef struct push_target {
    char client_id[MQE2E_ADB_NAME_MAX];
    uint8_t dh_public[32];
    uint64_t push_seq;
    uint32_t sender_id;
    uint64_t added_at;     /* membership start: older retired epochs are not its */
    uint32_t joined_epoch; /* epoch current at the join (0: not known) */
} push_target;

typedef struct member_collect {
    push_target *t;
    size_t n, cap;
} member_collect;

static int member_cb(const char *client_id, uint32_t sender_id, uint64_t added_at,
                     uint32_t joined_epoch, void *user)
{
    member_collect *c = user;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2U : 64U;
        push_target *n = realloc(c->t, cap * sizeof *n);
        if (n == NULL) return MQE2E_ERR_NOMEM;
        c->t = n;
        c->cap = cap;
    }
    memset(&c->t[c->n], 0, sizeof c->t[c->n]);
    snprintf(c->t[c->n].client_id, sizeof c->t[c->n].client_id, "%s", client_id);
    c->t[c->n].sender_id = sender_id;
    c->t[c->n].added_at = added_at;
    c->t[c->n].joined_epoch = joined_epoch;
    c->n++;
    return 0;
}

/* Drop the targets named in @p skip (members that already hold this state). */
static size_t targets_skip(push_target *t, size_t n, const char *const *skip, size_t n_skip)
{
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        int drop = 0;
        for (size_t k = 0; k < n_skip && !drop; k++)
            drop = strcmp(t[i].client_id, skip[k]) == 0;
        if (!drop) t[kept++] = t[i];
    }
    return kept;
}

/* The group's current bundle (and, for a signed group, its directory) to
 * every member except those in @p skip; with @p with_retired also the
 * retired epochs within grace that were current while each member was in
 * the group, with their (cut) grace, so members stop reading them in time. */
static int push_group_except(authority *a, const char *group, int with_rl, const char *const *skip,
                             size_t n_skip, int with_retired)
{
    member_collect m = {NULL, 0, 0};
    mqe2e_adb_group g;
    epoch_collect *ec = NULL;
    mqe2e_key_bundle *b = NULL, *mine = NULL;
    mqe2e_group_directory *dirs = NULL;
    size_t n_dirs = 0, n_b = 0;
    uint64_t now = a->now;
    int rc;

    if ((rc = mqe2e_adb_group_get(&g, a->db, group)) != MQE2E_OK) return rc;
    if ((rc = mqe2e_adb_tx_begin(a->db)) != MQE2E_OK) return rc;
    rc = mqe2e_adb_members_list_ex(a->db, group, member_cb, &m);
    if (rc == MQE2E_OK && n_skip > 0) m.n = targets_skip(m.t, m.n, skip, n_skip);
    for (size_t i = 0; rc == MQE2E_OK && i < m.n; i++) {
        mqe2e_adb_client c;
        rc = mqe2e_adb_client_get(&c, a->db, m.t[i].client_id);
        if (rc != MQE2E_OK) break;
        memcpy(m.t[i].dh_public, c.dh_public, 32);
        rc = mqe2e_adb_client_push_seq_next(&m.t[i].push_seq, a->db, m.t[i].client_id);
    }
    if (rc == MQE2E_OK)
        rc = mqe2e_adb_tx_commit(a->db);
    else
        (void)mqe2e_adb_tx_rollback(a->db);
    if (rc != MQE2E_OK || m.n == 0) goto out;
    /* b[0] the current epoch, then (with_retired) the retired ones. */
    if ((ec = calloc(1, sizeof *ec)) == NULL) {
        rc = MQE2E_ERR_NOMEM;
        goto out;
    }
    ec->now = now;
    ec->grace = a->cfg->grace;
    if (with_retired && (rc = mqe2e_adb_group_epochs_list(a->db, group, epoch_cb, ec)) != MQE2E_OK)
        goto out;
    if ((b = calloc(1U + ec->n, sizeof *b)) == NULL ||
        (mine = calloc(1U + ec->n, sizeof *mine)) == NULL) {
        rc = MQE2E_ERR_NOMEM;
        goto out;
    }
    epoch_row cur;
    memset(&cur, 0, sizeof cur);
    cur.epoch = g.current_epoch;
    cur.created_at = g.last_rotated_at;
    if ((rc = bundle_fill(a, &b[n_b++], &g, 0, &cur)) != MQE2E_OK) goto out;
    for (size_t j = 0; j < ec->n; j++) {
        if (ec->rows[j].retired_at == 0) continue;
        if ((rc = bundle_fill(a, &b[n_b++], &g, 0, &ec->rows[j])) != MQE2E_OK) goto out;
    }
    /* One directory for every member of a signed group (built once). */
    if (g.is_signed && (rc = directories_for(a, &dirs, &n_dirs, &group, 1)) != MQE2E_OK) goto out;
    /* A key-tree group (e.g. just converted): each member's current bundle
     * carries its own leaf key and TreePath (docs/PROTOCOL.md §10.8). */
    int tree = authority_tree_is_tree(a, group);
    /* The DB work is committed: seal and publish back to back, wait at the end. */
    for (size_t i = 0; i < m.n; i++) {
        size_t n_mine = 0;
        for (size_t k = 0; k < n_b; k++) {
            if (!mqe2e_adb_epoch_was_members(b[k].epoch, b[k].retired_at, m.t[i].added_at,
                                             m.t[i].joined_epoch))
                continue;
            mine[n_mine] = b[k];
            mine[n_mine].sender_id = m.t[i].sender_id;
            if (tree) (void)authority_tree_bundle(a, &mine[n_mine], m.t[i].client_id);
            n_mine++;
        }
        (void)push_one(a, m.t[i].client_id, m.t[i].dh_public, m.t[i].push_seq, mine, n_mine, NULL,
                       0, with_rl, dirs, n_dirs);
    }
    authority_flush(a);
out:
    if (b != NULL) bundles_free(b, 1U + (ec != NULL ? ec->n : 0U));
    if (mine != NULL) bundles_free(mine, 1U + (ec != NULL ? ec->n : 0U));
    free(ec);
    directories_free(dirs, n_dirs);
    free(m.t);
    return rc;
}

int authority_push_group(authority *a, const char *group, int with_rl)
{
    return push_group_except(a, group, with_rl, NULL, 0, 0);
}

/* After a member left (revoked, replaced, ungranted): a new epoch, the
 * retired ones' grace cut to revoke_grace, in the caller's transaction if
 * one is open (nothing is pushed; authority_push_after_removal() does that
 * once the transaction committed). */
int authority_rotate_after_removal_db(authority *a, const char *group, uint32_t *new_epoch)
{
    uint8_t secret[MQE2E_ADB_SECRET_BYTES];
    uint32_t epoch = 0;
    uint64_t g = a->cfg->revoke_grace > 0 ? a->cfg->revoke_grace : AUTHORITY_DEFAULT_REVOKE_GRACE;
    int rc;
    if (authority_tree_is_tree(a, group)) {
        /* A key tree: the next epoch is the tree's (one broadcast, not a push each). */
        rc = authority_tree_remove_db(a, group, &epoch);
    } else {
        randombytes_buf(secret, sizeof secret);
        rc = mqe2e_adb_group_rotate(&epoch, a->db, group, secret, a->now);
        sodium_memzero(secret, sizeof secret);
    }
    if (rc == MQE2E_OK)
        rc = mqe2e_adb_group_limit_grace(a->db, group, g > UINT32_MAX ? UINT32_MAX : (uint32_t)g);
    if (rc != MQE2E_OK) {
        authority_log(a, "cannot rotate group %s: %s", group, mqe2e_strerror(rc));
        return rc;
    }
    a->counters[AUTH_C_ROTATIONS]++;
    if (new_epoch != NULL) *new_epoch = epoch;
    return MQE2E_OK;
}

/* Push a group rotated by authority_rotate_after_removal_db() (with the list). */
int authority_push_after_removal(authority *a, const char *group, uint32_t epoch)
{
    uint64_t g = a->cfg->revoke_grace > 0 ? a->cfg->revoke_grace : AUTHORITY_DEFAULT_REVOKE_GRACE;
    uint64_t t0 = stopwatch_start(a);
    if (authority_tree_pending(a, group)) {
        int trc = authority_tree_publish(a, group);
        authority_flush(a);
        authority_log(a, "group %s rotated to epoch %lu, tree update broadcast in %.1f ms", group,
                      (unsigned long)epoch, stopwatch_ms(a, t0));
        authority_count_refresh(a);
        return trc;
    }
    int rc = push_group_except(a, group, 1, NULL, 0, 1);
    double ms = stopwatch_ms(a, t0);
    authority_log(
        a,
        "group %s rotated to epoch %lu, members pushed in %.1f ms (a member left; retired "
        "epochs readable %lu s)",
        group, (unsigned long)epoch, ms, (unsigned long)g);
    authority_count_refresh(a);
    return rc;
}

int authority_rotate_after_removal(authority *a, const char *group, uint32_t *new_epoch)
{
    uint32_t epoch = 0;
    int rc = mqe2e_adb_tx_begin(a->db);
    if (rc != MQE2E_OK) return rc;
    rc = authority_rotate_after_removal_db(a, group, &epoch);
    if (rc == MQE2E_OK)
        rc = mqe2e_adb_tx_commit(a->db);
    else
        (void)mqe2e_adb_tx_rollback(a->db);
    if (rc != MQE2E_OK) return rc;
    if (new_epoch != NULL) *new_epoch = epoch;
    return authority_push_after_removal(a, group, epoch);
}

int authority_rotate_group_db(authority *a, const char *group, uint32_t *new_epoch)
{
    uint8_t secret[MQE2E_ADB_SECRET_BYTES];
    uint32_t epoch = 0;
    if (authority_tree_is_tree(a, group)) {
        /* Its epochs are the tree's: they move with joins and removals only. */
        authority_log(a, "group %s has a key tree: it rotates only when members join or leave",
                      group);
        return MQE2E_ERR_STATE;
    }
    randombytes_buf(secret, sizeof secret);
    int rc = mqe2e_adb_group_rotate(&epoch, a->db, group, secret, a->now);
    sodium_memzero(secret, sizeof secret);
    if (rc != MQE2E_OK) {
        authority_log(a, "cannot rotate group %s: %s", group, mqe2e_strerror(rc));
        return rc;
    }
    a->counters[AUTH_C_ROTATIONS]++;
    if (new_epoch != NULL) *new_epoch = epoch;
    return MQE2E_OK;
}

int authority_rotate_group(authority *a, const char *group, int with_rl, uint32_t *new_epoch)
{
    uint32_t epoch = 0;
    int rc = authority_rotate_group_db(a, group, &epoch);
    if (rc != MQE2E_OK) return rc;
    if (new_epoch != NULL) *new_epoch = epoch;
    return authority_push_rotated(a, group, with_rl, epoch);
}

int authority_push_rotated(authority *a, const char *group, int with_rl, uint32_t epoch)
{
    uint64_t t0 = stopwatch_start(a);
    int rc = authority_push_group(a, group, with_rl);
    double ms = stopwatch_ms(a, t0);
    authority_log(a, "group %s rotated to epoch %lu, members pushed in %.1f ms", group,
                  (unsigned long)epoch, ms);
    authority_count_refresh(a);
    return rc;
}

/* Push one bundle set (or a removal) to a single client. */
int authority_push_client(authority *a, const char *client_id, const char *group, int removed)
{
    mqe2e_adb_client c;
    uint64_t seq = 0;
    mqe2e_key_bundle *b = NULL;
    size_t n = 0;
    mqe2e_group_name gn;
    int rc = mqe2e_adb_client_get(&c, a->db, client_id);
    if (rc != MQE2E_OK) return rc;
    if ((rc = mqe2e_adb_client_push_seq_next(&seq, a->db, client_id)) != MQE2E_OK) return rc;
    if (removed) {
        memset(&gn, 0, sizeof gn);
        snprintf(gn.name, sizeof gn.name, "%s", group);
        rc = push_one(a, client_id, c.dh_public, seq, NULL, 0, &gn, 1, 0, NULL, 0);
    } else {
        mqe2e_control_update u;
        memset(&u, 0, sizeof u);
        rc = bundles_for_client(a, &b, &n, client_id, a->now);
        u.bundles = b;
        u.n_bundles = n;
        if (rc == MQE2E_OK) rc = directories_attach(a, &u);
        if (rc == MQE2E_OK)
            rc = push_one(a, client_id, c.dh_public, seq, b, n, NULL, 0, 0, u.directories,
                          u.n_directories);
        directories_free(u.directories, u.n_directories);
        bundles_free(b, n);
    }
    authority_flush(a);
    return rc;
}

/* ----------------------------------------------- rotations decided by time */

/* Is @p g still to be rotated? The caller's condition, read again in the
 * rotating transaction. */
typedef int (*still_due_fn)(const authority *a, const mqe2e_adb_group *g, const void *arg);

/* Rotate @p group only if @p still_due holds for its row read in the same
 * store transaction as the rotation: replicas on one store that decide the
 * same rotation (a schedule, a message count) rotate it once; the others
 * find it done (the group moved on) and skip it. @return MQE2E_OK (rotated
 * or skipped) or the store's error. */
static int rotate_once(authority *a, const char *group, still_due_fn still_due, const void *arg)
{
    mqe2e_adb_group g;
    uint32_t epoch = 0;
    int due = 0;
    int rc = mqe2e_adb_tx_begin(a->db);
    if (rc != MQE2E_OK) return rc;
    rc = mqe2e_adb_group_get(&g, a->db, group);
    if (rc == MQE2E_OK) due = still_due(a, &g, arg);
    if (rc == MQE2E_OK && due) rc = authority_rotate_group_db(a, group, &epoch);
    if (rc == MQE2E_OK)
        rc = mqe2e_adb_tx_commit(a->db);
    else
        (void)mqe2e_adb_tx_rollback(a->db);
    if (rc != MQE2E_OK || !due) {
        if (rc == MQE2E_OK)
            authority_log(a, "group %s: rotation already done (another replica)", group);
        return rc;
    }
    return authority_push_rotated(a, group, 0, epoch);
}

static int schedule_due(const authority *a, const mqe2e_adb_group *g, const void *arg)
{
    (void)arg;
    return g->rotate_every_seconds > 0 && g->last_rotated_at + g->rotate_every_seconds <= a->now;
}

static int epoch_unchanged(const authority *a, const mqe2e_adb_group *g, const void *arg)
{
    (void)a;
    return g->current_epoch == *(const uint32_t *)arg;
}

/* ------------------------------------------------------- count-based rotation */

static int count_group_cb(const mqe2e_adb_group *g, void *user)
{
    authority *a = user;
    if (g->rotate_every_messages == 0) return 0;
    for (size_t i = 0; i < a->n_cg; i++) {
        if (strcmp(a->cg[i].name, g->name) == 0) {
            if (a->cg[i].epoch != g->current_epoch) a->cg[i].count = 0;
            a->cg[i].epoch = g->current_epoch;
            a->cg[i].threshold = g->rotate_every_messages;
            a->cg[i].seen = 1;
            return 0;
        }
    }
    count_group *n = realloc(a->cg, (a->n_cg + 1U) * sizeof *n);
    if (n == NULL) return MQE2E_ERR_NOMEM;
    a->cg = n;
    count_group *c = &a->cg[a->n_cg++];
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", g->name);
    snprintf(c->filter, sizeof c->filter, "%s", g->topic_filter);
    c->epoch = g->current_epoch;
    c->threshold = g->rotate_every_messages;
    c->seen = 1;
    if (a->io.subscribe != NULL) a->io.subscribe(a->io.ctx, c->filter);
    return 0;
}

void authority_count_refresh(authority *a)
{
    (void)mqe2e_adb_group_list(a->db, count_group_cb, a);
}

static void count_envelope(authority *a, const char *topic, const uint8_t *p, size_t n)
{
    mqe2e_envelope_view v;
    if (mqe2e_envelope_parse(&v, p, n) != MQE2E_OK) return;
    if (v.header.mode != MQE2E_MODE_GROUP && v.header.mode != MQE2E_MODE_SIGNED_GROUP) return;
    for (size_t i = 0; i < a->n_cg; i++) {
        count_group *c = &a->cg[i];
        if (!mqe2e_topic_matches(c->filter, topic) || v.header.epoch != c->epoch) continue;
        a->counters[AUTH_C_ENVELOPES]++;
        if (++c->count >= c->threshold) {
            char name[MQE2E_ADB_NAME_MAX];
            uint32_t epoch = c->epoch;
            snprintf(name, sizeof name, "%s", c->name);
            c->count = 0;
            authority_log(a, "group %s reached %lu messages at epoch %lu: rotating", name,
                          (unsigned long)c->threshold, (unsigned long)c->epoch);
            /* Every replica counts the same envelopes: the first rotates,
             * the others find the epoch moved. Rotation refreshes (and may
             * reallocate) the list. */
            (void)rotate_once(a, name, epoch_unchanged, &epoch);
            authority_count_refresh(a);
            return;
        }
    }
}

/* ------------------------------------------------------------------- enroll */

static int collect_name_cb(const char *name, void *user)
{
    name_sid *l = user;
    return name_sid_cb(name, 0, 0, l);
}

/* Refusals are logged at most AUTHORITY_REFUSAL_LOG_PER_S times a second: a
 * flood of bad frames must not become a flood of log lines (or disk). */
static int refusal_log_ok(authority *a)
{
    uint64_t s = a->now;
    if (s != a->log_second) {
        a->log_second = s;
        a->log_lines = 0;
    }
    if (a->log_lines < AUTHORITY_REFUSAL_LOG_PER_S) {
        a->log_lines++;
        return 1;
    }
    a->counters[AUTH_C_LOG_SUPPRESSED]++;
    return 0;
}

#define RLOG(a, ...)                                                                               \
    do {                                                                                           \
        if (refusal_log_ok(a)) authority_log(a, __VA_ARGS__);                                      \
    } while (0)

enum {
    ENROLL_STEP_NONE,   /* refused before its MAC verified: no reply */
    ENROLL_STEP_READ,   /* step 1 read (two DH) */
    ENROLL_STEP_PEEKED, /* its token found */
    ENROLL_STEP_MAC,    /* MAC verified: the sender holds the token, it is answered */
    ENROLL_STEP_STORED, /* its writes are in the committed batch */
};

typedef void (*job_fn)(authority *a, enroll_job *j);

/* One step over every queued job, in arrival order. (Running the read, MAC
 * and seal steps on a second thread gained nothing on the two-core
 * development machine, where the devices and the broker share the cores.) */
static void for_jobs(authority *a, size_t n, job_fn fn)
{
    for (size_t i = 0; i < n; i++)
        fn(a, &a->jobs[i]);
}

/* Step 1 read: the handshake's first two DH. */
static void job_read(authority *a, enroll_job *j)
{
    j->rc = mqe2e_enroll_accept_read(&j->st, &j->req, a->dh_secret, a->cfg->prefix, j->frame,
                                     j->frame_len);
    if (j->rc == MQE2E_OK) j->step = ENROLL_STEP_READ;
}

/* Token MAC; the token becomes the psk of step 2. */
static void job_mac(authority *a, enroll_job *j)
{
    (void)a;
    if (j->step != ENROLL_STEP_PEEKED) return;
    j->rc = mqe2e_enroll_accept_verify_mac(j->st, j->token);
    sodium_memzero(j->token, sizeof j->token);
    if (j->rc == MQE2E_OK) j->step = ENROLL_STEP_MAC;
}

/* Credential for a stored enrollment, then the sealed reply. */
static void job_seal(authority *a, enroll_job *j)
{
    mqe2e_control_update reply;
    uint8_t *cred = NULL;
    size_t cred_len = 0;

    if (j->step < ENROLL_STEP_MAC) return;
    j->out = a->job_out + (size_t)(j - a->jobs) * FRAME_CAP;
    memset(&reply, 0, sizeof reply);
    reply.status = j->status;
    if (j->step == ENROLL_STEP_STORED) {
        j->rc = issue_credential(a, &cred, &cred_len, j->req.client_id, j->info.role,
                                 j->req.sign_public, j->req.dh_public, j->info.grants,
                                 j->info.n_grants, j->serial, j->issued_at, j->expires_at);
        if (j->rc == MQE2E_OK) {
            reply.bundles = j->bundles;
            reply.n_bundles = j->n_bundles;
            j->rc = directories_attach(a, &reply);
        }
        if (j->rc == MQE2E_OK) {
            reply.status = MQE2E_STATUS_OK;
            reply.credential = cred;
            reply.credential_len = cred_len;
            reply.revocation_list = a->rl;
            reply.revocation_list_len = a->rl != NULL ? a->rl_len : 0;
        } else {
            directories_free(reply.directories, reply.n_directories);
            memset(&reply, 0, sizeof reply);
            reply.status = MQE2E_STATUS_REFUSED;
        }
    }
    if (mqe2e_enroll_accept_write(j->st, j->out, FRAME_CAP, &j->out_len, a->id, &reply) != MQE2E_OK)
        j->out_len = 0;
    j->status = reply.status;
    if (reply.status == MQE2E_STATUS_OK) directories_free(reply.directories, reply.n_directories);
    free(cred);
}

/* A replaced device's group, rotated inside the batch transaction so that
 * the new device's reply carries an epoch the old device never held. */
static int rotate_in_tx_cb(const char *group, void *user)
{
    enroll_job *j = user;
    uint8_t secret[MQE2E_ADB_SECRET_BYTES];
    if (authority_tree_is_tree(j->a, group)) {
        /* A key-tree group: the old device still holds its leaf key. Its
         * leaf is removed (one remove update: every key on its path is new,
         * wrapped under keys it never held), in this transaction, so the
         * old leaf is never valid past the commit; the members follow the
         * broadcast, no per-member push. The new device joins at a leaf if
         * its token names the group (enroll_write). */
        uint32_t epoch = 0;
        int rc = authority_tree_remove_db(j->a, group, &epoch);
        if (rc == MQE2E_OK) rc = mqe2e_adb_group_limit_grace(j->db, group, j->revoke_grace);
        return rc;
    }
    char **v = realloc(j->rotated, (j->n_rotated + 1U) * sizeof *v);
    if (v == NULL) return MQE2E_ERR_NOMEM;
    j->rotated = v;
    if ((v[j->n_rotated] = strdup(group)) == NULL) return MQE2E_ERR_NOMEM;
    j->n_rotated++;
    randombytes_buf(secret, sizeof secret);
    int rc = mqe2e_adb_group_rotate(NULL, j->db, group, secret, j->now);
    sodium_memzero(secret, sizeof secret);
    if (rc == MQE2E_OK) rc = mqe2e_adb_group_limit_grace(j->db, group, j->revoke_grace);
    return rc;
}

static void job_rotated_free(enroll_job *j)
{
    for (size_t i = 0; i < j->n_rotated; i++)
        free(j->rotated[i]);
    free(j->rotated);
    j->rotated = NULL;
    j->n_rotated = 0;
}

/* A refusal the device is told about, counted once. */
static int enroll_refuse(authority *a, enroll_job *j, int counter, int32_t status, int rc,
                         const char *why)
{
    a->counters[counter]++;
    RLOG(a, "enroll refused for %s: %s", j->req.client_id, why);
    j->status = status;
    j->counted = 1;
    return rc;
}

/* Every write of one enrollment, inside the batch transaction. On a refusal
 * j->status says what the device is told. Revocation is final: a revoked id
 * never enrolls again; an active id takes a new device only from a --replace
 * ticket; a used ticket serves only a retry from the same keys, shortly after
 * its first use, with the same credential serial. */
static int enroll_write(authority *a, enroll_job *j, uint64_t now)
{
    uint8_t token[MQE2E_ADB_SECRET_BYTES];
    name_sid groups = {NULL, NULL, NULL, NULL, 0, 0};
    mqe2e_adb_client c;
    int known;
    int rc = mqe2e_adb_token_consume(token, &j->info, a->db, j->req.token_id, j->req.sign_public,
                                     j->req.dh_public, now);
    sodium_memzero(token, sizeof token);
    if (rc == MQE2E_ERR_EXPIRED)
        return enroll_refuse(a, j, AUTH_C_ENROLL_TOKEN_EXPIRED, MQE2E_STATUS_TOKEN_EXPIRED, rc,
                             "token expired");
    if (rc == MQE2E_ERR_STATE)
        return enroll_refuse(a, j, AUTH_C_ENROLL_TOKEN_USED, MQE2E_STATUS_TOKEN_USED, rc,
                             "token already used (only its device may retry, shortly after)");
    if (rc != MQE2E_OK) goto failed;
    rc = mqe2e_adb_client_get(&c, a->db, j->req.client_id);
    known = rc == MQE2E_OK;
    if (rc == MQE2E_ERR_NOT_FOUND) rc = MQE2E_OK;
    if (rc != MQE2E_OK) goto failed;
    if (known && c.status != MQE2E_ADB_CLIENT_ACTIVE)
        return enroll_refuse(a, j, AUTH_C_ENROLL_REVOKED, MQE2E_STATUS_REVOKED, MQE2E_ERR_POLICY,
                             "client id revoked");
    if (j->info.retry) {
        /* The reply was lost: the same credential (same serial) again. */
        if (!known || sodium_memcmp(c.dh_public, j->req.dh_public, 32) != 0 ||
            sodium_memcmp(c.sign_public, j->req.sign_public, 32) != 0)
            return enroll_refuse(a, j, AUTH_C_ENROLL_TOKEN_USED, MQE2E_STATUS_TOKEN_USED,
                                 MQE2E_ERR_STATE, "token already used");
        j->serial = c.credential_serial;
        j->issued_at = c.enrolled_at;
        j->expires_at = c.credential_expires;
        a->counters[AUTH_C_ENROLL_RETRIES]++;
        return MQE2E_OK;
    }
    if (known && !j->info.replaces)
        return enroll_refuse(a, j, AUTH_C_ENROLL_ID_ACTIVE, MQE2E_STATUS_ID_ACTIVE,
                             MQE2E_ERR_EXISTS,
                             "client id is active (replacing its device takes a --replace ticket)");
    if (known) {
        /* Old credentials revoked, memberships dropped, groups rotated. */
        j->a = a;
        j->db = a->db;
        j->now = now;
        j->replaced = 1;
        j->revoke_grace = (uint32_t)(a->cfg->revoke_grace > 0 && a->cfg->revoke_grace < UINT32_MAX
                                         ? a->cfg->revoke_grace
                                         : AUTHORITY_DEFAULT_REVOKE_GRACE);
        rc = mqe2e_adb_client_replace(a->db, j->req.client_id, j->req.sign_public, j->req.dh_public,
                                      now, rotate_in_tx_cb, j);
        if (rc == MQE2E_OK) a->counters[AUTH_C_REPLACEMENTS]++;
    }
    j->issued_at = now;
    j->expires_at = now + a->cfg->credential_ttl;
    if (rc == MQE2E_OK)
        rc = mqe2e_adb_client_upsert_enrolled(&j->serial, a->db, j->req.client_id, j->info.role,
                                              j->req.sign_public, j->req.dh_public, j->info.grants,
                                              j->info.n_grants, now, j->expires_at);
    if (rc == MQE2E_OK)
        rc = mqe2e_adb_token_groups_list(a->db, j->req.token_id, collect_name_cb, &groups);
    for (size_t i = 0; rc == MQE2E_OK && i < groups.n; i++) {
        rc = mqe2e_adb_member_add(NULL, a->db, groups.names[i], j->req.client_id, now);
        if (rc == MQE2E_ERR_EXISTS) {
            rc = MQE2E_OK;
        } else if (rc == MQE2E_OK && authority_tree_is_tree(a, groups.names[i])) {
            /* A key-tree group: joined like `group grant` does (lowest free
             * leaf, the group at the tree's next epoch, one join update
             * broadcast after the commit); the reply's bundle carries the
             * leaf key and TreePath. A full tree refuses the enrollment. */
            uint32_t epoch = 0;
            rc = authority_tree_join_db(a, groups.names[i], j->req.client_id, &epoch);
            if (rc == MQE2E_ERR_EXHAUSTED) {
                name_sid_free(&groups);
                return enroll_refuse(a, j, AUTH_C_ENROLL_FAILED, MQE2E_STATUS_REFUSED, rc,
                                     "the key tree of a group of its token is full");
            }
        }
    }
    if (rc == MQE2E_OK)
        rc = mqe2e_adb_audit_append(a->db, now, j->req.client_id,
                                    known ? "enroll-replace" : "enroll", j->info.role);
    name_sid_free(&groups);
    if (rc == MQE2E_OK) return rc;
failed:
    a->counters[AUTH_C_ENROLL_FAILED]++;
    authority_log(a, "enroll of %s failed: %s", j->req.client_id, mqe2e_strerror(rc));
    j->status = MQE2E_STATUS_REFUSED;
    j->counted = 1;
    return rc;
}

/* After a committed batch that replaced devices: the new revocation list,
 * retained, and the rotated groups pushed to their members (the newcomers
 * have the new epochs in their replies). */
static void enroll_push_rotations(authority *a, size_t n)
{
    const char *fresh[AUTHORITY_ENROLL_BATCH];
    size_t n_fresh = 0;
    int any = 0;
    for (size_t i = 0; i < n; i++) {
        const enroll_job *j = &a->jobs[i];
        if (j->step != ENROLL_STEP_STORED || j->status != MQE2E_STATUS_OK) continue;
        fresh[n_fresh++] = j->req.client_id;
        any |= j->n_rotated > 0;
    }
    if (!any) return;
    for (size_t i = 0; i < n; i++) {
        const enroll_job *j = &a->jobs[i];
        if (j->step != ENROLL_STEP_STORED || j->status != MQE2E_STATUS_OK) continue;
        for (size_t g = 0; g < j->n_rotated; g++) {
            a->counters[AUTH_C_ROTATIONS]++;
            if (push_group_except(a, j->rotated[g], 1, fresh, n_fresh, 1) != MQE2E_OK)
                authority_log(a, "cannot push group %s after replacing %s", j->rotated[g],
                              j->req.client_id);
            else
                authority_log(a, "group %s rotated: device of %s replaced", j->rotated[g],
                              j->req.client_id);
        }
    }
    authority_count_refresh(a);
}

/* After a committed batch: the members already in a signed group the batch
 * joined must learn the newcomers' identity keys (docs/PROTOCOL.md 2.9), or
 * they would drop the newcomers' messages as unknown_signer until their next
 * HELLO. One push per member per changed signed group per batch, however
 * many of the batch joined it; the newcomers themselves are skipped (their
 * replies, built after the commit, hold the same directory). Called before
 * the replies go out, so no newcomer is told it is enrolled before the
 * others were sent its key. Unsigned groups cost one group lookup each. */
static void enroll_push_directories(authority *a, size_t n)
{
    const char *fresh[AUTHORITY_ENROLL_BATCH];
    const char **groups = NULL;
    size_t n_fresh = 0, n_groups = 0, cap = 0;

    for (size_t i = 0; i < n && n_fresh < AUTHORITY_ENROLL_BATCH; i++) {
        const enroll_job *j = &a->jobs[i];
        if (j->step != ENROLL_STEP_STORED || j->status != MQE2E_STATUS_OK) continue;
        fresh[n_fresh++] = j->req.client_id;
        cap += j->n_bundles;
    }
    if (n_fresh == 0 || cap == 0 || (groups = calloc(cap, sizeof *groups)) == NULL) return;
    for (size_t i = 0; i < n; i++) {
        const enroll_job *j = &a->jobs[i];
        if (j->step != ENROLL_STEP_STORED || j->status != MQE2E_STATUS_OK) continue;
        for (size_t k = 0; k < j->n_bundles; k++) {
            int seen = 0;
            for (size_t g = 0; g < n_groups && !seen; g++)
                seen = strcmp(groups[g], j->bundles[k].group) == 0;
            if (!seen) groups[n_groups++] = j->bundles[k].group;
        }
    }
    for (size_t g = 0; g < n_groups; g++) {
        mqe2e_adb_group grp;
        if (mqe2e_adb_group_get(&grp, a->db, groups[g]) != MQE2E_OK || !grp.is_signed) continue;
        uint64_t sent = a->counters[AUTH_C_PUSH_SENT];
        int rc = push_group_except(a, groups[g], 0, fresh, n_fresh, 0);
        if (rc != MQE2E_OK)
            authority_log(a, "cannot push the directory of %s: %s", groups[g], mqe2e_strerror(rc));
        else
            authority_log(a, "group %s: directory pushed to %lu members after enrollment",
                          groups[g], (unsigned long)(a->counters[AUTH_C_PUSH_SENT] - sent));
    }
    free(groups);
}

/* The queued ENROLL frames, in arrival order: handshake reads, then one
 * transaction for the token lookups, MAC checks, all their writes, each in
 * its own savepoint (a refused one undoes only itself), and the bundles read
 * back, one fsync at the commit; then credentials
 * and sealed replies, published in order. No reply
 * leaves before the commit returned, so a device is never told it is enrolled
 * when a crash could still lose it. */
/* tree_threshold (docs/AUTHORITY.md): the push groups the batch's
 * enrollments joined, collected before the replies free their bundles. */
static size_t enroll_joined_groups(authority *a, size_t n, char ***out)
{
    char **v = NULL;
    size_t k = 0;
    *out = NULL;
    if (a->cfg->tree_threshold == 0) return 0;
    for (size_t i = 0; i < n; i++) {
        const enroll_job *j = &a->jobs[i];
        if (j->step != ENROLL_STEP_STORED || j->status != MQE2E_STATUS_OK) continue;
        for (size_t b = 0; b < j->n_bundles; b++) {
            const char *g = j->bundles[b].group;
            int seen = j->bundles[b].retired_at != 0 || j->bundles[b].tree_path_len > 0;
            for (size_t x = 0; x < k && !seen; x++)
                seen = strcmp(v[x], g) == 0;
            if (seen) continue;
            char **nv = realloc(v, (k + 1U) * sizeof *nv);
            if (nv == NULL) break;
            v = nv;
            if ((v[k] = strdup(g)) == NULL) break;
            k++;
        }
    }
    *out = v;
    return k;
}

/* After the batch's replies: each joined push group at or over the threshold
 * becomes a key tree (its own transaction, then one push per member). */
static void enroll_convert_groups(authority *a, char **v, size_t k)
{
    for (size_t i = 0; i < k; i++) {
        unsigned depth = 0;
        (void)authority_tree_threshold_check(a, v[i], &depth);
        free(v[i]);
    }
    free(v);
}

static void enroll_commit(authority *a)
{
    size_t n = a->n_jobs;
    uint64_t now = a->now;
    int rc, began;
    if (n == 0) return;

    for_jobs(a, n, job_read);
    /* One transaction from the token lookups to the bundles: every read of
     * the batch shares its snapshot and lock instead of taking its own. */
    rc = mqe2e_adb_tx_begin(a->db);
    began = rc == MQE2E_OK;
    for (size_t i = 0; i < n; i++) {
        enroll_job *j = &a->jobs[i];
        j->status = MQE2E_STATUS_REFUSED;
        if (j->step != ENROLL_STEP_READ) {
            a->counters[AUTH_C_ENROLL_BAD_FRAME]++;
            RLOG(a, "enroll refused: unreadable request (%s)", mqe2e_strerror(j->rc));
        } else if (mqe2e_adb_token_peek(j->token, &j->info, a->db, j->req.token_id) != MQE2E_OK) {
            /* No reply: whoever sent this did not show a token we know. */
            a->counters[AUTH_C_ENROLL_UNKNOWN_TOKEN]++;
            RLOG(a, "enroll refused for %s: unknown token", j->req.client_id);
        } else {
            j->step = ENROLL_STEP_PEEKED;
        }
    }
    for_jobs(a, n, job_mac);

    for (size_t i = 0; i < n; i++) {
        enroll_job *j = &a->jobs[i];
        if (j->step == ENROLL_STEP_PEEKED) {
            a->counters[AUTH_C_ENROLL_BAD_MAC]++;
            RLOG(a, "enroll refused for %s: bad token mac", j->req.client_id);
            j->step = ENROLL_STEP_NONE;
        }
        if (j->step != ENROLL_STEP_MAC) continue;
        /* From here the sender holds the token: refusals are answered. */
        if (strcmp(j->info.client_id, j->req.client_id) != 0) {
            a->counters[AUTH_C_ENROLL_WRONG_CLIENT]++;
            RLOG(a, "enroll refused for %s: token is for another client id", j->req.client_id);
            j->counted = 1;
            continue;
        }
        if (rc != MQE2E_OK) continue;
        if ((rc = mqe2e_adb_tx_savepoint(a->db)) != MQE2E_OK) continue;
        size_t tree_mark = authority_tree_mark(a);
        int w = enroll_write(a, j, now);
        if (w != MQE2E_OK) job_rotated_free(j); /* undone with its savepoint */
        rc = mqe2e_adb_tx_savepoint_end(a->db, w == MQE2E_OK);
        /* Its key-tree changes go with its savepoint: the trees as the
         * batch's earlier enrollments left them, their updates kept. */
        if (w != MQE2E_OK || rc != MQE2E_OK) authority_tree_undo(a, tree_mark);
        if (rc == MQE2E_OK && w == MQE2E_OK) j->step = ENROLL_STEP_STORED;
    }
    /* Bundles are read-only: read before the commit, in the same snapshot
     * (nothing else writes between it and the commit); still sent only
     * after it. */
    for (size_t i = 0; i < n && rc == MQE2E_OK && began; i++) {
        enroll_job *j = &a->jobs[i];
        if (j->step == ENROLL_STEP_STORED &&
            bundles_for_client(a, &j->bundles, &j->n_bundles, j->req.client_id, now) != MQE2E_OK)
            j->step = ENROLL_STEP_MAC; /* answered REFUSED, counted as failed below */
    }
    if (rc == MQE2E_OK && began) {
        rc = mqe2e_adb_tx_commit(a->db);
    } else if (began) {
        (void)mqe2e_adb_tx_rollback(a->db);
    }
    if (rc == MQE2E_OK && began) {
        a->counters[AUTH_C_ENROLL_COMMITS]++;
        /* Key-tree joins and removals of the batch: one update each, in the
         * order they were made (epoch order per group), after the commit. */
        if (authority_tree_publish_all(a) != MQE2E_OK)
            authority_log(a, "a key-tree update of the enroll batch was not broadcast");
    } else {
        authority_tree_rollback(a);
        authority_log(a, "enroll batch of %zu not committed: %s", n, mqe2e_strerror(rc));
    }
    for (size_t i = 0; i < n; i++) {
        enroll_job *j = &a->jobs[i];
        if (j->step == ENROLL_STEP_STORED && (rc != MQE2E_OK || !began))
            j->step = ENROLL_STEP_MAC; /* answered REFUSED, counted as failed below */
    }
    for (size_t i = 0; i < n; i++) {
        if (a->jobs[i].step == ENROLL_STEP_STORED &&
            (a->jobs[i].n_rotated > 0 || a->jobs[i].replaced)) {
            (void)authority_revocations_refresh(a, 1);
            break;
        }
    }
    revocations_sync(a);
    for_jobs(a, n, job_seal);
    enroll_push_rotations(a, n);
    enroll_push_directories(a, n);
    char **joined = NULL;
    size_t n_joined = enroll_joined_groups(a, n, &joined);

    for (size_t i = 0; i < n; i++) {
        enroll_job *j = &a->jobs[i];
        /* Every queued frame ends in exactly one counter. */
        if (j->step == ENROLL_STEP_STORED && j->status == MQE2E_STATUS_OK) {
            a->counters[AUTH_C_ENROLL_OK]++;
            authority_log(a, "enrolled %s (serial %lu, %zu bundles)", j->req.client_id,
                          (unsigned long)j->serial, j->n_bundles);
        } else if (j->step >= ENROLL_STEP_MAC && !j->counted) {
            a->counters[AUTH_C_ENROLL_FAILED]++;
            authority_log(a, "enroll of %s failed", j->req.client_id);
        }
        if (j->step >= ENROLL_STEP_MAC) {
            if (j->out_len > 0) {
                char topic[TOPIC_MAX];
                client_topic(topic, a->cfg->prefix, j->req.client_id);
                a->last_enroll_reply_bytes = j->out_len;
                (void)publish(a, topic, j->out, j->out_len, 0);
            } else {
                authority_log(a, "cannot write the enroll reply for %s", j->req.client_id);
            }
        }
        if (j->out != NULL) sodium_memzero(j->out, j->out_len);
        bundles_free(j->bundles, j->n_bundles);
        job_rotated_free(j);
        free(j->frame);
        mqe2e_enroll_authority_free(j->st);
        sodium_memzero(j, sizeof *j);
    }
    a->n_jobs = 0;
    enroll_convert_groups(a, joined, n_joined);
}

/* An admitted ENROLL frame waits for the batch (enroll_commit()). */
static void handle_enroll(authority *a, const uint8_t *frame, size_t len)
{
    if (a->n_jobs == AUTHORITY_ENROLL_BATCH) enroll_commit(a);
    enroll_job *j = &a->jobs[a->n_jobs];
    memset(j, 0, sizeof *j);
    if ((j->frame = malloc(len)) == NULL) {
        a->counters[AUTH_C_ENROLL_FAILED]++;
        return;
    }
    memcpy(j->frame, frame, len);
    j->frame_len = len;
    if (a->n_jobs == 0) a->jobs_first_ms = a->now_ms;
    a->n_jobs++;
}

/* Checks before any handshake work, cheapest first (the frame is already
 * decoded): the claimed id must be one the authority knows (a token names it
 * for ENROLL, it is enrolled for HELLO), then the limiter must admit it.
 * @return 1 to go on with the handshake. */
static int admit_handshake(authority *a, const mqe2e_control_frame *f)
{
    int enroll = f->kind == MQE2E_CONTROL_ENROLL;
    int rc = enroll ? mqe2e_adb_token_known_client(a->db, f->from)
                    : mqe2e_adb_client_known(a->db, f->from);
    if (rc != MQE2E_OK) {
        a->counters[enroll ? AUTH_C_ENROLL_UNKNOWN_TOKEN : AUTH_C_HELLO_UNKNOWN_CLIENT]++;
        RLOG(a, "%s refused: %s %s", enroll ? "enroll" : "hello",
             enroll ? "no token for" : "unknown client", f->from);
        return 0;
    }
    uint8_t key[2U + MQE2E_ID_MAX];
    size_t l = strnlen(f->from, MQE2E_ID_MAX);
    key[0] = enroll ? 'E' : 'H';
    memcpy(key + 1, f->from, l);
    authority_rl_verdict v = authority_rl_admit(a->limiter, key, l + 1U, a->now_ms);
    if (v != AUTHORITY_RL_ADMIT) {
        a->counters[enroll ? AUTH_C_ENROLL_RATE_LIMITED : AUTH_C_HELLO_RATE_LIMITED]++;
        RLOG(a, "%s from %s rate limited (%s)", enroll ? "enroll" : "hello", f->from,
             v == AUTHORITY_RL_KEY ? "this id" : "all handshakes");
        return 0;
    }
    return 1;
}

/* -------------------------------------------------------------------- hello */

static void handle_hello(authority *a, const uint8_t *frame, size_t len)
{
    mqe2e_hello_authority *st = NULL;
    mqe2e_hello_request req;
    mqe2e_adb_client c;
    mqe2e_control_update reply;
    mqe2e_key_bundle *bundles = NULL;
    mqe2e_group_directory *hello_dirs = NULL;
    size_t n_bundles = 0, out_len = 0, n_hello_dirs = 0;
    uint8_t *cred = NULL;
    size_t cred_len = 0;
    uint64_t now = a->now;
    grant_collect gc = {NULL, 0, 0};
    int rc;

    memset(&reply, 0, sizeof reply);
    rc = mqe2e_hello_accept_read(&st, &req, a->dh_secret, a->cfg->prefix, frame, len);
    if (rc != MQE2E_OK) {
        a->counters[AUTH_C_HELLO_BAD_FRAME]++;
        RLOG(a, "hello refused: unreadable request (%s)", mqe2e_strerror(rc));
        goto out;
    }
    rc = mqe2e_adb_client_get(&c, a->db, req.client_id);
    if (rc != MQE2E_OK) {
        a->counters[AUTH_C_HELLO_UNKNOWN_CLIENT]++;
        RLOG(a, "hello refused: unknown client %s", req.client_id);
        goto out;
    }
    if (mqe2e_hello_accept_check_static(st, c.dh_public) != MQE2E_OK) {
        a->counters[AUTH_C_HELLO_BAD_STATIC]++;
        RLOG(a, "hello refused for %s: not the enrolled key", req.client_id);
        goto out;
    }
    revocations_sync(a);
    if (c.status != MQE2E_ADB_CLIENT_ACTIVE) {
        a->counters[AUTH_C_HELLO_REVOKED]++;
        authority_log(a, "hello refused for %s: revoked", req.client_id);
        reply.status = MQE2E_STATUS_REVOKED;
        reply.revocation_list = a->rl;
        reply.revocation_list_len = a->rl != NULL ? a->rl_len : 0;
        goto reply;
    }
    /* Renew at 2/3 of the lifetime, or when the client lacks the latest one. */
    if (req.credential_serial != c.credential_serial ||
        now + a->cfg->credential_ttl / 3U >= c.credential_expires) {
        uint64_t serial = 0;
        rc = mqe2e_adb_grant_list(a->db, c.client_id, grant_cb, &gc);
        if (rc == MQE2E_OK)
            rc = mqe2e_adb_client_upsert_enrolled(&serial, a->db, c.client_id, c.role,
                                                  c.sign_public, c.dh_public, gc.g, gc.n, now,
                                                  now + a->cfg->credential_ttl);
        if (rc == MQE2E_OK)
            rc = issue_credential(a, &cred, &cred_len, c.client_id, c.role, c.sign_public,
                                  c.dh_public, gc.g, gc.n, serial, now,
                                  now + a->cfg->credential_ttl);
        if (rc != MQE2E_OK) goto failed;
    }
    if ((rc = bundles_for_client(a, &bundles, &n_bundles, c.client_id, now)) != MQE2E_OK ||
        (rc = mqe2e_adb_client_push_seq(&reply.push_seq, a->db, c.client_id)) != MQE2E_OK)
        goto failed;
    reply.bundles = bundles;
    reply.n_bundles = n_bundles;
    if ((rc = directories_attach(a, &reply)) != MQE2E_OK) goto failed;
    hello_dirs = reply.directories;
    n_hello_dirs = reply.n_directories;
    reply.status = MQE2E_STATUS_OK;
    reply.credential = cred;
    reply.credential_len = cred_len;
    reply.revocation_list = a->rl;
    reply.revocation_list_len = a->rl != NULL ? a->rl_len : 0;
    a->counters[AUTH_C_HELLO_OK]++;
    if (a->cfg->verbose)
        authority_log(a, "hello from %s: %zu bundles%s", c.client_id, n_bundles,
                      cred ? ", renewed credential" : "");
    goto reply;
failed:
    a->counters[AUTH_C_HELLO_FAILED]++;
    authority_log(a, "hello of %s failed: %s", req.client_id, mqe2e_strerror(rc));
    memset(&reply, 0, sizeof reply);
    reply.status = MQE2E_STATUS_REFUSED;
reply:
    rc = mqe2e_hello_accept_write(st, a->frame, FRAME_CAP, &out_len, a->id, &reply);
    if (rc == MQE2E_OK) {
        char topic[TOPIC_MAX];
        client_topic(topic, a->cfg->prefix, req.client_id);
        a->last_hello_reply_bytes = out_len;
        (void)publish(a, topic, a->frame, out_len, 0);
    } else {
        authority_log(a, "cannot write the hello reply for %s: %s", req.client_id,
                      mqe2e_strerror(rc));
    }
out:
    sodium_memzero(a->frame, out_len);
    bundles_free(bundles, n_bundles);
    directories_free(hello_dirs, n_hello_dirs);
    free(cred);
    free(gc.g);
    mqe2e_hello_authority_free(st);
}

/* ----------------------------------------------------------------- operator */

static void handle_operator(authority *a, const uint8_t *frame, size_t len)
{
    mqe2e_operator_authority *st = NULL;
    mqe2e_operator_request req;
    mqe2e_operator_reply reply;
    uint8_t pk[32];
    size_t out_len = 0;
    uint64_t now = a->now;
    op_result res;
    int rc;

    memset(&reply, 0, sizeof reply);
    memset(&res, 0, sizeof res);
    rc = mqe2e_operator_accept_read(&st, &req, a->dh_secret, a->cfg->prefix, frame, len);
    if (rc != MQE2E_OK) {
        a->counters[rc == MQE2E_ERR_SUITE || rc == MQE2E_ERR_STATE ? AUTH_C_FRAME_UNKNOWN
                                                                   : AUTH_C_OP_BAD_FRAME]++;
        RLOG(a, "control frame refused: %s", mqe2e_strerror(rc));
        return;
    }
    if (mqe2e_adb_operator_get(pk, NULL, a->db, req.operator_name) != MQE2E_OK) {
        a->counters[AUTH_C_OP_UNKNOWN]++;
        authority_log(a, "operator request refused: unknown operator %s", req.operator_name);
        goto out;
    }
    rc = mqe2e_operator_accept_verify(st, pk, now);
    if (rc == MQE2E_ERR_AUTH) {
        a->counters[AUTH_C_OP_BAD_SIGNATURE]++;
        authority_log(a, "operator request refused: bad signature (claimed operator %s)",
                      req.operator_name);
        goto out;
    }
    if (rc == MQE2E_ERR_EXPIRED) {
        a->counters[AUTH_C_OP_STALE]++;
        authority_log(a, "operator request from %s refused: issued_at outside the window",
                      req.operator_name);
        reply.status = MQE2E_OPSTATUS_REFUSED;
        reply.message =
            (char *)(uintptr_t) "request time outside the accepted window (check the clocks)";
    } else if (rc != MQE2E_OK) {
        a->counters[AUTH_C_OP_BAD_FRAME]++;
        goto out;
    } else if ((rc = mqe2e_adb_op_nonce_check_and_store(a->db, req.nonce, sizeof req.nonce, now)) !=
               MQE2E_OK) {
        a->counters[AUTH_C_OP_REPLAY]++;
        authority_log(a, "operator request from %s refused: %s", req.operator_name,
                      rc == MQE2E_ERR_EXISTS ? "replayed nonce" : mqe2e_strerror(rc));
        reply.status = MQE2E_OPSTATUS_REFUSED;
        reply.message = (char *)(uintptr_t)(rc == MQE2E_ERR_EXISTS ? "replayed request"
                                                                   : "cannot record the request");
    } else {
        a->counters[AUTH_C_OP_OK]++;
        authority_log(a, "operator %s: %s", req.operator_name, req.command);
        operator_execute(a, &res, &req, now);
        reply.status = res.status;
        reply.message = (char *)(uintptr_t)res.message;
        reply.output = res.output != NULL ? res.output : (char *)(uintptr_t) "";
        char actor[MQE2E_ADB_NAME_MAX + 16];
        snprintf(actor, sizeof actor, "operator:%s", req.operator_name);
        (void)mqe2e_adb_audit_append(a->db, now, actor, req.command,
                                     res.status == 0 ? "ok" : "failed");
    }
    rc = mqe2e_operator_accept_write(st, a->frame, FRAME_CAP, &out_len, a->id, &reply);
    if (rc == MQE2E_OK) {
        char topic[TOPIC_MAX];
        client_topic(topic, a->cfg->prefix, mqe2e_operator_accept_from(st));
        a->last_operator_reply_bytes = out_len;
        (void)publish(a, topic, a->frame, out_len, 0);
    } else {
        authority_log(a, "cannot write the operator reply: %s", mqe2e_strerror(rc));
    }
out:
    sodium_memzero(a->frame, out_len);
    op_result_free(&res);
    mqe2e_operator_request_clear(&req);
    mqe2e_operator_authority_free(st);
}

/* ----------------------------------------------------------------- dispatch */

/* The kind of a control frame, read from its first two canonical fields
 * (08 01 10 <varint kind>, docs/PROTOCOL.md 8.1), or 0 when they are not
 * there. Only routing: the route's decoder then checks the whole frame
 * strictly. */
static uint32_t frame_kind(const uint8_t *p, size_t n)
{
    if (n < 4U || p[0] != 0x08 || p[1] != MQE2E_CONTROL_FORMAT || p[2] != 0x10) return 0;
    uint64_t v = 0;
    for (size_t i = 3, shift = 0; i < n && i < 8U; i++, shift += 7U) {
        v |= (uint64_t)(p[i] & 0x7FU) << shift;
        if ((p[i] & 0x80U) == 0) return v <= UINT32_MAX ? (uint32_t)v : 0;
    }
    return 0;
}

/* Decoder of the handshake kinds (ENROLL, HELLO): the generic ControlFrame
 * codec, step 1 only, then the admission checks. 1 to go on. */
static int decode_handshake(authority *a, uint32_t kind, const uint8_t *p, size_t n)
{
    mqe2e_control_frame f;
    int rc = mqe2e_control_frame_decode(&f, p, n);
    if (rc != MQE2E_OK || f.kind != kind || f.step != 1U) {
        a->counters[AUTH_C_FRAME_UNKNOWN]++;
        if (a->cfg->verbose)
            authority_log(a, "control frame ignored: %s",
                          rc != MQE2E_OK ? mqe2e_strerror(rc) : "not a request");
        return 0;
    }
    return admit_handshake(a, &f);
}

/* One row a kind of request on P/authority: how its frame is decoded and
 * admitted, and what handles it. A new request kind is one row here. */
typedef struct control_route {
    uint32_t kind;
    /* Strict decode and admission before the handler; NULL when the
     * handler's own decoder is the whole check (operator frames). */
    int (*decode)(authority *a, uint32_t kind, const uint8_t *p, size_t n);
    void (*handle)(authority *a, const uint8_t *p, size_t n);
    size_t request_bytes; /* offsetof the "last request size" field (status) */
    int queued;           /* handled in batches: the queue is not committed first */
} control_route;

static const control_route control_routes[] = {
    {MQE2E_CONTROL_ENROLL, decode_handshake, handle_enroll,
     offsetof(authority, last_enroll_request_bytes), 1},
    {MQE2E_CONTROL_HELLO, decode_handshake, handle_hello,
     offsetof(authority, last_hello_request_bytes), 0},
    {MQE2E_CONTROL_OPERATOR, NULL, handle_operator,
     offsetof(authority, last_operator_request_bytes), 0},
};

static void handle_control(authority *a, const uint8_t *p, size_t n)
{
    uint32_t kind = frame_kind(p, n);
    const control_route *r = NULL;
    for (size_t i = 0; i < sizeof control_routes / sizeof control_routes[0]; i++)
        if (control_routes[i].kind == kind) r = &control_routes[i];
    /* Anything but a queued kind sees the queued enrollments done first
     * (arrival order). */
    if (r == NULL || !r->queued) enroll_commit(a);
    if (r == NULL) {
        a->counters[AUTH_C_FRAME_UNKNOWN]++;
        if (a->cfg->verbose)
            authority_log(a, "control frame ignored: unknown kind %lu", (unsigned long)kind);
        return;
    }
    if (r->decode != NULL && !r->decode(a, kind, p, n)) return;
    *(size_t *)(void *)((uint8_t *)a + r->request_bytes) = n;
    r->handle(a, p, n);
}

static int due_cb(const char *name, void *user)
{
    name_sid *l = user;
    return name_sid_cb(name, 0, 0, l);
}

static void rotate_due_cb_all(authority *a, uint64_t now)
{
    name_sid due = {NULL, NULL, NULL, NULL, 0, 0};
    if (mqe2e_adb_groups_due_for_rotation(a->db, now, due_cb, &due) == MQE2E_OK) {
        for (size_t i = 0; i < due.n; i++) {
            authority_log(a, "group %s is due for rotation", due.names[i]);
            (void)rotate_once(a, due.names[i], schedule_due, NULL);
        }
    }
    name_sid_free(&due);
}

/* ------------------------------------------------------------------ the API */

static void set_time(authority *a, uint64_t now, uint64_t now_ms)
{
    a->now = now;
    a->now_ms = now_ms;
}

int authority_core_new(authority_core **out, mqe2e_keystore *ks, mqe2e_adb *db,
                       const authority_core_config *cfg, const authority_io *io, uint64_t now)
{
    if (out == NULL || ks == NULL || db == NULL || cfg == NULL || io == NULL || io->publish == NULL)
        return MQE2E_ERR_INVALID_ARG;
    *out = NULL;
    if (!mqe2e_control_prefix_valid(cfg->prefix)) return MQE2E_ERR_INVALID_ARG;
    authority *a = calloc(1, sizeof *a);
    if (a == NULL) return MQE2E_ERR_NOMEM;
    int rc;
    a->cfg = cfg;
    a->io = *io;
    a->ks = ks;
    a->db = db;
    a->id = mqe2e_keystore_client_id(ks);
    a->started_at = now;
    a->now = now;
    if (a->id == NULL) {
        rc = MQE2E_ERR_INVALID_ARG;
        goto fail;
    }
    if ((a->dh_secret = sodium_malloc(32)) == NULL || (a->frame = malloc(FRAME_CAP)) == NULL ||
        (a->jobs = calloc(AUTHORITY_ENROLL_BATCH, sizeof *a->jobs)) == NULL ||
        (a->job_out = malloc(AUTHORITY_ENROLL_BATCH * (size_t)FRAME_CAP)) == NULL) {
        rc = MQE2E_ERR_NOMEM;
        goto fail;
    }
    authority_rl_config limits;
    if (cfg->limits != NULL)
        limits = *cfg->limits;
    else
        authority_rl_defaults(&limits);
    if ((rc = authority_rl_new(&a->limiter, &limits)) != MQE2E_OK) goto fail;
    if ((rc = mqe2e_keystore_dh_secret(ks, a->dh_secret)) != MQE2E_OK ||
        (rc = mqe2e_keystore_identity_public(ks, a->sign_public, a->dh_public)) != MQE2E_OK)
        goto fail;
    snprintf(a->topic_authority, sizeof a->topic_authority, "%s/authority", cfg->prefix);
    snprintf(a->topic_revocations, sizeof a->topic_revocations, "%s/revocations", cfg->prefix);
    authority_count_refresh(a);
    *out = a;
    return MQE2E_OK;
fail:
    authority_core_free(a, now, 0);
    return rc;
}

void authority_core_free(authority_core *a, uint64_t now, uint64_t now_ms)
{
    if (a == NULL) return;
    set_time(a, now, now_ms);
    if (a->jobs != NULL && a->job_out != NULL && a->frame != NULL) enroll_commit(a);
    authority_flush(a);
    if (a->dh_secret != NULL) sodium_free(a->dh_secret);
    if (a->frame != NULL) {
        sodium_memzero(a->frame, FRAME_CAP);
        free(a->frame);
    }
    free(a->rl);
    free(a->cg);
    authority_trees_free(a);
    authority_rl_free(a->limiter);
    if (a->jobs != NULL) {
        sodium_memzero(a->jobs, AUTHORITY_ENROLL_BATCH * sizeof *a->jobs);
        free(a->jobs);
    }
    free(a->job_out);
    free(a);
}

void authority_core_connected(authority_core *a, uint64_t now)
{
    a->now = now;
    if (a->io.subscribe != NULL)
        for (size_t i = 0; i < a->n_cg; i++)
            a->io.subscribe(a->io.ctx, a->cg[i].filter);
    (void)authority_revocations_refresh(a, 1);
    authority_flush(a);
}

const char *authority_core_request_topic(const authority_core *a)
{
    return a->topic_authority;
}

void authority_core_message(authority_core *a, const char *topic, const uint8_t *payload,
                            size_t len, uint64_t now, uint64_t now_ms)
{
    set_time(a, now, now_ms);
    if (topic == NULL || (payload == NULL && len > 0)) return;
    if (strcmp(topic, a->topic_authority) == 0) {
        if (len > 0)
            handle_control(a, payload, len);
        else
            a->counters[AUTH_C_FRAME_UNKNOWN]++;
    } else if (len > 0) {
        enroll_commit(a);
        count_envelope(a, topic, payload, len);
    }
}

void authority_core_tick(authority_core *a, uint64_t now, uint64_t now_ms, int idle)
{
    set_time(a, now, now_ms);
    if (a->n_jobs > 0 && (idle || now_ms - a->jobs_first_ms >= AUTHORITY_ENROLL_BATCH_WAIT_MS))
        enroll_commit(a);
    if (now >= a->last_schedule + SCHEDULE_EVERY_S) {
        a->last_schedule = now;
        enroll_commit(a);
        rotate_due_cb_all(a, now);
        revocations_sync(a);
        /* Sign the list afresh (and publish it retained) once half its
         * validity passed, so members hear one before its next_update. */
        if (list_resign_due(a)) {
            (void)authority_revocations_refresh(a, 1);
            authority_flush(a);
        }
        if (now >= a->last_prune + 60U) {
            a->last_prune = now;
            (void)mqe2e_adb_op_nonce_prune(NULL, a->db, now - 2U * MQE2E_OPERATOR_MAX_SKEW);
            (void)mqe2e_adb_token_prune(NULL, a->db, now);
        }
    }
}

int authority_core_batching(const authority_core *a)
{
    return a->n_jobs > 0;
}

uint64_t authority_core_counter(const authority_core *a, const char *name)
{
    for (int i = 0; i < AUTH_C_COUNT; i++)
        if (name != NULL && strcmp(counter_names[i], name) == 0) return a->counters[i];
    return 0;
}
