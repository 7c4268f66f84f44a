"""Scenario 7: delivery.  The same messages delivered three ways, one
after the other in one run, on the same machine:

  - over LMTP to our nginx (protocol pop3_ext_lmtp, the bench's Redis),
  - by `pop3ext deliver --id` (one process per message, as an MTA's pipe
    transport runs it), into the same Redis,
  - over LMTP to Dovecot's lmtp (dovecot-lmtpd), into Maildirs.

LMTP clients keep their connection and send one transaction after the
other, one recipient each, as Postfix's lmtp client does with
connection caching; BENCH_LMTP_CLIENTS of them at once.  pop3ext runs
BENCH_LMTP_CLIENTS processes at once.  Messages/s is counted from the
first message sent to the last reply; CPU is that of the servers
(nginx and Redis; pop3ext's processes and Redis; Dovecot's tree) per
message.  Every message is checked stored: index lengths in Redis, files
in the Maildirs.
"""

import os
import resource
import socket
import subprocess
import threading
import time

from servers import (Server, free_port, wait_port, tree_cpu,
                     descendants, mem)
from store import make_message


class LmtpNginx(Server):
    """Our nginx with an LMTP server only, on the bench's Redis."""
    name = "nginx-lmtp"

    def __init__(self, env, redis, module):
        import signal
        self.stop_signal = signal.SIGTERM
        self.env = env
        self.redis = redis
        self.module = module
        self.dir = os.path.join(env.tmp, "nginx-lmtp")
        os.makedirs(os.path.join(self.dir, "logs"))
        self.port = free_port()
        self.log = os.path.join(self.dir, "error.log")

    def start(self):
        e = self.env
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write("""
load_module %s;
load_module %s;
worker_processes  %s;
daemon            off;
pid               %s/nginx.pid;
error_log         %s notice;
events {
    worker_connections  1024;
}
mail {
    auth_http  127.0.0.1:1/unused;
    server {
        listen          127.0.0.1:%d;
        protocol        pop3_ext_lmtp;
        pop3_ext_redis  %s;
    }
}
""" % (e.mail_module, self.module, e.cfg("BENCH_NGINX_WORKERS", "2"),
                self.dir, self.log, self.port, self.redis.addr))
        self.proc = self.env.spawn(
            ["nginx", "-p", self.dir, "-c", conf, "-e", self.log],
            stderr=open(os.path.join(self.dir, "stderr.log"), "w"))
        wait_port(self.port, self.proc, what="nginx lmtp")
        return self

    def cpu(self):
        return tree_cpu(self.proc.pid) + tree_cpu(self.redis.proc.pid)

    def workers(self):
        return [p for p in descendants(self.proc.pid) if p != self.proc.pid]


class DovecotLmtp(Server):
    """Dovecot 2.3 serving LMTP only, into Maildirs, users from a
    passwd-file (LMTP needs the userdb alone)."""
    name = "dovecot-lmtp"

    def __init__(self, env):
        import signal
        self.stop_signal = signal.SIGTERM
        self.env = env
        self.dir = os.path.join(env.tmp, "dovecot-lmtp")
        for d in ("run", "state", "home"):
            os.makedirs(os.path.join(self.dir, d))
        os.chown(os.path.join(self.dir, "home"), env.mail_uid, env.mail_gid)
        self.port = free_port()
        self.passwd = os.path.join(self.dir, "passwd")
        self.log = os.path.join(self.dir, "dovecot.log")

    def home(self, user):
        return os.path.join(self.dir, "home", user)

    def add_users(self, users):
        e = self.env
        with open(self.passwd, "w") as f:
            for u in users:
                f.write("%s::%d:%d::%s::\n" % (u, e.mail_uid, e.mail_gid,
                                               self.home(u)))

    def start(self):
        e = self.env
        conf = os.path.join(self.dir, "dovecot.conf")
        with open(conf, "w") as f:
            f.write("""base_dir = %(d)s/run
state_dir = %(d)s/state
log_path = %(d)s/dovecot.log
protocols = lmtp
listen = 127.0.0.1
ssl = no
mail_location = maildir:~/Maildir
auth_username_format = %%Ln
first_valid_uid = %(uid)d
first_valid_gid = %(gid)d
userdb {
  driver = passwd-file
  args = %(passwd)s
}
passdb {
  driver = passwd-file
  args = %(passwd)s
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = %(port)d
  }
}
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    port = 0
  }
  inet_listener pop3s {
    port = 0
  }
}
""" % dict(d=self.dir, uid=e.mail_uid, gid=e.mail_gid, passwd=self.passwd,
                port=self.port))
        self.proc = self.env.spawn(["dovecot", "-F", "-c", conf],
                                   stderr=open(os.path.join(
                                       self.dir, "stderr.log"), "a"))
        wait_port(self.port, self.proc, what="dovecot lmtp")
        return self

    def cpu(self):
        return tree_cpu(self.proc.pid)

    def stored(self, users):
        n = 0
        for u in users:
            for sub in ("new", "cur"):
                p = os.path.join(self.home(u), "Maildir", sub)
                if os.path.isdir(p):
                    n += len(os.listdir(p))
        return n


