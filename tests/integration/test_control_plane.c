/*
 * The client side of the control plane against a real Mosquitto and real
 * Paho: enrollment through the `mqe2e enroll` command, HELLO on connect,
 * encrypted pub/sub between enrolled clients, rotation pushes, a device
 * offline across a rotation (held messages released in order), forged and
 * replayed pushes, a command channel between two enrolled clients, forged
 * and replayed channel messages, and a revoked peer.
 *
 * The authority here is a small responder built from the core's authority
 * calls (mqe2e_enroll_accept_*, mqe2e_hello_accept_*, mqe2e_push_seal) on
 * its own raw Paho connection: a real second MQTT client speaking the
 * protocol, with its state in memory.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "authority_fixture.h"
#include "broker.h"
#include "inbox.h"
#include "mqe2e/MQTTAsync.h"
#include "mqe2e/MQTTClient.h"
#include "mqe2e/credential.h"
#include "spy.h"
#include "testutil.h"

#define PREFIX "mqe2e"
#define AUTH_ID "authority"
#define WAIT_MS 15000L
#define TA_MAX 8
#define TA_EPOCHS 16

static uint64_t now_s(void)
{
    return (uint64_t)time(NULL);
}

static int contains(const uint8_t *buf, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(buf + i, needle, n) == 0) return 1;
    return 0;
}

/* ====================================================================== */
/* The test authority                                                      */

typedef struct ta_member {
    char id[64];
    uint32_t sender;
} ta_member;

typedef struct ta_group {
    char name[32];
    char filter[64];
    uint32_t epoch; /* current, 1-based */
    uint8_t secret[TA_EPOCHS + 1][32];
    uint64_t created[TA_EPOCHS + 1];
    uint64_t retired[TA_EPOCHS + 1];
    ta_member members[TA_MAX];
    int n_members;
} ta_group;

typedef struct ta_client {
    char id[64];
    uint8_t dh[32];
    uint8_t sign[32];
    uint64_t push_seq;
    int revoked;
    uint8_t last_push[4096];
    size_t last_push_len;
} ta_client;

typedef struct ta_token {
    uint8_t id[16];
    uint8_t token[32];
    char client_id[64];
    char groups[4][32];
    int n_groups;
    int used;
    uint8_t used_by[32];
} ta_token;

typedef struct ta {
    pthread_mutex_t m;
    MQTTClient paho;
    pthread_t thread;
    int stop;
    uint8_t sign_pk[32], sign_sk[64], dh_pk[32], dh_sk[32];
    ta_client clients[TA_MAX];
    int n_clients;
    ta_group groups[4];
    int n_groups;
    ta_token tokens[TA_MAX];
    int n_tokens;
    uint64_t serial;
    uint32_t next_sender;
    uint8_t *rl;
    size_t rl_len;
    uint64_t rl_version;
    uint32_t grace_cut; /* KeyBundle.grace_seconds of retired epochs (0: not cut) */
    int mute_hello;     /* HELLO frames go unanswered (a broker dropping them) */
    /* observations */
    int enroll_frames;
    int hello_frames;
    size_t enroll1_len, enroll2_len, hello1_len, hello2_len, push_len;
} ta;

static ta_client *ta_client_find(ta *a, const char *id)
{
    for (int i = 0; i < a->n_clients; i++)
        if (strcmp(a->clients[i].id, id) == 0) return &a->clients[i];
    return NULL;
}

static ta_group *ta_group_find(ta *a, const char *name)
{
    for (int i = 0; i < a->n_groups; i++)
        if (strcmp(a->groups[i].name, name) == 0) return &a->groups[i];
    return NULL;
}

static ta_member *ta_member_find(ta_group *g, const char *id)
{
    for (int i = 0; i < g->n_members; i++)
        if (strcmp(g->members[i].id, id) == 0) return &g->members[i];
    return NULL;
}

static void ta_group_add(ta *a, const char *name, const char *filter)
{
    ta_group *g = &a->groups[a->n_groups++];
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", name);
    snprintf(g->filter, sizeof g->filter, "%s", filter);
    g->epoch = 1;
    randombytes_buf(g->secret[1], 32);
    g->created[1] = now_s();
}

/* Current epoch of every group the client is in, plus the previous one (grace). */
static size_t ta_bundles(ta *a, const char *id, mqe2e_key_bundle *out, size_t cap)
{
    size_t n = 0;
    for (int i = 0; i < a->n_groups; i++) {
        ta_group *g = &a->groups[i];
        ta_member *mb = ta_member_find(g, id);
        if (mb == NULL) continue;
        for (uint32_t e = g->epoch > 1 ? g->epoch - 1 : 1; e <= g->epoch && n < cap; e++) {
            mqe2e_key_bundle *b = &out[n++];
            memset(b, 0, sizeof *b);
            snprintf(b->group, sizeof b->group, "%s", g->name);
            snprintf(b->topic_filter, sizeof b->topic_filter, "%s", g->filter);
            b->epoch = e;
            memcpy(b->secret, g->secret[e], 32);
            b->created_at = g->created[e];
            b->sender_id = mb->sender;
            b->retired_at = g->retired[e];
            if (b->retired_at != 0) b->grace_seconds = a->grace_cut;
        }
    }
    return n;
}

static void ta_publish(ta *a, const char *topic, const uint8_t *data, size_t len, int retained)
{
    MQTTClient_deliveryToken dt = 0;
    cr_assert_eq(MQTTClient_publish(a->paho, topic, (int)len, data, 1, retained, &dt),
                 MQTTCLIENT_SUCCESS);
}

static void ta_publish_to(ta *a, const char *id, const uint8_t *data, size_t len)
{
    char topic[128];
    snprintf(topic, sizeof topic, PREFIX "/client/%s", id);
    ta_publish(a, topic, data, len, 0);
}

static void ta_on_enroll(ta *a, const uint8_t *data, size_t len)
{
    mqe2e_enroll_authority *st = NULL;
    mqe2e_enroll_request req;
    if (mqe2e_enroll_accept_read(&st, &req, a->dh_sk, PREFIX, data, len) != MQE2E_OK) return;
    pthread_mutex_lock(&a->m);
    a->enroll_frames++;
    a->enroll1_len = len;
    ta_token *t = NULL;
    for (int i = 0; i < a->n_tokens; i++)
        if (memcmp(a->tokens[i].id, req.token_id, 16) == 0) t = &a->tokens[i];
    if (t == NULL || mqe2e_enroll_accept_verify_mac(st, t->token) != MQE2E_OK) {
        pthread_mutex_unlock(&a->m);
        mqe2e_enroll_authority_free(st);
        return;
    }
    mqe2e_control_update reply;
    mqe2e_key_bundle bundles[16];
    uint8_t *cred = NULL;
    size_t cred_len = 0;
    memset(&reply, 0, sizeof reply);
    if (strcmp(t->client_id, req.client_id) != 0) {
        reply.status = MQE2E_STATUS_REFUSED;
    } else if (t->used && memcmp(t->used_by, req.dh_public, 32) != 0) {
        reply.status = MQE2E_STATUS_TOKEN_USED;
    } else {
        t->used = 1;
        memcpy(t->used_by, req.dh_public, 32);
        ta_client *c = ta_client_find(a, req.client_id);
        if (c == NULL) {
            c = &a->clients[a->n_clients++];
            memset(c, 0, sizeof *c);
            snprintf(c->id, sizeof c->id, "%s", req.client_id);
        }
        memcpy(c->dh, req.dh_public, 32);
        memcpy(c->sign, req.sign_public, 32);
        for (int i = 0; i < t->n_groups; i++) {
            ta_group *g = ta_group_find(a, t->groups[i]);
            if (g != NULL && ta_member_find(g, c->id) == NULL) {
                ta_member *mb = &g->members[g->n_members++];
                snprintf(mb->id, sizeof mb->id, "%s", c->id);
                mb->sender = ++a->next_sender;
            }
        }
        mqe2e_grant grant = {"#", MQE2E_RIGHT_ALL};
        mqe2e_credential_request cr;
        memset(&cr, 0, sizeof cr);
        cr.client_id = c->id;
        cr.role = "device";
        memcpy(cr.sign_public, c->sign, 32);
        memcpy(cr.dh_public, c->dh, 32);
        cr.grants = &grant;
        cr.n_grants = 1;
        cr.issued_at = now_s() - 10;
        cr.expires_at = now_s() + 3600;
        cr.serial = ++a->serial;
        cr_assert_eq(mqe2e_credential_issue(&cred, &cred_len, a->sign_sk, &cr), MQE2E_OK);
        reply.credential = cred;
        reply.credential_len = cred_len;
        reply.n_bundles = ta_bundles(a, c->id, bundles, 16);
        reply.bundles = bundles;
        reply.revocation_list = a->rl;
        reply.revocation_list_len = a->rl_len;
    }
    uint8_t out[8192];
    size_t out_len = 0;
    cr_assert_eq(mqe2e_enroll_accept_write(st, out, sizeof out, &out_len, AUTH_ID, &reply),
                 MQE2E_OK);
    a->enroll2_len = out_len;
    pthread_mutex_unlock(&a->m);
    ta_publish_to(a, req.client_id, out, out_len);
    sodium_memzero(bundles, sizeof bundles);
    free(cred);
    mqe2e_enroll_authority_free(st);
}

static void ta_on_hello(ta *a, const uint8_t *data, size_t len)
{
    mqe2e_hello_authority *st = NULL;
    mqe2e_hello_request req;
    int hrc = mqe2e_hello_accept_read(&st, &req, a->dh_sk, PREFIX, data, len);
    if (getenv("CP_DEBUG")) printf("  authority: HELLO read: %s\n", mqe2e_error_name(hrc));
    if (hrc != MQE2E_OK) return;
    pthread_mutex_lock(&a->m);
    if (a->mute_hello) {
        pthread_mutex_unlock(&a->m);
        mqe2e_hello_authority_free(st);
        return;
    }
    a->hello_frames++;
    a->hello1_len = len;
    ta_client *c = ta_client_find(a, req.client_id);
    if (c == NULL || mqe2e_hello_accept_check_static(st, c->dh) != MQE2E_OK) {
        pthread_mutex_unlock(&a->m);
        mqe2e_hello_authority_free(st);
        return;
    }
    mqe2e_control_update reply;
    mqe2e_key_bundle bundles[16];
    memset(&reply, 0, sizeof reply);
    if (c->revoked) {
        reply.status = MQE2E_STATUS_REVOKED;
    } else {
        reply.n_bundles = ta_bundles(a, c->id, bundles, 16);
        reply.bundles = bundles;
        reply.revocation_list = a->rl;
        reply.revocation_list_len = a->rl_len;
        reply.push_seq = c->push_seq;
    }
    uint8_t out[8192];
    size_t out_len = 0;
    cr_assert_eq(mqe2e_hello_accept_write(st, out, sizeof out, &out_len, AUTH_ID, &reply),
                 MQE2E_OK);
    a->hello2_len = out_len;
    char id[64];
    snprintf(id, sizeof id, "%s", c->id);
    pthread_mutex_unlock(&a->m);
    ta_publish_to(a, id, out, out_len);
    sodium_memzero(bundles, sizeof bundles);
    mqe2e_hello_authority_free(st);
}

/* Frames copied out of Paho's callback; handled (and answered) by ta_loop,
 * because the sync client must not be called from its own callbacks. */
typedef struct ta_frame {
    struct ta_frame *next;
    size_t len;
    uint8_t data[];
} ta_frame;

static ta_frame *ta_q_head, *ta_q_tail;
static pthread_cond_t ta_q_cond = PTHREAD_COND_INITIALIZER;

static int ta_on_message(void *ctx, char *topic, int tl, MQTTClient_message *m)
{
    ta *a = ctx;
    (void)tl;
    ta_frame *f = malloc(sizeof *f + (size_t)m->payloadlen + 1);
    f->next = NULL;
    f->len = (size_t)m->payloadlen;
    memcpy(f->data, m->payload, f->len);
    pthread_mutex_lock(&a->m);
    if (ta_q_tail != NULL)
        ta_q_tail->next = f;
    else
        ta_q_head = f;
    ta_q_tail = f;
    pthread_cond_signal(&ta_q_cond);
    pthread_mutex_unlock(&a->m);
    MQTTClient_freeMessage(&m);
    MQTTClient_free(topic);
    return 1;
}

static void *ta_loop(void *arg)
{
    ta *a = arg;
    pthread_mutex_lock(&a->m);
    for (;;) {
        while (ta_q_head == NULL && !a->stop)
            pthread_cond_wait(&ta_q_cond, &a->m);
        if (a->stop) break;
        ta_frame *fr = ta_q_head;
        ta_q_head = fr->next;
        if (ta_q_head == NULL) ta_q_tail = NULL;
        pthread_mutex_unlock(&a->m);
        mqe2e_control_frame f;
        if (fr->len > 0 && mqe2e_control_frame_decode(&f, fr->data, fr->len) == MQE2E_OK) {
            if (f.kind == MQE2E_CONTROL_ENROLL) ta_on_enroll(a, fr->data, fr->len);
            if (f.kind == MQE2E_CONTROL_HELLO) ta_on_hello(a, fr->data, fr->len);
        }
        free(fr);
        pthread_mutex_lock(&a->m);
    }
    while (ta_q_head != NULL) {
        ta_frame *fr = ta_q_head;
        ta_q_head = fr->next;
        free(fr);
    }
    ta_q_tail = NULL;
    pthread_mutex_unlock(&a->m);
    return NULL;
}

