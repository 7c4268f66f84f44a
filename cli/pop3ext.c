
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * pop3ext: manage the users of ngx_mail_pop3_ext_module and deliver mail
 * into their mailboxes in Redis.  The command line, usage and the helpers
 * every command uses.
 */


#include "pop3ext.h"


static int pop3ext_usage(void);
static const char *pop3ext_option(int argc, char **argv, int *i,
    const char *name);


static int     pop3ext_deferring;
static size_t  pop3ext_ndeferred;
static char    pop3ext_deferred[8192];
static int     pop3ext_progressing;    /* a progress line is on stderr */


int
main(int argc, char **argv)
{
    int             i, k, rc;
    const char     *cmd, *spec, *v, **opt[4];
    pop3ext_ctx_t   cx;

    static const char  *names[4] = {
        "--tls-ca", "--tls-cert", "--tls-key", "--tls-name"
    };

    memset(&cx, 0, sizeof(pop3ext_ctx_t));

    /* a Redis that closes a TLS connection must not kill us by SIGPIPE */
    signal(SIGPIPE, SIG_IGN);

    spec = getenv("POP3EXT_REDIS");
    if (spec == NULL || spec[0] == '\0') {
        spec = POP3EXT_DEFAULT_REDIS;
    }

    for (i = 1; i < argc && argv[i][0] == '-'; i++) {

        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            break;
        }

        if (strcmp(argv[i], "-r") == 0) {
            if (++i == argc) {
                return pop3ext_usage_error("option -r needs a SPEC");
            }

            spec = argv[i];
            continue;
        }

        opt[0] = &cx.tls_ca;
        opt[1] = &cx.tls_cert;
        opt[2] = &cx.tls_key;
        opt[3] = &cx.tls_name;

        for (k = 0; k < 4; k++) {
            v = pop3ext_option(argc, argv, &i, names[k]);

            if (v != NULL) {
                *opt[k] = v;
                break;
            }

            if (i == argc) {
                return pop3ext_usage_error("option %s needs a value",
                                           names[k]);
            }
        }

        if (k == 4) {
            return pop3ext_usage_error("unknown option \"%s\"", argv[i]);
        }
    }

    if (i >= argc) {
        return pop3ext_usage_error("no command given");
    }

    cmd = argv[i++];

    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
        if (i != argc) {
            return pop3ext_usage_error("%s takes no arguments", cmd);
        }

        return pop3ext_usage();
    }

    /* a bad specification is a usage error, found before stdin is read */

    rc = pop3ext_redis_init(&cx, spec);
    if (rc != EX_OK) {
        pop3ext_disconnect(&cx);
        return rc;
    }

    if (strcmp(cmd, "user") == 0) {
        if (i >= argc) {
            return pop3ext_usage_error("user needs \"add\", \"del\", "
                                       "\"show\", \"disable\" or "
                                       "\"enable\"");
        }

        if (strcmp(argv[i], "add") == 0) {
            rc = pop3ext_user_add(&cx, argc - i - 1, argv + i + 1);

        } else if (strcmp(argv[i], "del") == 0) {
            rc = pop3ext_user_del(&cx, argc - i - 1, argv + i + 1);

        } else if (strcmp(argv[i], "show") == 0) {
            rc = pop3ext_user_show(&cx, argc - i - 1, argv + i + 1);

        } else if (strcmp(argv[i], "disable") == 0) {
            rc = pop3ext_user_disable(&cx, argc - i - 1, argv + i + 1, 1);

        } else if (strcmp(argv[i], "enable") == 0) {
            rc = pop3ext_user_disable(&cx, argc - i - 1, argv + i + 1, 0);

        } else {
            return pop3ext_usage_error("unknown command \"user %s\"",
                                       argv[i]);
        }

    } else if (strcmp(cmd, "deliver") == 0) {
        rc = pop3ext_deliver(&cx, argc - i, argv + i);

    } else if (strcmp(cmd, "stat") == 0) {
        rc = pop3ext_stat(&cx, argc - i, argv + i);

    } else if (strcmp(cmd, "import") == 0) {
        rc = pop3ext_import_mail(&cx, argc - i, argv + i);

    } else {
        return pop3ext_usage_error("unknown command \"%s\"", cmd);
    }

    /* wait=N: what was written is on N replicas, or this is a failure */

    if (rc == EX_OK) {
        rc = pop3ext_sync(&cx);
    }

    pop3ext_disconnect(&cx);

    return rc;
}


