"""``python -m mqe2e``: subscribe/decrypt, status and enrollment for scripts.

    python -m mqe2e sub -K KEYSTORE -t FILTER [-t FILTER]... [-h HOST] [-p PORT]
                        [-u USER --password-file F] [--cafile F]
                        [-C COUNT] [-W SECONDS] [-v] [-q QOS]
    python -m mqe2e decrypt -K KEYSTORE -t TOPIC  < payload   (one envelope on stdin)
    python -m mqe2e status -K KEYSTORE [--json]
    python -m mqe2e enroll -K KEYSTORE (--ticket-file F | $MQE2E_TICKET) [-h HOST] [-p PORT]

The keystore passphrase comes from --passphrase-file, --key-file or
MQE2E_PASSPHRASE, as for the ``mqe2e`` command. Dropped messages are reported
on stderr as ``mqe2e: dropped message on TOPIC: REASON`` and never printed.
Exit codes: 0 ok, 1 usage, 2 key or input error, 3 broker, 4 -W timeout.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import List, Optional

from .errors import Mqe2eError


def _ks_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-K", "--keystore", required=True)
    p.add_argument("--passphrase-file")
    p.add_argument("--key-file")


def _broker_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-h", "--host", default="localhost")
    p.add_argument("-p", "--port", type=int, default=1883)
    p.add_argument("-u", "--username")
    p.add_argument("--password-file")
    p.add_argument("--cafile", help="TLS: CA certificate file (as mosquitto_sub)")
    p.add_argument("--help", action="help")


def _password(a) -> Optional[str]:
    if a.password_file is None:
        return None
    with open(a.password_file, encoding="utf-8") as f:
        return f.readline().rstrip("\r\n")


def cmd_sub(a) -> int:
    from .client import Client

    c = Client(client_id=a.id or "")
    c.keystore_set(a.keystore, passphrase_file=a.passphrase_file, key_file=a.key_file)
    if a.username:
        c.username_pw_set(a.username, _password(a))
    if a.cafile:
        c.tls_set(ca_certs=a.cafile)
    done = threading.Event()
    count = [0]
    lock = threading.Lock()

    def on_connect(cl, u, flags, rc):
        if rc != 0:
            print(f"mqe2e: broker refused the connection ({rc})", file=sys.stderr)
            done.set()
            return
        for t in a.topic:
            cl.subscribe(t, a.qos)

    def on_message(cl, u, m):
        with lock:
            if a.count and count[0] >= a.count:
                return
            out = sys.stdout.buffer
            if a.verbose:
                out.write(m.topic.encode() + b" ")
            out.write(m.payload + b"\n")
            out.flush()
            count[0] += 1
            if a.count and count[0] >= a.count:
                done.set()

    def on_drop(cl, u, topic, reason):
        print(f"mqe2e: dropped message on {topic}: {reason}", file=sys.stderr, flush=True)

    def on_subscribe(cl, u, mid, granted):
        print(f"mqe2e: subscribed to {' '.join(a.topic)}", file=sys.stderr, flush=True)

    c.on_connect, c.on_message, c.on_drop, c.on_subscribe = on_connect, on_message, on_drop, on_subscribe
    try:
        c.connect(a.host, a.port)
    except OSError as e:
        print(f"mqe2e: cannot connect to {a.host}:{a.port}: {e}", file=sys.stderr)
        c.keystore_close()
        return 3
    c.loop_start()
    try:
        finished = done.wait(a.timeout if a.timeout else None)
    except KeyboardInterrupt:
        finished = True
    c.disconnect()
    c.loop_stop()
    c.keystore_close()
    if not finished:
        return 4
    return 0 if (not a.count or count[0] >= a.count) else 3


def cmd_decrypt(a) -> int:
    from .keystore import Keystore
    from .session import Delivery, Drop, Session

    data = sys.stdin.buffer.read()
    with Keystore.open(a.keystore, passphrase_file=a.passphrase_file, key_file=a.key_file) as ks:
        s = Session(ks)
        try:
            for act in s.message_received(a.topic, data, no_hold=True):
                if isinstance(act, Delivery):
                    sys.stdout.buffer.write(act.payload)
                    sys.stdout.flush()
                    return 0
                if isinstance(act, Drop):
                    print(f"mqe2e: dropped message on {act.topic}: {act.reason}", file=sys.stderr)
                    return 2
        finally:
            s.close()
    print("mqe2e: nothing to deliver", file=sys.stderr)
    return 2


def cmd_status(a) -> int:
    from .keystore import Keystore

    with Keystore.open(a.keystore, passphrase_file=a.passphrase_file, key_file=a.key_file) as ks:
        st = ks.status()
    if a.json:
        print(json.dumps(st, indent=1))
    else:
        print(f"client id: {st['client_id']}\nsender id: {st['sender_id']}")
        print(f"authority: {st['authority']['id'] if st['authority'] else 'none (manual keys)'}")
        for g in st["groups"]:
            print(f"group {g['name']}: {g['topic_filter']} epoch {g['current_epoch']}"
                  f"{' signed' if g['signed'] else ''}")
    return 0


def cmd_enroll(a) -> int:
    from .enrollment import enroll

    r = enroll(a.keystore, ticket_file=a.ticket_file, host=a.host, port=a.port,
               passphrase_file=a.passphrase_file, key_file=a.key_file, username=a.username,
               password=_password(a), timeout=a.timeout,
               tls={"ca_certs": a.cafile} if a.cafile else None)
    print(f"enrolled {r.client_id}: credential serial {r.credential_serial}, "
          f"groups: {', '.join(r.groups) or 'none'}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mqe2e", description=__doc__.split("\n\n")[0])
    sp = ap.add_subparsers(dest="cmd", required=True)
    p = sp.add_parser("sub", add_help=False, help="print decrypted messages")
    _ks_args(p)
    _broker_args(p)
    p.add_argument("-t", "--topic", action="append", required=True)
    p.add_argument("-q", "--qos", type=int, default=0, choices=(0, 1, 2))
    p.add_argument("-C", "--count", type=int, default=0)
    p.add_argument("-W", "--timeout", type=float, default=0)
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("-i", "--id")
    p.set_defaults(fn=cmd_sub)
    p = sp.add_parser("decrypt", help="open one envelope read from stdin")
    _ks_args(p)
    p.add_argument("-t", "--topic", required=True)
    p.set_defaults(fn=cmd_decrypt)
    p = sp.add_parser("status", help="keystore summary")
    _ks_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_status)
    p = sp.add_parser("enroll", add_help=False, help="enroll with a ticket")
    _ks_args(p)
    _broker_args(p)
    p.add_argument("--ticket-file")
    p.add_argument("-W", "--timeout", type=float, default=30)
    p.set_defaults(fn=cmd_enroll)
    try:
        a = ap.parse_args(argv)
    except SystemExit as e:  # argparse: --help is 0, a usage error 2 -> 1
        return 0 if e.code in (0, None) else 1
    try:
        return a.fn(a)
    except Mqe2eError as e:
        print(f"mqe2e: {e}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as e:
        print(f"mqe2e: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
