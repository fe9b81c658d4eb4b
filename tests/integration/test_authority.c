/*
 * The authority end to end: a real Mosquitto, the real `mqe2e authority run`
 * process (fork/exec of the CLI), operators driving it through the CLI, and
 * devices implemented here with raw Paho and the lib control calls.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <MQTTClient.h>
#include <cjson/cJSON.h>
#include <sodium.h>

#include "authority_fixture.h"
#include "broker.h"
#include "mailbox.h"
#include "mqe2e/control.h"
#include "mqe2e/credential.h"
#include "mqe2e/envelope.h"
#include "mqe2e/error.h"
#include "mqe2e/keystore.h"
#include "mqe2e/keytree.h"
#include "mqe2e/policy.h"
#include "mqe2e/protect.h"
#include "mqe2e/operator.h"
#include "mqe2e/storage.h"
#include "testutil.h"

#define PREFIX "mqe2e"
#define AUTH_ID "authority-test"
#define OUT_MAX (1024U * 1024U)

/* ------------------------------------------------------------- fixture */

static af_fixture fx;
static mailbox box; /* subscribed to P/client/# : the devices' shared transport */

/* Operator command: common options appended. */
static int op(char *out, size_t cap, const char *const *args)
{
    return af_op(&fx, out, cap, args);
}

static void authority_start(void)
{
    af_authority_start(&fx, NULL);
}

static void authority_stop(int sig)
{
    af_authority_kill(&fx, sig);
}

static void fixture_start(void)
{
    memset(&fx, 0, sizeof fx);
    af_setup(&fx, AUTH_ID);
    cr_assert_str_eq(fx.pin.authority_id, AUTH_ID);
    cr_assert_str_eq(fx.pin.control_prefix, PREFIX);
    char out[4096];
    /* The pin can be printed again. */
    const char *pin[] = {"authority", "pin", "-K", fx.auth_ks, "--key-file", fx.keyfile, NULL};
    cr_assert_eq(af_run(out, sizeof out, pin), 0);
    out[strcspn(out, "\n")] = '\0';
    cr_assert_str_eq(out, fx.pin_text);

    authority_start();

    mb_open(&box, tb_broker_uri(&fx.broker), "tester", PREFIX "/client/#");
}

static void fixture_stop(void)
{
    mb_close(&box);
    af_teardown(&fx);
}

/* --------------------------------------------------------- mailbox */

/* First message on the client's inbox within the timeout (removed from the box). */
static int take(mail *out, const char *client_id, double timeout)
{
    char topic[512];
    snprintf(topic, sizeof topic, PREFIX "/client/%s", client_id);
    return mb_take(&box, out, topic, (long)(timeout * 1000.0));
}

static void publish(const char *topic, const uint8_t *p, size_t n)
{
    mb_publish(&box, topic, p, n);
}

/* --------------------------------------------------------- devices */

typedef struct device {
    char id[128];
    uint8_t dh_sk[32], dh_pk[32], sign_pk[32], sign_sk[64];
    uint64_t last_push;
    uint64_t serial;
    uint32_t epoch; /* highest epoch held for the test group */
    mqe2e_enroll_device *st;
} device;

static void device_new(device *d, const char *id)
{
    memset(d, 0, sizeof *d);
    snprintf(d->id, sizeof d->id, "%s", id);
    crypto_box_keypair(d->dh_pk, d->dh_sk);
    crypto_sign_keypair(d->sign_pk, d->sign_sk);
}

static size_t last_enroll_req, last_enroll_reply, last_hello_req, last_hello_reply, last_push;
/* The last ENROLL step 1 sent, as a broker would capture it. */
static uint8_t last_enroll_frame[MQE2E_CONTROL_MAX_FRAME_BYTES];

static void enroll_send(device *d, const char *ticket_text, uint64_t now, int corrupt_token)
{
    mqe2e_ticket t;
    uint8_t frame[MQE2E_CONTROL_MAX_FRAME_BYTES];
    size_t len = 0;
    cr_assert_eq(mqe2e_ticket_decode(&t, ticket_text), MQE2E_OK);
    cr_assert_str_eq(t.client_id, d->id);
    if (corrupt_token) t.token[0] ^= 1;
    cr_assert_eq(
        mqe2e_enroll_begin(&d->st, frame, sizeof frame, &len, &t, d->dh_sk, d->sign_pk, now),
        MQE2E_OK);
    mqe2e_ticket_wipe(&t);
    last_enroll_req = len;
    memcpy(last_enroll_frame, frame, len);
    publish(PREFIX "/authority", frame, len);
}

/* Finish an enrollment; returns the lib code (reply status in *status). */
static int enroll_recv(device *d, mqe2e_control_update *reply, double timeout)
{
    mail m;
    mqe2e_credential *cred = NULL;
    memset(reply, 0, sizeof *reply);
    if (!take(&m, d->id, timeout)) {
        mqe2e_enroll_device_free(d->st);
        d->st = NULL;
        return 1;
    }
    last_enroll_reply = m.len;
    int rc = mqe2e_enroll_finish(d->st, reply, &cred, m.data, m.len, af_now_s());
    mail_free(&m);
    mqe2e_enroll_device_free(d->st);
    d->st = NULL;
    if (rc == MQE2E_OK) {
        /* The credential names this device and verifies against the pinned key. */
        mqe2e_credential *v = NULL;
        cr_assert_eq(mqe2e_credential_verify(&v, reply->credential, reply->credential_len,
                                             fx.pin.sign_public, af_now_s()),
                     MQE2E_OK);
        cr_assert_str_eq(mqe2e_credential_client_id(v), d->id);
        cr_assert_eq(memcmp(mqe2e_credential_dh_public(v), d->dh_pk, 32), 0);
        d->serial = mqe2e_credential_serial(v);
        mqe2e_credential_free(v);
        for (size_t i = 0; i < reply->n_bundles; i++)
            if (reply->bundles[i].epoch > d->epoch) d->epoch = reply->bundles[i].epoch;
    }
    mqe2e_credential_free(cred);
    return rc;
}

static int enroll(device *d, const char *ticket, mqe2e_control_update *reply)
{
    enroll_send(d, ticket, af_now_s(), 0);
    return enroll_recv(d, reply, 10.0);
}

static int hello(device *d, mqe2e_control_update *reply, double timeout)
{
    mqe2e_hello_client *st = NULL;
    uint8_t frame[MQE2E_CONTROL_MAX_FRAME_BYTES];
    size_t len = 0;
    mail m;
    memset(reply, 0, sizeof *reply);
    cr_assert_eq(mqe2e_hello_begin(&st, frame, sizeof frame, &len, PREFIX, d->id, AUTH_ID, d->dh_sk,
                                   fx.pin.dh_public, d->serial),
                 MQE2E_OK);
    last_hello_req = len;
    publish(PREFIX "/authority", frame, len);
    int rc = 1;
    if (take(&m, d->id, timeout)) {
        last_hello_reply = m.len;
        rc = mqe2e_hello_finish(st, reply, m.data, m.len);
        mail_free(&m);
    }
    mqe2e_hello_client_free(st);
    return rc;
}

/* Open the next push for d; returns the lib code, 1 when none arrived. */
static int push_recv(device *d, mqe2e_control_update *push, double timeout)
{
    mail m;
    memset(push, 0, sizeof *push);
    if (!take(&m, d->id, timeout)) return 1;
    last_push = m.len;
    int rc = mqe2e_push_open(push, d->dh_sk, fx.pin.dh_public, PREFIX, AUTH_ID, m.data, m.len,
                             d->last_push);
    mail_free(&m);
    if (rc == MQE2E_OK) {
        d->last_push = push->push_seq;
        for (size_t i = 0; i < push->n_bundles; i++)
            if (push->bundles[i].epoch > d->epoch) d->epoch = push->bundles[i].epoch;
    }
    return rc;
}

static uint32_t bundle_epoch(const mqe2e_control_update *u, const char *group)
{
    uint32_t e = 0;
    for (size_t i = 0; i < u->n_bundles; i++)
        if (strcmp(u->bundles[i].group, group) == 0 && u->bundles[i].epoch > e)
            e = u->bundles[i].epoch;
    return e;
}

/* Tickets printed by `token create`, one per line. */
static size_t split_lines(char *text, char **lines, size_t max)
{
    size_t n = 0;
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l != NULL && n < max;
         l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    return n;
}

static cJSON *status_json(void)
{
    static char out[OUT_MAX];
    const char *a[] = {"status", "--json", NULL};
    cr_assert_eq(op(out, sizeof out, a), 0);
    cJSON *j = cJSON_Parse(out);
    cr_assert_not_null(j, "status output: %s", out);
    return j;
}

static double counter(const char *name)
{
    cJSON *j = status_json();
    cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "counters"), name);
    double v = cJSON_IsNumber(c) ? c->valuedouble : -1;
    cJSON_Delete(j);
    return v;
}

/* ----------------------------------------------------------- tests */

TestSuite(authority, .init = fixture_start, .fini = fixture_stop, .timeout = 300);

