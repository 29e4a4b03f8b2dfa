#!/usr/bin/python3
"""Python peer: empty work through asyncio.to_thread (default executor, 4 workers).
usage: asyncio_offload.py latency N | throughput N INFLIGHT [--uvloop]
       asyncio_offload.py lag SECS WORK_MS INFLIGHT POOL [--uvloop]
         INFLIGHT blocking items (time.sleep(WORK_MS)) through to_thread on a
         POOL-thread executor, while a 1 ms timer measures its lateness (as
         bench/offload_bench.c lag does: interval minus period, and tick
         minus due time)
Prints one JSON object like bench/offload_bench.c."""
import asyncio, concurrent.futures, json, sys, time


def empty():
    pass


def quantiles(prefix, v):
    v.sort()
    m = len(v)
    return {prefix + "p50_ms": v[m // 2] / 1e6, prefix + "p99_ms": v[min(m - 1, m * 99 // 100)] / 1e6,
            prefix + "max_ms": v[-1] / 1e6}


async def lag(secs, work_ms, inflight, pool):
    loop = asyncio.get_running_loop()
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=pool))
    until = time.monotonic_ns() + int(secs * 1e9)
    done = 0

    async def worker():
        nonlocal done
        while time.monotonic_ns() < until:
            await asyncio.to_thread(time.sleep, work_ms / 1000)
            done += 1

    gaps, lates = [], []

    async def ticker():
        # call_later(0.001) from each tick: the due time is asyncio's own
        # (loop.time() when armed + 1 ms), like libuv's repeating timer.
        fut = loop.create_future()
        state = {"prev": time.monotonic_ns(), "due": loop.time() + 0.001}

        def tick():
            now = time.monotonic_ns()
            gaps.append(max(0, now - state["prev"] - 1000000))
            lates.append(max(0, int((loop.time() - state["due"]) * 1e9)))
            state["prev"] = now
            if now >= until:
                fut.set_result(None)
                return
            state["due"] = loop.time() + 0.001
            loop.call_later(0.001, tick)

        loop.call_later(0.001, tick)
        await fut

    t0 = time.monotonic_ns()
    await asyncio.gather(ticker(), *(worker() for _ in range(inflight)))
    total = (time.monotonic_ns() - t0) / 1e9
    return {"ticks": len(gaps), **quantiles("", gaps), **quantiles("due_", lates), "ops_s": done / total}


async def main(mode, n, inflight):
    loop = asyncio.get_running_loop()
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=4))
    if mode == "latency":
        lat = []
        for _ in range(n):
            t = time.perf_counter_ns()
            await asyncio.to_thread(empty)
            lat.append(time.perf_counter_ns() - t)
        lat.sort()
        m = len(lat)
        return {"n": m, "mean_us": sum(lat) / m / 1e3, "p50_us": lat[m // 2] / 1e3,
                "p99_us": lat[min(m - 1, m * 99 // 100)] / 1e3, "max_us": lat[-1] / 1e3}
    left = n

    async def worker():
        nonlocal left
        while left > 0:
            left -= 1
            await asyncio.to_thread(empty)

    t0 = time.perf_counter_ns()
    await asyncio.gather(*(worker() for _ in range(min(inflight, n))))
    secs = (time.perf_counter_ns() - t0) / 1e9
    return {"n": n, "ops_s": n / secs, "secs": secs}


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if "--uvloop" in sys.argv:
        import uvloop
        uvloop.install()
    if args[0] == "lag":
        print(json.dumps(asyncio.run(lag(float(args[1]), float(args[2]), int(args[3]), int(args[4])))))
        sys.exit(0)
    mode, n = args[0], int(args[1])
    inflight = int(args[2]) if len(args) > 2 else 1
    print(json.dumps(asyncio.run(main(mode, n, inflight))))
