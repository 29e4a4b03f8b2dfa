#!/usr/bin/env bash
# The bash completion of hostlet-ctl (etc/bash-completion/hostlet-ctl) in a
# real bash against a real agent: commands and options, then instance,
# plugin and action names that the agent on `-s SOCKET` reports, and nothing
# (quickly) when no agent answers.
#   completion_test.sh COMPLETION HOSTLET HOSTLET_CTL PLUGIN_BUILD_DIR
set -uo pipefail
completion=$1 hostlet=$2 ctl=$3 plugins=$4
tmp=$(mktemp -d)
agent_pid=
cleanup() {
  if [ -n "$agent_pid" ]; then kill -TERM "$agent_pid" 2>/dev/null; wait "$agent_pid" 2>/dev/null; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

cat >"$tmp/hostlet.yaml" <<YAML
agent: {control_socket: $tmp/control.sock}
plugins:
  - {name: notify, plugin: $plugins/unixsock/unixsock.so, config: {socket: $tmp/notify.sock}}
  - {name: sys, plugin: $plugins/sysfs/sysfs.so}
YAML
"$hostlet" -c "$tmp/hostlet.yaml" 2>"$tmp/agent.log" &
agent_pid=$!
for _ in $(seq 200); do [ -S "$tmp/control.sock" ] && break; sleep 0.05; done
[ -S "$tmp/control.sock" ] || { cat "$tmp/agent.log" >&2; echo "FAIL: the agent did not start" >&2; exit 1; }

# shellcheck source=/dev/null
source "$completion"
_hostlet_ctl_bin=$ctl
failed=0
# expect "WORDS ON THE LINE" "EXPECTED COMPLETIONS, SORTED": the last word is the one completed.
expect() {
  read -r -a COMP_WORDS <<<"$1"
  [[ $1 == *" " ]] && COMP_WORDS+=("")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  _hostlet_ctl
  local got
  got=$(printf '%s\n' "${COMPREPLY[@]}" | sort | xargs)  # bash sorts what it shows, too
  if [ "$got" = "$2" ]; then
    echo "ok: '$1' -> '$got'"
  else
    echo "FAIL: '$1': expected '$2', got '$got'" >&2
    failed=1
  fi
}
s="hostlet-ctl -s $tmp/control.sock"
expect "hostlet-ctl st" "stats status"
expect "hostlet-ctl --js" "--json"
expect "$s call sys.r" "sys.read"
expect "$s call no" "notify.stats"
expect "$s reload " "notify sys"
expect "$s plugins --describe sy" "sys sysfs"
expect "$s plugins --d" "--describe"
expect "$s --json notify --ack d" "done"
expect "$s events --t" "--type"
expect "$s call sys.read p" ""
start=$(date +%s)
expect "hostlet-ctl -s $tmp/none.sock call s" ""
[ $(($(date +%s) - start)) -le 3 ] || { echo "FAIL: completion waited for an absent agent" >&2; failed=1; }
exit $failed
