/*
 * The plugin's glue over the sans-I/O device session (lib/ session.h): the
 * one receive core of both Paho fronts, plus the threads, locks and clocks
 * the session itself has none of.
 *
 * Threads. Paho forbids calling the sync client from its callbacks, so every
 * frame the session asks to publish goes into `outbox`, which a worker
 * thread drains; the worker also ticks the session's timers (HELLO retries
 * and renewal, channel handshake retries, hold expiry and release) and notices
 * reconnects Paho made by itself. Received messages are handed to the session
 * where they arrive (Paho's callback thread) under the client's `lock`: this
 * keeps control frames ordered with the data messages around them.
 *
 * Every session call and the drain of its actions happen under host->lock;
 * Paho and the application's callbacks are only called without it.
 */
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal_plugin.h"
#include "mqe2e/MQTTClient.h"

/* Worker tick (ms): reconnect detection and the timers' resolution. */
#define CTL_TICK_MS 100L

/* One publish waiting for the worker, or a (un)subscription the session
 * asked for outside connect (a key-tree group joined or left, PROTOCOL.md
 * §10.9): Paho's sync client must not subscribe from its receive callback,
 * so the worker does it, in order with the publishes. */
typedef struct ctl_out {
    struct ctl_out *next;
    mqe2e_session_action_kind op; /* PUBLISH, SUBSCRIBE or UNSUBSCRIBE */
    char *topic;
    uint8_t *data;
    size_t len;
    int qos;
    int retained;
} ctl_out;

/* One action copied out of the session, handled after the lock is released. */
typedef struct ctl_item {
    struct ctl_item *next;
    mqe2e_session_action_kind kind;
    char *topic; /* DROP, SUBSCRIBE: ours; DELIVER: the wrapped message's */
    void *msg;   /* DELIVER: the front's message */
    int code;
    int qos;
    int current;
    mqe2e_receipt receipt;
    ctl_out *out; /* PUBLISH kept back (connected(): after the SUBSCRIBE) */
    int borrowed; /* the caller's slot (on its stack): not freed */
} ctl_item;

struct mqe2e__ctl {
    mqe2e__ctl_host h;
    mqe2e_session *s;
    mqe2e_spool *spool; /* owned; NULL: none */
    ctl_out *out_head, *out_tail;
    size_t n_out;
    int session_up; /* control topics subscribed on the current connection */
    int fresh;      /* last mqe2e_session_fresh() seen */
    pthread_t worker;
    pthread_cond_t cond;
    pthread_cond_t drained; /* a publish finished, or the authority answered */
    int publishing;         /* the worker holds a frame taken off the outbox */
    int worker_started;
    int stop;
};

static mqe2e_session_time ctl_time(void)
{
    mqe2e_session_time t = {mqe2e__plugin_now(), mqe2e__plugin_monotonic_ms()};
    return t;
}

static void ctl_log_line(mqe2e__ctl *c, int level, const char *msg)
{
    if (c->h.log != NULL && level <= c->h.log_level) c->h.log(c->h.ctx, level, msg);
}

/* ------------------------------------------------------------------ */
/* Outbox and actions (lock held)                                      */

static void out_free(ctl_out *o)
{
    if (o == NULL) return;
    if (o->data != NULL) sodium_memzero(o->data, o->len > 0 ? o->len : 1U);
    free(o->data);
    free(o->topic);
    free(o);
}

static ctl_out *out_copy(const mqe2e_session_action *a)
{
    ctl_out *o = calloc(1, sizeof *o);
    if (o == NULL) return NULL;
    o->topic = strdup(a->topic);
    o->data = malloc(a->len > 0 ? a->len : 1U);
    if (o->topic == NULL || o->data == NULL) {
        out_free(o);
        return NULL;
    }
    if (a->len > 0) memcpy(o->data, a->data, a->len);
    o->op = a->kind;
    o->len = a->len;
    o->qos = a->qos;
    o->retained = a->retained;
    return o;
}

static void out_append(mqe2e__ctl *c, ctl_out *o)
{
    if (c->out_tail != NULL)
        c->out_tail->next = o;
    else
        c->out_head = o;
    c->out_tail = o;
    c->n_out++;
    (void)pthread_cond_signal(&c->cond);
}

