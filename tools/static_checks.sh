#!/usr/bin/env bash
# Static analysis and memory checking of lib/ and plugin/ (docs/STATIC_ANALYSIS.md):
#   werror    clang build of every target with -Werror (compile_commands.json exported)
#   tidy      clang-tidy over lib/src/*.c and plugin/src/*.c with the root .clang-tidy
#   cppcheck  cppcheck over lib/src and plugin/src
#   valgrind  every unit test (ctest label "unit") under valgrind memcheck
#
#   tools/static_checks.sh                 # all four, in that order
#   tools/static_checks.sh tidy cppcheck   # only those
#
# Environment: MQE2E_STATIC_BUILD_DIR (default ./build-static), JOBS (default
# nproc). Needs clang, clang-tidy (14), cppcheck (2.10) and valgrind; .ci/run
# installs them. Every selected step runs even after one fails; the exit status
# is 1 if any step found something, and the last lines say which.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${MQE2E_STATIC_BUILD_DIR:-$root/build-static}"
jobs="${JOBS:-$(nproc)}"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(werror tidy cppcheck valgrind)
tidy_bin="$(command -v clang-tidy-14 || command -v clang-tidy || true)"
failed=()
passed=()

note() { printf '== static: %s\n' "$*"; }

for tool in clang cppcheck valgrind; do
  command -v "$tool" >/dev/null || { echo "static_checks: $tool not found" >&2; exit 2; }
done
[ -n "$tidy_bin" ] || { echo "static_checks: clang-tidy not found" >&2; exit 2; }

