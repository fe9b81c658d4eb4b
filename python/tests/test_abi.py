"""The struct layouts of python/mqe2e/_cdef.py equal the C compiler's."""
import json
import os
import subprocess

from mqe2e._cdef import CHECKED_STRUCTS
from mqe2e._lib import ffi


def test_layouts_match_the_compiler(build_dir):
    exe = os.path.join(build_dir, "tests", "mqe2e_abi_sizes")
    assert os.path.exists(exe), f"build {exe} first (cmake --build ... --target mqe2e_abi_sizes)"
    c = json.loads(subprocess.run([exe], check=True, capture_output=True, text=True).stdout)
    assert set(c) == set(CHECKED_STRUCTS)
    for name, info in c.items():
        t = ffi.typeof(name)
        assert ffi.sizeof(t) == info["size"], name
        for field, off in info["fields"].items():
            assert ffi.offsetof(t, field) == off, f"{name}.{field}"
