"""The shared vectors of tests/vectors/ read through the Python binding.

The same files are checked in C by tests/unit/test_vectors.c; any other
binding proves itself on them the same way (tests/vectors/README.md).
"""
import struct

import pytest

import mqe2e
from mqe2e import wire
from mqe2e._lib import ffi, lib
from conftest import load_vectors

h = bytes.fromhex


def test_key_schedule():
    v = load_vectors("key-schedule-v1.json")
    assert len(v["sender_keys"]) == 3
    for k in v["sender_keys"]:
        secret = h(k["group_secret"])
        assert wire.hkdf_extract(b"mqe2e/v1/group", secret).hex() == k["prk"]
        key, iv = wire.derive_sender_key(secret, k["group_id"], k["epoch"], k["sender_id"])
        assert (key.hex(), iv.hex()) == (k["key"], k["iv"]), k["note"]
    k = h(v["channel_k0"])
    for g in v["channel_generations"]:
        k = wire.channel_rekey(k)
        assert k.hex() == g["key"], g["generation"]


def _open(v, env, topic=None):
    return wire.open_envelope(env, secret=h(v["group_secret"]), group_id=v["group_id"],
                              topic=topic or v["topic"],
                              signer_public=h(v["signer_public"]) if "signer_public" in v else None)


def test_envelopes():
    data = load_vectors("envelope-v1.json")
    for v in data["envelopes"]:
        env = h(v["envelope"])
        hdr = wire.parse_envelope(env)
        assert hdr.mode == (wire.MODE_SIGNED_GROUP if v["mode"] == "signed" else wire.MODE_GROUP)
        assert (hdr.epoch, hdr.sender_id, hdr.seq) == (v["epoch"], v["sender_id"], v["seq"])
        assert hdr.instance == int(v["instance"], 16)
        key, iv = wire.derive_sender_key(h(v["group_secret"]), v["group_id"], hdr.epoch,
                                         hdr.sender_id)
        assert (key.hex(), iv.hex()) == (v["key"], v["iv"])
        # nonce = iv XOR (u48be(instance) || u48be(seq)), computed here from the spec
        nonce = bytes(a ^ b for a, b in zip(iv, h(v["instance"]) + hdr.seq.to_bytes(6, "big")))
        assert nonce.hex() == v["nonce"]
        assert _open(v, env) == h(v["plaintext"]), v["note"]
        if v["mode"] == "group":
            again = wire.seal_envelope(h(v["plaintext"]), secret=h(v["group_secret"]),
                                       group_id=v["group_id"], topic=v["topic"], epoch=hdr.epoch,
                                       sender_id=hdr.sender_id, seq=hdr.seq,
                                       instance=hdr.instance)
            assert again == env


def test_bad_envelopes_raise_with_the_core_reason():
    data = load_vectors("envelope-v1.json")
    assert len(data["bad_envelopes"]) >= 8
    for b in data["bad_envelopes"]:
        v = data["envelopes"][int(b["of"].split(":")[1])]
        with pytest.raises(mqe2e.Mqe2eError) as e:
            _open(v, h(b["envelope"]), b.get("topic"))
        assert e.value.name == b["error"], b["note"]
        assert b["error"] in str(e.value)


def test_channel_envelopes():
    data = load_vectors("envelope-v1.json")
    for v in data["channel_envelopes"]:
        env = h(v["envelope"])
        with pytest.raises(mqe2e.SuiteError):
            wire.parse_envelope(env)
        key = wire.channel_rekey(h(v["channel_k0"]), v["generation"]) if v["generation"] else h(v["channel_k0"])
        assert key.hex() == v["key"]
        topic = v["topic"].encode()
        ad = (bytes([1, 2, 1]) + struct.pack(">H", len(topic)) + topic + h(v["session"])
              + struct.pack(">IIQ", v["generation"], v["direction"], v["seq"]))
        assert ad.hex() == v["ad"]
        # Header: read the protobuf fields by hand, as an independent binding would.
        fields = _pb_fields(env)
        assert fields.get(4, 0) == v["generation"] and fields.get(5, 0) == v["direction"]
        assert fields.get(6, 0) == v["seq"] and 2 in fields
        assert wire.channel_decrypt(key, v["seq"], ad, fields[2]) == h(v["plaintext"])
        with pytest.raises(mqe2e.AuthError):
            wire.channel_decrypt(key, v["seq"] + 1, ad, fields[2])


