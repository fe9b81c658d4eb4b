#!/usr/bin/env bash
# Runs examples/demo.sh (the README's first Quick start command) on a free
# loopback port and checks its exit status, the key lines of its output and
# that it left nothing behind (no temporary folder, no process on the port).
#
# Needs MQE2E_BUILD_DIR and MQE2E_SOURCE_DIR (ctest sets both).
set -u

build="${MQE2E_BUILD_DIR:?set MQE2E_BUILD_DIR to the build folder}"
source_dir="${MQE2E_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
demo="$source_dir/examples/demo.sh"
[ -r "$demo" ] || { echo "test_demo: $demo missing" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/mqe2e-test-demo.XXXXXX")"
demo_pid=""
cleanup() {
  [ -z "$demo_pid" ] || kill -TERM "$demo_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $1"; }
check() { local d="$1"; shift; if "$@"; then ok "$d"; else not_ok "$d"; fi; }
has() { grep -q -- "$1" "$work/out"; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || true)
if [ -z "$port" ]; then
  for port in $(seq 23883 23983); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
  done
fi

# The demo makes its own folder under TMPDIR: point it at ours to see it go.
mkdir -p "$work/tmp"
start=$(date +%s)
TMPDIR="$work/tmp" MQE2E_BROKER_PORT="$port" bash "$demo" "$build" >"$work/out" 2>"$work/err" &
demo_pid=$!
rc=0
wait "$demo_pid" || rc=$?
demo_pid=""
elapsed=$(($(date +%s) - start))
sed 's/^/    | /' "$work/out"
[ -s "$work/err" ] && sed 's/^/    stderr| /' "$work/err"

check "demo exits 0 (took ${elapsed} s)" [ "$rc" -eq 0 ]
check "three enrollments, one request each" \
  [ "$(grep -c '^enrolled .* with authority: credential serial [0-9]* expires ' "$work/out")" -eq 3 ]
check "enrollment section" has '^=== ENROLLMENT'
check "each client sent one ENROLL request" [ "$(grep -c '(1 ENROLL request(s) sent' "$work/out")" -eq 3 ]
check "revocation section" has '^=== REVOCATION'
check "revoke moved the group to epoch 2" has '^operator: group health at epoch 2'
check "backend decrypted epoch 2 readings" has 'the backend decrypted [0-9]* hr-1 readings sealed under epoch 2'
check "revoked subscriber decrypted nothing" has "hr-2's subscriber decrypted 0 message(s)"
check "check: all hr-1 readings decrypted" has '^ok: the backend decrypted all 50 hr-1 readings'
if [ "${MQE2E_DEMO_SKIP_PYTHON:-0}" = 1 ]; then
  check "the Python backend is left out, and says so" has '^py-backend: Python backend skipped'
else
  check "check: the Python backend decrypted every hr-1 reading" \
    has '^ok: the Python backend (mqe2e.Client) decrypted all 50 hr-1 readings'
fi
check "check: no plaintext on the broker" has 'none holds the plaintext "bpm"'
check "check: revoked client read nothing" has '^ok: the revoked client decrypted 0 messages'
check "no FAIL line" sh -c "! grep -q '^FAIL' '$work/out'"
check "the demo removed its temporary folder" [ -z "$(ls -A "$work/tmp")" ]
check "nothing left listening on port $port" sh -c "! (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null"
# Every process the demo starts names the port on its command line.
no_leftover() { ! pgrep -f -- "-p $port( |\$)" >/dev/null; }
check "no demo process left behind" no_leftover

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
