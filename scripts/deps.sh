#!/usr/bin/env bash
# Installs the Debian 12 packages hostlet needs to build and run (what
# scripts/run.sh needs), with --tests also those its tests, packaging and
# benchmarks use, and any more named as arguments (bench/run.sh names the
# benchmark's own peers, scripts/fuzz.sh clang).
#   scripts/deps.sh [--tests] [PACKAGE...]
# Only missing packages are installed; nothing is touched when all are there.
set -euo pipefail

PACKAGES=(
  g++ meson ninja-build pkg-config python3
  libuv1-dev libyaml-cpp-dev nlohmann-json3-dev libvirt-dev   # build
  libxml2-dev                                                 # the libvirt plugin reads domain XML
  zlib1g-dev                                                  # gzip of the prometheus plugin
  libmosquitto-dev                                            # the mqtt plugin (MQTT 5 and 3.1.1 client)
  scdoc                                                       # man pages (man/*.scd)
  netcat-openbsd                                              # the README's raw-socket example
)
TEST_PACKAGES=(
  catch2                                                      # unit and end-to-end tests
  libvirt-daemon libvirt-clients python3-libvirt              # private libvirtd for tests, virsh, bench peer
  iproute2 util-linux                                         # veth pairs and setpriv in tests
  man-db systemd                                              # man -l and systemd-analyze verify in tests
  dpkg-dev debhelper lintian                                  # scripts/package.sh and its install test
  prometheus                                                  # promtool and a real server for the metrics tests
  prometheus-libvirt-exporter                                 # the libvirt metrics' compatibility peer
  mosquitto                                                   # a real broker for the mqtt plugin's tests
)
if [ "${1:-}" = --tests ]; then
  shift
  PACKAGES+=("${TEST_PACKAGES[@]}")
fi
PACKAGES+=("$@")

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
