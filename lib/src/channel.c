/* Peer channels: Noise_XX between two credential holders, then mode-2
 * channel envelopes with generations (rekeys) and replay windows
 * (docs/PROTOCOL.md, "Control plane"). */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "internal_control.h"
#include "internal_cred.h"
#include "internal_envelope_codec.h"
#include "mqe2e/error.h"
#include "mqe2e/replay.h"
#include "proto/control.pb-c.h"

/* AD fixed part: ver, mode, suite (3) + u16 topic len (2) + session (16) +
 * generation, direction (8) + seq (8). */
#define AD_FIXED_BYTES 37U
#define AD_STACK_BYTES 600U

_Static_assert(MQE2E_CHANNEL_MAX_PLAINTEXT == MQE2E_NOISE_MAX_PLAINTEXT_BYTES, "plaintext cap");

/* One receive generation: its cipher and its replay window. */
typedef struct recv_gen {
    mqe2e_noise_cipher *cs;
    uint32_t gen;
    uint64_t until; /* prev only: usable while now < until */
    mqe2e_replay_window win;
} recv_gen;

enum { ST_HANDSHAKE = 0, ST_ESTABLISHED = 1, ST_DEAD = -1 };

struct mqe2e_channel {
    mqe2e_noise_handshake *hs;
    int initiator;
    int state;
    uint8_t session[MQE2E_CONTROL_SESSION_BYTES];
    char local_id[MQE2E_ID_MAX + 1];
    char peer_id[MQE2E_ID_MAX + 1];
    uint8_t authority_sign_public[32];
    uint8_t *local_credential; /* public; malloc()ed copy */
    size_t local_credential_len;
    mqe2e_credential *peer;

    mqe2e_noise_cipher *send;
    uint32_t send_gen;
    uint64_t send_n;
    uint64_t send_started;

    recv_gen cur;
    recv_gen prev; /* prev.cs NULL when none */
};

static int config_ok(const mqe2e_channel_config *cfg)
{
    return cfg != NULL && mqe2e_control_prefix_valid(cfg->prefix) &&
           mqe2e_client_id_valid(cfg->local_id) && cfg->local_dh_secret != NULL &&
           cfg->local_credential != NULL && cfg->local_credential_len > 0 &&
           cfg->local_credential_len <= MQE2E_CREDENTIAL_MAX_BYTES &&
           cfg->authority_sign_public != NULL &&
           (cfg->peer_id == NULL || mqe2e_client_id_valid(cfg->peer_id));
}

static int channel_new(mqe2e_channel **out, const mqe2e_channel_config *cfg, int initiator,
                       const uint8_t session[MQE2E_CONTROL_SESSION_BYTES])
{
    mqe2e_channel *ch;
    int rc;

    *out = NULL;
    if (mqe2e_init() != MQE2E_OK) return MQE2E_ERR_CRYPTO;
    ch = sodium_malloc(sizeof *ch);
    if (ch == NULL) return MQE2E_ERR_NOMEM;
    memset(ch, 0, sizeof *ch);
    ch->initiator = initiator;
    ch->state = ST_HANDSHAKE;
    memcpy(ch->session, session, MQE2E_CONTROL_SESSION_BYTES);
    memcpy(ch->local_id, cfg->local_id, strlen(cfg->local_id) + 1U);
    if (cfg->peer_id != NULL) memcpy(ch->peer_id, cfg->peer_id, strlen(cfg->peer_id) + 1U);
    memcpy(ch->authority_sign_public, cfg->authority_sign_public, 32);
    ch->local_credential = malloc(cfg->local_credential_len);
    if (ch->local_credential == NULL) {
        mqe2e_channel_free(ch);
        return MQE2E_ERR_NOMEM;
    }
    memcpy(ch->local_credential, cfg->local_credential, cfg->local_credential_len);
    ch->local_credential_len = cfg->local_credential_len;
    rc = mqe2e__control_handshake(&ch->hs, MQE2E_CONTROL_CHANNEL,
                                  initiator ? MQE2E_NOISE_INITIATOR : MQE2E_NOISE_RESPONDER,
                                  cfg->prefix, session);
    if (rc == MQE2E_OK) rc = mqe2e_noise_handshake_set_local_static(ch->hs, cfg->local_dh_secret);
    if (rc != MQE2E_OK) {
        mqe2e_channel_free(ch);
        return rc;
    }
    *out = ch;
    return MQE2E_OK;
}