Test(authority, enroll_rotate_revoke_restart)
{
    static char out[OUT_MAX];
    char *lines[8];
    mqe2e_control_update r;
    device d[3], thief;

    const char *gc[] = {"group", "create", "--group", "fleet", "--topic", "fleet/#", NULL};
    cr_assert_eq(op(out, sizeof out, gc), 0);
    const char *tc[] = {"token", "create",  "--id",           "dev", "--count", "3", "--group",
                        "fleet", "--grant", "fleet/#:pubsub", NULL};
    cr_assert_eq(op(out, sizeof out, tc), 0);
    cr_assert_eq(split_lines(out, lines, 8), 3);
    char tickets[3][2048];
    for (int i = 0; i < 3; i++)
        snprintf(tickets[i], sizeof tickets[i], "%s", lines[i]);

    /* Three devices enroll: credential verified against the pin, bundle for the group. */
    for (int i = 0; i < 3; i++) {
        char id[32];
        snprintf(id, sizeof id, "dev-%d", i + 1);
        device_new(&d[i], id);
        cr_assert_eq(enroll(&d[i], tickets[i], &r), MQE2E_OK);
        cr_assert_eq(r.status, MQE2E_STATUS_OK);
        cr_assert_eq(bundle_epoch(&r, "fleet"), 1);
        cr_assert_str_eq(r.bundles[0].topic_filter, "fleet/#");
        cr_assert_neq(r.bundles[0].sender_id, 0);
        mqe2e_control_update_wipe(&r);
    }
    fprintf(stderr, "sizes: enroll request %zu B, enroll reply %zu B\n", last_enroll_req,
            last_enroll_reply);

    /* The same ticket again from another device key: refused, nothing handed out. */
    device_new(&thief, "dev-1");
    cr_assert_eq(enroll(&thief, tickets[0], &r), MQE2E_ERR_POLICY);
    cr_assert_eq(r.status, MQE2E_STATUS_TOKEN_USED);
    cr_assert_eq(r.n_bundles, 0);
    cr_assert_null(r.credential);
    mqe2e_control_update_wipe(&r);
    /* The legitimate device retrying after a lost reply is served again. */
    cr_assert_eq(enroll(&d[0], tickets[0], &r), MQE2E_OK);
    mqe2e_control_update_wipe(&r);

    /* Expired token: built with the device clock of the past, refused by the authority. */
    const char *te[] = {"token", "create", "--id", "late", "--ttl", "1", NULL};
    cr_assert_eq(op(out, sizeof out, te), 0);
    out[strcspn(out, "\n")] = '\0';
    device late;
    device_new(&late, "late");
    sleep(2);
    enroll_send(&late, out, af_now_s() - 5, 0);
    cr_assert_eq(enroll_recv(&late, &r, 10.0), MQE2E_ERR_POLICY);
    cr_assert_eq(r.status, MQE2E_STATUS_TOKEN_EXPIRED);
    mqe2e_control_update_wipe(&r);

    /* Wrong token (bad mac): no reply at all, counted. */
    const char *tb[] = {"token", "create", "--id", "mac", NULL};
    cr_assert_eq(op(out, sizeof out, tb), 0);
    out[strcspn(out, "\n")] = '\0';
    char mac_ticket[2048];
    snprintf(mac_ticket, sizeof mac_ticket, "%s", out);
    device mac;
    device_new(&mac, "mac");
    enroll_send(&mac, mac_ticket, af_now_s(), 1);
    cr_assert_eq(enroll_recv(&mac, &r, 1.5), 1, "a bad mac must get no reply");
    mqe2e_enroll_device_free(mac.st);
    mac.st = NULL;
    cr_assert_eq(counter("enroll_bad_mac"), 1);
    /* ... and the token was not burnt: the real holder still enrolls. */
    cr_assert_eq(enroll(&mac, mac_ticket, &r), MQE2E_OK);
    mqe2e_control_update_wipe(&r);

    /* Rotation pushes the new epoch to every member. */
    const char *rot[] = {"group", "rotate", "--group", "fleet", NULL};
    cr_assert_eq(op(out, sizeof out, rot), 0);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(push_recv(&d[i], &r, 10.0), MQE2E_OK, "push to %s", d[i].id);
        cr_assert_eq(bundle_epoch(&r, "fleet"), 2);
        mqe2e_control_update_wipe(&r);
    }
    fprintf(stderr, "sizes: push %zu B\n", last_push);

    /* HELLO hands out the current epoch (and keeps the retired one within grace). */
    cr_assert_eq(hello(&d[1], &r, 10.0), MQE2E_OK);
    cr_assert_eq(r.status, MQE2E_STATUS_OK);
    cr_assert_eq(bundle_epoch(&r, "fleet"), 2);
    cr_assert_geq(r.n_bundles, 2);
    mqe2e_control_update_wipe(&r);
    fprintf(stderr, "sizes: hello request %zu B, hello reply %zu B\n", last_hello_req,
            last_hello_reply);

    /* Revoke dev-3: the two others get epoch 3 by push, dev-3 gets nothing. */
    const char *rv[] = {"revoke", "--id", "dev-3", NULL};
    cr_assert_eq(op(out, sizeof out, rv), 0);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(push_recv(&d[i], &r, 10.0), MQE2E_OK);
        cr_assert_eq(bundle_epoch(&r, "fleet"), 3);
        cr_assert_not_null(r.revocation_list);
        mqe2e_control_update_wipe(&r);
    }
    cr_assert_eq(push_recv(&d[2], &r, 1.5), 1, "the revoked device must get no push");
    cr_assert_eq(hello(&d[2], &r, 10.0), MQE2E_ERR_POLICY);
    cr_assert_eq(r.status, MQE2E_STATUS_REVOKED);
    cr_assert_eq(r.n_bundles, 0);
    mqe2e_control_update_wipe(&r);
    cr_assert_lt(d[2].epoch, 3);

    /* The retained, signed revocation list names dev-3. */
    {
        MQTTClient c;
        MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer;
        cr_assert_eq(MQTTClient_create(&c, tb_broker_uri(&fx.broker), "rl-reader",
                                       MQTTCLIENT_PERSISTENCE_NONE, NULL),
                     MQTTCLIENT_SUCCESS);
        cr_assert_eq(MQTTClient_connect(c, &co), MQTTCLIENT_SUCCESS);
        cr_assert_eq(MQTTClient_subscribe(c, PREFIX "/revocations", 1), MQTTCLIENT_SUCCESS);
        char *topic = NULL;
        int tl = 0;
        MQTTClient_message *m = NULL;
        for (int i = 0; i < 50 && m == NULL; i++)
            MQTTClient_receive(c, &topic, &tl, &m, 100);
        cr_assert_not_null(m, "no retained revocation list");
        mqe2e_revocation_list *l = NULL;
        cr_assert_eq(
            mqe2e_revocation_list_verify(&l, m->payload, (size_t)m->payloadlen, fx.pin.sign_public),
            MQE2E_OK);
        cr_assert(mqe2e_revocation_list_is_revoked(l, "dev-3", 0));
        cr_assert(!mqe2e_revocation_list_is_revoked(l, "dev-1", 0));
        mqe2e_revocation_list_free(l);
        MQTTClient_freeMessage(&m);
        MQTTClient_free(topic);
        MQTTClient_disconnect(c, 500);
        MQTTClient_destroy(&c);
    }

    /* kill -9 in the middle of operations, then restart. */
    for (int i = 0; i < 2; i++) {
        mqe2e_hello_client *st = NULL;
        uint8_t frame[MQE2E_CONTROL_MAX_FRAME_BYTES];
        size_t len = 0;
        cr_assert_eq(mqe2e_hello_begin(&st, frame, sizeof frame, &len, PREFIX, d[i].id, AUTH_ID,
                                       d[i].dh_sk, fx.pin.dh_public, d[i].serial),
                     MQE2E_OK);
        publish(PREFIX "/authority", frame, len);
        mqe2e_hello_client_free(st);
    }
    const char *tk[] = {"token", "create", "--id", "burst", "--count", "20", NULL};
    pid_t busy = fork();
    if (busy == 0) {
        fx.op_wait = "3";
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(devnull, 2);
        (void)op(NULL, 0, tk);
        _exit(0);
    }
    af_sleep_ms(100);
    authority_stop(SIGKILL);
    /* A hello sent while the authority is down stays queued in its session. */
    {
        mqe2e_hello_client *st = NULL;
        uint8_t frame[MQE2E_CONTROL_MAX_FRAME_BYTES];
        size_t len = 0;
        cr_assert_eq(mqe2e_hello_begin(&st, frame, sizeof frame, &len, PREFIX, d[1].id, AUTH_ID,
                                       d[1].dh_sk, fx.pin.dh_public, d[1].serial),
                     MQE2E_OK);
        publish(PREFIX "/authority", frame, len);
        authority_start();
        mail m;
        int got = 0;
        double end = af_mono() + 10.0;
        while (!got && af_mono() < end) {
            if (!take(&m, d[1].id, 1.0)) continue;
            mqe2e_control_update u;
            if (mqe2e_hello_finish(st, &u, m.data, m.len) == MQE2E_OK) {
                got = 1;
                cr_assert_eq(bundle_epoch(&u, "fleet"), 3);
                mqe2e_control_update_wipe(&u);
            }
            mail_free(&m);
        }
        mqe2e_hello_client_free(st);
        cr_assert(got, "the queued hello was not answered after the restart");
    }
    waitpid(busy, NULL, 0);
    /* Drain replies to the hellos sent before the kill. */
    for (int i = 0; i < 2; i++) {
        mail m;
        while (take(&m, d[i].id, 0.5))
            mail_free(&m);
    }
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(hello(&d[i], &r, 10.0), MQE2E_OK, "hello of %s after restart", d[i].id);
        cr_assert_eq(bundle_epoch(&r, "fleet"), 3);
        mqe2e_control_update_wipe(&r);
    }
    cr_assert_eq(hello(&d[2], &r, 10.0), MQE2E_ERR_POLICY);
    cr_assert_eq(r.status, MQE2E_STATUS_REVOKED);
    mqe2e_control_update_wipe(&r);
    device_new(&thief, "dev-2");
    cr_assert_eq(enroll(&thief, tickets[1], &r), MQE2E_ERR_POLICY);
    cr_assert_eq(r.status, MQE2E_STATUS_TOKEN_USED);
    mqe2e_control_update_wipe(&r);
    cJSON *j = status_json();
    cJSON *groups = cJSON_GetObjectItem(j, "groups");
    cr_assert_eq(cJSON_GetArraySize(groups), 1);
    cr_assert_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(groups, 0), "epoch")->valueint, 3);
    cr_assert_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(groups, 0), "members")->valueint, 2);
    cr_assert_eq(cJSON_GetObjectItem(j, "clients_revoked")->valueint, 1);
    cJSON_Delete(j);

    /* Ungrant: the member leaves (told by push), the other moves to epoch 4. */
    const char *ug[] = {"group", "ungrant", "--group", "fleet", "--id", "dev-2", NULL};
    cr_assert_eq(op(out, sizeof out, ug), 0);
    cr_assert_eq(push_recv(&d[1], &r, 10.0), MQE2E_OK);
    cr_assert_eq(r.n_removed_groups, 1);
    cr_assert_str_eq(r.removed_groups[0].name, "fleet");
    mqe2e_control_update_wipe(&r);
    cr_assert_eq(push_recv(&d[0], &r, 10.0), MQE2E_OK);
    cr_assert_eq(bundle_epoch(&r, "fleet"), 4);
    mqe2e_control_update_wipe(&r);
    const char *ls[] = {"list", "clients", NULL};
    cr_assert_eq(op(out, sizeof out, ls), 0);
    cr_assert_not_null(strstr(out, "dev-3\tdevice\trevoked"));
}

/* Sign with a key the authority does not know. */
static int wrong_sign(void *ctx, uint8_t sig[64], const uint8_t *msg, size_t len)
{
    (void)ctx;
    uint8_t pk[32], sk[64];
    crypto_sign_keypair(pk, sk);
    crypto_sign_detached(sig, NULL, msg, len, sk);
    sodium_memzero(sk, sizeof sk);
    return 0;
}

static int ks_sign(void *ctx, uint8_t sig[64], const uint8_t *msg, size_t len)
{
    return mqe2e_keystore_sign(ctx, sig, msg, len) == MQE2E_OK ? 0 : -1;
}

/* Send a request built here; returns 1 and the reply if one came. */
static int raw_request(mqe2e_keystore *ks, const char *command, uint64_t issued_at,
                       mqe2e_sign_fn sign, const uint8_t *nonce, uint8_t *frame_copy,
                       size_t *frame_copy_len, mqe2e_operator_reply *reply, double timeout)
{
    mqe2e_operator_request req;
    mqe2e_operator_client *st = NULL;
    uint8_t frame[MQE2E_CONTROL_MAX_FRAME_BYTES], dh[32];
    size_t len = 0;
    memset(&req, 0, sizeof req);
    snprintf(req.operator_name, sizeof req.operator_name, "op1");
    snprintf(req.command, sizeof req.command, "%s", command);
    if (nonce != NULL)
        memcpy(req.nonce, nonce, sizeof req.nonce);
    else
        randombytes_buf(req.nonce, sizeof req.nonce);
    req.issued_at = issued_at;
    cr_assert_eq(mqe2e_keystore_dh_secret(ks, dh), MQE2E_OK);
    cr_assert_eq(
        mqe2e_operator_begin(&st, frame, sizeof frame, &len, &fx.pin, "op1", dh, &req, sign, ks),
        MQE2E_OK);
    if (frame_copy != NULL) {
        memcpy(frame_copy, frame, len);
        *frame_copy_len = len;
    }
    publish(PREFIX "/authority", frame, len);
    mail m;
    int got = 0;
    double end = af_mono() + timeout;
    while (!got && af_mono() < end) {
        if (!take(&m, "op1", 0.2)) continue;
        if (mqe2e_operator_finish(st, reply, m.data, m.len) == MQE2E_OK) {
            got = 1;
            fprintf(stderr, "sizes: operator request %zu B, operator reply %zu B\n", len, m.len);
        }
        mail_free(&m);
    }
    mqe2e_operator_client_free(st);
    return got;
}

Test(authority, forged_operator_requests)
{
    mqe2e_storage stg;
    mqe2e_keystore *ks = NULL;
    uint8_t key[32];
    mqe2e_operator_reply reply;
    uint8_t frame[MQE2E_CONTROL_MAX_FRAME_BYTES];
    size_t frame_len = 0;

    /* The test reads the operator keystore itself; the CLI holds no lock now. */
    cr_assert_eq(mqe2e_storage_read_key_file(key, fx.keyfile), MQE2E_OK);
    cr_assert_eq(mqe2e_storage_file_key(&stg, fx.op_ks, key), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_open(&ks, stg), MQE2E_OK);

    /* A genuine request works. */
    cr_assert_eq(raw_request(ks, "status", af_now_s(), ks_sign, NULL, frame, &frame_len, &reply, 10.0),
                 1);
    cr_assert_eq(reply.status, MQE2E_OPSTATUS_OK);
    cr_assert_not_null(strstr(reply.output, AUTH_ID));
    mqe2e_operator_reply_clear(&reply);

    /* Bad signature: no reply, counted. */
    cr_assert_eq(raw_request(ks, "status", af_now_s(), wrong_sign, NULL, NULL, NULL, &reply, 1.5), 0);
    /* Replayed frame: refused (nonce seen), counted. */
    publish(PREFIX "/authority", frame, frame_len);
    /* Same nonce in a new handshake: refused too. */
    uint8_t nonce[16];
    randombytes_buf(nonce, sizeof nonce);
    cr_assert_eq(raw_request(ks, "status", af_now_s(), ks_sign, nonce, NULL, NULL, &reply, 10.0), 1);
    cr_assert_eq(reply.status, MQE2E_OPSTATUS_OK);
    mqe2e_operator_reply_clear(&reply);
    cr_assert_eq(raw_request(ks, "status", af_now_s(), ks_sign, nonce, NULL, NULL, &reply, 10.0), 1);
    cr_assert_eq(reply.status, MQE2E_OPSTATUS_REFUSED);
    mqe2e_operator_reply_clear(&reply);
    /* Stale request: refused with a reply (the signature verified). */
    cr_assert_eq(raw_request(ks, "status", af_now_s() - 1000, ks_sign, NULL, NULL, NULL, &reply, 10.0),
                 1);
    cr_assert_eq(reply.status, MQE2E_OPSTATUS_REFUSED);
    mqe2e_operator_reply_clear(&reply);
    /* Unknown command: a verified, answered bad request. */
    cr_assert_eq(raw_request(ks, "format-disk", af_now_s(), ks_sign, NULL, NULL, NULL, &reply, 10.0),
                 1);
    cr_assert_eq(reply.status, MQE2E_OPSTATUS_BAD_REQUEST);
    mqe2e_operator_reply_clear(&reply);
    mqe2e_keystore_close(ks);

    cr_assert_eq(counter("operator_bad_signature"), 1);
    cr_assert_eq(counter("operator_replay"), 2);
    cr_assert_eq(counter("operator_stale"), 1);
    /* An unregistered operator keystore gets no answer (CLI times out: exit 4). */
    char out[4096];
    char other[512];
    snprintf(other, sizeof other, "%s/other.ks", fx.dir);
    const char *kg[] = {"keygen", "-K", other, "--key-file", fx.keyfile, "--id", "intruder", NULL};
    cr_assert_eq(af_run(out, sizeof out, kg), 0);
    const char *st[] = {"status", "-K",          other,       "--key-file", fx.keyfile, "-p",
                        fx.port,  "--authority", fx.pin_text, "-W",         "2",        NULL};
    cr_assert_eq(af_run(out, sizeof out, st), 4);
    cr_assert_eq(counter("operator_unknown"), 1);
}

