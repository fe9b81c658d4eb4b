#!/usr/bin/env bash
# End-to-end test of the `mqe2e` command against a private Mosquitto on a free
# loopback port: keys, group files, encrypted pub/sub, what the broker sees,
# and the refusals (no policy, wrong passphrases, overwrite, bad usage).
#
# Needs MQE2E_BUILD_DIR (ctest sets it). Prints one line per check and a
# "N passed, M failed" summary; exits non-zero if any check failed.
set -u

build="${MQE2E_BUILD_DIR:?set MQE2E_BUILD_DIR to the build folder}"
cli="$build/tools/mqe2e/mqe2e"
[ -x "$cli" ] || { echo "test_cli: $cli not built" >&2; exit 1; }
command -v mosquitto >/dev/null || { echo "test_cli: mosquitto not installed" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/mqe2e-test-cli.XXXXXX")"
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
# The error contract: one line on stderr, starting "mqe2e: ".
one_line_error() { [ "$(wc -l <err)" -eq 1 ] && grep -q '^mqe2e: ' err; }
hex() { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }
# True if the raw capture holds the hex of $1 byte-aligned in any payload.
raw_has_plaintext() {
  awk -v m="$(hex "$1")" '{ p = tolower($2); for (i = 1; i + length(m) - 1 <= length(p); i += 2)
    if (substr(p, i, length(m)) == m) f = 1 } END { exit f ? 0 : 1 }' raw.txt
}
wait_for() { # wait_for SECONDS CMD...: poll every 0.1 s
  local n=$(($1 * 10)); shift
  while [ "$n" -gt 0 ]; do "$@" && return 0; sleep 0.1; n=$((n - 1)); done
  return 1
}
send_probe() { # publish a plain probe and wait until the raw subscriber has it
  local tag="$1"
  wait_for 5 sh -c "mosquitto_pub -h 127.0.0.1 -p $port -t probe/$tag -m x 2>/dev/null; grep -q '^probe/$tag ' raw.txt"
}

# ---- broker on a free port -------------------------------------------------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || true)
if [ -z "$port" ]; then
  for port in $(seq 21883 21983); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
  done
fi
# Logs go to stderr, redirected by this shell: run as root, mosquitto drops to
# its own user and could not open a log file inside this private folder.
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n' \
  "$port" >mosquitto.conf
mosquitto -c mosquitto.conf 2>mosquitto.log &
pids+=($!)
if ! wait_for 5 bash -c "(exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null"; then
  echo "test_cli: mosquitto did not start on port $port" >&2
  cat mosquitto.log >&2 2>/dev/null
  exit 1
fi
mosquitto_sub -h 127.0.0.1 -p "$port" -t '#' -v -F '%t %x' >raw.txt 2>/dev/null &
pids+=($!)
check "raw subscriber ready" send_probe start

# ---- help and usage ----------------------------------------------------------
run "$cli" --help
check "mqe2e --help exits 0 with usage" test "$rc" -eq 0 -a -n "$(grep '^usage: mqe2e' out)"
for c in keygen pub sub status "group" "group create" "group import" "group list"; do
  # shellcheck disable=SC2086
  run "$cli" $c --help
  check "mqe2e $c --help" test "$rc" -eq 0 -a -n "$(grep '^usage: mqe2e' out)"
done
run "$cli" pub --bogus
check "unknown option exits 1 with one line" test "$rc" -eq 1 -a -n "$(one_line_error && echo y)"
run "$cli" frobnicate
check "unknown command exits 1" test "$rc" -eq 1

# ---- keys ------------------------------------------------------------------
export MQE2E_PASSPHRASE="device pass"
run "$cli" keygen -K dev.ks --id hr-1
check "keygen device" test "$rc" -eq 0 -a -n "$(grep '^client id: *hr-1$' out)"
check "keygen prints public keys in hex" grep -Eq '^signing public key: [0-9a-f]{64}$' out
check "keystore file is private" test "$(stat -c %a dev.ks)" = 600
check "keystore is encrypted at rest (no client id in clear)" test -z "$(grep -a 'hr-1' dev.ks)"
printf 'backend pass\n' >be.pass
chmod 600 be.pass
run "$cli" keygen -K be.ks --id backend --passphrase-file be.pass --sender-id 42
check "keygen backend with --passphrase-file and --sender-id" test "$rc" -eq 0 -a -n "$(grep '^sender id: *42$' out)"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >watch.key
chmod 600 watch.key
run "$cli" keygen -K watch.ks --id watcher --key-file watch.key
check "keygen with --key-file" test "$rc" -eq 0

