/* The authority core (authority/authority_core.h) in-process: no broker, no
 * fork, no clock. Frames built by the library's device and operator sides go
 * in with a time chosen by the test; the frames the core publishes are
 * captured and read back by the same library sides, and the store is a real
 * SQLite file in a temporary folder. */
#include <criterion/criterion.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authority_core.h"
#include "authority_tree_db.h"
#include "mqe2e/control.h"
#include "mqe2e/credential.h"
#include "mqe2e/envelope.h"
#include "mqe2e/error.h"
#include "mqe2e/keystore.h"
#include "mqe2e/keytree.h"
#include "mqe2e/operator.h"
#include "mqe2e/storage.h"
#include "pgtest.h"
#include "testutil.h"

#define T0 1900000000ULL /* the fake wall clock starts here (2030) */
#define FRAME_MAX MQE2E_CONTROL_MAX_FRAME_BYTES

/* ------------------------------------------------------------------ fixture */

typedef struct sent {
    char topic[300];
    uint8_t *p;
    size_t n;
    int retained;
} sent;

typedef struct outbox {
    sent *v;
    size_t n, cap;
    size_t flushes, subscribes;
} outbox;

static struct {
    char *dir;
    char db_path[512];
    mqe2e_keystore *ks; /* the authority */
    mqe2e_keystore *op; /* an operator */
    mqe2e_adb *db;
    authority_core *core;
    authority_core_config cfg;
    outbox out;
    mqe2e_authority_pin pin;
    uint64_t now;    /* wall seconds */
    uint64_t now_ms; /* monotonic ms */
} fx;

static int io_publish(void *ctx, const char *topic, const uint8_t *p, size_t n, int retained)
{
    outbox *o = ctx;
    if (o->n == o->cap) {
        o->cap = o->cap ? o->cap * 2U : 16U;
        o->v = realloc(o->v, o->cap * sizeof *o->v);
        cr_assert_not_null(o->v);
    }
    sent *s = &o->v[o->n++];
    snprintf(s->topic, sizeof s->topic, "%s", topic);
    s->p = malloc(n ? n : 1U);
    cr_assert_not_null(s->p);
    memcpy(s->p, p, n);
    s->n = n;
    s->retained = retained;
    return 0;
}

static void io_flush(void *ctx)
{
    ((outbox *)ctx)->flushes++;
}

static void io_subscribe(void *ctx, const char *filter)
{
    (void)filter;
    ((outbox *)ctx)->subscribes++;
}

static void outbox_clear(void)
{
    for (size_t i = 0; i < fx.out.n; i++) {
        sodium_memzero(fx.out.v[i].p, fx.out.v[i].n);
        free(fx.out.v[i].p);
    }
    fx.out.n = 0;
}

/* The last frame sent to @p topic, or NULL. */
static const sent *last_to(const char *topic)
{
    for (size_t i = fx.out.n; i > 0; i--)
        if (strcmp(fx.out.v[i - 1].topic, topic) == 0) return &fx.out.v[i - 1];
    return NULL;
}

static size_t count_to(const char *topic)
{
    size_t k = 0;
    for (size_t i = 0; i < fx.out.n; i++)
        k += strcmp(fx.out.v[i].topic, topic) == 0;
    return k;
}

static mqe2e_keystore *new_keystore(const char *id)
{
    mqe2e_storage st;
    mqe2e_keystore *ks = NULL;
    cr_assert_eq(mqe2e_storage_memory(&st), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_create(&ks, st, id, 0), MQE2E_OK);
    return ks;
}

static void core_start(void)
{
    authority_io io = {&fx.out, io_publish, io_flush, io_subscribe, NULL, NULL};
    cr_assert_eq(authority_core_new(&fx.core, fx.ks, fx.db, &fx.cfg, &io, fx.now), MQE2E_OK);
    authority_core_connected(fx.core, fx.now);
}

static void setup(void)
{
    cr_assert(sodium_init() >= 0);
    memset(&fx, 0, sizeof fx);
    fx.now = T0;
    fx.now_ms = 5000;
    fx.dir = tu_tempdir();
    snprintf(fx.db_path, sizeof fx.db_path, "%s/authority.db", fx.dir);
    /* Under tests/support/pgcluster.sh (test_authority_core_pg): PostgreSQL. */
    (void)pgtest_fresh_uri(fx.db_path, sizeof fx.db_path, "core");
    fx.ks = new_keystore("authority");
    fx.op = new_keystore("op-1");
    uint8_t key[MQE2E_ADB_KEY_BYTES];
    cr_assert_eq(authority_db_key(key, fx.ks), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_open(&fx.db, fx.db_path, key), MQE2E_OK);
    sodium_memzero(key, sizeof key);
    uint8_t sp[32], dp[32];
    cr_assert_eq(mqe2e_keystore_identity_public(fx.op, sp, dp), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_operator_add(fx.db, "op-1", sp, fx.now), MQE2E_OK);

    fx.cfg.prefix = "mqe2e";
    fx.cfg.credential_ttl = AUTHORITY_DEFAULT_CREDENTIAL_TTL;
    fx.cfg.grace = AUTHORITY_DEFAULT_GRACE;
    fx.cfg.revoke_grace = AUTHORITY_DEFAULT_REVOKE_GRACE;
    char *pin_text = NULL;
    cr_assert_eq(authority_pin_text(&pin_text, fx.ks, "mqe2e"), MQE2E_OK);
    cr_assert_eq(mqe2e_authority_pin_decode(&fx.pin, pin_text), MQE2E_OK);
    free(pin_text);
    core_start();
}

static void teardown(void)
{
    authority_core_free(fx.core, fx.now, fx.now_ms);
    outbox_clear();
    free(fx.out.v);
    mqe2e_adb_close(fx.db);
    mqe2e_keystore_close(fx.ks);
    mqe2e_keystore_close(fx.op);
    tu_rmtree(fx.dir);
    free(fx.dir);
}

TestSuite(authority_core, .init = setup, .fini = teardown);

static void deliver(const uint8_t *p, size_t n)
{
    authority_core_message(fx.core, "mqe2e/authority", p, n, fx.now, fx.now_ms);
}

static uint64_t counter(const char *name)
{
    return authority_core_counter(fx.core, name);
}

/* ---------------------------------------------------------------- operator */

static int sign_op(void *ctx, uint8_t sig[64], const uint8_t *msg, size_t len)
{
    return mqe2e_keystore_sign(ctx, sig, msg, len) == MQE2E_OK ? 0 : -1;
}

/* Build a signed operator request frame issued at @p issued_at. */
static mqe2e_operator_client *op_frame(uint8_t *frame, size_t *len, uint64_t issued_at,
                                       const char *command, char **args, size_t n_args)
{
    mqe2e_operator_request req;
    memset(&req, 0, sizeof req);
    snprintf(req.operator_name, sizeof req.operator_name, "op-1");
    randombytes_buf(req.nonce, sizeof req.nonce);
    req.issued_at = issued_at;
    snprintf(req.command, sizeof req.command, "%s", command);
    req.args = args;
    req.n_args = n_args;
    uint8_t dh[32];
    cr_assert_eq(mqe2e_keystore_dh_secret(fx.op, dh), MQE2E_OK);
    mqe2e_operator_client *st = NULL;
    cr_assert_eq(
        mqe2e_operator_begin(&st, frame, FRAME_MAX, len, &fx.pin, "op-1", dh, &req, sign_op, fx.op),
        MQE2E_OK);
    sodium_memzero(dh, sizeof dh);
    return st;
}

/* Read the operator reply the core published for @p st; 0 when there is none. */
static int op_reply(mqe2e_operator_client *st, mqe2e_operator_reply *reply)
{
    const sent *s = last_to("mqe2e/client/op-1");
    if (s == NULL) return 0;
    cr_assert_eq(mqe2e_operator_finish(st, reply, s->p, s->n), MQE2E_OK);
    return 1;
}

/* Build an operator request issued at @p issued_at into @p frame (kept for
 * a replay), deliver it, and return the status of its reply. */
static int32_t op_send(uint8_t *frame, size_t *len, uint64_t issued_at, const char *command,
                       char **args, size_t n_args)
{
    outbox_clear();
    mqe2e_operator_client *st = op_frame(frame, len, issued_at, command, args, n_args);
    deliver(frame, *len);
    mqe2e_operator_reply reply;
    cr_assert(op_reply(st, &reply), "no reply to %s", command);
    int32_t status = reply.status;
    mqe2e_operator_reply_clear(&reply);
    mqe2e_operator_client_free(st);
    return status;
}

/* One operator command, answered; returns the status, output in *output (malloc()ed). */
static int32_t op_call(char **output, const char *command, char **args, size_t n_args)
{
    uint8_t *frame = malloc(FRAME_MAX);
    size_t len = 0;
    cr_assert_not_null(frame);
    outbox_clear();
    mqe2e_operator_client *st = op_frame(frame, &len, fx.now, command, args, n_args);
    deliver(frame, len);
    mqe2e_operator_reply reply;
    cr_assert(op_reply(st, &reply), "no reply to %s", command);
    int32_t status = reply.status;
    if (output != NULL) *output = strdup(reply.output);
    mqe2e_operator_reply_clear(&reply);
    mqe2e_operator_client_free(st);
    free(frame);
    return status;
}

/* A ticket for @p id (one line of token-create's output), malloc()ed. */
static char *token_create(const char *id, const char *extra)
{
    char a_id[300], a_extra[300];
    char *args[2] = {a_id, a_extra};
    snprintf(a_id, sizeof a_id, "id=%s", id);
    snprintf(a_extra, sizeof a_extra, "%s", extra != NULL ? extra : "ttl=3600");
    char *out = NULL;
    cr_assert_eq(op_call(&out, "token-create", args, 2), MQE2E_OPSTATUS_OK);
    char *nl = strchr(out, '\n');
    if (nl != NULL) *nl = '\0';
    return out;
}

static void group_create(const char *group, const char *topic, const char *extra)
{
    char a_g[100], a_t[200], a_x[100];
    char *args[3] = {a_g, a_t, a_x};
    snprintf(a_g, sizeof a_g, "group=%s", group);
    snprintf(a_t, sizeof a_t, "topic=%s", topic);
    snprintf(a_x, sizeof a_x, "%s", extra != NULL ? extra : "signed=0");
    cr_assert_eq(op_call(NULL, "group-create", args, 3), MQE2E_OPSTATUS_OK);
}

static void group_grant(const char *group, const char *id)
{
    char a_g[100], a_i[300];
    char *args[2] = {a_g, a_i};
    snprintf(a_g, sizeof a_g, "group=%s", group);
    snprintf(a_i, sizeof a_i, "id=%s", id);
    cr_assert_eq(op_call(NULL, "group-grant", args, 2), MQE2E_OPSTATUS_OK);
}

/* ------------------------------------------------------------------ devices */

typedef struct device {
    char id[64];
    mqe2e_keystore *ks;
    uint8_t dh[32];
    uint8_t sign_public[32];
    uint8_t frame[FRAME_MAX];
    size_t frame_len;
    mqe2e_enroll_device *st;
} device;