static void ta_start(ta *a, const tb_broker *b)
{
    memset(a, 0, sizeof *a);
    pthread_mutex_init(&a->m, NULL);
    crypto_sign_keypair(a->sign_pk, a->sign_sk);
    crypto_box_keypair(a->dh_pk, a->dh_sk);
    cr_assert_eq(MQTTClient_create(&a->paho, tb_broker_uri(b), "test-authority",
                                   MQTTCLIENT_PERSISTENCE_NONE, NULL),
                 MQTTCLIENT_SUCCESS);
    MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer;
    co.cleansession = 1;
    cr_assert_eq(MQTTClient_setCallbacks(a->paho, a, NULL, ta_on_message, NULL),
                 MQTTCLIENT_SUCCESS);
    cr_assert_eq(MQTTClient_connect(a->paho, &co), MQTTCLIENT_SUCCESS);
    cr_assert_eq(MQTTClient_subscribe(a->paho, PREFIX "/authority", 1), MQTTCLIENT_SUCCESS);
    pthread_create(&a->thread, NULL, ta_loop, a);
}

static void ta_stop(ta *a)
{
    pthread_mutex_lock(&a->m);
    a->stop = 1;
    pthread_cond_signal(&ta_q_cond);
    pthread_mutex_unlock(&a->m);
    pthread_join(a->thread, NULL);
    MQTTClient_disconnect(a->paho, 1000);
    MQTTClient_destroy(&a->paho);
    free(a->rl);
    sodium_memzero(a, sizeof *a);
}

/* A ticket for @p id joining the given groups; *text is the encoded ticket. */
static char *ta_ticket(ta *a, const char *id, const char *g1, const char *g2)
{
    pthread_mutex_lock(&a->m);
    ta_token *t = &a->tokens[a->n_tokens++];
    memset(t, 0, sizeof *t);
    randombytes_buf(t->id, 16);
    randombytes_buf(t->token, 32);
    snprintf(t->client_id, sizeof t->client_id, "%s", id);
    if (g1 != NULL) snprintf(t->groups[t->n_groups++], 32, "%s", g1);
    if (g2 != NULL) snprintf(t->groups[t->n_groups++], 32, "%s", g2);
    mqe2e_ticket tk;
    memset(&tk, 0, sizeof tk);
    memcpy(tk.authority_sign_public, a->sign_pk, 32);
    memcpy(tk.authority_dh_public, a->dh_pk, 32);
    snprintf(tk.authority_id, sizeof tk.authority_id, AUTH_ID);
    snprintf(tk.control_prefix, sizeof tk.control_prefix, PREFIX);
    memcpy(tk.token_id, t->id, 16);
    memcpy(tk.token, t->token, 32);
    snprintf(tk.client_id, sizeof tk.client_id, "%s", id);
    tk.expires_at = now_s() + 600;
    pthread_mutex_unlock(&a->m);
    char *text = NULL;
    cr_assert_eq(mqe2e_ticket_encode(&text, &tk), MQE2E_OK);
    mqe2e_ticket_wipe(&tk);
    return text;
}

/* Seal and publish a push to one client (lock held). */
static void ta_push_locked(ta *a, ta_client *c, const char *removed)
{
    mqe2e_control_update push;
    mqe2e_key_bundle bundles[16];
    mqe2e_group_name rg;
    memset(&push, 0, sizeof push);
    push.push_seq = ++c->push_seq;
    push.n_bundles = ta_bundles(a, c->id, bundles, 16);
    push.bundles = bundles;
    push.revocation_list = a->rl;
    push.revocation_list_len = a->rl_len;
    if (removed != NULL) {
        snprintf(rg.name, sizeof rg.name, "%s", removed);
        push.removed_groups = &rg;
        push.n_removed_groups = 1;
    }
    cr_assert_eq(mqe2e_push_seal(c->last_push, sizeof c->last_push, &c->last_push_len, a->dh_sk,
                                 c->dh, PREFIX, AUTH_ID, &push),
                 MQE2E_OK);
    a->push_len = c->last_push_len;
    sodium_memzero(bundles, sizeof bundles);
    ta_publish_to(a, c->id, c->last_push, c->last_push_len);
}

/* New epoch for @p group, pushed to every member except @p skip (NULL: none). */
static void ta_rotate(ta *a, const char *group, const char *skip)
{
    pthread_mutex_lock(&a->m);
    ta_group *g = ta_group_find(a, group);
    cr_assert_not_null(g);
    cr_assert_lt(g->epoch, TA_EPOCHS);
    g->retired[g->epoch] = now_s();
    g->epoch++;
    randombytes_buf(g->secret[g->epoch], 32);
    g->created[g->epoch] = now_s();
    for (int i = 0; i < g->n_members; i++) {
        ta_client *c = ta_client_find(a, g->members[i].id);
        if (c == NULL || c->revoked || (skip != NULL && strcmp(skip, c->id) == 0)) continue;
        ta_push_locked(a, c, NULL);
    }
    pthread_mutex_unlock(&a->m);
}

/* Revoke a client: new signed list (retained), out of every group, rotate them. */
static void ta_revoke(ta *a, const char *id)
{
    char rotate[4][32];
    int n_rotate = 0;
    pthread_mutex_lock(&a->m);
    ta_client *c = ta_client_find(a, id);
    cr_assert_not_null(c);
    c->revoked = 1;
    mqe2e_revocation_entry e[TA_MAX];
    size_t n = 0;
    for (int i = 0; i < a->n_clients; i++)
        if (a->clients[i].revoked) {
            e[n].client_id = a->clients[i].id;
            e[n].serial = 0;
            e[n].revoked_at = now_s();
            n++;
        }
    free(a->rl);
    a->rl = NULL;
    cr_assert_eq(
        mqe2e_revocation_list_sign(&a->rl, &a->rl_len, a->sign_sk, ++a->rl_version, now_s(), e, n),
        MQE2E_OK);
    for (int i = 0; i < a->n_groups; i++) {
        ta_group *g = &a->groups[i];
        for (int j = 0; j < g->n_members; j++)
            if (strcmp(g->members[j].id, id) == 0) {
                g->members[j] = g->members[--g->n_members];
                snprintf(rotate[n_rotate++], 32, "%s", g->name);
                break;
            }
    }
    uint8_t *rl = malloc(a->rl_len);
    size_t rl_len = a->rl_len;
    memcpy(rl, a->rl, rl_len);
    pthread_mutex_unlock(&a->m);
    ta_publish(a, PREFIX "/revocations", rl, rl_len, 1);
    free(rl);
    for (int i = 0; i < n_rotate; i++)
        ta_rotate(a, rotate[i], NULL);
}

/* ====================================================================== */
/* Fixture, CLI and encrypted clients                                     */

static af_fixture fx;
static ta auth;

static void setup(void)
{
    memset(&fx, 0, sizeof fx);
    af_prepare(&fx);
    ta_start(&auth, &fx.broker);
    ta_group_add(&auth, "sensors", "sensors/#");
}

static void teardown(void)
{
    if (getenv("CP_DEBUG")) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "cat %s/mosquitto.log", fx.broker.dir);
        (void)system(cmd);
    }
    ta_stop(&auth);
    af_teardown(&fx);
}

TestSuite(control_plane, .init = setup, .fini = teardown, .timeout = 120);

/* Run `mqe2e enroll` with @p ticket; its stdout into *out. Exit code. */
static int run_enroll(const char *id, const char *ticket, char *out, size_t cap)
{
    int rc = af_enroll(&fx, id, ticket);
    if (out != NULL) {
        char outfile[600];
        snprintf(outfile, sizeof outfile, "%s/%s.enroll.out", fx.dir, id);
        char *text = tu_read_file(outfile, NULL);
        snprintf(out, cap, "%s", text != NULL ? text : "");
        free(text);
    }
    return rc;
}

static void enroll(const char *id, const char *g1, const char *g2)
{
    char *ticket = ta_ticket(&auth, id, g1, g2);
    char out[1024];
    int rc = run_enroll(id, ticket, out, sizeof out);
    mqe2e_ticket_text_free(ticket);
    cr_assert_eq(rc, 0, "enroll %s exited %d: %s", id, rc, out);
}

static mqe2e_keystore *open_ks(const char *id)
{
    return af_open_ks(&fx, id);
}

static int wait_count(inbox *ib, int n)
{
    return inbox_wait(ib, 0, n, WAIT_MS);
}

static void on_log(void *ctx, mqe2e_log_level level, const char *message)
{
    (void)ctx;
    printf("  log[%d] %s\n", (int)level, message);
}

static mqe2e_control_counters ctl_counters(mqe2e_MQTTClient c)
{
    mqe2e_control_counters k;
    cr_assert_eq(mqe2e_MQTTClient_getControlCounters(c, &k), MQTTCLIENT_SUCCESS);
    return k;
}