def test_ticket():
    t = load_vectors("control-v1.json")["ticket"]
    d = wire.decode_ticket(t["text"])
    assert d.authority_sign_public.hex() == t["authority_sign_public"]
    assert d.authority_dh_public.hex() == t["authority_dh_public"]
    assert (d.authority_id, d.control_prefix, d.client_id) == (t["authority_id"], t["control_prefix"], t["client_id"])
    assert (d.token_id.hex(), d.token.hex(), d.expires_at) == (t["token_id"], t["token"], t["expires_at"])
    with pytest.raises(mqe2e.DecodeError):
        wire.decode_ticket(t["text"][:-4])


def _frame(o):
    f = wire.decode_frame(h(o["frame"]))
    assert (f.kind, f.step, f.sender) == (o["kind"], o["step"], o["from"])
    return h(o["frame"])


def test_enroll_step1_read_by_the_authority():
    c = load_vectors("control-v1.json")
    o, t = c["enroll_step1"], c["ticket"]
    frame = _frame(o)
    for token, expect in ((h(t["token"]), 0), (bytes(32), mqe2e.errors.CODES["auth"])):
        st = ffi.new("mqe2e_enroll_authority **")
        req = ffi.new("mqe2e_enroll_request *")
        assert lib.mqe2e_enroll_accept_read(st, req, h(c["authority_dh_secret"]), b"mqe2e", frame, len(frame)) == 0
        assert ffi.string(req.client_id).decode() == t["client_id"]
        assert bytes(req.token_id).hex() == t["token_id"]
        assert bytes(req.dh_public).hex() == c["device_dh_public"]
        assert bytes(req.sign_public).hex() == c["device_sign_public"]
        assert lib.mqe2e_enroll_accept_verify_mac(st[0], token) == expect
        lib.mqe2e_enroll_authority_free(st[0])


def test_hello_step1_read_by_the_authority():
    c = load_vectors("control-v1.json")
    o = c["hello_step1"]
    frame = _frame(o)
    st = ffi.new("mqe2e_hello_authority **")
    req = ffi.new("mqe2e_hello_request *")
    assert lib.mqe2e_hello_accept_read(st, req, h(c["authority_dh_secret"]), b"mqe2e", frame, len(frame)) == 0
    assert ffi.string(req.client_id).decode() == o["from"]
    assert req.credential_serial == o["credential_serial"]
    assert bytes(req.dh_public).hex() == c["device_dh_public"]
    lib.mqe2e_hello_authority_free(st[0])


def test_push_read_by_the_device():
    c = load_vectors("control-v1.json")
    o = c["push"]
    frame = _frame(o)
    args = dict(client_dh_secret=h(c["device_dh_secret"]), authority_dh_public=h(c["authority_dh_public"]),
                prefix=c["prefix"], authority_id=c["authority_id"])
    p = wire.open_push(frame, **args)
    assert p.push_seq == o["push_seq"]
    assert p.removed_groups == o["removed_groups"]
    assert len(p.bundles) == len(o["bundles"])
    for got, exp in zip(p.bundles, o["bundles"]):
        assert (got.group, got.topic_filter, got.epoch, got.secret.hex(), got.created_at, got.sender_id,
                got.retired_at, got.grace_seconds) == (exp["group"], exp["topic_filter"], exp["epoch"], exp["secret"],
                                                       exp["created_at"], exp["sender_id"], exp["retired_at"],
                                                       exp["grace_seconds"])
    with pytest.raises(mqe2e.ReplayError):
        wire.open_push(frame, last_push_seq=o["push_seq"], **args)
    with pytest.raises(mqe2e.AuthError):
        wire.open_push(frame, **{**args, "prefix": "other"})
    bad = bytearray(frame)
    bad[-1] ^= 1
    with pytest.raises(mqe2e.AuthError):
        wire.open_push(bytes(bad), **args)