/*
 * "--name VALUE" or "--name=VALUE" at argv[*i]: the value, with *i at its
 * last word; NULL if argv[*i] is another option, or, with *i == argc, if
 * the value is missing.
 */

static const char *
pop3ext_option(int argc, char **argv, int *i, const char *name)
{
    size_t  len;

    len = strlen(name);

    if (strncmp(argv[*i], name, len) != 0) {
        return NULL;
    }

    if (argv[*i][len] == '=') {
        return argv[*i] + len + 1;
    }

    if (argv[*i][len] != '\0') {
        return NULL;
    }

    if (++*i == argc) {
        return NULL;
    }

    return argv[*i];
}


void
pop3ext_error(const char *fmt, ...)
{
    int       n;
    char      line[512], *p, *nl;
    va_list   args;

    if (!pop3ext_deferring) {
        pop3ext_progress(NULL);
        fputs("pop3ext: ", stderr);

        va_start(args, fmt);
        vfprintf(stderr, fmt, args);
        va_end(args);

        fputc('\n', stderr);

        return;
    }

    va_start(args, fmt);
    n = vsnprintf(line, sizeof(line), fmt, args);
    va_end(args);

    if (n < 0) {
        return;
    }

    if ((size_t) n >= sizeof(line)) {
        n = sizeof(line) - 1;
    }

    /* the same failure, tried again: said once */

    for (p = pop3ext_deferred;
         p < pop3ext_deferred + pop3ext_ndeferred;
         p = nl + 1)
    {
        nl = memchr(p, '\n', pop3ext_deferred + pop3ext_ndeferred - p);

        if (nl - p == n && memcmp(p, line, n) == 0) {
            return;
        }
    }

    if (pop3ext_ndeferred + n + 1 > sizeof(pop3ext_deferred)) {
        return;
    }

    memcpy(pop3ext_deferred + pop3ext_ndeferred, line, n);
    pop3ext_ndeferred += n;
    pop3ext_deferred[pop3ext_ndeferred++] = '\n';
}


/*
 * While the Redis layer tries again (a failover, a cluster redirection),
 * its messages are kept: printed if it fails in the end, dropped if it
 * succeeds.  Returns 1 if this call started keeping them.
 */

int
pop3ext_defer_begin(void)
{
    if (pop3ext_deferring) {
        return 0;
    }

    pop3ext_deferring = 1;
    pop3ext_ndeferred = 0;

    return 1;
}


void
pop3ext_defer_end(int started, int print)
{
    size_t  i, start;

    if (!started) {
        return;
    }

    pop3ext_deferring = 0;

    if (print) {
        pop3ext_progress(NULL);

        for (i = 0, start = 0; i < pop3ext_ndeferred; i++) {
            if (pop3ext_deferred[i] == '\n') {
                fprintf(stderr, "pop3ext: %.*s\n", (int) (i - start),
                        pop3ext_deferred + start);
                start = i + 1;
            }
        }
    }

    pop3ext_ndeferred = 0;
}


/*
 * A line that says how far a long command is, drawn over itself on
 * stderr (the caller draws it only when stderr is a terminal); a message
 * erases it first, and so does fmt NULL.
 */

