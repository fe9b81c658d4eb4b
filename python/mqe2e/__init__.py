"""mqe2e: end-to-end encryption for MQTT, from Python.

A binding of libmqe2e (the C core) through cffi. The main entry points:

* :class:`mqe2e.Client`: a drop-in for ``paho.mqtt.client.Client`` that
  encrypts what it publishes and decrypts what it receives; add one call,
  :meth:`Client.keystore_set`.
* :class:`mqe2e.Keystore`: open, create and inspect keystores.
* :func:`mqe2e.enroll`: enroll a keystore with a ticket from the authority.
* :mod:`mqe2e.wire`: stateless key schedule / envelope / frame calls.
* :mod:`mqe2e.errors`: every core error as an exception carrying its name.

See docs/PYTHON.md.
"""
from __future__ import annotations

from ._lib import LIBRARY_PATH, ffi, lib
from .errors import Mqe2eError, check, error_for, error_name
from .errors import *  # noqa: F401,F403 - the per-name exception classes
from .keystore import AuthorityPin, GroupInfo, Keystore
from . import wire

__version__ = "0.1.0"


def library_version() -> str:
    """Version of the loaded libmqe2e."""
    return ffi.string(lib.mqe2e_version()).decode()


def __getattr__(name: str):
    # Client, Session and enroll import paho-mqtt / the session API lazily,
    # so keystore and wire calls work without them.
    if name in ("Client", "MQTTMessage"):
        from . import client

        return getattr(client, name)
    if name in ("Session", "Drop", "Delivery"):
        from . import session

        return getattr(session, name)
    if name in ("enroll", "EnrollResult", "EnrollRefused"):
        from . import enrollment

        return getattr(enrollment, name)
    raise AttributeError(name)