static void device_new(device *d, const char *id)
{
    memset(d, 0, sizeof *d);
    snprintf(d->id, sizeof d->id, "%s", id);
    d->ks = new_keystore(id);
    uint8_t dp[32];
    cr_assert_eq(mqe2e_keystore_dh_secret(d->ks, d->dh), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_identity_public(d->ks, d->sign_public, dp), MQE2E_OK);
}

static void device_free(device *d)
{
    mqe2e_enroll_device_free(d->st);
    mqe2e_keystore_close(d->ks);
    sodium_memzero(d, sizeof *d);
}

static void client_topic(char *t, size_t cap, const char *id)
{
    snprintf(t, cap, "mqe2e/client/%s", id);
}

/* ENROLL step 1 of @p d with @p ticket_text, built at the current time. */
static void enroll_frame(device *d, const char *ticket_text)
{
    mqe2e_ticket t;
    cr_assert_eq(mqe2e_ticket_decode(&t, ticket_text), MQE2E_OK);
    mqe2e_enroll_device_free(d->st);
    d->st = NULL;
    cr_assert_eq(mqe2e_enroll_begin(&d->st, d->frame, sizeof d->frame, &d->frame_len, &t, d->dh,
                                    d->sign_public, fx.now),
                 MQE2E_OK);
    mqe2e_ticket_wipe(&t);
}

/* Deliver @p d's ENROLL frame, let the batch commit (idle tick), read the
 * reply. Returns mqe2e_enroll_finish()'s code; *serial the credential's. */
static int enroll_send(device *d, mqe2e_control_update *reply, uint64_t *serial)
{
    char topic[300];
    client_topic(topic, sizeof topic, d->id);
    outbox_clear();
    deliver(d->frame, d->frame_len);
    authority_core_tick(fx.core, fx.now, fx.now_ms, 1);
    const sent *s = last_to(topic);
    if (s == NULL) return MQE2E_ERR_NOT_FOUND; /* no reply at all */
    mqe2e_credential *cred = NULL;
    memset(reply, 0, sizeof *reply);
    int rc = mqe2e_enroll_finish(d->st, reply, &cred, s->p, s->n, fx.now);
    if (serial != NULL) *serial = cred != NULL ? mqe2e_credential_serial(cred) : 0;
    mqe2e_credential_free(cred);
    return rc;
}

/* A full HELLO of @p d; returns mqe2e_hello_finish()'s code (NOT_FOUND: no reply). */
static int hello(device *d, mqe2e_control_update *reply)
{
    char topic[300];
    client_topic(topic, sizeof topic, d->id);
    uint8_t *frame = malloc(FRAME_MAX);
    size_t len = 0;
    mqe2e_hello_client *st = NULL;
    cr_assert_eq(mqe2e_hello_begin(&st, frame, FRAME_MAX, &len, "mqe2e", d->id, "authority", d->dh,
                                   fx.pin.dh_public, 0),
                 MQE2E_OK);
    outbox_clear();
    deliver(frame, len);
    const sent *s = last_to(topic);
    int rc = MQE2E_ERR_NOT_FOUND;
    memset(reply, 0, sizeof *reply);
    if (s != NULL) rc = mqe2e_hello_finish(st, reply, s->p, s->n);
    mqe2e_hello_client_free(st);
    free(frame);
    return rc;
}

static const mqe2e_key_bundle *bundle_of(const mqe2e_control_update *u, const char *group)
{
    for (size_t i = 0; i < u->n_bundles; i++)
        if (strcmp(u->bundles[i].group, group) == 0 && u->bundles[i].retired_at == 0)
            return &u->bundles[i];
    return NULL;
}

/* An enrolled device (enroll with a fresh ticket at the current time). */
static void device_enrolled(device *d, const char *id)
{
    device_new(d, id);
    char *ticket = token_create(id, NULL);
    enroll_frame(d, ticket);
    free(ticket);
    mqe2e_control_update reply;
    cr_assert_eq(enroll_send(d, &reply, NULL), MQE2E_OK);
    mqe2e_control_update_wipe(&reply);
}

/* An enrolled device, alone in a new group (created with @p extra). */
static void device_in_new_group(device *d, const char *id, const char *group, const char *topic,
                                const char *extra)
{
    device_enrolled(d, id);
    group_create(group, topic, extra);
    group_grant(group, id);
}

/* -------------------------------------------------------------------- tests */

Test(authority_core, enroll_issues_a_credential_and_a_lost_reply_is_served_again)
{
    device d;
    device_new(&d, "dev-1");
    char *ticket = token_create("dev-1", NULL);
    enroll_frame(&d, ticket);
    mqe2e_control_update reply;
    uint64_t serial = 0;
    /* The first reply is lost on its way: the device never reads it ... */
    outbox_clear();
    deliver(d.frame, d.frame_len);
    authority_core_tick(fx.core, fx.now, fx.now_ms, 1);
    cr_assert_eq(count_to("mqe2e/client/dev-1"), 1);
    cr_assert_eq(counter("enroll_ok"), 1);
    cr_assert_eq(counter("enroll_commits"), 1);
    mqe2e_adb_client c;
    cr_assert_eq(mqe2e_adb_client_get(&c, fx.db, "dev-1"), MQE2E_OK);

    /* ... so it sends the same request again, and gets the same credential. */
    fx.now += 5;
    cr_assert_eq(enroll_send(&d, &reply, &serial), MQE2E_OK);
    cr_assert_eq(reply.status, MQE2E_STATUS_OK);
    mqe2e_control_update_wipe(&reply);
    cr_assert_eq(serial, c.credential_serial, "a retry is the same enrollment (same serial)");
    cr_assert_eq(counter("enroll_retries"), 1);

    /* Past the retry window the same request is refused. */
    fx.now += MQE2E_ADB_ENROLL_RETRY_SECONDS + 1U;
    int rc0 = enroll_send(&d, &reply, NULL);
    cr_assert_neq(rc0, MQE2E_OK, "no retry after the window (%d)", rc0);
    mqe2e_control_update_wipe(&reply);
    cr_assert_eq(counter("enroll_retries"), 1);

    /* Another device with the same ticket: the token is used. */
    uint64_t ok_before = counter("enroll_ok");
    device e;
    device_new(&e, "dev-1");
    enroll_frame(&e, ticket);
    int rc = enroll_send(&e, &reply, NULL);
    cr_assert(rc == MQE2E_ERR_POLICY || rc == MQE2E_ERR_NOT_FOUND, "second device refused (%d)",
              rc);
    if (rc == MQE2E_ERR_POLICY) cr_assert_neq(reply.status, MQE2E_STATUS_OK);
    mqe2e_control_update_wipe(&reply);
    cr_assert_eq(counter("enroll_ok"), ok_before, "nothing granted twice");
    free(ticket);
    device_free(&e);
    device_free(&d);
}

Test(authority_core, ticket_expired_by_the_authoritys_clock_is_refused)
{
    device d;
    device_new(&d, "dev-2");
    char *ticket = token_create("dev-2", "ttl=60");
    enroll_frame(&d, ticket); /* built while valid ... */
    fx.now += 61;             /* ... received after the ticket's end */
    mqe2e_control_update reply;
    int rc = enroll_send(&d, &reply, NULL);
    cr_assert_eq(rc, MQE2E_ERR_POLICY, "refused with a status (%d)", rc);
    cr_assert_eq(reply.status, MQE2E_STATUS_TOKEN_EXPIRED);
    mqe2e_control_update_wipe(&reply);
    cr_assert_eq(counter("enroll_token_expired"), 1);
    cr_assert_eq(counter("enroll_ok"), 0);
    free(ticket);
    device_free(&d);
}

Test(authority_core, enroll_without_a_token_costs_no_handshake_and_gets_no_reply)
{
    device d;
    device_new(&d, "dev-3");
    char *ticket = token_create("dev-3", NULL);
    enroll_frame(&d, ticket);
    free(ticket);
    device e;
    device_new(&e, "nobody");
    mqe2e_ticket t;
    /* A well-formed frame claiming an id no token names. */
    ticket = token_create("dev-3b", NULL);
    cr_assert_eq(mqe2e_ticket_decode(&t, ticket), MQE2E_OK);
    snprintf(t.client_id, sizeof t.client_id, "nobody");
    cr_assert_eq(mqe2e_enroll_begin(&e.st, e.frame, sizeof e.frame, &e.frame_len, &t, e.dh,
                                    e.sign_public, fx.now),
                 MQE2E_OK);
    mqe2e_ticket_wipe(&t);
    free(ticket);
    mqe2e_control_update reply;
    cr_assert_eq(enroll_send(&e, &reply, NULL), MQE2E_ERR_NOT_FOUND, "no reply");
    cr_assert_eq(counter("enroll_unknown_token"), 1);
    device_free(&e);
    device_free(&d);
}

Test(authority_core, hello_hands_out_granted_groups_and_refuses_a_revoked_client)
{
    device d;
    device_enrolled(&d, "dev-4");
    group_create("telemetry", "fleet/+/hr", NULL);
    group_grant("telemetry", "dev-4");

    mqe2e_control_update reply;
    cr_assert_eq(hello(&d, &reply), MQE2E_OK);
    const mqe2e_key_bundle *b = bundle_of(&reply, "telemetry");
    cr_assert_not_null(b, "granted group in the HELLO reply");
    cr_assert_eq(b->epoch, 1);
    cr_assert_gt(b->sender_id, 0);
    mqe2e_control_update_wipe(&reply);
    cr_assert_eq(counter("hello_ok"), 1);

    char a_id[] = "id=dev-4";
    char *args[1] = {a_id};
    fx.now += 10;
    cr_assert_eq(op_call(NULL, "revoke", args, 1), MQE2E_OPSTATUS_OK);

    fx.now += 1;
    int rc = hello(&d, &reply);
    cr_assert(rc == MQE2E_ERR_POLICY || rc == MQE2E_ERR_NOT_FOUND, "revoked hello refused (%d)",
              rc);
    if (rc == MQE2E_ERR_POLICY) cr_assert_eq(reply.status, MQE2E_STATUS_REVOKED);
    mqe2e_control_update_wipe(&reply);
    cr_assert_eq(counter("hello_ok"), 1);
    cr_assert_eq(counter("hello_revoked"), 1);

    /* Revocation is final: a retry of its enrollment finds no token (they
     * went with the revocation) and gets no handshake and no reply ... */
    rc = enroll_send(&d, &reply, NULL);
    cr_assert_eq(rc, MQE2E_ERR_NOT_FOUND, "a revoked client's enrollment retry is dropped (%d)",
                 rc);
    cr_assert_eq(counter("enroll_unknown_token"), 1);
    cr_assert_eq(counter("enroll_ok"), 1);
    /* ... and no new ticket is made for its id. */
    char a_id2[] = "id=dev-4", a_ttl[] = "ttl=60";
    char *args2[2] = {a_id2, a_ttl};
    cr_assert_eq(op_call(NULL, "token-create", args2, 2), MQE2E_OPSTATUS_REFUSED);
    device_free(&d);
}