/* Write the next message with ChannelHello{local id, credential if @p with_cred}. */
static int write_hello(mqe2e_channel *ch, uint8_t *out, size_t out_cap, size_t *out_len,
                       uint32_t step, int with_cred)
{
    Mqe2e__V1__ChannelHello m;
    uint8_t *payload;
    size_t plen;
    int rc;

    mqe2e__v1__channel_hello__init(&m);
    m.client_id = ch->local_id;
    if (with_cred) {
        m.credential.data = ch->local_credential;
        m.credential.len = ch->local_credential_len;
    }
    plen = mqe2e__v1__channel_hello__get_packed_size(&m);
    payload = malloc(plen + 1U);
    if (payload == NULL) return MQE2E_ERR_NOMEM;
    mqe2e__v1__channel_hello__pack(&m, payload);
    rc = mqe2e__control_write(out, out_cap, out_len, ch->hs, MQE2E_CONTROL_CHANNEL, ch->local_id,
                              ch->session, step, payload, plen);
    free(payload);
    return rc;
}

/* Strict ChannelHello: id equal to @p from; credential present iff @p with_cred. */
static int read_hello(Mqe2e__V1__ChannelHello **out, const uint8_t *payload, size_t plen,
                      const char *from, int with_cred)
{
    Mqe2e__V1__ChannelHello *m =
        mqe2e__v1__channel_hello__unpack(&mqe2e__cred_allocator, plen, payload);
    *out = NULL;
    if (m == NULL) return MQE2E_ERR_AUTH;
    if (!mqe2e__cred_canonical(&m->base, payload, plen) || m->client_id == NULL ||
        strcmp(m->client_id, from) != 0 || (m->credential.len > 0) != (with_cred != 0)) {
        mqe2e__v1__channel_hello__free_unpacked(m, &mqe2e__cred_allocator);
        return MQE2E_ERR_AUTH;
    }
    *out = m;
    return MQE2E_OK;
}

int mqe2e__channel_hello_check(const uint8_t *payload, size_t plen, const char *from, int with_cred)
{
    Mqe2e__V1__ChannelHello *m = NULL;
    int rc = read_hello(&m, payload, plen, from, with_cred);
    if (m != NULL) mqe2e__v1__channel_hello__free_unpacked(m, &mqe2e__cred_allocator);
    return rc;
}

int mqe2e_channel_initiate(mqe2e_channel **ch, uint8_t *out, size_t out_cap, size_t *out_len,
                           const mqe2e_channel_config *cfg, uint64_t now)
{
    uint8_t session[MQE2E_CONTROL_SESSION_BYTES];
    int rc;

    (void)now;
    if (ch == NULL) return MQE2E_ERR_INVALID_ARG;
    *ch = NULL;
    if (out == NULL || out_len == NULL || !config_ok(cfg) || cfg->peer_id == NULL)
        return MQE2E_ERR_INVALID_ARG;
    if (mqe2e_init() != MQE2E_OK) return MQE2E_ERR_CRYPTO;
    randombytes_buf(session, sizeof session);
    rc = channel_new(ch, cfg, 1, session);
    if (rc != MQE2E_OK) return rc;
    rc = write_hello(*ch, out, out_cap, out_len, 1, 0);
    if (rc != MQE2E_OK) {
        mqe2e_channel_free(*ch);
        *ch = NULL;
    }
    return rc;
}

