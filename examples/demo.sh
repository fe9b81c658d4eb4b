#!/usr/bin/env bash
# The encrypted heart-rate demo: a device publishes readings through mqe2e, a
# backend decrypts them, and a plain mosquitto_sub on '#' shows what the
# broker actually carried — ciphertext only.
#
#   examples/demo.sh BUILD_DIR
#
# Environment: MQE2E_BROKER_PORT (default 18830). Starts its own Mosquitto on
# 127.0.0.1, works in a temporary folder and removes everything on exit.
set -euo pipefail

build="${1:-}"
if [ -z "$build" ] || [ ! -d "$build" ]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 1
fi
build="$(cd "$build" && pwd)"
cli="$build/tools/mqe2e/mqe2e"
device="$build/examples/hr_device"
backend="$build/examples/hr_backend"
for b in "$cli" "$device" "$backend"; do
  [ -x "$b" ] || { echo "demo: $b not built (run cmake --build $build)" >&2; exit 1; }
done
for t in mosquitto mosquitto_sub mosquitto_pub; do
  command -v "$t" >/dev/null || { echo "demo: $t not found (apt-get install mosquitto mosquitto-clients)" >&2; exit 1; }
done

port="${MQE2E_BROKER_PORT:-18830}"
readings=10
work="$(mktemp -d "${TMPDIR:-/tmp}/mqe2e-demo.XXXXXX")"
pids=()

cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- broker --------------------------------------------------------------
cat >"$work/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence false
log_dest stderr
CONF
# Logs to stderr, redirected here: run as root, mosquitto drops to its own user
# and could not write a log file inside this private folder.
mosquitto -c "$work/mosquitto.conf" 2>"$work/mosquitto.log" &
pids+=($!)
broker_pid=$!
for _ in $(seq 50); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  kill -0 "$broker_pid" 2>/dev/null || { echo "demo: mosquitto could not start on port $port (in use? set MQE2E_BROKER_PORT)" >&2; cat "$work/mosquitto.log" >&2 || true; exit 1; }
  sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "demo: broker not listening on $port" >&2; exit 1; }

# ---- keys: demo-only passphrases, set here in clear for the demonstration ----
cd "$work"
export MQE2E_EXPORT_PASSPHRASE="demo export passphrase"
MQE2E_PASSPHRASE="demo device passphrase" "$cli" keygen -k device.ks --id hr-1 >/dev/null
MQE2E_PASSPHRASE="demo backend passphrase" "$cli" keygen -k backend.ks --id backend >/dev/null
MQE2E_PASSPHRASE="demo device passphrase" "$cli" group create -k device.ks --group health \
  --topic 'health/#' --out health.grp >/dev/null
MQE2E_PASSPHRASE="demo backend passphrase" "$cli" group import -k backend.ks health.grp >/dev/null
rm -f health.grp   # a group file is a secret: delete it once imported
unset MQE2E_EXPORT_PASSPHRASE

# ---- raw subscriber: what the broker sees (payload as hex) ----------------
mosquitto_sub -h 127.0.0.1 -p "$port" -t '#' -v -F '%t %x' >raw.txt 2>raw.err &
pids+=($!)
# Wait until it is subscribed: publish a plain probe until it shows up.
for _ in $(seq 50); do
  mosquitto_pub -h 127.0.0.1 -p "$port" -t demo/probe -m probe 2>/dev/null || true
  grep -q '^demo/probe ' raw.txt 2>/dev/null && break
  sleep 0.1
done

# ---- backend, then device --------------------------------------------------
MQE2E_KEYSTORE=backend.ks MQE2E_PASSPHRASE="demo backend passphrase" MQE2E_BROKER_PORT="$port" \
  "$backend" "$readings" 30 >backend.out 2>backend.err &
backend_pid=$!
pids+=("$backend_pid")
for _ in $(seq 100); do
  grep -q '^backend subscribed' backend.out 2>/dev/null && break
  kill -0 "$backend_pid" 2>/dev/null || break
  sleep 0.1
done

echo "device hr-1 publishes $readings encrypted readings on health/hr-1/heartrate ..."
MQE2E_KEYSTORE=device.ks MQE2E_PASSPHRASE="demo device passphrase" MQE2E_BROKER_PORT="$port" \
  "$device" "$readings" >device.out
backend_rc=0
wait "$backend_pid" || backend_rc=$?
sleep 0.3   # let the raw subscriber write its last lines

echo
echo "=== What the backend decrypted (hr_backend, holding the group key) ==="
grep '^backend decrypted' backend.out || echo "(nothing)"
grep '^backend counters' backend.out || true
if [ -s backend.err ]; then sed 's/^/backend stderr: /' backend.err; fi

echo
echo "=== What the broker carried (mosquitto_sub -t '#', topic then payload in hex) ==="
grep -v '^demo/probe ' raw.txt || echo "(nothing)"

echo
echo "=== Check ==="
decrypted=$(grep -c '^backend decrypted' backend.out || true)
carried=$(grep -c '^health/hr-1/heartrate ' raw.txt || true)
# Look for the JSON marker "bpm": in every carried payload, byte-aligned in the hex.
marker_hex=$(printf '"bpm":' | od -An -tx1 | tr -d ' \n')
leaks=$(awk -v m="$marker_hex" '
  $1 != "demo/probe" { p = tolower($2); for (i = 1; i + length(m) - 1 <= length(p); i += 2)
                         if (substr(p, i, length(m)) == m) { n++; break } }
  END { print n + 0 }' raw.txt)
status=0
if [ "$decrypted" -eq 0 ]; then
  echo "FAIL: the backend decrypted nothing (exit $backend_rc)"; status=1
else
  echo "ok: the backend decrypted $decrypted of $readings readings"
fi
if [ "$leaks" -ne 0 ]; then
  echo "FAIL: plaintext marker \"bpm\" seen in $leaks payload(s) on the broker"; status=1
elif [ "$carried" -eq 0 ]; then
  echo "FAIL: the raw subscriber saw no heart-rate message"; status=1
else
  echo "ok: the broker carried $carried heart-rate messages and none holds the plaintext \"bpm\""
fi
exit $status
