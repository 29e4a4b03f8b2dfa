#!/usr/bin/env bash
# Builds the Debian packages (hostlet, hostlet-plugin-libvirt, hostlet-dev and
# their -dbgsym) from this tree into OUT_DIR (default: build-deb/), then runs
# lintian on them:
#
#   scripts/package.sh [OUT_DIR]
#
# The tree's files (tracked, and untracked ones git does not ignore) are
# copied to OUT_DIR/src/hostlet-VERSION and built there with
# `dpkg-buildpackage -us -uc -b`: no build directory of the tree is reused and
# nothing is written next to it. DEB_BUILD_OPTIONS defaults to nocheck (one
# plain build, no test suites: scripts/test.sh runs those) and
# parallel=$(nproc). Exits non-zero when the build fails or lintian reports an
# error; lintian's full report is in OUT_DIR/lintian.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-build-deb}")
version=$(dpkg-parsechangelog -S Version)
src=$out/src/hostlet-$version

rm -rf "$out"
mkdir -p "$src"
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$src" 2>/dev/null ||
  git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    [ -e "$f" ] && cp --parents -t "$src" "$f"  # a tracked file deleted in the tree is left out
  done

export DEB_BUILD_OPTIONS=${DEB_BUILD_OPTIONS:-nocheck parallel=$(nproc)}
echo "=== dpkg-buildpackage -us -uc -b in $src (DEB_BUILD_OPTIONS=$DEB_BUILD_OPTIONS)"
(cd "$src" && dpkg-buildpackage -us -uc -b) >"$out/build.log" 2>&1 || {
  tail -n 60 "$out/build.log" >&2
  echo "package.sh: dpkg-buildpackage failed; the whole log: $out/build.log" >&2
  exit 1
}
mv "$out"/src/*.deb "$out"/src/*.changes "$out"/src/*.buildinfo "$out"/
rm -rf "$out/src"

changes=$(ls "$out"/*.changes)
echo "=== lintian $(basename "$changes")"
lintian "$changes" >"$out/lintian.txt" 2>&1 || true
cat "$out/lintian.txt"
if grep -q '^E: ' "$out/lintian.txt"; then
  echo "package.sh: lintian reports errors" >&2
  exit 1
fi
ls -1 "$out"/*.deb
