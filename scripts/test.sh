#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test suite:
#   1. the plain build (build/): all tests;
#   2. ASan+UBSan (build-asan/): all tests;
#   3. TSan (build-tsan/): the offload, reload and libvirt bridge tests (suite
#      'tsan'), building only what they need.
#   4. as root: the Debian packages, built by scripts/package.sh into
#      build-deb/ (one plain build, no tests, lintian without errors) and
#      installed, run, stopped and purged by tests/package/install_test.sh;
#   5. with CI or FUZZ_SECONDS set: scripts/fuzz.sh all ${FUZZ_SECONDS:-60}
#      (every libFuzzer target under ASan+UBSan in build-fuzz/).
# Prints "N passed, N failed" at the end and exits non-zero if any failed.
# SKIP_SANITIZERS=1 runs only step 1 (for a quick local loop); SKIP_PACKAGE=1
# leaves out step 4.
set -uo pipefail
cd "$(dirname "$0")/.."
# The test-only packages too (scripts/run.sh installs only what the agent needs).
scripts/deps.sh --tests || exit 1

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

# suite_targets DIR SUITE: the build outputs the tests of SUITE need (their
# executables and what they depend on), relative to DIR, one per line.
suite_targets() {
  meson introspect --tests --targets "$1" | python3 -c '
import json, os, sys
d = json.load(sys.stdin)
build, suite = sys.argv[1], "hostlet:" + sys.argv[2]
files = {t["id"]: t["filename"] for t in d["targets"]}
need = set()
for t in d["tests"]:
    if suite in t["suite"]:
        need.add(t["cmd"][0])
        for dep in t["depends"]:
            need.update(files.get(dep, []))
for f in sorted(need):
    print(os.path.relpath(f, build))
' "$1" "$2"
}

werror=()
[ -n "${CI:-}" ] && werror=(-Dwerror=true)

# -Dtests/-Dbench: a tree that scripts/run.sh configured has them off.
if build build -Dtests=true -Dbench=true "${werror[@]}"; then run_suite build; fi

if [ -z "${SKIP_SANITIZERS:-}" ]; then
  # Benchmarks are not built in sanitizer trees; plugins stay dlopen-able with b_lundef=false.
  # intercept_tls_get_addr=0: GCC 12's sanitizer runtime takes a dynamic TLS
  # block of glibc >= 2.25 for a glibc 2.19 one when it happens to sit at
  # offset 16 of a page, reads a bogus range from it, and LeakSanitizer's
  # tracer dies at exit with "Tracer caught signal 11" (google/sanitizers#1322,
  # fixed in GCC 14 / LLVM 17). The agent hit it after a libvirt reconnect.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:intercept_tls_get_addr=0}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  # -O1 as the sanitizers' own docs suggest: it compiles in a good deal less
  # time than -O2 on 2 cores and keeps stack traces exact.
  if build build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbench=false -Doptimization=1; then
    run_suite build-asan --timeout-multiplier 3
  fi
  # The TSan tree builds only what the 'tsan' suite runs.
  export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
  tsan_args=(-Db_sanitize=thread -Db_lundef=false -Dbench=false -Doptimization=1)
  echo "=== building build-tsan (the tsan suite's targets)"
  if { [ -f build-tsan/build.ninja ] || meson setup build-tsan "${tsan_args[@]}"; } &&
     mapfile -t tsan_targets < <(suite_targets build-tsan tsan) && [ ${#tsan_targets[@]} -gt 0 ] &&
     ninja -C build-tsan "${tsan_targets[@]}"; then
    run_suite build-tsan --no-rebuild --suite tsan --timeout-multiplier 3
  else
    echo "build of build-tsan failed"
    failed_runs+=("build-tsan (build)")
    total_fail=$((total_fail + 1))
  fi
fi

# The packages: built from a copy of the tree, then installed on this machine.
if [ -z "${SKIP_PACKAGE:-}" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "=== packages: skipped (installing them needs root)"
  else
    echo "=== packages: scripts/package.sh build-deb, tests/package/install_test.sh build-deb"
    if scripts/package.sh build-deb && tests/package/install_test.sh build-deb; then
      total_pass=$((total_pass + 1))
    else
      failed_runs+=("packages")
      total_fail=$((total_fail + 1))
    fi
  fi
fi

# CI (or FUZZ_SECONDS=N) also runs every fuzz target for N seconds (default 60).
if [ -n "${CI:-}" ] || [ -n "${FUZZ_SECONDS:-}" ]; then
  echo "=== fuzzing: scripts/fuzz.sh all ${FUZZ_SECONDS:-60}"
  scripts/fuzz.sh all "${FUZZ_SECONDS:-60}" || failed_runs+=("fuzz")
fi

echo
if [ ${#failed_runs[@]} -gt 0 ]; then
  echo "failures in: ${failed_runs[*]}"
fi
echo "${total_pass} passed, ${total_fail} failed"
[ "$total_fail" -eq 0 ] && [ ${#failed_runs[@]} -eq 0 ]