/* Wait until a control counter (selected by offset) reaches n. */
#define WAIT_CTL(c, field, n)                                                                      \
    do {                                                                                           \
        long dl_ = tu_now_ms() + WAIT_MS;                                                             \
        while (ctl_counters(c).field < (uint64_t)(n)) {                                            \
            cr_assert_lt(tu_now_ms(), dl_, "timeout waiting for %s >= %d", #field, (int)(n));         \
            tu_sleep_ms(10);                                                                          \
        }                                                                                          \
    } while (0)

static uint64_t drops_total(mqe2e_MQTTClient c)
{
    mqe2e_counters k;
    uint64_t t = 0;
    cr_assert_eq(mqe2e_MQTTClient_getCounters(c, &k), MQTTCLIENT_SUCCESS);
    for (int i = 0; i < MQE2E_DROP_REASON_COUNT; i++)
        t += k.dropped[i];
    return t;
}

static uint64_t drops_of(mqe2e_MQTTClient c, mqe2e_drop_reason r)
{
    mqe2e_counters k;
    cr_assert_eq(mqe2e_MQTTClient_getCounters(c, &k), MQTTCLIENT_SUCCESS);
    return k.dropped[r];
}

/* An encrypted client with the control plane (the keystore is enrolled). */
static mqe2e_MQTTClient enc_client(const char *mqtt_id, mqe2e_keystore *ks,
                                   const mqe2e_policy *policy, inbox *ib, int clean)
{
    mqe2e_MQTTClient_securityOptions so = mqe2e_MQTTClient_securityOptions_initializer;
    so.keystore = ks;
    so.policy = policy;
    so.onDropped = ib != NULL ? inbox_on_dropped : NULL;
    so.onLog = on_log;
    so.logLevel = getenv("CP_DEBUG") ? MQE2E_LOG_DEBUG : MQE2E_LOG_WARNING;
    so.context = ib;
    return inbox_client_open(&fx.broker, mqtt_id, &so, ib != NULL ? inbox_on_message : NULL, 20,
                          clean);
}

/* An encrypted client with its own log sink, level and freshness bound
 * (0: the default), callbacks into ib, clean session, connected. */
static mqe2e_MQTTClient so_client(const char *mqtt_id, mqe2e_keystore *ks, inbox *ib,
                                  mqe2e_MQTTClient_log *log, mqe2e_log_level level,
                                  unsigned fresh_max)
{
    mqe2e_MQTTClient_securityOptions so = mqe2e_MQTTClient_securityOptions_initializer;
    so.keystore = ks;
    so.onDropped = inbox_on_dropped;
    so.onLog = log;
    so.logLevel = getenv("CP_DEBUG") ? MQE2E_LOG_DEBUG : level;
    so.context = ib;
    so.freshMaxSeconds = fresh_max;
    return inbox_client_open(&fx.broker, mqtt_id, &so, inbox_on_message, -1, 1);
}

static void close_client(mqe2e_MQTTClient *c)
{
    mqe2e_MQTTClient_disconnect(*c, 1000);
    mqe2e_MQTTClient_destroy(c);
}

static void publish_text(mqe2e_MQTTClient c, const char *topic, const char *text, int qos)
{
    MQTTClient_deliveryToken dt = 0;
    cr_assert_eq(mqe2e_MQTTClient_publish(c, topic, (int)strlen(text), text, qos, 0, &dt),
                 MQTTCLIENT_SUCCESS);
    if (dt != 0) cr_assert_eq(mqe2e_MQTTClient_waitForCompletion(c, dt, 5000), MQTTCLIENT_SUCCESS);
}

/* A raw Paho client (the attacker, or an observer of the wire); rb may be NULL. */
static MQTTClient raw_client(const char *id, rawbox *rb)
{
    return ts_raw_client(tb_broker_uri(&fx.broker), id, rb);
}

static void raw_close(MQTTClient *r)
{
    MQTTClient_disconnect(*r, 1000);
    MQTTClient_destroy(r);
}

static void raw_publish(MQTTClient r, const char *topic, const void *data, size_t len)
{
    MQTTClient_deliveryToken dt = 0;
    cr_assert_eq(MQTTClient_publish(r, topic, (int)len, data, 1, 0, &dt), MQTTCLIENT_SUCCESS);
    cr_assert_eq(MQTTClient_waitForCompletion(r, dt, 5000), MQTTCLIENT_SUCCESS);
}

/* Next message the raw client saw, waiting up to WAIT_MS; 0 on timeout. */
static int raw_next(rawbox *rb, char *topic, size_t tcap, uint8_t *buf, size_t cap, size_t *len)
{
    long deadline = tu_now_ms() + WAIT_MS;
    while (tu_now_ms() < deadline) {
        pthread_mutex_lock(&rb->m);
        if (rb->next < rb->n) {
            int i = rb->next++;
            snprintf(topic, tcap, "%s", rb->topic[i]);
            *len = rb->len[i] < cap ? rb->len[i] : cap;
            memcpy(buf, rb->data[i], *len);
            pthread_mutex_unlock(&rb->m);
            return 1;
        }
        pthread_mutex_unlock(&rb->m);
        tu_sleep_ms(10);
    }
    return 0;
}

static rawbox rb_spy, rb_wire;

/* ====================================================================== */
/* Tests                                                                  */

Test(control_plane, enroll_via_cli_one_round_trip)
{
    char *ticket = ta_ticket(&auth, "dev-1", "sensors", NULL);
    char out[1024];
    int rc = run_enroll("dev-1", ticket, out, sizeof out);
    cr_assert_eq(rc, 0, "exit %d: %s", rc, out);
    cr_assert(strstr(out, "enrolled dev-1 with authority") != NULL, "summary: %s", out);
    cr_assert(strstr(out, "sensors") != NULL, "summary: %s", out);
    pthread_mutex_lock(&auth.m);
    cr_assert_eq(auth.enroll_frames, 1, "one round trip");
    printf("  ENROLL step 1: %zu bytes, step 2: %zu bytes\n", auth.enroll1_len, auth.enroll2_len);
    pthread_mutex_unlock(&auth.m);

    mqe2e_keystore *ks = open_ks("dev-1");
    mqe2e_authority_pin pin;
    cr_assert_eq(mqe2e_keystore_authority(ks, &pin), MQE2E_OK);
    cr_assert_str_eq(pin.authority_id, AUTH_ID);
    cr_assert_str_eq(pin.control_prefix, PREFIX);
    cr_assert_arr_eq(pin.sign_public, auth.sign_pk, 32);
    cr_assert_arr_eq(pin.dh_public, auth.dh_pk, 32);
    const uint8_t *cb;
    size_t cl;
    cr_assert_eq(mqe2e_keystore_credential(ks, &cb, &cl), MQE2E_OK);
    mqe2e_credential *cred = NULL;
    cr_assert_eq(mqe2e_credential_verify(&cred, cb, cl, auth.sign_pk, now_s()), MQE2E_OK);
    cr_assert_str_eq(mqe2e_credential_client_id(cred), "dev-1");
    mqe2e_credential_free(cred);
    uint32_t epoch = 0, sender = 0;
    cr_assert_eq(mqe2e_keystore_group_current_epoch(ks, "sensors", &epoch), MQE2E_OK);
    cr_assert_eq(epoch, 1);
    cr_assert_eq(mqe2e_keystore_group_sender_id(ks, "sensors", &sender), MQE2E_OK);
    cr_assert_eq(sender, 1, "the authority's sender id");
    mqe2e_keystore_close(ks);

    /* The same ticket on another device: refused by the authority (exit 2). */
    char ks2[512];
    af_ks_path(&fx, ks2, sizeof ks2, "dev-1");
    unlink(ks2);
    rc = run_enroll("dev-1", ticket, out, sizeof out);
    cr_assert_eq(rc, 2, "token used by another device: exit %d", rc);
    mqe2e_ticket_text_free(ticket);

    /* A ticket whose token the authority does not know gets no answer: timeout. */
    mqe2e_ticket tk;
    ticket = ta_ticket(&auth, "dev-2", NULL, NULL);
    cr_assert_eq(mqe2e_ticket_decode(&tk, ticket), MQE2E_OK);
    mqe2e_ticket_text_free(ticket);
    tk.token[0] ^= 1;
    cr_assert_eq(mqe2e_ticket_encode(&ticket, &tk), MQE2E_OK);
    mqe2e_ticket_wipe(&tk);
    char cmd[4096], path[512];
    const char *cli = fx.cli;
    af_ks_path(&fx, path, sizeof path, "dev-2");
    snprintf(cmd, sizeof cmd,
             "MQE2E_TICKET='%s' '%s' enroll -K '%s' --key-file '%s' -h 127.0.0.1 -p %d -W 3 "
             ">/dev/null 2>&1",
             ticket, cli, path, fx.keyfile, fx.broker.port);
    int st = system(cmd);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 4, "wrong token: timeout exit 4");
    mqe2e_ticket_text_free(ticket);
    /* No broker: exit 3. */
    ticket = ta_ticket(&auth, "dev-3", NULL, NULL);
    af_ks_path(&fx, path, sizeof path, "dev-3");
    snprintf(cmd, sizeof cmd,
             "MQE2E_TICKET='%s' '%s' enroll -K '%s' --key-file '%s' -h 127.0.0.1 -p 1 -W 3 "
             ">/dev/null 2>&1",
             ticket, cli, path, fx.keyfile);
    st = system(cmd);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 3, "no broker: exit 3");
    mqe2e_ticket_text_free(ticket);
}

/* A signed revocation list of @p version revoking "ghost", as the authority's. */
static void ta_set_revocations(ta *a, uint64_t version)
{
    mqe2e_revocation_entry e = {"ghost", 0, now_s()};
    pthread_mutex_lock(&a->m);
    free(a->rl);
    a->rl = NULL;
    a->rl_version = version;
    cr_assert_eq(
        mqe2e_revocation_list_sign(&a->rl, &a->rl_len, a->sign_sk, version, now_s(), &e, 1),
        MQE2E_OK);
    pthread_mutex_unlock(&a->m);
}

/* `mqe2e enroll` applies the reply the way the session applies a HELLO reply
 * (mqe2e_control_update_apply, PROTOCOL.md 9.3): a retired epoch whose cut
 * grace has already ended is not kept, and a revocation list older than the
 * keystore's is refused, with a message. */
Test(control_plane, enroll_applies_the_reply_like_the_session)
{
    pthread_mutex_lock(&auth.m);
    ta_group *g = ta_group_find(&auth, "sensors");
    /* Epoch 1 retired 100 s ago after a member left: its grace was cut to 10 s. */
    g->retired[1] = now_s() - 100U;
    g->epoch = 2;
    randombytes_buf(g->secret[2], 32);
    g->created[2] = now_s() - 100U;
    auth.grace_cut = 10;
    pthread_mutex_unlock(&auth.m);
    ta_set_revocations(&auth, 2);
    enroll("dev-g", "sensors", NULL);

    mqe2e_keystore *ks = open_ks("dev-g");
    uint32_t epoch = 0;
    uint8_t secret[32];
    uint64_t version = 0;
    const uint8_t *list;
    size_t list_len;
    cr_assert_eq(mqe2e_keystore_group_current_epoch(ks, "sensors", &epoch), MQE2E_OK);
    cr_assert_eq(epoch, 2);
    cr_assert_eq(mqe2e_keystore_group_secret(ks, "sensors", 1, secret, NULL), MQE2E_ERR_NOT_FOUND,
                 "the epoch whose cut grace ended is dropped, as a HELLO reply drops it");
    cr_assert_eq(mqe2e_keystore_revocation_list(ks, &list, &list_len, &version), MQE2E_OK);
    cr_assert_eq(version, 2);
    mqe2e_keystore_close(ks);

    /* Enrolled again (same keystore, new ticket) by an authority serving an
     * older list (a rolled-back database, a replayed reply's list): refused. */
    ta_set_revocations(&auth, 1);
    char *ticket = ta_ticket(&auth, "dev-g", "sensors", NULL);
    int rc = af_enroll(&fx, "dev-g", ticket);
    mqe2e_ticket_text_free(ticket);
    cr_assert_eq(rc, 0, "the reply is authenticated: the enrollment stands");
    char errfile[600];
    snprintf(errfile, sizeof errfile, "%s/dev-g.enroll.err", fx.dir);
    char *err = tu_read_file(errfile, NULL);
    cr_assert(err != NULL && strstr(err, "older than the keystore's (version 1 < 2)") != NULL,
              "the refusal is said: %s", err != NULL ? err : "(none)");
    free(err);
    ks = open_ks("dev-g");
    cr_assert_eq(mqe2e_keystore_revocation_list(ks, &list, &list_len, &version), MQE2E_OK);
    cr_assert_eq(version, 2, "the keystore keeps the newer list");
    mqe2e_keystore_close(ks);
}

Test(control_plane, hello_on_connect_fetches_rotated_epoch)
{
    enroll("dev-a", "sensors", NULL);
    /* Rotated while the device was not connected (the push is lost: no session). */
    ta_rotate(&auth, "sensors", NULL);
    mqe2e_keystore *ks = open_ks("dev-a");
    uint32_t epoch = 0;
    cr_assert_eq(mqe2e_keystore_group_current_epoch(ks, "sensors", &epoch), MQE2E_OK);
    cr_assert_eq(epoch, 1);
    inbox ib;
    inbox_init(&ib);
    mqe2e_MQTTClient c = enc_client("dev-a", ks, NULL, &ib, 1);
    WAIT_CTL(c, handshakes_ok, 1);
    mqe2e_control_counters k = ctl_counters(c);
    cr_assert_geq(k.hellos_sent, 1);
    pthread_mutex_lock(&auth.m);
    printf("  HELLO step 1: %zu bytes, step 2: %zu bytes; PUSH: %zu bytes\n", auth.hello1_len,
           auth.hello2_len, auth.push_len);
    pthread_mutex_unlock(&auth.m);
    close_client(&c);
    cr_assert_eq(mqe2e_keystore_group_current_epoch(ks, "sensors", &epoch), MQE2E_OK);
    cr_assert_eq(epoch, 2, "HELLO brought the new epoch");
    mqe2e_keystore_close(ks);
}

Test(control_plane, pubsub_between_enrolled_clients_and_rotation_push)
{
    enroll("pub-1", "sensors", NULL);
    enroll("sub-1", "sensors", NULL);
    mqe2e_keystore *kp = open_ks("pub-1"), *ks = open_ks("sub-1");
    inbox ib, ipub;
    inbox_init(&ib);
    inbox_init(&ipub);
    mqe2e_MQTTClient sub = enc_client("sub-1", ks, NULL, &ib, 1);
    mqe2e_MQTTClient pub = enc_client("pub-1", kp, NULL, &ipub, 1);
    WAIT_CTL(sub, handshakes_ok, 1);
    WAIT_CTL(pub, handshakes_ok, 1);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(sub, "sensors/#", 1), MQTTCLIENT_SUCCESS);
    MQTTClient spy = raw_client("spy", &rb_spy);
    cr_assert_eq(MQTTClient_subscribe(spy, "sensors/#", 1), MQTTCLIENT_SUCCESS);

    publish_text(pub, "sensors/hr", "hr=61", 1);
    cr_assert(wait_count(&ib, 1));
    cr_assert_str_eq(ib.payload[0], "hr=61");

    /* Rotation while both are connected: pushes applied, new epoch on the wire. */
    ta_rotate(&auth, "sensors", NULL);
    WAIT_CTL(pub, pushes_applied, 1);
    WAIT_CTL(sub, pushes_applied, 1);
    publish_text(pub, "sensors/hr", "hr=62", 1);
    cr_assert(wait_count(&ib, 2));
    cr_assert_str_eq(ib.payload[1], "hr=62");
    char topic[64];
    uint8_t buf[512];
    size_t len = 0;
    mqe2e_envelope_view v;
    cr_assert(raw_next(&rb_spy, topic, sizeof topic, buf, sizeof buf, &len));
    cr_assert_eq(mqe2e_envelope_parse(&v, buf, len), MQE2E_OK);
    cr_assert_eq(v.header.epoch, 1);
    cr_assert(raw_next(&rb_spy, topic, sizeof topic, buf, sizeof buf, &len));
    cr_assert_eq(mqe2e_envelope_parse(&v, buf, len), MQE2E_OK);
    cr_assert_eq(v.header.epoch, 2, "sent under the pushed epoch");
    cr_assert(!contains(buf, len, "hr=62"), "no plaintext on the wire");
    cr_assert_eq(drops_total(sub), 0);
    raw_close(&spy);
    close_client(&pub);
    close_client(&sub);
    mqe2e_keystore_close(kp);
    mqe2e_keystore_close(ks);
}

