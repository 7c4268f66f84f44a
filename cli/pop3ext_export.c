
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * pop3ext: export, a user's mailbox into an mbox file (mboxrd) or a
 * Maildir, each message byte for byte as stored.
 */


/* syncfs(2) */
#define _GNU_SOURCE

#include "pop3ext.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>


typedef struct {
    const char         *mbox_file;   /* "-": stdout */
    const char         *maildir;
    FILE               *out;         /* mbox */
    int                 fd;          /* mbox file, or the Maildir */
    int                 created;     /* the mbox file is ours to remove */
    char                host[POP3EXT_HOST_MAX * 4];  /* Maildir names */
    unsigned            seq;
    unsigned            unterminated;
} pop3ext_export_t;


static void pop3ext_export_signal(int signo);
static void pop3ext_export_signals(void (*handler)(int));
static int pop3ext_export_open(pop3ext_export_t *ex);
static int pop3ext_export_mbox(pop3ext_export_t *ex, const char *body,
    size_t len, unsigned long long ms);
static int pop3ext_export_maildir(pop3ext_export_t *ex, const char *body,
    size_t len, unsigned long long ms);
static int pop3ext_export_close(pop3ext_export_t *ex, int ok);
static int pop3ext_write_all(int fd, const char *p, size_t len);
static int pop3ext_mkdir(const char *dir, const char *sub);


static volatile sig_atomic_t  pop3ext_export_stop;


/*
 * pop3ext export USER --mbox FILE | --maildir DIR.  The index is read in
 * one LRANGE, a snapshot of the mailbox; each message is then read whole
 * (GET) and written.  A message that a session removes meanwhile is left
 * out, with a warning.
 *
 * Interrupted (SIGINT, SIGTERM, SIGHUP), it stops after the message at
 * hand, removes a partial mbox file, which would look whole, and then
 * dies of the signal, so that a shell sees the interruption.  A Maildir
 * keeps the messages written, each whole.
 */

