#!/usr/bin/env bash
# Runs the examples end to end against real Mosquitto brokers:
#   - switch_device + switch_controller with a real authority (`mqe2e authority
#     run`, clients enrolled with `mqe2e enroll`): commands over the pairwise
#     channel are obeyed; a replayed copy, a plaintext "on" and a command from
#     another enrolled client are refused and printed as refused;
#   - retained_last_value: a late subscriber decrypts the retained value after
#     a rotation (grace period) and is refused once the grace period is over;
#   - gateway_forwarder between two brokers: the backend decrypts what the
#     gateway forwarded under the same topic, the cloud broker carried no
#     plaintext, and a re-topiced copy fails authentication.
#
#   MQE2E_BUILD_DIR=build MQE2E_SOURCE_DIR=. bash tests/integration/test_examples.sh
set -uo pipefail

src="${MQE2E_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
build="${MQE2E_BUILD_DIR:-$src/build}"
cli="$build/tools/mqe2e/mqe2e"
ex="$build/examples"
work="$(mktemp -d "${TMPDIR:-/tmp}/mqe2e-examples.XXXXXX")"
pids=()
passed=0
failed=0

cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ok() { echo "ok   - $1"; passed=$((passed + 1)); }
fail() { echo "FAIL - $1"; failed=$((failed + 1)); }
check() { # check NAME COMMAND...
  local name="$1"; shift
  if "$@"; then ok "$name"; else fail "$name"; fi
}
show() { # show FILE...: print files after a failure
  local f
  for f in "$@"; do [ -s "$f" ] && sed "s|^|    $(basename "$f"): |" "$f"; done
  return 0
}

start_broker() { # start_broker NAME -> sets broker_port
  local name="$1" port pid
  for _ in $(seq 20); do
    port=$((20000 + RANDOM % 40000))
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n' \
      "$port" >"$work/$name.conf"
    mosquitto -c "$work/$name.conf" 2>"$work/$name.log" &
    pid=$!
    for _ in $(seq 50); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        pids+=("$pid"); broker_port=$port; return 0
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  done
  echo "cannot start mosquitto" >&2
  return 1
}