Test(control_plane, offline_device_holds_queued_messages_until_hello)
{
    enroll("pub-2", "sensors", NULL);
    enroll("dev-off", "sensors", NULL);
    mqe2e_keystore *kp = open_ks("pub-2"), *kd = open_ks("dev-off");
    inbox ib, ipub;
    inbox_init(&ib);
    inbox_init(&ipub);
    mqe2e_MQTTClient pub = enc_client("pub-2", kp, NULL, &ipub, 1);
    /* The device's persistent session subscribes, then it goes offline. */
    mqe2e_MQTTClient dev = enc_client("dev-off", kd, NULL, &ib, 0);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(dev, "sensors/#", 1), MQTTCLIENT_SUCCESS);
    WAIT_CTL(dev, handshakes_ok, 1);
    WAIT_CTL(pub, handshakes_ok, 1);
    close_client(&dev);

    publish_text(pub, "sensors/t", "m00", 1);
    publish_text(pub, "sensors/t", "m01", 1);
    publish_text(pub, "sensors/t", "m02", 1);
    /* Rotation; the device misses the push (as if it expired), the publisher gets it. */
    ta_rotate(&auth, "sensors", "dev-off");
    WAIT_CTL(pub, pushes_applied, 1);
    char text[16];
    for (int i = 3; i < 13; i++) {
        snprintf(text, sizeof text, "m%02d", i);
        publish_text(pub, "sensors/t", text, 1);
    }
    /* Back online: epoch-1 messages open at once, epoch-2 ones wait for HELLO. */
    dev = enc_client("dev-off", kd, NULL, &ib, 0);
    cr_assert(wait_count(&ib, 13), "got %d of 13", inbox_count(&ib));
    tu_sleep_ms(200);
    cr_assert_eq(inbox_count(&ib), 13, "no duplicates");
    for (int i = 0; i < 13; i++) {
        snprintf(text, sizeof text, "m%02d", i);
        cr_assert_str_eq(ib.payload[i], text, "in order");
    }
    mqe2e_control_counters k = ctl_counters(dev);
    cr_assert_geq(k.held, 10, "held %llu", (unsigned long long)k.held);
    cr_assert_eq(k.released, k.held);
    cr_assert_eq(k.hold_dropped, 0);
    cr_assert_eq(drops_total(dev), 0, "none dropped");
    close_client(&dev);
    close_client(&pub);
    uint32_t epoch = 0;
    cr_assert_eq(mqe2e_keystore_group_current_epoch(kd, "sensors", &epoch), MQE2E_OK);
    cr_assert_eq(epoch, 2);
    mqe2e_keystore_close(kp);
    mqe2e_keystore_close(kd);
}

Test(control_plane, held_messages_expire_as_no_key)
{
    enroll("dev-h", "sensors", NULL);
    mqe2e_keystore *kd = open_ks("dev-h");
    inbox ib;
    inbox_init(&ib);
    mqe2e_MQTTClient dev = NULL;
    mqe2e_MQTTClient_securityOptions so = mqe2e_MQTTClient_securityOptions_initializer;
    MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer;
    cr_assert_eq(mqe2e_MQTTClient_create(&dev, tb_broker_uri(&fx.broker), "dev-h",
                                         MQTTCLIENT_PERSISTENCE_NONE, NULL),
                 MQTTCLIENT_SUCCESS);
    so.keystore = kd;
    so.onDropped = inbox_on_dropped;
    so.context = &ib;
    so.holdMaxCount = 16; /* one topic may take an eighth: 2 */
    so.holdMaxSeconds = 1;
    cr_assert_eq(mqe2e_MQTTClient_setSecurity(dev, &so), MQTTCLIENT_SUCCESS);
    cr_assert_eq(mqe2e_MQTTClient_setCallbacks(dev, &ib, NULL, inbox_on_message, NULL),
                 MQTTCLIENT_SUCCESS);
    cr_assert_eq(mqe2e_MQTTClient_connect(dev, &co), MQTTCLIENT_SUCCESS);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(dev, "sensors/#", 1), MQTTCLIENT_SUCCESS);
    WAIT_CTL(dev, handshakes_ok, 1);

    /* Envelopes claiming epoch 7, which the authority never issued. */
    uint8_t secret[32], env[256];
    size_t env_len = 0;
    mqe2e_sender_key sk;
    randombytes_buf(secret, sizeof secret);
    cr_assert_eq(mqe2e_sender_key_derive(&sk, secret, "sensors", 7, 99), MQE2E_OK);
    MQTTClient r = raw_client("forger", NULL);
    for (uint64_t s = 1; s <= 3; s++) {
        mqe2e_envelope_header h = {MQE2E_MODE_GROUP, 7, 99, s, 0U};
        cr_assert_eq(mqe2e_envelope_seal(env, sizeof env, &env_len, &sk, "sensors/x", "sensors", &h,
                                         (const uint8_t *)"x", 1),
                     MQE2E_OK);
        raw_publish(r, "sensors/x", env, env_len);
    }
    mqe2e_sender_key_wipe(&sk);
    long deadline = tu_now_ms() + WAIT_MS;
    while (drops_of(dev, MQE2E_DROP_NO_KEY) < 3) {
        cr_assert_lt(tu_now_ms(), deadline);
        tu_sleep_ms(20);
    }
    tu_sleep_ms(300);
    mqe2e_control_counters k = ctl_counters(dev);
    /* At most two fit (the topic's quota); a third fits only once one has
     * expired (1 s). */
    cr_assert_geq(k.held, 2);
    cr_assert_leq(k.held, 3);
    cr_assert_eq(k.hold_dropped, 3, "all three dropped: overflow or age");
    cr_assert_eq(drops_of(dev, MQE2E_DROP_NO_KEY), 3, "counted as no_key");
    cr_assert_eq(k.released, 0);
    cr_assert_eq(inbox_count(&ib), 0);
    cr_assert_geq(k.hellos_sent, 2, "an unknown epoch asks the authority");
    raw_close(&r);
    close_client(&dev);
    mqe2e_keystore_close(kd);
}

/* Issue 11, item 8: one client without the key publishes a ~1 MB envelope
 * naming epoch 0xFFFFFFFF and 100 envelopes of 12 kB naming the next epoch
 * (1.2 MB: more than the hold queue's 1 MiB), all on one topic. Before: the hold queue was full
 * (bytes) for 30 s and every genuine message behind it was dropped as no_key. Now: a known epoch is
 * never held, an epoch that far ahead or a message that large is not held,
 * one topic gets an eighth of the queue: every genuine message is delivered,
 * no forged one, and every forged one is accounted for. */
Test(control_plane, forged_epochs_cannot_silence_a_group)
{
    enroll("dev-q", "sensors", NULL);
    enroll("pub-q", "sensors", NULL);
    mqe2e_keystore *kd = open_ks("dev-q"), *kp = open_ks("pub-q");
    inbox ib, ipub;
    inbox_init(&ib);
    inbox_init(&ipub);
    mqe2e_MQTTClient dev = enc_client("dev-q", kd, NULL, &ib, 1);
    mqe2e_MQTTClient pub = enc_client("pub-q", kp, NULL, &ipub, 1);
    WAIT_CTL(dev, handshakes_ok, 1);
    WAIT_CTL(pub, handshakes_ok, 1);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(dev, "sensors/#", 1), MQTTCLIENT_SUCCESS);

    enum { SMALL = 100, GENUINE = 20 };
    size_t big_len = 1000000U, env_len = 0;
    uint8_t secret[32];
    uint8_t *pt = calloc(1, big_len), *env = malloc(big_len + 64U);
    cr_assert(pt != NULL && env != NULL);
    mqe2e_sender_key sk;
    randombytes_buf(secret, sizeof secret);
    MQTTClient r = raw_client("forger-q", NULL);
    cr_assert_eq(mqe2e_sender_key_derive(&sk, secret, "sensors", 0xFFFFFFFFU, 99), MQE2E_OK);
    mqe2e_envelope_header h = {MQE2E_MODE_GROUP, 0xFFFFFFFFU, 99, 1};
    cr_assert_eq(mqe2e_envelope_seal(env, big_len + 64U, &env_len, &sk, "sensors/x", "sensors", &h,
                                     pt, big_len - 64U),
                 MQE2E_OK);
    mqe2e_sender_key_wipe(&sk);
    raw_publish(r, "sensors/x", env, env_len);
    cr_assert_eq(mqe2e_sender_key_derive(&sk, secret, "sensors", 2, 98), MQE2E_OK);
    for (uint64_t s = 1; s <= SMALL; s++) {
        mqe2e_envelope_header hs = {MQE2E_MODE_GROUP, 2, 98, s};
        cr_assert_eq(mqe2e_envelope_seal(env, big_len, &env_len, &sk, "sensors/x", "sensors", &hs,
                                         pt, 12000),
                     MQE2E_OK);
        raw_publish(r, "sensors/x", env, env_len);
    }
    mqe2e_sender_key_wipe(&sk);
    /* The genuine sender, while the forgeries are in the queue. */
    for (int i = 0; i < GENUINE; i++) {
        char text[32];
        snprintf(text, sizeof text, "hr=%d", 60 + i);
        publish_text(pub, "sensors/hr", text, 1);
    }
    cr_assert(wait_count(&ib, GENUINE), "genuine messages were silenced: %d of %d delivered",
              inbox_count(&ib), GENUINE);
    /* Every forged frame accounted for: held (then expired) or dropped. */
    long deadline = tu_now_ms() + WAIT_MS;
    mqe2e_control_counters k = ctl_counters(dev);
    while (k.held + k.hold_dropped < 1U + SMALL) {
        cr_assert_lt(tu_now_ms(), deadline, "forged frames not accounted for");
        tu_sleep_ms(20);
        k = ctl_counters(dev);
    }
    fprintf(stderr, "forged: %u; held %llu, hold_dropped %llu, no_key %llu\n", 1U + SMALL,
            (unsigned long long)k.held, (unsigned long long)k.hold_dropped,
            (unsigned long long)drops_of(dev, MQE2E_DROP_NO_KEY));
    cr_assert_leq(k.held, 1U + SMALL, "genuine messages (known epoch) were held");
    /* The topic's quota (32 at a time) is not a bound on the total held any
     * more: the HELLO the first forgery triggers is answered without epoch 2,
     * so the forgeries held before it was sent are dropped as forged and
     * later ones take their room (held_qos1_messages_survive_a_forged_flood). */
    cr_assert_leq(k.held, SMALL, "the envelope 0xFFFFFFFF epochs ahead was held");
    cr_assert_eq(k.released, 0);
    cr_assert_eq(inbox_count(&ib), GENUINE, "a forged message was delivered");
    for (int i = 0; i < GENUINE; i++) {
        char text[32];
        snprintf(text, sizeof text, "hr=%d", 60 + i);
        cr_assert_str_eq(ib.payload[i], text);
    }
    free(pt);
    free(env);
    raw_close(&r);
    close_client(&pub);
    close_client(&dev);
    mqe2e_keystore_close(kd);
    mqe2e_keystore_close(kp);
}

/* Issue 11, item 8 (held QoS 1 messages are not lost): a forger floods the
 * receiver's hold queue, on the very topic the genuine sender uses, with
 * envelopes naming a future epoch (3, two ahead); then the group rotates to
 * epoch 2 behind the receiver's back (it misses the push) and the genuine
 * sender publishes 20 QoS 1 messages under it. Paho C acknowledges a QoS 1
 * PUBLISH before messageArrived runs, so a message dropped by a hold bound
 * is lost for good. Before: the forgeries took the topic's whole quota and
 * the genuine messages were dropped (no_key). Now: a message closer to the
 * receiver's epoch evicts held ones further ahead, and held unknown epochs
 * that predate an answered HELLO are dropped as forged: every genuine one
 * is delivered once the HELLO reply brings epoch 2. */
Test(control_plane, held_qos1_messages_survive_a_forged_flood)
{
    enroll("dev-f", "sensors", NULL);
    enroll("pub-f", "sensors", NULL);
    mqe2e_keystore *kd = open_ks("dev-f"), *kp = open_ks("pub-f");
    inbox ib, ipub;
    inbox_init(&ib);
    inbox_init(&ipub);
    mqe2e_MQTTClient dev = enc_client("dev-f", kd, NULL, &ib, 1);
    mqe2e_MQTTClient pub = enc_client("pub-f", kp, NULL, &ipub, 1);
    WAIT_CTL(dev, handshakes_ok, 1);
    WAIT_CTL(pub, handshakes_ok, 1);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(dev, "sensors/#", 1), MQTTCLIENT_SUCCESS);

    /* The flood: 100 forgeries at epoch 3 on the genuine topic, QoS 1. */
    enum { FORGED = 100, GENUINE = 20 };
    uint8_t secret[32], pt[200], env[512];
    size_t env_len = 0;
    mqe2e_sender_key sk;
    randombytes_buf(secret, sizeof secret);
    memset(pt, 'f', sizeof pt);
    cr_assert_eq(mqe2e_sender_key_derive(&sk, secret, "sensors", 3, 97), MQE2E_OK);
    MQTTClient r = raw_client("forger-f", NULL);
    for (uint64_t s = 1; s <= FORGED; s++) {
        mqe2e_envelope_header hs = {MQE2E_MODE_GROUP, 3, 97, s};
        cr_assert_eq(mqe2e_envelope_seal(env, sizeof env, &env_len, &sk, "sensors/hr", "sensors",
                                         &hs, pt, sizeof pt),
                     MQE2E_OK);
        raw_publish(r, "sensors/hr", env, env_len);
    }
    mqe2e_sender_key_wipe(&sk);
    long deadline = tu_now_ms() + WAIT_MS;
    while (ctl_counters(dev).held + ctl_counters(dev).hold_dropped < FORGED) {
        cr_assert_lt(tu_now_ms(), deadline, "the forgeries did not reach the receiver");
        tu_sleep_ms(20);
    }

    /* Epoch 2, which the receiver learns late. */
    ta_rotate(&auth, "sensors", "dev-f");
    WAIT_CTL(pub, pushes_applied, 1);
    for (int i = 0; i < GENUINE; i++) {
        char text[32];
        snprintf(text, sizeof text, "hr=%d", 60 + i);
        publish_text(pub, "sensors/hr", text, 1);
    }
    cr_assert(wait_count(&ib, GENUINE), "held genuine QoS 1 messages were lost: %d of %d delivered",
              inbox_count(&ib), GENUINE);
    for (int i = 0; i < GENUINE; i++) {
        char text[32];
        snprintf(text, sizeof text, "hr=%d", 60 + i);
        cr_assert_str_eq(ib.payload[i], text, "in order");
    }
    mqe2e_control_counters k = ctl_counters(dev);
    fprintf(stderr, "forged %d: held %llu, released %llu, hold_dropped %llu\n", FORGED,
            (unsigned long long)k.held, (unsigned long long)k.released,
            (unsigned long long)k.hold_dropped);
    cr_assert_eq(inbox_count(&ib), GENUINE, "a forged message was delivered");
    raw_close(&r);
    close_client(&pub);
    close_client(&dev);
    uint32_t e = 0;
    cr_assert_eq(mqe2e_keystore_group_current_epoch(kd, "sensors", &e), MQE2E_OK);
    cr_assert_eq(e, 2);
    mqe2e_keystore_close(kd);
    mqe2e_keystore_close(kp);
}

