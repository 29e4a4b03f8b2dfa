#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test suite:
#   1. the plain build (build/): all tests;
#   2. ASan+UBSan (build-asan/): all tests;
#   3. TSan (build-tsan/): the offload and reload tests (suite 'tsan').
# Prints "N passed, N failed" at the end and exits non-zero if any failed.
# SKIP_SANITIZERS=1 runs only step 1 (for a quick local loop).
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh || exit 1

total_pass=0
total_fail=0
failed_runs=()

# run_suite DIR [meson-test-args...]
run_suite() {
  local dir=$1; shift
  echo "=== tests in $dir: meson test $*"
  meson test -C "$dir" --print-errorlogs --num-processes 2 "$@"
  local rc=$?
  local counts
  counts=$(python3 - "$dir/meson-logs/testlog.json" <<'PY'
import json, sys
ok = bad = 0
try:
    for line in open(sys.argv[1]):
        r = json.loads(line)
        if r.get("result") in ("OK", "EXPECTEDFAIL", "SKIP"):
            ok += 1
        else:
            bad += 1
except OSError:
    pass
print(ok, bad)
PY
)
  local p f
  read -r p f <<<"$counts"
  total_pass=$((total_pass + p))
  total_fail=$((total_fail + f))
  if [ $rc -ne 0 ] || [ "$f" -ne 0 ]; then failed_runs+=("$dir"); fi
}

# build DIR [meson-setup-args...]
build() {
  local dir=$1; shift
  echo "=== building $dir"
  if ! BUILD_DIR=$dir scripts/build.sh "$@"; then
    echo "build of $dir failed"
    failed_runs+=("$dir (build)")
    total_fail=$((total_fail + 1))
    return 1
  fi
}

werror=()
[ -n "${CI:-}" ] && werror=(-Dwerror=true)

if build build "${werror[@]}"; then run_suite build; fi

if [ -z "${SKIP_SANITIZERS:-}" ]; then
  # Benchmarks are not built in sanitizer trees; plugins stay dlopen-able with b_lundef=false.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  if build build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbench=false; then
    run_suite build-asan --timeout-multiplier 3
  fi
  export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
  if build build-tsan -Db_sanitize=thread -Db_lundef=false -Dbench=false; then
    run_suite build-tsan --suite tsan --timeout-multiplier 3
  fi
fi

echo
if [ ${#failed_runs[@]} -gt 0 ]; then
  echo "failures in: ${failed_runs[*]}"
fi
echo "${total_pass} passed, ${total_fail} failed"
[ "$total_fail" -eq 0 ] && [ ${#failed_runs[@]} -eq 0 ]
