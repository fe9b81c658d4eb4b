#!/usr/bin/env bash
# Fails when Doxygen has anything to say about the public headers.
#
#   tools/check_docs.sh
#
# Runs Doxygen with the repository's Doxyfile, but writes the output and the
# warning log to a temporary directory so the tree stays clean. Exit status:
# 0 no warning, 1 warnings (printed on stderr), 2 Doxygen missing or failed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if ! command -v doxygen >/dev/null 2>&1; then
    echo "check_docs: doxygen not found" >&2
    exit 2
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

log="$tmp/warnings.log"
# Later assignments override the Doxyfile's own OUTPUT_DIRECTORY and
# WARN_LOGFILE; the Doxyfile's paths are relative to the repository root.
if ! (cd "$root" && { cat Doxyfile; echo "OUTPUT_DIRECTORY=$tmp/out"; echo "WARN_LOGFILE=$log"; } \
        | doxygen - >"$tmp/doxygen.out" 2>&1); then
    echo "check_docs: doxygen failed:" >&2
    cat "$tmp/doxygen.out" >&2
    exit 2
fi

if [ -s "$log" ]; then
    count="$(grep -c 'warning:' "$log" || true)"
    echo "check_docs: $count Doxygen warning(s):" >&2
    sed "s|$root/||" "$log" >&2
    exit 1
fi

echo "check_docs: no Doxygen warnings"