int mqe2e_channel_accept(mqe2e_channel **ch, uint8_t *out, size_t out_cap, size_t *out_len,
                         const mqe2e_channel_config *cfg, const uint8_t *frame, size_t len,
                         uint64_t now)
{
    Mqe2e__V1__ChannelHello *m = NULL;
    mqe2e_control_frame f;
    mqe2e_channel *c = NULL;
    uint8_t *payload = NULL;
    size_t cap = 0, plen = 0;
    int rc;

    (void)now;
    if (ch == NULL) return MQE2E_ERR_INVALID_ARG;
    *ch = NULL;
    if (out == NULL || out_len == NULL || !config_ok(cfg) || (frame == NULL && len != 0))
        return MQE2E_ERR_INVALID_ARG;
    rc = mqe2e_control_frame_decode(&f, frame, len);
    if (rc != MQE2E_OK) return rc;
    if (f.kind != MQE2E_CONTROL_CHANNEL || f.step != 1) return MQE2E_ERR_STATE;
    if ((cfg->peer_id != NULL && strcmp(f.from, cfg->peer_id) != 0) ||
        strcmp(f.from, cfg->local_id) == 0)
        return MQE2E_ERR_AUTH;
    rc = channel_new(&c, cfg, 0, f.session);
    if (rc != MQE2E_OK) return rc;
    memcpy(c->peer_id, f.from, sizeof c->peer_id);
    rc = mqe2e__control_read(&payload, &cap, &plen, c->hs, &f);
    if (rc != MQE2E_OK) {
        if (rc != MQE2E_ERR_NOMEM && rc != MQE2E_ERR_DECODE && rc != MQE2E_ERR_TOO_LARGE)
            rc = MQE2E_ERR_AUTH;
        goto out;
    }
    rc = read_hello(&m, payload, plen, c->peer_id, 0);
    if (rc != MQE2E_OK) goto out;
    rc = write_hello(c, out, out_cap, out_len, 2, 1);
out:
    if (m != NULL) mqe2e__v1__channel_hello__free_unpacked(m, &mqe2e__cred_allocator);
    mqe2e__control_free_wiped(payload, cap);
    if (rc != MQE2E_OK) {
        mqe2e_channel_free(c);
        return rc;
    }
    *ch = c;
    return MQE2E_OK;
}

/* The peer credential: pinned authority, valid now, not revoked, naming the
 * expected id and the static key the handshake authenticated. */
static int check_peer(mqe2e_channel *ch, const ProtobufCBinaryData *cred,
                      const mqe2e_revocation_list *revocations, uint64_t now)
{
    uint8_t rs[32];
    mqe2e_credential *c = NULL;
    int rc = mqe2e_credential_verify(&c, cred->data, cred->len, ch->authority_sign_public, now);
    if (rc != MQE2E_OK)
        return rc == MQE2E_ERR_EXPIRED || rc == MQE2E_ERR_NOMEM ? rc : MQE2E_ERR_AUTH;
    rc = mqe2e_noise_handshake_remote_static(ch->hs, rs);
    if (rc != MQE2E_OK || strcmp(mqe2e_credential_client_id(c), ch->peer_id) != 0 ||
        sodium_memcmp(mqe2e_credential_dh_public(c), rs, sizeof rs) != 0 ||
        (revocations != NULL &&
         mqe2e_revocation_list_is_revoked(revocations, ch->peer_id, mqe2e_credential_serial(c)))) {
        mqe2e_credential_free(c);
        return MQE2E_ERR_AUTH;
    }
    ch->peer = c;
    return MQE2E_OK;
}

static int establish(mqe2e_channel *ch, uint64_t now)
{
    mqe2e_noise_cipher *send = NULL, *recv = NULL;
    int rc = mqe2e_noise_split(ch->hs, &send, &recv);
    if (rc != MQE2E_OK) return rc;
    ch->send = send;
    ch->send_gen = 0;
    ch->send_n = 0;
    ch->send_started = now;
    ch->cur.cs = recv;
    ch->cur.gen = 0;
    mqe2e_replay_init(&ch->cur.win, 0);
    ch->state = ST_ESTABLISHED;
    return MQE2E_OK;
}

int mqe2e_channel_handle(mqe2e_channel *ch, uint8_t *out, size_t out_cap, size_t *out_len,
                         const uint8_t *frame, size_t len, const mqe2e_revocation_list *revocations,
                         uint64_t now)
{
    Mqe2e__V1__ChannelHello *m = NULL;
    mqe2e_control_frame f;
    uint8_t *payload = NULL;
    size_t cap = 0, plen = 0;
    int rc;

    if (ch == NULL || out_len == NULL || (ch->initiator && out == NULL) ||
        (frame == NULL && len != 0))
        return MQE2E_ERR_INVALID_ARG;
    *out_len = 0;
    if (ch->state != ST_HANDSHAKE) return MQE2E_ERR_STATE;
    rc = mqe2e_control_frame_decode(&f, frame, len);
    if (rc != MQE2E_OK) return rc;
    if (!mqe2e__control_frame_for(&f, MQE2E_CONTROL_CHANNEL, ch->initiator ? 2U : 3U, ch->session,
                                  ch->peer_id))
        return MQE2E_ERR_STATE;
    rc = mqe2e__control_read(&payload, &cap, &plen, ch->hs, &f);
    if (rc != MQE2E_OK) {
        rc = rc == MQE2E_ERR_NOMEM ? rc : MQE2E_ERR_AUTH;
        goto out;
    }
    rc = read_hello(&m, payload, plen, ch->peer_id, 1);
    if (rc != MQE2E_OK) goto out;
    rc = check_peer(ch, &m->credential, revocations, now);
    if (rc != MQE2E_OK) goto out;
    if (ch->initiator) {
        rc = write_hello(ch, out, out_cap, out_len, 3, 1);
        if (rc != MQE2E_OK) goto out;
    }
    rc = establish(ch, now);
out:
    if (m != NULL) mqe2e__v1__channel_hello__free_unpacked(m, &mqe2e__cred_allocator);
    mqe2e__control_free_wiped(payload, cap);
    if (rc != MQE2E_OK) {
        ch->state = ST_DEAD;
        *out_len = 0;
    }
    return rc;
}

