#!/usr/bin/env bash
# Counters through the `mqe2e` command, against a private Mosquitto on a free
# loopback port: pub and sub record their client's counters in
# KEYSTORE.stats, `mqe2e status` shows them (text and --json), a forged
# message is counted as a decode drop, and the file is private and holds no
# payload, topic or key.
#
# Needs MQE2E_BUILD_DIR (ctest sets it). Prints one line per check and a
# "N passed, M failed" summary; exits non-zero if any check failed.
set -u

build="${MQE2E_BUILD_DIR:?set MQE2E_BUILD_DIR to the build folder}"
cli="$build/tools/mqe2e/mqe2e"
[ -x "$cli" ] || { echo "test_cli_stats: $cli not built" >&2; exit 1; }
command -v mosquitto >/dev/null || { echo "test_cli_stats: mosquitto not installed" >&2; exit 1; }
command -v python3 >/dev/null || { echo "test_cli_stats: python3 not installed" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/mqe2e-test-cli-stats.XXXXXX")"
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$work" || exit 1

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() {
  failed=$((failed + 1)); echo "not ok - $1"
  for f in out err; do [ -s "$f" ] && sed "s/^/    $f: /" "$f" | head -5; done
  return 0
}
check() { local d="$1"; shift; if "$@"; then ok "$d"; else not_ok "$d"; fi; }

# run CMD...: stdout to ./out, stderr to ./err, exit code in $rc.
run() { "$@" >out 2>err; rc=$?; }
wait_for() { # wait_for SECONDS CMD...: poll every 0.1 s
  local n=$(($1 * 10)); shift
  while [ "$n" -gt 0 ]; do "$@" && return 0; sleep 0.1; n=$((n - 1)); done
  return 1
}
# json_get FILE EXPR: evaluate a Python expression over the parsed document d.
json_get() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }
# status_line NAME VALUE: the text status has "  NAME   VALUE".
status_line() { grep -Eq "^  $1 +$2\$" out; }

# ---- broker on a free port -------------------------------------------------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || true)
if [ -z "$port" ]; then
  for port in $(seq 21883 21983); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
  done
fi
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n' \
  "$port" >mosquitto.conf
mosquitto -c mosquitto.conf 2>mosquitto.log &
pids+=($!)
if ! wait_for 5 bash -c "(exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null"; then
  echo "test_cli_stats: mosquitto did not start on port $port" >&2
  cat mosquitto.log >&2 2>/dev/null
  exit 1
fi

# ---- keystores and a shared group (manual provisioning) --------------------
export MQE2E_PASSPHRASE="stats pass"
export MQE2E_EXPORT_PASSPHRASE="stats group file pass"
run "$cli" keygen -K pub.ks --id stats-pub
check "keygen publisher" test "$rc" -eq 0
run "$cli" keygen -K sub.ks --id stats-sub
check "keygen subscriber" test "$rc" -eq 0
run "$cli" group create -K pub.ks --group plant --topic 'plant/#' --out plant.grp
check "group create --out" test "$rc" -eq 0 -a -s plant.grp
run "$cli" group import -K sub.ks plant.grp
check "group import" test "$rc" -eq 0

# ---- before any session ----------------------------------------------------
run "$cli" status -K sub.ks
check "status before any session: no counters recorded yet" \
  test "$rc" -eq 0 -a -n "$(grep 'no counters recorded yet' out)"
run "$cli" status -K sub.ks --json
cp out fresh.json
check "status --json before any session parses" \
  python3 -c 'import json,sys; json.load(sys.stdin)' <fresh.json
check "  and has counters null and the group" \
  test "$(json_get fresh.json 'd["counters"] is None and d["groups"][0]["name"]')" = plant
check "  and no authority" test "$(json_get fresh.json 'd["authority"]')" = None

