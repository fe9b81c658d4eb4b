#!/usr/bin/env bash
# Entrypoint of the mqe2e image (docker/Dockerfile, docker-compose.yml).
#
#   mqe2e-entrypoint broker
#   mqe2e-entrypoint authority
#   mqe2e-entrypoint device ID
#   mqe2e-entrypoint backend ID
#
# broker     Mosquitto with $ETC/mosquitto.conf and its ACL ($ETC/mosquitto-acl.conf);
#            the broker user of the authority gets the password
#            MQE2E_AUTHORITY_BROKER_PASSWORD.
# authority  first start: authority init, an operator keystore registered with
#            operator-add; then `authority run`, and (once) the group "health"
#            and one enrollment ticket per client of MQE2E_DEVICES and
#            MQE2E_BACKENDS, written to $SHARED/<id>.ticket (mode 0600). The
#            pin goes to $SHARED/authority.pin (public). Restarts reuse $STATE.
# device     waits for $SHARED/ID.ticket, creates its keystore, enrolls, then
#            runs hr_device (readings on health/hr-1/heartrate) forever.
# backend    the same, then runs hr_backend (decrypts health/+/heartrate).
#
# Environment (every secret X can also come from a file named by X_FILE, e.g.
# a Docker secret: MQE2E_PASSPHRASE_FILE=/run/secrets/device_passphrase;
# giving both X and X_FILE is an error):
#   MQE2E_BROKER_HOST (default broker), MQE2E_BROKER_PORT (default 1883)
#   MQE2E_BROKER_BIND           broker role: listen address (default: as in the config)
#   MQE2E_PASSPHRASE            keystore passphrase of this container's keystores
#   MQE2E_OPERATOR_PASSPHRASE   operator keystore (default: MQE2E_PASSPHRASE)
#   MQE2E_BROKER_USERNAME       this role's broker user (default mqe2e-authority,
#                               mqe2e-device, mqe2e-backend by role)
#   MQE2E_BROKER_PASSWORD       this role's broker password (authority, device,
#                               backend); without it the client connects anonymously
#   MQE2E_OPERATOR_BROKER_PASSWORD  authority role: password of mqe2e-operator
#   broker role, one per broker user (a user without a password is not created;
#   with none at all the broker admits anonymous clients, as the demo did):
#     MQE2E_AUTHORITY_BROKER_PASSWORD, MQE2E_DEVICE_BROKER_PASSWORD,
#     MQE2E_BACKEND_BROKER_PASSWORD, MQE2E_OPERATOR_BROKER_PASSWORD
#   MQE2E_DEVICES, MQE2E_BACKENDS    ids to issue tickets for (default hr-1, backend-1)
#   MQE2E_STATE_DIR (/state), MQE2E_SHARED_DIR (/shared), MQE2E_ETC_DIR (/etc/mqe2e)
#   MQE2E_DEVICE_COUNT          readings hr_device sends before it starts again
# Binaries are taken from PATH: mqe2e, hr_device, hr_backend, mosquitto.
set -euo pipefail

role="${1:-}"
state="${MQE2E_STATE_DIR:-/state}"
shared="${MQE2E_SHARED_DIR:-/shared}"
etc="${MQE2E_ETC_DIR:-/etc/mqe2e}"
host="${MQE2E_BROKER_HOST:-broker}"
port="${MQE2E_BROKER_PORT:-1883}"
group=health

