#!/usr/bin/python3
"""Python peer: empty work through asyncio.to_thread (default executor, 4 workers).
usage: asyncio_offload.py latency N | throughput N INFLIGHT [--uvloop]
Prints one JSON object like bench/offload_bench.c."""
import asyncio, concurrent.futures, json, sys, time


def empty():
    pass


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
    mode, n = args[0], int(args[1])
    inflight = int(args[2]) if len(args) > 2 else 1
    if "--uvloop" in sys.argv:
        import uvloop
        uvloop.install()
    print(json.dumps(asyncio.run(main(mode, n, inflight))))
