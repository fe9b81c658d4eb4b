"""Python and C clients together over a real Mosquitto and the real authority.

The C side is the ``mqe2e`` command (``pub``/``sub``/``enroll`` run the Paho
fronts over the same core); the Python side is ``mqe2e.Client`` and
``mqe2e.enroll``. Nothing here is mocked.
"""
import os
import queue
import subprocess
import threading

import paho.mqtt.client as paho
import pytest

import mqe2e
from conftest import wait_for

PASS = "python test pass"


class Inbox:
    """Collects on_message and on_drop of an mqe2e.Client."""

    def __init__(self):
        self.messages: "queue.Queue" = queue.Queue()
        self.drops: "queue.Queue" = queue.Queue()
        self.subscribed = threading.Event()

    def attach(self, c: "mqe2e.Client", topic: str, qos: int = 1):
        c.on_message = lambda cl, u, m: self.messages.put((m.topic, m.payload))
        c.on_drop = lambda cl, u, topic, reason: self.drops.put((topic, reason))
        c.on_subscribe = lambda *a: self.subscribed.set()
        c.on_connect = lambda cl, u, f, rc: cl.subscribe(topic, qos)

    def next_message(self, timeout=30):
        return self.messages.get(timeout=timeout)

    def next_drop(self, timeout=30):
        return self.drops.get(timeout=timeout)


def py_client(authority, ks_path, client_id, inbox=None, topic=None):
    c = mqe2e.Client(client_id=client_id)
    c.keystore_set(ks_path, PASS)
    if inbox is not None:
        inbox.attach(c, topic)
    c.connect("127.0.0.1", authority.broker.port)
    c.loop_start()
    return c


def stop(c):
    c.disconnect()
    c.loop_stop()
    c.keystore_close()


def enroll_c(authority, client_id, *token_args):
    t = authority.ticket(client_id, *token_args)
    authority.run("enroll", "-K", f"{client_id}.ks", "--ticket", t, "-h", "127.0.0.1", "-p",
                  str(authority.broker.port))


def c_pub(authority, client_id, topic, *messages, check=True):
    return authority.run("pub", "-K", f"{client_id}.ks", "-h", "127.0.0.1", "-p",
                         str(authority.broker.port), "-t", topic, "-q", "1", "-l",
                         check=check) if False else subprocess.run(
        [authority.cli, "pub", "-K", f"{client_id}.ks", "-h", "127.0.0.1", "-p",
         str(authority.broker.port), "-t", topic, "-q", "1", "-l"],
        input="\n".join(messages) + "\n", cwd=authority.dir, env=authority.env,
        capture_output=True, text=True, timeout=60)


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def reseq(env: bytes, seq: int) -> bytes:
    """The same envelope with another (unseen) sequence number: the header is
    authenticated, so this must fail as ``auth``, not pass as new."""
    h = mqe2e.wire.parse_envelope(env)
    # Rebuild the canonical header (PROTOCOL.md 2.1) around the original body field.
    i = 0
    while True:  # walk to the body field (key 0x0a)
        k = env[i]
        if k == 0x0A:
            body = env[i:]
            break
        i += 1
        if k in (0x20, 0x28, 0x30):
            while env[i] & 0x80:
                i += 1
            i += 1
        else:
            i += 1 + env[i]
    hdr = b""
    if h.epoch:
        hdr += b"\x20" + _varint(h.epoch)
    if h.sender_id:
        hdr += b"\x28" + _varint(h.sender_id)
    hdr += b"\x42\x06" + h.instance.to_bytes(6, "big") + b"\x30" + _varint(seq)
    return hdr + body


def fresh_client(authority, ks_path, client_id, policy=None):
    """A connected mqe2e.Client that has heard the authority (HELLO reply)."""
    c = mqe2e.Client(client_id=client_id)
    c.keystore_set(ks_path, PASS, policy=policy)
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.connect("127.0.0.1", authority.broker.port)
    c.loop_start()
    assert connected.wait(20)
    wait_for(lambda: c.session.fresh(), 20, "the HELLO reply")
    return c


def raw_client(port):
    r = paho.Client(client_id=f"raw-{os.getpid()}")
    r.connect("127.0.0.1", port)
    r.loop_start()
    return r


