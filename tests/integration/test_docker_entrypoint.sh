#!/usr/bin/env bash
# The container roles of docker/entrypoint.sh, run locally (no Docker engine
# needed): broker, authority, device hr-1 and backend backend-1, each with its
# own state folder, a shared folder for the tickets and a private etc folder
# holding the image's docker/mosquitto.conf and docs/mosquitto-acl.conf, on a
# free loopback port. Checks that the tickets were issued 0600, that both
# clients enrolled and that the backend printed decrypted readings; then
# restarts the authority on its state and checks it comes back without
# issuing new tickets. Also `docker-compose config -q` when docker-compose is
# installed.
#
# Needs MQE2E_BUILD_DIR and MQE2E_SOURCE_DIR (ctest sets both).
set -u

build="${MQE2E_BUILD_DIR:?set MQE2E_BUILD_DIR to the build folder}"
source_dir="${MQE2E_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
entry="$source_dir/docker/entrypoint.sh"
for b in "$build/tools/mqe2e/mqe2e" "$build/examples/hr_device" "$build/examples/hr_backend" "$entry"; do
  [ -e "$b" ] || { echo "test_docker_entrypoint: $b missing" >&2; exit 1; }
done
for t in mosquitto mosquitto_passwd; do
  command -v "$t" >/dev/null || { echo "test_docker_entrypoint: $t not installed" >&2; exit 1; }
done

work="$(mktemp -d "${TMPDIR:-/tmp}/mqe2e-test-entrypoint.XXXXXX")"
# Mosquitto started as root reads its generated files as user mosquitto.
chmod 0755 "$work"
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() {
  failed=$((failed + 1)); echo "not ok - $1"
  local f
  for f in broker authority device backend; do
    [ -s "$work/$f.log" ] && tail -n 8 "$work/$f.log" | sed "s/^/    $f: /"
  done
  return 0
}
check() { local d="$1"; shift; if "$@"; then ok "$d"; else not_ok "$d"; fi; }
wait_for() { # wait_for SECONDS CMD...
  local n=$(($1 * 10)); shift
  while [ "$n" -gt 0 ]; do "$@" && return 0; sleep 0.1; n=$((n - 1)); done
  return 1
}
in_file() { grep -q -- "$1" "$2" 2>/dev/null; }

# ---- free port ---------------------------------------------------------------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || true)
if [ -z "$port" ]; then
  for port in $(seq 22883 22983); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
  done
fi

mkdir -p "$work/etc" "$work/shared" "$work/state-broker" "$work/state-authority" \
  "$work/state-device" "$work/state-backend" "$work/bin"
cp "$source_dir/docker/mosquitto.conf" "$work/etc/mosquitto.conf"
cp "$source_dir/docs/mosquitto-acl.conf" "$work/etc/mosquitto-acl.conf"
chmod 0755 "$work/etc" "$work/state-broker"
chmod 0644 "$work/etc/"*
# Root keeps its own user in the broker (the test folders are not the image's).
[ "$(id -u)" -eq 0 ] && echo "user root" >>"$work/etc/mosquitto.conf"
ln -s "$build/tools/mqe2e/mqe2e" "$build/examples/hr_device" "$build/examples/hr_backend" "$work/bin/"

# Secrets as files, one per role and credential, as docker-compose.yml mounts them.
mkdir -p "$work/secrets"
for name in authority_passphrase operator_passphrase device_passphrase backend_passphrase \
            authority_broker_password operator_broker_password device_broker_password \
            backend_broker_password; do
  printf '%s-%s\n' "$name" "$RANDOM$RANDOM" >"$work/secrets/$name"
