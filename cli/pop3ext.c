
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * pop3ext: manage the users of ngx_mail_pop3_ext_module and deliver mail
 * into their mailboxes in Redis.  Key names, fields, name rules and the
 * delivery script come from ngx_mail_pop3_ext_model.h, so that this tool
 * and the module agree byte for byte.
 *
 * Exit codes follow sysexits(3); an MTA retries on EX_TEMPFAIL, so every
 * Redis failure maps to it.
 */


#include <sys/types.h>
#include <sys/time.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <unistd.h>

#include <crypt.h>
#include <hiredis/hiredis.h>

#include "ngx_mail_pop3_ext_model.h"


#define POP3EXT_DEFAULT_REDIS     "127.0.0.1:6379"
#define POP3EXT_CONNECT_TIMEOUT   5
#define POP3EXT_COMMAND_TIMEOUT   30

#define POP3EXT_DEFAULT_MAX_SIZE  (64 * 1024 * 1024)
/* the largest string Redis accepts by default (proto-max-bulk-len) */
#define POP3EXT_MAX_MAX_SIZE      (512 * 1024 * 1024)
#define POP3EXT_READ_CHUNK        65536

/* what crypt_r() accepts, without the terminating NUL */
#define POP3EXT_LINE_MAX          (CRYPT_MAX_PASSPHRASE_SIZE - 1)
#define POP3EXT_SECRET_MAX        (POP3EXT_LINE_MAX + 64)

/* "pop3:mbox:{" NAME "}:msg:" UID fits with room to spare */
#define POP3EXT_KEY_MAX           512
#define POP3EXT_HOST_MAX          1025

#define POP3EXT_STAT_BATCH        10000
#define POP3EXT_DEL_BATCH         1000
#define POP3EXT_SCAN_COUNT        "1000"


typedef struct {
    const char         *name;       /* stored as "{NAME}" before the hash */
    const char         *setting;    /* crypt_gensalt() prefix; NULL: plain */
    unsigned long       cost;       /* crypt_gensalt() count; 0: default */
    size_t              max;        /* longest password used in full */
    const char         *ids[4];     /* hash prefixes that --hash accepts */
} pop3ext_scheme_t;


typedef struct {
    const char         *address;
    const char         *path;
    char                host[POP3EXT_HOST_MAX];
    int                 port;
    redisContext       *redis;
} pop3ext_ctx_t;


static void pop3ext_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static int pop3ext_usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static int pop3ext_usage(void);
static int pop3ext_parse_address(pop3ext_ctx_t *cx);
static int pop3ext_connect(pop3ext_ctx_t *cx);
static int pop3ext_check(pop3ext_ctx_t *cx, redisReply *r);
static redisReply *pop3ext_command(pop3ext_ctx_t *cx, int *rc,
    const char *fmt, ...);
static int pop3ext_key(char *buf, const char *prefix, const char *name,
    const char *suffix);
static int pop3ext_user_name(int argc, char **argv, const char *cmd,
    const char **user);
static int pop3ext_valid_user(const char *name);
static int pop3ext_mailbox(pop3ext_ctx_t *cx, const char *user, char *mbox);
static int pop3ext_entry(const char *p, size_t len, size_t *uid_len,
    unsigned long long *size);
static const pop3ext_scheme_t *pop3ext_scheme(const char *name, size_t len);
static int pop3ext_read_line(char *buf, size_t size, size_t *len);
static int pop3ext_hash(const pop3ext_scheme_t *s, const char *pass,
    size_t len, char *secret, size_t size);
static int pop3ext_import(const pop3ext_scheme_t *s, int given,
    const char *line, char *secret, size_t size);
static int pop3ext_max_size(size_t *max);
static int pop3ext_read_message(size_t max, u_char **msg, size_t *len);
static int pop3ext_user_add(pop3ext_ctx_t *cx, int argc, char **argv);
static int pop3ext_user_del(pop3ext_ctx_t *cx, int argc, char **argv);
static int pop3ext_purge(pop3ext_ctx_t *cx, const char *mbox, int scan);
static int pop3ext_scan(pop3ext_ctx_t *cx, const char *prefix);
static int pop3ext_deliver(pop3ext_ctx_t *cx, int argc, char **argv);
static int pop3ext_stat(pop3ext_ctx_t *cx, int argc, char **argv);


/* the first entry is the default; add new schemes anywhere before the end */

static const pop3ext_scheme_t  pop3ext_schemes[] = {
    { "SHA512-CRYPT", "$6$", 0, 0, { "$6$", NULL } },
    { "SHA256-CRYPT", "$5$", 0, 0, { "$5$", NULL } },
    /* bcrypt silently ignores octets past the 72nd */
    { "BLF-CRYPT", "$2b$", 10, 72, { "$2b$", "$2y$", "$2a$", NULL } },
    { "PLAIN", NULL, 0, 0, { NULL } },
    { NULL, NULL, 0, 0, { NULL } }
};