static void item_free(const mqe2e__ctl *c, ctl_item *it)
{
    if (it->kind == MQE2E_SESSION_DELIVER) {
        if (it->msg != NULL) c->h.unwrap(it->msg, it->topic);
    } else {
        free(it->topic);
    }
    out_free(it->out);
    sodium_memzero(&it->receipt, sizeof it->receipt);
    if (!it->borrowed) free(it);
}

/* After every session call (lock held): the outbox's backlog to the session,
 * and waiters woken when the freshness changed. */
static void ctl_after(mqe2e__ctl *c, mqe2e_session_time now)
{
    mqe2e_session_set_backlog(c->s, c->n_out);
    int fresh = mqe2e_session_fresh(c->s, now);
    if (fresh != c->fresh) {
        c->fresh = fresh;
        (void)pthread_cond_broadcast(&c->drained);
    }
}

/*
 * Take every action the session queued: publishes go to the outbox (or,
 * with keep_publishes, into the list), the rest into *list for after the
 * lock is released. @p in is the transport's message behind current actions.
 * @p slot (may be NULL) holds the first item instead of an allocation (the
 * receive path's single DELIVER); @p now is the clock of the call.
 */
/* ctl_take() @p keep: which actions stay in the list instead of the outbox. */
#define KEEP_PUBLISHES 1
#define KEEP_SUBSCRIPTIONS 2

static void ctl_take(mqe2e__ctl *c, const void *in, int keep, ctl_item **list, ctl_item *slot,
                     mqe2e_session_time now)
{
    mqe2e_session_action a;
    ctl_item **tail = list;

    while (*tail != NULL)
        tail = &(*tail)->next;
    while (mqe2e_session_next(c->s, &a)) {
        int sub = a.kind == MQE2E_SESSION_SUBSCRIBE || a.kind == MQE2E_SESSION_UNSUBSCRIBE;
        if ((a.kind == MQE2E_SESSION_PUBLISH && !(keep & KEEP_PUBLISHES)) ||
            (sub && !(keep & KEEP_SUBSCRIPTIONS))) {
            ctl_out *o = out_copy(&a);
            if (o != NULL) out_append(c, o);
            else ctl_log_line(c, MQE2E_LOG_ERROR, "control frame lost: out of memory");
            continue;
        }
        ctl_item *it;
        if (slot != NULL) {
            it = slot;
            slot = NULL;
            memset(it, 0, sizeof *it);
            it->borrowed = 1;
        } else {
            it = calloc(1, sizeof *it);
        }
        if (it == NULL) {
            ctl_log_line(c, MQE2E_LOG_ERROR, "session action lost: out of memory");
            continue;
        }
        it->kind = a.kind;
        it->code = a.code;
        it->qos = a.qos;
        it->current = a.current;
        if (a.kind == MQE2E_SESSION_DELIVER) {
            it->msg = c->h.wrap(c->h.ctx, a.current ? in : NULL, &a, &it->topic);
            it->receipt = a.receipt;
            sodium_memzero(&a.receipt, sizeof a.receipt);
            if (it->msg == NULL) {
                /* Not delivered, not recorded: reported as a drop. */
                mqe2e_protector_count_drop(mqe2e_session_protector(c->s), MQE2E_ERR_NOMEM);
                it->kind = MQE2E_SESSION_DROP;
                it->code = MQE2E_ERR_NOMEM;
                it->topic = strdup(a.topic);
            }
        } else if (a.kind == MQE2E_SESSION_PUBLISH) {
            it->out = out_copy(&a);
        } else {
            it->topic = strdup(a.topic);
        }
        *tail = it;
        tail = &it->next;
    }
    ctl_after(c, now);
}

