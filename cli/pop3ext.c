
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

    /* the command line from the command's name on, for the audit trail */

    cx.argc = argc - i;
    cx.argv = argv + i;

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
            rc = pop3ext_usage_error("user needs \"add\", \"set\", "
                                     "\"del\", \"show\", \"disable\", "
                                     "\"enable\", \"list\" or \"rename\"");

        } else if (strcmp(argv[i], "add") == 0) {
            rc = pop3ext_user_add(&cx, argc - i - 1, argv + i + 1);

        } else if (strcmp(argv[i], "set") == 0) {
            rc = pop3ext_user_set(&cx, argc - i - 1, argv + i + 1);

        } else if (strcmp(argv[i], "del") == 0) {
            rc = pop3ext_user_del(&cx, argc - i - 1, argv + i + 1);

        } else if (strcmp(argv[i], "show") == 0) {
            rc = pop3ext_user_show(&cx, argc - i - 1, argv + i + 1);

        } else if (strcmp(argv[i], "disable") == 0) {
            rc = pop3ext_user_disable(&cx, argc - i - 1, argv + i + 1, 1);

        } else if (strcmp(argv[i], "enable") == 0) {
            rc = pop3ext_user_disable(&cx, argc - i - 1, argv + i + 1, 0);

        } else if (strcmp(argv[i], "list") == 0) {
            rc = pop3ext_user_list(&cx, argc - i - 1, argv + i + 1);

        } else if (strcmp(argv[i], "rename") == 0) {
            rc = pop3ext_user_rename(&cx, argc - i - 1, argv + i + 1);

        } else {
            rc = pop3ext_usage_error("unknown command \"user %s\"",
                                     argv[i]);
        }

    } else if (strcmp(cmd, "deliver") == 0) {
        rc = pop3ext_deliver(&cx, argc - i, argv + i);

    } else if (strcmp(cmd, "stat") == 0) {
        rc = pop3ext_stat(&cx, argc - i, argv + i);

    } else if (strcmp(cmd, "quota") == 0) {
        rc = pop3ext_quota(&cx, argc - i, argv + i);

    } else if (strcmp(cmd, "expunge") == 0) {
        rc = pop3ext_expunge(&cx, argc - i, argv + i);

    } else if (strcmp(cmd, "mailbox") == 0) {
        if (i < argc && strcmp(argv[i], "list") == 0) {
            rc = pop3ext_mailbox_list(&cx, argc - i - 1, argv + i + 1);

        } else {
            rc = pop3ext_usage_error("mailbox needs \"list\"");
        }

    } else if (strcmp(cmd, "who") == 0) {
        rc = pop3ext_who(&cx, argc - i, argv + i);

    } else if (strcmp(cmd, "kick") == 0) {
        rc = pop3ext_kick(&cx, argc - i, argv + i);

    } else if (strcmp(cmd, "export") == 0) {
        rc = pop3ext_export(&cx, argc - i, argv + i);

    } else if (strcmp(cmd, "audit") == 0) {
        rc = pop3ext_audit_show(&cx, argc - i, argv + i);

    } else if (strcmp(cmd, "import") == 0) {
        rc = pop3ext_import_mail(&cx, argc - i, argv + i);

    } else {
        rc = pop3ext_usage_error("unknown command \"%s\"", cmd);
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
        pop3ext_progress_end();
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
        pop3ext_progress_end();

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
"                                  [--mailbox MBOX] [--expire DAYS] USER\n"
"       pop3ext [OPTIONS] user set --expire DAYS USER\n"
"       pop3ext [OPTIONS] user del USER\n"
"       pop3ext [OPTIONS] user show USER\n"
"       pop3ext [OPTIONS] user disable USER\n"
"       pop3ext [OPTIONS] user enable USER\n"
"       pop3ext [OPTIONS] user list [--json]\n"
"       pop3ext [OPTIONS] user rename OLD NEW\n"
"       pop3ext [OPTIONS] deliver [--id ID] [--quota OCTETS:MESSAGES]\n"
"                                 [--quota-full tempfail|permanent] USER...\n"
"       pop3ext [OPTIONS] stat USER\n"
"       pop3ext [OPTIONS] quota get [--json] [--quota OCTETS:MESSAGES] USER\n"
"       pop3ext [OPTIONS] quota set [--octets N] [--messages N] USER\n"
"       pop3ext [OPTIONS] quota recalc USER\n"
"       pop3ext [OPTIONS] expunge [--older-than DAYS] [--dry-run]\n"
"                                 USER... | --all\n"
"       pop3ext [OPTIONS] mailbox list [--json] USER\n"
"       pop3ext [OPTIONS] who [--json]\n"
"       pop3ext [OPTIONS] kick USER\n"
"       pop3ext [OPTIONS] export (--mbox FILE | --maildir DIR) USER\n"
"       pop3ext [OPTIONS] audit [--since TIME] [--json]\n"
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
"                --mailbox the mailbox of an existing USER stays as it is,\n"
"                and a new USER whose mailbox holds mail already (a user\n"
"                renamed from USER reads it) is refused (73)\n"
"    --expire    how many days a message of USER is kept at least: DAYS\n"
"                (0 to 36500; 0 is RFC 2449's EXPIRE 0: what a session\n"
"                retrieved is removed at its QUIT), \"never\", or \"default\"\n"
"                (the server's pop3_ext_expire); the module announces it\n"
"                in CAPA, expunge enforces it\n"
"  user set      change the --expire of an existing USER\n"
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
"    --quota     the server's default quota, OCTETS:MESSAGES (0: none;\n"
"                OCTETS may end in k, m, g, t), as nginx's\n"
"                pop3_ext_quota_octets and _messages, for mailboxes\n"
"                without limits of their own; default $POP3EXT_QUOTA\n"
"    --quota-full  a full mailbox: tempfail (the default: status 75, the\n"
"                MTA retries) or permanent (status 77, the MTA bounces);\n"
"                the other mailboxes still get the message\n"
"  stat          print \"COUNT OCTETS\" of the mailbox of USER\n"
"  quota get     print the limits, usage and percent used of the mailbox\n"
"                of USER ([mailbox]: its own limit, [default]: --quota);\n"
"                --json for a JSON object\n"
"  quota set     set the limits of the mailbox of USER: N is a number (0:\n"
"                no limit; --octets takes k, m, g, t) or \"default\" (the\n"
"                mailbox's own limit goes, --quota applies)\n"
"  quota recalc  count the usage of the mailbox of USER again from its\n"
"                index, store it and print \"COUNT OCTETS\"\n"
"  expunge       remove messages delivered longer ago than their retention:\n"
"                the user's --expire, else --older-than DAYS (give it what\n"
"                pop3_ext_expire says), else $POP3EXT_EXPIRE, else never;\n"
"                a mailbox of several users keeps the longest; retention 0\n"
"                is left to the module (QUIT); a mailbox a session holds is\n"
"                skipped (status 75: run again later); for cron\n"
"    --all       every user, on every master of a cluster\n"
"    --dry-run   print what would be removed, remove nothing\n"
"  user list     print every user, one a line: the name, then mailbox=MBOX\n"
"                if it reads another mailbox, and \"disabled\" if it is\n"
"  user rename   rename user OLD to NEW; the mailbox keeps its name (NEW\n"
"                reads it through its mailbox field); refused while a\n"
"                session holds the maildrop (75) or if NEW exists (73); an\n"
"                interrupted rename is finished by running it again\n"
"  mailbox list  print \"NUMBER UID SIZE DELIVERED\" for each message of\n"
"                the mailbox of USER, numbered as a login numbers them;\n"
"                DELIVERED in ISO 8601, or - when unknown\n"
"  who           print the sessions holding a maildrop: user, mailbox,\n"
"                host, pid of the nginx worker, client address, since\n"
"  kick          end the session holding the maildrop of USER: the lock\n"
"                goes, nothing is deleted, the session ends within seconds;\n"
"                prints the session, or exits 1 when there was none\n"
"  export        write every message of the mailbox of USER as stored,\n"
"                octet for octet (CRLF line ends)\n"
"    --mbox      into FILE, made new, as mboxrd (- for stdout)\n"
"    --maildir   into DIR/cur, a Maildir made if missing\n"
"  audit         print the audit trail, oldest first: who changed what with\n"
"                pop3ext, and when\n"
"    --since     entries since TIME: an age (90m, 12h, 2d, 1w) or a date\n"
"                (2026-11-28, 2026-11-28T10:00; local time unless Z or\n"
"                +HH:MM follows)\n"
"  --json        one JSON document instead of lines (user list, mailbox\n"
"                list, who, audit; fields in pop3ext(1))\n"
"\n"
"  Changes (user add, set, del, disable, enable, rename, kick, quota\n"
"  set, expunge, import) and exports are entered in the audit trail,\n"
"  the Redis stream " P3X_AUDIT_KEY ", before they are made; without\n"
"  the entry nothing is done (75).  Deliveries are not.\n"
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
"  POP3EXT_QUOTA  the default quota, OCTETS:MESSAGES, without --quota\n"
"  POP3EXT_EXPIRE  the default retention of expunge, without --older-than\n"
"  POP3EXT_REDIS_PASSWORD, POP3EXT_REDIS_USER  Redis AUTH, if required\n"
"             and not in SPEC (where ps(1) would show it)\n"
"\n"
"  exit status: 0 ok, 1 kick found no session, 64 usage, 65 bad\n"
"  password, hash or message (import: messages skipped), 66 no such\n"
"  Maildir, 67 unknown user, 69 scheme unavailable or source without\n"
"  UIDL, 70 internal error, 73 cannot create (export's FILE or DIR, user\n"
"  rename's NEW exists, user add's mailbox is another's; import: mailbox\n"
"  over quota), 74 I/O error, 75 temporary failure (try again later:\n"
"  Redis or the source down, fewer replicas than wait=N confirmed, a\n"
"  mailbox full, a mailbox in use for expunge or user rename, the audit\n"
"  entry not written), 76 source broke POP3, 77 a mailbox full with\n"
"  --quota-full permanent, or the source refused the login, 78 TLS file\n"
"  unusable\n", stdout);

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


/* a copy of len octets at p, NUL-terminated; NULL when out of memory */

char *
pop3ext_strndup(const char *p, size_t len)
{
    char  *s;

    s = malloc(len + 1);
    if (s == NULL) {
        return NULL;
    }

    memcpy(s, p, len);
    s[len] = '\0';

    return s;
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


/* a clock in ms: CLOCK_MONOTONIC for deadlines, CLOCK_REALTIME for times */

unsigned long long
pop3ext_clock(clockid_t clock)
{
    struct timespec  ts;

    clock_gettime(clock, &ts);

    return (unsigned long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
