"""The keystore: identity keys, group epochs, the authority pin, credential.

A :class:`Keystore` wraps one open ``mqe2e_keystore`` (lib/include/mqe2e/keystore.h)
over the encrypted-file backend. Only one handle may have a keystore file
open at a time, from any process (:class:`mqe2e.errors.LockedError`).

Passphrase sources, first given wins: ``passphrase=`` (str or bytes),
``passphrase_file=`` (first line), ``key_file=`` (32 raw bytes or 64 hex
digits, mode 0600), and finally the ``MQE2E_PASSPHRASE`` environment
variable, as for the ``mqe2e`` command. The passphrase is copied into a C
buffer that is wiped after use; a Python ``str`` you pass cannot be wiped by
this package (prefer ``passphrase_file``).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Union

from ._lib import cstr, ffi, lib, wipe
from .errors import check, error_for

PassphraseLike = Union[str, bytes, None]


@dataclass(frozen=True)
class GroupInfo:
    """One group the keystore holds (no secrets)."""

    name: str
    topic_filter: Optional[str]
    current_epoch: Optional[int]
    signed: bool


@dataclass(frozen=True)
class AuthorityPin:
    """The authority this keystore is enrolled with."""

    authority_id: str
    control_prefix: str
    sign_public: bytes
    dh_public: bytes


def _read_first_line(path: str) -> bytes:
    with open(path, "rb") as f:
        line = f.readline(4096)
    return line.rstrip(b"\r\n")


def _storage(path: str, passphrase: PassphraseLike, passphrase_file: Optional[str],
             key_file: Optional[str]):
    """Make the file backend; the caller hands it to create/open (which own it)."""
    st = ffi.new("mqe2e_storage *")
    path_b = os.fsencode(path)
    if key_file is not None and passphrase is None and passphrase_file is None:
        key = ffi.new("uint8_t[32]")
        try:
            check(lib.mqe2e_storage_read_key_file(key, os.fsencode(key_file)), f"key file {key_file}")
            check(lib.mqe2e_storage_file_key(st, path_b, key), path)
        finally:
            wipe(key)
        return st[0]
    if passphrase is not None:
        raw = passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)
    elif passphrase_file is not None:
        raw = _read_first_line(passphrase_file)
    elif os.environ.get("MQE2E_PASSPHRASE"):
        raw = os.environ["MQE2E_PASSPHRASE"].encode("utf-8")
    else:
        raise ValueError("no keystore passphrase: pass passphrase=, passphrase_file= or "
                         "key_file=, or set MQE2E_PASSPHRASE")
    if not raw:
        raise ValueError("empty keystore passphrase")
    buf = ffi.new("char[]", raw)
    try:
        check(lib.mqe2e_storage_file_passphrase(st, path_b, buf, len(raw)), path)
    finally:
        wipe(buf)
    return st[0]


class Keystore:
    """An open keystore. Close it (or use ``with``) to write it and release its lock.

    Use :meth:`open`, :meth:`create` or :meth:`open_or_create`.
    """

    def __init__(self, handle, path: str) -> None:
        self._ks = handle
        self.path = path

    # -- opening ---------------------------------------------------------
    @classmethod
    def open(cls, path: str, passphrase: PassphraseLike = None, *,
             passphrase_file: Optional[str] = None, key_file: Optional[str] = None) -> "Keystore":
        """Open an existing keystore file.

        Raises:
            NotFoundError: no keystore at ``path``.
            AuthError: wrong passphrase or key, or a tampered file.
            LockedError: the file is open elsewhere.
        """
        st = _storage(path, passphrase, passphrase_file, key_file)
        out = ffi.new("mqe2e_keystore **")
        check(lib.mqe2e_keystore_open(out, st), path)
        return cls(out[0], path)

    @classmethod
    def create(cls, path: str, client_id: str, passphrase: PassphraseLike = None, *,
               sender_id: int = 0, passphrase_file: Optional[str] = None,
               key_file: Optional[str] = None) -> "Keystore":
        """Create a keystore with a fresh identity for ``client_id``.

        ``sender_id`` 0 derives the default from the client id (PROTOCOL.md 3).

        Raises:
            ExistsError: a keystore is already stored at ``path``.
        """
        st = _storage(path, passphrase, passphrase_file, key_file)
        out = ffi.new("mqe2e_keystore **")
        check(lib.mqe2e_keystore_create(out, st, client_id.encode(), sender_id), path)
        return cls(out[0], path)

    @classmethod
    def open_or_create(cls, path: str, client_id: str, passphrase: PassphraseLike = None, *,
                       passphrase_file: Optional[str] = None,
                       key_file: Optional[str] = None) -> "Keystore":
        """Open ``path``, or create it for ``client_id`` when no file exists yet."""
        if os.path.exists(path):
            return cls.open(path, passphrase, passphrase_file=passphrase_file, key_file=key_file)
        return cls.create(path, client_id, passphrase, passphrase_file=passphrase_file,
                          key_file=key_file)

    def close(self) -> None:
        """Write pending state, wipe every secret, release the file lock. Idempotent."""
        if self._ks is not None:
            lib.mqe2e_keystore_close(self._ks)
            self._ks = None

    def __enter__(self) -> "Keystore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    @property
    def handle(self):
        """The ``mqe2e_keystore *`` (for the session); raises once closed."""
        if self._ks is None:
            raise ValueError("keystore is closed")
        return self._ks

    # -- status ----------------------------------------------------------
    @property
    def client_id(self) -> str:
        """This keystore's client id."""
        return cstr(lib.mqe2e_keystore_client_id(self.handle)) or ""

    @property
    def sender_id(self) -> int:
        """Default sender id in groups."""
        return int(lib.mqe2e_keystore_sender_id(self.handle))

    def identity_public(self) -> Dict[str, bytes]:
        """The public identity keys: ``{"sign_public": Ed25519, "dh_public": X25519}``."""
        s, d = ffi.new("uint8_t[32]"), ffi.new("uint8_t[32]")
        check(lib.mqe2e_keystore_identity_public(self.handle, s, d))
        return {"sign_public": bytes(s), "dh_public": bytes(d)}

    def groups(self) -> List[GroupInfo]:
        """The groups held, with their current epochs (no secrets)."""
        out: List[GroupInfo] = []
        ks = self.handle
        for i in range(int(lib.mqe2e_keystore_group_count(ks))):
            name_p = lib.mqe2e_keystore_group_name(ks, i)
            name = cstr(name_p) or ""
            ep = ffi.new("uint32_t *")
            rc = lib.mqe2e_keystore_group_current_epoch(ks, name_p, ep)
            out.append(GroupInfo(name, cstr(lib.mqe2e_keystore_group_filter(ks, name_p)),
                                 int(ep[0]) if rc == 0 else None,
                                 lib.mqe2e_keystore_group_is_signed(ks, name_p) == 1))
        return out

    def authority(self) -> Optional[AuthorityPin]:
        """The pinned authority, or None for a manually provisioned keystore."""
        pin = ffi.new("mqe2e_authority_pin *")
        rc = lib.mqe2e_keystore_authority(self.handle, pin)
        if rc != 0:
            return None
        return AuthorityPin(cstr(pin.authority_id) or "", cstr(pin.control_prefix) or "",
                            bytes(pin.sign_public), bytes(pin.dh_public))

    def credential(self) -> Optional[Dict[str, object]]:
        """The stored credential's client id, serial and expiry, or None."""
        pin = self.authority()
        p, n = ffi.new("uint8_t **"), ffi.new("size_t *")
        if pin is None or lib.mqe2e_keystore_credential(self.handle, p, n) != 0 or n[0] == 0:
            return None
        c = ffi.new("mqe2e_credential **")
        rc = lib.mqe2e_credential_verify(c, p[0], n[0], pin.sign_public, int(time.time()))
        if rc != 0:
            return {"valid_now": False, "error": error_for(rc).name}
        try:
            return {"client_id": cstr(lib.mqe2e_credential_client_id(c[0])),
                    "serial": int(lib.mqe2e_credential_serial(c[0])),
                    "expires_at": int(lib.mqe2e_credential_expires_at(c[0])),
                    "valid_now": True}
        finally:
            lib.mqe2e_credential_free(c[0])

    def status(self) -> Dict[str, object]:
        """A summary like ``mqe2e status``: ids, authority, credential, groups."""
        pin = self.authority()
        return {
            "client_id": self.client_id,
            "sender_id": self.sender_id,
            "authority": None if pin is None else {"id": pin.authority_id,
                                                   "prefix": pin.control_prefix},
            "credential": self.credential(),
            "groups": [g.__dict__.copy() for g in self.groups()],
        }

    # -- changes ---------------------------------------------------------
    def import_group(self, sealed: Union[bytes, str], passphrase: Union[str, bytes]) -> str:
        """Import a group file made by ``mqe2e group export`` (bytes or a path).

        Returns the group id.
        """
        if isinstance(sealed, str):
            with open(sealed, "rb") as f:
                sealed = f.read()
        raw = passphrase.encode() if isinstance(passphrase, str) else bytes(passphrase)
        pw = ffi.new("char[]", raw)
        gid = ffi.new("char[256]")
        try:
            check(lib.mqe2e_keystore_group_import(self.handle, sealed, len(sealed), pw, len(raw),
                                                  int(time.time()), gid, 256), "group import")
        finally:
            wipe(pw)
        return cstr(gid) or ""

    def flush(self) -> None:
        """Write the keystore now (atomic, durable)."""
        check(lib.mqe2e_keystore_flush(self.handle))


__all__ = ["Keystore", "GroupInfo", "AuthorityPin", "error_for"]