Test(authority_core, revocation_rotates_and_pushes_the_new_epoch_to_the_others_only)
{
    device a, b;
    device_enrolled(&a, "dev-a");
    device_enrolled(&b, "dev-b");
    group_create("alarms", "site/alarm/#", NULL);
    group_grant("alarms", "dev-a");
    group_grant("alarms", "dev-b");

    char a_id[] = "id=dev-b";
    char *args[1] = {a_id};
    fx.now += 10;
    char *out = NULL;
    cr_assert_eq(op_call(&out, "revoke", args, 1), MQE2E_OPSTATUS_OK);
    cr_assert(strstr(out, "group alarms at epoch 2") != NULL, "output: %s", out);
    free(out);
    cr_assert_eq(counter("rotations"), 1);
    const sent *p = last_to("mqe2e/client/dev-a");
    cr_assert_not_null(p, "the remaining member got a push");
    cr_assert_eq(count_to("mqe2e/client/dev-b"), 0, "the revoked member got nothing");
    const sent *rl = last_to("mqe2e/revocations");
    cr_assert_not_null(rl, "the revocation list is republished");
    cr_assert_eq(rl->retained, 1);

    mqe2e_control_update push;
    cr_assert_eq(
        mqe2e_push_open(&push, a.dh, fx.pin.dh_public, "mqe2e", "authority", p->p, p->n, 0),
        MQE2E_OK);
    const mqe2e_key_bundle *k = bundle_of(&push, "alarms");
    cr_assert_not_null(k);
    cr_assert_eq(k->epoch, 2);
    mqe2e_control_update_wipe(&push);
    device_free(&a);
    device_free(&b);
}

Test(authority_core, rotation_by_schedule_follows_the_clock_passed_in)
{
    device d;
    device_in_new_group(&d, "dev-5", "sched", "sched/#", "rotate-seconds=60");
    outbox_clear();
    fx.now += 30;
    fx.now_ms += 30000;
    authority_core_tick(fx.core, fx.now, fx.now_ms, 1);
    cr_assert_eq(counter("rotations"), 0, "not due after 30 s");
    fx.now += 31;
    fx.now_ms += 31000;
    authority_core_tick(fx.core, fx.now, fx.now_ms, 1);
    cr_assert_eq(counter("rotations"), 1, "due after 61 s");
    mqe2e_control_update reply;
    cr_assert_eq(hello(&d, &reply), MQE2E_OK);
    const mqe2e_key_bundle *b = bundle_of(&reply, "sched");
    cr_assert_not_null(b);
    cr_assert_eq(b->epoch, 2);
    mqe2e_control_update_wipe(&reply);
    device_free(&d);
}

Test(authority_core, operator_requests_stale_replayed_or_unknown_are_refused)
{
    uint8_t *frame = malloc(FRAME_MAX);
    size_t len = 0;
    char a_g[] = "group=g1", a_t[] = "topic=g1/#";
    char *args[2] = {a_g, a_t};

    /* Issued an hour before the authority's clock. */
    cr_assert_eq(op_send(frame, &len, fx.now - 3600, "group-create", args, 2),
                 MQE2E_OPSTATUS_REFUSED);
    cr_assert_eq(counter("operator_stale"), 1);

    /* Fresh: done once; the same frame again is a replay. */
    cr_assert_eq(op_send(frame, &len, fx.now, "group-create", args, 2), MQE2E_OPSTATUS_OK);
    deliver(frame, len);
    cr_assert_eq(counter("operator_replay"), 1);
    cr_assert_eq(counter("operator_ok"), 1);

    /* Signed by a key the authority does not know under that name. */
    mqe2e_keystore *real = fx.op;
    fx.op = new_keystore("op-1");
    outbox_clear();
    mqe2e_operator_client *st = op_frame(frame, &len, fx.now, "status", NULL, 0);
    deliver(frame, len);
    mqe2e_operator_client_free(st);
    cr_assert_eq(counter("operator_bad_signature"), 1);
    cr_assert_eq(count_to("mqe2e/client/op-1"), 0, "no reply to a forged request");
    mqe2e_keystore_close(fx.op);
    fx.op = real;
    free(frame);
}

Test(authority_core, control_frame_table_routes_by_kind_and_counts_the_rest)
{
    /* Not a control frame at all. */
    static const uint8_t junk[] = {0xde, 0xad, 0xbe, 0xef};
    deliver(junk, sizeof junk);
    cr_assert_eq(counter("frame_unknown"), 1);
    /* A well-formed frame of a kind the authority does not serve (PUSH). */
    uint8_t frame[256], noise[8];
    size_t len = 0;
    mqe2e_control_frame f;
    memset(&f, 0, sizeof f);
    memset(f.session, 7, sizeof f.session);
    memset(noise, 1, sizeof noise);
    snprintf(f.from, sizeof f.from, "x");
    f.kind = MQE2E_CONTROL_PUSH;
    f.step = 1;
    f.noise = noise;
    f.noise_len = sizeof noise;
    cr_assert_eq(mqe2e_control_frame_encode(frame, sizeof frame, &len, &f), MQE2E_OK);
    deliver(frame, len);
    cr_assert_eq(counter("frame_unknown"), 2);
    /* ENROLL step 2 sent to the authority: not a request. */
    f.kind = MQE2E_CONTROL_ENROLL;
    f.step = 2;
    cr_assert_eq(mqe2e_control_frame_encode(frame, sizeof frame, &len, &f), MQE2E_OK);
    deliver(frame, len);
    cr_assert_eq(counter("frame_unknown"), 3);
    /* An empty message. */
    authority_core_message(fx.core, "mqe2e/authority", NULL, 0, fx.now, fx.now_ms);
    cr_assert_eq(counter("frame_unknown"), 4);
    /* An operator-kind frame with garbage inside: the operator decoder judges it. */
    frame[0] = 0x08;
    frame[1] = 0x01;
    frame[2] = 0x10;
    frame[3] = MQE2E_CONTROL_OPERATOR;
    memset(frame + 4, 0xff, 20);
    deliver(frame, 24);
    cr_assert_eq(counter("operator_bad_frame"), 1);
    cr_assert_eq(counter("frame_unknown"), 4);
    cr_assert_eq(fx.out.n, 0, "nothing answered");
}

Test(authority_core, queued_enrollments_are_answered_before_a_later_request)
{
    device d;
    device_new(&d, "dev-6");
    char *ticket = token_create("dev-6", NULL);
    enroll_frame(&d, ticket);
    free(ticket);
    outbox_clear();
    deliver(d.frame, d.frame_len);
    cr_assert(authority_core_batching(fx.core), "the request waits for its batch");
    cr_assert_eq(count_to("mqe2e/client/dev-6"), 0);
    /* Any other request first answers the queue (arrival order). */
    static const uint8_t junk[] = {1, 2, 3};
    deliver(junk, sizeof junk);
    cr_assert_not(authority_core_batching(fx.core));
    cr_assert_eq(count_to("mqe2e/client/dev-6"), 1);
    cr_assert_eq(counter("enroll_ok"), 1);
    device_free(&d);
}

/* ------------------------------------------------------- revocation list */

/* The signed list the core last published (retained) on P/revocations,
 * verified against the pinned key; NULL when none was published since the
 * last outbox_clear(). Free with mqe2e_revocation_list_free(). */
static mqe2e_revocation_list *published_list(void)
{
    const sent *s = last_to("mqe2e/revocations");
    if (s == NULL) return NULL;
    cr_assert_eq(s->retained, 1, "the list is published retained");
    mqe2e_revocation_list *l = NULL;
    cr_assert_eq(mqe2e_revocation_list_verify(&l, s->p, s->n, fx.pin.sign_public), MQE2E_OK);
    return l;
}

/* The sender id HELLO hands @p d in @p group. */
static uint32_t sender_id_of(device *d, const char *group)
{
    mqe2e_control_update reply;
    cr_assert_eq(hello(d, &reply), MQE2E_OK);
    const mqe2e_key_bundle *b = bundle_of(&reply, group);
    cr_assert_not_null(b, "%s is granted %s", d->id, group);
    uint32_t id = b->sender_id;
    mqe2e_control_update_wipe(&reply);
    return id;
}

static void revoke(const char *id)
{
    char a_id[300];
    char *args[1] = {a_id};
    snprintf(a_id, sizeof a_id, "id=%s", id);
    cr_assert_eq(op_call(NULL, "revoke", args, 1), MQE2E_OPSTATUS_OK);
}

/* One schedule step at fx.now (the monotonic clock moves along). */
static void tick_at(uint64_t now)
{
    fx.now_ms += (now - fx.now) * 1000U;
    fx.now = now;
    authority_core_tick(fx.core, fx.now, fx.now_ms, 1);
}

/* Issue 11: the list names the sender ids the revoked device held (per
 * group; receivers drop them in every epoch) next to the client entry, and
 * says when a newer one is due: next_update = issued_at + list_validity,
 * both from the clock passed in. A member still in the group is not named. */
Test(authority_core, revocation_list_names_retired_sender_ids_and_its_next_update)
{
    fx.cfg.list_validity = 600; /* borrowed by the core: read at each signing */
    device a, b;
    device_enrolled(&a, "dev-ra");
    device_enrolled(&b, "dev-rb");
    group_create("alarms", "site/alarm/#", NULL);
    group_create("doors", "site/door/#", NULL);
    group_grant("alarms", "dev-ra");
    group_grant("alarms", "dev-rb");
    group_grant("doors", "dev-rb");
    uint32_t sid_a = sender_id_of(&a, "alarms");
    uint32_t sid_b_alarms = sender_id_of(&b, "alarms");
    uint32_t sid_b_doors = sender_id_of(&b, "doors");
    cr_assert_neq(sid_a, sid_b_alarms);

    fx.now += 10;
    uint64_t revoked_at = fx.now;
    revoke("dev-rb");
    mqe2e_revocation_list *l = published_list();
    cr_assert_not_null(l, "the revocation publishes a list");
    cr_assert_eq(mqe2e_revocation_list_version(l), 1);
    cr_assert_eq(mqe2e_revocation_list_issued_at(l), revoked_at);
    cr_assert_eq(mqe2e_revocation_list_next_update(l), revoked_at + 600U);
    cr_assert(mqe2e_revocation_list_client_revoked(l, "dev-rb"));
    cr_assert_not(mqe2e_revocation_list_client_revoked(l, "dev-ra"));
    cr_assert_eq(mqe2e_revocation_list_retired_count(l), 2, "one id per group it was in");
    cr_assert(mqe2e_revocation_list_sender_retired(l, "alarms", sid_b_alarms));
    cr_assert(mqe2e_revocation_list_sender_retired(l, "doors", sid_b_doors));
    cr_assert_not(mqe2e_revocation_list_sender_retired(l, "alarms", sid_a),
                  "the remaining member's id is not retired");
    mqe2e_revocation_list_free(l);
    device_free(&a);
    device_free(&b);
}

/* Issue 11: the core signs the list afresh on its schedule once half of
 * list_validity passed since the list it holds was issued (same version,
 * retired ids kept, new issued_at and next_update), so members hear a list
 * before its next_update; not before half, and not again right after. No
 * list at all is published before the first revocation. */