log() { printf '%s mqe2e-entrypoint %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$role" "$*" >&2; }
die() { log "$*"; exit 1; }
usage() {
  echo "usage: $0 broker | authority | device ID | backend ID" >&2
  exit 1
}
# secret NAME: export NAME from NAME_FILE (first line) when that is given.
secret() {
  local name="$1" file_var="${1}_FILE" value
  local file="${!file_var:-}"
  [ -n "$file" ] || return 0
  [ -z "${!name:-}" ] || die "give $name or $file_var, not both"
  [ -r "$file" ] || die "$file_var: cannot read $file"
  IFS= read -r value <"$file" || [ -n "$value" ] || die "$file_var: $file is empty"
  export "$name=$value"
  unset "$file_var"
}
for v in MQE2E_PASSPHRASE MQE2E_OPERATOR_PASSPHRASE MQE2E_BROKER_PASSWORD \
         MQE2E_AUTHORITY_BROKER_PASSWORD MQE2E_DEVICE_BROKER_PASSWORD \
         MQE2E_BACKEND_BROKER_PASSWORD MQE2E_OPERATOR_BROKER_PASSWORD; do
  secret "$v"
done
need_passphrase() {
  [ -n "${MQE2E_PASSPHRASE:-}" ] || die "set MQE2E_PASSPHRASE or MQE2E_PASSPHRASE_FILE (keystore passphrase)"
}
# login ROLE_USER: the -u option of this role's mqe2e commands (password via
# MQE2E_BROKER_PASSWORD, which the CLI reads itself).
login_args=()
set_login() {
  login_args=()
  [ -n "${MQE2E_BROKER_PASSWORD:-}" ] && login_args=(-u "${MQE2E_BROKER_USERNAME:-$1}")
  return 0
}
valid_id() { [[ "$1" =~ ^[A-Za-z0-9._-]{1,64}$ ]]; }
broker_up() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }
wait_broker() {
  local n=0
  until broker_up; do
    [ $((n % 50)) -eq 0 ] && log "waiting for the broker at $host:$port"
    n=$((n + 1))
    sleep 0.2
  done
}

umask 077

# ------------------------------------------------------------------ broker
run_broker() {
  local run="$state/broker" users=0
  [ -r "$etc/mosquitto.conf" ] || die "$etc/mosquitto.conf not found"
  [ -r "$etc/mosquitto-acl.conf" ] || die "$etc/mosquitto-acl.conf not found"
  [ -n "${MQE2E_AUTHORITY_BROKER_PASSWORD:-}" ] ||
    die "set MQE2E_AUTHORITY_BROKER_PASSWORD(_FILE) (the authority's broker password)"
  mkdir -p "$run"
  # The effective files are generated at every start: the passwords come
  # from the environment or secret files, never from the image. One broker
  # user per role (docs/mosquitto-acl.conf).
  rm -f "$run/mosquitto-passwd"
  : >"$run/mosquitto-passwd"
  local role_user var
  for role_user in authority:mqe2e-authority device:mqe2e-device backend:mqe2e-backend \
                   operator:mqe2e-operator; do
    var="MQE2E_$(printf '%s' "${role_user%%:*}" | tr a-z A-Z)_BROKER_PASSWORD"
    [ -n "${!var:-}" ] || continue
    mosquitto_passwd -b "$run/mosquitto-passwd" "${role_user#*:}" "${!var}" >/dev/null
    users=$((users + 1))
  done
  cp "$etc/mosquitto-acl.conf" "$run/mosquitto-acl.conf"
  # With every role's password given, nobody connects anonymously.
  local anonymous=true
  [ "$users" -eq 4 ] && anonymous=false
  sed -e "s#^acl_file .*#acl_file $run/mosquitto-acl.conf#" \
      -e "/^password_file /d" \
      -e "s#^allow_anonymous .*#allow_anonymous $anonymous#" \
      -e "s#^listener [0-9]*#listener $port#" \
      "$etc/mosquitto.conf" >"$run/mosquitto.conf"
  if [ -n "${MQE2E_BROKER_BIND:-}" ]; then
    sed -i -e "s#^listener \([0-9]*\).*#listener \1 $MQE2E_BROKER_BIND#" "$run/mosquitto.conf"
  fi
  echo "password_file $run/mosquitto-passwd" >>"$run/mosquitto.conf"
  # Mosquitto started as root reads the ACL and password file after
  # switching to its own user.
  chmod 0755 "$run"
  chmod 0644 "$run/mosquitto.conf" "$run/mosquitto-acl.conf"
  if [ "$(id -u)" -eq 0 ] && id mosquitto >/dev/null 2>&1 && ! grep -q '^user ' "$run/mosquitto.conf"; then
    chown mosquitto "$run/mosquitto-passwd"
  fi
  log "starting mosquitto on port $port ($users broker users, allow_anonymous $anonymous)"
  exec mosquitto -c "$run/mosquitto.conf"
}

