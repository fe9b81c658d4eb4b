"""mqe2e.Client and Session in-process (no broker): the promises of
docs/PYTHON.md about delivery, commit, replay, wills and bad input."""
import os
import time

import paho.mqtt.client as paho
import pytest

import mqe2e
from mqe2e._lib import lib

SECRET = bytes(range(32))


def keystore(tmp_path, name):
    path = str(tmp_path / name)
    ks = mqe2e.Keystore.create(path, name, "pw")
    assert lib.mqe2e_keystore_group_add_epoch(ks.handle, b"g", b"t/#", 1, SECRET, int(time.time())) == 0
    ks.close()
    return path


def client(path):
    c = mqe2e.Client(client_id=os.path.basename(path))
    c.keystore_set(path, "pw")
    return c


def arrive(c, topic, payload, mid=1):
    m = paho.MQTTMessage(mid, topic.encode() if isinstance(topic, str) else topic)
    m.payload, m.qos = payload, 1
    c._handle_on_message(m)


@pytest.fixture
def pair(tmp_path):
    a, b = keystore(tmp_path, "dev"), keystore(tmp_path, "backend")
    ka = mqe2e.Keystore.open(a, "pw")
    s = mqe2e.Session(ka)
    yield s, b
    s.close()
    ka.close()


def test_commit_only_after_on_message_returned(pair):
    s, b = pair
    env = s.publish("t/1", b"hello")
    c = client(b)
    got, drops = [], []
    c.on_drop = lambda cl, u, topic, reason: drops.append(reason)

    def refuse(cl, u, m):
        raise RuntimeError("application refuses")

    c.on_message = refuse
    with pytest.raises(RuntimeError):
        arrive(c, "t/1", env)
    c.on_message = lambda cl, u, m: got.append((m.topic, m.payload, m.mid))
    arrive(c, "t/1", env, mid=7)  # not recorded: it comes again
    assert got == [("t/1", b"hello", 7)]
    arrive(c, "t/1", env)  # recorded now: a replay
    assert got == [("t/1", b"hello", 7)] and drops == ["replay"]
    c.keystore_close()


def test_receive_one_receipts_are_independent(tmp_path, pair):
    # Session.receive_one() reuses one receipt buffer while no delivery holds
    # it; a second delivery before the first is committed gets its own.
    s, b = pair
    one, two = s.publish("t/1", b"one"), s.publish("t/1", b"two")
    kb = mqe2e.Keystore.open(b, "pw")
    sb = mqe2e.Session(kb)
    try:
        p1, r1 = sb.receive_one(b"t/1", one, 1)
        p2, r2 = sb.receive_one(b"t/1", two, 1)
        assert (p1, p2) == (b"one", b"two") and r1 is not None and r2 is not None
        assert r1 != r2
        sb.release_receipt(r2)                     # refused: it may come again
        sb.commit_receipt(r1)
        assert sb.receive_one(b"t/1", two, 1)[0] == b"two"
        none, acts = sb.receive_one(b"t/1", one, 1)  # committed: a replay
        assert none is None and [type(a) for a in acts] == [mqe2e.session.Drop]
        assert acts[0].reason == "replay"
        none, acts = sb.receive_one(b"t/1", b"plaintext", 1)
        assert none is None and acts[0].reason == "decode"
    finally:
        sb.close()
        kb.close()


def test_accepted_receipt_is_committed_before_anything_else_may_deliver(pair):
    # accept() defers the commit to the session's next call that may deliver:
    # the next receive_one (same call into the core), message_received, tick,
    # commit, close. A duplicate of the accepted message is a replay on each.
    s, b = pair
    envs = [s.publish("t/1", b"m%d" % i) for i in range(4)]
    kb = mqe2e.Keystore.open(b, "pw")
    sb = mqe2e.Session(kb)
    try:
        for follow in ("receive_one", "message_received", "tick"):
            env = envs.pop()
            data, r = sb.receive_one(b"t/1", env, 1)
            assert data is not None and r is not None
            sb.accept(r, b"t/1")
            if follow == "tick":
                sb.tick(False)
            if follow == "message_received":
                acts = sb.message_received(b"t/1", env, 1)
            else:
                none, acts = sb.receive_one(b"t/1", env, 1)
                assert none is None
            assert [a.reason for a in acts] == ["replay"], follow
        assert sb.take_commit_failures() == []
        # A receipt whose message was committed in between: the deferred
        # commit fails and is reported, never lost.
        env = envs.pop()
        _, r1 = sb.receive_one(b"t/1", env, 1)
        _, r2 = sb.receive_one(b"t/1", env, 1)   # redelivered before r1 was handed back
        assert r1 is not r2
        sb.commit_receipt(r2)
        sb.accept(r1, b"t/1")
        sb.receive_one(b"t/1", b"not an envelope", 1)
        assert sb.take_commit_failures() == [(b"t/1", mqe2e.errors.CODES["replay"])]
    finally:
        sb.close()
        kb.close()


