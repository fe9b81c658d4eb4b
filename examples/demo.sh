#!/usr/bin/env bash
# The encrypted heart-rate demo, with the authority handing out every key:
#
#   1. a Mosquitto as deployments run it — TLS only (a throwaway CA made here
#      with openssl), allow_anonymous false, one broker user per role and the
#      mqe2e ACL — the authority service, an operator;
#   2. the operator creates the group "health" and one enrollment ticket per
#      client (devices hr-1 and hr-2, services backend and py-backend); each
#      client enrolls in one round trip over the broker — no key file is ever
#      copied (py-backend through `python -m mqe2e enroll`);
#   3. hr_device (hr-1) and hr-2 publish, hr_backend (C) and a Python backend
#      (`python -m mqe2e sub`, mqe2e.Client) decrypt, and a plain
#      mosquitto_sub on '#' shows what the broker carried: ciphertext only;
#   4. the operator revokes hr-2: the authority moves the group to epoch 2 and
#      pushes it to hr-1 and the backend only. hr-1 keeps publishing, the
#      backend keeps decrypting, and hr-2's own keystore reads nothing new.
#
#   examples/demo.sh BUILD_DIR
#
# Environment: MQE2E_BROKER_PORT (default 18830); MQE2E_DEMO_PYTHON (default
# /usr/bin/python3, with python3-cffi and python3-paho-mqtt). Starts its own Mosquitto on
# 127.0.0.1, works in a temporary folder and removes everything on exit.
# Exit status 0 only if every check of the final section holds.
set -euo pipefail

build="${1:-}"
if [ -z "$build" ] || [ ! -d "$build" ]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 1
fi
build="$(cd "$build" && pwd)"
source_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cli="$build/tools/mqe2e/mqe2e"
device="$build/examples/hr_device"
backend="$build/examples/hr_backend"
acl_src="$source_dir/docs/mosquitto-acl.conf"
for b in "$cli" "$device" "$backend"; do
  [ -x "$b" ] || { echo "demo: $b not built (run cmake --build $build)" >&2; exit 1; }
done
[ -r "$acl_src" ] || { echo "demo: $acl_src not found" >&2; exit 1; }
for t in mosquitto mosquitto_sub mosquitto_pub mosquitto_passwd openssl; do
  command -v "$t" >/dev/null || { echo "demo: $t not found (apt-get install mosquitto mosquitto-clients openssl)" >&2; exit 1; }
done

port="${MQE2E_BROKER_PORT:-18830}"
host=127.0.0.1
readings=50         # hr-1 readings, one every ~200 ms (hr_device)
revoke_after=10     # revoke hr-2 once hr-1 has published this many
hr2_readings=3
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

section() { printf '\n=== %s ===\n' "$1"; }
# wait_for SECONDS CMD...: poll every 0.1 s until CMD succeeds.
wait_for() {
  local n=$(($1 * 10)); shift
  while [ "$n" -gt 0 ]; do "$@" && return 0; sleep 0.1; n=$((n - 1)); done
  return 1
}
# Epoch of a carried envelope: its first field is 0x20 epoch (small varint).
epoch_of() {
  awk '{ h = tolower(substr($2, 3, 2)); e = "?"
         if (substr($2, 1, 2) == "20" && h ~ /^[0-7][0-9a-f]$/)
           e = (index("0123456789abcdef", substr(h, 1, 1)) - 1) * 16 + index("0123456789abcdef", substr(h, 2, 1)) - 1
         print e }'
}
in_file() { grep -q -- "$1" "$2" 2>/dev/null; }
die() {
  echo "demo: $*" >&2
  local f
  for f in mosquitto.log authority.log; do
    [ -s "$work/$f" ] && { echo "--- last lines of $f" >&2; tail -n 15 "$work/$f" >&2; }
  done
  exit 1
}

cd "$work"
umask 077   # tickets, password files and keystores: owner only

# Demo-only secrets, set here in clear for the demonstration. Every party has
# its own keystore passphrase; nothing secret is ever passed in argv.
pass_authority="demo authority passphrase"
pass_operator="demo operator passphrase"
pass_hr1="demo hr-1 passphrase"
pass_hr2="demo hr-2 passphrase"
pass_backend="demo backend passphrase"
broker_pw_authority="demo-authority-broker-password"
broker_pw_operator="demo-operator-broker-password"
broker_pw_device="demo-device-broker-password"
broker_pw_backend="demo-backend-broker-password"
broker_pw_eavesdropper="demo-eavesdropper-broker-password"