Test(authority, rekey_1000_members, .timeout = 600)
{
    enum { N = 1000 };
    static char out[OUT_MAX];
    static char *lines[N + 1];
    static device devs[N];
    mqe2e_control_update r;

    const char *gc[] = {"group", "create", "--group", "big", "--topic", "big/#", NULL};
    cr_assert_eq(op(out, sizeof out, gc), 0);
    const char *tc[] = {"token", "create", "--id", "m", "--count", "1000", "--group", "big", NULL};
    cr_assert_eq(op(out, sizeof out, tc), 0);
    cr_assert_eq(split_lines(out, lines, N + 1), N);
    double t0 = af_mono();
    for (int i = 0; i < N; i++) {
        char id[32];
        snprintf(id, sizeof id, "m-%d", i + 1);
        device_new(&devs[i], id);
        enroll_send(&devs[i], lines[i], af_now_s(), 0);
    }
    for (int i = 0; i < N; i++) {
        cr_assert_eq(enroll_recv(&devs[i], &r, 60.0), MQE2E_OK, "enroll %d", i);
        mqe2e_control_update_wipe(&r);
    }
    fprintf(stderr, "1000 enrollments in %.2f s\n", af_mono() - t0);

    const char *rot[] = {"group", "rotate", "--group", "big", NULL};
    double t1 = af_mono();
    cr_assert_eq(op(out, sizeof out, rot), 0);
    size_t got = 0;
    double end = af_mono() + 60.0;
    while (got < N && af_mono() < end) {
        mb_pump(&box, 50);
        got = 0;
        for (size_t i = 0; i < box.n; i++)
            if (strncmp(box.v[i].topic, PREFIX "/client/m-", strlen(PREFIX "/client/m-")) == 0)
                got++;
    }
    double t2 = af_mono();
    cr_assert_eq(got, N);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(push_recv(&devs[i], &r, 1.0), MQE2E_OK);
        cr_assert_eq(bundle_epoch(&r, "big"), 2);
        mqe2e_control_update_wipe(&r);
    }
    size_t len = 0;
    char *log = tu_read_file(fx.log, &len);
    const char *line = log != NULL ? strstr(log, "group big rotated") : NULL;
    fprintf(stderr,
            "1000-member rekey: %.0f ms from the operator command to the last push received "
            "(CLI start-up, keystore open and the operator round trip included)\n",
            (t2 - t1) * 1e3);
    if (line != NULL) fprintf(stderr, "authority log: %.*s\n", (int)strcspn(line, "\n"), line);
    free(log);
}

Test(authority, rotation_by_message_count)
{
    static char out[OUT_MAX];
    mqe2e_control_update r;
    device d;

    const char *gc[] = {"group",   "create",  "--group",           "meter",
                        "--topic", "meter/#", "--rotate-messages", "3",
                        NULL};
    cr_assert_eq(op(out, sizeof out, gc), 0);
    const char *tc[] = {"token", "create", "--id", "meter-1", "--group", "meter", NULL};
    cr_assert_eq(op(out, sizeof out, tc), 0);
    out[strcspn(out, "\n")] = '\0';
    device_new(&d, "meter-1");
    cr_assert_eq(enroll(&d, out, &r), MQE2E_OK);
    cr_assert_eq(r.n_bundles, 1);
    mqe2e_key_bundle b = r.bundles[0];
    mqe2e_control_update_wipe(&r);
    cr_assert_eq(b.epoch, 1);

    mqe2e_sender_key k;
    cr_assert_eq(mqe2e_sender_key_derive(&k, b.secret, "meter", b.epoch, b.sender_id), MQE2E_OK);
    for (uint64_t seq = 1; seq <= 3; seq++) {
        uint8_t env[256];
        size_t len = 0;
        mqe2e_envelope_header h = {MQE2E_MODE_GROUP, b.epoch, b.sender_id, seq, 0U};
        cr_assert_eq(mqe2e_envelope_seal(env, sizeof env, &len, &k, "meter/1/kwh", "meter", &h,
                                         (const uint8_t *)"42", 2),
                     MQE2E_OK);
        /* Noise on the same topic is not counted. */
        publish("meter/1/kwh", (const uint8_t *)"plain", 5);
        if (seq < 3) cr_assert_eq(push_recv(&d, &r, 0.5), 1, "rotated too early");
        publish("meter/1/kwh", env, len);
    }
    mqe2e_sender_key_wipe(&k);
    sodium_memzero(&b, sizeof b);
    cr_assert_eq(push_recv(&d, &r, 10.0), MQE2E_OK, "no rotation after 3 envelopes");
    cr_assert_eq(bundle_epoch(&r, "meter"), 2);
    mqe2e_control_update_wipe(&r);
}

/* ------------------------------------------ revocation is final (issue 11) */

/* Sum of every enroll_* counter but enroll_commits: each ENROLL frame the
 * authority handled ends in exactly one of them. */
static double enroll_outcomes(void)
{
    static const char *const names[] = {
        "enroll_ok",           "enroll_bad_frame",     "enroll_unknown_token", "enroll_bad_mac",
        "enroll_token_used",   "enroll_token_expired", "enroll_wrong_client",  "enroll_failed",
        "enroll_rate_limited", "enroll_revoked",       "enroll_id_active"};
    cJSON *j = status_json();
    cJSON *c = cJSON_GetObjectItem(j, "counters");
    double sum = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        cJSON *v = cJSON_GetObjectItem(c, names[i]);
        if (cJSON_IsNumber(v)) sum += v->valuedouble; /* absent: never counted */
    }
    cJSON_Delete(j);
    return sum;
}

/* Wait until the authority has accounted for `more` further ENROLL frames. */
static void wait_enroll_outcomes(double before, double more)
{
    double end = af_mono() + 20.0;
    while (enroll_outcomes() < before + more) {
        cr_assert_lt(af_mono(), end, "the authority did not account for the ENROLL frames");
        af_sleep_ms(100);
    }
}

static const char *client_status(const char *id)
{
    static char out[OUT_MAX];
    static char st[32];
    const char *ls[] = {"list", "clients", "--json", NULL};
    cr_assert_eq(op(out, sizeof out, ls), 0);
    cJSON *j = cJSON_Parse(out);
    cr_assert_not_null(j, "list output: %s", out);
    st[0] = '\0';
    cJSON *e;
    cJSON_ArrayForEach(e, j)
    {
        cJSON *cid = cJSON_GetObjectItem(e, "client_id");
        cJSON *s = cJSON_GetObjectItem(e, "status");
        if (cJSON_IsString(cid) && strcmp(cid->valuestring, id) == 0 && cJSON_IsString(s))
            snprintf(st, sizeof st, "%s", s->valuestring);
    }
    cJSON_Delete(j);
    return st;
}

static void ticket_for(char *dst, size_t cap, const char *const *args)
{
    static char out[OUT_MAX];
    cr_assert_eq(op(out, sizeof out, args), 0);
    out[strcspn(out, "\n")] = '\0';
    cr_assert_eq(strncmp(out, "mqe2e1-", 7), 0, "no ticket: %s", out);
    snprintf(dst, cap, "%s", out);
}

/* Item 1: the used ticket after `revoke`, the same device keys, and the
 * captured ENROLL step 1 replayed by the broker. Before: enrolled again
 * (exit 0, client active, group member, new epoch readable). */
Test(authority, revoked_device_never_enrolls_again)
{
    static char out[OUT_MAX];
    char t1[2048], t2[2048];
    uint8_t captured[MQE2E_CONTROL_MAX_FRAME_BYTES];
    size_t captured_len;
    mqe2e_control_update r;
    device hr1, hr2;

    const char *gc[] = {"group", "create", "--group", "health", "--topic", "health/#", NULL};
    cr_assert_eq(op(out, sizeof out, gc), 0);
    const char *k1[] = {"token",   "create", "--id",    "hr-1",
                        "--group", "health", "--grant", "health/hr-1/#:pub",
                        NULL};
    const char *k2[] = {"token",   "create", "--id",    "hr-2",
                        "--group", "health", "--grant", "health/hr-2/#:pub",
                        NULL};
    ticket_for(t1, sizeof t1, k1);
    ticket_for(t2, sizeof t2, k2);
    device_new(&hr1, "hr-1");
    device_new(&hr2, "hr-2");
    cr_assert_eq(enroll(&hr1, t1, &r), MQE2E_OK);
    mqe2e_control_update_wipe(&r);
    cr_assert_eq(enroll(&hr2, t2, &r), MQE2E_OK);
    mqe2e_control_update_wipe(&r);
    captured_len = last_enroll_req;
    memcpy(captured, last_enroll_frame, captured_len);

    const char *rv[] = {"revoke", "--id", "hr-2", NULL};
    cr_assert_eq(op(out, sizeof out, rv), 0);
    cr_assert_eq(push_recv(&hr1, &r, 10.0), MQE2E_OK);
    cr_assert_eq(bundle_epoch(&r, "health"), 2);
    mqe2e_control_update_wipe(&r);
    double ok0 = counter("enroll_ok");

    /* 1. The thief re-runs enroll with the used ticket from the same keystore. */
    double n0 = enroll_outcomes();
    enroll_send(&hr2, t2, af_now_s(), 0);
    wait_enroll_outcomes(n0, 1);
    int rc = enroll_recv(&hr2, &r, 1.0);
    cr_assert_neq(rc, MQE2E_OK, "a revoked device enrolled again with its used ticket");
    cr_assert_null(r.credential);
    cr_assert_eq(r.n_bundles, 0);
    mqe2e_control_update_wipe(&r);

    /* 2. The broker replays the captured ENROLL step 1, three times. */
    n0 = enroll_outcomes();
    for (int i = 0; i < 3; i++)
        publish(PREFIX "/authority", captured, captured_len);
    wait_enroll_outcomes(n0, 3);

    /* 3. A new ticket for the revoked id, plain or --replace: refused. */
    const char *k3[] = {"token", "create", "--id", "hr-2", "--group", "health", NULL};
    cr_assert_neq(op(out, sizeof out, k3), 0, "a ticket was issued for a revoked id");
    cr_assert_null(strstr(out, "mqe2e1-"));
    const char *k4[] = {"token", "create", "--id", "hr-2", "--replace", NULL};
    cr_assert_neq(op(out, sizeof out, k4), 0, "a --replace ticket was issued for a revoked id");
    cr_assert_null(strstr(out, "mqe2e1-"));

    /* Nothing was accepted: no enrollment, still revoked, no key. */
    cr_assert_eq(counter("enroll_ok"), ok0);
    cr_assert_str_eq(client_status("hr-2"), "revoked");
    cr_assert_eq(hello(&hr2, &r, 10.0), MQE2E_ERR_POLICY);
    cr_assert_eq(r.status, MQE2E_STATUS_REVOKED);
    cr_assert_eq(r.n_bundles, 0);
    mqe2e_control_update_wipe(&r);
    cr_assert_eq(push_recv(&hr2, &r, 0.5), 1, "the revoked device got a push");
    cr_assert_lt(hr2.epoch, 2);
    cJSON *j = status_json();
    cJSON *groups = cJSON_GetObjectItem(j, "groups");
    cr_assert_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(groups, 0), "members")->valueint, 1);
    cr_assert_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(groups, 0), "epoch")->valueint, 2);
    cJSON_Delete(j);
}

/* Item 2: the used ticket with the device's public Ed25519 key and another
 * X25519 key. Before: enrolled (credential, every epoch in grace), even past
 * the ticket's expiry. Also: a lost-reply retry gets the same serial, and a
 * retry after expiry gets nothing. */