/* Record what the application took (lock NOT held). */
static void ctl_commit(mqe2e__ctl *c, const mqe2e_receipt *r, const char *topic)
{
    (void)pthread_mutex_lock(c->h.lock);
    int rc = mqe2e_session_commit(c->s, r);
    (void)pthread_mutex_unlock(c->h.lock);
    char line[400];
    if (rc == MQE2E_ERR_REPLAY) {
        (void)snprintf(line, sizeof line, "duplicate accepted twice on '%s'", topic);
        ctl_log_line(c, MQE2E_LOG_DEBUG, line);
    } else if (rc != MQE2E_OK) {
        (void)snprintf(line, sizeof line, "recording message on '%s' failed: %s", topic,
                       mqe2e_error_name(rc));
        ctl_log_line(c, MQE2E_LOG_ERROR, line);
    }
}

/*
 * Handle the items (lock NOT held; cb_lock held when delivering). Current
 * DELIVERs go to @p hand, released ones to host->hand. Returns 0 when the
 * application refused the current message and it may come again (Paho
 * redelivers), else 1.
 */
static int ctl_handle(mqe2e__ctl *c, ctl_item *list, mqe2e__ctl_hand_fn *hand, void *hand_ctx)
{
    int result = 1;
    char line[400];

    while (list != NULL) {
        ctl_item *it = list;
        list = it->next;
        if (it->kind == MQE2E_SESSION_DROP) {
            c->h.dropped(c->h.ctx, it->topic, it->code);
        } else if (it->kind == MQE2E_SESSION_SUBSCRIBE || it->kind == MQE2E_SESSION_UNSUBSCRIBE) {
            /* Only with MQE2E__CTL_RX_CALLER_THREAD: this thread may call Paho. */
            int rc = it->kind == MQE2E_SESSION_SUBSCRIBE
                         ? c->h.subscribe(c->h.ctx, 1, &it->topic, &it->qos)
                         : c->h.unsubscribe(c->h.ctx, it->topic);
            if (rc != 0) {
                (void)snprintf(line, sizeof line, "control %s '%s' failed: %s",
                               it->kind == MQE2E_SESSION_SUBSCRIBE ? "subscribe to"
                                                                   : "unsubscribe from",
                               it->topic, c->h.strerror(rc));
                ctl_log_line(c, MQE2E_LOG_WARNING, line);
            }
        } else if (it->kind == MQE2E_SESSION_DELIVER) {
            int taken = it->current && hand != NULL ? hand(hand_ctx, it->msg, it->topic)
                                                    : c->h.hand(c->h.ctx, it->msg, it->topic);
            if (taken) {
                /* The application owns the message and its topic now. */
                char *topic = it->topic;
                it->msg = NULL;
                it->topic = NULL;
                if (it->receipt.active) ctl_commit(c, &it->receipt, topic);
            } else if (!it->current) {
                /* Nothing can redeliver a held message: it is dropped, unrecorded. */
                (void)snprintf(line, sizeof line,
                               "application refused a released message on '%s'", it->topic);
                ctl_log_line(c, MQE2E_LOG_WARNING, line);
            } else if (it->receipt.active) {
                /* Not recorded: Paho hands the same envelope back later. */
                (void)snprintf(line, sizeof line, "application asked for redelivery on '%s'",
                               it->topic);
                ctl_log_line(c, MQE2E_LOG_DEBUG, line);
                result = 0;
            }
            /* Channel envelopes are recorded when opened: a refusal is final. */
        }
        item_free(c, it);
    }
    return result;
}

/* ------------------------------------------------------------------ */
/* Receive                                                              */

void *mqe2e__wrap_block(size_t struct_size, const mqe2e_session_action *a, char **topic,
                        void **payload)
{
    size_t tlen = strlen(a->topic);
    uint8_t *m;

    *topic = NULL;
    *payload = NULL;
    if (a->len > (size_t)INT_MAX) return NULL;
    m = malloc(struct_size + (a->len > 0 ? a->len : 1U));
    *topic = malloc(tlen + 1U);
    if (m == NULL || *topic == NULL) {
        free(m);
        free(*topic);
        *topic = NULL;
        return NULL;
    }
    memcpy(*topic, a->topic, tlen + 1U);
    *payload = m + struct_size;
    if (a->len > 0) memcpy(*payload, a->data, a->len);
    return m;
}

