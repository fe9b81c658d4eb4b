#!/usr/bin/env bash
# A (key, nonce) pair never repeats (docs/PROTOCOL.md 2.4, docs/SECURITY.md):
# each way 0.1 was seen to repeat one is run here over a real Mosquitto, every
# envelope the broker carried is captured by a raw '#' subscriber, and
# nonce_check.py compares every pair of equal-length envelopes of a scenario
# for keystream reuse (C1 xor C2 == P1 xor P2 with known plaintexts).
#
#   1. a backup restored (manual keystore, and an enrolled one with its authority)
#      and a keystore copied to a second device;
#   2. two handles on one keystore: the CLI, and two instances of the migrated
#      Paho sample program at once -- the second open is refused;
#   3. a keystore reached through a symlink;
#   4. a group removed and imported again;
#   5. two devices whose default sender ids collide (sensor-00023, sensor-07570);
#   6. (the authority's sender ids: test_authority_db, never_reuses_sender_ids.)
#
# Scenarios 1 and 5 must reproduce the 0.1 condition -- two envelopes with the
# same (epoch, sender, seq) header -- or the test fails: it cannot pass by
# not reaching the case. Prints one line per check; exits non-zero on failure.
#
#   MQE2E_BUILD_DIR=build MQE2E_SOURCE_DIR=. bash tests/integration/test_nonce_unique.sh
set -u

src="${MQE2E_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
build="${MQE2E_BUILD_DIR:-$src/build}"
cli="$build/tools/mqe2e/mqe2e"
sample="$build/examples/paho_encrypted_sync"
checker="$src/tests/integration/nonce_check.py"
for t in "$cli" "$sample"; do [ -x "$t" ] || { echo "test_nonce_unique: $t not built" >&2; exit 1; }; done
command -v mosquitto >/dev/null || { echo "test_nonce_unique: mosquitto not installed" >&2; exit 1; }

# shellcheck source=../support/scripttest.sh
. "$src/tests/support/scripttest.sh"
st_workdir nonce
umask 077

fatal() { echo "test_nonce_unique: $*" >&2; echo "$passed passed, $((failed + 1)) failed"; exit 1; }

# ---- broker and raw capture --------------------------------------------------
host=127.0.0.1
port=$(free_port)
printf 'listener %s %s\nallow_anonymous true\npersistence false\nlog_dest stderr\n' "$port" "$host" \
  >mosquitto.conf
[ "$(id -u)" -eq 0 ] && echo "user root" >>mosquitto.conf
mosquitto -c mosquitto.conf 2>mosquitto.log &
pids+=($!)
wait_for 5 bash -c "(exec 3<>/dev/tcp/$host/$port) 2>/dev/null" || fatal "broker did not start"
mosquitto_sub -h "$host" -p "$port" -t '#' -q 1 -v -F '%t %x' >raw.txt 2>raw.err &
pids+=($!)
probe() { mosquitto_pub -h "$host" -p "$port" -t probe/raw -m probe 2>/dev/null; grep -q '^probe/raw ' raw.txt; }
wait_for 10 probe || fatal "the capture did not come up"

export MQE2E_PASSPHRASE="nonce test passphrase"
export MQE2E_EXPORT_PASSPHRASE="nonce test group file"
WIDTH=48
captured() { awk -v t="$1" '$1 == t { n++ } END { print n + 0 }' raw.txt; }
# pub KEYSTORE TOPIC N [ARGS...]: N messages "TOPIC|k" padded to WIDTH bytes,
# one `mqe2e pub -l` run (one keystore open); waits until the capture has them.
pub() {
  local ks="$1" topic="$2" n="$3" before k
  shift 3
  before=$(captured "$topic")
  for k in $(seq $((before + 1)) $((before + n))); do
    printf '%s|%d' "$topic" "$k" | awk -v w="$WIDTH" '{ s = $0; while (length(s) < w) s = s "."; print s }'
  done | "$cli" pub --keystore "$ks" -h "$host" -p "$port" -q 1 -t "$topic" -l "$@" >pub.out 2>pub.err ||
    { cat pub.err >&2; return 1; }
  wait_for 10 test "$(captured "$topic")" -ge $((before + n))
}
# verdict SCENARIO PREFIX MIN_HEADER_PAIRS: no keystream reuse among the
# scenario's envelopes; at least MIN_HEADER_PAIRS pairs with the header 0.1 reused.
verdict() {
  local line
  line=$(python3 "$checker" raw.txt --prefix "$2" --width "$WIDTH") || { not_ok "$1: checker failed"; return; }
  echo "    $1: $line"
  echo "$1 $line" >>verdicts.txt
  local envs header nonce reuse
  envs=$(sed -n 's/.*envelopes=\([0-9]*\).*/\1/p' <<<"$line")
  header=$(sed -n 's/.*header_pairs=\([0-9]*\).*/\1/p' <<<"$line")
  nonce=$(sed -n 's/.*nonce_pairs=\([0-9]*\).*/\1/p' <<<"$line")
  reuse=$(sed -n 's/.*reuse=\([0-9]*\).*/\1/p' <<<"$line")
  check "$1: $envs envelopes captured" test "$envs" -gt 0
  check "$1: the 0.1 condition reproduced ($header header pairs, want >= $3)" test "$header" -ge "$3"
  check "$1: no (key, nonce) pair repeated ($nonce)" test "$nonce" -eq 0
  check "$1: no keystream reuse ($reuse pairs with C1^C2 == P1^P2)" test "$reuse" -eq 0
}