def test_replay_window_survives_keystore_close(pair):
    s, b = pair
    env = s.publish("t/1", b"once")
    c = client(b)
    got, drops = [], []
    c.on_message = lambda cl, u, m: got.append(m.payload)
    arrive(c, "t/1", env)
    c.keystore_close()
    c2 = client(b)
    c2.on_message = lambda cl, u, m: got.append(m.payload)
    c2.on_drop = lambda cl, u, topic, reason: drops.append(reason)
    arrive(c2, "t/1", env)
    assert got == [b"once"] and drops == ["replay"]
    c2.keystore_close()


def test_bad_input_is_dropped_with_its_reason(pair):
    s, b = pair
    env = s.publish("t/1", b"x")
    c = client(b)
    got, drops = [], []
    c.on_message = lambda cl, u, m: got.append(m.payload)
    c.on_drop = lambda cl, u, topic, reason: drops.append((topic, reason))
    arrive(c, "t/1", b"plaintext")
    arrive(c, "t/1", env[:-1])            # truncated: the body length runs past the end
    arrive(c, "t/1\x00/x".encode(), env)   # a NUL inside the topic
    arrive(c, "other/1", env)              # no policy for the topic
    bad = bytearray(env)
    bad[-1] ^= 1
    arrive(c, "t/1", bytes(bad))
    arrive(c, "t/2", env)                  # moved to another topic of the group
    assert got == []
    assert [r for _, r in drops] == ["decode", "decode", "decode", "no_policy", "auth", "auth"]
    counts = c.counters()
    assert counts["opened"] == 0 and counts["dropped"]["auth"] == 2
    c.keystore_close()


def test_unconfigured_client_delivers_nothing(pair):
    s, _ = pair
    c = mqe2e.Client(client_id="nobody")
    got, drops = [], []
    c.on_message = lambda cl, u, m: got.append(m.payload)
    c.on_drop = lambda cl, u, topic, reason: drops.append(reason)
    arrive(c, "t/1", s.publish("t/1", b"x"))
    arrive(c, "t/1", b"clear")
    assert got == [] and drops == ["no_policy", "no_policy"]
    with pytest.raises(ValueError):
        c.publish("t/1", b"x")


def test_publish_and_will_are_sealed_never_clear(pair, tmp_path):
    s, b = pair
    c = client(b)
    with pytest.raises(mqe2e.NoPolicyError) as e:
        c.publish("other/1", b"secret")
    assert e.value.name == "no_policy" and "no_policy" in str(e.value)
    c.will_set("t/will", b"backend gone", qos=1)
    will = c._will_payload
    assert b"backend gone" not in will
    opened = [a for a in s.message_received("t/will", will) if isinstance(a, mqe2e.Delivery)]
    assert [a.payload for a in opened] == [b"backend gone"]
    with pytest.raises(mqe2e.NoPolicyError):
        c.will_set("other/will", b"x")
    c.keystore_close()


def test_session_api_and_errors(pair):
    s, b = pair
    with pytest.raises(mqe2e.NoPolicyError):
        s.publish("nowhere", b"x")
    kb = mqe2e.Keystore.open(b, "pw")
    sb = mqe2e.Session(kb, policy=["clear/#=plaintext"])
    env = s.publish("t/1", b"hi")
    (d,) = sb.message_received("t/1", env)
    assert isinstance(d, mqe2e.Delivery) and d.payload == b"hi" and d.current
    sb.commit(d)
    with pytest.raises(mqe2e.ReplayError):
        sb.commit(d)
    (drop,) = sb.message_received("t/1", env)
    assert isinstance(drop, mqe2e.Drop) and drop.reason == "replay"
    assert isinstance(drop.error(), mqe2e.ReplayError)
    (clear,) = sb.message_received("clear/x", b"public")  # an explicit plaintext rule
    assert clear.payload == b"public"
    with pytest.raises(mqe2e.Mqe2eError):
        mqe2e.Session(kb, policy=["not a rule"])
    sb.close()
    kb.close()


def test_v5_properties_convert_both_ways_in_order():
    # paho Properties -> (id, name, value) items -> C array -> items -> paho
    # (the path of a held message's properties back to on_message).
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from mqe2e import props

    p = Properties(PacketTypes.PUBLISH)
    p.PayloadFormatIndicator = 1
    p.ContentType = "text/plain"
    p.ResponseTopic = "r/1"
    p.CorrelationData = b"\x00\x01"
    p.UserProperty = ("site", "b")
    p.UserProperty = ("site", "")
    p.UserProperty = ("", "x")
    p.MessageExpiryInterval = 60  # never bindable: not converted
    items = props.from_paho(p)
    assert items == [(0x01, None, b"\x01"), (0x03, None, b"text/plain"), (0x08, None, b"r/1"),
                     (0x09, None, b"\x00\x01"), (0x26, b"site", b"b"), (0x26, b"site", b""),
                     (0x26, b"", b"x")]
    arr, n, keep = props.to_c(items)
    assert n == len(items)
    assert props.from_c(arr, n) == items
    back = props.to_paho(items)
    assert (back.PayloadFormatIndicator, back.ContentType, back.ResponseTopic,
            back.CorrelationData) == (1, "text/plain", "r/1", b"\x00\x01")
    assert back.UserProperty == [("site", "b"), ("site", ""), ("", "x")]
    assert props.from_paho(None) == [] and props.to_c([])[1] == 0