sum_before=$(cksum <dev.ks)
# Argon2id limits per keystore: recorded in the file header (u64be passes at
# byte 25, memory at 33); a limit below the floor is refused and creates nothing.
run "$cli" keygen -K small.ks --id tiny --kdf small
check "keygen --kdf small" test "$rc" -eq 0
check "small keystore header: 5 passes, 8 MiB" test "$(od -An -tx1 -j 25 -N 16 small.ks | tr -d ' \n')" = 00000000000000050000000000800000
check "default keystore header: 2 passes, 64 MiB" test "$(od -An -tx1 -j 25 -N 16 dev.ks | tr -d ' \n')" = 00000000000000020000000004000000
run "$cli" status -K small.ks
check "small keystore reopens" test "$rc" -eq 0 -a -n "$(grep '^client id: *tiny$' out)"
run "$cli" keygen -K weak.ks --id weak --kdf 8:4
check "keygen --kdf below the floor refused (exit 1, one line, no file)" test "$rc" -eq 1 -a ! -e weak.ks -a -n "$(one_line_error && echo y)"
run "$cli" keygen -K dev.ks --id other
check "keygen refuses an existing keystore (exit 2, one line)" test "$rc" -eq 2 -a -n "$(one_line_error && echo y)"
check "existing keystore untouched" test "$(cksum <dev.ks)" = "$sum_before"

run env MQE2E_PASSPHRASE=wrong "$cli" status -K dev.ks
check "wrong passphrase exits 2 with one line" test "$rc" -eq 2 -a -n "$(one_line_error && echo y)"
run env -u MQE2E_PASSPHRASE "$cli" status -K dev.ks
check "missing passphrase exits 2 and names MQE2E_PASSPHRASE" test "$rc" -eq 2 -a -n "$(grep MQE2E_PASSPHRASE err)"
chmod 644 be.pass
run "$cli" status -K be.ks --passphrase-file be.pass
check "passphrase file readable by others refused" test "$rc" -eq 2
chmod 600 be.pass
run "$cli" status -K nonexistent.ks
check "missing keystore exits 2" test "$rc" -eq 2 -a -n "$(one_line_error && echo y)"

# ---- groups ----------------------------------------------------------------
run env -u MQE2E_EXPORT_PASSPHRASE "$cli" group create -K dev.ks --group health --topic 'health/#' --out health.grp
check "group create without export passphrase refused" test "$rc" -eq 2 -a -n "$(grep MQE2E_EXPORT_PASSPHRASE err)"
check "  and wrote nothing" test ! -e health.grp
export MQE2E_EXPORT_PASSPHRASE="group file pass"
run "$cli" group create -K dev.ks --group health --topic 'health/#' --out health.grp
check "group create" test "$rc" -eq 0 -a -s health.grp
check "group file mode 0600" test "$(stat -c %a health.grp)" = 600
check "group file holds no group name in clear" test -z "$(grep -a 'health' health.grp)"
run "$cli" group create -K dev.ks --group health --topic 'health/#' --out again.grp
check "group create of an existing group refused" test "$rc" -eq 2
run "$cli" group create -K dev.ks --group bad --topic 'a/#/b' --out bad.grp
check "invalid topic filter is a usage error" test "$rc" -eq 1