Test(authority_core, revocation_list_is_signed_afresh_at_half_its_validity)
{
    fx.cfg.list_validity = 600;
    outbox_clear();
    tick_at(fx.now + 10000U);
    cr_assert_eq(count_to("mqe2e/revocations"), 0, "no list before the first revocation");

    device d;
    device_enrolled(&d, "dev-rs");
    group_create("alarms", "site/alarm/#", NULL);
    group_grant("alarms", "dev-rs");
    uint32_t sid = sender_id_of(&d, "alarms");
    fx.now += 10;
    uint64_t t1 = fx.now;
    revoke("dev-rs");
    mqe2e_revocation_list *l = published_list();
    cr_assert_not_null(l);
    cr_assert_eq(mqe2e_revocation_list_issued_at(l), t1);
    mqe2e_revocation_list_free(l);

    outbox_clear();
    tick_at(t1 + 299U);
    cr_assert_eq(count_to("mqe2e/revocations"), 0, "re-signed before half its validity");
    tick_at(t1 + 300U);
    cr_assert_eq(count_to("mqe2e/revocations"), 1, "not re-signed at half its validity");
    l = published_list();
    cr_assert_eq(mqe2e_revocation_list_version(l), 1, "same contents, same version");
    cr_assert_eq(mqe2e_revocation_list_issued_at(l), t1 + 300U);
    cr_assert_eq(mqe2e_revocation_list_next_update(l), t1 + 900U);
    cr_assert(mqe2e_revocation_list_client_revoked(l, "dev-rs"));
    cr_assert(mqe2e_revocation_list_sender_retired(l, "alarms", sid), "retired ids kept");
    mqe2e_revocation_list_free(l);
    cr_assert_geq(fx.out.flushes, 1, "the re-signed list is flushed out");

    outbox_clear();
    tick_at(t1 + 301U);
    tick_at(t1 + 599U);
    cr_assert_eq(count_to("mqe2e/revocations"), 0, "signed again before the next half");
    tick_at(t1 + 600U);
    cr_assert_eq(count_to("mqe2e/revocations"), 1);
    l = published_list();
    cr_assert_eq(mqe2e_revocation_list_issued_at(l), t1 + 600U);
    cr_assert_eq(mqe2e_revocation_list_next_update(l), t1 + 1200U);
    mqe2e_revocation_list_free(l);
    device_free(&d);
}

/* ------------------------------------------------------------ key trees */

/* A member's tree state from its HELLO (leaf key and TreePath on the
 * current bundle); checks the path's epoch secret is the bundle's secret. */
static mqe2e_keytree_member *tree_member(device *d, const char *group, uint32_t *epoch)
{
    mqe2e_control_update reply;
    cr_assert_eq(hello(d, &reply), MQE2E_OK);
    const mqe2e_key_bundle *b = bundle_of(&reply, group);
    cr_assert_not_null(b, "%s has no current bundle of %s", d->id, group);
    cr_assert_gt(b->tree_path_len, 0U, "%s got no tree path", d->id);
    cr_assert_leq(b->tree_path_len, 1024U, "a join costs the joiner at most 1 KB");
    cr_assert_eq(b->tree_grace_seconds, fx.cfg.revoke_grace,
                 "the bundle names the removal grace (PROTOCOL.md §10.9)");
    mqe2e_keytree_member *m = NULL;
    cr_assert_eq(mqe2e_keytree_member_new(&m, b->tree_path + 2, b->tree_leaf_key, b->tree_path,
                                          b->tree_path_len),
                 MQE2E_OK);
    uint8_t s[32];
    cr_assert_eq(mqe2e_keytree_member_epoch_secret(m, s), MQE2E_OK);
    cr_assert_eq(sodium_memcmp(s, b->secret, 32), 0, "the tree's epoch secret is the group's");
    if (epoch != NULL) *epoch = b->epoch;
    mqe2e_control_update_wipe(&reply);
    return m;
}

/* Apply one broadcast to a member; returns apply's code, checks the epoch
 * secret it reaches is the group's current one (from a fresh HELLO of @p d). */
static int tree_apply(mqe2e_keytree_member *m, const sent *u, device *d, const char *group,
                      unsigned *unwraps)
{
    mqe2e_keytree_update v;
    cr_assert_eq(mqe2e_keytree_update_open(&v, u->p, u->n, fx.pin.sign_public), MQE2E_OK);
    int rc = mqe2e_keytree_member_apply(m, &v, unwraps);
    if (rc != MQE2E_OK || d == NULL) return rc;
    uint8_t s[32];
    cr_assert_eq(mqe2e_keytree_member_epoch_secret(m, s), MQE2E_OK);
    mqe2e_control_update reply;
    cr_assert_eq(hello(d, &reply), MQE2E_OK);
    const mqe2e_key_bundle *b = bundle_of(&reply, group);
    cr_assert_not_null(b);
    cr_assert_eq(sodium_memcmp(s, b->secret, 32), 0, "%s derived the group's new epoch", d->id);
    mqe2e_control_update_wipe(&reply);
    return rc;
}

static sent copy_sent(const sent *s)
{
    cr_assert_not_null(s);
    sent c = *s;
    c.p = malloc(s->n);
    cr_assert_not_null(c.p);
    memcpy(c.p, s->p, s->n);
    return c;
}

/* A key-tree group: joins and a revocation are ONE signed broadcast each on
 * P/tree/<group> (no push to any member), every remaining member derives the
 * group's new epoch from it, the revoked one gets TREE_REVOKED; after a
 * restart of the core over the same store the tree goes on (a removal the
 * remaining members follow), and nothing else rotates a tree group. */
Test(authority_core, key_tree_group_join_revoke_and_restart)
{
    enum { N = 4 };
    device d[N];
    mqe2e_keytree_member *m[N] = {0};
    char id[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(id[i], sizeof id[i], "dev-%d", i);
        device_enrolled(&d[i], id[i]);
    }
    group_create("fleet", "fleet/#", "tree=3");
    for (int i = 0; i < N; i++) {
        group_grant("fleet", id[i]);
        cr_assert_eq(count_to("mqe2e/tree/fleet"), 1U, "one join broadcast");
        cr_assert_eq(last_to("mqe2e/tree/fleet")->n, 49U + 64U);
        sent join = copy_sent(last_to("mqe2e/tree/fleet"));
        for (int k = 0; k < i; k++)
            cr_assert_eq(tree_apply(m[k], &join, &d[k], "fleet", NULL), MQE2E_OK);
        free(join.p);
        m[i] = tree_member(&d[i], "fleet", NULL);
    }
    cr_assert_eq(counter("tree_updates"), (uint64_t)N);

    /* Revoke dev-2: one broadcast, no push to the others. */
    fx.now += 10;
    char a_id[] = "id=dev-2";
    char *args[1] = {a_id};
    cr_assert_eq(op_call(NULL, "revoke", args, 1), MQE2E_OPSTATUS_OK);
    cr_assert_eq(count_to("mqe2e/tree/fleet"), 1U);
    for (int i = 0; i < N; i++) {
        char t[300];
        client_topic(t, sizeof t, id[i]);
        cr_assert_eq(count_to(t), 0U, "no per-member push for a tree group (%s)", id[i]);
    }
    sent rm = copy_sent(last_to("mqe2e/tree/fleet"));
    cr_assert_leq(rm.n, 4096U, "a revocation costs the authority at most 4 KB");
    for (int i = 0; i < N; i++) {
        unsigned unwraps = 0;
        int rc = tree_apply(m[i], &rm, i == 2 ? NULL : &d[i], "fleet", &unwraps);
        if (i == 2) {
            cr_assert_eq(rc, MQE2E_ERR_TREE_REVOKED);
            continue;
        }
        cr_assert_eq(rc, MQE2E_OK, "%s: %d", id[i], rc);
        cr_assert_leq(unwraps, 3U);
        /* A replay of the same broadcast changes nothing. */
        cr_assert_eq(tree_apply(m[i], &rm, NULL, "fleet", NULL), MQE2E_ERR_REPLAY);
    }
    free(rm.p);
    mqe2e_control_update r;
    cr_assert_neq(hello(&d[2], &r), MQE2E_OK, "the revoked member gets no HELLO answer");

    /* Nothing else rotates a tree group. */
    char a_g[] = "group=fleet";
    char *gargs[1] = {a_g};
    cr_assert_neq(op_call(NULL, "group-rotate", gargs, 1), MQE2E_OPSTATUS_OK);

    /* Restart the core (and the store): the tree is read back. */
    authority_core_free(fx.core, fx.now, fx.now_ms);
    mqe2e_adb_close(fx.db);
    uint8_t key[MQE2E_ADB_KEY_BYTES];
    cr_assert_eq(authority_db_key(key, fx.ks), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_open(&fx.db, fx.db_path, key), MQE2E_OK);
    sodium_memzero(key, sizeof key);
    core_start();
    fx.now += 10;
    char a_g2[] = "group=fleet", a_i2[] = "id=dev-3";
    char *uargs[2] = {a_g2, a_i2};
    cr_assert_eq(op_call(NULL, "group-ungrant", uargs, 2), MQE2E_OPSTATUS_OK);
    cr_assert_eq(count_to("mqe2e/tree/fleet"), 1U);
    sent rm2 = copy_sent(last_to("mqe2e/tree/fleet"));
    cr_assert_eq(tree_apply(m[0], &rm2, &d[0], "fleet", NULL), MQE2E_OK);
    cr_assert_eq(tree_apply(m[1], &rm2, &d[1], "fleet", NULL), MQE2E_OK);
    cr_assert_eq(tree_apply(m[3], &rm2, NULL, "fleet", NULL), MQE2E_ERR_TREE_REVOKED);
    free(rm2.p);

    /* A member that missed updates catches up with one HELLO. */
    mqe2e_keytree_member *late = tree_member(&d[1], "fleet", NULL);
    cr_assert_eq(mqe2e_keytree_member_epoch(late), mqe2e_keytree_member_epoch(m[1]));
    mqe2e_keytree_member_free(late);

    for (int i = 0; i < N; i++) {
        mqe2e_keytree_member_free(m[i]);
        device_free(&d[i]);
    }
}

/* Bad settings are refused with a reason; the group is not created. */
Test(authority_core, key_tree_group_settings_are_checked)
{
    char a_g[] = "group=big", a_t[] = "topic=big/#", a_x[] = "tree=21";
    char *args[3] = {a_g, a_t, a_x};
    cr_assert_eq(op_call(NULL, "group-create", args, 3), MQE2E_OPSTATUS_BAD_REQUEST);
    char a_x2[] = "tree=17", a_r[] = "rotate-seconds=60";
    char *args2[4] = {a_g, a_t, a_x2, a_r};
    cr_assert_eq(op_call(NULL, "group-create", args2, 4), MQE2E_OPSTATUS_BAD_REQUEST);
    mqe2e_adb_group g;
    cr_assert_eq(mqe2e_adb_group_get(&g, fx.db, "big"), MQE2E_ERR_NOT_FOUND);
    char *args3[3] = {a_g, a_t, a_x2};
    cr_assert_eq(op_call(NULL, "group-create", args3, 3), MQE2E_OPSTATUS_OK);
    cr_assert_eq(mqe2e_adb_group_get(&g, fx.db, "big"), MQE2E_OK);
}

/* ------------------------------------------- key trees: tokens, --replace */

/* A token for @p id with the extra arguments @p extra ("k=v", NULL-ended). */
static char *token_create_args(const char *id, const char *const *extra)
{
    char a_id[300], a_x[8][200];
    char *args[9] = {a_id};
    size_t n = 1;
    snprintf(a_id, sizeof a_id, "id=%s", id);
    for (size_t i = 0; extra[i] != NULL && i < 8; i++, n++) {
        snprintf(a_x[i], sizeof a_x[i], "%s", extra[i]);
        args[n] = a_x[i];
    }
    char *out = NULL;
    cr_assert_eq(op_call(&out, "token-create", args, n), MQE2E_OPSTATUS_OK, "token for %s", id);
    char *nl = strchr(out, '\n');
    if (nl != NULL) *nl = '\0';
    return out;
}

