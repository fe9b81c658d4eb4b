"""The sans-I/O device session (lib/include/mqe2e/session.h) for Python.

A :class:`Session` does everything an encrypting client must do between its
transport and its application — policy lookup, protect/unprotect, replay
commits, HELLO/PUSH/channels, the hold queue — and never does I/O itself:
you tell it what happened (:meth:`connected`, :meth:`message_received`,
:meth:`tick`) and carry out the actions it returns (:class:`Publish`,
:class:`Subscribe`, :class:`Delivery`, :class:`Drop`). :class:`mqe2e.Client`
is this glue for paho-mqtt; other transports bind the same way.

Not thread-safe: use one session from one thread at a time (the Client holds
a lock).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

from . import props as _props
from ._lib import cstr, ffi, lib
from .errors import Mqe2eError, check, error_for
from .keystore import Keystore
from .props import Prop

DELIVER, DROP, PUBLISH, SUBSCRIBE, UNSUBSCRIBE = 1, 2, 3, 4, 5
#: mqe2e_session_publish(): the message was queued for a channel.
QUEUED = 1
#: message_received() flag: never hold.
NO_HOLD = 1

_wall = time.time
_mono_ns = time.monotonic_ns
_receive_rx = lib.mqe2e_session_receive_rx
_unpack = ffi.unpack


@dataclass
class Delivery:
    """A decrypted message for the application. Call :meth:`Session.commit`
    with it once the application accepted it."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    current: bool
    receipt: object = field(repr=False, default=None)
    #: A released held message's MQTT v5 properties (``(id, name, value)``,
    #: :mod:`mqe2e.props`); empty for the current message, whose properties
    #: are the transport's message's.
    properties: List[Prop] = field(default_factory=list)


@dataclass(frozen=True)
class Drop:
    """A message the session refused: never delivered, counted under ``reason``."""

    topic: str
    code: int
    current: bool

    @property
    def reason(self) -> str:
        """The core's name of the reason (``"auth"``, ``"replay"``, ...)."""
        return error_for(self.code).name

    def error(self) -> Mqe2eError:
        """The reason as an exception instance."""
        return error_for(self.code, f"dropped message on {self.topic}")


