#!/usr/bin/env bash
# `meson install` into a staging directory: each file where Debian's layout
# puts it (the agent in sbindir, hostlet-ctl in bindir, plugins in
# <libdir>/hostlet, the host's config, not the demo, in <sysconfdir>/hostlet,
# the unit in systemd's unit dir), then the staged agent's --check on the
# staged config with the staged plugins.
#   install_layout.sh BUILD PREFIX BINDIR SBINDIR LIBDIR SYSCONFDIR UNITDIR DEMO_YAML
set -euo pipefail
build=$1 prefix=$2 bindir=$3 sbindir=$4 libdir=$5 sysconfdir=$6 unitdir=$7 demo=$8
under_prefix() { case $1 in /*) echo "$1" ;; *) echo "$prefix/$1" ;; esac; }
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

meson install -C "$build" --destdir "$stage" --no-rebuild >"$stage.log" 2>&1 ||
  { cat "$stage.log" >&2; rm -f "$stage.log"; fail "meson install failed"; }
rm -f "$stage.log"

agent=$stage$(under_prefix "$sbindir")/hostlet
ctl=$stage$(under_prefix "$bindir")/hostlet-ctl
plugins=$stage$(under_prefix "$libdir")/hostlet
config=$stage$(under_prefix "$sysconfdir")/hostlet/hostlet.yaml
unit=$stage$unitdir/hostlet.service

[ -x "$agent" ] || fail "no agent at $agent"
[ -x "$ctl" ] || fail "no hostlet-ctl at $ctl"
[ ! -e "$stage$(under_prefix "$bindir")/hostlet" ] || fail "the agent is in bindir too"
for p in unixsock sysfs uevent prometheus exec; do
  [ -f "$plugins/$p.so" ] || fail "no plugin $p.so in $plugins"
done
if [ -f "$build/plugins/libvirt/libvirt.so" ]; then
  [ -f "$plugins/libvirt.so" ] || fail "libvirt.so was built but is not in $plugins"
fi
if [ -f "$build/plugins/mqtt/mqtt.so" ]; then
  [ -f "$plugins/mqtt.so" ] || fail "mqtt.so was built but is not in $plugins"
  [ -x "$stage$(under_prefix "$bindir")/hostlet-fleet" ] || fail "hostlet-fleet was built but is not in bindir"
fi
[ -f "$config" ] || fail "no config at $config"
cmp -s "$config" "$demo" && fail "the installed config is the embedded demo"
fragment=$(dirname "$config")/conf.d/50-libvirt.yaml
[ -f "$fragment" ] || fail "no libvirt fragment at $fragment"
grep -q 'uri: "qemu:///system"' "$fragment" || fail "the installed libvirt fragment does not use qemu:///system"
grep -q 'plugin: libvirt' "$config" && fail "the main config still has the libvirt instance (it belongs in conf.d)"
grep -q 'socket: /run/hostlet/notify.sock' "$config" || fail "the notification socket is not under /run/hostlet"
[ -f "$unit" ] || fail "no unit at $unit"
grep -qx "ExecStart=$(under_prefix "$sbindir")/hostlet -c $(under_prefix "$sysconfdir")/hostlet/hostlet.yaml" "$unit" ||
  fail "the unit's ExecStart= does not name the installed agent and config: $(grep ExecStart= "$unit")"
[ -f "$stage$(under_prefix "$libdir")/pkgconfig/hostlet-sdk.pc" ] || fail "no hostlet-sdk.pc"
[ -f "$stage$prefix/share/bash-completion/completions/hostlet-ctl" ] || fail "no bash completion for hostlet-ctl"
[ -f "$stage$prefix/share/hostlet/examples/exec.yaml" ] || fail "no exec example in share/hostlet/examples"

# The staged agent on the staged config and its conf.d: libvirt needs no
# daemon for --check. Without the libvirt plugin in this build, the main file
# alone (as on a host with only the hostlet package).
check_config=$config
if [ ! -f "$plugins/libvirt.so" ]; then
  check_config=$stage/alone/hostlet.yaml
  mkdir -p "$stage/alone"
  cp "$config" "$check_config"
fi
out=$(HOSTLET_PLUGIN_DIR=$plugins LD_LIBRARY_PATH=$plugins "$agent" --check -c "$check_config" 2>&1) ||
  fail "hostlet --check on the installed config: $out"
if [ "$check_config" = "$config" ]; then
  grep -q "with 1 conf.d fragment" <<<"$out" || fail "--check did not read the libvirt fragment: $out"
fi
echo "installed layout ok; --check: $out"
