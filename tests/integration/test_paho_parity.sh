#!/usr/bin/env bash
# Migration is a rename: every public function of the installed Paho
# MQTTClient.h and MQTTAsync.h must have an mqe2e_ twin, declared in
# plugin/include/mqe2e/ and exported by libmqe2e_paho.so. The list comes from
# the headers the compiler finds (LIBMQTT_API declarations), so a Paho upgrade
# that adds a call fails this test until the twin exists.
#
#   MQE2E_BUILD_DIR=build MQE2E_SOURCE_DIR=. bash tests/integration/test_paho_parity.sh
set -u

src="${MQE2E_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
build="${MQE2E_BUILD_DIR:-$src/build}"
lib="$build/plugin/libmqe2e_paho.so"
passed=0
failed=0
ok() { echo "ok   - $1"; passed=$((passed + 1)); }
fail() { echo "FAIL - $1"; failed=$((failed + 1)); }

[ -f "$lib" ] || { echo "FAIL - $lib not built"; echo "0 passed, 1 failed"; exit 1; }
exported="$(nm -D --defined-only "$lib" | awk '{ print $NF }')"
declared="$(cat "$src"/plugin/include/mqe2e/*.h)"

for h in MQTTClient.h MQTTAsync.h; do
  path="$(printf '#include <%s>\n' "$h" | ${CC:-cc} -M -xc - 2>/dev/null | tr ' \\' '\n\n' | grep "/$h\$" | head -1)"
  if [ -z "$path" ] || [ ! -f "$path" ]; then
    fail "$h: installed Paho header not found"
    continue
  fi
  # "LIBMQTT_API <type> <name>(" -- the name is the last word before "(".
  names="$(grep 'LIBMQTT_API' "$path" | sed -n 's/.*[ *]\([A-Za-z_][A-Za-z0-9_]*\)[ ]*(.*/\1/p' | sort -u)"
  n=$(printf '%s\n' "$names" | grep -c .)
  if [ "$n" -lt 20 ]; then
    fail "$h: only $n functions found in $path (parsing broke?)"
    continue
  fi
  missing=0
  for name in $names; do
    twin="mqe2e_$name"
    if ! printf '%s\n' "$exported" | grep -qx "$twin"; then
      fail "$h: $name has no exported twin $twin"
      missing=$((missing + 1))
    elif ! printf '%s' "$declared" | grep -q "[ *]$twin("; then
      fail "$h: $twin is exported but not declared in plugin/include/mqe2e/"
      missing=$((missing + 1))
    fi
  done
  [ "$missing" -eq 0 ] && ok "$h: all $n public functions of $path have an mqe2e_ twin"
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