int
main(int argc, char **argv)
{
    int             i, rc;
    const char     *cmd;
    pop3ext_ctx_t   cx;

    memset(&cx, 0, sizeof(pop3ext_ctx_t));

    cx.address = getenv("POP3EXT_REDIS");
    if (cx.address == NULL || cx.address[0] == '\0') {
        cx.address = POP3EXT_DEFAULT_REDIS;
    }

    i = 1;

    if (i < argc && strcmp(argv[i], "-r") == 0) {
        if (i + 1 >= argc) {
            return pop3ext_usage_error("option -r needs an ADDRESS");
        }

        cx.address = argv[i + 1];
        i += 2;
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

    /* a bad address is a usage error, found before stdin is consumed */

    rc = pop3ext_parse_address(&cx);
    if (rc != EX_OK) {
        return rc;
    }

    if (strcmp(cmd, "user") == 0) {
        if (i >= argc) {
            return pop3ext_usage_error("user needs \"add\" or \"del\"");
        }

        if (strcmp(argv[i], "add") == 0) {
            rc = pop3ext_user_add(&cx, argc - i - 1, argv + i + 1);

        } else if (strcmp(argv[i], "del") == 0) {
            rc = pop3ext_user_del(&cx, argc - i - 1, argv + i + 1);

        } else {
            return pop3ext_usage_error("unknown command \"user %s\"",
                                       argv[i]);
        }

    } else if (strcmp(cmd, "deliver") == 0) {
        rc = pop3ext_deliver(&cx, argc - i, argv + i);

    } else if (strcmp(cmd, "stat") == 0) {
        rc = pop3ext_stat(&cx, argc - i, argv + i);

    } else {
        return pop3ext_usage_error("unknown command \"%s\"", cmd);
    }

    if (cx.redis != NULL) {
        redisFree(cx.redis);
    }

    return rc;
}


static void
pop3ext_error(const char *fmt, ...)
{
    va_list  args;

    fputs("pop3ext: ", stderr);

    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);

    fputc('\n', stderr);
}


static int
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
    const pop3ext_scheme_t  *s;

    fputs(
"usage: pop3ext [-r ADDRESS] user add [--scheme SCHEME] [--hash] USER\n"
"       pop3ext [-r ADDRESS] user del USER\n"
"       pop3ext [-r ADDRESS] deliver USER...\n"
"       pop3ext [-r ADDRESS] stat USER\n"
"       pop3ext -h | --help\n"
"\n"
"  user add   set the password of USER, adding USER if new; the password\n"
"             is the first line of stdin and is stored hashed with SCHEME;\n"
"             with --hash the line is an existing hash, HASH or {SCHEME}HASH\n"
"  user del   delete USER and every message in its mailbox\n"
"  deliver    store the message on stdin in the mailbox of each USER\n"
"  stat       print \"COUNT OCTETS\" of the mailbox of USER\n"
"\n"
"  SCHEME     ", stdout);

    for (s = pop3ext_schemes; s->name != NULL; s++) {
        printf("%s%s%s", s == pop3ext_schemes ? "" : ", ", s->name,
               s == pop3ext_schemes ? " (default)" : "");
    }

    fputs(
"\n"
"  ADDRESS    HOST:PORT or unix:PATH; default $POP3EXT_REDIS, else\n"
"             " POP3EXT_DEFAULT_REDIS "\n"
"  POP3EXT_MAX_SIZE  largest message in octets; default 67108864\n"
"\n"
"  exit status: 0 ok, 64 usage, 65 bad input, 67 unknown user,\n"
"  69 unavailable, 70 internal error, 74 I/O error,\n"
"  75 temporary failure (try again later)\n", stdout);

    if (fflush(stdout) == EOF) {
        pop3ext_error("cannot write: %s", strerror(errno));
        return EX_IOERR;
    }

    return EX_OK;
}


static int
pop3ext_parse_address(pop3ext_ctx_t *cx)
{
    char           *end;
    size_t          len;
    const char     *a, *colon;
    unsigned long   port;

    a = cx->address;

    if (strncmp(a, "unix:", 5) == 0) {
        if (a[5] == '\0') {
            return pop3ext_usage_error("no path in redis address \"%s\"", a);
        }

        cx->path = a + 5;
        return EX_OK;
    }

    colon = strrchr(a, ':');

    if (colon == NULL || colon[1] < '0' || colon[1] > '9') {
        return pop3ext_usage_error("redis address \"%s\" is not HOST:PORT "
                                   "or unix:PATH", a);
    }

    errno = 0;
    port = strtoul(colon + 1, &end, 10);

    if (*end != '\0' || errno != 0 || port == 0 || port > 65535) {
        return pop3ext_usage_error("bad port in redis address \"%s\"", a);
    }

    /* "[::1]:6379" */

    len = colon - a;

    if (len >= 2 && a[0] == '[' && a[len - 1] == ']') {
        a++;
        len -= 2;
    }

    if (len == 0 || len >= POP3EXT_HOST_MAX) {
        return pop3ext_usage_error("bad host in redis address \"%s\"",
                                   cx->address);
    }

    memcpy(cx->host, a, len);
    cx->host[len] = '\0';
    cx->port = (int) port;

    return EX_OK;
}


static int
pop3ext_connect(pop3ext_ctx_t *cx)
{
    struct timeval   tv;

    tv.tv_sec = POP3EXT_CONNECT_TIMEOUT;
    tv.tv_usec = 0;

    if (cx->path != NULL) {
        cx->redis = redisConnectUnixWithTimeout(cx->path, tv);

    } else {
        cx->redis = redisConnectWithTimeout(cx->host, cx->port, tv);
    }

    if (cx->redis == NULL) {
        pop3ext_error("cannot connect to redis at %s: out of memory",
                      cx->address);
        return EX_TEMPFAIL;
    }

    if (cx->redis->err) {
        pop3ext_error("cannot connect to redis at %s: %s",
                      cx->address, cx->redis->errstr);
        return EX_TEMPFAIL;
    }

    tv.tv_sec = POP3EXT_COMMAND_TIMEOUT;

    if (redisSetTimeout(cx->redis, tv) != REDIS_OK) {
        pop3ext_error("cannot set a timeout on redis at %s: %s",
                      cx->address, cx->redis->errstr);
        return EX_TEMPFAIL;
    }

    return EX_OK;
}


