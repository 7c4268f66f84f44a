
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * pop3ext: the audit trail, a Redis stream of the changes made with
 * pop3ext (who, what, when): pop3ext_audit() enters one, "pop3ext audit"
 * prints them.
 */


#include "pop3ext.h"

#include <pwd.h>


static char *pop3ext_audit_line(pop3ext_ctx_t *cx, int argc, char **argv);
static size_t pop3ext_audit_word(char *buf, const char *w, int secret);
static void pop3ext_audit_who(char *buf, size_t size);
static int pop3ext_audit_entry(redisReply *e, int json, unsigned *n);
static redisReply *pop3ext_audit_field(redisReply *f, const char *name);


/*
 * Enters a change in the audit trail, before it is made:
 *
 *   XADD pop3:audit MAXLEN ~ P3X_AUDIT_MAXLEN *
 *        who USER@HOST what "COMMAND LINE" when MS [sudo_user NAME]
 *
 * argc and argv are the command's own words, as main() passed them to
 * it; the words of the command's name before them ("user add") are
 * taken from cx->argv, which main() points at the command line from the
 * command's name on.  (A caller with words of its own, not within
 * cx->argv, passes all of them, name included.)  The options before the
 * command are left out: the Redis specification may hold a password.
 *
 * A command calls it once its arguments (and the user, where it looks
 * one up first) are checked, before its first change, and changes
 * nothing if it fails: no change is made without an entry.  An entry
 * whose command then fails stays; the trail lists what was attempted.
 */

int
pop3ext_audit(pop3ext_ctx_t *cx, int argc, char **argv)
{
    int                  i, n, rc;
    char                *what, *sudo;
    size_t               lens[14];
    redisReply          *r;
    const char          *av[14];
    char                 who[POP3EXT_HOST_MAX + 128];
    char                 when[32], maxlen[32];

    what = pop3ext_audit_line(cx, argc, argv);
    if (what == NULL) {
        pop3ext_error("out of memory");
        return EX_TEMPFAIL;
    }

    pop3ext_audit_who(who, sizeof(who));
    snprintf(when, sizeof(when), "%llu", pop3ext_clock_ms());
    snprintf(maxlen, sizeof(maxlen), "%d", P3X_AUDIT_MAXLEN);

    n = 0;
    av[n++] = "XADD";
    av[n++] = P3X_AUDIT_KEY;
    av[n++] = "MAXLEN";
    av[n++] = "~";
    av[n++] = maxlen;
    av[n++] = "*";
    av[n++] = "who";
    av[n++] = who;
    av[n++] = "what";
    av[n++] = what;
    av[n++] = "when";
    av[n++] = when;

    /* who ran sudo(8): informative only, the environment says it */

    sudo = getenv("SUDO_USER");

    if (sudo != NULL && sudo[0] != '\0' && getuid() == 0) {
        av[n++] = "sudo_user";
        av[n++] = sudo;
    }

    for (i = 0; i < n; i++) {
        lens[i] = strlen(av[i]);
    }

    rc = pop3ext_call(cx, P3X_AUDIT_KEY, 1, n, av, lens, &r);

    if (rc == EX_OK) {
        rc = pop3ext_check(cx, r);
    }

    if (rc == EX_OK) {
        if (r->type != REDIS_REPLY_STRING) {
            pop3ext_error("unexpected reply to XADD");
            rc = EX_SOFTWARE;
        }

        freeReplyObject(r);
    }

    if (rc != EX_OK) {
        pop3ext_error("cannot enter \"%s\" in the audit trail \"%s\": "
                      "nothing was changed", what, P3X_AUDIT_KEY);
    }

    free(what);

    return rc;
}


/*
 * The command line as words separated by spaces, each quoted as a shell
 * would need it; the value of an option named like a secret is hidden.
 * No command takes a secret on its command line today (passwords are
 * read from stdin), so this only guards against one that would.
 */