int mqe2e__ctl_receive(mqe2e__ctl *c, const char *topic, int topic_len, const void *payload,
                       int payload_len, int qos, int retained, int dup, unsigned flags,
                       const MQTTProperties *props, const void *in, mqe2e__ctl_hand_fn *hand,
                       void *hand_ctx)
{
    ctl_item *list = NULL;
    ctl_item first; /* the one DELIVER of the common case: no allocation */
    mqe2e_msg_property *view = NULL;
    size_t nview = 0;
    const mqe2e_session_time now = ctl_time();
    /* Out of memory for the view: an empty one with a property count that
     * cannot be (NULL, 1) makes the session drop the message, never skip a check. */
    const int view_ok = mqe2e__props_from_paho(props, &view, &nview) == 0;

    const unsigned sflags = flags & ~MQE2E__CTL_RX_CALLER_THREAD;

    (void)pthread_mutex_lock(c->h.lock);
    if (payload_len < 0) {
        /* Not a length: refused like any malformed message. */
        (void)mqe2e_session_message_received(c->s, topic, 0, NULL, 1, qos, retained, dup, sflags,
                                             now);
    } else {
        (void)mqe2e_session_message_received_props(
            c->s, topic, topic_len > 0 ? (size_t)topic_len : 0U, (const uint8_t *)payload,
            (size_t)payload_len, qos, retained, dup, sflags, view, view_ok ? nview : 1U, now);
    }
    free(view);
    ctl_take(c, in, (flags & MQE2E__CTL_RX_CALLER_THREAD) ? KEEP_SUBSCRIPTIONS : 0, &list, &first,
             now);
    (void)pthread_mutex_unlock(c->h.lock);
    return ctl_handle(c, list, hand, hand_ctx);
}

/* ------------------------------------------------------------------ */
/* Publish                                                              */

int mqe2e__ctl_publish(mqe2e__ctl *c, const char *topic, const uint8_t *pt, size_t pt_len,
                       int qos, int retained, const MQTTProperties *props, uint8_t *out,
                       size_t out_cap, size_t *out_len)
{
    ctl_item *list = NULL;
    mqe2e_msg_property *view = NULL;
    size_t nview = 0;
    int rc;

    if (mqe2e__props_from_paho(props, &view, &nview) != 0) return MQE2E_ERR_NOMEM;
    /* One clock reading serves the session call and the freshness check. */
    const mqe2e_session_time now = ctl_time();
    (void)pthread_mutex_lock(c->h.lock);
    rc = mqe2e_session_publish_props(c->s, topic, pt, pt_len, qos, retained, view, nview, now,
                                     out, out_cap, out_len);
    free(view);
    /* A group publish leaves no action (the one taken before, if any, was
     * released by the session call): nothing to take or handle. */
    if (mqe2e_session_pending(c->s) > 0)
        ctl_take(c, NULL, 0, &list, NULL, now);
    else
        ctl_after(c, now);
    (void)pthread_mutex_unlock(c->h.lock);
    if (list != NULL) (void)ctl_handle(c, list, NULL, NULL);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Worker                                                               */

/* Wait on @p cond at most @p wait_ms (lock held). */
static void ctl_wait(mqe2e__ctl *c, pthread_cond_t *cond, long wait_ms)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += wait_ms * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    (void)pthread_cond_timedwait(cond, c->h.lock, &ts);
}