/*
 * Checks a reply: a missing reply (I/O error, timeout) or an error reply
 * is a temporary failure.  An error reply is freed.
 */

static int
pop3ext_check(pop3ext_ctx_t *cx, redisReply *r)
{
    const char  *reason;

    if (r == NULL) {
        reason = cx->redis->errstr;

        /* hiredis reports SO_RCVTIMEO expiry as a bare EAGAIN */

        if (cx->redis->err == REDIS_ERR_IO
            && strcmp(reason, strerror(EAGAIN)) == 0)
        {
            reason = "timed out";
        }

        pop3ext_error("redis at %s: %s", cx->address,
                      reason[0] != '\0' ? reason : "connection lost");
        return EX_TEMPFAIL;
    }

    if (r->type == REDIS_REPLY_ERROR) {
        pop3ext_error("redis at %s: %.*s", cx->address,
                      (int) r->len, r->str);
        freeReplyObject(r);
        return EX_TEMPFAIL;
    }

    return EX_OK;
}


static redisReply *
pop3ext_command(pop3ext_ctx_t *cx, int *rc, const char *fmt, ...)
{
    va_list      args;
    redisReply  *r;

    va_start(args, fmt);
    r = redisvCommand(cx->redis, fmt, args);
    va_end(args);

    *rc = pop3ext_check(cx, r);

    return (*rc == EX_OK) ? r : NULL;
}


/* builds PREFIX NAME SUFFIX into a buffer of POP3EXT_KEY_MAX octets */

static int
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


/* the single USER of "user del" and "stat", after an optional "--" */

static int
pop3ext_user_name(int argc, char **argv, const char *cmd, const char **user)
{
    if (argc > 0 && strcmp(argv[0], "--") == 0) {
        argc--;
        argv++;
    }

    if (argc != 1) {
        return pop3ext_usage_error("%s needs exactly one USER", cmd);
    }

    *user = argv[0];

    return pop3ext_valid_user(*user);
}


static int
pop3ext_valid_user(const char *name)
{
    if (!p3x_valid_name((const u_char *) name, strlen(name))) {
        pop3ext_error("invalid user name: it must be 1 to %d octets, "
                      "without spaces, control characters or braces",
                      P3X_NAME_MAX);
        return EX_USAGE;
    }

    return EX_OK;
}


/*
 * Resolves the mailbox of a user: its "mailbox" field if set and not
 * empty, else the user name.  mbox has room for P3X_NAME_MAX + 1 octets.
 */

static int
pop3ext_mailbox(pop3ext_ctx_t *cx, const char *user, char *mbox)
{
    int          rc;
    size_t       i;
    char         key[POP3EXT_KEY_MAX];
    redisReply  *r, *m;

    rc = pop3ext_key(key, P3X_USER_PREFIX, user, P3X_USER_SUFFIX);
    if (rc != EX_OK) {
        return rc;
    }

    r = pop3ext_command(cx, &rc, "HMGET %s %s %s %s", key, P3X_FIELD_SECRET,
                        P3X_FIELD_MAILBOX, P3X_FIELD_DISABLED);
    if (r == NULL) {
        return rc;
    }

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
        pop3ext_error("unexpected reply to HMGET for user \"%s\"", user);
        rc = EX_SOFTWARE;
        goto done;
    }

    /* a hash without fields does not exist, so all nil is a missing key */

    for (i = 0; i < 3; i++) {
        if (r->element[i]->type != REDIS_REPLY_NIL) {
            break;
        }
    }

    if (i == 3) {
        pop3ext_error("unknown user \"%s\"", user);
        rc = EX_NOUSER;
        goto done;
    }

    m = r->element[1];

    if (m->type == REDIS_REPLY_STRING && m->len > 0) {
        if (!p3x_valid_name((u_char *) m->str, m->len)) {
            pop3ext_error("user \"%s\" has an invalid mailbox name", user);
            rc = EX_SOFTWARE;
            goto done;
        }

        memcpy(mbox, m->str, m->len);
        mbox[m->len] = '\0';

    } else if (m->type == REDIS_REPLY_STRING || m->type == REDIS_REPLY_NIL) {
        /* the name was validated, it fits */
        memcpy(mbox, user, strlen(user) + 1);

    } else {
        pop3ext_error("unexpected mailbox field of user \"%s\"", user);
        rc = EX_SOFTWARE;
    }

done:

    freeReplyObject(r);

    return rc;
}


/* splits an index entry "UID SIZE"; returns 0 if it is malformed */

static int
pop3ext_entry(const char *p, size_t len, size_t *uid_len,
    unsigned long long *size)
{
    size_t               i, n;
    unsigned long long   v;

    for (n = 0; n < len && p[n] != ' '; n++) {
        if ((u_char) p[n] < 0x21 || (u_char) p[n] > 0x7e) {
            return 0;
        }
    }

    if (n == 0 || n > P3X_UID_MAX || n + 1 >= len) {
        return 0;
    }

    v = 0;

    for (i = n + 1; i < len; i++) {
        if (p[i] < '0' || p[i] > '9' || v > (~0ULL - 9) / 10) {
            return 0;
        }

        v = v * 10 + (p[i] - '0');
    }

    *uid_len = n;
    *size = v;

    return 1;
}


