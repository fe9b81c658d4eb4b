"""Shared pytest setup: find the build tree, the source tree and the vectors."""
from __future__ import annotations

import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("MQE2E_SOURCE_DIR", os.path.abspath(os.path.join(HERE, "..", "..")))
BUILD_DIR = os.path.abspath(os.environ.get("MQE2E_BUILD_DIR", os.path.join(SOURCE_DIR, "build")))
os.environ["MQE2E_BUILD_DIR"] = BUILD_DIR  # the subprocesses run in other folders
# Test the package of this tree, not an installed one.
sys.path.insert(0, os.path.abspath(os.path.join(HERE, "..")))


def load_vectors(name: str):
    with open(os.path.join(SOURCE_DIR, "tests", "vectors", name), encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="session")
def build_dir() -> str:
    return BUILD_DIR


@pytest.fixture(scope="session")
def source_dir() -> str:
    return SOURCE_DIR


# ---- a real Mosquitto and the real authority (integration tests) ------------
import shutil
import socket
import subprocess
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, seconds: float, what: str):
    """Poll ``pred`` every 50 ms; fail with ``what`` after ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def cli_path(build_dir):
    p = os.path.join(build_dir, "tools", "mqe2e", "mqe2e")
    if not os.access(p, os.X_OK):
        pytest.fail(f"{p} not built (the integration tests need the mqe2e command)")
    return p


class Broker:
    def __init__(self, workdir: str):
        if shutil.which("mosquitto") is None:
            pytest.fail("mosquitto is not installed (tools/quickstart.sh installs it)")
        self.port = free_port()
        conf = os.path.join(workdir, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "log_dest stderr\n")
        self.log = open(os.path.join(workdir, "mosquitto.log"), "wb")
        self.proc = subprocess.Popen(["mosquitto", "-c", conf], stdout=self.log, stderr=self.log)
        wait_for(lambda: _port_open(self.port), 10, "mosquitto to listen")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


class Authority:
    """``mqe2e authority run`` with one operator, driven through the CLI."""

    def __init__(self, cli: str, workdir: str, broker: Broker):
        self.cli, self.dir, self.broker = cli, workdir, broker
        self.env = dict(os.environ, MQE2E_PASSPHRASE="authority test pass")
        self.run("authority", "init", "-K", "auth.ks", "--db", "auth.db", "--id", "authority")
        self.pin = [l for l in self.last.splitlines() if l.startswith("mqe2e-authority1-")][0]
        self.run("keygen", "-K", "op.ks", "--id", "operator")
        sign = [l.split()[-1] for l in self.last.splitlines() if "signing public key" in l][0]
        self.run("authority", "operator-add", "-K", "auth.ks", "--db", "auth.db", "--name",
                 "operator", "--sign-public", sign)
        self.log_path = os.path.join(workdir, "authority.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [cli, "authority", "run", "-K", "auth.ks", "--db", "auth.db", "-h", "127.0.0.1",
             "-p", str(broker.port)], cwd=workdir, env=self.env, stdout=self.log,
            stderr=subprocess.STDOUT)
        wait_for(lambda: b"serving" in open(self.log_path, "rb").read(), 20, "the authority")
        self.env["MQE2E_AUTHORITY"] = self.pin

    def run(self, *args: str, check: bool = True, env=None) -> subprocess.CompletedProcess:
        p = subprocess.run([self.cli, *args], cwd=self.dir, env=env or self.env,
                           capture_output=True, text=True, timeout=120)
        self.last = p.stdout
        if check and p.returncode != 0:
            raise AssertionError(f"mqe2e {' '.join(args)} exited {p.returncode}: {p.stderr}")
        return p

    def op(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """An operator command over the broker (group, token, revoke...)."""
        return self.run(*args, "-K", "op.ks", "-h", "127.0.0.1", "-p", str(self.broker.port),
                        check=check)

    def ticket(self, client_id: str, *extra: str) -> str:
        out = self.op("token", "create", "--id", client_id, *extra).stdout
        return [l for l in out.splitlines() if l.startswith("mqe2e1-")][0]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


@pytest.fixture
def broker(tmp_path):
    b = Broker(str(tmp_path))
    yield b
    b.stop()


@pytest.fixture
def authority(cli_path, tmp_path, broker):
    a = Authority(cli_path, str(tmp_path), broker)
    yield a
    a.stop()