/* enc_client() whose keystore (opened by open_ks(@p id)) spools held QoS >= 1
 * messages that find no room next to its file (spoolKeystorePath). */
static mqe2e_MQTTClient spool_client(const char *mqtt_id, const char *id, mqe2e_keystore *ks,
                                     inbox *ib)
{
    mqe2e_MQTTClient c = NULL;
    char path[512];
    mqe2e_MQTTClient_securityOptions so = mqe2e_MQTTClient_securityOptions_initializer;
    MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer;
    af_ks_path(&fx, path, sizeof path, id);
    cr_assert_eq(mqe2e_MQTTClient_create(&c, tb_broker_uri(&fx.broker), mqtt_id,
                                         MQTTCLIENT_PERSISTENCE_NONE, NULL),
                 MQTTCLIENT_SUCCESS);
    so.keystore = ks;
    so.spoolKeystorePath = getenv("CP_NO_SPOOL") ? NULL : path;
    so.onDropped = inbox_on_dropped;
    so.onLog = on_log;
    so.logLevel = getenv("CP_DEBUG") ? MQE2E_LOG_DEBUG : MQE2E_LOG_WARNING;
    so.context = ib;
    cr_assert_eq(mqe2e_MQTTClient_setSecurity(c, &so), MQTTCLIENT_SUCCESS);
    cr_assert_eq(mqe2e_MQTTClient_setCallbacks(c, ib, NULL, inbox_on_message, NULL),
                 MQTTCLIENT_SUCCESS);
    co.keepAliveInterval = 20;
    co.cleansession = 1;
    cr_assert_eq(mqe2e_MQTTClient_connect(c, &co), MQTTCLIENT_SUCCESS);
    return c;
}

/* A forger publishing, until told to stop, QoS 0 envelopes naming epoch
 * 2 of "sensors" under a key of its own on sensors/hr, ~1 per ms. */
typedef struct forger {
    MQTTClient r;
    mqe2e_sender_key sk;
    volatile int stop;
    volatile uint64_t sent;
} forger;

static void *forger_run(void *arg)
{
    forger *f = arg;
    uint8_t pt[200], env[512];
    memset(pt, 'f', sizeof pt);
    for (uint64_t s = 1; !f->stop; s++) {
        size_t env_len = 0;
        mqe2e_envelope_header hs = {MQE2E_MODE_GROUP, 2, 97, s};
        if (mqe2e_envelope_seal(env, sizeof env, &env_len, &f->sk, "sensors/hr", "sensors", &hs, pt,
                                sizeof pt) != MQE2E_OK)
            break;
        if (MQTTClient_publish(f->r, "sensors/hr", (int)env_len, env, 0, 0, NULL) ==
            MQTTCLIENT_SUCCESS)
            f->sent++;
        tu_sleep_ms(1);
    }
    return NULL;
}

/* Issue 11, item 8, the remaining hole: a forger names exactly the next
 * real epoch (2, what a genuine rotation looks like) on the genuine topic
 * and keeps sending more than the topic's quota (32) per HELLO round trip;
 * the group rotates to epoch 2 behind the receiver's back and the genuine
 * sender publishes 20 QoS 1 messages. Paho acknowledged each already.
 * Without the spool (CP_NO_SPOOL=1) the fresh forgeries, as near as the
 * genuine messages, keep the topic's slots and genuine ones are dropped
 * (no_key), lost for good. With it, what finds no room goes to the spool
 * next to the keystore; when a HELLO reply brings epoch 2, every genuine
 * message is delivered in order and no forgery. */
Test(control_plane, held_qos1_messages_survive_an_exact_epoch_flood)
{
    enroll("dev-x", "sensors", NULL);
    enroll("pub-x", "sensors", NULL);
    mqe2e_keystore *kd = open_ks("dev-x"), *kp = open_ks("pub-x");
    inbox ib, ipub;
    inbox_init(&ib);
    inbox_init(&ipub);
    mqe2e_MQTTClient dev = spool_client("dev-x", "dev-x", kd, &ib);
    mqe2e_MQTTClient pub = enc_client("pub-x", kp, NULL, &ipub, 1);
    WAIT_CTL(dev, handshakes_ok, 1);
    WAIT_CTL(pub, handshakes_ok, 1);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(dev, "sensors/#", 1), MQTTCLIENT_SUCCESS);

    enum { GENUINE = 20 };
    static forger f;
    uint8_t secret[32];
    pthread_t th;
    memset(&f, 0, sizeof f);
    randombytes_buf(secret, sizeof secret);
    cr_assert_eq(mqe2e_sender_key_derive(&f.sk, secret, "sensors", 2, 97), MQE2E_OK);
    f.r = raw_client("forger-x", NULL);
    cr_assert_eq(pthread_create(&th, NULL, forger_run, &f), 0);
    /* The topic's quota is full of forgeries (and stays so). */
    long deadline = tu_now_ms() + WAIT_MS;
    while (ctl_counters(dev).held < 64) {
        cr_assert_lt(tu_now_ms(), deadline, "the forgeries did not reach the receiver");
        tu_sleep_ms(20);
    }

    /* Epoch 2, which the receiver learns late (its push is skipped). */
    ta_rotate(&auth, "sensors", "dev-x");
    WAIT_CTL(pub, pushes_applied, 1);
    for (int i = 0; i < GENUINE; i++) {
        char text[32];
        snprintf(text, sizeof text, "hr=%d", 60 + i);
        publish_text(pub, "sensors/hr", text, 1);
    }
    int all = wait_count(&ib, GENUINE);
    f.stop = 1;
    (void)pthread_join(th, NULL);
    mqe2e_sender_key_wipe(&f.sk);
    mqe2e_control_counters k = ctl_counters(dev);
    fprintf(stderr,
            "exact-epoch flood of %llu: held %llu, spooled %llu, released %llu, "
            "hold_dropped %llu, delivered %d\n",
            (unsigned long long)f.sent, (unsigned long long)k.held, (unsigned long long)k.spooled,
            (unsigned long long)k.released, (unsigned long long)k.hold_dropped, inbox_count(&ib));
    cr_assert(all, "held genuine QoS 1 messages were lost: %d of %d delivered", inbox_count(&ib),
              GENUINE);
    for (int i = 0; i < GENUINE; i++) {
        char text[32];
        snprintf(text, sizeof text, "hr=%d", 60 + i);
        cr_assert_str_eq(ib.payload[i], text, "in order");
    }
    cr_assert_eq(inbox_count(&ib), GENUINE, "a forged message was delivered");
    raw_close(&f.r);
    close_client(&pub);
    close_client(&dev);
    mqe2e_keystore_close(kd);
    mqe2e_keystore_close(kp);
}

/* tests/support/spool_receiver for keystore @p id (MQTT id @p id) on
 * sensors/# at QoS 1, its keystore's spool on, stdout into @p out; exits
 * after @p count messages (0: runs until killed or 90 s). */
