#!/usr/bin/env bash
# The CLI against a broker as people run it: a real Mosquitto with TLS
# listeners only (a throwaway CA and server certificate made here with
# openssl), allow_anonymous false, a password file (mosquitto_passwd, one
# user per role) and the shipped ACL (docs/mosquitto-acl.conf).
#
# Checks: authority run, operator commands (group create, token create, list,
# status, revoke), enroll, pub/sub through TLS with broker login (password
# from a file, from MQE2E_BROKER_PASSWORD and from the options file), a
# client-certificate listener, retained clear with -n, and the failures:
# wrong CA (exit 6), wrong password and anonymous (exit 5), each with a
# one-line reason.
#
# Needs MQE2E_BUILD_DIR and MQE2E_SOURCE_DIR (ctest sets them).
set -u

build="${MQE2E_BUILD_DIR:?set MQE2E_BUILD_DIR to the build folder}"
src="${MQE2E_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
cli="$build/tools/mqe2e/mqe2e"
[ -x "$cli" ] || { echo "test_tls_login: $cli not built" >&2; exit 1; }
for t in mosquitto mosquitto_passwd mosquitto_sub openssl; do
  command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] || { echo "test_tls_login: $t missing" >&2; exit 1; }
done
mosquitto_bin="$(command -v mosquitto || echo /usr/sbin/mosquitto)"

# shellcheck source=../support/scripttest.sh
. "$src/tests/support/scripttest.sh"
st_workdir tls
umask 077
# Nothing from the developer's own ~/.config/mqe2e.
export MQE2E_OPTIONS_FILE=
unset MQE2E_AUTHORITY MQE2E_BROKER_PASSWORD MQE2E_PASSPHRASE

in_file() { grep -q -- "$1" "$2" 2>/dev/null; }

# ---- a throwaway PKI ---------------------------------------------------------
pki() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=mqe2e test CA" -keyout ca.key -out ca.pem &&
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=some other CA" -keyout other-ca.key -out other-ca.pem &&
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=localhost" -keyout server.key -out server.csr &&
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >server.ext &&
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile server.ext -out server.pem &&
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=hr-1" -keyout client.key -out client.csr &&
  openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -out client.pem
}
pki >pki.log 2>&1 || { cat pki.log; echo "test_tls_login: openssl failed" >&2; exit 1; }
chmod 644 ca.pem server.pem server.key

# ---- the broker: two TLS listeners, passwords, the shipped ACL ----------------
for role in authority device backend operator; do
  printf '%s-pw-%s\n' "$role" "$RANDOM$RANDOM" >"$role.pw"
done
: >passwd
mosquitto_passwd -b passwd mqe2e-authority "$(cat authority.pw)"
mosquitto_passwd -b passwd mqe2e-device "$(cat device.pw)"
mosquitto_passwd -b passwd mqe2e-backend "$(cat backend.pw)"
mosquitto_passwd -b passwd mqe2e-operator "$(cat operator.pw)"
chmod 644 passwd
port=$(free_port)
cport=$(free_port)
cat >mosquitto.conf <<EOF
per_listener_settings false
allow_anonymous false
password_file $work/passwd
acl_file $src/docs/mosquitto-acl.conf
persistence false
log_dest file $work/mosquitto.log
listener $port 127.0.0.1
cafile $work/ca.pem
certfile $work/server.pem
keyfile $work/server.key
listener $cport 127.0.0.1
cafile $work/ca.pem
certfile $work/server.pem
keyfile $work/server.key
require_certificate true
EOF
# Started as root, Mosquitto drops to its own user, which may not read a
# checkout or work folder kept private (mktemp -d makes 0700 folders).
if [ "$(id -u)" -eq 0 ]; then echo "user root" >>mosquitto.conf; fi
chmod 755 "$work"
"$mosquitto_bin" -c mosquitto.conf 2>broker.err &
pids+=($!)
up() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$cport") 2>/dev/null; }
wait_for 10 up || { cat broker.err mosquitto.log; echo "test_tls_login: mosquitto did not start" >&2; exit 1; }

printf '%064x\n' 0 | tr 0 7 >key.hex
tls=(-h localhost -p "$port" --cafile ca.pem)

