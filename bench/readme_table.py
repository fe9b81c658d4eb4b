#!/usr/bin/env python3
"""The README's performance table, written from ONE run of bench/run_all.sh.

Usage: bench/readme_table.py LATEST_JSON [--readme README.md]

Reads the latest.json that run_all.sh writes and prints a Markdown table:
every figure of that run next to its target (issue 15's where it set one)
and its anchor from the same run (plain Paho, raw libsodium, the per-member
push beside the key tree). With --readme, the table replaces the lines
between the markers

    <!-- bench-table:begin -->
    <!-- bench-table:end -->

in that file, so the README never mixes figures of different runs. A figure
the run did not produce is printed as "not measured in this run", never
carried over from an earlier one. Only the standard library is used.
"""
import argparse
import json
import sys

BEGIN = "<!-- bench-table:begin -->"
END = "<!-- bench-table:end -->"

# Issue 15's targets (docs/BENCHMARKS.md repeats them with the method).
RATIO_TARGET = 0.93          # encrypted / plain messages/s, QoS 0, 256 B
CPU_FACTOR = 1.5             # client CPU encrypted - plain <= 1.5 x protect+unprotect
HANDSHAKE_P50_MS = 5.0
HANDSHAKE_P99_MS = 20.0
REVOKE_MS = 2000.0
TREE_BYTES = 4096
TREE_UNWRAPS = 17
JOINER_BYTES = 1024
ENROLL_RATE = 1000


def get(d, *path):
    """d[path[0]][path[1]]..., or None when any step is missing."""
    for p in path:
        if d is None:
            return None
        if isinstance(p, int):
            d = d[p] if isinstance(d, list) and len(d) > p else None
        else:
            d = d.get(p) if isinstance(d, dict) else None
    return d


def num(v, fmt="{:,.0f}"):
    return "—" if v is None else fmt.format(v)


def verdict(ok):
    if ok is None:
        return "not measured in this run"
    return "met" if ok else "**missed**"


def all_of(*oks):
    if any(o is None for o in oks):
        return None
    return all(oks)


def tp_cell(d, front, qos, size):
    for r in get(d, "throughput", "results") or []:
        if r.get("front") == front and r.get("qos") == qos and r.get("payload_bytes") == size:
            return r
    return None


def crypto_at(d, size):
    for r in get(d, "crypto", "results") or []:
        if r.get("payload_bytes") == size:
            return r
    return None