/* The tree member a bundle makes (leaf key and TreePath), its leaf key
 * copied to @p leaf_key when not NULL; checks the path's epoch secret is
 * the bundle's secret. */
static mqe2e_keytree_member *member_of_bundle(const mqe2e_key_bundle *b, uint8_t *leaf_key)
{
    cr_assert_not_null(b, "no current bundle");
    cr_assert_gt(b->tree_path_len, 0U, "the bundle of %s carries no TreePath", b->group);
    cr_assert_leq(b->tree_path_len, 1024U, "a join costs the joiner at most 1 KB");
    mqe2e_keytree_member *m = NULL;
    cr_assert_eq(mqe2e_keytree_member_new(&m, b->tree_path + 2, b->tree_leaf_key, b->tree_path,
                                          b->tree_path_len),
                 MQE2E_OK);
    uint8_t s[32];
    cr_assert_eq(mqe2e_keytree_member_epoch_secret(m, s), MQE2E_OK);
    cr_assert_eq(sodium_memcmp(s, b->secret, 32), 0, "the tree's epoch secret is the group's");
    if (leaf_key != NULL) memcpy(leaf_key, b->tree_leaf_key, 32);
    return m;
}

/* Two members hold the same epoch secret. */
static void same_secret(const mqe2e_keytree_member *a, const mqe2e_keytree_member *b)
{
    uint8_t sa[32], sb[32];
    cr_assert_eq(mqe2e_keytree_member_epoch_secret(a, sa), MQE2E_OK);
    cr_assert_eq(mqe2e_keytree_member_epoch_secret(b, sb), MQE2E_OK);
    cr_assert_eq(sodium_memcmp(sa, sb, 32), 0, "both members derive the same epoch secret");
}

static uint32_t group_epoch(const char *group)
{
    mqe2e_adb_group g;
    cr_assert_eq(mqe2e_adb_group_get(&g, fx.db, group), MQE2E_OK);
    return g.current_epoch;
}

/* The signed updates broadcast on @p topic since the last outbox_clear(),
 * copied, in the order they were sent (at most @p cap). */
static size_t tree_updates_sent(sent *out, size_t cap, const char *topic)
{
    size_t k = 0;
    for (size_t i = 0; i < fx.out.n && k < cap; i++)
        if (strcmp(fx.out.v[i].topic, topic) == 0) out[k++] = copy_sent(&fx.out.v[i]);
    return k;
}

static mqe2e_keytree_update open_update(const sent *u)
{
    mqe2e_keytree_update v;
    cr_assert_eq(mqe2e_keytree_update_open(&v, u->p, u->n, fx.pin.sign_public), MQE2E_OK);
    return v;
}

/* Restart the core and the store handle: the trees are read back. */
static void core_restart(void)
{
    authority_core_free(fx.core, fx.now, fx.now_ms);
    mqe2e_adb_close(fx.db);
    uint8_t key[MQE2E_ADB_KEY_BYTES];
    cr_assert_eq(authority_db_key(key, fx.ks), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_open(&fx.db, fx.db_path, key), MQE2E_OK);
    sodium_memzero(key, sizeof key);
    core_start();
}

/* Issue 15 item 3: a token that names a key-tree group joins the device
 * like `group grant` does: a leaf, the group at the tree's next epoch, ONE
 * signed join broadcast (no push to any member), and the ENROLL reply's
 * bundle carries the leaf key and TreePath, so the newcomer is a tree
 * member at once; the member already there follows the broadcast to the
 * same epoch secret. */
Test(authority_core, key_tree_group_joined_by_token)
{
    device d0, t;
    device_enrolled(&d0, "dev-0");
    group_create("fleet", "fleet/#", "tree=3");
    group_grant("fleet", "dev-0");
    mqe2e_keytree_member *m0 = tree_member(&d0, "fleet", NULL);
    uint32_t e0 = group_epoch("fleet");
    uint64_t updates = counter("tree_updates");

    const char *extra[] = {"group=fleet", NULL};
    char *ticket = token_create_args("dev-t", extra);
    device_new(&t, "dev-t");
    enroll_frame(&t, ticket);
    free(ticket);
    mqe2e_control_update reply;
    cr_assert_eq(enroll_send(&t, &reply, NULL), MQE2E_OK, "enrolled into the tree group");
    cr_assert_eq(group_epoch("fleet"), e0 + 1U, "the group moved to the tree's next epoch");
    cr_assert_eq(count_to("mqe2e/tree/fleet"), 1U, "one join broadcast");
    cr_assert_eq(counter("tree_updates"), updates + 1U);
    cr_assert_eq(count_to("mqe2e/client/dev-0"), 0U, "no push to the member already there");
    const mqe2e_key_bundle *b = bundle_of(&reply, "fleet");
    cr_assert_not_null(b, "the reply carries the group");
    cr_assert_eq(b->epoch, e0 + 1U);
    mqe2e_keytree_member *mt = member_of_bundle(b, NULL);
    mqe2e_control_update_wipe(&reply);

    sent join = copy_sent(last_to("mqe2e/tree/fleet"));
    mqe2e_keytree_update v = open_update(&join);
    cr_assert_eq(v.kind, MQE2E_KEYTREE_JOIN);
    cr_assert_eq(v.leaf, 1U, "the lowest free leaf");
    cr_assert_eq(tree_apply(m0, &join, &d0, "fleet", NULL), MQE2E_OK);
    free(join.p);
    same_secret(m0, mt);
    /* Its HELLO hands out the same path. */
    mqe2e_keytree_member *again = tree_member(&t, "fleet", NULL);
    same_secret(again, mt);
    mqe2e_keytree_member_free(again);
    mqe2e_keytree_member_free(mt);
    mqe2e_keytree_member_free(m0);
    device_free(&t);
    device_free(&d0);
}

/* Several token enrollments into one tree group in ONE batch: each gets its
 * own leaf, the updates go out after the commit in epoch order; one of the
 * batch that fails after its join (a second tree group of its token is
 * full) is undone with its savepoint: its leaf is free again, its update
 * never sent, the full group untouched. After a restart the tree read back
 * from the store goes on with the members of the batch. */
Test(authority_core, key_tree_group_token_batch_each_gets_a_leaf_and_a_failure_rolls_back)
{
    device d0, f1, f2, n[3];
    device_enrolled(&d0, "dev-0");
    device_enrolled(&f1, "dev-f1");
    device_enrolled(&f2, "dev-f2");
    group_create("a-fleet", "fleet/#", "tree=3");
    group_create("b-full", "full/#", "tree=1");
    group_grant("a-fleet", "dev-0");
    group_grant("b-full", "dev-f1");
    group_grant("b-full", "dev-f2");
    mqe2e_keytree_member *m0 = tree_member(&d0, "a-fleet", NULL);
    uint32_t ea = group_epoch("a-fleet"), eb = group_epoch("b-full");

    const char *one[] = {"group=a-fleet", NULL};
    const char *two[] = {"group=a-fleet", "group=b-full", NULL};
    const char *ids[3] = {"dev-1", "dev-2", "dev-3"};
    for (int i = 0; i < 3; i++) {
        char *ticket = token_create_args(ids[i], i == 1 ? two : one);
        device_new(&n[i], ids[i]);
        enroll_frame(&n[i], ticket);
        free(ticket);
    }
    uint64_t failed = counter("enroll_failed"), commits = counter("enroll_commits");
    outbox_clear();
    for (int i = 0; i < 3; i++)
        deliver(n[i].frame, n[i].frame_len);
    cr_assert(authority_core_batching(fx.core), "the three wait for one batch");
    authority_core_tick(fx.core, fx.now, fx.now_ms, 1);
    cr_assert_eq(counter("enroll_commits"), commits + 1U, "one transaction");
    cr_assert_eq(counter("enroll_failed"), failed + 1U, "the failure is counted");

    mqe2e_keytree_member *m[3] = {0};
    for (int i = 0; i < 3; i++) {
        char topic[300];
        client_topic(topic, sizeof topic, ids[i]);
        const sent *r = last_to(topic);
        cr_assert_not_null(r, "%s is answered", ids[i]);
        mqe2e_control_update reply;
        mqe2e_credential *cred = NULL;
        memset(&reply, 0, sizeof reply);
        int rc = mqe2e_enroll_finish(n[i].st, &reply, &cred, r->p, r->n, fx.now);
        mqe2e_credential_free(cred);
        if (i == 1) {
            cr_assert_neq(rc, MQE2E_OK, "dev-2 is refused");
            cr_assert_neq(reply.status, MQE2E_STATUS_OK);
        } else {
            cr_assert_eq(rc, MQE2E_OK, "%s enrolled", ids[i]);
            m[i] = member_of_bundle(bundle_of(&reply, "a-fleet"), NULL);
        }
        mqe2e_control_update_wipe(&reply);
    }
    mqe2e_adb_client c;
    cr_assert_eq(mqe2e_adb_client_get(&c, fx.db, "dev-2"), MQE2E_ERR_NOT_FOUND,
                 "nothing of dev-2 stays");
    cr_assert_eq(group_epoch("b-full"), eb, "the full group did not move");
    cr_assert_eq(count_to("mqe2e/tree/b-full"), 0U);
    cr_assert_eq(group_epoch("a-fleet"), ea + 2U, "two joins, not three");

    sent u[4];
    cr_assert_eq(tree_updates_sent(u, 4, "mqe2e/tree/a-fleet"), 2U, "one update per join");
    mqe2e_keytree_update v0 = open_update(&u[0]), v1 = open_update(&u[1]);
    cr_assert_eq(v0.kind, MQE2E_KEYTREE_JOIN);
    cr_assert_eq(v1.kind, MQE2E_KEYTREE_JOIN);
    cr_assert_eq(v1.from_epoch, v0.to_epoch, "sent in epoch order");
    cr_assert_eq(v0.leaf, 1U);
    cr_assert_eq(v1.leaf, 2U, "dev-2's undone leaf was given to dev-3");
    /* The member already there follows both and reaches the group's secret;
     * the newcomers start at the batch's last epoch. */
    cr_assert_eq(tree_apply(m0, &u[0], NULL, "a-fleet", NULL), MQE2E_OK);
    cr_assert_eq(tree_apply(m0, &u[1], &d0, "a-fleet", NULL), MQE2E_OK);
    same_secret(m0, m[0]);
    same_secret(m0, m[2]);
    free(u[0].p);
    free(u[1].p);

    /* The store holds what the batch committed: after a restart a removal
     * of dev-1 is followed by the others, dev-1 is out. */
    core_restart();
    fx.now += 10;
    revoke("dev-1");
    cr_assert_eq(count_to("mqe2e/tree/a-fleet"), 1U);
    sent rm = copy_sent(last_to("mqe2e/tree/a-fleet"));
    cr_assert_eq(tree_apply(m0, &rm, &d0, "a-fleet", NULL), MQE2E_OK);
    cr_assert_eq(tree_apply(m[2], &rm, &n[2], "a-fleet", NULL), MQE2E_OK);
    cr_assert_eq(tree_apply(m[0], &rm, NULL, "a-fleet", NULL), MQE2E_ERR_TREE_REVOKED);
    same_secret(m0, m[2]);
    free(rm.p);

    for (int i = 0; i < 3; i++) {
        mqe2e_keytree_member_free(m[i]);
        device_free(&n[i]);
    }
    mqe2e_keytree_member_free(m0);
    device_free(&f2);
    device_free(&f1);
    device_free(&d0);
}

