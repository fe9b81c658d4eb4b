/* Operator commands executed by the authority once a request is verified
 * (signature, freshness, single-use nonce). Arguments are "key=value"
 * strings; docs/AUTHORITY.md lists every command and key. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "mqe2e/credential.h"
#include "mqe2e/error.h"
#include "mqe2e/policy.h"
#include "operator_proto.h"

/* Leaves room in a 64 KiB frame for the Noise overhead and the message. */
#define OUTPUT_MAX 60000U
#define TOKEN_BATCH_MAX 100L
#define TOKEN_TTL_DEFAULT 604800L

void op_result_free(op_result *r)
{
    if (r->output != NULL) {
        sodium_memzero(r->output, r->output_cap);
        free(r->output);
    }
    memset(r, 0, sizeof *r);
}

static void out_add(op_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_add(op_result *r, const char *fmt, ...)
{
    va_list ap;
    if (r->output == NULL) {
        if ((r->output = calloc(1, OUTPUT_MAX + 1U)) == NULL) return;
        r->output_cap = OUTPUT_MAX + 1U;
    }
    if (r->output_len >= OUTPUT_MAX) return;
    va_start(ap, fmt);
    int n = vsnprintf(r->output + r->output_len, OUTPUT_MAX + 1U - r->output_len, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n > OUTPUT_MAX - r->output_len) {
        /* Cut at the last complete line so the output stays parseable. */
        r->output[OUTPUT_MAX] = '\0';
        char *nl = strrchr(r->output, '\n');
        r->output_len = nl != NULL ? (size_t)(nl - r->output) + 1U : 0;
        r->output[r->output_len] = '\0';
        r->output_len = OUTPUT_MAX;
        return;
    }
    r->output_len += (size_t)n;
}

static void out_json(op_result *r, cJSON *j)
{
    char *s = cJSON_PrintUnformatted(j);
    if (s != NULL && strlen(s) <= OUTPUT_MAX)
        out_add(r, "%s\n", s);
    else if (s != NULL)
        out_add(r, "{\"error\":\"output too large\"}\n");
    free(s);
}

static void fail(op_result *r, int32_t status, const char *message)
{
    r->status = status;
    r->message = message;
}

/* Record a failure and leave the (void) command function. */
#define FAIL(r, st, msg)                                                                           \
    do {                                                                                           \
        fail(r, st, msg);                                                                          \
        return;                                                                                    \
    } while (0)

static int32_t status_for(int rc)
{
    switch (rc) {
    case MQE2E_OK:
        return MQE2E_OPSTATUS_OK;
    case MQE2E_ERR_NOT_FOUND:
        return MQE2E_OPSTATUS_NOT_FOUND;
    case MQE2E_ERR_EXISTS:
        return MQE2E_OPSTATUS_EXISTS;
    case MQE2E_ERR_INVALID_ARG:
    case MQE2E_ERR_TOO_LARGE:
        return MQE2E_OPSTATUS_BAD_REQUEST;
    default:
        return MQE2E_OPSTATUS_FAILED;
    }
}

/* Value of the first "key=value" argument, or NULL. */
static const char *arg(const mqe2e_operator_request *req, const char *key)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i < req->n_args; i++)
        if (strncmp(req->args[i], key, kl) == 0 && req->args[i][kl] == '=')
            return req->args[i] + kl + 1U;
    return NULL;
}

/* The n-th (0-based) value of a repeated key, or NULL. */
static const char *arg_n(const mqe2e_operator_request *req, const char *key, size_t n)
{
    size_t kl = strlen(key), seen = 0;
    for (size_t i = 0; i < req->n_args; i++) {
        if (strncmp(req->args[i], key, kl) == 0 && req->args[i][kl] == '=') {
            if (seen++ == n) return req->args[i] + kl + 1U;
        }
    }
    return NULL;
}

static int arg_u64(uint64_t *out, const mqe2e_operator_request *req, const char *key, uint64_t def,
                   uint64_t max)
{
    const char *v = arg(req, key);
    *out = def;
    if (v == NULL) return 0;
    char *end = NULL;
    unsigned long long x = strtoull(v, &end, 10);
    if (v[0] == '\0' || v[0] == '-' || end == NULL || *end != '\0' || x > max) return -1;
    *out = (uint64_t)x;
    return 0;
}

static int want_json(const mqe2e_operator_request *req)
{
    const char *v = arg(req, "json");
    return v != NULL && strcmp(v, "1") == 0;
}

