#!/usr/bin/env python3
"""A TCP relay that delays one direction: what the clients send reaches
the server DELAY ms later, in order; the replies are not delayed.

    rtproxy.py LISTEN_PORT TARGET_PORT DELAY_MS

Put between nginx and Redis, it makes every round trip that a POP3
session waits for cost DELAY ms more, and requests sent together (a
pipeline) cost it once: (session time with the delay - without) / DELAY
is the number of Redis round trips the session waited for.  Requests
that nobody waits for add nothing.  Listens on 127.0.0.1 only; prints
"ready" once it listens.  Standard library only.

A timer fires late on a busy machine, so the delay a chunk really had is
measured: each line "stats" on stdin is answered with {"chunks": N,
"mean_ms": the mean delay}, since the last such line, on stdout.
"""

import asyncio
import json
import socket
import sys
import time


STATS = [0, 0.0]                # chunks relayed, sum of their delays


async def pump(reader, writer, delay):
    """Copies reader to writer, each chunk `delay` seconds after it came,
    in order (a chunk never overtakes the one before it)."""
    q = asyncio.Queue()

    async def later():
        while True:
            due, data = await q.get()
            if data is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            STATS[0] += 1
            STATS[1] += time.monotonic() - (due - delay)
            await writer.drain()

    sender = asyncio.ensure_future(later())
    try:
        while True:
            data = await reader.read(1 << 16)
            if not data:
                break
            await q.put((time.monotonic() + delay, data))
    finally:
        await q.put((0, None))
        try:
            await sender
        except (OSError, ConnectionError):
            pass
        writer.close()


async def copy(reader, writer):
    try:
        while True:
            data = await reader.read(1 << 16)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (OSError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    listen, target, delay = (int(sys.argv[1]), int(sys.argv[2]),
                             float(sys.argv[3]) / 1000)

    async def client(cr, cw):
        try:
            sr, sw = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            cw.close()
            return
        for w in (cw, sw):
            w.get_extra_info("socket").setsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(pump(cr, sw, delay), copy(sr, cw),
                             return_exceptions=True)

    async def control():
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            if line.strip() == "stats":
                n, total = STATS
                STATS[:] = [0, 0.0]
                print(json.dumps({"chunks": n, "mean_ms": total / n * 1000
                                  if n else None}), flush=True)

    server = await asyncio.start_server(client, "127.0.0.1", listen)
    print("ready", flush=True)
    async with server:
        await asyncio.gather(server.serve_forever(), control())


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
