#!/usr/bin/env bash
# The Debian packages on this machine, as an operator would use them (needs
# root; scripts/test.sh runs it after scripts/package.sh):
#
#   tests/package/install_test.sh DEB_DIR
#
#  1. installs hostlet alone from DEB_DIR with apt-get (purging an earlier
#     install first): --check passes on its config (3 instances, no virt);
#     then hostlet-plugin-libvirt (which adds virt in conf.d/50-libvirt.yaml)
#     and hostlet-dev;
#  2. systemd-analyze verify on the installed unit, man -l on the installed
#     pages without a warning;
#  3. the installed `hostlet --check` on the installed config, and on a copy
#     (with its conf.d) with libvirt's URI switched to the test driver and the
#     sockets moved to a temporary runtime directory;
#  4. starts the installed agent on that copy the way the unit does (its
#     ExecStartPre= then its ExecStart=, with no HOSTLET_PLUGIN_DIR and a decoy
#     plugin in /usr/plugins, where a build tree's would be), checks that
#     every instance runs with the plugins of <libdir>/hostlet through the
#     installed hostlet-ctl, and stops it by pid with SIGTERM (exit 0);
#  5. purges the packages: no file of theirs is left, and the file lists of
#     /etc, /usr and /var/lib/systemd are those from before the install.
# Prints one line per step; exits 1 at the first failure, saying why.
set -euo pipefail
debs=$(realpath "${1:?usage: install_test.sh DEB_DIR}")
packages=(hostlet hostlet-plugin-libvirt hostlet-dev)
tmp=$(mktemp -d)
agent_pid=
purge_at_exit=
decoy_dir=
cleanup() {
  if [ -n "$decoy_dir" ]; then rm -rf "$decoy_dir"; fi
  if [ -n "$agent_pid" ] && kill -0 "$agent_pid" 2>/dev/null; then kill -KILL "$agent_pid"; fi
  # A failure half-way leaves nothing installed behind either.
  if [ -n "$purge_at_exit" ]; then apt-get purge -y -q "${packages[@]}" >/dev/null 2>&1 || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "--- $*"; }
[ "$(id -u)" -eq 0 ] || { echo "SKIP: installing packages needs root"; exit 77; }
export DEBIAN_FRONTEND=noninteractive

installed() { dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q 'install ok installed'; }
purge_all() { apt-get purge -y -q "${packages[@]}" >"$tmp/purge.log" 2>&1 || { cat "$tmp/purge.log" >&2; return 1; }; }
snapshot() { find /etc /usr /var/lib/systemd -xdev 2>/dev/null | LC_ALL=C sort; }

for p in "${packages[@]}"; do
  if installed "$p"; then purge_all; break; fi
done
snapshot >"$tmp/before.txt"

files=()
for p in "${packages[@]}"; do
  f=$(ls "$debs"/"${p}"_*.deb 2>/dev/null | head -n 1)
  [ -n "$f" ] || fail "no ${p}_*.deb in $debs"
  files+=("$f")
done
purge_at_exit=1
step "install: hostlet alone, then --check on its config without the libvirt plugin"
apt-get install -y -q --no-install-recommends "${files[0]}" >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log" >&2; fail "apt-get install hostlet failed"; }
out=$(/usr/sbin/hostlet --check -c /etc/hostlet/hostlet.yaml 2>&1) ||
  fail "without hostlet-plugin-libvirt, --check fails on the installed config: $out"
grep -q "^/etc/hostlet/hostlet.yaml: ok (3 instances, 0 rules)$" <<<"$out" ||
  fail "without hostlet-plugin-libvirt, the installed config is not the 3 instances without virt: $out"
step "install: ${packages[*]}"
apt-get install -y -q --no-install-recommends "${files[@]}" >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log" >&2; fail "apt-get install failed"; }
for p in "${packages[@]}"; do installed "$p" || fail "$p is not installed"; done
dpkg-query -W -f='${Conffiles}\n' hostlet | grep -q ' /etc/hostlet/hostlet.yaml ' ||
  fail "/etc/hostlet/hostlet.yaml is not a conffile of hostlet"
dpkg-query -W -f='${Conffiles}\n' hostlet-plugin-libvirt | grep -q ' /etc/hostlet/conf.d/50-libvirt.yaml ' ||
  fail "/etc/hostlet/conf.d/50-libvirt.yaml is not a conffile of hostlet-plugin-libvirt"
out=$(/usr/sbin/hostlet --check -c /etc/hostlet/hostlet.yaml 2>&1) || fail "--check with the libvirt fragment: $out"
grep -q "ok (4 instances, 0 rules, with 1 conf.d fragment)" <<<"$out" ||
  fail "with hostlet-plugin-libvirt, --check does not see its conf.d fragment: $out"
if [ ! -d /run/systemd/system ] && systemctl is-active --quiet hostlet 2>/dev/null; then
  fail "postinst started the service on a machine without systemd"
fi

unit=$(dpkg -L hostlet | grep '/systemd/system/hostlet.service$') || fail "hostlet ships no hostlet.service"
plugin_dir=$(dirname "$(dpkg -L hostlet | grep '/hostlet/unixsock.so$')")
step "systemd-analyze verify $unit"
if command -v systemd-analyze >/dev/null; then
  out=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify: $out"
  [ -z "$out" ] || fail "systemd-analyze verify printed: $out"
else
  echo "(systemd-analyze is not installed: not verified)"
