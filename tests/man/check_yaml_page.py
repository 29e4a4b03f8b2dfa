#!/usr/bin/env python3
"""hostlet.yaml(5) against what the agent really accepts, so they cannot drift.

- agent, instance, rule and `on:` keys: the key lists that core/config.cpp
  checks every file against (the `keys = {...}` tables of its parsers);
- each shipped plugin's keys, with their type and default or `required`:
  its schema table, as `hostlet-ctl --json plugins --describe` prints it
  from a real agent running one instance of every plugin built.

Both directions: a key the page lists that the agent does not know fails,
and so does one the agent knows that the page leaves out.

usage: check_yaml_page.py PAGE.scd CONFIG_CPP HOSTLET HOSTLET_CTL PLUGIN_BUILD_DIR
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

page_path, config_cpp, hostlet, ctl, plugin_build = (os.path.abspath(a) for a in sys.argv[1:6])
problems = []

# --- the page --------------------------------------------------------------
sections = {}  # "# TITLE" or "## sub" under PLUGIN KEYS -> [(key, meta)]
title = None
entry = re.compile(r"^\*([a-z_]+(?:\.(?:\\\*|[a-z_]+))*)\* \(([^)]*)\)$")  # commands.\*.argv
for line in open(page_path, encoding="utf-8"):
    line = line.rstrip("\n")
    if line.startswith("# "):
        title = line[2:]
    elif line.startswith("## ") and title and (title == "PLUGIN KEYS" or title.startswith("plugin ")):
        title = "plugin " + line[3:]
    elif line.startswith("The keys of *on:*"):
        title = "ON KEYS"
    elif title and (m := entry.match(line)):
        sections.setdefault(title, []).append((m.group(1).replace("\\*", "*"), m.group(2)))


def page_keys(title):
    keys = [k for k, _ in sections.get(title, [])]
    dups = {k for k in keys if keys.count(k) > 1}
    if dups:
        problems.append(f"{title}: listed twice: {sorted(dups)}")
    return set(keys)


# --- the core's key tables ---------------------------------------------------
source = open(config_cpp, encoding="utf-8").read()
tables = [set(re.findall(r'"([a-z_]+)"', body))
          for body in re.findall(r"static const std::vector<std::string> keys = \{([^}]*)\};", source)]


def table_with(*members):
    found = [t for t in tables if all(m in t for m in members)]
    if len(found) != 1:
        sys.exit(f"FAIL: {config_cpp}: expected one key table with {members}, found {len(found)}")
    return found[0]


core = {
    "AGENT KEYS": table_with("control_socket", "threadpool"),
    "INSTANCE KEYS": table_with("plugin", "max_inflight"),
    "RULE KEYS": table_with("on", "do", "with"),
    "ON KEYS": table_with("source", "type", "attrs"),
}
for title, real in core.items():
    documented = page_keys(title)
    for k in sorted(real - documented):
        problems.append(f"{title}: '{k}' is accepted by the agent (core/config.cpp) but not on the page")
    for k in sorted(documented - real):
        problems.append(f"{title}: '{k}' is on the page but the agent does not accept it")

# --- the plugins' schemas, from a running agent ------------------------------
SHIPPED = ("unixsock", "libvirt", "sysfs", "uevent", "prometheus", "mqtt", "exec")
plugins = [p for p in SHIPPED if os.path.exists(os.path.join(plugin_build, p, p + ".so"))]
for title in sections:
    if title.startswith("plugin ") and title[7:] not in SHIPPED:
        problems.append(f"{title}: not a shipped plugin")

tmp = tempfile.mkdtemp(prefix="hostlet-man-")
agent = None
try:
    sock = os.path.join(tmp, "control.sock")
    instance_config = {
        "unixsock": {"socket": os.path.join(tmp, "n.sock")},
        "libvirt": {"uri": "test:///default"},
        "sysfs": {},
        "uevent": {},
        "prometheus": {"listen": [os.path.join(tmp, "http.sock")]},  # no TCP port: nothing to collide with
        "mqtt": {"broker": os.path.join(tmp, "no-broker.sock")},  # it keeps retrying, which --describe needs not
        "exec": {"commands": {"true": {"argv": ["/bin/true"]}}},
    }
    with open(os.path.join(tmp, "hostlet.yaml"), "w") as f:
        f.write(f"agent: {{control_socket: {sock}}}\nplugins:\n")
        for p in plugins:
            f.write(f"  - {{name: i_{p}, plugin: {os.path.join(plugin_build, p, p + '.so')}, "
                    f"config: {json.dumps(instance_config[p])}}}\n")
    log = open(os.path.join(tmp, "agent.log"), "w")
    agent = subprocess.Popen([hostlet, "-c", os.path.join(tmp, "hostlet.yaml")], stdout=log, stderr=log)
    deadline = time.time() + 20
    while not os.path.exists(sock):
        if agent.poll() is not None or time.time() > deadline:
            sys.exit("FAIL: the agent did not open its control socket:\n" +
                     open(os.path.join(tmp, "agent.log")).read())
        time.sleep(0.05)
    for p in plugins:
        out = subprocess.run([ctl, "-s", sock, "--json", "plugins", "--describe", p],
                             capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            sys.exit(f"FAIL: hostlet-ctl plugins --describe {p}: {out.stdout}{out.stderr}")
        schema = json.loads(out.stdout)["data"]["config"]
        documented = dict(sections.get("plugin " + p, []))
        page_keys("plugin " + p)
        for k in schema:
            want = k["type"]
            if k["required"]:
                want += ", required"
            elif k["default"] is not None:
                want += ", default " + k["default"]
            if k["key"] not in documented:
                problems.append(f"plugin {p}: '{k['key']}' ({want}) is in its schema but not on the page")
            elif documented[k["key"]] != want:
                problems.append(f"plugin {p}: '{k['key']}': the page says ({documented[k['key']]}), "
                                f"the schema ({want})")
        for k in sorted(set(documented) - {k["key"] for k in schema}):
            problems.append(f"plugin {p}: '{k}' is on the page but not in its schema")
finally:
    if agent and agent.poll() is None:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
    shutil.rmtree(tmp, ignore_errors=True)

if problems:
    print("FAIL: hostlet.yaml(5) and the agent disagree:", *problems, sep="\n  ")
    sys.exit(1)
print(f"hostlet.yaml(5) matches the agent: {sum(len(v) for v in core.values())} core keys, "
      f"plugins {', '.join(plugins)}")
