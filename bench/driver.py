#!/usr/bin/python3
"""Runs every benchmark of bench/ in interleaved rounds and prints a markdown
table (also written to bench/results/latest.md and latest.json).
Called by bench/run.sh; see there for the environment it expects."""
import json, os, shutil, signal, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.abspath(os.path.join(ROOT, os.environ.get("BUILD_DIR", "build")))
SMOKE = "--smoke" in sys.argv
ROUNDS = 1 if SMOKE else int(os.environ.get("ROUNDS", "5"))
PY = "/usr/bin/python3"
NODE = shutil.which("node")
HOSTLET = os.path.join(BUILD, "core", "hostlet")
CTL = os.path.join(BUILD, "ctl", "hostlet-ctl")
RAW = os.path.join(BUILD, "bench", "offload_bench")
CLIENT = os.path.join(BUILD, "bench", "notify_client")
PLUGIN = os.path.join(BUILD, "bench", "bench_plugin.so")
PEERS = os.path.join(ROOT, "bench", "peers")
S = 100 if SMOKE else 1  # divide counts in smoke mode
N_LAT, N_LAT_PY = 20000 // S, 5000 // S
N_TP, N_TP_PY = 200000 // S, 20000 // S
N_EV, N_EV_PY = 400000 // S, 100000 // S
N_ACKLAT = 5000 // S
CONNS = [1, 8, 64]
ACKS = ["none", "accepted", "done"]
INFLIGHT = [1, 64, 1024]
ENV = dict(os.environ, UV_THREADPOOL_SIZE="4")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run_json(cmd, timeout=300):
    out = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{cmd}: exit {out.returncode}: {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def wait_for(path, proc, secs=10):
    end = time.time() + secs
    while time.time() < end:
        if os.path.exists(path):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        time.sleep(0.02)
    raise RuntimeError(f"{path} did not appear")


def start_agent(tmp, name, plugins_yaml):
    ctl = os.path.join(tmp, name + "-control.sock")
    cfg = os.path.join(tmp, name + ".yaml")
    with open(cfg, "w") as f:
        f.write(f"agent:\n  control_socket: {ctl}\n  threadpool: 4\n  log_level: warn\n"
                f"  event_queue: 65536\nplugins:\n{plugins_yaml}")
    p = subprocess.Popen([HOSTLET, "-c", cfg], env=ENV)
    wait_for(ctl, p)
    return p, ctl


def call(ctl, action, **kw):
    r = run_json([CTL, "-s", ctl, "--json", "--timeout", "300", "call", action] +
                 [f"{k}={v}" for k, v in kw.items()])
    if not r.get("ok"):
        raise RuntimeError(f"{action}: {r}")
    return {k: float(v) for k, v in r["attrs"].items()}


def stop(p):
    if p and p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main():
    tmp = tempfile.mkdtemp(prefix="hostlet-bench-")
    procs = []
    rounds = []
    try:
        off, off_ctl = start_agent(tmp, "offload",
                                   f"  - name: bench\n    plugin: {PLUGIN}\n    max_inflight: 1024\n"
                                   f"    max_queue: 100000\n")
        procs.append(off)
        hl_sock = os.path.join(tmp, "notify.sock")
        ntf, _ = start_agent(tmp, "notify",
                             f"  - name: notify\n    plugin: unixsock\n    config:\n"
                             f"      socket: {hl_sock}\n      max_connections: 1024\n")
        procs.append(ntf)
        py_sock = os.path.join(tmp, "py.sock")
        pysrv = subprocess.Popen([PY, os.path.join(PEERS, "asyncio_server.py"), py_sock],
                                 stdout=subprocess.DEVNULL)
        procs.append(pysrv)
        wait_for(py_sock, pysrv)

        for rnd in range(ROUNDS):
            log(f"round {rnd + 1}/{ROUNDS}")
            r = {}
            # offload: one at a time, implementations in turn
            r["lat.hostlet"] = call(off_ctl, "bench.run", mode="latency", n=N_LAT)
            r["lat.raw"] = run_json([RAW, "latency", str(N_LAT)])
            r["lat.python"] = run_json([PY, os.path.join(PEERS, "asyncio_offload.py"), "latency", str(N_LAT_PY)])
            if NODE:
                r["lat.node"] = run_json([NODE, os.path.join(PEERS, "node_offload.js"), "latency", str(N_LAT)])
            for k in INFLIGHT:
                r[f"tp{k}.hostlet"] = call(off_ctl, "bench.run", mode="throughput", n=N_TP, inflight=k)
                r[f"tp{k}.raw"] = run_json([RAW, "throughput", str(N_TP), str(k)])
                r[f"tp{k}.python"] = run_json([PY, os.path.join(PEERS, "asyncio_offload.py"), "throughput",
                                               str(N_TP_PY), str(k)])
                if NODE:
                    r[f"tp{k}.node"] = run_json([NODE, os.path.join(PEERS, "node_offload.js"), "throughput",
                                                 str(N_TP), str(k)])
            # notification ingest
            for c in CONNS:
                for ack in ACKS:
                    r[f"ev{c}.{ack}.hostlet"] = run_json([CLIENT, hl_sock, str(c), str(N_EV // c), ack])
                    r[f"ev{c}.{ack}.python"] = run_json([CLIENT, py_sock, str(c), str(N_EV_PY // c), ack])
            for ack in ACKS[1:]:
                r[f"acklat.{ack}.hostlet"] = run_json([CLIENT, hl_sock, "1", str(N_ACKLAT), ack, "latency"])
                r[f"acklat.{ack}.python"] = run_json([CLIENT, py_sock, "1", str(N_ACKLAT), ack, "latency"])
            rounds.append(r)
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)
    report(rounds)


def med(rounds, key, field):
    vals = [r[key][field] for r in rounds if key in r]
    return statistics.median(vals) if vals else None


def med_ratio(rounds, a, b, field):
    vals = [r[a][field] / r[b][field] for r in rounds if a in r and b in r and r[b][field]]
    return statistics.median(vals) if vals else None


def fmt(v, unit):
    if v is None:
        return "–"
    if unit == "us":
        return f"{v:.1f} µs"
    if unit == "ops":
        return f"{v / 1e6:.2f}M/s" if v >= 1e6 else f"{v / 1e3:.0f}k/s"
    return f"{v:.2f}×"


def report(rounds):
    peers = ["hostlet", "raw", "python", "node"]
    rows = []  # (figure, [values per peer], ratio text, goal, met)
    for field in ("mean_us", "p50_us", "p99_us"):
        rows.append((f"offload round trip, {field[:-3]}", [fmt(med(rounds, f"lat.{p}", field), "us") for p in peers],
                     fmt(med_ratio(rounds, "lat.hostlet", "lat.raw", field), "x"), "", ""))
    g = med_ratio(rounds, "lat.hostlet", "lat.raw", "p50_us")
    rows[1] = rows[1][:3] + ("p50 ≤ 1.2× raw", "yes" if g is not None and g <= 1.2 else "no")
    for k in INFLIGHT:
        rows.append((f"offload throughput, {k} in flight", [fmt(med(rounds, f"tp{k}.{p}", "ops_s"), "ops") for p in peers],
                     fmt(med_ratio(rounds, f"tp{k}.hostlet", f"tp{k}.raw", "ops_s"), "x"), "", ""))
    r_raw = med_ratio(rounds, "tp1024.hostlet", "tp1024.raw", "ops_s")
    r_py = med_ratio(rounds, "tp1024.hostlet", "tp1024.python", "ops_s")
    rows[-1] = rows[-1][:3] + (f"≥ 0.7× raw, ≥ 30× asyncio (is {r_py:.0f}×)" if r_py else "≥ 0.7× raw, ≥ 30× asyncio",
                               "yes" if r_raw and r_py and r_raw >= 0.7 and r_py >= 30 else "no")
    lines = ["| figure | hostlet | raw libuv (C) | asyncio.to_thread | Node fs.access | hostlet / raw | goal | met |",
             "|---|---|---|---|---|---|---|---|"]
    for f, vals, ratio, goal, met in rows:
        lines.append(f"| {f} | " + " | ".join(vals) + f" | {ratio} | {goal} | {met} |")
    lines += ["", "| notification ingest (C client) | hostlet unixsock | Python asyncio server | hostlet / Python | goal | met |",
              "|---|---|---|---|---|---|"]
    for c in CONNS:
        for ack in ACKS:
            key = f"ev{c}.{ack}"
            h, p = med(rounds, key + ".hostlet", "events_s"), med(rounds, key + ".python", "events_s")
            ratio = med_ratio(rounds, key + ".hostlet", key + ".python", "events_s")
            goal, met = "", ""
            if ack == "none":
                goal = "≥ 500k/s and ≥ 10× Python"
                met = "yes" if h and ratio and h >= 500e3 and ratio >= 10 else "no"
            lines.append(f"| {c} connection{'s' if c > 1 else ''}, ack {ack} | {fmt(h, 'ops')} | {fmt(p, 'ops')} | "
                         f"{fmt(ratio, 'x')} | {goal} | {met} |")
    for ack in ACKS[1:]:
        for field in ("p50_us", "p99_us"):
            key = f"acklat.{ack}"
            h, p = med(rounds, key + ".hostlet", field), med(rounds, key + ".python", field)
            lines.append(f"| ack {ack} latency {field[:3]}, 1 connection, one at a time | {fmt(h, 'us')} | "
                         f"{fmt(p, 'us')} | {fmt(med_ratio(rounds, key + '.hostlet', key + '.python', field), 'x')} |  |  |")
    errors = sum(int(v.get("errors", 0)) for r in rounds for v in r.values())
    lines += ["", f"{len(rounds)} round(s), medians of rounds; ratios are computed within each round, then the median "
              f"taken. Errors reported by any run: {errors}. Pool: 4 threads everywhere (UV_THREADPOOL_SIZE=4, agent "
              f"threadpool 4, ThreadPoolExecutor(4)). Node: {'yes' if NODE else 'not installed'}."]
    table = "\n".join(lines)
    print(table)
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "latest.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(ROOT, "bench", "results", "latest.json"), "w") as f:
        json.dump({"smoke": SMOKE, "rounds": rounds, "errors": errors}, f, indent=1)
    if SMOKE and ("| offload round trip" not in table):
        sys.exit(1)


if __name__ == "__main__":
    main()
