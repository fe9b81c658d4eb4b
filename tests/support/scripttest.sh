# Shared by the shell integration tests (sourced, not run):
#   st_workdir NAME   private work folder ($work, cd'ed into), removed on exit
#                     together with every pid pushed onto the array pids
#   ok / not_ok / check DESC CMD...   one line per check, counted in
#                     $passed and $failed (not_ok shows ./out and ./err)
#   run CMD...        stdout to ./out, stderr to ./err, exit code in $rc
#   one_line_error    the CLI's error contract: one line on stderr, "mqe2e: ..."
#   wait_for S CMD... poll CMD every 0.1 s for up to S seconds
#   free_port         a free loopback TCP port
#   st_summary        "N passed, M failed"; returns non-zero if any failed
# shellcheck shell=bash

pids=()
passed=0
failed=0

st_cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ -n "${work:-}" ] && rm -rf "$work"
}

st_workdir() {
  work="$(mktemp -d "${TMPDIR:-/tmp}/mqe2e-$1.XXXXXX")"
  trap st_cleanup EXIT
  trap 'exit 130' INT TERM
  cd "$work" || exit 1
}

ok() { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() {
  failed=$((failed + 1)); echo "not ok - $1"
  for f in out err; do [ -s "$f" ] && sed "s/^/    $f: /" "$f" | head -5; done
  return 0
}
check() { local d="$1"; shift; if "$@"; then ok "$d"; else not_ok "$d"; fi; }
run() { "$@" >out 2>err; rc=$?; }
one_line_error() { [ "$(wc -l <err)" -eq 1 ] && grep -q '^mqe2e: ' err; }
wait_for() {
  local n=$(($1 * 10)); shift
  while [ "$n" -gt 0 ]; do "$@" && return 0; sleep 0.1; n=$((n - 1)); done
  return 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
st_summary() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; }