def test_hello_exchange_replayed_with_the_noise_api():
    """Rebuild the client's side of HELLO from the spec (prologue of PROTOCOL.md
    8.1, Noise_IK) with the published ephemeral: step 1 must come out byte for
    byte, and the authority's step 2 must open to the published reply."""
    c = load_vectors("control-v1.json")
    o = c["hello_exchange"]
    session = h(o["session"])
    prologue = b"mqe2e/v1/hello\x00" + c["prefix"].encode() + b"\x00" + session
    assert prologue.hex() == o["prologue"]

    def client(e_sk):
        hs = ffi.new("mqe2e_noise_handshake **")
        assert lib.mqe2e_noise_handshake_new(hs, o["protocol"].encode(), 1, prologue, len(prologue)) == 0
        assert lib.mqe2e_noise_handshake_set_local_static(hs[0], h(c["device_dh_secret"])) == 0
        assert lib.mqe2e_noise_handshake_set_remote_static(hs[0], h(c["authority_dh_public"])) == 0
        assert lib.mqe2e_noise_handshake_set_ephemeral(hs[0], e_sk) == 0
        out, n = ffi.new("uint8_t[1024]"), ffi.new("size_t *")
        req = h(o["request_payload"])
        assert lib.mqe2e_noise_write_message(hs[0], out, 1024, n, req, len(req)) == 0
        return hs[0], bytes(ffi.buffer(out, n[0]))

    hs, msg1 = client(h(o["client_ephemeral_secret"]))
    f1 = wire.decode_frame(h(o["step1_frame"]))
    assert (f1.kind, f1.step, f1.sender, f1.session) == (2, 1, "sensor-1", session)
    assert f1.noise == msg1
    f2 = wire.decode_frame(h(o["step2_frame"]))
    assert (f2.kind, f2.step, f2.sender, f2.session) == (2, 2, c["authority_id"], session)
    buf, n = ffi.new("uint8_t[4096]"), ffi.new("size_t *")
    assert lib.mqe2e_noise_read_message(hs, buf, 4096, n, f2.noise, len(f2.noise)) == 0
    assert bytes(ffi.buffer(buf, n[0])).hex() == o["reply_payload"]
    lib.mqe2e_noise_handshake_free(hs)
    other = bytearray(h(o["client_ephemeral_secret"]))
    other[7] ^= 1
    hs, _ = client(bytes(other))
    assert lib.mqe2e_noise_read_message(hs, buf, 4096, n, f2.noise, len(f2.noise)) == mqe2e.errors.CODES["auth"]
    lib.mqe2e_noise_handshake_free(hs)


def _replay_initiator(c, o, prologue, e_sk, psk=None):
    hs = ffi.new("mqe2e_noise_handshake **")
    assert lib.mqe2e_noise_handshake_new(hs, o["protocol"].encode(), 1, prologue, len(prologue)) == 0
    assert lib.mqe2e_noise_handshake_set_local_static(hs[0], h(c["device_dh_secret"])) == 0
    assert lib.mqe2e_noise_handshake_set_remote_static(hs[0], h(c["authority_dh_public"])) == 0
    if psk is not None:
        assert lib.mqe2e_noise_handshake_set_psk(hs[0], psk) == 0
    assert lib.mqe2e_noise_handshake_set_ephemeral(hs[0], e_sk) == 0
    out, n = ffi.new("uint8_t[1024]"), ffi.new("size_t *")
    req = h(o["request_payload"])
    assert lib.mqe2e_noise_write_message(hs[0], out, 1024, n, req, len(req)) == 0
    return hs[0], bytes(ffi.buffer(out, n[0]))