/* A token naming a full key tree: the enrollment is refused with a reason
 * (counted), nothing of it stays, the tree and the group stay where they
 * were, no update is sent. */
Test(authority_core, key_tree_group_full_refuses_the_token_enrollment)
{
    device f1, f2, t;
    device_enrolled(&f1, "dev-f1");
    device_enrolled(&f2, "dev-f2");
    group_create("small", "small/#", "tree=1");
    group_grant("small", "dev-f1");
    group_grant("small", "dev-f2");
    mqe2e_keytree_member *m1 = tree_member(&f1, "small", NULL);
    uint32_t e = group_epoch("small");
    uint64_t failed = counter("enroll_failed");
    const char *extra[] = {"group=small", NULL};
    char *ticket = token_create_args("dev-t", extra);
    device_new(&t, "dev-t");
    enroll_frame(&t, ticket);
    free(ticket);
    mqe2e_control_update reply;
    cr_assert_neq(enroll_send(&t, &reply, NULL), MQE2E_OK, "refused: the tree is full");
    mqe2e_control_update_wipe(&reply);
    cr_assert_eq(counter("enroll_failed"), failed + 1U);
    cr_assert_eq(group_epoch("small"), e);
    cr_assert_eq(count_to("mqe2e/tree/small"), 0U);
    mqe2e_adb_client c;
    cr_assert_eq(mqe2e_adb_client_get(&c, fx.db, "dev-t"), MQE2E_ERR_NOT_FOUND);
    mqe2e_keytree_member *again = tree_member(&f1, "small", NULL);
    same_secret(again, m1);
    mqe2e_keytree_member_free(again);
    mqe2e_keytree_member_free(m1);
    device_free(&t);
    device_free(&f2);
    device_free(&f1);
}

/* Issue 15 item 3: `--replace` of a key-tree member. The old device's leaf
 * is removed (ONE remove update: every key on its path is new) and the new
 * device joins (ONE join update), both in the enrollment's transaction; the
 * new device's reply carries its leaf key and TreePath at the resulting
 * epoch. An attacker holding the old device's leaf key, its path and every
 * broadcast derives nothing after the replacement; the remaining members
 * follow the two broadcasts to the new device's epoch secret. */
Test(authority_core, key_tree_member_replaced_old_leaf_derives_nothing)
{
    enum { N = 3 };
    device d[N], nd;
    mqe2e_keytree_member *m[N] = {0};
    const char *ids[N] = {"dev-a", "dev-b", "dev-r"};
    for (int i = 0; i < N; i++)
        device_enrolled(&d[i], ids[i]);
    group_create("fleet", "fleet/#", "tree=3");
    for (int i = 0; i < N; i++) {
        group_grant("fleet", ids[i]);
        sent join = copy_sent(last_to("mqe2e/tree/fleet"));
        for (int k = 0; k < i; k++)
            cr_assert_eq(tree_apply(m[k], &join, NULL, "fleet", NULL), 0);
        free(join.p);
        m[i] = tree_member(&d[i], "fleet", NULL);
    }
    /* What the old device keeps: its leaf key and its TreePath. */
    mqe2e_control_update hr;
    cr_assert_eq(hello(&d[2], &hr), MQE2E_OK);
    const mqe2e_key_bundle *ob = bundle_of(&hr, "fleet");
    cr_assert_not_null(ob);
    uint8_t old_leaf[32];
    memcpy(old_leaf, ob->tree_leaf_key, 32);
    uint8_t tree_id[16];
    memcpy(tree_id, ob->tree_path + 2, 16);
    mqe2e_keytree_member *copy = NULL;
    cr_assert_eq(
        mqe2e_keytree_member_new(&copy, tree_id, old_leaf, ob->tree_path, ob->tree_path_len),
        MQE2E_OK);
    mqe2e_control_update_wipe(&hr);
    uint32_t e = group_epoch("fleet");
    uint64_t updates = counter("tree_updates");

    fx.now += 10;
    const char *extra[] = {"replace=1", "group=fleet", NULL};
    char *ticket = token_create_args("dev-r", extra);
    device_new(&nd, "dev-r");
    enroll_frame(&nd, ticket);
    free(ticket);
    mqe2e_control_update reply;
    cr_assert_eq(enroll_send(&nd, &reply, NULL), MQE2E_OK, "the replacement enrolls");
    cr_assert_eq(counter("replacements"), 1U);
    cr_assert_eq(group_epoch("fleet"), e + 2U, "a removal and a join");
    cr_assert_eq(counter("tree_updates"), updates + 2U);
    for (int i = 0; i < 2; i++) {
        char topic[300];
        client_topic(topic, sizeof topic, ids[i]);
        cr_assert_eq(count_to(topic), 0U, "no per-member push (%s)", ids[i]);
    }
    const mqe2e_key_bundle *b = bundle_of(&reply, "fleet");
    cr_assert_not_null(b, "the new device is in the group");
    cr_assert_eq(b->epoch, e + 2U, "its path is at the resulting epoch");
    mqe2e_keytree_member *mn = member_of_bundle(b, NULL);
    uint8_t new_path[MQE2E_BUNDLE_TREE_PATH_MAX];
    size_t new_path_len = b->tree_path_len;
    memcpy(new_path, b->tree_path, new_path_len);
    mqe2e_control_update_wipe(&reply);

    sent u[4];
    cr_assert_eq(tree_updates_sent(u, 4, "mqe2e/tree/fleet"), 2U);
    mqe2e_keytree_update rm = open_update(&u[0]), jn = open_update(&u[1]);
    cr_assert_eq(rm.kind, MQE2E_KEYTREE_REMOVE, "the removal first");
    cr_assert_eq(rm.leaf, 2U, "the old device's leaf");
    cr_assert_eq(jn.kind, MQE2E_KEYTREE_JOIN);
    cr_assert_eq(jn.from_epoch, rm.to_epoch, "then the join, in epoch order");

    /* The remaining members follow both broadcasts. */
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(tree_apply(m[i], &u[0], NULL, "fleet", NULL), MQE2E_OK);
        cr_assert_eq(tree_apply(m[i], &u[1], &d[i], "fleet", NULL), MQE2E_OK);
        same_secret(m[i], mn);
    }
    /* The attacker with the old device's state: the removal's wraps are all
     * under keys it never held, the join does not follow its epoch, and its
     * old leaf key does not open the new device's TreePath (even where the
     * new device took the same leaf). */
    uint8_t s_new[32], s_old[32];
    cr_assert_eq(mqe2e_keytree_member_epoch_secret(mn, s_new), MQE2E_OK);
    cr_assert_eq(tree_apply(m[2], &u[0], NULL, "fleet", NULL), MQE2E_ERR_TREE_REVOKED);
    cr_assert_neq(tree_apply(m[2], &u[1], NULL, "fleet", NULL), MQE2E_OK);
    cr_assert_neq(tree_apply(copy, &u[1], NULL, "fleet", NULL), MQE2E_OK,
                  "skipping the removal gains nothing");
    cr_assert_eq(mqe2e_keytree_member_epoch_secret(copy, s_old), MQE2E_OK);
    cr_assert_neq(sodium_memcmp(s_old, s_new, 32), 0);
    int src = mqe2e_keytree_member_epoch_secret(m[2], s_old);
    cr_assert(src != MQE2E_OK || sodium_memcmp(s_old, s_new, 32) != 0,
              "the removed member holds no secret of the new epoch");
    mqe2e_keytree_member *stolen = NULL;
    cr_assert_neq(mqe2e_keytree_member_new(&stolen, tree_id, old_leaf, new_path, new_path_len),
                  MQE2E_OK, "the old leaf key opens no path of the new device");
    cr_assert_neq(mqe2e_keytree_member_catch_up(copy, new_path, new_path_len), MQE2E_OK,
                  "nor does catch-up with it");
    mqe2e_control_update r;
    cr_assert_neq(hello(&d[2], &r), MQE2E_OK, "the old device's HELLO is not answered");
    sodium_memzero(old_leaf, sizeof old_leaf);
    free(u[0].p);
    free(u[1].p);
    mqe2e_keytree_member_free(copy);
    mqe2e_keytree_member_free(mn);
    for (int i = 0; i < N; i++) {
        mqe2e_keytree_member_free(m[i]);
        device_free(&d[i]);
    }
    device_free(&nd);
}

/* `--replace` with a token that does not name the tree group: the old
 * device's leaf is still removed (one broadcast the others follow), the new
 * device is not a member and gets no bundle of it. */
Test(authority_core, key_tree_member_replaced_without_the_group_leaves_it)
{
    device a, r, nd;
    device_enrolled(&a, "dev-a");
    device_enrolled(&r, "dev-r");
    group_create("fleet", "fleet/#", "tree=2");
    group_grant("fleet", "dev-a");
    mqe2e_keytree_member *ma = tree_member(&a, "fleet", NULL);
    group_grant("fleet", "dev-r");
    sent join = copy_sent(last_to("mqe2e/tree/fleet"));
    cr_assert_eq(tree_apply(ma, &join, NULL, "fleet", NULL), MQE2E_OK);
    free(join.p);
    mqe2e_keytree_member *mr = tree_member(&r, "fleet", NULL);
    mqe2e_adb_client old;
    cr_assert_eq(mqe2e_adb_client_get(&old, fx.db, "dev-r"), MQE2E_OK);
    fx.now += 10;
    char *ticket = token_create("dev-r", "replace=1");
    device_new(&nd, "dev-r");
    enroll_frame(&nd, ticket);
    free(ticket);
    mqe2e_control_update reply;
    cr_assert_eq(enroll_send(&nd, &reply, NULL), MQE2E_OK);
    cr_assert_null(bundle_of(&reply, "fleet"), "not a member any more");
    mqe2e_control_update_wipe(&reply);
    /* Its only group was a tree group: the list revoking the old
     * credentials is still published. */
    mqe2e_revocation_list *l = published_list();
    cr_assert_not_null(l, "the revocation list is republished after the replacement");
    cr_assert(mqe2e_revocation_list_is_revoked(l, "dev-r", old.credential_serial));
    cr_assert_not(mqe2e_revocation_list_client_revoked(l, "dev-r"));
    mqe2e_revocation_list_free(l);
    cr_assert_eq(count_to("mqe2e/tree/fleet"), 1U, "one removal");
    sent rm = copy_sent(last_to("mqe2e/tree/fleet"));
    cr_assert_eq(tree_apply(ma, &rm, &a, "fleet", NULL), MQE2E_OK);
    cr_assert_eq(tree_apply(mr, &rm, NULL, "fleet", NULL), MQE2E_ERR_TREE_REVOKED);
    free(rm.p);
    mqe2e_keytree_member_free(mr);
    mqe2e_keytree_member_free(ma);
    device_free(&nd);
    device_free(&r);
    device_free(&a);
}

