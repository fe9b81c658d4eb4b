"""Enrollment with a ticket (docs/PROTOCOL.md 8.3), as ``mqe2e enroll`` does.

One ENROLL round trip with the authority over the broker; the authority pin,
the issued credential, the group keys, the signer directories and the
revocation list go into the keystore.
"""
from __future__ import annotations

import os
import queue
import time
from dataclasses import dataclass
from typing import Any, List, Optional, Union

import paho.mqtt.client as paho

from ._lib import cstr, ffi, lib, wipe
from .errors import Mqe2eError, check, error_for
from .keystore import Keystore

#: Seconds between fresh ENROLL attempts while no reply arrives (as the CLI).
RETRY_SECONDS = 4.0

STATUS_NAMES = {1: "refused", 2: "unknown client", 3: "revoked", 4: "token already used",
                5: "token expired", 6: "client id active on another device"}


class EnrollRefused(Mqe2eError):
    """The authority answered, authenticated, with a refusal (``policy``).

    Attributes:
        status: the reply status (3 revoked, 4 token used, ...).
    """

    def __init__(self, status: int) -> None:
        super().__init__(-18, f"enrollment refused: {STATUS_NAMES.get(status, 'refused')}")
        self.status = status


@dataclass(frozen=True)
class EnrollResult:
    """What the enrollment stored."""

    client_id: str
    credential_serial: int
    groups: List[str]


def _read_ticket(ticket: Optional[str], ticket_file: Optional[str]) -> bytes:
    if ticket_file is not None:
        with open(ticket_file, "rb") as f:
            return f.readline(4096).strip()
    if ticket is None:
        ticket = os.environ.get("MQE2E_TICKET")
    if not ticket:
        raise ValueError("no ticket: pass ticket= or ticket_file=, or set MQE2E_TICKET")
    return ticket.strip().encode()


def _store(ks: Keystore, t, r) -> List[str]:
    pin = ffi.new("mqe2e_authority_pin *")
    pin.authority_id = t.authority_id
    pin.control_prefix = t.control_prefix
    pin.sign_public = t.authority_sign_public
    pin.dh_public = t.authority_dh_public
    h = ks.handle
    check(lib.mqe2e_keystore_set_authority(h, pin), "authority pin")
    groups = [cstr(r.bundles[i].group) or "" for i in range(r.n_bundles)]
    # The one device-side "apply an update" (lib/src/update_apply.c), as the
    # session and `mqe2e enroll` apply it: an older revocation list is refused
    # there without failing the enrollment.
    check(lib.mqe2e_control_update_apply(h, r, t.authority_sign_public, int(time.time()), 0,
                                         ffi.NULL, ffi.NULL), "enrollment")
    return sorted(set(groups))


def enroll(keystore: Union[str, Keystore], *, ticket: Optional[str] = None,
           ticket_file: Optional[str] = None, host: str = "localhost", port: int = 1883,
           passphrase: Union[str, bytes, None] = None, passphrase_file: Optional[str] = None,
           key_file: Optional[str] = None, username: Optional[str] = None,
           password: Optional[str] = None, tls: Optional[dict] = None,
           timeout: float = 30.0) -> EnrollResult:
    """Enroll a keystore with a ticket from ``mqe2e authority token create``.

    Args:
        keystore: an open :class:`Keystore`, or a path (created with the
            ticket's client id when it does not exist; the passphrase
            arguments are those of :meth:`Keystore.open`).
        ticket: the ``mqe2e1-...`` text, or ``ticket_file``, or the
            ``MQE2E_TICKET`` environment variable.
        host, port, username, password: the broker (paho's ``connect`` and
            ``username_pw_set``); ``tls``: keyword arguments of paho's ``tls_set``.
        timeout: seconds to wait for the authority.

    Raises:
        EnrollRefused: the authority refused (revoked, token used or expired...).
        Mqe2eError: ``expired`` (ticket), ``auth`` (a reply that fails), ...
        TimeoutError: no reply within ``timeout``.
        ConnectionError: the broker refused the connection.
    """
    raw = _read_ticket(ticket, ticket_file)
    t = ffi.new("mqe2e_ticket *")
    rawbuf = ffi.new("char[]", raw)
    try:
        check(lib.mqe2e_ticket_decode(t, rawbuf), "ticket")
    finally:
        wipe(rawbuf)
    own = isinstance(keystore, str)
    ks = (Keystore.open_or_create(keystore, cstr(t.client_id) or "", passphrase,
                                  passphrase_file=passphrase_file, key_file=key_file)
          if own else keystore)
    try:
        return _exchange(ks, t, host, port, username, password, tls, timeout)
    finally:
        lib.mqe2e_ticket_wipe(t)
        if own:
            ks.close()


