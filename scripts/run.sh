#!/usr/bin/env bash
# Installs what is missing, builds, and runs the agent in the foreground on
# its embedded demo config (etc/hostlet.yaml). Arguments go to hostlet,
# e.g. `scripts/run.sh -c my.yaml` or `scripts/run.sh --log-level debug`.
# Installs only what the build and the agent need, and builds only what it
# runs: a new BUILD_DIR is configured without tests and benchmarks
# (scripts/test.sh turns them on when it uses the same tree), and in an
# existing one only the agent, hostlet-ctl and the plugins are built.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
dir=${BUILD_DIR:-build}
[ -f "$dir/build.ninja" ] || meson setup "$dir" -Dtests=false -Dbench=false
mapfile -t plugins < <(ninja -C "$dir" -t targets all | sed -n 's|^\(plugins/[^:]*\.so\): .*|\1|p')
ninja -C "$dir" core/hostlet ctl/hostlet-ctl "${plugins[@]}"
# The demo, also on a host where /etc/hostlet/hostlet.yaml exists, unless -c names a file.
demo=(--demo)
for a in "$@"; do case $a in -c | --config | --config=*) demo=() ;; esac; done
exec "$dir/core/hostlet" "${demo[@]}" "$@"