def test_python_backend_reads_c_devices_and_refuses_bad_input(authority, tmp_path):
    authority.op("group", "create", "--group", "health", "--topic", "health/#")
    enroll_c(authority, "hr-1", "--group", "health", "--grant", "health/hr-1/#:pub")
    ticket = authority.ticket("backend", "--role", "service", "--group", "health",
                              "--grant", "health/#:sub")
    ks = str(tmp_path / "backend.ks")
    res = mqe2e.enroll(ks, ticket=ticket, host="127.0.0.1", port=authority.broker.port,
                       passphrase=PASS)
    assert res.client_id == "backend" and res.groups == ["health"] and res.credential_serial > 0

    # A plain paho sniffer sees only ciphertext.
    sniffed: "queue.Queue" = queue.Queue()
    sniff = raw_client(authority.broker.port)
    sniff.on_message = lambda c, u, m: sniffed.put(m.payload)
    sniff.subscribe("health/#", 1)

    inbox = Inbox()
    c = py_client(authority, ks, "backend", inbox, "health/#")
    try:
        assert inbox.subscribed.wait(20)
        p = c_pub(authority, "hr-1", "health/hr-1/bpm", "bpm=71", "bpm=72", "bpm=73")
        assert p.returncode == 0, p.stderr
        got = [inbox.next_message() for _ in range(3)]
        assert got == [("health/hr-1/bpm", b"bpm=%d" % n) for n in (71, 72, 73)]
        envelopes = [sniffed.get(timeout=10) for _ in range(3)]
        assert all(b"bpm=" not in e for e in envelopes)

        # Bad input from anyone with broker access: dropped with its reason, never delivered.
        raw = raw_client(authority.broker.port)
        raw.publish("health/hr-1/bpm", b"forged plaintext bpm=999", 1).wait_for_publish(10)
        assert inbox.next_drop() == ("health/hr-1/bpm", "decode")
        raw.publish("health/hr-1/bpm", envelopes[0], 1).wait_for_publish(10)  # replay
        assert inbox.next_drop() == ("health/hr-1/bpm", "replay")
        raw.publish("health/hr-2/bpm", envelopes[1], 1).wait_for_publish(10)  # re-topiced
        assert inbox.next_drop() == ("health/hr-2/bpm", "replay")  # window before AEAD
        fresh = reseq(envelopes[2], 1_000_000)
        assert mqe2e.wire.parse_envelope(fresh).seq == 1_000_000
        raw.publish("health/hr-1/bpm", fresh, 1).wait_for_publish(10)  # unseen seq, forged
        assert inbox.next_drop() == ("health/hr-1/bpm", "auth")
        raw.publish("health/hr-2/bpm", reseq(envelopes[2], 1_000_001), 1).wait_for_publish(10)
        assert inbox.next_drop() == ("health/hr-2/bpm", "auth")  # moved to another topic
        raw.disconnect()
        raw.loop_stop()
        assert inbox.messages.empty()
        counts = c.counters()
        assert counts["opened"] == 3
        assert counts["dropped"].get("decode") == 1 and counts["dropped"].get("auth", 0) >= 1
        assert counts["control"]["handshakes_ok"] >= 1  # HELLO on connect answered

        # Publishing on a topic without a policy raises; nothing goes out in clear.
        with pytest.raises(mqe2e.NoPolicyError):
            c.publish("elsewhere/x", b"secret")
    finally:
        stop(c)
        sniff.disconnect()
        sniff.loop_stop()