Test(authority, used_ticket_cannot_hijack_the_device)
{
    static char out[OUT_MAX];
    char t[2048], late_t[2048];
    mqe2e_control_update r;
    device dev, thief;

    const char *gc[] = {"group", "create", "--group", "fleet", "--topic", "fleet/#", NULL};
    cr_assert_eq(op(out, sizeof out, gc), 0);
    const char *k[] = {"token", "create", "--id", "dev", "--group", "fleet", NULL};
    ticket_for(t, sizeof t, k);
    device_new(&dev, "dev");
    cr_assert_eq(enroll(&dev, t, &r), MQE2E_OK);
    mqe2e_control_update_wipe(&r);
    uint64_t serial = dev.serial;

    /* The thief knows the ticket and the device's (public) signing key. */
    device_new(&thief, "dev");
    memcpy(thief.sign_pk, dev.sign_pk, 32);
    cr_assert_eq(enroll(&thief, t, &r), MQE2E_ERR_POLICY);
    cr_assert_eq(r.status, MQE2E_STATUS_TOKEN_USED);
    cr_assert_null(r.credential);
    cr_assert_eq(r.n_bundles, 0);
    mqe2e_control_update_wipe(&r);
    cr_assert_eq(thief.serial, 0);

    /* The device's own retry (its reply was lost): the same credential serial. */
    cr_assert_eq(enroll(&dev, t, &r), MQE2E_OK);
    cr_assert_eq(dev.serial, serial, "a retry minted another credential");
    mqe2e_control_update_wipe(&r);
    cr_assert_eq(counter("enroll_retries"), 1);

    /* The device still owns its id: HELLO answered with its keys. */
    cr_assert_eq(hello(&dev, &r, 10.0), MQE2E_OK);
    cr_assert_eq(r.status, MQE2E_STATUS_OK);
    mqe2e_control_update_wipe(&r);

    /* A used ticket past its expiry: even the same keys get nothing. */
    const char *kl[] = {"token", "create", "--id", "late", "--ttl", "2", NULL};
    ticket_for(late_t, sizeof late_t, kl);
    device late;
    device_new(&late, "late");
    cr_assert_eq(enroll(&late, late_t, &r), MQE2E_OK);
    mqe2e_control_update_wipe(&r);
    uint64_t deadline = af_now_s() + 3;
    while (af_now_s() < deadline)
        af_sleep_ms(200); /* the ticket's lifetime, not a synchronisation */
    enroll_send(&late, late_t, af_now_s() - 10, 0);
    cr_assert_eq(enroll_recv(&late, &r, 10.0), MQE2E_ERR_POLICY);
    cr_assert_eq(r.status, MQE2E_STATUS_TOKEN_EXPIRED);
    cr_assert_null(r.credential);
    mqe2e_control_update_wipe(&r);
}

/* Item 3: a second device under an active id. Before: both enrolled, no
 * rotation, the new device's messages dropped as replay. Now: a plain ticket
 * is refused (at creation, and at enrollment if it predates the first
 * device); with --replace the old credentials are revoked, the group
 * rotates, and the old device gets nothing more. */
Test(authority, replacing_a_device_is_explicit)
{
    static char out[OUT_MAX];
    char ta[2048], tdup[2048], tp[2048], trep[2048];
    mqe2e_control_update r;
    device a, a2, b, peer;

    const char *gc[] = {"group", "create", "--group", "fleet", "--topic", "fleet/#", NULL};
    cr_assert_eq(op(out, sizeof out, gc), 0);
    const char *ka[] = {"token", "create", "--id", "dev-a", "--group", "fleet", NULL};
    const char *kp[] = {"token", "create", "--id", "peer", "--group", "fleet", NULL};
    ticket_for(ta, sizeof ta, ka);
    ticket_for(tdup, sizeof tdup, ka); /* two tickets before the id is enrolled */
    ticket_for(tp, sizeof tp, kp);
    device_new(&a, "dev-a");
    device_new(&peer, "peer");
    cr_assert_eq(enroll(&a, ta, &r), MQE2E_OK);
    mqe2e_control_update_wipe(&r);
    cr_assert_eq(enroll(&peer, tp, &r), MQE2E_OK);
    mqe2e_control_update_wipe(&r);
    cr_assert_eq(a.epoch, 1);

    /* The second early ticket on another device: refused, id active. */
    device_new(&a2, "dev-a");
    cr_assert_eq(enroll(&a2, tdup, &r), MQE2E_ERR_POLICY);
    cr_assert_eq(r.status, MQE2E_STATUS_ID_ACTIVE);
    cr_assert_null(r.credential);
    mqe2e_control_update_wipe(&r);
    cr_assert_eq(counter("enroll_id_active"), 1);

    /* A plain ticket for the active id: refused, no ticket printed. */
    cr_assert_neq(op(out, sizeof out, ka), 0, "a plain ticket was issued for an active id");
    cr_assert_null(strstr(out, "mqe2e1-"));

    /* --replace: the new device takes over. */
    const char *kr[] = {"token", "create", "--id", "dev-a", "--group", "fleet", "--replace", NULL};
    ticket_for(trep, sizeof trep, kr);
    device_new(&b, "dev-a");
    cr_assert_eq(enroll(&b, trep, &r), MQE2E_OK);
    cr_assert_eq(bundle_epoch(&r, "fleet"), 2, "the replacement must start on a fresh epoch");
    for (size_t i = 0; i < r.n_bundles; i++)
        cr_assert_geq(r.bundles[i].epoch, 2, "the replacement got an epoch the old device has");
    mqe2e_control_update_wipe(&r);
    cr_assert_gt(b.serial, a.serial);

    /* The remaining member moves to epoch 2 with a list revoking the old
     * device's credentials, not the new one's. */
    cr_assert_eq(push_recv(&peer, &r, 10.0), MQE2E_OK);
    cr_assert_eq(bundle_epoch(&r, "fleet"), 2);
    cr_assert_not_null(r.revocation_list);
    mqe2e_revocation_list *l = NULL;
    cr_assert_eq(mqe2e_revocation_list_verify(&l, r.revocation_list, r.revocation_list_len,
                                              fx.pin.sign_public),
                 MQE2E_OK);
    cr_assert(mqe2e_revocation_list_is_revoked(l, "dev-a", a.serial));
    cr_assert_not(mqe2e_revocation_list_is_revoked(l, "dev-a", b.serial));
    cr_assert_not(mqe2e_revocation_list_client_revoked(l, "dev-a"));
    mqe2e_revocation_list_free(l);
    mqe2e_control_update_wipe(&r);

    /* The old device: no HELLO answer with keys, no new epoch. */
    cr_assert_neq(hello(&a, &r, 2.0), MQE2E_OK);
    cr_assert_eq(r.n_bundles, 0);
    mqe2e_control_update_wipe(&r);
    cr_assert_eq(a.epoch, 1);
    cr_assert_eq(hello(&b, &r, 10.0), MQE2E_OK);
    cr_assert_eq(bundle_epoch(&r, "fleet"), 2);
    mqe2e_control_update_wipe(&r);
    cr_assert_str_eq(client_status("dev-a"), "active");
    cr_assert_eq(counter("replacements"), 1);
}

/* ------------------------------------------ freshness (issue 11, item 4) */

/* A raw subscriber on the data topics: what the broker hands out. */
static MQTTClient spy_start(const char *filter)
{
    MQTTClient c;
    MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer;
    cr_assert_eq(
        MQTTClient_create(&c, tb_broker_uri(&fx.broker), "spy", MQTTCLIENT_PERSISTENCE_NONE, NULL),
        MQTTCLIENT_SUCCESS);
    cr_assert_eq(MQTTClient_connect(c, &co), MQTTCLIENT_SUCCESS);
    cr_assert_eq(MQTTClient_subscribe(c, filter, 1), MQTTCLIENT_SUCCESS);
    return c;
}

/* Epoch of the next envelope the spy sees, 0 if none within the timeout. */
static uint32_t spy_epoch(MQTTClient c, unsigned long timeout_ms)
{
    char *topic = NULL;
    int tl = 0;
    MQTTClient_message *m = NULL;
    uint32_t epoch = 0;
    if (MQTTClient_receive(c, &topic, &tl, &m, timeout_ms) == MQTTCLIENT_SUCCESS && m != NULL) {
        mqe2e_envelope_view v;
        cr_assert_eq(mqe2e_envelope_parse(&v, m->payload, (size_t)m->payloadlen), MQE2E_OK);
        epoch = v.header.epoch;
    }
    if (m != NULL) MQTTClient_freeMessage(&m);
    if (topic != NULL) MQTTClient_free(topic);
    return epoch;
}

static int cli_pub(const char *ks, const char *message)
{
    const char *a[] = {"pub",
                       "-K",
                       ks,
                       "--key-file",
                       fx.keyfile,
                       "-h",
                       "127.0.0.1",
                       "-p",
                       fx.port,
                       "-t",
                       "health/hr-1/heartrate",
                       "-m",
                       message,
                       "-q",
                       "1",
                       NULL};
    return af_run(NULL, 0, a);
}

/* Item 4: a sender that missed the revocation's push (offline, clean
 * session) runs a one-shot `pub`. Before: sealed at once under the epoch the
 * revoked device holds. Now: it waits for its HELLO reply and seals under
 * the new epoch; with the authority silent it publishes nothing and says so. */
Test(authority, one_shot_pub_waits_for_the_authority)
{
    static char out[OUT_MAX];
    char t1[2048], t2[2048], ks[600], tf[600];
    mqe2e_control_update r;
    device hr2;

    const char *gc[] = {"group", "create", "--group", "health", "--topic", "health/#", NULL};
    cr_assert_eq(op(out, sizeof out, gc), 0);
    const char *k1[] = {"token", "create", "--id", "hr-1", "--group", "health", NULL};
    const char *k2[] = {"token", "create", "--id", "hr-2", "--group", "health", NULL};
    ticket_for(t1, sizeof t1, k1);
    ticket_for(t2, sizeof t2, k2);
    snprintf(ks, sizeof ks, "%s/hr-1.ks", fx.dir);
    snprintf(tf, sizeof tf, "%s/hr-1.ticket", fx.dir);
    FILE *f = fopen(tf, "w");
    cr_assert_not_null(f);
    fprintf(f, "%s\n", t1);
    fclose(f);
    const char *en[] = {"enroll", "-K", ks,          "--key-file", fx.keyfile, "--ticket-file",
                        tf,       "-h", "127.0.0.1", "-p",         fx.port,    NULL};
    cr_assert_eq(af_run(out, sizeof out, en), 0, "enroll: %s", out);
    unlink(tf);
    device_new(&hr2, "hr-2");
    cr_assert_eq(enroll(&hr2, t2, &r), MQE2E_OK);
    mqe2e_control_update_wipe(&r);
    cr_assert_eq(hr2.epoch, 1);

    /* hr-2 revoked while hr-1 is offline: hr-1's push is lost (clean session). */
    const char *rv[] = {"revoke", "--id", "hr-2", NULL};
    cr_assert_eq(op(out, sizeof out, rv), 0);
    cr_assert_str_eq(client_status("hr-2"), "revoked");

    MQTTClient spy = spy_start("health/#");
    cr_assert_eq(cli_pub(ks, "72"), 0);
    uint32_t e = spy_epoch(spy, 10000);
    cr_assert_neq(e, 0, "nothing was published");
    cr_assert_gt(e, hr2.epoch, "sealed under epoch %u, which the revoked device holds", e);

    /* The authority silent (stopped): nothing goes out, a clear error. */
    kill(fx.auth_pid, SIGSTOP);
    int rc = cli_pub(ks, "73");
    kill(fx.auth_pid, SIGCONT);
    cr_assert_eq(rc, 3, "pub without an authority answer must fail (exit 3), got %d", rc);
    cr_assert_eq(spy_epoch(spy, 500), 0, "a message went out without a HELLO reply");
    MQTTClient_disconnect(spy, 500);
    MQTTClient_destroy(&spy);
}

/* Item 4 (second half): a new member reads only the current epoch, unless
 * the operator grants it the history. Before: every retired epoch in grace
 * was handed to a newcomer (traffic from before it joined was readable). */
Test(authority, new_members_get_history_only_when_asked)
{
    static char out[OUT_MAX];
    char ta[2048], tb[2048];
    mqe2e_control_update r;
    device a, b;

    const char *gc[] = {"group", "create", "--group", "fleet", "--topic", "fleet/#", NULL};
    cr_assert_eq(op(out, sizeof out, gc), 0);
    const char *rot[] = {"group", "rotate", "--group", "fleet", NULL};
    cr_assert_eq(op(out, sizeof out, rot), 0);
    cr_assert_eq(op(out, sizeof out, rot), 0); /* epochs 1 and 2 retired, 3 current */
    const char *ka[] = {"token", "create", "--id", "late-a", NULL};
    const char *kb[] = {"token", "create", "--id", "late-b", NULL};
    ticket_for(ta, sizeof ta, ka);
    ticket_for(tb, sizeof tb, kb);
    device_new(&a, "late-a");
    device_new(&b, "late-b");
    cr_assert_eq(enroll(&a, ta, &r), MQE2E_OK);
    mqe2e_control_update_wipe(&r);
    cr_assert_eq(enroll(&b, tb, &r), MQE2E_OK);
    mqe2e_control_update_wipe(&r);

    const char *ga[] = {"group", "grant", "--group", "fleet", "--id", "late-a", NULL};
    cr_assert_eq(op(out, sizeof out, ga), 0, "%s", out);
    cr_assert_eq(push_recv(&a, &r, 10.0), MQE2E_OK);
    cr_assert_eq(r.n_bundles, 1, "a new member got %zu epochs", r.n_bundles);
    cr_assert_eq(r.bundles[0].epoch, 3);
    mqe2e_control_update_wipe(&r);
    cr_assert_eq(hello(&a, &r, 10.0), MQE2E_OK);
    cr_assert_eq(r.n_bundles, 1, "HELLO handed a new member %zu epochs", r.n_bundles);
    mqe2e_control_update_wipe(&r);

    const char *gb[] = {"group", "grant", "--group", "fleet", "--id", "late-b", "--history", NULL};
    cr_assert_eq(op(out, sizeof out, gb), 0, "%s", out);
    cr_assert_eq(push_recv(&b, &r, 10.0), MQE2E_OK);
    cr_assert_eq(r.n_bundles, 3, "with --history: %zu epochs", r.n_bundles);
    mqe2e_control_update_wipe(&r);
}

