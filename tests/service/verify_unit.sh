#!/usr/bin/env bash
# systemd-analyze verify on hostlet.service as meson configured it, with the
# configured agent path pointed at the build tree's binary (verify checks
# that ExecStart= names an executable) and MANPATH at the built man pages
# when there are some (it checks that each Documentation= page exists).
#   verify_unit.sh UNIT CONFIGURED_HOSTLET BUILT_HOSTLET [MAN_PAGE...]
set -euo pipefail
unit=$1 configured=$2 built=$3
shift 3
if ! command -v systemd-analyze >/dev/null; then
  echo "SKIP: systemd-analyze is not installed (Debian: package systemd)"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s|$configured|$built|g" "$unit" >"$tmp/hostlet.service"
if grep -q "$configured" "$tmp/hostlet.service"; then
  echo "FAIL: $configured is still named in the unit" >&2
  exit 1
fi
man=(--man=no)
if [ $# -gt 0 ]; then
  for page in "$@"; do
    mkdir -p "$tmp/man/man${page##*.}"
    ln -s "$(readlink -f "$page")" "$tmp/man/man${page##*.}/"
  done
  export MANPATH=$tmp/man
  man=(--man=yes)
fi
# verify exits 0 on warnings it prints (an unknown key is only a warning):
# any output at all fails the test.
out=$(systemd-analyze verify "${man[@]}" "$tmp/hostlet.service" 2>&1) || {
  echo "FAIL: systemd-analyze verify exited $?:" >&2
  echo "$out" >&2
  exit 1
}
if [ -n "$out" ]; then
  echo "FAIL: systemd-analyze verify printed:" >&2
  echo "$out" >&2
  exit 1
fi
echo "systemd-analyze verify: no complaint"