# ---- TLS: a throwaway CA and the broker's certificate (localhost) ----------
{
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj "/CN=mqe2e demo CA" -keyout ca.key -out ca.pem &&
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=localhost" -keyout server.key -out server.csr &&
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >server.ext &&
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
    -extfile server.ext -out server.pem
} >openssl.log 2>&1 || die "openssl could not make the demo certificates: $(tail -n 3 openssl.log)"

# ---- broker: TLS, logins, the project's ACL, plus a curious reader of '#' ---
mosquitto_passwd -c -b passwd mqe2e-authority "$broker_pw_authority" >/dev/null
mosquitto_passwd -b passwd mqe2e-operator "$broker_pw_operator" >/dev/null
mosquitto_passwd -b passwd mqe2e-device "$broker_pw_device" >/dev/null
mosquitto_passwd -b passwd mqe2e-backend "$broker_pw_backend" >/dev/null
mosquitto_passwd -b passwd eavesdropper "$broker_pw_eavesdropper" >/dev/null
for role in authority operator device backend; do
  v="broker_pw_$role"
  printf '%s\n' "${!v}" >"$role.pw"
done
cp "$acl_src" acl.conf
cat >>acl.conf <<'ACL'

# ---- added by examples/demo.sh: the eavesdropper plays the curious broker ----
user eavesdropper
topic read #
ACL
cat >mosquitto.conf <<CONF
per_listener_settings false
listener $port $host
cafile $work/ca.pem
certfile $work/server.pem
keyfile $work/server.key
allow_anonymous false
password_file $work/passwd
acl_file $work/acl.conf
persistence false
log_dest stderr
CONF
# Run as root, mosquitto would switch to its own user and could not read this
# private folder: keep the current user.
if [ "$(id -u)" -eq 0 ]; then echo "user root" >>mosquitto.conf; fi
mosquitto -c mosquitto.conf 2>mosquitto.log &
broker_pid=$!
pids+=("$broker_pid")
port_open() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }
for _ in $(seq 50); do
  port_open && break
  kill -0 "$broker_pid" 2>/dev/null || die "mosquitto could not start on port $port (in use? set MQE2E_BROKER_PORT)"
  sleep 0.1
done
port_open || die "broker not listening on $port"

# Every mqe2e command reads its broker defaults from this options file (the
# mosquitto_pub option names); each role adds its own -u and password file.
printf '%s\n' "-h localhost" "-p $port" "--cafile $work/ca.pem" >broker.options
export MQE2E_OPTIONS_FILE="$work/broker.options"
tls_host=localhost   # the name in the broker's certificate

# ---- authority and operator --------------------------------------------------
MQE2E_PASSPHRASE="$pass_authority" "$cli" authority init -K authority.ks --db authority.db \
  --id authority >pin.txt 2>authority-init.err || die "authority init failed: $(cat authority-init.err)"
pin="$(head -n 1 pin.txt)"
MQE2E_PASSPHRASE="$pass_operator" "$cli" keygen -K operator.ks --id operator >operator.txt
operator_sign="$(sed -n 's/^signing public key: *//p' operator.txt)"
MQE2E_PASSPHRASE="$pass_authority" "$cli" authority operator-add -K authority.ks --db authority.db \
  --name operator --sign-public "$operator_sign" 2>/dev/null || die "operator-add failed"
MQE2E_PASSPHRASE="$pass_authority" "$cli" authority run -K authority.ks --db authority.db \
  -u mqe2e-authority --password-file authority.pw 2>authority.log &
pids+=($!)
wait_for 10 in_file serving authority.log || die "the authority did not start"

# op ARGS...: an operator command, signed with the operator keystore.
op() {
  MQE2E_PASSPHRASE="$pass_operator" MQE2E_AUTHORITY="$pin" \
    "$cli" "$@" -K operator.ks -u mqe2e-operator --password-file operator.pw -W 10
}

echo "broker: TLS on $tls_host:$port, allow_anonymous false, one user per role"
echo "authority running; pin (public): ${pin:0:40}..."
op group create --group health --topic 'health/#' || die "group create failed"
op token create --id hr-1 --grant 'health/hr-1/#:pub' --group health >hr-1.ticket || die "token hr-1"
op token create --id hr-2 --grant 'health/hr-2/#:pub' --group health >hr-2.ticket || die "token hr-2"
op token create --id backend --role service --grant 'health/#:sub' --group health \
  >backend.ticket || die "token backend"
op token create --id py-backend --role service --grant 'health/#:sub' --group health \
  >py-backend.ticket || die "token py-backend"