def test_enroll_exchange_replayed_with_the_noise_api():
    """ENROLL (PROTOCOL.md 8.3) from the spec: token_mac with Python's own
    HMAC, step 1 replayed with the token as psk, step 2 opened."""
    import hashlib
    import hmac

    c = load_vectors("control-v1.json")
    o, t = c["enroll_exchange"], c["ticket"]
    session, token = h(o["session"]), h(t["token"])
    prologue = b"mqe2e/v1/enroll\x00" + t["control_prefix"].encode() + b"\x00" + session
    assert prologue.hex() == o["prologue"]
    mac = hmac.new(token, b"mqe2e/v1/enroll-mac" + session + h(o["device_ephemeral_public"])
                   + h(c["device_dh_public"]) + h(c["device_sign_public"]) + t["client_id"].encode(),
                   hashlib.sha256).digest()
    assert mac.hex() == o["token_mac"]
    assert mac in h(o["request_payload"])
    hs, msg1 = _replay_initiator(c, o, prologue, h(o["device_ephemeral_secret"]), token)
    f1 = wire.decode_frame(h(o["step1_frame"]))
    assert (f1.kind, f1.step, f1.sender, f1.session) == (1, 1, t["client_id"], session)
    assert f1.noise == msg1
    f2 = wire.decode_frame(h(o["step2_frame"]))
    assert (f2.kind, f2.step, f2.sender) == (1, 2, t["authority_id"])
    buf, n = ffi.new("uint8_t[4096]"), ffi.new("size_t *")
    assert lib.mqe2e_noise_read_message(hs, buf, 4096, n, f2.noise, len(f2.noise)) == 0
    reply = bytes(ffi.buffer(buf, n[0]))
    assert reply.hex() == o["reply_payload"]
    assert h(o["credential"]) in reply
    lib.mqe2e_noise_handshake_free(hs)
    cred = ffi.new("mqe2e_credential **")
    credential = h(o["credential"])
    assert lib.mqe2e_credential_verify(cred, credential, len(credential),
                                       h(t["authority_sign_public"]), 1700000001) == 0
    assert lib.mqe2e_credential_serial(cred[0]) == o["credential_serial"]
    assert ffi.string(lib.mqe2e_credential_client_id(cred[0])).decode() == t["client_id"]
    lib.mqe2e_credential_free(cred[0])
    wrong = bytearray(token)
    wrong[3] ^= 1
    hs, _ = _replay_initiator(c, o, prologue, h(o["device_ephemeral_secret"]), bytes(wrong))
    assert lib.mqe2e_noise_read_message(hs, buf, 4096, n, f2.noise, len(f2.noise)) == mqe2e.errors.CODES["auth"]
    lib.mqe2e_noise_handshake_free(hs)


# ---- channel-v1.json: the CHANNEL handshake (PROTOCOL.md 8.6, 8.7) -----------
#
# Noise_XX is rebuilt here from the Noise specification and PROTOCOL.md alone:
# SHA-256 and HKDF through hashlib/hmac, X25519 and ChaCha20-Poly1305 straight
# from libsodium through cffi (not through libmqe2e), so a bug shared by the
# core's Noise code and this check cannot hide.

import copy
import ctypes.util
import hashlib
import hmac

import cffi

_sffi = cffi.FFI()
_sffi.cdef("""
int sodium_init(void);
int crypto_scalarmult(unsigned char *q, const unsigned char *n, const unsigned char *p);
int crypto_scalarmult_base(unsigned char *q, const unsigned char *n);
int crypto_aead_chacha20poly1305_ietf_encrypt(unsigned char *c, unsigned long long *clen,
    const unsigned char *m, unsigned long long mlen, const unsigned char *ad,
    unsigned long long adlen, const unsigned char *nsec, const unsigned char *npub,
    const unsigned char *k);
int crypto_aead_chacha20poly1305_ietf_decrypt(unsigned char *m, unsigned long long *mlen,
    unsigned char *nsec, const unsigned char *c, unsigned long long clen,
    const unsigned char *ad, unsigned long long adlen, const unsigned char *npub,
    const unsigned char *k);
""")
_sodium = _sffi.dlopen(ctypes.util.find_library("sodium") or "libsodium.so.23")
assert _sodium.sodium_init() >= 0


class VectorMismatch(AssertionError):
    pass


def _need(cond, what):
    if not cond:
        raise VectorMismatch(what)


def _dh(sk, pk):
    out = _sffi.new("unsigned char[32]")
    _need(_sodium.crypto_scalarmult(out, sk, pk) == 0, "x25519")
    return bytes(out)


def _pub(sk):
    out = _sffi.new("unsigned char[32]")
    _sodium.crypto_scalarmult_base(out, sk)
    return bytes(out)


def _nonce(n):
    return b"\x00" * 4 + n.to_bytes(8, "little")


def _seal(k, n, ad, pt):
    out = _sffi.new("unsigned char[]", len(pt) + 16)
    ln = _sffi.new("unsigned long long *")
    _sodium.crypto_aead_chacha20poly1305_ietf_encrypt(out, ln, pt, len(pt), ad, len(ad),
                                                     _sffi.NULL, _nonce(n), k)
    return bytes(_sffi.buffer(out, ln[0]))


def _unseal(k, n, ad, ct):
    out = _sffi.new("unsigned char[]", max(len(ct), 1))
    ln = _sffi.new("unsigned long long *")
    rc = _sodium.crypto_aead_chacha20poly1305_ietf_decrypt(out, ln, _sffi.NULL, ct, len(ct), ad,
                                                          len(ad), _nonce(n), k)
    _need(rc == 0, "ChaCha20-Poly1305 authentication")
    return bytes(_sffi.buffer(out, ln[0]))