/* "FILTER:pub|sub|pubsub" -> grant. The filter may hold ':' itself: split at the last one. */
static int parse_grant(mqe2e_adb_grant *g, const char *text)
{
    const char *colon = strrchr(text, ':');
    if (colon == NULL || colon == text) return -1;
    size_t fl = (size_t)(colon - text);
    if (fl >= sizeof g->filter) return -1;
    memcpy(g->filter, text, fl);
    g->filter[fl] = '\0';
    const char *r = colon + 1;
    if (strcmp(r, "pub") == 0)
        g->rights = MQE2E_ADB_RIGHT_PUBLISH;
    else if (strcmp(r, "sub") == 0)
        g->rights = MQE2E_ADB_RIGHT_SUBSCRIBE;
    else if (strcmp(r, "pubsub") == 0)
        g->rights = MQE2E_ADB_RIGHT_PUBLISH | MQE2E_ADB_RIGHT_SUBSCRIBE;
    else
        return -1;
    return mqe2e_topic_filter_valid(g->filter) ? 0 : -1;
}

/* ----------------------------------------------------------------- tokens */

static void cmd_token_create(authority *a, op_result *res, const mqe2e_operator_request *req,
                             uint64_t now)
{
    mqe2e_adb_grant grants[MQE2E_ADB_GRANTS_MAX];
    size_t n_grants = 0;
    const char *id = arg(req, "id");
    const char *role = arg(req, "role");
    uint64_t ttl, count, first, numbered, replace;
    mqe2e_ticket t;
    int rc = MQE2E_OK;

    if (role == NULL) role = "device";
    if (id == NULL || !mqe2e_client_id_valid(id))
        FAIL(res, MQE2E_OPSTATUS_BAD_REQUEST, "invalid or missing id");
    if (strcmp(role, "device") != 0 && strcmp(role, "service") != 0)
        FAIL(res, MQE2E_OPSTATUS_BAD_REQUEST, "role must be device or service");
    if (arg_u64(&ttl, req, "ttl", TOKEN_TTL_DEFAULT, 10ULL * 365U * 86400U) != 0 || ttl == 0 ||
        arg_u64(&count, req, "count", 1, TOKEN_BATCH_MAX) != 0 || count == 0 ||
        arg_u64(&first, req, "first", 1, 100000000ULL) != 0 ||
        arg_u64(&numbered, req, "numbered", count > 1, 1) != 0 ||
        arg_u64(&replace, req, "replace", 0, 1) != 0)
        FAIL(res, MQE2E_OPSTATUS_BAD_REQUEST, "invalid ttl, count, first, numbered or replace");
    for (size_t i = 0;; i++) {
        const char *g = arg_n(req, "grant", i);
        if (g == NULL) break;
        if (n_grants == MQE2E_ADB_GRANTS_MAX || parse_grant(&grants[n_grants], g) != 0)
            FAIL(res, MQE2E_OPSTATUS_BAD_REQUEST,
                 "invalid grant (FILTER:pub|sub|pubsub, at most 16)");
        n_grants++;
    }
    for (size_t i = 0;; i++) {
        const char *g = arg_n(req, "group", i);
        if (g == NULL) break;
        mqe2e_adb_group grp;
        /* A key-tree group is fine: the enrollment joins it at a leaf. */
        if (mqe2e_adb_group_get(&grp, a->db, g) != MQE2E_OK)
            FAIL(res, MQE2E_OPSTATUS_NOT_FOUND, "unknown group");
    }
    memset(&t, 0, sizeof t);
    memcpy(t.authority_sign_public, a->sign_public, 32);
    memcpy(t.authority_dh_public, a->dh_public, 32);
    snprintf(t.authority_id, sizeof t.authority_id, "%s", a->id);
    snprintf(t.control_prefix, sizeof t.control_prefix, "%s", a->cfg->prefix);
    t.expires_at = now + ttl;
    if ((rc = mqe2e_adb_tx_begin(a->db)) != MQE2E_OK)
        FAIL(res, MQE2E_OPSTATUS_FAILED, "database busy");
    for (uint64_t k = 0; k < count && rc == MQE2E_OK; k++) {
        char cid[MQE2E_ID_MAX + 1];
        int n = numbered ? snprintf(cid, sizeof cid, "%s-%llu", id, (unsigned long long)(first + k))
                         : snprintf(cid, sizeof cid, "%s", id);
        if (n < 0 || (size_t)n >= sizeof cid || !mqe2e_client_id_valid(cid)) {
            rc = MQE2E_ERR_INVALID_ARG;
            break;
        }
        snprintf(t.client_id, sizeof t.client_id, "%s", cid);
        randombytes_buf(t.token_id, sizeof t.token_id);
        randombytes_buf(t.token, sizeof t.token);
        rc =
            mqe2e_adb_token_create_flags(a->db, t.token_id, t.token, cid, role, grants, n_grants,
                                         now, t.expires_at, replace ? MQE2E_ADB_TOKEN_REPLACE : 0U);
        if (rc != MQE2E_OK) break;
        for (size_t i = 0; rc == MQE2E_OK; i++) {
            const char *g = arg_n(req, "group", i);
            if (g == NULL) break;
            rc = mqe2e_adb_token_group_add(a->db, t.token_id, g);
        }
        char *text = NULL;
        if (rc == MQE2E_OK) rc = mqe2e_ticket_encode(&text, &t);
        if (rc == MQE2E_OK) out_add(res, "%s\n", text);
        mqe2e_ticket_text_free(text);
    }
    mqe2e_ticket_wipe(&t);
    if (rc == MQE2E_OK) rc = mqe2e_adb_tx_commit(a->db);
    if (rc != MQE2E_OK) {
        (void)mqe2e_adb_tx_rollback(a->db);
        op_result_free(res); /* no ticket of the request is valid */
        if (rc == MQE2E_ERR_STATE || rc == MQE2E_ERR_EXISTS ||
            (rc == MQE2E_ERR_NOT_FOUND && replace)) {
            res->status = MQE2E_OPSTATUS_REFUSED;
            res->message =
                rc == MQE2E_ERR_STATE
                    ? "client id revoked: a revoked id never enrolls again; use a new id"
                : rc == MQE2E_ERR_EXISTS
                    ? "client id active: replacing its device takes --replace (its credentials "
                      "are revoked, its groups rotate)"
                    : "client id not enrolled: --replace needs an active client id";
            return;
        }
        FAIL(res, status_for(rc), "cannot create the tokens");
    }
    res->status = MQE2E_OPSTATUS_OK;
    res->message = count > 1 ? "tokens created" : "token created";
}