sources=()
for f in "$root"/lib/src/*.c "$root"/plugin/src/*.c; do sources+=("$f"); done

configure() {
  # One clang build serves every step: -Werror, the compile database for
  # clang-tidy, the generated protobuf-c headers for both analysers and the unit
  # test binaries for valgrind. DWARF 4 because valgrind 3.19 cannot read the
  # DWARF 5 that clang 14 emits by default.
  note "configure $build (clang, Debug, -Werror)"
  CC=clang cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS=-gdwarf-4 \
    -DMQE2E_WERROR=ON -DMQE2E_BUILD_BENCH=OFF -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null || exit 2
  cmake --build "$build" -j"$jobs" --target mqe2e_proto >/dev/null || exit 2
}

step_werror() {
  note "clang -Werror build (every target)"
  local log="$build/static-werror.log"
  cmake --build "$build" -j"$jobs" >"$log" 2>&1
  local rc=$?
  grep -E '(error|warning):' "$log" | sed -E "s|^$root/||"
  [ $rc -eq 0 ] || echo "clang -Werror build failed, log in $log"
  return $rc
}

step_tidy() {
  note "clang-tidy ($("$tidy_bin" --version | grep -o 'version [0-9.]*'), ${#sources[@]} files)"
  local out="$build/static-clang-tidy.log"
  printf '%s\n' "${sources[@]}" |
    xargs -P"$jobs" -n2 "$tidy_bin" -p "$build" --config-file="$root/.clang-tidy" --quiet \
      >"$out" 2>/dev/null
  local rc=$?
  # One line per finding: file:line:col: check (the full notes are in the log).
  grep -E '^/.*: (error|warning): ' "$out" | sed -E "s|^$root/||" | sort -u
  [ $rc -eq 0 ] || echo "clang-tidy: findings above, details in $out"
  return $rc
}

step_cppcheck() {
  note "cppcheck ($(cppcheck --version))"
  # protobuf-c's own header is the one system header the generated code needs
  # for its version check; everything else from /usr/include stays out.
  mkdir -p "$build/cppcheck-include"
  ln -sfn /usr/include/protobuf-c "$build/cppcheck-include/protobuf-c"
  cppcheck --enable=warning,performance,portability --inline-suppr --error-exitcode=1 \
    --std=c11 -D_POSIX_C_SOURCE=200809L --library=posix \
    -I"$root/lib/include" -I"$root/lib/src" -I"$root/plugin/include" -I"$root/plugin/src" \
    -I"$build/proto/gen" -I"$build/cppcheck-include" \
    --suppress=missingIncludeSystem --quiet -j"$jobs" \
    --template='{file}:{line}:{column}: {severity}: {message} [{id}]' \
    "$root/lib/src" "$root/plugin/src" 2>&1 | sed -E "s|^$root/||"
}

step_valgrind() {
  local tests=()
  mapfile -t tests < <(cd "$build" && ctest -N -L unit | sed -nE 's/^ *Test +#[0-9]+: ([A-Za-z0-9_]+)$/\1/p')
  note "valgrind memcheck, ${#tests[@]} unit test programs"
  [ ${#tests[@]} -gt 0 ] || { echo "valgrind: no unit tests found"; return 1; }
  # Without the werror step the test programs may be stale: bring them up to date.
  cmake --build "$build" -j"$jobs" >"$build/static-valgrind-build.log" 2>&1 ||
    { echo "valgrind: build failed, log in $build/static-valgrind-build.log"; return 1; }
  local logs="$build/valgrind"
  rm -rf "$logs" && mkdir -p "$logs"
  local supp=()
  [ -f "$root/.ci/valgrind.supp" ] && supp=(--suppressions="$root/.ci/valgrind.supp")
  # Tests left out under valgrind (Criterion --filter), each with its reason.
  # storage/passphrase_seal_round_trip_and_tamper: ~80 Argon2id derivations at
  # the interactive limits (64 MiB each), two minutes of libsodium under
  # memcheck; the same seal/open code runs here in the other passphrase tests
  # and this test itself runs in the ASan job.
  local -A filter=(
    [test_storage]='!(storage/passphrase_seal_round_trip_and_tamper)'
  )
  local bad=0 t start
  for t in "${tests[@]}"; do
    start=$SECONDS
    local args=(--verbose=0 --jobs "$jobs")
    [ -n "${filter[$t]:-}" ] && args+=(--filter "${filter[$t]}")
    # Criterion runs each test in a re-executed copy of the program, so
    # valgrind follows children and writes one log per process; a test's
    # memcheck errors do not change Criterion's verdict, hence the log scan.
    (cd "$build/tests" && valgrind --tool=memcheck --trace-children=yes \
      --child-silent-after-fork=yes --leak-check=full --show-leak-kinds=definite,indirect \
      --errors-for-leak-kinds=definite,indirect --error-exitcode=1 --num-callers=30 \
      --read-inline-info=no "${supp[@]}" --log-file="$logs/$t.%p.log" "./$t" "${args[@]}" \
      >"$logs/$t.out" 2>&1)
    local rc=$?
    local dirty
    dirty="$(grep -lE 'ERROR SUMMARY: [1-9]' "$logs/$t".*.log 2>/dev/null || true)"
    if [ $rc -ne 0 ] || [ -n "$dirty" ]; then
      bad=1
      printf '  %-22s FAIL (%ds, exit %d)\n' "$t" $((SECONDS - start)) $rc
      tail -n 3 "$logs/$t.out" | sed 's/^/    /'
      for f in $dirty; do
        grep -vE '^==[0-9]+== *$' "$f" | sed -n '/Parent PID/,$p' | head -n 40 | sed 's/^/    /'
      done
    else
      printf '  %-22s ok (%ds)\n' "$t" $((SECONDS - start))
    fi
  done
  [ $bad -eq 0 ] || echo "valgrind: logs in $logs"
  return $bad
}

# Everything runs from main so that the whole file is read before any step
# starts (editing the script during a run cannot derail it).
main() {
  for s in "${steps[@]}"; do
    case "$s" in
      werror | tidy | cppcheck | valgrind) ;;
      *) echo "usage: $0 [werror|tidy|cppcheck|valgrind]..." >&2; exit 2 ;;
    esac
  done
  configure
  for s in "${steps[@]}"; do
    t0=$SECONDS
    if "step_$s"; then
      passed+=("$s ($((SECONDS - t0))s)")
    else
      failed+=("$s ($((SECONDS - t0))s)")
    fi
  done

  echo "static checks passed: ${passed[*]:-none}"
  if [ ${#failed[@]} -gt 0 ]; then
    echo "static checks FAILED: ${failed[*]}"
    exit 1
  fi
}

main; exit $?