# ---- manual provisioning: keystores and one group ---------------------------
"$cli" keygen --keystore dev.ks --id sensor-00023 >/dev/null || fatal "keygen dev"
"$cli" keygen --keystore be.ks --id backend --sender-id 42 >/dev/null || fatal "keygen backend"
"$cli" group create --keystore dev.ks --group g --topic 'nonce/#' --out g.grp >/dev/null ||
  fatal "group create"
"$cli" group import --keystore be.ks g.grp >/dev/null || fatal "group import"

# ---- 1. backup restore, copy to another device ------------------------------
cp dev.ks backup.ks
pub dev.ks nonce/restore/before 6 || fatal "pub before restore"
cp backup.ks dev.ks
pub dev.ks nonce/restore/after 6 || fatal "pub after restore"
verdict "restore (manual)" nonce/restore/ 6

cp dev.ks clone.ks # "restored on another machine": both copies keep sending
pub dev.ks nonce/clone/original 4 || fatal "pub original"
pub clone.ks nonce/clone/copy 4 || fatal "pub copy"
pub dev.ks nonce/clone/original2 4 || fatal "pub original 2"
verdict "copy on a second device" nonce/clone/ 4

# ---- 2. two handles on one keystore ------------------------------------------
"$cli" sub --keystore dev.ks -h "$host" -p "$port" -t 'nonce/#' -W 60 >holder.out 2>holder.err &
holder=$!
pids+=("$holder")
holds() { grep -q "^$holder " dev.ks.lock 2>/dev/null; }
check "a long-running sub holds dev.ks (lock file names its pid)" wait_for 10 holds
before=$(grep -c '^nonce/' raw.txt)
run "$cli" pub --keystore dev.ks -h "$host" -p "$port" -t nonce/second/cli -m second
check "a second CLI open is refused (exit 2)" test "$rc" -eq 2
check "  and says which process holds it" grep -q "in use: process $holder opened it as dev.ks" err
run "$cli" pub --keystore "$work/./dev.ks" -h "$host" -p "$port" -t nonce/second/cli -m second
check "  through another spelling of the path too" test "$rc" -eq 2
check "the migrated Paho sample is refused while the sub holds the keystore" \
  bash -c "MQE2E_BROKER_PORT=$port MQE2E_CLIENT_ID=second MQE2E_KEYSTORE=dev.ks '$sample' 1 >s.out 2>s.err; test \$? -ne 0 && grep -q 'keystore already open' s.err"
kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null
# Two instances of the migrated sample program on one keystore at once. The
# first one is kept inside its run (keystore open, connect pending) by a TCP
# listener that never answers, so the overlap does not depend on timing.
"$cli" keygen --keystore ex.ks --id paho-example >/dev/null || fatal "keygen ex"
"$cli" group create --keystore ex.ks --group demo --topic 'examples/#' --out demo.grp >/dev/null ||
  fatal "group demo"
python3 -c '
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True)
held = []
while True:
    held.append(s.accept())' >silent.port &
pids+=($!)
wait_for 5 test -s silent.port || fatal "silent listener"
MQE2E_BROKER_PORT=$(cat silent.port) MQE2E_CLIENT_ID=first MQE2E_KEYSTORE=ex.ks "$sample" 3 \
  >first.out 2>first.err &
first=$!
pids+=("$first")
first_holds() { grep -q "^$first " ex.ks.lock 2>/dev/null; }
check "the first instance holds ex.ks" wait_for 10 first_holds
MQE2E_BROKER_PORT=$port MQE2E_CLIENT_ID=second MQE2E_KEYSTORE=ex.ks "$sample" 3 >second.out \
  2>second.err
second_rc=$?
check "the second instance exits non-zero" test "$second_rc" -ne 0
check "  with a clear error" grep -q "keystore already open in another handle or process" second.err
check "  and published nothing" test "$(captured examples/greeting)" -eq 0
kill "$first" 2>/dev/null; wait "$first" 2>/dev/null
MQE2E_BROKER_PORT=$port MQE2E_CLIENT_ID=third MQE2E_KEYSTORE=ex.ks "$sample" 3 >third.out 2>third.err
check "once the first is gone the keystore opens again (no stale lock)" \
  grep -q '^received 3 of 3$' third.out