# ---- authority and operator ---------------------------------------------------
run "$cli" authority init -K auth.ks --key-file key.hex --db auth.db --id authority
check "authority init" test "$rc" -eq 0
pin=$(grep '^mqe2e-authority1-' out)
run "$cli" keygen -K op.ks --key-file key.hex --id operator
check "operator keygen" test "$rc" -eq 0
sign=$(awk '/signing public key/ { print $NF }' out)
run "$cli" authority operator-add -K auth.ks --key-file key.hex --db auth.db --name operator --sign-public "$sign"
check "operator-add" test "$rc" -eq 0

"$cli" authority run -K auth.ks --key-file key.hex --db auth.db "${tls[@]}" \
  -u mqe2e-authority --password-file authority.pw >authority.log 2>&1 &
pids+=($!)
check "authority run logs in over TLS and serves" wait_for 15 in_file serving authority.log

export MQE2E_AUTHORITY="$pin"
op() { MQE2E_BROKER_PASSWORD="$(cat operator.pw)" "$cli" "$@" -K op.ks --key-file key.hex "${tls[@]}" -u mqe2e-operator; }
run op group create --group health --topic 'health/#'
check "operator group create over TLS + login" test "$rc" -eq 0
run op token create --id hr-1 --group health --grant 'health/hr-1/#:pub'
check "operator token create (device)" test "$rc" -eq 0
grep '^mqe2e1-' out >hr-1.ticket
run op token create --id backend --role service --group health --grant 'health/#:sub'
check "operator token create (backend)" test "$rc" -eq 0
grep '^mqe2e1-' out >backend.ticket

# ---- enroll: the device's defaults come from the options file ----------------
cat >device.options <<EOF
# broker defaults of the device (mosquitto_pub's option names)
-h localhost
--port $port
--cafile $work/ca.pem
-u mqe2e-device
--password-file $work/device.pw
EOF
run env MQE2E_OPTIONS_FILE="$work/device.options" "$cli" enroll -K hr-1.ks --key-file key.hex --ticket-file hr-1.ticket
check "enroll with TLS and login from the options file" test "$rc" -eq 0
run env MQE2E_BROKER_PASSWORD="$(cat backend.pw)" "$cli" enroll -K backend.ks --key-file key.hex \
  --ticket-file backend.ticket "${tls[@]}" -u mqe2e-backend
check "enroll with the password from MQE2E_BROKER_PASSWORD" test "$rc" -eq 0

# ---- pub/sub over TLS ---------------------------------------------------------
MQE2E_BROKER_PASSWORD="$(cat backend.pw)" "$cli" sub -K backend.ks --key-file key.hex "${tls[@]}" \
  -u mqe2e-backend -t 'health/#' -v -C 1 -d >sub.out 2>sub.err &
subpid=$!
pids+=($subpid)
check "sub subscribed over TLS" wait_for 15 in_file 'subscribed to health/#' sub.err
run env MQE2E_OPTIONS_FILE="$work/device.options" "$cli" pub -K hr-1.ks --key-file key.hex -q 1 \
  -t health/hr-1/bpm -m 'bpm=72'
check "pub over TLS with login" test "$rc" -eq 0
wait "$subpid"
check "sub printed the decrypted message" grep -qx 'health/hr-1/bpm bpm=72' sub.out

# ---- client certificate listener ---------------------------------------------
run env MQE2E_OPTIONS_FILE="$work/device.options" "$cli" pub -K hr-1.ks --key-file key.hex -p "$cport" \
  --cert client.pem --key client.key -q 1 -t health/hr-1/bpm -m 'bpm=73'
check "pub with a client certificate" test "$rc" -eq 0
run env MQE2E_OPTIONS_FILE="$work/device.options" "$cli" pub -K hr-1.ks --key-file key.hex -p "$cport" \
  -q 1 -t health/hr-1/bpm -m 'bpm=74'
check "no client certificate on a require_certificate listener: exit 6" test "$rc" -eq 6
check "  ... with one line naming TLS" sh -c 'grep -q "^mqe2e: .*TLS" err && [ "$(wc -l <err)" -eq 1 ]'

# ---- failures -----------------------------------------------------------------
run env MQE2E_OPTIONS_FILE="$work/device.options" "$cli" pub -K hr-1.ks --key-file key.hex \
  --cafile other-ca.pem -t health/hr-1/bpm -m x
