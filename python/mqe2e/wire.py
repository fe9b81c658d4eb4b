"""Stateless wire-level calls: key schedule, envelopes, tickets, control frames.

These are thin, checked wrappers of the core (envelope.h, control.h,
credential.h); they keep no replay window and no keys, so they are for
tools, tests and the shared vectors (tests/vectors/). Applications use
:class:`mqe2e.Client` or :class:`mqe2e.Session`, which add replay
protection, policies and the control plane.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

from ._lib import cstr, ffi, lib, wipe
from .errors import check

MODE_GROUP = 1
MODE_CHANNEL = 2
MODE_SIGNED_GROUP = 3


@dataclass(frozen=True)
class EnvelopeHeader:
    """The cleartext header of an envelope (not authenticated until opened)."""

    mode: int
    epoch: int
    sender_id: int
    seq: int
    instance: int


def derive_sender_key(secret: bytes, group_id: str, epoch: int, sender_id: int) -> Tuple[bytes, bytes]:
    """(key, iv) of one sender for one (group, epoch), PROTOCOL.md 2.3.

    The returned bytes are secret; Python cannot wipe them.
    """
    if len(secret) != 32:
        raise ValueError("group secret must be 32 bytes")
    k = ffi.new("mqe2e_sender_key *")
    try:
        check(lib.mqe2e_sender_key_derive(k, secret, group_id.encode(), epoch, sender_id))
        return bytes(k.key), bytes(k.iv)
    finally:
        lib.mqe2e_sender_key_wipe(k)


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    """HKDF-SHA256 Extract (RFC 5869)."""
    prk = ffi.new("uint8_t[32]")
    check(lib.mqe2e_hkdf_extract(prk, salt, len(salt), ikm, len(ikm)))
    return bytes(prk)


def parse_envelope(data: bytes) -> EnvelopeHeader:
    """Strictly parse a group or signed envelope's header (PROTOCOL.md 2.2).

    Raises:
        DecodeError, SuiteError, TooLargeError: as the C decoder.
    """
    v = ffi.new("mqe2e_envelope_view *")
    check(lib.mqe2e_envelope_parse(v, data, len(data)), "envelope")
    h = v.header
    return EnvelopeHeader(int(h.mode), int(h.epoch), int(h.sender_id), int(h.seq), int(h.instance))


def open_envelope(data: bytes, *, secret: bytes, group_id: str, topic: str,
                  signer_public: Optional[bytes] = None) -> bytes:
    """Parse, derive the sender's key from the group secret and open one envelope.

    No replay check: a stateless decrypt for tools and tests. Signed
    envelopes need the sender's Ed25519 key (``signer_public``).

    Raises:
        Mqe2eError subclasses (``decode``, ``suite``, ``auth``, ...); nothing
        is returned for an envelope that fails any check.
    """
    v = ffi.new("mqe2e_envelope_view *")
    check(lib.mqe2e_envelope_parse(v, data, len(data)), "envelope")
    k = ffi.new("mqe2e_sender_key *")
    cap = max(int(v.ciphertext_len), 1)
    pt = ffi.new("uint8_t[]", cap)
    n = ffi.new("size_t *")
    try:
        check(lib.mqe2e_sender_key_derive(k, secret, group_id.encode(), v.header.epoch,
                                          v.header.sender_id))
        if v.header.mode == MODE_SIGNED_GROUP:
            if signer_public is None or len(signer_public) != 32:
                raise ValueError("a signed envelope needs the signer's 32-byte public key")
            rc = lib.mqe2e_envelope_open_signed(pt, cap, n, k, signer_public, topic.encode(),
                                                group_id.encode(), v)
        else:
            rc = lib.mqe2e_envelope_open(pt, cap, n, k, topic.encode(), group_id.encode(), v)
        check(rc, "envelope")
        return bytes(ffi.buffer(pt, n[0]))
    finally:
        lib.mqe2e_sender_key_wipe(k)
        wipe(pt)


def seal_envelope(plaintext: bytes, *, secret: bytes, group_id: str, topic: str, epoch: int,
                  sender_id: int, seq: int, instance: int) -> bytes:
    """Seal one group-mode envelope from explicit inputs (vectors and tests only:
    applications must never choose ``seq``/``instance`` themselves)."""
    k = ffi.new("mqe2e_sender_key *")
    h = ffi.new("mqe2e_envelope_header *", {"mode": MODE_GROUP, "epoch": epoch,
                                             "sender_id": sender_id, "seq": seq,
                                             "instance": instance})
    cap = int(lib.mqe2e_envelope_sealed_bound(len(plaintext)))
    out = ffi.new("uint8_t[]", cap)
    n = ffi.new("size_t *")
    try:
        check(lib.mqe2e_sender_key_derive(k, secret, group_id.encode(), epoch, sender_id))
        check(lib.mqe2e_envelope_seal(out, cap, n, k, topic.encode(), group_id.encode(), h,
                                      plaintext, len(plaintext)))
        return bytes(ffi.buffer(out, n[0]))
    finally:
        lib.mqe2e_sender_key_wipe(k)


def channel_rekey(key: bytes, times: int = 1) -> bytes:
    """k_{g+times} from k_g (Noise Rekey, PROTOCOL.md 8.7)."""
    cs = ffi.new("mqe2e_noise_cipher **")
    check(lib.mqe2e_noise_cipher_new(cs, key))
    out = ffi.new("uint8_t[32]")
    try:
        for _ in range(times):
            check(lib.mqe2e_noise_cipher_rekey(cs[0]))
        check(lib.mqe2e_noise_cipher_export_key(cs[0], out))
        return bytes(out)
    finally:
        lib.mqe2e_noise_cipher_free(cs[0])
        wipe(out)


def channel_decrypt(key: bytes, n: int, ad: bytes, ciphertext: bytes) -> bytes:
    """ChaCha20-Poly1305 with the Noise nonce layout and explicit nonce ``n``."""
    cs = ffi.new("mqe2e_noise_cipher **")
    check(lib.mqe2e_noise_cipher_new(cs, key))
    cap = max(len(ciphertext), 1)
    out = ffi.new("uint8_t[]", cap)
    olen = ffi.new("size_t *")
    try:
        check(lib.mqe2e_noise_cipher_decrypt_n(cs[0], n, out, cap, olen, ad, len(ad), ciphertext,
                                               len(ciphertext)))
        return bytes(ffi.buffer(out, olen[0]))
    finally:
        lib.mqe2e_noise_cipher_free(cs[0])
        wipe(out)


@dataclass(frozen=True)
class Ticket:
    """A decoded enrollment ticket. ``token`` is secret."""

    authority_sign_public: bytes
    authority_dh_public: bytes
    authority_id: str
    control_prefix: str
    token_id: bytes
    token: bytes
    client_id: str
    expires_at: int


def decode_ticket(text: str) -> Ticket:
    """Strictly decode ``mqe2e1-...`` ticket text (docs/CREDENTIALS.md)."""
    t = ffi.new("mqe2e_ticket *")
    try:
        check(lib.mqe2e_ticket_decode(t, text.strip().encode()), "ticket")
        return Ticket(bytes(t.authority_sign_public), bytes(t.authority_dh_public),
                      cstr(t.authority_id) or "", cstr(t.control_prefix) or "",
                      bytes(t.token_id), bytes(t.token), cstr(t.client_id) or "",
                      int(t.expires_at))
    finally:
        lib.mqe2e_ticket_wipe(t)


@dataclass(frozen=True)
class ControlFrame:
    """A decoded ``ControlFrame`` (PROTOCOL.md 8.1)."""

    kind: int
    sender: str
    session: bytes
    step: int
    noise: bytes


def decode_frame(data: bytes) -> ControlFrame:
    """Strictly decode a control frame (no Noise work)."""
    f = ffi.new("mqe2e_control_frame *")
    check(lib.mqe2e_control_frame_decode(f, data, len(data)), "control frame")
    return ControlFrame(int(f.kind), cstr(getattr(f, "from")) or "", bytes(f.session), int(f.step),
                        bytes(ffi.buffer(f.noise, f.noise_len)))


@dataclass(frozen=True)
class Bundle:
    """One group epoch from the authority. ``secret`` is secret."""

    group: str
    topic_filter: str
    epoch: int
    secret: bytes
    created_at: int
    sender_id: int
    retired_at: int
    grace_seconds: int


@dataclass(frozen=True)
class Push:
    """What a device reads from a PUSH."""

    push_seq: int
    bundles: List[Bundle]
    removed_groups: List[str]


def open_push(frame: bytes, *, client_dh_secret: bytes, authority_dh_public: bytes, prefix: str,
              authority_id: str, last_push_seq: int = 0) -> Push:
    """Authenticate and read a PUSH (PROTOCOL.md 8.5)."""
    u = ffi.new("mqe2e_control_update *")
    check(lib.mqe2e_push_open(u, client_dh_secret, authority_dh_public, prefix.encode(),
                              authority_id.encode(), frame, len(frame), last_push_seq), "push")
    try:
        bundles = [Bundle(cstr(b.group) or "", cstr(b.topic_filter) or "", int(b.epoch),
                          bytes(b.secret), int(b.created_at), int(b.sender_id),
                          int(b.retired_at), int(b.grace_seconds))
                   for b in (u.bundles[i] for i in range(u.n_bundles))]
        removed = [cstr(u.removed_groups[i].name) or "" for i in range(u.n_removed_groups)]
        return Push(int(u.push_seq), bundles, removed)
    finally:
        lib.mqe2e_control_update_wipe(u)
