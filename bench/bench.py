#!/usr/bin/env python3
"""ngx_mail_pop3_ext_module against Dovecot, side by side, in one run.

Called by bench/run.sh with the temporary directory as argument.  Starts
Redis, our nginx and Dovecot, fills both stores with the same users and
messages, runs the five scenarios of issue 4 and prints one table.
Durations and sizes come from BENCH_* variables (see bench/README.md).
"""

import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from env import Env                                         # noqa: E402
from servers import (RedisServer, Nginx, Dovecot, LogCounter,  # noqa: E402
                     machine_busy, mem, own_cpu)
from store import Stores                                    # noqa: E402


PASSWORD = "bench-secret"


class Bench:
    def __init__(self, tmp, top):
        self.env = Env(tmp, top)
        e = self.env
        self.top = top
        self.p3load = os.path.join(e.bench, "p3load.py")
        self.rows = []            # (section, metric, ours, theirs, fmt)
        self.extra = []           # free text lines under the table
        self.servers = []
        self.t_start = time.time()
        self.loadavg = " ".join(open("/proc/loadavg").read().split()[:3])
        self.cpu0 = (machine_busy(), own_cpu(), time.monotonic())
        self.scenarios = e.cfg("BENCH_SCENARIOS",
                                "1 2 3 4 5 6 7").split()
        self.password = PASSWORD
        self.cluster_lines = []
        self.cpu1 = None

    # -- table

    def row(self, section, metric, ours, theirs=None, fmt="%.1f"):
        self.rows.append((section, metric, ours, theirs, fmt))

    # -- set-up

    def setup(self):
        e = self.env
        # our build, copied: others may rebuild build/ while we run
        module = os.path.join(e.tmp, "ngx_mail_pop3_ext_module.so")
        shutil.copy(os.path.join(self.top, "build",
                                 "ngx_mail_pop3_ext_module.so"), module)
        self.module = module
        self.redis = RedisServer(e).start()
        self.servers.append(self.redis)
        self.nginx = Nginx(e, self.redis, module).start()
        self.servers.insert(0, self.nginx)
        self.dovecot = Dovecot(e)
        self.servers.insert(0, self.dovecot)
        self.store = Stores(e, self.redis, self.dovecot, os.path.join(
            self.top, "ngx_mail_pop3_ext_module",
            "ngx_mail_pop3_ext_model.h"))
        e.log("redis :%d, nginx :%d (tls :%s), dovecot :%d (tls :%d)" % (
            self.redis.port, self.nginx.port,
            self.nginx.tls_port if self.nginx.tls else "n/a",
            self.dovecot.port, self.dovecot.tls_port))

    def populate(self):
        e, st = self.env, self.store
        t0 = time.monotonic()
        self.s1_users = ["s1u%d" % i for i in range(e.icfg(
            "BENCH_S1_USERS", 4000))]
        self.probe_users = ["probe%d" % i for i in range(4)]
        nretr = e.icfg("BENCH_RETR_CLIENTS", 4)
        self.s2_users = {
            size: ["s2s%dc%d" % (size, i) for i in range(nretr)]
            for size in self.retr_sizes()}
        self.big_user = "big"
        self.noop_users = ["noop%d" % i for i in range(
            e.icfg("BENCH_NOOP_SESSIONS", 20))]
        self.storm_users = ["storm%d" % i for i in range(256)]
        n_idle = max(e.icfg("BENCH_IDLE", 10000),
                     e.icfg("BENCH_IDLE_DOVECOT", 1000))
        self.idle_users = ["idle%d" % i for i in range(n_idle)]

        allusers = (self.s1_users + self.probe_users + sum(
            self.s2_users.values(), []) + [self.big_user] + self.noop_users
            + self.storm_users + self.idle_users)
        st.add_users(allusers, PASSWORD)
        for u in allusers:
            st.maildir(u)
        self.redis_mem = {}
        if "1" in self.scenarios:
            self.s1_msgs = e.icfg("BENCH_S1_MSGS", 10)
            d = st.deliver(self.s1_users, self.s1_msgs, 4096)
            self.redis_mem[4096] = (d, len(self.s1_users) * self.s1_msgs)
        if "2" in self.scenarios:
            for size, users in self.s2_users.items():
                d = st.deliver(users, 1, size)
                self.redis_mem[size] = (d, len(users))
        if "3" in self.scenarios:
            n = e.icfg("BENCH_BIG_MSGS", 100000)
            size = e.icfg("BENCH_BIG_SIZE", 1024)
            d = st.deliver([self.big_user], n, size)
            self.redis_mem[size] = (d, n)
        e.log("populated %d users in %.1f s" % (len(allusers),
                                               time.monotonic() - t0))

    def retr_sizes(self):
        return [int(x) for x in self.env.cfg(
            "BENCH_RETR_SIZES", "1048576 26214400").split()]

    # -- helpers

    def load(self, mode, server, users, tls=False, **opts):
        port = server.tls_port if tls else server.port
        argv = [sys.executable, self.p3load, mode, "127.0.0.1", str(port),
                PASSWORD] + list(users)
        if tls:
            argv.append("--tls")
        for k, v in opts.items():
            argv += ["--" + k, str(v)]
        return argv

    def run_load(self, *a, **kw):
        p = self.env.spawn(self.load(*a, **kw), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        out, err = p.communicate()
        if p.returncode != 0 or not out.strip():
            raise RuntimeError("p3load failed: %s" % err[-1000:])
        return json.loads(out.strip().splitlines()[-1])

    def both(self):
        return (("ours", self.nginx), ("dovecot", self.dovecot))

    # -- scenario 1: rabid, full download-and-delete sessions

    def scenario1(self):
        e = self.env
        nrabid = e.icfg("BENCH_RABID", 8)
        target = e.icfg("BENCH_S1_ROUND", max(50, len(self.s1_users) // 4))
        seconds = e.fcfg("BENCH_SECONDS", 10)
        s1set = set(self.s1_users)
        res = {}
        # one rabid per slice of users: a POP3 server that locks the
        # maildrop (ours, RFC 1939) answers a second session of the same
        # user with -ERR [IN-USE], and rabid then sleeps for 10 s
        lists = []
        for i in range(nrabid):
            path = os.path.join(e.tmp, "rabid-users-%d" % i)
            with open(path, "w") as f:
                for u in self.s1_users[i::nrabid]:
                    f.write("%s %s\n" % (u, PASSWORD))
            lists.append(path)

        for name, srv in self.both():
            e.log("scenario 1: %s, rounds of %d sessions, %g s" % (
                name, target, seconds))
            lc = LogCounter(srv.log, ours=(name == "ours"))
            tot = dict(sessions=0, msgs=0, octets=0, seconds=0.0, cpu=0.0,
                       errors=0, all=0, unclean=0)
            lat, probe_err, rabid_err = [], 0, []
            samples = []
            rc = self.redis.client()
            cmds = {}
            rounds = 0
            while tot["seconds"] < seconds and rounds < e.icfg(
                    "BENCH_S1_MAX_ROUNDS", 30):
                rounds += 1
                self.store.refill(self.s1_users, self.s1_msgs, 4096, name)
                lc.poll()
                lc.reset()
                probe = e.spawn(
                    self.load("probe", srv, self.probe_users, duration=600,
                              interval=0.02),
                    stdout=subprocess.PIPE, text=True)
                cs0 = rc.commandstats()
                cpu0 = srv.cpu()
                t0 = time.monotonic()
                rabids = [e.spawn(
                    ["rabid", "-p", "1", "[127.0.0.1]%d" % srv.port, lst],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                    for lst in lists]
                deadline = t0 + e.fcfg("BENCH_S1_ROUND_MAX", 60)
                next_mem = 0
                while True:
                    time.sleep(0.02)
                    lc.poll(want=lambda u: u in s1set)
                    now = time.monotonic()
                    if lc.sessions >= target or now > deadline:
                        break
                    if now > next_mem:
                        samples.append(mem(srv.mem_pids()))
                        next_mem = now + 0.5
                t1 = time.monotonic()
                cpu1 = srv.cpu()
                got = (lc.sessions, lc.msgs, lc.octets)
                for p in rabids:
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except OSError:
                        pass
                for p in rabids:
                    out, err = p.communicate()
                    text = (out + err).decode("latin-1").strip()
                    if text:
                        rabid_err.append(text[:300])
                probe.send_signal(signal.SIGTERM)
                pr = json.loads(probe.communicate()[0].strip())
                probe_err += pr["errors"]
                time.sleep(0.5)
                lc.poll(want=lambda u: u in s1set)
                cs1 = rc.commandstats()
                for k in cs1:
                    cmds[k] = cmds.get(k, 0) + cs1[k] - cs0.get(k, 0)
                tot["sessions"] += got[0]
                tot["msgs"] += got[1]
                tot["octets"] += got[2]
                tot["seconds"] += t1 - t0
                tot["cpu"] += cpu1 - cpu0
                tot["errors"] += lc.errors
                tot["all"] += lc.all
                tot["unclean"] += lc.unclean
                lat += self.probe_lat(pr)
                e.log("  round %d: %d sessions, %d messages in %.2f s" % (
                    rounds, got[0], got[1], t1 - t0))
                if lc.error_samples:
                    e.note("%s: server errors in scenario 1: %s" % (
                        name, " | ".join(lc.error_samples[:3])))
            rc.close()
            lc.close()
            tot.update(rounds=rounds, lat=lat, probe_err=probe_err,
                       rabid_err=rabid_err,
                       rss=max((s[0] for s in samples), default=0),
                       pss=max((s[1] for s in samples), default=0))
            if name == "ours":
                tot["cmds"] = {k: v for k, v in cmds.items()
                               if v and k not in ("info", "llen")}
                tot["redis_used"] = int(self.redis.client().info("memory")[
                    "used_memory"])
            res[name] = tot

        o, d = res["ours"], res["dovecot"]
        sec = "1. rabid: 4 KB messages, download-and-delete"
        for k, label in (("sessions", "sessions/s"), ("msgs", "messages/s")):
            self.row(sec, label, o[k] / o["seconds"], d[k] / d["seconds"])
        self.row(sec, "MB/s retrieved", o["octets"] / o["seconds"] / 1e6,
                 d["octets"] / d["seconds"] / 1e6, "%.2f")
        self.row(sec, "messages per session", o["msgs"] / max(1, o[
            "sessions"]), d["msgs"] / max(1, d["sessions"]), "%.2f")
        self.row(sec, "errors (server log + probe)",
                 o["errors"] + o["probe_err"], d["errors"] + d["probe_err"],
                 "%d")
        for p in (50, 99):
            self.row(sec, "login latency p%d under load (ms)" % p,
                     pctl(o["lat"], p), pctl(d["lat"], p), "%.2f")
        self.row(sec, "CPU s per 1000 sessions",
                 o["cpu"] / max(1, o["sessions"]) * 1000,
                 d["cpu"] / max(1, d["sessions"]) * 1000, "%.3f")
        self.row(sec, "server RSS, peak (MB)", o["rss"] / 1024,
                 d["rss"] / 1024)
        self.row(sec, "server PSS, peak (MB)", o["pss"] / 1024,
                 d["pss"] / 1024)
        self.row(sec, "Redis used_memory (MB)", o["redis_used"] / 2**20,
                 None)
        self.row(sec, "measured s / rounds", "%.1f / %d" % (
            o["seconds"], o["rounds"]), "%.1f / %d" % (d["seconds"],
                                                      d["rounds"]), "%s")
        if o["all"]:
            self.row(sec, "Redis commands per session (INFO)",
                     sum(o["cmds"].values()) / o["all"], None, "%.2f")
        self.redis_round_trips(sec)
        for name in ("ours", "dovecot"):
            if res[name]["rabid_err"]:
                e.note("%s: rabid printed: %s" % (
                    name, " | ".join(res[name]["rabid_err"][:3])))
        self.s1 = res

    def redis_round_trips(self, sec):
        """Exact round trips per session, from MONITOR (which tells what
        a client sent from what a script ran), outside the timed rounds:
        sessions that log in and QUIT, and full sessions of 10 messages."""
        e = self.env
        n = 10
        users = self.s1_users[:n]
        out = {}
        for kind in ("login+QUIT", "10 x (RETR+DELE)"):
            self.store.refill(users, 10 if kind[0] == "1" else 0, 4096,
                              "ours")
            if kind == "login+QUIT":
                # empty the mailboxes first: the probe deletes nothing
                self.run_load("fetchall", self.nginx, users)
            mon = self.redis.client()
            with mon.monitor() as m:
                if kind == "login+QUIT":
                    r = self.run_load("probe", self.nginx, users,
                                      duration=3600, count=n)
                    sessions = r["n"]
                else:
                    r = self.run_load("fetchall", self.nginx, users)
                    sessions = r["sessions"]
                time.sleep(0.3)
                sent, inner = {}, {}
                while m.connection.can_read(timeout=0.5):
                    c = m.next_command()
                    cmd = c["command"].split(" ", 1)[0].lower()
                    if cmd in ("monitor", "info", "script"):
                        continue
                    d = inner if c["client_type"] == "lua" else sent
                    d[cmd] = d.get(cmd, 0) + 1
            mon.close()
            s = max(1, sessions)
            out[kind] = sum(sent.values()) / s
            self.extra.append(
                "Redis per POP3 session, %s (%d sessions, MONITOR): sent "
                "%s; inside the scripts %s" % (
                    kind, sessions, fmt_cmds(sent, s), fmt_cmds(inner, s)))
        self.row(sec, "Redis round trips per login+QUIT",
                 out["login+QUIT"], None, "%.2f")
        self.row(sec, "Redis round trips per 10-message session",
                 out["10 x (RETR+DELE)"], None, "%.2f")

    @staticmethod
    def probe_lat(pr):
        return pr.get("lat_all", []) or [
            x for x in (pr.get("p50"),) if x is not None]

    # -- scenario 2: RETR throughput

    def scenario2(self):
        e = self.env
        secs = e.fcfg("BENCH_RETR_SECONDS", 5)
        sec = "2. RETR throughput (%d clients)" % e.icfg(
            "BENCH_RETR_CLIENTS", 4)
        for size in self.retr_sizes():
            label = "%d MB" % (size >> 20) if size >= 1 << 20 else \
                "%d KB" % (size >> 10)
            for tls in (False, True):
                r = {}
                for name, srv in self.both():
                    if tls and not srv.tls:
                        r[name] = None
                        continue
                    e.log("scenario 2: %s RETR %s%s" % (
                        name, label, " TLS" if tls else ""))
                    cpu0 = srv.cpu()
                    try:
                        r[name] = self.run_load(
                            "retr", srv, self.s2_users[size], tls=tls,
                            duration=secs)
                    except RuntimeError as ex:
                        e.note("%s RETR %s: %s" % (name, label, ex))
                        r[name] = None
                        continue
                    r[name]["cpu"] = srv.cpu() - cpu0
                    if r[name]["errors"]:
                        e.note("%s RETR %s%s errors: %s" % (
                            name, label, " TLS" if tls else "",
                            r[name]["error_samples"]))
                m = "RETR %s %s MB/s" % (label, "TLS" if tls else "plain")
                self.row(sec, m, val(r["ours"], "mb_s"),
                         val(r["dovecot"], "mb_s"))
                self.row(sec, "  CPU s per GB sent",
                         cpu_gb(r["ours"]), cpu_gb(r["dovecot"]), "%.2f")
                errs = [val(r[n], "errors") for n in ("ours", "dovecot")]
                if any(errs):
                    self.row(sec, "  errors", errs[0], errs[1], "%d")
            self.row(sec, "redis-benchmark GET %s MB/s" % label,
                     self.redis_benchmark(size), None)

    def redis_benchmark(self, size):
        rc = self.redis.client()
        rc.call("SET", "key:__rand_int__", b"x" * size)
        n = max(20, int(2e9 / size))
        p = self.env.spawn(
            ["redis-benchmark", "-h", "127.0.0.1", "-p",
             str(self.redis.port), "-t", "get", "-d", str(size), "-n",
             str(n), "-c", str(self.env.icfg("BENCH_RETR_CLIENTS", 4)),
             "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        p.stdout, p.stderr = p.communicate()
        rc.call("DEL", "key:__rand_int__")
        rc.close()
        m = re.search(r"GET: ([\d.]+) requests per second",
                      p.stdout.replace("\r", "\n"))
        if not m:
            self.env.note("redis-benchmark: %s" % (p.stdout + p.stderr)[
                -300:])
            return None
        return float(m.group(1)) * size / 1e6

    # -- scenario 3: a big maildrop

    def scenario3(self):
        e = self.env
        n = e.icfg("BENCH_BIG_MSGS", 100000)
        sec = "3. big maildrop (%d messages)" % n
        r = {}
        rc = self.redis.client()
        rc.call("CONFIG", "SET", "slowlog-log-slower-than", "2000")
        rc.call("SLOWLOG", "RESET")
        for name, srv in self.both():
            e.log("scenario 3: %s" % name)
            r[name] = self.run_load("bigbox", srv, [self.big_user],
                                    repeat=e.icfg("BENCH_BIG_REPEAT", 5))
            if r[name]["errors"]:
                e.note("%s big maildrop errors: %s" % (name,
                                                       r[name]["errors"]))
        # what of ours' login is Redis's own time: the lock script's LRANGE
        slow = [x[2] / 1000.0 for x in rc.call("SLOWLOG", "GET", "100")
                if x[3] and x[3][0].upper() in (b"EVALSHA", b"EVAL")]
        rc.call("CONFIG", "SET", "slowlog-log-slower-than", "10000")
        rc.close()
        for key, label in (("login_stat", "login+STAT"), ("list", "LIST"),
                           ("uidl", "UIDL")):
            self.row(sec, "%s, first (ms)" % label, first(r["ours"][key]),
                     first(r["dovecot"][key]))
            self.row(sec, "%s, median of the rest (ms)" % label,
                     rest_median(r["ours"][key]),
                     rest_median(r["dovecot"][key]))
        self.row(sec, "  of which Redis runs the lock script (ms)",
                 statistics.median(slow) if slow else None, None)
        self.row(sec, "UIDL listing octets", r["ours"]["uidl_octets"],
                 r["dovecot"]["uidl_octets"], "%d")

    # -- scenario 4: idle connections

    def scenario4(self):
        e = self.env
        sec = "4. idle connections: memory per connection"
        n_ours = e.icfg("BENCH_IDLE", 10000)
        n_dove = e.icfg("BENCH_IDLE_DOVECOT", 1000)
        n_tls = e.icfg("BENCH_IDLE_TLS", 1000)
        # Dovecot's defaults allow 100 login processes of one client
        # each: many connections need its documented high-performance
        # login mode and higher limits
        big = max(n_dove, n_tls) + 100
        dovecot_extra = """
# scenario 4 only: room for many connections
default_client_limit = %d
service pop3-login {
  service_count = 0
  process_min_avail = %d
  client_limit = %d
}
service pop3 {
  process_limit = %d
}
""" % (3 * big + 1000, os.cpu_count(), big, big)
        self.extra.append(
            "Scenario 4 runs Dovecot with pop3-login in high-performance "
            "mode (service_count=0, process_min_avail=%d, client_limit=%d),"
            " pop3 process_limit=%d and default_client_limit=%d." % (
                os.cpu_count(), big, big, 3 * big + 1000))
        r = {}
        for name, srv in self.both():
            for tls in (False, True):
                n = n_tls if tls else (n_ours if name == "ours" else n_dove)
                if tls and not srv.tls:
                    r[(name, tls)] = None
                    continue
                e.log("scenario 4: %s, %d %s connections" % (
                    name, n, "TLS" if tls else "plaintext"))
                # fresh server processes for each measurement
                if name == "ours":
                    srv.restart()
                else:
                    srv.restart(dovecot_extra)
                r[(name, tls)] = self.idle(srv, n, tls)
        for tls in (False, True):
            o, d = r[("ours", tls)], r[("dovecot", tls)]
            kind = "TLS" if tls else "plaintext"
            self.row(sec, "connections held, %s" % kind, val(o, "open"),
                     val(d, "open"), "%d")
            for step in ("connected", "loggedin"):
                self.row(sec, "KB/conn %s, %s (PSS)" % (
                    "before login" if step == "connected" else
                    "after login", kind),
                         val(o, step + "_pss"), val(d, step + "_pss"))
                self.row(sec, "KB/conn %s, %s (RSS)" % (
                    "before login" if step == "connected" else
                    "after login", kind),
                         val(o, step + "_rss"), val(d, step + "_rss"))
            self.row(sec, "login of all, %s (s)" % kind,
                     val(o, "login_s"), val(d, "login_s"), "%.2f")
            errs = [val(x, "errors") for x in (o, d)]
            if any(errs):
                self.row(sec, "errors, %s" % kind, errs[0], errs[1], "%d")

    def idle(self, srv, n, tls):
        e = self.env
        ufile = os.path.join(e.tmp, "idle-users")
        with open(ufile, "w") as f:
            f.write("\n".join(self.idle_users[:n]) + "\n")
        time.sleep(0.5)
        base = mem(srv.mem_pids())
        p = e.spawn(self.load("idle", srv, [ufile], tls=tls, count=n,
                              concurrency=200),
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        out = {"errors": 0}
        try:
            step = json.loads(p.stdout.readline())
            time.sleep(1)
            m1 = mem(srv.mem_pids())
            out["open"] = step["open"]
            out["errors"] += step["errors"]
            if step["errors"]:
                e.note("%s idle %s: %s" % (srv.name, "TLS" if tls else "",
                                           step["error_samples"]))
            p.stdin.write("login\n")
            p.stdin.flush()
            step = json.loads(p.stdout.readline())
            time.sleep(1)
            m2 = mem(srv.mem_pids())
            out["errors"] += step["errors"]
            out["login_s"] = step["seconds"]
            if step["errors"]:
                e.note("%s idle login %s: %s" % (
                    srv.name, "TLS" if tls else "", step["error_samples"]))
            k = max(1, out["open"])
            out["connected_rss"] = (m1[0] - base[0]) / k
            out["connected_pss"] = (m1[1] - base[1]) / k
            out["loggedin_rss"] = (m2[0] - base[0]) / k
            out["loggedin_pss"] = (m2[1] - base[1]) / k
            p.stdin.write("quit\n")
            p.stdin.flush()
            p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        time.sleep(1)
        return out

    # -- scenario 5: login storm while other sessions NOOP

    def scenario5(self):
        e = self.env
        sec = "5. login storm (SHA512-CRYPT) beside NOOP sessions"
        storm_s = e.fcfg("BENCH_STORM_SECONDS", 5)
        quiet = 2.0
        r = {}
        rc = self.redis.client()
        for name, srv in self.both():
            e.log("scenario 5: %s" % name)
            # The measuring client runs at a higher priority than the
            # storm's: with a fast server the storm client alone takes a
            # core, and the NOOP samples would time the client's wait
            # for the CPU, not the server.  Both servers get the same.
            noop = e.spawn(
                ["nice", "-n", "-10"]
                + self.load("noop", srv, self.noop_users,
                            duration=quiet + storm_s + 30, interval=0.01),
                stdout=subprocess.PIPE, text=True)
            ready = json.loads(noop.stdout.readline())
            assert ready["step"] == "ready", ready
            time.sleep(quiet)
            cpu0 = srv.cpu()
            cs0 = rc.commandstats()
            w0 = time.time()
            st = self.run_load("storm", srv, self.storm_users,
                               duration=storm_s,
                               concurrency=e.icfg("BENCH_STORM_CLIENTS", 32))
            w1 = time.time()
            cpu1 = srv.cpu()
            cs1 = rc.commandstats()
            time.sleep(0.5)
            noop.send_signal(signal.SIGTERM)
            done = json.loads(noop.communicate()[0].strip().splitlines()[-1])
            base = [ms for t, ms in done["samples"] if t < w0]
            during = [ms for t, ms in done["samples"] if w0 <= t <= w1]
            r[name] = dict(storm=st, base=base, during=during,
                           noop_errors=done["errors"], cpu=cpu1 - cpu0)
            if name == "ours":
                r["rt"] = None
                n = max(1, st["n"])
                cmds = {k: cs1.get(k, 0) - cs0.get(k, 0) for k in cs1}
                cmds = {k: v for k, v in cmds.items() if v and k != "info"}
                r["rt"] = sum(cmds.values()) / n
            if st["errors"] or done["errors"]:
                e.note("%s storm errors: %s %s" % (
                    name, st["error_samples"], done.get("error_samples")))
        rc.close()
        o, d = r["ours"], r["dovecot"]
        self.row(sec, "storm logins/s", o["storm"]["logins_s"],
                 d["storm"]["logins_s"])
        self.row(sec, "storm login p99 (ms)", o["storm"]["p99"],
                 d["storm"]["p99"], "%.2f")
        self.row(sec, "CPU s per 1000 storm logins",
                 o["cpu"] / max(1, o["storm"]["n"]) * 1000,
                 d["cpu"] / max(1, d["storm"]["n"]) * 1000, "%.3f")
        for p in (50, 99):
            self.row(sec, "NOOP p%d before the storm (ms)" % p,
                     pctl(o["base"], p), pctl(d["base"], p), "%.2f")
        for p in (50, 99):
            self.row(sec, "NOOP p%d during the storm (ms)" % p,
                     pctl(o["during"], p), pctl(d["during"], p), "%.2f")
        self.row(sec, "NOOP max during the storm (ms)",
                 max(o["during"], default=None),
                 max(d["during"], default=None), "%.2f")
        if r.get("rt") is not None:
            self.row(sec, "Redis commands per login (INFO)", r["rt"],
                     None, "%.2f")
        self.row(sec, "errors (storm + NOOP sessions)",
                 o["storm"]["errors"] + o["noop_errors"],
                 d["storm"]["errors"] + d["noop_errors"], "%d")

    # -- scenario 6: Redis Cluster against one Redis (bench/cluster.py)

    def scenario6(self):
        from cluster import ClusterScenario
        c = ClusterScenario(self)
        try:
            c.run()
        finally:
            self.cluster_lines = c.table()

    # -- scenario 7: delivery over LMTP and by pop3ext (bench/lmtp.py)

    def scenario7(self):
        from lmtp import LmtpScenario
        LmtpScenario(self).run()

    def redis_memory(self):
        sec = "Redis memory per stored message"
        for size in sorted(self.redis_mem):
            d, n = self.redis_mem[size]
            label = "%d MB" % (size >> 20) if size >= 1 << 20 else \
                "%d KB" % (size >> 10)
            self.row(sec, "%s message: bytes (overhead)" % label,
                     "%.0f (%+.0f)" % (d / n, d / n - size), None, "%s")

    # -- output

    def header(self):
        def version(argv, rx=None):
            try:
                p = subprocess.run(argv, capture_output=True, text=True)
                s = (p.stdout + p.stderr).strip().splitlines()[0]
                return s
            except (OSError, IndexError):
                return "?"
        cpu = "?"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        return [
            "POP3 benchmark: ngx_mail_pop3_ext_module (ours) vs Dovecot",
            "date:    %s" % time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "machine: %s CPUs (nproc), %s, %s, %.1f GB RAM" % (
                os.cpu_count(), cpu, platform.release(),
                os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                / 2**30),
            "nginx:   %s; module %s" % (version(["nginx", "-v"]),
                                        self.module_version()),
            "dovecot: %s" % version(["dovecot", "--version"]),
            "redis:   %s" % version(["redis-server", "--version"]),
            "rabid:   postal %s" % self.pkg_version("postal"),
            "load average at start: %s (other work on the machine adds "
            "noise)" % self.loadavg,
        ]

    def module_version(self):
        try:
            return subprocess.run(
                ["git", "-C", self.top, "describe", "--always", "--dirty"],
                capture_output=True, text=True).stdout.strip()
        except OSError:
            return "?"

    @staticmethod
    def pkg_version(p):
        try:
            return subprocess.run(["dpkg-query", "-W", "-f=${Version}", p],
                                  capture_output=True, text=True).stdout
        except OSError:
            return "?"

    def table(self):
        lines = self.header()
        lines.append("settings: " + " ".join(
            "%s=%s" % (k, v) for k, v in sorted(os.environ.items())
            if k.startswith("BENCH_")))
        lines.append("")
        w = max([len(r[1]) for r in self.rows] + [30]) + 2
        head = "%-*s %14s %14s %9s" % (w, "metric", "ours", "Dovecot",
                                       "ours/Dov")
        section = None
        rows = sorted(self.rows, key=lambda r: r[0][0] if r[0][0].isdigit()
                      else "9")
        lines.append(head)
        lines.append("-" * len(head))
        for sec, metric, o, d, fmt in rows:
            if sec != section:
                lines.append(sec)
                section = sec
            ratio = ""
            if isinstance(o, (int, float)) and isinstance(d, (int, float)) \
                    and d:
                ratio = "%.2f" % (o / d)
            lines.append("%-*s %14s %14s %9s" % (w, "  " + metric,
                                                 fmtv(fmt, o),
                                                 fmtv(fmt, d), ratio))
        lines.append("")
        if self.cluster_lines:
            lines += self.cluster_lines + [""]
        lines += self.extra
        if self.env.notes:
            lines.append("")
            lines.append("notes:")
            lines += ["- " + n for n in self.env.notes]
        lines.append("")
        lines.append("run time: %.0f s; load average at the end: %s" % (
            time.time() - self.t_start, " ".join(
                open("/proc/loadavg").read().split()[:3])))
        if self.cpu1:
            lines.append(
                "other work on the machine during the run: %.2f of %d "
                "CPUs on average (the machine's busy time, /proc/stat, "
                "less all the benchmark ran)" % (self.cpu1, os.cpu_count()))
        return "\n".join(lines) + "\n"

    def run(self):
        try:
            self.setup()
            self.populate()
            self.dovecot.start()
            # 4 last: it restarts both servers with other settings
            order = sorted(self.scenarios, key=lambda s: s == "4")
            for s in order:
                fn = getattr(self, "scenario" + s)
                try:
                    fn()
                except Exception as ex:                  # noqa: BLE001
                    import traceback
                    traceback.print_exc()
                    self.env.note("scenario %s failed: %r" % (s, ex))
            self.redis_memory()
            self.scan_logs()
        finally:
            self.env.cleanup(self.servers)
            b0, o0, t0 = self.cpu0
            self.cpu1 = ((machine_busy() - b0) - (own_cpu() - o0)) / max(
                1e-9, time.monotonic() - t0)
        text = self.table()
        sys.stdout.write("\n" + text)
        out = self.env.cfg("BENCH_OUT", os.path.join(
            self.env.bench, "results", "latest.txt"))
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w") as f:
            f.write(text)
        self.env.log("table written to %s" % out)

    def scan_logs(self):
        """Crashes and alerts anywhere in the run."""
        for name, path, rx in (
                ("nginx", self.nginx.log,
                 rb"\[(alert|emerg|crit)\]|exited on signal"),
                ("dovecot", self.dovecot.log, rb"(Panic|Fatal):")):
            try:
                data = open(path, "rb").read()
            except OSError:
                continue
            hits = [ln for ln in data.splitlines() if re.search(rx, ln)]
            if hits:
                self.env.note("%s log: %d alert/crash lines, e.g. %s" % (
                    name, len(hits), hits[0].decode("utf-8", "replace")[
                        :300]))


def fmt_cmds(cmds, n):
    return ", ".join("%s %.2f" % (k.upper(), v / n) for k, v in sorted(
        cmds.items(), key=lambda kv: -kv[1])) or "none"


def pctl(values, p):
    if not values:
        return None
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def first(v):
    return v[0] if v else None


def rest_median(v):
    return statistics.median(v[1:]) if len(v) > 1 else None


def val(d, k):
    if not d:
        return None
    return d.get(k)


def cpu_gb(r):
    if not r or not r.get("octets"):
        return None
    return r["cpu"] / (r["octets"] / 1e9)


def fmtv(fmt, v):
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    try:
        return fmt % v
    except TypeError:
        return str(v)


def main():
    tmp = sys.argv[1]
    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, term)
    b = Bench(tmp, top)
    try:
        b.run()
    except KeyboardInterrupt:
        Env.log("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