fi
step "man --warnings on the installed pages"
for page in hostlet.8 hostlet-ctl.1 hostlet.yaml.5 hostlet-plugin.7; do
  err=$(MANWIDTH=80 man --warnings "${page##*.}" "${page%.*}" 2>&1 >/dev/null) || fail "man ${page}: $err"
  [ -z "$err" ] || fail "man ${page}: $err"
done

step "hostlet --check on /etc/hostlet/hostlet.yaml"
/usr/sbin/hostlet --check -c /etc/hostlet/hostlet.yaml || fail "the installed config does not pass --check"

# The copy the agent runs on: the test driver instead of qemu:///system (no
# libvirtd here), the sockets in a runtime directory of the test's own.
run=$tmp/run
mkdir -m 0755 "$run"
config=$tmp/hostlet.yaml
mkdir "$tmp/conf.d"
for f in /etc/hostlet/hostlet.yaml /etc/hostlet/conf.d/*.yaml; do
  case $f in /etc/hostlet/hostlet.yaml) out=$config ;; *) out=$tmp/conf.d/${f##*/} ;; esac
  sed -e 's|qemu:///system|test:///default|' -e "s|/run/hostlet/|$run/|g" "$f" >"$out"
done
grep -q 'test:///default' "$tmp/conf.d/50-libvirt.yaml" || fail "the libvirt fragment names no libvirt URI to switch"
! cat "$config" "$tmp"/conf.d/*.yaml | grep -v '^ *#' | grep -q '/run/hostlet' ||
  fail "a socket is still under /run/hostlet in the copy"

# The unit's commands, with the copy for the config it names.
exec_line() { sed -n "s|^$1=||p" "$unit" | sed "s|/etc/hostlet/hostlet.yaml|$config|"; }
start_pre=$(exec_line ExecStartPre)
start=$(exec_line ExecStart)
[ -n "$start_pre" ] && [ -n "$start" ] || fail "no ExecStartPre=/ExecStart= in $unit"
step "ExecStartPre: $start_pre"
env -u HOSTLET_PLUGIN_DIR $start_pre || fail "ExecStartPre failed"
# A decoy where a build tree's plugins would be (<exe>/../plugins/NAME/NAME.so):
# the installed agent must take its plugins from <libdir>/hostlet, not from here.
if [ ! -e /usr/plugins ]; then
  decoy_dir=/usr/plugins
  mkdir -p "$decoy_dir/unixsock"
  cp "$plugin_dir/uevent.so" "$decoy_dir/unixsock/unixsock.so"
fi
step "ExecStart: $start"
env -u HOSTLET_PLUGIN_DIR $start >"$tmp/agent.log" 2>&1 &
agent_pid=$!
for _ in $(seq 200); do
  [ -S "$run/control.sock" ] && break
  kill -0 "$agent_pid" 2>/dev/null || { cat "$tmp/agent.log" >&2; fail "the agent exited at start"; }
  sleep 0.05
done
[ -S "$run/control.sock" ] || { cat "$tmp/agent.log" >&2; fail "no control socket after 10 s"; }
status=$(hostlet-ctl -s "$run/control.sock" --json status) || fail "hostlet-ctl status: $status"
python3 - "$status" <<'PY' || { cat "$tmp/agent.log" >&2; fail "hostlet-ctl status: not every instance is running"; }
import json, sys
d = json.loads(sys.argv[1])["data"]
states = {i["name"]: i["state"] for i in d["instances"]}
print("status:", ", ".join(f"{n} {s}" for n, s in states.items()))
sys.exit(0 if sorted(states) == ["notify", "sys", "uevent", "virt"] and set(states.values()) == {"running"} else 1)
PY
for p in unixsock libvirt sysfs uevent; do
  grep -q "loaded $p .* from $plugin_dir/$p.so" "$tmp/agent.log" ||
    { cat "$tmp/agent.log" >&2; fail "plugin $p was not loaded from $plugin_dir"; }
done
hostlet-ctl -s "$run/control.sock" call virt.domain.list >/dev/null || fail "virt.domain.list failed"
if [ -n "$decoy_dir" ]; then rm -rf "$decoy_dir"; decoy_dir=; fi
step "SIGTERM to pid $agent_pid"
kill -TERM "$agent_pid"
rc=0
wait "$agent_pid" || rc=$?
agent_pid=
[ "$rc" -eq 0 ] || { cat "$tmp/agent.log" >&2; fail "the agent exited $rc after SIGTERM"; }

step "purge: ${packages[*]}"
mapfile -t shipped < <(for p in "${packages[@]}"; do dpkg -L "$p"; done | LC_ALL=C sort -u)
purge_all || fail "apt-get purge failed"
purge_at_exit=
for p in "${packages[@]}"; do
  ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'installed' || fail "$p is still installed"
done
left=()
for f in "${shipped[@]}"; do
  [ "$f" != /. ] || continue
  [ -e "$f" ] || [ -L "$f" ] || continue
  # A directory another package owns too (/lib, /usr/share/man/man1, ...) stays.
  if [ -d "$f" ] && dpkg -S "$f" >/dev/null 2>&1; then continue; fi
  left+=("$f")
done
[ ${#left[@]} -eq 0 ] || fail "left behind after purge: ${left[*]}"
snapshot >"$tmp/after.txt"
if ! diff -u "$tmp/before.txt" "$tmp/after.txt" >"$tmp/diff.txt"; then
  cat "$tmp/diff.txt" >&2
  fail "the purge left /etc, /usr or /var/lib/systemd different from before the install"
fi
echo "packages: installed, checked, started, stopped and purged without a trace"