# ---- enrollment --------------------------------------------------------------
section "ENROLLMENT (one round trip each over the broker; tickets from files, never argv)"
enroll() { # enroll ID KEYSTORE PASSPHRASE ROLE
  local rc=0
  MQE2E_PASSPHRASE="$3" "$cli" enroll -K "$2" --ticket-file "$1.ticket" \
    -u "mqe2e-$4" --password-file "$4.pw" -W 20 -d >"enroll-$1.out" 2>"enroll-$1.err" || rc=$?
  rm -f "$1.ticket"   # single use, and a secret: gone once used
  [ "$rc" -eq 0 ] || { cat "enroll-$1.err" >&2; die "enrollment of $1 failed (exit $rc)"; }
  local tries
  tries=$(grep -c 'ENROLL step 1' "enroll-$1.err" || true)
  printf '%s\n    (%s ENROLL request(s) sent; MQTT client id for the data session: %s)\n' \
    "$(cat "enroll-$1.out")" "$tries" "$1"
}
enroll hr-1 hr1.ks "$pass_hr1" device
enroll hr-2 hr2.ks "$pass_hr2" device
enroll backend backend.ks "$pass_backend" backend
# A Python backend next to the C one (python/, docs/PYTHON.md): same ticket
# flow, through `python -m mqe2e` and the mqe2e package over libmqe2e.
py="${MQE2E_DEMO_PYTHON:-/usr/bin/python3}"
# MQE2E_DEMO_SKIP_PYTHON=1 leaves the Python backend out: a sanitizer build's
# libmqe2e cannot be loaded into an uninstrumented python3.
with_py=1
[ "${MQE2E_DEMO_SKIP_PYTHON:-0}" = 1 ] && with_py=0
pyrun() {
  MQE2E_PASSPHRASE="$pass_backend" PYTHONPATH="$source_dir/python" MQE2E_BUILD_DIR="$build" \
    PYTHONDONTWRITEBYTECODE=1 "$py" -m mqe2e "$@"
}
if [ "$with_py" -eq 1 ]; then
  pyrun enroll -K py-backend.ks --ticket-file py-backend.ticket -h "$tls_host" -p "$port" \
    --cafile ca.pem -u mqe2e-backend --password-file backend.pw -W 20 \
    >enroll-py-backend.out 2>enroll-py-backend.err ||
    die "enrollment of py-backend (python -m mqe2e enroll) failed: $(cat enroll-py-backend.err)"
  printf '%s\n    (python -m mqe2e enroll)\n' "$(cat enroll-py-backend.out)"
else
  echo "py-backend: Python backend skipped (MQE2E_DEMO_SKIP_PYTHON=1)"
fi
rm -f py-backend.ticket

# ---- raw subscriber: what the broker sees (payload as hex) -------------------
mosquitto_sub -h "$tls_host" -p "$port" --cafile ca.pem -u eavesdropper -P "$broker_pw_eavesdropper" \
  -t '#' -v -F '%t %x' >raw.txt 2>raw.err &
pids+=($!)
# Wait until it is subscribed: publish a plain probe until it shows up.
for _ in $(seq 50); do
  mosquitto_pub -h "$tls_host" -p "$port" --cafile ca.pem -u mqe2e-device -P "$broker_pw_device" \
    -t demo/probe -m probe 2>/dev/null || true
  in_file '^demo/probe ' raw.txt && break
  sleep 0.1
done
in_file '^demo/probe ' raw.txt || die "the raw subscriber did not come up: $(cat raw.err)"

# ---- backend, then the devices ------------------------------------------------
expected=$((readings + hr2_readings))
MQE2E_KEYSTORE=backend.ks MQE2E_PASSPHRASE="$pass_backend" MQE2E_BROKER_HOST="$tls_host" \
  MQE2E_BROKER_PORT="$port" MQE2E_BROKER_CAFILE=ca.pem MQE2E_BROKER_USERNAME=mqe2e-backend \
  MQE2E_BROKER_PASSWORD="$broker_pw_backend" "$backend" "$expected" 40 >backend.out 2>backend.err &
backend_pid=$!
pids+=("$backend_pid")
wait_for 10 in_file '^backend subscribed' backend.out || die "hr_backend did not subscribe"
py_pid=""
if [ "$with_py" -eq 1 ]; then
  pyrun sub -K py-backend.ks -h "$tls_host" -p "$port" --cafile ca.pem -u mqe2e-backend \
    --password-file backend.pw -t 'health/#' -q 1 -v -C "$expected" -W 40 >py-backend.out 2>py-backend.err &
  py_pid=$!
  pids+=("$py_pid")
  wait_for 10 in_file 'subscribed to' py-backend.err || die "the Python backend did not subscribe: $(cat py-backend.err)"