# --------------------------------------------------------------- authority
write_ticket() { # write_ticket ID ARGS...: ask for one ticket, store it 0600 atomically
  local id="$1"; shift
  local tmp="$shared/.$id.ticket.tmp"
  if [ -s "$shared/$id.ticket" ]; then
    log "ticket for $id already in $shared"
    return 0
  fi
  op token create --id "$id" --group "$group" "$@" >"$tmp" || { rm -f "$tmp"; return 1; }
  chmod 0600 "$tmp"
  mv -f "$tmp" "$shared/$id.ticket"
  log "ticket for $id written to $shared/$id.ticket"
}

op() {
  local op_login=()
  [ -n "${MQE2E_OPERATOR_BROKER_PASSWORD:-}" ] && op_login=(-u mqe2e-operator)
  MQE2E_PASSPHRASE="${MQE2E_OPERATOR_PASSPHRASE:-$MQE2E_PASSPHRASE}" MQE2E_AUTHORITY="$pin" \
    MQE2E_BROKER_PASSWORD="${MQE2E_OPERATOR_BROKER_PASSWORD:-}" MQE2E_OPTIONS_FILE= \
    mqe2e "$@" -K "$state/operator.ks" -h "$host" -p "$port" "${op_login[@]}" -W 10
}

run_authority() {
  need_passphrase
  local ks="$state/authority.ks" db="$state/authority.db"
  # This role's own broker login (the demo's older name still works).
  [ -n "${MQE2E_BROKER_PASSWORD:-}" ] || MQE2E_BROKER_PASSWORD="${MQE2E_AUTHORITY_BROKER_PASSWORD:-}"
  export MQE2E_BROKER_PASSWORD
  set_login mqe2e-authority
  mkdir -p "$state" "$shared"
  if [ ! -e "$db" ]; then
    log "first start: creating the authority in $state"
    rm -f "$ks" "$state/operator.ks"
    mqe2e authority init -K "$ks" --db "$db" --id authority >"$state/authority.pin"
    MQE2E_PASSPHRASE="${MQE2E_OPERATOR_PASSPHRASE:-$MQE2E_PASSPHRASE}" \
      mqe2e keygen -K "$state/operator.ks" --id operator >"$state/operator.txt"
    local sign
    sign="$(sed -n 's/^signing public key: *//p' "$state/operator.txt")"
    mqe2e authority operator-add -K "$ks" --db "$db" --name operator --sign-public "$sign"
  fi
  pin="$(head -n 1 "$state/authority.pin")"
  (umask 022; printf '%s\n' "$pin" >"$shared/authority.pin")
  rm -f "$state/broker-password"   # written by earlier images; the password stays in memory now
  local auth_args=(authority run -K "$ks" --db "$db" -h "$host" -p "$port" "${login_args[@]}")
  wait_broker
  MQE2E_OPTIONS_FILE= mqe2e "${auth_args[@]}" &
  authority_pid=$!
  trap 'kill -TERM "$authority_pid" 2>/dev/null || true' TERM INT
  # Ready when an operator request is answered.
  local tries=0
  until op status --remote >/dev/null 2>&1; do
    kill -0 "$authority_pid" 2>/dev/null || { wait "$authority_pid" || true; die "the authority stopped"; }
    tries=$((tries + 1))
    [ "$tries" -lt 60 ] || die "the authority does not answer operator requests"
    sleep 0.5
  done
  if [ ! -e "$state/provisioned" ]; then
    op group create --group "$group" --topic "$group/#" >&2 || die "group create failed"
    local id
    for id in ${MQE2E_DEVICES:-hr-1}; do
      valid_id "$id" || die "invalid device id '$id'"
      write_ticket "$id" --role device --grant "$group/$id/#:pub" || die "token for $id failed"
    done
    for id in ${MQE2E_BACKENDS:-backend-1}; do
      valid_id "$id" || die "invalid backend id '$id'"
      write_ticket "$id" --role service --grant "$group/#:sub" || die "token for $id failed"
    done
    touch "$state/provisioned"
  fi
  log "authority serving; pin in $shared/authority.pin"
  local rc=0
  wait "$authority_pid" || rc=$?
  # A signal interrupts the first wait: wait again for the real exit.
  if kill -0 "$authority_pid" 2>/dev/null; then wait "$authority_pid" || rc=$?; fi
  exit "$rc"
}