static pid_t spawn_receiver(const char *id, const char *out, int count)
{
    char exe[PATH_MAX], ks[512], n[16];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    cr_assert_gt(len, 0);
    exe[len] = '\0';
    char *slash = strrchr(exe, '/');
    cr_assert_not_null(slash);
    snprintf(slash + 1, sizeof exe - (size_t)(slash + 1 - exe), "spool_receiver");
    af_ks_path(&fx, ks, sizeof ks, id);
    snprintf(n, sizeof n, "%d", count);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        if (freopen(out, "w", stdout) == NULL) _exit(126);
        execl(exe, exe, tb_broker_uri(&fx.broker), id, ks, fx.keyfile, "sensors/#", n, "90",
              (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Entry files in a spool directory. */
static int spool_files(const char *spool)
{
    int n = 0;
    DIR *d = opendir(spool);
    if (d == NULL) return 0;
    for (struct dirent *de; (de = readdir(d)) != NULL;)
        if (strstr(de->d_name, ".msg") != NULL) n++;
    closedir(d);
    return n;
}

/* Issue 11, item 8: spooled messages survive a crash. A receiver in its
 * own process (tests/support/spool_receiver, its keystore's spool on) gets 100 forgeries naming
 * exactly the next epoch (QoS 1) and then 20 genuine QoS 1 messages of
 * that epoch, while its HELLOs go unanswered (the authority muted, as
 * behind a broker dropping them): 32 forgeries fill the topic's quota, the
 * rest and every genuine message go to the spool (88 files). The receiver
 * is killed with SIGKILL; Paho had acknowledged everything. Restarted (the
 * authority answering again), it delivers all 20 genuine messages, in
 * order, and no forgery. */
Test(control_plane, spooled_messages_survive_kill_9_of_the_receiver)
{
    enroll("dev-k", "sensors", NULL);
    enroll("pub-k", "sensors", NULL);
    mqe2e_keystore *kp = open_ks("pub-k");
    inbox ipub;
    inbox_init(&ipub);
    mqe2e_MQTTClient pub = enc_client("pub-k", kp, NULL, &ipub, 1);
    WAIT_CTL(pub, handshakes_ok, 1);
    char out1[512], out2[512], ks[512], spool[600];
    snprintf(out1, sizeof out1, "%s/dev-k.out1", fx.dir);
    snprintf(out2, sizeof out2, "%s/dev-k.out2", fx.dir);
    af_ks_path(&fx, ks, sizeof ks, "dev-k");
    snprintf(spool, sizeof spool, "%s.spool", ks);

    pid_t sub = spawn_receiver("dev-k", out1, 0);
    /* Ready once an epoch-1 probe comes out. */
    long deadline = tu_now_ms() + WAIT_MS;
    for (;;) {
        publish_text(pub, "sensors/probe", "ready", 1);
        char *o = tu_read_file(out1, NULL);
        int ready = o != NULL && strstr(o, "ready") != NULL;
        free(o);
        if (ready) break;
        cr_assert_lt(tu_now_ms(), deadline, "the receiver did not start");
        tu_sleep_ms(200);
    }

    pthread_mutex_lock(&auth.m);
    auth.mute_hello = 1;
    pthread_mutex_unlock(&auth.m);
    ta_rotate(&auth, "sensors", "dev-k");
    WAIT_CTL(pub, pushes_applied, 1);
    enum { FORGED = 100, GENUINE = 20, QUOTA = 32 };
    uint8_t secret[32], pt[200], env[512];
    size_t env_len = 0;
    mqe2e_sender_key sk;
    randombytes_buf(secret, sizeof secret);
    memset(pt, 'f', sizeof pt);
    cr_assert_eq(mqe2e_sender_key_derive(&sk, secret, "sensors", 2, 97), MQE2E_OK);
    MQTTClient r = raw_client("forger-k", NULL);
    for (uint64_t s = 1; s <= FORGED; s++) {
        mqe2e_envelope_header hs = {MQE2E_MODE_GROUP, 2, 97, s};
        cr_assert_eq(mqe2e_envelope_seal(env, sizeof env, &env_len, &sk, "sensors/hr", "sensors",
                                         &hs, pt, sizeof pt),
                     MQE2E_OK);
        raw_publish(r, "sensors/hr", env, env_len);
    }
    mqe2e_sender_key_wipe(&sk);
    for (int i = 0; i < GENUINE; i++) {
        char text[32];
        snprintf(text, sizeof text, "hr=%d", 60 + i);
        publish_text(pub, "sensors/hr", text, 1);
    }
    deadline = tu_now_ms() + WAIT_MS;
    while (spool_files(spool) < FORGED + GENUINE - QUOTA) {
        cr_assert_lt(tu_now_ms(), deadline, "only %d entries spooled", spool_files(spool));
        tu_sleep_ms(20);
    }
    cr_assert_eq(kill(sub, SIGKILL), 0);
    int st = 0;
    cr_assert_eq(waitpid(sub, &st, 0), sub);
    cr_assert(WIFSIGNALED(st));
    char *o = tu_read_file(out1, NULL);
    cr_assert_null(o != NULL ? strstr(o, "hr=") : NULL, "nothing of epoch 2 came out before");
    free(o);

    pthread_mutex_lock(&auth.m);
    auth.mute_hello = 0;
    pthread_mutex_unlock(&auth.m);
    sub = spawn_receiver("dev-k", out2, GENUINE);
    cr_assert_eq(waitpid(sub, &st, 0), sub);
    o = tu_read_file(out2, NULL);
    fprintf(stderr, "after kill -9 and restart (spool had %d entries):\n%s",
            FORGED + GENUINE - QUOTA, o != NULL ? o : "(nothing)\n");
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "restarted receiver exited %d",
              WEXITSTATUS(st));
    char expect[GENUINE * 8 + 1];
    size_t n = 0;
    for (int i = 0; i < GENUINE; i++)
        n += (size_t)snprintf(expect + n, sizeof expect - n, "hr=%d\n", 60 + i);
    cr_assert_str_eq(o, expect, "every genuine message, in order, nothing else");
    free(o);
    cr_assert_eq(spool_files(spool), 0, "handled entries left the spool");
    raw_close(&r);
    close_client(&pub);
    mqe2e_keystore_close(kp);
}

Test(control_plane, forged_and_replayed_pushes_refused)
{
    enroll("dev-p", "sensors", NULL);
    mqe2e_keystore *kd = open_ks("dev-p");
    inbox ib;
    inbox_init(&ib);
    mqe2e_MQTTClient dev = enc_client("dev-p", kd, NULL, &ib, 1);
    WAIT_CTL(dev, handshakes_ok, 1);
    ta_rotate(&auth, "sensors", NULL);
    WAIT_CTL(dev, pushes_applied, 1);

    MQTTClient r = raw_client("attacker", NULL);
    pthread_mutex_lock(&auth.m);
    ta_client *tc = ta_client_find(&auth, "dev-p");
    uint8_t captured[4096];
    size_t captured_len = tc->last_push_len;
    memcpy(captured, tc->last_push, captured_len);
    uint8_t dev_dh[32];
    memcpy(dev_dh, tc->dh, 32);
    pthread_mutex_unlock(&auth.m);
    /* 1: the same push again. */
    raw_publish(r, PREFIX "/client/dev-p", captured, captured_len);
    WAIT_CTL(dev, pushes_refused, 1);
    /* 2: a push sealed by another key claiming to be the authority. */
    uint8_t fake_pk[32], fake_sk[32], frame[4096];
    crypto_box_keypair(fake_pk, fake_sk);
    mqe2e_key_bundle b;
    mqe2e_control_update u;
    af_forge_update(&b, &u, "sensors", 9, 5, 1000);
    size_t frame_len = af_forge_push(frame, sizeof frame, fake_sk, dev_dh, PREFIX, AUTH_ID, &u);
    raw_publish(r, PREFIX "/client/dev-p", frame, frame_len);
    WAIT_CTL(dev, pushes_refused, 2);
    /* 3: authentic but with an old sequence number. */
    u.push_seq = 1;
    frame_len = af_forge_push(frame, sizeof frame, auth.dh_sk, dev_dh, PREFIX, AUTH_ID, &u);
    raw_publish(r, PREFIX "/client/dev-p", frame, frame_len);
    WAIT_CTL(dev, pushes_refused, 3);
    /* 4: garbage on the inbox. */
    raw_publish(r, PREFIX "/client/dev-p", "garbage", 7);
    WAIT_CTL(dev, control_ignored, 1);
    mqe2e_control_counters k = ctl_counters(dev);
    cr_assert_eq(k.pushes_applied, 1);
    cr_assert_eq(inbox_count(&ib), 0, "control frames never reach the application");
    raw_close(&r);
    close_client(&dev);
    uint32_t epoch = 0;
    cr_assert_eq(mqe2e_keystore_group_current_epoch(kd, "sensors", &epoch), MQE2E_OK);
    cr_assert_eq(epoch, 2, "nothing from the refused pushes");
    cr_assert_eq(mqe2e_keystore_push_seq(kd), 1);
    sodium_memzero(fake_sk, sizeof fake_sk);
    sodium_memzero(&b, sizeof b);
    mqe2e_keystore_close(kd);
}

static mqe2e_policy *channel_policy(const char *filter, const char *peer)
{
    mqe2e_policy *p = NULL;
    cr_assert_eq(mqe2e_policy_new(&p), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add(p, filter, MQE2E_POLICY_CHANNEL, peer), MQE2E_OK);
    return p;
}

Test(control_plane, command_channel_and_forgeries)
{
    enroll("backend", NULL, NULL);
    enroll("switch-1", NULL, NULL);
    mqe2e_keystore *kb = open_ks("backend"), *kd = open_ks("switch-1");
    mqe2e_policy *pb = channel_policy("cmd/switch-1", "switch-1");
    mqe2e_policy *pd = channel_policy("cmd/switch-1", "backend");
    inbox ib, id;
    inbox_init(&ib);
    inbox_init(&id);
    MQTTClient spy = raw_client("spy", &rb_spy);
    cr_assert_eq(MQTTClient_subscribe(spy, PREFIX "/client/#", 1), MQTTCLIENT_SUCCESS);
    mqe2e_MQTTClient dev = enc_client("switch-1", kd, pd, &id, 1);
    mqe2e_MQTTClient back = enc_client("backend", kb, pb, &ib, 1);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(dev, "cmd/switch-1", 1), MQTTCLIENT_SUCCESS);
    WAIT_CTL(dev, handshakes_ok, 1);
    WAIT_CTL(back, handshakes_ok, 1);
    MQTTClient wire = raw_client("wire", &rb_wire);
    cr_assert_eq(MQTTClient_subscribe(wire, "cmd/#", 1), MQTTCLIENT_SUCCESS);

    publish_text(back, "cmd/switch-1", "on", 1);
    publish_text(back, "cmd/switch-1", "off", 1);
    publish_text(back, "cmd/switch-1", "on", 1);
    cr_assert(wait_count(&id, 3), "got %d", inbox_count(&id));
    cr_assert_str_eq(id.payload[0], "on");
    cr_assert_str_eq(id.payload[1], "off");
    cr_assert_str_eq(id.payload[2], "on");
    WAIT_CTL(dev, handshakes_ok, 2);
    cr_assert_eq(ctl_counters(back).channel_sent, 3);
    cr_assert_eq(ctl_counters(dev).channel_opened, 3);

    /* Handshake sizes as seen on the wire (frames of kind CHANNEL). */
    char topic[128];
    uint8_t buf[4096];
    size_t len = 0;
    int seen = 0;
    while (seen < 3 && raw_next(&rb_spy, topic, sizeof topic, buf, sizeof buf, &len)) {
        mqe2e_control_frame f;
        if (mqe2e_control_frame_decode(&f, buf, len) == MQE2E_OK &&
            f.kind == MQE2E_CONTROL_CHANNEL) {
            printf("  CHANNEL step %u: frame %zu bytes (Noise %zu)\n", f.step, len, f.noise_len);
            seen++;
        }
    }
    cr_assert_eq(seen, 3, "XX: three messages");

    /* The envelopes on the wire: replayed and tampered copies are refused. */
    uint8_t env[512];
    size_t env_len = 0;
    cr_assert(raw_next(&rb_wire, topic, sizeof topic, env, sizeof env, &env_len));
    cr_assert_str_eq(topic, "cmd/switch-1");
    cr_assert_gt(env_len, 2 + MQE2E_TAG_BYTES, "an envelope, not the command");
    MQTTClient r = raw_client("attacker", NULL);
    uint64_t drops0 = drops_total(dev);
    raw_publish(r, "cmd/switch-1", env, env_len);
    long deadline = tu_now_ms() + WAIT_MS;
    while (drops_of(dev, MQE2E_DROP_REPLAY) < 1) {
        cr_assert_lt(tu_now_ms(), deadline, "replay not refused");
        tu_sleep_ms(10);
    }
    /* A fresh envelope the device has not seen (it was unsubscribed): a
     * tampered copy is refused without burning the genuine one. */
    cr_assert_eq(mqe2e_MQTTClient_unsubscribe(dev, "cmd/switch-1"), MQTTCLIENT_SUCCESS);
    publish_text(back, "cmd/switch-1", "toggle", 1);
    /* The wire saw: on (read above), off, on, the replayed copy, toggle. */
    for (int i = 0; i < 4; i++)
        cr_assert(raw_next(&rb_wire, topic, sizeof topic, env, sizeof env, &env_len));
    cr_assert_eq(mqe2e_MQTTClient_subscribe(dev, "cmd/switch-1", 1), MQTTCLIENT_SUCCESS);
    env[env_len - 1] ^= 1;
    raw_publish(r, "cmd/switch-1", env, env_len);
    deadline = tu_now_ms() + WAIT_MS;
    while (drops_of(dev, MQE2E_DROP_AUTH) < 1) {
        cr_assert_lt(tu_now_ms(), deadline, "tamper not refused");
        tu_sleep_ms(10);
    }
    env[env_len - 1] ^= 1;
    raw_publish(r, "cmd/switch-1", env, env_len);
    cr_assert(wait_count(&id, 4));
    cr_assert_str_eq(id.payload[3], "toggle");
    raw_publish(r, "cmd/switch-1", "on", 2);
    deadline = tu_now_ms() + WAIT_MS;
    while (drops_total(dev) < drops0 + 3) {
        cr_assert_lt(tu_now_ms(), deadline, "plaintext not refused");
        tu_sleep_ms(10);
    }
    cr_assert_eq(inbox_count(&id), 4, "nothing forged delivered");

    raw_close(&r);
    raw_close(&wire);
    raw_close(&spy);
    close_client(&back);
    close_client(&dev);
    mqe2e_policy_free(pb);
    mqe2e_policy_free(pd);
    mqe2e_keystore_close(kb);
    mqe2e_keystore_close(kd);
}

Test(control_plane, revoked_peer_refused)
{
    enroll("switch-2", "sensors", NULL);
    enroll("mallory", "sensors", NULL);
    enroll("backend-2", NULL, NULL);
    ta_revoke(&auth, "mallory");
    mqe2e_keystore *kd = open_ks("switch-2"), *km = open_ks("mallory"), *kb = open_ks("backend-2");
    mqe2e_policy *pd = channel_policy("cmd/switch-2", "backend-2");
    cr_assert_eq(mqe2e_policy_add(pd, "cmd/mallory", MQE2E_POLICY_CHANNEL, "mallory"), MQE2E_OK);
    mqe2e_policy *pm = channel_policy("cmd/switch-2", "switch-2");
    mqe2e_policy *pb = channel_policy("cmd/switch-2", "switch-2");
    inbox id, im, ib;
    inbox_init(&id);
    inbox_init(&im);
    inbox_init(&ib);
    mqe2e_MQTTClient dev = enc_client("switch-2", kd, pd, &id, 1);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(dev, "cmd/switch-2", 1), MQTTCLIENT_SUCCESS);
    WAIT_CTL(dev, handshakes_ok, 1); /* the HELLO reply carries the revocation list */
    mqe2e_MQTTClient mal = enc_client("mallory", km, pm, &im, 1);
    publish_text(mal, "cmd/switch-2", "unlock", 1);
    WAIT_CTL(dev, revoked_refused, 1);
    cr_assert_eq(inbox_count(&id), 0, "nothing from the revoked peer");

    /* The device itself refuses to open a channel to a revoked peer. */
    uint64_t before = ctl_counters(dev).revoked_refused;
    cr_assert_eq(mqe2e_MQTTClient_publish(dev, "cmd/mallory", 2, "hi", 1, 0, NULL),
                 MQE2E_MQTTCLIENT_ERR(MQE2E_ERR_AUTH));
    cr_assert_eq(ctl_counters(dev).revoked_refused, before + 1);
    /* A legitimate backend still gets through. */
    mqe2e_MQTTClient back = enc_client("backend-2", kb, pb, &ib, 1);
    WAIT_CTL(back, handshakes_ok, 1);
    publish_text(back, "cmd/switch-2", "on", 1);
    cr_assert(wait_count(&id, 1));
    cr_assert_str_eq(id.payload[0], "on");
    cr_assert_eq(inbox_count(&id), 1);

    /* The revoked client's group keys stopped at the rotation. */
    close_client(&mal);
    uint32_t em = 0, ed = 0;
    cr_assert_eq(mqe2e_keystore_group_current_epoch(km, "sensors", &em), MQE2E_OK);
    close_client(&dev);
    cr_assert_eq(mqe2e_keystore_group_current_epoch(kd, "sensors", &ed), MQE2E_OK);
    cr_assert_eq(em, 1);
    cr_assert_eq(ed, 2, "remaining member got the new epoch");
    close_client(&back);
    mqe2e_policy_free(pd);
    mqe2e_policy_free(pm);
    mqe2e_policy_free(pb);
    mqe2e_keystore_close(kd);
    mqe2e_keystore_close(km);
    mqe2e_keystore_close(kb);
}

/* ====================================================================== */
/* With the real authority service (`mqe2e authority run`)                */

static int ra_op(char *out, size_t cap, const char *args)
{
    return af_op_sh(&fx, out, cap, args);
}

/* Start the authority with a short post-removal grace (so the tests can
 * wait it out) and a revocation list validity (seconds, as text); returns
 * once it serves. */
static void ra_start(const char *list_validity)
{
    const char *args[] = {"--revoke-grace",
                          "2",
                          "--list-validity",
                          list_validity,
                          getenv("CP_DEBUG") != NULL ? "-v" : NULL,
                          NULL};
    af_authority_start(&fx, args);
}

static void ra_setup(void)
{
    memset(&fx, 0, sizeof fx);
    af_setup(&fx, AUTH_ID);
    ra_start("3600");
}

/* Stop the authority (a stopped one is continued first). */
static void ra_stop(void)
{
    af_authority_kill(&fx, SIGTERM);
}

