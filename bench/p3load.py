#!/usr/bin/env python3
"""The project's own POP3 load tool, for what rabid cannot measure.

    p3load.py probe  HOST PORT PASSWORD USER...       login latency probe
    p3load.py retr   HOST PORT PASSWORD USER...       RETR 1 throughput
    p3load.py bigbox HOST PORT PASSWORD USER          login+STAT/LIST/UIDL
    p3load.py idle   HOST PORT PASSWORD USERFILE      many idle connections
    p3load.py noop   HOST PORT PASSWORD USER...       NOOP latency sessions
    p3load.py storm  HOST PORT PASSWORD USER...       login storm
    p3load.py fetchall HOST PORT PASSWORD USER...     full sessions, once
    p3load.py sessions HOST PORT PASSWORD USER...     sessions of one shape

Common options: --duration SECONDS, --tls, --concurrency N, --repeat N,
--count N, --interval SECONDS, --retr N (sessions).  Each prints one JSON
object on stdout (idle prints one per step and is driven by lines on
stdin).  Latencies are in milliseconds.  Standard library only.
"""

import argparse
import asyncio
import json
import signal
import socket
import ssl
import sys
import threading
import time


TERM = b"\r\n.\r\n"


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def summary(lat):
    return {
        "n": len(lat),
        "p50": pct(lat, 50),
        "p90": pct(lat, 90),
        "p99": pct(lat, 99),
        "max": max(lat) if lat else None,
    }


def ssl_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# ---------------------------------------------------------------------------
# blocking client (probe, retr, bigbox)


class POP3Error(Exception):
    pass