int
pop3ext_export(pop3ext_ctx_t *cx, int argc, char **argv)
{
    int                  i, rc, opts;
    size_t               k, n, uid_len, count, done;
    redisReply          *r, *e, *b;
    const char          *user, *src;
    pop3ext_mbox_t       mb;
    pop3ext_times_t      tm;
    pop3ext_export_t     ex;
    unsigned long long   size, octets, written, ms, now;

    memset(&ex, 0, sizeof(pop3ext_export_t));
    ex.fd = -1;
    user = NULL;
    opts = 1;

    for (i = 0; i < argc; i++) {

        if (opts && strcmp(argv[i], "--") == 0) {
            opts = 0;

        } else if (opts && (strcmp(argv[i], "--mbox") == 0
                            || strcmp(argv[i], "--maildir") == 0))
        {
            if (i + 1 == argc || argv[i + 1][0] == '\0') {
                return pop3ext_usage_error("%s needs a %s", argv[i],
                                           argv[i][4] == 'o' ? "FILE"
                                                             : "DIR");
            }

            if (argv[i][4] == 'o') {
                ex.mbox_file = argv[++i];

            } else {
                ex.maildir = argv[++i];
            }

        } else if (opts && strncmp(argv[i], "--mbox=", 7) == 0
                   && argv[i][7] != '\0')
        {
            ex.mbox_file = argv[i] + 7;

        } else if (opts && strncmp(argv[i], "--maildir=", 10) == 0
                   && argv[i][10] != '\0')
        {
            ex.maildir = argv[i] + 10;

        } else if (opts && argv[i][0] == '-') {
            return pop3ext_usage_error("export: unknown option \"%s\"",
                                       argv[i]);

        } else if (user == NULL) {
            user = argv[i];

        } else {
            return pop3ext_usage_error("export needs exactly one USER");
        }
    }

    if (user == NULL) {
        return pop3ext_usage_error("export needs exactly one USER");
    }

    if ((ex.mbox_file == NULL) == (ex.maildir == NULL)) {
        return pop3ext_usage_error("export needs either --mbox FILE or "
                                   "--maildir DIR");
    }

    rc = pop3ext_valid_user(user);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_user_mbox(cx, user, &mb);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_export_open(&ex);
    if (rc != EX_OK) {
        return rc;
    }

    pop3ext_export_signals(pop3ext_export_signal);

    /* reading a user's mail is entered in the audit trail too */

    r = NULL;
    tm.batch = NULL;

    rc = pop3ext_audit(cx, argc, argv);
    if (rc != EX_OK) {
        goto failed;
    }

    rc = pop3ext_index_all(cx, mb.index, &r, &count, &octets);
    if (rc != EX_OK) {
        goto failed;
    }

    tm.key = mb.time;
    tm.index = r;
    tm.first = 0;

    now = pop3ext_clock_ms();
    done = 0;
    n = 0;
    written = 0;

    for (k = 0; k < r->elements; k++) {
        e = r->element[k];

        if (pop3ext_export_stop) {
            pop3ext_error("interrupted after %zu of %zu messages%s", done,
                          count, ex.maildir ? "; those are in the Maildir"
                                            : "");
            rc = EX_TEMPFAIL;
            goto failed;
        }

        if (e->type != REDIS_REPLY_STRING
            || !pop3ext_entry(e->str, e->len, &uid_len, &size))
        {
            pop3ext_progress_end();
            pop3ext_error("warning: entry %zu of the index of mailbox "
                          "\"%s\" is malformed, and left out", k + 1,
                          mb.name);
            continue;
        }

        rc = pop3ext_entry_time(cx, &tm, k, &ms, &src);
        if (rc != EX_OK) {
            goto failed;
        }

        /* a time unknown is the time of the export */

        if (src == NULL) {
            ms = now;
        }

        if (strlen(mb.msg) + uid_len >= POP3EXT_KEY_MAX) {
            pop3ext_error("key for a message of \"%s\" too long", mb.name);
            rc = EX_SOFTWARE;
            goto failed;
        }

        b = pop3ext_read(cx, &rc, mb.msg, "GET %s%b", mb.msg, e->str,
                         uid_len);
        if (b == NULL) {
            goto failed;
        }

        n++;

        if (b->type == REDIS_REPLY_NIL) {
            pop3ext_progress_end();
            pop3ext_error("warning: message %zu (UID %.*s) was removed "
                          "during the export, and is left out", n,
                          (int) uid_len, e->str);
            freeReplyObject(b);
            continue;
        }

        if (b->type != REDIS_REPLY_STRING) {
            pop3ext_error("unexpected reply to GET of message %zu", n);
            freeReplyObject(b);
            rc = EX_SOFTWARE;
            goto failed;
        }

        if (b->len != size) {
            pop3ext_progress_end();
            pop3ext_error("warning: message %zu (UID %.*s) is %zu octets, "
                          "its index entry says %llu; exported as stored",
                          n, (int) uid_len, e->str, b->len, size);
        }

        if (ex.maildir != NULL) {
            rc = pop3ext_export_maildir(&ex, b->str, b->len, ms);

        } else {
            rc = pop3ext_export_mbox(&ex, b->str, b->len, ms);
        }

        written += b->len;
        freeReplyObject(b);

        if (rc != EX_OK) {
            goto failed;
        }

        done++;

        pop3ext_progress("export: %zu of %zu messages, %llu of %llu MB",
                         n, count, written >> 20, octets >> 20);
    }

    if (tm.batch != NULL) {
        freeReplyObject(tm.batch);
    }

    freeReplyObject(r);

    pop3ext_progress_end();

    if (ex.unterminated) {
        pop3ext_error("warning: %u message(s) did not end with a line end "
                      "(stored by something other than DELIVER): an LF "
                      "was added to each in the mbox", ex.unterminated);
    }

    rc = pop3ext_export_close(&ex, 1);

    pop3ext_export_signals(SIG_DFL);

    return rc;

failed:

    if (tm.batch != NULL) {
        freeReplyObject(tm.batch);
    }

    if (r != NULL) {
        freeReplyObject(r);
    }

    pop3ext_progress_end();
    pop3ext_export_close(&ex, 0);

    pop3ext_export_signals(SIG_DFL);

    if (pop3ext_export_stop) {
        raise(pop3ext_export_stop);
    }

    return rc;
}


static void
pop3ext_export_signal(int signo)
{
    pop3ext_export_stop = signo;
}


/* no SA_RESTART: the Redis layer tries a call again after EINTR itself */

static void
pop3ext_export_signals(void (*handler)(int))
{
    struct sigaction  sa;

    memset(&sa, 0, sizeof(struct sigaction));
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);

    (void) sigaction(SIGINT, &sa, NULL);
    (void) sigaction(SIGTERM, &sa, NULL);
    (void) sigaction(SIGHUP, &sa, NULL);
}


/*
 * The mbox file is made new (an export never overwrites, nor appends to
 * what may be someone's mail); the Maildir and its tmp, new and cur are
 * made if missing, and an existing Maildir gets the messages added.
 */