@dataclass(frozen=True)
class Publish:
    """Bytes the transport must publish (envelopes, control frames)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(frozen=True)
class Subscribe:
    """A filter the transport must subscribe to (control topics, and a
    key-tree group's updates once this client is a member: PROTOCOL.md §10.9)."""

    topic: str
    qos: int


@dataclass(frozen=True)
class Unsubscribe:
    """A filter the transport must unsubscribe from (a key-tree group's
    updates, once this client left the group: PROTOCOL.md §10.9)."""

    topic: str


Action = Union[Delivery, Drop, Publish, Subscribe, Unsubscribe]


def clocks():
    """The caller's clocks as the session wants them (wall s, monotonic ms)."""
    t = ffi.new("mqe2e_session_time *")
    t.wall_s = int(time.time())
    t.mono_ms = int(time.monotonic() * 1000)
    return t[0]


class Session:
    """One session over an open :class:`Keystore` (borrowed: keep it open).

    Args:
        keystore: the open keystore; the session changes it (keys, credential,
            replay checkpoints) and must be closed before it.
        policy: extra policy rules in text form (``"FILTER=group:GROUP"``,
            ``"FILTER=channel:PEER"``, ``"FILTER=plaintext"``, docs/PROTOCOL.md
            6), added before the keystore's groups as they are now. None: the
            keystore's groups only, growing with the groups the authority
            adds later (with ``policy``, a group added later is covered after
            the next start).
    """

    def __init__(self, keystore: Keystore, policy: Optional[List[str]] = None) -> None:
        self._ks = keystore
        self._policy = ffi.NULL
        if policy:
            pp = ffi.new("mqe2e_policy **")
            check(lib.mqe2e_policy_new(pp))
            self._policy = pp[0]
            for rule in policy:
                rc = lib.mqe2e_policy_add_text(self._policy, rule.encode())
                if rc != 0:
                    lib.mqe2e_policy_free(self._policy)
                    raise error_for(rc, f"policy rule {rule!r}")
            rc = lib.mqe2e_policy_add_keystore_groups(self._policy, keystore.handle)
            if rc != 0:
                lib.mqe2e_policy_free(self._policy)
                raise error_for(rc, "policy from the keystore's groups")
        out = ffi.new("mqe2e_session **")
        rc = lib.mqe2e_session_new(out, keystore.handle, self._policy, ffi.NULL)
        if rc != 0:
            if self._policy != ffi.NULL:
                lib.mqe2e_policy_free(self._policy)
            raise error_for(rc, "session")
        self._s = out[0]
        # receive_one()'s state in one block (mqe2e_session_receive_rx: seven
        # arguments per message instead of thirteen; cffi's ABI mode costs
        # per argument): the clocks, the action, and the receipt, reused
        # while no delivery holds it; while _pending, it is an accepted
        # message's, committed by the next call into the core that may
        # deliver (accept()).
        self._rx = rx = ffi.new("mqe2e_session_rx *")
        self._act = ffi.addressof(rx[0], "out")
        self._now = ffi.addressof(rx[0], "now")
        self._rcpt = ffi.addressof(rx[0], "accepted")
        self._rcpt_free = True
        self._pending = False
        self._pending_topic = b""
        #: (topic, code) of deferred commits that failed (ReplayError: the
        #: same message was committed in between; IoError), oldest first;
        #: take them with take_commit_failures().
        self._failed: List[Tuple[bytes, int]] = []
        # The monotonic millisecond self._now was last set for, and its
        # value (a struct passed by value: copied out once per setting).
        self._clk_ms = -1
        self._tv = self._now[0]

    def _clocks(self):
        t = self._now
        ms = _mono_ns() // 1000000
        t.wall_s = int(_wall())
        t.mono_ms = ms
        self._clk_ms = ms
        self._tv = tv = t[0]
        return tv

    def _flush(self) -> None:
        # Commit the accepted receipt accept() kept, before anything else
        # may deliver (a duplicate must meet the updated window).
        self._pending = False
        self._rcpt_free = True
        if self._s is None:  # closed in between: never recorded (as released)
            return
        rc = lib.mqe2e_session_commit(self._s, self._rcpt)
        lib.sodium_memzero(self._rcpt, ffi.sizeof("mqe2e_receipt"))
        if rc != 0:
            self._failed.append((self._pending_topic, rc))

    def take_commit_failures(self) -> List[Tuple[bytes, int]]:
        """``(topic, code)`` of receipts given to :meth:`accept` whose
        deferred commit failed since the last call (``replay``: the same
        message was committed in between; ``io``). The messages were
        delivered already; report them like drops."""
        out, self._failed = self._failed, []
        return out

    def close(self) -> None:
        """Commit what :meth:`accept` kept, wipe and free the session (the
        keystore stays open). Idempotent."""
        if getattr(self, "_s", None) is not None:
            if self._pending:
                self._flush()
            lib.mqe2e_session_free(self._s)
            self._s = None
            if self._policy != ffi.NULL:
                lib.mqe2e_policy_free(self._policy)
                self._policy = ffi.NULL

    def __del__(self) -> None:  # pragma: no cover
        try:
            self.close()
        except Exception:
            pass

    @property
    def _h(self):
        if self._s is None:
            raise ValueError("session is closed")
        return self._s

    @property
    def has_control(self) -> bool:
        """Whether the control plane is on (the keystore is enrolled)."""
        return lib.mqe2e_session_has_control(self._h) == 1

    # -- events ----------------------------------------------------------
    def connected(self) -> List[Action]:
        """The transport connected: returns the control subscriptions and HELLO."""
        if self._pending:
            self._flush()
        check(lib.mqe2e_session_connected(self._h, self._clocks()))
        return self.actions()

    def disconnected(self) -> None:
        """The transport went down."""
        lib.mqe2e_session_disconnected(self._h)

    def message_received(self, topic: Union[str, bytes], payload: bytes, qos: int = 0,
                         retain: bool = False, dup: bool = False,
                         no_hold: bool = False,
                         properties: Optional[List[Prop]] = None) -> List[Action]:
        """A message arrived: returns what to do (deliver, drop, publish...).

        ``retain``: the retain flag it arrived with. ``properties``: its MQTT
        v5 properties as ``(id, name, value)`` items in packet order
        (:func:`mqe2e.props.from_paho` converts paho's); a rule that binds
        them or the retain flag checks them with the envelope.
        """
        t = topic.encode("utf-8") if isinstance(topic, str) else bytes(topic)
        s = self._s
        if s is None:
            raise ValueError("session is closed")
        if self._pending:
            self._flush()
        arr, n, keep = _props.to_c(properties or ())
        check(lib.mqe2e_session_message_received_props(
            s, t, len(t), payload, len(payload), qos, int(retain), int(dup),
            NO_HOLD if no_hold else 0, arr, n, self._clocks()))
        del keep
        return self.actions(t)

    def receive_one(self, topic: bytes, payload: bytes, qos: int = 0, retain: bool = False,
                    dup: bool = False) -> Tuple[Optional[bytes], Any]:
        """Fast path of :meth:`message_received` for the common case, in one
        call into the core (``mqe2e_session_receive_rx``).

        Returns ``(plaintext, receipt)`` when the only outcome is this
        message, decrypted: hand ``plaintext`` to the application, then
        :meth:`commit_receipt` the ``receipt`` (None: nothing to commit) once
        it accepted it, or :meth:`release_receipt` it if it did not.
        Otherwise returns ``(None, actions)``, the list
        :meth:`message_received` would have returned.

        A receipt given to :meth:`accept` is committed first, in the same
        call into the core (``mqe2e_session_receive_rx``).
        """
        s = self._s
        if s is None:
            raise ValueError("session is closed")
        ms = _mono_ns() // 1000000
        if ms != self._clk_ms:
            # Both clocks at most one millisecond old: read them once per
            # millisecond, not once per message.
            t = self._now
            t.wall_s = int(_wall())
            t.mono_ms = ms
            self._clk_ms = ms
        a = self._act
        meta = qos | (4 if retain else 0) | (8 if dup else 0)
        if self._pending:
            self._pending = False
            self._rcpt_free = True
            rx = self._rx
            rx.commit = 1
            rc = _receive_rx(s, rx, topic, len(topic), payload, len(payload), meta)
            if rx.commit_rc:
                self._failed.append((self._pending_topic, rx.commit_rc))
        else:
            rc = _receive_rx(s, self._rx, topic, len(topic), payload, len(payload), meta)
        if rc == 1 and a.kind == DELIVER and a.current:
            n = a.len
            data = _unpack(a.data, n) if n else b""
            rcpt = a.receipt
            if not rcpt.active:
                return data, None
            if self._rcpt_free:
                r = self._rcpt
                r[0] = rcpt
                self._rcpt_free = False
            else:
                r = ffi.new("mqe2e_receipt *", rcpt)
            return data, r
        check(rc)
        out = [self._convert(a, topic)] if rc == 1 else []
        out.extend(self.actions(topic))
        return None, out

    def accept(self, receipt: Any, topic: bytes = b"") -> None:
        """The application accepted the message of a :meth:`receive_one`
        receipt: commit it, deferred to the next call that may deliver
        (:meth:`receive_one`, which does it in the same call into the core,
        :meth:`message_received`, :meth:`tick`, :meth:`commit`,
        :meth:`close`...). A duplicate of the message is therefore a replay
        as with :meth:`commit_receipt`; a failed commit is reported by
        :meth:`take_commit_failures` under ``topic``.
        """
        if receipt is self._rcpt and not self._pending:
            self._pending_topic = topic
            self._pending = True
            return
        self.commit_receipt(receipt)

    def commit_receipt(self, receipt: Any) -> None:
        """Commit a receipt from :meth:`receive_one` (as :meth:`commit`).

        Raises:
            ReplayError: the same message was committed in between.
        """
        if self._pending:
            self._flush()
        if receipt is self._rcpt:
            self._rcpt_free = True
        rc = lib.mqe2e_session_commit(self._h, receipt)
        if rc != 0:
            raise error_for(rc, "commit")

    def release_receipt(self, receipt: Any) -> None:
        """Give back a receipt from :meth:`receive_one` without committing
        it (the application refused the message: it may come again)."""
        if receipt is self._rcpt:
            self._rcpt_free = True

    def commit(self, delivery: Delivery) -> None:
        """Record a delivered message the application accepted (replay window).

        Raises:
            ReplayError: the same message was committed in between.
        """
        if self._pending:
            self._flush()
        if delivery.receipt is not None:
            rc = lib.mqe2e_session_commit(self._h, delivery.receipt)
            if rc != 0:
                raise error_for(rc, "commit")

    def publish(self, topic: str, payload: bytes, qos: int = 0,
                retain: bool = False,
                properties: Optional[List[Prop]] = None) -> Optional[bytes]:
        """Protect ``payload`` for ``topic``.

        ``retain`` and ``properties`` (MQTT v5, ``(id, name, value)`` items,
        :mod:`mqe2e.props`) are what the message will be published with: a
        rule that binds them seals them into the associated data, so publish
        exactly these.

        Returns the bytes to publish, or None when the message was queued for
        a channel (it comes out later as a :class:`Publish` action).

        Raises:
            Mqe2eError: the reason it was refused (``no_policy``, ``expired``
            when the authority was not heard within the freshness bound or the
            revocation list was not renewed within its validity, ...).
            Nothing is ever sent in clear instead.
        """
        cap = int(lib.mqe2e_session_publish_bound(len(payload)))
        out = ffi.new("uint8_t[]", max(cap, 1))
        n = ffi.new("size_t *")
        arr, np_, keep = _props.to_c(properties or ())
        rc = lib.mqe2e_session_publish_props(self._h, topic.encode(), payload, len(payload), qos,
                                             int(retain), arr, np_, self._clocks(), out, cap, n)
        del keep
        try:
            if rc == QUEUED:
                return None
            check(rc, f"publish on {topic}")
            return bytes(ffi.buffer(out, n[0]))
        finally:
            lib.sodium_memzero(out, cap)

    def tick(self, connected: bool = True) -> List[Action]:
        """Run the timers; returns the resulting actions."""
        if self._pending:
            self._flush()
        check(lib.mqe2e_session_tick(self._h, int(connected), self._clocks()))
        return self.actions()

    def next_timer_ms(self) -> Optional[int]:
        """Monotonic deadline (ms) of the next :meth:`tick`, or None."""
        t = int(lib.mqe2e_session_next_timer(self._h, self._clocks()))
        return None if t == 2**64 - 1 else t

    def fresh(self) -> bool:
        """Whether the authority was heard within the freshness bound and the
        revocation list within its validity (docs/PROTOCOL.md 9.3).

        Raises:
            PolicyError: the authority refused this client (revoked or unknown).
        """
        return check(lib.mqe2e_session_fresh(self._h, self._clocks()), "authority") == 1

    # -- actions ---------------------------------------------------------
    def actions(self, current_topic: Optional[bytes] = None) -> List[Action]:
        """Take every waiting action, copied into Python objects.

        ``current_topic``: the topic of the message just passed in (saves a
        copy for its own DELIVER/DROP action)."""
        out: List[Action] = []
        a = self._act
        s = self._h
        nxt = lib.mqe2e_session_next
        while nxt(s, a) == 1:
            out.append(self._convert(a, current_topic))
        return out

    @staticmethod
    def _convert(a: Any, current_topic: Optional[bytes]) -> Action:
        kind = a.kind
        if a.current and current_topic is not None:
            topic = current_topic.decode("utf-8", "replace")
        else:
            topic = ffi.string(a.topic).decode("utf-8", "replace") if a.topic != ffi.NULL else ""
        data = ffi.buffer(a.data, a.len)[:] if a.len else b""
        if kind == DELIVER:
            r = ffi.new("mqe2e_receipt *", a.receipt) if a.receipt.active else None
            pr = _props.from_c(a.props, a.nprops) if a.nprops and a.props != ffi.NULL else []
            return Delivery(topic, data, a.qos, bool(a.retained), bool(a.dup),
                            bool(a.current), r, pr)
        if kind == DROP:
            return Drop(topic, int(a.code), bool(a.current))
        if kind == PUBLISH:
            return Publish(topic, data, int(a.qos), bool(a.retained))
        if kind == UNSUBSCRIBE:
            return Unsubscribe(topic)
        return Subscribe(topic, int(a.qos))

    # -- counters --------------------------------------------------------
    def counters(self) -> Dict[str, object]:
        """Data-path counters (sealed, opened, dropped by reason) and
        control-plane counters, as one dict."""
        c = ffi.new("mqe2e_counters *")
        lib.mqe2e_protector_counters(lib.mqe2e_session_protector(self._h), c)
        dropped = {}
        for i in range(len(c.dropped)):
            name = cstr(lib.mqe2e_drop_reason_name(i))
            if name and c.dropped[i]:
                dropped[name] = int(c.dropped[i])
        sc = ffi.new("mqe2e_session_counters *")
        lib.mqe2e_session_get_counters(self._h, sc)
        control = {f: int(getattr(sc, f)) for f, _ in ffi.typeof("mqe2e_session_counters").fields}
        return {"sealed": int(c.sealed), "opened": int(c.opened),
                "plaintext_out": int(c.plaintext_out), "plaintext_in": int(c.plaintext_in),
                "dropped": dropped, "control": control}