done
chmod 0444 "$work/secrets/"*   # as Docker mounts them: readable, not 0600
sec="$work/secrets"
common_env=(
  "PATH=$work/bin:$PATH"
  "MQE2E_BROKER_HOST=127.0.0.1" "MQE2E_BROKER_PORT=$port" "MQE2E_BROKER_BIND=127.0.0.1"
  "MQE2E_SHARED_DIR=$work/shared" "MQE2E_ETC_DIR=$work/etc" "MQE2E_OPTIONS_FILE="
)
# Each role gets only its own secrets (docker-compose.yml).
role_env() {
  case "$1" in
    broker) echo "MQE2E_AUTHORITY_BROKER_PASSWORD_FILE=$sec/authority_broker_password" \
                 "MQE2E_DEVICE_BROKER_PASSWORD_FILE=$sec/device_broker_password" \
                 "MQE2E_BACKEND_BROKER_PASSWORD_FILE=$sec/backend_broker_password" \
                 "MQE2E_OPERATOR_BROKER_PASSWORD_FILE=$sec/operator_broker_password" ;;
    authority) echo "MQE2E_PASSPHRASE_FILE=$sec/authority_passphrase" \
                    "MQE2E_OPERATOR_PASSPHRASE_FILE=$sec/operator_passphrase" \
                    "MQE2E_BROKER_PASSWORD_FILE=$sec/authority_broker_password" \
                    "MQE2E_OPERATOR_BROKER_PASSWORD_FILE=$sec/operator_broker_password" ;;
    device|backend) echo "MQE2E_PASSPHRASE_FILE=$sec/$1_passphrase" \
                         "MQE2E_BROKER_PASSWORD_FILE=$sec/$1_broker_password" ;;
  esac
}
start_role() { # start_role NAME ROLE [ARGS]: runs in the background, log in NAME.log
  local name="$1"; shift
  # shellcheck disable=SC2046
  env "${common_env[@]}" $(role_env "$1") "MQE2E_STATE_DIR=$work/state-$name" bash "$entry" "$@" \
    >>"$work/$name.log" 2>&1 &
  pids+=($!)
  last_pid=$!
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

# ---- usage -------------------------------------------------------------------
env "${common_env[@]}" bash "$entry" >/dev/null 2>&1
check "no role: usage, exit 1" [ $? -eq 1 ]
env "${common_env[@]}" bash "$entry" device >/dev/null 2>&1
check "device without an id: usage, exit 1" [ $? -eq 1 ]

# ---- the four roles ------------------------------------------------------------
start_role broker broker
check "broker role listens on port $port" wait_for 10 port_open
check "broker config generated with the port and the ACL" \
  grep -q "^listener $port 127.0.0.1" "$work/state-broker/broker/mosquitto.conf"
check "broker admits no anonymous client (four role users)" \
  sh -c "grep -q '^allow_anonymous false' '$work/state-broker/broker/mosquitto.conf' && [ \$(wc -l <'$work/state-broker/broker/mosquitto-passwd') -eq 4 ]"
mosquitto_pub -h 127.0.0.1 -p "$port" -t health/x -m anonymous >/dev/null 2>&1
check "an anonymous publish is refused" [ $? -ne 0 ]
env "${common_env[@]}" "MQE2E_PASSPHRASE=x" "MQE2E_PASSPHRASE_FILE=$sec/device_passphrase" \
  bash "$entry" device hr-9 >"$work/both.log" 2>&1
check "X and X_FILE together are refused" sh -c "grep -q 'not both' '$work/both.log'"

# Clients first: they must wait for their tickets.
start_role device device hr-1
start_role backend backend backend-1
start_role authority authority
authority_pid=$last_pid
check "authority issued the ticket for hr-1" wait_for 20 test -s "$work/shared/hr-1.ticket" -o -e "$work/state-device/hr-1.enrolled"
check "authority published its pin" test -s "$work/shared/authority.pin"
check "device enrolled" wait_for 30 test -e "$work/state-device/hr-1.enrolled"
check "backend enrolled" wait_for 30 test -e "$work/state-backend/backend-1.enrolled"
check "used tickets removed from the shared folder" \
  wait_for 5 sh -c "! ls '$work/shared/'*.ticket >/dev/null 2>&1"
check "authority keystore and database are private (0600)" \
  sh -c "[ \"\$(stat -c %a '$work/state-authority/authority.db')\" = 600 ] && [ \"\$(stat -c %a '$work/state-authority/authority.ks')\" = 600 ]"
check "backend printed decrypted readings" wait_for 20 in_file 'backend decrypted \[health/hr-1/heartrate\]' "$work/backend.log"
sleep 2
n=$(grep -c 'backend decrypted \[health/hr-1/heartrate\]' "$work/backend.log" || true)
check "backend keeps decrypting ($n readings)" [ "$n" -ge 5 ]
check "no plaintext reading in the authority log" sh -c "! grep -q bpm '$work/authority.log'"
check "no secret in any log" sh -c "! cat '$sec/'* | grep -F -f - '$work/'*.log"

# ---- authority restart on its state ----------------------------------------------
kill -TERM "$authority_pid" 2>/dev/null
wait "$authority_pid" 2>/dev/null
check "authority stops on SIGTERM" sh -c "! kill -0 $authority_pid 2>/dev/null"
tickets_before=$(grep -c 'ticket for .* written' "$work/authority.log" || true)
start_role authority authority
check "restarted authority serves again" \
  wait_for 20 sh -c "[ \$(grep -c 'authority serving;' '$work/authority.log') -ge 2 ]"
tickets_after=$(grep -c 'ticket for .* written' "$work/authority.log" || true)
check "restart issued no new tickets ($tickets_before then $tickets_after)" [ "$tickets_after" -eq "$tickets_before" ]
check "restart did not re-create the authority" [ "$(grep -c 'first start' "$work/authority.log")" -eq 1 ]

# ---- docker-compose ------------------------------------------------------------------
if command -v docker-compose >/dev/null; then
  docker-compose -f "$source_dir/docker-compose.yml" config -q >"$work/compose.err" 2>&1
  check "docker-compose config -q" [ $? -eq 0 ]
else
  echo "skip - docker-compose not installed: compose file not validated"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