static char *
pop3ext_audit_line(pop3ext_ctx_t *cx, int argc, char **argv)
{
    int      i, secret;
    char    *line, *p, **words;
    size_t   size;

    words = argv;

    /* equality, not order: the arrays may be unrelated */

    for (i = 0; cx->argv != NULL && i <= cx->argc; i++) {
        if (cx->argv + i == argv) {
            words = cx->argv;
            argc += i;
            break;
        }
    }

    size = 1;

    for (i = 0; i < argc; i++) {
        /* every octet may become '\'' */
        size += 4 * strlen(words[i]) + 3;
    }

    line = malloc(size);
    if (line == NULL) {
        return NULL;
    }

    p = line;
    secret = 0;

    for (i = 0; i < argc; i++) {
        if (i > 0) {
            *p++ = ' ';
        }

        p += pop3ext_audit_word(p, words[i], secret);

        secret = (strcmp(words[i], "--password") == 0
                  || strcmp(words[i], "--secret") == 0);
    }

    *p = '\0';

    return line;
}


static size_t
pop3ext_audit_word(char *buf, const char *w, int secret)
{
    char        *p;
    const char  *eq;

    static const char  plain[] = "abcdefghijklmnopqrstuvwxyz"
                                 "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                 "0123456789@%+=:,./_-";

    if (secret) {
        memcpy(buf, "***", 3);
        return 3;
    }

    eq = strstr(w, "password=");

    if (eq == NULL) {
        eq = strstr(w, "secret=");
    }

    if (eq != NULL) {
        eq = strchr(eq, '=') + 1;
        memcpy(buf, w, eq - w);
        memcpy(buf + (eq - w), "***", 3);
        return (eq - w) + 3;
    }

    if (w[0] != '\0' && strspn(w, plain) == strlen(w)) {
        memcpy(buf, w, strlen(w));
        return strlen(w);
    }

    p = buf;
    *p++ = '\'';

    for ( /* void */ ; *w != '\0'; w++) {
        if (*w == '\'') {
            memcpy(p, "'\\''", 4);
            p += 4;

        } else {
            /* a control octet would garble the listing */
            *p++ = ((u_char) *w < 0x20 || *w == 0x7f) ? '?' : *w;
        }
    }

    *p++ = '\'';

    return p - buf;
}


/* "USER@HOST": the real user, not the effective one of a setuid wrapper */

static void
pop3ext_audit_who(char *buf, size_t size)
{
    char            host[POP3EXT_HOST_MAX];
    struct passwd  *pw;

    if (gethostname(host, sizeof(host)) != 0) {
        memcpy(host, "unknown", sizeof("unknown"));
    }

    host[sizeof(host) - 1] = '\0';

    pw = getpwuid(getuid());

    if (pw != NULL && pw->pw_name != NULL) {
        snprintf(buf, size, "%s@%s", pw->pw_name, host);

    } else {
        snprintf(buf, size, "%lu@%s", (unsigned long) getuid(), host);
    }
}


/*
 * pop3ext audit [--since TIME] [--json]: the entries, oldest first, read
 * from the stream by its ids (Redis's clock in ms), so that --since costs
 * nothing however long the trail.
 */

int
pop3ext_audit_show(pop3ext_ctx_t *cx, int argc, char **argv)
{
    int                  i, rc, json;
    unsigned             n;
    size_t               k;
    redisReply          *r, *e;
    const char          *since, *dash;
    unsigned long long   from, ms, seq;
    char                 start[64];

    json = 0;
    since = NULL;

    for (i = 0; i < argc; i++) {

        if (strcmp(argv[i], "--json") == 0) {
            json = 1;

        } else if (strcmp(argv[i], "--since") == 0) {
            if (++i == argc) {
                return pop3ext_usage_error("--since needs a TIME");
            }

            since = argv[i];

        } else if (strncmp(argv[i], "--since=", 8) == 0) {
            since = argv[i] + 8;

        } else {
            return pop3ext_usage_error("audit: unknown argument \"%s\"",
                                       argv[i]);
        }
    }

    from = 0;

    if (since != NULL
        && pop3ext_parse_since(since, pop3ext_clock_ms(), &from) != 0)
    {
        return pop3ext_usage_error("--since \"%s\": a TIME is an age, as "
                                   "in 90m, 12h, 2d or 1w, or a date, as in "
                                   "2026-11-28 or 2026-11-28T10:00Z", since);
    }

    rc = pop3ext_connect(cx);
    if (rc != EX_OK) {
        return rc;
    }

    snprintf(start, sizeof(start), "%llu-0", from);

    if (json) {
        fputs("{\"entries\":[", stdout);
    }

    n = 0;

    for ( ;; ) {
        r = pop3ext_read(cx, &rc, P3X_AUDIT_KEY, "XRANGE %s %s + COUNT %s",
                         P3X_AUDIT_KEY, start, POP3EXT_SCAN_COUNT);
        if (r == NULL) {
            return rc;
        }

        if (r->type != REDIS_REPLY_ARRAY) {
            pop3ext_error("unexpected reply to XRANGE %s", P3X_AUDIT_KEY);
            freeReplyObject(r);
            return EX_SOFTWARE;
        }

        for (k = 0; k < r->elements; k++) {
            rc = pop3ext_audit_entry(r->element[k], json, &n);
            if (rc != EX_OK) {
                freeReplyObject(r);
                return rc;
            }
        }

        if (r->elements == 0) {
            freeReplyObject(r);
            break;
        }

        /* the next id after the last one: "MS-SEQ" with SEQ + 1 */

        e = r->element[r->elements - 1]->element[0];
        dash = memchr(e->str, '-', e->len);

        if (dash == NULL
            || sscanf(e->str, "%llu", &ms) != 1
            || sscanf(dash + 1, "%llu", &seq) != 1)
        {
            pop3ext_error("unexpected stream id \"%.*s\" in %s",
                          (int) e->len, e->str, P3X_AUDIT_KEY);
            freeReplyObject(r);
            return EX_SOFTWARE;
        }

        snprintf(start, sizeof(start), "%llu-%llu", ms, seq + 1);

        freeReplyObject(r);
    }

    if (json) {
        printf("],\"count\":%u}\n", n);
    }

    return pop3ext_flush(stdout);
}


