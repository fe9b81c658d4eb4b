"""MQTT v5 properties between paho-mqtt and the core (lib/include/mqe2e/msgmeta.h).

A topic rule may bind chosen MQTT v5 properties and the retain flag into the
envelope's associated data (``;bind=...``, docs/PROTOCOL.md 2.5.1). The core
never sees MQTT: it takes the message's properties as a list of
``(id, name, value)`` items, in the order the packet carries them. This module
converts paho's :class:`paho.mqtt.properties.Properties` to that list and
back. Only the bindable properties are converted (payload format, content
type, response topic, correlation data, user properties); the others can
never be bound, so the core ignores them anyway.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

from ._lib import ffi

PAYLOAD_FORMAT = 0x01
CONTENT_TYPE = 0x03
RESPONSE_TOPIC = 0x08
CORRELATION_DATA = 0x09
USER = 0x26

#: One property: (MQTT v5 id, name bytes for a user property else None, value bytes).
Prop = Tuple[int, Optional[bytes], bytes]


def _utf8(v: Any) -> bytes:
    return v.encode("utf-8") if isinstance(v, str) else bytes(v)


def from_paho(p: Any) -> List[Prop]:
    """The bindable properties of a paho ``Properties`` (None: none), user
    properties in their order."""
    if p is None:
        return []
    out: List[Prop] = []
    v = getattr(p, "PayloadFormatIndicator", None)
    if v is not None:
        out.append((PAYLOAD_FORMAT, None, bytes([int(v) & 0xFF])))
    v = getattr(p, "ContentType", None)
    if v is not None:
        out.append((CONTENT_TYPE, None, _utf8(v)))
    v = getattr(p, "ResponseTopic", None)
    if v is not None:
        out.append((RESPONSE_TOPIC, None, _utf8(v)))
    v = getattr(p, "CorrelationData", None)
    if v is not None:
        out.append((CORRELATION_DATA, None, _utf8(v)))
    for name, value in getattr(p, "UserProperty", None) or ():
        out.append((USER, _utf8(name), _utf8(value)))
    return out


def to_paho(props: Sequence[Prop]) -> Any:
    """A paho ``Properties`` (PUBLISH) holding ``props`` (for a message the
    session held and released: its transport's message is gone)."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    p = Properties(PacketTypes.PUBLISH)
    for pid, name, value in props:
        if pid == PAYLOAD_FORMAT and len(value) == 1:
            p.PayloadFormatIndicator = value[0]
        elif pid == CONTENT_TYPE:
            p.ContentType = value.decode("utf-8", "replace")
        elif pid == RESPONSE_TOPIC:
            p.ResponseTopic = value.decode("utf-8", "replace")
        elif pid == CORRELATION_DATA:
            p.CorrelationData = bytes(value)
        elif pid == USER and name is not None:
            p.UserProperty = (name.decode("utf-8", "replace"), value.decode("utf-8", "replace"))
    return p


def to_c(props: Sequence[Prop]) -> Tuple[Any, int, list]:
    """``(mqe2e_msg_property[], count, keep)``: the C array borrowing the
    bytes in ``keep`` (hold on to it for the call)."""
    n = len(props)
    if n == 0:
        return ffi.NULL, 0, []
    arr = ffi.new("mqe2e_msg_property[]", n)
    keep: list = [arr]
    for i, (pid, name, value) in enumerate(props):
        e = arr[i]
        e.id = pid
        if name is not None and len(name) > 0:
            b = ffi.from_buffer("uint8_t[]", name)
            keep.append(b)
            e.name, e.name_len = b, len(name)
        if len(value) > 0:
            b = ffi.from_buffer("uint8_t[]", value)
            keep.append(b)
            e.value, e.value_len = b, len(value)
    return arr, n, keep


def from_c(arr: Any, n: int) -> List[Prop]:
    """Copy ``n`` properties out of a C array (an action's, valid for now)."""
    out: List[Prop] = []
    for i in range(n):
        e = arr[i]
        name = ffi.buffer(e.name, e.name_len)[:] if e.name != ffi.NULL and e.name_len else (
            b"" if e.id == USER else None)
        value = ffi.buffer(e.value, e.value_len)[:] if e.value != ffi.NULL and e.value_len else b""
        out.append((int(e.id), name, value))
    return out
