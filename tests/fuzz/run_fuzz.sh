#!/usr/bin/env bash
# Build the libFuzzer targets with clang and run each one for a while.
#   tests/fuzz/run_fuzz.sh [SECONDS_PER_TARGET] [BUILD_DIR]
# SECONDS_PER_TARGET defaults to 20, BUILD_DIR to build-fuzz (relative paths
# are taken from the repository root). Targets work on a copy of the
# committed corpus under BUILD_DIR/fuzz-corpus, so the repository is never
# modified; crash reproducers land in BUILD_DIR/fuzz-artifacts/<target>/.
# Exits non-zero if any target crashed (or the build failed).
# Environment: FUZZ_TARGETS="envelope ticket" runs a subset; FUZZ_JOBS
# (default 2) is the build parallelism.
set -euo pipefail

secs="${1:-20}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${2:-build-fuzz}"
case "$build" in /*) ;; *) build="$root/$build" ;; esac
jobs="${FUZZ_JOBS:-2}"

CC=clang cmake -S "$root" -B "$build" -DMQE2E_FUZZ=ON -DMQE2E_BUILD_PLUGIN=OFF \
  -DMQE2E_BUILD_TESTS=OFF -DMQE2E_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE= \
  -DCMAKE_C_FLAGS="-O1 -g" >"$build.configure.log" 2>&1 ||
  { cat "$build.configure.log"; exit 1; }
rm -f "$build.configure.log"

all=(envelope credential revocation ticket sealed keystore noise policy session keytree)
[ -f "$root/tests/fuzz/fuzz_control.c" ] && [ -f "$root/lib/include/mqe2e/control.h" ] && all+=(control)
[ -f "$root/tests/fuzz/fuzz_payloads.c" ] && all+=(payloads)
read -r -a targets <<<"${FUZZ_TARGETS:-${all[*]}}"
cmake --build "$build" -j"$jobs" --target fuzz_make_seeds $(printf 'fuzz_%s ' "${targets[@]}")

bin="$build/tests/fuzz"
work="$build/fuzz-corpus"
mkdir -p "$work"
# Targets whose committed corpus is missing or empty get generated seeds.
gen=""
for t in "${targets[@]}"; do
  if [ -z "$(ls -A "$root/tests/fuzz/corpus/$t" 2>/dev/null)" ]; then
    [ -n "$gen" ] || { gen="$build/fuzz-seeds"; rm -rf "$gen"; "$bin/fuzz_make_seeds" "$gen"; }
  fi
done

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

status=0
printf '\n%-12s %12s %8s %8s %8s\n' target executions cov ft crashes
for t in "${targets[@]}"; do
  corpus="$work/$t"
  artifacts="$build/fuzz-artifacts/$t"
  rm -rf "$artifacts"
  mkdir -p "$corpus" "$artifacts"
  src="$root/tests/fuzz/corpus/$t"
  [ -n "$(ls -A "$src" 2>/dev/null)" ] || src="$gen/$t"
  cp -n "$src"/* "$corpus"/ 2>/dev/null || true
  log="$build/fuzz-$t.log"
  set +e
  # Known reproducers (tests/fuzz/crashes/<target>-*) are replayed first:
  # once their bug is fixed they must stay fixed.
  repro=("$root/tests/fuzz/crashes/$t"-*)
  if [ -e "${repro[0]}" ] && ! "$bin/fuzz_$t" "${repro[@]}" >"$log.repro" 2>&1; then
    for f in "${repro[@]}"; do cp "$f" "$artifacts/crash-repro-$(basename "$f")"; done
    echo "  fuzz_$t: a reproducer in tests/fuzz/crashes/ still fails; see $log.repro" >&2
  fi
  "$bin/fuzz_$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" >"$log" 2>&1
  rc=$?
  set -e
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)"
  ft="$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)"
  crashes="$(find "$artifacts" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
    -o -name 'oom-*' \) | wc -l)"
  if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes=1; fi
  printf '%-12s %12s %8s %8s %8s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$crashes"
  if [ "$crashes" -ne 0 ]; then
    status=1
    echo "  fuzz_$t failed (exit $rc); log: $log, reproducers: $artifacts/" >&2
    grep -E 'ERROR|invariant failed|SUMMARY|^ *#[0-9]+ ' "$log" | head -20 >&2 || true
  fi
done
exit "$status"