class LmtpClient:
    """A minimal LMTP client on one connection: LHLO once, then MAIL,
    RCPT, DATA per message, pipelined as PIPELINING allows."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.f = self.s.makefile("rb")
        self.reply()
        self.s.sendall(b"LHLO bench.example\r\n")
        self.reply()

    def reply(self):
        lines = []
        while True:
            line = self.f.readline()
            if not line:
                raise RuntimeError("LMTP connection closed")
            lines.append(line)
            if line[3:4] != b"-":
                return lines

    def send(self, rcpt, data):
        self.s.sendall(b"MAIL FROM:<sender@bench.example>\r\n"
                       b"RCPT TO:<" + rcpt.encode() + b">\r\nDATA\r\n")
        codes = [self.reply()[-1][:3] for _ in range(3)]
        if codes != [b"250", b"250", b"354"]:
            raise RuntimeError("LMTP refused: %r" % codes)
        self.s.sendall(data)
        r = self.reply()[-1]
        if not r.startswith(b"250"):
            raise RuntimeError("LMTP delivery failed: %r" % r)

    def close(self):
        try:
            self.s.sendall(b"QUIT\r\n")
            self.reply()
        except (OSError, RuntimeError):
            pass
        self.s.close()


def dot_stuff(msg):
    out = msg.replace(b"\r\n.", b"\r\n..")
    if out.startswith(b"."):
        out = b"." + out
    return out + b".\r\n"


class LmtpScenario:
    def __init__(self, bench):
        self.b = bench
        self.e = bench.env

    def run(self):
        b, e = self.b, self.e
        clients = e.icfg("BENCH_LMTP_CLIENTS", 4)
        sizes = [int(x) for x in e.cfg("BENCH_LMTP_SIZES",
                                       "4096 1048576").split()]
        counts = [int(x) for x in e.cfg("BENCH_LMTP_MSGS",
                                        "4000 200").split()]
        nusers = e.icfg("BENCH_LMTP_USERS", 100)
        users = ["lmtp%d" % i for i in range(nusers)]

        b.store.add_users(users, b.password)
        ours = LmtpNginx(e, b.redis, b.module).start()
        dov = DovecotLmtp(e)
        dov.add_users(users)
        dov.start()
        b.servers.insert(0, ours)
        b.servers.insert(0, dov)
        cli = os.path.join(b.top, "build", "pop3ext")
        sec = "7 Delivery (LMTP, pop3ext deliver)"

        try:
            for size, count in zip(sizes, counts):
                label = "%d MB" % (size >> 20) if size >= 1 << 20 \
                    else "%d KB" % (size >> 10)
                msgs = [make_message(size, seed=1000 + i)[0]
                        for i in range(min(count, 50))]

                # every delivery its own octets: the same message twice
                # to one mailbox would be stored once (its delivery id)
                def job(i):
                    return users[i % nusers], (
                        b"X-Bench-Seq: %d-%d\r\n" % (os.getpid(), i)
                        + msgs[i % len(msgs)])

                base = self.redis_count(users)
                e.log("scenario 7: %s x %d over LMTP to ours" % (label,
                                                                 count))
                r_ours = self.lmtp_phase(ours, clients, count, job)
                got = self.redis_count(users) - base
                if got != count:
                    e.note("scenario 7: ours stored %d of %d" % (got, count))

                base = self.redis_count(users)
                e.log("scenario 7: %s x %d by pop3ext deliver" % (label,
                                                                  count))
                r_cli = self.cli_phase(cli, clients, count, job, size)
                got = self.redis_count(users) - base
                if got != count:
                    e.note("scenario 7: pop3ext stored %d of %d" % (got,
                                                                   count))

                base = dov.stored(users)
                e.log("scenario 7: %s x %d over LMTP to Dovecot" % (label,
                                                                    count))
                r_dov = self.lmtp_phase(dov, clients, count, job)
                got = dov.stored(users) - base
                if got != count:
                    e.note("scenario 7: Dovecot stored %d of %d" % (got,
                                                                   count))

                b.row(sec, "%s, LMTP: messages/s" % label,
                      r_ours["rate"], r_dov["rate"], "%.0f")
                b.row(sec, "%s, LMTP: server CPU ms/message" % label,
                      r_ours["cpu_ms"], r_dov["cpu_ms"], "%.2f")
                b.row(sec, "%s, pop3ext deliver: messages/s" % label,
                      r_cli["rate"], r_dov["rate"], "%.0f")
                b.row(sec, "%s, pop3ext deliver: CPU ms/message" % label,
                      r_cli["cpu_ms"], r_dov["cpu_ms"], "%.2f")
                if size >= 1 << 20:
                    b.row(sec, "%s, LMTP: our workers' RSS after, KB"
                          % label, mem(ours.workers())[0], None, "%d")
        finally:
            for s in (ours, dov):
                s.stop()
                if s in b.servers:
                    b.servers.remove(s)

    def redis_count(self, users):
        return sum(self.b.store.redis_counts(users).values())

    def lmtp_phase(self, server, clients, count, job):
        errors = []
        nxt = [0]
        lock = threading.Lock()

        def worker():
            try:
                c = LmtpClient(server.port)
                while True:
                    with lock:
                        i = nxt[0]
                        nxt[0] += 1
                    if i >= count:
                        break
                    rcpt, msg = job(i)
                    c.send(rcpt + "@bench.example", dot_stuff(msg))
                c.close()
            except Exception as ex:                      # noqa: BLE001
                errors.append(repr(ex))

        cpu0 = server.cpu()
        t0 = time.monotonic()
        ts = [threading.Thread(target=worker) for _ in range(clients)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        dt = time.monotonic() - t0
        cpu = server.cpu() - cpu0
        if errors:
            self.e.note("scenario 7: %s: %s" % (server.name, errors[0]))
        return {"rate": count / dt, "cpu_ms": cpu * 1000.0 / count}

    def cli_phase(self, cli, clients, count, job, size):
        b, e = self.b, self.e
        spec = b.redis.addr
        running = []
        errors = []
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        rcpu0 = tree_cpu(b.redis.proc.pid)
        t0 = time.monotonic()
        i = 0
        while i < count or running:
            while i < count and len(running) < clients:
                user, msg = job(i)
                p = subprocess.Popen(
                    [cli, "-r", spec, "deliver", "--id",
                     "bench-%d-%d-%d" % (size, i, os.getpid()), user],
                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE)
                p.stdin.write(msg)
                p.stdin.close()
                running.append(p)
                i += 1
            p = running.pop(0)
            p.wait()
            if p.returncode != 0:
                errors.append(p.stderr.read().decode()[-200:])
            p.stderr.close()
        dt = time.monotonic() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime
               + tree_cpu(b.redis.proc.pid) - rcpu0)
        if errors:
            e.note("scenario 7: pop3ext deliver: %d failed, e.g. %s" % (
                len(errors), errors[0]))
        return {"rate": count / dt, "cpu_ms": cpu * 1000.0 / count}
