#!/usr/bin/env python3
"""Keystream-reuse check over a raw broker capture (docs/PROTOCOL.md 2.4).

Reads "topic hexpayload" lines (mosquitto_sub -v -F '%t %x') and the known
plaintexts, parses every group/signed envelope by the rules of PROTOCOL.md
2.1 (written from the spec, not from the library), and compares every pair of
envelopes of equal body length:

  - header pairs:    same (epoch, sender, seq) -- what 0.1 reused;
  - nonce pairs:     same (epoch, sender, instance, seq);
  - keystream reuse: C1 xor C2 == P1 xor P2 (ChaCha20 keystream repeated).

Plaintexts: the k-th envelope captured on topic T (k from 1) carried the
line "T|k" padded with '.' to --width bytes (how test_nonce_unique.sh
publishes). Only topics under --prefix are read.

Prints one summary line ("envelopes=N pairs=P header_pairs=H nonce_pairs=K
reuse=R") and exits 0; the caller asserts on the figures.
"""
import argparse
import collections
import itertools
import sys


def varint(b, i):
    v = 0
    shift = 0
    while True:
        if i >= len(b) or shift > 63:
            raise ValueError("truncated varint")
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        if not c & 0x80:
            return v, i
        shift += 7


def parse(b):
    """Header fields and body of one envelope (group or signed mode)."""
    f = {"epoch": 0, "sender": 0, "seq": 0, "instance": None, "body": None}
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, i = varint(b, i)
            name = {4: "epoch", 5: "sender", 6: "seq"}.get(field)
            if name is None:
                raise ValueError("unexpected varint field %d" % field)
            f[name] = v
        elif wire == 2:
            n, i = varint(b, i)
            v = b[i:i + n]
            if len(v) != n:
                raise ValueError("truncated field")
            i += n
            if field in (1, 3):
                f["body"] = v
            elif field == 8:
                f["instance"] = v.hex()
            elif field != 7:
                raise ValueError("unexpected field %d" % field)
        else:
            raise ValueError("unexpected wire type %d" % wire)
    if f["body"] is None or len(f["body"]) < 16:
        raise ValueError("no body")
    return f


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("capture")
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--width", type=int, default=48)
    a = ap.parse_args()

    seen = collections.Counter()
    envs = []
    with open(a.capture, encoding="ascii", errors="replace") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) != 2 or not parts[0].startswith(a.prefix):
                continue
            topic, payload = parts
            seen[topic] += 1
            pt = ("%s|%d" % (topic, seen[topic])).ljust(a.width, ".").encode()
            env = parse(bytes.fromhex(payload))
            ct = env["body"][:-16]
            if len(ct) != len(pt):
                raise SystemExit("%s #%d: ciphertext of %d bytes, plaintext of %d"
                                 % (topic, seen[topic], len(ct), len(pt)))
            envs.append((env, ct, pt))

    pairs = header_pairs = nonce_pairs = reuse = 0
    for (e1, c1, p1), (e2, c2, p2) in itertools.combinations(envs, 2):
        if len(c1) != len(c2):
            continue
        pairs += 1
        same_header = (e1["epoch"], e1["sender"], e1["seq"]) == (e2["epoch"], e2["sender"], e2["seq"])
        header_pairs += same_header
        nonce_pairs += same_header and e1["instance"] == e2["instance"]
        if p1 != p2 and bytes(x ^ y for x, y in zip(c1, c2)) == bytes(x ^ y for x, y in zip(p1, p2)):
            reuse += 1
    print("envelopes=%d pairs=%d header_pairs=%d nonce_pairs=%d reuse=%d"
          % (len(envs), pairs, header_pairs, nonce_pairs, reuse))
    return 0


if __name__ == "__main__":
    sys.exit(main())