start_raw_sub() { # start_raw_sub PORT FILTER FILE: "topic hexpayload" lines, live on return
  mosquitto_sub -h 127.0.0.1 -p "$1" -t "$2" -t probe/raw -v -F '%t %x' >"$3" 2>/dev/null &
  pids+=($!)
  for _ in $(seq 50); do
    mosquitto_pub -h 127.0.0.1 -p "$1" -t probe/raw -m probe 2>/dev/null
    grep -q '^probe/raw ' "$3" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

wait_for() { # wait_for FILE PATTERN [TENTHS]: until a line of FILE matches
  local n="${3:-100}"
  for _ in $(seq "$n"); do
    grep -q -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

hex() { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }
count_plain() { # count_plain FILE TOPIC TEXT: lines on TOPIC whose payload holds TEXT
  awk -v t="$2" -v m="$(hex "$3")" '
    $1 == t { p = tolower($2); for (i = 1; i + length(m) - 1 <= length(p); i += 2)
                if (substr(p, i, length(m)) == m) { n++; break } }
    END { print n + 0 }' "$1"
}
count_lines() { grep -c -- "$2" "$1" 2>/dev/null || true; }

for t in "$cli" "$ex/switch_device" "$ex/switch_controller" "$ex/retained_last_value" \
         "$ex/gateway_forwarder" mosquitto mosquitto_sub mosquitto_pub xxd; do
  command -v "$t" >/dev/null || { echo "missing $t"; echo "0 passed, 1 failed"; exit 1; }
done
start_broker site || { echo "0 passed, 1 failed"; exit 1; }
site=$broker_port
start_broker cloud || { echo "0 passed, 1 failed"; exit 1; }
cloud=$broker_port
cd "$work"
export MQE2E_PASSPHRASE="examples test passphrase"
export MQE2E_BROKER_HOST=127.0.0.1

# =========================================================================
# 1. The switch: a command channel, with a real authority on the site broker.
# =========================================================================
printf '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n' >auth.key
chmod 600 auth.key
pin=$("$cli" authority init -K auth.ks --key-file auth.key --db auth.db --id authority 2>/dev/null |
      head -n 1)
op_pub=$("$cli" keygen -K op.ks --key-file auth.key --id op1 |
         sed -n 's/.*signing public key: \([0-9a-f]\{64\}\).*/\1/p')
"$cli" authority operator-add -K auth.ks --key-file auth.key --db auth.db --name op1 \
  --sign-public "$op_pub" >/dev/null 2>&1
"$cli" authority run -K auth.ks --key-file auth.key --db auth.db -h 127.0.0.1 -p "$site" \
  >authority.log 2>&1 &
pids+=($!)
check "switch: the authority serves" wait_for authority.log serving 200

enroll() { # enroll ID: a token from the operator, then `mqe2e enroll` into ID.ks
  local ticket
  ticket=$("$cli" token create -K op.ks --key-file auth.key --authority "$pin" \
             -h 127.0.0.1 -p "$site" -W 20 --id "$1" 2>>enroll.err | head -n 1)
  MQE2E_TICKET="$ticket" "$cli" enroll -K "$1.ks" -h 127.0.0.1 -p "$site" -W 20 \
    >>enroll.out 2>>enroll.err
}
check "switch: enroll sw-1, ctl-1 and mallory" \
  bash -c "$(declare -f enroll); cli='$cli' pin='$pin' site='$site'; enroll sw-1 && enroll ctl-1 && enroll mallory"
[ "$failed" -eq 0 ] || show enroll.out enroll.err authority.log

# The device obeys ctl-1 only; it exits after 3 accepted commands.
start_raw_sub "$site" 'cmd/#' wire.txt || fail "switch: wire subscriber did not start"
MQE2E_KEYSTORE=sw-1.ks MQE2E_BROKER_PORT=$site "$ex/switch_device" ctl-1 3 60 \
  >device.out 2>device.err &
device_pid=$!
pids+=("$device_pid")
check "switch: the device is ready" wait_for device.out '^switch sw-1 ready' 150

MQE2E_KEYSTORE=ctl-1.ks MQE2E_BROKER_PORT=$site "$ex/switch_controller" sw-1 on off \
  >controller.out 2>controller.err
check "switch: the controller sent two commands over the channel" \
  grep -q '^controller ctl-1: sent 2 command(s) to sw-1 over the channel' controller.out
check "switch: the device accepted \"on\" then \"off\"" \
  wait_for device.out 'accepted "off" -> OFF' 100
check "switch: ... in that order" \
  test "$(grep -o 'accepted "[a-z]*"' device.out | tr '\n' ' ')" = 'accepted "on" accepted "off" '

wait_for wire.txt '^cmd/sw-1 ' 50
env_hex=$(awk '$1 == "cmd/sw-1" { print $2; exit }' wire.txt)
check "switch: the broker carried an envelope, not the command (${#env_hex} hex digits)" \
  test "${#env_hex}" -gt 36
printf '%s' "$env_hex" | xxd -r -p >replayed.bin

# A replayed copy of the genuine "on".
mosquitto_pub -h 127.0.0.1 -p "$site" -q 1 -t cmd/sw-1 -f replayed.bin
check "switch: a replayed command is refused" \
  wait_for device.out 'refused a message on cmd/sw-1: sequence number already seen' 100
# A plain "on" from anyone with broker access.
mosquitto_pub -h 127.0.0.1 -p "$site" -q 1 -t cmd/sw-1 -m on
check "switch: a plaintext command is refused" \
  wait_for device.out 'refused a message on cmd/sw-1: malformed' 100
# Another enrolled client, mallory, sending "on" over its own channel.
before=$(count_lines device.out 'refused a message')
MQE2E_KEYSTORE=mallory.ks MQE2E_BROKER_PORT=$site "$ex/switch_controller" sw-1 on \
  >mallory.out 2>mallory.err
for _ in $(seq 100); do
  [ "$(count_lines device.out 'refused a message')" -gt "$before" ] && break
  sleep 0.1
done
check "switch: a command from another enrolled client is refused" \
  test "$(count_lines device.out 'refused a message')" -gt "$before"
check "switch: nothing forged was obeyed" test "$(count_lines device.out accepted)" = 2

# A third genuine command: accepted; the device stops after 3.
MQE2E_KEYSTORE=ctl-1.ks MQE2E_BROKER_PORT=$site "$ex/switch_controller" sw-1 toggle \
  >>controller.out 2>>controller.err
device_rc=0
for _ in $(seq 150); do kill -0 "$device_pid" 2>/dev/null || break; sleep 0.1; done
wait "$device_pid" || device_rc=$?
check "switch: the device accepted \"toggle\" and exited 0 after 3 commands" \
  test "$device_rc" = 0 -a "$(count_lines device.out accepted)" = 3
check "switch: the device printed its counters" grep -q '^switch sw-1: channel messages opened' device.out
[ "$failed" -eq 0 ] || show device.out device.err controller.err mallory.out mallory.err

# =========================================================================
# 2. A retained last value read late, across a rotation.
# =========================================================================
export MQE2E_EXPORT_PASSPHRASE="examples export passphrase"
"$cli" keygen -K lv-pub.ks --id boiler >/dev/null
"$cli" keygen -K lv-read.ks --id dashboard >/dev/null
"$cli" keygen -K lv-none.ks --id stranger >/dev/null
"$cli" group create -K lv-pub.ks --group status --topic 'status/#' --out status.grp >/dev/null
"$cli" group import -K lv-read.ks status.grp >/dev/null
lv() { MQE2E_BROKER_PORT=$site "$ex/retained_last_value" "$@"; }

MQE2E_KEYSTORE=lv-pub.ks lv publish status/boiler/last 'setpoint=21.5C' >lv-pub.out 2>lv-pub.err
check "retained: published at epoch 1" grep -q 'epoch 1)$' lv-pub.out
mosquitto_sub -h 127.0.0.1 -p "$site" -t status/boiler/last -C 1 -W 5 -v -F '%t %x' \
  >lv-raw.txt 2>/dev/null
check "retained: the broker keeps an envelope, not the value" \
  test "$(count_plain lv-raw.txt status/boiler/last setpoint)" = 0 -a -s lv-raw.txt

# Rotate; the late reader holds epoch 2 and epoch 1 retired (in grace).
"$cli" group rotate -K lv-pub.ks --group status --out status.grp >/dev/null
"$cli" group import -K lv-read.ks status.grp >/dev/null
rm -f status.grp
MQE2E_KEYSTORE=lv-read.ks lv read status/boiler/last 5 >lv-read.out 2>lv-read.err
rc=$?
check "retained: a late subscriber decrypts the epoch-1 value after the rotation" \
  test "$rc" = 0 -a "$(count_lines lv-read.out '^read retained value on status/boiler/last: setpoint=21.5C$')" = 1
check "retained: it shows epoch 2 current and epoch 1 in grace" \
  bash -c "grep -q 'current epoch 2' lv-read.out && grep -q 'epoch 1 retired, readable for' lv-read.out"
MQE2E_KEYSTORE=lv-none.ks lv read status/boiler/last 2 >lv-none.out 2>lv-none.err
check "retained: a subscriber without the group reads nothing" test $? -ne 0
sleep 2 # past a 1-second grace period
MQE2E_KEYSTORE=lv-read.ks lv read status/boiler/last 3 1 >lv-late.out 2>lv-late.err
rc=$?
check "retained: past the grace period the old value is refused as expired" \
  test "$rc" = 1 -a "$(count_lines lv-late.out 'refused the message on status/boiler/last: epoch past its grace')" = 1
MQE2E_KEYSTORE=lv-pub.ks lv publish status/boiler/last 'setpoint=22C' >>lv-pub.out 2>>lv-pub.err
MQE2E_KEYSTORE=lv-read.ks lv read status/boiler/last 5 1 >lv-new.out 2>lv-new.err
check "retained: republished under epoch 2 it is readable again" \
  grep -q '^read retained value on status/boiler/last: setpoint=22C$' lv-new.out
[ "$failed" -eq 0 ] || show lv-pub.out lv-pub.err lv-read.out lv-read.err lv-late.out lv-new.out

# =========================================================================
# 3. A gateway forwarding ciphertext from the site broker to the cloud broker.
# =========================================================================
"$cli" keygen -K gw-dev.ks --id plant-sensor >/dev/null
"$cli" keygen -K gw-back.ks --id cloud-backend >/dev/null
"$cli" group create -K gw-dev.ks --group site --topic 'site/#' --out site.grp >/dev/null
"$cli" group import -K gw-back.ks site.grp >/dev/null
rm -f site.grp
unset MQE2E_EXPORT_PASSPHRASE

start_raw_sub "$cloud" 'site/#' cloud-raw.txt || fail "gateway: cloud raw subscriber did not start"
MQE2E_BROKER_PORT=$site MQE2E_CLOUD_PORT=$cloud "$ex/gateway_forwarder" -n 3 \
  >gw.out 2>gw.err &
gw_pid=$!
pids+=("$gw_pid")
wait_for gw.out '^gateway forwarding' 100
"$cli" sub -K gw-back.ks -h 127.0.0.1 -p "$cloud" -t 'site/#' -v -C 3 -W 30 -d \
  >back.out 2>back.err &
back_pid=$!
pids+=("$back_pid")
wait_for back.err 'subscribed to' 100
for v in 20 21 22; do
  "$cli" pub -K gw-dev.ks -h 127.0.0.1 -p "$site" -q 1 -t site/plant1/temp -m "temp=$v" \
    2>>dev.err
done
back_rc=0
wait "$back_pid" || back_rc=$?
gw_rc=0
wait "$gw_pid" || gw_rc=$?
check "gateway: forwarded 3 messages and exited 0" \
  test "$gw_rc" = 0 -a "$(count_lines gw.out '^forwarded .* site/plant1/temp -> site/plant1/temp$')" = 3
check "gateway: the cloud backend decrypted all 3" \
  test "$back_rc" = 0 -a "$(tr '\n' ' ' <back.out)" = 'site/plant1/temp temp=20 site/plant1/temp temp=21 site/plant1/temp temp=22 '
sleep 0.3
check "gateway: the cloud broker carried 3 envelopes and no plaintext" \
  test "$(awk '$1 == "site/plant1/temp"' cloud-raw.txt | wc -l)" = 3 -a \
       "$(count_plain cloud-raw.txt site/plant1/temp temp=)" = 0
[ "$failed" -eq 0 ] || show gw.out gw.err back.out back.err dev.err

# Re-topiced: the same bytes under another name fail authentication.
MQE2E_BROKER_PORT=$site MQE2E_CLOUD_PORT=$cloud "$ex/gateway_forwarder" -n 1 \
  --retopic site/relay/ >gw2.out 2>gw2.err &
gw_pid=$!
pids+=("$gw_pid")
wait_for gw2.out '^gateway forwarding' 100
"$cli" sub -K gw-back.ks -h 127.0.0.1 -p "$cloud" -t 'site/#' -v -C 1 -W 5 -d \
  >back2.out 2>back2.err &
back_pid=$!
pids+=("$back_pid")
wait_for back2.err 'subscribed to' 100
"$cli" pub -K gw-dev.ks -h 127.0.0.1 -p "$site" -q 1 -t site/plant1/temp -m "temp=23" 2>>dev.err
back_rc=0
wait "$back_pid" || back_rc=$?
wait "$gw_pid" 2>/dev/null
check "gateway: a re-topiced copy is refused (authentication failed), never printed" \
  test "$back_rc" = 4 -a ! -s back2.out -a \
       "$(count_lines back2.err 'dropped message on site/relay/site/plant1/temp: .*authentication failed')" = 1
[ "$failed" -eq 0 ] || show gw2.out gw2.err back2.out back2.err

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
