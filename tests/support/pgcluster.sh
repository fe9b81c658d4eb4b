#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for one test run.
#
#   bash tests/support/pgcluster.sh run -- CMD [ARGS...]
#
# initdb's a cluster in a fresh temp dir, starts it with its unix socket in
# that dir (no TCP listener: nothing to collide with other runs), runs CMD with
#   MQE2E_TEST_PG_URI=postgresql:///postgres?host=DIR&port=PORT&user=mqe2e
#   MQE2E_TEST_PG_DIR=DIR
# in its environment, then stops the server and removes the dir, also when
# CMD fails or the script is interrupted. Exits with CMD's status.
#
# The server runs as an unprivileged user: as root (CI) through
# `runuser -u postgres --` with the dir chowned to postgres; as any other user
# directly. PG_BIN overrides /usr/lib/postgresql/15/bin.
#
# No PostgreSQL installed: exit 1 (a failure: CI must have it, see
# tools/quickstart.sh), unless MQE2E_SKIP_PG=1 is set, then exit 77 (ctest
# SKIP_RETURN_CODE).
set -u

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"

usage() { echo "usage: $0 run -- CMD [ARGS...]" >&2; exit 2; }
[ "${1:-}" = run ] || usage
shift
[ "${1:-}" = -- ] && shift
[ $# -ge 1 ] || usage

if [ ! -x "$PG_BIN/initdb" ] || [ ! -x "$PG_BIN/pg_ctl" ]; then
  if [ "${MQE2E_SKIP_PG:-0}" = 1 ]; then
    echo "pgcluster: no PostgreSQL in $PG_BIN; skipped (MQE2E_SKIP_PG=1)" >&2
    exit 77
  fi
  echo "pgcluster: no PostgreSQL in $PG_BIN (apt-get install postgresql; MQE2E_SKIP_PG=1 skips)" >&2
  exit 1
fi

dir="$(mktemp -d "${TMPDIR:-/tmp}/mqe2e-pg.XXXXXX")" || exit 1
as_pg=()
if [ "$(id -u)" = 0 ]; then
  chown postgres: "$dir" || exit 1
  as_pg=(runuser -u postgres --)
fi
chmod 0700 "$dir"

started=0
cleanup() {
  if [ "$started" = 1 ]; then
    "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port="${MQE2E_TEST_PG_PORT:-5432}"
if ! "${as_pg[@]}" "$PG_BIN/initdb" -D "$dir/data" -U mqe2e --auth=trust -E UTF8 \
    --no-instructions >"$dir/initdb.log" 2>&1; then
  echo "pgcluster: initdb failed:" >&2
  cat "$dir/initdb.log" >&2
  exit 1
fi
# fsync off: a throwaway cluster; durability is not what the tests measure.
if ! "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses='' -c unix_socket_directories='$dir' -p $port -c fsync=off -c max_connections=100" \
    start >/dev/null 2>&1; then
  echo "pgcluster: server did not start:" >&2
  cat "$dir/server.log" >&2
  exit 1
fi
started=1

export MQE2E_TEST_PG_DIR="$dir"
export MQE2E_TEST_PG_URI="postgresql:///postgres?host=$dir&port=$port&user=mqe2e"
"$@"
status=$?
if [ "$status" != 0 ] && [ -s "$dir/server.log" ]; then
  echo "pgcluster: server log (last 20 lines):" >&2
  tail -20 "$dir/server.log" >&2
fi
exit "$status"