typedef struct list_ctx {
    op_result *res;
    cJSON *arr;
    authority *a;
    uint64_t now;
    /* Paging of `list` (offset=, limit=): rows before offset are skipped,
     * at most limit (0: all) are shown; seen counts every row. */
    uint64_t offset, limit, seen, shown;
} list_ctx;

/* Whether the current row belongs to the requested page. */
static int page_take(list_ctx *c)
{
    uint64_t i = c->seen++;
    if (i < c->offset || (c->limit != 0 && c->shown >= c->limit)) return 0;
    c->shown++;
    return 1;
}

static void hex(char *out, const uint8_t *in, size_t n)
{
    sodium_bin2hex(out, n * 2U + 1U, in, n);
}

static int token_row(const uint8_t token_id[MQE2E_ADB_TOKEN_ID_BYTES],
                     const mqe2e_adb_token_info *info, void *user)
{
    list_ctx *c = user;
    char tid[MQE2E_ADB_TOKEN_ID_BYTES * 2U + 1U];
    const char *state = info->used ? "used" : (info->expires_at <= c->now ? "expired" : "unused");
    if (!page_take(c)) return 0;
    hex(tid, token_id, MQE2E_ADB_TOKEN_ID_BYTES);
    if (c->arr != NULL) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "token_id", tid);
        cJSON_AddStringToObject(o, "client_id", info->client_id);
        cJSON_AddStringToObject(o, "role", info->role);
        cJSON_AddStringToObject(o, "state", state);
        cJSON_AddNumberToObject(o, "created_at", (double)info->created_at);
        cJSON_AddNumberToObject(o, "expires_at", (double)info->expires_at);
        cJSON_AddItemToArray(c->arr, o);
    } else {
        out_add(c->res, "%s\t%s\t%s\t%s\t%llu\n", tid, info->client_id, info->role, state,
                (unsigned long long)info->expires_at);
    }
    return 0;
}

