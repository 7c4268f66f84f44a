"""Scenario 6: the module on a Redis Cluster next to one Redis, in one run.

Two stores, started here and stopped at the end:

  standalone  one redis-server with AOF (appendfsync everysec)
  cluster     six redis-servers with AOF and --cluster-enabled, made into
              3 masters + 3 replicas by `redis-cli --cluster create`

One nginx (the module, defaults but pop3_ext_auth_block_addr 0) serves
both on separate ports, and a third port on the cluster with wait=1; two
more reach the standalone Redis through rtproxy.py, once with a delay on
what nginx sends and once without, to count the round trips a session
waits for.  Users are written with redis-py
(python3-redis), mail is delivered by pop3ext -r SPEC, as an MTA would.
The load is p3load.py: sessions of two shapes (login+STAT+QUIT, and
login+STAT+10 x (RETR+DELE)+QUIT) and RETR of 1 MB; the rounds of the
stores alternate, so that a change in the machine's other load hits both.

Measured per session: rate, nginx CPU, Redis CPU (masters, and replicas
apart), Redis commands (INFO commandstats of every master, the commands
scripts run included), requests sent (MONITOR), round trips waited
(rtproxy); Redis memory per message and per user (used_memory of every
master, less the buffers that come and go with the traffic), on stores
still nearly empty, after a warm-up, so that a big main hash table
doubling or a fresh server's first scripts land in no delta.
"""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

import redis
from redis.cluster import ClusterNode, RedisCluster

from servers import (RedisClient, Server, descendants, machine_busy,
                     own_cpu, tree_cpu, wait_port)
from store import make_message


def port_free(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def cluster_ports(n):
    """n ports P, each with its cluster bus port P + 10000 also free."""
    out = []
    while len(out) < n:
        p = random.randint(20000, 29999)
        if p not in out and port_free(p) and port_free(p + 10000):
            out.append(p)
    return out


def sched_cpu(pids):
    """CPU seconds of pids, all their threads, from the scheduler's
    nanosecond count (se.sum_exec_runtime, in ms): /proc/PID/stat counts
    in ticks of 10 ms, too coarse for a few ms of Redis per phase.  None
    where the kernel does not offer it."""
    total = 0.0
    for pid in pids:
        try:
            tids = os.listdir("/proc/%d/task" % pid)
        except OSError:
            continue
        for t in tids:
            try:
                with open("/proc/%d/task/%s/sched" % (pid, t)) as f:
                    for line in f:
                        if line.startswith("se.sum_exec_runtime"):
                            total += float(line.split(":")[1])
                            break
            except (OSError, ValueError):
                pass
    return total / 1000.0


PRECISE = os.path.exists("/proc/self/sched")


def cpu_of(root, tree):
    """CPU seconds of a process (its threads), or of its process tree."""
    pids = descendants(root) if tree else [root]
    return sched_cpu(pids) if PRECISE else tree_cpu(root)


def cmdstats(client):
    """{command: (calls, rejected_calls)} from INFO commandstats."""
    out = {}
    for k, v in client.info("commandstats").items():
        if k.startswith("cmdstat_"):
            out[k[8:]] = (int(v.get("calls", 0)),
                          int(v.get("rejected_calls", 0)))
    return out


class RedisNode(Server):
    """A redis-server with AOF (everysec, the default), optionally a
    cluster node; RDB snapshots off, so that no fork lands in a measured
    phase (AOF is the persistence under test)."""

    name = "redis-node"
    stop_signal = signal.SIGTERM

    def __init__(self, env, port, cluster):
        self.env = env
        self.port = port
        self.cluster = cluster
        self.addr = "127.0.0.1:%d" % port
        self.dir = os.path.join(env.tmp, "redis-%d" % port)
        os.makedirs(self.dir)

    def start(self):
        argv = ["redis-server", "--bind", "127.0.0.1", "--port",
                str(self.port), "--appendonly", "yes", "--save", "",
                "--dir", self.dir,
                "--logfile", os.path.join(self.dir, "redis.log"),
                "--daemonize", "no", "--maxclients", "2000"]
        if self.cluster:
            argv += ["--cluster-enabled", "yes", "--cluster-node-timeout",
                     "1500", "--cluster-config-file", "nodes.conf"]
        self.proc = self.env.spawn(argv)
        wait_port(self.port, self.proc, what="redis :%d" % self.port)
        self.c = RedisClient("127.0.0.1", self.port)
        return self

    def cpu(self):
        """Every thread (AOF fsync runs in one); a fork (AOF rewrite) is
        counted apart (Store.forks)."""
        return cpu_of(self.proc.pid, False)


class Cluster:
    def __init__(self, env, masters=3, replicas=1):
        self.env = env
        self.nodes = [RedisNode(env, p, True) for p in cluster_ports(
            masters * (1 + replicas))]
        self.replicas_per_master = replicas

    def start(self):
        for n in self.nodes:
            n.start()
        p = subprocess.run(
            ["redis-cli", "--cluster", "create"] + [n.addr for n in
                                                    self.nodes]
            + ["--cluster-replicas", str(self.replicas_per_master),
               "--cluster-yes"], capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError("redis-cli --cluster create: %s" %
                               (p.stdout + p.stderr)[-500:])
        self.wait_ok()
        return self

    def wait_ok(self, timeout=30):
        """cluster_state:ok on every node, every master with its
        replicas linked."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                if all(n.c.cluster("info")["cluster_state"] == "ok"
                       for n in self.nodes) and self.roles_ok():
                    return
            except redis.RedisError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the cluster did not reach cluster_state:ok")

    def roles_ok(self):
        self.masters, self.replicas = [], []
        for n in self.nodes:
            info = n.c.info("replication")
            if info["role"] == "master":
                if info.get("connected_slaves", 0) < self.replicas_per_master:
                    return False
                self.masters.append(n)
            else:
                if info.get("master_link_status") != "up":
                    return False
                self.replicas.append(n)
        return len(self.replicas) == len(self.nodes) - len(self.masters)

    def synced(self, timeout=10):
        """Waits until every replica has all its master sent."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            offs = {}
            for n in self.masters:
                offs[n.port] = n.c.info("replication")["master_repl_offset"]
            if all(r.c.info("replication").get("slave_repl_offset")
                   == offs.get(int(r.c.info("replication")["master_port"]))
                   for r in self.replicas):
                return True
            time.sleep(0.05)
        return False

    def spec(self, seeds, extra=""):
        """The specification with `seeds` seed nodes (all masters here);
        another order or number of seeds names another Redis for nginx,
        which lets one nginx use it with other parameters."""
        return " ".join(n.addr for n in seeds) + " cluster" + (
            " " + extra if extra else "")

    def client(self):
        return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", n.port)
                                           for n in self.masters],
                            socket_timeout=120)

    def stop(self):
        for n in self.nodes:
            n.stop()