run env MQE2E_EXPORT_PASSPHRASE=wrong "$cli" group import -K be.ks --passphrase-file be.pass health.grp
check "group import with wrong export passphrase refused (exit 2)" test "$rc" -eq 2 -a -n "$(one_line_error && echo y)"
run "$cli" group list -K be.ks --passphrase-file be.pass
check "  and imported nothing" test "$rc" -eq 0 -a ! -s out
printf '%s\n' "$MQE2E_EXPORT_PASSPHRASE" >export.pass
chmod 600 export.pass
run env -u MQE2E_EXPORT_PASSPHRASE "$cli" group import -K be.ks --passphrase-file be.pass --export-passphrase-file export.pass health.grp
check "group import with --export-passphrase-file" test "$rc" -eq 0
run "$cli" group import -K watch.ks --key-file watch.key health.grp
check "group import into a key-file keystore" test "$rc" -eq 0
run "$cli" group list -K be.ks --passphrase-file be.pass
check "group list: name, filter, epoch, sender id" test "$(cat out)" = "$(printf 'health\thealth/#\t1\t42')"
run "$cli" status -K dev.ks
check "status lists the group" grep -q 'group health: topic health/#, epoch 1' out

# ---- encrypted pub/sub -----------------------------------------------------
topic=health/hr-1/heartrate
"$cli" sub -K be.ks --passphrase-file be.pass -p "$port" -h 127.0.0.1 -t 'health/#' -q 1 -C 3 -W 20 -d >sub.out 2>sub.err &
sub_pid=$!
pids+=("$sub_pid")
"$cli" sub -K watch.ks --key-file watch.key -p "$port" -h 127.0.0.1 -t 'health/+/heartrate' -t 'health/other' -q 1 -C 3 -W 20 -v -d >subv.out 2>subv.err &
subv_pid=$!
pids+=("$subv_pid")
check "sub subscribed" wait_for 15 grep -q 'subscribed to health/#' sub.err
check "sub -v subscribed to both filters" wait_for 15 grep -q 'subscribed to health/other' subv.err

run "$cli" status -K be.ks --passphrase-file be.pass
check "a keystore in use by another process is refused" test "$rc" -eq 2 -a -n "$(grep 'in use' err)"

run "$cli" pub -K dev.ks -p "$port" -h 127.0.0.1 -t "$topic" -q 1 -m 'reading one bpm=71'
check "pub -m" test "$rc" -eq 0
run sh -c "printf 'reading two bpm=72\n\nreading three bpm=73\n' | '$cli' pub -K dev.ks -p $port -h 127.0.0.1 -t $topic -q 1 -l"
check "pub -l (two lines, blank skipped)" test "$rc" -eq 0

sub_rc=0; wait "$sub_pid" || sub_rc=$?
subv_rc=0; wait "$subv_pid" || subv_rc=$?
check "sub -C 3 exits 0" test "$sub_rc" -eq 0
check "sub -v -C 3 exits 0" test "$subv_rc" -eq 0
expected=$(printf 'reading one bpm=71\nreading two bpm=72\nreading three bpm=73')
check "sub prints exactly the plaintexts" test "$(cat sub.out)" = "$expected"
check "sub -v prints topic then payload" test "$(cat subv.out)" = "$(printf '%s\n' "$expected" | sed "s|^|$topic |")"
check "no drops reported" test -z "$(grep -h dropped sub.err subv.err)"

send_probe after-pub >/dev/null
check "broker carried 3 messages on the topic" test "$(grep -c "^$topic " raw.txt)" -eq 3
leaked=0
for m in 'reading one' 'reading two' 'reading three' 'bpm='; do
  raw_has_plaintext "$m" && leaked=1
done
check "broker saw no plaintext" test "$leaked" -eq 0

# ---- refusals on the wire --------------------------------------------------
run "$cli" pub -K dev.ks -p "$port" -h 127.0.0.1 -t other/topic -m 'must not leak'
check "pub on a topic without policy exits 2 with one line" test "$rc" -eq 2 -a -n "$(one_line_error && echo y)"
run env MQE2E_PASSPHRASE=wrong "$cli" pub -K dev.ks -p "$port" -h 127.0.0.1 -t "$topic" -m 'must not leak'
check "pub with wrong passphrase exits 2" test "$rc" -eq 2 -a -n "$(one_line_error && echo y)"
send_probe after-refusals >/dev/null
check "nothing from refused publishes reached the broker" test -z "$(grep -E '^other/topic ' raw.txt)" -a "$(grep -c "^$topic " raw.txt)" -eq 3
check "refused plaintext absent from the capture" bash -c "! grep -q '$(hex 'must not leak')' raw.txt"