int mqe2e_channel_is_established(const mqe2e_channel *ch)
{
    return ch != NULL && ch->state == ST_ESTABLISHED;
}

const char *mqe2e_channel_peer_id(const mqe2e_channel *ch)
{
    return ch == NULL ? "" : ch->peer_id;
}

const mqe2e_credential *mqe2e_channel_peer_credential(const mqe2e_channel *ch)
{
    return ch == NULL || ch->state != ST_ESTABLISHED ? NULL : ch->peer;
}

int mqe2e_channel_session(const mqe2e_channel *ch, uint8_t out[MQE2E_CONTROL_SESSION_BYTES])
{
    if (ch == NULL || out == NULL) return MQE2E_ERR_INVALID_ARG;
    memcpy(out, ch->session, MQE2E_CONTROL_SESSION_BYTES);
    return MQE2E_OK;
}

uint32_t mqe2e_channel_send_generation(const mqe2e_channel *ch)
{
    return ch == NULL ? 0 : ch->send_gen;
}

int mqe2e_channel_rekey(mqe2e_channel *ch, uint64_t now)
{
    if (ch == NULL) return MQE2E_ERR_INVALID_ARG;
    if (ch->state != ST_ESTABLISHED) return MQE2E_ERR_STATE;
    if (ch->send_gen == UINT32_MAX) return MQE2E_ERR_EXHAUSTED;
    int rc = mqe2e_noise_cipher_rekey(ch->send);
    if (rc != MQE2E_OK) return rc;
    ch->send_gen++;
    ch->send_n = 0;
    ch->send_started = now;
    return MQE2E_OK;
}

/* ------------------------------------------------------------------------ */
/* Channel envelopes (mode 2)                                                */
/* ------------------------------------------------------------------------ */

static void put_u32be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* AD = u8(1) || u8(2) || u8(1) || u16be(len topic) || topic || session ||
 * u32be(generation) || u32be(direction) || u64be(seq). In stack_buf when it
 * fits, else in *heap (caller frees; the AD holds nothing secret). */
static int build_ad(const uint8_t **ad, size_t *ad_len, uint8_t *stack_buf, uint8_t **heap,
                    const char *topic, size_t topic_len, const uint8_t session[16],
                    const mqe2e_envelope_header *h)
{
    size_t n = AD_FIXED_BYTES + topic_len;
    uint8_t *p = stack_buf;
    *heap = NULL;
    if (n > AD_STACK_BYTES) {
        *heap = malloc(n);
        if (*heap == NULL) return MQE2E_ERR_NOMEM;
        p = *heap;
    }
    p[0] = 1;
    p[1] = (uint8_t)MQE2E_MODE_CHANNEL;
    p[2] = 1;
    p[3] = (uint8_t)(topic_len >> 8);
    p[4] = (uint8_t)topic_len;
    memcpy(p + 5, topic, topic_len);
    memcpy(p + 5 + topic_len, session, MQE2E_CONTROL_SESSION_BYTES);
    put_u32be(p + 21 + topic_len, h->epoch);
    put_u32be(p + 25 + topic_len, h->sender_id);
    put_u32be(p + 29 + topic_len, (uint32_t)(h->seq >> 32));
    put_u32be(p + 33 + topic_len, (uint32_t)h->seq);
    *ad = p;
    *ad_len = n;
    return MQE2E_OK;
}

static int topic_len_ok(const char *topic, size_t *len)
{
    if (topic == NULL) return 0;
    *len = strnlen(topic, (size_t)MQE2E_TOPIC_MAX_BYTES + 1U);
    return *len > 0 && *len <= MQE2E_TOPIC_MAX_BYTES;
}

