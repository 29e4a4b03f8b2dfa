#!/usr/bin/python3
"""Runs every benchmark of bench/ in interleaved rounds and prints a markdown
table (also written to bench/results/latest.md and latest.json).
Called by bench/run.sh; see there for the environment it expects.

Sections (issue 7's items): offload round trip and throughput (1), loop lag
under load (2), notification ingest (3), end to end through libvirt (4),
memory (6). Within a round, hostlet and its peers run one after the other;
hostlet and the peer its goal is measured against (raw libuv, the direct
libvirt calls) run in ABBA order (see abba()); figures are medians of rounds,
ratios are computed within a round first."""
import json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import reload_bench  # noqa: E402  (reload under load, also runnable on its own)
BUILD = os.path.abspath(os.path.join(ROOT, os.environ.get("BUILD_DIR", "build")))
SMOKE = "--smoke" in sys.argv
ROUNDS = 1 if SMOKE else int(os.environ.get("ROUNDS", "5"))
PY = "/usr/bin/python3"
NODE = shutil.which("node")
HOSTLET = os.path.join(BUILD, "core", "hostlet")
CTL = os.path.join(BUILD, "ctl", "hostlet-ctl")
RAW = os.path.join(BUILD, "bench", "offload_bench")
CLIENT = os.path.join(BUILD, "bench", "notify_client")
VIRT_DIRECT = os.path.join(BUILD, "bench", "virt_direct")
PLUGIN = os.path.join(BUILD, "bench", "bench_plugin.so")
PEERS = os.path.join(ROOT, "bench", "peers")
S = 100 if SMOKE else 1  # divide counts in smoke mode
N_LAT, N_LAT_PY = 20000 // S, 5000 // S
# Offload throughput items per run, by items in flight: each run lasts about
# half a second. Runs of 200000 items at 1024 in flight took 30-70 ms, short
# enough for the pool threads' wake-up at the start to decide the figure
# (hostlet 2.7-4.0M/s, raw libuv 4.2-7.9M/s from run to run; with 2M items
# both settle around 4.2-6.2M/s).
N_TP = {1: 20000 // S, 64: 500000 // S, 1024: 2000000 // S}
N_TP_PY = 20000 // S
N_EV, N_EV_PY = 400000 // S, 100000 // S
N_ACKLAT = 5000 // S
CONNS = [1, 8, 64]
ACKS = ["none", "accepted", "done"]
INFLIGHT = [1, 64, 1024]
LAG_SECS = 0.3 if SMOKE else 2.0       # each lag probe
LAG_POOLS = [64, 1024]                 # agent threadpool for the 1024 x 10 ms load
N_VIRT_LAT, N_VIRT_TP = (3, 8) if SMOKE else (200, 400)
VIRT_DOMAINS, VIRT_RUNNING = 1000, 250
# Issue 15's flood: 8 connections each pipeline FLOOD_PER_CONN ack-done
# notifications whose rule calls virt.domain.list on a one-domain libvirtd
# (instance max_inflight 8, default max_queue); and the one-domain round trip.
FLOOD_PER_CONN = 20 if SMOKE else 2000
N_RT1 = 20 if SMOKE else 2000
MEM_CLIENTS = 10 if SMOKE else 1000
ENV = dict(os.environ, UV_THREADPOOL_SIZE="4")


def have_uvloop():
    return subprocess.run([PY, "-c", "import uvloop"], capture_output=True).returncode == 0


UVLOOP = have_uvloop()


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run_json(cmd, timeout=300, env=None):
    out = subprocess.run(cmd, env=env or ENV, capture_output=True, text=True, timeout=timeout)
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


def start_agent(tmp, name, plugins_yaml, threadpool=4, rules_yaml=""):
    ctl = os.path.join(tmp, name + "-control.sock")
    cfg = os.path.join(tmp, name + ".yaml")
    with open(cfg, "w") as f:
        f.write(f"agent:\n  control_socket: {ctl}\n  threadpool: {threadpool}\n  log_level: warn\n"
                f"  event_queue: 65536\nplugins:\n{plugins_yaml}{rules_yaml}")
    p = subprocess.Popen([HOSTLET, "-c", cfg], env=ENV)
    wait_for(ctl, p)
    return p, ctl


def start_py_server(tmp, name, *args):
    sock = os.path.join(tmp, name + ".sock")
    p = subprocess.Popen([PY, os.path.join(PEERS, "asyncio_server.py"), sock, *args], stdout=subprocess.DEVNULL)
    wait_for(sock, p)
    return p, sock


def call_async(ctl, action, **kw):
    return subprocess.Popen([CTL, "-s", ctl, "--json", "--timeout", "300", "call", action] +
                            [f"{k}={v}" for k, v in kw.items()], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def result(p):
    out, err = p.communicate(timeout=300)
    r = json.loads(out) if out.strip() else {}
    if not r.get("ok"):
        raise RuntimeError(f"{p.args}: {r or err}")
    return {k: float(v) for k, v in r["attrs"].items()}


def call(ctl, action, **kw):
    return result(call_async(ctl, action, **kw))


def stop(p):
    if p and p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return float(line.split()[1])
    return 0.0


# ------------------------------------------------------------- libvirtd

def node_xml(n, running):
    """A test-driver node like tests/libvirt/libvirtd.cpp's node_xml()."""
    x = ["<node>\n  <cpu><mhz>2000</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets>"
         "<cores>2</cores><threads>1</threads><active>2</active></cpu>\n  <memory>8388608</memory>\n"]
    for i in range(1, n + 1):
        x.append(f"  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
                 f"<name>vm-{i:04d}</name><uuid>00000000-0000-0000-0000-{i:012d}</uuid>"
                 f"<memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os>" +
                 ("<test:runstate>5</test:runstate>" if i > running else "") + "</domain>\n")
    x.append("</node>\n")
    return "".join(x)


def start_libvirtd(tmp, name="libvirtd", domains=VIRT_DOMAINS, running=VIRT_RUNNING):
    """A private libvirtd as the libvirt tests start it (tests/libvirt/libvirtd.cpp):
    its socket and logs in a directory of its own, no auth, no driver modules,
    exits by itself 120 s after its last client. Returns (process, uri)."""
    d = os.path.join(tmp, name)
    for sub in ("", "empty", "run", "cfg", "cache"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    with open(os.path.join(d, "libvirtd.conf"), "w") as f:
        f.write(f'unix_sock_dir = "{d}"\nauth_unix_rw = "none"\nauth_unix_ro = "none"\n'
                f'log_outputs = "3:file:{d}/libvirtd.log"\n')
    node = os.path.join(d, "node.xml")
    with open(node, "w") as f:
        f.write(node_xml(domains, running))
    env = dict(os.environ, LIBVIRT_DRIVER_DIR=d + "/empty", XDG_RUNTIME_DIR=d + "/run",
               XDG_CONFIG_HOME=d + "/cfg", XDG_CACHE_HOME=d + "/cache", HOME=d)
    p = subprocess.Popen(["libvirtd", "-f", d + "/libvirtd.conf", "-p", d + "/libvirtd.pid", "-t", "120"], env=env)
    sock = os.path.join(d, "libvirt-sock")
    wait_for(sock, p)
    return p, f"test+unix://{node}?socket={sock}"


# ------------------------------------------------------------- memory

def connect_clients(path, n):
    """n connected clients, each sends one notification (ack accepted) and reads its reply."""
    socks = []
    for i in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.sendall(b'{"type":"bench.hello","attrs":{"i":"%d"},"id":%d}\n' % (i, i))
        socks.append(s)
    for s in socks:
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                raise RuntimeError("a memory-test client was closed")
            buf += chunk
        if b'"ok":true' not in buf:
            raise RuntimeError(f"memory-test client: {buf!r}")
    return socks


def default_config_copy(tmp):
    """etc/hostlet.yaml with its sockets moved into tmp, and the notify
    instance's max_connections raised to 1024 for the 1000-client figure."""
    with open(os.path.join(ROOT, "etc", "hostlet.yaml")) as f:
        text = f.read()
    ctl, ntf = os.path.join(tmp, "mem-control.sock"), os.path.join(tmp, "mem-notify.sock")
    text = text.replace("/run/hostlet/control.sock", ctl).replace("/run/hostlet/notify.sock", ntf)
    text = text.replace('      mode: "0660"\n', '      mode: "0660"\n      max_connections: 1024\n')
    if "max_connections: 1024" not in text or ntf not in text:
        raise RuntimeError("etc/hostlet.yaml changed shape: update default_config_copy()")
    cfg = os.path.join(tmp, "mem.yaml")
    with open(cfg, "w") as f:
        f.write(text)
    return cfg, ctl, ntf


def rss_idle_and_with_clients(proc, sock, m, name):
    """VmRSS of proc 1 s after start, then with MEM_CLIENTS clients connected."""
    time.sleep(1.0)
    m[name + ".idle"] = rss_kib(proc.pid)
    socks = connect_clients(sock, MEM_CLIENTS)
    time.sleep(0.5)
    m[name + ".clients"] = rss_kib(proc.pid)
    for s in socks:
        s.close()


def measure_memory(tmp):
    m = {}
    cfg, ctl, ntf = default_config_copy(tmp)
    p = subprocess.Popen([HOSTLET, "-c", cfg, "--log-level", "warn"], env=ENV)
    try:
        wait_for(ctl, p)
        rss_idle_and_with_clients(p, ntf, m, "hostlet")
    finally:
        stop(p)
    py, sock = start_py_server(tmp, "mem-py")
    try:
        rss_idle_and_with_clients(py, sock, m, "python")
    finally:
        stop(py)
    return m


# ------------------------------------------------------------- rounds

def mean_of(a, b):
    """Two runs' figures: counts (n, errors) added, the rest averaged."""
    return {k: a[k] + b[k] if k in ("n", "errors") else (a[k] + b[k]) / 2 for k in a if k in b}


def abba(first, second):
    """Runs first, second, second, first and returns each side's mean of its two runs. On this VM
    a run that directly follows another busy run is faster than one that follows a pause (idle
    vCPUs halt, and waking them costs): with identical binaries the first of two back-to-back
    runs measured 0.42-0.86x the second. In ABBA order each side runs once in each position."""
    a1 = first()
    b1 = second()
    b2 = second()
    a2 = first()
    return mean_of(a1, a2), mean_of(b1, b2)


def offload_round(r, off_ctl):
    py_off = [PY, os.path.join(PEERS, "asyncio_offload.py")]
    r["lat.hostlet"], r["lat.raw"] = abba(lambda: call(off_ctl, "bench.run", mode="latency", n=N_LAT),
                                          lambda: run_json([RAW, "latency", str(N_LAT)]))
    r["lat.python"] = run_json(py_off + ["latency", str(N_LAT_PY)])
    if UVLOOP:
        r["lat.uvloop"] = run_json(py_off + ["latency", str(N_LAT_PY), "--uvloop"])
    if NODE:
        r["lat.node"] = run_json([NODE, os.path.join(PEERS, "node_offload.js"), "latency", str(N_LAT)])
    for k in INFLIGHT:
        r[f"tp{k}.hostlet"], r[f"tp{k}.raw"] = abba(
            lambda: call(off_ctl, "bench.run", mode="throughput", n=N_TP[k], inflight=k),
            lambda: run_json([RAW, "throughput", str(N_TP[k]), str(k)]))
        r[f"tp{k}.python"] = run_json(py_off + ["throughput", str(N_TP_PY), str(k)])
        if UVLOOP:
            r[f"tp{k}.uvloop"] = run_json(py_off + ["throughput", str(N_TP_PY), str(k), "--uvloop"])
        if NODE:
            r[f"tp{k}.node"] = run_json([NODE, os.path.join(PEERS, "node_offload.js"), "throughput", str(N_TP[k]), str(k)])


def coroutine_round(r, off_ctl):
    """co_await host.offload (hostlet/task.hpp) against the callback offload, in the same agent
    and plugin, ABBA: round trip one at a time, and throughput with k in flight."""
    r["colat.co"], r["colat.cb"] = abba(lambda: call(off_ctl, "bench.run", mode="co_latency", n=N_LAT),
                                        lambda: call(off_ctl, "bench.run", mode="latency", n=N_LAT))
    for k in INFLIGHT:
        r[f"cotp{k}.co"], r[f"cotp{k}.cb"] = abba(
            lambda: call(off_ctl, "bench.run", mode="co_throughput", n=N_TP[k], inflight=k),
            lambda: call(off_ctl, "bench.run", mode="throughput", n=N_TP[k], inflight=k))


def coroutine_table(rounds):
    """The coroutine rows: co_await offload beside the callback offload; goal within 5%."""
    lines = ["| offload through | co_await host.offload | callback offload (C API) | co_await / callback | goal | met |",
             "|---|---|---|---|---|---|"]
    for field in ("mean_us", "p99_us"):
        ratio = med_ratio(rounds, "colat.co", "colat.cb", field)
        met = "" if field == "p99_us" else yes(ratio is not None and ratio <= 1.05)
        lines.append(f"| round trip, {field[:-3]} | {fmt(med(rounds, 'colat.co', field), 'us')} | "
                     f"{fmt(med(rounds, 'colat.cb', field), 'us')} | {fmt(ratio, 'x')} | "
                     f"{'≤ 1.05×' if field == 'mean_us' else ''} | {met} |")
    for k in INFLIGHT:
        ratio = med_ratio(rounds, f"cotp{k}.co", f"cotp{k}.cb", "ops_s")
        lines.append(f"| throughput, {k} in flight | {fmt(med(rounds, f'cotp{k}.co', 'ops_s'), 'ops')} | "
                     f"{fmt(med(rounds, f'cotp{k}.cb', 'ops_s'), 'ops')} | {fmt(ratio, 'x')} | ≥ 0.95× | "
                     f"{yes(ratio is not None and ratio >= 0.95)} |")
    return lines


def lag_round(r, lag_agents, lag_notify):
    """Item 2: a 1 ms timer's lateness on the loop, idle and under load."""
    secs = LAG_SECS
    probe_ms = int(secs * 1000)
    ctl64 = lag_agents[LAG_POOLS[0]]
    r["lag.idle.hostlet"] = call(ctl64, "probe.probe", ms=probe_ms)
    for pool in LAG_POOLS:
        ctl = lag_agents[pool]
        load = call_async(ctl, "load.run", mode="load", work_ms=10, inflight=1024, secs=f"{secs + 0.6:.1f}")
        time.sleep(0.3)
        r[f"lag.load{pool}.hostlet"] = call(ctl, "probe.probe", ms=probe_ms)
        r[f"lag.load{pool}.hostlet"]["ops_s"] = result(load)["ops_s"]
        r[f"lag.load{pool}.raw"] = run_json([RAW, "lag", str(secs), "10", "1024"],
                                            env=dict(ENV, UV_THREADPOOL_SIZE=str(pool)))
        r[f"lag.load{pool}.python"] = run_json([PY, os.path.join(PEERS, "asyncio_offload.py"), "lag", str(secs),
                                                "10", "1024", str(pool)])
    cl = subprocess.Popen([CLIENT, lag_notify, "1", "1", "none", f"for={secs + 0.6:.1f}"], stdout=subprocess.PIPE,
                          text=True)
    time.sleep(0.3)
    r["lag.ingest.hostlet"] = call(ctl64, "probe.probe", ms=probe_ms)
    out, _ = cl.communicate(timeout=60)
    if cl.returncode != 0:
        raise RuntimeError(f"{cl.args}: exit {cl.returncode}")
    r["lag.ingest.hostlet"]["ops_s"] = json.loads(out)["events_s"]


def ingest_round(r, hl_sock, py_sock, uv_sock):
    for c in CONNS:
        for ack in ACKS:
            r[f"ev{c}.{ack}.hostlet"] = run_json([CLIENT, hl_sock, str(c), str(N_EV // c), ack])
            r[f"ev{c}.{ack}.python"] = run_json([CLIENT, py_sock, str(c), str(N_EV_PY // c), ack])
            if uv_sock:
                r[f"ev{c}.{ack}.uvloop"] = run_json([CLIENT, uv_sock, str(c), str(N_EV_PY // c), ack])
    # Ack latency: each connection sends a line and waits for its reply, all
    # connections at once; N_ACKLAT lines in all, split over the connections.
    for c in CONNS:
        for ack in ACKS[1:]:
            for side, sock in (("hostlet", hl_sock), ("python", py_sock)):
                r[f"acklat{c}.{ack}.{side}"] = run_json([CLIENT, sock, str(c), str(max(1, N_ACKLAT // c)), ack,
                                                         "latency"])


def reload_round(r, tmp, rnd):
    """Reload under load: the same 8-connection ack-done load with and without
    a `reload w` (v1 <-> v2 swapped on disk) every 100 ms; see reload_bench.py."""
    per_conn = 2000 if SMOKE else 200000
    r["reload.base"] = reload_bench.one_run(tmp, f"rb{rnd}", per_conn, 8, 0)
    r["reload.run"] = reload_bench.one_run(tmp, f"rr{rnd}", per_conn, 8, 0.1)
    r["reload.run"]["sent"] = r["reload.base"]["sent"] = per_conn * 8
    lat = sorted(r["reload.run"]["reload_ms"])
    r["reload.stats"] = {
        "reloads": len(lat), "failed": len(r["reload.run"]["reload_failed"]),
        "p50_ms": statistics.median(lat) if lat else None, "max_ms": max(lat) if lat else None,
        "held_max": max(r["reload.run"]["held"]) if r["reload.run"]["held"] else 0,
        "lost": per_conn * 8 - r["reload.run"]["events"], "errors": r["reload.run"]["errors"],
        "ratio": r["reload.run"]["events_s"] / r["reload.base"]["events_s"],
    }


def virt_round(r, uri, virt_sock, pyvirt_sock):
    """Item 4: notification -> rule -> virt.domain.list -> ack done, against the direct call."""
    r["virt.lat.rpc"] = run_json([VIRT_DIRECT, uri, "latency", str(N_VIRT_LAT), "rpc"])
    r["virt.lat.hostlet"], r["virt.lat.direct"] = abba(
        lambda: run_json([CLIENT, virt_sock, "1", str(N_VIRT_LAT), "done", "latency", "bench.list"]),
        lambda: run_json([VIRT_DIRECT, uri, "latency", str(N_VIRT_LAT)]))
    r["virt.lat.python"] = run_json([CLIENT, pyvirt_sock, "1", str(N_VIRT_LAT), "done", "latency", "bench.list"])
    r["virt.tp.hostlet"], r["virt.tp.direct"] = abba(
        lambda: run_json([CLIENT, virt_sock, "8", str(N_VIRT_TP // 8), "done", "pipeline", "bench.list"]),
        lambda: run_json([VIRT_DIRECT, uri, "throughput", str(N_VIRT_TP), "4"]))
    r["virt.tp.python"] = run_json([CLIENT, pyvirt_sock, "8", str(N_VIRT_TP // 8), "done", "pipeline", "bench.list"])
    for k in ("virt.lat.hostlet", "virt.lat.python", "virt.tp.hostlet", "virt.tp.python"):
        if r[k].get("errors"):
            raise RuntimeError(f"{k}: {r[k]['errors']} error replies")


def flood_round(r, uri, sock, py_sock):
    """Issue 15: a flood that must be answered ok in full (backpressure, not
    "queue full"), against the asyncio daemon and a direct C client with 8
    threads on one connection; and one call at a time on a one-domain host."""
    n = FLOOD_PER_CONN
    runs = []  # each hostlet run's answers, for "answered ok" (abba's means add errors and average events)

    def hostlet():
        runs.append(run_json([CLIENT, sock, "8", str(n), "done", "pipeline", "bench.list"]))
        return runs[-1]
    r["flood.hostlet"], r["flood.direct"] = abba(
        hostlet, lambda: run_json([VIRT_DIRECT, uri, "throughput", str(8 * n), "8"]))
    r["flood.hostlet.runs"] = runs
    r["flood.python"] = run_json([CLIENT, py_sock, "8", str(n), "done", "pipeline", "bench.list"])
    r["rt1.hostlet"], r["rt1.direct"] = abba(
        lambda: run_json([CLIENT, sock, "1", str(N_RT1), "done", "latency", "bench.list"]),
        lambda: run_json([VIRT_DIRECT, uri, "latency", str(N_RT1)]))
    r["rt1.python"] = run_json([CLIENT, py_sock, "1", str(N_RT1), "done", "latency", "bench.list"])


def main():
    tmp = tempfile.mkdtemp(prefix="hostlet-bench-")
    procs = []
    rounds = []
    memory = {}
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
        py, py_sock = start_py_server(tmp, "py")
        procs.append(py)
        uv_sock = None
        if UVLOOP:
            uvp, uv_sock = start_py_server(tmp, "py-uvloop", "--uvloop")
            procs.append(uvp)
        lag_agents, lag_notify = {}, os.path.join(tmp, "lag-notify.sock")
        for pool in LAG_POOLS:
            plugins = (f"  - {{name: load, plugin: {PLUGIN}, max_inflight: 1024, max_queue: 100000}}\n"
                       f"  - {{name: probe, plugin: {PLUGIN}}}\n")
            if pool == LAG_POOLS[0]:
                plugins += f"  - {{name: notify, plugin: unixsock, config: {{socket: {lag_notify}}}}}\n"
            p, ctl = start_agent(tmp, f"lag{pool}", plugins, threadpool=pool)
            procs.append(p)
            lag_agents[pool] = ctl
            call(ctl, "load.run", mode="load", work_ms=1, inflight=pool, secs=1)  # starts the pool's threads
        vd, uri = start_libvirtd(tmp)
        procs.append(vd)
        virt_sock = os.path.join(tmp, "virt-notify.sock")
        va, _ = start_agent(tmp, "virt",
                            f"  - {{name: notify, plugin: unixsock, config: {{socket: {virt_sock}}}}}\n"
                            f"  - {{name: virt, plugin: libvirt, max_inflight: 4, config: {{uri: \"{uri}\"}}}}\n",
                            rules_yaml="rules:\n  - {on: {source: notify, type: bench.list}, do: virt.domain.list}\n")
        procs.append(va)
        pv, pyvirt_sock = start_py_server(tmp, "py-virt", "--libvirt", uri)
        procs.append(pv)
        vd1, uri1 = start_libvirtd(tmp, "libvirtd-1", 1, 1)
        procs.append(vd1)
        flood_sock = os.path.join(tmp, "flood-notify.sock")
        fa, _ = start_agent(tmp, "flood",
                            f"  - {{name: notify, plugin: unixsock, config: {{socket: {flood_sock}}}}}\n"
                            f"  - {{name: virt, plugin: libvirt, max_inflight: 8, config: {{uri: \"{uri1}\"}}}}\n",
                            threadpool=8,
                            rules_yaml="rules:\n  - {on: {source: notify, type: bench.list}, do: virt.domain.list}\n")
        procs.append(fa)
        pf, pyflood_sock = start_py_server(tmp, "py-flood", "--libvirt", uri1)
        procs.append(pf)

        for rnd in range(ROUNDS):
            log(f"round {rnd + 1}/{ROUNDS}")
            r = {}
            offload_round(r, off_ctl)
            coroutine_round(r, off_ctl)
            lag_round(r, lag_agents, lag_notify)
            ingest_round(r, hl_sock, py_sock, uv_sock)
            virt_round(r, uri, virt_sock, pyvirt_sock)
            flood_round(r, uri1, flood_sock, pyflood_sock)
            reload_round(r, tmp, rnd)
            rounds.append(r)
        for p in procs[:]:
            if p is not vd and p is not vd1:
                stop(p)
        log("memory")
        memory = measure_memory(tmp)
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)
    report(rounds, memory)


# ------------------------------------------------------------- report

class Med(float):
    """A median over rounds that remembers the range it was taken from; fmt()
    prints it as "median (min–max)". Arithmetic on it gives a plain float."""

    def __new__(cls, vals):
        m = super().__new__(cls, statistics.median(vals))
        m.lo, m.hi, m.n = min(vals), max(vals), len(vals)
        return m


def med(rounds, key, field):
    vals = [r[key][field] for r in rounds if key in r and field in r[key]]
    return Med(vals) if vals else None


def med_ratio(rounds, a, b, field):
    vals = [r[a][field] / r[b][field] for r in rounds if a in r and b in r and r[b][field]]
    return Med(vals) if vals else None


def fmt1(v, unit):
    if unit == "us":
        return f"{v:.1f} µs"
    if unit == "ms":
        return f"{v:.2f} ms"
    if unit == "mib":
        return f"{v / 1024:.1f} MiB"
    if unit == "ops":
        return f"{v / 1e6:.2f}M/s" if v >= 1e6 else f"{v / 1e3:.0f}k/s" if v >= 1e4 else f"{v:.0f}/s"
    return f"{v:.2f}×"


def fmt(v, unit):
    if v is None:
        return "–"
    if isinstance(v, Med) and v.n > 1 and v.lo != v.hi:
        return f"{fmt1(v, unit)} ({fmt1(v.lo, unit)}–{fmt1(v.hi, unit)})"
    return fmt1(v, unit)


def modes(rounds, key, field):
    """Rounds of a figure split at the geometric middle of its range when the
    range is wider than 1.5x (raw libuv's pool is bimodal on this VM): returns
    (rounds in the low mode, rounds in the high mode), or None."""
    vals = [r[key][field] for r in rounds if key in r and field in r[key] and r[key][field] > 0]
    if len(vals) < 2 or max(vals) < 1.5 * min(vals):
        return None
    mid = (min(vals) * max(vals)) ** 0.5
    return sum(v < mid for v in vals), sum(v >= mid for v in vals)


def yes(ok):
    return "yes" if ok else "no"


def report(rounds, memory):
    peers = ["hostlet", "raw", "python", "uvloop", "node"]
    rows = []  # (figure, [values per peer], ratio text, goal, met)
    for field in ("mean_us", "p50_us", "p99_us"):
        rows.append([f"offload round trip, {field[:-3]}", [fmt(med(rounds, f"lat.{p}", field), "us") for p in peers],
                     fmt(med_ratio(rounds, "lat.hostlet", "lat.raw", field), "x"), "", ""])
    g = med_ratio(rounds, "lat.hostlet", "lat.raw", "p50_us")
    rows[1][3:] = ["p50 ≤ 1.2× raw", yes(g is not None and g <= 1.2)]
    for k in INFLIGHT:
        rows.append([f"offload throughput, {k} in flight", [fmt(med(rounds, f"tp{k}.{p}", "ops_s"), "ops") for p in peers],
                     fmt(med_ratio(rounds, f"tp{k}.hostlet", f"tp{k}.raw", "ops_s"), "x"), "", ""])
    r_raw = med_ratio(rounds, "tp1024.hostlet", "tp1024.raw", "ops_s")
    r_py = med_ratio(rounds, "tp1024.hostlet", "tp1024.python", "ops_s")
    rows[-1][3:] = [f"≥ 0.7× raw, ≥ 30× asyncio (is {r_py:.0f}×)" if r_py else "≥ 0.7× raw, ≥ 30× asyncio",
                    yes(r_raw and r_py and r_raw >= 0.7 and r_py >= 30)]
    lines = ["| figure | hostlet | raw libuv (C) | asyncio.to_thread | same, uvloop | Node fs.access | hostlet / raw | goal | met |",
             "|---|---|---|---|---|---|---|---|---|"]
    for f, vals, ratio, goal, met in rows:
        lines.append(f"| {f} | " + " | ".join(vals) + f" | {ratio} | {goal} | {met} |")

    lines += [""] + coroutine_table(rounds)

    # loop lag
    lines += ["", "| 1 ms timer lateness (interval − 1 ms; due-time lateness in brackets) | hostlet | raw libuv (C) | "
              "asyncio | load done/s (hostlet) | hostlet's loop thread waiting for a CPU | goal | met |",
              "|---|---|---|---|---|---|---|---|"]

    def lag_cell(key):
        if med(rounds, key, "p99_ms") is None:
            return "–"
        return (f"{fmt(med(rounds, key, 'p50_ms'), 'ms')} / {fmt(med(rounds, key, 'p99_ms'), 'ms')} / "
                f"{fmt(med(rounds, key, 'max_ms'), 'ms')} ({fmt(med(rounds, key, 'due_p99_ms'), 'ms')})")

    lag_rows = [("idle", "lag.idle", "")]
    lag_rows += [(f"1024 × 10 ms blocking items in flight, pool {pool}", f"lag.load{pool}", "p99 < 1 ms")
                 for pool in LAG_POOLS]
    lag_rows += [("another instance ingesting at full speed (1 connection, ack none)", "lag.ingest", "p99 < 1 ms")]
    for name, key, goal in lag_rows:
        p99 = med(rounds, key + ".hostlet", "p99_ms")
        ops = med(rounds, key + ".hostlet", "ops_s")
        runq = med(rounds, key + ".hostlet", "runq_wait_ms")
        lines.append(f"| {name}: p50 / p99 / max (due p99) | {lag_cell(key + '.hostlet')} | {lag_cell(key + '.raw')} | "
                     f"{lag_cell(key + '.python')} | {fmt(ops, 'ops') if ops else ''} | "
                     f"{f'{runq:.0f} ms of {LAG_SECS * 1000:.0f}' if runq is not None else '–'} | {goal} | "
                     f"{yes(p99 is not None and p99 < 1.0) if goal else ''} |")

    # ingest
    lines += ["", "| notification ingest (C client) | hostlet unixsock | Python asyncio server | same, uvloop | "
              "hostlet / Python | goal | met |", "|---|---|---|---|---|---|---|"]
    for c in CONNS:
        for ack in ACKS:
            key = f"ev{c}.{ack}"
            h, p = med(rounds, key + ".hostlet", "events_s"), med(rounds, key + ".python", "events_s")
            u = med(rounds, key + ".uvloop", "events_s")
            ratio = med_ratio(rounds, key + ".hostlet", key + ".python", "events_s")
            goal, met = "", ""
            if ack == "none":
                goal = "≥ 500k/s and ≥ 10× Python"
                met = yes(h and ratio and h >= 500e3 and ratio >= 10)
            lines.append(f"| {c} connection{'s' if c > 1 else ''}, ack {ack} | {fmt(h, 'ops')} | {fmt(p, 'ops')} | "
                         f"{fmt(u, 'ops')} | {fmt(ratio, 'x')} | {goal} | {met} |")
    for c in CONNS:
        for ack in ACKS[1:]:
            for field in ("p50_us", "p99_us"):
                key = f"acklat{c}.{ack}"
                h, p = med(rounds, key + ".hostlet", field), med(rounds, key + ".python", field)
                who = "1 connection, one line at a time" if c == 1 else f"{c} connections, each one line at a time"
                lines.append(f"| ack {ack} latency {field[:3]}, {who} | {fmt(h, 'us')} | {fmt(p, 'us')} | – | "
                             f"{fmt(med_ratio(rounds, key + '.hostlet', key + '.python', field), 'x')} |  |  |")

    # libvirt end to end
    lines += ["", f"| end to end: notification → rule → virt.domain.list ({VIRT_DOMAINS} domains, private libvirtd) → "
              "ack done | the round trip alone (C) | direct: the action's libvirt calls (C) | hostlet | "
              "Python asyncio.to_thread | hostlet / direct | hostlet / Python | goal | met |",
              "|---|---|---|---|---|---|---|---|---|"]
    for field, label in (("mean_us", "latency, one at a time, mean"), ("p50_us", "latency p50"),
                         ("p99_us", "latency p99")):
        c, d, h, p = (med(rounds, f"virt.lat.{x}", field) for x in ("rpc", "direct", "hostlet", "python"))
        rd = med_ratio(rounds, "virt.lat.hostlet", "virt.lat.direct", field)
        rp = med_ratio(rounds, "virt.lat.hostlet", "virt.lat.python", field)
        goal = met = ""
        if field == "mean_us":
            goal = "≤ 1.1× direct, < Python"
            met = yes(rd is not None and rp is not None and rd <= 1.1 and rp < 1)
        lines.append(f"| {label} | {fmt(c, 'us')} | {fmt(d, 'us')} | {fmt(h, 'us')} | {fmt(p, 'us')} | {fmt(rd, 'x')} | "
                     f"{fmt(rp, 'x')} | {goal} | {met} |")
    split = [r["virt.lat.direct"] for r in rounds if "in_hand_us" in r.get("virt.lat.direct", {})]
    if split:
        in_hand = statistics.median(x["in_hand_us"] for x in split)
        freeing = statistics.median(x["free_us"] for x in split)
        r_in_hand = Med([r["virt.lat.hostlet"]["mean_us"] / r["virt.lat.direct"]["in_hand_us"]
                     for r in rounds if "in_hand_us" in r["virt.lat.direct"]])
        lines.append(f"| direct's mean split: until the data is in hand / freeing libvirt's records (hostlet "
                     f"answers first and frees them on a pool thread, overlapped with the next call) | – | "
                     f"{fmt(in_hand, 'us')} / {fmt(freeing, 'us')} | – | – | {fmt(r_in_hand, 'x')} of in hand | – |  |  |")
    d, h, p = (med(rounds, f"virt.tp.{x}", k) for x, k in (("direct", "ops_s"), ("hostlet", "events_s"),
                                                           ("python", "events_s")))
    rd = Med([r["virt.tp.hostlet"]["events_s"] / r["virt.tp.direct"]["ops_s"] for r in rounds]) if rounds else None
    rp = med_ratio(rounds, "virt.tp.hostlet", "virt.tp.python", "events_s")
    lines.append(f"| throughput (direct: 4 threads on one connection; hostlet and Python: 8 clients pipelining, "
                 f"4 calls at a time) | – | {fmt(d, 'ops')} | {fmt(h, 'ops')} | {fmt(p, 'ops')} | {fmt(rd, 'x')} | "
                 f"{fmt(rp, 'x')} | ≥ 0.9× direct, > Python | {yes(rd is not None and rp is not None and rd >= 0.9 and rp > 1)} |")

    # issue 15: the flood and the one-domain round trip
    if any("flood.hostlet" in r for r in rounds):
        fr = [r for r in rounds if "flood.hostlet" in r]
        total = 8 * FLOOD_PER_CONN

        def ok_range(runs):
            oks = [int(x["events"] - x["errors"]) for x in runs]
            return min(oks), max(oks)

        h_ok = ok_range([run for x in fr for run in x["flood.hostlet.runs"]])
        p_ok = ok_range([x["flood.python"] for x in fr])
        h, p, d = (med(fr, f"flood.{x}", k) for x, k in (("hostlet", "events_s"), ("python", "events_s"),
                                                          ("direct", "ops_s")))
        rd = Med([x["flood.hostlet"]["events_s"] / x["flood.direct"]["ops_s"] for x in fr])
        rp = med_ratio(fr, "flood.hostlet", "flood.python", "events_s")
        lines += ["", f"| flood: 8 connections × {FLOOD_PER_CONN} pipelined ack-done → rule → virt.domain.list "
                  "(1 domain; instance max_inflight 8, default max_queue) | hostlet | Python asyncio.to_thread | "
                  "direct C, 8 threads on one connection | hostlet / direct | hostlet / Python | goal | met |",
                  "|---|---|---|---|---|---|---|---|",
                  f"| answered ok (min–max over rounds) | {h_ok[0]}–{h_ok[1]} of {total} | {p_ok[0]}–{p_ok[1]} of {total} "
                  f"| – | – | – | all ok | {yes(h_ok[0] == total)} |",
                  f"| throughput | {fmt(h, 'ops')} | {fmt(p, 'ops')} | {fmt(d, 'ops')} | {fmt(rd, 'x')} | {fmt(rp, 'x')} "
                  f"| ≥ Python, ≥ 0.9× direct | {yes(rp is not None and rp >= 1 and rd >= 0.9)} |"]
        for field in ("p50_us", "p99_us"):
            h, p, d = (med(fr, f"rt1.{x}", field) for x in ("hostlet", "python", "direct"))
            rp = med_ratio(fr, "rt1.hostlet", "rt1.python", field)
            goal = met = ""
            if field == "p50_us":
                goal = "≤ direct + 40 µs, ≤ 0.6× Python"
                met = yes(h is not None and d is not None and rp is not None and h <= d + 40 and rp <= 0.6)
            lines.append(f"| one-domain round trip, one at a time, {field[:3]} | {fmt(h, 'us')} | {fmt(p, 'us')} | "
                         f"{fmt(d, 'us')} (one call) | {fmt(h - d, 'us') if h is not None and d is not None else '–'} "
                         f"more | {fmt(rp, 'x')} | {goal} | {met} |")

    # reload under load
    rs = [r["reload.stats"] for r in rounds if "reload.stats" in r]
    if rs:
        def rmed(k):
            vals = [x[k] for x in rs if x[k] is not None]
            return statistics.median(vals) if vals else None
        lost = sum(x["lost"] for x in rs)
        errs = sum(x["errors"] + x["failed"] for x in rs)
        lines += ["", "| reload under load: `reload w` every 100 ms (v1 ↔ v2 on disk) while 8 connections send "
                  "`ack: done` notifications → rule → `w.work` | hostlet | goal | met |", "|---|---|---|---|",
                  f"| reloads per run (all ok) | {rmed('reloads'):.0f} ({errs} failed reloads or answers) | – | – |",
                  f"| request → reply (new version serving), p50 / max | {fmt(rmed('p50_ms'), 'ms')} / "
                  f"{fmt(rmed('max_ms'), 'ms')} | – | – |",
                  f"| calls held during one swap, max | {rmed('held_max'):.0f} | – | – |",
                  f"| notifications lost or answered with an error, all rounds (a lost answer stalls the client: "
                  f"the run fails) | {lost + errs} | 0 | {yes(lost == 0 and errs == 0)} |",
                  f"| events/s with reloads ÷ without, same run | {fmt(rmed('ratio'), 'x')} | – | – |"]

    # memory
    if memory:
        lines += ["", "| memory (VmRSS) | hostlet | Python asyncio server | goal | met |", "|---|---|---|---|---|",
                  f"| idle (hostlet: the default config: unixsock, libvirt test driver, sysfs, uevent) | "
                  f"{fmt(memory.get('hostlet.idle'), 'mib')} | {fmt(memory.get('python.idle'), 'mib')} | – | – |",
                  f"| {MEM_CLIENTS} connected unixsock clients (each sent one notification) | "
                  f"{fmt(memory.get('hostlet.clients'), 'mib')} | {fmt(memory.get('python.clients'), 'mib')} | – | – |"]

    errors = sum(int(v.get("errors", 0)) for r in rounds for v in r.values() if isinstance(v, dict))
    bimodal = []
    for k in INFLIGHT:
        for peer in ("raw", "hostlet"):
            m = modes(rounds, f"tp{k}.{peer}", "ops_s")
            if m:
                bimodal.append(f"offload throughput at {k} in flight, {peer}: {m[0]} round(s) in the low mode, "
                               f"{m[1]} in the high one")
    if bimodal:
        lines += ["", "Bimodal figures (range wider than 1.5×, split at its geometric middle): " + "; ".join(bimodal) + "."]
    lines += ["", f"Run on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {len(rounds)} round(s): each cell is "
              f"the median over rounds with the range (min–max) in brackets; ratios are computed within each round, "
              f"then the median and range taken. Errors reported by any run: {errors}. Pool: 4 threads for the offload and ingest figures "
              f"(UV_THREADPOOL_SIZE=4, agent threadpool 4, ThreadPoolExecutor(4)). uvloop: "
              f"{'python3-uvloop' if UVLOOP else 'not installed'}. Node: {'yes' if NODE else 'not installed'}."]
    table = "\n".join(lines)
    print(table)
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "latest.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(ROOT, "bench", "results", "latest.json"), "w") as f:
        json.dump({"smoke": SMOKE, "rounds": rounds, "memory": memory, "errors": errors}, f, indent=1)
    if SMOKE:
        for needle in ("| offload round trip", "| idle:", "| 1 connection, ack none", "| latency p50", "| idle (hostlet",
                       "| notifications lost", "| answered ok", "| one-domain round trip"):
            if needle not in table:
                sys.exit(f"smoke: '{needle}' missing from the table")


if __name__ == "__main__":
    main()