/* ------------------------------------------------------------- key trees */

/* A member's view of a key-tree group: its tree state and the keystore
 * (memory) that holds the epochs it derived, with a protector over it. */
typedef struct tree_dev {
    device d;
    mqe2e_keytree_member *m;
    uint32_t base, sender_id;
    mqe2e_keystore *ks;
    mqe2e_policy *pol;
    mqe2e_protector *pr;
} tree_dev;

/* @p n devices "<prefix>-1".."<prefix>-n" enrolled through the authority
 * with one `token create --count n` (naming @p group when not NULL). */
static void tree_devs_enrolled(tree_dev *t, int n, const char *prefix, const char *group)
{
    static char out[OUT_MAX];
    char *lines[33];
    char count[16];
    mqe2e_control_update r;
    cr_assert_leq(n, 32);
    snprintf(count, sizeof count, "%d", n);
    const char *tc[] = {"token", "create", "--id", prefix, "--count", count,
                        group != NULL ? "--group" : NULL, group, NULL};
    cr_assert_eq(op(out, sizeof out, tc), 0, "%s", out);
    cr_assert_eq(split_lines(out, lines, n + 1), n);
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "%s-%d", prefix, i + 1);
        device_new(&t[i].d, id);
        cr_assert_eq(enroll(&t[i].d, lines[i], &r), MQE2E_OK, "%s enrolls", id);
        mqe2e_control_update_wipe(&r);
    }
}

/* Install the member's current epoch secret in its keystore as group epoch tree+base. */
static void tree_install(tree_dev *t)
{
    uint8_t s[32];
    cr_assert_eq(mqe2e_keytree_member_epoch_secret(t->m, s), MQE2E_OK);
    cr_assert_eq(mqe2e_keystore_group_add_epoch(t->ks, "fleet", "fleet/#",
                                                mqe2e_keytree_member_epoch(t->m) + t->base, s,
                                                af_now_s()),
                 MQE2E_OK);
    sodium_memzero(s, sizeof s);
    mqe2e_protector_invalidate(t->pr, "fleet");
}

/* Its state from a HELLO: the current bundle's leaf key and TreePath. */
static void tree_hello(tree_dev *t)
{
    mqe2e_control_update r;
    cr_assert_eq(hello(&t->d, &r, 10.0), MQE2E_OK);
    const mqe2e_key_bundle *b = NULL;
    for (size_t i = 0; i < r.n_bundles; i++)
        if (strcmp(r.bundles[i].group, "fleet") == 0 && r.bundles[i].retired_at == 0)
            b = &r.bundles[i];
    cr_assert_not_null(b);
    cr_assert_gt(b->tree_path_len, 0U, "%s: no tree path in the HELLO reply", t->d.id);
    cr_assert_leq(b->tree_path_len + sizeof b->tree_leaf_key, 1024U);
    mqe2e_keytree_member_free(t->m);
    t->m = NULL;
    cr_assert_eq(mqe2e_keytree_member_new(&t->m, b->tree_path + 2, b->tree_leaf_key, b->tree_path,
                                          b->tree_path_len),
                 MQE2E_OK);
    t->base = b->epoch - mqe2e_keytree_member_epoch(t->m);
    t->sender_id = b->sender_id;
    if (t->ks == NULL) {
        mqe2e_storage st;
        cr_assert_eq(mqe2e_storage_memory(&st), MQE2E_OK);
        cr_assert_eq(mqe2e_keystore_create(&t->ks, st, t->d.id, t->sender_id), MQE2E_OK);
        uint8_t s[32];
        cr_assert_eq(mqe2e_keytree_member_epoch_secret(t->m, s), MQE2E_OK);
        cr_assert_eq(sodium_memcmp(s, b->secret, 32), 0, "tree secret = group secret");
        cr_assert_eq(mqe2e_keystore_group_add_epoch(t->ks, "fleet", "fleet/#", b->epoch, s,
                                                    af_now_s()),
                     MQE2E_OK);
        sodium_memzero(s, sizeof s);
        cr_assert_eq(mqe2e_policy_new(&t->pol), MQE2E_OK);
        cr_assert_eq(mqe2e_policy_add_keystore_groups(t->pol, t->ks), MQE2E_OK);
        cr_assert_eq(mqe2e_protector_new(&t->pr, t->ks, t->pol, NULL), MQE2E_OK);
    }
    mqe2e_control_update_wipe(&r);
}

static void tree_dev_free(tree_dev *t)
{
    mqe2e_keytree_member_free(t->m);
    mqe2e_protector_free(t->pr);
    mqe2e_policy_free(t->pol);
    mqe2e_keystore_close(t->ks);
}

/* Through the real broker and the real authority process: a key-tree group
 * of four members; revoking one sends ONE signed TreeUpdate on
 * mqe2e/tree/fleet and no push to anyone; the three others derive the new
 * epoch from it (the same secret the authority hands out by HELLO) and read
 * a message sealed under it; the revoked member's apply says TREE_REVOKED,
 * it gets nothing on its inbox and cannot open that message. */
Test(authority, key_tree_revocation_end_to_end)
{
    enum { N = 4 };
    static char out[OUT_MAX];
    char *lines[N + 1];
    static tree_dev t[N];
    mqe2e_control_update r;
    mailbox tree_box;
    memset(t, 0, sizeof t);
    mb_open(&tree_box, tb_broker_uri(&fx.broker), "tree-spy", PREFIX "/tree/#");

    const char *gc[] = {"group", "create", "--group", "fleet", "--topic", "fleet/#", "--tree", "3",
                        NULL};
    cr_assert_eq(op(out, sizeof out, gc), 0, "%s", out);
    cr_assert(strstr(out, "key tree of depth 3") != NULL, "%s", out);
    tree_devs_enrolled(t, N, "tm", NULL);
    for (int i = 0; i < N; i++) {
        const char *id = t[i].d.id;
        const char *gg[] = {"group", "grant", "--group", "fleet", "--id", id, NULL};
        cr_assert_eq(op(out, sizeof out, gg), 0, "%s", out);
        mail pm;
        cr_assert(take(&pm, id, 10.0), "the newcomer's push");
        mail_free(&pm);
    }
    for (int i = 0; i < N; i++)
        tree_hello(&t[i]);
    /* The four join broadcasts, 113 bytes each. */
    for (double end = af_mono() + 10.0; tree_box.n < N && af_mono() < end;)
        mb_pump(&tree_box, 50);
    cr_assert_eq(tree_box.n, (size_t)N, "one join broadcast per grant");
    for (size_t i = 0; i < tree_box.n; i++)
        cr_assert_eq(tree_box.v[i].len, 113U);
    mb_clear(&tree_box);
    mb_pump(&box, 300);
    mb_clear(&box);

    const char *rv[] = {"revoke", "--id", "tm-3", NULL};
    cr_assert_eq(op(out, sizeof out, rv), 0, "%s", out);
    mail u;
    cr_assert(mb_take(&tree_box, &u, PREFIX "/tree/fleet", 10000), "one tree update broadcast");
    cr_assert_leq(u.len, 4096U, "at most 4 KB per revocation");
    mb_pump(&tree_box, 500);
    cr_assert_eq(tree_box.n, 0U, "exactly one broadcast (took %zu bytes, then %zu more of %zu bytes)",
                 u.len, tree_box.n, tree_box.n > 0 ? tree_box.v[0].len : 0U);
    mb_pump(&box, 500);
    size_t pushes = 0; /* to members (the operator's reply also comes on P/client/) */
    for (size_t i = 0; i < box.n; i++)
        pushes += strncmp(box.v[i].topic, PREFIX "/client/tm-", strlen(PREFIX "/client/tm-")) == 0;

    mqe2e_keytree_update v;
    cr_assert_eq(mqe2e_keytree_update_open(&v, u.data, u.len, fx.pin.sign_public), MQE2E_OK);
    for (int i = 0; i < N; i++) {
        unsigned unwraps = 0;
        int rc = mqe2e_keytree_member_apply(t[i].m, &v, &unwraps);
        if (i == 2) {
            cr_assert_eq(rc, MQE2E_ERR_TREE_REVOKED);
            continue;
        }
        cr_assert_eq(rc, MQE2E_OK, "%s: %d", t[i].d.id, rc);
        cr_assert_leq(unwraps, 3U);
        tree_install(&t[i]);
    }
    mail_free(&u);
    fprintf(stderr, "key-tree revocation: one %zu-byte broadcast, %zu pushes to members\n",
            (size_t)v.n_wraps * 56U + 113U, pushes);
    cr_assert_eq(pushes, 0U, "no per-member push for a tree group");

    /* The remaining members read tm-1's message under the new epoch; tm-3 cannot. */
    uint8_t env[512], pt[64];
    size_t env_len = 0, pt_len = 0;
    cr_assert_eq(mqe2e_protect(t[0].pr, "fleet/x", (const uint8_t *)"after revoke", 12, af_now_s(),
                               env, sizeof env, &env_len),
                 MQE2E_OK);
    for (int i = 1; i < N; i++) {
        int rc = mqe2e_unprotect(t[i].pr, "fleet/x", env, env_len, af_now_s(), pt, sizeof pt, &pt_len);
        if (i == 2) {
            cr_assert_neq(rc, MQE2E_OK, "the revoked member opened the new epoch");
            continue;
        }
        cr_assert_eq(rc, MQE2E_OK, "%s: %d", t[i].d.id, rc);
        cr_assert_eq(pt_len, 12U);
        cr_assert_eq(memcmp(pt, "after revoke", 12), 0);
    }
    /* The authority's group epoch is the one the members derived. */
    cr_assert_eq(hello(&t[1].d, &r, 10.0), MQE2E_OK);
    cr_assert_eq(bundle_epoch(&r, "fleet"), mqe2e_keytree_member_epoch(t[1].m) + t[1].base);
    mqe2e_control_update_wipe(&r);
    cr_assert_neq(hello(&t[2].d, &r, 10.0), MQE2E_OK, "the revoked member gets no HELLO answer");
    mqe2e_control_update_wipe(&r);
    for (int i = 0; i < N; i++)
        tree_dev_free(&t[i]);
    mb_close(&tree_box);
}

/* The value of "key":N in @p path (a KEYSTORE.stats file), or -1. */
static long stats_value(const char *path, const char *key)
{
    size_t len = 0;
    char *t = tu_read_file(path, &len);
    char want[64];
    snprintf(want, sizeof want, "\"%s\":", key);
    const char *p = t != NULL ? strstr(t, want) : NULL;
    long v = p != NULL ? strtol(p + strlen(want), NULL, 10) : -1;
    free(t);
    return v;
}

/* Poll @p path until "key" >= @p min or the deadline; returns the last value. */
static long stats_wait(const char *path, const char *key, long min, double timeout)
{
    long v = -1;
    for (double end = af_mono() + timeout; (v = stats_value(path, key)) < min && af_mono() < end;)
        af_sleep_ms(200);
    return v;
}

/* The whole stack on a key-tree group: devices enrolled with `mqe2e enroll`,
 * two `mqe2e sub` (the Paho front and its session) and a one-shot `mqe2e
 * pub`, the real authority and Mosquitto. The subscribers learn their tree
 * state from their HELLO, subscribe to mqe2e/tree/kt on their own, and after
 * `mqe2e revoke` of one of them: the other applies the broadcast
 * (tree_applied in its counters file) and prints the message sealed under
 * the new epoch; the revoked one counts tree_revoked and prints nothing. */