static void *ctl_worker(void *arg)
{
    mqe2e__ctl *c = arg;

    (void)pthread_mutex_lock(c->h.lock);
    while (!c->stop) {
        while (c->out_head != NULL && !c->stop) {
            ctl_out *o = c->out_head;
            c->out_head = o->next;
            if (c->out_head == NULL) c->out_tail = NULL;
            c->n_out--;
            c->publishing = 1;
            (void)pthread_mutex_unlock(c->h.lock);
            if (o->len <= (size_t)INT_MAX) {
                int rc;
                if (o->op == MQE2E_SESSION_SUBSCRIBE)
                    rc = c->h.subscribe(c->h.ctx, 1, &o->topic, &o->qos);
                else if (o->op == MQE2E_SESSION_UNSUBSCRIBE)
                    rc = c->h.unsubscribe(c->h.ctx, o->topic);
                else
                    rc = c->h.publish(c->h.ctx, o->topic, o->data, o->len, o->qos, o->retained);
                /* Lost frames are not resent: every handshake retries by
                 * itself, and a reconnect subscribes the session's topics. */
                if (rc != 0 && c->h.log != NULL) {
                    char line[400];
                    (void)snprintf(line, sizeof line, "control %s '%s' failed: %s",
                                   o->op == MQE2E_SESSION_SUBSCRIBE     ? "subscribe to"
                                   : o->op == MQE2E_SESSION_UNSUBSCRIBE ? "unsubscribe from"
                                                                        : "publish to",
                                   o->topic, c->h.strerror(rc));
                    /* -3 is "disconnected" in both of Paho's code spaces. */
                    ctl_log_line(c, rc == -3 ? MQE2E_LOG_INFO : MQE2E_LOG_WARNING, line);
                }
            }
            out_free(o);
            (void)pthread_mutex_lock(c->h.lock);
            c->publishing = 0;
            mqe2e_session_set_backlog(c->s, c->n_out);
            (void)pthread_cond_broadcast(&c->drained);
        }
        if (c->stop) break;
        ctl_wait(c, &c->cond, CTL_TICK_MS);
        if (c->stop) break;
        if (c->out_head != NULL) continue;
        int session_up = c->session_up;
        (void)pthread_mutex_unlock(c->h.lock);
        /* A reconnect Paho made by itself: do what connect() does. */
        int connected = c->h.is_connected(c->h.ctx);
        if (connected && !session_up) (void)mqe2e__ctl_connected(c);
        ctl_item *list = NULL;
        (void)pthread_mutex_lock(c->h.lock);
        if (!connected && c->session_up) {
            c->session_up = 0;
            mqe2e_session_disconnected(c->s);
        }
        (void)mqe2e_session_tick(c->s, connected, ctl_time());
        ctl_take(c, NULL, 0, &list, NULL, ctl_time());
        (void)pthread_mutex_unlock(c->h.lock);
        if (list != NULL) {
            /* The application's callbacks are serialised by cb_lock. */
            (void)pthread_mutex_lock(c->h.cb_lock);
            (void)ctl_handle(c, list, NULL, NULL);
            (void)pthread_mutex_unlock(c->h.cb_lock);
        }
        (void)pthread_mutex_lock(c->h.lock);
    }
    (void)pthread_mutex_unlock(c->h.lock);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Lifecycle                                                            */

static void ctl_spool_free(mqe2e__ctl *c)
{
    mqe2e_spool_destroy(c->spool);
    free(c->spool);
    c->spool = NULL;
}

int mqe2e__ctl_new(mqe2e__ctl **out, const mqe2e__ctl_host *host, mqe2e_keystore *ks,
                   const mqe2e_policy *policy, const mqe2e_session_options *opts)
{
    mqe2e__ctl *c;
    int rc;

    *out = NULL;
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        mqe2e_spool_destroy(opts->spool);
        free(opts->spool);
        return MQE2E_ERR_NOMEM;
    }
    c->h = *host;
    c->spool = opts->spool;
    mqe2e_session_options so = *opts;
    /* The session logs through the front (no line is formatted for nobody). */
    so.log = host->log != NULL && host->log_level > 0 ? host->log : NULL;
    so.log_ctx = host->ctx;
    so.log_level = host->log_level;
    rc = mqe2e_session_new(&c->s, ks, policy, &so);
    if (rc != MQE2E_OK) {
        ctl_spool_free(c);
        free(c);
        return rc;
    }
    if (pthread_cond_init(&c->cond, NULL) != 0) {
        mqe2e_session_free(c->s);
        ctl_spool_free(c);
        free(c);
        return MQE2E_ERR_NOMEM;
    }
    if (pthread_cond_init(&c->drained, NULL) != 0) {
        (void)pthread_cond_destroy(&c->cond);
        mqe2e_session_free(c->s);
        ctl_spool_free(c);
        free(c);
        return MQE2E_ERR_NOMEM;
    }
    /* Until connect(), the worker only waits. */
    c->session_up = 1;
    c->fresh = mqe2e_session_fresh(c->s, ctl_time());
    /* Without an authority pin there are no timers and nothing to publish. */
    if (mqe2e_session_has_control(c->s)) {
        if (pthread_create(&c->worker, NULL, ctl_worker, c) != 0) {
            (void)pthread_cond_destroy(&c->drained);
            (void)pthread_cond_destroy(&c->cond);
            mqe2e_session_free(c->s);
            free(c);
            return MQE2E_ERR_NOMEM;
        }
        c->worker_started = 1;
    }
    *out = c;
    return MQE2E_OK;
}