run "$cli" pub -K dev.ks -p "$port" -h 127.0.0.1 -t public/hello -m 'hi' --policy 'public/#=plaintext'
check "--policy plaintext rule publishes in clear" test "$rc" -eq 0
check "  and the broker sees it as is" wait_for 5 grep -q "^public/hello $(hex hi)$" raw.txt
run "$cli" pub -K dev.ks -p "$port" -t "$topic" -m x --policy 'bad rule'
check "bad --policy rule is a usage error" test "$rc" -eq 1

# ---- bound retain flag (PROTOCOL.md 2.5.1) ------------------------------------
bind_rule='health/bind/#=group:health;bind=retain'
run "$cli" pub -K dev.ks -p "$port" -t health/bind/x -m x --policy 'health/bind/#=group:health;bind=topic-alias'
check "binding topic-alias is refused as a usage error" \
  test "$rc" -eq 1 -a -n "$(one_line_error && grep -l 'cannot be bound' err)"
# A live (not retained) message, captured and stored as retained by a raw client.
run "$cli" pub -K dev.ks -p "$port" -h 127.0.0.1 -t health/bind/state -q 1 -m 'door=closed' --policy "$bind_rule"
check "pub with a bound retain flag" test "$rc" -eq 0
check "  the broker carried it" wait_for 5 grep -q '^health/bind/state ' raw.txt
grep -m1 '^health/bind/state ' raw.txt | cut -d' ' -f2 |
  python3 -c 'import sys; sys.stdout.buffer.write(bytes.fromhex(sys.stdin.read().strip()))' >state.env
mosquitto_pub -h 127.0.0.1 -p "$port" -q 1 -r -t health/bind/state -f state.env
# A genuine retained publish.
run "$cli" pub -K dev.ks -p "$port" -h 127.0.0.1 -t health/bind/kept -q 1 -r -m 'mode=eco' --policy "$bind_rule"
check "pub -r with a bound retain flag" test "$rc" -eq 0
run "$cli" sub -K be.ks --passphrase-file be.pass -p "$port" -h 127.0.0.1 -t 'health/bind/#' -C 2 -W 3 --policy "$bind_rule"
check "sub with the rule: the genuine retained message only" test "$(cat out)" = "mode=eco"
check "  the live message stored as retained is dropped (auth)" \
  grep -q '^mqe2e: dropped message on health/bind/state: authentication failed' err
check "  and it is not printed" test -z "$(grep -h 'door=closed' out err)"
# Clear both retained messages: later subscribers of health/# must not see them.
mosquitto_pub -h 127.0.0.1 -p "$port" -q 1 -r -n -t health/bind/state
mosquitto_pub -h 127.0.0.1 -p "$port" -q 1 -r -n -t health/bind/kept

run "$cli" pub -K dev.ks -p 1 -h 127.0.0.1 -t "$topic" -m 'x'
check "unreachable broker exits 3" test "$rc" -eq 3 -a -n "$(one_line_error && echo y)"
run "$cli" sub -K be.ks --passphrase-file be.pass -p "$port" -h 127.0.0.1 -t 'health/#' -C 1 -W 1
check "sub -W expiring before -C exits 4" test "$rc" -eq 4

# ---- rotation ----------------------------------------------------------------
run "$cli" group rotate -K dev.ks --group health --out health2.grp
check "group rotate" test "$rc" -eq 0 -a -n "$(grep 'epoch 2' out)"
run "$cli" group import -K be.ks --passphrase-file be.pass health2.grp
check "import the rotated group" test "$rc" -eq 0 -a -n "$(grep 'epoch 2' out)"
"$cli" sub -K be.ks --passphrase-file be.pass -p "$port" -h 127.0.0.1 -t 'health/#' -C 1 -W 20 -d >sub2.out 2>sub2.err &
sub2_pid=$!
pids+=("$sub2_pid")
check "sub after rotation subscribed" wait_for 15 grep -q 'subscribed' sub2.err
# A forged message on the protected topic comes first: it must be dropped,
# reported without its payload, and not counted towards -C.
mosquitto_pub -h 127.0.0.1 -p "$port" -q 1 -t "$topic" -m 'forged plaintext bpm=999'
run "$cli" pub -K dev.ks -p "$port" -h 127.0.0.1 -t "$topic" -q 1 -m 'after rotation'
sub2_rc=0; wait "$sub2_pid" || sub2_rc=$?
check "message under the new epoch decrypted" test "$sub2_rc" -eq 0 -a "$(cat sub2.out)" = "after rotation"
check "forged message reported as dropped" grep -q "^mqe2e: dropped message on $topic: " sub2.err
check "  without its payload" test -z "$(grep -h 'forged' sub2.out sub2.err)"

