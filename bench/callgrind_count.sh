# shellcheck shell=bash disable=SC2154
# Sourced by bench/callgrind.sh and bench/callgrind_publish.sh (not run alone).
# Needs: $prog (the workload, taking N as its only argument), $tmp (a scratch
# directory), $n (messages per loop) and $me (the calling script's name).

# Instructions inside one loop function for a run of $2 messages:
# --toggle-collect counts only inside that function (the pattern also matches
# compiler clones such as cg_seal_loop.constprop.0).
total_of() {
    local fn="$1" m="$2" out="$tmp/cg.$1.$2" total
    if ! valgrind --tool=callgrind --callgrind-out-file="$out" --toggle-collect="$fn*" \
        "$prog" "$m" >"$tmp/log.$fn" 2>&1; then
        cat "$tmp/log.$fn" >&2
        echo "$me: $prog failed under valgrind" >&2
        exit 2
    fi
    total="$(sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$out")"
    [ -n "$total" ] || total="$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$out")"
    [ -n "$total" ] || { echo "$me: no totals in $out" >&2; exit 2; }
    echo "$total"
}

# Per message = (count for 2n - count for n) / n: one-time costs inside the
# loop (lazy symbol binding in libsodium, first-touch paths) cancel out, so
# the figure does not depend on n.
count() {
    local t1 t2
    t1="$(total_of "$1" "$n")"
    t2="$(total_of "$1" $(( 2 * n )))"
    echo $(( (t2 - t1 + n / 2) / n ))
}
