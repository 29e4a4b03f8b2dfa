#!/usr/bin/python3
"""One small call, hop by hop (issue 15, item 2).

Starts a private libvirtd with one domain and an agent (unixsock + libvirt,
max_inflight 8, pool 8, the bench.list rule), measures the round trip of one
`ack: done` notification at a time against the direct C call, then traces
CALLS such calls with `perf trace` (syscalls of every agent thread) and prints,
per call, what each kind of thread did: the loop thread's wake-ups
(epoll_wait returns), the wake-ups other threads caused it (reads of libuv's
async eventfd), its epoll_ctl calls (the libvirt event bridge re-arming the
connection's fd), and the pool threads' futex calls, libvirt's own eventfd
writes, socket writes (requests to libvirtd) and polls.

perf trace slows every syscall (about 10 us each here), so only the counts
are meant, not the times; the round trips are measured untraced.

usage: bench/hops.py [CALLS] [PLUGIN_SO]   (PLUGIN_SO: another libvirt.so to
trace instead of the build's, e.g. an older build kept for comparison)
Needs bench/run.sh's build (notify_client, virt_direct) and perf."""
import collections, os, re, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import driver as d  # noqa: E402  (its helpers: libvirtd, agent, clients)


def trace_counts(agent_pid, sock, calls, out):
    subprocess.run(["perf", "trace", "-o", out, "-p", str(agent_pid), "--",
                    d.CLIENT, sock, "1", str(calls), "done", "latency", "bench.list"],
                   check=True, capture_output=True)
    per_tid = collections.defaultdict(collections.Counter)
    loop_fds = collections.Counter()
    for line in open(out):
        m = re.search(r"hostlet/(\d+) (\w+)\((.*)", line)
        if not m:
            continue
        tid, call, rest = int(m.group(1)), m.group(2), m.group(3)
        fd = re.search(r"fd: (\d+)<(socket|anon_inode)", rest)
        key = call
        if fd and call in ("read", "write"):
            key = f"{call} {'socket' if fd.group(2) == 'socket' else 'eventfd'} {fd.group(1)}"
            if tid == agent_pid and call == "read" and fd.group(2) == "anon_inode":
                loop_fds[fd.group(1)] += 1
        per_tid[tid][key] += 1
    async_fd = loop_fds.most_common(1)[0][0] if loop_fds else "?"
    loop = per_tid.pop(agent_pid, collections.Counter())
    pool = collections.Counter()
    for c in per_tid.values():
        pool.update(c)
    n = float(calls)
    rows = [("loop: wake-ups (epoll_wait returns)", loop["epoll_wait"] / n),
            ("loop: woken by another thread (reads of libuv's async eventfd)", loop[f"read eventfd {async_fd}"] / n),
            ("loop: epoll_ctl (the libvirt bridge re-arming its fd)", loop["epoll_ctl"] / n),
            ("loop: futex (waking pool threads, locks)", loop["futex"] / n),
            ("loop: reads and writes on the client's socket", sum(v for k, v in loop.items() if k.split()[1:2] == ["socket"]) / n),
            ("pool: writes to libuv's async eventfd (waking the loop)", pool[f"write eventfd {async_fd}"] / n),
            ("pool: requests written to libvirtd", sum(v for k, v in pool.items() if k.startswith("write socket")) / n),
            ("pool: poll (waiting for libvirtd)", pool["poll"] / n),
            ("pool: libvirt's own eventfd writes (GMainContext wake-ups)",
             sum(v for k, v in pool.items() if k.startswith("write eventfd") and not k.endswith(f" {async_fd}")) / n),
            ("pool: futex", pool["futex"] / n),
            ("pool threads that ran", float(len([t for t, c in per_tid.items() if sum(c.values()) > 0])))]
    return rows


def main():
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    plugin = sys.argv[2] if len(sys.argv) > 2 else "libvirt"
    if not shutil.which("perf"):
        sys.exit("needs perf (Debian: linux-perf)")
    tmp = tempfile.mkdtemp(prefix="hostlet-hops-")
    procs = []
    try:
        vd, uri = d.start_libvirtd(tmp, "libvirtd-1", 1, 1)
        procs.append(vd)
        sock = os.path.join(tmp, "notify.sock")
        ag, _ = d.start_agent(tmp, "hops",
                              f"  - {{name: notify, plugin: unixsock, config: {{socket: {sock}}}}}\n"
                              f"  - {{name: virt, plugin: {plugin}, max_inflight: 8, config: {{uri: \"{uri}\"}}}}\n",
                              threadpool=8,
                              rules_yaml="rules:\n  - {on: {source: notify, type: bench.list}, do: virt.domain.list}\n")
        procs.append(ag)
        time.sleep(0.5)
        h, direct = [], []
        for _ in range(3):  # ABBA-like: alternate, medians
            h.append(d.run_json([d.CLIENT, sock, "1", "2000", "done", "latency", "bench.list"])["p50_us"])
            direct.append(d.run_json([d.VIRT_DIRECT, uri, "latency", "2000"])["p50_us"])
        rows = trace_counts(ag.pid, sock, calls, os.path.join(tmp, "trace.txt"))
        print(f"one `ack: done` notification at a time -> rule -> virt.domain.list (1 domain, private libvirtd), "
              f"plugin {plugin}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        print(f"round trip p50, untraced, 3 x 2000 calls: hostlet {statistics.median(h):.1f} us "
              f"({min(h):.1f}-{max(h):.1f}), the direct C call {statistics.median(direct):.1f} us "
              f"({min(direct):.1f}-{max(direct):.1f})\n")
        print(f"| per call, traced ({calls} calls) | count |\n|---|---|")
        for name, v in rows:
            print(f"| {name} | {v:.2f} |")
    finally:
        for p in reversed(procs):  # the agent before its libvirtd
            d.stop(p)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
