"""Bound MQTT v5 properties and retain flag (docs/PROTOCOL.md 2.5.1) through
the Python binding, over a real Mosquitto, against the C synchronous front
(``mqe2e_v5_peer``, python/tests/v5_peer.c) and a raw paho-mqtt v5 client that
re-publishes captured envelopes with changed properties. Nothing is mocked.
"""
import os
import queue
import subprocess
import threading

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

import mqe2e
from conftest import wait_for

PASS = "python v5 pass"
RULE = "sensors/#=group:sensors;bind=content-type,user:site,retain"
TOPIC = "sensors/room-1/temp"


@pytest.fixture
def keys(cli_path, tmp_path):
    """Two keystores sharing group `sensors` (C `py`/`c`), made with the CLI."""
    env = dict(os.environ, MQE2E_PASSPHRASE=PASS, MQE2E_EXPORT_PASSPHRASE="group pass")
    d = str(tmp_path)
    ks = {n: os.path.join(d, f"{n}.ks") for n in ("py", "c", "py2")}
    for cmd in (["keygen", "-K", ks["c"], "--id", "c-peer"],
                ["keygen", "-K", ks["py"], "--id", "py-peer"],
                ["keygen", "-K", ks["py2"], "--id", "py-peer-2"],
                ["group", "create", "-K", ks["c"], "--group", "sensors", "--topic", "sensors/#",
                 "--out", os.path.join(d, "g.grp")],
                ["group", "import", "-K", ks["py"], os.path.join(d, "g.grp")],
                ["group", "import", "-K", ks["py2"], os.path.join(d, "g.grp")]):
        subprocess.run([cli_path, *cmd], env=env, check=True, capture_output=True)
    os.environ["MQE2E_PASSPHRASE"] = PASS
    return ks


@pytest.fixture
def peer(build_dir):
    exe = os.path.join(build_dir, "tests", "mqe2e_v5_peer")
    assert os.access(exe, os.X_OK), f"build {exe} first"
    return exe


def props(ct=None, users=(), pf=None):
    p = Properties(PacketTypes.PUBLISH)
    if ct is not None:
        p.ContentType = ct
    if pf is not None:
        p.PayloadFormatIndicator = pf
    for k, v in users:
        p.UserProperty = (k, v)
    return p


class Inbox:
    def __init__(self):
        self.messages: "queue.Queue" = queue.Queue()
        self.drops: "queue.Queue" = queue.Queue()
        self.subscribed = threading.Event()


def py_client(ks, port, cid, inbox=None, rule=RULE, protocol=paho.MQTTv5):
    sub_filter = rule.split("=", 1)[0] if rule else "sensors/#"
    c = mqe2e.Client(client_id=cid, protocol=protocol)
    c.keystore_set(ks, PASS, policy=[rule] if rule else None)
    if inbox is not None:
        c.on_message = lambda cl, u, m: inbox.messages.put(
            (m.topic, m.payload, bool(m.retain), getattr(m, "properties", None)))
        c.on_drop = lambda cl, u, t, reason: inbox.drops.put((t, reason))
        c.on_subscribe = lambda *a: inbox.subscribed.set()
        if protocol == paho.MQTTv5:
            opts = SubscribeOptions(qos=1, retainAsPublished=True)
            c.on_connect = lambda cl, u, f, rc, p=None: cl.subscribe(sub_filter, options=opts)
        else:
            c.on_connect = lambda cl, u, f, rc: cl.subscribe(sub_filter, 1)
    c.connect("127.0.0.1", port)
    c.loop_start()
    if inbox is not None:
        assert inbox.subscribed.wait(20), "no SUBACK"
    return c


def stop(c):
    c.disconnect()
    c.loop_stop()
    c.keystore_close()


def user_props(p):
    return list(getattr(p, "UserProperty", None) or [])


