"""The benchmark's environment: temporary directory, child processes and
their clean-up, configuration from BENCH_* variables, the TLS certificate."""

import os
import pwd
import signal
import subprocess
import sys
import time


class Env:
    def __init__(self, tmp, top):
        self.tmp = tmp
        self.top = top
        self.bench = os.path.join(top, "bench")
        self.procs = []
        self.notes = []
        self.pidfile = os.path.join(tmp, "pids")
        self.nofile = self.raise_nofile()
        pw = pwd.getpwnam(self.cfg("BENCH_MAIL_USER", "mail"))
        self.mail_uid, self.mail_gid = pw.pw_uid, pw.pw_gid
        self.mail_module = self.cfg(
            "MAIL_MODULE", "/usr/lib/nginx/modules/ngx_mail_module.so")
        self.cert = os.path.join(tmp, "cert.pem")
        self.key = os.path.join(tmp, "key.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
             "-keyout", self.key, "-out", self.cert, "-days", "2",
             "-subj", "/CN=localhost"],
            check=True, capture_output=True)
        os.chmod(self.key, 0o600)

    @staticmethod
    def cfg(name, default):
        return os.environ.get(name, default)

    def icfg(self, name, default):
        return int(self.cfg(name, str(default)))

    def fcfg(self, name, default):
        return float(self.cfg(name, str(default)))

    def raise_nofile(self):
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 65536
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft),
                                                        max(want, hard)))
        except (ValueError, OSError):
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            except (ValueError, OSError):
                pass
        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]

    def note(self, text):
        self.notes.append(text)
        self.log("note: " + text)

    @staticmethod
    def log(text):
        sys.stderr.write("[bench %s] %s\n" % (time.strftime("%H:%M:%S"),
                                              text))
        sys.stderr.flush()

    def spawn(self, argv, **kw):
        """A server process in its own process group, recorded in the pid
        file that run.sh's trap reads if we die without cleaning up."""
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        p = subprocess.Popen(argv, start_new_session=True, **kw)
        self.procs.append(p)
        try:
            with open("/proc/%d/stat" % p.pid) as f:
                started = f.read().rsplit(")", 1)[1].split()[19]
        except (OSError, IndexError):
            started = "?"
        with open(self.pidfile, "a") as f:
            f.write("%d %s\n" % (p.pid, started))
        return p

    def cleanup(self, servers):
        for s in servers:
            try:
                s.stop()
            except Exception as e:                      # noqa: BLE001
                self.log("stopping %s: %s" % (s.name, e))
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except OSError:
                    pass
        end = time.monotonic() + 5
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