check "wrong CA: exit 6" test "$rc" -eq 6
sed "s/^/    # /" err
check "  ... 'certificate verify failed' in one line" sh -c 'grep -q "certificate verify failed" err && [ "$(wc -l <err)" -eq 1 ]'
printf 'not-the-password\n' >wrong.pw
run env MQE2E_OPTIONS_FILE="$work/device.options" "$cli" pub -K hr-1.ks --key-file key.hex \
  --password-file wrong.pw -t health/hr-1/bpm -m x
check "wrong password: exit 5" test "$rc" -eq 5
sed "s/^/    # /" err
check "  ... 'refused the login' in one line" sh -c 'grep -q "refused the login" err && [ "$(wc -l <err)" -eq 1 ]'
run "$cli" pub -K hr-1.ks --key-file key.hex "${tls[@]}" -t health/hr-1/bpm -m x
check "anonymous on allow_anonymous false: exit 5" test "$rc" -eq 5
run "$cli" list clients "${tls[@]}" -u mqe2e-operator --password-file wrong.pw -K op.ks --key-file key.hex
check "operator command with a wrong password: exit 5" test "$rc" -eq 5
run "$cli" pub -K hr-1.ks --key-file key.hex -h localhost -p "$port" -t health/hr-1/bpm -m x \
  -u mqe2e-device --password-file device.pw
check "plain MQTT to a TLS listener: exit 3 or 6, one line" sh -c '{ [ '"$rc"' -eq 3 ] || [ '"$rc"' -eq 6 ]; } && [ "$(wc -l <err)" -eq 1 ]'
chmod 644 wrong.pw
run env MQE2E_OPTIONS_FILE="$work/device.options" "$cli" pub -K hr-1.ks --key-file key.hex \
  --password-file wrong.pw -t health/hr-1/bpm -m x
check "a password file readable by others is refused (exit 2)" test "$rc" -eq 2

# ---- retained clear with -n ---------------------------------------------------
msub() { mosquitto_sub -h localhost -p "$port" --cafile ca.pem -u mqe2e-backend -P "$(cat backend.pw)" "$@"; }
mpub() { mosquitto_pub -h localhost -p "$port" --cafile ca.pem -u mqe2e-device -P "$(cat device.pw)" "$@"; }
run env MQE2E_OPTIONS_FILE="$work/device.options" "$cli" pub -K hr-1.ks --key-file key.hex -q 1 -r \
  -t health/hr-1/last -m 'bpm=75'
check "retained encrypted publish" test "$rc" -eq 0
run mpub -q 1 -r -t health/hr-1/marker -m marker
# Mosquitto sends retained messages in the order of the filters of one SUBSCRIBE.
run msub -t health/hr-1/last -t health/hr-1/marker -C 1 -F '%t %l'
check "the broker holds the retained envelope" sh -c 'grep -q "^health/hr-1/last [1-9]" out'
run env MQE2E_OPTIONS_FILE="$work/device.options" "$cli" pub -K hr-1.ks --key-file key.hex -q 1 \
  -t health/hr-1/last -n
check "-n without -r on an encrypted topic is refused (exit 1)" test "$rc" -eq 1
run env MQE2E_OPTIONS_FILE="$work/device.options" "$cli" pub -K hr-1.ks --key-file key.hex -q 1 -r \
  -t health/hr-1/last -n
check "-n -r clears the retained message" test "$rc" -eq 0
run msub -t health/hr-1/last -t health/hr-1/marker -C 1 -F '%t'
check "  ... the broker holds nothing on it any more" grep -qx 'health/hr-1/marker' out

# ---- mosquitto_sub habits: --retained-only, -F, -E, --remove-retained ----------
dev() { env MQE2E_OPTIONS_FILE="$work/device.options" "$cli" "$@" -K hr-1.ks --key-file key.hex; }
run dev pub -q 1 -r -t health/hr-1/last -m 'bpm=76'
check "retained encrypted publish again" test "$rc" -eq 0
# (The backend reads it here: a receiver accepts a message once, so hr-1
# itself must not have seen it before the --remove-retained check below.)
run env MQE2E_BROKER_PASSWORD="$(cat backend.pw)" "$cli" sub -K backend.ks --key-file key.hex \
  "${tls[@]}" -u mqe2e-backend -t health/hr-1/last --retained-only -C 1 -F '%t %l %r %p'
