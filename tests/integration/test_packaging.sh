#!/usr/bin/env bash
# Installs the build into a temporary prefix and builds an out-of-tree
# consumer against it twice: with find_package(mqe2e) and with pkg-config.
set -euo pipefail
build="${MQE2E_BUILD_DIR:?}"
src="${MQE2E_SOURCE_DIR:?}"
work="$(mktemp -d "${TMPDIR:-/tmp}/mqe2e-pkg-XXXXXX")"
trap 'rm -rf "$work"' EXIT
pass=0; fail=0
check() { if "$@"; then pass=$((pass + 1)); else echo "FAILED: $*"; fail=$((fail + 1)); fi; }

cmake --install "$build" --prefix "$work/prefix" >/dev/null
libdir="$(find "$work/prefix" -name 'libmqe2e.so' -printf '%h\n' | head -1)"
export LD_LIBRARY_PATH="$libdir"

# 1. CMake package
cmake -S "$src/tests/packaging" -B "$work/cm" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/cm" >/dev/null
check "$work/cm/consumer"

# 2. pkg-config
export PKG_CONFIG_PATH="$libdir/pkgconfig"
# shellcheck disable=SC2046
cc -std=c11 -o "$work/pc-consumer" "$src/tests/packaging/consumer.c" \
  $(pkg-config --cflags --libs mqe2e-paho)
check "$work/pc-consumer"

# 3. what a user expects in the prefix
check test -x "$work/prefix/bin/mqe2e"
# The installed CLI runs without LD_LIBRARY_PATH (RPATH $ORIGIN/../lib...).
check env -u LD_LIBRARY_PATH "$work/prefix/bin/mqe2e" --version
check env -u LD_LIBRARY_PATH MQE2E_OPTIONS_FILE= "$work/prefix/bin/mqe2e" pub --help
# The authority is its own installed binary; `mqe2e authority` runs it.
check test -x "$work/prefix/bin/mqe2e-authority"
check env -u LD_LIBRARY_PATH "$work/prefix/bin/mqe2e-authority" --version
check sh -c "env -u LD_LIBRARY_PATH '$work/prefix/bin/mqe2e' authority --help | grep -q 'authority init'"
# man mqe2e from the prefix, and the bash completion.
check test -f "$work/prefix/share/man/man1/mqe2e.1"
if command -v man >/dev/null; then
  check sh -c "MANPATH='$work/prefix/share/man' man -P cat mqe2e 2>/dev/null | grep -q 'end-to-end'"
fi
check test -f "$work/prefix/share/bash-completion/completions/mqe2e"
check bash -c "source '$work/prefix/share/bash-completion/completions/mqe2e' && COMP_WORDS=(mqe2e pu) COMP_CWORD=1 && _mqe2e && [ \"\${COMPREPLY[*]}\" = pub ]"
check test -f "$work/prefix/include/mqe2e/mqe2e.h"
check test -f "$work/prefix/include/mqe2e/MQTTClient.h"

echo "packaging: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