def rows(d):
    out = []
    add = out.append
    c256 = crypto_at(d, 256)
    # The CPU target's anchor: bench_throughput's own protect + unprotect of
    # 256 B (thread CPU time, same group and topic), else bench_crypto's.
    pu_ns = get(d, "throughput", "protect_unprotect_ns", "ns")
    if pu_ns is None and c256:
        pu_ns = c256["protect_unprotect_ns"]
    pu_us = None if pu_ns is None else pu_ns / 1000.0
    procs = {"split": "separate processes", "one": "one process"}.get(
        get(d, "throughput", "procs"), "one process")

    # 1-2. the data path
    ratio_txt, ratio_ok, cpu_txt, cpu_ok = [], [], [], []
    for front in ("sync", "async"):
        c = tp_cell(d, front, 0, 256)
        if c is None:
            ratio_ok.append(None)
            cpu_ok.append(None)
            continue
        ratio_txt.append("%s %.1f %% (%.1f–%.1f %%, %d pairs)" % (
            front, 100 * c["ratio"], 100 * c["ratio_min"], 100 * c["ratio_max"],
            c["repetitions"]))
        ratio_ok.append(c["ratio"] >= RATIO_TARGET)
        cpu_txt.append("%s %.2f µs (%.2f–%.2f; plain %.2f, encrypted %.2f µs/msg)" % (
            front, c["client_cpu_diff_us"], c["client_cpu_diff_us_min"],
            c["client_cpu_diff_us_max"], c["plain_client_cpu_us"], c["encrypted_client_cpu_us"]))
        cpu_ok.append(None if pu_us is None else c["client_cpu_diff_us"] <= CPU_FACTOR * pu_us)
    add(("throughput, QoS 0, 256 B, encrypted / plain Paho (`MQTTClient` / `MQTTAsync`), "
         "median of alternating pairs, publisher and subscriber: %s" % procs,
         ">= %d %%" % round(100 * RATIO_TARGET), "; ".join(ratio_txt) or "—",
         " / ".join(verdict(o) for o in ratio_ok)))
    add(("client CPU per message, QoS 0, 256 B: encrypted − plain (publisher + subscriber), "
         "median of the pairs (min–max)",
         "<= %.1fx protect + unprotect (%s µs → %s µs)" % (
             CPU_FACTOR, num(pu_us, "{:.2f}"), num(None if pu_us is None else CPU_FACTOR * pu_us,
                                                    "{:.2f}")),
         "; ".join(cpu_txt) or "—", " / ".join(verdict(o) for o in cpu_ok)))
    other = []
    for front in ("sync", "async"):
        for qos in (0, 1):
            cells = []
            for size in (16, 256, 1024, 16384):
                if qos == 0 and size == 256:
                    continue
                c = tp_cell(d, front, qos, size)
                if c is not None:
                    cells.append("%s %.0f %%" % (
                        "16 KiB" if size == 16384 else "1 KiB" if size == 1024 else "%d B" % size,
                        100 * c["ratio"]))
            if cells:
                other.append("%s QoS %d: %s" % (front, qos, ", ".join(cells)))
    add(("throughput, the other cells, encrypted / plain", "—", "; ".join(other) or "—", "—"))
    lost = [r for r in get(d, "throughput", "results") or []
            if r.get("qos") == 1 and (r.get("plain_loss", 0) > 0 or r.get("encrypted_loss", 0) > 0)]
    add(("messages lost at QoS 1 (every throughput run)", "0",
         "none" if not lost else "%d cells lost messages" % len(lost),
         verdict(None if get(d, "throughput", "results") is None else not lost)))

    # crypto
    if c256:
        add(("seal + open vs raw ChaCha20-Poly1305 (libsodium), 256 B", "<= 2x",
             "%.2fx (%.0f vs %.0f ns); whole protect + unprotect %.2fx (%.0f ns)" % (
                 c256["ratio_seal_open_vs_raw"], c256["seal_open_ns"], c256["raw_aead_ns"],
                 c256["ratio_protect_unprotect_vs_raw"], c256["protect_unprotect_ns"]),
             verdict(c256["ratio_seal_open_vs_raw"] <= 2.0)))
        add(("bytes per message: group / signed group / channel", "<= 40 B / <= 100 B / —",
             "%d B (%d B at sequence 2^32) / %d B / %d B" % (
                 c256["overhead_group_bytes"], c256["overhead_bytes_seq_2_32"],
                 c256["overhead_signed_group_bytes"], c256["overhead_channel_bytes"]),
             "group %s, signed %s" % (
                 verdict(c256["overhead_bytes_seq_2_32"] <= 40),
                 verdict(c256["overhead_signed_group_bytes"] <= 100))))
    else:
        add(("seal + open vs raw ChaCha20-Poly1305, 256 B", "<= 2x", "—", verdict(None)))

    # 3. handshakes
    def lat(path, what, extra=""):
        p = get(d, "handshake", *path)
        if p is None:
            add((what, "p50 <= 5 ms, p99 <= 20 ms", "—", verdict(None)))
            return
        ok = p["p50"] <= HANDSHAKE_P50_MS and p["p99"] <= HANDSHAKE_P99_MS
        add((what, "p50 <= 5 ms, p99 <= 20 ms",
             "p50 %.2f ms, p99 %.2f ms (%d samples)%s" % (p["p50"], p["p99"], p["samples"], extra),
             verdict(ok)))
    e = get(d, "handshake", "enroll")
    lat(("enroll", "round_trip_ms"), "enrollment: one round trip through the authority process",
        "" if e is None else "; %d B + %d B" % (e["request_bytes"], e["reply_bytes"]))
    ch = get(d, "handshake", "channel")
    lat(("channel", "first_message_ms"), "channel set-up (Noise XX) + first message",
        "" if ch is None else "; %d / %d / %d B" % (ch["step1_bytes"], ch["step2_bytes"],
                                                   ch["step3_bytes"]))
    anchor = get(d, "handshake", "channel", "plain_paho_connect_subscribe_ms")
    lat(("channel", "hello_ms"), "connect → HELLO done, sync front (`mqe2e_MQTTClient`)",
        "" if anchor is None else "; anchor: plain Paho `MQTTClient` connect + subscribe p50 "
        "%.2f ms, p99 %.2f ms" % (anchor["p50"], anchor["p99"]))
    if get(d, "handshake", "channel", "async_hello_ms") is not None:
        aanchor = get(d, "handshake", "channel", "plain_paho_async_connect_subscribe_ms")
        lat(("channel", "async_hello_ms"), "connect → HELLO done, async front (`mqe2e_MQTTAsync`)",
            "" if aanchor is None else "; anchor: plain `MQTTAsync` connect + subscribe p50 "
            "%.2f ms, p99 %.2f ms" % (aanchor["p50"], aanchor["p99"]))
    ex = [(f, get(d, "handshake", "channel", k)) for f, k in
          (("sync", "hello_exchange_ms"), ("async", "async_hello_exchange_ms"))]
    ex = [(f, v) for f, v in ex if v is not None]
    if ex:
        add(("the HELLO exchange alone (HELLO sent → session fresh), the part that is mqe2e's; "
             "the rest of connect → HELLO is Paho's connect (docs/BENCHMARKS.md, stall by stall)",
             "—", "; ".join("%s p50 %.2f ms, p99 %.2f ms" % (f, v["p50"], v["p99"]) for f, v in ex),
             "—"))

    # authority
    rate = []
    oks = []
    for key, label in (("enroll_rate", "SQLite, one authority"),
                       ("enroll_rate_postgresql", "PostgreSQL, one"),
                       ("enroll_rate_postgresql_2_replicas", "PostgreSQL, two replicas")):
        r = get(d, key, "devices_per_s")
        rate.append("%s %s/s" % (label, num(r)))
        oks.append(None if r is None else r >= ENROLL_RATE)
    add(("authority enrollment rate (`bench_enroll_rate`)", ">= 1,000 devices/s", "; ".join(rate),
         "SQLite %s, PostgreSQL %s / %s" % tuple(verdict(o) for o in oks)))

    # 3. revocation
    push = []
    for key, label in (("rekey", "SQLite"), ("rekey_postgresql", "PostgreSQL"),
                       ("rekey_postgresql_2_replicas", "PostgreSQL, two replicas"),
                       ("rekey_10000", "SQLite"), ("rekey_100000", "SQLite")):
        r = get(d, key)
        if r is None:
            continue
        missed = r.get("missing") or 0
        push.append("%s members, %s: %s ms%s" % (
            num(r.get("members")), label,
            "p50 %s, max %s" % (num(get(r, "revocation_to_all_members_ms", "p50")),
                                num(get(r, "revocation_to_all_members_ms", "max")))
            if not missed else "> %s" % num(get(r, "revocation_to_all_members_ms", "max")),
            "" if not missed else " (%s members still without the new epoch when the "
            "round's limit ended)" % num(missed)))
    add(("revocation by per-member push, until every remaining member holds the new epoch "
         "(`bench_rekey`)", "<= 2 s (small groups)", "; ".join(push) or "—",
         verdict(None if get(d, "rekey") is None else
                 get(d, "rekey", "revocation_to_all_members_ms", "max") <= REVOKE_MS)))
    t = get(d, "tree_revoke")
    if t is not None:
        ok = all_of(get(t, "revocation_to_all_members_ms", "max") <= REVOKE_MS,
                    t["tree_update_bytes"] <= TREE_BYTES,
                    t["unwraps_per_member_max"] <= TREE_UNWRAPS,
                    t["joiner_bytes"] <= JOINER_BYTES, bool(t.get("checks_ok")))
        add(("key-tree group of %s members: revocation until every remaining member holds the "
             "new epoch, through Mosquitto and the authority process (`bench_tree_revoke`)"
             % num(t["members"]),
             "<= 2 s; <= 4 KB sent; <= 17 unwraps; joiner <= 1 KB",
             "p50 %s ms, max %s ms over %d revocations; one %s B broadcast (+ the %s B list); "
             "%d unwraps max (%.1f mean); %s B to a joiner" % (
                 num(get(t, "revocation_to_all_members_ms", "p50")),
                 num(get(t, "revocation_to_all_members_ms", "max")), t["rounds"],
                 num(t["tree_update_bytes"]), num(t["revocation_list_bytes"]),
                 t["unwraps_per_member_max"], t["unwraps_per_member_mean"],
                 num(t["joiner_bytes"])),
             verdict(ok)))
    kt = get(d, "keytree", "sizes") or []
    if kt:
        add(("key tree vs per-member push, per revocation, in-process (`bench_keytree`)", "—",
             "; ".join("%s members: %s–%s B broadcast, %d unwraps max, member %.1f µs + "
                       "signature %.0f µs (push: %s messages, %s B)" % (
                           num(s["members"]), num(s["revocation_bytes_min"]),
                           num(s["revocation_bytes_max"]), s["unwraps_max"],
                           s["member_apply_us"], s["signature_check_us"],
                           num(s["linear_pushes"]), num(s["linear_bytes"])) for s in kt), "—"))

    # 4. memory
    m = get(d, "memory")
    if m is not None:
        po = m.get("per_object", {})
        add(("memory per group / per sender (heap + guarded)", "—",
             "%s B / %s B" % (
                 num(get(po, "group_keystore", "heap_bytes") + get(po, "group_keystore",
                                                                  "guarded_mapped_bytes")
                     if get(po, "group_keystore") else None),
                 num(get(po, "sender_receive_cache", "heap_bytes") +
                     get(po, "sender_receive_cache", "guarded_mapped_bytes")
                     if get(po, "sender_receive_cache") else None)), "—"))
        if m.get("gateway_sessions"):
            add(("a gateway's sessions (keystore, policy, one message sealed each)", "measured",
                 "%s sessions: %.1f KiB RSS per session" % (
                     num(m["gateway_sessions"]), m["gateway_rss_kb_per_session"]), "measured"))
        ul = m.get("unlock") or []
        if ul:
            add(("peak RSS while unlocking a passphrase keystore, by Argon2id setting", "reported",
                 "; ".join("%s: %.1f MiB, %.0f ms" % (u["setting"], u["peak_rss_kb"] / 1024.0,
                                                      u["unlock_ms"]) for u in ul), "reported"))
        ms = m.get("many_senders")
        if ms:
            add(("%s senders in one group, receive, per message" % num(ms["senders"]), "—",
                 "%.2f µs (one sender: %.2f µs)" % (ms["steady_ns"] / 1000.0,
                                                    ms["single_sender_ns"] / 1000.0), "—"))
    libs = get(d, "libraries")
    if libs:
        def size(k):
            v = libs.get(k)
            return None if v is None else (v["text"] + v["data"] + v["bss"]) / 1000.0
        add(("libmqe2e.so + libmqe2e_paho.so (text + data + bss)", "—",
             "%s kB + %s kB (Paho's own: %s kB)" % (num(size("libmqe2e")),
                                                    num(size("libmqe2e_paho")),
                                                    num(size("libpaho_mqtt3c"))), "—"))
    pk, rk = get(d, "peak_rss_kb"), get(d, "running_rss_kb")
    if pk and rk:
        add(("example device RSS vs a plain Paho program of the same shape", "—",
             "running %.1f vs %.1f MiB; peak %.1f vs %.1f MiB (the peak is the keystore's "
             "Argon2id unlock)" % (rk["hr_device"] / 1024.0, rk["plain_device"] / 1024.0,
                                   pk["hr_device"] / 1024.0, pk["plain_device"] / 1024.0), "—"))
    py = get(d, "python_subscriber")
    if py is not None:
        add(("Python subscriber, 256 B, QoS 1: `mqe2e.Client` vs plain paho-mqtt "
             "(`bench_python.py`)", ">= 90 %",
             "throughput %.1f %% (%.1f–%.1f %%), CPU-time ratio %.1f %% (%.1f–%.1f %%); "
             "without decryption %.1f %%" % (
                 100 * py["median_ratio"], 100 * py["min_ratio"], 100 * py["max_ratio"],
                 100 * py["median_cpu_ratio"], 100 * py["min_cpu_ratio"],
                 100 * py["max_cpu_ratio"], 100 * py["median_lean_ratio"]),
             verdict(py["median_ratio"] >= 0.9)))
    return out


