#!/usr/bin/python3
"""hostlet-hook's own cost (issue 21): from exec to exit, with the agent
answering at once (no rule matches, so the ack-done reply comes as soon as
the event is dispatched), the way libvirtd runs it: argv, the domain XML of a
VFIO guest on stdin. Side by side, interleaved run by run:
- hostlet-hook (installed as hooks/qemu);
- the same hook written in Python (bench/peers/python_hook.py: ElementTree,
  one socket exchange), what hook scripts calling out to a daemon look like;
- /bin/true under the same spawn, the floor of any hook.

    bench/hook_bench.py [--smoke]      (BUILD_DIR, default build)
Prints one JSON object: p50/p99/mean in ms per program, and ratios.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import driver  # noqa: E402  (start_agent, stop: as the other benchmarks do)
BUILD = os.path.abspath(os.path.join(ROOT, os.environ.get("BUILD_DIR", "build")))
HOOK = os.path.join(BUILD, "hook", "hostlet-hook")
PY_HOOK = os.path.join(ROOT, "bench", "peers", "python_hook.py")

DOMAIN = """<domain type='kvm'>
  <name>vm1</name>
  <uuid>14ffb12f-5721-4a78-af9b-40b612a71aec</uuid>
  <memory unit='KiB'>2097152</memory>
  <memoryBacking><hugepages><page size='2048' unit='KiB'/></hugepages></memoryBacking>
  <vcpu placement='static' cpuset='2-5'>4</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><source file='/var/lib/libvirt/images/vm1.qcow2'/><target dev='vda' bus='virtio'/></disk>
    <interface type='bridge'><source bridge='br0'/><model type='virtio'/></interface>
    <hostdev mode='subsystem' type='pci' managed='no'>
      <source><address domain='0x0000' bus='0x06' slot='0x02' function='0x0'/></source>
    </hostdev>
  </devices>
</domain>
"""


def time_run(argv, stdin_path, env):
    with open(stdin_path, "rb") as f:
        t0 = time.perf_counter()
        r = subprocess.run(argv, stdin=f, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        dt = (time.perf_counter() - t0) * 1000
    if r.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {r.returncode}: {r.stderr.decode()}")
    return dt


def summary(xs):
    xs = sorted(xs)
    return {"p50_ms": round(statistics.median(xs), 3), "p99_ms": round(xs[int(len(xs) * 0.99) - 1], 3),
            "mean_ms": round(statistics.mean(xs), 3)}


def run(smoke=False):
    n = 20 if smoke else 500
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "notify.sock")
        agent, _ctl = driver.start_agent(tmp, "hook", f"  - {{name: notify, plugin: unixsock, config: {{socket: {sock}}}}}\n")
        try:
            os.mkdir(os.path.join(tmp, "hooks"))
            qemu = os.path.join(tmp, "hooks", "qemu")
            os.symlink(HOOK, qemu)
            xml = os.path.join(tmp, "vm1.xml")
            with open(xml, "w") as f:
                f.write(DOMAIN)
            env = {"PATH": "/usr/bin:/bin", "HOSTLET_NOTIFY_SOCKET": sock,
                   "HOSTLET_HOOK_CONFIG": os.path.join(tmp, "hook.conf")}
            args = ["vm1", "prepare", "begin", "-"]
            progs = {"hostlet-hook": [qemu] + args, "python hook": [sys.executable, PY_HOOK] + args,
                     "/bin/true": ["/bin/true"] + args}
            times = {k: [] for k in progs}
            for i in range(n):
                order = list(progs) if i % 2 == 0 else list(reversed(progs))
                for k in order:
                    times[k].append(time_run(progs[k], xml, env))
        finally:
            driver.stop(agent)
    out = {k: summary(v) for k, v in times.items()}
    out["runs"] = n
    out["hook_vs_python_p50"] = round(out["hostlet-hook"]["p50_ms"] / out["python hook"]["p50_ms"], 3)
    out["hook_over_true_p50_ms"] = round(out["hostlet-hook"]["p50_ms"] - out["/bin/true"]["p50_ms"], 3)
    return out


if __name__ == "__main__":
    print(json.dumps(run("--smoke" in sys.argv), indent=1))