static int
pop3ext_export_open(pop3ext_export_t *ex)
{
    char   *p, *q;
    char    host[POP3EXT_HOST_MAX];

    if (ex->mbox_file != NULL) {

        if (strcmp(ex->mbox_file, "-") == 0) {
            ex->out = stdout;

        } else {
            ex->fd = open(ex->mbox_file, O_WRONLY | O_CREAT | O_EXCL
                                         | O_CLOEXEC, 0600);

            if (ex->fd == -1) {
                pop3ext_error("cannot create \"%s\": %s%s", ex->mbox_file,
                              strerror(errno),
                              errno == EEXIST ? " (an export never "
                              "overwrites a file)" : "");
                return EX_CANTCREAT;
            }

            ex->created = 1;

            ex->out = fdopen(ex->fd, "w");
            if (ex->out == NULL) {
                pop3ext_error("cannot open \"%s\": %s", ex->mbox_file,
                              strerror(errno));
                pop3ext_export_close(ex, 0);
                return EX_CANTCREAT;
            }
        }

        /* bodies are written in pieces: one system call per buffer */
        setvbuf(ex->out, NULL, _IOFBF, POP3EXT_READ_CHUNK);

        return EX_OK;
    }

    if (pop3ext_mkdir(ex->maildir, NULL) != EX_OK
        || pop3ext_mkdir(ex->maildir, "tmp") != EX_OK
        || pop3ext_mkdir(ex->maildir, "new") != EX_OK
        || pop3ext_mkdir(ex->maildir, "cur") != EX_OK)
    {
        return EX_CANTCREAT;
    }

    ex->fd = open(ex->maildir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (ex->fd == -1) {
        pop3ext_error("cannot open \"%s\": %s", ex->maildir,
                      strerror(errno));
        return EX_CANTCREAT;
    }

    /* the host part of a Maildir name: "/" and ":" as the spec says */

    if (gethostname(host, sizeof(host)) != 0) {
        memcpy(host, "localhost", sizeof("localhost"));
    }

    host[sizeof(host) - 1] = '\0';

    for (p = host, q = ex->host; *p != '\0'; p++) {
        if (*p == '/') {
            memcpy(q, "\\057", 4);
            q += 4;

        } else if (*p == ':') {
            memcpy(q, "\\072", 4);
            q += 4;

        } else {
            *q++ = *p;
        }
    }

    *q = '\0';

    return EX_OK;
}


static int
pop3ext_mkdir(const char *dir, const char *sub)
{
    char         path[PATH_MAX];
    struct stat  st;

    if (snprintf(path, sizeof(path), "%s%s%s", dir, sub ? "/" : "",
                 sub ? sub : "") >= (int) sizeof(path))
    {
        pop3ext_error("the path \"%s\" is too long", dir);
        return EX_CANTCREAT;
    }

    if (mkdir(path, 0700) == 0) {
        return EX_OK;
    }

    if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        return EX_OK;
    }

    pop3ext_error("cannot create the directory \"%s\": %s", path,
                  errno == EEXIST ? "a file of that name exists"
                                  : strerror(errno));

    return EX_CANTCREAT;
}


/*
 * mboxrd: "From MAILER-DAEMON DATE" (the envelope sender is not stored;
 * DATE is the delivery time in asctime form, UTC), the message with one
 * ">" added to each line that starts with ">"* and "From ", and an empty
 * line.  The From lines and the empty lines end in LF, as in every mbox
 * (readers find a message's end by an LF-only empty line before
 * "From "); the message keeps its own line ends, CRLF, octet for octet.
 */

