"""Loading libmqe2e (cffi ABI mode: no compiler needed at install time).

The shared library is looked up, first match wins:

1. ``MQE2E_LIBRARY``: the path of ``libmqe2e.so`` itself;
2. ``MQE2E_BUILD_DIR``: a CMake build tree (``<dir>/lib/libmqe2e.so``);
3. the library directory recorded when CMake installed this package
   (``_install.py``, written by ``-DMQE2E_PYTHON=ON``);
4. ``pkg-config --variable=libdir mqe2e``;
5. the system's search path (``libmqe2e.so.0``).
"""
from __future__ import annotations

import os
import subprocess
from typing import List, Optional

from cffi import FFI

from ._cdef import CDEF

ffi = FFI()
ffi.cdef(CDEF)

_SONAMES = ("libmqe2e.so", "libmqe2e.so.0")


def _candidates() -> List[str]:
    out: List[str] = []
    env = os.environ.get("MQE2E_LIBRARY")
    if env:
        out.append(env)
    build = os.environ.get("MQE2E_BUILD_DIR")
    if build:
        out.extend(os.path.join(build, "lib", n) for n in _SONAMES)
    try:
        from . import _install  # type: ignore[attr-defined]

        out.extend(os.path.join(_install.LIBDIR, n) for n in _SONAMES)
    except ImportError:
        pass
    try:
        libdir = subprocess.run(
            ["pkg-config", "--variable=libdir", "mqe2e"],
            check=True, capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        if libdir:
            out.extend(os.path.join(libdir, n) for n in _SONAMES)
    except (OSError, subprocess.SubprocessError):
        pass
    out.append("libmqe2e.so.0")
    return out


def _load():
    errors: List[str] = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            continue
        try:
            return ffi.dlopen(path), path
        except OSError as e:
            errors.append(f"{path}: {e}")
    raise ImportError(
        "cannot find libmqe2e: set MQE2E_LIBRARY to the path of libmqe2e.so, or "
        "MQE2E_BUILD_DIR to a CMake build tree, or install the C library where "
        "pkg-config finds it (" + "; ".join(errors) + ")"
    )


lib, LIBRARY_PATH = _load()
if lib.mqe2e_init() != 0:
    raise ImportError("libmqe2e failed to initialise (libsodium)")


def has_session() -> bool:
    """Whether the loaded library exports the sans-I/O session (session.h)."""
    try:
        lib.mqe2e_session_new  # noqa: B018 - resolves the symbol
        return True
    except AttributeError:
        return False


def wipe(buf) -> None:
    """Zero a cffi buffer (``ffi.new``) with sodium_memzero."""
    lib.sodium_memzero(buf, ffi.sizeof(buf))


def cstr(p) -> Optional[str]:
    """A C string (NULL → None) as text."""
    if p == ffi.NULL:
        return None
    return ffi.string(p).decode("utf-8", "replace")
