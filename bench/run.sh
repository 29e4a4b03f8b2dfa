#!/usr/bin/env bash
# The one entry point of hostlet's benchmarks: builds what it needs (like
# scripts/build.sh, with -Dbench=true), runs every benchmark in interleaved
# rounds and prints a markdown table; also writes bench/results/latest.md and
# latest.json.
#   bench/run.sh            5 rounds (ROUNDS=N to change), about 10 minutes
#   bench/run.sh --smoke    tiny counts, one round: checks only that it runs and prints
# BUILD_DIR (default build) is the meson build directory. Installs what is
# missing first, with the benchmarks' own peers: python3-uvloop and
# libsimdjson-dev (Debian's). bench/parse_bench (hand-written JSON parsing
# against simdjson) runs last, in the same invocation.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --tests python3-uvloop libsimdjson-dev
BUILD_DIR=${BUILD_DIR:-build}
export BUILD_DIR
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  meson setup "$BUILD_DIR" -Dbench=true
elif ! meson introspect "$BUILD_DIR" --buildoptions | /usr/bin/python3 -c \
    'import json,sys; sys.exit(0 if any(o["name"]=="bench" and o["value"] for o in json.load(sys.stdin)) else 1)'; then
  meson configure "$BUILD_DIR" -Dbench=true
fi
# A tree configured before libsimdjson-dev was installed has no parse_bench yet.
ninja -C "$BUILD_DIR" -t targets all | grep -q '^bench/parse_bench:' || meson setup --reconfigure "$BUILD_DIR" >&2
ninja -C "$BUILD_DIR" core/hostlet ctl/hostlet-ctl plugins/unixsock/unixsock.so plugins/libvirt/libvirt.so \
  plugins/sysfs/sysfs.so plugins/uevent/uevent.so \
  bench/offload_bench bench/bench_plugin.so bench/notify_client bench/virt_direct bench/parse_bench \
  tests/plugins/worker_v1.so tests/plugins/worker_v2.so >&2
/usr/bin/python3 bench/driver.py "$@"
if [ "${1:-}" = --smoke ]; then "$BUILD_DIR/bench/parse_bench" 1; else "$BUILD_DIR/bench/parse_bench" 9; fi