class Client:
    def __init__(self, host, port, tls=False, timeout=60):
        s = socket.create_connection((host, port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            s = ssl_context().wrap_socket(s)
        self.s = s
        self.buf = bytearray()

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                ln = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return ln
            d = self.s.recv(65536)
            if not d:
                raise POP3Error("connection closed")
            self.buf += d

    def cmd(self, text):
        self.s.sendall(text.encode() + b"\r\n")
        ln = self.line()
        if not ln.startswith(b"+OK"):
            raise POP3Error("%s: %s" % (text.split()[0], ln[:200].decode(
                "latin-1")))
        return ln

    def multi(self, text):
        """A multi-line command; returns the octets of the listing."""
        self.cmd(text)
        data = self.buf
        while not (data.endswith(TERM) or data == b".\r\n"):
            d = self.s.recv(262144)
            if not d:
                raise POP3Error("connection closed in listing")
            data += d
        n = len(data)
        self.buf = bytearray()
        return n

    def retr_count(self, text, chunk):
        """Sends a multi-line command and counts octets without keeping
        them; returns the octets after the status line."""
        self.s.sendall(text.encode() + b"\r\n")
        ln = self.line()
        if not ln.startswith(b"+OK"):
            raise POP3Error("%s: %s" % (text, ln[:200].decode("latin-1")))
        total = len(self.buf)
        tail = bytes(self.buf[-5:])
        if tail.endswith(TERM) or bytes(self.buf) == b".\r\n":
            self.buf = bytearray()
            return total
        self.buf = bytearray()
        mv = memoryview(chunk)
        while True:
            n = self.s.recv_into(mv)
            if n == 0:
                raise POP3Error("connection closed in RETR")
            total += n
            if n >= 5:
                tail = bytes(mv[n - 5:n])
            else:
                tail = (tail + bytes(mv[:n]))[-5:]
            if tail == TERM:
                return total

    def login(self, user, password):
        self.line()                                   # greeting
        self.cmd("USER " + user)
        self.cmd("PASS " + password)


def cmd_probe(a):
    """Logs in and out over and over, one session at a time."""
    lat, errors, stop = [], [], []
    signal.signal(signal.SIGTERM, lambda *x: stop.append(1))
    end = time.monotonic() + a.duration
    i = 0
    while not stop and time.monotonic() < end and i < a.count:
        user = a.users[i % len(a.users)]
        i += 1
        t0 = time.monotonic()
        c = None
        try:
            c = Client(a.host, a.port, a.tls)
            c.login(user, a.password)
            lat.append((time.monotonic() - t0) * 1000)
            c.cmd("QUIT")
        except (OSError, POP3Error) as e:
            errors.append(str(e))
        finally:
            if c:
                c.close()
        if a.interval:
            time.sleep(a.interval)
    out = summary(lat)
    out.update(errors=len(errors), error_samples=errors[:5], lat_all=lat)
    print(json.dumps(out))


def cmd_fetchall(a):
    """One full session per user: LIST, RETR and DELE of every message,
    QUIT (what rabid does), one after the other."""
    chunk = bytearray(262144)
    n = msgs = 0
    errors = []
    for user in a.users:
        c = None
        try:
            c = Client(a.host, a.port, a.tls)
            c.login(user, a.password)
            count = int(c.cmd("STAT").split()[1])
            c.multi("LIST")
            for i in range(1, count + 1):
                c.retr_count("RETR %d" % i, chunk)
                c.cmd("DELE %d" % i)
            c.cmd("QUIT")
            n += 1
            msgs += count
        except (OSError, POP3Error, ValueError, IndexError) as e:
            errors.append(str(e))
        finally:
            if c:
                c.close()
    print(json.dumps({"sessions": n, "messages": msgs,
                      "errors": len(errors), "error_samples": errors[:5]}))


def cmd_retr(a):
    """Each of the users logs in once and RETRs message 1 repeatedly."""
    stats = {"octets": 0, "retr": 0, "errors": [], "lat": []}
    lock = threading.Lock()
    start = threading.Barrier(len(a.users) + 1)
    end = [0.0]

    def worker(user):
        chunk = bytearray(262144)
        c = None
        try:
            c = Client(a.host, a.port, a.tls)
            c.login(user, a.password)
        except (OSError, POP3Error) as e:
            with lock:
                stats["errors"].append("login %s: %s" % (user, e))
            start.wait()
            return
        start.wait()
        octets = retr = 0
        lat = []
        try:
            while time.monotonic() < end[0]:
                t0 = time.monotonic()
                octets += c.retr_count("RETR 1", chunk)
                lat.append((time.monotonic() - t0) * 1000)
                retr += 1
            c.cmd("QUIT")
        except (OSError, POP3Error) as e:
            with lock:
                stats["errors"].append("%s: %s" % (user, e))
        finally:
            c.close()
        with lock:
            stats["octets"] += octets
            stats["retr"] += retr
            stats["lat"] += lat

    threads = [threading.Thread(target=worker, args=(u,)) for u in a.users]
    for t in threads:
        t.start()
    end[0] = time.monotonic() + a.duration
    start.wait()
    t0 = time.monotonic()
    end[0] = t0 + a.duration
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    print(json.dumps({
        "octets": stats["octets"], "retr": stats["retr"],
        "seconds": elapsed,
        "mb_s": stats["octets"] / elapsed / 1e6 if elapsed else 0,
        "retr_lat": summary(stats["lat"]),
        "errors": len(stats["errors"]),
        "error_samples": stats["errors"][:5],
    }))


def cmd_bigbox(a):
    """login+STAT, LIST and UIDL of one big maildrop, a few times."""
    res = {"login_stat": [], "list": [], "uidl": [], "list_octets": 0,
           "uidl_octets": 0, "stat": None, "errors": []}
    for _ in range(a.repeat):
        c = None
        try:
            t0 = time.monotonic()
            c = Client(a.host, a.port, a.tls, timeout=300)
            c.login(a.users[0], a.password)
            st = c.cmd("STAT")
            t1 = time.monotonic()
            n1 = c.multi("LIST")
            t2 = time.monotonic()
            n2 = c.multi("UIDL")
            t3 = time.monotonic()
            c.cmd("QUIT")
            res["login_stat"].append((t1 - t0) * 1000)
            res["list"].append((t2 - t1) * 1000)
            res["uidl"].append((t3 - t2) * 1000)
            res["list_octets"], res["uidl_octets"] = n1, n2
            res["stat"] = st.decode()
        except (OSError, POP3Error) as e:
            res["errors"].append(str(e))
        finally:
            if c:
                c.close()
        time.sleep(0.2)
    res["error_count"] = len(res["errors"])
    print(json.dumps(res))


# ---------------------------------------------------------------------------
# asyncio clients (idle, noop, storm)


async def aopen(host, port, tls):
    r, w = await asyncio.open_connection(
        host, port, ssl=ssl_context() if tls else None,
        server_hostname="" if tls else None, limit=1 << 20)
    return r, w


async def acmd(r, w, text):
    w.write(text.encode() + b"\r\n")
    ln = await r.readline()
    if not ln.startswith(b"+OK"):
        raise POP3Error("%s: %r" % (text.split()[0], ln[:200]))
    return ln


async def alogin(r, w, user, password):
    ln = await r.readline()
    if not ln.startswith(b"+OK"):
        raise POP3Error("greeting: %r" % ln[:200])
    # USER and PASS in one write: both servers announce PIPELINING
    w.write(("USER %s\r\nPASS %s\r\n" % (user, password)).encode())
    for what in ("USER", "PASS"):
        ln = await r.readline()
        if not ln.startswith(b"+OK"):
            raise POP3Error("%s: %r" % (what, ln[:200]))


def cmd_idle(a):
    asyncio.run(idle(a))


async def idle(a):
    """Opens --count connections and holds them; on 'login' from stdin
    logs every one in (one user each), on 'quit' closes them."""
    users = [u.strip() for u in open(a.users[0]) if u.strip()][:a.count]
    conns = []
    errors = []
    sem = asyncio.Semaphore(a.concurrency)
    loop = asyncio.get_running_loop()

    async def connect(i):
        async with sem:
            try:
                r, w = await aopen(a.host, a.port, a.tls)
                ln = await r.readline()
                if not ln.startswith(b"+OK"):
                    raise POP3Error("greeting %r" % ln)
                conns.append((r, w, users[i]))
            except (OSError, POP3Error, ssl.SSLError) as e:
                errors.append("connect: %s" % e)

    async def login(c):
        r, w, user = c
        async with sem:
            try:
                w.write(("USER %s\r\nPASS %s\r\n" % (user, a.password))
                        .encode())
                for what in ("USER", "PASS"):
                    ln = await r.readline()
                    if not ln.startswith(b"+OK"):
                        raise POP3Error("%s %s: %r" % (what, user, ln[:100]))
            except (OSError, POP3Error) as e:
                errors.append(str(e))

    async def stdin_line():
        return (await loop.run_in_executor(None, sys.stdin.readline)).strip()

    t0 = time.monotonic()
    await asyncio.gather(*(connect(i) for i in range(len(users))))
    print(json.dumps({"step": "connected", "open": len(conns),
                      "seconds": time.monotonic() - t0,
                      "errors": len(errors), "error_samples": errors[:5]}),
          flush=True)
    while True:
        line = await stdin_line()
        if line == "login":
            errors.clear()
            t0 = time.monotonic()
            await asyncio.gather(*(login(c) for c in conns))
            print(json.dumps({"step": "loggedin", "open": len(conns),
                              "seconds": time.monotonic() - t0,
                              "errors": len(errors),
                              "error_samples": errors[:5]}), flush=True)
        else:
            break
    for r, w, _ in conns:
        w.close()
    print(json.dumps({"step": "closed"}), flush=True)


def cmd_noop(a):
    asyncio.run(noop(a))


async def noop(a):
    """Logged-in sessions that send NOOP every --interval; the samples
    carry wall-clock times so a window can be cut out afterwards."""
    samples, errors = [], []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.call_later(a.duration, stop.set)
    ready = []

    async def session(user):
        try:
            r, w = await aopen(a.host, a.port, a.tls)
            await alogin(r, w, user, a.password)
        except (OSError, POP3Error) as e:
            errors.append("login %s: %s" % (user, e))
            return
        ready.append(1)
        if len(ready) == len(a.users):
            print(json.dumps({"step": "ready"}), flush=True)
        try:
            while not stop.is_set():
                t0 = time.monotonic()
                await acmd(r, w, "NOOP")
                t1 = time.monotonic()
                samples.append((time.time(), (t1 - t0) * 1000))
                await asyncio.sleep(a.interval)
            await acmd(r, w, "QUIT")
        except (OSError, POP3Error) as e:
            errors.append("%s: %s" % (user, e))
        w.close()

    await asyncio.gather(*(session(u) for u in a.users))
    print(json.dumps({"step": "done", "samples": samples,
                      "errors": len(errors), "error_samples": errors[:5]}),
          flush=True)


def cmd_storm(a):
    asyncio.run(storm(a))


async def storm(a):
    """--concurrency workers log in and QUIT as fast as they can; worker
    i uses users i, i+C, i+2C, ... so no two hold the same maildrop."""
    lat, errors = [], []
    end = time.monotonic() + a.duration
    C = a.concurrency

    async def worker(i):
        mine = a.users[i::C] or a.users
        k = 0
        while time.monotonic() < end:
            user = mine[k % len(mine)]
            k += 1
            t0 = time.monotonic()
            w = None
            try:
                r, w = await aopen(a.host, a.port, a.tls)
                await alogin(r, w, user, a.password)
                lat.append((time.monotonic() - t0) * 1000)
                await acmd(r, w, "QUIT")
            except (OSError, POP3Error) as e:
                errors.append(str(e))
            finally:
                if w:
                    w.close()

    t0 = time.monotonic()
    await asyncio.gather(*(worker(i) for i in range(C)))
    elapsed = time.monotonic() - t0
    out = summary(lat)
    out.update(seconds=elapsed, logins_s=len(lat) / elapsed,
               errors=len(errors), error_samples=errors[:5])
    print(json.dumps(out))


def cmd_sessions(a):
    asyncio.run(sessions(a))


async def sessions(a):
    """--count sessions of one shape by --concurrency workers: login,
    STAT, then with --retr N: RETR and DELE of the first N messages,
    QUIT.  Worker i uses users i, i+C, i+2C, ... so no two hold the same
    maildrop; with --retr each user serves one session (its messages are
    gone after it), without, users are used again in turn.  Reports the
    rate, the session and QUIT latencies and the client's own CPU time,
    which tells whether the client was what limited the rate."""
    lat, quit_lat, errors = [], [], []
    done = [0, 0, 0]                              # sessions, msgs, octets
    C = min(a.concurrency, len(a.users))
    if a.retr and a.count > len(a.users):
        a.count = len(a.users)
    started = [0]

    async def session(user):
        t0 = time.monotonic()
        w = None
        try:
            r, w = await aopen(a.host, a.port, a.tls)
            await alogin(r, w, user, a.password)
            n = int((await acmd(r, w, "STAT")).split()[1])
            msgs = octets = 0
            for i in range(1, min(n, a.retr) + 1):
                await acmd(r, w, "RETR %d" % i)
                body = await r.readuntil(TERM)
                octets += len(body) - 3
                msgs += 1
                await acmd(r, w, "DELE %d" % i)
            t1 = time.monotonic()
            await acmd(r, w, "QUIT")
            t2 = time.monotonic()
            lat.append((t2 - t0) * 1000)
            quit_lat.append((t2 - t1) * 1000)
            done[0] += 1
            done[1] += msgs
            done[2] += octets
        except (OSError, POP3Error, ValueError, IndexError,
                asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
            errors.append("%s: %s" % (user, e))
        finally:
            if w:
                w.close()

    async def worker(i):
        mine = a.users[i::C]
        k = 0
        while started[0] < a.count:
            started[0] += 1
            await session(mine[k % len(mine)])
            k += 1
            if a.retr and k == len(mine):
                break

    c0 = time.process_time()
    t0 = time.monotonic()
    await asyncio.gather(*(worker(i) for i in range(C)))
    elapsed = time.monotonic() - t0
    out = summary(lat)
    out.update(sessions=done[0], msgs=done[1], octets=done[2],
               seconds=elapsed, sessions_s=done[0] / elapsed,
               quit_p50=pct(quit_lat, 50), quit_p99=pct(quit_lat, 99),
               client_cpu=time.process_time() - c0,
               errors=len(errors), error_samples=errors[:5])
    if a.concurrency == 1:
        out["lat_all"] = lat
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=["probe", "retr", "bigbox", "idle",
                                    "noop", "storm", "fetchall",
                                    "sessions"])
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("password")
    p.add_argument("users", nargs="+")
    p.add_argument("--duration", type=float, default=5)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--interval", type=float, default=0.0)
    p.add_argument("--retr", type=int, default=0)
    a = p.parse_args()
    globals()["cmd_" + a.mode](a)


if __name__ == "__main__":
    main()
