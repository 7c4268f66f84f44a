"""Starting, measuring and stopping the servers under test: Redis, our
nginx with the module, and Dovecot, each with its own configuration in the
benchmark's temporary directory, on loopback ports chosen free."""

import os
import re
import signal
import socket
import subprocess
import time

import redis


CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


class RedisClient(redis.Redis):
    """redis-py (python3-redis), with every call bounded in time, plus the
    two bulk calls the benchmark makes.  Replies are bytes, as Redis sends
    them; an error reply raises redis.ResponseError (or, in a pipeline
    with raise_errors=False, is returned as that exception object)."""

    def __init__(self, host, port):
        super().__init__(host=host, port=port, socket_timeout=120,
                         socket_connect_timeout=10)

    def call(self, *args):
        """One command as Redis spells it; the raw reply."""
        return self.execute_command(*args)

    def pipelined(self, commands, batch=1000, raise_errors=True):
        """Sends commands (lists of args) in batches, one round trip each;
        returns the replies in order."""
        replies = []
        for i in range(0, len(commands), batch):
            p = self.pipeline(transaction=False)
            for c in commands[i:i + batch]:
                p.execute_command(*c)
            replies.extend(p.execute(raise_on_error=raise_errors))
        return replies

    def commandstats(self):
        """{command: calls} from INFO commandstats."""
        return {k[8:]: int(v["calls"])
                for k, v in self.info("commandstats").items()
                if k.startswith("cmdstat_")}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, proc=None, timeout=15, what="server"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s exited with status %s" % (what,
                                                             proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("%s did not listen on port %d" % (what, port))


# ---------------------------------------------------------------------------
# /proc


def proc_stat(pid):
    """(ppid, utime+stime, cutime+cstime, rss_kb) or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    # rest[0] is field 3 (state)
    ppid = int(rest[1])
    utime, stime, cutime, cstime = (int(x) for x in rest[11:15])
    rss = int(rest[21]) * PAGE_KB
    return ppid, utime + stime, cutime + cstime, rss


def children_map():
    m = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        st = proc_stat(int(d))
        if st:
            m.setdefault(st[0], []).append(int(d))
    return m


def descendants(pid, cmap=None):
    cmap = cmap if cmap is not None else children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(cmap.get(p, []))
    return out


def pss_kb(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_cpu(root):
    """CPU seconds of a process tree: the live processes, plus what the
    root collected from children that exited (cutime+cstime)."""
    cmap = children_map()
    total = 0
    for p in descendants(root, cmap):
        st = proc_stat(p)
        if st:
            total += st[1]
            if p == root:
                total += st[2]
    return total / CLK_TCK


def machine_busy():
    """CPU seconds the whole machine spent busy, from /proc/stat (user,
    nice, system, irq, softirq, steal; guest time is inside user)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK_TCK


def own_cpu():
    """CPU seconds of this process and of the children it reaped: once
    the benchmark has stopped what it started, everything it ran."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def mem(pids):
    """(sum RSS kB, sum PSS kB) of pids."""
    rss = pss = 0
    for p in pids:
        st = proc_stat(p)
        if st:
            rss += st[3]
            pss += pss_kb(p)
    return rss, pss


# ---------------------------------------------------------------------------


class Server:
    name = "server"
    proc = None

    def stop(self):
        p = self.proc
        if p is None or p.poll() is not None:
            return
        try:
            p.send_signal(self.stop_signal)
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        self.proc = None


class RedisServer(Server):
    name = "redis"
    stop_signal = signal.SIGTERM

    def __init__(self, env):
        self.env = env
        self.port = free_port()
        self.dir = os.path.join(env.tmp, "redis")
        os.makedirs(self.dir)

    def start(self):
        self.proc = self.env.spawn(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
             "--save", "", "--appendonly", "no", "--dir", self.dir,
             "--logfile", os.path.join(self.dir, "redis.log"),
             "--daemonize", "no", "--maxclients", "1000"])
        wait_port(self.port, self.proc, what="redis")
        self.addr = "127.0.0.1:%d" % self.port
        return self

    def client(self):
        return RedisClient(host="127.0.0.1", port=self.port)

    def pids(self):
        return [self.proc.pid]


class Nginx(Server):
    name = "nginx"
    stop_signal = signal.SIGTERM

    def __init__(self, env, redis, module):
        self.env = env
        self.redis = redis
        self.module = module
        self.dir = os.path.join(env.tmp, "nginx")
        os.makedirs(os.path.join(self.dir, "logs"))
        self.port = free_port()
        self.tls_port = free_port()
        self.log = os.path.join(self.dir, "error.log")
        self.tls = True

    # The module's directives stay at their defaults but one;
    # BENCH_NGINX_EXTRA adds main-context lines, this the mail-context
    # ones.  Every login comes from 127.0.0.1, and an attempt counts
    # against its address before its check (taken back on success): more
    # than pop3_ext_auth_block_addr (20) logins in flight from one address
    # are refused.  0 turns the refusal off; the counting, and its Redis
    # commands, stay.
    mail_extra = "    pop3_ext_auth_block_addr  0;\n"

    def conf(self, tls):
        e = self.env
        ssl_server = """
    server {
        listen              127.0.0.1:%d ssl;
        protocol            pop3_ext;
        pop3_ext_redis      %s;
        ssl_certificate     %s;
        ssl_certificate_key %s;
    }
