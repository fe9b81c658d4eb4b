#!/usr/bin/env bash
# Build the benchmarks (Release) and run both: the timing comparison against
# the bare AEAD (bench_crypto) and the callgrind instruction counts with their
# baseline check (callgrind.sh).
#
# Usage: bench/run_crypto.sh [--smoke] [BUILD_DIR]
#   BUILD_DIR  build tree (default: <repo>/build-bench). A new one is configured
#              Release with tests and plugin off; an existing one is switched
#              to Release with benchmarks on.
#   --smoke    tiny iteration counts, no timing and no baseline verdicts (CI:
#              proves everything builds and runs). Skips callgrind without valgrind.
# Writes BUILD_DIR/bench-crypto.json and BUILD_DIR/callgrind.json.
# Exit status: non-zero if a build or run fails or, outside --smoke, if
# callgrind.sh finds a regression over bench/callgrind-baseline.json.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
smoke=0
build=""
for arg in "$@"; do
    case "$arg" in
        --smoke) smoke=1 ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "run_crypto.sh: unknown option: $arg" >&2; exit 2 ;;
        *) build="$arg" ;;
    esac
done
build="${build:-$repo/build-bench}"

if [ -f "$build/CMakeCache.txt" ]; then
    cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DMQE2E_BUILD_BENCH=ON >/dev/null
else
    cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DMQE2E_BUILD_BENCH=ON \
        -DMQE2E_BUILD_TESTS=OFF -DMQE2E_BUILD_PLUGIN=OFF >/dev/null
fi
cmake --build "$build" -j2 --target bench_crypto callgrind_seal_open >/dev/null

if [ "$smoke" -eq 1 ]; then
    "$build/bench/bench_crypto" --smoke --json "$build/bench-crypto.json"
    if command -v valgrind >/dev/null; then
        "$here/callgrind.sh" --build-dir "$build" -n 10 --report-only
    else
        echo "run_crypto.sh: valgrind not installed, callgrind part skipped"
    fi
    echo "smoke run complete (the timings above are not meaningful; instruction counts are, but are not compared)"
    exit 0
fi

"$build/bench/bench_crypto" --json "$build/bench-crypto.json"
echo "written: $build/bench-crypto.json"
"$here/callgrind.sh" --build-dir "$build"