# ---- hardening (issue 11): no passphrase in the environment, no core ------
"$cli" sub -K dev.ks -p "$port" -h 127.0.0.1 -t 'health/#' -C 1 -W 20 -d >sub3.out 2>sub3.err &
sub3_pid=$!
pids+=("$sub3_pid")
check "sub with MQE2E_PASSPHRASE subscribed" wait_for 15 grep -q 'subscribed' sub3.err
check "the passphrase is gone from /proc/PID/environ" \
  test -z "$(tr '\0' '\n' </proc/$sub3_pid/environ | grep -a 'device pass')"
check "core files are off" grep -Eq '^Max core file size +0 +0 ' /proc/$sub3_pid/limits
kill "$sub3_pid" 2>/dev/null; wait "$sub3_pid" 2>/dev/null || true

# ---- the authority is its own binary; `mqe2e authority` runs it ------------
auth_bin="$build/tools/mqe2e/mqe2e-authority"
check "mqe2e-authority is built next to mqe2e" test -x "$auth_bin"
run "$cli" authority init -K auth.ks --db auth.db --id cli-authority
check "mqe2e authority init runs mqe2e-authority (passphrase from the environment)" \
  test "$rc" -eq 0 -a -s auth.db
launcher_pin="$(head -n 1 out)"
run "$auth_bin" pin -K auth.ks
check "the launcher and the binary print the same pin" test "$rc" -eq 0 -a "$(cat out)" = "$launcher_pin"
# ---- the store: --store URI, MQE2E_AUTHORITY_STORE, an unknown scheme ------
run "$auth_bin" init -K st1.ks --store sqlite:st1.db --id st1-authority
check "init --store sqlite:PATH creates that file" test "$rc" -eq 0 -a -s st1.db
run env MQE2E_AUTHORITY_STORE=sqlite:st2.db "$auth_bin" init -K st2.ks --id st2-authority
check "init without --db/--store takes MQE2E_AUTHORITY_STORE" test "$rc" -eq 0 -a -s st2.db
run "$auth_bin" init -K st3.ks --store 'postgresq://alice:s3cret@db.example/x' --id st3-authority
check "a mistyped scheme: usage error (exit 1), one line, no password echoed, no keystore, no file" \
  test "$rc" -eq 1 -a -n "$(one_line_error && grep "unknown store scheme 'postgresq://'" err)" \
  -a -z "$(grep s3cret err)" -a ! -e st3.ks -a ! -e postgresq:
run timeout 20 "$auth_bin" run -K st1.ks --store 'postgresql://alice:s3cret@127.0.0.1:1/x' \
  -h 127.0.0.1 -p "$port"
check "run with an unreachable PostgreSQL: fails, says so, never prints the URI's password" \
  test "$rc" -ne 0 -a "$rc" -ne 124 -a -n "$(grep -i 'database' err)" -a -z "$(grep s3cret err out)"
run "$auth_bin" init -K st4.ks --store sqlite:st1.db --id st4-authority
check "init --store sqlite: refuses an existing file" test "$rc" -ne 0 -a ! -e st4.ks

mkdir -p lonely && cp "$cli" lonely/mqe2e
if [ ! -e /usr/local/bin/mqe2e-authority ] && [ ! -e "$(dirname "$(command -v mqe2e 2>/dev/null || echo /nonexistent/x)")/mqe2e-authority" ]; then
  run env PATH=/nonexistent lonely/mqe2e authority pin -K auth.ks
  check "without mqe2e-authority: exit 1 with the reason" \
    test "$rc" -eq 1 -a -n "$(one_line_error && grep 'cannot run mqe2e-authority' err)"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