int mqe2e__ctl_has_control(const mqe2e__ctl *c)
{
    return c != NULL && mqe2e_session_has_control(c->s);
}

mqe2e_protector *mqe2e__ctl_protector(mqe2e__ctl *c)
{
    return c != NULL ? mqe2e_session_protector(c->s) : NULL;
}

const mqe2e_policy *mqe2e__ctl_policy(const mqe2e__ctl *c)
{
    return c != NULL ? mqe2e_session_policy(c->s) : NULL;
}

void mqe2e__ctl_stop(mqe2e__ctl *c)
{
    if (c == NULL || !c->worker_started) return;
    (void)pthread_mutex_lock(c->h.lock);
    c->stop = 1;
    (void)pthread_cond_signal(&c->cond);
    (void)pthread_mutex_unlock(c->h.lock);
    (void)pthread_join(c->worker, NULL);
    c->worker_started = 0;
}

/* Nothing left for the worker to hand to Paho. Lock held. */
static int ctl_drained(const mqe2e__ctl *c, int wait_pending)
{
    if (c->out_head != NULL || c->publishing) return 0;
    return !wait_pending || mqe2e_session_channel_waiting(c->s) == 0;
}

int mqe2e__ctl_flush(mqe2e__ctl *c, uint64_t timeout_ms, int wait_pending)
{
    uint64_t deadline = mqe2e__plugin_monotonic_ms() + timeout_ms;

    if (c == NULL) return MQE2E_OK;
    for (;;) {
        (void)pthread_mutex_lock(c->h.lock);
        int done = ctl_drained(c, wait_pending);
        int running = c->worker_started && !c->stop;
        (void)pthread_mutex_unlock(c->h.lock);
        if (done) return MQE2E_OK;
        if (!running) return MQE2E_ERR_STATE;
        /* Offline, the worker's publishes fail and handshakes cannot finish. */
        if (!c->h.is_connected(c->h.ctx)) return MQE2E_ERR_IO;
        uint64_t now = mqe2e__plugin_monotonic_ms();
        if (now >= deadline) return MQE2E_ERR_STATE;
        /* Short waits: handshake progress (pending -> outbox) is not signalled. */
        long wait_ms = deadline - now < 20U ? (long)(deadline - now) : 20L;
        (void)pthread_mutex_lock(c->h.lock);
        if (!ctl_drained(c, wait_pending)) ctl_wait(c, &c->drained, wait_ms);
        (void)pthread_mutex_unlock(c->h.lock);
    }
}

void mqe2e__ctl_free(mqe2e__ctl *c)
{
    if (c == NULL) return;
    mqe2e__ctl_stop(c);
    while (c->out_head != NULL) {
        ctl_out *o = c->out_head;
        c->out_head = o->next;
        out_free(o);
    }
    mqe2e_session_free(c->s);
    ctl_spool_free(c);
    (void)pthread_cond_destroy(&c->drained);
    (void)pthread_cond_destroy(&c->cond);
    sodium_memzero(c, sizeof *c);
    free(c);
}

