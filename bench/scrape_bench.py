#!/usr/bin/python3
"""Scrape benchmark (issue 17).

One private libvirtd (test driver) with 1000 domains, half running, scraped
by three servers in the same run:
- hostlet "cold": libvirt instance with metrics_interval 0 and
  metrics_max_age 0, so every scrape collects (virConnectGetAllDomainStats
  on the lane) before it renders;
- hostlet "cached": the default cache (a collection every 15 s), so a scrape
  renders what the cache holds;
- Debian's prometheus-libvirt-exporter 0.2.0, which collects on every scrape.
Each scrape is one HTTP GET /metrics on a kept-alive connection, timed from
the request to the last byte. CPU time per scrape is the server process's
utime+stime over the run divided by the scrapes (and libvirtd's, apart,
since a collection costs libvirtd too). Rounds alternate the order
(exporter, cold, cached / cached, cold, exporter).

Then the loop lag of the cached agent while 4 scraper threads hammer its
endpoint and notify_client pushes notifications into its unixsock instance:
the bench plugin's 1 ms probe timer (p50/p99/max of its lateness).

    bench/scrape_bench.py [--smoke]      (BUILD_DIR, default build)
Prints one JSON object; bench/driver.py imports run() for its table.
"""
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import driver  # noqa: E402  (start_libvirtd, stop: as the other benchmarks do)
BUILD = os.path.abspath(os.path.join(ROOT, os.environ.get("BUILD_DIR", "build")))
HOSTLET = os.path.join(BUILD, "core", "hostlet")
CTL = os.path.join(BUILD, "ctl", "hostlet-ctl")
CLIENT = os.path.join(BUILD, "bench", "notify_client")
PLUGIN = os.path.join(BUILD, "bench", "bench_plugin.so")
EXPORTER = shutil.which("prometheus-libvirt-exporter") or "/usr/bin/prometheus-libvirt-exporter"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, secs=20):
    end = time.time() + secs
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def start_hostlet(tmp, name, uri, port, libvirt_extra, extra_plugins=""):
    ctl = os.path.join(tmp, name + "-control.sock")
    cfg = os.path.join(tmp, name + ".yaml")
    with open(cfg, "w") as f:
        f.write(f"agent: {{control_socket: {ctl}, threadpool: 4, log_level: warn}}\n"
                "plugins:\n"
                f"  - {{name: virt, plugin: libvirt, config: {{uri: \"{uri}\"{libvirt_extra}}}}}\n"
                f"  - {{name: prom, plugin: prometheus, config: {{listen: [\"127.0.0.1:{port}\"], "
                "scrape_timeout: 30s}}\n" + extra_plugins)
    p = subprocess.Popen([HOSTLET, "-c", cfg])
    wait_port(port, p)
    return p, ctl


