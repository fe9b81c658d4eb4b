#!/usr/bin/env python3
"""Python subscriber throughput: mqe2e.Client against plain paho-mqtt, same run.

What is measured is the subscriber alone. For each repetition and side
(plain, encrypted; the order alternates), a subscriber with a persistent
session (clean_session=False, QoS 1) subscribes and goes away; a raw paho
publisher then leaves N 256-byte messages queued at a private Mosquitto —
random bytes for the plain side, envelopes sealed beforehand by a Python
session for the encrypted side — and the subscriber, in its own process,
reconnects and drains them. Its rate is (received - 1) / (last - first
receive). The figure to read is encrypted / plain, the median of the
per-pair ratios (issue 14's target: >= 0.90), with min-max. Each subscriber
also reports its CPU time per message (every thread, first to last
message): plain / encrypted of those is the "CPU ratio", what the rates
would be on an idle machine, much less moved by the load of a shared one.
A third side, "lean", runs mqe2e.Client's own PUBLISH handler and
on_message dispatch with the session taken out (no decryption, no core
call; plain payloads): lean / plain is the handler's own speed-up over
paho's, and encrypted / lean the cost of what the session adds (AEAD, the
rest of the C core, cffi). Then, in this process and without the broker, the CPU per message of
paho's receive hook (_handle_on_message, plain vs mqe2e.Client: the
encryption's overhead alone), with hot caches and again with a socket round
trip and 512 KiB of memory traffic before each message (cold caches, as in
a real drain; the in-between work's own cost subtracted).

Usage: bench_python.py [--build DIR] [--messages N] [--reps R] [--size B] [--json FILE] [--smoke]
Needs: the build tree (libmqe2e, the mqe2e command), mosquitto, python3-paho-mqtt, python3-cffi.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PASS = "bench pass"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("mosquitto did not start")


def lean_client_class():
    """mqe2e.Client with the session taken out: its PUBLISH handler and
    on_message dispatch as they are, no core call (the "lean" side)."""
    import paho.mqtt.client as paho

    import mqe2e

    class Lean(mqe2e.Client):
        _handle_on_message = mqe2e.Client._mqe2e_dispatch
        loop_misc = paho.Client.loop_misc

    return Lean


def subscriber(args) -> None:
    """Child process: drain the queued messages, print the rate as JSON."""
    sys.path.insert(0, os.path.join(REPO, "python"))
    import threading

    import paho.mqtt.client as paho

    if args.kind == "encrypted":
        import mqe2e

        c = mqe2e.Client(client_id=args.cid, clean_session=False)
        c.keystore_set(args.keystore, PASS)
    elif args.kind == "lean":
        c = lean_client_class()(client_id=args.cid, clean_session=False)
    else:
        c = paho.Client(client_id=args.cid, clean_session=False)
    times = []
    cpu = []
    done = threading.Event()
    bad = [0]

    def on_message(cl, u, m):
        times.append(time.perf_counter())
        if len(m.payload) != args.size:
            bad[0] += 1
        if len(times) == 1 or len(times) >= args.messages:
            # The process's CPU time (every thread) at the first and the last
            # message: what the drain cost, whatever else the machine ran.
            cpu.append(time.process_time())
        if len(times) >= args.messages:
            done.set()

    c.on_message = on_message
    if args.kind == "encrypted":
        c.on_drop = lambda *a: bad.__setitem__(0, bad[0] + 1)
    ready = threading.Event()
    c.on_subscribe = lambda *a: ready.set()
    c.connect("127.0.0.1", args.port)
    if args.prepare:
        c.subscribe(args.topic, 1)
        c.loop_start()
        ready.wait(20)
        c.disconnect()
        c.loop_stop()
    else:
        c.loop_start()
        done.wait(args.timeout)
        c.disconnect()
        c.loop_stop()
        n = len(times)
        rate = (n - 1) / (times[-1] - times[0]) if n > 1 and times[-1] > times[0] else 0.0
        cpu_us = (cpu[-1] - cpu[0]) / (n - 1) * 1e6 if n > 1 and len(cpu) > 1 else 0.0
        print(json.dumps({"received": n, "rate": rate, "cpu_us": cpu_us, "bad": bad[0]}))
    if args.kind == "encrypted":
        c.keystore_close()


class Polluter:
    """What a subscriber does between two messages besides dispatching them,
    roughly: a socket round trip (two system calls) and 512 KiB of memory
    touched, so the next message meets cold caches as it does in a real
    drain. Its own cost is measured separately and subtracted."""

    def __init__(self):
        import socket

        self.a, self.b = socket.socketpair()
        self.junk = bytearray(os.urandom(512 * 1024))

    def __call__(self):
        self.a.send(b"x" * 300)
        self.b.recv(4096)
        bytes(self.junk)

    def close(self):
        self.a.close()
        self.b.close()


def dispatch_cpu(client, topic: str, payloads, between=None) -> float:
    """CPU seconds per message of paho's receive hook (no broker, no socket),
    with ``between()`` run before each message when given."""
    import paho.mqtt.client as paho

    got = [0]

    def on_message(cl, u, m):
        got[0] += 1

    client.on_message = on_message
    msgs = []
    for p in payloads:
        m = paho.MQTTMessage(1, topic.encode())
        m.payload, m.qos = p, 1
        msgs.append(m)
    h = client._handle_on_message
    if between is None:
        t0 = time.process_time()
        for m in msgs:
            h(m)
        t = time.process_time() - t0
    else:
        t0 = time.process_time()
        for m in msgs:
            between()
            h(m)
        t = time.process_time() - t0
        t0 = time.process_time()
        for m in msgs:
            between()
        t -= time.process_time() - t0
    if got[0] != len(msgs):
        raise SystemExit(f"in-process: {got[0]} of {len(msgs)} delivered")
    return t / len(msgs)


def inprocess(session, topic: str, sub_ks: str, n: int, size: int) -> dict:
    """What each side costs per message in Python + C, without the broker:
    the best of 3 rounds of n messages through _handle_on_message."""
    import paho.mqtt.client as paho

    import mqe2e

    plain = paho.Client(client_id="bench-inproc-plain")
    enc = mqe2e.Client(client_id="bench-inproc")
    enc.keystore_set(sub_ks, PASS)
    lean = lean_client_class()(client_id="bench-inproc-lean")
    pol = Polluter()
    try:
        pl = min(dispatch_cpu(plain, topic, [os.urandom(size) for _ in range(n)])
                 for _ in range(3))
        en = min(dispatch_cpu(enc, topic,
                              [session.publish(topic, os.urandom(size), 1) for _ in range(n)])
                 for _ in range(3))
        ln = min(dispatch_cpu(lean, topic, [os.urandom(size) for _ in range(n)])
                 for _ in range(3))
        # The same with cold caches (a quarter of the messages: slower).
        nc = max(n // 4, 1)
        plc = min(dispatch_cpu(plain, topic, [os.urandom(size) for _ in range(nc)], pol)
                  for _ in range(3))
        enc_c = min(dispatch_cpu(enc, topic,
                                 [session.publish(topic, os.urandom(size), 1) for _ in range(nc)],
                                 pol)
                    for _ in range(3))
    finally:
        enc.keystore_close()
        pol.close()
    return {"plain_dispatch_us": round(pl * 1e6, 2), "lean_dispatch_us": round(ln * 1e6, 2),
            "encrypted_dispatch_us": round(en * 1e6, 2),
            "overhead_us": round((en - pl) * 1e6, 2),
            "cold_plain_dispatch_us": round(plc * 1e6, 2),
            "cold_encrypted_dispatch_us": round(enc_c * 1e6, 2),
            "cold_overhead_us": round((enc_c - plc) * 1e6, 2)}


def run_sub(common, kind, port, n, size, keystore, prepare):
    cmd = [sys.executable, os.path.abspath(__file__), "--role", "sub", "--kind", kind, "--port",
           str(port), "--messages", str(n), "--size", str(size), "--cid", f"bench-{kind}",
           "--topic", "bench/#", "--keystore", keystore]
    if prepare:
        cmd.append("--prepare")
    p = subprocess.run(cmd, env=common, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise SystemExit(f"subscriber failed: {p.stderr}")
    return None if prepare else json.loads(p.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--role", default="main")
    ap.add_argument("--kind")
    ap.add_argument("--port", type=int)
    ap.add_argument("--cid")
    ap.add_argument("--topic")
    ap.add_argument("--keystore")
    ap.add_argument("--prepare", action="store_true")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--build", default=os.environ.get("MQE2E_BUILD_DIR", os.path.join(REPO, "build")))
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--json")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.role == "sub":
        subscriber(args)
        return 0
    if args.smoke:
        args.messages, args.reps = 500, 1
    build = os.path.abspath(args.build)
    cli = os.path.join(build, "tools", "mqe2e", "mqe2e")
    common = dict(os.environ, MQE2E_BUILD_DIR=build, MQE2E_PASSPHRASE=PASS,
                  MQE2E_EXPORT_PASSPHRASE="bench group pass", PYTHONDONTWRITEBYTECODE="1")
    os.environ.update(common)
    sys.path.insert(0, os.path.join(REPO, "python"))
    import paho.mqtt.client as paho

    import mqe2e

    work = tempfile.mkdtemp(prefix="mqe2e-bench-python.")
    port = free_port()
    conf = os.path.join(work, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                "max_queued_messages 0\nmax_inflight_messages 0\nlog_dest none\n")
    broker = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        pub_ks, sub_ks = os.path.join(work, "pub.ks"), os.path.join(work, "sub.ks")
        for cmd in (["keygen", "-K", pub_ks, "--id", "bench-pub"],
                    ["keygen", "-K", sub_ks, "--id", "bench-sub"],
                    ["group", "create", "-K", pub_ks, "--group", "bench", "--topic", "bench/#",
                     "--out", os.path.join(work, "g.grp")],
                    ["group", "import", "-K", sub_ks, os.path.join(work, "g.grp")]):
            subprocess.run([cli, *cmd], env=common, check=True, capture_output=True)
        topic = "bench/device-1/telemetry"

        ks = mqe2e.Keystore.open(pub_ks, PASS)
        s = mqe2e.Session(ks)
        ratios, cpu_ratios, rows = [], [], []
        lean_ratios, lean_cpu_ratios = [], []
        kinds = ["plain", "encrypted", "lean"]
        for rep in range(args.reps):
            # Fresh envelopes every repetition: the subscriber's replay window
            # remembers the previous ones.
            envs = [s.publish(topic, os.urandom(args.size), 1) for _ in range(args.messages)]
            plain = [os.urandom(args.size) for _ in range(args.messages)]
            res = {}
            # The order rotates: each side goes first, second, third in turn.
            for kind in kinds[rep % 3:] + kinds[:rep % 3]:
                run_sub(common, kind, port, args.messages, args.size, sub_ks, True)
                p = paho.Client(client_id="bench-publisher")
                p.max_inflight_messages_set(1000)
                p.max_queued_messages_set(0)
                p.connect("127.0.0.1", port)
                p.loop_start()
                infos = [p.publish(topic, m, 1) for m in (envs if kind == "encrypted" else plain)]
                for i in infos:
                    i.wait_for_publish(60)
                p.disconnect()
                p.loop_stop()
                res[kind] = run_sub(common, kind, port, args.messages, args.size, sub_ks, False)
                if res[kind]["received"] != args.messages or res[kind]["bad"]:
                    raise SystemExit(f"{kind}: received {res[kind]} of {args.messages}")
            ratio = res["encrypted"]["rate"] / res["plain"]["rate"]
            ratios.append(ratio)
            # The same comparison in CPU time per message of the subscriber
            # process: what the rates would be on an idle machine, much less
            # moved by other work on a shared one.
            cpu_ratio = res["plain"]["cpu_us"] / res["encrypted"]["cpu_us"]
            cpu_ratios.append(cpu_ratio)
            lean_ratio = res["lean"]["rate"] / res["plain"]["rate"]
            lean_cpu_ratio = res["plain"]["cpu_us"] / res["lean"]["cpu_us"]
            lean_ratios.append(lean_ratio)
            lean_cpu_ratios.append(lean_cpu_ratio)
            rows.append({"rep": rep, "plain_msgs_per_s": round(res["plain"]["rate"]),
                         "encrypted_msgs_per_s": round(res["encrypted"]["rate"]),
                         "ratio": round(ratio, 3),
                         "plain_cpu_us": round(res["plain"]["cpu_us"], 2),
                         "encrypted_cpu_us": round(res["encrypted"]["cpu_us"], 2),
                         "cpu_ratio": round(cpu_ratio, 3),
                         "lean_msgs_per_s": round(res["lean"]["rate"]),
                         "lean_cpu_us": round(res["lean"]["cpu_us"], 2),
                         "lean_ratio": round(lean_ratio, 3),
                         "lean_cpu_ratio": round(lean_cpu_ratio, 3)})
            print(f"rep {rep}: plain {res['plain']['rate']:.0f} msg/s, "
                  f"mqe2e.Client {res['encrypted']['rate']:.0f} msg/s, ratio {ratio:.3f}; "
                  f"CPU per message {res['plain']['cpu_us']:.2f} vs "
                  f"{res['encrypted']['cpu_us']:.2f} us, CPU ratio {cpu_ratio:.3f}; "
                  f"lean (no decryption) {res['lean']['rate']:.0f} msg/s, "
                  f"{res['lean']['cpu_us']:.2f} us, ratio {lean_ratio:.3f}, "
                  f"CPU ratio {lean_cpu_ratio:.3f}",
                  flush=True)
        cpu = inprocess(s, topic, sub_ks, min(args.messages, 20000), args.size)
        print(f"in-process per message: paho dispatch {cpu['plain_dispatch_us']} us, "
              f"lean dispatch (no decryption) {cpu['lean_dispatch_us']} us, "
              f"mqe2e.Client {cpu['encrypted_dispatch_us']} us, "
              f"overhead {cpu['overhead_us']} us; with cold caches "
              f"{cpu['cold_plain_dispatch_us']} us, {cpu['cold_encrypted_dispatch_us']} us, "
              f"overhead {cpu['cold_overhead_us']} us", flush=True)
        s.close()
        ks.close()
        summary = {"inprocess": cpu, "bench": "python_subscriber", "size": args.size, "messages": args.messages,
                   "reps": args.reps, "median_ratio": round(statistics.median(ratios), 3),
                   "min_ratio": round(min(ratios), 3), "max_ratio": round(max(ratios), 3),
                   "median_cpu_ratio": round(statistics.median(cpu_ratios), 3),
                   "min_cpu_ratio": round(min(cpu_ratios), 3),
                   "max_cpu_ratio": round(max(cpu_ratios), 3),
                   "median_lean_ratio": round(statistics.median(lean_ratios), 3),
                   "median_lean_cpu_ratio": round(statistics.median(lean_cpu_ratios), 3),
                   "runs": rows, "python": sys.version.split()[0],
                   "paho_mqtt": paho.__version__ if hasattr(paho, "__version__") else "1.6"}
        print(f"ratio median {summary['median_ratio']} ({summary['min_ratio']}-"
              f"{summary['max_ratio']}); CPU ratio median {summary['median_cpu_ratio']} "
              f"({summary['min_cpu_ratio']}-{summary['max_cpu_ratio']}); lean (no decryption) "
              f"ratio median {summary['median_lean_ratio']}, CPU ratio median "
              f"{summary['median_lean_cpu_ratio']}", flush=True)
        print(json.dumps(summary))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(summary, f, indent=1)
    finally:
        broker.terminate()
        broker.wait(10)
        subprocess.run(["rm", "-rf", work])
    return 0


if __name__ == "__main__":
    sys.exit(main())