static int client_row(const mqe2e_adb_client *cl, void *user)
{
    list_ctx *c = user;
    const char *state = cl->status == MQE2E_ADB_CLIENT_ACTIVE ? "active" : "revoked";
    if (!page_take(c)) return 0;
    if (c->arr != NULL) {
        char sp[65], dp[65];
        hex(sp, cl->sign_public, 32);
        hex(dp, cl->dh_public, 32);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "client_id", cl->client_id);
        cJSON_AddStringToObject(o, "role", cl->role);
        cJSON_AddStringToObject(o, "status", state);
        cJSON_AddStringToObject(o, "sign_public", sp);
        cJSON_AddStringToObject(o, "dh_public", dp);
        cJSON_AddNumberToObject(o, "enrolled_at", (double)cl->enrolled_at);
        cJSON_AddNumberToObject(o, "credential_serial", (double)cl->credential_serial);
        cJSON_AddNumberToObject(o, "credential_expires", (double)cl->credential_expires);
        cJSON_AddItemToArray(c->arr, o);
    } else {
        out_add(c->res, "%s\t%s\t%s\t%llu\n", cl->client_id, cl->role, state,
                (unsigned long long)cl->credential_serial);
    }
    return 0;
}

static int count_member(const char *client_id, uint32_t sender_id, uint64_t added_at, void *user)
{
    (void)client_id;
    (void)sender_id;
    (void)added_at;
    (*(uint64_t *)user)++;
    return 0;
}

static int group_row(const mqe2e_adb_group *g, void *user)
{
    list_ctx *c = user;
    uint64_t members = 0;
    if (!page_take(c)) return 0;
    (void)mqe2e_adb_members_list(c->a->db, g->name, count_member, &members);
    if (c->arr != NULL) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "group", g->name);
        cJSON_AddStringToObject(o, "topic", g->topic_filter);
        cJSON_AddNumberToObject(o, "epoch", g->current_epoch);
        cJSON_AddNumberToObject(o, "members", (double)members);
        cJSON_AddNumberToObject(o, "rotate_every_seconds", (double)g->rotate_every_seconds);
        cJSON_AddNumberToObject(o, "rotate_every_messages", (double)g->rotate_every_messages);
        cJSON_AddNumberToObject(o, "last_rotated_at", (double)g->last_rotated_at);
        cJSON_AddBoolToObject(o, "signed", g->is_signed != 0);
        cJSON_AddItemToArray(c->arr, o);
    } else {
        out_add(c->res, "%s\t%s\tepoch %lu\t%llu members%s\n", g->name, g->topic_filter,
                (unsigned long)g->current_epoch, (unsigned long long)members,
                g->is_signed ? "\tsigned" : "");
    }
    return 0;
}

static void cmd_list(authority *a, op_result *res, const mqe2e_operator_request *req, uint64_t now,
                     const char *what)
{
    list_ctx c = {res, NULL, a, now, 0, 0, 0, 0};
    int rc;
    if (arg_u64(&c.offset, req, "offset", 0, UINT64_MAX) != 0 ||
        arg_u64(&c.limit, req, "limit", 0, 100000) != 0)
        FAIL(res, MQE2E_OPSTATUS_BAD_REQUEST, "invalid offset or limit");
    if (want_json(req)) c.arr = cJSON_CreateArray();
    if (strcmp(what, "clients") == 0)
        rc = mqe2e_adb_client_list(a->db, client_row, &c);
    else if (strcmp(what, "groups") == 0)
        rc = mqe2e_adb_group_list(a->db, group_row, &c);
    else
        rc = mqe2e_adb_token_list(a->db, token_row, &c);
    if (c.arr != NULL) {
        out_json(res, c.arr);
        cJSON_Delete(c.arr);
    }
    if (rc != MQE2E_OK) FAIL(res, MQE2E_OPSTATUS_FAILED, "cannot read the database");
    /* Never a silently cut list: a page that does not fit is an error. */
    if (res->output_len >= OUTPUT_MAX ||
        (res->output != NULL && strstr(res->output, "\"error\":\"output too large\"") != NULL))
        FAIL(res, MQE2E_OPSTATUS_FAILED, "output too large: ask for fewer rows (limit)");
    res->status = MQE2E_OPSTATUS_OK;
    /* "more": rows after this page exist; the client asks again from offset + shown. */
    res->message = c.seen > c.offset + c.shown ? "more" : "ok";
}