# ---------------------------------------------------------- device / backend
enroll_client() { # enroll_client ID: keystore in $state/ID.ks, enrolled once
  local id="$1" ks="$state/$1.ks"
  mkdir -p "$state"
  if [ -e "$state/$id.enrolled" ]; then
    log "$id already enrolled (keystore $ks)"
    return 0
  fi
  local n=0
  until [ -s "$shared/$id.ticket" ]; do
    [ $((n % 50)) -eq 0 ] && log "waiting for $shared/$id.ticket"
    n=$((n + 1))
    sleep 0.2
  done
  if [ ! -e "$ks" ]; then
    mqe2e keygen -K "$ks" --id "$id" >/dev/null
  fi
  wait_broker
  local rc
  while :; do
    rc=0
    MQE2E_OPTIONS_FILE= mqe2e enroll -K "$ks" --ticket-file "$shared/$id.ticket" -h "$host" -p "$port" \
      "${login_args[@]}" -W 30 >&2 || rc=$?
    case "$rc" in
      0) break ;;
      5) die "the broker refused the login of ${login_args[1]:-an anonymous client} (exit 5)" ;;
      3 | 4) log "enrollment not answered yet (exit $rc); retrying"; sleep 1 ;;
      *) die "enrollment of $id refused (exit $rc)" ;;
    esac
  done
  touch "$state/$id.enrolled"
  rm -f "$shared/$id.ticket"   # used: single use, and a secret
}

run_client() { # run_client device|backend ID
  local kind="$1" id="$2"
  need_passphrase
  valid_id "$id" || die "invalid client id '$id'"
  set_login "mqe2e-$kind"
  enroll_client "$id"
  export MQE2E_KEYSTORE="$state/$id.ks" MQE2E_BROKER_HOST="$host" MQE2E_BROKER_PORT="$port"
  if [ ${#login_args[@]} -gt 0 ]; then
    export MQE2E_BROKER_USERNAME="${login_args[1]}" MQE2E_BROKER_PASSWORD
  fi
  local cmd=(hr_backend 2000000000 2000000)
  [ "$kind" = device ] && cmd=(hr_device "${MQE2E_DEVICE_COUNT:-1000000000}")
  # In the background, so that a stop signal is handled at once (bash as
  # process 1 would otherwise wait for the child first).
  local child=""
  trap '[ -z "$child" ] || kill -TERM "$child" 2>/dev/null || true; exit 0' TERM INT
  while :; do
    "${cmd[@]}" &
    child=$!
    local rc=0
    wait "$child" || rc=$?
    log "${cmd[0]} exited $rc; restarting"
    sleep 1
  done
}

case "$role" in
  broker) [ $# -eq 1 ] || usage; run_broker ;;
  authority) [ $# -eq 1 ] || usage; run_authority ;;
  device | backend) [ $# -eq 2 ] || usage; run_client "$role" "$2" ;;
  -h | --help | help) usage ;;
  *) [ -n "$role" ] || usage; exec "$@" ;;
esac