int mqe2e__ctl_connected(mqe2e__ctl *c)
{
    ctl_item *list = NULL;
    char **topics = NULL;
    int *qos = NULL;
    int n = 0, cap = 0;
    int rc = 0;

    if (c == NULL) return MQE2E_OK;
    (void)pthread_mutex_lock(c->h.lock);
    (void)mqe2e_session_connected(c->s, ctl_time());
    /* The HELLO waits until the inbox is subscribed, or its reply is lost. */
    ctl_take(c, NULL, KEEP_PUBLISHES | KEEP_SUBSCRIPTIONS, &list, NULL, ctl_time());
    c->session_up = 1;
    (void)pthread_mutex_unlock(c->h.lock);
    /* Inbox, revocations and one topic per key-tree group: in one SUBSCRIBE. */
    for (ctl_item *it = list; it != NULL; it = it->next)
        cap += it->kind == MQE2E_SESSION_SUBSCRIBE && it->topic != NULL;
    if (cap > 0) {
        topics = calloc((size_t)cap, sizeof *topics);
        qos = calloc((size_t)cap, sizeof *qos);
        if (topics == NULL || qos == NULL) rc = -1;
    }
    for (ctl_item *it = list; rc == 0 && it != NULL; it = it->next)
        if (it->kind == MQE2E_SESSION_SUBSCRIBE && it->topic != NULL) {
            topics[n] = it->topic;
            qos[n++] = it->qos;
        }
    if (rc == 0 && n > 0) rc = c->h.subscribe(c->h.ctx, n, topics, qos);
    free(topics);
    free(qos);
    (void)pthread_mutex_lock(c->h.lock);
    for (ctl_item **pp = &list; *pp != NULL;) {
        ctl_item *it = *pp;
        if (it->kind == MQE2E_SESSION_PUBLISH && it->out != NULL && rc == 0) {
            out_append(c, it->out);
            it->out = NULL;
        }
        if (it->kind == MQE2E_SESSION_PUBLISH || it->kind == MQE2E_SESSION_SUBSCRIBE ||
            it->kind == MQE2E_SESSION_UNSUBSCRIBE) {
            *pp = it->next;
            item_free(c, it);
        } else {
            pp = &it->next;
        }
    }
    if (rc != 0) {
        /* The worker tries again on its next tick. */
        c->session_up = 0;
        mqe2e_session_disconnected(c->s);
    }
    mqe2e_session_set_backlog(c->s, c->n_out);
    (void)pthread_mutex_unlock(c->h.lock);
    if (rc != 0) {
        char line[300];
        (void)snprintf(line, sizeof line, "cannot subscribe to the control topics: %s",
                       c->h.strerror(rc));
        ctl_log_line(c, MQE2E_LOG_ERROR, line);
    }
    (void)ctl_handle(c, list, NULL, NULL);
    return rc == 0 ? MQE2E_OK : MQE2E_ERR_IO;
}

void mqe2e__ctl_session_lost(mqe2e__ctl *c)
{
    if (c == NULL) return;
    (void)pthread_mutex_lock(c->h.lock);
    if (mqe2e_session_has_control(c->s)) c->session_up = 0;
    mqe2e_session_disconnected(c->s);
    (void)pthread_cond_signal(&c->cond);
    (void)pthread_mutex_unlock(c->h.lock);
}

void mqe2e__ctl_counters(mqe2e__ctl *c, mqe2e_control_counters *out)
{
    mqe2e_session_counters k;

    _Static_assert(sizeof k == sizeof *out, "session and control counters differ");
    if (c == NULL) {
        memset(out, 0, sizeof *out);
        return;
    }
    (void)pthread_mutex_lock(c->h.lock);
    mqe2e_session_get_counters(c->s, &k);
    (void)pthread_mutex_unlock(c->h.lock);
    /* Same fields in the same order (both append only). */
    memcpy(out, &k, sizeof *out);
}

int mqe2e__ctl_wait_fresh(mqe2e__ctl *c, uint64_t timeout_ms)
{
    uint64_t deadline = mqe2e__plugin_monotonic_ms() + timeout_ms;
    int rc = MQE2E_ERR_EXPIRED;

    if (c == NULL) return MQE2E_OK;
    (void)pthread_mutex_lock(c->h.lock);
    for (;;) {
        int f = mqe2e_session_fresh(c->s, ctl_time());
        if (f == 1) {
            rc = MQE2E_OK;
            break;
        }
        if (f == MQE2E_ERR_POLICY) {
            rc = MQE2E_ERR_POLICY;
            break;
        }
        uint64_t now = mqe2e__plugin_monotonic_ms();
        if (now >= deadline) break;
        /* Signalled when freshness changes; short waits in case one is missed. */
        ctl_wait(c, &c->drained, deadline - now < 50U ? (long)(deadline - now) : 50L);
    }
    (void)pthread_mutex_unlock(c->h.lock);
    return rc;
}
