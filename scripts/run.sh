#!/usr/bin/env bash
# Installs what is missing, builds, and runs the agent in the foreground on
# its embedded default config (etc/hostlet.yaml). Arguments go to hostlet,
# e.g. `scripts/run.sh -c my.yaml` or `scripts/run.sh --log-level debug`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
BUILD_DIR=${BUILD_DIR:-build} scripts/build.sh
# The demo, also on a host where /etc/hostlet/hostlet.yaml exists, unless -c names a file.
demo=(--demo)
for a in "$@"; do case $a in -c | --config | --config=*) demo=() ;; esac; done
exec "${BUILD_DIR:-build}/core/hostlet" "${demo[@]}" "$@"