static const pop3ext_scheme_t *
pop3ext_scheme(const char *name, size_t len)
{
    const pop3ext_scheme_t  *s;

    for (s = pop3ext_schemes; s->name != NULL; s++) {
        if (strlen(s->name) == len && strncasecmp(s->name, name, len) == 0) {
            return s;
        }
    }

    return NULL;
}


/*
 * Reads the first line of stdin into buf as a C string without its line
 * end.  read(2), not stdio, so that no copy of the password stays in a
 * stdio buffer.
 */

static int
pop3ext_read_line(char *buf, size_t size, size_t *len)
{
    char     *nl;
    size_t    n;
    ssize_t   got;

    n = 0;
    nl = NULL;

    while (n < size - 1) {
        got = read(STDIN_FILENO, buf + n, size - 1 - n);

        if (got == -1) {
            if (errno == EINTR) {
                continue;
            }

            pop3ext_error("cannot read stdin: %s", strerror(errno));
            return EX_IOERR;
        }

        if (got == 0) {
            break;
        }

        nl = memchr(buf + n, '\n', got);
        n += got;

        if (nl != NULL) {
            n = nl - buf;
            break;
        }
    }

    if (nl == NULL && n == size - 1) {
        pop3ext_error("the line on stdin is longer than %d octets",
                      POP3EXT_LINE_MAX);
        return EX_DATAERR;
    }

    while (n > 0 && (buf[n - 1] == '\r' || buf[n - 1] == '\n')) {
        n--;
    }

    buf[n] = '\0';

    if (n > POP3EXT_LINE_MAX) {
        pop3ext_error("the line on stdin is longer than %d octets",
                      POP3EXT_LINE_MAX);
        return EX_DATAERR;
    }

    if (n == 0) {
        pop3ext_error("empty password");
        return EX_DATAERR;
    }

    if (memchr(buf, '\0', n) != NULL) {
        pop3ext_error("the line on stdin contains a NUL octet");
        return EX_DATAERR;
    }

    *len = n;

    return EX_OK;
}


static int
pop3ext_hash(const pop3ext_scheme_t *s, const char *pass, size_t len,
    char *secret, size_t size)
{
    int                  n, rc, err;
    char                 salt[CRYPT_GENSALT_OUTPUT_SIZE];
    const char          *hash;
    struct crypt_data   *data;

    if (s->max != 0 && len > s->max) {
        pop3ext_error("%s uses only the first %zu octets of a password, "
                      "this one has %zu", s->name, s->max, len);
        return EX_DATAERR;
    }

    if (s->setting == NULL) {
        n = snprintf(secret, size, "{%s}%s", s->name, pass);
        return (n > 0 && (size_t) n < size) ? EX_OK : EX_SOFTWARE;
    }

    if (crypt_gensalt_rn(s->setting, s->cost, NULL, 0, salt, sizeof(salt))
        == NULL)
    {
        err = errno;
        pop3ext_error("cannot make a %s salt: %s", s->name, strerror(err));
        return (err == EINVAL || err == ENOSYS) ? EX_UNAVAILABLE
                                                : EX_SOFTWARE;
    }

    /* struct crypt_data is 32 KB: too much for a stack frame */

    data = calloc(1, sizeof(struct crypt_data));
    if (data == NULL) {
        pop3ext_error("out of memory");
        return EX_TEMPFAIL;
    }

    hash = crypt_r(pass, salt, data);

    if (hash == NULL || hash[0] == '*') {
        pop3ext_error("cannot hash the password with %s", s->name);
        rc = EX_UNAVAILABLE;

    } else {
        n = snprintf(secret, size, "{%s}%s", s->name, hash);
        rc = (n > 0 && (size_t) n < size) ? EX_OK : EX_SOFTWARE;
    }

    /* it holds the password and the state derived from it */
    explicit_bzero(data, sizeof(struct crypt_data));
    free(data);

    return rc;
}


/*
 * --hash: the line is "{SCHEME}HASH" or HASH, made elsewhere.  A known
 * "{SCHEME}" prefix selects the scheme unless --scheme was given; a crypt
 * hash must look like one, so that a password given by mistake is not
 * stored as a hash nobody can log in with.
 */

static int
pop3ext_import(const pop3ext_scheme_t *s, int given, const char *line,
    char *secret, size_t size)
{
    int                      n;
    size_t                   i;
    const char              *p, *hash;
    const pop3ext_scheme_t  *t;

    hash = line;

    if (line[0] == '{' && (p = strchr(line, '}')) != NULL) {
        t = pop3ext_scheme(line + 1, p - line - 1);

        if (t != NULL) {
            if (given && t != s) {
                pop3ext_error("the hash is {%s}, not {%s}", t->name, s->name);
                return EX_DATAERR;
            }

            s = t;
            hash = p + 1;
        }
    }

    if (hash[0] == '\0') {
        pop3ext_error("empty hash");
        return EX_DATAERR;
    }

    if (s->setting != NULL) {
        for (i = 0; s->ids[i] != NULL; i++) {
            if (strncmp(hash, s->ids[i], strlen(s->ids[i])) == 0) {
                break;
            }
        }

        if (s->ids[i] == NULL) {
            pop3ext_error("this is not a %s hash", s->name);
            return EX_DATAERR;
        }

        for (p = hash; *p != '\0'; p++) {
            if ((u_char) *p < 0x21 || (u_char) *p > 0x7e) {
                pop3ext_error("this is not a %s hash", s->name);
                return EX_DATAERR;
            }
        }

        n = crypt_checksalt(hash);

        if (n != CRYPT_SALT_OK && n != CRYPT_SALT_METHOD_LEGACY) {
            pop3ext_error("this %s hash is not usable here", s->name);
            return EX_DATAERR;
        }
    }

    n = snprintf(secret, size, "{%s}%s", s->name, hash);

    if (n < 0 || (size_t) n >= size) {
        pop3ext_error("hash too long");
        return EX_DATAERR;
    }

    return EX_OK;
}