Test(authority, key_tree_sessions_follow_the_broadcast)
{
    static char out[OUT_MAX];
    const char *ids[3] = {"tk-1", "tk-2", "tk-3"};
    char ks[3][600], stats[3][640], outf[3][640], pidf[3][640];
    const char *gc[] = {"group", "create", "--group", "kt", "--topic", "kt/#", "--tree", "3", NULL};
    cr_assert_eq(op(out, sizeof out, gc), 0, "%s", out);
    for (int i = 0; i < 3; i++) {
        char ticket[2048], words[128];
        snprintf(words, sizeof words, "--id %s --grant 'kt/#:pubsub'", ids[i]);
        af_ticket(&fx, ticket, sizeof ticket, words);
        cr_assert_eq(af_enroll(&fx, ids[i], ticket), 0);
        const char *gg[] = {"group", "grant", "--group", "kt", "--id", ids[i], NULL};
        cr_assert_eq(op(out, sizeof out, gg), 0, "%s", out);
        af_ks_path(&fx, ks[i], sizeof ks[i], ids[i]);
        snprintf(stats[i], sizeof stats[i], "%s.stats", ks[i]);
        snprintf(outf[i], sizeof outf[i], "%s/%s.sub.out", fx.dir, ids[i]);
        snprintf(pidf[i], sizeof pidf[i], "%s/%s.sub.pid", fx.dir, ids[i]);
    }
    /* Granted while offline: one short `sub` each makes its HELLO and stores
     * the group (the CLI builds its policy from the keystore's groups). */
    for (int i = 0; i < 3; i++) {
        const char *s0[] = {"sub", "-K", ks[i], "--key-file", fx.keyfile, "-h", "127.0.0.1", "-p",
                            fx.port, "-t", "kt/none", "-W", "3", NULL};
        cr_assert_eq(af_run(NULL, 0, s0), 4, "%s: the short sub ends by its timeout", ids[i]);
    }
    /* tk-2 and tk-3 listen (stopped at the end). */
    for (int i = 1; i < 3; i++) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd,
                 "'%s' sub -K '%s' --key-file '%s' -h 127.0.0.1 -p %s -t 'kt/#' -C 100 -W 90 "
                 ">'%s' 2>'%s.err' & echo $! >'%s'",
                 fx.cli, ks[i], fx.keyfile, fx.port, outf[i], outf[i], pidf[i]);
        cr_assert_eq(af_sh(NULL, 0, cmd), 0);
    }
    /* tk-1 was granted while offline: one short `sub` makes its HELLO and
     * stores the group (a one-shot `pub` needs it in the keystore). */
    const char *s1[] = {"sub", "-K", ks[0], "--key-file", fx.keyfile, "-h", "127.0.0.1", "-p",
                        fx.port, "-t", "kt/none", "-W", "2", NULL};
    /* Both up: a first message reaches both (their HELLO is answered). */
    const char *p1[] = {"pub", "-K", ks[0], "--key-file", fx.keyfile, "-h", "127.0.0.1", "-p",
                        fx.port, "-t", "kt/x", "-m", "before", "-q", "1", NULL};
    size_t len = 0;
    char *got = NULL;
    for (int i = 1; i < 3; i++) {
        int seen = 0;
        for (double end = af_mono() + 30.0; !seen && af_mono() < end;) {
            int prc = af_run(out, sizeof out, p1);
            if (prc == 2) { /* no group yet: the HELLO first */
                (void)af_run(NULL, 0, s1);
                continue;
            }
            cr_assert_eq(prc, 0, "pub exit %d: %s", prc, out);
            for (double e2 = af_mono() + 2.0; !seen && af_mono() < e2; af_sleep_ms(100)) {
                got = tu_read_file(outf[i], &len);
                seen = got != NULL && strstr(got, "before") != NULL;
                free(got);
            }
        }
        if (!seen) {
            char ef[700];
            snprintf(ef, sizeof ef, "%s.err", outf[i]);
            char *e = tu_read_file(ef, &len);
            fprintf(stderr, "%s stderr: %s\n", ids[i], e != NULL ? e : "(none)");
            free(e);
        }
        cr_assert(seen, "%s never printed the first message", ids[i]);
    }
    double applied_before = (double)stats_value(stats[1], "tree_applied");

    const char *rv[] = {"revoke", "--id", "tk-3", NULL};
    cr_assert_eq(op(out, sizeof out, rv), 0, "%s", out);
    cr_assert_geq(stats_wait(stats[1], "tree_applied", (long)applied_before + 1, 20.0),
                  (long)applied_before + 1, "tk-2 applied no tree update");
    cr_assert_geq(stats_wait(stats[2], "tree_revoked", 1, 20.0), 1, "tk-3 counted no removal");
    const char *p2[] = {"pub", "-K", ks[0], "--key-file", fx.keyfile, "-h", "127.0.0.1", "-p",
                        fx.port, "-t", "kt/x", "-m", "after", "-q", "1", NULL};
    cr_assert_eq(af_run(NULL, 0, p2), 0);
    int seen = 0;
    for (double end = af_mono() + 20.0; !seen && af_mono() < end; af_sleep_ms(100)) {
        got = tu_read_file(outf[1], &len);
        seen = got != NULL && strstr(got, "after") != NULL;
        free(got);
    }
    cr_assert(seen, "tk-2 did not print the message sealed under the new epoch");
    /* tk-3 got the same envelope (same subscription) and cannot open it. */
    got = tu_read_file(outf[2], &len);
    cr_assert(got == NULL || strstr(got, "after") == NULL, "the revoked member printed it");
    free(got);
    for (int i = 1; i < 3; i++) {
        char cmd[800];
        snprintf(cmd, sizeof cmd, "kill $(cat '%s') 2>/dev/null; true", pidf[i]);
        (void)af_sh(NULL, 0, cmd);
    }
}

/* Poll @p path until it was written by process @p pid with "key" >= @p min. */
static long stats_wait_pid(const char *path, long pid, const char *key, long min, double timeout)
{
    long v = -1;
    for (double end = af_mono() + timeout; af_mono() < end; af_sleep_ms(200)) {
        if (stats_value(path, "pid") != pid) continue;
        if ((v = stats_value(path, key)) >= min) break;
    }
    return v;
}

/* Issue 15, item 3 (PROTOCOL.md §10.9): a device subscribes only to its own
 * key-tree groups' updates. Two tree groups on one broker and the real
 * authority process: `mqe2e sub` as na-1, a member of "ta" only, runs while
 * tb's members are revoked and ungranted (two TreeUpdates on mqe2e/tree/tb,
 * seen by a spy), then a member of ta is revoked. na-1 applies ta's update
 * (tree_applied) and never receives tb's: control_ignored does not move
 * (with a P/tree/# subscription it counts one per tb update). */
Test(authority, key_tree_device_gets_only_its_own_groups_updates)
{
    static char out[OUT_MAX];
    const char *ids[5] = {"na-1", "na-2", "nb-1", "nb-2", "nb-3"};
    char ks[600], stats[640], outf[640], pidf[640];
    mailbox spy;
    memset(&spy, 0, sizeof spy);
    mb_open(&spy, tb_broker_uri(&fx.broker), "tree-spy-2", PREFIX "/tree/#");
    const char *ga[] = {"group", "create", "--group", "ta", "--topic", "ta/#", "--tree", "3", NULL};
    const char *gb[] = {"group", "create", "--group", "tb", "--topic", "tb/#", "--tree", "3", NULL};
    cr_assert_eq(op(out, sizeof out, ga), 0, "%s", out);
    cr_assert_eq(op(out, sizeof out, gb), 0, "%s", out);
    for (int i = 0; i < 5; i++) {
        char ticket[2048], words[128];
        const char *grp = i < 2 ? "ta" : "tb";
        snprintf(words, sizeof words, "--id %s --grant '%s/#:pubsub'", ids[i], grp);
        af_ticket(&fx, ticket, sizeof ticket, words);
        cr_assert_eq(af_enroll(&fx, ids[i], ticket), 0);
        const char *gg[] = {"group", "grant", "--group", grp, "--id", ids[i], NULL};
        cr_assert_eq(op(out, sizeof out, gg), 0, "%s", out);
    }
    af_ks_path(&fx, ks, sizeof ks, ids[0]);
    snprintf(stats, sizeof stats, "%s.stats", ks);
    snprintf(outf, sizeof outf, "%s/%s.sub.out", fx.dir, ids[0]);
    snprintf(pidf, sizeof pidf, "%s/%s.sub.pid", fx.dir, ids[0]);
    /* Granted while offline: a short `sub` stores the group (the CLI builds
     * its policy from the keystore's groups). */
    const char *s0[] = {"sub", "-K",    ks,   "--key-file", fx.keyfile, "-h", "127.0.0.1",
                        "-p",  fx.port, "-t", "ta/none",    "-W",       "2",  NULL};
    cr_assert_eq(af_run(NULL, 0, s0), 4, "the short sub ends by its timeout");
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "'%s' sub -K '%s' --key-file '%s' -h 127.0.0.1 -p %s -t 'ta/#' -C 100 -W 90 "
             ">'%s' 2>'%s.err' & echo $! >'%s'",
             fx.cli, ks, fx.keyfile, fx.port, outf, outf, pidf);
    cr_assert_eq(af_sh(NULL, 0, cmd), 0);
    size_t len = 0;
    char *pid_text = tu_read_file(pidf, &len);
    cr_assert_not_null(pid_text);
    long pid = strtol(pid_text, NULL, 10);
    free(pid_text);
    /* Its HELLO answered (recorded by this process): a member of ta, whose
     * subscription the answer started. */
    cr_assert_geq(stats_wait_pid(stats, pid, "handshakes_ok", 1, 30.0), 1,
                  "na-1's HELLO was not answered");
    long ignored = stats_value(stats, "control_ignored");
    cr_assert_geq(ignored, 0);
    mb_pump(&spy, 300);
    mb_clear(&spy);

    /* tb changes twice: nb-2 revoked, nb-3 ungranted. */
    const char *rv[] = {"revoke", "--id", "nb-2", NULL};
    cr_assert_eq(op(out, sizeof out, rv), 0, "%s", out);
    const char *ug[] = {"group", "ungrant", "--group", "tb", "--id", "nb-3", NULL};
    cr_assert_eq(op(out, sizeof out, ug), 0, "%s", out);
    for (int k = 0; k < 2; k++) {
        mail u;
        cr_assert(mb_take(&spy, &u, PREFIX "/tree/tb", 10000), "tb's update %d broadcast", k + 1);
        mail_free(&u);
    }
    /* Then ta: na-2 revoked. Broadcast after tb's, so a device subscribed to
     * both would have tb's in hand when it applied ta's. */
    const char *rv2[] = {"revoke", "--id", "na-2", NULL};
    cr_assert_eq(op(out, sizeof out, rv2), 0, "%s", out);
    cr_assert_geq(stats_wait_pid(stats, pid, "tree_applied", 1, 30.0), 1,
                  "na-1 applied no update of its own group");
    long after = stats_value(stats, "control_ignored");
    cr_assert_eq(after, ignored,
                 "na-1 received other tree groups' updates: control_ignored %ld -> %ld", ignored,
                 after);
    cr_assert_eq(stats_value(stats, "tree_refused"), 0);
    cr_assert_eq(stats_value(stats, "tree_revoked"), 0);
    snprintf(cmd, sizeof cmd, "kill %ld 2>/dev/null; true", pid);
    (void)af_sh(NULL, 0, cmd);
    mb_close(&spy);
}

/* tree_threshold from the authority's config file (`tree_threshold = 2`):
 * the grant that brings a push group to its 2nd member converts it (the
 * operator's output says so, the authority counts tree_conversions), and
 * the 3rd member joins with one broadcast; a value out of range in the
 * config file is refused before anything runs. */
Test(authority, tree_threshold_from_the_config_converts_a_push_group)
{
    static char out[OUT_MAX];
    char conf[700], bad[700];
    snprintf(conf, sizeof conf, "%s/threshold.conf", fx.dir);
    snprintf(bad, sizeof bad, "%s/threshold-bad.conf", fx.dir);
    FILE *f = fopen(conf, "w");
    cr_assert_not_null(f);
    fputs("tree_threshold = 2\n", f);
    cr_assert_eq(fclose(f), 0);
    f = fopen(bad, "w");
    cr_assert_not_null(f);
    fputs("tree_threshold = 2000000\n", f);
    cr_assert_eq(fclose(f), 0);
    const char *run_bad[] = {"authority", "run", "--config", bad, NULL};
    cr_assert_eq(af_run(out, sizeof out, run_bad), 1, "%s", out);

    authority_stop(SIGTERM);
    const char *extra[] = {"--config", conf, NULL};
    af_authority_start(&fx, extra);
    const char *gc[] = {"group", "create", "--group", "kg", "--topic", "kg/#", NULL};
    cr_assert_eq(op(out, sizeof out, gc), 0, "%s", out);
    const char *ids[3] = {"tg-1", "tg-2", "tg-3"};
    for (int i = 0; i < 3; i++) {
        char ticket[2048], words[128];
        snprintf(words, sizeof words, "--id %s --grant 'kg/#:pubsub'", ids[i]);
        af_ticket(&fx, ticket, sizeof ticket, words);
        cr_assert_eq(af_enroll(&fx, ids[i], ticket), 0);
        const char *gg[] = {"group", "grant", "--group", "kg", "--id", ids[i], NULL};
        cr_assert_eq(op(out, sizeof out, gg), 0, "%s", out);
        int converted = strstr(out, "reached tree_threshold") != NULL;
        cr_assert_eq(converted, i == 1, "grant %d: %s", i + 1, out);
        if (i == 2) cr_assert(strstr(out, "(key tree)") != NULL, "a tree join: %s", out);
    }
    cr_assert_eq(counter("tree_conversions"), 1.0);
    cr_assert_geq(counter("tree_updates"), 1.0, "the 3rd member's join is a broadcast");
}

/* ---------------------- key-tree updates from an attacker on the broker */

/* Enrol @p ids with `mqe2e enroll`, grant each the key-tree group @p group
 * with `group grant`, and run one short `mqe2e sub` per device so its HELLO
 * stores the group (the CLI builds its policy from the keystore's groups).
 * ks[i] is each keystore's path, stats[i] its counters file. */