class CSub:
    """mqe2e_v5_peer sub: the C front receiving; its lines, parsed."""

    def __init__(self, peer, ks, port, count, rule=RULE):
        self.p = subprocess.Popen([peer, "sub", ks, str(port), "sensors/#", rule, str(count), "30"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.p.stdout.readline().strip() == "ready", self.p.stderr.read()
        self.msgs, self.drops = [], []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.p.stdout:
            f = line.split()
            if f[0] == "msg":
                pl = b"" if f[3] == "-" else bytes.fromhex(f[3])
                pr = []
                for item in f[5:]:
                    pid, name, value = item.split(":")
                    pr.append((int(pid), None if name == "-" else bytes.fromhex(name),
                               b"" if value == "-" else bytes.fromhex(value)))
                self.msgs.append((f[1], pl, int(f[2]), pr))
            elif f[0] == "drop":
                self.drops.append((f[1], int(f[2])))

    def result(self, stop=False):
        if stop:
            self.p.terminate()
        self.p.wait(60)
        self.reader.join(10)
        return self.p.returncode, self.msgs, self.drops


def c_pub(peer, ks, port, text, retain=0, *prop_args, rule=RULE):
    p = subprocess.run([peer, "pub", ks, str(port), TOPIC, rule, text, str(retain), *prop_args],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


def test_python_publisher_c_subscriber_properties_intact(broker, keys, peer):
    sub = CSub(peer, keys["c"], broker.port, 1)
    c = py_client(keys["py"], broker.port, "py-pub")
    try:
        info = c.publish(TOPIC, b"21.5", 1, False,
                         props(ct="text/plain", users=[("site", "b"), ("site", "c"),
                                                       ("trace", "x")]))
        info.wait_for_publish(10)
        rc, msgs, drops = sub.result()
    finally:
        stop(c)
    # Before the binding passed properties to the core, the C side, which
    # binds them, refused every message as `auth`.
    assert drops == [] and rc == 0, (rc, msgs, drops)
    assert len(msgs) == 1
    topic, payload, retained, pr = msgs[0]
    assert (topic, payload, retained) == (TOPIC, b"21.5", 0)
    assert (0x03, None, b"text/plain") in pr
    assert [v for i, n, v in pr if i == 0x26 and n == b"site"] == [b"b", b"c"]


def test_c_publisher_python_subscriber_properties_intact(broker, keys, peer):
    inbox = Inbox()
    c = py_client(keys["py"], broker.port, "py-sub", inbox)
    try:
        c_pub(peer, keys["c"], broker.port, "hello from C", 0, "ct=application/json",
              "u:site=north", "u:site=east", "u:trace=1", "pf=1")
        topic, payload, retained, p = inbox.messages.get(timeout=30)
    finally:
        stop(c)
    assert inbox.drops.empty(), list(inbox.drops.queue)
    assert (topic, payload, retained) == (TOPIC, b"hello from C", False)
    assert p.ContentType == "application/json"
    assert p.PayloadFormatIndicator == 1
    assert [v for k, v in user_props(p) if k == "site"] == ["north", "east"]


def test_rules_that_differ_never_deliver(broker, keys, peer):
    # The C side binds, the Python publisher does not: every message fails
    # (`auth`, code -3), nothing is delivered unchecked.
    sub = CSub(peer, keys["c"], broker.port, 1)
    c = py_client(keys["py"], broker.port, "py-nobind", rule="sensors/#=group:sensors")
    try:
        c.publish(TOPIC, b"x", 1, False, props(ct="text/plain", users=[("site", "b")])) \
            .wait_for_publish(10)
        wait_for(lambda: sub.drops, 20, "the C subscriber's drop")
        rc, msgs, drops = sub.result(stop=True)
    finally:
        stop(c)
    assert msgs == []
    assert drops == [(TOPIC, mqe2e.errors.CODES["auth"])]


def capture_envelope(port, publisher_ks):
    """A raw v5 subscriber's copy of one sealed message (payload, properties)."""
    got: "queue.Queue" = queue.Queue()
    sub_ok = threading.Event()
    raw = paho.Client(client_id="raw-capture", protocol=paho.MQTTv5)
    raw.on_message = lambda cl, u, m: got.put((m.payload, m.properties))
    raw.on_subscribe = lambda *a: sub_ok.set()
    raw.connect("127.0.0.1", port)
    raw.loop_start()
    raw.subscribe("sensors/#", 1)
    assert sub_ok.wait(20)
    c = py_client(publisher_ks, port, "py-sealer")
    try:
        c.publish(TOPIC, b"genuine", 1, False,
                  props(ct="text/plain", users=[("site", "b"), ("trace", "1")])) \
            .wait_for_publish(10)
        env, p = got.get(timeout=20)
    finally:
        stop(c)
    return raw, env, p


def test_tampered_bound_properties_and_retain_dropped(broker, keys):
    raw, env, captured = capture_envelope(broker.port, keys["py2"])
    assert user_props(captured) == [("site", "b"), ("trace", "1")]
    # The subscriber connects only now: it never saw the genuine message, so
    # the drops below are the properties', not the replay window's.
    inbox = Inbox()
    c = py_client(keys["py"], broker.port, "py-victim", inbox)
    tampered = [
        ("site changed", props(ct="text/plain", users=[("site", "x"), ("trace", "1")]), False),
        ("site removed", props(ct="text/plain", users=[("trace", "1")]), False),
        ("site added twice", props(ct="text/plain", users=[("site", "b"), ("site", "b")]), False),
        ("content type changed", props(ct="text/html", users=[("site", "b")]), False),
        ("content type removed", props(users=[("site", "b")]), False),
        ("retain forged", props(ct="text/plain", users=[("site", "b")]), True),
    ]
    try:
        for what, p, retain in tampered:
            raw.publish(TOPIC, env, 1, retain, p).wait_for_publish(10)
            t, reason = inbox.drops.get(timeout=20)
            assert (t, reason) == (TOPIC, "auth"), what
            assert inbox.messages.empty(), f"{what}: delivered"
        # The unbound user property may change; with the bound ones as sealed
        # the envelope opens (so the drops above were the properties').
        raw.publish(TOPIC, b"" + env, 1, False,
                    props(ct="text/plain", users=[("trace", "changed"), ("site", "b")])) \
            .wait_for_publish(10)
        topic, payload, retained, p = inbox.messages.get(timeout=20)
        assert (topic, payload, retained) == (TOPIC, b"genuine", False)
        assert [v for k, v in user_props(p) if k == "site"] == ["b"]
        counters = c.counters()
    finally:
        stop(c)
        raw.loop_stop()
        raw.disconnect()
    assert counters["dropped"].get("auth") == len(tampered)
    assert counters["opened"] == 1


def test_v311_unchanged(broker, keys, peer):
    # MQTT 3.1.1 clients carry no properties: with the same rule they seal
    # and open as before (every bound property absent, retain as sent).
    inbox = Inbox()
    sub = py_client(keys["py"], broker.port, "py-v3-sub", inbox, protocol=paho.MQTTv311)
    c = py_client(keys["py2"], broker.port, "py-v3-pub", protocol=paho.MQTTv311)
    try:
        c.publish(TOPIC, b"v3", 1).wait_for_publish(10)
        topic, payload, retained, _ = inbox.messages.get(timeout=20)
    finally:
        stop(c)
        stop(sub)
    assert (topic, payload, retained) == (TOPIC, b"v3", False)
    assert inbox.drops.empty()


HRULE = "health/#=group:health;bind=content-type,user:site"


def test_held_message_keeps_its_properties(authority, tmp_path):
    """A v5 backend that missed a rotation gets a (retained) message of the
    new epoch while the authority cannot answer its HELLO yet (stopped): the
    message is held, released once the HELLO reply brings the key, and
    delivered with the properties it arrived with, checked by the rule."""
    import signal

    port = authority.broker.port
    authority.op("group", "create", "--group", "health", "--topic", "health/#")
    authority.run("enroll", "-K", "hr-1.ks", "--ticket",
                  authority.ticket("hr-1", "--group", "health", "--grant", "health/hr-1/#:pub"),
                  "-h", "127.0.0.1", "-p", str(port))
    dev_ks, back_ks = str(tmp_path / "hr-2.ks"), str(tmp_path / "backend.ks")
    mqe2e.enroll(dev_ks, ticket=authority.ticket("hr-2", "--group", "health", "--grant",
                                                  "health/hr-2/#:pub"),
                 host="127.0.0.1", port=port, passphrase=PASS)
    mqe2e.enroll(back_ks, ticket=authority.ticket("backend", "--role", "service", "--group",
                                                   "health", "--grant", "health/#:sub"),
                 host="127.0.0.1", port=port, passphrase=PASS)
    with mqe2e.Keystore.open(back_ks, PASS) as k:
        (g,) = k.groups()
        old_epoch = g.current_epoch

    authority.op("revoke", "--id", "hr-1")  # rotates health; the backend is away

    d = mqe2e.Client(client_id="hr-2", protocol=paho.MQTTv5)
    d.keystore_set(dev_ks, PASS, policy=[HRULE])
    d.connect("127.0.0.1", port)
    d.loop_start()
    try:
        wait_for(lambda: d.session.fresh(), 20, "the device's HELLO reply")
        d.publish("health/hr-2/bpm", b"72", 1, True,
                  props(ct="text/plain", users=[("site", "ward-9")])).wait_for_publish(10)
    finally:
        stop(d)

    inbox = Inbox()
    os.kill(authority.proc.pid, signal.SIGSTOP)
    try:
        c = py_client(back_ks, port, "backend", inbox, rule=HRULE)
        try:
            wait_for(lambda: c.counters()["control"]["held"] >= 1, 20, "the message held")
            assert inbox.messages.empty(), "delivered before its key was known"
            os.kill(authority.proc.pid, signal.SIGCONT)
            topic, payload, retained, p = inbox.messages.get(timeout=30)
            counters = c.counters()
        finally:
            stop(c)
    finally:
        os.kill(authority.proc.pid, signal.SIGCONT)
    assert inbox.drops.empty(), list(inbox.drops.queue)
    assert (topic, payload, retained) == ("health/hr-2/bpm", b"72", True)
    assert p.ContentType == "text/plain"
    assert user_props(p) == [("site", "ward-9")]
    assert counters["control"]["released"] >= 1
    with mqe2e.Keystore.open(back_ks, PASS) as k:
        (g,) = k.groups()
        assert g.current_epoch > old_epoch