def _hkdf2(ck, ikm):
    t = hmac.new(ck, ikm, hashlib.sha256).digest()
    o1 = hmac.new(t, b"\x01", hashlib.sha256).digest()
    return o1, hmac.new(t, o1 + b"\x02", hashlib.sha256).digest()


class _Symmetric:
    """SymmetricState of the Noise specification, section 5.2."""

    def __init__(self, name, prologue):
        self.h = name.ljust(32, b"\x00") if len(name) <= 32 else hashlib.sha256(name).digest()
        self.ck, self.k, self.n = self.h, None, 0
        self.mix_hash(prologue)

    def mix_hash(self, data):
        self.h = hashlib.sha256(self.h + data).digest()

    def mix_key(self, ikm):
        self.ck, self.k = _hkdf2(self.ck, ikm)
        self.n = 0

    def encrypt_and_hash(self, pt):
        ct = pt if self.k is None else _seal(self.k, self.n, self.h, pt)
        if self.k is not None:
            self.n += 1
        self.mix_hash(ct)
        return ct

    def decrypt_and_hash(self, ct, size):
        part = ct[:size]
        pt = part if self.k is None else _unseal(self.k, self.n, self.h, part)
        if self.k is not None:
            self.n += 1
        self.mix_hash(part)
        return pt, ct[size:]


def check_channel_vectors(c):
    """Every check of channel-v1.json; raises VectorMismatch (an AssertionError)."""
    ini, res, ex = c["initiator"], c["responder"], c["exchange"]
    session = h(ex["session"])
    prologue = b"mqe2e/v1/channel\x00" + c["prefix"].encode() + b"\x00" + session
    _need(prologue.hex() == ex["prologue"], "prologue")
    name = ex["protocol"].encode()
    _need(name == b"Noise_XX_25519_ChaChaPoly_SHA256", "protocol")
    i_s, i_e = h(ini["dh_secret"]), h(ini["ephemeral_secret"])
    r_s, r_e = h(res["dh_secret"]), h(res["ephemeral_secret"])
    for p, s, e in ((ini, i_s, i_e), (res, r_s, r_e)):
        _need(_pub(s).hex() == p["dh_public"] and _pub(e).hex() == p["ephemeral_public"], "keys")
    I, R = _Symmetric(name, prologue), _Symmetric(name, prologue)

    def frame(step, sender):
        f = wire.decode_frame(h(ex["step%d_frame" % step]))
        _need((f.kind, f.step, f.sender, f.session) == (4, step, sender, session),
              "frame %d header" % step)
        return f.noise

    # -> e
    p1 = h(ex["step1_payload"])
    I.mix_hash(_pub(i_e))
    m1 = _pub(i_e) + I.encrypt_and_hash(p1)
    _need(frame(1, ini["client_id"]) == m1, "step 1 bytes")
    R.mix_hash(m1[:32])
    got, _ = R.decrypt_and_hash(m1[32:], len(m1) - 32)
    _need(got == p1, "step 1 payload")
    # <- e, ee, s, es
    p2 = h(ex["step2_payload"])
    R.mix_hash(_pub(r_e))
    R.mix_key(_dh(r_e, _pub(i_e)))
    m2 = _pub(r_e) + R.encrypt_and_hash(_pub(r_s))
    R.mix_key(_dh(r_s, _pub(i_e)))
    m2 += R.encrypt_and_hash(p2)
    f2 = frame(2, res["client_id"])
    _need(f2 == m2, "step 2 bytes")
    re = f2[:32]
    I.mix_hash(re)
    I.mix_key(_dh(i_e, re))
    rs, rest = I.decrypt_and_hash(f2[32:], 48)
    _need(rs.hex() == res["dh_public"], "responder static")
    I.mix_key(_dh(i_e, rs))
    got, _ = I.decrypt_and_hash(rest, len(rest))
    _need(got == p2 and h(res["credential"]) in got, "step 2 payload")
    # -> s, se
    p3 = h(ex["step3_payload"])
    m3 = I.encrypt_and_hash(_pub(i_s))
    I.mix_key(_dh(i_s, re))
    m3 += I.encrypt_and_hash(p3)
    f3 = frame(3, ini["client_id"])
    _need(f3 == m3, "step 3 bytes")
    is_, rest = R.decrypt_and_hash(f3, 48)
    _need(is_.hex() == ini["dh_public"], "initiator static")
    R.mix_key(_dh(r_e, is_))
    got, _ = R.decrypt_and_hash(rest, len(rest))
    _need(got == p3 and h(ini["credential"]) in got, "step 3 payload")
    _need(I.h == R.h and I.h.hex() == ex["handshake_hash"], "handshake hash")
    k1, k2 = _hkdf2(I.ck, b"")
    _need(k1.hex() == ex["initiator_to_responder_k0"], "split k1")
    _need(k2.hex() == ex["responder_to_initiator_k0"], "split k2")
    # Each credential verifies under the pinned authority and binds the
    # static key the handshake proved (the core's verifier; PROTOCOL.md 8.6).
    for p in (ini, res):
        cred = ffi.new("mqe2e_credential **")
        raw = h(p["credential"])
        _need(lib.mqe2e_credential_verify(cred, raw, len(raw), h(c["authority_sign_public"]),
                                          c["now"]) == 0, "credential of " + p["client_id"])
        try:
            _need(ffi.string(lib.mqe2e_credential_client_id(cred[0])).decode() == p["client_id"]
                  and h(p["dh_public"]) in raw
                  and lib.mqe2e_credential_serial(cred[0]) == p["credential_serial"],
                  "credential fields of " + p["client_id"])
        finally:
            lib.mqe2e_credential_free(cred[0])
    # First envelope each way (8.7): header by hand, AD from the spec, opened
    # with the split key of its direction.
    _need(len(c["first_messages"]) == 2, "two first messages")
    for m in c["first_messages"]:
        env = h(m["envelope"])
        fields = _pb_fields(env)
        _need(2 in fields and 1 not in fields and 3 not in fields, "channel body (field 2)")
        _need((fields.get(4, 0), fields.get(5, 0), fields.get(6, 0))
              == (m["generation"], m["direction"], m["seq"]), "generation/direction/seq")
        topic = m["topic"].encode()
        ad = (bytes([1, 2, 1]) + struct.pack(">H", len(topic)) + topic + session
              + struct.pack(">IIQ", m["generation"], m["direction"], m["seq"]))
        _need(ad.hex() == m["ad"], "ad")
        key = k1 if m["direction"] == 0 else k2
        _need(_unseal(key, m["seq"], ad, fields[2]) == h(m["plaintext"]), "first message")
        _need(_seal(key, m["seq"], ad, h(m["plaintext"])) == fields[2], "reseal")


