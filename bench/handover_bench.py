#!/usr/bin/python3
"""Reload pause of a socket owner (issue 20): one agent with a unixsock
instance `notify`, 1000 idle clients connected, 8 senders (threads of
bench/handover_client.c) each sending one `ack: done` line at a time (the next once the previous is answered), and
`reload notify` over the control socket, 100 times. Per reload, the pause is
the longest wait of any sender for an answer while the reload was in flight
(from its request to its reply): the last line the old version answered to
the first the new one did, seen from a client; beside it the same measure
over windows as long without a reload (what the client threads' scheduling
adds by itself). Afterwards every idle client
sends a line and must be answered on its original connection (0
reconnects), and every sender's answers came in order (0 lost).

    bench/handover_bench.py [--smoke]      (BUILD_DIR, default build)
Prints one JSON object.
"""
import json
import os
import resource
import socket
import statistics
import sys
import tempfile
import signal
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import driver  # noqa: E402  (start_agent, stop)
BUILD = os.path.abspath(os.path.join(ROOT, os.environ.get("BUILD_DIR", "build")))
CLIENT = os.path.join(BUILD, "bench", "handover_client")


def run(smoke=False):
    n_idle, n_send, n_reloads = (50, 2, 5) if smoke else (1000, 8, 100)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096 <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))  # the agent inherits it
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "notify.sock")
        agent, ctl = driver.start_agent(
            tmp, "handover", f"  - {{name: notify, plugin: unixsock, config: {{socket: {sock}, max_connections: 4000}}}}\n")
        try:
            idle = []
            for _ in range(n_idle):
                s = socket.socket(socket.AF_UNIX)
                s.connect(sock)
                idle.append(s)
            # The senders: bench/handover_client (C), each thread one line at a time.
            senders = subprocess.Popen([CLIENT, sock, str(n_send), "200"], stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
            if senders.stderr.readline().strip() != "ready":
                raise RuntimeError("handover_client did not start")
            c = socket.socket(socket.AF_UNIX)
            c.connect(ctl)
            cf = c.makefile("r")
            c.sendall(b'{"id":0,"cmd":"hello","version":1}\n')
            cf.readline()
            windows, failed = [], 0
            time.sleep(0.2)
            for r in range(n_reloads):
                t0 = time.perf_counter()
                c.sendall(b'{"id":%d,"cmd":"reload","name":"notify"}\n' % (r + 1))
                reply = json.loads(cf.readline())
                t1 = time.perf_counter()
                if not reply.get("ok"):
                    failed += 1
                windows.append((t0, t1))
                time.sleep(0.03)
            time.sleep(0.1)
            senders.send_signal(signal.SIGTERM)
            out, _ = senders.communicate(timeout=60)
            waits, total, lost = [], 0, 0
            for line in out.splitlines():
                f = line.split()
                if f[0] == "total":
                    total, lost = int(f[1]), int(f[3])
                else:
                    waits.append((float(f[0]), float(f[1])))
            gaps = [waits]
            def worst_wait(w0, w1):
                worst = 0.0
                for g in gaps:
                    for (a, b) in g:
                        if b >= w0 and a <= w1:
                            worst = max(worst, b - a)
                return worst * 1000
            pauses = [worst_wait(w0, w1) for (w0, w1) in windows]
            # The same measure without a reload: a window as long (at most
            # 25 ms) ending 2 ms before each request, inside the 30 ms sleep
            # after the previous reload: what the client threads' own
            # scheduling adds (8 threads, 2 vCPUs).
            control = [worst_wait(w0 - 0.002 - min(w1 - w0, 0.025), w0 - 0.002) for (w0, w1) in windows[1:]]
            reconnects = 0
            for i, s in enumerate(idle):
                s.sendall(b'{"type":"t.idle","id":%d}\n' % i)
                s.settimeout(10)
                data = b""
                try:
                    while not data.endswith(b"\n"):
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                except OSError:
                    pass
                if not data or json.loads(data).get("id") != i:
                    reconnects += 1
                s.close()
        finally:
            driver.stop(agent)
    return {"reloads": n_reloads, "failed_reloads": failed, "idle_clients": n_idle, "senders": n_send,
            "pause_p50_ms": round(statistics.median(pauses), 2), "pause_max_ms": round(max(pauses), 2),
            "no_reload_p50_ms": round(statistics.median(control), 2), "no_reload_max_ms": round(max(control), 2),
            "reload_request_p50_ms": round(statistics.median([(b - a) * 1000 for a, b in windows]), 2),
            "answered": total, "lost": lost, "waits_over_0.2ms": len(waits),
            "idle_clients_not_served_on_their_connection": reconnects}


if __name__ == "__main__":
    print(json.dumps(run("--smoke" in sys.argv), indent=1))