fi

echo
echo "hr-1 (hr_device) publishes $readings readings on health/hr-1/heartrate;"
echo "hr-2 (mqe2e pub) publishes $hr2_readings readings on health/hr-2/heartrate ..."
MQE2E_KEYSTORE=hr1.ks MQE2E_PASSPHRASE="$pass_hr1" MQE2E_BROKER_HOST="$tls_host" \
  MQE2E_BROKER_PORT="$port" MQE2E_BROKER_CAFILE=ca.pem MQE2E_BROKER_USERNAME=mqe2e-device \
  MQE2E_BROKER_PASSWORD="$broker_pw_device" "$device" "$readings" >device.out 2>device.err &
device_pid=$!
pids+=("$device_pid")
for i in $(seq "$hr2_readings"); do
  printf '{"device":"hr-2","bpm":%d,"seq":%d}\n' $((80 + i)) "$i"
done | MQE2E_PASSPHRASE="$pass_hr2" "$cli" pub -K hr2.ks -i hr-2 -u mqe2e-device --password-file device.pw -q 1 \
  -t health/hr-2/heartrate -l 2>hr2-pub.err || die "hr-2 could not publish: $(cat hr2-pub.err)"

published() { grep -c '^device published' device.out 2>/dev/null || true; }
at_least() { [ "$(published)" -ge "$1" ]; }
wait_for 20 at_least "$revoke_after" || die "hr_device stalled: $(cat device.err)"

# ---- revocation -----------------------------------------------------------------
section "REVOCATION (mqe2e revoke --id hr-2)"
revoked_at_seq=$(published)
op revoke --id hr-2 >revoke.out || die "revoke failed"
sed 's/^/operator: /' revoke.out
echo "hr-1 had published $revoked_at_seq readings when hr-2 was revoked"
# hr-1 publishes under epoch 2 once the authority's push reached it.
epoch2_seen() { grep -q '^health/hr-1/heartrate 2002' raw.txt; }
wait_for 10 epoch2_seen || die "hr-1 never moved to epoch 2"
grep -E 'revoked|rotated|push' authority.log | sed 's/^[^ ]* authority: /authority log: /' || true

# hr-2's own keystore, with everything it held before the revocation, listens
# for 5 s: it connects as hr-2, its HELLO is answered REVOKED, and the
# readings it sees are sealed under epoch 2, which it was never given.
echo "a subscriber with hr-2's keystore listens on health/# for 5 s ..."
revoked_rc=0
MQE2E_PASSPHRASE="$pass_hr2" "$cli" sub -K hr2.ks -i hr-2 -u mqe2e-device --password-file device.pw -t 'health/#' -v \
  -W 5 >revoked.out 2>revoked.err || revoked_rc=$?

device_rc=0
wait "$device_pid" || device_rc=$?
backend_rc=0
wait "$backend_pid" || backend_rc=$?
py_rc=0
if [ -n "$py_pid" ]; then wait "$py_pid" || py_rc=$?; fi
sleep 0.3   # let the raw subscriber write its last lines

revoked_lines=$(grep -c . revoked.out || true)
revoked_drops=$(grep -c 'dropped message' revoked.err || true)
echo "hr-2's subscriber decrypted $revoked_lines message(s) and dropped $revoked_drops (exit $revoked_rc: -W expired):"
if [ -s revoked.err ]; then sed 's/^/    /' revoked.err | head -n 2; fi
MQE2E_PASSPHRASE="$pass_hr2" "$cli" status -K hr2.ks 2>/dev/null | grep 'group health' \
  | sed 's/^ */hr-2 keystore still holds only: /' || true

# Which hr-1 reading went out first under epoch 2: hr-1 publishes in order at
# QoS 1, so the n-th hr-1 envelope on the broker is reading n.
first_e2=$(grep '^health/hr-1/heartrate ' raw.txt | epoch_of | awk '$1 == 2 { print NR; exit }')
if [ -n "$first_e2" ]; then
  e2_decrypted=$(grep '^backend decrypted \[health/hr-1/heartrate\]' backend.out \
    | sed -n 's/.*"seq":\([0-9]*\).*/\1/p' | awk -v f="$first_e2" '$1 >= f' | wc -l)
  echo "the backend decrypted $e2_decrypted hr-1 readings sealed under epoch 2 (seq $first_e2 onwards), e.g.:"
  grep "^backend decrypted \[health/hr-1/heartrate\].*\"seq\":$first_e2}" backend.out | sed 's/^/    /'
  grep '^backend decrypted \[health/hr-1/heartrate\]' backend.out | tail -n 1 | sed 's/^/    /'