static int
pop3ext_max_size(size_t *max)
{
    const char          *s, *p;
    unsigned long long   v;

    *max = POP3EXT_DEFAULT_MAX_SIZE;

    s = getenv("POP3EXT_MAX_SIZE");

    if (s == NULL || s[0] == '\0') {
        return EX_OK;
    }

    v = 0;

    for (p = s; *p != '\0'; p++) {
        if (*p < '0' || *p > '9' || v > POP3EXT_MAX_MAX_SIZE) {
            break;
        }

        v = v * 10 + (*p - '0');
    }

    if (*p != '\0' || v == 0 || v > POP3EXT_MAX_MAX_SIZE) {
        return pop3ext_usage_error("POP3EXT_MAX_SIZE must be 1 to %d "
                                   "octets", POP3EXT_MAX_MAX_SIZE);
    }

    *max = (size_t) v;

    return EX_OK;
}


/*
 * Reads the message on stdin and gives every bare LF a CR; a CR alone is
 * kept; a message must end with CRLF.  No more than max + 1 octets are
 * read: normalisation only adds octets, so more cannot fit.
 */

static int
pop3ext_read_message(size_t max, u_char **msg, size_t *len)
{
    int       crlf;
    u_char   *buf, *p;
    size_t    size, n, i, j, extra;
    ssize_t   got;

    buf = NULL;
    size = 0;
    n = 0;

    for ( ;; ) {
        if (n == size) {
            if (size == max + 1) {
                goto too_large;
            }

            size = (size == 0) ? POP3EXT_READ_CHUNK : size * 2;

            if (size > max + 1) {
                size = max + 1;
            }

            p = realloc(buf, size);
            if (p == NULL) {
                goto no_memory;
            }

            buf = p;
        }

        got = read(STDIN_FILENO, buf + n, size - n);

        if (got == -1) {
            if (errno == EINTR) {
                continue;
            }

            pop3ext_error("cannot read the message: %s", strerror(errno));
            free(buf);
            return EX_IOERR;
        }

        if (got == 0) {
            break;
        }

        n += got;
    }

    if (n == 0) {
        pop3ext_error("empty message");
        free(buf);
        return EX_DATAERR;
    }

    extra = 0;

    for (i = 0; i < n; i++) {
        if (buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r')) {
            extra++;
        }
    }

    crlf = (buf[n - 1] == '\n');

    if (!crlf) {
        extra += 2;
    }

    /* n <= max <= 512 MiB, so this cannot overflow */

    if (n + extra > max) {
        goto too_large;
    }

    if (n + extra != size) {
        p = realloc(buf, n + extra);
        if (p == NULL) {
            goto no_memory;
        }

        buf = p;
    }

    /* back to front, in place: the write position never passes the read */

    j = n + extra;

    if (!crlf) {
        buf[--j] = '\n';
        buf[--j] = '\r';
    }

    for (i = n; i-- > 0; /* void */) {
        buf[--j] = buf[i];

        if (buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r')) {
            buf[--j] = '\r';
        }
    }

    *msg = buf;
    *len = n + extra;

    return EX_OK;

too_large:

    pop3ext_error("message too large: the limit is %zu octets", max);
    free(buf);
    return EX_DATAERR;

no_memory:

    /* the size is bounded, so this is transient: let the MTA retry */
    pop3ext_error("out of memory");
    free(buf);
    return EX_TEMPFAIL;
}


