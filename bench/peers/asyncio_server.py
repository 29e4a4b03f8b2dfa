#!/usr/bin/python3
"""Python peer of the unixsock plugin: an asyncio Unix-socket server speaking the
same NDJSON protocol (type/attrs/id/ack none|accepted|done), validating each
line the same way, putting events into a bounded queue (65536) that one
dispatcher task drains (no rules: the same work hostlet does with no rules).
usage: asyncio_server.py SOCKET [--uvloop]   (serves until SIGTERM)"""
import asyncio, json, os, re, signal, sys

TYPE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,256}$")
queue = None
next_id = 0


def err(ident, msg):
    d = {"ok": False, "error": msg}
    if ident is not None:
        d = {"id": ident, **d}
    return (json.dumps(d, separators=(",", ":")) + "\n").encode()


async def dispatcher():
    while True:
        ev, fut = await queue.get()
        if fut is not None and not fut.done():
            fut.set_result(ev["event"])


async def handle(reader, writer):
    global next_id
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            ident = None
            try:
                msg = json.loads(line)
                if not isinstance(msg, dict):
                    raise ValueError("a notification is a JSON object")
                ident = msg.get("id")
                typ = msg.get("type")
                if not isinstance(typ, str) or not TYPE_RE.match(typ):
                    raise ValueError("'type' is required")
                attrs = msg.get("attrs", {})
                if not isinstance(attrs, dict) or not all(isinstance(v, str) for v in attrs.values()):
                    raise ValueError("attribute values must be strings")
                ack = msg.get("ack", "accepted")
                if ack not in ("none", "accepted", "done"):
                    raise ValueError("'ack' must be none, accepted or done")
            except ValueError as e:
                writer.write(err(ident, str(e)))
                continue
            next_id += 1
            ev = {"event": next_id, "source": "notify", "type": typ, "attrs": attrs}
            fut = asyncio.get_running_loop().create_future() if ack == "done" else None
            await queue.put((ev, fut))  # full queue: stop reading (backpressure)
            if ack == "accepted":
                writer.write(json.dumps({"id": ident, "ok": True, "event": ev["event"]},
                                        separators=(",", ":")).encode() + b"\n")
            elif ack == "done":
                await fut
                writer.write(json.dumps({"id": ident, "ok": True, "event": ev["event"], "results": []},
                                        separators=(",", ":")).encode() + b"\n")
            if writer.transport.get_write_buffer_size() > 1 << 20:
                await writer.drain()
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        writer.close()


async def main(path):
    global queue
    queue = asyncio.Queue(maxsize=65536)
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
    asyncio.run(main(sys.argv[1]))
