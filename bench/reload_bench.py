#!/usr/bin/python3
"""Reload under load (issue 7, item 5).

One agent: a unixsock instance `in` and the fixture worker `w` (a private copy
of worker_v1.so), a rule `job` -> `w.work ms=0`. notify_client pushes
notifications with `ack: done` over 8 connections as fast as the agent takes
them; meanwhile the worker's .so is swapped between v1 and v2 and
`reload w` is sent every 100 ms over the control socket. The same load runs
once without reloads, side by side, for the throughput ratio.

Prints (and returns as a dict): reloads, request -> reply latency of a reload
(p50/max, ms: from the request to the new instance serving, as the reply is
sent once it has started and the held calls were handed to it), calls held per
reload, notifications sent / answered ok / failed / lost, events/s with and
without reloads.

    bench/reload_bench.py [--smoke]      (BUILD_DIR, default build)
"""
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, os.environ.get("BUILD_DIR", "build"))
HOSTLET = os.path.join(BUILD, "core", "hostlet")
CLIENT = os.path.join(BUILD, "bench", "notify_client")
FIXTURES = os.path.join(BUILD, "tests", "plugins")
ENV = dict(os.environ, UV_THREADPOOL_SIZE="4")


def control(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s, s.makefile("r")


def request(conn, obj):
    s, f = conn
    s.sendall((json.dumps(obj) + "\n").encode())
    return json.loads(f.readline())


def one_run(tmp, tag, per_conn, conns, reload_every_s):
    from driver import wait_for  # the bench's one copy (driver imports this module at its top)
    so = os.path.join(tmp, f"w-{tag}.so")
    shutil.copy(os.path.join(FIXTURES, "worker_v1.so"), so)
    ctl = os.path.join(tmp, f"{tag}-control.sock")
    ins = os.path.join(tmp, f"{tag}-in.sock")
    cfg = os.path.join(tmp, f"{tag}.yaml")
    with open(cfg, "w") as f:
        f.write(f"""agent: {{control_socket: {ctl}, threadpool: 4, log_level: warn, event_queue: 65536}}
plugins:
  - name: in
    plugin: unixsock
    config: {{socket: {ins}}}
  - name: w
    plugin: {so}
    max_inflight: 64
    max_queue: 100000
rules:
  - on: {{source: in, type: job}}
    do: w.work
    with: {{ms: "0"}}
""")
    agent = subprocess.Popen([HOSTLET, "-c", cfg], env=ENV)
    try:
        wait_for(ctl, agent)
        wait_for(ins, agent)
        client = subprocess.Popen([CLIENT, ins, str(conns), str(per_conn), "done"], stdout=subprocess.PIPE, text=True)
        lat, held, failed = [], [], []
        if reload_every_s:
            conn = control(ctl)
            version = 1
            while client.poll() is None:
                time.sleep(reload_every_s)
                version = 2 if version == 1 else 1
                tmpso = so + ".new"
                shutil.copy(os.path.join(FIXTURES, f"worker_v{version}.so"), tmpso)
                os.rename(tmpso, so)
                t0 = time.perf_counter()
                r = request(conn, {"id": 1, "cmd": "reload", "name": "w"})
                lat.append((time.perf_counter() - t0) * 1000)
                if r.get("ok"):
                    held.append(r["data"]["instances"][0]["held_calls"])
                else:
                    failed.append(r.get("error"))
        try:
            out, _ = client.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            client.kill()
            raise RuntimeError("reload bench: the client never got all its answers (lost notifications)")
        res = json.loads(out)
        return {"events": res["events"], "events_s": res["events_s"], "errors": res["errors"],
                "reload_ms": lat, "held": held, "reload_failed": failed}
    finally:
        agent.terminate()
        agent.wait(20)


def main():
    smoke = "--smoke" in sys.argv
    per_conn = 2000 if smoke else 400000
    conns = 8
    with tempfile.TemporaryDirectory(prefix="hostlet-reload-bench-") as tmp:
        base = one_run(tmp, "base", per_conn, conns, 0)
        rel = one_run(tmp, "reload", per_conn, conns, 0.1)
    sent = per_conn * conns
    lat = sorted(rel["reload_ms"])
    out = {
        "reloads": len(lat),
        "reloads_failed": len(rel["reload_failed"]),
        "reload_ms_p50": statistics.median(lat) if lat else None,
        "reload_ms_max": max(lat) if lat else None,
        "held_calls_median": statistics.median(rel["held"]) if rel["held"] else 0,
        "held_calls_max": max(rel["held"]) if rel["held"] else 0,
        "sent": sent,
        "answered": rel["events"],
        "failed_answers": rel["errors"],
        "lost": sent - rel["events"],
        "events_s_with_reloads": rel["events_s"],
        "events_s_without": base["events_s"],
    }
    print(json.dumps(out, indent=1))
    if rel["reload_failed"]:
        print("reload failures:", rel["reload_failed"][:3], file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