static void cmd_status(authority *a, op_result *res, const mqe2e_operator_request *req,
                       uint64_t now)
{
    mqe2e_adb_status s;
    if (mqe2e_adb_status_get(&s, a->db, now) != MQE2E_OK)
        FAIL(res, MQE2E_OPSTATUS_FAILED, "cannot read the database");
    list_ctx c = {res, NULL, a, now, 0, 0, 0, 0};
    if (want_json(req)) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "authority_id", a->id);
        cJSON_AddStringToObject(o, "prefix", a->cfg->prefix);
        cJSON_AddNumberToObject(o, "uptime", (double)(now - a->started_at));
        cJSON_AddNumberToObject(o, "clients_active", (double)s.clients_active);
        cJSON_AddNumberToObject(o, "clients_revoked", (double)s.clients_revoked);
        cJSON_AddNumberToObject(o, "tokens_unused", (double)s.tokens_unused);
        cJSON_AddNumberToObject(o, "groups_count", (double)s.groups);
        cJSON_AddNumberToObject(o, "revocation_version", (double)s.revocation_version);
        c.arr = cJSON_AddArrayToObject(o, "groups");
        (void)mqe2e_adb_group_list(a->db, group_row, &c);
        cJSON *k = cJSON_AddObjectToObject(o, "counters");
        for (int i = 0; i < AUTH_C_COUNT; i++)
            cJSON_AddNumberToObject(k, authority_counter_name(i), (double)a->counters[i]);
        out_json(res, o);
        cJSON_Delete(o);
    } else {
        out_add(res, "authority:          %s\nprefix:             %s\nuptime:             %llu s\n",
                a->id, a->cfg->prefix, (unsigned long long)(now - a->started_at));
        out_add(res, "clients:            %llu active, %llu revoked\n",
                (unsigned long long)s.clients_active, (unsigned long long)s.clients_revoked);
        out_add(res,
                "tokens unused:      %llu\nrevocation list:    version %llu\ngroups:             "
                "%llu\n",
                (unsigned long long)s.tokens_unused, (unsigned long long)s.revocation_version,
                (unsigned long long)s.groups);
        (void)mqe2e_adb_group_list(a->db, group_row, &c);
        out_add(res, "counters:\n");
        for (int i = 0; i < AUTH_C_COUNT; i++)
            if (a->counters[i] != 0)
                out_add(res, "  %-24s %llu\n", authority_counter_name(i),
                        (unsigned long long)a->counters[i]);
    }
    res->status = MQE2E_OPSTATUS_OK;
    res->message = "ok";
}

/* ----------------------------------------------------------------- groups */

static void cmd_group_create(authority *a, op_result *res, const mqe2e_operator_request *req,
                             uint64_t now)
{
    const char *g = arg(req, "group"), *topic = arg(req, "topic");
    mqe2e_adb_group_settings s;
    uint8_t secret[MQE2E_ADB_SECRET_BYTES];
    memset(&s, 0, sizeof s);
    if (g == NULL || !mqe2e_client_id_valid(g) || topic == NULL || !mqe2e_topic_filter_valid(topic))
        FAIL(res, MQE2E_OPSTATUS_BAD_REQUEST, "invalid or missing group or topic");
    if (arg_u64(&s.rotate_every_seconds, req, "rotate-seconds", 0, UINT32_MAX) != 0 ||
        arg_u64(&s.rotate_every_messages, req, "rotate-messages", 0, UINT32_MAX) != 0)
        FAIL(res, MQE2E_OPSTATUS_BAD_REQUEST, "invalid rotation setting");
    uint64_t is_signed = 0;
    if (arg_u64(&is_signed, req, "signed", 0, 1) != 0)
        FAIL(res, MQE2E_OPSTATUS_BAD_REQUEST, "invalid signed setting (0 or 1)");
    s.is_signed = is_signed != 0;
    /* tree=d: a key tree of depth d (up to 2^d members, docs/PROTOCOL.md
     * §10.8); its epochs move only with joins and removals. */
    uint64_t tree = 0;
    if (arg_u64(&tree, req, "tree", 0, MQE2E_KEYTREE_MAX_DEPTH) != 0)
        FAIL(res, MQE2E_OPSTATUS_BAD_REQUEST, "invalid tree depth (1..20)");
    if (tree > 0 && (s.rotate_every_seconds != 0 || s.rotate_every_messages != 0))
        FAIL(res, MQE2E_OPSTATUS_BAD_REQUEST,
             "a key-tree group rotates when members join or leave: no rotation setting");
    randombytes_buf(secret, sizeof secret);
    int rc = mqe2e_adb_tx_begin(a->db);
    if (rc != MQE2E_OK) {
        sodium_memzero(secret, sizeof secret);
        FAIL(res, status_for(rc), "database busy");
    }
    rc = mqe2e_adb_group_create(a->db, g, topic, &s, now, secret);
    sodium_memzero(secret, sizeof secret);
    if (rc == MQE2E_OK && tree > 0) rc = authority_tree_create_db(a, g, (unsigned)tree);
    if (rc == MQE2E_OK) rc = mqe2e_adb_tx_commit(a->db);
    if (rc != MQE2E_OK) {
        (void)mqe2e_adb_tx_rollback(a->db);
        authority_tree_rollback(a);
        FAIL(res, status_for(rc),
             rc == MQE2E_ERR_EXISTS ? "group exists" : "cannot create the group");
    }
    if (tree > 0) (void)authority_tree_publish(a, g); /* nothing to send: marks it committed */
    authority_count_refresh(a);
    out_add(res, "group %s: topic %s, epoch 1%s", g, topic, s.is_signed ? ", signed" : "");
    if (tree > 0)
        out_add(res, ", key tree of depth %u (up to %lu members)", (unsigned)tree,
                (unsigned long)(1UL << tree));
    out_add(res, "\n");
    res->status = MQE2E_OPSTATUS_OK;
    res->message = "group created";
}