def _exchange(ks: Keystore, t, host, port, username, password, tls, timeout) -> EnrollResult:
    client_id = cstr(t.client_id) or ""
    if client_id != ks.client_id:
        raise ValueError(f"the ticket is for {client_id!r}, the keystore is {ks.client_id!r}")
    prefix = cstr(t.control_prefix) or ""
    inbox = f"{prefix}/client/{client_id}"
    inq: "queue.Queue[Any]" = queue.Queue()
    connected: "queue.Queue[int]" = queue.Queue()
    # Its own MQTT client id (the ticket's): the broker ACL of docs/
    # mosquitto-acl.conf lets a client read only P/client/<its client id>.
    c = paho.Client(client_id=client_id)
    if username is not None:
        c.username_pw_set(username, password)
    if tls is not None:
        c.tls_set(**tls)
    c.on_connect = lambda cl, u, f, rc: connected.put(rc)
    c.on_message = lambda cl, u, m: inq.put(m)
    c.connect(host, port)
    c.loop_start()
    st = ffi.new("mqe2e_enroll_device **")
    frame = ffi.new("uint8_t[]", 65536)
    flen = ffi.new("size_t *")
    try:
        rc = connected.get(timeout=timeout)
        if rc != 0:
            raise ConnectionError(f"broker refused the connection: {paho.connack_string(rc)}")
        c.subscribe(inbox, 1)
        deadline = time.monotonic() + timeout
        sent = 0.0
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise TimeoutError(f"no answer from the authority within {timeout} s")
            if now - sent >= RETRY_SECONDS:
                lib.mqe2e_enroll_device_free(st[0])
                st[0] = ffi.NULL
                ids = ks.identity_public()
                dh = ffi.new("uint8_t[32]")
                try:
                    check(lib.mqe2e_keystore_dh_secret(ks.handle, dh))
                    check(lib.mqe2e_enroll_begin(st, frame, 65536, flen, t, dh,
                                                 ids["sign_public"], int(time.time())),
                          "enrollment")
                finally:
                    wipe(dh)
                c.publish(f"{prefix}/authority", bytes(ffi.buffer(frame, flen[0])), 1).wait_for_publish(5)
                sent = now
            try:
                m = inq.get(timeout=0.25)
            except queue.Empty:
                continue
            if m.topic != inbox or not m.payload:
                continue
            reply = ffi.new("mqe2e_control_update *")
            cred = ffi.new("mqe2e_credential **")
            frc = lib.mqe2e_enroll_finish(st[0], reply, cred, m.payload, len(m.payload),
                                          int(time.time()))
            try:
                if frc == error_for(-17).code:  # another handshake's frame: keep waiting
                    continue
                if frc == error_for(-18).code:
                    raise EnrollRefused(int(reply.status))
                check(frc, "enrollment reply")
                groups = _store(ks, t, reply)
                return EnrollResult(client_id, int(lib.mqe2e_credential_serial(cred[0])), groups)
            finally:
                lib.mqe2e_credential_free(cred[0])
                lib.mqe2e_control_update_wipe(reply)
    finally:
        lib.mqe2e_enroll_device_free(st[0])
        c.disconnect()
        c.loop_stop()
