#!/usr/bin/env bash
# Runs the libFuzzer targets of tests/fuzz/ under ASan+UBSan:
#
#   scripts/fuzz.sh [TARGET|all] [SECONDS]      default: all, 60 seconds each
#
# Installs clang-14 and libFuzzer when missing, configures build-fuzz/ with
# clang (once), builds only the fuzz binaries, then runs each target for
# SECONDS, FUZZ_JOBS (default 2) at a time. Each target works on its own
# corpus, build-fuzz/corpus/<name>, seeded from tests/fuzz/corpus/<name> and
# tests/fuzz/regressions/<name> and kept between runs. Prints one line per
# target (executions, corpus size, result) and exits non-zero on any finding
# (crash, broken promise, hang, leak, sanitizer report), naming the input
# left in build-fuzz/artifacts/<name>/ and the command that reproduces it.
# The full libFuzzer output is in build-fuzz/logs/<name>.log.
set -uo pipefail
cd "$(dirname "$0")/.."

target=${1:-all}
seconds=${2:-60}
jobs=${FUZZ_JOBS:-2}
max_len=${FUZZ_MAX_LEN:-4096}
dir=build-fuzz

mapfile -t all_targets < <(ls tests/fuzz/*_fuzz.cpp | sed 's|.*/||; s|_fuzz\.cpp$||')
if [ "$target" = all ]; then
  targets=("${all_targets[@]}")
elif [ -f "tests/fuzz/${target}_fuzz.cpp" ]; then
  targets=("$target")
else
  echo "fuzz.sh: no target '$target'; the targets: ${all_targets[*]}" >&2
  exit 2
fi
case $seconds in '' | *[!0-9]*) echo "fuzz.sh: SECONDS must be a number, got '$seconds'" >&2; exit 2 ;; esac

scripts/deps.sh --tests clang-14 libfuzzer-14-dev || exit 1

# -O1 as in the sanitizer trees of scripts/test.sh; no benchmarks, which no
# fuzz target needs (libvirt is needed: libvirt_xml links the plugin's stats).
if [ ! -f "$dir/build.ninja" ]; then
  CC=clang-14 CXX=clang++-14 meson setup "$dir" -Db_sanitize=address,undefined -Db_lundef=false \
    -Doptimization=1 -Dbench=false -Dtests=true || exit 1
fi
binaries=()
for name in "${targets[@]}"; do binaries+=("tests/fuzz/${name}_fuzz"); done
echo "=== building in $dir: ${binaries[*]}"
ninja -C "$dir" -j "${FUZZ_BUILD_JOBS:-2}" "${binaries[@]}" || { echo "fuzz.sh: the build failed" >&2; exit 1; }

# Stop at the first error of any kind, with a report libFuzzer can catch.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

mkdir -p "$dir/logs"

# run_one NAME: fuzzes NAME for $seconds; writes "$dir/logs/NAME.result".
run_one() {
  local name=$1
  local corpus=$dir/corpus/$name artifacts=$dir/artifacts/$name/ log=$dir/logs/$name.log
  mkdir -p "$corpus" "$artifacts"
  cp -n tests/fuzz/corpus/"$name"/* tests/fuzz/regressions/"$name"/* "$corpus"/ 2>/dev/null
  local before
  before=$(ls "$artifacts" | wc -l)
  "$dir/tests/fuzz/${name}_fuzz" "$corpus" -max_total_time="$seconds" -timeout=10 \
    -max_len="$max_len" -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts" >"$log" 2>&1
  local rc=$?
  local execs
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  local size
  size=$(ls "$corpus" | wc -l)
  local artifact
  artifact=$(ls -t "$artifacts" | head -n 1)
  if [ $rc -eq 0 ] && [ "$(ls "$artifacts" | wc -l)" -eq "$before" ]; then
    printf '%-18s %12s executions in %ss, corpus %s inputs: no finding\n' "$name" "${execs:-?}" "$seconds" "$size" \
      >"$dir/logs/$name.result"
    return
  fi
  local kind
  kind=$(grep -m1 -oE 'ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer)[^(]*|SUMMARY: [^ ]+ [^ ]+|runtime error: .*' "$log" | head -n 1)
  local where
  where=$(grep -m1 -oE '[A-Za-z_]+_fuzz\.cpp:[0-9]+' "$log")
  {
    printf '%-18s FINDING after %s executions: %s%s\n' "$name" "${execs:-?}" "${kind:-exit status $rc}" \
      "${where:+ (at tests/fuzz/$where)}"
    if [ -n "$artifact" ]; then
      echo "    input:      $artifacts$artifact"
      echo "    reproduce:  $dir/tests/fuzz/${name}_fuzz $artifacts$artifact"
      echo "    or replay:  build/tests/fuzz/${name}_replay $artifacts$artifact   (any build)"
      echo "    keep it:    cp $artifacts$artifact tests/fuzz/regressions/$name/   once fixed"
    fi
    echo "    log:        $log"
  } >"$dir/logs/$name.result"
}

echo "=== fuzzing ${#targets[@]} target(s) for ${seconds}s each, $jobs at a time"
running=0
for name in "${targets[@]}"; do
  rm -f "$dir/logs/$name.result"
  run_one "$name" &
  running=$((running + 1))
  if [ $running -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait

failed=0
for name in "${targets[@]}"; do
  if [ -f "$dir/logs/$name.result" ]; then
    cat "$dir/logs/$name.result"
    grep -q FINDING "$dir/logs/$name.result" && failed=1
  else
    echo "$name: no result (see $dir/logs/$name.log)"
    failed=1
  fi
done
exit $failed
