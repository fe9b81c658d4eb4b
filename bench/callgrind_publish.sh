#!/usr/bin/env bash
# Instructions per message of the fronts' publish path (bench/callgrind_publish.c):
# the sync and async fronts' publish calls up to Paho (which refuses on an
# unconnected client: no socket), plain Paho's same refusal, and mqe2e_protect.
#
# Usage: bench/callgrind_publish.sh [--build-dir DIR] [-n N]
#   --build-dir DIR   a Release build tree with the plugin (default: <repo>/build-rel)
#   -n N              messages per loop (default 1000)
# Prints one line per loop; per message = (count(2N) - count(N)) / N.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
build="$repo/build-rel"
n=1000
while [ $# -gt 0 ]; do
    case "$1" in
        --build-dir) build="$2"; shift 2 ;;
        -n) n="$2"; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "callgrind_publish.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
case "$n" in ''|*[!0-9]*|0) echo "callgrind_publish.sh: -n needs a number > 0" >&2; exit 2 ;; esac
command -v valgrind >/dev/null || { echo "callgrind_publish.sh: valgrind not installed" >&2; exit 2; }
cmake --build "$build" -j2 --target callgrind_publish >/dev/null
prog="$build/bench/callgrind_publish"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

me=callgrind_publish.sh
# shellcheck source=bench/callgrind_count.sh
. "$here/callgrind_count.sh"
sync="$(count cg_sync_publish_loop)"
async="$(count cg_async_publish_loop)"
psync="$(count cg_paho_sync_publish_loop)"
pasync="$(count cg_paho_async_publish_loop)"
prot="$(count cg_protect_loop)"
printf '\ncallgrind, 256-byte payload, QoS 0, %s messages per loop (instructions per message)\n' "$n"
printf '| loop | instructions |\n|---|---:|\n'
printf '| mqe2e_MQTTClient_publish (to Paho refusing) | %s |\n' "$sync"
printf '| mqe2e_MQTTAsync_send (to Paho refusing) | %s |\n' "$async"
printf '| plain MQTTClient_publish refusing | %s |\n' "$psync"
printf '| plain MQTTAsync_send refusing | %s |\n' "$pasync"
printf '| mqe2e_protect | %s |\n' "$prot"
printf '| sync front own work (front - Paho - protect) | %s |\n' $(( sync - psync - prot ))
printf '| async front own work (front - Paho - protect) | %s |\n' $(( async - pasync - prot ))