""" % (self.tls_port, self.redis.addr, e.cert, e.key) if tls else ""
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
%s
    server {
        listen          127.0.0.1:%d;
        protocol        pop3_ext;
        pop3_ext_redis  %s;
    }
%s}
""" % (e.mail_module, self.module, e.cfg("BENCH_NGINX_WORKERS", "2"),
       e.nofile, e.cfg("BENCH_NGINX_EXTRA", ""), self.dir, self.log,
       e.nofile // 2, self.mail_extra, self.port,
       self.redis.addr, ssl_server)

    def start(self):
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(self.conf(True))
        t = subprocess.run(["nginx", "-t", "-q", "-p", self.dir, "-c", conf],
                           capture_output=True, text=True)
        if t.returncode != 0:
            # TLS may not be supported by the module yet: run without it
            self.env.note("nginx with 'listen ... ssl' refused the "
                          "configuration: %s" % t.stderr.strip()[:300])
            self.tls = False
            with open(conf, "w") as f:
                f.write(self.conf(False))
        self.proc = self.env.spawn(
            ["nginx", "-p", self.dir, "-c", conf, "-e", self.log],
            stderr=open(os.path.join(self.dir, "stderr.log"), "w"))
        wait_port(self.port, self.proc, what="nginx")
        time.sleep(0.2)
        return self

    def restart(self):
        """Fresh workers: a heap that earlier scenarios grew would hide
        the memory of new connections."""
        self.stop()
        self.start()

    def workers(self):
        return [p for p in descendants(self.proc.pid) if p != self.proc.pid]

    def pids(self):
        """Every process whose CPU counts for ours: nginx and Redis."""
        return descendants(self.proc.pid) + self.redis.pids()

    def cpu(self):
        return tree_cpu(self.proc.pid) + tree_cpu(self.redis.proc.pid)

    def mem_pids(self):
        return self.workers()