int mqe2e_channel_seal(mqe2e_channel *ch, uint8_t *out, size_t out_cap, size_t *out_len,
                       const char *topic, const uint8_t *pt, size_t pt_len, uint64_t now)
{
    uint8_t ad_stack[AD_STACK_BYTES];
    uint8_t *ad_heap = NULL;
    const uint8_t *ad;
    size_t ad_len, topic_len, hlen, ct_len = 0;
    mqe2e_envelope_header h;
    int rc;

    if (ch == NULL || out == NULL || out_len == NULL || (pt == NULL && pt_len != 0) ||
        !topic_len_ok(topic, &topic_len))
        return MQE2E_ERR_INVALID_ARG;
    if (ch->state != ST_ESTABLISHED) return MQE2E_ERR_STATE;
    if (pt_len > MQE2E_CHANNEL_MAX_PLAINTEXT) return MQE2E_ERR_TOO_LARGE;
    if (ch->send_n >= MQE2E_CHANNEL_REKEY_MESSAGES ||
        (now >= ch->send_started && now - ch->send_started >= MQE2E_CHANNEL_REKEY_SECONDS)) {
        rc = mqe2e_channel_rekey(ch, now);
        if (rc != MQE2E_OK) return rc;
    }
    h.mode = MQE2E_MODE_CHANNEL;
    h.epoch = ch->send_gen;
    h.sender_id = ch->initiator ? 0U : 1U;
    h.seq = ch->send_n;
    hlen = mqe2e__envelope_header_len(&h, pt_len + MQE2E_TAG_BYTES);
    if (out_cap < hlen || out_cap - hlen < pt_len + MQE2E_TAG_BYTES)
        return MQE2E_ERR_BUFFER_TOO_SMALL;
    rc = build_ad(&ad, &ad_len, ad_stack, &ad_heap, topic, topic_len, ch->session, &h);
    if (rc != MQE2E_OK) return rc;
    rc = mqe2e_noise_cipher_encrypt_n(ch->send, h.seq, out + hlen, out_cap - hlen, &ct_len, ad,
                                      ad_len, pt, pt_len);
    free(ad_heap);
    if (rc != MQE2E_OK) return rc;
    mqe2e__envelope_header_put(out, &h, ct_len);
    *out_len = hlen + ct_len;
    /* Every sealed message consumes its nonce, whatever happens to it next. */
    ch->send_n++;
    return MQE2E_OK;
}

/* A copy of @p src rekeyed @p times (the cipher of a later generation). */
static int derive_gen(mqe2e_noise_cipher **out, const mqe2e_noise_cipher *src, uint32_t times)
{
    uint8_t k[MQE2E_NOISE_KEY_BYTES];
    int rc = mqe2e_noise_cipher_export_key(src, k);
    if (rc == MQE2E_OK) rc = mqe2e_noise_cipher_new(out, k);
    sodium_memzero(k, sizeof k);
    for (uint32_t i = 0; rc == MQE2E_OK && i < times; i++)
        rc = mqe2e_noise_cipher_rekey(*out);
    if (rc != MQE2E_OK) {
        mqe2e_noise_cipher_free(*out);
        *out = NULL;
    }
    return rc;
}