def scrape_n(port, n):
    """n sequential scrapes on one kept-alive connection: latencies (s) and bytes of the last."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    lat, size = [], 0
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        body = resp.read()
        lat.append(time.perf_counter() - t0)
        if resp.status != 200:
            raise RuntimeError(f"port {port}: HTTP {resp.status}")
        size = len(body)
    conn.close()
    return lat, size


def q(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def measure(port, proc_pid, virtd_pid, n):
    c0, v0 = cpu_s(proc_pid), cpu_s(virtd_pid)
    lat, size = scrape_n(port, n)
    c1, v1 = cpu_s(proc_pid), cpu_s(virtd_pid)
    return {"p50_ms": q(lat, 0.5) * 1e3, "p99_ms": q(lat, 0.99) * 1e3, "max_ms": max(lat) * 1e3,
            "cpu_ms": (c1 - c0) * 1e3 / n, "libvirtd_cpu_ms": (v1 - v0) * 1e3 / n, "bytes": size, "n": n}


def hammer(port, stop, counts, i):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while not stop.is_set():
        conn.request("GET", "/metrics")
        conn.getresponse().read()
        counts[i] += 1
    conn.close()


def probe(ctl, ms):
    out = subprocess.run([CTL, "-s", ctl, "--json", "--timeout", "120", "call", "probe.probe", f"ms={ms}"],
                         capture_output=True, text=True, timeout=180).stdout
    r = json.loads(out)
    if not r.get("ok"):
        raise RuntimeError(f"probe: {r}")
    return {k: float(v) for k, v in r["attrs"].items()}


def run(smoke=False, rounds=3, tmp=None):
    own = tmp is None
    tmp = tmp or tempfile.mkdtemp(prefix="hostlet-scrape-")
    domains = 20 if smoke else 1000
    n_cold, n_cached, n_exp = (3, 20, 3) if smoke else (20, 300, 10)
    lag_secs = 0.5 if smoke else 3.0
    procs = []
    try:
        virtd, uri = driver.start_libvirtd(tmp, "scrape-libvirtd", domains=domains, running=domains // 2)
        procs.append(virtd)
        pc, pw, pe = free_port(), free_port(), free_port()
        cold, _ = start_hostlet(tmp, "cold", uri, pc, ", metrics_interval: 0, metrics_max_age: 0")
        procs.append(cold)
        notify = os.path.join(tmp, "notify.sock")
        cached, cached_ctl = start_hostlet(
            tmp, "cached", uri, pw, "",
            f"  - {{name: probe, plugin: {PLUGIN}}}\n"
            f"  - {{name: notify, plugin: unixsock, config: {{socket: {notify}}}}}\n")
        procs.append(cached)
        exp = subprocess.Popen([EXPORTER, f"--web.listen-address=127.0.0.1:{pe}", f"--libvirt.uri={uri}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(exp)
        wait_port(pe, exp)
        for port in (pc, pw, pe):
            scrape_n(port, 1)  # warm: connections made, the cache filled
        time.sleep(0.5)
        scrape_n(pw, 1)
        res = {"domains": domains, "rounds": []}
        for rnd in range(rounds):
            order = [("exporter", pe, exp, n_exp), ("cold", pc, cold, n_cold), ("cached", pw, cached, n_cached)]
            if rnd % 2:
                order.reverse()
            r = {}
            for name, port, proc, n in order:
                r[name] = measure(port, proc.pid, virtd.pid, n)
            res["rounds"].append(r)
        # loop lag under 4 scrapers and a notification flow
        stop_ev, counts = threading.Event(), [0, 0, 0, 0]
        threads = [threading.Thread(target=hammer, args=(pw, stop_ev, counts, i)) for i in range(4)]
        for t in threads:
            t.start()
        cl = subprocess.Popen([CLIENT, notify, "1", "1", "none", f"for={lag_secs + 0.6:.1f}"],
                              stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)
        lag = probe(cached_ctl, int(lag_secs * 1000))
        out, _ = cl.communicate(timeout=60)
        stop_ev.set()
        for t in threads:
            t.join()
        lag["scrapes_s"] = sum(counts) / (lag_secs + 0.3)
        lag["events_s"] = json.loads(out)["events_s"] if out.strip() else 0.0
        res["lag"] = lag
        return res
    finally:
        for p in reversed(procs):
            driver.stop(p)
        if own:
            shutil.rmtree(tmp, ignore_errors=True)


def summary(res):
    def med(name, field):
        return statistics.median(r[name][field] for r in res["rounds"])
    s = {name: {f: med(name, f) for f in ("p50_ms", "p99_ms", "cpu_ms", "libvirtd_cpu_ms", "bytes")}
         for name in ("exporter", "cold", "cached")}
    s["cold_speedup_p50"] = statistics.median(r["exporter"]["p50_ms"] / r["cold"]["p50_ms"] for r in res["rounds"])
    s["lag"] = res["lag"]
    s["domains"] = res["domains"]
    return s


if __name__ == "__main__":
    smoke = "--smoke" in sys.argv
    out = run(smoke=smoke, rounds=1 if smoke else int(os.environ.get("ROUNDS", "3")))
    print(json.dumps({"summary": summary(out), "raw": out}, indent=1))