fi

# ---- what each side saw -----------------------------------------------------------

section "What the backend decrypted (hr_backend, enrolled as 'backend')"
grep '^backend decrypted' backend.out | sed -n '1,3p'
echo "    ..."
grep '^backend decrypted' backend.out | tail -n 3
grep '^backend counters' backend.out || true
if [ -s backend.err ]; then sed 's/^/backend stderr: /' backend.err | head -n 5; fi

if [ "$with_py" -eq 1 ]; then
  section "What the Python backend printed (python -m mqe2e sub, enrolled as 'py-backend')"
  sed -n '1,3p' py-backend.out
  echo "    ..."
  tail -n 2 py-backend.out
  { grep -v 'subscribed to' py-backend.err || true; } | sed 's/^/python backend stderr: /' | head -n 5
fi

section "What the broker carried (mosquitto_sub -t '#': topic, then payload in hex)"
grep '^health/' raw.txt | sed -n '1,3p'
echo "    ..."
grep '^health/' raw.txt | tail -n 2
for t in health/hr-1/heartrate health/hr-2/heartrate; do
  grep "^$t " raw.txt | epoch_of | sort | uniq -c | awk -v t="$t" '{ printf "%s: %d message(s) under epoch %s\n", t, $1, $2 }'
done
control=$(grep -c '^mqe2e/' raw.txt || true)
echo "control plane (mqe2e/authority, mqe2e/client/..., mqe2e/revocations): $control message(s):"
echo "    Noise handshake frames and the signed revocation list, no key in clear"

# ---- check -----------------------------------------------------------------------
section "Check"
status=0
hr1_decrypted=$(grep -c '^backend decrypted \[health/hr-1/heartrate\]' backend.out || true)
hr1_after=$(grep '^backend decrypted \[health/hr-1/heartrate\]' backend.out \
  | sed -n 's/.*"seq":\([0-9]*\).*/\1/p' | awk -v r="$revoked_at_seq" '$1 > r' | wc -l)
hr1_epoch2=$(grep '^health/hr-1/heartrate ' raw.txt | epoch_of | grep -c '^2$' || true)
marker_hex=$(printf 'bpm' | od -An -tx1 | tr -d ' \n')
leaks=$(awk -v m="$marker_hex" '
  $1 != "demo/probe" { p = tolower($2); for (i = 1; i + length(m) - 1 <= length(p); i += 2)
                         if (substr(p, i, length(m)) == m) { n++; break } }
  END { print n + 0 }' raw.txt)
carried=$(grep -c '^health/' raw.txt || true)

if [ "$device_rc" -ne 0 ]; then
  echo "FAIL: hr_device exited $device_rc: $(head -n 1 device.err)"; status=1
fi
if [ "$hr1_decrypted" -eq "$readings" ] && [ "$backend_rc" -eq 0 ]; then
  echo "ok: the backend decrypted all $readings hr-1 readings ($hr1_after of them after the revocation)"
else
  echo "FAIL: the backend decrypted $hr1_decrypted of $readings hr-1 readings (exit $backend_rc)"; status=1
fi
if [ "$with_py" -eq 1 ]; then
  py_hr1=$(grep -c '^health/hr-1/heartrate {' py-backend.out || true)
  if [ "$py_hr1" -eq "$readings" ] && [ "$py_rc" -eq 0 ]; then
    echo "ok: the Python backend (mqe2e.Client) decrypted all $readings hr-1 readings"
  else
    echo "FAIL: the Python backend decrypted $py_hr1 of $readings hr-1 readings (exit $py_rc)"; status=1
  fi
fi
if [ "$hr1_epoch2" -gt 0 ]; then
  echo "ok: hr-1 moved to epoch 2 after the revocation ($hr1_epoch2 readings under epoch 2)"
else
  echo "FAIL: no hr-1 reading under epoch 2"; status=1
fi
if [ "$leaks" -ne 0 ]; then
  echo "FAIL: plaintext \"bpm\" seen in $leaks payload(s) on the broker"; status=1
elif [ "$carried" -eq 0 ]; then
  echo "FAIL: the raw subscriber saw no heart-rate message"; status=1
else
  echo "ok: the broker carried $carried heart-rate messages and none holds the plaintext \"bpm\""
fi
if [ "$revoked_lines" -eq 0 ]; then
  echo "ok: the revoked client decrypted 0 messages after its revocation"
else
  echo "FAIL: the revoked client decrypted $revoked_lines message(s) after its revocation"; status=1
fi
exit $status