def test_python_device_enrolls_and_c_backend_reads_it(authority, tmp_path):
    authority.op("group", "create", "--group", "plant", "--topic", "plant/#")
    enroll_c(authority, "scada", "--role", "service", "--group", "plant", "--grant", "plant/#:sub")
    ticket = authority.ticket("py-dev", "--group", "plant", "--grant", "plant/py-dev/#:pub")
    ks = str(tmp_path / "py-dev.ks")
    mqe2e.enroll(ks, ticket=ticket, host="127.0.0.1", port=authority.broker.port, passphrase=PASS)
    with mqe2e.Keystore.open(ks, PASS) as k:
        st = k.status()
        assert st["authority"]["id"] == "authority"
        assert st["credential"]["valid_now"] and st["groups"][0]["name"] == "plant"

    # The ticket is single-use: a second enrollment with it is refused by the authority.
    with pytest.raises(mqe2e.EnrollRefused) as e:
        mqe2e.enroll(str(tmp_path / "thief.ks"), ticket=ticket, host="127.0.0.1",
                     port=authority.broker.port, passphrase=PASS, timeout=20)
    assert e.value.name == "policy"

    sub = subprocess.Popen(
        [authority.cli, "sub", "-K", "scada.ks", "-h", "127.0.0.1", "-p",
         str(authority.broker.port), "-t", "plant/#", "-q", "1", "-C", "2", "-W", "40", "-v",
         "-d"], cwd=authority.dir, env=authority.env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    errlog = []
    threading.Thread(target=lambda: errlog.extend(sub.stderr), daemon=True).start()
    wait_for(lambda: any("subscribed to plant/#" in l for l in errlog), 20, "mqe2e sub")
    c = fresh_client(authority, ks, "py-dev")
    try:
        c.publish("plant/py-dev/valve", "open 40%", qos=1).wait_for_publish(10)
        c.publish("plant/py-dev/valve", b"closed", qos=1).wait_for_publish(10)
        out, _ = sub.communicate(timeout=60)
        assert sub.returncode == 0, errlog
        assert out.splitlines() == ["plant/py-dev/valve open 40%", "plant/py-dev/valve closed"]
    finally:
        if sub.poll() is None:
            sub.kill()
        stop(c)


def test_revocation_and_rotation_reach_the_python_backend(authority, tmp_path):
    authority.op("group", "create", "--group", "health", "--topic", "health/#")
    enroll_c(authority, "hr-1", "--group", "health", "--grant", "health/hr-1/#:pub")
    enroll_c(authority, "hr-2", "--group", "health", "--grant", "health/hr-2/#:pub")
    ks = str(tmp_path / "backend.ks")
    mqe2e.enroll(ks, ticket=authority.ticket("backend", "--role", "service", "--group",
                                              "health", "--grant", "health/#:sub"),
                 host="127.0.0.1", port=authority.broker.port, passphrase=PASS)
    inbox = Inbox()
    c = py_client(authority, ks, "backend", inbox, "health/#")
    try:
        assert inbox.subscribed.wait(20)
        assert c_pub(authority, "hr-1", "health/hr-1/bpm", "before").returncode == 0
        assert inbox.next_message() == ("health/hr-1/bpm", b"before")
        epoch_before = c.session.counters()["control"]["pushes_applied"]

        authority.op("revoke", "--id", "hr-1")
        # The backend follows the rotation by PUSH, without reconnecting.
        wait_for(lambda: c.counters()["control"]["pushes_applied"] > epoch_before, 30,
                 "the rotation PUSH")
        # The revoked device cannot get anything delivered any more...
        late = c_pub(authority, "hr-1", "health/hr-1/bpm", "after revocation", check=False)
        # ...while a member that stayed reaches the backend under the new epoch.
        assert c_pub(authority, "hr-2", "health/hr-2/bpm", "still here").returncode == 0
        seen = []
        while True:
            t, p = inbox.next_message()
            seen.append(p)
            if p == b"still here":
                break
        assert b"after revocation" not in seen, late.stderr
    finally:
        stop(c)


def test_python_publisher_through_a_rotation(authority, tmp_path):
    """A Python device keeps publishing across a group rotation: once the
    rotation PUSH is applied, everything it sends is sealed under the new
    epoch (read off the wire by a raw sniffer), and the C backend
    (``mqe2e sub``) opens all of it, before and after."""
    authority.op("group", "create", "--group", "line", "--topic", "line/#")
    enroll_c(authority, "line-scada", "--role", "service", "--group", "line", "--grant",
             "line/#:sub")
    enroll_c(authority, "line-old", "--group", "line", "--grant", "line/line-old/#:pub")
    ks = str(tmp_path / "line-py.ks")
    mqe2e.enroll(ks, ticket=authority.ticket("line-py", "--group", "line", "--grant",
                                             "line/line-py/#:pub"),
                 host="127.0.0.1", port=authority.broker.port, passphrase=PASS)

    # The sniffer: a plain paho client that sees the ciphertext as the broker has it.
    wire_seen: "queue.Queue" = queue.Queue()
    sniff_ready = threading.Event()
    sniffer = raw_client(authority.broker.port)
    sniffer.on_message = lambda cl, u, m: wire_seen.put((m.topic, bytes(m.payload)))
    sniffer.on_subscribe = lambda *a: sniff_ready.set()
    sniffer.subscribe("line/line-py/#", 1)
    assert sniff_ready.wait(20)

    before, after = ["before 1", "before 2"], ["after 1", "after 2", "after 3"]
    sub = subprocess.Popen(
        [authority.cli, "sub", "-K", "line-scada.ks", "-h", "127.0.0.1", "-p",
         str(authority.broker.port), "-t", "line/#", "-q", "1", "-C",
         str(len(before) + len(after)), "-W", "60", "-v", "-d"], cwd=authority.dir,
        env=authority.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    errlog = []
    threading.Thread(target=lambda: errlog.extend(sub.stderr), daemon=True).start()
    c = None
    try:
        wait_for(lambda: any("subscribed to line/#" in l for l in errlog), 20, "mqe2e sub")
        c = fresh_client(authority, ks, "line-py")
        for m in before:
            c.publish("line/line-py/speed", m, qos=1).wait_for_publish(10)
        old = set()
        for _ in before:
            t, env = wire_seen.get(timeout=30)
            assert env.decode(errors="replace") not in before  # never in clear
            old.add(mqe2e.wire.parse_envelope(env).epoch)
        assert len(old) == 1
        (old_epoch,) = old

        applied = c.counters()["control"]["pushes_applied"]
        authority.op("revoke", "--id", "line-old")  # rotates "line"
        wait_for(lambda: c.counters()["control"]["pushes_applied"] > applied, 30,
                 "the rotation PUSH at the Python device")
        for m in after:
            c.publish("line/line-py/speed", m, qos=1).wait_for_publish(10)
        new = []
        for _ in after:
            t, env = wire_seen.get(timeout=30)
            assert env.decode(errors="replace") not in after
            new.append(mqe2e.wire.parse_envelope(env).epoch)
        # Nothing under the old epoch once the PUSH is applied (a sender has no
        # grace: retired epochs are only read, PROTOCOL.md 9).
        assert all(e > old_epoch for e in new), (old_epoch, new)
        assert len(set(new)) == 1

        out, _ = sub.communicate(timeout=90)
        assert sub.returncode == 0, errlog
        assert out.splitlines() == [f"line/line-py/speed {m}" for m in before + after]
        assert wire_seen.empty()
    finally:
        if sub.poll() is None:
            sub.kill()
        sniffer.loop_stop()
        sniffer.disconnect()
        if c is not None:
            stop(c)


def test_python_m_mqe2e_sub_and_decrypt(authority, tmp_path):
    """``python -m mqe2e sub`` prints C devices' plaintext; ``decrypt`` opens one payload."""
    import sys

    authority.op("group", "create", "--group", "health", "--topic", "health/#")
    enroll_c(authority, "hr-1", "--group", "health", "--grant", "health/hr-1/#:pub")
    ks = str(tmp_path / "script.ks")
    mqe2e.enroll(ks, ticket=authority.ticket("script", "--role", "service", "--group", "health",
                                              "--grant", "health/#:sub"),
                 host="127.0.0.1", port=authority.broker.port, passphrase=PASS)
    env = dict(os.environ, MQE2E_PASSPHRASE=PASS,
               PYTHONPATH=os.path.dirname(os.path.dirname(mqe2e.__file__)))
    sub = subprocess.Popen([sys.executable, "-m", "mqe2e", "sub", "-K", ks, "-h", "127.0.0.1",
                            "-p", str(authority.broker.port), "-t", "health/#", "-q", "1",
                            "-C", "2", "-W", "40", "-v"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    errlog = []
    threading.Thread(target=lambda: errlog.extend(sub.stderr), daemon=True).start()
    wait_for(lambda: any("subscribed to" in l for l in errlog), 20, "python -m mqe2e sub")
    raw = raw_client(authority.broker.port)
    raw.publish("health/hr-1/bpm", b"not an envelope", 1).wait_for_publish(10)
    sniffed: "queue.Queue" = queue.Queue()
    raw.on_message = lambda c, u, m: sniffed.put(m.payload)
    raw.subscribe("health/#", 1)
    wait_for(lambda: any("dropped message on health/hr-1/bpm: decode" in l for l in errlog), 20,
             "the drop report")
    assert c_pub(authority, "hr-1", "health/hr-1/bpm", "bpm=80", "bpm=81").returncode == 0
    out, _ = sub.communicate(timeout=60)
    assert sub.returncode == 0, errlog
    assert out.splitlines() == ["health/hr-1/bpm bpm=80", "health/hr-1/bpm bpm=81"]
    seen = [sniffed.get(timeout=10) for _ in range(2)]
    # One more message, which no subscriber of this keystore has taken yet.
    assert c_pub(authority, "hr-1", "health/hr-1/bpm", "bpm=82").returncode == 0
    envelope = sniffed.get(timeout=10)
    raw.disconnect()
    raw.loop_stop()

    def decrypt(topic, payload):
        return subprocess.run([sys.executable, "-m", "mqe2e", "decrypt", "-K", ks, "-t", topic],
                              input=payload, env=env, capture_output=True, timeout=60)

    p = decrypt("health/hr-1/bpm", envelope)
    assert (p.returncode, p.stdout) == (0, b"bpm=82"), p.stderr
    p = decrypt("health/hr-9/bpm", envelope)  # moved to another topic
    assert (p.returncode, p.stdout) == (2, b"")
    assert b"dropped message on health/hr-9/bpm: auth" in p.stderr
    p = decrypt("health/hr-1/bpm", seen[0])  # the sub accepted it: a replay now
    assert (p.returncode, p.stdout) == (2, b"")
    assert b": replay" in p.stderr


def test_hello_catch_up_after_missing_a_rotation(authority, tmp_path):
    """A Python backend offline during a rotation learns the new epoch from the
    HELLO reply on its next connect (no PUSH reached it), then decrypts."""
    authority.op("group", "create", "--group", "health", "--topic", "health/#")
    enroll_c(authority, "hr-1", "--group", "health", "--grant", "health/hr-1/#:pub")
    enroll_c(authority, "hr-2", "--group", "health", "--grant", "health/hr-2/#:pub")
    ks = str(tmp_path / "backend.ks")
    mqe2e.enroll(ks, ticket=authority.ticket("backend", "--role", "service", "--group",
                                              "health", "--grant", "health/#:sub"),
                 host="127.0.0.1", port=authority.broker.port, passphrase=PASS)
    with mqe2e.Keystore.open(ks, PASS) as k:
        (g,) = k.groups()
        epoch_before = g.current_epoch

    authority.op("revoke", "--id", "hr-1")  # rotates health while the backend is away

    inbox = Inbox()
    c = py_client(authority, ks, "backend", inbox, "health/#")
    try:
        assert inbox.subscribed.wait(20)
        wait_for(lambda: c.session.fresh(), 20, "the HELLO reply")
        assert c.counters()["control"]["pushes_applied"] == 0
        assert c_pub(authority, "hr-2", "health/hr-2/bpm", "new epoch").returncode == 0
        assert inbox.next_message() == ("health/hr-2/bpm", b"new epoch")
    finally:
        stop(c)
    with mqe2e.Keystore.open(ks, PASS) as k:
        (g,) = k.groups()
        assert g.current_epoch > epoch_before


def test_channel_between_python_and_c(authority, tmp_path):
    """A Python controller sends a command over a Noise XX channel to a C
    device (``mqe2e sub`` with a channel policy): the handshake, the queued
    message and the channel envelope all go through the session."""
    import sys  # noqa: F401

    enroll_c(authority, "pump", "--grant", "cmd/pump/#:sub")
    ks = str(tmp_path / "ctl.ks")
    mqe2e.enroll(ks, ticket=authority.ticket("ctl", "--role", "service", "--grant",
                                              "cmd/#:pub"),
                 host="127.0.0.1", port=authority.broker.port, passphrase=PASS)
    sub = subprocess.Popen(
        [authority.cli, "sub", "-K", "pump.ks", "-h", "127.0.0.1", "-p",
         str(authority.broker.port), "-t", "cmd/pump/#", "-q", "1", "-C", "2", "-W", "40",
         "--policy", "cmd/pump/#=channel:ctl", "-d"], cwd=authority.dir, env=authority.env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    errlog = []
    threading.Thread(target=lambda: errlog.extend(sub.stderr), daemon=True).start()
    wait_for(lambda: any("subscribed to cmd/pump/#" in l for l in errlog), 20, "mqe2e sub")
    sniffed: "queue.Queue" = queue.Queue()
    sniff = raw_client(authority.broker.port)
    sniff.on_message = lambda cl, u, m: sniffed.put(m.payload)
    sniff.subscribe("cmd/#", 1)
    c = fresh_client(authority, ks, "ctl", policy=["cmd/pump/#=channel:pump"])
    try:
        info = c.publish("cmd/pump/speed", b"set 1200 rpm", qos=1)
        assert info.rc == 0
        wait_for(lambda: c.counters()["control"]["channel_sent"] >= 1, 30, "the channel")
        c.publish("cmd/pump/speed", b"stop", qos=1)
        out, _ = sub.communicate(timeout=60)
        assert sub.returncode == 0, errlog
        assert out.splitlines() == ["set 1200 rpm", "stop"]
        payloads = [sniffed.get(timeout=10) for _ in range(2)]
        assert all(b"rpm" not in p and b"stop" not in p for p in payloads)
        with pytest.raises(mqe2e.SuiteError):  # a channel body, not a group envelope
            mqe2e.wire.parse_envelope(payloads[0])
    finally:
        if sub.poll() is None:
            sub.kill()
        stop(c)
        sniff.disconnect()
        sniff.loop_stop()