after=$(grep -c '^nonce/' raw.txt)
check "nothing was published by refused opens" test "$before" -eq "$after"

# ---- 3. a symlinked path -------------------------------------------------------
ln -s dev.ks link.ks
pub link.ks nonce/link/via-link 5 || fatal "pub via link"
check "the symlink is still a symlink after a write" test -L link.ks
pub dev.ks nonce/link/via-real 5 || fatal "pub via real path"
pub link.ks nonce/link/via-link-again 5 || fatal "pub via link again"
verdict "symlinked path" nonce/link/ 0
python3 "$checker" raw.txt --prefix nonce/link/ --width "$WIDTH" >/dev/null
check "  and no sequence number repeated either (writes reached the real file)" \
  grep -q '^symlinked path envelopes=15 pairs=105 header_pairs=0 ' verdicts.txt

# ---- 4. a group removed and imported again ----------------------------------
pub dev.ks nonce/readd/before 5 || fatal "pub before remove"
run "$cli" group remove --keystore dev.ks --group g
check "group remove" test "$rc" -eq 0
"$cli" group import --keystore dev.ks g.grp >/dev/null || fatal "re-import"
pub dev.ks nonce/readd/after 5 || fatal "pub after re-import"
verdict "group removed and re-added" nonce/readd/ 0
check "  sequence numbers continued above the removed group's" \
  grep -q '^group removed and re-added envelopes=10 pairs=45 header_pairs=0 ' verdicts.txt

# ---- 5. colliding default sender ids ------------------------------------------
"$cli" keygen --keystore c1.ks --id sensor-00023 --sender-id 11203797 >/dev/null || fatal "keygen c1"
"$cli" keygen --keystore c2.ks --id sensor-07570 >/dev/null || fatal "keygen c2"
"$cli" group import --keystore c1.ks g.grp >/dev/null && "$cli" group import --keystore c2.ks g.grp \
  >/dev/null || fatal "import c1/c2"
"$cli" group list --keystore c2.ks >out
check "sensor-07570's default sender id is sensor-00023's (11203797)" grep -q $'\t11203797$' out
pub c1.ks nonce/collide/sensor-00023 6 || fatal "pub c1"
pub c2.ks nonce/collide/sensor-07570 6 || fatal "pub c2"
verdict "colliding sender ids" nonce/collide/ 6
# In a signed group the directory knows who holds an id: the import is refused.
"$cli" group create --keystore c1.ks --group sg --topic 'signed/#' --signed --out sg.grp \
  >/dev/null || fatal "signed group create"
run "$cli" group import --keystore c2.ks sg.grp
check "a signed group's import refuses a sender id taken by another key (exit 2)" \
  test "$rc" -eq 2 -a -n "$(grep 'already in the signer directory' err)"
"$cli" group list --keystore c2.ks >out
check "  and the group was not kept" bash -c "! grep -q '^sg' out"

# ---- 1b. backup restore of an enrolled device, with its authority -----------
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >key
"$cli" authority init --keystore authority.ks --key-file key --db authority.db --id authority \
  >pin.txt 2>init.err || fatal "authority init: $(cat init.err)"
pin="$(head -n 1 pin.txt)"
"$cli" keygen --keystore operator.ks --key-file key --id operator >operator.txt 2>&1 || fatal "keygen op"
op_sign="$(sed -n 's/^signing public key: *//p' operator.txt)"
"$cli" authority operator-add --keystore authority.ks --key-file key --db authority.db \
  --name operator --sign-public "$op_sign" >/dev/null 2>&1 || fatal "operator-add"
"$cli" authority run --keystore authority.ks --key-file key --db authority.db -h "$host" -p "$port" \
  >authority.log 2>&1 &
pids+=($!)
wait_for 10 grep -q serving authority.log || fatal "the authority did not start"
op() { MQE2E_AUTHORITY="$pin" "$cli" "$@" --keystore operator.ks --key-file key -h "$host" -p "$port" -W 10; }
op group create --group fleet --topic 'nonce/fleet/#' >/dev/null || fatal "authority group create"
op token create --id meter-1 --grant 'nonce/fleet/#:pub' --group fleet >meter.ticket || fatal "token"
"$cli" enroll --keystore meter.ks --ticket-file meter.ticket -h "$host" -p "$port" -W 20 \
  >enroll.out 2>enroll.err || fatal "enroll: $(cat enroll.err)"
cp meter.ks meter-backup.ks
pub meter.ks nonce/fleet/before 6 || fatal "pub enrolled before"
cp meter-backup.ks meter.ks
pub meter.ks nonce/fleet/after 6 || fatal "pub enrolled after"
verdict "restore (enrolled, authority reachable)" nonce/fleet/ 6

echo "envelopes checked per scenario:"
sed 's/^/    /' verdicts.txt
st_summary
