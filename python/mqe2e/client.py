"""``mqe2e.Client``: paho-mqtt's ``Client`` with end-to-end encryption.

A program written for ``paho.mqtt.client.Client`` (1.6) moves over by
changing the import and adding one call, :meth:`Client.keystore_set`::

    import mqe2e
    c = mqe2e.Client(client_id="backend-1")
    c.keystore_set("/var/lib/backend/ks", passphrase_file="/run/secrets/ks")
    c.on_message = lambda c, u, m: print(m.topic, m.payload)
    c.connect("broker", 1883); c.subscribe("fleet/#"); c.loop_forever()

Callbacks, :meth:`publish`, :meth:`subscribe`, ``loop_*``, ``connect``,
``username_pw_set``, ``tls_set`` keep paho's names and semantics. What
changes: ``on_message`` gets the decrypted payload (messages that fail any
check never reach it: they go to the optional ``on_drop(client, userdata,
topic, reason)``), :meth:`publish` seals before sending and raises an
:class:`mqe2e.Mqe2eError` instead of ever sending clear text, and the last
will is sealed too. The control plane (HELLO on connect, PUSH, channels,
the hold queue) runs inside the client over the sans-I/O session
(:class:`mqe2e.session.Session`).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, List, Optional, Union

import paho.mqtt.client as paho

from . import props as _props
from .errors import Mqe2eError, error_for
from .keystore import Keystore
from .session import Delivery, Drop, Publish, Session, Subscribe, Unsubscribe

MQTTMessage = paho.MQTTMessage
_paho_on_message = paho.Client._handle_on_message
_paho_handle_publish = paho.Client._handle_publish
_bytes = bytes
_memoryview = memoryview
_paho_time = paho.time_func
_LOG_DEBUG = paho.MQTT_LOG_DEBUG
_LOG_ERR = paho.MQTT_LOG_ERR
_paho_loop_misc = paho.Client.loop_misc
_mono_ns = time.monotonic_ns
_MQTTv5 = paho.MQTTv5

DropCallback = Callable[[Any, Any, str, str], None]


def _payload_bytes(payload: Any) -> bytes:
    # paho's own conversions (client.py, publish()).
    if payload is None:
        return b""
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if isinstance(payload, (bytes, bytearray)):
        return bytes(payload)
    if isinstance(payload, (int, float)):
        return str(payload).encode("ascii")
    raise TypeError("payload must be a string, bytearray, int, float or None.")


class Client(paho.Client):
    """paho-mqtt ``Client`` that seals every publish and opens every message.

    Construct it exactly like ``paho.mqtt.client.Client``; then call
    :meth:`keystore_set` once before :meth:`connect`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._mqe2e_lock = threading.RLock()
        self._mqe2e_keystore: Optional[Keystore] = None
        self._mqe2e_session: Optional[Session] = None
        self._mqe2e_on_drop: Optional[DropCallback] = None
        # Monotonic nanoseconds of the session's next timer (loop_misc).
        self._mqe2e_next_tick_ns = 0

    # -- configuration ---------------------------------------------------
    def keystore_set(self, path: str, passphrase: Union[str, bytes, None] = None, *,
                     passphrase_file: Optional[str] = None, key_file: Optional[str] = None,
                     policy: Optional[List[str]] = None) -> None:
        """The one extra call: open the keystore and start the session.

        Args:
            path: keystore file (made by ``mqe2e keygen``/``mqe2e enroll`` or
                :func:`mqe2e.enroll`).
            passphrase: the keystore passphrase; or ``passphrase_file`` (first
                line), or ``key_file`` (32-byte key); none of them: the
                ``MQE2E_PASSPHRASE`` environment variable.
            policy: extra topic rules (``"FILTER=group:GROUP"``,
                ``"FILTER=plaintext"``); by default the keystore's groups.

        Raises:
            Mqe2eError: ``auth`` (wrong passphrase), ``locked``, ``not_found``...
        """
        if self._mqe2e_session is not None:
            raise ValueError("keystore_set() was already called on this client")
        ks = Keystore.open(path, passphrase, passphrase_file=passphrase_file, key_file=key_file)
        try:
            self._mqe2e_session = Session(ks, policy)
        except Exception:
            ks.close()
            raise
        self._mqe2e_keystore = ks
        if not self._client_id:
            # The control plane's inbox is P/client/<keystore client id>, and
            # broker ACLs tie it to the MQTT client id: use the keystore's.
            self._client_id = ks.client_id.encode("utf-8")

    def keystore_close(self) -> None:
        """Free the session and close the keystore (writes replay checkpoints).
        Call after :meth:`disconnect` / :meth:`loop_stop`."""
        with self._mqe2e_lock:
            s = self._mqe2e_session
            if s is not None:
                s.close()  # commits the receipt accepted last
                self._mqe2e_session = None
            if self._mqe2e_keystore is not None:
                self._mqe2e_keystore.close()
                self._mqe2e_keystore = None
        if s is not None and s._failed:
            self._mqe2e_commit_failed(s)

    @property
    def on_drop(self) -> Optional[DropCallback]:
        """``on_drop(client, userdata, topic, reason)``: a received message
        was refused; ``reason`` is the core's name (``"auth"``, ``"replay"``,
        ``"no_key"``, ...). Nothing of it is delivered."""
        return self._mqe2e_on_drop

    @on_drop.setter
    def on_drop(self, func: Optional[DropCallback]) -> None:
        self._mqe2e_on_drop = func

    @property
    def session(self) -> Session:
        """The underlying session (counters, freshness)."""
        if self._mqe2e_session is None:
            raise ValueError("call keystore_set() first")
        return self._mqe2e_session

    def counters(self) -> dict:
        """Sealed/opened/dropped-by-reason and control-plane counters."""
        with self._mqe2e_lock:
            return self.session.counters()

    # -- sending ---------------------------------------------------------
    def publish(self, topic: str, payload: Any = None, qos: int = 0, retain: bool = False,
                properties: Any = None) -> paho.MQTTMessageInfo:
        """Seal ``payload`` for ``topic`` and publish it (paho's semantics).

        With MQTT v5, ``properties`` (paho ``Properties``) and ``retain`` are
        sealed into the envelope's associated data when the topic's rule
        binds them (``;bind=...``, docs/PROTOCOL.md 2.5.1), and published
        unchanged next to it.

        Raises:
            Mqe2eError: the topic has no policy (``no_policy``), the keys are
                stale (``expired``), ... Nothing is sent in clear instead.
        """
        data = _payload_bytes(payload)
        plist = _props.from_paho(properties) if properties is not None else None
        with self._mqe2e_lock:
            env = self.session.publish(topic, data, qos, retain, plist)
            acts = self.session.actions()
        if env is None:
            # Queued for a channel: it leaves as a PUBLISH action once the
            # channel is up.
            info = paho.MQTTMessageInfo(0)
            info.rc = paho.MQTT_ERR_SUCCESS
        else:
            info = super().publish(topic, env, qos, retain, properties)
        self._mqe2e_run(acts, None)
        return info

    def will_set(self, topic: str, payload: Any = None, qos: int = 0, retain: bool = False,
                 properties: Any = None) -> None:
        """Set the last will, sealed now like any publish (paho's will_set),
        its ``properties`` and ``retain`` bound as :meth:`publish` binds them."""
        plist = _props.from_paho(properties) if properties is not None else None
        with self._mqe2e_lock:
            env = self.session.publish(topic, _payload_bytes(payload), qos, retain, plist)
        if env is None:
            raise ValueError("a last will cannot go over a channel")
        super().will_set(topic, env, qos, retain, properties)

    # -- paho's internal hooks ---------------------------------------------
    def _handle_connack(self):  # noqa: D401 - paho hook
        acts: list = []
        pkt = self._in_packet.get("packet", b"")
        if len(pkt) >= 2 and pkt[1] == 0:
            with self._mqe2e_lock:
                if self._mqe2e_session is not None:
                    acts = self._mqe2e_session.connected()
        if acts:
            # Before the user's on_connect: the HELLO leaves first.
            self._mqe2e_run(acts, None)
        return super()._handle_connack()

    def _do_on_disconnect(self, rc, properties=None):
        with self._mqe2e_lock:
            if self._mqe2e_session is not None:
                self._mqe2e_session.disconnected()
        return super()._do_on_disconnect(rc, properties)

    def _handle_publish(self):  # noqa: D401 - paho hook
        # paho 1.6's _handle_publish with fewer Python operations per
        # message: one memoryview for the topic, packet id and payload, the
        # debug log formatted only if someone listens, and the decrypting
        # _handle_on_message below. What it does not handle the common way
        # (MQTT v5 properties, QoS 2's PUBREC/PUBREL flow, a malformed
        # packet, whose error paho reports its own way) goes to paho's own
        # handler, which ends in the same _handle_on_message.
        if self._protocol == _MQTTv5:
            return _paho_handle_publish(self)
        inp = self._in_packet
        header = inp["command"]
        qos = (header & 0x06) >> 1
        packet = inp["packet"]
        n = len(packet)
        if qos > 1 or n < 2:
            return _paho_handle_publish(self)
        off = 2 + ((packet[0] << 8) | packet[1])
        if off == 2 or off + (2 if qos else 0) > n:
            return _paho_handle_publish(self)
        mv = _memoryview(packet)
        topic = _bytes(mv[2:off])
        if qos:
            mid = (packet[off] << 8) | packet[off + 1]
            off += 2
        else:
            mid = 0
        message = MQTTMessage(mid, topic)
        message.dup = (header & 0x08) >> 3
        message.qos = qos
        message.retain = header & 0x01
        message.payload = _bytes(mv[off:])
        mv.release()
        if self._on_log is not None or self._logger is not None:
            try:
                print_topic = topic.decode("utf-8")
            except UnicodeDecodeError:
                print_topic = "TOPIC WITH INVALID UTF-8: " + str(topic)
            self._easy_log(_LOG_DEBUG,
                           "Received PUBLISH (d%d, q%d, r%d, m%d), '%s', ...  (%d bytes)",
                           message.dup, qos, message.retain, mid, print_topic,
                           len(message.payload))
        message.timestamp = _paho_time()
        self._handle_on_message(message)
        if qos:
            return self._send_puback(mid)
        return 0

    def _mqe2e_dispatch(self, message: paho.MQTTMessage) -> None:
        # paho 1.6's _handle_on_message for the case of no
        # message_callback_add() filter at all: on_message alone, under the
        # same locks, an exception logged and re-raised unless
        # suppress_exceptions. With any filter: paho's own.
        if self._on_message_filtered._root._children:
            return _paho_on_message(self, message)
        with self._callback_mutex:
            on_message = self._on_message
        if on_message:
            with self._in_callback_mutex:
                try:
                    on_message(self, self._userdata, message)
                except Exception as err:
                    self._easy_log(_LOG_ERR, "Caught exception in on_message: %s", err)
                    if not self.suppress_exceptions:
                        raise

    def _handle_on_message(self, message: paho.MQTTMessage) -> None:
        if self._protocol == _MQTTv5:
            plist = _props.from_paho(getattr(message, "properties", None))
            if plist:
                # Properties the topic's rule may bind: the general call,
                # which checks them with the envelope.
                self._mqe2e_received_props(message, plist)
                return
        topic = message._topic
        lock = self._mqe2e_lock
        lock.acquire()
        try:
            s = self._mqe2e_session
            res = None if s is None else s.receive_one(
                topic, message.payload, message.qos, message.retain, message.dup)
        finally:
            lock.release()
        if res is None:
            # Not configured (or closed): nothing is delivered, never clear text.
            self._mqe2e_drop(topic.decode("utf-8", "replace"), error_for(-11).name)
            return
        if s._failed:
            self._mqe2e_commit_failed(s)
        data, extra = res
        if data is not None:
            # The common case: this message, decrypted, in one call into the
            # core. Reuse paho's object (mid, properties, timestamp) with the
            # plaintext in it; commit only once on_message returned: the
            # session keeps the receipt and commits it at the start of its
            # next call that may deliver (the next message's, in the same
            # call into the core), so a duplicate is still a replay.
            message.payload = data
            try:
                self._mqe2e_dispatch(message)
            except BaseException:
                if extra is not None:
                    s.release_receipt(extra)
                raise
            if extra is not None:
                # No lock: only this (paho's loop) thread receives, and a
                # session closed in between never commits it (as released).
                # Session.accept()'s common case inline (one frame less).
                if extra is s._rcpt and not s._pending:
                    s._pending_topic = topic
                    s._pending = True
                else:
                    s.accept(extra, topic)
            return
        self._mqe2e_run(extra, message)

    def _mqe2e_received_props(self, message: paho.MQTTMessage, plist: list) -> None:
        with self._mqe2e_lock:
            s = self._mqe2e_session
            acts = None if s is None else s.message_received(
                message._topic, message.payload, message.qos, bool(message.retain),
                bool(message.dup), properties=plist)
        if acts is None:
            self._mqe2e_drop(message._topic.decode("utf-8", "replace"), error_for(-11).name)
            return
        if s._failed:
            self._mqe2e_commit_failed(s)
        self._mqe2e_run(acts, message)

    def loop_misc(self) -> int:
        # paho calls this after every packet read: keep the common case (no
        # timer due) to one clock reading and one comparison.
        rc = _paho_loop_misc(self)
        if _mono_ns() >= self._mqe2e_next_tick_ns:
            now = _mono_ns() // 1000000
            acts: list = []
            with self._mqe2e_lock:
                s = self._mqe2e_session
                if s is not None:
                    acts = s.tick(self.is_connected())
                    nt = s.next_timer_ms()
                    self._mqe2e_next_tick_ns = (nt if nt is not None else now + 1000) * 1000000
            if s is not None and s._failed:
                self._mqe2e_commit_failed(s)
            self._mqe2e_run(acts, None)
        return rc

    # -- actions ---------------------------------------------------------
    def _mqe2e_drop(self, topic: str, reason: str) -> None:
        self._easy_log(paho.MQTT_LOG_WARNING, "mqe2e: dropped a message on %s: %s", topic, reason)
        cb = self._mqe2e_on_drop
        if cb is not None:
            with self._in_callback_mutex:
                cb(self, self._userdata, topic, reason)

    def _mqe2e_commit(self, a: Delivery) -> None:
        # Reached only if the application's callback did not raise: record
        # the message in its replay window.
        if a.receipt is None:
            return
        with self._mqe2e_lock:
            if self._mqe2e_session is not None:
                try:
                    self._mqe2e_session.commit(a)
                except Mqe2eError as e:
                    self._mqe2e_drop(a.topic, e.name)

    def _mqe2e_commit_failed(self, s: Session) -> None:
        # Deferred commits that failed (the messages were delivered already).
        for topic, code in s.take_commit_failures():
            self._mqe2e_drop(topic.decode("utf-8", "replace"), error_for(code).name)

    def _mqe2e_commit_receipt(self, s: Session, receipt: Any, topic: bytes) -> None:
        # receive_one()'s receipt: as _mqe2e_commit, for the session that made it.
        with self._mqe2e_lock:
            if self._mqe2e_session is not s:
                s.release_receipt(receipt)
                return
            try:
                s.commit_receipt(receipt)
            except Mqe2eError as e:
                self._mqe2e_drop(topic.decode("utf-8", "replace"), e.name)

    def _mqe2e_run(self, acts: list, original: Optional[paho.MQTTMessage]) -> None:
        for a in acts:
            if isinstance(a, Publish):
                super().publish(a.topic, a.payload, a.qos, a.retain)
            elif isinstance(a, Subscribe):
                super().subscribe(a.topic, a.qos)
            elif isinstance(a, Unsubscribe):
                super().unsubscribe(a.topic)
            elif isinstance(a, Delivery):
                m = paho.MQTTMessage(original.mid if (a.current and original) else 0,
                                     a.topic.encode("utf-8"))
                m.payload = a.payload
                m.qos, m.retain, m.dup = a.qos, a.retain, a.dup
                m.timestamp = time.monotonic()
                if a.current and original is not None:
                    m.properties = getattr(original, "properties", None)
                elif a.properties:
                    m.properties = _props.to_paho(a.properties)
                super()._handle_on_message(m)
                self._mqe2e_commit(a)
            elif isinstance(a, Drop):
                self._mqe2e_drop(a.topic, a.reason)