static void ra_teardown(void)
{
    if (getenv("CP_DEBUG") != NULL) {
        char *log = tu_read_file(fx.log, NULL);
        fprintf(stderr, "authority log:\n%s\n", log != NULL ? log : "(none)");
        free(log);
    }
    af_teardown(&fx); /* continues an authority a test stopped, then stops it */
}

TestSuite(real_authority, .init = ra_setup, .fini = ra_teardown, .timeout = 180);

static void ra_enroll(const char *id)
{
    af_enroll_in(&fx, id, "fleet", "fleet/#:pubsub");
}

static int wait_inbox(inbox *ib, int n)
{
    return wait_count(ib, n);
}

Test(real_authority, enroll_rotate_revoke_three_clients)
{
    char out[8192];
    cr_assert_eq(ra_op(out, sizeof out, "group create --group fleet --topic 'fleet/#'"), 0, "%s",
                 out);
    ra_enroll("cp-pub");
    ra_enroll("cp-sub");
    ra_enroll("cp-bad");
    mqe2e_keystore *kp = open_ks("cp-pub"), *ks = open_ks("cp-sub"), *kb = open_ks("cp-bad");
    inbox ip, is, ibad;
    inbox_init(&ip);
    inbox_init(&is);
    inbox_init(&ibad);
    mqe2e_MQTTClient pub = enc_client("cp-pub", kp, NULL, &ip, 1);
    mqe2e_MQTTClient sub = enc_client("cp-sub", ks, NULL, &is, 1);
    mqe2e_MQTTClient bad = enc_client("cp-bad", kb, NULL, &ibad, 1);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(sub, "fleet/#", 1), MQTTCLIENT_SUCCESS);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(bad, "fleet/#", 1), MQTTCLIENT_SUCCESS);
    WAIT_CTL(pub, handshakes_ok, 1);
    WAIT_CTL(sub, handshakes_ok, 1);
    WAIT_CTL(bad, handshakes_ok, 1);

    publish_text(pub, "fleet/a", "e1", 1);
    cr_assert(wait_inbox(&is, 1));
    cr_assert(wait_inbox(&ibad, 1));

    /* Rotation through the operator command: pushed to the connected members. */
    cr_assert_eq(ra_op(out, sizeof out, "group rotate --group fleet"), 0, "%s", out);
    WAIT_CTL(pub, pushes_applied, 1);
    WAIT_CTL(sub, pushes_applied, 1);
    WAIT_CTL(bad, pushes_applied, 1);
    publish_text(pub, "fleet/a", "e2", 1);
    cr_assert(wait_inbox(&is, 2));
    cr_assert(wait_inbox(&ibad, 2));

    /* Revocation: the two others get the next epoch, the revoked one nothing new. */
    cr_assert_eq(ra_op(out, sizeof out, "revoke --id cp-bad"), 0, "%s", out);
    WAIT_CTL(pub, pushes_applied, 2);
    WAIT_CTL(sub, pushes_applied, 2);
    char text[16];
    for (int i = 0; i < 5; i++) {
        snprintf(text, sizeof text, "e3-%d", i);
        publish_text(pub, "fleet/a", text, 1);
    }
    cr_assert(wait_inbox(&is, 7), "the remaining member lost messages: %d", inbox_count(&is));
    cr_assert_str_eq(is.payload[0], "e1");
    cr_assert_str_eq(is.payload[1], "e2");
    for (int i = 0; i < 5; i++) {
        snprintf(text, sizeof text, "e3-%d", i);
        cr_assert_str_eq(is.payload[2 + i], text);
    }
    tu_sleep_ms(500);
    cr_assert_eq(inbox_count(&ibad), 2, "the revoked client decrypted something new");
    cr_assert_eq(drops_total(sub), 0);
    close_client(&bad);
    close_client(&sub);
    close_client(&pub);
    uint32_t e = 0;
    cr_assert_eq(mqe2e_keystore_group_current_epoch(kb, "fleet", &e), MQE2E_OK);
    cr_assert_eq(e, 2, "the revoked client never saw epoch 3");
    cr_assert_eq(mqe2e_keystore_group_current_epoch(ks, "fleet", &e), MQE2E_OK);
    cr_assert_eq(e, 3);
    mqe2e_keystore_close(kp);
    mqe2e_keystore_close(ks);
    mqe2e_keystore_close(kb);
}

/* The receiver's log, to learn when it dropped the retired epochs. */
static atomic_int pruned_logged;

static void on_log_prune(void *ctx, mqe2e_log_level level, const char *message)
{
    on_log(ctx, level, message);
    if (strstr(message, "retired epoch(s) dropped") != NULL) atomic_store(&pruned_logged, 1);
}

/* Issue 11, item 5: after `revoke`, the revoked device keeps its keystore
 * (epoch 1, its sender id) and seals messages itself, without the plugin,
 * straight to the broker. Before: receivers accepted them for their whole
 * grace period (1 h). Now: the authority cuts the grace of the group's
 * retired epochs to --revoke-grace (2 s here) and says so in the rotation
 * push; once it ends the receiver drops those epochs, and every message the
 * revoked device sends is dropped (no_key), none delivered. */
Test(real_authority, revoked_member_writes_nothing_after_the_short_grace)
{
    char out[8192];
    cr_assert_eq(ra_op(out, sizeof out, "group create --group fleet --topic 'fleet/#'"), 0, "%s",
                 out);
    ra_enroll("rg-sub");
    ra_enroll("rg-bad");
    mqe2e_keystore *ks = open_ks("rg-sub"), *kb = open_ks("rg-bad");
    inbox is;
    inbox_init(&is);
    atomic_store(&pruned_logged, 0);
    mqe2e_MQTTClient sub = so_client("rg-sub", ks, &is, on_log_prune, MQE2E_LOG_INFO, 0);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(sub, "fleet/#", 1), MQTTCLIENT_SUCCESS);
    WAIT_CTL(sub, handshakes_ok, 1);
    /* (The same second as the enrollment is the next test's case.) */

    cr_assert_eq(ra_op(out, sizeof out, "revoke --id rg-bad"), 0, "%s", out);
    WAIT_CTL(sub, pushes_applied, 1);
    long deadline = tu_now_ms() + WAIT_MS;
    while (!atomic_load(&pruned_logged)) {
        cr_assert_lt(tu_now_ms(), deadline, "the receiver never dropped the retired epoch");
        tu_sleep_ms(50);
    }

    /* The revoked device seals with what it holds and publishes raw. */
    mqe2e_policy *pol = NULL;
    mqe2e_protector *prot = NULL;
    cr_assert_eq(mqe2e_policy_new(&pol), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add_keystore_groups(pol, kb), MQE2E_OK);
    cr_assert_eq(mqe2e_protector_new(&prot, kb, pol, NULL), MQE2E_OK);
    MQTTClient r = raw_client("rg-bad-raw", NULL);
    uint64_t before = drops_total(sub);
    enum { N = 5 };
    for (int i = 0; i < N; i++) {
        uint8_t env[256];
        size_t len = 0;
        char text[32];
        snprintf(text, sizeof text, "UNLOCK %d (revoked device)", i);
        cr_assert_eq(mqe2e_protect(prot, "fleet/door", (const uint8_t *)text, strlen(text), now_s(),
                                   env, sizeof env, &len),
                     MQE2E_OK);
        raw_publish(r, "fleet/door", env, len);
    }
    deadline = tu_now_ms() + WAIT_MS;
    while (drops_total(sub) < before + N) {
        cr_assert_lt(tu_now_ms(), deadline, "the revoked device's messages were not all dropped");
        tu_sleep_ms(20);
    }
    cr_assert_eq(inbox_count(&is), 0, "a message of the revoked device was delivered");
    /* Since the revocation list names its sender ids, they are dropped as
     * `revoked` before the epoch is even looked up (the next test). */
    cr_assert_eq(drops_of(sub, MQE2E_DROP_NO_KEY) + drops_of(sub, MQE2E_DROP_EXPIRED) +
                     drops_of(sub, MQE2E_DROP_REVOKED),
                 before + N);
    raw_close(&r);
    mqe2e_protector_free(prot);
    mqe2e_policy_free(pol);
    close_client(&sub);
    mqe2e_keystore_close(ks);
    mqe2e_keystore_close(kb);
}

/* Issue 11 (second-granularity edge): a member that joins in the same second
 * as a revocation. Memberships and retirements are recorded in whole
 * seconds; the authority used to decide by second which retired epochs were
 * a member's, so the epoch retired in the second the member joined was not
 * sent to it, and the member never learnt that epoch's cut grace: it kept
 * accepting it for its normal grace (1 h). Now the membership records the
 * epoch current at the join and the decision is by epoch number: the HELLO
 * reply carries epoch 1 with the cut grace and the member drops it. The
 * enrollment and the revocation are run back to back at the start of a
 * second (the test prints whether they shared it; it holds either way). */
Test(real_authority, member_joining_in_the_revocation_second_learns_the_cut_grace)
{
    char out[8192], args[512], ticket[8192];
    cr_assert_eq(ra_op(out, sizeof out, "group create --group fleet --topic 'fleet/#'"), 0, "%s",
                 out);
    ra_enroll("js-bad");
    snprintf(args, sizeof args, "token create --id js-sub --group fleet --grant 'fleet/#:pubsub'");
    cr_assert_eq(ra_op(ticket, sizeof ticket, args), 0, "token create: %s", ticket);
    ticket[strcspn(ticket, "\n")] = '\0';
    time_t start = time(NULL);
    while (time(NULL) == start)
        tu_sleep_ms(5);
    time_t t0 = time(NULL);
    cr_assert_eq(run_enroll("js-sub", ticket, NULL, 0), 0);
    cr_assert_eq(ra_op(out, sizeof out, "revoke --id js-bad"), 0, "%s", out);
    time_t t1 = time(NULL);
    fprintf(stderr, "enrollment and revocation %s\n",
            t0 == t1 ? "in the same second" : "straddled a second");

    mqe2e_keystore *ks = open_ks("js-sub");
    inbox is;
    inbox_init(&is);
    atomic_store(&pruned_logged, 0);
    mqe2e_MQTTClient sub = so_client("js-sub", ks, &is, on_log_prune, MQE2E_LOG_INFO, 0);
    WAIT_CTL(sub, handshakes_ok, 1);
    long deadline = tu_now_ms() + WAIT_MS;
    while (!atomic_load(&pruned_logged)) {
        cr_assert_lt(tu_now_ms(), deadline,
                     "the member never learnt the cut grace of the epoch it joined in");
        tu_sleep_ms(50);
    }
    close_client(&sub);
    uint32_t e = 0;
    cr_assert_eq(mqe2e_keystore_group_current_epoch(ks, "fleet", &e), MQE2E_OK);
    cr_assert_eq(e, 2);
    mqe2e_keystore_close(ks);
}

/* Issue 11, follow-up of item 5: the revoked device publishes during the
 * grace period of the epoch it holds, in an unsigned group. Before: its
 * messages were delivered until the grace ended (the receiver cannot tell
 * sender ids apart in an unsigned group). Now: the revocation list names
 * the sender ids the device held (per group, never handed out again) and a
 * receiver holding the list drops them in every epoch (`revoked`) at once,
 * while a member that is still active gets through. */
Test(real_authority, revoked_sender_ids_dropped_during_the_grace)
{
    char out[8192];
    cr_assert_eq(ra_op(out, sizeof out, "group create --group fleet --topic 'fleet/#'"), 0, "%s",
                 out);
    ra_enroll("rs-sub");
    ra_enroll("rs-pub");
    ra_enroll("rs-bad");
    mqe2e_keystore *ks = open_ks("rs-sub"), *kp = open_ks("rs-pub"), *kb = open_ks("rs-bad");
    inbox is, ip;
    inbox_init(&is);
    inbox_init(&ip);
    mqe2e_MQTTClient sub = enc_client("rs-sub", ks, NULL, &is, 1);
    mqe2e_MQTTClient pub = enc_client("rs-pub", kp, NULL, &ip, 1);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(sub, "fleet/#", 1), MQTTCLIENT_SUCCESS);
    WAIT_CTL(sub, handshakes_ok, 1);
    WAIT_CTL(pub, handshakes_ok, 1);

    /* The revoked device's keystore still holds epoch 1 and its sender id. */
    mqe2e_policy *pol = NULL;
    mqe2e_protector *prot = NULL;
    cr_assert_eq(mqe2e_policy_new(&pol), MQE2E_OK);
    cr_assert_eq(mqe2e_policy_add_keystore_groups(pol, kb), MQE2E_OK);
    cr_assert_eq(mqe2e_protector_new(&prot, kb, pol, NULL), MQE2E_OK);
    enum { N = 5 };
    uint8_t env[N][256];
    size_t env_len[N];
    for (int i = 0; i < N; i++) {
        char text[32];
        snprintf(text, sizeof text, "UNLOCK %d (revoked device)", i);
        cr_assert_eq(mqe2e_protect(prot, "fleet/door", (const uint8_t *)text, strlen(text), now_s(),
                                   env[i], sizeof env[i], &env_len[i]),
                     MQE2E_OK);
    }

    cr_assert_eq(ra_op(out, sizeof out, "revoke --id rs-bad"), 0, "%s", out);
    WAIT_CTL(sub, pushes_applied, 1);
    WAIT_CTL(pub, pushes_applied, 1);

    /* At once, well inside the grace of epoch 1 (2 s here, 30 s by
     * default): the drop reason says the sender is revoked, not expired. */
    MQTTClient r = raw_client("rs-bad-raw", NULL);
    uint64_t before = drops_total(sub);
    for (int i = 0; i < N; i++)
        raw_publish(r, "fleet/door", env[i], env_len[i]);
    publish_text(pub, "fleet/a", "still a member", 1);
    cr_assert(wait_inbox(&is, 1), "the active member's message was not delivered");
    long deadline = tu_now_ms() + WAIT_MS;
    while (drops_total(sub) < before + N) {
        cr_assert_lt(tu_now_ms(), deadline, "the revoked device's messages were not all dropped");
        tu_sleep_ms(20);
    }
    cr_assert_eq(inbox_count(&is), 1, "a message of the revoked device was delivered");
    cr_assert_str_eq(is.payload[0], "still a member");
    cr_assert_eq(drops_of(sub, MQE2E_DROP_REVOKED), N, "drops by reason revoked: %llu",
                 (unsigned long long)drops_of(sub, MQE2E_DROP_REVOKED));
    raw_close(&r);
    mqe2e_protector_free(prot);
    mqe2e_policy_free(pol);
    close_client(&pub);
    close_client(&sub);
    mqe2e_keystore_close(ks);
    mqe2e_keystore_close(kp);
    mqe2e_keystore_close(kb);
}