class Store:
    """What a measurement needs of one store: its masters and replicas,
    the client to write users with, and pop3ext's specification."""

    def __init__(self, name, masters, replicas, spec, writer):
        self.name = name
        self.masters = masters
        self.replicas = replicas
        self.spec = spec
        self.writer = writer                  # redis-py client, writes

    def cpu(self):
        return (sum(n.cpu() for n in self.masters),
                sum(n.cpu() for n in self.replicas))

    def stats(self):
        out = {}
        for n in self.masters:
            for k, (c, rej) in cmdstats(n.c).items():
                a, b = out.get(k, (0, 0))
                out[k] = (a + c, b + rej)
        return out

    def used_memory(self):
        """used_memory of the masters without the buffers that come and
        go with the traffic: clients' query and output buffers, the
        replication buffers (the backlog fills with the first megabyte
        written), the AOF buffer and the cluster bus links."""
        total = 0
        for n in self.masters:
            i = n.c.info("memory")

            def f(k):
                return int(i.get(k, 0))
            repl = f("mem_total_replication_buffers") \
                if "mem_total_replication_buffers" in i else \
                f("mem_replication_backlog") + f("mem_clients_slaves")
            total += f("used_memory") - f("mem_clients_normal") - repl \
                - f("mem_aof_buffer") - f("mem_cluster_links")
        return total

    def forks(self):
        return sum(int(n.c.info("stats")["total_forks"])
                   for n in self.masters + self.replicas)

    def dbsizes(self):
        return [n.c.dbsize() for n in self.masters]


