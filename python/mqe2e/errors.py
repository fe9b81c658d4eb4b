"""Errors of the core as Python exceptions.

Every negative return code of libmqe2e becomes an :class:`Mqe2eError` whose
:attr:`~Mqe2eError.name` is the core's stable name (``mqe2e_error_name``:
``"auth"``, ``"replay"``, ``"no_key"``, ...) and whose :attr:`~Mqe2eError.code`
is the C code (``MQE2E_ERR_*``). Each name has its own subclass, so
``except mqe2e.AuthError`` and ``except mqe2e.Mqe2eError as e: e.name`` both work.
"""
from __future__ import annotations

from typing import Dict, Type

from ._lib import cstr, lib

#: C error codes by name (lib/include/mqe2e/error.h).
CODES: Dict[str, int] = {}


class Mqe2eError(Exception):
    """A libmqe2e call failed.

    Attributes:
        code: the C error code (negative, ``MQE2E_ERR_*``).
        name: the core's stable error name (``mqe2e_error_name``), e.g. ``"auth"``.
        reason: the core's description (``mqe2e_strerror``).
    """

    code: int = 0
    name: str = "unknown"

    def __init__(self, code: int, context: str = "") -> None:
        self.code = code
        self.name = cstr(lib.mqe2e_error_name(code)) or "unknown"
        self.reason = cstr(lib.mqe2e_strerror(code)) or "unknown error"
        msg = f"{self.name}: {self.reason}"
        super().__init__(f"{context}: {msg}" if context else msg)


_BY_CODE: Dict[int, Type[Mqe2eError]] = {}


def _camel(name: str) -> str:
    return "".join(p.capitalize() for p in name.split("_")) + "Error"


def _build() -> None:
    code = -1
    while True:
        name = cstr(lib.mqe2e_error_name(code))
        if name is None or name in ("unknown", "") or code < -64:
            break
        cls = type(_camel(name), (Mqe2eError,), {"__doc__": f"``{name}``: the core's code {code}."})
        _BY_CODE[code] = cls
        CODES[name] = code
        globals()[cls.__name__] = cls
        code -= 1


_build()


def error_for(code: int, context: str = "") -> Mqe2eError:
    """The exception instance for a C return code."""
    return _BY_CODE.get(code, Mqe2eError)(code, context)


def check(code: int, context: str = "") -> int:
    """Raise the matching :class:`Mqe2eError` when ``code`` is negative."""
    if code < 0:
        raise error_for(code, context)
    return code


def error_name(code: int) -> str:
    """The core's name of a return code (``0`` is ``"ok"``)."""
    return cstr(lib.mqe2e_error_name(code)) or "unknown"
