#!/usr/bin/python3
"""Python peer of the unixsock plugin: an asyncio Unix-socket server speaking the
same NDJSON protocol (type/attrs/id/ack none|accepted|done), validating each
line the same way, putting events into a bounded queue (65536) that one
dispatcher task drains (no rules: the same work hostlet does with no rules).
Like hostlet it stamps every event with an id and the wall-clock time, refuses
empty attribute names and NUL characters in names and values, and refuses
NaN/Infinity (not JSON).

With --libvirt URI it also has hostlet's benchmark rule: an event of type
bench.list runs the virt.domain.list action, written the Python way: one
shared libvirt connection (python3-libvirt), the blocking call in
asyncio.to_thread on a 4-thread executor (hostlet: pool 4, max_inflight 4),
the same libvirt call as hostlet's plugin (getAllDomainStats with the state
group: one round trip for name, uuid, id, state and reason of every domain),
the same list sorted by name, and the same ack-done reply with the list as
the result's data.
usage: asyncio_server.py SOCKET [--uvloop] [--libvirt URI]   (serves until SIGTERM)"""
import asyncio, concurrent.futures, json, os, re, signal, sys, time

TYPE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,256}$")
queue = None
next_id = 0


def not_json(name):
    raise ValueError(f"invalid JSON: {name}")


# One decoder for every line (json.loads with options would build one per call).
DECODER = json.JSONDecoder(parse_constant=not_json)


def err(ident, msg):
    d = {"ok": False, "error": msg}
    if ident is not None:
        d = {"id": ident, **d}
    return (json.dumps(d, separators=(",", ":")) + "\n").encode()


conn = None  # --libvirt: the shared connection
STATES = ["nostate", "running", "blocked", "paused", "shutdown", "shutoff", "crashed", "pmsuspended"]
REASONS = {1: ["unknown", "booted", "migrated", "restored", "from snapshot", "unpaused", "migration canceled",
               "save canceled", "wakeup", "crashed", "post-copy"],
           5: ["unknown", "shutdown", "destroyed", "crashed", "migrated", "saved", "failed", "from snapshot",
               "daemon"]}


def list_domains():
    import libvirt
    out = []
    for dom, st in conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE):
        state, reason = st.get("state.state", 0), st.get("state.reason", 0)
        words = REASONS.get(state, [])
        i = dom.ID() if state != 5 else -1  # like hostlet: a shut-off domain has no id, no call for it
        out.append({"name": dom.name(), "uuid": dom.UUIDString(),
                    "state": STATES[state] if 0 <= state < len(STATES) else "unknown",
                    "reason": words[reason] if 0 <= reason < len(words) else "unknown",
                    "id": None if i == -1 else i})
    out.sort(key=lambda e: e["name"])
    return out


async def run_rule(ev, fut):
    try:
        data = await asyncio.to_thread(list_domains)
        res = {"action": "virt.domain.list", "rule": "asyncio_server.py", "ok": True,
               "attrs": {"count": str(len(data))}, "data": data}
    except Exception as e:  # libvirt.libvirtError and the like: the action failed
        res = {"action": "virt.domain.list", "rule": "asyncio_server.py", "ok": False, "error": str(e)}
    if fut is not None and not fut.done():
        fut.set_result((ev["event"], [res]))


async def dispatcher():
    while True:
        ev, fut = await queue.get()
        if conn is not None and ev["type"] == "bench.list":
            asyncio.create_task(run_rule(ev, fut))  # actions run concurrently, like hostlet's lane
        elif fut is not None and not fut.done():
            fut.set_result((ev["event"], []))


async def handle(reader, writer):
    global next_id
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            ident = None
            try:
                msg = DECODER.decode(line.decode("utf-8"))  # UnicodeDecodeError is a ValueError
                if not isinstance(msg, dict):
                    raise ValueError("a notification is a JSON object")
                ident = msg.get("id")
                typ = msg.get("type")
                if not isinstance(typ, str) or not TYPE_RE.match(typ):
                    raise ValueError("'type' is required")
                attrs = msg.get("attrs", {})
                if not isinstance(attrs, dict) or not all(isinstance(v, str) and "\0" not in v for v in attrs.values()):
                    raise ValueError("attribute values must be strings without NUL")
                if any(not k or "\0" in k for k in attrs):
                    raise ValueError("attribute names must be non-empty, without NUL")
                ack = msg.get("ack", "accepted")
                if ack not in ("none", "accepted", "done"):
                    raise ValueError("'ack' must be none, accepted or done")
            except ValueError as e:
                writer.write(err(ident, str(e)))
                continue
            next_id += 1
            ev = {"event": next_id, "ts": time.time_ns(), "source": "notify", "type": typ, "attrs": attrs}
            fut = asyncio.get_running_loop().create_future() if ack == "done" else None
            await queue.put((ev, fut))  # full queue: stop reading (backpressure)
            if ack == "accepted":
                writer.write(json.dumps({"id": ident, "ok": True, "event": ev["event"]},
                                        separators=(",", ":")).encode() + b"\n")
            elif ack == "done":
                event, results = await fut
                writer.write(json.dumps({"id": ident, "ok": all(r["ok"] for r in results), "event": event,
                                         "results": results}, separators=(",", ":")).encode() + b"\n")
            if writer.transport.get_write_buffer_size() > 1 << 20:
                await writer.drain()
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        writer.close()


async def main(path, uri):
    global queue, conn
    queue = asyncio.Queue(maxsize=65536)
    if uri:
        import libvirt
        conn = libvirt.open(uri)
        asyncio.get_running_loop().set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=4))
    if os.path.exists(path):
        os.unlink(path)
    server = await asyncio.start_unix_server(handle, path=path, limit=1 << 16)
    task = asyncio.create_task(dispatcher())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print("ready", flush=True)
    async with server:
        await stop.wait()
    task.cancel()


if __name__ == "__main__":
    if "--uvloop" in sys.argv:
        import uvloop
        uvloop.install()
    uri = sys.argv[sys.argv.index("--libvirt") + 1] if "--libvirt" in sys.argv else None
    asyncio.run(main(sys.argv[1], uri))