class MultiNginx(Server):
    """One nginx, one plaintext mail server per store; the module's
    directives at their defaults but for the address block (all the
    load comes from 127.0.0.1)."""

    name = "nginx-cluster"
    stop_signal = signal.SIGTERM

    def __init__(self, env, module, specs, name="nginx-cluster"):
        self.env = env
        self.module = module
        self.dir = os.path.join(env.tmp, name)
        os.makedirs(os.path.join(self.dir, "logs"))
        self.log = os.path.join(self.dir, "error.log")
        self.ports = {}
        self.specs = specs
        for k in specs:
            self.ports[k] = socket_port()

    def conf(self):
        e = self.env
        servers = "".join("""
    server {
        listen          127.0.0.1:%d;
        protocol        pop3_ext;
        pop3_ext_redis  %s;
    }
""" % (self.ports[k], spec) for k, spec in self.specs.items())
        return """
load_module %s;
load_module %s;

worker_processes      %s;
worker_rlimit_nofile  %d;
%s
daemon                off;
pid                   %s/nginx.pid;
error_log             %s info;

events {
    worker_connections  %d;
}

mail {
    auth_http  127.0.0.1:1/unused;

    # every login comes from 127.0.0.1, and attempts count against the
    # address before their check: 0 turns the refusal off, the counting
    # (and its Redis commands) stays
    pop3_ext_auth_block_addr  0;
%s}
""" % (e.mail_module, self.module, e.cfg("BENCH_NGINX_WORKERS", "2"),
       e.nofile, e.cfg("BENCH_NGINX_EXTRA", ""), self.dir, self.log,
       e.nofile // 2, servers)

    def start(self):
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(self.conf())
        self.proc = self.env.spawn(
            ["nginx", "-p", self.dir, "-c", conf, "-e", self.log],
            stderr=open(os.path.join(self.dir, "stderr.log"), "w"))
        for p in self.ports.values():
            wait_port(p, self.proc, what="nginx")
        time.sleep(0.2)
        return self

    def cpu(self):
        return cpu_of(self.proc.pid, True)

    def workers(self):
        return [p for p in descendants(self.proc.pid) if p != self.proc.pid]


def socket_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class ClusterScenario:
    SEC = "6. Redis Cluster (3 masters + 3 replicas) against one Redis"

    def __init__(self, bench):
        self.b = bench
        self.env = bench.env
        self.rows = []                # (metric, sa, cl, clw, fmt)
        self.notes = []
        self.servers = []
        e = self.env
        self.conc = e.icfg("BENCH_CL_CONCURRENCY", 12)
        self.stat_n = e.icfg("BENCH_CL_STAT_SESSIONS", 1500)
        self.retr_n = e.icfg("BENCH_CL_RETR_SESSIONS", 600)
        self.rounds = e.icfg("BENCH_CL_ROUNDS", 3)
        self.retr_secs = e.fcfg("BENCH_CL_RETR_SECONDS", 2)
        self.delay = e.fcfg("BENCH_CL_DELAY_MS", 20)
        self.password = bench.password
        self.extra = []
        self.secret = "{PLAIN}" + self.password

    def row(self, metric, sa, cl, clw=None, fmt="%.1f"):
        self.rows.append((metric, sa, cl, clw, fmt))

    # -- set-up

    def start(self):
        e = self.env
        t0 = time.monotonic()
        self.pop3ext = os.path.join(e.tmp, "pop3ext")
        shutil.copy(os.path.join(self.b.top, "build", "pop3ext"),
                    self.pop3ext)
        self.single = RedisNode(e, cluster_ports(1)[0], False).start()
        self.servers.append(self.single)
        self.cluster = Cluster(e, replicas=e.icfg("BENCH_CL_REPLICAS", 1))
        self.servers.append(self.cluster)
        self.cluster.start()
        m = self.cluster.masters
        # the standalone Redis through rtproxy.py twice: without delay,
        # and with, so that the relay's own latency cancels out
        self.proxies = {}
        for k, d in (("sap", 0), ("sad", self.delay)):
            port = socket_port()
            p = e.spawn([sys.executable, os.path.join(e.bench, "rtproxy.py"),
                         str(port), str(self.single.port), str(d)],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        text=True)
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError("rtproxy.py did not start")
            self.proxies[k] = (p, port)

        self.sa = Store("standalone", [self.single], [], self.single.addr,
                        self.single.c)
        self.cl = Store("cluster", m, self.cluster.replicas,
                        self.cluster.spec(m[:2]), self.cluster.client())
        specs = {"sa": self.sa.spec, "cl": self.cl.spec,
                 "clw": self.cluster.spec(m[1:], "wait=1")}
        for k, (_, port) in self.proxies.items():
            specs[k] = "127.0.0.1:%d" % port
        self.nginx = MultiNginx(e, self.b.module, specs).start()
        self.servers.insert(0, self.nginx)
        e.log("scenario 6: standalone :%d, cluster %s, nginx %s, up in "
              "%.1f s" % (self.single.port, " ".join(
                  "%s(%s)" % (n.port, "M" if n in m else "R")
                  for n in self.cluster.nodes),
                  " ".join("%s :%d" % kv for kv in self.nginx.ports.items()),
                  time.monotonic() - t0))

    def stop(self):
        for s in self.servers:
            try:
                s.stop()
            except Exception as ex:                      # noqa: BLE001
                self.env.log("stopping %s: %s" % (getattr(s, "name", s),
                                                   ex))
        for p, _ in getattr(self, "proxies", {}).values():
            try:
                p.terminate()
                p.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass

    def run_load(self, mode, port, users, **opts):
        argv = [sys.executable, os.path.join(self.env.bench, "p3load.py"),
                mode, "127.0.0.1", str(port), self.password] + list(users)
        for k, v in opts.items():
            argv += ["--" + k, str(v)]
        p = self.env.spawn(argv, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        out, err = p.communicate()
        if p.returncode != 0 or not out.strip():
            raise RuntimeError("p3load %s failed: %s" % (mode, err[-1000:]))
        return json.loads(out.strip().splitlines()[-1])

    # -- writing users and mail

    def add_users(self, store, names, secret):
        key = self.b.store.m["P3X_USER_PREFIX"] + "%s" + \
            self.b.store.m["P3X_USER_SUFFIX"]
        field = self.b.store.m["P3X_FIELD_SECRET"]
        for i in range(0, len(names), 1000):
            p = store.writer.pipeline(transaction=False)
            for n in names[i:i + 1000]:
                p.hset(key % n, field, secret)
            p.execute()

    def deliver(self, store, users, count, size, spec=None):
        """`count` messages of `size` octets into each user's mailbox,
        with pop3ext deliver (one process per message, all the users as
        its recipients); returns the seconds it took."""
        path = os.path.join(self.env.tmp, "msg-%d" % size)
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(make_message(size)[0])
        t0 = time.monotonic()
        for _ in range(count):
            for i in range(0, len(users), 2000):
                with open(path, "rb") as f:
                    p = subprocess.run(
                        [self.pop3ext, "-r", spec or store.spec, "deliver"]
                        + users[i:i + 2000], stdin=f,
                        capture_output=True, text=True, timeout=300)
                if p.returncode != 0:
                    raise RuntimeError("pop3ext deliver (%s): status %d: %s"
                                       % (store.name, p.returncode,
                                          p.stderr.strip()[:300]))
        return time.monotonic() - t0

    def settle(self):
        """Replicas have everything, nothing is being forked."""
        self.cluster.synced()
        for n in [self.single] + self.cluster.nodes:
            for _ in range(100):
                p = n.c.info("persistence")
                if not p.get("aof_rewrite_in_progress") and \
                        not p.get("aof_rewrite_scheduled"):
                    break
                time.sleep(0.1)
        time.sleep(0.3)

    # -- memory

    def memory(self):
        e = self.env
        nusers = e.icfg("BENCH_CL_MEM_USERS", 2000)
        sizes = [(1024, 200), (10240, 100), (102400, 20)]
        per = 10
        mem = {}
        # the first scripts a fresh Redis runs leave about 110 KB that
        # stays (30 deliveries of 1 KB added 160 KB here), once per
        # server: three times in the cluster.  It is not mail.
        warm = ["warm%d" % i for i in range(30)]
        for st in (self.sa, self.cl):
            self.add_users(st, warm, self.secret)
            for size, _ in sizes:
                self.deliver(st, warm, 1, size)
        for st in (self.sa, self.cl):
            names = ["mu%d" % i for i in range(nusers)]
            self.settle()
            m0 = st.used_memory()
            self.add_users(st, names, self.b.store.secret)
            self.settle()
            m1 = st.used_memory()
            mem[(st.name, "user")] = (m1 - m0) / nusers
            for size, n in sizes:
                users = ["m%dk%d" % (size >> 10, i) for i in range(n)]
                self.add_users(st, users, self.secret)
                self.settle()
                m0 = st.used_memory()
                secs = self.deliver(st, users, per, size)
                self.settle()
                m1 = st.used_memory()
                mem[(st.name, size)] = (m1 - m0) / (n * per)
                mem[(st.name, size, "s")] = n * per / secs
        self.row("Redis memory per user record (bytes)",
                 mem[("standalone", "user")], mem[("cluster", "user")],
                 fmt="%.0f")
        for size, n in sizes:
            self.row("Redis memory per %d KB message (bytes)" % (
                size >> 10), mem[("standalone", size)],
                mem[("cluster", size)], fmt="%.0f")
            self.row("  of which overhead beyond the message", mem[(
                "standalone", size)] - size, mem[("cluster", size)] - size,
                fmt="%+.0f")
        self.row("pop3ext deliver, 1 KB messages/s (one process)",
                 mem[("standalone", 1024, "s")], mem[("cluster", 1024, "s")])
        self.mem = mem

    # -- the load

    def provision(self):
        e = self.env
        t0 = time.monotonic()
        nstat = e.icfg("BENCH_CL_STAT_USERS", 64)
        nretr = self.retr_n * self.rounds
        self.users = {}
        for key, st in (("sa", self.sa), ("cl", self.cl)):
            stat = ["%sst%d" % (key, i) for i in range(nstat)]
            retr = ["%srt%d" % (key, i) for i in range(nretr)]
            big = ["%sbig%d" % (key, i) for i in range(
                e.icfg("BENCH_RETR_CLIENTS", 4))]
            self.users[key] = dict(stat=stat, retr=retr, big=big)
            self.add_users(st, stat + retr + big, self.secret)
            self.deliver(st, stat + retr, 10, 4096)
            self.deliver(st, big, 1, 1 << 20)
        # wait=1 has its own mailboxes on the cluster
        if self.cluster.replicas:
            retr = ["clwrt%d" % i for i in range(nretr)]
            self.users["clw"] = dict(retr=retr)
            self.add_users(self.cl, retr, self.secret)
            self.deliver(self.cl, retr, 10, 4096)
        self.settle()
        # the users are spread over the masters: keys per master, and one
        # user's keys share a slot (CLUSTER KEYSLOT)
        sizes = self.cl.dbsizes()
        u = self.users["cl"]["stat"][0]
        m = self.b.store.m
        slots = {self.cluster.masters[0].c.cluster("keyslot", k) for k in (
            m["P3X_USER_PREFIX"] + u + m["P3X_USER_SUFFIX"],
            m["P3X_MBOX_PREFIX"] + u + m["P3X_INDEX_SUFFIX"])}
        self.notes.append(
            "Scenario 6: keys per cluster master after provisioning: %s "
            "(CLUSTER KEYSLOT of pop3:user:{%s} and pop3:mbox:{%s}:index: "
            "%s)" % (" / ".join(str(s) for s in sizes), u, u,
                     " = ".join(str(s) for s in sorted(slots))))
        e.log("scenario 6: provisioned in %.1f s; keys per master %s" % (
            time.monotonic() - t0, sizes))

    def sessions(self, key, st, users, count, retr):
        """One phase: p3load sessions against one store; CPU and
        commands around it."""
        n0, (r0, p0) = self.nginx.cpu(), st.cpu()
        c0, f0 = st.stats(), st.forks()
        out = self.run_load(
            "sessions", self.nginx.ports[key], users, count=count,
            retr=retr, concurrency=self.conc)
        n1, (r1, p1) = self.nginx.cpu(), st.cpu()
        c1, f1 = st.stats(), st.forks()
        if out["errors"]:
            self.notes.append("scenario 6 %s (%s): %d errors, e.g. %s" % (
                key, "retr" if retr else "stat", out["errors"],
                out["error_samples"][:2]))
        out.update(nginx=n1 - n0, redis=r1 - r0, replicas=p1 - p0,
                   forks=f1 - f0,
                   cmds={k: c1[k][0] - c0.get(k, (0, 0))[0] for k in c1},
                   rejected=sum(c1[k][1] - c0.get(k, (0, 0))[1]
                                for k in c1))
        return out

    def load(self):
        e = self.env
        res = {}

        def add(k, r):
            t = res.setdefault(k, dict(sessions=0, seconds=0.0, nginx=0.0,
                                       redis=0.0, replicas=0.0, cmds={},
                                       rejected=0, forks=0, client=0.0,
                                       msgs=0, p50=[], quit=[], errors=0))
            for f in ("sessions", "seconds", "nginx", "redis", "replicas",
                      "rejected", "forks", "msgs", "errors"):
                t[f] += r[f]
            t["client"] += r["client_cpu"]
            t["p50"].append(r["p50"])
            t["quit"].append(r["quit_p50"])
            for c, v in r["cmds"].items():
                t["cmds"][c] = t["cmds"].get(c, 0) + v

        stores = {"sa": self.sa, "cl": self.cl, "clw": self.cl}
        for rnd in range(self.rounds):
            for k in ("sa", "cl"):
                e.log("scenario 6: login+STAT+QUIT, %s, round %d" % (k, rnd))
                add(("stat", k), self.sessions(
                    k, stores[k], self.users[k]["stat"], self.stat_n, 0))
            for k in ("sa", "cl", "clw"):
                if k not in self.users:
                    continue            # no replicas: nothing to WAIT for
                e.log("scenario 6: 10 x (RETR+DELE), %s, round %d" % (k, rnd))
                users = self.users[k]["retr"][rnd * self.retr_n:
                                              (rnd + 1) * self.retr_n]
                add(("retr", k), self.sessions(
                    k, stores[k], users, self.retr_n, 10))
        self.res = res

        for shape, label in (("stat", "login+STAT+QUIT"),
                             ("retr", "login+10 x (RETR+DELE)+QUIT")):
            ks = ("sa", "cl", "clw") if shape == "retr" and "clw" in \
                self.users else ("sa", "cl")
            g = {k: res[(shape, k)] for k in ks}

            def v(f, k):
                if k not in g:
                    return None
                return f(g[k])

            def r3(metric, f, fmt="%.1f"):
                self.row(metric, v(f, "sa"), v(f, "cl"), v(f, "clw"), fmt)

            self.row("%s:" % label, "", "", "" if "clw" in ks else None,
                     "%s")
            r3("  sessions/s", lambda t: t["sessions"] / t["seconds"])
            r3("  session p50 (ms, median of rounds)",
               lambda t: sorted(t["p50"])[len(t["p50"]) // 2], "%.2f")
            r3("  QUIT p50 (ms, median of rounds)",
               lambda t: sorted(t["quit"])[len(t["quit"]) // 2], "%.2f")
            r3("  nginx CPU ms per session",
               lambda t: 1000 * t["nginx"] / max(1, t["sessions"]), "%.3f")
            r3("  Redis CPU ms per session, masters",
               lambda t: 1000 * t["redis"] / max(1, t["sessions"]), "%.3f")
            r3("  Redis CPU ms per session, replicas",
               lambda t: 1000 * t["replicas"] / max(1, t["sessions"]),
               "%.3f")
            r3("  Redis CPU ms per session, all",
               lambda t: 1000 * (t["redis"] + t["replicas"])
               / max(1, t["sessions"]), "%.3f")
            r3("  sessions/s per Redis core (1 / the line above)",
               lambda t: t["sessions"] / max(1e-9, t["redis"]
                                             + t["replicas"]), "%.0f")
            r3("  sessions/s per nginx core",
               lambda t: t["sessions"] / max(1e-9, t["nginx"]), "%.0f")
            r3("  client CPU ms per session (p3load)",
               lambda t: 1000 * t["client"] / max(1, t["sessions"]), "%.3f")
            r3("  Redis commands per session (INFO)",
               lambda t: sum(c for k, c in t["cmds"].items()
                             if k not in ("info", "dbsize"))
               / max(1, t["sessions"]), "%.2f")
            r3("  redirected or refused commands (rejected_calls)",
               lambda t: t["rejected"], "%d")
            r3("  errors", lambda t: t["errors"], "%d")
            for k, t in g.items():
                self.extra.append(
                    "Scenario 6, %s, %s: INFO commandstats of the masters "
                    "per session (scripts' commands included): %s" % (
                        {"sa": "standalone", "cl": "cluster",
                         "clw": "cluster wait=1"}[k], label, fmt_cmds(
                            {c: n for c, n in t["cmds"].items()
                             if n and c not in ("info", "dbsize")},
                            max(1, t["sessions"]))))
            forks = sum(t["forks"] for t in g.values())
            if forks:
                self.notes.append("scenario 6: %d fork(s) (AOF rewrite) "
                                  "during the %s phases" % (forks, shape))

    def retr_throughput(self):
        got = {}
        for rnd in range(self.rounds):
            for k, st in (("sa", self.sa), ("cl", self.cl)):
                n0, (r0, _) = self.nginx.cpu(), st.cpu()
                r = self.run_load("retr", self.nginx.ports[k],
                                         self.users[k]["big"],
                                         duration=self.retr_secs)
                n1, (r1, _) = self.nginx.cpu(), st.cpu()
                t = got.setdefault(k, [0, 0.0, 0.0, 0.0, 0])
                t[0] += r["octets"]
                t[1] += r["seconds"]
                t[2] += n1 - n0
                t[3] += r1 - r0
                t[4] += r["errors"]
        self.row("RETR 1 MB, %d clients:" % len(self.users["sa"]["big"]),
                 "", "", None, "%s")
        self.row("  MB/s", got["sa"][0] / got["sa"][1] / 1e6,
                 got["cl"][0] / got["cl"][1] / 1e6)
        self.row("  nginx CPU s per GB sent", got["sa"][2] / (
            got["sa"][0] / 1e9), got["cl"][2] / (got["cl"][0] / 1e9),
            fmt="%.2f")
        self.row("  Redis CPU s per GB sent (masters)", got["sa"][3] / (
            got["sa"][0] / 1e9), got["cl"][3] / (got["cl"][0] / 1e9),
            fmt="%.2f")
        self.row("  MB/s per Redis core (masters)", got["sa"][0] / 1e6 / max(
            1e-9, got["sa"][3]), got["cl"][0] / 1e6 / max(1e-9, got["cl"][3]),
            fmt="%.0f")
        self.row("  MB/s per nginx core", got["sa"][0] / 1e6 / max(
            1e-9, got["sa"][2]), got["cl"][0] / 1e6 / max(1e-9, got["cl"][2]),
            fmt="%.0f")
        self.row("  errors", got["sa"][4], got["cl"][4], fmt="%d")
        self.retr = got

    # -- round trips

    def monitor(self, key, st, users, retr):
        """Requests nginx sent per session (MONITOR of every master, 10
        sessions one after the other), apart from what scripts ran."""
        mons = [n.c.monitor() for n in st.masters]
        for m in mons:
            m.__enter__()
        try:
            r = self.run_load("sessions", self.nginx.ports[key],
                                     users, count=len(users), retr=retr,
                                     concurrency=1)
            time.sleep(0.3)
            sent, inner = {}, {}
            for m in mons:
                while m.connection.can_read(timeout=0.3):
                    c = m.next_command()
                    cmd = c["command"].split(" ", 1)[0].lower()
                    if cmd in ("monitor", "info", "ping", "dbsize"):
                        continue
                    d = inner if c["client_type"] == "lua" else sent
                    d[cmd] = d.get(cmd, 0) + 1
        finally:
            for m in mons:
                try:
                    m.__exit__(None, None, None)
                except (redis.RedisError, OSError):
                    pass
        return r["sessions"], sent, inner

    def round_trips(self):
        e = self.env
        n = 10
        out = {}
        for k, st in (("sa", self.sa), ("cl", self.cl)):
            stat = self.users[k]["stat"][:n]
            fresh = ["%srtm%d" % (k, i) for i in range(n)]
            self.add_users(st, fresh, self.secret)
            self.deliver(st, fresh, 10, 4096)
            for shape, users, retr in (("stat", stat, 0),
                                       ("retr", fresh, 10)):
                s, sent, inner = self.monitor(k, st, users, retr)
                out[(shape, k)] = sum(sent.values()) / max(1, s)
                self.extra.append(
                    "Scenario 6, %s, %s (%d sessions, MONITOR of every "
                    "master): sent %s; inside the scripts %s" % (
                        st.name, "login+STAT+QUIT" if shape == "stat"
                        else "login+10 x (RETR+DELE)+QUIT", s,
                        fmt_cmds(sent, s), fmt_cmds(inner, s)))
        # round trips waited: the same sessions through rtproxy.py, whose
        # delay every awaited round trip pays once
        waited = {}
        reps = e.icfg("BENCH_CL_RT_SESSIONS", 5)
        for shape, retr in (("stat", 0), ("retr", 10)):
            med = {}
            for k in ("sap", "sad"):
                if shape == "stat":
                    users = self.users["sa"]["stat"][:reps]
                else:
                    users = ["%srtd%d" % (k, i) for i in range(reps)]
                    self.add_users(self.sa, users, self.secret)
                    self.deliver(self.sa, users, 10, 4096)
                proxy = self.proxies[k][0]
                proxy.stdin.write("stats\n")
                proxy.stdin.flush()
                proxy.stdout.readline()
                r = self.run_load("sessions", self.nginx.ports[k],
                                  users, count=reps, retr=retr,
                                  concurrency=1)
                proxy.stdin.write("stats\n")
                proxy.stdin.flush()
                ps = json.loads(proxy.stdout.readline())
                lat = sorted(r["lat_all"])
                med[k] = (lat[len(lat) // 2] if lat else 0, ps["mean_ms"])
            # the delay every awaited round trip really paid: the delayed
            # relay's mean minus the undelayed one's
            paid = med["sad"][1] - (med["sap"][1] or 0)
            waited[shape] = (med["sad"][0] - med["sap"][0]) / paid
            e.log("scenario 6: %s: %.2f ms and %.2f ms per session, "
                  "delay paid %.2f ms: %.2f round trips" % (
                      shape, med["sap"][0], med["sad"][0], paid,
                      waited[shape]))
        for shape, label in (("stat", "login+STAT+QUIT"),
                             ("retr", "login+10 x (RETR+DELE)+QUIT")):
            self.row("%s: Redis requests sent (MONITOR)" % label,
                     out[(shape, "sa")], out[(shape, "cl")], fmt="%.2f")
            self.row("%s: round trips waited (rtproxy)" % label,
                     waited[shape], None, fmt="%.2f")
        self.waited = waited

    # -- all of it

    def others_cpu(self):
        """CPU seconds of the benchmark's servers that stay up during
        this scenario (they idle)."""
        return sum(tree_cpu(s.proc.pid) for s in self.b.servers
                   if s.proc is not None and s.proc.poll() is None)

    def run(self):
        t0 = time.monotonic()
        self.load_start = loadavg()
        c0 = (machine_busy(), own_cpu(), self.others_cpu())
        try:
            self.start()
            self.memory()
            self.provision()
            self.load()
            self.retr_throughput()
            self.round_trips()
        finally:
            self.stop()
        self.load_end = loadavg()
        self.secs = time.monotonic() - t0
        # everything this scenario ran has been reaped by now
        self.other = ((machine_busy() - c0[0]) - (own_cpu() - c0[1])
                      - (self.others_cpu() - c0[2])) / self.secs
        self.env.log("scenario 6: %.0f s" % self.secs)

    def table(self):
        w = max([len(r[0]) for r in self.rows] + [40]) + 2
        head = "%-*s %11s %11s %7s %11s %7s" % (
            w, "metric", "standalone", "cluster", "cl/sa", "cl wait=1",
            "w1/cl")
        sec = self.SEC
        if hasattr(self, "cluster"):
            sec = sec.replace("3 replicas", "%d replicas" % len(
                self.cluster.replicas))
        lines = [sec + ", AOF everysec on both, same run",
                 "(%.0f s; other work on the machine meanwhile: %.2f of %d "
                 "CPUs on average; load average %s at its start, %s at its "
                 "end; users {PLAIN}, %d clients)" % (
                     getattr(self, "secs", 0), getattr(self, "other", -1),
                     os.cpu_count(), getattr(self, "load_start", "?"),
                     getattr(self, "load_end", "?"), self.conc),
                 head, "-" * len(head)]
        for metric, sa, cl, clw, fmt in self.rows:
            def num(x):
                return isinstance(x, (int, float)) and not isinstance(
                    x, bool)
            r1 = "%.2f" % (cl / sa) if num(sa) and num(cl) and sa else ""
            r2 = "%.2f" % (clw / cl) if num(clw) and num(cl) and cl else ""
            lines.append("%-*s %11s %11s %7s %11s %7s" % (
                w, metric, fmtv(fmt, sa), fmtv(fmt, cl), r1,
                fmtv(fmt, clw) if clw is not None else "", r2))
        return lines + [""] + self.extra + self.notes


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def fmt_cmds(cmds, n):
    return ", ".join("%s %.2f" % (k.upper(), v / n) for k, v in sorted(
        cmds.items(), key=lambda kv: -kv[1])) or "none"


def fmtv(fmt, v):
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    try:
        return fmt % v
    except TypeError:
        return str(v)