static void cmd_group_grant(authority *a, op_result *res, const mqe2e_operator_request *req,
                            uint64_t now)
{
    const char *g = arg(req, "group"), *id = arg(req, "id");
    uint32_t sid = 0;
    uint64_t history = 0;
    if (g == NULL || id == NULL) FAIL(res, MQE2E_OPSTATUS_BAD_REQUEST, "missing group or id");
    if (arg_u64(&history, req, "history", 0, 1) != 0)
        FAIL(res, MQE2E_OPSTATUS_BAD_REQUEST, "invalid history (0 or 1)");
    /* A new member reads only epochs current since it joined (added_at);
     * with history the operator backdates the membership, so the retired
     * epochs still in grace are handed out too. */
    int tree = authority_tree_is_tree(a, g);
    uint32_t tree_epoch = 0;
    int rc = MQE2E_OK;
    if (tree && history)
        FAIL(res, MQE2E_OPSTATUS_BAD_REQUEST, "a key-tree group has no history for newcomers");
    if (tree) rc = mqe2e_adb_tx_begin(a->db);
    if (rc != MQE2E_OK) FAIL(res, status_for(rc), "database busy");
    rc = mqe2e_adb_member_add(&sid, a->db, g, id, history ? 0U : now);
    /* A key-tree group: the joiner takes a leaf, the tree (and the group)
     * move to the next epoch, the others follow one broadcast join. */
    int trc = MQE2E_OK;
    if (tree && rc == MQE2E_OK) {
        trc = authority_tree_join_db(a, g, id, &tree_epoch);
        if (trc == MQE2E_OK) trc = mqe2e_adb_tx_commit(a->db);
    }
    if (tree && (rc != MQE2E_OK || trc != MQE2E_OK)) {
        (void)mqe2e_adb_tx_rollback(a->db);
        authority_tree_rollback(a);
    }
    if (rc == MQE2E_ERR_STATE) FAIL(res, MQE2E_OPSTATUS_FAILED, "client is revoked");
    if (rc != MQE2E_OK)
        FAIL(res, status_for(rc),
             rc == MQE2E_ERR_EXISTS ? "already a member" : "unknown group or client");
    if (trc != MQE2E_OK)
        FAIL(res, status_for(trc),
             trc == MQE2E_ERR_EXHAUSTED ? "the key tree is full" : "the tree join failed");
    if (tree) {
        (void)authority_tree_publish(a, g);
        authority_flush(a);
        out_add(res, "group %s at epoch %lu (key tree)\n", g, (unsigned long)tree_epoch);
    }
    (void)authority_push_client(a, id, g, 0);
    /* In a signed group the others must learn the newcomer's key. */
    mqe2e_adb_group grp;
    if (mqe2e_adb_group_get(&grp, a->db, g) == MQE2E_OK && grp.is_signed)
        (void)authority_push_group(a, g, 0);
    out_add(res, "%s joined %s with sender id %lu\n", id, g, (unsigned long)sid);
    unsigned depth = 0;
    if (!tree && authority_tree_threshold_check(a, g, &depth))
        out_add(res, "group %s reached tree_threshold: converted to a key tree of depth %u\n", g,
                depth);
    res->status = MQE2E_OPSTATUS_OK;
    res->message = "granted";
}

