#!/usr/bin/env bash
# kill -9 during publishing must never make a sequence number repeat.
#
# A publisher (`mqe2e pub -l`, keystore in an encrypted FILE keyed by a raw key
# file) streams lines from a fifo as fast as it can and is killed with SIGKILL
# after a random short delay, then restarted on the same keystore, ITER times
# (default 200). Kills land during start-up, during the keystore's sequence
# reservation writes and in the middle of streaming. A raw mosquitto_sub on
# '#' records every envelope; envelope_seq decodes each header and the test
# fails if any (sender, epoch, seq) appears twice, if any start of the
# publisher fails (the keystore must open every time), or if nothing at all
# was captured.
#
# Needs MQE2E_BUILD_DIR (ctest sets it). Optional: KILL9_ITERATIONS.
set -u

build="${MQE2E_BUILD_DIR:?set MQE2E_BUILD_DIR to the build folder}"
cli="$build/tools/mqe2e/mqe2e"
seqtool="$build/tests/faults/envelope_seq"
iterations="${KILL9_ITERATIONS:-200}"
for f in "$cli" "$seqtool"; do
  [ -x "$f" ] || { echo "keystore_kill9: $f not built" >&2; exit 1; }
done
command -v mosquitto >/dev/null || { echo "keystore_kill9: mosquitto missing" >&2; exit 1; }

# Under the build tree, not /tmp: other test runs may sweep shared temp folders.
work="$(mktemp -d "$build/tests/faults/kill9-work.XXXXXX")"
pids=()
# A background subshell inherits these traps until it resets them; the line
# source below can be killed while still blocked opening its fifo (when the
# publisher died before opening it), and must not run the cleanup then: it
# would remove the work folder under the running test.
main_pid=$BASHPID
cleanup() {
  [ "$BASHPID" = "$main_pid" ] || return 0
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$work" || exit 1

fail() { echo "keystore_kill9: FAIL: $*" >&2; exit 1; }
wait_for() { # wait_for TENTHS CMD...
  local n=$1; shift
  while [ "$n" -gt 0 ]; do "$@" && return 0; sleep 0.1; n=$((n - 1)); done
  return 1
}

# ---- broker on a free loopback port -----------------------------------------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || true)
if [ -z "$port" ]; then
  for port in $(seq 22883 22983); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
  done
fi
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nmax_queued_messages 0\n' \
  "$port" >mosquitto.conf
mosquitto -c mosquitto.conf 2>mosquitto.log &
pids+=($!)
wait_for 50 bash -c "(exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null" ||
  { cat mosquitto.log >&2; fail "mosquitto did not start on port $port"; }

# ---- publisher keystore (raw key file: no Argon2id per start) ---------------
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >pub.key
chmod 600 pub.key
"$cli" keygen -K pub.ks --id kill9-pub --key-file pub.key >/dev/null 2>err || { cat err >&2; fail keygen; }
MQE2E_EXPORT_PASSPHRASE='kill9 export passphrase' \
  "$cli" group create -K pub.ks --key-file pub.key --group g --topic 'kill9/#' --out g.grp \
  >/dev/null 2>err || { cat err >&2; fail "group create"; }

# ---- raw recorder on '#' ------------------------------------------------------
mosquitto_sub -h 127.0.0.1 -p "$port" -t '#' -q 1 -F '%t %x' >raw.txt 2>raw.err &
recorder=$!
pids+=($recorder)
ready() { mosquitto_pub -h 127.0.0.1 -p "$port" -t probe/ready -m x 2>/dev/null; grep -q '^probe/ready ' raw.txt; }
wait_for 50 ready || fail "raw recorder not ready"

# ---- the loop -------------------------------------------------------------------
# A line source that never ends; each publisher run reads from its own fifo.
source_lines() { local i=0; while :; do printf 'reading-%d\n' "$i"; i=$((i + 1)); done; }

start_failures=0
killed=0
exited_early=0
for ((it = 1; it <= iterations; it++)); do
  rm -f lines.fifo
  mkfifo lines.fifo
  source_lines >lines.fifo 2>/dev/null &
  src=$!
  "$cli" pub -K pub.ks --key-file pub.key -h 127.0.0.1 -p "$port" -q 0 \
    -t kill9/stream -l <lines.fifo >/dev/null 2>pub.err &
  pub=$!
  # 0 to 299 ms: early kills hit start-up and the keystore open, later ones
  # hit streaming and the sequence block reservation writes.
  delay=$((RANDOM % 300))
  sleep "$(printf '0.%03d' "$delay")"
  if kill -0 "$pub" 2>/dev/null; then
    kill -9 "$pub" 2>/dev/null
    killed=$((killed + 1))
  fi
  wait "$pub" 2>/dev/null
  status=$?
  kill "$src" 2>/dev/null
  wait "$src" 2>/dev/null
  if [ "$status" -ne 137 ]; then
    # The publisher stopped by itself before the kill: only acceptable if
    # it did not complain (it never does with an endless source).
    exited_early=$((exited_early + 1))
    if [ "$status" -ne 0 ] || [ -s pub.err ]; then
      start_failures=$((start_failures + 1))
      echo "iteration $it: publisher exited with $status:" >&2
      sed 's/^/    /' pub.err >&2
    fi
  fi
done

# The keystore still opens after the last kill.
"$cli" status -K pub.ks --key-file pub.key >status.out 2>status.err ||
  { cat status.err >&2; fail "keystore does not open after the last kill"; }

# Let the recorder drain, then stop it.
wait_for 50 bash -c "mosquitto_pub -h 127.0.0.1 -p $port -t probe/end -m x 2>/dev/null; grep -q '^probe/end ' raw.txt" ||
  fail "recorder did not see the end probe"
kill "$recorder" 2>/dev/null
wait "$recorder" 2>/dev/null

grep '^kill9/stream ' raw.txt | cut -d' ' -f2 >envelopes.hex
captured=$(wc -l <envelopes.hex)
"$seqtool" <envelopes.hex >seqs.txt 2>seq.err || { cat seq.err >&2; fail "unparsable envelopes captured"; }
duplicates=$(sort seqs.txt | uniq -d | wc -l)
distinct_runs=$(cut -d' ' -f1,2 seqs.txt | sort -u | wc -l)
max_seq=$(cut -d' ' -f3 seqs.txt | sort -n | tail -1)
plaintext_seen=$(grep -c "$(printf 'reading-' | od -An -tx1 | tr -d ' \n')" envelopes.hex || true)

echo "keystore_kill9: iterations $iterations, killed $killed, exited before the kill $exited_early"
echo "keystore_kill9: start failures $start_failures"
echo "keystore_kill9: envelopes captured $captured, (sender, epoch) pairs $distinct_runs, highest seq ${max_seq:-none}"
echo "keystore_kill9: duplicate (sender, epoch, seq) $duplicates"
echo "keystore_kill9: captured payloads holding plaintext $plaintext_seen"

[ "$start_failures" -eq 0 ] || fail "$start_failures publisher starts failed"
[ "$captured" -gt 0 ] || fail "no envelope captured"
[ "$killed" -ge $((iterations / 2)) ] || fail "only $killed of $iterations runs were killed"
[ "$plaintext_seen" -eq 0 ] || fail "plaintext on the wire"
if [ "$duplicates" -ne 0 ]; then
  sort seqs.txt | uniq -d | head -5 >&2
  fail "$duplicates sequence numbers were used twice"
fi
echo "keystore_kill9: PASS"