def table(d):
    lines = ["One run of `%s` on %s (%s%s); every figure below comes from that run "
             "(`bench/results/latest.json`), written by `bench/readme_table.py`." % (
                 d.get("command", "bash bench/run_all.sh"), d.get("date", "?"),
                 d.get("machine", "?"),
                 ", load average %s at the start" % d["load_average"]
                 if d.get("load_average") else ""),
             "",
             "| figure | target | measured | verdict |",
             "|---|---|---|---|"]
    for r in rows(d):
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    if d.get("smoke"):
        lines.insert(0, "**Smoke run: tiny counts, timings meaningless.**")
        lines.insert(1, "")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("latest")
    ap.add_argument("--readme")
    a = ap.parse_args()
    with open(a.latest, encoding="utf-8") as f:
        d = json.load(f)
    t = table(d)
    if not a.readme:
        sys.stdout.write(t)
        return 0
    with open(a.readme, encoding="utf-8") as f:
        text = f.read()
    b, e = text.find(BEGIN), text.find(END)
    if b < 0 or e < b:
        sys.stderr.write("readme_table.py: %s has no %s ... %s markers\n" % (a.readme, BEGIN, END))
        return 1
    text = text[:b + len(BEGIN)] + "\n" + t + text[e:]
    with open(a.readme, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