# ---- a running sub records its counters every 5 s ---------------------------
"$cli" sub -K sub.ks -h 127.0.0.1 -p "$port" -t 'plant/#' -C 1 -W 8 >idle.out 2>idle.err &
idle_pid=$!
pids+=("$idle_pid")
check "a running sub writes KEYSTORE.stats (state running)" \
  wait_for 8 grep -qs '"state":"running"' sub.ks.stats
wait "$idle_pid"
idle_rc=$?
check "  and exits 4 on -W" test "$idle_rc" -eq 4
check "  and records again at exit (state exited)" grep -q '"state":"exited"' sub.ks.stats

# ---- two sealed messages and one forged ------------------------------------
secret1="reactor temperature 451"
secret2="valve 7 opened by operator"
forged="not an envelope"
"$cli" sub -K sub.ks -h 127.0.0.1 -p "$port" -t 'plant/#' -q 1 -C 2 -W 20 -d >sub.out 2>sub.err &
sub_pid=$!
pids+=("$sub_pid")
check "sub subscribed" wait_for 15 grep -q 'subscribed to plant/#' sub.err
mosquitto_pub -h 127.0.0.1 -p "$port" -t plant/line1 -q 1 -m "$forged"
check "forged message reported as dropped" wait_for 10 grep -q 'dropped message on plant/line1' sub.err
printf '%s\n%s\n' "$secret1" "$secret2" >lines.txt
run "$cli" pub -K pub.ks -h 127.0.0.1 -p "$port" -t plant/line1 -q 1 -l <lines.txt
check "pub -l two messages" test "$rc" -eq 0
wait "$sub_pid"
sub_rc=$?
check "sub -C 2 exits 0" test "$sub_rc" -eq 0
check "sub printed both messages" test "$(cat sub.out)" = "$(printf '%s\n%s' "$secret1" "$secret2")"

run "$cli" status -K sub.ks
check "status exits 0" test "$rc" -eq 0
check "status names the writer (mqe2e sub, at exit)" grep -Eq "^counters: +recorded .* by 'mqe2e sub' \(pid [0-9]+, at exit\)$" out
check "status shows opened 2" status_line opened 2
check "status shows one decode drop" status_line dropped.decode 1
check "status shows no auth drop" status_line dropped.auth 0
check "status shows sealed 0 for the subscriber" status_line sealed 0
check "status shows control counters" status_line control.handshakes_ok 0

run "$cli" status -K sub.ks --json
cp out sub.json
check "status --json parses" python3 -c 'import json,sys; json.load(sys.stdin)' <sub.json
check "  opened 2" test "$(json_get sub.json 'd["counters"]["opened"]')" = 2
check "  dropped.decode 1" test "$(json_get sub.json 'd["counters"]["dropped"]["decode"]')" = 1
check "  command sub, pid, state exited" \
  test "$(json_get sub.json '(d["counters"]["command"], d["counters"]["pid"] > 0, d["counters"]["state"])')" = "('sub', True, 'exited')"
check "  identity public keys" \
  test "$(json_get sub.json 'len(d["signing_public_key"]) + len(d["x25519_public_key"])')" = 128
check "  group with epoch and sender id" \
  test "$(json_get sub.json '(d["groups"][0]["topic"], d["groups"][0]["epoch"] >= 1, d["groups"][0]["sender_id"] > 0)')" = "('plant/#', True, True)"
check "  control counters present" test "$(json_get sub.json 'd["counters"]["control"]["handshakes_ok"]')" = 0

run "$cli" status -K pub.ks --json
cp out pub.json
check "publisher status --json: sealed 2 by pub" \
  test "$(json_get pub.json '(d["counters"]["sealed"], d["counters"]["command"])')" = "(2, 'pub')"