/* group-tree: a push group becomes a key-tree group (docs/PROTOCOL.md
 * §10.8): one transaction, then one push per member with its leaf. */
static void cmd_group_tree(authority *a, op_result *res, const mqe2e_operator_request *req)
{
    const char *g = arg(req, "group");
    uint64_t depth = 0;
    uint32_t members = 0, epoch = 0;
    mqe2e_adb_group grp;
    if (g == NULL) FAIL(res, MQE2E_OPSTATUS_BAD_REQUEST, "missing group");
    if (arg_u64(&depth, req, "depth", 0, MQE2E_KEYTREE_MAX_DEPTH) != 0 ||
        (arg(req, "depth") != NULL && depth == 0))
        FAIL(res, MQE2E_OPSTATUS_BAD_REQUEST, "invalid tree depth (1..20)");
    if (mqe2e_adb_group_get(&grp, a->db, g) != MQE2E_OK)
        FAIL(res, MQE2E_OPSTATUS_NOT_FOUND, "unknown group");
    unsigned d = (unsigned)depth;
    int rc = authority_tree_convert(a, g, &d, &members, &epoch);
    switch (rc) {
    case MQE2E_OK:
        break;
    case MQE2E_ERR_EXISTS:
        FAIL(res, MQE2E_OPSTATUS_EXISTS, "already a key-tree group");
    case MQE2E_ERR_STATE:
        FAIL(res, MQE2E_OPSTATUS_BAD_REQUEST,
             "a key-tree group rotates when members join or leave: this group has rotation "
             "settings; nothing changed");
    case MQE2E_ERR_TOO_LARGE:
        FAIL(res, MQE2E_OPSTATUS_BAD_REQUEST,
             "more members than the tree holds (2^depth, at most 2^20); nothing changed");
    default:
        FAIL(res, status_for(rc), "the conversion failed: the group is unchanged");
    }
    out_add(res, "group %s: key tree of depth %u (up to %lu members), %lu members, epoch %lu\n", g,
            d, (unsigned long)(1UL << d), (unsigned long)members, (unsigned long)epoch);
    res->status = MQE2E_OPSTATUS_OK;
    res->message = "converted";
}

static void cmd_group_ungrant(authority *a, op_result *res, const mqe2e_operator_request *req)
{
    const char *g = arg(req, "group"), *id = arg(req, "id");
    uint32_t epoch = 0;
    if (g == NULL || id == NULL) FAIL(res, MQE2E_OPSTATUS_BAD_REQUEST, "missing group or id");
    /* The removed member knew the secret: everyone else moves on without it.
     * Removal and rotation commit together, so no crash can leave the member
     * gone while its epoch stays current (docs/AUTHORITY.md, "Sender ids"). */
    int rc = mqe2e_adb_tx_begin(a->db);
    if (rc != MQE2E_OK) FAIL(res, status_for(rc), "database busy");
    rc = mqe2e_adb_member_remove(a->db, g, id);
    if (rc != MQE2E_OK) {
        (void)mqe2e_adb_tx_rollback(a->db);
        FAIL(res, status_for(rc), "not a member");
    }
    rc = authority_rotate_after_removal_db(a, g, &epoch);
    if (rc == MQE2E_OK) rc = mqe2e_adb_tx_commit(a->db);
    if (rc != MQE2E_OK) {
        (void)mqe2e_adb_tx_rollback(a->db);
        authority_tree_rollback(a);
        FAIL(res, status_for(rc), "the rotation failed: nothing changed");
    }
    (void)authority_push_client(a, id, g, 1);
    (void)authority_push_after_removal(a, g, epoch);
    out_add(res, "%s left %s; group at epoch %lu\n", id, g, (unsigned long)epoch);
    res->status = MQE2E_OPSTATUS_OK;
    res->message = "ungranted";
}

static void cmd_group_rotate(authority *a, op_result *res, const mqe2e_operator_request *req)
{
    const char *g = arg(req, "group");
    uint32_t epoch = 0;
    if (g == NULL) FAIL(res, MQE2E_OPSTATUS_BAD_REQUEST, "missing group");
    int rc = authority_rotate_group(a, g, 0, &epoch);
    if (rc != MQE2E_OK) FAIL(res, status_for(rc), "cannot rotate the group");
    out_add(res, "group %s at epoch %lu\n", g, (unsigned long)epoch);
    res->status = MQE2E_OPSTATUS_OK;
    res->message = "rotated";
}

