"""The same users and the same messages in both stores: Redis in the
module's data model, and Maildir for Dovecot.

Key names and the delivery script are read from the module's
ngx_mail_pop3_ext_model.h, so the benchmark never carries a copy of them.
"""

import hashlib
import os
import random
import re
import subprocess
import time


def c_string(lit):
    out, i = [], 0
    esc = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'",
           "0": "\0"}
    while i < len(lit):
        ch = lit[i]
        if ch == "\\":
            out.append(esc[lit[i + 1]])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def read_model(path):
    """{macro name: string value} of the string macros of the header."""
    text = open(path).read()
    # join continuation lines
    text = text.replace("\\\n", " ")
    macros = {}
    lit = re.compile(r'"((?:[^"\\]|\\.)*)"')
    for m in re.finditer(r"^#define\s+(P3X_\w+)\s+(.*)$", text, re.M):
        body = m.group(2).strip()
        if not body.startswith('"'):
            continue
        macros[m.group(1)] = "".join(c_string(s) for s in lit.findall(body))
    for need in ("P3X_SCRIPT_DELIVER", "P3X_USER_PREFIX", "P3X_MBOX_PREFIX",
                 "P3X_INDEX_SUFFIX", "P3X_META_SUFFIX", "P3X_MSG_SUFFIX",
                 "P3X_FIELD_SECRET"):
        if need not in macros:
            raise RuntimeError("%s not found in %s" % (need, path))
    return macros


def make_message(size, seed=0):
    """A message of exactly `size` octets with CRLF line ends (the size
    POP3 reports); returns (crlf bytes, lf bytes)."""
    head = ("From: Bench Sender <sender@bench.example>\r\n"
            "To: bench@bench.example\r\n"
            "Subject: benchmark message %d of %d octets\r\n"
            "Date: Wed, 26 Nov 2025 08:00:00 +0000\r\n"
            "Message-ID: <bench.%d.%d@bench.example>\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n"
            "\r\n" % (seed, size, seed, size)).encode()
    line = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ" \
           b"0123456789abcd\r\n"                          # 78 octets
    body = bytearray()
    need = size - len(head)
    if need < 2:
        raise ValueError("message size too small")
    n = (need - 2) // len(line)
    body += line * n
    rest = need - len(body)
    body += b"x" * (rest - 2) + b"\r\n"
    crlf = head + bytes(body)
    assert len(crlf) == size
    return crlf, crlf.replace(b"\r\n", b"\n")