/* ------------------------------------------- converting a push group */

/* The tree state a member gets from the conversion's push: the last push to
 * @p d, its current bundle of @p group with a leaf key and TreePath that
 * open with the member API to the bundle's own secret. */
static mqe2e_keytree_member *pushed_tree_member(device *d, const char *group, uint32_t *epoch,
                                                uint8_t secret[32])
{
    char t[300];
    client_topic(t, sizeof t, d->id);
    const sent *p = last_to(t);
    cr_assert_not_null(p, "%s got no push", d->id);
    mqe2e_control_update push;
    cr_assert_eq(
        mqe2e_push_open(&push, d->dh, fx.pin.dh_public, "mqe2e", "authority", p->p, p->n, 0),
        MQE2E_OK);
    const mqe2e_key_bundle *b = bundle_of(&push, group);
    cr_assert_not_null(b, "%s: no current bundle of %s in the push", d->id, group);
    cr_assert_gt(b->tree_path_len, 0U, "%s: the push carries no tree path", d->id);
    mqe2e_keytree_member *m = NULL;
    cr_assert_eq(mqe2e_keytree_member_new(&m, b->tree_path + 2, b->tree_leaf_key, b->tree_path,
                                          b->tree_path_len),
                 MQE2E_OK);
    uint8_t s[32];
    cr_assert_eq(mqe2e_keytree_member_epoch_secret(m, s), MQE2E_OK);
    cr_assert_eq(sodium_memcmp(s, b->secret, 32), 0, "the tree's epoch secret is the pushed one");
    if (secret != NULL) memcpy(secret, s, 32);
    if (epoch != NULL) *epoch = b->epoch;
    sodium_memzero(s, sizeof s);
    mqe2e_control_update_wipe(&push);
    return m;
}

static int32_t group_tree(char **out, const char *group, const char *depth)
{
    char a_g[100], a_d[40];
    char *args[2] = {a_g, a_d};
    snprintf(a_g, sizeof a_g, "group=%s", group);
    snprintf(a_d, sizeof a_d, "depth=%s", depth != NULL ? depth : "");
    return op_call(out, "group-tree", args, depth != NULL ? 2U : 1U);
}

/* @p n enrolled devices "<prefix><i>" (ids in @p id). */
static void devices_enrolled(device *d, char (*id)[16], int n, const char *prefix)
{
    for (int i = 0; i < n; i++) {
        snprintf(id[i], sizeof id[i], "%s%d", prefix, i);
        device_enrolled(&d[i], id[i]);
    }
}

/* Issue 15 item 3: a push group becomes a key-tree group in one step. Every
 * member's push carries its leaf key and TreePath, all derive the group's
 * new epoch secret (group epoch = tree epoch 1 + the epoch current before);
 * nothing is broadcast for it; from then on a revocation is ONE TreeUpdate
 * the others apply and the revoked member cannot, and a join is one
 * broadcast; a member offline during the conversion catches up by HELLO. */
Test(authority_core, key_tree_conversion_of_a_push_group)
{
    enum { N = 5 };
    device d[N];
    char id[N][16];
    mqe2e_keytree_member *m[N] = {0};
    devices_enrolled(d, id, N, "dev-c");
    group_create("plant", "plant/#", NULL);
    for (int i = 0; i < N; i++)
        group_grant("plant", id[i]);
    char a_g[] = "group=plant";
    char *rargs[1] = {a_g};
    cr_assert_eq(op_call(NULL, "group-rotate", rargs, 1), MQE2E_OPSTATUS_OK);
    uint32_t before = group_epoch("plant");
    cr_assert_eq(before, 2U);

    char *out = NULL;
    cr_assert_eq(group_tree(&out, "plant", NULL), MQE2E_OPSTATUS_OK);
    cr_assert(strstr(out, "key tree of depth 4") != NULL, "2^d >= 2 x 5 members: %s", out);
    free(out);
    cr_assert(authority_tree_db_is_tree(fx.db, "plant"));
    cr_assert_eq(group_epoch("plant"), before + 1U, "one rotation, to tree epoch 1 + base");
    cr_assert_eq(count_to("mqe2e/tree/plant"), 0U, "no join update per member");
    cr_assert_eq(counter("tree_conversions"), 1U);
    /* d[4] is offline: it never reads its push. */
    uint8_t s0[32], s[32];
    for (int i = 0; i < N - 1; i++) {
        char t[300];
        client_topic(t, sizeof t, id[i]);
        cr_assert_eq(count_to(t), 1U, "one push for %s", id[i]);
        uint32_t e = 0;
        m[i] = pushed_tree_member(&d[i], "plant", &e, i == 0 ? s0 : s);
        cr_assert_eq(e, before + 1U);
        cr_assert_eq(mqe2e_keytree_member_epoch(m[i]), 1U);
        if (i > 0) cr_assert_eq(sodium_memcmp(s, s0, 32), 0, "%s: same epoch secret", id[i]);
    }
    /* The pushed secret is the group's (HELLO reads it from the store). */
    mqe2e_keytree_member *h = tree_member(&d[0], "plant", NULL);
    cr_assert_eq(mqe2e_keytree_member_leaf(h), mqe2e_keytree_member_leaf(m[0]));
    mqe2e_keytree_member_free(h);

    /* A revocation: one TreeUpdate, no push to anyone. */
    fx.now += 10;
    revoke(id[1]);
    cr_assert_eq(count_to("mqe2e/tree/plant"), 1U);
    for (int i = 0; i < N; i++) {
        char t[300];
        client_topic(t, sizeof t, id[i]);
        cr_assert_eq(count_to(t), 0U, "no per-member push after the conversion (%s)", id[i]);
    }
    sent rm = copy_sent(last_to("mqe2e/tree/plant"));
    for (int i = 0; i < N - 1; i++) {
        int rc = tree_apply(m[i], &rm, i == 1 ? NULL : &d[i], "plant", NULL);
        cr_assert_eq(rc, i == 1 ? MQE2E_ERR_TREE_REVOKED : MQE2E_OK, "%s: %d", id[i], rc);
    }
    free(rm.p);
    /* The member offline during the conversion: its HELLO brings its leaf
     * and the current path (the revocation's epoch). */
    uint32_t e4 = 0;
    m[4] = tree_member(&d[4], "plant", &e4);
    cr_assert_eq(e4, before + 2U);
    cr_assert_eq(mqe2e_keytree_member_epoch(m[4]), mqe2e_keytree_member_epoch(m[0]));

    /* A join is a tree update too. */
    device late;
    device_enrolled(&late, "dev-late");
    group_grant("plant", "dev-late");
    cr_assert_eq(count_to("mqe2e/tree/plant"), 1U, "the join is one broadcast");
    sent join = copy_sent(last_to("mqe2e/tree/plant"));
    cr_assert_eq(tree_apply(m[0], &join, &d[0], "plant", NULL), MQE2E_OK);
    cr_assert_eq(tree_apply(m[4], &join, &d[4], "plant", NULL), MQE2E_OK);
    free(join.p);
    mqe2e_keytree_member *ml = tree_member(&late, "plant", NULL);
    mqe2e_keytree_member_free(ml);
    device_free(&late);
    for (int i = 0; i < N; i++) {
        mqe2e_keytree_member_free(m[i]);
        device_free(&d[i]);
    }
}

/* A conversion that cannot be done changes nothing: not a tree, same epoch,
 * no push, no counter: a depth too small for the members, a depth out of
 * range, a group with rotation settings, an unknown group; and a tree group
 * is not converted twice. A ticket made while the group was a push group
 * does not hold the conversion back: used after it, it joins the tree at a
 * leaf with one join broadcast. */
Test(authority_core, key_tree_conversion_refusals_leave_the_group_unchanged)
{
    device d[3];
    char id[3][16];
    devices_enrolled(d, id, 3, "dev-r");
    group_create("lab", "lab/#", NULL);
    group_create("timed", "timed/#", "rotate-seconds=3600");
    for (int i = 0; i < 3; i++) {
        group_grant("lab", id[i]);
        group_grant("timed", id[i]);
    }
    uint32_t lab = group_epoch("lab"), timed = group_epoch("timed");
    uint64_t rotations = counter("rotations");
    char *out = NULL;
    struct {
        const char *group, *depth;
        int32_t status;
    } bad[] = {
        {"lab", "1", MQE2E_OPSTATUS_BAD_REQUEST},   /* 3 members, 2 leaves */
        {"lab", "21", MQE2E_OPSTATUS_BAD_REQUEST},  /* over 2^20 */
        {"lab", "0", MQE2E_OPSTATUS_BAD_REQUEST},   /* no tree of depth 0 */
        {"timed", NULL, MQE2E_OPSTATUS_BAD_REQUEST}, /* rotation settings */
        {"nowhere", NULL, MQE2E_OPSTATUS_NOT_FOUND},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        cr_assert_eq(group_tree(&out, bad[k].group, bad[k].depth), bad[k].status, "case %zu",
                     k);
        free(out);
        out = NULL;
        cr_assert_eq(fx.out.n, 1U, "case %zu: only the operator reply was sent", k);
    }
    cr_assert_not(authority_tree_db_is_tree(fx.db, "lab"));
    cr_assert_not(authority_tree_db_is_tree(fx.db, "timed"));
    cr_assert_eq(group_epoch("lab"), lab);
    cr_assert_eq(group_epoch("timed"), timed);
    cr_assert_eq(counter("rotations"), rotations);
    cr_assert_eq(counter("tree_conversions"), 0U);
    /* Still a push group: a rotation pushes the members as before. */
    char a_g[] = "group=lab";
    char *rargs[1] = {a_g};
    cr_assert_eq(op_call(NULL, "group-rotate", rargs, 1), MQE2E_OPSTATUS_OK);
    cr_assert_eq(count_to("mqe2e/client/dev-r0"), 1U);

    /* A ticket naming the push group, made before the conversion. */
    const char *extra[] = {"group=lab", NULL};
    char *ticket = token_create_args("dev-r9", extra);
    cr_assert_eq(group_tree(&out, "lab", "2"), MQE2E_OPSTATUS_OK);
    free(out);
    cr_assert(authority_tree_db_is_tree(fx.db, "lab"));
    cr_assert_eq(group_tree(&out, "lab", NULL), MQE2E_OPSTATUS_EXISTS);
    free(out);
    cr_assert_eq(counter("tree_conversions"), 1U);
    /* Used now, it joins the tree at the fourth leaf: one join broadcast. */
    size_t joins = count_to("mqe2e/tree/lab");
    device late;
    device_new(&late, "dev-r9");
    enroll_frame(&late, ticket);
    free(ticket);
    mqe2e_control_update reply;
    cr_assert_eq(enroll_send(&late, &reply, NULL), MQE2E_OK, "the earlier ticket enrolls");
    mqe2e_control_update_wipe(&reply);
    cr_assert_eq(count_to("mqe2e/tree/lab"), joins + 1U, "one join broadcast");
    mqe2e_keytree_member *ml = tree_member(&late, "lab", NULL);
    cr_assert_eq(mqe2e_keytree_member_leaf(ml), 3U);
    mqe2e_keytree_member_free(ml);
    device_free(&late);
    /* A group without members converts too; its first member is a tree join. */
    group_create("empty", "empty/#", NULL);
    cr_assert_eq(group_tree(&out, "empty", NULL), MQE2E_OPSTATUS_OK);
    free(out);
    group_grant("empty", id[0]);
    cr_assert_eq(count_to("mqe2e/tree/empty"), 1U);
    mqe2e_keytree_member *m = tree_member(&d[0], "empty", NULL);
    cr_assert_eq(mqe2e_keytree_member_epoch(m), 2U);
    mqe2e_keytree_member_free(m);
    for (int i = 0; i < 3; i++)
        device_free(&d[i]);
}