/* one entry [ID, [field, value, ...]] */

static int
pop3ext_audit_entry(redisReply *e, int json, unsigned *n)
{
    redisReply          *id, *who, *what, *when, *sudo;
    unsigned long long   ms;
    char                 text[POP3EXT_TIME_LEN];

    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2
        || e->element[0]->type != REDIS_REPLY_STRING
        || e->element[1]->type != REDIS_REPLY_ARRAY)
    {
        pop3ext_error("unexpected entry in %s", P3X_AUDIT_KEY);
        return EX_SOFTWARE;
    }

    id = e->element[0];
    who = pop3ext_audit_field(e->element[1], "who");
    what = pop3ext_audit_field(e->element[1], "what");
    when = pop3ext_audit_field(e->element[1], "when");
    sudo = pop3ext_audit_field(e->element[1], "sudo_user");

    /* an entry without its own time has the one of its id */

    if (when == NULL || sscanf(when->str, "%llu", &ms) != 1) {
        when = NULL;

        if (sscanf(id->str, "%llu", &ms) != 1) {
            ms = 0;
        }
    }

    if (json) {
        printf("%s{\"id\":", *n ? "," : "");
        pop3ext_json_string(stdout, id->str, id->len);
        printf(",\"when\":%llu,\"who\":", ms);

        if (who) {
            pop3ext_json_string(stdout, who->str, who->len);

        } else {
            fputs("null", stdout);
        }

        fputs(",\"what\":", stdout);

        if (what) {
            pop3ext_json_string(stdout, what->str, what->len);

        } else {
            fputs("null", stdout);
        }

        fputs(",\"sudo_user\":", stdout);

        if (sudo) {
            pop3ext_json_string(stdout, sudo->str, sudo->len);

        } else {
            fputs("null", stdout);
        }

        putc('}', stdout);

    } else {
        pop3ext_time_text(text, ms);

        printf("%s %.*s%s%.*s%s: %.*s\n", text,
               who ? (int) who->len : 1, who ? who->str : "?",
               sudo ? " (sudo " : "", sudo ? (int) sudo->len : 0,
               sudo ? sudo->str : "", sudo ? ")" : "",
               what ? (int) what->len : 0, what ? what->str : "");
    }

    (*n)++;

    return EX_OK;
}


static redisReply *
pop3ext_audit_field(redisReply *f, const char *name)
{
    size_t  i, len;

    len = strlen(name);

    for (i = 0; i + 1 < f->elements; i += 2) {
        if (f->element[i]->type == REDIS_REPLY_STRING
            && f->element[i]->len == len
            && memcmp(f->element[i]->str, name, len) == 0
            && f->element[i + 1]->type == REDIS_REPLY_STRING)
        {
            return f->element[i + 1];
        }
    }

    return NULL;
}