class Dovecot(Server):
    name = "dovecot"
    stop_signal = signal.SIGTERM

    def __init__(self, env):
        self.env = env
        self.dir = os.path.join(env.tmp, "dovecot")
        for d in ("run", "state", "home"):
            os.makedirs(os.path.join(self.dir, d))
        os.chown(os.path.join(self.dir, "home"), env.mail_uid, env.mail_gid)
        self.port = free_port()
        self.tls_port = free_port()
        self.log = os.path.join(self.dir, "dovecot.log")
        self.passwd = os.path.join(self.dir, "passwd")
        self.tls = True
        self.extra = ""

    def home(self, user):
        return os.path.join(self.dir, "home", user)

    def conf(self):
        e = self.env
        return """# Dovecot for the benchmark: defaults, except what is needed to
# run from a temporary directory with root-owned test users.
base_dir = %(d)s/run
state_dir = %(d)s/state
log_path = %(d)s/dovecot.log
protocols = pop3
listen = 127.0.0.1
disable_plaintext_auth = no
ssl = yes
ssl_cert = <%(cert)s
ssl_key = <%(key)s
mail_location = maildir:~/Maildir
first_valid_uid = %(uid)d
first_valid_gid = %(gid)d
passdb {
  driver = passwd-file
  args = scheme=SHA512-CRYPT %(passwd)s
}
userdb {
  driver = passwd-file
  args = %(passwd)s
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = %(port)d
  }
  inet_listener pop3s {
    address = 127.0.0.1
    port = %(tls_port)d
    ssl = yes
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
%(extra)s
""" % dict(d=self.dir, cert=e.cert, key=e.key, uid=e.mail_uid,
           gid=e.mail_gid, passwd=self.passwd, port=self.port,
           tls_port=self.tls_port, extra=self.extra)

    def start(self, extra=""):
        self.extra = extra
        self.cfile = os.path.join(self.dir, "dovecot.conf")
        with open(self.cfile, "w") as f:
            f.write(self.conf())
        self.proc = self.env.spawn(["dovecot", "-F", "-c", self.cfile],
                                   stderr=open(os.path.join(
                                       self.dir, "stderr.log"), "a"))
        wait_port(self.port, self.proc, what="dovecot")
        wait_port(self.tls_port, self.proc, what="dovecot pop3s")
        return self

    def restart(self, extra=""):
        self.stop()
        time.sleep(0.3)
        self.start(extra)

    def pids(self):
        return descendants(self.proc.pid)

    def cpu(self):
        return tree_cpu(self.proc.pid)

    def mem_pids(self):
        return self.pids()


# ---------------------------------------------------------------------------
# log counting


OURS_END = re.compile(
    rb'pop3_ext: session end, user="([^"]*)" mailbox="[^"]*" '
    rb'retr=(\d+)/(\d+) dele=(\d+)/\d+ left=\d+( \(no QUIT\))?')
DOVE_END = re.compile(
    rb'pop3\(([^)]*)\)<[^:]*: Info: Disconnected: (.*?)(?: top=\d+/\d+, '
    rb'retr=(\d+)/(\d+), del=(\d+)/\d+, size=\d+)?$', re.M)
OURS_ERR = re.compile(rb'\[(error|crit|alert|emerg)\]')
DOVE_ERR = re.compile(rb'(Error|Fatal|Panic): ')


class LogCounter:
    """Counts finished sessions (and server-side errors) in the new part
    of a server's log."""

    def __init__(self, path, ours):
        self.path = path
        self.ours = ours
        self.f = open(path, "rb")
        self.f.seek(0, 2)
        self.rest = b""
        self.reset()

    def reset(self):
        self.sessions = 0        # ended by QUIT (users matching the filter)
        self.unclean = 0         # ended otherwise
        self.all = 0             # every session end, any user
        self.msgs = 0
        self.octets = 0
        self.deleted = 0
        self.errors = 0
        self.error_samples = []

    def poll(self, want=None):
        data = self.rest + self.f.read()
        i = data.rfind(b"\n")
        if i < 0:
            self.rest = data
            return
        self.rest = data[i + 1:]
        data = data[:i + 1]
        for line in data.splitlines():
            if self.ours:
                m = OURS_END.search(line)
                if m:
                    self.all += 1
                    user = m.group(1).decode()
                    if want and not want(user):
                        continue
                    if m.group(5):
                        self.unclean += 1
                        continue
                    self.sessions += 1
                    self.msgs += int(m.group(2))
                    self.octets += int(m.group(3))
                    self.deleted += int(m.group(4))
                    continue
                if OURS_ERR.search(line):
                    self.errors += 1
                    if len(self.error_samples) < 5:
                        self.error_samples.append(line.decode(
                            "utf-8", "replace")[:300])
            else:
                m = DOVE_END.search(line)
                if m:
                    self.all += 1
                    user = m.group(1).decode()
                    if want and not want(user):
                        continue
                    if not m.group(2).startswith(b"Logged out"):
                        self.unclean += 1
                        continue
                    self.sessions += 1
                    if m.group(3):
                        self.msgs += int(m.group(3))
                        self.octets += int(m.group(4))
                        self.deleted += int(m.group(5))
                    continue
                if DOVE_ERR.search(line):
                    self.errors += 1
                    if len(self.error_samples) < 5:
                        self.error_samples.append(line.decode(
                            "utf-8", "replace")[:300])

    def close(self):
        self.f.close()