static int
pop3ext_user_add(pop3ext_ctx_t *cx, int argc, char **argv)
{
    int                      i, rc, hash, given;
    void                    *reply;
    size_t                   len, k;
    const char              *user, *name;
    redisReply              *r;
    const pop3ext_scheme_t  *s;
    char                     key[POP3EXT_KEY_MAX];
    char                     line[POP3EXT_LINE_MAX + 3];
    char                     secret[POP3EXT_SECRET_MAX];

    s = pop3ext_schemes;
    given = 0;
    hash = 0;

    for (i = 0; i < argc; i++) {

        if (strcmp(argv[i], "--hash") == 0) {
            hash = 1;
            continue;
        }

        if (strcmp(argv[i], "--scheme") == 0) {
            if (++i == argc) {
                return pop3ext_usage_error("--scheme needs a SCHEME");
            }

            name = argv[i];

        } else if (strncmp(argv[i], "--scheme=", 9) == 0) {
            name = argv[i] + 9;

        } else if (strcmp(argv[i], "--") == 0) {
            i++;
            break;

        } else if (argv[i][0] == '-') {
            return pop3ext_usage_error("unknown option \"%s\"", argv[i]);

        } else {
            break;
        }

        s = pop3ext_scheme(name, strlen(name));

        if (s == NULL) {
            fprintf(stderr, "pop3ext: unknown scheme \"%s\"; known:", name);

            for (s = pop3ext_schemes; s->name != NULL; s++) {
                fprintf(stderr, " %s", s->name);
            }

            fputc('\n', stderr);

            return EX_USAGE;
        }

        given = 1;
    }

    if (argc - i != 1) {
        return pop3ext_usage_error("user add needs exactly one USER");
    }

    user = argv[i];

    rc = pop3ext_valid_user(user);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_key(key, P3X_USER_PREFIX, user, P3X_USER_SUFFIX);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_read_line(line, sizeof(line), &len);

    if (rc == EX_OK) {
        rc = hash ? pop3ext_import(s, given, line, secret, sizeof(secret))
                  : pop3ext_hash(s, line, len, secret, sizeof(secret));
    }

    explicit_bzero(line, sizeof(line));

    if (rc != EX_OK) {
        goto done;
    }

    rc = pop3ext_connect(cx);
    if (rc != EX_OK) {
        goto done;
    }

    /* one transaction: a new password never leaves the old "disabled" */

    if (redisAppendCommand(cx->redis, "MULTI") != REDIS_OK
        || redisAppendCommand(cx->redis, "HSET %s %s %s", key,
                              P3X_FIELD_SECRET, secret) != REDIS_OK
        || redisAppendCommand(cx->redis, "HDEL %s %s", key,
                              P3X_FIELD_DISABLED) != REDIS_OK
        || redisAppendCommand(cx->redis, "EXEC") != REDIS_OK)
    {
        pop3ext_error("out of memory");
        rc = EX_TEMPFAIL;
        goto done;
    }

    for (i = 0; i < 4; i++) {
        reply = NULL;

        if (redisGetReply(cx->redis, &reply) != REDIS_OK) {
            reply = NULL;
        }

        r = reply;

        rc = pop3ext_check(cx, r);
        if (rc != EX_OK) {
            goto done;
        }

        if (i == 3) {
            if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
                pop3ext_error("unexpected reply to EXEC");
                rc = EX_SOFTWARE;
            }

            for (k = 0; rc == EX_OK && k < r->elements; k++) {
                if (r->element[k]->type == REDIS_REPLY_ERROR) {
                    pop3ext_error("redis at %s: %.*s", cx->address,
                                  (int) r->element[k]->len,
                                  r->element[k]->str);
                    rc = EX_TEMPFAIL;
                }
            }
        }

        freeReplyObject(r);

        if (rc != EX_OK) {
            goto done;
        }
    }

done:

    /* a PLAIN secret is the password itself */
    explicit_bzero(secret, sizeof(secret));

    return rc;
}


/*
 * Deletes the mailbox first and the user last, so that a run that failed
 * half way can be repeated; a second pass then removes what a concurrent
 * delivery stored before the user key went away.
 */

static int
pop3ext_user_del(pop3ext_ctx_t *cx, int argc, char **argv)
{
    int          rc;
    const char  *user;
    redisReply  *r;
    char         key[POP3EXT_KEY_MAX];

    rc = pop3ext_user_name(argc, argv, "user del", &user);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_key(key, P3X_USER_PREFIX, user, P3X_USER_SUFFIX);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_connect(cx);
    if (rc != EX_OK) {
        return rc;
    }

    r = pop3ext_command(cx, &rc, "HGET %s %s", key, P3X_FIELD_MAILBOX);
    if (r == NULL) {
        return rc;
    }

    if (r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);

        r = pop3ext_command(cx, &rc, "EXISTS %s", key);
        if (r == NULL) {
            return rc;
        }

        if (r->type != REDIS_REPLY_INTEGER) {
            pop3ext_error("unexpected reply to EXISTS");
            freeReplyObject(r);
            return EX_SOFTWARE;
        }

        if (r->integer == 0) {
            pop3ext_error("unknown user \"%s\"", user);
            freeReplyObject(r);
            return EX_NOUSER;
        }

    } else if (r->type == REDIS_REPLY_STRING && r->len > 0
               && (r->len != strlen(user)
                   || memcmp(r->str, user, r->len) != 0))
    {
        /* another user may share it: not ours to delete */
        pop3ext_error("note: mailbox \"%.*s\" of user \"%s\" is kept",
                      (int) r->len, r->str, user);
    }

    freeReplyObject(r);

    rc = pop3ext_purge(cx, user, 1);
    if (rc != EX_OK) {
        return rc;
    }

    r = pop3ext_command(cx, &rc, "DEL %s", key);
    if (r == NULL) {
        return rc;
    }

    freeReplyObject(r);

    return pop3ext_purge(cx, user, 0);
}


/*
 * Deletes a mailbox: the bodies listed in its index, its index, meta, lock
 * and dele keys and, with scan, any body the index no longer lists.
 */