/* Issue 11, item 6 (list freshness): the signed revocation list carries
 * issued_at and next_update (--list-validity, 3 s here); a member that has
 * not heard a list from the authority within that validity (monotonic clock,
 * from when it heard it) stops sealing on groups, counts `stale_refused` and
 * says why; once the authority answers again, it seals again. The member's
 * HELLO freshness bound is an hour, so only the list's bound can stop it.
 * Before: it went on sealing for the whole HELLO bound. */
Test(real_authority, stale_revocation_list_stops_sealing)
{
    char out[8192];
    cr_assert_eq(ra_op(out, sizeof out, "group create --group fleet --topic 'fleet/#'"), 0, "%s",
                 out);
    ra_enroll("lv-pub");
    ra_enroll("lv-gone");
    cr_assert_eq(ra_op(out, sizeof out, "revoke --id lv-gone"), 0, "%s", out);
    ra_stop();
    ra_start("3");

    mqe2e_keystore *kp = open_ks("lv-pub");
    inbox ip;
    inbox_init(&ip);
    /* The HELLO bound is an hour: only the list's bound can stop it. */
    mqe2e_MQTTClient pub = so_client("lv-pub", kp, &ip, on_log, MQE2E_LOG_WARNING, 3600);
    cr_assert_eq(mqe2e_MQTTClient_waitForAuthority(pub, WAIT_MS), MQTTCLIENT_SUCCESS);
    publish_text(pub, "fleet/a", "fresh", 1);

    /* The authority goes silent (as behind a broker dropping its frames). */
    cr_assert_eq(kill(fx.auth_pid, SIGSTOP), 0);
    int rc = MQTTCLIENT_SUCCESS;
    long deadline = tu_now_ms() + 20000;
    while (rc == MQTTCLIENT_SUCCESS) {
        cr_assert_lt(tu_now_ms(), deadline, "still sealing on a revocation list past its validity");
        tu_sleep_ms(100);
        rc = mqe2e_MQTTClient_publish(pub, "fleet/a", 5, "stale", 0, 0, NULL);
    }
    cr_assert_eq(rc, MQE2E_MQTTCLIENT_ERR(MQE2E_ERR_EXPIRED), "publish: %d", rc);
    cr_assert_geq(ctl_counters(pub).stale_refused, 1);

    /* The authority answers again: the periodic HELLO renews the list. */
    cr_assert_eq(kill(fx.auth_pid, SIGCONT), 0);
    deadline = tu_now_ms() + WAIT_MS;
    do {
        cr_assert_lt(tu_now_ms(), deadline, "sealing did not resume once the authority answered");
        tu_sleep_ms(100);
        rc = mqe2e_MQTTClient_publish(pub, "fleet/a", 5, "again", 0, 0, NULL);
    } while (rc != MQTTCLIENT_SUCCESS);
    close_client(&pub);
    mqe2e_keystore_close(kp);
}

/* Issue 11, item 6, the authority's half, end to end through the CLI: run
 * with --list-validity 2, the authority signs its revocation list afresh
 * every second (half the validity, on the core's schedule) and republishes
 * it retained on P/revocations. Every copy verifies under the pinned key,
 * keeps the version, the revoked client and its retired sender id, and says
 * next_update = issued_at + 2; issue times grow. Without the re-signing a
 * watcher sees one list (signed at the revocation) and no newer one. */
Test(real_authority, revocation_list_is_signed_afresh_within_its_validity)
{
    char out[8192];
    ra_stop();
    ra_start("2");
    cr_assert_eq(ra_op(out, sizeof out, "group create --group fleet --topic 'fleet/#'"), 0, "%s",
                 out);
    ra_enroll("rl-gone");
    cr_assert_eq(ra_op(out, sizeof out, "revoke --id rl-gone"), 0, "%s", out);

    MQTTClient r = raw_client("rl-watch", &rb_spy);
    cr_assert_eq(MQTTClient_subscribe(r, PREFIX "/revocations", 1), MQTTCLIENT_SUCCESS);
    char topic[128];
    uint8_t buf[2048];
    size_t len = 0;
    uint64_t first = 0, last = 0;
    int newer = 0;
    while (newer < 2) {
        cr_assert(raw_next(&rb_spy, topic, sizeof topic, buf, sizeof buf, &len),
                  "no list signed afresh within %d s (%d newer seen)", (int)(WAIT_MS / 1000),
                  newer);
        mqe2e_revocation_list *l = NULL;
        cr_assert_eq(mqe2e_revocation_list_verify(&l, buf, len, fx.pin.sign_public), MQE2E_OK);
        uint64_t at = mqe2e_revocation_list_issued_at(l);
        cr_assert_eq(mqe2e_revocation_list_version(l), 1);
        cr_assert_eq(mqe2e_revocation_list_next_update(l), at + 2U, "issued %llu, next %llu",
                     (unsigned long long)at,
                     (unsigned long long)mqe2e_revocation_list_next_update(l));
        cr_assert(mqe2e_revocation_list_client_revoked(l, "rl-gone"));
        cr_assert_eq(mqe2e_revocation_list_retired_count(l), 1, "its sender id in fleet");
        mqe2e_revocation_list_free(l);
        if (first == 0) {
            first = last = at;
            continue;
        }
        cr_assert_geq(at, last, "an older list came after a newer one");
        if (at > last) newer++;
        last = at;
    }
    fprintf(stderr, "lists issued at +0 .. +%llu s\n", (unsigned long long)(last - first));
    raw_close(&r);
}

static int async_on_message(void *ctx, char *topic, int tl, MQTTAsync_message *m)
{
    (void)ctx;
    (void)tl;
    mqe2e_MQTTAsync_freeMessage(&m);
    mqe2e_MQTTAsync_free(topic);
    return 1;
}

/* Issue 11, item 4: the asynchronous front before the authority answered.
 * A send on a group topic right after connect (no HELLO reply yet) is
 * refused at once with EXPIRED and counted, never sealed under an epoch
 * that may be stale; mqe2e_MQTTAsync_waitForAuthority() waits for the reply,
 * after which the send goes out under the current epoch and is delivered. */
Test(real_authority, async_front_waits_for_the_authority)
{
    char out[8192];
    cr_assert_eq(ra_op(out, sizeof out, "group create --group fleet --topic 'fleet/#'"), 0, "%s",
                 out);
    ra_enroll("as-pub");
    ra_enroll("as-sub");
    /* A rotation the publisher's keystore has not seen: sealing before the
     * HELLO reply would use the stale epoch 1. */
    cr_assert_eq(ra_op(out, sizeof out, "group rotate --group fleet"), 0, "%s", out);
    mqe2e_keystore *kp = open_ks("as-pub"), *ks = open_ks("as-sub");
    inbox is;
    inbox_init(&is);
    mqe2e_MQTTClient sub = enc_client("as-sub", ks, NULL, &is, 1);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(sub, "fleet/#", 1), MQTTCLIENT_SUCCESS);
    WAIT_CTL(sub, handshakes_ok, 1);

    mqe2e_MQTTAsync pub = NULL;
    mqe2e_MQTTAsync_securityOptions so = mqe2e_MQTTAsync_securityOptions_initializer;
    MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
    cr_assert_eq(mqe2e_MQTTAsync_create(&pub, tb_broker_uri(&fx.broker), "as-pub",
                                        MQTTCLIENT_PERSISTENCE_NONE, NULL),
                 MQTTASYNC_SUCCESS);
    cr_assert_eq(mqe2e_MQTTAsync_waitForAuthority(pub, 10), MQE2E_MQTTASYNC_NOT_CONFIGURED);
    so.keystore = kp;
    so.onLog = on_log;
    so.logLevel = MQE2E_LOG_WARNING;
    cr_assert_eq(mqe2e_MQTTAsync_setSecurity(pub, &so), MQTTASYNC_SUCCESS);
    cr_assert_eq(mqe2e_MQTTAsync_setCallbacks(pub, NULL, NULL, async_on_message, NULL),
                 MQTTASYNC_SUCCESS);
    co.cleansession = 1;
    cr_assert_eq(mqe2e_MQTTAsync_connect(pub, &co), MQTTASYNC_SUCCESS);
    /* Nothing heard from the authority yet: refused, not sealed. */
    int rc = mqe2e_MQTTAsync_send(pub, "fleet/a", 5, "early", 1, 0, NULL);
    cr_assert_eq(rc, MQE2E_MQTTASYNC_ERR(MQE2E_ERR_EXPIRED), "early send: %d", rc);
    mqe2e_control_counters k;
    cr_assert_eq(mqe2e_MQTTAsync_getControlCounters(pub, &k), MQTTASYNC_SUCCESS);
    cr_assert_eq(k.stale_refused, 1);

    cr_assert_eq(mqe2e_MQTTAsync_waitForAuthority(pub, WAIT_MS), MQTTASYNC_SUCCESS);
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    cr_assert_eq(mqe2e_MQTTAsync_send(pub, "fleet/a", 5, "fresh", 1, 0, &ro), MQTTASYNC_SUCCESS);
    cr_assert_eq(mqe2e_MQTTAsync_waitForCompletion(pub, ro.token, 5000), MQTTASYNC_SUCCESS);
    cr_assert(wait_inbox(&is, 1), "the send after the wait was not delivered");
    cr_assert_str_eq(is.payload[0], "fresh");
    cr_assert_eq(inbox_count(&is), 1, "the early send went out");
    uint32_t e = 0;
    MQTTAsync_disconnectOptions dop = MQTTAsync_disconnectOptions_initializer;
    (void)mqe2e_MQTTAsync_disconnect(pub, &dop);
    close_client(&sub);
    mqe2e_MQTTAsync_destroy(&pub);
    cr_assert_eq(mqe2e_keystore_group_current_epoch(kp, "fleet", &e), MQE2E_OK);
    cr_assert_eq(e, 2, "the publisher sealed before learning epoch 2");
    mqe2e_keystore_close(kp);
    mqe2e_keystore_close(ks);
}

Test(control_plane, channel_queues_until_peer_answers)
{
    enroll("backend-3", NULL, NULL);
    enroll("switch-3", NULL, NULL);
    mqe2e_keystore *kb = open_ks("backend-3"), *kd = open_ks("switch-3");
    mqe2e_policy *pb = channel_policy("cmd/switch-3", "switch-3");
    mqe2e_policy *pd = channel_policy("cmd/switch-3", "backend-3");
    inbox ib, id;
    inbox_init(&ib);
    inbox_init(&id);
    mqe2e_MQTTClient back = enc_client("backend-3", kb, pb, &ib, 1);
    WAIT_CTL(back, handshakes_ok, 1);
    /* The peer is not there yet: accepted and queued, token 0. */
    MQTTClient_deliveryToken dt = 99;
    cr_assert_eq(mqe2e_MQTTClient_publish(back, "cmd/switch-3", 5, "first", 1, 0, &dt),
                 MQTTCLIENT_SUCCESS);
    cr_assert_eq(dt, 0);
    cr_assert_eq(mqe2e_MQTTClient_publish(back, "cmd/switch-3", 6, "second", 1, 0, NULL),
                 MQTTCLIENT_SUCCESS);
    tu_sleep_ms(500);
    cr_assert_eq(ctl_counters(back).channel_sent, 0);
    /* The peer comes online; the handshake is retried and the queue flushed in order. */
    mqe2e_MQTTClient dev = enc_client("switch-3", kd, pd, &id, 1);
    cr_assert_eq(mqe2e_MQTTClient_subscribe(dev, "cmd/switch-3", 1), MQTTCLIENT_SUCCESS);
    cr_assert(wait_count(&id, 2), "got %d", inbox_count(&id));
    cr_assert_str_eq(id.payload[0], "first");
    cr_assert_str_eq(id.payload[1], "second");
    cr_assert_eq(drops_total(dev), 0);
    close_client(&dev);
    close_client(&back);
    mqe2e_policy_free(pb);
    mqe2e_policy_free(pd);
    mqe2e_keystore_close(kb);
    mqe2e_keystore_close(kd);
}
