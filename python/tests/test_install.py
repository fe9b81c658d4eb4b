"""The package installs without network (pip, Debian's setuptools) and the
installed copy loads libmqe2e and runs."""
import os
import shutil
import subprocess
import sys


def test_pip_install_offline(tmp_path, build_dir):
    src = tmp_path / "src"
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    shutil.copytree(here, src, ignore=shutil.ignore_patterns("tests", "build", "*.egg-info",
                                                             "__pycache__", "CMakeLists.txt"))
    target = tmp_path / "site"
    p = subprocess.run([sys.executable, "-m", "pip", "install", "--no-build-isolation",
                        "--no-index", "--no-deps", "--target", str(target), str(src)],
                       capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PIP_NO_CACHE_DIR="1", PIP_DISABLE_PIP_VERSION_CHECK="1"))
    assert p.returncode == 0, p.stdout + p.stderr
    assert (target / "mqe2e" / "py.typed").exists()
    code = ("import mqe2e, mqe2e.client, mqe2e.enrollment; "
            "assert mqe2e.__file__.startswith(%r); print(mqe2e.library_version())" % str(target))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=str(target),
                                                   MQE2E_BUILD_DIR=build_dir))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()
    # Without any way to find the library the import fails with a clear message.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MQE2E_")}
    env.update(PYTHONPATH=str(target), MQE2E_LIBRARY=str(tmp_path / "nowhere.so"),
               PKG_CONFIG_PATH=str(tmp_path), LD_LIBRARY_PATH="")
    r = subprocess.run([sys.executable, "-c", "import mqe2e"], capture_output=True, text=True,
                       timeout=60, cwd=str(tmp_path), env=env)
    if r.returncode != 0:  # a system-wide libmqe2e would make this import succeed
        assert "cannot find libmqe2e" in r.stderr