static int
pop3ext_export_mbox(pop3ext_export_t *ex, const char *body, size_t len,
    unsigned long long ms)
{
    time_t       sec;
    struct tm    tm;
    const char  *line, *end, *nl, *q;
    char         date[64];

    sec = (time_t) (ms / 1000);

    if (gmtime_r(&sec, &tm) == NULL
        || strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", &tm) == 0)
    {
        memcpy(date, "Thu Jan  1 00:00:00 1970", 25);
    }

    fprintf(ex->out, "From MAILER-DAEMON %s\n", date);

    end = body + len;

    for (line = body; line < end; line = nl) {
        nl = memchr(line, '\n', end - line);
        nl = (nl != NULL) ? nl + 1 : end;

        for (q = line; q < nl && *q == '>'; q++) {
            /* void */
        }

        if (nl - q >= 5 && memcmp(q, "From ", 5) == 0) {
            putc('>', ex->out);
        }

        fwrite(line, 1, nl - line, ex->out);
    }

    /* without it the empty line would be part of the message's last */

    if (len > 0 && body[len - 1] != '\n') {
        putc('\n', ex->out);
        ex->unterminated++;
    }

    putc('\n', ex->out);

    if (ferror(ex->out)) {
        pop3ext_error("cannot write \"%s\": %s", ex->mbox_file,
                      strerror(errno));
        return EX_IOERR;
    }

    return EX_OK;
}


/*
 * Maildir: tmp/NAME, written whole, its mtime the delivery time, then
 * linked as cur/NAME:2, (no flags: POP3 keeps none) and unlinked from
 * tmp.  NAME is "SEC.MUSECPPIDQSEQ.HOST,S=SIZE" (Dovecot's form), SEC and
 * USEC the delivery time; link() never replaces a file, so a name that
 * exists is passed over for the next SEQ.
 */

static int
pop3ext_export_maildir(pop3ext_export_t *ex, const char *body, size_t len,
    unsigned long long ms)
{
    int              fd, rc, tries;
    struct timespec  times[2];
    char             name[POP3EXT_HOST_MAX * 4 + 128];
    char             tmp[sizeof(name) + 8], cur[sizeof(name) + 16];

    for (tries = 0; /* void */; tries++) {
        snprintf(name, sizeof(name), "%llu.M%06lluP%luQ%u.%s,S=%zu",
                 ms / 1000, (ms % 1000) * 1000, (unsigned long) getpid(),
                 ++ex->seq, ex->host, len);
        snprintf(tmp, sizeof(tmp), "tmp/%s", name);
        snprintf(cur, sizeof(cur), "cur/%s:2,", name);

        fd = openat(ex->fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                    0600);

        if (fd == -1 && errno == EEXIST && tries < 100) {
            continue;
        }

        if (fd == -1) {
            pop3ext_error("cannot create \"%s/%s\": %s", ex->maildir, tmp,
                          strerror(errno));
            return EX_CANTCREAT;
        }

        rc = pop3ext_write_all(fd, body, len);

        if (rc == 0) {
            times[0].tv_sec = (time_t) (ms / 1000);
            times[0].tv_nsec = (long) (ms % 1000) * 1000000;
            times[1] = times[0];

            /* the time a mail reader shows as received; not essential */
            (void) futimens(fd, times);
        }

        if (close(fd) == -1 && rc == 0) {
            rc = -1;
        }

        if (rc != 0) {
            pop3ext_error("cannot write \"%s/%s\": %s", ex->maildir, tmp,
                          strerror(errno));
            (void) unlinkat(ex->fd, tmp, 0);
            return EX_IOERR;
        }

        if (linkat(ex->fd, tmp, ex->fd, cur, 0) == 0) {
            break;
        }

        rc = errno;
        (void) unlinkat(ex->fd, tmp, 0);

        if (rc != EEXIST || tries == 100) {
            pop3ext_error("cannot link \"%s/%s\": %s", ex->maildir, cur,
                          strerror(rc));
            return EX_CANTCREAT;
        }
    }

    if (unlinkat(ex->fd, tmp, 0) == -1) {
        pop3ext_error("cannot remove \"%s/%s\": %s", ex->maildir, tmp,
                      strerror(errno));
        return EX_IOERR;
    }

    return EX_OK;
}


static int
pop3ext_write_all(int fd, const char *p, size_t len)
{
    ssize_t  n;

    while (len > 0) {
        n = write(fd, p, len);

        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }

            return -1;
        }

        p += n;
        len -= n;
    }

    return 0;
}


/*
 * Done: the data on disk (one fsync of the mbox, one syncfs for the
 * Maildir, not one per message), else a partial mbox file removed.
 */

static int
pop3ext_export_close(pop3ext_export_t *ex, int ok)
{
    int  rc;

    rc = EX_OK;

    if (ex->out != NULL) {
        if (ok && fflush(ex->out) == EOF) {
            pop3ext_error("cannot write \"%s\": %s", ex->mbox_file,
                          strerror(errno));
            rc = EX_IOERR;
            ok = 0;
        }

        if (ok && ex->out != stdout && fsync(fileno(ex->out)) == -1) {
            pop3ext_error("cannot write \"%s\": %s", ex->mbox_file,
                          strerror(errno));
            rc = EX_IOERR;
            ok = 0;
        }

        if (ex->out != stdout) {
            if (fclose(ex->out) == EOF && ok) {
                pop3ext_error("cannot write \"%s\": %s", ex->mbox_file,
                              strerror(errno));
                rc = EX_IOERR;
                ok = 0;
            }

            ex->fd = -1;
        }

        ex->out = NULL;

    } else if (ex->fd != -1) {
        if (ok && ex->maildir != NULL && syncfs(ex->fd) == -1) {
            pop3ext_error("cannot write \"%s\": %s", ex->maildir,
                          strerror(errno));
            rc = EX_IOERR;
            ok = 0;
        }

        (void) close(ex->fd);
        ex->fd = -1;
    }

    if (!ok && ex->created) {
        if (unlink(ex->mbox_file) == 0) {
            pop3ext_error("\"%s\" was removed: the export did not finish",
                          ex->mbox_file);
        }

        ex->created = 0;
    }

    return rc;
}