def _pb_fields(buf):
    """Varint and length-delimited fields of a protobuf message, read by hand."""
    fields, i = {}, 0
    while i < len(buf):
        key = buf[i]
        i += 1
        val, shift = 0, 0
        while True:
            b = buf[i]
            i += 1
            val |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        if key & 7 == 0:
            fields[key >> 3] = val
        else:
            fields[key >> 3] = buf[i:i + val]
            i += val
    return fields


def test_channel_exchange_rebuilt_from_the_spec():
    check_channel_vectors(load_vectors("channel-v1.json"))


def _flip(c, path, at):
    d = copy.deepcopy(c)
    o = d
    for p in path[:-1]:
        o = o[p]
    s = o[path[-1]]
    i = at % len(s)
    o[path[-1]] = s[:i] + ("1" if s[i] == "0" else "0") + s[i + 1:]
    return d


@pytest.mark.parametrize("path,at", [
    (("initiator", "ephemeral_secret"), 3),
    (("responder", "dh_secret"), 5),
    (("exchange", "step1_frame"), -2),
    (("exchange", "step2_frame"), -2),
    (("exchange", "step3_frame"), -2),
    (("exchange", "step2_payload"), 30),
    (("responder", "credential"), -5),
    (("exchange", "handshake_hash"), 0),
    (("exchange", "responder_to_initiator_k0"), 0),
    (("first_messages", 0, "envelope"), -1),
    (("first_messages", 1, "plaintext"), 1),
    (("first_messages", 1, "ad"), 12),
])
def test_channel_vectors_check_fails_on_a_flipped_byte(path, at):
    c = load_vectors("channel-v1.json")
    with pytest.raises(VectorMismatch):
        check_channel_vectors(_flip(c, path, at))