static void tree_cli_members(const char *group, const char *const *ids, int n, char (*ks)[600],
                             char (*stats)[640])
{
    static char out[OUT_MAX];
    for (int i = 0; i < n; i++) {
        char ticket[2048], words[128];
        snprintf(words, sizeof words, "--id %s --grant '%s/#:pubsub'", ids[i], group);
        af_ticket(&fx, ticket, sizeof ticket, words);
        cr_assert_eq(af_enroll(&fx, ids[i], ticket), 0);
        const char *gg[] = {"group", "grant", "--group", group, "--id", ids[i], NULL};
        cr_assert_eq(op(out, sizeof out, gg), 0, "%s", out);
        af_ks_path(&fx, ks[i], sizeof ks[i], ids[i]);
        snprintf(stats[i], sizeof stats[i], "%s.stats", ks[i]);
        char none[64];
        snprintf(none, sizeof none, "%s/none", group);
        const char *s0[] = {"sub", "-K",    ks[i], "--key-file", fx.keyfile, "-h", "127.0.0.1",
                            "-p",  fx.port, "-t",  none,         "-W",       "3",  NULL};
        cr_assert_eq(af_run(NULL, 0, s0), 4, "%s: the short sub ends by its timeout", ids[i]);
    }
}

/* Poll @p path until it holds @p text or the deadline: 1 when it does. */
static int printed_within(const char *path, const char *text, double timeout)
{
    int seen = 0;
    for (double end = af_mono() + timeout; !seen && af_mono() < end; af_sleep_ms(100)) {
        size_t len = 0;
        char *got = tu_read_file(path, &len);
        seen = got != NULL && strstr(got, text) != NULL;
        free(got);
    }
    return seen;
}

/* Issue 15 item 3 through the whole stack: a PUSH group whose members run
 * `mqe2e sub` (the Paho front and its session) is converted with `mqe2e
 * group tree`; each listening session applies the conversion's push (its
 * bundle carries the leaf key and TreePath) and so becomes a tree member:
 * after `mqe2e revoke` of one of them the other applies the ONE broadcast
 * (tree_applied) and prints the message sealed under the new epoch by a
 * member that was offline during the conversion (its HELLO brings its
 * leaf); the revoked one counts tree_revoked and prints nothing. */
Test(authority, key_tree_conversion_sessions_follow_the_broadcast)
{
    static char out[OUT_MAX];
    const char *ids[3] = {"tc-1", "tc-2", "tc-3"};
    char ks[3][600], stats[3][640], outf[3][640], pidf[3][640];
    const char *gc[] = {"group", "create", "--group", "kc", "--topic", "kc/#", NULL};
    cr_assert_eq(op(out, sizeof out, gc), 0, "%s", out);
    tree_cli_members("kc", ids, 3, ks, stats);
    for (int i = 0; i < 3; i++) {
        snprintf(outf[i], sizeof outf[i], "%s/%s.sub.out", fx.dir, ids[i]);
        snprintf(pidf[i], sizeof pidf[i], "%s/%s.sub.pid", fx.dir, ids[i]);
    }
    for (int i = 1; i < 3; i++) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd,
                 "'%s' sub -K '%s' --key-file '%s' -h 127.0.0.1 -p %s -t 'kc/#' -C 100 -W 90 "
                 ">'%s' 2>'%s.err' & echo $! >'%s'",
                 fx.cli, ks[i], fx.keyfile, fx.port, outf[i], outf[i], pidf[i]);
        cr_assert_eq(af_sh(NULL, 0, cmd), 0);
    }
    const char *p1[] = {"pub", "-K", ks[0], "--key-file", fx.keyfile, "-h", "127.0.0.1", "-p",
                        fx.port, "-t", "kc/x", "-m", "before", "-q", "1", NULL};
    for (int i = 1; i < 3; i++) {
        int seen = 0;
        for (double end = af_mono() + 30.0; !seen && af_mono() < end;) {
            cr_assert_eq(af_run(out, sizeof out, p1), 0, "pub: %s", out);
            seen = printed_within(outf[i], "before", 2.0);
        }
        cr_assert(seen, "%s never printed the first message", ids[i]);
    }
    long pushes[3];
    for (int i = 1; i < 3; i++)
        pushes[i] = stats_value(stats[i], "pushes_applied");

    /* tc-1 is offline: only tc-2 and tc-3 read the conversion's push. */
    const char *gt[] = {"group", "tree", "--group", "kc", NULL};
    cr_assert_eq(op(out, sizeof out, gt), 0, "%s", out);
    cr_assert(strstr(out, "key tree of depth 3") != NULL, "%s", out);
    for (int i = 1; i < 3; i++)
        cr_assert_geq(stats_wait(stats[i], "pushes_applied", pushes[i] + 1, 20.0), pushes[i] + 1,
                      "%s applied no conversion push", ids[i]);
    long applied = stats_value(stats[1], "tree_applied");

    const char *rv[] = {"revoke", "--id", "tc-3", NULL};
    cr_assert_eq(op(out, sizeof out, rv), 0, "%s", out);
    cr_assert_geq(stats_wait(stats[1], "tree_applied", applied + 1, 20.0), applied + 1,
                  "tc-2 applied no tree update: the conversion's push made no tree member");
    cr_assert_geq(stats_wait(stats[2], "tree_revoked", 1, 20.0), 1, "tc-3 counted no removal");
    const char *p2[] = {"pub", "-K", ks[0], "--key-file", fx.keyfile, "-h", "127.0.0.1", "-p",
                        fx.port, "-t", "kc/x", "-m", "after", "-q", "1", NULL};
    cr_assert_eq(af_run(out, sizeof out, p2), 0, "%s", out);
    cr_assert(printed_within(outf[1], "after", 20.0),
              "tc-2 did not print the message sealed under the new epoch");
    size_t len = 0;
    char *got = tu_read_file(outf[2], &len);
    cr_assert(got == NULL || strstr(got, "after") == NULL, "the revoked member printed it");
    free(got);
    for (int i = 1; i < 3; i++) {
        char cmd[800];
        snprintf(cmd, sizeof cmd, "kill $(cat '%s') 2>/dev/null; true", pidf[i]);
        (void)af_sh(NULL, 0, cmd);
    }
}

/* Publish @p msg on @p topic with `mqe2e pub -K ks_pub` until the text shows
 * up in @p outf (a listening `mqe2e sub`'s output), at most 30 s. */
static int cli_pub_until_seen(const char *ks_pub, const char *topic, const char *msg,
                              const char *outf)
{
    static char out[OUT_MAX];
    const char *p[] = {"pub",   "-K", ks_pub, "--key-file", fx.keyfile, "-h", "127.0.0.1", "-p",
                       fx.port, "-t", topic,  "-m",         msg,        "-q", "1",         NULL};
    for (double end = af_mono() + 30.0; af_mono() < end;) {
        int prc = af_run(out, sizeof out, p);
        cr_assert(prc == 0 || prc == 2, "pub exit %d: %s", prc, out);
        for (double e2 = af_mono() + 2.0; af_mono() < e2; af_sleep_ms(100)) {
            size_t len = 0;
            char *got = tu_read_file(outf, &len);
            int seen = got != NULL && strstr(got, msg) != NULL;
            free(got);
            if (seen) return 1;
        }
    }
    return 0;
}

/* Lines of @p path (0 when missing). */
static int file_lines(const char *path)
{
    size_t len = 0;
    char *t = tu_read_file(path, &len);
    int n = 0;
    for (size_t i = 0; t != NULL && i < len; i++)
        n += t[i] == '\n';
    free(t);
    return n;
}

/* docs/PROTOCOL.md §10.2 and §10.9 against an attacker who can publish on
 * the broker (no ACL stops it here): it captures the genuine TreeUpdates of
 * two key-tree groups and sends to a listening member (a real `mqe2e sub`)
 * the remove again (replayed), an older join after it (reordered), the
 * remove with its signature's last byte flipped, with its epochs moved on
 * by one (signature no longer covers them), cut short, and the other
 * group's genuine update re-published on this group's topic. Each is
 * counted exactly once as refused or replayed, none moves the member's
 * epoch (tree_applied unchanged), nothing reaches the application, and a
 * message sealed afterwards under the real epoch is still delivered. */
Test(authority, key_tree_updates_forged_replayed_reordered_on_the_broker)
{
    static char out[OUT_MAX];
    const char *ids[3] = {"ka-1", "ka-2", "ka-3"};
    char ks[3][600], stats[3][640], outf[640], pidf[640], cmd[4096];
    mailbox box;
    mail joins[3], rm, other;
    mb_open(&box, tb_broker_uri(&fx.broker), "tree-attacker", PREFIX "/tree/#");

    const char *gc[] = {"group", "create", "--group", "ka", "--topic", "ka/#", "--tree", "3", NULL};
    cr_assert_eq(op(out, sizeof out, gc), 0, "%s", out);
    const char *gc2[] = {"group", "create", "--group", "kb", "--topic",
                         "kb/#",  "--tree", "2",       NULL};
    cr_assert_eq(op(out, sizeof out, gc2), 0, "%s", out);
    tree_cli_members("ka", ids, 3, ks, stats);
    for (int i = 0; i < 3; i++)
        cr_assert(mb_take(&box, &joins[i], PREFIX "/tree/ka", 10000), "join %d of ka", i + 1);
    /* A genuine update of the other tree: ka-1 joins kb too. */
    const char *gk[] = {"group", "grant", "--group", "kb", "--id", "ka-1", NULL};
    cr_assert_eq(op(out, sizeof out, gk), 0, "%s", out);
    cr_assert(mb_take(&box, &other, PREFIX "/tree/kb", 10000), "the join of kb");

    /* ka-2 listens. */
    snprintf(outf, sizeof outf, "%s/ka-2.sub.out", fx.dir);
    snprintf(pidf, sizeof pidf, "%s/ka-2.sub.pid", fx.dir);
    snprintf(cmd, sizeof cmd,
             "'%s' sub -K '%s' --key-file '%s' -h 127.0.0.1 -p %s -t 'ka/#' -C 100 -W 120 "
             ">'%s' 2>'%s.err' & echo $! >'%s'",
             fx.cli, ks[1], fx.keyfile, fx.port, outf, outf, pidf);
    cr_assert_eq(af_sh(NULL, 0, cmd), 0);
    cr_assert(cli_pub_until_seen(ks[0], "ka/x", "before", outf), "ka-2 never printed 'before'");

    /* The genuine remove: ka-3 is revoked, ka-2 applies it. */
    long applied0 = stats_value(stats[1], "tree_applied");
    const char *rv[] = {"revoke", "--id", "ka-3", NULL};
    cr_assert_eq(op(out, sizeof out, rv), 0, "%s", out);
    cr_assert(mb_take(&box, &rm, PREFIX "/tree/ka", 10000), "the remove broadcast");
    long applied = stats_wait(stats[1], "tree_applied", applied0 + 1, 20.0);
    cr_assert_eq(applied, applied0 + 1, "ka-2 applied the remove once");
    long refused0 = stats_value(stats[1], "tree_refused");
    long replayed0 = stats_value(stats[1], "tree_replayed");
    int lines0 = file_lines(outf);
    cr_assert(rm.len > 49U + 64U, "a remove has wraps");

    /* The attacks, each QoS 1 on ka's tree topic. */
    uint8_t forged[4][2048];
    size_t forged_len[4];
    memcpy(forged[0], rm.data, rm.len); /* the signature's last byte flipped */
    forged_len[0] = rm.len;
    forged[0][rm.len - 1] ^= 0x01;
    memcpy(forged[1], rm.data, rm.len); /* from/to epoch moved on by one */
    forged_len[1] = rm.len;
    for (int off = 19; off <= 23; off += 4) {
        uint32_t e = ((uint32_t)forged[1][off] << 24) | ((uint32_t)forged[1][off + 1] << 16) |
                     ((uint32_t)forged[1][off + 2] << 8) | forged[1][off + 3];
        e++;
        forged[1][off] = (uint8_t)(e >> 24);
        forged[1][off + 1] = (uint8_t)(e >> 16);
        forged[1][off + 2] = (uint8_t)(e >> 8);
        forged[1][off + 3] = (uint8_t)e;
    }
    memcpy(forged[2], rm.data, 40); /* cut short */
    forged_len[2] = 40;
    memcpy(forged[3], other.data, other.len); /* the other tree's genuine join */
    forged_len[3] = other.len;
    const char *topic = PREFIX "/tree/ka";
    for (int i = 0; i < 4; i++)
        cr_assert_eq(MQTTClient_publish(box.c, topic, (int)forged_len[i], forged[i], 1, 0, NULL),
                     MQTTCLIENT_SUCCESS);
    /* Replayed, and reordered: an older genuine join after the remove. */
    cr_assert_eq(MQTTClient_publish(box.c, topic, (int)rm.len, rm.data, 1, 0, NULL),
                 MQTTCLIENT_SUCCESS);
    cr_assert_eq(MQTTClient_publish(box.c, topic, (int)joins[1].len, joins[1].data, 1, 0, NULL),
                 MQTTCLIENT_SUCCESS);

    long refused = stats_wait(stats[1], "tree_refused", refused0 + 4, 20.0);
    long replayed = stats_wait(stats[1], "tree_replayed", replayed0 + 2, 20.0);
    /* A legitimate message after them: once it is printed, every injected
     * frame (published before it on the same connection order) was handled. */
    cr_assert(cli_pub_until_seen(ks[0], "ka/x", "after the attacks", outf),
              "ka-2 stopped delivering after the attacks");
    refused = stats_value(stats[1], "tree_refused");
    replayed = stats_value(stats[1], "tree_replayed");
    printf("key-tree attacks on the broker: refused %ld (4 injected), replayed %ld (2 injected), "
           "applied %ld -> %ld\n",
           refused - refused0, replayed - replayed0, applied,
           stats_value(stats[1], "tree_applied"));
    cr_assert_eq(refused - refused0, 4, "each forged update refused once");
    cr_assert_eq(replayed - replayed0, 2, "the replayed and the older update counted as replays");
    cr_assert_eq(stats_value(stats[1], "tree_applied"), applied, "no attack moved the epoch");
    cr_assert_eq(file_lines(outf), lines0 + 1, "only the legitimate message was printed");

    snprintf(cmd, sizeof cmd, "kill $(cat '%s') 2>/dev/null; true", pidf);
    (void)af_sh(NULL, 0, cmd);
    for (int i = 0; i < 3; i++)
        mail_free(&joins[i]);
    mail_free(&rm);
    mail_free(&other);
    mb_close(&box);
}

