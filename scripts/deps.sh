#!/usr/bin/env bash
# Installs the Debian 12 packages hostlet needs to build, run and test, and any
# more named as arguments (bench/run.sh names the benchmark's own peers).
# Only missing packages are installed; nothing is touched when all are there.
set -euo pipefail

PACKAGES=(
  g++ meson ninja-build pkg-config python3
  libuv1-dev libyaml-cpp-dev nlohmann-json3-dev libvirt-dev   # build
  scdoc                                                       # man pages (man/*.scd)
  catch2                                                      # unit and end-to-end tests
  libvirt-daemon libvirt-clients python3-libvirt              # private libvirtd for tests, virsh, bench peer
  iproute2 util-linux                                         # veth pairs and setpriv in tests
  netcat-openbsd                                              # the README's raw-socket example
  man-db systemd                                              # man -l and systemd-analyze verify in tests
  "$@"
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "hostlet: missing packages: ${missing[*]}; run as root (or install them) first" >&2
  exit 1
fi
echo "hostlet: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