# ---- the file itself ---------------------------------------------------------
check "stats file is mode 0600" test "$(stat -c %a sub.ks.stats)" = 600
check "publisher stats file is mode 0600" test "$(stat -c %a pub.ks.stats)" = 600
check "stats file is one JSON object" python3 -c 'import json,sys; json.load(sys.stdin)' <sub.ks.stats
no_secret() {
  local f
  for f in sub.ks.stats pub.ks.stats; do
    grep -qF "$secret1" "$f" && return 1
    grep -qF "$secret2" "$f" && return 1
    grep -qF "$forged" "$f" && return 1
    grep -qF "plant" "$f" && return 1
    grep -qF "$MQE2E_PASSPHRASE" "$f" && return 1
  done
  return 0
}
check "stats files hold no payload, topic or passphrase" no_secret
check "no temporary file left behind" test -z "$(ls | grep '\.stats\.tmp')"

run "$cli" pub -K pub.ks -h 127.0.0.1 -p "$port" -t plant/line1 -m "$secret1"
check "pub -m" test "$rc" -eq 0
check "  its stats file holds no -m argument" test -z "$(grep -F "$secret1" pub.ks.stats)"

sum_before=$(cksum <pub.ks.stats)
run "$cli" pub -K pub.ks -h 127.0.0.1 -p 1 -t plant/line1 -m "$secret1"
check "a pub that cannot connect fails (exit 3)" test "$rc" -eq 3
check "  and leaves the last session's record alone" test "$(cksum <pub.ks.stats)" = "$sum_before"

# A damaged file is reported, never echoed.
printf '{"version":1,"command":"x\\u0000","note":"%s"}\n' "$secret2" >sub.ks.stats
run "$cli" status -K sub.ks
check "damaged stats file: status still exits 0" test "$rc" -eq 0
check "  and says it cannot read it, without echoing it" \
  test -n "$(grep 'cannot read .*sub.ks.stats' out)" -a -z "$(grep -F "$secret2" out)"
run "$cli" status -K sub.ks --json
check "  --json still parses" python3 -c 'import json,sys; json.load(sys.stdin)' <out

# ---- an enrolled keystore: authority pin and credential expiry -------------
run "$cli" authority init -K authority.ks --db authority.db --id stats-authority
pin="$(head -n 1 out)"
check "authority init" test "$rc" -eq 0 -a -n "$pin"
run "$cli" keygen -K operator.ks --id operator
operator_sign="$(sed -n 's/^signing public key: *//p' out)"
run "$cli" authority operator-add -K authority.ks --db authority.db --name operator --sign-public "$operator_sign"
check "operator-add" test "$rc" -eq 0
"$cli" authority run -K authority.ks --db authority.db -h 127.0.0.1 -p "$port" >authority.out 2>authority.log &
pids+=($!)
check "authority running" wait_for 10 grep -q serving authority.log
run env MQE2E_AUTHORITY="$pin" "$cli" token create -K operator.ks -h 127.0.0.1 -p "$port" -W 10 \
  --id stats-device --grant 'dev/#:pub'
cp out device.ticket
chmod 600 device.ticket
check "token create" test "$rc" -eq 0 -a -s device.ticket
run "$cli" enroll -K device.ks --ticket-file device.ticket -h 127.0.0.1 -p "$port" -W 20
check "enroll" test "$rc" -eq 0
run "$cli" status -K device.ks
check "enrolled status names the authority" grep -q '^authority: *stats-authority$' out
check "  and the credential expiry" grep -Eq '^credential expires: [0-9]{4}-[0-9]{2}-[0-9]{2}T' out
run "$cli" status -K device.ks --json
cp out device.json
check "enrolled status --json parses" python3 -c 'import json,sys; json.load(sys.stdin)' <device.json
check "  authority id and pin key, credential valid with expiry" \
  test "$(json_get device.json '(d["authority"]["id"], len(d["authority"]["signing_public_key"]), d["credential"]["valid"], d["credential"]["expires_at"] > 0)')" = "('stats-authority', 64, True, True)"
check "  no ticket in the status" test -z "$(grep -F "$(cat device.ticket)" device.json)"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
