#!/usr/bin/env bash
# Instruction counts of seal, open and the raw AEAD under callgrind, compared
# with the committed baseline (bench/callgrind-baseline.json).
#
# Usage: bench/callgrind.sh [--build-dir DIR] [--json FILE] [-n N]
#                           [--update-baseline | --report-only]
#   --build-dir DIR     build tree (default: <repo>/build-bench; configured as
#                       Release with tests and plugin off if it does not exist)
#   --json FILE         where to write the measured counts (default: DIR/callgrind.json)
#   -n N                messages per loop (default 1000)
#   --update-baseline   rewrite bench/callgrind-baseline.json with this run
#   --report-only       print and write the counts, do not compare
# Exit status: 0 ok, 1 seal or open regressed by more than 10 %, 2 usage or
# setup error.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
baseline="$here/callgrind-baseline.json"
build="$repo/build-bench"
json=""
n=1000
mode=compare
tolerance_pct=10

while [ $# -gt 0 ]; do
    case "$1" in
        --build-dir) build="$2"; shift 2 ;;
        --json) json="$2"; shift 2 ;;
        -n) n="$2"; shift 2 ;;
        --update-baseline) mode=update; shift ;;
        --report-only) mode=report; shift ;;
        -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "callgrind.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
case "$n" in ''|*[!0-9]*) echo "callgrind.sh: -n needs a number" >&2; exit 2 ;; esac
[ "$n" -gt 0 ] || { echo "callgrind.sh: -n must be > 0" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind not installed" >&2; exit 2; }
json="${json:-$build/callgrind.json}"

if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DMQE2E_BUILD_BENCH=ON \
        -DMQE2E_BUILD_TESTS=OFF -DMQE2E_BUILD_PLUGIN=OFF >/dev/null
fi
bt="$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt")"
if [ "$bt" != Release ]; then
    echo "callgrind.sh: warning: $build is a '${bt:-no type}' build; the baseline is Release" >&2
fi
cmake --build "$build" -j2 --target callgrind_seal_open >/dev/null
prog="$build/bench/callgrind_seal_open"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

me=callgrind.sh
# shellcheck source=bench/callgrind_count.sh
. "$here/callgrind_count.sh"

seal="$(count cg_seal_loop)"
open="$(count cg_open_loop)"
raw_enc="$(count cg_raw_encrypt_loop)"
raw_dec="$(count cg_raw_decrypt_loop)"
raw=$(( raw_enc + raw_dec ))
ratio="$(awk -v a="$seal" -v b="$open" -v r="$raw" 'BEGIN { printf "%.3f", (a + b) / r }')"
vg="$(valgrind --version)"

mkdir -p "$(dirname "$json")"
cat >"$json" <<EOF
{
  "benchmark": "callgrind",
  "unit": "instructions (Ir) per message",
  "payload_bytes": 256,
  "ad_bytes": 60,
  "messages": $n,
  "valgrind": "$vg",
  "instructions_per_seal": $seal,
  "instructions_per_open": $open,
  "instructions_per_raw_encrypt": $raw_enc,
  "instructions_per_raw_decrypt": $raw_dec,
  "instructions_per_raw_aead": $raw,
  "ratio_seal_open_vs_raw_aead": $ratio
}
EOF

printf '\ncallgrind, 256-byte payload, %s messages per loop (instructions per message)\n' "$n"
printf '| operation                       | instructions |\n|---------------------------------|-------------:|\n'
printf '| seal (mqe2e_envelope_seal)      | %12s |\n' "$seal"
printf '| open (envelope_parse + _open)   | %12s |\n' "$open"
printf '| raw AEAD encrypt                | %12s |\n' "$raw_enc"
printf '| raw AEAD decrypt                | %12s |\n' "$raw_dec"
printf '| raw AEAD encrypt + decrypt      | %12s |\n' "$raw"
printf '| (seal + open) / raw             | %11sx |\n' "$ratio"
echo "written: $json"

case "$mode" in
    update)
        cp "$json" "$baseline"
        echo "baseline updated: $baseline"
        exit 0 ;;
    report)
        exit 0 ;;
esac

[ -f "$baseline" ] || {
    echo "callgrind.sh: no baseline at $baseline (create it with --update-baseline)" >&2
    exit 2
}
base_of() {
    sed -n "s/^ *\"$1\": *\([0-9][0-9]*\).*/\1/p" "$baseline"
}
status=0
for op in seal open; do
    cur="$([ "$op" = seal ] && echo "$seal" || echo "$open")"
    base="$(base_of "instructions_per_$op")"
    [ -n "$base" ] || { echo "callgrind.sh: baseline lacks instructions_per_$op" >&2; exit 2; }
    verdict="$(awk -v c="$cur" -v b="$base" -v t="$tolerance_pct" 'BEGIN {
        d = (c - b) * 100.0 / b
        printf "%+.1f%% %s", d, (d > t ? "REGRESSED" : (d < -t ? "improved (consider --update-baseline)" : "ok"))
    }')"
    printf '%-5s %8s vs baseline %8s: %s\n' "$op" "$cur" "$base" "$verdict"
    case "$verdict" in *REGRESSED*) status=1 ;; esac
done
if [ "$status" -ne 0 ]; then
    echo "callgrind.sh: seal or open costs more than ${tolerance_pct}% over the baseline" >&2
fi
exit "$status"