static int
pop3ext_purge(pop3ext_ctx_t *cx, const char *mbox, int scan)
{
    int                  rc, n;
    size_t               i, k, uid_len, elements;
    long long            start;
    redisReply          *r, *e;
    const char         **av;
    size_t              *avlen;
    char                *keys;
    unsigned long long   size;
    char                 index[POP3EXT_KEY_MAX], meta[POP3EXT_KEY_MAX];
    char                 lock[POP3EXT_KEY_MAX], dele[POP3EXT_KEY_MAX];
    char                 prefix[POP3EXT_KEY_MAX];

    if (pop3ext_key(index, P3X_MBOX_PREFIX, mbox, P3X_INDEX_SUFFIX) != EX_OK
        || pop3ext_key(meta, P3X_MBOX_PREFIX, mbox, P3X_META_SUFFIX) != EX_OK
        || pop3ext_key(lock, P3X_MBOX_PREFIX, mbox, P3X_LOCK_SUFFIX) != EX_OK
        || pop3ext_key(dele, P3X_MBOX_PREFIX, mbox, P3X_DELE_SUFFIX) != EX_OK
        || pop3ext_key(prefix, P3X_MBOX_PREFIX, mbox, P3X_MSG_SUFFIX)
           != EX_OK)
    {
        return EX_SOFTWARE;
    }

    av = malloc((POP3EXT_DEL_BATCH + 1) * sizeof(const char *));
    avlen = malloc((POP3EXT_DEL_BATCH + 1) * sizeof(size_t));
    keys = malloc(POP3EXT_DEL_BATCH * POP3EXT_KEY_MAX);

    if (av == NULL || avlen == NULL || keys == NULL) {
        pop3ext_error("out of memory");
        rc = EX_TEMPFAIL;
        goto done;
    }

    av[0] = "UNLINK";
    avlen[0] = sizeof("UNLINK") - 1;

    for (start = 0; /* void */; start += POP3EXT_DEL_BATCH) {
        r = pop3ext_command(cx, &rc, "LRANGE %s %lld %lld", index, start,
                            start + POP3EXT_DEL_BATCH - 1);
        if (r == NULL) {
            goto done;
        }

        if (r->type != REDIS_REPLY_ARRAY
            || r->elements > POP3EXT_DEL_BATCH)
        {
            pop3ext_error("unexpected reply to LRANGE");
            freeReplyObject(r);
            rc = EX_SOFTWARE;
            goto done;
        }

        k = 1;

        for (i = 0; i < r->elements; i++) {
            e = r->element[i];

            /* a malformed entry is skipped here; the scan finds its body */

            if (e->type != REDIS_REPLY_STRING
                || !pop3ext_entry(e->str, e->len, &uid_len, &size))
            {
                continue;
            }

            n = snprintf(keys + (k - 1) * POP3EXT_KEY_MAX, POP3EXT_KEY_MAX,
                         "%s%.*s", prefix, (int) uid_len, e->str);

            if (n < 0 || n >= POP3EXT_KEY_MAX) {
                continue;
            }

            av[k] = keys + (k - 1) * POP3EXT_KEY_MAX;
            avlen[k] = n;
            k++;
        }

        elements = r->elements;
        freeReplyObject(r);

        if (k > 1) {
            r = redisCommandArgv(cx->redis, (int) k, av, avlen);

            rc = pop3ext_check(cx, r);
            if (rc != EX_OK) {
                goto done;
            }

            freeReplyObject(r);
        }

        if (elements < POP3EXT_DEL_BATCH) {
            break;
        }
    }

    /*
     * The index goes before the scan: a delivery racing with us then
     * leaves a whole mailbox, not a body without an index entry.
     */

    r = pop3ext_command(cx, &rc, "DEL %s %s %s %s", index, meta, lock, dele);
    if (r == NULL) {
        goto done;
    }

    freeReplyObject(r);

    if (scan) {
        rc = pop3ext_scan(cx, prefix);
    }

done:

    free(keys);
    free(avlen);
    free(av);

    return rc;
}


/* unlinks every key that starts with prefix, found by SCAN */

static int
pop3ext_scan(pop3ext_ctx_t *cx, const char *prefix)
{
    int           rc;
    size_t        i, k;
    const char   *p;
    redisReply   *r, *keys, *u;
    const char  **av;
    size_t       *avlen;
    char          cursor[32];
    char          pattern[2 * POP3EXT_KEY_MAX + 2];

    /* names may hold glob characters; escape them, not just the name */

    k = 0;

    for (p = prefix; *p != '\0'; p++) {
        if (*p == '*' || *p == '?' || *p == '[' || *p == ']' || *p == '\\') {
            pattern[k++] = '\\';
        }

        pattern[k++] = *p;
    }

    pattern[k++] = '*';
    pattern[k] = '\0';

    memcpy(cursor, "0", 2);

    do {
        r = pop3ext_command(cx, &rc, "SCAN %s MATCH %s COUNT %s", cursor,
                            pattern, POP3EXT_SCAN_COUNT);
        if (r == NULL) {
            return rc;
        }

        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2
            || r->element[0]->type != REDIS_REPLY_STRING
            || r->element[0]->len == 0
            || r->element[0]->len >= sizeof(cursor)
            || r->element[1]->type != REDIS_REPLY_ARRAY)
        {
            pop3ext_error("unexpected reply to SCAN");
            freeReplyObject(r);
            return EX_SOFTWARE;
        }

        memcpy(cursor, r->element[0]->str, r->element[0]->len);
        cursor[r->element[0]->len] = '\0';

        keys = r->element[1];

        if (keys->elements > 0) {
            av = malloc((keys->elements + 1) * sizeof(const char *));
            avlen = malloc((keys->elements + 1) * sizeof(size_t));

            if (av == NULL || avlen == NULL) {
                pop3ext_error("out of memory");
                free(avlen);
                free(av);
                freeReplyObject(r);
                return EX_TEMPFAIL;
            }

            av[0] = "UNLINK";
            avlen[0] = sizeof("UNLINK") - 1;
            k = 1;

            for (i = 0; i < keys->elements; i++) {
                if (keys->element[i]->type == REDIS_REPLY_STRING) {
                    av[k] = keys->element[i]->str;
                    avlen[k] = keys->element[i]->len;
                    k++;
                }
            }

            rc = EX_OK;

            if (k > 1) {
                u = redisCommandArgv(cx->redis, (int) k, av, avlen);

                rc = pop3ext_check(cx, u);
                if (rc == EX_OK) {
                    freeReplyObject(u);
                }
            }

            free(avlen);
            free(av);

            if (rc != EX_OK) {
                freeReplyObject(r);
                return rc;
            }
        }

        freeReplyObject(r);

    } while (strcmp(cursor, "0") != 0);

    return EX_OK;
}