/* tree_threshold = 3: the grant that brings a push group to its 3rd member
 * converts it (every member's push carries its leaf), not the 2nd; the 4th
 * member joins by one broadcast. An enrollment whose ticket names a push
 * group converts it the same way at its 3rd member. Off (0) nothing moves. */
Test(authority_core, key_tree_threshold_converts_at_the_nth_member)
{
    device d[4];
    char id[4][16];
    devices_enrolled(d, id, 4, "dev-t");
    group_create("off", "off/#", NULL);
    for (int i = 0; i < 4; i++)
        group_grant("off", id[i]);
    cr_assert_not(authority_tree_db_is_tree(fx.db, "off"), "tree_threshold 0: never");

    fx.cfg.tree_threshold = 3;
    group_create("yard", "yard/#", NULL);
    group_grant("yard", id[0]);
    group_grant("yard", id[1]);
    cr_assert_not(authority_tree_db_is_tree(fx.db, "yard"), "converted before the 3rd member");
    char a_g[] = "group=yard", a_i[] = "id=dev-t2";
    char *args[2] = {a_g, a_i};
    char *out = NULL;
    cr_assert_eq(op_call(&out, "group-grant", args, 2), MQE2E_OPSTATUS_OK);
    cr_assert(strstr(out, "converted to a key tree of depth 3") != NULL, "%s", out);
    free(out);
    cr_assert(authority_tree_db_is_tree(fx.db, "yard"), "not converted at the 3rd member");
    cr_assert_eq(counter("tree_conversions"), 1U);
    mqe2e_keytree_member *m[3];
    for (int i = 0; i < 3; i++)
        m[i] = pushed_tree_member(&d[i], "yard", NULL, NULL);
    group_grant("yard", id[3]);
    cr_assert_eq(count_to("mqe2e/tree/yard"), 1U, "the 4th member is a tree join");
    sent join = copy_sent(last_to("mqe2e/tree/yard"));
    for (int i = 0; i < 3; i++)
        cr_assert_eq(tree_apply(m[i], &join, &d[i], "yard", NULL), MQE2E_OK);
    free(join.p);
    cr_assert_eq(counter("tree_conversions"), 1U);
    cr_assert_not(authority_tree_db_is_tree(fx.db, "off"), "a group is converted by its grant");

    /* Enrollment: the enrollment that brings the group to 3 members converts it. */
    group_create("dock", "dock/#", NULL);
    device e[3];
    for (int i = 0; i < 3; i++) {
        char eid[16], extra[64];
        snprintf(eid, sizeof eid, "dev-e%d", i);
        snprintf(extra, sizeof extra, "group=dock");
        device_new(&e[i], eid);
        char *ticket = token_create(eid, extra);
        enroll_frame(&e[i], ticket);
        free(ticket);
        /* The reply first, then (3rd) the conversion's push to every member. */
        char t[300];
        client_topic(t, sizeof t, eid);
        outbox_clear();
        deliver(e[i].frame, e[i].frame_len);
        authority_core_tick(fx.core, fx.now, fx.now_ms, 1);
        const sent *r = NULL;
        for (size_t k = 0; k < fx.out.n && r == NULL; k++)
            if (strcmp(fx.out.v[k].topic, t) == 0) r = &fx.out.v[k];
        cr_assert_not_null(r, "no enroll reply");
        mqe2e_control_update reply;
        mqe2e_credential *cred = NULL;
        cr_assert_eq(mqe2e_enroll_finish(e[i].st, &reply, &cred, r->p, r->n, fx.now), MQE2E_OK);
        mqe2e_credential_free(cred);
        mqe2e_control_update_wipe(&reply);
        cr_assert_eq(count_to(t), i == 2 ? 2U : 1U, "enrollment %d: reply (and push)", i);
        cr_assert_eq(authority_tree_db_is_tree(fx.db, "dock"), i == 2, "after enrollment %d", i);
    }
    cr_assert_eq(counter("tree_conversions"), 2U);
    for (int i = 0; i < 3; i++) {
        mqe2e_keytree_member *em = pushed_tree_member(&e[i], "dock", NULL, NULL);
        mqe2e_keytree_member_free(em);
        device_free(&e[i]);
    }
    for (int i = 0; i < 3; i++)
        mqe2e_keytree_member_free(m[i]);
    for (int i = 0; i < 4; i++)
        device_free(&d[i]);
}
/* ----------------------------------------------------------------- replicas */

/* A second replica: its own core and store handle on the same SQLite file
 * (what two `mqe2e-authority run --replica-group` processes share), the
 * same authority identity, the same outbox. replica_use(1) makes the
 * helpers above (operator calls, HELLO, ticks, counters) talk to it. */
static struct {
    mqe2e_adb *db;
    authority_core *core;
    int active;
} rb;

static void replica_use(int b)
{
    if (b == rb.active) return;
    mqe2e_adb *db = fx.db;
    authority_core *core = fx.core;
    fx.db = rb.db;
    fx.core = rb.core;
    rb.db = db;
    rb.core = core;
    rb.active = b;
}

static void replica_start(void)
{
    uint8_t key[MQE2E_ADB_KEY_BYTES];
    cr_assert_eq(authority_db_key(key, fx.ks), MQE2E_OK);
    cr_assert_eq(mqe2e_adb_open(&rb.db, fx.db_path, key), MQE2E_OK);
    sodium_memzero(key, sizeof key);
    authority_io io = {&fx.out, io_publish, io_flush, io_subscribe, NULL, NULL};
    cr_assert_eq(authority_core_new(&rb.core, fx.ks, rb.db, &fx.cfg, &io, fx.now), MQE2E_OK);
    authority_core_connected(rb.core, fx.now);
    rb.active = 0;
}

static void replica_stop(void)
{
    replica_use(0);
    authority_core_free(rb.core, fx.now, fx.now_ms);
    mqe2e_adb_close(rb.db);
    memset(&rb, 0, sizeof rb);
}

/* Issue 13: a replica that did not revoke answers HELLO with the list the
 * other one signed (it re-reads the version from the store), and when half
 * the validity passed both sign the same bytes, even a second apart: two
 * replicas never publish two different lists of one version. */
Test(authority_core, replicas_sign_one_revocation_list)
{
    fx.cfg.list_validity = 600;
    device d, e;
    device_enrolled(&d, "dev-r1");
    device_enrolled(&e, "dev-r2");
    group_create("alarms", "site/alarm/#", NULL);
    group_grant("alarms", "dev-r1");
    group_grant("alarms", "dev-r2");
    replica_start();
    fx.now += 10;
    uint64_t t1 = fx.now;
    revoke("dev-r2"); /* on replica A */
    mqe2e_revocation_list *l = published_list();
    cr_assert_not_null(l);
    cr_assert_eq(mqe2e_revocation_list_issued_at(l), t1);
    mqe2e_revocation_list_free(l);

    fx.now += 1;
    replica_use(1);
    mqe2e_control_update reply;
    cr_assert_eq(hello(&d, &reply), MQE2E_OK);
    cr_assert_not_null(reply.revocation_list, "replica B's HELLO reply carries the list");
    cr_assert_eq(mqe2e_revocation_list_verify(&l, reply.revocation_list,
                                              reply.revocation_list_len, fx.pin.sign_public),
                 MQE2E_OK);
    cr_assert_eq(mqe2e_revocation_list_version(l), 1, "B knows A's revocation");
    cr_assert(mqe2e_revocation_list_client_revoked(l, "dev-r2"));
    mqe2e_revocation_list_free(l);
    mqe2e_control_update_wipe(&reply);

    /* Half the validity: A signs at t1 + 300, B one second later. */
    replica_use(0);
    outbox_clear();
    tick_at(t1 + 300U);
    cr_assert_eq(count_to("mqe2e/revocations"), 1);
    sent a_copy = *last_to("mqe2e/revocations");
    a_copy.p = malloc(a_copy.n);
    memcpy(a_copy.p, last_to("mqe2e/revocations")->p, a_copy.n);
    replica_use(1);
    outbox_clear();
    tick_at(t1 + 301U);
    const sent *b_copy = last_to("mqe2e/revocations");
    cr_assert_not_null(b_copy, "B re-signs too");
    cr_assert_eq(b_copy->n, a_copy.n);
    cr_assert_eq(memcmp(b_copy->p, a_copy.p, a_copy.n), 0, "both replicas sign the same bytes");
    free(a_copy.p);
    replica_stop();
    device_free(&d);
    device_free(&e);
}

/* Issue 13: every replica counts the envelopes of a group rotated by count
 * (each subscribes its filter); at the threshold the first rotates and the
 * second finds the epoch moved: one rotation, not two. */
Test(authority_core, replicas_rotate_a_counted_group_once)
{
    device d;
    device_in_new_group(&d, "dev-c1", "meter", "meter/#", "rotate-messages=3");
    replica_start();
    mqe2e_sender_key k;
    memset(&k, 0, sizeof k);
    uint8_t env[256];
    for (uint64_t seq = 1; seq <= 3; seq++) {
        mqe2e_envelope_header h = {MQE2E_MODE_GROUP, 1, 1, seq, 0x010203040506ULL};
        size_t n = 0;
        cr_assert_eq(mqe2e_envelope_seal(env, sizeof env, &n, &k, "meter/1", "meter", &h,
                                         (const uint8_t *)"x", 1),
                     MQE2E_OK);
        /* The broker hands every subscriber its copy. */
        authority_core_message(fx.core, "meter/1", env, n, fx.now, fx.now_ms);
        authority_core_message(rb.core, "meter/1", env, n, fx.now, fx.now_ms);
    }
    mqe2e_adb_group g;
    cr_assert_eq(mqe2e_adb_group_get(&g, fx.db, "meter"), MQE2E_OK);
    cr_assert_eq(g.current_epoch, 2, "rotated once (epoch %u)", g.current_epoch);
    cr_assert_eq(authority_core_counter(fx.core, "rotations") +
                     authority_core_counter(rb.core, "rotations"),
                 1);
    replica_stop();
    device_free(&d);
}

/* Issue 13: operator replay protection is the store's: a request done by
 * replica A and replayed to replica B is refused there. */
Test(authority_core, replicas_refuse_an_operator_frame_replayed_to_the_other)
{
    uint8_t *frame = malloc(FRAME_MAX);
    size_t len = 0;
    char a_g[] = "group=g9", a_t[] = "topic=g9/#";
    char *args[2] = {a_g, a_t};
    replica_start();
    cr_assert_eq(op_send(frame, &len, fx.now, "group-create", args, 2), MQE2E_OPSTATUS_OK);
    replica_use(1);
    deliver(frame, len);
    cr_assert_eq(counter("operator_replay"), 1, "B refuses A's frame");
    cr_assert_eq(counter("operator_ok"), 0);
    replica_stop();
    free(frame);
}
