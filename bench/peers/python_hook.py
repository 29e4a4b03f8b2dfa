#!/usr/bin/python3
"""A libvirt hook written the usual way, in Python, doing what hostlet-hook
does: read the domain XML on stdin, pick the PCI hostdevs, memory and vCPUs
with ElementTree, send one ack-done notification to the agent's socket and
wait for the answer. The peer of bench/hook_bench.py."""
import json
import os
import socket
import sys
import xml.etree.ElementTree as ET

name, op, sub, extra = sys.argv[1:5]
dom = ET.fromstring(sys.stdin.read())
attrs = {"object": "qemu", "domain": name, "operation": op, "sub_operation": sub, "extra": extra,
         "uuid": dom.findtext("uuid", ""), "memory_kib": dom.findtext("memory", ""), "vcpus": dom.findtext("vcpu", "")}
devs = []
for h in dom.iter("hostdev"):
    a = h.find("source/address")
    if h.get("type") == "pci" and a is not None:
        devs.append("%04x:%02x:%02x.%x" % tuple(int(a.get(k), 16) for k in ("domain", "bus", "slot", "function")))
attrs["hostdevs"] = " ".join(devs)
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(os.environ.get("HOSTLET_NOTIFY_SOCKET", "/run/hostlet/notify.sock"))
s.sendall((json.dumps({"type": "libvirt.hook.qemu." + op, "attrs": attrs, "id": 1, "ack": "done"}) + "\n").encode())
buf = b""
while b"\n" not in buf:
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
sys.exit(0 if json.loads(buf).get("ok") else 1)