/*
 * All recipients are resolved before anything is stored, so an unknown
 * user fails the delivery for everyone.  Recipients that share a mailbox
 * get one copy.
 */

static int
pop3ext_deliver(pop3ext_ctx_t *cx, int argc, char **argv)
{
    int            i, j, n, rc;
    char         (*mbox)[P3X_NAME_MAX + 1];
    u_char        *msg;
    size_t         len, max;
    redisReply    *r;
    const char    *av[7];
    size_t         avlen[7];
    char           meta[POP3EXT_KEY_MAX], index[POP3EXT_KEY_MAX];
    char           prefix[POP3EXT_KEY_MAX];

    if (argc > 0 && strcmp(argv[0], "--") == 0) {
        argc--;
        argv++;
    }

    if (argc == 0) {
        return pop3ext_usage_error("deliver needs at least one USER");
    }

    for (i = 0; i < argc; i++) {
        rc = pop3ext_valid_user(argv[i]);
        if (rc != EX_OK) {
            return rc;
        }
    }

    rc = pop3ext_max_size(&max);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_read_message(max, &msg, &len);
    if (rc != EX_OK) {
        return rc;
    }

    mbox = calloc(argc, sizeof(*mbox));
    if (mbox == NULL) {
        pop3ext_error("out of memory");
        free(msg);
        return EX_TEMPFAIL;
    }

    rc = pop3ext_connect(cx);
    if (rc != EX_OK) {
        goto done;
    }

    n = 0;

    for (i = 0; i < argc; i++) {
        rc = pop3ext_mailbox(cx, argv[i], mbox[n]);
        if (rc != EX_OK) {
            goto done;
        }

        for (j = 0; j < n; j++) {
            if (strcmp(mbox[j], mbox[n]) == 0) {
                break;
            }
        }

        if (j == n) {
            n++;
        }
    }

    av[0] = "EVAL";
    av[1] = P3X_SCRIPT_DELIVER;
    av[2] = "2";
    av[3] = meta;
    av[4] = index;
    av[5] = (const char *) msg;
    av[6] = prefix;

    avlen[0] = sizeof("EVAL") - 1;
    avlen[1] = sizeof(P3X_SCRIPT_DELIVER) - 1;
    avlen[2] = 1;
    avlen[5] = len;

    for (j = 0; j < n; j++) {
        if (pop3ext_key(meta, P3X_MBOX_PREFIX, mbox[j], P3X_META_SUFFIX)
            != EX_OK
            || pop3ext_key(index, P3X_MBOX_PREFIX, mbox[j], P3X_INDEX_SUFFIX)
               != EX_OK
            || pop3ext_key(prefix, P3X_MBOX_PREFIX, mbox[j], P3X_MSG_SUFFIX)
               != EX_OK)
        {
            rc = EX_SOFTWARE;
            goto done;
        }

        avlen[3] = strlen(meta);
        avlen[4] = strlen(index);
        avlen[6] = strlen(prefix);

        r = redisCommandArgv(cx->redis, 7, av, avlen);

        rc = pop3ext_check(cx, r);
        if (rc != EX_OK) {
            goto done;
        }

        if (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS) {
            pop3ext_error("unexpected reply to DELIVER for mailbox \"%s\"",
                          mbox[j]);
            rc = EX_SOFTWARE;
        }

        freeReplyObject(r);

        if (rc != EX_OK) {
            goto done;
        }
    }

done:

    free(mbox);
    free(msg);

    return rc;
}


static int
pop3ext_stat(pop3ext_ctx_t *cx, int argc, char **argv)
{
    int                  rc;
    size_t               i, uid_len, elements;
    long long            start;
    redisReply          *r, *e;
    const char          *user;
    unsigned long long   count, octets, size;
    char                 mbox[P3X_NAME_MAX + 1];
    char                 index[POP3EXT_KEY_MAX];

    rc = pop3ext_user_name(argc, argv, "stat", &user);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_connect(cx);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_mailbox(cx, user, mbox);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_key(index, P3X_MBOX_PREFIX, mbox, P3X_INDEX_SUFFIX);
    if (rc != EX_OK) {
        return rc;
    }

    count = 0;
    octets = 0;

    for (start = 0; /* void */; start += POP3EXT_STAT_BATCH) {
        r = pop3ext_command(cx, &rc, "LRANGE %s %lld %lld", index, start,
                            start + POP3EXT_STAT_BATCH - 1);
        if (r == NULL) {
            return rc;
        }

        if (r->type != REDIS_REPLY_ARRAY) {
            pop3ext_error("unexpected reply to LRANGE");
            freeReplyObject(r);
            return EX_SOFTWARE;
        }

        for (i = 0; i < r->elements; i++) {
            e = r->element[i];

            if (e->type != REDIS_REPLY_STRING
                || !pop3ext_entry(e->str, e->len, &uid_len, &size)
                || octets + size < octets)
            {
                pop3ext_error("malformed entry in the index of mailbox "
                              "\"%s\"", mbox);
                freeReplyObject(r);
                return EX_SOFTWARE;
            }

            octets += size;
        }

        count += r->elements;
        elements = r->elements;
        freeReplyObject(r);

        if (elements < POP3EXT_STAT_BATCH) {
            break;
        }
    }

    printf("%llu %llu\n", count, octets);

    if (fflush(stdout) == EOF) {
        pop3ext_error("cannot write: %s", strerror(errno));
        return EX_IOERR;
    }

    return EX_OK;
}