typedef struct names {
    char **v;
    size_t n;
} names;

static int collect_group(const char *name, void *user)
{
    names *l = user;
    char **n = realloc(l->v, (l->n + 1U) * sizeof *n);
    if (n == NULL) return MQE2E_ERR_NOMEM;
    l->v = n;
    if ((l->v[l->n] = strdup(name)) == NULL) return MQE2E_ERR_NOMEM;
    l->n++;
    return 0;
}

static void cmd_revoke(authority *a, op_result *res, const mqe2e_operator_request *req,
                       uint64_t now)
{
    const char *id = arg(req, "id");
    names groups = {NULL, 0};
    if (id == NULL) FAIL(res, MQE2E_OPSTATUS_BAD_REQUEST, "missing id");
    /* Revocation, removal from every group and the rotation of each commit
     * as one transaction: a crash in between cannot leave the client gone
     * from a group whose epoch it still holds (docs/AUTHORITY.md). */
    int rc = mqe2e_adb_tx_begin(a->db);
    if (rc != MQE2E_OK) {
        fail(res, status_for(rc), "database busy");
        goto out;
    }
    rc = mqe2e_adb_client_revoke(a->db, id, now, collect_group, &groups);
    uint32_t *epochs = calloc(groups.n + 1U, sizeof *epochs);
    if (rc == MQE2E_OK && epochs == NULL) rc = MQE2E_ERR_NOMEM;
    for (size_t i = 0; rc == MQE2E_OK && i < groups.n; i++)
        rc = authority_rotate_after_removal_db(a, groups.v[i], &epochs[i]);
    if (rc == MQE2E_OK) rc = mqe2e_adb_tx_commit(a->db);
    if (rc != MQE2E_OK) {
        (void)mqe2e_adb_tx_rollback(a->db);
        authority_tree_rollback(a);
    }
    if (rc == MQE2E_ERR_STATE) {
        fail(res, MQE2E_OPSTATUS_FAILED, "already revoked");
        free(epochs);
        goto out;
    }
    if (rc != MQE2E_OK) {
        fail(res, status_for(rc), rc == MQE2E_ERR_NOT_FOUND ? "unknown client"
                                                             : "revocation failed: nothing changed");
        free(epochs);
        goto out;
    }
    (void)authority_revocations_refresh(a, 1);
    authority_flush(a);
    for (size_t i = 0; i < groups.n; i++) {
        if (authority_push_after_removal(a, groups.v[i], epochs[i]) == MQE2E_OK)
            out_add(res, "group %s at epoch %lu\n", groups.v[i], (unsigned long)epochs[i]);
        else
            out_add(res, "group %s at epoch %lu (push incomplete: members pull it by HELLO)\n",
                    groups.v[i], (unsigned long)epochs[i]);
    }
    free(epochs);
    out_add(res, "%s revoked; revocation list version %llu\n", id,
            (unsigned long long)a->rl_version);
    res->status = MQE2E_OPSTATUS_OK;
    res->message = "revoked";
out:
    for (size_t i = 0; i < groups.n; i++)
        free(groups.v[i]);
    free(groups.v);
}

void operator_execute(authority *a, op_result *res, const mqe2e_operator_request *req, uint64_t now)
{
    const char *c = req->command;
    res->status = MQE2E_OPSTATUS_BAD_REQUEST;
    res->message = "unknown command";
    if (strcmp(c, "token-create") == 0)
        cmd_token_create(a, res, req, now);
    else if (strcmp(c, "group-create") == 0)
        cmd_group_create(a, res, req, now);
    else if (strcmp(c, "group-grant") == 0)
        cmd_group_grant(a, res, req, now);
    else if (strcmp(c, "group-ungrant") == 0)
        cmd_group_ungrant(a, res, req);
    else if (strcmp(c, "group-rotate") == 0)
        cmd_group_rotate(a, res, req);
    else if (strcmp(c, "group-tree") == 0)
        cmd_group_tree(a, res, req);
    else if (strcmp(c, "revoke") == 0)
        cmd_revoke(a, res, req, now);
    else if (strcmp(c, "status") == 0)
        cmd_status(a, res, req, now);
    else if (strcmp(c, "list-clients") == 0)
        cmd_list(a, res, req, now, "clients");
    else if (strcmp(c, "list-groups") == 0)
        cmd_list(a, res, req, now, "groups");
    else if (strcmp(c, "list-tokens") == 0)
        cmd_list(a, res, req, now, "tokens");
}