class Stores:
    def __init__(self, env, redis, dovecot, model_h):
        self.env = env
        self.redis = redis
        self.r = redis.client()
        self.dovecot = dovecot
        self.m = read_model(model_h)
        script = self.m["P3X_SCRIPT_DELIVER"]
        self.deliver_sha = self.r.call("SCRIPT", "LOAD", script).decode()
        assert self.deliver_sha == hashlib.sha1(script.encode()).hexdigest()
        self.secret = None
        self.passwd_lines = []
        self.seq = 0
        self.uid_seq = 0
        self.users = set()

    def used_memory(self):
        time.sleep(0.2)
        return int(self.r.info("memory")["used_memory"])

    # -- users

    def password_hash(self, password):
        h = subprocess.run(["openssl", "passwd", "-6", password],
                           capture_output=True, text=True, check=True)
        return h.stdout.strip()

    def add_users(self, names, password):
        """Adds users to Redis (HSET of the secret) and to Dovecot's
        passwd-file, with the same {SHA512-CRYPT} hash."""
        if self.secret is None:
            self.secret = "{SHA512-CRYPT}" + self.password_hash(password)
        m = self.m
        cmds = [["HSET", m["P3X_USER_PREFIX"] + n + m["P3X_USER_SUFFIX"],
                 m["P3X_FIELD_SECRET"], self.secret] for n in names]
        self.r.pipelined(cmds)
        uid, gid = self.env.mail_uid, self.env.mail_gid
        with open(self.dovecot.passwd, "a") as f:
            for n in names:
                f.write("%s:%s:%d:%d::%s::\n" % (n, self.secret, uid, gid,
                                                 self.dovecot.home(n)))
        for n in names:
            self.users.add(n)

    # -- Redis

    def mbox_keys(self, name):
        m = self.m
        base = m["P3X_MBOX_PREFIX"] + name
        return (base + m["P3X_META_SUFFIX"], base + m["P3X_INDEX_SUFFIX"],
                base + m["P3X_MSG_SUFFIX"])

    def redis_deliver(self, plan, batch=None):
        """plan: [(user, crlf message), ...]; pipelined EVALSHA of the
        module's delivery script: KEYS the index, the body's key, meta and
        time, ARGV the body, its UID (made as the model says: the writer's
        clock in ms, then a sequence and random bits), the id lifetime,
        the delivery time and no default quota."""
        cmds = []
        for user, msg in plan:
            meta, index, prefix = self.mbox_keys(user)
            self.uid_seq += 1
            uid = "%012x%06x%06x" % (int(time.time() * 1000),
                                     self.uid_seq & 0xffffff,
                                     random.getrandbits(24))
            base = prefix[:-len(self.m["P3X_MSG_SUFFIX"])]
            cmds.append(["EVALSHA", self.deliver_sha, "4", index,
                         prefix + uid, meta,
                         base + self.m["P3X_TIME_SUFFIX"], msg, uid, "0",
                         str(int(time.time() * 1000)), "0", "0"])
        if batch is None:
            batch = max(1, min(1000, (8 << 20) // max(1, len(plan[0][1])))) \
                if plan else 1
        self.r.pipelined(cmds, batch=batch)

    def redis_counts(self, users):
        cmds = [["LLEN", self.mbox_keys(u)[1]] for u in users]
        return dict(zip(users, self.r.pipelined(cmds)))

    # -- Maildir

    def maildir(self, user):
        md = os.path.join(self.dovecot.home(user), "Maildir")
        if not os.path.isdir(md):
            uid, gid = self.env.mail_uid, self.env.mail_gid
            for d in (self.dovecot.home(user), md, md + "/cur", md + "/new",
                      md + "/tmp"):
                os.makedirs(d, exist_ok=True)
                os.chown(d, uid, gid)
        return md

    def maildir_deliver(self, plan):
        """plan: [(user, lf message, crlf size)]; files in cur/ named as
        Dovecot's own delivery names them (S= physical, W= virtual size),
        so that neither server has to read a message to learn its size."""
        uid, gid = self.env.mail_uid, self.env.mail_gid
        now = int(time.time())
        pid = os.getpid()
        for user, lf, vsize in plan:
            md = self.maildir(user)
            self.seq += 1
            name = "%d.M%dP%d.bench,S=%d,W=%d:2," % (now, self.seq, pid,
                                                    len(lf), vsize)
            path = os.path.join(md, "cur", name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, lf)
            os.fchown(fd, uid, gid)
            os.close(fd)

    def maildir_counts(self, users):
        out = {}
        for u in users:
            md = self.maildir(u)
            out[u] = len(os.listdir(md + "/cur")) + len(os.listdir(
                md + "/new"))
        return out

    # -- both

    def deliver(self, users, count, size):
        """`count` messages of `size` octets into each user's mailbox in
        both stores; returns the Redis used_memory delta in bytes."""
        crlf, lf = make_message(size)
        mem0 = self.used_memory()
        # a connection of its own, closed before used_memory is read
        # again: its query buffer is not counted as stored mail
        main, self.r = self.r, self.redis.client()
        try:
            per = max(1, 20000 // max(1, count))
            for i in range(0, len(users), per):
                part = users[i:i + per]
                self.redis_deliver([(u, crlf) for u in part
                                    for _ in range(count)])
        finally:
            self.r.close()
            self.r = main
        mem1 = self.used_memory()
        self.maildir_deliver([(u, lf, len(crlf)) for u in users
                              for _ in range(count)])
        return mem1 - mem0

    def refill(self, users, count, size, which):
        """Tops every mailbox up to `count` messages in one store."""
        crlf, lf = make_message(size)
        if which == "ours":
            have = self.redis_counts(users)
            plan = [(u, crlf) for u in users
                    for _ in range(max(0, count - have[u]))]
            if plan:
                self.redis_deliver(plan)
        else:
            have = self.maildir_counts(users)
            plan = [(u, lf, len(crlf)) for u in users
                    for _ in range(max(0, count - have[u]))]
            self.maildir_deliver(plan)
        return len(plan)