void
pop3ext_progress(const char *fmt, ...)
{
    va_list  args;

    if (fmt == NULL) {
        if (pop3ext_progressing) {
            fputs("\r\033[K", stderr);
            fflush(stderr);
            pop3ext_progressing = 0;
        }

        return;
    }

    fputc('\r', stderr);

    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);

    fputs("\033[K", stderr);
    fflush(stderr);

    pop3ext_progressing = 1;
}


int
pop3ext_usage_error(const char *fmt, ...)
{
    va_list  args;

    fputs("pop3ext: ", stderr);

    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);

    fputs(" (see pop3ext --help)\n", stderr);

    return EX_USAGE;
}


static int
pop3ext_usage(void)
{
    fputs(
"usage: pop3ext [OPTIONS] user add [--scheme SCHEME] [--hash]\n"
"                                  [--mailbox MBOX] USER\n"
"       pop3ext [OPTIONS] user del USER\n"
"       pop3ext [OPTIONS] user show USER\n"
"       pop3ext [OPTIONS] user disable USER\n"
"       pop3ext [OPTIONS] user enable USER\n"
"       pop3ext [OPTIONS] deliver [--id ID] USER...\n"
"       pop3ext [OPTIONS] stat USER\n"
"       pop3ext [OPTIONS] import USER --from SOURCE [--uidl-format FMT]\n"
"                         [--reuse-xuidl] [--uidl-duplicates allow|rename]\n"
"                         [--uidlist FILE] [--tls-ca FILE] [--insecure]\n"
"       pop3ext -h | --help\n"
"\n"
"  OPTIONS    -r SPEC, --tls-ca FILE, --tls-cert FILE, --tls-key FILE,\n"
"             --tls-name NAME (see SPEC and TLS below)\n"
"\n"
"  user add      set the password of USER, adding USER if new, and enable\n"
"                USER; the password is the first line of stdin and is\n"
"                stored hashed with SCHEME\n"
"    --hash      the line is an existing hash, {SCHEME}HASH or HASH, and is\n"
"                stored as it is; a bare HASH needs --scheme unless it is\n"
"                a crypt, ARGON2ID or PBKDF2 hash, which name their scheme\n"
"    --mailbox   USER reads the mailbox MBOX (several users may share one);\n"
"                an empty MBOX gives USER its own mailbox back; without\n"
"                --mailbox the mailbox of an existing USER stays as it is\n"
"  user del      delete USER, and the mailbox named USER with every message\n"
"                in it, even if other users read it through --mailbox; a\n"
"                mailbox USER reads through --mailbox is kept\n"
"  user show     print the scheme (never the secret), the login methods it\n"
"                permits, the mailbox, the disabled flag and the count of\n"
"                recent failed logins of USER\n"
"  user disable  refuse every login of USER; mail is still delivered\n"
"  user enable   allow the logins of USER again\n"
"  deliver       store the message on stdin in the mailbox of each USER\n"
"    --id        the message's id from the MTA: a delivery tried again\n"
"                with the same ID (for a week) stores nothing twice;\n"
"                Postfix pipe: --id ${queue_id}, Exim: --id $message_exim_id\n"
"  stat          print \"COUNT OCTETS\" of the mailbox of USER\n"
"  import        copy the mailbox SOURCE into the mailbox of USER, each\n"
"                message under the UIDL its POP3 clients know, in their\n"
"                order, so that they download nothing again; nothing is\n"
"                deleted at SOURCE; a run repeated adds what is missing.\n"
"                Prints \"imported N, already there N, skipped N\"\n"
"    --from      maildir:DIR, a Dovecot Maildir (cur/, new/ and\n"
"                dovecot-uidlist), or pop3://LOGIN@HOST[:PORT] (STLS when\n"
"                offered) or pop3s://LOGIN@HOST[:PORT], the password the\n"
"                first line of stdin\n"
"    --uidl-format  Maildir: Dovecot's pop3_uidl_format (%v %u %m %f %g),\n"
"                for messages without a saved UIDL; default %08Xu%08Xv\n"
"    --reuse-xuidl, --uidl-duplicates  Maildir: Dovecot's\n"
"                pop3_reuse_xuidl = yes and pop3_uidl_duplicates\n"
"    --uidlist   Maildir: the dovecot-uidlist, if not in DIR\n"
"    --tls-ca    POP3: CA certificates for the source (else the system's;\n"
"                a --tls-ca before the command is Redis's)\n"
"    --insecure  POP3: the source's certificate is not checked\n"
"\n"
"  SCHEME     ", stdout);

    pop3ext_scheme_list(stdout, 1, 13);

    fputs(";\n"
"             with --hash also ", stdout);

    pop3ext_scheme_list(stdout, 0, 30);

    fputs(".\n"
"             APOP needs a PLAIN secret, CRAM-MD5 a PLAIN or CRAM-MD5 one;\n"
"             both are password equivalents (PLAIN is the password)\n"
"  SPEC       the Redis, as one word, in the grammar of nginx's\n"
"             pop3_ext_redis: ADDRESS... [cluster | sentinel=NAME] [tls]\n"
"             [user=U] [password=P] [wait=N] [wait_timeout=TIME]\n"
"             [timeout=TIME]; ADDRESS is HOST:PORT, HOST (port 6379, with\n"
"             sentinel= 26379), [IPV6]:PORT or unix:PATH.  Several\n"
"             ADDRESSes are cluster seed nodes or Sentinels of master\n"
"             NAME.  wait=N: a write (deliver, user changes) succeeds only\n"
"             once WAIT confirmed N replicas within wait_timeout (1s).\n"
"             Default $POP3EXT_REDIS, else " POP3EXT_DEFAULT_REDIS "\n"
"  TLS        with tls: the certificate must chain to --tls-ca\n"
"             ($POP3EXT_REDIS_CA, else the system's CAs) and name\n"
"             --tls-name ($POP3EXT_REDIS_NAME, else each address's host);\n"
"             --tls-cert and --tls-key ($POP3EXT_REDIS_CERT, _KEY): a\n"
"             client certificate\n"
"  POP3EXT_MAX_SIZE  largest message in octets; default 67108864\n"
"  POP3EXT_REDIS_PASSWORD, POP3EXT_REDIS_USER  Redis AUTH, if required\n"
"             and not in SPEC (where ps(1) would show it)\n"
"\n"
"  exit status: 0 ok, 64 usage, 65 bad password, hash or message (import:\n"
"  messages skipped), 66 no such Maildir, 67 unknown user, 69 scheme\n"
"  unavailable or source without UIDL, 70 internal error, 73 mailbox over\n"
"  quota, 74 I/O error, 75 temporary failure (try again later: Redis or\n"
"  the source down, fewer replicas than wait=N confirmed), 76 source\n"
"  broke POP3, 77 source refused the login, 78 TLS file unusable\n",
        stdout);

    if (fflush(stdout) == EOF) {
        pop3ext_error("cannot write: %s", strerror(errno));
        return EX_IOERR;
    }

    return EX_OK;
}


/* builds PREFIX NAME SUFFIX into a buffer of POP3EXT_KEY_MAX octets */

int
pop3ext_key(char *buf, const char *prefix, const char *name,
    const char *suffix)
{
    int  n;

    n = snprintf(buf, POP3EXT_KEY_MAX, "%s%s%s", prefix, name, suffix);

    if (n < 0 || n >= POP3EXT_KEY_MAX) {
        pop3ext_error("key for \"%s\" too long", name);
        return EX_SOFTWARE;
    }

    return EX_OK;
}


/* fills buf with random octets from the kernel */

int
pop3ext_random(void *buf, size_t len)
{
    u_char   *p;
    ssize_t   n;

    p = buf;

    while (len > 0) {
        n = getrandom(p, len, 0);

        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }

            pop3ext_error("cannot get random octets: %s", strerror(errno));
            return EX_UNAVAILABLE;
        }

        p += n;
        len -= n;
    }

    return EX_OK;
}