check "sub --retained-only -F prints the decrypted retained value" grep -qx 'health/hr-1/last 6 1 bpm=76' out
run dev sub -t health/hr-1/last --retained-only --remove-retained -C 1 -N
check "sub --remove-retained -N prints it without a newline" sh -c 'test '"$rc"' -eq 0 && [ "$(cat out)" = "bpm=76" ] && [ "$(wc -l <out)" -eq 0 ]'
run msub -t health/hr-1/last -t health/hr-1/marker -C 1 -F '%t'
check "  ... and cleared it on the broker" grep -qx 'health/hr-1/marker' out
run dev sub -t health/hr-1/last -E
check "sub -E exits once subscribed" sh -c 'test '"$rc"' -eq 0'

# ---- the last will is sealed; MQTT v5 sessions -----------------------------------
MQE2E_BROKER_PASSWORD="$(cat backend.pw)" "$cli" sub -K backend.ks --key-file key.hex "${tls[@]}" \
  -u mqe2e-backend -t health/hr-1/status -v -C 1 -V mqttv5 -d >will.out 2>will.err &
willsub=$!
pids+=($willsub)
msub -t health/hr-1/status -C 1 -F '%x' >will.raw 2>/dev/null &
rawsub=$!
pids+=($rawsub)
check "v5 subscriber subscribed" wait_for 15 in_file 'subscribed to health/hr-1/status' will.err
env MQE2E_OPTIONS_FILE="$work/device.options" "$cli" sub -K hr-1.ks --key-file key.hex \
  -t health/hr-1/none --will-topic health/hr-1/status --will-payload offline -d >holder.out 2>holder.err &
holder=$!
check "will holder connected" wait_for 15 in_file 'subscribed to health/hr-1/none' holder.err
kill -9 "$holder"; wait "$holder" 2>/dev/null
wait "$willsub"
check "the will arrives sealed and is decrypted (v5 subscriber)" grep -qx 'health/hr-1/status offline' will.out
wait "$rawsub"
check "  ... the broker only carried ciphertext" sh -c '[ -s will.raw ] && ! grep -q "$(printf offline | od -An -tx1 | tr -d " \n")" will.raw'
run env MQE2E_OPTIONS_FILE="$work/device.options" "$cli" pub -K hr-1.ks --key-file key.hex \
  -t health/hr-1/x -m x --will-topic elsewhere/x
check "a will on a topic without policy refuses the connect (exit 2)" test "$rc" -eq 2

# ---- the rest of the operator commands ------------------------------------------
run op list clients
check "operator list over TLS" sh -c 'test '"$rc"' -eq 0 && grep -q "^hr-1" out && grep -q "^backend" out'
run op token create --id fleet --count 250 --group health --grant 'health/fleet/#:pub'
check "250 tickets in one command" sh -c 'test '"$rc"' -eq 0 && [ "$(grep -c "^mqe2e1-" out)" -eq 250 ]'
run op list tokens
check "list tokens is complete past one reply frame (252 rows)" sh -c 'test '"$rc"' -eq 0 && [ "$(wc -l <out)" -eq 252 ]'
run op list tokens --json
check "list tokens --json is one complete array" sh -c 'test '"$rc"' -eq 0 && python3 -c "import json,sys; a=json.load(open(\"out\")); sys.exit(0 if len(a)==252 and len({t[\"token_id\"] for t in a})==252 else 1)"'
run op status --remote
check "operator status over TLS" test "$rc" -eq 0
run op revoke --id hr-1
check "operator revoke over TLS" test "$rc" -eq 0
# The revoked device is told so (revocation list and HELLO reply), without -d.
env MQE2E_OPTIONS_FILE="$work/device.options" "$cli" sub -K hr-1.ks --key-file key.hex \
  -t 'health/hr-1/#' -W 60 >revoked.out 2>revoked.err &
revpid=$!
pids+=($revpid)
check "a revoked client says it is revoked" wait_for 30 in_file 'is revoked' revoked.err
kill "$revpid" 2>/dev/null; wait "$revpid" 2>/dev/null
sed 's/^/    # /' revoked.err | head -3
# A local status stays local even with MQE2E_AUTHORITY exported.
run "$cli" status -K hr-1.ks --key-file key.hex
check "status -K KEYSTORE with MQE2E_AUTHORITY set stays local" sh -c 'test '"$rc"' -eq 0 && grep -q "client id" out'

st_summary