int mqe2e_channel_open(mqe2e_channel *ch, uint8_t *pt, size_t pt_cap, size_t *pt_len,
                       const char *topic, const uint8_t *in, size_t in_len, uint64_t now)
{
    uint8_t ad_stack[AD_STACK_BYTES];
    uint8_t *ad_heap = NULL;
    const uint8_t *ad;
    size_t ad_len, topic_len;
    mqe2e_envelope_view v;
    mqe2e_noise_cipher *next = NULL, *next_prev = NULL;
    recv_gen *slot = NULL;
    const mqe2e_noise_cipher *cs;
    mqe2e_replay_window fresh;
    const mqe2e_replay_window *win;
    uint32_t g;
    int rc;

    if (ch == NULL || pt_len == NULL || (pt == NULL && pt_cap != 0) ||
        (in == NULL && in_len != 0) || !topic_len_ok(topic, &topic_len))
        return MQE2E_ERR_INVALID_ARG;
    *pt_len = 0;
    if (ch->state != ST_ESTABLISHED) return MQE2E_ERR_STATE;
    if (in_len > MQE2E_NOISE_MAX_MESSAGE_BYTES + MQE2E_ENVELOPE_MAX_HEADER_BYTES)
        return MQE2E_ERR_TOO_LARGE;
    rc = mqe2e__envelope_decode_channel(&v, in, in_len);
    if (rc != MQE2E_OK) return rc;
    if (v.header.mode != MQE2E_MODE_CHANNEL) return MQE2E_ERR_SUITE;
    if (v.ciphertext_len > MQE2E_NOISE_MAX_MESSAGE_BYTES) return MQE2E_ERR_TOO_LARGE;
    /* Our own direction coming back is a reflection: it can never verify. */
    if (v.header.sender_id != (ch->initiator ? 1U : 0U)) return MQE2E_ERR_AUTH;

    g = v.header.epoch;
    mqe2e_replay_init(&fresh, 0);
    if (g == ch->cur.gen) {
        slot = &ch->cur;
        cs = ch->cur.cs;
        win = &ch->cur.win;
    } else if (ch->prev.cs != NULL && g == ch->prev.gen) {
        if (now >= ch->prev.until) return MQE2E_ERR_EXPIRED;
        slot = &ch->prev;
        cs = ch->prev.cs;
        win = &ch->prev.win;
    } else if (g > ch->cur.gen) {
        uint32_t skip = g - ch->cur.gen;
        if (skip > MQE2E_CHANNEL_MAX_GENERATION_SKIP) return MQE2E_ERR_NO_KEY;
        /* Derived aside; adopted only once a message of g authenticates. */
        if (skip > 1) {
            rc = derive_gen(&next_prev, ch->cur.cs, skip - 1U);
            if (rc == MQE2E_OK) rc = derive_gen(&next, next_prev, 1);
        } else {
            rc = derive_gen(&next, ch->cur.cs, 1);
        }
        if (rc != MQE2E_OK) goto out;
        cs = next;
        win = &fresh;
    } else {
        return MQE2E_ERR_EXPIRED;
    }
    rc = mqe2e_replay_check(win, v.header.seq);
    if (rc != MQE2E_OK) goto out;
    if (v.header.seq == UINT64_MAX) {
        rc = MQE2E_ERR_AUTH;
        goto out;
    }
    rc = build_ad(&ad, &ad_len, ad_stack, &ad_heap, topic, topic_len, ch->session, &v.header);
    if (rc != MQE2E_OK) goto out;
    rc = mqe2e_noise_cipher_decrypt_n(cs, v.header.seq, pt, pt_cap, pt_len, ad, ad_len,
                                      v.ciphertext, v.ciphertext_len);
    free(ad_heap);
    if (rc != MQE2E_OK) {
        if (rc != MQE2E_ERR_BUFFER_TOO_SMALL) rc = MQE2E_ERR_AUTH;
        goto out;
    }
    if (slot != NULL) {
        mqe2e_replay_update(&slot->win, v.header.seq);
    } else {
        /* The peer moved on: the generation before g becomes the grace one. */
        mqe2e_noise_cipher_free(ch->prev.cs);
        if (next_prev != NULL) {
            mqe2e_noise_cipher_free(ch->cur.cs);
            ch->prev.cs = next_prev;
            ch->prev.gen = g - 1U;
            mqe2e_replay_init(&ch->prev.win, 0);
            next_prev = NULL;
        } else {
            ch->prev = ch->cur;
        }
        ch->prev.until = now > UINT64_MAX - MQE2E_CHANNEL_GRACE_SECONDS
                             ? UINT64_MAX
                             : now + MQE2E_CHANNEL_GRACE_SECONDS;
        ch->cur.cs = next;
        ch->cur.gen = g;
        ch->cur.until = 0;
        ch->cur.win = fresh;
        mqe2e_replay_update(&ch->cur.win, v.header.seq);
        next = NULL;
    }
out:
    mqe2e_noise_cipher_free(next);
    mqe2e_noise_cipher_free(next_prev);
    if (rc != MQE2E_OK) {
        if (pt != NULL && pt_cap > 0) sodium_memzero(pt, pt_cap);
        *pt_len = 0;
    }
    return rc;
}

void mqe2e_channel_free(mqe2e_channel *ch)
{
    if (ch == NULL) return;
    mqe2e_noise_handshake_free(ch->hs);
    mqe2e_noise_cipher_free(ch->send);
    mqe2e_noise_cipher_free(ch->cur.cs);
    mqe2e_noise_cipher_free(ch->prev.cs);
    mqe2e_credential_free(ch->peer);
    free(ch->local_credential);
    sodium_memzero(ch, sizeof *ch);
    sodium_free(ch);
}