/* Issue 15 item 3, the whole stack: devices join a key-tree group by the
 * token alone (`mqe2e token create --group kj`, `mqe2e enroll`, no `group
 * grant`). Each enrollment is ONE signed join broadcast on mqe2e/tree/kj
 * (113 bytes, consecutive epochs). A running `mqe2e sub` of an earlier
 * member applies the join of a later one (tree_applied in its counters
 * file) and prints what the newcomer's one-shot `mqe2e pub` sealed under
 * the group's new epoch. */
Test(authority, key_tree_token_enrollment_end_to_end)
{
    static char out[OUT_MAX];
    const char *ids[3] = {"tj-1", "tj-2", "tj-3"};
    char ks[3][600], stats[640], outf[640], pidf[640];
    mailbox tree_box;
    mb_open(&tree_box, tb_broker_uri(&fx.broker), "tree-spy-kj", PREFIX "/tree/#");
    const char *gc[] = {"group", "create", "--group", "kj", "--topic", "kj/#", "--tree", "3", NULL};
    cr_assert_eq(op(out, sizeof out, gc), 0, "%s", out);
    for (int i = 0; i < 3; i++)
        af_ks_path(&fx, ks[i], sizeof ks[i], ids[i]);
    for (int i = 0; i < 2; i++)
        af_enroll_in(&fx, ids[i], "kj", "kj/#:pubsub");
    for (double end = af_mono() + 10.0; tree_box.n < 2 && af_mono() < end;)
        mb_pump(&tree_box, 50);
    cr_assert_eq(tree_box.n, 2U, "one join broadcast per token enrollment");

    /* tj-2 listens. */
    snprintf(stats, sizeof stats, "%s.stats", ks[1]);
    snprintf(outf, sizeof outf, "%s/tj-2.sub.out", fx.dir);
    snprintf(pidf, sizeof pidf, "%s/tj-2.sub.pid", fx.dir);
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "'%s' sub -K '%s' --key-file '%s' -h 127.0.0.1 -p %s -t 'kj/#' -C 100 -W 90 "
             ">'%s' 2>'%s.err' & echo $! >'%s'",
             fx.cli, ks[1], fx.keyfile, fx.port, outf, outf, pidf);
    cr_assert_eq(af_sh(NULL, 0, cmd), 0);

    /* A one-shot pub by @p who until tj-2 prints @p msg (the subscriber's
     * HELLO may still be on its way when the first one goes out). */
    size_t len = 0;
    char *got = NULL;
    const char *who[2] = {ks[0], ks[2]};
    const char *msgs[2] = {"before-join", "from-newcomer"};
    for (int k = 0; k < 2; k++) {
        if (k == 1) {
            long applied = stats_value(stats, "tree_applied");
            af_enroll_in(&fx, ids[2], "kj", "kj/#:pubsub");
            cr_assert_geq(stats_wait(stats, "tree_applied", applied + 1, 20.0), applied + 1,
                          "tj-2 applied no join update");
            for (double end = af_mono() + 10.0; tree_box.n < 3 && af_mono() < end;)
                mb_pump(&tree_box, 50);
            cr_assert_eq(tree_box.n, 3U, "tj-3's enrollment is one more join broadcast");
        }
        const char *p[] = {"pub",       "-K", who[k],  "--key-file", fx.keyfile, "-h",
                           "127.0.0.1", "-p", fx.port, "-t",         "kj/x",     "-m",
                           msgs[k],     "-q", "1",     NULL};
        const char *s0[] = {"sub", "-K",    who[k], "--key-file", fx.keyfile, "-h", "127.0.0.1",
                            "-p",  fx.port, "-t",   "kj/none",    "-W",       "2",  NULL};
        int seen = 0;
        for (double end = af_mono() + 30.0; !seen && af_mono() < end;) {
            int prc = af_run(out, sizeof out, p);
            if (prc == 2) { /* no group in the keystore yet: a HELLO first */
                (void)af_run(NULL, 0, s0);
                continue;
            }
            cr_assert_eq(prc, 0, "pub exit %d: %s", prc, out);
            for (double e2 = af_mono() + 2.0; !seen && af_mono() < e2; af_sleep_ms(100)) {
                got = tu_read_file(outf, &len);
                seen = got != NULL && strstr(got, msgs[k]) != NULL;
                free(got);
            }
        }
        cr_assert(seen, "tj-2 never printed \"%s\"", msgs[k]);
    }
    /* The three joins: 113 bytes each, in epoch order. */
    for (size_t i = 0; i < tree_box.n; i++) {
        mqe2e_keytree_update v;
        cr_assert_eq(mqe2e_keytree_update_open(&v, tree_box.v[i].data, tree_box.v[i].len,
                                               fx.pin.sign_public),
                     MQE2E_OK);
        cr_assert_eq(v.kind, MQE2E_KEYTREE_JOIN);
        cr_assert_eq(v.leaf, (uint32_t)i, "the lowest free leaf");
        cr_assert_eq(v.to_epoch, (uint32_t)i + 1U);
    }
    cr_assert_eq(stats_value(stats, "tree_refused"), 0);
    snprintf(cmd, sizeof cmd, "kill $(cat '%s') 2>/dev/null; true", pidf);
    (void)af_sh(NULL, 0, cmd);
    mb_close(&tree_box);
}

/* Issue 15 item 3 through the real authority process and Mosquitto:
 * `--replace` of a key-tree member. Three members joined by token; the
 * replacement's enrollment is two broadcasts on mqe2e/tree/fleet (the old
 * leaf removed, then the new device's join) and no push to any member. The
 * two others follow both to the epoch the new device's ENROLL reply holds
 * (leaf key and TreePath in its bundle) and read each other's messages
 * sealed under it; the old device's state answers TREE_REVOKED, opens
 * nothing sealed after the replacement, and its HELLO is not answered. */
Test(authority, key_tree_replacement_end_to_end)
{
    enum { N = 3 };
    static char out[OUT_MAX];
    char *lines[N + 1];
    static tree_dev t[N], tn;
    mqe2e_control_update r;
    mailbox tree_box;
    memset(t, 0, sizeof t);
    memset(&tn, 0, sizeof tn);
    mb_open(&tree_box, tb_broker_uri(&fx.broker), "tree-spy-r", PREFIX "/tree/#");
    const char *gc[] = {"group",   "create", "--group", "fleet", "--topic",
                        "fleet/#", "--tree", "3",       NULL};
    cr_assert_eq(op(out, sizeof out, gc), 0, "%s", out);
    tree_devs_enrolled(t, N, "rt", "fleet");
    for (int i = 0; i < N; i++)
        tree_hello(&t[i]);
    for (double end = af_mono() + 10.0; tree_box.n < N && af_mono() < end;)
        mb_pump(&tree_box, 50);
    cr_assert_eq(tree_box.n, (size_t)N, "one join broadcast per token enrollment");
    mb_clear(&tree_box);
    mb_pump(&box, 300);
    mb_clear(&box);

    const char *kr[] = {"token", "create", "--id", "rt-3", "--group", "fleet", "--replace", NULL};
    char trep[2048];
    ticket_for(trep, sizeof trep, kr);
    device_new(&tn.d, "rt-3");
    cr_assert_eq(enroll(&tn.d, trep, &r), MQE2E_OK, "the replacement enrolls");
    const mqe2e_key_bundle *b = NULL;
    for (size_t i = 0; i < r.n_bundles; i++)
        if (strcmp(r.bundles[i].group, "fleet") == 0 && r.bundles[i].retired_at == 0)
            b = &r.bundles[i];
    cr_assert_not_null(b, "the new device is in the group");
    cr_assert_gt(b->tree_path_len, 0U, "its ENROLL reply carries its TreePath");
    mqe2e_keytree_member *mn = NULL;
    cr_assert_eq(mqe2e_keytree_member_new(&mn, b->tree_path + 2, b->tree_leaf_key, b->tree_path,
                                          b->tree_path_len),
                 MQE2E_OK);
    uint8_t s_new[32];
    cr_assert_eq(mqe2e_keytree_member_epoch_secret(mn, s_new), MQE2E_OK);
    cr_assert_eq(sodium_memcmp(s_new, b->secret, 32), 0);
    uint32_t new_epoch = b->epoch;
    mqe2e_control_update_wipe(&r);

    for (double end = af_mono() + 10.0; tree_box.n < 2 && af_mono() < end;)
        mb_pump(&tree_box, 50);
    mb_pump(&tree_box, 300);
    cr_assert_eq(tree_box.n, 2U, "a removal and a join, nothing more");
    mqe2e_keytree_update rm, jn;
    cr_assert_eq(
        mqe2e_keytree_update_open(&rm, tree_box.v[0].data, tree_box.v[0].len, fx.pin.sign_public),
        MQE2E_OK);
    cr_assert_eq(
        mqe2e_keytree_update_open(&jn, tree_box.v[1].data, tree_box.v[1].len, fx.pin.sign_public),
        MQE2E_OK);
    cr_assert_eq(rm.kind, MQE2E_KEYTREE_REMOVE);
    cr_assert_eq(rm.leaf, 2U, "rt-3's old leaf");
    cr_assert_eq(jn.kind, MQE2E_KEYTREE_JOIN);
    cr_assert_eq(jn.from_epoch, rm.to_epoch);
    mb_pump(&box, 500);
    size_t pushes = 0;
    for (size_t i = 0; i < box.n; i++)
        pushes +=
            strncmp(box.v[i].topic, PREFIX "/client/rt-1", strlen(PREFIX "/client/rt-1")) == 0 ||
            strncmp(box.v[i].topic, PREFIX "/client/rt-2", strlen(PREFIX "/client/rt-2")) == 0;
    cr_assert_eq(pushes, 0U, "no per-member push for a tree group");

    for (int i = 0; i < 2; i++) {
        cr_assert_eq(mqe2e_keytree_member_apply(t[i].m, &rm, NULL), MQE2E_OK, "%s", t[i].d.id);
        cr_assert_eq(mqe2e_keytree_member_apply(t[i].m, &jn, NULL), MQE2E_OK, "%s", t[i].d.id);
        cr_assert_eq(mqe2e_keytree_member_epoch(t[i].m) + t[i].base, new_epoch);
        uint8_t s[32];
        cr_assert_eq(mqe2e_keytree_member_epoch_secret(t[i].m, s), MQE2E_OK);
        cr_assert_eq(sodium_memcmp(s, s_new, 32), 0, "%s reached the new device's epoch",
                     t[i].d.id);
        tree_install(&t[i]);
    }
    cr_assert_eq(mqe2e_keytree_member_apply(t[2].m, &rm, NULL), MQE2E_ERR_TREE_REVOKED);
    cr_assert_neq(mqe2e_keytree_member_apply(t[2].m, &jn, NULL), MQE2E_OK);

    /* rt-1 seals under the new epoch: rt-2 and the new device read it
     * (tree_hello sets up its keystore from its HELLO), the old one not. */
    tree_hello(&tn);
    cr_assert_eq(mqe2e_keytree_member_epoch(tn.m) + tn.base, new_epoch);
    uint8_t env[512], pt[64];
    size_t env_len = 0, pt_len = 0;
    cr_assert_eq(mqe2e_protect(t[0].pr, "fleet/x", (const uint8_t *)"after replace", 13, af_now_s(),
                               env, sizeof env, &env_len),
                 MQE2E_OK);
    cr_assert_eq(
        mqe2e_unprotect(t[1].pr, "fleet/x", env, env_len, af_now_s(), pt, sizeof pt, &pt_len),
        MQE2E_OK);
    cr_assert_eq(
        mqe2e_unprotect(tn.pr, "fleet/x", env, env_len, af_now_s(), pt, sizeof pt, &pt_len),
        MQE2E_OK);
    cr_assert_eq(memcmp(pt, "after replace", 13), 0);
    cr_assert_neq(
        mqe2e_unprotect(t[2].pr, "fleet/x", env, env_len, af_now_s(), pt, sizeof pt, &pt_len),
        MQE2E_OK, "the old device opened a message sealed after its replacement");
    cr_assert_neq(hello(&t[2].d, &r, 2.0), MQE2E_OK, "the old device's HELLO is not answered");
    mqe2e_control_update_wipe(&r);
    mqe2e_keytree_member_free(mn);
    for (int i = 0; i < N; i++)
        tree_dev_free(&t[i]);
    tree_dev_free(&tn);
    mb_close(&tree_box);
}
